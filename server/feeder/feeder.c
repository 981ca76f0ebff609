/*
 * feeder.c — the feeder service: market data in, market events out.
 *
 * Runs on its own thread (struct cq_service, tick 1 ms; each step services
 * the WebSocket loop for up to 50 ms, so the thread sleeps in poll(), not in
 * the frame). Everything below is owned by that thread:
 *   rest     a struct cq_rest_client (warm-up, backfill, listen keys)
 *   loop     a struct cq_ws_loop with two clients: "market" (combined
 *            kline_1m/bookTicker/trade streams of every symbol) and "user"
 *            (the listen key's user data stream, when an API key is set)
 *   syms     per-symbol market state: freshness per stream, the forming and
 *            the last closed candle, the book, the last trade id, counters
 *
 * Start: exchangeInfo (limits learned, symbols checked) and CQ_FEEDER_WARMUP_BARS
 * closed candles per symbol go to ARES first; only then does the market
 * stream connect, so ARES always sees candles in time order. A REST failure
 * at start is retried with backoff (the stream waits).
 *
 * Closed candles come only from the exchange's x=true kline or from REST.
 * A closed kline whose open time is past the last closed one + 1 minute is a
 * gap: the missing bars are fetched over REST (startTime/endTime strictly
 * before the new bar, so every one of them is closed) and queued before it;
 * a bar at or before the last closed one is a duplicate and dropped
 * (counted). Minutes the exchange itself never traded (a halt) stay a gap
 * (market_gap_unfilled). After a reconnect the next closed kline reveals
 * and fills whatever was missed. When the backfill itself is impossible for
 * now (REST rate limited, banned, failing), the closed candles after the gap
 * are held per symbol (HELD_MAX) and the backfill is retried after the
 * exchange's Retry-After: nothing overtakes a gap, nothing is dropped.
 *
 * Queues and full policies (rings owned by the supervisor, see feeder.h):
 *   pending  closed candles waiting for room in to_ares, FIFO, bounded
 *            (PENDING_MAX). Above PENDING_PAUSE the feeder stops reading the
 *            market stream (real backpressure: nothing is dropped; the
 *            stream catches up by backfill when it resumes) and reports
 *            ares_backpressure.
 *   books    one coalescing slot per symbol (latest wins, counted).
 *   trades   pushed if there is room, else dropped and counted.
 *   user     user events wait in a bounded FIFO (USER_PENDING_MAX) for room
 *            in to_trader; beyond it they are dropped, counted and logged.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/backoff.h"
#include "cq/codec.h"
#include "cq/exchange.h"
#include "cq/feeder.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/text.h"
#include "cq/version.h"
#include "cq/ws_client.h"
#include "feeder/feeder-int.h"

#define MAX_SYMBOLS 32
#define PENDING_MAX 65536        /* closed candles held for ARES */
#define PENDING_PAUSE 60000      /* stop reading the stream above this */
#define USER_PENDING_MAX 1024
#define HEALTH_EVERY_MS 250
#define SERVICE_WAIT_MS 50
#define LISTEN_KEY_KEEPALIVE_MS (30LL * 60 * 1000)
#define START_RETRY_MIN_MS 500
#define START_RETRY_MAX_MS 30000
#define BACKFILL_LIMIT 1000      /* bars per klines request */
#define HELD_MAX 1024            /* closed candles held per symbol while a backfill waits */
#define BACKFILL_RETRY_MIN_MS 500
#define LISTEN_KEY_RETRY_MIN_MS 1000     /* first wait after a failed POST userDataStream */
#define LISTEN_KEY_RETRY_MAX_MS 300000   /* longest wait between two of them (5 min) */
#define INSANE_STALE_AFTER 3             /* bad messages in a row before the detail says so */
#define ONE_MINUTE_MS 60000LL

enum { STREAM_KLINE, STREAM_BOOK, STREAM_TRADE, STREAM__COUNT };
static const char *const stream_names[STREAM__COUNT] = {"kline_1m", "bookTicker", "trade"};

