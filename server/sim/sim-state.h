/*
 * sim-state.h — coinquant-simex's shared state: the layer below its two front
 * ends. Private to server/sim/.
 *
 *   sim.c (lifecycle: new/start/stop/free, the market clock thread, wiring)
 *     |-- rest.c (REST front end, libmicrohttpd)   \  both see only this
 *     |-- ws.c   (WS front end, libwebsockets)      /  layer, never sim.c
 *     `-- state.c (this layer: the lock, engine, market, faults, rate limits,
 *                  listen keys, counters, the seeded RNG, GET /_sim/state)
 *           |-- engine.c + symbols.c (exchange core)
 *           `-- market.c (market model)
 * The state layer calls nothing above it: what a front end must learn from it
 * (a listen key closed) goes through struct cq_sim__state_events, which
 * sim.c wires to ws.c.
 *
 * Threads and the one lock (st->lock, taken through cq_sim__lock so its
 * contention is counted):
 *   market   sim.c's clock thread: advances the market model (at --speed, or
 *            event to event for --speed max) under the lock. The market's
 *            listener callbacks (still under the lock) let the engine fill
 *            resting orders and publish stream events through
 *            cq_sim__ws_publish_* (which take only the WS queue mutex).
 *   rest     libmicrohttpd's connection threads (rest.c, one per connection,
 *            up to CQ_SIM_REST_CONNECTIONS_MAX). Every handler takes the lock
 *            around engine/market/fault/rate-limit access, and never holds it
 *            while sleeping (injected latency) or doing socket I/O.
 *   rest watchdog  rest.c's connection watchdog: closes (shutdown(2)) REST
 *            connections whose request missed its deadline. Takes only the
 *            REST connection table's own leaf lock, never st->lock.
 *   ws       the libwebsockets service thread (ws.c). It takes st->lock only
 *            inside cq_sim__listen_key_valid (briefly, to check a key a
 *            client subscribes to), never with the WS queue mutex held. It
 *            drains the queue the publishers fill and reads the WS fault
 *            flags and counters (atomics) without the lock.
 * Lock order: st->lock, then the WS queue mutex. Nothing takes them in the
 * other order.
 */
#ifndef CQ_SIM_STATE_H
#define CQ_SIM_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/sim.h"
#include "sim-engine.h"
#include "sim-market.h"

#define SIM_LISTEN_KEY_LEN 64
#define SIM_LISTEN_KEYS_MAX 16
#define SIM_LISTEN_KEY_TTL_MS (60LL * 60 * 1000)

/* Fault injection state, set over the /_sim/ control path (rest.c).
 * Fields without _Atomic are guarded by st->lock. */
struct cq_sim__faults {
    int64_t rest_latency_ms;     /* added before every /api answer */
    uint32_t rest_5xx_per_mille; /* share of /api requests answered 503 (seeded) */
    int64_t storm_until_ms;      /* wall ms: until then every /api request is 429;
                                  * a client that keeps going gets 418 */
    uint32_t reject_next_orders; /* next N POST /order answered -2010 */
    bool force_insufficient;     /* orders fail -2010 insufficient balance */
    int64_t clock_skew_ms;       /* added to the server's time */
    bool market_paused;          /* mirrored into cq_sim__market_set_paused */
    uint32_t late_orders;        /* next N POST /order executed, answered late_order_ms late */
    int64_t late_order_ms;
    /* WS thread reads these without the lock. */
    _Atomic uint64_t ws_drop_generation; /* bumped: close every WS connection */
    _Atomic bool ws_stall;               /* keep connections, send no data */
    _Atomic bool ws_user_down;           /* close and refuse WS API (user data) connections */
};

/* Rate-limit accounting (rest.c), guarded by st->lock. One client IP in
 * practice (loopback), so one set of counters. */
struct cq_sim__ratelimit {
    uint32_t weight_limit_1m, order_limit_10s, order_limit_1d;
    int64_t weight_window_start_ms; /* wall ms, minute-aligned */
    uint32_t weight_used;
    int64_t orders_10s_window_start_ms;
    uint32_t orders_10s;
    int64_t orders_1d_window_start_ms;
    uint32_t orders_1d;
    /* The engine's orders_first_filled when the order counts last gave
     * orders back for first fills (rest.c order_count_sync_locked). */
    uint64_t first_fills_seen;
    uint32_t requests_after_429; /* in the current window; over a threshold -> ban */
    int64_t banned_until_ms;     /* 418 until then */
    uint32_t bans;               /* ban length doubles: 2 min, 4 min, … 3 days */
};

struct cq_sim__listen_key {
    char key[SIM_LISTEN_KEY_LEN + 1];
    int64_t expires_ms; /* wall ms */
    bool active;
};

/* Counters for GET /_sim/state and the benchmark. Guarded by st->lock
 * except where _Atomic. */
struct cq_sim__counters {
    uint64_t rest_requests;
    uint64_t rest_errors_4xx, rest_errors_5xx;
    uint64_t rest_429, rest_418;
    uint64_t market_events;
    uint64_t our_trades_printed;     /* our taker fills put on the public tape */
    _Atomic uint64_t ws_connections; /* open now */
    _Atomic uint64_t ws_messages_sent;
    _Atomic uint64_t ws_messages_dropped; /* queue full or slow client */
};

