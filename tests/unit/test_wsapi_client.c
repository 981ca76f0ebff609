/*
 * test_wsapi_client.c — the user data stream over the WebSocket API
 * (server/exchange/wsapi_client.c, cq/wsapi.h).
 *
 * Two kinds of test:
 *   scripted/  the client's message handling driven directly: a fake sender
 *              records each request, the test answers with the frames
 *              Binance sends (web-socket-api.md, user-data-stream.md) through
 *              cq_wsapi__on_message / __on_state, on a fake clock. Nothing
 *              here waits for real time.
 *   simex/     the client on a real struct cq_ws_loop against an in-process
 *              coinquant-simex at /ws-api/v3: subscribe, an order placed over
 *              REST arrives as an unwrapped executionReport, a wrong secret is
 *              refused with -1022, a drop is resubscribed with a gap.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "cq/ws_client.h"
#include "cq/wsapi.h"
#include "fakes/fake_clock.h"

#define KEY "test-key-0123456789"
#define SECRET "test-secret-0123456789"
#define MAX_REC 32

/* ---- recording callbacks -------------------------------------------------------- */

struct rec {
    char events[MAX_REC][2048];
    size_t n_events;
    char gaps[MAX_REC][64];
    size_t n_gaps;
    char sent[MAX_REC][1024];
    size_t n_sent;
    int send_rc; /* what the fake sender returns */
};

static void rec_event(void *ctx, const char *json, size_t len, int64_t mono)
{
    struct rec *r = ctx;
    (void)mono;
    cr_assert_lt(len, sizeof(r->events[0]));
    cr_assert_eq(strlen(json), len);
    if (r->n_events < MAX_REC) {
        memcpy(r->events[r->n_events++], json, len + 1);
    }
}

static void rec_gap(void *ctx, const char *reason, uint64_t gaps, int64_t mono)
{
    struct rec *r = ctx;
    (void)mono;
    cr_assert_eq(gaps, r->n_gaps + 1, "gap numbers count from 1");
    if (r->n_gaps < MAX_REC) {
        snprintf(r->gaps[r->n_gaps++], sizeof(r->gaps[0]), "%s", reason);
    }
}

static int rec_send(void *ctx, const char *text, size_t len)
{
    struct rec *r = ctx;
    if (r->send_rc < 0) {
        return r->send_rc;
    }
    cr_assert_lt(len, sizeof(r->sent[0]));
    if (r->n_sent < MAX_REC) {
        memcpy(r->sent[r->n_sent], text, len);
        r->sent[r->n_sent++][len] = '\0';
    }
    return 0;
}

/* ---- the scripted fixture --------------------------------------------------------- */

static struct fake_clock g_fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
static struct cq_clock g_clock;
static struct cq_ws_loop *g_loop;
static struct cq_wsapi *g_api;
static struct rec g_rec;

static void scripted_setup(void)
{
    cq_log_set_level(CQ_LOG_ERROR);
    g_clock = fake_clock_as_clock(&g_fc);
    memset(&g_rec, 0, sizeof(g_rec));
    struct cq_err err;
    g_loop = cq_ws_loop_new(&err);
    cr_assert_not_null(g_loop, "%s", err.message);
    struct cq_wsapi_options o = {
        .url = "ws://127.0.0.1:9/ws-api/v3",
        .api_key = KEY,
        .api_secret = SECRET,
        .jitter_seed = 7,
        .clock = &g_clock,
    };
    struct cq_wsapi_callbacks cb = {rec_event, rec_gap, &g_rec};
    g_api = cq_wsapi_new(g_loop, &o, &cb, &err);
    cr_assert_not_null(g_api, "%s", err.message);
    cq_wsapi__set_sender(g_api, rec_send, &g_rec);
}

static void scripted_teardown(void)
{
    cq_wsapi_free(g_api);
    cq_ws_loop_free(g_loop);
}

static int64_t now(void)
{
    return atomic_load(&g_fc.mono_ms);
}

static void feed(const char *frame)
{
    cq_wsapi__on_message(g_api, frame, strlen(frame), now());
}

static struct cq_wsapi_stats stats(void)
{
    struct cq_wsapi_stats s;
    cq_wsapi_stats(g_api, &s);
    return s;
}

