/*
 * test_rest_client.c — the exchange REST client (server/exchange/rest_client.c)
 * against a live coinquant-simex started in-process on an ephemeral loopback
 * port (include/cq/sim.h), driven through its /_sim/ fault endpoints.
 *
 * Covered: params encoding (table, bounds), status names, budget JSON;
 * public GETs (time, exchangeInfo, klines) and the weight header; learning
 * limits from exchangeInfo; signed GET /account OK and with a wrong secret
 * (-1022, exact msg); the API key header only on USER_STREAM/SIGNED; an
 * order placed, queried by origClientOrderId and cancelled; clock skew ->
 * -1021 -> re-sync -> one resend (GET and order, the order placed once);
 * periodic re-sync on the injected clock; a 429 storm (local refusal
 * without sending, never banned, OK after Retry-After; Retry-After measured
 * on the injected clock; "Retry-After: 0" raised to
 * CQ_REST_RETRY_AFTER_MIN_MS, exact at the boundary); a 418 latch; the
 * weight and order headroom throttles (the simulator never answers 429); 5xx on GETs (retries ->
 * NETWORK, eventual success with a seeded jitter, the retry budget bounds
 * the sleeps, the same seed gives the same schedule); 5xx and latency on
 * orders (UNKNOWN after exactly one attempt, resolved by origClientOrderId);
 * connection refused (NETWORK for GETs and orders); and that no log line
 * carries the key, the secret or a signature.
 *
 * Each Criterion test runs in its own process with its own simulator and
 * its own in-memory log ring.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/clock.h"
#include "cq/decimal.h"
#include "cq/rest.h"
#include "cq/log.h"
#include "cq/sim.h"
#include "fakes/fake_clock.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define MSG_UNKNOWN "An unknown error occurred while processing the request."

static struct cq_sim *g_sim;
static char g_base[128];
static bool g_log_open;

/* ---- time ------------------------------------------------------------------------ */

static int64_t now_wall_ms(void)
{
    return cq_time_wall_us() / 1000;
}

/* Tests that count weight or orders inside one exchange window start well
 * inside it, so the window does not roll under them. */
static void avoid_window_edge(int64_t window_ms, int64_t margin_ms)
{
    int64_t left = window_ms - now_wall_ms() % window_ms;
    if (left < margin_ms) {
        cq_time_sleep_ms(left + 50);
    }
}

/* ---- simulator --------------------------------------------------------------------- */

static void open_log(void)
{
    struct cq_log_options lo = {
        .dir = NULL, .to_stderr = false, .level = CQ_LOG_INFO, .ring_lines = 4096};
    struct cq_err err;
    cr_assert_eq(cq_log_open(&lo, &err), 0, "cq_log_open: %s", err.message);
    g_log_open = true;
}

static void start_sim(uint32_t weight_limit_1m, uint32_t order_limit_10s)
{
    static const char *const symbols[] = {"BTCUSDT", "ETHUSDT"};
    static struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=1", balances, 4, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = CQ_ARRAY_LEN(symbols),
        .speed = 1,
        .seed = 42,
        .balances = balances,
        .n_balances = n_balances,
        .weight_limit_1m = weight_limit_1m,
        .order_limit_10s = order_limit_10s,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_base, cq_sim_rest_url(g_sim), sizeof(g_base));
}

/* Tests that need other simulator limits call start_sim themselves. */
static void setup_no_sim(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    open_log();
}

static void setup_default(void)
{
    setup_no_sim();
    start_sim(1000000, 100000);
}

static void teardown(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    if (g_log_open) {
        cq_log_close();
        g_log_open = false;
    }
    curl_global_cleanup();
}

/* ---- raw HTTP (not the client under test) ------------------------------------------ */

struct raw {
    char *body;
    size_t len;
};

static size_t raw_body(char *p, size_t size, size_t n, void *ud)
{
    struct raw *r = ud;
    size_t k = size * n;
    char *b = realloc(r->body, r->len + k + 1);
    if (b == NULL) {
        return 0;
    }
    memcpy(b + r->len, p, k);
    r->len += k;
    b[r->len] = '\0';
    r->body = b;
    return k;
}

/* method + path?query against the simulator; returns the status, *json the
 * parsed body (may be NULL). */
static long raw_http(const char *method, const char *path_query, json_t **json)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", g_base, path_query);
    struct raw r = {0};
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, raw_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, path_query, curl_easy_strerror(cc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (json != NULL) {
        *json = r.body != NULL ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    }
    free(r.body);
    return status;
}

static void sim_ctl(const char *path_query)
{
    json_t *j = NULL;
    long st = raw_http("POST", path_query, &j);
    cr_assert_eq(st, 200, "POST %s -> %ld", path_query, st);
    cr_assert(json_is_true(json_object_get(j, "ok")), "POST %s not ok", path_query);
    json_decref(j);
}

static json_t *sim_state(void)
{
    json_t *j = NULL;
    cr_assert_eq(raw_http("GET", "/_sim/state", &j), 200);
    cr_assert_not_null(j);
    return j;
}

static long long sim_number(const char *group, const char *name)
{
    json_t *s = sim_state();
    json_t *v = json_object_get(json_object_get(s, group), name);
    cr_assert(json_is_integer(v), "/_sim/state %s.%s missing", group, name);
    long long x = (long long)json_integer_value(v);
    json_decref(s);
    return x;
}

static long long sim_counter(const char *name)
{
    return sim_number("counters", name);
}

/* ---- client ------------------------------------------------------------------------- */

static struct cq_rest_options opts_default(void)
{
    struct cq_rest_options o = {
        .base_url = g_base,
        .api_key = KEY,
        .api_secret = SECRET,
        .service = "test",
        .total_timeout_ms = 5000,
        .max_retries = 3,
        .backoff_base_ms = 5,
        .backoff_max_ms = 20,
        .retry_budget_ms = 2000,
        .jitter_seed = 7,
    };
    return o;
}

static struct cq_rest_client *client_new(const struct cq_rest_options *o)
{
    struct cq_err err;
    struct cq_rest_client *c = cq_rest_client_new(o, &err);
    cr_assert_not_null(c, "cq_rest_client_new: %s", err.message);
    return c;
}

/* A safe request (cq_rest_call). */
static void req(struct cq_rest_client *c, const char *method, const char *path,
                const struct cq_rest_params *p, enum cq_rest_security sec, unsigned weight,
                struct cq_rest_response *out)
{
    int rc = cq_rest_call(c, method, path, p, sec, weight, out);
    cr_assert_eq(rc, 0, "%s %s: %s (%s)", method, path, cq_strerror(rc), out->msg);
}

/* An order request (cq_rest_order_send): never resent. */
static void ord(struct cq_rest_client *c, const char *method, const char *path,
                const struct cq_rest_params *p, enum cq_rest_security sec, unsigned weight,
                struct cq_rest_response *out)
{
    int rc = cq_rest_order_send(c, method, path, p, sec, weight, out);
    cr_assert_eq(rc, 0, "%s %s: %s (%s)", method, path, cq_strerror(rc), out->msg);
}

static void expect_ok(const struct cq_rest_response *r)
{
    cr_assert_eq(r->status, CQ_REST_OK, "status %s http %d code %d msg %s",
                 cq_rest_status_name(r->status), r->http_status, r->code, r->msg);
    cr_assert_not_null(r->body);
}

static struct cq_rest_budget budget(struct cq_rest_client *c)
{
    struct cq_rest_budget b;
    cq_rest_client_budget(c, &b);
    return b;
}

static void get_time(struct cq_rest_client *c, struct cq_rest_response *r)
{
    req(c, "GET", "/api/v3/time", NULL, CQ_SEC_NONE, 1, r);
}

static void get_account(struct cq_rest_client *c, struct cq_rest_response *r)
{
    req(c, "GET", "/api/v3/account", NULL, CQ_SEC_SIGNED, 20, r);
}

/* LIMIT GTC BUY 0.001 BTCUSDT at 20000: rests on the book. */
static void place_order(struct cq_rest_client *c, const char *client_id, struct cq_rest_response *r)
{
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "side", "BUY");
    cq_rest_params_add(&p, "type", "LIMIT");
    cq_rest_params_add(&p, "timeInForce", "GTC");
    cq_rest_params_add_dec(&p, "quantity", cq_dec_make(100000, 8));
    cq_rest_params_add_dec(&p, "price", cq_dec_make(2000000, 2));
    cq_rest_params_add(&p, "newClientOrderId", client_id);
    ord(c, "POST", "/api/v3/order", &p, CQ_SEC_SIGNED, 1, r);
}

static void query_order(struct cq_rest_client *c, const char *client_id, struct cq_rest_response *r)
{
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "origClientOrderId", client_id);
    req(c, "GET", "/api/v3/order", &p, CQ_SEC_SIGNED, 4, r);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "field %s missing", k);
    return s;
}

/* ---- log ring ----------------------------------------------------------------------- */

struct ring_scan {
    const char *needle;
    int hits;
    char first[1024];
};

static void ring_count(const char *line, void *ctx)
{
    struct ring_scan *s = ctx;
    if (strstr(line, s->needle) != NULL) {
        if (s->hits == 0) {
            cq_strlcpy(s->first, line, sizeof(s->first));
        }
        s->hits++;
    }
}

static int log_hits(const char *needle, char *first, size_t first_len)
{
    struct ring_scan s = {needle, 0, ""};
    cq_log_ring_foreach(ring_count, &s);
    if (first != NULL) {
        cq_strlcpy(first, s.first, first_len);
    }
    return s.hits;
}

/* The sleep_ms of every rest_retry line in the ring, oldest first (-1 for a
 * line without one). */
