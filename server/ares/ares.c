/*
 * ares.c — ARES, the signal engine: closed candles in, signals out, never on
 * stale data.
 *
 * Runs on its own thread (struct cq_service) and sleeps on its doorbell
 * until there is work: the feeder's push rings it (market ring), so does the
 * trader's pop while signals wait for room (signal ring), a stop request,
 * or the next timer (health every HEALTH_EVERY_MS, the test signal); at
 * most SLEEP_MAX_MS. No fixed polling tick. Owned here:
 *   syms      per symbol: the strategy instance (CQ_STRATEGY with
 *             CQ_STRATEGY_PARAMS), when the feeder last sent anything for it,
 *             counters per outcome
 *   pending   signals waiting for room in the ring to the trader (bounded);
 *             while any wait, ARES stops reading the feeder's ring, so the
 *             pressure goes upstream instead of anything being dropped
 *
 * Every closed candle updates the symbol's strategy. Candles from the
 * warm-up history only warm the indicators: they never signal. When the
 * strategy signals, the HealthGate decides, in this order:
 *   symbol_quarantined  the journal refuses the symbol's scope
 *   feeder_missing      no market data for the symbol yet
 *   feeder_stale        the candle came from a backfill (late data; detail
 *                       "late_candle"), or the feeder is not ready
 *                       ("feeder_not_ready"), or the last market event for
 *                       the symbol is older than CQ_FEEDER_STALE_MS
 *                       ("data_older_than_stale_ms")
 *   warmup              the strategy's indicators are not warm yet
 * An open gate emits: journal signal.emitted, then the ring to the trader;
 * if the journal cannot take the record (it failed or paused), the signal is
 * blocked as journal_unavailable instead: nothing is acted on unjournaled.
 * A closed one blocks: journal signal.blocked with the reason and its detail
 * (blocked_reason, blocked_detail), counted per reason (health details and
 * /metrics), the symbol's last block kept in health details (last_blocked:
 * reason, detail), logged (rate-limited). The test
 * signal (TEST_ALLOW_DEFAULT_SIGNAL=on, paper and dryrun only, every
 * CQ_ARES_TEST_SIGNAL_MS on the first symbol) goes through the same gate;
 * since a strategy cannot signal before it is warm, the test signal is what
 * meets the warmup reason in practice.
 *
 * Readiness: the feeder is ready and every symbol's strategy is warm.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cq/ares.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/signal.h"
#include "cq/strategy.h"
#include "cq/text.h"
#include "cq/version.h"

#define HEALTH_EVERY_MS 250
/* The longest sleep with nothing to do, ms: keeps the heartbeat well under
 * the supervisor's watchdog (CQ_WATCHDOG_STALL_MS, 5000 by default). The
 * health timer is shorter today, so this only bounds a future change. */
#define SLEEP_MAX_MS 1000
#define PENDING_MAX 1024

enum gate {
    GATE_OPEN,
    GATE_SYMBOL_QUARANTINED,
    GATE_FEEDER_MISSING,
    GATE_FEEDER_STALE,
    GATE_WARMUP,
    GATE_JOURNAL_UNAVAILABLE, /* the signal could not be journaled: not acted on */
    GATE__COUNT
};

static const char *const gate_names[GATE__COUNT] = {
    [GATE_OPEN] = "open",
    [GATE_SYMBOL_QUARANTINED] = "symbol_quarantined",
    [GATE_FEEDER_MISSING] = "feeder_missing",
    [GATE_FEEDER_STALE] = "feeder_stale",
    [GATE_WARMUP] = "warmup",
    [GATE_JOURNAL_UNAVAILABLE] = "journal_unavailable",
};

