/*
 * test_sim_ws.c — coinquant-simex's WebSocket server (server/sim/ws.c)
 * against real clients over loopback: the whole simulator is started through
 * cq/sim.h (synthetic market, high speed, ephemeral ports) and a real
 * libwebsockets CLIENT (its own context and service thread) connects to it.
 * The keepalive and hostile-client tests (unmasked frames, oversized pings,
 * ping floods, bad handshakes) use a hand-written RFC 6455 client on a plain
 * socket, which can send what lws's client never would.
 *
 * User-data events are published straight through cq_sim__ws_publish_* (with
 * sim->lock held, as sim.c does) so their fields can be checked exactly;
 * market events come from the running market model.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
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
#include <libwebsockets.h>

#include "cq/clock.h"
#include "cq/log.h"
#include "cq/sim.h"
#include "sim-int.h"
#include "support/ws_tclient.h"

/* ---- time ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the simulator under test ---------------------------------------------- */

static struct cq_sim *g_sim;
static int g_port;

static void sim_up_with(const char *const *symbols, size_t n_symbols)
{
    struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    cq_log_set_level(CQ_LOG_WARN);
    cr_assert_eq(cq_sim_parse_balances(CQ_SIM_DEFAULT_BALANCES, balances, 4, &n_balances, &err), 0);
    struct cq_sim_options o;
    memset(&o, 0, sizeof o);
    o.bind = "127.0.0.1";
    o.symbols = symbols;
    o.n_symbols = n_symbols;
    o.speed = 100; /* a 1m bar every 0.6 s; slower would starve the tests, faster floods a loaded
                      machine */
    /* The calibrated market makes up to ~3300 trades a bar: at speed 100
     * that floods this test's client (it is cut off as a slow consumer).
     * 40 trades a bar is the load these stream-shape tests were written for. */
    o.trades_per_bar_max = 40;
    o.seed = 42;
    o.balances = balances;
    o.n_balances = n_balances;
    o.maker_bps = 10;
    o.taker_bps = 10;
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    const char *url = cq_sim_ws_url(g_sim);
    const char *colon = strrchr(url, ':');
    cr_assert_not_null(colon, "ws url %s", url);
    g_port = atoi(colon + 1);
    cr_assert_gt(g_port, 0);
}

static void sim_up(void)
{
    static const char *const symbols[] = {"BTCUSDT", "ETHUSDT"};
    sim_up_with(symbols, CQ_ARRAY_LEN(symbols));
}

static void sim_down(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
}

static uint64_t counter(_Atomic uint64_t *c)
{
    return atomic_load(c);
}

/* ---- a raw RFC 6455 client (sees pings; answers them only when told) ---------- */

