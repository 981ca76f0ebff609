/*
 * indicators.c — the incremental technical indicators ARES and the research
 * tool run on closed candles (include/cq/indicators.h), and the indicator
 * set built from a spec such as "ema:12,rsi:14,macd:12:26:9".
 *
 * Why doubles: an indicator is a statistic over prices (a mean, a smoothed
 * ratio, a standard deviation), never an amount that is ordered, booked or
 * compared against an exchange filter. A double's 53 bits hold any price
 * we see to ~1e-16 relative, far below what a crossing rule can notice, and
 * they keep the update a handful of multiply-adds. Money stays cq_dec: a
 * signal carries the candle's exact close, not anything computed here.
 *
 * Numerical care:
 *   - rolling windows keep running sums of (value - shift), with shift a
 *     recent value, and re-sum them exactly from the buffer every n updates
 *     (amortised O(1)), so rounding cannot accumulate and Bollinger's
 *     Σd²/n - (Σd/n)² cancels only at the scale of the deviations; the
 *     population variance is clamped at 0 (a flat window gives exactly 0
 *     once re-summed);
 *   - VWAP counts traded (volume > 0) bars exactly, so a window of
 *     zero-volume candles (the 2023-03-24 halt) falls back to the last close
 *     instead of dividing a drift residue by a drift residue;
 *   - RSI is computed as 100·G/(G+L), the same value as 100 - 100/(1 + G/L)
 *     without the G/L overflow when L is tiny; 50 when both are 0.
 *
 * Hot path: no allocation after init, no division in an update except
 * where a value is finally formed; each period's reciprocal comes from a
 * constant table (recip[n] = 1.0/n, folded at compile time), since a
 * multiply costs a few cycles and a division a dozen or more.
 *
 * Threads: none of its own. A struct (and a set) belongs to the one thread
 * that updates it.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/decimal.h"
#include "cq/indicators.h"
#include "cq/text.h"

/* ---- reciprocals 1/n for n = 0..CQ_IND_WINDOW_MAX ---------------------------
 * Built from constant expressions, so the compiler folds every entry (each
 * one correctly rounded); entry 0 is unused. */
/* clang-format off */
#define RECIP1(i) (1.0 / (double)((i) == 0 ? 1 : (i))),
#define RECIP10(i) RECIP1(i) RECIP1((i) + 1) RECIP1((i) + 2) RECIP1((i) + 3) RECIP1((i) + 4) \
    RECIP1((i) + 5) RECIP1((i) + 6) RECIP1((i) + 7) RECIP1((i) + 8) RECIP1((i) + 9)
#define RECIP100(i) RECIP10(i) RECIP10((i) + 10) RECIP10((i) + 20) RECIP10((i) + 30) \
    RECIP10((i) + 40) RECIP10((i) + 50) RECIP10((i) + 60) RECIP10((i) + 70) RECIP10((i) + 80) \
    RECIP10((i) + 90)
static const double recip[CQ_IND_WINDOW_MAX + 1] = {
    RECIP100(0) RECIP100(100) RECIP100(200) RECIP100(300) RECIP100(400)
    RECIP100(500) RECIP100(600) RECIP100(700) RECIP100(800) RECIP100(900)
    RECIP1(1000)
};
/* clang-format on */
_Static_assert(CQ_IND_WINDOW_MAX == 1000, "recip[] is written out for CQ_IND_WINDOW_MAX 1000");

static bool period_ok(size_t n)
{
    return n >= 1 && n <= CQ_IND_WINDOW_MAX;
}

/* ---- the rolling window ------------------------------------------------------ */

static int window_init(struct cq_ind_window *w, size_t n)
{
    memset(w, 0, sizeof(*w));
    if (!period_ok(n)) {
        return -CQ_EINVAL;
    }
    w->values = calloc(n, sizeof(*w->values));
    if (w->values == NULL) {
        return -CQ_ENOMEM;
    }
    w->n = n;
    return 0;
}

static void window_fini(struct cq_ind_window *w)
{
    free(w->values);
    w->values = NULL;
    w->n = w->count = w->head = 0;
}

/* Recompute the sums exactly from the buffer; with `shifted`, first move the
 * shift to the newest value. Runs each time the ring wraps, i.e. once every
 * n pushes, so it costs O(1) amortised and no rounding error lives longer
 * than n updates. The first run is on the n-th push, before any value is
 * formed, so values are never computed against the initial shift of 0. */
