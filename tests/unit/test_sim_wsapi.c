/*
 * test_sim_wsapi.c — coinquant-simex's WebSocket API (/ws-api/v3) over real
 * sockets: a simulator started through the public API (include/cq/sim.h),
 * libcurl for REST, the test WS client (tests/support/ws_tclient.h) for
 * ws://127.0.0.1:<port>/ws-api/v3. Each test quotes the line of
 * binance-spot-api-docs (web-socket-api.md, user-data-stream.md) it checks.
 *
 * Each Criterion test runs in its own process with its own simulator; every
 * wait is bounded and a timeout fails with what arrived.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "support/ws_tclient.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define SYMBOL "BTCUSDT"
#define WAIT_MS 10000 /* any one answer, event or close */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the simulator under test ------------------------------------------------ */

static struct cq_sim *g_sim;
static char g_rest[128];
static int g_ws_port;

static uint32_t g_weight_limit; /* 0: the default */

static void start_sim(void)
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
        .symbols = symbols,
        .n_symbols = CQ_ARRAY_LEN(symbols),
        .speed = 1,
        .seed = 42,
        .balances = balances,
        .n_balances = n_balances,
        .maker_bps = 10,
        .taker_bps = 10,
        .weight_limit_1m = g_weight_limit,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_rest, cq_sim_rest_url(g_sim), sizeof g_rest);
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon, "ws url %s", cq_sim_ws_url(g_sim));
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
    cr_assert_gt(g_ws_port, 0);
}

static void teardown(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
}

/* ---- REST -------------------------------------------------------------------------- */

struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
    long used_weight; /* X-MBX-USED-WEIGHT-1M, -1 if absent */
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

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    static const char name[] = "x-mbx-used-weight-1m:";
    size_t k = size * n;
    if (k > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        r->used_weight = strtol(p + sizeof name - 1, NULL, 10);
    }
    return k;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static struct resp http(const char *method, const char *path, const char *query, const char *body,
                        const char *key)
{
    struct resp r = {.used_weight = -1};
    char url[4096];
    bool has_q = query != NULL && query[0] != '\0';
    snprintf(url, sizeof url, "%s%s%s%s", g_rest, path, has_q ? "?" : "", has_q ? query : "");
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    char kh[256];
    if (key != NULL) {
        snprintf(kh, sizeof kh, "X-MBX-APIKEY: %s", key);
        h = curl_slist_append(h, kh);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
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

/* A signed POST with everything in a form body (§2). */
static struct resp signed_post(const char *path, const char *params)
{
    char payload[2048], sig[CQ_SIGN_HEX_LEN + 1], full[2200];
    snprintf(payload, sizeof payload, "%s&timestamp=%" PRId64, params, wall_ms());
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(SECRET, strlen(SECRET), "", 0, payload, strlen(payload), sig), 0);
    snprintf(full, sizeof full, "%s&signature=%s", payload, sig);
    return http("POST", path, NULL, full, KEY);
}

/* A resting LIMIT BUY at 80 % of the best bid (inside any percent-price
 * band, far from a fill); returns its orderId. */
static json_int_t place_resting_buy(const char *client_id)
{
    struct resp r = http("GET", "/api/v3/ticker/bookTicker", "symbol=" SYMBOL, NULL, NULL);
    cr_assert_eq(r.status, 200, "bookTicker: %s", r.body);
    const char *bid_s = json_string_value(json_object_get(r.json, "bidPrice"));
    cr_assert_not_null(bid_s, "bookTicker: %s", r.body);
    cq_dec bid, price;
    cr_assert_eq(cq_dec_parse(bid_s, strlen(bid_s), &bid), 0);
    resp_free(&r);
    cr_assert_eq(cq_dec_mul(bid, cq_dec_make(8, 1), 8, CQ_ROUND_DOWN, &price), 0);
    cr_assert_eq(cq_dec_quantize(price, cq_dec_make(1, 0), CQ_ROUND_DOWN, &price), 0);
    char pbuf[CQ_DEC_STR_MAX], params[256];
    snprintf(params, sizeof params,
             "symbol=" SYMBOL "&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=%s"
             "&newClientOrderId=%s",
             cq_dec_format(price, pbuf, sizeof pbuf), client_id);
    r = signed_post("/api/v3/order", params);
    cr_assert_eq(r.status, 200, "LIMIT BUY: %s", r.body);
    json_int_t id = json_integer_value(json_object_get(r.json, "orderId"));
    resp_free(&r);
    return id;
}

/* ---- the WS API ------------------------------------------------------------------------ */

static struct tclient *open_api(void)
{
    struct tclient *tc = tc_open(g_ws_port, "/ws-api/v3");
    cr_assert(tc_wait_established(tc, WAIT_MS), "/ws-api/v3 not established");
    return tc;
}

/* userDataStream.subscribe.signature; ts_delta_ms shifts the timestamp,
 * bad_sig flips one signature character, key NULL leaves apiKey out. */
static json_t *subscribe(struct tclient *tc, size_t *cursor, const char *key, int64_t ts_delta_ms,
                         bool bad_sig)
{
    char payload[768], sig[CQ_SIGN_HEX_LEN + 1], req[1280];
    int64_t ts = wall_ms() + ts_delta_ms;
    /* sorted by name: apiKey, recvWindow, timestamp */
    if (key != NULL) {
        snprintf(payload, sizeof payload, "apiKey=%s&recvWindow=5000&timestamp=%" PRId64, key, ts);
    } else {
        snprintf(payload, sizeof payload, "recvWindow=5000&timestamp=%" PRId64, ts);
    }
    cr_assert_eq(
        cq_sign_hmac_sha256_hex(SECRET, strlen(SECRET), payload, strlen(payload), "", 0, sig), 0);
    if (bad_sig) {
        sig[0] = sig[0] == '0' ? '1' : '0';
    }
    char key_part[400] = "";
    if (key != NULL) {
        snprintf(key_part, sizeof key_part, "\"apiKey\":\"%s\",", key);
    }
    snprintf(req, sizeof req,
             "{\"id\":\"sub-1\",\"method\":\"userDataStream.subscribe.signature\",\"params\":{%s"
             "\"timestamp\":%" PRId64 ",\"recvWindow\":5000,\"signature\":\"%s\"}}",
             key_part, ts, sig);
    return tc_request(tc, cursor, req);
}

static void expect_api_error(json_t *reply, int status, int code, const char *msg, const char *what)
{
    char *text = json_dumps(reply, JSON_COMPACT);
    cr_expect_eq(json_integer_value(json_object_get(reply, "status")), status, "%s: %s", what,
                 text);
    json_t *e = json_object_get(reply, "error");
    cr_expect_eq(json_integer_value(json_object_get(e, "code")), code, "%s: %s", what, text);
    cr_expect_str_eq(json_string_value(json_object_get(e, "msg")), msg, "%s: %s", what, text);
    cr_expect_null(json_object_get(reply, "result"), "%s: an error has no result: %s", what, text);
    free(text);
}

/* The next message that is an event ({"subscriptionId":…,"event":…} or
 * {"event":…}); NULL when none came within timeout_ms. */
static json_t *next_event(struct tclient *tc, size_t *cursor, int timeout_ms)
{
    int64_t until = mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = until - mono_ms();
        json_t *m = tc_try_next(tc, cursor, left > 0 ? (int)left : 0);
        if (m == NULL) {
            return NULL;
        }
        if (json_object_get(m, "event") != NULL) {
            return m;
        }
        json_decref(m);
        if (left <= 0) {
            return NULL;
        }
    }
}

static const char *ev_type(const json_t *m)
{
    return json_string_value(json_object_get(json_object_get(m, "event"), "e"));
}

/* ---- tests ------------------------------------------------------------------------------- */

TestSuite(sim_wsapi, .init = start_sim, .fini = teardown, .timeout = 60);

/*
 * web-socket-api.md "Subscribe to User Data Stream through signature
 * subscription": response {"id":…,"status":200,"result":{"subscriptionId":0}};
 * web-socket-api.md "Event format": {"subscriptionId":0,"event":{…}};
 * "You can have only one active subscription for a given account on a given
 * connection." (errors.md -2035 "User Data Stream subscription already active.")
 */
