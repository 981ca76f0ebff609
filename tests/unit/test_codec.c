/*
 * test_codec.c — the market-message decoders (include/cq/codec.h): the fast
 * scanner (server/exchange/codec.c) and the jansson reference
 * (server/exchange/codec_jansson.c).
 *
 *   codec_samples     every sample in ../shared/data/ws/samples with its exact
 *                     field values (spot and USD-M futures), both decoders;
 *   codec_recordings  every line of the ../shared/data/ws/recordings files
 *                     decoded by both, compared field by field (cq_dec by
 *                     mantissa and scale), kind counts per file as the data
 *                     README states them, depth U == previous u + 1 and
 *                     trade ids contiguous within each file, symbol and
 *                     stream consistent;
 *   codec_edge        a table of hand-written messages (key order, extra
 *                     keys, whitespace, escapes, wrong types, missing
 *                     fields, limits, malformed JSON): expected result for
 *                     both decoders, and both agree;
 *   codec_truncation  every proper prefix of real messages is an error for
 *                     both, with the fast path's err_offset inside it;
 *   codec_limits      nesting depth and number ranges at jansson's exact
 *                     boundaries; error offsets; fixtures in tests/data/codec.
 *
 * ../shared/data missing: the data tests skip, or fail when CI is set.
 * Buffers handed to the decoders are heap copies of exactly the message
 * length, so a sanitizer build catches any read past the end.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cq/codec.h"
#include "cq/decimal.h"
#include "support/shared_data.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif
#ifndef CQ_SOURCE_DIR
#define CQ_SOURCE_DIR "."
#endif

#define SAMPLES_DIR CQ_SHARED_DIR "/data/ws/samples/"
#define RECORDINGS_DIR CQ_SHARED_DIR "/data/ws/recordings/"
#define FIXTURES_DIR CQ_SOURCE_DIR "/tests/data/codec/"

/* ---- helpers ------------------------------------------------------------- */

/* Whole file (gzip or plain: gzread reads both) into a malloc'd buffer. */
static char *slurp(const char *path, size_t *len_out)
{
    gzFile gz = gzopen(path, "rb");
    size_t cap = 1 << 20;
    size_t len = 0;
    char *buf;

    if (gz == NULL) {
        return NULL;
    }
    buf = malloc(cap);
    cr_assert_not_null(buf);
    for (;;) {
        if (cap - len < (1 << 16)) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        int n = gzread(gz, buf + len, (unsigned)(cap - len - 1));
        cr_assert_geq(n, 0, "gzread %s failed", path);
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    gzclose(gz);
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

/* Decode with one decoder from an exact-size heap copy. */
typedef int (*decode_fn)(const char *, size_t, struct cq_msg *, size_t *);

static int decode_exact(decode_fn fn, const char *data, size_t len, struct cq_msg *out,
                        size_t *err_offset)
{
    char *copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, data, len);
    int rc = fn(copy, len, out, err_offset);
    free(copy);
    return rc;
}

static bool dec_eq(cq_dec a, cq_dec b)
{
    return a.m == b.m && a.scale == b.scale;
}

/* The first field where a and b differ ("" when equal), into buf. */
static const char *msg_diff(const struct cq_msg *a, const struct cq_msg *b, char *buf, size_t cap)
{
#define DIFF(cond, name)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(buf, cap, "%s", name);                                                        \
            return buf;                                                                            \
        }                                                                                          \
    } while (0)
    DIFF(a->kind == b->kind, "kind");
    DIFF(strcmp(a->stream, b->stream) == 0, "stream");
    DIFF(strcmp(a->symbol, b->symbol) == 0, "symbol");
    DIFF(a->event_ms == b->event_ms, "event_ms");
    switch (a->kind) {
    case CQ_MSG_TRADE:
    case CQ_MSG_AGG_TRADE:
        DIFF(a->u.trade.trade_id == b->u.trade.trade_id, "trade_id");
        DIFF(dec_eq(a->u.trade.price, b->u.trade.price), "price");
        DIFF(dec_eq(a->u.trade.qty, b->u.trade.qty), "qty");
        DIFF(a->u.trade.time_ms == b->u.trade.time_ms, "time_ms");
        DIFF(a->u.trade.buyer_is_maker == b->u.trade.buyer_is_maker, "buyer_is_maker");
        break;
    case CQ_MSG_BOOK_TICKER:
        DIFF(dec_eq(a->u.book.bid, b->u.book.bid), "bid");
        DIFF(dec_eq(a->u.book.bid_qty, b->u.book.bid_qty), "bid_qty");
        DIFF(dec_eq(a->u.book.ask, b->u.book.ask), "ask");
        DIFF(dec_eq(a->u.book.ask_qty, b->u.book.ask_qty), "ask_qty");
        DIFF(a->u.book.update_id == b->u.book.update_id, "update_id");
        break;
    case CQ_MSG_KLINE:
        DIFF(a->u.kline.candle.open_ms == b->u.kline.candle.open_ms, "open_ms");
        DIFF(a->u.kline.candle.close_ms == b->u.kline.candle.close_ms, "close_ms");
        DIFF(dec_eq(a->u.kline.candle.open, b->u.kline.candle.open), "open");
        DIFF(dec_eq(a->u.kline.candle.high, b->u.kline.candle.high), "high");
        DIFF(dec_eq(a->u.kline.candle.low, b->u.kline.candle.low), "low");
        DIFF(dec_eq(a->u.kline.candle.close, b->u.kline.candle.close), "close");
        DIFF(dec_eq(a->u.kline.candle.volume, b->u.kline.candle.volume), "volume");
        DIFF(dec_eq(a->u.kline.candle.quote_volume, b->u.kline.candle.quote_volume),
             "quote_volume");
        DIFF(a->u.kline.candle.trades == b->u.kline.candle.trades, "trades");
        DIFF(a->u.kline.candle.closed == b->u.kline.candle.closed, "closed");
        DIFF(strcmp(a->u.kline.interval, b->u.kline.interval) == 0, "interval");
        break;
    case CQ_MSG_DEPTH_UPDATE:
        DIFF(a->u.depth.first_update_id == b->u.depth.first_update_id, "first_update_id");
        DIFF(a->u.depth.last_update_id == b->u.depth.last_update_id, "last_update_id");
        break;
    case CQ_MSG_CONTROL:
    case CQ_MSG_EVENT_OTHER:
        break;
    }
#undef DIFF
    buf[0] = '\0';
    return buf;
}

/* Decode with both; they must agree on rc and, on success, on every
 * field. Returns the rc; *out gets the fast path's result. */
static int decode_both(const char *what, const char *data, size_t len, struct cq_msg *out)
{
    struct cq_msg ref;
    size_t off_fast = (size_t)-1;
    size_t off_ref = (size_t)-1;
    char diff[64];

    int rc_fast = decode_exact(cq_codec_decode, data, len, out, &off_fast);
    int rc_ref = decode_exact(cq_codec_decode_jansson, data, len, &ref, &off_ref);
    cr_assert(rc_fast == 0 || rc_fast == -CQ_EPARSE, "%s: fast rc %d", what, rc_fast);
    cr_assert_eq(rc_fast, rc_ref, "%s: fast rc %d at %zu, jansson rc %d at %zu: %.*s", what,
                 rc_fast, off_fast, rc_ref, off_ref, (int)(len < 300 ? len : 300), data);
    if (rc_fast == 0) {
        cr_assert_str_empty(msg_diff(out, &ref, diff, sizeof(diff)),
                            "%s: decoders disagree on %s: %.*s", what, diff,
                            (int)(len < 300 ? len : 300), data);
    } else {
        cr_assert_leq(off_fast, len, "%s: err_offset %zu past len %zu", what, off_fast, len);
        cr_assert_leq(off_ref, len, "%s: jansson err_offset %zu past len %zu", what, off_ref, len);
        cr_assert_eq(out->kind, 0, "%s: *out not cleared on error", what);
        cr_assert_eq(out->symbol[0], '\0', "%s: *out not cleared on error", what);
    }
    return rc_fast;
}

static cq_dec D(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "test literal %s", s);
    return d;
}

#define expect_dec(got, text)                                                                      \
    do {                                                                                           \
        cq_dec want_ = D(text);                                                                    \
        cr_expect(dec_eq((got), want_), "%s: got %" PRId64 "e-%u, want %s", #got, (got).m,         \
                  (unsigned)(got).scale, text);                                                    \
    } while (0)

/* A sample file decoded by both decoders (they agree), or skip. */
static void decode_sample(const char *name, struct cq_msg *m)
{
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s%s", SAMPLES_DIR, name);
    char *text = slurp(path, &len);
    if (text == NULL) {
        cq_test_shared_missing(path);
    }
    int rc = decode_both(name, text, len, m);
    cr_assert_eq(rc, 0, "%s does not decode", name);
    free(text);
}

/* ---- samples ------------------------------------------------------------- */

Test(codec_samples, spot_trade)
{
    struct cq_msg m;
    decode_sample("spot-trade.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_TRADE);
    cr_expect_str_eq(m.stream, "btcusdt@trade");
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 1723161255343);
    cr_expect_eq(m.u.trade.trade_id, 3735683259u);
    expect_dec(m.u.trade.price, "61837.63000000");
    expect_dec(m.u.trade.qty, "0.02000000");
    cr_expect_eq(m.u.trade.time_ms, 1723161255342);
    cr_expect(m.u.trade.buyer_is_maker);
}

