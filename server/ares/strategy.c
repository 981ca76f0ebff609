/*
 * strategy.c — the strategy registry, the parameter parser the config layer
 * validates CQ_STRATEGY / CQ_STRATEGY_PARAMS with, and strategy instances.
 *
 * Registry: a constant table of the built-in ops (one file each:
 * strategy_ema_cross.c, strategy_rsi_reversion.c). A new strategy is one
 * more file and one more line in `registry` below.
 *
 * Parameter spec ("fast=9,slow=21"), strict like the rest of the config:
 *   - items are name=value separated by single commas; no whitespace
 *     anywhere (it is rejected, not trimmed: a value that looks like it was
 *     pasted with spaces is more likely a mistake than a style, and the
 *     config already refuses spaces inside lists such as CQ_SYMBOLS);
 *   - an empty spec (or NULL) means "all defaults"; no empty items;
 *   - names are the parameter names exactly (lower case); an unknown one is
 *     reported with a did-you-mean and the list of the strategy's parameters;
 *   - a value is plain decimal notation: optional '-', digits, optionally
 *     '.' and more digits (no exponent, hex, inf, nan or '+'); an integer
 *     parameter takes digits only ("12", not "12.0"), like every whole-number
 *     config key;
 *   - each value within the parameter's inclusive [min, max];
 *   - each parameter set at most once;
 *   - then the strategy's cross-parameter rule (ops->check).
 * Parameters not named take their defaults. values_out must hold
 * ops->n_params doubles (CQ_STRATEGY_PARAMS_MAX always suffices) and is only
 * written on success.
 *
 * why is a predicate the caller puts after the key's name
 * ("CQ_STRATEGY_PARAMS has unknown parameter 'fsat'"); hint is the fix
 * ("did you mean fast? parameters of ema_cross: fast, slow").
 *
 * Instances: one allocation (the handle with the strategy's state inline),
 * made by cq_strategy_new; on_closed_candle never allocates.
 */
#include <ctype.h>
#include <math.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/strategy.h"
#include "cq/text.h"

/* Defined in strategy_<name>.c. */
extern const struct cq_strategy_ops cq_strategy__ema_cross;
extern const struct cq_strategy_ops cq_strategy__rsi_reversion;

/* The first entry is the default strategy. */
static const struct cq_strategy_ops *const registry[] = {
    &cq_strategy__ema_cross,
    &cq_strategy__rsi_reversion,
};

#define SPEC_MAX_BYTES 256     /* longest CQ_STRATEGY_PARAMS accepted */
#define SUGGEST_MAX_DISTANCE 3 /* like the config's did-you-mean */
#define ECHO_MAX 40            /* longest piece of input echoed in why */

const char *cq_side_name(enum cq_side side)
{
    switch (side) {
    case CQ_SIDE_BUY:
        return "BUY";
    case CQ_SIDE_SELL:
        return "SELL";
    }
    return "?";
}

/* ---- registry ---------------------------------------------------------------- */

const struct cq_strategy_ops *cq_strategy_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(registry); i++) {
        if (strcmp(registry[i]->name, name) == 0) {
            return registry[i];
        }
    }
    return NULL;
}

size_t cq_strategy_count(void)
{
    return CQ_ARRAY_LEN(registry);
}

const struct cq_strategy_ops *cq_strategy_at(size_t i)
{
    return i < CQ_ARRAY_LEN(registry) ? registry[i] : NULL;
}

/* ---- helpers ------------------------------------------------------------------- */

static void set_msg(char *buf, size_t len, const char *fmt, ...) CQ_PRINTF(3, 4);

static void set_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (buf == NULL || len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Is d close enough to suggest a candidate of length clen? Within
 * SUGGEST_MAX_DISTANCE and at most half the candidate (at least 1): "fsat"
 * is a typo of "fast" (2 of 4), "ab" is not (3 of 4), nor "x" of "low". */
static bool suggestible(size_t d, size_t clen)
{
    size_t half = clen / 2 > 0 ? clen / 2 : 1;
    return d <= SUGGEST_MAX_DISTANCE && d <= half;
}

/* "a, b, c" */
static void join_names(char *buf, size_t len, const char *(*name_at)(const void *, size_t),
                       const void *ctx, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "", name_at(ctx, i));
        if (w < 0) {
            return;
        }
        used += (size_t)w;
    }
}

static const char *strategy_name_at(const void *ctx, size_t i)
{
    CQ_UNUSED(ctx);
    return registry[i]->name;
}

static const char *param_name_at(const void *ctx, size_t i)
{
    const struct cq_strategy_ops *ops = ctx;
    return ops->params[i].name;
}

