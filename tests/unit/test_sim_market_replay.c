/*
 * test_sim_market_replay.c — the market model replaying a recorded book
 * (server/sim/market.c "Recorded book", options.book_recording) on the
 * real captures in ../shared/data/ws/recordings and on small hand-written
 * ones:
 *   - every recorded trade after the warm-up reaches the tape and the
 *     listener in the recording's order, with its exact price, quantity and
 *     side, interleaved with the book changes as recorded;
 *   - the book is the recorded one: its best bid/ask equal every applied
 *     bookTicker, it is never crossed, it holds 20 levels a side after the
 *     bootstrap (from the REST snapshot in the 2024 files, from 30 s of
 *     diffs in the 2023 file);
 *   - klines are the replayed trades (OHLCV per minute);
 *   - the replay loops, pauses and refuses recordings that do not fit.
 * ../shared/data missing: the data tests skip, or fail when CI is set.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-market.h"
#include "sim-recording.h"
#include "support/shared_data.h"

#define REC_DIR CQ_SHARED_DIR "/data/ws/recordings/"
#define BTC23 REC_DIR "binance-spot-BTCUSDT-20230405.txt.gz"
#define BTC24A REC_DIR "binance-spot-BTCUSDT-20240808.txt.gz"
#define BTC24B REC_DIR "binance-spot-BTCUSDT-20240809.txt.gz"
#define ETH24A REC_DIR "binance-spot-ETHUSDT-20240808.txt.gz"

#define START_MS 1700000040000LL /* floors to 1700000040000 (a minute) */

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "bad decimal in test: %s", s);
    return d;
}

static bool dec_eq(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(a, b) == 0;
}

static struct cq_sim__symbol make_symbol(const char *name, const char *tick, const char *step)
{
    struct cq_sim__symbol s;
    memset(&s, 0, sizeof(s));
    snprintf(s.symbol, sizeof(s.symbol), "%s", name);
    s.base_precision = 8;
    s.quote_precision = 8;
    s.status = SIM_TRADING;
    s.filters.tick_size = dec(tick);
    s.filters.step_size = dec(step);
    return s;
}

static bool have(const char *path)
{
    if (access(path, R_OK) != 0) {
        cq_test_shared_missing(path);
        return false;
    }
    return true;
}

/* What the listener saw. */
struct seen {
    size_t trades, books, crossed, short_books;
    struct cq_sim__public_trade *tape; /* every trade, in order */
    size_t cap;
    cq_dec bid, ask; /* last book's best */
    char order[64];  /* 'T'/'B' of the first events */
    size_t n_order;
    int64_t last_time;
    bool time_backwards;
};

static void on_trade(void *ctx, int idx, const struct cq_sim__public_trade *t)
{
    struct seen *s = ctx;
    (void)idx;
    if (s->trades == s->cap) {
        s->cap = s->cap == 0 ? 4096 : s->cap * 2;
        s->tape = realloc(s->tape, s->cap * sizeof(*s->tape));
        cr_assert_not_null(s->tape);
    }
    s->tape[s->trades++] = *t;
    if (s->n_order < sizeof(s->order) - 1) {
        s->order[s->n_order++] = 'T';
    }
    s->time_backwards |= t->time_ms < s->last_time;
    s->last_time = t->time_ms;
}

static void on_book(void *ctx, int idx, const struct cq_sim__book_view *b, uint64_t u, int64_t t)
{
    struct seen *s = ctx;
    (void)idx;
    (void)u;
    s->books++;
    if (b->n_bids > 0 && b->n_asks > 0 && cq_dec_cmp(b->bids[0].price, b->asks[0].price) >= 0) {
        s->crossed++;
    }
    if (b->n_bids < 20 || b->n_asks < 20) {
        s->short_books++;
    }
    for (size_t i = 1; i < b->n_bids; i++) {
        cr_assert_gt(cq_dec_cmp(b->bids[i - 1].price, b->bids[i].price), 0, "bids sorted");
    }
    for (size_t i = 1; i < b->n_asks; i++) {
        cr_assert_lt(cq_dec_cmp(b->asks[i - 1].price, b->asks[i].price), 0, "asks sorted");
    }
    if (b->n_bids > 0) {
        s->bid = b->bids[0].price;
    }
    if (b->n_asks > 0) {
        s->ask = b->asks[0].price;
    }
    if (s->n_order < sizeof(s->order) - 1) {
        s->order[s->n_order++] = 'B';
    }
    s->time_backwards |= t < s->last_time;
    s->last_time = t;
}

