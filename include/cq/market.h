/*
 * market.h — the market events the feeder publishes to ARES (through a
 * struct cq_spsc of struct cq_market_event), and the decoded exchange
 * messages they are made from. Plain fixed-size values: copied between
 * threads, never shared.
 *
 * Full policy of the feeder -> ARES ring: closed candles are never dropped
 * (the feeder holds them and retries, and reports backpressure); book
 * updates coalesce (latest book per symbol wins, the coalesced ones are
 * counted).
 */
#ifndef CQ_MARKET_H
#define CQ_MARKET_H

#include <stdbool.h>
#include <stdint.h>

#include "cq/decimal.h"

/* An order's or a signal's side (cq_side_name in cq/strategy.h). */
enum cq_side { CQ_SIDE_BUY, CQ_SIDE_SELL };

/* The longest symbol name, in characters (symbols are ASCII A-Z 0-9, so
 * characters are bytes). The one limit: config validation (CQ_SYMBOLS), the
 * feeder and the codec all use it; buffers hold it and the NUL. */
#define CQ_SYMBOL_MAX_CHARS 20
#define CQ_SYMBOL_LEN (CQ_SYMBOL_MAX_CHARS + 1)

/* The most symbols one process follows, in symbols: the limit of CQ_SYMBOLS
 * (config validation), and what the feeder and ARES size their tables by. */
#define CQ_MAX_SYMBOLS 32

/* A 1m candle. closed=true only from the exchange's x=true kline or a REST
 * backfill, never from a forming candle that simply stopped changing. */
struct cq_candle {
    int64_t open_ms;
    int64_t close_ms; /* open_ms + 59999 */
    cq_dec open, high, low, close;
    cq_dec volume; /* base */
    cq_dec quote_volume;
    uint32_t trades;
    bool closed;
};

struct cq_book_top {
    cq_dec bid, bid_qty, ask, ask_qty;
    uint64_t update_id;
};

struct cq_trade_tick {
    uint64_t trade_id;
    cq_dec price, qty;
    int64_t time_ms; /* exchange trade time */
    bool buyer_is_maker;
};

enum cq_market_event_type {
    CQ_MARKET_CANDLE_CLOSED, /* never dropped */
    CQ_MARKET_BOOK,          /* coalesced per symbol */
    CQ_MARKET_TRADE,         /* may be dropped when full (counted) */
};

enum cq_candle_source {
    CQ_CANDLE_FROM_STREAM,   /* x=true kline */
    CQ_CANDLE_FROM_BACKFILL, /* GET /api/v3/klines after a gap */
    CQ_CANDLE_FROM_WARMUP    /* history fetched at start */
};

struct cq_market_event {
    enum cq_market_event_type type;
    int symbol_idx;         /* index into CQ_SYMBOLS */
    int64_t recv_mono_ms;   /* when the feeder received it */
    int64_t frame_mono_us;  /* closed candles from the stream: cq_time_mono_us() when the
                               feeder took the frame (tick-to-order); else 0 */
    int64_t pushed_mono_us; /* with frame_mono_us: cq_time_mono_us() just before the feeder
                               pushed the closed candle to ARES's ring (a stage stamp) */
    union {
        struct {
            struct cq_candle candle;
            enum cq_candle_source source;
        } candle;
        struct cq_book_top book;
        struct cq_trade_tick trade;
    } u;
};

#endif /* CQ_MARKET_H */
