/*
 * test_sim_rest.c — coinquant-simex's REST server (server/sim/rest.c) over
 * real loopback HTTP: a struct cq_sim started through the public API
 * (include/cq/sim.h) with ephemeral ports and a seeded synthetic market,
 * driven with libcurl (and a raw socket for bytes curl refuses to send).
 *
 * Covered: the documented signature vectors (§2) with the server clock moved
 * back to 2017 through /_sim/clock/skew, signing over raw bytes, split
 * query/body signing, query-wins, connector-style POSTs, every error path
 * with its exact code, msg and HTTP status, weights and headers, 429 ->
 * 418 ban escalation, order-rate limits, each /_sim/ control endpoint, the
 * loopback rule, a full order flow with exact balance movements, market
 * data shapes, and a table of malformed requests (each a JSON error).
 *
 * Each Criterion test runs in its own process with its own simulator.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "sim-params.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define DOC_SECRET "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

static struct cq_sim *g_sim;
static char g_base[128];
static const char *g_secret = SECRET;

/* ---- simulator ------------------------------------------------------------------ */

struct sim_setup {
    uint32_t weight_limit_1m;
    uint32_t order_limit_10s;
    const char *bind;
    const char *secret;
    const char *control_token;
    uint32_t head_deadline_ms, per_ip_max, connections_max;
    const char *const *symbols; /* NULL: BTCUSDT, ETHUSDT, LTCBTC */
    size_t n_symbols;
};

static void start_sim(const struct sim_setup *s)
{
    static const char *const symbols[] = {"BTCUSDT", "ETHUSDT", "LTCBTC"};
    static struct cq_sim_balance balances[8];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=10,ETH=0", balances, 8, &n_balances, &err),
                 0);
    struct cq_sim_options o = {
        .bind = s->bind != NULL ? s->bind : "127.0.0.1",
        .symbols = s->symbols != NULL ? s->symbols : symbols,
        .n_symbols = s->symbols != NULL ? s->n_symbols : CQ_ARRAY_LEN(symbols),
        .speed = 1,
        .seed = 42,
        .api_secret = s->secret,
        .balances = balances,
        .n_balances = n_balances,
        .maker_bps = 10,
        .taker_bps = 10,
        .weight_limit_1m = s->weight_limit_1m != 0 ? s->weight_limit_1m : 1000000,
        .order_limit_10s = s->order_limit_10s != 0 ? s->order_limit_10s : 100000,
        .control_token = s->control_token,
        .rest_head_deadline_ms = s->head_deadline_ms,
        .rest_per_ip_max = s->per_ip_max,
        .rest_connections_max = s->connections_max,
    };
    g_secret = s->secret != NULL ? s->secret : SECRET;
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_base, cq_sim_rest_url(g_sim), sizeof(g_base));
}

static void setup_default(void)
{
    struct sim_setup s = {0};
    start_sim(&s);
}

static void teardown(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
}

/* ---- HTTP ----------------------------------------------------------------------- */

struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
    long weight, weight_legacy, orders_10s, orders_1d, retry_after; /* -1 = absent */
    char content_type[128];
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

static bool header_is(const char *line, size_t len, const char *name, long *out)
{
    size_t n = strlen(name);
    if (len > n + 1 && strncasecmp(line, name, n) == 0 && line[n] == ':') {
        *out = strtol(line + n + 1, NULL, 10);
        return true;
    }
    return false;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t len = size * n;
    /* exact names: the legacy header must not match the -1M one */
    if (len > 22 && strncmp(p, "X-MBX-USED-WEIGHT-1M:", 21) == 0) {
        r->weight = strtol(p + 21, NULL, 10);
    } else if (len > 18 && strncmp(p, "x-mbx-used-weight:", 18) == 0) {
        r->weight_legacy = strtol(p + 18, NULL, 10);
    } else if (!header_is(p, len, "X-MBX-ORDER-COUNT-10S", &r->orders_10s) &&
               !header_is(p, len, "X-MBX-ORDER-COUNT-1D", &r->orders_1d) &&
               !header_is(p, len, "Retry-After", &r->retry_after)) {
        if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
            size_t m =
                len - 13 < sizeof(r->content_type) - 1 ? len - 13 : sizeof(r->content_type) - 1;
            memcpy(r->content_type, p + 13, m);
            r->content_type[m] = '\0';
        }
    }
    return len;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* One request. body NULL = none; key NULL = no X-MBX-APIKEY; ctype NULL =
 * curl's default. */
static struct resp http_full(const char *base, const char *method, const char *path,
                             const char *query, const char *body, const char *key,
                             const char *ctype, const char *extra_header)
{
    struct resp r = {0};
    r.weight = r.weight_legacy = r.orders_10s = r.orders_1d = r.retry_after = -1;
    size_t ql = query != NULL ? strlen(query) : 0;
    size_t url_len = strlen(base) + strlen(path) + ql + 2;
    char *url = malloc(url_len);
    cr_assert_not_null(url);
    snprintf(url, url_len, "%s%s%s%s", base, path, ql > 0 ? "?" : "", ql > 0 ? query : "");
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = NULL;
    char kh[512];
    if (key != NULL) {
        snprintf(kh, sizeof(kh), "X-MBX-APIKEY: %s", key);
        h = curl_slist_append(h, kh);
    }
    if (ctype != NULL) {
        char ch[256];
        snprintf(ch, sizeof(ch), "Content-Type: %s", ctype);
        h = curl_slist_append(h, ch);
    }
    if (extra_header != NULL) {
        h = curl_slist_append(h, extra_header);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
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
    free(url);
    if (r.body != NULL) {
        r.json = json_loadb(r.body, r.len, 0, NULL);
    }
    return r;
}

static struct resp http(const char *method, const char *path, const char *query, const char *body)
{
    return http_full(g_base, method, path, query, body, NULL, NULL, NULL);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* For durations: the wall clock may be stepped (NTP) mid-test. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Append "timestamp=<ts>" (unless ts < 0) and "signature=<hmac>" to the
 * part named by sig_in_body, signing query + body as sent. */
static void sign_parts(const char *secret, char *query, size_t qcap, char *body, size_t bcap,
                       int64_t ts, bool ts_in_body, bool sig_in_body)
{
    char tsbuf[48];
    if (ts >= 0) {
        char *part = ts_in_body ? body : query;
        size_t cap = ts_in_body ? bcap : qcap;
        snprintf(tsbuf, sizeof(tsbuf), "%stimestamp=%lld", part[0] != '\0' ? "&" : "",
                 (long long)ts);
        strncat(part, tsbuf, cap - strlen(part) - 1);
    }
    char sig[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(cq_sign_hmac_sha256_hex(secret, strlen(secret), query, strlen(query), body,
                                         strlen(body), sig),
                 0);
    char *part = sig_in_body ? body : query;
    size_t cap = sig_in_body ? bcap : qcap;
    char sbuf[96];
    snprintf(sbuf, sizeof(sbuf), "%ssignature=%s", part[0] != '\0' ? "&" : "", sig);
    strncat(part, sbuf, cap - strlen(part) - 1);
}

/* A signed request the way ccxt sends it: GET/DELETE everything in the
 * query, POST everything in a form body. */
static struct resp signed_req(const char *method, const char *path, const char *params)
{
    static char query[8192], body[8192];
    bool in_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    query[0] = body[0] = '\0';
    cq_strlcpy(in_body ? body : query, params, 8192);
    sign_parts(g_secret, query, sizeof(query), body, sizeof(body), wall_ms(), in_body, in_body);
    return http_full(g_base, method, path, query, in_body ? body : NULL, KEY, NULL, NULL);
}

static void expect_error(const struct resp *r, long status, int code, const char *msg)
{
    cr_assert_not_null(r->json, "not JSON (HTTP %ld): %s", r->status, r->body ? r->body : "");
    cr_expect_eq(r->status, status, "HTTP %ld, want %ld: %s", r->status, status, r->body);
    cr_expect_eq(json_integer_value(json_object_get(r->json, "code")), code, "code: %s", r->body);
    if (msg != NULL) {
        cr_expect_str_eq(json_string_value(json_object_get(r->json, "msg")), msg);
    }
}

static void expect_ok(const struct resp *r)
{
    cr_assert_eq(r->status, 200, "HTTP %ld: %s", r->status, r->body ? r->body : "");
    cr_assert_not_null(r->json, "not JSON: %s", r->body);
    cr_expect_null(json_object_get(r->json, "code"), "a success body has no code: %s", r->body);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "missing string %s", k);
    return s;
}

static cq_dec jdec_of(const json_t *o, const char *k)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(jstr(o, k), (size_t)-1, &d), 0, "%s is not a decimal", k);
    return d;
}

static bool is_8dp(const char *s)
{
    const char *dot = strchr(s, '.');
    return dot != NULL && strlen(dot + 1) == 8;
}

static void control_ok(const char *path, const char *query)
{
    struct resp r = http("POST", path, query, NULL);
    cr_assert_eq(r.status, 200, "%s?%s: %ld %s", path, query ? query : "", r.status, r.body);
    cr_assert(json_is_true(json_object_get(r.json, "ok")), "%s", r.body);
    resp_free(&r);
}

/* Wait until at least margin_ms remain in the current window of period_ms,
 * so a sequence of requests does not straddle a rate-limit window. */
