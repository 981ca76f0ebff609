/*
 * wsapi.h — the user data stream over Binance's WebSocket API (issue 18).
 *
 * Binance retired the listenKey endpoints in production on 2026-02-20; user
 * data now comes only over the WebSocket API (protocol §5.0): connect to
 * `…/ws-api/v3`, send `userDataStream.subscribe.signature` (params apiKey,
 * recvWindow, timestamp; HMAC-SHA256 hex over the params sorted by name,
 * joined `name=value&…`), and every event then arrives wrapped
 * `{"subscriptionId":N,"event":{…}}`.
 *
 * A struct cq_wsapi owns one client of a struct cq_ws_loop (cq/ws_client.h)
 * and lives on the loop's owner thread (the feeder); every callback runs
 * inside cq_ws_loop_service or cq_wsapi_tick, and nothing in it blocks
 * (ARCHITECTURE rule 8): signing is a local HMAC, sending is queued.
 *
 *   - On every connect it subscribes; an error answer (bad signature,
 *     unknown key, timestamp outside recvWindow, rate limit) is retried on
 *     the same connection with backoff (cq/backoff.h, never sooner than a
 *     retryAfter the server gave); no answer within
 *     CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS reconnects.
 *   - `eventStreamTerminated` ends the subscription: it resubscribes (same
 *     backoff). `serverShutdown` reconnects at once. The 24 h cap is the ws
 *     client's max_lifetime (a proactive reconnect before Binance's close).
 *   - Every new subscription is a gap: whatever happened while there was
 *     none was not seen. on_gap is called as soon as the new subscription is
 *     confirmed (the first one too, reason "start"), so the consumer
 *     reconciles over REST with the stream already live again: the stream is
 *     never trusted to be gapless.
 *   - Events of the active subscription go to on_event unwrapped (the
 *     `event` object, compact JSON). A frame that is not a JSON object, or
 *     neither an answer nor an event, is counted (malformed) and dropped;
 *     an event of another subscription id is counted (stray) and dropped.
 *   - Request weight: each answer's `rateLimits` REQUEST_WEIGHT count and
 *     limit are kept (the same per-IP minute REST uses).
 *   - Timestamps are the local wall clock; after a -1021 refusal (outside
 *     recvWindow) the client asks `time` and adds the server's offset to
 *     every later subscribe.
 */
#ifndef CQ_WSAPI_H
#define CQ_WSAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/ws_client.h"

#define CQ_WSAPI_PATH "/ws-api/v3"
#define CQ_WSAPI_URL_MAX 600                /* bytes of a URL, with the NUL */
#define CQ_WSAPI_RECV_WINDOW_MS 5000        /* recvWindow sent with the subscribe */
#define CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS 10000 /* no answer to a subscribe: reconnect */
#define CQ_WSAPI_RETRY_MIN_MS 1000          /* first wait after a refused subscribe */
#define CQ_WSAPI_RETRY_MAX_MS 300000        /* longest wait between two (5 min) */
#define CQ_WSAPI_PROBLEM_MAX 160            /* bytes of the last problem, with the NUL */

enum cq_wsapi_state {
    CQ_WSAPI_IDLE,        /* not started, or stopped */
    CQ_WSAPI_CONNECTING,  /* the connection is not up (connecting or backing off) */
    CQ_WSAPI_SUBSCRIBING, /* a subscribe request is out */
    CQ_WSAPI_RETRY_WAIT,  /* connected, no subscription, waiting to retry */
    CQ_WSAPI_SUBSCRIBED
};

const char *cq_wsapi_state_name(enum cq_wsapi_state s);

struct cq_wsapi_callbacks {
    /* One user data event (the unwrapped `event` object, compact JSON,
     * NUL-terminated). Borrowed for the call. */
    void (*on_event)(void *ctx, const char *json, size_t len, int64_t recv_mono_ms);
    /* A new subscription is live; events before it may have been missed.
     * reason: "start" (the first), or why the previous one ended:
     * "event_stream_terminated", "server_shutdown", or the connection's
     * close reason (cq_ws_client: "closed_by_peer", "lifetime", …). */
    void (*on_gap)(void *ctx, const char *reason, uint64_t gaps, int64_t mono_ms);
    void *ctx;
};

