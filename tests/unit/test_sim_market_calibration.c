/*
 * test_sim_market_calibration.c — recomputes, from the real recordings in
 * ../shared/data/ws/recordings replayed through the simulator's own
 * recorded-book model (server/sim/market.c "Recorded book"), the numbers
 * the synthetic book is calibrated with (sim-market.h SIM_CAL_*, docs/
 * SIMEX.md "Calibration"), and checks that the constants are those numbers.
 *
 * Three captures: BTCUSDT 2023-04-05, BTCUSDT 2024-08-08/09, ETHUSDT
 * 2024-08-08/09, each replayed once from its bootstrap to its end. The book
 * is sampled every 1000 ms of market time when both sides hold 20 levels.
 * Per capture: mean trade quote size (sum of price x qty / trades), the
 * busiest whole minute's trade count, the share of samples wider than one
 * tick, the median gap between adjacent levels of the top 20 (in parts per
 * billion of the best bid), and per level 0..19 the median quantity over
 * the mean trade quantity (x100), each side apart. The constants are the
 * median over the captures (over the six capture-sides for the levels),
 * the busiest minute over all of them. Integers only.
 *
 * ../shared/data missing: skips, or fails when CI is set.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-market.h"
#include "support/shared_data.h"

#define REC_DIR CQ_SHARED_DIR "/data/ws/recordings/"
#define START_MS 1700000040000LL
#define SAMPLE_MS 1000
#define LEVELS 20
#define MAX_SAMPLES 4096
#define MAX_MINUTES 64

struct capture {
    const char *name;
    const char *files;
    const char *tick, *step;
    const char *symbol;
};

static const struct capture captures[] = {
    {"BTCUSDT 2023-04-05", REC_DIR "binance-spot-BTCUSDT-20230405.txt.gz", "0.01", "0.00001",
     "BTCUSDT"},
    {"BTCUSDT 2024-08-08/09",
     REC_DIR "binance-spot-BTCUSDT-20240808.txt.gz," REC_DIR "binance-spot-BTCUSDT-20240809.txt.gz",
     "0.01", "0.00001", "BTCUSDT"},
    {"ETHUSDT 2024-08-08/09",
     REC_DIR "binance-spot-ETHUSDT-20240808.txt.gz," REC_DIR "binance-spot-ETHUSDT-20240809.txt.gz",
     "0.01", "0.0001", "ETHUSDT"},
};
#define N_CAPTURES (sizeof(captures) / sizeof(captures[0]))

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0);
    return d;
}

/* v in units of 10^-8 */
static int64_t e8(cq_dec v)
{
    cq_dec r;
    cr_assert_eq(cq_dec_rescale(v, 8, CQ_ROUND_EXACT, &r), 0);
    return r.m;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t median(int64_t *v, size_t n)
{
    cr_assert_gt(n, 0);
    qsort(v, n, sizeof(*v), cmp_i64);
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct tally {
    uint64_t trades;
    int64_t qty_e8, quote_e8;
    int64_t minute_count[MAX_MINUTES];
};

static void on_trade(void *ctx, int idx, const struct cq_sim__public_trade *t)
{
    struct tally *ta = ctx;
    cq_dec quote;
    (void)idx;
    ta->trades++;
    ta->qty_e8 += e8(t->qty);
    cr_assert_eq(cq_dec_mul(t->price, t->qty, 8, CQ_ROUND_HALF_EVEN, &quote), 0);
    ta->quote_e8 += e8(quote);
    int64_t m = (t->time_ms - START_MS) / 60000;
    cr_assert(m >= 0 && m < MAX_MINUTES);
    ta->minute_count[m]++;
}

struct measured {
    int64_t trade_quote_mean;      /* quote units */
    int64_t busiest_minute;        /* trades */
    int64_t wide_per_mille;        /* samples wider than one tick */
    int64_t gap_ppb;               /* median adjacent-level gap */
    int64_t depth_x100[2][LEVELS]; /* [bids, asks][level] */
};

static bool measure(const struct capture *c, struct measured *out)
{
    char first[512];
    const char *comma = strchr(c->files, ',');
    size_t len = comma != NULL ? (size_t)(comma - c->files) : strlen(c->files);
    snprintf(first, sizeof(first), "%.*s", (int)len, c->files);
    if (access(first, R_OK) != 0) {
        cq_test_shared_missing(first);
        return false;
    }
    struct cq_sim__symbol sym;
    memset(&sym, 0, sizeof(sym));
    snprintf(sym.symbol, sizeof(sym.symbol), "%s", c->symbol);
    sym.filters.tick_size = dec(c->tick);
    sym.filters.step_size = dec(c->step);
    struct cq_sim__market_options o = {.symbols = &sym,
                                       .n_symbols = 1,
                                       .book_recording = c->files,
                                       .seed = 1,
                                       .start_ms = START_MS,
                                       .book_levels = LEVELS};
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct tally ta;
    memset(&ta, 0, sizeof(ta));
    struct cq_sim__market_listener l = {on_trade, NULL, NULL, &ta};
    cq_sim__market_set_listener(m, &l);

    int64_t *qty[2][LEVELS];
    for (size_t s = 0; s < 2; s++) {
        for (size_t i = 0; i < LEVELS; i++) {
            qty[s][i] = calloc(MAX_SAMPLES, sizeof(int64_t));
            cr_assert_not_null(qty[s][i]);
        }
    }
    int64_t *gaps = calloc(MAX_SAMPLES * 2 * (LEVELS - 1), sizeof(int64_t));
    size_t n_samples = 0, n_gaps = 0, wide = 0;
    int64_t tick_e8 = e8(sym.filters.tick_size);
    struct cq_sim__replay_stats st;
    for (int64_t t = START_MS;; t += SAMPLE_MS) {
        cq_sim__market_advance(m, t);
        cq_sim__market_replay_stats(m, 0, &st);
        if (st.loops > 0) {
            break; /* the capture ran out: one pass only */
        }
        struct cq_sim__book_view b;
        cq_sim__market_book(m, 0, &b);
        if (b.n_bids < LEVELS || b.n_asks < LEVELS) {
            continue;
        }
        cr_assert_lt(n_samples, MAX_SAMPLES);
        int64_t bid = e8(b.bids[0].price), ask = e8(b.asks[0].price);
        wide += ask - bid > tick_e8;
        for (size_t i = 0; i < LEVELS; i++) {
            qty[0][i][n_samples] = e8(b.bids[i].qty);
            qty[1][i][n_samples] = e8(b.asks[i].qty);
            if (i > 0) {
                /* gap / best bid in parts per billion */
                int64_t gb = e8(b.bids[i - 1].price) - e8(b.bids[i].price);
                int64_t ga = e8(b.asks[i].price) - e8(b.asks[i - 1].price);
                gaps[n_gaps++] = gb * 1000000 / (bid / 1000);
                gaps[n_gaps++] = ga * 1000000 / (bid / 1000);
            }
        }
        n_samples++;
    }
    cr_assert_gt(n_samples, 300, "%s: %zu samples", c->name, n_samples);
    cr_assert_gt(ta.trades, 1000);
    int64_t mean_qty_e8 = ta.qty_e8 / (int64_t)ta.trades;
    out->trade_quote_mean = ta.quote_e8 / (int64_t)ta.trades / 100000000;
    out->busiest_minute = 0;
    /* whole minutes only: not the first (bootstrap) nor the last (end) */
    int64_t last_minute = (cq_sim__market_now_ms(m) - START_MS) / 60000;
    for (int64_t i = 1; i < last_minute && i < MAX_MINUTES; i++) {
        out->busiest_minute =
            ta.minute_count[i] > out->busiest_minute ? ta.minute_count[i] : out->busiest_minute;
    }
    out->wide_per_mille = (int64_t)(wide * 1000 / n_samples);
    out->gap_ppb = median(gaps, n_gaps);
    for (size_t s = 0; s < 2; s++) {
        for (size_t i = 0; i < LEVELS; i++) {
            out->depth_x100[s][i] = median(qty[s][i], n_samples) * 100 / mean_qty_e8;
            free(qty[s][i]);
        }
    }
    free(gaps);
    cr_log_info("%s: %zu samples, %llu trades, mean trade %lld quote, busiest minute %lld "
                "trades, wider than 1 tick %lld per mille, level gap %lld ppb",
                c->name, n_samples, (unsigned long long)ta.trades, (long long)out->trade_quote_mean,
                (long long)out->busiest_minute, (long long)out->wide_per_mille,
                (long long)out->gap_ppb);
    for (size_t s = 0; s < 2; s++) {
        char line[512];
        size_t at = 0;
        for (size_t i = 0; i < LEVELS; i++) {
            at += (size_t)snprintf(line + at, sizeof(line) - at, " %lld",
                                   (long long)out->depth_x100[s][i]);
        }
        cr_log_info("%s %s depth x100 of the mean trade:%s", c->name, s == 0 ? "bids" : "asks",
                    line);
    }
    cq_sim__market_free(m);
    return true;
}

/* within 10% (or 1 unit) of the measured value */
static void near(int64_t constant, int64_t measured, const char *what)
{
    int64_t tol = measured / 10 > 1 ? measured / 10 : 1;
    cr_expect(constant >= measured - tol && constant <= measured + tol,
              "%s: the constant is %lld, the recordings give %lld", what, (long long)constant,
              (long long)measured);
}

Test(sim_market_calibration, constants_are_what_the_recordings_measure, .timeout = 600)
{
    struct measured m[N_CAPTURES];
    for (size_t c = 0; c < N_CAPTURES; c++) {
        if (!measure(&captures[c], &m[c])) {
            return;
        }
    }
    int64_t v[2 * N_CAPTURES];
    int64_t busiest = 0;
    for (size_t c = 0; c < N_CAPTURES; c++) {
        v[c] = m[c].trade_quote_mean;
        busiest = m[c].busiest_minute > busiest ? m[c].busiest_minute : busiest;
    }
    int64_t trade_quote = median(v, N_CAPTURES);
    for (size_t c = 0; c < N_CAPTURES; c++) {
        v[c] = m[c].wide_per_mille;
    }
    int64_t wide = median(v, N_CAPTURES);
    for (size_t c = 0; c < N_CAPTURES; c++) {
        v[c] = m[c].gap_ppb;
    }
    int64_t gap = median(v, N_CAPTURES);
    static const int64_t depth[LEVELS] = SIM_CAL_LEVEL_DEPTH_X100;
    char line[512];
    size_t at = 0;
    for (size_t i = 0; i < LEVELS; i++) {
        for (size_t c = 0; c < N_CAPTURES; c++) {
            v[2 * c] = m[c].depth_x100[0][i];
            v[2 * c + 1] = m[c].depth_x100[1][i];
        }
        int64_t med = median(v, 2 * N_CAPTURES);
        at += (size_t)snprintf(line + at, sizeof(line) - at, " %lld", (long long)med);
        near(depth[i], med, "SIM_CAL_LEVEL_DEPTH_X100");
    }
    cr_log_info("calibration: trade quote mean %lld, busiest minute %lld, wide per mille %lld, "
                "gap %lld ppb, depth x100:%s",
                (long long)trade_quote, (long long)busiest, (long long)wide, (long long)gap, line);
    near(SIM_CAL_TRADE_QUOTE_MEAN, trade_quote, "SIM_CAL_TRADE_QUOTE_MEAN");
    near(SIM_CAL_TRADES_PER_MINUTE_MAX, busiest, "SIM_CAL_TRADES_PER_MINUTE_MAX");
    near(SIM_CAL_SPREAD_WIDE_PER_MILLE, wide, "SIM_CAL_SPREAD_WIDE_PER_MILLE");
    near(SIM_CAL_LEVEL_GAP_PPB, gap, "SIM_CAL_LEVEL_GAP_PPB");
}

/* The synthetic book follows the constants: 30 minutes of the BTCUSDT walk
 * (30000, tick 0.01), sampled every second. */
Test(sim_market_calibration, synthetic_book_follows_the_constants, .timeout = 300)
{
    struct cq_sim__symbol sym;
    memset(&sym, 0, sizeof(sym));
    snprintf(sym.symbol, sizeof(sym.symbol), "BTCUSDT");
    sym.filters.tick_size = dec("0.01");
    sym.filters.step_size = dec("0.00001");
    struct cq_sim__market_options o = {
        .symbols = &sym, .n_symbols = 1, .seed = 7, .start_ms = START_MS, .book_levels = LEVELS};
    struct cq_err err;
    struct cq_sim__market *m = cq_sim__market_new(&o, &err);
    cr_assert_not_null(m, "%s", err.message);
    struct tally ta;
    memset(&ta, 0, sizeof(ta));
    struct cq_sim__market_listener l = {on_trade, NULL, NULL, &ta};
    cq_sim__market_set_listener(m, &l);
    static int64_t level0[1800 * 2], gaps[1800 * 2 * (LEVELS - 1)];
    size_t n0 = 0, ng = 0, wide = 0, samples = 0;
    for (int64_t t = START_MS + SAMPLE_MS; t <= START_MS + 30 * 60000; t += SAMPLE_MS) {
        cq_sim__market_advance(m, t);
        struct cq_sim__book_view b;
        cq_sim__market_book(m, 0, &b);
        cr_assert_eq(b.n_bids, LEVELS);
        cr_assert_eq(b.n_asks, LEVELS);
        int64_t bid = e8(b.bids[0].price);
        wide += e8(b.asks[0].price) - bid > 1000000;
        level0[n0++] = e8(b.bids[0].qty);
        level0[n0++] = e8(b.asks[0].qty);
        for (size_t i = 1; i < LEVELS; i++) {
            gaps[ng++] = (e8(b.bids[i - 1].price) - e8(b.bids[i].price)) * 1000000 / (bid / 1000);
            gaps[ng++] = (e8(b.asks[i].price) - e8(b.asks[i - 1].price)) * 1000000 / (bid / 1000);
        }
        samples++;
    }
    int64_t mean_qty = ta.qty_e8 / (int64_t)ta.trades;
    int64_t quote = ta.quote_e8 / (int64_t)ta.trades / 100000000;
    int64_t depth0 = median(level0, n0) * 100 / mean_qty;
    int64_t gap = median(gaps, ng);
    cr_log_info("synthetic: %llu trades, mean trade %lld quote, level 0 x100 %lld, gap %lld ppb, "
                "wide %zu of %zu",
                (unsigned long long)ta.trades, (long long)quote, (long long)depth0, (long long)gap,
                wide, samples);
    /* the trade count follows the volume: the mean trade is the constant */
    cr_expect(quote > SIM_CAL_TRADE_QUOTE_MEAN * 7 / 10 &&
                  quote < SIM_CAL_TRADE_QUOTE_MEAN * 13 / 10,
              "mean trade %lld quote", (long long)quote);
    static const int64_t depth[LEVELS] = SIM_CAL_LEVEL_DEPTH_X100;
    cr_expect(depth0 > depth[0] / 2 && depth0 < depth[0] * 2, "level 0: %lld", (long long)depth0);
    /* the gap draw is uniform on whole ticks: 9.7 ticks -> mean 9 */
    cr_expect(gap > SIM_CAL_LEVEL_GAP_PPB / 2 && gap < SIM_CAL_LEVEL_GAP_PPB * 2, "gap %lld",
              (long long)gap);
    cr_expect_lt(wide, samples / 20, "wider than one tick: %zu of %zu", wide, samples);
    cq_sim__market_free(m);
}

static void count_kline(void *ctx, const struct cq_sim__kline *k)
{
    uint32_t *max = ctx;
    *max = k->trades > *max ? k->trades : *max;
}

/* trades_per_bar_max lowers the calibrated bound; the OHLCV is unchanged. */
Test(sim_market_calibration, trades_per_bar_max_bounds_the_bars)
{
    struct cq_sim__symbol sym;
    memset(&sym, 0, sizeof(sym));
    snprintf(sym.symbol, sizeof(sym.symbol), "BTCUSDT");
    sym.filters.tick_size = dec("0.01");
    sym.filters.step_size = dec("0.00001");
    uint32_t max[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        struct cq_sim__market_options o = {.symbols = &sym,
                                           .n_symbols = 1,
                                           .seed = 7,
                                           .start_ms = START_MS,
                                           .history_bars = 30,
                                           .book_levels = LEVELS,
                                           .trades_per_bar_max = k == 0 ? 0 : 10};
        struct cq_err err;
        struct cq_sim__market *m = cq_sim__market_new(&o, &err);
        cr_assert_not_null(m, "%s", err.message);
        cr_assert_eq(cq_sim__market_klines(m, 0, "1m", 0, 0, 30, count_kline, &max[k]), 30);
        cq_sim__market_free(m);
    }
    cr_expect_gt(max[0], 100, "calibrated: hundreds of trades a bar (%u)", max[0]);
    cr_expect_eq(max[1], 10);
}
