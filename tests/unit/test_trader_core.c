/*
 * test_trader_core.c — the trader's decision core (server/trader/core.c,
 * include/cq/trader.h) driven by a fake venue: no network, no clock (the
 * test owns now_ms). Every action list the core returns, in every test,
 * goes through intent_violation(): a SEND_ORDER must follow, in the same
 * list, an allowed risk.decision and an order.intent with wait_durable for
 * the same client id.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/journal.h"
#include "cq/trader.h"

#define INFO_2024 CQ_SHARED_DIR "/data/exchangeInfo/binance-spot-exchangeInfo-2024-09-08.json"
#define DAY_MS 86400000LL
/* 2026-12-07 12:00:00 UTC */
#define T0 (1796601600000LL + DAY_MS / 2)

static cq_dec D(const char *s)
{
    cq_dec d = CQ_DEC_ZERO;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "cannot parse '%s'", s);
    return d;
}

static void expect_dec(cq_dec got, const char *want, const char *what)
{
    cr_expect_eq(cq_dec_cmp(got, D(want)), 0, "%s: got %s, want %s", what,
                 cq_dec_format(got, (char[CQ_DEC_STR_MAX]){0}, CQ_DEC_STR_MAX), want);
}

/* ---- the invariant: intent before send -------------------------------------------- */

static json_t *payload_json(const struct cq_trader_action *a)
{
    return json_loads(cq_trader_action_payload(a), 0, NULL);
}

/* NULL when every SEND_ORDER in the list follows an allowed risk.decision
 * and then a durable order.intent for its client id; else what is wrong. */
static const char *intent_violation(const struct cq_trader_actions *l)
{
    static char why[256];
    for (size_t k = 0; k < l->n; k++) {
        if (l->a[k].kind != CQ_TRADER_ACT_SEND_ORDER) {
            continue;
        }
        const char *cid = l->a[k].u.order.client_id;
        bool risk_ok = false, intent_ok = false;
        for (size_t j = 0; j < k; j++) {
            const struct cq_trader_action *a = &l->a[j];
            if (a->kind != CQ_TRADER_ACT_JOURNAL) {
                continue;
            }
            json_t *p = payload_json(a);
            if (p == NULL) {
                snprintf(why, sizeof(why), "action %zu: payload is not JSON", j);
                return why;
            }
            const char *pc = json_string_value(json_object_get(p, "client_order_id"));
            bool same = pc != NULL && strcmp(pc, cid) == 0;
            if (same && a->u.journal.type == CQ_REC_RISK_DECISION) {
                risk_ok = json_is_true(json_object_get(p, "allowed"));
                intent_ok = false; /* the intent must come after the decision */
            }
            if (same && a->u.journal.type == CQ_REC_ORDER_INTENT && risk_ok) {
                intent_ok = a->u.journal.wait_durable;
            }
            json_decref(p);
        }
        if (!risk_ok) {
            snprintf(why, sizeof(why), "SEND %s without an allowed risk.decision before it", cid);
            return why;
        }
        if (!intent_ok) {
            snprintf(why, sizeof(why), "SEND %s without a durable order.intent after the decision",
                     cid);
            return why;
        }
    }
    return NULL;
}

/* ---- the harness -------------------------------------------------------------------- */

struct rec {
    uint16_t type;
    char scope[32];
    char *payload;
    size_t len;
};

struct h {
    struct cq_trader_core *core;
    struct cq_trader_core_config cfg;
    int64_t now;
    struct cq_trader_actions out;
    struct rec recs[16384];
    size_t n_recs;
    unsigned sends_total;
};

static struct h *H;
static struct cq_trader_event EV; /* big: keep it off the stack */

static void default_cfg(struct cq_trader_core_config *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = CQ_MODE_PAPER;
    c->order_quote = D("100");
    c->entry_type = CQ_TRADER_MARKET;
    c->stop_loss_pct = D("2");
    c->take_profit_pct = D("4");
    c->insufficient_scale = D("0.5");
    c->insufficient_retries = 2;
    c->quarantine_ms = 900000;
    c->unknown_query_every_ms = 1000;
    c->reconcile_every_ms = 60000;
    c->poll_orders_every_ms = 2000;
    c->account_retry_min_ms = 500;
    c->account_retry_max_ms = 8000;
    c->exchange_info_every_ms = 3600000;
    c->risk.max_open_positions = 3;
    c->risk.max_position_notional = D("1000");
    c->risk.max_total_exposure = D("3000");
    c->risk.max_daily_loss = D("500");
    c->risk.max_orders_per_minute = 10;
}

static void h_new(void)
{
    H = calloc(1, sizeof(*H));
    cr_assert_not_null(H);
    default_cfg(&H->cfg);
    H->now = T0;
}

static void h_core(void)
{
    struct cq_err err = {0};
    H->core = cq_trader_core_new(&H->cfg, &err);
    cr_assert_not_null(H->core, "%s", err.message);
}

static void h_free(void)
{
    if (H == NULL) {
        return;
    }
    cq_trader_core_free(H->core);
    for (size_t i = 0; i < H->n_recs; i++) {
        free(H->recs[i].payload);
    }
    free(H);
    H = NULL;
}

static void collect(void)
{
    for (size_t i = 0; i < H->out.n; i++) {
        const struct cq_trader_action *a = &H->out.a[i];
        if (a->kind == CQ_TRADER_ACT_SEND_ORDER) {
            H->sends_total++;
        }
        if (a->kind != CQ_TRADER_ACT_JOURNAL) {
            continue;
        }
        cr_assert_lt(H->n_recs, CQ_ARRAY_LEN(H->recs));
        struct rec *r = &H->recs[H->n_recs++];
        r->type = a->u.journal.type;
        cq_strlcpy(r->scope, a->u.journal.scope, sizeof(r->scope));
        r->len = a->u.journal.len;
        r->payload = malloc(r->len + 1);
        memcpy(r->payload, cq_trader_action_payload(a), r->len + 1);
        cr_assert_eq(strlen(r->payload), r->len, "len does not match the payload");
    }
}

static void feed_ev(enum cq_trader_event_kind kind)
{
    EV.kind = kind;
    EV.now_ms = H->now;
    int rc = cq_trader_core_on_event(H->core, &EV, &H->out);
    cr_assert_eq(rc, 0, "on_event: %d", rc);
    const char *v = intent_violation(&H->out);
    cr_assert_null(v, "intent before send: %s", v);
    collect();
    memset(&EV, 0, sizeof(EV));
}

static size_t count(enum cq_trader_action_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < H->out.n; i++) {
        n += H->out.a[i].kind == kind;
    }
    return n;
}

static const struct cq_trader_action *find(enum cq_trader_action_kind kind)
{
    for (size_t i = 0; i < H->out.n; i++) {
        if (H->out.a[i].kind == kind) {
            return &H->out.a[i];
        }
    }
    return NULL;
}

/* The last record of that type in the last action list, parsed (caller decrefs). */
static json_t *rec_of(uint16_t type)
{
    json_t *r = NULL;
    for (size_t i = 0; i < H->out.n; i++) {
        if (H->out.a[i].kind == CQ_TRADER_ACT_JOURNAL && H->out.a[i].u.journal.type == type) {
            json_decref(r);
            r = payload_json(&H->out.a[i]);
        }
    }
    return r;
}

static const char *jget(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    cr_assert_not_null(s, "no string field %s", k);
    return s;
}

static struct cq_trader_status status(void)
{
    struct cq_trader_status st;
    cq_trader_core_status(H->core, &st);
    return st;
}

static const struct cq_trader_position *position(const char *symbol)
{
    const struct cq_trader_position *p;
    size_t n = cq_trader_core_positions(H->core, &p);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].symbol, symbol) == 0) {
            return &p[i];
        }
    }
    return NULL;
}

static const struct cq_trader_order *order(const char *cid)
{
    const struct cq_trader_order *o;
    size_t n = cq_trader_core_orders(H->core, &o);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(o[i].client_id, cid) == 0) {
            return &o[i];
        }
    }
    return NULL;
}

/* ---- the fake venue ----------------------------------------------------------------- */

static json_t *info_json;

static void symbol_info(const char *symbol)
{
    if (info_json == NULL) {
        json_error_t jerr;
        info_json = json_load_file(INFO_2024, 0, &jerr);
        cr_assert_not_null(info_json, "%s: %s", INFO_2024, jerr.text);
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(info_json, "symbols"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "symbol")), symbol) != 0) {
            continue;
        }
        struct cq_trader_symbol_info *si = &EV.u.symbol_info;
        cq_strlcpy(si->symbol, symbol, sizeof(si->symbol));
        cq_strlcpy(si->base, json_string_value(json_object_get(s, "baseAsset")), sizeof(si->base));
        cq_strlcpy(si->quote, json_string_value(json_object_get(s, "quoteAsset")),
                   sizeof(si->quote));
        si->trading = strcmp(json_string_value(json_object_get(s, "status")), "TRADING") == 0;
        struct cq_err err = {0};
        cr_assert_eq(cq_filters_from_json(s, &si->filters, &err), 0, "%s", err.message);
        feed_ev(CQ_TRADER_EV_SYMBOL_INFO);
        return;
    }
    cr_assert_fail("no %s in %s", symbol, INFO_2024);
}

