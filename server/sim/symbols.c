/*
 * symbols.c — the simulator's symbol catalogue and the wire names of its
 * enums.
 *
 * cq_sim__symbol_defaults() knows the 2024-09-08 production filters of the
 * symbols we ship market data for (values copied verbatim from
 * ../shared/data/exchangeInfo/binance-spot-exchangeInfo-2024-09-08.json) and
 * derives plausible filters for any other "<BASE><QUOTE>" name. Pure
 * functions: any thread.
 */
#include <string.h>

#include "sim-engine.h"

/* ---- wire names ------------------------------------------------------------ */

static const char *const side_names[] = {[SIM_BUY] = "BUY", [SIM_SELL] = "SELL"};
static const char *const type_names[] = {[SIM_LIMIT] = "LIMIT",
                                         [SIM_MARKET] = "MARKET",
                                         [SIM_LIMIT_MAKER] = "LIMIT_MAKER",
                                         [SIM_STOP_LOSS_LIMIT] = "STOP_LOSS_LIMIT",
                                         [SIM_TAKE_PROFIT_LIMIT] = "TAKE_PROFIT_LIMIT"};
static const char *const tif_names[] = {
    [SIM_TIF_NONE] = "", [SIM_GTC] = "GTC", [SIM_IOC] = "IOC", [SIM_FOK] = "FOK"};
static const char *const status_names[] = {[SIM_NEW] = "NEW",
                                           [SIM_PARTIALLY_FILLED] = "PARTIALLY_FILLED",
                                           [SIM_FILLED] = "FILLED",
                                           [SIM_CANCELED] = "CANCELED",
                                           [SIM_REJECTED] = "REJECTED",
                                           [SIM_EXPIRED] = "EXPIRED",
                                           [SIM_EXPIRED_IN_MATCH] = "EXPIRED_IN_MATCH"};
static const char *const exec_names[] = {[SIM_EXEC_NEW] = "NEW",
                                         [SIM_EXEC_CANCELED] = "CANCELED",
                                         [SIM_EXEC_TRADE] = "TRADE",
                                         [SIM_EXEC_EXPIRED] = "EXPIRED",
                                         [SIM_EXEC_REJECTED] = "REJECTED"};

/* An out-of-range enum value is a caller bug; answer something printable
 * rather than crash a response writer. */
#define NAME_OF(table, v) ((unsigned)(v) < CQ_ARRAY_LEN(table) ? (table)[(unsigned)(v)] : "UNKNOWN")

const char *cq_sim__side_name(enum cq_sim__side s)
{
    return NAME_OF(side_names, s);
}

const char *cq_sim__order_type_name(enum cq_sim__order_type t)
{
    return NAME_OF(type_names, t);
}

const char *cq_sim__tif_name(enum cq_sim__tif t)
{
    return NAME_OF(tif_names, t);
}

const char *cq_sim__order_status_name(enum cq_sim__order_status s)
{
    return NAME_OF(status_names, s);
}

const char *cq_sim__exec_type_name(enum cq_sim__exec_type t)
{
    return NAME_OF(exec_names, t);
}

static const char *const stp_names[] = {"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"};

const char *cq_sim__stp_name(enum cq_sim__stp m)
{
    return NAME_OF(stp_names, m);
}

/* Index of s in table (exact, case-sensitive like Binance), skipping empty
 * names; -1 if absent. */