Test(codec_samples, spot_agg_trade)
{
    struct cq_msg m;
    decode_sample("spot-aggTrade.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_AGG_TRADE);
    cr_expect_str_eq(m.stream, "nknusdt@aggTrade");
    cr_expect_str_eq(m.symbol, "NKNUSDT");
    cr_expect_eq(m.event_ms, 1633998523963);
    cr_expect_eq(m.u.trade.trade_id, 15683430u, "agg id, not f/l");
    expect_dec(m.u.trade.price, "0.35280000");
    expect_dec(m.u.trade.qty, "58.00000000");
    cr_expect_eq(m.u.trade.time_ms, 1633998523963);
    cr_expect_not(m.u.trade.buyer_is_maker);
}

Test(codec_samples, spot_book_ticker)
{
    struct cq_msg m;
    decode_sample("spot-bookTicker.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_BOOK_TICKER);
    cr_expect_str_eq(m.stream, "btcusdt@bookTicker");
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 0, "spot bookTicker has no E");
    cr_expect_eq(m.u.book.update_id, 50093239212u);
    expect_dec(m.u.book.bid, "61837.63000000");
    expect_dec(m.u.book.bid_qty, "3.78826000");
    expect_dec(m.u.book.ask, "61837.64000000");
    expect_dec(m.u.book.ask_qty, "1.54698000");
}

Test(codec_samples, spot_depth_update)
{
    struct cq_msg m;
    decode_sample("spot-depthUpdate.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_DEPTH_UPDATE);
    cr_expect_str_eq(m.stream, "btcusdt@depth@100ms");
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 1723161255208);
    cr_expect_eq(m.u.depth.first_update_id, 50093239189u);
    cr_expect_eq(m.u.depth.last_update_id, 50093239202u);
}

Test(codec_samples, spot_kline)
{
    struct cq_msg m;
    decode_sample("spot-kline.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_KLINE);
    cr_expect_str_eq(m.stream, "nknusdt@kline_1m");
    cr_expect_str_eq(m.symbol, "NKNUSDT");
    cr_expect_eq(m.event_ms, 1633998523963);
    cr_expect_eq(m.u.kline.candle.open_ms, 1633998480000);
    cr_expect_eq(m.u.kline.candle.close_ms, 1633998539999);
    cr_expect_str_eq(m.u.kline.interval, "1m");
    expect_dec(m.u.kline.candle.open, "0.35270000");
    expect_dec(m.u.kline.candle.close, "0.35280000");
    expect_dec(m.u.kline.candle.high, "0.35280000");
    expect_dec(m.u.kline.candle.low, "0.35220000");
    expect_dec(m.u.kline.candle.volume, "25877.00000000");
    expect_dec(m.u.kline.candle.quote_volume, "9116.04600000");
    cr_expect_eq(m.u.kline.candle.trades, 30u);
    cr_expect_not(m.u.kline.candle.closed, "the sample is an open candle (x:false)");
}

/* USD-M futures payloads share the spot event names; the codec decodes
 * them by the same rules (it cannot and need not tell the venues apart:
 * the feeder knows what it subscribed to). */
Test(codec_samples, futures_trade)
{
    struct cq_msg m;
    decode_sample("futures-um-trade.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_TRADE);
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 1680652807006);
    cr_expect_eq(m.u.trade.trade_id, 3535188229u);
    expect_dec(m.u.trade.price, "28155.10");
    expect_dec(m.u.trade.qty, "0.001");
    cr_expect_eq(m.u.trade.time_ms, 1680652804962);
    cr_expect(m.u.trade.buyer_is_maker);
}

Test(codec_samples, futures_book_ticker_has_event_time)
{
    struct cq_msg m;
    decode_sample("futures-um-bookTicker.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_BOOK_TICKER);
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 1680652800093);
    cr_expect_eq(m.u.book.update_id, 2710249422918u);
    expect_dec(m.u.book.bid, "28155.10");
    expect_dec(m.u.book.bid_qty, "0.060");
    expect_dec(m.u.book.ask, "28155.20");
    expect_dec(m.u.book.ask_qty, "3.793");
}

Test(codec_samples, futures_depth_update)
{
    struct cq_msg m;
    decode_sample("futures-um-depthUpdate.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_DEPTH_UPDATE);
    cr_expect_str_eq(m.stream, "btcusdt@depth@0ms");
    cr_expect_eq(m.event_ms, 1680652800016);
    cr_expect_eq(m.u.depth.first_update_id, 2710249412206u);
    cr_expect_eq(m.u.depth.last_update_id, 2710249413621u);
}

Test(codec_samples, futures_mark_price_is_other)
{
    struct cq_msg m;
    decode_sample("futures-um-markPrice.json", &m);
    cr_expect_eq(m.kind, CQ_MSG_EVENT_OTHER);
    cr_expect_str_eq(m.stream, "btcusdt@markPrice@1s");
    cr_expect_str_eq(m.symbol, "", "OTHER carries no symbol");
    cr_expect_eq(m.event_ms, 0);
}

/* ---- recordings ---------------------------------------------------------- */

struct recording {
    const char *file;
    int lines, trades, books, depths, others;
};

/* Per-file counts from ../shared/data/README.md §4 (the REST depth
 * snapshot line is the one OTHER in each 20240808 file). */
static const struct recording recordings[] = {
    {"binance-spot-BTCUSDT-20230405.txt.gz", 15088, 3144, 8015, 3929, 0},
    {"binance-spot-BTCUSDT-20240808.txt.gz", 41249, 9757, 28040, 3451, 1},
    {"binance-spot-BTCUSDT-20240809.txt.gz", 58325, 10147, 45134, 3044, 0},
    {"binance-spot-ETHUSDT-20240808.txt.gz", 33618, 6106, 24077, 3434, 1},
    {"binance-spot-ETHUSDT-20240809.txt.gz", 46126, 8409, 34681, 3036, 0},
};

static void check_recording(const struct recording *rec)
{
    char path[512];
    size_t len = 0;
    struct recording got = {rec->file, 0, 0, 0, 0, 0};
    uint64_t prev_u = 0;
    uint64_t prev_trade = 0;
    char what[128];

    snprintf(path, sizeof(path), "%s%s", RECORDINGS_DIR, rec->file);
    char *text = slurp(path, &len);
    if (text == NULL) {
        cq_test_shared_missing(path);
    }
    char *line = text;
    char *end = text + len;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *eol = nl != NULL ? nl : end;
        char *sp = memchr(line, ' ', (size_t)(eol - line));
        struct cq_msg m;

        got.lines++;
        snprintf(what, sizeof(what), "%s line %d", rec->file, got.lines);
        cr_assert_not_null(sp, "%s: no '<recv_ts> <json>'", what);
        const char *json = sp + 1;
        size_t json_len = (size_t)(eol - json);
        cr_assert_eq(decode_both(what, json, json_len, &m), 0, "%s does not decode: %.200s", what,
                     json);

        switch (m.kind) {
        case CQ_MSG_TRADE:
            got.trades++;
            cr_assert(prev_trade == 0 || m.u.trade.trade_id == prev_trade + 1,
                      "%s: trade id %" PRIu64 " after %" PRIu64, what, m.u.trade.trade_id,
                      prev_trade);
            prev_trade = m.u.trade.trade_id;
            cr_assert(m.u.trade.price.m > 0 && m.u.trade.price.scale == 8, "%s: price", what);
            cr_assert(m.u.trade.time_ms <= m.event_ms, "%s: T after E", what);
            break;
        case CQ_MSG_BOOK_TICKER:
            got.books++;
            cr_assert(cq_dec_cmp(m.u.book.bid, m.u.book.ask) < 0, "%s: bid >= ask", what);
            cr_assert_eq(m.event_ms, 0, "%s: spot bookTicker has no E", what);
            break;
        case CQ_MSG_DEPTH_UPDATE:
            got.depths++;
            cr_assert(prev_u == 0 || m.u.depth.first_update_id == prev_u + 1,
                      "%s: U %" PRIu64 " after u %" PRIu64, what, m.u.depth.first_update_id,
                      prev_u);
            cr_assert_geq(m.u.depth.last_update_id, m.u.depth.first_update_id, "%s", what);
            prev_u = m.u.depth.last_update_id;
            break;
        case CQ_MSG_EVENT_OTHER:
            got.others++;
            cr_assert(strncmp(json, "{\"lastUpdateId\":", 16) == 0,
                      "%s: only the REST snapshot should be OTHER", what);
            cr_assert_str_empty(m.stream, "%s", what);
            break;
        default:
            cr_assert_fail("%s: unexpected kind %s", what, cq_msg_kind_name(m.kind));
        }
        if (m.kind != CQ_MSG_EVENT_OTHER) {
            /* "btcusdt@…" carries "BTCUSDT" */
            size_t n = strlen(m.symbol);
            cr_assert_gt(n, 0u, "%s", what);
            cr_assert_eq(m.stream[n], '@', "%s: stream %s, symbol %s", what, m.stream, m.symbol);
            for (size_t i = 0; i < n; i++) {
                cr_assert_eq(toupper((unsigned char)m.stream[i]), m.symbol[i], "%s", what);
            }
        }
        line = eol + 1;
    }
    free(text);
    cr_expect_eq(got.lines, rec->lines, "%s: lines", rec->file);
    cr_expect_eq(got.trades, rec->trades, "%s: trades", rec->file);
    cr_expect_eq(got.books, rec->books, "%s: bookTickers", rec->file);
    cr_expect_eq(got.depths, rec->depths, "%s: depth updates", rec->file);
    cr_expect_eq(got.others, rec->others, "%s: others", rec->file);
}

Test(codec_recordings, btcusdt_20230405, .timeout = 120)
{
    check_recording(&recordings[0]);
}

Test(codec_recordings, btcusdt_20240808, .timeout = 120)
{
    check_recording(&recordings[1]);
}

Test(codec_recordings, btcusdt_20240809, .timeout = 120)
{
    check_recording(&recordings[2]);
}

Test(codec_recordings, ethusdt_20240808, .timeout = 120)
{
    check_recording(&recordings[3]);
}

Test(codec_recordings, ethusdt_20240809, .timeout = 120)
{
    check_recording(&recordings[4]);
}

/* ---- edge-case table ----------------------------------------------------- */

#define ERR (-1) /* want: -CQ_EPARSE */
#define SAME 1   /* check: equal to the canonical trade below */

/* The canonical trade (the spot sample, unwrapped) the SAME rows match. */
static const char canon_trade[] =
    "{\"e\":\"trade\",\"E\":1723161255343,\"s\":\"BTCUSDT\",\"t\":3735683259,"
    "\"p\":\"61837.63000000\",\"q\":\"0.02000000\",\"T\":1723161255342,\"m\":true,\"M\":true}";

#define TRADE_TAIL                                                                                 \
    "\"t\":3735683259,\"p\":\"61837.63000000\",\"q\":\"0.02000000\",\"T\":1723161255342,\"m\":"    \
    "true"
#define TRADE_HEAD "\"e\":\"trade\",\"E\":1723161255343,\"s\":\"BTCUSDT\","
#define BOOK_BODY                                                                                  \
    "\"u\":400900217,\"s\":\"BNBUSDT\",\"b\":\"25.35190000\",\"B\":\"31.21000000\",\"a\":\"25."    \
    "36520000\",\"A\":\"40.66000000\""
#define KLINE_K                                                                                    \
    "\"t\":1672515780000,\"T\":1672515839999,\"s\":\"BNBBTC\",\"i\":\"1m\",\"o\":\"0.0010\","      \
    "\"c\":\"0.0020\",\"h\":\"0.0025\",\"l\":\"0.0015\",\"v\":\"1000\",\"n\":100,\"x\":false,"     \
    "\"q\":\"1.0000\""
#define KLINE_HEAD "\"e\":\"kline\",\"E\":1672515782136,\"s\":\"BNBBTC\","
#define DEPTH_HEAD "\"e\":\"depthUpdate\",\"E\":1672515782136,\"s\":\"BNBBTC\","

struct edge {
    const char *name;
    const char *json;
    size_t len; /* 0: strlen(json) */
    int want;   /* ERR, or an enum cq_msg_kind */
    int check;  /* SAME: must equal canon_trade's decode (stream aside) */
};

/* clang-format off */
static const struct edge edges[] = {
    /* top level */
    {"empty input", "", 0, ERR, 0},
    {"whitespace only", " \t\r\n", 0, ERR, 0},
    {"empty object", "{}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"empty object, spaced", " \n{ \t}\r\n", 0, CQ_MSG_EVENT_OTHER, 0},
    {"top-level array", "[{\"e\":\"trade\"}]", 0, ERR, 0},
    {"top-level string", "\"trade\"", 0, ERR, 0},
    {"top-level number", "1", 0, ERR, 0},
    {"top-level null", "null", 0, ERR, 0},
    {"two objects", "{}{}", 0, ERR, 0},
    {"trailing garbage", "{}x", 0, ERR, 0},
    {"trailing comma after object", "{},", 0, ERR, 0},
    {"trailing NUL", "{}\0", 3, ERR, 0},
    {"trailing whitespace", "{} \n\t\r ", 0, CQ_MSG_EVENT_OTHER, 0},
    {"unclosed object", "{", 0, ERR, 0},
    {"unbalanced close", "{}}", 0, ERR, 0},
    {"mismatched bracket", "{\"x\":[1}", 0, ERR, 0},
    {"mismatched bracket nested", "{\"x\":{\"y\":[}]}", 0, ERR, 0},
    {"trailing comma in object", "{\"x\":1,}", 0, ERR, 0},
    {"trailing comma in array", "{\"x\":[1,]}", 0, ERR, 0},
    {"missing colon", "{\"x\" 1}", 0, ERR, 0},
    {"missing value", "{\"x\":}", 0, ERR, 0},
    {"missing comma", "{\"x\":1 \"y\":2}", 0, ERR, 0},
    {"unquoted key", "{x:1}", 0, ERR, 0},
    {"single quotes", "{'x':1}", 0, ERR, 0},
    {"number key", "{1:1}", 0, ERR, 0},
    {"byte >= 0x80 outside strings", "{\"x\":1\xc3\xa9}", 0, ERR, 0},

    /* trades: accepted variants equal to the canonical decode */
    {"canonical trade", canon_trade, 0, CQ_MSG_TRADE, SAME},
    {"wrapped trade", "{\"stream\":\"btcusdt@trade\",\"data\":{" TRADE_HEAD TRADE_TAIL "}}", 0,
     CQ_MSG_TRADE, SAME},
    {"wrapped, data before stream", "{\"data\":{" TRADE_HEAD TRADE_TAIL "},\"stream\":\"x@trade\"}",
     0, CQ_MSG_TRADE, SAME},
    {"keys shuffled",
     "{\"m\":true,\"T\":1723161255342,\"q\":\"0.02000000\",\"p\":\"61837.63000000\","
     "\"t\":3735683259,\"s\":\"BTCUSDT\",\"E\":1723161255343,\"e\":\"trade\"}",
     0, CQ_MSG_TRADE, SAME},
    {"extra keys of every type",
     "{\"x\":{\"a\":[1,-2.5e-3,{\"b\":null}],\"c\":\"\\\"}\"},\"y\":[],\"z\":{},\"f\":false,"
     "\"n\":null,\"r\":-0.0E+10,\"b\":20720542158,\"a\":20720542592," TRADE_HEAD TRADE_TAIL
     ",\"M\":\"not a bool\",\"w\":\"\\u00e9\\ud83d\\ude00\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
     0, CQ_MSG_TRADE, SAME},
    {"whitespace between every token",
     " \r\n\t{ \"e\" :\t\"trade\" ,\n\"E\"\r:\n1723161255343 , \"s\" : \"BTCUSDT\" , \"t\" : "
     "3735683259 , \"p\" : \"61837.63000000\" , \"q\" : \"0.02000000\" , \"T\" : 1723161255342 "
     ", \"m\" : true , \"ignored\" : [ 1 , { \"k\" : [ ] } ] } \n",
     0, CQ_MSG_TRADE, SAME},
    {"escaped symbol", "{" "\"e\":\"trade\",\"E\":1723161255343,\"s\":\"\\u0042TCUSD\\u0054\"," TRADE_TAIL "}",
     0, CQ_MSG_TRADE, SAME},
    {"escaped key and event name",
     "{\"\\u0065\":\"tr\\u0061de\",\"E\":1723161255343,\"\\u0073\":\"BTCUSDT\"," TRADE_TAIL "}", 0,
     CQ_MSG_TRADE, SAME},
    {"escaped decimal",
     "{" TRADE_HEAD "\"t\":3735683259,\"p\":\"\\u0036\\u00318\\/37.63000000\",\"q\":\"0.02000000\","
     "\"T\":1723161255342,\"m\":true}",
     0, ERR, 0},
    {"escaped decimal digits",
     "{" TRADE_HEAD "\"t\":3735683259,\"p\":\"\\u003618\\u00337.63000000\",\"q\":\"0.02000000\","
     "\"T\":1723161255342,\"m\":true}",
     0, CQ_MSG_TRADE, SAME},
    {"escaped stream", "{\"stream\":\"btcusdt\\u0040trade\",\"data\":" "{" TRADE_HEAD TRADE_TAIL "}}",
     0, CQ_MSG_TRADE, SAME},
    {"duplicate key: last wins",
     "{\"p\":\"1.0\",\"e\":\"kline\"," TRADE_HEAD TRADE_TAIL ",\"s\":\"BTCUSDT\"}", 0, CQ_MSG_TRADE,
     SAME},
    {"duplicate data: last wins",
     "{\"stream\":\"s\",\"data\":{\"e\":\"aggTrade\"},\"data\":{" TRADE_HEAD TRADE_TAIL "}}", 0,
     CQ_MSG_TRADE, SAME},
    {"duplicate data, last not an object",
     "{\"stream\":\"s\",\"data\":{" TRADE_HEAD TRADE_TAIL "},\"data\":[]}", 0, ERR, 0},
    {"M missing is fine", "{" TRADE_HEAD TRADE_TAIL "}", 0, CQ_MSG_TRADE, SAME},
    {"id -0 is 0", "{" TRADE_HEAD "\"t\":-0,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":false}", 0,
     CQ_MSG_TRADE, 0},
    {"id INT64_MAX", "{" TRADE_HEAD "\"t\":9223372036854775807,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":false}",
     0, CQ_MSG_TRADE, 0},
    {"negative decimal (cq_dec_parse accepts it)",
     "{" TRADE_HEAD "\"t\":1,\"p\":\"-1.5\",\"q\":\"1\",\"T\":1,\"m\":false}", 0, CQ_MSG_TRADE, 0},

    /* trades: wrong types */
    {"price as number", "{" TRADE_HEAD "\"t\":1,\"p\":61837.63,\"q\":\"1\",\"T\":1,\"m\":true}", 0,
     ERR, 0},
    {"qty as number", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":2,\"T\":1,\"m\":true}", 0, ERR, 0},
    {"trade id as string", "{" TRADE_HEAD "\"t\":\"3735683259\",\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}",
     0, ERR, 0},
    {"trade id as real", "{" TRADE_HEAD "\"t\":3735683259.0,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}",
     0, ERR, 0},
    {"trade id with exponent", "{" TRADE_HEAD "\"t\":1e3,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0,
     ERR, 0},
    {"E as string", "{\"e\":\"trade\",\"E\":\"1723161255343\",\"s\":\"BTCUSDT\"," TRADE_TAIL "}", 0,
     ERR, 0},
    {"T as null", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":null,\"m\":true}", 0, ERR, 0},
    {"m as string", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":\"true\"}", 0, ERR, 0},
    {"m as number", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":1}", 0, ERR, 0},
    {"s as number", "{\"e\":\"trade\",\"E\":1,\"s\":42," TRADE_TAIL "}", 0, ERR, 0},
    {"s as array", "{\"e\":\"trade\",\"E\":1,\"s\":[\"BTCUSDT\"]," TRADE_TAIL "}", 0, ERR, 0},
    {"e as number", "{\"e\":1,\"E\":1,\"s\":\"BTCUSDT\"," TRADE_TAIL "}", 0, ERR, 0},
    {"e as null", "{\"e\":null}", 0, ERR, 0},
    {"negative trade id", "{" TRADE_HEAD "\"t\":-1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"negative E", "{\"e\":\"trade\",\"E\":-1723161255343,\"s\":\"BTCUSDT\"," TRADE_TAIL "}", 0, ERR,
     0},
    {"trade id past INT64_MAX",
     "{" TRADE_HEAD "\"t\":9223372036854775808,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"trade id of 20 digits",
     "{" TRADE_HEAD "\"t\":18446744073709551615,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},

    /* trades: missing fields */
    {"missing s", "{\"e\":\"trade\",\"E\":1," TRADE_TAIL "}", 0, ERR, 0},
    {"missing E", "{\"e\":\"trade\",\"s\":\"BTCUSDT\"," TRADE_TAIL "}", 0, ERR, 0},
    {"missing t", "{" TRADE_HEAD "\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"missing p", "{" TRADE_HEAD "\"t\":1,\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"missing q", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"missing T", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"m\":true}", 0, ERR, 0},
    {"missing m", "{" TRADE_HEAD "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1}", 0, ERR, 0},
    {"trade fields nested too deep", "{\"e\":\"trade\",\"x\":{" TRADE_HEAD TRADE_TAIL "}}", 0, ERR, 0},
    {"aggTrade with t but no a",
     "{\"e\":\"aggTrade\",\"E\":1,\"s\":\"NKNUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0,
     ERR, 0},

    /* decimals: cq_dec_parse decides, within DEC_TEXT_MAX bytes */
    {"decimal empty", "{" TRADE_HEAD "\"t\":1,\"p\":\"\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal with exponent", "{" TRADE_HEAD "\"t\":1,\"p\":\"1e5\",\"q\":\"1\",\"T\":1,\"m\":true}", 0,
     ERR, 0},
    {"decimal with space", "{" TRADE_HEAD "\"t\":1,\"p\":\" 1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal with plus", "{" TRADE_HEAD "\"t\":1,\"p\":\"+1\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal 1.", "{" TRADE_HEAD "\"t\":1,\"p\":\"1.\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal .5", "{" TRADE_HEAD "\"t\":1,\"p\":\".5\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal 19 nonzero fraction digits",
     "{" TRADE_HEAD "\"t\":1,\"p\":\"0.1234567890123456789\",\"q\":\"1\",\"T\":1,\"m\":true}", 0, ERR, 0},
    {"decimal past int64", "{" TRADE_HEAD "\"t\":1,\"p\":\"99999999999999999999\",\"q\":\"1\",\"T\":1,\"m\":true}",
     0, ERR, 0},
    {"decimal of 64 bytes",
     "{" TRADE_HEAD "\"t\":1,\"p\":\"1.00000000000000000000000000000000000000000000000000000000000000\","
     "\"q\":\"1\",\"T\":1,\"m\":true}",
     0, CQ_MSG_TRADE, 0},
    {"decimal of 65 bytes",
     "{" TRADE_HEAD "\"t\":1,\"p\":\"1.000000000000000000000000000000000000000000000000000000000000000\","
     "\"q\":\"1\",\"T\":1,\"m\":true}",
     0, ERR, 0},

    /* text bounds */
    /* CQ_SYMBOL_MAX_CHARS (20), the limit config validation uses too */
    {"symbol of 19 bytes", "{\"e\":\"trade\",\"E\":1,\"s\":\"ABCDEFGHIJKLMNOPQRS\"," TRADE_TAIL "}", 0,
     CQ_MSG_TRADE, 0},
    {"symbol of 20 bytes", "{\"e\":\"trade\",\"E\":1,\"s\":\"ABCDEFGHIJKLMNOPQRST\"," TRADE_TAIL "}", 0,
     CQ_MSG_TRADE, 0},
    {"symbol of 21 bytes", "{\"e\":\"trade\",\"E\":1,\"s\":\"ABCDEFGHIJKLMNOPQRSTU\"," TRADE_TAIL "}", 0,
     ERR, 0},
    {"symbol of 20 bytes once unescaped",
     "{\"e\":\"trade\",\"E\":1,\"s\":\"ABCDEFGHIJKLMNOPQR\\u00e9\"," TRADE_TAIL "}", 0, CQ_MSG_TRADE, 0},
    {"symbol of 21 bytes once unescaped",
     "{\"e\":\"trade\",\"E\":1,\"s\":\"ABCDEFGHIJKLMNOPQRS\\u00e9\"," TRADE_TAIL "}", 0, ERR, 0},
    {"empty symbol", "{\"e\":\"trade\",\"E\":1,\"s\":\"\"," TRADE_TAIL "}", 0, ERR, 0},
    {"stream of 63 bytes",
     "{\"stream\":\"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk\",\"data\":{}}", 0,
     CQ_MSG_EVENT_OTHER, 0},
    {"stream of 64 bytes",
     "{\"stream\":\"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl\",\"data\":{}}", 0,
     ERR, 0},
    {"empty stream", "{\"stream\":\"\",\"data\":{}}", 0, ERR, 0},
    {"stream not a string", "{\"stream\":1,\"data\":{}}", 0, ERR, 0},
    {"stream without data", "{\"stream\":\"btcusdt@trade\"}", 0, ERR, 0},
    {"data not an object", "{\"stream\":\"btcusdt@trade\",\"data\":[]}", 0, ERR, 0},
    {"data without stream is no wrapper", "{\"data\":{" TRADE_HEAD TRADE_TAIL "}}", 0,
     CQ_MSG_EVENT_OTHER, 0},

    /* bookTicker */
    {"bookTicker (spot shape)", "{" BOOK_BODY "}", 0, CQ_MSG_BOOK_TICKER, 0},
    {"bookTicker with extra keys", "{\"z\":[[\"1\",\"2\"]]," BOOK_BODY ",\"T\":5}", 0,
     CQ_MSG_BOOK_TICKER, 0},
    {"bookTicker missing A",
     "{\"u\":400900217,\"s\":\"BNBUSDT\",\"b\":\"25.35190000\",\"B\":\"31.21000000\",\"a\":\"25.36520000\"}",
     0, ERR, 0},
    {"bookTicker u as string",
     "{\"u\":\"400900217\",\"s\":\"BNBUSDT\",\"b\":\"1\",\"B\":\"1\",\"a\":\"1\",\"A\":\"1\"}", 0, ERR, 0},
    {"bookTicker price as number",
     "{\"u\":400900217,\"s\":\"BNBUSDT\",\"b\":25.3519,\"B\":\"1\",\"a\":\"1\",\"A\":\"1\"}", 0, ERR, 0},
    {"bookTicker with E (futures)", "{\"e\":\"bookTicker\",\"E\":1680652800093," BOOK_BODY "}", 0,
     CQ_MSG_BOOK_TICKER, 0},
    {"bookTicker with E as string", "{\"E\":\"1\"," BOOK_BODY "}", 0, ERR, 0},
    {"u without s is not a bookTicker", "{\"u\":1,\"b\":\"1\"}", 0, CQ_MSG_EVENT_OTHER, 0},

    /* kline */
    {"kline", "{" KLINE_HEAD "\"k\":{" KLINE_K "}}", 0, CQ_MSG_KLINE, 0},
    {"kline, k first and shuffled",
     "{\"k\":{\"q\":\"1.0000\",\"x\":true,\"n\":100,\"v\":\"1000\",\"l\":\"0.0015\",\"h\":\"0.0025\","
     "\"c\":\"0.0020\",\"o\":\"0.0010\",\"i\":\"1m\",\"T\":1672515839999,\"t\":1672515780000,"
     "\"f\":1,\"L\":2,\"V\":\"1\",\"Q\":\"1\",\"B\":\"0\"}," KLINE_HEAD "\"z\":0}",
     0, CQ_MSG_KLINE, 0},
    {"kline k not an object", "{" KLINE_HEAD "\"k\":[" KLINE_K "]}", 0, ERR, 0},
    {"kline k missing", "{" KLINE_HEAD "\"K\":{" KLINE_K "}}", 0, ERR, 0},
    {"kline duplicate k, last incomplete", "{" KLINE_HEAD "\"k\":{" KLINE_K "},\"k\":{\"t\":1}}", 0,
     ERR, 0},
    {"kline n past uint32",
     "{" KLINE_HEAD "\"k\":{" KLINE_K ",\"n\":4294967296}}", 0, ERR, 0},
    {"kline n at uint32 max", "{" KLINE_HEAD "\"k\":{" KLINE_K ",\"n\":4294967295}}", 0,
     CQ_MSG_KLINE, 0},
    {"kline interval of 8 bytes", "{" KLINE_HEAD "\"k\":{" KLINE_K ",\"i\":\"12345678\"}}", 0, ERR, 0},
    {"kline x as string", "{" KLINE_HEAD "\"k\":{" KLINE_K ",\"x\":\"false\"}}", 0, ERR, 0},
    {"kline missing x",
     "{" KLINE_HEAD "\"k\":{\"t\":1,\"T\":2,\"i\":\"1m\",\"o\":\"1\",\"c\":\"1\",\"h\":\"1\",\"l\":\"1\","
     "\"v\":\"1\",\"n\":1,\"q\":\"1\"}}",
     0, ERR, 0},

    /* depth */
    {"depthUpdate", "{" DEPTH_HEAD "\"U\":157,\"u\":160,\"b\":[[\"0.0024\",\"10\"]],\"a\":[]}", 0,
     CQ_MSG_DEPTH_UPDATE, 0},
    {"depthUpdate missing U", "{" DEPTH_HEAD "\"u\":160,\"b\":[],\"a\":[]}", 0, ERR, 0},
    {"depthUpdate with broken levels", "{" DEPTH_HEAD "\"U\":157,\"u\":160,\"b\":[[\"1\",\"2\"],]}", 0,
     ERR, 0},
    {"partial depth", "{\"lastUpdateId\":160,\"bids\":[[\"0.0024\",\"10\"]],\"asks\":[[\"0.0026\",\"100\"]]}",
     0, CQ_MSG_EVENT_OTHER, 0},

    /* control and other events */
    {"control reply", "{\"result\":null,\"id\":1}", 0, CQ_MSG_CONTROL, 0},
    {"control reply, list", "{\"id\":\"abc-123\",\"result\":[\"btcusdt@aggTrade\"]}", 0,
     CQ_MSG_CONTROL, 0},
    {"control error", "{\"error\":{\"code\":2,\"msg\":\"Invalid request\"},\"id\":null}", 0,
     CQ_MSG_CONTROL, 0},
    {"result without id", "{\"result\":null}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"serverShutdown", "{\"e\":\"serverShutdown\",\"E\":1723161255343}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"24hrTicker", "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"BNBBTC\",\"p\":\"0.0015\",\"c\":\"0.0025\"}", 0,
     CQ_MSG_EVENT_OTHER, 0},
    {"unknown event with long name", "{\"e\":\"depthUpdateButLongerThanSixteen\"}", 0,
     CQ_MSG_EVENT_OTHER, 0},
    {"event name case matters", "{\"e\":\"Trade\"," TRADE_TAIL "}", 0, CQ_MSG_EVENT_OTHER, 0},

    /* strings */
    {"invalid escape", "{\"x\":\"\\x41\"}", 0, ERR, 0},
    {"short unicode escape", "{\"x\":\"\\u004\"}", 0, ERR, 0},
    {"escaped NUL", "{\"x\":\"a\\u0000b\"}", 0, ERR, 0},
    {"escaped NUL in key", "{\"\\u0000\":1}", 0, ERR, 0},
    {"lone high surrogate", "{\"x\":\"\\ud83d\"}", 0, ERR, 0},
    {"high surrogate + letter", "{\"x\":\"\\ud83dx\"}", 0, ERR, 0},
    {"high surrogate + non-low", "{\"x\":\"\\ud83d\\u0041\"}", 0, ERR, 0},
    {"lone low surrogate", "{\"x\":\"\\ude00\"}", 0, ERR, 0},
    {"surrogate pair", "{\"x\":\"\\uD83D\\uDE00\"}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"raw control char", "{\"x\":\"a\tb\"}", 0, ERR, 0},
    {"raw newline", "{\"x\":\"a\nb\"}", 0, ERR, 0},
    {"raw NUL", "{\"x\":\"a\0b\"}", 10, ERR, 0},
    /* jansson skips a NUL put back after a number or literal; the
     * reference refuses NUL up front */
    {"NUL after number", "{\"x\":1\0}", 8, ERR, 0},
    {"NUL after literal", "{\"x\":true\0}", 11, ERR, 0},
    {"NUL after trade id", "{" TRADE_HEAD "\"t\":1\0,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}", 83, ERR, 0},
    {"DEL is fine", "{\"x\":\"\x7f\"}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"UTF-8 2/3/4 bytes", "{\"x\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}", 0,
     CQ_MSG_EVENT_OTHER, 0},
    {"invalid UTF-8 byte", "{\"x\":\"\xff\"}", 0, ERR, 0},
    {"lone continuation byte", "{\"x\":\"\x80\"}", 0, ERR, 0},
    {"overlong 2 bytes", "{\"x\":\"\xc0\x80\"}", 0, ERR, 0},
    {"overlong 3 bytes", "{\"x\":\"\xe0\x80\x80\"}", 0, ERR, 0},
    {"overlong 4 bytes", "{\"x\":\"\xf0\x8f\xbf\xbf\"}", 0, ERR, 0},
    {"UTF-8 surrogate", "{\"x\":\"\xed\xa0\x80\"}", 0, ERR, 0},
    {"above U+10FFFF", "{\"x\":\"\xf4\x90\x80\x80\"}", 0, ERR, 0},
    {"truncated UTF-8", "{\"x\":\"\xe2\x82\"}", 0, ERR, 0},
    {"UTF-8 in key", "{\"\xc3\xa9\":1}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"unterminated string", "{\"x\":\"abc}", 0, ERR, 0},

    /* numbers and literals */
    {"leading zero", "{\"x\":01}", 0, ERR, 0},
    {"minus alone", "{\"x\":-}", 0, ERR, 0},
    {"plus sign", "{\"x\":+1}", 0, ERR, 0},
    {"dot without fraction", "{\"x\":1.}", 0, ERR, 0},
    {"fraction without int", "{\"x\":.5}", 0, ERR, 0},
    {"exponent without digits", "{\"x\":1e}", 0, ERR, 0},
    {"exponent sign without digits", "{\"x\":1e+}", 0, ERR, 0},
    {"hex number", "{\"x\":0x10}", 0, ERR, 0},
    {"number then letter", "{\"x\":1x}", 0, ERR, 0},
    {"two dots", "{\"x\":1.2.3}", 0, ERR, 0},
    {"NaN", "{\"x\":NaN}", 0, ERR, 0},
    {"Infinity", "{\"x\":-Infinity}", 0, ERR, 0},
    {"True", "{\"x\":True}", 0, ERR, 0},
    {"tru", "{\"x\":tru}", 0, ERR, 0},
    {"truex", "{\"x\":truex}", 0, ERR, 0},
    {"nul at end", "{\"x\":nul", 0, ERR, 0},
    {"int64 max in ignored field", "{\"x\":9223372036854775807}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"int64 min in ignored field", "{\"x\":-9223372036854775808}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"past int64 max in ignored field", "{\"x\":9223372036854775808}", 0, ERR, 0},
    {"past int64 min in ignored field", "{\"x\":-9223372036854775809}", 0, ERR, 0},
    {"huge integer in ignored field", "{\"x\":123456789012345678901234567890}", 0, ERR, 0},
    {"huge real is fine", "{\"x\":123456789012345678901234567890.5}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"real near DBL_MAX", "{\"x\":1.7976931348623157e308}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"real rounding to DBL_MAX", "{\"x\":1.7976931348623158e308}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"real rounding to infinity", "{\"x\":1.797693134862315808e308}", 0, ERR, 0},
    {"real 1e309", "{\"x\":1e309}", 0, ERR, 0},
    {"real -1e309", "{\"x\":-1e309}", 0, ERR, 0},
    {"real 0.01e311", "{\"x\":0.01e311}", 0, ERR, 0},
    {"real 0.01e310", "{\"x\":0.01e310}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"real underflow is fine", "{\"x\":1e-400}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"zero with huge exponent", "{\"x\":0.000e99999999999999999999}", 0, CQ_MSG_EVENT_OTHER, 0},
    {"huge exponent", "{\"x\":1E+99999999999999999999}", 0, ERR, 0},
    {"tiny exponent", "{\"x\":1e-99999999999999999999}", 0, CQ_MSG_EVENT_OTHER, 0},
};
/* clang-format on */

Test(codec_edge, table)
{
    struct cq_msg canon;
    struct cq_msg m;
    char diff[64];
    char what[160];

    cr_assert_eq(decode_both("canonical", canon_trade, strlen(canon_trade), &canon), 0);
    for (size_t i = 0; i < CQ_ARRAY_LEN(edges); i++) {
        const struct edge *e = &edges[i];
        size_t len = e->len != 0 ? e->len : strlen(e->json);
        snprintf(what, sizeof(what), "edge \"%s\"", e->name);
        int rc = decode_both(what, e->json, len, &m);
        if (e->want == ERR) {
            cr_expect_eq(rc, -CQ_EPARSE, "%s: accepted as %s, want an error", what,
                         cq_msg_kind_name(m.kind));
            continue;
        }
        cr_expect_eq(rc, 0, "%s: rejected, want %s", what,
                     cq_msg_kind_name((enum cq_msg_kind)e->want));
        if (rc != 0) {
            continue;
        }
        cr_expect_eq((int)m.kind, e->want, "%s: %s, want %s", what, cq_msg_kind_name(m.kind),
                     cq_msg_kind_name((enum cq_msg_kind)e->want));
        if (m.kind == CQ_MSG_CONTROL || m.kind == CQ_MSG_EVENT_OTHER) {
            cr_expect_str_empty(m.symbol, "%s", what);
            cr_expect_eq(m.event_ms, 0, "%s", what);
        }
        if (e->check == SAME) {
            strcpy(m.stream, canon.stream); /* the wrapper is not the point */
            cr_expect_str_empty(msg_diff(&m, &canon, diff, sizeof(diff)),
                                "%s: %s differs from the canonical trade", what, diff);
        }
    }
}

/* Values of the accepted non-trade rows, beyond their kind. */
Test(codec_edge, values)
{
    struct cq_msg m;
    static const char book[] = "{" BOOK_BODY "}";
    static const char book_fut[] = "{\"e\":\"bookTicker\",\"E\":1680652800093," BOOK_BODY "}";
    static const char kline[] = "{" KLINE_HEAD "\"k\":{" KLINE_K ",\"x\":true}}";
    static const char depth[] = "{" DEPTH_HEAD "\"U\":157,\"u\":160,\"b\":[],\"a\":[]}";
    static const char big[] =
        "{" TRADE_HEAD "\"t\":9223372036854775807,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":false}";
    static const char dup[] =
        "{\"stream\":\"a@trade\",\"stream\":\"b@trade\",\"data\":{" TRADE_HEAD TRADE_TAIL
        ",\"p\":\"2.50\"}}";
    static const char esc[] =
        "{\"e\":\"trade\",\"E\":1,\"s\":\"\\u00e9\\n\\\"\\/\"," TRADE_TAIL "}";
    static const char pair[] =
        "{\"e\":\"trade\",\"E\":1,\"s\":\"B\\ud83d\\ude00\\u20ac\\u007f\\u0080\"," TRADE_TAIL "}";

    cr_assert_eq(decode_both("book", book, strlen(book), &m), 0);
    cr_expect_str_eq(m.symbol, "BNBUSDT");
    cr_expect_eq(m.u.book.update_id, 400900217u);
    expect_dec(m.u.book.bid, "25.35190000");
    expect_dec(m.u.book.bid_qty, "31.21000000");
    expect_dec(m.u.book.ask, "25.36520000");
    expect_dec(m.u.book.ask_qty, "40.66000000");
    cr_expect_eq(m.event_ms, 0);
    cr_expect_str_empty(m.stream);

    cr_assert_eq(decode_both("book_fut", book_fut, strlen(book_fut), &m), 0);
    cr_expect_eq(m.event_ms, 1680652800093);

    cr_assert_eq(decode_both("kline", kline, strlen(kline), &m), 0);
    cr_expect_eq(m.kind, CQ_MSG_KLINE);
    cr_expect_str_eq(m.symbol, "BNBBTC");
    cr_expect_eq(m.event_ms, 1672515782136);
    cr_expect_eq(m.u.kline.candle.open_ms, 1672515780000);
    cr_expect_eq(m.u.kline.candle.close_ms, 1672515839999);
    expect_dec(m.u.kline.candle.open, "0.0010");
    expect_dec(m.u.kline.candle.close, "0.0020");
    expect_dec(m.u.kline.candle.high, "0.0025");
    expect_dec(m.u.kline.candle.low, "0.0015");
    expect_dec(m.u.kline.candle.volume, "1000");
    expect_dec(m.u.kline.candle.quote_volume, "1.0000");
    cr_expect_eq(m.u.kline.candle.trades, 100u);
    cr_expect(m.u.kline.candle.closed, "x:true, the later duplicate, wins");
    cr_expect_str_eq(m.u.kline.interval, "1m");

    cr_assert_eq(decode_both("depth", depth, strlen(depth), &m), 0);
    cr_expect_eq(m.u.depth.first_update_id, 157u);
    cr_expect_eq(m.u.depth.last_update_id, 160u);
    cr_expect_eq(m.event_ms, 1672515782136);

    cr_assert_eq(decode_both("big", big, strlen(big), &m), 0);
    cr_expect_eq(m.u.trade.trade_id, (uint64_t)INT64_MAX);

    cr_assert_eq(decode_both("dup", dup, strlen(dup), &m), 0);
    cr_expect_str_eq(m.stream, "b@trade");
    expect_dec(m.u.trade.price, "2.50");

    cr_assert_eq(decode_both("esc", esc, strlen(esc), &m), 0);
    cr_expect_str_eq(m.symbol, "\xc3\xa9\n\"/", "symbols are copied as given, unescaped");

    cr_assert_eq(decode_both("pair", pair, strlen(pair), &m), 0);
    cr_expect_str_eq(m.symbol, "B\xf0\x9f\x98\x80\xe2\x82\xac\x7f\xc2\x80",
                     "UTF-8 of U+1F600 U+20AC U+7F U+80");
}

/* The fast path points at the problem. */
Test(codec_edge, error_offsets)
{
    static const struct {
        const char *json;
        size_t offset;
    } cases[] = {
        {"{}x", 2},
        {"{\"x\":1,}", 7},
        {"{\"x\":\"a\\qb\"}", 7},
        {"{\"x\":[1,2}", 9},
        {"{\"x\":01}", 6},
        {"{\"x\":1", 6},
        {"", 0},
        {"[]", 0},
        /* wrong type: the value */
        {"{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":\"1\"}", 37},
        /* missing field: the payload's '{' */
        {"{\"stream\":\"x\",\"data\":{\"e\":\"trade\"}}", 21},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_msg m;
        size_t off = (size_t)-1;
        size_t len = strlen(cases[i].json);
        int rc = decode_exact(cq_codec_decode, cases[i].json, len, &m, &off);
        cr_expect_eq(rc, -CQ_EPARSE, "%s", cases[i].json);
        cr_expect_eq(off, cases[i].offset, "%s: err_offset %zu, want %zu", cases[i].json, off,
                     cases[i].offset);
    }
    /* err_offset may be NULL */
    struct cq_msg m;
    cr_expect_eq(cq_codec_decode("{", 1, &m, NULL), -CQ_EPARSE);
    cr_expect_eq(cq_codec_decode_jansson("{", 1, &m, NULL), -CQ_EPARSE);
    cr_expect_eq(cq_codec_decode(NULL, 0, &m, NULL), -CQ_EPARSE);
    cr_expect_eq(cq_codec_decode_jansson(NULL, 0, &m, NULL), -CQ_EPARSE);
}

Test(codec_edge, kind_names)
{
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_TRADE), "trade");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_AGG_TRADE), "aggTrade");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_BOOK_TICKER), "bookTicker");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_KLINE), "kline");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_DEPTH_UPDATE), "depthUpdate");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_CONTROL), "control");
    cr_expect_str_eq(cq_msg_kind_name(CQ_MSG_EVENT_OTHER), "other");
    cr_expect_str_eq(cq_msg_kind_name((enum cq_msg_kind)99), "unknown");
}

/* ---- truncation ---------------------------------------------------------- */

/* Every proper prefix is an error for both (a message is one object: no
 * prefix of it is a complete one), never a crash, and the fast path's
 * err_offset is inside the prefix. */
static void check_prefixes(const char *what, const char *msg, size_t len)
{
    struct cq_msg m;
    char name[128];
    struct cq_msg full;
    cr_assert_eq(decode_both(what, msg, len, &full), 0, "%s must decode whole", what);
    for (size_t n = 0; n < len; n++) {
        snprintf(name, sizeof(name), "%s[0..%zu)", what, n);
        /* a prefix that ends in the trailing newline is the whole message */
        bool whole = n >= (size_t)(strrchr(msg, '}') - msg) + 1;
        int rc = decode_both(name, msg, n, &m);
        cr_assert_eq(rc, whole ? 0 : -CQ_EPARSE, "%s: rc %d", name, rc);
    }
}

Test(codec_truncation, samples)
{
    static const char *const names[] = {
        "spot-trade.json",
        "spot-aggTrade.json",
        "spot-bookTicker.json",
        "spot-depthUpdate.json",
        "spot-kline.json",
        "futures-um-trade.json",
        "futures-um-bookTicker.json",
        "futures-um-depthUpdate.json",
        "futures-um-markPrice.json",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(names); i++) {
        char path[512];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s%s", SAMPLES_DIR, names[i]);
        char *text = slurp(path, &len);
        if (text == NULL) {
            cq_test_shared_missing(path);
        }
        check_prefixes(names[i], text, len);
        free(text);
    }
}

Test(codec_truncation, hand_written)
{
    static const char *const msgs[] = {
        ("{\"stream\":\"x@trade\",\"data\":{\"\\u0065\":\"trade\",\"E\":1,\"s\":\"\\u0042TC\","
         "\"t\":-0,\"p\":\"1.5\",\"q\":\"2\",\"T\":3,\"m\":false,\"x\":[1.5e-3,{\"y\":null},"
         "\"\\ud83d\\ude00\xc3\xa9\"],\"z\":true}}"),
        "{\"result\":null,\"id\":1}",
        "{\"lastUpdateId\":160,\"bids\":[[\"0.0024\",\"10\"]],\"asks\":[]}",
        ("{\"e\":\"kline\",\"E\":1,\"s\":\"B\",\"k\":{\"t\":1,\"T\":2,\"i\":\"1m\",\"o\":\"1\","
         "\"c\":\"1\",\"h\":\"1\",\"l\":\"1\",\"v\":\"1\",\"n\":1,\"x\":true,\"q\":\"1\"}}"),
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(msgs); i++) {
        check_prefixes("hand-written", msgs[i], strlen(msgs[i]));
    }
}

/* ---- limits -------------------------------------------------------------- */

/* {"e":"trade",...,"x":[[...[inner]...]]} with `arrays` nested arrays
 * (the outermost at depth 2). */
static char *nested(size_t arrays, const char *inner, size_t *len_out)
{
    static const char head[] = "{" TRADE_HEAD TRADE_TAIL ",\"x\":";
    size_t len = strlen(head) + 2 * arrays + strlen(inner) + 1;
    char *s = malloc(len + 1);
    cr_assert_not_null(s);
    char *p = s;
    memcpy(p, head, strlen(head));
    p += strlen(head);
    memset(p, '[', arrays);
    p += arrays;
    memcpy(p, inner, strlen(inner));
    p += strlen(inner);
    memset(p, ']', arrays);
    p += arrays;
    *p++ = '}';
    *p = '\0';
    *len_out = len;
    return s;
}

/* jansson refuses any value deeper than 2048 (the top level is 1); the
 * fast path skips ignored values with the same limit. */
Test(codec_limits, nesting_depth)
{
    static const struct {
        size_t arrays;
        const char *inner;
        int want;
    } cases[] = {
        {2047, "", 0},           /* innermost [] at depth 2048 */
        {2048, "", -CQ_EPARSE},  /* innermost [] at depth 2049 */
        {2046, "1", 0},          /* the 1 at depth 2048 */
        {2047, "1", -CQ_EPARSE}, /* the 1 at depth 2049 */
        {2046, "{}", 0},         {2046, "{\"a\":1}", -CQ_EPARSE},
        {2045, "{\"a\":1}", 0},  {100000, "", -CQ_EPARSE},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_msg m;
        size_t len;
        char what[64];
        char *s = nested(cases[i].arrays, cases[i].inner, &len);
        snprintf(what, sizeof(what), "%zu arrays around \"%s\"", cases[i].arrays, cases[i].inner);
        cr_expect_eq(decode_both(what, s, len, &m), cases[i].want, "%s", what);
        free(s);
    }
    /* unbalanced deep input: open brackets only */
    {
        struct cq_msg m;
        size_t len = 300000;
        char *s = malloc(len);
        cr_assert_not_null(s);
        s[0] = '{';
        s[1] = '"';
        s[2] = 'x';
        s[3] = '"';
        s[4] = ':';
        memset(s + 5, '[', len - 5);
        cr_expect_eq(decode_both("open brackets", s, len, &m), -CQ_EPARSE);
        memset(s + 5, '{', len - 5);
        cr_expect_eq(decode_both("open braces", s, len, &m), -CQ_EPARSE);
        free(s);
    }
}

/* The smallest decimal strtod rounds to infinity is 2^1024 - 2^970
 * (halfway between DBL_MAX and 2^1024, ties to even): jansson refuses it
 * and the fast path must too, and accept the value just below. */
Test(codec_limits, real_overflow_boundary)
{
    static const char half[] =
        "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017"
        "977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273"
        "854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704"
        "342711559699508093042880177904174497792";
    static const char below[] =
        "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017"
        "977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273"
        "854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704"
        "342711559699508093042880177904174497791";
    char buf[512];
    struct cq_msg m;

    snprintf(buf, sizeof(buf), "{\"x\":%s.0}", half);
    cr_expect_eq(decode_both("half", buf, strlen(buf), &m), -CQ_EPARSE);
    snprintf(buf, sizeof(buf), "{\"x\":%s.9999}", below);
    cr_expect_eq(decode_both("below.9999", buf, strlen(buf), &m), 0);
    snprintf(buf, sizeof(buf), "{\"x\":-%s.0000000001}", half);
    cr_expect_eq(decode_both("-half+", buf, strlen(buf), &m), -CQ_EPARSE);
    snprintf(buf, sizeof(buf), "{\"x\":0.%se309}", half);
    cr_expect_eq(decode_both("0.half e309", buf, strlen(buf), &m), -CQ_EPARSE);
    snprintf(buf, sizeof(buf), "{\"x\":0.00%se311}", below);
    cr_expect_eq(decode_both("0.00below e311", buf, strlen(buf), &m), 0);
    snprintf(buf, sizeof(buf), "{\"x\":%.40se269}", half);
    cr_expect_eq(decode_both("40 digits e269", buf, strlen(buf), &m), 0);
    snprintf(buf, sizeof(buf), "{\"x\":%.40se270}", half);
    cr_expect_eq(decode_both("40 digits e270", buf, strlen(buf), &m), -CQ_EPARSE);
    snprintf(buf, sizeof(buf), "{\"x\":%.20s9e288}", half); /* ...580799 > ...580793 */
    cr_expect_eq(decode_both("21 digits e288, above", buf, strlen(buf), &m), -CQ_EPARSE);
    snprintf(buf, sizeof(buf), "{\"x\":%.20s1e288}", half); /* ...580791 < ...580793 */
    cr_expect_eq(decode_both("21 digits e288, below", buf, strlen(buf), &m), 0);
}

/* ---- fixtures ------------------------------------------------------------ */

static char *fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", FIXTURES_DIR, name);
    char *text = slurp(path, len);
    cr_assert_not_null(text, "fixture %s missing", path);
    return text;
}

/* A closed candle (no real x:true message was recorded), pretty-printed
 * with keys in a different order and extra fields. */
Test(codec_fixtures, kline_closed_pretty)
{
    struct cq_msg m;
    size_t len;
    char *text = fixture("kline_closed_pretty.json", &len);
    cr_assert_eq(decode_both("kline_closed_pretty", text, len, &m), 0);
    free(text);
    cr_expect_eq(m.kind, CQ_MSG_KLINE);
    cr_expect_str_eq(m.stream, "btcusdt@kline_1m");
    cr_expect_str_eq(m.symbol, "BTCUSDT");
    cr_expect_eq(m.event_ms, 1723161600001);
    cr_expect_eq(m.u.kline.candle.open_ms, 1723161540000);
    cr_expect_eq(m.u.kline.candle.close_ms, 1723161599999);
    expect_dec(m.u.kline.candle.open, "61700.01000000");
    expect_dec(m.u.kline.candle.high, "61740.00000000");
    expect_dec(m.u.kline.candle.low, "61650.10000000");
    expect_dec(m.u.kline.candle.close, "61685.99000000");
    expect_dec(m.u.kline.candle.volume, "12.34567000");
    expect_dec(m.u.kline.candle.quote_volume, "761722.81234560");
    cr_expect_eq(m.u.kline.candle.trades, 1234u);
    cr_expect(m.u.kline.candle.closed);
    cr_expect_str_eq(m.u.kline.interval, "1m");
}

/* Control replies and errors, one per line: all CONTROL. */
Test(codec_fixtures, control_replies)
{
    size_t len;
    int n = 0;
    char *text = fixture("control_replies.txt", &len);
    char *line = text;
    char *end = text + len;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *eol = nl != NULL ? nl : end;
        struct cq_msg m;
        if (eol > line) {
            cr_assert_eq(decode_both("control", line, (size_t)(eol - line), &m), 0, "%.*s",
                         (int)(eol - line), line);
            cr_expect_eq(m.kind, CQ_MSG_CONTROL, "%.*s", (int)(eol - line), line);
            n++;
        }
        line = eol + 1;
    }
    free(text);
    cr_expect_geq(n, 5);
}