static void account(const char *quote_free)
{
    EV.u.balances.n = 2;
    cq_strlcpy(EV.u.balances.items[0].asset, "USDT", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[0].free = D(quote_free);
    EV.u.balances.items[0].locked = D("0");
    cq_strlcpy(EV.u.balances.items[1].asset, "BTC", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[1].free = D("10");
    EV.u.balances.items[1].locked = D("0");
    feed_ev(CQ_TRADER_EV_ACCOUNT);
}

/* An account snapshot: quote free and one base asset's free balance. */
static void account_with(const char *usdt, const char *asset, const char *qty)
{
    EV.u.balances.n = 2;
    cq_strlcpy(EV.u.balances.items[0].asset, "USDT", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[0].free = D(usdt);
    EV.u.balances.items[0].locked = D("0");
    cq_strlcpy(EV.u.balances.items[1].asset, asset, CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[1].free = D(qty);
    EV.u.balances.items[1].locked = D("0");
    feed_ev(CQ_TRADER_EV_ACCOUNT);
}

/* RECOVERED -> exchangeInfo -> account -> openOrders (none) -> ready. */
static void start(void)
{
    feed_ev(CQ_TRADER_EV_RECOVERED);
    cr_assert_eq(count(CQ_TRADER_ACT_FETCH_EXCHANGE_INFO), 1);
    cr_assert_eq(status().reason, CQ_TRADER_LOADING_EXCHANGE_INFO);
    symbol_info("BTCUSDT");
    symbol_info("ETHUSDT");
    symbol_info("BNBUSDT");
    feed_ev(CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    cr_assert_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1);
    cr_assert_eq(status().reason, CQ_TRADER_AWAITING_BALANCE);
    account("10000");
    cr_assert_eq(count(CQ_TRADER_ACT_FETCH_OPEN_ORDERS), 1);
    cr_assert_eq(status().reason, CQ_TRADER_RECONCILING);
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    cr_assert_eq(status().reason, CQ_TRADER_READY_OK);
    cr_assert(status().ready);
    feed_ev(CQ_TRADER_EV_STREAM_UP);
}

static void ready(void)
{
    h_new();
    h_core();
    start();
}

static void sig_id(unsigned seed, char *out)
{
    snprintf(out, CQ_SIGNAL_ID_LEN + 1, "%016x%016x", seed * 2654435761u, seed + 17u);
}

/* A signal; returns its client id in cid. */
static void send_signal(const char *symbol, enum cq_side side, const char *ref, unsigned seed,
                        char *cid)
{
    struct cq_signal *s = &EV.u.signal;
    sig_id(seed, s->id);
    cq_strlcpy(s->symbol, symbol, sizeof(s->symbol));
    s->side = side;
    s->reference_price = D(ref);
    cq_trader_client_id_for_signal(s->id, cid);
    feed_ev(CQ_TRADER_EV_SIGNAL);
}

static void update(const char *cid, const char *symbol, enum cq_side side,
                   enum cq_trader_order_state state, const char *exec, const char *cum,
                   uint64_t trade_id, const char *last_price, const char *commission,
                   const char *asset)
{
    struct cq_trader_order_update *u = &EV.u.order;
    cq_strlcpy(u->symbol, symbol, sizeof(u->symbol));
    cq_strlcpy(u->client_id, cid, sizeof(u->client_id));
    u->order_id = 1000;
    u->side = side;
    u->type = CQ_TRADER_MARKET;
    u->state = state;
    u->executed_qty = D(exec);
    u->cum_quote = D(cum);
    u->trade_id = trade_id;
    u->last_price = D(last_price);
    u->commission = D(commission);
    cq_strlcpy(u->commission_asset, asset, sizeof(u->commission_asset));
    feed_ev(CQ_TRADER_EV_ORDER_UPDATE);
}

static void send_failed(const char *cid, enum cq_trader_send_outcome oc, int code, const char *msg,
                        bool was_query, int64_t retry_after_ms)
{
    cq_strlcpy(EV.u.send.client_id, cid, sizeof(EV.u.send.client_id));
    cq_strlcpy(EV.u.send.symbol, "BTCUSDT", sizeof(EV.u.send.symbol));
    EV.u.send.outcome = oc;
    EV.u.send.code = code;
    cq_strlcpy(EV.u.send.msg, msg, sizeof(EV.u.send.msg));
    EV.u.send.was_query = was_query;
    EV.u.send.retry_after_ms = retry_after_ms;
    feed_ev(CQ_TRADER_EV_SEND_FAILED);
}

static void mark(const char *symbol, const char *price)
{
    cq_strlcpy(EV.u.mark.symbol, symbol, sizeof(EV.u.mark.symbol));
    EV.u.mark.price = D(price);
    feed_ev(CQ_TRADER_EV_MARK_PRICE);
}

static void op(enum cq_trader_operator_cmd cmd, const char *symbol)
{
    EV.u.op.cmd = cmd;
    cq_strlcpy(EV.u.op.symbol, symbol, sizeof(EV.u.op.symbol));
    feed_ev(CQ_TRADER_EV_OPERATOR);
}

static void tick(int64_t advance_ms)
{
    H->now += advance_ms;
    feed_ev(CQ_TRADER_EV_TICK);
}

static void expect_refused(const char *filter);

static const char INSUFFICIENT[] = "Account has insufficient balance for requested action.";

/* A BTCUSDT market entry of 100 USDT at 50000, filled, fee 0.1 USDT. */
static void entry_filled(unsigned seed, char *cid)
{
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", seed, cid);
    cr_assert_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0.1", "USDT");
}

TestSuite(trader_core, .fini = h_free, .timeout = 30);

/* ---- the invariant helper itself ---------------------------------------------------- */

static void add_journal(struct cq_trader_actions *l, uint16_t type, bool durable,
                        const char *payload)
{
    struct cq_trader_action *a = &l->a[l->n++];
    memset(a, 0, sizeof(*a));
    a->kind = CQ_TRADER_ACT_JOURNAL;
    a->u.journal.type = type;
    a->u.journal.wait_durable = durable;
    cq_strlcpy(a->u.journal.payload, payload, sizeof(a->u.journal.payload));
    a->u.journal.len = strlen(payload);
}

static void add_send(struct cq_trader_actions *l, const char *cid)
{
    struct cq_trader_action *a = &l->a[l->n++];
    memset(a, 0, sizeof(*a));
    a->kind = CQ_TRADER_ACT_SEND_ORDER;
    cq_strlcpy(a->u.order.client_id, cid, sizeof(a->u.order.client_id));
}

Test(trader_core, invariant_helper_catches_every_violation)
{
    static struct cq_trader_actions l;
    const char *ok_risk = "{\"client_order_id\":\"cq1-a\",\"allowed\":true}";
    const char *no_risk = "{\"client_order_id\":\"cq1-a\",\"allowed\":false}";
    const char *intent = "{\"client_order_id\":\"cq1-a\"}";
    const char *other = "{\"client_order_id\":\"cq1-b\"}";

    l.n = 0; /* the good order */
    add_journal(&l, CQ_REC_RISK_DECISION, false, ok_risk);
    add_journal(&l, CQ_REC_ORDER_INTENT, true, intent);
    add_send(&l, "cq1-a");
    cr_expect_null(intent_violation(&l));

    l.n = 0; /* a bare send */
    add_send(&l, "cq1-a");
    cr_expect_not_null(intent_violation(&l));

    l.n = 0; /* refused by the gate */
    add_journal(&l, CQ_REC_RISK_DECISION, false, no_risk);
    add_journal(&l, CQ_REC_ORDER_INTENT, true, intent);
    add_send(&l, "cq1-a");
    cr_expect_not_null(intent_violation(&l));

    l.n = 0; /* intent not waited for */
    add_journal(&l, CQ_REC_RISK_DECISION, false, ok_risk);
    add_journal(&l, CQ_REC_ORDER_INTENT, false, intent);
    add_send(&l, "cq1-a");
    cr_expect_not_null(intent_violation(&l));

    l.n = 0; /* intent before the decision */
    add_journal(&l, CQ_REC_ORDER_INTENT, true, intent);
    add_journal(&l, CQ_REC_RISK_DECISION, false, ok_risk);
    add_send(&l, "cq1-a");
    cr_expect_not_null(intent_violation(&l));

    l.n = 0; /* another order's records */
    add_journal(&l, CQ_REC_RISK_DECISION, false, ok_risk);
    add_journal(&l, CQ_REC_ORDER_INTENT, true, other);
    add_send(&l, "cq1-a");
    cr_expect_not_null(intent_violation(&l));
}

/* ---- startup ---------------------------------------------------------------------- */

Test(trader_core, startup_waits_for_balance_with_exponential_backoff)
{
    h_new();
    h_core();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    feed_ev(CQ_TRADER_EV_RECOVERED);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_EXCHANGE_INFO), 1);
    cr_expect_eq(count(CQ_TRADER_ACT_JOURNAL), 1, "the checkpoint after recovery");
    symbol_info("BTCUSDT");
    feed_ev(CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    cr_assert_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1);
    int64_t want[] = {500, 1000, 2000, 4000, 8000, 8000};
    for (size_t i = 0; i < CQ_ARRAY_LEN(want); i++) {
        EV.failed = true;
        feed_ev(CQ_TRADER_EV_ACCOUNT);
        cr_expect_eq(status().reason, CQ_TRADER_AWAITING_BALANCE);
        tick(want[i] - 1);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 0, "retry %zu too early", i);
        tick(1);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1, "retry %zu after %lld ms", i,
                     (long long)want[i]);
    }
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_TRADER_REC_ORDER_REFUSED);
    cr_assert_not_null(r);
    cr_expect_str_eq(jget(r, "filter"), "trader_not_ready");
    cr_expect_str_eq(jget(r, "detail"), "awaiting_balance");
    json_decref(r);
    account("1000");
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    cr_expect(status().ready);
    /* not marked seen while not ready: the same signal goes through now */
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

