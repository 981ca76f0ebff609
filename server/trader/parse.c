/*
 * parse.c — exchange JSON -> the decision core's events (trader-parse.h).
 *
 * Shapes (../shared/BINANCE_PROTOCOL.md, and what server/sim/rest.c and
 * server/sim/ws.c send): executionReport {"e","E","s","c","S","o","q","p",
 * "C","x","X","i","l","z","L","n","N","T","t","Z",…}; outboundAccountPosition
 * {"e","E","B":[{"a","f","l"}]}; our {"e":"userStreamGap","reason"}; order
 * objects {"symbol","orderId","clientOrderId","price","origQty",
 * "executedQty","cummulativeQuoteQty","status","type","side",…}, a cancel's
 * with "origClientOrderId", a FULL place answer's with "fills":[{"price",
 * "qty","commission","commissionAsset","tradeId"}].
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "trader-parse.h"

static int fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A decimal sent as a JSON string (Binance's way). */
static int get_dec(const json_t *o, const char *key, bool required, cq_dec *out, char *why,
                   size_t why_len)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = CQ_DEC_ZERO;
        return required ? fail(why, why_len, "\"%s\" is missing", key) : 0;
    }
    if (!json_is_string(v) || cq_dec_parse(json_string_value(v), json_string_length(v), out) < 0) {
        return fail(why, why_len, "\"%s\" is not a decimal string", key);
    }
    return 0;
}

static int get_str(const json_t *o, const char *key, char *out, size_t cap, bool required,
                   char *why, size_t why_len)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        out[0] = '\0';
        return required ? fail(why, why_len, "\"%s\" is missing", key) : 0;
    }
    if (!json_is_string(v)) {
        return fail(why, why_len, "\"%s\" is not a string", key);
    }
    if (json_string_length(v) >= cap) {
        return fail(why, why_len, "\"%s\" is longer than %zu bytes", key, cap - 1);
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_u64(const json_t *o, const char *key, bool required, uint64_t *out, char *why,
                   size_t why_len)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = 0;
        return required ? fail(why, why_len, "\"%s\" is missing", key) : 0;
    }
    if (!json_is_integer(v)) {
        return fail(why, why_len, "\"%s\" is not an integer", key);
    }
    json_int_t n = json_integer_value(v);
    *out = n < 0 ? 0 : (uint64_t)n; /* tradeId -1 = no trade */
    return 0;
}

bool cq_trader__order_state_parse(const char *s, enum cq_trader_order_state *out)
{
    static const struct {
        const char *name;
        enum cq_trader_order_state state;
    } map[] = {
        {"NEW", CQ_TRADER_OS_OPEN},          {"PARTIALLY_FILLED", CQ_TRADER_OS_OPEN},
        {"PENDING_NEW", CQ_TRADER_OS_OPEN},  {"PENDING_CANCEL", CQ_TRADER_OS_OPEN},
        {"FILLED", CQ_TRADER_OS_FILLED},     {"CANCELED", CQ_TRADER_OS_CANCELED},
        {"EXPIRED", CQ_TRADER_OS_CANCELED},  {"EXPIRED_IN_MATCH", CQ_TRADER_OS_CANCELED},
        {"REJECTED", CQ_TRADER_OS_REJECTED},
    };
    for (size_t i = 0; s != NULL && i < CQ_ARRAY_LEN(map); i++) {
        if (strcmp(s, map[i].name) == 0) {
            *out = map[i].state;
            return true;
        }
    }
    return false;
}

static int parse_side(const char *s, enum cq_side *out)
{
    if (strcmp(s, "BUY") == 0) {
        *out = CQ_SIDE_BUY;
        return 0;
    }
    if (strcmp(s, "SELL") == 0) {
        *out = CQ_SIDE_SELL;
        return 0;
    }
    return -1;
}

/* MARKET, or anything resting with a price (LIMIT, LIMIT_MAKER, stops:
 * orders without our prefix may be any type; they are reported, never
 * touched). */
static enum cq_trader_order_type parse_type(const char *s)
{
    return strcmp(s, "MARKET") == 0 ? CQ_TRADER_MARKET : CQ_TRADER_LIMIT;
}