struct sym_ares {
    const char *name;                    /* borrowed from cfg */
    struct cq_strategy *strategy;        /* owned */
    int64_t last_event_mono;             /* 0 = never */
    int64_t first_open_ms, last_open_ms; /* closed candles seen; -1 = none */
    cq_dec last_close;
    uint64_t candles, from_stream, from_backfill, from_warmup, out_of_order, missing_minutes;
    uint64_t books, trades;
    uint64_t emitted;
    uint64_t blocked[GATE__COUNT];
    enum gate last_blocked;          /* GATE_OPEN: none yet */
    const char *last_blocked_detail; /* static string */
    char last_signal_id[CQ_SIGNAL_ID_LEN + 1];
};

struct cq_ares {
    struct cq_config *cfg;         /* owned reference */
    struct cq_health_board *board; /* borrowed */
    struct cq_spsc *in;            /* borrowed; ARES is the consumer */
    struct cq_spsc *out;           /* borrowed; ARES is the producer; may be NULL */
    struct cq_journal *journal;    /* borrowed; may be NULL */
    const struct cq_clock *clock;  /* borrowed */
    struct cq_service *svc;        /* owned */
    struct cq_doorbell bell;       /* owned; rung by the feeder's push and the trader's pop */
    bool bell_ready;
    struct sym_ares syms[CQ_MAX_SYMBOLS];
    size_t n_syms;
    const struct cq_strategy_ops *ops;
    double params[CQ_STRATEGY_PARAMS_MAX];
    char params_text[160];
    _Atomic int64_t stale_ms; /* reloadable: supervisor writes, ARES reads */

    struct cq_signal *pending; /* owned ring, PENDING_MAX */
    size_t pending_head, pending_len;
    uint64_t journal_errors;

    bool test_signals; /* TEST_ALLOW_DEFAULT_SIGNAL in paper/dryrun */
    int64_t test_every_ms;
    int64_t next_test_mono;
    uint64_t test_count;

    int64_t last_health_ms;
    int64_t woke_mono_us; /* cq_time_mono_us() when this step began (a stage stamp) */
    struct cq_log_ratelimit blocked_rl;
};

/* ---- signal ids --------------------------------------------------------------- */

void cq_signal_make_id(struct cq_signal *s)
{
    /* Bounded: strategy (< 24) + symbol (< CQ_SYMBOL_LEN) + 20 digits + "SELL"
     * + 3 separators fit in 160; the static assert keeps it so. */
    char text[160];
    _Static_assert(sizeof(s->strategy) + sizeof(s->symbol) + 20 + 4 + 3 < sizeof(text),
                   "signal id text fits its buffer");
    unsigned char digest[32];
    unsigned int len = 0;
    int n = snprintf(text, sizeof(text), "%s|%s|%lld|%s", s->strategy, s->symbol,
                     (long long)s->candle_open_ms, cq_side_name(s->side));
    EVP_Digest(text, (size_t)(n > 0 ? n : 0), digest, &len, EVP_sha256(), NULL);
    _Static_assert(CQ_SIGNAL_ID_LEN / 2 <= sizeof(digest), "the id is a prefix of the digest");
    cq_text_hex_encode(digest, CQ_SIGNAL_ID_LEN / 2, s->id);
}

/* ---- journal ----------------------------------------------------------------- */

static json_t *signal_json(const struct cq_signal *s)
{
    char price[CQ_DEC_STR_MAX];
    return json_pack("{s:s,s:s,s:s,s:s,s:f,s:s,s:s,s:I,s:I,s:b}", "signal_id", s->id, "strategy",
                     s->strategy, "symbol", s->symbol, "side", cq_side_name(s->side), "strength",
                     s->strength, "reason", s->reason, "reference_price",
                     cq_dec_format(s->reference_price, price, sizeof(price)), "candle_open_ms",
                     (json_int_t)s->candle_open_ms, "created_at_us", (json_int_t)s->created_at_us,
                     "test", s->test);
}

/* 0, or a negative CQ_E* when a journal is configured and the record could
 * not be queued (FAILED, PAUSED, full, out of memory): the caller must not
 * act on it. Counted here; logged by the caller, which handles it (in its
 * signal_blocked line), not here as well. */