/* Contention of st->lock, for GET /_sim/state ("lock") and
 * tests/bench/bench_sim_contention.c. Written only by the lock's holder. */
struct cq_sim__lock_stats {
    uint64_t acquisitions;
    uint64_t contended;     /* the lock was busy: the taker waited */
    uint64_t wait_ns;       /* total time takers waited */
    uint64_t held_ns;       /* total time it was held */
    uint64_t held_since_ns; /* monotonic, while held */
};

/* Order entry latency (docs/SIMEX.md "Order entry latency"), guarded by
 * st->lock: the market-time instants at which waiting orders and cancels
 * reach the book. The market thread never advances the market clock past
 * the earliest one (cq_sim__latency_barrier_ms), so each such request meets
 * the book exactly as it is at its instant. A request that finds the table
 * full goes ahead without holding the clock (table_full counts it); a wait
 * longer than SIM_LATENCY_WAIT_MAX_MS of wall time (a stalled market clock)
 * gives up and executes where the clock is (wait_timeouts). */
#define SIM_LATENCY_PENDING_MAX 256
#define SIM_LATENCY_WAIT_MAX_MS 30000
struct cq_sim__latency {
    int64_t targets[SIM_LATENCY_PENDING_MAX]; /* market ms, unordered */
    size_t n_targets;
    uint64_t requests_delayed; /* orders and cancels that waited */
    uint64_t table_full;
    uint64_t wait_timeouts;
};

/* Events the state raises to a front end; sim.c wires them to ws.c. Called
 * with st->lock held. NULL function: ignored. */
struct cq_sim__state_events {
    void *ctx;
    /* A listen key expired (expired=true) or was deleted. */
    void (*listen_key_closed)(void *ctx, const char *key, bool expired, int64_t event_ms);
};

struct cq_sim__state {
    struct cq_sim_options opts; /* strings below are owned copies */
    char *bind;
    char *data_path;
    char *book_recording; /* owned copy of opts.book_recording */
    char *state_path;
    char *api_key;
    char *api_secret;    /* wiped on free */
    char *control_token; /* NULL = /_sim/ open to loopback; wiped on free */
    char (*symbols)[CQ_SYMBOL_LEN];
    struct cq_sim_balance *balances;

    pthread_mutex_t lock; /* THE lock: engine, market, faults, rl, keys */
    struct cq_sim__lock_stats lock_stats;
    struct cq_sim__engine *engine; /* owned */
    struct cq_sim__market *market; /* owned */
    struct cq_sim__faults faults;
    struct cq_sim__ratelimit rl;
    struct cq_sim__listen_key listen_keys[SIM_LISTEN_KEYS_MAX];
    struct cq_sim__counters counters;
    struct cq_sim__latency latency;
    uint64_t rng_state; /* seeded; for fault sampling and listen keys */
    struct cq_sim__state_events events;
    atomic_bool stop; /* the simulator is stopping */
};

/* Take and release st->lock, counting contention (struct cq_sim__lock_stats). */
void cq_sim__lock(struct cq_sim__state *st);
void cq_sim__unlock(struct cq_sim__state *st);

/* Server time in ms: the real clock plus the injected skew. Caller holds the
 * lock (it reads faults.clock_skew_ms). */
int64_t cq_sim__server_time_ms(const struct cq_sim__state *st);
/* Real wall clock, ms (no skew). Any thread. */
int64_t cq_sim__wall_ms(void);
/* Seeded 64-bit random number. Caller holds the lock. */
uint64_t cq_sim__rand(struct cq_sim__state *st);

/* Listen keys (caller holds the lock). create returns the existing active
 * key if there is one (and extends it), like Binance. keepalive/delete
 * return -CQ_ENOTFOUND for an unknown or expired key. */
const char *cq_sim__listen_key_create(struct cq_sim__state *st, int64_t now_ms);
int cq_sim__listen_key_keepalive(struct cq_sim__state *st, const char *key, int64_t now_ms);
int cq_sim__listen_key_delete(struct cq_sim__state *st, const char *key);
/* Deactivate keys expired by now_ms (caller holds the lock). */
void cq_sim__listen_keys_expire(struct cq_sim__state *st, int64_t now_ms);
/* Takes the lock itself: for the WS thread. */
bool cq_sim__listen_key_valid(struct cq_sim__state *st, const char *key);

/* Order entry latency (caller holds the lock). hold registers a market-time
 * instant the clock must not pass (false: the table is full); release
 * removes one registration of it; barrier_ms is the earliest one, or
 * INT64_MAX. */
bool cq_sim__latency_hold(struct cq_sim__state *st, int64_t market_ms);
void cq_sim__latency_release(struct cq_sim__state *st, int64_t market_ms);
int64_t cq_sim__latency_barrier_ms(const struct cq_sim__state *st);

/* The market's current book as the engine wants it (caller holds the lock). */
void cq_sim__book_view(struct cq_sim__state *st, int symbol_idx, struct cq_sim__book_view *out);

/* GET /_sim/state body (caller holds the lock): orders, balances, counters,
 * faults, rate-limit state, lock contention. The REST front end adds its own
 * "rest_connections". New reference. */
json_t *cq_sim__state_json(struct cq_sim__state *st);

#endif /* CQ_SIM_STATE_H */
