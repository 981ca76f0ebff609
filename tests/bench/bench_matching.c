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
 * through cq_sim__engine_on_book, as the simulator's market thread does; the
 * resting GTC orders are checked against it there. Every engine call takes
 * a pthread mutex first, as the simulator's REST handlers and market thread
 * do (uncontended here: one thread).
 * "orders" counts placements only; the cancels (one per GTC order) and the
 * market steps come on top, so orders_per_s understates the engine calls
 * per second. Every placement must be accepted, and every MARKET order must
 * fill at least once (the run aborts otherwise, so neither a rejection
 * storm nor an exhausted book can pass for speed); an IOC order may find
 * its levels already taken within the step and expire unfilled (counted).
 * Prints the median of 5 runs as one JSON line, for the old model (none)
 * and the conservative queue model.
 *
 * Then, when ../shared/data/ws/recordings is there (issue 19's benchmark):
 * the engine driven directly with each recording's trades and book
 * (tests/support/rec_book.h) under each queue model (none, conservative,
 * probabilistic), with two strategies:
 *   passive  one BUY at the best bid and one SELL at the best ask, about
 *            600 quote units each, canceled and placed again when the best
 *            price on its side moves;
 *   taker    every 2 s of recording time, a MARKET order of about 600
 *            quote units in the direction of the last trade's aggressor.
 * Per line: fill ratio (executed / placed quantity), slippage in bps
 * (average fill price against the mid at the decision, positive = worse
 * for us), PnL in quote units (balances at the end, the base marked at the
 * last trade price; fees 10/10 bps included), the replay's events per
 * second (book rebuild + engine + strategy; median of 5 runs) and a
 * checksum (FNV-1a over the results' decimal text: the runs are
 * deterministic).
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
#include "sim-recording.h"
#include "support/rec_book.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

static void replay_bench(void);

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
static double run_once(size_t n_orders, enum cq_sim__queue_model model,
                       unsigned long long *fills_out, uint64_t *steps_out,
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
        .queue_model = model,
        /* every step changes every level: the market model replaced it */
        .refill = SIM_REFILL_CHANGE,
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
    static const enum cq_sim__queue_model models[] = {SIM_QUEUE_NONE, SIM_QUEUE_CONSERVATIVE};
    for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        for (int r = 0; r < RUNS; r++) {
            secs[r] = run_once(n, models[m], &fills, &steps, &ioc_unfilled);
        }
        qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
        double median = secs[RUNS / 2];
        printf("{\"bench\":\"sim_matching\",\"queue_model\":\"%s\",\"orders\":%zu,"
               "\"seconds\":%.3f,\"orders_per_s\":%.0f,\"fills\":%llu,\"market_steps\":%llu,"
               "\"ioc_unfilled\":%llu,\"locked\":true,\"median_of\":%d}\n",
               cq_sim__queue_model_name(models[m]), n, median, (double)n / median, fills,
               (unsigned long long)steps, ioc_unfilled, RUNS);
        fprintf(stderr, "bench_matching: %llu fills per run; runs %.3f..%.3f s\n", fills, secs[0],
                secs[RUNS - 1]);
    }
    replay_bench();
    return 0;
}

/* ---- issue 19: strategies on the recorded book ------------------------------------ */

