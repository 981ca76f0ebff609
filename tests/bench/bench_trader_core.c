/*
 * bench_trader_core.c — events per second through the trader's decision
 * core (server/trader/core.c), one core, no I/O: the issue 11 target is
 * >= 5 M events/s.
 *
 * A fake venue answers every order at once. One round per symbol (4
 * symbols, BTCUSDT-like filters) is 6 events: a BUY signal (risk decision,
 * durable intent, send), the ack (NEW), the fill (FILLED with a trade and
 * a commission), a mark price (unrealized PnL, stop-loss/take-profit check),
 * a SELL signal (the exit through the same path) and its fill (realized
 * PnL). The event clock moves 1 ms per event, so a checkpoint (the whole
 * state as JSON) falls every 30,000 events and the seen-signal ring wraps.
 * Every journal payload is formatted as the daemon would journal it.
 *
 * Prints one JSON line: the median of 5 runs of a fixed event count, the
 * min and max, and a checksum over the positions and counters (the same in
 * every run and every build).
 *
 *   bench_trader_core [events per run, default 3000000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/trader.h"

#define RUNS 5
#define NSYM 4
#define NPRICE 8

static void die(const char *what)
{
    fprintf(stderr, "bench_trader_core: %s\n", what);
    exit(1);
}

static cq_dec D(const char *s)
{
    cq_dec d;
    if (cq_dec_parse(s, (size_t)-1, &d) < 0) {
        die(s);
    }
    return d;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const SYMS[NSYM] = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"};
static const char *const BASES[NSYM] = {"BTC", "ETH", "SOL", "XRP"};

/* price k: 50000 + 7k; a 100 USDT buy fills qty = floor(100 / p, 1e-5) */
static cq_dec price[NPRICE], qty[NPRICE], cum[NPRICE];

static struct cq_trader_event ev_sig, ev_upd, ev_mark, ev_misc;
static struct cq_trader_actions acts;

static void feed(struct cq_trader_core *c, struct cq_trader_event *ev, int64_t now)
{
    ev->now_ms = now;
    if (cq_trader_core_on_event(c, ev, &acts) != 0) {
        die("on_event failed");
    }
}

static void setup(struct cq_trader_core *c, int64_t now)
{
    feed(c, &(struct cq_trader_event){.kind = CQ_TRADER_EV_RECOVERED}, now);
    for (int s = 0; s < NSYM; s++) {
        memset(&ev_misc, 0, sizeof(ev_misc));
        ev_misc.kind = CQ_TRADER_EV_SYMBOL_INFO;
        struct cq_trader_symbol_info *si = &ev_misc.u.symbol_info;
        snprintf(si->symbol, sizeof(si->symbol), "%s", SYMS[s]);
        snprintf(si->base, sizeof(si->base), "%s", BASES[s]);
        snprintf(si->quote, sizeof(si->quote), "USDT");
        si->trading = true;
        si->filters.min_price = D("0.01");
        si->filters.max_price = D("1000000");
        si->filters.tick_size = D("0.01");
        si->filters.min_qty = D("0.00001");
        si->filters.max_qty = D("9000");
        si->filters.step_size = D("0.00001");
        si->filters.min_notional = D("5");
        si->filters.apply_min_to_market = true;
        feed(c, &ev_misc, now);
    }
    memset(&ev_misc, 0, sizeof(ev_misc));
    ev_misc.kind = CQ_TRADER_EV_EXCHANGE_INFO_DONE;
    feed(c, &ev_misc, now);
    ev_misc.kind = CQ_TRADER_EV_ACCOUNT;
    ev_misc.u.balances.n = 1;
    snprintf(ev_misc.u.balances.items[0].asset, CQ_TRADER_ASSET_LEN, "USDT");
    ev_misc.u.balances.items[0].free = D("1000000000");
    ev_misc.u.balances.items[0].locked = D("0");
    feed(c, &ev_misc, now);
    memset(&ev_misc, 0, sizeof(ev_misc));
    ev_misc.kind = CQ_TRADER_EV_OPEN_ORDERS_DONE;
    feed(c, &ev_misc, now);
    ev_misc.kind = CQ_TRADER_EV_STREAM_UP;
    feed(c, &ev_misc, now);
    struct cq_trader_status st;
    cq_trader_core_status(c, &st);
    if (!st.ready) {
        die("the core did not become ready");
    }
}