static int raw_connect(const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, g_port);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    /* Read the response headers byte by byte so no frame is swallowed. */
    char resp[2048];
    size_t len = 0;
    while (len + 1 < sizeof resp) {
        struct pollfd p = {fd, POLLIN, 0};
        cr_assert_gt(poll(&p, 1, 3000), 0, "no handshake response");
        ssize_t r = read(fd, resp + len, 1);
        cr_assert_eq(r, 1, "connection closed during the handshake");
        len++;
        resp[len] = '\0';
        if (len >= 4 && memcmp(resp + len - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    cr_assert(strncmp(resp, "HTTP/1.1 101", 12) == 0, "handshake: %s", resp);
    cr_assert(strstr(resp, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL, "accept key: %s", resp);
    return fd;
}

/* A handshake that may be refused: the fd, or -1. */
static int raw_try_connect(const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    size_t cap = strlen(path) + 256;
    char *req = malloc(cap);
    cr_assert_not_null(req);
    int n = snprintf(req, cap,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    free(req);
    char resp[16] = "";
    size_t len = 0;
    while (len < 12) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0) {
            break;
        }
        ssize_t r = read(fd, resp + len, 12 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    if (len < 12 || strncmp(resp, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    return fd; /* the rest of the headers stay unread: fine for this use */
}

/* Read exactly n bytes before deadline: 1, 0 on timeout, -1 on EOF/error. */
static int raw_read_exact(int fd, unsigned char *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)left);
        if (pr == 0) {
            return 0;
        }
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 1;
}

struct raw_frame {
    int opcode;
    unsigned char payload[65536];
    size_t len;
};

/* 1 frame read, 0 timeout, -1 EOF. Only frames up to 64 KiB (enough here). */
static int raw_read_frame(int fd, struct raw_frame *f, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    unsigned char h[2];
    int rc = raw_read_exact(fd, h, 2, deadline);
    if (rc <= 0) {
        return rc;
    }
    deadline = now_ms() + 3000; /* the rest of a started frame comes promptly */
    f->opcode = h[0] & 0x0f;
    size_t len = h[1] & 0x7f;
    cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
    if (len == 126) {
        unsigned char e[2];
        cr_assert_eq(raw_read_exact(fd, e, 2, deadline), 1);
        len = ((size_t)e[0] << 8) | e[1];
    } else if (len == 127) {
        unsigned char e[8];
        cr_assert_eq(raw_read_exact(fd, e, 8, deadline), 1);
        len = 0;
        for (int i = 0; i < 8; i++) {
            len = (len << 8) | e[i];
        }
    }
    cr_assert_leq(len, sizeof f->payload);
    f->len = len;
    if (len > 0) {
        cr_assert_eq(raw_read_exact(fd, f->payload, len, deadline), 1);
    }
    return 1;
}

static void raw_send_frame(int fd, int opcode, const void *payload, size_t len)
{
    unsigned char buf[256];
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    cr_assert_lt(len, (size_t)126);
    buf[0] = (unsigned char)(0x80 | opcode);
    buf[1] = (unsigned char)(0x80 | len);
    memcpy(buf + 2, mask, 4);
    for (size_t i = 0; i < len; i++) {
        buf[6 + i] = ((const unsigned char *)payload)[i] ^ mask[i % 4];
    }
    cr_assert_eq(write(fd, buf, 6 + len), (ssize_t)(6 + len));
}

/* ---- payload checks ----------------------------------------------------------- */

/* A Binance decimal: digits, a point, exactly 8 digits. */
static bool is_dec8(const json_t *v)
{
    if (!json_is_string(v)) {
        return false;
    }
    const char *s = json_string_value(v);
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

static void assert_keys_in_order(const json_t *obj, const char *const *keys, size_t n,
                                 const char *what)
{
    cr_assert_eq(json_object_size(obj), n, "%s: %zu keys, want %zu", what, json_object_size(obj),
                 n);
    size_t i = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        (void)v;
        cr_assert_str_eq(k, keys[i], "%s: key %zu is %s, want %s", what, i, k, keys[i]);
        i++;
    }
}

static void check_trade(const json_t *d, const char *symbol)
{
    static const char *const keys[] = {"e", "E", "s", "t", "p", "q", "T", "m", "M"};
    assert_keys_in_order(d, keys, CQ_ARRAY_LEN(keys), "trade");
    cr_assert_str_eq(json_string_value(json_object_get(d, "e")), "trade");
    cr_assert_str_eq(json_string_value(json_object_get(d, "s")), symbol);
    cr_assert(json_is_integer(json_object_get(d, "E")));
    cr_assert(json_is_integer(json_object_get(d, "T")));
    cr_assert(json_is_integer(json_object_get(d, "t")));
    cr_assert(is_dec8(json_object_get(d, "p")));
    cr_assert(is_dec8(json_object_get(d, "q")));
    cr_assert(json_is_boolean(json_object_get(d, "m")));
    cr_assert(json_is_true(json_object_get(d, "M")));
}

static void check_kline(const json_t *d)
{
    static const char *const keys[] = {"e", "E", "s", "k"};
    static const char *const kkeys[] = {"t", "T", "s", "i", "f", "L", "o", "c", "h",
                                        "l", "v", "n", "x", "q", "V", "Q", "B"};
    assert_keys_in_order(d, keys, CQ_ARRAY_LEN(keys), "kline");
    const json_t *k = json_object_get(d, "k");
    assert_keys_in_order(k, kkeys, CQ_ARRAY_LEN(kkeys), "kline.k");
    cr_assert_str_eq(json_string_value(json_object_get(d, "e")), "kline");
    cr_assert_str_eq(json_string_value(json_object_get(k, "i")), "1m");
    cr_assert_eq(json_integer_value(json_object_get(k, "T")) -
                     json_integer_value(json_object_get(k, "t")),
                 59999);
    static const char *const decs[] = {"o", "c", "h", "l", "v", "q", "V", "Q"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(decs); i++) {
        cr_assert(is_dec8(json_object_get(k, decs[i])), "k.%s", decs[i]);
    }
    cr_assert(json_is_integer(json_object_get(k, "f")));
    cr_assert(json_is_integer(json_object_get(k, "L")));
    cr_assert(json_is_integer(json_object_get(k, "n")));
    cr_assert(json_is_boolean(json_object_get(k, "x")));
    cr_assert_str_eq(json_string_value(json_object_get(k, "B")), "0");
}

static void check_levels(const json_t *side, size_t max)
{
    cr_assert(json_is_array(side));
    cr_assert_leq(json_array_size(side), max);
    size_t i;
    const json_t *lv;
    json_array_foreach(side, i, lv)
    {
        cr_assert_eq(json_array_size(lv), 2);
        cr_assert(is_dec8(json_array_get(lv, 0)));
        cr_assert(is_dec8(json_array_get(lv, 1)));
    }
}

/* ---- combined and raw market streams ------------------------------------------- */

TestSuite(sim_ws, .init = sim_up, .fini = sim_down, .timeout = 60);

Test(sim_ws, combined_stream_is_wrapped_and_in_order)
{
    struct tclient *tc = tc_open(g_port, "/stream?streams=btcusdt@trade/btcusdt@kline_1m/"
                                         "btcusdt@depth@100ms/btcusdt@depth5/ethusdt@bookTicker");
    cr_assert(tc_wait_established(tc, 3000));
    int64_t deadline = now_ms() + 15000;
    size_t i = 0, trades = 0, klines = 0, diffs = 0, partials = 0, tickers = 0;
    int64_t last_trade_id = -1, last_kline_open = -1;
    int64_t last_u = -1;
    while ((trades < 50 || klines < 5 || diffs < 20 || partials < 5 || tickers < 5) &&
           now_ms() < deadline) {
        json_t *m = tc_msg(tc, i++, (int)(deadline - now_ms()));
        if (m == NULL) {
            break;
        }
        cr_assert_eq(json_object_size(m), 2, "wrapped: {stream, data}");
        const char *stream = json_string_value(json_object_get(m, "stream"));
        const json_t *d = json_object_get(m, "data");
        cr_assert_not_null(stream);
        cr_assert(json_is_object(d));
        if (strcmp(stream, "btcusdt@trade") == 0) {
            check_trade(d, "BTCUSDT");
            int64_t t = json_integer_value(json_object_get(d, "t"));
            cr_assert_gt(t, last_trade_id, "trade ids increase: %" PRId64 " after %" PRId64, t,
                         last_trade_id);
            last_trade_id = t;
            trades++;
        } else if (strcmp(stream, "btcusdt@kline_1m") == 0) {
            check_kline(d);
            int64_t t = json_integer_value(json_object_get(json_object_get(d, "k"), "t"));
            cr_assert_geq(t, last_kline_open, "kline open times never go back");
            last_kline_open = t;
            klines++;
        } else if (strcmp(stream, "btcusdt@depth@100ms") == 0) {
            static const char *const keys[] = {"e", "E", "s", "U", "u", "b", "a"};
            assert_keys_in_order(d, keys, CQ_ARRAY_LEN(keys), "depthUpdate");
            cr_assert_str_eq(json_string_value(json_object_get(d, "e")), "depthUpdate");
            int64_t U = json_integer_value(json_object_get(d, "U"));
            int64_t u = json_integer_value(json_object_get(d, "u"));
            cr_assert_leq(U, u);
            if (last_u >= 0) {
                cr_assert_eq(U, last_u + 1, "diffs chain: U %" PRId64 " after u %" PRId64, U,
                             last_u);
            }
            last_u = u;
            check_levels(json_object_get(d, "b"), 2 * SIM_DEPTH_MAX);
            check_levels(json_object_get(d, "a"), 2 * SIM_DEPTH_MAX);
            diffs++;
        } else if (strcmp(stream, "btcusdt@depth5") == 0) {
            static const char *const keys[] = {"lastUpdateId", "bids", "asks"};
            assert_keys_in_order(d, keys, CQ_ARRAY_LEN(keys), "depth5");
            cr_assert(json_is_integer(json_object_get(d, "lastUpdateId")));
            check_levels(json_object_get(d, "bids"), 5);
            check_levels(json_object_get(d, "asks"), 5);
            cr_assert_gt(json_array_size(json_object_get(d, "bids")), 0);
            partials++;
        } else if (strcmp(stream, "ethusdt@bookTicker") == 0) {
            static const char *const keys[] = {"u", "s", "b", "B", "a", "A"};
            assert_keys_in_order(d, keys, CQ_ARRAY_LEN(keys), "bookTicker");
            cr_assert_str_eq(json_string_value(json_object_get(d, "s")), "ETHUSDT");
            cr_assert(is_dec8(json_object_get(d, "b")));
            cr_assert(is_dec8(json_object_get(d, "A")));
            tickers++;
        } else {
            cr_assert_fail("unexpected stream %s", stream);
        }
        json_decref(m);
    }
    cr_assert_geq(trades, 50);
    cr_assert_geq(klines, 5);
    cr_assert_geq(diffs, 20);
    cr_assert_geq(partials, 5);
    cr_assert_geq(tickers, 5);
    cr_assert_gt(counter(&g_sim->state.counters.ws_messages_sent), 0);
    cr_assert_eq(counter(&g_sim->state.counters.ws_connections), 1);
    tc_free(tc);
}

Test(sim_ws, raw_stream_is_unwrapped)
{
    struct tclient *tc = tc_open(g_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(tc, 3000));
    int64_t last = -1;
    for (size_t i = 0; i < 30; i++) {
        json_t *m = tc_msg(tc, i, 10000);
        cr_assert_not_null(m, "trade %zu", i);
        check_trade(m, "BTCUSDT");
        int64_t t = json_integer_value(json_object_get(m, "t"));
        cr_assert_gt(t, last);
        last = t;
        json_decref(m);
    }
    tc_free(tc);
}

Test(sim_ws, bad_paths_and_stream_names_are_refused)
{
    static const char *const paths[] = {
        "/stream?streams=btcusdt@nonsense",
        "/stream?streams=btcusdt@trade/BTCUSDT@trade",
        "/api/v3/time",
        "/ws-api/v2", /* /ws-api/v3 is the WS API (test_sim_wsapi) */
        "/ws/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab", /* unknown key */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(paths); i++) {
        struct tclient *tc = tc_open(g_port, paths[i]);
        cr_assert_not(tc_wait_established(tc, 3000), "%s was accepted", paths[i]);
        tc_free(tc);
    }
    /* Anything else under /ws/ stays open with no subscriptions. */
    struct tclient *tc = tc_open(g_port, "/ws/not-a-stream");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}");
    json_t *want = json_pack("{s:[],s:i}", "result", "id", 1);
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    tc_free(tc);
}

/* ---- the control protocol ---------------------------------------------------- */

Test(sim_ws, subscribe_list_unsubscribe_on_ws0)
{
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor,
                           "{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\",\"ethusdt@"
                           "bookTicker\"],\"id\":1}");
    json_t *want = json_pack("{s:n,s:i}", "result", "id", 1);
    cr_assert(json_equal(r, want), "reply %s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    json_decref(want);

    /* Both streams arrive, raw (combined is false on /ws/). */
    size_t trades = 0, tickers = 0;
    int64_t deadline = now_ms() + 10000;
    for (size_t i = cursor; (trades < 5 || tickers < 5) && now_ms() < deadline; i++) {
        json_t *m = tc_msg(tc, i, (int)(deadline - now_ms()));
        cr_assert_not_null(m);
        cr_assert_null(json_object_get(m, "stream"));
        if (json_object_get(m, "e") != NULL) {
            check_trade(m, "BTCUSDT");
            trades++;
        } else {
            cr_assert_str_eq(json_string_value(json_object_get(m, "s")), "ETHUSDT");
            cr_assert(json_is_integer(json_object_get(m, "u")));
            tickers++;
        }
        json_decref(m);
    }
    cr_assert_geq(trades, 5);
    cr_assert_geq(tickers, 5);

    cursor = tc_count(tc);
    r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":\"list1\"}");
    want =
        json_pack("{s:[s,s],s:s}", "result", "btcusdt@trade", "ethusdt@bookTicker", "id", "list1");
    cr_assert(json_equal(r, want), "reply %s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    json_decref(want);

    r = tc_request(tc, &cursor,
                   "{\"method\":\"UNSUBSCRIBE\",\"params\":[\"btcusdt@trade\","
                   "\"ethusdt@bookTicker\"],\"id\":312}");
    want = json_pack("{s:n,s:i}", "result", "id", 312);
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    /* Frames queued before the UNSUBSCRIBE was handled may land before its
     * reply. The server writes a connection's frames in order, so after the
     * reply nothing of those streams may come: wait while the market goes
     * on (only a lower bound: longer is stricter), then ask again; no
     * message may sit between the two replies. */
    size_t after_reply = cursor;
    cq_time_sleep_ms(1000);
    r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":313}");
    want = json_pack("{s:[],s:i}", "result", "id", 313);
    cr_assert(json_equal(r, want), "reply %s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    json_decref(want);
    cr_assert_eq(cursor, after_reply + 1, "%zu data messages after the UNSUBSCRIBE reply",
                 cursor - after_reply - 1);
    tc_free(tc);
}

Test(sim_ws, properties_switch_wrapping)
{
    struct tclient *tc = tc_open(g_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    json_t *r =
        tc_request(tc, &cursor, "{\"method\":\"GET_PROPERTY\",\"params\":[\"combined\"],\"id\":2}");
    json_t *want = json_pack("{s:b,s:i}", "result", 0, "id", 2);
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    r = tc_request(tc, &cursor,
                   "{\"method\":\"SET_PROPERTY\",\"params\":[\"combined\",true],\"id\":5}");
    want = json_pack("{s:n,s:i}", "result", "id", 5);
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    r = tc_request(tc, &cursor,
                   "{\"method\":\"GET_PROPERTY\",\"params\":[\"combined\"],\"id\":null}");
    want = json_pack("{s:b,s:n}", "result", 1, "id");
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    /* From now on, wrapped. */
    size_t start = tc_count(tc);
    for (size_t i = start; i < start + 5; i++) {
        json_t *m = tc_msg(tc, i, 10000);
        cr_assert_not_null(m);
        cr_assert_str_eq(json_string_value(json_object_get(m, "stream")), "btcusdt@trade");
        check_trade(json_object_get(m, "data"), "BTCUSDT");
        json_decref(m);
    }
    tc_free(tc);
}

struct control_case {
    const char *request;
    int code; /* -1: a success reply */
    const char *msg_prefix;
    const char *id_json; /* the id echoed, as JSON text */
};

Test(sim_ws, control_errors)
{
    static const struct control_case cases[] = {
        {"{\"method\":\"GET_PROPERTY\",\"params\":[\"speed\"],\"id\":1}", 0, "Unknown property",
         "1"},
        {"{\"method\":\"SET_PROPERTY\",\"params\":[\"fast\",true],\"id\":2}", 0, "Unknown property",
         "2"},
        {"{\"method\":\"SET_PROPERTY\",\"params\":[\"combined\",\"yes\"],\"id\":3}", 1,
         "Invalid value type: expected Boolean", "3"},
        {"{\"method\":\"SET_PROPERTY\",\"params\":[\"combined\",1],\"id\":4}", 1,
         "Invalid value type: expected Boolean", "4"},
        {"{\"method\":\"PING\",\"id\":5}", 2, "Invalid request: unknown variant", "5"},
        {"{\"params\":[],\"id\":6}", 2, "Invalid request: missing field `method`", "6"},
        {"{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@bogus\"],\"id\":7}", 2,
         "Invalid request: invalid stream", "7"},
        {"{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\"],\"id\":1.5}", 2,
         "Invalid request: request ID", "null"},
        {"{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\"],\"id\":\"has-dash\"}", 2,
         "Invalid request: request ID", "null"},
        {"{\"method\":\"SUBSCRIBE\",\"params\":[],\"id\":"
         "\"0123456789012345678901234567890123456\"}",
         2, "Invalid request: request ID", "null"},
        {"{\"method\":\"GET_PROPERTY\",\"params\":[\"combined\",\"x\"],\"id\":8}", 2,
         "Invalid request: too many parameters", "8"},
        {"{\"method\":\"GET_PROPERTY\",\"params\":[7],\"id\":9}", 2,
         "Invalid request: property name must be a string", "9"},
        {"{\"method\":\"LIST_SUBSCRIPTIONS\",\"params\":[\"x\"],\"id\":10}", 2,
         "Invalid request: too many parameters", "10"},
        {"{\"method\":\"SUBSCRIBE\",\"params\":\"btcusdt@trade\",\"id\":11}", 2,
         "Invalid request:", "11"},
        {"{\"method\":\"SUBSCRIBE\",", 3, "Invalid JSON: ", "null"},
        {"[1,2", 3, "Invalid JSON: ", "null"},
        /* valid ids: int64, <= 36 alphanumerics, null */
        {"{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":-9223372036854775807}", -1, NULL,
         "-9223372036854775807"},
        {"{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":\"abcDEF123456789012345678901234567890\"}", -1,
         NULL, "\"abcDEF123456789012345678901234567890\""},
        {"{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@depth20@100ms\",\"btcusdt@kline_1M\"],"
         "\"id\":null}",
         -1, NULL, "null"},
    };
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const struct control_case *c = &cases[i];
        cq_time_sleep_ms(250); /* stay under 5 messages per second */
        json_t *r = tc_request(tc, &cursor, c->request);
        json_t *id = json_loads(c->id_json, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(id);
        cr_assert(json_equal(json_object_get(r, "id"), id), "case %zu: id %s", i,
                  json_dumps(r, JSON_COMPACT));
        if (c->code < 0) {
            cr_assert_not_null(json_object_get(r, "result"), "case %zu: %s", i,
                               json_dumps(r, JSON_COMPACT));
            cr_assert_null(json_object_get(r, "error"));
        } else {
            json_t *err = json_object_get(r, "error");
            cr_assert(json_is_object(err), "case %zu: %s", i, json_dumps(r, JSON_COMPACT));
            cr_assert_eq(json_object_size(r), 2, "case %zu: {error, id}", i);
            cr_assert_eq(json_integer_value(json_object_get(err, "code")), c->code, "case %zu: %s",
                         i, json_dumps(r, JSON_COMPACT));
            const char *msg = json_string_value(json_object_get(err, "msg"));
            cr_assert_not_null(msg);
            cr_assert(strncmp(msg, c->msg_prefix, strlen(c->msg_prefix)) == 0, "case %zu: msg %s",
                      i, msg);
        }
        json_decref(id);
        json_decref(r);
    }
    cr_assert_not(tc_is_closed(tc), "control errors do not close the connection");
    tc_free(tc);
}

Test(sim_ws, malformed_json_gets_code_3)
{
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor, "{\"method\": SUBSCRIBE}");
    json_t *err = json_object_get(r, "error");
    cr_assert_eq(json_integer_value(json_object_get(err, "code")), 3);
    cr_assert(strncmp(json_string_value(json_object_get(err, "msg")), "Invalid JSON: ", 14) == 0);
    cr_assert(json_is_null(json_object_get(r, "id")));
    json_decref(r);
    tc_free(tc);
}

Test(sim_ws, flooding_client_is_closed)
{
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    for (int i = 0; i < 10; i++) {
        char req[80];
        snprintf(req, sizeof req, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":%d}", i);
        tc_send(tc, req);
    }
    cr_assert(tc_wait_closed(tc, 5000), "a client sending 10 messages at once is closed");
    cr_assert_leq(tc_count(tc), 5, "at most 5 messages answered");
    cr_assert_eq(tc_close_code(tc), 1008);
    tc_free(tc);

    /* A client within the limit stays. */
    tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    for (int i = 0; i < 8; i++) {
        cq_time_sleep_ms(220);
        json_t *r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}");
        json_decref(r);
    }
    cr_assert_not(tc_is_closed(tc));
    tc_free(tc);
}

/* ---- the user data stream ------------------------------------------------------ */

static char g_key[SIM_LISTEN_KEY_LEN + 1];

static void make_listen_key(void)
{
    pthread_mutex_lock(&g_sim->state.lock);
    const char *k = cq_sim__listen_key_create(&g_sim->state, cq_sim__wall_ms());
    cr_assert_not_null(k);
    cq_strlcpy(g_key, k, sizeof g_key);
    pthread_mutex_unlock(&g_sim->state.lock);
    cr_assert_eq(strlen(g_key), (size_t)SIM_LISTEN_KEY_LEN);
}

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "%s", s);
    return d;
}

