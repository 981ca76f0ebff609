/*
 * test_sim_engine_replay.c — issue 19's "Proof": the queue invariant as a
 * property test over every recorded file in ../shared/data/ws/recordings.
 *
 * The matching engine (server/sim/engine.c) is driven directly with each
 * recording's public trades (cq_sim__engine_on_trade, with the aggressor
 * side) and book updates (cq_sim__engine_on_book, the book rebuilt from the
 * depth diffs, snapshots and bookTickers: tests/support/rec_book.h), while
 * a seeded strategy places and cancels resting orders around the best
 * prices and sends taker orders. On every fill the test checks, from the
 * outside, what the issue states:
 *   - our maker fills from public trades at a price never exceed the
 *     public volume that traded at or through it after the order arrived,
 *     minus the queue ahead: the test keeps its own lower bound of the
 *     queue ahead (what the engine reported on arrival, never more than
 *     the level displays less everything our takers ever took there, less
 *     every trade at the price; 0 after a trade or a level through it), so
 *     the fills the engine gives must fit under it (what our resting
 *     orders took from crossing levels counts at every price of that
 *     side: the fill names its own price, not the level's); the probabilistic
 *     model's queue is not bounded that way, so for it the bound is the
 *     volume alone;
 *   - one public trade never fills our orders for more than its quantity,
 *     and only orders on the side it hit whose price it reached;
 *   - a swept level is never offered again unchanged: a second MARKET
 *     order right after a first, on the same book, gets an equal or worse
 *     price.
 * The old model (none) breaks them (a test shows the checker notices).
 *
 * Runtime: every event of every file, about 200k events, each file loaded
 * once and replayed under both queue models: about 4 s (about 10 times
 * that under the sanitizers: tests/meson.build gives it 400 s), so no
 * sampling is needed.
 * ../shared/data missing: skips, or fails when CI is set.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-engine.h"
#include "sim-recording.h"
#include "support/rec_book.h"
#include "support/shared_data.h"

#define REC_DIR CQ_SHARED_DIR "/data/ws/recordings/"

static const char *const rec_files[] = {
    "binance-spot-BTCUSDT-20230405.txt.gz", "binance-spot-BTCUSDT-20240808.txt.gz",
    "binance-spot-BTCUSDT-20240809.txt.gz", "binance-spot-ETHUSDT-20240808.txt.gz",
    "binance-spot-ETHUSDT-20240809.txt.gz"};

#define ORDERS_MAX 200000 /* orders one run may place */
#define TAKEN_MAX 20000   /* distinct (side, price) our takers hit */
#define OPEN_MAX 24       /* resting orders the strategy keeps */
#define MSG_MAX 512

static cq_dec D(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "bad decimal %s", s);
    return d;
}

static const char *S(cq_dec d)
{
    static char bufs[8][CQ_DEC_STR_MAX];
    static unsigned k;
    return cq_dec_format(d, bufs[k++ % 8], CQ_DEC_STR_MAX);
}

static cq_dec add(cq_dec a, cq_dec b)
{
    cq_dec r;
    cr_assert_eq(cq_dec_add(a, b, &r), 0);
    return r;
}

static cq_dec sub0(cq_dec a, cq_dec b) /* max(0, a - b) */
{
    cq_dec r;
    cr_assert_eq(cq_dec_sub(a, b, &r), 0);
    return r.m < 0 ? CQ_DEC_ZERO : r;
}

struct ord {
    bool resting; /* open and working */
    bool tracked; /* placed by the strategy and rested */
    enum cq_sim__side side;
    cq_dec price;
    cq_dec q_lb;        /* lower bound of the public queue ahead */
    cq_dec allowed;     /* what public trades could have filled, at most */
    cq_dec trade_fills; /* its maker fills during on_trade */
};

struct taken {
    enum cq_sim__side level_side; /* SIM_BUY: a bid level */
    cq_dec price, qty;
};

