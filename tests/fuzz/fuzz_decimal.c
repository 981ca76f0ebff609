/*
 * fuzz_decimal.c — libFuzzer target for cq_dec (include/cq/decimal.h).
 *
 * Build and run from the repository root (clang with libFuzzer):
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L -Iinclude \
 *         server/core/decimal.c server/core/err.c tests/fuzz/fuzz_decimal.c \
 *         -o /tmp/fuzz_decimal
 *   mkdir -p /tmp/fuzz_decimal_corpus
 *   /tmp/fuzz_decimal /tmp/fuzz_decimal_corpus -max_total_time=30
 *
 * A seed helps: printf '\005\002%s' '24934.216|0.01' > /tmp/fuzz_decimal_corpus/tick
 *
 * Input layout: byte 0 picks the rounding mode (low 3 bits; 6 and 7 are
 * invalid modes on purpose) and, with its top bit set, "raw" mode; byte 1
 * the target scale (mod 20: 19 is out of range on purpose). Text mode: the
 * rest is two numbers separated by the first '|', each handed to
 * cq_dec_parse with its exact length (no NUL), so ASan sees any overread.
 * Raw mode: the rest gives two cq_dec bit patterns (8 bytes mantissa, 1 byte
 * scale), reaching the whole int64 range and invalid scales.
 *
 * Every check that fails calls abort(), which libFuzzer reports with the
 * input. Properties checked: parse -> format -> parse gives the same
 * mantissa and scale; normalize and widening rescale keep the value;
 * rounding lands on the side its mode promises; cmp is antisymmetric and
 * agrees with sub; add and mul commute; an exact division multiplies back;
 * quantize returns a multiple of the step, within one step of the value;
 * trailing fractional zeros appended to a well-formed number change
 * neither whether it parses nor its value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/decimal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool valid(cq_dec d)
{
    return d.scale <= CQ_DEC_MAX_SCALE;
}

static bool mode_valid(enum cq_dec_round mode)
{
    return (unsigned)mode <= (unsigned)CQ_ROUND_HALF_EVEN;
}

/* r is value rounded with mode (at any scale): is r on the promised side? */
static void check_direction(cq_dec value, cq_dec r, enum cq_dec_round mode)
{
    int c = cq_dec_cmp(r, value);
    switch (mode) {
    case CQ_ROUND_EXACT:
        CHECK(c == 0);
        break;
    case CQ_ROUND_DOWN: /* toward zero: |r| <= |value|, same side */
        CHECK(cq_dec_sign(value) >= 0 ? c <= 0 : c >= 0);
        CHECK(cq_dec_sign(r) * cq_dec_sign(value) >= 0);
        break;
    case CQ_ROUND_UP:
        CHECK(cq_dec_sign(value) >= 0 ? c >= 0 : c <= 0);
        break;
    case CQ_ROUND_FLOOR:
        CHECK(c <= 0);
        break;
    case CQ_ROUND_CEIL:
        CHECK(c >= 0);
        break;
    case CQ_ROUND_HALF_EVEN:
    default:
        break;
    }
}

/* One value on its own: text round trip, normalize, neg, rescale. */
static void check_one(cq_dec a, unsigned target, enum cq_dec_round mode)
{
    char buf[CQ_DEC_STR_MAX];
    char wide[300];
    cq_dec back;
    cq_dec r;
    cq_dec r2;
    int rc;

    /* format handles any scale given room, and never truncates */
    cq_dec_format(a, wide, sizeof(wide));
    CHECK(wide[0] != '\0');
    cq_dec_format(a, buf, sizeof(buf));
    if (valid(a)) {
        CHECK(strcmp(buf, wide) == 0);
        CHECK(strlen(buf) < CQ_DEC_STR_MAX);
        rc = cq_dec_parse(buf, strlen(buf), &back);
        CHECK(rc == 0);
        CHECK(back.m == a.m && back.scale == a.scale);
    } else {
        CHECK(buf[0] == '\0' || strcmp(buf, wide) == 0);
    }

    r = cq_dec_normalize(a);
    CHECK(cq_dec_cmp(r, a) == 0);
    CHECK(r.scale <= a.scale);
    CHECK(r.scale == 0 || r.m % 10 != 0);

    rc = cq_dec_neg(a, &r);
    CHECK(rc == 0 || a.m == INT64_MIN);
    if (rc == 0) {
        CHECK(cq_dec_cmp(r, CQ_DEC_ZERO) == -cq_dec_sign(a));
        CHECK(cq_dec_neg(r, &r2) == 0 && r2.m == a.m && r2.scale == a.scale);
    }

    (void)cq_dec_to_double(a);

    rc = cq_dec_rescale(a, target, mode, &r);
    if (!valid(a) || !mode_valid(mode)) {
        CHECK(rc == -CQ_EINVAL);
        return;
    }
    if (target > CQ_DEC_MAX_SCALE) {
        CHECK(rc == -CQ_ETOOBIG);
        return;
    }
    if (rc == 0) {
        CHECK(r.scale == target);
        check_direction(a, r, mode);
        if (target >= a.scale) {
            CHECK(cq_dec_cmp(r, a) == 0);
        }
        rc = cq_dec_format_scale(a, target, mode, buf, sizeof(buf));
        CHECK(rc == 0);
        CHECK(cq_dec_parse(buf, (size_t)-1, &back) == 0);
        CHECK(back.m == r.m && back.scale == r.scale);
    } else if (rc == -CQ_EINVAL) {
        CHECK(mode == CQ_ROUND_EXACT && target < a.scale);
    } else {
        CHECK(rc == -CQ_ETOOBIG);
        CHECK(target > a.scale); /* only widening can overflow */
    }
}