/* ---- the happy path -------------------------------------------------------------------- */

Test(trader_core, entry_fill_exit_with_exact_pnl)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], xid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_assert_eq(H->out.n, 3, "risk.decision, order.intent, SEND");
    cr_expect_eq(H->out.a[0].u.journal.type, CQ_REC_RISK_DECISION);
    cr_expect_str_eq(H->out.a[0].u.journal.log_event, "risk_decision");
    cr_expect_eq(H->out.a[1].u.journal.type, CQ_REC_ORDER_INTENT);
    cr_expect(H->out.a[1].u.journal.wait_durable);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_expect_str_eq(s->u.order.client_id, cid);
    cr_expect_eq(strlen(cid), 36);
    cr_expect_eq(strncmp(cid, "cq1-", 4), 0);
    cr_expect_eq(s->u.order.side, CQ_SIDE_BUY);
    cr_expect_eq(s->u.order.type, CQ_TRADER_MARKET);
    expect_dec(s->u.order.quote_qty, "100", "quoteOrderQty");
    cr_expect(cq_dec_is_zero(s->u.order.qty));
    json_t *in = rec_of(CQ_REC_ORDER_INTENT);
    cr_expect_str_eq(jget(in, "quote_qty"), "100.00000000");
    cr_expect_str_eq(jget(in, "purpose"), "entry");
    cr_expect_eq(json_integer_value(json_object_get(in, "attempt")), 1);
    json_decref(in);
    cr_expect_eq(order(cid)->state, CQ_TRADER_OS_SENT);

    /* ack, then two partial fills, the second twice (a stream report and a query) */
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0", "0", 0, "0", "0", "");
    cr_expect_eq(order(cid)->state, CQ_TRADER_OS_OPEN);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.00100000", "50.00000000", 11, "50000",
           "0.05", "USDT");
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 12,
           "50000", "0.05", "USDT");
    json_t *f = rec_of(CQ_REC_ORDER_FILL);
    cr_expect(json_is_true(json_object_get(f, "final")));
    cr_expect_str_eq(jget(f, "position_qty"), "0.00200000");
    json_decref(f);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 12,
           "50000", "0.05", "USDT");
    cr_expect_eq(status().stale_updates_total, 1, "applied once");
    const struct cq_trader_position *p = position("BTCUSDT");
    cr_assert_not_null(p);
    expect_dec(p->qty, "0.002", "qty");
    expect_dec(p->avg_entry, "50000", "avg entry");
    expect_dec(p->cost, "100", "cost");
    expect_dec(p->fees, "0.1", "fees");
    expect_dec(p->realized_pnl, "-0.1", "realized after fees");
    cr_expect_str_eq(p->entry_client_id, cid);
    cr_expect_null(order(cid), "closed orders leave the table");
    mark("BTCUSDT", "50500");
    expect_dec(position("BTCUSDT")->unrealized_pnl, "1", "unrealized at 50500");

    send_signal("BTCUSDT", CQ_SIDE_SELL, "55000", 2, xid);
    s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s);
    cr_expect_eq(s->u.order.side, CQ_SIDE_SELL);
    expect_dec(s->u.order.qty, "0.002", "exit qty");
    update(xid, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "110.00000000", 13,
           "55000", "0.11", "USDT");
    p = position("BTCUSDT");
    expect_dec(p->qty, "0", "flat");
    expect_dec(p->realized_pnl, "9.79", "-0.1 + 10 - 0.11");
    expect_dec(p->fees, "0.21", "fees");
    struct cq_trader_status st = status();
    expect_dec(st.daily_realized_pnl, "9.79", "daily");
    cr_expect_eq(st.orders_sent_total, 2);
    cr_expect_eq(st.positions, 0);
    f = rec_of(CQ_REC_ORDER_FILL);
    cr_expect_str_eq(jget(f, "realized_pnl"), "9.79000000");
    cr_expect_str_eq(jget(f, "fee_quote"), "0.11");
    json_decref(f);
}

Test(trader_core, duplicate_signal_refused_even_after_the_order_closed)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_TRADER_REC_ORDER_REFUSED);
    cr_expect_str_eq(jget(r, "filter"), "duplicate_signal");
    json_decref(r);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0", "USDT");
    cr_expect_null(order(cid));
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    cr_expect_eq(status().duplicate_signals_total, 2);
    cr_expect_eq(H->sends_total, 1);
}

/* ---- unknown outcomes ---------------------------------------------------------------- */

Test(trader_core, unknown_outcome_is_only_queried_until_found)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_UNKNOWN, 0, "timeout", false, 0);
    cr_expect_eq(order(cid)->state, CQ_TRADER_OS_UNKNOWN);
    const struct cq_trader_action *q = find(CQ_TRADER_ACT_QUERY_ORDER);
    cr_assert_not_null(q, "queried at once");
    cr_expect_str_eq(q->u.ref.client_id, cid);
    cr_expect_eq(status().unknown_orders, 1);
    for (int i = 0; i < 5; i++) {
        tick(999);
        cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 0);
        cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
        tick(1);
        cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 1, "every unknown_query_every_ms");
        send_failed(cid, CQ_TRADER_SEND_UNKNOWN, 0, "timeout", true, 0);
        cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    }
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "the same signal is a duplicate");
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0", "USDT");
    cr_expect_null(order(cid));
    expect_dec(position("BTCUSDT")->qty, "0.002", "the fill found by the query");
    cr_expect_eq(H->sends_total, 1, "never sent twice");
}

Test(trader_core, unknown_outcome_not_found_resends_the_same_id)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_UNKNOWN, 0, "connection lost after send", false, 0);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    send_failed(cid, CQ_TRADER_SEND_NOT_FOUND, -2013, "Order does not exist.", true, 0);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s, "resent");
    cr_expect_str_eq(s->u.order.client_id, cid, "with the same id");
    json_t *in = rec_of(CQ_REC_ORDER_INTENT);
    cr_expect_eq(json_integer_value(json_object_get(in, "attempt")), 2);
    json_decref(in);
    const struct cq_trader_order *o;
    cr_expect_eq(cq_trader_core_orders(H->core, &o), 1, "one live order for the signal");
    cr_expect_eq(order(cid)->state, CQ_TRADER_OS_SENT);
    /* the exchange says it holds it already: learn it, do not send a third */
    send_failed(cid, CQ_TRADER_SEND_REJECTED, -2010, "Duplicate order sent.", false, 0);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 1);
    cr_expect_eq(H->sends_total, 2);
}

/* ---- insufficient balance, quarantine -------------------------------------------------- */

static void insufficient_down_to_quarantine(char *cid)
{
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    const char *want[] = {"50", "25"};
    for (int i = 0; i < 2; i++) {
        send_failed(cid, CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
        const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
        cr_assert_not_null(s, "retry %d", i + 1);
        cr_expect_str_eq(s->u.order.client_id, cid);
        expect_dec(s->u.order.quote_qty, want[i], "scaled quote");
    }
    send_failed(cid, CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "insufficient_retries = 2");
    json_t *q = rec_of(CQ_REC_QUARANTINE);
    cr_assert_not_null(q);
    cr_expect_str_eq(jget(q, "reason"), "insufficient_balance");
    cr_expect_eq(json_integer_value(json_object_get(q, "until_ms")), H->now + 900000);
    json_decref(q);
    cr_expect_null(order(cid));
    struct cq_trader_status st = status();
    cr_expect_eq(st.quarantined, 1);
    cr_expect_eq(st.reason, CQ_TRADER_SYMBOL_QUARANTINED);
    cr_expect(st.ready, "degraded, still ready");
    const char *sym, *reason;
    int64_t until;
    cr_expect_eq(cq_trader_core_quarantined(H->core, 0, &sym, &reason, &until), 1);
    cr_expect_str_eq(sym, "BTCUSDT");
    /* the quarantined symbol refuses, the others trade */
    char c2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 2, c2);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_REC_RISK_DECISION);
    cr_expect_str_eq(jget(r, "rule"), "symbol_quarantined");
    json_decref(r);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 3, c2);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

Test(trader_core, insufficient_balance_scales_down_then_quarantines_until_cleared)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    insufficient_down_to_quarantine(cid);
    op(CQ_TRADER_CMD_CLEAR_QUARANTINE, "BTCUSDT");
    json_t *u = rec_of(CQ_REC_UNQUARANTINE);
    cr_assert_not_null(u);
    cr_expect_str_eq(jget(u, "reason"), "operator");
    json_decref(u);
    cr_expect_eq(status().quarantined, 0);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 9, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

Test(trader_core, quarantine_expires_at_a_tick)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    insufficient_down_to_quarantine(cid);
    tick(900000 - 1);
    cr_expect_eq(status().quarantined, 1);
    tick(1);
    cr_expect_eq(status().quarantined, 0);
    json_t *u = rec_of(CQ_REC_UNQUARANTINE);
    cr_assert_not_null(u);
    cr_expect_str_eq(jget(u, "reason"), "expired");
    json_decref(u);
}

