/*
 * test_sim_market_latency.c — the simulator's order entry latency
 * (server/sim/rest.c "order entry latency", docs/SIMEX.md) and our own
 * trades on the public tape, over real loopback HTTP against a simulator
 * replaying a hand-written recorded book (server/sim/market.c "Recorded
 * book") whose best ask alternates every 3 s of market time:
 *
 *   market time t (ms, absolute):  floor(t / 3000) even -> best ask 100.05
 *                                  floor(t / 3000) odd  -> best ask 100.01
 *
 * (the market clock starts on a wall minute, a multiple of 6000, and the
 * recording's first live ticker is an "even" one).
 *
 *   latency/taker_meets_the_book_after_the_change: a MARKET buy sent 1 s
 *     before a change, with a 1.5 s order latency, fills at the ask after
 *     the change; the answer comes 0.3 s of market time after that.
 *   latency/cancel_waits_too: a cancel reaches the book and answers after
 *     both latencies.
 *   latency/bounds: out-of-range latencies are refused by cq_sim_new.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"
#include "cq/text.h"

#define KEY CQ_SIM_DEFAULT_API_KEY
#define SECRET CQ_SIM_DEFAULT_API_SECRET
#define CHANGE_MS 3000

static struct cq_sim *g_sim;
static char g_base[128];
static char g_rec[64];

/* ---- the recording -------------------------------------------------------------- */

/* ms receive times from B; 30 s are the warm-up, then ticker k = 11 is the
 * first live event (at the start minute): k odd -> ask 100.05, even -> 100.01. */
static void write_recording(void)
{
    snprintf(g_rec, sizeof(g_rec), "/tmp/cq-latency-XXXXXX");
    int fd = mkstemp(g_rec);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    const long long b = 1700000000000LL;
    fprintf(f,
            "%lld {\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,"
            "\"U\":10,\"u\":12,\"b\":[[\"100.00\",\"10\"],[\"99.99\",\"10\"]],\"a\":[[\"100.01\","
            "\"10\"],[\"100.05\",\"10\"],[\"100.10\",\"10\"]]}}\n",
            b);
    for (int k = 1; k <= 400; k++) {
        fprintf(f,
                "%lld {\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":%d,\"s\":\"BTCUSDT\","
                "\"b\":\"100.00\",\"B\":\"10\",\"a\":\"%s\",\"A\":\"10\"}}\n",
                b + (long long)k * CHANGE_MS, 100 + k, k % 2 == 1 ? "100.05" : "100.01");
    }
    fclose(f);
}

static void start_sim(uint32_t order_latency_ms, uint32_t response_latency_ms)
{
    static const char *const symbols[] = {"BTCUSDT"};
    static struct cq_sim_balance balances[4];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    write_recording();
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=10", balances, 4, &n_balances, &err), 0);
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
        .weight_limit_1m = 1000000,
        .order_limit_10s = 100000,
        .book_recording = g_rec,
        .order_latency_ms = order_latency_ms,
        .response_latency_ms = response_latency_ms,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_base, cq_sim_rest_url(g_sim), sizeof(g_base));
}

static void setup_latency(void)
{
    start_sim(1500, 300);
}

static void setup_none(void)
{
    start_sim(0, 0);
}

static void teardown(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    unlink(g_rec);
    curl_global_cleanup();
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    size_t k = size * n;
    char *np = realloc(b->p, b->n + k + 1);
    if (np == NULL) {
        return 0;
    }
    memcpy(np + b->n, p, k);
    b->n += k;
    np[b->n] = '\0';
    b->p = np;
    return k;
}

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

/* method path params: signed when sign is set. Returns parsed JSON; *status. */
static json_t *req(const char *method, const char *path, const char *params, bool sign,
                   long *status)
{
    char q[4096];
    char url[4400];
    cq_strlcpy(q, params, sizeof(q));
    if (sign) {
        char sig[CQ_SIGN_HEX_LEN + 1];
        size_t len = strlen(q);
        snprintf(q + len, sizeof(q) - len, "%stimestamp=%lld", len > 0 ? "&" : "",
                 (long long)wall_ms());
        cr_assert_eq(cq_sign_hmac_sha256_hex(SECRET, strlen(SECRET), q, strlen(q), "", 0, sig), 0);
        len = strlen(q);
        snprintf(q + len, sizeof(q) - len, "&signature=%s", sig);
    }
    snprintf(url, sizeof(url), "%s%s%s%s", g_base, path, q[0] != '\0' ? "?" : "", q);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "X-MBX-APIKEY: " KEY);
    struct buf b = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_t *j = b.p != NULL ? json_loads(b.p, 0, NULL) : NULL;
    cr_assert_not_null(j, "%s %s: not JSON: %s", method, path, b.p != NULL ? b.p : "");
    free(b.p);
    return j;
}

