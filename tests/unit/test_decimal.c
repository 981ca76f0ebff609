/*
 * test_decimal.c — cq_dec: the parse accept/reject table, format and its
 * round trip, every rounding mode in format_scale, rescale, mul, div and
 * quantize, add/sub/mul/div overflow, cmp across scales, the exchange
 * filters on BTCUSDT-like tick and step sizes, a seeded randomized
 * cross-check against a plain __int128 reference, and format(parse(s)) == s
 * on real Binance kline strings from ../shared/data.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/decimal.h"
#include "support/shared_data.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;
#define REF_I128_MAX ((i128)(~(u128)0 >> 1))

#ifdef CQ_SHARED_DIR
#define KLINES_PATH CQ_SHARED_DIR "/data/klines/BTCUSDT-1m.csv"
#else
#define KLINES_PATH NULL
#endif

#define EX CQ_ROUND_EXACT
#define DN CQ_ROUND_DOWN
#define UP CQ_ROUND_UP
#define FL CQ_ROUND_FLOOR
#define CE CQ_ROUND_CEIL
#define HE CQ_ROUND_HALF_EVEN

static const char *const mode_names[] = {"EXACT", "DOWN", "UP", "FLOOR", "CEIL", "HALF_EVEN"};

/* Parse a literal the table relies on; a typo in a table fails loudly. */
static cq_dec dec(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    int rc = cq_dec_parse(s, (size_t)-1, &d);
    cr_assert_eq(rc, 0, "table literal \"%s\" does not parse: %s", s, cq_strerror(rc));
    return d;
}

static const char *fmt(cq_dec d, char buf[CQ_DEC_STR_MAX])
{
    return cq_dec_format(d, buf, CQ_DEC_STR_MAX);
}

/* Checks one result row: rc, and on success the exact text (value and
 * scale). On failure *out must be untouched (the caller presets it). */
static void expect_result(const char *what, int rc, cq_dec out, int want_rc, const char *want)
{
    char buf[CQ_DEC_STR_MAX];
    cr_expect_eq(rc, want_rc, "%s: rc %d (%s), want %d (%s)", what, rc, cq_strerror(rc), want_rc,
                 cq_strerror(want_rc));
    if (rc == 0 && want_rc == 0) {
        cr_expect_str_eq(fmt(out, buf), want, "%s: got %s, want %s", what, buf, want);
    }
    if (rc < 0) {
        cr_expect(out.m == 777 && out.scale == 3, "%s: result written on failure", what);
    }
}

static const cq_dec sentinel = {777, 3};

/* ---- parse --------------------------------------------------------------- */

struct parse_row {
    const char *in;
    int rc;
    int64_t m;
    unsigned scale;
    const char *canon; /* format(parse(in)); NULL: in itself */
};

static const struct parse_row parse_rows[] = {
    {"0", 0, 0, 0, NULL},
    {"-0", 0, 0, 0, "0"},
    {"-0.5", 0, -5, 1, NULL},
    {"0.10000000", 0, 10000000, 8, NULL},
    {"24934.2", 0, 249342, 1, NULL},
    {"24934.20000000", 0, 2493420000000, 8, NULL},
    {"293.13711", 0, 29313711, 5, NULL},
    {"2805318.0", 0, 28053180, 1, NULL},
    {"0.00141342", 0, 141342, 8, NULL},
    {"-12.30", 0, -1230, 2, NULL},
    {"9223372036854775807", 0, INT64_MAX, 0, NULL},
    {"-9223372036854775808", 0, INT64_MIN, 0, NULL},
    {"922337203685477580.7", 0, INT64_MAX, 1, NULL},
    {"9.223372036854775807", 0, INT64_MAX, 18, NULL},
    {"-9.223372036854775808", 0, INT64_MIN, 18, NULL},
    {"0.000000000000000001", 0, 1, 18, NULL},
    {"1.000000000000000000", 0, 1000000000000000000, 18, NULL},
    /* more than 18 fractional digits: zeros are dropped, anything else is
     * too precise */
    {"0.1234567890123456780", 0, 123456789012345678, 18, "0.123456789012345678"},
    {"1.00000000000000000000000000", 0, 1000000000000000000, 18, "1.000000000000000000"},
    {"0.0000000000000000000", 0, 0, 18, "0.000000000000000000"},
    {"0.1234567890123456789", -CQ_ETOOBIG, 0, 0, NULL},
    {"0.0000000000000000001", -CQ_ETOOBIG, 0, 0, NULL},
    {"1.0000000000000000000000001", -CQ_ETOOBIG, 0, 0, NULL},
    /* leading zeros: the documented grammar is digits, so they are accepted
     * and printed canonically */
    {"00012.5", 0, 125, 1, "12.5"},
    {"000", 0, 0, 0, "0"},
    {"-00.50", 0, -50, 2, "-0.50"},
    {"00000000000000000000000000001", 0, 1, 0, "1"},
    /* out of range */
    {"9223372036854775808", -CQ_ETOOBIG, 0, 0, NULL},
    {"-9223372036854775809", -CQ_ETOOBIG, 0, 0, NULL},
    {"922337203685477580.8", -CQ_ETOOBIG, 0, 0, NULL},
    {"9.223372036854775808", -CQ_ETOOBIG, 0, 0, NULL},
    /* the value fits once trailing fractional zeros go (issue 9.2): as few
     * are dropped as needed, the rest of the written scale is kept */
    {"10.000000000000000000", 0, 1000000000000000000, 17, "10.00000000000000000"},
    {"92233720369.00000000", 0, 922337203690000000, 7, "92233720369.0000000"},
    {"9223372036854775807.000", 0, INT64_MAX, 0, "9223372036854775807"},
    {"-9223372036854775808.0", 0, INT64_MIN, 0, "-9223372036854775808"},
    {"922337203685477580.70", 0, INT64_MAX, 1, "922337203685477580.7"},
    {"100000000000.00000000", 0, 1000000000000000000, 7, "100000000000.0000000"},
    {"999999999999.00000000", 0, 999999999999000000, 6, "999999999999.000000"},
    {"9223372036854775807.0000000000000000000000", 0, INT64_MAX, 0, "9223372036854775807"},
    {"1.100000000000000000", 0, 1100000000000000000, 18, NULL},
    {"10.100000000000000000", 0, 1010000000000000000, 17, "10.10000000000000000"},
    /* still too big: the value itself does not fit */
    {"9223372036854775808.000", -CQ_ETOOBIG, 0, 0, NULL},
    {"92233720368.54775808", -CQ_ETOOBIG, 0, 0, NULL},
    {"10.000000000000000001", -CQ_ETOOBIG, 0, 0, NULL},
    {"18446744073709551615", -CQ_ETOOBIG, 0, 0, NULL},
    {"18446744073709551616", -CQ_ETOOBIG, 0, 0, NULL}, /* 2^64: must not wrap */
    {"36893488147419103232", -CQ_ETOOBIG, 0, 0, NULL},
    {"99999999999999999999999999999999", -CQ_ETOOBIG, 0, 0, NULL},
    {"1844674407370955159.12", -CQ_ETOOBIG, 0, 0, NULL}, /* big via fraction */
    {"184467440737095515.9", 0, 1844674407370955159, 1, NULL},
    /* malformed */
    {"", -CQ_EPARSE, 0, 0, NULL},
    {"-", -CQ_EPARSE, 0, 0, NULL},
    {"1e5", -CQ_EPARSE, 0, 0, NULL},
    {"1E5", -CQ_EPARSE, 0, 0, NULL},
    {"1.5e", -CQ_EPARSE, 0, 0, NULL},
    {"1.", -CQ_EPARSE, 0, 0, NULL},
    {"-1.", -CQ_EPARSE, 0, 0, NULL},
    {".5", -CQ_EPARSE, 0, 0, NULL},
    {"-.5", -CQ_EPARSE, 0, 0, NULL},
    {".", -CQ_EPARSE, 0, 0, NULL},
    {"+1", -CQ_EPARSE, 0, 0, NULL},
    {" 1", -CQ_EPARSE, 0, 0, NULL},
    {"1 ", -CQ_EPARSE, 0, 0, NULL},
    {"\t1", -CQ_EPARSE, 0, 0, NULL},
    {"1\n", -CQ_EPARSE, 0, 0, NULL},
    {"--1", -CQ_EPARSE, 0, 0, NULL},
    {"1-", -CQ_EPARSE, 0, 0, NULL},
    {"1.2.3", -CQ_EPARSE, 0, 0, NULL},
    {"1,5", -CQ_EPARSE, 0, 0, NULL},
    {"1.-5", -CQ_EPARSE, 0, 0, NULL},
    {"12.3a", -CQ_EPARSE, 0, 0, NULL},
    {"0x10", -CQ_EPARSE, 0, 0, NULL},
    {"NaN", -CQ_EPARSE, 0, 0, NULL},
    {"inf", -CQ_EPARSE, 0, 0, NULL},
    {"\"1\"", -CQ_EPARSE, 0, 0, NULL},
    /* malformed wins over too big: the text is wrong before it is large */
    {"99999999999999999999999x", -CQ_EPARSE, 0, 0, NULL},
    {"0.1234567890123456789x", -CQ_EPARSE, 0, 0, NULL},
};

