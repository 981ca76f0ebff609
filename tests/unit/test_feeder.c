/*
 * test_feeder.c — the feeder's market-state logic (server/feeder/feeder.c),
 * driven directly through cq_feeder__apply (feeder-int.h) on a fake clock,
 * without a venue: closed candles reach ARES's ring exactly once and in
 * order, the sanity rules drop insane market data and make a symbol fed only
 * such data stale, a symbol of CQ_SYMBOL_MAX_CHARS works end to end (codec,
 * subscription URL, ring) and a longer one is refused by the config, and the
 * listen-key backoff (cq/backoff.h) is bounded; a gap's backfill against a
 * venue that never answers neither blocks the stream (the candles after the
 * gap are held, the job waits on the REST worker) nor cq_feeder_free.
 *
 * The feeder is built but never started: its thread does not run, so the
 * test is its only caller (as feeder-int.h allows).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cq/backoff.h"
#include "cq/codec.h"
#include "cq/config.h"
#include "cq/feeder.h"
#include "cq/health.h"
#include "cq/market.h"
#include "cq/spsc.h"
#include "fakes/fake_clock.h"
#include "feeder-int.h"

#define SYM20 "ABCDEFGHIJKLMNOPQRST" /* CQ_SYMBOL_MAX_CHARS characters */
#define T0 1723161540000LL           /* a minute's open, 2024-08-09 */
#define MIN 60000LL
#define STALE_MS 1500

struct fx {
    struct fake_clock fc;
    struct cq_clock clock;
    struct cq_config *cfg;
    struct cq_health_board *board;
    struct cq_spsc ring;
    struct cq_feeder *f;
    char cfg_path[64];
};

static struct fx fx;

static struct cq_config *load_config(const char *symbols, struct cq_config_report *report)
{
    char sym_env[256];
    snprintf(sym_env, sizeof(sym_env), "CQ_SYMBOLS=%s", symbols);
    char *const envp[] = {sym_env, "CQ_FEEDER_WARMUP_BARS=0", "CQ_FEEDER_STALE_MS=1500", NULL};
    struct cq_config_load_options lo = {.file_path = fx.cfg_path, .envp = envp};
    return cq_config_load(&lo, report);
}

static void setup(void)
{
    static struct cq_config_report report;
    struct cq_err err;
    memset(&fx, 0, sizeof(fx));
    strcpy(fx.cfg_path, "/tmp/cq-test-feeder-XXXXXX");
    int fd = mkstemp(fx.cfg_path); /* an explicit, empty config file */
    cr_assert(fd >= 0);
    close(fd);
    atomic_init(&fx.fc.mono_ms, 1000);
    atomic_init(&fx.fc.wall_us, T0 * 1000);
    fx.clock = fake_clock_as_clock(&fx.fc);
    fx.cfg = load_config("BTCUSDT," SYM20, &report);
    cr_assert_not_null(fx.cfg, "config: %s", report.n_errors ? report.errors[0].message : "?");
    fx.board = cq_health_board_new(&fx.clock, &err);
    cr_assert_not_null(fx.board);
    cr_assert_eq(cq_spsc_init(&fx.ring, 1024, sizeof(struct cq_market_event)), 0);
    /* Port 9 on loopback: nothing listens; nothing here reaches the venue. */
    struct cq_feeder_options fo = {.cfg = fx.cfg,
                                   .board = fx.board,
                                   .rest_url = "http://127.0.0.1:9",
                                   .ws_url = "ws://127.0.0.1:9",
                                   .to_ares = &fx.ring,
                                   .clock = &fx.clock};
    fx.f = cq_feeder_new(&fo, &err);
    cr_assert_not_null(fx.f, "feeder: %s", err.message);
    cq_feeder__assume_streaming(fx.f);
}

static void teardown(void)
{
    cq_feeder_free(fx.f);
    cq_spsc_fini(&fx.ring);
    cq_health_board_free(fx.board);
    cq_config_unref(fx.cfg);
    unlink(fx.cfg_path);
}

static int64_t now(void)
{
    return atomic_load(&fx.fc.mono_ms);
}

static void advance(int64_t ms)
{
    atomic_fetch_add(&fx.fc.mono_ms, ms);
    atomic_fetch_add(&fx.fc.wall_us, ms * 1000);
}