/* The id of the last request sent (an integer). */
static long long last_id(void)
{
    cr_assert_gt(g_rec.n_sent, 0, "no request sent");
    json_t *j = json_loads(g_rec.sent[g_rec.n_sent - 1], 0, NULL);
    cr_assert(json_is_object(j), "request is not JSON: %s", g_rec.sent[g_rec.n_sent - 1]);
    cr_assert(json_is_integer(json_object_get(j, "id")));
    long long id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    return id;
}

static void answer_ok(int sub_id)
{
    char f[512];
    snprintf(f, sizeof f,
             "{\"id\":%lld,\"status\":200,\"result\":{\"subscriptionId\":%d},\"rateLimits\":"
             "[{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"MINUTE\",\"intervalNum\":1,"
             "\"limit\":6000,\"count\":%d}]}",
             last_id(), sub_id, 2 + sub_id);
    feed(f);
}

/* connect + subscribe answered: subscribed with sub_id */
static void connect_and_subscribe(int sub_id)
{
    size_t before = g_rec.n_sent;
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    cr_assert_eq(g_rec.n_sent, before + 1, "a connect sends one subscribe");
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBING);
    answer_ok(sub_id);
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBED, "state %s (%s)",
                 cq_wsapi_state_name(stats().state), stats().problem);
}

TestSuite(scripted, .init = scripted_setup, .fini = scripted_teardown);

/* web-socket-api.md: "userDataStream.subscribe.signature … apiKey, recvWindow,
 * signature, timestamp"; the signature is HMAC-SHA256 over the params except
 * signature, sorted by name, joined name=value&… */
Test(scripted, the_subscribe_request_is_signed_over_params_sorted_by_name)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    cr_assert_eq(g_rec.n_sent, 1);
    json_t *j = json_loads(g_rec.sent[0], 0, NULL);
    cr_assert_not_null(j, "%s", g_rec.sent[0]);
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")),
                     "userDataStream.subscribe.signature");
    json_t *p = json_object_get(j, "params");
    cr_assert_str_eq(json_string_value(json_object_get(p, "apiKey")), KEY);
    long long ts = json_integer_value(json_object_get(p, "timestamp"));
    cr_assert_eq(ts, 1763683200000LL, "timestamp is the wall clock in ms");
    long long rw = json_integer_value(json_object_get(p, "recvWindow"));
    cr_assert_eq(rw, CQ_WSAPI_RECV_WINDOW_MS);
    char payload[256];
    snprintf(payload, sizeof payload, "apiKey=%s&recvWindow=%lld&timestamp=%lld", KEY, rw, ts);
    const char *sig = json_string_value(json_object_get(p, "signature"));
    cr_assert_not_null(sig);
    cr_assert(
        cq_sign_verify(SECRET, strlen(SECRET), payload, strlen(payload), NULL, 0, sig, strlen(sig)),
        "signature %s does not sign %s", sig, payload);
    json_decref(j);
}

/* web-socket-api.md: the response {"id":…,"status":200,"result":
 * {"subscriptionId":0},"rateLimits":[…]}. The first subscription is a gap
 * too ("start"): the trader reconciles what happened before it. */
Test(scripted, a_subscribe_answer_subscribes_reports_the_start_gap_and_the_weight)
{
    connect_and_subscribe(0);
    struct cq_wsapi_stats s = stats();
    cr_assert_eq(s.subscription_id, 0);
    cr_assert_eq(s.subscribes_ok, 1);
    cr_assert_eq(s.used_weight_1m, 2);
    cr_assert_eq(s.weight_limit_1m, 6000);
    cr_assert_eq(g_rec.n_gaps, 1);
    cr_assert_str_eq(g_rec.gaps[0], "start");
    cr_assert_str_eq(s.problem, "");
}

/* user-data-stream.md: events arrive as {"subscriptionId":N,"event":{…}}:
 * the trader gets the event object, as the listenKey stream gave it. */
Test(scripted, wrapped_events_are_unwrapped_and_other_subscriptions_dropped)
{
    connect_and_subscribe(3);
    feed("{\"subscriptionId\":3,\"event\":{\"e\":\"executionReport\",\"E\":1,\"s\":\"BTCUSDT\","
         "\"x\":\"NEW\",\"i\":42}}");
    cr_assert_eq(g_rec.n_events, 1);
    cr_assert_str_eq(
        g_rec.events[0],
        "{\"e\":\"executionReport\",\"E\":1,\"s\":\"BTCUSDT\",\"x\":\"NEW\",\"i\":42}");
    feed("{\"subscriptionId\":4,\"event\":{\"e\":\"executionReport\",\"E\":2}}");
    feed("{\"event\":{\"e\":\"outboundAccountPosition\",\"E\":3}}");
    cr_assert_eq(g_rec.n_events, 1, "an event of another (or no) subscription is not ours");
    cr_assert_eq(stats().stray, 2);
    cr_assert_eq(stats().events, 1);
}

