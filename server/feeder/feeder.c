/*
 * feeder.c — the feeder service: market data in, market events out.
 *
 * Runs on its own thread (struct cq_service, tick 1 ms; each step services
 * the WebSocket loop until its next deadline (cq_feeder__wait_ms: the health
 * cadence, a symbol's staleness deadline, a retry; the WS clients' timers;
 * at most SERVICE_WAIT_MAX_MS), so the thread sleeps in poll(), not in the
 * frame, and an idle feeder wakes only when something is due). Everything
 * below is owned by that thread:
 *   loop     a struct cq_ws_loop with two clients: "market" (combined
 *            kline_1m/bookTicker/trade streams of every symbol) and "user"
 *            (the user data stream over the WebSocket API, cq/wsapi.h, when
 *            an API key and secret are set: subscribed with a signed
 *            userDataStream.subscribe.signature, resubscribed after any
 *            close, eventStreamTerminated or serverShutdown; every new
 *            subscription is passed to the trader as a userStreamGap event,
 *            so it reconciles over REST: the stream is never trusted to be
 *            gapless)
 *   syms     per-symbol market state: freshness per stream, the forming and
 *            the last closed candle, the book, the last trade id, counters
 *
 * No network call on that thread (ARCHITECTURE rule 8): every REST call
 * (exchangeInfo and warm-up, gap backfill)
 * runs on the feeder's REST worker, a second thread with its own
 * struct cq_rest_client (its own curl handle). The feeder hands it jobs
 * through a bounded SPSC ring (struct rest_job, REST_RING_SLOTS) and rings
 * its doorbell (a condition variable); the worker hands each answer back
 * through a second ring (struct rest_result, fixed size, which may point to
 * an owned array of parsed candles) and wakes the loop with
 * cq_ws_loop_wake (lws_cancel_service), so the result is taken within the
 * step. A 20 s REST answer (or the client's retries, ~48 s) therefore delays
 * only that job: market data, freshness and the heartbeat go on. At most one
 * job per kind is out (one start, one backfill per symbol), so the rings
 * never fill (REST_RING_SLOTS > CQ_MAX_SYMBOLS + 1); their
 * depths, the job running and for how long, and the counts show in the
 * health details ("rest_worker"). The worker runs one call at a time, in
 * order; the budget (Retry-After, ban, weight) is the client's and is read
 * from the feeder thread through its snapshot (cq_rest_client_budget).
 *   Why the feeder starts this thread (STYLE: the supervisor creates and
 * joins threads): it is a private helper of the feeder, not a service: it
 * has no health record, heartbeat or start stage of its own (the feeder
 * reports it), so it is created in cq_feeder_new and joined in
 * cq_feeder_free, both called by the supervisor on its own thread; the
 * feeder's on_stop asks it to stop. A call still running
 * REST_WORKER_STOP_WAIT_MS after the stop is not waited for: the thread is
 * detached and frees its own state when the call ends (it no longer touches
 * the feeder once the feeder has let go), so a slow exchange never holds up
 * the daemon's exit (rest_worker_abandoned is logged).
 *
 * Start: exchangeInfo (limits learned, symbols checked) and CQ_FEEDER_WARMUP_BARS
 * closed candles per symbol (one worker job) go to ARES first; only then does
 * the market stream connect, so ARES always sees candles in time order. A
 * REST failure at start is retried with backoff, never sooner than a
 * Retry-After in force (the stream waits).
 *
 * Closed candles come only from the exchange's x=true kline or from REST.
 * A closed kline whose open time is past the last closed one + 1 minute is a
 * gap: the missing bars are fetched over REST (startTime/endTime strictly
 * before the new bar, so every one of them is closed; one page of
 * BACKFILL_LIMIT bars per job, the next page asked for when one lands) and
 * queued before it; while the backfill is out, that closed kline and every
 * later one of the symbol are held (HELD_MAX) and go on, in order, once it
 * lands: nothing overtakes a gap;
 * a bar at or before the last closed one is a duplicate and dropped
 * (counted). Minutes the exchange itself never traded (a halt) stay a gap
 * (market_gap_unfilled). After a reconnect the next closed kline reveals
 * and fills whatever was missed. When the backfill itself is impossible for
 * now (REST rate limited, banned, failing), the closed candles after the gap
 * stay held and the backfill is retried after the exchange's Retry-After
 * (or BACKFILL_RETRY_MIN_MS): nothing overtakes a gap, nothing is dropped.
 * A backfill impossible for HELD_MAX minutes is given up (the oldest held
 * candle goes on, market_gap_unfilled; a job still out for it is ignored
 * when it lands, by generation).
 *
 * Queues and full policies (rings owned by the supervisor, see feeder.h):
 *   pending  closed candles waiting for room in to_ares, FIFO, bounded
 *            (PENDING_MAX_CANDLES). Above PENDING_PAUSE_CANDLES the feeder
 *            stops reading the market stream (real backpressure: nothing
 *            is dropped; the stream catches up by backfill when it resumes)
 *            and reports ares_backpressure.
 *   books    one coalescing slot per symbol (latest wins, counted).
 *   trades   pushed if there is room, else dropped and counted.
 *   user     user events wait in a bounded FIFO (USER_PENDING_MAX) for room
 *            in to_trader; beyond it they are dropped, counted and logged,
 *            and a userStreamGap event (reason "events_dropped") follows as
 *            soon as there is room: a loss is never silent to the trader.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/codec.h"
#include "cq/rest.h"
#include "cq/feeder.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/text.h"
#include "cq/version.h"
#include "cq/ws_client.h"
#include "cq/wsapi.h"
#include "feeder-int.h"

#define PENDING_MAX_CANDLES 65536   /* closed candles held for ARES */
#define PENDING_PAUSE_CANDLES 60000 /* held candles above which the stream is not read */
#define USER_PENDING_MAX 1024
#define HEALTH_EVERY_MS 250
#define SERVICE_WAIT_MAX_MS 1000 /* longest sleep with nothing due */
#define STALL_BEATS 4            /* heartbeats per CQ_WATCHDOG_STALL_MS, at least */
#define FLUSH_RETRY_MS 50        /* retry of a hand-off to a full ring (ARES, trader) */
#define BACKPRESSURE_WAIT_MS 20  /* sleep while ARES drains the held candles */
#define START_RETRY_MIN_MS 500
#define START_RETRY_MAX_MS 30000
#define BACKFILL_LIMIT 1000 /* bars per klines request */
#define HELD_MAX 1024       /* closed candles held per symbol while a backfill waits */
#define BACKFILL_RETRY_MIN_MS 500
#define REST_RING_SLOTS                                                                            \
    64                                /* jobs (and results) the REST rings hold; more than         \
                                       * the feeder ever has out: CQ_MAX_SYMBOLS + 1 */
#define REST_WORKER_STOP_WAIT_MS 2000 /* how long cq_feeder_free waits for a REST call to end */
#define USER_GAP_EVENT_MAX 256        /* bytes of a userStreamGap event we make */
#define INSANE_STALE_AFTER 3          /* bad messages in a row before the detail says so */

enum { STREAM_KLINE, STREAM_BOOK, STREAM_TRADE, STREAM__COUNT };
static const char *const stream_names[STREAM__COUNT] = {"kline_1m", "bookTicker", "trade"};

struct sym_state {
    char name[CQ_SYMBOL_LEN];
    int64_t last_msg_mono[STREAM__COUNT]; /* 0 = never */
    int64_t last_any_mono;
    struct cq_candle forming;
    bool has_forming;
    int64_t last_closed_open_ms; /* -1 = none yet */
    struct cq_book_top book;
    bool book_pending;
    uint64_t last_trade_id; /* 0 = none yet */
    /* Closed candles from the stream, in order, not yet passed on: they wait
     * here while the gap before the first one cannot be backfilled yet
     * (REST rate limited, banned or failing). */
    struct cq_candle *held; /* owned, HELD_MAX */
    size_t held_len;
    int64_t backfill_retry_at; /* mono ms; 0 = none pending */
    bool backfill_in_flight;   /* a backfill job is out on the REST worker */
    uint32_t backfill_gen;     /* bumped when a gap is given up (HELD_MAX) */
    int64_t gap_from_ms;       /* first missing open time of the gap being
                                * filled (0 = none): pages add up to it */
    int64_t gap_got;           /* bars backfilled into that gap so far */
    int64_t gap_pass_open_ms;  /* the held candle at this open time may pass
                                * its gap: the exchange has nothing more */
    /* counters */
    uint64_t candles_closed, candles_backfilled, candles_warmup, duplicates, gaps, gaps_unfilled,
        trade_gaps, books_coalesced, trades_dropped, messages;
    /* Messages that decoded but broke a sanity rule (cq_msg_check): dropped,
     * counted, and they never refresh the symbol's freshness, so a symbol
     * fed only insane data goes stale (feeder_stale) like a silent one. */
    uint64_t insane;           /* total */
    uint64_t insane_in_row;    /* since the last sane message */
    const char *insane_reason; /* static string; NULL = none yet */
};

enum start_phase {
    PHASE_START,    /* exchangeInfo + warm-up not done yet */
    PHASE_STREAMING /* market stream started */
};

struct rest_worker;

struct cq_feeder {
    int64_t frame_mono_us; /* cq_time_mono_us() of the market frame being applied (tick-to-order) */
    struct cq_config *cfg; /* owned reference */
    struct cq_health_board *board;     /* borrowed */
    const struct cq_clock *clock;      /* borrowed */
    struct cq_service *svc;            /* owned */
    char *rest_url, *ws_url, *api_key; /* owned copies (no secret: the feeder signs nothing) */
    struct cq_spsc *to_ares;           /* borrowed */
    struct cq_spsc *to_trader;         /* borrowed, may be NULL */