struct retry_sleeps {
    int n;
    int64_t ms[64];
};

static void collect_retry_sleep(const char *line, void *ctx)
{
    struct retry_sleeps *s = ctx;
    if (strstr(line, "\"event\":\"rest_retry\"") == NULL || s->n >= (int)CQ_ARRAY_LEN(s->ms)) {
        return;
    }
    json_t *v = json_loads(line, 0, NULL);
    json_t *ms = json_object_get(v, "sleep_ms");
    s->ms[s->n++] = json_is_integer(ms) ? (int64_t)json_integer_value(ms) : -1;
    json_decref(v);
}

static struct retry_sleeps retry_sleeps_logged(void)
{
    struct retry_sleeps s = {0};
    cq_log_ring_foreach(collect_retry_sleep, &s);
    return s;
}

static void expect_logs_clean(void)
{
    char line[1024];
    cr_expect_eq(log_hits(SECRET, line, sizeof(line)), 0, "secret in a log line: %s", line);
    cr_expect_eq(log_hits(KEY, line, sizeof(line)), 0, "API key in a log line: %s", line);
    cr_expect_eq(log_hits("signature=", line, sizeof(line)), 0, "signature in a log line: %s",
                 line);
}

/* ---- params, names, budget JSON (no exchange) --------------------------------------- */

struct enc_case {
    const char *key;
    const char *value;
    const char *want;
};

Test(rest_params, encoding_table, .init = setup_no_sim, .fini = teardown)
{
    static const struct enc_case cases[] = {
        {"symbol", "BTCUSDT", "symbol=BTCUSDT"},
        {"unreserved", "AZaz09-._~", "unreserved=AZaz09-._~"},
        {"space", "a b", "space=a%20b"},
        {"symbols", "[\"BTCUSDT\",\"BNBBTC\"]", "symbols=%5B%22BTCUSDT%22%2C%22BNBBTC%22%5D"},
        {"reserved", "&=+/?#%", "reserved=%26%3D%2B%2F%3F%23%25"},
        {"utf8", "\xc3\xa9", "utf8=%C3%A9"},
        {"ctl", "\r\n", "ctl=%0D%0A"},
        {"empty", "", "empty="},
        {"k e&y", "v", "k%20e%26y=v"},
        {"newClientOrderId", "cq-1_a", "newClientOrderId=cq-1_a"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_rest_params p;
        cq_rest_params_init(&p);
        cq_rest_params_add(&p, cases[i].key, cases[i].value);
        cr_expect_str_eq(p.buf, cases[i].want, "case %zu", i);
        cr_expect_eq(p.len, strlen(cases[i].want), "case %zu", i);
        cr_expect(!p.overflow, "case %zu", i);
    }

    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cr_expect_str_eq(p.buf, "");
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add_int(&p, "limit", 5);
    cq_rest_params_add_int(&p, "min", INT64_MIN);
    cq_rest_params_add_dec(&p, "price", cq_dec_make(10000000, 8));
    cq_rest_params_add_dec(&p, "neg", cq_dec_make(-5, 0));
    cq_rest_params_add_dec(&p, "qty", cq_dec_make(1230, 2));
    cr_expect_str_eq(p.buf, "symbol=BTCUSDT&limit=5&min=-9223372036854775808&price=0.10000000"
                            "&neg=-5&qty=12.30");
    cr_expect_eq(p.len, strlen(p.buf));
}

Test(rest_params, bounded_and_overflow_poisons, .init = setup_no_sim, .fini = teardown)
{
    /* "k=" + value filling the buffer to exactly MAX-1 characters (+ NUL) fits */
    static char value[CQ_REST_PARAMS_MAX];
    memset(value, 'v', CQ_REST_PARAMS_MAX - 3);
    value[CQ_REST_PARAMS_MAX - 3] = '\0';
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "k", value);
    cr_assert(!p.overflow);
    cr_assert_eq(p.len, CQ_REST_PARAMS_MAX - 1);
    cr_assert_eq(strlen(p.buf), CQ_REST_PARAMS_MAX - 1);
    cq_rest_params_add(&p, "", "x"); /* empty key: poisons */
    cr_assert(p.overflow);

    cq_rest_params_init(&p);
    value[CQ_REST_PARAMS_MAX - 3] = 'v'; /* one more character: does not fit */
    value[CQ_REST_PARAMS_MAX - 2] = '\0';
    cq_rest_params_add(&p, "k", value);
    cr_assert(p.overflow);
    cr_assert_eq(p.len, 0, "nothing partial was written");
    cr_assert_eq(p.buf[0], '\0');

    /* an encoded value counts three bytes per reserved character */
    cq_rest_params_init(&p);
    memset(value, ' ', CQ_REST_PARAMS_MAX / 3);
    value[CQ_REST_PARAMS_MAX / 3] = '\0';
    cq_rest_params_add(&p, "k", value);
    cr_assert(p.overflow);

    /* a request with an overflowed builder is refused before anything is sent */
    cq_strlcpy(g_base, "http://127.0.0.1:9", sizeof(g_base));
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    cr_assert_eq(cq_rest_call(c, "GET", "/api/v3/klines", &p, CQ_SEC_NONE, 2, &r), -CQ_ETOOBIG);
    cr_expect(strstr(r.msg, "parameters longer than") != NULL, "%s", r.msg);
    cr_assert_eq(r.attempts, 0);
    cr_assert_null(r.body);
    cr_assert_eq(budget(c).requests_total, 0);
    cq_rest_client_free(c);
}

Test(rest_client, caller_bugs_are_einval, .init = setup_no_sim, .fini = teardown)
{
    cq_strlcpy(g_base, "http://127.0.0.1:9", sizeof(g_base));
    struct cq_rest_options o = opts_default();
    o.api_key = NULL;
    o.api_secret = NULL;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    cr_expect_eq(cq_rest_call(c, "GET", "/api/v3/account", NULL, CQ_SEC_SIGNED, 20, &r), -CQ_EINVAL,
                 "signed request without a key");
    cr_expect(strstr(r.msg, "without an API key") != NULL, "%s", r.msg);
    cr_expect_eq(cq_rest_call(c, "POST", "/api/v3/userDataStream", NULL, CQ_SEC_API_KEY, 2, &r),
                 -CQ_EINVAL, "API-key request without a key");
    cr_expect_eq(cq_rest_order_send(c, "POST", "/api/v3/order", NULL, CQ_SEC_SIGNED, 1, &r),
                 -CQ_EINVAL, "signed order without a key");
    cr_expect(strstr(r.msg, "cq_rest_order_send: signed request") != NULL, "%s", r.msg);
    cr_expect_eq(cq_rest_call(c, "PATCH", "/api/v3/time", NULL, CQ_SEC_NONE, 1, &r), -CQ_EINVAL);
    cr_expect(strstr(r.msg, "method must be") != NULL, "%s", r.msg);
    /* paths curl would send differently from what the checks saw: a query,
     * no leading '/', '%' escapes, empty and dot segments (curl removes
     * "/../", so "/api/v3/x/../order" is POST /api/v3/order on the wire) */
    static const char *const bad_paths[] = {
        "api/v3/time",      "/api/v3/time?x=1",   "/api/v3/%6Frder",
        "/api/v3//order",   "/api/v3/x/../order", "/api/v3/./order",
        "/api/v3/order/..", "/api/v3\\order",     "",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad_paths); i++) {
        cr_expect_eq(cq_rest_call(c, "POST", bad_paths[i], NULL, CQ_SEC_NONE, 1, &r), -CQ_EINVAL,
                     "safe door, path '%s'", bad_paths[i]);
        cr_expect(strstr(r.msg, "path must start with '/'") != NULL, "%s", r.msg);
        cr_expect_eq(cq_rest_order_send(c, "POST", bad_paths[i], NULL, CQ_SEC_NONE, 1, &r),
                     -CQ_EINVAL, "order door, path '%s'", bad_paths[i]);
    }
    cr_expect_eq(cq_rest_call(c, "GET", NULL, NULL, CQ_SEC_NONE, 1, &r), -CQ_EINVAL);
    cr_expect_eq(cq_rest_call(NULL, "GET", "/api/v3/time", NULL, CQ_SEC_NONE, 1, &r), -CQ_EINVAL);
    cr_expect_eq(cq_rest_call(c, "GET", "/api/v3/time", NULL, CQ_SEC_NONE, 1, NULL), -CQ_EINVAL);
    cr_expect_eq(cq_rest_order_send(c, "POST", "/api/v3/order", NULL, CQ_SEC_NONE, 1, NULL),
                 -CQ_EINVAL);
    cr_expect_eq(budget(c).requests_total, 0);
    cq_rest_client_free(c);

    struct cq_err err;
    o.base_url = "ftp://127.0.0.1:9";
    cr_expect_null(cq_rest_client_new(&o, &err));
    cr_expect_eq(err.code, CQ_ECONFIG);
    o.base_url = g_base;
    o.weight_headroom_pct = 100;
    cr_expect_null(cq_rest_client_new(&o, &err));
    cr_expect_eq(err.code, CQ_ECONFIG);
    o.weight_headroom_pct = 0;
    /* the service name (a log label) is refused, not cut, at 32 characters */
    o.service = "service-name-of-31-characters-x";
    cr_assert_eq(strlen(o.service), 31);
    c = cq_rest_client_new(&o, &err);
    cr_expect_not_null(c, "31 characters: %s", err.message);
    cq_rest_client_free(c);
    o.service = "service-name-of-32-characters-xy";
    cr_expect_null(cq_rest_client_new(&o, &err), "32 characters");
    cr_expect_eq(err.code, CQ_EINVAL);
    cq_rest_client_free(NULL);
    cq_rest_response_fini(NULL);
}

