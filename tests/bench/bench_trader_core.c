/*
 * bench_trader_core.c — events per second through the trader's decision
 * core (server/trader/core.c), one core, no I/O: the issue 11 target is
 * >= 5 M events/s.
 *
 * Two mixes, each the median of 5 runs of a fixed event count, each with
 * a checksum over computed values (positions' realized PnL, fees and
 * quantities, orders sent, events, checkpoints: the same in every run and
 * every build), and per-kind costs from one more, instrumented run:
 *
 *  - "trader_core" (the headline): a backtest run through the core. Per
 *    1-minute candle and symbol (4 symbols, BTCUSDT-like filters) the
 *    backtest feeds a MARK_PRICE (the close) and a TICK at the candle's
 *    close time; on 1 candle in 26 per symbol the strategy signals
 *    (ema_cross 12/26 crosses on 3.8 % of the 66,087 real 1m candles of
 *    BTCUSDT, ETHUSDT and DOGEUSDT in ../shared/data/klines: 1 in 26.5),
 *    alternately BUY and SELL, and the simulated venue answers each order
 *    with an ack (NEW), a fill (FILLED, a trade id and a commission) and a
 *    balance update (outboundAccountPosition: quote and base). Marks move
 *    every candle. The event clock is the candle time (+1..4 ms for the
 *    order's events): a minute passes per candle, so the 30 s checkpoint
 *    rule writes the whole state (the seen-id ring fills after 4,096
 *    signals) whenever an order changed it, as the daemon would.
 *  - "trader_core_order_path": the order path alone, 6 events per round
 *    and symbol: a BUY signal (risk decision, durable intent, send), the
 *    ack, the fill, a mark, a SELL signal and its fill; every event but
 *    the mark journals one or two payloads; the clock moves 1 ms per event
 *    (a checkpoint every 30,000 events).
 *
 * Prints one JSON line per mix: the wall-clock median (events_per_s) and
 * the median over CPU time (cpu_events_per_s: what the core costs when
 * the shared machine preempts it).
 *
 *   bench_trader_core [events per run, default 3000000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/trader.h"

#define RUNS 5
#define KIND_RUNS 3
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

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

static struct cq_trader_event ev_sig, ev_upd, ev_mark, ev_misc, ev_bal, ev_tick;
static uint64_t last_checkpoints;
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

enum kind { K_SIGNAL, K_ACK, K_FILL, K_BALANCE, K_MARK, K_TICK, K_N };
static const char *const KIND_NAMES[K_N] = {"signal", "ack", "fill", "balance", "mark", "tick"};

/* per-kind accounting: only the instrumented run times each event */
static bool timed;
static double kind_s[K_N];
static uint64_t kind_n[K_N];

static void feedk(struct cq_trader_core *c, struct cq_trader_event *ev, int64_t now, enum kind k)
{
    kind_n[k]++;
    if (!timed) {
        feed(c, ev, now);
        return;
    }
    double t0 = now_s();
    feed(c, ev, now);
    kind_s[k] += now_s() - t0;
}

static struct cq_trader_core *start_core(const struct cq_trader_core_config *cfg, int64_t now)
{
    struct cq_err err = {0};
    struct cq_trader_core *c = cq_trader_core_new(cfg, &err);
    if (c == NULL) {
        die(err.message);
    }
    setup(c, now);
    return c;
}

/* positions, counters: the same in every run and build */
static uint64_t finish(struct cq_trader_core *c)
{
    struct cq_trader_status st;
    cq_trader_core_status(c, &st);
    const struct cq_trader_position *p;
    size_t np = cq_trader_core_positions(c, &p);
    uint64_t sum = st.orders_sent_total * 1000003u + st.events_total;
    sum = sum * 31 + st.checkpoints_total;
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
    if (st.risk_refusals_total + st.filter_refusals_total + st.actions_overflow_total +
            st.math_errors_total + st.quarantines_total !=
        0) {
        die("an order was refused or a symbol quarantined: the mix must trade");
    }
    last_checkpoints = st.checkpoints_total;
    cq_trader_core_free(c);
    return sum;
}