    /* Reloadable threshold: written by the supervisor, read here. */
    _Atomic int64_t stale_ms;
    _Atomic int64_t watch_stall_ms; /* CQ_WATCHDOG_STALL_MS: the sleep stays well under it */

    struct rest_worker *worker; /* owned: the REST thread, its curl handle, its rings */
    bool start_in_flight;       /* the start job is out on the worker */
    uint64_t rest_jobs_submitted, rest_jobs_refused;
    struct cq_ws_loop *loop;     /* owned */
    struct cq_ws_client *market; /* owned by loop */
    struct cq_wsapi *user;       /* owned; its ws client is on loop; NULL without a key */
    bool market_connected;
    int64_t market_down_since; /* mono ms of the last disconnect; 0 = never connected */

    struct sym_state syms[CQ_MAX_SYMBOLS];
    size_t n_syms;

    enum start_phase phase;
    int64_t start_retry_at; /* mono ms */
    int64_t start_backoff_ms;
    char start_problem[CQ_HEALTH_DETAIL_MAX];

    /* closed candles waiting for room in to_ares (FIFO ring of indexes) */
    struct cq_market_event *pending;
    size_t pending_head, pending_len;
    bool backpressure;

    struct cq_user_event *user_pending;
    size_t user_head, user_len;
    uint64_t user_events, user_dropped, user_gaps;
    bool user_gap_owed; /* events were dropped: a gap event is due */

    uint64_t malformed_total, unknown_symbol_total, control_total, insane_total;
    int64_t last_health_mono;
    struct cq_log_ratelimit malformed_rl, gap_rl, trade_gap_rl, user_drop_rl, insane_rl;
};

static int64_t now_mono(const struct cq_feeder *f)
{
    return cq_clock_mono_ms(f->clock);
}

