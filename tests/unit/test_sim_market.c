/*
 * test_sim_market.c — coinquant-simex's market model (server/sim/market.c):
 * CSV replay reproduces every recorded bar exactly (tests/data/sim/ and the
 * real BTCUSDT data in ../shared/data/klines), trades add up to the bar,
 * forming klines at most every 2 s and one close per bar, gaps stay gaps
 * (the real 2023-03-24 halt included), strict CSV errors naming file:line,
 * determinism per seed and independence from how advance() slices time,
 * interval aggregation and alignment (5m, 1h, 1w on Monday, 1M by calendar),
 * klines start/end/limit, book shape, pause, and the continuous loop when
 * the data runs out.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-market.h"
#include "support/shared_data.h"

#define FIXTURE_DIR CQ_SOURCE_DIR "/tests/data/sim"
#define BASIC_CSV FIXTURE_DIR "/basic-1m.csv"
#define LOOP_CSV FIXTURE_DIR "/loop-1m.csv"
#define BTC_CSV CQ_SHARED_DIR "/data/klines/BTCUSDT-1m.csv"

/* 2023-11-14 22:14 UTC plus a few seconds: start floors to the minute. */
#define START_MS 1700000040000LL
#define MIN_MS SIM_MINUTE_MS

/* ---- helpers ---------------------------------------------------------------- */

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "bad decimal in test: %s", s);
    return d;
}

static const char *fmt(cq_dec d, char *buf)
{
    return cq_dec_format(d, buf, CQ_DEC_STR_MAX);
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

enum rec_kind { REC_TRADE, REC_BOOK, REC_KLINE };

struct rec_event {
    enum rec_kind kind;
    int sym;
    int64_t now_ms; /* cq_sim__market_now_ms() inside the callback */
    struct cq_sim__public_trade trade;
    struct cq_sim__kline kline;
    uint64_t book_id;
    int64_t book_ms;
    cq_dec best_bid, best_ask, last_price;
};

struct recorder {
    struct cq_sim__market *m;
    struct rec_event *ev;
    size_t n, cap;
    size_t levels; /* expected levels per side */
    cq_dec tick[4], step[4];
    size_t book_errors;
    char book_error[256];
};

static struct rec_event *rec_push(struct recorder *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap == 0 ? 4096 : r->cap * 2;
        r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
        cr_assert_not_null(r->ev);
    }
    struct rec_event *e = &r->ev[r->n++];
    memset(e, 0, sizeof(*e));
    e->now_ms = cq_sim__market_now_ms(r->m);
    return e;
}

static void on_trade(void *ctx, int idx, const struct cq_sim__public_trade *t)
{
    struct recorder *r = ctx;
    struct rec_event *e = rec_push(r);
    e->kind = REC_TRADE;
    e->sym = idx;
    e->trade = *t;
}

/* Empty string when the book is sane, else the first problem. */
static void check_book(const struct cq_sim__book_view *b, cq_dec tick, cq_dec step, size_t levels,
                       char *why, size_t why_len)
{
    char x[CQ_DEC_STR_MAX], y[CQ_DEC_STR_MAX];
    cq_dec diff;
    why[0] = '\0';
    if (b->n_bids != levels || b->n_asks != levels) {
        snprintf(why, why_len, "levels %zu/%zu, expected %zu", b->n_bids, b->n_asks, levels);
        return;
    }
    /* calibrated (SIM_CAL_SPREAD_WIDE_PER_MILLE): one tick wide, rarely two */
    cq_dec two_ticks;
    cr_assert_eq(cq_dec_add(tick, tick, &two_ticks), 0);
    if (cq_dec_sub(b->asks[0].price, b->bids[0].price, &diff) != 0 ||
        (cq_dec_cmp(diff, tick) != 0 && cq_dec_cmp(diff, two_ticks) != 0)) {
        snprintf(why, why_len, "best bid %s, best ask %s: not one or two ticks apart",
                 fmt(b->bids[0].price, x), fmt(b->asks[0].price, y));
        return;
    }
    if (cq_dec_cmp(b->last_price, b->bids[0].price) != 0 &&
        cq_dec_cmp(b->last_price, b->asks[0].price) != 0) {
        snprintf(why, why_len, "last price %s is neither best bid nor best ask",
                 fmt(b->last_price, x));
        return;
    }
    for (size_t side = 0; side < 2; side++) {
        const struct cq_sim__level *lv = side == 0 ? b->bids : b->asks;
        for (size_t i = 0; i < levels; i++) {
            if (!cq_dec_is_multiple(lv[i].price, tick) || cq_dec_sign(lv[i].price) <= 0) {
                snprintf(why, why_len, "price %s off the tick grid", fmt(lv[i].price, x));
                return;
            }
            if (!cq_dec_is_multiple(lv[i].qty, step) || cq_dec_sign(lv[i].qty) <= 0) {
                snprintf(why, why_len, "qty %s off the step grid", fmt(lv[i].qty, x));
                return;
            }
            if (i > 0) {
                cq_dec gap;
                if (side == 0) {
                    cr_assert_eq(cq_dec_sub(lv[i - 1].price, lv[i].price, &gap), 0);
                } else {
                    cr_assert_eq(cq_dec_sub(lv[i].price, lv[i - 1].price, &gap), 0);
                }
                /* calibrated gaps (SIM_CAL_LEVEL_GAP_PPB): at least a tick */
                if (cq_dec_cmp(gap, tick) < 0) {
                    snprintf(why, why_len, "%s not in order at level %zu",
                             side == 0 ? "bids" : "asks", i);
                    return;
                }
            }
        }
    }
}

static void on_book(void *ctx, int idx, const struct cq_sim__book_view *b, uint64_t update_id,
                    int64_t time_ms)
{
    struct recorder *r = ctx;
    struct rec_event *e = rec_push(r);
    char why[256];
    e->kind = REC_BOOK;
    e->sym = idx;
    e->book_id = update_id;
    e->book_ms = time_ms;
    e->best_bid = b->n_bids > 0 ? b->bids[0].price : CQ_DEC_ZERO;
    e->best_ask = b->n_asks > 0 ? b->asks[0].price : CQ_DEC_ZERO;
    e->last_price = b->last_price;
    if (r->levels > 0) {
        check_book(b, r->tick[idx], r->step[idx], r->levels, why, sizeof(why));
        if (why[0] != '\0' && r->book_errors++ == 0) {
            snprintf(r->book_error, sizeof(r->book_error), "%s", why);
        }
    }
}

static void on_kline(void *ctx, int idx, const struct cq_sim__kline *k)
{
    struct recorder *r = ctx;
    struct rec_event *e = rec_push(r);
    e->kind = REC_KLINE;
    e->sym = idx;
    e->kline = *k;
}

static void rec_attach(struct recorder *r, struct cq_sim__market *m)
{
    memset(r, 0, sizeof(*r));
    r->m = m;
    struct cq_sim__market_listener l = {on_trade, on_book, on_kline, r};
    cq_sim__market_set_listener(m, &l);
}

static void rec_free(struct recorder *r)
{
    free(r->ev);
    r->ev = NULL;
}

static int64_t event_time(const struct rec_event *e)
{
    return e->kind == REC_TRADE ? e->trade.time_ms : e->kind == REC_BOOK ? e->book_ms : e->now_ms;
}

