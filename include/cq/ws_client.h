/*
 * ws_client.h — the Binance WebSocket client (libwebsockets).
 *
 * A struct cq_ws_loop owns one lws context; any number of clients (the
 * market streams, the user data stream) attach to it. The owner thread (the
 * feeder) calls cq_ws_loop_service() in its loop; every callback runs there,
 * inside that call. Other threads may only call cq_ws_loop_wake() (it calls
 * lws_cancel_service) and read cq_ws_client_stats() (a snapshot guarded by
 * a small mutex).
 *
 * Each client keeps one connection to its URL alive:
 *   - reconnects with exponential backoff and full jitter after any close,
 *     failure or timeout (backoff resets after a connection has stayed up
 *     for 30 s);
 *   - answers server pings (lws does) and detects a silent stall: no
 *     message for stall_ms -> closes and reconnects (reason "stall"); a
 *     stream that is quiet by nature (the user data stream) passes
 *     CQ_WS_STALL_NONE instead;
 *   - detects a dead connection: nothing at all received, not even a
 *     server ping, for silence_ms -> closes and reconnects (reason
 *     "silence"). Binance pings every 20 s (3 min in older docs), so an
 *     idle user stream stays up on its pings alone;
 *   - reconnects proactively before max_lifetime_ms (Binance closes at 24 h;
 *     reason "lifetime");
 *   - subscriptions live in the URL (/stream?streams=a/b), so a reconnect
 *     restores them; cq_ws_client_set_url changes them (and reconnects).
 * Messages larger than max_message_bytes are dropped and counted (the
 * connection is then closed: Binance never sends one, so something is
 * wrong). Fragments are reassembled in a bounded per-client buffer.
 */
#ifndef CQ_WS_CLIENT_H
#define CQ_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"

enum cq_ws_state {
    CQ_WS_IDLE, /* not started, or stopped */
    CQ_WS_CONNECTING,
    CQ_WS_CONNECTED,
    CQ_WS_BACKOFF /* waiting before the next attempt */
};

const char *cq_ws_state_name(enum cq_ws_state s);

struct cq_ws_callbacks {
    /* One complete text message. data is borrowed for the call. */
    void (*on_message)(void *ctx, const char *data, size_t len, int64_t recv_mono_ms);
    /* The connection state changed; reason is a stable snake_case code:
     * "connected", "closed_by_peer", "connect_failed", "stall", "silence",
     * "lifetime", "oversize", "url_changed", "stopped". */
    void (*on_state)(void *ctx, enum cq_ws_state state, const char *reason);
    void *ctx;
};

/* stall_ms has no default and 0 is refused (-CQ_EINVAL): "0" reads as "no
 * check" to one caller and as "the default" to another, and the user data
 * stream once got a 10 s stall check that way. Say which you mean. */
#define CQ_WS_STALL_NONE ((int64_t)-1) /* no stall check: quiet by nature */
#define CQ_WS_STALL_DEFAULT_MS 10000   /* a market stream's usual choice */
/* silence_ms = 0: 5 min, 15 of Binance's 20 s pings (or one 3-min ping and
 * its jitter, the older schedule) */
#define CQ_WS_SILENCE_DEFAULT_MS 300000

struct cq_ws_client_options {
    const char *url;  /* "ws://127.0.0.1:P/stream?streams=btcusdt@trade/…" (ws:// or wss://) */
    const char *name; /* for logs and stats: "market", "user" */
    int64_t connect_timeout_ms;   /* default 5000 */
    int64_t stall_ms;             /* required: > 0 (no message for that long -> "stall"), or
                                   * CQ_WS_STALL_NONE. Server pings are not messages. */
    int64_t silence_ms;           /* nothing received, server pings included, for that long
                                   * -> "silence"; 0 = CQ_WS_SILENCE_DEFAULT_MS */
    int64_t backoff_base_ms;      /* default 250 */
    int64_t backoff_max_ms;       /* default 30000 */
    int64_t max_lifetime_ms;      /* default 23 h 50 min */
    size_t max_message_bytes;     /* default 1 MiB */
    uint64_t jitter_seed;         /* 0 = from the clock */
    const struct cq_clock *clock; /* NULL = system; borrowed */
};

struct cq_ws_client_stats {
    enum cq_ws_state state;
    uint64_t connects_total; /* successful handshakes */
    uint64_t connect_failures_total;
    uint64_t disconnects_total;
    uint64_t stalls_total;
    uint64_t silences_total; /* reconnects for "silence" */
    uint64_t lifetime_reconnects_total;
    uint64_t messages_total;
    uint64_t bytes_total;
    uint64_t oversize_total;
    int64_t last_message_mono_ms;    /* 0 if none yet */
    int64_t last_rx_mono_ms;         /* anything received, server pings included; 0 if none */
    int64_t connected_since_mono_ms; /* 0 unless connected */
    int64_t next_attempt_in_ms;      /* BACKOFF: time left */
    int64_t backoff_ms;              /* the current backoff cap */
};

struct cq_ws_loop;
struct cq_ws_client;

struct cq_ws_loop *cq_ws_loop_new(struct cq_err *err);
/* Frees the clients still attached too. Owner thread. */
void cq_ws_loop_free(struct cq_ws_loop *loop);
/* Service sockets and timers for up to timeout_ms (0 = don't wait).
 * Owner thread. */
int cq_ws_loop_service(struct cq_ws_loop *loop, int timeout_ms);
/* Make a blocked cq_ws_loop_service return now. Any thread. */
void cq_ws_loop_wake(struct cq_ws_loop *loop);

/* Attach a client (not connected until cq_ws_client_start). Owner thread. */
struct cq_ws_client *cq_ws_client_new(struct cq_ws_loop *loop,
                                      const struct cq_ws_client_options *opts,
                                      const struct cq_ws_callbacks *cb, struct cq_err *err);
void cq_ws_client_free(struct cq_ws_client *c);
int cq_ws_client_start(struct cq_ws_client *c) CQ_WUR;
/* Close and stay closed until started again. */
void cq_ws_client_stop(struct cq_ws_client *c);
/* Replace the URL (e.g. a new listen key); reconnects now. A bad URL:
 * -CQ_EINVAL, err says why, nothing changes and nothing is logged (the
 * caller logs it). */
int cq_ws_client_set_url(struct cq_ws_client *c, const char *url, struct cq_err *err) CQ_WUR;
/* Close now and reconnect (after backoff); reason as in on_state. */
void cq_ws_client_reconnect(struct cq_ws_client *c, const char *reason);
/* Send one text frame (e.g. SUBSCRIBE); queued until writable, bounded.
 * -CQ_ESTATE if not connected, -CQ_EFULL if the send queue is full. */
int cq_ws_client_send(struct cq_ws_client *c, const char *text, size_t len) CQ_WUR;

/* Any thread. */
void cq_ws_client_stats(struct cq_ws_client *c, struct cq_ws_client_stats *out);
json_t *cq_ws_client_stats_json(const struct cq_ws_client_stats *s);

#endif /* CQ_WS_CLIENT_H */