struct sym_state {
    char name[CQ_SYMBOL_LEN];
    int64_t last_msg_mono[STREAM__COUNT]; /* 0 = never */
    int64_t last_any_mono;
    struct cq_candle forming;
    bool has_forming;
    int64_t last_closed_open_ms;          /* -1 = none yet */
    struct cq_book_top book;
    bool book_pending;
    uint64_t last_trade_id;               /* 0 = none yet */
    /* Closed candles from the stream, in order, not yet passed on: they wait
     * here while the gap before the first one cannot be backfilled yet
     * (REST rate limited, banned or failing). */
    struct cq_candle *held;               /* owned, HELD_MAX */
    size_t held_len;
    int64_t backfill_retry_at;            /* mono ms; 0 = none pending */
    /* counters */
    uint64_t candles_closed, candles_backfilled, candles_warmup, duplicates, gaps,
        gaps_unfilled, trade_gaps, books_coalesced, trades_dropped, messages;
    /* Messages that decoded but broke a sanity rule (cq_msg_check): dropped,
     * counted, and they never refresh the symbol's freshness, so a symbol
     * fed only insane data goes stale (feeder_stale) like a silent one. */
    uint64_t insane;                      /* total */
    uint64_t insane_in_row;               /* since the last sane message */
    const char *insane_reason;            /* static string; NULL = none yet */
};

enum start_phase {
    PHASE_START,        /* exchangeInfo + warm-up not done yet */
    PHASE_STREAMING     /* market stream started */
};

struct cq_feeder {
    struct cq_config *cfg;          /* owned reference */
    struct cq_health_board *board;  /* borrowed */
    const struct cq_clock *clock;   /* borrowed */
    struct cq_service *svc;         /* owned */
    char *rest_url, *ws_url, *api_key; /* owned copies (no secret: the feeder signs nothing) */
    struct cq_spsc *to_ares;        /* borrowed */
    struct cq_spsc *to_trader;      /* borrowed, may be NULL */

    /* Reloadable threshold: written by the supervisor, read here. */
    _Atomic int64_t stale_ms;

    struct cq_rest_client *rest;    /* owned */
    struct cq_ws_loop *loop;        /* owned */
    struct cq_ws_client *market;    /* owned by loop */
    struct cq_ws_client *user;      /* owned by loop; NULL without a key */
    bool market_connected;
    bool user_connected;
    int64_t market_down_since;      /* mono ms of the last disconnect; 0 = never connected */

    struct sym_state syms[MAX_SYMBOLS];
    size_t n_syms;

    enum start_phase phase;
    int64_t start_retry_at;         /* mono ms */
    int64_t start_backoff_ms;
    char start_problem[CQ_HEALTH_DETAIL_MAX];

    /* closed candles waiting for room in to_ares (FIFO ring of indexes) */
    struct cq_market_event *pending;
    size_t pending_head, pending_len;
    bool backpressure;

    struct cq_user_event *user_pending;
    size_t user_head, user_len;
    uint64_t user_events, user_dropped;

    char listen_key[80];
    int64_t listen_key_renew_at;    /* mono ms */
    int64_t listen_key_retry_at;    /* mono ms: replace the key from then on; 0 = keep it */
    struct cq_backoff listen_key_backoff; /* between failed POST userDataStream */
    char listen_key_problem[160];   /* the last failure; "" after a success */
    int64_t listen_key_check_at;    /* mono ms: ask the exchange whether the key still
                                     * lives (after the user stream dropped); 0 = no */
    bool listen_key_wanted;

