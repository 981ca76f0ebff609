/*
 * test_sim_engine.c — coinquant-simex's exchange core (server/sim/engine.c,
 * server/sim/symbols.c): symbol defaults against the real 2024-09
 * exchangeInfo, every filter failure and rejection with its exact text,
 * MARKET (qty and quoteOrderQty) and LIMIT GTC/IOC/FOK/LIMIT_MAKER matching
 * with exact fills, fees and balances, maker fills through on_market,
 * cancels, queries, listener event order, deterministic ids, save/load,
 * and the balance invariants over a long seeded random sequence.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim-engine.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

/* ---- helpers ----------------------------------------------------------------- */

static cq_dec D(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    int rc = cq_dec_parse(s, (size_t)-1, &d);
    cr_assert_eq(rc, 0, "cannot parse '%s'", s);
    return d;
}

static const char *S(cq_dec d)
{
    static char bufs[32][CQ_DEC_STR_MAX];
    static unsigned k;
    char *b = bufs[k++ % 32];
    return cq_dec_format(d, b, CQ_DEC_STR_MAX);
}

#define assert_dec(d, want)                                                                        \
    cr_assert(cq_dec_cmp((d), D(want)) == 0, "%s: got %s, want %s", #d, S(d), (want))

/* Symbols of the standard engine, in this order. */
enum { BTC = 0, ETH = 1, DOGE = 2, XRPETH = 3 };

static struct cq_sim__symbol std_symbols[4];
static struct cq_sim__balance std_balances[3];

static void std_config(struct cq_sim__engine_config *cfg)
{
    static const char *const names[] = {"BTCUSDT", "ETHUSDT", "DOGEUSDT", "XRPETH"};
    static const char *const assets[][2] = {{"USDT", "100000"}, {"BTC", "2"}, {"ETH", "10"}};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(cq_sim__symbol_defaults(names[i], &std_symbols[i]), 0);
    }
    for (size_t i = 0; i < 3; i++) {
        memset(&std_balances[i], 0, sizeof(std_balances[i]));
        cq_strlcpy(std_balances[i].asset, assets[i][0], SIM_ASSET_LEN);
        std_balances[i].free = D(assets[i][1]);
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->symbols = std_symbols;
    cfg->n_symbols = 4;
    cfg->balances = std_balances;
    cfg->n_balances = 3;
    cfg->maker_bps = 2;
    cfg->taker_bps = 10;
    cfg->seed = 42;
    /* the tests written before issue 19 check the old model; the queue
     * models have their own tests below */
    cfg->queue_model = SIM_QUEUE_NONE;
}

static struct cq_sim__engine *std_engine(void)
{
    struct cq_sim__engine_config cfg;
    struct cq_err err = {0};
    std_config(&cfg);
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    return e;
}

/* The pre-issue-19 entry point as the old tests use it: a trade (price
 * non-zero) is on_trade with the book, else on_book. */
static size_t on_market(struct cq_sim__engine *e, int sym, const struct cq_sim__book_view *b,
                        cq_dec price, cq_dec qty, int64_t now_ms)
{
    if (price.m != 0) {
        return cq_sim__engine_on_trade(e, sym, b, price, qty, false, now_ms);
    }
    return cq_sim__engine_on_book(e, sym, b, now_ms);
}

struct book {
    struct cq_sim__level bids[SIM_DEPTH_MAX];
    struct cq_sim__level asks[SIM_DEPTH_MAX];
    struct cq_sim__book_view v;
};

static void book_init(struct book *b)
{
    memset(b, 0, sizeof(*b));
    b->v.bids = b->bids;
    b->v.asks = b->asks;
    b->v.last_price = CQ_DEC_ZERO;
}

static void ask(struct book *b, const char *p, const char *q)
{
    b->asks[b->v.n_asks].price = D(p);
    b->asks[b->v.n_asks].qty = D(q);
    b->v.n_asks++;
}

static void bid(struct book *b, const char *p, const char *q)
{
    b->bids[b->v.n_bids].price = D(p);
    b->bids[b->v.n_bids].qty = D(q);
    b->v.n_bids++;
}

static struct cq_sim__order_req base_req(int sym, enum cq_sim__side side,
                                         enum cq_sim__order_type type)
{
    struct cq_sim__order_req r;
    memset(&r, 0, sizeof(r));
    r.symbol_idx = sym;
    r.side = side;
    r.type = type;
    r.tif = SIM_TIF_NONE;
    return r;
}

static struct cq_sim__order_req limit(int sym, enum cq_sim__side side, enum cq_sim__tif tif,
                                      const char *qty, const char *price)
{
    struct cq_sim__order_req r = base_req(sym, side, SIM_LIMIT);
    r.tif = tif;
    r.has_qty = true;
    r.qty = D(qty);
    r.has_price = true;
    r.price = D(price);
    return r;
}

static struct cq_sim__order_req maker(int sym, enum cq_sim__side side, const char *qty,
                                      const char *price)
{
    struct cq_sim__order_req r = limit(sym, side, SIM_TIF_NONE, qty, price);
    r.type = SIM_LIMIT_MAKER;
    return r;
}

static struct cq_sim__order_req market(int sym, enum cq_sim__side side, const char *qty)
{
    struct cq_sim__order_req r = base_req(sym, side, SIM_MARKET);
    r.has_qty = true;
    r.qty = D(qty);
    return r;
}

static struct cq_sim__order_req market_quote(int sym, enum cq_sim__side side, const char *quote)
{
    struct cq_sim__order_req r = base_req(sym, side, SIM_MARKET);
    r.has_quote_qty = true;
    r.quote_qty = D(quote);
    return r;
}

static struct cq_sim__order_req with_cid(struct cq_sim__order_req r, const char *cid)
{
    cq_strlcpy(r.client_id, cid, sizeof(r.client_id));
    return r;
}

struct placed {
    int rc;
    struct cq_sim__order o;
    struct cq_sim__fill fills[SIM_DEPTH_MAX];
    size_t n;
    struct cq_sim__reject rej;
};

static struct placed place(struct cq_sim__engine *e, struct cq_sim__order_req r,
                           const struct book *b, int64_t now_ms)
{
    struct placed p;
    memset(&p, 0, sizeof(p));
    p.rc = cq_sim__engine_place(e, &r, b != NULL ? &b->v : NULL, now_ms, &p.o, p.fills,
                                SIM_DEPTH_MAX, &p.n, &p.rej);
    return p;
}

static struct placed place_ok(struct cq_sim__engine *e, struct cq_sim__order_req r,
                              const struct book *b, int64_t now_ms)
{
    struct placed p = place(e, r, b, now_ms);
    cr_assert_eq(p.rc, 0, "place rejected: %d %s", p.rej.code, p.rej.msg);
    return p;
}

struct bal_find {
    const char *asset;
    struct cq_sim__balance b;
    bool found;
};

static void bal_cb(void *ctx, const struct cq_sim__balance *b)
{
    struct bal_find *f = ctx;
    if (strcmp(b->asset, f->asset) == 0) {
        f->b = *b;
        f->found = true;
    }
}

static struct cq_sim__balance bal(const struct cq_sim__engine *e, const char *asset)
{
    struct bal_find f = {.asset = asset};
    cq_sim__engine_balances(e, bal_cb, &f);
    cr_assert(f.found, "no balance for %s", asset);
    return f.b;
}

#define assert_bal(e, asset, free_s, locked_s)                                                     \
    do {                                                                                           \
        struct cq_sim__balance b_ = bal((e), (asset));                                             \
        cr_assert(cq_dec_cmp(b_.free, D(free_s)) == 0, "%s free: got %s, want %s", (asset),        \
                  S(b_.free), (free_s));                                                           \
        cr_assert(cq_dec_cmp(b_.locked, D(locked_s)) == 0, "%s locked: got %s, want %s", (asset),  \
                  S(b_.locked), (locked_s));                                                       \
    } while (0)

static char *dump(const struct cq_sim__engine *e)
{
    json_t *j = cq_sim__engine_save(e);
    cr_assert_not_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert_not_null(s);
    return s;
}

/* ---- the listener recorder ------------------------------------------------------ */

#define EV_MAX 4096

struct ev {
    char kind; /* N T C E R (exec types) or P (account position) */
    struct cq_sim__order o;
    bool has_fill;
    struct cq_sim__fill fill;
    char orig_cid[SIM_CLIENT_ID_LEN], cancel_cid[SIM_CLIENT_ID_LEN];
    size_t n_assets;
    struct cq_sim__balance bal[8];
    int64_t event_ms;
    bool has_prevented;
    struct cq_sim__prevented_match prevented;
};

static struct ev events[EV_MAX];
static size_t n_events;

static void on_exec(void *ctx, const struct cq_sim__exec_report *r)
{
    static const char kinds[] = {
        [SIM_EXEC_NEW] = 'N',     [SIM_EXEC_CANCELED] = 'C', [SIM_EXEC_TRADE] = 'T',
        [SIM_EXEC_EXPIRED] = 'E', [SIM_EXEC_REJECTED] = 'R', [SIM_EXEC_TRADE_PREVENTION] = 'X'};
    (void)ctx;
    if (n_events >= EV_MAX) {
        return;
    }
    struct ev *ev = &events[n_events++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = kinds[r->exec_type];
    ev->o = *r->order;
    ev->has_fill = r->fill != NULL;
    if (r->fill != NULL) {
        ev->fill = *r->fill;
    }
    cq_strlcpy(ev->orig_cid, r->orig_client_id, sizeof(ev->orig_cid));
    cq_strlcpy(ev->cancel_cid, r->cancel_client_id, sizeof(ev->cancel_cid));
    ev->event_ms = r->event_ms;
    ev->has_prevented = r->prevented != NULL;
    if (r->prevented != NULL) {
        ev->prevented = *r->prevented;
    }
}

static void on_position(void *ctx, const struct cq_sim__balance *changed, size_t n,
                        int64_t event_ms)
{
    (void)ctx;
    if (n_events >= EV_MAX) {
        return;
    }
    struct ev *ev = &events[n_events++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = 'P';
    ev->n_assets = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        ev->bal[i] = changed[i];
    }
    ev->event_ms = event_ms;
}

static void record(struct cq_sim__engine *e)
{
    struct cq_sim__engine_listener l = {on_exec, on_position, NULL};
    cq_sim__engine_set_listener(e, &l);
    n_events = 0;
}

/* "NTTEP": the kinds recorded since the last call. */
static const char *kinds(void)
{
    static char s[EV_MAX + 1];
    for (size_t i = 0; i < n_events; i++) {
        s[i] = events[i].kind;
    }
    s[n_events] = '\0';
    n_events = 0;
    return s;
}

/* "BTC,USDT": the assets of position event i. */
static const char *pos_assets(size_t i)
{
    static char s[128];
    s[0] = '\0';
    for (size_t k = 0; k < events[i].n_assets; k++) {
        if (k > 0) {
            strcat(s, ",");
        }
        strcat(s, events[i].bal[k].asset);
    }
    return s;
}

/* ---- invariants ---------------------------------------------------------------------- */

struct inv {
    const struct cq_sim__engine *e;
    char assets[SIM_ASSETS_MAX][SIM_ASSET_LEN];
    cq_dec need[SIM_ASSETS_MAX];
    cq_dec flow[SIM_ASSETS_MAX];
    size_t n;
    bool bad_open;
};

static int inv_asset(struct inv *v, const char *asset)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->assets[i], asset) == 0) {
            return (int)i;
        }
    }
    cr_assert_lt(v->n, SIM_ASSETS_MAX);
    cq_strlcpy(v->assets[v->n], asset, SIM_ASSET_LEN);
    v->need[v->n] = CQ_DEC_ZERO;
    v->flow[v->n] = CQ_DEC_ZERO;
    return (int)v->n++;
}

static void add_to(cq_dec *acc, cq_dec x)
{
    cr_assert_eq(cq_dec_add(*acc, x, acc), 0);
}

static void sub_from(cq_dec *acc, cq_dec x)
{
    cr_assert_eq(cq_dec_sub(*acc, x, acc), 0);
}

/* I2 as the header states it: an open BUY locks ceil8(remaining * price)
 * of the quote, an open SELL its remaining base. */
static void inv_open(void *ctx, const struct cq_sim__order *o)
{
    struct inv *v = ctx;
    const struct cq_sim__symbol *sym = cq_sim__engine_symbol(v->e, o->symbol_idx);
    cq_dec rem, need;
    cr_assert_eq(cq_dec_sub(o->orig_qty, o->executed_qty, &rem), 0);
    /* a stop not yet triggered is open but not working (I3) */
    bool waiting = cq_sim__order_type_is_stop(o->type) && !o->is_working && o->status == SIM_NEW &&
                   o->working_ms == -1;
    if (!(o->status == SIM_NEW || o->status == SIM_PARTIALLY_FILLED) ||
        (!o->is_working && !waiting) || rem.m <= 0 || (o->is_working && o->working_ms < 0)) {
        v->bad_open = true;
    }
    if (o->side == SIM_BUY) {
        cr_assert_eq(cq_dec_mul(rem, o->price, 8, CQ_ROUND_CEIL, &need), 0);
        add_to(&v->need[inv_asset(v, sym->quote)], need);
    } else {
        add_to(&v->need[inv_asset(v, sym->base)], rem);
    }
}

static void inv_balance(void *ctx, const struct cq_sim__balance *b)
{
    struct inv *v = ctx;
    int a = inv_asset(v, b->asset);
    cr_assert_geq(cq_dec_sign(b->free), 0, "%s free negative: %s", b->asset, S(b->free));
    cr_assert_geq(cq_dec_sign(b->locked), 0, "%s locked negative", b->asset);
    cr_assert(cq_dec_cmp(b->locked, v->need[a]) == 0, "%s locked %s but open orders need %s",
              b->asset, S(b->locked), S(v->need[a]));
}

/* Nothing negative; locked == what the open orders need; open orders look
 * open. */
static void check_invariants(const struct cq_sim__engine *e)
{
    static struct inv v;
    memset(&v, 0, sizeof(v));
    v.e = e;
    cq_sim__engine_open_orders(e, -1, inv_open, &v);
    cr_assert(!v.bad_open, "an open order is not NEW/PARTIALLY_FILLED+working");
    cq_sim__engine_balances(e, inv_balance, &v);
    /* every asset with a need has a balance entry */
    for (size_t i = 0; i < v.n; i++) {
        bal(e, v.assets[i]);
    }
    struct cq_sim__engine_stats st;
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.open_orders, cq_sim__engine_open_orders(e, -1, NULL, NULL));
}

struct cons {
    const struct cq_sim__engine *e;
    struct inv *v;
};

static void cons_trade(void *ctx, const struct cq_sim__trade *t)
{
    struct cons *c = ctx;
    const struct cq_sim__symbol *sym = cq_sim__engine_symbol(c->e, t->symbol_idx);
    int base = inv_asset(c->v, sym->base);
    int quote = inv_asset(c->v, sym->quote);
    if (t->is_buyer) {
        add_to(&c->v->flow[base], t->qty);
        sub_from(&c->v->flow[quote], t->quote_qty);
    } else {
        sub_from(&c->v->flow[base], t->qty);
        add_to(&c->v->flow[quote], t->quote_qty);
    }
    cr_assert_str_eq(t->commission_asset, t->is_buyer ? sym->base : sym->quote);
    sub_from(&c->v->flow[inv_asset(c->v, t->commission_asset)], t->commission);
}

static void cons_balance(void *ctx, const struct cq_sim__balance *b)
{
    struct cons *c = ctx;
    int a = inv_asset(c->v, b->asset);
    cq_dec total;
    cr_assert_eq(cq_dec_add(b->free, b->locked, &total), 0);
    cr_assert(cq_dec_cmp(total, c->v->flow[a]) == 0,
              "%s: free+locked %s != start + trades - fees %s", b->asset, S(total),
              S(c->v->flow[a]));
}

/* For each asset: free + locked == start + what trades brought in - what
 * they paid out - commissions (the book is exogenous, so this is the
 * account's conservation law). `start` lists the starting balances. */
static void check_conservation(const struct cq_sim__engine *e, const struct cq_sim__balance *start,
                               size_t n_start)
{
    static struct inv v;
    memset(&v, 0, sizeof(v));
    v.e = e;
    for (size_t i = 0; i < n_start; i++) {
        v.flow[inv_asset(&v, start[i].asset)] = start[i].free;
    }
    struct cons c = {e, &v};
    cq_sim__engine_my_trades(e, -1, 0, 0, 0, 0, 0, cons_trade, &c);
    cq_sim__engine_balances(e, cons_balance, &c);
}

/* ---- symbols and names ------------------------------------------------------------- */

static json_t *exchange_info(void)
{
    static json_t *info;
    if (info == NULL) {
        json_error_t jerr;
        info = json_load_file(
            CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2024-09-08.json", 0, &jerr);
    }
    return info;
}

static const json_t *filter_of(const json_t *sym, const char *type)
{
    const json_t *filters = json_object_get(sym, "filters");
    size_t i;
    const json_t *f;
    json_array_foreach(filters, i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "filterType")), type) == 0) {
            return f;
        }
    }
    return NULL;
}

static void expect_field(const json_t *f, const char *key, cq_dec got, const char *what)
{
    const char *want = json_string_value(json_object_get(f, key));
    cr_assert_not_null(want, "%s: no %s", what, key);
    cr_expect(cq_dec_cmp(got, D(want)) == 0, "%s %s: got %s, want %s", what, key, S(got), want);
}

Test(sim_symbols, defaults_match_the_2024_09_exchange_info)
{
    json_t *info = exchange_info();
    if (info == NULL) {
        cr_skip_test("exchangeInfo snapshot not found under " CQ_SHARED_DIR);
    }
    static const char *const names[] = {"BTCUSDT", "ETHUSDT", "DOGEUSDT", "XRPETH"};
    size_t found = 0;
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(info, "symbols"), i, s)
    {
        const char *name = json_string_value(json_object_get(s, "symbol"));
        for (size_t k = 0; k < 4; k++) {
            if (strcmp(name, names[k]) != 0) {
                continue;
            }
            struct cq_sim__symbol sym;
            cr_assert_eq(cq_sim__symbol_defaults(name, &sym), 0);
            found++;
            cr_expect_str_eq(sym.symbol, name);
            cr_expect_str_eq(sym.base, json_string_value(json_object_get(s, "baseAsset")));
            cr_expect_str_eq(sym.quote, json_string_value(json_object_get(s, "quoteAsset")));
            cr_expect_eq(sym.status, SIM_TRADING);
            const json_t *f = filter_of(s, "PRICE_FILTER");
            expect_field(f, "minPrice", sym.filters.min_price, name);
            expect_field(f, "maxPrice", sym.filters.max_price, name);
            expect_field(f, "tickSize", sym.filters.tick_size, name);
            f = filter_of(s, "LOT_SIZE");
            expect_field(f, "minQty", sym.filters.min_qty, name);
            expect_field(f, "maxQty", sym.filters.max_qty, name);
            expect_field(f, "stepSize", sym.filters.step_size, name);
            f = filter_of(s, "MARKET_LOT_SIZE");
            expect_field(f, "minQty", sym.filters.market_min_qty, name);
            expect_field(f, "maxQty", sym.filters.market_max_qty, name);
            expect_field(f, "stepSize", sym.filters.market_step, name);
            f = filter_of(s, "NOTIONAL");
            expect_field(f, "minNotional", sym.filters.min_notional, name);
            expect_field(f, "maxNotional", sym.filters.max_notional, name);
            cr_expect_eq(sym.filters.apply_min_to_market,
                         json_is_true(json_object_get(f, "applyMinToMarket")));
            cr_expect_eq(sym.filters.apply_max_to_market,
                         json_is_true(json_object_get(f, "applyMaxToMarket")));
            f = filter_of(s, "MAX_NUM_ORDERS");
            cr_expect_eq(sym.filters.max_num_orders,
                         (int)json_integer_value(json_object_get(f, "maxNumOrders")), "%s", name);
            f = filter_of(s, "PERCENT_PRICE_BY_SIDE");
            expect_field(f, "bidMultiplierUp", sym.filters.bid_up, name);
            expect_field(f, "bidMultiplierDown", sym.filters.bid_down, name);
            expect_field(f, "askMultiplierUp", sym.filters.ask_up, name);
            expect_field(f, "askMultiplierDown", sym.filters.ask_down, name);
            cr_expect_eq(sym.filters.avg_price_mins,
                         (int)json_integer_value(json_object_get(f, "avgPriceMins")), "%s", name);
            f = filter_of(s, "ICEBERG_PARTS");
            cr_expect_eq(sym.filters.iceberg_parts,
                         (int)json_integer_value(json_object_get(f, "limit")), "%s", name);
            f = filter_of(s, "MAX_NUM_ALGO_ORDERS");
            cr_expect_eq(sym.filters.max_num_algo_orders,
                         (int)json_integer_value(json_object_get(f, "maxNumAlgoOrders")), "%s",
                         name);
        }
    }
    cr_assert_eq(found, 4);
}