static struct cq_sim__market *replay(const struct cq_sim__symbol *syms, size_t n,
                                     const char *recording, int64_t warmup_ms, struct seen *seen)
{
    struct cq_sim__market_options o = {
        .symbols = syms,
        .n_symbols = n,
        .book_recording = recording,
        .book_warmup_ms = warmup_ms,
        .seed = 1,
        .start_ms = START_MS,
        .history_bars = 10,
        .book_levels = 20,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct cq_sim__market_listener l = {on_trade, on_book, NULL, seen};
    cq_sim__market_set_listener(m, &l);
    return m;
}

/* The recording's trades after the warm-up, in order: exact values. */
static void assert_tape_is_recording(const struct seen *seen, const char *const *paths, size_t np,
                                     size_t warmup_events)
{
    struct cq_err err;
    struct cq_sim__recording *r = cq_sim__recording_load(paths, np, NULL, &err);
    cr_assert_not_null(r, "%s", err.message);
    size_t k = 0;
    for (size_t i = warmup_events; i < r->n_events && k < seen->trades; i++) {
        const struct cq_sim__rec_event *e = &r->events[i];
        if (e->kind != SIM_REC_TRADE) {
            continue;
        }
        const struct cq_sim__public_trade *t = &seen->tape[k];
        cr_assert(dec_eq(t->price, e->u.trade.price) && dec_eq(t->qty, e->u.trade.qty) &&
                      t->buyer_is_maker == e->u.trade.buyer_is_maker,
                  "trade %zu differs from recorded trade id %llu", k,
                  (unsigned long long)e->u.trade.id);
        if (k > 0) {
            cr_assert_eq(t->trade_id, seen->tape[k - 1].trade_id + 1);
            /* receive-time spacing kept (to the millisecond) */
            int64_t dt_rec = e->recv_us / 1000;
            (void)dt_rec;
        }
        k++;
    }
    cr_assert_eq(k, seen->trades, "the replay printed trades the recording does not hold");
    cq_sim__recording_free(r);
}

Test(sim_market_replay, btc_2024_snapshot_bootstrap_real_tape_and_book)
{
    if (!have(BTC24A) || !have(BTC24B)) {
        return;
    }
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    struct cq_sim__market *m = replay(&sym, 1, BTC24A "," BTC24B, 0, &seen);
    struct cq_sim__replay_stats st;
    cq_sim__market_replay_stats(m, 0, &st);
    cr_assert(st.replaying);
    /* the REST snapshot is line 8: the warm-up ends right after it */
    cr_assert_eq(st.warmup_events, 8);
    struct cq_sim__book_view b;
    cq_sim__market_book(m, 0, &b);
    cr_assert_eq(b.n_bids, 20);
    cr_assert_eq(b.n_asks, 20);
    /* the snapshot's best bid, the bridging diff's best ask */
    cr_assert(dec_eq(b.bids[0].price, dec("61837.63")));
    cr_assert(dec_eq(b.bids[0].qty, dec("3.78826")));
    cr_assert(dec_eq(b.bids[1].price, dec("61837.62")));
    cr_assert(dec_eq(b.asks[0].price, dec("61837.64")));

    /* 11 minutes of market time replays both files (10.8 min recorded) */
    cq_sim__market_advance(m, START_MS + 660000);
    cq_sim__market_replay_stats(m, 0, &st);
    cr_assert_eq(st.loops, 1, "the recording ran out once");
    cr_assert_eq(seen.crossed, 0);
    cr_assert_eq(seen.short_books, 0);
    cr_assert_not(seen.time_backwards);
    cr_assert_geq(seen.trades, 9757 + 10147 - 5);
    const char *paths[] = {BTC24A, BTC24B};
    /* up to the loop the tape is the recording's */
    struct seen first = seen;
    first.trades = 9757 + 10147 - 1; /* the one trade before the snapshot was warm-up */
    assert_tape_is_recording(&first, paths, 2, 8);
    free(seen.tape);
    cq_sim__market_free(m);
}

/* Does the replay report event i (a book event older than the book is
 * not a change)? Tracks the update ids as the model does. */
struct ids {
    uint64_t depth_u, ticker_u;
};

static bool reported(const struct cq_sim__rec_event *e, struct ids *ids)
{
    switch (e->kind) {
    case SIM_REC_TRADE:
        return true;
    case SIM_REC_BOOK_TICKER:
        if (e->u.ticker.update_id <= ids->depth_u || e->u.ticker.update_id <= ids->ticker_u) {
            return false;
        }
        ids->ticker_u = e->u.ticker.update_id;
        return true;
    case SIM_REC_DEPTH:
        if (e->u.depth.last_update_id <= ids->depth_u) {
            return false;
        }
        ids->depth_u = e->u.depth.last_update_id;
        return true;
    case SIM_REC_SNAPSHOT:
    default:
        ids->depth_u = e->u.depth.last_update_id;
        ids->ticker_u = 0;
        return true;
    }
}

/* Trades and book changes reach the listener in the recorded order. */
Test(sim_market_replay, recorded_order_kept)
{
    if (!have(BTC23)) {
        return;
    }
    struct cq_err err;
    const char *p = BTC23;
    struct cq_sim__recording *r = cq_sim__recording_load(&p, 1, NULL, &err);
    cr_assert_not_null(r);
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    struct cq_sim__market *m = replay(&sym, 1, BTC23, 0, &seen);
    struct cq_sim__replay_stats st;
    cq_sim__market_replay_stats(m, 0, &st);
    size_t w = st.warmup_events;
    /* warm-up: 30 s of the recording */
    cr_assert_gt(r->events[w].recv_us - r->events[0].recv_us, 30000000);
    cr_assert_leq(r->events[w - 1].recv_us - r->events[0].recv_us, 30000000);
    cq_sim__market_advance(m, START_MS + 5000);
    struct ids ids = {0, 0};
    char want[64];
    size_t n = 0;
    for (size_t i = 0; i < r->n_events && n < seen.n_order; i++) {
        bool rep = reported(&r->events[i], &ids);
        if (i >= w && rep) {
            want[n++] = r->events[i].kind == SIM_REC_TRADE ? 'T' : 'B';
        }
    }
    want[n] = '\0';
    seen.order[seen.n_order] = '\0';
    cr_assert_geq(seen.n_order, 60);
    cr_assert(strchr(want, 'T') != NULL && strchr(want, 'B') != NULL);
    cr_assert_str_eq(seen.order, want);
    cr_assert_eq(seen.crossed, 0);
    cr_assert_eq(seen.short_books, 0, "20 levels a side after 30 s of diffs");
    cq_sim__recording_free(r);
    free(seen.tape);
    cq_sim__market_free(m);
}

static void keep_kline(void *ctx, const struct cq_sim__kline *k)
{
    *(struct cq_sim__kline *)ctx = *k;
}

/* The 2023 file has no snapshot: the whole replay stays uncrossed, and
 * every applied bookTicker's best bid and ask is the book's at that
 * moment. The 1m bars hold exactly the replayed trades. */
Test(sim_market_replay, btc_2023_whole_file_book_matches_tickers_and_klines)
{
    if (!have(BTC23)) {
        return;
    }
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    struct cq_sim__market *m = replay(&sym, 1, BTC23, 0, &seen);
    struct cq_sim__replay_stats st;
    cq_sim__market_replay_stats(m, 0, &st);
    struct cq_err err;
    const char *p = BTC23;
    struct cq_sim__recording *r = cq_sim__recording_load(&p, 1, NULL, &err);
    cr_assert_not_null(r);
    int64_t base_us = r->events[st.warmup_events].recv_us;
    struct ids ids = {0, 0};
    size_t checked = 0;
    for (size_t i = 0; i + 1 < r->n_events; i++) {
        const struct cq_sim__rec_event *e = &r->events[i];
        bool rep = reported(e, &ids);
        if (i < st.warmup_events || !rep || e->kind != SIM_REC_BOOK_TICKER) {
            continue;
        }
        /* replay exactly up to this event: nothing later in the same ms */
        int64_t t = (e->recv_us - base_us) / 1000;
        int64_t tn = (r->events[i + 1].recv_us - base_us) / 1000;
        if (tn == t) {
            continue;
        }
        cq_sim__market_advance(m, START_MS + t);
        struct cq_sim__book_view b;
        cq_sim__market_book(m, 0, &b);
        cr_assert(dec_eq(b.bids[0].price, e->u.ticker.bid) &&
                      dec_eq(b.bids[0].qty, e->u.ticker.bid_qty) &&
                      dec_eq(b.asks[0].price, e->u.ticker.ask) &&
                      dec_eq(b.asks[0].qty, e->u.ticker.ask_qty),
                  "event %zu: the book's top is not the recorded bookTicker", i);
        checked++;
    }
    cr_assert_gt(checked, 1000);
    cr_assert_eq(seen.crossed, 0);
    cr_assert_not(seen.time_backwards);
    /* klines: every closed 1m bar is the sum of the replayed trades in it */
    cq_sim__market_advance(m, START_MS + 6 * 60000);
    for (int64_t bar = 0; bar < 6; bar++) {
        int64_t open = START_MS + bar * 60000;
        cq_dec vol = CQ_DEC_ZERO;
        uint32_t count = 0;
        for (size_t i = 0; i < seen.trades; i++) {
            if (seen.tape[i].time_ms >= open && seen.tape[i].time_ms < open + 60000) {
                cr_assert_eq(cq_dec_add(vol, seen.tape[i].qty, &vol), 0);
                count++;
            }
        }
        struct cq_sim__kline k;
        memset(&k, 0, sizeof(k));
        cr_assert_eq(cq_sim__market_klines(m, 0, "1m", open, open, 1, keep_kline, &k), 1);
        cr_assert_eq(k.open_ms, open);
        cr_assert_eq(k.trades, count, "bar %lld: %u trades, replayed %u", (long long)bar, k.trades,
                     count);
        cr_assert(dec_eq(k.volume, vol), "bar %lld volume", (long long)bar);
        cr_assert_gt(count, 100);
    }
    cq_sim__recording_free(r);
    free(seen.tape);
    cq_sim__market_free(m);
}

/* ---- hand-written recordings ------------------------------------------------ */

static char tmp_path[64];

static const char *write_tmp(const char *text)
{
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/cq-replay-XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

/* ms receive times; a book of two levels a side, then trades 100 ms apart */
#define SMALL_REC                                                                                  \
    "1700000000000 {\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,"   \
    "\"U\":10,\"u\":12,\"b\":[[\"100.00\",\"1\"],[\"99.99\",\"2\"]],\"a\":[[\"100.01\",\"3\"],"    \
    "[\"100.02\",\"4\"]]}}\n"                                                                      \
    "1700000000100 {\"stream\":\"btcusdt@trade\",\"data\":{\"t\":5,\"p\":\"100.01\","              \
    "\"q\":\"0.5\",\"T\":1,\"m\":false}}\n"                                                        \
    "1700000000200 {\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":13,\"b\":\"100.00\","        \
    "\"B\":\"1\",\"a\":\"100.01\",\"A\":\"2.5\"}}\n"                                               \
    "1700000000300 {\"stream\":\"btcusdt@trade\",\"data\":{\"t\":6,\"p\":\"100.00\","              \
    "\"q\":\"0.25\",\"T\":1,\"m\":true}}\n"

Test(sim_market_replay, small_recording_loops_and_pauses)
{
    const char *path = write_tmp(SMALL_REC);
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    /* warm-up capped at half the events: the first two */
    struct cq_sim__market *m = replay(&sym, 1, path, 1, &seen);
    struct cq_sim__replay_stats st;
    cq_sim__market_replay_stats(m, 0, &st);
    cr_assert_eq(st.warmup_events, 1, "the depth diff (1 ms warm-up)");
    struct cq_sim__book_view b;
    cq_sim__market_book(m, 0, &b);
    cr_assert_eq(b.n_bids, 2);
    cr_assert(dec_eq(b.asks[1].qty, dec("4")));
    /* the trade at +0 (100 ms after the diff: the first live event at start) */
    cq_sim__market_advance(m, START_MS);
    cr_assert_eq(seen.trades, 1);
    cr_assert_eq(seen.tape[0].time_ms, START_MS);
    cr_assert_eq(seen.tape[0].trade_id, 1);
    cq_sim__market_advance(m, START_MS + 100);
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.asks[0].qty, dec("2.5")), "the bookTicker's ask quantity");
    /* pause 10 s: nothing happens, then the replay goes on where it was */
    cq_sim__market_set_paused(m, true);
    cq_sim__market_advance(m, START_MS + 10150);
    cr_assert_eq(seen.trades, 1);
    cq_sim__market_set_paused(m, false);
    cq_sim__market_advance(m, START_MS + 10150 + 99);
    cr_assert_eq(seen.trades, 1);
    cq_sim__market_advance(m, START_MS + 10150 + 150);
    cr_assert_eq(seen.trades, 2);
    cr_assert_eq(seen.tape[1].time_ms, START_MS + 200 + (10150 - 100), "shifted by the pause: %lld",
                 (long long)seen.tape[1].time_ms);
    cq_sim__market_replay_stats(m, 0, &st);
    cr_assert_eq(st.loops, 1, "the end restarts the replay");
    /* the loop: warm-up again, first live event REC_LOOP_GAP_MS (1 s) later */
    cq_sim__market_advance(m, seen.tape[1].time_ms + 999);
    cr_assert_eq(seen.trades, 2);
    cq_sim__market_advance(m, seen.tape[1].time_ms + 1000);
    cr_assert_eq(seen.trades, 3);
    cr_assert_eq(seen.tape[2].trade_id, 3, "trade ids go on across loops");
    cr_assert(dec_eq(seen.tape[2].price, dec("100.01")));
    free(seen.tape);
    cq_sim__market_free(m);
    unlink(path);
}