/* Every endpoint that places, changes or cancels orders (protocol doc §1
 * and Binance's spot API: order, its test, cancelReplace, amend, OCO and
 * order lists, SOR, cancel-all), with the method that does it: the safe
 * door refuses each before anything is sent, naming the order door. Before
 * the split, cq_rest_request(..., false) sent these and retried them on a
 * 5xx: a duplicate order. */
static const struct {
    const char *method;
    const char *path;
} ORDER_ENDPOINTS[] = {
    {"POST", "/api/v3/order"},
    {"DELETE", "/api/v3/order"},
    {"POST", "/api/v3/order/test"},
    {"POST", "/api/v3/order/cancelReplace"},
    {"PUT", "/api/v3/order/amend/keepPriority"},
    {"POST", "/api/v3/order/oco"},
    {"DELETE", "/api/v3/openOrders"},
    {"POST", "/api/v3/orderList/oco"},
    {"POST", "/api/v3/orderList/oto"},
    {"POST", "/api/v3/orderList/otoco"},
    {"DELETE", "/api/v3/orderList"},
    {"POST", "/api/v3/sor/order"},
    {"POST", "/api/v3/sor/order/test"},
    {"POST", "/api/v1/order"},  /* any version */
    {"POST", "/API/V3/ORDER"},  /* any case */
    {"POST", "/api/v3/order/"}, /* a trailing slash */
};

Test(rest_client, safe_call_refuses_every_order_endpoint, .init = setup_no_sim, .fini = teardown)
{
    cq_strlcpy(g_base, "http://127.0.0.1:9", sizeof(g_base));
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    for (size_t i = 0; i < CQ_ARRAY_LEN(ORDER_ENDPOINTS); i++) {
        const char *m = ORDER_ENDPOINTS[i].method;
        const char *path = ORDER_ENDPOINTS[i].path;
        cr_expect(cq_rest_is_order_endpoint(m, path), "%s %s is an order endpoint", m, path);
        struct cq_rest_response r;
        int rc = cq_rest_call(c, m, path, NULL, CQ_SEC_SIGNED, 1, &r);
        cr_expect_eq(rc, -CQ_EINVAL, "%s %s through cq_rest_call: %d", m, path, rc);
        cr_expect(strstr(r.msg, "use cq_rest_order_send") != NULL, "%s %s: %s", m, path, r.msg);
        cr_expect(strstr(r.msg, path) != NULL, "the message names the path: %s", r.msg);
        cr_expect_eq(r.attempts, 0);
        cr_expect_null(r.body);
    }
    cr_expect_eq(budget(c).requests_total, 0, "nothing was sent");
    cr_expect_eq(budget(c).time_syncs_total, 0, "not even a time sync");
    cq_rest_client_free(c);

    /* queries on the same paths, and the other endpoints, are safe */
    static const struct {
        const char *method;
        const char *path;
    } safe[] = {
        {"GET", "/api/v3/order"},
        {"GET", "/api/v3/openOrders"},
        {"GET", "/api/v3/orderList"},
        {"GET", "/api/v3/allOrders"},
        {"GET", "/api/v3/openOrderList"},
        {"GET", "/api/v3/account"},
        {"POST", "/api/v3/userDataStream"},
        {"PUT", "/api/v3/userDataStream"},
        {"DELETE", "/api/v3/userDataStream"},
        {"POST", "/api/v3/orders"},
        {"POST", "/api/v3/orderListing"},
        {"POST", "/api/v3/sor/orders"},
        {"POST", "/api/order"},
        {"POST", "/api/vx/order"},
        {"POST", "/sapi/v1/something"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(safe); i++) {
        cr_expect(!cq_rest_is_order_endpoint(safe[i].method, safe[i].path), "%s %s is safe",
                  safe[i].method, safe[i].path);
    }
    cr_expect(!cq_rest_is_order_endpoint(NULL, "/api/v3/order"));
    cr_expect(!cq_rest_is_order_endpoint("POST", NULL));
}

Test(rest_client, status_names, .init = setup_no_sim, .fini = teardown)
{
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_OK), "ok");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_REJECTED), "rejected");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_UNKNOWN), "unknown");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_RATE_LIMITED), "rate_limited");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_BANNED), "banned");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_THROTTLED), "throttled");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_NETWORK), "network");
    cr_expect_str_eq(cq_rest_status_name(CQ_REST_BAD_RESPONSE), "bad_response");
}

Test(rest_client, budget_json_fields, .init = setup_no_sim, .fini = teardown)
{
    struct cq_rest_budget b = {
        .used_weight_1m = 1,
        .weight_limit_1m = 2,
        .order_count_10s = 3,
        .order_limit_10s = 4,
        .rate_limited_for_ms = 5,
        .banned_for_ms = 6,
        .time_offset_ms = -7,
        .last_sync_age_ms = -1,
        .requests_total = 9,
        .retries_total = 10,
        .throttled_total = 11,
        .rate_limited_total = 12,
        .banned_total = 13,
        .unknown_total = 14,
        .time_syncs_total = 15,
        .errors_total = 16,
        .order_spares_used_total = 17,
        .order_spares_discarded_total = 18,
    };
    json_t *j = cq_rest_budget_json(&b);
    cr_assert_not_null(j);
    static const struct {
        const char *name;
        json_int_t want;
    } fields[] = {
        {"used_weight_1m", 1},
        {"weight_limit_1m", 2},
        {"order_count_10s", 3},
        {"order_limit_10s", 4},
        {"rate_limited_for_ms", 5},
        {"banned_for_ms", 6},
        {"time_offset_ms", -7},
        {"last_sync_age_ms", -1},
        {"requests_total", 9},
        {"retries_total", 10},
        {"throttled_total", 11},
        {"rate_limited_total", 12},
        {"banned_total", 13},
        {"unknown_total", 14},
        {"time_syncs_total", 15},
        {"errors_total", 16},
        {"order_spares_used_total", 17},
        {"order_spares_discarded_total", 18},
    };
    cr_expect_eq(json_object_size(j), CQ_ARRAY_LEN(fields));
    for (size_t i = 0; i < CQ_ARRAY_LEN(fields); i++) {
        json_t *v = json_object_get(j, fields[i].name);
        cr_expect(json_is_integer(v), "%s missing", fields[i].name);
        cr_expect_eq(json_integer_value(v), fields[i].want, "%s", fields[i].name);
    }
    json_decref(j);
}

/* ---- happy paths ---------------------------------------------------------------------- */

Test(rest_client, public_gets_and_weight_header, .init = setup_default, .fini = teardown)
{
    avoid_window_edge(60000, 3000);
    struct cq_rest_options o = opts_default();
    o.api_key = NULL; /* public endpoints need none */
    o.api_secret = NULL;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_budget b0 = budget(c);
    cr_expect_eq(b0.weight_limit_1m, 6000, "default until exchangeInfo says otherwise");
    cr_expect_eq(b0.order_limit_10s, 100);
    cr_expect_eq(b0.last_sync_age_ms, -1);

    struct cq_rest_response r;
    get_time(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.http_status, 200);
    cr_expect_eq(r.attempts, 1);
    json_t *t = json_object_get(r.body, "serverTime");
    cr_assert(json_is_integer(t));
    cr_expect(llabs((long long)json_integer_value(t) - (long long)now_wall_ms()) < 5000);
    cq_rest_response_fini(&r);
    cq_rest_response_fini(&r); /* idempotent */

    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    req(c, "GET", "/api/v3/exchangeInfo", &p, CQ_SEC_NONE, 20, &r);
    expect_ok(&r);
    json_t *syms = json_object_get(r.body, "symbols");
    cr_assert_eq(json_array_size(syms), 1);
    cr_expect_str_eq(jstr(json_array_get(syms, 0), "symbol"), "BTCUSDT");
    cq_rest_response_fini(&r);

    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "interval", "1m");
    cq_rest_params_add_int(&p, "limit", 5);
    req(c, "GET", "/api/v3/klines", &p, CQ_SEC_NONE, 2, &r);
    expect_ok(&r);
    cr_assert(json_is_array(r.body));
    cr_expect_eq(json_array_size(r.body), 5);
    cr_expect_eq(json_array_size(json_array_get(r.body, 0)), 12);
    cq_rest_response_fini(&r);

    /* the weight comes from X-MBX-USED-WEIGHT-1M: 1 + 20 + 2 on a fresh simulator */
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.used_weight_1m, 23);
    cr_expect_eq((long long)b.used_weight_1m, sim_number("ratelimit", "weight_used"));
    cr_expect_eq(b.requests_total, 3);
    cr_expect_eq(b.errors_total, 0);
    cr_expect_eq(b.time_syncs_total, 0, "no signed request, no sync");
    cq_rest_client_free(c);
}

Test(rest_client, learn_limits_from_exchange_info, .init = setup_no_sim, .fini = teardown)
{
    start_sim(1234, 77);
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    req(c, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, &r);
    expect_ok(&r);
    cq_rest_client_learn_limits(c, r.body);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.weight_limit_1m, 1234);
    cr_expect_eq(b.order_limit_10s, 77);
    cq_rest_response_fini(&r);

    /* unknown shapes change nothing */
    json_t *odd = json_pack("{s:[{s:s,s:s,s:i,s:i},{s:s,s:s,s:i,s:s},{s:s}]}", "rateLimits",
                            "rateLimitType", "REQUEST_WEIGHT", "interval", "MINUTE", "intervalNum",
                            5, "limit", 9, "rateLimitType", "ORDERS", "interval", "SECOND",
                            "intervalNum", 10, "limit", "9", "rateLimitType", "ORDERS");
    cq_rest_client_learn_limits(c, odd);
    cq_rest_client_learn_limits(c, NULL);
    json_decref(odd);
    b = budget(c);
    cr_expect_eq(b.weight_limit_1m, 1234);
    cr_expect_eq(b.order_limit_10s, 77);
    cq_rest_client_free(c);
}