static const char *const exec_keys[] = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g",
                                        "C", "x", "X", "r", "i", "l", "z", "L", "n", "N", "T", "t",
                                        "I", "w", "m", "M", "O", "Z", "Y", "Q", "W", "V"};

/* Compare an executionReport with the expected one: same keys in Binance's
 * order, same values and JSON types; "I" (execution id) only has to grow. */
static void check_exec(json_t *got, json_t *want, int64_t *last_exec_id, const char *what)
{
    const json_t *I = json_object_get(got, "I");
    cr_assert(json_is_integer(I), "%s: I", what);
    cr_assert_gt(json_integer_value(I), *last_exec_id, "%s: execution ids grow", what);
    *last_exec_id = json_integer_value(I);
    bool has_w = json_object_get(want, "W") != NULL;
    const char *order[CQ_ARRAY_LEN(exec_keys)];
    size_t n = 0;
    for (size_t i = 0; i < CQ_ARRAY_LEN(exec_keys); i++) {
        if (strcmp(exec_keys[i], "W") != 0 || has_w) {
            order[n++] = exec_keys[i];
        }
    }
    assert_keys_in_order(got, order, n, what);
    json_object_del(got, "I");
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert(json_equal(got, want), "%s:\n got %s\nwant %s", what, g, w);
    free(g);
    free(w);
}