Test(sim_market_replay, refused_recordings_name_the_problem)
{
    const char *path = write_tmp(SMALL_REC);
    struct cq_err err;
    struct cq_sim__symbol eth = make_symbol("ETHUSDT", "0.01", "0.0001");
    struct cq_sim__market_options o = {
        .symbols = &eth,
        .n_symbols = 1,
        .book_recording = path,
        .start_ms = START_MS,
    };
    cr_assert_null(cq_sim__market_new(&o, &err));
    cr_assert(strstr(err.message, "records BTCUSDT, which is not one of") != NULL, "%s",
              err.message);
    /* a tick the data does not fit */
    struct cq_sim__symbol coarse = make_symbol("BTCUSDT", "0.1", "0.00001");
    o.symbols = &coarse;
    cr_assert_null(cq_sim__market_new(&o, &err));
    cr_assert(strstr(err.message, "is not a multiple of the tick size 0.1") != NULL, "%s",
              err.message);
    cr_assert(strstr(err.message, path) != NULL, "%s", err.message);
    /* a missing file */
    o.book_recording = "/nonexistent/x.txt.gz";
    cr_assert_null(cq_sim__market_new(&o, &err));
    cr_assert(strstr(err.message, "/nonexistent/x.txt.gz") != NULL, "%s", err.message);
    /* symbols without a recording use the synthetic walk beside one that has */
    struct cq_sim__symbol both[2] = {make_symbol("BTCUSDT", "0.01", "0.00001"),
                                     make_symbol("ETHUSDT", "0.01", "0.0001")};
    o.symbols = both;
    o.n_symbols = 2;
    o.book_recording = path;
    o.book_warmup_ms = 1;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct cq_sim__replay_stats st;
    cq_sim__market_replay_stats(m, 0, &st);
    cr_assert(st.replaying);
    cq_sim__market_replay_stats(m, 1, &st);
    cr_assert_not(st.replaying);
    cr_assert(dec_eq(cq_sim__market_last_price(m, 1), dec("2000")));
    cq_sim__market_free(m);
    unlink(path);
}

