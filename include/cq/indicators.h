/*
 * indicators.h — incremental technical indicators: O(1) per bar and
 * allocation-free on the hot path (any window buffer is allocated once, at
 * init).
 *
 * Values are doubles: indicators are statistics over prices, not amounts of
 * money — nothing here is ever sent to an exchange or booked. Inputs arrive
 * as cq_dec (exact) and are converted once per bar with cq_dec_to_double.
 * The money rule (ARCHITECTURE.md rule 2) still holds for everything that is
 * traded: a signal carries the candle's exact close as its reference price.
 *
 * Warm-up: every indicator reports ready() only once it has seen enough
 * bars; its value before that is undefined (callers print nothing).
 * Definitions (the tests check each against a straightforward
 * non-incremental reference and published worked examples):
 *   SMA(n)      mean of the last n closes; ready after n closes.
 *   EMA(n)      alpha = 2/(n+1); seeded with the SMA of the first n values;
 *               ready after n values.
 *   RSI(n)      Wilder: the first average gain/loss is the simple mean of
 *               the first n changes; then avg = (avg*(n-1) + x)/n; RSI =
 *               100 - 100/(1 + avg_gain/avg_loss), 100 when avg_loss = 0
 *               (and 50 when both are 0); ready after n+1 closes.
 *   MACD(f,s,g) line = EMA(f) - EMA(s); signal = EMA(g) of the line, fed
 *               from the bar where the line is first defined (EMA(s) ready);
 *               histogram = line - signal; ready when the signal is.
 *   ATR(n)      Wilder over the true range (the first TR is high-low); the
 *               first ATR is the mean of the first n TRs; ready after n bars.
 *   BB(n,k)     middle = SMA(n); upper/lower = middle ± k·σ with σ the
 *               population standard deviation of the last n closes; ready
 *               after n closes.
 *   VWAP(n)     rolling over the last n bars: Σ(typical·volume)/Σ(volume),
 *               typical = (high+low+close)/3; when Σ volume = 0, the last
 *               close; ready after n bars. Volume must be >= 0.
 *
 * Threads: a struct is owned by one thread (ARES, or a backtest); no locks.
 */
#ifndef CQ_INDICATORS_H
#define CQ_INDICATORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cq/common.h"

#define CQ_IND_WINDOW_MAX 1000 /* longest period accepted by any indicator */

/* One bar as indicators see it. */
struct cq_ind_bar {
    double open, high, low, close, volume;
};

/* A rolling window of the last n values, with a running sum (and sum of
 * squares) recomputed exactly every n updates (each time head wraps) to
 * stop drift. The sums are of (value - shift), shift being the newest value
 * at the last re-sum: variance from Σd²/n - (Σd/n)² then cancels only at
 * the scale of the deviations, not of the price (a flat window gives
 * exactly 0). */
struct cq_ind_window {
    double *values; /* owned, n */
    size_t n, count, head;
    double sum, sum_sq, shift;
};

struct cq_sma {
    struct cq_ind_window w;
};
struct cq_ema {
    size_t n;
    double alpha, value, seed_sum;
    size_t count;
};
struct cq_rsi {
    size_t n;
    double prev_close, avg_gain, avg_loss, seed_gain, seed_loss;
    size_t count;
    double value;
};
struct cq_macd {
    struct cq_ema fast, slow, signal;
    double line, hist;
};
struct cq_atr {
    size_t n;
    double prev_close, value, seed_sum;
    size_t count;
};
struct cq_bbands {
    struct cq_ind_window w;
    double k, middle, upper, lower;
};
/* traded counts the bars in the window with volume > 0, exactly, so an
 * all-zero window is recognised without trusting a drifting Σ volume. */
struct cq_vwap {
    struct cq_ind_window pv, vol;
    double last_close, value;
    size_t traded;
};

/* init returns 0 or -CQ_EINVAL (period 0 or > CQ_IND_WINDOW_MAX, or an
 * ordering rule like MACD fast < slow) or -CQ_ENOMEM; fini frees. update is
 * O(1); value/ready are plain reads. */