    uint64_t malformed_total, unknown_symbol_total, control_total, insane_total;
    int64_t last_health_mono;
    struct cq_log_ratelimit malformed_rl, gap_rl, trade_gap_rl, user_drop_rl, listen_key_rl,
        insane_rl;
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
    if (f->pending_len == PENDING_MAX) {
        return false;
    }
    f->pending[(f->pending_head + f->pending_len) % PENDING_MAX] = *ev;
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
    /* Straight into the ring when nothing is held before it (order kept). */
    bool passed = f->pending_len == 0 && cq_spsc_push(f->to_ares, &ev);
    if (!passed && !pending_push(f, &ev)) {
        /* Unreachable while the stream pauses above PENDING_PAUSE; if it
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
        f->pending_head = (f->pending_head + 1) % PENDING_MAX;
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

/* GET klines for one symbol; fills rows (new reference) or logs and fails. */
static int get_klines(struct cq_feeder *f, int idx, int64_t start_ms, int64_t end_ms,
                      unsigned limit, json_t **rows, char *problem, size_t problem_len)
{
    struct cq_rest_params p;
    struct cq_rest_response r;
    memset(&r, 0, sizeof(r));
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", f->syms[idx].name);
    cq_rest_params_add(&p, "interval", "1m");
    if (start_ms > 0) {
        cq_rest_params_add_int(&p, "startTime", start_ms);
    }
    if (end_ms > 0) {
        cq_rest_params_add_int(&p, "endTime", end_ms);
    }
    cq_rest_params_add_int(&p, "limit", limit);
    int rc = cq_rest_request(f->rest, "GET", "/api/v3/klines", &p, CQ_SEC_NONE, 2, false, &r);
    if (rc < 0 || r.status != CQ_REST_OK || !json_is_array(r.body)) {
        /* At most 7 + 20 + 2 + 64 + 12 + 121 bytes: fits the callers' 256. */
        snprintf(problem, problem_len, "klines %s: %.64s %d %.120s", f->syms[idx].name,
                 rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), r.code, r.msg);
        cq_rest_response_fini(&r);
        return -CQ_EVENUE;
    }
    *rows = json_incref(r.body);
    cq_rest_response_fini(&r);
    return 0;
}

/* Fetch and queue every closed bar in [from_ms, to_ms] (all strictly before
 * a bar known closed). Returns the number queued, or negative on failure. */
static int backfill(struct cq_feeder *f, int idx, int64_t from_ms, int64_t to_ms)
{
    int queued = 0;
    int64_t start = from_ms;
    while (start <= to_ms) {
        json_t *rows = NULL;
        char problem[256];
        if (get_klines(f, idx, start, to_ms, BACKFILL_LIMIT, &rows, problem, sizeof(problem)) <
            0) {
            cq_log_warn("feeder", "backfill_failed",
                        json_pack("{s:s,s:I,s:I,s:s}", "symbol", f->syms[idx].name, "from_ms",
                                  (json_int_t)start, "to_ms", (json_int_t)to_ms, "error", problem),
                        "backfill of %s failed: %s", f->syms[idx].name, problem);
            return -CQ_EVENUE;
        }
        size_t n = json_array_size(rows);
        int64_t last_open = -1;
        for (size_t i = 0; i < n; i++) {
            struct cq_candle c;
            const char *why;
            if (!parse_kline_row(json_array_get(rows, i), &c)) {
                f->malformed_total++;
                continue;
            }
            why = cq_market_check_candle(&c);
            if (why != NULL) {
                drop_insane(f, idx, "backfill", "kline", why, now_mono(f));
                continue;
            }
            if (c.open_ms <= f->syms[idx].last_closed_open_ms || c.open_ms > to_ms) {
                continue;
            }
            emit_candle(f, idx, &c, CQ_CANDLE_FROM_BACKFILL);
            last_open = c.open_ms;
            queued++;
        }
        json_decref(rows);
        if (n < BACKFILL_LIMIT || last_open < 0) {
            break;
        }
        start = last_open + ONE_MINUTE_MS;
    }
    return queued;
}

/* Pass on the held closed candles of one symbol, in order, filling gaps
 * from REST. Stops (to retry later) when a backfill fails: the candles after
 * a gap never overtake it. */
static void drain_held(struct cq_feeder *f, int idx, int64_t now)
{
    struct sym_state *s = &f->syms[idx];
    if (s->backfill_retry_at != 0 && now < s->backfill_retry_at) {
        return;
    }
    size_t done = 0;
    while (done < s->held_len) {
        const struct cq_candle *c = &s->held[done];
        if (s->last_closed_open_ms >= 0 && c->open_ms <= s->last_closed_open_ms) {
            s->duplicates++;
            done++;
            continue;
        }
        if (s->last_closed_open_ms >= 0 && c->open_ms > s->last_closed_open_ms + ONE_MINUTE_MS) {
            int64_t from = s->last_closed_open_ms + ONE_MINUTE_MS;
            int64_t to = c->open_ms - 1;
            int64_t missing = (c->open_ms - from) / ONE_MINUTE_MS;
            int got = backfill(f, idx, from, to);
            if (got < 0) {
                /* Not now (rate limited, banned, network): hold on, retry
                 * after the exchange's wait or a short pause. */
                struct cq_rest_budget b;
                cq_rest_client_budget(f->rest, &b);
                int64_t wait = b.rate_limited_for_ms > b.banned_for_ms ? b.rate_limited_for_ms
                                                                       : b.banned_for_ms;
                s->backfill_retry_at = now + (wait > BACKFILL_RETRY_MIN_MS ? wait
                                                                           : BACKFILL_RETRY_MIN_MS);
                break;
            }
            s->gaps++;
            if (got < missing) {
                s->gaps_unfilled++;
            }
            uint64_t suppressed = 0;
            if (cq_log_ratelimit_allow(&f->gap_rl, now, &suppressed)) {
                cq_log_warn("feeder", got < missing ? "market_gap_unfilled" : "market_gap",
                            json_pack("{s:s,s:I,s:I,s:I,s:i,s:I}", "symbol", s->name, "from_ms",
                                      (json_int_t)from, "to_ms", (json_int_t)to, "missing_bars",
                                      (json_int_t)missing, "backfilled", got, "suppressed",
                                      (json_int_t)suppressed),
                            "%s: %lld closed bar(s) missing before %lld; %d backfilled", s->name,
                            (long long)missing, (long long)c->open_ms, got);
            }
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

static void on_closed_kline(struct cq_feeder *f, int idx, const struct cq_candle *c)
{
    struct sym_state *s = &f->syms[idx];
    s->has_forming = false;
    if (s->held_len == HELD_MAX) {
        /* A backfill has been impossible for HELD_MAX minutes: let the
         * oldest held candle through with its gap unfilled rather than hold
         * the stream forever (logged as market_gap_unfilled). */
        s->backfill_retry_at = 0;
        int64_t keep = s->last_closed_open_ms;
        s->last_closed_open_ms = s->held[0].open_ms - ONE_MINUTE_MS;
        s->gaps++;
        s->gaps_unfilled++;
        cq_log_error("feeder", "market_gap_unfilled",
                     json_pack("{s:s,s:I,s:I}", "symbol", s->name, "from_ms",
                               (json_int_t)(keep + ONE_MINUTE_MS), "to_ms",
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

static void on_user_message(void *ctx, const char *data, size_t len, int64_t recv_mono_ms)
{
    struct cq_feeder *f = ctx;
    f->user_events++;
    if (len >= CQ_USER_EVENT_MAX || f->user_len == USER_PENDING_MAX) {
        uint64_t suppressed = 0;
        f->user_dropped++;
        if (cq_log_ratelimit_allow(&f->user_drop_rl, recv_mono_ms, &suppressed)) {
            cq_log_error("feeder", "user_event_dropped",
                         json_pack("{s:I,s:b,s:I}", "bytes", (json_int_t)len, "queue_full",
                                   f->user_len == USER_PENDING_MAX, "suppressed",
                                   (json_int_t)suppressed),
                         "a user data stream event was dropped; the trader must reconcile");
        }
        return;
    }
    struct cq_user_event *ev = &f->user_pending[(f->user_head + f->user_len) % USER_PENDING_MAX];
    ev->recv_mono_ms = recv_mono_ms;
    ev->len = (uint32_t)len;
    memcpy(ev->json, data, len);
    ev->json[len] = '\0';
    f->user_len++;
    if (strstr(ev->json, "\"listenKeyExpired\"") != NULL) {
        cq_log_warn("feeder", "listen_key_expired", NULL,
                    "the exchange expired the listen key; creating a new one");
        f->listen_key_retry_at = now_mono(f);
    }
}

static void on_user_state(void *ctx, enum cq_ws_state state, const char *reason)
{
    struct cq_feeder *f = ctx;
    f->user_connected = state == CQ_WS_CONNECTED;
    (void)reason;
    if (!f->user_connected && f->listen_key_check_at == 0) {
        /* The user stream dropped: the key may have been closed or expired
         * on the exchange's side (it then refuses the reconnect). Ask. */
        f->listen_key_check_at = now_mono(f) + 1000;
    }
}

/* ---- start-up ------------------------------------------------------------------ */

static int load_exchange_info(struct cq_feeder *f)
{
    struct cq_rest_response r;
    memset(&r, 0, sizeof(r));
    int rc = cq_rest_request(f->rest, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, false,
                             &r);
    if (rc < 0 || r.status != CQ_REST_OK) {
        /* At most 14 + 64 + 12 + 121 bytes < CQ_HEALTH_DETAIL_MAX (256). */
        snprintf(f->start_problem, sizeof(f->start_problem), "exchangeInfo: %.64s %d %.120s",
                 rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), r.code, r.msg);
        cq_rest_response_fini(&r);
        return -CQ_EVENUE;
    }
    cq_rest_client_learn_limits(f->rest, r.body);
    json_t *symbols = json_object_get(r.body, "symbols");
    for (size_t i = 0; i < f->n_syms; i++) {
        bool found = false;
        size_t k;
        json_t *s;
        json_array_foreach(symbols, k, s) {
            const char *name = json_string_value(json_object_get(s, "symbol"));
            if (name != NULL && strcmp(name, f->syms[i].name) == 0) {
                found = true;
                break;
            }
        }
        if (!found) {
            snprintf(f->start_problem, sizeof(f->start_problem), /* name <= 20: fits */
                     "symbol %s is not listed by the exchange; fix CQ_SYMBOLS", f->syms[i].name);
            cq_rest_response_fini(&r);
            return -CQ_ENOTFOUND;
        }
    }
    cq_rest_response_fini(&r);
    return 0;
}

/* History for ARES: the newest N closed bars (the newest row the exchange
 * returns is the forming bar: dropped). */
static int warm_up(struct cq_feeder *f)
{
    int64_t bars = cq_config_int(f->cfg, CQ_CFG_FEEDER_WARMUP_BARS);
    if (bars <= 0) {
        return 0;
    }
    for (size_t i = 0; i < f->n_syms; i++) {
        json_t *rows = NULL;
        if (get_klines(f, (int)i, 0, 0, (unsigned)bars + 1, &rows, f->start_problem,
                       sizeof(f->start_problem)) < 0) {
            return -CQ_EVENUE;
        }
        size_t n = json_array_size(rows);
        for (size_t k = 0; k + 1 < n; k++) {
            struct cq_candle c;
            const char *why;
            if (!parse_kline_row(json_array_get(rows, k), &c)) {
                f->malformed_total++;
                continue;
            }
            why = cq_market_check_candle(&c);
            if (why != NULL) {
                drop_insane(f, (int)i, "warmup", "kline", why, now_mono(f));
                continue;
            }
            if (c.open_ms > f->syms[i].last_closed_open_ms) {
                emit_candle(f, (int)i, &c, CQ_CANDLE_FROM_WARMUP);
            }
        }
        json_decref(rows);
    }
    cq_log_info("feeder", "warmup_done",
                json_pack("{s:I,s:I}", "symbols", (json_int_t)f->n_syms, "bars_per_symbol",
                          (json_int_t)bars),
                "warm-up history queued for ARES");
    return 0;
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

/* ---- the user data stream -------------------------------------------------------- */

static void user_stream_tick(struct cq_feeder *f, int64_t now)
{
    if (!f->listen_key_wanted) {
        return;
    }
    bool need_key = f->listen_key[0] == '\0' ||
                    (f->listen_key_retry_at != 0 && now >= f->listen_key_retry_at);
    if (need_key) {
        /* Failures back off exponentially (with jitter, capped, and never
         * sooner than a Retry-After): a refused key (-2015: revoked key,
         * missing permission, IP not allowed) must not spend the REST
         * weight budget that the backfill needs (issue 9.5). */
        if (!cq_backoff_due(&f->listen_key_backoff, now)) {
            return;
        }
        struct cq_rest_response r;
        memset(&r, 0, sizeof(r));
        int rc = cq_rest_request(f->rest, "POST", "/api/v3/userDataStream", NULL, CQ_SEC_API_KEY,
                                 2, false, &r);
        const char *key = json_string_value(json_object_get(r.body, "listenKey"));
        char url[512];
        int url_len = key != NULL ? snprintf(url, sizeof(url), "%s/ws/%s", f->ws_url, key) : -1;
        if (rc < 0 || r.status != CQ_REST_OK || key == NULL || strlen(key) >= sizeof(f->listen_key) ||
            url_len < 0 || (size_t)url_len >= sizeof(url)) {
            struct cq_rest_budget b;
            cq_rest_client_budget(f->rest, &b);
            int64_t server_wait = b.rate_limited_for_ms > b.banned_for_ms ? b.rate_limited_for_ms
                                                                          : b.banned_for_ms;
            int64_t delay = cq_backoff_fail(&f->listen_key_backoff, now, server_wait);
            /* Bounded by the format: 40 + 12 + 1 + 100 < 160 bytes. */
            snprintf(f->listen_key_problem, sizeof(f->listen_key_problem), "%.40s %d %.100s",
                     rc < 0 ? cq_strerror(rc)
                            : r.status != CQ_REST_OK ? cq_rest_status_name(r.status)
                                                     : "bad listenKey in the reply",
                     r.code, r.msg);
            uint64_t suppressed = 0;
            if (cq_log_ratelimit_allow(&f->listen_key_rl, now, &suppressed)) {
                cq_log_warn("feeder", "listen_key_failed",
                            json_pack("{s:s,s:i,s:s,s:I,s:I,s:I}", "status",
                                      rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status),
                                      "code", r.code, "msg", r.msg, "attempt",
                                      (json_int_t)f->listen_key_backoff.failures, "retry_in_ms",
                                      (json_int_t)delay, "suppressed", (json_int_t)suppressed),
                            "cannot create a listen key (%s); retry %u in %lld ms",
                            f->listen_key_problem, f->listen_key_backoff.failures + 1,
                            (long long)delay);
            }
            cq_rest_response_fini(&r);
            return;
        }
        bool changed = strcmp(f->listen_key, key) != 0;
        /* Cannot truncate: strlen(key) < sizeof(f->listen_key) checked above. */
        (void)cq_strlcpy(f->listen_key, key, sizeof(f->listen_key));
        cq_rest_response_fini(&r);
        if (f->listen_key_backoff.failures > 0) {
            cq_log_info("feeder", "listen_key_recovered",
                        json_pack("{s:I}", "failures", (json_int_t)f->listen_key_backoff.failures),
                        "listen key created after %u failure(s)",
                        f->listen_key_backoff.failures);
        }
        cq_backoff_reset(&f->listen_key_backoff);
        f->listen_key_problem[0] = '\0';
        f->listen_key_retry_at = 0;
        f->listen_key_renew_at = now + LISTEN_KEY_KEEPALIVE_MS;
        if (f->user == NULL) {
            struct cq_ws_client_options wo = {
                .url = url,
                .name = "user",
                .connect_timeout_ms = cq_config_int(f->cfg, CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS),
                .stall_ms = CQ_WS_STALL_NONE, /* quiet by nature; its pings show it lives */
                .backoff_base_ms = 250,
                .backoff_max_ms = cq_config_int(f->cfg, CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS),
                .clock = f->clock,
            };
            struct cq_ws_callbacks cb = {on_user_message, on_user_state, f};
            struct cq_err err;
            f->user = cq_ws_client_new(f->loop, &wo, &cb, &err);
            if (f->user == NULL || cq_ws_client_start(f->user) < 0) {
                cq_log_error("feeder", "user_stream_failed", NULL, "cannot start the user stream");
                f->listen_key_wanted = false;
                return;
            }
        } else if (changed && cq_ws_client_set_url(f->user, url) < 0) {
            cq_log_error("feeder", "user_stream_failed", NULL, "cannot switch the listen key");
        }
        cq_log_info("feeder", "listen_key_ready", json_pack("{s:b}", "new", changed),
                    "user data stream %s", changed ? "on a new listen key" : "key extended");
        return;
    }
    bool check = f->listen_key_check_at != 0 && now >= f->listen_key_check_at;
    if (check || now >= f->listen_key_renew_at) {
        f->listen_key_check_at = 0;
        struct cq_rest_params p;
        struct cq_rest_response r;
        memset(&r, 0, sizeof(r));
        cq_rest_params_init(&p);
        cq_rest_params_add(&p, "listenKey", f->listen_key);
        int rc = cq_rest_request(f->rest, "PUT", "/api/v3/userDataStream", &p, CQ_SEC_API_KEY, 2,
                                 false, &r);
        if (rc == 0 && r.status == CQ_REST_REJECTED && r.code == -1125) {
            f->listen_key_retry_at = now; /* gone: make a new one */
        } else if (rc < 0 || r.status != CQ_REST_OK) {
            f->listen_key_renew_at = now + 60000; /* try again in a minute */
        } else {
            f->listen_key_renew_at = now + LISTEN_KEY_KEEPALIVE_MS;
        }
        cq_rest_response_fini(&r);
    }
}

/* ---- health ------------------------------------------------------------------------ */

static void publish_health(struct cq_feeder *f, int64_t now)
{
    int64_t stale_ms = atomic_load_explicit(&f->stale_ms, memory_order_relaxed);
    struct cq_rest_budget budget;
    cq_rest_client_budget(f->rest, &budget);
    json_t *symbols = json_object();
    const struct sym_state *stale_symbol = NULL;
    bool stale_never = false;          /* the stale symbol has had no message at all */
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
                      "freshness_ms",
                      age >= 0 ? json_integer(age) : json_null(), "streams", fresh,
                      "last_closed_open_ms", (json_int_t)s->last_closed_open_ms, "candles_closed",
                      (json_int_t)s->candles_closed, "candles_backfilled",
                      (json_int_t)s->candles_backfilled, "candles_warmup",
                      (json_int_t)s->candles_warmup, "gaps", (json_int_t)s->gaps,
                      "gaps_unfilled", (json_int_t)s->gaps_unfilled, "duplicates",
                      (json_int_t)s->duplicates, "trade_gaps", (json_int_t)s->trade_gaps,
                      "books_coalesced", (json_int_t)s->books_coalesced, "trades_dropped",
                      (json_int_t)s->trades_dropped, "held_for_backfill",
                      (json_int_t)s->held_len, "insane", (json_int_t)s->insane, "insane_in_a_row",
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
    } else if (f->listen_key_wanted && f->listen_key_problem[0] != '\0') {
        /* Market data is fine (still ready), but the trader gets no order
         * updates until a listen key can be created. */
        status = CQ_HEALTH_DEGRADED;
        reason = "listen_key_failed";
        snprintf(detail, sizeof(detail),
                 "cannot create a listen key (%s): %u failure(s), next try in %lld ms",
                 f->listen_key_problem, f->listen_key_backoff.failures,
                 (long long)(f->listen_key_backoff.next_at_ms > now
                                 ? f->listen_key_backoff.next_at_ms - now
                                 : 0));
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
    json_t *details = json_pack(
        "{s:I,s:o,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I},s:{s:b,s:I,s:I,s:I,s:I,s:s},s:I,s:I,s:I}",
        "stale_ms",
        (json_int_t)stale_ms, "symbols", symbols, "rest", cq_rest_budget_json(&budget),
        "market_stream", cq_ws_client_stats_json(&ms), "to_ares", "pending_candles",
        (json_int_t)f->pending_len, "ring_size", (json_int_t)cq_spsc_size(f->to_ares), "ring_capacity",
        (json_int_t)cq_spsc_capacity(f->to_ares), "ring_full", (json_int_t)atomic_load(&f->to_ares->full),
        "ring_high_water", (json_int_t)atomic_load(&f->to_ares->high_water), "user_stream",
        "connected", f->user_connected, "events", (json_int_t)f->user_events, "dropped",
        (json_int_t)f->user_dropped, "listen_key_failures",
        (json_int_t)f->listen_key_backoff.failures, "listen_key_retry_in_ms",
        (json_int_t)(f->listen_key_backoff.next_at_ms > now ? f->listen_key_backoff.next_at_ms - now
                                                            : 0),
        "listen_key_problem", f->listen_key_problem, "malformed_total",
        (json_int_t)f->malformed_total, "insane_total", (json_int_t)f->insane_total,
        "unknown_symbol_total", (json_int_t)f->unknown_symbol_total);
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

static int feeder_step(void *ctx, int64_t now)
{
    struct cq_feeder *f = ctx;
    if (f->phase == PHASE_START && now >= f->start_retry_at) {
        f->start_problem[0] = '\0';
        int rc = load_exchange_info(f);
        if (rc == 0) {
            rc = warm_up(f);
        }
        if (rc == 0) {
            rc = start_market_stream(f);
        }
        if (rc == 0) {
            f->phase = PHASE_STREAMING;
            f->listen_key_wanted = f->api_key != NULL && f->api_key[0] != '\0';
        } else {
            f->start_backoff_ms = f->start_backoff_ms == 0 ? START_RETRY_MIN_MS
                                                           : f->start_backoff_ms * 2;
            if (f->start_backoff_ms > START_RETRY_MAX_MS) {
                f->start_backoff_ms = START_RETRY_MAX_MS;
            }
            f->start_retry_at = now + f->start_backoff_ms;
            cq_log_warn("feeder", "start_retry",
                        json_pack("{s:s,s:I}", "problem", f->start_problem, "retry_in_ms",
                                  (json_int_t)f->start_backoff_ms),
                        "feeder start-up failed: %s", f->start_problem);
        }
    }
    f->backpressure = f->pending_len > PENDING_PAUSE;
    if (f->phase == PHASE_STREAMING && !f->backpressure) {
        cq_ws_loop_service(f->loop, SERVICE_WAIT_MS);
    } else {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    now = now_mono(f);
    if (f->phase == PHASE_STREAMING) {
        for (size_t i = 0; i < f->n_syms; i++) {
            if (f->syms[i].held_len > 0) {
                drain_held(f, (int)i, now);
            }
        }
        user_stream_tick(f, now);
    }
    flush_to_ares(f);
    flush_to_trader(f);
    if (now - f->last_health_mono >= HEALTH_EVERY_MS) {
        publish_health(f, now);
        f->last_health_mono = now;
    }
    return 0;
}

static void feeder_on_stop(void *ctx)
{
    struct cq_feeder *f = ctx;
    if (f->market != NULL) {
        cq_ws_client_stop(f->market);
    }
    if (f->user != NULL) {
        cq_ws_client_stop(f->user);
    }
}

static const struct cq_service_ops feeder_ops = {
    .id = CQ_SVC_FEEDER,
    .tick_ms = 1,
    .step = feeder_step,
    .on_stop = feeder_on_stop,
};

/* ---- construction ---------------------------------------------------------------- */

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
    f->pending = calloc(PENDING_MAX, sizeof(*f->pending));
    f->user_pending = calloc(USER_PENDING_MAX, sizeof(*f->user_pending));
    if (f->rest_url == NULL || f->ws_url == NULL || f->pending == NULL ||
        f->user_pending == NULL || f->to_ares == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder");
        cq_feeder_free(f);
        return NULL;
    }
    atomic_init(&f->stale_ms, cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS));
    const char *const *symbols = NULL;
    size_t n = cq_config_symbols(o->cfg, &symbols);
    if (n > MAX_SYMBOLS) {
        cq_err_set(err, CQ_ECONFIG, 0, "list at most 32 symbols in CQ_SYMBOLS",
                   "the feeder follows at most %d symbols; CQ_SYMBOLS lists %zu", MAX_SYMBOLS, n);
        cq_feeder_free(f);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        /* Config validation holds symbols to CQ_SYMBOL_MAX_CHARS; a longer
         * one here is refused, never cut (a cut name matches nothing). */
        if (cq_strlcpy(f->syms[i].name, symbols[i], sizeof(f->syms[i].name)) >=
            sizeof(f->syms[i].name)) {
            cq_err_set(err, CQ_ECONFIG, 0, "use the exchange's symbol names (at most 20 characters)",
                       "symbol \"%.40s\" is longer than %d characters", symbols[i],
                       CQ_SYMBOL_MAX_CHARS);
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
    f->listen_key_rl = (struct cq_log_ratelimit){.window_ms = 60000, .burst = 3};
    f->insane_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    cq_backoff_init(&f->listen_key_backoff, LISTEN_KEY_RETRY_MIN_MS, LISTEN_KEY_RETRY_MAX_MS,
                    (uint64_t)cq_clock_wall_us(f->clock) ^ (uint64_t)(uintptr_t)f);

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
    f->rest = cq_rest_client_new(&ro, err);
    if (f->rest == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    f->loop = cq_ws_loop_new(err);
    if (f->loop == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    f->svc = cq_service_new(&feeder_ops, f, f->board, f->clock, err);
    if (f->svc == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    cq_version_log_banner(
        "feeder", cq_mode_name(cq_config_mode(o->cfg)), cq_config_hash(o->cfg),
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:s,s:s}", "stale_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_STALE_MS), "ws_stall_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WS_STALL_MS),
                  "ws_backoff_max_ms",
                  (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS),
                  "warmup_bars", (json_int_t)cq_config_int(o->cfg, CQ_CFG_FEEDER_WARMUP_BARS),
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
    cq_service_free(f->svc); /* joins the thread before its state goes */
    cq_ws_loop_free(f->loop);
    cq_rest_client_free(f->rest);
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
}