Test(trader_core, insufficient_balance_below_min_notional_quarantines_at_once)
{
    h_new();
    H->cfg.order_quote = D("8"); /* halved: 4 < NOTIONAL 5 */
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    cr_expect_eq(status().quarantined, 1);
    cr_expect_null(order(cid));
}

Test(trader_core, other_rejects_close_the_order)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_REJECTED, -1013, "Filter failure: NOTIONAL", false, 0);
    json_t *r = rec_of(CQ_REC_ORDER_REJECT);
    cr_expect_str_eq(jget(r, "state"), "rejected");
    cr_expect_eq(json_integer_value(json_object_get(r, "code")), -1013);
    json_decref(r);
    cr_expect_null(order(cid));
    cr_expect_eq(status().quarantined, 0);
}

/* ---- limits on the exchange's side: rate limits, bans, the journal ---------------------- */

Test(trader_core, rate_limited_send_goes_again_with_the_same_id_after_retry_after)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_RATE_LIMITED, -1003, "Too many requests", false, 5000);
    cr_expect_eq(order(cid)->state, CQ_TRADER_OS_INTENT);
    char c2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, c2);
    expect_refused("rate_limited");
    tick(4999);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    tick(1);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s);
    cr_expect_str_eq(s->u.order.client_id, cid);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, c2);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1, "refused while limited, not remembered");
}

Test(trader_core, banned_refuses_until_retry_after)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_BANNED, 0, "418", false, 60000);
    cr_expect_eq(status().reason, CQ_TRADER_EXCHANGE_BANNED);
    cr_expect(!status().ready);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, c2);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    tick(59999);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    tick(1);
    cr_expect_eq(status().reason, CQ_TRADER_READY_OK);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1, "the banned order goes again");
}

Test(trader_core, journal_failure_fails_the_order)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_JOURNAL_FAILED, 0, "fsync failed", false, 0);
    cr_expect_null(order(cid));
    cr_expect_eq(status().reason, CQ_TRADER_JOURNAL_UNAVAILABLE);
    json_t *r = rec_of(CQ_REC_ORDER_REJECT);
    cr_expect_str_eq(jget(r, "state"), "failed");
    json_decref(r);
}

/* ---- filters --------------------------------------------------------------------------- */

static void expect_refused(const char *filter)
{
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_TRADER_REC_ORDER_REFUSED);
    cr_assert_not_null(r, "no order.refused");
    cr_expect_str_eq(jget(r, "filter"), filter);
    json_decref(r);
}

Test(trader_core, limit_entry_price_snapped_to_tick_toward_the_passive_side)
{
    h_new();
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000.019", 1, cid);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s);
    expect_dec(s->u.order.price, "50000.01", "BUY price floors to the tick");
    expect_dec(s->u.order.qty, "0.00199", "100 / 50000.01 down to the step");
    cr_expect_eq(s->u.order.type, CQ_TRADER_LIMIT);
}

Test(trader_core, filter_refusals_are_journaled_and_not_sent)
{
    h_new();
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    H->cfg.order_quote = D("5");
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "0.001", 1, cid); /* below minPrice 0.01 */
    expect_refused("PRICE_FILTER");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "999999", 2, cid); /* 5 / 999999 < minQty 0.00001 */
    expect_refused("LOT_SIZE");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "0.5", 3, cid); /* 10 BTC at 0.5 = 5, ok; a sell: none */
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
    send_signal("ETHUSDT", CQ_SIDE_SELL, "3000", 4, cid);
    expect_refused("no_position");
    cr_expect_eq(status().filter_refusals_total, 3);
}

Test(trader_core, market_entry_below_min_notional_refused)
{
    h_new();
    H->cfg.order_quote = D("4.99");
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    expect_refused("NOTIONAL");
}

Test(trader_core, exit_rounds_down_and_reports_dust)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], xid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    /* fee in BTC: the position holds 0.002 - 0.0000015 */
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0.0000015", "BTC");
    const struct cq_trader_position *p = position("BTCUSDT");
    expect_dec(p->qty, "0.0019985", "qty net of the base fee");
    expect_dec(p->fees, "0.075", "fee at the fill price");
    expect_dec(p->cost, "99.925", "cost less the fee's base");
    send_signal("BTCUSDT", CQ_SIDE_SELL, "50000", 2, xid);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s);
    expect_dec(s->u.order.qty, "0.00199", "down to the step");
    update(xid, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00199000", "99.50000000", 2,
           "50000", "0", "USDT");
    expect_dec(position("BTCUSDT")->qty, "0.0000085", "dust left");
    char x2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_SELL, "50000", 3, x2);
    expect_refused("LOT_SIZE");
    json_t *r = rec_of(CQ_TRADER_REC_ORDER_REFUSED);
    cr_expect(strstr(jget(r, "detail"), "dust") != NULL, "%s", jget(r, "detail"));
    json_decref(r);
}

Test(trader_core, commissions_in_other_assets_convert_at_their_mark_or_are_reported)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0.0002", "BNB");
    json_t *f = rec_of(CQ_REC_ORDER_FILL);
    cr_expect(json_is_null(json_object_get(f, "fee_quote")));
    cr_expect(json_is_true(json_object_get(f, "fee_unconverted")));
    json_decref(f);
    cr_expect_eq(status().fees_unconverted_total, 1);
    mark("BNBUSDT", "500");
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, c2);
    update(c2, "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.03330000", "99.90000000", 2, "3000",
           "0.0002", "BNB");
    expect_dec(position("ETHUSDT")->fees, "0.1", "0.0002 BNB at 500");
}

/* ---- operator, risk ------------------------------------------------------------------ */

Test(trader_core, kill_switch_cancels_our_open_orders_and_refuses_everything)
{
    h_new();
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    h_core();
    start();
    char c1[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN], c3[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, c1);
    update(c1, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0", "0", 0, "0", "0", "");
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, c2);
    op(CQ_TRADER_CMD_KILL, "");
    cr_expect_eq(count(CQ_TRADER_ACT_CANCEL_ORDER), 2);
    cr_expect_eq(status().reason, CQ_TRADER_KILL_SWITCH);
    cr_expect(!status().ready);
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 3, c3);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_REC_RISK_DECISION);
    cr_expect_str_eq(jget(r, "rule"), "kill_switch");
    json_decref(r);
    update(c1, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_CANCELED, "0", "0", 0, "0", "0", "");
    r = rec_of(CQ_REC_ORDER_REJECT);
    cr_expect_str_eq(jget(r, "state"), "canceled");
    json_decref(r);
    cr_expect_null(order(c1));
    tick(10000);
    cr_expect_eq(count(CQ_TRADER_ACT_CANCEL_ORDER), 0, "each cancel once");
    op(CQ_TRADER_CMD_UNKILL, "");
    cr_expect_eq(status().reason, CQ_TRADER_READY_OK);
}

Test(trader_core, paused_refuses_entries_but_not_exits)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], xid[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    op(CQ_TRADER_CMD_PAUSE, "");
    cr_expect_eq(status().reason, CQ_TRADER_TRADING_PAUSED);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, xid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    send_signal("BTCUSDT", CQ_SIDE_SELL, "50000", 3, xid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

Test(trader_core, daily_loss_limit_resets_at_utc_midnight)
{
    h_new();
    H->cfg.risk.max_daily_loss = D("5");
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN], xid[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    send_signal("BTCUSDT", CQ_SIDE_SELL, "45000", 2, xid);
    update(xid, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "90.00000000", 2,
           "45000", "0", "USDT");
    struct cq_trader_status st = status();
    expect_dec(st.daily_realized_pnl, "-10.1", "-10 - fee 0.1");
    cr_expect_eq(st.reason, CQ_TRADER_DAILY_LOSS_LIMIT);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "45000", 3, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    json_t *r = rec_of(CQ_REC_RISK_DECISION);
    cr_expect_str_eq(jget(r, "rule"), "daily_loss_limit");
    json_decref(r);
    /* T0 is noon: 11:59:59.999 later is still the same UTC day */
    tick(DAY_MS / 2 - 1);
    cr_expect_eq(status().reason, CQ_TRADER_DAILY_LOSS_LIMIT);
    tick(1);
    st = status();
    expect_dec(st.daily_realized_pnl, "0", "a new UTC day");
    cr_expect_eq(st.reason, CQ_TRADER_READY_OK);
    expect_dec(position("BTCUSDT")->realized_pnl, "-10.1", "the total stays");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "45000", 4, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

Test(trader_core, max_orders_per_minute_counts_on_the_event_clock)
{
    h_new();
    H->cfg.risk.max_orders_per_minute = 2;
    H->cfg.risk.max_open_positions = 0;
    H->cfg.risk.max_total_exposure = D("0");
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 3, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    H->now += 60000;
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 4, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
}

Test(trader_core, entry_capped_by_free_balance_and_position_headroom)
{
    h_new();
    H->cfg.order_quote = D("600");
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    expect_dec(find(CQ_TRADER_ACT_SEND_ORDER)->u.order.quote_qty, "600", "first");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 2, cid);
    expect_dec(find(CQ_TRADER_ACT_SEND_ORDER)->u.order.quote_qty, "400",
               "max_position_notional 1000 - 600 in flight");
    account("250");
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 3, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "250 free - 1000 in flight: nothing left");
    expect_refused("insufficient_balance");
}

Test(trader_core, a_fill_spends_the_quote_before_the_balance_update_says_so)
{
    h_new();
    H->cfg.order_quote = D("600");
    H->cfg.risk.max_position_notional = D("0");
    H->cfg.risk.max_total_exposure = D("0");
    h_core();
    start();
    account("1000");
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.012", "600", 1, "50000", "0",
           "USDT");
    /* no balance update yet: 400 left, not 1000 */
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, cid);
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s);
    expect_dec(s->u.order.quote_qty, "400", "capped by what the fill left");
}

