/*
 * codec.c — the fast decoder of Binance WebSocket market messages
 * (include/cq/codec.h): one pass over the bytes, no allocation, no locale,
 * no jansson. Runs on whichever thread calls it (the feeder); reentrant.
 *
 * Design
 *
 *   1. Scan. A walk of the top-level object that also validates it as
 *      JSON exactly as jansson's json_loadb(…, 0, …) does: RFC 8259 tokens,
 *      strict UTF-8 inside strings, escapes with paired surrogates and no
 *      \u0000, integers within int64, reals that do not overflow a double,
 *      nesting at most 2048 deep (JSON_PARSER_MAX_DEPTH), nothing but
 *      whitespace after the value, no raw NUL byte anywhere. Keys are
 *      matched against the few names the feeder needs; for those the
 *      value's span and type (and an integer's value, computed while
 *      validating it) go into a small table per object. The walk descends
 *      into two nested objects only, the wrapper's "data" and an event's
 *      "k" (three levels of C recursion at most); every other value is
 *      skipped by an iterative scanner with a bit stack of open brackets,
 *      so no input can exhaust the C stack. About 2.5 KB of stack, no heap.
 *      Later duplicates of a key replace earlier ones, as in jansson.
 *   2. Classify and extract. The contract below is applied to the tables:
 *      decimals go from the string bytes straight into cq_dec_parse (copied
 *      into a bounded buffer only when the string holds escapes), text is
 *      copied with its bounds checked, integers and booleans are type-
 *      checked. Extraction needs the whole object because Binance reuses
 *      letters across events ("a" is a price in bookTicker, an agg id in
 *      aggTrade, an order id in 2023 trades) and key order is free.
 *
 * Contract (shared with codec_jansson.c; tests/unit/test_codec.c holds both
 * to it and tests/fuzz/fuzz_codec.c checks they agree on any input):
 *   - the top level is an object; with a "stream" key it is the wrapper:
 *     "stream" a string of 1..CQ_STREAM_LEN-1 bytes, "data" an object (the
 *     payload); otherwise the top level is the payload;
 *   - payload with "e" (a string): "trade" TRADE, "aggTrade" AGG_TRADE,
 *     "kline" KLINE, "depthUpdate" DEPTH_UPDATE, "bookTicker" BOOK_TICKER
 *     (USD-M futures send e/E/T in bookTicker), anything else EVENT_OTHER;
 *   - payload without "e": "u" and "s" present -> BOOK_TICKER (the spot
 *     shape); "id" with "result" or "error" -> CONTROL; else EVENT_OTHER
 *     (partial depth {"lastUpdateId","bids","asks"}, REST depth snapshots);
 *   - fields: s (string, 1..CQ_SYMBOL_LEN-1 bytes), E/T/k.t/k.T (integer
 *     >= 0), t/a/u/U (integer >= 0; jansson caps every integer at
 *     INT64_MAX, so ids do too), k.n (0..UINT32_MAX), m/k.x (true/false),
 *     decimals (string of 1..DEC_TEXT_MAX bytes that cq_dec_parse accepts),
 *     k.i (string, 1..7 bytes). All required except E of BOOK_TICKER;
 *   - CONTROL and EVENT_OTHER carry the kind and stream only;
 *   - on error *out is all zero and *err_offset is where decoding stopped:
 *     the offending byte, len for truncated input, the value of a field of
 *     the wrong type, or the payload's '{' for a missing field.
 */
#include "cq/codec.h"

#include <string.h>

#include "cq/decimal.h"
#include "cq/text.h"

/* jansson's JSON_PARSER_MAX_DEPTH: the top-level value has depth 1, and
 * any value deeper than this is an error (codec_jansson.c asserts it). */
#define MAX_DEPTH 2048u
/* Longest decimal text accepted (after unescaping), in both decoders. */
#define DEC_TEXT_MAX 64
/* Longest key that can match a known name ("stream", "result"). */
#define KEY_TEXT_MAX 8
/* Longest event name compared ("depthUpdate"). */
#define EVENT_TEXT_MAX 16

enum vtype { V_NONE, V_STR, V_INT, V_REAL, V_TRUE, V_FALSE, V_NULL, V_OBJ, V_ARR };

/* One recorded value. */
struct val {
    const char *s; /* string: first content byte; else the value's first byte */
    size_t n;      /* string: raw content length (escapes not yet decoded) */
    int64_t i;     /* V_INT: the value */
    uint8_t type;  /* enum vtype */
    bool esc;      /* string holds a backslash escape */
};

