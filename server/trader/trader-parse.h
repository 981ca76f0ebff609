/*
 * trader-parse.h — exchange JSON -> the decision core's events (private to
 * server/trader/, tested by tests/unit/test_trader_parse.c on the shapes the
 * simulator and Binance send).
 *
 * Every function is pure: it reads its arguments, fills its output and
 * says in why (one sentence, why_len bytes) what was wrong with the input.
 * Decimals are parsed exactly (cq_dec) from the exchange's strings; a
 * number where the exchange sends a string is refused, never converted
 * through a double.
 */
#ifndef CQ_TRADER_PARSE_H
#define CQ_TRADER_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cq/trader.h"

/* The most fills one FULL place response is turned into (a market order
 * sweeping more levels than this is delivered as its last cumulative
 * update: exact totals, the per-trade commissions beyond it merged into
 * that update's). */
#define CQ_TRADER_PARSE_FILLS_MAX 32

enum cq_trader__user_kind {
    CQ_TRADER__USER_ORDER,   /* executionReport -> EV_ORDER_UPDATE */
    CQ_TRADER__USER_BALANCE, /* outboundAccountPosition -> EV_BALANCE_UPDATE */
    CQ_TRADER__USER_GAP,     /* our userStreamGap -> EV_STREAM_GAP */
    CQ_TRADER__USER_OTHER,   /* balanceUpdate, listStatus, eventStreamTerminated, …: ignored */
    CQ_TRADER__USER_BAD      /* not JSON, or a known event missing a field: why says which */
};

/* One user data stream event (the feeder's unwrapped JSON). ev is filled for
 * ORDER, BALANCE and GAP (now_ms set by the caller afterwards). */
enum cq_trader__user_kind cq_trader__parse_user_event(const char *json, size_t len,
                                                      struct cq_trader_event *ev, char *why,
                                                      size_t why_len);

/* An order object: GET /api/v3/order, an openOrders element, a cancel
 * answer (DELETE /api/v3/order: origClientOrderId is the order's id) or a
 * place answer without fills. 0 or -1 (why). */
int cq_trader__parse_order(const json_t *o, struct cq_trader_order_update *out, char *why,
                           size_t why_len);

/* A place answer (newOrderRespType FULL): one update per fill, each with the
 * cumulative executed_qty / cum_quote up to that fill, the last with the
 * answer's own totals and status; no fills: one update. Returns the count
 * (1..max) or 0 (why). */
size_t cq_trader__parse_place_response(const json_t *o, struct cq_trader_order_update *out,
                                       size_t max, char *why, size_t why_len);

/* GET /api/v3/myTrades?orderId= rows -> a "fills" array on the order object
 * (a query answer), in the FULL answer's shape, so that
 * cq_trader__parse_place_response gives one update per trade with its
 * commission: an order learned only by a query (its answer and events lost
 * in a crash or an outage) still has its fees applied, once per trade id.
 * Rows of other orders are skipped. 0 or -1 (why). */
int cq_trader__attach_trades(json_t *order, const json_t *my_trades, char *why, size_t why_len);

/* GET /api/v3/account: the balances (zero ones skipped; more than
 * CQ_TRADER_ASSETS_MAX non-zero ones: the first ones kept, *dropped counts
 * the rest). 0 or -1 (why). */
int cq_trader__parse_account(const json_t *o, struct cq_trader_event *ev, size_t *dropped,
                             char *why, size_t why_len);

/* "USDT=10000,BTC=0.5" (CQ_SIM_BALANCES' format) as an account snapshot:
 * dryrun without API keys trades against this virtual account. */
int cq_trader__parse_balance_list(const char *text, struct cq_trader_event *ev, char *why,
                                  size_t why_len);

/* One element of exchangeInfo's "symbols". 0 or -1 (why). */
int cq_trader__parse_symbol(const json_t *sym, struct cq_trader_symbol_info *out, char *why,
                            size_t why_len);

/* GET /api/v3/ticker/price?symbol=: {"symbol","price"}. 0 or -1 (why). */
int cq_trader__parse_ticker_price(const json_t *o, char *symbol, size_t symbol_len, cq_dec *price,
                                  char *why, size_t why_len);

/* Binance order status -> the core's state ("NEW" -> OPEN, …); false when
 * unknown. */
bool cq_trader__order_state_parse(const char *s, enum cq_trader_order_state *out);

#endif /* CQ_TRADER_PARSE_H */