/* web-socket-api.md error shape: {"id":…,"status":400,"error":{"code":-1022,
 * "msg":"Signature for this request is not valid."}}. Retried on the same
 * connection after the backoff (1 s first, jittered [0.5 s, 1 s]), never
 * before. */
Test(scripted, a_bad_signature_answer_is_retried_after_the_backoff)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    char f[256];
    snprintf(f, sizeof f,
             "{\"id\":%lld,\"status\":400,\"error\":{\"code\":-1022,\"msg\":\"Signature for this "
             "request is not valid.\"}}",
             last_id());
    feed(f);
    struct cq_wsapi_stats s = stats();
    cr_assert_eq(s.state, CQ_WSAPI_RETRY_WAIT);
    cr_assert_eq(s.subscribes_refused, 1);
    cr_assert_eq(s.last_error_code, -1022);
    cr_assert(strstr(s.problem, "-1022") != NULL && strstr(s.problem, "Signature") != NULL,
              "problem: %s", s.problem);
    cr_assert_eq(g_rec.n_gaps, 0, "no subscription: no gap event");
    cr_assert_geq(s.retry_in_ms, CQ_WSAPI_RETRY_MIN_MS / 2);
    cr_assert_leq(s.retry_in_ms, CQ_WSAPI_RETRY_MIN_MS);
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_RETRY_MIN_MS / 2 - 1);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 1, "not before the backoff");
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_RETRY_MIN_MS);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 2, "retried once the backoff is over");
    answer_ok(0);
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBED);
    cr_assert_str_eq(stats().problem, "");
    cr_assert_eq(g_rec.n_gaps, 1);
    cr_assert_str_eq(g_rec.gaps[0], "start");
}

/* 429 with {"data":{"serverTime":…,"retryAfter":…}}: not sooner than that. */
Test(scripted, a_rate_limited_subscribe_waits_for_retry_after)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    char f[384];
    snprintf(f, sizeof f,
             "{\"id\":%lld,\"status\":429,\"error\":{\"code\":-1003,\"msg\":\"Too many requests.\","
             "\"data\":{\"serverTime\":1000000,\"retryAfter\":1030000}}}",
             last_id());
    feed(f);
    cr_assert_eq(stats().state, CQ_WSAPI_RETRY_WAIT);
    fake_clock_advance_ms(&g_fc, 29999);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 1, "not before retryAfter (30 s)");
    fake_clock_advance_ms(&g_fc, 1);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 2);
}

/* web-socket-api.md: -1021 "Timestamp for this request is outside of the
 * recvWindow.": the client asks `time` ({"id":…,"method":"time"}) and the
 * retry's timestamp carries the server's offset. */
Test(scripted, a_timestamp_refusal_learns_the_server_offset)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    char f[384];
    snprintf(f, sizeof f,
             "{\"id\":%lld,\"status\":400,\"error\":{\"code\":-1021,\"msg\":\"Timestamp for "
             "this request is outside of the recvWindow.\"}}",
             last_id());
    feed(f);
    cr_assert_eq(g_rec.n_sent, 2, "a time request follows the -1021");
    json_t *t = json_loads(g_rec.sent[1], 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(t, "method")), "time");
    json_decref(t);
    /* The server is 7 s behind us (the fake clock stands still: no round trip). */
    snprintf(f, sizeof f, "{\"id\":%lld,\"status\":200,\"result\":{\"serverTime\":%lld}}",
             last_id(), 1763683200000LL - 7000);
    feed(f);
    cr_assert_eq(stats().time_offset_ms, -7000);
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_RETRY_MIN_MS);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 3);
    json_t *j = json_loads(g_rec.sent[2], 0, NULL);
    long long ts = json_integer_value(json_object_get(json_object_get(j, "params"), "timestamp"));
    json_decref(j);
    cr_assert_eq(ts, 1763683200000LL + CQ_WSAPI_RETRY_MIN_MS - 7000,
                 "the retry's timestamp is the server's time");
}

