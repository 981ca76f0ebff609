/*
 * test_indicators.c — the incremental indicators, the indicator set and
 * its spec parser, and `coinquantd indicators` (include/cq/indicators.h).
 *
 *   worked     published worked examples: Wilder's RSI(14) table as
 *              StockCharts reprints it, StockCharts' 10-day EMA seeded with
 *              the SMA; hand tables (dyadic numbers, so exact equality) for
 *              Bollinger with the population sigma, ATR with Wilder
 *              smoothing and gaps, MACD's warm-up chain, rolling VWAP with
 *              zero-volume bars;
 *   warmup     ready() false then true at exactly the documented bar, for
 *              every indicator over a table of periods, and per column in
 *              a set (the MACD line before its signal);
 *   reference  every indicator against a straightforward non-incremental
 *              reference (each bar recomputed from scratch: windows summed
 *              again, exponential smoothers as their closed-form weighted
 *              sums in long double) over the first 5000 candles of
 *              BTCUSDT-1m.csv and of the gzipped 2025 ETHUSDT file, the
 *              window indicators over the whole BTC file (66k bars: the
 *              periodic re-sum really stops drift); the set equals the
 *              plain structs bit for bit;
 *   halt       the real 2023-03-24 halt: 72 flat zero-volume candles then
 *              an 80-minute gap: VWAP falls back to the last close, the
 *              Bollinger width is exactly 0, nothing is NaN or infinite in
 *              any kline file;
 *   edge       constant series, init errors, period 1;
 *   spec       good specs and their columns; bad specs with their exact
 *              message and hint;
 *   cli        golden outputs (csv and json, written by the independent
 *              Python reference tests/data/indicators/make_golden.py),
 *              header optional, .gz input, malformed lines -> exit 1 naming
 *              FILE:LINE, spec and usage errors -> exit 2.
 *
 * Tolerance: a value v matches its reference r when
 *   |v - r| <= 1e-9 * max(1, |r|)
 * (relative for prices, absolute 1e-9 near zero, e.g. a MACD histogram).
 * The Bollinger sigma itself, recovered as (upper - middle)/k, is held to
 * the same bound, which a naive Σx² - (Σx)²/n at BTC prices misses.
 *
 * ../shared/data missing: the data tests skip, or fail when CI is set.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cq/indicators.h"
#include "support/shared_data.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif
#ifndef CQ_SOURCE_DIR
#define CQ_SOURCE_DIR "."
#endif

#define KLINES_DIR CQ_SHARED_DIR "/data/klines/"
#define BTC_CSV KLINES_DIR "BTCUSDT-1m.csv"
#define ETH_GZ KLINES_DIR "extra-2025-06/ETHUSDT-1m.csv.gz"
#define FIXTURES CQ_SOURCE_DIR "/tests/data/indicators/"
#define HALT_FIXTURE FIXTURES "btcusdt-halt-2023-03-24.csv"
#define GOLDEN_SPEC "ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20"

#define TOL 1e-9
#define REF_ROWS 5000

/* ---- helpers ------------------------------------------------------------- */

static bool close_enough(double v, double ref)
{
    return fabs(v - ref) <= TOL * fmax(1.0, fabs(ref));
}

struct klines {
    struct cq_ind_bar *bars; /* owned */
    long long *open_time;    /* owned */
    size_t count;
};

/* Up to max_rows rows of a kline CSV (plain or gzip), header skipped; the
 * test's own reader (strtod gives the same correctly rounded doubles as
 * cq_dec_to_double). NULL bars when the file is missing. */
static struct klines load_klines(const char *path, size_t max_rows)
{
    struct klines k = {NULL, NULL, 0};
    gzFile gz = gzopen(path, "rb");
    char line[512];
    size_t cap = 0;

    if (gz == NULL) {
        return k;
    }
    while (k.count < max_rows && gzgets(gz, line, sizeof(line)) != NULL) {
        char *p = line;
        double f[5];
        if (line[0] < '0' || line[0] > '9') {
            continue;
        }
        if (k.count == cap) {
            cap = cap != 0 ? cap * 2 : 4096;
            k.bars = realloc(k.bars, cap * sizeof(*k.bars));
            k.open_time = realloc(k.open_time, cap * sizeof(*k.open_time));
            cr_assert(k.bars != NULL && k.open_time != NULL);
        }
        k.open_time[k.count] = strtoll(p, &p, 10);
        for (int i = 0; i < 5; i++) {
            cr_assert(*p == ',', "%s row %zu malformed", path, k.count + 1);
            f[i] = strtod(p + 1, &p);
        }
        k.bars[k.count] = (struct cq_ind_bar){f[0], f[1], f[2], f[3], f[4]};
        k.count++;
    }
    gzclose(gz);
    return k;
}

static void free_klines(struct klines *k)
{
    free(k->bars);
    free(k->open_time);
}

static double *closes_of(const struct klines *k)
{
    double *c = malloc((k->count + 1) * sizeof(*c));
    cr_assert(c != NULL);
    for (size_t i = 0; i < k->count; i++) {
        c[i] = k->bars[i].close;
    }
    return c;
}

static double *nan_array(size_t n)
{
    double *a = malloc((n + 1) * sizeof(*a));
    cr_assert(a != NULL);
    for (size_t i = 0; i < n; i++) {
        a[i] = NAN;
    }
    return a;
}

/* ---- the non-incremental reference ---------------------------------------
 * Each bar is recomputed from scratch; NAN where the indicator is not
 * defined yet (warm-up). */

/* Exponential smoothing seeded with the mean of the first n values, in
 * closed form: out[t] = (1-a)^(t-n+1)·seed + Σ_{j=n..t} a(1-a)^(t-j)·x[j],
 * summed afresh for every t. */
static void ref_smooth(const double *x, size_t len, size_t n, double alpha, double *out)
{
    long double seed = 0.0L;
    long double a = alpha;

    if (len < n) {
        return;
    }
    for (size_t j = 0; j < n; j++) {
        seed += x[j];
    }
    seed /= (long double)n;
    for (size_t t = n - 1; t < len; t++) {
        long double sum = 0.0L;
        long double w = 1.0L;
        for (size_t j = t; j >= n; j--) {
            sum += a * w * x[j];
            w *= 1.0L - a;
        }
        out[t] = (double)(sum + w * seed);
    }
}

static void ref_sma(const double *x, size_t len, size_t n, double *out)
{
    for (size_t t = n - 1; t < len; t++) {
        long double s = 0.0L;
        for (size_t j = t + 1 - n; j <= t; j++) {
            s += x[j];
        }
        out[t] = (double)(s / (long double)n);
    }
}

static void ref_ema(const double *x, size_t len, size_t n, double *out)
{
    ref_smooth(x, len, n, 2.0 / ((double)n + 1.0), out);
}

/* The header's formula, literally: 100 - 100/(1 + G/L), 100 when L = 0,
 * 50 when both are 0. */
static void ref_rsi(const double *c, size_t len, size_t n, double *out)
{
    double *gain = nan_array(len);
    double *loss = nan_array(len);
    double *g = nan_array(len);
    double *l = nan_array(len);

    for (size_t i = 1; i < len; i++) {
        double ch = c[i] - c[i - 1];
        gain[i - 1] = ch > 0 ? ch : 0.0;
        loss[i - 1] = ch < 0 ? -ch : 0.0;
    }
    ref_smooth(gain, len - 1, n, 1.0 / (double)n, g);
    ref_smooth(loss, len - 1, n, 1.0 / (double)n, l);
    for (size_t t = n; t < len; t++) {
        double ag = g[t - 1];
        double al = l[t - 1];
        out[t] = al == 0.0 ? (ag == 0.0 ? 50.0 : 100.0) : 100.0 - 100.0 / (1.0 + ag / al);
    }
    free(gain);
    free(loss);
    free(g);
    free(l);
}

static void ref_macd(const double *c, size_t len, size_t f, size_t s, size_t sig, double *line,
                     double *signal, double *hist)
{
    double *ef = nan_array(len);
    double *es = nan_array(len);
    double *sg = nan_array(len);

    ref_ema(c, len, f, ef);
    ref_ema(c, len, s, es);
    for (size_t t = s - 1; t < len; t++) {
        line[t] = ef[t] - es[t];
    }
    /* the signal EMA starts at the first defined line value */
    ref_ema(line + (s - 1), len - (s - 1), sig, sg);
    for (size_t t = s - 1; t < len; t++) {
        signal[t] = sg[t - (s - 1)];
        if (!isnan(signal[t])) {
            hist[t] = line[t] - signal[t];
        }
    }
    free(ef);
    free(es);
    free(sg);
}

static void ref_atr(const struct cq_ind_bar *b, size_t len, size_t n, double *out)
{
    double *tr = nan_array(len);
    for (size_t i = 0; i < len; i++) {
        tr[i] = b[i].high - b[i].low;
        if (i > 0) {
            tr[i] = fmax(tr[i], fabs(b[i].high - b[i - 1].close));
            tr[i] = fmax(tr[i], fabs(b[i].low - b[i - 1].close));
        }
    }
    ref_smooth(tr, len, n, 1.0 / (double)n, out);
    free(tr);
}

/* Two passes: the mean, then the mean squared deviation (population). */
static void ref_bb(const double *c, size_t len, size_t n, double k, double *mid, double *up,
                   double *low, double *sigma)
{
    for (size_t t = n - 1; t < len; t++) {
        long double m = 0.0L;
        long double v = 0.0L;
        for (size_t j = t + 1 - n; j <= t; j++) {
            m += c[j];
        }
        m /= (long double)n;
        for (size_t j = t + 1 - n; j <= t; j++) {
            v += ((long double)c[j] - m) * ((long double)c[j] - m);
        }
        double sd = (double)sqrtl(v / (long double)n);
        mid[t] = (double)m;
        up[t] = (double)m + k * sd;
        low[t] = (double)m - k * sd;
        sigma[t] = sd;
    }
}

static void ref_vwap(const struct cq_ind_bar *b, size_t len, size_t n, double *out)
{
    for (size_t t = n - 1; t < len; t++) {
        long double pv = 0.0L;
        long double v = 0.0L;
        for (size_t j = t + 1 - n; j <= t; j++) {
            pv += (long double)((b[j].high + b[j].low + b[j].close) / 3.0) * b[j].volume;
            v += b[j].volume;
        }
        out[t] = v == 0.0L ? b[t].close : (double)(pv / v);
    }
}

/* One bar's check: ready exactly where the reference is defined, and the
 * value within the tolerance. */