static void align_window(int64_t period_ms, int64_t margin_ms)
{
    int64_t left = period_ms - wall_ms() % period_ms;
    if (left < margin_ms) {
        int64_t ms = left + 50;
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static cq_dec balance_of(const char *asset, cq_dec *locked)
{
    struct resp r = signed_req("GET", "/api/v3/account", "");
    expect_ok(&r);
    json_t *bal = json_object_get(r.json, "balances");
    size_t i;
    json_t *b;
    cq_dec free_amount = CQ_DEC_ZERO;
    json_array_foreach(bal, i, b)
    {
        if (strcmp(jstr(b, "asset"), asset) == 0) {
            cr_expect(is_8dp(jstr(b, "free")) && is_8dp(jstr(b, "locked")));
            free_amount = jdec_of(b, "free");
            if (locked != NULL) {
                *locked = jdec_of(b, "locked");
            }
        }
    }
    resp_free(&r);
    return free_amount;
}

/* ---- signatures ------------------------------------------------------------------- */

static void setup_doc_secret(void)
{
    struct sim_setup s = {.secret = DOC_SECRET};
    start_sim(&s);
}

/* Move the server clock so that it reads `ts + 500` ms now. */
static void server_clock_at(int64_t ts)
{
    char q[64];
    snprintf(q, sizeof(q), "ms=%lld", (long long)(ts + 500 - wall_ms()));
    control_ok("/_sim/clock/skew", q);
}

/* The documented request is for LTCBTC with a notional of 0.1 BTC: whether
 * the simulator's LTCBTC filters accept it is not the point. Anything past
 * the signature and timing checks proves the signature was accepted. */
static void expect_signature_accepted(const struct resp *r)
{
    cr_assert_not_null(r->json, "not JSON: %s", r->body);
    if (r->status == 200) {
        cr_expect_null(json_object_get(r->json, "code"));
        cr_expect_str_eq(jstr(r->json, "symbol"), "LTCBTC");
        return;
    }
    int code = (int)json_integer_value(json_object_get(r->json, "code"));
    cr_expect(code == -1013 || code == -2010, "rejected before the engine: %s", r->body);
}

static const char doc_whole[] = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
                                "&price=0.1&recvWindow=5000&timestamp=1499827319559";
#define DOC_TS 1499827319559LL

Test(sim_rest, documented_vector_whole_query_is_accepted, .init = setup_doc_secret,
     .fini = teardown)
{
    server_clock_at(DOC_TS);
    struct resp r = http_full(g_base, "POST", "/api/v3/order",
                              "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
                              "&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
                              "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                              NULL, KEY, NULL, NULL);
    expect_signature_accepted(&r);
    resp_free(&r);

    /* the same bytes in a form body, hex in upper case: still valid */
    server_clock_at(DOC_TS);
    char body[512];
    snprintf(body, sizeof(body), "%s&signature=%s", doc_whole,
             "C8DB56825AE71D6D79447849E617115F4A920FA2ACDCAB2B053C4B2838BD6B71");
    r = http_full(g_base, "POST", "/api/v3/order", NULL, body, KEY, NULL, NULL);
    expect_signature_accepted(&r);
    resp_free(&r);

    /* one byte different: -1022 */
    server_clock_at(DOC_TS);
    r = http_full(g_base, "POST", "/api/v3/order",
                  "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=2"
                  "&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
                  "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                  NULL, KEY, NULL, NULL);
    expect_error(&r, 400, -1022, "Signature for this request is not valid.");
    resp_free(&r);
}

Test(sim_rest, documented_vector_split_query_body_is_accepted, .init = setup_doc_secret,
     .fini = teardown)
{
    server_clock_at(DOC_TS);
    struct resp r = http_full(
        g_base, "POST", "/api/v3/order", "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        KEY, "application/x-www-form-urlencoded", NULL);
    expect_signature_accepted(&r);
    resp_free(&r);

    /* the whole-string signature does not fit the split payload */
    server_clock_at(DOC_TS);
    r = http_full(g_base, "POST", "/api/v3/order",
                  "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                  "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
                  "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                  KEY, NULL, NULL);
    expect_error(&r, 400, -1022, "Signature for this request is not valid.");
    resp_free(&r);
}

Test(sim_rest, signature_covers_the_raw_bytes_not_decoded_values, .init = setup_default,
     .fini = teardown)
{
    /* newClientOrderId=ab%2Dcd is "ab-cd" once decoded; the HMAC is over the
     * raw "%2D" the client sent */
    char query[1024] = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                       "&price=20000&newClientOrderId=ab%2Dcd";
    char body[16] = "";
    sign_parts(g_secret, query, sizeof(query), body, sizeof(body), wall_ms(), false, false);
    struct resp r =
        http_full(g_base, "POST", "/api/v3/order", query, "", KEY, "application/json", NULL);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "clientOrderId"), "ab-cd");
    resp_free(&r);

    /* signed over the decoded text instead: rejected */
    char decoded[1024];
    snprintf(decoded, sizeof(decoded),
             "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000"
             "&newClientOrderId=ab-ce&timestamp=%lld",
             (long long)wall_ms());
    char sig[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(g_secret, strlen(g_secret), decoded, strlen(decoded), NULL, 0, sig),
        0);
    char *enc = strstr(decoded, "ab-ce");
    char sent[1200];
    snprintf(sent, sizeof(sent), "%.*sab%%2Dce%s&signature=%s", (int)(enc - decoded), decoded,
             enc + 5, sig);
    r = http_full(g_base, "POST", "/api/v3/order", sent, NULL, KEY, NULL, NULL);
    expect_error(&r, 400, -1022, "Signature for this request is not valid.");
    resp_free(&r);

    /* signature in the middle of the query, timestamp in microseconds */
    char mid[1024];
    int64_t ts_us = wall_ms() * 1000;
    char payload[512];
    snprintf(payload, sizeof(payload), "symbol=BTCUSDT&timestamp=%lld", (long long)ts_us);
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(g_secret, strlen(g_secret), payload, strlen(payload), NULL, 0, sig),
        0);
    snprintf(mid, sizeof(mid), "symbol=BTCUSDT&signature=%s&timestamp=%lld", sig, (long long)ts_us);
    r = http_full(g_base, "GET", "/api/v3/openOrders", mid, NULL, KEY, NULL, NULL);
    expect_ok(&r);
    cr_expect(json_is_array(r.json));
    resp_free(&r);
}

Test(sim_rest, query_wins_over_body_on_duplicates, .init = setup_default, .fini = teardown)
{
    char query[1024] = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                       "&price=20000";
    char body[1024] = "quantity=0.002&price=21000";
    sign_parts(g_secret, query, sizeof(query), body, sizeof(body), wall_ms(), true, true);
    struct resp r = http_full(g_base, "POST", "/api/v3/order", query, body, KEY, NULL, NULL);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "origQty"), "0.00100000");
    cr_expect_str_eq(jstr(r.json, "price"), "20000.00000000");
    resp_free(&r);
}

Test(sim_rest, connector_style_post_json_content_type_empty_body, .init = setup_default,
     .fini = teardown)
{
    char query[1024] = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                       "&price=20000";
    char body[8] = "";
    sign_parts(g_secret, query, sizeof(query), body, sizeof(body), wall_ms(), false, false);
    struct resp r =
        http_full(g_base, "POST", "/api/v3/order", query, "", KEY, "application/json", NULL);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "NEW");
    resp_free(&r);
    /* NONE endpoints ignore the key header entirely, even an empty one */
    r = http_full(g_base, "GET", "/api/v3/ping", NULL, NULL, "", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
    r = http_full(g_base, "GET", "/api/v3/time", NULL, NULL, "wrong-key", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
}

/* ---- error paths ------------------------------------------------------------------ */

enum sign_mode { SIGN_OK, SIGN_BAD, SIGN_NONE, SIGN_NO_TS, SIGN_TS_OLD, SIGN_TS_AHEAD };
enum key_mode { KEY_OK, KEY_NONE, KEY_WRONG, KEY_MALFORMED };

struct err_case {
    const char *name;
    const char *method, *path, *params;
    enum sign_mode sign;
    enum key_mode key;
    long status;
    int code;
    const char *msg;
};

static const struct err_case err_cases[] = {
    {"ts outside window", "GET", "/api/v3/account", "", SIGN_TS_OLD, KEY_OK, 400, -1021,
     "Timestamp for this request is outside of the recvWindow."},
    {"ts ahead", "GET", "/api/v3/account", "", SIGN_TS_AHEAD, KEY_OK, 400, -1021,
     "Timestamp for this request was 1000ms ahead of the server's time."},
    {"bad signature", "GET", "/api/v3/account", "", SIGN_BAD, KEY_OK, 400, -1022,
     "Signature for this request is not valid."},
    {"no timestamp", "GET", "/api/v3/account", "", SIGN_NO_TS, KEY_OK, 400, -1102,
     "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."},
    {"no signature", "GET", "/api/v3/account", "", SIGN_NONE, KEY_OK, 400, -1102,
     "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."},
    {"missing symbol", "POST", "/api/v3/order", "side=BUY&type=MARKET&quantity=1", SIGN_OK, KEY_OK,
     400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
    {"empty symbol", "POST", "/api/v3/order", "symbol=&side=BUY&type=MARKET&quantity=1", SIGN_OK,
     KEY_OK, 400, -1102,
     "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
    {"market neither qty", "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET", SIGN_OK,
     KEY_OK, 400, -1102,
     "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"},
    {"limit no price", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1", SIGN_OK, KEY_OK, 400, -1102,
     "Mandatory parameter 'price' was not sent, was empty/null, or malformed."},
    {"limit no tif", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1", SIGN_OK, KEY_OK, 400, -1102,
     "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."},
    {"get order neither id", "GET", "/api/v3/order", "symbol=BTCUSDT", SIGN_OK, KEY_OK, 400, -1102,
     "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"},
    {"bad quantity", "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1e5",
     SIGN_OK, KEY_OK, 400, -1100,
     "Illegal characters found in parameter 'quantity'; legal range is "
     "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."},
    {"lower-case symbol", "GET", "/api/v3/depth", "symbol=btcusdt", SIGN_OK, KEY_NONE, 400, -1100,
     "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."},
    {"bad orderId", "GET", "/api/v3/order", "symbol=BTCUSDT&orderId=12a", SIGN_OK, KEY_OK, 400,
     -1100, "Illegal characters found in parameter 'orderId'; legal range is '^[0-9]{1,20}$'."},
    {"bad client id", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newClientOrderId=a%20b", SIGN_OK, KEY_OK, 400,
     -1100,
     "Illegal characters found in parameter 'newClientOrderId'; legal range is "
     "'^[a-zA-Z0-9-_]{1,36}$'."},
    {"price on market", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&price=1", SIGN_OK, KEY_OK, 400, -1106,
     "Parameter 'price' sent when not required."},
    {"quoteOrderQty on limit", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1&quoteOrderQty=5",
     SIGN_OK, KEY_OK, 400, -1106, "Parameter 'quoteOrderQty' sent when not required."},
    {"tif on market", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&timeInForce=GTC", SIGN_OK, KEY_OK, 400, -1114,
     "TimeInForce parameter sent when not required."},
    {"bad tif", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTX&quantity=1&price=1", SIGN_OK, KEY_OK, 400,
     -1115, "Invalid timeInForce."},
    {"bad type", "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMITED&quantity=1",
     SIGN_OK, KEY_OK, 400, -1116, "Invalid orderType."},
    {"bad side", "POST", "/api/v3/order", "symbol=BTCUSDT&side=HOLD&type=MARKET&quantity=1",
     SIGN_OK, KEY_OK, 400, -1117, "Invalid side."},
    {"bad interval", "GET", "/api/v3/klines", "symbol=BTCUSDT&interval=2m", SIGN_OK, KEY_NONE, 400,
     -1120, "Invalid interval."},
    {"interval case", "GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1H", SIGN_OK, KEY_NONE, 400,
     -1120, "Invalid interval."},
    {"unknown symbol depth", "GET", "/api/v3/depth", "symbol=NOPEUSDT", SIGN_OK, KEY_NONE, 400,
     -1121, "Invalid symbol."},
    {"unknown symbol order", "POST", "/api/v3/order",
     "symbol=NOPEUSDT&side=BUY&type=MARKET&quantity=1", SIGN_OK, KEY_OK, 400, -1121,
     "Invalid symbol."},
    {"unknown symbol exchangeInfo", "GET", "/api/v3/exchangeInfo", "symbol=NOPEUSDT", SIGN_OK,
     KEY_NONE, 400, -1121, "Invalid symbol."},
    {"unknown listenKey", "PUT", "/api/v3/userDataStream", "listenKey=doesnotexist", SIGN_OK,
     KEY_OK, 400, -1125, "This listenKey does not exist."},
    {"recvWindow too big", "GET", "/api/v3/account", "recvWindow=60001", SIGN_OK, KEY_OK, 400,
     -1131, "recvWindow must be less than 60000."},
    {"unknown order cancel", "DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=999999", SIGN_OK,
     KEY_OK, 400, -2011, "Unknown order sent."},
    {"unknown order get", "GET", "/api/v3/order", "symbol=BTCUSDT&orderId=999999", SIGN_OK, KEY_OK,
     400, -2013, "Order does not exist."},
    {"unknown client id get", "GET", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=nope",
     SIGN_OK, KEY_OK, 400, -2013, "Order does not exist."},
    {"nothing to cancel", "DELETE", "/api/v3/openOrders", "symbol=BTCUSDT", SIGN_OK, KEY_OK, 400,
     -2011, "Unknown order sent."},
    {"no key", "GET", "/api/v3/account", "", SIGN_OK, KEY_NONE, 401, -2014,
     "API-key format invalid."},
    {"malformed key", "GET", "/api/v3/account", "", SIGN_OK, KEY_MALFORMED, 401, -2014,
     "API-key format invalid."},
    {"wrong key", "GET", "/api/v3/account", "", SIGN_OK, KEY_WRONG, 401, -2015,
     "Invalid API-key, IP, or permissions for action."},
    {"user stream no key", "POST", "/api/v3/userDataStream", "", SIGN_NONE, KEY_NONE, 401, -2014,
     "API-key format invalid."},
    {"user stream missing listenKey", "DELETE", "/api/v3/userDataStream", "", SIGN_NONE, KEY_OK,
     400, -1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed."},
    {"params before key", "POST", "/api/v3/order", "side=BUY&type=MARKET&quantity=1", SIGN_OK,
     KEY_NONE, 400, -1102,
     "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
    {"key before time", "GET", "/api/v3/account", "", SIGN_TS_OLD, KEY_WRONG, 401, -2015,
     "Invalid API-key, IP, or permissions for action."},
    {"time before signature", "GET", "/api/v3/account", "", SIGN_TS_OLD, KEY_OK, 400, -1021,
     "Timestamp for this request is outside of the recvWindow."},
    {"signature before symbol", "POST", "/api/v3/order",
     "symbol=NOPEUSDT&side=BUY&type=MARKET&quantity=1", SIGN_BAD, KEY_OK, 400, -1022,
     "Signature for this request is not valid."},
    {"stop orders", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=0.001&stopPrice=1000", SIGN_OK, KEY_OK, 400,
     -2010, "Stop loss orders are not supported for this symbol."},
    {"iceberg", "POST", "/api/v3/order",
     "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1&icebergQty=0.1",
     SIGN_OK, KEY_OK, 400, -1106, "Parameter 'icebergQty' sent when not required."},
    {"allOrders window", "GET", "/api/v3/allOrders",
     "symbol=BTCUSDT&startTime=1000&endTime=90000000", SIGN_OK, KEY_OK, 400, -1127,
     "More than 24 hours between startTime and endTime."},
    {"recvWindow 4 decimals", "GET", "/api/v3/account", "recvWindow=5000.1234", SIGN_OK, KEY_OK,
     400, -1100,
     "Illegal characters found in parameter 'recvWindow'; legal range is "
     "'^[0-9]{1,20}(\\.[0-9]{1,3})?$'."},
    {"bad symbols json", "GET", "/api/v3/ticker/price", "symbols=%5BBTCUSDT%5D", SIGN_OK, KEY_NONE,
     400, -1100,
     "Illegal characters found in parameter 'symbols'; legal range is "
     "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'."},
    {"unknown in symbols", "GET", "/api/v3/ticker/price", "symbols=%5B%22BTCUSDT%22,%22NOPE%22%5D",
     SIGN_OK, KEY_NONE, 400, -1121, "Invalid symbol."},
    {"bad 24hr type", "GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT&type=HUGE", SIGN_OK, KEY_NONE,
     400, -1100, "Illegal characters found in parameter 'type'; legal range is 'FULL, MINI'."},
};

static struct resp run_err_case(const struct err_case *c)
{
    static char query[4096], body[16];
    query[0] = body[0] = '\0';
    cq_strlcpy(query, c->params, sizeof(query));
    bool public_ep = c->key == KEY_NONE && c->sign == SIGN_OK &&
                     (strstr(c->path, "depth") || strstr(c->path, "klines") ||
                      strstr(c->path, "ticker") || strstr(c->path, "exchangeInfo"));
    if (c->sign == SIGN_NONE) {
        /* a timestamp but no signature */
        char ts[48];
        snprintf(ts, sizeof(ts), "%stimestamp=%lld", query[0] != '\0' ? "&" : "",
                 (long long)wall_ms());
        strncat(query, ts, sizeof(query) - strlen(query) - 1);
    } else if (!public_ep) {
        int64_t ts = wall_ms();
        if (c->sign == SIGN_TS_OLD) {
            ts -= 6000;
        } else if (c->sign == SIGN_TS_AHEAD) {
            ts += 2000;
        } else if (c->sign == SIGN_NO_TS) {
            ts = -1;
        }
        sign_parts(c->sign == SIGN_BAD ? "not-the-secret" : g_secret, query, sizeof(query), body,
                   sizeof(body), ts, false, false);
    }
    const char *key = c->key == KEY_OK          ? KEY
                      : c->key == KEY_WRONG     ? "simex-some-other-key"
                      : c->key == KEY_MALFORMED ? "bad key with spaces"
                                                : NULL;
    return http_full(g_base, c->method, c->path, query, NULL, key, NULL, NULL);
}

Test(sim_rest, every_error_path_has_its_exact_code_msg_and_status, .init = setup_default,
     .fini = teardown)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(err_cases); i++) {
        const struct err_case *c = &err_cases[i];
        struct resp r = run_err_case(c);
        cr_assert_not_null(r.json, "%s: not JSON: %s", c->name, r.body);
        cr_expect_eq(r.status, c->status, "%s: HTTP %ld: %s", c->name, r.status, r.body);
        cr_expect_eq(json_integer_value(json_object_get(r.json, "code")), c->code, "%s: %s",
                     c->name, r.body);
        cr_expect_str_eq(json_string_value(json_object_get(r.json, "msg")), c->msg, "%s", c->name);
        cr_expect_neq(r.weight, -1, "%s: no weight header", c->name);
        resp_free(&r);
    }
}

Test(sim_rest, new_order_rejections_2010, .init = setup_default, .fini = teardown)
{
    /* insufficient balance: 10000 USDT cannot buy 1 BTC at 20000 */
    struct resp r = signed_req("POST", "/api/v3/order",
                               "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
                               "&price=20000");
    expect_error(&r, 400, -2010, "Account has insufficient balance for requested action.");
    resp_free(&r);

    /* duplicate client id among open orders */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=20000&newClientOrderId=dup-1");
    expect_ok(&r);
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=20000&newClientOrderId=dup-1");
    expect_error(&r, 400, -2010, "Duplicate order sent.");
    resp_free(&r);

    /* LIMIT_MAKER that would cross: buy far above the ask */
    r = http("GET", "/api/v3/ticker/bookTicker", "symbol=BTCUSDT", NULL);
    expect_ok(&r);
    cq_dec ask = jdec_of(r.json, "askPrice");
    resp_free(&r);
    cq_dec high;
    cr_assert_eq(cq_dec_add(ask, cq_dec_make(100, 0), &high), 0);
    char params[256], px[CQ_DEC_STR_MAX];
    cr_assert_eq(cq_dec_format_scale(high, 2, CQ_ROUND_HALF_EVEN, px, sizeof(px)), 0);
    snprintf(params, sizeof(params),
             "symbol=BTCUSDT&side=BUY&type=LIMIT_MAKER&quantity=0.001&price=%s", px);
    r = signed_req("POST", "/api/v3/order", params);
    expect_error(&r, 400, -2010, "Order would immediately match and take.");
    resp_free(&r);

    /* a filter failure is -1013 */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=20000.001");
    expect_error(&r, 400, -1013, "Filter failure: PRICE_FILTER");
    resp_free(&r);
}

/* ---- weights and headers ---------------------------------------------------------- */

struct weight_case {
    const char *method, *path, *params;
    bool sign;
    long weight;
};

Test(sim_rest, weights_follow_the_table_and_headers_are_present, .init = setup_default,
     .fini = teardown)
{
    /* one resting order, so order lookups have something to find */
    struct resp r = signed_req("POST", "/api/v3/order",
                               "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                               "&quantity=0.001&price=20000&newClientOrderId=w1");
    expect_ok(&r);
    long id = (long)json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
    char get_order[64], trades_by_order[80];
    snprintf(get_order, sizeof(get_order), "symbol=BTCUSDT&orderId=%ld", id);
    snprintf(trades_by_order, sizeof(trades_by_order), "symbol=BTCUSDT&orderId=%ld", id);

    const struct weight_case cases[] = {
        {"GET", "/api/v3/ping", NULL, false, 1},
        {"GET", "/api/v3/time", NULL, false, 1},
        {"GET", "/api/v3/exchangeInfo", NULL, false, 20},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT", false, 5},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=100", false, 5},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=101", false, 25},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=500", false, 25},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=1000", false, 50},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5000", false, 250},
        {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=9000", false, 250},
        {"GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1m", false, 2},
        {"GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT", false, 2},
        {"GET", "/api/v3/ticker/24hr", NULL, false, 80},
        {"GET", "/api/v3/ticker/24hr", "symbols=%5B%22BTCUSDT%22%5D", false, 2},
        {"GET", "/api/v3/ticker/price", "symbol=BTCUSDT", false, 2},
        {"GET", "/api/v3/ticker/price", NULL, false, 4},
        {"GET", "/api/v3/ticker/bookTicker", "symbol=BTCUSDT", false, 2},
        {"GET", "/api/v3/ticker/bookTicker", NULL, false, 4},
        {"GET", "/api/v3/account", "", true, 20},
        {"GET", "/api/v3/order", get_order, true, 4},
        {"GET", "/api/v3/openOrders", "symbol=BTCUSDT", true, 6},
        {"GET", "/api/v3/openOrders", "", true, 80},
        {"GET", "/api/v3/allOrders", "symbol=BTCUSDT", true, 20},
        {"GET", "/api/v3/myTrades", "symbol=BTCUSDT", true, 20},
        {"GET", "/api/v3/myTrades", trades_by_order, true, 5},
        {"POST", "/api/v3/order/test", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001", true,
         1},
        {"POST", "/api/v3/order/test",
         "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&computeCommissionRates=true", true,
         20},
        {"POST", "/api/v3/order",
         "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000", true, 0},
        {"POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET", true, 1},
        {"DELETE", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=w1", true, 0},
        {"DELETE", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=w1", true, 1},
        {"DELETE", "/api/v3/openOrders", "symbol=BTCUSDT", true, 0},
        {"DELETE", "/api/v3/openOrders", "symbol=BTCUSDT", true, 1},
        {"GET", "/api/v3/nope", NULL, false, 1},
    };
    align_window(60000, 15000);
    r = http("GET", "/api/v3/ping", NULL, NULL);
    long prev = r.weight;
    cr_assert_gt(prev, 0);
    cr_expect_eq(r.weight_legacy, r.weight);
    cr_expect_str_eq(r.content_type, " application/json;charset=UTF-8\r\n");
    resp_free(&r);
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const struct weight_case *c = &cases[i];
        r = c->sign ? signed_req(c->method, c->path, c->params)
                    : http(c->method, c->path, c->params, NULL);
        cr_expect_eq(r.weight - prev, c->weight, "%s %s?%s: weight %ld -> %ld (%s)", c->method,
                     c->path, c->params ? c->params : "", prev, r.weight, r.body);
        cr_expect_eq(r.weight_legacy, r.weight);
        prev = r.weight;
        resp_free(&r);
    }
    /* /_sim/ answers carry no weight headers and cost nothing */
    r = http("GET", "/_sim/state", NULL, NULL);
    cr_expect_eq(r.weight, -1);
    resp_free(&r);
    r = http("GET", "/api/v3/ping", NULL, NULL);
    cr_expect_eq(r.weight, prev + 1);
    resp_free(&r);
}

Test(sim_rest, order_count_headers_and_order_rate_limit, .fini = teardown)
{
    struct sim_setup s = {.order_limit_10s = 3};
    start_sim(&s);
    align_window(10000, 6000);
    for (long i = 1; i <= 3; i++) {
        struct resp r = signed_req("POST", "/api/v3/order",
                                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                                   "&quantity=0.001&price=20000");
        expect_ok(&r);
        cr_expect_eq(r.orders_10s, i);
        cr_expect_eq(r.orders_1d, i);
        resp_free(&r);
    }
    struct resp r = signed_req("POST", "/api/v3/order",
                               "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                               "&quantity=0.001&price=20000");
    expect_error(&r, 429, -1015, "Too many new orders; current limit is 3 orders per 10 SECOND.");
    cr_expect(r.retry_after >= 1 && r.retry_after <= 10, "Retry-After %ld", r.retry_after);
    resp_free(&r);
    /* non-order requests are not affected, and carry no order headers */
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(r.orders_10s, -1);
    resp_free(&r);
}

Test(sim_rest, weight_limit_429_then_418_ban_latched, .fini = teardown)
{
    struct sim_setup s = {.weight_limit_1m = 50};
    start_sim(&s);
    align_window(60000, 20000);
    struct resp r = http("GET", "/api/v3/exchangeInfo", NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(r.json, "rateLimits"), 0), "limit")),
                 50);
    resp_free(&r);
    r = http("GET", "/api/v3/exchangeInfo", NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(r.weight, 40);
    resp_free(&r);
    r = http("GET", "/api/v3/exchangeInfo", NULL, NULL);
    expect_error(&r, 429, -1003,
                 "Too much request weight used; current limit is 50 request weight per 1 MINUTE. "
                 "Please use WebSocket Streams for live updates to avoid polling the API.");
    int64_t left_s = (60000 - wall_ms() % 60000 + 999) / 1000;
    cr_expect(r.retry_after >= 1 && r.retry_after <= left_s + 1, "Retry-After %ld (left %lld)",
              r.retry_after, (long long)left_s);
    resp_free(&r);
    /* ten more are still 429 ... */
    for (int i = 0; i < 10; i++) {
        r = http("GET", "/api/v3/ping", NULL, NULL);
        expect_error(&r, 429, -1003, NULL);
        resp_free(&r);
    }
    /* ... the next one is banned, and the ban is latched */
    int64_t before = wall_ms();
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_error(&r, 418, -1003, NULL);
    const char *msg = json_string_value(json_object_get(r.json, "msg"));
    long long until = 0;
    char tail[128] = "";
    cr_assert_eq(sscanf(msg, "Way too much request weight used; IP banned until %lld.%127[^\n]",
                        &until, tail),
                 2, "%s", msg);
    cr_expect_str_eq(tail, " Please use WebSocket Streams for live updates to avoid bans.");
    cr_expect(until >= before + 119000 && until <= wall_ms() + 121000, "until %lld", until);
    cr_expect(r.retry_after >= 119 && r.retry_after <= 121, "Retry-After %ld", r.retry_after);
    resp_free(&r);
    for (int i = 0; i < 3; i++) {
        r = http("GET", "/api/v3/time", NULL, NULL);
        expect_error(&r, 418, -1003, NULL);
        cr_expect_gt(r.retry_after, 100);
        resp_free(&r);
    }
    r = signed_req("GET", "/api/v3/account", "");
    expect_error(&r, 418, -1003, NULL);
    resp_free(&r);
    /* the control path still answers, and /_sim/state shows the ban */
    r = http("GET", "/_sim/state", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_expect_gt(json_integer_value(
                     json_object_get(json_object_get(r.json, "ratelimit"), "banned_until_ms")),
                 before);
    cr_expect_gt(
        json_integer_value(json_object_get(json_object_get(r.json, "counters"), "rest_418")), 3);
    resp_free(&r);
    /* clearing the faults lifts the ban; the minute is still over its limit */
    control_ok("/_sim/faults/clear", NULL);
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_error(&r, 429, -1003, NULL);
    resp_free(&r);
}

/* ---- faults and the control path ---------------------------------------------------- */

Test(sim_rest, control_state_and_faults, .init = setup_default, .fini = teardown)
{
    struct resp r = http("GET", "/_sim/state", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_not_null(json_object_get(r.json, "balances"));
    cr_expect_not_null(json_object_get(r.json, "faults"));
    resp_free(&r);

    /* latency */
    control_ok("/_sim/rest/latency", "ms=300");
    int64_t t0 = mono_ms();
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    cr_expect_geq(mono_ms() - t0, 290);
    resp_free(&r);
    control_ok("/_sim/rest/latency", "ms=0");

    /* 5xx */
    control_ok("/_sim/rest/errors", "per_mille=1000");
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_error(&r, 503, -1000, "An unknown error occurred while processing the request.");
    cr_expect_gt(r.weight, 0);
    resp_free(&r);
    control_ok("/_sim/rest/errors", "per_mille=0");
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);

    /* storm */
    control_ok("/_sim/ratelimit/storm", "seconds=5");
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_error(&r, 429, -1003, NULL);
    cr_expect(r.retry_after >= 1 && r.retry_after <= 5, "Retry-After %ld", r.retry_after);
    resp_free(&r);
    control_ok("/_sim/ratelimit/storm", "seconds=0");
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);

    /* reject next N orders */
    control_ok("/_sim/orders/reject", "count=1");
    const char *limit_order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                              "&price=20000";
    r = signed_req("POST", "/api/v3/order", limit_order);
    expect_error(&r, 400, -2010,
                 "Order rejected by coinquant-simex fault injection (orders/reject).");
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order", limit_order);
    expect_ok(&r);
    resp_free(&r);

    /* forced insufficient balance (filters still come first) */
    control_ok("/_sim/balance/insufficient", "on=1");
    r = signed_req("POST", "/api/v3/order", limit_order);
    expect_error(&r, 400, -2010, "Account has insufficient balance for requested action.");
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=20000.001");
    expect_error(&r, 400, -1013, "Filter failure: PRICE_FILTER");
    resp_free(&r);
    control_ok("/_sim/balance/insufficient", "on=0");
    r = signed_req("POST", "/api/v3/order", limit_order);
    expect_ok(&r);
    resp_free(&r);

    /* set a balance */
    control_ok("/_sim/balance/set", "asset=ETH&free=12.5");
    cr_expect_eq(cq_dec_cmp(balance_of("ETH", NULL), cq_dec_make(125, 1)), 0);
    control_ok("/_sim/balance/set", "asset=DOGE&free=3");
    cr_expect_eq(cq_dec_cmp(balance_of("DOGE", NULL), cq_dec_make(3, 0)), 0);

    /* clock skew */
    control_ok("/_sim/clock/skew", "ms=-250000");
    /* serverTime is wall time, so it is bracketed by the wall clock read
     * before and after the request: no bound on how long the request takes
     * (1 ms either side for rounding). */
    int64_t sent_wall = wall_ms();
    r = http("GET", "/api/v3/time", NULL, NULL);
    int64_t answered_wall = wall_ms();
    int64_t server = (int64_t)json_integer_value(json_object_get(r.json, "serverTime"));
    cr_expect(server >= sent_wall - 250000 - 1 && server <= answered_wall - 250000 + 1,
              "serverTime %lld not in [%lld, %lld] - 250000", (long long)server,
              (long long)sent_wall, (long long)answered_wall);
    resp_free(&r);
    /* a client that signs with its own (true) clock is now "ahead" */
    r = signed_req("GET", "/api/v3/account", "");
    expect_error(&r, 400, -1021,
                 "Timestamp for this request was 1000ms ahead of the server's time.");
    resp_free(&r);
    control_ok("/_sim/clock/skew", "ms=0");

    /* market pause, WS faults */
    control_ok("/_sim/market/pause", "on=1");
    control_ok("/_sim/ws/stall", "on=true");
    r = http("POST", "/_sim/ws/drop", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "ws_drop_generation")), 1);
    resp_free(&r);
    r = http("GET", "/_sim/state", NULL, NULL);
    json_t *f = json_object_get(r.json, "faults");
    cr_expect(json_is_true(json_object_get(f, "market_paused")));
    cr_expect(json_is_true(json_object_get(f, "ws_stall")));
    resp_free(&r);

    /* set everything, then clear */
    control_ok("/_sim/rest/latency", "ms=5");
    control_ok("/_sim/rest/errors", "per_mille=7");
    control_ok("/_sim/orders/reject", "count=9");
    control_ok("/_sim/balance/insufficient", "on=1");
    control_ok("/_sim/clock/skew", "ms=123");
    control_ok("/_sim/faults/clear", NULL);
    r = http("GET", "/_sim/state", NULL, NULL);
    f = json_object_get(r.json, "faults");
    cr_expect_eq(json_integer_value(json_object_get(f, "rest_latency_ms")), 0);
    cr_expect_eq(json_integer_value(json_object_get(f, "rest_5xx_per_mille")), 0);
    cr_expect_eq(json_integer_value(json_object_get(f, "reject_next_orders")), 0);
    cr_expect_eq(json_integer_value(json_object_get(f, "clock_skew_ms")), 0);
    cr_expect(json_is_false(json_object_get(f, "force_insufficient")));
    cr_expect(json_is_false(json_object_get(f, "market_paused")));
    cr_expect(json_is_false(json_object_get(f, "ws_stall")));
    resp_free(&r);
}

Test(sim_rest, control_rejects_bad_params_methods_and_paths, .init = setup_default,
     .fini = teardown)
{
    const struct {
        const char *method, *path, *query, *param;
        long status;
    } cases[] = {
        {"POST", "/_sim/rest/latency", "ms=abc", "ms", 400},
        {"POST", "/_sim/rest/latency", "ms=-1", "ms", 400},
        {"POST", "/_sim/rest/latency", "ms=60001", "ms", 400},
        {"POST", "/_sim/rest/latency", NULL, "ms", 400},
        {"POST", "/_sim/rest/errors", "per_mille=1001", "per_mille", 400},
        {"POST", "/_sim/ratelimit/storm", "seconds=x", "seconds", 400},
        {"POST", "/_sim/orders/reject", "count=-3", "count", 400},
        {"POST", "/_sim/balance/insufficient", "on=maybe", "on", 400},
        {"POST", "/_sim/ws/stall", NULL, "on", 400},
        {"POST", "/_sim/market/pause", "on=2", "on", 400},
        {"POST", "/_sim/balance/set", "asset=usdt&free=1", "asset", 400},
        {"POST", "/_sim/balance/set", "asset=USDT&free=-1", "free", 400},
        {"POST", "/_sim/balance/set", "asset=USDT&free=1e3", "free", 400},
        {"POST", "/_sim/clock/skew", "ms=99999999999999999999", "ms", 400},
        {"POST", "/_sim/state", NULL, NULL, 405},
        {"GET", "/_sim/faults/clear", NULL, NULL, 405},
        {"POST", "/_sim/nothing", NULL, NULL, 404},
        {"POST", "/_sim/rest/latency", "ms=%zz", NULL, 400},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct resp r = http(cases[i].method, cases[i].path, cases[i].query, NULL);
        cr_expect_eq(r.status, cases[i].status, "%s %s?%s: %ld %s", cases[i].method, cases[i].path,
                     cases[i].query ? cases[i].query : "", r.status, r.body);
        cr_assert_not_null(r.json, "%s: not JSON", cases[i].path);
        cr_expect(json_is_false(json_object_get(r.json, "ok")), "%s", r.body);
        json_t *e = json_object_get(r.json, "error");
        cr_expect(json_is_string(json_object_get(e, "message")), "%s", r.body);
        if (cases[i].param != NULL) {
            cr_expect_str_eq(json_string_value(json_object_get(e, "param")), cases[i].param, "%s",
                             r.body);
        }
        resp_free(&r);
    }
    /* parameters in a form body work too */
    struct resp r = http("POST", "/_sim/rest/latency", NULL, "ms=0");
    cr_expect_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
}

/* Issue 17 (messages): a balance too large to hold was "must be a
 * non-negative decimal" with no maximum. Every too-large amount, parseable
 * (above the engine's 92233720368.54775807) or not (above any decimal's
 * ~9.2e18), names the maximum; the maximum itself is accepted. */
Test(sim_rest, balance_set_too_large_names_the_maximum, .init = setup_default, .fini = teardown)
{
    const char *too_large[] = {
        "asset=USDT&free=92233720368.54775808",    /* max + 1e-8: parses, engine refuses */
        "asset=USDT&free=100000000000",            /* 1e11: parses, engine refuses */
        "asset=USDT&free=9223372036854775808",     /* 2^63: does not parse */
        "asset=USDT&free=99999999999999999999999", /* far beyond any decimal */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(too_large); i++) {
        struct resp r = http("POST", "/_sim/balance/set", too_large[i], NULL);
        cr_expect_eq(r.status, 400, "%s: %ld %s", too_large[i], r.status, r.body);
        cr_assert_not_null(r.json, "%s: not JSON", too_large[i]);
        json_t *e = json_object_get(r.json, "error");
        cr_expect_str_eq(json_string_value(json_object_get(e, "param")), "free", "%s", r.body);
        const char *msg = json_string_value(json_object_get(e, "message"));
        cr_expect(msg != NULL && strstr(msg, "92233720368.54775807") != NULL,
                  "%s: the message names the maximum: %s", too_large[i], r.body);
        resp_free(&r);
    }
    /* a bad amount that is not too large still says what is accepted */
    struct resp r = http("POST", "/_sim/balance/set", "asset=USDT&free=1e3", NULL);
    cr_expect_eq(r.status, 400, "%s", r.body);
    json_t *e = json_object_get(r.json, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    cr_expect(msg != NULL && strstr(msg, "non-negative decimal") != NULL &&
                  strstr(msg, "92233720368.54775807") != NULL,
              "%s", r.body);
    resp_free(&r);
    control_ok("/_sim/balance/set", "asset=USDT&free=92233720368.54775807"); /* the maximum */
}

Test(sim_rest, loopback_rule_helper)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    cr_expect(cq_sim__peer_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "127.9.8.7", &a4.sin_addr);
    cr_expect(cq_sim__peer_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
    cr_expect_not(cq_sim__peer_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "128.0.0.1", &a4.sin_addr);
    cr_expect_not(cq_sim__peer_is_loopback((struct sockaddr *)&a4));
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    cr_expect(cq_sim__peer_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
    cr_expect(cq_sim__peer_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:192.168.1.1", &a6.sin6_addr);
    cr_expect_not(cq_sim__peer_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "fe80::1", &a6.sin6_addr);
    cr_expect_not(cq_sim__peer_is_loopback((struct sockaddr *)&a6));
    cr_expect_not(cq_sim__peer_is_loopback(NULL));
}

/* A non-loopback IPv4 address of this host, if it has one. */
static bool local_non_loopback_ipv4(char *out, size_t len)
{
    struct ifaddrs *ifs = NULL;
    bool found = false;
    if (getifaddrs(&ifs) != 0) {
        return false;
    }
    for (struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
        if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET &&
            !cq_sim__peer_is_loopback(i->ifa_addr)) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, out,
                      (socklen_t)len);
            found = true;
        }
    }
    freeifaddrs(ifs);
    return found;
}

Test(sim_rest, control_path_refuses_non_loopback_peers, .fini = teardown)
{
    char ip[INET_ADDRSTRLEN];
    if (!local_non_loopback_ipv4(ip, sizeof(ip))) {
        cr_skip_test("this host has no non-loopback IPv4 address");
    }
    struct sim_setup s = {.bind = "0.0.0.0"};
    start_sim(&s);
    const char *colon = strrchr(g_base, ':');
    char base[128];
    snprintf(base, sizeof(base), "http://%s%s", ip, colon);
    struct resp r = http_full(base, "GET", "/_sim/state", NULL, NULL, NULL, NULL, NULL);
    cr_expect_eq(r.status, 403, "%s", r.body);
    cr_expect(json_is_false(json_object_get(r.json, "ok")));
    resp_free(&r);
    r = http_full(base, "POST", "/_sim/faults/clear", NULL, NULL, NULL, NULL, NULL);
    cr_expect_eq(r.status, 403);
    resp_free(&r);
    /* the exchange itself answers anyone */
    r = http_full(base, "GET", "/api/v3/ping", NULL, NULL, NULL, NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
    /* and loopback clients still reach the control path */
    snprintf(base, sizeof(base), "http://127.0.0.1%s", colon);
    r = http_full(base, "GET", "/_sim/state", NULL, NULL, NULL, NULL, NULL);
    cr_expect_eq(r.status, 200);
    resp_free(&r);
}

/* ---- the control token (issue 17 item 6) ------------------------------------------- */

#define CTL_TOKEN "c0ffee0123456789abcdef0123456789"

static void setup_control_token(void)
{
    struct sim_setup s = {.control_token = CTL_TOKEN};
    start_sim(&s);
}

static struct resp control_with(const char *method, const char *path, const char *auth)
{
    return http_full(g_base, method, path, NULL, NULL, NULL, NULL, auth);
}

static void expect_401_naming_the_fix(struct resp *r)
{
    cr_expect_eq(r->status, 401, "%ld %s", r->status, r->body);
    cr_expect(json_is_false(json_object_get(r->json, "ok")), "%s", r->body);
    const char *msg =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    cr_expect(msg != NULL && strstr(msg, "Authorization: Bearer") != NULL, "%s", r->body);
    cr_expect(r->body == NULL || strstr(r->body, CTL_TOKEN) == NULL, "the token leaked: %s",
              r->body);
}

Test(sim_rest, control_token_required_when_set, .init = setup_control_token, .fini = teardown)
{
    struct resp r = control_with("GET", "/_sim/state", NULL);
    expect_401_naming_the_fix(&r);
    resp_free(&r);
    r = control_with("POST", "/_sim/market/pause?on=1", NULL);
    expect_401_naming_the_fix(&r);
    resp_free(&r);
    /* wrong token of the same length, a prefix, a longer one, another scheme */
    static const char *const wrong[] = {
        "Authorization: Bearer c0ffee0123456789abcdef012345678a",
        "Authorization: Bearer c0ffee0123456789abcdef012345678",
        "Authorization: Bearer " CTL_TOKEN "0",
        "Authorization: Basic " CTL_TOKEN,
        "Authorization: Bearer",
        "Authorization: " CTL_TOKEN,
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(wrong); i++) {
        r = control_with("GET", "/_sim/state", wrong[i]);
        cr_expect_eq(r.status, 401, "%s -> %ld", wrong[i], r.status);
        resp_free(&r);
    }
    /* the market was not paused by the refused request */
    r = control_with("GET", "/_sim/state", "Authorization: Bearer " CTL_TOKEN);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_not(json_is_true(json_object_get(json_object_get(r.json, "faults"), "market_paused")),
                  "%s", r.body);
    resp_free(&r);
    r = control_with("POST", "/_sim/market/pause?on=1", "Authorization: bearer  " CTL_TOKEN);
    cr_expect_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
    r = control_with("POST", "/_sim/faults/clear", "Authorization: Bearer " CTL_TOKEN);
    cr_expect_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
    /* the exchange itself does not need the token */
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
}

Test(sim_rest, control_token_bounds_and_shape)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_sim_options o = {.symbols = symbols, .n_symbols = 1, .speed = 1, .seed = 1};
    struct cq_err err;
    char tok[CQ_SIM_CONTROL_TOKEN_MAX + 2];
    cq_log_set_level(CQ_LOG_ERROR);
    struct {
        size_t len;
        bool ok;
    } rows[] = {{CQ_SIM_CONTROL_TOKEN_MIN - 1, false},
                {CQ_SIM_CONTROL_TOKEN_MIN, true},
                {CQ_SIM_CONTROL_TOKEN_MAX, true},
                {CQ_SIM_CONTROL_TOKEN_MAX + 1, false}};
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        memset(tok, 'a', rows[i].len);
        tok[rows[i].len] = '\0';
        o.control_token = tok;
        struct cq_sim *s = cq_sim_new(&o, &err);
        cr_expect_eq(s != NULL, rows[i].ok, "length %zu", rows[i].len);
        if (s == NULL) {
            cr_expect(strstr(err.message, "control token") != NULL, "%s", err.message);
            cr_expect(strstr(err.message, "aaaa") == NULL, "value echoed: %s", err.message);
        }
        cq_sim_free(s);
    }
    o.control_token = "spaces are not allowed in it";
    cr_expect_null(cq_sim_new(&o, &err));
    o.control_token = NULL;
    o.api_secret = "";
    cr_expect_null(cq_sim_new(&o, &err), "an empty secret is refused");
    cr_expect(strstr(err.message, "API secret") != NULL, "%s", err.message);
    o.api_secret = NULL;
    o.api_key = "key with space";
    cr_expect_null(cq_sim_new(&o, &err), "a key no header can carry is refused");
}

