/*
 * codec.h — decoding Binance WebSocket market messages: the few fields the
 * feeder needs from trade, aggTrade, bookTicker, kline and depth payloads,
 * raw ("/ws/<stream>") or wrapped ("/stream": {"stream","data"}).
 *
 * Two decoders with one contract:
 *   cq_codec_decode          the hot path: a purpose-built single-pass
 *                            scanner over the bytes (no allocation, no
 *                            jansson), fuzzed (tests/fuzz/fuzz_codec.c);
 *   cq_codec_decode_jansson  the reference, built on jansson; tests require
 *                            both to agree on every recorded message.
 * Both are pure and reentrant (any thread).
 *
 * Accepted as the exchange sends it: any key order, extra keys ignored,
 * whitespace between tokens, JSON string escapes in keys and strings.
 * Anything else (missing field, wrong type, a decimal that cq_dec_parse
 * refuses, truncated input, trailing garbage) is -CQ_EPARSE with
 * err_offset set to the byte where decoding failed: the feeder counts it,
 * logs it (rate-limited) and drops the message. A message that decodes but
 * breaks a sanity rule (cq_msg_check below) is dropped the same way.
 */
#ifndef CQ_CODEC_H
#define CQ_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/market.h"

#define CQ_STREAM_LEN 64

enum cq_msg_kind {
    CQ_MSG_TRADE,        /* <s>@trade */
    CQ_MSG_AGG_TRADE,    /* <s>@aggTrade (decoded into trade; agg id in trade_id) */
    CQ_MSG_BOOK_TICKER,  /* <s>@bookTicker (no e/E) */
    CQ_MSG_KLINE,        /* <s>@kline_<i> */
    CQ_MSG_DEPTH_UPDATE, /* <s>@depth / @depth@100ms: ids only (U, u), levels not decoded */
    CQ_MSG_CONTROL,      /* {"result":…,"id":…} reply to SUBSCRIBE & co */
    CQ_MSG_EVENT_OTHER   /* a well-formed event of a type the feeder ignores
                          * (e.g. serverShutdown, depth5 snapshots) */
};

struct cq_msg {
    enum cq_msg_kind kind;
    char stream[CQ_STREAM_LEN]; /* "btcusdt@trade" when wrapped, else "" */
    char symbol[CQ_SYMBOL_LEN]; /* "BTCUSDT" (from "s"), "" for CONTROL/OTHER */
    int64_t event_ms;           /* "E", or 0 when absent (bookTicker) */
    union {
        struct cq_trade_tick trade; /* TRADE, AGG_TRADE */
        struct cq_book_top book;    /* BOOK_TICKER */
        struct {
            struct cq_candle candle; /* closed = "x" */
            char interval[8];        /* "1m" */
        } kline;                     /* KLINE */
        struct {
            uint64_t first_update_id; /* U */
            uint64_t last_update_id;  /* u */
        } depth;                      /* DEPTH_UPDATE */
    } u;
};

/* Fast path. 0, or -CQ_EPARSE with *err_offset (may be NULL) set. */
int cq_codec_decode(const char *data, size_t len, struct cq_msg *out, size_t *err_offset) CQ_WUR;

/* Reference decoder with the same contract (err_offset is approximate). */
int cq_codec_decode_jansson(const char *data, size_t len, struct cq_msg *out,
                            size_t *err_offset) CQ_WUR;

const char *cq_msg_kind_name(enum cq_msg_kind kind);

/* Sanity rules for decoded market data: the ones `coinquantd indicators`
 * applies to a kline row, for every kline, trade and book value the feeder
 * takes (WebSocket and REST backfill alike):
 *   prices > 0; quantities and volumes >= 0; low <= open, close <= high;
 *   bid < ask; times (open/close, trade, event when present) within
 *   [CQ_MARKET_TIME_MIN_MS, CQ_MARKET_TIME_MAX_MS) and close >= open;
 *   depth update ids U <= u.
 * Each returns NULL when the value may be used, else a stable snake_case
 * reason (price_not_positive, quantity_negative, low_above_open_or_close,
 * high_below_open_or_close, book_crossed, time_implausible,
 * close_before_open, update_ids_backwards) for logs and health.
 * The decoders themselves check the grammar only. Pure, any thread. */
#define CQ_MARKET_TIME_MIN_MS 1262304000000LL /* 2010-01-01T00:00:00Z, in ms */
#define CQ_MARKET_TIME_MAX_MS 4102444800000LL /* 2100-01-01T00:00:00Z, in ms */
const char *cq_market_check_candle(const struct cq_candle *c);
const char *cq_market_check_book(const struct cq_book_top *b);
const char *cq_market_check_trade(const struct cq_trade_tick *t);
const char *cq_msg_check(const struct cq_msg *m);

#endif /* CQ_CODEC_H */