static void check_bar(const char *what, size_t bar, bool ready, double v, double ref)
{
    cr_assert(ready == !isnan(ref), "%s bar %zu: ready() is %d but the reference %s defined", what,
              bar + 1, ready, isnan(ref) ? "is not" : "is");
    if (ready) {
        cr_assert(close_enough(v, ref), "%s bar %zu: %.17g, reference %.17g (diff %.3g)", what,
                  bar + 1, v, ref, v - ref);
    }
}

/* Every indicator of the default set (and a few other periods) against the
 * reference over k. */
static void check_against_reference(const struct klines *k, const char *label)
{
    const size_t len = k->count;
    double *c = closes_of(k);
    char what[128];

    /* SMA and EMA over a table of periods */
    static const size_t periods[] = {1, 2, 12, 26, 50, 200};
    for (size_t pi = 0; pi < CQ_ARRAY_LEN(periods); pi++) {
        size_t n = periods[pi];
        double *sma_ref = nan_array(len);
        double *ema_ref = nan_array(len);
        struct cq_sma sma;
        struct cq_ema ema;
        ref_sma(c, len, n, sma_ref);
        ref_ema(c, len, n, ema_ref);
        cr_assert(cq_sma_init(&sma, n) == 0);
        cr_assert(cq_ema_init(&ema, n) == 0);
        for (size_t t = 0; t < len; t++) {
            cq_sma_update(&sma, c[t]);
            cq_ema_update(&ema, c[t]);
            snprintf(what, sizeof(what), "%s sma_%zu", label, n);
            check_bar(what, t, cq_sma_ready(&sma), cq_sma_value(&sma), sma_ref[t]);
            snprintf(what, sizeof(what), "%s ema_%zu", label, n);
            check_bar(what, t, cq_ema_ready(&ema), cq_ema_value(&ema), ema_ref[t]);
        }
        cq_sma_fini(&sma);
        free(sma_ref);
        free(ema_ref);
    }

    /* RSI 14 and 2, ATR 14 and 5 */
    static const size_t wilder[] = {14, 2};
    static const size_t atr_n[] = {14, 5};
    for (size_t pi = 0; pi < 2; pi++) {
        double *rsi_ref = nan_array(len);
        double *atr_ref = nan_array(len);
        struct cq_rsi rsi;
        struct cq_atr atr;
        ref_rsi(c, len, wilder[pi], rsi_ref);
        ref_atr(k->bars, len, atr_n[pi], atr_ref);
        cr_assert(cq_rsi_init(&rsi, wilder[pi]) == 0);
        cr_assert(cq_atr_init(&atr, atr_n[pi]) == 0);
        for (size_t t = 0; t < len; t++) {
            cq_rsi_update(&rsi, c[t]);
            cq_atr_update(&atr, &k->bars[t]);
            snprintf(what, sizeof(what), "%s rsi_%zu", label, wilder[pi]);
            check_bar(what, t, cq_rsi_ready(&rsi), cq_rsi_value(&rsi), rsi_ref[t]);
            snprintf(what, sizeof(what), "%s atr_%zu", label, atr_n[pi]);
            check_bar(what, t, cq_atr_ready(&atr), cq_atr_value(&atr), atr_ref[t]);
        }
        free(rsi_ref);
        free(atr_ref);
    }

    /* MACD 12/26/9 */
    {
        double *line = nan_array(len);
        double *sig = nan_array(len);
        double *hist = nan_array(len);
        struct cq_macd m;
        ref_macd(c, len, 12, 26, 9, line, sig, hist);
        cr_assert(cq_macd_init(&m, 12, 26, 9) == 0);
        for (size_t t = 0; t < len; t++) {
            cq_macd_update(&m, c[t]);
            bool ready = cq_macd_ready(&m);
            snprintf(what, sizeof(what), "%s macd line", label);
            /* ready() covers all three; the line is checked where the
             * signal is, and on its own through the set below */
            check_bar(what, t, ready, cq_macd_line(&m), isnan(sig[t]) ? NAN : line[t]);
            snprintf(what, sizeof(what), "%s macd signal", label);
            check_bar(what, t, ready, cq_macd_signal(&m), sig[t]);
            snprintf(what, sizeof(what), "%s macd hist", label);
            check_bar(what, t, ready, cq_macd_hist(&m), hist[t]);
        }
        free(line);
        free(sig);
        free(hist);
    }

    /* Bollinger 20/2 (and the sigma itself), VWAP 20 */
    {
        double *mid = nan_array(len);
        double *up = nan_array(len);
        double *low = nan_array(len);
        double *sd = nan_array(len);
        double *vw = nan_array(len);
        struct cq_bbands bb;
        struct cq_vwap vwap;
        ref_bb(c, len, 20, 2.0, mid, up, low, sd);
        ref_vwap(k->bars, len, 20, vw);
        cr_assert(cq_bbands_init(&bb, 20, 2.0) == 0);
        cr_assert(cq_vwap_init(&vwap, 20) == 0);
        for (size_t t = 0; t < len; t++) {
            cq_bbands_update(&bb, c[t]);
            cq_vwap_update(&vwap, &k->bars[t]);
            bool ready = cq_bbands_ready(&bb);
            snprintf(what, sizeof(what), "%s bb middle", label);
            check_bar(what, t, ready, cq_bbands_middle(&bb), mid[t]);
            snprintf(what, sizeof(what), "%s bb upper", label);
            check_bar(what, t, ready, cq_bbands_upper(&bb), up[t]);
            snprintf(what, sizeof(what), "%s bb lower", label);
            check_bar(what, t, ready, cq_bbands_lower(&bb), low[t]);
            snprintf(what, sizeof(what), "%s bb sigma", label);
            check_bar(what, t, ready, (cq_bbands_upper(&bb) - cq_bbands_middle(&bb)) / 2.0, sd[t]);
            snprintf(what, sizeof(what), "%s vwap_20", label);
            check_bar(what, t, cq_vwap_ready(&vwap), cq_vwap_value(&vwap), vw[t]);
        }
        cq_bbands_fini(&bb);
        cq_vwap_fini(&vwap);
        free(mid);
        free(up);
        free(low);
        free(sd);
        free(vw);
    }
    free(c);
}

/* ---- worked examples ------------------------------------------------------ */

/* Wilder's RSI(14) example as StockCharts' ChartSchool table reprints it.
 * The table shows closes rounded to 2 decimals (44.34, 44.09, ...) but its
 * RSI column is computed from the 4-decimal closes below; from the
 * 2-decimal ones the first RSI is 70.46, not 70.53. */
Test(worked, rsi_wilder_stockcharts)
{
    static const double closes[] = {44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955,
                                    45.4245, 45.8433, 46.0826, 45.8931, 46.0328, 45.6140, 46.2820,
                                    46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439, 46.2122,
                                    46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783,
                                    44.2181, 44.5672, 43.4205, 42.6628, 43.1314};
    /* published, from the 15th close on */
    static const double rsi[] = {70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93,
                                 63.26, 56.06, 62.38, 54.71, 50.42, 39.99, 41.46,
                                 41.87, 45.46, 37.30, 33.08, 37.77};
    struct cq_rsi x;

    cr_assert(cq_rsi_init(&x, 14) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(closes); i++) {
        cq_rsi_update(&x, closes[i]);
        if (i < 14) {
            cr_assert(!cq_rsi_ready(&x), "RSI(14) ready after %zu closes; needs 15", i + 1);
            continue;
        }
        cr_assert(cq_rsi_ready(&x));
        cr_assert(fabs(cq_rsi_value(&x) - rsi[i - 14]) <= 0.01,
                  "close %zu (%.4f): RSI %.4f, published %.2f", i + 1, closes[i], cq_rsi_value(&x),
                  rsi[i - 14]);
    }
}

/* StockCharts' "Moving Averages" worked example: a 10-day EMA whose first
 * value is the 10-day SMA, published rounded to cents. */
Test(worked, ema_stockcharts_10_day)
{
    static const double closes[] = {22.27, 22.19, 22.08, 22.17, 22.18, 22.13, 22.23, 22.43,
                                    22.24, 22.29, 22.15, 22.39, 22.38, 22.61, 23.36, 24.05,
                                    23.75, 23.83, 23.95, 23.63, 23.82, 23.87, 23.65, 23.19,
                                    23.10, 23.33, 22.68, 23.10, 22.40, 22.17};
    static const double ema[] = {22.22, 22.21, 22.24, 22.27, 22.33, 22.52, 22.80,
                                 22.97, 23.13, 23.28, 23.34, 23.43, 23.51, 23.53,
                                 23.47, 23.40, 23.39, 23.26, 23.23, 23.08, 22.92};
    struct cq_ema x;

    cr_assert(cq_ema_init(&x, 10) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(closes); i++) {
        cq_ema_update(&x, closes[i]);
        cr_assert(cq_ema_ready(&x) == (i >= 9), "EMA(10) ready() wrong after %zu closes", i + 1);
        if (i == 9) {
            /* the seed is the SMA of the first 10: 22.221 */
            cr_assert(fabs(cq_ema_value(&x) - 22.221) < 1e-12, "seed %.17g", cq_ema_value(&x));
        }
        if (i >= 9) {
            cr_assert(fabs(cq_ema_value(&x) - ema[i - 9]) <= 0.005 + 1e-9,
                      "close %zu: EMA %.6f, published %.2f", i + 1, cq_ema_value(&x), ema[i - 9]);
        }
    }
}

/* Population sigma: {2,4,4,4,5,5,7,9} has mean 5 and sigma exactly 2 (the
 * sample sigma would be 2.138...). Dyadic values: exact equality. */
