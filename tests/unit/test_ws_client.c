/*
 * test_ws_client.c — the exchange WebSocket client (server/exchange/
 * ws_client.c) against a live in-process coinquant-simex over loopback.
 *
 * Each test starts the whole simulator through cq/sim.h (synthetic market,
 * speed 200: a 1m bar every 0.3 s, so trades and book tickers flow) and
 * drives one struct cq_ws_loop from the test's own thread, as the feeder
 * would. Faults go through the simulator's real control endpoints
 * (POST /_sim/ws/drop, /_sim/ws/stall) with libcurl. Callbacks record every
 * message and every on_state (with a stats snapshot taken inside it), and
 * the assertions read those records. Fragmentation, which the simulator
 * never produces, is exercised with a one-shot scripted server on a plain
 * socket (fake_srv below).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
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

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "cq/clock.h"
#include "cq/log.h"
#include "cq/sim.h"
#include "cq/ws_client.h"
#include "fakes/fake_clock.h"

#define TICK_MS 20 /* one service call in the pump loops */

/* ---- time ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    return cq_time_mono_ms();
}

/* ---- the simulator ------------------------------------------------------------ */

static struct cq_sim *g_sim;
static char g_ws[128];   /* "ws://127.0.0.1:P" */
static char g_rest[128]; /* "http://127.0.0.1:P" */
static int g_ws_port;

static void sim_up(void)
{
    static const char *const symbols[] = {"BTCUSDT", "ETHUSDT"};
    struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    cq_log_set_level(CQ_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(cq_sim_parse_balances(CQ_SIM_DEFAULT_BALANCES, balances, 4, &n_balances, &err), 0);
    struct cq_sim_options o;
    memset(&o, 0, sizeof o);
    o.bind = "127.0.0.1";
    o.symbols = symbols;
    o.n_symbols = 2;
    o.speed = 200;
    o.seed = 7;
    o.balances = balances;
    o.n_balances = n_balances;
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_ws, cq_sim_ws_url(g_sim), sizeof g_ws);
    cq_strlcpy(g_rest, cq_sim_rest_url(g_sim), sizeof g_rest);
    const char *colon = strrchr(g_ws, ':');
    cr_assert_not_null(colon);
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
    cr_assert_gt(g_ws_port, 0);
}

/* The server pings every 200 ms and closes a client whose last pong is
 * older than 3 s: a client must answer within seconds, not within one
 * scheduler slice of a loaded CI box. */
#define SHORT_PONG_TIMEOUT_MS 3000

static void sim_up_short_keepalive(void)
{
    setenv("SIMEX_WS_PING_MS", "200", 1);
    setenv("SIMEX_WS_PONG_TIMEOUT_MS", "3000", 1);
    sim_up();
}

static void sim_down(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
}

static size_t discard_body(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* POST a /_sim/ control path; asserts 200. */
static void sim_post(const char *path_and_query)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", g_rest, path_and_query);
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(h);
    cr_assert_eq(rc, CURLE_OK, "POST %s: %s", url, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq(status, 200, "POST %s: HTTP %ld", url, status);
    curl_easy_cleanup(h);
}

/* ---- recording callbacks ---------------------------------------------------------- */

#define REC_MSGS_MAX 20000
#define REC_EVENTS_MAX 256

struct rec_event {
    enum cq_ws_state state;
    char reason[32];
    int64_t at_ms;
    size_t msgs_before;              /* messages received before this event */
    struct cq_ws_client_stats stats; /* snapshot taken inside on_state */
};

struct rec {
    struct cq_ws_client *client; /* borrowed */
    size_t n_msgs;
    char *msgs[REC_MSGS_MAX]; /* owned copies of the first REC_MSGS_MAX */
    int64_t last_msg_ms;
    size_t n_ev;
    struct rec_event ev[REC_EVENTS_MAX];
    const char *send_on_connect; /* sent from inside on_state(CONNECTED) */
    int send_rc;
    size_t stop_at_msgs; /* if > 0: cq_ws_client_stop from inside on_message */
};

static void rec_on_message(void *ctx, const char *data, size_t len, int64_t recv_mono_ms)
{
    struct rec *r = ctx;
    cr_assert_eq(strlen(data), len, "message is NUL-terminated at len");
    if (r->n_msgs < REC_MSGS_MAX) {
        r->msgs[r->n_msgs] = strndup(data, len);
        cr_assert_not_null(r->msgs[r->n_msgs]);
    }
    r->n_msgs++;
    r->last_msg_ms = recv_mono_ms;
    if (r->stop_at_msgs > 0 && r->n_msgs == r->stop_at_msgs) {
        cq_ws_client_stop(r->client);
    }
}

static void rec_on_state(void *ctx, enum cq_ws_state state, const char *reason)
{
    struct rec *r = ctx;
    cr_assert_lt(r->n_ev, (size_t)REC_EVENTS_MAX, "too many state changes");
    struct rec_event *e = &r->ev[r->n_ev++];
    e->state = state;
    cq_strlcpy(e->reason, reason, sizeof e->reason);
    e->at_ms = now_ms();
    e->msgs_before = r->n_msgs;
    cq_ws_client_stats(r->client, &e->stats);
    cr_assert_eq(e->stats.state, state, "stats agree with on_state");
    if (state == CQ_WS_CONNECTED && r->send_on_connect != NULL) {
        r->send_rc = cq_ws_client_send(r->client, r->send_on_connect, strlen(r->send_on_connect));
    }
}

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    return r;
}

static void rec_free(struct rec *r)
{
    size_t n = r->n_msgs < REC_MSGS_MAX ? r->n_msgs : REC_MSGS_MAX;
    for (size_t i = 0; i < n; i++) {
        free(r->msgs[i]);
    }
    free(r);
}

static size_t count_reason(const struct rec *r, const char *reason)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_ev; i++) {
        if (strcmp(r->ev[i].reason, reason) == 0) {
            n++;
        }
    }
    return n;
}