Test(sim_ws, user_data_stream_exact_fields)
{
    make_listen_key();
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", g_key);
    struct tclient *tc = tc_open(g_port, path);
    cr_assert(tc_wait_established(tc, 3000));

    /* A LIMIT BUY that rests, fills in two parts; a canceled order; an
     * expired MARKET remainder; one balance update. */
    struct cq_sim__order o = {
        .order_id = 12345,
        .symbol_idx = 0,
        .client_id = "myOrder1",
        .side = SIM_BUY,
        .type = SIM_LIMIT,
        .tif = SIM_GTC,
        .price = dec("60000.5"),
        .orig_qty = dec("0.01"),
        .orig_quote_qty = CQ_DEC_ZERO,
        .executed_qty = CQ_DEC_ZERO,
        .cum_quote_qty = CQ_DEC_ZERO,
        .status = SIM_NEW,
        .time_ms = 1700000000000,
        .update_ms = 1700000000000,
        .working_ms = 1700000000000,
        .is_working = true,
    };
    struct cq_sim__fill f1 = {.trade_id = 777,
                              .price = dec("60000.5"),
                              .qty = dec("0.004"),
                              .quote_qty = dec("240.002"),
                              .commission = dec("0.000004"),
                              .commission_asset = "BTC",
                              .maker = true};
    struct cq_sim__fill f2 = {.trade_id = 778,
                              .price = dec("60000.5"),
                              .qty = dec("0.006"),
                              .quote_qty = dec("360.003"),
                              .commission = dec("0.00000600"),
                              .commission_asset = "BTC",
                              .maker = true};
    struct cq_sim__order cancel = o;
    cancel.order_id = 12346;
    cq_strlcpy(cancel.client_id, "origCid", sizeof cancel.client_id);
    cancel.side = SIM_SELL;
    cancel.status = SIM_CANCELED;
    cancel.is_working = false;
    struct cq_sim__order market = {
        .order_id = 12347,
        .client_id = "mkt1",
        .side = SIM_SELL,
        .type = SIM_MARKET,
        .tif = SIM_TIF_NONE,
        .price = CQ_DEC_ZERO,
        .orig_qty = dec("1"),
        .orig_quote_qty = CQ_DEC_ZERO,
        .executed_qty = dec("0.5"),
        .cum_quote_qty = dec("30000"),
        .status = SIM_EXPIRED,
        .time_ms = 1700000000100,
        .update_ms = 1700000000100,
        .working_ms = -1,
        .is_working = false,
    };
    struct cq_sim__balance changed[2] = {
        {.asset = "BTC", .free = dec("0.01"), .locked = CQ_DEC_ZERO},
        {.asset = "USDT", .free = dec("9399.995"), .locked = dec("0.5")},
    };

    pthread_mutex_lock(&g_sim->state.lock);
    const struct cq_sim__symbol *sym = cq_sim__engine_symbol(g_sim->state.engine, 0);
    cr_assert_str_eq(sym->symbol, "BTCUSDT");
    struct cq_sim__exec_report r = {&o, SIM_EXEC_NEW, NULL, "", "", 1700000000001, NULL};
    cq_sim__ws_publish_execution(g_sim->ws, sym, &r);
    struct cq_sim__order o1 = o;
    o1.status = SIM_PARTIALLY_FILLED;
    o1.executed_qty = dec("0.004");
    o1.cum_quote_qty = dec("240.002");
    r = (struct cq_sim__exec_report){&o1, SIM_EXEC_TRADE, &f1, "", "", 1700000000002, NULL};
    cq_sim__ws_publish_execution(g_sim->ws, sym, &r);
    struct cq_sim__order o2 = o1;
    o2.status = SIM_FILLED;
    o2.executed_qty = dec("0.01");
    o2.cum_quote_qty = dec("600.005");
    o2.is_working = false;
    r = (struct cq_sim__exec_report){&o2, SIM_EXEC_TRADE, &f2, "", "", 1700000000003, NULL};
    cq_sim__ws_publish_execution(g_sim->ws, sym, &r);
    r = (struct cq_sim__exec_report){&cancel,     SIM_EXEC_CANCELED, NULL, "origCid",
                                     "cancelCid", 1700000000004,     NULL};
    cq_sim__ws_publish_execution(g_sim->ws, sym, &r);
    r = (struct cq_sim__exec_report){&market, SIM_EXEC_EXPIRED, NULL, "", "", 1700000000005, NULL};
    cq_sim__ws_publish_execution(g_sim->ws, sym, &r);
    cq_sim__ws_publish_account(g_sim->ws, changed, 2, 1700000000006);
    pthread_mutex_unlock(&g_sim->state.lock);

    int64_t last_exec_id = 0;
    json_t *m = tc_msg(tc, 0, 5000);
    cr_assert_not_null(m);
    json_t *want = json_pack(
        "{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,"
        "s:n,s:I,s:i,s:b,s:b,s:b,s:I,s:s,s:s,s:s,s:I,s:s}",
        "e", "executionReport", "E", (json_int_t)1700000000001, "s", "BTCUSDT", "c", "myOrder1",
        "S", "BUY", "o", "LIMIT", "f", "GTC", "q", "0.01000000", "p", "60000.50000000", "P",
        "0.00000000", "F", "0.00000000", "g", -1, "C", "", "x", "NEW", "X", "NEW", "r", "NONE", "i",
        (json_int_t)12345, "l", "0.00000000", "z", "0.00000000", "L", "0.00000000", "n", "0", "N",
        "T", (json_int_t)1700000000001, "t", -1, "w", 1, "m", 0, "M", 0, "O",
        (json_int_t)1700000000000, "Z", "0.00000000", "Y", "0.00000000", "Q", "0.00000000", "W",
        (json_int_t)1700000000000, "V", "NONE");
    check_exec(m, want, &last_exec_id, "NEW");
    json_decref(m);
    json_decref(want);

    m = tc_msg(tc, 1, 5000);
    cr_assert_not_null(m);
    want = json_pack(
        "{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,"
        "s:s,s:I,s:I,s:b,s:b,s:b,s:I,s:s,s:s,s:s,s:I,s:s}",
        "e", "executionReport", "E", (json_int_t)1700000000002, "s", "BTCUSDT", "c", "myOrder1",
        "S", "BUY", "o", "LIMIT", "f", "GTC", "q", "0.01000000", "p", "60000.50000000", "P",
        "0.00000000", "F", "0.00000000", "g", -1, "C", "", "x", "TRADE", "X", "PARTIALLY_FILLED",
        "r", "NONE", "i", (json_int_t)12345, "l", "0.00400000", "z", "0.00400000", "L",
        "60000.50000000", "n", "0.00000400", "N", "BTC", "T", (json_int_t)1700000000002, "t",
        (json_int_t)777, "w", 1, "m", 1, "M", 0, "O", (json_int_t)1700000000000, "Z",
        "240.00200000", "Y", "240.00200000", "Q", "0.00000000", "W", (json_int_t)1700000000000, "V",
        "NONE");
    check_exec(m, want, &last_exec_id, "TRADE 1");
    json_decref(m);
    json_decref(want);

    m = tc_msg(tc, 2, 5000);
    cr_assert_not_null(m);
    cr_assert_str_eq(json_string_value(json_object_get(m, "X")), "FILLED");
    cr_assert_str_eq(json_string_value(json_object_get(m, "x")), "TRADE");
    cr_assert_str_eq(json_string_value(json_object_get(m, "z")), "0.01000000");
    cr_assert_str_eq(json_string_value(json_object_get(m, "Z")), "600.00500000");
    cr_assert_str_eq(json_string_value(json_object_get(m, "l")), "0.00600000");
    cr_assert_str_eq(json_string_value(json_object_get(m, "Y")), "360.00300000");
    cr_assert_str_eq(json_string_value(json_object_get(m, "n")), "0.00000600");
    cr_assert_eq(json_integer_value(json_object_get(m, "t")), 778);
    cr_assert(json_is_false(json_object_get(m, "w")));
    cr_assert_gt(json_integer_value(json_object_get(m, "I")), last_exec_id);
    last_exec_id = json_integer_value(json_object_get(m, "I"));
    json_decref(m);

    m = tc_msg(tc, 3, 5000);
    cr_assert_not_null(m);
    want = json_pack(
        "{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,"
        "s:n,s:I,s:i,s:b,s:b,s:b,s:I,s:s,s:s,s:s,s:I,s:s}",
        "e", "executionReport", "E", (json_int_t)1700000000004, "s", "BTCUSDT", "c", "cancelCid",
        "S", "SELL", "o", "LIMIT", "f", "GTC", "q", "0.01000000", "p", "60000.50000000", "P",
        "0.00000000", "F", "0.00000000", "g", -1, "C", "origCid", "x", "CANCELED", "X", "CANCELED",
        "r", "NONE", "i", (json_int_t)12346, "l", "0.00000000", "z", "0.00000000", "L",
        "0.00000000", "n", "0", "N", "T", (json_int_t)1700000000004, "t", -1, "w", 0, "m", 0, "M",
        0, "O", (json_int_t)1700000000000, "Z", "0.00000000", "Y", "0.00000000", "Q", "0.00000000",
        "W", (json_int_t)1700000000000, "V", "NONE");
    check_exec(m, want, &last_exec_id, "CANCELED");
    json_decref(m);
    json_decref(want);

    m = tc_msg(tc, 4, 5000);
    cr_assert_not_null(m);
    want = json_pack(
        "{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,"
        "s:n,s:I,s:i,s:b,s:b,s:b,s:I,s:s,s:s,s:s,s:s}",
        "e", "executionReport", "E", (json_int_t)1700000000005, "s", "BTCUSDT", "c", "mkt1", "S",
        "SELL", "o", "MARKET", "f", "GTC", "q", "1.00000000", "p", "0.00000000", "P", "0.00000000",
        "F", "0.00000000", "g", -1, "C", "", "x", "EXPIRED", "X", "EXPIRED", "r", "NONE", "i",
        (json_int_t)12347, "l", "0.00000000", "z", "0.50000000", "L", "0.00000000", "n", "0", "N",
        "T", (json_int_t)1700000000005, "t", -1, "w", 0, "m", 0, "M", 0, "O",
        (json_int_t)1700000000100, "Z", "30000.00000000", "Y", "0.00000000", "Q", "0.00000000", "V",
        "NONE");
    check_exec(m, want, &last_exec_id, "EXPIRED (never worked: no W)");
    json_decref(m);
    json_decref(want);

    m = tc_msg(tc, 5, 5000);
    cr_assert_not_null(m);
    want = json_pack("{s:s,s:I,s:I,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "e",
                     "outboundAccountPosition", "E", (json_int_t)1700000000006, "u",
                     (json_int_t)1700000000006, "B", "a", "BTC", "f", "0.01000000", "l",
                     "0.00000000", "a", "USDT", "f", "9399.99500000", "l", "0.50000000");
    static const char *const acct_keys[] = {"e", "E", "u", "B"};
    assert_keys_in_order(m, acct_keys, CQ_ARRAY_LEN(acct_keys), "outboundAccountPosition");
    cr_assert(json_equal(m, want), "account: %s", json_dumps(m, JSON_COMPACT));
    json_decref(m);
    json_decref(want);

    /* Nothing else: market data never reaches a user-data connection. */
    cq_time_sleep_ms(500);
    cr_assert_eq(tc_count(tc), 6);
    tc_free(tc);
}