static cq_dec D(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "%s", s);
    return d;
}

static struct cq_msg kline(const char *symbol, int64_t open_ms, bool closed, const char *o,
                           const char *h, const char *l, const char *c)
{
    struct cq_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = CQ_MSG_KLINE;
    snprintf(m.symbol, sizeof(m.symbol), "%s", symbol);
    m.event_ms = open_ms + 1000;
    m.u.kline.candle.open_ms = open_ms;
    m.u.kline.candle.close_ms = open_ms + MIN - 1;
    m.u.kline.candle.open = D(o);
    m.u.kline.candle.high = D(h);
    m.u.kline.candle.low = D(l);
    m.u.kline.candle.close = D(c);
    m.u.kline.candle.volume = D("1.5");
    m.u.kline.candle.quote_volume = D("150");
    m.u.kline.candle.trades = 3;
    m.u.kline.candle.closed = closed;
    strcpy(m.u.kline.interval, "1m");
    return m;
}

static struct cq_msg closed_kline(const char *symbol, int64_t open_ms)
{
    return kline(symbol, open_ms, true, "10", "12", "9", "11");
}

static struct cq_msg trade(const char *symbol, uint64_t id, const char *price, const char *qty)
{
    struct cq_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = CQ_MSG_TRADE;
    snprintf(m.symbol, sizeof(m.symbol), "%s", symbol);
    m.event_ms = T0 + 5;
    m.u.trade.trade_id = id;
    m.u.trade.price = D(price);
    m.u.trade.qty = D(qty);
    m.u.trade.time_ms = T0 + 4;
    return m;
}

static struct cq_msg book(const char *symbol, const char *bid, const char *ask)
{
    struct cq_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = CQ_MSG_BOOK_TICKER;
    snprintf(m.symbol, sizeof(m.symbol), "%s", symbol);
    m.u.book.bid = D(bid);
    m.u.book.bid_qty = D("1");
    m.u.book.ask = D(ask);
    m.u.book.ask_qty = D("2");
    m.u.book.update_id = 7;
    return m;
}

static void apply(const struct cq_msg *m)
{
    cq_feeder__apply(fx.f, m, now());
}

/* Pop everything in the ring toward ARES into evs; returns the count. */
static size_t drain(struct cq_market_event *evs, size_t max)
{
    size_t n = 0;
    struct cq_market_event ev;
    while (cq_spsc_pop(&fx.ring, &ev)) {
        cr_assert_lt(n, max, "more events than expected");
        evs[n++] = ev;
    }
    return n;
}

/* The feeder's published health record (caller decrefs). */
static json_t *health(void)
{
    cq_feeder__publish_health(fx.f, now());
    json_t *rec = cq_health_record_json(fx.board, CQ_SVC_FEEDER);
    cr_assert_not_null(rec);
    return rec;
}

static json_t *sym_details(json_t *rec, const char *symbol)
{
    return json_object_get(json_object_get(json_object_get(rec, "details"), "symbols"), symbol);
}

static long long sym_int(json_t *rec, const char *symbol, const char *key)
{
    json_t *v = json_object_get(sym_details(rec, symbol), key);
    cr_assert(json_is_integer(v), "%s.%s is not an integer", symbol, key);
    return (long long)json_integer_value(v);
}

/* ---- closed candles reach ARES once, in order ------------------------------ */

TestSuite(feeder, .init = setup, .fini = teardown, .timeout = 30);

Test(feeder, closed_candle_delivered_twice_reaches_ares_once)
{
    struct cq_market_event evs[8];
    struct cq_msg k = closed_kline("BTCUSDT", T0);
    apply(&k);
    apply(&k); /* the exchange (or a reconnect) repeats it */
    cq_feeder__flush(fx.f);
    size_t n = drain(evs, 8);
    cr_assert_eq(n, 1, "ARES got the closed candle %zu times", n);
    cr_expect_eq(evs[0].type, CQ_MARKET_CANDLE_CLOSED);
    cr_expect_eq(evs[0].symbol_idx, 0);
    cr_expect_eq(evs[0].u.candle.candle.open_ms, T0);
    cr_expect_eq(evs[0].u.candle.source, CQ_CANDLE_FROM_STREAM);
    /* an older one after a newer one is a duplicate too */
    struct cq_msg next = closed_kline("BTCUSDT", T0 + MIN);
    apply(&next);
    apply(&k);
    cq_feeder__flush(fx.f);
    n = drain(evs, 8);
    cr_assert_eq(n, 1);
    cr_expect_eq(evs[0].u.candle.candle.open_ms, T0 + MIN);
    json_t *rec = health();
    cr_expect_eq(sym_int(rec, "BTCUSDT", "duplicates"), 2);
    cr_expect_eq(sym_int(rec, "BTCUSDT", "candles_closed"), 2);
    json_decref(rec);
}

