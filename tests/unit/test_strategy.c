/*
 * test_strategy.c — the strategy registry, CQ_STRATEGY_PARAMS parsing (every
 * error with its why and hint), instances, and the two built-in strategies:
 * ema_cross crossing logic on hand-built closes (exact bars, ties, touches,
 * immediate re-crosses), warm-up, rsi_reversion through 30 and 70,
 * determinism, and a run of ema_cross over real BTCUSDT 1m candles checked
 * against a non-incremental recomputation of both EMAs.
 *
 * Hand-built ema_cross sequences mostly use fast=1, slow=3: EMA(1) is the
 * close and EMA(3) has alpha = 1/2, so with small dyadic closes and seeds
 * of equal closes every value is exact in binary floating point and ties
 * are real ties (the same holds for EMA(7), alpha = 1/4).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/strategy.h"
#include "support/shared_data.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif
#define BTC_CSV CQ_SHARED_DIR "/data/klines/BTCUSDT-1m.csv"

/* ---- helpers ----------------------------------------------------------------- */

#define MAX_BARS 256

struct run {
    size_t n_bars;
    int fired[MAX_BARS];                     /* on_closed_candle's return per bar */
    struct cq_strategy_signal sig[MAX_BARS]; /* valid where fired */
    bool warm[MAX_BARS];                     /* cq_strategy_warm after the bar */
};

static struct cq_ind_bar bar_of(double close)
{
    struct cq_ind_bar b = {close, close, close, close, 1.0};
    return b;
}

static struct cq_strategy *make(const char *name, const char *spec)
{
    double values[CQ_STRATEGY_PARAMS_MAX];
    char why[256];
    char hint[256];
    int rc = cq_strategy_params_check(name, spec, values, why, sizeof(why), hint, sizeof(hint));
    cr_assert_eq(rc, 0, "params %s '%s': %s (%s)", name, spec, why, hint);
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_strategy *s = cq_strategy_new(cq_strategy_find(name), values, &err);
    cr_assert_not_null(s, "cq_strategy_new %s: %s", name, err.message);
    return s;
}

static void feed(struct cq_strategy *s, const double *closes, size_t n, struct run *r)
{
    cr_assert_leq(n, MAX_BARS);
    memset(r, 0, sizeof(*r));
    r->n_bars = n;
    for (size_t i = 0; i < n; i++) {
        struct cq_ind_bar b = bar_of(closes[i]);
        memset(&r->sig[i], 0, sizeof(r->sig[i]));
        r->fired[i] = cq_strategy_on_closed_candle(s, &b, &r->sig[i]);
        r->warm[i] = cq_strategy_warm(s);
    }
}

struct expect_sig {
    size_t bar;
    enum cq_side side;
};

/* Exactly these bars signal, with these sides, and no other bar does. */
static void expect_signals(const struct run *r, const struct expect_sig *want, size_t n_want)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_bars; i++) {
        cr_assert(r->fired[i] == 0 || r->fired[i] == 1, "bar %zu returned %d", i, r->fired[i]);
        if (k < n_want && want[k].bar == i) {
            cr_expect_eq(r->fired[i], 1, "bar %zu should signal %s", i, cq_side_name(want[k].side));
            if (r->fired[i] == 1) {
                cr_expect_eq(r->sig[i].side, want[k].side, "bar %zu: %s, wanted %s", i,
                             cq_side_name(r->sig[i].side), cq_side_name(want[k].side));
            }
            k++;
        } else {
            cr_expect_eq(r->fired[i], 0, "bar %zu signalled %s (%s) but should not", i,
                         cq_side_name(r->sig[i].side), r->sig[i].reason);
        }
    }
    cr_assert_eq(k, n_want, "expected bars must be in increasing order");
}

/* ---- registry ---------------------------------------------------------------- */

Test(strategy, registry_lists_both_and_ema_cross_is_default)
{
    cr_assert_eq(cq_strategy_count(), 2);
    cr_expect_str_eq(cq_strategy_at(0)->name, "ema_cross", "the first entry is the default");
    cr_expect_str_eq(cq_strategy_at(1)->name, "rsi_reversion");
    cr_expect_null(cq_strategy_at(2));
    cr_expect_eq(cq_strategy_find("ema_cross"), cq_strategy_at(0));
    cr_expect_eq(cq_strategy_find("rsi_reversion"), cq_strategy_at(1));
    cr_expect_null(cq_strategy_find("EMA_CROSS"), "names are exact");
    cr_expect_null(cq_strategy_find(""));
    cr_expect_null(cq_strategy_find(NULL));
    cr_expect_str_eq(cq_side_name(CQ_SIDE_BUY), "BUY");
    cr_expect_str_eq(cq_side_name(CQ_SIDE_SELL), "SELL");
    for (size_t i = 0; i < cq_strategy_count(); i++) {
        const struct cq_strategy_ops *ops = cq_strategy_at(i);
        cr_expect_leq(ops->n_params, CQ_STRATEGY_PARAMS_MAX, "%s", ops->name);
        cr_expect_gt(ops->state_size, 0, "%s", ops->name);
        for (size_t k = 0; k < ops->n_params; k++) {
            const struct cq_strategy_param *p = &ops->params[k];
            cr_expect(p->min <= p->default_value && p->default_value <= p->max, "%s.%s", ops->name,
                      p->name);
            cr_expect_not_null(p->doc);
        }
    }
}

/* ---- parameters ------------------------------------------------------------------ */