/* 9.6: paper mode passes generated credentials; any well-formed pair works. */
Test(sim_rest, generated_secret_is_accepted, .fini = teardown)
{
    struct sim_setup s = {.secret =
                              "Gen3rated-Secret-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b"};
    start_sim(&s);
    struct resp r = signed_req("GET", "/api/v3/account", "");
    expect_ok(&r);
    resp_free(&r);
}

/* ---- slow clients (issue 17 item 2) ------------------------------------------------- */

static int sim_port(void)
{
    const char *colon = strrchr(g_base, ':');
    return atoi(colon + 1);
}

/* A TCP connection to the simulator from source address src ("127.0.0.x"). */
static int connect_from(const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sim_port())};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        off += (size_t)w;
    }
    return true;
}

/* Read until the peer closes or timeout_ms passes; the HTTP status, 0 when
 * closed without an answer, -1 on timeout. */
static int read_status(int fd, int timeout_ms, char *out, size_t out_len)
{
    size_t got = 0;
    int64_t end = mono_ms() + timeout_ms;
    out[0] = '\0';
    for (;;) {
        int64_t left = end - mono_ms();
        if (left <= 0) {
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, out + got, out_len - 1 - got, 0);
        if (n <= 0 || got + (size_t)n >= out_len - 1) {
            if (n > 0) {
                got += (size_t)n;
            }
            break;
        }
        got += (size_t)n;
        out[got] = '\0';
        /* Content-Length bodies are short here: stop once the body arrived */
        const char *hend = strstr(out, "\r\n\r\n");
        const char *cl = strstr(out, "Content-Length:");
        if (hend != NULL && cl != NULL && cl < hend &&
            got >= (size_t)(hend + 4 - out) + (size_t)atol(cl + 15)) {
            break;
        }
    }
    out[got] = '\0';
    int status = 0;
    if (got > 0 && sscanf(out, "HTTP/1.%*d %d", &status) != 1) {
        status = 0;
    }
    return status;
}

