/*
 * filters.c — a symbol's exchange filters: parsing them from exchangeInfo
 * and the one implementation of their rules (include/cq/filters.h).
 *
 * The simulator validates every order it receives with these functions and
 * the trader checks and sizes every order it would send with them, so the
 * two answer alike by construction (tests/unit/test_filters.c proves it on
 * random orders against the simulator's engine).
 *
 * Rules (Binance filters.md, ../shared/BINANCE_PROTOCOL.md):
 *   PRICE_FILTER   minPrice <= price <= maxPrice, price a multiple of
 *                  tickSize; a zero field disables its rule.
 *   LOT_SIZE       minQty <= qty <= maxQty, qty a multiple of stepSize.
 *   MARKET_LOT_SIZE  the same for MARKET orders; each zero field falls back
 *                  to LOT_SIZE's (production lists 0 / maxQty / 0).
 *   NOTIONAL       minNotional <= price * qty <= maxNotional (MARKET: when
 *                  applyMinToMarket / applyMaxToMarket, on the avgPriceMins
 *                  average price). The older MIN_NOTIONAL filter
 *                  (minNotional, applyToMarket) sets the minimum only and a
 *                  failure names it "MIN_NOTIONAL".
 *   PERCENT_PRICE_BY_SIDE  a BUY's price within [avg * bidMultiplierDown,
 *                  avg * bidMultiplierUp], a SELL's within the ask bounds;
 *                  the older PERCENT_PRICE (multiplierUp/Down, both sides)
 *                  maps to the same bounds on both sides and a failure names
 *                  it "PERCENT_PRICE".
 * The quantity step is counted from zero (qty a multiple of stepSize), as
 * the simulator always did; Binance's "(qty - minQty) % stepSize == 0" is
 * the same rule whenever minQty is a multiple of stepSize, which holds for
 * every symbol of both recorded exchangeInfo files.
 *
 * Pure functions, no allocation (cq_filters_from_json reads the caller's
 * jansson tree). Any thread.
 */
#include <limits.h>
#include <string.h>

#include "cq/filters.h"

/* ---- parsing ------------------------------------------------------------------ */

struct parse_ctx {
    const char *symbol;
    const char *filter;
    struct cq_err *err;
};

static int field_err(const struct parse_ctx *c, const char *field, const char *problem)
{
    return cq_err_set(c->err, CQ_EPARSE, 0,
                      "exchangeInfo filter fields are decimal strings with at most 8 decimals "
                      "(\"0.01000000\"), integers or booleans, as GET /api/v3/exchangeInfo "
                      "prints them",
                      "exchangeInfo symbol %s: filter %s: field %s %s", c->symbol, c->filter, field,
                      problem);
}

/* A non-negative decimal string with at most 8 significant decimals, held at
 * scale 8 (Binance prints "0.01000000"; multipliers print "5", "0.2"). */
static int get_dec(const struct parse_ctx *c, const json_t *obj, const char *field, cq_dec *out)
{
    const json_t *v = json_object_get(obj, field);
    const char *s;
    cq_dec d;
    if (v == NULL) {
        return field_err(c, field, "is missing");
    }
    if (!json_is_string(v)) {
        return field_err(c, field, "is not a decimal string");
    }
    s = json_string_value(v);
    if (cq_dec_parse(s, json_string_length(v), &d) < 0) {
        return field_err(c, field, "is not a decimal (want digits[.digits])");
    }
    if (d.m < 0) {
        return field_err(c, field, "is negative");
    }
    if (cq_dec_rescale(d, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_EXACT, out) < 0) {
        return field_err(c, field, "has more than 8 decimals or is too large");
    }
    return 0;
}

static int get_int(const struct parse_ctx *c, const json_t *obj, const char *field, int *out)
{
    const json_t *v = json_object_get(obj, field);
    json_int_t i;
    if (v == NULL) {
        return field_err(c, field, "is missing");
    }
    if (!json_is_integer(v)) {
        return field_err(c, field, "is not an integer");
    }
    i = json_integer_value(v);
    if (i < 0 || i > INT_MAX) {
        return field_err(c, field, "is out of range (0 .. 2147483647)");
    }
    *out = (int)i;
    return 0;
}

