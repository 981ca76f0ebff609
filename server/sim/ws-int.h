/*
 * ws-int.h — extras of coinquant-simex's WebSocket server (ws.c) beyond the
 * calls declared in sim-int.h. Private to server/sim/.
 *
 * Threads: any thread may call these; they take no lock.
 */
#ifndef CQ_SIM_WS_INT_H
#define CQ_SIM_WS_INT_H

#include <stdbool.h>

struct cq_sim__ws;

/* Does any open connection subscribe to this stream? `stream` is the
 * lower-case name the publishers use: "btcusdt@kline_3m", "btcusdt@trade",
 * "btcusdt@depth" (for @depth and @depth@100ms), "btcusdt@depth5"…
 * Lock-free and cheap: a caller can skip aggregating klines of intervals
 * nobody watches. May answer true for a stream nobody watches (a hash
 * collision); answers false only when no connection had subscribed at the
 * time of the call. NULL ws: false. */
bool cq_sim__ws_has_subscribers(struct cq_sim__ws *ws, const char *stream);

/* Bytes waiting to be sent: the central queue plus every connection's send
 * queue. A gauge (relaxed); the market thread paces --speed max with it.
 * NULL ws: 0. */
#include <stddef.h>
size_t cq_sim__ws_backlog_bytes(struct cq_sim__ws *ws);

/* Bytes of subscription storage held by open connections (freed when a
 * connection closes). A gauge (relaxed). NULL ws: 0. */
size_t cq_sim__ws_subscription_bytes(struct cq_sim__ws *ws);

#endif /* CQ_SIM_WS_INT_H */