struct params_ok {
    const char *name;
    const char *spec;
    double want[CQ_STRATEGY_PARAMS_MAX];
};

Test(strategy, params_defaults_and_overrides)
{
    static const struct params_ok cases[] = {
        {"ema_cross", "", {12, 26}},
        {"ema_cross", NULL, {12, 26}},
        {"ema_cross", "fast=9", {9, 26}},
        {"ema_cross", "slow=50", {12, 50}},
        {"ema_cross", "slow=21,fast=9", {9, 21}},
        {"ema_cross", "fast=1,slow=2", {1, 2}},
        {"ema_cross", "fast=999,slow=1000", {999, 1000}},
        {"ema_cross", "fast=007", {7, 26}},
        {"rsi_reversion", "", {14, 30, 70}},
        {"rsi_reversion", "period=21", {21, 30, 70}},
        {"rsi_reversion", "low=25.5,high=80", {14, 25.5, 80}},
        {"rsi_reversion", "high=75,period=7,low=20", {7, 20, 75}},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const struct params_ok *c = &cases[i];
        double values[CQ_STRATEGY_PARAMS_MAX];
        char why[256] = "x";
        char hint[256] = "x";
        int rc = cq_strategy_params_check(c->name, c->spec, values, why, sizeof(why), hint,
                                          sizeof(hint));
        cr_expect_eq(rc, 0, "%s '%s': %s / %s", c->name, c->spec ? c->spec : "(null)", why, hint);
        if (rc != 0) {
            continue;
        }
        cr_expect_str_empty(why, "why cleared on success");
        const struct cq_strategy_ops *ops = cq_strategy_find(c->name);
        for (size_t k = 0; k < ops->n_params; k++) {
            cr_expect_eq(values[k], c->want[k], "%s '%s' %s: %g, wanted %g", c->name, c->spec,
                         ops->params[k].name, values[k], c->want[k]);
        }
    }
}

struct params_bad {
    const char *name;
    const char *spec;
    const char *why;      /* substring of why */
    const char *hint;     /* substring of hint */
    const char *not_hint; /* must not appear in hint (NULL: no check) */
};

