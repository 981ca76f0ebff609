/*
 * rest.c — coinquant-simex's REST server: the Binance spot /api/v3 endpoints
 * (../shared/BINANCE_PROTOCOL.md §1–§3) and the /_sim/ fault-control path,
 * served by libmicrohttpd.
 *
 * Threads
 *   libmicrohttpd runs with MHD_USE_INTERNAL_POLLING_THREAD |
 *   MHD_USE_THREAD_PER_CONNECTION: one listener thread accepts, and each
 *   connection (see "Slow clients" for the limits) gets its own thread that calls the
 *   callbacks below. One thread per connection so that injected latency (a
 *   sleep) delays only the request that drew it, as network latency would,
 *   instead of stalling every client behind one polling loop.
 *   cq_sim__rest_stop() -> MHD_stop_daemon joins all of them.
 *
 * Slow clients (issue 17 item 2)
 *   Thread-per-connection means a connection that trickles its request holds
 *   a thread, and libmicrohttpd's CONNECTION_TIMEOUT_S only measures
 *   inactivity. So every connection is tracked from accept
 *   (MHD_OPTION_NOTIFY_CONNECTION) in a table under rest->conns_lock:
 *   - a request (line, headers, body) must have arrived within
 *     head_deadline_ms (CQ_SIM_REST_HEAD_DEADLINE_MS) of accept; an idle
 *     keep-alive connection gets KEEPALIVE_IDLE_MS after its last answer.
 *     The watchdog thread shuts down (shutdown(2), which wakes the
 *     connection's thread) every connection past its deadline while it waits
 *     for a request;
 *   - at most per_ip_max connections per peer address and connections_max in
 *     all: a newcomer over a cap closes the oldest connection (of its
 *     address, or of all) that is still waiting for its request, so
 *     trickling clients cannot keep a well-behaved one out; if every
 *     connection is busy with a request, the newcomer gets a fast 503
 *     {"code":-1000,…} with Retry-After: 1 and Connection: close.
 *     libmicrohttpd itself refuses (closes) connections past connections_max
 *     + CONNECTION_HEADROOM.
 *   A connection is shut down only while it waits, and its first callback
 *   re-checks the evicted flag under the lock, so a request is either
 *   refused unprocessed or served, never cut half-way. fds are only used
 *   between STARTED and CLOSED, which libmicrohttpd calls before close(2).
 *
 * The lock
 *   Every handler takes sim->lock around engine, market, fault, rate-limit,
 *   listen-key and counter access, in short sections, and never holds it
 *   while sleeping (latency injection), verifying an HMAC, serialising JSON
 *   to text or doing socket I/O (the response is queued after unlock).
 *   Parameter parsing (params.c) and signature checks are lock-free.
 *
 * A request, in order
 *   1. uri_logger (MHD_OPTION_URI_LOG_CALLBACK) stashes the RAW URI — the
 *      query bytes exactly as sent, before libmicrohttpd decodes them — in the
 *      per-request struct rest_conn; the body is collected there by the
 *      reader the admin API shares (cq/http_body.h): at most
 *      SIM_BODY_MAX_BYTES; more, or a Content-Length announcing more, is 413
 *      -1101 (counted in /_sim/state rest_connections.bodies_refused), and a
 *      client that keeps sending past CQ_HTTP_BODY_DISCARD_MAX_BYTES (1 MiB)
 *      after that is disconnected.
 *   2. /_sim/... -> control path (loopback peers only, else 403).
 *   3. /api/...: route by path and method (404 / 405 with a JSON error).
 *   4. Parse the params: raw query + form body (POST/PUT/DELETE with no
 *      Content-Type or application/x-www-form-urlencoded; any other body, e.g.
 *      the connector's empty application/json one, is ignored), query wins.
 *   5. Injected latency: sleep (no lock).
 *   6. Admission under the lock: ban (418) -> storm / weight over the limit
 *      (429, then 418 for a client that keeps going) -> 5xx fault sample.
 *      Weight is charged here; POST/DELETE /order and DELETE /openOrders are
 *      charged 1 only when they fail (0 on success).
 *   7. A parse error from step 4 is answered now.
 *   8. The endpoint: its own params (-1102/-1100/-1106/-1114..-1117/-1120)
 *      -> signed params (recvWindow -1131, timestamp -1102, signature -1102)
 *      -> API key (-2014/-2015, 401) -> timestamp window (-1021) -> signature
 *      (-1022) -> symbol (-1121) -> order rate (-1015) -> faults -> engine
 *      (-1013 filters, -2010 balance/duplicate/would-take/closed, -2011,
 *      -2013). NONE endpoints ignore X-MBX-APIKEY; USER_STREAM ones check
 *      only the key.
 *   9. Headers: X-MBX-USED-WEIGHT-1M and x-mbx-used-weight on every /api
 *      answer, X-MBX-ORDER-COUNT-10S/-1D on POST /order answers that reached
 *      the order counter, Retry-After on 429/418.
 *
 * Rate limits (one client in practice: loopback; one set of counters)
 *   - weight per wall-clock minute; over sim->rl.weight_limit_1m -> 429 -1003
 *     "Too much request weight used; current limit is N request weight per 1
 *     MINUTE. …" with Retry-After = seconds to the minute's end;
 *   - the first 429 of a minute and BAN_AFTER_429 more requests are answered
 *     429; the next one starts a ban: 418 -1003 "Way too much request weight
 *     used; IP banned until <ms>. …" (ms in server time), Retry-After =
 *     seconds to its end. Bans last 2 min, doubling per ban up to 3 days;
 *     while banned every /api request is 418. POST /_sim/faults/clear lifts
 *     a ban;
 *   - orders per 10 s and per day (POST /order only, counted when the order
 *     reaches the engine, engine rejections included) -> 429 -1015 "Too many
 *     new orders; current limit is N orders per 10 SECOND." / "… per DAY."
 *     (no ban).
 *
 * Faults (struct cq_sim__faults, set over /_sim/)
 *   - latency: sleep before handling each /api request (in 10 ms slices so
 *     that a stop is not held up);
 *   - 5xx: per_mille of /api requests are answered HTTP 503 with the JSON
 *     body {"code":-1000,"msg":"An unknown error occurred while processing
 *     the request."} (JSON rather than a gateway's HTML page so ccxt maps it
 *     to OperationFailed, not ExchangeNotAvailable). For POST/DELETE /order
 *     and DELETE /openOrders a seeded coin flip decides whether the request
 *     is executed BEFORE the 503 goes out: a 5xx means "status unknown", and
 *     the client must reconcile;
 *   - storm: every /api request is 429 until the storm ends (Retry-After =
 *     seconds left), with the same ban escalation;
 *   - reject next N orders: POST /order -> -2010 "Order rejected by
 *     coinquant-simex fault injection (orders/reject).";
 *   - insufficient: POST /order and /order/test -> -2010 "Account has
 *     insufficient balance for requested action." (filters still come first);
 *   - late orders: the next N POST /order are executed, then their answer is
 *     held for M ms (a client whose timeout is shorter learns nothing: an
 *     unknown outcome to resolve by a query);
 *   - clock skew: cq_sim__server_time_ms (GET /time, timestamp window);
 *   - market pause: cq_sim__market_set_paused.
 *
 * Control path (loopback peers only; others get 403). Params in the query or
 * a form body. Every answer is JSON: {"ok":true,…} or 400
 * {"ok":false,"error":{"param":"<name>","message":"…"}}.
 *
 * The endpoints are one table, controls[] just below the constants at the
 * top of this file: method, path, parameters (kind, name, range), effect, handler. It
 * routes (unknown path 404, other method 405), validates the parameters in
 * table order (400 naming the first bad one), and an unknown /_sim/ path is
 * answered with every row rendered ("known": [{method, path, usage,
 * effect}]), e.g. "POST /_sim/rest/latency ms=0..60000". docs/SIMEX.md
 * "Control endpoints" lists the same rows; test_sim_rest's
 * control_table_rows_are_all_reachable walks the rendered list.
 *
 * Limitations (documented, deliberate): STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT
 * work (engine.c), GTC only; STOP_LOSS and TAKE_PROFIT are not in
 * production BTCUSDT's orderTypes and get errors.md's -2010 "Stop loss
 * orders are not supported for this symbol." / "Take profit orders are not
 * supported for this symbol."; iceberg, trailing and peg params
 * are -1106 (exchangeInfo says icebergAllowed/allowTrailingStop false);
 * self-trade prevention: only NONE is offered and accepted (any other mode
 * is -2010), because self-trades cannot happen: the book is exogenous.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "cq/buf.h"
#include "cq/clock.h"
#include "cq/http_body.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "sim-rest.h"
#include "sim-rest-extra.h"
#include "sim-params.h"
#include "sim-auth.h"
#include "cq/text.h"

#define SERVICE "simex"
#define CONNECTION_TIMEOUT_S 30 /* inactivity, libmicrohttpd's own */
/* Connections past connections_max that libmicrohttpd still accepts, so that
 * evicted ones on their way out and newcomers answered 503 fit. */
#define CONNECTION_HEADROOM 32
/* An idle keep-alive connection may wait this long for its next request. */
#define KEEPALIVE_IDLE_MS (30LL * 1000)
/* Request line + headers must fit: the raw query can be SIM_QUERY_MAX_BYTES. */
#define CONNECTION_MEMORY_BYTES ((size_t)256 * 1024)
#define BAN_AFTER_429 10
#define BAN_BASE_MS (2LL * 60 * 1000)
#define BAN_MAX_MS (3LL * 24 * 60 * 60 * 1000)
#define MAX_FILLS 512
#define LATENCY_MAX_MS 60000
/* 20 years: tests move the server clock back to the documented 2017 vectors */
#define SKEW_MAX_MS (20LL * 365 * 86400000)
#define GENERATED_ID_LEN 22

#define MSG_UNKNOWN "An unknown error occurred while processing the request."
#define MSG_TOO_MANY_PARAMS "Too many parameters sent for this endpoint."

/* ---- the control endpoints (/_sim/): one table ----------------------------------- */

struct rest_resp;

/* A parameter of a control endpoint: its kind says how it is validated (and
 * rendered in the list an unknown path gets). */
enum control_param_kind {
    CP_NONE,   /* end of the list */
    CP_INT,    /* a signed integer in [min, max] -> args.n */
    CP_ON,     /* "on": 1|0|true|false -> args.on */
    CP_ASSET,  /* "asset": ^[A-Z0-9]{1,CQ_SIM_ASSET_MAX_CHARS}$ -> args.asset */
    CP_FREE,   /* "free": a non-negative decimal -> args.amount */
    CP_SYMBOL, /* "symbol": a listed symbol -> args.symbol, args.symbol_idx */
    CP_STATUS, /* "status": TRADING|HALT|BREAK -> args.status */
};

struct control_param {
    enum control_param_kind kind;
    const char *name;
    int64_t min, max; /* CP_INT */
};

#define CONTROL_PARAMS_MAX 2

struct control_args {
    int64_t n, n2;
    bool on;
    const char *asset;
    cq_dec amount;
    const char *symbol;
    int symbol_idx;
    enum cq_sim__symbol_status status;
    const char *status_text;
};

struct control {
    const char *method;
    const char *path;
    struct control_param params[CONTROL_PARAMS_MAX + 1]; /* CP_NONE-terminated */
    const char *effect; /* one line, for the list an unknown path gets */
    void (*handler)(struct cq_sim__rest *rest, const struct control_args *a,
                    struct rest_resp *resp);
};

static void c_state(struct cq_sim__rest *rest, const struct control_args *a,
                    struct rest_resp *resp);
static void c_orders(struct cq_sim__rest *rest, const struct control_args *a,
                     struct rest_resp *resp);
static void c_ws_drop(struct cq_sim__rest *rest, const struct control_args *a,
                      struct rest_resp *resp);
static void c_ws_stall(struct cq_sim__rest *rest, const struct control_args *a,
                       struct rest_resp *resp);
static void c_ws_user_down(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp);
static void c_rest_latency(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp);
static void c_rest_errors(struct cq_sim__rest *rest, const struct control_args *a,
                          struct rest_resp *resp);
static void c_storm(struct cq_sim__rest *rest, const struct control_args *a,
                    struct rest_resp *resp);
static void c_orders_reject(struct cq_sim__rest *rest, const struct control_args *a,
                            struct rest_resp *resp);
static void c_insufficient(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp);
static void c_orders_timeout(struct cq_sim__rest *rest, const struct control_args *a,
                             struct rest_resp *resp);
static void c_balance_set(struct cq_sim__rest *rest, const struct control_args *a,
                          struct rest_resp *resp);
static void c_clock_skew(struct cq_sim__rest *rest, const struct control_args *a,
                         struct rest_resp *resp);
static void c_market_pause(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp);
static void c_symbol_status(struct cq_sim__rest *rest, const struct control_args *a,
                            struct rest_resp *resp);
static void c_faults_clear(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp);

#define P_INT(name, min, max)                                                                      \
    {                                                                                              \
        CP_INT, name, min, max                                                                     \
    }
#define P_ON                                                                                       \
    {                                                                                              \
        CP_ON, "on", 0, 1                                                                          \
    }

/* Every control endpoint, once: routing, parameter validation (in this
 * order), and the list an unknown /_sim/ path gets all come from here;
 * docs/SIMEX.md "Control endpoints" describes the same rows. */
static const struct control controls[] = {
    {"GET",
     "/_sim/state",
     {{CP_NONE, NULL, 0, 0}},
     "orders, balances, counters, faults, lock, limits",
     c_state},
    {"GET",
     "/_sim/orders",
     {{CP_SYMBOL, "symbol", 0, 0}},
     "every kept order of a symbol, as allOrders, not charged",
     c_orders},
    {"POST", "/_sim/ws/drop", {{CP_NONE, NULL, 0, 0}}, "close every WS connection", c_ws_drop},
    {"POST", "/_sim/ws/stall", {P_ON}, "WS keeps connections, sends no data", c_ws_stall},
    {"POST",
     "/_sim/ws/user_down",
     {P_ON},
     "WS API (user data) connections closed and refused",
     c_ws_user_down},
    {"POST",
     "/_sim/rest/latency",
     {P_INT("ms", 0, LATENCY_MAX_MS)},
     "sleep before each /api answer",
     c_rest_latency},
    {"POST",
     "/_sim/rest/errors",
     {P_INT("per_mille", 0, 1000)},
     "share of /api answered 503",
     c_rest_errors},
    {"POST",
     "/_sim/ratelimit/storm",
     {P_INT("seconds", 0, 3600)},
     "every /api request 429 (0 ends it)",
     c_storm},
    {"POST",
     "/_sim/orders/reject",
     {P_INT("count", 0, 1000000)},
     "next N POST /order -> -2010",
     c_orders_reject},
    {"POST",
     "/_sim/orders/timeout",
     {P_INT("count", 0, 1000000), P_INT("ms", 0, LATENCY_MAX_MS)},
     "next N POST /order executed, answered ms late",
     c_orders_timeout},
    {"POST",
     "/_sim/balance/insufficient",
     {P_ON},
     "orders -> -2010 insufficient balance",
     c_insufficient},
    {"POST",
     "/_sim/balance/set",
     {{CP_ASSET, "asset", 0, 0}, {CP_FREE, "free", 0, 0}},
     "set an asset's free balance",
     c_balance_set},
    {"POST",
     "/_sim/clock/skew",
     {P_INT("ms", -SKEW_MAX_MS, SKEW_MAX_MS)},
     "server time = wall + ms",
     c_clock_skew},
    {"POST", "/_sim/market/pause", {P_ON}, "market holds, emits nothing", c_market_pause},
    {"POST",
     "/_sim/symbol/status",
     {{CP_SYMBOL, "symbol", 0, 0}, {CP_STATUS, "status", 0, 0}},
     "HALT/BREAK: new orders -2010 \"Market is closed.\"",
     c_symbol_status},
    {"POST",
     "/_sim/faults/clear",
     {{CP_NONE, NULL, 0, 0}},
     "all faults off, ban lifted and reset, every symbol TRADING",
     c_faults_clear},
};

/* ---- server state ------------------------------------------------------------- */

/* One open TCP connection (libmicrohttpd's socket_context), from the
 * STARTED to the CLOSED notification, in rest->conns oldest first. Guarded
 * by rest->conns_lock. */
struct rest_peer_conn {
    struct rest_peer_conn *prev, *next;
    int fd;               /* borrowed from libmicrohttpd: valid until CLOSED */
    unsigned char ip[16]; /* peer address (IPv4-mapped IPv6 as IPv4) */
    size_t ip_len;        /* 4 or 16; 0 = unknown */
    int64_t deadline_ms;  /* monotonic: the request must have arrived by then */
    bool waiting;         /* no request in hand: head/body arriving, or idle */
    bool evicted;         /* shut down by us: its callbacks refuse it */
    bool over_cap;        /* admitted over a cap: its first request gets 503 */
};

struct cq_sim__rest {
    struct cq_sim__state *sim; /* borrowed */
    struct MHD_Daemon *daemon; /* owned */
    int port;
    /* Connection limits (struct cq_sim_options, defaults in cq/sim.h). */
    int64_t head_deadline_ms;
    uint32_t per_ip_max, connections_max;
    /* The connection table and its watchdog thread (see "Slow clients"). */
    pthread_mutex_t conns_lock; /* leaf lock: nothing is taken under it */
    pthread_cond_t conns_cond;  /* CLOCK_MONOTONIC; rung on new deadlines and stop */
    struct rest_peer_conn *oldest, *newest;
    bool stopping;
    pthread_t watchdog;
    bool watchdog_running;
    uint64_t evicted_deadline, evicted_for_room, refused_busy; /* counters */
    struct cq_http_body_stats body_stats; /* bodies refused (atomics, any thread) */
};

/* Per request (libmicrohttpd's req_cls), created by uri_logger. */
struct rest_conn {
    char *uri; /* raw, owned; NULL when too long */
    bool uri_too_long;
    bool started;
    struct cq_http_body body; /* kept; bounded by SIM_BODY_MAX_BYTES */
};

enum security { SEC_NONE, SEC_USER_STREAM, SEC_SIGNED };

#define EP_FREE_ON_SUCCESS 1u /* weight 0 on success, 1 on failure */
#define EP_MUTATES 2u         /* a 5xx fault may execute it first */
#define EP_ORDER_POST 4u