/* filters.md PERCENT_PRICE_BY_SIDE: "Buy orders will succeed on this filter
 * if: Order price <= weightedAveragePrice * bidMultiplierUp; Order price >=
 * weightedAveragePrice * bidMultiplierDown" (and askMultiplierUp/Down for
 * sell orders). BTCUSDT: 5 and 0.2 on both sides; the average is the book
 * view's avg_price, not the last price. */
Test(sim_rules, percent_price_by_side_bounds_against_the_average_price)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "1");
    bid(&b, "29999.99", "1");
    b.v.last_price = D("60000.00"); /* the bounds follow the average, not this */
    b.v.avg_price = D("30000.00");
    struct placed p = place(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "5999.99"), &b, 1);
    cr_expect_eq(p.rc, -CQ_EVENUE);
    cr_expect_eq(p.rej.code, SIM_ERR_FILTER);
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    p = place(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "3000.00"), &b, 1); /* 0.1x: live rejects */
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    place_ok(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "6000.00"), &b, 1); /* == avg * 0.2 */
    /* a BUY at 5x the average crosses and would fill; the bound is inclusive */
    p = place(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "150000.01"), &b, 1);
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    p = place(e, limit(0, SIM_SELL, SIM_GTC, "0.001", "150000.01"), &b, 1);
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    place_ok(e, limit(0, SIM_SELL, SIM_GTC, "0.001", "150000.00"), &b, 1);
    p = place(e, limit(0, SIM_SELL, SIM_GTC, "0.001", "5999.99"), &b, 1);
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    /* LIMIT_MAKER too; order/test says the same */
    p = place(e, maker(0, SIM_BUY, "0.001", "5999.99"), &b, 1);
    cr_expect_str_eq(p.rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    struct cq_sim__order_req r = limit(0, SIM_BUY, SIM_GTC, "0.001", "5999.99");
    struct cq_sim__reject rej;
    cr_expect_eq(cq_sim__engine_test_order(e, &r, &b.v, &rej), -CQ_EVENUE);
    cr_expect_str_eq(rej.msg, "Filter failure: PERCENT_PRICE_BY_SIDE");
    /* no average known (an empty market): not applied */
    b.v.avg_price = CQ_DEC_ZERO;
    place_ok(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "5999.99"), &b, 1);
    cq_sim__engine_free(e);
}

/* filters.md NOTIONAL: "For MARKET orders, the average price used over the
 * last avgPriceMins minutes will be used for calculation." */
Test(sim_rules, market_notional_uses_the_average_price)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "1");
    bid(&b, "29999.99", "1");
    b.v.last_price = D("30000.00");
    b.v.avg_price = D("1000.00");
    /* 0.001 * 1000 = 1 < minNotional 5, though 0.001 * 30000 = 30 */
    struct placed p = place(e, market(0, SIM_BUY, "0.001"), &b, 1);
    cr_expect_eq(p.rc, -CQ_EVENUE);
    cr_expect_str_eq(p.rej.msg, "Filter failure: NOTIONAL");
    b.v.avg_price = D("30000.00");
    place_ok(e, market(0, SIM_BUY, "0.001"), &b, 1);
    cq_sim__engine_free(e);
}

/* faqs/order_count_decrement.md: "When an order is filled for the first
 * time (partially or fully), your unfilled order count will be decremented
 * by one order" — the engine counts first fills, taker and maker, once per
 * order. */
Test(sim_rules, first_fills_are_counted_once_per_order)
{
    struct cq_sim__engine *e = std_engine();
    struct cq_sim__engine_stats st;
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "0.001");
    ask(&b, "30000.01", "0.001");
    bid(&b, "29999.99", "1");
    b.v.avg_price = D("30000.00");
    place_ok(e, limit(0, SIM_BUY, SIM_GTC, "0.001", "29000.00"), &b, 1); /* rests */
    cq_sim__engine_get_stats(e, &st);
    cr_expect_eq(st.orders_first_filled, 0);
    place_ok(e, market(0, SIM_BUY, "0.002"), &b, 2); /* two fills, one order */
    cq_sim__engine_get_stats(e, &st);
    cr_expect_eq(st.orders_first_filled, 1);
    /* the resting BUY fills as maker in two steps: counted once */
    struct book m;
    book_init(&m);
    ask(&m, "29000.01", "1"); /* the book does not cross it: only the trades fill */
    bid(&m, "28999.99", "1");
    cr_expect_eq(on_market(e, 0, &m.v, D("29000.00"), D("0.0004"), 3), 1);
    cr_expect_eq(on_market(e, 0, &m.v, D("29000.00"), D("0.0004"), 4), 1);
    cq_sim__engine_get_stats(e, &st);
    cr_expect_eq(st.orders_first_filled, 2);
    cq_sim__engine_free(e);
}

Test(sim_symbols, brief_values_and_generic_names)
{
    struct cq_sim__symbol s;
    cr_assert_eq(cq_sim__symbol_defaults("BTCUSDT", &s), 0);
    assert_dec(s.filters.tick_size, "0.01");
    assert_dec(s.filters.step_size, "0.00001");
    assert_dec(s.filters.min_qty, "0.00001");
    assert_dec(s.filters.max_qty, "9000");
    assert_dec(s.filters.min_notional, "5");
    assert_dec(s.filters.max_notional, "9000000");
    assert_dec(s.filters.market_min_qty, "0");
    assert_dec(s.filters.market_step, "0");
    cr_assert_eq(s.filters.max_num_orders, 200);
    cr_assert_eq(cq_sim__symbol_defaults("DOGEUSDT", &s), 0);
    assert_dec(s.filters.tick_size, "0.00001");
    assert_dec(s.filters.step_size, "1");
    assert_dec(s.filters.max_qty, "9000000");
    assert_dec(s.filters.min_notional, "1");
    cr_assert_eq(cq_sim__symbol_defaults("XRPETH", &s), 0);
    assert_dec(s.filters.tick_size, "0.0000001");
    assert_dec(s.filters.min_notional, "0.001");

    static const struct {
        const char *name, *base, *quote;
        int rc;
    } rows[] = {
        {"SOLUSDT", "SOL", "USDT", 0},
        {"ETHBTC", "ETH", "BTC", 0},
        {"LINKETH", "LINK", "ETH", 0},
        {"ADABUSD", "ADA", "BUSD", 0},
        {"PEPEUSDC", "PEPE", "USDC", 0},
        {"1INCHUSDT", "1INCH", "USDT", 0},
        {"USDT", "", "", -CQ_EINVAL},
        {"FOOBAR", "", "", -CQ_EINVAL},
        {"", "", "", -CQ_EINVAL},
        {"btcusdt", "", "", -CQ_EINVAL},
        /* CQ_SYMBOL_MAX_CHARS (20) is a name; one more is not */
        {"ABCDEFGHIJKLMNOPUSDT", "ABCDEFGHIJKLMNOP", "USDT", 0},
        {"ABCDEFGHIJKLMNOPQUSDT", "", "", -CQ_EINVAL},
        {"ABCDEFGHIJKLMNOPQBTC", "ABCDEFGHIJKLMNOPQ", "BTC", 0},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        int rc = cq_sim__symbol_defaults(rows[i].name, &s);
        cr_expect_eq(rc, rows[i].rc, "%s: rc %d", rows[i].name, rc);
        if (rc == 0) {
            cr_expect_str_eq(s.base, rows[i].base);
            cr_expect_str_eq(s.quote, rows[i].quote);
            assert_dec(s.filters.tick_size, "0.01");
            assert_dec(s.filters.step_size, "0.001");
            assert_dec(s.filters.min_notional, "5");
        }
    }
}

Test(sim_symbols, wire_names_round_trip)
{
    enum cq_sim__side side;
    enum cq_sim__order_type type;
    enum cq_sim__tif tif;
    cr_assert_str_eq(cq_sim__side_name(SIM_BUY), "BUY");
    cr_assert_str_eq(cq_sim__side_name(SIM_SELL), "SELL");
    cr_assert_str_eq(cq_sim__order_type_name(SIM_LIMIT_MAKER), "LIMIT_MAKER");
    cr_assert_str_eq(cq_sim__tif_name(SIM_TIF_NONE), "");
    cr_assert_str_eq(cq_sim__tif_name(SIM_FOK), "FOK");
    cr_assert_str_eq(cq_sim__order_status_name(SIM_PARTIALLY_FILLED), "PARTIALLY_FILLED");
    cr_assert_str_eq(cq_sim__order_status_name(SIM_EXPIRED_IN_MATCH), "EXPIRED_IN_MATCH");
    cr_assert_str_eq(cq_sim__exec_type_name(SIM_EXEC_TRADE), "TRADE");
    cr_assert_str_eq(cq_sim__exec_type_name(SIM_EXEC_CANCELED), "CANCELED");
    for (int i = SIM_BUY; i <= SIM_SELL; i++) {
        cr_assert_eq(cq_sim__side_parse(cq_sim__side_name((enum cq_sim__side)i), &side), 0);
        cr_assert_eq((int)side, i);
    }
    for (int i = SIM_LIMIT; i <= SIM_LIMIT_MAKER; i++) {
        cr_assert_eq(
            cq_sim__order_type_parse(cq_sim__order_type_name((enum cq_sim__order_type)i), &type),
            0);
        cr_assert_eq((int)type, i);
    }
    for (int i = SIM_GTC; i <= SIM_FOK; i++) {
        cr_assert_eq(cq_sim__tif_parse(cq_sim__tif_name((enum cq_sim__tif)i), &tif), 0);
        cr_assert_eq((int)tif, i);
    }
    cr_assert_eq(cq_sim__side_parse("buy", &side), -CQ_EPARSE);
    cr_assert_eq(cq_sim__order_type_parse("STOP_LOSS", &type), -CQ_EPARSE);
    cr_assert_eq(cq_sim__tif_parse("", &tif), -CQ_EPARSE);
    cr_assert_eq(cq_sim__tif_parse("GTX", &tif), -CQ_EPARSE);
}

/* ---- configuration ------------------------------------------------------------------ */

Test(sim_engine, config_errors_name_the_problem)
{
    struct cq_sim__engine_config cfg;
    struct cq_err err = {0};
    std_config(&cfg);
    std_symbols[1].filters.tick_size = D("0.000000001");
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert_eq(err.code, CQ_ECONFIG);
    cr_assert(strstr(err.message, "ETHUSDT") && strstr(err.message, "tickSize"), "%s", err.message);

    std_config(&cfg);
    std_symbols[2] = std_symbols[0];
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert(strstr(err.message, "BTCUSDT") && strstr(err.message, "twice"), "%s", err.message);

    std_config(&cfg);
    cfg.taker_bps = 10001;
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert(strstr(err.message, "taker_bps"), "%s", err.message);

    std_config(&cfg);
    std_balances[0].free = D("-1");
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert_str_eq(err.message, "balance of USDT: -1 is negative");

    /* the largest balance there can be, and one unit of 8 decimals more
     * (issue 17: "bad amount" did not say what the maximum is) */
    std_config(&cfg);
    std_balances[0].free = D(SIM_AMOUNT_MAX_TEXT);
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    cr_assert_eq(cq_sim__engine_set_balance(e, "BTC", D(SIM_AMOUNT_MAX_TEXT), 1), 0);
    cr_assert_eq(cq_sim__engine_set_balance(e, "BTC", D("92233720369"), 2), -CQ_ETOOBIG);
    cr_assert_eq(cq_sim__engine_set_balance(e, "BTC", D("1.000000001"), 3), -CQ_EINVAL);
    cq_sim__engine_free(e);
    std_balances[0].free = D("92233720369");
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert_str_eq(err.message,
                     "balance of USDT: 92233720369 is above the maximum 92233720368.54775807");
    cr_assert_str_eq(err.hint, "a starting balance is from 0 to 92233720368.54775807 with at "
                               "most 8 decimals");
    std_balances[0].free = D("1.000000001");
    cr_assert_null(cq_sim__engine_new(&cfg, &err));
    cr_assert_str_eq(err.message, "balance of USDT: 1.000000001 has more than 8 decimals");
}

static void append_asset(void *ctx, const struct cq_sim__balance *b)
{
    char *names = ctx;
    if (names[0] != '\0') {
        strcat(names, ",");
    }
    strcat(names, b->asset);
}

Test(sim_engine, balances_first_seen_order_and_symbol_lookup)
{
    struct cq_sim__engine *e = std_engine();
    cr_assert_eq(cq_sim__engine_balances(e, NULL, NULL), 5);
    char names[64] = "";
    cr_assert_eq(cq_sim__engine_balances(e, append_asset, names), 5);
    cr_assert_str_eq(names, "USDT,BTC,ETH,DOGE,XRP");
    assert_bal(e, "DOGE", "0", "0");
    cr_assert_eq(cq_sim__engine_symbol_index(e, "XRPETH"), XRPETH);
    cr_assert_eq(cq_sim__engine_symbol_index(e, "NOPE"), -1);
    cr_assert_eq(cq_sim__engine_symbol_count(e), 4);
    cr_assert_null(cq_sim__engine_symbol(e, 4));
    cr_assert_null(cq_sim__engine_symbol(e, -1));
    cr_assert_str_eq(cq_sim__engine_symbol(e, DOGE)->base, "DOGE");
    unsigned m, t;
    cq_sim__engine_fees(e, &m, &t);
    cr_assert_eq(m, 2);
    cr_assert_eq(t, 10);
    cq_sim__engine_free(e);
}

/* ---- filters -------------------------------------------------------------------------- */

/* A symbol with every filter off, and one with MARKET_LOT_SIZE set and a
 * small MAX_NUM_ORDERS. */
static struct cq_sim__engine *custom_engine(void)
{
    static struct cq_sim__symbol syms[2];
    static struct cq_sim__balance bals[2];
    memset(syms, 0, sizeof(syms));
    cq_strlcpy(syms[0].symbol, "TESTUSDT", CQ_SYMBOL_LEN);
    cq_strlcpy(syms[0].base, "TEST", SIM_ASSET_LEN);
    cq_strlcpy(syms[0].quote, "USDT", SIM_ASSET_LEN);
    syms[0].base_precision = syms[0].quote_precision = 8;
    cr_assert_eq(cq_sim__symbol_defaults("ABCUSDT", &syms[1]), 0);
    syms[1].filters.market_min_qty = D("1");
    syms[1].filters.market_max_qty = D("50");
    syms[1].filters.market_step = D("0.1");
    syms[1].filters.max_num_orders = 2;
    memset(bals, 0, sizeof(bals));
    cq_strlcpy(bals[0].asset, "USDT", SIM_ASSET_LEN);
    bals[0].free = D("1000000");
    cq_strlcpy(bals[1].asset, "TEST", SIM_ASSET_LEN);
    bals[1].free = D("1000");
    struct cq_sim__engine_config cfg = {.symbols = syms,
                                        .n_symbols = 2,
                                        .balances = bals,
                                        .n_balances = 2,
                                        .maker_bps = 2,
                                        .taker_bps = 10,
                                        .seed = 7};
    struct cq_err err = {0};
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    return e;
}

/* Bounds exactly on the filters' edges (issue 17: a PRICE_FILTER that
 * refused exactly minPrice, and NOTIONAL compared after rounding the
 * product up, went unnoticed):
 *   PXUSDT:  PRICE_FILTER 1.00 .. 1000.00, tick 0.01;
 *   NTLUSDT: tick and step 0.00000001, NOTIONAL 0.1 .. 1, so price x qty
 *            can have up to 16 decimals and must be compared exactly. */
static struct cq_sim__engine *bounds_engine(void)
{
    static struct cq_sim__symbol syms[2];
    static struct cq_sim__balance bals[1];
    memset(syms, 0, sizeof(syms));
    cr_assert_eq(cq_sim__symbol_defaults("PXUSDT", &syms[0]), 0);
    syms[0].filters.min_price = D("1.00");
    syms[0].filters.max_price = D("1000.00");
    syms[0].filters.tick_size = D("0.01");
    syms[0].filters.min_notional = CQ_DEC_ZERO;
    cr_assert_eq(cq_sim__symbol_defaults("NTLUSDT", &syms[1]), 0);
    syms[1].filters = (struct cq_filters){.tick_size = D("0.00000001"),
                                          .step_size = D("0.00000001"),
                                          .min_notional = D("0.1"),
                                          .max_notional = D("1")};
    memset(bals, 0, sizeof(bals));
    cq_strlcpy(bals[0].asset, "USDT", SIM_ASSET_LEN);
    bals[0].free = D("1000000");
    struct cq_sim__engine_config cfg = {
        .symbols = syms, .n_symbols = 2, .balances = bals, .n_balances = 1, .seed = 9};
    struct cq_err err = {0};
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    return e;
}