static inline void window_resum(struct cq_ind_window *w, bool shifted, bool squares)
{
    double sum = 0.0;
    double sum_sq = 0.0;

    if (shifted) {
        w->shift = w->values[w->head == 0 ? w->n - 1 : w->head - 1];
    }
    for (size_t i = 0; i < w->count; i++) {
        double d = w->values[i] - w->shift;
        sum += d;
        if (squares) {
            sum_sq += d * d;
        }
    }
    w->sum = sum;
    w->sum_sq = sum_sq;
}

/* Push x, evicting the oldest value once the window is full. `shifted` and
 * `squares` are constants at every call site, so each caller gets its own
 * branch-free copy. */
static inline void window_push(struct cq_ind_window *w, double x, bool shifted, bool squares)
{
    double d = x - w->shift;
    if (w->count == w->n) {
        double old = w->values[w->head] - w->shift;
        w->sum += d - old;
        if (squares) {
            w->sum_sq += (d - old) * (d + old);
        }
    } else {
        w->count++;
        w->sum += d;
        if (squares) {
            w->sum_sq += d * d;
        }
    }
    w->values[w->head] = x;
    w->head++;
    if (w->head == w->n) {
        w->head = 0;
        window_resum(w, shifted, squares);
    }
}

static inline bool window_full(const struct cq_ind_window *w)
{
    return w->count == w->n && w->n != 0;
}

/* ---- SMA ------------------------------------------------------------------------ */

int cq_sma_init(struct cq_sma *x, size_t n)
{
    return window_init(&x->w, n);
}

void cq_sma_fini(struct cq_sma *x)
{
    window_fini(&x->w);
}

void cq_sma_update(struct cq_sma *x, double close)
{
    window_push(&x->w, close, true, false);
}

bool cq_sma_ready(const struct cq_sma *x)
{
    return window_full(&x->w);
}

double cq_sma_value(const struct cq_sma *x)
{
    return x->w.shift + x->w.sum * recip[x->w.n];
}

/* ---- EMA ------------------------------------------------------------------------ */

int cq_ema_init(struct cq_ema *x, size_t n)
{
    memset(x, 0, sizeof(*x));
    if (!period_ok(n)) {
        return -CQ_EINVAL;
    }
    x->n = n;
    x->alpha = 2.0 / ((double)n + 1.0);
    return 0;
}

void cq_ema_update(struct cq_ema *x, double value)
{
    if (x->count >= x->n) {
        x->value += x->alpha * (value - x->value);
        return;
    }
    x->seed_sum += value;
    x->count++;
    if (x->count == x->n) {
        x->value = x->seed_sum * recip[x->n];
    }
}

bool cq_ema_ready(const struct cq_ema *x)
{
    return x->count >= x->n && x->n != 0;
}

double cq_ema_value(const struct cq_ema *x)
{
    return x->value;
}

/* ---- RSI (Wilder) ------------------------------------------------------------- */

int cq_rsi_init(struct cq_rsi *x, size_t n)
{
    memset(x, 0, sizeof(*x));
    if (!period_ok(n)) {
        return -CQ_EINVAL;
    }
    x->n = n;
    return 0;
}

static inline double rsi_of(double avg_gain, double avg_loss)
{
    double total = avg_gain + avg_loss;
    return total > 0.0 ? 100.0 * avg_gain / total : 50.0;
}

void cq_rsi_update(struct cq_rsi *x, double close)
{
    if (x->count == 0) {
        x->prev_close = close;
        x->count = 1;
        return;
    }
    double change = close - x->prev_close;
    double gain = change > 0.0 ? change : 0.0;
    double loss = change < 0.0 ? -change : 0.0;
    x->prev_close = close;

    if (x->count > x->n) {
        /* avg = (avg·(n-1) + x)/n, written as avg + (x - avg)/n */
        double r = recip[x->n];
        x->avg_gain += (gain - x->avg_gain) * r;
        x->avg_loss += (loss - x->avg_loss) * r;
        x->value = rsi_of(x->avg_gain, x->avg_loss);
        return;
    }
    x->seed_gain += gain;
    x->seed_loss += loss;
    x->count++;
    if (x->count == x->n + 1) {
        x->avg_gain = x->seed_gain * recip[x->n];
        x->avg_loss = x->seed_loss * recip[x->n];
        x->value = rsi_of(x->avg_gain, x->avg_loss);
    }
}

