/*
 * decimal.c — cq_dec, the exact decimal type for money: parse and print
 * exact decimal strings, add, multiply, divide, compare, and snap values to
 * an exchange's tick and step sizes.
 *
 * Representation: value = m / 10^scale with an int64 mantissa m and a scale
 * of 0..CQ_DEC_MAX_SCALE. Every int64 is a valid mantissa, INT64_MIN
 * included (only cq_dec_neg fails on it). Work that can leave int64 runs on
 * __int128 and is range-checked once, at the end: an operand brought to a
 * common scale is below 2^63 * 10^18 < 2^123 and a product of two mantissas
 * at most 2^126, so no intermediate can wrap. All rounding goes through
 * round_div(), which divides by a positive divisor and applies the mode to
 * the remainder; quotients of int64-sized operands take a 64-bit division.
 *
 * Hot paths (parse, format, add, cmp, quantize) allocate nothing, read no
 * locale and call no libc number routine: digits are handled by hand with a
 * power-of-ten table. Floating point appears only in cq_dec_to_double.
 *
 * Operands whose scale exceeds CQ_DEC_MAX_SCALE (built by hand with
 * cq_dec_make) are a caller bug: functions that can fail return -CQ_EINVAL
 * for them; cq_dec_cmp, cq_dec_normalize, cq_dec_format and
 * cq_dec_to_double still handle them exactly.
 */
#include <string.h>

#include "cq/decimal.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

#define I128_MAX ((i128)(((u128)1 << 127) - 1))
#define I64_FITS(x) ((x) >= INT64_MIN && (x) <= INT64_MAX)

/* 10^0 .. 10^19; 10^19 is the largest power of ten below 2^64. */
static const uint64_t pow10_u64[20] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    10000000000000000000ULL,
};

/* "00" "01" .. "99": format emits two digits per division. */
static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* 10^20 .. 10^38 (10^38 < 2^127) for dividing 128-bit products. */
#define P19 ((i128)10000000000000000000ULL)
static const i128 pow10_hi[19] = {
    P19 * 10ULL,
    P19 * 100ULL,
    P19 * 1000ULL,
    P19 * 10000ULL,
    P19 * 100000ULL,
    P19 * 1000000ULL,
    P19 * 10000000ULL,
    P19 * 100000000ULL,
    P19 * 1000000000ULL,
    P19 * 10000000000ULL,
    P19 * 100000000000ULL,
    P19 * 1000000000000ULL,
    P19 * 10000000000000ULL,
    P19 * 100000000000000ULL,
    P19 * 1000000000000000ULL,
    P19 * 10000000000000000ULL,
    P19 * 100000000000000000ULL,
    P19 * 1000000000000000000ULL,
    P19 * 10000000000000000000ULL,
};
#undef P19

/* 10^n for n <= 38. */
static inline i128 pow10_i128(unsigned n)
{
    return n < 20 ? (i128)pow10_u64[n] : pow10_hi[n - 20];
}

static inline bool scale_ok(cq_dec d)
{
    return d.scale <= CQ_DEC_MAX_SCALE;
}

static inline bool mode_ok(enum cq_dec_round mode)
{
    return (unsigned)mode <= (unsigned)CQ_ROUND_HALF_EVEN;
}

static inline unsigned max_scale(cq_dec a, cq_dec b)
{
    return a.scale > b.scale ? a.scale : b.scale;
}

/* |m| without overflow, INT64_MIN included. */
static inline uint64_t magnitude(int64_t m)
{
    return m < 0 ? 0 - (uint64_t)m : (uint64_t)m;
}

/* The mantissa of d at scale s >= d.scale (s - d.scale <= 18). */
static inline i128 scale_up(cq_dec d, unsigned s)
{
    return (i128)d.m * (i128)pow10_u64[s - d.scale];
}

/* *q = n / d rounded with mode; d > 0. -CQ_EINVAL when mode is
 * CQ_ROUND_EXACT (or unknown) and the division leaves a remainder. */