/* One line per event, every field, exact decimals. */
static char *serialize(const struct recorder *r)
{
    size_t cap = r->n * 256 + 1;
    char *out = malloc(cap);
    size_t used = 0;
    cr_assert_not_null(out);
    out[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const struct rec_event *e = &r->ev[i];
        char a[CQ_DEC_STR_MAX], b[CQ_DEC_STR_MAX], c[CQ_DEC_STR_MAX], d[CQ_DEC_STR_MAX],
            v[CQ_DEC_STR_MAX], q[CQ_DEC_STR_MAX];
        int n;
        if (e->kind == REC_TRADE) {
            n = snprintf(out + used, cap - used, "T %d %llu %s %s %lld %d\n", e->sym,
                         (unsigned long long)e->trade.trade_id, fmt(e->trade.price, a),
                         fmt(e->trade.qty, b), (long long)e->trade.time_ms,
                         e->trade.buyer_is_maker);
        } else if (e->kind == REC_BOOK) {
            n = snprintf(out + used, cap - used, "B %d %llu %lld %s %s\n", e->sym,
                         (unsigned long long)e->book_id, (long long)e->book_ms, fmt(e->best_bid, a),
                         fmt(e->best_ask, b));
        } else {
            const struct cq_sim__kline *k = &e->kline;
            n = snprintf(out + used, cap - used, "K %d %lld %lld %s %s %s %s %s %s %u %d\n", e->sym,
                         (long long)e->now_ms, (long long)k->open_ms, fmt(k->open, a),
                         fmt(k->high, b), fmt(k->low, c), fmt(k->close, d), fmt(k->volume, v),
                         fmt(k->quote_volume, q), k->trades, k->closed);
        }
        cr_assert(n > 0 && (size_t)n < cap - used);
        used += (size_t)n;
    }
    return out;
}

/* A test's own reading of a kline CSV (strings kept as written). */
struct csv_row {
    int64_t open_ms;
    char f[5][32]; /* open, high, low, close, volume */
};

static size_t read_csv(const char *path, struct csv_row *rows, size_t max)
{
    FILE *f = fopen(path, "r");
    char line[1100];
    size_t n = 0;
    if (f == NULL) {
        return 0;
    }
    while (n < max && fgets(line, sizeof(line), f) != NULL) {
        if (line[0] < '0' || line[0] > '9') {
            continue;
        }
        char *p = line;
        char *fields[6];
        for (int i = 0; i < 6; i++) {
            fields[i] = p;
            p = strchr(p, ',');
            cr_assert_not_null(p, "%s: short line", path);
            *p++ = '\0';
        }
        rows[n].open_ms = strtoll(fields[0], NULL, 10);
        for (int i = 0; i < 5; i++) {
            snprintf(rows[n].f[i], sizeof(rows[n].f[i]), "%s", fields[i + 1]);
        }
        n++;
    }
    fclose(f);
    return n;
}

static struct cq_sim__market *basic_market(uint64_t seed, size_t history, size_t levels,
                                           const struct cq_sim__symbol *sym)
{
    struct cq_sim__market_options o = {
        .symbols = sym,
        .n_symbols = 1,
        .data_path = BASIC_CSV,
        .seed = seed,
        .start_ms = START_MS + 1234,
        .history_bars = history,
        .book_levels = levels,
    };
    struct cq_err err;
    memset(&err, 0, sizeof(err));
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "sim_market_new: %s (%s)", err.message, err.hint);
    return m;
}

struct kline_list {
    struct cq_sim__kline *k;
    size_t n;
};

static void collect(void *ctx, const struct cq_sim__kline *k)
{
    struct kline_list *l = ctx;
    l->k[l->n++] = *k;
}

static bool dec_eq_str(cq_dec d, const char *s)
{
    char buf[CQ_DEC_STR_MAX];
    return strcmp(fmt(d, buf), s) == 0;
}

/* ---- CSV replay --------------------------------------------------------------- */