static int sym_index(const struct cq_feeder *f, const char *name)
{
    for (size_t i = 0; i < f->n_syms; i++) {
        if (strcmp(f->syms[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ---- queues toward ARES and the trader ---------------------------------------- */

static bool pending_push(struct cq_feeder *f, const struct cq_market_event *ev)
{
    if (f->pending_len == PENDING_MAX_CANDLES) {
        return false;
    }
    f->pending[(f->pending_head + f->pending_len) % PENDING_MAX_CANDLES] = *ev;
    f->pending_len++;
    return true;
}

/* Queue a closed candle for ARES (order preserved). */
static void emit_candle(struct cq_feeder *f, int idx, const struct cq_candle *c,
                        enum cq_candle_source source)
{
    struct sym_state *s = &f->syms[idx];
    struct cq_market_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CQ_MARKET_CANDLE_CLOSED;
    ev.symbol_idx = idx;
    ev.recv_mono_ms = now_mono(f);
    ev.u.candle.candle = *c;
    ev.u.candle.candle.closed = true;
    ev.u.candle.source = source;
    ev.frame_mono_us = source == CQ_CANDLE_FROM_STREAM ? f->frame_mono_us : 0;
    ev.pushed_mono_us = ev.frame_mono_us > 0 ? cq_time_mono_us() : 0; /* stage stamp */
    /* Straight into the ring when nothing is held before it (order kept). */
    bool passed = f->pending_len == 0 && cq_spsc_push(f->to_ares, &ev);
    if (!passed && !pending_push(f, &ev)) {
        /* Unreachable while the stream pauses above PENDING_PAUSE_CANDLES; if it
         * happens the candle is lost: say so loudly. */
        cq_log_error("feeder", "candle_dropped",
                     json_pack("{s:s,s:I}", "symbol", s->name, "open_ms", (json_int_t)c->open_ms),
                     "pending queue for ARES is full: a closed candle was dropped");
        return;
    }
    s->last_closed_open_ms = c->open_ms;
    switch (source) {
    case CQ_CANDLE_FROM_STREAM:
        s->candles_closed++;
        break;
    case CQ_CANDLE_FROM_BACKFILL:
        s->candles_backfilled++;
        break;
    case CQ_CANDLE_FROM_WARMUP:
        s->candles_warmup++;
        break;
    }
}

static void flush_to_ares(struct cq_feeder *f)
{
    while (f->pending_len > 0) {
        if (!cq_spsc_push(f->to_ares, &f->pending[f->pending_head])) {
            return; /* ARES is behind: keep them, books wait too */
        }
        f->pending_head = (f->pending_head + 1) % PENDING_MAX_CANDLES;
        f->pending_len--;
    }
    for (size_t i = 0; i < f->n_syms; i++) {
        struct sym_state *s = &f->syms[i];
        if (!s->book_pending) {
            continue;
        }
        struct cq_market_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = CQ_MARKET_BOOK;
        ev.symbol_idx = (int)i;
        ev.recv_mono_ms = s->last_msg_mono[STREAM_BOOK];
        ev.u.book = s->book;
        if (!cq_spsc_push(f->to_ares, &ev)) {
            return;
        }
        s->book_pending = false;
    }
}

static void flush_to_trader(struct cq_feeder *f)
{
    while (f->user_len > 0 && f->to_trader != NULL) {
        if (!cq_spsc_push(f->to_trader, &f->user_pending[f->user_head])) {
            return;
        }
        f->user_head = (f->user_head + 1) % USER_PENDING_MAX;
        f->user_len--;
    }
}

/* ---- sanity ------------------------------------------------------------------ */

/* A value for symbol idx decoded but broke a sanity rule (cq_msg_check /
 * cq_market_check_candle): drop it, count it, say so (rate-limited). It does
 * not refresh the symbol: a symbol fed only such data goes stale. */
static void drop_insane(struct cq_feeder *f, int idx, const char *source, const char *kind,
                        const char *reason, int64_t now)
{
    struct sym_state *s = &f->syms[idx];
    uint64_t suppressed = 0;
    f->malformed_total++;
    f->insane_total++;
    s->insane++;
    s->insane_in_row++;
    s->insane_reason = reason;
    if (cq_log_ratelimit_allow(&f->insane_rl, now, &suppressed)) {
        cq_log_warn("feeder", "message_malformed",
                    json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "symbol", s->name, "source", source,
                              "kind", kind, "reason", reason, "in_a_row",
                              (json_int_t)s->insane_in_row, "suppressed", (json_int_t)suppressed),
                    "%s: dropped a %s %s that breaks a sanity rule (%s)", s->name, source, kind,
                    reason);
    }
}

/* ---- REST: exchangeInfo, klines --------------------------------------------- */

static bool parse_dec_field(const json_t *v, cq_dec *out)
{
    const char *s = json_string_value(v);
    return s != NULL && cq_dec_parse(s, (size_t)-1, out) == 0;
}

/* A REST kline row [openTime, o, h, l, c, v, closeTime, qv, n, …]. */
static bool parse_kline_row(const json_t *row, struct cq_candle *c)
{
    if (!json_is_array(row) || json_array_size(row) < 9 ||
        !json_is_integer(json_array_get(row, 0)) || !json_is_integer(json_array_get(row, 6)) ||
        !json_is_integer(json_array_get(row, 8))) {
        return false;
    }
    memset(c, 0, sizeof(*c));
    c->open_ms = json_integer_value(json_array_get(row, 0));
    c->close_ms = json_integer_value(json_array_get(row, 6));
    c->trades = (uint32_t)json_integer_value(json_array_get(row, 8));
    c->closed = true;
    return parse_dec_field(json_array_get(row, 1), &c->open) &&
           parse_dec_field(json_array_get(row, 2), &c->high) &&
           parse_dec_field(json_array_get(row, 3), &c->low) &&
           parse_dec_field(json_array_get(row, 4), &c->close) &&
           parse_dec_field(json_array_get(row, 5), &c->volume) &&
           parse_dec_field(json_array_get(row, 7), &c->quote_volume);
}

/* ---- the REST worker (see the design comment at the top) ------------------------- */

enum rest_job_kind {
    JOB_NONE,
    JOB_START,    /* exchangeInfo (limits learned, symbols checked) + warm-up klines */
    JOB_BACKFILL, /* one page of klines for one symbol's gap */
    JOB__COUNT
};
static const char *const job_names[JOB__COUNT] = {"none", "start", "backfill"};

/* A job, copied into the ring (fixed size). */
struct rest_job {
    enum rest_job_kind kind;
    int idx;             /* BACKFILL: the symbol */
    uint32_t gen;        /* BACKFILL: the symbol's backfill generation when asked */
    int64_t from_ms;     /* BACKFILL: first missing open time */
    int64_t to_ms;       /* BACKFILL: last ms before the held candle */
    int64_t warmup_bars; /* START */
};

struct fetched_candle {
    int idx;
    struct cq_candle c;
};

/* A result, copied into the ring (fixed size); the candles it points to
 * belong to whoever holds the message (the worker until the push, the feeder
 * after the pop, which frees them). */
struct rest_result {
    enum rest_job_kind kind;
    int idx;
    uint32_t gen;
    int64_t from_ms, to_ms;
    int rc;                         /* 0: answered as hoped; < 0: failed, problem says why */
    const char *what;               /* static: the failing status or error name */
    int code;                       /* the exchange's error code, 0 if none */
    int64_t server_wait_ms;         /* a Retry-After or ban in force when it failed */
    struct fetched_candle *candles; /* owned (see above); NULL when none */
    size_t n_candles;
    uint64_t malformed; /* rows that did not parse (dropped) */
    bool more;          /* BACKFILL: a full page: more bars may follow */
    char problem[CQ_HEALTH_DETAIL_MAX];
};

struct rest_worker {
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;         /* guards stop, done, abandoned, wake; with cond, the doorbell */
    pthread_cond_t cond;          /* jobs pushed, stop asked, thread done, room in results */
    bool stop;                    /* the feeder asks the thread to end after the job it runs */
    bool done;                    /* the thread has left its loop */
    bool abandoned;               /* the feeder is gone: the thread frees this struct itself */
    struct cq_ws_loop *wake;      /* rung after each result; NULL once the feeder let go */
    struct cq_spsc jobs;          /* struct rest_job: feeder (producer) -> worker */
    struct cq_spsc results;       /* struct rest_result: worker (producer) -> feeder */
    struct cq_rest_client *rest;  /* the worker's own curl handle; budget read by any thread */
    char (*names)[CQ_SYMBOL_LEN]; /* a copy of the symbols (immutable) */
    size_t n_syms;
    /* Health only: what the worker is doing. Relaxed: each value stands
     * alone, nothing is published through it. */
    _Atomic int busy_kind;         /* enum rest_job_kind; JOB_NONE when idle */
    _Atomic int64_t busy_since_ms; /* mono ms the running job started */
    _Atomic uint64_t jobs_done, jobs_failed;
};

static int64_t rest_server_wait(struct cq_rest_client *rest)
{
    struct cq_rest_budget b;
    cq_rest_client_budget(rest, &b);
    return b.rate_limited_for_ms > b.banned_for_ms ? b.rate_limited_for_ms : b.banned_for_ms;
}

static bool result_add(struct rest_result *res, size_t *cap, int idx, const struct cq_candle *c)
{
    if (res->n_candles == *cap) {
        size_t ncap = *cap == 0 ? 256 : *cap * 2;
        struct fetched_candle *p = realloc(res->candles, ncap * sizeof(*p));
        if (p == NULL) {
            return false;
        }
        res->candles = p;
        *cap = ncap;
    }
    res->candles[res->n_candles].idx = idx;
    res->candles[res->n_candles].c = *c;
    res->n_candles++;
    return true;
}

static void result_fail(struct rest_worker *w, struct rest_result *res, int rc)
{
    free(res->candles);
    res->candles = NULL;
    res->n_candles = 0;
    res->rc = rc;
    res->server_wait_ms = rest_server_wait(w->rest);
}

/* GET klines for one symbol on the worker; rows (new reference) or res
 * filled with the problem. */
static int worker_klines(struct rest_worker *w, int idx, int64_t start_ms, int64_t end_ms,
                         unsigned limit, json_t **rows, struct rest_result *res)
{
    struct cq_rest_params p;
    struct cq_rest_response r;
    memset(&r, 0, sizeof(r));
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", w->names[idx]);
    cq_rest_params_add(&p, "interval", "1m");
    if (start_ms > 0) {
        cq_rest_params_add_int(&p, "startTime", start_ms);
    }
    if (end_ms > 0) {
        cq_rest_params_add_int(&p, "endTime", end_ms);
    }
    cq_rest_params_add_int(&p, "limit", limit);
    int rc = cq_rest_call(w->rest, "GET", "/api/v3/klines", &p, CQ_SEC_NONE, 2, &r);
    if (rc < 0 || r.status != CQ_REST_OK || !json_is_array(r.body)) {
        res->what = rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status);
        res->code = r.code;
        /* At most 7 + 20 + 2 + 64 + 12 + 121 bytes: fits problem's 256. */
        snprintf(res->problem, sizeof(res->problem), "klines %s: %.64s %d %.120s", w->names[idx],
                 res->what, r.code, r.msg);
        cq_rest_response_fini(&r);
        result_fail(w, res, -CQ_EVENUE);
        return -CQ_EVENUE;
    }
    *rows = json_incref(r.body);
    cq_rest_response_fini(&r);
    return 0;
}

/* Parse rows[0 .. n) of symbol idx into res; rows outside [from_ms, to_ms]
 * (when to_ms > 0) are skipped. false when out of memory. */
static bool worker_take_rows(struct rest_result *res, size_t *cap, int idx, const json_t *rows,
                             size_t n, int64_t from_ms, int64_t to_ms)
{
    for (size_t i = 0; i < n; i++) {
        struct cq_candle c;
        if (!parse_kline_row(json_array_get(rows, i), &c)) {
            res->malformed++;
            continue;
        }
        if (to_ms > 0 && (c.open_ms < from_ms || c.open_ms > to_ms)) {
            continue;
        }
        if (!result_add(res, cap, idx, &c)) {
            return false;
        }
    }
    return true;
}

static void job_start(struct rest_worker *w, const struct rest_job *job, struct rest_result *res)
{
    struct cq_rest_response r;
    memset(&r, 0, sizeof(r));
    int rc = cq_rest_call(w->rest, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, &r);
    if (rc < 0 || r.status != CQ_REST_OK) {
        res->what = rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status);
        /* At most 14 + 64 + 12 + 121 bytes < CQ_HEALTH_DETAIL_MAX (256). */
        snprintf(res->problem, sizeof(res->problem), "exchangeInfo: %.64s %d %.120s", res->what,
                 r.code, r.msg);
        cq_rest_response_fini(&r);
        result_fail(w, res, -CQ_EVENUE);
        return;
    }
    cq_rest_client_learn_limits(w->rest, r.body);
    json_t *symbols = json_object_get(r.body, "symbols");
    for (size_t i = 0; i < w->n_syms; i++) {
        bool found = false;
        size_t k;
        json_t *s;
        json_array_foreach(symbols, k, s)
        {
            const char *name = json_string_value(json_object_get(s, "symbol"));
            if (name != NULL && strcmp(name, w->names[i]) == 0) {
                found = true;
                break;
            }
        }
        if (!found) {
            snprintf(res->problem, sizeof(res->problem), /* name <= 20: fits */
                     "symbol %s is not listed by the exchange; fix CQ_SYMBOLS", w->names[i]);
            cq_rest_response_fini(&r);
            res->rc = -CQ_ENOTFOUND;
            return;
        }
    }
    cq_rest_response_fini(&r);
    /* History for ARES: the newest N closed bars of each symbol (the newest
     * row the exchange returns is the forming bar: dropped). */
    size_t cap = 0;
    for (size_t i = 0; i < w->n_syms && job->warmup_bars > 0; i++) {
        json_t *rows = NULL;
        if (worker_klines(w, (int)i, 0, 0, (unsigned)job->warmup_bars + 1, &rows, res) < 0) {
            return;
        }
        size_t n = json_array_size(rows);
        if (n > (size_t)job->warmup_bars + 1) {
            n = (size_t)job->warmup_bars + 1; /* never more than asked for */
        }
        bool fit = n == 0 || worker_take_rows(res, &cap, (int)i, rows, n - 1, 0, 0);
        json_decref(rows);
        if (!fit) {
            snprintf(res->problem, sizeof(res->problem), "warm-up: out of memory");
            result_fail(w, res, -CQ_ENOMEM);
            return;
        }
    }
}

static void job_backfill(struct rest_worker *w, const struct rest_job *job, struct rest_result *res)
{
    json_t *rows = NULL;
    if (worker_klines(w, job->idx, job->from_ms, job->to_ms, BACKFILL_LIMIT, &rows, res) < 0) {
        return;
    }
    size_t n = json_array_size(rows);
    res->more = n >= BACKFILL_LIMIT;
    size_t cap = 0;
    bool fit = worker_take_rows(res, &cap, job->idx, rows, n < BACKFILL_LIMIT ? n : BACKFILL_LIMIT,
                                job->from_ms, job->to_ms);
    json_decref(rows);
    if (!fit) {
        snprintf(res->problem, sizeof(res->problem), "backfill: out of memory");
        result_fail(w, res, -CQ_ENOMEM);
    }
}

static void rest_worker_destroy(struct rest_worker *w);

static void *rest_worker_main(void *arg)
{
    struct rest_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->stop && cq_spsc_size(&w->jobs) == 0) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        struct rest_job job;
        if (stop) {
            break;
        }
        if (!cq_spsc_pop(&w->jobs, &job)) {
            continue;
        }
        struct rest_result res;
        memset(&res, 0, sizeof(res));
        res.kind = job.kind;
        res.idx = job.idx;
        res.gen = job.gen;
        res.from_ms = job.from_ms;
        res.to_ms = job.to_ms;
        atomic_store_explicit(&w->busy_since_ms, cq_clock_mono_ms(cq_clock_system()),
                              memory_order_relaxed);
        atomic_store_explicit(&w->busy_kind, (int)job.kind, memory_order_relaxed);
        switch (job.kind) {
        case JOB_START:
            job_start(w, &job, &res);
            break;
        case JOB_BACKFILL:
            job_backfill(w, &job, &res);
            break;
        default:
            res.rc = -CQ_EINVAL;
            break;
        }
        atomic_store_explicit(&w->busy_kind, JOB_NONE, memory_order_relaxed);
        atomic_fetch_add_explicit(res.rc < 0 ? &w->jobs_failed : &w->jobs_done, 1,
                                  memory_order_relaxed);
        /* Every job gives one result and the feeder never has more than
         * REST_RING_SLOTS jobs out (one per symbol, one start), so there
         * is room; wait for it all the same (never drop a result: the
         * feeder would wait for it forever). */
        bool pushed = cq_spsc_push(&w->results, &res);
        pthread_mutex_lock(&w->lock);
        while (!pushed && !w->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts); /* cond runs on CLOCK_MONOTONIC */
            ts.tv_nsec += 10 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            pushed = cq_spsc_push(&w->results, &res);
        }
        if (!pushed) {
            free(res.candles);
        } else if (w->wake != NULL) {
            cq_ws_loop_wake(w->wake); /* the feeder's loop returns and takes it */
        }
        pthread_mutex_unlock(&w->lock);
    }
    pthread_mutex_lock(&w->lock);
    w->done = true;
    bool abandoned = w->abandoned;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (abandoned) {
        rest_worker_destroy(w);
    }
    return NULL;
}

