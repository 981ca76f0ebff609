/*
 * test_trader_payloads.c — pins the trader decision core's output byte for
 * byte (server/trader/core.c): a seeded run of mixed events (signals,
 * duplicates, acks, partial and full fills, cancels, rejects, insufficient
 * balance, unknown outcomes, rate limits, marks that trigger stop-loss and
 * take-profit, balance updates, ticks and checkpoints, pause, kill, stream
 * gaps, hostile texts) is written as a text trace of every action (every
 * field, every journal payload) and compared with
 * tests/data/trader/core_trace.golden, recorded from the core before its
 * hot path was optimised. Journal replay and the unit tests depend on the
 * payloads: a change of one byte fails here, and the test leaves the new
 * trace beside the build (trader_core_trace.out) for a diff.
 *
 * To re-record after an intended payload change (say why in the commit):
 *   CQ_REGEN_GOLDEN=1 build/tests/test_trader_payloads
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/trader.h"

#define GOLDEN CQ_SOURCE_DIR "/tests/data/trader/core_trace.golden"
#define NSYM 3
#define EVENTS 2500

static const char *const SYMS[NSYM] = {"BTCUSDT", "ETHUSDT", "BNBUSDT"};
static const char *const BASES[NSYM] = {"BTC", "ETH", "BNB"};

static struct cq_trader_event EV;
static struct cq_trader_actions OUT;
static char *trace;
static size_t trace_len, trace_cap;
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static int64_t now_ms = 1796601600000LL + 43200000LL;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    if (trace == NULL) {
        trace_cap = 1 << 20;
        trace = malloc(trace_cap);
        cr_assert_not_null(trace);
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(trace + trace_len, trace_cap - trace_len, fmt, ap);
        va_end(ap);
        cr_assert_geq(n, 0);
        if ((size_t)n < trace_cap - trace_len) {
            trace_len += (size_t)n;
            return;
        }
        trace_cap = trace_cap * 2 + (size_t)n + 4096;
        trace = realloc(trace, trace_cap);
        cr_assert_not_null(trace);
    }
}

static const char *dec(cq_dec d, char *buf)
{
    return cq_dec_format(d, buf, CQ_DEC_STR_MAX);
}

/* orders the fake venue knows: every SEND_ORDER, until closed */
struct vorder {
    char symbol[CQ_SYMBOL_LEN];
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    enum cq_side side;
    cq_dec qty, quote_qty;
    cq_dec done_qty, done_quote;
    uint64_t order_id;
};
static struct vorder vo[4096];
static size_t n_vo;
static uint64_t next_order_id = 5000, next_trade = 1;
static cq_dec price[NSYM];

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    }
    return h;
}

static void record(void)
{
    char b1[CQ_DEC_STR_MAX], b2[CQ_DEC_STR_MAX], b3[CQ_DEC_STR_MAX];
    for (size_t i = 0; i < OUT.n; i++) {
        const struct cq_trader_action *a = &OUT.a[i];
        switch (a->kind) {
        case CQ_TRADER_ACT_JOURNAL:
            out(" J %u %s %s %d %d %zu ", a->u.journal.type, a->u.journal.scope,
                a->u.journal.log_event != NULL ? a->u.journal.log_event : "-",
                a->u.journal.log_event != NULL ? a->u.journal.log_level : 0,
                (int)a->u.journal.wait_durable, a->u.journal.len);
            cr_assert_eq(strlen(cq_trader_action_payload(a)), a->u.journal.len);
            if (a->u.journal.len <= 1024) {
                out("%s\n", cq_trader_action_payload(a));
            } else { /* the checkpoint: its FNV-1a hash keeps the golden file small */
                out("fnv1a64=%016llx\n",
                    (unsigned long long)fnv1a(cq_trader_action_payload(a), a->u.journal.len));
            }
            break;
        case CQ_TRADER_ACT_SEND_ORDER:
            out(" S %s %s %d %d %s %s %s\n", a->u.order.symbol, a->u.order.client_id,
                (int)a->u.order.side, (int)a->u.order.type, dec(a->u.order.qty, b1),
                dec(a->u.order.quote_qty, b2), dec(a->u.order.price, b3));
            if (n_vo < CQ_ARRAY_LEN(vo)) {
                struct vorder *v = &vo[n_vo++];
                memset(v, 0, sizeof(*v));
                cq_strlcpy(v->symbol, a->u.order.symbol, sizeof(v->symbol));
                memcpy(v->cid, a->u.order.client_id, sizeof(v->cid));
                v->side = a->u.order.side;
                v->qty = a->u.order.qty;
                v->quote_qty = a->u.order.quote_qty;
                v->order_id = next_order_id++;
            }
            break;
        default:
            out(" A %d %s %s\n", (int)a->kind, a->u.ref.symbol, a->u.ref.client_id);
            break;
        }
    }
}