/* user-data-stream.md: eventStreamTerminated ends the subscription
 * ({"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":…}}): the
 * client subscribes again, and the new subscription is a gap. */
Test(scripted, event_stream_terminated_resubscribes_with_a_gap)
{
    connect_and_subscribe(0);
    feed("{\"subscriptionId\":0,\"event\":{\"e\":\"eventStreamTerminated\",\"E\":5}}");
    cr_assert_eq(stats().state, CQ_WSAPI_RETRY_WAIT);
    cr_assert_eq(stats().terminated, 1);
    cr_assert_eq(g_rec.n_events, 0, "the termination is not a user event");
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_RETRY_MIN_MS);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 2);
    answer_ok(1);
    cr_assert_eq(g_rec.n_gaps, 2);
    cr_assert_str_eq(g_rec.gaps[1], "event_stream_terminated");
    feed("{\"subscriptionId\":0,\"event\":{\"e\":\"executionReport\",\"E\":6}}");
    cr_assert_eq(g_rec.n_events, 0, "the ended subscription's events are not taken");
    feed("{\"subscriptionId\":1,\"event\":{\"e\":\"executionReport\",\"E\":7}}");
    cr_assert_eq(g_rec.n_events, 1);
}

/* web-socket-api.md: serverShutdown ({"event":{"e":"serverShutdown",…}}):
 * reconnect; the subscription on the new connection is a gap. */
Test(scripted, server_shutdown_reconnects_and_the_resubscribe_is_a_gap)
{
    connect_and_subscribe(0);
    feed("{\"event\":{\"e\":\"serverShutdown\",\"E\":1}}");
    cr_assert_eq(stats().state, CQ_WSAPI_CONNECTING);
    cr_assert_eq(stats().server_shutdowns, 1);
    cq_wsapi__on_state(g_api, CQ_WS_BACKOFF, "closed_by_peer"); /* the close that follows */
    connect_and_subscribe(0);
    cr_assert_eq(g_rec.n_gaps, 2);
    cr_assert_str_eq(g_rec.gaps[1], "server_shutdown", "the first reason wins");
}

/* A dropped connection (or the 24 h cap: the ws client's "lifetime"
 * reconnect) loses the subscription; the next one is a gap with that reason. */
Test(scripted, a_closed_connection_resubscribes_with_its_reason)
{
    connect_and_subscribe(0);
    cq_wsapi__on_state(g_api, CQ_WS_BACKOFF, "lifetime");
    cr_assert_eq(stats().state, CQ_WSAPI_CONNECTING);
    cr_assert_eq(stats().subscription_id, -1);
    connect_and_subscribe(0);
    cr_assert_eq(g_rec.n_gaps, 2);
    cr_assert_str_eq(g_rec.gaps[1], "lifetime");
}

Test(scripted, a_malformed_frame_is_counted_and_dropped)
{
    connect_and_subscribe(0);
    feed("not json");
    feed("[1,2]");
    feed("{\"foo\":1}");
    feed("{\"subscriptionId\":0,\"event\":{\"E\":1}}");
    feed("{\"subscriptionId\":0,\"event\":{\"e\":\"executionReport\"");
    struct cq_wsapi_stats s = stats();
    cr_assert_eq(s.malformed, 5);
    cr_assert_eq(s.state, CQ_WSAPI_SUBSCRIBED, "a bad frame changes nothing");
    cr_assert_eq(g_rec.n_events, 0);
    feed("{\"subscriptionId\":0,\"event\":{\"e\":\"executionReport\",\"E\":1}}");
    cr_assert_eq(g_rec.n_events, 1, "the stream goes on");
}

/* An answer to nothing we asked (an old id) is not a subscription. */
Test(scripted, an_answer_to_another_id_is_ignored)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    feed("{\"id\":999,\"status\":200,\"result\":{\"subscriptionId\":0}}");
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBING);
    cr_assert_eq(stats().stray, 1);
}

/* No answer within CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS: reconnect (exactly at the
 * bound on the fake clock, not a millisecond before). */
Test(scripted, no_answer_to_the_subscribe_times_out_at_its_bound)
{
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS - 1);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBING);
    fake_clock_advance_ms(&g_fc, 1);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(stats().state, CQ_WSAPI_CONNECTING);
    cr_assert_eq(stats().subscribe_timeouts, 1);
    connect_and_subscribe(0);
    cr_assert_str_eq(g_rec.gaps[0], "start", "nothing was subscribed before: still the start");
}