/* Keys of an event payload (and of the wrapper, which shares the table). */
enum pkey {
    PK_e,
    PK_E,
    PK_s,
    PK_t,
    PK_p,
    PK_q,
    PK_T,
    PK_m,
    PK_a,
    PK_b,
    PK_B,
    PK_A,
    PK_u,
    PK_U,
    PK_k,
    PK_STREAM,
    PK_DATA,
    PK_RESULT,
    PK_ID,
    PK_ERROR,
    PK__COUNT
};

/* Keys of a kline's "k" object. */
enum kkey { KK_t, KK_T, KK_o, KK_c, KK_h, KK_l, KK_v, KK_q, KK_n, KK_x, KK_i, KK__COUNT };

/* One-letter keys, +1 (0: not a key we read). */
static const uint8_t pkey1[256] = {
    ['e'] = PK_e + 1, ['E'] = PK_E + 1, ['s'] = PK_s + 1, ['t'] = PK_t + 1, ['p'] = PK_p + 1,
    ['q'] = PK_q + 1, ['T'] = PK_T + 1, ['m'] = PK_m + 1, ['a'] = PK_a + 1, ['b'] = PK_b + 1,
    ['B'] = PK_B + 1, ['A'] = PK_A + 1, ['u'] = PK_u + 1, ['U'] = PK_U + 1, ['k'] = PK_k + 1,
};
static const uint8_t kkey1[256] = {
    ['t'] = KK_t + 1, ['T'] = KK_T + 1, ['o'] = KK_o + 1, ['c'] = KK_c + 1,
    ['h'] = KK_h + 1, ['l'] = KK_l + 1, ['v'] = KK_v + 1, ['q'] = KK_q + 1,
    ['n'] = KK_n + 1, ['x'] = KK_x + 1, ['i'] = KK_i + 1,
};

struct kobj {
    uint32_t seen;  /* bit per enum kkey */
    const char *at; /* the object's '{' */
    struct val v[KK__COUNT];
};

struct pobj {
    uint32_t seen; /* bit per enum pkey */
    const char *at;
    struct val v[PK__COUNT];
    struct kobj k; /* the last "k" that was an object */
};

enum level { LV_ROOT, LV_DATA, LV_KLINE };

struct scan {
    const char *p;     /* cursor */
    const char *end;   /* one past the last byte */
    const char *err;   /* where scanning failed */
    struct pobj *data; /* where the root's "data" object is recorded */
};

/* Bytes a string may hold as they are: 0x20..0x7f except '"' and '\\'. */
/* clang-format off */
static const bool plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

/* 2^1024 - 2^970: the smallest decimal that strtod rounds to infinity
 * (ties go to even, and DBL_MAX's significand is odd). */
static const char dbl_overflow_digits[] =
    "1797693134862315807937289714053034150799341327100378269361737789804449682927647509466490179775"
    "8720709633028641669288791094655554785194040263065748867150582068190890200070838367627385484581"
    "7711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699"
    "508093042880177904174497792";

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline bool is_digit(char c)
{
    return (unsigned)(unsigned char)c - '0' < 10;
}

static inline void skip_ws(struct scan *sc)
{
    while (sc->p < sc->end && is_ws(*sc->p)) {
        sc->p++;
    }
}

static inline int fail(struct scan *sc, const char *at)
{
    sc->err = at;
    return -1;
}

/* The code unit of the four hex digits at s, or -1. */
static int32_t hex4(const char *s)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = cq_text_hex_value(s[i]);
        if (d < 0) {
            return -1;
        }
        v = v << 4 | d;
    }
    return v;
}

/* One UTF-8 sequence at p (first byte >= 0x80), checked as jansson's
 * utf8_check_first/utf8_check_full do. Returns its length, or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) {
            lo = 0xa0; /* overlong */
        } else if (c == 0xed) {
            hi = 0x9f; /* UTF-16 surrogates */
        }
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) {
            lo = 0x90; /* overlong */
        } else if (c == 0xf4) {
            hi = 0x8f; /* above U+10FFFF */
        }
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

/* A string at sc->p (on its opening quote). Validates it and records its
 * raw content span in v (may be NULL). */
