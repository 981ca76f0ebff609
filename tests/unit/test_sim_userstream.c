/*
 * test_sim_userstream.c — coinquant-simex's user data stream end to end,
 * the way a client uses it (BINANCE_PROTOCOL.md §5): a simulator started
 * through the public API only (include/cq/sim.h), then nothing but real
 * sockets. libcurl drives REST (listenKey lifecycle, signed orders, cancels,
 * account); a libwebsockets client with its own context and service thread
 * listens on ws://…/ws/<listenKey>. Every event is parsed with jansson and
 * checked field by field, JSON types included, against the REST answers of
 * the requests that caused it.
 *
 * Each Criterion test runs in its own process with its own simulator.
 * Every wait is bounded; a timeout fails with what was expected and what
 * arrived.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libwebsockets.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "support/ws_tclient.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define SYMBOL "BTCUSDT"
#define WAIT_MS 10000       /* any one event, connection or close */
#define MAKER_WAIT_MS 20000 /* the market trading through a resting order */

/* ---- time ------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the simulator under test ------------------------------------------------ */

static struct cq_sim *g_sim;
static char g_rest[128];
static int g_ws_port;
static char g_data_path[64]; /* a market file this test wrote; "" = synthetic walk */

static void start_sim(uint32_t speed, uint64_t seed)
{
    static const char *const symbols[] = {SYMBOL};
    struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=1", balances, 4, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .rest_port = 0,
        .ws_port = 0,
        .symbols = symbols,
        .n_symbols = CQ_ARRAY_LEN(symbols),
        .speed = speed,
        .seed = seed,
        .data_path = g_data_path[0] != '\0' ? g_data_path : NULL,
        .balances = balances,
        .n_balances = n_balances,
        .maker_bps = 10,
        .taker_bps = 10,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_rest, cq_sim_rest_url(g_sim), sizeof g_rest);
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon, "ws url %s", cq_sim_ws_url(g_sim));
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
    cr_assert_gt(g_ws_port, 0, "ws url %s", cq_sim_ws_url(g_sim));
}

static void teardown(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
    if (g_data_path[0] != '\0') {
        (void)unlink(g_data_path);
        g_data_path[0] = '\0';
    }
}

/* ---- REST over libcurl ----------------------------------------------------------- */

struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json; /* owned; NULL if the body is not JSON */
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
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

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* One request. query/body NULL = none; key NULL = no X-MBX-APIKEY header. */
static struct resp http(const char *method, const char *path, const char *query, const char *body,
                        const char *key)
{
    struct resp r = {0};
    char url[8192];
    bool has_q = query != NULL && query[0] != '\0';
    int n =
        snprintf(url, sizeof url, "%s%s%s%s", g_rest, path, has_q ? "?" : "", has_q ? query : "");
    cr_assert(n > 0 && (size_t)n < sizeof url, "URL too long");
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = NULL;
    char kh[256];
    if (key != NULL) {
        snprintf(kh, sizeof kh, "X-MBX-APIKEY: %s", key);
        h = curl_slist_append(h, kh);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "POST") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body != NULL ? strlen(body) : 0));
        }
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body != NULL) {
        r.json = json_loadb(r.body, r.len, 0, NULL);
    }
    return r;
}

/* A signed request as ccxt sends it (§0): GET/DELETE with everything in the
 * query, POST/PUT with everything in a form body; timestamp, then the
 * signature over query + body (§2). */
static struct resp signed_req(const char *method, const char *path, const char *params)
{
    char payload[4096], sig[CQ_SIGN_HEX_LEN + 1], full[4200];
    int n = snprintf(payload, sizeof payload, "%s%stimestamp=%" PRId64, params,
                     params[0] != '\0' ? "&" : "", wall_ms());
    cr_assert(n > 0 && (size_t)n < sizeof payload);
    bool in_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    cr_assert_eq(cq_sign_hmac_sha256_hex(SECRET, strlen(SECRET), in_body ? "" : payload,
                                         in_body ? 0 : strlen(payload), in_body ? payload : "",
                                         in_body ? strlen(payload) : 0, sig),
                 0);
    snprintf(full, sizeof full, "%s&signature=%s", payload, sig);
    return http(method, path, in_body ? NULL : full, in_body ? full : NULL, KEY);
}

static void expect_ok(const struct resp *r, const char *what)
{
    cr_assert_eq(r->status, 200, "%s: HTTP %ld: %s", what, r->status, r->body ? r->body : "");
    cr_assert_not_null(r->json, "%s: not JSON: %s", what, r->body ? r->body : "");
    cr_assert_null(json_object_get(r->json, "code"), "%s: a success body has no code: %s", what,
                   r->body);
}

static void expect_error(const struct resp *r, long status, int code, const char *msg,
                         const char *what)
{
    cr_assert_not_null(r->json, "%s: not JSON (HTTP %ld): %s", what, r->status,
                       r->body ? r->body : "");
    cr_expect_eq(r->status, status, "%s: HTTP %ld, want %ld: %s", what, r->status, status, r->body);
    cr_expect(json_is_integer(json_object_get(r->json, "code")), "%s: code: %s", what, r->body);
    cr_expect_eq(json_integer_value(json_object_get(r->json, "code")), code, "%s: code: %s", what,
                 r->body);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "msg")), msg, "%s: %s", what,
                     r->body);
}

/* ---- JSON and decimals ----------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k, const char *what)
{
    const json_t *v = json_object_get(o, k);
    cr_assert(json_is_string(v), "%s: \"%s\" is not a string", what, k);
    return json_string_value(v);
}

static json_int_t jint(const json_t *o, const char *k, const char *what)
{
    const json_t *v = json_object_get(o, k);
    cr_assert(json_is_integer(v), "%s: \"%s\" is not an integer", what, k);
    return json_integer_value(v);
}

static bool jbool(const json_t *o, const char *k, const char *what)
{
    const json_t *v = json_object_get(o, k);
    cr_assert(json_is_boolean(v), "%s: \"%s\" is not a boolean", what, k);
    return json_is_true(v);
}

/* A Binance decimal string: digits, a point, exactly 8 digits. */
static bool is_dec8(const char *s)
{
    const char *dot = strchr(s, '.');
    if (dot == NULL || dot == s || strlen(dot + 1) != 8) {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (p != dot && (*p < '0' || *p > '9')) {
            return false;
        }
    }
    return true;
}