static void rest_worker_destroy(struct rest_worker *w)
{
    struct rest_result res;
    while (cq_spsc_pop(&w->results, &res)) {
        free(res.candles);
    }
    cq_spsc_fini(&w->jobs);
    cq_spsc_fini(&w->results);
    cq_rest_client_free(w->rest);
    free(w->names);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Feeder thread: hand a job to the worker and ring its doorbell. false when
 * the ring is full (cannot happen while REST_RING_SLOTS > the jobs the
 * feeder keeps out; the caller retries later all the same). */
static bool rest_submit(struct cq_feeder *f, const struct rest_job *job)
{
    struct rest_worker *w = f->worker;
    if (!cq_spsc_push(&w->jobs, job)) {
        f->rest_jobs_refused++;
        return false;
    }
    f->rest_jobs_submitted++;
    pthread_mutex_lock(&w->lock);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return true;
}

/* ---- gaps and backfill (feeder thread) ------------------------------------------ */

/* Pass on the held closed candles of one symbol, in order. A gap before the
 * next one asks the worker for the missing bars (one job per symbol at a
 * time) and stops there: the candles after a gap never overtake it; they go
 * on when the backfill lands (on_backfill_result) or is given up on. */
static void drain_held(struct cq_feeder *f, int idx, int64_t now)
{
    struct sym_state *s = &f->syms[idx];
    size_t done = 0;
    while (done < s->held_len) {
        const struct cq_candle *c = &s->held[done];
        if (s->last_closed_open_ms >= 0 && c->open_ms <= s->last_closed_open_ms) {
            s->duplicates++;
            done++;
            continue;
        }
        if (s->last_closed_open_ms >= 0 && c->open_ms > s->last_closed_open_ms + CQ_MS_PER_MINUTE &&
            c->open_ms != s->gap_pass_open_ms) {
            if (!s->backfill_in_flight &&
                (s->backfill_retry_at == 0 || now >= s->backfill_retry_at)) {
                struct rest_job job;
                memset(&job, 0, sizeof(job));
                job.kind = JOB_BACKFILL;
                job.idx = idx;
                job.gen = s->backfill_gen;
                job.from_ms = s->last_closed_open_ms + CQ_MS_PER_MINUTE;
                job.to_ms = c->open_ms - 1;
                if (s->gap_from_ms == 0) {
                    s->gap_from_ms = job.from_ms;
                    s->gap_got = 0;
                }
                if (rest_submit(f, &job)) {
                    s->backfill_in_flight = true;
                    s->backfill_retry_at = 0;
                } else {
                    s->backfill_retry_at = now + BACKFILL_RETRY_MIN_MS;
                }
            }
            break;
        }
        emit_candle(f, idx, c, CQ_CANDLE_FROM_STREAM);
        done++;
    }
    if (done > 0) {
        memmove(s->held, s->held + done, (s->held_len - done) * sizeof(*s->held));
        s->held_len -= done;
    }
    if (s->held_len == 0) {
        s->backfill_retry_at = 0;
    }
}

/* A backfill page landed (feeder thread). Queue its bars, then either ask
 * for the next page or, the range served, let the held candles go on (a
 * shortfall is a gap the exchange cannot fill: market_gap_unfilled). */
static void on_backfill_result(struct cq_feeder *f, const struct rest_result *res, int64_t now)
{
    struct sym_state *s = &f->syms[res->idx];
    s->backfill_in_flight = false;
    if (res->gen != s->backfill_gen) {
        /* Given up on while it ran (HELD_MAX): its bars are all older than
         * what has been passed on since. */
        drain_held(f, res->idx, now);
        return;
    }
    if (res->rc < 0) {
        /* Not now (rate limited, banned, network): hold on, retry after the
         * exchange's wait or a short pause. */
        cq_log_warn("feeder", "backfill_failed",
                    json_pack("{s:s,s:I,s:I,s:s}", "symbol", s->name, "from_ms",
                              (json_int_t)res->from_ms, "to_ms", (json_int_t)res->to_ms, "error",
                              res->problem),
                    "backfill of %s failed: %s", s->name, res->problem);
        s->backfill_retry_at =
            now + (res->server_wait_ms > BACKFILL_RETRY_MIN_MS ? res->server_wait_ms
                                                               : BACKFILL_RETRY_MIN_MS);
        return;
    }
    f->malformed_total += res->malformed;
    int got = 0;
    for (size_t i = 0; i < res->n_candles; i++) {
        const struct cq_candle *c = &res->candles[i].c;
        const char *why = cq_market_check_candle(c);
        if (why != NULL) {
            drop_insane(f, res->idx, "backfill", "kline", why, now);
            continue;
        }
        if (c->open_ms <= s->last_closed_open_ms || c->open_ms > res->to_ms) {
            continue;
        }
        emit_candle(f, res->idx, c, CQ_CANDLE_FROM_BACKFILL);
        got++;
    }
    s->gap_got += got;
    if (!res->more || got == 0) {
        /* The gap before the held candle at to_ms + 1 is as full as the
         * exchange can make it. */
        int64_t from = s->gap_from_ms != 0 ? s->gap_from_ms : res->from_ms;
        int64_t missing = (res->to_ms + 1 - from) / CQ_MS_PER_MINUTE;
        s->gaps++;
        if (s->gap_got < missing) {
            s->gaps_unfilled++;
        }
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&f->gap_rl, now, &suppressed)) {
            cq_log_warn("feeder", s->gap_got < missing ? "market_gap_unfilled" : "market_gap",
                        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "symbol", s->name, "from_ms",
                                  (json_int_t)from, "to_ms", (json_int_t)res->to_ms, "missing_bars",
                                  (json_int_t)missing, "backfilled", (json_int_t)s->gap_got,
                                  "suppressed", (json_int_t)suppressed),
                        "%s: %lld closed bar(s) missing before %lld; %lld backfilled", s->name,
                        (long long)missing, (long long)(res->to_ms + 1), (long long)s->gap_got);
        }
        s->gap_pass_open_ms = res->to_ms + 1;
        s->gap_from_ms = 0;
        s->gap_got = 0;
    }
    s->backfill_retry_at = 0;
    drain_held(f, res->idx, now);
}

static void on_closed_kline(struct cq_feeder *f, int idx, const struct cq_candle *c)
{
    struct sym_state *s = &f->syms[idx];
    s->has_forming = false;
    if (s->held_len == HELD_MAX) {
        /* A backfill has been impossible for HELD_MAX minutes: let the
         * oldest held candle through with its gap unfilled rather than hold
         * the stream forever (logged as market_gap_unfilled). A backfill
         * still running for it is ignored when it lands (generation). */
        s->backfill_retry_at = 0;
        s->backfill_gen++;
        s->gap_from_ms = 0;
        s->gap_got = 0;
        int64_t keep = s->last_closed_open_ms;
        s->last_closed_open_ms = s->held[0].open_ms - CQ_MS_PER_MINUTE;
        s->gaps++;
        s->gaps_unfilled++;
        cq_log_error("feeder", "market_gap_unfilled",
                     json_pack("{s:s,s:I,s:I}", "symbol", s->name, "from_ms",
                               (json_int_t)(keep + CQ_MS_PER_MINUTE), "to_ms",
                               (json_int_t)(s->held[0].open_ms - 1)),
                     "%s: backfill impossible for too long; passing on with a gap", s->name);
        drain_held(f, idx, now_mono(f));
    }
    s->held[s->held_len++] = *c;
    drain_held(f, idx, now_mono(f));
}

/* ---- stream messages ---------------------------------------------------------------- */

static void on_market_message(void *ctx, const char *data, size_t len, int64_t recv_mono_ms)
{
    struct cq_feeder *f = ctx;
    struct cq_msg m;
    size_t off = 0;
    f->frame_mono_us = cq_time_mono_us(); /* before decoding: tick-to-order starts here */
    if (cq_codec_decode(data, len, &m, &off) < 0) {
        uint64_t suppressed = 0;
        f->malformed_total++;
        if (cq_log_ratelimit_allow(&f->malformed_rl, recv_mono_ms, &suppressed)) {
            cq_log_warn("feeder", "message_malformed",
                        json_pack("{s:I,s:s%,s:I}", "offset", (json_int_t)off, "head", data,
                                  len < 120 ? len : (size_t)120, "suppressed",
                                  (json_int_t)suppressed),
                        "dropped a malformed market message (byte %zu)", off);
        }
        return;
    }
    cq_feeder__apply(f, &m, recv_mono_ms);
    f->frame_mono_us = 0; /* a candle released later (after a backfill) has no frame stamp */
}