static int scan_string(struct scan *sc, struct val *v)
{
    const char *p = sc->p + 1;
    const char *end = sc->end;
    const char *start = p;
    bool esc = false;

    for (;;) {
        while (p < end && plain[(unsigned char)*p]) {
            p++;
        }
        if (p >= end) {
            return fail(sc, end);
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            break;
        }
        if (c == '\\') {
            esc = true;
            if (end - p < 2) {
                return fail(sc, end);
            }
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                return fail(sc, p);
            }
            if (end - p < 6) {
                return fail(sc, end);
            }
            int32_t unit = hex4(p + 2);
            if (unit <= 0) {
                return fail(sc, p); /* bad hex, or \u0000 (jansson refuses NUL) */
            }
            if (unit >= 0xdc00 && unit <= 0xdfff) {
                return fail(sc, p); /* lone low surrogate */
            }
            if (unit >= 0xd800 && unit <= 0xdbff) {
                /* must be followed by a \uDC00..\uDFFF escape */
                if (end - p < 8) {
                    return fail(sc, end);
                }
                if (p[6] != '\\' || p[7] != 'u') {
                    return fail(sc, p);
                }
                if (end - p < 12) {
                    return fail(sc, end);
                }
                int32_t low = hex4(p + 8);
                if (low < 0xdc00 || low > 0xdfff) {
                    return fail(sc, p);
                }
                p += 6;
            }
            p += 6;
            continue;
        }
        if (c < 0x20) {
            return fail(sc, p);
        }
        size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
        if (n == 0) {
            return fail(sc, p);
        }
        p += n;
    }
    if (v != NULL) {
        v->type = V_STR;
        v->s = start;
        v->n = (size_t)(p - start);
        v->esc = esc;
    }
    sc->p = p + 1;
    return 0;
}

/* Does the real whose significant digits are digits[0..n) (a nonzero
 * first digit; zero past n) and whose decimal exponent is exp10 round to
 * infinity in strtod? digits may contain one '.', skipped. */
static bool real_overflows(const char *digits, const char *digits_end, int64_t exp10)
{
    if (exp10 != 308) {
        return exp10 > 308;
    }
    const char *d = digits;
    for (size_t i = 0; i < sizeof(dbl_overflow_digits) - 1; i++) {
        while (d < digits_end && *d == '.') {
            d++;
        }
        char c = d < digits_end ? *d++ : '0';
        if (c != dbl_overflow_digits[i]) {
            return c > dbl_overflow_digits[i];
        }
    }
    return true; /* equal to the halfway point: rounds to even, i.e. up */
}

/* A number at sc->p, with jansson's grammar and range checks. */
static int scan_number(struct scan *sc, struct val *v)
{
    const char *start = sc->p;
    const char *p = start;
    const char *end = sc->end;
    bool neg = false;
    uint64_t mag = 0;
    size_t int_digits;
    const char *int_start;

    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || !is_digit(*p)) {
        return fail(sc, p);
    }
    int_start = p;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            return fail(sc, p); /* leading zero */
        }
    } else {
        while (p < end && is_digit(*p)) {
            mag = mag * 10 + (uint64_t)(*p - '0'); /* wraps past 19 digits: checked below */
            p++;
        }
    }
    int_digits = (size_t)(p - int_start);

    if (p >= end || (*p != '.' && *p != 'e' && *p != 'E')) {
        /* integer: int64 like strtoll; 19 digits cannot wrap a uint64 */
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (int_digits > 19 || mag > limit) {
            return fail(sc, start);
        }
        if (v != NULL) {
            v->type = V_INT;
            v->s = start;
            v->n = (size_t)(p - start);
            v->i = !neg ? (int64_t)mag : mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
        }
        sc->p = p;
        return 0;
    }

    /* real: [.digits][(e|E)[+-]digits]; an error only when it overflows */
    const char *frac_end = p;
    if (*p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) {
            return fail(sc, p);
        }
        while (p < end && is_digit(*p)) {
            p++;
        }
        frac_end = p;
    }
    int64_t exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        bool exp_neg = false;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            exp_neg = *p == '-';
            p++;
        }
        if (p >= end || !is_digit(*p)) {
            return fail(sc, p);
        }
        while (p < end && is_digit(*p)) {
            if (exponent < 1000000000) { /* saturate: far past any double */
                exponent = exponent * 10 + (*p - '0');
            }
            p++;
        }
        if (exp_neg) {
            exponent = -exponent;
        }
    }
    /* first significant digit and its decimal exponent */
    const char *sig = int_start;
    int64_t exp10;
    if (*int_start != '0') {
        exp10 = (int64_t)int_digits - 1 + exponent;
    } else {
        sig = int_start + 2; /* past "0." */
        while (sig < frac_end && *sig == '0') {
            sig++;
        }
        exp10 = -(int64_t)(sig - (int_start + 1)) + exponent;
        if (sig >= frac_end) {
            sig = NULL; /* the value is zero */
        }
    }
    if (sig != NULL && real_overflows(sig, frac_end, exp10)) {
        return fail(sc, start);
    }
    if (v != NULL) {
        v->type = V_REAL;
        v->s = start;
        v->n = (size_t)(p - start);
    }
    sc->p = p;
    return 0;
}

