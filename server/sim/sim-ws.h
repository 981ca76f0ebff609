/*
 * sim-ws.h — coinquant-simex's WebSocket front end (ws.c, libwebsockets).
 * Private to server/sim/. It sees the shared state layer (sim-state.h) and
 * nothing above it.
 */
#ifndef CQ_SIM_WS_H
#define CQ_SIM_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "sim-state.h"

struct cq_sim__ws;

/* ---- ws.c: the WebSocket server (libwebsockets) --------------------------- */

struct cq_sim__ws *cq_sim__ws_start(struct cq_sim__state *st, int *port_out, struct cq_err *err);
void cq_sim__ws_stop(struct cq_sim__ws *ws); /* joins; NULL ok */

/* Publishers: called by sim.c's listeners with st->lock held. They format
 * the payload once and queue it for the WS thread (bounded; when full the
 * event is dropped and counted in ws_messages_dropped). Subscribers get it
 * raw on /ws/<stream> connections and wrapped {"stream","data"} on combined
 * ones. Stream names are lower case: "btcusdt@trade". */
void cq_sim__ws_publish_trade(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                              const struct cq_sim__public_trade *t, int64_t event_ms);
void cq_sim__ws_publish_book(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                             const struct cq_sim__book_view *book, uint64_t update_id,
                             int64_t event_ms);
void cq_sim__ws_publish_kline(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                              const char *interval, const struct cq_sim__kline *k,
                              int64_t event_ms);
/* User data stream: delivered to every connection on a valid listen key. */
void cq_sim__ws_publish_execution(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                                  const struct cq_sim__exec_report *r);
void cq_sim__ws_publish_account(struct cq_sim__ws *ws, const struct cq_sim__balance *changed,
                                size_t n, int64_t event_ms);
/* A listen key expired or was deleted: send listenKeyExpired (expiry only)
 * and close its connections. */
void cq_sim__ws_listen_key_closed(struct cq_sim__ws *ws, const char *key, bool expired,
                                  int64_t event_ms);

/* ---- extras: any thread; they take no lock ------------------------------- */

/* Does any open connection subscribe to this stream? `stream` is the
 * lower-case name the publishers use: "btcusdt@kline_3m", "btcusdt@trade",
 * "btcusdt@depth" (for @depth and @depth@1000ms), "btcusdt@depth@100ms",
 * "btcusdt@depth5" (with or without a speed suffix)…
 * Lock-free and cheap: a caller can skip aggregating klines of intervals
 * nobody watches. May answer true for a stream nobody watches (a hash
 * collision); answers false only when no connection had subscribed at the
 * time of the call. NULL ws: false. */
bool cq_sim__ws_has_subscribers(struct cq_sim__ws *ws, const char *stream);

/* Bytes waiting to be sent: the central queue plus every connection's send
 * queue. A gauge (relaxed); the market thread paces --speed max with it.
 * NULL ws: 0. */
size_t cq_sim__ws_backlog_bytes(struct cq_sim__ws *ws);

/* Bytes of subscription storage held by open connections (freed when a
 * connection closes). A gauge (relaxed). NULL ws: 0. */
size_t cq_sim__ws_subscription_bytes(struct cq_sim__ws *ws);

#endif /* CQ_SIM_WS_H */