/* The fields every order object shares. */
static int order_common(const json_t *o, const char *status_key, const char *side_key,
                        const char *type_key, struct cq_trader_order_update *out, char *why,
                        size_t why_len)
{
    char status[24], side[8], type[32];
    if (get_str(o, status_key, status, sizeof(status), true, why, why_len) < 0 ||
        get_str(o, side_key, side, sizeof(side), true, why, why_len) < 0 ||
        get_str(o, type_key, type, sizeof(type), true, why, why_len) < 0) {
        return -1;
    }
    if (!cq_trader__order_state_parse(status, &out->state)) {
        return fail(why, why_len, "unknown order status \"%s\"", status);
    }
    if (parse_side(side, &out->side) < 0) {
        return fail(why, why_len, "unknown side \"%s\"", side);
    }
    out->type = parse_type(type);
    return 0;
}

int cq_trader__parse_order(const json_t *o, struct cq_trader_order_update *out, char *why,
                           size_t why_len)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o)) {
        return fail(why, why_len, "the order is not a JSON object");
    }
    /* a cancel answer: clientOrderId is the cancel's own id */
    const char *id_key =
        json_object_get(o, "origClientOrderId") != NULL ? "origClientOrderId" : "clientOrderId";
    if (get_str(o, "symbol", out->symbol, sizeof(out->symbol), true, why, why_len) < 0 ||
        get_str(o, id_key, out->client_id, sizeof(out->client_id), true, why, why_len) < 0 ||
        get_u64(o, "orderId", true, &out->order_id, why, why_len) < 0 ||
        order_common(o, "status", "side", "type", out, why, why_len) < 0 ||
        get_dec(o, "origQty", false, &out->orig_qty, why, why_len) < 0 ||
        get_dec(o, "price", false, &out->price, why, why_len) < 0 ||
        get_dec(o, "executedQty", true, &out->executed_qty, why, why_len) < 0 ||
        get_dec(o, "cummulativeQuoteQty", true, &out->cum_quote, why, why_len) < 0) {
        return -1;
    }
    uint64_t t = 0;
    if (get_u64(o, "updateTime", false, &t, why, why_len) < 0 ||
        (t == 0 && get_u64(o, "transactTime", false, &t, why, why_len) < 0)) {
        return -1;
    }
    out->event_ms = (int64_t)t;
    return 0;
}

size_t cq_trader__parse_place_response(const json_t *o, struct cq_trader_order_update *out,
                                       size_t max, char *why, size_t why_len)
{
    if (max == 0 || cq_trader__parse_order(o, &out[0], why, why_len) < 0) {
        return 0;
    }
    const json_t *fills = json_object_get(o, "fills");
    if (fills == NULL || json_array_size(fills) == 0) {
        return 1;
    }
    if (!json_is_array(fills)) {
        fail(why, why_len, "\"fills\" is not an array");
        return 0;
    }
    const struct cq_trader_order_update total = out[0];
    size_t nf = json_array_size(fills);
    size_t n = nf < max ? nf : max;
    cq_dec exec = CQ_DEC_ZERO, quote = CQ_DEC_ZERO, extra_commission = CQ_DEC_ZERO;
    for (size_t i = 0; i < nf; i++) {
        const json_t *f = json_array_get(fills, i);
        cq_dec qty, price, commission, q;
        uint64_t trade_id;
        char asset[CQ_TRADER_ASSET_LEN];
        if (!json_is_object(f) || get_dec(f, "qty", true, &qty, why, why_len) < 0 ||
            get_dec(f, "price", true, &price, why, why_len) < 0 ||
            get_dec(f, "commission", true, &commission, why, why_len) < 0 ||
            get_str(f, "commissionAsset", asset, sizeof(asset), false, why, why_len) < 0 ||
            get_u64(f, "tradeId", false, &trade_id, why, why_len) < 0) {
            return 0;
        }
        if (i >= n) { /* beyond max: merged into the last update */
            if (cq_dec_add(extra_commission, commission, &extra_commission) < 0) {
                fail(why, why_len, "fills: commission overflows");
                return 0;
            }
            continue;
        }
        if (cq_dec_add(exec, qty, &exec) < 0 ||
            cq_dec_mul(qty, price, CQ_FILTERS_AMOUNT_SCALE, CQ_ROUND_HALF_EVEN, &q) < 0 ||
            cq_dec_add(quote, q, &quote) < 0) {
            fail(why, why_len, "fills: amounts overflow");
            return 0;
        }
        struct cq_trader_order_update *u = &out[i];
        *u = total;
        u->trade_id = trade_id;
        u->last_qty = qty;
        u->last_price = price;
        u->commission = commission;
        cq_strlcpy(u->commission_asset, asset, sizeof(u->commission_asset));
        if (i + 1 < n) { /* an intermediate step: partly filled so far */
            u->state = CQ_TRADER_OS_OPEN;
            u->executed_qty = exec;
            u->cum_quote = cq_dec_normalize(quote);
        }
    }
    if (cq_dec_sign(extra_commission) != 0 &&
        cq_dec_add(out[n - 1].commission, extra_commission, &out[n - 1].commission) < 0) {
        fail(why, why_len, "fills: commission overflows");
        return 0;
    }
    return n;
}

