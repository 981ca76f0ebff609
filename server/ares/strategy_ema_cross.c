/*
 * strategy_ema_cross.c — ema_cross, the default strategy: BUY when
 * EMA(fast) crosses above EMA(slow), SELL when it crosses below.
 *
 * Parameters: fast (whole, 1..1000, default 12), slow (whole, 2..1000,
 * default 26), and fast < slow. fast=1 is allowed: EMA(1) is the close
 * itself, which makes this "price crosses EMA(slow)".
 *
 * Warm-up: both EMAs are warm after `slow` closed candles (EMA(n) is ready
 * after n values and fast < slow), so warmup_bars = slow. The first warm bar
 * never signals: a cross needs a known relation before it.
 *
 * The cross, exactly: on each warm bar d = EMA(fast) - EMA(slow).
 *   - d > 0 is "above", d < 0 is "below", d == 0 is a tie.
 *   - The strategy remembers the relation of the last warm bar on which d
 *     was not 0. A bar with d > 0 whose remembered relation is "below" is a
 *     BUY; d < 0 after "above" is a SELL. Then the remembered relation
 *     becomes this bar's.
 *   - A tie (d == 0) on this bar is never a cross and does not change the
 *     remembered relation. So below, tie, below is a touch (no signal);
 *     below, tie, above is one BUY, on the bar that is above. (Comparing
 *     with the literal previous bar instead would either miss a cross that
 *     passes through an exact tie or signal twice on a touch.)
 *   - Consequence: signals strictly alternate BUY, SELL, BUY, ... and the
 *     first one may be either side.
 *
 * Strength: |d| / |EMA(slow)| — the spread as a fraction of price — clamped
 * to [0, 1] (1 if EMA(slow) is 0). Right at a cross it is small; it says how
 * decisively the cross happened on that bar, not how good the trade is.
 *
 * Reason: "ema_12 crossed above ema_26" / "ema_12 crossed below ema_26".
 *
 * No allocation after init; O(1) per bar.
 */
#include <math.h>
#include <stdio.h>

#include "cq/strategy.h"

enum { P_FAST, P_SLOW, P__COUNT };

static const struct cq_strategy_param params[P__COUNT] = {
    [P_FAST] = {.name = "fast",
                .default_value = 12,
                .min = 1,
                .max = 1000,
                .integer = true,
                .doc = "period of the fast EMA, in closed candles"},
    [P_SLOW] = {.name = "slow",
                .default_value = 26,
                .min = 2,
                .max = 1000,
                .integer = true,
                .doc = "period of the slow EMA, in closed candles; greater than fast"},
};

struct ema_cross {
    struct cq_ema fast, slow;
    unsigned fast_n, slow_n;
    int last_relation; /* +1 above, -1 below, 0 not yet known */
};

static int check(const double *values, char *why, size_t why_len, char *hint, size_t hint_len)
{
    if (values[P_FAST] < values[P_SLOW]) {
        return 0;
    }
    snprintf(why, why_len, "has fast=%.15g not less than slow=%.15g", values[P_FAST],
             values[P_SLOW]);
    snprintf(hint, hint_len, "make fast smaller than slow, e.g. fast=12,slow=26");
    return -1;
}

static int init(void *state, const double *values)
{
    struct ema_cross *x = state;
    int rc;
    x->fast_n = (unsigned)values[P_FAST];
    x->slow_n = (unsigned)values[P_SLOW];
    x->last_relation = 0;
    rc = cq_ema_init(&x->fast, x->fast_n);
    if (rc < 0) {
        return rc;
    }
    return cq_ema_init(&x->slow, x->slow_n);
}

static bool warm(const void *state)
{
    const struct ema_cross *x = state;
    return cq_ema_ready(&x->fast) && cq_ema_ready(&x->slow);
}

static int on_closed_candle(void *state, const struct cq_ind_bar *bar,
                            struct cq_strategy_signal *sig)
{
    struct ema_cross *x = state;
    cq_ema_update(&x->fast, bar->close);
    cq_ema_update(&x->slow, bar->close);
    if (!warm(x)) {
        return 0;
    }
    double fast = cq_ema_value(&x->fast);
    double slow = cq_ema_value(&x->slow);
    double d = fast - slow;
    int relation = d > 0 ? 1 : d < 0 ? -1 : 0;
    if (relation == 0) {
        return 0; /* a tie is never a cross; NaN lands here too */
    }
    int previous = x->last_relation;
    x->last_relation = relation;
    if (previous == 0 || previous == relation) {
        return 0;
    }
    double strength = slow != 0 ? fabs(d) / fabs(slow) : 1.0;
    sig->side = relation > 0 ? CQ_SIDE_BUY : CQ_SIDE_SELL;
    sig->strength = strength > 1.0 ? 1.0 : strength;
    snprintf(sig->reason, sizeof(sig->reason), "ema_%u crossed %s ema_%u", x->fast_n,
             relation > 0 ? "above" : "below", x->slow_n);
    return 1;
}

static size_t warmup_bars(const double *values)
{
    double n = values[P_FAST] > values[P_SLOW] ? values[P_FAST] : values[P_SLOW];
    return (size_t)n;
}

const struct cq_strategy_ops cq_strategy__ema_cross = {
    .name = "ema_cross",
    .doc = "BUY when EMA(fast) crosses above EMA(slow), SELL when it crosses below",
    .params = params,
    .n_params = P__COUNT,
    .check = check,
    .state_size = sizeof(struct ema_cross),
    .init = init,
    .fini = NULL, /* EMAs own no memory */
    .on_closed_candle = on_closed_candle,
    .warm = warm,
    .warmup_bars = warmup_bars,
};