Test(sim_market_csv, each_closed_kline_reproduces_its_row_and_its_trades)
{
    struct csv_row rows[16];
    size_t nrows = read_csv(BASIC_CSV, rows, 16);
    cr_assert_eq(nrows, 12);
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market *m = basic_market(7, 2, 5, &sym);
    struct recorder r;
    rec_attach(&r, m);
    r.levels = 5;
    r.tick[0] = sym.filters.tick_size;
    r.step[0] = sym.filters.step_size;

    /* the first replayed row (index 2) opens at the floored start */
    cr_expect_eq(cq_sim__market_now_ms(m), START_MS);
    int64_t offset = START_MS - rows[2].open_ms;
    int64_t last_close = rows[11].open_ms + offset + MIN_MS - 1;
    size_t events = cq_sim__market_advance(m, last_close);
    cr_expect_eq(events, r.n, "advance() counts every callback");
    cr_expect_eq(r.book_errors, 0, "book: %s", r.book_error);

    size_t row = 2;
    uint64_t expect_id = 0;
    int64_t prev_time = INT64_MIN;
    for (size_t i = 0; i < r.n; i++) {
        const struct rec_event *e = &r.ev[i];
        cr_assert_geq(event_time(e), prev_time, "event %zu goes back in time", i);
        prev_time = event_time(e);
        if (e->kind == REC_TRADE) {
            if (expect_id != 0) {
                cr_assert_eq(e->trade.trade_id, expect_id, "trade ids must be consecutive");
            }
            expect_id = e->trade.trade_id + 1;
            cr_assert(i + 1 < r.n && r.ev[i + 1].kind == REC_BOOK,
                      "every trade is followed by a book");
            cr_assert(cq_dec_cmp(r.ev[i + 1].last_price, e->trade.price) == 0);
        }
        if (e->kind != REC_KLINE || !e->kline.closed) {
            continue;
        }
        const struct cq_sim__kline *k = &e->kline;
        const struct csv_row *want = &rows[row];
        cr_assert_lt(row, nrows, "more closed klines than rows");
        cr_assert_eq(k->open_ms, want->open_ms + offset, "row %zu open time", row);
        cr_assert_eq(k->close_ms, k->open_ms + 59999);
        cr_assert_eq(e->now_ms, k->close_ms, "a bar closes at its close time");
        cr_expect(dec_eq_str(k->open, want->f[0]), "row %zu open", row);
        cr_expect(dec_eq_str(k->high, want->f[1]), "row %zu high", row);
        cr_expect(dec_eq_str(k->low, want->f[2]), "row %zu low", row);
        cr_expect(dec_eq_str(k->close, want->f[3]), "row %zu close", row);
        cr_expect(dec_eq_str(k->volume, want->f[4]), "row %zu volume", row);

        /* the trades of this bar */
        cq_dec vol = CQ_DEC_ZERO, quote = CQ_DEC_ZERO, tb = CQ_DEC_ZERO, tbq = CQ_DEC_ZERO;
        uint32_t count = 0;
        uint64_t first = 0, last = 0;
        for (size_t j = 0; j < i; j++) {
            const struct rec_event *t = &r.ev[j];
            if (t->kind != REC_TRADE || t->trade.time_ms < k->open_ms ||
                t->trade.time_ms > k->close_ms) {
                continue;
            }
            cq_dec pq;
            cr_assert(cq_dec_cmp(t->trade.price, k->low) >= 0 &&
                          cq_dec_cmp(t->trade.price, k->high) <= 0,
                      "trade price outside [low, high]");
            cr_assert(cq_dec_is_multiple(t->trade.price, sym.filters.tick_size));
            cr_assert(cq_dec_is_multiple(t->trade.qty, sym.filters.step_size));
            cr_assert_gt(cq_dec_sign(t->trade.qty), 0);
            if (count == 0) {
                first = t->trade.trade_id;
                cr_expect(cq_dec_cmp(t->trade.price, k->open) == 0, "first trade is the open");
            }
            last = t->trade.trade_id;
            cr_assert_eq(cq_dec_add(vol, t->trade.qty, &vol), 0);
            cr_assert_eq(cq_dec_mul(t->trade.price, t->trade.qty, 8, CQ_ROUND_EXACT, &pq), 0);
            cr_assert_eq(cq_dec_add(quote, pq, &quote), 0);
            if (!t->trade.buyer_is_maker) {
                cr_assert_eq(cq_dec_add(tb, t->trade.qty, &tb), 0);
                cr_assert_eq(cq_dec_add(tbq, pq, &tbq), 0);
            }
            count++;
            if (count == k->trades) {
                cr_expect(cq_dec_cmp(t->trade.price, k->close) == 0, "last trade is the close");
            }
        }
        cr_expect_eq(count, k->trades, "row %zu trade count", row);
        cr_expect(cq_dec_cmp(vol, k->volume) == 0, "row %zu: trades add up to the volume", row);
        cr_expect(cq_dec_cmp(quote, k->quote_volume) == 0, "row %zu quote volume", row);
        cr_expect_eq(k->quote_volume.scale, 8);
        cr_expect(cq_dec_cmp(tb, k->taker_buy_base) == 0, "row %zu taker buy base", row);
        cr_expect(cq_dec_cmp(tbq, k->taker_buy_quote) == 0, "row %zu taker buy quote", row);
        cr_expect_eq(k->first_trade_id, first);
        cr_expect_eq(k->last_trade_id, last);
        if (cq_dec_is_zero(k->volume)) {
            cr_expect_eq(k->trades, 0, "a zero-volume bar has no trades");
        } else {
            cr_expect_geq(k->trades, 1);
            cr_expect_leq(k->trades, SIM_CAL_TRADES_PER_MINUTE_MAX);
        }
        row++;
    }
    cr_expect_eq(row, nrows, "one closed kline per replayed row");

    /* the history rows exist as closed klines, with real trades */
    struct cq_sim__kline hist[16];
    struct kline_list hc = {hist, 0};
    cr_assert_eq(
        cq_sim__market_klines(m, 0, "1m", START_MS - 2 * MIN_MS, START_MS - 1, 10, collect, &hc),
        2);
    cr_expect(dec_eq_str(hist[0].open, rows[0].f[0]) && dec_eq_str(hist[0].close, rows[0].f[3]));
    cr_expect(dec_eq_str(hist[1].volume, rows[1].f[4]));
    cr_expect(hist[0].closed && hist[1].closed);
    cr_expect_eq(hist[0].first_trade_id, 1, "trade ids start at 1 with the history");
    /* the first replayed trade (calibrated trade counts: a small bar may
     * push its forming kline before its first trade) */
    size_t ft = 0;
    while (ft < r.n && r.ev[ft].kind != REC_TRADE) {
        ft++;
    }
    cr_assert_lt(ft, r.n);
    cr_expect_eq(hist[1].last_trade_id + 1, r.ev[ft].trade.trade_id,
                 "replayed trades continue the history's ids");
    rec_free(&r);
    cq_sim__market_free(m);
}

Test(sim_market_csv, forming_klines_every_2s_and_one_close_per_bar)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market *m = basic_market(11, 2, 5, &sym);
    struct recorder r;
    rec_attach(&r, m);
    cq_sim__market_advance(m, START_MS + 12 * MIN_MS);

    int64_t last_forming = INT64_MIN / 2;
    size_t forming = 0;
    size_t closes_per_bar[16] = {0};
    size_t forming_per_bar[16] = {0};
    for (size_t i = 0; i < r.n; i++) {
        const struct rec_event *e = &r.ev[i];
        if (e->kind != REC_KLINE) {
            continue;
        }
        const struct cq_sim__kline *k = &e->kline;
        size_t bar = (size_t)((k->open_ms - START_MS) / MIN_MS);
        cr_assert_lt(bar, 16);
        if (k->closed) {
            closes_per_bar[bar]++;
            continue;
        }
        forming++;
        forming_per_bar[bar]++;
        cr_assert_geq(e->now_ms - last_forming, 2000, "forming klines %lld and %lld too close",
                      (long long)last_forming, (long long)e->now_ms);
        last_forming = e->now_ms;
        cr_assert(e->now_ms >= k->open_ms && e->now_ms < k->close_ms,
                  "a forming kline is pushed inside its bar");
        cr_assert_eq((e->now_ms - k->open_ms) % 2000, 0, "pushed on the 2 s grid");
        /* it shows exactly the trades of its bar so far */
        cq_dec vol = CQ_DEC_ZERO;
        uint32_t n = 0;
        for (size_t j = 0; j < i; j++) {
            const struct rec_event *t = &r.ev[j];
            if (t->kind == REC_TRADE && t->trade.time_ms >= k->open_ms &&
                t->trade.time_ms <= e->now_ms) {
                cr_assert_eq(cq_dec_add(vol, t->trade.qty, &vol), 0);
                n++;
            }
        }
        cr_expect_eq(n, k->trades);
        cr_expect(cq_dec_cmp(vol, k->volume) == 0);
    }
    cr_expect_gt(forming, 10);
    /* replayed rows 2..11 sit at bars 0..3 and 7..12 (rows 5->6 skip 3 minutes) */
    for (size_t bar = 0; bar < 12; bar++) {
        bool in_gap = bar >= 4 && bar <= 6;
        cr_expect_eq(closes_per_bar[bar], in_gap ? 0 : 1, "bar %zu closes %zu times", bar,
                     closes_per_bar[bar]);
        /* every 2 s mark of a bar (open + 2000 … open + 58000), changed or
         * not, like Binance's 2000 ms kline update speed; none in a gap */
        cr_expect_eq(forming_per_bar[bar], in_gap ? 0 : 29, "bar %zu has %zu forming pushes", bar,
                     forming_per_bar[bar]);
    }
    rec_free(&r);
    cq_sim__market_free(m);
}