static int journal_record(struct cq_ares *a, uint16_t type, const char *scope, json_t *payload)
{
    if (a->journal == NULL) {
        json_decref(payload);
        return 0;
    }
    char *text = payload != NULL ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(payload);
    if (text == NULL) {
        a->journal_errors++;
        return -CQ_ENOMEM;
    }
    uint64_t seq = 0;
    int rc = cq_journal_append(a->journal, type, scope, text, strlen(text), &seq);
    free(text);
    if (rc < 0) {
        a->journal_errors++;
    }
    return rc;
}

/* ---- the gate ------------------------------------------------------------------- */

/* The gate for one candidate; *detail says which rule closed it (a static
 * snake_case string; "" when open). */
static enum gate check_gate(struct cq_ares *a, const struct sym_ares *s, int64_t now,
                            bool late_candle, bool need_warm, const char **detail)
{
    int64_t stale_ms = atomic_load_explicit(&a->stale_ms, memory_order_relaxed);
    *detail = "";
    if (a->journal != NULL && cq_journal_scope_quarantined(a->journal, s->name)) {
        *detail = "journal_quarantine";
        return GATE_SYMBOL_QUARANTINED;
    }
    if (s->last_event_mono == 0) {
        *detail = "no_market_data_yet";
        return GATE_FEEDER_MISSING;
    }
    if (late_candle) {
        *detail = "late_candle";
        return GATE_FEEDER_STALE;
    }
    if (!cq_health_is_ready(a->board, CQ_SVC_FEEDER)) {
        *detail = "feeder_not_ready";
        return GATE_FEEDER_STALE;
    }
    if (now - s->last_event_mono > stale_ms) {
        *detail = "data_older_than_stale_ms";
        return GATE_FEEDER_STALE;
    }
    if (need_warm && !cq_strategy_warm(s->strategy)) {
        *detail = "strategy_cold";
        return GATE_WARMUP;
    }
    return GATE_OPEN;
}

static bool pending_push(struct cq_ares *a, const struct cq_signal *sig)
{
    if (a->pending_len == PENDING_MAX) {
        return false;
    }
    a->pending[(a->pending_head + a->pending_len) % PENDING_MAX] = *sig;
    a->pending_len++;
    return true;
}

static void flush_signals(struct cq_ares *a)
{
    while (a->pending_len > 0 && a->out != NULL) {
        struct cq_signal *sig = &a->pending[a->pending_head];
        if (sig->frame_mono_us > 0) {
            sig->pushed_mono_us = cq_time_mono_us(); /* stage stamp */
        }
        if (!cq_spsc_push(a->out, sig)) {
            return;
        }
        a->pending_head = (a->pending_head + 1) % PENDING_MAX;
        a->pending_len--;
    }
}