/* Issue 9.2: a high-supply coin's volume at or above 92233720368.54775808
 * with 8 decimals ("92233720369.00000000") fits once its trailing zeros go;
 * both decoders must take the kline (it used to be dropped, and the REST
 * backfill failed on the same string, so the gap never closed). */
Test(codec_edge, kline_with_high_supply_volume)
{
    static const char kline[] =
        "{\"e\":\"kline\",\"E\":1723161600001,\"s\":\"PEPEUSDT\",\"k\":{\"t\":1723161540000,"
        "\"T\":1723161599999,\"s\":\"PEPEUSDT\",\"i\":\"1m\",\"o\":\"0.00000812\","
        "\"c\":\"0.00000815\",\"h\":\"0.00000816\",\"l\":\"0.00000810\","
        "\"v\":\"92233720369.00000000\",\"n\":52012,\"x\":true,\"q\":\"751204.12345678\"}}";
    struct cq_msg m;
    cr_assert_eq(decode_both("high-supply kline", kline, strlen(kline), &m), 0);
    cr_expect_eq(m.kind, CQ_MSG_KLINE);
    cr_expect_str_eq(m.symbol, "PEPEUSDT");
    expect_dec(m.u.kline.candle.volume, "92233720369.0000000");
    cr_expect_null(cq_msg_check(&m), "a sane kline: %s", cq_msg_check(&m));
}