Test(trader_core, orders_table_full_refuses_with_a_reason)
{
    h_new();
    H->cfg.orders_max = 2;
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, cid);
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 3, cid);
    expect_refused("orders_table_full");
    cr_expect_eq(status().orders_table_full_total, 1);
}

/* ---- stop-loss, take-profit --------------------------------------------------------------- */

Test(trader_core, stop_loss_and_take_profit_trigger_once_through_the_same_path)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], sl[CQ_TRADER_CLIENT_ID_LEN], tp[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    mark("BTCUSDT", "49000.01");
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "above 2 %% below 50000");
    mark("BTCUSDT", "49000");
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s, "stop-loss at -2 %%");
    cq_trader_client_id_for_exit(cid, CQ_TRADER_STOP_LOSS, 0, sl);
    cr_expect_str_eq(s->u.order.client_id, sl);
    cr_expect_eq(s->u.order.side, CQ_SIDE_SELL);
    expect_dec(s->u.order.qty, "0.002", "the whole position");
    json_t *in = rec_of(CQ_REC_ORDER_INTENT);
    cr_expect_str_eq(jget(in, "purpose"), "stop_loss");
    json_decref(in);
    mark("BTCUSDT", "48000");
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "one exit at a time");
    update(sl, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "98.00000000", 2,
           "49000", "0", "USDT");
    expect_dec(position("BTCUSDT")->qty, "0", "closed");
    mark("BTCUSDT", "40000");
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "flat: nothing to stop");

    entry_filled(2, cid);
    mark("BTCUSDT", "51999.99");
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    mark("BTCUSDT", "52000");
    s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s, "take-profit at +4 %%");
    cq_trader_client_id_for_exit(cid, CQ_TRADER_TAKE_PROFIT, 0, tp);
    cr_expect_str_eq(s->u.order.client_id, tp);
    cr_expect_str_neq(tp, sl);
}

/* The daemon learns marks only by asking: on EV_TICK the core emits
 * FETCH_MARK for every symbol with a position, at most every mark_every_ms,
 * and none without one; the answer (EV_MARK_PRICE) values the position and
 * a price below the stop-loss sends the exit through the one path. */
Test(trader_core, marks_are_requested_for_positions_at_the_configured_cadence)
{
    h_new();
    H->cfg.mark_every_ms = 2000;
    h_core();
    start();
    for (int i = 0; i < 20; i++) {
        tick(200);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0, "no position, no mark");
    }
    char cid[CQ_TRADER_CLIENT_ID_LEN], eth[CQ_TRADER_CLIENT_ID_LEN], sl[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0, "only on ticks");
    tick(200);
    const struct cq_trader_action *m = find(CQ_TRADER_ACT_FETCH_MARK);
    cr_assert_not_null(m, "a position: its mark is asked at the next tick");
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1);
    cr_expect_str_eq(m->u.ref.symbol, "BTCUSDT");
    mark("BTCUSDT", "50500");
    expect_dec(position("BTCUSDT")->mark, "50500", "mark");
    expect_dec(position("BTCUSDT")->unrealized_pnl, "1", "unrealized at 50500");
    for (int i = 0; i < 9; i++) {
        tick(200);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0, "%d ms after the last", (i + 1) * 200);
    }
    tick(199);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0, "1999 ms after the last");
    tick(1);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1, "every mark_every_ms");

    /* a second position: both symbols, each at its own cadence */
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 2, eth);
    update(eth, "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.03330000", "99.90000000", 2, "3000",
           "0", "USDT");
    tick(200);
    m = find(CQ_TRADER_ACT_FETCH_MARK);
    cr_assert_not_null(m);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1);
    cr_expect_str_eq(m->u.ref.symbol, "ETHUSDT");
    tick(1800);
    m = find(CQ_TRADER_ACT_FETCH_MARK);
    cr_assert_not_null(m);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1);
    cr_expect_str_eq(m->u.ref.symbol, "BTCUSDT");
    cr_expect_eq(status().marks_requested_total, 4);

    /* the answer below the stop-loss (2 % under 50000): the exit, through
     * submit (feed_ev checks decision -> durable intent -> send) */
    mark("BTCUSDT", "48999.99");
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s, "stop-loss sent");
    cq_trader_client_id_for_exit(cid, CQ_TRADER_STOP_LOSS, 0, sl);
    cr_expect_str_eq(s->u.order.client_id, sl);
    cr_expect_eq(s->u.order.side, CQ_SIDE_SELL);
    expect_dec(s->u.order.qty, "0.002", "the whole position");
    json_t *r = rec_of(CQ_REC_RISK_DECISION);
    cr_assert_not_null(r);
    cr_expect_str_eq(jget(r, "purpose"), "stop_loss");
    json_decref(r);
    update(sl, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "98.00000000", 3,
           "49000", "0", "USDT");
    expect_dec(position("BTCUSDT")->qty, "0", "closed");
    for (int i = 0; i < 10; i++) {
        tick(1000);
        for (size_t k = 0; k < H->out.n; k++) {
            if (H->out.a[k].kind == CQ_TRADER_ACT_FETCH_MARK) {
                cr_expect_str_eq(H->out.a[k].u.ref.symbol, "ETHUSDT", "BTCUSDT is flat");
            }
        }
    }
}

Test(trader_core, marks_off_when_mark_every_ms_is_zero_or_requests_are_held)
{
    ready(); /* mark_every_ms 0: whoever feeds the core sends the marks */
    char cid[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    for (int i = 0; i < 10; i++) {
        tick(1000);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0);
    }
    h_free();
    h_new();
    H->cfg.mark_every_ms = 500;
    h_core();
    start();
    entry_filled(1, cid);
    tick(500);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 2, c2);
    send_failed(c2, CQ_TRADER_SEND_BANNED, -1003, "banned", false, 5000);
    for (int i = 0; i < 9; i++) {
        tick(500);
        cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 0, "no request while banned");
    }
    tick(600);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_MARK), 1, "after the ban");
}

/* A stop-loss refused for a reason that lasts (here a quarantine until the
 * operator clears it) is tried again after 1 s, then 2, 4, … up to 10 min:
 * with a mark every 2 s the journal gets a few refusals an hour, not one
 * per mark; clearing the quarantine lets the next mark send the stop. */
Test(trader_core, refused_stop_loss_backs_off_until_the_cause_goes)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], sl[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, cid);
    tick(60000); /* periodic reconcile: a snapshot without the BTC */
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    account_with("10000", "BTC", "0");
    cr_assert_eq(status().quarantined, 1);
    unsigned refusals = 0;
    int64_t at[16];
    int64_t t0 = H->now;
    for (int i = 0; i < 1800; i++) { /* an hour of marks every 2 s */
        H->now += 2000;
        mark("BTCUSDT", "49000");
        cr_assert_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
        json_t *r = rec_of(CQ_REC_RISK_DECISION);
        if (r != NULL) {
            cr_expect_str_eq(jget(r, "rule"), "symbol_quarantined");
            if (refusals < CQ_ARRAY_LEN(at)) {
                at[refusals] = H->now - t0;
            }
            refusals++;
            json_decref(r);
        }
    }
    /* at 2 s, then after waits of 1, 2, 4, … 512 s, then 600 s: 15 in an hour */
    cr_expect_eq(refusals, 15, "refusals in an hour: %u", refusals);
    cr_expect_eq(at[0], 2000);
    cr_expect_eq(at[1], 4000, "1 s later, at the next mark");
    cr_expect_eq(at[2], 6000, "2 s later");
    cr_expect_eq(at[3], 10000, "4 s later");
    cr_expect_eq(at[4], 18000, "8 s later");
    op(CQ_TRADER_CMD_CLEAR_QUARANTINE, "BTCUSDT");
    H->now += 2000;
    mark("BTCUSDT", "49000");
    const struct cq_trader_action *s = find(CQ_TRADER_ACT_SEND_ORDER);
    cr_assert_not_null(s, "the stop goes at the next mark once the cause is gone");
    cq_trader_client_id_for_exit(cid, CQ_TRADER_STOP_LOSS, 0, sl);
    cr_expect_str_eq(s->u.order.client_id, sl);
}

/* ---- reconcile: adoption, foreign orders, intents never seen ---------------------------- */