static void hex_id(uint64_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = n * 0x9e3779b97f4a7c15ULL, b = n;
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (60 - 4 * i)) & 15];
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}

static const char *last_send_id(void)
{
    for (size_t i = 0; i < acts.n; i++) {
        if (acts.a[i].kind == CQ_TRADER_ACT_SEND_ORDER) {
            return acts.a[i].u.order.client_id;
        }
    }
    die("a signal produced no order");
    return NULL;
}

/* One run of n events; returns its checksum. */
static uint64_t run(size_t n_events, const struct cq_trader_core_config *cfg)
{
    struct cq_err err = {0};
    struct cq_trader_core *c = cq_trader_core_new(cfg, &err);
    if (c == NULL) {
        die(err.message);
    }
    int64_t now = 1796601600000LL;
    setup(c, now);
    uint64_t seq = 1;
    uint64_t trade = 1;
    size_t done = 0;
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    while (done < n_events) {
        for (int s = 0; s < NSYM && done < n_events; s++, done += 6) {
            int kb = (int)(seq % NPRICE), ks = (int)((seq + 3) % NPRICE);
            /* BUY signal */
            struct cq_signal *sg = &ev_sig.u.signal;
            hex_id(seq++, sg->id);
            memcpy(sg->symbol, SYMS[s], strlen(SYMS[s]) + 1);
            sg->side = CQ_SIDE_BUY;
            sg->reference_price = price[kb];
            feed(c, &ev_sig, ++now);
            memcpy(cid, last_send_id(), sizeof(cid));
            /* ack */
            struct cq_trader_order_update *u = &ev_upd.u.order;
            memcpy(u->symbol, SYMS[s], strlen(SYMS[s]) + 1);
            memcpy(u->client_id, cid, sizeof(cid));
            u->order_id = seq;
            u->side = CQ_SIDE_BUY;
            u->state = CQ_TRADER_OS_OPEN;
            u->executed_qty = CQ_DEC_ZERO;
            u->cum_quote = CQ_DEC_ZERO;
            u->trade_id = 0;
            feed(c, &ev_upd, ++now);
            /* fill */
            u->state = CQ_TRADER_OS_FILLED;
            u->executed_qty = qty[kb];
            u->cum_quote = cum[kb];
            u->trade_id = trade++;
            u->last_price = price[kb];
            u->commission = cq_dec_make(10, 2); /* 0.10 USDT */
            feed(c, &ev_upd, ++now);
            /* mark */
            memcpy(ev_mark.u.mark.symbol, SYMS[s], strlen(SYMS[s]) + 1);
            ev_mark.u.mark.price = price[ks];
            feed(c, &ev_mark, ++now);
            /* SELL signal */
            hex_id(seq++, sg->id);
            sg->side = CQ_SIDE_SELL;
            sg->reference_price = price[ks];
            feed(c, &ev_sig, ++now);
            memcpy(u->client_id, last_send_id(), sizeof(cid));
            /* its fill, at the mark */
            u->side = CQ_SIDE_SELL;
            u->order_id = seq;
            u->executed_qty = qty[kb];
            if (cq_dec_mul(qty[kb], price[ks], 8, CQ_ROUND_HALF_EVEN, &u->cum_quote) < 0) {
                die("overflow");
            }
            u->trade_id = trade++;
            u->last_price = price[ks];
            feed(c, &ev_upd, ++now);
        }
    }
    struct cq_trader_status st;
    cq_trader_core_status(c, &st);
    const struct cq_trader_position *p;
    size_t np = cq_trader_core_positions(c, &p);
    uint64_t sum = st.orders_sent_total * 1000003u + st.events_total;
    for (size_t i = 0; i < np; i++) {
        cq_dec r, f;
        if (cq_dec_rescale(p[i].realized_pnl, 8, CQ_ROUND_EXACT, &r) < 0 ||
            cq_dec_rescale(p[i].fees, 8, CQ_ROUND_EXACT, &f) < 0) {
            die("pnl scale");
        }
        sum = sum * 31 + (uint64_t)r.m;
        sum = sum * 31 + (uint64_t)f.m;
        sum = sum * 31 + (uint64_t)p[i].qty.m;
    }
    if (st.risk_refusals_total + st.filter_refusals_total + st.actions_overflow_total != 0) {
        die("an order was refused: the mix must trade");
    }
    cq_trader_core_free(c);
    return sum;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 3000000;
    if (n < 6) {
        die("events per run must be >= 6");
    }
    for (int k = 0; k < NPRICE; k++) {
        price[k] = cq_dec_make(5000000 + 700 * k, 2);
        if (cq_dec_div(cq_dec_make(100, 0), price[k], 8, CQ_ROUND_DOWN, &qty[k]) < 0 ||
            cq_dec_quantize(qty[k], cq_dec_make(1, 5), CQ_ROUND_DOWN, &qty[k]) < 0 ||
            cq_dec_mul(qty[k], price[k], 8, CQ_ROUND_HALF_EVEN, &cum[k]) < 0) {
            die("price table");
        }
    }
    struct cq_trader_core_config cfg = {0};
    cfg.mode = CQ_MODE_PAPER;
    cfg.order_quote = D("100");
    cfg.entry_type = CQ_TRADER_MARKET;
    cfg.stop_loss_pct = D("50"); /* checked on every mark, never hit by this mix */
    cfg.take_profit_pct = D("50");
    cfg.insufficient_scale = D("0.5");
    cfg.insufficient_retries = 2;
    cfg.quarantine_ms = 900000;
    cfg.unknown_query_every_ms = 1000;
    cfg.reconcile_every_ms = 3600000000LL;
    cfg.poll_orders_every_ms = 2000;
    cfg.account_retry_min_ms = 500;
    cfg.account_retry_max_ms = 8000;
    cfg.exchange_info_every_ms = 0;
    cfg.risk.max_open_positions = NSYM;
    cfg.risk.max_position_notional = D("1000");
    cfg.risk.max_total_exposure = D("4000");
    cfg.risk.max_daily_loss = D("1000000");
    ev_sig.kind = CQ_TRADER_EV_SIGNAL;
    ev_upd.kind = CQ_TRADER_EV_ORDER_UPDATE;
    ev_upd.u.order.type = CQ_TRADER_MARKET;
    memcpy(ev_upd.u.order.commission_asset, "USDT", 5);
    ev_mark.kind = CQ_TRADER_EV_MARK_PRICE;

    double per_s[RUNS];
    uint64_t checksum = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        uint64_t sum = run(n, &cfg);
        double t = now_s() - t0;
        if (r > 0 && sum != checksum) {
            die("checksum changed between runs");
        }
        checksum = sum;
        per_s[r] = (double)n / t;
    }
    qsort(per_s, RUNS, sizeof(per_s[0]), cmp_double);
    printf("{\"bench\":\"trader_core\",\"events\":%zu,\"events_per_s\":%.0f,"
           "\"min_events_per_s\":%.0f,\"max_events_per_s\":%.0f,\"ns_per_event\":%.1f,"
           "\"mix\":\"buy signal, ack, fill, mark, sell signal, fill\",\"checksum\":%llu,"
           "\"median_of\":%d}\n",
           n, per_s[RUNS / 2], per_s[0], per_s[RUNS - 1], 1e9 / per_s[RUNS / 2],
           (unsigned long long)checksum, RUNS);
    return 0;
}
