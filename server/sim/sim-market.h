/*
 * sim-market.h — coinquant-simex's market model (private to server/sim/).
 *
 * Per symbol: a price path, the public trades it implies, a synthetic order
 * book around the last price, and 1m klines (history + the forming bar),
 * aggregated on request to any Binance interval.
 *
 * Sources:
 *   - recorded 1m klines in the CSV format of ../shared/data/klines
 *     (open_time_ms,open,high,low,close,volume,close_time_ms,quote_volume,
 *     trades; empty trailing fields allowed), replayed with their timestamps
 *     shifted so that the first replayed bar opens at start_ms; or
 *   - a seeded random walk when no data is given (deterministic per seed).
 * Inside each 1m bar the model walks open -> high/low -> close (the nearer
 * extreme first), emitting a seeded number of trades whose quantities add up
 * to the bar's volume (stepped to the symbol's step size) and whose prices
 * lie on the tick grid within [low, high]. Replaying a bar therefore
 * reproduces its recorded OHLCV exactly.
 *
 * Time is the simulator's: the caller advances it (cq_sim__market_advance) and
 * the model emits every event up to that instant, in time order. When the
 * recorded data runs out the replay starts again from its first row with
 * prices rescaled so the path stays continuous.
 *
 * Threads: not thread-safe; the simulator serialises calls with its lock.
 * Listener callbacks run inside cq_sim__market_advance under that lock.
 */
#ifndef CQ_SIM_MARKET_H
#define CQ_SIM_MARKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "sim-engine.h"
#include "sim-recording.h"

#define SIM_MINUTE_MS 60000LL

struct cq_sim__public_trade {
    uint64_t trade_id; /* per symbol, increasing by 1 */
    cq_dec price;
    cq_dec qty;
    int64_t time_ms;
    bool buyer_is_maker; /* true when the seller was the aggressor */
};

struct cq_sim__kline {
    int64_t open_ms;
    int64_t close_ms; /* open_ms + interval - 1 */
    cq_dec open, high, low, close;
    cq_dec volume; /* base */
    cq_dec quote_volume;
    cq_dec taker_buy_base, taker_buy_quote;
    uint64_t first_trade_id; /* 0 when no trade */
    uint64_t last_trade_id;
    uint32_t trades;
    bool closed;
};

struct cq_sim__ticker24 {
    cq_dec open, high, low, last, last_qty, volume, quote_volume;
    cq_dec bid, bid_qty, ask, ask_qty;
    int64_t open_ms, close_ms;
    uint64_t first_id, last_id, count;
};

struct cq_sim__market_listener {
    void (*on_trade)(void *ctx, int symbol_idx, const struct cq_sim__public_trade *t);
    /* The book changed (after trades, or on its own schedule). */
    void (*on_book)(void *ctx, int symbol_idx, const struct cq_sim__book_view *book,
                    uint64_t update_id, int64_t time_ms);
    /* The forming 1m bar changed (at most every 2 s of sim time) or closed
     * (closed=true, exactly once per bar, at its close). */
    void (*on_kline)(void *ctx, int symbol_idx, const struct cq_sim__kline *k);
    void *ctx;
};

struct cq_sim__market_options {
    const struct cq_sim__symbol *symbols; /* tick and step come from the filters */
    size_t n_symbols;
    /* NULL: synthetic. Otherwise a directory containing <SYMBOL>-1m.csv for
     * every symbol (a missing file is an error naming it), or a single CSV
     * file when there is one symbol. */
    const char *data_path;
    /* NULL: none. Otherwise recorded WebSocket captures (sim-recording.h)
     * replayed as the market of their symbol, a comma-separated list of
     * files; the files of one symbol are read in the order given as one
     * capture. Every file's symbol must be one of `symbols`; symbols
     * without a recording use data_path or the synthetic walk. See
     * market.c "Recorded book". */
    const char *book_recording;
    /* Recording time used to build the book when a recording holds no REST
     * snapshot in it (0: 30000). */
    int64_t book_warmup_ms;
    uint64_t seed;
    int64_t start_ms;    /* sim time at start; floored to the minute */
    size_t history_bars; /* closed 1m bars that exist before start (e.g. 1000) */
    size_t book_levels;  /* levels per side (<= SIM_DEPTH_MAX), e.g. 20 */
};

struct cq_sim__market;

/* Loads/validates the data (every row: monotonic open times, low <= open,
 * close <= high, non-negative volume; an error names file:line and the
 * problem). NULL on error. */
struct cq_sim__market *cq_sim__market_new(const struct cq_sim__market_options *opts,
                                          struct cq_err *err);
void cq_sim__market_free(struct cq_sim__market *m);
void cq_sim__market_set_listener(struct cq_sim__market *m, const struct cq_sim__market_listener *l);