struct run {
    struct cq_sim__engine *e;
    enum cq_sim__queue_model model;
    struct rec_book book;
    uint64_t first_id;
    struct ord *ords; /* by order id - first_id */
    struct taken *taken;
    size_t n_taken;
    /* what our resting orders took from crossing levels, per level side
     * (SIM_BUY: bids): the engine's ledger takes it from levels at prices
     * the fill does not name, so the bound subtracts it at every price */
    cq_dec cross_taken[2];
    uint64_t open_ids[OPEN_MAX + 1]; /* the strategy's resting orders, oldest first */
    size_t n_open;
    uint64_t rng;
    cq_dec step, tick, last_price;
    /* the current call */
    enum { IN_NONE, IN_TRADE, IN_BOOK, IN_PLACE } in;
    enum cq_sim__side hit;
    cq_dec trade_price, call_fills;
    /* results */
    size_t violations;
    char first[MSG_MAX];
    size_t trades, books, placed, trade_fills, book_fills, taker_fills, double_markets;
};

static void violation(struct run *r, const char *fmt, ...) CQ_PRINTF(2, 3);

static void violation(struct run *r, const char *fmt, ...)
{
    if (r->violations++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first, sizeof(r->first), fmt, ap);
        va_end(ap);
    }
}

static struct ord *ord_of(struct run *r, uint64_t id)
{
    if (id < r->first_id || id - r->first_id >= ORDERS_MAX) {
        return NULL;
    }
    return &r->ords[id - r->first_id];
}

/* Drop the ids of orders that stopped resting. */
static void open_compact(struct run *r)
{
    size_t w = 0;
    for (size_t i = 0; i < r->n_open; i++) {
        if (ord_of(r, r->open_ids[i])->resting) {
            r->open_ids[w++] = r->open_ids[i];
        }
    }
    r->n_open = w;
}

static cq_dec taken_at(const struct run *r, enum cq_sim__side level_side, cq_dec price)
{
    for (size_t i = 0; i < r->n_taken; i++) {
        if (r->taken[i].level_side == level_side && cq_dec_cmp(r->taken[i].price, price) == 0) {
            return r->taken[i].qty;
        }
    }
    return CQ_DEC_ZERO;
}

static void note_taken(struct run *r, enum cq_sim__side level_side, cq_dec price, cq_dec qty)
{
    for (size_t i = 0; i < r->n_taken; i++) {
        if (r->taken[i].level_side == level_side && cq_dec_cmp(r->taken[i].price, price) == 0) {
            r->taken[i].qty = add(r->taken[i].qty, qty);
            return;
        }
    }
    cr_assert_lt(r->n_taken, TAKEN_MAX);
    r->taken[r->n_taken++] = (struct taken){level_side, price, qty};
}

static bool crosses(enum cq_sim__side side, cq_dec price, cq_dec limit)
{
    int c = cq_dec_cmp(price, limit);
    return side == SIM_BUY ? c <= 0 : c >= 0;
}