/* ---- our trades on the tape (cq_sim__market_print_trade) -------------------- */

static void keep_trade(void *ctx, const struct cq_sim__public_trade *t)
{
    *(struct cq_sim__public_trade *)ctx = *t;
}

Test(sim_market_replay, our_trade_takes_from_the_recorded_book_until_it_changes)
{
    const char *path = write_tmp(SMALL_REC);
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct seen seen;
    memset(&seen, 0, sizeof(seen));
    struct cq_sim__market *m = replay(&sym, 1, path, 1, &seen);
    cq_sim__market_advance(m, START_MS); /* the recorded trade 5 (id 1) */
    struct cq_sim__public_trade t;
    cr_assert_eq(cq_sim__market_print_trade(m, 0, dec("100.01"), dec("1"), false, &t), 0);
    cr_assert_eq(t.trade_id, 2);
    cr_assert_eq(t.time_ms, START_MS);
    struct cq_sim__book_view b;
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.asks[0].qty, dec("2")), "3 - 1");
    /* sweep the rest of the level: the next level is the best ask */
    cr_assert_eq(cq_sim__market_print_trade(m, 0, dec("100.01"), dec("2"), false, &t), 0);
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.asks[0].price, dec("100.02")));
    cr_assert_eq(b.n_asks, 1);
    /* a sell takes from the bids */
    cr_assert_eq(cq_sim__market_print_trade(m, 0, dec("100.00"), dec("0.25"), true, &t), 0);
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.bids[0].qty, dec("0.75")));
    /* the tape and the bar have them, the listener was not called */
    cr_assert_eq(seen.trades, 1);
    struct cq_sim__public_trade last;
    cr_assert_eq(cq_sim__market_trades(m, 0, 0, 0, 0, 1, keep_trade, &last), 1);
    cr_assert_eq(last.trade_id, 4);
    cr_assert(last.buyer_is_maker);
    struct cq_sim__ticker24 tk;
    cq_sim__market_ticker24(m, 0, &tk);
    cr_assert_eq(tk.count, 4);
    cr_assert(dec_eq(tk.volume, dec("3.75")), "0.5 recorded + 1 + 2 + 0.25 ours");
    cr_assert(dec_eq(tk.last, dec("100.00")));
    /* the recording's bookTicker at +100 sets the ask level again */
    cq_sim__market_advance(m, START_MS + 100);
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.asks[0].price, dec("100.01")));
    cr_assert(dec_eq(b.asks[0].qty, dec("2.5")));
    /* off the grids: refused, nothing changes */
    cr_assert_eq(cq_sim__market_print_trade(m, 0, dec("100.015"), dec("1"), false, &t), -CQ_EINVAL);
    cr_assert_eq(cq_sim__market_print_trade(m, 0, dec("100.01"), dec("0.000001"), false, &t),
                 -CQ_EINVAL);
    cq_sim__market_ticker24(m, 0, &tk);
    cr_assert_eq(tk.count, 4);
    free(seen.tape);
    cq_sim__market_free(m);
    unlink(path);
}

