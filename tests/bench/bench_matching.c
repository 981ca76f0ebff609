/*
 * bench_matching.c — in-process matching throughput of coinquant-simex's
 * exchange core (server/sim/engine.c). No I/O, no listener work beyond a
 * counter: what one place/cancel costs under a lock like the simulator's,
 * against a book that our orders consume and the market replaces.
 *
 * Each run builds a fresh engine (BTCUSDT with its real filters, 10/10 bps)
 * and places N orders, cycling through
 *   MARKET BUY/SELL by quantity (walks 1-4 levels), MARKET BUY by
 *   quoteOrderQty, LIMIT IOC that crosses 1-3 levels and expires the rest,
 *   LIMIT GTC that rests, canceled when the next GTC order is placed.
 * The engine remembers what our orders took from each level of the 20-level
 * book and offers only the rest (docs/SIMEX.md, "Queue model"), so the book
 * thins as orders go. Every MARKET_STEP_ORDERS orders a market step posts a
 * replaced book (every level's quantity changes, so every level refills)
 * through cq_sim__engine_on_market, as the simulator's market thread does; the
 * resting GTC orders are checked against it there. Every engine call takes
 * a pthread mutex first, as the simulator's REST handlers and market thread
 * do (uncontended here: one thread).
 * "orders" counts placements only; the cancels (one per GTC order) and the
 * market steps come on top, so orders_per_s understates the engine calls
 * per second. Every placement must be accepted, and every MARKET order must
 * fill at least once (the run aborts otherwise, so neither a rejection
 * storm nor an exhausted book can pass for speed); an IOC order may find
 * its levels already taken within the step and expire unfilled (counted).
 * Prints the median of 5 runs as one JSON line.
 *
 * Build: gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude -Iserver
 *   tests/bench/bench_matching.c server/sim/engine.c server/sim/symbols.c
 *   server/core/decimal.c server/core/err.c -ljansson -o bench_matching
 * Usage: bench_matching [orders]   (default 1000000)
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim-engine.h"

#define RUNS 5
#define LEVELS 20
#define MARKET_STEP_ORDERS 8 /* orders between two market steps (one cycle of the mix) */

/* The simulator's lock: REST handlers and the market thread take it around
 * every engine call. */
static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;

/* The model's book at market step `step`: the same prices, every quantity
 * one lot (0.00001 BTC) different from the previous step's, so the engine
 * sees every level replaced. */
static void market_book(struct cq_sim__level *bids, struct cq_sim__level *asks, uint64_t step)
{
    /* asks 60000.00, 60000.50, …; bids 59999.50, 59999.00, …; 0.02 BTC
     * and up per level */
    for (int i = 0; i < LEVELS; i++) {
        asks[i].price = cq_dec_make(6000000 + 50 * i, 2);
        asks[i].qty = cq_dec_make(2000 + 500 * i + (int64_t)(step & 1), 5);
        bids[i].price = cq_dec_make(5999950 - 50 * i, 2);
        bids[i].qty = cq_dec_make(2000 + 500 * i + (int64_t)(step & 1), 5);
    }
}

struct counters {
    unsigned long long reports, positions;
};

static void on_exec(void *ctx, const struct cq_sim__exec_report *r)
{
    struct counters *c = ctx;
    (void)r;
    c->reports++;
}

static void on_position(void *ctx, const struct cq_sim__balance *b, size_t n, int64_t ms)
{
    struct counters *c = ctx;
    (void)b;
    (void)n;
    (void)ms;
    c->positions++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct cq_sim__reject *rej)
{
    fprintf(stderr, "bench_matching: %s: %d %s\n", what, rej != NULL ? rej->code : 0,
            rej != NULL ? rej->msg : "");
    exit(1);
}

/* One run; returns the seconds the N placements (and their cancels and the
 * market steps) took. */