static int64_t market_ms(void)
{
    long st;
    json_t *j = req("GET", "/_sim/state", "", false, &st);
    cr_assert_eq(st, 200);
    json_t *sym = json_array_get(json_object_get(j, "symbols"), 0);
    int64_t t = json_integer_value(json_object_get(sym, "market_time_ms"));
    json_decref(j);
    cr_assert_gt(t, 0);
    return t;
}

static const char *ask_after(int64_t t)
{
    return (t / CHANGE_MS) % 2 == 0 ? "100.05000000" : "100.01000000";
}

/* Wait for a change instant C at least 1.2 s ahead, then until 1 s before it. */
static int64_t wait_before_change(void)
{
    int64_t m = market_ms();
    int64_t c = (m / CHANGE_MS + 1) * CHANGE_MS;
    if (c - m < 1200) {
        c += CHANGE_MS;
    }
    while (market_ms() < c - 1000) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return c;
}

Test(latency, taker_meets_the_book_after_the_change, .init = setup_latency, .fini = teardown)
{
    for (int round = 0; round < 2; round++) {
        int64_t c = wait_before_change();
        int64_t sent_mono = mono_ms();
        long st;
        json_t *j = req("POST", "/api/v3/order",
                        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.1&newOrderRespType=FULL",
                        true, &st);
        int64_t took_ms = mono_ms() - sent_mono;
        cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
        json_t *fill = json_array_get(json_object_get(j, "fills"), 0);
        cr_assert_not_null(fill);
        /* sent before C with the ask of before C; it reached the book after C */
        cr_assert_str_eq(json_string_value(json_object_get(fill, "price")), ask_after(c),
                         "round %d: filled at %s, the ask before the change", round,
                         json_string_value(json_object_get(fill, "price")));
        /* order 1500 + response 300 ms of market time, at speed 1 >= 1800 ms of wall time */
        cr_assert_geq(took_ms, 1800, "answered after %lld ms", (long long)took_ms);
        json_decref(j);
    }
    long st;
    json_t *s = req("GET", "/_sim/state", "", false, &st);
    json_t *lat = json_object_get(s, "latency");
    cr_assert_eq(json_integer_value(json_object_get(lat, "order_latency_ms")), 1500);
    cr_assert_eq(json_integer_value(json_object_get(lat, "requests_delayed")), 2);
    cr_assert_eq(json_integer_value(json_object_get(lat, "waiting")), 0);
    cr_assert_eq(json_integer_value(json_object_get(lat, "wait_timeouts")), 0);
    json_decref(s);
}

/* Without latency the same order fills at the ask of its arrival: before C. */
Test(latency, without_latency_the_ask_of_arrival, .init = setup_none, .fini = teardown)
{
    int64_t c = wait_before_change();
    long st;
    json_t *j =
        req("POST", "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.1&newOrderRespType=FULL", true, &st);
    cr_assert_eq(st, 200);
    int64_t after = market_ms();
    json_t *fill = json_array_get(json_object_get(j, "fills"), 0);
    /* the answer came before C (the usual case): it filled at the ask before C */
    if (after < c) {
        cr_assert_str_eq(json_string_value(json_object_get(fill, "price")), ask_after(c - 1));
    }
    json_decref(j);
}

Test(latency, cancel_waits_too, .init = setup_latency, .fini = teardown)
{
    long st;
    json_t *j =
        req("POST", "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price=90", true, &st);
    cr_assert_eq(st, 200);
    char params[128];
    snprintf(params, sizeof(params), "symbol=BTCUSDT&orderId=%lld",
             (long long)json_integer_value(json_object_get(j, "orderId")));
    json_decref(j);
    int64_t m0 = market_ms();
    j = req("DELETE", "/api/v3/order", params, true, &st);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "CANCELED");
    json_decref(j);
    cr_assert_geq(market_ms(), m0 + 1800);
}