struct rest_resp {
    int status;
    json_t *body; /* owned */
    int64_t retry_after_s;
    bool is_error;
    bool order_headers;
    uint32_t orders_10s, orders_1d;
    bool www_authenticate; /* 401 from the control path: WWW-Authenticate: Bearer */
    bool close;            /* Connection: close (the 503 at a connection cap) */
};

struct rest_req {
    struct cq_sim__state *sim;
    struct MHD_Connection *conn;
    const char *method;
    struct cq_sim__params params;
    const char *api_key; /* header, borrowed; NULL if absent */
    bool time_us;        /* X-MBX-TIME-UNIT: MICROSECOND */
    int64_t timestamp_us, recv_window_us;
    struct rest_resp resp;
};

struct endpoint {
    const char *method;
    const char *path;
    enum security sec;
    unsigned weight;
    unsigned (*weight_fn)(const struct cq_sim__params *p);
    unsigned flags;
    void (*handler)(struct rest_req *r);
};

/* ---- small helpers ------------------------------------------------------------ */

static int64_t ceil_div_s(int64_t ms)
{
    if (ms <= 0) {
        return 1;
    }
    return (ms + 999) / 1000;
}

static json_t *jdec(cq_dec d)
{
    char buf[CQ_DEC_STR_MAX];
    if (cq_dec_format_scale(d, 8, CQ_ROUND_HALF_EVEN, buf, sizeof(buf)) < 0) {
        cq_dec_format(d, buf, sizeof(buf));
    }
    return json_string(buf);
}

static json_t *jtime(const struct rest_req *r, int64_t ms)
{
    return json_integer((json_int_t)(r->time_us ? ms * 1000 : ms));
}

static void set_error(struct rest_req *r, int status, int code, const char *fmt, ...)
    CQ_PRINTF(4, 5);

static void set_error(struct rest_req *r, int status, int code, const char *fmt, ...)
{
    char msg[SIM_API_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cq_sim__text_mark_cut(msg, sizeof(msg), n);
    json_decref(r->resp.body);
    r->resp.status = status;
    r->resp.is_error = true;
    r->resp.body = json_pack("{s:i,s:s}", "code", code, "msg", msg);
}

static bool fail_api(struct rest_req *r, const struct cq_sim__api_error *e)
{
    set_error(r, e->http_status, e->code, "%s", e->msg);
    return false;
}

static void set_ok(struct rest_req *r, json_t *body)
{
    json_decref(r->resp.body);
    r->resp.status = 200;
    r->resp.is_error = false;
    r->resp.body = body;
    if (body == NULL) {
        set_error(r, 500, -1000, MSG_UNKNOWN);
    }
}

static void gen_id(struct cq_sim__state *sim, char out[GENERATED_ID_LEN + 1])
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < GENERATED_ID_LEN; i++) {
        out[i] = alnum[cq_sim__rand(sim) % (sizeof(alnum) - 1)];
    }
    out[GENERATED_ID_LEN] = '\0';
}

static const char *tif_wire(enum cq_sim__tif t)
{
    /* Binance reports GTC for MARKET and LIMIT_MAKER orders. */
    return t == SIM_TIF_NONE ? "GTC" : cq_sim__tif_name(t);
}

/* ---- signed / keyed requests ----------------------------------------------------- */

static bool check_key(struct rest_req *r)
{
    struct cq_sim__api_error e;
    if (cq_sim__auth_key(r->sim, r->api_key, &e) < 0) { /* shared with the WS API */
        return fail_api(r, &e);
    }
    return true;
}

/* The timing rule (§2), in µs. */
static bool time_ok(struct rest_req *r, int64_t server_ms)
{
    struct cq_sim__api_error e;
    if (cq_sim__auth_time(server_ms, r->timestamp_us, r->recv_window_us, &e) < 0) {
        return fail_api(r, &e); /* shared with the WS API */
    }
    return true;
}

/* After the endpoint's own params: signed params -> key -> time -> signature. */
static bool auth_signed(struct rest_req *r)
{
    struct cq_sim__api_error e;
    const struct cq_sim__params *p = &r->params;
    if (cq_sim__param_recv_window_us(p, &r->recv_window_us, &e) < 0) {
        return fail_api(r, &e);
    }
    int64_t ts = 0;
    if (cq_sim__param_long(p, "timestamp", true, &ts, NULL, &e) < 0) {
        return fail_api(r, &e);
    }
    r->timestamp_us = cq_sim__time_param_to_us(ts);
    const char *sig = cq_sim__params_get(p, "signature");
    if (sig == NULL) {
        set_error(r, 400, -1102,
                  "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.");
        return false;
    }
    if (!check_key(r)) {
        return false;
    }
    cq_sim__lock(r->sim);
    int64_t server_ms = cq_sim__server_time_ms(r->sim);
    cq_sim__unlock(r->sim);
    if (!time_ok(r, server_ms)) {
        return false;
    }
    const char *secret = r->sim->api_secret;
    if (!cq_sign_verify(secret, strlen(secret), p->signed_query, p->signed_query_len,
                        p->signed_body, p->signed_body_len, sig, strlen(sig))) {
        set_error(r, 400, -1022, "Signature for this request is not valid.");
        return false;
    }
    return true;
}

/* Symbol -> index, under the lock; -1121 if unknown. */
static int symbol_index_locked(struct rest_req *r, const char *symbol)
{
    int idx = cq_sim__engine_symbol_index(r->sim->engine, symbol);
    if (idx < 0) {
        set_error(r, 400, -1121, SIM_MSG_INVALID_SYMBOL);
    }
    return idx;
}

/* ---- symbol selection (symbol / symbols / none) ----------------------------------- */

struct symbol_sel {
    bool one; /* `symbol` was sent: answer an object */
    bool all; /* neither was sent */
    size_t n;
    char names[SIM_PARAM_SYMBOLS_MAX][SIM_PARAM_SYMBOL_MAX + 1];
};

static bool parse_symbol_sel(struct rest_req *r, struct symbol_sel *sel)
{
    struct cq_sim__api_error e;
    bool has_symbol = false;
    memset(sel, 0, sizeof(*sel));
    if (cq_sim__param_symbol(&r->params, "symbol", false, sel->names[0], &has_symbol, &e) < 0) {
        return fail_api(r, &e);
    }
    const char *symbols = cq_sim__params_get(&r->params, "symbols");
    if (has_symbol && symbols != NULL) {
        set_error(r, 400, -1106, "Parameter 'symbols' sent when not required.");
        return false;
    }
    if (has_symbol) {
        sel->one = true;
        sel->n = 1;
        return true;
    }
    if (symbols == NULL) {
        sel->all = true;
        return true;
    }
    if (cq_sim__param_symbols(symbols, sel->names, SIM_PARAM_SYMBOLS_MAX, &sel->n, &e) < 0) {
        return fail_api(r, &e);
    }
    return true;
}

/* Resolve under the lock into indexes; -1121 on an unknown name. */
static bool resolve_sel_locked(struct rest_req *r, const struct symbol_sel *sel, int *idx,
                               size_t *n)
{
    const struct cq_sim__engine *eng = r->sim->engine;
    if (sel->all) {
        size_t count = cq_sim__engine_symbol_count(eng);
        for (size_t i = 0; i < count && i < SIM_SYMBOLS_MAX; i++) {
            idx[i] = (int)i;
        }
        *n = count < SIM_SYMBOLS_MAX ? count : SIM_SYMBOLS_MAX;
        return true;
    }
    size_t k = 0;
    for (size_t i = 0; i < sel->n; i++) {
        int at = symbol_index_locked(r, sel->names[i]);
        if (at < 0) {
            return false;
        }
        bool dup = false;
        for (size_t j = 0; j < k; j++) {
            dup = dup || idx[j] == at;
        }
        if (!dup && k < SIM_SYMBOLS_MAX) {
            idx[k++] = at;
        }
    }
    *n = k;
    return true;
}

/* ---- weights ---------------------------------------------------------------------- */

static unsigned w_depth(const struct cq_sim__params *p)
{
    int64_t limit = 100;
    struct cq_sim__api_error e;
    if (cq_sim__param_long(p, "limit", false, &limit, NULL, &e) < 0 || limit == 0) {
        limit = 100;
    }
    if (limit <= 100) {
        return 5;
    }
    if (limit <= 500) {
        return 25;
    }
    if (limit <= 1000) {
        return 50;
    }
    return 250;
}

static size_t symbols_count(const struct cq_sim__params *p)
{
    /* A rough count is enough for the weight: names are comma-separated. */
    const char *v = cq_sim__params_get(p, "symbols");
    size_t n = 1;
    for (const char *c = v; *c != '\0'; c++) {
        n += *c == ',';
    }
    return n;
}

static unsigned w_ticker24(const struct cq_sim__params *p)
{
    if (cq_sim__params_get(p, "symbol") != NULL) {
        return 2;
    }
    if (cq_sim__params_get(p, "symbols") == NULL) {
        return 80;
    }
    size_t n = symbols_count(p);
    return n <= 20 ? 2 : n <= 100 ? 40 : 80;
}

static unsigned w_ticker_price(const struct cq_sim__params *p)
{
    return cq_sim__params_get(p, "symbol") != NULL ? 2 : 4;
}

static unsigned w_order_test(const struct cq_sim__params *p)
{
    const char *v = cq_sim__params_get(p, "computeCommissionRates");
    return v != NULL && strcasecmp(v, "true") == 0 ? 20 : 1;
}

static unsigned w_open_orders(const struct cq_sim__params *p)
{
    return cq_sim__params_get(p, "symbol") != NULL ? 6 : 80;
}

static unsigned w_my_trades(const struct cq_sim__params *p)
{
    return cq_sim__params_get(p, "orderId") != NULL ? 5 : 20;
}

/* ---- public endpoints ----------------------------------------------------------- */

static void h_ping(struct rest_req *r)
{
    set_ok(r, json_object());
}

static void h_time(struct rest_req *r)
{
    cq_sim__lock(r->sim);
    int64_t now = cq_sim__server_time_ms(r->sim);
    cq_sim__unlock(r->sim);
    set_ok(r, json_pack("{s:o}", "serverTime", jtime(r, now)));
}

static const char *const symbol_status_names[] = {"TRADING", "END_OF_DAY",  "HALT",
                                                  "BREAK",   "CANCEL_ONLY", NULL};

static const char *symbol_status_wire(enum cq_sim__symbol_status s)
{
    switch (s) {
    case SIM_TRADING:
        return "TRADING";
    case SIM_HALT:
        return "HALT";
    case SIM_BREAK:
        return "BREAK";
    }
    return "BREAK";
}

/* The filters in production's order (2024-09-08 exchangeInfo: PRICE_FILTER,
 * LOT_SIZE, ICEBERG_PARTS, MARKET_LOT_SIZE, TRAILING_DELTA,
 * PERCENT_PRICE_BY_SIDE, NOTIONAL, MAX_NUM_ORDERS, MAX_NUM_ALGO_ORDERS).
 * PERCENT_PRICE_BY_SIDE's multipliers as production writes them ("5",
 * "0.2"); TRAILING_DELTA's bounds production's (trailing orders are refused
 * -1106 here all the same). */
static json_t *filters_json(const struct cq_filters *f)
{
    json_t *a = json_array();
    json_array_append_new(a, json_pack("{s:s,s:o,s:o,s:o}", "filterType", "PRICE_FILTER",
                                       "minPrice", jdec(f->min_price), "maxPrice",
                                       jdec(f->max_price), "tickSize", jdec(f->tick_size)));
    json_array_append_new(a, json_pack("{s:s,s:o,s:o,s:o}", "filterType", "LOT_SIZE", "minQty",
                                       jdec(f->min_qty), "maxQty", jdec(f->max_qty), "stepSize",
                                       jdec(f->step_size)));
    json_array_append_new(
        a, json_pack("{s:s,s:i}", "filterType", "ICEBERG_PARTS", "limit", f->iceberg_parts));
    json_array_append_new(a, json_pack("{s:s,s:o,s:o,s:o}", "filterType", "MARKET_LOT_SIZE",
                                       "minQty", jdec(f->market_min_qty), "maxQty",
                                       jdec(f->market_max_qty), "stepSize", jdec(f->market_step)));
    json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:i,s:i}", "filterType", "TRAILING_DELTA",
                                       "minTrailingAboveDelta", 10, "maxTrailingAboveDelta", 2000,
                                       "minTrailingBelowDelta", 10, "maxTrailingBelowDelta", 2000));
    char bu[CQ_DEC_STR_MAX], bd[CQ_DEC_STR_MAX], au[CQ_DEC_STR_MAX], ad[CQ_DEC_STR_MAX];
    /* cq_dec_format writes at most CQ_DEC_STR_MAX bytes, at the value's
     * own scale: "5" and "0.2", production's text for these four */
    cq_dec_format(f->bid_up, bu, sizeof(bu));
    cq_dec_format(f->bid_down, bd, sizeof(bd));
    cq_dec_format(f->ask_up, au, sizeof(au));
    cq_dec_format(f->ask_down, ad, sizeof(ad));
    json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "filterType",
                                       "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp", bu,
                                       "bidMultiplierDown", bd, "askMultiplierUp", au,
                                       "askMultiplierDown", ad, "avgPriceMins", f->avg_price_mins));
    json_array_append_new(a, json_pack("{s:s,s:o,s:b,s:o,s:b,s:i}", "filterType", "NOTIONAL",
                                       "minNotional", jdec(f->min_notional), "applyMinToMarket",
                                       f->apply_min_to_market, "maxNotional", jdec(f->max_notional),
                                       "applyMaxToMarket", f->apply_max_to_market, "avgPriceMins",
                                       f->avg_price_mins));
    json_array_append_new(a, json_pack("{s:s,s:i}", "filterType", "MAX_NUM_ORDERS", "maxNumOrders",
                                       f->max_num_orders));
    json_array_append_new(a, json_pack("{s:s,s:i}", "filterType", "MAX_NUM_ALGO_ORDERS",
                                       "maxNumAlgoOrders", f->max_num_algo_orders));
    return a;
}

static json_t *symbol_info_json(const struct cq_sim__symbol *s, bool show_permission_sets)
{
    /* exactly production BTCUSDT's (2024-09-08) */
    json_t *order_types = json_pack("[s,s,s,s,s]", "LIMIT", "LIMIT_MAKER", "MARKET",
                                    "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT");
    json_t *perm_sets = show_permission_sets ? json_pack("[[s]]", "SPOT") : json_array();
    json_t *o = json_object();
    json_object_set_new(o, "symbol", json_string(s->symbol));
    json_object_set_new(o, "status", json_string(symbol_status_wire(s->status)));
    json_object_set_new(o, "baseAsset", json_string(s->base));
    json_object_set_new(o, "baseAssetPrecision", json_integer(s->base_precision));
    json_object_set_new(o, "quoteAsset", json_string(s->quote));
    json_object_set_new(o, "quotePrecision", json_integer(s->quote_precision));
    json_object_set_new(o, "quoteAssetPrecision", json_integer(s->quote_precision));
    json_object_set_new(o, "baseCommissionPrecision", json_integer(s->base_precision));
    json_object_set_new(o, "quoteCommissionPrecision", json_integer(s->quote_precision));
    json_object_set_new(o, "orderTypes", order_types);
    json_object_set_new(o, "icebergAllowed", json_false());
    json_object_set_new(o, "ocoAllowed", json_false());
    json_object_set_new(o, "otoAllowed", json_false());
    json_object_set_new(o, "opoAllowed", json_false());
    json_object_set_new(o, "quoteOrderQtyMarketAllowed", json_true());
    json_object_set_new(o, "allowTrailingStop", json_false());
    json_object_set_new(o, "cancelReplaceAllowed", json_false());
    json_object_set_new(o, "amendAllowed", json_false());
    json_object_set_new(o, "pegInstructionsAllowed", json_false());
    json_object_set_new(o, "isSpotTradingAllowed", json_true());
    json_object_set_new(o, "isMarginTradingAllowed", json_false());
    json_object_set_new(o, "filters", filters_json(&s->filters));
    json_object_set_new(o, "permissions", json_array());
    json_object_set_new(o, "permissionSets", perm_sets);
    /* As production BTCUSDT (2024-09-08). The modes are accepted, stored and
     * reported; they never fire: our orders meet only the market model's
     * book, never each other (docs/SIMEX.md "What is not simulated"). */
    json_object_set_new(o, "defaultSelfTradePreventionMode", json_string("EXPIRE_MAKER"));
    json_object_set_new(
        o, "allowedSelfTradePreventionModes",
        json_pack("[s,s,s,s]", "NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"));
    return o;
}