/* Gate, then emit or block one candidate signal. */
static void decide(struct cq_ares *a, int idx, struct cq_signal *sig, enum gate g,
                   const char *detail)
{
    struct sym_ares *s = &a->syms[idx];
    cq_signal_make_id(sig);
    /* Journal before acting: a signal that cannot be journaled is not
     * passed on (the journal failed or paused: trading stops with it). */
    int jrc = 0; /* the journal's answer, for the signal_blocked line */
    if (g == GATE_OPEN &&
        (jrc = journal_record(a, CQ_REC_SIGNAL_EMITTED, s->name, signal_json(sig))) < 0) {
        g = GATE_JOURNAL_UNAVAILABLE;
        detail = "journal_refused_append";
    }
    if (g == GATE_OPEN) {
        if (!pending_push(a, sig)) {
            /* Unreachable: ARES stops reading candles while signals wait. */
            cq_log_error("ares", "signal_lost", json_pack("{s:s}", "signal_id", sig->id),
                         "signal queue full: a signal was lost");
            return;
        }
        flush_signals(a);
        s->emitted++;
        /* bounded: both are CQ_SIGNAL_ID_LEN + 1 */
        cq_strlcpy(s->last_signal_id, sig->id, sizeof(s->last_signal_id));
        cq_log_info("ares", "signal_emitted",
                    json_pack("{s:s,s:s,s:s,s:f,s:b}", "signal_id", sig->id, "symbol", s->name,
                              "side", cq_side_name(sig->side), "strength", sig->strength, "test",
                              sig->test),
                    "%s %s: %s", cq_side_name(sig->side), s->name, sig->reason);
        return;
    }
    s->blocked[g]++;
    s->last_blocked = g;
    s->last_blocked_detail = detail;
    json_t *payload = signal_json(sig);
    json_object_set_new(payload, "blocked_reason", json_string(gate_names[g]));
    json_object_set_new(payload, "blocked_detail", json_string(detail));
    int brc = journal_record(a, CQ_REC_SIGNAL_BLOCKED, s->name, payload);
    if (jrc == 0) {
        jrc = brc; /* the signal.blocked record itself was refused */
    }
    uint64_t suppressed = 0;
    if (cq_log_ratelimit_allow(&a->blocked_rl, cq_clock_mono_ms(a->clock), &suppressed)) {
        cq_log_warn("ares", "signal_blocked",
                    json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s*}", "signal_id", sig->id, "symbol",
                              s->name, "side", cq_side_name(sig->side), "reason", gate_names[g],
                              "detail", detail, "suppressed", (json_int_t)suppressed,
                              "journal_error", jrc < 0 ? cq_strerror(jrc) : NULL),
                    "%s %s blocked: %s (%s)", cq_side_name(sig->side), s->name, gate_names[g],
                    detail);
    }
}

static void fill_signal(struct cq_ares *a, int idx, struct cq_signal *out, enum cq_side side,
                        double strength, const char *reason, int64_t candle_open_ms, bool test)
{
    const struct sym_ares *s = &a->syms[idx];
    memset(out, 0, sizeof(*out));
    /* strategy and symbol are part of the signal id: bounded, their
     * lengths checked at cq_ares_new */
    cq_strlcpy(out->strategy, test ? "test" : a->ops->name, sizeof(out->strategy));
    cq_strlcpy(out->symbol, s->name, sizeof(out->symbol));
    out->symbol_idx = idx;
    out->side = side;
    out->strength = strength;
    /* the strategy's words for a person, not part of the id: a cut one
     * stays readable */
    cq_strlcpy(out->reason, reason, sizeof(out->reason));
    out->reference_price = s->last_close;
    out->candle_open_ms = candle_open_ms;
    out->created_at_us = cq_clock_wall_us(a->clock);
    out->test = test;
}

/* ---- market events ---------------------------------------------------------------- */

static void on_candle(struct cq_ares *a, int idx, const struct cq_market_event *ev, int64_t now)
{
    struct sym_ares *s = &a->syms[idx];
    const struct cq_candle *c = &ev->u.candle.candle;
    if (s->last_open_ms >= 0 && c->open_ms <= s->last_open_ms) {
        s->out_of_order++;
        return;
    }
    if (s->last_open_ms >= 0 && c->open_ms > s->last_open_ms + CQ_MS_PER_MINUTE) {
        s->missing_minutes += (uint64_t)((c->open_ms - s->last_open_ms) / CQ_MS_PER_MINUTE - 1);
    }
    if (s->first_open_ms < 0) {
        s->first_open_ms = c->open_ms;
    }
    s->last_open_ms = c->open_ms;
    s->last_close = c->close;
    s->candles++;
    s->from_stream += ev->u.candle.source == CQ_CANDLE_FROM_STREAM;
    s->from_backfill += ev->u.candle.source == CQ_CANDLE_FROM_BACKFILL;
    s->from_warmup += ev->u.candle.source == CQ_CANDLE_FROM_WARMUP;

    struct cq_ind_bar bar = {cq_dec_to_double(c->open), cq_dec_to_double(c->high),
                             cq_dec_to_double(c->low), cq_dec_to_double(c->close),
                             cq_dec_to_double(c->volume)};
    struct cq_strategy_signal ss;
    if (cq_strategy_on_closed_candle(s->strategy, &bar, &ss) != 1) {
        return;
    }
    if (ev->u.candle.source == CQ_CANDLE_FROM_WARMUP) {
        return; /* history warms the indicators; it never signals */
    }
    struct cq_signal sig;
    fill_signal(a, idx, &sig, ss.side, ss.strength, ss.reason, c->open_ms, false);
    sig.frame_mono_us = ev->frame_mono_us; /* tick-to-order starts at the closing frame */
    if (sig.frame_mono_us > 0) {           /* stage stamps (order_sent logs them) */
        sig.candle_pushed_mono_us = ev->pushed_mono_us;
        sig.ares_woke_mono_us = a->woke_mono_us;
        sig.decided_mono_us = cq_time_mono_us();
    }
    const char *detail = "";
    enum gate g =
        check_gate(a, s, now, ev->u.candle.source == CQ_CANDLE_FROM_BACKFILL, true, &detail);
    decide(a, idx, &sig, g, detail);
}