Test(sim_wsapi, subscribe_signature_then_rest_order_arrives_wrapped)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, KEY, 0, false);
    char *text = json_dumps(r, JSON_COMPACT);
    cr_assert_str_eq(json_string_value(json_object_get(r, "id")), "sub-1", "%s", text);
    cr_assert_eq(json_integer_value(json_object_get(r, "status")), 200, "%s", text);
    json_t *res = json_object_get(r, "result");
    cr_assert(json_is_integer(json_object_get(res, "subscriptionId")), "%s", text);
    cr_assert_eq(json_integer_value(json_object_get(res, "subscriptionId")), 0, "%s", text);
    json_t *rl = json_array_get(json_object_get(r, "rateLimits"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(rl, "rateLimitType")), "REQUEST_WEIGHT",
                     "%s", text);
    cr_expect_geq(json_integer_value(json_object_get(rl, "count")), 2, "weight 2: %s", text);
    free(text);
    json_decref(r);

    json_int_t order_id = place_resting_buy("wsapi-1");
    json_t *ev = next_event(tc, &cursor, WAIT_MS);
    cr_assert_not_null(ev, "no event after the REST order");
    text = json_dumps(ev, JSON_COMPACT);
    cr_expect_eq(json_integer_value(json_object_get(ev, "subscriptionId")), 0, "%s", text);
    cr_assert_str_eq(ev_type(ev), "executionReport", "%s", text);
    json_t *body = json_object_get(ev, "event");
    cr_expect_eq(json_integer_value(json_object_get(body, "i")), order_id, "%s", text);
    cr_expect_str_eq(json_string_value(json_object_get(body, "x")), "NEW", "%s", text);
    cr_expect_str_eq(json_string_value(json_object_get(body, "c")), "wsapi-1", "%s", text);
    free(text);
    json_decref(ev);
    ev = next_event(tc, &cursor, WAIT_MS);
    cr_assert_not_null(ev, "no outboundAccountPosition");
    cr_expect_str_eq(ev_type(ev), "outboundAccountPosition");
    cr_expect_eq(json_integer_value(json_object_get(ev, "subscriptionId")), 0);
    json_decref(ev);

    /* "session.subscriptions" lists it: {"result":[{"subscriptionId":0}]} */
    r = tc_request(tc, &cursor, "{\"id\":7,\"method\":\"session.subscriptions\",\"params\":{}}");
    text = json_dumps(r, JSON_COMPACT);
    cr_expect_eq(json_integer_value(json_object_get(r, "id")), 7, "%s", text);
    cr_expect_eq(json_array_size(json_object_get(r, "result")), 1, "%s", text);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(json_object_get(r, "result"), 0),
                                                    "subscriptionId")),
                 0, "%s", text);
    free(text);
    json_decref(r);

    /* a second subscription for the same account on this connection */
    r = subscribe(tc, &cursor, KEY, 0, false);
    expect_api_error(r, 400, -2035, "User Data Stream subscription already active.", "second");
    json_decref(r);
    tc_free(tc);
}

/* errors.md "-1022 INVALID_SIGNATURE: Signature for this request is not valid." */
Test(sim_wsapi, bad_signature_is_1022)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, KEY, 0, true);
    expect_api_error(r, 400, -1022, "Signature for this request is not valid.", "bad signature");
    json_decref(r);
    /* and no subscription exists: "session.subscriptions" answers [] */
    r = tc_request(tc, &cursor, "{\"id\":1,\"method\":\"session.subscriptions\"}");
    cr_expect_eq(json_array_size(json_object_get(r, "result")), 0);
    json_decref(r);
    tc_free(tc);
}

/*
 * web-socket-api.md "Timing security": "if (timestamp < (serverTime + 1
 * second) && (serverTime - timestamp) <= recvWindow) { // begin processing
 * request } else { // reject request }" — errors.md -1021 INVALID_TIMESTAMP.
 */
Test(sim_wsapi, stale_or_future_timestamp_is_1021)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, KEY, -60000, false);
    expect_api_error(r, 400, -1021, "Timestamp for this request is outside of the recvWindow.",
                     "stale");
    json_decref(r);
    r = subscribe(tc, &cursor, KEY, 30000, false);
    expect_api_error(r, 400, -1021,
                     "Timestamp for this request was 1000ms ahead of the server's time.", "future");
    json_decref(r);
    tc_free(tc);
}