void cq_feeder__apply(struct cq_feeder *f, const struct cq_msg *msg, int64_t recv_mono_ms)
{
    if (msg->kind == CQ_MSG_CONTROL || msg->kind == CQ_MSG_EVENT_OTHER) {
        f->control_total++;
        return;
    }
    int idx = sym_index(f, msg->symbol);
    if (idx < 0) {
        f->unknown_symbol_total++;
        return;
    }
    struct sym_state *s = &f->syms[idx];
    const char *why = cq_msg_check(msg);
    if (why != NULL) {
        drop_insane(f, idx, "stream", cq_msg_kind_name(msg->kind), why, recv_mono_ms);
        return;
    }
    s->insane_in_row = 0;
    s->messages++;
    s->last_any_mono = recv_mono_ms;
    switch (msg->kind) {
    case CQ_MSG_TRADE:
    case CQ_MSG_AGG_TRADE: {
        s->last_msg_mono[STREAM_TRADE] = recv_mono_ms;
        if (msg->kind == CQ_MSG_TRADE && s->last_trade_id != 0 &&
            msg->u.trade.trade_id != s->last_trade_id + 1) {
            uint64_t suppressed = 0;
            s->trade_gaps++;
            if (cq_log_ratelimit_allow(&f->trade_gap_rl, recv_mono_ms, &suppressed)) {
                cq_log_info("feeder", "trade_id_gap",
                            json_pack("{s:s,s:I,s:I,s:I}", "symbol", s->name, "expected",
                                      (json_int_t)(s->last_trade_id + 1), "got",
                                      (json_int_t)msg->u.trade.trade_id, "suppressed",
                                      (json_int_t)suppressed),
                            "%s: trade ids jumped", s->name);
            }
        }
        if (msg->kind == CQ_MSG_TRADE) {
            s->last_trade_id = msg->u.trade.trade_id;
        }
        struct cq_market_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = CQ_MARKET_TRADE;
        ev.symbol_idx = idx;
        ev.recv_mono_ms = recv_mono_ms;
        ev.u.trade = msg->u.trade;
        /* Trades never jump the queue of held candles (time order). */
        if (f->pending_len > 0 || !cq_spsc_push(f->to_ares, &ev)) {
            s->trades_dropped++;
        }
        break;
    }
    case CQ_MSG_BOOK_TICKER:
        s->last_msg_mono[STREAM_BOOK] = recv_mono_ms;
        if (s->book_pending) {
            s->books_coalesced++;
        }
        s->book = msg->u.book;
        s->book_pending = true;
        break;
    case CQ_MSG_KLINE:
        s->last_msg_mono[STREAM_KLINE] = recv_mono_ms;
        if (strcmp(msg->u.kline.interval, "1m") != 0) {
            break;
        }
        if (msg->u.kline.candle.closed) {
            on_closed_kline(f, idx, &msg->u.kline.candle);
        } else {
            s->forming = msg->u.kline.candle;
            s->has_forming = true;
        }
        break;
    default:
        break;
    }
}

static void publish_health(struct cq_feeder *f, int64_t now);

static void on_market_state(void *ctx, enum cq_ws_state state, const char *reason)
{
    struct cq_feeder *f = ctx;
    bool was = f->market_connected;
    f->market_connected = state == CQ_WS_CONNECTED;
    if (was && !f->market_connected) {
        f->market_down_since = now_mono(f);
    }
    /* Publish now, from inside the callback: a reconnect can follow within
     * the same loop step, and readiness must still flip (and be logged). */
    int64_t now = now_mono(f);
    publish_health(f, now);
    f->last_health_mono = now;
    (void)reason; /* the client logs ws_connected / ws_disconnected itself */
}

/* One user data event into the FIFO for the trader; false when it had to
 * be dropped (too big, or the FIFO is full: counted, logged, and a gap
 * event is owed). */
static bool user_enqueue(struct cq_feeder *f, const char *data, size_t len, int64_t recv_mono_ms)
{
    if (len >= CQ_USER_EVENT_MAX || f->user_len == USER_PENDING_MAX) {
        uint64_t suppressed = 0;
        f->user_dropped++;
        f->user_gap_owed = true;
        if (cq_log_ratelimit_allow(&f->user_drop_rl, recv_mono_ms, &suppressed)) {
            cq_log_error("feeder", "user_event_dropped",
                         json_pack("{s:I,s:b,s:I}", "bytes", (json_int_t)len, "queue_full",
                                   f->user_len == USER_PENDING_MAX, "suppressed",
                                   (json_int_t)suppressed),
                         "a user data stream event was dropped; the trader must reconcile");
        }
        return false;
    }
    struct cq_user_event *ev = &f->user_pending[(f->user_head + f->user_len) % USER_PENDING_MAX];
    ev->recv_mono_ms = recv_mono_ms;
    ev->len = (uint32_t)len;
    memcpy(ev->json, data, len);
    ev->json[len] = '\0';
    f->user_len++;
    return true;
}

/* The "user stream gap" event the trader gets (our own, not Binance's):
 * {"e":"userStreamGap","E":wall ms,"reason":"…","gaps":n}. Whatever
 * happened before it may be missing from the stream: reconcile over REST. */
static void user_gap(struct cq_feeder *f, const char *reason, int64_t mono_ms)
{
    char json[USER_GAP_EVENT_MAX];
    f->user_gaps++;
    /* reason is one of ours or the ws client's codes (< 64 bytes): fits;
     * checked all the same, a cut event would not parse. */
    int n = snprintf(json, sizeof(json),
                     "{\"e\":\"userStreamGap\",\"E\":%lld,\"reason\":\"%.64s\",\"gaps\":%llu}",
                     (long long)(cq_clock_wall_us(f->clock) / 1000), reason,
                     (unsigned long long)f->user_gaps);
    if (n < 0 || (size_t)n >= sizeof(json)) {
        return;
    }
    if (user_enqueue(f, json, (size_t)n, mono_ms)) {
        f->user_gap_owed = false; /* this one covers the earlier loss too */
    }
}

static void on_user_event(void *ctx, const char *json, size_t len, int64_t recv_mono_ms)
{
    struct cq_feeder *f = ctx;
    f->user_events++;
    (void)user_enqueue(f, json, len, recv_mono_ms);
}

static void on_user_gap(void *ctx, const char *reason, uint64_t gaps, int64_t mono_ms)
{
    struct cq_feeder *f = ctx;
    (void)gaps; /* the wsapi client's count; ours also counts dropped events */
    user_gap(f, reason, mono_ms);
}

/* ---- start-up ------------------------------------------------------------------ */

/* The start job landed (feeder thread): warm-up candles to ARES first, then
 * the market stream; or, on failure, a retry with backoff (never sooner
 * than a Retry-After the exchange asked for). */
static int start_market_stream(struct cq_feeder *f);

static void on_start_result(struct cq_feeder *f, const struct rest_result *res, int64_t now)
{
    f->start_in_flight = false;
    int rc = res->rc;
    if (rc == 0) {
        f->malformed_total += res->malformed;
        for (size_t k = 0; k < res->n_candles; k++) {
            int i = res->candles[k].idx;
            const struct cq_candle *c = &res->candles[k].c;
            const char *why = cq_market_check_candle(c);
            if (why != NULL) {
                drop_insane(f, i, "warmup", "kline", why, now);
                continue;
            }
            if (c->open_ms > f->syms[i].last_closed_open_ms) {
                emit_candle(f, i, c, CQ_CANDLE_FROM_WARMUP);
            }
        }
        int64_t bars = cq_config_int(f->cfg, CQ_CFG_FEEDER_WARMUP_BARS);
        if (bars > 0) {
            cq_log_info("feeder", "warmup_done",
                        json_pack("{s:I,s:I}", "symbols", (json_int_t)f->n_syms, "bars_per_symbol",
                                  (json_int_t)bars),
                        "warm-up history queued for ARES");
        }
        rc = start_market_stream(f); /* sets start_problem on failure */
    } else {
        /* Same size as start_problem: never cut. */
        (void)cq_strlcpy(f->start_problem, res->problem, sizeof(f->start_problem));
    }
    if (rc == 0) {
        f->phase = PHASE_STREAMING;
        if (f->user != NULL && cq_wsapi_start(f->user) < 0) {
            cq_log_error("feeder", "user_stream_failed", NULL,
                         "cannot start the user data stream client");
        }
        return;
    }
    f->start_backoff_ms = f->start_backoff_ms == 0 ? START_RETRY_MIN_MS : f->start_backoff_ms * 2;
    if (f->start_backoff_ms > START_RETRY_MAX_MS) {
        f->start_backoff_ms = START_RETRY_MAX_MS;
    }
    int64_t wait =
        res->server_wait_ms > f->start_backoff_ms ? res->server_wait_ms : f->start_backoff_ms;
    f->start_retry_at = now + wait;
    cq_log_warn(
        "feeder", "start_retry",
        json_pack("{s:s,s:I}", "problem", f->start_problem, "retry_in_ms", (json_int_t)wait),
        "feeder start-up failed: %s", f->start_problem);
}

