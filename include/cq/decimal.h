/*
 * decimal.h — cq_dec, the only way coinquant holds money.
 *
 * A value is mantissa / 10^scale with an int64 mantissa and a scale of 0 to
 * CQ_DEC_MAX_SCALE. Prices, quantities, balances and fees are parsed from and
 * printed to exact decimal strings; intermediate products go through
 * __int128 so no step silently loses digits. Exchange filters (tick size,
 * step size, min notional) use these functions identically in the
 * simulator, the backtester and the live path.
 *
 * Every function is pure and reentrant (any thread). Functions that can fail
 * return 0 or a negative CQ_E* code: -CQ_EPARSE for malformed text,
 * -CQ_ETOOBIG for a result that does not fit (overflow or scale >
 * CQ_DEC_MAX_SCALE), -CQ_EINVAL for division by zero or a zero/negative step,
 * and -CQ_EAGAIN is never used. Results are written only on success.
 */
#ifndef CQ_DECIMAL_H
#define CQ_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"

#define CQ_DEC_MAX_SCALE 18
/* Longest text cq_dec_format can produce: sign, 19 digits, point, NUL. */
#define CQ_DEC_STR_MAX 48

typedef struct cq_dec {
    int64_t m;     /* mantissa */
    uint8_t scale; /* digits after the point, 0..CQ_DEC_MAX_SCALE */
} cq_dec;

enum cq_dec_round {
    CQ_ROUND_EXACT,    /* fail with -CQ_EINVAL if digits would be lost */
    CQ_ROUND_DOWN,     /* toward zero (truncate) */
    CQ_ROUND_UP,       /* away from zero */
    CQ_ROUND_FLOOR,    /* toward -infinity */
    CQ_ROUND_CEIL,     /* toward +infinity */
    CQ_ROUND_HALF_EVEN /* to nearest, ties to even */
};

static inline cq_dec cq_dec_make(int64_t mantissa, unsigned scale)
{
    cq_dec d = {mantissa, (uint8_t)scale};
    return d;
}

#define CQ_DEC_ZERO ((cq_dec){0, 0})

/* Parse exactly "[-]digits[.digits]" (at least one digit before the point;
 * "1." and ".5" are rejected; no exponent, no spaces, no '+'). len may be
 * (size_t)-1 for a NUL-terminated string. The scale is the number of
 * fractional digits written ("0.10000000" has scale 8); more than
 * CQ_DEC_MAX_SCALE fractional digits is -CQ_ETOOBIG unless every digit past
 * the 18th is zero (then they are dropped). When the value at the written
 * scale does not fit an int64 mantissa but fits once trailing fractional
 * zeros are dropped, as few of them are dropped as needed
 * ("92233720369.00000000" parses to scale 7, "10.000000000000000000" to
 * scale 17): -CQ_ETOOBIG means the value itself cannot be held exactly. */
int cq_dec_parse(const char *s, size_t len, cq_dec *out) CQ_WUR;

/* Exact text with exactly d.scale fractional digits ("0.10000000", "-5",
 * "12.30"). buf must hold CQ_DEC_STR_MAX bytes. Returns buf. */
char *cq_dec_format(cq_dec d, char *buf, size_t buf_len);

/* Text with exactly `scale` fractional digits (Binance prints 8), rounding
 * with mode when that drops digits. Returns 0 or a negative code. */
int cq_dec_format_scale(cq_dec d, unsigned scale, enum cq_dec_round mode, char *buf,
                        size_t buf_len) CQ_WUR;

/* Same value at a new scale, rounding with mode when digits drop. */
int cq_dec_rescale(cq_dec d, unsigned scale, enum cq_dec_round mode, cq_dec *out) CQ_WUR;

/* Drop trailing fractional zeros ("1.2300" -> "1.23"). Never fails. */
cq_dec cq_dec_normalize(cq_dec d);

/* a + b and a - b at max(a.scale, b.scale). */
int cq_dec_add(cq_dec a, cq_dec b, cq_dec *out) CQ_WUR;
int cq_dec_sub(cq_dec a, cq_dec b, cq_dec *out) CQ_WUR;

/* a * b computed exactly in 128 bits, then brought to `scale` with mode. */
int cq_dec_mul(cq_dec a, cq_dec b, unsigned scale, enum cq_dec_round mode, cq_dec *out) CQ_WUR;

/* a / b at `scale` with mode. b == 0 is -CQ_EINVAL. */
int cq_dec_div(cq_dec a, cq_dec b, unsigned scale, enum cq_dec_round mode, cq_dec *out) CQ_WUR;

/* -1, 0, 1; compares values, not representations (1.0 == 1). */
int cq_dec_cmp(cq_dec a, cq_dec b);
static inline bool cq_dec_is_zero(cq_dec d)
{
    return d.m == 0;
}
static inline int cq_dec_sign(cq_dec d)
{
    return (d.m > 0) - (d.m < 0);
}
int cq_dec_neg(cq_dec d, cq_dec *out) CQ_WUR; /* fails only for INT64_MIN */
cq_dec cq_dec_min(cq_dec a, cq_dec b);
cq_dec cq_dec_max(cq_dec a, cq_dec b);

/* ---- exchange filters ---------------------------------------------------- */

/* Is value an exact multiple of step (step > 0)? */
bool cq_dec_is_multiple(cq_dec value, cq_dec step);

/* Snap value to a multiple of step (step > 0) with mode: quantity to step
 * size rounds DOWN; a BUY price to tick rounds FLOOR and a SELL price CEIL
 * (toward the passive side). The result has max(value.scale, step.scale). */
int cq_dec_quantize(cq_dec value, cq_dec step, enum cq_dec_round mode, cq_dec *out) CQ_WUR;

/* ---- conversions for display and statistics only (never for money math) --- */

double cq_dec_to_double(cq_dec d);

#endif /* CQ_DECIMAL_H */