Test(rest_client, signed_account_and_lazy_time_sync, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1);
    json_t *bal;
    size_t i;
    bool usdt = false;
    json_array_foreach(json_object_get(r.body, "balances"), i, bal)
    {
        if (strcmp(jstr(bal, "asset"), "USDT") == 0) {
            cq_dec free_amt;
            cr_assert_eq(cq_dec_parse(jstr(bal, "free"), (size_t)-1, &free_amt), 0);
            cr_expect_eq(cq_dec_cmp(free_amt, cq_dec_make(10000, 0)), 0, "free %s",
                         jstr(bal, "free"));
            usdt = true;
        }
    }
    cr_expect(usdt, "USDT balance listed");
    cq_rest_response_fini(&r);

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.time_syncs_total, 1, "synced lazily before the first signed request");
    cr_expect(llabs((long long)b.time_offset_ms) < 1000, "offset %lld",
              (long long)b.time_offset_ms);
    cr_expect(b.last_sync_age_ms >= 0 && b.last_sync_age_ms < 5000);
    cr_expect_eq(b.requests_total, 2, "GET /time + GET /account");
    cr_expect_geq(log_hits("\"event\":\"rest_time_synced\"", NULL, 0), 1);

    get_account(c, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).time_syncs_total, 1, "not again within the interval");
    expect_logs_clean();
    cq_rest_client_free(c);
}

Test(rest_client, wrong_secret_is_rejected_1022, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    o.api_secret = "not-the-simulator-secret";
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r);
    cr_expect_eq(r.status, CQ_REST_REJECTED, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.http_status, 400);
    cr_expect_eq(r.code, -1022);
    cr_expect_str_eq(r.msg, "Signature for this request is not valid.");
    cr_expect_eq(r.attempts, 1, "a rejection is never retried");
    cr_assert_not_null(r.body, "the error object is kept");
    cr_expect_eq(json_integer_value(json_object_get(r.body, "code")), -1022);
    cq_rest_response_fini(&r);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.errors_total, 1);
    cr_expect_eq(b.retries_total, 0);
    expect_logs_clean();
    cq_rest_client_free(c);
}

Test(rest_client, api_key_header_only_when_asked, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    req(c, "POST", "/api/v3/userDataStream", NULL, CQ_SEC_API_KEY, 2, &r);
    expect_ok(&r);
    char key[128];
    cq_strlcpy(key, jstr(r.body, "listenKey"), sizeof(key));
    cr_expect_eq(strlen(key), 64);
    cq_rest_response_fini(&r);

    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "listenKey", key);
    req(c, "PUT", "/api/v3/userDataStream", &p, CQ_SEC_API_KEY, 2, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);

    /* the same call marked NONE goes out without X-MBX-APIKEY */
    req(c, "PUT", "/api/v3/userDataStream", &p, CQ_SEC_NONE, 2, &r);
    cr_expect_eq(r.status, CQ_REST_REJECTED);
    cr_expect_eq(r.http_status, 401);
    cr_expect_eq(r.code, -2014);
    cr_expect_str_eq(r.msg, "API-key format invalid.");
    cq_rest_response_fini(&r);

    req(c, "DELETE", "/api/v3/userDataStream", &p, CQ_SEC_API_KEY, 2, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).time_syncs_total, 0, "USER_STREAM is not signed");
    cq_rest_client_free(c);
}

Test(rest_client, order_placed_queried_and_cancelled, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    place_order(c, "cq-test-order-1", &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1);
    cr_expect_str_eq(jstr(r.body, "clientOrderId"), "cq-test-order-1");
    cr_expect_str_eq(jstr(r.body, "status"), "NEW");
    cr_expect_str_eq(jstr(r.body, "origQty"), "0.00100000");
    cr_expect_str_eq(jstr(r.body, "price"), "20000.00000000");
    json_int_t order_id = json_integer_value(json_object_get(r.body, "orderId"));
    cr_expect_gt(order_id, 0);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).order_count_10s, 1, "from X-MBX-ORDER-COUNT-10S");

    query_order(c, "cq-test-order-1", &r);
    expect_ok(&r);
    cr_expect_eq(json_integer_value(json_object_get(r.body, "orderId")), order_id);
    cr_expect_str_eq(jstr(r.body, "status"), "NEW");
    cq_rest_response_fini(&r);

    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "origClientOrderId", "cq-test-order-1");
    ord(c, "DELETE", "/api/v3/order", &p, CQ_SEC_SIGNED, 1, &r);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.body, "status"), "CANCELED");
    cq_rest_response_fini(&r);

    query_order(c, "cq-never-sent", &r);
    cr_expect_eq(r.status, CQ_REST_REJECTED);
    cr_expect_eq(r.code, -2013);
    cr_expect_str_eq(r.msg, "Order does not exist.");
    cq_rest_response_fini(&r);

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.unknown_total, 0);
    cr_expect_eq(log_hits("rest_unknown_outcome", NULL, 0), 0);
    cr_expect_eq(sim_number("engine", "orders_placed"), 1);
    expect_logs_clean();
    cq_rest_client_free(c);
}

/* ---- time --------------------------------------------------------------------------- */

Test(rest_client, clock_skew_resyncs_and_resends_once, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    o.recv_window_ms = 2000; /* the 5 s skew is well outside it */
    struct cq_rest_client *c = client_new(&o);
    struct cq_err err;
    cr_assert_eq(cq_rest_sync_time(c, &err), 0, "%s", err.message);
    struct cq_rest_budget b0 = budget(c);
    cr_assert_eq(b0.time_syncs_total, 1);
    cr_expect(llabs((long long)b0.time_offset_ms) < 1000);

    sim_ctl("/_sim/clock/skew?ms=5000");
    long long rest_4xx = sim_counter("rest_errors_4xx");
    struct cq_rest_response r;
    get_account(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 2, "-1021, re-sync, one resend");
    cq_rest_response_fini(&r);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.time_syncs_total, b0.time_syncs_total + 1);
    cr_expect(b.time_offset_ms > 4000 && b.time_offset_ms < 6000, "offset %lld",
              (long long)b.time_offset_ms);
    cr_expect_eq(sim_counter("rest_errors_4xx"), rest_4xx + 1, "exactly one -1021 answer");
    cr_expect_eq(b.errors_total, 0);

    /* an order too: the server clock now runs 5 s BEHIND us ("1000ms ahead"):
     * refused before execution, so it is resent once and placed once */
    sim_ctl("/_sim/clock/skew?ms=-5000");
    place_order(c, "cq-skew-order", &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 2);
    cr_expect_str_eq(jstr(r.body, "clientOrderId"), "cq-skew-order");
    cq_rest_response_fini(&r);
    b = budget(c);
    cr_expect_eq(b.time_syncs_total, b0.time_syncs_total + 2);
    cr_expect(b.time_offset_ms < -4000 && b.time_offset_ms > -6000, "offset %lld",
              (long long)b.time_offset_ms);
    cr_expect_eq(b.unknown_total, 0);
    cr_expect_eq(sim_number("engine", "orders_placed"), 1, "placed exactly once");
    expect_logs_clean();
    cq_rest_client_free(c);
}

Test(rest_client, periodic_resync_on_the_injected_clock, .init = setup_default, .fini = teardown)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000, cq_time_wall_us());
    struct cq_clock clock = fake_clock_as_clock(&fc);
    struct cq_rest_options o = opts_default();
    o.clock = &clock;
    o.time_sync_interval_ms = 30000;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.time_syncs_total, 1);
    cr_expect_eq(b.last_sync_age_ms, 0, "the fake clock has not moved");

    /* monotonic time passes, the wall clock stays right */
    atomic_fetch_add(&fc.mono_ms, 29999);
    get_account(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).time_syncs_total, 1, "not due yet");
    cr_expect_eq(budget(c).last_sync_age_ms, 29999);

    /* due, and meanwhile the local wall clock jumped 30 s ahead of the
     * exchange: the re-sync measures that and the request goes through */
    atomic_fetch_add(&fc.wall_us, (int64_t)30000 * 1000);
    atomic_fetch_add(&fc.mono_ms, 1);
    get_account(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1, "synced before sending, no -1021");
    cq_rest_response_fini(&r);
    b = budget(c);
    cr_expect_eq(b.time_syncs_total, 2);
    cr_expect_eq(b.last_sync_age_ms, 0);
    cr_expect(b.time_offset_ms < -28000 && b.time_offset_ms > -31000, "offset %lld",
              (long long)b.time_offset_ms);
    cq_rest_client_free(c);
}

/* ---- rate limits ---------------------------------------------------------------------- */