/* The string at k, required to be an 8-decimal string. */
static const char *jdec8(const json_t *o, const char *k, const char *what)
{
    const char *s = jstr(o, k, what);
    cr_assert(is_dec8(s), "%s: \"%s\" is \"%s\", not an 8-decimal string", what, k, s);
    return s;
}

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "\"%s\" is not a decimal", s);
    return d;
}

/* d as Binance prints it: exactly 8 decimals (d must fit them exactly). */
static const char *fmt8(cq_dec d, char buf[CQ_DEC_STR_MAX])
{
    cr_assert_eq(cq_dec_format_scale(d, 8, CQ_ROUND_EXACT, buf, CQ_DEC_STR_MAX), 0,
                 "cannot print with 8 decimals");
    return buf;
}

static cq_dec dadd(cq_dec a, cq_dec b)
{
    cq_dec r;
    cr_assert_eq(cq_dec_add(a, b, &r), 0);
    return r;
}

static cq_dec dsub(cq_dec a, cq_dec b)
{
    cq_dec r;
    cr_assert_eq(cq_dec_sub(a, b, &r), 0);
    return r;
}

static cq_dec dmul8(cq_dec a, cq_dec b, enum cq_dec_round mode)
{
    cq_dec r;
    cr_assert_eq(cq_dec_mul(a, b, 8, mode, &r), 0);
    return r;
}

static void expect_dec_eq(const char *got, cq_dec want, const char *what)
{
    char w[CQ_DEC_STR_MAX];
    cr_expect_str_eq(got, fmt8(want, w), "%s: got %s, want %s", what, got, w);
}

/* The next event, which must arrive within WAIT_MS. */
static json_t *tc_next(struct tclient *tc, size_t *cursor, const char *what)
{
    json_t *v = tc_try_next(tc, cursor, WAIT_MS);
    if (v == NULL) {
        char last[512];
        tc_last(tc, last, sizeof last);
        cr_assert_fail("no %s within %d ms on the user data stream (%s; %zu messages so far, "
                       "the last: %s)",
                       what, WAIT_MS, tc_is_closed(tc) ? "connection closed" : "connection open",
                       tc_count(tc), last);
    }
    return v;
}

/* ---- user data stream events ------------------------------------------------- */

/* Binance's executionReport keys, in order (§5); "W" only once the order has
 * been on the book. */
static const char *const exec_keys[] = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g",
                                        "C", "x", "X", "r", "i", "l", "z", "L", "n", "N", "T", "t",
                                        "I", "w", "m", "M", "O", "Z", "Y", "Q", "W", "V"};

/* What one executionReport must say. NULL strings / negative times are not
 * checked here (the caller checks them). */
struct want_exec {
    const char *c, *C, *S, *o, *f, *q, *p, *x, *X, *l, *z, *L, *n, *N, *Z, *Y, *Q, *V;
    json_int_t i, t, O, W; /* W < 0: "W" must be absent */
    bool w, m;
};

/* Check the shape of any executionReport (every key present, in order,
 * with its JSON type) and then the values in want. *last_exec_id grows. */
static void check_exec(const json_t *ev, const struct want_exec *w, int64_t *last_exec_id,
                       const char *what)
{
    char *text = json_dumps(ev, JSON_COMPACT);
    cr_assert_str_eq(jstr(ev, "e", what), "executionReport", "%s: %s", what, text);
    bool has_w = json_object_get(ev, "W") != NULL;
    size_t n = CQ_ARRAY_LEN(exec_keys) - (has_w ? 0 : 1);
    cr_expect_eq(json_object_size(ev), n, "%s: %zu keys, want %zu: %s", what, json_object_size(ev),
                 n, text);
    size_t k = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)ev, key, v)
    {
        (void)v;
        while (k < CQ_ARRAY_LEN(exec_keys) && strcmp(exec_keys[k], "W") == 0 && !has_w) {
            k++;
        }
        cr_assert_lt(k, CQ_ARRAY_LEN(exec_keys), "%s: extra key %s: %s", what, key, text);
        cr_expect_str_eq(key, exec_keys[k], "%s: key %zu is %s, want %s: %s", what, k, key,
                         exec_keys[k], text);
        k++;
    }
    /* types */
    static const char *const ints[] = {"E", "g", "i", "T", "t", "I", "O"};
    for (size_t j = 0; j < CQ_ARRAY_LEN(ints); j++) {
        (void)jint(ev, ints[j], what);
    }
    static const char *const strs[] = {"s", "c", "S", "o", "f", "C", "x", "X", "r", "V"};
    for (size_t j = 0; j < CQ_ARRAY_LEN(strs); j++) {
        (void)jstr(ev, strs[j], what);
    }
    static const char *const decs[] = {"q", "p", "P", "F", "l", "z", "L", "Z", "Y", "Q"};
    for (size_t j = 0; j < CQ_ARRAY_LEN(decs); j++) {
        (void)jdec8(ev, decs[j], what);
    }
    static const char *const bools[] = {"w", "m", "M"};
    for (size_t j = 0; j < CQ_ARRAY_LEN(bools); j++) {
        (void)jbool(ev, bools[j], what);
    }
    /* n is "0" with no trade, else the commission with 8 decimals; N null or
     * the commission asset. */
    const json_t *N = json_object_get(ev, "N");
    cr_assert(json_is_null(N) || json_is_string(N), "%s: N is neither null nor a string", what);
    if (has_w) {
        (void)jint(ev, "W", what);
    }

    /* values every report has */
    cr_expect_str_eq(jstr(ev, "s", what), SYMBOL, "%s: s", what);
    cr_expect_str_eq(jstr(ev, "P", what), "0.00000000", "%s: P", what);
    cr_expect_str_eq(jstr(ev, "F", what), "0.00000000", "%s: F", what);
    cr_expect_eq(jint(ev, "g", what), -1, "%s: g", what);
    cr_expect_str_eq(jstr(ev, "r", what), "NONE", "%s: r", what);
    cr_expect(!jbool(ev, "M", what), "%s: M", what);
    json_int_t I = jint(ev, "I", what);
    cr_expect_gt(I, *last_exec_id, "%s: execution id I=%lld does not grow (last %lld)", what,
                 (long long)I, (long long)*last_exec_id);
    *last_exec_id = I;
    cr_expect_leq(jint(ev, "T", what), jint(ev, "E", what), "%s: T after E: %s", what, text);

    /* values of this report */