bool cq_rsi_ready(const struct cq_rsi *x)
{
    return x->count > x->n && x->n != 0;
}

double cq_rsi_value(const struct cq_rsi *x)
{
    return x->value;
}

/* ---- MACD ----------------------------------------------------------------------- */

int cq_macd_init(struct cq_macd *x, size_t fast, size_t slow, size_t signal)
{
    int rc;

    memset(x, 0, sizeof(*x));
    if (!period_ok(fast) || !period_ok(slow) || !period_ok(signal) || fast >= slow) {
        return -CQ_EINVAL;
    }
    rc = cq_ema_init(&x->fast, fast);
    if (rc == 0) {
        rc = cq_ema_init(&x->slow, slow);
    }
    if (rc == 0) {
        rc = cq_ema_init(&x->signal, signal);
    }
    return rc;
}

void cq_macd_update(struct cq_macd *x, double close)
{
    cq_ema_update(&x->fast, close);
    cq_ema_update(&x->slow, close);
    if (!cq_ema_ready(&x->slow)) {
        return;
    }
    /* fast < slow, so the fast EMA is warm whenever the slow one is */
    x->line = x->fast.value - x->slow.value;
    cq_ema_update(&x->signal, x->line);
    if (cq_ema_ready(&x->signal)) {
        x->hist = x->line - x->signal.value;
    }
}

bool cq_macd_ready(const struct cq_macd *x)
{
    return cq_ema_ready(&x->signal);
}

double cq_macd_line(const struct cq_macd *x)
{
    return x->line;
}

double cq_macd_signal(const struct cq_macd *x)
{
    return x->signal.value;
}

double cq_macd_hist(const struct cq_macd *x)
{
    return x->hist;
}

/* ---- ATR (Wilder) ------------------------------------------------------------- */

int cq_atr_init(struct cq_atr *x, size_t n)
{
    memset(x, 0, sizeof(*x));
    if (!period_ok(n)) {
        return -CQ_EINVAL;
    }
    x->n = n;
    return 0;
}

void cq_atr_update(struct cq_atr *x, const struct cq_ind_bar *bar)
{
    double tr = bar->high - bar->low;
    if (x->count > 0) {
        double up = fabs(bar->high - x->prev_close);
        double down = fabs(bar->low - x->prev_close);
        tr = tr > up ? tr : up;
        tr = tr > down ? tr : down;
    }
    x->prev_close = bar->close;

    if (x->count >= x->n) {
        x->value += (tr - x->value) * recip[x->n];
        return;
    }
    x->seed_sum += tr;
    x->count++;
    if (x->count == x->n) {
        x->value = x->seed_sum * recip[x->n];
    }
}

bool cq_atr_ready(const struct cq_atr *x)
{
    return x->count >= x->n && x->n != 0;
}

double cq_atr_value(const struct cq_atr *x)
{
    return x->value;
}

/* ---- Bollinger bands ---------------------------------------------------------- */

int cq_bbands_init(struct cq_bbands *x, size_t n, double k)
{
    memset(x, 0, sizeof(*x));
    if (!(k > 0.0) || !isfinite(k)) {
        return -CQ_EINVAL;
    }
    x->k = k;
    return window_init(&x->w, n);
}

void cq_bbands_fini(struct cq_bbands *x)
{
    window_fini(&x->w);
}

void cq_bbands_update(struct cq_bbands *x, double close)
{
    window_push(&x->w, close, true, true);
    if (!window_full(&x->w)) {
        return;
    }
    double r = recip[x->w.n];
    double mean_d = x->w.sum * r;
    double var = x->w.sum_sq * r - mean_d * mean_d;
    double sd = var > 0.0 ? sqrt(var) : 0.0;
    x->middle = x->w.shift + mean_d;
    x->upper = x->middle + x->k * sd;
    x->lower = x->middle - x->k * sd;
}

bool cq_bbands_ready(const struct cq_bbands *x)
{
    return window_full(&x->w);
}

double cq_bbands_middle(const struct cq_bbands *x)
{
    return x->middle;
}

double cq_bbands_upper(const struct cq_bbands *x)
{
    return x->upper;
}