/* The order path: n events, 6 per round and symbol. */
static uint64_t run_order_path(size_t n_events, const struct cq_trader_core_config *cfg)
{
    int64_t now = 1796601600000LL;
    struct cq_trader_core *c = start_core(cfg, now);
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
            feedk(c, &ev_sig, ++now, K_SIGNAL);
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
            feedk(c, &ev_upd, ++now, K_ACK);
            /* fill */
            u->state = CQ_TRADER_OS_FILLED;
            u->executed_qty = qty[kb];
            u->cum_quote = cum[kb];
            u->trade_id = trade++;
            u->last_price = price[kb];
            u->commission = cq_dec_make(10, 2); /* 0.10 USDT */
            feedk(c, &ev_upd, ++now, K_FILL);
            /* mark */
            memcpy(ev_mark.u.mark.symbol, SYMS[s], strlen(SYMS[s]) + 1);
            ev_mark.u.mark.price = price[ks];
            feedk(c, &ev_mark, ++now, K_MARK);
            /* SELL signal */
            hex_id(seq++, sg->id);
            sg->side = CQ_SIDE_SELL;
            sg->reference_price = price[ks];
            feedk(c, &ev_sig, ++now, K_SIGNAL);
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
            feedk(c, &ev_upd, ++now, K_FILL);
        }
    }
    return finish(c);
}

#define SIGNAL_EVERY 26 /* candles per signal and symbol (ema_cross 12/26 on 1m: 1 in 26.5) */

/* A backtest: n events, per candle and symbol a mark and a tick, on 1
 * candle in SIGNAL_EVERY a signal and its ack, fill and balance update. */