/* userDataStream.subscribe.signature parameters: "apiKey | STRING | Yes";
 * errors.md -2015 "Invalid API-key, IP, or permissions for action." */
Test(sim_wsapi, missing_or_unknown_api_key)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, NULL, 0, false);
    expect_api_error(r, 400, -1102,
                     "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.",
                     "no apiKey");
    json_decref(r);
    r = subscribe(tc, &cursor, "not-the-simulator-key", 0, false);
    expect_api_error(r, 401, -2015, "Invalid API-key, IP, or permissions for action.", "wrong key");
    json_decref(r);
    tc_free(tc);
}

/*
 * user-data-stream.md "Event Stream Terminated": "eventStreamTerminated is
 * sent when: … The subscription is stopped via the userDataStream.unsubscribe
 * method." Payload {"subscriptionId":0,"event":{"e":"eventStreamTerminated",
 * "E":…}}. web-socket-api.md "Unsubscribe": response "result": {}.
 */
Test(sim_wsapi, unsubscribe_sends_event_stream_terminated)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, KEY, 0, false);
    cr_assert_eq(json_integer_value(json_object_get(r, "status")), 200);
    json_decref(r);
    size_t before = cursor;
    r = tc_request(tc, &cursor, "{\"id\":\"u1\",\"method\":\"userDataStream.unsubscribe\"}");
    char *text = json_dumps(r, JSON_COMPACT);
    cr_expect_eq(json_integer_value(json_object_get(r, "status")), 200, "%s", text);
    cr_expect(json_is_object(json_object_get(r, "result")), "%s", text);
    cr_expect_eq(json_object_size(json_object_get(r, "result")), 0, "%s", text);
    free(text);
    json_decref(r);
    size_t c2 = before;
    json_t *ev = next_event(tc, &c2, WAIT_MS);
    cr_assert_not_null(ev, "no eventStreamTerminated");
    cr_expect_str_eq(ev_type(ev), "eventStreamTerminated");
    cr_expect_eq(json_integer_value(json_object_get(ev, "subscriptionId")), 0);
    cr_expect_gt(json_integer_value(json_object_get(json_object_get(ev, "event"), "E")), 0);
    cr_expect_lt(c2, cursor, "the event comes before the unsubscribe answer");
    json_decref(ev);

    /* nothing more arrives for that subscription */
    place_resting_buy("after-unsub");
    cursor = cursor > c2 ? cursor : c2;
    ev = next_event(tc, &cursor, 1000);
    cr_expect_null(ev, "an event after unsubscribe");
    json_decref(ev);
    r = tc_request(tc, &cursor, "{\"id\":\"u2\",\"method\":\"userDataStream.unsubscribe\"}");
    expect_api_error(r, 400, -2036, "User Data Stream subscription not active.", "again");
    json_decref(r);
    /* a new subscription gets the next id */
    r = subscribe(tc, &cursor, KEY, 0, false);
    cr_expect_eq(
        json_integer_value(json_object_get(json_object_get(r, "result"), "subscriptionId")), 1);
    json_decref(r);
    tc_free(tc);
}

/*
 * web-socket-api.md "Test connectivity": {"id":…,"status":200,"result":{},
 * "rateLimits":[{"rateLimitType":"REQUEST_WEIGHT",…,"count":1}]}, weight 1;
 * "Check server time": "result": {"serverTime": …}; "rateLimits" is left out
 * with "returnRateLimits": false. The WS API counts against the same
 * REQUEST_WEIGHT as REST (BINANCE_PROTOCOL.md §5.0).
 */