static json_t *rest_conn_state(void)
{
    struct resp r = http("GET", "/_sim/state", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = json_incref(json_object_get(r.json, "rest_connections"));
    cr_assert_not_null(j, "%s", r.body);
    resp_free(&r);
    return j;
}

static json_int_t rest_conn_stat(const char *name)
{
    json_t *j = rest_conn_state();
    json_int_t v = json_integer_value(json_object_get(j, name));
    json_decref(j);
    return v;
}

#define SLOW_CLIENTS 140

Test(sim_rest, slow_clients_cannot_keep_a_well_behaved_client_out, .init = setup_default,
     .fini = teardown, .timeout = 60)
{
    /* 140 connections from the same loopback address as the well-behaved
     * client, each with half a request head, more than every slot (128). */
    int fds[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = connect_from("127.0.0.1");
        cr_assert_geq(fds[i], 0, "connection %d", i);
        cr_assert(send_all(fds[i], "GET /api/v3/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    }
    int64_t t0 = mono_ms();
    struct resp r = http("GET", "/api/v3/ping", NULL, NULL);
    int64_t took = mono_ms() - t0;
    expect_ok(&r);
    resp_free(&r);
    /* well before the head deadline frees anything: the slow ones made room */
    cr_expect_lt(took, (int64_t)CQ_SIM_REST_HEAD_DEADLINE_MS, "ping took %lld ms", (long long)took);
    cr_expect_geq(rest_conn_stat("evicted_for_room"), SLOW_CLIENTS - CQ_SIM_REST_PER_IP_MAX);
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        close(fds[i]);
    }
}

static void setup_short_deadline(void)
{
    struct sim_setup s = {.head_deadline_ms = 1000};
    start_sim(&s);
}

Test(sim_rest, trickling_request_head_is_cut_at_the_deadline_from_accept,
     .init = setup_short_deadline, .fini = teardown, .timeout = 60)
{
    /* One header line every 200 ms: never idle long enough for an
     * inactivity timeout, but the head is not in 1000 ms after accept. */
    int fd = connect_from("127.0.0.1");
    cr_assert_geq(fd, 0);
    int64_t t0 = mono_ms();
    cr_assert(send_all(fd, "GET /api/v3/ping HTTP/1.1\r\n"));
    bool closed = false;
    char buf[512];
    while (!closed && mono_ms() - t0 < 15000) {
        if (!send_all(fd, "X-Slow: 1\r\n")) {
            closed = true;
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) > 0) {
            ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
            cr_assert_leq(n, 0, "the trickled request was answered");
            closed = true;
        }
    }
    int64_t took = mono_ms() - t0;
    cr_assert(closed, "still open after %lld ms", (long long)took);
    cr_expect_geq(took, 1000 - 50, "closed before its deadline: %lld ms", (long long)took);
    close(fd);
    cr_expect_eq(rest_conn_stat("evicted_deadline"), 1);
    /* the server still answers */
    struct resp r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
}

struct busy_client {
    pthread_t th;
    int status;
};

static void *busy_ping(void *arg)
{
    struct busy_client *b = arg;
    char buf[1024];
    int fd = connect_from("127.0.0.2");
    b->status = -2;
    if (fd >= 0 &&
        send_all(fd, "GET /api/v3/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) {
        b->status = read_status(fd, 30000, buf, sizeof(buf));
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static void setup_per_ip_4(void)
{
    struct sim_setup s = {.per_ip_max = 4};
    start_sim(&s);
}

Test(sim_rest, per_address_cap_answers_a_fast_503_when_every_slot_is_busy, .init = setup_per_ip_4,
     .fini = teardown, .timeout = 60)
{
    int fd127_2 = connect_from("127.0.0.2");
    if (fd127_2 < 0) {
        cr_skip_test("cannot use 127.0.0.2 as a source address here");
    }
    close(fd127_2);
    control_ok("/_sim/rest/latency", "ms=4000");
    /* exactly the cap: 4 requests from 127.0.0.2, all admitted (busy sleeping) */
    struct busy_client b[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_create(&b[i].th, NULL, busy_ping, &b[i]), 0);
    }
    int64_t t0 = mono_ms();
    json_int_t busy = 0;
    /* Until exactly 4: a connection this test closed a moment ago (the
     * 127.0.0.2 probe, the /_sim/ control call) can still be counted open
     * for an instant, which reads as a fifth busy one (seen once on CI). */
    while (busy != 4 && mono_ms() - t0 < 20000) {
        json_t *j = rest_conn_state();
        /* open connections minus the waiting ones minus this /_sim/ request */
        busy = json_integer_value(json_object_get(j, "open")) -
               json_integer_value(json_object_get(j, "waiting")) - 1;
        json_decref(j);
    }
    cr_assert_eq(busy, 4, "the 4 requests never became busy");
    /* one over the cap from the same address: 503 at once, not after 4 s */
    char buf[1024];
    int fd = connect_from("127.0.0.2");
    cr_assert_geq(fd, 0);
    int64_t t1 = mono_ms();
    cr_assert(send_all(fd, "GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n"));
    int st = read_status(fd, 30000, buf, sizeof(buf));
    int64_t took = mono_ms() - t1;
    close(fd);
    cr_expect_eq(st, 503, "%d %s", st, buf);
    cr_expect(strstr(buf, "Retry-After: 1\r") != NULL, "%s", buf);
    cr_expect(strstr(buf, "Too many connections") != NULL, "%s", buf);
    cr_expect_lt(took, 4000, "the 503 waited for a slot: %lld ms", (long long)took);
    /* another address is not affected by 127.0.0.2's cap */
    struct resp r = http("GET", "/_sim/state", NULL, NULL);
    cr_expect_eq(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 4; i++) {
        pthread_join(b[i].th, NULL);
        cr_expect_eq(b[i].status, 200, "busy client %d got %d", i, b[i].status);
    }
    cr_expect_eq(rest_conn_stat("refused_busy"), 1);
}

/* ---- order flow -------------------------------------------------------------------- */

Test(sim_rest, limit_order_lifecycle_with_locked_balance, .init = setup_default, .fini = teardown)
{
    cq_dec locked;
    cq_dec usdt0 = balance_of("USDT", &locked);
    cr_expect_eq(cq_dec_cmp(usdt0, cq_dec_make(10000, 0)), 0);
    cr_expect(cq_dec_is_zero(locked));

    struct resp r = signed_req("POST", "/api/v3/order",
                               "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                               "&quantity=0.01&price=20000&newClientOrderId=flow-1");
    expect_ok(&r);
    /* LIMIT defaults to FULL */
    cr_expect_str_eq(jstr(r.json, "status"), "NEW");
    cr_expect(json_is_array(json_object_get(r.json, "fills")));
    cr_expect_eq(json_array_size(json_object_get(r.json, "fills")), 0);
    cr_expect_str_eq(jstr(r.json, "clientOrderId"), "flow-1");
    cr_expect_eq(json_integer_value(json_object_get(r.json, "orderListId")), -1);
    cr_expect_str_eq(jstr(r.json, "cummulativeQuoteQty"), "0.00000000");
    cr_expect(json_is_integer(json_object_get(r.json, "transactTime")));
    cr_expect(json_is_integer(json_object_get(r.json, "workingTime")));
    json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);

    cq_dec usdt1 = balance_of("USDT", &locked);
    cr_expect_eq(cq_dec_cmp(locked, cq_dec_make(200, 0)), 0);
    cr_expect_eq(cq_dec_cmp(usdt1, cq_dec_make(9800, 0)), 0);

    char q[128];
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_ok(&r);
    static const char *const query_keys[] = {"symbol",
                                             "orderId",
                                             "orderListId",
                                             "clientOrderId",
                                             "price",
                                             "origQty",
                                             "executedQty",
                                             "cummulativeQuoteQty",
                                             "status",
                                             "timeInForce",
                                             "type",
                                             "side",
                                             "stopPrice",
                                             "icebergQty",
                                             "time",
                                             "updateTime",
                                             "isWorking",
                                             "workingTime",
                                             "origQuoteOrderQty",
                                             "selfTradePreventionMode"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(query_keys); i++) {
        cr_expect_not_null(json_object_get(r.json, query_keys[i]), "GET /order lacks %s",
                           query_keys[i]);
    }
    cr_expect(json_is_true(json_object_get(r.json, "isWorking")));
    cr_expect_str_eq(jstr(r.json, "price"), "20000.00000000");
    resp_free(&r);

    /* by client id, and by both (they must match) */
    r = signed_req("GET", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=flow-1");
    expect_ok(&r);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "orderId")), id);
    resp_free(&r);
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld&origClientOrderId=flow-1", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_ok(&r);
    resp_free(&r);
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld&origClientOrderId=other", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_error(&r, 400, -2013, "Order does not exist.");
    resp_free(&r);
    /* wrong symbol: not found there */
    snprintf(q, sizeof(q), "symbol=ETHUSDT&orderId=%lld", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_error(&r, 400, -2013, "Order does not exist.");
    resp_free(&r);

    r = signed_req("GET", "/api/v3/openOrders", "symbol=BTCUSDT");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 1);
    resp_free(&r);

    /* cancel restriction that does not hold */
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld&cancelRestrictions=ONLY_PARTIALLY_FILLED",
             (long long)id);
    r = signed_req("DELETE", "/api/v3/order", q);
    expect_error(&r, 400, -2011, "Order was not canceled due to cancel restrictions.");
    resp_free(&r);

    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld&newClientOrderId=my-cancel", (long long)id);
    r = signed_req("DELETE", "/api/v3/order", q);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "CANCELED");
    cr_expect_str_eq(jstr(r.json, "origClientOrderId"), "flow-1");
    cr_expect_str_eq(jstr(r.json, "clientOrderId"), "my-cancel");
    resp_free(&r);

    r = signed_req("DELETE", "/api/v3/order", q);
    expect_error(&r, 400, -2011, "Unknown order sent.");
    resp_free(&r);

    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)id);
    r = signed_req("GET", "/api/v3/order", q);
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "CANCELED");
    cr_expect(json_is_false(json_object_get(r.json, "isWorking")));
    resp_free(&r);

    cq_dec usdt2 = balance_of("USDT", &locked);
    cr_expect(cq_dec_is_zero(locked));
    cr_expect_eq(cq_dec_cmp(usdt2, cq_dec_make(10000, 0)), 0);

    r = signed_req("GET", "/api/v3/openOrders", "");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 0);
    resp_free(&r);
}