static void on_exec(void *ctx, const struct cq_sim__exec_report *rep)
{
    struct run *r = ctx;
    const struct cq_sim__order *o = rep->order;
    struct ord *w = ord_of(r, o->order_id);
    if (w != NULL && (o->status != SIM_NEW && o->status != SIM_PARTIALLY_FILLED)) {
        w->resting = false;
    }
    if (rep->exec_type != SIM_EXEC_TRADE || rep->fill == NULL) {
        return;
    }
    const struct cq_sim__fill *f = rep->fill;
    if (!f->maker) { /* our taker took from the other side's level */
        r->taker_fills++;
        note_taken(r, o->side == SIM_BUY ? SIM_SELL : SIM_BUY, f->price, f->qty);
        return;
    }
    if (r->in == IN_BOOK) {
        int level_side = o->side == SIM_BUY ? SIM_SELL : SIM_BUY;
        r->book_fills++;
        r->cross_taken[level_side] = add(r->cross_taken[level_side], f->qty);
        return;
    }
    if (r->in != IN_TRADE) {
        return; /* the maker side of a self-trade */
    }
    r->trade_fills++;
    r->call_fills = add(r->call_fills, f->qty);
    if (o->side != r->hit || !crosses(o->side, r->trade_price, o->price)) {
        violation(r, "order %" PRIu64 " (%s at %s) filled from a trade at %s that hit the %s side",
                  o->order_id, cq_sim__side_name(o->side), S(o->price), S(r->trade_price),
                  r->hit == SIM_BUY ? "bid" : "ask");
    }
    if (w == NULL || !w->tracked) {
        violation(r, "order %" PRIu64 " filled as maker but was never seen resting", o->order_id);
        return;
    }
    w->trade_fills = add(w->trade_fills, f->qty);
    if (cq_dec_cmp(w->trade_fills, w->allowed) > 0) {
        violation(r,
                  "order %" PRIu64 " (%s at %s) filled %s as maker from public trades; the "
                  "volume at or through its price since it arrived, less the queue ahead, "
                  "allows %s",
                  o->order_id, cq_sim__side_name(o->side), S(o->price), S(w->trade_fills),
                  S(w->allowed));
    }
}