/* Issue 17.7: the sanity rules of cq_market_check_* / cq_msg_check, one row
 * per rule and boundary (the rules of `coinquantd indicators`). */
struct sanity_row {
    const char *name;
    const char *json;
    const char *reason; /* NULL: sane */
};

#define SK_HEAD                                                                                    \
    "{\"e\":\"kline\",\"E\":1723161600001,\"s\":\"BTCUSDT\",\"k\":{\"i\":\"1m\",\"n\":1,\"x\":"    \
    "true,"
#define SK_TIMES "\"t\":1723161540000,\"T\":1723161599999,"
#define SK_VOL "\"v\":\"1.5\",\"q\":\"150\""
#define ST_HEAD "{\"e\":\"trade\",\"E\":1723161255343,\"s\":\"BTCUSDT\",\"t\":1,\"m\":true,"
#define SB_HEAD "{\"u\":1,\"s\":\"BTCUSDT\","

/* clang-format off */
static const struct sanity_row sanity_rows[] = {
    /* klines */
    {"kline sane", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", NULL},
    {"kline flat (o=h=l=c), zero volume", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"10\",\"l\":\"10\",\"c\":\"10\",\"v\":\"0\",\"q\":\"0\"}}", NULL},
    {"kline all -1", SK_HEAD SK_TIMES "\"o\":\"-1\",\"h\":\"-1\",\"l\":\"-1\",\"c\":\"-1\"," SK_VOL "}}", "price_not_positive"},
    {"kline open 0", SK_HEAD SK_TIMES "\"o\":\"0\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "price_not_positive"},
    {"kline high 0", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"0.0\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "price_not_positive"},
    {"kline low -0.00000001", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"-0.00000001\",\"c\":\"11\"," SK_VOL "}}", "price_not_positive"},
    {"kline close 0", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"0\"," SK_VOL "}}", "price_not_positive"},
    {"kline volume negative", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\",\"v\":\"-1\",\"q\":\"0\"}}", "quantity_negative"},
    {"kline quote volume negative", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\",\"v\":\"1\",\"q\":\"-0.1\"}}", "quantity_negative"},
    {"kline low above open", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"10.01\",\"c\":\"11\"," SK_VOL "}}", "low_above_open_or_close"},
    {"kline low above close", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"8.99\"," SK_VOL "}}", "low_above_open_or_close"},
    {"kline high below open", SK_HEAD SK_TIMES "\"o\":\"12.01\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "high_below_open_or_close"},
    {"kline high below close", SK_HEAD SK_TIMES "\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"12.0001\"," SK_VOL "}}", "high_below_open_or_close"},
    {"kline open time 0", SK_HEAD "\"t\":0,\"T\":59999,\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "time_implausible"},
    {"kline open time 2100", SK_HEAD "\"t\":4102444800000,\"T\":4102444859999,\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "time_implausible"},
    {"kline open time last ms before 2100", SK_HEAD "\"t\":4102444740000,\"T\":4102444799999,\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", NULL},
    {"kline close before open", SK_HEAD "\"t\":1723161540000,\"T\":1723161539999,\"o\":\"10\",\"h\":\"12\",\"l\":\"9\",\"c\":\"11\"," SK_VOL "}}", "close_before_open"},
    /* trades */
    {"trade sane", ST_HEAD "\"p\":\"61837.63\",\"q\":\"0.02\",\"T\":1723161255342}", NULL},
    {"trade qty 0", ST_HEAD "\"p\":\"61837.63\",\"q\":\"0\",\"T\":1723161255342}", NULL},
    {"trade price -1", ST_HEAD "\"p\":\"-1\",\"q\":\"0.02\",\"T\":1723161255342}", "price_not_positive"},
    {"trade price 0", ST_HEAD "\"p\":\"0.00000000\",\"q\":\"0.02\",\"T\":1723161255342}", "price_not_positive"},
    {"trade qty -1", ST_HEAD "\"p\":\"61837.63\",\"q\":\"-1\",\"T\":1723161255342}", "quantity_negative"},
    {"trade time 1", ST_HEAD "\"p\":\"61837.63\",\"q\":\"0.02\",\"T\":1}", "time_implausible"},
    {"trade time first ms of 2010", ST_HEAD "\"p\":\"1\",\"q\":\"1\",\"T\":1262304000000}", NULL},
    {"trade time last ms of 2009", ST_HEAD "\"p\":\"1\",\"q\":\"1\",\"T\":1262303999999}", "time_implausible"},
    {"trade event time 1",
     "{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":1,\"m\":true,\"p\":\"1\",\"q\":\"1\",\"T\":1723161255342}",
     "time_implausible"},
    /* books */
    {"book sane", SB_HEAD "\"b\":\"25.3519\",\"B\":\"31.21\",\"a\":\"25.3652\",\"A\":\"40.66\"}", NULL},
    {"book bid -1", SB_HEAD "\"b\":\"-1\",\"B\":\"31.21\",\"a\":\"25.3652\",\"A\":\"40.66\"}", "price_not_positive"},
    {"book ask 0", SB_HEAD "\"b\":\"25.3519\",\"B\":\"31.21\",\"a\":\"0\",\"A\":\"40.66\"}", "price_not_positive"},
    {"book bid qty -1", SB_HEAD "\"b\":\"25.3519\",\"B\":\"-1\",\"a\":\"25.3652\",\"A\":\"40.66\"}", "quantity_negative"},
    {"book ask qty 0", SB_HEAD "\"b\":\"25.3519\",\"B\":\"1\",\"a\":\"25.3652\",\"A\":\"0\"}", NULL},
    {"book locked (bid = ask)", SB_HEAD "\"b\":\"25.36\",\"B\":\"1\",\"a\":\"25.3600\",\"A\":\"1\"}", "book_crossed"},
    {"book crossed", SB_HEAD "\"b\":\"25.37\",\"B\":\"1\",\"a\":\"25.36\",\"A\":\"1\"}", "book_crossed"},
    /* depth ids */
    {"depth sane", "{" DEPTH_HEAD "\"U\":157,\"u\":160,\"b\":[],\"a\":[]}", NULL},
    {"depth U > u", "{" DEPTH_HEAD "\"U\":161,\"u\":160,\"b\":[],\"a\":[]}", "update_ids_backwards"},
};
/* clang-format on */

Test(codec_sanity, table)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(sanity_rows); i++) {
        const struct sanity_row *r = &sanity_rows[i];
        struct cq_msg m;
        cr_assert_eq(decode_both(r->name, r->json, strlen(r->json), &m), 0, "%s: does not decode",
                     r->name);
        const char *got = cq_msg_check(&m);
        if (r->reason == NULL) {
            cr_expect_null(got, "%s: refused as %s", r->name, got);
        } else {
            cr_expect(got != NULL && strcmp(got, r->reason) == 0, "%s: %s, want %s", r->name,
                      got != NULL ? got : "sane", r->reason);
        }
    }
}

/* The per-type checks the REST backfill uses are the same rules. */
Test(codec_sanity, candle_from_rest_shape)
{
    struct cq_candle c;
    memset(&c, 0, sizeof(c));
    c.open_ms = 1723161540000;
    c.close_ms = 1723161599999;
    c.open = c.high = c.low = c.close = cq_dec_make(-1, 0);
    cr_expect_str_eq(cq_market_check_candle(&c), "price_not_positive");
    c.open = c.high = c.low = c.close = cq_dec_make(1, 0);
    cr_expect_null(cq_market_check_candle(&c));
}