Test(sim_engine, every_filter_failure_has_its_exact_message_and_changes_nothing)
{
    struct cq_sim__engine *e = std_engine();
    struct cq_sim__engine *c = custom_engine();
    struct cq_sim__engine *bx = bounds_engine();
    struct book none;
    book_init(&none);
    struct book b;
    book_init(&b);
    ask(&b, "60000.00", "5");
    bid(&b, "59999.99", "5");
    b.v.last_price = D("60000");
    struct book cb; /* for the custom engine: price 10 */
    book_init(&cb);
    ask(&cb, "10", "1000");
    bid(&cb, "9.99", "1000");

    static const struct {
        int engine; /* 0 std, 1 custom */
        int sym;
        enum cq_sim__side side;
        enum cq_sim__order_type type;
        enum cq_sim__tif tif;
        const char *qty, *quote, *price;
        const char *msg; /* NULL = accepted */
    } rows[] = {
        /* PRICE_FILTER exactly at minPrice and maxPrice passes; one tick
         * outside fails */
        {2, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "1.00", NULL},
        {2, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "1000.00", NULL},
        {2, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "0.99", "Filter failure: PRICE_FILTER"},
        {2, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "1000.01", "Filter failure: PRICE_FILTER"},
        /* NOTIONAL compared exactly, the product having 9 and 16 decimals:
         * 0.099999999 < 0.1 (rounding it up first would pass it);
         * 1.0000000099999998 > 1 (rounding it down first would pass it);
         * exactly 0.1 and exactly 1 pass, and so does 0.100000001 */
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.1", NULL, "0.99999999", "Filter failure: NOTIONAL"},
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.99999999", NULL, "1.00000002",
         "Filter failure: NOTIONAL"},
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.1", NULL, "1", NULL},
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "1", NULL},
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.1", NULL, "1.00000001", NULL},
        {2, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.99999999", NULL, "1.00000001", NULL},
        /* PRICE_FILTER: min, max, tick, more than 8 decimals */
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.001", NULL, "0.001",
         "Filter failure: PRICE_FILTER"},
        {0, BTC, SIM_SELL, SIM_LIMIT, SIM_GTC, "0.001", NULL, "1000000.01",
         "Filter failure: PRICE_FILTER"},
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.001", NULL, "50000.005",
         "Filter failure: PRICE_FILTER"},
        {0, BTC, SIM_BUY, SIM_LIMIT_MAKER, SIM_TIF_NONE, "0.001", NULL, "50000.001",
         "Filter failure: PRICE_FILTER"},
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.001", NULL, "0", "Filter failure: PRICE_FILTER"},
        {1, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "0.000000001",
         "Filter failure: PRICE_FILTER"},
        /* LOT_SIZE: min, max, step, zero */
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.000001", NULL, "50000",
         "Filter failure: LOT_SIZE"},
        {0, BTC, SIM_SELL, SIM_LIMIT, SIM_GTC, "9000.00001", NULL, "60000",
         "Filter failure: LOT_SIZE"},
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.000015", NULL, "50000",
         "Filter failure: LOT_SIZE"},
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_IOC, "0", NULL, "50000", "Filter failure: LOT_SIZE"},
        {0, DOGE, SIM_BUY, SIM_LIMIT, SIM_GTC, "10.5", NULL, "0.1", "Filter failure: LOT_SIZE"},
        {1, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.000000001", NULL, "1", "Filter failure: LOT_SIZE"},
        /* MARKET: MARKET_LOT_SIZE's non-zero fields, LOT_SIZE's otherwise */
        {0, BTC, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "129.84958", NULL, NULL,
         "Filter failure: MARKET_LOT_SIZE"},
        {0, BTC, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "0.000015", NULL, NULL,
         "Filter failure: LOT_SIZE"},
        {0, BTC, SIM_SELL, SIM_MARKET, SIM_TIF_NONE, "0.000001", NULL, NULL,
         "Filter failure: LOT_SIZE"},
        {1, 1, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "0.5", NULL, NULL,
         "Filter failure: MARKET_LOT_SIZE"},
        {1, 1, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "50.1", NULL, NULL,
         "Filter failure: MARKET_LOT_SIZE"},
        {1, 1, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "1.05", NULL, NULL,
         "Filter failure: MARKET_LOT_SIZE"},
        {1, 1, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.6", NULL, "9", NULL},
        /* NOTIONAL: LIMIT min and max, MARKET min (applyMinToMarket) at
         * the last price, quoteOrderQty */
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.0001", NULL, "100", "Filter failure: NOTIONAL"},
        {0, BTC, SIM_SELL, SIM_LIMIT, SIM_GTC, "1000", NULL, "9000.01", "Filter failure: NOTIONAL"},
        {0, BTC, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, "0.00008", NULL, NULL,
         "Filter failure: NOTIONAL"},
        {0, BTC, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, NULL, "4.99", NULL, "Filter failure: NOTIONAL"},
        {0, BTC, SIM_BUY, SIM_MARKET, SIM_TIF_NONE, NULL, "0", NULL, "Filter failure: NOTIONAL"},
        {0, XRPETH, SIM_BUY, SIM_LIMIT, SIM_GTC, "1", NULL, "0.0009999",
         "Filter failure: NOTIONAL"},
        /* exactly on the bounds passes */
        {0, BTC, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.0001", NULL, "50000", NULL},
        {0, XRPETH, SIM_BUY, SIM_LIMIT, SIM_GTC, "10", NULL, "0.0001", NULL},
        /* every filter off: odd values pass */
        {1, 0, SIM_BUY, SIM_LIMIT, SIM_GTC, "0.12345678", NULL, "1.23456789", NULL},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        struct cq_sim__engine *x = rows[i].engine == 0 ? e : rows[i].engine == 1 ? c : bx;
        const struct book *xb = rows[i].engine == 0 ? &b : rows[i].engine == 1 ? &cb : &none;
        struct cq_sim__order_req r = base_req(rows[i].sym, rows[i].side, rows[i].type);
        r.tif = rows[i].tif;
        if (rows[i].qty != NULL) {
            r.has_qty = true;
            r.qty = D(rows[i].qty);
        }
        if (rows[i].quote != NULL) {
            r.has_quote_qty = true;
            r.quote_qty = D(rows[i].quote);
        }
        if (rows[i].price != NULL) {
            r.has_price = true;
            r.price = D(rows[i].price);
        }
        char *before = dump(x);
        struct cq_sim__reject rej = {0};
        int trc = cq_sim__engine_test_order(x, &r, &xb->v, &rej);
        struct placed p = place(x, r, xb, 1000);
        if (rows[i].msg == NULL) {
            cr_expect_eq(p.rc, 0, "row %zu: rejected %d %s", i, p.rej.code, p.rej.msg);
            cr_expect_eq(trc, 0, "row %zu: test_order rejected", i);
        } else {
            cr_expect_eq(p.rc, -CQ_EVENUE, "row %zu: accepted", i);
            cr_expect_eq(p.rej.code, -1013, "row %zu: code %d", i, p.rej.code);
            cr_expect_str_eq(p.rej.msg, rows[i].msg, "row %zu", i);
            cr_expect_eq(trc, -CQ_EVENUE, "row %zu: test_order", i);
            cr_expect_str_eq(rej.msg, rows[i].msg, "row %zu: test_order", i);
            char *after = dump(x);
            /* only the rejection counter moves */
            json_t *jb = json_loads(before, 0, NULL), *ja = json_loads(after, 0, NULL);
            json_object_del(jb, "stats");
            json_object_del(ja, "stats");
            cr_expect(json_equal(jb, ja), "row %zu: a rejection changed the state", i);
            json_decref(jb);
            json_decref(ja);
            free(after);
        }
        free(before);
        check_invariants(x);
    }
    cq_sim__engine_free(e);
    cq_sim__engine_free(c);
    cq_sim__engine_free(bx);
}

Test(sim_engine, max_num_orders_counts_open_orders_per_symbol)
{
    struct cq_sim__engine *c = custom_engine();
    struct book empty;
    book_init(&empty);
    place_ok(c, limit(1, SIM_BUY, SIM_GTC, "1", "9"), &empty, 1);
    struct placed second = place_ok(c, limit(1, SIM_BUY, SIM_GTC, "1", "9"), &empty, 2);
    struct placed p = place(c, limit(1, SIM_BUY, SIM_GTC, "1", "9"), &empty, 3);
    cr_assert_eq(p.rc, -CQ_EVENUE);
    cr_assert_eq(p.rej.code, -1013);
    cr_assert_str_eq(p.rej.msg, "Filter failure: MAX_NUM_ORDERS");
    /* the other symbol is not limited by it */
    place_ok(c, limit(0, SIM_BUY, SIM_GTC, "1", "9"), &empty, 4);
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_cancel(c, 1, second.o.order_id, NULL, NULL, 5, &o, &rej), 0);
    place_ok(c, limit(1, SIM_BUY, SIM_GTC, "1", "9"), &empty, 6);
    struct cq_sim__engine_stats st;
    cq_sim__engine_get_stats(c, &st);
    cr_assert_eq(st.orders_rejected, 1);
    cr_assert_eq(st.orders_placed, 4);
    cr_assert_eq(st.open_orders, 3);
    cq_sim__engine_free(c);
}

/* ---- rejections ----------------------------------------------------------------------- */

Test(sim_engine, rejection_codes_and_messages)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "60000", "1");
    bid(&b, "59990", "1");
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    struct placed p;

    /* -1121 */
    p = place(e, limit(-1, SIM_BUY, SIM_GTC, "0.001", "50000"), &b, 1);
    cr_assert_eq(p.rc, -CQ_EVENUE);
    cr_assert_eq(p.rej.code, -1121);
    cr_assert_str_eq(p.rej.msg, "Invalid symbol.");
    p = place(e, limit(4, SIM_BUY, SIM_GTC, "0.001", "50000"), &b, 1);
    cr_assert_eq(p.rej.code, -1121);
    cr_assert_eq(cq_sim__engine_cancel(e, -1, 1, NULL, NULL, 1, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -1121);
    cr_assert_eq(cq_sim__engine_get_order(e, 9, 1, NULL, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -1121);

    /* -2010 insufficient: LIMIT BUY locks qty * price; SELL locks qty;
     * MARKET BUY needs what its fills cost */
    p = place(e, limit(BTC, SIM_BUY, SIM_GTC, "2", "50000.01"), &b, 1);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Account has insufficient balance for requested action.");
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "2", "50000"), &b, 1); /* exactly 100000 */
    assert_bal(e, "USDT", "0", "100000");
    p = place(e, limit(BTC, SIM_SELL, SIM_GTC, "2.00001", "70000"), &b, 1);
    cr_assert_str_eq(p.rej.msg, "Account has insufficient balance for requested action.");
    p = place(e, market(ETH, SIM_BUY, "0.01"), &b, 1);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Account has insufficient balance for requested action.");

    /* -2010 duplicate among open orders; a closed order's id is reusable;
     * the same id on another symbol is another key */
    place_ok(e, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.5", "70000"), "dup-1"), &b, 2);
    p = place(e, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.5", "70000"), "dup-1"), &b, 3);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Duplicate order sent.");
    place_ok(e, with_cid(limit(ETH, SIM_SELL, SIM_GTC, "1", "3000"), "dup-1"), &b, 3);
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, 0, "dup-1", NULL, 4, &o, &rej), 0);
    struct placed again =
        place_ok(e, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.5", "70000"), "dup-1"), &b, 5);
    cr_assert_str_eq(again.o.client_id, "dup-1");
    cr_assert_neq(again.o.order_id, o.order_id);

    /* -2010 would take */
    p = place(e, maker(BTC, SIM_SELL, "0.1", "59990"), &b, 6);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Order would immediately match and take.");

    /* -2010 market closed, HALT and BREAK */
    cq_sim__engine_set_symbol_status(e, BTC, SIM_HALT);
    p = place(e, limit(BTC, SIM_SELL, SIM_GTC, "0.1", "70000"), &b, 7);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Market is closed.");
    cq_sim__engine_set_symbol_status(e, BTC, SIM_BREAK);
    p = place(e, market(BTC, SIM_SELL, "0.1"), &b, 7);
    cr_assert_str_eq(p.rej.msg, "Market is closed.");
    cq_sim__engine_set_symbol_status(e, BTC, SIM_TRADING);
    place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.1", "70000"), &b, 7);

    /* -2011 unknown / closed / mismatched; -2013 */
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, 999, NULL, NULL, 8, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2011);
    cr_assert_str_eq(rej.msg, "Unknown order sent.");
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, 0, "dup-1x", NULL, 8, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2011);
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, again.o.order_id, "other", NULL, 8, &o, &rej),
                 -CQ_EVENUE);
    cr_assert_eq(rej.code, -2011);
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, again.o.order_id, NULL, NULL, 8, &o, &rej),
                 -CQ_EVENUE, "the order belongs to another symbol");
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 999, NULL, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2013);
    cr_assert_str_eq(rej.msg, "Order does not exist.");
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 0, "never-used", &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2013);

    /* a filled order cannot be canceled */
    struct placed filled = place_ok(e, market(BTC, SIM_SELL, "0.1"), &b, 9);
    cr_assert_eq(filled.o.status, SIM_FILLED);
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, filled.o.order_id, NULL, NULL, 9, &o, &rej),
                 -CQ_EVENUE);
    cr_assert_eq(rej.code, -2011);
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, validation_order_filters_before_balance_before_cross)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "60000", "1");
    struct placed p;
    /* off-tick AND unaffordable: the filter wins */
    p = place(e, limit(BTC, SIM_BUY, SIM_GTC, "100", "60000.001"), &b, 1);
    cr_assert_str_eq(p.rej.msg, "Filter failure: PRICE_FILTER");
    /* unaffordable AND would take: the balance wins */
    p = place(e, maker(BTC, SIM_BUY, "100", "60000"), &b, 1);
    cr_assert_str_eq(p.rej.msg, "Account has insufficient balance for requested action.");
    /* halted AND off-tick: closed first */
    cq_sim__engine_set_symbol_status(e, BTC, SIM_HALT);
    p = place(e, limit(BTC, SIM_BUY, SIM_GTC, "100", "60000.001"), &b, 1);
    cr_assert_str_eq(p.rej.msg, "Market is closed.");
    cq_sim__engine_free(e);
}

Test(sim_engine, max_orders_is_efull_with_minus_1000)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    cfg.max_orders = 2;
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, NULL);
    cr_assert_not_null(e);
    struct book b;
    book_init(&b);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "50000"), &b, 1);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "50000"), &b, 1);
    struct placed p = place(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "50000"), &b, 1);
    cr_assert_eq(p.rc, -CQ_EFULL);
    cr_assert_eq(p.rej.code, -1000);
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* ---- MARKET ------------------------------------------------------------------------------ */

Test(sim_engine, market_by_qty_walks_levels_with_exact_fills_fees_and_balances)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "60000.00", "0.5");
    ask(&b, "60001.00", "0.3");
    ask(&b, "60002.50", "1.0");
    bid(&b, "59999.99", "0.25");
    bid(&b, "59990.00", "0.25");

    struct placed p = place_ok(e, market(BTC, SIM_BUY, "1"), &b, 1000);
    cr_assert_eq(p.o.order_id, 1);
    cr_assert_eq(p.o.status, SIM_FILLED);
    cr_assert_eq(p.o.type, SIM_MARKET);
    cr_assert_eq(p.o.tif, SIM_TIF_NONE);
    assert_dec(p.o.price, "0");
    assert_dec(p.o.orig_qty, "1");
    assert_dec(p.o.executed_qty, "1");
    assert_dec(p.o.cum_quote_qty, "60000.8");
    cr_assert_eq(p.o.is_working, false);
    cr_assert_eq(p.o.working_ms, -1);
    cr_assert_eq(p.n, 3);
    static const char *const want[][4] = {{"60000", "0.5", "30000", "0.0005"},
                                          {"60001", "0.3", "18000.3", "0.0003"},
                                          {"60002.5", "0.2", "12000.5", "0.0002"}};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(p.fills[i].trade_id, i + 1);
        assert_dec(p.fills[i].price, want[i][0]);
        assert_dec(p.fills[i].qty, want[i][1]);
        assert_dec(p.fills[i].quote_qty, want[i][2]);
        assert_dec(p.fills[i].commission, want[i][3]);
        cr_assert_str_eq(p.fills[i].commission_asset, "BTC");
        cr_assert_eq(p.fills[i].maker, false);
        cr_assert_eq(p.fills[i].commission.scale, 8, "8 decimals");
    }
    assert_bal(e, "USDT", "39999.2", "0");
    assert_bal(e, "BTC", "2.999", "0");
    cr_assert_str_eq(kinds(), "NTTTP");
    cr_assert_eq(events[1].o.status, SIM_PARTIALLY_FILLED);
    cr_assert_eq(events[3].o.status, SIM_FILLED);
    cr_assert_str_eq(pos_assets(4), "USDT,BTC");

    /* SELL more than the book holds: partial fill, EXPIRED */
    p = place_ok(e, market(BTC, SIM_SELL, "0.7"), &b, 2000);
    cr_assert_eq(p.o.status, SIM_EXPIRED);
    assert_dec(p.o.executed_qty, "0.5");
    assert_dec(p.o.cum_quote_qty, "29997.4975");
    assert_dec(p.fills[0].commission, "14.9999975");
    assert_dec(p.fills[1].commission, "14.9975");
    cr_assert_str_eq(p.fills[0].commission_asset, "USDT");
    assert_bal(e, "USDT", "69966.70000250", "0");
    assert_bal(e, "BTC", "2.499", "0");
    cr_assert_str_eq(kinds(), "NTTEP");

    /* an empty book: EXPIRED, nothing filled, no balance change */
    struct book empty;
    book_init(&empty);
    p = place_ok(e, market(BTC, SIM_SELL, "0.1"), &empty, 3000);
    cr_assert_eq(p.o.status, SIM_EXPIRED);
    cr_assert_eq(p.n, 0);
    cr_assert_str_eq(kinds(), "NE");
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, market_quote_order_qty_buy_steps_each_level_down)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "100", "0.5");
    ask(&b, "101", "1");
    ask(&b, "102", "1");
    struct placed p = place_ok(e, market_quote(ETH, SIM_BUY, "120"), &b, 1);
    cr_assert_eq(p.o.status, SIM_FILLED);
    cr_assert_eq(p.n, 2);
    assert_dec(p.fills[0].qty, "0.5");
    assert_dec(p.fills[0].quote_qty, "50");
    assert_dec(p.fills[1].price, "101");
    assert_dec(p.fills[1].qty, "0.693");
    assert_dec(p.fills[1].quote_qty, "69.993");
    assert_dec(p.o.orig_qty, "1.193");
    assert_dec(p.o.executed_qty, "1.193");
    assert_dec(p.o.orig_quote_qty, "120");
    assert_dec(p.o.cum_quote_qty, "119.993");
    assert_bal(e, "USDT", "99880.007", "0");
    assert_bal(e, "ETH", "11.191807", "0"); /* 10 + 1.193 - 0.001193 */
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* rest-api.md (New order, MARKET): "`MARKET` orders using `quoteOrderQty`
 * will not break `LOT_SIZE` filter rules; the order will execute a
 * `quantity` that will have the notional value as close as possible to
 * `quoteOrderQty`." A SELL goes to the closest step (up when that is
 * closer); a BUY stays down (it cannot spend more than the amount). */
Test(sim_engine, market_quote_order_qty_sell_rounds_to_the_closest_step)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    bid(&b, "60000", "1");
    ask(&b, "60001", "1");
    /* 60.48 / 60000 = 0.001008: the closest step (0.00001) is 0.00101 */
    struct placed p = place_ok(e, market_quote(BTC, SIM_SELL, "60.48"), &b, 1);
    cr_assert_eq(p.o.status, SIM_FILLED);
    cr_assert_eq(p.n, 1);
    assert_dec(p.o.executed_qty, "0.00101");
    assert_dec(p.o.orig_qty, "0.00101");
    assert_dec(p.o.cum_quote_qty, "60.6");
    assert_dec(p.o.orig_quote_qty, "60.48");
    assert_bal(e, "BTC", "1.99899", "0");
    /* 60.24 / 60000 = 0.001004: the closest step is below, 0.00100 */
    p = place_ok(e, market_quote(BTC, SIM_SELL, "60.24"), &b, 2);
    assert_dec(p.o.executed_qty, "0.001");
    assert_dec(p.o.cum_quote_qty, "60");
    /* a BUY of the same amount stays down: 60.48 / 60001 = 0.00100798… */
    p = place_ok(e, market_quote(BTC, SIM_BUY, "60.48"), &b, 3);
    assert_dec(p.o.executed_qty, "0.001");
    assert_dec(p.o.cum_quote_qty, "60.001");
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, market_quote_order_qty_sell_receives_up_to_the_amount)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    bid(&b, "100", "0.5");
    bid(&b, "99", "1");
    struct placed p = place_ok(e, market_quote(ETH, SIM_SELL, "80"), &b, 1);
    cr_assert_eq(p.o.status, SIM_FILLED);
    assert_dec(p.o.executed_qty, "0.803");
    assert_dec(p.o.cum_quote_qty, "79.997");
    assert_dec(p.fills[0].commission, "0.05");
    assert_dec(p.fills[1].commission, "0.029997");
    assert_bal(e, "ETH", "9.197", "0");
    assert_bal(e, "USDT", "100079.917003", "0");

    /* the book runs out before the amount: EXPIRED with the partial fill
     * (0.4 at 100: a new level, not the 0.5 already taken) */
    book_init(&b);
    bid(&b, "100", "0.4");
    p = place_ok(e, market_quote(ETH, SIM_SELL, "80"), &b, 2);
    cr_assert_eq(p.o.status, SIM_EXPIRED);
    assert_dec(p.o.executed_qty, "0.4");
    assert_dec(p.o.orig_qty, "0.4");

    /* too small for one step at the best price: the quantity (0) fails
     * LOT_SIZE */
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    struct cq_sim__engine *x = cq_sim__engine_new(&cfg, NULL);
    struct book big;
    book_init(&big);
    ask(&big, "600000", "1"); /* step 0.00001 costs 6 USDT */
    p = place(x, market_quote(BTC, SIM_BUY, "5.5"), &big, 3);
    cr_assert_eq(p.rc, -CQ_EVENUE);
    cr_assert_str_eq(p.rej.msg, "Filter failure: LOT_SIZE");
    /* and over MARKET_LOT_SIZE's max */
    book_init(&big);
    ask(&big, "1", "1000");
    cr_assert_eq(cq_sim__engine_set_balance(x, "USDT", D("1000"), 3), 0);
    p = place(x, market_quote(BTC, SIM_BUY, "200"), &big, 3);
    cr_assert_str_eq(p.rej.msg, "Filter failure: MARKET_LOT_SIZE");
    cq_sim__engine_free(x);
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, fee_rounding_is_up_to_8_decimals_and_fills_truncate)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    cfg.taker_bps = 7;
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, NULL);
    struct book b;
    book_init(&b);
    ask(&b, "60000", "1");
    bid(&b, "60000.01", "1");
    /* 0.00013 * 7 bps = 0.000000091 -> 0.00000010 (DOWN or HALF_EVEN: 9) */
    struct placed p = place_ok(e, market(BTC, SIM_BUY, "0.00013"), &b, 1);
    assert_dec(p.fills[0].commission, "0.0000001");
    /* 7.8000013 * 7 bps = 0.00546000091 -> 0.00546001 */
    p = place_ok(e, market(BTC, SIM_SELL, "0.00013"), &b, 2);
    assert_dec(p.fills[0].quote_qty, "7.8000013");
    assert_dec(p.fills[0].commission, "0.00546001");
    cq_sim__engine_free(e);

    /* with every filter off, price * qty has 16 decimals: the fill's quote
     * is truncated, a BUY's lock rounded up, and a closed order leaves
     * nothing locked */
    struct cq_sim__engine *c = custom_engine();
    struct book none;
    book_init(&none);
    /* 0.1 * 1.00000001 = 0.100000001: the lock rounds up */
    p = place_ok(c, limit(0, SIM_BUY, SIM_GTC, "0.1", "1.00000001"), &none, 1);
    assert_bal(c, "USDT", "999999.89999999", "0.10000001");
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_cancel(c, 0, p.o.order_id, NULL, NULL, 1, &o, &rej), 0);
    assert_bal(c, "USDT", "1000000", "0");
    p = place_ok(c, limit(0, SIM_BUY, SIM_GTC, "0.12345678", "1.23456789"), &none, 1);
    assert_bal(c, "USDT", "999999.84758422", "0.15241578");
    book_init(&b);
    ask(&b, "1.2", "0.1");
    cr_assert_eq(on_market(c, 0, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 2), 1);
    assert_bal(c, "USDT", "999999.84758423", "0.02895899"); /* paid 0.12345678 */
    check_invariants(c);
    book_init(&b); /* the model replaces the level */
    ask(&b, "1.2", "0.2");
    cr_assert_eq(on_market(c, 0, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 3), 1);
    assert_bal(c, "USDT", "999999.84758424", "0"); /* paid 0.02895898; no dust */
    check_invariants(c);
    cq_sim__engine_free(c);
}