static uint64_t next_rand(struct run *r)
{
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static cq_dec rand_qty(struct run *r)
{
    cq_dec q;
    /* 100..3000 steps: 0.001..0.03 BTC, 0.01..0.3 ETH */
    cr_assert_eq(cq_dec_mul(r->step, cq_dec_make((int64_t)(100 + next_rand(r) % 2901), 0), 8,
                            CQ_ROUND_DOWN, &q),
                 0);
    return q;
}

static struct cq_sim__order_req base_req(enum cq_sim__side side, enum cq_sim__order_type type)
{
    struct cq_sim__order_req q;
    memset(&q, 0, sizeof(q));
    q.symbol_idx = 0;
    q.side = side;
    q.type = type;
    q.stp = SIM_STP_EXPIRE_MAKER;
    return q;
}

static int place(struct run *r, const struct cq_sim__order_req *q, int64_t t,
                 struct cq_sim__order *o, struct cq_sim__fill *fills, size_t *n)
{
    struct cq_sim__reject rej;
    r->in = IN_PLACE;
    int rc = cq_sim__engine_place(r->e, q, rec_book_view(&r->book, r->last_price), t, o, fills,
                                  SIM_DEPTH_MAX, n, &rej);
    r->in = IN_NONE;
    if (rc == 0) {
        r->placed++;
    }
    return rc;
}

/* A resting order joins: the test's lower bound of its queue starts at
 * what the engine reports (checked against the level). */
static void track(struct run *r, const struct cq_sim__order *o)
{
    struct ord *w = ord_of(r, o->order_id);
    cq_dec ahead = CQ_DEC_ZERO, shown;
    if (w == NULL || !o->is_working ||
        (o->status != SIM_NEW && o->status != SIM_PARTIALLY_FILLED)) {
        return;
    }
    open_compact(r);
    if (r->n_open > OPEN_MAX) {
        return; /* cannot happen: the strategy cancels first */
    }
    r->open_ids[r->n_open++] = o->order_id;
    w->tracked = w->resting = true;
    w->side = o->side;
    w->price = o->price;
    w->allowed = w->trade_fills = CQ_DEC_ZERO;
    w->q_lb = CQ_DEC_ZERO;
    if (cq_sim__engine_queue_ahead(r->e, o->order_id, &ahead)) {
        if (rec_book_shown(&r->book, o->side, o->price, &shown) && cq_dec_cmp(ahead, shown) > 0) {
            violation(r, "order %" PRIu64 " joined behind %s, more than the %s displayed",
                      o->order_id, S(ahead), S(shown));
        }
        if (r->model == SIM_QUEUE_CONSERVATIVE) {
            w->q_lb = ahead;
        }
    }
}

static void strategy(struct run *r, int64_t t)
{
    const struct cq_sim__book_view *v = rec_book_view(&r->book, r->last_price);
    struct cq_sim__order o;
    struct cq_sim__fill fills[SIM_DEPTH_MAX];
    size_t n;
    uint64_t x = next_rand(r) % 100;
    if (v->n_bids == 0 || v->n_asks == 0) {
        return;
    }
    open_compact(r);
    if (x < 45 && r->n_open >= OPEN_MAX) {
        x = 50; /* full: cancel instead */
    }
    if (x < 45) { /* rest at the best price or a few ticks behind it */
        enum cq_sim__side side = next_rand(r) % 2 == 0 ? SIM_BUY : SIM_SELL;
        struct cq_sim__order_req q = base_req(side, SIM_LIMIT);
        cq_dec off;
        cr_assert_eq(cq_dec_mul(r->tick, cq_dec_make((int64_t)(next_rand(r) % 4), 0), 8,
                                CQ_ROUND_DOWN, &off),
                     0);
        q.tif = SIM_GTC;
        q.has_qty = q.has_price = true;
        q.qty = rand_qty(r);
        if (side == SIM_BUY) {
            cr_assert_eq(cq_dec_sub(v->bids[0].price, off, &q.price), 0);
        } else {
            q.price = add(v->asks[0].price, off);
        }
        if (place(r, &q, t, &o, fills, &n) == 0) {
            track(r, &o);
        }
    } else if (x < 75) { /* cancel the oldest of our resting orders */
        uint64_t oldest = r->n_open > 0 ? r->open_ids[0] : 0;
        if (oldest != 0 && (r->n_open > OPEN_MAX / 2 || next_rand(r) % 2 == 0)) {
            struct cq_sim__reject rej;
            int rc = cq_sim__engine_cancel(r->e, 0, oldest, NULL, NULL, t, &o, &rej);
            cr_assert_eq(rc, 0, "cancel of resting order %" PRIu64 ": %s", oldest, rej.msg);
        }
    } else if (x < 85) { /* two MARKET orders on the same book */
        enum cq_sim__side side = next_rand(r) % 2 == 0 ? SIM_BUY : SIM_SELL;
        struct cq_sim__order_req q = base_req(side, SIM_MARKET);
        struct cq_sim__fill f2[SIM_DEPTH_MAX];
        size_t n2;
        q.has_qty = true;
        q.qty = rand_qty(r);
        if (place(r, &q, t, &o, fills, &n) == 0 && n > 0 && place(r, &q, t, &o, f2, &n2) == 0 &&
            n2 > 0) {
            r->double_markets++;
            cq_dec worst = fills[n - 1].price;
            if (!crosses(side == SIM_BUY ? SIM_SELL : SIM_BUY, worst, f2[0].price)) {
                violation(r,
                          "a second MARKET %s right after the first got %s, better than the "
                          "first's last price %s: a swept level was offered again",
                          cq_sim__side_name(side), S(f2[0].price), S(worst));
            }
        }
    } else if (x < 90) { /* a LIMIT IOC through the best price */
        enum cq_sim__side side = next_rand(r) % 2 == 0 ? SIM_BUY : SIM_SELL;
        struct cq_sim__order_req q = base_req(side, SIM_LIMIT);
        q.tif = SIM_IOC;
        q.has_qty = q.has_price = true;
        q.qty = rand_qty(r);
        q.price = side == SIM_BUY ? v->asks[0].price : v->bids[0].price;
        (void)place(r, &q, t, &o, fills, &n);
    }
}

static void on_trade(struct run *r, const struct cq_sim__rec_event *ev, int64_t t)
{
    cq_dec v = ev->u.trade.qty;
    r->hit = ev->u.trade.buyer_is_maker ? SIM_BUY : SIM_SELL;
    r->trade_price = ev->u.trade.price;
    open_compact(r);
    for (size_t k = 0; k < r->n_open; k++) {
        struct ord *w = ord_of(r, r->open_ids[k]);
        if (!w->resting || w->side != r->hit || !crosses(w->side, r->trade_price, w->price)) {
            continue;
        }
        if (cq_dec_cmp(w->price, r->trade_price) == 0) {
            w->allowed = add(w->allowed, sub0(v, w->q_lb));
            w->q_lb = sub0(w->q_lb, v);
        } else { /* through its price */
            w->allowed = add(w->allowed, v);
            w->q_lb = CQ_DEC_ZERO;
        }
    }
    r->call_fills = CQ_DEC_ZERO;
    r->in = IN_TRADE;
    (void)cq_sim__engine_on_trade(r->e, 0, rec_book_view(&r->book, r->last_price), r->trade_price,
                                  v, ev->u.trade.buyer_is_maker, t);
    r->in = IN_NONE;
    if (cq_dec_cmp(r->call_fills, v) > 0) {
        violation(r, "one public trade of %s at %s filled our orders for %s", S(v),
                  S(r->trade_price), S(r->call_fills));
    }
    r->last_price = r->trade_price;
    r->trades++;
}

static void on_book(struct run *r, const struct cq_sim__recording *rec,
                    const struct cq_sim__rec_event *ev, int64_t t)
{
    rec_book_apply(&r->book, rec, ev);
    const struct cq_sim__book_view *v = rec_book_view(&r->book, r->last_price);
    open_compact(r);
    for (size_t k = 0; k < r->n_open; k++) {
        struct ord *w = ord_of(r, r->open_ids[k]);
        cq_dec shown;
        if (!w->resting) {
            continue;
        }
        if (rec_book_shown(&r->book, w->side, w->price, &shown)) {
            cq_dec lb = sub0(sub0(shown, taken_at(r, w->side, w->price)), r->cross_taken[w->side]);
            if (cq_dec_cmp(lb, w->q_lb) < 0) {
                w->q_lb = lb;
            }
        }
        const struct cq_sim__level *opp = w->side == SIM_BUY ? v->asks : v->bids;
        size_t n_opp = w->side == SIM_BUY ? v->n_asks : v->n_bids;
        if (n_opp > 0 && crosses(w->side, opp[0].price, w->price)) {
            w->q_lb = CQ_DEC_ZERO;
        }
    }
    r->in = IN_BOOK;
    (void)cq_sim__engine_on_book(r->e, 0, v, t);
    r->in = IN_NONE;
    r->books++;
}

static struct cq_sim__recording *load(const char *name)
{
    char path[512];
    struct cq_err err = {0};
    snprintf(path, sizeof(path), "%s%s", REC_DIR, name);
    if (access(path, R_OK) != 0) {
        cq_test_shared_missing(path);
    }
    const char *paths[] = {path};
    struct cq_sim__recording *rec = cq_sim__recording_load(paths, 1, NULL, &err);
    cr_assert_not_null(rec, "%s: %s", name, err.message);
    return rec;
}

static void run_file(struct run *r, const struct cq_sim__recording *rec, const char *name,
                     enum cq_sim__queue_model model, size_t max_events)
{
    struct cq_err err = {0};

    struct cq_sim__symbol sym;
    cr_assert_eq(cq_sim__symbol_defaults(rec->symbol, &sym), 0);
    struct cq_sim__balance bal[3];
    memset(bal, 0, sizeof(bal));
    cq_strlcpy(bal[0].asset, sym.quote, sizeof(bal[0].asset));
    bal[0].free = D("1000000000");
    cq_strlcpy(bal[1].asset, sym.base, sizeof(bal[1].asset));
    bal[1].free = D("1000000");
    struct cq_sim__engine_config cfg = {
        .symbols = &sym,
        .n_symbols = 1,
        .balances = bal,
        .n_balances = 2,
        .maker_bps = 10,
        .taker_bps = 10,
        .seed = 7,
        .queue_model = model,
    };
    memset(r, 0, sizeof(*r));
    r->cross_taken[0] = r->cross_taken[1] = CQ_DEC_ZERO;
    r->e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(r->e, "%s", err.message);
    r->model = model;
    r->first_id = 1;
    r->ords = calloc(ORDERS_MAX, sizeof(*r->ords));
    r->taken = calloc(TAKEN_MAX, sizeof(*r->taken));
    cr_assert(r->ords != NULL && r->taken != NULL);
    r->rng = 0x5eed0000ULL + (uint64_t)strlen(name) * 7919 + (uint64_t)(unsigned char)name[13];
    r->step = sym.filters.step_size;
    r->tick = sym.filters.tick_size;
    rec_book_init(&r->book);
    struct cq_sim__engine_listener l = {on_exec, NULL, r};
    cq_sim__engine_set_listener(r->e, &l);

    size_t n = rec->n_events < max_events ? rec->n_events : max_events;
    for (size_t i = 0; i < n; i++) {
        const struct cq_sim__rec_event *ev = &rec->events[i];
        int64_t t = ev->recv_us / 1000;
        if (ev->kind == SIM_REC_TRADE) {
            on_trade(r, ev, t);
        } else {
            on_book(r, rec, ev, t);
        }
        if (i % 16 == 0 && r->placed + 4 < ORDERS_MAX) {
            strategy(r, t);
        }
    }
    cq_sim__engine_free(r->e);
    free(r->ords);
    free(r->taken);
}

static void expect_invariant_holds(const struct cq_sim__recording *rec, const char *name,
                                   enum cq_sim__queue_model model)
{
    struct run r;
    run_file(&r, rec, name, model, SIZE_MAX);
    cr_log_info("%s %s: %zu trades, %zu book updates, %zu orders, maker fills %zu from trades "
                "and %zu from crossing levels, %zu taker fills, %zu double MARKETs",
                cq_sim__queue_model_name(model), name, r.trades, r.books, r.placed, r.trade_fills,
                r.book_fills, r.taker_fills, r.double_markets);
    cr_assert_eq(r.violations, 0, "%s, %s model: %zu violations; the first: %s", name,
                 cq_sim__queue_model_name(model), r.violations, r.first);
    /* the strategy must have exercised the model */
    cr_assert_gt(r.trade_fills, 0, "%s: no maker fill from trades", name);
    cr_assert_gt(r.double_markets, 0, "%s: no double MARKET", name);
}

/* Each recording is loaded once and replayed under both queue models. */
Test(sim_engine_replay, queue_invariant_holds_over_every_recording, .timeout = 300)
{
    for (size_t f = 0; f < CQ_ARRAY_LEN(rec_files); f++) {
        struct cq_sim__recording *rec = load(rec_files[f]);
        expect_invariant_holds(rec, rec_files[f], SIM_QUEUE_CONSERVATIVE);
        expect_invariant_holds(rec, rec_files[f], SIM_QUEUE_PROBABILISTIC);
        cq_sim__recording_free(rec);
    }
}

/* The checker can fail: the model before issue 19 (none) fills resting
 * orders from every crossing level and every crossing trade, on both
 * sides, as often as the market steps. */
Test(sim_engine_replay, the_old_model_breaks_the_invariant, .timeout = 300)
{
    struct run r;
    struct cq_sim__recording *rec = load(rec_files[1]);
    run_file(&r, rec, rec_files[1], SIM_QUEUE_NONE, 20000);
    cq_sim__recording_free(rec);
    cr_assert_gt(r.violations, 0, "the checker found nothing wrong with the old model");
    cr_log_info("none: %zu violations; the first: %s", r.violations, r.first);
}