static int round_div(i128 n, i128 d, enum cq_dec_round mode, i128 *q_out)
{
    i128 q;
    i128 r;
    if (I64_FITS(n) && d <= INT64_MAX) {
        int64_t n64 = (int64_t)n;
        int64_t d64 = (int64_t)d;
        int64_t q64 = n64 / d64;
        q = q64;
        r = n64 - q64 * d64;
    } else {
        q = n / d;
        r = n - q * d;
    }
    if (r != 0) {
        i128 abs_r = r < 0 ? -r : r;
        bool away;
        switch (mode) {
        case CQ_ROUND_DOWN:
            away = false;
            break;
        case CQ_ROUND_UP:
            away = true;
            break;
        case CQ_ROUND_FLOOR:
            away = n < 0;
            break;
        case CQ_ROUND_CEIL:
            away = n > 0;
            break;
        case CQ_ROUND_HALF_EVEN:
            /* compare |r| with d / 2 without forming 2 * |r| */
            away = abs_r > d - abs_r || (abs_r == d - abs_r && (q & 1) != 0);
            break;
        case CQ_ROUND_EXACT:
        default:
            return -CQ_EINVAL;
        }
        if (away) {
            q += n < 0 ? -1 : 1;
        }
    }
    *q_out = q;
    return 0;
}

static inline int store(i128 m, unsigned scale, cq_dec *out)
{
    if (!I64_FITS(m)) {
        return -CQ_ETOOBIG;
    }
    out->m = (int64_t)m;
    out->scale = (uint8_t)scale;
    return 0;
}

/* ---- text ---------------------------------------------------------------- */

int cq_dec_parse(const char *s, size_t len, cq_dec *out)
{
    /* Past this magnitude one more digit is certainly out of int64 range;
     * below it mag * 10 + 9 cannot wrap a uint64. */
    const uint64_t safe = (UINT64_MAX - 9) / 10;
    const char *p;
    const char *end;
    bool neg = false;
    bool too_big = false;
    uint64_t mag = 0;
    uint64_t limit;
    unsigned scale = 0;
    unsigned zeros = 0; /* trailing fractional zeros read but not yet in mag */
    unsigned digit;

    if (s == NULL) {
        return -CQ_EPARSE;
    }
    if (len == (size_t)-1) {
        len = strlen(s);
    }
    p = s;
    end = s + len;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p == end || (unsigned)(unsigned char)*p - '0' > 9) {
        return -CQ_EPARSE;
    }
    while (p < end) {
        digit = (unsigned)(unsigned char)*p - '0';
        if (digit > 9) {
            break;
        }
        if (mag >= safe) {
            too_big = true; /* keep scanning: malformed text wins */
        } else {
            mag = mag * 10 + digit;
        }
        p++;
    }
    if (p < end) {
        if (*p != '.') {
            return -CQ_EPARSE;
        }
        p++;
        if (p == end) {
            return -CQ_EPARSE;
        }
        /* Fractional zeros are held back in `zeros` until a non-zero digit
         * follows, so that trailing ones can be dropped when the value
         * written at its full scale would not fit ("10.000000000000000000",
         * "92233720369.00000000"): the value, not the text, must fit. */
        while (p < end) {
            digit = (unsigned)(unsigned char)*p - '0';
            if (digit > 9) {
                return -CQ_EPARSE;
            }
            if (scale < CQ_DEC_MAX_SCALE) {
                scale++;
                if (digit == 0) {
                    zeros++;
                } else {
                    for (; zeros > 0 && !too_big; zeros--) {
                        if (mag >= safe) {
                            too_big = true;
                        } else {
                            mag *= 10;
                        }
                    }
                    if (mag >= safe) {
                        too_big = true;
                    } else {
                        mag = mag * 10 + digit;
                    }
                }
            } else if (digit != 0) {
                too_big = true;
            }
            p++;
        }
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (too_big || mag > limit) {
        return -CQ_ETOOBIG;
    }
    /* Put back as many held trailing zeros as fit: the scale written, or the
     * largest one below it that can hold the value exactly. */
    if (zeros > 0) {
        if (mag < pow10_u64[CQ_DEC_MAX_SCALE - zeros]) {
            mag *= pow10_u64[zeros]; /* below 10^18: fits */
            zeros = 0;
        } else {
            while (zeros > 0 && mag <= limit / 10) {
                mag *= 10;
                zeros--;
            }
        }
        scale -= zeros;
    }
    if (neg && mag != 0) {
        out->m = -(int64_t)(mag - 1) - 1;
    } else {
        out->m = (int64_t)mag;
    }
    out->scale = (uint8_t)scale;
    return 0;
}

/* Digits of u, right-aligned so they end at tmp + 20; none for 0. */
static unsigned u64_digits(uint64_t u, char tmp[20])
{
    char *p = tmp + 20;
    while (u >= 100) {
        unsigned i = (unsigned)(u % 100) * 2;
        u /= 100;
        p -= 2;
        memcpy(p, digit_pairs + i, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, digit_pairs + u * 2, 2);
    } else if (u > 0) {
        *--p = (char)('0' + u);
    }
    return (unsigned)(tmp + 20 - p);
}

/* Write d with exactly d.scale fractional digits; returns the length, or 0
 * (buf untouched) when the text and its NUL do not fit. */