Test(sim_market_csv, gaps_stay_gaps)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market *m = basic_market(3, 2, 5, &sym);
    struct recorder r;
    rec_attach(&r, m);
    int64_t gap_from = START_MS + 4 * MIN_MS, gap_to = START_MS + 7 * MIN_MS;
    /* stop inside the gap: nothing is scheduled there */
    cq_sim__market_advance(m, gap_from + 1000);
    cr_expect_eq(cq_sim__market_next_event_ms(m) >= gap_to, true,
                 "the next event after the gap's start is at its end");
    cq_sim__market_advance(m, START_MS + 12 * MIN_MS);
    for (size_t i = 0; i < r.n; i++) {
        int64_t t = event_time(&r.ev[i]);
        cr_assert(t < gap_from || t >= gap_to, "event at %lld inside the gap", (long long)t);
    }
    struct cq_sim__kline k[32];
    struct kline_list l = {k, 0};
    /* bars 0..3 and 7..12 (12 forming) */
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", START_MS, 0, 100, collect, &l), 10);
    for (size_t i = 0; i < l.n; i++) {
        cr_expect(k[i].open_ms < gap_from || k[i].open_ms >= gap_to);
    }
    cr_expect_eq(k[3].open_ms + 4 * MIN_MS, k[4].open_ms, "the 1m list jumps over the gap");
    /* a 5m bucket covering part of the gap aggregates what exists */
    struct cq_sim__kline k5[8];
    struct kline_list l5 = {k5, 0};
    int64_t b5 = (START_MS + 4 * MIN_MS) / (5 * MIN_MS) * (5 * MIN_MS);
    cr_assert_eq(cq_sim__market_klines(m, 0, "5m", b5, b5, 10, collect, &l5), 1);
    rec_free(&r);
    cq_sim__market_free(m);
}

Test(sim_market_csv, data_directory_with_several_symbols)
{
    struct cq_sim__symbol syms[2] = {make_symbol("basic", "0.01", "0.001"),
                                     make_symbol("loop", "0.01", "0.001")};
    struct cq_sim__market_options o = {
        .symbols = syms,
        .n_symbols = 2,
        .data_path = FIXTURE_DIR,
        .seed = 1,
        .start_ms = START_MS,
        .history_bars = 0,
        .book_levels = 3,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 0), "100.00"));
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 1), "10.00"));
    struct recorder r;
    rec_attach(&r, m);
    r.levels = 3;
    r.tick[0] = r.tick[1] = syms[0].filters.tick_size;
    r.step[0] = r.step[1] = syms[0].filters.step_size;
    cq_sim__market_advance(m, START_MS + 3 * MIN_MS);
    cr_expect_eq(r.book_errors, 0, "%s", r.book_error);
    bool seen[2] = {false, false};
    for (size_t i = 1; i < r.n; i++) {
        cr_assert_geq(event_time(&r.ev[i]), event_time(&r.ev[i - 1]),
                      "events of all symbols in one time order");
        seen[r.ev[i].sym] = true;
    }
    cr_expect(seen[0] && seen[1]);
    rec_free(&r);
    cq_sim__market_free(m);

    /* a symbol without a file is named */
    syms[1] = make_symbol("NOPEUSDT", "0.01", "0.001");
    m = cq_sim__market_new(&o, &err);
    cr_assert_null(m);
    cr_expect_not_null(strstr(err.message, "NOPEUSDT-1m.csv"), "%s", err.message);
}

/* ---- CSV errors -------------------------------------------------------------------- */

static void expect_load_error(const char *path, const char *where, const char *what)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market_options o = {
        .symbols = &sym,
        .n_symbols = 1,
        .data_path = path,
        .seed = 1,
        .start_ms = START_MS,
        .history_bars = 0,
        .book_levels = 5,
    };
    struct cq_err err;
    memset(&err, 0, sizeof(err));
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_null(m, "%s loaded", path);
    cr_expect_not_null(strstr(err.message, where), "'%s' does not name %s", err.message, where);
    cr_expect_not_null(strstr(err.message, what), "'%s' does not say %s", err.message, what);
    cr_expect_neq(err.code, 0);
}

Test(sim_market_csv_errors, each_bad_file_is_named_with_its_line)
{
    static const struct {
        const char *file, *line, *what;
    } cases[] = {
        {"bad-order-1m.csv", ":4: ", "not after the previous row"},
        {"bad-highlow-1m.csv", ":4: ", "high 10.10 is below low 10.60"},
        {"bad-number-1m.csv", ":2: ", "close '1O.20' is not a decimal number"},
        {"bad-tick-1m.csv", ":3: ", "not a multiple of the symbol's tick size 0.01"},
        {"bad-flat-1m.csv", ":2: ", "volume is 0 but open/high/low/close differ"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[512];
        char where[600];
        snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, cases[i].file);
        snprintf(where, sizeof(where), "%s%s", path, cases[i].line);
        expect_load_error(path, where, cases[i].what);
    }
}

Test(sim_market_csv_errors, too_long_line)
{
    char path[] = "/tmp/test_sim_market_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fprintf(f, "open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades\n");
    fprintf(f, "1700000040000,10.00,10.50,9.50,10.20,1.000,1700000099999,,\n");
    fprintf(f, "1700000100000,10.20,10.40,10.00,10.30,2.000,1700000159999,");
    for (int i = 0; i < 1100; i++) {
        fputc('0', f);
    }
    fprintf(f, ",\n");
    fclose(f);
    char where[600];
    snprintf(where, sizeof(where), "%s:3: ", path);
    expect_load_error(path, where, "longer than 1024 bytes");
    unlink(path);
}

Test(sim_market_csv_errors, missing_file)
{
    expect_load_error(FIXTURE_DIR "/no-such-1m.csv", FIXTURE_DIR "/no-such-1m.csv", "cannot open");
}

Test(sim_market_csv_errors, bad_options)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market_options o = {.symbols = &sym, .n_symbols = 1, .book_levels = 101};
    struct cq_err err;
    cr_expect_null(cq_sim__market_new(&o, &err), "book_levels above SIM_DEPTH_MAX");
    o.book_levels = 5;
    sym.filters.tick_size = CQ_DEC_ZERO;
    cr_expect_null(cq_sim__market_new(&o, &err), "a zero tick size");
    o.n_symbols = 0;
    cr_expect_null(cq_sim__market_new(&o, &err), "no symbols");
}

/* ---- determinism --------------------------------------------------------------------- */