struct cq_wsapi_options {
    const char *url;              /* ws(s)://host[:port]/ws-api/v3; copied */
    const char *api_key;          /* copied */
    const char *api_secret;       /* copied; never logged */
    int64_t backoff_max_ms;       /* reconnect backoff cap; 0 = the ws client's default */
    int64_t max_lifetime_ms;      /* 0 = the ws client's default (23 h 50 min) */
    uint64_t jitter_seed;         /* 0 = from the clock */
    const struct cq_clock *clock; /* NULL = system; borrowed */
};

struct cq_wsapi_stats {
    enum cq_wsapi_state state;
    char reason[64];                    /* why it is in that state (snake_case) */
    char problem[CQ_WSAPI_PROBLEM_MAX]; /* the last refused subscribe; "" after a success */
    int64_t subscription_id;            /* -1 = none */
    uint64_t subscribes_sent, subscribes_ok, subscribes_refused, subscribe_timeouts;
    uint64_t events, malformed, stray, gaps, terminated, server_shutdowns;
    uint32_t retry_failures; /* refused subscribes in a row */
    int64_t retry_in_ms;     /* RETRY_WAIT: time left; else 0 */
    int64_t used_weight_1m;  /* last rateLimits REQUEST_WEIGHT count; -1 = none yet */
    int64_t weight_limit_1m; /* its limit; -1 = none yet */
    int64_t last_error_code; /* the last error answer's code; 0 = none */
    int64_t time_offset_ms;  /* server - local, learned after a -1021; 0 = none */
};

struct cq_wsapi;

/* Attach to loop (not connected until cq_wsapi_start). Owner thread. */
struct cq_wsapi *cq_wsapi_new(struct cq_ws_loop *loop, const struct cq_wsapi_options *opts,
                              const struct cq_wsapi_callbacks *cb, struct cq_err *err);
void cq_wsapi_free(struct cq_wsapi *a);
int cq_wsapi_start(struct cq_wsapi *a) CQ_WUR;
void cq_wsapi_stop(struct cq_wsapi *a);
/* Timers (subscribe retries and timeouts); call on every loop step. */
void cq_wsapi_tick(struct cq_wsapi *a, int64_t now_mono_ms);
/* Milliseconds until cq_wsapi_tick has work (0: now; INT64_MAX: none), so
 * the owner can sleep until then. */
int64_t cq_wsapi_due_in_ms(const struct cq_wsapi *a, int64_t now_mono_ms);
void cq_wsapi_stats(const struct cq_wsapi *a, struct cq_wsapi_stats *out);
json_t *cq_wsapi_stats_json(const struct cq_wsapi_stats *s);
/* The ws client's own stats (NULL before cq_wsapi_new). */
struct cq_ws_client *cq_wsapi_ws(struct cq_wsapi *a);

/* The signed subscribe request into out (id, key, secret, wall ms):
 * -CQ_ETOOBIG when it does not fit, -CQ_EIO when HMAC fails. Pure. */
int cq_wsapi_subscribe_request(uint64_t id, const char *api_key, const char *api_secret,
                               int64_t timestamp_ms, int64_t recv_window_ms, char *out,
                               size_t out_len) CQ_WUR;

/* For tests: what the ws client's callbacks do, driven directly. */
void cq_wsapi__on_message(struct cq_wsapi *a, const char *data, size_t len, int64_t recv_mono_ms);
void cq_wsapi__on_state(struct cq_wsapi *a, enum cq_ws_state state, const char *reason);
/* Replace cq_ws_client_send (a scripted server's tests); NULL restores it. */
typedef int (*cq_wsapi_send_fn)(void *ctx, const char *text, size_t len);
void cq_wsapi__set_sender(struct cq_wsapi *a, cq_wsapi_send_fn send, void *ctx);

#endif /* CQ_WSAPI_H */