Test(sim_ws, user_data_on_combined_stream_is_wrapped_with_the_key)
{
    make_listen_key();
    char path[160];
    snprintf(path, sizeof path, "/stream?streams=%s/btcusdt@trade", g_key);
    struct tclient *tc = tc_open(g_port, path);
    cr_assert(tc_wait_established(tc, 3000));
    struct cq_sim__balance changed[1] = {
        {.asset = "ETH", .free = dec("2.5"), .locked = CQ_DEC_ZERO}};
    pthread_mutex_lock(&g_sim->state.lock);
    cq_sim__ws_publish_account(g_sim->ws, changed, 1, 1700000000000);
    pthread_mutex_unlock(&g_sim->state.lock);
    bool seen = false, seen_trade = false;
    int64_t deadline = now_ms() + 10000;
    for (size_t i = 0; (!seen || !seen_trade) && now_ms() < deadline; i++) {
        json_t *m = tc_msg(tc, i, (int)(deadline - now_ms()));
        cr_assert_not_null(m);
        const char *stream = json_string_value(json_object_get(m, "stream"));
        cr_assert_not_null(stream);
        if (strcmp(stream, g_key) == 0) {
            json_t *want =
                json_pack("{s:s,s:I,s:I,s:[{s:s,s:s,s:s}]}", "e", "outboundAccountPosition", "E",
                          (json_int_t)1700000000000, "u", (json_int_t)1700000000000, "B", "a",
                          "ETH", "f", "2.50000000", "l", "0.00000000");
            cr_assert(json_equal(json_object_get(m, "data"), want));
            json_decref(want);
            seen = true;
        } else {
            cr_assert_str_eq(stream, "btcusdt@trade");
            seen_trade = true;
        }
        json_decref(m);
    }
    cr_assert(seen && seen_trade);
    tc_free(tc);
}

Test(sim_ws, listen_key_expiry_sends_event_then_closes)
{
    make_listen_key();
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", g_key);
    struct tclient *tc = tc_open(g_port, path);
    cr_assert(tc_wait_established(tc, 3000));

    /* What sim.c does when the key's hour is up. */
    pthread_mutex_lock(&g_sim->state.lock);
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        if (strcmp(g_sim->state.listen_keys[i].key, g_key) == 0) {
            g_sim->state.listen_keys[i].active = false;
        }
    }
    cq_sim__ws_listen_key_closed(g_sim->ws, g_key, true, 1700000001234);
    pthread_mutex_unlock(&g_sim->state.lock);

    json_t *m = tc_msg(tc, 0, 5000);
    cr_assert_not_null(m);
    json_t *want = json_pack("{s:s,s:I,s:s}", "e", "listenKeyExpired", "E",
                             (json_int_t)1700000001234, "listenKey", g_key);
    cr_assert(json_equal(m, want), "got %s", json_dumps(m, JSON_COMPACT));
    json_decref(m);
    json_decref(want);
    cr_assert(tc_wait_closed(tc, 5000), "closed after listenKeyExpired");
    cr_assert_eq(tc_count(tc), 1);
    tc_free(tc);

    /* The expired key is refused now. */
    tc = tc_open(g_port, path);
    cr_assert_not(tc_wait_established(tc, 3000));
    tc_free(tc);
}

Test(sim_ws, listen_key_delete_closes_without_event)
{
    make_listen_key();
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", g_key);
    struct tclient *tc = tc_open(g_port, path);
    cr_assert(tc_wait_established(tc, 3000));
    pthread_mutex_lock(&g_sim->state.lock);
    cr_assert_eq(cq_sim__listen_key_delete(&g_sim->state, g_key), 0);
    pthread_mutex_unlock(&g_sim->state.lock);
    cr_assert(tc_wait_closed(tc, 5000));
    cr_assert_eq(tc_count(tc), 0, "no listenKeyExpired on a delete");
    tc_free(tc);
}