Test(rest_client, storm_429_refused_locally_never_banned, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r); /* sync now, so nothing below needs /time */
    expect_ok(&r);
    cq_rest_response_fini(&r);

    sim_ctl("/_sim/ratelimit/storm?seconds=3");
    get_time(c, &r);
    cr_assert_eq(r.status, CQ_REST_RATE_LIMITED, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.http_status, 429);
    cr_expect_eq(r.code, -1003);
    cr_expect_eq(r.attempts, 1, "a 429 is not retried");
    cr_expect(r.retry_after_ms >= 2000 && r.retry_after_ms <= 3000, "retry_after_ms %lld",
              (long long)r.retry_after_ms);
    int64_t wait_ms = r.retry_after_ms;
    cq_rest_response_fini(&r);
    cr_expect_geq(log_hits("\"event\":\"rest_rate_limited\"", NULL, 0), 1);

    long long sent = sim_counter("rest_requests");
    for (int i = 0; i < 5; i++) {
        get_time(c, &r);
        cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
        cr_expect_eq(r.attempts, 0, "refused locally");
        cr_expect(r.retry_after_ms > 0 && r.retry_after_ms <= wait_ms);
        cq_rest_response_fini(&r);
        place_order(c, "cq-storm", &r);
        cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
        cr_expect_eq(r.attempts, 0);
        cq_rest_response_fini(&r);
    }
    cr_expect_eq(sim_counter("rest_requests"), sent, "nothing reached the exchange");
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.rate_limited_total, 1);
    cr_expect_gt(b.rate_limited_for_ms, 0);
    cr_expect_eq(b.banned_total, 0);
    cr_expect_eq(sim_counter("rest_418"), 0);

    cq_time_sleep_ms(wait_ms + 100);
    get_time(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    b = budget(c);
    cr_expect_eq(b.rate_limited_for_ms, 0);
    cr_expect_eq(b.banned_total, 0);
    cq_rest_client_free(c);
}

Test(rest_client, retry_after_is_measured_on_the_injected_clock, .init = setup_default,
     .fini = teardown)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000, cq_time_wall_us());
    struct cq_clock clock = fake_clock_as_clock(&fc);
    struct cq_rest_options o = opts_default();
    o.clock = &clock;
    struct cq_rest_client *c = client_new(&o);
    sim_ctl("/_sim/ratelimit/storm?seconds=30");
    struct cq_rest_response r;
    get_time(c, &r);
    cr_assert_eq(r.status, CQ_REST_RATE_LIMITED);
    cr_expect_eq(r.attempts, 1);
    int64_t wait_ms = r.retry_after_ms;
    cr_expect(wait_ms > 28000 && wait_ms <= 30000);
    cq_rest_response_fini(&r);

    fake_clock_advance_ms(&fc, wait_ms - 1);
    get_time(c, &r);
    cr_expect_eq(r.attempts, 0);
    cr_expect_eq(r.retry_after_ms, 1);
    cq_rest_response_fini(&r);

    fake_clock_advance_ms(&fc, 1); /* real time has barely moved: the storm still runs */
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
    cr_expect_eq(r.attempts, 1, "sent again once the injected clock passed Retry-After");
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).rate_limited_total, 2);
    sim_ctl("/_sim/faults/clear");
    cq_rest_client_free(c);
}

Test(rest_client, ban_418_is_latched, .init = setup_no_sim, .fini = teardown)
{
    start_sim(10, 100000);
    /* a misbehaving raw client, not ours, keeps going past the 429s */
    long st = 0;
    for (int i = 0; i < 200 && st != 418; i++) {
        st = raw_http("GET", "/api/v3/ping", NULL);
    }
    cr_assert_eq(st, 418, "the simulator bans after ignored 429s");

    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_time(c, &r);
    cr_assert_eq(r.status, CQ_REST_BANNED, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.http_status, 418);
    cr_expect_eq(r.code, -1003);
    cr_expect_eq(r.attempts, 1);
    cr_expect(strstr(r.msg, "IP banned until") != NULL, "%s", r.msg);
    cr_expect(r.retry_after_ms > 60000 && r.retry_after_ms <= 120000, "retry_after_ms %lld",
              (long long)r.retry_after_ms);
    cq_rest_response_fini(&r);
    cr_expect_eq(log_hits("\"event\":\"rest_banned\"", NULL, 0), 1);

    long long sent = sim_counter("rest_requests");
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_BANNED);
    cr_expect_eq(r.attempts, 0);
    cr_expect_gt(r.retry_after_ms, 0);
    cq_rest_response_fini(&r);
    place_order(c, "cq-banned", &r); /* signed: not even the time sync goes out */
    cr_expect_eq(r.status, CQ_REST_BANNED);
    cr_expect_eq(r.attempts, 0);
    cq_rest_response_fini(&r);
    cr_expect_eq(sim_counter("rest_requests"), sent, "nothing sent while latched");

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.banned_total, 1);
    cr_expect_gt(b.banned_for_ms, 60000);
    cr_expect_eq(b.unknown_total, 0);
    cq_rest_client_free(c);
}

Test(rest_client, weight_headroom_throttles_before_429, .init = setup_no_sim, .fini = teardown)
{
    start_sim(50, 100000);
    avoid_window_edge(60000, 3000);
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    req(c, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, &r);
    expect_ok(&r);
    cq_rest_client_learn_limits(c, r.body);
    cq_rest_response_fini(&r);
    cr_assert_eq(budget(c).weight_limit_1m, 50);

    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "interval", "1m");
    cq_rest_params_add_int(&p, "limit", 2);
    int ok = 0;
    bool throttled = false;
    for (int i = 0; i < 40 && !throttled; i++) {
        req(c, "GET", "/api/v3/klines", &p, CQ_SEC_NONE, 2, &r);
        if (r.status == CQ_REST_THROTTLED) {
            throttled = true;
            cr_expect_eq(r.attempts, 0);
            cr_expect(r.retry_after_ms > 0 && r.retry_after_ms <= 60000);
        } else {
            expect_ok(&r);
            ok++;
        }
        cq_rest_response_fini(&r);
    }
    cr_assert(throttled, "never throttled");
    /* 20 + 2 * 12 = 44; one more klines would make 46 > 45 (90% of 50) */
    cr_expect_eq(ok, 12);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.used_weight_1m, 44);
    cr_expect_eq(b.throttled_total, 1);
    cr_expect_eq(sim_counter("rest_429"), 0, "the exchange never had to say 429");
    cr_expect_eq(sim_number("ratelimit", "weight_used"), 44);

    /* a cheaper request still fits: 44 + 1 <= 45 */
    get_time(c, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_THROTTLED);
    cq_rest_response_fini(&r);
    cr_expect_eq(sim_counter("rest_429"), 0);
    cr_expect_geq(log_hits("\"event\":\"rest_throttled\"", NULL, 0), 1);
    cq_rest_client_free(c);
}

Test(rest_client, order_count_headroom_holds_new_orders_not_cancels, .init = setup_no_sim,
     .fini = teardown)
{
    start_sim(1000000, 10);
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    req(c, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, &r);
    expect_ok(&r);
    cq_rest_client_learn_limits(c, r.body);
    cq_rest_response_fini(&r);
    cr_assert_eq(budget(c).order_limit_10s, 10);
    get_account(c, &r); /* time sync out of the way */
    cq_rest_response_fini(&r);

    avoid_window_edge(10000, 3000);
    int placed = 0;
    bool throttled = false;
    for (int i = 0; i < 20 && !throttled; i++) {
        char id[32];
        snprintf(id, sizeof(id), "cq-rate-%d", i);
        place_order(c, id, &r);
        if (r.status == CQ_REST_THROTTLED) {
            throttled = true;
            cr_expect_eq(r.attempts, 0);
            cr_expect(r.retry_after_ms > 0 && r.retry_after_ms <= 10000);
        } else {
            expect_ok(&r);
            placed++;
        }
        cq_rest_response_fini(&r);
    }
    cr_assert(throttled);
    cr_expect_eq(placed, 9, "90%% of 10 orders per 10 s");
    cr_expect_eq(budget(c).order_count_10s, 9);
    cr_expect_eq(sim_counter("rest_429"), 0);

    /* a cancel is not held back by the new-order count */
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", "BTCUSDT");
    cq_rest_params_add(&p, "origClientOrderId", "cq-rate-0");
    ord(c, "DELETE", "/api/v3/order", &p, CQ_SEC_SIGNED, 1, &r);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.body, "status"), "CANCELED");
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);
}

/* ---- 5xx, latency, connection refused --------------------------------------------------- */

Test(rest_client, get_5xx_retried_then_network, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    o.max_retries = 3;
    struct cq_rest_client *c = client_new(&o);
    sim_ctl("/_sim/rest/errors?per_mille=1000");
    struct cq_rest_response r;
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 4, "max_retries + 1");
    cr_expect_eq(r.http_status, 503);
    cr_expect_eq(r.code, -1000);
    cr_expect_str_eq(r.msg, MSG_UNKNOWN);
    cq_rest_response_fini(&r);
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.retries_total, 3);
    cr_expect_eq(b.requests_total, 4);
    cr_expect_eq(b.errors_total, 1);
    cr_expect_eq(sim_counter("rest_errors_5xx"), 4);
    cr_expect_geq(log_hits("\"event\":\"rest_retry\"", NULL, 0), 3);

    sim_ctl("/_sim/rest/errors?per_mille=0");
    get_time(c, &r);
    expect_ok(&r);
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);
}

Test(rest_client, get_5xx_half_eventually_succeeds, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    o.max_retries = 10;
    o.jitter_seed = 1234;
    struct cq_rest_client *c = client_new(&o);
    sim_ctl("/_sim/rest/errors?per_mille=500");
    struct cq_rest_response r;
    bool found = false;
    for (int i = 0; i < 40 && !found; i++) {
        get_time(c, &r);
        if (r.status == CQ_REST_OK && r.attempts > 1) {
            found = true;
            cr_expect(json_is_integer(json_object_get(r.body, "serverTime")));
            cr_expect_eq(r.http_status, 200);
        }
        cq_rest_response_fini(&r);
    }
    sim_ctl("/_sim/rest/errors?per_mille=0");
    cr_expect(found, "a GET succeeded after at least one 503");
    cr_expect_gt(budget(c).retries_total, 0);
    cq_rest_client_free(c);
}