Test(strategy, params_errors_say_why_and_how_to_fix)
{
    static const struct params_bad cases[] = {
        /* unknown parameter, with and without a suggestion */
        {"ema_cross", "fsat=9", "has unknown parameter 'fsat'",
         "did you mean fast? parameters of ema_cross: fast, slow", NULL},
        {"ema_cross", "slwo=30", "has unknown parameter 'slwo'", "did you mean slow?", NULL},
        {"ema_cross", "FAST=9", "has unknown parameter 'FAST'",
         "did you mean fast? (names are lower case)", NULL},
        {"ema_cross", "period=9", "has unknown parameter 'period'",
         "parameters of ema_cross: fast, slow", "did you mean"},
        {"rsi_reversion", "hihg=80", "has unknown parameter 'hihg'",
         "did you mean high? parameters of rsi_reversion: period, low, high", NULL},
        {"rsi_reversion", "fast=9", "has unknown parameter 'fast'",
         "parameters of rsi_reversion: period, low, high", "did you mean"},
        {"rsi_reversion", "x=1", "has unknown parameter 'x'",
         "parameters of rsi_reversion: period, low, high", "did you mean"},
        {"ema_cross", "ab=1", "has unknown parameter 'ab'", "parameters of ema_cross: fast, slow",
         "did you mean"},
        {"rsi_reversion", "perod=9", "has unknown parameter 'perod'", "did you mean period?", NULL},
        /* not a number */
        {"ema_cross", "fast=abc", "has fast=abc, which is not a number",
         "write a whole number from 1 to 1000 for fast (default 12)", NULL},
        {"ema_cross", "fast=1e1", "has fast=1e1, which is not a number", "whole number", NULL},
        {"ema_cross", "fast=+9", "which is not a number", "whole number", NULL},
        {"ema_cross", "fast=0x10", "which is not a number", "whole number", NULL},
        {"ema_cross", "fast=nan", "which is not a number", "whole number", NULL},
        {"ema_cross", "slow=inf", "has slow=inf, which is not a number",
         "write a whole number from 2 to 1000 for slow (default 26)", NULL},
        {"ema_cross", "fast=9.", "which is not a number", "whole number", NULL},
        {"ema_cross", "fast=.5", "which is not a number", "whole number", NULL},
        {"ema_cross", "fast=9ms", "has fast=9ms, which is not a number", "whole number", NULL},
        {"rsi_reversion", "low=thirty", "has low=thirty, which is not a number",
         "write a number from 1 to 99 for low (default 30)", "whole"},
        /* not a whole number */
        {"ema_cross", "fast=9.5", "has fast=9.5, which is not a whole number",
         "write a whole number from 1 to 1000", NULL},
        {"ema_cross", "slow=26.0", "has slow=26.0, which is not a whole number",
         "write a whole number from 2 to 1000", NULL},
        {"rsi_reversion", "period=14.5", "has period=14.5, which is not a whole number",
         "write a whole number from 2 to 1000 for period (default 14)", NULL},
        /* out of range */
        {"ema_cross", "fast=0", "has fast=0, which is out of range",
         "write a whole number from 1 to 1000 for fast", NULL},
        {"ema_cross", "fast=-3", "has fast=-3, which is out of range", "from 1 to 1000", NULL},
        {"ema_cross", "slow=1", "has slow=1, which is out of range", "from 2 to 1000", NULL},
        {"ema_cross", "slow=1001", "has slow=1001, which is out of range", "from 2 to 1000", NULL},
        {"ema_cross", "slow=100000000000000000000000000000", "which is out of range",
         "from 2 to 1000", NULL},
        {"rsi_reversion", "low=0.5", "has low=0.5, which is out of range",
         "write a number from 1 to 99 for low (default 30)", NULL},
        {"rsi_reversion", "high=99.5", "has high=99.5, which is out of range",
         "write a number from 1 to 99 for high (default 70)", NULL},
        {"rsi_reversion", "period=1", "has period=1, which is out of range", "from 2 to 1000",
         NULL},
        /* repeated */
        {"ema_cross", "fast=9,fast=10", "sets fast more than once", "set each parameter once",
         NULL},
        {"ema_cross", "fast=9,slow=30,fast=9", "sets fast more than once", "once", NULL},
        /* the cross rule */
        {"ema_cross", "fast=26,slow=12", "has fast=26 not less than slow=12",
         "make fast smaller than slow", NULL},
        {"ema_cross", "fast=26", "has fast=26 not less than slow=26", "make fast smaller than slow",
         NULL},
        {"ema_cross", "slow=5", "has fast=12 not less than slow=5", "make fast smaller", NULL},
        {"rsi_reversion", "low=70", "has low=70 not less than high=70",
         "make low smaller than high", NULL},
        {"rsi_reversion", "low=60,high=40", "has low=60 not less than high=40",
         "make low smaller than high", NULL},
        /* shape of the spec */
        {"ema_cross", "fast=9, slow=21", "contains whitespace", "remove the spaces", NULL},
        {"ema_cross", " fast=9", "contains whitespace", "e.g. fast=12,slow=26", NULL},
        {"ema_cross", "fast=9\n", "contains whitespace", "remove the spaces", NULL},
        {"ema_cross", "fast = 9", "contains whitespace", "remove the spaces", NULL},
        {"ema_cross", "fast=9,,slow=21", "has an empty item", "remove the empty entry", NULL},
        {"ema_cross", "fast=9,", "has an empty item", "remove the empty entry", NULL},
        {"ema_cross", ",fast=9", "has an empty item", "remove the empty entry", NULL},
        {"ema_cross", ",", "has an empty item", "remove the empty entry", NULL},
        {"ema_cross", "fast", "has item 'fast' without '='",
         "write name=value pairs separated by commas, e.g. fast=12,slow=26", NULL},
        {"ema_cross", "fast:9", "has item 'fast:9' without '='", "name=value", NULL},
        {"ema_cross", "fast=9;slow=21", "has item 'fast=9;slow=21' with more than one '='",
         "separated by commas", NULL},
        {"rsi_reversion", "=9", "has item '=9' without a parameter name",
         "e.g. period=14,low=30,high=70", NULL},
        {"ema_cross", "fast=", "has an empty value for fast",
         "write a whole number from 1 to 1000 for fast", NULL},
        {"ema_cross", "fast==9", "has item 'fast==9' with more than one '='", "name=value", NULL},
        {"ema_cross", "fast=9=10", "with more than one '='", "name=value", NULL},
        /* unknown strategy */
        {"ema_corss", "", "names unknown strategy 'ema_corss'",
         "did you mean ema_cross? strategies: ema_cross, rsi_reversion", NULL},
        {"rsi_reverson", "fast=9", "names unknown strategy 'rsi_reverson'",
         "did you mean rsi_reversion?", NULL},
        {"EMA_CROSS", "", "names unknown strategy 'EMA_CROSS'",
         "did you mean ema_cross? (names are lower case)", NULL},
        {"macd", "", "names unknown strategy 'macd'", "write one of ema_cross, rsi_reversion",
         "did you mean"},
        {NULL, "", "names no strategy",
         "write one of ema_cross, rsi_reversion (the default is "
         "ema_cross)",
         NULL},
        {"", "", "names no strategy", "write one of ema_cross, rsi_reversion", NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const struct params_bad *c = &cases[i];
        double values[CQ_STRATEGY_PARAMS_MAX];
        for (size_t k = 0; k < CQ_STRATEGY_PARAMS_MAX; k++) {
            values[k] = -42.0;
        }
        char why[256];
        char hint[256];
        int rc = cq_strategy_params_check(c->name, c->spec, values, why, sizeof(why), hint,
                                          sizeof(hint));
        const char *label = c->spec;
        cr_expect_eq(rc, -CQ_ECONFIG, "%s '%s' should be refused", c->name ? c->name : "(null)",
                     label);
        cr_expect(strstr(why, c->why) != NULL, "%s '%s': why \"%s\" lacks \"%s\"",
                  c->name ? c->name : "(null)", label, why, c->why);
        cr_expect(strstr(hint, c->hint) != NULL, "%s '%s': hint \"%s\" lacks \"%s\"",
                  c->name ? c->name : "(null)", label, hint, c->hint);
        if (c->not_hint != NULL) {
            cr_expect(strstr(hint, c->not_hint) == NULL, "%s '%s': hint \"%s\" has \"%s\"",
                      c->name ? c->name : "(null)", label, hint, c->not_hint);
        }
        for (size_t k = 0; k < CQ_STRATEGY_PARAMS_MAX; k++) {
            cr_expect_eq(values[k], -42.0, "'%s': values_out written on failure", label);
        }
    }
}

Test(strategy, params_bounds_and_buffers)
{
    char spec[400];
    char why[256];
    char hint[256];
    double values[CQ_STRATEGY_PARAMS_MAX];
    /* 257 characters: refused before parsing; 256 is parsed. */
    memset(spec, '0', sizeof(spec));
    memcpy(spec, "fast=", 5);
    spec[256] = '9';
    spec[257] = '\0';
    cr_expect_eq(
        cq_strategy_params_check("ema_cross", spec, values, why, sizeof(why), hint, sizeof(hint)),
        -CQ_ECONFIG);
    cr_expect(strstr(why, "is longer than 256 characters") != NULL, "%s", why);
    spec[255] = '9';
    spec[256] = '\0';
    cr_expect_eq(
        cq_strategy_params_check("ema_cross", spec, values, why, sizeof(why), hint, sizeof(hint)),
        0, "%s", why);
    cr_expect_eq(values[0], 9.0);
    /* Long input is echoed shortened. */
    memset(spec, 'x', 200);
    memcpy(spec + 200, "=1", 3);
    cr_expect_eq(
        cq_strategy_params_check("ema_cross", spec, values, why, sizeof(why), hint, sizeof(hint)),
        -CQ_ECONFIG);
    cr_expect_lt(strlen(why), 80, "why echoes at most a short piece: %s", why);
    /* Small buffers truncate and stay terminated; NULL buffers and NULL
     * values_out are allowed. */
    char tiny_why[8];
    char tiny_hint[8];
    cr_expect_eq(cq_strategy_params_check("ema_cross", "fsat=1", values, tiny_why, sizeof(tiny_why),
                                          tiny_hint, sizeof(tiny_hint)),
                 -CQ_ECONFIG);
    cr_expect_str_eq(tiny_why, "has unk");
    cr_expect_str_eq(tiny_hint, "did you");
    cr_expect_eq(cq_strategy_params_check("ema_cross", "fsat=1", NULL, NULL, 0, NULL, 0),
                 -CQ_ECONFIG);
    cr_expect_eq(cq_strategy_params_check("ema_cross", "fast=5", NULL, NULL, 0, NULL, 0), 0);
}

/* ---- instances ----------------------------------------------------------------- */

Test(strategy, instances_describe_and_refuse_bad_values)
{
    char buf[128];
    struct cq_err err;
    struct cq_strategy *s = cq_strategy_new(cq_strategy_find("ema_cross"), NULL, NULL);
    cr_assert_not_null(s, "NULL values means the defaults");
    cq_strategy_describe(s, buf, sizeof(buf));
    cr_expect_str_eq(buf, "fast=12,slow=26");
    cr_expect_eq(cq_strategy_ops_of(s), cq_strategy_find("ema_cross"));
    cr_expect_eq(cq_strategy_warmup_bars(s), 26);
    cr_expect_not(cq_strategy_warm(s));
    cq_strategy_describe(s, buf, 8);
    cr_expect_str_eq(buf, "fast=12", "describe truncates safely");
    cq_strategy_free(s);

    s = make("rsi_reversion", "low=29.5,period=9");
    cq_strategy_describe(s, buf, sizeof(buf));
    cr_expect_str_eq(buf, "period=9,low=29.5,high=70");
    cq_strategy_free(s);

    const double bad_cross[] = {30, 26};
    cq_err_clear(&err);
    cr_expect_null(cq_strategy_new(cq_strategy_find("ema_cross"), bad_cross, &err));
    cr_expect_eq(err.code, CQ_ECONFIG);
    cr_expect(strstr(err.message, "ema_cross has fast=30 not less than slow=26") != NULL, "%s",
              err.message);
    cr_expect(strstr(err.hint, "make fast smaller than slow") != NULL, "%s", err.hint);

    const double bad_whole[] = {12.5, 26};
    cq_err_clear(&err);
    cr_expect_null(cq_strategy_new(cq_strategy_find("ema_cross"), bad_whole, &err));
    cr_expect(strstr(err.message, "not a whole number") != NULL, "%s", err.message);

    const double bad_nan[] = {14, NAN, 70};
    cq_err_clear(&err);
    cr_expect_null(cq_strategy_new(cq_strategy_find("rsi_reversion"), bad_nan, &err));
    cr_expect(strstr(err.message, "low=nan, which is not a number") != NULL, "%s", err.message);

    const double bad_range[] = {14, 30, 100};
    cq_err_clear(&err);
    cr_expect_null(cq_strategy_new(cq_strategy_find("rsi_reversion"), bad_range, &err));
    cr_expect(strstr(err.message, "high=100, which is out of range") != NULL, "%s", err.message);

    cq_err_clear(&err);
    cr_expect_null(cq_strategy_new(NULL, NULL, &err));
    cr_expect_eq(err.code, CQ_EINVAL);
    cq_strategy_free(NULL);
}

/* ---- ema_cross: crossing logic ------------------------------------------------- */

Test(strategy, ema_cross_exact_bars_ties_touches_and_recrosses)
{
    /* fast=1 (the close), slow=3 (alpha 1/2, seeded with the mean of the
     * first 3 closes): d = close - EMA3 = (close - previous EMA3) / 2. */
    static const double closes[] = {
        10,        10, 10, /* 0-2: warm at 2 with EMA3 = 10 = close: a tie on the first warm bar */
        12,                /* 3: EMA3 11, above; the first known relation: no signal */
        8,                 /* 4: EMA3 9.5, below: SELL */
        9.5,               /* 5: EMA3 9.5, tie: no cross, still "below" */
        9,                 /* 6: EMA3 9.25, below again: a touch, no signal */
        9.25,              /* 7: EMA3 9.25, tie */
        10,                /* 8: EMA3 9.625, above: BUY (crossed through two ties) */
        9,                 /* 9: EMA3 9.3125, below: SELL, an immediate re-cross */
        10,                /* 10: EMA3 9.65625, above: BUY, immediate again */
        11,                /* 11: EMA3 10.328125, above: nothing */
        10.328125,         /* 12: tie from above */
        11,                /* 13: above again: a touch from above, no signal */
        5,                 /* 14: EMA3 7.83203125, below: SELL */
        5,                 /* 15: below, no signal */
    };
    static const struct expect_sig want[] = {
        {4, CQ_SIDE_SELL}, {8, CQ_SIDE_BUY},   {9, CQ_SIDE_SELL},
        {10, CQ_SIDE_BUY}, {14, CQ_SIDE_SELL},
    };
    struct run r;
    struct cq_strategy *s = make("ema_cross", "fast=1,slow=3");
    feed(s, closes, CQ_ARRAY_LEN(closes), &r);
    expect_signals(&r, want, CQ_ARRAY_LEN(want));
    cr_expect_str_eq(r.sig[4].reason, "ema_1 crossed below ema_3");
    cr_expect_str_eq(r.sig[8].reason, "ema_1 crossed above ema_3");
    /* strength = |d| / EMA(slow): bar 4 |8 - 9.5| / 9.5; bar 8 0.375 / 9.625 */
    cr_expect_float_eq(r.sig[4].strength, 1.5 / 9.5, 1e-12);
    cr_expect_float_eq(r.sig[8].strength, 0.375 / 9.625, 1e-12);
    cq_strategy_free(s);
}

Test(strategy, ema_cross_no_signal_on_ties_or_touches_only)
{
    /* Equal closes: both EMAs equal on every warm bar. Then a touch from
     * below that returns below. */
    static const double closes[] = {10, 10, 10, 10, 10, 10, 8, 9, 8.5, 8.75, 8};
    /* 6: EMA3 9, below; 7: EMA3 9, tie; 8: EMA3 8.75, below; 9: tie; 10: below */
    struct run r;
    struct cq_strategy *s = make("ema_cross", "fast=1,slow=3");
    feed(s, closes, CQ_ARRAY_LEN(closes), &r);
    expect_signals(&r, NULL, 0);
    cq_strategy_free(s);
}

Test(strategy, ema_cross_defaults_on_a_trend_a_crash_and_a_jump)
{
    /* 40 bars rising by 1 (EMA12 stays 7 above EMA26), 20 bars at 20, 20
     * at 200. d at bar 40 is about -2.6 (SELL), at bar 60 about -3.4 (still
     * below), at bar 61 about +8.7 (BUY). */
    static double closes[80];
    for (size_t i = 0; i < 40; i++) {
        closes[i] = 100.0 + (double)i;
    }
    for (size_t i = 40; i < 60; i++) {
        closes[i] = 20.0;
    }
    for (size_t i = 60; i < 80; i++) {
        closes[i] = 200.0;
    }
    static const struct expect_sig want[] = {{40, CQ_SIDE_SELL}, {61, CQ_SIDE_BUY}};
    struct run r;
    struct cq_strategy *s = make("ema_cross", "");
    feed(s, closes, CQ_ARRAY_LEN(closes), &r);
    expect_signals(&r, want, CQ_ARRAY_LEN(want));
    cr_expect_str_eq(r.sig[40].reason, "ema_12 crossed below ema_26");
    cr_expect_str_eq(r.sig[61].reason, "ema_12 crossed above ema_26");
    cr_expect(r.sig[61].strength > 0.0 && r.sig[61].strength < 1.0, "%g", r.sig[61].strength);
    cq_strategy_free(s);
}

Test(strategy, ema_cross_strength_is_clamped_to_one)
{
    /* fast=1, slow=3: 2: EMA3 4 (tie); 3: EMA3 3, below; 4: EMA3 501.5,
     * d = 498.5: BUY with strength 498.5 / 501.5, under 1, not clamped. */
    static const double closes[] = {4, 4, 4, 2, 1000};
    struct run r;
    struct cq_strategy *s = make("ema_cross", "fast=1,slow=3");
    feed(s, closes, CQ_ARRAY_LEN(closes), &r);
    cr_assert_eq(r.fired[4], 1);
    cr_expect_float_eq(r.sig[4].strength, 498.5 / 501.5, 1e-12);
    cq_strategy_free(s);

    /* fast=1, slow=7 (alpha 1/4): 6: EMA7 8 (tie); 7: EMA7 7, below; 8:
     * EMA7 250005.25, d = 749994.75, about 3 times EMA7: clamped to 1. */
    static const double big[] = {8, 8, 8, 8, 8, 8, 8, 4, 1e6};
    s = make("ema_cross", "fast=1,slow=7");
    feed(s, big, CQ_ARRAY_LEN(big), &r);
    cr_assert_eq(r.fired[8], 1);
    cr_expect_eq(r.sig[8].side, CQ_SIDE_BUY);
    cr_expect_eq(r.sig[8].strength, 1.0, "clamped: %g", r.sig[8].strength);
    cq_strategy_free(s);
}

/* ---- warm-up ------------------------------------------------------------------- */

Test(strategy, warmup_bars_and_warm_are_exact)
{
    struct warm_case {
        const char *name;
        const char *spec;
        size_t bars;
    };
    static const struct warm_case cases[] = {
        {"ema_cross", "", 26},
        {"ema_cross", "fast=5,slow=9", 9},
        {"ema_cross", "fast=1,slow=2", 2},
        {"ema_cross", "fast=50,slow=200", 200},
        {"rsi_reversion", "", 15},
        {"rsi_reversion", "period=5", 6},
        {"rsi_reversion", "period=2", 3},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        const struct warm_case *c = &cases[i];
        struct cq_strategy *s = make(c->name, c->spec);
        const struct cq_strategy_ops *ops = cq_strategy_ops_of(s);
        double values[CQ_STRATEGY_PARAMS_MAX];
        cr_assert_eq(cq_strategy_params_check(c->name, c->spec, values, NULL, 0, NULL, 0), 0);
        cr_expect_eq(cq_strategy_warmup_bars(s), c->bars, "%s '%s': %zu", c->name, c->spec,
                     cq_strategy_warmup_bars(s));
        cr_expect_eq(ops->warmup_bars(values), c->bars);
        /* A zig-zag that would cross on every bar once warm. */
        for (size_t b = 1; b <= c->bars + 2; b++) {
            struct cq_ind_bar bar = bar_of(b % 2 == 0 ? 100.0 : 50.0);
            struct cq_strategy_signal sig;
            int fired = cq_strategy_on_closed_candle(s, &bar, &sig);
            cr_expect_eq(cq_strategy_warm(s), b >= c->bars, "%s '%s': warm after %zu bars", c->name,
                         c->spec, b);
            if (b <= c->bars) {
                cr_expect_eq(fired, 0, "%s '%s': signal on bar %zu of %zu warm-up", c->name,
                             c->spec, b, c->bars);
            }
        }
        cq_strategy_free(s);
    }
}

Test(strategy, ema_cross_first_signal_comes_on_the_bar_after_warm)
{
    /* fast=1, slow=3 over 1,100,1,100,...: the close is on the other side
     * of EMA3 on every bar. Warm at bar 2 (index), first signal at 3. */
    double closes[12];
    for (size_t i = 0; i < CQ_ARRAY_LEN(closes); i++) {
        closes[i] = i % 2 == 0 ? 1.0 : 100.0;
    }
    struct run r;
    struct cq_strategy *s = make("ema_cross", "fast=1,slow=3");
    feed(s, closes, CQ_ARRAY_LEN(closes), &r);
    cr_expect_not(r.warm[1]);
    cr_expect(r.warm[2]);
    for (size_t i = 0; i < r.n_bars; i++) {
        cr_expect_eq(r.fired[i], i >= 3 ? 1 : 0, "bar %zu", i);
        if (i >= 3 && r.fired[i]) {
            cr_expect_eq(r.sig[i].side, i % 2 == 1 ? CQ_SIDE_BUY : CQ_SIDE_SELL, "bar %zu", i);
        }
    }
    cq_strategy_free(s);
}

/* ---- rsi_reversion ----------------------------------------------------------- */

/* 15 closes falling by 1 (RSI(14) = 0 when warm, at index 14), then `ups`
 * rises by 1 and `downs` falls by 1. Every change is 1, so avg gain + avg
 * loss stays 1 and RSI = 100 * avg gain: after k rises 100 * (1 - (13/14)^k),
 * then times 13/14 per fall. */
static size_t rsi_sequence(double *closes, size_t ups, size_t downs)
{
    size_t n = 0;
    double c = 100.0;
    for (size_t i = 0; i < 15; i++) {
        closes[n++] = c--;
    }
    c = closes[n - 1];
    for (size_t i = 0; i < ups; i++) {
        closes[n++] = ++c;
    }
    for (size_t i = 0; i < downs; i++) {
        closes[n++] = --c;
    }
    return n;
}

Test(strategy, rsi_reversion_up_through_30_and_down_through_70)
{
    /* RSI: 0 at 14, 25.65 at 18, 30.96 at 19 (BUY), 69.45 at 30, 71.63 at
     * 31 (up through 70: not a SELL), 77.29 at 34, 71.76 at 35, 66.64 at 36
     * (SELL), 31.76 at 46, 29.49 at 47 (down through 30: not a BUY). */
    double closes[MAX_BARS];
    size_t n = rsi_sequence(closes, 20, 25);
    static const struct expect_sig want[] = {{19, CQ_SIDE_BUY}, {36, CQ_SIDE_SELL}};
    struct run r;
    struct cq_strategy *s = make("rsi_reversion", "");
    feed(s, closes, n, &r);
    expect_signals(&r, want, CQ_ARRAY_LEN(want));
    cr_expect_str_eq(r.sig[19].reason, "rsi_14 crossed above 30");
    cr_expect_str_eq(r.sig[36].reason, "rsi_14 crossed below 70");
    double rsi19 = 100.0 * (1.0 - pow(13.0 / 14.0, 5));
    double rsi36 = 100.0 * (1.0 - pow(13.0 / 14.0, 20)) * pow(13.0 / 14.0, 2);
    cr_expect_float_eq(r.sig[19].strength, (rsi19 - 30.0) / 30.0, 1e-9, "%g", r.sig[19].strength);
    cr_expect_float_eq(r.sig[36].strength, (70.0 - rsi36) / 70.0, 1e-9, "%g", r.sig[36].strength);
    cq_strategy_free(s);

    /* Thresholds are parameters: low=20 is crossed at 18 (19.93 at 17,
     * 25.65 at 18), high=75 on the way down at 35 (77.29 at 34, 71.76 at
     * 35); 75 on the way up (73.66 at 32, 75.54 at 33) is not a SELL. */
    s = make("rsi_reversion", "low=20,high=75");
    feed(s, closes, n, &r);
    static const struct expect_sig want2[] = {{18, CQ_SIDE_BUY}, {35, CQ_SIDE_SELL}};
    expect_signals(&r, want2, CQ_ARRAY_LEN(want2));
    cr_expect_str_eq(r.sig[18].reason, "rsi_14 crossed above 20");
    cq_strategy_free(s);
}

Test(strategy, rsi_reversion_silent_while_rsi_stays_below_30)
{
    /* Falling by 1 to warm (RSI 0), then +0.2 / -1 alternately: RSI moves
     * up and down on every bar but stays between 0 and about 18. */
    double closes[MAX_BARS];
    size_t n = rsi_sequence(closes, 0, 0);
    double c = closes[n - 1];
    for (size_t k = 0; k < 120; k++) {
        c += k % 2 == 0 ? 0.2 : -1.0;
        closes[n++] = c;
    }
    struct run r;
    struct cq_strategy *s = make("rsi_reversion", "");
    feed(s, closes, n, &r);
    expect_signals(&r, NULL, 0);
    cq_strategy_free(s);

    /* Rising from the start: RSI 100 on the first warm bar and beyond; it
     * never was below 30 nor came down through 70. */
    for (size_t i = 0; i < 40; i++) {
        closes[i] = 100.0 + (double)i;
    }
    s = make("rsi_reversion", "");
    feed(s, closes, 40, &r);
    expect_signals(&r, NULL, 0);
    cq_strategy_free(s);
}

/* ---- determinism ----------------------------------------------------------------- */

/* A reproducible random walk (64-bit LCG), no libc rand. */
static void random_walk(double *closes, size_t n, uint64_t seed)
{
    double c = 1000.0;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(seed >> 11) / 9007199254740992.0; /* [0, 1) */
        c *= 1.0 + (u - 0.5) * 0.02;
        closes[i] = c;
    }
}