#define WANT_STR(k)                                                                                \
    do {                                                                                           \
        if (w->k != NULL) {                                                                        \
            cr_expect_str_eq(jstr(ev, #k, what), w->k, "%s: " #k " is %s, want %s: %s", what,      \
                             jstr(ev, #k, what), w->k, text);                                      \
        }                                                                                          \
    } while (0)
    WANT_STR(c);
    WANT_STR(C);
    WANT_STR(S);
    WANT_STR(o);
    WANT_STR(f);
    WANT_STR(q);
    WANT_STR(p);
    WANT_STR(x);
    WANT_STR(X);
    WANT_STR(l);
    WANT_STR(z);
    WANT_STR(L);
    WANT_STR(n);
    WANT_STR(Z);
    WANT_STR(Y);
    WANT_STR(Q);
#undef WANT_STR
    if (w->V != NULL) {
        cr_expect_str_eq(jstr(ev, "V", what), w->V,
                         "BUG: %s: V (self-trade prevention mode) is %s, but the REST answer "
                         "for the same order said selfTradePreventionMode=%s",
                         what, jstr(ev, "V", what), w->V);
    }
    if (w->N == NULL) {
        cr_expect(json_is_null(N), "%s: N is not null without a trade: %s", what, text);
    } else {
        cr_expect(json_is_string(N) && strcmp(json_string_value(N), w->N) == 0,
                  "%s: N, want %s: %s", what, w->N, text);
    }
    cr_expect_eq(jint(ev, "i", what), w->i, "%s: i is %lld, want orderId %lld", what,
                 (long long)jint(ev, "i", what), (long long)w->i);
    cr_expect_eq(jint(ev, "t", what), w->t, "%s: t is %lld, want %lld", what,
                 (long long)jint(ev, "t", what), (long long)w->t);
    if (w->O >= 0) {
        cr_expect_eq(jint(ev, "O", what), w->O, "%s: O (creation time) is %lld, want %lld", what,
                     (long long)jint(ev, "O", what), (long long)w->O);
    }
    if (w->W < 0) {
        cr_expect(!has_w, "%s: W present for an order that never rested: %s", what, text);
    } else {
        cr_expect(has_w, "%s: W (working time) missing: %s", what, text);
        if (has_w) {
            cr_expect_eq(jint(ev, "W", what), w->W, "%s: W is %lld, want %lld", what,
                         (long long)jint(ev, "W", what), (long long)w->W);
        }
    }
    cr_expect_eq(jbool(ev, "w", what), w->w, "%s: w (on the book) is %d, want %d: %s", what,
                 jbool(ev, "w", what), w->w, text);
    cr_expect_eq(jbool(ev, "m", what), w->m, "%s: m (maker) is %d, want %d: %s", what,
                 jbool(ev, "m", what), w->m, text);
    free(text);
}

/* One asset of an outboundAccountPosition. */
struct acct_entry {
    char asset[16];
    char free_s[CQ_DEC_STR_MAX], locked_s[CQ_DEC_STR_MAX];
};

/* Check an outboundAccountPosition's shape; return its entries (at most
 * max) and their count. */
static size_t check_account(const json_t *ev, struct acct_entry *out, size_t max, const char *what)
{
    char *text = json_dumps(ev, JSON_COMPACT);
    cr_assert_str_eq(jstr(ev, "e", what), "outboundAccountPosition", "%s: %s", what, text);
    static const char *const keys[] = {"e", "E", "u", "B"};
    cr_expect_eq(json_object_size(ev), CQ_ARRAY_LEN(keys), "%s: keys: %s", what, text);
    size_t k = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)ev, key, v)
    {
        (void)v;
        if (k < CQ_ARRAY_LEN(keys)) {
            cr_expect_str_eq(key, keys[k], "%s: key %zu is %s, want %s", what, k, key, keys[k]);
        }
        k++;
    }
    json_int_t E = jint(ev, "E", what);
    json_int_t u = jint(ev, "u", what);
    cr_expect_leq(u, E, "%s: u (last update) after E: %s", what, text);
    const json_t *B = json_object_get(ev, "B");
    cr_assert(json_is_array(B), "%s: B is not an array: %s", what, text);
    cr_assert_leq(json_array_size(B), max, "%s: %zu assets: %s", what, json_array_size(B), text);
    size_t i;
    const json_t *b;
    json_array_foreach(B, i, b)
    {
        cr_assert(json_is_object(b), "%s: B[%zu] is not an object", what, i);
        cr_expect_eq(json_object_size(b), 3, "%s: B[%zu] has %zu keys: %s", what, i,
                     json_object_size(b), text);
        cq_strlcpy(out[i].asset, jstr(b, "a", what), sizeof out[i].asset);
        cq_strlcpy(out[i].free_s, jdec8(b, "f", what), sizeof out[i].free_s);
        cq_strlcpy(out[i].locked_s, jdec8(b, "l", what), sizeof out[i].locked_s);
    }
    free(text);
    return json_array_size(B);
}

static const struct acct_entry *find_asset(const struct acct_entry *e, size_t n, const char *asset)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].asset, asset) == 0) {
            return &e[i];
        }
    }
    return NULL;
}

/* ---- REST helpers ------------------------------------------------------------- */