/* The send queue refused the request: retried after the backoff. */
Test(scripted, a_refused_send_is_retried)
{
    g_rec.send_rc = -CQ_EFULL;
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    cr_assert_eq(stats().state, CQ_WSAPI_RETRY_WAIT);
    g_rec.send_rc = 0;
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_RETRY_MIN_MS);
    cq_wsapi_tick(g_api, now());
    cr_assert_eq(g_rec.n_sent, 1);
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBING);
}

Test(scripted, missing_credentials_are_refused_with_a_hint)
{
    struct cq_err err;
    struct cq_wsapi_options o = {.url = "ws://127.0.0.1:9/ws-api/v3", .api_key = KEY};
    cr_assert_null(cq_wsapi_new(g_loop, &o, NULL, &err));
    cr_assert(strstr(err.message, "secret") != NULL, "%s", err.message);
}

/* ---- against coinquant-simex ------------------------------------------------------ */

static struct cq_sim *g_sim;
static char g_wsapi_url[256];

static void sim_setup(void)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    memset(&g_rec, 0, sizeof(g_rec));
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=1", balances, 4, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = 1,
        .speed = 1,
        .seed = 42,
        .balances = balances,
        .n_balances = n_balances,
        .maker_bps = 10,
        .taker_bps = 10,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    snprintf(g_wsapi_url, sizeof g_wsapi_url, "%s/ws-api/v3", cq_sim_ws_url(g_sim));
    g_loop = cq_ws_loop_new(&err);
    cr_assert_not_null(g_loop);
}

static void sim_teardown(void)
{
    cq_wsapi_free(g_api);
    g_api = NULL;
    cq_ws_loop_free(g_loop);
    cq_sim_free(g_sim);
    curl_global_cleanup();
}

static void sim_client(const char *secret)
{
    struct cq_err err;
    struct cq_wsapi_options o = {
        .url = g_wsapi_url,
        .api_key = CQ_SIM_DEFAULT_API_KEY,
        .api_secret = secret,
        .backoff_max_ms = 500,
    };
    struct cq_wsapi_callbacks cb = {rec_event, rec_gap, &g_rec};
    g_api = cq_wsapi_new(g_loop, &o, &cb, &err);
    cr_assert_not_null(g_api, "%s", err.message);
    cr_assert_eq(cq_wsapi_start(g_api), 0);
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Service the loop (as the feeder does) until cond holds or 10 s pass. */
#define PUMP_UNTIL(cond)                                                                           \
    do {                                                                                           \
        int64_t end_ = real_ms() + 10000;                                                          \
        while (!(cond) && real_ms() < end_) {                                                      \
            cr_assert_eq(cq_ws_loop_service(g_loop, 20), 0);                                       \
            cq_wsapi_tick(g_api, real_ms());                                                       \
        }                                                                                          \
        cr_assert((cond), "timed out waiting for: %s (state %s, reason %s, problem %s)", #cond,    \
                  cq_wsapi_state_name(stats().state), stats().reason, stats().problem);            \
    } while (0)

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void sim_post(const char *path_and_query)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", cq_sim_rest_url(g_sim), path_and_query);
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    struct curl_slist *hdr = curl_slist_append(NULL, "X-MBX-APIKEY: " CQ_SIM_DEFAULT_API_KEY);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    cr_assert_eq(curl_easy_perform(h), CURLE_OK);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
}