Test(strategy, same_sequence_twice_gives_identical_signals)
{
    enum { N = 5000 };
    static double closes[N];
    random_walk(closes, N, 42);
    static const char *const names[] = {"ema_cross", "rsi_reversion"};
    for (size_t k = 0; k < CQ_ARRAY_LEN(names); k++) {
        struct cq_strategy *a = make(names[k], "");
        struct cq_strategy *b = make(names[k], "");
        size_t signals = 0;
        for (size_t i = 0; i < N; i++) {
            struct cq_ind_bar bar = bar_of(closes[i]);
            struct cq_strategy_signal sa;
            struct cq_strategy_signal sb;
            memset(&sa, 0, sizeof(sa));
            memset(&sb, 0, sizeof(sb));
            int fa = cq_strategy_on_closed_candle(a, &bar, &sa);
            int fb = cq_strategy_on_closed_candle(b, &bar, &sb);
            cr_assert_eq(fa, fb, "%s bar %zu", names[k], i);
            if (fa == 1) {
                signals++;
                cr_assert_eq(sa.side, sb.side);
                cr_assert_eq(memcmp(&sa.strength, &sb.strength, sizeof(double)), 0,
                             "strength bit-identical");
                cr_assert_str_eq(sa.reason, sb.reason);
                cr_assert(sa.strength >= 0.0 && sa.strength <= 1.0, "strength %g", sa.strength);
            }
        }
        cr_expect_gt(signals, 10, "%s: the walk should produce signals (%zu)", names[k], signals);
        cq_strategy_free(a);
        cq_strategy_free(b);
    }
}