Test(rest_client, retry_budget_bounds_the_sleeps_and_seed_fixes_them, .init = setup_default,
     .fini = teardown)
{
    sim_ctl("/_sim/rest/errors?per_mille=1000");
    int attempts[2];
    struct retry_sleeps sched[2];
    for (int k = 0; k < 2; k++) {
        struct cq_rest_options o = opts_default();
        o.max_retries = 50;
        o.backoff_base_ms = 400;
        o.backoff_max_ms = 400;
        o.retry_budget_ms = 150;
        o.jitter_seed = 99;
        struct cq_rest_client *c = client_new(&o);
        struct cq_rest_response r;
        struct retry_sleeps before = retry_sleeps_logged();
        int64_t t0 = cq_time_mono_ms();
        get_time(c, &r);
        int64_t elapsed = cq_time_mono_ms() - t0;
        struct retry_sleeps after = retry_sleeps_logged();
        cr_expect_eq(r.status, CQ_REST_NETWORK);
        cr_expect(r.attempts >= 2 && r.attempts <= 51, "attempts %d", r.attempts);
        /* The budget is checked on the sleeps the client reports, not on
         * wall time (a loaded CI box stretches every 503). Seed 99 draws two
         * retries, within the rest_retry log burst (5 per 10 s per client),
         * so every sleep is logged. */
        int n = after.n - before.n;
        cr_assert_eq(n, r.attempts - 1, "one rest_retry line per retry (%d attempts)", r.attempts);
        memset(&sched[k], 0, sizeof sched[k]);
        int64_t slept = 0;
        for (int i = 0; i < n; i++) {
            int64_t d = after.ms[before.n + i];
            cr_expect(d >= 0 && d <= 400, "sleep %d: %lld ms", i, (long long)d);
            slept += d;
            sched[k].ms[sched[k].n++] = d;
        }
        cr_expect_leq(slept, 150, "sleeps of %lld ms in all: over retry_budget_ms",
                      (long long)slept);
        cr_expect_geq(elapsed, slept - 2, "the sleeps were slept (%lld ms of %lld)",
                      (long long)elapsed, (long long)slept);
        /* Loosely in wall time too: without the budget, 50 sleeps of up to
         * 400 ms would take about 10 s. */
        cr_expect_lt(elapsed, 150 + 2000, "elapsed %lld ms", (long long)elapsed);
        attempts[k] = r.attempts;
        cq_rest_response_fini(&r);
        cq_rest_client_free(c);
    }
    cr_expect_eq(attempts[0], attempts[1], "same seed, same schedule");
    cr_expect_eq(sched[0].n, sched[1].n);
    for (int i = 0; i < sched[0].n && i < sched[1].n; i++) {
        cr_expect_eq(sched[0].ms[i], sched[1].ms[i], "same seed, same sleep %d", i);
    }
}

Test(rest_client, order_5xx_is_unknown_then_resolved, .init = setup_default, .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r); /* sync before the fault */
    expect_ok(&r);
    cq_rest_response_fini(&r);

    sim_ctl("/_sim/rest/errors?per_mille=1000");
    long long sent = sim_counter("rest_requests");
    place_order(c, "cq-5xx-order", &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1, "an order is never resent");
    cr_expect_eq(r.http_status, 503);
    cr_expect_eq(r.code, -1000);
    cr_expect_str_eq(r.msg, MSG_UNKNOWN);
    cq_rest_response_fini(&r);
    cr_expect_eq(sim_counter("rest_requests"), sent + 1, "exactly one request on the wire");
    sim_ctl("/_sim/rest/errors?per_mille=0");

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.unknown_total, 1);
    cr_expect_eq(b.retries_total, 0);
    char line[1024];
    cr_expect_eq(log_hits("\"event\":\"rest_unknown_outcome\"", line, sizeof(line)), 1);
    cr_expect(strstr(line, "\"client_order_id\":\"cq-5xx-order\"") != NULL, "%s", line);
    cr_expect(strstr(line, "\"path\":\"/api/v3/order\"") != NULL, "%s", line);

    /* resolve: the simulator executed it or not (a seeded coin flip) */
    query_order(c, "cq-5xx-order", &r);
    long long placed = sim_number("engine", "orders_placed");
    if (r.status == CQ_REST_OK) {
        cr_expect_str_eq(jstr(r.body, "clientOrderId"), "cq-5xx-order");
        cr_expect_eq(placed, 1);
    } else {
        cr_expect_eq(r.status, CQ_REST_REJECTED, "%s", cq_rest_status_name(r.status));
        cr_expect_eq(r.code, -2013);
        cr_expect_str_eq(r.msg, "Order does not exist.");
        cr_expect_eq(placed, 0);
    }
    cq_rest_response_fini(&r);
    expect_logs_clean();
    cq_rest_client_free(c);
}

Test(rest_client, latency_past_timeout_unknown_for_orders_retried_for_gets, .init = setup_default,
     .fini = teardown)
{
    struct cq_rest_options o = opts_default();
    o.total_timeout_ms = 250;
    o.max_retries = 2;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_account(c, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);

    sim_ctl("/_sim/rest/latency?ms=700");
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 3, "retried max_retries times");
    cr_expect_eq(r.http_status, 0);
    cr_expect(strstr(r.msg, "imeout") != NULL || strstr(r.msg, "imed out") != NULL, "%s", r.msg);
    cq_rest_response_fini(&r);

    place_order(c, "cq-slow-order", &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).unknown_total, 1);

    /* the exchange executed it after we gave up: the query finds it */
    sim_ctl("/_sim/rest/latency?ms=0");
    bool found = false;
    for (int i = 0; i < 30 && !found; i++) {
        query_order(c, "cq-slow-order", &r);
        if (r.status == CQ_REST_OK) {
            found = true;
            cr_expect_str_eq(jstr(r.body, "status"), "NEW");
        } else {
            cr_expect_eq(r.code, -2013);
            cq_time_sleep_ms(100);
        }
        cq_rest_response_fini(&r);
    }
    cr_expect(found, "the slow order exists");
    cr_expect_eq(sim_number("engine", "orders_placed"), 1, "and only once");
    cq_rest_client_free(c);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    close(fd); /* bound, never listened, now closed: connects are refused */
    return port;
}

Test(rest_client, connection_refused_is_network_for_gets_and_orders, .init = setup_no_sim,
     .fini = teardown)
{
    snprintf(g_base, sizeof(g_base), "http://127.0.0.1:%d", closed_port());
    struct cq_rest_options o = opts_default();
    o.max_retries = 2;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    get_time(c, &r);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 3);
    cr_expect_eq(r.http_status, 0);
    cr_expect_null(r.body);
    cq_rest_response_fini(&r);

    place_order(c, "cq-refused", &r);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "definitively not executed, so not UNKNOWN");
    cr_expect_eq(r.attempts, 1, "and not resent");
    cq_rest_response_fini(&r);

    struct cq_err err;
    cr_expect_eq(cq_rest_sync_time(c, &err), -CQ_EVENUE);
    cr_expect_eq(err.code, CQ_EVENUE);
    cr_expect(strstr(err.message, "network") != NULL, "%s", err.message);

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.unknown_total, 0);
    cr_expect_eq(b.time_syncs_total, 0);
    cr_expect_eq(b.last_sync_age_ms, -1);
    cr_expect_geq(b.errors_total, 3);
    cr_expect_eq(log_hits("rest_unknown_outcome", NULL, 0), 0);
    cq_rest_client_free(c);
}

/* ---- a scripted HTTP server for what the simulator cannot produce ---------------------- */

/* One canned answer per request line prefix ("POST /x "); response NULL =
 * read the request and close the connection without answering. Keep-alive
 * otherwise; one thread per connection, so a fresh connection is served
 * while an idle one stays open. */
struct script_route {
    const char *request; /* "GET /path " */
    const char *status;  /* "200 OK"; NULL = close without answering */
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;    /* NULL with big_body */
    size_t big_body;     /* bytes of 'x' instead of body */
};

#define SCRIPT_MAX_ROUTES 16

struct script_server {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    const struct script_route *routes;
    size_t n_routes;
    atomic_int hits[SCRIPT_MAX_ROUTES];
    atomic_int connections;
};

struct script_conn {
    struct script_server *srv;
    int fd;
};

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void *script_conn_main(void *arg)
{
    struct script_conn *sc = arg;
    struct script_server *srv = sc->srv;
    int fd = sc->fd;
    free(sc);
    char buf[8192];
    size_t len = 0;
    for (;;) {
        char *end = NULL;
        while ((end = strstr(buf, "\r\n\r\n")) == NULL || len == 0) {
            if (len + 1 >= sizeof(buf)) {
                goto out;
            }
            ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
            if (n <= 0) {
                goto out;
            }
            len += (size_t)n;
            buf[len] = '\0';
        }
        size_t req_len = (size_t)(end + 4 - buf); /* requests here carry no body */
        const struct script_route *route = NULL;
        for (size_t i = 0; i < srv->n_routes; i++) {
            if (strncmp(buf, srv->routes[i].request, strlen(srv->routes[i].request)) == 0) {
                route = &srv->routes[i];
                atomic_fetch_add(&srv->hits[i], 1);
                break;
            }
        }
        memmove(buf, buf + req_len, len - req_len + 1);
        len -= req_len;
        if (route == NULL || route->status == NULL) {
            goto out;
        }
        size_t body_len = route->body != NULL ? strlen(route->body) : route->big_body;
        char head[1024];
        int h = snprintf(head, sizeof(head),
                         "HTTP/1.1 %s\r\nContent-Type: application/json;charset=UTF-8\r\n"
                         "Content-Length: %zu\r\n%s\r\n",
                         route->status, body_len, route->headers != NULL ? route->headers : "");
        if (!send_all(fd, head, (size_t)h)) {
            goto out;
        }
        if (route->body != NULL) {
            if (!send_all(fd, route->body, body_len)) {
                goto out;
            }
        } else {
            static char chunk[65536];
            memset(chunk, 'x', sizeof(chunk));
            for (size_t sent = 0; sent < body_len; sent += sizeof(chunk)) {
                size_t k = body_len - sent < sizeof(chunk) ? body_len - sent : sizeof(chunk);
                if (!send_all(fd, chunk, k)) {
                    goto out;
                }
            }
        }
    }
out:
    close(fd);
    return NULL;
}