Test(worked, bbands_population_sigma)
{
    static const double closes[] = {2, 4, 4, 4, 5, 5, 7, 9, 2, 10};
    struct cq_bbands x;

    cr_assert(cq_bbands_init(&x, 8, 2.0) == 0);
    for (size_t i = 0; i < 7; i++) {
        cq_bbands_update(&x, closes[i]);
        cr_assert(!cq_bbands_ready(&x));
    }
    cq_bbands_update(&x, closes[7]);
    cr_assert(cq_bbands_ready(&x));
    cr_assert_eq(cq_bbands_middle(&x), 5.0);
    cr_assert_eq(cq_bbands_upper(&x), 9.0, "upper %.17g: not the population sigma",
                 cq_bbands_upper(&x));
    cr_assert_eq(cq_bbands_lower(&x), 1.0);
    /* 2 leaves, 2 enters: the same multiset */
    cq_bbands_update(&x, closes[8]);
    cr_assert_eq(cq_bbands_middle(&x), 5.0);
    cr_assert_eq(cq_bbands_upper(&x), 9.0);
    cr_assert_eq(cq_bbands_lower(&x), 1.0);
    /* 4 leaves, 10 enters: {4,4,5,5,7,9,2,10}: mean 5.75, variance
     * 316/8 - 5.75² = 6.4375 */
    cq_bbands_update(&x, closes[9]);
    cr_assert_eq(cq_bbands_middle(&x), 5.75);
    cr_assert(fabs(cq_bbands_upper(&x) - (5.75 + 2.0 * sqrt(6.4375))) < 1e-12);
    cr_assert(fabs(cq_bbands_lower(&x) - (5.75 - 2.0 * sqrt(6.4375))) < 1e-12);
    cq_bbands_fini(&x);

    /* k = 1.5 scales the width only */
    cr_assert(cq_bbands_init(&x, 8, 1.5) == 0);
    for (size_t i = 0; i < 8; i++) {
        cq_bbands_update(&x, closes[i]);
    }
    cr_assert_eq(cq_bbands_upper(&x), 8.0);
    cr_assert_eq(cq_bbands_lower(&x), 2.0);
    cq_bbands_fini(&x);
}

/* ATR(4), Wilder: the first TR is high - low; later TRs reach back to the
 * previous close across gaps; the first ATR is the mean of 4 TRs, then
 * (ATR·3 + TR)/4. Every number is dyadic: exact equality. */
Test(worked, atr_wilder_hand_table)
{
    static const struct {
        struct cq_ind_bar bar;
        bool ready;
        double atr;
    } rows[] = {
        /* open, high, low, close, volume         TR                        */
        {{9, 10, 8, 9, 1}, false, 0},                   /* 2 (high - low)         */
        {{12, 13, 12, 12.5, 1}, false, 0},              /* 4 = 13 - 9 (gap up)    */
        {{11, 11, 10, 10.5, 1}, false, 0},              /* 2.5 = 12.5 - 10 (down) */
        {{10.5, 11.5, 10, 11, 1}, true, 2.5},           /* 1.5; (2+4+2.5+1.5)/4   */
        {{11, 12, 11, 11.5, 1}, true, 2.125},           /* 1: (2.5·3 + 1)/4       */
        {{14, 15, 14, 14.5, 1}, true, 2.46875},         /* 3.5 = 15 - 11.5        */
        {{14.5, 14.5, 14.5, 14.5, 0}, true, 1.8515625}, /* 0 (flat)        */
    };
    struct cq_atr x;

    cr_assert(cq_atr_init(&x, 4) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        cq_atr_update(&x, &rows[i].bar);
        cr_assert(cq_atr_ready(&x) == rows[i].ready, "bar %zu: ready %d", i + 1, cq_atr_ready(&x));
        if (rows[i].ready) {
            cr_assert_eq(cq_atr_value(&x), rows[i].atr, "bar %zu: ATR %.17g, expected %.17g", i + 1,
                         cq_atr_value(&x), rows[i].atr);
        }
    }
}

/* MACD(1,3,3): EMA(1) is the close, EMA(3) and the signal have alpha 0.5,
 * so the whole chain is exact. The line exists from bar 3 (slow warm), the
 * signal is the mean of the first 3 line values at bar 5 (= 3 + 3 - 1). */
Test(worked, macd_hand_table)
{
    static const struct {
        double close, line, signal, hist;
        bool ready;
    } rows[] = {
        {1, 0, 0, 0, false},         {3, 0, 0, 0, false},
        {2, 0, 0, 0, false},         /* slow = 2, line 0 */
        {8, 3, 0, 0, false},         /* slow = 5, line 3 */
        {5, 0, 1, -1, true},         /* slow = 5, line 0, signal (0+3+0)/3 */
        {9, 2, 1.5, 0.5, true},      /* slow = 7 */
        {3, -2, -0.25, -1.75, true}, /* slow = 5 */
    };
    struct cq_macd x;

    cr_assert(cq_macd_init(&x, 1, 3, 3) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        cq_macd_update(&x, rows[i].close);
        cr_assert(cq_macd_ready(&x) == rows[i].ready, "bar %zu", i + 1);
        if (i >= 2) {
            cr_assert_eq(cq_macd_line(&x), rows[i].line, "bar %zu line %.17g", i + 1,
                         cq_macd_line(&x));
        }
        if (rows[i].ready) {
            cr_assert_eq(cq_macd_signal(&x), rows[i].signal, "bar %zu signal %.17g", i + 1,
                         cq_macd_signal(&x));
            cr_assert_eq(cq_macd_hist(&x), rows[i].hist, "bar %zu hist %.17g", i + 1,
                         cq_macd_hist(&x));
        }
    }
}

/* VWAP(3) with typical prices 10, 11, 9, 12, ... and zero-volume bars:
 * a window with no volume at all gives the last close. */
Test(worked, vwap_hand_table)
{
    static const struct {
        struct cq_ind_bar bar; /* typical = (h + l + c)/3 */
        bool ready;
        double vwap;
    } rows[] = {
        {{9, 12, 9, 9, 1}, false, 0},            /* typical 10 */
        {{10, 13, 10, 10, 3}, false, 0},         /* 11 */
        {{8, 11, 8, 8, 0}, true, 10.75},         /* 9; (10 + 33 + 0)/4 */
        {{11, 14, 11, 11, 4}, true, 81.0 / 7.0}, /* 12; (33 + 0 + 48)/7 */
        {{8, 11, 8, 8, 0}, true, 12},            /* (0 + 48 + 0)/4 */
        {{8, 11, 8, 8.5, 0}, true, 12},
        {{8, 11, 8, 7.5, 0}, true, 7.5}, /* no volume left: the close */
        {{7, 7, 7, 7, 0}, true, 7},
        {{9, 12, 9, 9, 2}, true, 10}, /* typical 10 again */
    };
    struct cq_vwap x;

    cr_assert(cq_vwap_init(&x, 3) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        cq_vwap_update(&x, &rows[i].bar);
        cr_assert(cq_vwap_ready(&x) == rows[i].ready, "bar %zu", i + 1);
        if (rows[i].ready) {
            cr_assert(fabs(cq_vwap_value(&x) - rows[i].vwap) <= 1e-12 * rows[i].vwap,
                      "bar %zu: VWAP %.17g, expected %.17g", i + 1, cq_vwap_value(&x),
                      rows[i].vwap);
        }
    }
    cq_vwap_fini(&x);
}

Test(worked, sma_hand_table)
{
    static const double closes[] = {1, 2, 3, 4, 10, -4};
    static const double sma[] = {0, 0, 2, 3, 17.0 / 3.0, 10.0 / 3.0};
    struct cq_sma x;

    cr_assert(cq_sma_init(&x, 3) == 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(closes); i++) {
        cq_sma_update(&x, closes[i]);
        cr_assert(cq_sma_ready(&x) == (i >= 2));
        if (i >= 2) {
            cr_assert(fabs(cq_sma_value(&x) - sma[i]) < 1e-14, "bar %zu: %.17g", i + 1,
                      cq_sma_value(&x));
        }
    }
    cq_sma_fini(&x);
}

/* ---- warm-up boundaries --------------------------------------------------- */

/* A synthetic but non-trivial series: trend plus a wave, every bar with
 * a range and volume. */
static struct cq_ind_bar synth_bar(size_t i)
{
    double c = 100.0 + 0.05 * (double)i + 3.0 * sin((double)i * 0.37);
    struct cq_ind_bar b = {c - 0.2, c + 0.7, c - 0.9, c, 1.0 + (double)(i % 7)};
    return b;
}

enum wk { W_SMA, W_EMA, W_RSI, W_MACD, W_ATR, W_BB, W_VWAP };

struct warm_case {
    enum wk kind;
    size_t a, b, c;
    size_t ready_at; /* 1-based bar where ready() first holds */
};

Test(warmup, boundaries)
{
    static const struct warm_case cases[] = {
        {W_SMA, 1, 0, 0, 1},       {W_SMA, 2, 0, 0, 2},       {W_SMA, 50, 0, 0, 50},
        {W_SMA, 1000, 0, 0, 1000}, {W_EMA, 1, 0, 0, 1},       {W_EMA, 12, 0, 0, 12},
        {W_EMA, 26, 0, 0, 26},     {W_EMA, 1000, 0, 0, 1000}, {W_RSI, 1, 0, 0, 2},
        {W_RSI, 14, 0, 0, 15},     {W_RSI, 1000, 0, 0, 1001}, {W_MACD, 12, 26, 9, 34},
        {W_MACD, 1, 2, 1, 2},      {W_MACD, 5, 35, 5, 39},    {W_MACD, 999, 1000, 1000, 1999},
        {W_ATR, 1, 0, 0, 1},       {W_ATR, 14, 0, 0, 14},     {W_ATR, 1000, 0, 0, 1000},
        {W_BB, 1, 0, 0, 1},        {W_BB, 20, 0, 0, 20},      {W_BB, 1000, 0, 0, 1000},
        {W_VWAP, 1, 0, 0, 1},      {W_VWAP, 20, 0, 0, 20},    {W_VWAP, 1000, 0, 0, 1000},
    };

    for (size_t ci = 0; ci < CQ_ARRAY_LEN(cases); ci++) {
        const struct warm_case *w = &cases[ci];
        struct cq_sma sma;
        struct cq_ema ema;
        struct cq_rsi rsi;
        struct cq_macd macd;
        struct cq_atr atr;
        struct cq_bbands bb;
        struct cq_vwap vwap;
        int rc = 0;

        switch (w->kind) {
        case W_SMA:
            rc = cq_sma_init(&sma, w->a);
            break;
        case W_EMA:
            rc = cq_ema_init(&ema, w->a);
            break;
        case W_RSI:
            rc = cq_rsi_init(&rsi, w->a);
            break;
        case W_MACD:
            rc = cq_macd_init(&macd, w->a, w->b, w->c);
            break;
        case W_ATR:
            rc = cq_atr_init(&atr, w->a);
            break;
        case W_BB:
            rc = cq_bbands_init(&bb, w->a, 2.0);
            break;
        case W_VWAP:
            rc = cq_vwap_init(&vwap, w->a);
            break;
        }
        cr_assert(rc == 0, "case %zu: init failed", ci);
        for (size_t i = 0; i < w->ready_at + 3 * w->a + 5; i++) {
            struct cq_ind_bar bar = synth_bar(i);
            bool ready = false;
            switch (w->kind) {
            case W_SMA:
                cq_sma_update(&sma, bar.close);
                ready = cq_sma_ready(&sma);
                break;
            case W_EMA:
                cq_ema_update(&ema, bar.close);
                ready = cq_ema_ready(&ema);
                break;
            case W_RSI:
                cq_rsi_update(&rsi, bar.close);
                ready = cq_rsi_ready(&rsi);
                break;
            case W_MACD:
                cq_macd_update(&macd, bar.close);
                ready = cq_macd_ready(&macd);
                break;
            case W_ATR:
                cq_atr_update(&atr, &bar);
                ready = cq_atr_ready(&atr);
                break;
            case W_BB:
                cq_bbands_update(&bb, bar.close);
                ready = cq_bbands_ready(&bb);
                break;
            case W_VWAP:
                cq_vwap_update(&vwap, &bar);
                ready = cq_vwap_ready(&vwap);
                break;
            }
            cr_assert(ready == (i + 1 >= w->ready_at),
                      "case %zu (kind %d, %zu/%zu/%zu): ready() is %d after bar %zu; first "
                      "ready bar should be %zu",
                      ci, (int)w->kind, w->a, w->b, w->c, ready, i + 1, w->ready_at);
        }
        switch (w->kind) {
        case W_SMA:
            cq_sma_fini(&sma);
            break;
        case W_BB:
            cq_bbands_fini(&bb);
            break;
        case W_VWAP:
            cq_vwap_fini(&vwap);
            break;
        default:
            break;
        }
    }
}