Test(feeder, candles_reach_ares_in_time_order)
{
    struct cq_market_event evs[16];
    for (int i = 0; i < 5; i++) {
        struct cq_msg forming = kline("BTCUSDT", T0 + i * MIN, false, "10", "12", "9", "11");
        apply(&forming); /* forming candles never reach ARES */
        struct cq_msg k = closed_kline("BTCUSDT", T0 + i * MIN);
        apply(&k);
        struct cq_msg k20 = closed_kline(SYM20, T0 + i * MIN);
        apply(&k20);
    }
    cq_feeder__flush(fx.f);
    size_t n = drain(evs, 16);
    cr_assert_eq(n, 10);
    int64_t last[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(evs[i].type, CQ_MARKET_CANDLE_CLOSED);
        cr_expect(evs[i].u.candle.candle.closed);
        int s = evs[i].symbol_idx;
        cr_assert(s == 0 || s == 1);
        cr_expect_eq(evs[i].u.candle.candle.open_ms, last[s] == 0 ? T0 : last[s] + MIN,
                     "symbol %d: candle %lld after %lld", s,
                     (long long)evs[i].u.candle.candle.open_ms, (long long)last[s]);
        last[s] = evs[i].u.candle.candle.open_ms;
    }
}

/* ---- REST off the WebSocket loop (issue 10) ------------------------------------ */

/* A venue on loopback that takes connections (the kernel's backlog) and
 * never answers. Returns the listening socket. */
static int black_hole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *worker_details(json_t *rec)
{
    return json_object_get(json_object_get(rec, "details"), "rest_worker");
}

