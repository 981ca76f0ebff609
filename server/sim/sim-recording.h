/*
 * sim-recording.h — reading raw Binance spot WebSocket recordings (private
 * to server/sim/): the files of ../shared/data/ws/recordings, one line per
 * received message, "<receive time> <raw JSON>", gzip or plain text.
 *
 * A recording is loaded whole into typed events, in the order they were
 * received (the receive times never decrease: checked), which is the order
 * the replay feeds them to the matching engine:
 *   SIM_REC_TRADE        <s>@trade            (t, p, q, T, m)
 *   SIM_REC_BOOK_TICKER  <s>@bookTicker       (u, b, B, a, A)
 *   SIM_REC_DEPTH        <s>@depth[@100ms]    (E, U, u, b[], a[]): the
 *                        changed levels, a quantity of 0 removes the level
 *   SIM_REC_SNAPSHOT     a REST depth snapshot line {"lastUpdateId","bids",
 *                        "asks"} (first = last = lastUpdateId)
 * Prices and quantities are the exact decimal strings of the file (cq_dec,
 * never a double). Receive times are microseconds since the epoch whatever
 * the file used: 19 digits are nanoseconds (2024 files), 16 microseconds
 * (the 2023 file), 13 milliseconds; a file mixing them is refused.
 *
 * Several files may be given for one symbol (a capture split at midnight):
 * they are read in the order given and must continue each other (receive
 * times, depth update ids).
 *
 * Errors name file:line, the problem and the fix. Two kinds:
 *   - a bad line (not "<digits> <JSON>", JSON that is not one of the four
 *     messages above, a field missing or of the wrong type, a price that is
 *     not a positive decimal, a negative quantity, a bid >= ask in a
 *     bookTicker): the load stops, unless skip_bad_lines is set, in which
 *     case the line is skipped, counted in bad_lines and the first one's
 *     message is kept in first_bad;
 *   - a broken recording (receive time going backwards, depth ids not
 *     continuing U == previous u + 1, two symbols, a line longer than
 *     SIM_REC_LINE_MAX, more than SIM_REC_EVENTS_MAX events or
 *     SIM_REC_LEVELS_MAX levels): always stops the load.
 *
 * Threads: none; the result is immutable and may be read from any thread.
 */
#ifndef CQ_SIM_RECORDING_H
#define CQ_SIM_RECORDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/market.h"

#define SIM_REC_LINE_MAX ((size_t)1 << 20)     /* bytes per line (a snapshot ~64 KB) */
#define SIM_REC_EVENTS_MAX ((size_t)20000000)  /* events per recording */
#define SIM_REC_LEVELS_MAX ((size_t)100000000) /* depth levels per recording */
#define SIM_REC_FILES_MAX 64                   /* files per recording */
#define SIM_REC_BAD_MAX 256                    /* bytes of the first bad line's message */

enum cq_sim__rec_kind { SIM_REC_TRADE, SIM_REC_BOOK_TICKER, SIM_REC_DEPTH, SIM_REC_SNAPSHOT };

/* A depth level; qty 0 in a diff removes the level. */
struct cq_sim__rec_level {
    cq_dec price;
    cq_dec qty;
};

struct cq_sim__rec_event {
    enum cq_sim__rec_kind kind;
    int64_t recv_us; /* the collector's receive time, microseconds since the epoch */
    union {
        struct {
            uint64_t id;
            cq_dec price, qty;
            int64_t time_ms; /* T: the exchange's trade time */
            bool buyer_is_maker;
        } trade;
        struct {
            uint64_t update_id; /* u: the book's update id */
            cq_dec bid, bid_qty, ask, ask_qty;
        } ticker;
        struct {
            uint64_t first_update_id; /* U (snapshot: lastUpdateId) */
            uint64_t last_update_id;  /* u (snapshot: lastUpdateId) */
            int64_t event_ms;         /* E (snapshot: 0) */
            size_t level0;            /* index of its first level in levels[] */
            uint32_t n_bids, n_asks;  /* bids first, best first as sent */
        } depth;                      /* SIM_REC_DEPTH and SIM_REC_SNAPSHOT */
    } u;
};

struct cq_sim__recording {
    char symbol[CQ_SYMBOL_LEN];       /* "BTCUSDT", from the stream names */
    struct cq_sim__rec_event *events; /* owned, receive order */
    size_t n_events;
    struct cq_sim__rec_level *levels; /* owned, depth and snapshot levels */
    size_t n_levels;
    size_t n_trades, n_tickers, n_depths, n_snapshots;
    size_t bad_lines;                /* skipped (skip_bad_lines only) */
    char first_bad[SIM_REC_BAD_MAX]; /* the first skipped line's error, "" if none */
};

struct cq_sim__recording_options {
    bool skip_bad_lines; /* false: the first bad line stops the load */
};

/* Load files paths[0..n_paths) (gzip or plain) as one recording. NULL on
 * error with err naming file:line. opts may be NULL (defaults). */
struct cq_sim__recording *cq_sim__recording_load(const char *const *paths, size_t n_paths,
                                                 const struct cq_sim__recording_options *opts,
                                                 struct cq_err *err);
void cq_sim__recording_free(struct cq_sim__recording *r);

/* The symbol of a recording file ("BTCUSDT"), from the first stream name in
 * its first SIM_REC_PEEK_LINES lines; -CQ_EPARSE/-CQ_EIO with err naming the
 * file otherwise. */
#define SIM_REC_PEEK_LINES 100
int cq_sim__recording_peek_symbol(const char *path, char out[CQ_SYMBOL_LEN],
                                  struct cq_err *err) CQ_WUR;

/* The levels of a depth/snapshot event: bids then asks. */
static inline const struct cq_sim__rec_level *cq_sim__rec_bids(const struct cq_sim__recording *r,
                                                               const struct cq_sim__rec_event *e)
{
    return &r->levels[e->u.depth.level0];
}
static inline const struct cq_sim__rec_level *cq_sim__rec_asks(const struct cq_sim__recording *r,
                                                               const struct cq_sim__rec_event *e)
{
    return &r->levels[e->u.depth.level0 + e->u.depth.n_bids];
}

#endif /* CQ_SIM_RECORDING_H */