/* In a set, each column has its own warm-up: for macd:12:26:9 the line
 * from bar 26, signal and histogram from bar 34. */
Test(warmup, set_columns)
{
    struct cq_err err;
    struct cq_ind_set *s = cq_ind_set_new(GOLDEN_SPEC, &err);
    /* ema_12 ema_26 rsi_14 macd sig hist atr_14 bb mid up low sma_50 vwap_20 */
    static const size_t first_bar[] = {12, 26, 15, 26, 34, 34, 14, 20, 20, 20, 50, 20};

    cr_assert(s != NULL, "%s", err.message);
    cr_assert_eq(cq_ind_set_columns(s), CQ_ARRAY_LEN(first_bar));
    for (size_t i = 0; i < 60; i++) {
        struct cq_ind_bar bar = synth_bar(i);
        cq_ind_set_update(s, &bar);
        for (size_t c = 0; c < CQ_ARRAY_LEN(first_bar); c++) {
            double v = -12345.0;
            bool have = cq_ind_set_value(s, c, &v);
            cr_assert(have == (i + 1 >= first_bar[c]), "column %s after bar %zu: %d",
                      cq_ind_set_column_name(s, c), i + 1, have);
            if (!have) {
                cr_assert_eq(v, -12345.0, "value written during warm-up");
            }
        }
    }
    double v;
    cr_assert(!cq_ind_set_value(s, CQ_ARRAY_LEN(first_bar), &v), "column past the end");
    cr_assert_null(cq_ind_set_column_name(s, CQ_ARRAY_LEN(first_bar)));
    cq_ind_set_free(s);
}

/* ---- against the reference, on real candles ------------------------------- */

Test(reference, btcusdt_first_5000)
{
    struct klines k = load_klines(BTC_CSV, REF_ROWS);
    if (k.bars == NULL) {
        cq_test_shared_missing(BTC_CSV);
    }
    cr_assert_eq(k.count, REF_ROWS);
    check_against_reference(&k, "BTCUSDT");
    free_klines(&k);
}

Test(reference, ethusdt_2025_gz_first_5000)
{
    struct klines k = load_klines(ETH_GZ, REF_ROWS);
    if (k.bars == NULL) {
        cq_test_shared_missing(ETH_GZ);
    }
    cr_assert_eq(k.count, REF_ROWS);
    check_against_reference(&k, "ETHUSDT-2025");
    free_klines(&k);
}

/* The window indicators over all 66k BTC candles (O(n) per bar for the
 * reference stays cheap): no drift survives the periodic re-sum. */
Test(reference, windows_whole_btc_file)
{
    struct klines k = load_klines(BTC_CSV, SIZE_MAX);
    if (k.bars == NULL) {
        cq_test_shared_missing(BTC_CSV);
    }
    cr_assert_eq(k.count, 66087);
    size_t len = k.count;
    double *c = closes_of(&k);
    double *sma = nan_array(len);
    double *mid = nan_array(len);
    double *up = nan_array(len);
    double *low = nan_array(len);
    double *sd = nan_array(len);
    double *vw = nan_array(len);
    struct cq_sma xs;
    struct cq_bbands xb;
    struct cq_vwap xv;

    ref_sma(c, len, 50, sma);
    ref_bb(c, len, 20, 2.0, mid, up, low, sd);
    ref_vwap(k.bars, len, 20, vw);
    cr_assert(cq_sma_init(&xs, 50) == 0);
    cr_assert(cq_bbands_init(&xb, 20, 2.0) == 0);
    cr_assert(cq_vwap_init(&xv, 20) == 0);
    for (size_t t = 0; t < len; t++) {
        cq_sma_update(&xs, c[t]);
        cq_bbands_update(&xb, c[t]);
        cq_vwap_update(&xv, &k.bars[t]);
        check_bar("sma_50", t, cq_sma_ready(&xs), cq_sma_value(&xs), sma[t]);
        check_bar("bb middle", t, cq_bbands_ready(&xb), cq_bbands_middle(&xb), mid[t]);
        check_bar("bb upper", t, cq_bbands_ready(&xb), cq_bbands_upper(&xb), up[t]);
        check_bar("bb lower", t, cq_bbands_ready(&xb), cq_bbands_lower(&xb), low[t]);
        check_bar("bb sigma", t, cq_bbands_ready(&xb),
                  (cq_bbands_upper(&xb) - cq_bbands_middle(&xb)) / 2.0, sd[t]);
        check_bar("vwap_20", t, cq_vwap_ready(&xv), cq_vwap_value(&xv), vw[t]);
    }
    cq_sma_fini(&xs);
    cq_bbands_fini(&xb);
    cq_vwap_fini(&xv);
    free(c);
    free(sma);
    free(mid);
    free(up);
    free(low);
    free(sd);
    free(vw);
    free_klines(&k);
}

/* The set runs the same code as the plain structs: equal bit for bit. */
Test(reference, set_equals_structs)
{
    struct klines k = load_klines(BTC_CSV, REF_ROWS);
    struct cq_err err;
    struct cq_ind_set *s;
    struct cq_ema ema;
    struct cq_rsi rsi;
    struct cq_macd macd;
    struct cq_atr atr;
    struct cq_bbands bb;
    struct cq_sma sma;
    struct cq_vwap vwap;

    if (k.bars == NULL) {
        cq_test_shared_missing(BTC_CSV);
    }
    s = cq_ind_set_new("ema:12,rsi:14,macd:12:26:9,atr:14,bb:20:2.5,sma:50,vwap:20", &err);
    cr_assert(s != NULL, "%s", err.message);
    cr_assert(cq_ema_init(&ema, 12) == 0 && cq_rsi_init(&rsi, 14) == 0 &&
              cq_macd_init(&macd, 12, 26, 9) == 0 && cq_atr_init(&atr, 14) == 0 &&
              cq_bbands_init(&bb, 20, 2.5) == 0 && cq_sma_init(&sma, 50) == 0 &&
              cq_vwap_init(&vwap, 20) == 0);
    for (size_t t = 0; t < k.count; t++) {
        const struct cq_ind_bar *b = &k.bars[t];
        double want[11];
        bool ready[11];
        cq_ind_set_update(s, b);
        cq_ema_update(&ema, b->close);
        cq_rsi_update(&rsi, b->close);
        cq_macd_update(&macd, b->close);
        cq_atr_update(&atr, b);
        cq_bbands_update(&bb, b->close);
        cq_sma_update(&sma, b->close);
        cq_vwap_update(&vwap, b);
        want[0] = cq_ema_value(&ema), ready[0] = cq_ema_ready(&ema);
        want[1] = cq_rsi_value(&rsi), ready[1] = cq_rsi_ready(&rsi);
        want[2] = cq_macd_line(&macd), ready[2] = cq_ema_ready(&macd.slow);
        want[3] = cq_macd_signal(&macd), ready[3] = cq_macd_ready(&macd);
        want[4] = cq_macd_hist(&macd), ready[4] = cq_macd_ready(&macd);
        want[5] = cq_atr_value(&atr), ready[5] = cq_atr_ready(&atr);
        want[6] = cq_bbands_middle(&bb), ready[6] = cq_bbands_ready(&bb);
        want[7] = cq_bbands_upper(&bb), ready[7] = ready[6];
        want[8] = cq_bbands_lower(&bb), ready[8] = ready[6];
        want[9] = cq_sma_value(&sma), ready[9] = cq_sma_ready(&sma);
        want[10] = cq_vwap_value(&vwap), ready[10] = cq_vwap_ready(&vwap);
        for (size_t c = 0; c < 11; c++) {
            double v;
            bool have = cq_ind_set_value(s, c, &v);
            cr_assert(have == ready[c], "bar %zu column %s", t + 1, cq_ind_set_column_name(s, c));
            if (have) {
                cr_assert(v == want[c], "bar %zu column %s: %.17g vs %.17g", t + 1,
                          cq_ind_set_column_name(s, c), v, want[c]);
            }
        }
    }
    cq_ind_set_free(s);
    cq_bbands_fini(&bb);
    cq_sma_fini(&sma);
    cq_vwap_fini(&vwap);
    free_klines(&k);
}

/* ---- the 2023-03-24 halt -------------------------------------------------- */

#define HALT_FIRST_OPEN_MS 1679657280000LL /* 11:28 UTC, first flat candle */
#define HALT_FLAT_BARS 72
#define HALT_RESUME_OPEN_MS 1679666400000LL /* 14:00 UTC, after 80 missing minutes */

