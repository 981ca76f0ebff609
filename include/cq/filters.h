/*
 * filters.h — a symbol's exchange filters (PRICE_FILTER, LOT_SIZE,
 * MARKET_LOT_SIZE, NOTIONAL / MIN_NOTIONAL, PERCENT_PRICE_BY_SIDE,
 * MAX_NUM_ORDERS, …) and the one implementation of their rules.
 *
 * Shared by the trader (which sizes and checks an order before sending it)
 * and the simulator (which validates what it receives), so that the two can
 * never disagree: both call these functions. Rules as Binance's filters.md
 * and ../shared/BINANCE_PROTOCOL.md state them; exact cq_dec arithmetic,
 * never a double.
 *
 * Threads: pure functions over their arguments (any thread).
 */
#ifndef CQ_FILTERS_H
#define CQ_FILTERS_H

#include <stdbool.h>

#include <jansson.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/market.h"

/* Every amount the exchange prints has 8 decimals. */
#define CQ_FILTERS_AMOUNT_SCALE 8

struct cq_filters {
    cq_dec min_price, max_price, tick_size;             /* PRICE_FILTER; 0 = off */
    cq_dec min_qty, max_qty, step_size;                 /* LOT_SIZE */
    cq_dec market_min_qty, market_max_qty, market_step; /* MARKET_LOT_SIZE; 0 = LOT_SIZE's */
    /* NOTIONAL (or the older MIN_NOTIONAL, which sets min_notional,
     * apply_min_to_market from applyToMarket and no max). */
    cq_dec min_notional, max_notional;
    bool apply_min_to_market, apply_max_to_market;
    int max_num_orders; /* MAX_NUM_ORDERS; 0 = none */
    /* PERCENT_PRICE_BY_SIDE: a BUY's price within [avg * bid_down,
     * avg * bid_up], a SELL's within [avg * ask_down, avg * ask_up], avg
     * being the avgPriceMins weighted average price. 0 disables a bound. */
    cq_dec bid_up, bid_down, ask_up, ask_down;
    int avg_price_mins;      /* PERCENT_PRICE_BY_SIDE / NOTIONAL avgPriceMins */
    int iceberg_parts;       /* ICEBERG_PARTS (listed, not used by us) */
    int max_num_algo_orders; /* MAX_NUM_ALGO_ORDERS */
    /* Set by the older filters of exchangeInfo files before 2023: a
     * failure names the filter the file listed. MIN_NOTIONAL (minNotional,
     * applyToMarket, avgPriceMins) fills min_notional /
     * apply_min_to_market; PERCENT_PRICE (multiplierUp/Down, both sides)
     * fills bid_up = ask_up and bid_down = ask_down. */
    bool min_notional_legacy;  /* failures name "MIN_NOTIONAL", not "NOTIONAL" */
    bool percent_price_legacy; /* failures name "PERCENT_PRICE", not "…_BY_SIDE" */
};

/* Fill f from one symbol object of GET /api/v3/exchangeInfo ("filters"
 * array). Unknown filter types are ignored (TRAILING_DELTA, MAX_POSITION:
 * not ours to enforce); a known filter with a missing or malformed field is
 * -CQ_EPARSE with err naming the symbol, filter and field. Amounts are
 * decimal strings, held at scale 8 (more significant decimals, a negative
 * value, min above max, a LOT_SIZE stepSize of 0, a filter listed twice,
 * NOTIONAL with MIN_NOTIONAL or PERCENT_PRICE_BY_SIDE with PERCENT_PRICE:
 * refused). Both real files in ../shared/data/exchangeInfo parse. */
int cq_filters_from_json(const json_t *symbol_obj, struct cq_filters *f, struct cq_err *err) CQ_WUR;

/* The checks. Each returns NULL when the value passes, else the name of the
 * filter it breaks ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE",
 * "NOTIONAL", "MIN_NOTIONAL", "PERCENT_PRICE_BY_SIDE", "PERCENT_PRICE"), as
 * the exchange's "Filter failure: <NAME>" would name it (a static string).
 * A price or quantity <= 0 fails. */
const char *cq_filters_check_price(const struct cq_filters *f, cq_dec price);
const char *cq_filters_check_qty(const struct cq_filters *f, bool market, cq_dec qty);

/* The quantity rule an order obeys: a MARKET order takes each
 * MARKET_LOT_SIZE field that is non-zero and LOT_SIZE's otherwise (real
 * BTCUSDT, MARKET_LOT_SIZE 0 / 129.8 / 0, checks LOT_SIZE's min and step and
 * MARKET_LOT_SIZE's max); a failure names the filter whose field it broke.
 * cq_filters_check_qty is cq_filters_qty_violation of this rule. */
struct cq_filters_qty_rule {
    cq_dec min, max, step; /* 0 = off */
    const char *min_filter, *max_filter, *step_filter;
};
void cq_filters_qty_rule_of(const struct cq_filters *f, bool market, struct cq_filters_qty_rule *r);
const char *cq_filters_qty_violation(const struct cq_filters_qty_rule *r, cq_dec qty);
/* price * qty against NOTIONAL (market: the reference price is the
 * avgPriceMins average, as filters.md says). */
const char *cq_filters_check_notional(const struct cq_filters *f, bool market, cq_dec price,
                                      cq_dec qty);
/* avg 0 (unknown) passes. The bounds avg * multiplier are rounded to 8
 * decimals in the order's favour (up bound CEIL, down bound FLOOR). */
const char *cq_filters_check_percent_price(const struct cq_filters *f, enum cq_side side,
                                           cq_dec price, cq_dec avg);

/* Sizing for the trader: the largest quantity not above want_qty that the
 * quantity rules accept (rounded DOWN to the step), and a price snapped to
 * the tick toward the passive side (BUY down, SELL up). 0 or -CQ_EINVAL
 * with *why naming the filter that cannot be met (e.g. the quantity rounds
 * below minQty); *why is NULL on success. A wanted quantity above the max
 * is capped at the max; a price is never moved into the PRICE_FILTER
 * bounds (a price outside them is refused). Results have scale 8. */
int cq_filters_round_qty(const struct cq_filters *f, bool market, cq_dec want_qty, cq_dec *qty,
                         const char **why) CQ_WUR;
int cq_filters_round_price(const struct cq_filters *f, enum cq_side side, cq_dec want_price,
                           cq_dec *price, const char **why) CQ_WUR;

#endif /* CQ_FILTERS_H */