/* ---- LIMIT ------------------------------------------------------------------------------- */

Test(sim_engine, gtc_partial_fill_rests_then_fills_as_maker_through_on_market)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "60000", "0.3");
    ask(&b, "60010", "5");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "1", "60000"), &b, 1000);
    cr_assert_eq(p.o.status, SIM_PARTIALLY_FILLED);
    cr_assert(p.o.is_working);
    cr_assert_eq(p.o.working_ms, 1000);
    cr_assert_eq(p.o.tif, SIM_GTC);
    assert_dec(p.o.executed_qty, "0.3");
    cr_assert_eq(p.n, 1);
    cr_assert_eq(p.fills[0].maker, false);
    assert_bal(e, "USDT", "40000", "42000");
    assert_bal(e, "BTC", "2.2997", "0");
    cr_assert_str_eq(kinds(), "NTP");
    check_invariants(e);

    /* a book and a trade that do not cross: nothing */
    struct book nb;
    book_init(&nb);
    ask(&nb, "60000.01", "10");
    cr_assert_eq(on_market(e, BTC, &nb.v, D("60000.01"), D("3"), 2000), 0);
    cr_assert_str_eq(kinds(), "");

    /* the book crosses for 0.4: maker fill at our own price, 2 bps */
    book_init(&nb);
    ask(&nb, "59999", "0.4");
    cr_assert_eq(on_market(e, BTC, &nb.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 3000), 1);
    cr_assert_str_eq(kinds(), "TP");
    cr_assert_eq(events[0].o.status, SIM_PARTIALLY_FILLED);
    cr_assert(events[0].fill.maker);
    assert_dec(events[0].fill.price, "60000");
    assert_dec(events[0].fill.qty, "0.4");
    assert_dec(events[0].fill.commission, "0.00008");
    assert_bal(e, "USDT", "40000", "18000");
    assert_bal(e, "BTC", "2.69962", "0");
    check_invariants(e);

    /* a market trade below our price fills the rest: FILLED, nothing
     * locked */
    struct book empty;
    book_init(&empty);
    cr_assert_eq(on_market(e, BTC, &empty.v, D("59990"), D("1"), 4000), 1);
    cr_assert_str_eq(kinds(), "TP");
    cr_assert_eq(events[0].o.status, SIM_FILLED);
    cr_assert(!events[0].o.is_working);
    assert_dec(events[0].o.executed_qty, "1");
    assert_dec(events[0].o.cum_quote_qty, "60000");
    assert_bal(e, "USDT", "40000", "0");
    assert_bal(e, "BTC", "2.99956", "0");
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, p.o.order_id, NULL, &o, &rej), 0);
    cr_assert_eq(o.status, SIM_FILLED);
    cr_assert_eq(o.update_ms, 4000);
    cr_assert_eq(o.time_ms, 1000);
    cr_assert_eq(cq_sim__engine_open_orders(e, -1, NULL, NULL), 0);
    check_invariants(e);
    check_conservation(e, std_balances, 3);
    cq_sim__engine_free(e);
}

Test(sim_engine, on_market_shares_liquidity_oldest_first_and_sells_fill_on_bids)
{
    struct cq_sim__engine *e = std_engine();
    struct book empty;
    book_init(&empty);
    struct placed s1 = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "61000"), &empty, 1);
    struct placed s2 = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "60500"), &empty, 2);
    assert_bal(e, "BTC", "1", "1");
    struct book b;
    book_init(&b);
    bid(&b, "61000", "0.3");
    bid(&b, "60800", "0.4");
    /* s1 (61000) takes 0.3 at 61000; s2 (60500) gets the 0.4 at 60800 */
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 3), 2);
    struct cq_sim__order o1, o2;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, s1.o.order_id, NULL, &o1, &rej), 0);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, s2.o.order_id, NULL, &o2, &rej), 0);
    assert_dec(o1.executed_qty, "0.3");
    assert_dec(o2.executed_qty, "0.4");
    assert_dec(o2.cum_quote_qty, "24200"); /* at its own price 60500 */
    assert_bal(e, "BTC", "1", "0.3");
    /* 0.3*61000 + 0.4*60500 = 42500, less 2 bps = 8.5 */
    assert_bal(e, "USDT", "142491.5", "0");
    check_invariants(e);
    check_conservation(e, std_balances, 3);
    cq_sim__engine_free(e);
}

/* Issue 9 item 3: 2 BTC offered at or below 30001 and a 5 BTC GTC buy at
 * 30001. It fills 2 on entry; the same unchanged book offered again (on
 * every market step) must fill nothing more, until the market model
 * replaces a level (a different quantity at that price, or the level gone
 * and back). */
static struct cq_sim__engine *rich_engine(void)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    std_balances[0].free = D("1000000");
    struct cq_err err = {0};
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    return e;
}

static cq_dec executed(const struct cq_sim__engine *e, uint64_t order_id)
{
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, order_id, NULL, &o, &rej), 0);
    return o.executed_qty;
}

Test(sim_engine, consumed_liquidity_is_not_offered_again_until_the_level_is_replaced)
{
    struct cq_sim__engine *e = rich_engine();
    struct book b;
    book_init(&b);
    ask(&b, "30000", "1");
    ask(&b, "30001", "1");
    ask(&b, "30002", "10");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "5", "30001"), &b, 1);
    cr_assert_eq(p.n, 2);
    assert_dec(p.o.executed_qty, "2");
    cr_assert_eq(p.o.status, SIM_PARTIALLY_FILLED);

    /* the same book, step after step: nothing more */
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 2 + step), 0,
                     "step %d filled against liquidity already taken", step);
    }
    assert_dec(executed(e, p.o.order_id), "2");
    /* a taker gets the next level, not the one it already swept */
    struct placed t = place_ok(e, market(BTC, SIM_BUY, "0.5"), &b, 5);
    cr_assert_eq(t.n, 1);
    assert_dec(t.fills[0].price, "30002");
    check_invariants(e);

    /* the market replaces 30001 with 1.5: that much, once */
    book_init(&b);
    ask(&b, "30000", "1");
    ask(&b, "30001", "1.5");
    ask(&b, "30002", "10");
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 6), 1);
    assert_dec(executed(e, p.o.order_id), "3.5");
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 7), 0);
    assert_dec(executed(e, p.o.order_id), "3.5");

    /* 30000 leaves the book and comes back with the same quantity: a new
     * level, offered in full */
    struct book gone;
    book_init(&gone);
    ask(&gone, "30001", "1.5");
    ask(&gone, "30002", "10");
    cr_assert_eq(on_market(e, BTC, &gone.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 8), 0);
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 9), 1);
    assert_dec(executed(e, p.o.order_id), "4.5");

    /* a public trade is new volume each time it prints */
    cr_assert_eq(on_market(e, BTC, &b.v, D("30000"), D("0.2"), 10), 1);
    cr_assert_eq(on_market(e, BTC, &b.v, D("30000"), D("0.3"), 11), 1);
    cr_assert_eq(on_market(e, BTC, &b.v, D("30000"), D("0.3"), 12), 0);
    assert_dec(executed(e, p.o.order_id), "5");
    check_invariants(e);
    check_conservation(e, std_balances, 3);
    cq_sim__engine_free(e);
}

Test(sim_engine, a_second_market_order_gets_an_equal_or_worse_price)
{
    struct cq_sim__engine *e = rich_engine();
    struct book b;
    book_init(&b);
    ask(&b, "30000", "1");
    ask(&b, "30001", "1");
    bid(&b, "29999", "1");
    bid(&b, "29998", "1");
    struct placed p1 = place_ok(e, market(BTC, SIM_BUY, "0.6"), &b, 1);
    struct placed p2 = place_ok(e, market(BTC, SIM_BUY, "0.6"), &b, 2);
    cr_assert_eq(p1.n, 1);
    assert_dec(p1.fills[0].price, "30000");
    cr_assert_eq(p2.n, 2);
    assert_dec(p2.fills[0].price, "30000");
    assert_dec(p2.fills[0].qty, "0.4");
    assert_dec(p2.fills[1].price, "30001");
    assert_dec(p2.fills[1].qty, "0.2");
    /* the bid side is its own ledger */
    struct placed s = place_ok(e, market(BTC, SIM_SELL, "1.5"), &b, 3);
    cr_assert_eq(s.n, 2);
    assert_dec(s.fills[0].price, "29999");
    /* what is left of the bids: 0.5 at 29998, then the order expires */
    struct placed s2 = place_ok(e, market(BTC, SIM_SELL, "1"), &b, 4);
    assert_dec(s2.o.executed_qty, "0.5");
    cr_assert_eq(s2.o.status, SIM_EXPIRED);
    check_invariants(e);
    check_conservation(e, std_balances, 3);
    cq_sim__engine_free(e);
}

/* ---- invariants in a release build ------------------------------------------------------ */

/* tests/meson.build compiles this suite, engine.c included, with -DNDEBUG,
 * as a release build is: a check that plain assert() would make is gone
 * here. */
#ifdef NDEBUG
static const bool built_with_ndebug = true;
#else
static const bool built_with_ndebug = false;
#endif

/* Issue 9 item 4: a broken money invariant stops the engine with a clear
 * error in every build. USDT's locked amount is corrupted below what an
 * open BUY holds; canceling the order must not hand back money that is
 * not there: the engine aborts, naming what broke. */
Test(sim_engine, a_broken_money_invariant_stops_the_engine_in_a_release_build)
{
    cr_assert(built_with_ndebug, "tests/meson.build must build test_sim_engine with -DNDEBUG");
    struct cq_sim__engine *e = rich_engine();
    struct book empty;
    book_init(&empty);
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "1", "30000"), &empty, 1);
    assert_bal(e, "USDT", "970000", "30000");
    cq_sim__engine_corrupt_locked(e, "USDT", D("100"));

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* no Criterion calls in here */
        struct rlimit no_core = {0, 0};
        struct cq_sim__order o;
        struct cq_sim__reject rej;
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        int rc = cq_sim__engine_cancel(e, BTC, p.o.order_id, NULL, NULL, 2, &o, &rej);
        _exit(rc == 0 ? 0 : 3); /* the check is missing */
    }
    close(fds[1]);
    static char out[4096];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(out) && (r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0) {
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fds[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the engine went on with a broken invariant (exit status %d); stderr: %s", status,
              out);
    cr_assert_not_null(strstr(out, "\"event\":\"sim_invariant_broken\""), "%s", out);
    cr_assert_not_null(
        strstr(out, "I2: USDT locked 100.00000000 is less than the 30000.00000000 order 1 holds"),
        "%s", out);
    json_t *line = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert_not_null(line, "not one JSON line: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(line, "level")), "error");
    json_decref(line);
    cq_sim__engine_free(e);
}

Test(sim_engine, ioc_partial_fill_then_expired)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "60000", "0.3");
    ask(&b, "60010", "1");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_IOC, "1", "60005"), &b, 1);
    cr_assert_eq(p.o.status, SIM_EXPIRED);
    cr_assert(!p.o.is_working);
    cr_assert_eq(p.o.working_ms, -1);
    assert_dec(p.o.executed_qty, "0.3");
    cr_assert_str_eq(kinds(), "NTEP");
    cr_assert_eq(events[1].o.status, SIM_PARTIALLY_FILLED);
    cr_assert_eq(events[2].o.status, SIM_EXPIRED);
    assert_bal(e, "USDT", "82000", "0");
    assert_bal(e, "BTC", "2.2997", "0");
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, fok_fills_all_or_nothing)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    bid(&b, "60000", "0.3");
    bid(&b, "59990", "1");
    /* not fully fillable at >= 59995: EXPIRED, nothing filled, no balance
     * event (the lock came back in the same call) */
    struct placed p = place_ok(e, limit(BTC, SIM_SELL, SIM_FOK, "1", "59995"), &b, 1);
    cr_assert_eq(p.o.status, SIM_EXPIRED);
    cr_assert_eq(p.n, 0);
    assert_dec(p.o.executed_qty, "0");
    cr_assert_str_eq(kinds(), "NE");
    assert_bal(e, "BTC", "2", "0");
    /* fully fillable at >= 59990 */
    p = place_ok(e, limit(BTC, SIM_SELL, SIM_FOK, "1", "59990"), &b, 2);
    cr_assert_eq(p.o.status, SIM_FILLED);
    cr_assert_eq(p.n, 2);
    assert_dec(p.o.cum_quote_qty, "59993"); /* 18000 + 0.7*59990 */
    cr_assert_str_eq(kinds(), "NTTP");
    assert_bal(e, "BTC", "1", "0");
    assert_bal(e, "USDT", "159933.007", "0");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* user-data-stream.md, Order Expiry Reason: "`UNFILLED_IOC_QUANTITY_EXPIRED`
 * | The IOC order was not fully filled and thus expired.",
 * "`UNFILLED_FOK_ORDER_EXPIRED` | The FOK order was not fully filled and
 * thus expired.", "`INSUFFICIENT_LIQUIDITY` | There were not enough orders
 * in the order book to match with this order."; eR "Appears when the order
 * has expired." The reason is on the EXPIRED report and the kept order, and
 * survives save/load; orders that did not expire have none. */
Test(sim_engine, expired_orders_carry_the_expiry_reason)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "60000", "0.3");
    bid(&b, "59990", "0.3");
    struct placed ioc = place_ok(e, limit(BTC, SIM_BUY, SIM_IOC, "1", "60005"), &b, 1);
    cr_assert_eq(ioc.o.status, SIM_EXPIRED);
    cr_assert_eq(ioc.o.expiry, SIM_EXPIRY_UNFILLED_IOC);
    cr_assert_str_eq(kinds(), "NTEP");
    cr_assert_eq(events[0].o.expiry, SIM_EXPIRY_NONE);
    cr_assert_eq(events[1].o.expiry, SIM_EXPIRY_NONE);
    cr_assert_eq(events[2].o.expiry, SIM_EXPIRY_UNFILLED_IOC);
    cr_assert_str_eq(cq_sim__expiry_name(events[2].o.expiry), "UNFILLED_IOC_QUANTITY_EXPIRED");

    struct placed fok = place_ok(e, limit(BTC, SIM_SELL, SIM_FOK, "1", "59990"), &b, 2);
    cr_assert_eq(fok.o.status, SIM_EXPIRED);
    cr_assert_str_eq(cq_sim__expiry_name(fok.o.expiry), "UNFILLED_FOK_ORDER_EXPIRED");

    struct placed mkt = place_ok(e, market(BTC, SIM_SELL, "1"), &b, 3);
    cr_assert_eq(mkt.o.status, SIM_EXPIRED);
    cr_assert_str_eq(cq_sim__expiry_name(mkt.o.expiry), "INSUFFICIENT_LIQUIDITY");

    /* filled, resting, canceled: none */
    book_init(&b);
    ask(&b, "60000", "1");
    struct placed filled = place_ok(e, market(BTC, SIM_BUY, "0.1"), &b, 4);
    cr_assert_eq(filled.o.status, SIM_FILLED);
    cr_assert_eq(filled.o.expiry, SIM_EXPIRY_NONE);
    struct placed rest = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.1", "59000"), &b, 5);
    struct cq_sim__order c;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, rest.o.order_id, NULL, NULL, 6, &c, &rej), 0);
    cr_assert_eq(c.expiry, SIM_EXPIRY_NONE);

    /* kept across save and load */
    json_t *saved = cq_sim__engine_save(e);
    cr_assert_not_null(saved);
    struct cq_sim__engine *e2 = std_engine();
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(e2, saved, &err), 0, "%s", err.message);
    struct cq_sim__order got;
    cr_assert_eq(cq_sim__engine_get_order(e2, BTC, ioc.o.order_id, NULL, &got, &rej), 0);
    cr_assert_eq(got.expiry, SIM_EXPIRY_UNFILLED_IOC);
    cr_assert_eq(cq_sim__engine_get_order(e2, BTC, mkt.o.order_id, NULL, &got, &rej), 0);
    cr_assert_eq(got.expiry, SIM_EXPIRY_INSUFFICIENT_LIQUIDITY);
    cr_assert_eq(cq_sim__engine_get_order(e2, BTC, filled.o.order_id, NULL, &got, &rej), 0);
    cr_assert_eq(got.expiry, SIM_EXPIRY_NONE);
    /* a reason on an order that did not expire is refused */
    json_t *orders = json_object_get(saved, "orders");
    cr_assert(json_is_array(orders));
    size_t i;
    json_t *oj;
    json_array_foreach(orders, i, oj)
    {
        if (json_integer_value(json_object_get(oj, "order_id")) == (json_int_t)filled.o.order_id) {
            json_object_set_new(oj, "expiry_reason", json_string("INSUFFICIENT_LIQUIDITY"));
        }
    }
    struct cq_sim__engine *e3 = std_engine();
    cr_assert_eq(cq_sim__engine_load(e3, saved, &err), -CQ_EPARSE);
    cr_assert(strstr(err.message, "expiry_reason") != NULL, "%s", err.message);
    json_decref(saved);
    cq_sim__engine_free(e3);
    cq_sim__engine_free(e2);
    check_invariants(e);
    cq_sim__engine_free(e);
}

static struct cq_sim__order_req stop_req(enum cq_sim__order_type t, enum cq_sim__side side,
                                         const char *qty, const char *price, const char *stop)
{
    struct cq_sim__order_req r = limit(BTC, side, SIM_GTC, qty, price);
    r.type = t;
    r.has_stop_price = true;
    r.stop_price = D(stop);
    return r;
}

static void trade_at(struct cq_sim__engine *e, struct book *b, const char *price, int64_t now)
{
    b->v.last_price = D(price);
    (void)on_market(e, BTC, &b->v, D(price), D("0.5"), now);
}