static int scan_literal(struct scan *sc, struct val *v)
{
    static const struct {
        const char *text;
        size_t len;
        uint8_t type;
    } lits[] = {{"true", 4, V_TRUE}, {"false", 5, V_FALSE}, {"null", 4, V_NULL}};
    const char *p = sc->p;

    for (size_t i = 0; i < CQ_ARRAY_LEN(lits); i++) {
        if (*p != lits[i].text[0]) {
            continue;
        }
        if ((size_t)(sc->end - p) < lits[i].len || memcmp(p, lits[i].text, lits[i].len) != 0) {
            break;
        }
        if (v != NULL) {
            v->type = lits[i].type;
            v->s = p;
            v->n = lits[i].len;
        }
        sc->p = p + lits[i].len;
        return 0;
    }
    return fail(sc, p);
}

/* A scalar at sc->p (sc->p < sc->end). */
static int scan_scalar(struct scan *sc, struct val *v)
{
    char c = *sc->p;
    if (c == '"') {
        return scan_string(sc, v);
    }
    if (c == '-' || is_digit(c)) {
        return scan_number(sc, v);
    }
    return scan_literal(sc, v);
}

/* An object or array at sc->p whose depth is `depth`, validated and
 * skipped without recursion: bit i of is_obj says whether the (i+1)-th
 * open container is an object. */
static int skip_container(struct scan *sc, unsigned depth)
{
    uint64_t is_obj[MAX_DEPTH / 64];
    unsigned open = 0; /* containers currently open */
    char c;

open_container: /* sc->p on '{' or '[' */
    c = *sc->p;
    if (c == '{') {
        is_obj[open / 64] |= (uint64_t)1 << (open % 64);
    } else {
        is_obj[open / 64] &= ~((uint64_t)1 << (open % 64));
    }
    open++;
    sc->p++;
    skip_ws(sc);
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    if (*sc->p == (c == '{' ? '}' : ']')) {
        sc->p++;
        open--;
        goto after_value;
    }
    if (c == '[') {
        goto value;
    }
    /* fall through to the first key */

key:
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    if (*sc->p != '"') {
        return fail(sc, sc->p);
    }
    if (scan_string(sc, NULL) < 0) {
        return -1;
    }
    skip_ws(sc);
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    if (*sc->p != ':') {
        return fail(sc, sc->p);
    }
    sc->p++;
    skip_ws(sc);
    /* fall through to the value */

value: /* a value inside the innermost open container */
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    if (depth + open > MAX_DEPTH) {
        return fail(sc, sc->p);
    }
    c = *sc->p;
    if (c == '{' || c == '[') {
        goto open_container;
    }
    if (scan_scalar(sc, NULL) < 0) {
        return -1;
    }
    /* fall through */

after_value:
    if (open == 0) {
        return 0;
    }
    skip_ws(sc);
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    c = *sc->p;
    bool in_obj = (is_obj[(open - 1) / 64] >> ((open - 1) % 64)) & 1;
    if (c == ',') {
        sc->p++;
        skip_ws(sc);
        if (in_obj) {
            goto key;
        }
        goto value;
    }
    if (c == (in_obj ? '}' : ']')) {
        sc->p++;
        open--;
        goto after_value;
    }
    return fail(sc, sc->p);
}

/* Any value at sc->p (sc->p < sc->end) of depth `depth`, recorded in v. */
static int scan_value(struct scan *sc, struct val *v, unsigned depth)
{
    char c = *sc->p;
    if (c == '{' || c == '[') {
        const char *start = sc->p;
        if (skip_container(sc, depth) < 0) {
            return -1;
        }
        if (v != NULL) {
            v->type = c == '{' ? V_OBJ : V_ARR;
            v->s = start;
            v->n = (size_t)(sc->p - start);
        }
        return 0;
    }
    return scan_scalar(sc, v);
}

/* Decode the body of a validated string into dst; the length, or -1 when
 * it would exceed cap. */
static ptrdiff_t unescape(const char *s, size_t n, char *dst, size_t cap)
{
    const char *end = s + n;
    size_t o = 0;

    while (s < end) {
        if (*s != '\\') {
            if (o >= cap) {
                return -1;
            }
            dst[o++] = *s++;
            continue;
        }
        char c = s[1];
        char one;
        switch (c) {
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u':
            one = 0;
            break;
        default: /* '"', '\\', '/' */
            one = c;
            break;
        }
        if (c != 'u') {
            if (o >= cap) {
                return -1;
            }
            dst[o++] = one;
            s += 2;
            continue;
        }
        uint32_t cp = (uint32_t)hex4(s + 2);
        s += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            cp = ((cp - 0xd800) << 10) + ((uint32_t)hex4(s + 2) - 0xdc00) + 0x10000;
            s += 6;
        }
        unsigned char u[4];
        size_t len;
        if (cp < 0x80) {
            u[0] = (unsigned char)cp;
            len = 1;
        } else if (cp < 0x800) {
            u[0] = (unsigned char)(0xc0 | cp >> 6);
            u[1] = (unsigned char)(0x80 | (cp & 0x3f));
            len = 2;
        } else if (cp < 0x10000) {
            u[0] = (unsigned char)(0xe0 | cp >> 12);
            u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            u[2] = (unsigned char)(0x80 | (cp & 0x3f));
            len = 3;
        } else {
            u[0] = (unsigned char)(0xf0 | cp >> 18);
            u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
            u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            u[3] = (unsigned char)(0x80 | (cp & 0x3f));
            len = 4;
        }
        if (cap - o < len) {
            return -1;
        }
        memcpy(dst + o, u, len);
        o += len;
    }
    return (ptrdiff_t)o;
}