static double run_once(size_t n_orders, unsigned long long *fills_out, uint64_t *steps_out,
                       unsigned long long *ioc_unfilled_out)
{
    struct cq_sim__symbol sym;
    struct cq_sim__balance bal[2];
    struct cq_sim__level bids[LEVELS], asks[LEVELS];
    struct cq_sim__book_view book;
    struct counters cnt = {0, 0};
    struct cq_sim__engine_listener l = {on_exec, on_position, &cnt};
    struct cq_sim__engine_stats st;
    struct cq_sim__order_req req;
    struct cq_sim__order order;
    struct cq_sim__fill fills[LEVELS];
    struct cq_sim__reject rej;
    struct cq_err err;
    uint64_t pending_cancel = 0;
    uint64_t steps = 0;
    unsigned long long ioc_unfilled = 0;
    size_t n_fills;
    double t0, t1;

    if (cq_sim__symbol_defaults("BTCUSDT", &sym) < 0) {
        die("symbol", NULL);
    }
    memset(bal, 0, sizeof(bal));
    cq_strlcpy(bal[0].asset, "USDT", SIM_ASSET_LEN);
    bal[0].free = cq_dec_make(1000000000, 0); /* 1e9 */
    cq_strlcpy(bal[1].asset, "BTC", SIM_ASSET_LEN);
    bal[1].free = cq_dec_make(100000, 0);
    struct cq_sim__engine_config cfg = {
        .symbols = &sym,
        .n_symbols = 1,
        .balances = bal,
        .n_balances = 2,
        .maker_bps = 10,
        .taker_bps = 10,
        .seed = 1,
        .max_orders = n_orders + 16,
        .max_trades = 1000000,
    };
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    if (e == NULL) {
        fprintf(stderr, "bench_matching: %s\n", err.message);
        exit(1);
    }
    cq_sim__engine_set_listener(e, &l);

    market_book(bids, asks, 0);
    memset(&book, 0, sizeof(book));
    book.asks = asks;
    book.n_asks = LEVELS;
    book.bids = bids;
    book.n_bids = LEVELS;
    book.last_price = cq_dec_make(6000000, 2);

    t0 = now_s();
    for (size_t i = 0; i < n_orders; i++) {
        if (i > 0 && i % MARKET_STEP_ORDERS == 0) { /* the market moves: a replaced book */
            market_book(bids, asks, ++steps);
            pthread_mutex_lock(&engine_lock);
            (void)cq_sim__engine_on_book(e, 0, &book, (int64_t)i);
            pthread_mutex_unlock(&engine_lock);
        }
        memset(&req, 0, sizeof(req));
        req.symbol_idx = 0;
        req.side = (i & 1) ? SIM_SELL : SIM_BUY;
        switch (i % 8) {
        case 0:
        case 1: /* MARKET by qty: 0.01 .. 0.06 BTC */
            req.type = SIM_MARKET;
            req.has_qty = true;
            req.qty = cq_dec_make(1000 + (int64_t)(i % 5) * 1250, 5);
            break;
        case 2: /* MARKET BUY by quoteOrderQty: 1500 USDT */
            req.type = SIM_MARKET;
            req.side = SIM_BUY;
            req.has_quote_qty = true;
            req.quote_qty = cq_dec_make(1500, 0);
            break;
        case 3:
        case 4: /* LIMIT IOC crossing 1-3 levels, remainder expires */
            req.type = SIM_LIMIT;
            req.tif = SIM_IOC;
            req.has_qty = true;
            req.qty = cq_dec_make(9000, 5);
            req.has_price = true;
            req.price = req.side == SIM_BUY ? cq_dec_make(6000100, 2) : cq_dec_make(5999850, 2);
            break;
        default: /* LIMIT GTC that rests */
            req.type = SIM_LIMIT;
            req.tif = SIM_GTC;
            req.has_qty = true;
            req.qty = cq_dec_make(1000, 5);
            req.has_price = true;
            req.price = req.side == SIM_BUY ? cq_dec_make(5990000 - (int64_t)(i % 50), 2)
                                            : cq_dec_make(6010000 + (int64_t)(i % 50), 2);
            break;
        }
        pthread_mutex_lock(&engine_lock);
        int rc =
            cq_sim__engine_place(e, &req, &book, (int64_t)i, &order, fills, LEVELS, &n_fills, &rej);
        pthread_mutex_unlock(&engine_lock);
        if (rc < 0) {
            die("place rejected", &rej);
        }
        if (req.type == SIM_MARKET && n_fills == 0) {
            die("a MARKET order found no liquidity (the book was not replaced)", NULL);
        }
        if (req.tif == SIM_IOC && n_fills == 0) {
            ioc_unfilled++; /* earlier orders of the step took those levels */
        }
        if (req.type == SIM_LIMIT && req.tif == SIM_GTC) {
            uint64_t placed_id = order.order_id;
            if (pending_cancel != 0) {
                pthread_mutex_lock(&engine_lock);
                rc = cq_sim__engine_cancel(e, 0, pending_cancel, NULL, NULL, (int64_t)i, &order,
                                           &rej);
                pthread_mutex_unlock(&engine_lock);
                if (rc < 0) {
                    die("cancel rejected", &rej);
                }
            }
            pending_cancel = placed_id;
        }
    }
    t1 = now_s();

    cq_sim__engine_get_stats(e, &st);
    if (st.orders_placed != n_orders || st.orders_rejected != 0 || st.fills == 0) {
        die("unexpected stats", NULL);
    }
    *fills_out = st.fills;
    *steps_out = steps;
    *ioc_unfilled_out = ioc_unfilled;
    cq_sim__engine_free(e);
    return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    double secs[RUNS];
    unsigned long long fills = 0;
    uint64_t steps = 0;
    unsigned long long ioc_unfilled = 0;
    if (argc > 1) {
        char *end = NULL;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || v == 0 || v > 100000000ULL) {
            fprintf(stderr, "usage: %s [orders (1..100000000)]\n", argv[0]);
            return 2;
        }
        n = (size_t)v;
    }
    for (int r = 0; r < RUNS; r++) {
        secs[r] = run_once(n, &fills, &steps, &ioc_unfilled);
    }
    qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
    double median = secs[RUNS / 2];
    printf("{\"bench\":\"sim_matching\",\"orders\":%zu,\"seconds\":%.3f,\"orders_per_s\":%.0f,"
           "\"fills\":%llu,\"market_steps\":%llu,\"ioc_unfilled\":%llu,\"locked\":true,"
           "\"median_of\":%d}\n",
           n, median, (double)n / median, fills, (unsigned long long)steps, ioc_unfilled, RUNS);
    fprintf(stderr, "bench_matching: %llu fills per run; runs %.3f..%.3f s\n", fills, secs[0],
            secs[RUNS - 1]);
    return 0;
}