/* Index of the first event with `reason` at or after `from`, or -1. */
static long find_reason(const struct rec *r, size_t from, const char *reason)
{
    for (size_t i = from; i < r->n_ev; i++) {
        if (strcmp(r->ev[i].reason, reason) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static json_t *msg_json(const struct rec *r, size_t i)
{
    cr_assert_lt(i, (size_t)REC_MSGS_MAX);
    json_error_t jerr;
    json_t *v = json_loads(r->msgs[i], 0, &jerr);
    cr_assert_not_null(v, "message %zu is not JSON (%s): %s", i, jerr.text, r->msgs[i]);
    return v;
}

/* Index of the first control reply {"result":…,"id":id} at or after `from`,
 * or -1. */
static long find_reply(const struct rec *r, size_t from, json_int_t id)
{
    for (size_t i = from; i < r->n_msgs && i < REC_MSGS_MAX; i++) {
        json_t *m = msg_json(r, i);
        bool hit = json_object_get(m, "result") != NULL &&
                   json_integer_value(json_object_get(m, "id")) == id;
        json_decref(m);
        if (hit) {
            return (long)i;
        }
    }
    return -1;
}

/* ---- the client under test ----------------------------------------------------------- */

struct fixture {
    struct cq_ws_loop *loop;
    struct cq_ws_client *client;
    struct rec *rec;
};

static struct cq_ws_client_options default_opts(const char *url)
{
    struct cq_ws_client_options o;
    memset(&o, 0, sizeof o);
    o.url = url;
    o.name = "test";
    o.connect_timeout_ms = 2000;
    o.stall_ms = 5000;
    o.backoff_base_ms = 100;
    o.backoff_max_ms = 400;
    o.jitter_seed = 12345;
    return o;
}

static void fx_open(struct fixture *fx, const struct cq_ws_client_options *o)
{
    struct cq_err err;
    memset(fx, 0, sizeof *fx);
    fx->rec = rec_new();
    fx->loop = cq_ws_loop_new(&err);
    cr_assert_not_null(fx->loop, "cq_ws_loop_new: %s", err.message);
    struct cq_ws_callbacks cb = {rec_on_message, rec_on_state, fx->rec};
    fx->client = cq_ws_client_new(fx->loop, o, &cb, &err);
    cr_assert_not_null(fx->client, "cq_ws_client_new: %s", err.message);
    fx->rec->client = fx->client;
}

static void fx_close(struct fixture *fx)
{
    cq_ws_loop_free(fx->loop); /* frees the client too */
    rec_free(fx->rec);
}

static struct cq_ws_client_stats stats_of(struct cq_ws_client *c)
{
    struct cq_ws_client_stats s;
    cq_ws_client_stats(c, &s);
    return s;
}

#define PUMP_UNTIL(loop, cond, timeout_ms)                                                         \
    do {                                                                                           \
        int64_t pump_deadline_ = now_ms() + (timeout_ms);                                          \
        while (!(cond) && now_ms() < pump_deadline_) {                                             \
            cr_assert_eq(cq_ws_loop_service((loop), TICK_MS), 0);                                  \
        }                                                                                          \
    } while (0)

static void pump_for(struct cq_ws_loop *loop, int64_t ms)
{
    int64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        cr_assert_eq(cq_ws_loop_service(loop, TICK_MS), 0);
    }
}

static void url_of(char *buf, size_t cap, const char *path)
{
    int n = snprintf(buf, cap, "%s%s", g_ws, path);
    cr_assert(n > 0 && (size_t)n < cap);
}

/* ---- market streams ----------------------------------------------------------------- */

TestSuite(ws_client, .timeout = 30);

Test(ws_client, combined_stream_messages_are_wrapped, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@kline_1m/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_IDLE);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);

    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 60, 10000);
    cr_assert_geq(fx.rec->n_msgs, 60, "only %zu messages in 10 s", fx.rec->n_msgs);
    cr_assert_eq(fx.rec->n_ev, 1, "one state change");
    cr_assert_eq(fx.rec->ev[0].state, CQ_WS_CONNECTED);
    cr_assert_str_eq(fx.rec->ev[0].reason, "connected");

    size_t seen_trade = 0, seen_kline = 0, seen_book = 0;
    for (size_t i = 0; i < fx.rec->n_msgs; i++) {
        json_t *m = msg_json(fx.rec, i);
        const char *stream = json_string_value(json_object_get(m, "stream"));
        json_t *data = json_object_get(m, "data");
        cr_assert_not_null(stream, "no \"stream\": %s", fx.rec->msgs[i]);
        cr_assert(json_is_object(data), "no \"data\" object: %s", fx.rec->msgs[i]);
        if (strcmp(stream, "btcusdt@trade") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(data, "e")), "trade");
            seen_trade++;
        } else if (strcmp(stream, "btcusdt@kline_1m") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(data, "e")), "kline");
            seen_kline++;
        } else if (strcmp(stream, "btcusdt@bookTicker") == 0) {
            cr_assert_null(json_object_get(data, "e"), "bookTicker has no \"e\"");
            cr_assert_not_null(json_object_get(data, "b"));
            seen_book++;
        } else {
            cr_assert_fail("unexpected stream %s", stream);
        }
        json_decref(m);
    }
    cr_assert_gt(seen_trade, 0);
    cr_assert_gt(seen_kline, 0);
    cr_assert_gt(seen_book, 0);

    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_eq(s.connects_total, 1);
    cr_assert_eq(s.connect_failures_total, 0);
    cr_assert_eq(s.disconnects_total, 0);
    cr_assert_eq(s.messages_total, fx.rec->n_msgs, "every message delivered and counted");
    cr_assert_gt(s.bytes_total, s.messages_total * 20);
    cr_assert_eq(s.last_message_mono_ms, fx.rec->last_msg_ms);
    cr_assert_gt(s.connected_since_mono_ms, 0);

    json_t *j = cq_ws_client_stats_json(&s);
    cr_assert_not_null(j);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "connected");
    cr_assert_eq(json_integer_value(json_object_get(j, "messages_total")),
                 (json_int_t)s.messages_total);
    json_decref(j);
    fx_close(&fx);
}

Test(ws_client, raw_stream_messages_are_unwrapped, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/btcusdt@trade");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 20, 10000);
    cr_assert_geq(fx.rec->n_msgs, 20);
    for (size_t i = 0; i < fx.rec->n_msgs; i++) {
        json_t *m = msg_json(fx.rec, i);
        cr_assert_null(json_object_get(m, "stream"), "raw, not wrapped: %s", fx.rec->msgs[i]);
        cr_assert_str_eq(json_string_value(json_object_get(m, "e")), "trade");
        cr_assert_str_eq(json_string_value(json_object_get(m, "s")), "BTCUSDT");
        json_decref(m);
    }
    fx_close(&fx);
}

/* ---- faults ------------------------------------------------------------------------- */

Test(ws_client, drop_fault_reconnects_within_backoff, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url); /* backoff 100 .. 400 */
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 10, 10000);
    cr_assert_geq(fx.rec->n_msgs, 10);

    sim_post("/_sim/ws/drop");
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, 0, "closed_by_peer") >= 0, 3000);
    long down = find_reason(fx.rec, 0, "closed_by_peer");
    cr_assert_geq(down, 0, "the drop is seen as closed_by_peer");
    cr_assert(fx.rec->ev[down].state == CQ_WS_BACKOFF ||
              fx.rec->ev[down].state == CQ_WS_CONNECTING);
    cr_assert_leq(fx.rec->ev[down].stats.backoff_ms, 400);

    PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)down, "connected") >= 0, 5000);
    long up = find_reason(fx.rec, (size_t)down, "connected");
    cr_assert_geq(up, 0, "reconnected");
    /* Not before the drawn delay (exact: the snapshot's time left is taken
     * after at_ms), and within seconds (the wall clock of a loaded CI box
     * says nothing finer; timers_follow_the_injected_clock pins the wait). */
    int64_t gap = fx.rec->ev[up].at_ms - fx.rec->ev[down].at_ms;
    cr_assert_geq(gap, fx.rec->ev[down].stats.next_attempt_in_ms,
                  "reconnected %" PRId64 " ms after the drop, before the %" PRId64 " ms wait", gap,
                  fx.rec->ev[down].stats.next_attempt_in_ms);
    cr_assert_leq(gap, 3000, "reconnected %" PRId64 " ms after the drop", gap);

    size_t before = fx.rec->n_msgs;
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= before + 10, 5000);
    cr_assert_geq(fx.rec->n_msgs, before + 10, "messages flow again");

    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.connects_total, 2);
    cr_assert_eq(s.disconnects_total, 1);
    cr_assert_eq(s.connect_failures_total, 0);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    fx_close(&fx);
}

Test(ws_client, stall_is_detected_and_recovers, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@bookTicker/ethusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    o.stall_ms = 500;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 20, 10000);
    cr_assert_geq(fx.rec->n_msgs, 20);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0, "no stall while data flows");

    sim_post("/_sim/ws/stall?on=1");
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, 0, "stall") >= 0, 5000);
    long st = find_reason(fx.rec, 0, "stall");
    cr_assert_geq(st, 0, "stall detected");
    /* Both times come from the same monotonic clock and at_ms is read after
     * the client's own check, so the lower bound is exact. The upper one is
     * loose: on a loaded CI box a service call can be late by far more than
     * a tick. stall_follows_the_last_message_on_the_injected_clock pins the
     * exact moment. */
    int64_t silent = fx.rec->ev[st].at_ms - fx.rec->last_msg_ms;
    cr_assert_geq(silent, 500, "not before stall_ms (%" PRId64 " ms)", silent);
    cr_assert_leq(silent, 3000, "within seconds of stall_ms (%" PRId64 " ms)", silent);
    cr_assert_eq(fx.rec->ev[st].stats.stalls_total, 1);

    /* It reconnects while the stall lasts (and stalls again: no data). */
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)st, "connected") >= 0, 5000);
    cr_assert_geq(find_reason(fx.rec, (size_t)st, "connected"), 0, "reconnected after the stall");

    sim_post("/_sim/ws/stall?on=0");
    size_t before = fx.rec->n_msgs;
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= before + 20, 5000);
    cr_assert_geq(fx.rec->n_msgs, before + 20, "data flows after the stall is cleared");
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_geq(s.stalls_total, 1);
    cr_assert_eq(s.stalls_total, count_reason(fx.rec, "stall"));
    cr_assert_geq(s.connects_total, 2);
    fx_close(&fx);
}