static struct cq_sim__market *synth_market(uint64_t seed, int64_t start_ms, size_t history,
                                           const struct cq_sim__symbol *syms, size_t n)
{
    struct cq_sim__market_options o = {
        .symbols = syms,
        .n_symbols = n,
        .data_path = NULL,
        .seed = seed,
        .start_ms = start_ms,
        .history_bars = history,
        .book_levels = 10,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    return m;
}

static char *run_synth(uint64_t seed, int64_t step_ms)
{
    struct cq_sim__symbol syms[2] = {make_symbol("BTCUSDT", "0.01", "0.00001"),
                                     make_symbol("DOGEUSDT", "0.00001", "1")};
    struct cq_sim__market *m = synth_market(seed, START_MS, 50, syms, 2);
    struct recorder r;
    rec_attach(&r, m);
    int64_t end = START_MS + 20 * MIN_MS;
    for (int64_t t = START_MS; t < end; t += step_ms) {
        cq_sim__market_advance(m, t);
    }
    cq_sim__market_advance(m, end);
    char *s = serialize(&r);
    rec_free(&r);
    cq_sim__market_free(m);
    return s;
}

Test(sim_market_determinism, same_seed_same_events_whatever_the_slicing)
{
    char *a = run_synth(42, 20 * MIN_MS);
    char *b = run_synth(42, 20 * MIN_MS);
    char *c = run_synth(42, 777);
    char *d = run_synth(43, 20 * MIN_MS);
    cr_expect_gt(strlen(a), 10000);
    cr_expect_str_eq(a, b, "same seed, same calls: identical events");
    cr_expect_str_eq(a, c, "slicing time into 777 ms steps changes nothing");
    cr_expect_str_neq(a, d, "another seed, another path");
    free(a);
    free(b);
    free(c);
    free(d);
}

Test(sim_market_determinism, different_seed_different_synthetic_path_same_csv_bars)
{
    struct cq_sim__symbol sym = make_symbol("ETHUSDT", "0.01", "0.0001");
    struct cq_sim__market *a = synth_market(1, START_MS, 0, &sym, 1);
    struct cq_sim__market *b = synth_market(2, START_MS, 0, &sym, 1);
    cr_expect(dec_eq_str(cq_sim__market_last_price(a, 0), "2000.00"), "ETHUSDT starts at 2000");
    cq_sim__market_advance(a, START_MS + 30 * MIN_MS);
    cq_sim__market_advance(b, START_MS + 30 * MIN_MS);
    cr_expect(cq_dec_cmp(cq_sim__market_last_price(a, 0), cq_sim__market_last_price(b, 0)) != 0);
    cq_sim__market_free(a);
    cq_sim__market_free(b);

    /* with data the bars are the data's whatever the seed; the trades differ */
    struct cq_sim__symbol t = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market *c = basic_market(1, 2, 5, &t);
    struct cq_sim__market *d = basic_market(2, 2, 5, &t);
    struct recorder rc, rd;
    rec_attach(&rc, c);
    rec_attach(&rd, d);
    cq_sim__market_advance(c, START_MS + 12 * MIN_MS);
    cq_sim__market_advance(d, START_MS + 12 * MIN_MS);
    char *sc = serialize(&rc);
    char *sd = serialize(&rd);
    cr_expect_str_neq(sc, sd);
    size_t closed_c = 0;
    for (size_t i = 0, j = 0; i < rc.n; i++) {
        if (rc.ev[i].kind != REC_KLINE || !rc.ev[i].kline.closed) {
            continue;
        }
        while (j < rd.n && !(rd.ev[j].kind == REC_KLINE && rd.ev[j].kline.closed)) {
            j++;
        }
        cr_assert_lt(j, rd.n);
        const struct cq_sim__kline *x = &rc.ev[i].kline, *y = &rd.ev[j].kline;
        cr_expect(x->open_ms == y->open_ms && cq_dec_cmp(x->open, y->open) == 0 &&
                  cq_dec_cmp(x->high, y->high) == 0 && cq_dec_cmp(x->low, y->low) == 0 &&
                  cq_dec_cmp(x->close, y->close) == 0 && cq_dec_cmp(x->volume, y->volume) == 0);
        closed_c++;
        j++;
    }
    cr_expect_eq(closed_c, 9, "bars 0..3 and 7..11 closed; 12 forms");
    free(sc);
    free(sd);
    rec_free(&rc);
    rec_free(&rd);
    cq_sim__market_free(c);
    cq_sim__market_free(d);
}

Test(sim_market_synthetic, realistic_start_prices_on_the_grid)
{
    struct cq_sim__symbol syms[4] = {
        make_symbol("BTCUSDT", "0.01", "0.00001"), make_symbol("ETHUSDT", "0.01", "0.0001"),
        make_symbol("DOGEUSDT", "0.00001", "1"), make_symbol("SOLUSDT", "0.01", "0.001")};
    struct cq_sim__market *m = synth_market(5, START_MS, 0, syms, 4);
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 0), "30000.00"));
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 1), "2000.00"));
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 2), "0.07000"));
    cr_expect(dec_eq_str(cq_sim__market_last_price(m, 3), "100.00"));
    struct recorder r;
    rec_attach(&r, m);
    r.levels = 10;
    for (int i = 0; i < 4; i++) {
        r.tick[i] = syms[i].filters.tick_size;
        r.step[i] = syms[i].filters.step_size;
    }
    cq_sim__market_advance(m, START_MS + 60 * MIN_MS);
    cr_expect_eq(r.book_errors, 0, "%s", r.book_error);
    size_t trades = 0;
    for (size_t i = 0; i < r.n; i++) {
        const struct rec_event *e = &r.ev[i];
        if (e->kind == REC_TRADE) {
            cr_assert(cq_dec_is_multiple(e->trade.price, syms[e->sym].filters.tick_size));
            cr_assert(cq_dec_is_multiple(e->trade.qty, syms[e->sym].filters.step_size));
            trades++;
        }
    }
    /* calibrated: a bar's quote volume (0.2..3 x 300,000) over the mean
     * trade's SIM_CAL_TRADE_QUOTE_MEAN (932), +-20% */
    cr_expect_geq(trades, 4 * 60 * 50);
    cr_expect_leq(trades, 4 * 60 * 1200);
    /* an hour of random walk stays near its start (10%) */
    cr_expect(cq_dec_cmp(cq_sim__market_last_price(m, 0), dec("27000")) > 0 &&
              cq_dec_cmp(cq_sim__market_last_price(m, 0), dec("33000")) < 0);
    rec_free(&r);
    cq_sim__market_free(m);
}

/* ---- aggregation and klines queries -------------------------------------------------------- */

Test(sim_market_klines, aggregates_equal_their_1m_bars)
{
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market *m = synth_market(9, START_MS, 3000, &sym, 1);
    cq_sim__market_advance(m, START_MS + 30 * MIN_MS + 12345);
    static struct cq_sim__kline ones[4000];
    struct kline_list l1 = {ones, 0};
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", 1, 0, 4000, collect, &l1), 3031);
    cr_expect_not(ones[3030].closed, "the newest 1m bar is forming");
    cr_expect(ones[3029].closed);
    static const char *const ivs[] = {"3m", "5m", "15m", "1h", "4h", "1d"};
    for (size_t v = 0; v < sizeof(ivs) / sizeof(ivs[0]); v++) {
        int64_t iv = cq_sim__interval_ms(ivs[v]);
        static struct cq_sim__kline agg[2000];
        struct kline_list la = {agg, 0};
        int n = cq_sim__market_klines(m, 0, ivs[v], 1, 0, 2000, collect, &la);
        cr_assert_gt(n, 0);
        size_t j = 0;
        for (int b = 0; b < n; b++) {
            const struct cq_sim__kline *k = &agg[b];
            cr_assert_eq(k->open_ms % iv, 0, "%s bucket aligned", ivs[v]);
            cr_assert_eq(k->close_ms, k->open_ms + iv - 1);
            cq_dec hi = ones[j].high, lo = ones[j].low, vol = CQ_DEC_ZERO, q = CQ_DEC_ZERO;
            uint32_t trades = 0;
            size_t first = j;
            for (; j < l1.n && ones[j].open_ms <= k->close_ms; j++) {
                cr_assert_geq(ones[j].open_ms, k->open_ms);
                hi = cq_dec_max(hi, ones[j].high);
                lo = cq_dec_min(lo, ones[j].low);
                cr_assert_eq(cq_dec_add(vol, ones[j].volume, &vol), 0);
                cr_assert_eq(cq_dec_add(q, ones[j].quote_volume, &q), 0);
                trades += ones[j].trades;
            }
            cr_assert_gt(j, first);
            cr_expect(cq_dec_cmp(k->open, ones[first].open) == 0, "%s open", ivs[v]);
            cr_expect(cq_dec_cmp(k->close, ones[j - 1].close) == 0, "%s close", ivs[v]);
            cr_expect(cq_dec_cmp(k->high, hi) == 0, "%s high", ivs[v]);
            cr_expect(cq_dec_cmp(k->low, lo) == 0, "%s low", ivs[v]);
            cr_expect(cq_dec_cmp(k->volume, vol) == 0, "%s volume", ivs[v]);
            cr_expect(cq_dec_cmp(k->quote_volume, q) == 0, "%s quote volume", ivs[v]);
            cr_expect_eq(k->trades, trades);
            cr_expect_eq(k->first_trade_id, ones[first].first_trade_id);
            cr_expect_eq(k->last_trade_id, ones[j - 1].last_trade_id);
            cr_expect_eq(k->closed, b < n - 1, "%s: only the newest bucket forms", ivs[v]);
        }
        cr_expect_eq(j, l1.n, "%s buckets cover every 1m bar", ivs[v]);
    }
    cq_sim__market_free(m);
}

