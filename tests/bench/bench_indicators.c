/*
 * bench_indicators.c — candles per second through the incremental
 * indicators (include/cq/indicators.h) on one core, from memory.
 *
 * The whole kline file (default ../shared/data/klines/BTCUSDT-1m.csv, 66,087
 * real 1m candles including the 2023-03-24 halt) is parsed once, with
 * cq_dec_parse and cq_dec_to_double as the engine does, into an array of
 * struct cq_ind_bar. A pass feeds every candle in order to:
 *
 *   all_plain  ema 12, ema 26, rsi 14, macd 12/26/9, atr 14, bb 20/2,
 *              sma 50, vwap 20 as plain structs, and reads every output of
 *              every warm indicator (12 values) on every candle;
 *   all_set    the same list as one cq_ind_set (spec string), updated with
 *              cq_ind_set_update and read with cq_ind_set_value per column:
 *              the set's dispatch overhead over the plain structs;
 *   one line per indicator alone, to show where the time goes.
 *
 * Indicators are initialised at the start of each pass (so every pass
 * computes the same values); every value read is added to one of several
 * independent accumulators, which keeps the work observable without one
 * long floating-point dependency chain, and the resulting checksum must be
 * identical in every pass (the run aborts otherwise). A run repeats whole
 * passes until it lasts MIN_RUN_S; 5 runs after a warm-up run; the median
 * is printed as one JSON line per benchmark. Single-threaded; pin it for
 * stable figures:
 *   taskset -c 0 build/tests/bench_indicators
 *
 * Build: gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude
 *   -DCQ_SHARED_DIR='"'$PWD/../shared'"' tests/bench/bench_indicators.c
 *   server/ares/indicators.c server/core/decimal.c server/core/err.c -lz -lm
 *   -o bench_indicators
 * Usage: bench_indicators [klines.csv[.gz] [BENCH [PASSES]]]
 *   BENCH runs one benchmark by name; PASSES runs exactly that many passes
 *   and prints no timing (for profilers: valgrind --tool=callgrind gives
 *   instructions per candle without the noise of a shared machine).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "cq/decimal.h"
#include "cq/indicators.h"
#include "cq/strategy.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

#define RUNS 5
#define MIN_RUN_S 0.3
#define N_ACC 16
#define SPEC_ALL "ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20"

struct candles {
    struct cq_ind_bar *bars; /* owned */
    size_t count;
};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_indicators: %s%s%s\n", what, detail != NULL ? ": " : "",
            detail != NULL ? detail : "");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double field_value(const char *s, size_t len, const char *path)
{
    cq_dec d;
    if (cq_dec_parse(s, len, &d) < 0) {
        die("malformed decimal", path);
    }
    return cq_dec_to_double(d);
}

static struct candles load(const char *path)
{
    struct candles c = {NULL, 0};
    size_t cap = 0;
    char line[512];
    gzFile gz = gzopen(path, "rb");

    if (gz == NULL) {
        die("cannot open", path);
    }
    while (gzgets(gz, line, sizeof(line)) != NULL) {
        const char *f[6];
        size_t flen[6];
        const char *p = line;
        if (line[0] < '0' || line[0] > '9') {
            continue; /* header */
        }
        for (int i = 0; i < 6; i++) {
            const char *comma = strchr(p, ',');
            if (comma == NULL) {
                die("short line", path);
            }
            f[i] = p;
            flen[i] = (size_t)(comma - p);
            p = comma + 1;
        }
        if (c.count == cap) {
            cap = cap != 0 ? cap * 2 : 1 << 16;
            c.bars = realloc(c.bars, cap * sizeof(*c.bars));
            if (c.bars == NULL) {
                die("out of memory", NULL);
            }
        }
        c.bars[c.count++] =
            (struct cq_ind_bar){field_value(f[1], flen[1], path), field_value(f[2], flen[2], path),
                                field_value(f[3], flen[3], path), field_value(f[4], flen[4], path),
                                field_value(f[5], flen[5], path)};
    }
    gzclose(gz);
    if (c.count == 0) {
        die("no candles in", path);
    }
    return c;
}

static double acc_total(const double *acc)
{
    double t = 0.0;
    for (int i = 0; i < N_ACC; i++) {
        t += acc[i];
    }
    return t;
}

static void must(int rc, const char *what)
{
    if (rc != 0) {
        die("init failed", what);
    }
}

/* ---- one pass per benchmark; each returns its checksum --------------------- */