Test(sim_ws, subscribe_to_listen_key)
{
    make_listen_key();
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    size_t cursor = 0;
    char req[200];
    snprintf(req, sizeof req, "{\"method\":\"SUBSCRIBE\",\"params\":[\"%s\"],\"id\":1}", g_key);
    json_t *r = tc_request(tc, &cursor, req);
    cr_assert(json_is_null(json_object_get(r, "result")), "%s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    /* A key-shaped name that is not a live key is an invalid stream. */
    cq_time_sleep_ms(250);
    r = tc_request(
        tc, &cursor,
        "{\"method\":\"SUBSCRIBE\",\"params\":[\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
        "zzzzzzzzzzzzzzzzzzzzzz\"],\"id\":2}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), 2);
    json_decref(r);
    struct cq_sim__balance changed[1] = {{.asset = "BTC", .free = dec("1"), .locked = CQ_DEC_ZERO}};
    pthread_mutex_lock(&g_sim->state.lock);
    cq_sim__ws_publish_account(g_sim->ws, changed, 1, 1700000000000);
    pthread_mutex_unlock(&g_sim->state.lock);
    json_t *m = tc_msg(tc, cursor, 5000);
    cr_assert_not_null(m);
    cr_assert_str_eq(json_string_value(json_object_get(m, "e")), "outboundAccountPosition");
    json_decref(m);
    tc_free(tc);
}

/* ---- faults ------------------------------------------------------------------- */

Test(sim_ws, drop_fault_closes_every_connection)
{
    struct tclient *a = tc_open(g_port, "/ws/btcusdt@trade");
    struct tclient *b = tc_open(g_port, "/stream?streams=ethusdt@trade");
    cr_assert(tc_wait_established(a, 3000));
    cr_assert(tc_wait_established(b, 3000));
    cr_assert_eq(counter(&g_sim->state.counters.ws_connections), 2);
    atomic_fetch_add(&g_sim->state.faults.ws_drop_generation, 1);
    cr_assert(tc_wait_closed(a, 3000));
    cr_assert(tc_wait_closed(b, 3000));
    tc_free(a);
    tc_free(b);
    int64_t deadline = now_ms() + 3000;
    while (counter(&g_sim->state.counters.ws_connections) != 0 && now_ms() < deadline) {
        cq_time_sleep_ms(10);
    }
    cr_assert_eq(counter(&g_sim->state.counters.ws_connections), 0);
    /* New connections work after the fault. */
    a = tc_open(g_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(a, 3000));
    cr_assert_geq(tc_wait_count(a, 3, 10000), 3);
    cr_assert_not(tc_is_closed(a));
    tc_free(a);
}

/* ws_user_down (POST /_sim/ws/user_down): the WS API, where the user data
 * stream flows, is closed and refused; market streams go on. */
Test(sim_ws, user_down_fault_closes_and_refuses_the_ws_api_only)
{
    struct tclient *market = tc_open(g_port, "/ws/btcusdt@trade");
    struct tclient *api = tc_open(g_port, "/ws-api/v3");
    cr_assert(tc_wait_established(market, 3000));
    cr_assert(tc_wait_established(api, 3000));
    atomic_store(&g_sim->state.faults.ws_user_down, true);
    cr_assert(tc_wait_closed(api, 3000), "the WS API connection is closed");
    cr_expect_eq(tc_close_code(api), 1001);
    cr_assert_eq(raw_try_connect("/ws-api/v3"), -1, "a new WS API connection is refused");
    size_t now = tc_count(market);
    cr_assert_geq(tc_wait_count(market, now + 3, 10000), now + 3, "market data goes on");
    cr_assert_not(tc_is_closed(market));
    atomic_store(&g_sim->state.faults.ws_user_down, false);
    int fd = raw_try_connect("/ws-api/v3");
    cr_assert_geq(fd, 0, "the WS API accepts connections again");
    close(fd);
    tc_free(api);
    tc_free(market);
}

Test(sim_ws, stall_fault_keeps_connection_but_sends_no_data)
{
    struct tclient *tc = tc_open(g_port, "/ws/btcusdt@trade");
    cr_assert(tc_wait_established(tc, 3000));
    cr_assert_geq(tc_wait_count(tc, 3, 10000), 3);
    atomic_store(&g_sim->state.faults.ws_stall, true);
    /* Control replies still flow. The server writes a connection's frames
     * in order and discards stream data from the moment the stall is on, so
     * this reply marks the end of the data: frames written before it may
     * still land, nothing after it. */
    size_t cursor = tc_count(tc);
    json_t *r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}");
    json_t *want = json_pack("{s:[s],s:i}", "result", "btcusdt@trade", "id", 1);
    cr_assert(json_equal(r, want));
    json_decref(r);
    json_decref(want);
    /* Wait until the stall has visibly discarded data (so there was data to
     * withhold), then ask again: no message may sit between the replies. */
    size_t after_reply = cursor;
    uint64_t dropped0 = counter(&g_sim->state.counters.ws_messages_dropped);
    int64_t deadline = now_ms() + 10000;
    while (counter(&g_sim->state.counters.ws_messages_dropped) < dropped0 + 3 &&
           now_ms() < deadline) {
        cq_time_sleep_ms(10);
    }
    cr_assert_geq(counter(&g_sim->state.counters.ws_messages_dropped), dropped0 + 3,
                  "discarded data is counted");
    r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":2}");
    json_decref(r);
    cr_assert_eq(cursor, after_reply + 1, "%zu data messages while stalled",
                 cursor - after_reply - 1);
    cr_assert_not(tc_is_closed(tc), "the connection stays open");
    /* Pings are still answered. */
    int fd = raw_connect("/ws/0");
    raw_send_frame(fd, 0x9, "hello", 5);
    struct raw_frame *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    cr_assert_eq(raw_read_frame(fd, f, 3000), 1, "a pong while stalled");
    cr_assert_eq(f->opcode, 0xA);
    cr_assert_eq(f->len, 5);
    cr_assert(memcmp(f->payload, "hello", 5) == 0);
    free(f);
    close(fd);
    /* And data resumes. */
    atomic_store(&g_sim->state.faults.ws_stall, false);
    size_t now = tc_count(tc);
    cr_assert_geq(tc_wait_count(tc, now + 3, 10000), now + 3);
    tc_free(tc);
}

/* ---- keepalive ---------------------------------------------------------------- */

/* The server pings every 200 ms and closes a client whose last pong is
 * older than 3 s: a client must answer within seconds, not within one
 * scheduler slice of a loaded CI box. */
#define SHORT_PING_MS 200
#define SHORT_PONG_TIMEOUT_MS 3000

static void short_keepalive(void)
{
    setenv("SIMEX_WS_PING_MS", "200", 1);
    setenv("SIMEX_WS_PONG_TIMEOUT_MS", "3000", 1);
    sim_up();
}

/* Drain what a raw client has received, without waiting; true once the
 * server closed it (close frame or EOF). Counts the pings. */
static bool raw_closed_now(int fd, struct raw_frame *f, int *pings)
{
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) {
            return false;
        }
        int rc = raw_read_frame(fd, f, 3000);
        if (rc < 0 || (rc == 1 && f->opcode == 0x8)) {
            return true;
        }
        if (rc == 1 && f->opcode == 0x9) {
            (*pings)++;
        }
    }
}

/* Opened after the client under test, a raw client that never pongs is
 * closed by the same pong-timeout check that would have closed the older
 * one first had its pongs not counted. So "long enough" is measured by the
 * server's own clock: until the control is closed (at most 20 s). Returns
 * when it was, or -1. */
static int64_t control_closed_at(int ctl, struct raw_frame *f, int *pings)
{
    int64_t deadline = now_ms() + 20000;
    while (now_ms() < deadline) {
        if (raw_closed_now(ctl, f, pings)) {
            return now_ms();
        }
        cq_time_sleep_ms(20);
    }
    return -1;
}

Test(sim_ws, server_pings_and_keeps_a_ponging_client, .init = short_keepalive)
{
    int64_t start = now_ms(); /* before the server's ping timer starts */
    int fd = raw_connect("/ws/0");
    int ctl = raw_connect("/ws/0"); /* the control: never pongs (control_closed_at) */
    struct raw_frame *f = malloc(sizeof *f);
    struct raw_frame *cf = malloc(sizeof *cf);
    cr_assert_not_null(f);
    cr_assert_not_null(cf);
    int pings = 0, ctl_pings = 0;
    int64_t ctl_closed_at = -1;
    char last_payload[64] = "";
    /* Until the control is closed, then half a second for a close of ours. */
    while (now_ms() - start < 20000 && (ctl_closed_at < 0 || now_ms() - ctl_closed_at < 500)) {
        int rc = raw_read_frame(fd, f, 20);
        cr_assert_geq(rc, 0, "server closed a client that answers pings");
        if (rc == 1) {
            cr_assert_eq(f->opcode, 0x9, "only pings on an idle connection (opcode %d)", f->opcode);
            cr_assert_gt(f->len, 0, "pings carry a payload");
            cr_assert_lt(f->len, sizeof last_payload);
            memcpy(last_payload, f->payload, f->len);
            last_payload[f->len] = '\0';
            pings++;
            raw_send_frame(fd, 0xA, f->payload, f->len); /* pong echoing the payload */
        }
        if (ctl_closed_at < 0 && raw_closed_now(ctl, cf, &ctl_pings)) {
            ctl_closed_at = now_ms();
        }
    }
    int64_t end = now_ms();
    cr_assert_geq(ctl_closed_at, 0, "the control (no pongs) is closed (%d pings)", ctl_pings);
    cr_assert_geq(ctl_closed_at - start, SHORT_PONG_TIMEOUT_MS, "the control was closed early");
    /* Pings keep coming, and never closer than SHORT_PING_MS: the k-th goes
     * out at least k * SHORT_PING_MS after the connect, which is after
     * `start` on the same monotonic clock, and before `end`. */
    cr_assert_geq(pings, 3, "%d pings", pings);
    cr_assert_leq(pings, (end - start) / SHORT_PING_MS, "%d pings in %" PRId64 " ms", pings,
                  end - start);
    close(ctl);
    close(fd);
    free(cf);
    free(f);
}

Test(sim_ws, client_that_does_not_pong_is_closed, .init = short_keepalive)
{
    /* Read before the connect: the server starts its pong timer later, so
     * the lower bound below is exact. */
    int64_t start = now_ms();
    int fd = raw_connect("/ws/0");
    struct raw_frame *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    int pings = 0, close_code = -1;
    int64_t closed_at = 0;
    while (now_ms() - start < 20000) {
        int rc = raw_read_frame(fd, f, 100);
        if (rc < 0) {
            closed_at = now_ms();
            break;
        }
        if (rc == 0) {
            continue;
        }
        if (f->opcode == 0x9) {
            pings++;
            /* An unsolicited pong with another payload keeps nothing alive. */
            if (pings == 2) {
                raw_send_frame(fd, 0xA, "nope", 4);
            }
        } else if (f->opcode == 0x8) {
            close_code = f->len >= 2 ? (f->payload[0] << 8) | f->payload[1] : 0;
            closed_at = now_ms();
            break;
        }
    }
    cr_assert_neq(closed_at, 0, "a client that never pongs is closed");
    cr_assert_geq(pings, 3);
    cr_assert_geq(closed_at - start, SHORT_PONG_TIMEOUT_MS, "not before the pong timeout");
    /* loose: the close is due one tick after the timeout */
    cr_assert_leq(closed_at - start, SHORT_PONG_TIMEOUT_MS + 3000);
    if (close_code >= 0) {
        cr_assert_eq(close_code, 1008);
    }
    close(fd);
    free(f);
}

Test(sim_ws, lws_client_answers_pings_and_stays, .init = short_keepalive)
{
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    int ctl = raw_connect("/ws/0"); /* never pongs: see control_closed_at */
    struct raw_frame *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    int ctl_pings = 0;
    cr_assert_geq(control_closed_at(ctl, f, &ctl_pings), 0, "the control (no pongs) is closed");
    cr_assert_geq(ctl_pings, 3, "the server was pinging");
    cq_time_sleep_ms(500); /* for a close of ours to arrive */
    cr_assert_not(tc_is_closed(tc), "lws answered the pings: still open");
    close(ctl);
    free(f);
    tc_free(tc);
}