/* `permissions`: "SPOT" or a JSON array of names. *spot: SPOT is among them. */
static bool parse_permissions(struct rest_req *r, const char *v, bool *spot)
{
    static const char range[] = "^\\[?(\"?[A-Z0-9_]{1,32}\"?(,\"?[A-Z0-9_]{1,32}\"?){0,})\\]?$";
    *spot = false;
    const char *s = v;
    bool array = *s == '[';
    if (array) {
        s++;
    }
    for (;;) {
        bool quoted = array && *s == '"';
        if (quoted) {
            s++;
        }
        const char *start = s;
        while ((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_') {
            s++;
        }
        size_t len = (size_t)(s - start);
        if (len == 0 || len > 32 || (quoted && *s++ != '"')) {
            break;
        }
        if (len == 4 && memcmp(start, "SPOT", 4) == 0) {
            *spot = true;
        }
        if (array && *s == ',') {
            s++;
            continue;
        }
        if (array && *s == ']' && s[1] == '\0') {
            return true;
        }
        if (!array && *s == '\0') {
            return true;
        }
        break;
    }
    set_error(r, 400, -1100,
              "Illegal characters found in parameter 'permissions'; legal range is '%s'.", range);
    return false;
}

static void h_exchange_info(struct rest_req *r)
{
    struct cq_sim__api_error e;
    struct symbol_sel *sel = malloc(sizeof(*sel));
    if (sel == NULL) {
        set_error(r, 500, -1000, MSG_UNKNOWN);
        return;
    }
    bool show_sets = true, has_show = false;
    int status_idx = -1;
    bool has_status = false;
    bool spot = true;
    if (!parse_symbol_sel(r, sel)) {
        goto out;
    }
    const char *perms = cq_sim__params_get(&r->params, "permissions");
    if (perms != NULL && !sel->all) {
        set_error(r, 400, -1106, "Parameter 'permissions' sent when not required.");
        goto out;
    }
    if (perms != NULL && !parse_permissions(r, perms, &spot)) {
        goto out;
    }
    if (cq_sim__param_bool(&r->params, "showPermissionSets", &show_sets, &has_show, &e) < 0) {
        fail_api(r, &e);
        goto out;
    }
    if (cq_sim__param_enum(&r->params, "symbolStatus", false, symbol_status_names, &status_idx,
                           &has_status, 0, NULL, &e) < 0) {
        fail_api(r, &e);
        goto out;
    }
    if (has_status && !sel->all) {
        set_error(r, 400, -1106, "Parameter 'symbolStatus' sent when not required.");
        goto out;
    }

    int idx[SIM_SYMBOLS_MAX];
    size_t n = 0;
    struct cq_sim__state *sim = r->sim;
    cq_sim__lock(sim);
    if (!resolve_sel_locked(r, sel, idx, &n)) {
        cq_sim__unlock(sim);
        goto out;
    }
    int64_t now = cq_sim__server_time_ms(sim);
    json_t *symbols = json_array();
    for (size_t i = 0; spot && i < n; i++) {
        const struct cq_sim__symbol *s = cq_sim__engine_symbol(sim->engine, idx[i]);
        if (has_status &&
            strcmp(symbol_status_wire(s->status), symbol_status_names[status_idx]) != 0) {
            continue;
        }
        json_array_append_new(symbols, symbol_info_json(s, show_sets));
    }
    uint32_t wl = sim->rl.weight_limit_1m, o10 = sim->rl.order_limit_10s,
             o1d = sim->rl.order_limit_1d;
    cq_sim__unlock(sim);

    json_t *limits =
        json_pack("[{s:s,s:s,s:i,s:I},{s:s,s:s,s:i,s:I},{s:s,s:s,s:i,s:I},{s:s,s:s,s:i,s:i}]",
                  "rateLimitType", "REQUEST_WEIGHT", "interval", "MINUTE", "intervalNum", 1,
                  "limit", (json_int_t)wl, "rateLimitType", "ORDERS", "interval", "SECOND",
                  "intervalNum", 10, "limit", (json_int_t)o10, "rateLimitType", "ORDERS",
                  "interval", "DAY", "intervalNum", 1, "limit", (json_int_t)o1d, "rateLimitType",
                  "RAW_REQUESTS", "interval", "MINUTE", "intervalNum", 5, "limit", 300000);
    set_ok(r, json_pack("{s:s,s:o,s:o,s:[],s:o}", "timezone", "UTC", "serverTime", jtime(r, now),
                        "rateLimits", limits, "exchangeFilters", "symbols", symbols));
out:
    free(sel);
}

static json_t *levels_json(const struct cq_sim__level *lv, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_pack("[o,o]", jdec(lv[i].price), jdec(lv[i].qty)));
    }
    return a;
}

static void h_depth(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int64_t limit = 100;
    bool has_limit = false;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "limit", false, &limit, &has_limit, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!has_limit || limit == 0) {
        limit = 100;
    }
    if (limit > 5000) {
        limit = 5000;
    }
    struct cq_sim__state *sim = r->sim;
    cq_sim__lock(sim);
    int idx = symbol_index_locked(r, symbol);
    if (idx < 0) {
        cq_sim__unlock(sim);
        return;
    }
    struct cq_sim__book_view book;
    cq_sim__market_book(sim->market, idx, &book);
    size_t nb = book.n_bids < (size_t)limit ? book.n_bids : (size_t)limit;
    size_t na = book.n_asks < (size_t)limit ? book.n_asks : (size_t)limit;
    json_t *body = json_pack("{s:I,s:o,s:o}", "lastUpdateId",
                             (json_int_t)cq_sim__market_book_update_id(sim->market, idx), "bids",
                             levels_json(book.bids, nb), "asks", levels_json(book.asks, na));
    cq_sim__unlock(sim);
    set_ok(r, body);
}

static const char *const kline_intervals[] = {"1s", "1m", "3m", "5m", "15m", "30m",
                                              "1h", "2h", "4h", "6h", "8h",  "12h",
                                              "1d", "3d", "1w", "1M", NULL};

struct kline_ctx {
    const struct rest_req *r;
    json_t *arr;
};

static void add_kline(void *ctx, const struct cq_sim__kline *k)
{
    struct kline_ctx *kc = ctx;
    json_array_append_new(
        kc->arr, json_pack("[o,o,o,o,o,o,o,o,I,o,o,s]", jtime(kc->r, k->open_ms), jdec(k->open),
                           jdec(k->high), jdec(k->low), jdec(k->close), jdec(k->volume),
                           jtime(kc->r, k->close_ms), jdec(k->quote_volume), (json_int_t)k->trades,
                           jdec(k->taker_buy_base), jdec(k->taker_buy_quote), "0"));
}

/* startTime/endTime (ms or µs) -> ms; start > end is -1023. */
static bool parse_time_range(struct rest_req *r, int64_t *start_ms, int64_t *end_ms,
                             bool *has_start, bool *has_end)
{
    struct cq_sim__api_error e;
    int64_t s = 0, t = 0;
    if (cq_sim__param_long(&r->params, "startTime", false, &s, has_start, &e) < 0 ||
        cq_sim__param_long(&r->params, "endTime", false, &t, has_end, &e) < 0) {
        return fail_api(r, &e);
    }
    *start_ms = *has_start ? cq_sim__time_param_to_us(s) / 1000 : 0;
    *end_ms = *has_end ? cq_sim__time_param_to_us(t) / 1000 : 0;
    if (*has_start && *has_end && *start_ms > *end_ms) {
        set_error(r, 400, -1023, "Start time is greater than end time.");
        return false;
    }
    return true;
}

/* limit: default def, capped at max. */
static bool parse_limit(struct rest_req *r, int64_t def, int64_t max, int64_t *out)
{
    struct cq_sim__api_error e;
    bool has = false;
    if (cq_sim__param_long(&r->params, "limit", false, out, &has, &e) < 0) {
        return fail_api(r, &e);
    }
    if (!has || *out == 0) {
        *out = def;
    }
    if (*out > max) {
        *out = max;
    }
    return true;
}

static void h_klines(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int iv = 0;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0 ||
        cq_sim__param_enum(&r->params, "interval", true, kline_intervals, &iv, NULL, -1120,
                           "Invalid interval.", &e) < 0) {
        fail_api(r, &e);
        return;
    }
    int64_t start = 0, end = 0, limit = 500;
    bool has_start, has_end;
    if (!parse_time_range(r, &start, &end, &has_start, &has_end) ||
        !parse_limit(r, 500, 1000, &limit)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct kline_ctx kc = {r, json_array()};
    cq_sim__lock(sim);
    int idx = symbol_index_locked(r, symbol);
    if (idx >= 0) {
        if (cq_sim__market_klines(sim->market, idx, kline_intervals[iv], start, end, (size_t)limit,
                                  add_kline, &kc) < 0) {
            /* an interval the model cannot aggregate from 1m bars (1s): no bars */
        }
    }
    cq_sim__unlock(sim);
    if (idx < 0) {
        json_decref(kc.arr);
        return;
    }
    set_ok(r, kc.arr);
}

static json_t *ticker24_json(const char *symbol, const struct cq_sim__ticker24 *t, bool full,
                             const struct rest_req *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "symbol", json_string(symbol));
    if (full) {
        cq_dec change = CQ_DEC_ZERO, pct = CQ_DEC_ZERO, wavg = CQ_DEC_ZERO;
        if (cq_dec_sub(t->last, t->open, &change) < 0) {
            change = CQ_DEC_ZERO;
        }
        if (!cq_dec_is_zero(t->open)) {
            cq_dec ratio;
            if (cq_dec_mul(change, cq_dec_make(100, 0), 8, CQ_ROUND_HALF_EVEN, &ratio) < 0 ||
                cq_dec_div(ratio, t->open, 3, CQ_ROUND_HALF_EVEN, &pct) < 0) {
                pct = CQ_DEC_ZERO;
            }
        }
        if (!cq_dec_is_zero(t->volume) &&
            cq_dec_div(t->quote_volume, t->volume, 8, CQ_ROUND_HALF_EVEN, &wavg) < 0) {
            wavg = CQ_DEC_ZERO;
        }
        char pct_text[CQ_DEC_STR_MAX];
        if (cq_dec_format_scale(pct, 3, CQ_ROUND_HALF_EVEN, pct_text, sizeof(pct_text)) < 0) {
            cq_strlcpy(pct_text, "0.000", sizeof(pct_text)); /* a 6-byte constant */
        }
        json_object_set_new(o, "priceChange", jdec(change));
        json_object_set_new(o, "priceChangePercent", json_string(pct_text));
        json_object_set_new(o, "weightedAvgPrice", jdec(wavg));
        /* The model keeps no bar before the window: its open stands in. */
        json_object_set_new(o, "prevClosePrice", jdec(t->open));
        json_object_set_new(o, "lastPrice", jdec(t->last));
        json_object_set_new(o, "lastQty", jdec(t->last_qty));
        json_object_set_new(o, "bidPrice", jdec(t->bid));
        json_object_set_new(o, "bidQty", jdec(t->bid_qty));
        json_object_set_new(o, "askPrice", jdec(t->ask));
        json_object_set_new(o, "askQty", jdec(t->ask_qty));
    }
    json_object_set_new(o, "openPrice", jdec(t->open));
    json_object_set_new(o, "highPrice", jdec(t->high));
    json_object_set_new(o, "lowPrice", jdec(t->low));
    if (!full) {
        json_object_set_new(o, "lastPrice", jdec(t->last));
    }
    json_object_set_new(o, "volume", jdec(t->volume));
    json_object_set_new(o, "quoteVolume", jdec(t->quote_volume));
    json_object_set_new(o, "openTime", jtime(r, t->open_ms));
    json_object_set_new(o, "closeTime", jtime(r, t->close_ms));
    json_object_set_new(o, "firstId", json_integer(t->count > 0 ? (json_int_t)t->first_id : -1));
    json_object_set_new(o, "lastId", json_integer(t->count > 0 ? (json_int_t)t->last_id : -1));
    json_object_set_new(o, "count", json_integer((json_int_t)t->count));
    return o;
}

enum ticker_kind { TICKER_24H, TICKER_PRICE, TICKER_BOOK };

static void ticker_common(struct rest_req *r, enum ticker_kind kind)
{
    struct cq_sim__api_error e;
    static const char *const types[] = {"FULL", "MINI", NULL};
    int type = 0;
    struct symbol_sel *sel = malloc(sizeof(*sel));
    if (sel == NULL) {
        set_error(r, 500, -1000, MSG_UNKNOWN);
        return;
    }
    if (!parse_symbol_sel(r, sel)) {
        goto out;
    }
    if (kind == TICKER_24H &&
        cq_sim__param_enum(&r->params, "type", false, types, &type, NULL, 0, NULL, &e) < 0) {
        fail_api(r, &e);
        goto out;
    }
    int idx[SIM_SYMBOLS_MAX];
    size_t n = 0;
    struct cq_sim__state *sim = r->sim;
    cq_sim__lock(sim);
    if (!resolve_sel_locked(r, sel, idx, &n)) {
        cq_sim__unlock(sim);
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *name = cq_sim__engine_symbol(sim->engine, idx[i])->symbol;
        json_t *o = NULL;
        if (kind == TICKER_24H) {
            struct cq_sim__ticker24 t;
            cq_sim__market_ticker24(sim->market, idx[i], &t);
            o = ticker24_json(name, &t, type == 0, r);
        } else if (kind == TICKER_PRICE) {
            o = json_pack("{s:s,s:o}", "symbol", name, "price",
                          jdec(cq_sim__market_last_price(sim->market, idx[i])));
        } else {
            struct cq_sim__book_view book;
            cq_sim__market_book(sim->market, idx[i], &book);
            struct cq_sim__level none = {CQ_DEC_ZERO, CQ_DEC_ZERO};
            const struct cq_sim__level *bid = book.n_bids > 0 ? &book.bids[0] : &none;
            const struct cq_sim__level *ask = book.n_asks > 0 ? &book.asks[0] : &none;
            o = json_pack("{s:s,s:o,s:o,s:o,s:o}", "symbol", name, "bidPrice", jdec(bid->price),
                          "bidQty", jdec(bid->qty), "askPrice", jdec(ask->price), "askQty",
                          jdec(ask->qty));
        }
        json_array_append_new(arr, o);
    }
    cq_sim__unlock(sim);
    if (sel->one) {
        json_t *one = json_incref(json_array_get(arr, 0));
        json_decref(arr);
        set_ok(r, one);
    } else {
        set_ok(r, arr);
    }
out:
    free(sel);
}

static void h_ticker24(struct rest_req *r)
{
    ticker_common(r, TICKER_24H);
}

static void h_ticker_price(struct rest_req *r)
{
    ticker_common(r, TICKER_PRICE);
}

static void h_book_ticker(struct rest_req *r)
{
    ticker_common(r, TICKER_BOOK);
}

/* ---- account ------------------------------------------------------------------------ */

struct balances_ctx {
    json_t *arr;
    bool omit_zero;
};

static void add_account_balance(void *ctx, const struct cq_sim__balance *b)
{
    struct balances_ctx *bc = ctx;
    if (bc->omit_zero && cq_dec_is_zero(b->free) && cq_dec_is_zero(b->locked)) {
        return;
    }
    json_array_append_new(bc->arr, json_pack("{s:s,s:o,s:o}", "asset", b->asset, "free",
                                             jdec(b->free), "locked", jdec(b->locked)));
}

static json_t *bps_rate(unsigned bps)
{
    return jdec(cq_dec_make((int64_t)bps, 4));
}

static void h_account(struct rest_req *r)
{
    struct cq_sim__api_error e;
    bool omit = false;
    if (cq_sim__param_bool(&r->params, "omitZeroBalances", &omit, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct balances_ctx bc = {json_array(), omit};
    unsigned maker = 0, taker = 0;
    cq_sim__lock(sim);
    cq_sim__engine_balances(sim->engine, add_account_balance, &bc);
    cq_sim__engine_fees(sim->engine, &maker, &taker);
    int64_t now = cq_sim__server_time_ms(sim);
    cq_sim__unlock(sim);

    json_t *o = json_object();
    json_object_set_new(o, "makerCommission", json_integer(maker));
    json_object_set_new(o, "takerCommission", json_integer(taker));
    json_object_set_new(o, "buyerCommission", json_integer(0));
    json_object_set_new(o, "sellerCommission", json_integer(0));
    json_object_set_new(o, "commissionRates",
                        json_pack("{s:o,s:o,s:o,s:o}", "maker", bps_rate(maker), "taker",
                                  bps_rate(taker), "buyer", bps_rate(0), "seller", bps_rate(0)));
    json_object_set_new(o, "canTrade", json_true());
    json_object_set_new(o, "canWithdraw", json_true());
    json_object_set_new(o, "canDeposit", json_true());
    json_object_set_new(o, "brokered", json_false());
    json_object_set_new(o, "requireSelfTradePrevention", json_false());
    json_object_set_new(o, "preventSor", json_false());
    json_object_set_new(o, "updateTime", jtime(r, now));
    json_object_set_new(o, "accountType", json_string("SPOT"));
    json_object_set_new(o, "balances", bc.arr);
    json_object_set_new(o, "permissions", json_pack("[s]", "SPOT"));
    json_object_set_new(o, "uid", json_integer(354937868));
    set_ok(r, o);
}

/* ---- orders: JSON shapes ------------------------------------------------------------ */

static json_t *order_ack_json(const struct rest_req *r, const char *symbol,
                              const struct cq_sim__order *o, int64_t transact_ms)
{
    json_t *j = json_object();
    json_object_set_new(j, "symbol", json_string(symbol));
    json_object_set_new(j, "orderId", json_integer((json_int_t)o->order_id));
    json_object_set_new(j, "orderListId", json_integer(-1));
    json_object_set_new(j, "clientOrderId", json_string(o->client_id));
    json_object_set_new(j, "transactTime", jtime(r, transact_ms));
    return j;
}

static int64_t working_ms(const struct cq_sim__order *o, int64_t fallback)
{
    return o->working_ms >= 0 ? o->working_ms : fallback;
}

/* workingTime: -1 for a stop order not yet on the book (rest-api.md's
 * STOP_LOSS example: "workingTime": -1). */
static json_t *working_json(const struct rest_req *r, const struct cq_sim__order *o,
                            int64_t fallback)
{
    if (cq_sim__order_type_is_stop(o->type) && o->working_ms < 0) {
        return json_integer(-1);
    }
    return jtime(r, working_ms(o, fallback));
}

/* ---- self-trade prevention fields (simq, issue 18; stp_faq.md) ---- */

/* "API responses for orders which expired due to STP will also have a
 * `preventedQuantity` field"; the examples show preventedMatchId too. */
static void add_prevented_fields(json_t *j, const struct cq_sim__order *o)
{
    if (o->prevented) {
        json_object_set_new(j, "preventedMatchId", json_integer((json_int_t)o->prevented_match_id));
        json_object_set_new(j, "preventedQuantity", jdec(o->prevented_qty));
    }
}

/* The latest place's prevented matches as the taker's "preventedMatches"
 * (NULL when STP did not fire); takerPreventedQuantity /
 * makerPreventedQuantity only for the side that expired. Under the lock. */
static json_t *prevented_matches_json(const struct cq_sim__engine *e)
{
    size_t n = 0;
    const struct cq_sim__prevented_match *m = cq_sim__engine_last_prevented(e, &n);
    json_t *a;
    if (n == 0) {
        return NULL;
    }
    a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "preventedMatchId", json_integer((json_int_t)m[i].match_id));
        json_object_set_new(x, "makerOrderId", json_integer((json_int_t)m[i].maker_order_id));
        json_object_set_new(x, "price", jdec(m[i].price));
        if (m[i].taker_prevented_qty.m > 0) {
            json_object_set_new(x, "takerPreventedQuantity", jdec(m[i].taker_prevented_qty));
        }
        if (m[i].maker_prevented_qty.m > 0) {
            json_object_set_new(x, "makerPreventedQuantity", jdec(m[i].maker_prevented_qty));
        }
        json_array_append_new(a, x);
    }
    return a;
}