double cq_bbands_lower(const struct cq_bbands *x)
{
    return x->lower;
}

/* ---- rolling VWAP --------------------------------------------------------------- */

int cq_vwap_init(struct cq_vwap *x, size_t n)
{
    int rc;

    memset(x, 0, sizeof(*x));
    rc = window_init(&x->pv, n);
    if (rc < 0) {
        return rc;
    }
    rc = window_init(&x->vol, n);
    if (rc < 0) {
        window_fini(&x->pv);
    }
    return rc;
}

void cq_vwap_fini(struct cq_vwap *x)
{
    window_fini(&x->pv);
    window_fini(&x->vol);
}

/* VWAP's two windows re-summed in one pass over their (lockstep) rings. */
static void vwap_resum(struct cq_vwap *x)
{
    double pv = 0.0;
    double vol = 0.0;
    for (size_t i = 0; i < x->vol.count; i++) {
        pv += x->pv.values[i];
        vol += x->vol.values[i];
    }
    x->pv.sum = pv;
    x->vol.sum = vol;
}

/* Volume must be >= 0 (the CLI and the feeder reject anything else). The
 * two windows move in lockstep (same n, count and head), so one piece of
 * bookkeeping serves both. Σpv and Σv are sums of non-negative magnitudes:
 * no shift. */
void cq_vwap_update(struct cq_vwap *x, const struct cq_ind_bar *bar)
{
    static const double third = 1.0 / 3.0;
    struct cq_ind_window *pv = &x->pv;
    struct cq_ind_window *vol = &x->vol;
    double volume = bar->volume;
    double typical_volume = (bar->high + bar->low + bar->close) * third * volume;
    size_t h = vol->head;

    if (vol->count == vol->n) {
        double old_volume = vol->values[h];
        x->traded -= old_volume > 0.0;
        pv->sum += typical_volume - pv->values[h];
        vol->sum += volume - old_volume;
    } else {
        pv->count++;
        vol->count++;
        pv->sum += typical_volume;
        vol->sum += volume;
    }
    x->traded += volume > 0.0;
    pv->values[h] = typical_volume;
    vol->values[h] = volume;
    h++;
    if (h == vol->n) {
        h = 0;
        vwap_resum(x);
    }
    pv->head = vol->head = h;
    x->last_close = bar->close;
    if (vol->count != vol->n) {
        return;
    }
    if (x->traded == 0) {
        /* every volume in the window is 0: so are both sums, exactly */
        pv->sum = 0.0;
        vol->sum = 0.0;
        x->value = x->last_close;
        return;
    }
    if (!(vol->sum > 0.0)) {
        /* drift ate a tiny positive sum (never seen in practice): re-sum */
        vwap_resum(x);
    }
    x->value = pv->sum / vol->sum;
}

bool cq_vwap_ready(const struct cq_vwap *x)
{
    return window_full(&x->vol);
}

double cq_vwap_value(const struct cq_vwap *x)
{
    return x->value;
}

/* ---- the indicator set --------------------------------------------------------- */

enum ind_kind {
    IND_SMA,
    IND_EMA,
    IND_RSI,
    IND_MACD,
    IND_ATR,
    IND_BB,
    IND_VWAP,
};

struct ind_def {
    const char *name;
    enum ind_kind kind;
    size_t n_params;
    const char *form;    /* "ema:N" */
    const char *example; /* "ema:12" */
};

static const struct ind_def defs[] = {
    {"sma", IND_SMA, 1, "sma:N", "sma:50"},
    {"ema", IND_EMA, 1, "ema:N", "ema:12"},
    {"rsi", IND_RSI, 1, "rsi:N", "rsi:14"},
    {"macd", IND_MACD, 3, "macd:FAST:SLOW:SIGNAL", "macd:12:26:9"},
    {"atr", IND_ATR, 1, "atr:N", "atr:14"},
    {"bb", IND_BB, 2, "bb:N:K", "bb:20:2"},
    {"vwap", IND_VWAP, 1, "vwap:N", "vwap:20"},
};

#define KNOWN_NAMES "sma, ema, rsi, macd, atr, bb, vwap"