static double pass_all_plain(const struct candles *c)
{
    struct cq_ema ema12, ema26;
    struct cq_rsi rsi;
    struct cq_macd macd;
    struct cq_atr atr;
    struct cq_bbands bb;
    struct cq_sma sma;
    struct cq_vwap vwap;
    double acc[N_ACC] = {0};

    must(cq_ema_init(&ema12, 12), "ema");
    must(cq_ema_init(&ema26, 26), "ema");
    must(cq_rsi_init(&rsi, 14), "rsi");
    must(cq_macd_init(&macd, 12, 26, 9), "macd");
    must(cq_atr_init(&atr, 14), "atr");
    must(cq_bbands_init(&bb, 20, 2.0), "bb");
    must(cq_sma_init(&sma, 50), "sma");
    must(cq_vwap_init(&vwap, 20), "vwap");
    for (size_t i = 0; i < c->count; i++) {
        const struct cq_ind_bar *b = &c->bars[i];
        cq_ema_update(&ema12, b->close);
        cq_ema_update(&ema26, b->close);
        cq_rsi_update(&rsi, b->close);
        cq_macd_update(&macd, b->close);
        cq_atr_update(&atr, b);
        cq_bbands_update(&bb, b->close);
        cq_sma_update(&sma, b->close);
        cq_vwap_update(&vwap, b);
        if (cq_ema_ready(&ema12)) {
            acc[0] += cq_ema_value(&ema12);
        }
        if (cq_ema_ready(&ema26)) {
            acc[1] += cq_ema_value(&ema26);
        }
        if (cq_rsi_ready(&rsi)) {
            acc[2] += cq_rsi_value(&rsi);
        }
        if (cq_macd_ready(&macd)) {
            acc[3] += cq_macd_line(&macd);
            acc[4] += cq_macd_signal(&macd);
            acc[5] += cq_macd_hist(&macd);
        }
        if (cq_atr_ready(&atr)) {
            acc[6] += cq_atr_value(&atr);
        }
        if (cq_bbands_ready(&bb)) {
            acc[7] += cq_bbands_middle(&bb);
            acc[8] += cq_bbands_upper(&bb);
            acc[9] += cq_bbands_lower(&bb);
        }
        if (cq_sma_ready(&sma)) {
            acc[10] += cq_sma_value(&sma);
        }
        if (cq_vwap_ready(&vwap)) {
            acc[11] += cq_vwap_value(&vwap);
        }
    }
    cq_bbands_fini(&bb);
    cq_sma_fini(&sma);
    cq_vwap_fini(&vwap);
    return acc_total(acc);
}

/* The figure: every indicator plus the default strategy (ema_cross
 * 12/26, which keeps its own two EMAs), per candle, as ARES would run them. */
static double pass_all_and_strategy(const struct candles *c)
{
    double acc_ind = pass_all_plain(c);
    const struct cq_strategy_ops *ops = cq_strategy_find("ema_cross");
    double values[CQ_STRATEGY_PARAMS_MAX];
    char why[160], hint[256];
    struct cq_err err;
    if (ops == NULL || cq_strategy_params_check("ema_cross", "", values, why, sizeof(why), hint,
                                                sizeof(hint)) < 0) {
        die("ema_cross refused", why);
    }
    struct cq_strategy *st = cq_strategy_new(ops, values, &err);
    if (st == NULL) {
        die("ema_cross", err.message);
    }
    double signals = 0;
    struct cq_strategy_signal sig;
    for (size_t i = 0; i < c->count; i++) {
        signals += cq_strategy_on_closed_candle(st, &c->bars[i], &sig);
    }
    cq_strategy_free(st);
    return acc_ind + signals;
}

static double pass_all_set(const struct candles *c)
{
    struct cq_err err;
    struct cq_ind_set *s = cq_ind_set_new(SPEC_ALL, &err);
    double acc[N_ACC] = {0};
    size_t cols;

    if (s == NULL) {
        die("spec refused", err.message);
    }
    cols = cq_ind_set_columns(s);
    for (size_t i = 0; i < c->count; i++) {
        cq_ind_set_update(s, &c->bars[i]);
        for (size_t col = 0; col < cols; col++) {
            double v;
            if (cq_ind_set_value(s, col, &v)) {
                acc[col % N_ACC] += v;
            }
        }
    }
    cq_ind_set_free(s);
    return acc_total(acc);
}

/* One indicator alone: a set of one item read through its columns would add
 * the set's overhead, so each gets its own loop. */