static void consume(struct cq_ares *a, const struct cq_market_event *ev, int64_t now)
{
    if (ev->symbol_idx < 0 || (size_t)ev->symbol_idx >= a->n_syms) {
        return;
    }
    struct sym_ares *s = &a->syms[ev->symbol_idx];
    /* Freshness follows the feeder's own receive time of the data. */
    if (ev->type != CQ_MARKET_CANDLE_CLOSED || ev->u.candle.source == CQ_CANDLE_FROM_STREAM) {
        if (ev->recv_mono_ms > s->last_event_mono) {
            s->last_event_mono = ev->recv_mono_ms;
        }
    }
    switch (ev->type) {
    case CQ_MARKET_CANDLE_CLOSED:
        on_candle(a, ev->symbol_idx, ev, now);
        break;
    case CQ_MARKET_BOOK:
        s->books++;
        break;
    case CQ_MARKET_TRADE:
        s->trades++;
        break;
    }
}

static void test_signal_tick(struct cq_ares *a, int64_t now)
{
    if (!a->test_signals || now < a->next_test_mono) {
        return;
    }
    a->next_test_mono = now + a->test_every_ms;
    enum cq_side side = (a->test_count++ % 2) == 0 ? CQ_SIDE_BUY : CQ_SIDE_SELL;
    struct cq_signal sig;
    /* The id must differ per test tick: the tick's wall time stands in for
     * the candle time. */
    fill_signal(a, 0, &sig, side, 0.0, "periodic test signal (TEST_ALLOW_DEFAULT_SIGNAL=on)",
                cq_clock_wall_us(a->clock) / 1000, true);
    const char *detail = "";
    enum gate g = check_gate(a, &a->syms[0], now, false, true, &detail);
    decide(a, 0, &sig, g, detail);
}

/* ---- health ------------------------------------------------------------------------ */