static int get_bool(const struct parse_ctx *c, const json_t *obj, const char *field, bool *out)
{
    const json_t *v = json_object_get(obj, field);
    if (v == NULL) {
        return field_err(c, field, "is missing");
    }
    if (!json_is_boolean(v)) {
        return field_err(c, field, "is not true or false");
    }
    *out = json_is_true(v);
    return 0;
}

/* lo <= hi when both bounds are set (0 = off). */
static int check_range(const struct parse_ctx *c, const char *lo_name, cq_dec lo,
                       const char *hi_name, cq_dec hi)
{
    if (lo.m > 0 && hi.m > 0 && cq_dec_cmp(lo, hi) > 0) {
        char what[96];
        /* bounded: field names are literals of at most 16 characters */
        snprintf(what, sizeof(what), "is above %s", hi_name);
        return field_err(c, lo_name, what);
    }
    return 0;
}

/* The filters the parser knows; a second listing of one is an error. */
enum known_filter {
    KF_PRICE,
    KF_LOT,
    KF_MARKET_LOT,
    KF_NOTIONAL,
    KF_MIN_NOTIONAL,
    KF_PERCENT_BY_SIDE,
    KF_PERCENT,
    KF_MAX_ORDERS,
    KF_MAX_ALGO,
    KF_ICEBERG,
    KF__COUNT
};

static const char *const known_names[KF__COUNT] = {
    [KF_PRICE] = "PRICE_FILTER",           [KF_LOT] = "LOT_SIZE",
    [KF_MARKET_LOT] = "MARKET_LOT_SIZE",   [KF_NOTIONAL] = "NOTIONAL",
    [KF_MIN_NOTIONAL] = "MIN_NOTIONAL",    [KF_PERCENT_BY_SIDE] = "PERCENT_PRICE_BY_SIDE",
    [KF_PERCENT] = "PERCENT_PRICE",        [KF_MAX_ORDERS] = "MAX_NUM_ORDERS",
    [KF_MAX_ALGO] = "MAX_NUM_ALGO_ORDERS", [KF_ICEBERG] = "ICEBERG_PARTS",
};