/* Other names people write, for did-you-mean only. */
static const struct {
    const char *alias;
    const char *name;
} aliases[] = {
    {"ma", "sma"},       {"bbands", "bb"},      {"boll", "bb"},
    {"bollinger", "bb"}, {"bband", "bb"},       {"rvwap", "vwap"},
    {"vwma", "vwap"},    {"wilder_rsi", "rsi"}, {"exponential", "ema"},
};

#define ITEM_MAX 64   /* characters in one item */
#define SPEC_MAX 2048 /* characters in the whole spec */
#define COLUMN_NAME_MAX 96

struct ind_item {
    enum ind_kind kind;
    uint16_t first_column; /* its outputs are columns first_column.. */
    union {
        struct cq_sma sma;
        struct cq_ema ema;
        struct cq_rsi rsi;
        struct cq_macd macd;
        struct cq_atr atr;
        struct cq_bbands bb;
        struct cq_vwap vwap;
    } u;
};

/* Hot data first: the update loop walks items and writes every column's
 * value and readiness, so a read is one load; names are cold. */
struct cq_ind_set {
    size_t n_items, n_columns;
    double values[CQ_IND_COLUMNS_MAX]; /* valid where ready[] */
    bool ready[CQ_IND_COLUMNS_MAX];
    struct ind_item items[CQ_IND_SET_MAX];
    char names[CQ_IND_COLUMNS_MAX][COLUMN_NAME_MAX]; /* cold: read by the CLI only */
};

/* The known name closest to `name` (case-insensitive, at most 2 edits, or a
 * known alias), or NULL. */
static const char *did_you_mean(const char *name)
{
    const char *best = NULL;
    size_t best_d = 3;

    for (size_t i = 0; i < CQ_ARRAY_LEN(aliases); i++) {
        if (cq_text_edit_distance_ci(name, strlen(name), aliases[i].alias) == 0) {
            return aliases[i].name;
        }
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(defs); i++) {
        size_t d = cq_text_edit_distance_ci(name, strlen(name), defs[i].name);
        /* a one-letter name is at distance <= 2 from every short name */
        if (d < best_d && d < strlen(defs[i].name)) {
            best_d = d;
            best = defs[i].name;
        }
    }
    return best;
}

/* A period: digits only, no sign, no leading zero, 1..CQ_IND_WINDOW_MAX. */
static int parse_period(const char *text, size_t item_no, const char *item, const char *what,
                        const struct ind_def *def, size_t *out, struct cq_err *err)
{
    char hint[CQ_ERR_HINT_MAX];
    size_t len = strlen(text);
    size_t v = 0;

    snprintf(hint, sizeof(hint), "write %s with whole numbers from 1 to %d, e.g. %s", def->form,
             CQ_IND_WINDOW_MAX, def->example);
    if (len == 0) {
        return cq_err_set(err, CQ_EINVAL, 0, hint, "indicator item %zu '%s': %s is empty", item_no,
                          item, what);
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return cq_err_set(err, CQ_EINVAL, 0, hint,
                              "indicator item %zu '%s': %s '%s' is not a whole number", item_no,
                              item, what, text);
        }
        if (v <= CQ_IND_WINDOW_MAX) {
            v = v * 10 + (size_t)(text[i] - '0');
        }
    }
    if (v == 0) {
        return cq_err_set(err, CQ_EINVAL, 0, hint, "indicator item %zu '%s': %s is 0", item_no,
                          item, what);
    }
    if (text[0] == '0') {
        snprintf(hint, sizeof(hint), "write it as %zu", v);
        return cq_err_set(err, CQ_EINVAL, 0, hint,
                          "indicator item %zu '%s': %s '%s' has a leading zero", item_no, item,
                          what, text);
    }
    if (v > CQ_IND_WINDOW_MAX) {
        snprintf(hint, sizeof(hint), "use a period from 1 to %d", CQ_IND_WINDOW_MAX);
        return cq_err_set(err, CQ_EINVAL, 0, hint,
                          "indicator item %zu '%s': %s %s is longer than the maximum %d "
                          "(CQ_IND_WINDOW_MAX)",
                          item_no, item, what, text, CQ_IND_WINDOW_MAX);
    }
    *out = v;
    return 0;
}

/* Bollinger's k: a plain positive decimal ("2", "2.5"); its normalised text
 * goes into the column names. */
