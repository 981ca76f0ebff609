/*
 * strategy_rsi_reversion.c — rsi_reversion: BUY when RSI(period) crosses up
 * through `low` (the market leaves oversold), SELL when it crosses down
 * through `high` (it leaves overbought).
 *
 * Parameters: period (whole, 2..1000, default 14), low (1..99, default 30),
 * high (1..99, default 70), and low < high. low and high may have a
 * fraction (29.5).
 *
 * Warm-up: Wilder RSI(n) is ready after n+1 closes, so warmup_bars =
 * period + 1. The first warm bar never signals.
 *
 * The crosses, exactly (the same tie rule as ema_cross, per threshold):
 *   - for each threshold t (low, high) the strategy remembers the relation
 *     of RSI to t on the last warm bar where RSI != t (+1 above, -1 below);
 *   - BUY: RSI > low on this bar and the remembered relation to low is
 *     below; SELL: RSI < high on this bar and the remembered relation to
 *     high is above;
 *   - RSI == t on this bar is not a cross of t and leaves its memory alone
 *     (29, 30, 29 is a touch; 29, 30, 31 is one BUY, on the 31).
 *   Since low < high, one bar cannot cross both, so at most one signal per
 *   bar. RSI staying below low (however it moves) never signals.
 *
 * Strength: the distance past the threshold over the threshold, clamped to
 * [0, 1]: BUY (rsi - low) / low, SELL (high - rsi) / high. A jump from 20 to
 * 45 through 30 is 0.5; a creep from 29.9 to 30.1 is about 0.007.
 *
 * Reason: "rsi_14 crossed above 30" / "rsi_14 crossed below 70".
 *
 * No allocation after init; O(1) per bar.
 */
#include <stdio.h>

#include "cq/strategy.h"

enum { P_PERIOD, P_LOW, P_HIGH, P__COUNT };

static const struct cq_strategy_param params[P__COUNT] = {
    [P_PERIOD] = {.name = "period",
                  .default_value = 14,
                  .min = 2,
                  .max = 1000,
                  .integer = true,
                  .doc = "RSI period (Wilder), in closed candles"},
    [P_LOW] = {.name = "low",
               .default_value = 30,
               .min = 1,
               .max = 99,
               .integer = false,
               .doc = "BUY when RSI crosses up through this level"},
    [P_HIGH] = {.name = "high",
                .default_value = 70,
                .min = 1,
                .max = 99,
                .integer = false,
                .doc = "SELL when RSI crosses down through this level; above low"},
};

struct rsi_reversion {
    struct cq_rsi rsi;
    unsigned period;
    double low, high;
    int rel_low;  /* relation to low on the last bar RSI != low: +1, -1, 0 unknown */
    int rel_high; /* the same for high */
};

static int check(const double *values, char *why, size_t why_len, char *hint, size_t hint_len)
{
    if (values[P_LOW] < values[P_HIGH]) {
        return 0;
    }
    snprintf(why, why_len, "has low=%.15g not less than high=%.15g", values[P_LOW], values[P_HIGH]);
    snprintf(hint, hint_len, "make low smaller than high, e.g. low=30,high=70");
    return -1;
}

static int init(void *state, const double *values)
{
    struct rsi_reversion *x = state;
    x->period = (unsigned)values[P_PERIOD];
    x->low = values[P_LOW];
    x->high = values[P_HIGH];
    x->rel_low = 0;
    x->rel_high = 0;
    return cq_rsi_init(&x->rsi, x->period);
}

static bool warm(const void *state)
{
    const struct rsi_reversion *x = state;
    return cq_rsi_ready(&x->rsi);
}

static int relation(double v, double t)
{
    return v > t ? 1 : v < t ? -1 : 0;
}

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static int on_closed_candle(void *state, const struct cq_ind_bar *bar,
                            struct cq_strategy_signal *sig)
{
    struct rsi_reversion *x = state;
    cq_rsi_update(&x->rsi, bar->close);
    if (!warm(x)) {
        return 0;
    }
    double rsi = cq_rsi_value(&x->rsi);
    int to_low = relation(rsi, x->low);
    int to_high = relation(rsi, x->high);
    bool buy = to_low > 0 && x->rel_low < 0;
    bool sell = to_high < 0 && x->rel_high > 0;
    if (to_low != 0) {
        x->rel_low = to_low;
    }
    if (to_high != 0) {
        x->rel_high = to_high;
    }
    if (buy) {
        sig->side = CQ_SIDE_BUY;
        sig->strength = clamp01((rsi - x->low) / x->low);
        snprintf(sig->reason, sizeof(sig->reason), "rsi_%u crossed above %.15g", x->period, x->low);
        return 1;
    }
    if (sell) {
        sig->side = CQ_SIDE_SELL;
        sig->strength = clamp01((x->high - rsi) / x->high);
        snprintf(sig->reason, sizeof(sig->reason), "rsi_%u crossed below %.15g", x->period,
                 x->high);
        return 1;
    }
    return 0;
}

static size_t warmup_bars(const double *values)
{
    return (size_t)values[P_PERIOD] + 1;
}

const struct cq_strategy_ops cq_strategy__rsi_reversion = {
    .name = "rsi_reversion",
    .doc = "BUY when RSI(period) crosses up through low, SELL when it crosses down through high",
    .params = params,
    .n_params = P__COUNT,
    .check = check,
    .state_size = sizeof(struct rsi_reversion),
    .init = init,
    .fini = NULL, /* RSI owns no memory */
    .on_closed_candle = on_closed_candle,
    .warm = warm,
    .warmup_bars = warmup_bars,
};
