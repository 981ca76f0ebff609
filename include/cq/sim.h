/*
 * sim.h — coinquant-simex: a Binance-compatible spot exchange on loopback
 * (REST + WebSocket), as a library. The `coinquant-simex` binary and
 * coinquantd's paper mode (embedded, ephemeral ports) both use it, so paper
 * mode exercises coinquant's real HTTP, WS and signing code.
 *
 * Threads: cq_sim_start creates the simulator's threads (REST server, WS
 * server, market clock); only the owner (the binary's main, or coinquantd's
 * supervisor) calls new/start/stop/free. Everything else happens over the
 * sockets. See server/sim/sim-state.h for the inside (layers, threads, the lock).
 */
#ifndef CQ_SIM_H
#define CQ_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/market.h"

#define CQ_SIM_DEFAULT_API_KEY "simex-local-api-key-0000000000000000000000000000000000000000000000"
#define CQ_SIM_DEFAULT_API_SECRET                                                                  \
    "simex-local-api-secret-000000000000000000000000000000000000000000"
#define CQ_SIM_DEFAULT_BALANCES "USDT=10000,BTC=0,ETH=0"

/* An asset name, in characters (A-Z 0-9): never longer than a symbol, so the
 * base of any CQ_SYMBOL_MAX_CHARS symbol fits. Buffers hold it and the NUL. */
#define CQ_SIM_ASSET_MAX_CHARS CQ_SYMBOL_MAX_CHARS
#define CQ_SIM_ASSET_LEN (CQ_SIM_ASSET_MAX_CHARS + 1)

struct cq_sim_balance {
    char asset[CQ_SIM_ASSET_LEN];
    cq_dec amount;
};

struct cq_sim_options {
    const char *bind;           /* "127.0.0.1" */
    int rest_port;              /* 0 = ephemeral */
    int ws_port;                /* 0 = ephemeral */
    const char *const *symbols; /* e.g. {"BTCUSDT","ETHUSDT"} */
    size_t n_symbols;
    const char *data_path; /* recorded klines (dir or file); NULL = synthetic */
    uint32_t speed;        /* replay multiplier, 1..1000000 */
    bool speed_max;        /* --speed max: no waiting between events */
    /* Recorded WebSocket captures (trade + bookTicker + depth, the format of
     * ../shared/data/ws/recordings) replayed as the market of their symbol:
     * a comma-separated list of files, NULL = none (docs/SIMEX.md
     * "Recorded book"). */
    const char *book_recording;
    /* Order entry latency in market-time milliseconds (docs/SIMEX.md
     * "Order entry latency"): an order or cancel reaches the book
     * order_latency_ms after it arrives, its answer leaves
     * response_latency_ms after that; 0..CQ_SIM_LATENCY_MS_MAX, 0 = none. */
    uint32_t order_latency_ms;
    uint32_t response_latency_ms;
    /* The most public trades the synthetic market makes of one 1m bar, in
     * trades (its volume then goes into fewer, larger trades; the bar's
     * OHLCV is unchanged); 0 = the calibrated bound (docs/SIMEX.md
     * "Calibration"). For tests and in-process runs that want fewer
     * messages per bar at high speed. */
    uint32_t trades_per_bar_max;
    uint64_t seed;
    const char *api_key;    /* NULL = CQ_SIM_DEFAULT_API_KEY */
    const char *api_secret; /* NULL = CQ_SIM_DEFAULT_API_SECRET */
    const struct cq_sim_balance *balances;
    size_t n_balances;
    unsigned maker_bps, taker_bps; /* fees; default 10/10 */
    const char *state_path;        /* --state FILE, or NULL */
    /* Limits announced in exchangeInfo and enforced (0 = Binance's defaults:
     * 6000 weight per minute, 50 orders per 10 s, 160000 per day). Tests
     * lower them to reach 429 quickly. */
    uint32_t weight_limit_1m;
    uint32_t order_limit_10s;
    uint32_t order_limit_1d;
    /* The /_sim/ control path (faults, balances, pause, state). NULL: open to
     * loopback peers, as before. Set: every /_sim/ request must also carry
     * "Authorization: Bearer <control_token>" (compared in constant time),
     * else 401. CQ_SIM_CONTROL_TOKEN_MIN..MAX printable ASCII characters, no
     * spaces. coinquantd's paper mode passes a random per-run token that it
     * keeps in the data directory (0600). Copied; registered with the log's
     * redaction like api_secret. */
    const char *control_token;
    /* REST connection limits (0 = the default named in brackets). A request
     * head (request line and headers, and then any body) must arrive within
     * rest_head_deadline_ms of accept, or of the previous answer on a
     * keep-alive connection [CQ_SIM_REST_HEAD_DEADLINE_MS]; at most
     * rest_per_ip_max connections per peer address
     * [CQ_SIM_REST_PER_IP_MAX] and rest_connections_max in all
     * [CQ_SIM_REST_CONNECTIONS_MAX]. At a cap the oldest connection still
     * waiting for its request is closed to make room; if every connection is
     * busy with a request, the newcomer gets a fast 503 (Retry-After: 1). */
    uint32_t rest_head_deadline_ms;
    uint32_t rest_per_ip_max;
    uint32_t rest_connections_max;
    /* The matching engine's queue model (docs/SIMEX.md "Queue model"):
     * "conservative" (NULL), "probabilistic" or "none" (before issue 19);
     * queue_power the probabilistic model's n, 1..4 (0 = 3); refill
     * "change" or "net" (NULL: net under a queue model, change under none). */
    const char *queue_model;
    unsigned queue_power;
    const char *refill;
};

#define CQ_SIM_LATENCY_MS_MAX 10000u
#define CQ_SIM_CONTROL_TOKEN_MIN 16  /* characters */
#define CQ_SIM_CONTROL_TOKEN_MAX 256 /* characters */
#define CQ_SIM_API_KEY_MAX 256       /* characters, like Binance's header limit */
#define CQ_SIM_API_SECRET_MAX 512    /* characters */
#define CQ_SIM_REST_HEAD_DEADLINE_MS 5000u
#define CQ_SIM_REST_PER_IP_MAX 64u
#define CQ_SIM_REST_CONNECTIONS_MAX 128u

struct cq_sim;

struct cq_sim *cq_sim_new(const struct cq_sim_options *opts, struct cq_err *err);
/* Bind both ports and start the threads; loads --state first if given. */
int cq_sim_start(struct cq_sim *sim, struct cq_err *err) CQ_WUR;
/* "http://127.0.0.1:P" and "ws://127.0.0.1:Q" once started. Borrowed. */
const char *cq_sim_rest_url(const struct cq_sim *sim);
const char *cq_sim_ws_url(const struct cq_sim *sim);
/* Stop the threads (saves --state if given). Idempotent. */
void cq_sim_stop(struct cq_sim *sim);
void cq_sim_free(struct cq_sim *sim);

/* "USDT=10000,BTC=0.5" -> array (at most max entries). -CQ_EPARSE with err
 * naming the bad entry. */
int cq_sim_parse_balances(const char *s, struct cq_sim_balance *out, size_t max, size_t *n,
                          struct cq_err *err) CQ_WUR;

#endif /* CQ_SIM_H */