Test(ws_client, lifetime_reconnects_proactively, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    o.max_lifetime_ms = 800;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, count_reason(fx.rec, "lifetime") >= 2, 10000);
    long first_up = find_reason(fx.rec, 0, "connected");
    long life = find_reason(fx.rec, 0, "lifetime");
    cr_assert_geq(first_up, 0);
    cr_assert_geq(life, 0, "a lifetime reconnect happened");
    /* From the client's own connect time (at_ms of "connected" is read a
     * little later), so the lower bound is exact; the upper one is loose
     * (lifetime_on_the_injected_clock pins the exact moment). */
    int64_t uptime = fx.rec->ev[life].at_ms - fx.rec->ev[first_up].stats.connected_since_mono_ms;
    cr_assert_geq(uptime, 800, "not before max_lifetime_ms (%" PRId64 ")", uptime);
    cr_assert_leq(uptime, 3000, "within seconds of max_lifetime_ms (%" PRId64 ")", uptime);
    /* Not a failure: reconnect at once, without backoff (a backoff would
     * show as BACKOFF here). */
    cr_assert_eq(fx.rec->ev[life].state, CQ_WS_CONNECTING);
    long again = find_reason(fx.rec, (size_t)life, "connected");
    cr_assert_geq(again, 0);
    cr_assert_leq(fx.rec->ev[again].at_ms - fx.rec->ev[life].at_ms, 3000);

    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 3000);
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_eq(s.lifetime_reconnects_total, count_reason(fx.rec, "lifetime"));
    cr_assert_geq(s.lifetime_reconnects_total, 2);
    cr_assert_eq(s.connects_total, s.lifetime_reconnects_total + 1);
    cr_assert_eq(s.disconnects_total, s.lifetime_reconnects_total);
    cr_assert_eq(count_reason(fx.rec, "closed_by_peer"), 0);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0);
    cr_assert_gt(fx.rec->n_msgs, 0);
    fx_close(&fx);
}

/* A loopback port with nothing listening (bound, then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(ws_client, closed_port_backs_off_without_busy_looping)
{
    cq_log_set_level(CQ_LOG_ERROR);
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws/btcusdt@trade", closed_port());
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    pump_for(fx.loop, 2000);

    size_t failures = count_reason(fx.rec, "connect_failed");
    cr_assert_eq(failures, fx.rec->n_ev, "only connect_failed events");
    /* Caps 100, 200, 400, 400…: the mean delay tends to 200 ms, so about 10
     * attempts in 2 s. A busy loop would make thousands. */
    cr_assert_geq(failures, 4, "%zu attempts in 2 s", failures);
    cr_assert_leq(failures, 40, "%zu attempts in 2 s: a busy loop", failures);

    /* The cap grows 100 -> 200 -> 400 and stays; each wait is within it. */
    int64_t want_cap[] = {100, 200, 400, 400};
    for (size_t i = 0; i < 4; i++) {
        const struct rec_event *e = &fx.rec->ev[i];
        cr_assert_eq(e->stats.backoff_ms, want_cap[i], "attempt %zu: cap %" PRId64, i,
                     e->stats.backoff_ms);
        if (e->state == CQ_WS_BACKOFF) {
            cr_assert_leq(e->stats.next_attempt_in_ms, e->stats.backoff_ms);
        }
        cr_assert_eq(e->stats.connect_failures_total, i + 1);
    }
    /* Two observed waits, bounded by their growing caps. */
    size_t observed = 0;
    int64_t prev_cap = 0;
    for (size_t i = 0; i < fx.rec->n_ev && observed < 2; i++) {
        const struct rec_event *e = &fx.rec->ev[i];
        if (e->state == CQ_WS_BACKOFF && e->stats.next_attempt_in_ms > 0 &&
            e->stats.backoff_ms > prev_cap) {
            cr_assert_leq(e->stats.next_attempt_in_ms, e->stats.backoff_ms);
            prev_cap = e->stats.backoff_ms;
            observed++;
        }
    }
    cr_assert_eq(observed, 2, "two waits observed with a growing cap");

    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.connects_total, 0);
    cr_assert_eq(s.connect_failures_total, failures);
    cr_assert(s.state == CQ_WS_BACKOFF || s.state == CQ_WS_CONNECTING);
    fx_close(&fx);
}

/* ---- changing and sending -------------------------------------------------------------- */

Test(ws_client, set_url_switches_streams, .init = sim_up, .fini = sim_down)
{
    char url[256], url2[256];
    url_of(url, sizeof url, "/ws/btcusdt@trade");
    url_of(url2, sizeof url2, "/ws/ethusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 5, 10000);
    cr_assert_geq(fx.rec->n_msgs, 5);

    struct cq_err err;
    cq_err_clear(&err);
    cr_assert_eq(cq_ws_client_set_url(fx.client, "http://nope", &err), -CQ_EINVAL,
                 "bad URL refused");
    cr_expect_eq(err.code, CQ_EINVAL);
    cr_expect_neq(err.message[0], '\0', "the refusal says why");
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED, "a refused URL changes nothing");

    cr_assert_eq(cq_ws_client_set_url(fx.client, url2, NULL), 0);
    long changed = find_reason(fx.rec, 0, "url_changed");
    cr_assert_geq(changed, 0, "on_state(url_changed) at once");
    cr_assert_eq(fx.rec->ev[changed].state, CQ_WS_CONNECTING, "reconnects now, no backoff");
    size_t switch_at = fx.rec->n_msgs;
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)changed, "connected") >= 0, 3000);
    long up = find_reason(fx.rec, (size_t)changed, "connected");
    cr_assert_geq(up, 0);
    cr_assert_eq(fx.rec->ev[up].msgs_before, switch_at, "nothing from the old connection");
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= switch_at + 10, 5000);
    cr_assert_geq(fx.rec->n_msgs, switch_at + 10);

    for (size_t i = 0; i < fx.rec->n_msgs; i++) {
        json_t *m = msg_json(fx.rec, i);
        const char *e = json_string_value(json_object_get(m, "e"));
        const char *sym = json_string_value(json_object_get(m, "s"));
        if (i < switch_at) {
            cr_assert(e != NULL && strcmp(e, "trade") == 0, "old stream: %s", fx.rec->msgs[i]);
            cr_assert_str_eq(sym, "BTCUSDT");
        } else {
            cr_assert_null(e, "new stream only after the switch: %s", fx.rec->msgs[i]);
            cr_assert_not_null(json_object_get(m, "b"), "bookTicker: %s", fx.rec->msgs[i]);
            cr_assert_str_eq(sym, "ETHUSDT");
        }
        json_decref(m);
    }
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.connects_total, 2);
    cr_assert_eq(s.disconnects_total, 1);
    fx_close(&fx);
}

Test(ws_client, send_subscribe_on_ws0, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/0");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    static const char sub[] = "{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\"],\"id\":1}";
    cr_assert_eq(cq_ws_client_send(fx.client, sub, strlen(sub)), -CQ_ESTATE, "not connected");
    fx.rec->send_on_connect = sub;
    fx.rec->send_rc = 1;
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 6, 10000);
    cr_assert_eq(fx.rec->send_rc, 0, "send from on_state(connected)");
    cr_assert_geq(fx.rec->n_msgs, 6);

    json_t *reply = msg_json(fx.rec, 0);
    json_t *want = json_pack("{s:n,s:i}", "result", "id", 1);
    cr_assert(json_equal(reply, want), "reply: %s", fx.rec->msgs[0]);
    json_decref(want);
    json_decref(reply);
    for (size_t i = 1; i < fx.rec->n_msgs; i++) {
        json_t *m = msg_json(fx.rec, i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "e")), "trade", "%s",
                         fx.rec->msgs[i]);
        json_decref(m);
    }
    fx_close(&fx);
}