static void *script_accept_main(void *arg)
{
    struct script_server *srv = arg;
    while (!atomic_load(&srv->stop)) {
        struct pollfd pfd = {srv->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(srv->listen_fd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        atomic_fetch_add(&srv->connections, 1);
        struct script_conn *sc = malloc(sizeof(*sc));
        pthread_t t;
        if (sc == NULL) {
            close(fd);
            continue;
        }
        sc->srv = srv;
        sc->fd = fd;
        if (pthread_create(&t, NULL, script_conn_main, sc) != 0) {
            close(fd);
            free(sc);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static void script_start(struct script_server *srv, const struct script_route *routes, size_t n)
{
    cr_assert_leq(n, SCRIPT_MAX_ROUTES);
    memset(srv, 0, sizeof(*srv));
    srv->routes = routes;
    srv->n_routes = n;
    srv->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(srv->listen_fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(srv->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(srv->listen_fd, 16), 0);
    socklen_t alen = sizeof(a);
    cr_assert_eq(getsockname(srv->listen_fd, (struct sockaddr *)&a, &alen), 0);
    srv->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&srv->thread, NULL, script_accept_main, srv), 0);
    snprintf(g_base, sizeof(g_base), "http://127.0.0.1:%d", srv->port);
}

static void script_stop(struct script_server *srv)
{
    atomic_store(&srv->stop, true);
    pthread_join(srv->thread, NULL);
    close(srv->listen_fd);
}

static int script_hits(struct script_server *srv, const char *request)
{
    for (size_t i = 0; i < srv->n_routes; i++) {
        if (strcmp(srv->routes[i].request, request) == 0) {
            return atomic_load(&srv->hits[i]);
        }
    }
    cr_assert_fail("no route %s", request);
    return -1;
}

#define MSG_1007                                                                                   \
    "Timeout waiting for response from backend server. Send status unknown; execution status "     \
    "unknown."

static const struct script_route edge_routes[] = {
    {"GET /api/v3/ping ", "200 OK", "x-mbx-used-weight-1m: 7\r\nx-mbx-used-weight: 999\r\n", "{}",
     0},
    {"POST /api/v3/order ", NULL, NULL, NULL, 0},
    {"GET /code-in-2xx ", "200 OK", NULL, "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}", 0},
    {"GET /not-json ", "200 OK", NULL, "<html>hello</html>", 0},
    {"POST /not-json ", "200 OK", NULL, "<html>hello</html>", 0},
    {"GET /waf ", "403 Forbidden", NULL, "<html>blocked</html>", 0},
    {"GET /big ", "200 OK", NULL, NULL, ((size_t)16 << 20) + 4096},
    {"GET /1007 ", "408 Request Timeout", NULL, "{\"code\":-1007,\"msg\":\"" MSG_1007 "\"}", 0},
    {"POST /1007 ", "408 Request Timeout", NULL, "{\"code\":-1007,\"msg\":\"" MSG_1007 "\"}", 0},
    {"GET /429 ", "429 Too Many Requests", NULL, "{\"code\":-1003,\"msg\":\"Too much.\"}", 0},
    {"GET /418 ", "418 I'm a teapot", NULL, "{\"code\":-1003,\"msg\":\"Way too much.\"}", 0},
    {"POST /orders-429 ", "429 Too Many Requests", "Retry-After: 7\r\n",
     "{\"code\":-1015,\"msg\":\"Too many new orders; current limit is 10 orders per 10 "
     "SECOND.\"}",
     0},
    {"DELETE /orders-429 ", "200 OK", NULL, "{\"status\":\"CANCELED\"}", 0},
    {"POST /5xx ", "503 Service Unavailable", NULL, "{\"code\":-1000,\"msg\":\"busy\"}", 0},
};

static struct cq_rest_client *script_client(void)
{
    struct cq_rest_options o = opts_default();
    o.max_retries = 2;
    return client_new(&o);
}

static void simple(struct cq_rest_client *c, const char *method, const char *path, bool is_order,
                   struct cq_rest_response *r)
{
    if (is_order) {
        ord(c, method, path, NULL, CQ_SEC_NONE, 1, r);
    } else {
        req(c, method, path, NULL, CQ_SEC_NONE, 1, r);
    }
}

Test(rest_client, order_on_a_dying_keepalive_connection_is_not_resent, .init = setup_no_sim,
     .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, edge_routes, CQ_ARRAY_LEN(edge_routes));
    struct cq_rest_client *c = script_client();
    struct cq_rest_response r;
    simple(c, "GET", "/api/v3/ping", false, &r); /* leaves a kept-alive connection */
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).used_weight_1m, 7,
                 "header names are case-insensitive; the "
                 "legacy x-mbx-used-weight is not the 1M one");

    /* the server reads the order and drops the connection without a byte:
     * libcurl would silently resend on a reused connection; we must not */
    simple(c, "POST", "/api/v3/order", true, &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    cq_time_sleep_ms(50);
    cr_expect_eq(script_hits(&srv, "POST /api/v3/order "), 1, "the order went out exactly once");
    cr_expect_eq(budget(c).unknown_total, 1);

    /* the next safe request still works (a fresh connection if needed) */
    simple(c, "GET", "/api/v3/ping", false, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);
    script_stop(&srv);
}

/* The order connection is opened ahead (after each order, off the next
 * one's path) and handed to curl as a fresh connection: the next order
 * makes no connection of its own, is still never resent when the server
 * drops it, and a spare too old is closed unused (the order connects). */
static const struct script_route spare_routes[] = {
    {"POST /api/v3/order ", "200 OK", NULL, "{\"status\":\"FILLED\"}", 0},
    {"POST /drop ", NULL, NULL, NULL, 0},
};

static void wait_connections(struct script_server *srv, int want)
{
    for (int i = 0; i < 500 && atomic_load(&srv->connections) < want; i++) {
        cq_time_sleep_ms(10);
    }
    cr_assert_eq(atomic_load(&srv->connections), want, "connections accepted");
}

Test(rest_client, order_connection_opened_ahead_never_resent, .init = setup_no_sim,
     .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, spare_routes, CQ_ARRAY_LEN(spare_routes));
    struct fake_clock fc = FAKE_CLOCK_INIT(1000, cq_time_wall_us());
    struct cq_clock clock = fake_clock_as_clock(&fc);
    struct cq_rest_options o = opts_default();
    o.clock = &clock;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;

    simple(c, "POST", "/api/v3/order", true, &r); /* connects; then opens the spare */
    expect_ok(&r);
    cr_expect_gt(r.sent_mono_us, 0, "the request's write is stamped");
    cq_rest_response_fini(&r);
    wait_connections(&srv, 2);
    cr_expect_eq(budget(c).order_spares_used_total, 0);

    simple(c, "POST", "/api/v3/order", true, &r); /* on the spare; opens the next */
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).order_spares_used_total, 1);
    wait_connections(&srv, 3);
    cr_expect_eq(script_hits(&srv, "POST /api/v3/order "), 2);

    /* dropped without a byte on the spare: unknown, sent exactly once */
    simple(c, "POST", "/drop", true, &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).order_spares_used_total, 2);
    wait_connections(&srv, 4);
    cq_time_sleep_ms(50);
    cr_expect_eq(script_hits(&srv, "POST /drop "), 1, "the order went out exactly once");

    /* a spare older than 20 s is closed unused; the order connects itself */
    fake_clock_advance_ms(&fc, 20001);
    simple(c, "POST", "/api/v3/order", true, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_eq(budget(c).order_spares_used_total, 2);
    cr_expect_eq(budget(c).order_spares_discarded_total, 1);
    wait_connections(&srv, 6); /* its own connection, then the next spare */
    cr_expect_eq(script_hits(&srv, "POST /api/v3/order "), 3);

    cq_rest_client_free(c);
    script_stop(&srv);
}

Test(rest_client, malformed_answers, .init = setup_no_sim, .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, edge_routes, CQ_ARRAY_LEN(edge_routes));
    struct cq_rest_client *c = script_client();
    struct cq_rest_response r;

    simple(c, "GET", "/code-in-2xx", false, &r);
    cr_expect_eq(r.status, CQ_REST_BAD_RESPONSE, "a 2xx with a non-zero code is not OK");
    cr_expect_eq(r.http_status, 200);
    cr_expect_eq(r.code, -1121);
    cr_expect_str_eq(r.msg, "Invalid symbol.");
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);

    simple(c, "GET", "/not-json", false, &r);
    cr_expect_eq(r.status, CQ_REST_BAD_RESPONSE);
    cr_expect_eq(r.attempts, 1);
    cr_expect_null(r.body);
    cq_rest_response_fini(&r);

    simple(c, "POST", "/not-json", true, &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "an order's unreadable 2xx may have executed");
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);

    simple(c, "GET", "/waf", false, &r);
    cr_expect_eq(r.status, CQ_REST_BAD_RESPONSE, "a 4xx without code/msg");
    cr_expect_eq(r.http_status, 403);
    cq_rest_response_fini(&r);

    simple(c, "GET", "/big", false, &r);
    cr_expect_eq(r.status, CQ_REST_BAD_RESPONSE);
    cr_expect(strstr(r.msg, "larger than") != NULL, "%s", r.msg);
    cr_expect_eq(r.attempts, 1);
    cq_rest_response_fini(&r);

    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.errors_total, 4);
    cr_expect_eq(b.unknown_total, 1);
    cr_expect_eq(b.retries_total, 0);
    cq_rest_client_free(c);
    script_stop(&srv);
}