/* A value as the user would write it: "12", "29.5". */
static void format_value(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.15g", v); /* bounded: at most 22 characters, callers pass 32 */
}

/* "write a whole number from 1 to 1000" / "write a number from 1 to 99". */
static void range_hint(const struct cq_strategy_param *p, char *hint, size_t hint_len)
{
    char lo[32];
    char hi[32];
    char def[32];
    format_value(lo, sizeof(lo), p->min);
    format_value(hi, sizeof(hi), p->max);
    format_value(def, sizeof(def), p->default_value);
    set_msg(hint, hint_len, "write %s from %s to %s for %s (default %s)",
            p->integer ? "a whole number" : "a number", lo, hi, p->name, def);
}

/* "fast=12,slow=26" from values (or the defaults when values is NULL). */
static void describe_values(const struct cq_strategy_ops *ops, const double *values, char *buf,
                            size_t len)
{
    size_t used = 0;
    if (buf == NULL || len == 0) {
        return;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < ops->n_params && used < len; i++) {
        char v[32];
        format_value(v, sizeof(v), values != NULL ? values[i] : ops->params[i].default_value);
        int w =
            snprintf(buf + used, len - used, "%s%s=%s", i > 0 ? "," : "", ops->params[i].name, v);
        if (w < 0) {
            return;
        }
        used += (size_t)w;
    }
}

/* Plain decimal: -?[0-9]+(\.[0-9]+)? over s[0..len). *has_fraction tells
 * whether a '.' part is present. */
static bool is_plain_decimal(const char *s, size_t len, bool *has_fraction)
{
    size_t i = 0;
    size_t digits = 0;
    *has_fraction = false;
    if (i < len && s[i] == '-') {
        i++;
    }
    while (i < len && isdigit((unsigned char)s[i])) {
        i++;
        digits++;
    }
    if (digits == 0) {
        return false;
    }
    if (i < len && s[i] == '.') {
        size_t frac = 0;
        i++;
        while (i < len && isdigit((unsigned char)s[i])) {
            i++;
            frac++;
        }
        if (frac == 0) {
            return false;
        }
        *has_fraction = true;
    }
    return i == len;
}

/* Range, whole-number and finiteness of every value, then ops->check. The
 * same rules whether the values came from a spec or from a caller. */
static int check_values(const struct cq_strategy_ops *ops, const double *values, char *why,
                        size_t why_len, char *hint, size_t hint_len)
{
    for (size_t i = 0; i < ops->n_params; i++) {
        const struct cq_strategy_param *p = &ops->params[i];
        double v = values[i];
        char vs[32];
        format_value(vs, sizeof(vs), v);
        if (!isfinite(v)) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%s, which is not a number", p->name, vs);
            return -CQ_ECONFIG;
        }
        if (p->integer && v != floor(v)) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%s, which is not a whole number", p->name, vs);
            return -CQ_ECONFIG;
        }
        if (v < p->min || v > p->max) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%s, which is out of range", p->name, vs);
            return -CQ_ECONFIG;
        }
    }
    if (ops->check != NULL) {
        char w[256] = "";
        char h[256] = "";
        if (ops->check(values, w, sizeof(w), h, sizeof(h)) < 0) {
            set_msg(why, why_len, "%s", w);
            set_msg(hint, hint_len, "%s", h);
            return -CQ_ECONFIG;
        }
    }
    return 0;
}

static int unknown_strategy(const char *name, char *why, size_t why_len, char *hint,
                            size_t hint_len)
{
    char list[256];
    join_names(list, sizeof(list), strategy_name_at, NULL, CQ_ARRAY_LEN(registry));
    if (name == NULL || name[0] == '\0') {
        set_msg(why, why_len, "names no strategy");
        set_msg(hint, hint_len, "write one of %s (the default is %s)", list, registry[0]->name);
        return -CQ_ECONFIG;
    }
    size_t name_len = strlen(name);
    const struct cq_strategy_ops *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < CQ_ARRAY_LEN(registry); i++) {
        size_t d = cq_text_edit_distance_ci(name, name_len, registry[i]->name);
        if (suggestible(d, strlen(registry[i]->name)) && d < best_d) {
            best_d = d;
            best = registry[i];
        }
    }
    set_msg(why, why_len, "names unknown strategy '%.*s'", ECHO_MAX, name);
    if (best != NULL) {
        set_msg(hint, hint_len, "did you mean %s?%s strategies: %s", best->name,
                best_d == 0 ? " (names are lower case)" : "", list);
    } else {
        set_msg(hint, hint_len, "write one of %s", list);
    }
    return -CQ_ECONFIG;
}