Test(ws_client, send_queue_is_bounded, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/0");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED);

    /* No service between the calls: nothing is written, the queue fills. */
    static const char req[] = "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":3}";
    int queued = 0;
    while (queued < 1000 && cq_ws_client_send(fx.client, req, strlen(req)) == 0) {
        queued++;
    }
    cr_assert_eq(queued, 64, "64 frames fit");
    cr_assert_eq(cq_ws_client_send(fx.client, req, strlen(req)), -CQ_EFULL);
    cq_ws_client_stop(fx.client);

    /* Bytes bound: 64 KiB. */
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    char *big = malloc(40000);
    cr_assert_not_null(big);
    memset(big, ' ', 40000);
    cr_assert_eq(cq_ws_client_send(fx.client, big, 40000), 0);
    cr_assert_eq(cq_ws_client_send(fx.client, big, 30000), -CQ_EFULL);
    cr_assert_eq(cq_ws_client_send(fx.client, big, 20000), 0);
    free(big);
    char *huge = malloc((64 << 10) + 1);
    cr_assert_not_null(huge);
    memset(huge, ' ', (64 << 10) + 1);
    cr_assert_eq(cq_ws_client_send(fx.client, huge, (64 << 10) + 1), -CQ_ETOOBIG);
    free(huge);
    cq_ws_client_stop(fx.client);
    cr_assert_eq(cq_ws_client_send(fx.client, req, strlen(req)), -CQ_ESTATE);
    fx_close(&fx);
}

/* ---- the loop ------------------------------------------------------------------------- */

struct waker {
    struct cq_ws_loop *loop;
    _Atomic int64_t woke_at;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    cq_time_sleep_ms(200);
    atomic_store(&w->woke_at, now_ms());
    cq_ws_loop_wake(w->loop);
    return NULL;
}

Test(ws_client, wake_returns_a_blocked_service_early)
{
    cq_log_set_level(CQ_LOG_ERROR);
    struct cq_err err;
    struct cq_ws_loop *loop = cq_ws_loop_new(&err);
    cr_assert_not_null(loop, "%s", err.message);

    /* The timeout is honoured (lws 4.1 itself would block until its next
     * timer, whatever the argument says)... */
    int64_t t0 = now_ms();
    cr_assert_eq(cq_ws_loop_service(loop, 300), 0);
    int64_t t1 = now_ms();
    cr_assert_eq(cq_ws_loop_service(loop, 300), 0);
    int64_t t2 = now_ms();
    /* the first call may return early on lws's own start-up timers. Upper
     * bounds are loose (a loaded CI box can be late by a second); they only
     * need to tell "returned" from "blocked until lws's next timer". */
    cr_assert_leq(t1 - t0, 2000, "service(300) took %" PRId64 " ms", t1 - t0);
    cr_assert_geq(t2 - t1, 250, "service(300) waited only %" PRId64 " ms", t2 - t1);
    cr_assert_leq(t2 - t1, 2000, "service(300) took %" PRId64 " ms", t2 - t1);
    /* Twenty calls, so a wait for lws's own timers would add up to seconds. */
    t0 = now_ms();
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(cq_ws_loop_service(loop, 0), 0);
    }
    cr_assert_lt(now_ms() - t0, 2000, "service(0) does not wait: 20 calls took %" PRId64 " ms",
                 now_ms() - t0);

    /* ...and a wake from another thread ends the wait at once. */
    struct waker w = {loop, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, waker_main, &w), 0);
    t0 = now_ms();
    cr_assert_eq(cq_ws_loop_service(loop, 5000), 0);
    int64_t returned = now_ms();
    pthread_join(th, NULL);
    int64_t woke = atomic_load(&w.woke_at);
    cr_assert_neq(woke, 0, "returned before the wake: %" PRId64 " ms", returned - t0);
    /* well before the 5 s timeout */
    cr_assert_lt(returned - woke, 2000, "returned %" PRId64 " ms after the wake", returned - woke);
    cr_assert_lt(returned - t0, 2500);

    /* A wake before the call is not lost: the next service returns well
     * before its 5 s timeout. */
    cq_ws_loop_wake(loop);
    t0 = now_ms();
    cr_assert_eq(cq_ws_loop_service(loop, 5000), 0);
    cr_assert_lt(now_ms() - t0, 2000, "a wake before the call was lost (%" PRId64 " ms)",
                 now_ms() - t0);
    cq_ws_loop_free(loop);
}

/* ---- keepalive -------------------------------------------------------------------------- */

/* A WebSocket client on a plain socket that never answers pings: the
 * control that shows the simulator does close such clients. */
static int raw_ws_open(const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_ws_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, g_ws_port);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    char resp[2048];
    size_t len = 0;
    while (len + 1 < sizeof resp) {
        struct pollfd p = {fd, POLLIN, 0};
        cr_assert_gt(poll(&p, 1, 3000), 0, "no handshake response");
        cr_assert_eq(read(fd, resp + len, 1), 1);
        len++;
        resp[len] = '\0';
        if (len >= 4 && memcmp(resp + len - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    cr_assert(strncmp(resp, "HTTP/1.1 101", 12) == 0, "handshake: %s", resp);
    return fd;
}

/* Drain what the server sent; true once it closed (close frame or EOF).
 * Server frames are unmasked; on /ws/0 they are pings and the close. */
static bool raw_ws_closed(int fd, int *pings)
{
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) {
            return false;
        }
        unsigned char h[2];
        ssize_t r = recv(fd, h, 2, MSG_WAITALL);
        if (r != 2) {
            return true;
        }
        size_t plen = h[1] & 0x7f;
        cr_assert_lt(plen, (size_t)126, "only control frames expected");
        unsigned char payload[128];
        if (plen > 0 && recv(fd, payload, plen, MSG_WAITALL) != (ssize_t)plen) {
            return true;
        }
        int opcode = h[0] & 0x0f;
        if (opcode == 0x8) {
            return true;
        }
        if (opcode == 0x9) {
            (*pings)++;
        }
    }
}

Test(ws_client, server_pings_are_answered, .init = sim_up_short_keepalive, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/0"); /* no data: only pings arrive */
    struct cq_ws_client_options o = default_opts(url);
    o.stall_ms = 60000; /* silence is expected here */
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED);

    /* The control: a client that never pongs, opened after ours. The
     * simulator closes it (1008) once its last pong is older than the
     * timeout; ours is older, so the same check would have closed it first
     * if lws did not answer the pings. So the window is measured by the
     * simulator's own clock (the control's close), not by ours: keep
     * pumping until the control is closed, then one more second for a close
     * of ours to arrive. */
    int64_t opened_at = now_ms(); /* before the simulator starts its timer */
    int raw = raw_ws_open("/ws/0");
    int raw_pings = 0;
    int64_t raw_closed_at = -1;
    while (now_ms() - opened_at < 20000 && (raw_closed_at < 0 || now_ms() - raw_closed_at < 1000)) {
        cr_assert_eq(cq_ws_loop_service(fx.loop, TICK_MS), 0);
        if (raw_closed_at < 0 && raw_ws_closed(raw, &raw_pings)) {
            raw_closed_at = now_ms();
        }
    }
    close(raw);
    cr_assert_geq(raw_closed_at, 0, "the simulator closes a client that does not pong (%d pings)",
                  raw_pings);
    cr_assert_geq(raw_pings, 3, "the server pinged every 200 ms");
    cr_assert_geq(raw_closed_at - opened_at, SHORT_PONG_TIMEOUT_MS,
                  "closed after %" PRId64 " ms: before the pong timeout",
                  raw_closed_at - opened_at);

    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED, "still connected after the pong timeout");
    cr_assert_eq(s.connects_total, 1);
    cr_assert_eq(s.disconnects_total, 0);
    cr_assert_eq(fx.rec->n_ev, 1, "no reconnect (%zu state changes)", fx.rec->n_ev);
    cr_assert_eq(fx.rec->n_msgs, 0, "pings are not messages");
    fx_close(&fx);
}