/* Emit every event with time <= to_ms, in time order, and move the clock
 * there. A to_ms in the past is a no-op. Returns the number of events. */
size_t cq_sim__market_advance(struct cq_sim__market *m, int64_t to_ms);
/* Time of the next event (for `--speed max`: advance straight to it);
 * INT64_MAX if none. */
int64_t cq_sim__market_next_event_ms(const struct cq_sim__market *m);
int64_t cq_sim__market_now_ms(const struct cq_sim__market *m);

/* Paused: advance() moves the clock but emits nothing and the price holds
 * (fault injection "pause the market"). */
void cq_sim__market_set_paused(struct cq_sim__market *m, bool paused);

/* The current book, levels best first (borrowed until the next advance). */
void cq_sim__market_book(const struct cq_sim__market *m, int symbol_idx,
                         struct cq_sim__book_view *out);
uint64_t cq_sim__market_book_update_id(const struct cq_sim__market *m, int symbol_idx);
cq_dec cq_sim__market_last_price(const struct cq_sim__market *m, int symbol_idx);
/* GET /api/v3/avgPrice: the volume-weighted average price of the public
 * trades of the last AVG_PRICE_MINS minutes (as 1m bars record them: the
 * bars overlapping the window), 8 decimals; the last price when there were
 * none. *close_ms: the last trade's time (to the minute). The book view's
 * avg_price is the same number. */
#define AVG_PRICE_MINS 5
cq_dec cq_sim__market_avg_price(const struct cq_sim__market *m, int symbol_idx, int64_t *close_ms);

/* The public trades kept for GET /api/v3/trades and aggTrades: the newest
 * SIM_TAPE_MAX per symbol (older ones are gone: historicalTrades is not
 * served). Oldest first, at most `limit`: with no filter the most recent
 * `limit`; else those with id >= from_id (0 = any) and time in [start_ms,
 * end_ms] (0 = unbounded). Returns the count. */
#define SIM_TAPE_MAX 1000
size_t cq_sim__market_trades(const struct cq_sim__market *m, int symbol_idx, uint64_t from_id,
                             int64_t start_ms, int64_t end_ms, size_t limit,
                             void (*fn)(void *ctx, const struct cq_sim__public_trade *t),
                             void *ctx);

/* Klines for a Binance interval string ("1m","3m","5m","15m","30m","1h",
 * "2h","4h","6h","8h","12h","1d","3d","1w","1M"), aggregated from the 1m
 * bars, including the forming bar (closed=false). start_ms/end_ms 0 =
 * unbounded; without start the most recent `limit` bars are returned;
 * chronological order. Returns the count, or -CQ_EINVAL for an unknown
 * interval. */
int cq_sim__market_klines(const struct cq_sim__market *m, int symbol_idx, const char *interval,
                          int64_t start_ms, int64_t end_ms, size_t limit,
                          void (*fn)(void *ctx, const struct cq_sim__kline *k), void *ctx) CQ_WUR;
/* Interval length in ms, or -1 if unknown ("1M" counts as 30 days). */
int64_t cq_sim__interval_ms(const char *interval);

/* Our own taker fill as a public trade (issue 19: our trades on the tape):
 * it gets the next public trade id and the market time now, goes on the
 * tape (GET trades/aggTrades), into the forming 1m bar (klines, the 24h
 * ticker, the last price) when one is open now, and takes its quantity from
 * the displayed book level at its price on the side it hit (asks for a taker
 * buy, buyer_is_maker false), removing the level when emptied. The listener
 * is NOT called (the caller runs inside the engine's listener and publishes
 * the trade and the book itself). The depletion lasts until the model
 * replaces the level: the synthetic book's next redraw (the next public
 * trade), a recorded diff or bookTicker that sets that level. 0, or
 * -CQ_EINVAL for a price off the tick grid or a quantity off the step grid
 * (nothing changes). */
int cq_sim__market_print_trade(struct cq_sim__market *m, int symbol_idx, cq_dec price, cq_dec qty,
                               bool buyer_is_maker, struct cq_sim__public_trade *out) CQ_WUR;

/* Replay statistics of a symbol replayed from a recording (all zero for
 * the other sources): loops completed, recorded events replayed (this
 * loop), warm-up events consumed silently at the last (re)start, and book
 * levels dropped because a side held REC_BOOK_SIDE_MAX levels. */
struct cq_sim__replay_stats {
    bool replaying;
    uint64_t loops;
    uint64_t events;
    uint64_t warmup_events;
    uint64_t levels_dropped;
};
void cq_sim__market_replay_stats(const struct cq_sim__market *m, int symbol_idx,
                                 struct cq_sim__replay_stats *out);

void cq_sim__market_ticker24(const struct cq_sim__market *m, int symbol_idx,
                             struct cq_sim__ticker24 *out);

#endif /* CQ_SIM_MARKET_H */