int cq_feeder__stream_url(const struct cq_feeder *f, char *url, size_t url_len)
{
    int n = snprintf(url, url_len, "%s/stream?streams=", f->ws_url);
    size_t used = n < 0 ? url_len : (size_t)n;
    for (size_t i = 0; i < f->n_syms && used < url_len; i++) {
        char lower[CQ_SYMBOL_LEN];
        size_t k = 0;
        /* names are shorter than CQ_SYMBOL_LEN (checked in cq_feeder_new) */
        for (; f->syms[i].name[k] != '\0'; k++) {
            char c = f->syms[i].name[k];
            lower[k] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        lower[k] = '\0';
        n = snprintf(url + used, url_len - used, "%s%s@kline_1m/%s@bookTicker/%s@trade",
                     i > 0 ? "/" : "", lower, lower, lower);
        used = n < 0 ? url_len : used + (size_t)n;
    }
    return used < url_len ? 0 : -CQ_ETOOBIG; /* never a cut URL (a symbol would be lost) */
}

static int start_market_stream(struct cq_feeder *f)
{
    char url[4096];
    if (cq_feeder__stream_url(f, url, sizeof(url)) < 0) {
        snprintf(f->start_problem, sizeof(f->start_problem),
                 "the market stream URL for %zu symbols is longer than %zu bytes; list fewer "
                 "symbols or use a shorter CQ_EXCHANGE_WS_URL",
                 f->n_syms, sizeof(url) - 1);
        return -CQ_ETOOBIG;
    }
    struct cq_ws_client_options wo = {
        .url = url,
        .name = "market",
        .connect_timeout_ms = cq_config_int(f->cfg, CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS),
        .stall_ms = cq_config_int(f->cfg, CQ_CFG_FEEDER_WS_STALL_MS),
        .backoff_base_ms = 250,
        .backoff_max_ms = cq_config_int(f->cfg, CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS),
        .clock = f->clock,
    };
    struct cq_ws_callbacks cb = {on_market_message, on_market_state, f};
    struct cq_err err;
    f->market = cq_ws_client_new(f->loop, &wo, &cb, &err);
    if (f->market == NULL) {
        snprintf(f->start_problem, sizeof(f->start_problem), "market stream: %.200s", /* < 256 */
                 err.message);
        return -err.code;
    }
    return cq_ws_client_start(f->market);
}

/* Take every result the worker has handed back (feeder thread). */
static void take_rest_results(struct cq_feeder *f, int64_t now)
{
    struct rest_result res;
    while (cq_spsc_pop(&f->worker->results, &res)) {
        switch (res.kind) {
        case JOB_START:
            on_start_result(f, &res, now);
            break;
        case JOB_BACKFILL:
            on_backfill_result(f, &res, now);
            break;
        default:
            break;
        }
        free(res.candles);
    }
}

/* The REST worker's queues and what it is doing, for health details. */
static json_t *rest_worker_json(const struct cq_feeder *f)
{
    struct rest_worker *w = f->worker;
    int kind = atomic_load_explicit(&w->busy_kind, memory_order_relaxed);
    int64_t since = atomic_load_explicit(&w->busy_since_ms, memory_order_relaxed);
    int64_t busy_ms = kind != JOB_NONE ? cq_clock_mono_ms(cq_clock_system()) - since : 0;
    size_t backfills = 0;
    for (size_t i = 0; i < f->n_syms; i++) {
        backfills += f->syms[i].backfill_in_flight ? 1 : 0;
    }
    return json_pack(
        "{s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "running",
        kind > JOB_NONE && kind < JOB__COUNT ? job_names[kind] : NULL, "running_for_ms",
        (json_int_t)(busy_ms > 0 ? busy_ms : 0), "jobs_queued", (json_int_t)cq_spsc_size(&w->jobs),
        "jobs_high_water", (json_int_t)atomic_load(&w->jobs.high_water), "results_queued",
        (json_int_t)cq_spsc_size(&w->results), "ring_capacity",
        (json_int_t)cq_spsc_capacity(&w->jobs), "jobs_submitted",
        (json_int_t)f->rest_jobs_submitted, "jobs_refused", (json_int_t)f->rest_jobs_refused,
        "jobs_done", (json_int_t)atomic_load_explicit(&w->jobs_done, memory_order_relaxed),
        "jobs_failed", (json_int_t)atomic_load_explicit(&w->jobs_failed, memory_order_relaxed),
        "backfills_in_flight", (json_int_t)backfills, "start_in_flight", f->start_in_flight);
}

/* ---- health ------------------------------------------------------------------------ */

static void publish_health(struct cq_feeder *f, int64_t now)
{
    int64_t stale_ms = atomic_load_explicit(&f->stale_ms, memory_order_relaxed);
    struct cq_rest_budget budget;
    cq_rest_client_budget(f->worker->rest, &budget); /* any thread (its own lock) */
    json_t *symbols = json_object();
    const struct sym_state *stale_symbol = NULL;
    bool stale_never = false; /* the stale symbol has had no message at all */
    int64_t oldest_fresh_mono = now;
    for (size_t i = 0; i < f->n_syms; i++) {
        struct sym_state *s = &f->syms[i];
        int64_t age = s->last_any_mono > 0 ? now - s->last_any_mono : -1;
        if ((age < 0 || age > stale_ms) && stale_symbol == NULL) {
            stale_symbol = s;
            stale_never = age < 0;
        }
        if (s->last_any_mono > 0 && s->last_any_mono < oldest_fresh_mono) {
            oldest_fresh_mono = s->last_any_mono;
        }
        json_t *fresh = json_object();
        for (int k = 0; k < STREAM__COUNT; k++) {
            json_object_set_new(fresh, stream_names[k],
                                s->last_msg_mono[k] > 0 ? json_integer(now - s->last_msg_mono[k])
                                                        : json_null());
        }
        json_object_set_new(
            symbols, s->name,
            json_pack("{s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}",
                      "freshness_ms", age >= 0 ? json_integer(age) : json_null(), "streams", fresh,
                      "last_closed_open_ms", (json_int_t)s->last_closed_open_ms, "candles_closed",
                      (json_int_t)s->candles_closed, "candles_backfilled",
                      (json_int_t)s->candles_backfilled, "candles_warmup",
                      (json_int_t)s->candles_warmup, "gaps", (json_int_t)s->gaps, "gaps_unfilled",
                      (json_int_t)s->gaps_unfilled, "duplicates", (json_int_t)s->duplicates,
                      "trade_gaps", (json_int_t)s->trade_gaps, "books_coalesced",
                      (json_int_t)s->books_coalesced, "trades_dropped",
                      (json_int_t)s->trades_dropped, "held_for_backfill", (json_int_t)s->held_len,
                      "insane", (json_int_t)s->insane, "insane_in_a_row",
                      (json_int_t)s->insane_in_row, "last_insane_reason", s->insane_reason));
    }
    enum cq_health_status status = CQ_HEALTH_OK;
    bool ready = true;
    const char *reason = "";
    /* Every detail below is bounded by its format: fixed text, numbers, a
     * symbol (<= CQ_SYMBOL_MAX_CHARS), a reason, or a problem string that is
     * itself shorter than CQ_HEALTH_DETAIL_MAX with the text around it. */
    char detail[CQ_HEALTH_DETAIL_MAX];
    detail[0] = '\0';
    struct cq_wsapi_stats us;
    memset(&us, 0, sizeof(us));
    if (f->user != NULL) {
        cq_wsapi_stats(f->user, &us);
    }
    if (f->phase == PHASE_START) {
        status = CQ_HEALTH_STARTING;
        ready = false;
        reason = "warming_up";
        snprintf(detail, sizeof(detail), "%s", /* same size as start_problem */
                 f->start_problem[0] ? f->start_problem : "fetching exchangeInfo and history");
    } else if (budget.banned_for_ms > 0) {
        status = CQ_HEALTH_DOWN;
        ready = false;
        reason = "banned";
        snprintf(detail, sizeof(detail), "the exchange banned this IP for %lld ms more",
                 (long long)budget.banned_for_ms);
    } else if (!f->market_connected) {
        status = f->market_down_since == 0 ? CQ_HEALTH_STARTING : CQ_HEALTH_DEGRADED;
        ready = false;
        reason = f->market_down_since == 0 ? "ws_connecting" : "ws_disconnected";
        snprintf(detail, sizeof(detail), "market stream %s",
                 f->market_down_since == 0 ? "connecting" : "disconnected; reconnecting");
    } else if (f->backpressure) {
        status = CQ_HEALTH_DEGRADED;
        ready = false;
        reason = "ares_backpressure";
        snprintf(detail, sizeof(detail), "%zu closed candles wait for ARES; stream paused",
                 f->pending_len);
    } else if (stale_symbol != NULL) {
        status = CQ_HEALTH_DEGRADED;
        ready = false;
        reason = "feeder_stale";
        if (stale_symbol->insane_in_row >= INSANE_STALE_AFTER) {
            snprintf(detail, sizeof(detail),
                     "%s: the last %llu market messages broke sanity rules (%s); no valid data "
                     "for over %lld ms",
                     stale_symbol->name, (unsigned long long)stale_symbol->insane_in_row,
                     stale_symbol->insane_reason, (long long)stale_ms);
        } else if (stale_never) {
            snprintf(detail, sizeof(detail), "%s has had no market data yet", stale_symbol->name);
        } else {
            snprintf(detail, sizeof(detail), "%s has had no market data for over %lld ms",
                     stale_symbol->name, (long long)stale_ms);
        }
    } else if (f->user != NULL && us.state != CQ_WSAPI_SUBSCRIBED && us.problem[0] != '\0') {
        /* Market data is fine (still ready), but the trader gets no order
         * updates until the exchange accepts the subscription. */
        status = CQ_HEALTH_DEGRADED;
        reason = "user_stream_failed";
        snprintf(detail, sizeof(detail),
                 "user data subscription refused (%s): %u failure(s), next try in %lld ms",
                 us.problem, us.retry_failures, (long long)us.retry_in_ms);
    } else if (budget.rate_limited_for_ms > 0) {
        status = CQ_HEALTH_DEGRADED;
        reason = "rate_limited";
        snprintf(detail, sizeof(detail), "REST rate limited for %lld ms more (data still fresh)",
                 (long long)budget.rate_limited_for_ms);
    } else {
        snprintf(detail, sizeof(detail), "%zu symbol(s) fresh within %lld ms", f->n_syms,
                 (long long)stale_ms);
    }
    struct cq_ws_client_stats ms;
    memset(&ms, 0, sizeof(ms));
    if (f->market != NULL) {
        cq_ws_client_stats(f->market, &ms);
    }
    json_t *details =
        json_pack("{s:I,s:o,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:I}", "stale_ms",
                  (json_int_t)stale_ms, "symbols", symbols, "rest", cq_rest_budget_json(&budget),
                  "market_stream", cq_ws_client_stats_json(&ms), "to_ares", "pending_candles",
                  (json_int_t)f->pending_len, "ring_size", (json_int_t)cq_spsc_size(f->to_ares),
                  "ring_capacity", (json_int_t)cq_spsc_capacity(f->to_ares), "ring_full",
                  (json_int_t)atomic_load(&f->to_ares->full), "ring_high_water",
                  (json_int_t)atomic_load(&f->to_ares->high_water), "malformed_total",
                  (json_int_t)f->malformed_total, "insane_total", (json_int_t)f->insane_total,
                  "unknown_symbol_total", (json_int_t)f->unknown_symbol_total);
    json_object_set_new(details, "rest_worker", rest_worker_json(f));
    /* The user data stream: its subscription state and reason, counters,
     * the WS API request weight, and the connection's own stats. */
    json_t *user = f->user != NULL ? cq_wsapi_stats_json(&us) : json_object();
    if (user != NULL) {
        json_object_set_new(user, "enabled", json_boolean(f->user != NULL));
        json_object_set_new(user, "connected",
                            json_boolean(f->user != NULL && us.state != CQ_WSAPI_IDLE &&
                                         us.state != CQ_WSAPI_CONNECTING));
        json_object_set_new(user, "events", json_integer((json_int_t)f->user_events));
        json_object_set_new(user, "dropped", json_integer((json_int_t)f->user_dropped));
        json_object_set_new(user, "gap_events", json_integer((json_int_t)f->user_gaps));
        if (f->user != NULL) {
            struct cq_ws_client_stats uws;
            cq_ws_client_stats(cq_wsapi_ws(f->user), &uws);
            json_object_set_new(user, "connection", cq_ws_client_stats_json(&uws));
        }
        json_object_set_new(details, "user_stream", user);
    }
    struct cq_feeder_metrics fm = {
        .malformed_total = f->malformed_total,
        .unknown_symbol_total = f->unknown_symbol_total,
        .to_ares_ring_full_total = (uint64_t)atomic_load(&f->to_ares->full),
        .user_events_total = f->user_events,
        .user_events_dropped_total = f->user_dropped,
        .rest_used_weight_1m = budget.used_weight_1m,
        .rest_weight_limit_1m = budget.weight_limit_1m,
        .rest_rate_limited_total = budget.rate_limited_total,
        .rest_banned_total = budget.banned_total,
        .rest_throttled_total = budget.throttled_total,
    };
    for (size_t i = 0; i < f->n_syms; i++) {
        const struct sym_state *s = &f->syms[i];
        fm.messages_total += s->messages;
        fm.candles_closed_total += s->candles_closed;
        fm.candles_backfilled_total += s->candles_backfilled;
        fm.gaps_total += s->gaps;
        fm.duplicate_candles_total += s->duplicates;
        fm.books_coalesced_total += s->books_coalesced;
        fm.trades_dropped_total += s->trades_dropped;
    }
    cq_health_set_feeder_metrics(f->board, &fm); /* typed counters for /metrics */
    if (f->phase == PHASE_STREAMING && f->n_syms > 0) {
        /* freshness_ms in the record: the oldest symbol's age. */
        cq_health_set_fresh(f->board, CQ_SVC_FEEDER, oldest_fresh_mono);
    }
    cq_health_publish(f->board, CQ_SVC_FEEDER, status, ready, reason, detail, details);
}

/* ---- the step ------------------------------------------------------------------ */

/* A symbol whose staleness deadline (age > stale_ms) passed after the last
 * health publish: its record is due now, not at the next cadence. */
static bool stale_crossed(const struct cq_feeder *f, int64_t now)
{
    int64_t stale_ms = atomic_load_explicit(&f->stale_ms, memory_order_relaxed);
    for (size_t i = 0; i < f->n_syms; i++) {
        const struct sym_state *s = &f->syms[i];
        int64_t deadline = s->last_any_mono + stale_ms + 1;
        if (s->last_any_mono > 0 && deadline > f->last_health_mono && deadline <= now) {
            return true;
        }
    }
    return false;
}

static int64_t min_due(int64_t a, int64_t b)
{
    return b < a ? b : a;
}

int64_t cq_feeder__wait_ms(const struct cq_feeder *f, int64_t now)
{
    int64_t due = SERVICE_WAIT_MAX_MS;
    /* The frame heartbeats once per step: beat STALL_BEATS times per stall
     * limit, as the doorbell services do (service.c). */
    due =
        min_due(due, atomic_load_explicit(&f->watch_stall_ms, memory_order_relaxed) / STALL_BEATS);
    due = min_due(due, f->last_health_mono + HEALTH_EVERY_MS - now);
    if (f->phase == PHASE_START) {
        if (!f->start_in_flight) {
            due = min_due(due, f->start_retry_at - now);
        }
        return due > 0 ? due : 0; /* the start result rings the loop (cq_ws_loop_wake) */
    }
    int64_t stale_ms = atomic_load_explicit(&f->stale_ms, memory_order_relaxed);
    for (size_t i = 0; i < f->n_syms; i++) {
        const struct sym_state *s = &f->syms[i];
        int64_t deadline = s->last_any_mono + stale_ms + 1;
        if (s->last_any_mono > 0 && deadline > f->last_health_mono) {
            due = min_due(due, deadline - now);
        }
        if (s->held_len > 0 && !s->backfill_in_flight) {
            due = min_due(due, s->backfill_retry_at - now); /* 0 = at once */
        }
        if (s->book_pending) {
            due = min_due(due, FLUSH_RETRY_MS); /* the ring to ARES was full */
        }
    }
    if (f->pending_len > 0 || f->user_len > 0) {
        due = min_due(due, FLUSH_RETRY_MS); /* a ring was full: retry the hand-off */
    }
    if (f->user_gap_owed) {
        due = min_due(due, FLUSH_RETRY_MS);
    }
    if (f->user != NULL) {
        due = min_due(due, cq_wsapi_due_in_ms(f->user, now));
    }
    return due > 0 ? due : 0;
}

static int feeder_step(void *ctx, int64_t now)
{
    struct cq_feeder *f = ctx;
    if (f->phase == PHASE_START && !f->start_in_flight && now >= f->start_retry_at) {
        /* exchangeInfo and the warm-up run on the REST worker; the result
         * comes back through take_rest_results (on_start_result). */
        struct rest_job job;
        memset(&job, 0, sizeof(job));
        job.kind = JOB_START;
        job.warmup_bars = cq_config_int(f->cfg, CQ_CFG_FEEDER_WARMUP_BARS);
        f->start_in_flight = rest_submit(f, &job);
        if (!f->start_in_flight) {
            f->start_retry_at = now + START_RETRY_MIN_MS;
        }
    }
    f->backpressure = f->pending_len > PENDING_PAUSE_CANDLES;
    if (!f->backpressure) {
        /* Sleep until the next deadline (cq_feeder__wait_ms; the WS clients'
         * own timers are folded in by cq_ws_loop_service), a socket event or
         * a REST result (the worker rings the loop). Before streaming no
         * client is started: the loop only waits. */
        int64_t wait = cq_feeder__wait_ms(f, now);
        cq_ws_loop_service(f->loop, wait > 0 ? (int)wait : 0);
    } else {
        struct timespec ts = {0, BACKPRESSURE_WAIT_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    now = now_mono(f);
    take_rest_results(f, now); /* the worker rang the loop's doorbell for them */
    if (f->phase == PHASE_STREAMING) {
        for (size_t i = 0; i < f->n_syms; i++) {
            if (f->syms[i].held_len > 0) {
                drain_held(f, (int)i, now);
            }
        }
        if (f->user != NULL) {
            cq_wsapi_tick(f->user, now);
        }
    }
    flush_to_ares(f);
    flush_to_trader(f);
    if (f->user_gap_owed && f->user_len < USER_PENDING_MAX) {
        user_gap(f, "events_dropped", now);
        flush_to_trader(f);
    }
    if (now - f->last_health_mono >= HEALTH_EVERY_MS || stale_crossed(f, now)) {
        publish_health(f, now);
        f->last_health_mono = now;
    }
    return 0;
}

static void feeder_on_stop(void *ctx)
{
    struct cq_feeder *f = ctx;
    /* No new REST call after this; the one running ends on its own (it is
     * bounded by the client's timeouts) and cq_feeder_free waits for it. */
    pthread_mutex_lock(&f->worker->lock);
    f->worker->stop = true;
    pthread_cond_broadcast(&f->worker->cond);
    pthread_mutex_unlock(&f->worker->lock);
    if (f->market != NULL) {
        cq_ws_client_stop(f->market);
    }
    if (f->user != NULL) {
        cq_wsapi_stop(f->user);
    }
}

static const struct cq_service_ops feeder_ops = {
    .id = CQ_SVC_FEEDER,
    .tick_ms = 1,
    .step = feeder_step,
    .on_stop = feeder_on_stop,
};

/* ---- construction ---------------------------------------------------------------- */

/* The worker's state and its rest client; the thread starts later
 * (rest_worker_start), once nothing else in cq_feeder_new can fail. */
static struct rest_worker *rest_worker_new(struct cq_feeder *f, const struct cq_rest_options *ro,
                                           struct cq_err *err)
{
    struct rest_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder's REST worker");
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int ce = pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (ce != 0 || pthread_mutex_init(&w->lock, NULL) != 0) {
        if (ce == 0) {
            pthread_cond_destroy(&w->cond);
        }
        free(w);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "feeder REST worker: mutex init failed");
        return NULL;
    }
    w->wake = f->loop;
    atomic_init(&w->busy_kind, JOB_NONE);
    atomic_init(&w->busy_since_ms, 0);
    atomic_init(&w->jobs_done, 0);
    atomic_init(&w->jobs_failed, 0);
    w->n_syms = f->n_syms;
    w->names = calloc(f->n_syms > 0 ? f->n_syms : 1, sizeof(*w->names));
    if (w->names == NULL || cq_spsc_init(&w->jobs, REST_RING_SLOTS, sizeof(struct rest_job)) < 0 ||
        cq_spsc_init(&w->results, REST_RING_SLOTS, sizeof(struct rest_result)) < 0) {
        rest_worker_destroy(w);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder's REST worker");
        return NULL;
    }
    for (size_t i = 0; i < f->n_syms; i++) {
        memcpy(w->names[i], f->syms[i].name, sizeof(w->names[i])); /* same size */
    }
    w->rest = cq_rest_client_new(ro, err);
    if (w->rest == NULL) {
        rest_worker_destroy(w);
        return NULL;
    }
    return w;
}

static int rest_worker_start(struct rest_worker *w, struct cq_err *err)
{
    int e = pthread_create(&w->thread, NULL, rest_worker_main, w);
    if (e != 0) {
        return cq_err_set(err, CQ_EIO, e, "check the process's thread limit (ulimit -u)",
                          "cannot start the feeder's REST worker thread");
    }
    w->thread_started = true;
    return 0;
}

/* Stop the worker and free it. A REST call still running after
 * REST_WORKER_STOP_WAIT_MS is not waited for: the thread is detached and
 * frees its own state when the call ends (it no longer touches the
 * feeder), so a slow exchange never holds up the daemon's exit. */
static void rest_worker_release(struct rest_worker *w)
{
    if (w == NULL) {
        return;
    }
    if (!w->thread_started) {
        rest_worker_destroy(w);
        return;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += REST_WORKER_STOP_WAIT_MS / 1000;
    deadline.tv_nsec += (long)(REST_WORKER_STOP_WAIT_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    w->wake = NULL;
    pthread_cond_broadcast(&w->cond);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    bool done = w->done;
    int kind = atomic_load_explicit(&w->busy_kind, memory_order_relaxed);
    if (!done) {
        w->abandoned = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (done) {
        pthread_join(w->thread, NULL);
        rest_worker_destroy(w);
        return;
    }
    pthread_detach(w->thread);
    cq_log_warn("feeder", "rest_worker_abandoned",
                json_pack("{s:s,s:I}", "job", job_names[kind >= 0 && kind < JOB__COUNT ? kind : 0],
                          "waited_ms", (json_int_t)REST_WORKER_STOP_WAIT_MS),
                "a REST call (%s) still runs after %d ms; not waiting for it",
                job_names[kind >= 0 && kind < JOB__COUNT ? kind : 0], REST_WORKER_STOP_WAIT_MS);
}

struct cq_feeder *cq_feeder_new(const struct cq_feeder_options *o, struct cq_err *err)
{
    struct cq_feeder *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder");
        return NULL;
    }
    f->cfg = cq_config_ref(o->cfg);
    f->board = o->board;
    f->clock = o->clock != NULL ? o->clock : cq_clock_system();
    f->to_ares = o->to_ares;
    f->to_trader = o->to_trader;
    f->rest_url = cq_text_dup(o->rest_url);
    f->ws_url = cq_text_dup(o->ws_url);
    f->api_key = cq_text_dup(o->api_key);
    f->pending = calloc(PENDING_MAX_CANDLES, sizeof(*f->pending));
    f->user_pending = calloc(USER_PENDING_MAX, sizeof(*f->user_pending));
    if (f->rest_url == NULL || f->ws_url == NULL || f->pending == NULL || f->user_pending == NULL ||
        f->to_ares == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder");
        cq_feeder_free(f);
        return NULL;
    }
    atomic_init(&f->stale_ms, cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS));
    atomic_init(&f->watch_stall_ms, cq_config_int(o->cfg, CQ_CFG_WATCHDOG_STALL_MS));
    const char *const *symbols = NULL;
    size_t n = cq_config_symbols(o->cfg, &symbols);
    if (n > CQ_MAX_SYMBOLS) {
        _Static_assert(CQ_MAX_SYMBOLS == 32, "update the hint text");
        cq_err_set(err, CQ_ECONFIG, 0, "list at most 32 symbols in CQ_SYMBOLS",
                   "the feeder follows at most %d symbols; CQ_SYMBOLS lists %zu", CQ_MAX_SYMBOLS,
                   n);
        cq_feeder_free(f);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        /* Config validation holds symbols to CQ_SYMBOL_MAX_CHARS; a longer
         * one here is refused, never cut (a cut name matches nothing). */
        if (cq_strlcpy(f->syms[i].name, symbols[i], sizeof(f->syms[i].name)) >=
            sizeof(f->syms[i].name)) {
            cq_err_set(
                err, CQ_ECONFIG, 0, "use the exchange's symbol names (at most 20 characters)",
                "symbol \"%.40s\" is longer than %d characters", symbols[i], CQ_SYMBOL_MAX_CHARS);
            cq_feeder_free(f);
            return NULL;
        }
        f->n_syms = i + 1;
        f->syms[i].last_closed_open_ms = -1;
        f->syms[i].held = calloc(HELD_MAX, sizeof(*f->syms[i].held));
        if (f->syms[i].held == NULL) {
            cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder");
            cq_feeder_free(f);
            return NULL;
        }
    }
    f->malformed_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    f->gap_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 20};
    f->trade_gap_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    f->user_drop_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    f->insane_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};

    struct cq_rest_options ro = {
        .base_url = f->rest_url,
        .api_key = f->api_key,
        .api_secret = NULL, /* the feeder signs nothing: no copy of the secret here */
        .service = "feeder",
        .connect_timeout_ms = cq_config_int(o->cfg, CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS),
        .total_timeout_ms = cq_config_int(o->cfg, CQ_CFG_EXCHANGE_TIMEOUT_MS),
        .weight_headroom_pct = (unsigned)cq_config_int(o->cfg, CQ_CFG_EXCHANGE_WEIGHT_HEADROOM_PCT),
        .clock = f->clock,
    };
    f->loop = cq_ws_loop_new(err);
    if (f->loop == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    f->worker = rest_worker_new(f, &ro, err);
    if (f->worker == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    /* The user data stream needs the key and its secret (the subscribe is
     * signed); without them there is none (market data only). It starts
     * with the market stream, once start-up is done. */
    if (f->api_key != NULL && f->api_key[0] != '\0' && o->api_secret != NULL &&
        o->api_secret[0] != '\0' && o->wsapi_url != NULL && o->wsapi_url[0] != '\0') {
        struct cq_wsapi_options wo = {
            .url = o->wsapi_url,
            .api_key = f->api_key,
            .api_secret = o->api_secret,
            .backoff_max_ms = cq_config_int(o->cfg, CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS),
            .clock = f->clock,
        };
        struct cq_wsapi_callbacks ucb = {on_user_event, on_user_gap, f};
        f->user = cq_wsapi_new(f->loop, &wo, &ucb, err);
        if (f->user == NULL) {
            cq_feeder_free(f);
            return NULL;
        }
    }
    f->svc = cq_service_new(&feeder_ops, f, f->board, f->clock, err);
    if (f->svc == NULL || rest_worker_start(f->worker, err) < 0) {
        cq_feeder_free(f);
        return NULL;
    }
    cq_version_log_banner(
        "feeder", cq_mode_name(cq_config_mode(o->cfg)), cq_config_hash(o->cfg),
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:s,s:s}", "stale_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS), "ws_stall_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WS_STALL_MS), "ws_backoff_max_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS), "warmup_bars",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WARMUP_BARS),
                  "weight_headroom_pct",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_EXCHANGE_WEIGHT_HEADROOM_PCT), "rest",
                  f->rest_url, "ws", f->ws_url));
    return f;
}