/* ---- limits and lifecycle ----------------------------------------------------------------- */

Test(ws_client, oversize_message_is_dropped_and_reconnects, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/ws/btcusdt@kline_1m"); /* ~400-byte messages */
    struct cq_ws_client_options o = default_opts(url);
    o.max_message_bytes = 64;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, count_reason(fx.rec, "oversize") >= 2, 10000);
    cr_assert_geq(count_reason(fx.rec, "oversize"), 2, "oversize, reconnect, oversize again");
    long first = find_reason(fx.rec, 0, "oversize");
    cr_assert_eq(fx.rec->ev[first].state, CQ_WS_BACKOFF);
    cr_assert_eq(fx.rec->n_msgs, 0, "no partial message delivered");
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.oversize_total, count_reason(fx.rec, "oversize"));
    cr_assert_eq(s.messages_total, 0);
    cr_assert_geq(s.connects_total, 2);
    cr_assert_geq(s.disconnects_total, 2);
    fx_close(&fx);
}

Test(ws_client, messages_up_to_the_limit_are_delivered, .init = sim_up, .fini = sim_down)
{
    /* The same stream with a limit that fits: proves the test above drops
     * for size, not for some other reason. */
    char url[256];
    url_of(url, sizeof url, "/ws/btcusdt@kline_1m");
    struct cq_ws_client_options o = default_opts(url);
    o.max_message_bytes = 2048;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 3, 10000);
    cr_assert_geq(fx.rec->n_msgs, 3);
    cr_assert_gt(strlen(fx.rec->msgs[0]), 64);
    cr_assert_eq(stats_of(fx.client).oversize_total, 0);
    fx_close(&fx);
}

Test(ws_client, stop_means_no_reconnect, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    o.stall_ms = 300;
    o.max_lifetime_ms = 600;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 10, 10000);
    cr_assert_geq(fx.rec->n_msgs, 10);

    cq_ws_client_stop(fx.client);
    size_t n_ev = fx.rec->n_ev;
    size_t n_msgs = fx.rec->n_msgs;
    cr_assert_eq(fx.rec->ev[n_ev - 1].state, CQ_WS_IDLE);
    cr_assert_str_eq(fx.rec->ev[n_ev - 1].reason, "stopped");
    sim_post("/_sim/ws/drop");
    pump_for(fx.loop, 1500); /* past backoff, stall and lifetime */
    cr_assert_eq(fx.rec->n_ev, n_ev, "no state change after stop");
    cr_assert_eq(fx.rec->n_msgs, n_msgs, "no message after stop");
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_IDLE);
    cr_assert_eq(s.connects_total, 1);
    cr_assert_eq(s.disconnects_total, 1);
    cr_assert_eq(s.stalls_total, 0);
    cr_assert_eq(s.lifetime_reconnects_total, 0);

    /* Stopped while backing off: the pending attempt is cancelled too. */
    cq_ws_client_reconnect(fx.client, "stall"); /* idle: no effect */
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_IDLE);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cq_ws_client_reconnect(fx.client, "closed_by_peer");
    cr_assert_eq(stats_of(fx.client).connects_total, 2);
    cq_ws_client_stop(fx.client);
    pump_for(fx.loop, 800);
    s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_IDLE);
    cr_assert_eq(s.connects_total, 2, "no attempt after stop during backoff");
    fx_close(&fx);
}

Test(ws_client, stop_from_on_message_delivers_nothing_more, .init = sim_up, .fini = sim_down)
{
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    /* Messages come in bursts, several per service call: stop inside the
     * callback of the 5th; the rest of its burst must not be delivered. */
    fx.rec->stop_at_msgs = 5;
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 5, 10000);
    cr_assert_eq(fx.rec->n_msgs, 5);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_IDLE);
    cr_assert_str_eq(fx.rec->ev[fx.rec->n_ev - 1].reason, "stopped");
    pump_for(fx.loop, 500);
    cr_assert_eq(fx.rec->n_msgs, 5, "nothing after stop");
    cr_assert_eq(stats_of(fx.client).messages_total, 5);
    cr_assert_eq(stats_of(fx.client).connects_total, 1);
    fx_close(&fx);
}

/* ---- injected clock ------------------------------------------------------------------------- */

Test(ws_client, timers_follow_the_injected_clock, .init = sim_up, .fini = sim_down)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
    struct cq_clock clock = fake_clock_as_clock(&fc);
    char url[256];
    url_of(url, sizeof url, "/ws/0"); /* silent */
    struct cq_ws_client_options o = default_opts(url);
    o.clock = &clock;
    o.stall_ms = 500;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED);
    cr_assert_eq(stats_of(fx.client).connected_since_mono_ms, 1000000);

    /* Real time passes, injected time does not: no stall. */
    pump_for(fx.loop, 700);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0);
    fake_clock_advance_ms(&fc, 499);
    cr_assert_eq(cq_ws_loop_service(fx.loop, 0), 0);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0);
    fake_clock_advance_ms(&fc, 1);
    cr_assert_eq(cq_ws_loop_service(fx.loop, 0), 0);
    long st = find_reason(fx.rec, 0, "stall");
    cr_assert_geq(st, 0, "stall at exactly stall_ms of injected time");

    /* The backoff waits for injected time too. */
    struct cq_ws_client_stats s = fx.rec->ev[st].stats;
    if (s.state == CQ_WS_BACKOFF) {
        cr_assert_gt(s.next_attempt_in_ms, 0);
        pump_for(fx.loop, 600);
        cr_assert_eq(stats_of(fx.client).state, CQ_WS_BACKOFF, "still waiting");
        cr_assert_eq(stats_of(fx.client).next_attempt_in_ms, s.next_attempt_in_ms);
        fake_clock_advance_ms(&fc, s.next_attempt_in_ms);
    }
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)st, "connected") >= 0, 3000);
    cr_assert_geq(find_reason(fx.rec, (size_t)st, "connected"), 0);
    fx_close(&fx);
}