static void add_result_fields(const struct rest_req *r, json_t *j, const struct cq_sim__order *o,
                              int64_t transact_ms, const char *stp)
{
    json_object_set_new(j, "price", jdec(o->price));
    json_object_set_new(j, "origQty", jdec(o->orig_qty));
    json_object_set_new(j, "executedQty", jdec(o->executed_qty));
    json_object_set_new(j, "origQuoteOrderQty", jdec(o->orig_quote_qty));
    json_object_set_new(j, "cummulativeQuoteQty", jdec(o->cum_quote_qty));
    json_object_set_new(j, "status", json_string(cq_sim__order_status_name(o->status)));
    json_object_set_new(j, "timeInForce", json_string(tif_wire(o->tif)));
    json_object_set_new(j, "type", json_string(cq_sim__order_type_name(o->type)));
    json_object_set_new(j, "side", json_string(cq_sim__side_name(o->side)));
    if (cq_sim__order_type_is_stop(o->type)) { /* "Appears for ... STOP_LOSS_LIMIT and
                                                  TAKE_PROFIT_LIMIT orders." */
        json_object_set_new(j, "stopPrice", jdec(o->stop_price));
    }
    json_object_set_new(j, "workingTime", working_json(r, o, transact_ms));
    json_object_set_new(j, "selfTradePreventionMode", json_string(stp));
    if (o->expiry != SIM_EXPIRY_NONE) { /* only on expired orders (CHANGELOG 2026-01-21) */
        json_object_set_new(j, "expiryReason", json_string(cq_sim__expiry_name(o->expiry)));
    }
    add_prevented_fields(j, o);
}

static json_t *fills_json(const struct cq_sim__fill *fills, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_pack("{s:o,s:o,s:o,s:s,s:I}", "price", jdec(fills[i].price),
                                           "qty", jdec(fills[i].qty), "commission",
                                           jdec(fills[i].commission), "commissionAsset",
                                           fills[i].commission_asset, "tradeId",
                                           (json_int_t)fills[i].trade_id));
    }
    return a;
}

static json_t *order_query_json(const struct rest_req *r, const char *symbol,
                                const struct cq_sim__order *o)
{
    json_t *j = json_object();
    json_object_set_new(j, "symbol", json_string(symbol));
    json_object_set_new(j, "orderId", json_integer((json_int_t)o->order_id));
    json_object_set_new(j, "orderListId", json_integer(-1));
    json_object_set_new(j, "clientOrderId", json_string(o->client_id));
    json_object_set_new(j, "price", jdec(o->price));
    json_object_set_new(j, "origQty", jdec(o->orig_qty));
    json_object_set_new(j, "executedQty", jdec(o->executed_qty));
    json_object_set_new(j, "cummulativeQuoteQty", jdec(o->cum_quote_qty));
    json_object_set_new(j, "status", json_string(cq_sim__order_status_name(o->status)));
    json_object_set_new(j, "timeInForce", json_string(tif_wire(o->tif)));
    json_object_set_new(j, "type", json_string(cq_sim__order_type_name(o->type)));
    json_object_set_new(j, "side", json_string(cq_sim__side_name(o->side)));
    json_object_set_new(j, "stopPrice", jdec(o->stop_price));
    json_object_set_new(j, "icebergQty", jdec(CQ_DEC_ZERO));
    json_object_set_new(j, "time", jtime(r, o->time_ms));
    json_object_set_new(j, "updateTime", jtime(r, o->update_ms));
    json_object_set_new(j, "isWorking", json_boolean(o->is_working));
    json_object_set_new(j, "workingTime", working_json(r, o, o->time_ms));
    json_object_set_new(j, "origQuoteOrderQty", jdec(o->orig_quote_qty));
    json_object_set_new(j, "selfTradePreventionMode", json_string(cq_sim__stp_name(o->stp)));
    if (o->expiry != SIM_EXPIRY_NONE) { /* "returned only for expired orders" */
        json_object_set_new(j, "expiryReason", json_string(cq_sim__expiry_name(o->expiry)));
    }
    add_prevented_fields(j, o);
    return j;
}

static json_t *cancel_json(const struct rest_req *r, const char *symbol,
                           const struct cq_sim__order *o, const char *cancel_id,
                           int64_t transact_ms)
{
    json_t *j = json_object();
    json_object_set_new(j, "symbol", json_string(symbol));
    json_object_set_new(j, "origClientOrderId", json_string(o->client_id));
    json_object_set_new(j, "orderId", json_integer((json_int_t)o->order_id));
    json_object_set_new(j, "orderListId", json_integer(-1));
    json_object_set_new(j, "clientOrderId", json_string(cancel_id));
    json_object_set_new(j, "transactTime", jtime(r, transact_ms));
    json_object_set_new(j, "price", jdec(o->price));
    json_object_set_new(j, "origQty", jdec(o->orig_qty));
    json_object_set_new(j, "executedQty", jdec(o->executed_qty));
    json_object_set_new(j, "origQuoteOrderQty", jdec(o->orig_quote_qty));
    json_object_set_new(j, "cummulativeQuoteQty", jdec(o->cum_quote_qty));
    json_object_set_new(j, "status", json_string(cq_sim__order_status_name(o->status)));
    json_object_set_new(j, "timeInForce", json_string(tif_wire(o->tif)));
    json_object_set_new(j, "type", json_string(cq_sim__order_type_name(o->type)));
    json_object_set_new(j, "side", json_string(cq_sim__side_name(o->side)));
    if (cq_sim__order_type_is_stop(o->type)) {
        json_object_set_new(j, "stopPrice", jdec(o->stop_price));
    }
    json_object_set_new(j, "selfTradePreventionMode", json_string(cq_sim__stp_name(o->stp)));
    return j;
}

/* ---- POST /order and /order/test ------------------------------------------------------- */

enum wire_type {
    WT_LIMIT,
    WT_MARKET,
    WT_STOP_LOSS,
    WT_STOP_LOSS_LIMIT,
    WT_TAKE_PROFIT,
    WT_TAKE_PROFIT_LIMIT,
    WT_LIMIT_MAKER
};
static const char *const wire_types[] = {"LIMIT",           "MARKET",      "STOP_LOSS",
                                         "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT",
                                         "LIMIT_MAKER",     NULL};
static const char *const sides[] = {"BUY", "SELL", NULL};
static const char *const tifs[] = {"GTC", "IOC", "FOK", NULL};
static const char *const resp_types[] = {"ACK", "RESULT", "FULL", NULL};
static const char *const stp_modes[] = {"NONE",        "EXPIRE_TAKER", "EXPIRE_MAKER",
                                        "EXPIRE_BOTH", "DECREMENT",    NULL};
enum { RESP_ACK, RESP_RESULT, RESP_FULL };

struct order_args {
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int side, type, tif, resp_type, stp;
    bool has_tif, has_qty, has_quote, has_price, has_resp_type, has_stp, has_stop;
    cq_dec qty, quote, price, stop;
    char client_id[SIM_PARAM_CLIENT_ID_MAX + 1];
    bool compute_commission;
};

static bool not_required(struct rest_req *r, const char *name)
{
    set_error(r, 400, -1106, "Parameter '%s' sent when not required.", name);
    return false;
}