static size_t format_into(cq_dec d, char *buf, size_t buf_len)
{
    char tmp[20];
    unsigned scale = d.scale;
    unsigned ndig = u64_digits(magnitude(d.m), tmp);
    const char *digits = tmp + 20 - ndig;
    size_t nint = ndig > scale ? ndig - scale : 1;
    size_t len = (d.m < 0) + nint + (scale > 0 ? 1 + (size_t)scale : 0);
    char *p = buf;

    if (buf == NULL || len >= buf_len) {
        return 0;
    }
    if (d.m < 0) {
        *p++ = '-';
    }
    if (ndig > scale) {
        memcpy(p, digits, nint);
        p += nint;
        digits += nint;
        ndig = scale;
    } else {
        *p++ = '0';
    }
    if (scale > 0) {
        *p++ = '.';
        memset(p, '0', scale - ndig);
        p += scale - ndig;
        memcpy(p, digits, ndig);
        p += ndig;
    }
    *p = '\0';
    return len;
}

char *cq_dec_format(cq_dec d, char *buf, size_t buf_len)
{
    if (format_into(d, buf, buf_len) == 0 && buf != NULL && buf_len > 0) {
        buf[0] = '\0'; /* never a truncated number */
    }
    return buf;
}

int cq_dec_format_scale(cq_dec d, unsigned scale, enum cq_dec_round mode, char *buf, size_t buf_len)
{
    cq_dec r;
    int rc = cq_dec_rescale(d, scale, mode, &r);
    if (rc < 0) {
        return rc;
    }
    if (format_into(r, buf, buf_len) == 0) {
        return -CQ_ETOOBIG;
    }
    return 0;
}

/* ---- scale --------------------------------------------------------------- */

int cq_dec_rescale(cq_dec d, unsigned scale, enum cq_dec_round mode, cq_dec *out)
{
    i128 q;
    int rc;
    if (!scale_ok(d) || !mode_ok(mode)) {
        return -CQ_EINVAL;
    }
    if (scale > CQ_DEC_MAX_SCALE) {
        return -CQ_ETOOBIG;
    }
    if (scale >= d.scale) {
        return store(scale_up(d, scale), scale, out);
    }
    rc = round_div(d.m, (i128)pow10_u64[d.scale - scale], mode, &q);
    if (rc < 0) {
        return rc;
    }
    return store(q, scale, out);
}

cq_dec cq_dec_normalize(cq_dec d)
{
    while (d.scale > 0 && d.m % 10 == 0) {
        d.m /= 10;
        d.scale--;
    }
    return d;
}

/* ---- arithmetic ---------------------------------------------------------- */

static int add_or_sub(cq_dec a, cq_dec b, bool subtract, cq_dec *out)
{
    unsigned s;
    i128 x;
    i128 y;
    if (!scale_ok(a) || !scale_ok(b)) {
        return -CQ_EINVAL;
    }
    if (a.scale == b.scale) {
        s = a.scale;
        x = a.m;
        y = b.m;
    } else {
        s = max_scale(a, b);
        x = scale_up(a, s);
        y = scale_up(b, s);
    }
    return store(subtract ? x - y : x + y, s, out);
}

int cq_dec_add(cq_dec a, cq_dec b, cq_dec *out)
{
    return add_or_sub(a, b, false, out);
}

int cq_dec_sub(cq_dec a, cq_dec b, cq_dec *out)
{
    return add_or_sub(a, b, true, out);
}

int cq_dec_mul(cq_dec a, cq_dec b, unsigned scale, enum cq_dec_round mode, cq_dec *out)
{
    i128 product;
    i128 r;
    unsigned product_scale;
    int rc;
    if (!scale_ok(a) || !scale_ok(b) || !mode_ok(mode)) {
        return -CQ_EINVAL;
    }
    if (scale > CQ_DEC_MAX_SCALE) {
        return -CQ_ETOOBIG;
    }
    /* |product| <= 2^126, exact at scale a.scale + b.scale <= 36 */
    product = (i128)a.m * (i128)b.m;
    product_scale = (unsigned)a.scale + b.scale;
    if (scale >= product_scale) {
        if (!I64_FITS(product)) {
            return -CQ_ETOOBIG;
        }
        r = product * (i128)pow10_u64[scale - product_scale];
    } else {
        rc = round_div(product, pow10_i128(product_scale - scale), mode, &r);
        if (rc < 0) {
            return rc;
        }
    }
    return store(r, scale, out);
}