/* executionReport -> an order update. On a cancel, "c" is the cancel's own
 * id and "C" the order's. */
static int parse_execution_report(const json_t *j, struct cq_trader_order_update *u, char *why,
                                  size_t why_len)
{
    char c[CQ_TRADER_CLIENT_ID_LEN], orig[CQ_TRADER_CLIENT_ID_LEN], asset[CQ_TRADER_ASSET_LEN];
    uint64_t e_ms = 0, t_ms = 0;
    memset(u, 0, sizeof(*u));
    /* ids longer than ours cannot be ours: keep the first 36 characters
     * would alias, so such an id is refused by get_str as too long only
     * when it is the one we key on */
    if (get_str(j, "s", u->symbol, sizeof(u->symbol), true, why, why_len) < 0 ||
        get_str(j, "c", c, sizeof(c), true, why, why_len) < 0 ||
        get_str(j, "C", orig, sizeof(orig), false, why, why_len) < 0 ||
        order_common(j, "X", "S", "o", u, why, why_len) < 0 ||
        get_u64(j, "i", true, &u->order_id, why, why_len) < 0 ||
        get_dec(j, "q", false, &u->orig_qty, why, why_len) < 0 ||
        get_dec(j, "p", false, &u->price, why, why_len) < 0 ||
        get_dec(j, "z", true, &u->executed_qty, why, why_len) < 0 ||
        get_dec(j, "Z", true, &u->cum_quote, why, why_len) < 0 ||
        get_dec(j, "l", false, &u->last_qty, why, why_len) < 0 ||
        get_dec(j, "L", false, &u->last_price, why, why_len) < 0 ||
        get_dec(j, "n", false, &u->commission, why, why_len) < 0 ||
        get_str(j, "N", asset, sizeof(asset), false, why, why_len) < 0 ||
        get_u64(j, "t", false, &u->trade_id, why, why_len) < 0 ||
        get_u64(j, "E", false, &e_ms, why, why_len) < 0 ||
        get_u64(j, "T", false, &t_ms, why, why_len) < 0) {
        return -1;
    }
    cq_strlcpy(u->client_id, orig[0] != '\0' ? orig : c, sizeof(u->client_id));
    cq_strlcpy(u->commission_asset, asset, sizeof(u->commission_asset));
    const char *x = json_string_value(json_object_get(j, "x"));
    if (x == NULL || strcmp(x, "TRADE") != 0) {
        u->trade_id = 0; /* only a TRADE names a fill */
        u->last_qty = CQ_DEC_ZERO;
        u->last_price = CQ_DEC_ZERO;
        u->commission = CQ_DEC_ZERO;
        u->commission_asset[0] = '\0';
    }
    u->event_ms = (int64_t)(t_ms != 0 ? t_ms : e_ms);
    return 0;
}

