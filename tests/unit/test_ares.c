/*
 * test_ares.c — ARES's HealthGate, every reason, driven by a fake clock and
 * a fake feeder (events pushed into ARES's input ring, the feeder's health
 * record published by hand); signals read from ARES's output ring; and the
 * determinism of signal ids, pinned to golden ids computed outside the code.
 *
 * Every block test names the one rule it expects to close the gate: the
 * reason's count becomes exactly what the test caused, every other reason
 * stays at 0, and the symbol's last_blocked carries that reason and the
 * gate's detail (which of feeder_stale's three rules fired). A count alone
 * let a gate that ignored the feeder's readiness pass: the data was stale
 * too.
 *
 * ARES runs on its own service thread as in the daemon; the test waits
 * (bounded) for its health record to show the effect of each step.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cq/ares.h"
#include "cq/clock.h"
#include "cq/config.h"
#include "cq/health.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/spsc.h"
#include "cq/signal.h"
#include "fakes/fake_clock.h"

static struct fake_clock fc = FAKE_CLOCK_INIT(1000000, 1763683200000000LL);
static struct cq_clock clk;
static struct cq_config *cfg;
static struct cq_health_board *board;
static struct cq_spsc in, out;
static struct cq_ares *ares;
/* Market events are stamped this far ahead of the fake clock, so a test
 * can make data "fresh at the moment the test signal falls due". */
static int64_t recv_ahead_ms;

static struct cq_journal *journal; /* NULL unless a test opens one */

static void start(const char *extra)
{
    recv_ahead_ms = 0;
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 200,
                                .clock = NULL};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    clk = fake_clock_as_clock(&fc);
    char *const envp[] = {"CQ_SYMBOLS=BTCUSDT",
                          "CQ_STRATEGY=ema_cross",
                          "CQ_STRATEGY_PARAMS=fast=2,slow=3",
                          "CQ_FEEDER_STALE_MS=1000",
                          "TEST_ALLOW_DEFAULT_SIGNAL=on",
                          "CQ_ARES_TEST_SIGNAL_MS=1000",
                          (char *)extra,
                          NULL};
    struct cq_config_report rep;
    struct cq_config_load_options lopt = {.file_path = NULL, .envp = envp};
    cfg = cq_config_load(&lopt, &rep);
    cr_assert_not_null(cfg, "config: %s", rep.errors[0].message);
    board = cq_health_board_new(&clk, NULL);
    cr_assert_eq(cq_spsc_init(&in, 256, sizeof(struct cq_market_event)), 0);
    cr_assert_eq(cq_spsc_init(&out, 64, sizeof(struct cq_signal)), 0);
    struct cq_ares_options ao = {.cfg = cfg,
                                 .board = board,
                                 .from_feeder = &in,
                                 .to_trader = &out,
                                 .journal = journal,
                                 .clock = &clk};
    struct cq_err err;
    ares = cq_ares_new(&ao, &err);
    cr_assert_not_null(ares, "%s", err.message);
    cr_assert_eq(cq_service_start(cq_ares_service(ares), NULL), 0);
}

static void stop(void)
{
    cq_service_request_stop(cq_ares_service(ares));
    cr_assert_eq(cq_service_join(cq_ares_service(ares), 3000), 0);
    cq_ares_free(ares);
    cq_spsc_fini(&in);
    cq_spsc_fini(&out);
    cq_health_board_free(board);
    cq_config_unref(cfg);
    cq_log_close();
}

static void feeder_ready(bool ready)
{
    cq_health_publish(board, CQ_SVC_FEEDER, ready ? CQ_HEALTH_OK : CQ_HEALTH_DEGRADED, ready,
                      ready ? "" : "ws_disconnected", "", NULL);
}