static int parse_k(const char *text, size_t item_no, const char *item, double *k, char *k_text,
                   size_t k_text_len, struct cq_err *err)
{
    cq_dec d;
    char buf[CQ_DEC_STR_MAX];

    if (cq_dec_parse(text, (size_t)-1, &d) < 0 || d.m <= 0) {
        return cq_err_set(
            err, CQ_EINVAL, 0, "write bb:N:K with K a positive number like 2 or 2.5, e.g. bb:20:2",
            "indicator item %zu '%s': bb k '%s' is not a positive number", item_no, item, text);
    }
    d = cq_dec_normalize(d);
    *k = cq_dec_to_double(d);
    /* bounded: callers pass CQ_DEC_STR_MAX bytes, buf's size */
    cq_strlcpy(k_text, cq_dec_format(d, buf, sizeof(buf)), k_text_len);
    return 0;
}

static void add_column(struct cq_ind_set *s, const char *prefix, const char *params)
{
    /* bounded: prefix <= 10 characters, params < 64 (add_item) < 96 */
    snprintf(s->names[s->n_columns], COLUMN_NAME_MAX, "%s_%s", prefix, params);
    s->n_columns++;
}

/* Parse one item (already split off, NUL-terminated, <= ITEM_MAX) and build
 * it into s->items[s->n_items]. */