/* rest-api.md, New order: STOP_LOSS_LIMIT needs "`timeInForce`, `quantity`,
 * `price`, `stopPrice`"; "Price above market price: `STOP_LOSS` `BUY`,
 * `TAKE_PROFIT` `SELL`"; "Price below market price: `STOP_LOSS` `SELL`,
 * `TAKE_PROFIT` `BUY`". The order waits NEW, not working, funds locked,
 * until a trade reaches stopPrice; then it is placed on the book (NEW with
 * w true and W) and works as a LIMIT. */
Test(sim_engine, stop_loss_limit_waits_then_works_at_its_price)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    bid(&b, "60000", "1");
    ask(&b, "60010", "1");
    b.v.last_price = D("60005");
    struct placed p =
        place_ok(e, stop_req(SIM_STOP_LOSS_LIMIT, SIM_SELL, "0.1", "58900", "59000"), &b, 1);
    cr_assert_eq(p.o.status, SIM_NEW);
    cr_assert(!p.o.is_working);
    cr_assert_eq(p.o.working_ms, -1);
    cr_assert_eq(p.n, 0);
    assert_dec(p.o.stop_price, "59000");
    cr_assert_str_eq(cq_sim__order_type_name(p.o.type), "STOP_LOSS_LIMIT");
    cr_assert_str_eq(kinds(), "NP");
    cr_assert(!events[0].o.is_working);
    assert_bal(e, "BTC", "1.9", "0.1"); /* locked at placement */
    check_invariants(e);

    /* trades above the stop, and the book crossing its price: nothing */
    n_events = 0;
    trade_at(e, &b, "59500", 2);
    cr_assert_str_eq(kinds(), "");
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, p.o.order_id, NULL, &o, &rej), 0);
    cr_assert_eq(o.status, SIM_NEW);
    cr_assert(!o.is_working);

    /* a trade at the stop triggers it: NEW working, then it sells as a
     * LIMIT at 58900 into the bids that cross it */
    trade_at(e, &b, "59000", 3);
    cr_assert_str_eq(kinds(), "NTP");
    cr_assert(events[0].o.is_working);
    cr_assert_eq(events[0].o.working_ms, 3);
    cr_assert_eq(events[0].o.status, SIM_NEW);
    cr_assert_eq(events[1].o.status, SIM_FILLED);
    assert_dec(events[1].fill.price, "58900");
    assert_bal(e, "BTC", "1.9", "0");
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, take_profit_limit_buy_triggers_below)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    b.v.last_price = D("60000");
    struct placed p =
        place_ok(e, stop_req(SIM_TAKE_PROFIT_LIMIT, SIM_BUY, "0.1", "59000", "59500"), &b, 1);
    assert_bal(e, "USDT", "94100", "5900");
    n_events = 0;
    trade_at(e, &b, "59600", 2);
    cr_assert_str_eq(kinds(), "");
    trade_at(e, &b, "59400", 3); /* below: triggered; nothing crosses 59000 */
    cr_assert_str_eq(kinds(), "N");
    cr_assert(events[0].o.is_working);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, p.o.order_id, NULL, &p.o, &p.rej), 0);
    cr_assert(p.o.is_working);
    /* now an ordinary resting BUY: a trade at its price fills it */
    trade_at(e, &b, "59000", 4);
    cr_assert_str_eq(kinds(), "TP");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* errors.md: "Order would trigger immediately." | "The order's stop price is
 * not valid when compared to the last traded price." */
Test(sim_engine, stop_orders_that_would_trigger_immediately_are_rejected)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    b.v.last_price = D("60000");
    struct {
        enum cq_sim__order_type t;
        enum cq_sim__side side;
        const char *price, *stop;
    } bad[] = {
        {SIM_STOP_LOSS_LIMIT, SIM_BUY, "60100", "60000"},    /* at the last price */
        {SIM_STOP_LOSS_LIMIT, SIM_BUY, "60100", "59000"},    /* below */
        {SIM_STOP_LOSS_LIMIT, SIM_SELL, "60100", "61000"},   /* above */
        {SIM_TAKE_PROFIT_LIMIT, SIM_BUY, "60100", "61000"},  /* above */
        {SIM_TAKE_PROFIT_LIMIT, SIM_SELL, "59000", "59000"}, /* below */
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad); i++) {
        struct placed p =
            place(e, stop_req(bad[i].t, bad[i].side, "0.1", bad[i].price, bad[i].stop), &b, 1);
        cr_assert_eq(p.rc, -CQ_EVENUE, "row %zu", i);
        cr_assert_eq(p.rej.code, -2010);
        cr_assert_str_eq(p.rej.msg, "Order would trigger immediately.");
    }
    assert_bal(e, "USDT", "100000", "0");
    /* the good side of each: accepted */
    cr_assert_eq(
        place(e, stop_req(SIM_STOP_LOSS_LIMIT, SIM_BUY, "0.1", "61100", "61000"), &b, 1).rc, 0);
    cr_assert_eq(
        place(e, stop_req(SIM_TAKE_PROFIT_LIMIT, SIM_SELL, "0.1", "61000", "61000"), &b, 1).rc, 0);
    /* stopPrice: mandatory on stops, refused on the others */
    struct cq_sim__order_req r = stop_req(SIM_STOP_LOSS_LIMIT, SIM_SELL, "0.1", "59000", "59000");
    r.has_stop_price = false;
    struct placed p = place(e, r, &b, 1);
    cr_assert_eq(p.rej.code, -1102);
    r = limit(BTC, SIM_BUY, SIM_GTC, "0.1", "59000");
    r.has_stop_price = true;
    r.stop_price = D("59000");
    p = place(e, r, &b, 1);
    cr_assert_eq(p.rej.code, -1106);
    cr_assert_str_eq(p.rej.msg, "Parameter 'stopPrice' sent when not required.");
    /* PRICE_FILTER applies to stopPrice (tick 0.01) */
    p = place(e, stop_req(SIM_STOP_LOSS_LIMIT, SIM_SELL, "0.1", "59000", "59000.001"), &b, 1);
    cr_assert_str_eq(p.rej.msg, "Filter failure: PRICE_FILTER");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* filters.md MAX_NUM_ALGO_ORDERS: "'Algo' orders are `STOP_LOSS`,
 * `STOP_LOSS_LIMIT`, `TAKE_PROFIT`, and `TAKE_PROFIT_LIMIT` orders." (5 on
 * BTCUSDT). A waiting stop can be canceled; its funds come back. */
Test(sim_engine, stop_orders_count_as_algo_orders_and_cancel_before_trigger)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    b.v.last_price = D("60000");
    uint64_t first = 0;
    for (int i = 0; i < 5; i++) {
        struct placed p =
            place_ok(e, stop_req(SIM_STOP_LOSS_LIMIT, SIM_SELL, "0.1", "58000", "59000"), &b, 1);
        first = first != 0 ? first : p.o.order_id;
    }
    struct placed p =
        place(e, stop_req(SIM_TAKE_PROFIT_LIMIT, SIM_SELL, "0.1", "62000", "62000"), &b, 1);
    cr_assert_eq(p.rej.code, -1013);
    cr_assert_str_eq(p.rej.msg, "Filter failure: MAX_NUM_ALGO_ORDERS");
    place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.1", "62000"), &b, 1); /* not algo */
    assert_bal(e, "BTC", "1.4", "0.6");
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, first, NULL, NULL, 2, &o, &rej), 0);
    cr_assert_eq(o.status, SIM_CANCELED);
    assert_bal(e, "BTC", "1.5", "0.5");
    place_ok(e, stop_req(SIM_TAKE_PROFIT_LIMIT, SIM_SELL, "0.1", "62000", "62000"), &b, 3);
    check_invariants(e);

    /* a waiting stop survives save and load, still waiting */
    json_t *saved = cq_sim__engine_save(e);
    struct cq_sim__engine *e2 = std_engine();
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(e2, saved, &err), 0, "%s", err.message);
    json_decref(saved);
    cr_assert_eq(cq_sim__engine_get_order(e2, BTC, first + 1, NULL, &o, &rej), 0);
    cr_assert_eq(o.type, SIM_STOP_LOSS_LIMIT);
    cr_assert(!o.is_working);
    assert_dec(o.stop_price, "59000");
    check_invariants(e2);
    cq_sim__engine_free(e2);
    cq_sim__engine_free(e);
}

Test(sim_engine, limit_maker_rests_without_taking)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "60000", "1");
    bid(&b, "59990", "1");
    struct placed p = place_ok(e, maker(BTC, SIM_BUY, "0.1", "59999.99"), &b, 5);
    cr_assert_eq(p.o.status, SIM_NEW);
    cr_assert(p.o.is_working);
    cr_assert_eq(p.o.working_ms, 5);
    cr_assert_eq(p.o.tif, SIM_TIF_NONE);
    cr_assert_eq(p.n, 0);
    assert_bal(e, "USDT", "94000.001", "5999.999");
    cr_assert_str_eq(kinds(), "NP");
    cr_assert(events[0].o.is_working);
    p = place_ok(e, maker(BTC, SIM_SELL, "0.1", "59990.01"), &b, 6);
    assert_bal(e, "BTC", "1.9", "0.1");
    p = place(e, maker(BTC, SIM_BUY, "0.1", "60000"), &b, 7);
    cr_assert_str_eq(p.rej.msg, "Order would immediately match and take.");
    cr_assert_str_eq(kinds(), "NP");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* ---- cancel --------------------------------------------------------------------------------- */

Test(sim_engine, cancel_by_id_by_client_id_and_mismatch_unlocks_exactly)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book b;
    book_init(&b);
    ask(&b, "3000", "0.25");
    struct placed a =
        place_ok(e, with_cid(limit(ETH, SIM_BUY, SIM_GTC, "1", "3000"), "a-1"), &b, 1);
    cr_assert_eq(a.o.status, SIM_PARTIALLY_FILLED);
    struct placed s =
        place_ok(e, with_cid(limit(ETH, SIM_SELL, SIM_GTC, "2", "3100"), "s-1"), &b, 2);
    assert_bal(e, "USDT", "97000", "2250");
    assert_bal(e, "ETH", "8.24975", "2");
    n_events = 0;

    struct cq_sim__order o;
    struct cq_sim__reject rej;
    /* both given and mismatched */
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, a.o.order_id, "s-1", NULL, 3, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2011);
    cr_assert_str_eq(kinds(), "");
    /* by id, with the cancel's own id */
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, a.o.order_id, "a-1", "my-cancel", 4, &o, &rej), 0);
    cr_assert_eq(o.status, SIM_CANCELED);
    cr_assert(!o.is_working);
    assert_dec(o.executed_qty, "0.25");
    cr_assert_eq(o.update_ms, 4);
    cr_assert_str_eq(cq_sim__engine_last_cancel_client_id(e), "my-cancel");
    cr_assert_str_eq(kinds(), "CP");
    cr_assert_str_eq(events[0].orig_cid, "a-1");
    cr_assert_str_eq(events[0].cancel_cid, "my-cancel");
    cr_assert_str_eq(pos_assets(1), "USDT");
    assert_bal(e, "USDT", "99250", "0");
    /* by client id; a generated cancel id */
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, 0, "s-1", NULL, 5, &o, &rej), 0);
    cr_assert_eq(o.order_id, s.o.order_id);
    const char *gen = cq_sim__engine_last_cancel_client_id(e);
    cr_assert_eq(strlen(gen), 22);
    cr_assert_str_eq(kinds(), "CP");
    cr_assert_str_eq(events[0].cancel_cid, gen);
    assert_bal(e, "ETH", "10.24975", "0");
    /* twice: unknown */
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, 0, "s-1", NULL, 6, &o, &rej), -CQ_EVENUE);
    cr_assert_str_eq(rej.msg, "Unknown order sent.");
    /* the closed order is still found by id and client id */
    cr_assert_eq(cq_sim__engine_get_order(e, ETH, 0, "a-1", &o, &rej), 0);
    cr_assert_eq(o.status, SIM_CANCELED);
    cr_assert_eq(cq_sim__engine_get_order(e, ETH, a.o.order_id, "a-1", &o, &rej), 0);
    cr_assert_eq(cq_sim__engine_get_order(e, ETH, a.o.order_id, "s-1", &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2013);
    struct cq_sim__engine_stats st;
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.orders_canceled, 2);
    cr_assert_eq(st.open_orders, 0);
    check_invariants(e);
    cq_sim__engine_free(e);
}

struct id_list {
    uint64_t ids[64];
    size_t n;
};

static void collect_id(void *ctx, const struct cq_sim__order *o)
{
    struct id_list *l = ctx;
    l->ids[l->n++] = o->order_id;
}

Test(sim_engine, cancel_all_cancels_one_symbol_oldest_first)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    struct book empty;
    book_init(&empty);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.1", "50000"), &empty, 1);
    place_ok(e, limit(ETH, SIM_BUY, SIM_GTC, "1", "2000"), &empty, 2);
    place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "70000"), &empty, 3);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.2", "40000"), &empty, 4);
    n_events = 0;
    struct id_list l = {0};
    cr_assert_eq(cq_sim__engine_cancel_all(e, BTC, 5, collect_id, &l), 3);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.ids[0], 1);
    cr_assert_eq(l.ids[1], 3);
    cr_assert_eq(l.ids[2], 4);
    cr_assert_str_eq(kinds(), "CCCP");
    cr_assert_str_eq(pos_assets(3), "USDT,BTC");
    assert_bal(e, "USDT", "98000", "2000");
    assert_bal(e, "BTC", "2", "0");
    cr_assert_eq(cq_sim__engine_open_orders(e, BTC, NULL, NULL), 0);
    cr_assert_eq(cq_sim__engine_open_orders(e, ETH, NULL, NULL), 1);
    cr_assert_eq(cq_sim__engine_cancel_all(e, BTC, 6, NULL, NULL), 0);
    cr_assert_eq(cq_sim__engine_cancel_all(e, -1, 6, NULL, NULL), 0);
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* ---- queries -------------------------------------------------------------------------------- */

static void collect_trade(void *ctx, const struct cq_sim__trade *t)
{
    struct id_list *l = ctx;
    l->ids[l->n++] = t->trade_id;
}

Test(sim_engine, open_all_orders_and_my_trades_filters_and_limits)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "60000", "10");
    bid(&b, "59000", "10");
    struct book eb;
    book_init(&eb);
    ask(&eb, "3000", "10");
    /* ids 1..6 at times 100..600 */
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.01", "50000"), &b, 100);  /* 1 open */
    place_ok(e, market(BTC, SIM_BUY, "0.01"), &b, 200);                   /* 2 trade 1 */
    place_ok(e, market(ETH, SIM_BUY, "1"), &eb, 300);                     /* 3 trade 2 */
    place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.01", "70000"), &b, 400); /* 4 open */
    place_ok(e, market(BTC, SIM_SELL, "0.02"), &b, 500);                  /* 5 trade 3 */
    place_ok(e, limit(ETH, SIM_BUY, SIM_GTC, "1", "2000"), &eb, 600);     /* 6 open */

    struct id_list l = {0};
    cr_assert_eq(cq_sim__engine_open_orders(e, -1, collect_id, &l), 3);
    cr_assert_eq(l.ids[0], 1);
    cr_assert_eq(l.ids[1], 4);
    cr_assert_eq(l.ids[2], 6);
    memset(&l, 0, sizeof(l));
    cr_assert_eq(cq_sim__engine_open_orders(e, BTC, collect_id, &l), 2);
    cr_assert_eq(cq_sim__engine_open_orders(e, 7, NULL, NULL), 0);

    static const struct {
        int sym;
        uint64_t from;
        int64_t start, end;
        size_t limit;
        const char *want;
    } rows[] = {
        {BTC, 0, 0, 0, 0, "1,2,4,5"}, {BTC, 0, 0, 0, 2, "4,5"}, /* most recent 2, oldest first */
        {BTC, 2, 0, 0, 2, "2,4"},                               /* from id 2 */
        {BTC, 0, 150, 450, 0, "2,4"},                           /* time window */
        {BTC, 0, 150, 0, 1, "2"},                               /* from startTime: oldest first */
        {BTC, 0, 0, 450, 1, "4"},                               /* endTime only: most recent */
        {ETH, 0, 0, 0, 0, "3,6"},     {BTC, 7, 0, 0, 0, ""},    {-1, 0, 0, 0, 0, "1,2,3,4,5,6"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        memset(&l, 0, sizeof(l));
        size_t n = cq_sim__engine_all_orders(e, rows[i].sym, rows[i].from, rows[i].start,
                                             rows[i].end, rows[i].limit, collect_id, &l);
        char got[64] = "";
        for (size_t k = 0; k < l.n; k++) {
            char one[24];
            snprintf(one, sizeof(one), k ? ",%llu" : "%llu", (unsigned long long)l.ids[k]);
            strcat(got, one);
        }
        cr_expect_str_eq(got, rows[i].want, "allOrders row %zu", i);
        cr_expect_eq(n, l.n);
    }

    static const struct {
        int sym;
        uint64_t order, from;
        int64_t start, end;
        size_t limit;
        const char *want;
    } trows[] = {
        {BTC, 0, 0, 0, 0, 0, "1,3"}, {BTC, 5, 0, 0, 0, 0, "3"},     {BTC, 0, 2, 0, 0, 0, "3"},
        {BTC, 0, 0, 0, 0, 1, "3"},   {BTC, 0, 0, 100, 300, 0, "1"}, {ETH, 0, 0, 0, 0, 0, "2"},
        {-1, 0, 0, 0, 0, 2, "2,3"},  {-1, 0, 1, 0, 0, 2, "1,2"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(trows); i++) {
        memset(&l, 0, sizeof(l));
        cq_sim__engine_my_trades(e, trows[i].sym, trows[i].order, trows[i].from, trows[i].start,
                                 trows[i].end, trows[i].limit, collect_trade, &l);
        char got[64] = "";
        for (size_t k = 0; k < l.n; k++) {
            char one[24];
            snprintf(one, sizeof(one), k ? ",%llu" : "%llu", (unsigned long long)l.ids[k]);
            strcat(got, one);
        }
        cr_expect_str_eq(got, trows[i].want, "myTrades row %zu", i);
    }
    cq_sim__engine_free(e);
}

struct trade_rows {
    struct cq_sim__trade t[8];
    size_t n;
};

static void keep_trade(void *ctx, const struct cq_sim__trade *t)
{
    struct trade_rows *r = ctx;
    r->t[r->n++] = *t;
}

Test(sim_engine, trade_rows_carry_buyer_maker_and_commission)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "60000", "1");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.5", "59000"), &b, 10);
    place_ok(e, market(BTC, SIM_BUY, "0.1"), &b, 11);
    book_init(&b);
    ask(&b, "58000", "1");
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 12), 1);
    struct trade_rows r = {0};
    cq_sim__engine_my_trades(e, BTC, 0, 0, 0, 0, 0, keep_trade, &r);
    cr_assert_eq(r.n, 2);
    cr_assert(r.t[0].is_buyer && !r.t[0].is_maker);
    cr_assert_eq(r.t[0].time_ms, 11);
    cr_assert(r.t[1].is_buyer && r.t[1].is_maker);
    cr_assert_eq(r.t[1].order_id, p.o.order_id);
    assert_dec(r.t[1].price, "59000");
    assert_dec(r.t[1].quote_qty, "29500");
    assert_dec(r.t[1].commission, "0.0001");
    cr_assert_str_eq(r.t[1].commission_asset, "BTC");
    cq_sim__engine_free(e);
}

Test(sim_engine, trade_store_is_a_bounded_ring)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    cfg.max_trades = 3;
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, NULL);
    struct book b;
    book_init(&b);
    for (int i = 0; i < 5; i++) {
        ask(&b,
            i == 0   ? "60000"
            : i == 1 ? "60001"
            : i == 2 ? "60002"
            : i == 3 ? "60003"
                     : "60004",
            "0.01");
    }
    place_ok(e, market(BTC, SIM_BUY, "0.05"), &b, 1);
    struct id_list l = {0};
    cr_assert_eq(cq_sim__engine_my_trades(e, BTC, 0, 0, 0, 0, 0, collect_trade, &l), 3);
    cr_assert_eq(l.ids[0], 3);
    cr_assert_eq(l.ids[2], 5);
    memset(&l, 0, sizeof(l));
    cq_sim__engine_my_trades(e, BTC, 0, 4, 0, 0, 0, collect_trade, &l);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.ids[0], 4);
    char *s1 = dump(e);
    struct cq_sim__engine *f = cq_sim__engine_new(&cfg, NULL);
    json_t *j = json_loads(s1, 0, NULL);
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(f, j, &err), 0, "%s", err.message);
    char *s2 = dump(f);
    cr_assert_str_eq(s1, s2);
    /* keeps rolling after a load */
    place_ok(f, market(BTC, SIM_BUY, "0.01"), &b, 2);
    memset(&l, 0, sizeof(l));
    cq_sim__engine_my_trades(f, -1, 0, 0, 0, 0, 0, collect_trade, &l);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.ids[0], 4);
    cr_assert_eq(l.ids[2], 6);
    json_decref(j);
    free(s1);
    free(s2);
    cq_sim__engine_free(e);
    cq_sim__engine_free(f);
}

