/*
 * feeder.h — the feeder service: owns everything that comes from the
 * exchange (market streams over WebSocket, REST backfill and warm-up, the
 * user data stream) and says honestly how fresh its data is.
 *
 * Threads: cq_feeder_new/free and cq_feeder_reconfigure are called by the
 * supervisor; everything else runs on the feeder's own thread through the
 * struct cq_service it returns (the thread services the WebSocket loop and
 * pushes events into the rings; it never blocks on the network: REST calls
 * run on the feeder's REST worker thread, created in cq_feeder_new and
 * joined in cq_feeder_free, see feeder.c). The feeder is
 * the producer of both rings and never blocks on them:
 *   to_ares    struct cq_market_event: closed candles are never dropped (held
 *              and retried, reported as backpressure), book updates coalesce
 *              (latest per symbol), trades are dropped when full (counted);
 *   to_trader  struct cq_user_event: user data stream events (received
 *              over the WebSocket API, cq/wsapi.h, unwrapped), in order;
 *              when full they are held (bounded) and then dropped with a
 *              counted loss, logged as user_event_dropped. Every new
 *              subscription and every loss is followed by our own
 *              {"e":"userStreamGap","E":ms,"reason":"…","gaps":n} event:
 *              the trader reconciles over REST (open orders and account).
 *
 * Health (service "feeder"): ready when the market stream is connected and
 * every symbol has had a valid message (one that passes cq_msg_check) within
 * CQ_FEEDER_STALE_MS; reasons ws_connecting, ws_disconnected, feeder_stale,
 * ares_backpressure (degraded), user_stream_failed and rate_limited
 * (degraded, still ready if the data is fresh), banned (down). Details carry
 * per-symbol freshness per stream, candle/gap/backfill counters, the REST
 * budget, the WebSocket client stats and the ring counters.
 */
#ifndef CQ_FEEDER_H
#define CQ_FEEDER_H

#include <stddef.h>
#include <stdint.h>

#include "cq/clock.h"
#include "cq/config.h"
#include "cq/health.h"
#include "cq/spsc.h"
#include "cq/service.h"

/* One user data stream message, copied whole. */
#define CQ_USER_EVENT_MAX 2048
struct cq_user_event {
    int64_t recv_mono_ms;
    uint32_t len;
    char json[CQ_USER_EVENT_MAX]; /* NUL-terminated */
};

struct cq_feeder_options {
    struct cq_config *cfg;         /* a reference is taken */
    struct cq_health_board *board; /* borrowed */
    const char *rest_url;          /* venue; copied */
    const char *ws_url;            /* venue; copied */
    const char *wsapi_url;         /* the WebSocket API (…/ws-api/v3) for the user data
                                    * stream; NULL or "": none; copied */
    const char *api_key;           /* NULL: no user data stream; copied */
    const char *api_secret;        /* signs the user data subscription; NULL: no user
                                    * data stream; copied into the WS API client only */
    struct cq_spsc *to_ares;       /* borrowed; the feeder is its producer */
    struct cq_spsc *to_trader;     /* borrowed, may be NULL */
    const struct cq_clock *clock;  /* NULL = system; borrowed */
};

struct cq_feeder;

struct cq_feeder *cq_feeder_new(const struct cq_feeder_options *opts, struct cq_err *err);
void cq_feeder_free(struct cq_feeder *feeder);
/* The thread frame to start, watch and stop. Borrowed. */
struct cq_service *cq_feeder_service(struct cq_feeder *feeder);
/* Apply reloadable keys (CQ_FEEDER_STALE_MS). Supervisor thread. */
void cq_feeder_reconfigure(struct cq_feeder *feeder, const struct cq_config *cfg);

#endif /* CQ_FEEDER_H */