Test(sim_rest, market_order_fills_and_balances_move_exactly, .init = setup_default,
     .fini = teardown)
{
    cq_dec usdt0 = balance_of("USDT", NULL);
    cq_dec btc0 = balance_of("BTC", NULL);
    struct resp r =
        signed_req("POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01");
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "FILLED");
    cr_expect_str_eq(jstr(r.json, "type"), "MARKET");
    cr_expect_str_eq(jstr(r.json, "executedQty"), "0.01000000");
    json_t *fills = json_object_get(r.json, "fills");
    cr_assert(json_array_size(fills) >= 1, "%s", r.body);
    cq_dec qty_sum = CQ_DEC_ZERO, quote_sum = CQ_DEC_ZERO, fee_sum = CQ_DEC_ZERO;
    size_t i;
    json_t *f;
    json_array_foreach(fills, i, f)
    {
        cr_expect_str_eq(jstr(f, "commissionAsset"), "BTC");
        cr_expect(is_8dp(jstr(f, "price")) && is_8dp(jstr(f, "qty")) &&
                  is_8dp(jstr(f, "commission")));
        cr_expect(json_is_integer(json_object_get(f, "tradeId")));
        cq_dec q = jdec_of(f, "qty"), p = jdec_of(f, "price"), pq;
        cr_assert_eq(cq_dec_add(qty_sum, q, &qty_sum), 0);
        cr_assert_eq(cq_dec_mul(p, q, 8, CQ_ROUND_DOWN, &pq), 0);
        cr_assert_eq(cq_dec_add(quote_sum, pq, &quote_sum), 0);
        cr_assert_eq(cq_dec_add(fee_sum, jdec_of(f, "commission"), &fee_sum), 0);
    }
    cr_expect_eq(cq_dec_cmp(qty_sum, jdec_of(r.json, "executedQty")), 0);
    cq_dec cum = jdec_of(r.json, "cummulativeQuoteQty");
    cr_expect_eq(cq_dec_cmp(quote_sum, cum), 0);
    json_int_t order_id = json_integer_value(json_object_get(r.json, "orderId"));
    size_t n_fills = json_array_size(fills);
    resp_free(&r);

    cq_dec usdt1 = balance_of("USDT", NULL), btc1 = balance_of("BTC", NULL);
    cq_dec spent, got, net;
    cr_assert_eq(cq_dec_sub(usdt0, usdt1, &spent), 0);
    cr_assert_eq(cq_dec_sub(btc1, btc0, &got), 0);
    cr_assert_eq(cq_dec_sub(qty_sum, fee_sum, &net), 0);
    cr_expect_eq(cq_dec_cmp(spent, cum), 0, "USDT moved by exactly cummulativeQuoteQty");
    cr_expect_eq(cq_dec_cmp(got, net), 0, "BTC moved by exactly executed - commission");

    /* myTrades, with and without orderId */
    char q[96];
    snprintf(q, sizeof(q), "symbol=BTCUSDT&orderId=%lld", (long long)order_id);
    r = signed_req("GET", "/api/v3/myTrades", q);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), n_fills);
    json_t *t = json_array_get(r.json, 0);
    static const char *const trade_keys[] = {"symbol",          "id",   "orderId",  "orderListId",
                                             "price",           "qty",  "quoteQty", "commission",
                                             "commissionAsset", "time", "isBuyer",  "isMaker",
                                             "isBestMatch"};
    for (size_t k = 0; k < CQ_ARRAY_LEN(trade_keys); k++) {
        cr_expect_not_null(json_object_get(t, trade_keys[k]), "myTrades lacks %s", trade_keys[k]);
    }
    cr_expect(json_is_true(json_object_get(t, "isBuyer")));
    cr_expect(json_is_false(json_object_get(t, "isMaker")));
    resp_free(&r);

    /* quoteOrderQty SELL, RESULT response (no fills) */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=100"
                   "&newOrderRespType=RESULT");
    expect_ok(&r);
    cr_expect_null(json_object_get(r.json, "fills"));
    cr_expect_str_eq(jstr(r.json, "origQuoteOrderQty"), "100.00000000");
    cr_expect_str_eq(jstr(r.json, "side"), "SELL");
    resp_free(&r);

    /* ACK */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newOrderRespType=ACK");
    expect_ok(&r);
    cr_expect_eq(json_object_size(r.json), 5, "ACK has 5 fields: %s", r.body);
    resp_free(&r);

    r = signed_req("GET", "/api/v3/allOrders", "symbol=BTCUSDT");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 3);
    resp_free(&r);
    r = signed_req("GET", "/api/v3/allOrders", "symbol=BTCUSDT&limit=2");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 2);
    resp_free(&r);
    r = signed_req("GET", "/api/v3/myTrades", "symbol=BTCUSDT&limit=1");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 1);
    resp_free(&r);
}