Test(decimal, parse_table)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(parse_rows); i++) {
        const struct parse_row *r = &parse_rows[i];
        cq_dec d = sentinel;
        int rc = cq_dec_parse(r->in, (size_t)-1, &d);
        cr_expect_eq(rc, r->rc, "parse \"%s\": rc %d (%s), want %d", r->in, rc, cq_strerror(rc),
                     r->rc);
        if (rc == 0 && r->rc == 0) {
            cr_expect(d.m == r->m && d.scale == r->scale,
                      "parse \"%s\": got m=%" PRId64 " scale=%u, want m=%" PRId64 " scale=%u",
                      r->in, d.m, d.scale, r->m, r->scale);
        }
        if (rc < 0) {
            cr_expect(d.m == sentinel.m && d.scale == sentinel.scale,
                      "parse \"%s\": result written on failure", r->in);
        }
    }
}

/* Issue 9.2: trailing fractional zeros never decide whether a value fits.
 * For boundary values at every scale, the text with 1..24 more fractional
 * zeros parses (exactly when the plain text does) to an equal value, keeping
 * as much of the written scale as the mantissa can hold. */
Test(decimal, trailing_zeros_never_change_fit_or_value)
{
    static const int64_t ms[] = {0,
                                 1,
                                 -1,
                                 7,
                                 10,
                                 922337203685477580,
                                 922337203685477581,
                                 INT64_MAX,
                                 INT64_MIN,
                                 INT64_MAX / 10,
                                 -(INT64_MAX / 10),
                                 92233720369LL,
                                 999999999999999999LL,
                                 100000000000000000LL};
    for (size_t i = 0; i < CQ_ARRAY_LEN(ms); i++) {
        for (unsigned scale = 0; scale <= CQ_DEC_MAX_SCALE; scale++) {
            char plain[CQ_DEC_STR_MAX];
            char padded[CQ_DEC_STR_MAX + 32];
            cq_dec a;
            cq_dec b;
            cq_dec_format(cq_dec_make(ms[i], scale), plain, sizeof(plain));
            cr_assert_eq(cq_dec_parse(plain, (size_t)-1, &a), 0, "%s", plain);
            for (unsigned zeros = 1; zeros <= 24; zeros++) {
                int n = snprintf(padded, sizeof(padded), "%s%s%.*s", plain, scale == 0 ? "." : "",
                                 (int)zeros, "000000000000000000000000");
                cr_assert(n > 0 && (size_t)n < sizeof(padded));
                int rc = cq_dec_parse(padded, (size_t)-1, &b);
                cr_expect_eq(rc, 0, "\"%s\" fits but \"%s\" gives %s", plain, padded,
                             cq_strerror(rc));
                if (rc == 0) {
                    cr_expect_eq(cq_dec_cmp(a, b), 0, "\"%s\" and \"%s\" differ", plain, padded);
                    unsigned want =
                        scale + zeros > CQ_DEC_MAX_SCALE ? CQ_DEC_MAX_SCALE : scale + zeros;
                    /* the written scale is kept unless the mantissa cannot hold it */
                    cq_dec wide;
                    if (cq_dec_rescale(a, want, CQ_ROUND_EXACT, &wide) == 0) {
                        cr_expect_eq(b.scale, want, "\"%s\": scale %u, want %u", padded, b.scale,
                                     want);
                    } else {
                        cr_expect(b.scale < want, "\"%s\": scale %u", padded, b.scale);
                    }
                }
            }
        }
    }
}

Test(decimal, format_roundtrip_of_accepted)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(parse_rows); i++) {
        const struct parse_row *r = &parse_rows[i];
        char buf[CQ_DEC_STR_MAX];
        cq_dec d;
        cq_dec again;
        if (r->rc != 0) {
            continue;
        }
        cr_assert_eq(cq_dec_parse(r->in, (size_t)-1, &d), 0, "%s", r->in);
        const char *want = r->canon != NULL ? r->canon : r->in;
        cr_expect_str_eq(fmt(d, buf), want, "format(parse(\"%s\")) = \"%s\", want \"%s\"", r->in,
                         buf, want);
        cr_expect_eq(cq_dec_parse(buf, (size_t)-1, &again), 0, "%s", buf);
        cr_expect(again.m == d.m && again.scale == d.scale, "re-parse of \"%s\" differs", buf);
    }
}

Test(decimal, parse_honours_len)
{
    cq_dec d = sentinel;
    /* a field inside a larger buffer, as a JSON or CSV decoder passes it */
    const char line[] = "24934.2,293.13711";
    cr_expect_eq(cq_dec_parse(line, 7, &d), 0);
    cr_expect(d.m == 249342 && d.scale == 1);
    cr_expect_eq(cq_dec_parse(line + 8, 9, &d), 0);
    cr_expect(d.m == 29313711 && d.scale == 5);
    cr_expect_eq(cq_dec_parse(line, 8, &d), -CQ_EPARSE, "the comma is not part of a number");
    cr_expect_eq(cq_dec_parse(line, 0, &d), -CQ_EPARSE, "empty field");
    cr_expect_eq(cq_dec_parse("1.5", 2, &d), -CQ_EPARSE, "\"1.\" after cutting");
    /* an embedded NUL inside len is not the end of the number */
    static const char embedded_nul[3] = {'1', '\0', '5'};
    cr_expect_eq(cq_dec_parse(embedded_nul, sizeof(embedded_nul), &d), -CQ_EPARSE);
    cr_expect_eq(cq_dec_parse(NULL, 0, &d), -CQ_EPARSE);
}

/* ---- format -------------------------------------------------------------- */