/* Decimal arithmetic that cannot fail on these amounts; a failure aborts. */
#define DEC_OK(call)                                                                               \
    do {                                                                                           \
        if ((call) < 0) {                                                                          \
            die(#call, NULL);                                                                      \
        }                                                                                          \
    } while (0)

struct replay {
    struct cq_sim__engine *e;
    struct rec_book book;
    cq_dec last_price, qty;
    /* passive: our two resting orders (0 = none) */
    uint64_t bid_id, ask_id;
    bool bid_open, ask_open;
    /* results */
    cq_dec placed_qty, filled_qty, slip_sum; /* slip_sum: sum of qty * (price - mid) signed */
    uint64_t orders, fills;
    cq_dec mid; /* the mid when the fill's order was decided (taker) or now (maker) */
};

static void replay_exec(void *ctx, const struct cq_sim__exec_report *r)
{
    struct replay *x = ctx;
    const struct cq_sim__order *o = r->order;
    bool open = o->status == SIM_NEW || o->status == SIM_PARTIALLY_FILLED;
    if (o->order_id == x->bid_id) {
        x->bid_open = open;
    } else if (o->order_id == x->ask_id) {
        x->ask_open = open;
    }
    if (r->exec_type == SIM_EXEC_TRADE && r->fill != NULL) {
        cq_dec d, w;
        x->fills++;
        DEC_OK(cq_dec_add(x->filled_qty, r->fill->qty, &x->filled_qty));
        /* worse for us: a BUY above the mid, a SELL below it */
        DEC_OK(cq_dec_sub(r->fill->price, x->mid, &d));
        if (o->side == SIM_SELL) {
            d.m = -d.m;
        }
        if (cq_dec_mul(d, r->fill->qty, 8, CQ_ROUND_DOWN, &w) == 0) {
            DEC_OK(cq_dec_add(x->slip_sum, w, &x->slip_sum));
        }
    }
}

static cq_dec mid_of(const struct cq_sim__book_view *v)
{
    cq_dec m = CQ_DEC_ZERO;
    if (v->n_bids > 0 && v->n_asks > 0 && cq_dec_add(v->bids[0].price, v->asks[0].price, &m) == 0) {
        DEC_OK(cq_dec_div(m, cq_dec_make(2, 0), 8, CQ_ROUND_DOWN, &m));
    }
    return m;
}

static void rp_place(struct replay *x, enum cq_sim__side side, enum cq_sim__order_type type,
                     cq_dec price, int64_t t, uint64_t *id)
{
    struct cq_sim__order_req q;
    struct cq_sim__order o;
    struct cq_sim__fill f[SIM_DEPTH_MAX];
    struct cq_sim__reject rej;
    size_t n;
    memset(&q, 0, sizeof(q));
    q.side = side;
    q.type = type;
    q.has_qty = true;
    q.qty = x->qty;
    q.stp = SIM_STP_EXPIRE_MAKER;
    if (type == SIM_LIMIT) {
        q.tif = SIM_GTC;
        q.has_price = true;
        q.price = price;
    }
    pthread_mutex_lock(&engine_lock);
    int rc = cq_sim__engine_place(x->e, &q, rec_book_view(&x->book, x->last_price), t, &o, f,
                                  SIM_DEPTH_MAX, &n, &rej);
    pthread_mutex_unlock(&engine_lock);
    if (rc == 0) {
        x->orders++;
        DEC_OK(cq_dec_add(x->placed_qty, x->qty, &x->placed_qty));
        if (id != NULL) {
            *id = o.order_id;
        }
    } else if (id != NULL) {
        *id = 0;
    }
}

static void rp_cancel(struct replay *x, uint64_t id, int64_t t)
{
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    pthread_mutex_lock(&engine_lock);
    if (cq_sim__engine_cancel(x->e, 0, id, NULL, NULL, t, &o, &rej) < 0) {
        /* filled or expired meanwhile: nothing to cancel */
    }
    pthread_mutex_unlock(&engine_lock);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

struct rp_result {
    double seconds, fill_ratio, slippage_bps;
    char pnl[CQ_DEC_STR_MAX], filled[CQ_DEC_STR_MAX];
    uint64_t orders, fills, checksum;
};

struct bal_pick {
    const char *quote, *base;
    cq_dec quote_total, base_total; /* free + locked */
};

static void pick_balance(void *ctx, const struct cq_sim__balance *b)
{
    struct bal_pick *p = ctx;
    cq_dec sum;
    if (cq_dec_add(b->free, b->locked, &sum) < 0) {
        die("balance", NULL);
    }
    if (strcmp(b->asset, p->quote) == 0) {
        p->quote_total = sum;
    } else if (strcmp(b->asset, p->base) == 0) {
        p->base_total = sum;
    }
}

/* One strategy over one recording under one model. */
static void replay_once(const struct cq_sim__recording *rec, bool passive,
                        enum cq_sim__queue_model model, struct rp_result *out)
{
    static struct replay x; /* the book is large */
    struct cq_sim__symbol sym;
    struct cq_sim__balance bal[2];
    struct cq_err err;
    cq_dec q0, b0, q1, b1, pnl, tmp;
    int64_t next_taker_us = 0;
    bool last_buy = true;

    memset(&x, 0, sizeof(x));
    if (cq_sim__symbol_defaults(rec->symbol, &sym) < 0) {
        die("symbol", NULL);
    }
    memset(bal, 0, sizeof(bal));
    cq_strlcpy(bal[0].asset, sym.quote, SIM_ASSET_LEN);
    bal[0].free = cq_dec_make(1000000000, 0);
    cq_strlcpy(bal[1].asset, sym.base, SIM_ASSET_LEN);
    bal[1].free = cq_dec_make(1000000, 0);
    q0 = bal[0].free;
    b0 = bal[1].free;
    struct cq_sim__engine_config cfg = {
        .symbols = &sym,
        .n_symbols = 1,
        .balances = bal,
        .n_balances = 2,
        .maker_bps = 10,
        .taker_bps = 10,
        .seed = 1,
        .queue_model = model,
    };
    x.e = cq_sim__engine_new(&cfg, &err);
    if (x.e == NULL) {
        fprintf(stderr, "bench_matching: %s\n", err.message);
        exit(1);
    }
    struct cq_sim__engine_listener l = {replay_exec, NULL, &x};
    cq_sim__engine_set_listener(x.e, &l);
    rec_book_init(&x.book);

    double t0 = now_s();
    for (size_t i = 0; i < rec->n_events; i++) {
        const struct cq_sim__rec_event *ev = &rec->events[i];
        int64_t t = ev->recv_us / 1000;
        if (ev->kind == SIM_REC_TRADE) {
            const struct cq_sim__book_view *v = rec_book_view(&x.book, x.last_price);
            x.mid = mid_of(v);
            pthread_mutex_lock(&engine_lock);
            (void)cq_sim__engine_on_trade(x.e, 0, v, ev->u.trade.price, ev->u.trade.qty,
                                          ev->u.trade.buyer_is_maker, t);
            pthread_mutex_unlock(&engine_lock);
            x.last_price = ev->u.trade.price;
            last_buy = !ev->u.trade.buyer_is_maker;
        } else {
            rec_book_apply(&x.book, rec, ev);
            const struct cq_sim__book_view *v = rec_book_view(&x.book, x.last_price);
            x.mid = mid_of(v);
            pthread_mutex_lock(&engine_lock);
            (void)cq_sim__engine_on_book(x.e, 0, v, t);
            pthread_mutex_unlock(&engine_lock);
        }
        const struct cq_sim__book_view *v = rec_book_view(&x.book, x.last_price);
        if (v->n_bids == 0 || v->n_asks == 0 || x.last_price.m == 0) {
            continue;
        }
        if (x.qty.m == 0) { /* about 600 quote units, to the step */
            if (cq_dec_div(cq_dec_make(600, 0), x.last_price, 8, CQ_ROUND_DOWN, &x.qty) < 0 ||
                cq_dec_quantize(x.qty, sym.filters.step_size, CQ_ROUND_DOWN, &x.qty) < 0) {
                die("quantity", NULL);
            }
        }
        x.mid = mid_of(v);
        if (passive) {
            cq_dec bid = v->bids[0].price, ask = v->asks[0].price;
            struct cq_sim__order o;
            struct cq_sim__reject rej;
            bool bid_ok = x.bid_open &&
                          cq_sim__engine_get_order(x.e, 0, x.bid_id, NULL, &o, &rej) == 0 &&
                          cq_dec_cmp(o.price, bid) == 0;
            bool ask_ok = x.ask_open &&
                          cq_sim__engine_get_order(x.e, 0, x.ask_id, NULL, &o, &rej) == 0 &&
                          cq_dec_cmp(o.price, ask) == 0;
            if (!bid_ok) {
                if (x.bid_open) {
                    rp_cancel(&x, x.bid_id, t);
                }
                rp_place(&x, SIM_BUY, SIM_LIMIT, bid, t, &x.bid_id);
                x.bid_open = x.bid_id != 0;
            }
            if (!ask_ok) {
                if (x.ask_open) {
                    rp_cancel(&x, x.ask_id, t);
                }
                rp_place(&x, SIM_SELL, SIM_LIMIT, ask, t, &x.ask_id);
                x.ask_open = x.ask_id != 0;
            }
        } else if (ev->recv_us >= next_taker_us) {
            next_taker_us = ev->recv_us + 2000000;
            rp_place(&x, last_buy ? SIM_BUY : SIM_SELL, SIM_MARKET, CQ_DEC_ZERO, t, NULL);
        }
    }
    out->seconds = now_s() - t0;

    /* PnL: quote now - quote then + (base now - base then) * last price */
    struct bal_pick pick = {sym.quote, sym.base, CQ_DEC_ZERO, CQ_DEC_ZERO};
    cq_sim__engine_balances(x.e, pick_balance, &pick);
    q1 = pick.quote_total;
    b1 = pick.base_total;
    if (cq_dec_sub(q1, q0, &pnl) < 0 || cq_dec_sub(b1, b0, &tmp) < 0 ||
        cq_dec_mul(tmp, x.last_price, 8, CQ_ROUND_DOWN, &tmp) < 0 ||
        cq_dec_add(pnl, tmp, &pnl) < 0) {
        die("pnl", NULL);
    }
    cq_dec_format(pnl, out->pnl, sizeof(out->pnl));
    cq_dec_format(x.filled_qty, out->filled, sizeof(out->filled));
    out->orders = x.orders;
    out->fills = x.fills;
    /* ratios for reading only: money stays cq_dec above */
    out->fill_ratio = cq_dec_to_double(x.placed_qty) > 0
                          ? cq_dec_to_double(x.filled_qty) / cq_dec_to_double(x.placed_qty)
                          : 0;
    out->slippage_bps = x.filled_qty.m > 0 && x.last_price.m > 0
                            ? cq_dec_to_double(x.slip_sum) / cq_dec_to_double(x.filled_qty) /
                                  cq_dec_to_double(x.last_price) * 1e4
                            : 0;
    char slip[CQ_DEC_STR_MAX];
    cq_dec_format(x.slip_sum, slip, sizeof(slip));
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, out->pnl);
    h = fnv(h, out->filled);
    h = fnv(h, slip);
    out->checksum = h;
    cq_sim__engine_free(x.e);
}

static void replay_bench(void)
{
    static const char *const sets[][2] = {
        {"binance-spot-BTCUSDT-20230405.txt.gz", NULL},
        {"binance-spot-BTCUSDT-20240808.txt.gz", "binance-spot-BTCUSDT-20240809.txt.gz"},
        {"binance-spot-ETHUSDT-20240808.txt.gz", "binance-spot-ETHUSDT-20240809.txt.gz"},
    };
    static const enum cq_sim__queue_model models[] = {SIM_QUEUE_NONE, SIM_QUEUE_CONSERVATIVE,
                                                      SIM_QUEUE_PROBABILISTIC};
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        char p0[512], p1[512];
        const char *paths[2] = {p0, p1};
        size_t n_paths = sets[s][1] != NULL ? 2 : 1;
        struct cq_err err;
        snprintf(p0, sizeof(p0), "%s/data/ws/recordings/%s", CQ_SHARED_DIR, sets[s][0]);
        snprintf(p1, sizeof(p1), "%s/data/ws/recordings/%s", CQ_SHARED_DIR,
                 sets[s][1] != NULL ? sets[s][1] : "");
        struct cq_sim__recording *rec = cq_sim__recording_load(paths, n_paths, NULL, &err);
        if (rec == NULL) {
            fprintf(stderr, "bench_matching: no recorded book (%s): skipping issue 19's replay\n",
                    err.message);
            return;
        }
        for (int passive = 1; passive >= 0; passive--) {
            for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
                struct rp_result res[RUNS];
                double secs[RUNS];
                for (int r = 0; r < RUNS; r++) {
                    replay_once(rec, passive != 0, models[m], &res[r]);
                    secs[r] = res[r].seconds;
                    if (res[r].checksum != res[0].checksum) {
                        die("the replay is not deterministic", NULL);
                    }
                }
                qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
                printf("{\"bench\":\"sim_queue_replay\",\"recording\":\"%s%s\",\"symbol\":\"%s\","
                       "\"strategy\":\"%s\",\"queue_model\":\"%s\",\"events\":%zu,\"orders\":%llu,"
                       "\"fills\":%llu,\"filled_qty\":\"%s\",\"fill_ratio\":%.4f,"
                       "\"slippage_bps\":%.2f,\"pnl_quote\":\"%s\",\"events_per_s\":%.0f,"
                       "\"checksum\":\"%016llx\",\"median_of\":%d}\n",
                       sets[s][0], sets[s][1] != NULL ? "+" : "", rec->symbol,
                       passive ? "passive" : "taker", cq_sim__queue_model_name(models[m]),
                       rec->n_events, (unsigned long long)res[0].orders,
                       (unsigned long long)res[0].fills, res[0].filled, res[0].fill_ratio,
                       res[0].slippage_bps, res[0].pnl, (double)rec->n_events / secs[RUNS / 2],
                       (unsigned long long)res[0].checksum, RUNS);
                fflush(stdout);
            }
        }
        cq_sim__recording_free(rec);
    }
}