Test(sim_wsapi, ping_time_and_shared_weight)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor, "{\"id\":\"p\",\"method\":\"ping\"}");
    char *text = json_dumps(r, JSON_COMPACT);
    cr_expect_eq(json_integer_value(json_object_get(r, "status")), 200, "%s", text);
    cr_expect_eq(json_object_size(json_object_get(r, "result")), 0, "%s", text);
    json_int_t c1 = json_integer_value(
        json_object_get(json_array_get(json_object_get(r, "rateLimits"), 0), "count"));
    cr_expect_geq(c1, 1, "%s", text);
    free(text);
    json_decref(r);

    int64_t before = wall_ms();
    r = tc_request(tc, &cursor, "{\"id\":2,\"method\":\"time\"}");
    int64_t after = wall_ms();
    json_int_t st = json_integer_value(json_object_get(json_object_get(r, "result"), "serverTime"));
    cr_expect(st >= before - 1000 && st <= after + 1000, "serverTime %lld not in [%lld, %lld]",
              (long long)st, (long long)before, (long long)after);
    json_decref(r);

    r = tc_request(tc, &cursor,
                   "{\"id\":3,\"method\":\"time\",\"params\":{\"returnRateLimits\":false}}");
    cr_expect_null(json_object_get(r, "rateLimits"), "returnRateLimits false");
    json_decref(r);

    /* REST and the WS API share the minute: REST's header, then one ping */
    for (int attempt = 0; attempt < 3; attempt++) {
        struct resp h = http("GET", "/api/v3/time", NULL, NULL, NULL);
        long rest_used = h.used_weight;
        resp_free(&h);
        r = tc_request(tc, &cursor, "{\"id\":4,\"method\":\"ping\"}");
        json_int_t ws_used = json_integer_value(
            json_object_get(json_array_get(json_object_get(r, "rateLimits"), 0), "count"));
        json_decref(r);
        if (ws_used == 1 && rest_used > 1) {
            continue; /* a new minute started in between: try again */
        }
        cr_expect_eq(ws_used, rest_used + 1, "REST used %ld, then a ping: %lld", rest_used,
                     (long long)ws_used);
        break;
    }

    r = tc_request(tc, &cursor, "{\"id\":5,\"method\":\"no.such.method\"}");
    expect_api_error(r, 400, -1000, "Unknown method.", "unknown method");
    json_decref(r);
    tc_free(tc);
}

/* A request that names no method cannot be answered with data. */
Test(sim_wsapi, malformed_requests)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor, "{\"id\":9}");
    expect_api_error(r, 400, -1102,
                     "Mandatory parameter 'method' was not sent, was empty/null, or malformed.",
                     "no method");
    cr_expect_eq(json_integer_value(json_object_get(r, "id")), 9);
    json_decref(r);
    r = tc_request(tc, &cursor, "not json");
    expect_api_error(r, 400, -1000, "Malformed request.", "not JSON");
    cr_expect(json_is_null(json_object_get(r, "id")));
    json_decref(r);
    r = tc_request(tc, &cursor,
                   "{\"id\":1,\"method\":\"userDataStream.subscribe.signature\",\"params\":"
                   "{\"apiKey\":{\"x\":1}}}");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), -1100);
    json_decref(r);
    tc_free(tc);
}

/* ---- connection lifetime and serverShutdown ---------------------------------------------- */

#define SHORT_LIFETIME_MS 2000

static void start_short_lifetime(void)
{
    char v[32];
    snprintf(v, sizeof v, "%d", SHORT_LIFETIME_MS);
    setenv("SIMEX_WS_LIFETIME_MS", v, 1);
    start_sim();
}

/* The first message with "e" == type (top level or under "event"); NULL
 * when none came before the connection closed or WAIT_MS passed. */
static json_t *find_type(struct tclient *tc, size_t *cursor, const char *type)
{
    int64_t until = mono_ms() + WAIT_MS;
    while (mono_ms() < until) {
        json_t *m = tc_try_next(tc, cursor, (int)(until - mono_ms()));
        if (m == NULL) {
            return NULL;
        }
        json_t *inner = json_object_get(m, "event");
        const char *e = json_string_value(json_object_get(inner != NULL ? inner : m, "e"));
        if (e != NULL && strcmp(e, type) == 0) {
            return m;
        }
        json_decref(m);
    }
    return NULL;
}

/*
 * web-socket-api.md "General API Information": "A single connection to the
 * API is only valid for 24 hours; expect to be disconnected after the
 * 24-hour mark." — the same cap on market streams (BINANCE_PROTOCOL.md §4).
 * SIMEX_WS_LIFETIME_MS shortens it to 2 s here.
 */
