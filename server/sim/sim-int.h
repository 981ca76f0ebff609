/*
 * sim-int.h — the inside of coinquant-simex, shared by the files in server/sim/ only.
 *
 * Threads and the one lock:
 *   market   sim.c's clock thread: advances the market model (at --speed, or
 *            event to event for --speed max) under sim->lock. The market's
 *            listener callbacks (still under the lock) let the engine fill
 *            resting orders and publish stream events through cq_sim__ws_publish_*.
 *   rest     libmicrohttpd's internal thread (rest.c). Every handler takes
 *            sim->lock around engine/market/fault access, and never holds it
 *            while sleeping (injected latency) or doing socket I/O.
 *   rest watchdog  rest.c's connection watchdog: closes (shutdown(2)) REST
 *            connections whose request missed its deadline. Takes only the
 *            REST connection table's own leaf lock, never sim->lock.
 *   ws       the libwebsockets service thread (ws.c). It never takes
 *            sim->lock: it drains the outbound queue that cq_sim__ws_publish_*
 *            fill (their own mutex), and reads the WS fault flags (atomics).
 *            Listen-key checks use cq_sim__listen_key_valid (takes sim->lock
 *            briefly; never called with the queue mutex held).
 * Lock order: sim->lock, then the WS queue mutex. Nothing takes them in the
 * other order.
 */
#ifndef CQ_SIM_INT_H
#define CQ_SIM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/sim.h"
#include "sim/sim-engine.h"
#include "sim/sim-market.h"

#define SIM_LISTEN_KEY_LEN 64
#define SIM_LISTEN_KEYS_MAX 16
#define SIM_LISTEN_KEY_TTL_MS (60LL * 60 * 1000)

/* Fault injection state, set over the /_sim/ control path (rest.c).
 * Fields without _Atomic are guarded by sim->lock. */
struct cq_sim__faults {
    int64_t rest_latency_ms;         /* added before every /api answer */
    uint32_t rest_5xx_per_mille;     /* share of /api requests answered 503 (seeded) */
    int64_t storm_until_ms;          /* wall ms: until then every /api request is 429;
                                      * a client that keeps going gets 418 */
    uint32_t reject_next_orders;     /* next N POST /order answered -2010 */
    bool force_insufficient;         /* orders fail -2010 insufficient balance */
    int64_t clock_skew_ms;           /* added to the server's time */
    bool market_paused;              /* mirrored into cq_sim__market_set_paused */
    /* WS thread reads these without the lock. */
    _Atomic uint64_t ws_drop_generation; /* bumped: close every WS connection */
    _Atomic bool ws_stall;               /* keep connections, send no data */
};

/* Rate-limit accounting (rest.c), guarded by sim->lock. One client IP in
 * practice (loopback), so one set of counters. */
struct cq_sim__ratelimit {
    uint32_t weight_limit_1m, order_limit_10s, order_limit_1d;
    int64_t weight_window_start_ms;  /* wall ms, minute-aligned */
    uint32_t weight_used;
    int64_t orders_10s_window_start_ms;
    uint32_t orders_10s;
    int64_t orders_1d_window_start_ms;
    uint32_t orders_1d;
    uint32_t requests_after_429;     /* in the current window; over a threshold -> ban */
    int64_t banned_until_ms;         /* 418 until then */
    uint32_t bans;                   /* ban length doubles: 2 min, 4 min, … 3 days */
};

struct cq_sim__listen_key {
    char key[SIM_LISTEN_KEY_LEN + 1];
    int64_t expires_ms;              /* wall ms */
    bool active;
};

/* Counters for GET /_sim/state and the benchmark. Guarded by sim->lock
 * except where _Atomic. */
struct cq_sim__counters {
    uint64_t rest_requests;
    uint64_t rest_errors_4xx, rest_errors_5xx;
    uint64_t rest_429, rest_418;
    uint64_t market_events;
    _Atomic uint64_t ws_connections;     /* open now */
    _Atomic uint64_t ws_messages_sent;
    _Atomic uint64_t ws_messages_dropped; /* queue full or slow client */
};

struct cq_sim__rest;  /* rest.c */
struct cq_sim__ws;    /* ws.c */

struct cq_sim {
    struct cq_sim_options opts;      /* strings below are owned copies */
    char *bind;
    char *data_path;
    char *state_path;
    char *api_key;
    char *api_secret;                /* wiped on free */
    char *control_token;             /* NULL = /_sim/ open to loopback; wiped on free */
    char (*symbols)[CQ_SYMBOL_LEN];
    struct cq_sim_balance *balances;

    pthread_mutex_t lock;            /* THE lock: engine, market, faults, rl, keys */
    struct cq_sim__engine *engine;       /* owned */
    struct cq_sim__market *market;       /* owned */
    struct cq_sim__faults faults;
    struct cq_sim__ratelimit rl;
    struct cq_sim__listen_key listen_keys[SIM_LISTEN_KEYS_MAX];
    struct cq_sim__counters counters;
    uint64_t rng_state;              /* seeded; for fault sampling and listen keys */