int cq_sma_init(struct cq_sma *x, size_t n) CQ_WUR;
void cq_sma_fini(struct cq_sma *x);
void cq_sma_update(struct cq_sma *x, double close);
bool cq_sma_ready(const struct cq_sma *x);
double cq_sma_value(const struct cq_sma *x);

int cq_ema_init(struct cq_ema *x, size_t n) CQ_WUR;
void cq_ema_update(struct cq_ema *x, double value);
bool cq_ema_ready(const struct cq_ema *x);
double cq_ema_value(const struct cq_ema *x);

int cq_rsi_init(struct cq_rsi *x, size_t n) CQ_WUR;
void cq_rsi_update(struct cq_rsi *x, double close);
bool cq_rsi_ready(const struct cq_rsi *x);
double cq_rsi_value(const struct cq_rsi *x);

int cq_macd_init(struct cq_macd *x, size_t fast, size_t slow, size_t signal) CQ_WUR;
void cq_macd_update(struct cq_macd *x, double close);
bool cq_macd_ready(const struct cq_macd *x);
double cq_macd_line(const struct cq_macd *x);
double cq_macd_signal(const struct cq_macd *x);
double cq_macd_hist(const struct cq_macd *x);

int cq_atr_init(struct cq_atr *x, size_t n) CQ_WUR;
void cq_atr_update(struct cq_atr *x, const struct cq_ind_bar *bar);
bool cq_atr_ready(const struct cq_atr *x);
double cq_atr_value(const struct cq_atr *x);

int cq_bbands_init(struct cq_bbands *x, size_t n, double k) CQ_WUR;
void cq_bbands_fini(struct cq_bbands *x);
void cq_bbands_update(struct cq_bbands *x, double close);
bool cq_bbands_ready(const struct cq_bbands *x);
double cq_bbands_middle(const struct cq_bbands *x);
double cq_bbands_upper(const struct cq_bbands *x);
double cq_bbands_lower(const struct cq_bbands *x);

int cq_vwap_init(struct cq_vwap *x, size_t n) CQ_WUR;
void cq_vwap_fini(struct cq_vwap *x);
void cq_vwap_update(struct cq_vwap *x, const struct cq_ind_bar *bar);
bool cq_vwap_ready(const struct cq_vwap *x);
double cq_vwap_value(const struct cq_vwap *x);

/* ---- a set of indicators by specification, for the CLI and strategies ---- */

/* A spec list like "ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2,sma:50,vwap:20".
 * Each item produces one or more output columns, named
 * "ema_12", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9",
 * "atr_14", "bb_mid_20_2", "bb_up_20_2", "bb_low_20_2", "sma_50", "vwap_20". */
#define CQ_IND_SET_MAX 32     /* items */
#define CQ_IND_COLUMNS_MAX 96 /* output columns */

struct cq_ind_set;

/* Parse and build; NULL with err naming the bad item and the fix. */
struct cq_ind_set *cq_ind_set_new(const char *spec, struct cq_err *err);
void cq_ind_set_free(struct cq_ind_set *s);
size_t cq_ind_set_columns(const struct cq_ind_set *s);
const char *cq_ind_set_column_name(const struct cq_ind_set *s, size_t col);
void cq_ind_set_update(struct cq_ind_set *s, const struct cq_ind_bar *bar);
/* false during that column's warm-up (*out untouched). Each column warms
 * up on its own: the MACD line from the bar where EMA(slow) is ready, its
 * signal and histogram from cq_macd_ready. A plain read: update computes
 * every column. */
bool cq_ind_set_value(const struct cq_ind_set *s, size_t col, double *out);

/* ---- the research tool ------------------------------------------------------- */

/* `coinquantd indicators --data FILE.csv --indicators SPEC [--format csv|json]`:
 * reads klines in the ../shared/data CSV format (plain or .gz), prints one row
 * per candle: open_time, close, then one column per indicator output, empty
 * (csv) or null (json) during warm-up. Returns the process exit code (0, 1
 * on I/O error, 2 on usage/spec error), messages to err_out. */
int cq_indicators_cli(int argc, char **argv, FILE *out, FILE *err_out);

#endif /* CQ_INDICATORS_H */