/* Which recorded key (or -1) a key string names. */
static int key_id(enum level lv, const struct val *k)
{
    char buf[KEY_TEXT_MAX];
    const char *s = k->s;
    size_t n = k->n;

    if (k->esc) {
        ptrdiff_t len = unescape(k->s, k->n, buf, sizeof(buf));
        if (len < 0) {
            return -1;
        }
        s = buf;
        n = (size_t)len;
    }
    if (lv == LV_KLINE) {
        return n == 1 ? (int)kkey1[(unsigned char)s[0]] - 1 : -1;
    }
    switch (n) {
    case 1:
        return (int)pkey1[(unsigned char)s[0]] - 1;
    case 2:
        return memcmp(s, "id", 2) == 0 ? PK_ID : -1;
    case 4:
        return memcmp(s, "data", 4) == 0 ? PK_DATA : -1;
    case 5:
        return memcmp(s, "error", 5) == 0 ? PK_ERROR : -1;
    case 6:
        if (memcmp(s, "stream", 6) == 0) {
            return PK_STREAM;
        }
        return memcmp(s, "result", 6) == 0 ? PK_RESULT : -1;
    default:
        return -1;
    }
}

/* The object at sc->p ('{'), of depth `depth`, recording the keys of its
 * level into obj (a struct pobj, or a struct kobj for LV_KLINE). */
static int scan_object(struct scan *sc, enum level lv, void *obj, unsigned depth)
{
    struct pobj *po = lv == LV_KLINE ? NULL : obj;
    struct kobj *ko = lv == LV_KLINE ? obj : NULL;

    if (po != NULL) {
        po->seen = 0;
        po->k.seen = 0;
        po->at = sc->p;
    } else {
        ko->seen = 0;
        ko->at = sc->p;
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p >= sc->end) {
        return fail(sc, sc->end);
    }
    if (*sc->p == '}') {
        sc->p++;
        return 0;
    }
    for (;;) {
        struct val key;
        if (sc->p >= sc->end) {
            return fail(sc, sc->end);
        }
        if (*sc->p != '"') {
            return fail(sc, sc->p);
        }
        if (scan_string(sc, &key) < 0) {
            return -1;
        }
        skip_ws(sc);
        if (sc->p >= sc->end) {
            return fail(sc, sc->end);
        }
        if (*sc->p != ':') {
            return fail(sc, sc->p);
        }
        sc->p++;
        skip_ws(sc);
        if (sc->p >= sc->end) {
            return fail(sc, sc->end);
        }
        if (depth + 1 > MAX_DEPTH) {
            return fail(sc, sc->p);
        }

        int id = key_id(lv, &key);
        if (id < 0) {
            if (scan_value(sc, NULL, depth + 1) < 0) {
                return -1;
            }
        } else if (ko != NULL) {
            if (scan_value(sc, &ko->v[id], depth + 1) < 0) {
                return -1;
            }
            ko->seen |= (uint32_t)1 << id;
        } else {
            struct val *v = &po->v[id];
            const char *start = sc->p;
            int rc;
            if (*start == '{' && id == PK_k) {
                rc = scan_object(sc, LV_KLINE, &po->k, depth + 1);
            } else if (*start == '{' && id == PK_DATA && lv == LV_ROOT) {
                rc = scan_object(sc, LV_DATA, sc->data, depth + 1);
            } else {
                rc = scan_value(sc, v, depth + 1);
                start = NULL;
            }
            if (rc < 0) {
                return -1;
            }
            if (start != NULL) {
                v->type = V_OBJ;
                v->s = start;
                v->n = (size_t)(sc->p - start);
            }
            po->seen |= (uint32_t)1 << id;
        }

        skip_ws(sc);
        if (sc->p >= sc->end) {
            return fail(sc, sc->end);
        }
        if (*sc->p == ',') {
            sc->p++;
            skip_ws(sc);
            continue;
        }
        if (*sc->p == '}') {
            sc->p++;
            return 0;
        }
        return fail(sc, sc->p);
    }
}