Test(halt, flat_zero_volume_candles_and_gap)
{
    struct klines k = load_klines(BTC_CSV, SIZE_MAX);
    struct cq_err err;
    struct cq_ind_set *s;
    size_t first = SIZE_MAX;

    if (k.bars == NULL) {
        cq_test_shared_missing(BTC_CSV);
    }
    for (size_t i = 0; i < k.count; i++) {
        if (k.open_time[i] == HALT_FIRST_OPEN_MS) {
            first = i;
        }
    }
    cr_assert(first != SIZE_MAX, "the halt's first candle is not in %s", BTC_CSV);
    /* the data as the README describes it */
    for (size_t i = first; i < first + HALT_FLAT_BARS; i++) {
        const struct cq_ind_bar *b = &k.bars[i];
        cr_assert(b->open == 28080.0 && b->high == 28080.0 && b->low == 28080.0 &&
                  b->close == 28080.0 && b->volume == 0.0);
    }
    cr_assert_eq(k.open_time[first + HALT_FLAT_BARS], HALT_RESUME_OPEN_MS);

    s = cq_ind_set_new(GOLDEN_SPEC, &err);
    cr_assert(s != NULL, "%s", err.message);
    /* columns: 0 ema_12 1 ema_26 2 rsi_14 3-5 macd 6 atr_14 7-9 bb 10 sma_50 11 vwap_20 */
    for (size_t i = 0; i < first + HALT_FLAT_BARS + 200; i++) {
        cq_ind_set_update(s, &k.bars[i]);
        for (size_t c = 0; c < cq_ind_set_columns(s); c++) {
            double v;
            if (cq_ind_set_value(s, c, &v)) {
                cr_assert(isfinite(v), "bar %zu column %s is %f", i + 1,
                          cq_ind_set_column_name(s, c), v);
            }
        }
        if (i < first) {
            continue;
        }
        size_t flat = i - first + 1; /* flat candles so far */
        double v;
        if (flat <= HALT_FLAT_BARS && flat >= 20) {
            /* 20 zero-volume bars: VWAP falls back to the last close */
            cr_assert(cq_ind_set_value(s, 11, &v));
            cr_assert_eq(v, 28080.0, "flat bar %zu: vwap_20 %.17g", flat, v);
        }
        if (flat <= HALT_FLAT_BARS && flat >= 40) {
            /* the window has been flat for a whole re-sum period: the
             * Bollinger width and the SMA are exact */
            for (size_t c = 7; c <= 9; c++) {
                cr_assert(cq_ind_set_value(s, c, &v));
                cr_assert_eq(v, 28080.0, "flat bar %zu: %s %.17g", flat,
                             cq_ind_set_column_name(s, c), v);
            }
        }
        if (flat <= HALT_FLAT_BARS && flat >= 100) {
            cr_assert(cq_ind_set_value(s, 10, &v));
            cr_assert_eq(v, 28080.0);
        }
        if (flat <= HALT_FLAT_BARS) {
            /* no price change: both Wilder averages decay alike, RSI stays
             * where it was and in range; ATR decays toward 0 */
            cr_assert(cq_ind_set_value(s, 2, &v));
            cr_assert(v >= 0.0 && v <= 100.0);
            cr_assert(cq_ind_set_value(s, 6, &v));
            cr_assert(v >= 0.0);
        }
        if (flat == HALT_FLAT_BARS + 1) {
            /* the first candle after the gap trades again */
            cr_assert(cq_ind_set_value(s, 11, &v));
            cr_assert(v != 28080.0);
        }
    }
    cq_ind_set_free(s);
    free_klines(&k);
}

/* Every ready value over every kline file in ../shared/data is finite. */
Test(halt, every_kline_file_finite)
{
    static const char *const files[] = {
        KLINES_DIR "BTCUSDT-1m.csv", KLINES_DIR "ETHUSDT-1m.csv", KLINES_DIR "DOGEUSDT-1m.csv",
        KLINES_DIR "extra-2025-06/BTCUSDT-1m.csv.gz", KLINES_DIR "extra-2025-06/ETHUSDT-1m.csv.gz"};
    for (size_t f = 0; f < CQ_ARRAY_LEN(files); f++) {
        struct klines k = load_klines(files[f], SIZE_MAX);
        struct cq_err err;
        struct cq_ind_set *s;
        if (k.bars == NULL) {
            cq_test_shared_missing(files[f]);
        }
        s = cq_ind_set_new(GOLDEN_SPEC ",rsi:2,bb:2:3,vwap:1,atr:1", &err);
        cr_assert(s != NULL, "%s", err.message);
        cr_assert(k.count > 40000, "%s: %zu rows", files[f], k.count);
        for (size_t i = 0; i < k.count; i++) {
            cq_ind_set_update(s, &k.bars[i]);
            for (size_t c = 0; c < cq_ind_set_columns(s); c++) {
                double v;
                if (cq_ind_set_value(s, c, &v)) {
                    cr_assert(isfinite(v), "%s bar %zu column %s is %f", files[f], i + 1,
                              cq_ind_set_column_name(s, c), v);
                }
            }
        }
        cq_ind_set_free(s);
        free_klines(&k);
    }
}

/* ---- edge cases ---------------------------------------------------------------- */

Test(edge, constant_series)
{
    struct cq_rsi rsi;
    struct cq_bbands bb;
    struct cq_vwap vwap;
    struct cq_atr atr;
    struct cq_ind_bar bar = {0.0752, 0.0752, 0.0752, 0.0752, 0.0};

    cr_assert(cq_rsi_init(&rsi, 14) == 0);
    cr_assert(cq_bbands_init(&bb, 20, 2.0) == 0);
    cr_assert(cq_vwap_init(&vwap, 20) == 0);
    cr_assert(cq_atr_init(&atr, 14) == 0);
    for (int i = 0; i < 100; i++) {
        cq_rsi_update(&rsi, bar.close);
        cq_bbands_update(&bb, bar.close);
        cq_vwap_update(&vwap, &bar);
        cq_atr_update(&atr, &bar);
    }
    cr_assert_eq(cq_rsi_value(&rsi), 50.0, "no gains, no losses: RSI 50");
    cr_assert_eq(cq_bbands_upper(&bb), 0.0752);
    cr_assert_eq(cq_bbands_lower(&bb), 0.0752);
    cr_assert_eq(cq_vwap_value(&vwap), 0.0752, "no volume at all: the close");
    cr_assert_eq(cq_atr_value(&atr), 0.0);

    /* only gains: 100 */
    cr_assert(cq_rsi_init(&rsi, 3) == 0);
    for (int i = 0; i < 10; i++) {
        cq_rsi_update(&rsi, 1.0 + i);
    }
    cr_assert_eq(cq_rsi_value(&rsi), 100.0);
    /* only losses: 0 */
    cr_assert(cq_rsi_init(&rsi, 3) == 0);
    for (int i = 0; i < 10; i++) {
        cq_rsi_update(&rsi, 100.0 - i);
    }
    cr_assert_eq(cq_rsi_value(&rsi), 0.0);
    cq_bbands_fini(&bb);
    cq_vwap_fini(&vwap);
}

Test(edge, init_rejects_bad_parameters)
{
    struct cq_sma sma;
    struct cq_ema ema;
    struct cq_rsi rsi;
    struct cq_macd macd;
    struct cq_atr atr;
    struct cq_bbands bb;
    struct cq_vwap vwap;

    cr_assert_eq(cq_sma_init(&sma, 0), -CQ_EINVAL);
    cr_assert_eq(cq_sma_init(&sma, CQ_IND_WINDOW_MAX + 1), -CQ_EINVAL);
    cq_sma_fini(&sma); /* safe after a failed init */
    cr_assert_eq(cq_ema_init(&ema, 0), -CQ_EINVAL);
    cr_assert_eq(cq_ema_init(&ema, CQ_IND_WINDOW_MAX + 1), -CQ_EINVAL);
    cr_assert_eq(cq_rsi_init(&rsi, 0), -CQ_EINVAL);
    cr_assert_eq(cq_atr_init(&atr, 1001), -CQ_EINVAL);
    cr_assert_eq(cq_macd_init(&macd, 26, 12, 9), -CQ_EINVAL);
    cr_assert_eq(cq_macd_init(&macd, 12, 12, 9), -CQ_EINVAL);
    cr_assert_eq(cq_macd_init(&macd, 12, 26, 0), -CQ_EINVAL);
    cr_assert_eq(cq_bbands_init(&bb, 20, 0.0), -CQ_EINVAL);
    cr_assert_eq(cq_bbands_init(&bb, 20, -2.0), -CQ_EINVAL);
    cr_assert_eq(cq_bbands_init(&bb, 20, NAN), -CQ_EINVAL);
    cr_assert_eq(cq_bbands_init(&bb, 20, INFINITY), -CQ_EINVAL);
    cr_assert_eq(cq_bbands_init(&bb, 0, 2.0), -CQ_EINVAL);
    cq_bbands_fini(&bb);
    cr_assert_eq(cq_vwap_init(&vwap, 0), -CQ_EINVAL);
    cq_vwap_fini(&vwap);
    cr_assert_eq(cq_sma_init(&sma, CQ_IND_WINDOW_MAX), 0);
    cq_sma_fini(&sma);
    cq_sma_fini(&sma); /* twice is fine */
}

Test(edge, period_one_follows_the_input)
{
    struct cq_sma sma;
    struct cq_ema ema;
    struct cq_atr atr;
    struct cq_bbands bb;
    cr_assert(cq_sma_init(&sma, 1) == 0 && cq_ema_init(&ema, 1) == 0 && cq_atr_init(&atr, 1) == 0 &&
              cq_bbands_init(&bb, 1, 2.0) == 0);
    for (size_t i = 0; i < 50; i++) {
        struct cq_ind_bar b = synth_bar(i);
        cq_sma_update(&sma, b.close);
        cq_ema_update(&ema, b.close);
        cq_atr_update(&atr, &b);
        cq_bbands_update(&bb, b.close);
        cr_assert_eq(cq_sma_value(&sma), b.close);
        cr_assert_eq(cq_ema_value(&ema), b.close);
        cr_assert_eq(cq_bbands_upper(&bb), b.close);
        cr_assert(cq_atr_value(&atr) >= b.high - b.low);
    }
    cq_sma_fini(&sma);
    cq_bbands_fini(&bb);
}

/* Every period from 1 to CQ_IND_WINDOW_MAX gives the right first value
 * (each period has its own 1/n, so this covers every one of them). With
 * closes 1..n the mean is (n+1)/2; with true ranges all 2 the first ATR is
 * 2; with gains 1..n-ish the first RSI is 100. */