/* ---- real candles ------------------------------------------------------------------ */

/* Closes of a klines CSV (open_time_ms,open,high,low,close,...), malloc'd. */
static double *load_closes(const char *path, size_t *n_out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cq_test_shared_missing(path);
    }
    size_t cap = 1 << 17;
    size_t n = 0;
    double *closes = malloc(cap * sizeof(*closes));
    char line[512];
    cr_assert_not_null(closes);
    cr_assert_not_null(fgets(line, sizeof(line), f), "empty file %s", path);
    cr_assert(strncmp(line, "open_time_ms,", 13) == 0, "unexpected header: %s", line);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = line;
        for (int comma = 0; comma < 4; comma++) {
            p = strchr(p, ',');
            cr_assert_not_null(p, "short line %zu in %s", n + 2, path);
            p++;
        }
        char *end = NULL;
        double close = strtod(p, &end);
        cr_assert(end != p && *end == ',' && close > 0, "bad close on line %zu", n + 2);
        if (n == cap) {
            cap *= 2;
            closes = realloc(closes, cap * sizeof(*closes));
            cr_assert_not_null(closes);
        }
        closes[n++] = close;
    }
    fclose(f);
    *n_out = n;
    return closes;
}

/* EMA(period) of closes[0..upto] computed from scratch, the textbook way:
 * seed with the plain mean of the first `period` closes, then
 * ema = alpha * close + (1 - alpha) * ema. out[i] for i in
 * [period-1, upto]. */