static void publish_health(struct cq_ares *a, int64_t now)
{
    json_t *symbols = json_object();
    json_t *blocked_total = json_object();
    uint64_t totals[GATE__COUNT] = {0};
    uint64_t emitted = 0;
    const char *cold = NULL;
    for (size_t i = 0; i < a->n_syms; i++) {
        const struct sym_ares *s = &a->syms[i];
        json_t *blocked = json_object();
        for (int g = 1; g < GATE__COUNT; g++) {
            json_object_set_new(blocked, gate_names[g], json_integer((json_int_t)s->blocked[g]));
            totals[g] += s->blocked[g];
        }
        emitted += s->emitted;
        bool warm = cq_strategy_warm(s->strategy);
        if (!warm && cold == NULL) {
            cold = s->name;
        }
        json_object_set_new(
            symbols, s->name,
            json_pack(
                "{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:s,s:o}", "warm", warm,
                "candles_closed", (json_int_t)s->candles, "first_open_ms",
                (json_int_t)s->first_open_ms, "last_open_ms", (json_int_t)s->last_open_ms,
                "from_stream", (json_int_t)s->from_stream, "from_backfill",
                (json_int_t)s->from_backfill, "from_warmup", (json_int_t)s->from_warmup,
                "out_of_order", (json_int_t)s->out_of_order, "missing_minutes",
                (json_int_t)s->missing_minutes, "books", (json_int_t)s->books, "trades",
                (json_int_t)s->trades, "signals_emitted", (json_int_t)s->emitted, "signals_blocked",
                blocked, "last_signal_id", s->last_signal_id, "data_age_ms",
                s->last_event_mono > 0 ? json_integer(now - s->last_event_mono) : json_null()));
        json_object_set_new(json_object_get(symbols, s->name), "last_blocked",
                            s->last_blocked == GATE_OPEN
                                ? json_null()
                                : json_pack("{s:s,s:s}", "reason", gate_names[s->last_blocked],
                                            "detail", s->last_blocked_detail));
    }
    for (int g = 1; g < GATE__COUNT; g++) {
        json_object_set_new(blocked_total, gate_names[g], json_integer((json_int_t)totals[g]));
    }
    bool feeder_ready = cq_health_is_ready(a->board, CQ_SVC_FEEDER);
    enum cq_health_status status = CQ_HEALTH_OK;
    bool ready = true;
    const char *reason = "";
    /* display text for /health; each fits CQ_HEALTH_DETAIL_MAX with names
     * and params of the bounded sizes above, and a cut one stays readable */
    char detail[CQ_HEALTH_DETAIL_MAX];
    if (a->pending_len > 0) {
        status = CQ_HEALTH_DEGRADED;
        ready = false;
        reason = "trader_backpressure";
        snprintf(detail, sizeof(detail), "%zu signal(s) wait for the trader; candles paused",
                 a->pending_len);
    } else if (!feeder_ready) {
        status = CQ_HEALTH_DEGRADED;
        ready = false;
        reason = "feeder_not_ready";
        snprintf(detail, sizeof(detail), "the feeder is not ready: no signal is emitted");
    } else if (cold != NULL) {
        status = CQ_HEALTH_STARTING;
        ready = false;
        reason = "warmup";
        snprintf(detail, sizeof(detail), "%s: %s needs %zu closed candles", cold, a->ops->name,
                 cq_strategy_warmup_bars(a->syms[0].strategy));
    } else {
        snprintf(detail, sizeof(detail), "%s(%s) on %zu symbol(s)", a->ops->name, a->params_text,
                 a->n_syms);
    }
    json_t *details = json_pack(
        "{s:s,s:s,s:I,s:o,s:o,s:I,s:I,s:b,s:{s:I,s:I,s:I}}", "strategy", a->ops->name, "params",
        a->params_text, "signals_emitted_total", (json_int_t)emitted, "signals_blocked_total",
        blocked_total, "symbols", symbols, "pending_signals", (json_int_t)a->pending_len,
        "journal_errors", (json_int_t)a->journal_errors, "test_signals", a->test_signals,
        "to_trader", "ring_size", (json_int_t)(a->out != NULL ? cq_spsc_size(a->out) : 0),
        "ring_capacity", (json_int_t)(a->out != NULL ? cq_spsc_capacity(a->out) : 0), "ring_full",
        (json_int_t)(a->out != NULL ? atomic_load(&a->out->full) : 0));
    struct cq_ares_metrics am = {.signals_emitted_total = emitted};
    for (int g = 1; g < GATE__COUNT && am.n_blocked < CQ_HEALTH_BLOCK_REASONS_MAX; g++) {
        am.blocked[am.n_blocked].reason = gate_names[g]; /* static storage */
        am.blocked[am.n_blocked].total = totals[g];
        am.n_blocked++;
    }
    cq_health_set_ares_metrics(a->board, &am); /* typed counters for /metrics */
    cq_health_publish(a->board, CQ_SVC_ARES, status, ready, reason, detail, details);
}