Test(sim_market_klines, week_starts_monday_month_is_calendar)
{
    /* 2024-03-01 00:30 UTC (a Friday), 3000 minutes of history: from Feb 28 */
    const int64_t start = 1709253000000LL;
    const int64_t feb1 = 1706745600000LL, mar1 = 1709251200000LL, apr1 = 1711929600000LL;
    const int64_t mon = 1708905600000LL; /* Monday 2024-02-26 */
    struct cq_sim__symbol sym = make_symbol("ETHUSDT", "0.01", "0.0001");
    struct cq_sim__market *m = synth_market(4, start, 3000, &sym, 1);
    struct cq_sim__kline k[8];
    struct kline_list l = {k, 0};
    cr_assert_eq(cq_sim__market_klines(m, 0, "1M", 0, 0, 10, collect, &l), 2);
    cr_expect_eq(k[0].open_ms, feb1);
    cr_expect_eq(k[0].close_ms, mar1 - 1);
    cr_expect(k[0].closed, "February is over");
    cr_expect_eq(k[1].open_ms, mar1);
    cr_expect_eq(k[1].close_ms, apr1 - 1);
    cr_expect_not(k[1].closed);
    l.n = 0;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1w", 0, 0, 10, collect, &l), 1);
    cr_expect_eq(k[0].open_ms, mon);
    cr_expect_eq(k[0].close_ms, mon + 7 * 86400000LL - 1);
    l.n = 0;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1d", 0, 0, 10, collect, &l), 4,
                 "Feb 27, 28, 29, Mar 1");
    cr_expect_eq(k[2].open_ms, mar1 - 86400000LL);
    cr_expect_eq(k[3].open_ms, mar1);
    cr_expect_eq(cq_sim__interval_ms("1M"), 30 * 86400000LL);
    cr_expect_eq(cq_sim__interval_ms("1w"), 7 * 86400000LL);
    cr_expect_eq(cq_sim__interval_ms("1m"), 60000);
    cr_expect_eq(cq_sim__interval_ms("2h"), 7200000);
    cr_expect_eq(cq_sim__interval_ms("7m"), -1);
    cr_expect_eq(cq_sim__market_klines(m, 0, "7m", 0, 0, 10, collect, &l), -CQ_EINVAL);
    cr_expect_eq(cq_sim__market_klines(m, 5, "1m", 0, 0, 10, collect, &l), -CQ_EINVAL);
    cq_sim__market_free(m);
}

Test(sim_market_klines, start_end_limit_like_binance)
{
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market *m = synth_market(6, START_MS, 1000, &sym, 1);
    cq_sim__market_advance(m, START_MS + 90 * 1000);
    int64_t now = cq_sim__market_now_ms(m);
    static struct cq_sim__kline k[1200];
    struct kline_list l = {k, 0};

    /* no start: the newest `limit`, chronological, the forming one last */
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", 0, 0, 5, collect, &l), 5);
    cr_expect_eq(k[4].open_ms, START_MS + MIN_MS, "the newest is the forming bar");
    cr_expect_not(k[4].closed);
    for (int i = 1; i < 5; i++) {
        cr_expect_eq(k[i].open_ms, k[i - 1].open_ms + MIN_MS);
    }
    /* limit 0: Binance's default 500 */
    l.n = 0;
    cr_expect_eq(cq_sim__market_klines(m, 0, "1m", 0, 0, 0, collect, &l), 500);
    /* start: the oldest `limit` at or after it */
    l.n = 0;
    int64_t from = START_MS - 100 * MIN_MS + 1;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", from, 0, 3, collect, &l), 3);
    cr_expect_eq(k[0].open_ms, START_MS - 99 * MIN_MS, "first open at or after start");
    cr_expect_eq(k[2].open_ms, START_MS - 97 * MIN_MS);
    /* start and end */
    l.n = 0;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", START_MS - 10 * MIN_MS, START_MS - 6 * MIN_MS,
                                       100, collect, &l),
                 5);
    cr_expect_eq(k[4].open_ms, START_MS - 6 * MIN_MS);
    /* end only: newest with open <= end */
    l.n = 0;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", 0, START_MS - 6 * MIN_MS - 1, 2, collect, &l),
                 2);
    cr_expect_eq(k[1].open_ms, START_MS - 7 * MIN_MS);
    cr_expect(k[1].closed);
    /* end inside a 1h bucket returns that whole bucket */
    l.n = 0;
    int64_t hour = (START_MS - 200 * MIN_MS) / 3600000 * 3600000;
    cr_assert_eq(cq_sim__market_klines(m, 0, "1h", 0, hour + 1, 1, collect, &l), 1);
    cr_expect_eq(k[0].open_ms, hour);
    struct cq_sim__kline ones[60];
    struct kline_list l1 = {ones, 0};
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", hour, hour + 3599999, 60, collect, &l1), 60);
    cr_expect(cq_dec_cmp(k[0].close, ones[59].close) == 0);
    /* a start after now: nothing */
    l.n = 0;
    cr_expect_eq(cq_sim__market_klines(m, 0, "1m", now + 1, 0, 10, collect, &l), 0);
    cq_sim__market_free(m);
}