Test(feeder, backfill_against_a_silent_venue_blocks_neither_stream_nor_free)
{
    int port = 0;
    int lfd = black_hole(&port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct cq_err err;
    cq_feeder_free(fx.f);
    struct cq_feeder_options fo = {.cfg = fx.cfg,
                                   .board = fx.board,
                                   .rest_url = url,
                                   .ws_url = "ws://127.0.0.1:9",
                                   .to_ares = &fx.ring,
                                   .clock = &fx.clock};
    fx.f = cq_feeder_new(&fo, &err);
    cr_assert_not_null(fx.f, "feeder: %s", err.message);
    cq_feeder__assume_streaming(fx.f);

    struct cq_msg k0 = closed_kline("BTCUSDT", T0);
    apply(&k0);
    /* Two bars missing: a gap. The backfill (a request the venue never
     * answers: 10 s per attempt, with retries) must not run here. */
    int64_t t = real_ms();
    struct cq_msg k3 = closed_kline("BTCUSDT", T0 + 3 * MIN);
    apply(&k3);
    struct cq_msg k4 = closed_kline("BTCUSDT", T0 + 4 * MIN);
    apply(&k4);
    struct cq_msg b = book("BTCUSDT", "100", "101");
    apply(&b);
    cr_assert_lt(real_ms() - t, 1000, "the stream callback waited %lld ms for REST",
                 (long long)(real_ms() - t));
    cq_feeder__flush(fx.f);
    struct cq_market_event evs[8];
    size_t n = drain(evs, 8);
    /* The candle before the gap and the book; the candles after it wait. */
    cr_assert_eq(n, 2);
    cr_expect_eq(evs[0].type, CQ_MARKET_CANDLE_CLOSED);
    cr_expect_eq(evs[0].u.candle.candle.open_ms, T0);
    cr_expect_eq(evs[1].type, CQ_MARKET_BOOK);
    json_t *rec = health();
    cr_expect_eq(sym_int(rec, "BTCUSDT", "held_for_backfill"), 2);
    cr_expect_eq(json_integer_value(json_object_get(worker_details(rec), "backfills_in_flight")),
                 1);
    json_decref(rec);
    /* The worker takes the job and waits on the venue (real time: bounded
     * poll, no speed assumed). */
    bool running = false;
    for (int i = 0; i < 500 && !running; i++) {
        rec = health();
        const char *r = json_string_value(json_object_get(worker_details(rec), "running"));
        running = r != NULL && strcmp(r, "backfill") == 0;
        json_decref(rec);
        if (!running) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert(running, "the REST worker never started the backfill");
    /* Free does not wait for the call (REST_WORKER_STOP_WAIT_MS, 2 s). */
    t = real_ms();
    cq_feeder_free(fx.f);
    fx.f = NULL;
    int64_t took = real_ms() - t;
    cr_expect_lt(took, 2000 + 3000, "cq_feeder_free waited %lld ms for a hung REST call",
                 (long long)took);
    cr_expect_geq(took, 1900, "cq_feeder_free gave the call its %d ms", 2000);
    close(lfd);
}

/* ---- a symbol of CQ_SYMBOL_MAX_CHARS, end to end (issue 9.7) ------------------- */

Test(feeder, symbol_of_max_chars_works_end_to_end)
{
    char url[4096];
    cr_assert_eq(cq_feeder__stream_url(fx.f, url, sizeof(url)), 0);
    cr_expect_not_null(strstr(url, "/abcdefghijklmnopqrst@kline_1m/abcdefghijklmnopqrst@bookTicker/"
                                   "abcdefghijklmnopqrst@trade"),
                       "subscription: %s", url);
    static const char json[] =
        "{\"stream\":\"abcdefghijklmnopqrst@kline_1m\",\"data\":{\"e\":\"kline\",\"E\":"
        "1723161600001,"
        "\"s\":\"" SYM20 "\",\"k\":{\"t\":1723161540000,\"T\":1723161599999,\"s\":\"" SYM20
        "\",\"i\":\"1m\",\"o\":\"10\",\"c\":\"11\",\"h\":\"12\",\"l\":\"9\",\"v\":\"1\","
        "\"n\":1,\"x\":true,\"q\":\"10\"}}}";
    struct cq_msg m;
    cr_assert_eq(cq_codec_decode(json, strlen(json), &m, NULL), 0);
    cr_assert_eq(cq_codec_decode_jansson(json, strlen(json), &m, NULL), 0);
    cr_expect_str_eq(m.symbol, SYM20);
    apply(&m);
    cq_feeder__flush(fx.f);
    struct cq_market_event evs[4];
    cr_assert_eq(drain(evs, 4), 1, "the 20-character symbol's candle did not reach ARES");
    cr_expect_eq(evs[0].symbol_idx, 1);
    json_t *rec = health();
    cr_expect_eq(sym_int(rec, SYM20, "candles_closed"), 1);
    json_decref(rec);
    /* a URL that does not fit is refused, never cut */
    cr_expect_eq(cq_feeder__stream_url(fx.f, url, 60), -CQ_ETOOBIG);
}

Test(feeder, symbol_longer_than_max_chars_is_refused_by_config)
{
    struct cq_config_report report;
    memset(&report, 0, sizeof(report));
    struct cq_config *cfg = load_config("BTCUSDT," SYM20 "U", &report);
    cr_assert_null(cfg, "a 21-character symbol was accepted");
    cr_assert_geq(report.n_errors, 1);
    cr_expect_str_eq(report.errors[0].key, "CQ_SYMBOLS");
    cr_expect_not_null(strstr(report.errors[0].message, "21 characters"), "%s",
                       report.errors[0].message);
    cr_expect_not_null(strstr(report.errors[0].message, "5 to 20"), "%s", report.errors[0].message);
}

/* ---- sanity rules (issue 17.7) ---------------------------------------------------- */

struct insane_row {
    const char *name;
    struct cq_msg (*make)(void);
    const char *reason;
};

static struct cq_msg k_all_minus_one(void)
{
    return kline("BTCUSDT", T0, true, "-1", "-1", "-1", "-1");
}
static struct cq_msg k_low_above_open(void)
{
    return kline("BTCUSDT", T0, true, "10", "12", "10.5", "11");
}
static struct cq_msg k_high_below_close(void)
{
    return kline("BTCUSDT", T0, true, "10", "12", "9", "12.5");
}
static struct cq_msg k_time_zero(void)
{
    struct cq_msg m = closed_kline("BTCUSDT", T0);
    m.u.kline.candle.open_ms = 0;
    m.u.kline.candle.close_ms = MIN - 1;
    return m;
}
static struct cq_msg k_volume_negative(void)
{
    struct cq_msg m = closed_kline("BTCUSDT", T0);
    m.u.kline.candle.volume = cq_dec_make(-1, 0);
    return m;
}
static struct cq_msg t_price_minus_one(void)
{
    return trade("BTCUSDT", 1, "-1", "1");
}
static struct cq_msg t_qty_negative(void)
{
    return trade("BTCUSDT", 1, "100", "-0.5");
}
static struct cq_msg b_crossed(void)
{
    return book("BTCUSDT", "101", "100");
}
static struct cq_msg b_bid_minus_one(void)
{
    return book("BTCUSDT", "-1", "100");
}

static const struct insane_row insane_rows[] = {
    {"kline OHLC -1", k_all_minus_one, "price_not_positive"},
    {"kline low above open", k_low_above_open, "low_above_open_or_close"},
    {"kline high below close", k_high_below_close, "high_below_open_or_close"},
    {"kline open time 0", k_time_zero, "time_implausible"},
    {"kline volume -1", k_volume_negative, "quantity_negative"},
    {"trade price -1", t_price_minus_one, "price_not_positive"},
    {"trade qty -0.5", t_qty_negative, "quantity_negative"},
    {"book crossed", b_crossed, "book_crossed"},
    {"book bid -1", b_bid_minus_one, "price_not_positive"},
};

Test(feeder, insane_market_data_never_reaches_ares)
{
    struct cq_market_event evs[8];
    for (size_t i = 0; i < sizeof(insane_rows) / sizeof(insane_rows[0]); i++) {
        const struct insane_row *r = &insane_rows[i];
        struct cq_msg m = r->make();
        apply(&m);
        cq_feeder__flush(fx.f);
        cr_expect_eq(drain(evs, 8), 0, "%s reached ARES", r->name);
        json_t *rec = health();
        cr_expect_eq(sym_int(rec, "BTCUSDT", "insane"), (long long)i + 1, "%s not counted",
                     r->name);
        const char *why =
            json_string_value(json_object_get(sym_details(rec, "BTCUSDT"), "last_insane_reason"));
        cr_expect(why != NULL && strcmp(why, r->reason) == 0, "%s: reason %s, want %s", r->name,
                  why ? why : "(none)", r->reason);
        json_decref(rec);
    }
    /* sane values of each kind still pass */
    struct cq_msg k = closed_kline("BTCUSDT", T0);
    struct cq_msg t = trade("BTCUSDT", 2, "100", "0.5");
    struct cq_msg b = book("BTCUSDT", "99.5", "100");
    apply(&k);
    apply(&t);
    apply(&b);
    cq_feeder__flush(fx.f);
    size_t n = drain(evs, 8);
    cr_assert_eq(n, 3, "sane kline, trade and book: %zu events", n);
    cr_expect_eq(evs[0].type, CQ_MARKET_CANDLE_CLOSED);
    cr_expect_eq(evs[1].type, CQ_MARKET_TRADE);
    cr_expect_eq(evs[2].type, CQ_MARKET_BOOK);
    json_t *rec = health();
    json_t *details = json_object_get(rec, "details");
    cr_expect_eq(json_integer_value(json_object_get(details, "insane_total")), 9);
    cr_expect_eq(json_integer_value(json_object_get(details, "malformed_total")), 9);
    cr_expect_eq(sym_int(rec, "BTCUSDT", "insane_in_a_row"), 0);
    json_decref(rec);
}

/* A symbol fed only insane data is stale (feeder_stale, not ready) once the
 * staleness threshold passes, and says why; the other symbol is unaffected. */
Test(feeder, persistent_insane_data_marks_the_symbol_stale)
{
    struct cq_msg good_btc = trade("BTCUSDT", 1, "100", "1");
    struct cq_msg good_20 = trade(SYM20, 1, "100", "1");
    apply(&good_btc);
    apply(&good_20);
    json_t *rec = health();
    cr_expect(json_is_true(json_object_get(rec, "ready")), "fresh data: ready");
    json_decref(rec);
    struct cq_msg bad = kline("BTCUSDT", T0, true, "-1", "-1", "-1", "-1");
    for (int i = 0; i < 10; i++) {
        advance(STALE_MS / 5);
        apply(&bad);
        struct cq_msg t20 = trade(SYM20, (uint64_t)i + 2, "100", "1");
        apply(&t20);
    }
    rec = health();
    cr_expect(json_is_false(json_object_get(rec, "ready")), "only insane data: not ready");
    cr_expect_str_eq(json_string_value(json_object_get(rec, "reason")), "feeder_stale");
    const char *detail = json_string_value(json_object_get(rec, "detail"));
    cr_expect(detail != NULL && strstr(detail, "BTCUSDT") != NULL &&
                  strstr(detail, "price_not_positive") != NULL,
              "detail: %s", detail ? detail : "(none)");
    cr_expect_eq(sym_int(rec, "BTCUSDT", "insane_in_a_row"), 10);
    json_decref(rec);
    /* sane data again: fresh and ready */
    apply(&good_btc);
    rec = health();
    cr_expect(json_is_true(json_object_get(rec, "ready")), "sane again: ready");
    json_decref(rec);
}

/* ---- the backoff of listen-key creation (issue 9.5) ---------------------------------- */

Test(backoff, exponential_jittered_capped)
{
    struct cq_backoff b;
    cq_backoff_init(&b, 1000, 300000, 42);
    cr_expect(cq_backoff_due(&b, 0));
    int64_t t = 0;
    int64_t nominal = 1000;
    for (int i = 0; i < 20; i++) {
        int64_t d = cq_backoff_fail(&b, t, 0);
        cr_expect_geq(d, (nominal + 1) / 2, "failure %d: %lld below half of %lld", i + 1,
                      (long long)d, (long long)nominal);
        cr_expect_leq(d, nominal, "failure %d: %lld above %lld", i + 1, (long long)d,
                      (long long)nominal);
        cr_expect_not(cq_backoff_due(&b, t + d - 1));
        cr_expect(cq_backoff_due(&b, t + d));
        t += d;
        nominal = nominal * 2 > 300000 ? 300000 : nominal * 2;
    }
    /* the server's wait wins when longer, within the cap */
    cq_backoff_reset(&b);
    cr_expect_eq(cq_backoff_fail(&b, t, 12000), 12000);
    cr_expect_eq(cq_backoff_fail(&b, t, 10 * 300000), 300000);
    cq_backoff_reset(&b);
    cr_expect(cq_backoff_due(&b, t));
    cr_expect_leq(cq_backoff_fail(&b, t, 0), 1000);
}

/* The bound the integration test relies on: at most this many attempts in
 * the first 10 s whatever the jitter (nominal 1, 2, 4, 8 s at least halved:
 * attempts at 0 and then >= 0.5, 1.5, 3.5, 7.5 s). */
Test(backoff, attempts_in_ten_seconds_are_bounded)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct cq_backoff b;
        cq_backoff_init(&b, 1000, 300000, seed);
        int attempts = 0;
        for (int64_t t = 0; t <= 10000; t++) {
            if (cq_backoff_due(&b, t)) {
                attempts++;
                (void)cq_backoff_fail(&b, t, 0);
            }
        }
        cr_expect_leq(attempts, 5, "seed %llu: %d attempts in 10 s", (unsigned long long)seed,
                      attempts);
    }
}