static int parse_position(const json_t *j, struct cq_trader_event *ev, char *why, size_t why_len)
{
    const json_t *b = json_object_get(j, "B");
    if (!json_is_array(b)) {
        return fail(why, why_len, "outboundAccountPosition: \"B\" is not an array");
    }
    ev->u.balances.n = 0;
    for (size_t i = 0; i < json_array_size(b); i++) {
        const json_t *e = json_array_get(b, i);
        if (ev->u.balances.n == CQ_TRADER_ASSETS_MAX) {
            return fail(why, why_len, "outboundAccountPosition: more than %d assets",
                        CQ_TRADER_ASSETS_MAX);
        }
        struct cq_trader_balance *bal = &ev->u.balances.items[ev->u.balances.n];
        if (!json_is_object(e) ||
            get_str(e, "a", bal->asset, sizeof(bal->asset), true, why, why_len) < 0 ||
            get_dec(e, "f", true, &bal->free, why, why_len) < 0 ||
            get_dec(e, "l", true, &bal->locked, why, why_len) < 0) {
            return -1;
        }
        ev->u.balances.n++;
    }
    return 0;
}

enum cq_trader__user_kind cq_trader__parse_user_event(const char *json, size_t len,
                                                      struct cq_trader_event *ev, char *why,
                                                      size_t why_len)
{
    json_error_t jerr;
    json_t *j = json_loadb(json, len, 0, &jerr);
    enum cq_trader__user_kind kind = CQ_TRADER__USER_BAD;
    if (!json_is_object(j)) {
        fail(why, why_len, "the user event is not a JSON object: %s",
             j == NULL ? jerr.text : "another JSON value");
        json_decref(j);
        return kind;
    }
    const char *e = json_string_value(json_object_get(j, "e"));
    memset(ev, 0, sizeof(*ev));
    if (e == NULL) {
        fail(why, why_len, "the user event has no \"e\"");
    } else if (strcmp(e, "executionReport") == 0) {
        ev->kind = CQ_TRADER_EV_ORDER_UPDATE;
        if (parse_execution_report(j, &ev->u.order, why, why_len) == 0) {
            kind = CQ_TRADER__USER_ORDER;
        }
    } else if (strcmp(e, "outboundAccountPosition") == 0) {
        ev->kind = CQ_TRADER_EV_BALANCE_UPDATE;
        if (parse_position(j, ev, why, why_len) == 0) {
            kind = CQ_TRADER__USER_BALANCE;
        }
    } else if (strcmp(e, "userStreamGap") == 0) {
        ev->kind = CQ_TRADER_EV_STREAM_GAP;
        kind = CQ_TRADER__USER_GAP;
    } else {
        kind = CQ_TRADER__USER_OTHER;
    }
    json_decref(j);
    return kind;
}

int cq_trader__parse_account(const json_t *o, struct cq_trader_event *ev, size_t *dropped,
                             char *why, size_t why_len)
{
    *dropped = 0;
    ev->u.balances.n = 0;
    const json_t *b = json_object_get(o, "balances");
    if (!json_is_array(b)) {
        return fail(why, why_len, "account: \"balances\" is not an array");
    }
    for (size_t i = 0; i < json_array_size(b); i++) {
        const json_t *e = json_array_get(b, i);
        struct cq_trader_balance bal;
        if (!json_is_object(e) ||
            get_str(e, "asset", bal.asset, sizeof(bal.asset), true, why, why_len) < 0 ||
            get_dec(e, "free", true, &bal.free, why, why_len) < 0 ||
            get_dec(e, "locked", true, &bal.locked, why, why_len) < 0) {
            return -1;
        }
        if (cq_dec_sign(bal.free) == 0 && cq_dec_sign(bal.locked) == 0) {
            continue;
        }
        if (ev->u.balances.n == CQ_TRADER_ASSETS_MAX) {
            (*dropped)++;
            continue;
        }
        ev->u.balances.items[ev->u.balances.n++] = bal;
    }
    return 0;
}

