/*
 * sim-wsapi.h — coinquant-simex's WebSocket API (/ws-api/v3): the request
 * side of BINANCE_PROTOCOL.md §5.0. ws.c owns the connections and framing;
 * this file answers one request text with one response text and says what
 * happened to the connection's user data subscription. Private to
 * server/sim/.
 */
#ifndef CQ_SIM_WSAPI_H
#define CQ_SIM_WSAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim-state.h"

#define SIM_WSAPI_PATH "/ws-api/v3"
/* Subscription ids one connection may hand out over its life (Binance: "A
 * single session can handle a maximum of 65,535 total subscriptions over its
 * lifetime"); the next subscribe is -2042. */
#define SIM_WSAPI_SUB_IDS_MAX 65535u
#define SIM_WSAPI_ID_MAX 64 /* bytes of a string request id; longer is refused */

/* Method weights (web-socket-api.md). */
#define SIM_WSAPI_WEIGHT_PING 1
#define SIM_WSAPI_WEIGHT_TIME 1
#define SIM_WSAPI_WEIGHT_SUBSCRIBE 2
#define SIM_WSAPI_WEIGHT_UNSUBSCRIBE 2
#define SIM_WSAPI_WEIGHT_SUBSCRIPTIONS 2
#define SIM_WSAPI_WEIGHT_CONNECT 2 /* "Connecting to WebSocket API costs 2 weight." */

/* One connection's session (ws thread only). The simulator has one account,
 * and Binance allows "only one active subscription for a given account on a
 * given connection": at most one is active. */
struct cq_sim__wsapi_session {
    bool hide_rate_limits; /* the URL said ?returnRateLimits=false */
    bool subscribed;
    uint32_t sub_id;  /* the active subscription, when subscribed */
    uint32_t next_id; /* ids handed out so far */
};

struct cq_sim__wsapi_outcome {
    char *reply;     /* owned response text; NULL only when out of memory */
    bool started;    /* a subscription started (sub_id in the session) */
    bool terminated; /* a subscription ended: send eventStreamTerminated */
    uint32_t terminated_id;
};

/* Answer one request. Takes st->lock for the clock and the weight. */
void cq_sim__wsapi_handle(struct cq_sim__state *st, struct cq_sim__wsapi_session *s,
                          const char *text, size_t len, struct cq_sim__wsapi_outcome *out);

/* A connection was established: charge SIM_WSAPI_WEIGHT_CONNECT. Takes st->lock. */
void cq_sim__wsapi_charge_connect(struct cq_sim__state *st);

/* {"subscriptionId":N,"event":{"e":"eventStreamTerminated","E":ms}}; owned, NULL on ENOMEM. */
char *cq_sim__wsapi_terminated_text(uint32_t sub_id, int64_t event_ms);

#endif /* CQ_SIM_WSAPI_H */