static void ema_from_scratch(const double *closes, size_t upto, size_t period, double *out)
{
    double alpha = 2.0 / ((double)period + 1.0);
    double sum = 0.0;
    for (size_t i = 0; i < period; i++) {
        sum += closes[i];
    }
    out[period - 1] = sum / (double)period;
    for (size_t i = period; i <= upto; i++) {
        out[i] = alpha * closes[i] + (1.0 - alpha) * out[i - 1];
    }
}

/* Relation of fast to slow at bar i with a tolerance for the last bits the
 * two implementations may round differently: +1, -1, or 0 when too close to
 * call. */
static int ref_relation(const double *fast, const double *slow, size_t i)
{
    double d = fast[i] - slow[i];
    double tol = 1e-9 * fabs(slow[i]);
    return d > tol ? 1 : d < -tol ? -1 : 0;
}

Test(strategy, ema_cross_on_real_btcusdt_candles, .timeout = 60)
{
    size_t n = 0;
    double *closes = load_closes(BTC_CSV, &n);
    cr_assert_gt(n, 1000, "%zu candles", n);
    const size_t fast_n = 12;
    const size_t slow_n = 26;
    struct cq_strategy *s = make("ema_cross", "");
    size_t *bars = malloc(n * sizeof(*bars));
    enum cq_side *sides = malloc(n * sizeof(*sides));
    double *ref_fast = malloc(n * sizeof(*ref_fast));
    double *ref_slow = malloc(n * sizeof(*ref_slow));
    cr_assert(bars != NULL && sides != NULL && ref_fast != NULL && ref_slow != NULL);
    size_t n_sig = 0;
    for (size_t i = 0; i < n; i++) {
        struct cq_ind_bar bar = bar_of(closes[i]);
        struct cq_strategy_signal sig;
        int fired = cq_strategy_on_closed_candle(s, &bar, &sig);
        if (fired == 1) {
            cr_assert_geq(i, slow_n, "signal at bar %zu, before the first bar after warm-up", i);
            bars[n_sig] = i;
            sides[n_sig] = sig.side;
            n_sig++;
            cr_assert_str_eq(sig.reason, sig.side == CQ_SIDE_BUY ? "ema_12 crossed above ema_26"
                                                                 : "ema_12 crossed below ema_26");
            cr_assert(sig.strength >= 0.0 && sig.strength <= 1.0);
        } else {
            cr_assert_eq(fired, 0);
        }
    }
    cr_assert_gt(n_sig, 100, "66k one-minute candles cross many times (%zu)", n_sig);

    /* BUY, SELL, BUY, ... */
    for (size_t k = 1; k < n_sig; k++) {
        cr_assert_neq(sides[k], sides[k - 1], "signals %zu and %zu (bars %zu, %zu) are both %s",
                      k - 1, k, bars[k - 1], bars[k], cq_side_name(sides[k]));
    }

    /* Each signal: recompute both EMAs from scratch up to that bar; this bar
     * is on the signalled side and the last clear relation before it is on
     * the other side. */
    size_t unclear = 0;
    for (size_t k = 0; k < n_sig; k++) {
        size_t i = bars[k];
        int want = sides[k] == CQ_SIDE_BUY ? 1 : -1;
        ema_from_scratch(closes, i, fast_n, ref_fast);
        ema_from_scratch(closes, i, slow_n, ref_slow);
        int now = ref_relation(ref_fast, ref_slow, i);
        size_t j = i - 1;
        while (j >= slow_n - 1 && ref_relation(ref_fast, ref_slow, j) == 0) {
            j--;
        }
        cr_assert_geq(j, slow_n - 1, "signal at bar %zu has no warm bar before it", i);
        int before = ref_relation(ref_fast, ref_slow, j);
        if (now == 0) {
            unclear++; /* within rounding of a tie: cannot confirm, cannot refute */
            continue;
        }
        cr_assert_eq(now, want, "bar %zu: %s but the reference has EMA12 %.10f EMA26 %.10f", i,
                     cq_side_name(sides[k]), ref_fast[i], ref_slow[i]);
        cr_assert_eq(before, -want,
                     "bar %zu: %s but the reference was already on that side at bar %zu", i,
                     cq_side_name(sides[k]), j);
    }
    cr_expect_leq(unclear, 2, "%zu signals within rounding of a tie", unclear);

    /* And no cross is missed: the reference over the whole series crosses
     * exactly where the strategy signalled. */
    ema_from_scratch(closes, n - 1, fast_n, ref_fast);
    ema_from_scratch(closes, n - 1, slow_n, ref_slow);
    size_t k = 0;
    int last = 0;
    size_t ref_crosses = 0;
    for (size_t i = slow_n - 1; i < n; i++) {
        int rel = ref_relation(ref_fast, ref_slow, i);
        if (rel == 0) {
            continue;
        }
        if (last != 0 && rel != last) {
            ref_crosses++;
            while (k < n_sig && bars[k] < i) {
                k++;
            }
            cr_assert(k < n_sig && bars[k] == i,
                      "the reference crosses %s at bar %zu but the strategy did not signal",
                      rel > 0 ? "above" : "below", i);
        }
        last = rel;
    }
    cr_expect_eq(ref_crosses, n_sig, "reference crosses %zu, signals %zu", ref_crosses, n_sig);

    free(bars);
    free(sides);
    free(ref_fast);
    free(ref_slow);
    free(closes);
    cq_strategy_free(s);
}