/* ---- extraction ---------------------------------------------------------- */

/* Where a value starts (a string's opening quote), for err_offset. */
static const char *val_at(const struct val *v)
{
    return v->type == V_STR ? v->s - 1 : v->s;
}

/* A field lookup: the value, or NULL with *err at the object when absent. */
static const struct val *need(uint32_t seen, const struct val *v, int id, const char *at,
                              const char **err)
{
    if (!((seen >> id) & 1)) {
        *err = at;
        return NULL;
    }
    return &v[id];
}

static int get_int(const struct val *v, int64_t max, int64_t *out, const char **err)
{
    if (v == NULL) {
        return -1;
    }
    if (v->type != V_INT || v->i < 0 || v->i > max) {
        *err = val_at(v);
        return -1;
    }
    *out = v->i;
    return 0;
}

static int get_time(const struct val *v, int64_t *out, const char **err)
{
    return get_int(v, INT64_MAX, out, err);
}

static int get_id(const struct val *v, uint64_t *out, const char **err)
{
    int64_t i;
    if (get_int(v, INT64_MAX, &i, err) < 0) {
        return -1;
    }
    *out = (uint64_t)i;
    return 0;
}

static int get_bool(const struct val *v, bool *out, const char **err)
{
    if (v == NULL) {
        return -1;
    }
    if (v->type != V_TRUE && v->type != V_FALSE) {
        *err = val_at(v);
        return -1;
    }
    *out = v->type == V_TRUE;
    return 0;
}

static int get_dec(const struct val *v, cq_dec *out, const char **err)
{
    char buf[DEC_TEXT_MAX];
    const char *s;
    size_t n;

    if (v == NULL) {
        return -1;
    }
    if (v->type != V_STR) {
        goto bad;
    }
    s = v->s;
    n = v->n;
    if (v->esc) {
        ptrdiff_t len = unescape(v->s, v->n, buf, sizeof(buf));
        if (len < 0) {
            goto bad;
        }
        s = buf;
        n = (size_t)len;
    }
    if (n > DEC_TEXT_MAX || cq_dec_parse(s, n, out) < 0) {
        goto bad;
    }
    return 0;
bad:
    *err = val_at(v);
    return -1;
}

/* A string of 1..cap-1 bytes into dst, NUL-terminated. */
static int get_text(const struct val *v, char *dst, size_t cap, const char **err)
{
    size_t n;

    if (v == NULL) {
        return -1;
    }
    if (v->type != V_STR) {
        goto bad;
    }
    if (v->esc) {
        ptrdiff_t len = unescape(v->s, v->n, dst, cap - 1);
        if (len < 0) {
            goto bad;
        }
        n = (size_t)len;
    } else {
        n = v->n;
        if (n > cap - 1) {
            goto bad;
        }
        memcpy(dst, v->s, n);
    }
    if (n == 0) {
        goto bad;
    }
    dst[n] = '\0';
    return 0;
bad:
    *err = val_at(v);
    return -1;
}

#define PNEED(id) need(po->seen, po->v, (id), po->at, err)
#define KNEED(id) need(ko->seen, ko->v, (id), ko->at, err)
#define HAS(id) ((po->seen >> (id)) & 1)

static int get_trade(const struct pobj *po, int id_key, struct cq_msg *out, const char **err)
{
    struct cq_trade_tick *t = &out->u.trade;
    if (get_text(PNEED(PK_s), out->symbol, sizeof(out->symbol), err) < 0 ||
        get_time(PNEED(PK_E), &out->event_ms, err) < 0 ||
        get_id(PNEED(id_key), &t->trade_id, err) < 0 || get_dec(PNEED(PK_p), &t->price, err) < 0 ||
        get_dec(PNEED(PK_q), &t->qty, err) < 0 || get_time(PNEED(PK_T), &t->time_ms, err) < 0 ||
        get_bool(PNEED(PK_m), &t->buyer_is_maker, err) < 0) {
        return -1;
    }
    return 0;
}

static int get_book(const struct pobj *po, struct cq_msg *out, const char **err)
{
    struct cq_book_top *b = &out->u.book;
    if (get_text(PNEED(PK_s), out->symbol, sizeof(out->symbol), err) < 0 ||
        get_id(PNEED(PK_u), &b->update_id, err) < 0 || get_dec(PNEED(PK_b), &b->bid, err) < 0 ||
        get_dec(PNEED(PK_B), &b->bid_qty, err) < 0 || get_dec(PNEED(PK_a), &b->ask, err) < 0 ||
        get_dec(PNEED(PK_A), &b->ask_qty, err) < 0) {
        return -1;
    }
    if (HAS(PK_E) && get_time(&po->v[PK_E], &out->event_ms, err) < 0) {
        return -1;
    }
    return 0;
}