/* ---- the step ------------------------------------------------------------------- */

static int ares_step(void *ctx, int64_t now)
{
    struct cq_ares *a = ctx;
    struct cq_market_event ev;
    a->woke_mono_us = cq_time_mono_us();
    flush_signals(a);
    /* While signals wait for the trader, leave the candles in the feeder's
     * ring: backpressure travels upstream, nothing is dropped. */
    while (a->pending_len == 0 && cq_spsc_pop(a->in, &ev)) {
        consume(a, &ev, now);
    }
    test_signal_tick(a, now);
    /* The publishing cadence is operational, not logic: real time, so an
     * injected clock (tests, backtests) never silences the health record. */
    int64_t real_now = cq_time_mono_ms();
    if (real_now - a->last_health_ms >= HEALTH_EVERY_MS) {
        a->last_health_ms = real_now;
        publish_health(a, now);
    }
    return 0;
}

/* After arming the doorbell: candles to read (unless signals wait), or
 * room for the waiting signals. */
static bool ares_has_work(void *ctx)
{
    struct cq_ares *a = ctx;
    if (a->pending_len > 0) {
        return a->out != NULL && cq_spsc_has_room(a->out);
    }
    return cq_spsc_peek(a->in) != NULL;
}

/* The next timer: the health cadence (real time, as in ares_step) or the
 * test signal (the ARES clock, as in test_signal_tick). */
static int64_t ares_next_timer_ms(void *ctx, int64_t now)
{
    struct cq_ares *a = ctx;
    int64_t wait = a->last_health_ms + HEALTH_EVERY_MS - cq_time_mono_ms();
    if (a->test_signals && a->next_test_mono - now < wait) {
        wait = a->next_test_mono - now;
    }
    return wait < 0 ? 0 : wait;
}

static const struct cq_service_ops ares_ops = {
    .id = CQ_SVC_ARES,
    .tick_ms = SLEEP_MAX_MS, /* with the doorbell: the longest sleep */
    .step = ares_step,
    .on_stop = NULL,
    .has_work = ares_has_work,
    .next_timer_ms = ares_next_timer_ms,
};

/* ---- construction --------------------------------------------------------------- */