static int parse_one(const struct parse_ctx *c, enum known_filter k, const json_t *o,
                     struct cq_filters *f)
{
    int rc = 0;
    switch (k) {
    case KF_PRICE:
        rc = rc < 0 ? rc : get_dec(c, o, "minPrice", &f->min_price);
        rc = rc < 0 ? rc : get_dec(c, o, "maxPrice", &f->max_price);
        rc = rc < 0 ? rc : get_dec(c, o, "tickSize", &f->tick_size);
        rc = rc < 0 ? rc : check_range(c, "minPrice", f->min_price, "maxPrice", f->max_price);
        break;
    case KF_LOT:
        rc = rc < 0 ? rc : get_dec(c, o, "minQty", &f->min_qty);
        rc = rc < 0 ? rc : get_dec(c, o, "maxQty", &f->max_qty);
        rc = rc < 0 ? rc : get_dec(c, o, "stepSize", &f->step_size);
        rc = rc < 0 ? rc : check_range(c, "minQty", f->min_qty, "maxQty", f->max_qty);
        if (rc == 0 && f->step_size.m == 0) {
            /* MARKET_LOT_SIZE's zero step means "LOT_SIZE's"; LOT_SIZE's has
             * nothing to fall back to and an order could not be sized */
            rc = field_err(c, "stepSize", "is 0 (LOT_SIZE needs a step to size orders)");
        }
        break;
    case KF_MARKET_LOT:
        rc = rc < 0 ? rc : get_dec(c, o, "minQty", &f->market_min_qty);
        rc = rc < 0 ? rc : get_dec(c, o, "maxQty", &f->market_max_qty);
        rc = rc < 0 ? rc : get_dec(c, o, "stepSize", &f->market_step);
        rc = rc < 0 ? rc : check_range(c, "minQty", f->market_min_qty, "maxQty", f->market_max_qty);
        break;
    case KF_NOTIONAL:
        rc = rc < 0 ? rc : get_dec(c, o, "minNotional", &f->min_notional);
        rc = rc < 0 ? rc : get_dec(c, o, "maxNotional", &f->max_notional);
        rc = rc < 0 ? rc : get_bool(c, o, "applyMinToMarket", &f->apply_min_to_market);
        rc = rc < 0 ? rc : get_bool(c, o, "applyMaxToMarket", &f->apply_max_to_market);
        rc = rc < 0 ? rc : get_int(c, o, "avgPriceMins", &f->avg_price_mins);
        rc = rc < 0
                 ? rc
                 : check_range(c, "minNotional", f->min_notional, "maxNotional", f->max_notional);
        f->min_notional_legacy = false;
        break;
    case KF_MIN_NOTIONAL:
        rc = rc < 0 ? rc : get_dec(c, o, "minNotional", &f->min_notional);
        rc = rc < 0 ? rc : get_bool(c, o, "applyToMarket", &f->apply_min_to_market);
        rc = rc < 0 ? rc : get_int(c, o, "avgPriceMins", &f->avg_price_mins);
        f->max_notional = CQ_DEC_ZERO;
        f->apply_max_to_market = false;
        f->min_notional_legacy = true;
        break;
    case KF_PERCENT_BY_SIDE:
        rc = rc < 0 ? rc : get_dec(c, o, "bidMultiplierUp", &f->bid_up);
        rc = rc < 0 ? rc : get_dec(c, o, "bidMultiplierDown", &f->bid_down);
        rc = rc < 0 ? rc : get_dec(c, o, "askMultiplierUp", &f->ask_up);
        rc = rc < 0 ? rc : get_dec(c, o, "askMultiplierDown", &f->ask_down);
        rc = rc < 0 ? rc : get_int(c, o, "avgPriceMins", &f->avg_price_mins);
        f->percent_price_legacy = false;
        break;
    case KF_PERCENT:
        rc = rc < 0 ? rc : get_dec(c, o, "multiplierUp", &f->bid_up);
        rc = rc < 0 ? rc : get_dec(c, o, "multiplierDown", &f->bid_down);
        rc = rc < 0 ? rc : get_int(c, o, "avgPriceMins", &f->avg_price_mins);
        f->ask_up = f->bid_up;
        f->ask_down = f->bid_down;
        f->percent_price_legacy = true;
        break;
    case KF_MAX_ORDERS:
        rc = get_int(c, o, "maxNumOrders", &f->max_num_orders);
        break;
    case KF_MAX_ALGO:
        rc = get_int(c, o, "maxNumAlgoOrders", &f->max_num_algo_orders);
        break;
    case KF_ICEBERG:
        rc = get_int(c, o, "limit", &f->iceberg_parts);
        break;
    case KF__COUNT:
        break;
    }
    return rc;
}

int cq_filters_from_json(const json_t *symbol_obj, struct cq_filters *f, struct cq_err *err)
{
    struct parse_ctx c = {.symbol = "?", .filter = "?", .err = err};
    bool seen[KF__COUNT] = {false};
    const json_t *sym, *arr;
    size_t i;

    if (f == NULL) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "cq_filters_from_json: no output");
    }
    memset(f, 0, sizeof(*f));
    if (!json_is_object(symbol_obj)) {
        return cq_err_set(err, CQ_EPARSE, 0, "pass one element of exchangeInfo's \"symbols\"",
                          "exchangeInfo symbol: not a JSON object");
    }
    sym = json_object_get(symbol_obj, "symbol");
    if (!json_is_string(sym) || json_string_length(sym) == 0 ||
        json_string_length(sym) > CQ_SYMBOL_MAX_CHARS) {
        return cq_err_set(err, CQ_EPARSE, 0, "each exchangeInfo symbol names itself (\"BTCUSDT\")",
                          "exchangeInfo symbol: \"symbol\" is missing, not a string, or longer "
                          "than %d characters",
                          CQ_SYMBOL_MAX_CHARS);
    }
    c.symbol = json_string_value(sym);
    arr = json_object_get(symbol_obj, "filters");
    if (!json_is_array(arr)) {
        return cq_err_set(err, CQ_EPARSE, 0, "each exchangeInfo symbol lists its \"filters\"",
                          "exchangeInfo symbol %s: \"filters\" is missing or not an array",
                          c.symbol);
    }
    for (i = 0; i < json_array_size(arr); i++) {
        const json_t *o = json_array_get(arr, i);
        const json_t *t = json_object_get(o, "filterType");
        const char *type;
        int k;
        int rc;
        if (!json_is_object(o) || !json_is_string(t)) {
            return cq_err_set(err, CQ_EPARSE, 0, "each filter is {\"filterType\": \"...\", ...}",
                              "exchangeInfo symbol %s: filter %zu has no \"filterType\" string",
                              c.symbol, i);
        }
        type = json_string_value(t);
        for (k = 0; k < KF__COUNT; k++) {
            if (strcmp(type, known_names[k]) == 0) {
                break;
            }
        }
        if (k == KF__COUNT) {
            continue; /* TRAILING_DELTA, MAX_POSITION, …: not ours to enforce */
        }
        c.filter = known_names[k];
        if (seen[k]) {
            return cq_err_set(err, CQ_EPARSE, 0, "each filter type appears once per symbol",
                              "exchangeInfo symbol %s: filter %s is listed twice", c.symbol,
                              c.filter);
        }
        seen[k] = true;
        rc = parse_one(&c, (enum known_filter)k, o, f);
        if (rc < 0) {
            return rc;
        }
    }
    if (seen[KF_NOTIONAL] && seen[KF_MIN_NOTIONAL]) {
        c.filter = "MIN_NOTIONAL";
        return cq_err_set(err, CQ_EPARSE, 0, "exchangeInfo lists NOTIONAL or MIN_NOTIONAL",
                          "exchangeInfo symbol %s: both NOTIONAL and MIN_NOTIONAL are listed",
                          c.symbol);
    }
    if (seen[KF_PERCENT_BY_SIDE] && seen[KF_PERCENT]) {
        return cq_err_set(err, CQ_EPARSE, 0,
                          "exchangeInfo lists PERCENT_PRICE_BY_SIDE or PERCENT_PRICE",
                          "exchangeInfo symbol %s: both PERCENT_PRICE_BY_SIDE and PERCENT_PRICE "
                          "are listed",
                          c.symbol);
    }
    return 0;
}