static int get_kline(const struct pobj *po, struct cq_msg *out, const char **err)
{
    struct cq_candle *c = &out->u.kline.candle;
    const struct val *k = PNEED(PK_k);
    const struct kobj *ko = &po->k;
    int64_t trades;

    if (get_text(PNEED(PK_s), out->symbol, sizeof(out->symbol), err) < 0 ||
        get_time(PNEED(PK_E), &out->event_ms, err) < 0 || k == NULL) {
        return -1;
    }
    if (k->type != V_OBJ) {
        *err = val_at(k);
        return -1;
    }
    if (get_time(KNEED(KK_t), &c->open_ms, err) < 0 ||
        get_time(KNEED(KK_T), &c->close_ms, err) < 0 || get_dec(KNEED(KK_o), &c->open, err) < 0 ||
        get_dec(KNEED(KK_h), &c->high, err) < 0 || get_dec(KNEED(KK_l), &c->low, err) < 0 ||
        get_dec(KNEED(KK_c), &c->close, err) < 0 || get_dec(KNEED(KK_v), &c->volume, err) < 0 ||
        get_dec(KNEED(KK_q), &c->quote_volume, err) < 0 ||
        get_int(KNEED(KK_n), UINT32_MAX, &trades, err) < 0 ||
        get_bool(KNEED(KK_x), &c->closed, err) < 0 ||
        get_text(KNEED(KK_i), out->u.kline.interval, sizeof(out->u.kline.interval), err) < 0) {
        return -1;
    }
    c->trades = (uint32_t)trades;
    return 0;
}

static int get_depth(const struct pobj *po, struct cq_msg *out, const char **err)
{
    if (get_text(PNEED(PK_s), out->symbol, sizeof(out->symbol), err) < 0 ||
        get_time(PNEED(PK_E), &out->event_ms, err) < 0 ||
        get_id(PNEED(PK_U), &out->u.depth.first_update_id, err) < 0 ||
        get_id(PNEED(PK_u), &out->u.depth.last_update_id, err) < 0) {
        return -1;
    }
    return 0;
}

static bool text_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int extract(const struct pobj *root, const struct pobj *data, struct cq_msg *out,
                   const char **err)
{
    const struct pobj *po = root;

    if ((root->seen >> PK_STREAM) & 1) {
        const struct val *d = need(root->seen, root->v, PK_DATA, root->at, err);
        if (get_text(&root->v[PK_STREAM], out->stream, sizeof(out->stream), err) < 0 || d == NULL) {
            return -1;
        }
        if (d->type != V_OBJ) {
            *err = val_at(d);
            return -1;
        }
        po = data;
    }

    if (HAS(PK_e)) {
        const struct val *e = &po->v[PK_e];
        char buf[EVENT_TEXT_MAX];
        const char *s = e->s;
        size_t n = e->n;
        if (e->type != V_STR) {
            *err = val_at(e);
            return -1;
        }
        if (e->esc) {
            ptrdiff_t len = unescape(e->s, e->n, buf, sizeof(buf));
            n = len < 0 ? 0 : (size_t)len; /* too long: no known name */
            s = buf;
        }
        if (text_is(s, n, "trade")) {
            out->kind = CQ_MSG_TRADE;
            return get_trade(po, PK_t, out, err);
        }
        if (text_is(s, n, "aggTrade")) {
            out->kind = CQ_MSG_AGG_TRADE;
            return get_trade(po, PK_a, out, err);
        }
        if (text_is(s, n, "depthUpdate")) {
            out->kind = CQ_MSG_DEPTH_UPDATE;
            return get_depth(po, out, err);
        }
        if (text_is(s, n, "kline")) {
            out->kind = CQ_MSG_KLINE;
            return get_kline(po, out, err);
        }
        if (text_is(s, n, "bookTicker")) {
            out->kind = CQ_MSG_BOOK_TICKER;
            return get_book(po, out, err);
        }
        out->kind = CQ_MSG_EVENT_OTHER;
        return 0;
    }
    if (HAS(PK_u) && HAS(PK_s)) {
        out->kind = CQ_MSG_BOOK_TICKER;
        return get_book(po, out, err);
    }
    if (HAS(PK_ID) && (HAS(PK_RESULT) || HAS(PK_ERROR))) {
        out->kind = CQ_MSG_CONTROL;
        return 0;
    }
    out->kind = CQ_MSG_EVENT_OTHER;
    return 0;
}

#undef PNEED
#undef KNEED
#undef HAS