static void create_listen_key(char key[80])
{
    struct resp r = http("POST", "/api/v3/userDataStream", NULL, NULL, KEY);
    expect_ok(&r, "POST userDataStream");
    cr_assert_eq(json_object_size(r.json), 1, "POST userDataStream: %s", r.body);
    const char *k = jstr(r.json, "listenKey", "POST userDataStream");
    cr_assert_eq(strlen(k), 64, "listenKey \"%s\" is not 64 characters", k);
    for (const char *p = k; *p != '\0'; p++) {
        bool alnum =
            (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
        cr_assert(alnum, "listenKey \"%s\" has a non-alphanumeric character", k);
    }
    cq_strlcpy(key, k, 80);
    resp_free(&r);
}

/* free and locked of asset from GET /api/v3/account. */
static void account_balance(const char *asset, char free_s[CQ_DEC_STR_MAX],
                            char locked_s[CQ_DEC_STR_MAX])
{
    struct resp r = signed_req("GET", "/api/v3/account", "");
    expect_ok(&r, "GET account");
    const json_t *bal = json_object_get(r.json, "balances");
    cr_assert(json_is_array(bal), "GET account: %s", r.body);
    size_t i;
    const json_t *b;
    bool found = false;
    json_array_foreach(bal, i, b)
    {
        if (strcmp(jstr(b, "asset", "GET account"), asset) == 0) {
            cq_strlcpy(free_s, jdec8(b, "free", "GET account"), CQ_DEC_STR_MAX);
            cq_strlcpy(locked_s, jdec8(b, "locked", "GET account"), CQ_DEC_STR_MAX);
            found = true;
        }
    }
    cr_assert(found, "GET account has no %s: %s", asset, r.body);
    resp_free(&r);
}

/* Best bid from GET /api/v3/ticker/bookTicker. */
static cq_dec best_bid(void)
{
    struct resp r = http("GET", "/api/v3/ticker/bookTicker", "symbol=" SYMBOL, NULL, NULL);
    expect_ok(&r, "bookTicker");
    cq_dec bid = dec(jdec8(r.json, "bidPrice", "bookTicker"));
    cr_assert_gt(bid.m, 0, "no bid: %s", r.body);
    resp_free(&r);
    return bid;
}

/* GET /api/v3/time. */
static json_int_t server_time_ms(void)
{
    struct resp r = http("GET", "/api/v3/time", NULL, NULL, NULL);
    expect_ok(&r, "GET time");
    json_int_t t = jint(r.json, "serverTime", "GET time");
    resp_free(&r);
    return t;
}

static void control(const char *path, const char *query)
{
    struct resp r = http("POST", path, query, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s?%s: HTTP %ld %s", path, query, r.status, r.body ? r.body : "");
    resp_free(&r);
}

/* ---- the tests ------------------------------------------------------------------- */

static void setup_flow(void)
{
    start_sim(1, 42);
}

/*
 * listenKey lifecycle, a resting LIMIT BUY and its cancel, a MARKET BUY with
 * its fills, then DELETE of the key: every REST action is mirrored on the
 * stream, in the §5 order (execution reports, then the account position).
 */
Test(sim_userstream, order_flow_is_mirrored_on_the_stream, .init = setup_flow, .fini = teardown,
     .timeout = 120)
{
    /* 1. listenKey lifecycle */
    char key[80];
    create_listen_key(key);
    struct resp r = http("POST", "/api/v3/userDataStream", NULL, NULL, KEY);
    expect_ok(&r, "second POST userDataStream");
    cr_expect_str_eq(jstr(r.json, "listenKey", "second POST"), key,
                     "a second POST returns the active key");
    resp_free(&r);
    char body[128];
    snprintf(body, sizeof body, "listenKey=%s", key);
    r = http("PUT", "/api/v3/userDataStream", NULL, body, KEY);
    expect_ok(&r, "PUT userDataStream");
    cr_expect_eq(json_object_size(r.json), 0, "PUT answers {}: %s", r.body);
    resp_free(&r);
    r = http("POST", "/api/v3/userDataStream", NULL, NULL, NULL);
    expect_error(&r, 401, -2014, "API-key format invalid.", "POST userDataStream without a key");
    resp_free(&r);
    r = http("PUT", "/api/v3/userDataStream", NULL,
             "listenKey=0000000000000000000000000000000000000000000000000000000000000000", KEY);
    expect_error(&r, 400, -1125, "This listenKey does not exist.", "PUT unknown listenKey");
    resp_free(&r);

    /* 2. the stream */
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", key);
    struct tclient *tc = tc_open(g_ws_port, path);
    cr_assert(tc_wait_established(tc, WAIT_MS), "ws %s not established within %d ms", path,
              WAIT_MS);
    size_t cursor = 0;
    int64_t exec_id = 0;
    char buf[CQ_DEC_STR_MAX], buf2[CQ_DEC_STR_MAX];

    /* 3. a LIMIT GTC BUY far below the market rests */
    cq_dec bid = best_bid();
    cq_dec price; /* 70 % of the bid, a whole number of USDT: far from any fill */
    cr_assert_eq(cq_dec_quantize(dmul8(bid, cq_dec_make(7, 1), CQ_ROUND_DOWN), cq_dec_make(1, 0),
                                 CQ_ROUND_DOWN, &price),
                 0);
    cq_dec qty = cq_dec_make(1, 3); /* 0.001 */
    cq_dec lock = dmul8(qty, price, CQ_ROUND_EXACT);
    char params[512];
    snprintf(params, sizeof params,
             "symbol=" SYMBOL "&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s"
             "&newClientOrderId=us-limit-1",
             cq_dec_format(price, buf, sizeof buf));
    r = signed_req("POST", "/api/v3/order", params);
    expect_ok(&r, "LIMIT BUY");
    cr_assert_str_eq(jstr(r.json, "status", "LIMIT BUY"), "NEW", "%s", r.body);
    json_int_t limit_id = jint(r.json, "orderId", "LIMIT BUY");
    json_int_t limit_time = jint(r.json, "transactTime", "LIMIT BUY");
    json_int_t limit_working = jint(r.json, "workingTime", "LIMIT BUY");
    char limit_cid[64], stp[32];
    cq_strlcpy(limit_cid, jstr(r.json, "clientOrderId", "LIMIT BUY"), sizeof limit_cid);
    cq_strlcpy(stp, jstr(r.json, "selfTradePreventionMode", "LIMIT BUY"), sizeof stp);
    cr_expect_str_eq(limit_cid, "us-limit-1");
    resp_free(&r);

    char p8[CQ_DEC_STR_MAX];
    fmt8(price, p8);
    json_t *ev = tc_next(tc, &cursor, "executionReport NEW for the LIMIT BUY");
    struct want_exec w = {
        .c = limit_cid,
        .C = "",
        .S = "BUY",
        .o = "LIMIT",
        .f = "GTC",
        .q = "0.00100000",
        .p = p8,
        .x = "NEW",
        .X = "NEW",
        .l = "0.00000000",
        .z = "0.00000000",
        .L = "0.00000000",
        .n = "0",
        .N = NULL,
        .Z = "0.00000000",
        .Y = "0.00000000",
        .Q = "0.00000000",
        .V = stp,
        .i = limit_id,
        .t = -1,
        .O = limit_time,
        .W = limit_working,
        .w = true,
        .m = false,
    };
    check_exec(ev, &w, &exec_id, "LIMIT NEW");
    cr_expect_eq(jint(ev, "T", "LIMIT NEW"), limit_time, "LIMIT NEW: T = transactTime");
    json_decref(ev);

    struct acct_entry acct[8];
    ev = tc_next(tc, &cursor, "outboundAccountPosition after the LIMIT BUY");
    size_t n_acct = check_account(ev, acct, 8, "account after LIMIT");
    json_decref(ev);
    cr_expect_eq(n_acct, 1, "only USDT changed");
    const struct acct_entry *usdt = find_asset(acct, n_acct, "USDT");
    cr_assert_not_null(usdt, "USDT missing from the account position");
    expect_dec_eq(usdt->free_s, dsub(cq_dec_make(10000, 0), lock), "USDT free after LIMIT");
    expect_dec_eq(usdt->locked_s, lock, "USDT locked after LIMIT");

    /* 4. cancel it: the report carries the cancel's id in c, the order's in C */
    char q[256];
    snprintf(q, sizeof q, "symbol=" SYMBOL "&orderId=%lld", (long long)limit_id);
    r = signed_req("DELETE", "/api/v3/order", q);
    expect_ok(&r, "DELETE order");
    cr_assert_str_eq(jstr(r.json, "status", "DELETE order"), "CANCELED", "%s", r.body);
    cr_expect_str_eq(jstr(r.json, "origClientOrderId", "DELETE order"), limit_cid);
    char cancel_cid[64];
    cq_strlcpy(cancel_cid, jstr(r.json, "clientOrderId", "DELETE order"), sizeof cancel_cid);
    cr_expect_str_neq(cancel_cid, limit_cid, "a cancel gets its own client id");
    json_int_t cancel_time = jint(r.json, "transactTime", "DELETE order");
    const char *cancel_stp = jstr(r.json, "selfTradePreventionMode", "DELETE order");
    cr_expect_str_eq(cancel_stp, stp,
                     "BUG: the cancel response's selfTradePreventionMode differs from the "
                     "order's (POST said %s, DELETE says %s)",
                     stp, cancel_stp);
    resp_free(&r);

    ev = tc_next(tc, &cursor, "executionReport CANCELED");
    w.c = cancel_cid;
    w.C = limit_cid;
    w.x = "CANCELED";
    w.X = "CANCELED";
    w.w = false;
    check_exec(ev, &w, &exec_id, "CANCELED");
    cr_expect_eq(jint(ev, "T", "CANCELED"), cancel_time, "CANCELED: T = the cancel's transactTime");
    json_decref(ev);

    ev = tc_next(tc, &cursor, "outboundAccountPosition after the cancel");
    n_acct = check_account(ev, acct, 8, "account after cancel");
    json_decref(ev);
    cr_expect_eq(n_acct, 1, "only USDT changed");
    usdt = find_asset(acct, n_acct, "USDT");
    cr_assert_not_null(usdt, "USDT missing from the account position");
    cr_expect_str_eq(usdt->free_s, "10000.00000000");
    cr_expect_str_eq(usdt->locked_s, "0.00000000");

    /* 5. a MARKET BUY: NEW, one TRADE per fill (as in the FULL response), the
     * last one FILLED, then BTC and USDT */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=" SYMBOL
                   "&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=us-mkt-1");
    expect_ok(&r, "MARKET BUY");
    json_t *mkt = json_incref(r.json);
    resp_free(&r);
    cr_assert_str_eq(jstr(mkt, "status", "MARKET BUY"), "FILLED");
    json_int_t mkt_id = jint(mkt, "orderId", "MARKET BUY");
    json_int_t mkt_time = jint(mkt, "transactTime", "MARKET BUY");
    const json_t *fills = json_object_get(mkt, "fills");
    cr_assert(json_is_array(fills) && json_array_size(fills) >= 1, "MARKET BUY fills");
    size_t n_fills = json_array_size(fills);
    const char *mkt_stp = jstr(mkt, "selfTradePreventionMode", "MARKET BUY");

    ev = tc_next(tc, &cursor, "executionReport NEW for the MARKET BUY");
    w = (struct want_exec){
        .c = "us-mkt-1",
        .C = "",
        .S = "BUY",
        .o = "MARKET",
        .f = "GTC",
        .q = "0.01000000",
        .p = "0.00000000",
        .x = "NEW",
        .X = "NEW",
        .l = "0.00000000",
        .z = "0.00000000",
        .L = "0.00000000",
        .n = "0",
        .N = NULL,
        .Z = "0.00000000",
        .Y = "0.00000000",
        .Q = "0.00000000",
        .V = mkt_stp,
        .i = mkt_id,
        .t = -1,
        .O = mkt_time,
        .W = -1,
        .w = false,
        .m = false,
    };
    check_exec(ev, &w, &exec_id, "MARKET NEW");
    cr_expect_eq(jint(ev, "T", "MARKET NEW"), mkt_time);
    json_decref(ev);

    cq_dec cum_qty = cq_dec_make(0, 8), cum_quote = cq_dec_make(0, 8);
    cq_dec btc_net = cq_dec_make(0, 8);
    for (size_t k = 0; k < n_fills; k++) {
        const json_t *f = json_array_get(fills, k);
        char what[64];
        snprintf(what, sizeof what, "MARKET TRADE %zu/%zu", k + 1, n_fills);
        const char *fp = jdec8(f, "price", "fill");
        const char *fq = jdec8(f, "qty", "fill");
        const char *fc = jdec8(f, "commission", "fill");
        const char *fa = jstr(f, "commissionAsset", "fill");
        json_int_t ftid = jint(f, "tradeId", "fill");
        cq_dec fquote = dmul8(dec(fq), dec(fp), CQ_ROUND_DOWN);
        cum_qty = dadd(cum_qty, dec(fq));
        cum_quote = dadd(cum_quote, fquote);
        btc_net = dadd(btc_net, dsub(dec(fq), dec(fc)));
        char z8[CQ_DEC_STR_MAX], Z8[CQ_DEC_STR_MAX], Y8[CQ_DEC_STR_MAX];
        bool last = k + 1 == n_fills;
        ev = tc_next(tc, &cursor, what);
        w.x = "TRADE";
        w.X = last ? "FILLED" : "PARTIALLY_FILLED";
        w.l = fq;
        w.L = fp;
        w.n = fc;
        w.N = fa;
        w.t = ftid;
        w.z = fmt8(cum_qty, z8);
        w.Z = fmt8(cum_quote, Z8);
        w.Y = fmt8(fquote, Y8);
        check_exec(ev, &w, &exec_id, what);
        cr_expect_eq(jint(ev, "T", what), mkt_time, "%s: T = transactTime", what);
        if (last) {
            cr_expect_str_eq(jstr(ev, "z", what), jstr(mkt, "executedQty", "MARKET BUY"),
                             "final z = executedQty");
            cr_expect_str_eq(jstr(ev, "Z", what), jstr(mkt, "cummulativeQuoteQty", "MARKET BUY"),
                             "final Z = cummulativeQuoteQty");
        }
        json_decref(ev);
    }

    ev = tc_next(tc, &cursor, "outboundAccountPosition after the MARKET BUY");
    n_acct = check_account(ev, acct, 8, "account after MARKET");
    json_decref(ev);
    cr_expect_eq(n_acct, 2, "BTC and USDT changed");
    usdt = find_asset(acct, n_acct, "USDT");
    const struct acct_entry *btc = find_asset(acct, n_acct, "BTC");
    cr_assert_not_null(usdt, "USDT missing from the account position");
    cr_assert_not_null(btc, "BTC missing from the account position");
    expect_dec_eq(usdt->free_s, dsub(cq_dec_make(10000, 0), cum_quote), "USDT free after MARKET");
    expect_dec_eq(btc->free_s, dadd(cq_dec_make(1, 0), btc_net), "BTC free after MARKET");
    cr_expect_str_eq(usdt->locked_s, "0.00000000");
    cr_expect_str_eq(btc->locked_s, "0.00000000");
    account_balance("USDT", buf, buf2);
    cr_expect_str_eq(usdt->free_s, buf, "stream USDT free %s, GET account %s", usdt->free_s, buf);
    cr_expect_str_eq(usdt->locked_s, buf2);
    account_balance("BTC", buf, buf2);
    cr_expect_str_eq(btc->free_s, buf, "stream BTC free %s, GET account %s", btc->free_s, buf);
    cr_expect_str_eq(btc->locked_s, buf2);
    json_decref(mkt);

    /* Nothing else was sent: market data never reaches a user stream. */
    cq_time_sleep_ms(300);
    cr_expect_eq(tc_count(tc), cursor, "unexpected extra messages on the user stream");

    /* 7. DELETE the key: the server closes the connection, no event */
    size_t before_delete = tc_count(tc);
    r = http("DELETE", "/api/v3/userDataStream", body, NULL, KEY);
    expect_ok(&r, "DELETE userDataStream");
    cr_expect_eq(json_object_size(r.json), 0, "DELETE answers {}: %s", r.body);
    resp_free(&r);
    cr_assert(tc_wait_closed(tc, WAIT_MS), "the stream was not closed within %d ms of DELETE",
              WAIT_MS);
    cr_expect_eq(tc_count(tc), before_delete, "no event (listenKeyExpired) on a delete");
    int close_code = tc_close_code(tc);
    cr_expect_eq(close_code, 1000, "a normal close (1000), got %d", close_code);
    tc_free(tc);

    r = http("PUT", "/api/v3/userDataStream", NULL, body, KEY);
    expect_error(&r, 400, -1125, "This listenKey does not exist.", "PUT after DELETE");
    resp_free(&r);
    tc = tc_open(g_ws_port, path);
    cr_expect_not(tc_wait_established(tc, WAIT_MS), "a deleted key's stream was accepted");
    tc_free(tc);
}

/*
 * A resting LIMIT BUY fills later as maker when the market trades through
 * it. Speed 60 (a 1m bar per wall second).
 *
 * The market is a file this test writes, not the random walk: every 1m bar
 * is o=c=MAKER_OPEN_CENTS, h=MAKER_HIGH_CENTS, l=MAKER_LOW_CENTS, and the
 * simulator plays every bar through its low and its high (docs/SIMEX.md,
 * "Inside a bar"). The market is paused (/_sim/market/pause, over REST)
 * while the bid is read and the order placed, at a price halfway between
 * the low and the bid: below the bid (so it rests, as maker) and above the
 * low (so the next bar, at the latest the one after a bar cut by the pause,
 * trades through it). The fill therefore comes within about two bars (2 s)
 * however slowly the test's REST calls run; MAKER_WAIT_MS is ten times
 * that. (The random walk it replaced could run far above the order while
 * the test was slow under load and not come back within the wait: about 1
 * run in 8.) MAKER_BARS rows: 1000 become history, the rest outlast the
 * test, so the file never loops (a loop rescales its prices).
 */
#define MAKER_SPEED 60u
#ifndef MAKER_SEED
#define MAKER_SEED 7u
#endif
#define MAKER_OPEN_CENTS 3000000 /* 30000.00 USDT */
#define MAKER_HIGH_CENTS 3010000 /* 30100.00 */
#define MAKER_LOW_CENTS 2990000  /* 29900.00 */
#define MAKER_BARS 1400          /* 1000 history + 400 live: 400 s at speed 60 */
#define MAKER_PLACE_TRIES 20     /* bid within 2 ticks of the low: let it move, look again */

static void write_maker_market(void)
{
    /* the template fits: 25 characters and a NUL in 64 */
    cq_strlcpy(g_data_path, "/tmp/cq-test-maker-XXXXXX", sizeof g_data_path);
    int fd = mkstemp(g_data_path);
    cr_assert_geq(fd, 0, "mkstemp %s: %s", g_data_path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fprintf(f, "open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades\n");
    int64_t t = 1700000040000; /* any minute: the simulator shifts the rows to now */
    for (int i = 0; i < MAKER_BARS; i++, t += 60000) {
        fprintf(f, "%" PRId64 ",%d.%02d,%d.%02d,%d.%02d,%d.%02d,20.00000,%" PRId64 ",,\n", t,
                MAKER_OPEN_CENTS / 100, MAKER_OPEN_CENTS % 100, MAKER_HIGH_CENTS / 100,
                MAKER_HIGH_CENTS % 100, MAKER_LOW_CENTS / 100, MAKER_LOW_CENTS % 100,
                MAKER_OPEN_CENTS / 100, MAKER_OPEN_CENTS % 100, t + 59999);
    }
    cr_assert_eq(fclose(f), 0, "writing %s", g_data_path);
}

static void setup_maker(void)
{
    write_maker_market();
    start_sim(MAKER_SPEED, MAKER_SEED);
}

static int64_t cents_of(cq_dec d)
{
    cq_dec c;
    cr_assert_eq(cq_dec_rescale(d, 2, CQ_ROUND_FLOOR, &c), 0);
    return c.m;
}

Test(sim_userstream, resting_limit_fills_as_maker, .init = setup_maker, .fini = teardown,
     .timeout = 120)
{
    char key[80];
    create_listen_key(key);
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", key);
    struct tclient *tc = tc_open(g_ws_port, path);
    cr_assert(tc_wait_established(tc, WAIT_MS), "ws %s not established within %d ms", path,
              WAIT_MS);
    size_t cursor = 0;
    int64_t exec_id = 0;
    char buf[CQ_DEC_STR_MAX], buf2[CQ_DEC_STR_MAX];

    /* Pause, and place halfway between the bars' low and the bid. In the
     * rare pause at the very low (bid within 2 ticks of it) no price is both
     * below the bid and above the low: let the market move and look again. */
    int64_t bid_cents = 0;
    for (int tries = 0; tries < MAKER_PLACE_TRIES; tries++) {
        control("/_sim/market/pause", "on=1");
        bid_cents = cents_of(best_bid());
        if (bid_cents - MAKER_LOW_CENTS >= 2) {
            break;
        }
        control("/_sim/market/pause", "on=0");
        cq_time_sleep_ms(200);
    }
    cr_assert_geq(bid_cents - MAKER_LOW_CENTS, 2,
                  "the bid stayed within 2 ticks of the bars' low (%d cents) for %d tries: %lld",
                  MAKER_LOW_CENTS, MAKER_PLACE_TRIES, (long long)bid_cents);
    cr_assert_leq(bid_cents, MAKER_HIGH_CENTS,
                  "the bid (%lld cents) is above the bars' high: the market file was not used",
                  (long long)bid_cents);
    cq_dec price = cq_dec_make((MAKER_LOW_CENTS + bid_cents) / 2, 2);
    char params[512];
    snprintf(params, sizeof params,
             "symbol=" SYMBOL "&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s"
             "&newClientOrderId=us-maker-1",
             cq_dec_format(price, buf, sizeof buf));
    struct resp r = signed_req("POST", "/api/v3/order", params);
    expect_ok(&r, "LIMIT BUY below the bid");
    cr_assert_str_eq(jstr(r.json, "status", "LIMIT BUY"), "NEW", "it must rest: %s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "fills")), 0, "%s", r.body);
    json_int_t id = jint(r.json, "orderId", "LIMIT BUY");
    json_int_t placed = jint(r.json, "transactTime", "LIMIT BUY");
    json_int_t working = jint(r.json, "workingTime", "LIMIT BUY");
    char stp[32];
    cq_strlcpy(stp, jstr(r.json, "selfTradePreventionMode", "LIMIT BUY"), sizeof stp);
    resp_free(&r);
    control("/_sim/market/pause", "on=0");

    char p8[CQ_DEC_STR_MAX];
    fmt8(price, p8);
    cq_dec qty = cq_dec_make(1, 3);
    cq_dec lock = dmul8(qty, price, CQ_ROUND_CEIL);
    json_t *ev = tc_next(tc, &cursor, "executionReport NEW");
    struct want_exec w = {
        .c = "us-maker-1",
        .C = "",
        .S = "BUY",
        .o = "LIMIT",
        .f = "GTC",
        .q = "0.00100000",
        .p = p8,
        .x = "NEW",
        .X = "NEW",
        .l = "0.00000000",
        .z = "0.00000000",
        .L = "0.00000000",
        .n = "0",
        .N = NULL,
        .Z = "0.00000000",
        .Y = "0.00000000",
        .Q = "0.00000000",
        .V = stp,
        .i = id,
        .t = -1,
        .O = placed,
        .W = working,
        .w = true,
        .m = false,
    };
    check_exec(ev, &w, &exec_id, "maker NEW");
    json_decref(ev);
    struct acct_entry acct[8];
    ev = tc_next(tc, &cursor, "outboundAccountPosition after the LIMIT BUY");
    size_t n_acct = check_account(ev, acct, 8, "account after LIMIT");
    json_decref(ev);
    const struct acct_entry *usdt = find_asset(acct, n_acct, "USDT");
    cr_assert_not_null(usdt);
    expect_dec_eq(usdt->locked_s, lock, "USDT locked after LIMIT");

    /* The market trades through it: one or more maker TRADEs at the order's
     * own price, each followed by the account position, until FILLED. */
    cq_dec cum_qty = cq_dec_make(0, 8), cum_quote = cq_dec_make(0, 8);
    cq_dec btc_net = cq_dec_make(0, 8);
    json_int_t trade_ids[64];
    size_t n_trades = 0;
    bool filled = false;
    int64_t deadline = mono_ms() + MAKER_WAIT_MS;
    while (!filled) {
        int64_t left = deadline - mono_ms();
        ev = tc_try_next(tc, &cursor, left > 0 ? (int)left : 0);
        cr_assert_not_null(ev,
                           "no maker fill within %d ms at speed 60 for a LIMIT BUY at %s "
                           "(every bar trades down to %d.%02d); %zu fills so far",
                           MAKER_WAIT_MS, p8, MAKER_LOW_CENTS / 100, MAKER_LOW_CENTS % 100,
                           n_trades);
        char what[64];
        snprintf(what, sizeof what, "maker TRADE %zu", n_trades + 1);
        cq_dec l = dec(jdec8(ev, "l", what));
        cq_dec quote = dmul8(l, price, CQ_ROUND_DOWN);
        cq_dec comm = dmul8(l, cq_dec_make(10, 4), CQ_ROUND_UP); /* 10 bps, rounded up */
        cum_qty = dadd(cum_qty, l);
        cum_quote = dadd(cum_quote, quote);
        btc_net = dadd(btc_net, dsub(l, comm));
        filled = cq_dec_cmp(cum_qty, qty) == 0;
        char z8[CQ_DEC_STR_MAX], Z8[CQ_DEC_STR_MAX], Y8[CQ_DEC_STR_MAX], n8[CQ_DEC_STR_MAX];
        w.x = "TRADE";
        w.X = filled ? "FILLED" : "PARTIALLY_FILLED";
        w.L = p8; /* a maker fills at its own limit price */
        w.l = NULL;
        w.n = fmt8(comm, n8);
        w.N = "BTC";
        w.z = fmt8(cum_qty, z8);
        w.Z = fmt8(cum_quote, Z8);
        w.Y = fmt8(quote, Y8);
        w.w = !filled;
        w.m = true;
        w.t = jint(ev, "t", what);
        check_exec(ev, &w, &exec_id, what);
        cr_expect_gt(l.m, 0, "%s: l > 0", what);
        json_int_t T = jint(ev, "T", what);
        cr_expect_geq(T, working,
                      "BUG: %s has T=%lld (trade time) before the order's W=%lld (working "
                      "time): the fill is stamped with the market clock, the order with the "
                      "server clock",
                      what, (long long)T, (long long)working);
        cr_expect_gt(w.t, 0, "%s: t (trade id)", what);
        json_int_t server_now = server_time_ms();
        cr_expect_leq(jint(ev, "E", what), server_now,
                      "BUG: %s has E=%lld, after the server's own time %lld (GET /api/v3/time "
                      "once the event had arrived): user events are stamped with the market "
                      "clock, which runs %ux the server clock",
                      what, (long long)jint(ev, "E", what), (long long)server_now, MAKER_SPEED);
        cr_log_info("%s arrived %lld ms after the order was placed", what,
                    (long long)(wall_ms() - placed));
        trade_ids[n_trades++] = w.t;
        cr_assert_lt(n_trades, CQ_ARRAY_LEN(trade_ids), "too many partial fills");
        json_decref(ev);

        ev = tc_next(tc, &cursor, "outboundAccountPosition after a maker fill");
        n_acct = check_account(ev, acct, 8, "account after a maker fill");
        json_decref(ev);
        usdt = find_asset(acct, n_acct, "USDT");
        const struct acct_entry *btc = find_asset(acct, n_acct, "BTC");
        cr_assert_not_null(usdt, "USDT missing from the account position");
        cr_assert_not_null(btc, "BTC missing from the account position");
        expect_dec_eq(btc->free_s, dadd(cq_dec_make(1, 0), btc_net), "BTC free after maker fill");
        cq_dec locked_now = dmul8(dsub(qty, cum_qty), price, CQ_ROUND_CEIL);
        expect_dec_eq(usdt->locked_s, locked_now, "USDT locked after maker fill");
        expect_dec_eq(usdt->free_s, dsub(dsub(cq_dec_make(10000, 0), cum_quote), locked_now),
                      "USDT free after maker fill");
    }

    /* REST agrees: the order FILLED, myTrades are maker trades with the
     * stream's ids, the account matches the last position. */
    char q[256];
    snprintf(q, sizeof q, "symbol=" SYMBOL "&orderId=%lld", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_ok(&r, "GET order");
    cr_expect_str_eq(jstr(r.json, "status", "GET order"), "FILLED");
    cr_expect_str_eq(jstr(r.json, "executedQty", "GET order"), "0.00100000");
    expect_dec_eq(jstr(r.json, "cummulativeQuoteQty", "GET order"), cum_quote,
                  "GET order cummulativeQuoteQty");
    const char *get_stp = jstr(r.json, "selfTradePreventionMode", "GET order");
    cr_expect_str_eq(get_stp, stp,
                     "BUG: GET /order's selfTradePreventionMode (%s) differs from POST's (%s)",
                     get_stp, stp);
    resp_free(&r);
    r = signed_req("GET", "/api/v3/myTrades", q);
    expect_ok(&r, "myTrades");
    cr_assert_eq(json_array_size(r.json), n_trades, "myTrades: %s", r.body);
    for (size_t k = 0; k < n_trades; k++) {
        const json_t *t = json_array_get(r.json, k);
        cr_expect_eq(jint(t, "id", "myTrades"), trade_ids[k]);
        cr_expect(jbool(t, "isMaker", "myTrades"), "myTrades[%zu] isMaker", k);
        cr_expect(jbool(t, "isBuyer", "myTrades"));
        cr_expect_str_eq(jstr(t, "price", "myTrades"), p8);
    }
    resp_free(&r);
    account_balance("BTC", buf, buf2);
    expect_dec_eq(buf, dadd(cq_dec_make(1, 0), btc_net), "GET account BTC free");
    account_balance("USDT", buf, buf2);
    expect_dec_eq(buf, dsub(cq_dec_make(10000, 0), cum_quote), "GET account USDT free");
    cr_expect_str_eq(buf2, "0.00000000");
    tc_free(tc);
}