Test(sim_market_ticker, rolling_24h_and_the_book)
{
    struct cq_sim__symbol sym = make_symbol("DOGEUSDT", "0.00001", "1");
    struct cq_sim__market *m = synth_market(8, START_MS, 2000, &sym, 1);
    cq_sim__market_advance(m, START_MS + 5 * MIN_MS + 30000);
    int64_t now = cq_sim__market_now_ms(m);
    struct cq_sim__ticker24 t;
    cq_sim__market_ticker24(m, 0, &t);
    cr_expect_eq(t.close_ms, now);
    cr_expect_eq(t.open_ms, now - 86400000LL);
    static struct cq_sim__kline k[1500];
    struct kline_list l = {k, 0};
    cr_assert_eq(cq_sim__market_klines(m, 0, "1m", now - 86400000LL + 1, 0, 1500, collect, &l),
                 1440);
    cq_dec vol = CQ_DEC_ZERO, hi = k[0].high, lo = k[0].low;
    uint64_t count = 0;
    for (size_t i = 0; i < l.n; i++) {
        cr_assert_eq(cq_dec_add(vol, k[i].volume, &vol), 0);
        hi = cq_dec_max(hi, k[i].high);
        lo = cq_dec_min(lo, k[i].low);
        count += k[i].trades;
    }
    cr_expect(cq_dec_cmp(t.volume, vol) == 0);
    cr_expect(cq_dec_cmp(t.open, k[0].open) == 0);
    cr_expect(cq_dec_cmp(t.high, hi) == 0);
    cr_expect(cq_dec_cmp(t.low, lo) == 0);
    cr_expect_eq(t.count, count);
    cr_expect_eq(t.last_id - t.first_id + 1, count);
    cr_expect(cq_dec_cmp(t.last, cq_sim__market_last_price(m, 0)) == 0);
    struct cq_sim__book_view b;
    cq_sim__market_book(m, 0, &b);
    cr_expect(cq_dec_cmp(t.bid, b.bids[0].price) == 0 && cq_dec_cmp(t.ask, b.asks[0].price) == 0);
    cr_expect(cq_dec_cmp(t.bid_qty, b.bids[0].qty) == 0);
    cr_expect_gt(cq_dec_sign(t.last_qty), 0);
    cq_sim__market_free(m);
}

/* ---- book ------------------------------------------------------------------------------ */

Test(sim_market_book, shape_after_every_trade)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market *m = basic_market(21, 2, 20, &sym);
    struct cq_sim__book_view b;
    char why[256];
    cq_sim__market_book(m, 0, &b);
    check_book(&b, sym.filters.tick_size, sym.filters.step_size, 20, why, sizeof(why));
    cr_expect_str_eq(why, "", "initial book");
    uint64_t id0 = cq_sim__market_book_update_id(m, 0);
    struct recorder r;
    rec_attach(&r, m);
    r.levels = 20;
    r.tick[0] = sym.filters.tick_size;
    r.step[0] = sym.filters.step_size;
    cq_sim__market_advance(m, START_MS + 12 * MIN_MS);
    cr_expect_eq(r.book_errors, 0, "%s", r.book_error);
    uint64_t prev = id0;
    size_t books = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.ev[i].kind == REC_BOOK) {
            cr_assert_eq(r.ev[i].book_id, prev + 1, "update ids count up");
            prev = r.ev[i].book_id;
            books++;
        }
    }
    cr_expect_gt(books, 20);
    cr_expect_eq(cq_sim__market_book_update_id(m, 0), prev);
    cq_sim__market_book(m, 0, &b);
    check_book(&b, sym.filters.tick_size, sym.filters.step_size, 20, why, sizeof(why));
    cr_expect_str_eq(why, "");
    /* calibrated depth (SIM_CAL_LEVEL_DEPTH_X100): the best level holds about
     * 92 mean trades, the others 0.7..4, each x U[0.5, 1.5]: the best level
     * is always the largest */
    for (size_t i = 1; i < 20; i++) {
        cr_expect(cq_dec_cmp(b.bids[0].qty, b.bids[i].qty) > 0, "bid 0 not above level %zu", i);
        cr_expect(cq_dec_cmp(b.asks[0].qty, b.asks[i].qty) > 0, "ask 0 not above level %zu", i);
    }
    cq_sim__market_free(m);
    rec_free(&r);
}

/* ---- pause -------------------------------------------------------------------------------- */

Test(sim_market_pause, time_moves_nothing_is_emitted_price_holds)
{
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market *m = synth_market(12, START_MS, 10, &sym, 1);
    struct recorder r;
    rec_attach(&r, m);
    int64_t pause_at = START_MS + 3 * MIN_MS + 20000;
    cq_sim__market_advance(m, pause_at);
    size_t before = r.n;
    cq_dec price = cq_sim__market_last_price(m, 0);
    uint64_t book_id = cq_sim__market_book_update_id(m, 0);
    uint64_t last_id = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.ev[i].kind == REC_TRADE) {
            last_id = r.ev[i].trade.trade_id;
        }
    }
    cq_sim__market_set_paused(m, true);
    cq_sim__market_set_paused(m, true); /* idempotent */
    cr_expect_eq(cq_sim__market_next_event_ms(m), INT64_MAX);
    int64_t resume_at = pause_at + 10 * MIN_MS + 5000;
    for (int64_t t = pause_at; t <= resume_at; t += 1000) {
        cr_expect_eq(cq_sim__market_advance(m, t), 0);
    }
    cr_expect_eq(r.n, before, "nothing emitted while paused");
    cr_expect_eq(cq_sim__market_now_ms(m), resume_at, "time moved");
    cr_expect(cq_dec_cmp(cq_sim__market_last_price(m, 0), price) == 0, "price held");
    cr_expect_eq(cq_sim__market_book_update_id(m, 0), book_id, "book held");
    struct cq_sim__ticker24 t;
    cq_sim__market_ticker24(m, 0, &t);
    cr_expect(cq_dec_cmp(t.last, price) == 0);

    cq_sim__market_set_paused(m, false);
    cq_sim__market_set_paused(m, false);
    cr_expect_gt(cq_sim__market_advance(m, resume_at + 3 * MIN_MS), 0, "the market resumes");
    bool first = true;
    for (size_t i = before; i < r.n; i++) {
        cr_assert_gt(event_time(&r.ev[i]), resume_at, "nothing dated inside the pause");
        if (r.ev[i].kind == REC_TRADE && first) {
            cr_expect_eq(r.ev[i].trade.trade_id, last_id + 1, "trade ids stay consecutive");
            first = false;
        }
    }
    /* the bar cut by the pause closed; the paused minutes are a gap */
    struct cq_sim__kline k[32];
    struct kline_list l = {k, 0};
    int n = cq_sim__market_klines(m, 0, "1m", START_MS, 0, 32, collect, &l);
    cr_assert_eq(n, 4 + 3, "bars 0..3, then the three after resume");
    cr_expect(k[3].closed);
    cr_expect_eq(k[3].open_ms, START_MS + 3 * MIN_MS);
    cr_expect_eq(k[4].open_ms, (resume_at / MIN_MS + 1) * MIN_MS,
                 "the next bar opens at the first minute after resume");
    cr_expect(cq_dec_cmp(k[4].open, price) == 0, "the walk resumes from the held price");
    rec_free(&r);
    cq_sim__market_free(m);
}

/* ---- data exhaustion ------------------------------------------------------------------------ */

