/*
 * strategy.h — the strategy interface ARES runs on every closed candle, and
 * the registry of built-in strategies. A new strategy is one file under
 * server/ares/ with one struct cq_strategy_ops, listed in strategy.c.
 *
 * Built in:
 *   ema_cross      BUY when EMA(fast) crosses above EMA(slow), SELL when it
 *                  crosses below; params fast (12), slow (26), fast < slow.
 *                  No signal until both EMAs are warm; a cross needs the
 *                  previous bar's relation to be known (so the first warm
 *                  bar never signals).
 *   rsi_reversion  BUY when RSI(period) crosses up through `low` (30), SELL
 *                  when it crosses down through `high` (70); params period
 *                  (14), low (30), high (70), low < high.
 *
 * Parameters are config: CQ_STRATEGY names the strategy and
 * CQ_STRATEGY_PARAMS ("fast=9,slow=21") sets any of its parameters; the
 * config layer validates both with cq_strategy_params_check, with the same
 * strictness as every other key (unknown name with did-you-mean, value out
 * of range, not a whole number, a cross rule broken). Core does not link
 * ARES: cq_strategy_register_config() hands the check to it, and a program
 * calls it before loading config (without it the config refuses
 * CQ_STRATEGY).
 *
 * Threads: the registry is constant data (any thread). An instance belongs
 * to the thread that created it (ARES, a backtest).
 */
#ifndef CQ_STRATEGY_H
#define CQ_STRATEGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/indicators.h"
#include "cq/market.h"

#define CQ_STRATEGY_PARAMS_MAX 8

/* enum cq_side is in cq/market.h (core): the exchange filters use it too. */
const char *cq_side_name(enum cq_side side); /* "BUY", "SELL" */

/* What a strategy says on a bar. */
struct cq_strategy_signal {
    enum cq_side side;
    double strength; /* 0..1, strategy-defined (e.g. normalised EMA spread) */
    char reason[96]; /* "ema_12 crossed above ema_26" */
};

struct cq_strategy_param {
    const char *name; /* "fast" */
    double default_value;
    double min, max; /* inclusive */
    bool integer;    /* must be a whole number */
    const char *doc;
};

struct cq_strategy_ops {
    const char *name; /* "ema_cross" */
    const char *doc;  /* one line */
    const struct cq_strategy_param *params;
    size_t n_params;
    /* Cross-parameter rule (e.g. fast < slow): 0, or -1 with why/hint. */
    int (*check)(const double *values, char *why, size_t why_len, char *hint, size_t hint_len);
    size_t state_size; /* bytes of per-instance state */
    int (*init)(void *state, const double *values);
    void (*fini)(void *state);
    /* One closed candle: 1 and *sig filled when it signals, else 0. */
    int (*on_closed_candle)(void *state, const struct cq_ind_bar *bar,
                            struct cq_strategy_signal *sig);
    /* All its indicators are warm. */
    bool (*warm)(const void *state);
    /* How many closed candles warm-up takes with these values. */
    size_t (*warmup_bars)(const double *values);
};

/* The registry. */
const struct cq_strategy_ops *cq_strategy_find(const char *name);
size_t cq_strategy_count(void);
const struct cq_strategy_ops *cq_strategy_at(size_t i);

/* Parse "k=v,k=v" against ops' parameters (missing ones take their
 * defaults). 0, or -CQ_ECONFIG with why (what is wrong) and hint (the fix,
 * e.g. "did you mean slow?", "write a whole number from 2 to 1000").
 * name NULL/unknown: -CQ_ECONFIG naming the known strategies. */
int cq_strategy_params_check(const char *name, const char *spec, double *values_out, char *why,
                             size_t why_len, char *hint, size_t hint_len) CQ_WUR;

/* Register cq_strategy_params_check as the config layer's check of
 * CQ_STRATEGY / CQ_STRATEGY_PARAMS (cq_config_set_strategy_check). Call it
 * before the first cq_config_load(); calling it again is harmless. */
void cq_strategy_register_config(void);

/* An instance. */
struct cq_strategy;
struct cq_strategy *cq_strategy_new(const struct cq_strategy_ops *ops, const double *values,
                                    struct cq_err *err);
void cq_strategy_free(struct cq_strategy *s);
int cq_strategy_on_closed_candle(struct cq_strategy *s, const struct cq_ind_bar *bar,
                                 struct cq_strategy_signal *sig);
bool cq_strategy_warm(const struct cq_strategy *s);
size_t cq_strategy_warmup_bars(const struct cq_strategy *s);
const struct cq_strategy_ops *cq_strategy_ops_of(const struct cq_strategy *s);
/* "fast=12,slow=26" as effective (for logs and banners). */
void cq_strategy_describe(const struct cq_strategy *s, char *buf, size_t len);

#endif /* CQ_STRATEGY_H */