static bool parse_order_args(struct rest_req *r, struct order_args *a, bool test)
{
    struct cq_sim__api_error e;
    const struct cq_sim__params *p = &r->params;
    memset(a, 0, sizeof(*a));
    if (cq_sim__param_symbol(p, "symbol", true, a->symbol, NULL, &e) < 0 ||
        cq_sim__param_enum(p, "side", true, sides, &a->side, NULL, -1117, "Invalid side.", &e) <
            0 ||
        cq_sim__param_enum(p, "type", true, wire_types, &a->type, NULL, -1116, "Invalid orderType.",
                           &e) < 0) {
        return fail_api(r, &e);
    }
    int t = a->type;
    bool needs_tif = t == WT_LIMIT || t == WT_STOP_LOSS_LIMIT || t == WT_TAKE_PROFIT_LIMIT;
    bool needs_price = needs_tif || t == WT_LIMIT_MAKER;
    bool needs_stop = t == WT_STOP_LOSS || t == WT_STOP_LOSS_LIMIT || t == WT_TAKE_PROFIT ||
                      t == WT_TAKE_PROFIT_LIMIT;

    /* timeInForce */
    if (cq_sim__params_get(p, "timeInForce") != NULL && !needs_tif) {
        set_error(r, 400, -1114, "TimeInForce parameter sent when not required.");
        return false;
    }
    if (cq_sim__param_enum(p, "timeInForce", needs_tif, tifs, &a->tif, &a->has_tif, -1115,
                           "Invalid timeInForce.", &e) < 0) {
        return fail_api(r, &e);
    }
    /* quantity / quoteOrderQty */
    if (cq_sim__param_decimal(p, "quantity", false, &a->qty, &a->has_qty, &e) < 0 ||
        cq_sim__param_decimal(p, "quoteOrderQty", false, &a->quote, &a->has_quote, &e) < 0) {
        return fail_api(r, &e);
    }
    if (t == WT_MARKET) {
        if (!a->has_qty && !a->has_quote) {
            set_error(r, 400, -1102,
                      "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                      "empty/null!");
            return false;
        }
        if (a->has_qty && a->has_quote) {
            return not_required(r, "quoteOrderQty");
        }
    } else {
        if (!a->has_qty) {
            set_error(r, 400, -1102,
                      "Mandatory parameter 'quantity' was not sent, was empty/null, or "
                      "malformed.");
            return false;
        }
        if (a->has_quote) {
            return not_required(r, "quoteOrderQty");
        }
    }
    /* price */
    if (cq_sim__param_decimal(p, "price", needs_price, &a->price, &a->has_price, &e) < 0) {
        return fail_api(r, &e);
    }
    if (a->has_price && !needs_price) {
        return not_required(r, "price");
    }
    /* stopPrice and the features this venue does not offer */
    if (cq_sim__param_decimal(p, "stopPrice", needs_stop, &a->stop, &a->has_stop, &e) < 0) {
        return fail_api(r, &e);
    }
    if (a->has_stop && !needs_stop) {
        return not_required(r, "stopPrice");
    }
    static const char *const unsupported[] = {"icebergQty",     "trailingDelta", "pegPriceType",
                                              "pegOffsetValue", "pegOffsetType", NULL};
    for (int i = 0; unsupported[i] != NULL; i++) {
        if (cq_sim__params_get(p, unsupported[i]) != NULL) {
            return not_required(r, unsupported[i]);
        }
    }
    int64_t ignored;
    if (cq_sim__param_client_id(p, "newClientOrderId", false, a->client_id, NULL, &e) < 0 ||
        cq_sim__param_enum(p, "newOrderRespType", false, resp_types, &a->resp_type,
                           &a->has_resp_type, 0, NULL, &e) < 0 ||
        cq_sim__param_enum(p, "selfTradePreventionMode", false, stp_modes, &a->stp, &a->has_stp, 0,
                           NULL, &e) < 0 ||
        cq_sim__param_long(p, "strategyId", false, &ignored, NULL, &e) < 0 ||
        cq_sim__param_long(p, "strategyType", false, &ignored, NULL, &e) < 0) {
        return fail_api(r, &e);
    }
    if (test &&
        cq_sim__param_bool(p, "computeCommissionRates", &a->compute_commission, NULL, &e) < 0) {
        return fail_api(r, &e);
    }
    if (!a->has_resp_type) {
        a->resp_type = (t == WT_MARKET || t == WT_LIMIT) ? RESP_FULL : RESP_ACK;
    }
    if (!a->has_stp) {
        a->stp = SIM_STP_EXPIRE_MAKER; /* defaultSelfTradePreventionMode */
    }
    return true;
}

static void build_order_req(const struct order_args *a, int idx, struct cq_sim__order_req *req)
{
    memset(req, 0, sizeof(*req));
    req->symbol_idx = idx;
    req->side = a->side == 0 ? SIM_BUY : SIM_SELL;
    req->type = a->type == WT_MARKET              ? SIM_MARKET
                : a->type == WT_LIMIT_MAKER       ? SIM_LIMIT_MAKER
                : a->type == WT_STOP_LOSS_LIMIT   ? SIM_STOP_LOSS_LIMIT
                : a->type == WT_TAKE_PROFIT_LIMIT ? SIM_TAKE_PROFIT_LIMIT
                                                  : SIM_LIMIT;
    req->has_stop_price = a->has_stop;
    req->stop_price = a->stop;
    req->tif = !a->has_tif ? SIM_TIF_NONE : a->tif == 0 ? SIM_GTC : a->tif == 1 ? SIM_IOC : SIM_FOK;
    req->has_qty = a->has_qty;
    req->qty = a->qty;
    req->has_quote_qty = a->has_quote;
    req->quote_qty = a->quote;
    req->has_price = a->has_price;
    req->price = a->price;
    /* fits: a->client_id holds at most SIM_PARAM_CLIENT_ID_MAX (36) characters,
     * req->client_id SIM_CLIENT_ID_LEN (40) bytes */
    cq_strlcpy(req->client_id, a->client_id, sizeof(req->client_id));
    req->stp = (enum cq_sim__stp)a->stp; /* stp_modes[] lists the enum's names in order */
}

static void roll_windows(struct cq_sim__ratelimit *rl, int64_t now)
{
    cq_sim__rl_roll_weight_locked(rl, now); /* the WS API charges the same minute */
    int64_t ten = now - now % 10000;
    if (rl->orders_10s_window_start_ms != ten) {
        rl->orders_10s_window_start_ms = ten;
        rl->orders_10s = 0;
    }
    int64_t day = now - now % 86400000;
    if (rl->orders_1d_window_start_ms != day) {
        rl->orders_1d_window_start_ms = day;
        rl->orders_1d = 0;
    }
}

/* Under the lock: -1015, or true. The order is counted by
 * count_placed_order_locked once the engine has accepted it: "Every
 * successful request to place an order adds to the unfilled order count";
 * a rejected one does not. */
static bool count_order_locked(struct rest_req *r)
{
    struct cq_sim__ratelimit *rl = &r->sim->rl;
    int64_t now = cq_sim__wall_ms();
    roll_windows(rl, now);
    cq_sim__order_count_sync_locked(r->sim); /* fills give orders back (rest_extra.c) */
    r->resp.order_headers = true;
    if (rl->order_limit_10s > 0 && rl->orders_10s >= rl->order_limit_10s) {
        set_error(r, 429, -1015, "Too many new orders; current limit is %u orders per 10 SECOND.",
                  rl->order_limit_10s);
        r->resp.retry_after_s = ceil_div_s(rl->orders_10s_window_start_ms + 10000 - now);
    } else if (rl->order_limit_1d > 0 && rl->orders_1d >= rl->order_limit_1d) {
        set_error(r, 429, -1015, "Too many new orders; current limit is %u orders per DAY.",
                  rl->order_limit_1d);
        r->resp.retry_after_s = ceil_div_s(rl->orders_1d_window_start_ms + 86400000 - now);
    }
    r->resp.orders_10s = rl->orders_10s;
    r->resp.orders_1d = rl->orders_1d;
    return !r->resp.is_error;
}

/* Under the lock, after the engine accepted the order: count it, then give
 * it back at once if it filled on placement. */
static void count_placed_order_locked(struct rest_req *r)
{
    struct cq_sim__ratelimit *rl = &r->sim->rl;
    roll_windows(rl, cq_sim__wall_ms());
    rl->orders_10s++;
    rl->orders_1d++;
    cq_sim__order_count_sync_locked(r->sim);
    r->resp.orders_10s = rl->orders_10s;
    r->resp.orders_1d = rl->orders_1d;
}

/* ---- order entry latency ------------------------------------------------------
 *
 * An order or cancel reaches the book opts.order_latency_ms of MARKET time
 * after it arrives, and its answer leaves opts.response_latency_ms of market
 * time after that (docs/SIMEX.md "Order entry latency"). Market time, so a
 * replay at --speed N waits N times less wall time and the order still
 * meets the book as it is at arrival + latency: the instant is registered
 * (cq_sim__latency_hold) and the market thread does not advance past it
 * until the request has been executed. The handler (its own connection
 * thread) waits in LATENCY_POLL_MS slices without the lock. */
#define LATENCY_POLL_MS 1

struct latency_ticket {
    int64_t market_ms; /* when the request met the book */
    bool held;
};

/* Returns with the lock held and the market clock at arrival + latency
 * (or wherever it is when there is no latency or the wait timed out). */
static void latency_lock(struct cq_sim__state *sim, struct latency_ticket *t)
{
    cq_sim__lock(sim);
    t->held = false;
    t->market_ms = cq_sim__market_now_ms(sim->market);
    if (sim->opts.order_latency_ms == 0) {
        return;
    }
    int64_t target = t->market_ms + sim->opts.order_latency_ms;
    t->held = cq_sim__latency_hold(sim, target);
    sim->latency.requests_delayed++;
    int64_t deadline = cq_sim__wall_ms() + SIM_LATENCY_WAIT_MAX_MS;
    while (cq_sim__market_now_ms(sim->market) < target && !atomic_load(&sim->stop)) {
        if (cq_sim__wall_ms() > deadline) {
            sim->latency.wait_timeouts++;
            break;
        }
        cq_sim__unlock(sim);
        cq_time_sleep_ms(LATENCY_POLL_MS);
        cq_sim__lock(sim);
    }
    if (t->held) {
        /* the market cannot have passed it: executing at exactly target */
        t->market_ms = target;
    } else {
        t->market_ms = cq_sim__market_now_ms(sim->market);
    }
}

static void latency_unlock(struct cq_sim__state *sim, struct latency_ticket *t)
{
    if (t->held) {
        cq_sim__latency_release(sim, t->market_ms);
        t->held = false;
    }
    cq_sim__unlock(sim);
}

/* After the request was executed at t->market_ms: wait (without the lock)
 * until the market clock is response_latency_ms past it. */
static void response_latency_wait(struct cq_sim__state *sim, const struct latency_ticket *t)
{
    if (sim->opts.response_latency_ms == 0) {
        return;
    }
    int64_t target = t->market_ms + sim->opts.response_latency_ms;
    int64_t deadline = cq_sim__wall_ms() + SIM_LATENCY_WAIT_MAX_MS;
    for (;;) {
        cq_sim__lock(sim);
        int64_t now = cq_sim__market_now_ms(sim->market);
        bool late = cq_sim__wall_ms() > deadline;
        if (late && now < target) {
            sim->latency.wait_timeouts++;
        }
        cq_sim__unlock(sim);
        if (now >= target || late || atomic_load(&sim->stop)) {
            return;
        }
        cq_time_sleep_ms(LATENCY_POLL_MS);
    }
}

static void order_common(struct rest_req *r, bool test)
{
    struct order_args a;
    if (!parse_order_args(r, &a, test) || !auth_signed(r)) {
        return;
    }
    struct cq_sim__fill *fills = NULL;
    if (!test) {
        fills = malloc(MAX_FILLS * sizeof(*fills));
        if (fills == NULL) {
            set_error(r, 500, -1000, MSG_UNKNOWN);
            return;
        }
    }
    struct cq_sim__state *sim = r->sim;
    struct cq_sim__reject rej = {0, ""};
    struct cq_sim__order order;
    size_t n_fills = 0;
    unsigned maker = 0, taker = 0;
    int64_t now = 0;
    bool placed = false;
    json_t *prevented = NULL; /* preventedMatches (STP, simq): copied under the lock */
    struct latency_ticket lt = {0, false};

    if (test) {
        cq_sim__lock(sim);
    } else {
        latency_lock(sim, &lt);
    }
    now = cq_sim__server_time_ms(sim);
    /* the window is checked again where the request meets the engine */
    if (!time_ok(r, now)) {
        goto unlock;
    }
    int idx = symbol_index_locked(r, a.symbol);
    if (idx < 0) {
        goto unlock;
    }
    if (a.type == WT_STOP_LOSS || a.type == WT_TAKE_PROFIT) {
        /* not in production BTCUSDT's orderTypes: errors.md's answer */
        set_error(r, 400, -2010,
                  a.type == WT_STOP_LOSS ? "Stop loss orders are not supported for this symbol."
                                         : "Take profit orders are not supported for this symbol.");
        goto unlock;
    }
    if (a.stp > SIM_STP_EXPIRE_BOTH) { /* DECREMENT: not among the allowed modes */
        set_error(r, 400, -2010,
                  "Self-trade prevention mode DECREMENT is not supported by coinquant-simex.");
        goto unlock;
    }
    if (!test) {
        if (!count_order_locked(r)) {
            goto unlock;
        }
        if (sim->faults.reject_next_orders > 0) {
            sim->faults.reject_next_orders--;
            set_error(r, 400, -2010,
                      "Order rejected by coinquant-simex fault injection (orders/reject).");
            goto unlock;
        }
    }
    struct cq_sim__order_req req;
    build_order_req(&a, idx, &req);
    struct cq_sim__book_view book;
    cq_sim__book_view(sim, idx, &book);
    int rc = 0;
    if (test || sim->faults.force_insufficient) {
        rc = cq_sim__engine_test_order(sim->engine, &req, &book, &rej);
        if (rc == 0 && sim->faults.force_insufficient) {
            rc = -CQ_EVENUE;
            rej.code = SIM_ERR_NEW_ORDER_REJECTED;
            /* constant of 54 characters into SIM_REJECT_MSG_LEN (200) */
            cq_strlcpy(rej.msg, SIM_MSG_INSUFFICIENT, sizeof(rej.msg));
        } else if (rc < 0 && rej.code != SIM_ERR_FILTER && sim->faults.force_insufficient) {
            rej.code = SIM_ERR_NEW_ORDER_REJECTED;
            cq_strlcpy(rej.msg, SIM_MSG_INSUFFICIENT, sizeof(rej.msg));
        }
    }
    if (rc == 0 && !test) {
        rc = cq_sim__engine_place(sim->engine, &req, &book, now, &order, fills, MAX_FILLS, &n_fills,
                                  &rej);
        placed = rc == 0;
        if (placed) {
            count_placed_order_locked(r);
            prevented = prevented_matches_json(sim->engine);
        }
    }
    if (rc == -CQ_EFULL) {
        set_error(r, 500, -1000, MSG_UNKNOWN);
    } else if (rc < 0) {
        set_error(r, 400, rej.code != 0 ? rej.code : SIM_ERR_NEW_ORDER_REJECTED, "%s",
                  rej.msg[0] != '\0' ? rej.msg : MSG_UNKNOWN);
    }
    cq_sim__engine_fees(sim->engine, &maker, &taker);
unlock:
    if (test) {
        cq_sim__unlock(sim);
    } else {
        latency_unlock(sim, &lt);
        response_latency_wait(sim, &lt);
    }

    if (r->resp.is_error) {
        json_decref(prevented);
        free(fills);
        return;
    }
    if (test) {
        if (!a.compute_commission) {
            set_ok(r, json_object());
        } else {
            set_ok(r, json_pack("{s:{s:o,s:o},s:{s:o,s:o},s:{s:b,s:b,s:s,s:o}}",
                                "standardCommissionForOrder", "maker", bps_rate(maker), "taker",
                                bps_rate(taker), "taxCommissionForOrder", "maker", bps_rate(0),
                                "taker", bps_rate(0), "discount", "enabledForAccount", 0,
                                "enabledForSymbol", 0, "discountAsset", "BNB", "discount",
                                bps_rate(0)));
        }
        return;
    }
    if (!placed) {
        json_decref(prevented);
        free(fills);
        set_error(r, 500, -1000, MSG_UNKNOWN);
        return;
    }
    json_t *j = order_ack_json(r, a.symbol, &order, now);
    if (a.resp_type != RESP_ACK) {
        add_result_fields(r, j, &order, now, cq_sim__stp_name(order.stp));
    }
    if (a.resp_type == RESP_FULL) {
        json_object_set_new(j, "fills", fills_json(fills, n_fills));
        if (prevented != NULL) { /* stp_faq.md: the taker's "preventedMatches" */
            json_object_set_new(j, "preventedMatches", prevented);
            prevented = NULL;
        }
    }
    json_decref(prevented);
    free(fills);
    set_ok(r, j);
}

static void h_order_post(struct rest_req *r)
{
    order_common(r, false);
}

static void h_order_test(struct rest_req *r)
{
    order_common(r, true);
}

/* ---- order queries and cancels ------------------------------------------------------ */

struct order_ref {
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    bool has_id, has_cid;
    int64_t order_id;
    char cid[SIM_CLIENT_ID_LEN];
    bool cid_too_long; /* cannot exist */
};

static bool parse_order_ref(struct rest_req *r, struct order_ref *ref)
{
    struct cq_sim__api_error e;
    memset(ref, 0, sizeof(*ref));
    if (cq_sim__param_symbol(&r->params, "symbol", true, ref->symbol, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "orderId", false, &ref->order_id, &ref->has_id, &e) < 0) {
        return fail_api(r, &e);
    }
    const char *cid = cq_sim__params_get(&r->params, "origClientOrderId");
    ref->has_cid = cid != NULL;
    if (!ref->has_id && !ref->has_cid) {
        set_error(r, 400, -1102,
                  "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                  "empty/null!");
        return false;
    }
    if (cid != NULL && cq_strlcpy(ref->cid, cid, sizeof(ref->cid)) >= sizeof(ref->cid)) {
        ref->cid_too_long = true;
    }
    return true;
}

/* Look the order up (under the lock); code for "not found" is the caller's. */
static bool find_order_locked(struct rest_req *r, int idx, const struct order_ref *ref,
                              struct cq_sim__order *o, int not_found_code,
                              const char *not_found_msg)
{
    struct cq_sim__reject rej;
    if (ref->cid_too_long || (ref->has_id && ref->order_id == 0) ||
        cq_sim__engine_get_order(r->sim->engine, idx, ref->has_id ? (uint64_t)ref->order_id : 0,
                                 ref->has_cid ? ref->cid : NULL, o, &rej) < 0) {
        set_error(r, 400, not_found_code, "%s", not_found_msg);
        return false;
    }
    return true;
}

static void h_order_get(struct rest_req *r)
{
    struct order_ref ref;
    if (!parse_order_ref(r, &ref) || !auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct cq_sim__order o;
    bool found = false;
    cq_sim__lock(sim);
    int idx = symbol_index_locked(r, ref.symbol);
    if (idx >= 0) {
        found = find_order_locked(r, idx, &ref, &o, SIM_ERR_NO_SUCH_ORDER, SIM_MSG_NO_SUCH_ORDER);
    }
    cq_sim__unlock(sim);
    if (found) {
        set_ok(r, order_query_json(r, ref.symbol, &o));
    }
}

static const char *const cancel_restrictions[] = {"ONLY_NEW", "ONLY_PARTIALLY_FILLED", NULL};

static void h_order_delete(struct rest_req *r)
{
    struct cq_sim__api_error e;
    struct order_ref ref;
    char cancel_id[SIM_PARAM_CLIENT_ID_MAX + 1] = "";
    int restriction = -1;
    bool has_restriction = false;
    if (!parse_order_ref(r, &ref)) {
        return;
    }
    if (cq_sim__param_client_id(&r->params, "newClientOrderId", false, cancel_id, NULL, &e) < 0 ||
        cq_sim__param_enum(&r->params, "cancelRestrictions", false, cancel_restrictions,
                           &restriction, &has_restriction, 0, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    bool done = false;
    int64_t now = 0;
    struct latency_ticket lt;
    latency_lock(sim, &lt);
    now = cq_sim__server_time_ms(sim);
    int idx = symbol_index_locked(r, ref.symbol);
    if (idx < 0 ||
        !find_order_locked(r, idx, &ref, &o, SIM_ERR_CANCEL_REJECTED, SIM_MSG_UNKNOWN_ORDER)) {
        goto unlock;
    }
    if (has_restriction && ((restriction == 0 && o.status != SIM_NEW) ||
                            (restriction == 1 && o.status != SIM_PARTIALLY_FILLED))) {
        set_error(r, 400, SIM_ERR_CANCEL_REJECTED,
                  "Order was not canceled due to cancel restrictions.");
        goto unlock;
    }
    if (cancel_id[0] == '\0') {
        gen_id(sim, cancel_id);
    }
    if (cq_sim__engine_cancel(sim->engine, idx, o.order_id, NULL, cancel_id, now, &o, &rej) < 0) {
        set_error(r, 400, SIM_ERR_CANCEL_REJECTED, "%s",
                  rej.msg[0] != '\0' ? rej.msg : SIM_MSG_UNKNOWN_ORDER);
        goto unlock;
    }
    done = true;
unlock:
    latency_unlock(sim, &lt);
    response_latency_wait(sim, &lt);
    if (done) {
        set_ok(r, cancel_json(r, ref.symbol, &o, cancel_id, now));
    }
}

struct orders_ctx {
    const struct rest_req *r;
    const struct cq_sim__engine *engine;
    json_t *arr;
};

static void add_query_order(void *ctx, const struct cq_sim__order *o)
{
    struct orders_ctx *oc = ctx;
    const struct cq_sim__symbol *s = cq_sim__engine_symbol(oc->engine, o->symbol_idx);
    json_array_append_new(oc->arr, order_query_json(oc->r, s != NULL ? s->symbol : "", o));
}

static void h_open_orders_get(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    bool has_symbol = false;
    if (cq_sim__param_symbol(&r->params, "symbol", false, symbol, &has_symbol, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct orders_ctx oc = {r, sim->engine, json_array()};
    cq_sim__lock(sim);
    int idx = has_symbol ? symbol_index_locked(r, symbol) : -1;
    if (!has_symbol || idx >= 0) {
        cq_sim__engine_open_orders(sim->engine, idx, add_query_order, &oc);
    }
    cq_sim__unlock(sim);
    if (r->resp.is_error) {
        json_decref(oc.arr);
        return;
    }
    set_ok(r, oc.arr);
}

struct id_list {
    uint64_t *ids;
    size_t n, cap;
    bool oom;
};

static void collect_id(void *ctx, const struct cq_sim__order *o)
{
    struct id_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 64 : l->cap * 2;
        uint64_t *ids = realloc(l->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            l->oom = true;
            return;
        }
        l->ids = ids;
        l->cap = cap;
    }
    l->ids[l->n++] = o->order_id;
}

static void h_open_orders_delete(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct id_list ids = {NULL, 0, 0, false};
    json_t *arr = json_array();
    struct latency_ticket lt;
    latency_lock(sim, &lt);
    int64_t now = cq_sim__server_time_ms(sim);
    int idx = symbol_index_locked(r, symbol);
    if (idx >= 0) {
        cq_sim__engine_open_orders(sim->engine, idx, collect_id, &ids);
        /* Binance answers -2011 when there is nothing to cancel. */
        if (ids.oom) {
            set_error(r, 500, -1000, MSG_UNKNOWN);
        } else if (ids.n == 0) {
            set_error(r, 400, SIM_ERR_CANCEL_REJECTED, SIM_MSG_UNKNOWN_ORDER);
        }
        for (size_t i = 0; !r->resp.is_error && i < ids.n; i++) {
            char cancel_id[GENERATED_ID_LEN + 1];
            struct cq_sim__order o;
            struct cq_sim__reject rej;
            gen_id(sim, cancel_id);
            if (cq_sim__engine_cancel(sim->engine, idx, ids.ids[i], NULL, cancel_id, now, &o,
                                      &rej) == 0) {
                json_array_append_new(arr, cancel_json(r, symbol, &o, cancel_id, now));
            }
        }
    }
    latency_unlock(sim, &lt);
    response_latency_wait(sim, &lt);
    free(ids.ids);
    if (r->resp.is_error) {
        json_decref(arr);
        return;
    }
    set_ok(r, arr);
}

#define DAY_MS 86400000LL

static void h_all_orders(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int64_t from_id = 0, start = 0, end = 0, limit = 500;
    bool has_start, has_end;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "orderId", false, &from_id, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!parse_time_range(r, &start, &end, &has_start, &has_end) ||
        !parse_limit(r, 500, 1000, &limit)) {
        return;
    }
    if (has_start && has_end && end - start > DAY_MS) {
        set_error(r, 400, -1127, "More than 24 hours between startTime and endTime.");
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct orders_ctx oc = {r, sim->engine, json_array()};
    cq_sim__lock(sim);
    int idx = symbol_index_locked(r, symbol);
    if (idx >= 0) {
        cq_sim__engine_all_orders(sim->engine, idx, (uint64_t)from_id, start, end, (size_t)limit,
                                  add_query_order, &oc);
    }
    cq_sim__unlock(sim);
    if (idx < 0) {
        json_decref(oc.arr);
        return;
    }
    set_ok(r, oc.arr);
}

struct trades_ctx {
    const struct rest_req *r;
    const char *symbol;
    json_t *arr;
};

static void add_trade(void *ctx, const struct cq_sim__trade *t)
{
    struct trades_ctx *tc = ctx;
    json_t *j = json_object();
    json_object_set_new(j, "symbol", json_string(tc->symbol));
    json_object_set_new(j, "id", json_integer((json_int_t)t->trade_id));
    json_object_set_new(j, "orderId", json_integer((json_int_t)t->order_id));
    json_object_set_new(j, "orderListId", json_integer(-1));
    json_object_set_new(j, "price", jdec(t->price));
    json_object_set_new(j, "qty", jdec(t->qty));
    json_object_set_new(j, "quoteQty", jdec(t->quote_qty));
    json_object_set_new(j, "commission", jdec(t->commission));
    json_object_set_new(j, "commissionAsset", json_string(t->commission_asset));
    json_object_set_new(j, "time", jtime(tc->r, t->time_ms));
    json_object_set_new(j, "isBuyer", json_boolean(t->is_buyer));
    json_object_set_new(j, "isMaker", json_boolean(t->is_maker));
    json_object_set_new(j, "isBestMatch", json_true());
    json_array_append_new(tc->arr, j);
}

static void h_my_trades(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int64_t order_id = 0, from_id = 0, start = 0, end = 0, limit = 500;
    bool has_start, has_end, has_from = false;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "orderId", false, &order_id, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "fromId", false, &from_id, &has_from, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!parse_time_range(r, &start, &end, &has_start, &has_end) ||
        !parse_limit(r, 500, 1000, &limit)) {
        return;
    }
    if (has_from && (has_start || has_end)) {
        set_error(r, 400, -1128, "Combination of optional parameters invalid.");
        return;
    }
    if (has_start && has_end && end - start > DAY_MS) {
        set_error(r, 400, -1127, "More than 24 hours between startTime and endTime.");
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    struct cq_sim__state *sim = r->sim;
    struct trades_ctx tc = {r, symbol, json_array()};
    cq_sim__lock(sim);
    int idx = symbol_index_locked(r, symbol);
    if (idx >= 0) {
        cq_sim__engine_my_trades(sim->engine, idx, (uint64_t)order_id, (uint64_t)from_id, start,
                                 end, (size_t)limit, add_trade, &tc);
    }
    cq_sim__unlock(sim);
    if (idx < 0) {
        json_decref(tc.arr);
        return;
    }
    set_ok(r, tc.arr);
}

/* ---- user data stream ------------------------------------------------------------- */

static void h_listen_key_post(struct rest_req *r)
{
    if (!check_key(r)) {
        return;
    }
    char key[SIM_LISTEN_KEY_LEN + 1];
    cq_sim__lock(r->sim);
    /* listen keys are exactly SIM_LISTEN_KEY_LEN characters: they fit */
    cq_strlcpy(key, cq_sim__listen_key_create(r->sim, cq_sim__wall_ms()), sizeof(key));
    cq_sim__unlock(r->sim);
    set_ok(r, json_pack("{s:s}", "listenKey", key));
}

static void listen_key_change(struct rest_req *r, bool del)
{
    const char *key = cq_sim__params_get(&r->params, "listenKey");
    if (key == NULL) {
        set_error(r, 400, -1102,
                  "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.");
        return;
    }
    if (!check_key(r)) {
        return;
    }
    cq_sim__lock(r->sim);
    int rc = del ? cq_sim__listen_key_delete(r->sim, key)
                 : cq_sim__listen_key_keepalive(r->sim, key, cq_sim__wall_ms());
    cq_sim__unlock(r->sim);
    if (rc < 0) {
        set_error(r, 400, -1125, "This listenKey does not exist.");
        return;
    }
    set_ok(r, json_object());
}

static void h_listen_key_put(struct rest_req *r)
{
    listen_key_change(r, false);
}

static void h_listen_key_delete(struct rest_req *r)
{
    listen_key_change(r, true);
}

/* ---- avgPrice, rateLimit/order, account/commission (bodies: rest_extra.c) ---------- */

static void h_avg_price(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    cq_sim__lock(r->sim);
    int idx = symbol_index_locked(r, symbol);
    json_t *body = idx < 0 ? NULL : cq_sim__avg_price_json(r->sim, idx, r->time_us);
    cq_sim__unlock(r->sim);
    if (idx >= 0) {
        set_ok(r, body);
    }
}

static void h_trades(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int64_t limit = 500;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!parse_limit(r, 500, 1000, &limit)) {
        return;
    }
    if (limit < 1) {
        limit = 500;
    }
    cq_sim__lock(r->sim);
    int idx = symbol_index_locked(r, symbol);
    json_t *body = idx < 0 ? NULL : cq_sim__trades_json(r->sim, idx, (size_t)limit, r->time_us);
    cq_sim__unlock(r->sim);
    if (idx >= 0) {
        set_ok(r, body);
    }
}

static void h_agg_trades(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    int64_t limit = 500, from_id = 0, start = 0, end = 0;
    bool has_from = false, has_start = false, has_end = false;
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0 ||
        cq_sim__param_long(&r->params, "fromId", false, &from_id, &has_from, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!parse_time_range(r, &start, &end, &has_start, &has_end) ||
        !parse_limit(r, 500, 1000, &limit)) {
        return;
    }
    if (limit < 1) {
        limit = 500;
    }
    /* rest-api.md aggTrades: "If both startTime and endTime are sent, time
     * between startTime and endTime must be less than 1 hour." */
    if (has_start && has_end && end - start >= 3600000) {
        set_error(r, 400, -1127, "More than 1 hours between startTime and endTime.");
        return;
    }
    cq_sim__lock(r->sim);
    int idx = symbol_index_locked(r, symbol);
    json_t *body = idx < 0
                       ? NULL
                       : cq_sim__agg_trades_json(
                             r->sim, idx, has_from && from_id > 0 ? (uint64_t)from_id : 0,
                             has_start ? start : 0, has_end ? end : 0, (size_t)limit, r->time_us);
    cq_sim__unlock(r->sim);
    if (idx >= 0) {
        set_ok(r, body);
    }
}

static void h_rate_limit_order(struct rest_req *r)
{
    if (!auth_signed(r)) {
        return;
    }
    cq_sim__lock(r->sim);
    roll_windows(&r->sim->rl, cq_sim__wall_ms());
    cq_sim__order_count_sync_locked(r->sim);
    json_t *body = cq_sim__rate_limit_order_json(r->sim);
    cq_sim__unlock(r->sim);
    set_ok(r, body);
}

static void h_account_commission(struct rest_req *r)
{
    struct cq_sim__api_error e;
    char symbol[SIM_PARAM_SYMBOL_MAX + 1];
    if (cq_sim__param_symbol(&r->params, "symbol", true, symbol, NULL, &e) < 0) {
        fail_api(r, &e);
        return;
    }
    if (!auth_signed(r)) {
        return;
    }
    cq_sim__lock(r->sim);
    int idx = symbol_index_locked(r, symbol);
    json_t *body = idx < 0 ? NULL : cq_sim__commission_json(r->sim, idx);
    cq_sim__unlock(r->sim);
    if (idx >= 0) {
        set_ok(r, body);
    }
}

/* ---- routing -------------------------------------------------------------------------- */

static const struct endpoint endpoints[] = {
    {"GET", "/api/v3/ping", SEC_NONE, 1, NULL, 0, h_ping},
    {"GET", "/api/v3/time", SEC_NONE, 1, NULL, 0, h_time},
    {"GET", "/api/v3/exchangeInfo", SEC_NONE, 20, NULL, 0, h_exchange_info},
    {"GET", "/api/v3/depth", SEC_NONE, 5, w_depth, 0, h_depth},
    {"GET", "/api/v3/klines", SEC_NONE, 2, NULL, 0, h_klines},
    {"GET", "/api/v3/ticker/24hr", SEC_NONE, 2, w_ticker24, 0, h_ticker24},
    {"GET", "/api/v3/ticker/price", SEC_NONE, 2, w_ticker_price, 0, h_ticker_price},
    {"GET", "/api/v3/ticker/bookTicker", SEC_NONE, 2, w_ticker_price, 0, h_book_ticker},
    {"GET", "/api/v3/account", SEC_SIGNED, 20, NULL, 0, h_account},
    {"GET", "/api/v3/avgPrice", SEC_NONE, 2, NULL, 0, h_avg_price},
    {"GET", "/api/v3/trades", SEC_NONE, 25, NULL, 0, h_trades},
    {"GET", "/api/v3/aggTrades", SEC_NONE, 4, NULL, 0, h_agg_trades},
    {"GET", "/api/v3/rateLimit/order", SEC_SIGNED, 40, NULL, 0, h_rate_limit_order},
    {"GET", "/api/v3/account/commission", SEC_SIGNED, 20, NULL, 0, h_account_commission},
    {"POST", "/api/v3/order", SEC_SIGNED, 1, NULL, EP_FREE_ON_SUCCESS | EP_MUTATES | EP_ORDER_POST,
     h_order_post},
    {"POST", "/api/v3/order/test", SEC_SIGNED, 1, w_order_test, 0, h_order_test},
    {"GET", "/api/v3/order", SEC_SIGNED, 4, NULL, 0, h_order_get},
    {"DELETE", "/api/v3/order", SEC_SIGNED, 1, NULL, EP_FREE_ON_SUCCESS | EP_MUTATES,
     h_order_delete},
    {"GET", "/api/v3/openOrders", SEC_SIGNED, 6, w_open_orders, 0, h_open_orders_get},
    {"DELETE", "/api/v3/openOrders", SEC_SIGNED, 1, NULL, EP_FREE_ON_SUCCESS | EP_MUTATES,
     h_open_orders_delete},
    {"GET", "/api/v3/allOrders", SEC_SIGNED, 20, NULL, 0, h_all_orders},
    {"GET", "/api/v3/myTrades", SEC_SIGNED, 20, w_my_trades, 0, h_my_trades},
    {"POST", "/api/v3/userDataStream", SEC_USER_STREAM, 2, NULL, 0, h_listen_key_post},
    {"PUT", "/api/v3/userDataStream", SEC_USER_STREAM, 2, NULL, 0, h_listen_key_put},
    {"DELETE", "/api/v3/userDataStream", SEC_USER_STREAM, 2, NULL, 0, h_listen_key_delete},
};

/* ---- admission: bans, weight, storms, 5xx ------------------------------------------- */

enum admit { ADMIT_OK, ADMIT_REFUSED, ADMIT_5XX_BEFORE, ADMIT_5XX_AFTER };

static void start_ban_locked(struct rest_req *r, int64_t now)
{
    struct cq_sim__ratelimit *rl = &r->sim->rl;
    int64_t len = BAN_BASE_MS;
    for (uint32_t i = 0; i < rl->bans && len < BAN_MAX_MS; i++) {
        len *= 2;
    }
    if (len > BAN_MAX_MS) {
        len = BAN_MAX_MS;
    }
    rl->banned_until_ms = now + len;
    rl->bans++;
    rl->requests_after_429 = 0;
    cq_log_warn(SERVICE, "simex_ip_banned",
                json_pack("{s:I,s:I}", "ban_ms", (json_int_t)len, "bans", (json_int_t)rl->bans),
                "REST client banned for %lld ms after ignoring 429s", (long long)len);
}

static void answer_banned_locked(struct rest_req *r, int64_t now)
{
    struct cq_sim__ratelimit *rl = &r->sim->rl;
    set_error(r, 418, -1003,
              "Way too much request weight used; IP banned until %lld. Please use WebSocket "
              "Streams for live updates to avoid bans.",
              (long long)(rl->banned_until_ms + r->sim->faults.clock_skew_ms));
    r->resp.retry_after_s = ceil_div_s(rl->banned_until_ms - now);
}

static enum admit admit_locked(struct rest_req *r, const struct endpoint *ep, unsigned weight)
{
    struct cq_sim__state *sim = r->sim;
    struct cq_sim__ratelimit *rl = &sim->rl;
    int64_t now = cq_sim__wall_ms();
    roll_windows(rl, now);
    sim->counters.rest_requests++;
    if (now < rl->banned_until_ms) {
        answer_banned_locked(r, now);
        return ADMIT_REFUSED;
    }
    uint32_t limit = cq_sim__rl_weight_limit(rl);
    bool free_ok = ep != NULL && (ep->flags & EP_FREE_ON_SUCCESS) != 0;
    uint32_t charge = free_ok ? 0 : weight;
    rl->weight_used = rl->weight_used > UINT32_MAX - charge ? UINT32_MAX : rl->weight_used + charge;
    bool storm = now < sim->faults.storm_until_ms;
    bool over = free_ok ? rl->weight_used + 1 > limit : rl->weight_used > limit;
    if (storm || over) {
        if (free_ok && rl->weight_used < UINT32_MAX) {
            rl->weight_used++; /* a failed order request costs 1 */
        }
        rl->requests_after_429++;
        if (rl->requests_after_429 > BAN_AFTER_429 + 1) {
            start_ban_locked(r, now);
            answer_banned_locked(r, now);
            return ADMIT_REFUSED;
        }
        set_error(r, 429, -1003,
                  "Too much request weight used; current limit is %u request weight per 1 "
                  "MINUTE. Please use WebSocket Streams for live updates to avoid polling the "
                  "API.",
                  limit);
        int64_t until =
            storm ? sim->faults.storm_until_ms : rl->weight_window_start_ms + CQ_MS_PER_MINUTE;
        r->resp.retry_after_s = ceil_div_s(until - now);
        return ADMIT_REFUSED;
    }
    if (sim->faults.rest_5xx_per_mille > 0) {
        uint64_t x = cq_sim__rand(sim);
        if (x % 1000 < sim->faults.rest_5xx_per_mille) {
            bool mutates = ep != NULL && (ep->flags & EP_MUTATES) != 0;
            return mutates && ((x >> 32) & 1) != 0 ? ADMIT_5XX_AFTER : ADMIT_5XX_BEFORE;
        }
    }
    return ADMIT_OK;
}

static void set_5xx(struct rest_req *r)
{
    set_error(r, 503, -1000, MSG_UNKNOWN);
}

static bool body_is_form(struct MHD_Connection *conn)
{
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct == NULL) {
        return true;
    }
    while (*ct == ' ') {
        ct++;
    }
    static const char form[] = "application/x-www-form-urlencoded";
    return strncasecmp(ct, form, sizeof(form) - 1) == 0 &&
           (ct[sizeof(form) - 1] == '\0' || ct[sizeof(form) - 1] == ';' ||
            ct[sizeof(form) - 1] == ' ');
}

static void injected_latency(struct cq_sim__state *sim)
{
    cq_sim__lock(sim);
    int64_t ms = sim->faults.rest_latency_ms;
    cq_sim__unlock(sim);
    while (ms > 0 && !atomic_load(&sim->stop)) {
        int64_t slice = ms < 10 ? ms : 10;
        cq_time_sleep_ms(slice);
        ms -= slice;
    }
}

/* The orders/timeout fault: an order that was executed has its answer held
 * back (in 10 ms slices, so that a stop is not held up), and the held order
 * is logged (simex_order_answer_held) so that a test knows which one. */
static void late_order_answer(struct cq_sim__state *sim, const struct rest_resp *resp)
{
    cq_sim__lock(sim);
    int64_t ms = 0;
    if (sim->faults.late_orders > 0) {
        sim->faults.late_orders--;
        ms = sim->faults.late_order_ms;
    }
    cq_sim__unlock(sim);
    if (ms == 0) {
        return;
    }
    const char *cid = json_string_value(json_object_get(resp->body, "clientOrderId"));
    json_t *oid = json_object_get(resp->body, "orderId");
    cq_log_info(SERVICE, "simex_order_answer_held",
                json_pack("{s:s,s:I,s:i,s:I}", "client_order_id", cid != NULL ? cid : "",
                          "order_id",
                          (json_int_t)(json_is_integer(oid) ? json_integer_value(oid) : 0),
                          "status", resp->status, "ms", (json_int_t)ms),
                "orders/timeout fault: the answer to order %s is held for %lld ms",
                cid != NULL ? cid : "(refused)", (long long)ms);
    while (ms > 0 && !atomic_load(&sim->stop)) {
        int64_t slice = ms < 10 ? ms : 10;
        cq_time_sleep_ms(slice);
        ms -= slice;
    }
}

/* /api/... : everything but the MHD plumbing. */
static void handle_api(struct cq_sim__state *sim, struct MHD_Connection *conn, const char *method,
                       const char *path, const char *query, size_t query_len,
                       const struct rest_conn *c, struct rest_req *r, uint32_t *used_weight)
{
    const struct endpoint *ep = NULL;
    bool path_known = false;
    for (size_t i = 0; i < CQ_ARRAY_LEN(endpoints); i++) {
        if (strcmp(endpoints[i].path, path) == 0) {
            path_known = true;
            if (strcmp(endpoints[i].method, method) == 0) {
                ep = &endpoints[i];
                break;
            }
        }
    }
    struct cq_sim__api_error perr;
    bool parse_failed = false;
    if (cq_http_body_refused(&c->body) || query_len > SIM_QUERY_MAX_BYTES) {
        parse_failed = true;
        cq_sim__api_error_set(&perr, 413, -1101, MSG_TOO_MANY_PARAMS);
    } else {
        size_t body_len = 0;
        const char *body = cq_http_body_data(&c->body, &body_len);
        bool use_body = strcmp(method, "GET") != 0 && body_len > 0 && body_is_form(conn);
        if (cq_sim__params_parse(&r->params, query, query_len, use_body ? body : NULL,
                                 use_body ? body_len : 0, &perr) < 0) {
            parse_failed = true;
        }
    }
    unsigned weight = 1;
    if (ep != NULL) {
        weight = ep->weight;
        if (ep->weight_fn != NULL && !parse_failed) {
            weight = ep->weight_fn(&r->params);
        }
    }

    injected_latency(sim);

    cq_sim__lock(sim);
    enum admit ad = admit_locked(r, ep, weight);
    cq_sim__unlock(sim);

    if (ad == ADMIT_REFUSED) {
        /* answered */
    } else if (ad == ADMIT_5XX_BEFORE) {
        set_5xx(r);
    } else if (ep == NULL) {
        if (path_known) {
            set_error(r, 405, -1000, "Method %s is not allowed on this endpoint.",
                      strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0 ||
                              strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0
                          ? method
                          : "other than GET, POST, PUT, DELETE");
        } else {
            set_error(r, 404, -1000, "No such endpoint.");
        }
    } else if (parse_failed) {
        fail_api(r, &perr);
    } else {
        const char *unit = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-MBX-TIME-UNIT");
        r->time_us = unit != NULL && strcasecmp(unit, "MICROSECOND") == 0;
        if (ep->sec != SEC_NONE) {
            r->api_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-MBX-APIKEY");
        }
        ep->handler(r);
        if (r->resp.body == NULL) {
            set_error(r, 500, -1000, MSG_UNKNOWN);
        }
        if (ad == ADMIT_5XX_AFTER) {
            set_5xx(r); /* executed, but the client learns nothing */
        }
        if ((ep->flags & EP_ORDER_POST) != 0) {
            late_order_answer(sim, &r->resp);
        }
    }

    cq_sim__lock(sim);
    struct cq_sim__ratelimit *rl = &sim->rl;
    if (ad != ADMIT_REFUSED && ep != NULL && (ep->flags & EP_FREE_ON_SUCCESS) != 0 &&
        r->resp.is_error && rl->weight_used < UINT32_MAX) {
        rl->weight_used++;
    }
    *used_weight = rl->weight_used;
    int st = r->resp.status;
    if (st == 429) {
        sim->counters.rest_429++;
    } else if (st == 418) {
        sim->counters.rest_418++;
    }
    if (st >= 500) {
        sim->counters.rest_errors_5xx++;
    } else if (st >= 400) {
        sim->counters.rest_errors_4xx++;
    }
    cq_sim__unlock(sim);
}

/* ---- /_sim/ control path ------------------------------------------------------------- */

static void ctl_error(struct rest_resp *resp, int status, const char *param, const char *fmt, ...)
    CQ_PRINTF(4, 5);

static void ctl_error(struct rest_resp *resp, int status, const char *param, const char *fmt, ...)
{
    /* Formats are ours and their arguments bounded (parameter names, limits,
     * params.c messages of at most SIM_API_MSG_MAX): 512 holds the longest;
     * a cut one would end in "..." all the same. */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cq_sim__text_mark_cut(msg, sizeof(msg), n);
    json_decref(resp->body);
    resp->status = status;
    resp->is_error = true;
    resp->body = param != NULL ? json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "param", param,
                                           "message", msg)
                               : json_pack("{s:b,s:{s:s}}", "ok", 0, "error", "message", msg);
}

/* A signed integer in [min, max]. */
static bool ctl_int(const struct cq_sim__params *p, const char *name, int64_t min, int64_t max,
                    int64_t *out, struct rest_resp *resp)
{
    const char *v = cq_sim__params_get(p, name);
    if (v == NULL) {
        ctl_error(resp, 400, name, "parameter '%s' is required (an integer from %lld to %lld)",
                  name, (long long)min, (long long)max);
        return false;
    }
    const char *s = v;
    bool neg = *s == '-';
    if (neg) {
        s++;
    }
    int64_t n = 0;
    size_t digits = 0;
    bool ok = *s != '\0';
    for (; ok && *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || ++digits > 15) {
            ok = false;
            break;
        }
        n = n * 10 + (*s - '0');
    }
    if (neg) {
        n = -n;
    }
    if (!ok || n < min || n > max) {
        ctl_error(resp, 400, name, "parameter '%s' must be an integer from %lld to %lld", name,
                  (long long)min, (long long)max);
        return false;
    }
    *out = n;
    return true;
}

static bool ctl_on(const struct cq_sim__params *p, bool *out, struct rest_resp *resp)
{
    const char *v = cq_sim__params_get(p, "on");
    if (v != NULL && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0)) {
        *out = true;
        return true;
    }
    if (v != NULL && (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0)) {
        *out = false;
        return true;
    }
    ctl_error(resp, 400, "on", "parameter 'on' must be 1 or 0");
    return false;
}

static void ctl_ok(struct rest_resp *resp, json_t *extra)
{
    json_t *o = json_pack("{s:b}", "ok", 1);
    if (extra != NULL) {
        json_object_update(o, extra);
        json_decref(extra);
    }
    json_decref(resp->body);
    resp->status = 200;
    resp->is_error = false;
    resp->body = o;
}

/* GET /_sim/orders: what allOrders answers, every kept order of the symbol
 * at once, without weight or signature: the tests' view of the exchange,
 * which must not eat the rate limit the client under test shares. */
static void c_orders(struct cq_sim__rest *rest, const struct control_args *a,
                     struct rest_resp *resp)
{
    struct rest_req r;
    memset(&r, 0, sizeof(r));
    r.sim = rest->sim;
    struct orders_ctx oc = {&r, rest->sim->engine, json_array()};
    cq_sim__lock(rest->sim);
    cq_sim__engine_all_orders(rest->sim->engine, a->symbol_idx, 0, 0, 0, 0, add_query_order, &oc);
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:s,s:o}", "symbol", a->symbol, "orders", oc.arr));
}