/* ---- listener ------------------------------------------------------------------------------ */

Test(sim_engine, account_position_lists_only_changed_assets)
{
    struct cq_sim__engine *e = std_engine();
    record(e);
    cr_assert_eq(cq_sim__engine_set_balance(e, "ETH", D("12.5"), 77), 0);
    cr_assert_str_eq(kinds(), "P");
    cr_assert_eq(events[0].n_assets, 1);
    cr_assert_str_eq(events[0].bal[0].asset, "ETH");
    assert_dec(events[0].bal[0].free, "12.5");
    cr_assert_eq(events[0].event_ms, 77);
    /* the same value again: nothing changed, no event */
    cr_assert_eq(cq_sim__engine_set_balance(e, "ETH", D("12.50000000"), 78), 0);
    cr_assert_str_eq(kinds(), "");
    /* a new asset gets an entry */
    cr_assert_eq(cq_sim__engine_set_balance(e, "BNB", D("1"), 79), 0);
    cr_assert_str_eq(kinds(), "P");
    cr_assert_str_eq(events[0].bal[0].asset, "BNB");
    cr_assert_eq(cq_sim__engine_set_balance(e, "BNB", D("-1"), 80), -CQ_EINVAL);
    cr_assert_eq(cq_sim__engine_set_balance(e, "BNB", D("0.000000001"), 80), -CQ_EINVAL);
    cr_assert_eq(cq_sim__engine_set_balance(e, "B-B", D("1"), 80), -CQ_EINVAL);
    /* a SELL LIMIT that rests changes only the base */
    struct book empty;
    book_init(&empty);
    place_ok(e, limit(ETH, SIM_SELL, SIM_GTC, "1", "5000"), &empty, 81);
    cr_assert_str_eq(kinds(), "NP");
    cr_assert_str_eq(pos_assets(1), "ETH");
    assert_dec(events[1].bal[0].locked, "1");
    /* a NEW report carries the order as it is then */
    record(e);
    place_ok(e, limit(ETH, SIM_BUY, SIM_GTC, "1", "100"), &empty, 82);
    cr_assert_eq(events[0].kind, 'N');
    cr_assert_eq(events[0].o.status, SIM_NEW);
    cr_assert_eq(events[0].event_ms, 82);
    cr_assert_eq(events[0].has_fill, false);
    cq_sim__engine_set_listener(e, NULL);
    n_events = 0;
    place_ok(e, limit(ETH, SIM_BUY, SIM_GTC, "1", "100"), &empty, 83);
    cr_assert_eq(n_events, 0);
    cq_sim__engine_free(e);
}

/* ---- determinism ------------------------------------------------------------------------------
 */

static bool alnum22(const char *s)
{
    if (strlen(s) != 22) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) {
            return false;
        }
    }
    return true;
}

Test(sim_engine, ids_are_sequential_and_generated_client_ids_deterministic)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    cfg.first_order_id = 1000;
    cfg.first_trade_id = 500;
    struct cq_sim__engine *a = cq_sim__engine_new(&cfg, NULL);
    struct cq_sim__engine *b = cq_sim__engine_new(&cfg, NULL);
    cfg.seed = 43;
    struct cq_sim__engine *c = cq_sim__engine_new(&cfg, NULL);
    static const char *const level_qty[] = {"1", "1.1", "1.2"};
    struct book bk;
    for (int i = 0; i < 3; i++) {
        /* the model replaces both levels each time */
        book_init(&bk);
        ask(&bk, "60000", level_qty[i]);
        ask(&bk, "60001", level_qty[i]);
        struct placed pa = place_ok(a, market(BTC, SIM_BUY, "1.5"), &bk, i);
        struct placed pb = place_ok(b, market(BTC, SIM_BUY, "1.5"), &bk, i);
        struct placed pc = place_ok(c, market(BTC, SIM_BUY, "0.001"), &bk, i);
        cr_assert_eq(pa.o.order_id, 1000 + (uint64_t)i);
        cr_assert_eq(pa.fills[0].trade_id, 500 + 2 * (uint64_t)i);
        cr_assert_eq(pa.fills[1].trade_id, 501 + 2 * (uint64_t)i);
        cr_assert(alnum22(pa.o.client_id), "'%s'", pa.o.client_id);
        cr_assert_str_eq(pa.o.client_id, pb.o.client_id);
        cr_assert_str_neq(pa.o.client_id, pc.o.client_id);
        cr_assert_eq(cq_sim__engine_set_balance(a, "USDT", D("100000"), i), 0);
        cr_assert_eq(cq_sim__engine_set_balance(b, "USDT", D("100000"), i), 0);
    }
    struct placed p1 = place_ok(a, market(BTC, SIM_SELL, "0.001"), &bk, 9);
    struct placed p2 = place_ok(a, market(BTC, SIM_SELL, "0.001"), &bk, 9);
    cr_assert_str_neq(p1.o.client_id, p2.o.client_id);
    cq_sim__engine_free(a);
    cq_sim__engine_free(b);
    cq_sim__engine_free(c);
}

/* ---- save / load -------------------------------------------------------------------------------
 */

/* An engine with open, partially filled, canceled, filled and expired
 * orders and maker and taker trades. */
static struct cq_sim__engine *busy_engine(void)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "60000", "0.3");
    bid(&b, "59000", "1");
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "1", "60000"), &b, 10);
    place_ok(e, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.5", "65000"), "keep-me"), &b, 11);
    place_ok(e, limit(BTC, SIM_BUY, SIM_IOC, "0.5", "60000"), &b, 12);
    struct placed c = place_ok(e, limit(ETH, SIM_BUY, SIM_GTC, "1", "2000"), &b, 13);
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_cancel(e, ETH, c.o.order_id, NULL, NULL, 14, &o, &rej), 0);
    place_ok(e, market(BTC, SIM_SELL, "0.1"), &b, 15);
    struct book m;
    book_init(&m);
    ask(&m, "59999", "0.2");
    cr_assert_eq(on_market(e, BTC, &m.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 16), 1);
    place_ok(e, maker(ETH, SIM_SELL, "0.5", "4000"), &m, 17);
    return e;
}

Test(sim_engine, save_load_save_is_identical_and_the_engine_carries_on)
{
    struct cq_sim__engine *e = busy_engine();
    char *s1 = dump(e);
    json_t *j = json_loads(s1, 0, NULL);
    cr_assert_not_null(j);
    /* decimals are exact strings */
    const json_t *o0 = json_array_get(json_object_get(j, "orders"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o0, "price")), "60000.00000000");
    cr_assert_str_eq(json_string_value(json_object_get(o0, "executed_qty")), "0.50000000");

    struct cq_sim__engine *f = std_engine();
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(f, j, &err), 0, "%s", err.message);
    char *s2 = dump(f);
    cr_assert_str_eq(s1, s2);
    check_invariants(f);

    /* both engines behave identically from here: ids, client ids, fills */
    struct book b;
    book_init(&b);
    ask(&b, "59000", "1");
    struct placed pe = place_ok(e, market(BTC, SIM_BUY, "0.01"), &b, 20);
    struct placed pf = place_ok(f, market(BTC, SIM_BUY, "0.01"), &b, 20);
    cr_assert_eq(pe.o.order_id, pf.o.order_id);
    cr_assert_str_eq(pe.o.client_id, pf.o.client_id);
    cr_assert_eq(pe.fills[0].trade_id, pf.fills[0].trade_id);
    cr_assert_eq(on_market(e, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 21),
                 on_market(f, BTC, &b.v, CQ_DEC_ZERO, CQ_DEC_ZERO, 21));
    /* the open order's client id is still indexed after a load */
    struct placed dup =
        place(f, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.1", "70000"), "keep-me"), &b, 22);
    cr_assert_str_eq(dup.rej.msg, "Duplicate order sent.");
    dup = place(e, with_cid(limit(BTC, SIM_SELL, SIM_GTC, "0.1", "70000"), "keep-me"), &b, 22);
    cr_assert_str_eq(dup.rej.msg, "Duplicate order sent.");
    char *s3 = dump(e);
    char *s4 = dump(f);
    cr_assert_str_eq(s3, s4);
    free(s1);
    free(s2);
    free(s3);
    free(s4);
    json_decref(j);
    cq_sim__engine_free(e);
    cq_sim__engine_free(f);
}

typedef void (*mutate_fn)(json_t *state);

static json_t *at(json_t *state, const char *arr, size_t i)
{
    return json_array_get(json_object_get(state, arr), i);
}

static void set_s(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

static void m_no_version(json_t *s)
{
    json_object_del(s, "version");
}
static void m_version_3(json_t *s)
{
    json_object_set_new(s, "version", json_integer(3));
}

static void m_dropped_missing(json_t *s)
{
    json_object_del(json_object_get(s, "stats"), "orders_dropped");
}
static void m_price_text(json_t *s)
{
    set_s(at(s, "orders", 0), "price", "abc");
}
static void m_price_9dp(json_t *s)
{
    set_s(at(s, "orders", 0), "price", "60000.000000001");
}
static void m_price_number(json_t *s)
{
    json_object_set_new(at(s, "orders", 0), "price", json_real(1.5));
}
static void m_free_negative(json_t *s)
{
    set_s(at(s, "balances", 1), "free", "-1");
}
static void m_locked_off(json_t *s)
{
    set_s(at(s, "balances", 0), "locked", "0.00000001");
}
static void m_order_id(json_t *s)
{
    json_object_set_new(at(s, "orders", 1), "order_id", json_integer(9));
}
static void m_symbol(json_t *s)
{
    set_s(at(s, "orders", 0), "symbol", "NOPEUSDT");
}
static void m_status(json_t *s)
{
    set_s(at(s, "orders", 2), "status", "SLEEPING");
}
static void m_status_fit(json_t *s)
{
    set_s(at(s, "orders", 2), "status", "FILLED");
}
static void m_side(json_t *s)
{
    set_s(at(s, "orders", 0), "side", "buy");
}
static void m_tif(json_t *s)
{
    set_s(at(s, "orders", 0), "time_in_force", "");
}
static void m_cid(json_t *s)
{
    set_s(at(s, "orders", 0), "client_id", "bad id!");
}
static void m_working(json_t *s)
{
    json_object_set_new(at(s, "orders", 0), "is_working", json_false());
}
static void m_executed(json_t *s)
{
    set_s(at(s, "orders", 4), "executed_qty", "5");
}
static void m_trade_order(json_t *s)
{
    json_object_set_new(at(s, "trades", 0), "order_id", json_integer(999));
}
static void m_trade_id(json_t *s)
{
    json_object_set_new(at(s, "trades", 1), "trade_id", json_integer(7));
}
static void m_trade_asset(json_t *s)
{
    set_s(at(s, "trades", 0), "commission_asset", "USDT");
}
static void m_next_trade(json_t *s)
{
    json_object_set_new(s, "next_trade_id", json_integer(1));
}
static void m_next_order(json_t *s)
{
    json_object_set_new(s, "next_order_id", json_integer(99));
}
static void m_rng(json_t *s)
{
    set_s(s, "client_id_rng", "12x");
}
static void m_rng_big(json_t *s)
{
    set_s(s, "client_id_rng", "18446744073709551616");
}
static void m_balances_type(json_t *s)
{
    json_object_set_new(s, "balances", json_object());
}
static void m_asset_dup(json_t *s)
{
    set_s(at(s, "balances", 1), "asset", "USDT");
}
static void m_stats(json_t *s)
{
    json_object_del(json_object_get(s, "stats"), "fills");
}
static void m_dup_open(json_t *s)
{
    /* orders[0] and orders[1] are both open on BTCUSDT */
    set_s(at(s, "orders", 0), "client_id", "same");
    set_s(at(s, "orders", 1), "client_id", "same");
}

/* Issue 17: the order history grew without bound over uptime. At
 * max_orders a new order first drops the oldest closed orders (a quarter
 * of the limit), never an open one, and counts them. */
Test(sim_engine, order_history_keeps_max_orders_dropping_the_oldest_closed_first)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    cfg.max_orders = 8;
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, NULL);
    struct book none;
    book_init(&none);
    struct cq_sim__engine_stats st;
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    char cid[16];

    /* order 1 rests (open) the whole time; 2..8 expire (closed) */
    place_ok(e, with_cid(limit(BTC, SIM_BUY, SIM_GTC, "0.001", "30000"), "h-1"), &none, 1);
    for (int i = 2; i <= 8; i++) {
        snprintf(cid, sizeof(cid), "h-%d", i);
        place_ok(e, with_cid(limit(BTC, SIM_BUY, SIM_IOC, "0.001", "30000"), cid), &none, i);
    }
    /* exactly at the limit: everything kept */
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.orders_kept, 8);
    cr_assert_eq(st.orders_dropped, 0);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 2, NULL, &o, &rej), 0);

    /* one more: the two oldest closed (2, 3) go, the open 1 stays */
    struct placed p9 =
        place_ok(e, with_cid(limit(BTC, SIM_BUY, SIM_IOC, "0.001", "30000"), "h-9"), &none, 9);
    cr_assert_eq(p9.o.order_id, 9);
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.orders_kept, 7);
    cr_assert_eq(st.orders_dropped, 2);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 1, NULL, &o, &rej), 0);
    cr_assert_eq(o.status, SIM_NEW);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 2, NULL, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(rej.code, -2013);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 3, NULL, &o, &rej), -CQ_EVENUE);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 0, "h-3", &o, &rej), -CQ_EVENUE);
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, 0, "h-4", &o, &rej), 0);
    cr_assert_eq(o.order_id, 4);
    struct id_list l = {0};
    cr_assert_eq(cq_sim__engine_all_orders(e, BTC, 0, 0, 0, 0, collect_id, &l), 7);
    static const uint64_t kept[] = {1, 4, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < CQ_ARRAY_LEN(kept); i++) {
        cr_assert_eq(l.ids[i], kept[i], "allOrders[%zu] = %" PRIu64, i, l.ids[i]);
    }
    memset(&l, 0, sizeof(l));
    cr_assert_eq(cq_sim__engine_all_orders(e, BTC, 2, 0, 0, 2, collect_id, &l), 2);
    cr_assert_eq(l.ids[0], 4);
    cr_assert_eq(l.ids[1], 5);
    memset(&l, 0, sizeof(l));
    cr_assert_eq(cq_sim__engine_all_orders(e, BTC, 0, 0, 0, 3, collect_id, &l), 3);
    cr_assert_eq(l.ids[0], 7);
    check_invariants(e);

    /* a save with gaps loads back identically and both go on alike */
    char *s1 = dump(e);
    json_t *j = json_loads(s1, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "stats"), "orders_dropped")),
                 2);
    struct cq_sim__engine *f = cq_sim__engine_new(&cfg, NULL);
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(f, j, &err), 0, "%s", err.message);
    char *s2 = dump(f);
    cr_assert_str_eq(s1, s2);
    cr_assert_eq(place_ok(f, limit(BTC, SIM_BUY, SIM_IOC, "0.001", "30000"), &none, 10).o.order_id,
                 10);
    /* the open order is still on the book after the drop: cancel works
     * and unlocks exactly */
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, 1, NULL, NULL, 11, &o, &rej), 0, "%s", rej.msg);
    assert_bal(e, "USDT", "100000", "0");
    check_invariants(e);
    json_decref(j);
    free(s1);
    free(s2);
    cq_sim__engine_free(f);
    cq_sim__engine_free(e);

    /* every kept order open: nothing can be dropped, -CQ_EFULL; once one
     * closes there is room again */
    cfg.max_orders = 2;
    e = cq_sim__engine_new(&cfg, NULL);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "30000"), &none, 1);
    place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "30000"), &none, 2);
    struct placed full = place(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "30000"), &none, 3);
    cr_assert_eq(full.rc, -CQ_EFULL);
    cr_assert_eq(cq_sim__engine_cancel(e, BTC, 1, NULL, NULL, 4, &o, &rej), 0);
    cr_assert_eq(place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.001", "30000"), &none, 5).o.order_id,
                 3);
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.orders_kept, 2);
    cr_assert_eq(st.orders_dropped, 1);
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* A version 1 file (contiguous ids, no stats.orders_dropped) still loads. */
Test(sim_engine, a_version_1_state_file_still_loads)
{
    struct cq_sim__engine *src = busy_engine();
    json_t *j = cq_sim__engine_save(src);
    json_object_set_new(j, "version", json_integer(1));
    json_object_del(json_object_get(j, "stats"), "orders_dropped");
    struct cq_sim__engine *e = std_engine();
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(e, j, &err), 0, "%s", err.message);
    check_invariants(e);
    json_decref(j);
    cq_sim__engine_free(src);
    cq_sim__engine_free(e);
}

Test(sim_engine, load_rejects_malformed_state_naming_the_field_and_changes_nothing)
{
    static const struct {
        mutate_fn fn;
        const char *field;
    } rows[] = {
        {m_no_version, "'version'"},
        {m_version_3, "'version'"},
        {m_dropped_missing, "'stats.orders_dropped'"},
        {m_price_text, "'orders[0].price'"},
        {m_price_9dp, "'orders[0].price'"},
        {m_price_number, "'orders[0].price'"},
        {m_free_negative, "'balances[1].free'"},
        {m_locked_off, "'balances[0].locked'"},
        {m_order_id, "'orders[1].order_id'"},
        {m_symbol, "'orders[0].symbol'"},
        {m_status, "'orders[2].status'"},
        {m_status_fit, "'orders[2].status'"},
        {m_side, "'orders[0].side'"},
        {m_tif, "'orders[0].time_in_force'"},
        {m_cid, "'orders[0].client_id'"},
        {m_working, "'orders[0].is_working'"},
        {m_executed, "'orders[4].executed_qty'"},
        {m_trade_order, "'trades[0].order_id'"},
        {m_trade_id, "'trades[1].trade_id'"},
        {m_trade_asset, "'trades[0].commission_asset'"},
        {m_next_trade, "'next_trade_id'"},
        {m_next_order, "'next_order_id'"},
        {m_rng, "'client_id_rng'"},
        {m_rng_big, "'client_id_rng'"},
        {m_balances_type, "'balances'"},
        {m_asset_dup, "'balances[1].asset'"},
        {m_stats, "'stats.fills'"},
        {m_dup_open, "'orders[1].client_id'"},
    };
    struct cq_sim__engine *src = busy_engine();
    json_t *good = cq_sim__engine_save(src);
    struct cq_sim__engine *e = busy_engine();
    char *before = dump(e);
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        json_t *bad = json_deep_copy(good);
        rows[i].fn(bad);
        struct cq_err err = {0};
        int rc = cq_sim__engine_load(e, bad, &err);
        cr_expect_eq(rc, -CQ_EPARSE, "row %zu (%s): rc %d", i, rows[i].field, rc);
        cr_expect_eq(err.code, CQ_EPARSE);
        cr_expect(strstr(err.message, rows[i].field) != NULL, "row %zu: want %s in \"%s\"", i,
                  rows[i].field, err.message);
        char *after = dump(e);
        cr_expect_str_eq(before, after, "row %zu: a failed load changed the engine", i);
        free(after);
        json_decref(bad);
    }
    struct cq_err err = {0};
    json_t *arr = json_array();
    cr_assert_eq(cq_sim__engine_load(e, arr, &err), -CQ_EPARSE);
    json_decref(arr);
    /* and the unmodified state still loads */
    cr_assert_eq(cq_sim__engine_load(e, good, &err), 0, "%s", err.message);
    json_decref(good);
    free(before);
    cq_sim__engine_free(src);
    cq_sim__engine_free(e);
}

