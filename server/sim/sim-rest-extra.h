/*
 * sim-rest-extra.h — the bodies of coinquant-simex's smaller /api/v3
 * endpoints (rest_extra.c): avgPrice, rateLimit/order, account/commission,
 * and the unfilled-order count they and POST /order share. rest.c routes,
 * parses and authenticates; these build the answers. Private to server/sim/.
 *
 * Threads: every function here is called with st->lock held.
 */
#ifndef CQ_SIM_REST_EXTRA_H
#define CQ_SIM_REST_EXTRA_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sim-state.h"

/* The unfilled-order count (faqs/order_count_decrement.md): "When an order
 * is filled for the first time (partially or fully), your unfilled order
 * count will be decremented by one order for all intervals of the ORDERS
 * rate limit." Gives back one order per first fill the engine made since
 * the last call (at placement or later as maker), never below zero. The
 * windows must have been rolled to now. */
void cq_sim__order_count_sync_locked(struct cq_sim__state *st);

/* GET /api/v3/avgPrice: {"mins":5,"price":"…","closeTime":ms}. time_us:
 * closeTime in microseconds (X-MBX-TIME-UNIT). */
json_t *cq_sim__avg_price_json(struct cq_sim__state *st, int symbol_idx, bool time_us);

/* GET /api/v3/rateLimit/order: the two ORDERS intervals with their count. */
json_t *cq_sim__rate_limit_order_json(struct cq_sim__state *st);

/* GET /api/v3/account/commission for one symbol: standard = the configured
 * maker/taker fees for buyer and seller alike, special and tax zero, no
 * BNB discount. */
json_t *cq_sim__commission_json(struct cq_sim__state *st, int symbol_idx);

/* GET /api/v3/trades ("Recent trades list") and aggTrades ("Compressed/
 * Aggregate trades list"), over the market's tape (cq_sim__market_trades).
 * Each public trade is its own aggregate (a = f = l = the trade id). */
json_t *cq_sim__trades_json(struct cq_sim__state *st, int symbol_idx, size_t limit, bool time_us);
json_t *cq_sim__agg_trades_json(struct cq_sim__state *st, int symbol_idx, uint64_t from_id,
                                int64_t start_ms, int64_t end_ms, size_t limit, bool time_us);

#endif /* CQ_SIM_REST_EXTRA_H */