Test(decimal, format_table)
{
    static const struct {
        int64_t m;
        unsigned scale;
        const char *want;
    } rows[] = {
        {0, 0, "0"},
        {0, 2, "0.00"},
        {5, 0, "5"},
        {-5, 0, "-5"},
        {1230, 2, "12.30"},
        {10000000, 8, "0.10000000"},
        {-5, 2, "-0.05"},
        {-12345, 5, "-0.12345"},
        {123456, 5, "1.23456"},
        {1, 18, "0.000000000000000001"},
        {INT64_MAX, 0, "9223372036854775807"},
        {INT64_MIN, 0, "-9223372036854775808"},
        {INT64_MIN, 18, "-9.223372036854775808"},
        {INT64_MIN, 19, "-0.9223372036854775808"}, /* invalid scale: still exact */
        {INT64_MAX, 18, "9.223372036854775807"},
        {100, 2, "1.00"},
        {99, 2, "0.99"},
        {1000000000000000000, 0, "1000000000000000000"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char buf[CQ_DEC_STR_MAX];
        char *ret = cq_dec_format(cq_dec_make(rows[i].m, rows[i].scale), buf, sizeof(buf));
        cr_expect_eq(ret, buf);
        cr_expect_str_eq(buf, rows[i].want, "m=%" PRId64 " scale=%u: got %s", rows[i].m,
                         rows[i].scale, buf);
    }
}

Test(decimal, format_never_truncates)
{
    char buf[CQ_DEC_STR_MAX];
    cq_dec d = dec("-24934.20");
    /* "-24934.20" is 9 chars: 10 bytes fit, 9 do not */
    cr_expect_str_eq(cq_dec_format(d, buf, 10), "-24934.20");
    memset(buf, 'x', sizeof(buf));
    cr_expect_str_eq(cq_dec_format(d, buf, 9), "", "a cut number would be a wrong number");
    cr_expect_eq(cq_dec_format_scale(d, 2, EX, buf, 9), -CQ_ETOOBIG);
    cr_expect_eq(cq_dec_format_scale(d, 2, EX, buf, 10), 0);
    cr_expect_str_eq(buf, "-24934.20");
    /* the longest text of a valid value fits CQ_DEC_STR_MAX */
    cr_expect_str_eq(cq_dec_format(cq_dec_make(INT64_MIN, 18), buf, CQ_DEC_STR_MAX),
                     "-9.223372036854775808");
}

struct fs_row {
    const char *in;
    unsigned scale;
    enum cq_dec_round mode;
    int rc;
    const char *want;
};

Test(decimal, format_scale_every_mode)
{
    static const struct fs_row rows[] = {
        /* a tie at the dropped digit */
        {"1.005", 2, EX, -CQ_EINVAL, NULL},
        {"1.005", 2, DN, 0, "1.00"},
        {"1.005", 2, UP, 0, "1.01"},
        {"1.005", 2, FL, 0, "1.00"},
        {"1.005", 2, CE, 0, "1.01"},
        {"1.005", 2, HE, 0, "1.00"},
        {"1.015", 2, HE, 0, "1.02"},
        {"1.0049", 2, HE, 0, "1.00"},
        {"1.0051", 2, HE, 0, "1.01"},
        {"-1.005", 2, EX, -CQ_EINVAL, NULL},
        {"-1.005", 2, DN, 0, "-1.00"},
        {"-1.005", 2, UP, 0, "-1.01"},
        {"-1.005", 2, FL, 0, "-1.01"},
        {"-1.005", 2, CE, 0, "-1.00"},
        {"-1.005", 2, HE, 0, "-1.00"},
        {"-1.015", 2, HE, 0, "-1.02"},
        {"2.5", 0, HE, 0, "2"},
        {"3.5", 0, HE, 0, "4"},
        {"-2.5", 0, HE, 0, "-2"},
        {"-3.5", 0, HE, 0, "-4"},
        {"0.5", 0, HE, 0, "0"},
        {"-0.5", 0, HE, 0, "0"},
        {"-0.5", 0, FL, 0, "-1"},
        {"0.000000000000000001", 0, DN, 0, "0"},
        {"0.000000000000000001", 0, UP, 0, "1"},
        {"0.000000000000000001", 0, CE, 0, "1"},
        {"0.000000000000000001", 0, FL, 0, "0"},
        {"-0.000000000000000001", 0, FL, 0, "-1"},
        {"-0.000000000000000001", 0, CE, 0, "0"},
        /* Binance prints 8 digits */
        {"24934.2", 8, EX, 0, "24934.20000000"},
        {"24934.2", 8, DN, 0, "24934.20000000"},
        {"1.10", 1, EX, 0, "1.1"},
        {"0.12345678", 8, EX, 0, "0.12345678"},
        {"0.123456785", 8, HE, 0, "0.12345678"},
        {"0.123456795", 8, HE, 0, "0.12345680"},
        {"1", 19, EX, -CQ_ETOOBIG, NULL},
        {"92233720368547758.07", 3, EX, -CQ_ETOOBIG, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char buf[CQ_DEC_STR_MAX] = "untouched";
        char what[96];
        int rc =
            cq_dec_format_scale(dec(rows[i].in), rows[i].scale, rows[i].mode, buf, sizeof(buf));
        snprintf(what, sizeof(what), "format_scale(%s, %u, %s)", rows[i].in, rows[i].scale,
                 mode_names[rows[i].mode]);
        cr_expect_eq(rc, rows[i].rc, "%s: rc %d, want %d", what, rc, rows[i].rc);
        if (rows[i].rc == 0) {
            cr_expect_str_eq(buf, rows[i].want, "%s: got %s", what, buf);
        } else {
            cr_expect_str_eq(buf, "untouched", "%s: wrote on failure", what);
        }
    }
}

/* ---- rescale, normalize ------------------------------------------------- */

Test(decimal, rescale_table)
{
    static const struct fs_row rows[] = {
        {"1.23", 5, EX, 0, "1.23000"},
        {"1", 18, EX, 0, "1.000000000000000000"},
        {"10", 18, EX, -CQ_ETOOBIG, NULL},
        {"9223372036854775807", 1, EX, -CQ_ETOOBIG, NULL},
        {"-922337203685477580", 1, EX, 0, "-922337203685477580.0"},
        {"-922337203685477581", 1, EX, -CQ_ETOOBIG, NULL},
        {"1.23456", 2, DN, 0, "1.23"},
        {"1.23456", 2, UP, 0, "1.24"},
        {"1.23456", 2, HE, 0, "1.23"},
        {"1.235", 2, HE, 0, "1.24"},
        {"1.245", 2, HE, 0, "1.24"},
        {"1.230", 2, EX, 0, "1.23"},
        {"1.235", 2, EX, -CQ_EINVAL, NULL},
        {"922337203685477580.7", 0, CE, 0, "922337203685477581"},
        {"922337203685477580.7", 0, FL, 0, "922337203685477580"},
        {"-922337203685477580.8", 0, FL, 0, "-922337203685477581"},
        {"-922337203685477580.8", 0, DN, 0, "-922337203685477580"},
        {"9.223372036854775807", 0, UP, 0, "10"},
        {"9.223372036854775807", 17, HE, 0, "9.22337203685477581"},
        {"-9.223372036854775808", 0, HE, 0, "-9"},
        {"0.5", 3, EX, 0, "0.500"},
        {"1.5", 19, DN, -CQ_ETOOBIG, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char what[96];
        cq_dec out = sentinel;
        int rc = cq_dec_rescale(dec(rows[i].in), rows[i].scale, rows[i].mode, &out);
        snprintf(what, sizeof(what), "rescale(%s, %u, %s)", rows[i].in, rows[i].scale,
                 mode_names[rows[i].mode]);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
    }
}

Test(decimal, normalize_table)
{
    static const struct {
        const char *in;
        const char *want;
    } rows[] = {
        {"1.2300", "1.23"},
        {"0.000", "0"},
        {"100", "100"},
        {"100.00", "100"},
        {"-0.50", "-0.5"},
        {"10.0", "10"},
        {"0.10000000", "0.1"},
        {"0.000000000000000001", "0.000000000000000001"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"-92233720368547758.00", "-92233720368547758"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char buf[CQ_DEC_STR_MAX];
        cq_dec d = dec(rows[i].in);
        cq_dec n = cq_dec_normalize(d);
        cr_expect_str_eq(fmt(n, buf), rows[i].want, "normalize(%s) = %s", rows[i].in, buf);
        cr_expect_eq(cq_dec_cmp(n, d), 0, "normalize(%s) changed the value", rows[i].in);
    }
}

/* ---- add, sub ------------------------------------------------------------ */

Test(decimal, add_sub_table)
{
    static const struct {
        const char *a;
        char op;
        const char *b;
        int rc;
        const char *want;
    } rows[] = {
        {"1.5", '+', "2.25", 0, "3.75"},
        {"0.1", '+', "0.2", 0, "0.3"},
        {"1", '+', "0.00000001", 0, "1.00000001"},
        {"-0.5", '+', "0.5", 0, "0.0"},
        {"24934.2", '+', "-0.01", 0, "24934.19"},
        {"0.10000000", '+', "0.2", 0, "0.30000000"},
        {"9223372036854775807", '+', "-1", 0, "9223372036854775806"},
        {"9223372036854775807", '+', "1", -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", '+', "-1", -CQ_ETOOBIG, NULL},
        {"9223372036854775807", '+', "-9223372036854775808", 0, "-1"},
        {"922337203685477580.7", '+', "0.01", -CQ_ETOOBIG, NULL},
        {"92233720368547758.07", '+', "0.1", -CQ_ETOOBIG, NULL},
        {"92233720368547758.07", '+', "-0.1", 0, "92233720368547757.97"},
        /* an operand out of int64 at the common scale, the sum back in */
        {"922337203685477581", '+', "-0.3", 0, "922337203685477580.7"},
        {"1", '-', "0.001", 0, "0.999"},
        {"-0.5", '-', "0.5", 0, "-1.0"},
        {"1.0", '-', "1", 0, "0.0"},
        {"0.00012345", '-', "0.00012345", 0, "0.00000000"},
        {"-9223372036854775808", '-', "1", -CQ_ETOOBIG, NULL},
        {"0", '-', "-9223372036854775808", -CQ_ETOOBIG, NULL},
        {"-1", '-', "-9223372036854775808", 0, "9223372036854775807"},
        {"9223372036854775807", '-', "-1", -CQ_ETOOBIG, NULL},
        {"-922337203685477581", '-', "-0.3", 0, "-922337203685477580.7"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char what[96];
        cq_dec out = sentinel;
        cq_dec a = dec(rows[i].a);
        cq_dec b = dec(rows[i].b);
        int rc = rows[i].op == '+' ? cq_dec_add(a, b, &out) : cq_dec_sub(a, b, &out);
        snprintf(what, sizeof(what), "%s %c %s", rows[i].a, rows[i].op, rows[i].b);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
        if (rows[i].op == '+') {
            /* addition commutes, results and errors alike */
            cq_dec out2 = sentinel;
            int rc2 = cq_dec_add(b, a, &out2);
            expect_result(what, rc2, out2, rows[i].rc, rows[i].want);
        }
    }
}

/* ---- mul, div ------------------------------------------------------------ */

struct op_row {
    const char *a;
    const char *b;
    unsigned scale;
    enum cq_dec_round mode;
    int rc;
    const char *want;
};

Test(decimal, mul_table)
{
    static const struct op_row rows[] = {
        /* notional = price x qty at Binance's 8 digits */
        {"60000.12345678", "0.00012345", 8, DN, 0, "7.40701524"},
        {"60000.12345678", "0.00012345", 8, FL, 0, "7.40701524"},
        {"60000.12345678", "0.00012345", 8, UP, 0, "7.40701525"},
        {"60000.12345678", "0.00012345", 8, CE, 0, "7.40701525"},
        {"60000.12345678", "0.00012345", 8, HE, 0, "7.40701524"},
        {"60000.12345678", "0.00012345", 8, EX, -CQ_EINVAL, NULL},
        {"60000.12345678", "0.00012345", 16, EX, 0, "7.4070152407394910"},
        {"-60000.12345678", "0.00012345", 8, DN, 0, "-7.40701524"},
        {"-60000.12345678", "0.00012345", 8, FL, 0, "-7.40701525"},
        {"-60000.12345678", "0.00012345", 8, CE, 0, "-7.40701524"},
        {"1.5", "2", 1, EX, 0, "3.0"},
        {"-1.5", "1.5", 3, EX, 0, "-2.250"},
        {"-1.5", "1.5", 1, HE, 0, "-2.2"},
        {"-1.5", "1.5", 1, FL, 0, "-2.3"},
        {"-1.5", "1.5", 1, CE, 0, "-2.2"},
        {"-1.5", "1.5", 1, EX, -CQ_EINVAL, NULL},
        {"0.00000001", "0.5", 8, HE, 0, "0.00000000"},
        {"0.00000003", "0.5", 8, HE, 0, "0.00000002"},
        {"0.00000001", "0.5", 8, UP, 0, "0.00000001"},
        /* product beyond int64, result back in range */
        {"92233720368.54775807", "100000000", 0, EX, 0, "9223372036854775807"},
        {"-92233720368.54775808", "100000000", 0, EX, 0, "-9223372036854775808"},
        {"9.223372036854775807", "9.223372036854775807", 16, DN, 0, "85.0705917302346158"},
        {"9.223372036854775807", "9.223372036854775807", 16, UP, 0, "85.0705917302346159"},
        {"9.223372036854775807", "9.223372036854775807", 10, HE, 0, "85.0705917302"},
        {"9.223372036854775807", "9.223372036854775807", 18, DN, -CQ_ETOOBIG, NULL},
        /* product at scale 36, divided by up to 10^36 */
        {"0.000000000000000001", "0.000000000000000001", 18, DN, 0, "0.000000000000000000"},
        {"0.000000000000000001", "0.000000000000000001", 18, UP, 0, "0.000000000000000001"},
        {"0.000000000000000001", "0.000000000000000001", 0, UP, 0, "1"},
        {"-0.000000000000000001", "0.000000000000000001", 0, FL, 0, "-1"},
        {"0.000000000000000001", "0.000000000000000001", 0, HE, 0, "0"},
        {"9223372036854775807", "9223372036854775807", 0, DN, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "-9223372036854775808", 0, DN, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "1", 0, EX, 0, "-9223372036854775808"},
        {"-9223372036854775808", "-1", 0, EX, -CQ_ETOOBIG, NULL},
        {"922337203685477580.7", "1", 2, EX, -CQ_ETOOBIG, NULL},
        {"0", "9223372036854775807", 18, EX, 0, "0.000000000000000000"},
        {"1", "1", 19, EX, -CQ_ETOOBIG, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char what[128];
        cq_dec out = sentinel;
        cq_dec a = dec(rows[i].a);
        cq_dec b = dec(rows[i].b);
        int rc = cq_dec_mul(a, b, rows[i].scale, rows[i].mode, &out);
        snprintf(what, sizeof(what), "%s * %s @%u %s", rows[i].a, rows[i].b, rows[i].scale,
                 mode_names[rows[i].mode]);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
        out = sentinel;
        rc = cq_dec_mul(b, a, rows[i].scale, rows[i].mode, &out);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
    }
}

Test(decimal, div_table)
{
    static const struct op_row rows[] = {
        {"1", "3", 8, DN, 0, "0.33333333"},
        {"1", "3", 8, UP, 0, "0.33333334"},
        {"1", "3", 8, HE, 0, "0.33333333"},
        {"1", "3", 8, EX, -CQ_EINVAL, NULL},
        {"2", "3", 8, HE, 0, "0.66666667"},
        {"-2", "3", 8, FL, 0, "-0.66666667"},
        {"-2", "3", 8, CE, 0, "-0.66666666"},
        {"2", "-3", 8, FL, 0, "-0.66666667"},
        {"-2", "-3", 8, FL, 0, "0.66666666"},
        {"1", "-3", 2, DN, 0, "-0.33"},
        {"10", "4", 0, HE, 0, "2"},
        {"14", "4", 0, HE, 0, "4"},
        {"-10", "4", 0, HE, 0, "-2"},
        {"1", "4", 2, EX, 0, "0.25"},
        {"0", "5", 2, EX, 0, "0.00"},
        {"1", "0", 8, DN, -CQ_EINVAL, NULL},
        {"0", "0", 8, DN, -CQ_EINVAL, NULL},
        {"1", "0.000", 8, DN, -CQ_EINVAL, NULL},
        /* quantity from a quote amount and a price */
        {"7.40701524", "60000.12345678", 8, DN, 0, "0.00012344"},
        {"7.40701524", "60000.12345678", 8, HE, 0, "0.00012345"},
        {"-7.40701524", "60000.12345678", 8, FL, 0, "-0.00012345"},
        {"100", "24934.2", 5, DN, 0, "0.00401"},
        /* exponent above 18: numerator beyond 10^36 */
        {"1", "0.5", 18, EX, 0, "2.000000000000000000"},
        {"0.000000000000000001", "0.000000000000000004", 18, EX, 0, "0.250000000000000000"},
        {"1", "0.000000000000000002", 18, DN, -CQ_ETOOBIG, NULL},
        {"9223372036854775807", "0.000000000000000001", 18, DN, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "0.000000000000000001", 18, DN, -CQ_ETOOBIG, NULL},
        /* exponent below 0: divisor scaled up */
        {"1.000000000000000000", "3", 0, DN, 0, "0"},
        {"1.000000000000000000", "3", 0, UP, 0, "1"},
        {"2.000000000000000000", "3", 0, HE, 0, "1"},
        {"-9223372036854775808", "-1", 0, EX, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "1", 0, EX, 0, "-9223372036854775808"},
        {"9223372036854775807", "0.1", 0, EX, -CQ_ETOOBIG, NULL},
        {"1", "3", 19, DN, -CQ_ETOOBIG, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char what[128];
        cq_dec out = sentinel;
        int rc = cq_dec_div(dec(rows[i].a), dec(rows[i].b), rows[i].scale, rows[i].mode, &out);
        snprintf(what, sizeof(what), "%s / %s @%u %s", rows[i].a, rows[i].b, rows[i].scale,
                 mode_names[rows[i].mode]);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
    }
}

/* ---- cmp, min, max, neg -------------------------------------------------- */

Test(decimal, cmp_table)
{
    static const struct {
        const char *a;
        const char *b;
        int want;
    } rows[] = {
        {"1.0", "1", 0},
        {"-0.5", "0", -1},
        {"0.00", "0", 0},
        {"-0", "0.0", 0},
        {"0.1", "0.09", 1},
        {"-0.1", "-0.09", -1},
        {"24934.20", "24934.2", 0},
        {"24934.21", "24934.2", 1},
        {"24934.19", "24934.2", -1},
        {"1", "0.999999999999999999", 1},
        {"-1", "-0.999999999999999999", -1},
        {"9223372036854775807", "9.223372036854775807", 1},
        {"-9223372036854775808", "-9223372036854775807", -1},
        {"-9223372036854775808", "-9.223372036854775808", -1},
        {"922337203685477580.7", "922337203685477580", 1},
        {"0.000000000000000001", "0", 1},
        {"-0.000000000000000001", "0", -1},
        {"5", "-5", 1},
        {"0.5", "0.50000000", 0},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        cq_dec a = dec(rows[i].a);
        cq_dec b = dec(rows[i].b);
        cr_expect_eq(cq_dec_cmp(a, b), rows[i].want, "cmp(%s, %s) = %d, want %d", rows[i].a,
                     rows[i].b, cq_dec_cmp(a, b), rows[i].want);
        cr_expect_eq(cq_dec_cmp(b, a), -rows[i].want, "cmp(%s, %s) not antisymmetric", rows[i].b,
                     rows[i].a);
    }
    /* scales beyond the maximum (hand-made) still compare exactly */
    cr_expect_eq(cq_dec_cmp(cq_dec_make(1, 40), CQ_DEC_ZERO), 1);
    cr_expect_eq(cq_dec_cmp(cq_dec_make(5, 200), cq_dec_make(1, 199)), -1);
    cr_expect_eq(cq_dec_cmp(cq_dec_make(1, 0), cq_dec_make(INT64_MAX, 30)), 1);
    cr_expect_eq(cq_dec_cmp(cq_dec_make(10, 20), cq_dec_make(1, 19)), 0);
}

Test(decimal, min_max_neg)
{
    char buf[CQ_DEC_STR_MAX];
    cq_dec out = sentinel;
    cr_expect_str_eq(fmt(cq_dec_min(dec("1.0"), dec("1")), buf), "1.0", "tie returns a");
    cr_expect_str_eq(fmt(cq_dec_max(dec("1.0"), dec("1")), buf), "1.0", "tie returns a");
    cr_expect_str_eq(fmt(cq_dec_min(dec("-0.5"), dec("0")), buf), "-0.5");
    cr_expect_str_eq(fmt(cq_dec_max(dec("-0.5"), dec("0")), buf), "0");
    cr_expect_str_eq(fmt(cq_dec_min(dec("24934.21"), dec("24934.2")), buf), "24934.2");
    cr_expect_str_eq(fmt(cq_dec_max(dec("24934.21"), dec("24934.2")), buf), "24934.21");
    expect_result("neg 1.5", cq_dec_neg(dec("1.5"), &out), out, 0, "-1.5");
    expect_result("neg -0.50", cq_dec_neg(dec("-0.50"), &out), out, 0, "0.50");
    expect_result("neg 0.00", cq_dec_neg(dec("0.00"), &out), out, 0, "0.00");
    expect_result("neg max", cq_dec_neg(dec("9223372036854775807"), &out), out, 0,
                  "-9223372036854775807");
    out = sentinel;
    expect_result("neg min", cq_dec_neg(dec("-9223372036854775808"), &out), out, -CQ_ETOOBIG, NULL);
    cr_expect(cq_dec_is_zero(dec("0.000")));
    cr_expect(!cq_dec_is_zero(dec("0.001")));
    cr_expect_eq(cq_dec_sign(dec("-0.001")), -1);
    cr_expect_eq(cq_dec_sign(dec("0.00")), 0);
    cr_expect_eq(cq_dec_sign(dec("7")), 1);
}

/* ---- exchange filters ---------------------------------------------------- */

struct q_row {
    const char *value;
    const char *step;
    enum cq_dec_round mode;
    int rc;
    const char *want;
};

Test(decimal, quantize_table)
{
    static const struct q_row rows[] = {
        /* BTCUSDT price to tick 0.01: BUY FLOOR, SELL CEIL */
        {"24934.216", "0.01", FL, 0, "24934.210"},
        {"24934.216", "0.01", CE, 0, "24934.220"},
        {"24934.216", "0.01", DN, 0, "24934.210"},
        {"24934.216", "0.01", UP, 0, "24934.220"},
        {"24934.216", "0.01", HE, 0, "24934.220"},
        {"24934.216", "0.01", EX, -CQ_EINVAL, NULL},
        {"24934.215", "0.01", HE, 0, "24934.220"},
        {"24934.225", "0.01", HE, 0, "24934.220"},
        {"24934.21", "0.01", EX, 0, "24934.21"},
        {"24934.2", "0.01000000", EX, 0, "24934.20000000"},
        {"24934.2", "0.01000000", FL, 0, "24934.20000000"},
        {"24934.21000001", "0.01000000", FL, 0, "24934.21000000"},
        {"24934.21000001", "0.01000000", CE, 0, "24934.22000000"},
        /* BTCUSDT quantity to step 0.00001: DOWN */
        {"0.00012345", "0.00001", DN, 0, "0.00012000"},
        {"0.00012345", "0.00001000", DN, 0, "0.00012000"},
        {"0.00012345", "0.00001", UP, 0, "0.00013000"},
        {"0.00012345", "0.00001", FL, 0, "0.00012000"},
        {"0.00012345", "0.00001", CE, 0, "0.00013000"},
        {"0.00012345", "0.00001", HE, 0, "0.00012000"},
        {"0.00012345", "0.00001", EX, -CQ_EINVAL, NULL},
        {"0.00012000", "0.00001", EX, 0, "0.00012000"},
        {"0.123456789", "0.00001", DN, 0, "0.123450000"},
        {"293.13711", "0.00001000", EX, 0, "293.13711000"},
        /* negative values */
        {"-24934.216", "0.01", FL, 0, "-24934.220"},
        {"-24934.216", "0.01", CE, 0, "-24934.210"},
        {"-24934.216", "0.01", DN, 0, "-24934.210"},
        {"-24934.216", "0.01", UP, 0, "-24934.220"},
        {"-24934.216", "0.01", HE, 0, "-24934.220"},
        {"-24934.215", "0.01", HE, 0, "-24934.220"},
        {"-24934.225", "0.01", HE, 0, "-24934.220"},
        {"-0.00012345", "0.00001", DN, 0, "-0.00012000"},
        {"-0.00012345", "0.00001", EX, -CQ_EINVAL, NULL},
        /* step larger than the value */
        {"0.004", "0.01", DN, 0, "0.000"},
        {"0.004", "0.01", FL, 0, "0.000"},
        {"0.004", "0.01", UP, 0, "0.010"},
        {"0.004", "0.01", CE, 0, "0.010"},
        {"0.004", "0.01", HE, 0, "0.000"},
        {"0.005", "0.01", HE, 0, "0.000"},
        {"0.015", "0.01", HE, 0, "0.020"},
        {"0.006", "0.01", HE, 0, "0.010"},
        {"-0.004", "0.01", FL, 0, "-0.010"},
        {"-0.004", "0.01", CE, 0, "0.000"},
        {"-0.004", "0.01", DN, 0, "0.000"},
        {"3", "1000", DN, 0, "0"},
        {"3", "1000", UP, 0, "1000"},
        {"0", "0.01", EX, 0, "0.00"},
        /* step with a larger scale than the value */
        {"24934", "0.01", EX, 0, "24934.00"},
        {"3", "0.5", EX, 0, "3.0"},
        {"7", "2", DN, 0, "6"},
        {"7", "2", HE, 0, "8"},
        {"5", "2", HE, 0, "4"},
        {"-5", "2", HE, 0, "-4"},
        {"7", "2", CE, 0, "8"},
        {"2805318.0", "1.00000000", EX, 0, "2805318.00000000"},
        {"0.07117", "0.00001000", EX, 0, "0.07117000"},
        {"0.071175", "0.00001000", FL, 0, "0.07117000"},
        /* range */
        {"9223372036854775807", "10", DN, 0, "9223372036854775800"},
        {"9223372036854775807", "10", UP, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "10", FL, -CQ_ETOOBIG, NULL},
        {"-9223372036854775808", "10", CE, 0, "-9223372036854775800"},
        {"92233720368", "0.00000001", EX, 0, "92233720368.00000000"},
        {"92233720369", "0.00000001", EX, -CQ_ETOOBIG, NULL},
        {"1", "9223372036854775807", UP, 0, "9223372036854775807"},
        {"1", "9223372036854775807", DN, 0, "0"},
        /* invalid steps */
        {"1", "0", DN, -CQ_EINVAL, NULL},
        {"1", "0.00", DN, -CQ_EINVAL, NULL},
        {"1", "-0.01", DN, -CQ_EINVAL, NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        char what[128];
        cq_dec out = sentinel;
        int rc = cq_dec_quantize(dec(rows[i].value), dec(rows[i].step), rows[i].mode, &out);
        snprintf(what, sizeof(what), "quantize(%s, %s, %s)", rows[i].value, rows[i].step,
                 mode_names[rows[i].mode]);
        expect_result(what, rc, out, rows[i].rc, rows[i].want);
        if (rc == 0) {
            cr_expect(cq_dec_is_multiple(out, dec(rows[i].step)), "%s: not a multiple", what);
        }
    }
}

Test(decimal, is_multiple_table)
{
    static const struct {
        const char *value;
        const char *step;
        bool want;
    } rows[] = {
        {"24934.21", "0.01", true},
        {"24934.215", "0.01", false},
        {"24934.2", "0.01000000", true},
        {"24934.20000001", "0.01", false},
        {"0", "0.01", true},
        {"-0.03", "0.01", true},
        {"-0.035", "0.01", false},
        {"1", "0.3", false},
        {"0.9", "0.3", true},
        {"0.00012", "0.00001000", true},
        {"0.000125", "0.00001", false},
        {"92233720369", "0.00000001", true},
        {"9223372036854775807", "0.1", true},
        {"0.1", "9223372036854775807", false},
        {"5", "0", false},
        {"5", "-1", false},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        bool got = cq_dec_is_multiple(dec(rows[i].value), dec(rows[i].step));
        cr_expect_eq(got, rows[i].want, "is_multiple(%s, %s) = %d", rows[i].value, rows[i].step,
                     got);
    }
}

Test(decimal, to_double)
{
    cr_expect(cq_dec_to_double(dec("24934.2")) == 24934.2);
    cr_expect(cq_dec_to_double(dec("-0.5")) == -0.5);
    cr_expect(cq_dec_to_double(dec("0.1")) == 0.1);
    cr_expect(cq_dec_to_double(dec("0.00012345")) == 0.00012345);
    cr_expect(cq_dec_to_double(dec("0.000")) == 0.0);
    cr_expect(cq_dec_to_double(dec("9223372036854775807")) == 9223372036854775807.0);
    cr_expect(cq_dec_to_double(cq_dec_make(15, 20)) == 15e-20);
}

/* Operands no parse can produce, unknown modes: a clear error, nothing
 * written, no crash. */
Test(decimal, invalid_arguments)
{
    const cq_dec bad = cq_dec_make(1, CQ_DEC_MAX_SCALE + 1);
    const cq_dec one = dec("1");
    const enum cq_dec_round bad_mode = (enum cq_dec_round)42;
    cq_dec out = sentinel;
    char buf[CQ_DEC_STR_MAX] = "untouched";
    expect_result("add bad", cq_dec_add(bad, one, &out), out, -CQ_EINVAL, NULL);
    expect_result("sub bad", cq_dec_sub(one, bad, &out), out, -CQ_EINVAL, NULL);
    expect_result("mul bad", cq_dec_mul(bad, one, 2, DN, &out), out, -CQ_EINVAL, NULL);
    expect_result("div bad", cq_dec_div(one, bad, 2, DN, &out), out, -CQ_EINVAL, NULL);
    expect_result("rescale bad", cq_dec_rescale(bad, 2, DN, &out), out, -CQ_EINVAL, NULL);
    expect_result("quantize bad value", cq_dec_quantize(bad, one, DN, &out), out, -CQ_EINVAL, NULL);
    expect_result("quantize bad step", cq_dec_quantize(one, bad, DN, &out), out, -CQ_EINVAL, NULL);
    cr_expect(!cq_dec_is_multiple(one, bad));
    cr_expect(!cq_dec_is_multiple(bad, one));
    /* an unknown mode fails even when nothing would be rounded */
    expect_result("rescale mode", cq_dec_rescale(one, 2, bad_mode, &out), out, -CQ_EINVAL, NULL);
    expect_result("mul mode", cq_dec_mul(one, one, 0, bad_mode, &out), out, -CQ_EINVAL, NULL);
    expect_result("div mode", cq_dec_div(one, one, 0, bad_mode, &out), out, -CQ_EINVAL, NULL);
    expect_result("quantize mode", cq_dec_quantize(one, one, bad_mode, &out), out, -CQ_EINVAL,
                  NULL);
    cr_expect_eq(cq_dec_format_scale(one, 2, bad_mode, buf, sizeof(buf)), -CQ_EINVAL);
    cr_expect_str_eq(buf, "untouched");
}

/* ---- randomized cross-check against a plain reference ------------------ */

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Mostly small mantissas and scales, so ties and exact cases are common;
 * one draw in eight spans the whole int64 range and every scale. */
static cq_dec rand_dec(void)
{
    static const uint64_t spans[] = {3, 21, 1001, 100001, 1000000001};
    uint64_t r = rnd();
    int64_t m;
    unsigned scale;
    if (r % 8 == 0) {
        m = (int64_t)(rnd() >> (1 + rnd() % 63));
        m = rnd() % 2 ? m : -m - (int64_t)(rnd() % 2);
        scale = (unsigned)(rnd() % (CQ_DEC_MAX_SCALE + 1));
    } else {
        m = (int64_t)(rnd() % spans[(r >> 3) % CQ_ARRAY_LEN(spans)]);
        m = rnd() % 2 ? m : -m;
        scale = (unsigned)(rnd() % 9);
    }
    return cq_dec_make(m, scale);
}

static i128 ref_pow10(unsigned n)
{
    i128 p = 1;
    for (unsigned i = 0; i < n; i++) {
        p *= 10;
    }
    return p;
}

static bool ref_fits(i128 v)
{
    return v >= INT64_MIN && v <= INT64_MAX;
}

/* Rounding built on the floor quotient: different from the
 * truncate-then-adjust of the implementation. d > 0. */
static int ref_round(i128 n, i128 d, enum cq_dec_round mode, i128 *q)
{
    i128 fl = n / d;
    if (n % d != 0 && n < 0) {
        fl -= 1;
    }
    i128 rem = n - fl * d; /* 0 <= rem < d */
    if (rem == 0) {
        *q = fl;
        return 0;
    }
    switch (mode) {
    case CQ_ROUND_FLOOR:
        *q = fl;
        break;
    case CQ_ROUND_CEIL:
        *q = fl + 1;
        break;
    case CQ_ROUND_DOWN:
        *q = n > 0 ? fl : fl + 1;
        break;
    case CQ_ROUND_UP:
        *q = n > 0 ? fl + 1 : fl;
        break;
    case CQ_ROUND_HALF_EVEN:
        if (2 * rem < d) {
            *q = fl;
        } else if (2 * rem > d) {
            *q = fl + 1;
        } else {
            *q = fl % 2 == 0 ? fl : fl + 1;
        }
        break;
    default:
        return -CQ_EINVAL;
    }
    return 0;
}

/* A broken build would otherwise report the same bug 100k times. */
#define PROP_FAILURES_MAX 20
static int prop_failures;

static void check_ref(const char *op, cq_dec a, cq_dec b, int rc, cq_dec out, int want_rc,
                      i128 want_m, unsigned want_scale)
{
    char sa[CQ_DEC_STR_MAX];
    char sb[CQ_DEC_STR_MAX];
    char so[CQ_DEC_STR_MAX];
    if (rc != want_rc) {
        prop_failures++;
        cr_expect_fail("%s(%s, %s): rc %d, reference %d", op, fmt(a, sa), fmt(b, sb), rc, want_rc);
    } else if (rc == 0 && (out.m != (int64_t)want_m || out.scale != want_scale)) {
        prop_failures++;
        cr_expect_fail("%s(%s, %s) = %s, reference m=%" PRId64 " scale=%u", op, fmt(a, sa),
                       fmt(b, sb), fmt(out, so), (int64_t)want_m, want_scale);
    }
}

#define PROPERTY_CASES 100000

Test(decimal_prop, random_ops_match_reference, .timeout = 120)
{
    rng_state = 0x5EEDC0FFEE123457ULL;
    prop_failures = 0;
    for (int i = 0; i < PROPERTY_CASES && prop_failures < PROP_FAILURES_MAX; i++) {
        cq_dec a = rand_dec();
        cq_dec b = rand_dec();
        enum cq_dec_round mode = (enum cq_dec_round)(rnd() % 6);
        unsigned target = (unsigned)(rnd() % (CQ_DEC_MAX_SCALE + 1));
        unsigned s = a.scale > b.scale ? a.scale : b.scale;
        i128 x = (i128)a.m * ref_pow10(s - a.scale);
        i128 y = (i128)b.m * ref_pow10(s - b.scale);
        cq_dec out;
        i128 q;
        int rc;
        int want_rc;

        /* add, sub */
        rc = cq_dec_add(a, b, &out);
        check_ref("add", a, b, rc, out, ref_fits(x + y) ? 0 : -CQ_ETOOBIG, x + y, s);
        rc = cq_dec_sub(a, b, &out);
        check_ref("sub", a, b, rc, out, ref_fits(x - y) ? 0 : -CQ_ETOOBIG, x - y, s);

        /* cmp */
        {
            int want = (x > y) - (x < y);
            int got = cq_dec_cmp(a, b);
            if (got != want) {
                prop_failures++;
                char sa[CQ_DEC_STR_MAX];
                char sb[CQ_DEC_STR_MAX];
                cr_expect_fail("cmp(%s, %s) = %d, reference %d", fmt(a, sa), fmt(b, sb), got, want);
            }
        }

        /* mul: exact product at a.scale + b.scale, then to target */
        {
            i128 p = (i128)a.m * b.m;
            unsigned ps = (unsigned)a.scale + b.scale;
            if (target >= ps) {
                /* |p| > 2^64 times 10^k >= 1 never fits int64 */
                bool small = p <= ((i128)1 << 64) && p >= -((i128)1 << 64);
                q = small ? p * ref_pow10(target - ps) : 0;
                want_rc = small && ref_fits(q) ? 0 : -CQ_ETOOBIG;
            } else {
                want_rc = ref_round(p, ref_pow10(ps - target), mode, &q);
                if (want_rc == 0 && !ref_fits(q)) {
                    want_rc = -CQ_ETOOBIG;
                }
            }
            rc = cq_dec_mul(a, b, target, mode, &out);
            check_ref("mul", a, b, rc, out, want_rc, q, target);
        }

        /* div: a.m * 10^(target + b.scale - a.scale) / b.m */
        {
            int e = (int)target + b.scale - a.scale;
            i128 n = a.m;
            i128 d = b.m;
            bool huge = false;
            if (e >= 0) {
                i128 pe = ref_pow10((unsigned)e);
                i128 lim = REF_I128_MAX / pe;
                /* |n| * 10^e past 2^127, over |d| <= 2^63, is at least 2^64 */
                huge = n > lim || n < -lim;
                n = huge ? 0 : n * pe;
            } else {
                d *= ref_pow10((unsigned)-e);
            }
            if (d < 0) {
                n = -n;
                d = -d;
            }
            if (b.m == 0) {
                want_rc = -CQ_EINVAL;
            } else if (huge) {
                want_rc = -CQ_ETOOBIG;
            } else {
                want_rc = ref_round(n, d, mode, &q);
                if (want_rc == 0 && !ref_fits(q)) {
                    want_rc = -CQ_ETOOBIG;
                }
            }
            rc = cq_dec_div(a, b, target, mode, &out);
            check_ref("div", a, b, rc, out, want_rc, q, target);
        }

        /* quantize a to step |b| */
        {
            cq_dec step = cq_dec_make(b.m < 0 ? -(b.m + (b.m == INT64_MIN)) : b.m, b.scale);
            i128 st = (i128)step.m * ref_pow10(s - step.scale);
            if (step.m == 0) {
                want_rc = -CQ_EINVAL;
            } else {
                want_rc = ref_round(x, st, mode, &q);
                if (want_rc == 0) {
                    q *= st; /* |q * st| <= |x| + st */
                    want_rc = ref_fits(q) ? 0 : -CQ_ETOOBIG;
                }
            }
            rc = cq_dec_quantize(a, step, mode, &out);
            check_ref("quantize", a, step, rc, out, want_rc, q, s);
            if (step.m != 0 && cq_dec_is_multiple(a, step) != (x % st == 0)) {
                prop_failures++;
                cr_expect_fail("is_multiple(m=%" PRId64 "/%u, m=%" PRId64 "/%u) wrong", a.m,
                               a.scale, step.m, step.scale);
            }
        }

        /* rescale a to target */
        if (target >= a.scale) {
            q = (i128)a.m * ref_pow10(target - a.scale);
            want_rc = ref_fits(q) ? 0 : -CQ_ETOOBIG;
        } else {
            want_rc = ref_round(a.m, ref_pow10(a.scale - target), mode, &q);
        }
        rc = cq_dec_rescale(a, target, mode, &out);
        check_ref("rescale", a, cq_dec_make(0, target), rc, out, want_rc, q, target);
    }
}

/* format against snprintf of the integer and fractional parts, and parse
 * back to the same mantissa and scale. */
Test(decimal_prop, random_format_parse_roundtrip, .timeout = 120)
{
    rng_state = 0xDEC0DE5EED000001ULL;
    prop_failures = 0;
    for (int i = 0; i < PROPERTY_CASES && prop_failures < PROP_FAILURES_MAX; i++) {
        cq_dec d = rand_dec();
        char got[CQ_DEC_STR_MAX];
        char want[300]; /* room for any %0*: a short one is a failure below */
        cq_dec back = sentinel;
        uint64_t mag = d.m < 0 ? 0 - (uint64_t)d.m : (uint64_t)d.m;
        uint64_t p = (uint64_t)ref_pow10(d.scale);
        if (d.scale == 0) {
            snprintf(want, sizeof(want), "%s%" PRIu64, d.m < 0 ? "-" : "", mag);
        } else {
            snprintf(want, sizeof(want), "%s%" PRIu64 ".%0*" PRIu64, d.m < 0 ? "-" : "", mag / p,
                     (int)d.scale, mag % p);
        }
        fmt(d, got);
        if (strcmp(got, want) != 0) {
            prop_failures++;
            cr_expect_fail("format(m=%" PRId64 ", scale=%u) = %s, want %s", d.m, d.scale, got,
                           want);
        }
        int rc = cq_dec_parse(got, strlen(got), &back);
        if (rc != 0 || back.m != d.m || back.scale != d.scale) {
            prop_failures++;
            cr_expect_fail("parse(\"%s\"): rc %d, m=%" PRId64 " scale=%u", got, rc, back.m,
                           back.scale);
        }
    }
}

/* ---- real Binance strings ------------------------------------------------ */

#define KLINE_LINES_MAX 2000

/* open,high,low,close,volume of every row: format(parse(s)) == s, prices on
 * BTCUSDT's 0.01 tick, volumes on its 0.00001 step, low <= open,close <=
 * high (true for every row of the file, per its README). */
Test(decimal_data, klines_btcusdt_roundtrip)
{
    const char *path = KLINES_PATH;
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    char line[512];
    int lines = 0;
    int fields = 0;
    cq_dec tick = dec("0.01");
    cq_dec step = dec("0.00001");

    if (f == NULL) {
        cq_test_shared_missing(path != NULL ? path : "CQ_SHARED_DIR (not defined)");
    }
    while (lines < KLINE_LINES_MAX && fgets(line, sizeof(line), f) != NULL) {
        lines++;
        if (lines == 1) {
            cr_expect(strncmp(line, "open_time_ms,open,high", 22) == 0, "header: %s", line);
            continue;
        }
        cq_dec v[5];
        const char *p = line;
        for (int col = 0; col <= 5; col++) {
            size_t n = strcspn(p, ",\n");
            if (col >= 1) {
                char buf[CQ_DEC_STR_MAX];
                cq_dec *d = &v[col - 1];
                int rc = cq_dec_parse(p, n, d);
                cr_assert_eq(rc, 0, "line %d col %d \"%.*s\": %s", lines, col, (int)n, p,
                             cq_strerror(rc));
                fmt(*d, buf);
                cr_expect(strlen(buf) == n && memcmp(buf, p, n) == 0,
                          "line %d col %d: format(parse(\"%.*s\")) = \"%s\"", lines, col, (int)n, p,
                          buf);
                cr_expect(cq_dec_is_multiple(*d, col == 5 ? step : tick),
                          "line %d col %d: %s off the filter", lines, col, buf);
                fields++;
            }
            cr_assert(p[n] == ',', "line %d: too few fields", lines);
            p += n + 1;
        }
        /* v: open high low close volume */
        cr_expect(cq_dec_cmp(v[2], v[0]) <= 0 && cq_dec_cmp(v[2], v[3]) <= 0, "line %d: low",
                  lines);
        cr_expect(cq_dec_cmp(v[1], v[0]) >= 0 && cq_dec_cmp(v[1], v[3]) >= 0, "line %d: high",
                  lines);
        cr_expect(cq_dec_sign(v[2]) > 0 && cq_dec_sign(v[4]) >= 0, "line %d: signs", lines);
    }
    fclose(f);
    cr_expect_gt(fields, 1000 * 5, "only %d fields read from %s", fields, path);
}