Test(latency, bounds)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_err err;
    struct cq_sim_options o = {
        .symbols = symbols,
        .n_symbols = 1,
        .order_latency_ms = CQ_SIM_LATENCY_MS_MAX + 1,
    };
    cr_assert_null(cq_sim_new(&o, &err));
    cr_assert(strstr(err.message, "latency") != NULL, "%s", err.message);
    o.order_latency_ms = 0;
    o.response_latency_ms = CQ_SIM_LATENCY_MS_MAX + 1;
    cr_assert_null(cq_sim_new(&o, &err));
    o.response_latency_ms = CQ_SIM_LATENCY_MS_MAX;
    struct cq_sim *sim = cq_sim_new(&o, &err);
    cr_assert_not_null(sim, "%s", err.message);
    cq_sim_free(sim);
}

/* ---- our trades on the public tape (issue 19) --------------------------------------- */

static const char *str_of(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "no string %s", k);
    return s;
}

/* The recording has no public trades: every trade on the tape is ours. */
Test(tape, our_market_order_is_a_public_trade_and_takes_from_the_book, .init = setup_none,
     .fini = teardown)
{
    bool depth_checked = false;
    for (int attempt = 0; attempt < 5 && !depth_checked; attempt++) {
        /* right after a change: 2.9 s before the next one resets the level */
        int64_t c = wait_before_change();
        while (market_ms() < c + 100) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        long st;
        json_t *j = req("POST", "/api/v3/order",
                        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.1&newOrderRespType=FULL",
                        true, &st);
        cr_assert_eq(st, 200);
        const char *fill_price = str_of(json_array_get(json_object_get(j, "fills"), 0), "price");
        char price[32];
        cq_strlcpy(price, fill_price, sizeof(price));
        json_decref(j);
        json_t *d = req("GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5", false, &st);
        int64_t after = market_ms();
        json_t *best = json_array_get(json_object_get(d, "asks"), 0);
        if (after < c + CHANGE_MS) {
            /* the level we took 0.1 from shows 10 - 0.1 until the recording sets it again */
            cr_assert_str_eq(json_string_value(json_array_get(best, 0)), price);
            cr_assert_str_eq(json_string_value(json_array_get(best, 1)), "9.90000000");
            depth_checked = true;
        }
        json_decref(d);
    }
    cr_assert(depth_checked, "never read the book within 2.9 s of the order");

    long st;
    json_t *t = req("GET", "/api/v3/trades", "symbol=BTCUSDT&limit=10", false, &st);
    cr_assert_eq(st, 200);
    cr_assert_geq(json_array_size(t), 1);
    size_t n = json_array_size(t);
    for (size_t i = 0; i < n; i++) {
        json_t *tr = json_array_get(t, i);
        cr_assert_str_eq(str_of(tr, "qty"), "0.10000000");
        cr_assert(json_is_false(json_object_get(tr, "isBuyerMaker")), "a taker buy");
    }
    json_decref(t);
    json_t *a = req("GET", "/api/v3/aggTrades", "symbol=BTCUSDT&limit=10", false, &st);
    cr_assert_eq(json_array_size(a), n);
    cr_assert_str_eq(str_of(json_array_get(a, 0), "q"), "0.10000000");
    json_decref(a);
    /* the 24h ticker and the klines count them like anyone's */
    json_t *tk = req("GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT", false, &st);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_integer_value(json_object_get(tk, "count")), (json_int_t)n);
    char vol[32];
    snprintf(vol, sizeof(vol), "%zu.%zu0000000", n / 10, n % 10);
    cr_assert_str_eq(str_of(tk, "volume"), vol);
    json_decref(tk);
    json_t *k = req("GET", "/api/v3/klines", "symbol=BTCUSDT&interval=1d", false, &st);
    json_t *bar = json_array_get(k, json_array_size(k) - 1);
    cr_assert_str_eq(json_string_value(json_array_get(bar, 5)), vol);
    cr_assert_eq(json_integer_value(json_array_get(bar, 8)), (json_int_t)n);
    json_decref(k);
    json_t *s = req("GET", "/_sim/state", "", false, &st);
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(s, "counters"), "our_trades_printed")),
        (json_int_t)n);
    json_decref(s);
}