static int find_name(const char *const *table, size_t n, const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (table[i][0] != '\0' && strcmp(table[i], s) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int cq_sim__stp_parse(const char *s, enum cq_sim__stp *out)
{
    int i = find_name(stp_names, CQ_ARRAY_LEN(stp_names), s);
    if (i < 0) {
        return -CQ_EPARSE;
    }
    *out = (enum cq_sim__stp)i;
    return 0;
}

int cq_sim__side_parse(const char *s, enum cq_sim__side *out)
{
    int i = find_name(side_names, CQ_ARRAY_LEN(side_names), s);
    if (i < 0) {
        return -CQ_EPARSE;
    }
    *out = (enum cq_sim__side)i;
    return 0;
}

int cq_sim__order_type_parse(const char *s, enum cq_sim__order_type *out)
{
    int i = find_name(type_names, CQ_ARRAY_LEN(type_names), s);
    if (i < 0) {
        return -CQ_EPARSE;
    }
    *out = (enum cq_sim__order_type)i;
    return 0;
}

/* "" (SIM_TIF_NONE's name) does not parse: a sent timeInForce is one of the
 * three real values. */
int cq_sim__tif_parse(const char *s, enum cq_sim__tif *out)
{
    int i = find_name(tif_names, CQ_ARRAY_LEN(tif_names), s);
    if (i < 0) {
        return -CQ_EPARSE;
    }
    *out = (enum cq_sim__tif)i;
    return 0;
}

/* ---- symbol catalogue ------------------------------------------------------ */

/* Filter values as Binance sends them (strings, 8 decimals). */
struct symbol_spec {
    const char *symbol, *base, *quote;
    const char *min_price, *max_price, *tick_size;
    const char *min_qty, *max_qty, *step_size;
    const char *market_min_qty, *market_max_qty, *market_step;
    const char *min_notional, *max_notional;
    bool apply_min_to_market, apply_max_to_market;
    int max_num_orders;
};

/* 2024-09-08 production values (PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE,
 * NOTIONAL, MAX_NUM_ORDERS). MARKET_LOT_SIZE's maxQty moves with daily
 * volume; this is the snapshot's. */
static const struct symbol_spec known_symbols[] = {
    {"BTCUSDT", "BTC", "USDT", "0.01000000", "1000000.00000000", "0.01000000", "0.00001000",
     "9000.00000000", "0.00001000", "0.00000000", "129.84957276", "0.00000000", "5.00000000",
     "9000000.00000000", true, false, 200},
    {"ETHUSDT", "ETH", "USDT", "0.01000000", "1000000.00000000", "0.01000000", "0.00010000",
     "9000.00000000", "0.00010000", "0.00000000", "3125.75267907", "0.00000000", "5.00000000",
     "9000000.00000000", true, false, 200},
    {"DOGEUSDT", "DOGE", "USDT", "0.00001000", "1000.00000000", "0.00001000", "1.00000000",
     "9000000.00000000", "1.00000000", "0.00000000", "19499637.40167364", "0.00000000",
     "1.00000000", "9000000.00000000", true, false, 200},
    {"XRPETH", "XRP", "ETH", "0.00000010", "1000.00000000", "0.00000010", "1.00000000",
     "90000000.00000000", "1.00000000", "0.00000000", "271118.82008368", "0.00000000", "0.00100000",
     "9000000.00000000", true, false, 200},
};

/* Quotes a generic name may end with; none is a suffix of another. */
static const char *const generic_quotes[] = {"USDT", "BUSD", "USDC", "BTC", "ETH"};

static cq_dec spec_dec(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    /* The table above is ours and well formed; a parse failure is a bug in
     * it, caught by the unit test that loads every known symbol. */
    if (cq_dec_parse(s, (size_t)-1, &d) < 0) {
        d = CQ_DEC_ZERO;
    }
    return d;
}

static void fill_from_spec(const struct symbol_spec *sp, struct cq_sim__symbol *out)
{
    struct cq_filters *f = &out->filters;
    memset(out, 0, sizeof(*out));
    /* bounded: the table's names are short literals, and a generic name was
     * checked to be shorter than CQ_SYMBOL_LEN with a base shorter than
     * SIM_ASSET_LEN (cq_sim__symbol_defaults) */
    cq_strlcpy(out->symbol, sp->symbol, sizeof(out->symbol));
    cq_strlcpy(out->base, sp->base, sizeof(out->base));
    cq_strlcpy(out->quote, sp->quote, sizeof(out->quote));
    out->base_precision = 8;
    out->quote_precision = 8;
    out->status = SIM_TRADING;
    f->min_price = spec_dec(sp->min_price);
    f->max_price = spec_dec(sp->max_price);
    f->tick_size = spec_dec(sp->tick_size);
    f->min_qty = spec_dec(sp->min_qty);
    f->max_qty = spec_dec(sp->max_qty);
    f->step_size = spec_dec(sp->step_size);
    f->market_min_qty = spec_dec(sp->market_min_qty);
    f->market_max_qty = spec_dec(sp->market_max_qty);
    f->market_step = spec_dec(sp->market_step);
    f->min_notional = spec_dec(sp->min_notional);
    f->max_notional = spec_dec(sp->max_notional);
    f->apply_min_to_market = sp->apply_min_to_market;
    f->apply_max_to_market = sp->apply_max_to_market;
    f->max_num_orders = sp->max_num_orders;
    /* 2024-09-08 production, every symbol: PERCENT_PRICE_BY_SIDE 5 / 0.2 on
     * both sides over avgPriceMins 5, ICEBERG_PARTS 10, MAX_NUM_ALGO_ORDERS 5 */
    f->bid_up = cq_dec_make(5, 0);
    f->bid_down = cq_dec_make(2, 1);
    f->ask_up = cq_dec_make(5, 0);
    f->ask_down = cq_dec_make(2, 1);
    f->avg_price_mins = 5;
    f->iceberg_parts = 10;
    f->max_num_algo_orders = 5;
}

static bool upper_alnum(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

int cq_sim__symbol_defaults(const char *name, struct cq_sim__symbol *out)
{
    size_t len;
    if (name == NULL || out == NULL) {
        return -CQ_EINVAL;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(known_symbols); i++) {
        if (strcmp(name, known_symbols[i].symbol) == 0) {
            fill_from_spec(&known_symbols[i], out);
            return 0;
        }
    }
    len = strlen(name);
    if (len == 0 || len >= CQ_SYMBOL_LEN || !upper_alnum(name, len)) {
        return -CQ_EINVAL;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(generic_quotes); i++) {
        const char *q = generic_quotes[i];
        size_t qlen = strlen(q);
        size_t blen;
        if (len <= qlen || strcmp(name + len - qlen, q) != 0) {
            continue;
        }
        blen = len - qlen;
        if (blen >= SIM_ASSET_LEN) {
            return -CQ_EINVAL;
        }
        struct symbol_spec sp = {
            .symbol = name,
            .base = "",
            .quote = q,
            .min_price = "0.01000000",
            .max_price = "1000000.00000000",
            .tick_size = "0.01000000",
            .min_qty = "0.00100000",
            .max_qty = "9000000.00000000",
            .step_size = "0.00100000",
            .market_min_qty = "0.00000000",
            .market_max_qty = "0.00000000",
            .market_step = "0.00000000",
            .min_notional = "5.00000000",
            .max_notional = "9000000.00000000",
            .apply_min_to_market = true,
            .apply_max_to_market = false,
            .max_num_orders = 200,
        };
        fill_from_spec(&sp, out);
        memcpy(out->base, name, blen);
        out->base[blen] = '\0';
        return 0;
    }
    return -CQ_EINVAL;
}