    struct cq_sim__rest *rest;           /* owned */
    struct cq_sim__ws *ws;               /* owned */
    char rest_url[96];
    char ws_url[96];

    pthread_t market_thread;
    bool market_thread_running;
    /* --state was loaded (or absent) at start: only then may stop write it,
     * so a file refused at start is never overwritten. */
    bool state_writable;
    atomic_bool stop;
    int64_t market_start_wall_ms;    /* wall time when the market clock started */
    int64_t market_start_sim_ms;
};

/* ---- sim.c ----------------------------------------------------------------- */

/* Server time in ms: the real clock plus the injected skew. Caller holds the
 * lock (it reads faults.clock_skew_ms). */
int64_t cq_sim__server_time_ms(const struct cq_sim *sim);
/* Real wall clock, ms (no skew). Any thread. */
int64_t cq_sim__wall_ms(void);
/* Seeded 64-bit random number. Caller holds the lock. */
uint64_t cq_sim__rand(struct cq_sim *sim);

/* Listen keys (caller holds the lock). create returns the existing active
 * key if there is one (and extends it), like Binance. keepalive/delete
 * return -CQ_ENOTFOUND for an unknown or expired key. */
const char *cq_sim__listen_key_create(struct cq_sim *sim, int64_t now_ms);
int cq_sim__listen_key_keepalive(struct cq_sim *sim, const char *key, int64_t now_ms);
int cq_sim__listen_key_delete(struct cq_sim *sim, const char *key);
/* Takes the lock itself: for the WS thread. */
bool cq_sim__listen_key_valid(struct cq_sim *sim, const char *key);

/* The market's current book as the engine wants it (caller holds the lock). */
void cq_sim__book_view(struct cq_sim *sim, int symbol_idx, struct cq_sim__book_view *out);

/* GET /_sim/state body (caller holds the lock): orders, balances, counters,
 * faults, rate-limit state. New reference. */
json_t *cq_sim__state_json(struct cq_sim *sim);

/* ---- rest.c: the REST server (libmicrohttpd) ----------------------------- */

/* Bind opts.bind:rest_port (0 = ephemeral); *port_out gets the real port.
 * Serves /api/v3/... and the /_sim/ control path (loopback peers only). */
struct cq_sim__rest *cq_sim__rest_start(struct cq_sim *sim, int *port_out, struct cq_err *err);
void cq_sim__rest_stop(struct cq_sim__rest *rest); /* joins; NULL ok */
/* The REST connection table, for GET /_sim/state. Any thread (takes the
 * table's own leaf lock; may be called with sim->lock held). NULL: zeros. */
struct cq_sim__rest_stats {
    uint64_t open, waiting;                 /* connections now; waiting for a request */
    uint64_t evicted_deadline;              /* request not in by the deadline */
    uint64_t evicted_for_room;              /* closed to make room under a cap */
    uint64_t refused_busy;                  /* answered 503: every slot busy */
    uint64_t head_deadline_ms, per_ip_max, connections_max;
};
void cq_sim__rest_stats(struct cq_sim__rest *rest, struct cq_sim__rest_stats *out);

/* ---- ws.c: the WebSocket server (libwebsockets) --------------------------- */

struct cq_sim__ws *cq_sim__ws_start(struct cq_sim *sim, int *port_out, struct cq_err *err);
void cq_sim__ws_stop(struct cq_sim__ws *ws); /* joins; NULL ok */

/* Publishers: called by sim.c's listeners with sim->lock held. They format
 * the payload once and queue it for the WS thread (bounded; when full the
 * event is dropped and counted in ws_messages_dropped). Subscribers get it
 * raw on /ws/<stream> connections and wrapped {"stream","data"} on combined
 * ones. Stream names are lower case: "btcusdt@trade". */
void cq_sim__ws_publish_trade(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                          const struct cq_sim__public_trade *t, int64_t event_ms);
void cq_sim__ws_publish_book(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                         const struct cq_sim__book_view *book, uint64_t update_id, int64_t event_ms);
void cq_sim__ws_publish_kline(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym, const char *interval,
                          const struct cq_sim__kline *k, int64_t event_ms);
/* User data stream: delivered to every connection on a valid listen key. */
void cq_sim__ws_publish_execution(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                              const struct cq_sim__exec_report *r);
void cq_sim__ws_publish_account(struct cq_sim__ws *ws, const struct cq_sim__balance *changed, size_t n,
                            int64_t event_ms);
/* A listen key expired or was deleted: send listenKeyExpired (expiry only)
 * and close its connections. */
void cq_sim__ws_listen_key_closed(struct cq_sim__ws *ws, const char *key, bool expired,
                              int64_t event_ms);

#endif /* CQ_SIM_INT_H */