Test(ws_client, stall_follows_the_last_message_on_the_injected_clock, .init = sim_up,
     .fini = sim_down)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
    struct cq_clock clock = fake_clock_as_clock(&fc);
    char url[256];
    url_of(url, sizeof url, "/stream?streams=btcusdt@trade/btcusdt@bookTicker/ethusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    o.clock = &clock;
    o.stall_ms = 500;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 5, 10000);
    cr_assert_geq(fx.rec->n_msgs, 5);

    /* Injected time moves in steps shorter than stall_ms, each followed by
     * a message: the connection gets older than stall_ms, but no stall. */
    for (int i = 0; i < 3; i++) {
        fake_clock_advance_ms(&fc, 400);
        size_t seen = fx.rec->n_msgs;
        PUMP_UNTIL(fx.loop, fx.rec->n_msgs > seen, 10000);
        cr_assert_gt(fx.rec->n_msgs, seen, "data flows");
        cr_assert_eq(fx.rec->last_msg_ms, atomic_load(&fc.mono_ms));
    }
    cr_assert_eq(count_reason(fx.rec, "stall"), 0, "each message restarts the stall timer");

    /* Stall the feed. The simulator writes a connection's frames in order
     * and discards stream data from the moment the stall is on, so the reply
     * to a request sent now is the last frame we get: after it, silence is
     * certain, not a guess after a sleep. */
    sim_post("/_sim/ws/stall?on=1");
    static const char list[] = "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":7}";
    size_t from = fx.rec->n_msgs;
    cr_assert_eq(cq_ws_client_send(fx.client, list, strlen(list)), 0);
    PUMP_UNTIL(fx.loop, find_reply(fx.rec, from, 7) >= 0, 10000);
    long reply = find_reply(fx.rec, from, 7);
    cr_assert_geq(reply, 0, "control replies flow while stalled");
    cr_assert_eq(fx.rec->n_msgs, (size_t)reply + 1, "no data after the reply");
    int64_t quiet_since = atomic_load(&fc.mono_ms);
    cr_assert_eq(fx.rec->last_msg_ms, quiet_since);

    /* One millisecond short of stall_ms, for as long as real time likes. */
    fake_clock_advance_ms(&fc, 499);
    pump_for(fx.loop, 200);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0, "not before stall_ms");
    cr_assert_eq(fx.rec->n_msgs, (size_t)reply + 1, "no data while stalled");
    fake_clock_advance_ms(&fc, 1);
    cr_assert_eq(cq_ws_loop_service(fx.loop, 0), 0);
    long st = find_reason(fx.rec, 0, "stall");
    cr_assert_geq(st, 0, "stall at exactly stall_ms after the last message");
    cr_assert_eq(atomic_load(&fc.mono_ms) - quiet_since, 500);
    cr_assert_eq(fx.rec->ev[st].stats.stalls_total, 1);

    /* It reconnects while the stall lasts, after the drawn wait. */
    struct cq_ws_client_stats s = fx.rec->ev[st].stats;
    if (s.state == CQ_WS_BACKOFF) {
        fake_clock_advance_ms(&fc, s.next_attempt_in_ms);
    }
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)st, "connected") >= 0, 10000);
    cr_assert_geq(find_reason(fx.rec, (size_t)st, "connected"), 0, "reconnected after the stall");

    sim_post("/_sim/ws/stall?on=0");
    size_t before = fx.rec->n_msgs;
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= before + 20, 10000);
    cr_assert_geq(fx.rec->n_msgs, before + 20, "data flows after the stall is cleared");
    s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_eq(s.stalls_total, 1, "injected time stood still since: one stall");
    cr_assert_eq(s.connects_total, 2);
    fx_close(&fx);
}

Test(ws_client, lifetime_on_the_injected_clock, .init = sim_up, .fini = sim_down)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
    struct cq_clock clock = fake_clock_as_clock(&fc);
    char url[256];
    url_of(url, sizeof url, "/ws/btcusdt@bookTicker");
    struct cq_ws_client_options o = default_opts(url);
    o.clock = &clock;
    o.max_lifetime_ms = 800;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, 0, "connected") >= 0, 10000);
    long up = find_reason(fx.rec, 0, "connected");
    cr_assert_geq(up, 0);

    for (uint64_t round = 1; round <= 2; round++) {
        int64_t since = fx.rec->ev[up].stats.connected_since_mono_ms;
        cr_assert_eq(since, atomic_load(&fc.mono_ms));
        /* One millisecond short of the lifetime, for as long as real time
         * likes: nothing. */
        fake_clock_advance_ms(&fc, 799);
        pump_for(fx.loop, 200);
        cr_assert_eq(find_reason(fx.rec, (size_t)up, "lifetime"), -1, "not before max_lifetime_ms");
        fake_clock_advance_ms(&fc, 1);
        cr_assert_eq(cq_ws_loop_service(fx.loop, 0), 0);
        long life = find_reason(fx.rec, (size_t)up, "lifetime");
        cr_assert_geq(life, 0, "round %" PRIu64 ": at exactly max_lifetime_ms", round);
        cr_assert_eq(fx.rec->ev[life].stats.lifetime_reconnects_total, round);
        /* Not a failure: no backoff. Injected time stands still from here,
         * so a reconnect that waited for any backoff would never come. */
        cr_assert_eq(fx.rec->ev[life].state, CQ_WS_CONNECTING);
        PUMP_UNTIL(fx.loop, find_reason(fx.rec, (size_t)life, "connected") >= 0, 10000);
        up = find_reason(fx.rec, (size_t)life, "connected");
        cr_assert_geq(up, 0, "round %" PRIu64 ": reconnected without injected time passing", round);
    }

    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_eq(s.lifetime_reconnects_total, 2);
    cr_assert_eq(s.connects_total, 3);
    cr_assert_eq(s.disconnects_total, 2);
    cr_assert_eq(s.connect_failures_total, 0);
    cr_assert_eq(count_reason(fx.rec, "stall"), 0);
    cr_assert_eq(count_reason(fx.rec, "closed_by_peer"), 0);
    fx_close(&fx);
}

/* ---- an idle user data stream ------------------------------------------------------------- */

static size_t collect_body(char *p, size_t size, size_t n, void *ctx)
{
    char *buf = ctx;
    size_t have = strlen(buf);
    size_t len = size * n;
    if (have + len < 512) {
        memcpy(buf + have, p, len);
        buf[have + len] = '\0';
    }
    return len;
}

/* POST /api/v3/userDataStream with the simulator's default key: a listen
 * key for an account nobody trades on. */
static void listen_key_new(char *key, size_t cap)
{
    char url[256];
    snprintf(url, sizeof url, "%s/api/v3/userDataStream", g_rest);
    char body[512] = "";
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    struct curl_slist *hdr = curl_slist_append(NULL, "X-MBX-APIKEY: " CQ_SIM_DEFAULT_API_KEY);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    cr_assert_eq(rc, CURLE_OK, "POST %s: %s", url, curl_easy_strerror(rc));
    json_error_t jerr;
    json_t *v = json_loads(body, 0, &jerr);
    cr_assert_not_null(v, "listen key answer: %s", body);
    const char *k = json_string_value(json_object_get(v, "listenKey"));
    cr_assert_not_null(k, "listen key answer: %s", body);
    cr_assert_lt(cq_strlcpy(key, k, cap), cap);
    json_decref(v);
}

/* The user data stream of an account nobody trades on carries no message
 * for hours; only the server's pings (every 200 ms of real time here) show
 * that it lives. With no stall check it must stay up: ten minutes of
 * injected time in 30 s steps, each step answered by a ping, and not one
 * reconnect. (It used to reconnect every 10 s: the feeder's "stall_ms = 0,
 * no check" became the 10 s default.) */
Test(ws_client, idle_user_stream_stays_up_for_minutes_on_server_pings,
     .init = sim_up_short_keepalive, .fini = sim_down)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
    struct cq_clock clock = fake_clock_as_clock(&fc);
    char key[128];
    listen_key_new(key, sizeof key);
    char path[160];
    snprintf(path, sizeof path, "/ws/%s", key);
    char url[256];
    url_of(url, sizeof url, path);
    struct cq_ws_client_options o = default_opts(url);
    o.name = "user";
    o.clock = &clock;
    o.stall_ms = CQ_WS_STALL_NONE; /* what the feeder asks for */
    o.silence_ms = 0;              /* the default: CQ_WS_SILENCE_DEFAULT_MS */
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED);

    const int64_t step_ms = 30000;
    cr_assert_lt(step_ms, CQ_WS_SILENCE_DEFAULT_MS);
    for (int i = 1; i <= 20; i++) {
        fake_clock_advance_ms(&fc, step_ms);
        int64_t t = atomic_load(&fc.mono_ms);
        PUMP_UNTIL(fx.loop, stats_of(fx.client).last_rx_mono_ms == t || fx.rec->n_ev > 1, 5000);
        cr_assert_eq(fx.rec->n_ev, 1, "after %d s of injected time: %s", i * 30,
                     fx.rec->ev[fx.rec->n_ev - 1].reason);
        cr_assert_eq(stats_of(fx.client).last_rx_mono_ms, t,
                     "a server ping is seen as liveness (%d s)", i * 30);
    }
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.state, CQ_WS_CONNECTED);
    cr_assert_eq(s.connects_total, 1);
    cr_assert_eq(s.disconnects_total, 0);
    cr_assert_eq(s.stalls_total, 0);
    cr_assert_eq(s.silences_total, 0);
    cr_assert_eq(s.messages_total, 0, "an idle account: pings only");
    cr_assert_eq(s.connected_since_mono_ms, 1000000, "the same connection for 10 minutes");
    fx_close(&fx);
}