static void feed(struct cq_trader_core *c, enum cq_trader_event_kind kind)
{
    EV.kind = kind;
    EV.now_ms = now_ms;
    int rc = cq_trader_core_on_event(c, &EV, &OUT);
    out("E %d %lld rc=%d n=%zu\n", (int)kind, (long long)now_ms, rc, OUT.n);
    record();
    memset(&EV, 0, sizeof(EV));
}

static int sym_index(const char *s)
{
    for (int i = 0; i < NSYM; i++) {
        if (strcmp(SYMS[i], s) == 0) {
            return i;
        }
    }
    return 0;
}

static void venue_answer(struct cq_trader_core *c)
{
    if (n_vo == 0) {
        feed(c, CQ_TRADER_EV_TICK);
        return;
    }
    size_t k = rnd((unsigned)n_vo);
    struct vorder *v = &vo[k];
    int s = sym_index(v->symbol);
    unsigned what = rnd(100);
    bool close = false;
    if (what < 8) { /* a send failure of some kind */
        static const enum cq_trader_send_outcome oc[] = {
            CQ_TRADER_SEND_REJECTED, CQ_TRADER_SEND_UNKNOWN, CQ_TRADER_SEND_RATE_LIMITED,
            CQ_TRADER_SEND_NOT_FOUND, CQ_TRADER_SEND_JOURNAL_FAILED};
        unsigned o = rnd(5);
        cq_strlcpy(EV.u.send.symbol, v->symbol, sizeof(EV.u.send.symbol));
        memcpy(EV.u.send.client_id, v->cid, sizeof(v->cid));
        EV.u.send.outcome = oc[o];
        if (o == 0) {
            bool insufficient = rnd(2) == 0;
            EV.u.send.code = insufficient ? -2010 : -1013;
            cq_strlcpy(EV.u.send.msg,
                       insufficient ? "Account has insufficient balance for requested action."
                                    : "Filter failure: \"LOT_SIZE\" \\ \x01 bad",
                       sizeof(EV.u.send.msg));
        } else if (o == 2) {
            EV.u.send.code = -1003;
            EV.u.send.retry_after_ms = rnd(2) ? 0 : 1500;
        }
        EV.u.send.was_query = o == 3;
        feed(c, CQ_TRADER_EV_SEND_FAILED);
        close = o != 1 && o != 2;
    } else {
        struct cq_trader_order_update *u = &EV.u.order;
        cq_strlcpy(u->symbol, v->symbol, sizeof(u->symbol));
        memcpy(u->client_id, v->cid, sizeof(v->cid));
        u->order_id = v->order_id;
        u->side = v->side;
        u->type = CQ_TRADER_MARKET;
        u->event_ms = now_ms;
        u->executed_qty = v->done_qty;
        u->cum_quote = v->done_quote;
        u->state = CQ_TRADER_OS_OPEN;
        if (what < 20) {
            u->state = rnd(4) == 0 ? CQ_TRADER_OS_REJECTED : CQ_TRADER_OS_CANCELED;
            close = true;
        } else if (what >= 35) { /* a fill, partial or full */
            cq_dec want = v->qty;
            if (cq_dec_is_zero(want)) {
                cq_dec q;
                cr_assert_eq(cq_dec_div(v->quote_qty, price[s], 8, CQ_ROUND_DOWN, &q), 0);
                cr_assert_eq(cq_dec_quantize(q, cq_dec_make(1, 5), CQ_ROUND_DOWN, &want), 0);
            }
            cq_dec left, part;
            cr_assert_eq(cq_dec_sub(want, v->done_qty, &left), 0);
            bool partial = rnd(3) == 0;
            part = left;
            if (partial) {
                cq_dec h;
                cr_assert_eq(cq_dec_div(left, cq_dec_make(2, 0), 5, CQ_ROUND_DOWN, &h), 0);
                if (!cq_dec_is_zero(h)) {
                    part = h;
                } else {
                    partial = false;
                }
            }
            cq_dec quote;
            cr_assert_eq(cq_dec_mul(part, price[s], 8, CQ_ROUND_HALF_EVEN, &quote), 0);
            cr_assert_eq(cq_dec_add(v->done_qty, part, &v->done_qty), 0);
            cr_assert_eq(cq_dec_add(v->done_quote, quote, &v->done_quote), 0);
            u->executed_qty = v->done_qty;
            u->cum_quote = v->done_quote;
            u->state = partial ? CQ_TRADER_OS_OPEN : CQ_TRADER_OS_FILLED;
            u->trade_id = next_trade++;
            u->last_qty = part;
            u->last_price = price[s];
            static const char *const fee_asset[] = {"USDT", "USDT", "USDT", "USDT",
                                                    "USDT", "USDT", "BNB",  "XYZ"};
            unsigned fa = rnd(8);
            u->commission = cq_dec_make(1 + (int64_t)rnd(100), fa < 6 ? 3 : 5);
            cq_strlcpy(u->commission_asset, fee_asset[fa], sizeof(u->commission_asset));
            close = !partial;
        }
        struct cq_trader_order_update again = *u;
        feed(c, CQ_TRADER_EV_ORDER_UPDATE);
        if (rnd(10) == 0) { /* the same update again: a duplicate */
            EV.u.order = again;
            feed(c, CQ_TRADER_EV_ORDER_UPDATE);
        }
    }
    if (close) {
        vo[k] = vo[--n_vo];
    }
}