Test(rest_client, code_1007_retried_for_gets_unknown_for_orders, .init = setup_no_sim,
     .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, edge_routes, CQ_ARRAY_LEN(edge_routes));
    struct cq_rest_client *c = script_client();
    struct cq_rest_response r;
    simple(c, "GET", "/1007", false, &r);
    cr_expect_eq(r.status, CQ_REST_NETWORK);
    cr_expect_eq(r.attempts, 3);
    cr_expect_eq(r.code, -1007);
    cr_expect_str_eq(r.msg, MSG_1007);
    cq_rest_response_fini(&r);
    simple(c, "POST", "/1007", true, &r);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN);
    cr_expect_eq(r.attempts, 1);
    cr_expect_eq(r.code, -1007);
    cq_rest_response_fini(&r);
    cq_time_sleep_ms(20);
    cr_expect_eq(script_hits(&srv, "GET /1007 "), 3);
    cr_expect_eq(script_hits(&srv, "POST /1007 "), 1);
    cq_rest_client_free(c);
    script_stop(&srv);
}

/* The same POST answered 503: the safe door retries it (max_retries), the
 * order door sends it once and says UNKNOWN. Which happens is decided by
 * the function called, not by an argument. */
Test(rest_client, post_5xx_retried_by_the_safe_door_never_by_the_order_door, .init = setup_no_sim,
     .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, edge_routes, CQ_ARRAY_LEN(edge_routes));
    struct cq_rest_client *c = script_client();
    struct cq_rest_response r;
    cr_assert_eq(cq_rest_call(c, "POST", "/5xx", NULL, CQ_SEC_NONE, 1, &r), 0);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 3, "max_retries 2: three sends");
    cr_expect_eq(r.http_status, 503);
    cq_rest_response_fini(&r);
    cr_assert_eq(cq_rest_order_send(c, "POST", "/5xx", NULL, CQ_SEC_NONE, 1, &r), 0);
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1);
    cr_expect_eq(r.http_status, 503);
    cq_rest_response_fini(&r);
    cq_time_sleep_ms(20);
    cr_expect_eq(script_hits(&srv, "POST /5xx "), 4, "3 safe sends + 1 order send");
    struct cq_rest_budget b = budget(c);
    cr_expect_eq(b.unknown_total, 1);
    cr_expect_eq(b.retries_total, 2);
    cq_rest_client_free(c);
    script_stop(&srv);
}

Test(rest_client, retry_after_defaults_and_order_only_429, .init = setup_no_sim, .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, edge_routes, CQ_ARRAY_LEN(edge_routes));
    struct cq_rest_response r;

    struct cq_rest_client *c = script_client();
    simple(c, "GET", "/429", false, &r);
    cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
    cr_expect_eq(r.retry_after_ms, 60000, "no Retry-After: 60 s");
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);

    c = script_client();
    simple(c, "GET", "/418", false, &r);
    cr_expect_eq(r.status, CQ_REST_BANNED);
    cr_expect_eq(r.retry_after_ms, 120000, "no Retry-After: Binance's shortest ban");
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);

    /* -1015 holds back new orders only; cancels and queries still go out */
    c = script_client();
    simple(c, "POST", "/orders-429", true, &r);
    cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
    cr_expect_eq(r.code, -1015);
    cr_expect_eq(r.retry_after_ms, 7000);
    cq_rest_response_fini(&r);
    simple(c, "POST", "/orders-429", true, &r);
    cr_expect_eq(r.status, CQ_REST_RATE_LIMITED);
    cr_expect_eq(r.attempts, 0);
    cq_rest_response_fini(&r);
    simple(c, "DELETE", "/orders-429", true, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    simple(c, "GET", "/api/v3/ping", false, &r);
    expect_ok(&r);
    cq_rest_response_fini(&r);
    cr_expect_gt(budget(c).rate_limited_for_ms, 0);
    cq_time_sleep_ms(20);
    cr_expect_eq(script_hits(&srv, "POST /orders-429 "), 1);
    cq_rest_client_free(c);
    script_stop(&srv);
}

/* "Retry-After: 0" (a proxy, a misconfigured gateway) must still hold
 * requests back: CQ_REST_RETRY_AFTER_MIN_MS on the injected clock, exact
 * at the boundary; a Retry-After of exactly the floor is kept as is. */
static const struct script_route zero_retry_routes[] = {
    {"GET /429-zero ", "429 Too Many Requests", "Retry-After: 0\r\n",
     "{\"code\":-1003,\"msg\":\"Too much.\"}", 0},
    {"GET /418-zero ", "418 I'm a teapot", "Retry-After: 0\r\n",
     "{\"code\":-1003,\"msg\":\"Way too much.\"}", 0},
    {"GET /429-one ", "429 Too Many Requests", "Retry-After: 1\r\n",
     "{\"code\":-1003,\"msg\":\"Too much.\"}", 0},
};

static void expect_floor_holds(const char *path, enum cq_rest_status status, int64_t expect_wait)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000, cq_time_wall_us());
    struct cq_clock clock = fake_clock_as_clock(&fc);
    struct cq_rest_options o = opts_default();
    o.clock = &clock;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    simple(c, "GET", path, false, &r);
    cr_expect_eq(r.status, status, "%s: %s", path, cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1);
    cr_expect_eq(r.retry_after_ms, expect_wait, "%s: retry_after_ms %lld", path,
                 (long long)r.retry_after_ms);
    cq_rest_response_fini(&r);

    fake_clock_advance_ms(&fc, expect_wait - 1);
    simple(c, "GET", path, false, &r);
    cr_expect_eq(r.status, status, "%s: still held back 1 ms before the floor", path);
    cr_expect_eq(r.attempts, 0, "%s: nothing sent 1 ms before the floor", path);
    cr_expect_eq(r.retry_after_ms, 1);
    cq_rest_response_fini(&r);

    fake_clock_advance_ms(&fc, 1);
    simple(c, "GET", path, false, &r);
    cr_expect_eq(r.attempts, 1, "%s: sent again once the floor has passed", path);
    cq_rest_response_fini(&r);
    cq_rest_client_free(c);
}

Test(rest_client, retry_after_zero_is_raised_to_the_floor, .init = setup_no_sim, .fini = teardown)
{
    struct script_server srv;
    script_start(&srv, zero_retry_routes, CQ_ARRAY_LEN(zero_retry_routes));
    expect_floor_holds("/429-zero", CQ_REST_RATE_LIMITED, CQ_REST_RETRY_AFTER_MIN_MS);
    expect_floor_holds("/418-zero", CQ_REST_BANNED, CQ_REST_RETRY_AFTER_MIN_MS);
    cr_assert_eq(CQ_REST_RETRY_AFTER_MIN_MS, 1000, "the /429-one row assumes a 1 s floor");
    expect_floor_holds("/429-one", CQ_REST_RATE_LIMITED, 1000);
    cq_time_sleep_ms(20);
    cr_expect_eq(script_hits(&srv, "GET /429-zero "), 2, "the held-back call sent nothing");
    cr_expect_eq(script_hits(&srv, "GET /418-zero "), 2);
    script_stop(&srv);
}

/* ---- abort (a stop request cuts a call in flight) ---------------------------------------- */

struct abort_later {
    atomic_bool *flag;
    int after_ms;
};

static void *set_abort_later(void *arg)
{
    struct abort_later *a = arg;
    cq_time_sleep_ms(a->after_ms);
    atomic_store(a->flag, true);
    return NULL;
}

/* feeder_slow_rest found it: the trader sat in a 20 s REST call through the
 * whole 5 s stop budget. With cq_rest_options.abort set, the call ends soon
 * after the flag: a GET as NETWORK without a retry, an order as UNKNOWN. */
Test(rest_client, abort_cuts_a_slow_call_short_without_retrying, .init = setup_default,
     .fini = teardown)
{
    atomic_bool flag = false;
    struct cq_rest_options o = opts_default();
    o.total_timeout_ms = 20000;
    o.max_retries = 3;
    o.abort = &flag;
    struct cq_rest_client *c = client_new(&o);
    struct cq_rest_response r;
    sim_ctl("/_sim/rest/latency?ms=15000");

    struct abort_later al = {&flag, 300};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, set_abort_later, &al), 0);
    int64_t t0 = cq_time_mono_ms();
    get_time(c, &r);
    int64_t took = cq_time_mono_ms() - t0;
    pthread_join(th, NULL);
    cr_expect_eq(r.status, CQ_REST_NETWORK, "%s", cq_rest_status_name(r.status));
    cr_expect_eq(r.attempts, 1, "no retry after an abort");
    cr_expect_lt(took, 10000, "the call ended %lld ms after it started", (long long)took);
    cq_rest_response_fini(&r);

    /* still aborted: an order's fate is unsure, so UNKNOWN, at once */
    t0 = cq_time_mono_ms();
    place_order(c, "cq-abort-order", &r);
    took = cq_time_mono_ms() - t0;
    cr_expect_eq(r.status, CQ_REST_UNKNOWN, "%s", cq_rest_status_name(r.status));
    cr_expect_lt(took, 10000, "the order call ended %lld ms after it started", (long long)took);
    cq_rest_response_fini(&r);
    sim_ctl("/_sim/rest/latency?ms=0");
    cq_rest_client_free(c);
}