int cq_codec_decode(const char *data, size_t len, struct cq_msg *out, size_t *err_offset)
{
    struct pobj root;
    struct pobj payload;
    struct scan sc;
    const char *err = data;

    memset(out, 0, sizeof(*out));
    if (data == NULL) {
        if (err_offset != NULL) {
            *err_offset = 0;
        }
        return -CQ_EPARSE;
    }
    sc.p = data;
    sc.end = data + len;
    sc.err = data;
    sc.data = &payload;
    payload.seen = 0;

    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') {
        err = sc.p; /* empty, a scalar or an array: the contract wants an object */
        goto fail;
    }
    if (scan_object(&sc, LV_ROOT, &root, 1) < 0) {
        err = sc.err;
        goto fail;
    }
    skip_ws(&sc);
    if (sc.p != sc.end) {
        err = sc.p;
        goto fail;
    }
    if (extract(&root, &payload, out, &err) < 0) {
        goto fail;
    }
    return 0;

fail:
    memset(out, 0, sizeof(*out));
    if (err_offset != NULL) {
        *err_offset = (size_t)(err - data);
    }
    return -CQ_EPARSE;
}

const char *cq_msg_kind_name(enum cq_msg_kind kind)
{
    switch (kind) {
    case CQ_MSG_TRADE:
        return "trade";
    case CQ_MSG_AGG_TRADE:
        return "aggTrade";
    case CQ_MSG_BOOK_TICKER:
        return "bookTicker";
    case CQ_MSG_KLINE:
        return "kline";
    case CQ_MSG_DEPTH_UPDATE:
        return "depthUpdate";
    case CQ_MSG_CONTROL:
        return "control";
    case CQ_MSG_EVENT_OTHER:
        return "other";
    }
    return "unknown";
}

/* ---- sanity rules ------------------------------------------------------------
 * The rules `coinquantd indicators` applies to a CSV row, applied to every
 * decoded market value (stream and REST alike, see codec.h). Well-formed
 * JSON can still carry a price of -1; these catch what the grammar cannot. */

static bool time_plausible(int64_t ms)
{
    return ms >= CQ_MARKET_TIME_MIN_MS && ms < CQ_MARKET_TIME_MAX_MS;
}

const char *cq_market_check_candle(const struct cq_candle *c)
{
    if (cq_dec_sign(c->open) <= 0 || cq_dec_sign(c->high) <= 0 || cq_dec_sign(c->low) <= 0 ||
        cq_dec_sign(c->close) <= 0) {
        return "price_not_positive";
    }
    if (cq_dec_sign(c->volume) < 0 || cq_dec_sign(c->quote_volume) < 0) {
        return "quantity_negative";
    }
    if (cq_dec_cmp(c->low, c->open) > 0 || cq_dec_cmp(c->low, c->close) > 0) {
        return "low_above_open_or_close";
    }
    if (cq_dec_cmp(c->high, c->open) < 0 || cq_dec_cmp(c->high, c->close) < 0) {
        return "high_below_open_or_close";
    }
    if (!time_plausible(c->open_ms) || !time_plausible(c->close_ms)) {
        return "time_implausible";
    }
    if (c->close_ms < c->open_ms) {
        return "close_before_open";
    }
    return NULL;
}

const char *cq_market_check_book(const struct cq_book_top *b)
{
    if (cq_dec_sign(b->bid) <= 0 || cq_dec_sign(b->ask) <= 0) {
        return "price_not_positive";
    }
    if (cq_dec_sign(b->bid_qty) < 0 || cq_dec_sign(b->ask_qty) < 0) {
        return "quantity_negative";
    }
    if (cq_dec_cmp(b->bid, b->ask) >= 0) {
        return "book_crossed";
    }
    return NULL;
}

const char *cq_market_check_trade(const struct cq_trade_tick *t)
{
    if (cq_dec_sign(t->price) <= 0) {
        return "price_not_positive";
    }
    if (cq_dec_sign(t->qty) < 0) {
        return "quantity_negative";
    }
    if (!time_plausible(t->time_ms)) {
        return "time_implausible";
    }
    return NULL;
}

const char *cq_msg_check(const struct cq_msg *m)
{
    if (m->event_ms != 0 && !time_plausible(m->event_ms)) {
        return "time_implausible";
    }
    switch (m->kind) {
    case CQ_MSG_TRADE:
    case CQ_MSG_AGG_TRADE:
        return cq_market_check_trade(&m->u.trade);
    case CQ_MSG_BOOK_TICKER:
        return cq_market_check_book(&m->u.book);
    case CQ_MSG_KLINE:
        return cq_market_check_candle(&m->u.kline.candle);
    case CQ_MSG_DEPTH_UPDATE:
        return m->u.depth.first_update_id > m->u.depth.last_update_id ? "update_ids_backwards"
                                                                      : NULL;
    case CQ_MSG_CONTROL:
    case CQ_MSG_EVENT_OTHER:
        break;
    }
    return NULL;
}