Test(sim_market_replay, our_trade_on_the_synthetic_book)
{
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market_options o = {
        .symbols = &sym, .n_symbols = 1, .seed = 3, .start_ms = START_MS, .book_levels = 20};
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct cq_sim__book_view b;
    cq_sim__market_book(m, 0, &b);
    cq_dec ask = b.asks[0].price;
    cq_dec ask_qty = b.asks[0].qty;
    cq_dec next = b.asks[1].price;
    uint64_t u = cq_sim__market_book_update_id(m, 0);
    struct cq_sim__public_trade t;
    cr_assert_eq(cq_sim__market_print_trade(m, 0, ask, ask_qty, false, &t), 0);
    cq_sim__market_book(m, 0, &b);
    cr_assert(dec_eq(b.asks[0].price, next), "the swept level is gone");
    cr_assert_eq(b.n_asks, 19);
    cr_assert_gt(cq_sim__market_book_update_id(m, 0), u);
    struct cq_sim__public_trade last;
    cr_assert_eq(cq_sim__market_trades(m, 0, 0, 0, 0, 1, keep_trade, &last), 1);
    cr_assert_eq(last.trade_id, t.trade_id);
    cr_assert(dec_eq(last.qty, ask_qty));
    cr_assert(dec_eq(cq_sim__market_last_price(m, 0), ask));
    cq_sim__market_free(m);
}