/* ---- the checks ------------------------------------------------------------------- */

static bool dec_lt(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(a, b) < 0;
}

const char *cq_filters_check_price(const struct cq_filters *f, cq_dec price)
{
    if (price.m <= 0) {
        return "PRICE_FILTER";
    }
    if (f->min_price.m > 0 && dec_lt(price, f->min_price)) {
        return "PRICE_FILTER";
    }
    if (f->max_price.m > 0 && dec_lt(f->max_price, price)) {
        return "PRICE_FILTER";
    }
    if (f->tick_size.m > 0 && !cq_dec_is_multiple(price, f->tick_size)) {
        return "PRICE_FILTER";
    }
    return NULL;
}

void cq_filters_qty_rule_of(const struct cq_filters *f, bool market, struct cq_filters_qty_rule *r)
{
    bool mmin = market && f->market_min_qty.m > 0;
    bool mmax = market && f->market_max_qty.m > 0;
    bool mstep = market && f->market_step.m > 0;
    r->min = mmin ? f->market_min_qty : f->min_qty;
    r->max = mmax ? f->market_max_qty : f->max_qty;
    r->step = mstep ? f->market_step : f->step_size;
    r->min_filter = mmin ? "MARKET_LOT_SIZE" : "LOT_SIZE";
    r->max_filter = mmax ? "MARKET_LOT_SIZE" : "LOT_SIZE";
    r->step_filter = mstep ? "MARKET_LOT_SIZE" : "LOT_SIZE";
}

const char *cq_filters_qty_violation(const struct cq_filters_qty_rule *r, cq_dec qty)
{
    if (qty.m <= 0) {
        return r->min_filter;
    }
    if (r->min.m > 0 && dec_lt(qty, r->min)) {
        return r->min_filter;
    }
    if (r->max.m > 0 && dec_lt(r->max, qty)) {
        return r->max_filter;
    }
    if (r->step.m > 0 && !cq_dec_is_multiple(qty, r->step)) {
        return r->step_filter;
    }
    return NULL;
}

const char *cq_filters_check_qty(const struct cq_filters *f, bool market, cq_dec qty)
{
    struct cq_filters_qty_rule r;
    cq_filters_qty_rule_of(f, market, &r);
    return cq_filters_qty_violation(&r, qty);
}

/* price * qty rounded down is compared with the minimum and rounded up with
 * the maximum: exact decisions, as the bounds sit on the 8-decimal grid. A
 * product too large for int64 passes the minimum and fails the maximum. */