Test(edge, every_period)
{
    for (size_t n = 1; n <= CQ_IND_WINDOW_MAX; n++) {
        struct cq_sma sma;
        struct cq_ema ema;
        struct cq_atr atr;
        struct cq_bbands bb;
        struct cq_vwap vwap;
        double mean = ((double)n + 1.0) / 2.0;
        cr_assert(cq_sma_init(&sma, n) == 0 && cq_ema_init(&ema, n) == 0 &&
                  cq_atr_init(&atr, n) == 0 && cq_bbands_init(&bb, n, 1.0) == 0 &&
                  cq_vwap_init(&vwap, n) == 0);
        for (size_t i = 1; i <= n; i++) {
            double c = (double)i;
            struct cq_ind_bar b = {c, c + 1.0, c - 1.0, c, 1.0};
            cq_sma_update(&sma, c);
            cq_ema_update(&ema, c);
            cq_atr_update(&atr, &b);
            cq_bbands_update(&bb, c);
            cq_vwap_update(&vwap, &b);
        }
        cr_assert(fabs(cq_sma_value(&sma) - mean) <= 1e-12 * mean, "sma %zu: %.17g", n,
                  cq_sma_value(&sma));
        cr_assert(fabs(cq_ema_value(&ema) - mean) <= 1e-12 * mean, "ema %zu seed: %.17g", n,
                  cq_ema_value(&ema));
        cr_assert(fabs(cq_atr_value(&atr) - 2.0) <= 1e-12, "atr %zu: %.17g", n, cq_atr_value(&atr));
        cr_assert(fabs(cq_bbands_middle(&bb) - mean) <= 1e-12 * mean, "bb %zu", n);
        /* population variance of 1..n is (n² - 1)/12 */
        double sd = sqrt(((double)n * (double)n - 1.0) / 12.0);
        cr_assert(fabs(cq_bbands_upper(&bb) - (mean + sd)) <= 1e-9 * mean, "bb %zu sigma", n);
        cr_assert(fabs(cq_vwap_value(&vwap) - mean) <= 1e-12 * mean, "vwap %zu", n);
        cq_sma_fini(&sma);
        cq_bbands_fini(&bb);
        cq_vwap_fini(&vwap);
    }
}

/* ---- the spec parser ------------------------------------------------------------- */