static void market_buy(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char q[256];
    snprintf(q, sizeof q, "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp=%lld",
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    char sig[CQ_SIGN_HEX_LEN + 1];
    cr_assert_eq(cq_sign_hmac_sha256_hex(CQ_SIM_DEFAULT_API_SECRET,
                                         strlen(CQ_SIM_DEFAULT_API_SECRET), q, strlen(q), NULL, 0,
                                         sig),
                 0);
    char path[512];
    snprintf(path, sizeof path, "/api/v3/order?%s&signature=%s", q, sig);
    sim_post(path);
}

static bool has_event(const char *needle)
{
    for (size_t i = 0; i < g_rec.n_events; i++) {
        if (strstr(g_rec.events[i], needle) != NULL) {
            return true;
        }
    }
    return false;
}

TestSuite(simex, .init = sim_setup, .fini = sim_teardown, .timeout = 60);

Test(simex, subscribes_and_an_order_arrives_as_unwrapped_execution_reports)
{
    sim_client(CQ_SIM_DEFAULT_API_SECRET);
    PUMP_UNTIL(stats().state == CQ_WSAPI_SUBSCRIBED);
    cr_assert_eq(g_rec.n_gaps, 1);
    cr_assert_str_eq(g_rec.gaps[0], "start");
    cr_assert_geq(stats().used_weight_1m, 2, "the subscribe's weight (2) is counted");
    market_buy();
    PUMP_UNTIL(has_event("\"x\":\"TRADE\""));
    cr_assert(has_event("\"x\":\"NEW\""));
    cr_assert(g_rec.events[0][0] == '{' && strstr(g_rec.events[0], "subscriptionId") == NULL,
              "unwrapped: %s", g_rec.events[0]);
    cr_assert_eq(stats().malformed, 0);
}

Test(simex, a_wrong_secret_is_refused_with_1022_and_retried)
{
    sim_client("not-the-secret");
    PUMP_UNTIL(stats().subscribes_refused >= 1);
    struct cq_wsapi_stats s = stats();
    cr_assert_eq(s.last_error_code, -1022, "problem: %s", s.problem);
    cr_assert_neq(s.state, CQ_WSAPI_SUBSCRIBED);
    cr_assert_eq(g_rec.n_gaps, 0);
    PUMP_UNTIL(stats().subscribes_refused >= 2); /* retried after ~1 s on the same connection */
}

Test(simex, a_dropped_connection_is_resubscribed_with_a_gap)
{
    sim_client(CQ_SIM_DEFAULT_API_SECRET);
    PUMP_UNTIL(stats().state == CQ_WSAPI_SUBSCRIBED);
    sim_post("/_sim/ws/drop");
    PUMP_UNTIL(g_rec.n_gaps >= 2 && stats().state == CQ_WSAPI_SUBSCRIBED);
    cr_assert_str_eq(g_rec.gaps[1], "closed_by_peer");
    market_buy();
    PUMP_UNTIL(has_event("\"x\":\"TRADE\""));
}

Test(simex, the_simulators_shutdown_is_seen)
{
    sim_client(CQ_SIM_DEFAULT_API_SECRET);
    PUMP_UNTIL(stats().state == CQ_WSAPI_SUBSCRIBED);
    cq_sim_stop(g_sim);
    PUMP_UNTIL(stats().server_shutdowns == 1);
    cr_assert_neq(stats().state, CQ_WSAPI_SUBSCRIBED);
}

/* The feeder sleeps until cq_wsapi_due_in_ms: it is exactly the time left to
 * the subscribe timeout or the retry, and "never" when nothing is pending. */
Test(scripted, due_in_ms_is_the_time_to_the_next_timer)
{
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), INT64_MAX, "not connected: no timer");
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS);
    fake_clock_advance_ms(&g_fc, CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS - 1);
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), 1);
    fake_clock_advance_ms(&g_fc, 1);
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), 0, "at the bound: due now");
    answer_ok(0);
    cr_assert_eq(stats().state, CQ_WSAPI_SUBSCRIBED);
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), INT64_MAX, "subscribed: no timer");
    cq_wsapi__on_state(g_api, CQ_WS_BACKOFF, "closed_by_peer");
    cq_wsapi__on_state(g_api, CQ_WS_CONNECTED, "connected");
    char f[384];
    snprintf(f, sizeof f,
             "{\"id\":%lld,\"status\":429,\"error\":{\"code\":-1003,\"msg\":\"Too many requests.\","
             "\"data\":{\"serverTime\":1000000,\"retryAfter\":1030000}}}",
             last_id());
    feed(f);
    cr_assert_eq(stats().state, CQ_WSAPI_RETRY_WAIT);
    int64_t due = cq_wsapi_due_in_ms(g_api, now());
    cr_assert_eq(due, stats().retry_in_ms, "due %lld ms", (long long)due);
    cr_assert_geq(due, 29999);
    fake_clock_advance_ms(&g_fc, due - 1);
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), 1);
    fake_clock_advance_ms(&g_fc, 1);
    cr_assert_eq(cq_wsapi_due_in_ms(g_api, now()), 0);
}