Test(trader_core, reconcile_adopts_ours_leaves_foreign_and_fails_unseen_intents)
{
    h_new();
    h_core();
    /* the journal holds an intent that never reached the exchange */
    char lost[CQ_TRADER_CLIENT_ID_LEN], adopt[CQ_TRADER_CLIENT_ID_LEN];
    char sid[CQ_SIGNAL_ID_LEN + 1];
    sig_id(77, sid);
    cq_trader_client_id_for_signal(sid, lost);
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"client_order_id\":\"%s\",\"signal_id\":\"%s\",\"side\":\"BUY\",\"type\":"
             "\"MARKET\",\"qty\":\"0\",\"quote_qty\":\"100\",\"price\":\"0\",\"purpose\":"
             "\"entry\",\"attempt\":1,\"created_ms\":1,\"ms\":1}",
             lost, sid);
    cr_assert_eq(
        cq_trader_core_replay(H->core, CQ_REC_ORDER_INTENT, "BTCUSDT", payload, strlen(payload)),
        0);
    feed_ev(CQ_TRADER_EV_RECOVERED);
    symbol_info("BTCUSDT");
    feed_ev(CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    account("1000");
    /* openOrders: one of ours we do not know, one foreign */
    cq_trader_client_id_for_exit("cq1-00000000000000000000000000000000", CQ_TRADER_STOP_LOSS, 5,
                                 adopt);
    update(adopt, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_OPEN, "0", "0", 0, "0", "0", "");
    update("web_8d1e2f", "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0", "0", 0, "0", "0", "");
    cr_expect_not_null(order(adopt));
    cr_expect_eq(order(adopt)->purpose, CQ_TRADER_ADOPTED);
    cr_expect_null(order("web_8d1e2f"));
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    json_t *n = rec_of(CQ_REC_NOTE);
    cr_assert_not_null(n, "foreign orders reported");
    cr_expect_eq(json_integer_value(json_object_get(n, "count")), 1);
    json_decref(n);
    const struct cq_trader_action *q = find(CQ_TRADER_ACT_QUERY_ORDER);
    cr_assert_not_null(q, "the journaled intent not listed is queried");
    cr_expect_str_eq(q->u.ref.client_id, lost);
    cr_expect_eq(status().reason, CQ_TRADER_RECONCILING);
    send_failed(lost, CQ_TRADER_SEND_NOT_FOUND, -2013, "Order does not exist.", true, 0);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "not resent after a restart");
    json_t *r = rec_of(CQ_REC_ORDER_REJECT);
    cr_expect_str_eq(jget(r, "state"), "failed");
    json_decref(r);
    cr_expect_null(order(lost));
    struct cq_trader_status st = status();
    cr_expect_eq(st.reason, CQ_TRADER_READY_OK);
    cr_expect_eq(st.adopted_orders_total, 1);
    cr_expect_eq(st.foreign_open_orders, 1);
    cr_expect_eq(st.failed_intents_total, 1);
}

Test(trader_core, balance_below_position_quarantines_only_that_symbol)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 1, cid);
    update(cid, "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.03330000", "99.90000000", 1, "3000",
           "0", "USDT");
    tick(60000); /* periodic reconcile: openOrders + account */
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_OPEN_ORDERS), 1);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1);
    account("1000"); /* no ETH at all */
    json_t *q = rec_of(CQ_REC_QUARANTINE);
    cr_assert_not_null(q);
    cr_expect_str_eq(jget(q, "reason"), "balance_below_position");
    json_decref(q);
    cr_expect_eq(status().reconcile_drifts_total, 1);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 2, c2);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1, "the rest trades");
}

Test(trader_core, stream_down_polls_open_orders_and_a_gap_reconciles)
{
    h_new();
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0", "0", 0, "0", "0", "");
    tick(5000);
    cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 0, "the stream is up");
    feed_ev(CQ_TRADER_EV_STREAM_GAP);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_OPEN_ORDERS), 1, "a gap reconciles");
    cr_expect(!status().stream_up);
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE); /* nothing listed: it closed unseen */
    cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 1);
    cr_expect_eq(status().reconcile_drifts_total, 1);
    json_t *n = rec_of(CQ_REC_NOTE);
    cr_assert_not_null(n, "drift reported");
    cr_expect_str_eq(jget(n, "event"), "reconcile_drift");
    json_decref(n);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.001", "50", 0, "0", "0", "");
    tick(1999);
    cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 0);
    tick(1);
    cr_expect_eq(count(CQ_TRADER_ACT_QUERY_ORDER), 1, "polled every poll_orders_every_ms");
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00199", "99.50", 0, "0", "0", "");
    expect_dec(position("BTCUSDT")->qty, "0.00199", "fills learned by polling");
}

/* ---- restart: replay equals live ---------------------------------------------------- */

static void compare_cores(struct cq_trader_core *a, struct cq_trader_core *b)
{
    const struct cq_trader_position *pa, *pb;
    size_t na = cq_trader_core_positions(a, &pa), nb = cq_trader_core_positions(b, &pb);
    cr_assert_eq(na, nb, "positions %zu vs %zu", na, nb);
    for (size_t i = 0; i < na; i++) {
        const struct cq_trader_position *y = NULL;
        for (size_t j = 0; j < nb; j++) {
            if (strcmp(pb[j].symbol, pa[i].symbol) == 0) {
                y = &pb[j];
            }
        }
        cr_assert_not_null(y, "%s missing", pa[i].symbol);
        cr_expect_eq(cq_dec_cmp(pa[i].qty, y->qty), 0, "%s qty", y->symbol);
        cr_expect_eq(cq_dec_cmp(pa[i].avg_entry, y->avg_entry), 0, "%s avg", y->symbol);
        cr_expect_eq(cq_dec_cmp(pa[i].cost, y->cost), 0, "%s cost", y->symbol);
        cr_expect_eq(cq_dec_cmp(pa[i].realized_pnl, y->realized_pnl), 0, "%s pnl", y->symbol);
        cr_expect_eq(cq_dec_cmp(pa[i].fees, y->fees), 0, "%s fees", y->symbol);
        cr_expect_str_eq(pa[i].entry_client_id, y->entry_client_id);
    }
    const struct cq_trader_order *oa, *ob;
    na = cq_trader_core_orders(a, &oa);
    nb = cq_trader_core_orders(b, &ob);
    cr_assert_eq(na, nb, "orders %zu vs %zu", na, nb);
    for (size_t i = 0; i < na; i++) {
        const struct cq_trader_order *y = NULL;
        for (size_t j = 0; j < nb; j++) {
            if (strcmp(ob[j].client_id, oa[i].client_id) == 0) {
                y = &ob[j];
            }
        }
        cr_assert_not_null(y, "%s missing", oa[i].client_id);
        cr_expect_str_eq(oa[i].signal_id, y->signal_id);
        cr_expect_str_eq(oa[i].symbol, y->symbol);
        cr_expect_eq(oa[i].side, y->side);
        cr_expect_eq(oa[i].type, y->type);
        cr_expect_eq(oa[i].purpose, y->purpose);
        cr_expect_eq(oa[i].state, y->state, "%s state %d vs %d", y->client_id, oa[i].state,
                     y->state);
        cr_expect_eq(cq_dec_cmp(oa[i].qty, y->qty), 0);
        cr_expect_eq(cq_dec_cmp(oa[i].quote_qty, y->quote_qty), 0);
        cr_expect_eq(cq_dec_cmp(oa[i].price, y->price), 0);
        cr_expect_eq(cq_dec_cmp(oa[i].executed_qty, y->executed_qty), 0);
        cr_expect_eq(cq_dec_cmp(oa[i].cum_quote, y->cum_quote), 0);
        cr_expect_eq(oa[i].order_id, y->order_id);
        cr_expect_eq(oa[i].created_ms, y->created_ms);
    }
    struct cq_trader_status sa, sb;
    cq_trader_core_status(a, &sa);
    cq_trader_core_status(b, &sb);
    cr_expect_eq(cq_dec_cmp(sa.daily_realized_pnl, sb.daily_realized_pnl), 0, "daily pnl");
    cr_expect_eq(sa.quarantined, sb.quarantined);
    for (size_t i = 0; i < sa.quarantined; i++) {
        const char *s1, *s2, *r1, *r2;
        int64_t u1, u2;
        (void)cq_trader_core_quarantined(a, i, &s1, &r1, &u1);
        (void)cq_trader_core_quarantined(b, i, &s2, &r2, &u2);
        cr_expect_str_eq(s1, s2);
        cr_expect_str_eq(r1, r2);
        cr_expect_eq(u1, u2);
    }
}

/* A live scenario with something of everything: closed and open positions,
 * an open LIMIT order, an unknown one, a partial fill, a quarantine. */