static int add_item(struct cq_ind_set *s, char *item, size_t item_no, struct cq_err *err)
{
    char copy[ITEM_MAX + 1];
    char *fields[5];
    size_t n_fields = 0;
    const struct ind_def *def = NULL;
    size_t p[3] = {0, 0, 0};
    double k = 0.0;
    char k_text[CQ_DEC_STR_MAX] = "";
    char params[64];
    char hint[CQ_ERR_HINT_MAX];
    int rc;

    cq_strlcpy(copy, item, sizeof(copy)); /* bounded: item <= ITEM_MAX (caller) */
    for (const char *c = item; *c != '\0'; c++) {
        if (isspace((unsigned char)*c)) {
            return cq_err_set(err, CQ_EINVAL, 0,
                              "write the list without spaces, e.g. ema:12,rsi:14",
                              "indicator item %zu '%s' contains whitespace", item_no, copy);
        }
    }
    /* split on ':' (no strtok: empty fields matter) */
    fields[n_fields++] = item;
    for (char *c = item; *c != '\0'; c++) {
        if (*c == ':') {
            *c = '\0';
            if (n_fields == CQ_ARRAY_LEN(fields)) {
                break; /* too many parameters: reported below */
            }
            fields[n_fields++] = c + 1;
        }
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(defs); i++) {
        if (strcmp(fields[0], defs[i].name) == 0) {
            def = &defs[i];
        }
    }
    if (def == NULL) {
        const char *guess = did_you_mean(fields[0]);
        if (fields[0][0] == '\0') {
            return cq_err_set(err, CQ_EINVAL, 0,
                              "start each item with an indicator name: " KNOWN_NAMES,
                              "indicator item %zu '%s' has no name", item_no, copy);
        }
        if (guess != NULL) {
            snprintf(hint, sizeof(hint), "did you mean '%s'? known indicators: " KNOWN_NAMES,
                     guess);
        } else {
            snprintf(hint, sizeof(hint), "known indicators: " KNOWN_NAMES);
        }
        return cq_err_set(err, CQ_EINVAL, 0, hint,
                          "indicator item %zu '%s': unknown indicator '%s'", item_no, copy,
                          fields[0]);
    }
    snprintf(hint, sizeof(hint), "write %s, e.g. %s", def->form, def->example);
    if (n_fields - 1 != def->n_params) {
        if (n_fields == 1) {
            return cq_err_set(err, CQ_EINVAL, 0, hint, "indicator item %zu '%s': missing %s",
                              item_no, copy, def->n_params == 1 ? "period" : "parameters");
        }
        return cq_err_set(err, CQ_EINVAL, 0, hint,
                          "indicator item %zu '%s': %s takes %zu parameter%s, got %s%zu", item_no,
                          copy, def->name, def->n_params, def->n_params == 1 ? "" : "s",
                          n_fields == CQ_ARRAY_LEN(fields) ? "at least " : "", n_fields - 1);
    }

    switch (def->kind) {
    case IND_MACD:
        rc = parse_period(fields[1], item_no, copy, "fast period", def, &p[0], err);
        if (rc == 0) {
            rc = parse_period(fields[2], item_no, copy, "slow period", def, &p[1], err);
        }
        if (rc == 0) {
            rc = parse_period(fields[3], item_no, copy, "signal period", def, &p[2], err);
        }
        if (rc == 0 && p[0] >= p[1]) {
            rc = cq_err_set(err, CQ_EINVAL, 0,
                            "write macd:FAST:SLOW:SIGNAL with FAST < SLOW, e.g. macd:12:26:9",
                            "indicator item %zu '%s': macd fast period %zu is not shorter than "
                            "slow period %zu",
                            item_no, copy, p[0], p[1]);
        }
        break;
    case IND_BB:
        rc = parse_period(fields[1], item_no, copy, "period", def, &p[0], err);
        if (rc == 0) {
            rc = parse_k(fields[2], item_no, copy, &k, k_text, sizeof(k_text), err);
        }
        break;
    default:
        rc = parse_period(fields[1], item_no, copy, "period", def, &p[0], err);
        break;
    }
    if (rc < 0) {
        return rc;
    }

    /* bounded: periods <= CQ_IND_WINDOW_MAX (4 digits), k_text <
     * CQ_DEC_STR_MAX (48): at most 52 characters in params[64] */
    if (def->kind == IND_MACD) {
        snprintf(params, sizeof(params), "%zu_%zu_%zu", p[0], p[1], p[2]);
    } else if (def->kind == IND_BB) {
        snprintf(params, sizeof(params), "%zu_%s", p[0], k_text);
    } else {
        snprintf(params, sizeof(params), "%zu", p[0]);
    }
    /* the first column's name identifies the item: refuse duplicates */
    char first[COLUMN_NAME_MAX];
    snprintf(first, sizeof(first), "%s_%s", def->kind == IND_BB ? "bb_mid" : def->name, params);
    for (size_t i = 0; i < s->n_columns; i++) {
        if (strcmp(s->names[i], first) == 0) {
            return cq_err_set(err, CQ_EINVAL, 0, "remove the duplicate",
                              "indicator item %zu '%s' repeats an earlier item (column %s)",
                              item_no, copy, first);
        }
    }

    struct ind_item *it = &s->items[s->n_items];
    it->kind = def->kind;
    it->first_column = (uint16_t)s->n_columns;
    switch (def->kind) {
    case IND_SMA:
        rc = cq_sma_init(&it->u.sma, p[0]);
        break;
    case IND_EMA:
        rc = cq_ema_init(&it->u.ema, p[0]);
        break;
    case IND_RSI:
        rc = cq_rsi_init(&it->u.rsi, p[0]);
        break;
    case IND_MACD:
        rc = cq_macd_init(&it->u.macd, p[0], p[1], p[2]);
        break;
    case IND_ATR:
        rc = cq_atr_init(&it->u.atr, p[0]);
        break;
    case IND_BB:
        rc = cq_bbands_init(&it->u.bb, p[0], k);
        break;
    case IND_VWAP:
        rc = cq_vwap_init(&it->u.vwap, p[0]);
        break;
    }
    if (rc < 0) {
        return cq_err_set(err, -rc, 0, NULL, "indicator item %zu '%s': %s", item_no, copy,
                          cq_strerror(rc));
    }
    s->n_items++;

    switch (def->kind) {
    case IND_MACD:
        add_column(s, "macd", params);
        add_column(s, "macd_signal", params);
        add_column(s, "macd_hist", params);
        break;
    case IND_BB:
        add_column(s, "bb_mid", params);
        add_column(s, "bb_up", params);
        add_column(s, "bb_low", params);
        break;
    default:
        add_column(s, def->name, params);
        break;
    }
    return 0;
}

struct cq_ind_set *cq_ind_set_new(const char *spec, struct cq_err *err)
{
    static const char *const example =
        "write a comma-separated list, e.g. ema:12,ema:26,rsi:14,macd:12:26:9,atr:14,bb:20:2";
    struct cq_ind_set *s;
    size_t len;
    size_t item_no = 0;
    const char *p;