Test(spec, good_specs_and_their_columns)
{
    static const struct {
        const char *spec;
        const char *columns; /* comma-joined */
    } cases[] = {
        {"ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20",
         "ema_12,ema_26,rsi_14,macd_12_26_9,macd_signal_12_26_9,macd_hist_12_26_9,atr_14,"
         "bb_mid_20_2,bb_up_20_2,bb_low_20_2,sma_50,vwap_20"},
        {"sma:1", "sma_1"},
        {"sma:1000", "sma_1000"},
        {"bb:20:2.5", "bb_mid_20_2.5,bb_up_20_2.5,bb_low_20_2.5"},
        {"bb:20:2.50", "bb_mid_20_2.5,bb_up_20_2.5,bb_low_20_2.5"},
        {"bb:20:2.0", "bb_mid_20_2,bb_up_20_2,bb_low_20_2"},
        {"bb:20:0.5", "bb_mid_20_0.5,bb_up_20_0.5,bb_low_20_0.5"},
        {"bb:20:2,bb:20:3",
         "bb_mid_20_2,bb_up_20_2,bb_low_20_2,bb_mid_20_3,bb_up_20_3,bb_low_20_3"},
        {"macd:1:1000:1000", "macd_1_1000_1000,macd_signal_1_1000_1000,macd_hist_1_1000_1000"},
        {"ema:12,sma:12", "ema_12,sma_12"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_err err;
        struct cq_ind_set *s = cq_ind_set_new(cases[i].spec, &err);
        char joined[1024] = "";
        cr_assert(s != NULL, "'%s' refused: %s", cases[i].spec, err.message);
        for (size_t c = 0; c < cq_ind_set_columns(s); c++) {
            if (c > 0) {
                strcat(joined, ",");
            }
            strcat(joined, cq_ind_set_column_name(s, c));
        }
        cr_assert_str_eq(joined, cases[i].columns, "spec '%s'", cases[i].spec);
        cq_ind_set_free(s);
    }
}

Test(spec, bad_specs_exact_messages)
{
    static const struct {
        const char *spec;
        const char *message;
        const char *hint;
    } cases[] = {
        {"", "the indicator list is empty",
         "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2"},
        {"emaa:12", "indicator item 1 'emaa:12': unknown indicator 'emaa'",
         "did you mean 'ema'? known indicators: sma, ema, rsi, macd, atr, bb, vwap"},
        {"ema:12,RSI:14", "indicator item 2 'RSI:14': unknown indicator 'RSI'",
         "did you mean 'rsi'? known indicators: sma, ema, rsi, macd, atr, bb, vwap"},
        {"bbands:20:2", "indicator item 1 'bbands:20:2': unknown indicator 'bbands'",
         "did you mean 'bb'? known indicators: sma, ema, rsi, macd, atr, bb, vwap"},
        {"stoch:14", "indicator item 1 'stoch:14': unknown indicator 'stoch'",
         "known indicators: sma, ema, rsi, macd, atr, bb, vwap"},
        {":12", "indicator item 1 ':12' has no name",
         "start each item with an indicator name: sma, ema, rsi, macd, atr, bb, vwap"},
        {"ema", "indicator item 1 'ema': missing period", "write ema:N, e.g. ema:12"},
        {"macd", "indicator item 1 'macd': missing parameters",
         "write macd:FAST:SLOW:SIGNAL, e.g. macd:12:26:9"},
        {"ema:", "indicator item 1 'ema:': period is empty",
         "write ema:N with whole numbers from 1 to 1000, e.g. ema:12"},
        {"ema:12:5", "indicator item 1 'ema:12:5': ema takes 1 parameter, got 2",
         "write ema:N, e.g. ema:12"},
        {"rsi:1:2:3:4:5:6",
         "indicator item 1 'rsi:1:2:3:4:5:6': rsi takes 1 parameter, got at least 4",
         "write rsi:N, e.g. rsi:14"},
        {"macd:12:26", "indicator item 1 'macd:12:26': macd takes 3 parameters, got 2",
         "write macd:FAST:SLOW:SIGNAL, e.g. macd:12:26:9"},
        {"bb:20", "indicator item 1 'bb:20': bb takes 2 parameters, got 1",
         "write bb:N:K, e.g. bb:20:2"},
        {"ema:0", "indicator item 1 'ema:0': period is 0",
         "write ema:N with whole numbers from 1 to 1000, e.g. ema:12"},
        {"sma:abc", "indicator item 1 'sma:abc': period 'abc' is not a whole number",
         "write sma:N with whole numbers from 1 to 1000, e.g. sma:50"},
        {"sma:-5", "indicator item 1 'sma:-5': period '-5' is not a whole number",
         "write sma:N with whole numbers from 1 to 1000, e.g. sma:50"},
        {"sma:12.5", "indicator item 1 'sma:12.5': period '12.5' is not a whole number",
         "write sma:N with whole numbers from 1 to 1000, e.g. sma:50"},
        {"sma:012", "indicator item 1 'sma:012': period '012' has a leading zero",
         "write it as 12"},
        {"sma:1001",
         "indicator item 1 'sma:1001': period 1001 is longer than the maximum 1000 "
         "(CQ_IND_WINDOW_MAX)",
         "use a period from 1 to 1000"},
        {"atr:99999999999999999999",
         "indicator item 1 'atr:99999999999999999999': period 99999999999999999999 is longer "
         "than the maximum 1000 (CQ_IND_WINDOW_MAX)",
         "use a period from 1 to 1000"},
        {"macd:26:12:9",
         "indicator item 1 'macd:26:12:9': macd fast period 26 is not shorter than slow period 12",
         "write macd:FAST:SLOW:SIGNAL with FAST < SLOW, e.g. macd:12:26:9"},
        {"macd:12:12:9",
         "indicator item 1 'macd:12:12:9': macd fast period 12 is not shorter than slow period 12",
         "write macd:FAST:SLOW:SIGNAL with FAST < SLOW, e.g. macd:12:26:9"},
        {"macd:12:26:0", "indicator item 1 'macd:12:26:0': signal period is 0",
         "write macd:FAST:SLOW:SIGNAL with whole numbers from 1 to 1000, e.g. macd:12:26:9"},
        {"macd:12:2000:9",
         "indicator item 1 'macd:12:2000:9': slow period 2000 is longer than the maximum 1000 "
         "(CQ_IND_WINDOW_MAX)",
         "use a period from 1 to 1000"},
        {"bb:20:0", "indicator item 1 'bb:20:0': bb k '0' is not a positive number",
         "write bb:N:K with K a positive number like 2 or 2.5, e.g. bb:20:2"},
        {"bb:20:-2", "indicator item 1 'bb:20:-2': bb k '-2' is not a positive number",
         "write bb:N:K with K a positive number like 2 or 2.5, e.g. bb:20:2"},
        {"bb:20:two", "indicator item 1 'bb:20:two': bb k 'two' is not a positive number",
         "write bb:N:K with K a positive number like 2 or 2.5, e.g. bb:20:2"},
        {"bb:20:1e1", "indicator item 1 'bb:20:1e1': bb k '1e1' is not a positive number",
         "write bb:N:K with K a positive number like 2 or 2.5, e.g. bb:20:2"},
        {"bb:0:2", "indicator item 1 'bb:0:2': period is 0",
         "write bb:N:K with whole numbers from 1 to 1000, e.g. bb:20:2"},
        {"ema:12,,rsi:14",
         "indicator item 2 is empty (a comma at the start or end, or two in a row)",
         "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2"},
        {"ema:12,", "indicator item 2 is empty (a comma at the start or end, or two in a row)",
         "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2"},
        {",ema:12", "indicator item 1 is empty (a comma at the start or end, or two in a row)",
         "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2"},
        {"ema:12, rsi:14", "indicator item 2 ' rsi:14' contains whitespace",
         "write the list without spaces, e.g. ema:12,rsi:14"},
        {"ema:12,rsi:14,ema:12",
         "indicator item 3 'ema:12' repeats an earlier item (column ema_12)",
         "remove the duplicate"},
        {"bb:20:2,bb:20:2.0",
         "indicator item 2 'bb:20:2.0' repeats an earlier item (column bb_mid_20_2)",
         "remove the duplicate"},
        {"ema:123456789012345678901234567890123456789012345678901234567890123456789",
         "indicator item 1 'ema:1234567890123456...' is longer than 64 characters",
         "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_err err;
        cq_err_clear(&err);
        struct cq_ind_set *s = cq_ind_set_new(cases[i].spec, &err);
        cr_assert_null(s, "'%s' was accepted", cases[i].spec);
        cr_assert_eq(err.code, CQ_EINVAL, "'%s': code %d", cases[i].spec, err.code);
        cr_assert_str_eq(err.message, cases[i].message, "spec '%s'", cases[i].spec);
        cr_assert_str_eq(err.hint, cases[i].hint, "spec '%s'", cases[i].spec);
    }
    /* NULL spec, NULL err */
    cr_assert_null(cq_ind_set_new(NULL, NULL));
    cr_assert_null(cq_ind_set_new("nope", NULL));
}

Test(spec, item_count_limit)
{
    char spec[4096] = "";
    struct cq_err err;
    struct cq_ind_set *s;

    /* 32 distinct items (96 columns with macd and bb) are accepted */
    for (int i = 1; i <= CQ_IND_SET_MAX; i++) {
        char item[32];
        if (i % 2 == 1) {
            snprintf(item, sizeof(item), "%smacd:%d:%d:9", i > 1 ? "," : "", i, i + 100);
        } else {
            snprintf(item, sizeof(item), ",bb:%d:2", i);
        }
        strcat(spec, item);
    }
    s = cq_ind_set_new(spec, &err);
    cr_assert(s != NULL, "%s", err.message);
    cr_assert_eq(cq_ind_set_columns(s), CQ_IND_COLUMNS_MAX);
    cq_ind_set_free(s);
    strcat(spec, ",ema:5");
    s = cq_ind_set_new(spec, &err);
    cr_assert_null(s);
    cr_assert_str_eq(err.message, "the indicator list has more than 32 items (CQ_IND_SET_MAX)");
    cr_assert_str_eq(err.hint, "split the list over several runs");
}

/* ---- the CLI ------------------------------------------------------------------------ */

struct cli_result {
    int code;
    char *out; /* owned */
    char *err; /* owned */
};

static struct cli_result run_cli(const char *const *args)
{
    struct cli_result r = {0, NULL, NULL};
    char *argv[16];
    int argc = 0;
    size_t out_len = 0;
    size_t err_len = 0;
    FILE *out = open_memstream(&r.out, &out_len);
    FILE *err = open_memstream(&r.err, &err_len);

    cr_assert(out != NULL && err != NULL);
    argv[argc++] = (char *)"indicators";
    for (size_t i = 0; args[i] != NULL; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    r.code = cq_indicators_cli(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void free_result(struct cli_result *r)
{
    free(r->out);
    free(r->err);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long len;
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    cr_assert(buf != NULL);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* A temporary file holding text (gzip-compressed with gz); the path is
 * static storage per slot. */
static const char *temp_file(const char *text, size_t len, bool gz)
{
    static char paths[4][64];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 64, "/tmp/cq-test-indicators-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    if (gz) {
        gzFile g = gzdopen(fd, "wb");
        cr_assert(g != NULL);
        cr_assert_eq(gzwrite(g, text, (unsigned)len), (int)len);
        cr_assert_eq(gzclose(g), Z_OK);
    } else {
        cr_assert_eq(write(fd, text, len), (ssize_t)len);
        close(fd);
    }
    return path;
}

/* Split text into lines in place (NUL-terminated), at most max. */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *p = text;
    while (*p != '\0' && n < max) {
        char *nl = strchr(p, '\n');
        lines[n++] = p;
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

static void expect_number_cell(const char *got, const char *want, size_t line, const char *col)
{
    char *end1;
    char *end2;
    double g = strtod(got, &end1);
    double w = strtod(want, &end2);
    cr_assert(*end1 == '\0' && end1 != got, "line %zu %s: '%s' is not a number", line, col, got);
    cr_assert(*end2 == '\0' && end2 != want);
    cr_assert(close_enough(g, w), "line %zu %s: %s, golden %s", line, col, got, want);
}

/* csv: same header, same open_time and close text, same empty cells,
 * numbers within the tolerance. */
static void compare_csv(char *got, char *want)
{
    static char *gl[256];
    static char *wl[256];
    size_t ng = split_lines(got, gl, 256);
    size_t nw = split_lines(want, wl, 256);
    cr_assert_eq(ng, nw, "%zu lines, golden %zu", ng, nw);
    cr_assert_str_eq(gl[0], wl[0], "header");
    for (size_t i = 1; i < ng; i++) {
        char *gs = gl[i];
        char *ws = wl[i];
        for (size_t col = 0;; col++) {
            char *gc = strchr(gs, ',');
            char *wc = strchr(ws, ',');
            cr_assert((gc == NULL) == (wc == NULL), "line %zu: cell count differs", i + 1);
            if (gc != NULL) {
                *gc = '\0';
                *wc = '\0';
            }
            if (col < 2 || ws[0] == '\0' || gs[0] == '\0') {
                cr_assert_str_eq(gs, ws, "line %zu cell %zu", i + 1, col + 1);
            } else {
                expect_number_cell(gs, ws, i + 1, "cell");
            }
            if (gc == NULL) {
                break;
            }
            gs = gc + 1;
            ws = wc + 1;
        }
    }
}

/* json lines: same keys in the same order, open_time and close exact, null
 * where the golden has null, numbers within the tolerance. */
static void compare_json(char *got, char *want)
{
    static char *gl[256];
    static char *wl[256];
    size_t ng = split_lines(got, gl, 256);
    size_t nw = split_lines(want, wl, 256);
    cr_assert_eq(ng, nw);
    for (size_t i = 0; i < ng; i++) {
        size_t gn = strlen(gl[i]);
        size_t wn = strlen(wl[i]);
        cr_assert(gn > 2 && gl[i][0] == '{' && gl[i][gn - 1] == '}', "line %zu: %s", i + 1, gl[i]);
        cr_assert(wn > 2 && wl[i][0] == '{' && wl[i][wn - 1] == '}');
        gl[i][gn - 1] = '\0';
        wl[i][wn - 1] = '\0';
        char *gs = gl[i] + 1;
        char *ws = wl[i] + 1;
        for (size_t member = 0;; member++) {
            char *gc = strchr(gs, ',');
            char *wc = strchr(ws, ',');
            cr_assert((gc == NULL) == (wc == NULL), "line %zu: member count differs", i + 1);
            if (gc != NULL) {
                *gc = '\0';
                *wc = '\0';
            }
            char *gcolon = strchr(gs, ':');
            char *wcolon = strchr(ws, ':');
            cr_assert(gcolon != NULL && wcolon != NULL);
            *gcolon = '\0';
            *wcolon = '\0';
            cr_assert_str_eq(gs, ws, "line %zu member %zu key", i + 1, member + 1);
            if (member < 2 || strcmp(wcolon + 1, "null") == 0) {
                cr_assert_str_eq(gcolon + 1, wcolon + 1, "line %zu %s", i + 1, ws);
            } else {
                expect_number_cell(gcolon + 1, wcolon + 1, i + 1, ws);
            }
            if (gc == NULL) {
                break;
            }
            gs = gc + 1;
            ws = wc + 1;
        }
    }
}

Test(cli, golden_csv)
{
    const char *args[] = {"--data", HALT_FIXTURE, "--indicators", GOLDEN_SPEC, NULL};
    struct cli_result r = run_cli(args);
    char *want = read_file(FIXTURES "btcusdt-halt-2023-03-24.golden.csv");
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    cr_assert_str_empty(r.err);
    compare_csv(r.out, want);
    free(want);
    free_result(&r);
}

Test(cli, golden_json)
{
    const char *args[] = {"--data",       HALT_FIXTURE, "--format", "json",
                          "--indicators", GOLDEN_SPEC,  NULL};
    struct cli_result r = run_cli(args);
    char *want = read_file(FIXTURES "btcusdt-halt-2023-03-24.golden.jsonl");
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    compare_json(r.out, want);
    free(want);
    free_result(&r);
}

/* Every printed number reads back to exactly the double the set computed
 * in-process from the same candles (the output loses nothing). */
Test(cli, numbers_round_trip)
{
    const char *args[] = {"--data", HALT_FIXTURE, "--indicators", GOLDEN_SPEC ",rsi:3,bb:5:1.5",
                          NULL};
    struct cli_result r = run_cli(args);
    struct klines k = load_klines(HALT_FIXTURE, SIZE_MAX);
    struct cq_err err;
    struct cq_ind_set *s = cq_ind_set_new(GOLDEN_SPEC ",rsi:3,bb:5:1.5", &err);
    static char *lines[256];
    size_t n;
    size_t checked = 0;

    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(s != NULL && k.bars != NULL);
    n = split_lines(r.out, lines, 256);
    cr_assert_eq(n, k.count + 1);
    for (size_t i = 0; i < k.count; i++) {
        char *p = lines[i + 1];
        cq_ind_set_update(s, &k.bars[i]);
        cr_assert_eq(strtoll(p, &p, 10), k.open_time[i]);
        cr_assert(*p == ',');
        cr_assert_eq(strtod(p + 1, &p), k.bars[i].close);
        for (size_t c = 0; c < cq_ind_set_columns(s); c++) {
            double v;
            cr_assert(*p == ',', "line %zu column %zu", i + 2, c);
            p++;
            if (!cq_ind_set_value(s, c, &v)) {
                cr_assert(*p == ',' || *p == '\0', "line %zu: value during warm-up", i + 2);
                continue;
            }
            double printed = strtod(p, &p);
            cr_assert(printed == v, "line %zu %s: printed %.17g, computed %.17g", i + 2,
                      cq_ind_set_column_name(s, c), printed, v);
            checked++;
        }
        cr_assert(*p == '\0');
    }
    cr_assert(checked > 1000);
    cq_ind_set_free(s);
    free_klines(&k);
    free_result(&r);
}

/* The same rows without the header line, gzipped, with CRLF line ends and
 * without a final newline all print exactly the same thing. */
Test(cli, header_optional_gz_and_line_ends)
{
    char *text = read_file(HALT_FIXTURE);
    const char *base_args[] = {"--data", HALT_FIXTURE, "--indicators", GOLDEN_SPEC, NULL};
    struct cli_result base = run_cli(base_args);
    char *no_header = strchr(text, '\n') + 1;
    size_t len = strlen(no_header);
    char *crlf = malloc(2 * strlen(text) + 1);
    size_t j = 0;

    cr_assert_eq(base.code, 0);
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '\n') {
            crlf[j++] = '\r';
        }
        crlf[j++] = *p;
    }
    crlf[j] = '\0';
    const char *variants[] = {
        temp_file(no_header, len, false), temp_file(text, strlen(text), true),
        temp_file(crlf, j, false), temp_file(text, strlen(text) - 1, false), /* no final newline */
    };
    for (size_t v = 0; v < CQ_ARRAY_LEN(variants); v++) {
        char data_arg[128];
        snprintf(data_arg, sizeof(data_arg), "--data=%s", variants[v]);
        const char *args[] = {data_arg, "--indicators", GOLDEN_SPEC, NULL};
        struct cli_result r = run_cli(args);
        cr_assert_eq(r.code, 0, "variant %zu: exit %d: %s", v, r.code, r.err);
        cr_assert_str_eq(r.out, base.out, "variant %zu differs", v);
        free_result(&r);
        unlink(variants[v]);
    }
    free(crlf);
    free(text);
    free_result(&base);
}

#define HDR "open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,trades\n"
#define ROW1 "1679004900000,24899.18,24943.98,24896.29,24934.2,293.13711,1679004959999,,\n"

Test(cli, malformed_lines_exit_1_with_file_and_line)
{
    static const struct {
        const char *text;
        unsigned line;
        const char *message;
    } cases[] = {
        {HDR ROW1 "1679004960000,24935.6,24946.86,24910.48,24933.42,201.9253,1679005019999\n", 3,
         "has 7 fields; expected 9: open_time_ms,open,high,low,close,volume,close_time_ms,"
         "quote_volume,trades"},
        {HDR ROW1 "1679004960000,24935.6,24946.86,24910.48,24933.42,201.9253,1679005019999,,,\n", 3,
         "has more than 9 fields"},
        {ROW1 "1679004960000,24935.6,24946.86,24910.48,abc,201.9253,1679005019999,,\n", 2,
         "close 'abc' is not a decimal number (digits with an optional '.')"},
        {HDR "1679004960000,2.4e4,24946.86,24910.48,24933.42,201.9253,1679005019999,,\n", 2,
         "open '2.4e4' is not a decimal number"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,,1679005019999,,\n", 2,
         "volume '' is not a decimal number"},
        {HDR "1679004960000,24935.6,24946.86,24910.48, 24933.42,201.9253,1679005019999,,\n", 2,
         "close ' 24933.42' is not a decimal number"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,-1,1679005019999,,\n", 2,
         "volume '-1' is negative"},
        {HDR "1679004960000,0,24946.86,0,24933.42,1,1679005019999,,\n", 2,
         "open '0' is not a positive price"},
        {HDR "1679004960000,24935.6,24900.00,24910.48,24933.42,1,1679005019999,,\n", 2,
         "prices are inconsistent: need low <= open, close <= high"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24950,1,1679005019999,,\n", 2,
         "prices are inconsistent"},
        {HDR "-1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679005019999,,\n", 2,
         "open_time_ms '-1679004960000' is not a whole number of milliseconds"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679004959999,,\n", 2,
         "close_time_ms 1679004959999 is before open_time_ms 1679004960000"},
        {HDR ROW1 ROW1, 3,
         "open_time_ms 1679004900000 does not follow the previous row's 1679004900000"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679005019999,x,\n", 2,
         "quote_volume 'x' is not empty or a decimal >= 0"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679005019999,,1.5\n", 2,
         "trades '1.5' is not empty or a whole number"},
        {HDR ROW1 "\n" ROW1, 3, "is empty"},
        {"open,high,low,close\n" ROW1, 1, "unknown header; expected exactly open_time_ms,"},
        {HDR HDR ROW1, 2, "open_time_ms 'open_time_ms' is not a whole number"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679005019999,,"
             "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
             "00000000000000000000000000000000000000000000000000000000000000000000000000000000000"
             "1\n",
         2,
         "trades '0000000000000000000000000000000000000000' is out of range: empty or 0 to "
         "999999999999999999"},
        /* out of range is said so, with the range, not "not a whole number" */
        {HDR "99999999999999999999,24935.6,24946.86,24910.48,24933.42,1,1679005019999,,\n", 2,
         "open_time_ms '99999999999999999999' is out of range: milliseconds since 1970 from 0 to "
         "253402300799999 (9999-12-31T23:59:59.999Z)"},
        {HDR "253402300800000,24935.6,24946.86,24910.48,24933.42,1,253402300800000,,\n", 2,
         "open_time_ms '253402300800000' is out of range: milliseconds since 1970 from 0 to "
         "253402300799999"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,253402300800000,,\n", 2,
         "close_time_ms '253402300800000' is out of range"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1,1679005019999,,"
             "1000000000000000000\n",
         2, "trades '1000000000000000000' is out of range: empty or 0 to 999999999999999999"},
        {HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1234567890123456789012,"
             "1679005019999,,\n",
         2, "volume '1234567890123456789012' is too long for a decimal"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const char *path = temp_file(cases[i].text, strlen(cases[i].text), i % 2 == 1);
        const char *args[] = {"--data", path, "--indicators", "ema:2", NULL};
        char where[128];
        struct cli_result r = run_cli(args);
        snprintf(where, sizeof(where), "coinquantd indicators: %s:%u: ", path, cases[i].line);
        cr_assert_eq(r.code, 1, "case %zu: exit %d, stderr %s", i, r.code, r.err);
        cr_assert(strstr(r.err, where) == r.err, "case %zu: stderr '%s' does not start with '%s'",
                  i, r.err, where);
        cr_assert(strstr(r.err, cases[i].message) != NULL, "case %zu: stderr '%s' lacks '%s'", i,
                  r.err, cases[i].message);
        free_result(&r);
        unlink(path);
    }
}

/* The last millisecond RFC 3339 can write is the last one accepted. */
Test(cli, times_up_to_the_end_of_year_9999_are_accepted)
{
    static const char text[] =
        HDR "253402300739999,1,1,1,1,1,253402300799999,,999999999999999999\n";
    const char *path = temp_file(text, sizeof(text) - 1, false);
    const char *args[] = {"--data", path, "--indicators", "ema:2", NULL};
    struct cli_result r = run_cli(args);
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    cr_assert(strstr(r.out, "253402300739999,1,") != NULL, "%s", r.out);
    free_result(&r);
    unlink(path);
}

Test(cli, long_lines_nul_bytes_and_truncated_gz)
{
    /* a line of 2000 bytes: rejected with its line number, not split */
    size_t n = strlen(HDR) + strlen(ROW1) + 2000 + 1;
    char *text = malloc(n + 1);
    strcpy(text, HDR ROW1);
    memset(text + strlen(text), '1', 2000);
    text[n - 1] = '\n';
    text[n] = '\0';
    const char *path = temp_file(text, n, false);
    const char *args[] = {"--data", path, "--indicators", "ema:2", NULL};
    struct cli_result r = run_cli(args);
    char want[160];
    snprintf(want, sizeof(want), "coinquantd indicators: %s:3: line is longer than 1024 bytes\n",
             path);
    cr_assert_eq(r.code, 1);
    cr_assert_str_eq(r.err, want);
    free_result(&r);
    unlink(path);
    free(text);

    /* a NUL byte inside a row */
    static const char nul_text[] = HDR "1679004960000,24935.6,24946.86,24910.48,24933.42,1\0,"
                                       "1679005019999,,\n";
    path = temp_file(nul_text, sizeof(nul_text) - 1, false);
    args[1] = path;
    r = run_cli(args);
    cr_assert_eq(r.code, 1);
    cr_assert(strstr(r.err, ":2: contains a NUL byte") != NULL, "%s", r.err);
    free_result(&r);
    unlink(path);

    /* a gzip file cut in the middle: an error, never a silent short read */
    char *fixture = read_file(HALT_FIXTURE);
    const char *gz_path = temp_file(fixture, strlen(fixture), true);
    char *gz_bytes = read_file(gz_path);
    FILE *f = fopen(gz_path, "rb");
    fseek(f, 0, SEEK_END);
    long gz_len = ftell(f);
    fclose(f);
    unlink(gz_path);
    path = temp_file(gz_bytes, (size_t)gz_len / 2, false);
    args[1] = path;
    r = run_cli(args);
    cr_assert_eq(r.code, 1, "truncated gz: exit %d", r.code);
    cr_assert(strstr(r.err, "read failed") != NULL, "%s", r.err);
    free_result(&r);
    unlink(path);
    free(gz_bytes);
    free(fixture);
}

Test(cli, spec_and_usage_errors_exit_2)
{
    static const struct {
        const char *args[8];
        int code;
        const char *err;
    } cases[] = {
        {{"--data", HALT_FIXTURE, "--indicators", "emaa:12", NULL},
         2,
         "coinquantd indicators: --indicators: indicator item 1 'emaa:12': unknown indicator "
         "'emaa'\nhint: did you mean 'ema'? known indicators: sma, ema, rsi, macd, atr, bb, "
         "vwap\n"},
        {{"--data", HALT_FIXTURE, "--indicators", "macd:26:12:9", NULL},
         2,
         "coinquantd indicators: --indicators: indicator item 1 'macd:26:12:9': macd fast period "
         "26 is not shorter than slow period 12\nhint: write macd:FAST:SLOW:SIGNAL with FAST < "
         "SLOW, e.g. macd:12:26:9\n"},
        {{"--data", HALT_FIXTURE, NULL},
         2,
         "coinquantd indicators: missing --indicators SPEC (e.g. ema:12,rsi:14)\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--indicators", "ema:12", NULL},
         2,
         "coinquantd indicators: missing --data FILE.csv[.gz]\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--data", HALT_FIXTURE, "--indicators", "ema:12", "--format", "xml", NULL},
         2,
         "coinquantd indicators: --format must be csv or json, not 'xml'\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--data", HALT_FIXTURE, "--indicators", "ema:12", "--data", "x.csv", NULL},
         2,
         "coinquantd indicators: option given twice: '--data'\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--data", HALT_FIXTURE, "--indicators", NULL},
         2,
         "coinquantd indicators: missing value after '--indicators'\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--data", HALT_FIXTURE, "--indicators", "ema:12", "extra", NULL},
         2,
         "coinquantd indicators: unexpected argument 'extra'\n"
         "hint: run coinquantd indicators --help\n"},
        {{"--data", "/nonexistent/klines.csv", "--indicators", "ema:12", NULL},
         1,
         "coinquantd indicators: cannot open /nonexistent/klines.csv: No such file or directory\n"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cli_result r = run_cli(cases[i].args);
        cr_assert_eq(r.code, cases[i].code, "case %zu: exit %d (%s)", i, r.code, r.err);
        cr_assert_str_eq(r.err, cases[i].err, "case %zu", i);
        cr_assert_str_empty(r.out, "case %zu printed to stdout: %s", i, r.out);
        free_result(&r);
    }
}

Test(cli, help)
{
    const char *args[] = {"--help", NULL};
    struct cli_result r = run_cli(args);
    cr_assert_eq(r.code, 0);
    cr_assert(strncmp(r.out, "usage: coinquantd indicators --data FILE.csv[.gz] --indicators SPEC",
                      66) == 0,
              "%s", r.out);
    cr_assert(strstr(r.out, "macd:FAST:SLOW:SIGNAL") != NULL);
    cr_assert_str_empty(r.err);
    free_result(&r);
}