const char *cq_filters_check_notional(const struct cq_filters *f, bool market, cq_dec price,
                                      cq_dec qty)
{
    bool use_min = f->min_notional.m > 0 && (!market || f->apply_min_to_market);
    bool use_max = f->max_notional.m > 0 && (!market || f->apply_max_to_market);
    const char *name = f->min_notional_legacy ? "MIN_NOTIONAL" : "NOTIONAL";
    cq_dec v;
    if (use_min && cq_dec_mul(price, qty, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_FLOOR, &v) == 0 &&
        dec_lt(v, f->min_notional)) {
        return name;
    }
    if (use_max && (cq_dec_mul(price, qty, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_CEIL, &v) < 0 ||
                    dec_lt(f->max_notional, v))) {
        return name;
    }
    return NULL;
}

/* filters.md: "Buy orders will succeed on this filter if: Order price <=
 * weightedAveragePrice * bidMultiplierUp; Order price >=
 * weightedAveragePrice * bidMultiplierDown", and the same for sell orders
 * with askMultiplierUp/Down. The bounds are rounded in the order's favour to
 * 8 decimals (the multipliers have at most one decimal, so a bound is exact
 * unless the average has 8 decimals). */
const char *cq_filters_check_percent_price(const struct cq_filters *f, enum cq_side side,
                                           cq_dec price, cq_dec avg)
{
    cq_dec up = side == CQ_SIDE_BUY ? f->bid_up : f->ask_up;
    cq_dec down = side == CQ_SIDE_BUY ? f->bid_down : f->ask_down;
    const char *name = f->percent_price_legacy ? "PERCENT_PRICE" : "PERCENT_PRICE_BY_SIDE";
    cq_dec bound;
    if (avg.m <= 0) {
        return NULL;
    }
    if (up.m > 0 && cq_dec_mul(avg, up, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_CEIL, &bound) == 0 &&
        dec_lt(bound, price)) {
        return name;
    }
    if (down.m > 0 && cq_dec_mul(avg, down, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_FLOOR, &bound) == 0 &&
        dec_lt(price, bound)) {
        return name;
    }
    return NULL;
}

/* ---- sizing ------------------------------------------------------------------------ */

int cq_filters_round_qty(const struct cq_filters *f, bool market, cq_dec want_qty, cq_dec *qty,
                         const char **why)
{
    struct cq_filters_qty_rule r;
    const char *bad, *unused;
    cq_dec q;
    if (why == NULL) {
        why = &unused;
    }
    cq_filters_qty_rule_of(f, market, &r);
    if (want_qty.m <= 0) {
        *why = r.min_filter;
        return -CQ_EINVAL;
    }
    q = want_qty;
    if (r.max.m > 0 && dec_lt(r.max, q)) {
        q = r.max;
    }
    /* down to the amount grid, then down to the step (both toward zero:
     * never more than asked) */
    if (cq_dec_rescale(q, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_DOWN, &q) < 0 ||
        (r.step.m > 0 && cq_dec_quantize(q, r.step, CQ_ROUND_DOWN, &q) < 0) ||
        cq_dec_rescale(q, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_EXACT, &q) < 0) {
        *why = r.step_filter;
        return -CQ_EINVAL;
    }
    bad = cq_filters_qty_violation(&r, q);
    if (bad != NULL) {
        *why = bad;
        return -CQ_EINVAL;
    }
    *qty = q;
    *why = NULL;
    return 0;
}

int cq_filters_round_price(const struct cq_filters *f, enum cq_side side, cq_dec want_price,
                           cq_dec *price, const char **why)
{
    enum cq_dec_round mode = side == CQ_SIDE_BUY ? CQ_ROUND_FLOOR : CQ_ROUND_CEIL;
    const char *bad, *unused;
    cq_dec p;
    if (why == NULL) {
        why = &unused;
    }
    if (want_price.m <= 0 || cq_dec_rescale(want_price, CQ_FILTERS_AMOUNT_SCALE, mode, &p) < 0 ||
        (f->tick_size.m > 0 && cq_dec_quantize(p, f->tick_size, mode, &p) < 0) ||
        cq_dec_rescale(p, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_EXACT, &p) < 0) {
        *why = "PRICE_FILTER";
        return -CQ_EINVAL;
    }
    bad = cq_filters_check_price(f, p);
    if (bad != NULL) {
        *why = bad;
        return -CQ_EINVAL;
    }
    *price = p;
    *why = NULL;
    return 0;
}