/* ---- the loop sleeps until its next deadline, not on a fixed tick ---------- */

enum wait_action { W_NONE, W_PUBLISH, W_DATA_BTC, W_DATA_SYM20, W_BOOK_UNFLUSHED, W_FLUSH };

struct wait_case {
    int64_t advance_ms;      /* on the fake clock, before the action */
    enum wait_action action; /* then this */
    int64_t want_ms;         /* and cq_feeder__wait_ms must be this */
    const char *why;
};

static void wait_act(enum wait_action a)
{
    struct cq_msg m;
    switch (a) {
    case W_NONE:
        break;
    case W_PUBLISH:
        json_decref(health());
        break;
    case W_DATA_BTC:
    case W_DATA_SYM20:
        m = book(a == W_DATA_BTC ? "BTCUSDT" : SYM20, "100", "101");
        apply(&m);
        cq_feeder__flush(fx.f);
        break;
    case W_BOOK_UNFLUSHED:
        m = book("BTCUSDT", "100", "101");
        apply(&m);
        break;
    case W_FLUSH:
        cq_feeder__flush(fx.f);
        break;
    }
}

/* HEALTH_EVERY_MS 250, STALE_MS 1500 (a symbol is stale when its age is
 * > 1500 ms, so at last + 1501). The clock starts at 1000. */
