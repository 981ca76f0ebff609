/*
 * rec_book.h — a local order book rebuilt from a raw Binance recording
 * (server/sim/sim-recording.h events), for driving the matching engine
 * directly in tests and benchmarks (test_sim_engine_replay.c,
 * bench_matching.c) without the simulator's market thread.
 *
 * Depth diffs and snapshots set or remove levels; a bookTicker sets the
 * best bid and ask and removes the levels it shows were crossed; after any
 * update the side that was not updated gives way if the book crossed. At
 * most REC_BOOK_MAX levels per side are kept (the deepest fall off); the
 * engine sees the best SIM_DEPTH_MAX. Header-only, single-threaded.
 */
#ifndef CQ_TEST_REC_BOOK_H
#define CQ_TEST_REC_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "cq/decimal.h"
#include "sim-engine.h"
#include "sim-recording.h"

#define REC_BOOK_MAX 500 /* levels per side */

struct rec_book {
    struct cq_sim__level bids[REC_BOOK_MAX]; /* best (highest) first */
    struct cq_sim__level asks[REC_BOOK_MAX]; /* best (lowest) first */
    size_t n_bids, n_asks;
    struct cq_sim__book_view view;
};

static inline void rec_book_init(struct rec_book *b)
{
    memset(b, 0, sizeof(*b));
}

/* Is `a` better than `b` on this side (bids: higher)? */
static inline bool rec_book_better(bool bids, cq_dec a, cq_dec b)
{
    int c = cq_dec_cmp(a, b);
    return bids ? c > 0 : c < 0;
}

static inline void rec_book_set(struct rec_book *b, bool bids, cq_dec price, cq_dec qty)
{
    struct cq_sim__level *lv = bids ? b->bids : b->asks;
    size_t *n = bids ? &b->n_bids : &b->n_asks;
    size_t lo = 0, hi = *n;
    while (lo < hi) { /* first level not better than price */
        size_t mid = (lo + hi) / 2;
        if (rec_book_better(bids, lv[mid].price, price)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < *n && cq_dec_cmp(lv[lo].price, price) == 0) {
        if (qty.m == 0) {
            memmove(&lv[lo], &lv[lo + 1], (*n - lo - 1) * sizeof(*lv));
            (*n)--;
        } else {
            lv[lo].qty = qty;
        }
        return;
    }
    if (qty.m == 0 || lo >= REC_BOOK_MAX) {
        return;
    }
    if (*n == REC_BOOK_MAX) {
        (*n)--; /* the deepest falls off */
    }
    memmove(&lv[lo + 1], &lv[lo], (*n - lo) * sizeof(*lv));
    lv[lo].price = price;
    lv[lo].qty = qty;
    (*n)++;
}

/* Remove the levels of one side that are at or through `limit` (the other
 * side's best), so the book does not cross. */
static inline void rec_book_uncross(struct rec_book *b, bool bids, cq_dec limit)
{
    struct cq_sim__level *lv = bids ? b->bids : b->asks;
    size_t *n = bids ? &b->n_bids : &b->n_asks;
    size_t k = 0;
    while (k < *n &&
           (bids ? cq_dec_cmp(lv[k].price, limit) >= 0 : cq_dec_cmp(lv[k].price, limit) <= 0)) {
        k++;
    }
    if (k > 0) {
        memmove(lv, lv + k, (*n - k) * sizeof(*lv));
        *n -= k;
    }
}

/* Apply a book event (depth, snapshot, bookTicker); trades are ignored. */
static inline void rec_book_apply(struct rec_book *b, const struct cq_sim__recording *r,
                                  const struct cq_sim__rec_event *ev)
{
    if (ev->kind == SIM_REC_BOOK_TICKER) {
        rec_book_uncross(b, true, ev->u.ticker.ask); /* bids at or above the ask are gone */
        rec_book_uncross(b, false, ev->u.ticker.bid);
        /* levels better than the new best are gone too */
        while (b->n_bids > 0 && rec_book_better(true, b->bids[0].price, ev->u.ticker.bid)) {
            rec_book_set(b, true, b->bids[0].price, CQ_DEC_ZERO);
        }
        while (b->n_asks > 0 && rec_book_better(false, b->asks[0].price, ev->u.ticker.ask)) {
            rec_book_set(b, false, b->asks[0].price, CQ_DEC_ZERO);
        }
        rec_book_set(b, true, ev->u.ticker.bid, ev->u.ticker.bid_qty);
        rec_book_set(b, false, ev->u.ticker.ask, ev->u.ticker.ask_qty);
        return;
    }
    if (ev->kind != SIM_REC_DEPTH && ev->kind != SIM_REC_SNAPSHOT) {
        return;
    }
    if (ev->kind == SIM_REC_SNAPSHOT) {
        b->n_bids = b->n_asks = 0;
    }
    const struct cq_sim__rec_level *bl = cq_sim__rec_bids(r, ev);
    const struct cq_sim__rec_level *al = cq_sim__rec_asks(r, ev);
    for (uint32_t i = 0; i < ev->u.depth.n_bids; i++) {
        rec_book_set(b, true, bl[i].price, bl[i].qty);
    }
    for (uint32_t i = 0; i < ev->u.depth.n_asks; i++) {
        rec_book_set(b, false, al[i].price, al[i].qty);
    }
    /* a diff may lag the ticker: the side it did not move gives way */
    if (b->n_bids > 0 && b->n_asks > 0 && cq_dec_cmp(b->bids[0].price, b->asks[0].price) >= 0) {
        if (ev->u.depth.n_bids >= ev->u.depth.n_asks) {
            rec_book_uncross(b, false, b->bids[0].price);
        } else {
            rec_book_uncross(b, true, b->asks[0].price);
        }
    }
}

/* The view the engine gets: the best SIM_DEPTH_MAX levels per side. */
static inline const struct cq_sim__book_view *rec_book_view(struct rec_book *b, cq_dec last_price)
{
    b->view.bids = b->bids;
    b->view.asks = b->asks;
    b->view.n_bids = b->n_bids < SIM_DEPTH_MAX ? b->n_bids : SIM_DEPTH_MAX;
    b->view.n_asks = b->n_asks < SIM_DEPTH_MAX ? b->n_asks : SIM_DEPTH_MAX;
    b->view.last_price = last_price;
    b->view.avg_price = CQ_DEC_ZERO; /* PERCENT_PRICE_BY_SIDE off */
    return &b->view;
}

/* What the view displays at `price` on the side a resting order on `side`
 * joins: true with *qty (0 if inside the shown levels but absent), false
 * when deeper than the levels shown or the side is empty (unknown). */
static inline bool rec_book_shown(const struct rec_book *b, enum cq_sim__side side, cq_dec price,
                                  cq_dec *qty)
{
    bool bids = side == SIM_BUY;
    const struct cq_sim__level *lv = bids ? b->view.bids : b->view.asks;
    size_t n = bids ? b->view.n_bids : b->view.n_asks;
    *qty = CQ_DEC_ZERO;
    for (size_t i = 0; i < n; i++) {
        int c = cq_dec_cmp(lv[i].price, price);
        if (c == 0) {
            *qty = lv[i].qty;
            return true;
        }
        if (bids ? c < 0 : c > 0) {
            return true;
        }
    }
    return false;
}

#endif /* CQ_TEST_REC_BOOK_H */