/* No pings within the test (the next one is due in 10 minutes of real
 * time). */
static void sim_up_no_pings(void)
{
    setenv("SIMEX_WS_PING_MS", "600000", 1);
    setenv("SIMEX_WS_PONG_TIMEOUT_MS", "1200000", 1);
    sim_up();
}

/* Nothing at all, not even a ping, for silence_ms: the connection is dead
 * and is replaced, at exactly silence_ms of injected time, stall check or
 * none. */
Test(ws_client, silence_without_pings_reconnects_at_exactly_silence_ms, .init = sim_up_no_pings,
     .fini = sim_down)
{
    struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
    struct cq_clock clock = fake_clock_as_clock(&fc);
    char url[256];
    url_of(url, sizeof url, "/ws/0"); /* silent, and no pings */
    struct cq_ws_client_options o = default_opts(url);
    o.clock = &clock;
    o.stall_ms = CQ_WS_STALL_NONE;
    o.silence_ms = 60000;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, stats_of(fx.client).state == CQ_WS_CONNECTED, 5000);
    cr_assert_eq(stats_of(fx.client).state, CQ_WS_CONNECTED);

    fake_clock_advance_ms(&fc, 59999);
    pump_for(fx.loop, 200);
    cr_assert_eq(find_reason(fx.rec, 0, "silence"), -1, "not before silence_ms");
    fake_clock_advance_ms(&fc, 1);
    cr_assert_eq(cq_ws_loop_service(fx.loop, 0), 0);
    long si = find_reason(fx.rec, 0, "silence");
    cr_assert_geq(si, 0, "at exactly silence_ms of injected time");
    cr_assert_eq(fx.rec->ev[si].stats.silences_total, 1);
    cr_assert_eq(fx.rec->ev[si].stats.stalls_total, 0);
    fx_close(&fx);
}

/* ---- URLs and TLS ---------------------------------------------------------------------------- */

Test(ws_client, urls_are_checked)
{
    cq_log_set_level(CQ_LOG_ERROR);
    struct cq_err err;
    struct cq_ws_loop *loop = cq_ws_loop_new(&err);
    cr_assert_not_null(loop);
    static const char *const bad[] = {
        "",
        "http://127.0.0.1:9443/ws/x",
        "ws:/127.0.0.1/ws",
        "ws://",
        "ws://:9443/ws",
        "ws://host:0/ws",
        "ws://host:65536/ws",
        "ws://host:12a/ws",
        "ws://host:/ws",
        "ws://user@host/ws",
        "ws://ho st/ws",
        "ws://host/ws/a b",
        "ws://host/ws#frag",
        "ws://[::1/ws",
        "ws://[zz]/ws",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad); i++) {
        struct cq_ws_client_options o = default_opts(bad[i]);
        cq_err_clear(&err);
        struct cq_ws_client *c = cq_ws_client_new(loop, &o, NULL, &err);
        cr_assert_null(c, "accepted bad URL '%s'", bad[i]);
        cr_assert_eq(err.code, CQ_EINVAL, "'%s'", bad[i]);
        cr_assert_neq(err.message[0], '\0');
    }
    struct cq_ws_client_options o = default_opts(NULL);
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "NULL URL");

    char *long_url = malloc(20000);
    cr_assert_not_null(long_url);
    memset(long_url, 'a', 19999);
    long_url[19999] = '\0';
    memcpy(long_url, "ws://h/", 7);
    o = default_opts(long_url);
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "overlong URL");
    free(long_url);

    static const char *const good[] = {
        "ws://127.0.0.1:9443/ws/btcusdt@trade",
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@depth@100ms",
        "wss://data-stream.binance.vision",
        "WS://LOCALHOST?x=1",
        "ws://[::1]:8080/ws/0",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(good); i++) {
        o = default_opts(good[i]);
        struct cq_ws_client *c = cq_ws_client_new(loop, &o, NULL, &err);
        cr_assert_not_null(c, "refused good URL '%s': %s", good[i], err.message);
        cr_assert_eq(stats_of(c).state, CQ_WS_IDLE);
        cq_ws_client_free(c);
    }

    o = default_opts("ws://127.0.0.1:1/ws/x");
    o.backoff_base_ms = 500;
    o.backoff_max_ms = 100;
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "max < base");
    o = default_opts("ws://127.0.0.1:1/ws/x");
    o.stall_ms = -2;
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "negative stall_ms");
    /* 0 is neither "no check" nor "the default": the caller must say */
    o.stall_ms = 0;
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "stall_ms 0");
    cr_assert_eq(err.code, CQ_EINVAL);
    cr_assert(strstr(err.hint, "CQ_WS_STALL_NONE") != NULL, "the hint names the fix: %s", err.hint);
    o.stall_ms = CQ_WS_STALL_NONE;
    struct cq_ws_client *none = cq_ws_client_new(loop, &o, NULL, &err);
    cr_assert_not_null(none, "CQ_WS_STALL_NONE: %s", err.message);
    cq_ws_client_free(none);
    o = default_opts("ws://127.0.0.1:1/ws/x");
    o.silence_ms = -1;
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "negative silence_ms");
    /* the name (logs, stats) is refused, not cut, at 32 characters */
    o = default_opts("ws://127.0.0.1:1/ws/x");
    o.name = "client-name-of-31-characters-xx";
    cr_assert_eq(strlen(o.name), 31);
    struct cq_ws_client *named = cq_ws_client_new(loop, &o, NULL, &err);
    cr_assert_not_null(named, "31 characters: %s", err.message);
    cq_ws_client_free(named);
    o.name = "client-name-of-32-characters-xyz";
    cr_assert_null(cq_ws_client_new(loop, &o, NULL, &err), "32 characters");
    cr_assert(strstr(err.message, "too long") != NULL, "%s", err.message);

    cr_assert_str_eq(cq_ws_state_name(CQ_WS_BACKOFF), "backoff");
    cr_assert_str_eq(cq_ws_state_name(CQ_WS_IDLE), "idle");
    cq_ws_loop_free(loop);
}

Test(ws_client, wss_to_a_plain_port_fails_cleanly, .init = sim_up, .fini = sim_down)
{
    char url[256];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/ws/btcusdt@trade", g_ws_port);
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, count_reason(fx.rec, "connect_failed") >= 2, 5000);
    cr_assert_geq(count_reason(fx.rec, "connect_failed"), 2, "the TLS handshake fails");
    cr_assert_eq(stats_of(fx.client).connects_total, 0);
    cr_assert_eq(fx.rec->n_msgs, 0);
    fx_close(&fx);
}

Test(ws_client, loop_free_with_live_connections, .init = sim_up, .fini = sim_down)
{
    char url[256], url2[256];
    url_of(url, sizeof url, "/ws/btcusdt@trade");
    url_of(url2, sizeof url2, "/ws/ethusdt@trade");
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    struct cq_err err;
    struct rec *r2 = rec_new();
    struct cq_ws_callbacks cb = {rec_on_message, rec_on_state, r2};
    struct cq_ws_client_options o2 = default_opts(url2);
    struct cq_ws_client *c2 = cq_ws_client_new(fx.loop, &o2, &cb, &err);
    cr_assert_not_null(c2);
    r2->client = c2;
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    cr_assert_eq(cq_ws_client_start(c2), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 3 && r2->n_msgs >= 3, 10000);
    cr_assert_geq(fx.rec->n_msgs, 3);
    cr_assert_geq(r2->n_msgs, 3, "two clients on one loop");
    /* ETH only on the second */
    json_t *m = msg_json(r2, 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "s")), "ETHUSDT");
    json_decref(m);
    size_t n_ev = r2->n_ev;
    cq_ws_client_free(c2); /* while connected */
    pump_for(fx.loop, 200);
    cr_assert_eq(r2->n_ev, n_ev, "a freed client gets no callbacks");
    fx_close(&fx); /* frees the first client while connected */
    rec_free(r2);
}