Test(sim_rest, limit_maker_defaults_to_ack_and_cancel_all, .init = setup_default, .fini = teardown)
{
    struct resp r = signed_req("POST", "/api/v3/order",
                               "symbol=BTCUSDT&side=BUY&type=LIMIT_MAKER&quantity=0.001"
                               "&price=20000");
    expect_ok(&r);
    cr_expect_null(json_object_get(r.json, "price"), "LIMIT_MAKER defaults to ACK: %s", r.body);
    cr_expect_not_null(json_object_get(r.json, "orderId"));
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=19000");
    expect_ok(&r);
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order",
                   "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01"
                   "&price=1000");
    expect_ok(&r);
    resp_free(&r);

    r = signed_req("GET", "/api/v3/openOrders", "");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 3);
    resp_free(&r);

    r = signed_req("DELETE", "/api/v3/openOrders", "symbol=BTCUSDT");
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 2, "%s", r.body);
    json_t *c = json_array_get(r.json, 0);
    cr_expect_str_eq(jstr(c, "status"), "CANCELED");
    cr_expect_eq(strlen(jstr(c, "clientOrderId")), 22);
    cr_expect_str_neq(jstr(c, "clientOrderId"), jstr(c, "origClientOrderId"));
    resp_free(&r);

    r = signed_req("GET", "/api/v3/openOrders", "");
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 1);
    cr_expect_str_eq(jstr(json_array_get(r.json, 0), "symbol"), "ETHUSDT");
    resp_free(&r);

    r = signed_req("POST", "/api/v3/order/test",
                   "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001");
    expect_ok(&r);
    cr_expect_eq(json_object_size(r.json), 0);
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order/test",
                   "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001"
                   "&computeCommissionRates=true");
    expect_ok(&r);
    cr_expect_str_eq(jstr(json_object_get(r.json, "standardCommissionForOrder"), "taker"),
                     "0.00100000");
    resp_free(&r);
}