/* A closed 1m candle with this close, received "now" on the fake clock. */
static void push_candle(int64_t open_ms, const char *close, enum cq_candle_source src)
{
    struct cq_market_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CQ_MARKET_CANDLE_CLOSED;
    ev.symbol_idx = 0;
    ev.recv_mono_ms = fake_clock_mono_ms_(&fc) + recv_ahead_ms;
    ev.u.candle.source = src;
    struct cq_candle *c = &ev.u.candle.candle;
    c->open_ms = open_ms;
    c->close_ms = open_ms + 59999;
    c->closed = true;
    cr_assert_eq(cq_dec_parse(close, (size_t)-1, &c->close), 0);
    c->open = c->high = c->low = c->close;
    cr_assert_eq(cq_dec_parse("1", 1, &c->volume), 0);
    cr_assert(cq_spsc_push(&in, &ev));
}

static void push_book(void)
{
    struct cq_market_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CQ_MARKET_BOOK;
    ev.symbol_idx = 0;
    ev.recv_mono_ms = fake_clock_mono_ms_(&fc) + recv_ahead_ms;
    cr_assert(cq_spsc_push(&in, &ev));
}

/* The count ARES reports at a JSON path under details, waiting for it to
 * reach at least want (bounded). */
static json_int_t wait_detail(const char *a, const char *b, const char *c, json_int_t want)
{
    json_int_t v = -1;
    for (int i = 0; i < 300; i++) {
        json_t *rec = cq_health_record_json(board, CQ_SVC_ARES);
        json_t *x = json_object_get(json_object_get(rec, "details"), a);
        if (b != NULL) {
            x = json_object_get(x, b);
        }
        if (c != NULL) {
            x = json_object_get(x, c);
        }
        v = json_is_integer(x) ? json_integer_value(x) : -1;
        json_decref(rec);
        if (v >= want) {
            return v;
        }
        cq_time_sleep_ms(10);
    }
    return v;
}

static json_int_t blocked(const char *reason, json_int_t want)
{
    return wait_detail("signals_blocked_total", reason, NULL, want);
}

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* Exactly `want` signals blocked, all for `reason`, the last one by the rule
 * named `detail`. */
static void expect_blocked(const char *reason, const char *detail, json_int_t want)
{
    json_int_t n = blocked(reason, want);
    cr_expect_eq(n, want, "%lld signal(s) blocked for %s, expected %lld", (long long)n, reason,
                 (long long)want);
    json_t *rec = cq_health_record_json(board, CQ_SVC_ARES);
    json_t *details = json_object_get(rec, "details");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(details, "signals_blocked_total"), k, v)
    {
        if (strcmp(k, reason) != 0) {
            cr_expect_eq(json_integer_value(v), 0, "blocked for %s, not only for %s", k, reason);
        }
    }
    json_t *last = json_object_get(json_object_get(json_object_get(details, "symbols"), "BTCUSDT"),
                                   "last_blocked");
    cr_expect_str_eq(str_or(json_object_get(last, "reason"), "(none)"), reason);
    cr_expect_str_eq(str_or(json_object_get(last, "detail"), "(none)"), detail,
                     "the rule that closed the gate");
    json_decref(rec);
}

/* Let the next test signal fall due. */
static void tick_test_signal(void)
{
    fake_clock_advance_ms(&fc, 1001);
}

Test(ares_gate, feeder_missing_when_no_data_yet)
{
    start(NULL);
    feeder_ready(true);
    tick_test_signal();
    expect_blocked("feeder_missing", "no_market_data_yet", 1);
    struct cq_signal s;
    cr_expect_not(cq_spsc_pop(&out, &s), "a blocked signal never reaches the trader");
    stop();
}

Test(ares_gate, warmup_while_the_strategy_is_cold)
{
    start(NULL);
    feeder_ready(true);
    recv_ahead_ms = 1001;                             /* fresh when the test signal falls due */
    push_candle(60000, "100", CQ_CANDLE_FROM_STREAM); /* 1 of the 3 bars slow=3 needs */
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "candles_closed", 1), 1);
    tick_test_signal();
    expect_blocked("warmup", "strategy_cold", 1);
    stop();
}

Test(ares_gate, feeder_stale_when_data_is_old)
{
    start(NULL);
    feeder_ready(true);
    for (int i = 0; i < 4; i++) { /* warm: slow=3 needs 3 bars */
        push_candle(60000 * (i + 1), "100", CQ_CANDLE_FROM_STREAM);
    }
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "candles_closed", 4), 4);
    fake_clock_advance_ms(&fc, 1500); /* data now older than CQ_FEEDER_STALE_MS */
    expect_blocked("feeder_stale", "data_older_than_stale_ms", 1);
    stop();
}