Test(sim_wsapi_lifetime, connections_close_at_their_lifetime, .init = start_short_lifetime,
     .fini = teardown, .timeout = 60)
{
    int64_t t0 = mono_ms();
    struct tclient *api = open_api();
    struct tclient *mkt = tc_open(g_ws_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(mkt, WAIT_MS));
    if (mono_ms() - t0 < SHORT_LIFETIME_MS / 2) {
        cr_expect(!tc_is_closed(api) && !tc_is_closed(mkt), "closed before the lifetime");
    }
    cr_assert(tc_wait_closed(api, WAIT_MS + SHORT_LIFETIME_MS),
              "WS API not closed at the lifetime");
    cr_assert(tc_wait_closed(mkt, WAIT_MS + SHORT_LIFETIME_MS),
              "stream not closed at the lifetime");
    cr_expect_geq(mono_ms() - t0, SHORT_LIFETIME_MS - 100, "closed early");
    cr_expect_eq(tc_close_code(api), 1001);
    cr_expect_eq(tc_close_code(mkt), 1001);
    tc_free(api);
    tc_free(mkt);
}

/*
 * web-socket-api.md "Server Shutdown": "serverShutdown event is sent when
 * the server is about to shut down." {"event":{"e":"serverShutdown","E":…}};
 * market streams (BINANCE_PROTOCOL.md §4): {"e":"serverShutdown","E":ms}.
 */
Test(sim_wsapi, server_shutdown_is_announced_then_closed)
{
    struct tclient *api = open_api();
    struct tclient *mkt = tc_open(g_ws_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(mkt, WAIT_MS));
    size_t ca = 0, cm = 0;
    json_t *r = tc_request(api, &ca, "{\"id\":1,\"method\":\"ping\"}"); /* the session is up */
    json_decref(r);
    cq_sim_stop(g_sim);
    json_t *ev = find_type(api, &ca, "serverShutdown");
    cr_assert_not_null(ev, "WS API: no serverShutdown");
    cr_expect_null(json_object_get(ev, "subscriptionId"),
                   "a connection event, not a subscription's");
    cr_expect_gt(json_integer_value(json_object_get(json_object_get(ev, "event"), "E")), 0);
    json_decref(ev);
    ev = find_type(mkt, &cm, "serverShutdown");
    cr_assert_not_null(ev, "market stream: no serverShutdown");
    cr_expect_gt(json_integer_value(json_object_get(ev, "E")), 0);
    json_decref(ev);
    cr_assert(tc_wait_closed(api, WAIT_MS));
    cr_assert(tc_wait_closed(mkt, WAIT_MS));
    tc_free(api);
    tc_free(mkt);
}

/* ---- weight limit, unsubscribe by id, key length -------------------------------------- */

#define SMALL_WEIGHT_LIMIT 10

static void start_small_weight(void)
{
    g_weight_limit = SMALL_WEIGHT_LIMIT;
    start_sim();
}

/*
 * web-socket-api.md "Rate limits": "Requests fail with status 429 when
 * unfilled order count or request rate limits are violated."; the WS API's
 * requests count against the IP's request weight (BINANCE_PROTOCOL.md §5.0),
 * so REST is refused too once pings used it up.
 */
Test(sim_wsapi_weight, over_the_weight_limit_is_429_on_both_front_ends, .init = start_small_weight,
     .fini = teardown, .timeout = 60)
{
    /* stay inside one minute: at most 10 s of waiting */
    while (wall_ms() % 60000 > 50000) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = NULL;
    int n = 0;
    for (; n < SMALL_WEIGHT_LIMIT + 2; n++) {
        r = tc_request(tc, &cursor, "{\"id\":1,\"method\":\"ping\"}");
        if (json_integer_value(json_object_get(r, "status")) != 200) {
            break;
        }
        json_decref(r);
        r = NULL;
    }
    cr_assert_not_null(r, "%d pings of weight 1 all passed a limit of %d", n, SMALL_WEIGHT_LIMIT);
    /* the connection itself cost 2 ("Connecting to WebSocket API costs 2 weight.") */
    cr_expect_eq(n, SMALL_WEIGHT_LIMIT - 2, "refused after %d pings", n);
    char msg[256];
    snprintf(msg, sizeof msg,
             "Too much request weight used; current limit is %d request weight per 1 MINUTE. "
             "Please use WebSocket Streams for live updates to avoid polling the API.",
             SMALL_WEIGHT_LIMIT);
    expect_api_error(r, 429, -1003, msg, "over the limit");
    json_decref(r);
    struct resp h = http("GET", "/api/v3/time", NULL, NULL, NULL);
    cr_expect_eq(h.status, 429, "REST after the WS API used the weight: %ld %s", h.status, h.body);
    resp_free(&h);
    tc_free(tc);
}