int cq_trader__parse_balance_list(const char *text, struct cq_trader_event *ev, char *why,
                                  size_t why_len)
{
    ev->u.balances.n = 0;
    const char *s = text;
    while (s != NULL && *s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (ev->u.balances.n == CQ_TRADER_ASSETS_MAX) {
            return fail(why, why_len, "more than %d balances", CQ_TRADER_ASSETS_MAX);
        }
        struct cq_trader_balance *b = &ev->u.balances.items[ev->u.balances.n];
        memset(b, 0, sizeof(*b));
        if (eq == NULL || eq == s || (size_t)(eq - s) >= sizeof(b->asset) ||
            cq_dec_parse(eq + 1, len - (size_t)(eq - s) - 1, &b->free) < 0 ||
            cq_dec_sign(b->free) < 0) {
            return fail(why, why_len, "\"%.*s\" is not ASSET=AMOUNT", (int)len, s);
        }
        memcpy(b->asset, s, (size_t)(eq - s));
        ev->u.balances.n++;
        s = comma != NULL ? comma + 1 : NULL;
    }
    return 0;
}

int cq_trader__parse_symbol(const json_t *sym, struct cq_trader_symbol_info *out, char *why,
                            size_t why_len)
{
    char status[24];
    memset(out, 0, sizeof(*out));
    if (!json_is_object(sym) ||
        get_str(sym, "symbol", out->symbol, sizeof(out->symbol), true, why, why_len) < 0 ||
        get_str(sym, "baseAsset", out->base, sizeof(out->base), true, why, why_len) < 0 ||
        get_str(sym, "quoteAsset", out->quote, sizeof(out->quote), true, why, why_len) < 0 ||
        get_str(sym, "status", status, sizeof(status), true, why, why_len) < 0) {
        return -1;
    }
    out->trading = strcmp(status, "TRADING") == 0;
    struct cq_err err;
    cq_err_clear(&err);
    if (cq_filters_from_json(sym, &out->filters, &err) < 0) {
        return fail(why, why_len, "%s filters: %s", out->symbol, err.message);
    }
    return 0;
}

int cq_trader__parse_ticker_price(const json_t *o, char *symbol, size_t symbol_len, cq_dec *price,
                                  char *why, size_t why_len)
{
    if (!json_is_object(o) || get_str(o, "symbol", symbol, symbol_len, true, why, why_len) < 0 ||
        get_dec(o, "price", true, price, why, why_len) < 0) {
        return -1;
    }
    if (cq_dec_sign(*price) <= 0) {
        return fail(why, why_len, "ticker price of %s is not positive", symbol);
    }
    return 0;
}

int cq_trader__attach_trades(json_t *order, const json_t *my_trades, char *why, size_t why_len)
{
    uint64_t order_id = 0;
    if (!json_is_object(order) || get_u64(order, "orderId", true, &order_id, why, why_len) < 0) {
        return -1;
    }
    if (!json_is_array(my_trades)) {
        return fail(why, why_len, "myTrades: the answer is not an array");
    }
    json_t *fills = json_array();
    for (size_t i = 0; i < json_array_size(my_trades); i++) {
        const json_t *t = json_array_get(my_trades, i);
        uint64_t oid = 0, id = 0;
        if (!json_is_object(t) || get_u64(t, "orderId", true, &oid, why, why_len) < 0 ||
            get_u64(t, "id", true, &id, why, why_len) < 0) {
            json_decref(fills);
            return -1;
        }
        if (oid != order_id) {
            continue;
        }
        json_t *f = json_pack("{s:O,s:O,s:O,s:O,s:I}", "price", json_object_get(t, "price"), "qty",
                              json_object_get(t, "qty"), "commission",
                              json_object_get(t, "commission"), "commissionAsset",
                              json_object_get(t, "commissionAsset"), "tradeId", (json_int_t)id);
        if (f == NULL) {
            json_decref(fills);
            return fail(why, why_len, "myTrades: trade %llu lacks price, qty or commission",
                        (unsigned long long)id);
        }
        json_array_append_new(fills, f);
    }
    json_object_set_new(order, "fills", fills);
    return 0;
}