int cq_dec_div(cq_dec a, cq_dec b, unsigned scale, enum cq_dec_round mode, cq_dec *out)
{
    /* q = a.m * 10^(scale + b.scale - a.scale) / b.m, exponent -18..36 */
    unsigned up;
    i128 n;
    i128 d;
    i128 q;
    int rc;
    if (!scale_ok(a) || !scale_ok(b) || !mode_ok(mode)) {
        return -CQ_EINVAL;
    }
    if (scale > CQ_DEC_MAX_SCALE) {
        return -CQ_ETOOBIG;
    }
    if (b.m == 0) {
        return -CQ_EINVAL;
    }
    up = scale + b.scale;
    if (up >= a.scale) {
        unsigned e = up - a.scale;
        n = (i128)a.m * (i128)pow10_u64[e > 18 ? 18 : e];
        if (e > 18) {
            /* If n would pass 2^127 the quotient (|b.m| <= 2^63) is at
             * least 2^64: it cannot fit, so stop before the overflow. */
            i128 k = (i128)pow10_u64[e - 18];
            i128 lim = I128_MAX / k;
            if (n > lim || n < -lim) {
                return -CQ_ETOOBIG;
            }
            n *= k;
        }
        d = b.m;
    } else {
        n = a.m;
        d = (i128)b.m * (i128)pow10_u64[a.scale - up];
    }
    if (d < 0) {
        n = -n;
        d = -d;
    }
    rc = round_div(n, d, mode, &q);
    if (rc < 0) {
        return rc;
    }
    return store(q, scale, out);
}

/* Sign of x * 10^k - y for x > 0. */
static int cmp_scaled(uint64_t x, unsigned k, uint64_t y)
{
    u128 t;
    if (k > 19) {
        return 1; /* x * 10^k >= 10^20 > any uint64 */
    }
    t = (u128)x * pow10_u64[k];
    return (t > y) - (t < y);
}

int cq_dec_cmp(cq_dec a, cq_dec b)
{
    int sa;
    int sb;
    int r;
    if (a.scale == b.scale) {
        return (a.m > b.m) - (a.m < b.m);
    }
    sa = cq_dec_sign(a);
    sb = cq_dec_sign(b);
    if (sa != sb || sa == 0) {
        return (sa > sb) - (sa < sb);
    }
    if (a.scale < b.scale) {
        r = cmp_scaled(magnitude(a.m), (unsigned)b.scale - a.scale, magnitude(b.m));
    } else {
        r = -cmp_scaled(magnitude(b.m), (unsigned)a.scale - b.scale, magnitude(a.m));
    }
    return sa > 0 ? r : -r;
}

int cq_dec_neg(cq_dec d, cq_dec *out)
{
    if (d.m == INT64_MIN) {
        return -CQ_ETOOBIG;
    }
    out->m = -d.m;
    out->scale = d.scale;
    return 0;
}

cq_dec cq_dec_min(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(b, a) < 0 ? b : a;
}

cq_dec cq_dec_max(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(b, a) > 0 ? b : a;
}

/* ---- exchange filters ---------------------------------------------------- */

bool cq_dec_is_multiple(cq_dec value, cq_dec step)
{
    unsigned s;
    i128 v;
    i128 st;
    if (!scale_ok(value) || !scale_ok(step) || step.m <= 0) {
        return false;
    }
    s = max_scale(value, step);
    v = scale_up(value, s);
    st = scale_up(step, s);
    if (I64_FITS(v) && st <= INT64_MAX) {
        return (int64_t)v % (int64_t)st == 0;
    }
    return v % st == 0;
}

int cq_dec_quantize(cq_dec value, cq_dec step, enum cq_dec_round mode, cq_dec *out)
{
    unsigned s;
    i128 v;
    i128 st;
    i128 q;
    int rc;
    if (!scale_ok(value) || !scale_ok(step) || !mode_ok(mode) || step.m <= 0) {
        return -CQ_EINVAL;
    }
    s = max_scale(value, step);
    v = scale_up(value, s);
    st = scale_up(step, s);
    rc = round_div(v, st, mode, &q);
    if (rc < 0) {
        return rc;
    }
    /* |q * st| <= |v| + st < 2^124 */
    return store(q * st, s, out);
}

/* ---- conversions --------------------------------------------------------- */

double cq_dec_to_double(cq_dec d)
{
    /* powers of ten up to 1e22 are exact doubles, so for |m| <= 2^53 this is
     * one correctly rounded division */
    static const double p10[19] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8, 1e9,
                                   1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};
    double x = (double)d.m;
    unsigned s = d.scale;
    while (s > 18) {
        x /= 1e18;
        s -= 18;
    }
    return x / p10[s];
}