struct cq_ares *cq_ares_new(const struct cq_ares_options *o, struct cq_err *err)
{
    struct cq_ares *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating ARES");
        return NULL;
    }
    a->cfg = cq_config_ref(o->cfg);
    a->board = o->board;
    a->in = o->from_feeder;
    a->out = o->to_trader;
    a->journal = o->journal;
    a->clock = o->clock != NULL ? o->clock : cq_clock_system();
    a->blocked_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 10};
    atomic_init(&a->stale_ms, cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS));
    a->pending = calloc(PENDING_MAX, sizeof(*a->pending));
    if (a->pending == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating ARES");
        cq_ares_free(a);
        return NULL;
    }
    char why[160], hint[256];
    const char *name = cq_config_str(o->cfg, CQ_CFG_STRATEGY);
    if (cq_strategy_params_check(name, cq_config_str(o->cfg, CQ_CFG_STRATEGY_PARAMS), a->params,
                                 why, sizeof(why), hint, sizeof(hint)) < 0) {
        /* The config layer validated this already; a failure here is a bug. */
        cq_err_set(err, CQ_ECONFIG, 0, hint, "strategy %s: %s", name, why);
        cq_ares_free(a);
        return NULL;
    }
    a->ops = cq_strategy_find(name);
    const char *const *symbols = NULL;
    size_t n = cq_config_symbols(o->cfg, &symbols);
    if (n > CQ_MAX_SYMBOLS) {
        _Static_assert(CQ_MAX_SYMBOLS == 32, "update the hint text");
        cq_err_set(err, CQ_ECONFIG, 0, "list at most 32 symbols in CQ_SYMBOLS",
                   "ARES: %zu symbols, more than it can follow (%d)", n, CQ_MAX_SYMBOLS);
        cq_ares_free(a);
        return NULL;
    }
    a->n_syms = n;
    /* Names go into every signal's id: one cut to fit struct cq_signal
     * would give ids that change or collide. */
    struct cq_signal probe;
    for (size_t i = 0; i < n; i++) {
        if (strlen(symbols[i]) >= sizeof(probe.symbol) ||
            strlen(a->ops->name) >= sizeof(probe.strategy)) {
            cq_err_set(err, CQ_ECONFIG, 0, "use the exchange's symbol name",
                       "ARES: symbol '%.40s' or strategy '%s' is too long for a signal", symbols[i],
                       a->ops->name);
            cq_ares_free(a);
            return NULL;
        }
    }
    for (size_t i = 0; i < a->n_syms; i++) {
        struct sym_ares *s = &a->syms[i];
        s->name = symbols[i];
        s->first_open_ms = -1;
        s->last_open_ms = -1;
        s->strategy = cq_strategy_new(a->ops, a->params, err);
        if (s->strategy == NULL) {
            cq_ares_free(a);
            return NULL;
        }
    }
    cq_strategy_describe(a->syms[0].strategy, a->params_text, sizeof(a->params_text));
    enum cq_mode mode = cq_config_mode(o->cfg);
    a->test_signals = cq_config_onoff(o->cfg, CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL) &&
                      (mode == CQ_MODE_PAPER || mode == CQ_MODE_DRYRUN);
    a->test_every_ms = cq_config_int(o->cfg, CQ_CFG_ARES_TEST_SIGNAL_MS);
    a->next_test_mono = cq_clock_mono_ms(a->clock) + a->test_every_ms;
    a->last_health_ms = cq_time_mono_ms() - HEALTH_EVERY_MS;
    a->svc = cq_service_new(&ares_ops, a, a->board, a->clock, err);
    if (a->svc == NULL) {
        cq_ares_free(a);
        return NULL;
    }
    if (cq_doorbell_init(&a->bell, err) < 0) {
        cq_ares_free(a);
        return NULL;
    }
    a->bell_ready = true;
    /* ARES sleeps on one doorbell for both rings: the feeder's pushes and,
     * while signals wait for room, the trader's pops. */
    cq_spsc_set_consumer_bell(a->in, &a->bell);
    if (a->out != NULL) {
        cq_spsc_set_producer_bell(a->out, &a->bell);
    }
    cq_service_set_doorbell(a->svc, &a->bell);
    cq_version_log_banner(
        "ares", cq_mode_name(mode), cq_config_hash(o->cfg),
        json_pack("{s:s,s:s,s:I,s:I,s:b,s:I}", "strategy", a->ops->name, "params", a->params_text,
                  "warmup_bars", (json_int_t)cq_strategy_warmup_bars(a->syms[0].strategy),
                  "feeder_stale_ms", (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS),
                  "test_signals", a->test_signals, "test_signal_ms", (json_int_t)a->test_every_ms));
    return a;
}

void cq_ares_free(struct cq_ares *a)
{
    if (a == NULL) {
        return;
    }
    cq_service_free(a->svc);
    if (a->bell_ready) {
        cq_spsc_set_consumer_bell(a->in, NULL);
        if (a->out != NULL) {
            cq_spsc_set_producer_bell(a->out, NULL);
        }
        cq_doorbell_fini(&a->bell);
    }
    for (size_t i = 0; i < a->n_syms; i++) {
        cq_strategy_free(a->syms[i].strategy);
    }
    free(a->pending);
    cq_config_unref(a->cfg);
    free(a);
}

struct cq_service *cq_ares_service(struct cq_ares *a)
{
    return a->svc;
}

void cq_ares_reconfigure(struct cq_ares *a, const struct cq_config *cfg)
{
    atomic_store_explicit(&a->stale_ms, cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS),
                          memory_order_relaxed);
}