static void scenario(void)
{
    char c[8][CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, c[0]);
    send_signal("BTCUSDT", CQ_SIDE_SELL, "51000", 2, c[1]);
    update(c[1], "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "102.00000000", 2,
           "51000", "0.1", "USDT");
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 3, c[2]);
    update(c[2], "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.01000000", "30.00000000", 3, "3000",
           "0.00001", "ETH");
    tick(31000); /* a checkpoint falls here */
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 4, c[3]);
    send_failed(c[3], CQ_TRADER_SEND_UNKNOWN, 0, "timeout", false, 0);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 5, c[4]);
    send_failed(c[4], CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
    send_failed(c[4], CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
    send_failed(c[4], CQ_TRADER_SEND_REJECTED, -2010, INSUFFICIENT, false, 0);
    update(c[2], "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.02000000", "60.00000000", 4, "3000",
           "0.01", "USDT");
}

static void replay_from(struct cq_trader_core *into, size_t first)
{
    for (size_t i = first; i < H->n_recs; i++) {
        const struct rec *r = &H->recs[i];
        int rc = cq_trader_core_replay(into, r->type, r->scope, r->payload, r->len);
        cr_assert_eq(rc, 0, "record %zu (type %u) %s: %d", i, r->type, r->payload, rc);
    }
}

Test(trader_core, restart_by_replay_equals_the_live_state)
{
    ready();
    scenario();
    struct cq_err err = {0};
    struct cq_trader_core *b = cq_trader_core_new(&H->cfg, &err);
    cr_assert_not_null(b);
    replay_from(b, 0);
    compare_cores(H->core, b);
    /* and from the newest checkpoint only, as the shell does */
    size_t last = 0;
    for (size_t i = 0; i < H->n_recs; i++) {
        if (H->recs[i].type == CQ_TRADER_REC_TRADER_CHECKPOINT) {
            last = i;
        }
    }
    cr_assert_gt(last, 10, "a checkpoint inside the scenario");
    struct cq_trader_core *c = cq_trader_core_new(&H->cfg, &err);
    cr_assert_not_null(c);
    replay_from(c, last);
    compare_cores(H->core, c);
    /* a replayed duplicate is still refused after the restart */
    cq_trader_core_free(H->core);
    H->core = c;
    cq_trader_core_free(b);
    feed_ev(CQ_TRADER_EV_RECOVERED);
    symbol_info("BTCUSDT");
    symbol_info("ETHUSDT");
    symbol_info("BNBUSDT");
    feed_ev(CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    account("10000");
    char cid[CQ_TRADER_CLIENT_ID_LEN], eth[CQ_TRADER_CLIENT_ID_LEN], bnb[CQ_TRADER_CLIENT_ID_LEN];
    char sid[CQ_SIGNAL_ID_LEN + 1];
    sig_id(3, sid);
    cq_trader_client_id_for_signal(sid, eth);
    sig_id(4, sid);
    cq_trader_client_id_for_signal(sid, bnb);
    update(eth, "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.02000000", "60.00000000", 4, "3000",
           "0.01", "USDT");
    cr_expect_eq(count(CQ_TRADER_ACT_JOURNAL), 0, "nothing new: fills and fee applied once");
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    const struct cq_trader_action *q = find(CQ_TRADER_ACT_QUERY_ORDER);
    cr_assert_not_null(q);
    cr_expect_str_eq(q->u.ref.client_id, bnb, "the unknown order is queried");
    cr_expect_eq(status().reason, CQ_TRADER_RECONCILING);
    send_failed(bnb, CQ_TRADER_SEND_NOT_FOUND, -2013, "Order does not exist.", true, 0);
    cr_expect_eq(status().reason, CQ_TRADER_SYMBOL_QUARANTINED, "ready, BTCUSDT quarantined");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    cr_expect_eq(status().duplicate_signals_total, 1);
}

Test(trader_core, replay_ignores_other_writers_and_refuses_after_recovery)
{
    h_new();
    h_core();
    const char *p = "{\"anything\":1}";
    cr_expect_eq(cq_trader_core_replay(H->core, CQ_REC_CONFIG_LOADED, "global", p, strlen(p)), 0);
    cr_expect_eq(cq_trader_core_replay(H->core, CQ_REC_ORDER_INTENT, "BTCUSDT", "{", 1),
                 -CQ_EPARSE);
    feed_ev(CQ_TRADER_EV_RECOVERED);
    cr_expect_eq(cq_trader_core_replay(H->core, CQ_REC_ORDER_ACK, "BTCUSDT", p, strlen(p)),
                 -CQ_ESTATE);
}

/* ---- the balance check waits for unresolved orders (issue 11) ------------------------- */

static size_t records_since(size_t first, uint16_t type)
{
    size_t n = 0;
    for (size_t i = first; i < H->n_recs; i++) {
        n += H->recs[i].type == type;
    }
    return n;
}

/* The crash test's after_send: a SELL exit was sent and filled by the
 * exchange, the daemon died before handling the answer. The restarted core
 * sees the sale in the balances before it knows the order's outcome: it
 * must query the order, apply its fill, and only then compare (it used to
 * quarantine the symbol as balance_below_position at the account snapshot). */
Test(trader_core, restart_after_send_resolves_the_order_before_comparing_balances)
{
    ready();
    char buy[CQ_TRADER_CLIENT_ID_LEN], sell[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("ETHUSDT", CQ_SIDE_BUY, "3000", 1, buy);
    update(buy, "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.03330000", "99.90000000", 1, "3000",
           "0", "USDT");
    send_signal("ETHUSDT", CQ_SIDE_SELL, "3000", 2, sell);
    cr_assert_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1);
    /* SIGKILL here: the journal ends with the SELL's durable intent */
    struct cq_err err = {0};
    struct cq_trader_core *b = cq_trader_core_new(&H->cfg, &err);
    cr_assert_not_null(b, "%s", err.message);
    replay_from(b, 0);
    cq_trader_core_free(H->core);
    H->core = b;
    cr_assert_not_null(order(sell));
    cr_expect_eq(order(sell)->state, CQ_TRADER_OS_SENT);
    expect_dec(position("ETHUSDT")->qty, "0.0333", "the journal's position");
    size_t first = H->n_recs;

    feed_ev(CQ_TRADER_EV_RECOVERED);
    symbol_info("BTCUSDT");
    symbol_info("ETHUSDT");
    feed_ev(CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    account_with("10000.1", "ETH", "0"); /* the exchange sold it all */
    cr_expect_eq(status().quarantined, 0, "compared before the SELL was resolved");
    cr_expect_eq(status().reason, CQ_TRADER_RECONCILING);
    cr_assert_eq(count(CQ_TRADER_ACT_FETCH_OPEN_ORDERS), 1);
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE); /* not listed: it is closed */
    const struct cq_trader_action *q = find(CQ_TRADER_ACT_QUERY_ORDER);
    cr_assert_not_null(q, "the journaled SELL is queried by its client id");
    cr_expect_str_eq(q->u.ref.client_id, sell);
    cr_expect_eq(status().quarantined, 0);
    cr_expect_eq(status().reason, CQ_TRADER_RECONCILING, "until the query answers");
    /* the query's answer, with its trade (myTrades) */
    update(sell, "ETHUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.03330000", "100.00000000", 7,
           "3003.003", "0.1", "USDT");
    expect_dec(position("ETHUSDT")->qty, "0", "the sale applied");
    struct cq_trader_status st = status();
    cr_expect_eq(st.reason, CQ_TRADER_READY_OK, "ready, nothing quarantined (reason %d)",
                 (int)st.reason);
    cr_expect_eq(st.quarantined, 0);
    cr_expect_eq(st.reconcile_drifts_total, 0);
    cr_expect_eq(records_since(first, CQ_REC_QUARANTINE), 0);
    cr_expect_eq(H->sends_total, 2, "nothing sent again");
}

/* The same while ready: a periodic snapshot that arrives while a SELL's
 * outcome is unknown waits for the query; a shortfall on a snapshot that a
 * later fill moved past is confirmed on a fresh snapshot, and a real one
 * still quarantines. */
Test(trader_core, balance_check_waits_for_unresolved_orders_and_confirms_stale_shortfalls)
{
    ready();
    char c1[CQ_TRADER_CLIENT_ID_LEN], c2[CQ_TRADER_CLIENT_ID_LEN], x1[CQ_TRADER_CLIENT_ID_LEN];
    entry_filled(1, c1); /* BTCUSDT 0.002 */
    send_signal("BTCUSDT", CQ_SIDE_SELL, "50000", 2, x1);
    send_failed(x1, CQ_TRADER_SEND_UNKNOWN, 0, "timeout", false, 0);
    tick(60000);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1, "periodic reconcile");
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    account_with("10000", "BTC", "0"); /* the SELL filled */
    cr_expect_eq(status().quarantined, 0, "the SELL is unresolved: the check waits");
    update(x1, "BTCUSDT", CQ_SIDE_SELL, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 2,
           "50000", "0", "USDT");
    cr_expect_eq(status().quarantined, 0);
    expect_dec(position("BTCUSDT")->qty, "0", "flat");

    /* a BUY unresolved at the snapshot, filled after it */
    entry_filled(3, c1); /* 0.002 again */
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 4, c2);
    send_failed(c2, CQ_TRADER_SEND_UNKNOWN, 0, "timeout", false, 0);
    tick(60000);
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    account_with("9800", "BTC", "0.002");
    update(c2, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 4,
           "50000", "0", "USDT");
    expect_dec(position("BTCUSDT")->qty, "0.004", "two entries");
    cr_expect_eq(status().quarantined, 0, "a snapshot older than the fill proves nothing");
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 1, "a fresh snapshot is asked for");
    cr_expect_eq(status().balance_rechecks_total, 1);
    account_with("9700", "BTC", "0.004");
    cr_expect_eq(status().quarantined, 0, "the fresh snapshot agrees");
    tick(1000);
    cr_expect_eq(count(CQ_TRADER_ACT_FETCH_ACCOUNT), 0, "asked once");

    /* a real shortfall on a snapshot no fill moved past */
    tick(60000);
    feed_ev(CQ_TRADER_EV_OPEN_ORDERS_DONE);
    size_t first = H->n_recs;
    account_with("9700", "BTC", "0.003");
    cr_expect_eq(records_since(first, CQ_REC_QUARANTINE), 1);
    json_t *qr = rec_of(CQ_REC_QUARANTINE);
    cr_assert_not_null(qr);
    cr_expect_str_eq(jget(qr, "reason"), "balance_below_position");
    json_decref(qr);
    cr_expect_eq(status().balance_rechecks_total, 1);
}