/* Readiness alone: the data is fresh and the strategy warm when the test
 * signal falls due, and only the feeder's own "not ready" stands in the
 * way; once the feeder is ready again the same situation emits. */
Test(ares_gate, feeder_stale_when_the_feeder_is_not_ready_with_fresh_data)
{
    start(NULL);
    feeder_ready(true);
    recv_ahead_ms = 1001; /* fresh at the moment each test signal falls due */
    for (int i = 0; i < 4; i++) {
        push_candle(60000 * (i + 1), "100", CQ_CANDLE_FROM_STREAM);
    }
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "candles_closed", 4), 4);
    feeder_ready(false);
    tick_test_signal();
    expect_blocked("feeder_stale", "feeder_not_ready", 1);
    json_int_t emitted = wait_detail("signals_emitted_total", NULL, NULL, 0);
    cr_expect_eq(emitted, 0);

    /* the control: ready again, fresh again, and the next test signal goes out */
    feeder_ready(true);
    push_book();
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "books", 1), 1);
    tick_test_signal();
    cr_expect_eq(wait_detail("signals_emitted_total", NULL, NULL, 1), 1,
                 "with the feeder ready the gate opens: readiness was the only block");
    cr_expect_eq(blocked("feeder_stale", 0), 1, "nothing more blocked");
    stop();
}

Test(ares_gate, open_gate_emits_to_the_trader_with_a_deterministic_id)
{
    start(NULL);
    feeder_ready(true);
    /* falling then rising: EMA(2) crosses above EMA(3) on the last bar */
    const char *closes[] = {"100", "99", "98", "97", "104"};
    for (int i = 0; i < 5; i++) {
        push_candle(60000 * (i + 1), closes[i], CQ_CANDLE_FROM_STREAM);
    }
    cr_expect_geq(wait_detail("signals_emitted_total", NULL, NULL, 1), 1);
    struct cq_signal s;
    bool got = false;
    for (int i = 0; i < 200 && !got; i++) {
        got = cq_spsc_pop(&out, &s);
        if (!got) {
            cq_time_sleep_ms(10);
        }
    }
    cr_assert(got, "the signal reached the trader's ring");
    cr_expect_eq(s.side, CQ_SIDE_BUY);
    cr_expect_str_eq(s.symbol, "BTCUSDT");
    cr_expect_str_eq(s.strategy, "ema_cross");
    cr_expect_eq(s.candle_open_ms, 5 * 60000);
    char ref[CQ_DEC_STR_MAX];
    cr_expect_str_eq(cq_dec_format(s.reference_price, ref, sizeof(ref)), "104",
                     "the reference price is the candle's exact close");
    struct cq_signal again = s;
    memset(again.id, 0, sizeof(again.id));
    cq_signal_make_id(&again);
    cr_expect_str_eq(again.id, s.id, "same strategy, symbol, candle and side: same id");
    cr_expect_eq(strlen(s.id), CQ_SIGNAL_ID_LEN);
    stop();
}

Test(ares_gate, backfilled_candles_are_late_data_and_warmup_candles_never_signal)
{
    start(NULL);
    feeder_ready(true);
    /* history warms the strategy, and a cross inside it is not a signal */
    const char *warm[] = {"100", "99", "98", "97", "104"};
    for (int i = 0; i < 5; i++) {
        push_candle(60000 * (i + 1), warm[i], CQ_CANDLE_FROM_WARMUP);
    }
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "from_warmup", 5), 5);
    cr_expect_eq(wait_detail("signals_emitted_total", NULL, NULL, 0), 0);
    push_book();
    /* a cross down arriving through a backfill */
    push_candle(6 * 60000, "90", CQ_CANDLE_FROM_BACKFILL);
    json_int_t n = blocked("feeder_stale", 1);
    if (n < 1) {
        json_t *rec = cq_health_record_json(board, CQ_SVC_ARES);
        char *t = json_dumps(rec, JSON_COMPACT);
        cr_log_error("ares: %s", t);
        free(t);
        json_decref(rec);
    }
    expect_blocked("feeder_stale", "late_candle", 1);
    cr_expect_eq(wait_detail("signals_emitted_total", NULL, NULL, 0), 0);
    stop();
}