/* ---- slow consumers --------------------------------------------------------------- */

Test(sim_ws, slow_consumer_is_disconnected_and_counted)
{
    make_listen_key();
    char path[128];
    snprintf(path, sizeof path, "/ws/%s", g_key);
    int fd = raw_connect(path);
    int rcvbuf = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    /* ~40 KB per event; the client reads nothing. */
    enum { N_ASSETS = 600 };
    struct cq_sim__balance *bal = calloc(N_ASSETS, sizeof *bal);
    cr_assert_not_null(bal);
    for (int i = 0; i < N_ASSETS; i++) {
        snprintf(bal[i].asset, sizeof bal[i].asset, "A%u", (unsigned)(i % 1000));
        bal[i].free = dec("12345.6789");
        bal[i].locked = dec("1");
    }
    uint64_t dropped0 = counter(&g_sim->state.counters.ws_messages_dropped);
    for (int k = 0; k < 400; k++) {
        pthread_mutex_lock(&g_sim->state.lock);
        cq_sim__ws_publish_account(g_sim->ws, bal, N_ASSETS, 1700000000000 + k);
        pthread_mutex_unlock(&g_sim->state.lock);
    }
    free(bal);
    int64_t deadline = now_ms() + 10000;
    while (counter(&g_sim->state.counters.ws_messages_dropped) == dropped0 && now_ms() < deadline) {
        cq_time_sleep_ms(20);
    }
    cr_assert_gt(counter(&g_sim->state.counters.ws_messages_dropped), dropped0);
    deadline = now_ms() + 10000;
    while (counter(&g_sim->state.counters.ws_connections) != 0 && now_ms() < deadline) {
        cq_time_sleep_ms(20);
    }
    cr_assert_eq(counter(&g_sim->state.counters.ws_connections), 0, "the slow client was dropped");
    close(fd);
}

/* ---- limits ------------------------------------------------------------------ */

Test(sim_ws, at_most_256_connections)
{
    static int fds[256];
    for (int i = 0; i < 256; i++) {
        fds[i] = raw_try_connect("/ws/0");
        cr_assert_geq(fds[i], 0, "connection %d refused", i);
    }
    cr_assert_eq(counter(&g_sim->state.counters.ws_connections), 256);
    cr_assert_lt(raw_try_connect("/ws/0"), 0, "the 257th connection is refused");
    close(fds[0]);
    int64_t deadline = now_ms() + 3000;
    while (counter(&g_sim->state.counters.ws_connections) != 255 && now_ms() < deadline) {
        cq_time_sleep_ms(10);
    }
    fds[0] = raw_try_connect("/ws/0");
    cr_assert_geq(fds[0], 0, "a freed slot is usable again");
    for (int i = 0; i < 256; i++) {
        close(fds[i]);
    }
}

static char *stream_list(size_t n, const char *sep, bool quoted)
{
    size_t cap = n * 32 + 1;
    char *s = malloc(cap);
    cr_assert_not_null(s);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(s + len, cap - len, "%s%sx%zuusdt@trade%s", i > 0 ? sep : "",
                         quoted ? "\"" : "", i, quoted ? "\"" : "");
        len += (size_t)w;
    }
    return s;
}

Test(sim_ws, at_most_1024_streams_per_connection)
{
    /* Over the URL (raw client: lws's own client caps the request line). */
    char *list = stream_list(1025, "/", false);
    size_t cap = strlen(list) + 32;
    char *path = malloc(cap);
    cr_assert_not_null(path);
    snprintf(path, cap, "/stream?streams=%s", list);
    cr_assert_lt(raw_try_connect(path), 0, "1025 streams in the URL are refused");
    free(list);
    list = stream_list(1024, "/", false);
    snprintf(path, cap, "/stream?streams=%s", list);
    int fd = raw_try_connect(path);
    cr_assert_geq(fd, 0, "1024 streams in the URL are fine");
    close(fd);
    free(list);
    free(path);

    /* Over SUBSCRIBE: up to 1024; one more is refused and changes nothing. */
    struct tclient *tc = tc_open(g_port, "/ws/0");
    cr_assert(tc_wait_established(tc, 3000));
    list = stream_list(1024, ",", true);
    cap = strlen(list) + 64;
    char *req = malloc(cap);
    cr_assert_not_null(req);
    snprintf(req, cap, "{\"method\":\"SUBSCRIBE\",\"params\":[%s],\"id\":1}", list);
    free(list);
    size_t cursor = 0;
    json_t *r = tc_request(tc, &cursor, req);
    free(req);
    cr_assert(json_is_null(json_object_get(r, "result")), "%s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    cq_time_sleep_ms(250);
    r = tc_request(tc, &cursor,
                   "{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\"],\"id\":2}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), 2, "%s",
                 json_dumps(r, JSON_COMPACT));
    json_decref(r);
    cq_time_sleep_ms(250);
    r = tc_request(tc, &cursor, "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":3}");
    cr_assert_eq(json_array_size(json_object_get(r, "result")), 1024);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(r, "result"), 1023)),
                     "x1023usdt@trade");
    json_decref(r);
    cq_time_sleep_ms(250);
    r = tc_request(tc, &cursor,
                   "{\"method\":\"UNSUBSCRIBE\",\"params\":[\"x0usdt@trade\"],\"id\":4}");
    cr_assert(json_is_null(json_object_get(r, "result")));
    json_decref(r);
    cq_time_sleep_ms(250);
    r = tc_request(tc, &cursor,
                   "{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\"],\"id\":5}");
    cr_assert(json_is_null(json_object_get(r, "result")), "%s", json_dumps(r, JSON_COMPACT));
    json_decref(r);
    tc_free(tc);
}