Test(trader_core, checkpoint_at_most_every_30_s_when_changed)
{
    ready();
    size_t before = 0;
    for (size_t i = 0; i < H->n_recs; i++) {
        before += H->recs[i].type == CQ_TRADER_REC_TRADER_CHECKPOINT;
    }
    cr_expect_eq(before, 2, "after recovery and when ready");
    tick(60000);
    cr_expect_eq(find(CQ_TRADER_ACT_JOURNAL), NULL, "unchanged: none");
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_assert_eq(H->out.n, 4, "risk, intent, send, then the checkpoint (60 s since the last)");
    const struct cq_trader_action *a = &H->out.a[3];
    cr_expect_eq(a->u.journal.type, CQ_TRADER_REC_TRADER_CHECKPOINT);
    cr_expect_not_null(a->u.journal.payload_ext);
    update(cid, "BTCUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED, "0.00200000", "100.00000000", 1,
           "50000", "0.1", "USDT");
    cr_expect_eq(H->out.n, 1, "the fill only: the last checkpoint is 0 s old");
    tick(29999);
    cr_expect_null(find(CQ_TRADER_ACT_JOURNAL));
    tick(1);
    a = find(CQ_TRADER_ACT_JOURNAL);
    cr_assert_not_null(a);
    cr_expect_eq(a->u.journal.type, CQ_TRADER_REC_TRADER_CHECKPOINT);
    json_t *j = payload_json(a);
    cr_assert_not_null(j);
    cr_expect_eq(json_array_size(json_object_get(j, "positions")), 1);
    cr_expect_eq(json_array_size(json_object_get(j, "orders")), 0);
    cr_expect_eq(strlen(json_string_value(json_object_get(j, "seen"))), 11, "one id");
    json_decref(j);
}

Test(trader_core, config_errors_name_the_field)
{
    struct cq_trader_core_config c;
    default_cfg(&c);
    c.insufficient_scale = D("1");
    struct cq_err err = {0};
    cr_expect_null(cq_trader_core_new(&c, &err));
    cr_expect(strstr(err.message, "CQ_INSUFFICIENT_SCALE") != NULL, "%s", err.message);
    default_cfg(&c);
    c.order_quote = D("0");
    cr_expect_null(cq_trader_core_new(&c, &err));
    cr_expect(strstr(err.message, "CQ_ORDER_QUOTE") != NULL, "%s", err.message);
}

Test(trader_core, client_ids)
{
    char out[CQ_TRADER_CLIENT_ID_LEN], again[CQ_TRADER_CLIENT_ID_LEN];
    cq_trader_client_id_for_signal("0123456789abcdef0123456789abcdef", out);
    cr_expect_str_eq(out, "cq1-0123456789abcdef0123456789abcdef");
    cr_expect(cq_trader_client_id_is_ours(out));
    cr_expect(!cq_trader_client_id_is_ours("web_123"));
    cq_trader_client_id_for_exit(out, CQ_TRADER_STOP_LOSS, 0, again);
    cr_expect_eq(strlen(again), CQ_TRADER_CLIENT_ID_MAX);
    cr_expect(strspn(again + 4, "0123456789abcdef") == 32);
    char sl1[CQ_TRADER_CLIENT_ID_LEN], tp0[CQ_TRADER_CLIENT_ID_LEN];
    cq_trader_client_id_for_exit(out, CQ_TRADER_STOP_LOSS, 1, sl1);
    cq_trader_client_id_for_exit(out, CQ_TRADER_TAKE_PROFIT, 0, tp0);
    cr_expect_str_neq(again, sl1);
    cr_expect_str_neq(again, tp0);
}

Test(trader_core, hostile_texts_are_escaped_and_bad_ids_refused)
{
    ready();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    send_failed(cid, CQ_TRADER_SEND_REJECTED, -1100, "bad \"param\"\n\\\x01 here", false, 0);
    json_t *r = rec_of(CQ_REC_ORDER_REJECT);
    cr_assert_not_null(r, "the payload is valid JSON");
    cr_expect_str_eq(jget(r, "msg"), "bad \"param\"\n\\\x01 here");
    json_decref(r);
    /* a signal id that is not 32 lower-case hex characters */
    struct cq_signal *s = &EV.u.signal;
    cq_strlcpy(s->id, "0123456789ABCDEF0123456789abcdef", sizeof(s->id));
    cq_strlcpy(s->symbol, "BTCUSDT", sizeof(s->symbol));
    s->side = CQ_SIDE_BUY;
    s->reference_price = D("50000");
    feed_ev(CQ_TRADER_EV_SIGNAL);
    expect_refused("bad_signal_id");
    /* an update for an id of ours that was never sent, already closed and
     * unknown: applied, and the symbol quarantined */
    update("cq1-ffffffffffffffffffffffffffffffff", "ETHUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_FILLED,
           "0.01", "30", 5, "3000", "0", "USDT");
    json_t *q = rec_of(CQ_REC_QUARANTINE);
    cr_assert_not_null(q);
    cr_expect_str_eq(jget(q, "reason"), "unattributed_fill");
    json_decref(q);
    expect_dec(position("ETHUSDT")->qty, "0.01", "applied");
    /* a cumulative quantity that goes backwards is not applied */
    send_signal("BNBUSDT", CQ_SIDE_BUY, "500", 2, cid);
    update(cid, "BNBUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.1", "50", 6, "500", "0", "USDT");
    update(cid, "BNBUSDT", CQ_SIDE_BUY, CQ_TRADER_OS_OPEN, "0.05", "25", 0, "0", "0", "");
    expect_dec(position("BNBUSDT")->qty, "0.1", "stale report ignored");
}

Test(trader_core, seen_ring_and_checkpoint_are_bounded)
{
    ready();
    op(CQ_TRADER_CMD_KILL, ""); /* every signal refused by the gate, and remembered */
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    unsigned n = CQ_TRADER_SIGNALS_SEEN_MAX + 100;
    for (unsigned i = 1; i <= n; i++) {
        send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", i, cid);
        cr_assert_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0);
    }
    tick(30000);
    const struct cq_trader_action *a = find(CQ_TRADER_ACT_JOURNAL);
    cr_assert_not_null(a);
    cr_assert_eq(a->u.journal.type, CQ_TRADER_REC_TRADER_CHECKPOINT);
    cr_expect_leq(a->u.journal.len, CQ_TRADER_CHECKPOINT_MAX);
    json_t *j = payload_json(a);
    cr_assert_not_null(j, "the bounded checkpoint is valid JSON");
    size_t kept = strlen(json_string_value(json_object_get(j, "seen"))) / 11;
    json_int_t dropped = json_integer_value(json_object_get(j, "seen_dropped"));
    cr_expect_eq(kept, CQ_TRADER_SIGNALS_SEEN_MAX, "the whole ring fits");
    cr_expect_eq(dropped, 0);
    json_decref(j);
    /* the newest are refused after a restart from this checkpoint; the
     * ring's oldest are forgotten (the documented bound) */
    struct cq_err err = {0};
    struct cq_trader_core *b = cq_trader_core_new(&H->cfg, &err);
    cr_assert_not_null(b);
    cr_assert_eq(cq_trader_core_replay(b, a->u.journal.type, "trader", cq_trader_action_payload(a),
                                       a->u.journal.len),
                 0);
    cq_trader_core_free(H->core);
    H->core = b;
    start();
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", n, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "newest: duplicate");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", n - CQ_TRADER_SIGNALS_SEEN_MAX + 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 0, "the oldest still in the ring: duplicate");
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", 1, cid);
    cr_expect_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1, "oldest: out of the ring");
}

Test(trader_core, orders_table_at_its_maximum_and_a_checkpoint_too_big_is_skipped)
{
    h_new();
    H->cfg.entry_type = CQ_TRADER_LIMIT;
    H->cfg.order_quote = D("10");
    H->cfg.risk.max_open_positions = 0;
    H->cfg.risk.max_position_notional = D("0");
    H->cfg.risk.max_total_exposure = D("0");
    H->cfg.risk.max_orders_per_minute = 0;
    h_core();
    start();
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    for (unsigned i = 1; i <= CQ_TRADER_ORDERS_MAX; i++) {
        send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", i, cid);
        cr_assert_eq(count(CQ_TRADER_ACT_SEND_ORDER), 1, "order %u", i);
    }
    const struct cq_trader_order *o;
    cr_expect_eq(cq_trader_core_orders(H->core, &o), CQ_TRADER_ORDERS_MAX);
    send_signal("BTCUSDT", CQ_SIDE_BUY, "50000", CQ_TRADER_ORDERS_MAX + 1, cid);
    expect_refused("orders_table_full");
    uint64_t before = status().checkpoints_total;
    tick(30000);
    cr_expect_eq(status().checkpoints_total, before, "512 orders do not fit 60 KiB");
    cr_expect_geq(status().checkpoints_skipped_total, 1);
    cr_expect_null(find(CQ_TRADER_ACT_JOURNAL));
}