/* Equal in time that depends only on the presented length, not on where the
 * first difference is. */
static bool token_equal(const char *expected, const char *presented)
{
    size_t el = strlen(expected);
    size_t pl = strlen(presented);
    unsigned diff = el != pl ? 1u : 0u;
    for (size_t i = 0; i < pl; i++) {
        diff |= (unsigned char)(expected[i % el] ^ presented[i]); /* el >= MIN > 0 */
    }
    return diff == 0;
}

/* "Authorization: Bearer <token>" with the simulator's control token. */
static bool control_authorized(const struct cq_sim__state *sim, struct MHD_Connection *conn)
{
    if (sim->control_token == NULL) {
        return true;
    }
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        return false;
    }
    const char *t = h + 7;
    while (*t == ' ' || *t == '\t') {
        t++;
    }
    size_t len = strlen(t);
    while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t')) {
        len--;
    }
    char presented[CQ_SIM_CONTROL_TOKEN_MAX + 1];
    if (len == 0 || len > CQ_SIM_CONTROL_TOKEN_MAX) {
        return false;
    }
    memcpy(presented, t, len); /* len <= CQ_SIM_CONTROL_TOKEN_MAX: fits with the NUL */
    presented[len] = '\0';
    bool ok = token_equal(sim->control_token, presented);
    volatile char *v = presented;
    for (size_t i = 0; i < len; i++) {
        v[i] = '\0';
    }
    return ok;
}