static void start_ready(struct cq_trader_core *c)
{
    feed(c, CQ_TRADER_EV_RECOVERED);
    for (int s = 0; s < NSYM; s++) {
        struct cq_trader_symbol_info *si = &EV.u.symbol_info;
        cq_strlcpy(si->symbol, SYMS[s], sizeof(si->symbol));
        cq_strlcpy(si->base, BASES[s], sizeof(si->base));
        cq_strlcpy(si->quote, "USDT", sizeof(si->quote));
        si->trading = true;
        si->filters.min_price = cq_dec_make(1, 2);
        si->filters.max_price = cq_dec_make(1000000, 0);
        si->filters.tick_size = cq_dec_make(1, 2);
        si->filters.min_qty = cq_dec_make(1, 5);
        si->filters.max_qty = cq_dec_make(9000, 0);
        si->filters.step_size = cq_dec_make(1, 5);
        si->filters.min_notional = cq_dec_make(5, 0);
        si->filters.apply_min_to_market = true;
        feed(c, CQ_TRADER_EV_SYMBOL_INFO);
    }
    feed(c, CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    EV.u.balances.n = 3;
    cq_strlcpy(EV.u.balances.items[0].asset, "USDT", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[0].free = cq_dec_make(2000, 0);
    cq_strlcpy(EV.u.balances.items[1].asset, "BNB", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[1].free = cq_dec_make(30, 0);
    cq_strlcpy(EV.u.balances.items[2].asset, "BTC", CQ_TRADER_ASSET_LEN);
    EV.u.balances.items[2].free = cq_dec_make(10, 0);
    feed(c, CQ_TRADER_EV_ACCOUNT);
    feed(c, CQ_TRADER_EV_OPEN_ORDERS_DONE);
    feed(c, CQ_TRADER_EV_STREAM_UP);
}

static void run(struct cq_trader_core *c)
{
    start_ready(c);
    price[0] = cq_dec_make(5000000, 2);
    price[1] = cq_dec_make(300000, 2);
    price[2] = cq_dec_make(50000, 2);
    char last_id[CQ_SIGNAL_ID_LEN + 1] = "";
    for (unsigned e = 0; e < EVENTS; e++) {
        now_ms += rnd(400);
        unsigned r = rnd(100);
        int s = (int)rnd(NSYM);
        if (r < 16) {
            struct cq_signal *sg = &EV.u.signal;
            if (r == 0 && last_id[0] != '\0') {
                memcpy(sg->id, last_id, sizeof(last_id)); /* a duplicate */
            } else if (r == 1) {
                cq_strlcpy(sg->id, "not-hex\"\\id", sizeof(sg->id));
            } else {
                snprintf(sg->id, sizeof(sg->id), "%016llx%016x",
                         (unsigned long long)(rng * 0x9e3779b97f4a7c15ULL), e);
                memcpy(last_id, sg->id, sizeof(last_id));
            }
            cq_strlcpy(sg->symbol, r == 2 ? "NOPEUSDT" : SYMS[s], sizeof(sg->symbol));
            sg->side = rnd(2) ? CQ_SIDE_BUY : CQ_SIDE_SELL;
            sg->reference_price = price[s];
            feed(c, CQ_TRADER_EV_SIGNAL);
        } else if (r < 45) {
            venue_answer(c);
        } else if (r < 70) {
            /* a random walk, wide enough to reach stop-loss and take-profit */
            int64_t step = (int64_t)rnd(201) - 100;
            cq_dec d = cq_dec_make(price[s].m / 1000 * step / 10, price[s].scale);
            cq_dec p;
            cr_assert_eq(cq_dec_add(price[s], d, &p), 0);
            if (cq_dec_sign(p) > 0) {
                price[s] = p;
            }
            cq_strlcpy(EV.u.mark.symbol, SYMS[s], sizeof(EV.u.mark.symbol));
            EV.u.mark.price = price[s];
            feed(c, CQ_TRADER_EV_MARK_PRICE);
        } else if (r < 82) {
            now_ms += rnd(20) == 0 ? 3600000 : rnd(12000);
            feed(c, CQ_TRADER_EV_TICK);
        } else if (r < 90) {
            EV.u.balances.n = 1;
            bool quote = rnd(2) != 0;
            cq_strlcpy(EV.u.balances.items[0].asset, quote ? "USDT" : BASES[s],
                       CQ_TRADER_ASSET_LEN);
            /* one rnd() per statement: the order arguments are evaluated in is unspecified */
            int64_t amount = quote || rnd(10) != 0 ? 100 + (int64_t)rnd(3000) : 0;
            unsigned scale = rnd(3);
            EV.u.balances.items[0].free = cq_dec_make(amount, scale);
            EV.u.balances.items[0].locked = cq_dec_make((int64_t)rnd(5), 0);
            feed(c, CQ_TRADER_EV_BALANCE_UPDATE);
        } else if (r < 93) {
            static const enum cq_trader_operator_cmd cmd[] = {
                CQ_TRADER_CMD_PAUSE,           CQ_TRADER_CMD_RESUME, CQ_TRADER_CMD_RESUME,
                CQ_TRADER_CMD_RESUME,          CQ_TRADER_CMD_KILL,   CQ_TRADER_CMD_UNKILL,
                CQ_TRADER_CMD_UNKILL,          CQ_TRADER_CMD_UNKILL, CQ_TRADER_CMD_CLEAR_QUARANTINE,
                CQ_TRADER_CMD_CLEAR_QUARANTINE};
            EV.u.op.cmd = cmd[rnd(CQ_ARRAY_LEN(cmd))];
            cq_strlcpy(EV.u.op.symbol, SYMS[s], sizeof(EV.u.op.symbol));
            feed(c, CQ_TRADER_EV_OPERATOR);
        } else if (r < 95) {
            feed(c, rnd(2) ? CQ_TRADER_EV_STREAM_GAP : CQ_TRADER_EV_STREAM_UP);
        } else if (r < 97) {
            feed(c, CQ_TRADER_EV_OPEN_ORDERS_DONE);
        } else {
            EV.failed = rnd(4) == 0;
            EV.u.balances.n = NSYM + 1;
            cq_strlcpy(EV.u.balances.items[0].asset, "USDT", CQ_TRADER_ASSET_LEN);
            EV.u.balances.items[0].free = cq_dec_make(500 + (int64_t)rnd(3000), 0);
            for (int b = 0; b < NSYM; b++) {
                cq_strlcpy(EV.u.balances.items[b + 1].asset, BASES[b], CQ_TRADER_ASSET_LEN);
                EV.u.balances.items[b + 1].free = cq_dec_make(rnd(20) == 0 ? 0 : 10, 0);
            }
            feed(c, CQ_TRADER_EV_ACCOUNT);
        }
    }
    struct cq_trader_status st;
    cq_trader_core_status(c, &st);
    out("status %d %d orders=%zu positions=%zu sent=%llu risk=%llu filter=%llu dup=%llu "
        "unknown=%llu ckpt=%llu math=%llu\n",
        (int)st.reason, (int)st.ready, st.open_orders, st.positions,
        (unsigned long long)st.orders_sent_total, (unsigned long long)st.risk_refusals_total,
        (unsigned long long)st.filter_refusals_total,
        (unsigned long long)st.duplicate_signals_total,
        (unsigned long long)st.unknown_outcomes_total, (unsigned long long)st.checkpoints_total,
        (unsigned long long)st.math_errors_total);
    const struct cq_trader_position *p;
    size_t np = cq_trader_core_positions(c, &p);
    char b1[CQ_DEC_STR_MAX], b2[CQ_DEC_STR_MAX], b3[CQ_DEC_STR_MAX];
    for (size_t i = 0; i < np; i++) {
        out("pos %s %s %s %s\n", p[i].symbol, dec(p[i].qty, b1), dec(p[i].realized_pnl, b2),
            dec(p[i].fees, b3));
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static void config(struct cq_trader_core_config *out)
{
    struct cq_trader_core_config cfg = {0};
    cfg.mode = CQ_MODE_PAPER;
    cfg.order_quote = cq_dec_make(100, 0);
    cfg.entry_type = CQ_TRADER_MARKET;
    cfg.stop_loss_pct = cq_dec_make(2, 0);
    cfg.take_profit_pct = cq_dec_make(4, 0);
    cfg.insufficient_scale = cq_dec_make(5, 1);
    cfg.insufficient_retries = 2;
    cfg.quarantine_ms = 20000;
    cfg.unknown_query_every_ms = 1000;
    cfg.reconcile_every_ms = 60000;
    cfg.poll_orders_every_ms = 2000;
    cfg.account_retry_min_ms = 500;
    cfg.account_retry_max_ms = 8000;
    cfg.exchange_info_every_ms = 3600000;
    cfg.risk.max_open_positions = 3;
    cfg.risk.max_position_notional = cq_dec_make(1000, 0);
    cfg.risk.max_total_exposure = cq_dec_make(1500, 0);
    cfg.risk.max_daily_loss = cq_dec_make(400, 0);
    cfg.risk.max_orders_per_minute = 30;
    *out = cfg;
}

Test(trader_payloads, every_action_and_payload_is_byte_identical_to_the_golden_trace, .timeout = 60)
{
    struct cq_trader_core_config cfg;
    config(&cfg);
    struct cq_err err = {0};
    struct cq_trader_core *c = cq_trader_core_new(&cfg, &err);
    cr_assert_not_null(c, "%s", err.message);
    run(c);
    cq_trader_core_free(c);

    if (getenv("CQ_REGEN_GOLDEN") != NULL) {
        FILE *f = fopen(GOLDEN, "wb");
        cr_assert_not_null(f, "cannot write %s", GOLDEN);
        cr_assert_eq(fwrite(trace, 1, trace_len, f), trace_len);
        fclose(f);
        cr_log_warn("re-recorded %s (%zu bytes)", GOLDEN, trace_len);
    }
    size_t glen = 0;
    char *golden = slurp(GOLDEN, &glen);
    cr_assert_not_null(golden, "no %s: record it with CQ_REGEN_GOLDEN=1", GOLDEN);
    size_t i = 0;
    while (i < glen && i < trace_len && golden[i] == trace[i]) {
        i++;
    }
    if (i != glen || i != trace_len) {
        FILE *f = fopen("trader_core_trace.out", "wb");
        if (f != NULL) {
            fwrite(trace, 1, trace_len, f);
            fclose(f);
        }
        size_t line = 1;
        for (size_t k = 0; k < i; k++) {
            line += golden[k] == '\n';
        }
        cr_assert_fail("the trace differs from %s at byte %zu (line %zu); the new trace is in "
                       "trader_core_trace.out",
                       GOLDEN, i, line);
    }
    free(golden);
    free(trace);
}

/* The checkpoint's "seen" text is kept as ids arrive and moved back to
 * the top of its buffer every 16,384 ids: after 40,000 ids (the ring of
 * 4,096 wrapped many times, the text moved twice) every checkpoint still
 * lists exactly the newest 4,096 ids, newest first, as base64url of each
 * id's first 64 bits. */
Test(trader_payloads, checkpoint_seen_text_survives_wraps_and_moves, .timeout = 60)
{
    struct cq_trader_core_config cfg;
    config(&cfg);
    cfg.risk.kill_switch = true; /* every signal decided (refused), none sent */
    struct cq_err err = {0};
    struct cq_trader_core *c = cq_trader_core_new(&cfg, &err);
    cr_assert_not_null(c, "%s", err.message);
    start_ready(c);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    enum { N = 40000, RING = CQ_TRADER_SIGNALS_SEEN_MAX };
    uint64_t *ids = malloc(N * sizeof(*ids));
    char *want = malloc(RING * 11 + 1);
    cr_assert(ids != NULL && want != NULL);
    size_t checked = 0;
    for (unsigned e = 0; e < N; e++) {
        now_ms += 31000; /* past the 30 s rule: a checkpoint after every signal */
        ids[e] = (uint64_t)e * 0x9e3779b97f4a7c15ULL ^ 0x5bd1e995ULL;
        struct cq_signal *sg = &EV.u.signal;
        snprintf(sg->id, sizeof(sg->id), "%016llx%016x", (unsigned long long)ids[e], e);
        cq_strlcpy(sg->symbol, "BTCUSDT", sizeof(sg->symbol));
        sg->side = CQ_SIDE_BUY;
        sg->reference_price = cq_dec_make(50000, 0);
        EV.kind = CQ_TRADER_EV_SIGNAL;
        EV.now_ms = now_ms;
        cr_assert_eq(cq_trader_core_on_event(c, &EV, &OUT), 0);
        const char *ck = NULL;
        for (size_t i = 0; i < OUT.n; i++) {
            if (OUT.a[i].kind == CQ_TRADER_ACT_JOURNAL &&
                OUT.a[i].u.journal.type == CQ_TRADER_REC_TRADER_CHECKPOINT) {
                ck = cq_trader_action_payload(&OUT.a[i]);
                cr_assert_eq(strlen(ck), OUT.a[i].u.journal.len);
            }
        }
        cr_assert_not_null(ck, "no checkpoint after signal %u", e);
        size_t n = e + 1 < RING ? e + 1 : RING;
        /* every checkpoint: its 3 newest and 3 oldest ids; every 997th: all */
        bool all = e % 997 == 0 || e >= N - 3;
        for (size_t j = 0; j < n; j++) {
            if (!all && j == 3 && n > 6) {
                j = n - 3;
            }
            uint64_t v = ids[e - j];
            for (int i = 0; i < 11; i++) {
                want[j * 11 + (size_t)i] = b64[(v >> (60 - 6 * i)) & 63];
            }
        }
        want[n * 11] = '\0';
        const char *seen = strstr(ck, ",\"seen\":\"");
        cr_assert_not_null(seen);
        seen += 9;
        for (size_t j = 0; j < n; j++) {
            if (!all && j == 3 && n > 6) {
                j = n - 3;
            }
            cr_assert_eq(memcmp(seen + j * 11, want + j * 11, 11), 0,
                         "seen text wrong after %u ids (id %zu from the newest)", e + 1, j);
        }
        char tail[64];
        snprintf(tail, sizeof(tail), "\",\"seen_dropped\":0,\"ms\":%lld}", (long long)now_ms);
        cr_assert_str_eq(seen + n * 11, tail);
        checked++;
    }
    cr_assert_eq(checked, N);
    free(ids);
    free(want);
    cq_trader_core_free(c);
}

/* The text after "<key>": in p, up to the next quote or comma. */
static void field_text(const char *p, const char *key, char *out, size_t cap)
{
    const char *f = strstr(p, key);
    cr_assert_not_null(f, "no %s in %s", key, p);
    f += strlen(key);
    if (*f == '"') {
        f++;
    }
    size_t n = strcspn(f, "\",}");
    cr_assert_lt(n, cap);
    memcpy(out, f, n);
    out[n] = '\0';
}

/* Numbers are written by register (up to 16 digits) and table (longer)
 * paths: both print exactly what cq_dec_format and %llu print, at every
 * length, scale and sign the types allow. */
Test(trader_payloads, numbers_print_exactly_at_every_length_scale_and_sign)
{
    struct cq_trader_core_config cfg;
    config(&cfg);
    struct cq_err err = {0};
    struct cq_trader_core *c = cq_trader_core_new(&cfg, &err);
    cr_assert_not_null(c, "%s", err.message);
    start_ready(c);
    struct cq_signal *sg = &EV.u.signal;
    cq_strlcpy(sg->id, "0123456789abcdef0123456789abcdef", sizeof(sg->id));
    cq_strlcpy(sg->symbol, "BTCUSDT", sizeof(sg->symbol));
    sg->side = CQ_SIDE_BUY;
    sg->reference_price = cq_dec_make(50000, 0);
    feed(c, CQ_TRADER_EV_SIGNAL);
    const cq_dec decs[] = {
        cq_dec_make(1, 0),
        cq_dec_make(7, 1),
        cq_dec_make(1, 8),
        cq_dec_make(-1, 8),
        cq_dec_make(1, 15), /* 16 digits with the point: the table path */
        cq_dec_make(1, 14), /* 15 digits and the point: the register path */
        cq_dec_make(1, 18),
        cq_dec_make(-1, 18),
        cq_dec_make(999999999999999, 15),
        cq_dec_make(9999999999999999, 8),
        cq_dec_make(999999999999999, 8),
        cq_dec_make(10000000000000000, 8),
        cq_dec_make(123456789012345678, 9),
        cq_dec_make(INT64_MAX, 0),
        cq_dec_make(INT64_MAX, 18),
        cq_dec_make(INT64_MIN + 1, 3),
        cq_dec_make(INT64_MIN, 0),
        cq_dec_make(10000000, 0),
        cq_dec_make(99999999, 2),
        cq_dec_make(100000000, 0),
    };
    const uint64_t ids[] = {1,
                            9,
                            10,
                            99999999,
                            100000000,
                            999999999999999,
                            9999999999999999ULL,
                            10000000000000000ULL,
                            12345678901234567890ULL,
                            UINT64_MAX};
    size_t n_cases =
        CQ_ARRAY_LEN(decs) > CQ_ARRAY_LEN(ids) ? CQ_ARRAY_LEN(decs) : CQ_ARRAY_LEN(ids);
    for (size_t i = 0; i < n_cases; i++) {
        struct cq_trader_order_update *u = &EV.u.order;
        cq_strlcpy(u->symbol, "BTCUSDT", sizeof(u->symbol));
        cq_strlcpy(u->client_id, "cq1-0123456789abcdef0123456789abcdef", sizeof(u->client_id));
        u->order_id = ids[i % CQ_ARRAY_LEN(ids)];
        u->side = CQ_SIDE_BUY;
        u->type = CQ_TRADER_MARKET;
        u->state = CQ_TRADER_OS_OPEN;
        u->trade_id = ids[(i + 3) % CQ_ARRAY_LEN(ids)] ^ (i << 56); /* new each time */
        uint64_t trade_id = u->trade_id, order_id = u->order_id;
        cq_dec commission = decs[i % CQ_ARRAY_LEN(decs)];
        u->commission = commission;
        cq_strlcpy(u->commission_asset, "XYZ", sizeof(u->commission_asset));
        feed(c, CQ_TRADER_EV_ORDER_UPDATE);
        const char *fill = NULL;
        for (size_t k = 0; k < OUT.n; k++) {
            if (OUT.a[k].kind == CQ_TRADER_ACT_JOURNAL && OUT.a[k].u.journal.type == 7) {
                fill = cq_trader_action_payload(&OUT.a[k]);
            }
        }
        cr_assert_not_null(fill, "case %zu: no order.fill", i);
        char got[64], want[64];
        field_text(fill, "\"commission\":", got, sizeof(got));
        cr_assert_str_eq(got, cq_dec_format(commission, want, CQ_DEC_STR_MAX), "case %zu", i);
        field_text(fill, "\"trade_id\":", got, sizeof(got));
        snprintf(want, sizeof(want), "%llu", (unsigned long long)trade_id);
        cr_assert_str_eq(got, want, "case %zu", i);
        field_text(fill, "\"order_id\":", got, sizeof(got));
        snprintf(want, sizeof(want), "%llu", (unsigned long long)order_id);
        cr_assert_str_eq(got, want, "case %zu", i);
        field_text(fill, "\"ms\":", got, sizeof(got));
        snprintf(want, sizeof(want), "%lld", (long long)now_ms);
        cr_assert_str_eq(got, want, "case %zu", i);
    }
    free(trace);
    trace = NULL;
    cq_trader_core_free(c);
}