/* Two values: cmp, add/sub, mul, div, quantize. */
static void check_two(cq_dec a, cq_dec b, unsigned target, enum cq_dec_round mode)
{
    cq_dec r;
    cq_dec r2;
    cq_dec back;
    int rc;
    int rc2;
    int c = cq_dec_cmp(a, b);

    CHECK(c >= -1 && c <= 1);
    CHECK(cq_dec_cmp(b, a) == -c);
    CHECK(cq_dec_cmp(cq_dec_min(a, b), cq_dec_max(a, b)) <= 0);
    if (!valid(a) || !valid(b)) {
        CHECK(cq_dec_add(a, b, &r) == -CQ_EINVAL);
        CHECK(cq_dec_mul(a, b, 0, CQ_ROUND_DOWN, &r) == -CQ_EINVAL);
        CHECK(cq_dec_div(a, b, 0, CQ_ROUND_DOWN, &r) == -CQ_EINVAL);
        CHECK(cq_dec_quantize(a, b, CQ_ROUND_DOWN, &r) == -CQ_EINVAL);
        CHECK(!cq_dec_is_multiple(a, b));
        return;
    }

    rc = cq_dec_add(a, b, &r);
    rc2 = cq_dec_add(b, a, &r2);
    CHECK(rc == rc2);
    CHECK(rc == 0 || rc == -CQ_ETOOBIG);
    if (rc == 0) {
        CHECK(r.m == r2.m && r.scale == r2.scale);
        CHECK(r.scale == (a.scale > b.scale ? a.scale : b.scale));
        if (cq_dec_sub(r, b, &back) == 0) {
            CHECK(cq_dec_cmp(back, a) == 0);
        }
    }
    rc = cq_dec_sub(a, b, &r);
    CHECK(rc == 0 || rc == -CQ_ETOOBIG);
    if (rc == 0) {
        CHECK(cq_dec_sign(r) == c);
    }

    rc = cq_dec_mul(a, b, target, mode, &r);
    rc2 = cq_dec_mul(b, a, target, mode, &r2);
    CHECK(rc == rc2);
    if (rc == 0) {
        CHECK(r.m == r2.m && r.scale == r2.scale && r.scale == target);
        CHECK(cq_dec_sign(r) * cq_dec_sign(a) * cq_dec_sign(b) >= 0);
    } else if (!mode_valid(mode)) {
        CHECK(rc == -CQ_EINVAL);
    } else {
        CHECK(rc == -CQ_ETOOBIG || (rc == -CQ_EINVAL && mode == CQ_ROUND_EXACT));
    }

    rc = cq_dec_div(a, b, target, mode, &r);
    if (!mode_valid(mode)) {
        CHECK(rc == -CQ_EINVAL);
    } else if (target > CQ_DEC_MAX_SCALE) {
        CHECK(rc == -CQ_ETOOBIG);
    } else if (cq_dec_is_zero(b)) {
        CHECK(rc == -CQ_EINVAL);
    } else if (rc == 0) {
        CHECK(r.scale == target);
        CHECK(cq_dec_sign(r) * cq_dec_sign(a) * cq_dec_sign(b) >= 0);
        if (mode == CQ_ROUND_EXACT) {
            /* q * b == a exactly, so it prints at a's scale */
            CHECK(cq_dec_mul(r, b, a.scale, CQ_ROUND_EXACT, &back) == 0);
            CHECK(cq_dec_cmp(back, a) == 0);
        }
    } else {
        CHECK(rc == -CQ_ETOOBIG || (rc == -CQ_EINVAL && mode == CQ_ROUND_EXACT));
    }

    /* quantize a to the step |b| */
    {
        cq_dec step = b;
        cq_dec diff;
        if (b.m < 0 && b.m != INT64_MIN) {
            step.m = -b.m;
        }
        rc = cq_dec_quantize(a, step, mode, &r);
        if (step.m <= 0 || !mode_valid(mode)) {
            CHECK(rc == -CQ_EINVAL);
            CHECK(!cq_dec_is_multiple(a, step) || step.m > 0);
            return;
        }
        if (rc == 0) {
            CHECK(r.scale == (a.scale > step.scale ? a.scale : step.scale));
            CHECK(cq_dec_is_multiple(r, step));
            check_direction(a, r, mode);
            if (cq_dec_sub(r, a, &diff) == 0) {
                cq_dec abs_diff = diff;
                if (diff.m < 0) {
                    CHECK(cq_dec_neg(diff, &abs_diff) == 0);
                }
                CHECK(cq_dec_cmp(abs_diff, step) < 0);
            }
            if (mode == CQ_ROUND_EXACT) {
                CHECK(cq_dec_is_multiple(a, step));
            }
        } else if (rc == -CQ_EINVAL) {
            CHECK(mode == CQ_ROUND_EXACT && !cq_dec_is_multiple(a, step));
        } else {
            CHECK(rc == -CQ_ETOOBIG);
        }
    }
}