#define SINGLE_PASS(fn, decl, init, fini, update, read)                                            \
    static double fn(const struct candles *c)                                                      \
    {                                                                                              \
        decl;                                                                                      \
        double acc[N_ACC] = {0};                                                                   \
        must(init, #fn);                                                                           \
        for (size_t i = 0; i < c->count; i++) {                                                    \
            const struct cq_ind_bar *b = &c->bars[i];                                              \
            update;                                                                                \
            read;                                                                                  \
        }                                                                                          \
        fini;                                                                                      \
        return acc_total(acc);                                                                     \
    }

SINGLE_PASS(
    pass_ema12, struct cq_ema x, cq_ema_init(&x, 12), (void)0, cq_ema_update(&x, b->close),
    if (cq_ema_ready(&x)) { acc[0] += cq_ema_value(&x); })
SINGLE_PASS(
    pass_rsi14, struct cq_rsi x, cq_rsi_init(&x, 14), (void)0, cq_rsi_update(&x, b->close),
    if (cq_rsi_ready(&x)) { acc[0] += cq_rsi_value(&x); })
SINGLE_PASS(
    pass_macd, struct cq_macd x, cq_macd_init(&x, 12, 26, 9), (void)0, cq_macd_update(&x, b->close),
    if (cq_macd_ready(&x)) {
        acc[0] += cq_macd_line(&x);
        acc[1] += cq_macd_signal(&x);
        acc[2] += cq_macd_hist(&x);
    })
SINGLE_PASS(
    pass_atr14, struct cq_atr x, cq_atr_init(&x, 14), (void)0, cq_atr_update(&x, b),
    if (cq_atr_ready(&x)) { acc[0] += cq_atr_value(&x); })
SINGLE_PASS(
    pass_bb20, struct cq_bbands x, cq_bbands_init(&x, 20, 2.0), cq_bbands_fini(&x),
    cq_bbands_update(&x, b->close), if (cq_bbands_ready(&x)) {
        acc[0] += cq_bbands_middle(&x);
        acc[1] += cq_bbands_upper(&x);
        acc[2] += cq_bbands_lower(&x);
    })
SINGLE_PASS(
    pass_sma50, struct cq_sma x, cq_sma_init(&x, 50), cq_sma_fini(&x), cq_sma_update(&x, b->close),
    if (cq_sma_ready(&x)) { acc[0] += cq_sma_value(&x); })
SINGLE_PASS(
    pass_vwap20, struct cq_vwap x, cq_vwap_init(&x, 20), cq_vwap_fini(&x), cq_vwap_update(&x, b),
    if (cq_vwap_ready(&x)) { acc[0] += cq_vwap_value(&x); })

struct bench {
    const char *name;
    const char *what;
    double (*pass)(const struct candles *);
};

static const struct bench benches[] = {
    {"indicators_all_plain", SPEC_ALL, pass_all_plain},
    {"indicators_all_set", SPEC_ALL, pass_all_set},
    {"indicators_all_and_ema_cross", SPEC_ALL ",strategy:ema_cross(12,26)", pass_all_and_strategy},
    {"indicator_ema", "ema:12", pass_ema12},
    {"indicator_rsi", "rsi:14", pass_rsi14},
    {"indicator_macd", "macd:12:26:9", pass_macd},
    {"indicator_atr", "atr:14", pass_atr14},
    {"indicator_bb", "bb:20:2", pass_bb20},
    {"indicator_sma", "sma:50", pass_sma50},
    {"indicator_vwap", "vwap:20", pass_vwap20},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run(const struct bench *bn, const struct candles *c)
{
    double per_candle_s[RUNS];
    double checksum = bn->pass(c); /* warm-up pass */

    for (int r = 0; r < RUNS; r++) {
        size_t passes = 0;
        double t0 = now_s();
        double t;
        do {
            double sum = bn->pass(c);
            if (memcmp(&sum, &checksum, sizeof(sum)) != 0) {
                die("checksum changed between passes", bn->name);
            }
            passes++;
            t = now_s() - t0;
        } while (t < MIN_RUN_S);
        per_candle_s[r] = t / ((double)passes * (double)c->count);
    }
    qsort(per_candle_s, RUNS, sizeof(per_candle_s[0]), cmp_double);
    double med = per_candle_s[RUNS / 2];
    printf("{\"bench\":\"%s\",\"indicators\":\"%s\",\"candles\":%zu,\"ns_per_candle\":%.2f,"
           "\"candles_per_s\":%.0f,\"min_candles_per_s\":%.0f,\"max_candles_per_s\":%.0f,"
           "\"checksum\":%.17g,\"median_of\":%d}\n",
           bn->name, bn->what, c->count, med * 1e9, 1.0 / med, 1.0 / per_candle_s[RUNS - 1],
           1.0 / per_candle_s[0], checksum, RUNS);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : CQ_SHARED_DIR "/data/klines/BTCUSDT-1m.csv";
    const char *only = argc > 2 ? argv[2] : NULL;
    long fixed_passes = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    struct candles c = load(path);
    bool found = false;

    for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
        if (only != NULL && strcmp(only, benches[i].name) != 0) {
            continue;
        }
        found = true;
        if (fixed_passes > 0) {
            double sum = 0.0;
            for (long p = 0; p < fixed_passes; p++) {
                sum += benches[i].pass(&c);
            }
            printf("{\"bench\":\"%s\",\"passes\":%ld,\"checksum\":%.17g}\n", benches[i].name,
                   fixed_passes, sum);
        } else {
            run(&benches[i], &c);
        }
    }
    if (!found) {
        die("no benchmark named", only);
    }
    free(c.bars);
    return 0;
}