void cq_feeder_free(struct cq_feeder *f)
{
    if (f == NULL) {
        return;
    }
    cq_service_free(f->svc);        /* joins the thread before its state goes */
    rest_worker_release(f->worker); /* before the loop it wakes goes */
    cq_wsapi_free(f->user);         /* its ws client, before the loop */
    cq_ws_loop_free(f->loop);
    cq_config_unref(f->cfg);
    free(f->rest_url);
    free(f->ws_url);
    free(f->api_key);
    for (size_t i = 0; i < f->n_syms; i++) {
        free(f->syms[i].held);
    }
    free(f->pending);
    free(f->user_pending);
    free(f);
}

void cq_feeder__flush(struct cq_feeder *f)
{
    flush_to_ares(f);
}

void cq_feeder__publish_health(struct cq_feeder *f, int64_t now)
{
    publish_health(f, now);
    f->last_health_mono = now;
}

void cq_feeder__assume_streaming(struct cq_feeder *f)
{
    f->phase = PHASE_STREAMING;
    f->market_connected = true;
}

struct cq_service *cq_feeder_service(struct cq_feeder *f)
{
    return f->svc;
}

void cq_feeder_reconfigure(struct cq_feeder *f, const struct cq_config *cfg)
{
    atomic_store_explicit(&f->stale_ms, cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS),
                          memory_order_relaxed);
    atomic_store_explicit(&f->watch_stall_ms, cq_config_int(cfg, CQ_CFG_WATCHDOG_STALL_MS),
                          memory_order_relaxed);
}