Test(feeder, loop_sleeps_until_the_earliest_deadline)
{
    static const struct wait_case cases[] = {
        {0, W_NONE, 0, "never published: health is due now"},
        {0, W_PUBLISH, 250, "idle: the health cadence, not a 50 ms tick"},
        {100, W_NONE, 150, "the cadence counts from the last publish"},
        {0, W_DATA_BTC, 150, "BTC data at 1100: its staleness deadline 2601 is later"},
        {150, W_PUBLISH, 250, "1250"},
        {250, W_PUBLISH, 250, "1500"},
        {250, W_PUBLISH, 250, "1750"},
        {250, W_PUBLISH, 250, "2000"},
        {250, W_PUBLISH, 250, "2250"},
        {250, W_PUBLISH, 101, "2500: BTC goes stale at 2601, before the next publish"},
        {0, W_DATA_SYM20, 101, "SYM20 data at 2500: its deadline 4001 is later"},
        {101, W_NONE, 0, "2601: BTC's staleness is due and not yet published"},
        {0, W_PUBLISH, 250, "published: the stale symbol no longer wakes the loop"},
        {0, W_BOOK_UNFLUSHED, 50, "a book not yet handed to ARES: retry the hand-off"},
        {0, W_FLUSH, 250, "handed off: idle again"},
        {1000, W_NONE, 0, "3601: the health publish is overdue"},
        {0, W_PUBLISH, 250, "3601: SYM20's deadline 4001 is after the cadence"},
        {250, W_PUBLISH, 150, "3851: SYM20 goes stale at 4001"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        advance(cases[i].advance_ms);
        wait_act(cases[i].action);
        cr_expect_eq(cq_feeder__wait_ms(fx.f, now()), cases[i].want_ms,
                     "case %zu (%s): wait %lld ms, want %lld", i, cases[i].why,
                     (long long)cq_feeder__wait_ms(fx.f, now()), (long long)cases[i].want_ms);
    }
}

/* The frame heartbeats once per step: the sleep is cut to a quarter of
 * CQ_WATCHDOG_STALL_MS (reloadable), so even the smallest stall limit (200 ms)
 * never sees an idle feeder as stalled. */
Test(feeder, loop_sleep_is_cut_to_a_quarter_of_the_watchdog_stall)
{
    static const struct {
        const char *stall_ms;
        int64_t want_ms;
    } cases[] = {{"200", 50}, {"996", 249}, {"1000", 250}, {"5000", 250}};
    json_decref(health()); /* idle: the health cadence (250 ms) is the next deadline */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char stall_env[64];
        snprintf(stall_env, sizeof(stall_env), "CQ_WATCHDOG_STALL_MS=%s", cases[i].stall_ms);
        char *const envp[] = {"CQ_SYMBOLS=BTCUSDT," SYM20, "CQ_FEEDER_STALE_MS=1500", stall_env,
                              NULL};
        struct cq_config_load_options lo = {.file_path = fx.cfg_path, .envp = envp};
        static struct cq_config_report report;
        struct cq_config *cfg = cq_config_load(&lo, &report);
        cr_assert_not_null(cfg, "config: %s", report.n_errors ? report.errors[0].message : "?");
        cq_feeder_reconfigure(fx.f, cfg);
        cr_expect_eq(cq_feeder__wait_ms(fx.f, now()), cases[i].want_ms,
                     "stall %s ms: wait %lld ms, want %lld", cases[i].stall_ms,
                     (long long)cq_feeder__wait_ms(fx.f, now()), (long long)cases[i].want_ms);
        cq_config_unref(cfg);
    }
}