Test(sim_rest, user_data_stream_lifecycle, .init = setup_default, .fini = teardown)
{
    struct resp r =
        http_full(g_base, "POST", "/api/v3/userDataStream", NULL, NULL, KEY, NULL, NULL);
    expect_ok(&r);
    char key[80];
    cq_strlcpy(key, jstr(r.json, "listenKey"), sizeof(key));
    cr_expect_eq(strlen(key), 64);
    resp_free(&r);
    /* again: the same key */
    r = http_full(g_base, "POST", "/api/v3/userDataStream", NULL, NULL, KEY, NULL, NULL);
    cr_expect_str_eq(jstr(r.json, "listenKey"), key);
    resp_free(&r);
    char body[128];
    snprintf(body, sizeof(body), "listenKey=%s", key);
    r = http_full(g_base, "PUT", "/api/v3/userDataStream", NULL, body, KEY, NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(json_object_size(r.json), 0);
    resp_free(&r);
    /* connector style: in the query */
    r = http_full(g_base, "DELETE", "/api/v3/userDataStream", body, NULL, KEY, NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
    r = http_full(g_base, "PUT", "/api/v3/userDataStream", body, NULL, KEY, NULL, NULL);
    expect_error(&r, 400, -1125, "This listenKey does not exist.");
    resp_free(&r);
    r = http_full(g_base, "POST", "/api/v3/userDataStream", NULL, NULL, "wrong", NULL, NULL);
    expect_error(&r, 401, -2015, "Invalid API-key, IP, or permissions for action.");
    resp_free(&r);
}

/* ---- market data shapes ------------------------------------------------------------ */

Test(sim_rest, market_data_shapes, .init = setup_default, .fini = teardown)
{
    struct resp r = http("GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1m&limit=5", NULL);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.json), 5, "%s", r.body);
    size_t i;
    json_t *k;
    json_int_t prev_open = 0;
    json_array_foreach(r.json, i, k)
    {
        cr_assert_eq(json_array_size(k), 12);
        cr_expect(json_is_integer(json_array_get(k, 0)));
        for (size_t j = 1; j <= 5; j++) {
            cr_expect(is_8dp(json_string_value(json_array_get(k, j))));
        }
        cr_expect(json_is_integer(json_array_get(k, 6)));
        cr_expect(json_is_string(json_array_get(k, 7)));
        cr_expect(json_is_integer(json_array_get(k, 8)));
        cr_expect(json_is_string(json_array_get(k, 9)) && json_is_string(json_array_get(k, 10)));
        cr_expect_str_eq(json_string_value(json_array_get(k, 11)), "0");
        json_int_t open = json_integer_value(json_array_get(k, 0));
        cr_expect_eq(json_integer_value(json_array_get(k, 6)), open + 60000 - 1);
        cr_expect_gt(open, prev_open, "chronological");
        prev_open = open;
    }
    resp_free(&r);
    r = http("GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1h", NULL);
    expect_ok(&r);
    cr_expect(json_array_size(r.json) >= 1 && json_array_size(r.json) <= 500);
    json_t *k0 = json_array_get(r.json, 0);
    cr_expect_eq(json_integer_value(json_array_get(k0, 6)) -
                     json_integer_value(json_array_get(k0, 0)),
                 3600000 - 1);
    resp_free(&r);
    r = http("GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1m&limit=5000", NULL);
    expect_ok(&r);
    cr_expect_leq(json_array_size(r.json), 1000);
    resp_free(&r);

    r = http("GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5", NULL);
    expect_ok(&r);
    cr_expect(json_is_integer(json_object_get(r.json, "lastUpdateId")));
    json_t *bids = json_object_get(r.json, "bids"), *asks = json_object_get(r.json, "asks");
    cr_assert(json_array_size(bids) >= 1 && json_array_size(bids) <= 5);
    cr_assert(json_array_size(asks) >= 1 && json_array_size(asks) <= 5);
    for (i = 1; i < json_array_size(bids); i++) {
        cq_dec a, b;
        cr_assert_eq(cq_dec_parse(json_string_value(json_array_get(json_array_get(bids, i - 1), 0)),
                                  (size_t)-1, &a),
                     0);
        cr_assert_eq(cq_dec_parse(json_string_value(json_array_get(json_array_get(bids, i), 0)),
                                  (size_t)-1, &b),
                     0);
        cr_expect_gt(cq_dec_cmp(a, b), 0, "bids best first");
    }
    for (i = 1; i < json_array_size(asks); i++) {
        cq_dec a, b;
        cr_assert_eq(cq_dec_parse(json_string_value(json_array_get(json_array_get(asks, i - 1), 0)),
                                  (size_t)-1, &a),
                     0);
        cr_assert_eq(cq_dec_parse(json_string_value(json_array_get(json_array_get(asks, i), 0)),
                                  (size_t)-1, &b),
                     0);
        cr_expect_lt(cq_dec_cmp(a, b), 0, "asks best first");
    }
    resp_free(&r);

    r = http("GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT", NULL);
    expect_ok(&r);
    static const char *const full_str[] = {
        "symbol",     "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice",
        "lastPrice",  "lastQty",     "bidPrice",           "bidQty",           "askPrice",
        "askQty",     "openPrice",   "highPrice",          "lowPrice",         "volume",
        "quoteVolume"};
    for (i = 0; i < CQ_ARRAY_LEN(full_str); i++) {
        cr_expect(json_is_string(json_object_get(r.json, full_str[i])), "FULL lacks %s",
                  full_str[i]);
    }
    static const char *const nums[] = {"openTime", "closeTime", "firstId", "lastId", "count"};
    for (i = 0; i < CQ_ARRAY_LEN(nums); i++) {
        cr_expect(json_is_integer(json_object_get(r.json, nums[i])), "lacks %s", nums[i]);
    }
    resp_free(&r);
    r = http("GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT&type=MINI", NULL);
    expect_ok(&r);
    cr_expect_null(json_object_get(r.json, "priceChange"));
    cr_expect_null(json_object_get(r.json, "bidPrice"));
    cr_expect_null(json_object_get(r.json, "lastQty"));
    cr_expect(json_is_string(json_object_get(r.json, "lastPrice")));
    cr_expect(json_is_string(json_object_get(r.json, "quoteVolume")));
    resp_free(&r);
    r = http("GET", "/api/v3/ticker/24hr", NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 3);
    resp_free(&r);

    r = http("GET", "/api/v3/ticker/price", "symbol=ETHUSDT", NULL);
    expect_ok(&r);
    cr_expect(json_is_object(r.json));
    cr_expect_str_eq(jstr(r.json, "symbol"), "ETHUSDT");
    cr_expect(is_8dp(jstr(r.json, "price")));
    resp_free(&r);
    r = http("GET", "/api/v3/ticker/price", "symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D", NULL);
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 2);
    resp_free(&r);
    r = http("GET", "/api/v3/ticker/bookTicker", NULL, NULL);
    expect_ok(&r);
    cr_expect_eq(json_array_size(r.json), 3);
    json_t *bt = json_array_get(r.json, 0);
    cr_expect(json_is_string(json_object_get(bt, "bidQty")) &&
              json_is_string(json_object_get(bt, "askPrice")));
    resp_free(&r);

    r = http("GET", "/api/v3/exchangeInfo", "symbols=%5B%22ETHUSDT%22%5D", NULL);
    expect_ok(&r);
    json_t *syms = json_object_get(r.json, "symbols");
    cr_assert_eq(json_array_size(syms), 1);
    json_t *s0 = json_array_get(syms, 0);
    cr_expect_str_eq(jstr(s0, "symbol"), "ETHUSDT");
    json_t *types = json_object_get(s0, "orderTypes");
    /* exactly production ETHUSDT's (2024-09-08 exchangeInfo) */
    static const char *const want_types[] = {"LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                                             "TAKE_PROFIT_LIMIT"};
    cr_expect_eq(json_array_size(types), CQ_ARRAY_LEN(want_types));
    for (i = 0; i < CQ_ARRAY_LEN(want_types) && i < json_array_size(types); i++) {
        cr_expect_str_eq(json_string_value(json_array_get(types, i)), want_types[i]);
    }
    json_t *filters = json_object_get(s0, "filters");
    static const char *const want_filters[] = {
        "PRICE_FILTER",    "LOT_SIZE",       "ICEBERG_PARTS",
        "MARKET_LOT_SIZE", "TRAILING_DELTA", "PERCENT_PRICE_BY_SIDE",
        "NOTIONAL",        "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"};
    cr_expect_eq(json_array_size(filters), CQ_ARRAY_LEN(want_filters));
    for (i = 0; i < CQ_ARRAY_LEN(want_filters) && i < json_array_size(filters); i++) {
        cr_expect_str_eq(jstr(json_array_get(filters, i), "filterType"), want_filters[i]);
    }
    cr_expect(json_is_integer(json_object_get(json_array_get(filters, 7), "maxNumOrders")));
    cr_expect(is_8dp(jstr(json_array_get(filters, 0), "tickSize")));
    resp_free(&r);
    r = http("GET", "/api/v3/exchangeInfo", "permissions=MARGIN", NULL);
    expect_ok(&r);
    cr_expect_eq(json_array_size(json_object_get(r.json, "symbols")), 0);
    resp_free(&r);
    r = http("GET", "/api/v3/exchangeInfo", "permissions=%5B%22MARGIN%22,%22SPOT%22%5D", NULL);
    expect_ok(&r);
    cr_expect_eq(json_array_size(json_object_get(r.json, "symbols")), 3);
    resp_free(&r);

    /* microseconds on request */
    r = http_full(g_base, "GET", "/api/v3/time", NULL, NULL, NULL, NULL,
                  "X-MBX-TIME-UNIT: MICROSECOND");
    expect_ok(&r);
    cr_expect_gt(json_integer_value(json_object_get(r.json, "serverTime")), 1000000000000000LL);
    resp_free(&r);
}

/* ---- malformed input ---------------------------------------------------------------- */

static char *repeat(const char *prefix, char c, size_t n)
{
    size_t pl = strlen(prefix);
    char *s = malloc(pl + n + 1);
    cr_assert_not_null(s);
    memcpy(s, prefix, pl);
    memset(s + pl, c, n);
    s[pl + n] = '\0';
    return s;
}

/* The body bound through the reader the admin API shares (cq/http_body.h):
 * a form body of exactly SIM_BODY_MAX_BYTES is parsed, one byte more is 413
 * -1101, with Content-Length and chunked (no Content-Length); /_sim/state
 * counts the refusals. */
Test(sim_rest, body_bound_is_exact_with_and_without_content_length, .init = setup_default,
     .fini = teardown)
{
    static const char prefix[] = "symbol=BTCUSDT&x=";
    for (int chunked = 0; chunked <= 1; chunked++) {
        const char *te = chunked ? "Transfer-Encoding: chunked" : NULL;
        char *at = repeat(prefix, 'D', SIM_BODY_MAX_BYTES - (sizeof prefix - 1));
        cr_assert_eq(strlen(at), SIM_BODY_MAX_BYTES);
        struct resp r = http_full(g_base, "POST", "/api/v3/order", NULL, at, KEY, NULL, te);
        cr_expect_neq(r.status, 413, "exactly %d bytes (chunked %d) must be read: %.200s",
                      SIM_BODY_MAX_BYTES, chunked, r.body);
        cr_expect_neq(json_integer_value(json_object_get(r.json, "code")), -1101, "%.200s", r.body);
        resp_free(&r);
        free(at);
        char *over = repeat(prefix, 'D', SIM_BODY_MAX_BYTES + 1 - (sizeof prefix - 1));
        r = http_full(g_base, "POST", "/api/v3/order", NULL, over, KEY, NULL, te);
        expect_error(&r, 413, -1101, "Too many parameters sent for this endpoint.");
        resp_free(&r);
        free(over);
    }
    cr_expect_eq(rest_conn_stat("bodies_refused"), 2);
    cr_expect_eq(rest_conn_stat("bodies_dropped"), 0);
}

Test(sim_rest, malformed_requests_get_json_errors, .init = setup_default, .fini = teardown)
{
    char *huge_value = repeat("symbol=", 'A', 20000);
    char *huge_query = repeat("symbol=BTCUSDT&x=", 'B', 70000);
    char many[2048] = "symbol=BTCUSDT";
    for (int i = 0; i < 70; i++) {
        char p[16];
        snprintf(p, sizeof(p), "&p%d=1", i);
        strncat(many, p, sizeof(many) - strlen(many) - 1);
    }
    const struct {
        const char *name, *method, *path, *query, *body;
        long status;
        int code;
    } cases[] = {
        {"bad escape", "GET", "/api/v3/depth", "symbol=%ZZ", NULL, 400, -1100},
        {"short escape", "GET", "/api/v3/depth", "symbol=BTC%2", NULL, 400, -1100},
        {"trailing percent", "GET", "/api/v3/depth", "symbol=%", NULL, 400, -1100},
        {"NUL byte", "GET", "/api/v3/depth", "symbol=BTC%00USDT", NULL, 400, -1100},
        {"control byte", "GET", "/api/v3/depth", "symbol=BTC%0AUSDT", NULL, 400, -1100},
        {"empty name", "GET", "/api/v3/depth", "=BTCUSDT", NULL, 400, -1100},
        {"non-ASCII value", "GET", "/api/v3/depth", "symbol=BTC%C3%A9", NULL, 400, -1100},
        {"huge value", "GET", "/api/v3/depth", huge_value, NULL, 400, -1100},
        {"huge query", "GET", "/api/v3/depth", huge_query, NULL, 413, -1101},
        {"too many params", "GET", "/api/v3/depth", many, NULL, 400, -1101},
        {"duplicate in query", "GET", "/api/v3/depth", "symbol=BTCUSDT&symbol=BTCUSDT", NULL, 400,
         -1101},
        {"duplicate in body", "POST", "/api/v3/order", NULL, "symbol=BTCUSDT&symbol=ETHUSDT", 400,
         -1101},
        {"empty value", "GET", "/api/v3/depth", "symbol=", NULL, 400, -1102},
        {"no value", "GET", "/api/v3/depth", "symbol", NULL, 400, -1102},
        {"only ampersands", "GET", "/api/v3/depth", "&&&", NULL, 400, -1102},
        {"limit not a number", "GET", "/api/v3/depth", "symbol=BTCUSDT&limit=-5", NULL, 400, -1100},
        {"limit overflow", "GET", "/api/v3/depth", "symbol=BTCUSDT&limit=99999999999999999999",
         NULL, 400, -1100},
        {"symbol too long", "GET", "/api/v3/depth", "symbol=ABCDEFGHIJKLMNOPQRSTU", NULL, 400,
         -1100},
        {"symbol and symbols", "GET", "/api/v3/ticker/price",
         "symbol=BTCUSDT&symbols=%5B%22BTCUSDT%22%5D", NULL, 400, -1106},
        {"start after end", "GET", "/api/v3/klines",
         "symbol=BTCUSDT&interval=1m&startTime=2000&endTime=1000", NULL, 400, -1023},
        {"unknown endpoint", "GET", "/api/v3/nothing", NULL, NULL, 404, -1000},
        {"wrong method", "PUT", "/api/v3/ping", NULL, NULL, 405, -1000},
        {"not api", "GET", "/", NULL, NULL, 404, -1000},
        {"decimal exponent", "POST", "/api/v3/order",
         "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=.5", NULL, 400, -1100},
        {"decimal overflow", "POST", "/api/v3/order",
         "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=99999999999999999999.99999999999999999999",
         NULL, 400, -1100},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct resp r = http_full(g_base, cases[i].method, cases[i].path, cases[i].query,
                                  cases[i].body, KEY, NULL, NULL);
        cr_assert_not_null(r.json, "%s: not JSON (HTTP %ld): %.200s", cases[i].name, r.status,
                           r.body ? r.body : "");
        cr_expect_eq(r.status, cases[i].status, "%s: HTTP %ld: %.200s", cases[i].name, r.status,
                     r.body);
        cr_expect_eq(json_integer_value(json_object_get(r.json, "code")), cases[i].code,
                     "%s: %.200s", cases[i].name, r.body);
        cr_expect(json_is_string(json_object_get(r.json, "msg")), "%s", cases[i].name);
        resp_free(&r);
    }
    /* a body over 64 KiB */
    char *huge_body = repeat("symbol=BTCUSDT&x=", 'C', 70000);
    struct resp r = http_full(g_base, "POST", "/api/v3/order", NULL, huge_body, KEY, NULL, NULL);
    expect_error(&r, 413, -1101, "Too many parameters sent for this endpoint.");
    resp_free(&r);
    /* a JSON body is not parameters: the order lacks its mandatory params */
    r = http_full(g_base, "POST", "/api/v3/order", NULL, "{\"symbol\":\"BTCUSDT\"}", KEY,
                  "application/json", NULL);
    expect_error(&r, 400, -1102, NULL);
    resp_free(&r);
    free(huge_body);
    free(huge_value);
    free(huge_query);

    /* the server is still fine */
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
}

