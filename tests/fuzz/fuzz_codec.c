/*
 * fuzz_codec.c — libFuzzer target for the market-message decoders
 * (include/cq/codec.h): the fast scanner in server/exchange/codec.c against
 * the jansson reference in server/exchange/codec_jansson.c.
 *
 * Build and run from the repository root (clang with libFuzzer):
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L -Iinclude \
 *         server/exchange/codec.c server/exchange/codec_jansson.c \
 *         server/core/decimal.c server/core/err.c tests/fuzz/fuzz_codec.c \
 *         -ljansson -o /tmp/fuzz_codec
 *   mkdir -p /tmp/fuzz_codec_corpus
 *   /tmp/fuzz_codec /tmp/fuzz_codec_corpus tests/fuzz/corpus/codec -max_total_time=60
 *
 * The input is the message, passed with its exact length (libFuzzer's
 * buffer ends where the input ends, so ASan sees any read past it).
 *
 * Every check that fails calls abort(), which libFuzzer reports with the
 * input. Properties checked:
 *   - both return 0 or -CQ_EPARSE, and err_offset <= size;
 *   - they agree on accept/reject, both ways: the fast path validates JSON
 *     exactly as json_loadb(…, 0, …) does (UTF-8, escapes, \u0000, int64
 *     range, double overflow, depth 2048, trailing bytes), and duplicate
 *     keys resolve the same way (the last one wins in both);
 *   - when both accept, every field is identical (cq_dec by mantissa and
 *     scale, strings bytewise);
 *   - on error *out is all zero;
 *   - decoding is deterministic: the same input decodes the same again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool dec_eq(cq_dec a, cq_dec b)
{
    return a.m == b.m && a.scale == b.scale;
}

static bool all_zero(const struct cq_msg *m)
{
    const unsigned char *p = (const unsigned char *)m;
    for (size_t i = 0; i < sizeof(*m); i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

static void check_equal(const struct cq_msg *a, const struct cq_msg *b)
{
    CHECK(a->kind == b->kind);
    CHECK(strcmp(a->stream, b->stream) == 0);
    CHECK(strcmp(a->symbol, b->symbol) == 0);
    CHECK(a->event_ms == b->event_ms);
    switch (a->kind) {
    case CQ_MSG_TRADE:
    case CQ_MSG_AGG_TRADE:
        CHECK(a->u.trade.trade_id == b->u.trade.trade_id);
        CHECK(dec_eq(a->u.trade.price, b->u.trade.price));
        CHECK(dec_eq(a->u.trade.qty, b->u.trade.qty));
        CHECK(a->u.trade.time_ms == b->u.trade.time_ms);
        CHECK(a->u.trade.buyer_is_maker == b->u.trade.buyer_is_maker);
        break;
    case CQ_MSG_BOOK_TICKER:
        CHECK(dec_eq(a->u.book.bid, b->u.book.bid));
        CHECK(dec_eq(a->u.book.bid_qty, b->u.book.bid_qty));
        CHECK(dec_eq(a->u.book.ask, b->u.book.ask));
        CHECK(dec_eq(a->u.book.ask_qty, b->u.book.ask_qty));
        CHECK(a->u.book.update_id == b->u.book.update_id);
        break;
    case CQ_MSG_KLINE:
        CHECK(a->u.kline.candle.open_ms == b->u.kline.candle.open_ms);
        CHECK(a->u.kline.candle.close_ms == b->u.kline.candle.close_ms);
        CHECK(dec_eq(a->u.kline.candle.open, b->u.kline.candle.open));
        CHECK(dec_eq(a->u.kline.candle.high, b->u.kline.candle.high));
        CHECK(dec_eq(a->u.kline.candle.low, b->u.kline.candle.low));
        CHECK(dec_eq(a->u.kline.candle.close, b->u.kline.candle.close));
        CHECK(dec_eq(a->u.kline.candle.volume, b->u.kline.candle.volume));
        CHECK(dec_eq(a->u.kline.candle.quote_volume, b->u.kline.candle.quote_volume));
        CHECK(a->u.kline.candle.trades == b->u.kline.candle.trades);
        CHECK(a->u.kline.candle.closed == b->u.kline.candle.closed);
        CHECK(strcmp(a->u.kline.interval, b->u.kline.interval) == 0);
        break;
    case CQ_MSG_DEPTH_UPDATE:
        CHECK(a->u.depth.first_update_id == b->u.depth.first_update_id);
        CHECK(a->u.depth.last_update_id == b->u.depth.last_update_id);
        break;
    case CQ_MSG_CONTROL:
    case CQ_MSG_EVENT_OTHER:
        CHECK(a->symbol[0] == '\0' && a->event_ms == 0);
        break;
    default:
        CHECK(!"unknown kind");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct cq_msg fast;
    struct cq_msg again;
    struct cq_msg ref;
    size_t off_fast = (size_t)-1;
    size_t off_ref = (size_t)-1;

    int rc_fast = cq_codec_decode(text, size, &fast, &off_fast);
    int rc_ref = cq_codec_decode_jansson(text, size, &ref, &off_ref);

    CHECK(rc_fast == 0 || rc_fast == -CQ_EPARSE);
    CHECK(rc_ref == 0 || rc_ref == -CQ_EPARSE);
    if (rc_fast != rc_ref) {
        fprintf(stderr, "fuzz_codec: fast rc %d (offset %zu), jansson rc %d (offset %zu)\n",
                rc_fast, off_fast, rc_ref, off_ref);
    }
    CHECK(rc_fast == rc_ref);
    if (rc_fast < 0) {
        CHECK(off_fast <= size);
        CHECK(off_ref <= size);
        CHECK(all_zero(&fast));
        CHECK(all_zero(&ref));
        return 0;
    }
    check_equal(&fast, &ref);
    CHECK(strlen(fast.stream) < CQ_STREAM_LEN && strlen(fast.symbol) < CQ_SYMBOL_LEN);

    CHECK(cq_codec_decode(text, size, &again, NULL) == 0);
    check_equal(&fast, &again);
    return 0;
}