    if (spec == NULL || spec[0] == '\0') {
        cq_err_set(err, CQ_EINVAL, 0, example, "the indicator list is empty");
        return NULL;
    }
    len = strnlen(spec, SPEC_MAX + 1);
    if (len > SPEC_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "list at most 32 items (CQ_IND_SET_MAX)",
                   "the indicator list is longer than %d characters", SPEC_MAX);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "out of memory building the indicator set");
        return NULL;
    }
    p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t item_len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char item[ITEM_MAX + 1];

        item_no++;
        if (item_no > CQ_IND_SET_MAX) {
            cq_err_set(err, CQ_EINVAL, 0, "split the list over several runs",
                       "the indicator list has more than %d items (CQ_IND_SET_MAX)",
                       CQ_IND_SET_MAX);
            goto fail;
        }
        if (item_len == 0) {
            cq_err_set(err, CQ_EINVAL, 0, example,
                       "indicator item %zu is empty (a comma at the start or end, or two in a "
                       "row)",
                       item_no);
            goto fail;
        }
        if (item_len > ITEM_MAX) {
            cq_err_set(err, CQ_EINVAL, 0, example,
                       "indicator item %zu '%.20s...' is longer than %d characters", item_no, p,
                       ITEM_MAX);
            goto fail;
        }
        memcpy(item, p, item_len);
        item[item_len] = '\0';
        if (add_item(s, item, item_no, err) < 0) {
            goto fail;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    return s;

fail:
    cq_ind_set_free(s);
    return NULL;
}

void cq_ind_set_free(struct cq_ind_set *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n_items; i++) {
        struct ind_item *it = &s->items[i];
        switch (it->kind) {
        case IND_SMA:
            cq_sma_fini(&it->u.sma);
            break;
        case IND_BB:
            cq_bbands_fini(&it->u.bb);
            break;
        case IND_VWAP:
            cq_vwap_fini(&it->u.vwap);
            break;
        default:
            break;
        }
    }
    free(s);
}

size_t cq_ind_set_columns(const struct cq_ind_set *s)
{
    return s->n_columns;
}

const char *cq_ind_set_column_name(const struct cq_ind_set *s, size_t col)
{
    return col < s->n_columns ? s->names[col] : NULL;
}

/* Per column: the MACD line is defined (and shown) from the bar where the
 * slow EMA is warm; its signal and histogram once the signal EMA is. */
void cq_ind_set_update(struct cq_ind_set *s, const struct cq_ind_bar *bar)
{
    for (size_t i = 0; i < s->n_items; i++) {
        struct ind_item *it = &s->items[i];
        double *v = &s->values[it->first_column];
        bool *r = &s->ready[it->first_column];
        switch (it->kind) {
        case IND_SMA:
            cq_sma_update(&it->u.sma, bar->close);
            r[0] = cq_sma_ready(&it->u.sma);
            v[0] = cq_sma_value(&it->u.sma);
            break;
        case IND_EMA:
            cq_ema_update(&it->u.ema, bar->close);
            r[0] = cq_ema_ready(&it->u.ema);
            v[0] = it->u.ema.value;
            break;
        case IND_RSI:
            cq_rsi_update(&it->u.rsi, bar->close);
            r[0] = cq_rsi_ready(&it->u.rsi);
            v[0] = it->u.rsi.value;
            break;
        case IND_MACD:
            cq_macd_update(&it->u.macd, bar->close);
            r[0] = cq_ema_ready(&it->u.macd.slow);
            r[1] = r[2] = cq_macd_ready(&it->u.macd);
            v[0] = it->u.macd.line;
            v[1] = it->u.macd.signal.value;
            v[2] = it->u.macd.hist;
            break;
        case IND_ATR:
            cq_atr_update(&it->u.atr, bar);
            r[0] = cq_atr_ready(&it->u.atr);
            v[0] = it->u.atr.value;
            break;
        case IND_BB:
            cq_bbands_update(&it->u.bb, bar->close);
            r[0] = r[1] = r[2] = cq_bbands_ready(&it->u.bb);
            v[0] = it->u.bb.middle;
            v[1] = it->u.bb.upper;
            v[2] = it->u.bb.lower;
            break;
        case IND_VWAP:
            cq_vwap_update(&it->u.vwap, bar);
            r[0] = cq_vwap_ready(&it->u.vwap);
            v[0] = it->u.vwap.value;
            break;
        }
    }
}

bool cq_ind_set_value(const struct cq_ind_set *s, size_t col, double *out)
{
    if (col >= s->n_columns || !s->ready[col]) {
        return false;
    }
    *out = s->values[col];
    return true;
}