/* ---- the control endpoints: handlers and table lookups (the table: top of file) --- */

static void c_state(struct cq_sim__rest *rest, const struct control_args *a, struct rest_resp *resp)
{
    struct cq_sim__state *sim = rest->sim;
    (void)a;
    cq_sim__lock(sim);
    json_t *state = cq_sim__state_json(sim);
    cq_sim__unlock(sim);
    struct cq_sim__rest_stats rs;
    cq_sim__rest_stats(rest, &rs);
    if (state != NULL &&
        json_object_set_new(
            state, "rest_connections",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "open", (json_int_t)rs.open,
                      "waiting", (json_int_t)rs.waiting, "evicted_deadline",
                      (json_int_t)rs.evicted_deadline, "evicted_for_room",
                      (json_int_t)rs.evicted_for_room, "refused_busy", (json_int_t)rs.refused_busy,
                      "head_deadline_ms", (json_int_t)rs.head_deadline_ms, "per_ip_max",
                      (json_int_t)rs.per_ip_max, "connections_max", (json_int_t)rs.connections_max,
                      "bodies_refused", (json_int_t)rs.bodies_refused, "bodies_dropped",
                      (json_int_t)rs.bodies_dropped)) < 0) {
        json_decref(state);
        state = NULL;
    }
    if (state == NULL) {
        ctl_error(resp, 500, NULL, "cannot build the state");
        return;
    }
    json_decref(resp->body);
    resp->status = 200;
    resp->body = state;
}

static void c_ws_drop(struct cq_sim__rest *rest, const struct control_args *a,
                      struct rest_resp *resp)
{
    (void)a;
    /* relaxed: the WS thread only needs to see the change eventually */
    uint64_t g =
        atomic_fetch_add_explicit(&rest->sim->faults.ws_drop_generation, 1, memory_order_relaxed) +
        1;
    ctl_ok(resp, json_pack("{s:I}", "ws_drop_generation", (json_int_t)g));
}

static void c_ws_stall(struct cq_sim__rest *rest, const struct control_args *a,
                       struct rest_resp *resp)
{
    atomic_store_explicit(&rest->sim->faults.ws_stall, a->on, memory_order_relaxed);
    ctl_ok(resp, json_pack("{s:b}", "ws_stall", a->on));
}

static void c_ws_user_down(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp)
{
    atomic_store_explicit(&rest->sim->faults.ws_user_down, a->on, memory_order_relaxed);
    ctl_ok(resp, json_pack("{s:b}", "ws_user_down", a->on));
}

static void c_rest_latency(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.rest_latency_ms = a->n;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:I}", "rest_latency_ms", (json_int_t)a->n));
}

static void c_rest_errors(struct cq_sim__rest *rest, const struct control_args *a,
                          struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.rest_5xx_per_mille = (uint32_t)a->n;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:I}", "rest_5xx_per_mille", (json_int_t)a->n));
}

static void c_storm(struct cq_sim__rest *rest, const struct control_args *a, struct rest_resp *resp)
{
    struct cq_sim__state *sim = rest->sim;
    cq_sim__lock(sim);
    sim->faults.storm_until_ms = a->n > 0 ? cq_sim__wall_ms() + a->n * 1000 : 0;
    int64_t until = sim->faults.storm_until_ms;
    cq_sim__unlock(sim);
    ctl_ok(resp, json_pack("{s:I}", "storm_until_ms", (json_int_t)until));
}

static void c_orders_reject(struct cq_sim__rest *rest, const struct control_args *a,
                            struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.reject_next_orders = (uint32_t)a->n;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:I}", "reject_next_orders", (json_int_t)a->n));
}

static void c_orders_timeout(struct cq_sim__rest *rest, const struct control_args *a,
                             struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.late_orders = (uint32_t)a->n;
    rest->sim->faults.late_order_ms = a->n2;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:I,s:I}", "late_orders", (json_int_t)a->n, "late_order_ms",
                           (json_int_t)a->n2));
}

static void c_insufficient(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.force_insufficient = a->on;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:b}", "force_insufficient", a->on));
}

static void c_balance_set(struct cq_sim__rest *rest, const struct control_args *a,
                          struct rest_resp *resp)
{
    struct cq_sim__state *sim = rest->sim;
    cq_sim__lock(sim);
    int rc =
        cq_sim__engine_set_balance(sim->engine, a->asset, a->amount, cq_sim__server_time_ms(sim));
    cq_sim__unlock(sim);
    if (rc == -CQ_ETOOBIG) {
        ctl_error(resp, 400, "free",
                  "parameter 'free' plus what is locked must be at most " SIM_AMOUNT_MAX_TEXT);
    } else if (rc < 0) {
        ctl_error(resp, 400, "asset", "cannot set the balance of %s: %s", a->asset,
                  cq_strerror(rc));
    } else {
        ctl_ok(resp, json_pack("{s:s,s:o}", "asset", a->asset, "free", jdec(a->amount)));
    }
}

static void c_clock_skew(struct cq_sim__rest *rest, const struct control_args *a,
                         struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.clock_skew_ms = a->n;
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:I}", "clock_skew_ms", (json_int_t)a->n));
}

static void c_market_pause(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    rest->sim->faults.market_paused = a->on;
    cq_sim__market_set_paused(rest->sim->market, a->on);
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:b}", "market_paused", a->on));
}

static void c_symbol_status(struct cq_sim__rest *rest, const struct control_args *a,
                            struct rest_resp *resp)
{
    cq_sim__lock(rest->sim);
    cq_sim__engine_set_symbol_status(rest->sim->engine, a->symbol_idx, a->status);
    cq_sim__unlock(rest->sim);
    ctl_ok(resp, json_pack("{s:s,s:s}", "symbol", a->symbol, "status", a->status_text));
}

static void c_faults_clear(struct cq_sim__rest *rest, const struct control_args *a,
                           struct rest_resp *resp)
{
    struct cq_sim__state *sim = rest->sim;
    (void)a;
    cq_sim__lock(sim);
    for (size_t i = 0; i < cq_sim__engine_symbol_count(sim->engine); i++) {
        cq_sim__engine_set_symbol_status(sim->engine, (int)i, SIM_TRADING);
    }
    sim->rl.bans = 0;
    sim->faults.rest_latency_ms = 0;
    sim->faults.rest_5xx_per_mille = 0;
    sim->faults.storm_until_ms = 0;
    sim->faults.reject_next_orders = 0;
    sim->faults.late_orders = 0;
    sim->faults.late_order_ms = 0;
    sim->faults.force_insufficient = false;
    sim->faults.clock_skew_ms = 0;
    sim->faults.market_paused = false;
    cq_sim__market_set_paused(sim->market, false);
    sim->rl.banned_until_ms = 0;
    sim->rl.requests_after_429 = 0;
    cq_sim__unlock(sim);
    atomic_store_explicit(&sim->faults.ws_stall, false, memory_order_relaxed);
    atomic_store_explicit(&sim->faults.ws_user_down, false, memory_order_relaxed);
    ctl_ok(resp, NULL);
}

static const struct control *control_find(const char *path)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(controls); i++) {
        if (strcmp(path, controls[i].path) == 0) {
            return &controls[i];
        }
    }
    return NULL;
}

/* "POST /_sim/rest/latency ms=0..60000" into out (a cq_buf). */
static void control_describe(const struct control *c, struct cq_buf *out)
{
    (void)cq_buf_printf(out, "%s %s", c->method, c->path);
    for (const struct control_param *p = c->params; p->kind != CP_NONE; p++) {
        const char *sep = p == c->params ? " " : "&";
        switch (p->kind) {
        case CP_INT:
            (void)cq_buf_printf(out, "%s%s=%lld..%lld", sep, p->name, (long long)p->min,
                                (long long)p->max);
            break;
        case CP_ON:
            (void)cq_buf_printf(out, "%son=1|0", sep);
            break;
        case CP_ASSET:
            (void)cq_buf_printf(out, "%sasset=[A-Z0-9]{1,%d}", sep, CQ_SIM_ASSET_MAX_CHARS);
            break;
        case CP_FREE:
            (void)cq_buf_printf(out, "%sfree=DECIMAL", sep);
            break;
        case CP_SYMBOL:
            (void)cq_buf_printf(out, "%ssymbol=SYMBOL", sep);
            break;
        case CP_STATUS:
            (void)cq_buf_printf(out, "%sstatus=TRADING|HALT|BREAK", sep);
            break;
        case CP_NONE:
            break;
        }
    }
}

/* 404 naming every known endpoint: in the message, and as "known": [{method,
 * path, usage, effect}] for programs. */
static void control_unknown(const char *path, struct rest_resp *resp)
{
    struct cq_buf list;
    json_t *known = json_array();
    cq_buf_init(&list, 8192); /* bounded: the table is about 700 bytes */
    for (size_t i = 0; i < CQ_ARRAY_LEN(controls); i++) {
        struct cq_buf one;
        cq_buf_init(&one, 512);
        control_describe(&controls[i], &one);
        (void)cq_buf_printf(&list, "%s%s", i == 0 ? "" : "; ", one.p != NULL ? one.p : "");
        json_array_append_new(known,
                              json_pack("{s:s,s:s,s:s,s:s}", "method", controls[i].method, "path",
                                        controls[i].path, "usage", one.p != NULL ? one.p : "",
                                        "effect", controls[i].effect));
        cq_buf_free(&one);
    }
    /* the path was cut to 127 bytes by the caller; the list is about 700 */
    char msg[2048];
    int n = snprintf(msg, sizeof(msg), "unknown control path '%s'; the known ones: %s", path,
                     list.p != NULL ? list.p : "");
    cq_sim__text_mark_cut(msg, sizeof(msg), n);
    cq_buf_free(&list);
    json_decref(resp->body);
    resp->status = 404;
    resp->is_error = true;
    resp->body = json_pack("{s:b,s:{s:s},s:o}", "ok", 0, "error", "message", msg, "known", known);
}

/* Validate a row's parameters in table order; false after answering 400. */
static bool control_args_parse(struct cq_sim__state *sim, const struct control *c,
                               const struct cq_sim__params *p, struct control_args *a,
                               struct rest_resp *resp)
{
    memset(a, 0, sizeof(*a));
    a->symbol_idx = -1;
    for (const struct control_param *cp = c->params; cp->kind != CP_NONE; cp++) {
        const char *v = cq_sim__params_get(p, cp->name);
        switch (cp->kind) {
        case CP_INT:
            /* a row's first integer is n, its second n2 */
            if (!ctl_int(p, cp->name, cp->min, cp->max, cp == c->params ? &a->n : &a->n2, resp)) {
                return false;
            }
            break;
        case CP_ON:
            if (!ctl_on(p, &a->on, resp)) {
                return false;
            }
            break;
        case CP_ASSET: {
            size_t alen = v != NULL ? strlen(v) : 0;
            bool ok = alen >= 1 && alen <= CQ_SIM_ASSET_MAX_CHARS;
            for (size_t i = 0; ok && i < alen; i++) {
                ok = (v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9');
            }
            if (!ok) {
                ctl_error(resp, 400, cp->name, "parameter '%s' must match ^[A-Z0-9]{1,%d}$",
                          cp->name, CQ_SIM_ASSET_MAX_CHARS);
                return false;
            }
            a->asset = v;
            break;
        }
        case CP_FREE: {
            int prc = v != NULL ? cq_dec_parse(v, (size_t)-1, &a->amount) : -CQ_EPARSE;
            const char *point = v != NULL ? strchr(v, '.') : NULL;
            if (prc == -CQ_ETOOBIG && v[0] != '-' && (point == NULL || strlen(point + 1) <= 8)) {
                /* too large for any decimal (not too precise): above the
                 * engine's maximum too */
                ctl_error(resp, 400, cp->name,
                          "parameter '%s' is above the maximum " SIM_AMOUNT_MAX_TEXT, cp->name);
                return false;
            }
            if (prc < 0 || cq_dec_sign(a->amount) < 0) {
                ctl_error(
                    resp, 400, cp->name,
                    "parameter '%s' must be a non-negative decimal from 0 to " SIM_AMOUNT_MAX_TEXT
                    " with at most 8 decimals",
                    cp->name);
                return false;
            }
            break;
        }
        case CP_SYMBOL:
            cq_sim__lock(sim);
            a->symbol_idx = v != NULL ? cq_sim__engine_symbol_index(sim->engine, v) : -1;
            cq_sim__unlock(sim);
            if (a->symbol_idx < 0) {
                ctl_error(resp, 400, cp->name, "parameter '%s' must name a listed symbol",
                          cp->name);
                return false;
            }
            a->symbol = v;
            break;
        case CP_STATUS:
            if (v != NULL && strcmp(v, "TRADING") == 0) {
                a->status = SIM_TRADING;
            } else if (v != NULL && strcmp(v, "HALT") == 0) {
                a->status = SIM_HALT;
            } else if (v != NULL && strcmp(v, "BREAK") == 0) {
                a->status = SIM_BREAK;
            } else {
                ctl_error(resp, 400, cp->name, "parameter '%s' must be TRADING, HALT or BREAK",
                          cp->name);
                return false;
            }
            a->status_text = v;
            break;
        case CP_NONE:
            break;
        }
    }
    return true;
}

static void handle_control(struct cq_sim__rest *rest, struct MHD_Connection *conn,
                           const char *method, const char *path, const char *query,
                           size_t query_len, const struct rest_conn *c, struct rest_resp *resp)
{
    struct cq_sim__state *sim = rest->sim;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || !cq_sim__peer_is_loopback(ci->client_addr)) {
        ctl_error(resp, 403, NULL, "the /_sim/ control path answers loopback clients only");
        return;
    }
    if (!control_authorized(sim, conn)) {
        ctl_error(resp, 401, NULL,
                  "the /_sim/ control path needs 'Authorization: Bearer <control token>': this "
                  "simulator was started with a control token (coinquantd's paper mode keeps it "
                  "in its data directory, mode 0600; coinquant-simex takes it from "
                  "--control-token-file or CQ_SIM_CONTROL_TOKEN)");
        resp->www_authenticate = true;
        return;
    }
    struct cq_sim__params p;
    struct cq_sim__api_error perr;
    size_t body_len = 0;
    const char *body = cq_http_body_data(&c->body, &body_len);
    bool use_body = strcmp(method, "GET") != 0 && body_len > 0 && body_is_form(conn);
    if (cq_http_body_refused(&c->body) || query_len > SIM_QUERY_MAX_BYTES) {
        ctl_error(resp, 413, NULL, "request too large");
        return;
    }
    if (cq_sim__params_parse(&p, query, query_len, use_body ? body : NULL, use_body ? body_len : 0,
                             &perr) < 0) {
        ctl_error(resp, 400, NULL, "malformed parameters: %s", perr.msg);
        return;
    }
    bool is_get = strcmp(method, "GET") == 0;
    bool is_post = strcmp(method, "POST") == 0;
    const struct control *ctl = control_find(path);
    if (ctl == NULL) {
        control_unknown(path, resp);
        goto out;
    }
    if (strcmp(method, ctl->method) != 0) {
        ctl_error(resp, 405, NULL, "method %s not allowed here",
                  is_get || is_post ? method : "other than GET/POST");
        goto out;
    }
    struct control_args args;
    if (control_args_parse(sim, ctl, &p, &args, resp)) {
        ctl->handler(rest, &args, resp);
    }
out:
    cq_sim__params_fini(&p);
}