Test(ares_gate, symbol_quarantined_by_the_journal)
{
    char dir[] = "/tmp/cq-ares-journal-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct cq_journal_options jo = {.dir = dir, .fsync = CQ_JOURNAL_FSYNC_OFF};
    struct cq_journal_recovery rec;
    struct cq_err err;
    journal = cq_journal_open(&jo, &rec, &err);
    cr_assert_not_null(journal, "%s", err.message);
    cr_assert_eq(cq_journal_start(journal, &err), 0);
    cr_assert_eq(cq_journal_quarantine(journal, "BTCUSDT", "test", "quarantined by the test"), 0);
    start(NULL);
    feeder_ready(true);
    recv_ahead_ms = 1001;
    push_candle(60000, "100", CQ_CANDLE_FROM_STREAM);
    cr_expect_geq(wait_detail("symbols", "BTCUSDT", "candles_closed", 1), 1);
    tick_test_signal();
    cr_expect_geq(blocked("symbol_quarantined", 1), 1,
                  "the quarantine comes first, before freshness and warm-up");
    expect_blocked("symbol_quarantined", "journal_quarantine", 1);
    stop();
    /* The blocked signal is in the journal as signal.blocked with its reason. */
    cr_assert_eq(cq_journal_stop(journal, &err), 0);
    cq_journal_free(journal);
    journal = NULL;
    json_t *state = NULL;
    cr_assert_eq(cq_journal_replay_dir(dir, NULL, false, &state, &err), 0, "%s", err.message);
    cr_expect_geq(
        json_integer_value(json_object_get(json_object_get(state, "types"), "signal.blocked")), 1);
    json_decref(state);
}

struct ring_count {
    const char *needle;
    const char *also; /* NULL, or a second substring the line must hold */
    int n;
};

static void count_line(const char *line, void *ctx)
{
    struct ring_count *c = ctx;
    if (strstr(line, c->needle) != NULL && (c->also == NULL || strstr(line, c->also) != NULL)) {
        c->n++;
    }
}

/* Log lines in the ring with event `event` (and substring `also`). */
static int ring_lines(const char *event, const char *also)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event); /* bounded: short names */
    struct ring_count c = {needle, also, 0};
    cq_log_ring_foreach(count_line, &c);
    return c.n;
}

Test(ares_gate, no_signal_is_passed_on_that_the_journal_refused)
{
    char dir[] = "/tmp/cq-ares-journal-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct cq_journal_options jo = {.dir = dir, .fsync = CQ_JOURNAL_FSYNC_OFF};
    struct cq_journal_recovery rec;
    struct cq_err err;
    journal = cq_journal_open(&jo, &rec, &err);
    cr_assert_not_null(journal, "%s", err.message);
    cr_assert_eq(cq_journal_start(journal, &err), 0);
    cr_assert_eq(cq_journal_stop(journal, &err), 0); /* from now on appends are refused */
    start(NULL);
    feeder_ready(true);
    const char *closes[] = {"100", "99", "98", "97", "104"};
    for (int i = 0; i < 5; i++) {
        push_candle(60000 * (i + 1), closes[i], CQ_CANDLE_FROM_STREAM);
    }
    cr_expect_geq(blocked("journal_unavailable", 1), 1,
                  "journal before acting: an unjournaled signal is blocked");
    expect_blocked("journal_unavailable", "journal_refused_append", 1);
    cr_expect_eq(wait_detail("signals_emitted_total", NULL, NULL, 0), 0);
    struct cq_signal sig;
    cr_expect_not(cq_spsc_pop(&out, &sig), "nothing reached the trader");
    /* Logged once, where it is handled: the signal_blocked line names the
     * journal's error; ARES no longer logs journal_append_failed as well. */
    cr_expect_geq(ring_lines("signal_blocked", "\"journal_error\":\"CQ_EIO"), 1);
    cr_expect_eq(ring_lines("journal_append_failed", NULL), 0,
                 "the refused append was logged twice");
    stop();
    cq_journal_free(journal);
    journal = NULL;
}