/*
 * web-socket-api.md "Unsubscribe from User Data Stream": "When called with
 * the subscriptionId parameter, this will attempt to close the subscription
 * with that subscription id, if it exists."
 */
Test(sim_wsapi, unsubscribe_by_id)
{
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, KEY, 0, false);
    json_decref(r);
    r = tc_request(tc, &cursor,
                   "{\"id\":1,\"method\":\"userDataStream.unsubscribe\",\"params\":"
                   "{\"subscriptionId\":5}}");
    expect_api_error(r, 400, -2036, "User Data Stream subscription not active.", "other id");
    json_decref(r);
    r = tc_request(tc, &cursor,
                   "{\"id\":2,\"method\":\"userDataStream.unsubscribe\",\"params\":"
                   "{\"subscriptionId\":0}}");
    cr_expect_eq(json_integer_value(json_object_get(r, "status")), 200);
    json_decref(r);
    r = tc_request(tc, &cursor, "{\"id\":3,\"method\":\"session.subscriptions\"}");
    cr_expect_eq(json_array_size(json_object_get(r, "result")), 0);
    json_decref(r);
    tc_free(tc);
}

/* errors.md "-2014 BAD_API_KEY_FMT: API-key format invalid." — a key longer
 * than CQ_SIM_API_KEY_MAX (256) characters, the limit REST applies too. */
Test(sim_wsapi, api_key_over_the_length_limit_is_2014)
{
    char key[CQ_SIM_API_KEY_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    struct tclient *tc = open_api();
    size_t cursor = 0;
    json_t *r = subscribe(tc, &cursor, key, 0, false);
    expect_api_error(r, 401, -2014, "API-key format invalid.", "257-character key");
    json_decref(r);
    key[CQ_SIM_API_KEY_MAX] = '\0'; /* 256: well-formed, just not ours */
    r = subscribe(tc, &cursor, key, 0, false);
    expect_api_error(r, 401, -2015, "Invalid API-key, IP, or permissions for action.", "256");
    json_decref(r);
    tc_free(tc);
}

static json_int_t ping_count(struct tclient *tc, size_t *cursor)
{
    json_t *r = tc_request(tc, cursor,
                           "{\"id\":1,\"method\":\"ping\",\"params\":{\"returnRateLimits\":true}}");
    json_t *rl = json_array_get(json_object_get(r, "rateLimits"), 0);
    cr_assert_not_null(rl, "ping with returnRateLimits true has rateLimits");
    json_int_t n = json_integer_value(json_object_get(rl, "count"));
    json_decref(r);
    return n;
}

/*
 * web-socket-api.md "Rate limits": "Optional returnRateLimits boolean
 * parameter in connection URL … This will make all requests made through
 * this connection behave as if you have passed "returnRateLimits": false.
 * If you want to see rate limits for a particular request, you need to
 * explicitly pass the "returnRateLimits": true parameter."; "IP limits":
 * "Connecting to WebSocket API costs 2 weight."
 */
Test(sim_wsapi, url_return_rate_limits_and_connect_weight)
{
    struct tclient *a = tc_open(g_ws_port, "/ws-api/v3?returnRateLimits=false");
    cr_assert(tc_wait_established(a, WAIT_MS));
    size_t ca = 0;
    json_t *r = tc_request(a, &ca, "{\"id\":1,\"method\":\"ping\"}");
    cr_expect_eq(json_integer_value(json_object_get(r, "status")), 200);
    cr_expect_null(json_object_get(r, "rateLimits"), "hidden by the URL");
    json_decref(r);
    for (int attempt = 0; attempt < 3; attempt++) {
        json_int_t before = ping_count(a, &ca);
        struct tclient *b = open_api();
        size_t cb = 0;
        json_int_t after = ping_count(b, &cb);
        tc_free(b);
        if (after < before) {
            continue; /* a new minute started in between */
        }
        cr_expect_eq(after, before + 2 + 1, "a connection (2) and a ping (1): %lld -> %lld",
                     (long long)before, (long long)after);
        break;
    }
    tc_free(a);
}