/* ---- libmicrohttpd plumbing ---------------------------------------------------------- */

/* ---- connection table: deadlines, per-address and total caps ------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void peer_ip(const struct sockaddr *sa, struct rest_peer_conn *pc)
{
    pc->ip_len = 0;
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(pc->ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        pc->ip_len = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(pc->ip, a->s6_addr + 12, 4);
            pc->ip_len = 4;
        } else {
            memcpy(pc->ip, a->s6_addr, 16);
            pc->ip_len = 16;
        }
    }
}

static bool same_ip(const struct rest_peer_conn *a, const struct rest_peer_conn *b)
{
    return a->ip_len == b->ip_len && memcmp(a->ip, b->ip, a->ip_len) == 0;
}

/* Caller holds conns_lock; pc is in the table, so its fd is still open. */
static void evict_locked(struct rest_peer_conn *pc)
{
    pc->evicted = true;
    if (pc->fd >= 0) {
        shutdown(pc->fd, SHUT_RDWR); /* wakes its thread: EOF, libmicrohttpd closes it */
    }
}

/* The oldest connection still waiting for its request (of like's address
 * when like is not NULL). Caller holds conns_lock. */
static struct rest_peer_conn *oldest_waiting_locked(struct cq_sim__rest *rest,
                                                    const struct rest_peer_conn *like)
{
    for (struct rest_peer_conn *p = rest->oldest; p != NULL; p = p->next) {
        if (p->waiting && !p->evicted && (like == NULL || same_ip(p, like))) {
            return p;
        }
    }
    return NULL;
}

/* A new connection: make room under the caps, or mark it for a fast 503. */
static void admit_connection_locked(struct cq_sim__rest *rest, struct rest_peer_conn *pc)
{
    size_t same = 0;
    size_t all = 0;
    for (const struct rest_peer_conn *p = rest->oldest; p != NULL; p = p->next) {
        if (!p->evicted) {
            all++;
            same += same_ip(p, pc) ? 1 : 0;
        }
    }
    struct rest_peer_conn *victim = NULL;
    if (same >= rest->per_ip_max) {
        victim = oldest_waiting_locked(rest, pc);
        if (victim == NULL) {
            pc->over_cap = true;
            return;
        }
        evict_locked(victim);
        rest->evicted_for_room++;
        all--;
    }
    if (all >= rest->connections_max) {
        victim = oldest_waiting_locked(rest, NULL);
        if (victim == NULL) {
            pc->over_cap = true;
            return;
        }
        evict_locked(victim);
        rest->evicted_for_room++;
    }
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct cq_sim__rest *rest = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct rest_peer_conn *pc = calloc(1, sizeof(*pc));
        *socket_context = pc;
        if (pc == NULL) {
            return; /* access_handler refuses an untracked connection */
        }
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        pc->fd = ci != NULL ? (int)ci->connect_fd : -1;
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        peer_ip(ci != NULL ? ci->client_addr : NULL, pc);
        pc->waiting = true;
        pthread_mutex_lock(&rest->conns_lock);
        pc->deadline_ms = mono_ms() + rest->head_deadline_ms;
        admit_connection_locked(rest, pc);
        pc->prev = rest->newest;
        if (rest->newest != NULL) {
            rest->newest->next = pc;
        } else {
            rest->oldest = pc;
        }
        rest->newest = pc;
        pthread_cond_signal(&rest->conns_cond);
        pthread_mutex_unlock(&rest->conns_lock);
        return;
    }
    struct rest_peer_conn *pc = *socket_context;
    if (pc == NULL) {
        return;
    }
    pthread_mutex_lock(&rest->conns_lock);
    if (pc->prev != NULL) {
        pc->prev->next = pc->next;
    } else {
        rest->oldest = pc->next;
    }
    if (pc->next != NULL) {
        pc->next->prev = pc->prev;
    } else {
        rest->newest = pc->prev;
    }
    pthread_mutex_unlock(&rest->conns_lock);
    free(pc);
    *socket_context = NULL;
}

static void *watchdog_main(void *arg)
{
    struct cq_sim__rest *rest = arg;
    pthread_mutex_lock(&rest->conns_lock);
    while (!rest->stopping) {
        int64_t now = mono_ms();
        int64_t next = INT64_MAX;
        for (struct rest_peer_conn *p = rest->oldest; p != NULL; p = p->next) {
            if (!p->waiting || p->evicted) {
                continue;
            }
            if (p->deadline_ms <= now) {
                evict_locked(p);
                rest->evicted_deadline++;
            } else if (p->deadline_ms < next) {
                next = p->deadline_ms;
            }
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&rest->conns_cond, &rest->conns_lock);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait_ms = next - now;
            ts.tv_sec += (time_t)(wait_ms / 1000);
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&rest->conns_cond, &rest->conns_lock, &ts);
        }
    }
    pthread_mutex_unlock(&rest->conns_lock);
    return NULL;
}

static struct rest_peer_conn *peer_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

enum conn_admit { CONN_SERVE, CONN_REFUSE, CONN_BUSY };

/* The request is in hand: stop its deadline, unless we already shut the
 * connection down (then it is refused unprocessed). */
static enum conn_admit take_request(struct cq_sim__rest *rest, struct MHD_Connection *conn)
{
    struct rest_peer_conn *pc = peer_conn_of(conn);
    if (pc == NULL) {
        return CONN_REFUSE;
    }
    enum conn_admit a = CONN_SERVE;
    pthread_mutex_lock(&rest->conns_lock);
    if (pc->evicted) {
        a = CONN_REFUSE;
    } else {
        pc->waiting = false;
        if (pc->over_cap) {
            a = CONN_BUSY;
            rest->refused_busy++;
        }
    }
    pthread_mutex_unlock(&rest->conns_lock);
    return a;
}

/* An answer went out: the connection waits for its next request. */
static void request_done(struct cq_sim__rest *rest, struct MHD_Connection *conn)
{
    struct rest_peer_conn *pc = conn != NULL ? peer_conn_of(conn) : NULL;
    if (pc == NULL) {
        return;
    }
    pthread_mutex_lock(&rest->conns_lock);
    pc->waiting = true;
    pc->deadline_ms = mono_ms() + KEEPALIVE_IDLE_MS;
    pthread_mutex_unlock(&rest->conns_lock);
}

void cq_sim__rest_stats(struct cq_sim__rest *rest, struct cq_sim__rest_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (rest == NULL) {
        return;
    }
    pthread_mutex_lock(&rest->conns_lock);
    for (const struct rest_peer_conn *p = rest->oldest; p != NULL; p = p->next) {
        out->open++;
        out->waiting += p->waiting && !p->evicted ? 1 : 0;
    }
    out->evicted_deadline = rest->evicted_deadline;
    out->evicted_for_room = rest->evicted_for_room;
    out->refused_busy = rest->refused_busy;
    out->head_deadline_ms = (uint64_t)rest->head_deadline_ms;
    out->per_ip_max = rest->per_ip_max;
    out->connections_max = rest->connections_max;
    /* relaxed: counters only */
    out->bodies_refused =
        atomic_load_explicit(&rest->body_stats.refused_announced, memory_order_relaxed) +
        atomic_load_explicit(&rest->body_stats.refused_streamed, memory_order_relaxed);
    out->bodies_dropped = atomic_load_explicit(&rest->body_stats.dropped, memory_order_relaxed);
    pthread_mutex_unlock(&rest->conns_lock);
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *con)
{
    struct cq_sim__rest *rest = cls;
    CQ_UNUSED(con);
    struct rest_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    cq_http_body_init(&c->body, SIM_BODY_MAX_BYTES, true, &rest->body_stats);
    size_t len = strlen(uri);
    if (len > SIM_QUERY_MAX_BYTES + 1024) {
        /* keep the path only; the request is answered 413 */
        c->uri_too_long = true;
        const char *q = strchr(uri, '?');
        len = q != NULL ? (size_t)(q - uri) : len;
        if (len > 1024) {
            len = 1024;
        }
    }
    c->uri = malloc(len + 1);
    if (c->uri == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->uri, uri, len);
    c->uri[len] = '\0';
    return c;
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    CQ_UNUSED(toe);
    request_done(cls, connection);
    struct rest_conn *c = *con_cls;
    if (c != NULL) {
        free(c->uri);
        cq_http_body_fini(&c->body);
        free(c);
    }
    *con_cls = NULL;
}

static enum MHD_Result queue_json(struct MHD_Connection *conn, const struct rest_resp *resp,
                                  bool weight_headers, uint32_t used_weight)
{
    char *text = resp->body != NULL ? json_dumps(resp->body, JSON_COMPACT) : NULL;
    static const char fallback[] = "{\"code\":-1000,\"msg\":\"" MSG_UNKNOWN "\"}";
    int status = resp->status;
    const char *out = text;
    if (out == NULL) {
        out = fallback;
        status = 500;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(out), (void *)out, MHD_RESPMEM_MUST_COPY);
    free(text);
    if (r == NULL) {
        return MHD_NO;
    }
    char num[32]; /* a uint32 or an int64 in decimal: at most 20 characters */
    bool ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                      "application/json;charset=UTF-8") == MHD_YES;
    if (ok && weight_headers) {
        snprintf(num, sizeof(num), "%u", used_weight);
        ok = MHD_add_response_header(r, "X-MBX-USED-WEIGHT-1M", num) == MHD_YES &&
             MHD_add_response_header(r, "x-mbx-used-weight", num) == MHD_YES;
    }
    if (ok && resp->order_headers) {
        snprintf(num, sizeof(num), "%u", resp->orders_10s);
        ok = MHD_add_response_header(r, "X-MBX-ORDER-COUNT-10S", num) == MHD_YES;
        snprintf(num, sizeof(num), "%u", resp->orders_1d);
        ok = ok && MHD_add_response_header(r, "X-MBX-ORDER-COUNT-1D", num) == MHD_YES;
    }
    if (ok && resp->retry_after_s > 0) {
        snprintf(num, sizeof(num), "%lld", (long long)resp->retry_after_s);
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, num) == MHD_YES;
    }
    if (ok && resp->www_authenticate) {
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                     "Bearer realm=\"coinquant-simex control\"") == MHD_YES;
    }
    if (ok && resp->close) {
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    }
    enum MHD_Result rc = MHD_NO;
    if (ok) {
        rc = MHD_queue_response(conn, (unsigned int)status, r);
    }
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result answer_busy(struct cq_sim__rest *rest, struct MHD_Connection *conn)
{
    struct rest_resp resp = {.status = 503, .retry_after_s = 1, .is_error = true, .close = true};
    resp.body = json_pack("{s:i,s:s}", "code", -1000, "msg",
                          "Too many connections: every connection slot of this simulator (or of "
                          "your address) is busy with a request. Retry after 1 s.");
    enum MHD_Result rc = queue_json(conn, &resp, false, 0);
    json_decref(resp.body);
    return rc;
}

static enum MHD_Result answer(struct cq_sim__rest *rest, struct MHD_Connection *conn,
                              const char *method, struct rest_conn *c)
{
    struct cq_sim__state *sim = rest->sim;
    enum conn_admit admit = take_request(rest, conn);
    if (admit == CONN_REFUSE) {
        return MHD_NO;
    }
    if (admit == CONN_BUSY) {
        return answer_busy(rest, conn);
    }
    const char *uri = c->uri != NULL ? c->uri : "";
    const char *qmark = strchr(uri, '?');
    size_t path_len = qmark != NULL ? (size_t)(qmark - uri) : strlen(uri);
    const char *query = qmark != NULL ? qmark + 1 : "";
    size_t query_len = strlen(query);
    char path[128];
    if (path_len >= sizeof(path)) {
        path_len = sizeof(path) - 1; /* no route is that long: it will be 404 */
    }
    memcpy(path, uri, path_len);
    path[path_len] = '\0';

    if (c->uri_too_long) {
        query_len = SIM_QUERY_MAX_BYTES + 1; /* answered 413 by the handlers */
        query = "";
    }
    /* (query is only read when query_len <= SIM_QUERY_MAX_BYTES) */
    if (strncmp(path, "/_sim/", 6) == 0) {
        struct rest_resp resp = {.status = 500};
        handle_control(rest, conn, method, path, query, query_len, c, &resp);
        enum MHD_Result rc = queue_json(conn, &resp, false, 0);
        json_decref(resp.body);
        return rc;
    }
    struct rest_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return MHD_NO;
    }
    r->sim = sim;
    r->conn = conn;
    r->method = method;
    r->resp.status = 500;
    uint32_t used = 0;
    handle_api(sim, conn, method, path, query, query_len, c, r, &used);
    enum MHD_Result rc = queue_json(conn, &r->resp, true, used);
    json_decref(r->resp.body);
    cq_sim__params_fini(&r->params);
    free(r);
    return rc;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct cq_sim__rest *rest = cls;
    struct rest_conn *c = *con_cls;
    CQ_UNUSED(url);
    CQ_UNUSED(version);
    if (c == NULL) {
        return MHD_NO; /* uri_logger could not allocate */
    }
    if (!c->started) {
        c->started = true;
        const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        bool too_large = cq_http_body_begin(&c->body, cl) != CQ_HTTP_BODY_OK;
        struct rest_peer_conn *pc = peer_conn_of(connection);
        bool over_cap = false;
        pthread_mutex_lock(&rest->conns_lock);
        bool evicted = pc == NULL || pc->evicted;
        if (pc != NULL) {
            over_cap = pc->over_cap;
        }
        pthread_mutex_unlock(&rest->conns_lock);
        if (evicted) {
            return MHD_NO; /* shut down while its request arrived: never processed */
        }
        if (over_cap || too_large) {
            return answer(rest, connection, method, c); /* 503, or 413 before the body */
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        enum cq_http_body_status bs = cq_http_body_feed(&c->body, upload_data, n);
        /* REFUSED: discarded, answered 413 at the end; DROP: it kept
         * sending past the allowance; NOMEM: out of memory */
        return bs == CQ_HTTP_BODY_DROP || bs == CQ_HTTP_BODY_NOMEM ? MHD_NO : MHD_YES;
    }
    return answer(rest, connection, method, c);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) CQ_PRINTF(2, 0);

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    CQ_UNUSED(cls);
    char line[256];
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    cq_sim__text_mark_cut(line, sizeof(line), n);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    cq_log_warn(SERVICE, "simex_mhd_error", json_pack("{s:s}", "detail", line), "libmicrohttpd: %s",
                line);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

struct cq_sim__rest *cq_sim__rest_start(struct cq_sim__state *sim, int *port_out,
                                        struct cq_err *err)
{
    const char *bind = sim->bind != NULL        ? sim->bind
                       : sim->opts.bind != NULL ? sim->opts.bind
                                                : "127.0.0.1";
    int port = sim->opts.rest_port;
    if (port < 0 || port > 65535) {
        cq_err_set(err, CQ_ECONFIG, 0, "use a port from 0 (ephemeral) to 65535",
                   "REST port %d is out of range", port);
        return NULL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const char *ip = strcmp(bind, "localhost") == 0 ? "127.0.0.1" : bind;
    unsigned int flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        cq_err_set(err, CQ_ECONFIG, 0, "bind an IP address such as 127.0.0.1 or ::1",
                   "REST bind address '%s' is not an IP address", bind);
        return NULL;
    }
    struct cq_sim__rest *rest = calloc(1, sizeof(*rest));
    if (rest == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the REST server");
        return NULL;
    }
    rest->sim = sim;
    const struct cq_sim_options *o = &sim->opts;
    rest->head_deadline_ms =
        o->rest_head_deadline_ms != 0 ? o->rest_head_deadline_ms : CQ_SIM_REST_HEAD_DEADLINE_MS;
    rest->per_ip_max = o->rest_per_ip_max != 0 ? o->rest_per_ip_max : CQ_SIM_REST_PER_IP_MAX;
    rest->connections_max =
        o->rest_connections_max != 0 ? o->rest_connections_max : CQ_SIM_REST_CONNECTIONS_MAX;
    pthread_mutex_init(&rest->conns_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rest->conns_cond, &ca);
    pthread_condattr_destroy(&ca);
    int prc = pthread_create(&rest->watchdog, NULL, watchdog_main, rest);
    if (prc != 0) {
        cq_err_set(err, CQ_EIO, prc, NULL, "starting the REST connection watchdog");
        cq_sim__rest_stop(rest);
        return NULL;
    }
    rest->watchdog_running = true;
    errno = 0;
    rest->daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, access_handler, rest, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, rest, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(rest->connections_max + CONNECTION_HEADROOM),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY_BYTES, MHD_OPTION_NOTIFY_CONNECTION,
        notify_connection, rest, MHD_OPTION_URI_LOG_CALLBACK, uri_logger, rest,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, rest, MHD_OPTION_END);
    if (rest->daemon == NULL) {
        int e = errno;
        cq_err_set(err, CQ_EIO, e,
                   e == EADDRINUSE ? "another process uses the port; pick another or use 0"
                                   : "check the bind address and port",
                   "cannot serve REST on %s:%d", bind, port);
        cq_sim__rest_stop(rest);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(rest->daemon, MHD_DAEMON_INFO_BIND_PORT);
    rest->port = di != NULL ? (int)di->port : port;
    if (port_out != NULL) {
        *port_out = rest->port;
    }
    cq_log_info(SERVICE, "simex_rest_listening",
                json_pack("{s:s,s:i}", "bind", bind, "port", rest->port),
                "simulator REST listening on %s port %d", bind, rest->port);
    return rest;
}

void cq_sim__rest_stop(struct cq_sim__rest *rest)
{
    if (rest == NULL) {
        return;
    }
    if (rest->daemon != NULL) {
        MHD_stop_daemon(rest->daemon); /* joins the listener and connection threads */
        rest->daemon = NULL;
    }
    if (rest->watchdog_running) {
        pthread_mutex_lock(&rest->conns_lock);
        rest->stopping = true;
        pthread_cond_signal(&rest->conns_cond);
        pthread_mutex_unlock(&rest->conns_lock);
        pthread_join(rest->watchdog, NULL);
        rest->watchdog_running = false;
    }
    pthread_cond_destroy(&rest->conns_cond);
    pthread_mutex_destroy(&rest->conns_lock);
    free(rest);
}