Test(sim_ws, has_subscribers_follows_subscriptions)
{
    cr_assert_not(cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@kline_3m"));
    struct tclient *tc = tc_open(g_port, "/ws/btcusdt@kline_3m/btcusdt@depth@100ms");
    cr_assert(tc_wait_established(tc, 3000));
    cr_assert(cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@kline_3m"));
    cr_assert(cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@depth@100ms"));
    tc_free(tc);
    int64_t deadline = now_ms() + 3000;
    while (cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@kline_3m") && now_ms() < deadline) {
        cq_time_sleep_ms(10);
    }
    cr_assert_not(cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@kline_3m"));
    cr_assert_not(cq_sim__ws_has_subscribers(g_sim->ws, "btcusdt@depth@100ms"));
}

/* ---- hostile clients (issue 17, "Simulator WebSocket") ------------------------- */

/* Read frames until a close frame (returns its status, reason in *reason) or
 * EOF/timeout (returns -1 for EOF, 0 for timeout). Data frames before it are
 * counted in *data. */
static int raw_wait_close(int fd, char *reason, size_t reason_len, int *data)
{
    struct raw_frame *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    int status = 0;
    for (;;) {
        int rc = raw_read_frame(fd, f, 5000);
        if (rc <= 0) {
            status = rc;
            break;
        }
        if (f->opcode == 0x8) {
            cr_assert_geq(f->len, 2, "a close frame with a status");
            status = (f->payload[0] << 8) | f->payload[1];
            size_t n = f->len - 2 < reason_len - 1 ? f->len - 2 : reason_len - 1;
            memcpy(reason, f->payload + 2, n);
            reason[n] = '\0';
            break;
        }
        if (data != NULL && (f->opcode == 0x1 || f->opcode == 0x2)) {
            (*data)++;
        }
    }
    free(f);
    return status;
}

Test(sim_ws, unmasked_client_frame_is_closed_with_1002)
{
    int fd = raw_connect("/ws/0");
    static const char req[] = "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}";
    unsigned char buf[64];
    buf[0] = 0x81;
    buf[1] = (unsigned char)(sizeof req - 1); /* no mask bit */
    memcpy(buf + 2, req, sizeof req - 1);
    cr_assert_eq(write(fd, buf, 2 + sizeof req - 1), (ssize_t)(2 + sizeof req - 1));
    char reason[128];
    int data = 0;
    int st = raw_wait_close(fd, reason, sizeof reason, &data);
    cr_expect_eq(st, 1002, "close status %d", st);
    cr_expect_eq(data, 0, "the unmasked request was processed");
    cr_expect(strstr(reason, "mask") != NULL, "reason: %s", reason);
    close(fd);
}

Test(sim_ws, oversized_ping_is_closed_with_1002_and_a_reason)
{
    int fd = raw_connect("/ws/0");
    unsigned char buf[8 + 200];
    const unsigned char mask[4] = {1, 2, 3, 4};
    buf[0] = 0x89;
    buf[1] = 0x80 | 126;
    buf[2] = 0;
    buf[3] = 200;
    memcpy(buf + 4, mask, 4);
    for (size_t i = 0; i < 200; i++) {
        buf[8 + i] = (unsigned char)('p' ^ mask[i % 4]);
    }
    cr_assert_eq(write(fd, buf, sizeof buf), (ssize_t)sizeof buf);
    char reason[128] = "";
    int st = raw_wait_close(fd, reason, sizeof reason, NULL);
    cr_expect_eq(st, 1002, "a close frame with 1002, not a bare TCP close (got %d)", st);
    cr_expect(strstr(reason, "125") != NULL, "reason: %s", reason);
    close(fd);
}

Test(sim_ws, client_pings_count_against_the_message_rate)
{
    int fd = raw_connect("/ws/0");
    struct raw_frame *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    /* exactly the limit: 5 pings in a burst, all answered */
    int64_t t0 = now_ms();
    for (int i = 0; i < 5; i++) {
        raw_send_frame(fd, 0x9, "p", 1);
    }
    int pongs = 0;
    while (pongs < 5) {
        int rc = raw_read_frame(fd, f, 3000);
        cr_assert_eq(rc, 1, "pong %d", pongs);
        cr_assert_neq(f->opcode, 0x8, "closed at the limit (5 in 1 s are allowed)");
        pongs += f->opcode == 0xA ? 1 : 0;
    }
    /* one more inside the same second: over the limit */
    raw_send_frame(fd, 0x9, "p", 1);
    int64_t burst_ms = now_ms() - t0;
    char reason[128];
    int st = raw_wait_close(fd, reason, sizeof reason, NULL);
    if (burst_ms < 1000) {
        cr_expect_eq(st, 1008, "6 pings in %lld ms: close %d", (long long)burst_ms, st);
    }
    free(f);
    close(fd);
}

/* Send a raw HTTP request; return the status of the answer (-1 when the
 * connection closed without one); the whole answer in out. */
static int raw_http(const char *req, char *out, size_t out_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t len = 0;
    int64_t deadline = now_ms() + 5000;
    while (len + 1 < out_len && now_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        ssize_t r = read(fd, out + len, out_len - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    out[len] = '\0';
    close(fd);
    int status = -1;
    if (sscanf(out, "HTTP/1.1 %d", &status) != 1) {
        status = -1;
    }
    return status;
}

#define UPG "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define KEYV "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

Test(sim_ws, bad_handshakes_get_an_http_status_and_a_body)
{
    static const struct {
        const char *req;
        int status;
        const char *header; /* must appear, or NULL */
    } rows[] = {
        {"GET /ws/btcusdt@trade HTTP/1.1\r\nHost: x\r\n\r\n", 426, "Upgrade: websocket"},
        {"GET /nope HTTP/1.1\r\nHost: x\r\n" UPG KEYV "\r\n", 404, NULL},
        {"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, NULL},
        {"GET /stream?streams=not!a!stream HTTP/1.1\r\nHost: x\r\n" UPG KEYV "\r\n", 400, NULL},
        {"GET /ws/btcusdt@trade HTTP/1.1\r\nHost: x\r\n" UPG
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
         426, "Sec-WebSocket-Version: 13"},
        {"GET /ws/btcusdt@trade HTTP/1.1\r\nHost: x\r\n" UPG "Sec-WebSocket-Version: 13\r\n\r\n",
         400, NULL},
        {"GET /ws/btcusdt@trade HTTP/1.1\r\nHost: x\r\n" UPG
         "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400, NULL},
        {"GET /ws/btcusdt%00@trade HTTP/1.1\r\nHost: x\r\n" UPG KEYV "\r\n", 400, NULL},
        {"POST /ws/0 HTTP/1.1\r\nHost: x\r\n" UPG KEYV "\r\n", 405, NULL},
        {"HELLO\r\n\r\n", 400, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char out[2048];
        int st = raw_http(rows[i].req, out, sizeof out);
        cr_expect_eq(st, rows[i].status, "row %zu: got %d: %s", i, st, out);
        const char *body = strstr(out, "\r\n\r\n");
        cr_expect(body != NULL && strlen(body + 4) > 0, "row %zu: a body saying why: %s", i, out);
        if (rows[i].header != NULL) {
            cr_expect(strstr(out, rows[i].header) != NULL, "row %zu: %s missing: %s", i,
                      rows[i].header, out);
        }
    }
    /* and the server still upgrades a good one */
    int fd = raw_connect("/ws/btcusdt@trade");
    close(fd);
}

Test(sim_ws, subscription_storage_is_freed_when_connections_close)
{
    size_t before = cq_sim__ws_subscription_bytes(g_sim->ws);
    char *list = stream_list(1024, "/", false);
    size_t cap = strlen(list) + 32;
    char *path = malloc(cap);
    cr_assert_not_null(path);
    snprintf(path, cap, "/stream?streams=%s", list);
    free(list);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = raw_try_connect(path);
        cr_assert_geq(fds[i], 0, "connection %d", i);
    }
    free(path);
    size_t held = cq_sim__ws_subscription_bytes(g_sim->ws) - before;
    cr_assert_geq(held, (size_t)8 * 1024 * 2 * 80, "8 x 1024 subscriptions hold %zu bytes", held);
    for (int i = 0; i < 8; i++) {
        close(fds[i]);
    }
    int64_t deadline = now_ms() + 5000;
    while (cq_sim__ws_subscription_bytes(g_sim->ws) != before && now_ms() < deadline) {
        cq_time_sleep_ms(10);
    }
    cr_assert_eq(cq_sim__ws_subscription_bytes(g_sim->ws), before,
                 "subscription bytes after close");
}

Test(sim_ws, trickled_handshake_is_cut_at_its_deadline_from_accept)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int64_t t0 = now_ms();
    static const char first[] = "GET /ws/btcusdt@trade HTTP/1.1\r\n";
    cr_assert_eq(write(fd, first, sizeof first - 1), (ssize_t)(sizeof first - 1));
    /* one header line every 300 ms: never idle, never finished */
    bool closed = false;
    while (!closed && now_ms() - t0 < 15000) {
        static const char line[] = "X-Slow: 1\r\n";
        if (send(fd, line, sizeof line - 1, MSG_NOSIGNAL) < 0) {
            closed = true;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 300) > 0) {
            char buf[256];
            closed = read(fd, buf, sizeof buf) <= 0;
        }
    }
    int64_t took = now_ms() - t0;
    cr_assert(closed, "still open after %lld ms", (long long)took);
    cr_expect_geq(took, 5000 - 100, "closed before the 5 s deadline: %lld ms", (long long)took);
    cr_expect_lt(took, 12000, "closed %lld ms after accept", (long long)took);
    close(fd);
}

/* ---- a symbol of CQ_SYMBOL_MAX_CHARS (issue 9.7) ------------------------------ */

#define SYM20 "ABCDEFGHIJKLMNOPUSDT" /* CQ_SYMBOL_MAX_CHARS characters */
#define SYM20_LOWER "abcdefghijklmnopusdt"

static void sim_up_sym20(void)
{
    static const char *const symbols[] = {SYM20};
    sim_up_with(symbols, CQ_ARRAY_LEN(symbols));
}

Test(sim_ws, symbol_of_the_daemons_limit_streams, .init = sim_up_sym20)
{
    cr_assert_eq(strlen(SYM20), CQ_SYMBOL_MAX_CHARS);
    /* The longest suffixes the server knows, on the longest symbol. */
    struct tclient *tc = tc_open(g_port, "/stream?streams=" SYM20_LOWER "@trade/" SYM20_LOWER
                                         "@depth20@1000ms/" SYM20_LOWER "@kline_1m");
    cr_assert(tc_wait_established(tc, 3000));
    int64_t deadline = now_ms() + 15000;
    size_t i = 0, trades = 0, partials = 0, klines = 0;
    while ((trades < 3 || partials < 1 || klines < 1) && now_ms() < deadline) {
        json_t *m = tc_msg(tc, i++, (int)(deadline - now_ms()));
        if (m == NULL) {
            break;
        }
        const char *stream = json_string_value(json_object_get(m, "stream"));
        const json_t *d = json_object_get(m, "data");
        cr_assert_not_null(stream);
        if (strcmp(stream, SYM20_LOWER "@trade") == 0) {
            check_trade(d, SYM20);
            trades++;
        } else if (strcmp(stream, SYM20_LOWER "@depth20@1000ms") == 0) {
            partials++;
        } else if (strcmp(stream, SYM20_LOWER "@kline_1m") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(d, "s")), SYM20);
            klines++;
        } else {
            cr_assert_fail("unexpected stream %s", stream);
        }
        json_decref(m);
    }
    cr_expect_geq(trades, 3);
    cr_expect_geq(partials, 1);
    cr_expect_geq(klines, 1);
    tc_free(tc);

    /* One character more is not a stream name. */
    tc = tc_open(g_port, "/stream?streams=abcdefghijklmnopqusdt@trade");
    cr_assert_not(tc_wait_established(tc, 3000), "a 21-character symbol's stream was accepted");
    tc_free(tc);
}