/* Trailing fractional zeros never change whether a value fits, nor the
 * value: text (well formed, parsed to rc/a) with `zeros` more fractional
 * zeros (and a '.' if it had none) parses the same way to an equal value
 * (issue 9.2: "92233720369.00000000" was refused while "92233720369" fit). */
static void check_trailing_zeros(const char *text, size_t len, int rc, cq_dec a, unsigned zeros)
{
    bool has_point = memchr(text, '.', len) != NULL;
    size_t len_z = len + (has_point ? 0 : 1) + zeros;
    char *z = malloc(len_z); /* exact length, no NUL: ASan sees overreads */
    cq_dec b;
    CHECK(z != NULL);
    memcpy(z, text, len);
    if (!has_point) {
        z[len] = '.';
    }
    memset(z + len_z - zeros, '0', zeros);
    int rc_z = cq_dec_parse(z, len_z, &b);
    free(z);
    CHECK(rc_z == rc);
    if (rc == 0) {
        CHECK(cq_dec_cmp(a, b) == 0);
        CHECK(b.scale >= a.scale); /* only zeros that cannot fit are dropped */
    }
}

static cq_dec raw_dec(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) {
        u = u << 8 | p[i];
    }
    int64_t m;
    memcpy(&m, &u, sizeof(m));
    return cq_dec_make(m, p[8]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum cq_dec_round mode;
    unsigned target;
    cq_dec a;
    cq_dec b;

    if (size < 2) {
        return 0;
    }
    mode = (enum cq_dec_round)(data[0] & 7);
    target = data[1] % (CQ_DEC_MAX_SCALE + 2);
    if (data[0] & 0x80) {
        if (size < 20) {
            return 0;
        }
        a = raw_dec(data + 2);
        b = raw_dec(data + 11);
        check_one(a, target, mode);
        check_one(b, target, mode);
        check_two(a, b, target, mode);
        return 0;
    }

    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    const char *bar = memchr(text, '|', len);
    size_t len_a = bar != NULL ? (size_t)(bar - text) : len;
    int rc_a = cq_dec_parse(text, len_a, &a);
    CHECK(rc_a == 0 || rc_a == -CQ_EPARSE || rc_a == -CQ_ETOOBIG);
    if (rc_a != -CQ_EPARSE) {
        check_trailing_zeros(text, len_a, rc_a, a, 1 + data[1] % 24);
    }
    if (rc_a != 0) {
        return 0;
    }
    check_one(a, target, mode);
    if (bar == NULL) {
        return 0;
    }
    int rc_b = cq_dec_parse(bar + 1, len - len_a - 1, &b);
    if (rc_b != 0) {
        return 0;
    }
    check_one(b, target, mode);
    check_two(a, b, target, mode);
    return 0;
}