/* ---- fragments: a scripted one-connection server ----------------------------------------- */

struct fake_srv {
    int lfd;
    int port;
    pthread_t thread;
    unsigned char script[1024]; /* frames sent right after the handshake */
    size_t script_len;
    _Atomic int client_close_code; /* from the client's close frame; -1 if none */
};

/* Append one unmasked server frame. */
static void fs_frame(struct fake_srv *fs, bool fin, int opcode, const char *payload, size_t len)
{
    cr_assert_lt(len, (size_t)126);
    cr_assert_leq(fs->script_len + 2 + len, sizeof fs->script);
    fs->script[fs->script_len++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    fs->script[fs->script_len++] = (unsigned char)len;
    memcpy(fs->script + fs->script_len, payload, len);
    fs->script_len += len;
}

static void *fs_main(void *arg)
{
    struct fake_srv *fs = arg;
    struct pollfd p = {fs->lfd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) {
        return NULL;
    }
    int fd = accept(fs->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    char req[4096];
    size_t len = 0;
    while (len + 1 < sizeof req) {
        struct pollfd q = {fd, POLLIN, 0};
        if (poll(&q, 1, 3000) <= 0 || read(fd, req + len, 1) != 1) {
            close(fd);
            return NULL;
        }
        req[++len] = '\0';
        if (len >= 4 && memcmp(req + len - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    const char *k = strstr(req, "Sec-WebSocket-Key: ");
    if (k == NULL) {
        k = strstr(req, "sec-websocket-key: ");
    }
    if (k == NULL) {
        close(fd);
        return NULL;
    }
    k += strlen("Sec-WebSocket-Key: ");
    char key[128];
    size_t kl = strcspn(k, "\r\n");
    if (kl >= 64) {
        close(fd);
        return NULL;
    }
    snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)kl, k);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)key, strlen(key), sha);
    unsigned char accept_key[64];
    EVP_EncodeBlock(accept_key, sha, SHA_DIGEST_LENGTH);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     (const char *)accept_key);
    if (write(fd, resp, (size_t)n) != n || write(fd, fs->script, fs->script_len) < 0) {
        close(fd);
        return NULL;
    }
    /* Read the client's frames (masked) until it closes or 10 s pass (it
     * closes within a second or so; the slack is for a loaded CI box). */
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        struct pollfd q = {fd, POLLIN, 0};
        if (poll(&q, 1, 50) <= 0) {
            continue;
        }
        unsigned char h[2];
        if (recv(fd, h, 2, MSG_WAITALL) != 2) {
            break;
        }
        size_t plen = h[1] & 0x7f;
        if (plen >= 126) {
            break;
        }
        unsigned char mask[4], payload[128];
        if (recv(fd, mask, 4, MSG_WAITALL) != 4 ||
            (plen > 0 && recv(fd, payload, plen, MSG_WAITALL) != (ssize_t)plen)) {
            break;
        }
        if ((h[0] & 0x0f) == 0x8) {
            int code = 0;
            if (plen >= 2) {
                code = ((payload[0] ^ mask[0]) << 8) | (payload[1] ^ mask[1]);
            }
            atomic_store(&fs->client_close_code, code);
            break;
        }
    }
    close(fd);
    return NULL;
}

static void fs_start(struct fake_srv *fs)
{
    fs->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fs->lfd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fs->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fs->lfd, 4), 0);
    socklen_t sl = sizeof sa;
    cr_assert_eq(getsockname(fs->lfd, (struct sockaddr *)&sa, &sl), 0);
    fs->port = ntohs(sa.sin_port);
    atomic_store(&fs->client_close_code, -1);
    cr_assert_eq(pthread_create(&fs->thread, NULL, fs_main, fs), 0);
}

static void fs_stop(struct fake_srv *fs)
{
    pthread_join(fs->thread, NULL);
    close(fs->lfd);
}

Test(ws_client, fragments_are_reassembled)
{
    cq_log_set_level(CQ_LOG_ERROR);
    struct fake_srv *fs = calloc(1, sizeof *fs);
    cr_assert_not_null(fs);
    fs_frame(fs, false, 0x1, "{\"a\":", 5); /* text, more to come */
    fs_frame(fs, true, 0x9, "pp", 2);       /* a ping between fragments */
    fs_frame(fs, true, 0x0, "1}", 2);       /* continuation, final */
    fs_frame(fs, true, 0x2, "\x01\x02", 2); /* binary: dropped */
    fs_frame(fs, false, 0x1, "[1,", 3);
    fs_frame(fs, false, 0x0, "2,", 2);
    fs_frame(fs, true, 0x0, "3]", 2);
    fs_frame(fs, true, 0x1, "\"done\"", 6);
    fs_start(fs);

    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws/x", fs->port);
    struct cq_ws_client_options o = default_opts(url);
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, fx.rec->n_msgs >= 3, 5000);
    pump_for(fx.loop, 100);
    cr_assert_eq(fx.rec->n_msgs, 3, "%zu messages", fx.rec->n_msgs);
    cr_assert_str_eq(fx.rec->msgs[0], "{\"a\":1}");
    cr_assert_str_eq(fx.rec->msgs[1], "[1,2,3]");
    cr_assert_str_eq(fx.rec->msgs[2], "\"done\"");
    struct cq_ws_client_stats s = stats_of(fx.client);
    cr_assert_eq(s.messages_total, 3);
    cr_assert_eq(s.bytes_total, 7 + 7 + 6);
    cq_ws_client_stop(fx.client);
    pump_for(fx.loop, 200);
    fs_stop(fs);
    cr_assert_eq(atomic_load(&fs->client_close_code), 1001, "stop sends a close frame (1001)");
    fx_close(&fx);
    free(fs);
}

Test(ws_client, oversize_across_fragments)
{
    cq_log_set_level(CQ_LOG_ERROR);
    struct fake_srv *fs = calloc(1, sizeof *fs);
    cr_assert_not_null(fs);
    char part[30];
    memset(part, 'x', sizeof part);
    fs_frame(fs, true, 0x1, "\"ok\"", 4);
    fs_frame(fs, false, 0x1, part, sizeof part); /* 30 */
    fs_frame(fs, false, 0x0, part, sizeof part); /* 60 */
    fs_frame(fs, true, 0x0, part, sizeof part);  /* 90 > 64 */
    fs_frame(fs, true, 0x1, "\"after\"", 7);     /* never read: we closed */
    fs_start(fs);

    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws/x", fs->port);
    struct cq_ws_client_options o = default_opts(url);
    o.max_message_bytes = 64;
    o.backoff_base_ms = 5000; /* one connection is enough */
    o.backoff_max_ms = 5000;
    struct fixture fx;
    fx_open(&fx, &o);
    cr_assert_eq(cq_ws_client_start(fx.client), 0);
    PUMP_UNTIL(fx.loop, find_reason(fx.rec, 0, "oversize") >= 0, 5000);
    cr_assert_geq(find_reason(fx.rec, 0, "oversize"), 0);
    pump_for(fx.loop, 200);
    cr_assert_eq(fx.rec->n_msgs, 1, "only the message before the oversize one");
    cr_assert_str_eq(fx.rec->msgs[0], "\"ok\"");
    cr_assert_eq(stats_of(fx.client).oversize_total, 1);
    fs_stop(fs);
    cr_assert_eq(atomic_load(&fs->client_close_code), 1009, "closed with 1009 (too big)");
    fx_close(&fx);
    free(fs);
}