/* Raw bytes curl would not send: a bare request over a socket. Returns the
 * HTTP status, or -1 if the server closed without one. */
static int raw_request(const char *req, size_t len, char *out, size_t out_len)
{
    const char *colon = strrchr(g_base, ':');
    int port = atoi(colon + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, out_len - 1 - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        if (got >= out_len - 1) {
            break;
        }
    }
    out[got] = '\0';
    close(fd);
    int status = -1;
    if (sscanf(out, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    return status;
}

Test(sim_rest, raw_non_ascii_bytes_never_crash, .init = setup_default, .fini = teardown)
{
    static const char *const reqs[] = {
        "GET /api/v3/depth?symbol=BTC\xc3\xa9USDT HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /api/v3/depth?symbol=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /api/v3/depth?\xff=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ("POST /api/v3/order HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
         "application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\nsymbol=\xe2\x82\xac\xff"
         "\x01"),
        "DELETE /api/v3/order?%%%%%% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /api/v3/ping?a=1&a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(reqs); i++) {
        char out[4096];
        int status = raw_request(reqs[i], strlen(reqs[i]), out, sizeof(out));
        cr_expect(status >= 400 && status < 500, "request %zu: status %d: %.300s", i, status, out);
        const char *body = strstr(out, "\r\n\r\n");
        if (body != NULL && strstr(out, "application/json") != NULL) {
            json_t *j = json_loads(body + 4, 0, NULL);
            cr_expect_not_null(j, "request %zu: body not JSON: %s", i, body + 4);
            cr_expect(json_integer_value(json_object_get(j, "code")) < 0);
            json_decref(j);
        }
    }
    struct resp r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
}

Test(sim_rest, mutating_5xx_may_execute_first, .init = setup_default, .fini = teardown)
{
    /* every order request is a 503; some of them still executed. The client
     * can only learn which by asking (allOrders). */
    control_ok("/_sim/rest/errors", "per_mille=1000");
    for (int i = 0; i < 12; i++) {
        struct resp r = signed_req("POST", "/api/v3/order",
                                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                                   "&quantity=0.001&price=20000");
        expect_error(&r, 503, -1000, "An unknown error occurred while processing the request.");
        resp_free(&r);
    }
    control_ok("/_sim/rest/errors", "per_mille=0");
    struct resp r = signed_req("GET", "/api/v3/allOrders", "symbol=BTCUSDT");
    expect_ok(&r);
    size_t n = json_array_size(r.json);
    cr_expect(n > 0 && n < 12, "%zu of 12 orders executed behind a 503", n);
    resp_free(&r);
}

/* orders/timeout: the order is executed, then its answer is held back (a
 * client with a shorter timeout sees an unknown outcome); faults/clear ends
 * it. */
Test(sim_rest, orders_timeout_executes_then_answers_late, .init = setup_default, .fini = teardown)
{
    struct resp r = http("POST", "/_sim/orders/timeout", "count=1", NULL);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect_str_eq(jstr(json_object_get(r.json, "error"), "param"), "ms", "%s", r.body);
    resp_free(&r);
    r = http("POST", "/_sim/orders/timeout", "count=1&ms=60001", NULL);
    cr_expect_eq(r.status, 400, "%s", r.body);
    resp_free(&r);

    control_ok("/_sim/orders/timeout", "count=1&ms=400");
    const char *order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                        "&price=20000&newClientOrderId=late-1";
    int64_t t0 = mono_ms();
    r = http("GET", "/api/v3/ping", NULL, NULL);
    expect_ok(&r);
    resp_free(&r);
    r = signed_req("POST", "/api/v3/order", order);
    expect_ok(&r);
    cr_expect_geq(mono_ms() - t0, 390, "the answer was not held back");
    resp_free(&r);
    r = signed_req("GET", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=late-1");
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "status"), "NEW", "%s", r.body);
    resp_free(&r);
    /* faults/clear ends it: a 60 s hold would outlast the bound below */
    control_ok("/_sim/orders/timeout", "count=5&ms=60000");
    control_ok("/_sim/faults/clear", NULL);
    t0 = mono_ms();
    r = signed_req("POST", "/api/v3/order",
                   "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                   "&price=20000&newClientOrderId=late-3");
    expect_ok(&r);
    cr_expect_lt(mono_ms() - t0, 30000, "faults/clear did not end orders/timeout");
    resp_free(&r);
}

/* ---- symbol names of CQ_SYMBOL_MAX_CHARS (issue 9.7) -------------------------- */

#define SYM20 "ABCDEFGHIJKLMNOPUSDT" /* CQ_SYMBOL_MAX_CHARS characters, base of 16 */
#define SYM21 "ABCDEFGHIJKLMNOPQUSDT"

static void setup_sym20(void)
{
    static const char *const symbols[] = {"BTCUSDT", SYM20};
    struct sim_setup s = {.symbols = symbols, .n_symbols = CQ_ARRAY_LEN(symbols)};
    start_sim(&s);
}

Test(sim_rest, symbol_of_the_daemons_limit_lists_and_trades, .init = setup_sym20, .fini = teardown)
{
    cr_assert_eq(strlen(SYM20), CQ_SYMBOL_MAX_CHARS);
    struct resp r = http("GET", "/api/v3/exchangeInfo", "symbol=" SYM20, NULL);
    expect_ok(&r);
    json_t *sym = json_array_get(json_object_get(r.json, "symbols"), 0);
    cr_assert_not_null(sym, "%s", r.body);
    cr_expect_str_eq(jstr(sym, "symbol"), SYM20);
    cr_expect_str_eq(jstr(sym, "baseAsset"), "ABCDEFGHIJKLMNOP");
    cr_expect_str_eq(jstr(sym, "quoteAsset"), "USDT");
    resp_free(&r);

    r = http("GET", "/api/v3/depth", "symbol=" SYM20 "&limit=5", NULL);
    expect_ok(&r);
    resp_free(&r);

    /* An order on it fills, and the base asset's balance appears. */
    r = signed_req("POST", "/api/v3/order",
                   "symbol=" SYM20 "&side=BUY&type=MARKET&quoteOrderQty=20");
    expect_ok(&r);
    cr_expect_str_eq(jstr(r.json, "symbol"), SYM20);
    cr_expect_str_eq(jstr(r.json, "status"), "FILLED", "%s", r.body);
    resp_free(&r);
    r = signed_req("GET", "/api/v3/myTrades", "symbol=" SYM20);
    expect_ok(&r);
    cr_expect_geq(json_array_size(r.json), 1, "%s", r.body);
    cr_expect_str_eq(jstr(json_array_get(r.json, 0), "symbol"), SYM20);
    resp_free(&r);
    cr_expect_gt(cq_dec_sign(balance_of("ABCDEFGHIJKLMNOP", NULL)), 0);
    r = http("GET", "/api/v3/klines", "symbol=" SYM20 "&interval=1m&limit=5", NULL);
    expect_ok(&r);
    resp_free(&r);

    /* One character more is a request error naming the pattern. */
    r = http("GET", "/api/v3/depth", "symbol=" SYM21, NULL);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(r.json, "code")), -1100, "%s", r.body);
    cr_expect(strstr(r.body, "{1,20}") != NULL, "%s", r.body);
    resp_free(&r);
}

Test(sim_rest, symbol_one_over_the_limit_is_refused_at_start)
{
    static const char *const symbols[] = {"BTCUSDT", SYM21};
    struct cq_sim_options o = {.bind = "127.0.0.1", .symbols = symbols, .n_symbols = 2, .speed = 1};
    struct cq_err err;
    memset(&err, 0, sizeof err);
    cq_log_set_level(CQ_LOG_ERROR);
    struct cq_sim *sim = cq_sim_new(&o, &err);
    cr_assert_null(sim);
    cr_expect(strstr(err.message, SYM21) != NULL && strstr(err.message, "21 characters") != NULL,
              "message: %s", err.message);
    cr_expect(strstr(err.hint, "20 characters") != NULL, "hint: %s", err.hint);
}

/* ---- the control table (issue 10): every row reachable, an unknown path lists them -- */

Test(sim_rest, control_table_rows_are_all_reachable, .init = setup_default, .fini = teardown)
{
    static const char *const expected[] = {
        "GET /_sim/state",
        "GET /_sim/orders",
        "POST /_sim/ws/drop",
        "POST /_sim/ws/stall",
        "POST /_sim/ws/user_down",
        "POST /_sim/rest/latency",
        "POST /_sim/rest/errors",
        "POST /_sim/ratelimit/storm",
        "POST /_sim/orders/reject",
        "POST /_sim/orders/timeout",
        "POST /_sim/balance/insufficient",
        "POST /_sim/balance/set",
        "POST /_sim/clock/skew",
        "POST /_sim/market/pause",
        "POST /_sim/symbol/status",
        "POST /_sim/faults/clear",
    };
    struct resp r = http("POST", "/_sim/no/such/path", NULL, NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    const char *msg =
        json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    cr_assert_not_null(msg, "%s", r.body);
    cr_expect(strstr(msg, "'/_sim/no/such/path'") != NULL, "%s", msg);
    cr_expect(strstr(msg, "POST /_sim/rest/latency ms=0..60000") != NULL, "%s", msg);
    json_t *known = json_object_get(r.json, "known");
    cr_assert_eq(json_array_size(known), CQ_ARRAY_LEN(expected), "%s", r.body);
    for (size_t i = 0; i < CQ_ARRAY_LEN(expected); i++) {
        bool found = false;
        for (size_t k = 0; k < json_array_size(known) && !found; k++) {
            char line[128];
            json_t *row = json_array_get(known, k);
            snprintf(line, sizeof(line), "%s %s", jstr(row, "method"), jstr(row, "path"));
            found = strcmp(line, expected[i]) == 0;
        }
        cr_expect(found, "%s is not in the list", expected[i]);
    }
    /* Every listed row answers its method (200, or 400 naming its first
     * parameter when none is given) and refuses the other with 405. */
    for (size_t k = 0; k < json_array_size(known); k++) {
        json_t *row = json_array_get(known, k);
        const char *method = jstr(row, "method"), *path = jstr(row, "path");
        const char *usage = jstr(row, "usage");
        cr_assert(method != NULL && path != NULL && usage != NULL && jstr(row, "effect") != NULL);
        cr_expect(strstr(msg, usage) != NULL, "message lacks %s", usage);
        const char *params = usage + strlen(method) + 1 + strlen(path);
        struct resp a = http(method, path, NULL, NULL);
        if (*params == '\0') {
            cr_expect_eq(a.status, 200, "%s %s: %s", method, path, a.body);
        } else {
            char first[32];
            size_t n = strcspn(params + 1, "=");
            cr_assert_lt(n, sizeof(first));
            memcpy(first, params + 1, n);
            first[n] = '\0';
            cr_expect_eq(a.status, 400, "%s %s: %s", method, path, a.body);
            cr_expect_str_eq(
                json_string_value(json_object_get(json_object_get(a.json, "error"), "param")),
                first, "%s %s: %s", method, path, a.body);
        }
        resp_free(&a);
        struct resp b = http(strcmp(method, "GET") == 0 ? "POST" : "GET", path, NULL, NULL);
        cr_expect_eq(b.status, 405, "%s: %s", path, b.body);
        resp_free(&b);
    }
    resp_free(&r);
}