static int unknown_param(const struct cq_strategy_ops *ops, const char *key, size_t key_len,
                         char *why, size_t why_len, char *hint, size_t hint_len)
{
    char list[256];
    const struct cq_strategy_param *best = NULL;
    size_t best_d = SIZE_MAX;
    join_names(list, sizeof(list), param_name_at, ops, ops->n_params);
    for (size_t i = 0; i < ops->n_params; i++) {
        size_t d = cq_text_edit_distance_ci(key, key_len, ops->params[i].name);
        if (suggestible(d, strlen(ops->params[i].name)) && d < best_d) {
            best_d = d;
            best = &ops->params[i];
        }
    }
    set_msg(why, why_len, "has unknown parameter '%.*s'",
            (int)(key_len < ECHO_MAX ? key_len : ECHO_MAX), key);
    if (best != NULL) {
        set_msg(hint, hint_len, "did you mean %s?%s parameters of %s: %s", best->name,
                best_d == 0 ? " (names are lower case)" : "", ops->name, list);
    } else {
        set_msg(hint, hint_len, "parameters of %s: %s", ops->name, list);
    }
    return -CQ_ECONFIG;
}

/* ---- parameter check --------------------------------------------------------- */

int cq_strategy_params_check(const char *name, const char *spec, double *values_out, char *why,
                             size_t why_len, char *hint, size_t hint_len)
{
    const struct cq_strategy_ops *ops = cq_strategy_find(name);
    double values[CQ_STRATEGY_PARAMS_MAX];
    bool seen[CQ_STRATEGY_PARAMS_MAX] = {false};
    char example[128];

    set_msg(why, why_len, "%s", "");
    set_msg(hint, hint_len, "%s", "");
    if (ops == NULL) {
        return unknown_strategy(name, why, why_len, hint, hint_len);
    }
    if (ops->n_params > CQ_STRATEGY_PARAMS_MAX) {
        /* A registry entry bigger than the header's bound: a build bug. */
        set_msg(why, why_len, "belongs to strategy %s, which declares %zu parameters (at most %d)",
                ops->name, ops->n_params, CQ_STRATEGY_PARAMS_MAX);
        return -CQ_ECONFIG;
    }
    for (size_t i = 0; i < ops->n_params; i++) {
        values[i] = ops->params[i].default_value;
    }
    describe_values(ops, NULL, example, sizeof(example));

    if (spec == NULL) {
        spec = "";
    }
    size_t spec_len = strlen(spec);
    if (spec_len > SPEC_MAX_BYTES) {
        set_msg(why, why_len, "is longer than %d characters", SPEC_MAX_BYTES);
        set_msg(hint, hint_len, "write name=value pairs separated by commas, e.g. %s", example);
        return -CQ_ECONFIG;
    }
    for (size_t i = 0; i < spec_len; i++) {
        if (isspace((unsigned char)spec[i])) {
            set_msg(why, why_len, "contains whitespace");
            set_msg(hint, hint_len,
                    "remove the spaces: write name=value pairs separated by "
                    "commas, e.g. %s",
                    example);
            return -CQ_ECONFIG;
        }
    }

    const char *s = spec;
    while (spec_len > 0) {
        const char *comma = strchr(s, ',');
        size_t item_len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', item_len);
        if (item_len == 0) {
            set_msg(why, why_len, "has an empty item");
            set_msg(hint, hint_len,
                    "remove the empty entry (two commas in a row, or a comma at either end)");
            return -CQ_ECONFIG;
        }
        if (eq == NULL) {
            set_msg(why, why_len, "has item '%.*s' without '='",
                    (int)(item_len < ECHO_MAX ? item_len : ECHO_MAX), s);
            set_msg(hint, hint_len, "write name=value pairs separated by commas, e.g. %s", example);
            return -CQ_ECONFIG;
        }
        size_t key_len = (size_t)(eq - s);
        const char *val = eq + 1;
        size_t val_len = item_len - key_len - 1;
        if (key_len == 0) {
            set_msg(why, why_len, "has item '%.*s' without a parameter name",
                    (int)(item_len < ECHO_MAX ? item_len : ECHO_MAX), s);
            set_msg(hint, hint_len, "write name=value pairs separated by commas, e.g. %s", example);
            return -CQ_ECONFIG;
        }
        size_t k = 0;
        while (k < ops->n_params && !(strlen(ops->params[k].name) == key_len &&
                                      memcmp(ops->params[k].name, s, key_len) == 0)) {
            k++;
        }
        if (k == ops->n_params) {
            return unknown_param(ops, s, key_len, why, why_len, hint, hint_len);
        }
        const struct cq_strategy_param *p = &ops->params[k];
        if (seen[k]) {
            set_msg(why, why_len, "sets %s more than once", p->name);
            set_msg(hint, hint_len, "set each parameter once");
            return -CQ_ECONFIG;
        }
        seen[k] = true;
        bool has_fraction = false;
        int echo = (int)(val_len < ECHO_MAX ? val_len : ECHO_MAX);
        if (val_len == 0) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has an empty value for %s", p->name);
            return -CQ_ECONFIG;
        }
        if (memchr(val, '=', val_len) != NULL) {
            set_msg(why, why_len, "has item '%.*s' with more than one '='",
                    (int)(item_len < ECHO_MAX ? item_len : ECHO_MAX), s);
            set_msg(hint, hint_len, "write name=value pairs separated by commas, e.g. %s", example);
            return -CQ_ECONFIG;
        }
        if (!is_plain_decimal(val, val_len, &has_fraction)) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%.*s, which is not a number", p->name, echo, val);
            return -CQ_ECONFIG;
        }
        if (p->integer && has_fraction) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%.*s, which is not a whole number", p->name, echo, val);
            return -CQ_ECONFIG;
        }
        char num[SPEC_MAX_BYTES + 1];
        memcpy(num, val, val_len);
        num[val_len] = '\0';
        double v = strtod(num, NULL); /* syntax checked above; huge -> inf, caught by range */
        if (!(v >= p->min && v <= p->max)) {
            range_hint(p, hint, hint_len);
            set_msg(why, why_len, "has %s=%.*s, which is out of range", p->name, echo, val);
            return -CQ_ECONFIG;
        }
        values[k] = v;
        if (comma == NULL) {
            break;
        }
        s = comma + 1;
    }

    int rc = check_values(ops, values, why, why_len, hint, hint_len);
    if (rc < 0) {
        return rc;
    }
    if (values_out != NULL) {
        memcpy(values_out, values, ops->n_params * sizeof(values[0]));
    }
    return 0;
}