/* ---- the randomized sequence ------------------------------------------------------------------
 */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rnd_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd(s) % n);
}

/* The random engine: the four real symbols plus TESTUSDT with every
 * filter off, where price * qty has 16 decimals and every rounding rule
 * is exercised. */
enum { TEST = 4, N_RANDOM_SYMS = 3 };
static struct cq_sim__symbol random_symbols[5];
static struct cq_sim__balance random_balances[4];

static struct cq_sim__engine *random_engine_kept(unsigned maker_bps, unsigned taker_bps,
                                                 size_t max_orders)
{
    static const char *const assets[][2] = {
        {"USDT", "1000000"}, {"BTC", "20"}, {"ETH", "300"}, {"TEST", "1000"}};
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    memcpy(random_symbols, std_symbols, sizeof(std_symbols));
    memset(&random_symbols[TEST], 0, sizeof(random_symbols[TEST]));
    cq_strlcpy(random_symbols[TEST].symbol, "TESTUSDT", CQ_SYMBOL_LEN);
    cq_strlcpy(random_symbols[TEST].base, "TEST", SIM_ASSET_LEN);
    cq_strlcpy(random_symbols[TEST].quote, "USDT", SIM_ASSET_LEN);
    for (size_t i = 0; i < 4; i++) {
        memset(&random_balances[i], 0, sizeof(random_balances[i]));
        cq_strlcpy(random_balances[i].asset, assets[i][0], SIM_ASSET_LEN);
        random_balances[i].free = D(assets[i][1]);
    }
    cfg.symbols = random_symbols;
    cfg.n_symbols = 5;
    cfg.balances = random_balances;
    cfg.n_balances = 4;
    cfg.maker_bps = maker_bps;
    cfg.taker_bps = taker_bps;
    cfg.max_orders = max_orders;
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, NULL);
    cr_assert_not_null(e);
    return e;
}

static struct cq_sim__engine *random_engine(unsigned maker_bps, unsigned taker_bps)
{
    return random_engine_kept(maker_bps, taker_bps, 0);
}

/* Per random symbol: engine index, price scale, quantity scale and unit. */
static const struct {
    int idx;
    unsigned price_scale, qty_scale;
    int64_t qty_unit, mid;
} rsym[N_RANDOM_SYMS] = {
    {BTC, 2, 5, 1, 6000000},    /* 60000.00, steps of 0.00001 */
    {ETH, 2, 5, 10, 300000},    /* 3000.00, steps of 0.0001 */
    {TEST, 8, 8, 1, 123456789}, /* 1.23456789, any 8-decimal qty */
};

struct market_sim {
    int64_t mid[N_RANDOM_SYMS];
    struct book b[N_RANDOM_SYMS];
};

static cq_dec rqty(uint64_t *rng, int k, unsigned max_units)
{
    unsigned scale_up = rsym[k].qty_scale == 8 ? 500 : 1; /* TEST: up to 0.2 */
    return cq_dec_make((int64_t)(1 + rnd_below(rng, max_units * scale_up)) * rsym[k].qty_unit,
                       rsym[k].qty_scale);
}

static void random_book(uint64_t *rng, struct market_sim *m, int k)
{
    struct book *b = &m->b[k];
    unsigned ps = rsym[k].price_scale;
    book_init(b);
    int64_t px = m->mid[k] + 1 + rnd_below(rng, 3);
    for (int i = 0; i < 8; i++) {
        b->asks[i].price = cq_dec_make(px, ps);
        b->asks[i].qty = rqty(rng, k, 40000);
        px += 1 + rnd_below(rng, 4);
    }
    b->v.n_asks = 8;
    px = m->mid[k] - 1 - rnd_below(rng, 3);
    for (int i = 0; i < 8; i++) {
        b->bids[i].price = cq_dec_make(px, ps);
        b->bids[i].qty = rqty(rng, k, 40000);
        px -= 1 + rnd_below(rng, 4);
    }
    b->v.n_bids = 8;
    b->v.last_price = rnd_below(rng, 2) ? cq_dec_make(m->mid[k], ps) : CQ_DEC_ZERO;
}

struct pick {
    unsigned want, seen;
    uint64_t id;
    int sym;
};

static void pick_cb(void *ctx, const struct cq_sim__order *o)
{
    struct pick *p = ctx;
    if (p->seen++ == p->want) {
        p->id = o->order_id;
        p->sym = o->symbol_idx;
    }
}

struct seq_counts {
    uint64_t accepted, rejected, filled, expired, rested, market_quote;
};

/* One seeded sequence of place / cancel / cancel_all / on_market; checks
 * the invariants after every step when `check`. */
static void run_sequence(struct cq_sim__engine *e, uint64_t seed, int steps, bool check,
                         struct seq_counts *cnt)
{
    uint64_t rng = seed;
    struct market_sim m;
    memset(&m, 0, sizeof(m));
    for (int k = 0; k < N_RANDOM_SYMS; k++) {
        m.mid[k] = rsym[k].mid;
        random_book(&rng, &m, k);
    }
    for (int step = 0; step < steps; step++) {
        int64_t now = 1000 + step;
        int k = (int)rnd_below(&rng, N_RANDOM_SYMS);
        int sym = rsym[k].idx;
        unsigned ps = rsym[k].price_scale;
        unsigned op = rnd_below(&rng, 100);
        if (op < 45) {
            struct cq_sim__order_req r;
            enum cq_sim__side side = rnd_below(&rng, 2) ? SIM_BUY : SIM_SELL;
            unsigned kind = rnd_below(&rng, 100);
            int64_t off = (int64_t)rnd_below(&rng, 41) - 20;
            cq_dec qty = rqty(&rng, k, 30000);
            cq_dec price = cq_dec_make(m.mid[k] + off, ps);
            if (kind < 35) {
                r = base_req(sym, side, SIM_LIMIT);
                r.tif = SIM_GTC;
            } else if (kind < 50) {
                r = base_req(sym, side, SIM_LIMIT);
                r.tif = SIM_IOC;
            } else if (kind < 60) {
                r = base_req(sym, side, SIM_LIMIT);
                r.tif = SIM_FOK;
            } else if (kind < 72) {
                r = base_req(sym, side, SIM_LIMIT_MAKER);
            } else {
                r = base_req(sym, side, SIM_MARKET);
            }
            if (r.type != SIM_MARKET) {
                r.has_price = true;
                r.price = price;
                if (rnd_below(&rng, 50) == 0) { /* off tick (or too precise) */
                    r.price = cq_dec_make((m.mid[k] + off) * 10 + 3, ps + 1);
                }
            }
            if (r.type == SIM_MARKET && kind >= 88) {
                r.has_quote_qty = true;
                r.quote_qty = cq_dec_make(500 + rnd_below(&rng, 2000000), 2);
                if (k == 2) {
                    r.quote_qty = cq_dec_make(1 + rnd_below(&rng, 20000000), 8);
                }
            } else {
                r.has_qty = true;
                r.qty = qty;
            }
            if (rnd_below(&rng, 10) == 0) {
                snprintf(r.client_id, sizeof(r.client_id), "c%u", rnd_below(&rng, 20));
            }
            struct cq_sim__order o;
            struct cq_sim__fill fills[SIM_DEPTH_MAX];
            size_t nf;
            struct cq_sim__reject rej;
            int rc =
                cq_sim__engine_place(e, &r, &m.b[k].v, now, &o, fills, SIM_DEPTH_MAX, &nf, &rej);
            if (rc == 0) {
                cnt->accepted++;
                cnt->filled += o.status == SIM_FILLED;
                cnt->expired += o.status == SIM_EXPIRED;
                cnt->rested += o.is_working;
                cnt->market_quote += r.has_quote_qty;
                if (check) {
                    cr_assert(o.status != SIM_NEW || nf == 0);
                    cr_assert(o.is_working ==
                              (o.status == SIM_NEW || o.status == SIM_PARTIALLY_FILLED));
                }
            } else {
                cnt->rejected++;
                cr_assert_eq(rc, -CQ_EVENUE, "rc %d", rc);
                cr_assert(rej.code == -1013 || rej.code == -2010, "code %d %s", rej.code, rej.msg);
            }
        } else if (op < 65) {
            size_t n = cq_sim__engine_open_orders(e, -1, NULL, NULL);
            if (n > 0) {
                struct pick p = {.want = rnd_below(&rng, (unsigned)n)};
                cq_sim__engine_open_orders(e, -1, pick_cb, &p);
                struct cq_sim__order o;
                struct cq_sim__reject rej;
                int rc = cq_sim__engine_cancel(e, p.sym, p.id, NULL, NULL, now, &o, &rej);
                cr_assert_eq(rc, 0);
                cr_assert_eq(o.status, SIM_CANCELED);
            }
        } else if (op < 67) {
            cq_sim__engine_cancel_all(e, sym, now, NULL, NULL);
        } else if (op < 92) {
            random_book(&rng, &m, k);
            cq_dec tp = CQ_DEC_ZERO, tq = CQ_DEC_ZERO;
            if (rnd_below(&rng, 2)) {
                tp = cq_dec_make(m.mid[k] + (int64_t)rnd_below(&rng, 21) - 10, ps);
                tq = rqty(&rng, k, 20000);
            }
            /* sometimes the book swings through the resting orders */
            if (rnd_below(&rng, 4) == 0) {
                int64_t swing = (int64_t)rnd_below(&rng, 41) - 20;
                for (size_t i = 0; i < m.b[k].v.n_asks; i++) {
                    m.b[k].asks[i].price.m += swing;
                    m.b[k].bids[i].price.m += swing;
                }
            }
            on_market(e, sym, &m.b[k].v, tp, tq, now);
        } else {
            m.mid[k] += (int64_t)rnd_below(&rng, 21) - 10;
            random_book(&rng, &m, k);
        }
        if (check) {
            check_invariants(e);
            if (step % 500 == 0) {
                check_conservation(e, random_balances, 4);
            }
        }
    }
}

Test(sim_engine, randomized_sequence_keeps_every_invariant, .timeout = 120)
{
    /* odd fee rates so commissions round */
    struct cq_sim__engine *e = random_engine(3, 7);
    struct seq_counts cnt = {0};
    run_sequence(e, 20240908, 8000, true, &cnt);
    check_invariants(e);
    check_conservation(e, random_balances, 4);
    struct cq_sim__engine_stats st;
    cq_sim__engine_get_stats(e, &st);
    cr_log_info("accepted %llu rejected %llu filled %llu expired %llu rested %llu quote %llu "
                "fills %llu canceled %llu open %llu",
                (unsigned long long)cnt.accepted, (unsigned long long)cnt.rejected,
                (unsigned long long)cnt.filled, (unsigned long long)cnt.expired,
                (unsigned long long)cnt.rested, (unsigned long long)cnt.market_quote,
                (unsigned long long)st.fills, (unsigned long long)st.orders_canceled,
                (unsigned long long)st.open_orders);
    cr_assert_eq(st.orders_placed, cnt.accepted);
    cr_assert_eq(st.orders_rejected, cnt.rejected);
    /* the sequence must exercise every path, or it proves nothing */
    cr_assert_gt(cnt.accepted, 1500);
    cr_assert_gt(cnt.rejected, 100);
    cr_assert_gt(cnt.filled, 300);
    cr_assert_gt(cnt.expired, 100);
    cr_assert_gt(cnt.rested, 300);
    cr_assert_gt(cnt.market_quote, 50);
    cr_assert_gt(st.fills, 1500);
    cr_assert_gt(st.orders_canceled, 200);
    /* and the state survives a round trip */
    char *s1 = dump(e);
    struct cq_sim__engine *f = random_engine(3, 7);
    json_t *j = json_loads(s1, 0, NULL);
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(f, j, &err), 0, "%s", err.message);
    char *s2 = dump(f);
    cr_assert_str_eq(s1, s2);
    check_invariants(f);
    json_decref(j);
    free(s1);
    free(s2);
    cq_sim__engine_free(e);
    cq_sim__engine_free(f);
}

/* The same sequence with a short order history: closed orders are dropped
 * again and again while orders rest, fill and cancel around them. */
Test(sim_engine, randomized_sequence_with_a_short_history_keeps_every_invariant, .timeout = 120)
{
    struct cq_sim__engine *e = random_engine_kept(3, 7, 1024);
    struct seq_counts cnt = {0};
    run_sequence(e, 20240909, 8000, true, &cnt);
    struct cq_sim__engine_stats st;
    cq_sim__engine_get_stats(e, &st);
    cr_assert_eq(st.orders_placed, cnt.accepted);
    cr_assert_gt(st.orders_dropped, 256);
    cr_assert_leq(st.orders_kept, 1024);
    cr_assert_eq(st.orders_kept + st.orders_dropped, st.orders_placed);
    char *s1 = dump(e);
    struct cq_sim__engine *f = random_engine_kept(3, 7, 1024);
    json_t *j = json_loads(s1, 0, NULL);
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(f, j, &err), 0, "%s", err.message);
    char *s2 = dump(f);
    cr_assert_str_eq(s1, s2);
    check_invariants(f);
    json_decref(j);
    free(s1);
    free(s2);
    cq_sim__engine_free(e);
    cq_sim__engine_free(f);
}

Test(sim_engine, same_seed_same_state)
{
    struct cq_sim__engine *a = random_engine(2, 10);
    struct cq_sim__engine *b = random_engine(2, 10);
    struct seq_counts x = {0};
    run_sequence(a, 99, 2000, false, &x);
    run_sequence(b, 99, 2000, false, &x);
    char *sa = dump(a);
    char *sb = dump(b);
    cr_assert_str_eq(sa, sb);
    free(sa);
    free(sb);
    cq_sim__engine_free(a);
    cq_sim__engine_free(b);
}

/* The order's selfTradePreventionMode survives --state (save, load); a file
 * from before the modes has none and loads as NONE; a bad one is named. */
Test(sim_rules, stp_mode_is_kept_across_save_and_load)
{
    struct cq_sim__engine *e = std_engine();
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "1");
    bid(&b, "29999.99", "1");
    struct cq_sim__order_req r = limit(0, SIM_BUY, SIM_GTC, "0.001", "29000.00");
    r.stp = SIM_STP_EXPIRE_BOTH;
    struct placed p = place_ok(e, r, &b, 1);
    cr_expect_eq(p.o.stp, SIM_STP_EXPIRE_BOTH);
    json_t *saved = cq_sim__engine_save(e);
    cr_assert_not_null(saved);
    struct cq_sim__engine *e2 = std_engine();
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(e2, saved, &err), 0, "%s", err.message);
    struct cq_sim__order got;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e2, 0, p.o.order_id, NULL, &got, &rej), 0);
    cr_expect_eq(got.stp, SIM_STP_EXPIRE_BOTH);
    json_t *o0 = json_array_get(json_object_get(saved, "orders"), 0);
    json_object_del(o0, "stp");
    cr_assert_eq(cq_sim__engine_load(e2, saved, &err), 0, "%s", err.message);
    cr_assert_eq(cq_sim__engine_get_order(e2, 0, p.o.order_id, NULL, &got, &rej), 0);
    cr_expect_eq(got.stp, SIM_STP_NONE);
    json_object_set_new(o0, "stp", json_string("DECREMENT"));
    cr_expect_eq(cq_sim__engine_load(e2, saved, &err), -CQ_EPARSE);
    cr_expect(strstr(err.message, "stp") != NULL, "%s", err.message);
    json_decref(saved);
    cq_sim__engine_free(e2);
    cq_sim__engine_free(e);
}

/* ---- the queue model (issue 19) --------------------------------------------------------- */

static struct cq_sim__engine *queue_engine(enum cq_sim__queue_model model)
{
    struct cq_sim__engine_config cfg;
    std_config(&cfg);
    std_balances[0].free = D("1000000");
    cfg.queue_model = model;
    struct cq_err err = {0};
    struct cq_sim__engine *e = cq_sim__engine_new(&cfg, &err);
    cr_assert_not_null(e, "%s", err.message);
    return e;
}

static cq_dec ahead_of(const struct cq_sim__engine *e, uint64_t order_id)
{
    cq_dec a = CQ_DEC_ZERO;
    cr_assert(cq_sim__engine_queue_ahead(e, order_id, &a), "order %" PRIu64 " has no queue place",
              order_id);
    return a;
}

/* A sell aggressor (the buyer was the maker) of qty at price. */
static size_t sold(struct cq_sim__engine *e, const struct book *b, const char *price,
                   const char *qty, int64_t t)
{
    return cq_sim__engine_on_trade(e, BTC, &b->v, D(price), D(qty), true, t);
}

/* hftbacktest's risk-averse rule, step by step: the order joins behind the
 * 2 BTC displayed at its price; trades at its price eat the queue ahead
 * first; a buyer-initiated trade never fills a BUY; the level growing does
 * not move it back, the level shrinking below the queue ahead moves it up;
 * only what passes the queue fills it, and a trade through its price fills
 * it up to the trade's quantity. Under the old model (none) the first
 * trade at its price fills it at once. */
Test(sim_engine, queue_conservative_joins_behind_the_displayed_quantity)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    bid(&b, "29999.00", "2");
    ask(&b, "30001.00", "1");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.5", "29999.00"), &b, 1);
    cr_assert_eq(p.o.status, SIM_NEW);
    assert_dec(ahead_of(e, p.o.order_id), "2");
    cr_assert_eq(cq_sim__engine_on_book(e, BTC, &b.v, 2), 0);
    cr_assert_eq(sold(e, &b, "29999.00", "1.5", 3), 0);
    assert_dec(ahead_of(e, p.o.order_id), "0.5");
    /* a buyer-initiated trade at our price took from the asks, not from us */
    cr_assert_eq(cq_sim__engine_on_trade(e, BTC, &b.v, D("29999.00"), D("0.3"), false, 4), 0);
    assert_dec(ahead_of(e, p.o.order_id), "0.5");
    b.bids[0].qty = D("3"); /* orders joined behind us */
    cr_assert_eq(cq_sim__engine_on_book(e, BTC, &b.v, 5), 0);
    assert_dec(ahead_of(e, p.o.order_id), "0.5");
    b.bids[0].qty = D("0.2"); /* the queue ahead cannot exceed the level */
    cr_assert_eq(cq_sim__engine_on_book(e, BTC, &b.v, 6), 0);
    assert_dec(ahead_of(e, p.o.order_id), "0.2");
    cr_assert_eq(sold(e, &b, "29999.00", "0.4", 7), 1);
    assert_dec(executed(e, p.o.order_id), "0.2");     /* 0.4 less the 0.2 ahead */
    cr_assert_eq(sold(e, &b, "29998.00", "1", 8), 1); /* through our price */
    assert_dec(executed(e, p.o.order_id), "0.5");
    check_invariants(e);
    cq_sim__engine_free(e);

    /* the old model fills on the first touch, whatever is queued ahead */
    e = queue_engine(SIM_QUEUE_NONE);
    p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.5", "29999.00"), &b, 1);
    cr_assert_eq(sold(e, &b, "29999.00", "1.5", 3), 1);
    assert_dec(executed(e, p.o.order_id), "0.5");
    cq_sim__engine_free(e);
}

/* Our orders share one trade in price-time priority: the better-priced
 * order first, then those at the trade's price oldest first, each behind
 * the public queue ahead of it; never more than the trade's quantity in
 * all. */
Test(sim_engine, queue_one_trade_is_shared_in_price_time_priority)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    bid(&b, "29999.00", "1");
    ask(&b, "30002.00", "1");
    struct placed hi = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.3", "30000.00"), &b, 1);
    struct placed a1 = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.4", "29999.00"), &b, 2);
    struct placed a2 = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.4", "29999.00"), &b, 3);
    assert_dec(ahead_of(e, hi.o.order_id), "0"); /* it improved the best bid */
    assert_dec(ahead_of(e, a1.o.order_id), "1");
    assert_dec(ahead_of(e, a2.o.order_id), "1");
    /* 1.6 sold at 29999: 0.3 to `hi`, then 1 public ahead of a1, then a1
     * gets the 0.3 left; a2 is behind a1 and gets nothing */
    cr_assert_eq(sold(e, &b, "29999.00", "1.6", 4), 2);
    assert_dec(executed(e, hi.o.order_id), "0.3");
    assert_dec(executed(e, a1.o.order_id), "0.3");
    assert_dec(executed(e, a2.o.order_id), "0");
    assert_dec(ahead_of(e, a2.o.order_id), "0");
    cr_assert_eq(sold(e, &b, "29999.00", "0.5", 5), 2);
    assert_dec(executed(e, a1.o.order_id), "0.4");
    assert_dec(executed(e, a2.o.order_id), "0.4");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* Issue 19's defect: a bid at the ask got filled again from the same
 * displayed liquidity on every market step (twice per trade). Now a level
 * we took from offers only what it shows beyond what we took (NET), and
 * trades on the other side never fill us. */