Test(sim_market_loop, restarts_rescaled_and_continuous)
{
    struct cq_sim__symbol sym = make_symbol("TESTUSDT", "0.01", "0.001");
    struct cq_sim__market_options o = {
        .symbols = &sym,
        .n_symbols = 1,
        .data_path = LOOP_CSV,
        .seed = 5,
        .start_ms = START_MS,
        .history_bars = 0,
        .book_levels = 5,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct recorder r;
    rec_attach(&r, m);
    r.levels = 5;
    r.tick[0] = sym.filters.tick_size;
    r.step[0] = sym.filters.step_size;
    /* rows at +0, +1, +4, +5 minutes; loops of 6 minutes */
    cq_sim__market_advance(m, START_MS + 13 * MIN_MS - 1);
    cr_expect_eq(r.book_errors, 0, "%s", r.book_error);
    static const struct {
        int64_t minute;
        const char *o, *h, *l, *c, *v;
    } want[] = {
        {0, "10.00", "10.50", "9.50", "10.20", "1.000"},
        {1, "10.20", "10.40", "10.00", "10.30", "2.000"},
        {4, "10.30", "10.60", "10.10", "10.50", "3.000"},
        {5, "10.50", "10.80", "10.40", "10.75", "4.000"},
        /* x 10.75 / 10.00, half-even to the tick */
        {6, "10.75", "11.29", "10.21", "10.96", "1.000"},
        {7, "10.96", "11.18", "10.75", "11.07", "2.000"},
        {10, "11.07", "11.40", "10.86", "11.29", "3.000"},
        {11, "11.29", "11.61", "11.18", "11.56", "4.000"},
        /* x 11.56 / 10.00: relative to the file, not compounded */
        {12, "11.56", "12.14", "10.98", "11.79", "1.000"},
    };
    size_t w = 0;
    uint64_t next_id = 0;
    for (size_t i = 0; i < r.n; i++) {
        const struct rec_event *e = &r.ev[i];
        if (e->kind == REC_TRADE) {
            if (next_id != 0) {
                cr_assert_eq(e->trade.trade_id, next_id);
            }
            next_id = e->trade.trade_id + 1;
        }
        if (e->kind != REC_KLINE || !e->kline.closed) {
            continue;
        }
        cr_assert_lt(w, sizeof(want) / sizeof(want[0]));
        const struct cq_sim__kline *k = &e->kline;
        cr_expect_eq(k->open_ms, START_MS + want[w].minute * MIN_MS, "bar %zu time", w);
        cr_expect(dec_eq_str(k->open, want[w].o), "bar %zu open", w);
        cr_expect(dec_eq_str(k->high, want[w].h), "bar %zu high", w);
        cr_expect(dec_eq_str(k->low, want[w].l), "bar %zu low", w);
        cr_expect(dec_eq_str(k->close, want[w].c), "bar %zu close", w);
        cr_expect(dec_eq_str(k->volume, want[w].v), "bar %zu volume", w);
        w++;
    }
    cr_expect_eq(w, sizeof(want) / sizeof(want[0]));
    rec_free(&r);
    cq_sim__market_free(m);
}

/* ---- real data ---------------------------------------------------------------------------- */

static bool real_data_present(void)
{
    if (access(BTC_CSV, R_OK) == 0) {
        return true;
    }
    cq_test_shared_missing(BTC_CSV);
    return false;
}

static void expect_row(const struct cq_sim__kline *k, const struct csv_row *row, int64_t offset,
                       size_t i)
{
    cr_assert_eq(k->open_ms, row->open_ms + offset, "row %zu open time", i);
    cr_assert(cq_dec_cmp(k->open, dec(row->f[0])) == 0, "row %zu open %s", i, row->f[0]);
    cr_assert(cq_dec_cmp(k->high, dec(row->f[1])) == 0, "row %zu high %s", i, row->f[1]);
    cr_assert(cq_dec_cmp(k->low, dec(row->f[2])) == 0, "row %zu low %s", i, row->f[2]);
    cr_assert(cq_dec_cmp(k->close, dec(row->f[3])) == 0, "row %zu close %s", i, row->f[3]);
    cr_assert(cq_dec_cmp(k->volume, dec(row->f[4])) == 0, "row %zu volume %s", i, row->f[4]);
}

Test(sim_market_real, btcusdt_first_3000_rows_replay_exactly, .timeout = 60)
{
    if (!real_data_present()) {
        return;
    }
    enum { N = 3000 };
    static struct csv_row rows[N];
    cr_assert_eq(read_csv(BTC_CSV, rows, N), N);
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market_options o = {
        .symbols = &sym,
        .n_symbols = 1,
        .data_path = BTC_CSV,
        .seed = 2023,
        .start_ms = START_MS,
        .history_bars = 0,
        .book_levels = 20,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct recorder r;
    rec_attach(&r, m);
    /* klines only: calibrated bars of this busy data hold up to 3291 trades
     * each, and recording every trade and book would take gigabytes */
    struct cq_sim__market_listener kl = {NULL, NULL, on_kline, &r};
    cq_sim__market_set_listener(m, &kl);
    int64_t offset = START_MS - rows[0].open_ms;
    cq_sim__market_advance(m, rows[N - 1].open_ms + offset + MIN_MS - 1);
    size_t row = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.ev[i].kind == REC_KLINE && r.ev[i].kline.closed) {
            cr_assert_lt(row, N);
            expect_row(&r.ev[i].kline, &rows[row], offset, row);
            row++;
        }
    }
    cr_expect_eq(row, N);
    rec_free(&r);
    cq_sim__market_free(m);
}

Test(sim_market_real, btcusdt_halt_gap_is_replayed_as_a_gap, .timeout = 60)
{
    if (!real_data_present()) {
        return;
    }
    enum { MAX = 70000 };
    static struct csv_row rows[MAX];
    size_t n = read_csv(BTC_CSV, rows, MAX);
    size_t gap = 0;
    for (size_t i = 1; i < n; i++) {
        if (rows[i].open_ms - rows[i - 1].open_ms != MIN_MS) {
            cr_assert_eq(gap, 0, "one gap in the file");
            gap = i;
        }
    }
    cr_assert_gt(gap, 200);
    cr_assert_eq(rows[gap].open_ms - rows[gap - 1].open_ms, 81 * MIN_MS, "80 minutes missing");
    struct cq_sim__symbol sym = make_symbol("BTCUSDT", "0.01", "0.00001");
    struct cq_sim__market_options o = {
        .symbols = &sym,
        .n_symbols = 1,
        .data_path = BTC_CSV,
        .seed = 2023,
        .start_ms = START_MS,
        .history_bars = gap - 100, /* replay from 100 rows before the gap */
        .book_levels = 20,
    };
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct recorder r;
    rec_attach(&r, m);
    int64_t offset = START_MS - rows[gap - 100].open_ms;
    int64_t gap_from = rows[gap - 1].open_ms + offset + MIN_MS;
    int64_t gap_to = rows[gap].open_ms + offset;
    cq_sim__market_advance(m, rows[gap + 20].open_ms + offset + MIN_MS - 1);
    size_t row = gap - 100, flat = 0;
    for (size_t i = 0; i < r.n; i++) {
        const struct rec_event *e = &r.ev[i];
        int64_t t = event_time(e);
        cr_assert(t < gap_from || t >= gap_to, "event at %lld in the halt", (long long)t);
        if (e->kind == REC_KLINE && e->kline.closed) {
            expect_row(&e->kline, &rows[row], offset, row);
            if (cq_dec_is_zero(e->kline.volume)) {
                cr_expect_eq(e->kline.trades, 0);
                cr_expect(cq_dec_cmp(e->kline.open, e->kline.close) == 0);
                flat++;
            }
            row++;
        }
    }
    cr_expect_eq(row, gap + 21);
    cr_expect_eq(flat, 72, "the halt's 72 flat candles are replayed");
    rec_free(&r);
    cq_sim__market_free(m);
}