/* ---- instances ----------------------------------------------------------------- */

struct cq_strategy {
    const struct cq_strategy_ops *ops; /* borrowed: the registry is static */
    double values[CQ_STRATEGY_PARAMS_MAX];
    alignas(max_align_t) unsigned char state[]; /* ops->state_size bytes */
};

struct cq_strategy *cq_strategy_new(const struct cq_strategy_ops *ops, const double *values,
                                    struct cq_err *err)
{
    double v[CQ_STRATEGY_PARAMS_MAX];
    char why[256];
    char hint[256];
    if (ops == NULL || ops->n_params > CQ_STRATEGY_PARAMS_MAX || ops->init == NULL ||
        ops->on_closed_candle == NULL || ops->warm == NULL || ops->warmup_bars == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "pass an entry of the registry (cq_strategy_find)",
                   "strategy ops missing or incomplete");
        return NULL;
    }
    for (size_t i = 0; i < ops->n_params; i++) {
        v[i] = values != NULL ? values[i] : ops->params[i].default_value;
    }
    if (check_values(ops, v, why, sizeof(why), hint, sizeof(hint)) < 0) {
        cq_err_set(err, CQ_ECONFIG, 0, hint, "strategy %s %s", ops->name, why);
        return NULL;
    }
    struct cq_strategy *s = calloc(1, sizeof(*s) + ops->state_size);
    if (s == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, "free memory and try again", "out of memory for strategy %s",
                   ops->name);
        return NULL;
    }
    s->ops = ops;
    memcpy(s->values, v, ops->n_params * sizeof(v[0]));
    int rc = ops->init(s->state, s->values);
    if (rc < 0) {
        cq_err_set(err, -rc, 0, NULL, "strategy %s failed to start: %s", ops->name,
                   cq_strerror(rc));
        free(s);
        return NULL;
    }
    return s;
}

void cq_strategy_free(struct cq_strategy *s)
{
    if (s == NULL) {
        return;
    }
    if (s->ops->fini != NULL) {
        s->ops->fini(s->state);
    }
    free(s);
}

int cq_strategy_on_closed_candle(struct cq_strategy *s, const struct cq_ind_bar *bar,
                                 struct cq_strategy_signal *sig)
{
    return s->ops->on_closed_candle(s->state, bar, sig);
}

bool cq_strategy_warm(const struct cq_strategy *s)
{
    return s->ops->warm(s->state);
}

size_t cq_strategy_warmup_bars(const struct cq_strategy *s)
{
    return s->ops->warmup_bars(s->values);
}

const struct cq_strategy_ops *cq_strategy_ops_of(const struct cq_strategy *s)
{
    return s->ops;
}

void cq_strategy_describe(const struct cq_strategy *s, char *buf, size_t len)
{
    describe_values(s->ops, s->values, buf, len);
}