Test(signal_id, deterministic_and_distinct)
{
    struct cq_signal a, b;
    memset(&a, 0, sizeof(a));
    cq_strlcpy(a.strategy, "ema_cross", sizeof(a.strategy));
    cq_strlcpy(a.symbol, "BTCUSDT", sizeof(a.symbol));
    a.candle_open_ms = 1679004900000;
    a.side = CQ_SIDE_BUY;
    b = a;
    cq_signal_make_id(&a);
    cq_signal_make_id(&b);
    cr_expect_str_eq(a.id, b.id);
    b.side = CQ_SIDE_SELL;
    cq_signal_make_id(&b);
    cr_expect_str_neq(a.id, b.id, "the side is part of the id");
    b = a;
    b.candle_open_ms += 60000;
    cq_signal_make_id(&b);
    cr_expect_str_neq(a.id, b.id, "the candle is part of the id");
    b = a;
    cq_strlcpy(b.symbol, "ETHUSDT", sizeof(b.symbol));
    cq_signal_make_id(&b);
    cr_expect_str_neq(a.id, b.id, "the symbol is part of the id");
    for (size_t i = 0; i < CQ_SIGNAL_ID_LEN; i++) {
        cr_expect(strchr("0123456789abcdef", a.id[i]) != NULL, "lowercase hex");
    }
}

/* "Stable across restarts and releases": ids pinned to values computed once
 * outside this code, from the definition in cq/signal.h (the first 16 bytes
 * of SHA-256 over "<strategy>|<symbol>|<candle_open_ms>|<side>", in hex):
 *   printf '%s' 'ema_cross|BTCUSDT|1679004900000|BUY' | sha256sum | cut -c1-32
 * A change to the text hashed, its separators, the digest or the encoding
 * changes every id the trader has already seen: it fails here. */
struct golden_id {
    const char *strategy, *symbol;
    int64_t candle_open_ms;
    enum cq_side side;
    const char *id;
};

static const struct golden_id golden_ids[] = {
    {"ema_cross", "BTCUSDT", 1679004900000, CQ_SIDE_BUY, "21e38b38d598c81a06fa3f03759398d5"},
    {"ema_cross", "BTCUSDT", 1679004900000, CQ_SIDE_SELL, "7f51091871c1bc8b06c21c90ab9b5fb6"},
    {"rsi_reversion", "ETHUSDT", 1763683200000, CQ_SIDE_SELL, "c0c5ea810531045a94fcd06396222676"},
    {"test", "BTCUSDT", 1763683200123, CQ_SIDE_BUY, "f46d07da5a668ba61b8d184e9c1cfc76"},
    {"ema_cross", "BTCUSDT", -60000, CQ_SIDE_BUY, "5aae7d4359092c1702822acf85c12eb9"},
};

Test(signal_id, golden_ids_computed_outside_the_code)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(golden_ids); i++) {
        const struct golden_id *g = &golden_ids[i];
        struct cq_signal s;
        memset(&s, 0, sizeof(s));
        cr_assert_lt(cq_strlcpy(s.strategy, g->strategy, sizeof(s.strategy)), sizeof(s.strategy));
        cr_assert_lt(cq_strlcpy(s.symbol, g->symbol, sizeof(s.symbol)), sizeof(s.symbol));
        s.candle_open_ms = g->candle_open_ms;
        s.side = g->side;
        /* fields outside the definition do not move the id */
        s.strength = 0.75;
        s.created_at_us = 1763683200000000LL + (int64_t)i;
        cq_strlcpy(s.reason, "whatever the strategy says", sizeof(s.reason));
        cq_signal_make_id(&s);
        cr_expect_str_eq(s.id, g->id, "%s|%s|%lld|%s", g->strategy, g->symbol,
                         (long long)g->candle_open_ms, cq_side_name(g->side));
    }
}