static uint64_t run_backtest(size_t n_events, const struct cq_trader_core_config *cfg)
{
    int64_t candle = 1796601600000LL;
    struct cq_trader_core *c = start_core(cfg, candle);
    uint64_t seq = 1, trade = 1, rng = 88172645463325252ULL;
    size_t done = 0;
    int k[NSYM] = {0};
    bool holding[NSYM] = {false};
    int held_k[NSYM] = {0};
    cq_dec usdt = D("1000000000");
    ev_bal.kind = CQ_TRADER_EV_BALANCE_UPDATE;
    ev_bal.u.balances.n = 2;
    memcpy(ev_bal.u.balances.items[0].asset, "USDT", 5);
    ev_bal.u.balances.items[0].locked = CQ_DEC_ZERO;
    ev_bal.u.balances.items[1].locked = CQ_DEC_ZERO;
    ev_tick.kind = CQ_TRADER_EV_TICK;
    for (uint64_t n_candle = 0; done < n_events; n_candle++) {
        candle += 60000;
        for (int s = 0; s < NSYM && done < n_events; s++) {
            /* the close moves one price step up or down */
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            k[s] = (k[s] + (rng & 1 ? 1 : NPRICE - 1)) % NPRICE;
            memcpy(ev_mark.u.mark.symbol, SYMS[s], strlen(SYMS[s]) + 1);
            ev_mark.u.mark.price = price[k[s]];
            feedk(c, &ev_mark, candle, K_MARK);
            feedk(c, &ev_tick, candle, K_TICK);
            done += 2;
            if ((n_candle + (uint64_t)s * 7) % SIGNAL_EVERY != 0 || done >= n_events) {
                continue;
            }
            bool buy = !holding[s];
            struct cq_signal *sg = &ev_sig.u.signal;
            hex_id(seq++, sg->id);
            memcpy(sg->symbol, SYMS[s], strlen(SYMS[s]) + 1);
            sg->side = buy ? CQ_SIDE_BUY : CQ_SIDE_SELL;
            sg->reference_price = price[k[s]];
            feedk(c, &ev_sig, candle + 1, K_SIGNAL);
            struct cq_trader_order_update *u = &ev_upd.u.order;
            memcpy(u->symbol, SYMS[s], strlen(SYMS[s]) + 1);
            memcpy(u->client_id, last_send_id(), sizeof(u->client_id));
            u->order_id = seq;
            u->side = sg->side;
            u->state = CQ_TRADER_OS_OPEN;
            u->executed_qty = CQ_DEC_ZERO;
            u->cum_quote = CQ_DEC_ZERO;
            u->trade_id = 0;
            u->commission = CQ_DEC_ZERO;
            feedk(c, &ev_upd, candle + 2, K_ACK);
            int q = buy ? k[s] : held_k[s];
            u->state = CQ_TRADER_OS_FILLED;
            u->executed_qty = qty[q];
            if (buy) {
                u->cum_quote = cum[q];
            } else if (cq_dec_mul(qty[q], price[k[s]], 8, CQ_ROUND_HALF_EVEN, &u->cum_quote) < 0) {
                die("overflow");
            }
            u->trade_id = trade++;
            u->last_price = price[k[s]];
            u->commission = cq_dec_make(10, 2); /* 0.10 USDT */
            feedk(c, &ev_upd, candle + 3, K_FILL);
            /* the account after the fill: quote and base */
            cq_dec fee = cq_dec_make(10, 2);
            if (cq_dec_add(usdt, buy ? CQ_DEC_ZERO : u->cum_quote, &usdt) < 0 ||
                cq_dec_sub(usdt, buy ? u->cum_quote : CQ_DEC_ZERO, &usdt) < 0 ||
                cq_dec_sub(usdt, fee, &usdt) < 0) {
                die("balance");
            }
            ev_bal.u.balances.items[0].free = usdt;
            memcpy(ev_bal.u.balances.items[1].asset, BASES[s], strlen(BASES[s]) + 1);
            ev_bal.u.balances.items[1].free = buy ? qty[q] : CQ_DEC_ZERO;
            feedk(c, &ev_bal, candle + 4, K_BALANCE);
            done += 4;
            holding[s] = buy;
            held_k[s] = q;
        }
    }
    return finish(c);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef uint64_t (*run_fn)(size_t, const struct cq_trader_core_config *);

/* Median of RUNS timed runs, then the per-kind costs: the median of
 * KIND_RUNS instrumented runs (each event timed, the timer's own cost
 * taken off: cheap kinds are within a few ns of noise). */
static void measure(const char *name, run_fn fn, size_t n, const struct cq_trader_core_config *cfg,
                    const char *mix)
{
    double per_s[RUNS], cpu_per_s[RUNS];
    uint64_t checksum = 0;
    timed = false;
    for (int r = 0; r < RUNS; r++) {
        memset(kind_n, 0, sizeof(kind_n));
        double t0 = now_s(), c0 = cpu_s();
        uint64_t sum = fn(n, cfg);
        double t = now_s() - t0;
        cpu_per_s[r] = (double)n / (cpu_s() - c0);
        if (r > 0 && sum != checksum) {
            die("checksum changed between runs");
        }
        checksum = sum;
        per_s[r] = (double)n / t;
    }
    qsort(per_s, RUNS, sizeof(per_s[0]), cmp_double);
    qsort(cpu_per_s, RUNS, sizeof(cpu_per_s[0]), cmp_double);
    uint64_t counts[K_N];
    memcpy(counts, kind_n, sizeof(counts));
    /* the timer pair's own cost */
    double t0 = now_s(), sink = 0;
    for (int i = 0; i < 1000000; i++) {
        double a = now_s();
        sink += now_s() - a;
    }
    double timer_s = (now_s() - t0) / 1e6 / 2; /* one now_s() call */
    (void)sink;
    double kind_ns[K_N][KIND_RUNS];
    for (int r = 0; r < KIND_RUNS; r++) {
        memset(kind_s, 0, sizeof(kind_s));
        memset(kind_n, 0, sizeof(kind_n));
        timed = true;
        if (fn(n, cfg) != checksum) {
            die("checksum changed in an instrumented run");
        }
        timed = false;
        for (int k = 0; k < K_N; k++) {
            kind_ns[k][r] = kind_n[k] > 0 ? (kind_s[k] / (double)kind_n[k] - timer_s) * 1e9 : 0.0;
        }
    }
    printf("{\"bench\":\"%s\",\"events\":%zu,\"events_per_s\":%.0f,"
           "\"min_events_per_s\":%.0f,\"max_events_per_s\":%.0f,\"ns_per_event\":%.1f,"
           "\"cpu_events_per_s\":%.0f,\"mix\":\"%s\",\"checkpoints\":%llu,\"kinds\":{",
           name, n, per_s[RUNS / 2], per_s[0], per_s[RUNS - 1], 1e9 / per_s[RUNS / 2],
           cpu_per_s[RUNS / 2], mix, (unsigned long long)last_checkpoints);
    bool first = true;
    for (int k = 0; k < K_N; k++) {
        if (counts[k] == 0) {
            continue;
        }
        qsort(kind_ns[k], KIND_RUNS, sizeof(double), cmp_double);
        double ns = kind_ns[k][KIND_RUNS / 2];
        printf("%s\"%s\":{\"events\":%llu,\"share\":%.4f,\"ns_per_event\":%.1f,"
               "\"events_per_s\":%.0f}",
               first ? "" : ",", KIND_NAMES[k], (unsigned long long)counts[k],
               (double)counts[k] / (double)n, ns, ns > 0 ? 1e9 / ns : 0.0);
        first = false;
    }
    printf("},\"timer_ns\":%.1f,\"checksum\":%llu,\"median_of\":%d}\n", timer_s * 1e9,
           (unsigned long long)checksum, RUNS);
    fflush(stdout);
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

    measure("trader_core", run_backtest, n, &cfg,
            "backtest: per 1m candle and symbol a mark and a tick; 1 candle in 26 a signal, "
            "its ack, fill and balance update");
    measure("trader_core_order_path", run_order_path, n, &cfg,
            "buy signal, ack, fill, mark, sell signal, fill");
    return 0;
}