Test(sim_engine, queue_a_bid_at_the_ask_fills_only_from_new_liquidity)
{
    static const char *const ask_qty[] = {"1.2", "1.1", "1.2", "1.15", "1.2"};
    cq_dec got[2];
    for (int m = 0; m < 2; m++) {
        struct cq_sim__engine *e = queue_engine(m == 0 ? SIM_QUEUE_CONSERVATIVE : SIM_QUEUE_NONE);
        struct book b;
        book_init(&b);
        bid(&b, "29999.00", "1");
        ask(&b, "30000.00", "1");
        struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "5", "30000.00"), &b, 1);
        assert_dec(p.o.executed_qty, "1");
        for (size_t i = 0; i < CQ_ARRAY_LEN(ask_qty); i++) {
            b.asks[0].qty = D(ask_qty[i]);
            /* someone buys 0.1 at the ask, then the book shows the level */
            (void)cq_sim__engine_on_trade(e, BTC, &b.v, D("30000.00"), D("0.1"), false,
                                          2 + (int64_t)i);
            (void)cq_sim__engine_on_book(e, BTC, &b.v, 2 + (int64_t)i);
            (void)cq_sim__engine_on_book(e, BTC, &b.v, 2 + (int64_t)i);
        }
        got[m] = executed(e, p.o.order_id);
        check_invariants(e);
        cq_sim__engine_free(e);
    }
    assert_dec(got[0], "1.2"); /* 1 on entry, 0.2 more sellers at 30000 */
    assert_dec(got[1], "5");   /* the old model sold the same level again and again */
}

/* Depletion under the queue models (refill NET): a second MARKET order
 * right after the first gets an equal or worse price; the level offers
 * again only what it shows beyond what we took. */
Test(sim_engine, queue_swept_level_is_never_offered_again_unchanged)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "1");
    ask(&b, "30001.00", "1");
    struct placed m1 = place_ok(e, market(BTC, SIM_BUY, "1"), &b, 1);
    struct placed m2 = place_ok(e, market(BTC, SIM_BUY, "1"), &b, 2);
    assert_dec(m1.fills[0].price, "30000");
    assert_dec(m2.fills[0].price, "30001");
    b.asks[0].qty = D("0.9"); /* the level shrank: still nothing for us */
    struct placed m3 = place_ok(e, market(BTC, SIM_BUY, "0.1"), &b, 3);
    cr_assert_eq(m3.o.status, SIM_EXPIRED);
    b.asks[0].qty = D("1.5"); /* 0.5 more than we took */
    struct placed m4 = place_ok(e, market(BTC, SIM_BUY, "1"), &b, 4);
    assert_dec(m4.o.executed_qty, "0.5");
    assert_dec(m4.fills[0].price, "30000");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* hftbacktest's ProbQueueModel with f(x) = x^3: a decrease not explained
 * by trades comes from ahead with probability f(front)/(f(front)+f(back)).
 * Level 10, ahead 10: 4 cancelled, back 0, so all from ahead: 6. Level
 * grows to 16 (behind us): still 6. Shrinks to 12: front 6, back 10,
 * p = 1000/1216 = 0.822368 (millionths, down), ahead = 6 - 0.177632 * 4 =
 * 5.289472. The conservative model keeps 6. */
Test(sim_engine, queue_probabilistic_estimate_follows_hftbacktest)
{
    cq_dec want[2] = {D("5.289472"), D("6")};
    for (int m = 0; m < 2; m++) {
        struct cq_sim__engine *e =
            queue_engine(m == 0 ? SIM_QUEUE_PROBABILISTIC : SIM_QUEUE_CONSERVATIVE);
        struct book b;
        book_init(&b);
        bid(&b, "29999.00", "10");
        ask(&b, "30001.00", "1");
        struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.5", "29999.00"), &b, 1);
        assert_dec(ahead_of(e, p.o.order_id), "10");
        b.bids[0].qty = D("6");
        (void)cq_sim__engine_on_book(e, BTC, &b.v, 2);
        assert_dec(ahead_of(e, p.o.order_id), "6");
        b.bids[0].qty = D("16");
        (void)cq_sim__engine_on_book(e, BTC, &b.v, 3);
        assert_dec(ahead_of(e, p.o.order_id), "6");
        b.bids[0].qty = D("12");
        (void)cq_sim__engine_on_book(e, BTC, &b.v, 4);
        cq_dec a = ahead_of(e, p.o.order_id);
        cr_assert(cq_dec_cmp(a, want[m]) == 0, "model %d: ahead %s, want %s", m, S(a), S(want[m]));
        /* a trade of 1 at the level: the book's next decrease of 1 is that
         * trade, not a cancel */
        cr_assert_eq(sold(e, &b, "29999.00", "1", 5), 0);
        b.bids[0].qty = D("11");
        (void)cq_sim__engine_on_book(e, BTC, &b.v, 6);
        cq_dec after = want[m];
        cr_assert_eq(cq_dec_sub(after, D("1"), &after), 0);
        a = ahead_of(e, p.o.order_id);
        cr_assert(cq_dec_cmp(a, after) == 0, "model %d: ahead %s after the trade, want %s", m, S(a),
                  S(after));
        cq_sim__engine_free(e);
    }
}

/* A triggered stop joins the queue at its price behind what is displayed
 * there, and the trade that triggered it does not fill it. */
Test(sim_engine, queue_triggered_stop_joins_behind_the_level)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    bid(&b, "29990.00", "0.7");
    ask(&b, "30010.00", "1");
    b.v.last_price = D("30000.00");
    struct cq_sim__order_req r = limit(BTC, SIM_SELL, SIM_GTC, "0.1", "30010.00");
    r.type = SIM_TAKE_PROFIT_LIMIT;
    r.has_stop_price = true;
    r.stop_price = D("30005.00");
    struct placed p = place_ok(e, r, &b, 1);
    cr_assert(!p.o.is_working);
    /* a buyer lifts 0.5 at 30010: triggers; the ask level shows 1 */
    cr_assert_eq(cq_sim__engine_on_trade(e, BTC, &b.v, D("30010.00"), D("0.5"), false, 2), 0);
    assert_dec(ahead_of(e, p.o.order_id), "1");
    cr_assert_eq(cq_sim__engine_on_trade(e, BTC, &b.v, D("30010.00"), D("1.05"), false, 3), 1);
    assert_dec(executed(e, p.o.order_id), "0.05");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* Issue 19 "Proof": the queue invariant is checked inside the engine in
 * every build. What an order has seen trade at or through its price is
 * corrupted below what it already filled; the next fill stops the
 * engine, naming the order and the amounts. */
Test(sim_engine, a_broken_queue_invariant_stops_the_engine_in_a_release_build)
{
    cr_assert(built_with_ndebug, "tests/meson.build must build test_sim_engine with -DNDEBUG");
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    bid(&b, "29999.00", "0.1");
    ask(&b, "30001.00", "1");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "1", "29999.00"), &b, 1);
    cr_assert_eq(sold(e, &b, "29999.00", "0.3", 2), 1);
    assert_dec(executed(e, p.o.order_id), "0.2");
    cq_sim__engine_corrupt_queue(e, p.o.order_id, D("0"));

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* no Criterion calls in here */
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        (void)cq_sim__engine_on_trade(e, BTC, &b.v, D("29999.00"), D("0.1"), true, 3);
        _exit(3); /* the check is missing */
    }
    close(fds[1]);
    static char out[4096];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(out) && (r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0) {
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fds[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the engine went on with a broken queue invariant (exit status %d); stderr: %s",
              status, out);
    cr_assert_not_null(strstr(out, "\"event\":\"sim_invariant_broken\""), "%s", out);
    cr_assert_not_null(strstr(out, "queue: order 1 filled 0.30000000 as maker from public trades "
                                   "and 0.10000000 went to the queue ahead of it, but only "
                                   "0.10000000 traded at or through 29999.00000000"),
                       "%s", out);
    cq_sim__engine_free(e);
}

/* ---- self-trade prevention (issue 18) --------------------------------------------------- */

static struct cq_sim__order order_now(const struct cq_sim__engine *e, uint64_t id)
{
    struct cq_sim__order o;
    struct cq_sim__reject rej;
    cr_assert_eq(cq_sim__engine_get_order(e, BTC, id, NULL, &o, &rej), 0);
    return o;
}

/* Our SELL 0.5 rests at 30001, inside the public spread (29998 / 30002
 * x 1); a BUY 1 at 30002 meets it first (a better price than the public
 * ask). stp_faq.md: "EXPIRE_MAKER - This mode prevents a trade by
 * immediately expiring the potential maker order's remaining quantity."
 * The taker goes on to the public ask. */
static struct cq_sim__order_req stp_buy(enum cq_sim__stp mode)
{
    struct cq_sim__order_req r = limit(BTC, SIM_BUY, SIM_GTC, "1", "30002.00");
    r.stp = mode;
    return r;
}

static void stp_book(struct book *b)
{
    book_init(b);
    bid(b, "29998.00", "1");
    ask(b, "30002.00", "1");
}

Test(sim_engine, stp_expire_maker_expires_our_resting_order_and_the_taker_goes_on)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    struct placed mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "30001.00"), &b, 1);
    record(e);
    struct placed tk = place_ok(e, stp_buy(SIM_STP_EXPIRE_MAKER), &b, 2);
    cr_assert_eq(tk.o.status, SIM_FILLED);
    cr_assert_eq(tk.n, 1);
    assert_dec(tk.fills[0].price, "30002");
    cr_assert_str_eq(kinds(), "NXTP");
    cr_assert_eq(events[1].o.order_id, mk.o.order_id);
    cr_assert_eq(events[1].o.status, SIM_EXPIRED_IN_MATCH);
    cr_assert(events[1].has_prevented);
    cr_assert_eq(events[1].prevented.taker_order_id, tk.o.order_id);
    cr_assert_eq(events[1].prevented.maker_order_id, mk.o.order_id);
    assert_dec(events[1].prevented.maker_prevented_qty, "0.5");
    assert_dec(events[1].prevented.taker_prevented_qty, "0");
    assert_dec(events[1].prevented.match_qty, "0.5");
    assert_dec(events[1].prevented.price, "30001");
    struct cq_sim__order m = order_now(e, mk.o.order_id);
    cr_assert_eq(m.status, SIM_EXPIRED_IN_MATCH);
    cr_assert(m.prevented);
    cr_assert_eq(m.prevented_match_id, 0);
    assert_dec(m.prevented_qty, "0.5");
    size_t n = 0;
    const struct cq_sim__prevented_match *pm = cq_sim__engine_last_prevented(e, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(pm[0].match_id, 0);
    assert_bal(e, "BTC", "2.999", "0"); /* 2 + 1 bought - 0.001 fee; the 0.5 unlocked */
    check_invariants(e);
    /* the expired order survives a save and load */
    char *saved = dump(e);
    json_t *j = json_loads(saved, 0, NULL);
    struct cq_sim__engine *e2 = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct cq_err err = {0};
    cr_assert_eq(cq_sim__engine_load(e2, j, &err), 0, "%s", err.message);
    m = order_now(e2, mk.o.order_id);
    cr_assert_eq(m.status, SIM_EXPIRED_IN_MATCH);
    assert_dec(m.prevented_qty, "0.5");
    json_decref(j);
    free(saved);
    cq_sim__engine_free(e2);
    cq_sim__engine_free(e);
}

/* "EXPIRE_TAKER - This mode prevents a trade by immediately expiring the
 * taker order's remaining quantity." */
Test(sim_engine, stp_expire_taker_expires_the_incoming_order)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    struct placed mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "30001.00"), &b, 1);
    record(e);
    struct placed tk = place_ok(e, stp_buy(SIM_STP_EXPIRE_TAKER), &b, 2);
    cr_assert_eq(tk.o.status, SIM_EXPIRED_IN_MATCH);
    cr_assert_eq(tk.n, 0);
    cr_assert(tk.o.prevented);
    assert_dec(tk.o.prevented_qty, "1");
    cr_assert_str_eq(kinds(), "NX"); /* locked and released in one call: no balance change */
    cr_assert_eq(events[1].o.order_id, tk.o.order_id);
    cr_assert_eq(events[1].o.status, SIM_EXPIRED_IN_MATCH);
    cr_assert_eq(order_now(e, mk.o.order_id).status, SIM_NEW);
    assert_bal(e, "USDT", "1000000", "0");
    check_invariants(e);
    cq_sim__engine_free(e);
}

Test(sim_engine, stp_expire_both_expires_both)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    struct placed mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "30001.00"), &b, 1);
    record(e);
    struct placed tk = place_ok(e, stp_buy(SIM_STP_EXPIRE_BOTH), &b, 2);
    cr_assert_eq(tk.o.status, SIM_EXPIRED_IN_MATCH);
    cr_assert_eq(order_now(e, mk.o.order_id).status, SIM_EXPIRED_IN_MATCH);
    cr_assert_str_eq(kinds(), "NXXP");
    assert_dec(events[1].prevented.taker_prevented_qty, "1");
    assert_dec(events[1].prevented.maker_prevented_qty, "0.5");
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* "NONE - ... no orders will be expired, and the trade will occur." Our
 * BUY takes 0.5 from our own SELL (taker fill; the SELL fills as maker at
 * its price), then 0.5 from the public ask. */
Test(sim_engine, stp_none_trades_with_itself)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    struct placed mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "30001.00"), &b, 1);
    record(e);
    struct placed tk = place_ok(e, stp_buy(SIM_STP_NONE), &b, 2);
    cr_assert_eq(tk.o.status, SIM_FILLED);
    cr_assert_eq(tk.n, 2);
    assert_dec(tk.fills[0].price, "30001");
    assert_dec(tk.fills[0].qty, "0.5");
    cr_assert(!tk.fills[0].maker);
    assert_dec(tk.fills[1].price, "30002");
    struct cq_sim__order m = order_now(e, mk.o.order_id);
    cr_assert_eq(m.status, SIM_FILLED);
    assert_dec(m.cum_quote_qty, "15000.5");
    cr_assert_str_eq(kinds(), "NTTTP"); /* taker, maker, taker */
    cr_assert(events[2].fill.maker);
    size_t n = 9;
    (void)cq_sim__engine_last_prevented(e, &n);
    cr_assert_eq(n, 0);
    check_invariants(e);
    cq_sim__engine_free(e);
}

/* Price-time priority at one price: our SELL joined behind the 1 BTC the
 * book displayed at 30002; a BUY 1.5 at 30002 takes that 1 first, then
 * meets our order (EXPIRE_MAKER), then the rest of the level (none): 0.5
 * rests. Under the old model (none) our orders are not in the book a taker
 * walks, and STP never fires. */
Test(sim_engine, stp_public_quantity_ahead_of_our_order_trades_first)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    struct placed mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.4", "30002.00"), &b, 1);
    assert_dec(ahead_of(e, mk.o.order_id), "1");
    struct cq_sim__order_req r = limit(BTC, SIM_BUY, SIM_GTC, "1.5", "30002.00");
    r.stp = SIM_STP_EXPIRE_MAKER;
    struct placed tk = place_ok(e, r, &b, 2);
    cr_assert_eq(tk.n, 1);
    assert_dec(tk.fills[0].qty, "1");
    cr_assert_eq(tk.o.status, SIM_PARTIALLY_FILLED);
    cr_assert_eq(order_now(e, mk.o.order_id).status, SIM_EXPIRED_IN_MATCH);
    check_invariants(e);
    cq_sim__engine_free(e);

    e = queue_engine(SIM_QUEUE_NONE);
    mk = place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.4", "30001.00"), &b, 1);
    tk = place_ok(e, stp_buy(SIM_STP_EXPIRE_MAKER), &b, 2);
    cr_assert_eq(order_now(e, mk.o.order_id).status, SIM_NEW);
    cq_sim__engine_free(e);
}

/* A LIMIT_MAKER that would meet our own resting order would take: -2010
 * "Order would immediately match and take." (it never rests crossed). */
Test(sim_engine, stp_limit_maker_that_would_meet_our_own_order_is_rejected)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    stp_book(&b);
    (void)place_ok(e, limit(BTC, SIM_SELL, SIM_GTC, "0.5", "30001.00"), &b, 1);
    struct placed p = place(e, maker(BTC, SIM_BUY, "0.1", "30001.00"), &b, 2);
    cr_assert_eq(p.rc, -CQ_EVENUE);
    cr_assert_eq(p.rej.code, -2010);
    cr_assert_str_eq(p.rej.msg, "Order would immediately match and take.");
    p = place(e, maker(BTC, SIM_BUY, "0.1", "30000.00"), &b, 3); /* below it: rests */
    cr_assert_eq(p.rc, 0);
    cq_sim__engine_free(e);
}

/* Refill NET when the market model takes our fills off the level itself
 * (the simulator prints our taker fills and removes them from its
 * displayed book): the level then shows exactly what it showed less what we
 * took, and that is what it offers; not that less what we took again. */
Test(sim_engine, refill_net_does_not_take_our_fills_twice_when_the_book_already_did)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    ask(&b, "30000.00", "1");
    ask(&b, "30001.00", "1");
    struct placed m1 = place_ok(e, market(BTC, SIM_BUY, "0.4"), &b, 1);
    assert_dec(m1.o.executed_qty, "0.4");
    b.asks[0].qty = D("0.6"); /* the market took our 0.4 off itself */
    struct placed m2 = place_ok(e, market(BTC, SIM_BUY, "0.6"), &b, 2);
    cr_assert_eq(m2.n, 1);
    assert_dec(m2.fills[0].price, "30000");
    assert_dec(m2.fills[0].qty, "0.6");
    cq_sim__engine_free(e);
}

/* The state file has no queue position: a resting order loaded from it
 * rejoins behind what the next book shows at its price. The loader left
 * the position uninitialised (UBSan in CI: "load of value 190, which is not
 * a valid value for type 'bool'" under MALLOC_PERTURB_, in queue_on_book
 * after a simex restart). The allocation is perturbed here so that the test
 * fails on the old loader without the environment's help. */
Test(sim_engine, a_loaded_resting_order_rejoins_the_queue_at_the_next_book)
{
    struct cq_sim__engine *e = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct book b;
    book_init(&b);
    bid(&b, "29999.00", "2");
    ask(&b, "30001.00", "1");
    struct placed p = place_ok(e, limit(BTC, SIM_BUY, SIM_GTC, "0.5", "29999.00"), &b, 1);
    cr_assert_eq(p.o.status, SIM_NEW);
    json_t *saved = cq_sim__engine_save(e);
    cr_assert_not_null(saved);
    cq_sim__engine_free(e);

    /* dirty the heap the loader will likely get back */
    for (int i = 0; i < 64; i++) {
        void *junk = malloc(4096);
        cr_assert_not_null(junk);
        memset(junk, 0xbe, 4096);
        free(junk);
    }
    struct cq_sim__engine *e2 = queue_engine(SIM_QUEUE_CONSERVATIVE);
    struct cq_err err;
    cr_assert_eq(cq_sim__engine_load(e2, saved, &err), 0, "%s", err.message);
    json_decref(saved);
    cq_dec ahead;
    cr_expect_not(cq_sim__engine_queue_ahead(e2, p.o.order_id, &ahead),
                  "no queue position before a book shows the level");
    cr_assert_eq(cq_sim__engine_on_book(e2, BTC, &b.v, 2), 0);
    assert_dec(ahead_of(e2, p.o.order_id), "2");
    check_invariants(e2);
    cq_sim__engine_free(e2);
}
