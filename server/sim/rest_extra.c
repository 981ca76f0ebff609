/*
 * rest_extra.c — the bodies of avgPrice, rateLimit/order and
 * account/commission, and the unfilled-order count's give-back on fills
 * (sim-rest-extra.h). Shapes from binance-spot-api-docs rest-api.md.
 */
#include "sim-rest-extra.h"

#include "cq/decimal.h"
#include "sim-engine.h"
#include "sim-market.h"

static json_t *amount_json(cq_dec d)
{
    char buf[CQ_DEC_STR_MAX];
    if (cq_dec_format_scale(d, 8, CQ_ROUND_HALF_EVEN, buf, sizeof(buf)) < 0) {
        cq_dec_format(d, buf, sizeof(buf)); /* at most CQ_DEC_STR_MAX bytes */
    }
    return json_string(buf);
}

void cq_sim__order_count_sync_locked(struct cq_sim__state *st)
{
    struct cq_sim__ratelimit *rl = &st->rl;
    struct cq_sim__engine_stats es;
    cq_sim__engine_get_stats(st->engine, &es);
    if (es.orders_first_filled < rl->first_fills_seen) {
        /* the engine's state was replaced (--state load): start over */
        rl->first_fills_seen = es.orders_first_filled;
        return;
    }
    uint64_t back = es.orders_first_filled - rl->first_fills_seen;
    rl->first_fills_seen = es.orders_first_filled;
    rl->orders_10s = back >= rl->orders_10s ? 0 : rl->orders_10s - (uint32_t)back;
    rl->orders_1d = back >= rl->orders_1d ? 0 : rl->orders_1d - (uint32_t)back;
}

json_t *cq_sim__avg_price_json(struct cq_sim__state *st, int symbol_idx, bool time_us)
{
    int64_t close_ms = 0;
    cq_dec avg = cq_sim__market_avg_price(st->market, symbol_idx, &close_ms);
    return json_pack("{s:i,s:o,s:I}", "mins", AVG_PRICE_MINS, "price", amount_json(avg),
                     "closeTime", (json_int_t)(time_us ? close_ms * 1000 : close_ms));
}

json_t *cq_sim__rate_limit_order_json(struct cq_sim__state *st)
{
    const struct cq_sim__ratelimit *rl = &st->rl;
    return json_pack("[{s:s,s:s,s:i,s:I,s:I},{s:s,s:s,s:i,s:I,s:I}]", "rateLimitType", "ORDERS",
                     "interval", "SECOND", "intervalNum", 10, "limit",
                     (json_int_t)rl->order_limit_10s, "count", (json_int_t)rl->orders_10s,
                     "rateLimitType", "ORDERS", "interval", "DAY", "intervalNum", 1, "limit",
                     (json_int_t)rl->order_limit_1d, "count", (json_int_t)rl->orders_1d);
}

static json_t *rates_json(cq_dec maker, cq_dec taker)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "maker", amount_json(maker), "taker", amount_json(taker),
                     "buyer", amount_json(CQ_DEC_ZERO), "seller", amount_json(CQ_DEC_ZERO));
}

json_t *cq_sim__commission_json(struct cq_sim__state *st, int symbol_idx)
{
    unsigned maker = 0, taker = 0;
    const struct cq_sim__symbol *s = cq_sim__engine_symbol(st->engine, symbol_idx);
    cq_sim__engine_fees(st->engine, &maker, &taker);
    cq_dec m = cq_dec_make((int64_t)maker, 4); /* basis points: 10 = 0.0010 */
    cq_dec t = cq_dec_make((int64_t)taker, 4);
    return json_pack(
        "{s:s,s:o,s:o,s:o,s:{s:b,s:b,s:s,s:o}}", "symbol", s->symbol, "standardCommission",
        rates_json(m, t), "specialCommission", rates_json(CQ_DEC_ZERO, CQ_DEC_ZERO),
        "taxCommission", rates_json(CQ_DEC_ZERO, CQ_DEC_ZERO), "discount", "enabledForAccount", 0,
        "enabledForSymbol", 0, "discountAsset", "BNB", "discount", amount_json(CQ_DEC_ZERO));
}

struct tape_acc {
    json_t *arr;
    bool agg;
    bool time_us;
};

static void add_trade(void *ctx, const struct cq_sim__public_trade *t)
{
    struct tape_acc *acc = ctx;
    json_int_t ms = (json_int_t)(acc->time_us ? t->time_ms * 1000 : t->time_ms);
    if (acc->agg) {
        json_array_append_new(
            acc->arr,
            json_pack("{s:I,s:o,s:o,s:I,s:I,s:I,s:b,s:b}", "a", (json_int_t)t->trade_id, "p",
                      amount_json(t->price), "q", amount_json(t->qty), "f", (json_int_t)t->trade_id,
                      "l", (json_int_t)t->trade_id, "T", ms, "m", t->buyer_is_maker, "M", 1));
        return;
    }
    cq_dec quote = CQ_DEC_ZERO;
    if (cq_dec_mul(t->price, t->qty, 8, CQ_ROUND_HALF_EVEN, &quote) < 0) {
        quote = CQ_DEC_ZERO; /* cannot happen for the model's prices and sizes */
    }
    json_array_append_new(acc->arr,
                          json_pack("{s:I,s:o,s:o,s:o,s:I,s:b,s:b}", "id", (json_int_t)t->trade_id,
                                    "price", amount_json(t->price), "qty", amount_json(t->qty),
                                    "quoteQty", amount_json(quote), "time", ms, "isBuyerMaker",
                                    t->buyer_is_maker, "isBestMatch", 1));
}

json_t *cq_sim__trades_json(struct cq_sim__state *st, int symbol_idx, size_t limit, bool time_us)
{
    struct tape_acc acc = {json_array(), false, time_us};
    cq_sim__market_trades(st->market, symbol_idx, 0, 0, 0, limit, add_trade, &acc);
    return acc.arr;
}

json_t *cq_sim__agg_trades_json(struct cq_sim__state *st, int symbol_idx, uint64_t from_id,
                                int64_t start_ms, int64_t end_ms, size_t limit, bool time_us)
{
    struct tape_acc acc = {json_array(), true, time_us};
    cq_sim__market_trades(st->market, symbol_idx, from_id, start_ms, end_ms, limit, add_trade,
                          &acc);
    return acc.arr;
}
