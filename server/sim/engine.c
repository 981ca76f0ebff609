/*
 * engine.c — coinquant-simex's exchange core: symbols and filters, one
 * account's balances, orders, matching against the market model's book,
 * trades and ids. The interface and its Binance semantics are in
 * sim-engine.h; this comment is about how it is built.
 *
 * What it owns. One struct cq_sim__engine holds the symbol table (filters
 * canonicalised to 8 decimals), the fee rates, the listener, and a struct
 * engine_state with everything cq_sim__engine_save writes: balances, every order
 * ever accepted, the retained trades, the next ids and the client-id
 * generator. Nothing is shared; the engine never calls out except to the
 * listener.
 *
 * Lock rule. Not thread-safe. The simulator serialises every call with its
 * one lock; listener callbacks run inside the call that caused them, must
 * copy what they keep, and must not call back into the engine.
 *
 * Invariants (the unit tests check them after every step of a long seeded
 * random sequence; cq_sim__engine_load checks them on its input):
 *   I1 every free and locked balance is >= 0 at scale 8, and free + locked
 *      fits an int64 mantissa, so moving money between them cannot
 *      overflow;
 *   I2 per asset, locked == the sum of what the open orders need:
 *        open BUY:  ceil8((orig_qty - executed_qty) * price) of the quote,
 *        open SELL: orig_qty - executed_qty of the base,
 *      so an order that closes (filled, canceled, expired) leaves exactly
 *      nothing locked: no dust;
 *   I3 an order is open (NEW or PARTIALLY_FILLED) iff it is on its
 *      symbol's open list and on the global open list, both oldest first;
 *      only LIMIT GTC, LIMIT_MAKER and GTC stop orders are ever open; an
 *      open order is working (on the book) unless it is a stop order not
 *      yet triggered (NEW, nothing executed, working_ms -1);
 *   I4 the order array is sorted by id, strictly increasing, every id in
 *      [first_order_id, next_order_id); next_order_id - first_order_id ==
 *      the orders kept + orders_dropped (ids of dropped closed orders are
 *      the gaps); the retained trades have contiguous ids ending at
 *      next_trade_id - 1;
 *   I5 the client-id index maps (symbol, client id) to the newest order
 *      with that id; at most one of those orders is open;
 *   I6 per symbol and book side, what our orders took from a level since
 *      the model last replaced it never exceeds what the level showed
 *      (see "consumed liquidity"): a swept level is never offered again
 *      unchanged;
 *   I7 per resting order, its maker fills from public trades plus what
 *      went to the queue ahead of it never exceed the public volume that
 *      traded at or through its price since it joined, and one trade
 *      never fills our orders for more than its quantity (see "queue
 *      model").
 * The money ones, I6 and I7 are checked where they change, in every build
 * (ENGINE_INVARIANT: a breach stops the process with a clear error).
 *
 * Matching (issue 19). A taker walks the book's levels and, under a queue
 * model, our own resting orders on the other side at their place in the
 * queue (self-trade prevention decides what meeting one does: plan_prevent,
 * apply_stp). Resting orders fill from public trades through the queue
 * model (cq_sim__engine_on_trade) and from levels that cross them
 * (cq_sim__engine_on_book); SIM_QUEUE_NONE keeps the rule before issue 19
 * (legacy_on_market) for comparison.
 *
 * Amounts. Every amount the engine stores has scale 8 (Binance's asset and
 * commission precision). Request values with more decimals fail the filter
 * they belong to. Rounding is fixed here, once:
 *   - a fill's quote amount = price * qty truncated to 8 decimals (exact for
 *     every real filter set, where tick * step has at most 8 decimals);
 *   - a BUY's lock = remaining qty * limit price rounded up (CEIL);
 *   - commission = gross received * bps / 10000 rounded UP to 8 decimals:
 *     the simulated exchange never under-charges, and for bps <= 10000 the
 *     commission never exceeds the gross, so received = gross - commission
 *     >= 0. A BUY pays it in the base received, a SELL in the quote.
 *   Truncating the fill and rounding the lock up make
 *   ceil(R*P) >= floor(q*p) + ceil((R-q)*P) for any fill at p <= P, so a fill
 *   never needs more than its order holds, and the excess goes back to free.
 *
 * Calls that change state run in two phases: prepare() validates in the
 * Binance order, matches against the book view and computes the balances
 * after the order on local copies with every overflow checked; commit then
 * reserves capacity (the only step that may fail, and it changes nothing)
 * and applies, emitting listener events as it goes. A rejected call changes
 * nothing but the rejection counter.
 *
 * Memory. The order array (sorted by id; lookup by binary search) doubles
 * up to max_orders (SIM_MAX_ORDERS_DEFAULT); a new order then first drops
 * the oldest closed orders, max_orders / 4 of them (at least one), and
 * rebuilds the open lists and the client-id index in one O(n) pass, so the
 * cost per order stays O(1) amortised; open orders are never dropped, and
 * place answers -CQ_EFULL only when all max_orders are open. The trade store doubles up to
 * max_trades, then becomes a ring that forgets the oldest trades (myTrades
 * history is bounded; fills never stop). The client-id index is an
 * open-addressing table (linear probing, load <= 1/2) over all orders, which
 * GET /order by origClientOrderId needs for closed orders too. Those three
 * amortised growths are the only allocations after cq_sim__engine_new.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim-engine.h"

#define AMOUNT_SCALE 8u
#define NO_IDX UINT32_MAX
#define DEFAULT_MAX_TRADES ((size_t)1000000)
#define MAX_CAPACITY ((size_t)1 << 30)   /* indices are uint32 */
#define MAX_FIRST_ID ((uint64_t)1 << 53) /* ids stay exact JSON numbers */
#define CLIENT_ID_MAX 36
#define GEN_CLIENT_ID_LEN 22
#define STATE_VERSION 2     /* 2: order ids may have gaps (dropped orders) */
#define STATE_VERSION_MIN 1 /* 1: contiguous ids, no stats.orders_dropped */
#define MAX_BPS 10000u

/* Codes for requests the REST layer should have refused (kept defensive). */
#define SIM_ERR_UNKNOWN -1000
#define SIM_ERR_ILLEGAL_CHARS -1100
#define SIM_ERR_MANDATORY -1102
#define SIM_ERR_NOT_REQUIRED -1106
#define SIM_ERR_TIF_NOT_REQUIRED -1114
#define SIM_ERR_INVALID_TYPE -1116
#define SIM_ERR_INVALID_SIDE -1117
#define MSG_UNKNOWN_ERROR "An unknown error occurred while processing the request."
#define SIM_MSG_STOP_TIF                                                                           \
    "Stop orders with timeInForce IOC or FOK are not supported by coinquant-simex."
#define MSG_BAD_CLIENT_ID                                                                          \
    "Illegal characters found in parameter 'newClientOrderId'; legal range is "                    \
    "'^[a-zA-Z0-9-_]{1,36}$'."

static const cq_dec ZERO8 = {0, AMOUNT_SCALE};
static const cq_dec MAX_PRICE = {INT64_MAX, 0}; /* no ask crosses it: no resting SELL */
static const cq_dec ONE = {1, 0};

/* ---- invariants -------------------------------------------------------------- */

/* A money invariant (I1..I6 above, and the rounding and fill rules that
 * keep them), checked in every build: NDEBUG does not remove it. A breach
 * means the account in memory is already wrong, so the engine does not go
 * on: it writes one JSON line naming what broke (event
 * "cq_sim__invariant_broken", the check, the function and the amounts) to
 * stderr and aborts the process. Aborting rather than refusing further
 * orders is deliberate: a failed state would still answer balance and
 * order queries from wrong numbers and would let the simulator's periodic
 * --state save write them to disk; after an abort the state file holds the
 * last good state. These checks are cheap (a comparison on amounts the
 * call already has in hand); the O(open orders) audit of I2 stays in the
 * tests and in cq_sim__engine_load. */
#define ENGINE_INVARIANT(cond, ...)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            invariant_broken(__func__, #cond, __VA_ARGS__);                                        \
        }                                                                                          \
    } while (0)

#define INVARIANT_MSG_MAX 400

/* An amount as text for an invariant message: DTXT(x) is valid until the
 * end of the full expression (C11 6.2.4p8), which the call to
 * invariant_broken is. */
struct dec_text {
    char s[CQ_DEC_STR_MAX];
};

static struct dec_text dec_text(cq_dec d)
{
    struct dec_text t;
    cq_dec_format(d, t.s, sizeof(t.s));
    return t;
}

#define DTXT(d) (dec_text(d).s)

/* s with '"' and '\\' dropped, so it can sit in a JSON string (check texts
 * and engine-made messages hold nothing else that needs escaping). */
static void json_safe(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (*r != '"' && *r != '\\' && (unsigned char)*r >= 0x20) {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static _Noreturn void invariant_broken(const char *where, const char *check, const char *fmt, ...)
    CQ_PRINTF(3, 4);

static _Noreturn void invariant_broken(const char *where, const char *check, const char *fmt, ...)
{
    char msg[INVARIANT_MSG_MAX];
    char chk[INVARIANT_MSG_MAX];
    char ts[32] = "";
    struct timespec now;
    struct tm tm;
    va_list ap;
    va_start(ap, fmt);
    /* bounded: a longer message is cut, which is fine for a last word */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cq_strlcpy(chk, check, sizeof(chk)); /* cut the same way */
    json_safe(msg);
    json_safe(chk);
    if (clock_gettime(CLOCK_REALTIME, &now) == 0 && gmtime_r(&now.tv_sec, &tm) != NULL) {
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    fprintf(stderr,
            "{\"ts\":\"%s\",\"level\":\"error\",\"service\":\"simex\","
            "\"event\":\"sim_invariant_broken\",\"msg\":\"simulator engine invariant "
            "broken in %s: %s; stopping (the state file keeps the last good state)\","
            "\"check\":\"%s\"}\n",
            ts, where, msg, chk);
    fflush(stderr);
    abort();
}

/* ---- data ------------------------------------------------------------------ */

/* A resting order's place in the queue at its price (see "queue model"
 * below). Market state, not account state: not saved; a loaded order
 * joins again at the next market event (known false). All at scale 8. */
struct queue_pos {
    cq_dec ahead;       /* public quantity estimated ahead of it */
    cq_dec level_shown; /* what its level displayed at the last book update */
    cq_dec traded;      /* trade volume at its price since then (probabilistic) */
    cq_dec seen;        /* public volume traded at or through its price since it joined */
    cq_dec to_ahead;    /* of `seen`, what went to the queue ahead */
    cq_dec from_trades; /* its maker fills from public trades */
    bool known;         /* it has joined: `ahead` is an estimate */
};

struct order_rec {
    struct cq_sim__order o;
    uint32_t prev, next;   /* the symbol's open list, oldest first (NO_IDX = end) */
    uint32_t gprev, gnext; /* the global open list, oldest first */
    struct queue_pos q;
};

struct open_list {
    uint32_t head, tail;
    size_t count;
};

/* The key's hash is kept beside the index so probing and rehashing rarely
 * touch an order record. */
struct cid_slot {
    uint32_t idx1; /* 0 = empty, else order index + 1 */
    uint32_t hash;
};

/* Everything cq_sim__engine_save writes, and what load replaces in one swap. */
struct engine_state {
    struct order_rec *orders; /* owned; sorted by order_id (I4) */
    size_t n_orders, cap_orders;
    struct cq_sim__trade *trades; /* owned; a ring once cap_trades == max_trades */
    size_t n_trades, cap_trades, trades_head;
    struct cid_slot *cid_slots; /* owned; the client-id index */
    size_t cid_cap, cid_used;
    struct cq_sim__balance bal[SIM_ASSETS_MAX];
    size_t n_assets;
    int base_asset[SIM_SYMBOLS_MAX], quote_asset[SIM_SYMBOLS_MAX];
    struct open_list open[SIM_SYMBOLS_MAX];
    struct open_list all_open;
    uint64_t first_order_id, next_order_id, next_trade_id;
    uint64_t rng; /* splitmix64 state for generated client ids */
    uint64_t orders_placed, orders_rejected, orders_canceled, fills;
    uint64_t orders_dropped;      /* closed orders dropped from the history */
    uint64_t orders_first_filled; /* not persisted: the order counter's, per run */
};

/* One taker fill planned by prepare(); shown is the quantity the level
 * displayed (raw), for the ledger. self_idx: the index of our own resting
 * order it trades with (STP NONE), else NO_IDX (a public level). */
struct plan_fill {
    cq_dec price, qty, cost, commission, shown;
    uint32_t self_idx;
};

/* A self-trade prevented by prepare(): our resting order `idx` met the
 * taker; m is the report (match id assigned at commit). After fill
 * `after_fill` fills of the taker (the order of events). */
struct plan_stp {
    uint32_t idx;
    size_t after_fill;
    struct cq_sim__prevented_match m;
};

/* What our orders took from one level of the model's book, kept until the
 * refill rule says the level is back (see "consumed liquidity" below); the
 * queue position of a resting order is in its order_rec (struct
 * queue_pos). */
struct level_use {
    cq_dec price; /* the level's price at scale 8, rounded as takers see it: its key */
    cq_dec shown; /* the quantity the book displayed when we last took from it (raw) */
    cq_dec taken; /* what our orders took from it since: 0 < taken <= shown */
};

/* One side of one symbol's book: at most one entry per price the current
 * book shows, so at most SIM_DEPTH_MAX. */
struct side_ledger {
    struct level_use use[SIM_DEPTH_MAX];
    size_t n;
};

enum { LEDGER_ASKS, LEDGER_BIDS };

/* A level as on_book offers it to resting orders: what is left of it. */
struct pool_level {
    cq_dec price, left, shown;
};

/* One of our resting orders a taker walk or a public trade considers. */
struct scan_ent {
    uint32_t idx;
    cq_dec price;
};

/* One stop of a taker's walk, best price first: a public level (or part
 * of one) with what it still offers, or one of our resting orders
 * (self_idx). */
struct walk_seg {
    cq_dec price, avail, shown;
    uint32_t self_idx; /* NO_IDX: public */
};
#define WALK_MAX (2 * SIM_DEPTH_MAX + SIM_QUEUE_SCAN_MAX)

/* prepare()'s result: what place will do. */
struct plan {
    cq_dec price, qty, quote_qty; /* the request at scale 8 (0 when absent) */
    cq_dec stop_price;            /* at scale 8; 0 unless a stop order */
    cq_dec orig_qty, exec_qty, cum_quote;
    enum cq_sim__order_status final_status;
    bool rests;                         /* a GTC / LIMIT_MAKER remainder goes on the book */
    bool crosses;                       /* a LIMIT_MAKER would take */
    struct cq_sim__balance base, quote; /* the account after the order */
    size_t n_fills;
    struct plan_fill fills[WALK_MAX];
    size_t n_stp;
    struct plan_stp stp[SIM_QUEUE_SCAN_MAX];
    bool taker_prevented; /* EXPIRE_TAKER / EXPIRE_BOTH stopped the taker */
    cq_dec taker_prevented_qty;
};

struct cq_sim__engine {
    struct cq_sim__symbol symbols[SIM_SYMBOLS_MAX];
    size_t n_symbols;
    unsigned maker_bps, taker_bps;
    enum cq_sim__queue_model queue_model;
    unsigned queue_power;
    enum cq_sim__refill refill; /* resolved: CHANGE or NET */
    size_t max_orders, max_trades;
    struct cq_sim__engine_listener listener;
    struct engine_state st;
    /* per-call scratch, so no call allocates for it */
    struct plan plan;
    struct pool_level mk_asks[SIM_DEPTH_MAX], mk_bids[SIM_DEPTH_MAX];
    struct scan_ent scan[SIM_QUEUE_SCAN_MAX];
    struct walk_seg walk[WALK_MAX];
    /* the latest place's prevented matches (cq_sim__engine_last_prevented) */
    struct cq_sim__prevented_match prevented[SIM_QUEUE_SCAN_MAX];
    size_t n_prevented;
    /* per process, not saved (market-side counters) */
    uint64_t next_match_id; /* preventedMatchId, from 0 */
    uint64_t prevented_matches, queue_scan_truncated;
    /* consumed liquidity per symbol and book side; market state, not
     * account state: not saved, and a load leaves it alone */
    struct side_ledger ledger[SIM_SYMBOLS_MAX][2];
    bool touched[SIM_ASSETS_MAX];
    struct cq_sim__balance before[SIM_ASSETS_MAX];
    struct cq_sim__balance changed[SIM_ASSETS_MAX];
    char cancel_client_id[SIM_CLIENT_ID_LEN];
};

/* ---- amounts --------------------------------------------------------------- */

/* v at scale 8 exactly; fails if v has more significant decimals or does
 * not fit. */
static int to_amount(cq_dec v, cq_dec *out)
{
    return cq_dec_rescale(v, AMOUNT_SCALE, CQ_ROUND_EXACT, out);
}

/* Why v cannot be a stored amount, or NULL if it can. */
static const char *amount_problem(cq_dec v)
{
    cq_dec out;
    if (v.m < 0) {
        return "is negative";
    }
    if (cq_dec_rescale(v, AMOUNT_SCALE, CQ_ROUND_DOWN, &out) < 0) {
        return "is above the maximum " SIM_AMOUNT_MAX_TEXT;
    }
    if (to_amount(v, &out) < 0) {
        return "has more than 8 decimals";
    }
    return NULL;
}

/* Checked in-place arithmetic: false on overflow (*acc unchanged). */
static bool dadd(cq_dec *acc, cq_dec v)
{
    return cq_dec_add(*acc, v, acc) == 0;
}

static bool dsub(cq_dec *acc, cq_dec v)
{
    return cq_dec_sub(*acc, v, acc) == 0;
}

/* For arithmetic prepare() or an invariant has already proven in range
 * (I1): an overflow here is a broken invariant. */
static void add_ok(cq_dec *acc, cq_dec v)
{
    bool ok = dadd(acc, v);
    ENGINE_INVARIANT(ok, "an amount left the int64 range (%s + %s)", DTXT(*acc), DTXT(v));
}

static void sub_ok(cq_dec *acc, cq_dec v)
{
    bool ok = dsub(acc, v);
    ENGINE_INVARIANT(ok, "an amount left the int64 range (%s - %s)", DTXT(*acc), DTXT(v));
}

static bool dec_eq(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(a, b) == 0;
}

static bool dec_lt(cq_dec a, cq_dec b)
{
    return cq_dec_cmp(a, b) < 0;
}

/* A fill's quote amount: truncated (see the top comment). */
static int fill_quote(cq_dec qty, cq_dec price, cq_dec *out)
{
    return cq_dec_mul(qty, price, AMOUNT_SCALE, CQ_ROUND_DOWN, out);
}

/* What a BUY of qty at price locks: rounded up. */
static int buy_lock(cq_dec qty, cq_dec price, cq_dec *out)
{
    return cq_dec_mul(qty, price, AMOUNT_SCALE, CQ_ROUND_CEIL, out);
}

/* Commission on gross at bps: rounded up (away from zero). */
static int commission_of(cq_dec gross, unsigned bps, cq_dec *out)
{
    return cq_dec_mul(gross, cq_dec_make((int64_t)bps, 4), AMOUNT_SCALE, CQ_ROUND_UP, out);
}

static bool is_open(const struct cq_sim__order *o)
{
    return o->status == SIM_NEW || o->status == SIM_PARTIALLY_FILLED;
}

/* I2: what an open order holds locked, in the asset it pays with. */
static int order_need(const struct cq_sim__order *o, cq_dec *out)
{
    cq_dec rem = o->orig_qty;
    if (!dsub(&rem, o->executed_qty)) {
        return -CQ_ETOOBIG;
    }
    if (o->side == SIM_SELL) {
        *out = rem;
        return 0;
    }
    return buy_lock(rem, o->price, out);
}

/* ---- names and rejections -------------------------------------------------- */

static bool client_id_valid(const char *s)
{
    size_t n = strnlen(s, CLIENT_ID_MAX + 1);
    if (n == 0 || n > CLIENT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

static bool asset_name_valid(const char *s)
{
    size_t n = strnlen(s, SIM_ASSET_LEN);
    if (n == 0 || n >= SIM_ASSET_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

static int reject(struct cq_sim__reject *rej, int code, const char *msg)
{
    if (rej != NULL) {
        rej->code = code;
        /* bounded: msg is one of this file's constants, the longest
         * (MSG_BAD_CLIENT_ID) about 100 of SIM_REJECT_MSG_LEN's 200 bytes */
        cq_strlcpy(rej->msg, msg, sizeof(rej->msg));
    }
    return -CQ_EVENUE;
}

static int reject_filter(struct cq_sim__reject *rej, const char *filter)
{
    if (rej != NULL) {
        rej->code = SIM_ERR_FILTER;
        /* bounded: filter names are literals of at most 15 characters */
        snprintf(rej->msg, sizeof(rej->msg), "Filter failure: %s", filter);
    }
    return -CQ_EVENUE;
}

static int reject_param(struct cq_sim__reject *rej, int code, const char *fmt_name,
                        const char *param)
{
    if (rej != NULL) {
        rej->code = code;
        /* bounded: param is a parameter-name literal (at most 16 characters) */
        if (strcmp(fmt_name, "mandatory") == 0) {
            snprintf(rej->msg, sizeof(rej->msg),
                     "Mandatory parameter '%s' was not sent, was empty/null, or malformed.", param);
        } else {
            snprintf(rej->msg, sizeof(rej->msg), "Parameter '%s' sent when not required.", param);
        }
    }
    return -CQ_EVENUE;
}

/* Capacity (max_orders, memory, the int64 range of an amount): the call
 * fails with rc and the REST layer answers -1000. */
static int reject_capacity(struct cq_sim__reject *rej, int rc)
{
    reject(rej, SIM_ERR_UNKNOWN, MSG_UNKNOWN_ERROR);
    return rc;
}

/* ---- ids --------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 22 alphanumeric characters: 6-bit chunks of splitmix64 output, chunks
 * >= 62 skipped, so every character is uniform. */
static void gen_client_id(uint64_t *rng, char out[SIM_CLIENT_ID_LEN])
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = 0;
    while (n < GEN_CLIENT_ID_LEN) {
        uint64_t r = splitmix64(rng);
        for (int k = 0; k < 10 && n < GEN_CLIENT_ID_LEN; k++, r >>= 6) {
            unsigned v = (unsigned)(r & 63u);
            if (v < 62) {
                out[n++] = alnum[v];
            }
        }
    }
    out[n] = '\0';
}

/* ---- client-id index ----------------------------------------------------------- */

static uint32_t cid_hash(int symbol_idx, const char *cid)
{
    uint32_t h = 2166136261u ^ ((uint32_t)symbol_idx * 0x9e3779b9u);
    for (const unsigned char *p = (const unsigned char *)cid; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    return h;
}

/* The slot holding (symbol_idx, cid), or the empty slot where it would go.
 * The table is never full (load <= 1/2). */
static size_t cid_slot(const struct engine_state *st, int symbol_idx, const char *cid, uint32_t h)
{
    size_t mask = st->cid_cap - 1;
    size_t i = h & mask;
    for (;;) {
        const struct cid_slot *sl = &st->cid_slots[i];
        if (sl->idx1 == 0) {
            return i;
        }
        if (sl->hash == h) {
            const struct cq_sim__order *o = &st->orders[sl->idx1 - 1].o;
            if (o->symbol_idx == symbol_idx && strcmp(o->client_id, cid) == 0) {
                return i;
            }
        }
        i = (i + 1) & mask;
    }
}

static struct order_rec *cid_find(const struct engine_state *st, int symbol_idx, const char *cid)
{
    uint32_t v;
    if (st->cid_cap == 0 || cid == NULL || cid[0] == '\0') {
        return NULL;
    }
    v = st->cid_slots[cid_slot(st, symbol_idx, cid, cid_hash(symbol_idx, cid))].idx1;
    return v == 0 ? NULL : &st->orders[v - 1];
}

/* Room for one more key. */
static int cid_reserve(struct engine_state *st)
{
    size_t cap;
    struct cid_slot *slots;
    if ((st->cid_used + 1) * 2 <= st->cid_cap) {
        return 0;
    }
    cap = st->cid_cap != 0 ? st->cid_cap * 2 : 256;
    slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return -CQ_ENOMEM;
    }
    for (size_t i = 0; i < st->cid_cap; i++) {
        if (st->cid_slots[i].idx1 != 0) {
            size_t j = st->cid_slots[i].hash & (cap - 1);
            while (slots[j].idx1 != 0) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = st->cid_slots[i];
        }
    }
    free(st->cid_slots);
    st->cid_slots = slots;
    st->cid_cap = cap;
    return 0;
}

/* Index order idx under its key (after cid_reserve); a reused key now
 * points at this newer order. */
static void cid_put(struct engine_state *st, uint32_t idx)
{
    const struct cq_sim__order *o = &st->orders[idx].o;
    uint32_t h = cid_hash(o->symbol_idx, o->client_id);
    size_t i = cid_slot(st, o->symbol_idx, o->client_id, h);
    if (st->cid_slots[i].idx1 == 0) {
        st->cid_used++;
    }
    st->cid_slots[i].idx1 = idx + 1;
    st->cid_slots[i].hash = h;
}

/* ---- orders, open lists, trades ------------------------------------------------- */

static void list_init(struct open_list *l);
static void open_link(struct engine_state *st, uint32_t idx);

/* Drop the oldest closed orders until at most `keep` orders remain (or no
 * closed order is left), then rebuild what holds array indices: the open
 * lists (in id order, which is time order) and the client-id index (in id
 * order, so a reused client id maps to the newest kept order again, I5).
 * Allocates nothing. Returns the number dropped. */
static size_t orders_drop_closed(struct engine_state *st, size_t keep)
{
    size_t excess = st->n_orders > keep ? st->n_orders - keep : 0;
    size_t w = 0;
    size_t dropped = 0;
    if (excess == 0) {
        return 0;
    }
    for (size_t r = 0; r < st->n_orders; r++) {
        if (dropped < excess && !is_open(&st->orders[r].o)) {
            dropped++;
            continue;
        }
        if (w != r) {
            st->orders[w] = st->orders[r];
        }
        w++;
    }
    if (dropped == 0) {
        return 0;
    }
    st->n_orders = w;
    st->orders_dropped += dropped;
    for (size_t i = 0; i < SIM_SYMBOLS_MAX; i++) {
        list_init(&st->open[i]);
    }
    list_init(&st->all_open);
    if (st->cid_cap > 0) {
        memset(st->cid_slots, 0, st->cid_cap * sizeof(*st->cid_slots));
    }
    st->cid_used = 0;
    for (size_t i = 0; i < w; i++) {
        struct order_rec *rec = &st->orders[i];
        rec->prev = rec->next = rec->gprev = rec->gnext = NO_IDX;
        if (is_open(&rec->o)) {
            open_link(st, (uint32_t)i);
        }
        cid_put(st, (uint32_t)i);
    }
    return dropped;
}

/* The drop target at the limit: three quarters of it (at least one fewer). */
static size_t orders_keep_after_drop(size_t max_orders)
{
    size_t step = max_orders / 4 > 0 ? max_orders / 4 : 1;
    return max_orders - step;
}

static int orders_reserve(struct engine_state *st, size_t max_orders)
{
    size_t cap;
    struct order_rec *a;
    if (st->n_orders >= max_orders) {
        orders_drop_closed(st, orders_keep_after_drop(max_orders));
        if (st->n_orders >= max_orders) {
            return -CQ_EFULL; /* every kept order is open */
        }
    }
    if (st->n_orders < st->cap_orders) {
        return 0;
    }
    cap = st->cap_orders != 0 ? st->cap_orders * 2 : 256;
    if (cap > max_orders) {
        cap = max_orders;
    }
    a = realloc(st->orders, cap * sizeof(*a));
    if (a == NULL) {
        return -CQ_ENOMEM;
    }
    st->orders = a;
    st->cap_orders = cap;
    return 0;
}

/* Index of the first kept order with id >= order_id (n_orders if none). */
static size_t order_lower_bound(const struct engine_state *st, uint64_t order_id)
{
    size_t lo = 0, hi = st->n_orders;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->orders[mid].o.order_id < order_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct order_rec *order_by_id(const struct engine_state *st, uint64_t order_id)
{
    size_t i = order_lower_bound(st, order_id);
    if (i >= st->n_orders || st->orders[i].o.order_id != order_id) {
        return NULL;
    }
    return &st->orders[i];
}

static void list_init(struct open_list *l)
{
    l->head = NO_IDX;
    l->tail = NO_IDX;
    l->count = 0;
}

static void open_link(struct engine_state *st, uint32_t idx)
{
    struct order_rec *r = &st->orders[idx];
    struct open_list *l = &st->open[r->o.symbol_idx];
    struct open_list *g = &st->all_open;

    r->prev = l->tail;
    r->next = NO_IDX;
    if (l->tail != NO_IDX) {
        st->orders[l->tail].next = idx;
    } else {
        l->head = idx;
    }
    l->tail = idx;
    l->count++;

    r->gprev = g->tail;
    r->gnext = NO_IDX;
    if (g->tail != NO_IDX) {
        st->orders[g->tail].gnext = idx;
    } else {
        g->head = idx;
    }
    g->tail = idx;
    g->count++;
}

static void open_unlink(struct engine_state *st, uint32_t idx)
{
    struct order_rec *r = &st->orders[idx];
    struct open_list *l = &st->open[r->o.symbol_idx];
    struct open_list *g = &st->all_open;

    if (r->prev != NO_IDX) {
        st->orders[r->prev].next = r->next;
    } else {
        l->head = r->next;
    }
    if (r->next != NO_IDX) {
        st->orders[r->next].prev = r->prev;
    } else {
        l->tail = r->prev;
    }
    l->count--;

    if (r->gprev != NO_IDX) {
        st->orders[r->gprev].gnext = r->gnext;
    } else {
        g->head = r->gnext;
    }
    if (r->gnext != NO_IDX) {
        st->orders[r->gnext].gprev = r->gprev;
    } else {
        g->tail = r->gprev;
    }
    g->count--;
    r->prev = r->next = r->gprev = r->gnext = NO_IDX;
}

/* Room for `extra` more trades, up to max_trades (then the ring forgets the
 * oldest). */
static int trades_reserve(struct engine_state *st, size_t max_trades, size_t extra)
{
    size_t need = st->n_trades + extra;
    size_t cap;
    struct cq_sim__trade *a;
    if (need <= st->cap_trades || st->cap_trades >= max_trades) {
        return 0;
    }
    cap = st->cap_trades != 0 ? st->cap_trades * 2 : 256;
    if (cap < need) {
        cap = need;
    }
    if (cap > max_trades) {
        cap = max_trades;
    }
    /* The ring only wraps at max_trades, so below it trades_head is 0 and a
     * plain realloc keeps the order. */
    a = realloc(st->trades, cap * sizeof(*a));
    if (a == NULL) {
        return -CQ_ENOMEM;
    }
    st->trades = a;
    st->cap_trades = cap;
    return 0;
}

/* A slot for the next trade (after trades_reserve). */
static struct cq_sim__trade *trades_push(struct engine_state *st)
{
    struct cq_sim__trade *t;
    if (st->n_trades < st->cap_trades) {
        t = &st->trades[(st->trades_head + st->n_trades) % st->cap_trades];
        st->n_trades++;
    } else {
        t = &st->trades[st->trades_head];
        st->trades_head = (st->trades_head + 1) % st->cap_trades;
    }
    return t;
}

static const struct cq_sim__trade *trade_at(const struct engine_state *st, size_t i)
{
    return &st->trades[(st->trades_head + i) % st->cap_trades];
}

/* ---- assets and account_position ---------------------------------------------- */

static int asset_find(const struct engine_state *st, const char *asset)
{
    for (size_t i = 0; i < st->n_assets; i++) {
        if (strcmp(st->bal[i].asset, asset) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Index of asset, adding a zero balance if new; -CQ_EFULL if the table is. */
static int asset_add(struct engine_state *st, const char *asset)
{
    int i = asset_find(st, asset);
    if (i >= 0) {
        return i;
    }
    if (st->n_assets >= SIM_ASSETS_MAX) {
        return -CQ_EFULL;
    }
    i = (int)st->n_assets++;
    memset(&st->bal[i], 0, sizeof(st->bal[i]));
    /* bounded: callers pass names asset_name_valid accepted (< SIM_ASSET_LEN) */
    cq_strlcpy(st->bal[i].asset, asset, sizeof(st->bal[i].asset));
    st->bal[i].free = ZERO8;
    st->bal[i].locked = ZERO8;
    return i;
}

/* Remember an asset's balance before the call's first change to it. */
static void change_note(struct cq_sim__engine *e, int asset)
{
    if (!e->touched[asset]) {
        e->touched[asset] = true;
        e->before[asset] = e->st.bal[asset];
    }
}

/* One account_position with the assets whose balance differs from before
 * the call (in balance-table order); none if nothing changed. */
static void changes_end(struct cq_sim__engine *e, int64_t now_ms)
{
    size_t n = 0;
    for (size_t a = 0; a < e->st.n_assets; a++) {
        if (!e->touched[a]) {
            continue;
        }
        e->touched[a] = false;
        ENGINE_INVARIANT(e->st.bal[a].free.m >= 0 && e->st.bal[a].locked.m >= 0,
                         "I1: %s free %s locked %s (was free %s locked %s)", e->st.bal[a].asset,
                         DTXT(e->st.bal[a].free), DTXT(e->st.bal[a].locked),
                         DTXT(e->before[a].free), DTXT(e->before[a].locked));
        if (!dec_eq(e->before[a].free, e->st.bal[a].free) ||
            !dec_eq(e->before[a].locked, e->st.bal[a].locked)) {
            e->changed[n++] = e->st.bal[a];
        }
    }
    if (n > 0 && e->listener.account_position != NULL) {
        e->listener.account_position(e->listener.ctx, e->changed, n, now_ms);
    }
}

static void emit(struct cq_sim__engine *e, const struct cq_sim__order *o,
                 enum cq_sim__exec_type type, const struct cq_sim__fill *fill,
                 const char *orig_client_id, const char *cancel_client_id, int64_t now_ms)
{
    struct cq_sim__exec_report r;
    if (e->listener.execution_report == NULL) {
        return;
    }
    r.order = o;
    r.exec_type = type;
    r.fill = fill;
    r.orig_client_id = orig_client_id != NULL ? orig_client_id : "";
    r.cancel_client_id = cancel_client_id != NULL ? cancel_client_id : "";
    r.event_ms = now_ms;
    r.prevented = NULL;
    e->listener.execution_report(e->listener.ctx, &r);
}

/* ---- filters --------------------------------------------------------------------- *
 *
 * The rules are the one filter module's (server/exchange/filters.c,
 * include/cq/filters.h), shared with the trader: PRICE_FILTER, LOT_SIZE with
 * MARKET_LOT_SIZE's fallback to it, NOTIONAL, PERCENT_PRICE_BY_SIDE. Here
 * only the side's name changes. */

static enum cq_side filter_side(enum cq_sim__side side)
{
    return side == SIM_BUY ? CQ_SIDE_BUY : CQ_SIDE_SELL;
}

/* ---- the book ---------------------------------------------------------------------- */

/* The levels a taker on `side` walks, best first, at most SIM_DEPTH_MAX. */
static const struct cq_sim__level *taker_levels(const struct cq_sim__book_view *b,
                                                enum cq_sim__side side, size_t *n)
{
    const struct cq_sim__level *lv = side == SIM_BUY ? b->asks : b->bids;
    size_t cnt = side == SIM_BUY ? b->n_asks : b->n_bids;
    if (lv == NULL) {
        cnt = 0;
    }
    *n = cnt < SIM_DEPTH_MAX ? cnt : SIM_DEPTH_MAX;
    return lv;
}

/* A level's price at scale 8, rounded against the taker (asks up, bids
 * down); false if it is not a usable price. */
static bool level_price(cq_dec raw, enum cq_sim__side taker_side, cq_dec *out)
{
    if (raw.m <= 0) {
        return false;
    }
    return cq_dec_rescale(raw, AMOUNT_SCALE, taker_side == SIM_BUY ? CQ_ROUND_CEIL : CQ_ROUND_FLOOR,
                          out) == 0;
}

/* What a level offers: its quantity down to the step (or to 8 decimals). */
static cq_dec level_qty(cq_dec raw, cq_dec step)
{
    cq_dec q;
    if (raw.m <= 0 || cq_dec_rescale(raw, AMOUNT_SCALE, CQ_ROUND_DOWN, &q) < 0) {
        return ZERO8;
    }
    if (step.m > 0 && cq_dec_quantize(q, step, CQ_ROUND_DOWN, &q) < 0) {
        return ZERO8;
    }
    return q;
}

/* Does a level (or trade) at `price` cross an order on `side` limited at
 * `limit`? */
static bool crosses(enum cq_sim__side side, cq_dec price, cq_dec limit)
{
    int c = cq_dec_cmp(price, limit);
    return side == SIM_BUY ? c <= 0 : c >= 0;
}

/* Price priority for resting orders on `side` (best first), then time
 * (the order array is sorted by id). */
static bool scan_before(enum cq_sim__side side, const struct scan_ent *a, const struct scan_ent *b)
{
    int c = cq_dec_cmp(a->price, b->price);
    if (c != 0) {
        return side == SIM_BUY ? c > 0 : c < 0;
    }
    return a->idx < b->idx;
}

static void scan_sort(struct scan_ent *s, size_t n, enum cq_sim__side side)
{
    for (size_t i = 1; i < n; i++) { /* insertion sort: the list is short and mostly sorted */
        struct scan_ent x = s[i];
        size_t j = i;
        while (j > 0 && scan_before(side, &x, &s[j - 1])) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = x;
    }
}

static cq_dec to_step(cq_dec q, cq_dec step)
{
    if (step.m > 0 && cq_dec_quantize(q, step, CQ_ROUND_DOWN, &q) < 0) {
        return ZERO8;
    }
    return q;
}

/* MARKET's NOTIONAL reference: the avgPriceMins average (filters.md,
 * NOTIONAL: "For MARKET orders, the average price used over the last
 * avgPriceMins minutes will be used for calculation."), else the last
 * price, else the best opposite level; false when the book has none. */
static bool market_ref_price(const struct cq_sim__book_view *b, enum cq_sim__side side, cq_dec *out)
{
    size_t n;
    const struct cq_sim__level *lv;
    if (b->avg_price.m > 0) {
        *out = b->avg_price;
        return true;
    }
    if (b->last_price.m > 0) {
        *out = b->last_price;
        return true;
    }
    lv = taker_levels(b, side, &n);
    for (size_t i = 0; i < n; i++) {
        if (lv[i].price.m > 0 && lv[i].qty.m > 0) {
            *out = lv[i].price;
            return true;
        }
    }
    return false;
}

/* ---- consumed liquidity ---------------------------------------------------------------- *
 *
 * The book the market model shows is exogenous: the engine cannot change
 * it. So that the same displayed liquidity is not sold to our orders again
 * on every market step, the engine keeps, per symbol and book side, what
 * our orders (taker fills in place, maker fills in on_book) took from
 * each level: an order sees a level's displayed quantity minus what we
 * already took from it.
 *
 * Refill rule (enum cq_sim__refill, e->refill):
 *   CHANGE (the rule before issue 19, the default of SIM_QUEUE_NONE): a
 *     level counts as replaced by the market model, and is offered in full
 *     again, when a book shows a different quantity at that price or does
 *     not show that price at all. Anything else is the same level, whatever
 *     time has passed.
 *   NET (the default of the queue models): what our orders took stays
 *     taken while the book shows that price at all: the level offers what
 *     it displays now minus what we took (a decrease is liquidity gone, an
 *     increase new orders behind; both as the exogenous book would look
 *     had our fills happened there); forgotten when the price leaves the
 *     book (the level was emptied or cancelled: what comes back later is
 *     new).
 * Either way a level we swept is never offered again unchanged (I6). A
 * public trade is new volume each time and is not tracked here. */

static int ledger_side(enum cq_sim__side taker_side)
{
    return taker_side == SIM_BUY ? LEDGER_ASKS : LEDGER_BIDS;
}

static const struct level_use *ledger_find(const struct side_ledger *l, cq_dec price)
{
    for (size_t i = 0; i < l->n; i++) {
        if (dec_eq(l->use[i].price, price)) {
            return &l->use[i];
        }
    }
    return NULL;
}

/* Does what we took (u) still apply to the level when it shows `shown`
 * (raw)? The refill rule in one place. CHANGE: only while it shows what
 * it showed. NET: while it shows the price at all, except when it shows
 * exactly what it showed less what we took: then the market model has
 * taken our fills off the level itself (the simulator prints our taker
 * fills and takes them from its displayed book), and what is left is what
 * it shows. */
static bool ledger_applies(const struct level_use *u, enum cq_sim__refill refill, cq_dec shown)
{
    cq_dec applied = u->shown;
    if (refill != SIM_REFILL_NET) {
        return dec_eq(u->shown, shown);
    }
    return !dsub(&applied, u->taken) || !dec_eq(applied, shown);
}

/* What a level at `price` (key) showing raw quantity `shown` still offers,
 * down to `step`. */
static cq_dec ledger_left(const struct side_ledger *l, enum cq_sim__refill refill, cq_dec price,
                          cq_dec shown, cq_dec step)
{
    const struct level_use *u = ledger_find(l, price);
    cq_dec q = level_qty(shown, ZERO8);
    if (u != NULL && ledger_applies(u, refill, shown)) {
        /* the same level: less what we took */
        if (!dec_lt(u->taken, q)) {
            return ZERO8;
        }
        sub_ok(&q, u->taken);
    }
    return level_qty(q, step);
}

/* Forget the levels this book shows differently or not at all (they were
 * replaced). Afterwards every entry's price is on the book. */
static void ledger_sync(struct side_ledger *l, enum cq_sim__refill refill,
                        const struct cq_sim__level *lv, size_t n, enum cq_sim__side taker_side)
{
    size_t w = 0;
    for (size_t r = 0; r < l->n; r++) {
        bool same = false;
        for (size_t i = 0; i < n; i++) {
            cq_dec p;
            if (level_price(lv[i].price, taker_side, &p) && dec_eq(p, l->use[r].price)) {
                same = ledger_applies(&l->use[r], refill, lv[i].qty);
                break;
            }
        }
        if (same) {
            l->use[w++] = l->use[r];
        }
    }
    l->n = w;
}

/* Our orders took q at `price` from a level showing `shown` (after
 * ledger_sync with the same book). */
static void ledger_take(struct side_ledger *l, cq_dec price, cq_dec shown, cq_dec q)
{
    struct level_use *u = (struct level_use *)ledger_find(l, price);
    if (u == NULL) {
        /* entries are distinct prices of the synced book: room is proven */
        ENGINE_INVARIANT(l->n < SIM_DEPTH_MAX, "the liquidity ledger is full at %s", DTXT(price));
        u = &l->use[l->n++];
        u->price = price;
        u->shown = shown;
        u->taken = ZERO8;
    }
    u->shown = shown; /* NET: the level as it shows now (CHANGE: the same) */
    add_ok(&u->taken, q);
    ENGINE_INVARIANT(!dec_lt(u->shown, u->taken),
                     "I6: a swept level was offered again unchanged: our orders took %s from "
                     "the level at %s that shows %s",
                     DTXT(u->taken), DTXT(price), DTXT(u->shown));
}

/* ---- expiry reasons ---------------------------------------------------------------- */

static const char *const EXPIRY_NAMES[] = {
    [SIM_EXPIRY_NONE] = "",
    [SIM_EXPIRY_UNFILLED_IOC] = "UNFILLED_IOC_QUANTITY_EXPIRED",
    [SIM_EXPIRY_UNFILLED_FOK] = "UNFILLED_FOK_ORDER_EXPIRED",
    [SIM_EXPIRY_INSUFFICIENT_LIQUIDITY] = "INSUFFICIENT_LIQUIDITY",
};

const char *cq_sim__expiry_name(enum cq_sim__expiry r)
{
    return (size_t)r < CQ_ARRAY_LEN(EXPIRY_NAMES) ? EXPIRY_NAMES[r] : "";
}

int cq_sim__expiry_parse(const char *s, enum cq_sim__expiry *out)
{
    for (size_t i = 0; i < CQ_ARRAY_LEN(EXPIRY_NAMES); i++) {
        if (strcmp(s, EXPIRY_NAMES[i]) == 0) {
            *out = (enum cq_sim__expiry)i;
            return 0;
        }
    }
    return -CQ_EPARSE;
}

static void queue_join(struct cq_sim__engine *e, struct order_rec *rec,
                       const struct cq_sim__book_view *b);

/* ---- prepare: validate, match, balance ------------------------------------------- */

static int check_shape(const struct cq_sim__order_req *req, struct cq_sim__reject *rej)
{
    if (req->side != SIM_BUY && req->side != SIM_SELL) {
        return reject(rej, SIM_ERR_INVALID_SIDE, "Invalid side.");
    }
    switch (req->type) {
    case SIM_LIMIT:
    case SIM_STOP_LOSS_LIMIT:
    case SIM_TAKE_PROFIT_LIMIT:
        if (req->tif != SIM_GTC && req->tif != SIM_IOC && req->tif != SIM_FOK) {
            return reject_param(rej, SIM_ERR_MANDATORY, "mandatory", "timeInForce");
        }
        if (req->type != SIM_LIMIT && req->tif != SIM_GTC) {
            /* a triggered stop works as GTC only here (docs/SIMEX.md) */
            return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_STOP_TIF);
        }
        break;
    case SIM_LIMIT_MAKER:
    case SIM_MARKET:
        if (req->tif != SIM_TIF_NONE) {
            return reject(rej, SIM_ERR_TIF_NOT_REQUIRED,
                          "TimeInForce parameter sent when not required.");
        }
        break;
    default:
        return reject(rej, SIM_ERR_INVALID_TYPE, "Invalid orderType.");
    }
    if (req->type == SIM_MARKET) {
        if (req->has_price) {
            return reject_param(rej, SIM_ERR_NOT_REQUIRED, "not_required", "price");
        }
        if (req->has_qty && req->has_quote_qty) {
            return reject_param(rej, SIM_ERR_NOT_REQUIRED, "not_required", "quoteOrderQty");
        }
        if (!req->has_qty && !req->has_quote_qty) {
            return reject(rej, SIM_ERR_MANDATORY,
                          "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                          "empty/null!");
        }
    } else {
        if (!req->has_price) {
            return reject_param(rej, SIM_ERR_MANDATORY, "mandatory", "price");
        }
        if (!req->has_qty) {
            return reject_param(rej, SIM_ERR_MANDATORY, "mandatory", "quantity");
        }
        if (req->has_quote_qty) {
            return reject_param(rej, SIM_ERR_NOT_REQUIRED, "not_required", "quoteOrderQty");
        }
    }
    if (cq_sim__order_type_is_stop(req->type) != req->has_stop_price) {
        return reject_param(rej, req->has_stop_price ? SIM_ERR_NOT_REQUIRED : SIM_ERR_MANDATORY,
                            req->has_stop_price ? "not_required" : "mandatory", "stopPrice");
    }
    if (req->client_id[0] != '\0' && !client_id_valid(req->client_id)) {
        return reject(rej, SIM_ERR_ILLEGAL_CHARS, MSG_BAD_CLIENT_ID);
    }
    return 0;
}

bool cq_sim__order_type_is_stop(enum cq_sim__order_type t)
{
    return t == SIM_STOP_LOSS_LIMIT || t == SIM_TAKE_PROFIT_LIMIT;
}

/* A stop order waiting for its trigger: open, not on the book. */
static bool stop_pending(const struct cq_sim__order *o)
{
    return cq_sim__order_type_is_stop(o->type) && is_open(o) && !o->is_working;
}

/* Does a trade at `last` trigger a stop order? STOP_LOSS BUY and
 * TAKE_PROFIT SELL wait above the market (trigger at last >= stop);
 * STOP_LOSS SELL and TAKE_PROFIT BUY below it (last <= stop). */
static bool stop_reached(enum cq_sim__order_type t, enum cq_sim__side side, cq_dec stop,
                         cq_dec last)
{
    bool above = (t == SIM_STOP_LOSS_LIMIT) == (side == SIM_BUY);
    int c = cq_dec_cmp(last, stop);
    return above ? c >= 0 : c <= 0;
}

/* Our resting orders a taker on req->side could meet (queue models only):
 * working, on the other side, priced at or better than its limit (any, for
 * MARKET), best price first then oldest; into e->scan. */
static size_t own_resting(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                          cq_dec limit)
{
    const struct engine_state *st = &e->st;
    enum cq_sim__side rest_side = req->side == SIM_BUY ? SIM_SELL : SIM_BUY;
    size_t n = 0;
    if (e->queue_model == SIM_QUEUE_NONE) {
        return 0;
    }
    for (uint32_t idx = st->open[req->symbol_idx].head; idx != NO_IDX; idx = st->orders[idx].next) {
        const struct cq_sim__order *o = &st->orders[idx].o;
        if (!o->is_working || o->side != rest_side ||
            (req->type != SIM_MARKET && !crosses(req->side, o->price, limit))) {
            continue;
        }
        if (n == SIM_QUEUE_SCAN_MAX) {
            e->queue_scan_truncated++;
            continue;
        }
        e->scan[n].idx = idx;
        e->scan[n].price = o->price;
        n++;
    }
    scan_sort(e->scan, n, rest_side);
    return n;
}

/* The taker's walk, best price first (docs/SIMEX.md "Self-trade
 * prevention"): the public levels (what the ledger leaves of them) and our
 * own resting orders on the other side. At a price where both are, the
 * public quantity estimated ahead of our first resting order there comes
 * first, then our resting orders at that price oldest first, then the rest
 * of the public level; our orders at a price the book does not show (say
 * inside the spread) stand alone. */
static size_t build_walk(struct cq_sim__engine *e, const struct cq_filters_qty_rule *rule,
                         const struct cq_sim__order_req *req, const struct cq_sim__book_view *book,
                         cq_dec limit)
{
    size_t n_lv, k = 0, j = 0;
    const struct cq_sim__level *lv = taker_levels(book, req->side, &n_lv);
    const struct side_ledger *used = &e->ledger[req->symbol_idx][ledger_side(req->side)];
    enum cq_sim__side rest_side = req->side == SIM_BUY ? SIM_SELL : SIM_BUY;
    size_t n_own = own_resting(e, req, limit);
    struct walk_seg *w = e->walk;

    for (size_t i = 0; i <= n_lv; i++) {
        cq_dec lp = ZERO8;
        cq_dec avail;
        bool have = i < n_lv;
        if (have && !level_price(lv[i].price, req->side, &lp)) {
            continue;
        }
        /* our orders priced better than this level (or past the last) */
        while (j < n_own && (!have || (cq_dec_cmp(e->scan[j].price, lp) != 0 &&
                                       crosses(req->side, e->scan[j].price, lp)))) {
            w[k].price = e->scan[j].price;
            w[k].avail = ZERO8;
            w[k].shown = ZERO8;
            w[k++].self_idx = e->scan[j++].idx;
        }
        if (!have) {
            break;
        }
        avail = ledger_left(used, e->refill, lp, lv[i].qty, rule->step);
        if (j < n_own && dec_eq(e->scan[j].price, lp)) {
            const struct queue_pos *q = &e->st.orders[e->scan[j].idx].q;
            cq_dec first = q->known ? to_step(cq_dec_min(q->ahead, avail), rule->step) : avail;
            cq_dec rest = avail;
            sub_ok(&rest, first);
            if (first.m > 0) {
                w[k].price = lp;
                w[k].avail = first;
                w[k].shown = lv[i].qty;
                w[k++].self_idx = NO_IDX;
            }
            while (j < n_own && dec_eq(e->scan[j].price, lp)) {
                w[k].price = lp;
                w[k].avail = ZERO8;
                w[k].shown = ZERO8;
                w[k++].self_idx = e->scan[j++].idx;
            }
            if (rest.m > 0) {
                w[k].price = lp;
                w[k].avail = rest;
                w[k].shown = lv[i].qty;
                w[k++].self_idx = NO_IDX;
            }
        } else if (avail.m > 0) {
            w[k].price = lp;
            w[k].avail = avail;
            w[k].shown = lv[i].qty;
            w[k++].self_idx = NO_IDX;
        }
    }
    (void)rest_side;
    return k;
}

/* The taker met our own resting order `idx` at `price`: record what its
 * STP mode does (stp_faq.md: EXPIRE_TAKER "expiring the taker order's
 * remaining quantity", EXPIRE_MAKER "the potential maker order's remaining
 * quantity", EXPIRE_BOTH both). taker_left: the taker's remaining
 * quantity. Returns true if the taker stops here. */
static bool plan_prevent(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                         struct plan *p, uint32_t idx, cq_dec price, cq_dec taker_left)
{
    const struct cq_sim__order *mk = &e->st.orders[idx].o;
    struct plan_stp *x;
    cq_dec maker_left = mk->orig_qty;
    bool expire_taker = req->stp == SIM_STP_EXPIRE_TAKER || req->stp == SIM_STP_EXPIRE_BOTH;
    bool expire_maker = req->stp == SIM_STP_EXPIRE_MAKER || req->stp == SIM_STP_EXPIRE_BOTH;
    sub_ok(&maker_left, mk->executed_qty);
    if (p->n_stp == SIM_QUEUE_SCAN_MAX) {
        return true; /* cannot record more: stop the walk (bounded) */
    }
    x = &p->stp[p->n_stp++];
    memset(x, 0, sizeof(*x));
    x->idx = idx;
    x->after_fill = p->n_fills;
    x->m.maker_order_id = mk->order_id;
    x->m.mode = req->stp;
    x->m.price = price;
    x->m.taker_prevented_qty = expire_taker ? taker_left : ZERO8;
    x->m.maker_prevented_qty = expire_maker ? maker_left : ZERO8;
    x->m.match_qty = cq_dec_min(taker_left, maker_left);
    if (fill_quote(x->m.match_qty, price, &x->m.match_quote_qty) < 0) {
        x->m.match_quote_qty = ZERO8;
    }
    if (expire_taker) {
        p->taker_prevented = true;
        p->taker_prevented_qty = taker_left;
    }
    return expire_taker;
}

/* Walk the opposite side best first as taker and plan the fills (and,
 * under a queue model, what meeting our own resting orders does). Changes
 * nothing but the scratch space. */
static int plan_fills(struct cq_sim__engine *e, const struct cq_filters_qty_rule *rule,
                      const struct cq_sim__order_req *req, const struct cq_sim__book_view *book,
                      struct plan *p, struct cq_sim__reject *rej)
{
    size_t n;
    const struct walk_seg *w;
    bool market = req->type == SIM_MARKET;
    bool by_quote = market && req->has_quote_qty;
    bool exhausted = true; /* the walk ran out of levels */
    cq_dec rem = p->qty;
    cq_dec rem_quote = p->quote_qty;

    p->n_fills = 0;
    p->n_stp = 0;
    p->taker_prevented = false;
    p->taker_prevented_qty = ZERO8;
    p->exec_qty = ZERO8;
    p->cum_quote = ZERO8;
    p->crosses = false;
    p->rests = false;

    if (cq_sim__order_type_is_stop(req->type)) { /* waits for its trigger; locks on entry */
        p->orig_qty = p->qty;
        p->rests = true;
        p->final_status = SIM_NEW;
        return 0;
    }
    n = build_walk(e, rule, req, book, p->price);
    w = e->walk;
    if (req->type == SIM_LIMIT_MAKER) {
        /* the best thing it would meet: a public level or our own order */
        p->crosses = n > 0 && crosses(req->side, w[0].price, p->price);
        p->orig_qty = p->qty;
        p->rests = true;
        p->final_status = SIM_NEW;
        return 0;
    }

    for (size_t i = 0; i < n; i++) {
        struct plan_fill *f;
        cq_dec lp = w[i].price;
        cq_dec avail = w[i].avail;
        cq_dec take, cost, gross, comm;
        bool quote_bound = false; /* this fill used up what the quote buys */
        if (!market && !crosses(req->side, lp, p->price)) {
            exhausted = false;
            break;
        }
        if (w[i].self_idx != NO_IDX) {
            const struct cq_sim__order *mk = &e->st.orders[w[i].self_idx].o;
            avail = mk->orig_qty;
            sub_ok(&avail, mk->executed_qty);
            if (req->stp != SIM_STP_NONE) {
                cq_dec taker_left = rem;
                if (by_quote) { /* what the quote left buys here */
                    if (cq_dec_div(rem_quote, lp, AMOUNT_SCALE, CQ_ROUND_DOWN, &taker_left) < 0) {
                        taker_left = avail;
                    }
                    taker_left = to_step(taker_left, rule->step);
                }
                if (plan_prevent(e, req, p, w[i].self_idx, lp, taker_left)) {
                    exhausted = false;
                    break;
                }
                continue;
            }
            /* NONE: "the trade will occur" with our own order */
        }
        if (by_quote) {
            /* As much as fits in what is left of the quote, to the step:
             * a BUY down (it cannot spend more than it has), a SELL to the
             * closest step (rest-api.md: "the order will execute a
             * `quantity` that will have the notional value as close as
             * possible to `quoteOrderQty`"), so a SELL may receive up to
             * half a step's worth more than the amount. When that is no
             * more than the level offers, the order is done: less than
             * one step's worth is left at this price, and price priority
             * forbids skipping to a worse level. */
            cq_dec afford;
            enum cq_dec_round to_step_mode =
                req->side == SIM_SELL ? CQ_ROUND_HALF_EVEN : CQ_ROUND_DOWN;
            int rc = cq_dec_div(rem_quote, lp, AMOUNT_SCALE, to_step_mode, &afford);
            if (rc == -CQ_ETOOBIG) {
                take = avail; /* the quote buys more than any level holds */
            } else {
                if (rc < 0 || (rule->step.m > 0 &&
                               cq_dec_quantize(afford, rule->step, to_step_mode, &afford) < 0)) {
                    return reject_capacity(rej, -CQ_EFULL);
                }
                if (afford.m == 0) {
                    exhausted = false;
                    break;
                }
                quote_bound = cq_dec_cmp(afford, avail) <= 0;
                take = quote_bound ? afford : avail;
            }
        } else {
            take = cq_dec_min(rem, avail);
        }
        if (fill_quote(take, lp, &cost) < 0) {
            return reject_capacity(rej, -CQ_EFULL);
        }
        gross = req->side == SIM_BUY ? take : cost;
        if (commission_of(gross, e->taker_bps, &comm) < 0 || !dadd(&p->exec_qty, take) ||
            !dadd(&p->cum_quote, cost)) {
            return reject_capacity(rej, -CQ_EFULL);
        }
        f = &p->fills[p->n_fills++];
        f->price = lp;
        f->qty = take;
        f->cost = cost;
        f->commission = comm;
        f->shown = w[i].shown;
        f->self_idx = w[i].self_idx;
        if (by_quote) {
            if (dec_lt(rem_quote, cost)) {
                rem_quote = ZERO8; /* a SELL rounded up to the closest step */
            } else {
                sub_ok(&rem_quote, cost);
            }
            if (quote_bound || rem_quote.m == 0) {
                exhausted = false;
                break;
            }
        } else {
            sub_ok(&rem, take);
            if (rem.m == 0) {
                exhausted = false;
                break;
            }
        }
    }

    if (market) {
        if (by_quote) {
            p->orig_qty = p->exec_qty;
            p->final_status = exhausted ? SIM_EXPIRED : SIM_FILLED;
        } else {
            p->orig_qty = p->qty;
            p->final_status = dec_eq(p->exec_qty, p->qty) ? SIM_FILLED : SIM_EXPIRED;
        }
        if (p->taker_prevented) {
            p->final_status = SIM_EXPIRED_IN_MATCH;
        }
        return 0;
    }
    p->orig_qty = p->qty;
    if (dec_eq(p->exec_qty, p->qty)) {
        p->final_status = SIM_FILLED;
    } else if (req->tif == SIM_FOK) { /* all or nothing, STP included */
        p->final_status = SIM_EXPIRED;
        p->n_fills = 0;
        p->n_stp = 0;
        p->taker_prevented = false;
        p->exec_qty = ZERO8;
        p->cum_quote = ZERO8;
    } else if (p->taker_prevented) {
        p->final_status = SIM_EXPIRED_IN_MATCH; /* does not rest */
    } else if (req->tif == SIM_GTC) {
        p->rests = true;
        p->final_status = p->exec_qty.m > 0 ? SIM_PARTIALLY_FILLED : SIM_NEW;
    } else {
        p->final_status = SIM_EXPIRED;
    }
    return 0;
}

/* The account after the order, on local copies; -2010 if the asset the
 * order pays with does not cover it. LIMIT orders lock what they may pay
 * (Binance locks on entry); MARKET orders pay what their fills cost. */
static int plan_balances(const struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                         struct plan *p, struct cq_sim__reject *rej)
{
    const struct engine_state *st = &e->st;
    bool buy = req->side == SIM_BUY;
    bool locks = req->type != SIM_MARKET;
    struct cq_sim__balance *pay = buy ? &p->quote : &p->base;
    struct cq_sim__balance *get = buy ? &p->base : &p->quote;
    cq_dec need;
    cq_dec lock = ZERO8;
    cq_dec sum;

    p->base = st->bal[st->base_asset[req->symbol_idx]];
    p->quote = st->bal[st->quote_asset[req->symbol_idx]];
    if (locks) {
        if (!buy) {
            need = p->qty;
        } else if (buy_lock(p->qty, p->price, &need) < 0) {
            return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_INSUFFICIENT);
        }
    } else {
        need = buy ? p->cum_quote : p->exec_qty;
    }
    if (dec_lt(pay->free, need)) {
        return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_INSUFFICIENT);
    }
    sub_ok(&pay->free, need);
    if (locks) {
        add_ok(&pay->locked, need); /* I1: free + locked fits */
        lock = need;
    }
    for (size_t i = 0; i < p->n_fills; i++) {
        const struct plan_fill *f = &p->fills[i];
        cq_dec spent = buy ? f->cost : f->qty;
        cq_dec net = buy ? f->qty : f->cost;
        if (locks) {
            sub_ok(&pay->locked, spent);
            sub_ok(&lock, spent);
        }
        sub_ok(&net, f->commission);
        if (!dadd(&get->free, net)) {
            return reject_capacity(rej, -CQ_EFULL);
        }
    }
    if (locks) {
        cq_dec target = ZERO8;
        cq_dec rem = p->qty;
        sub_ok(&rem, p->exec_qty);
        if (p->rests) {
            if (!buy) {
                target = rem;
            } else if (buy_lock(rem, p->price, &target) < 0) {
                return reject_capacity(rej, -CQ_EFULL);
            }
        }
        /* lock >= target: see the rounding note at the top */
        ENGINE_INVARIANT(!dec_lt(lock, target),
                         "a %s order locks %s but its remainder needs %s (rounding rule)",
                         cq_sim__side_name(req->side), DTXT(lock), DTXT(target));
        sub_ok(&lock, target);
        sub_ok(&pay->locked, lock);
        add_ok(&pay->free, lock);
    }
    sum = get->free;
    if (!dadd(&sum, get->locked)) {
        return reject_capacity(rej, -CQ_EFULL);
    }
    return 0;
}

/* MAX_NUM_ALGO_ORDERS counts the symbol's open stop orders (filters.md:
 * "'Algo' orders are `STOP_LOSS`, `STOP_LOSS_LIMIT`, `TAKE_PROFIT`, and
 * `TAKE_PROFIT_LIMIT` orders."). */
static size_t open_stop_count(const struct engine_state *st, int symbol_idx)
{
    size_t n = 0;
    for (uint32_t i = st->open[symbol_idx].head; i != NO_IDX; i = st->orders[i].next) {
        n += cq_sim__order_type_is_stop(st->orders[i].o.type);
    }
    return n;
}

/* Everything place checks, in Binance's order, without changing anything:
 * symbol (-1121), market status (-2010), shape, PRICE_FILTER, LOT_SIZE /
 * MARKET_LOT_SIZE, PERCENT_PRICE_BY_SIDE, NOTIONAL, MAX_NUM_ORDERS (-1013), duplicate client id,
 * balance, LIMIT_MAKER cross (-2010). */
static int prepare(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                   const struct cq_sim__book_view *book, struct plan *p, struct cq_sim__reject *rej)
{
    static const struct cq_sim__book_view empty_book;
    const struct cq_sim__symbol *sym;
    const struct cq_filters *f;
    struct cq_filters_qty_rule rule;
    const char *bad;
    bool market;
    int rc;

    if (req == NULL) {
        return reject_capacity(rej, -CQ_EINVAL);
    }
    if (book == NULL) {
        book = &empty_book;
    }
    if (req->symbol_idx < 0 || (size_t)req->symbol_idx >= e->n_symbols) {
        return reject(rej, SIM_ERR_INVALID_SYMBOL, SIM_MSG_INVALID_SYMBOL);
    }
    sym = &e->symbols[req->symbol_idx];
    f = &sym->filters;
    if (sym->status != SIM_TRADING) {
        return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_MARKET_CLOSED);
    }
    rc = check_shape(req, rej);
    if (rc < 0) {
        return rc;
    }
    market = req->type == SIM_MARKET;
    p->price = ZERO8;
    p->qty = ZERO8;
    p->quote_qty = ZERO8;

    p->stop_price = ZERO8;
    if (!market &&
        (to_amount(req->price, &p->price) < 0 || cq_filters_check_price(f, p->price) != NULL)) {
        return reject_filter(rej, "PRICE_FILTER");
    }
    /* filters.md PRICE_FILTER: "The `price`/`stopPrice` must obey" it */
    if (req->has_stop_price && (to_amount(req->stop_price, &p->stop_price) < 0 ||
                                cq_filters_check_price(f, p->stop_price) != NULL)) {
        return reject_filter(rej, "PRICE_FILTER");
    }
    cq_filters_qty_rule_of(f, market, &rule);
    if (req->has_qty) {
        if (to_amount(req->qty, &p->qty) < 0) {
            return reject_filter(rej, rule.step_filter);
        }
        bad = cq_filters_qty_violation(&rule, p->qty);
        if (bad != NULL) {
            return reject_filter(rej, bad);
        }
    } else if (to_amount(req->quote_qty, &p->quote_qty) < 0 || p->quote_qty.m <= 0) {
        return reject_filter(rej, "NOTIONAL");
    }
    if (!market) {
        bad = cq_filters_check_percent_price(f, filter_side(req->side), p->price, book->avg_price);
        if (bad != NULL) {
            return reject_filter(rej, bad);
        }
    }

    if (!market) {
        bad = cq_filters_check_notional(f, false, p->price, p->qty);
    } else if (req->has_quote_qty) {
        bad = cq_filters_check_notional(f, true, p->quote_qty, ONE);
    } else {
        cq_dec ref;
        bad = market_ref_price(book, req->side, &ref)
                  ? cq_filters_check_notional(f, true, ref, p->qty)
                  : NULL;
    }
    if (bad != NULL) {
        return reject_filter(rej, bad);
    }

    rc = plan_fills(e, &rule, req, book, p, rej);
    if (rc < 0) {
        return rc;
    }
    if (market && req->has_quote_qty && (p->exec_qty.m > 0 || p->final_status == SIM_FILLED)) {
        /* the quantity a quoteOrderQty buys obeys the same rule */
        bad = cq_filters_qty_violation(&rule, p->exec_qty);
        if (bad != NULL) {
            return reject_filter(rej, bad);
        }
    }
    if (f->max_num_orders > 0 && e->st.open[req->symbol_idx].count >= (size_t)f->max_num_orders) {
        return reject_filter(rej, "MAX_NUM_ORDERS");
    }
    if (cq_sim__order_type_is_stop(req->type) && f->max_num_algo_orders > 0 &&
        open_stop_count(&e->st, req->symbol_idx) >= (size_t)f->max_num_algo_orders) {
        return reject_filter(rej, "MAX_NUM_ALGO_ORDERS");
    }
    if (req->client_id[0] != '\0') {
        const struct order_rec *dup = cid_find(&e->st, req->symbol_idx, req->client_id);
        if (dup != NULL && is_open(&dup->o)) {
            return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_DUPLICATE);
        }
    }
    rc = plan_balances(e, req, p, rej);
    if (rc < 0) {
        return rc;
    }
    if (p->crosses) {
        return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_WOULD_TAKE);
    }
    if (cq_sim__order_type_is_stop(req->type) && book->last_price.m > 0 &&
        stop_reached(req->type, req->side, p->stop_price, book->last_price)) {
        return reject(rej, SIM_ERR_NEW_ORDER_REJECTED, SIM_MSG_WOULD_TRIGGER);
    }
    return 0;
}

/* ---- construction -------------------------------------------------------------------- */

static void state_init(struct engine_state *st)
{
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < SIM_SYMBOLS_MAX; i++) {
        list_init(&st->open[i]);
    }
    list_init(&st->all_open);
}

static void state_fini(struct engine_state *st)
{
    free(st->orders);
    free(st->trades);
    free(st->cid_slots);
    st->orders = NULL;
    st->trades = NULL;
    st->cid_slots = NULL;
}

/* Give every symbol's assets a balance entry (zero if new). */
static int state_add_symbol_assets(struct engine_state *st, const struct cq_sim__engine *e)
{
    for (size_t i = 0; i < e->n_symbols; i++) {
        int b = asset_add(st, e->symbols[i].base);
        int q = asset_add(st, e->symbols[i].quote);
        if (b < 0 || q < 0) {
            return -CQ_EFULL;
        }
        st->base_asset[i] = b;
        st->quote_asset[i] = q;
    }
    return 0;
}

static int canon_filter(cq_dec *v, const char *symbol, const char *name, struct cq_err *err)
{
    cq_dec c;
    if (v->m < 0 || to_amount(*v, &c) < 0) {
        return cq_err_set(err, CQ_ECONFIG, 0, "filter values are >= 0 with at most 8 decimals",
                          "symbol %s: filter field %s is not a non-negative amount with at "
                          "most 8 decimals",
                          symbol, name);
    }
    *v = c;
    return 0;
}

static int copy_symbol(struct cq_sim__engine *e, const struct cq_sim__symbol *in,
                       struct cq_err *err)
{
    struct cq_sim__symbol *s = &e->symbols[e->n_symbols];
    struct cq_filters *f = &s->filters;
    size_t len = strnlen(in->symbol, CQ_SYMBOL_LEN);
    int rc = 0;

    if (len == 0 || len >= CQ_SYMBOL_LEN) {
        return cq_err_set(err, CQ_ECONFIG, 0, "symbol names are like BTCUSDT",
                          "symbol %zu: empty or longer than %d characters", e->n_symbols,
                          CQ_SYMBOL_MAX_CHARS);
    }
    for (size_t i = 0; i < e->n_symbols; i++) {
        if (strcmp(e->symbols[i].symbol, in->symbol) == 0) {
            return cq_err_set(err, CQ_ECONFIG, 0, "list each symbol once",
                              "symbol %s is listed twice", in->symbol);
        }
    }
    if (!asset_name_valid(in->base) || !asset_name_valid(in->quote) ||
        strcmp(in->base, in->quote) == 0) {
        return cq_err_set(err, CQ_ECONFIG, 0, "base and quote are distinct asset names",
                          "symbol %s: bad base or quote asset", in->symbol);
    }
    if ((unsigned)in->status > (unsigned)SIM_BREAK || in->filters.max_num_orders < 0) {
        return cq_err_set(err, CQ_ECONFIG, 0, NULL, "symbol %s: bad status or max_num_orders",
                          in->symbol);
    }
    *s = *in;
    rc = rc < 0 ? rc : canon_filter(&f->min_price, s->symbol, "minPrice", err);
    rc = rc < 0 ? rc : canon_filter(&f->max_price, s->symbol, "maxPrice", err);
    rc = rc < 0 ? rc : canon_filter(&f->tick_size, s->symbol, "tickSize", err);
    rc = rc < 0 ? rc : canon_filter(&f->min_qty, s->symbol, "minQty", err);
    rc = rc < 0 ? rc : canon_filter(&f->max_qty, s->symbol, "maxQty", err);
    rc = rc < 0 ? rc : canon_filter(&f->step_size, s->symbol, "stepSize", err);
    rc = rc < 0 ? rc : canon_filter(&f->market_min_qty, s->symbol, "MARKET_LOT_SIZE.minQty", err);
    rc = rc < 0 ? rc : canon_filter(&f->market_max_qty, s->symbol, "MARKET_LOT_SIZE.maxQty", err);
    rc = rc < 0 ? rc : canon_filter(&f->market_step, s->symbol, "MARKET_LOT_SIZE.stepSize", err);
    rc = rc < 0 ? rc : canon_filter(&f->min_notional, s->symbol, "minNotional", err);
    rc = rc < 0 ? rc : canon_filter(&f->max_notional, s->symbol, "maxNotional", err);
    if (rc < 0) {
        return rc;
    }
    e->n_symbols++;
    return 0;
}

struct cq_sim__engine *cq_sim__engine_new(const struct cq_sim__engine_config *cfg,
                                          struct cq_err *err)
{
    struct cq_sim__engine *e;
    struct engine_state *st;

    if (cfg == NULL || (cfg->n_symbols > 0 && cfg->symbols == NULL) ||
        (cfg->n_balances > 0 && cfg->balances == NULL)) {
        cq_err_set(err, CQ_EINVAL, 0, NULL, "sim_engine_new: no config");
        return NULL;
    }
    if (cfg->n_symbols > SIM_SYMBOLS_MAX || cfg->n_balances > SIM_ASSETS_MAX) {
        cq_err_set(err, CQ_ECONFIG, 0, NULL, "at most %d symbols and %d assets", SIM_SYMBOLS_MAX,
                   SIM_ASSETS_MAX);
        return NULL;
    }
    if (cfg->maker_bps > MAX_BPS || cfg->taker_bps > MAX_BPS) {
        cq_err_set(err, CQ_ECONFIG, 0, "fees are basis points, 0 to 10000",
                   "maker_bps %u / taker_bps %u out of range", cfg->maker_bps, cfg->taker_bps);
        return NULL;
    }
    if ((unsigned)cfg->queue_model > SIM_QUEUE_NONE || cfg->queue_power > 4 ||
        (unsigned)cfg->refill > SIM_REFILL_NET) {
        cq_err_set(err, CQ_ECONFIG, 0,
                   "queue model conservative, probabilistic or none; queue power 1 to 4; "
                   "refill change or net",
                   "queue_model %d / queue_power %u / refill %d out of range",
                   (int)cfg->queue_model, cfg->queue_power, (int)cfg->refill);
        return NULL;
    }
    if (cfg->max_orders > MAX_CAPACITY || cfg->max_trades > MAX_CAPACITY ||
        cfg->first_order_id > MAX_FIRST_ID || cfg->first_trade_id > MAX_FIRST_ID) {
        cq_err_set(err, CQ_ECONFIG, 0, NULL,
                   "max_orders/max_trades above %zu or first ids above 2^53", MAX_CAPACITY);
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "sim_engine_new: out of memory");
        return NULL;
    }
    st = &e->st;
    state_init(st);
    e->maker_bps = cfg->maker_bps;
    e->taker_bps = cfg->taker_bps;
    e->max_orders = cfg->max_orders != 0 ? cfg->max_orders : SIM_MAX_ORDERS_DEFAULT;
    e->max_trades = cfg->max_trades != 0 ? cfg->max_trades : DEFAULT_MAX_TRADES;
    e->queue_model = cfg->queue_model;
    e->queue_power = cfg->queue_power != 0 ? cfg->queue_power : 3;
    e->refill = cfg->refill != SIM_REFILL_DEFAULT    ? cfg->refill
                : cfg->queue_model == SIM_QUEUE_NONE ? SIM_REFILL_CHANGE
                                                     : SIM_REFILL_NET;
    st->first_order_id = cfg->first_order_id != 0 ? cfg->first_order_id : 1;
    st->next_order_id = st->first_order_id;
    st->next_trade_id = cfg->first_trade_id != 0 ? cfg->first_trade_id : 1;
    st->rng = cfg->seed;

    for (size_t i = 0; i < cfg->n_symbols; i++) {
        if (copy_symbol(e, &cfg->symbols[i], err) < 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->n_balances; i++) {
        const struct cq_sim__balance *b = &cfg->balances[i];
        cq_dec amount;
        int a;
        if (!asset_name_valid(b->asset) || asset_find(st, b->asset) >= 0) {
            cq_err_set(err, CQ_ECONFIG, 0, "asset names are letters and digits, each once",
                       "balance %zu: bad or repeated asset name", i);
            goto fail;
        }
        const char *why = amount_problem(b->free);
        if (why != NULL || b->locked.m != 0 || to_amount(b->free, &amount) < 0) {
            char given[CQ_DEC_STR_MAX];
            cq_err_set(
                err, CQ_ECONFIG, 0,
                "a starting balance is from 0 to " SIM_AMOUNT_MAX_TEXT " with at most 8 decimals",
                "balance of %s: %s %s", b->asset, cq_dec_format(b->free, given, sizeof(given)),
                why != NULL ? why : "must be all free (nothing locked)");
            goto fail;
        }
        a = asset_add(st, b->asset);
        st->bal[a].free = amount;
    }
    if (state_add_symbol_assets(st, e) < 0) {
        cq_err_set(err, CQ_ECONFIG, 0, NULL, "more than %d assets", SIM_ASSETS_MAX);
        goto fail;
    }
    return e;
fail:
    cq_sim__engine_free(e);
    return NULL;
}

void cq_sim__engine_free(struct cq_sim__engine *e)
{
    if (e == NULL) {
        return;
    }
    state_fini(&e->st);
    free(e);
}

void cq_sim__engine_set_listener(struct cq_sim__engine *e, const struct cq_sim__engine_listener *l)
{
    if (l != NULL) {
        e->listener = *l;
    } else {
        memset(&e->listener, 0, sizeof(e->listener));
    }
}

int cq_sim__engine_symbol_index(const struct cq_sim__engine *e, const char *symbol)
{
    if (symbol == NULL) {
        return -1;
    }
    for (size_t i = 0; i < e->n_symbols; i++) {
        if (strcmp(e->symbols[i].symbol, symbol) == 0) {
            return (int)i;
        }
    }
    return -1;
}

size_t cq_sim__engine_symbol_count(const struct cq_sim__engine *e)
{
    return e->n_symbols;
}

const struct cq_sim__symbol *cq_sim__engine_symbol(const struct cq_sim__engine *e, int idx)
{
    if (idx < 0 || (size_t)idx >= e->n_symbols) {
        return NULL;
    }
    return &e->symbols[idx];
}

void cq_sim__engine_set_symbol_status(struct cq_sim__engine *e, int idx,
                                      enum cq_sim__symbol_status s)
{
    if (idx >= 0 && (size_t)idx < e->n_symbols && (unsigned)s <= (unsigned)SIM_BREAK) {
        e->symbols[idx].status = s;
    }
}

void cq_sim__engine_fees(const struct cq_sim__engine *e, unsigned *maker_bps, unsigned *taker_bps)
{
    if (maker_bps != NULL) {
        *maker_bps = e->maker_bps;
    }
    if (taker_bps != NULL) {
        *taker_bps = e->taker_bps;
    }
}

void cq_sim__engine_get_stats(const struct cq_sim__engine *e, struct cq_sim__engine_stats *out)
{
    out->orders_placed = e->st.orders_placed;
    out->orders_rejected = e->st.orders_rejected;
    out->orders_canceled = e->st.orders_canceled;
    out->fills = e->st.fills;
    out->open_orders = e->st.all_open.count;
    out->orders_kept = e->st.n_orders;
    out->orders_dropped = e->st.orders_dropped;
    out->orders_first_filled = e->st.orders_first_filled;
    out->prevented_matches = e->prevented_matches;
    out->queue_scan_truncated = e->queue_scan_truncated;
}

const struct cq_sim__prevented_match *cq_sim__engine_last_prevented(const struct cq_sim__engine *e,
                                                                    size_t *n)
{
    *n = e->n_prevented;
    return e->prevented;
}

const char *cq_sim__engine_last_cancel_client_id(const struct cq_sim__engine *e)
{
    return e->cancel_client_id;
}

/* ---- place ------------------------------------------------------------------------------- */

static void close_order(struct cq_sim__engine *e, struct order_rec *rec,
                        enum cq_sim__order_status status, int64_t now_ms);
static int maker_fill(struct cq_sim__engine *e, uint32_t idx, cq_dec q, bool self_trade,
                      int64_t now_ms);

static void emit_prevented(struct cq_sim__engine *e, const struct cq_sim__order *o,
                           const struct cq_sim__prevented_match *m, int64_t now_ms)
{
    struct cq_sim__exec_report r;
    if (e->listener.execution_report == NULL) {
        return;
    }
    memset(&r, 0, sizeof(r));
    r.order = o;
    r.exec_type = SIM_EXEC_TRADE_PREVENTION;
    r.orig_client_id = "";
    r.cancel_client_id = "";
    r.event_ms = now_ms;
    r.prevented = m;
    e->listener.execution_report(e->listener.ctx, &r);
}

/* A prevented match happens (commit): it gets its id; the maker expires
 * if the taker's mode says so (EXPIRED_IN_MATCH, TRADE_PREVENTION). */
static void apply_stp(struct cq_sim__engine *e, struct plan_stp *x,
                      const struct cq_sim__order *taker, int64_t now_ms)
{
    struct order_rec *rec = &e->st.orders[x->idx];
    x->m.match_id = e->next_match_id++;
    x->m.taker_order_id = taker->order_id;
    e->prevented_matches++;
    if (e->n_prevented < SIM_QUEUE_SCAN_MAX) {
        e->prevented[e->n_prevented++] = x->m;
    }
    if ((x->m.mode == SIM_STP_EXPIRE_MAKER || x->m.mode == SIM_STP_EXPIRE_BOTH) &&
        is_open(&rec->o)) {
        close_order(e, rec, SIM_EXPIRED_IN_MATCH, now_ms);
        rec->o.prevented = true;
        rec->o.prevented_match_id = x->m.match_id;
        rec->o.prevented_qty = x->m.maker_prevented_qty;
        emit_prevented(e, &rec->o, &x->m, now_ms);
    }
}

int cq_sim__engine_test_order(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                              const struct cq_sim__book_view *book, struct cq_sim__reject *rej)
{
    return prepare(e, req, book, &e->plan, rej);
}

int cq_sim__engine_place(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                         const struct cq_sim__book_view *book, int64_t now_ms,
                         struct cq_sim__order *order, struct cq_sim__fill *fills, size_t max_fills,
                         size_t *n_fills, struct cq_sim__reject *rej)
{
    struct engine_state *st = &e->st;
    struct plan *p = &e->plan;
    const struct cq_sim__symbol *sym;
    struct order_rec *rec;
    struct cq_sim__order *o;
    uint32_t idx;
    size_t out_n = 0;
    int base_a, quote_a;
    int rc;

    if (n_fills != NULL) {
        *n_fills = 0;
    }
    e->n_prevented = 0;
    rc = prepare(e, req, book, p, rej);
    if (rc == 0) {
        rc = orders_reserve(st, e->max_orders);
        if (rc == 0) {
            rc = cid_reserve(st);
        }
        if (rc == 0) {
            size_t n_self = 0;
            for (size_t i = 0; i < p->n_fills; i++) {
                n_self += p->fills[i].self_idx != NO_IDX;
            }
            rc = trades_reserve(st, e->max_trades, p->n_fills + n_self);
        }
        if (rc < 0) {
            reject_capacity(rej, rc);
        }
    }
    if (rc < 0) {
        st->orders_rejected++;
        return rc;
    }

    /* commit: nothing below can fail */
    sym = &e->symbols[req->symbol_idx];
    idx = (uint32_t)st->n_orders;
    rec = &st->orders[idx];
    memset(rec, 0, sizeof(*rec));
    rec->prev = rec->next = rec->gprev = rec->gnext = NO_IDX;
    o = &rec->o;
    o->order_id = st->next_order_id++;
    o->symbol_idx = req->symbol_idx;
    if (req->client_id[0] != '\0') {
        /* bounded: the same SIM_CLIENT_ID_LEN array, checked by check_shape */
        cq_strlcpy(o->client_id, req->client_id, sizeof(o->client_id));
    } else {
        const struct order_rec *clash;
        do { /* a generated id never collides with an open order's */
            gen_client_id(&st->rng, o->client_id);
            clash = cid_find(st, req->symbol_idx, o->client_id);
        } while (clash != NULL && is_open(&clash->o));
    }
    o->side = req->side;
    o->type = req->type;
    o->tif =
        req->type == SIM_LIMIT || cq_sim__order_type_is_stop(req->type) ? req->tif : SIM_TIF_NONE;
    o->stp = req->stp;
    o->expiry = SIM_EXPIRY_NONE;
    o->price = req->type == SIM_MARKET ? ZERO8 : p->price;
    o->stop_price = p->stop_price;
    o->orig_qty = p->orig_qty;
    o->orig_quote_qty = req->type == SIM_MARKET && req->has_quote_qty ? p->quote_qty : ZERO8;
    o->executed_qty = ZERO8;
    o->cum_quote_qty = ZERO8;
    o->status = SIM_NEW;
    o->time_ms = now_ms;
    o->update_ms = now_ms;
    o->is_working = p->rests && !cq_sim__order_type_is_stop(req->type);
    o->working_ms = o->is_working ? now_ms : -1;
    st->n_orders++;
    cid_put(st, idx);
    st->orders_placed++;

    base_a = st->base_asset[req->symbol_idx];
    quote_a = st->quote_asset[req->symbol_idx];
    change_note(e, base_a);
    change_note(e, quote_a);
    st->bal[base_a] = p->base;
    st->bal[quote_a] = p->quote;

    if (p->n_fills > 0) { /* book != NULL: there were levels to take from */
        struct side_ledger *used = &e->ledger[req->symbol_idx][ledger_side(req->side)];
        size_t nl;
        const struct cq_sim__level *lv = taker_levels(book, req->side, &nl);
        ledger_sync(used, e->refill, lv, nl, req->side);
        for (size_t i = 0; i < p->n_fills; i++) {
            if (p->fills[i].self_idx == NO_IDX) { /* our own orders are not the book's */
                ledger_take(used, p->fills[i].price, p->fills[i].shown, p->fills[i].qty);
            }
        }
    }

    emit(e, o, SIM_EXEC_NEW, NULL, NULL, NULL, now_ms);
    for (size_t i = 0, k = 0; i <= p->n_fills; i++) {
        const struct plan_fill *pf = &p->fills[i < p->n_fills ? i : 0];
        struct cq_sim__trade *t;
        struct cq_sim__fill f;
        bool last = i + 1 == p->n_fills;
        for (; k < p->n_stp && p->stp[k].after_fill == i; k++) { /* in walk order */
            apply_stp(e, &p->stp[k], o, now_ms);
        }
        if (i == p->n_fills) {
            break;
        }
        t = trades_push(st);

        f.trade_id = st->next_trade_id++;
        f.price = pf->price;
        f.qty = pf->qty;
        f.quote_qty = pf->cost;
        f.commission = pf->commission;
        /* bounded: base and quote are SIM_ASSET_LEN arrays too */
        cq_strlcpy(f.commission_asset, req->side == SIM_BUY ? sym->base : sym->quote,
                   sizeof(f.commission_asset));
        f.maker = false;
        f.self_trade = pf->self_idx != NO_IDX;

        t->trade_id = f.trade_id;
        t->order_id = o->order_id;
        t->symbol_idx = o->symbol_idx;
        t->price = f.price;
        t->qty = f.qty;
        t->quote_qty = f.quote_qty;
        t->commission = f.commission;
        memcpy(t->commission_asset, f.commission_asset, sizeof(t->commission_asset));
        t->time_ms = now_ms;
        t->is_buyer = req->side == SIM_BUY;
        t->is_maker = false;

        if (o->executed_qty.m == 0) {
            st->orders_first_filled++;
        }
        add_ok(&o->executed_qty, f.qty);
        add_ok(&o->cum_quote_qty, f.quote_qty);
        o->status = last && p->final_status == SIM_FILLED ? SIM_FILLED : SIM_PARTIALLY_FILLED;
        st->fills++;
        if (fills != NULL && out_n < max_fills) {
            fills[out_n++] = f;
        }
        emit(e, o, SIM_EXEC_TRADE, &f, NULL, NULL, now_ms);
        if (pf->self_idx != NO_IDX) { /* STP NONE: the other side of the trade is ours too */
            int mrc = maker_fill(e, pf->self_idx, pf->qty, true, now_ms);
            /* the trade store was reserved for it, and a self-trade only
             * moves money inside the account (less fees): cannot fail */
            ENGINE_INVARIANT(mrc == 0, "the maker side of a self-trade of %s at %s failed",
                             DTXT(pf->qty), DTXT(pf->price));
        }
    }
    ENGINE_INVARIANT(!dec_lt(o->orig_qty, o->executed_qty), "order %" PRIu64 " executed %s of %s",
                     o->order_id, DTXT(o->executed_qty), DTXT(o->orig_qty));
    o->status = p->final_status;
    if (p->rests) {
        open_link(st, idx);
        if (o->is_working) {
            queue_join(e, rec, book);
        }
    } else if (p->final_status == SIM_EXPIRED) {
        o->expiry = req->type == SIM_MARKET ? SIM_EXPIRY_INSUFFICIENT_LIQUIDITY
                    : req->tif == SIM_FOK   ? SIM_EXPIRY_UNFILLED_FOK
                                            : SIM_EXPIRY_UNFILLED_IOC;
        emit(e, o, SIM_EXEC_EXPIRED, NULL, NULL, NULL, now_ms);
    } else if (p->final_status == SIM_EXPIRED_IN_MATCH) { /* STP expired the taker */
        const struct cq_sim__prevented_match *m = &p->stp[p->n_stp - 1].m;
        o->prevented = true;
        o->prevented_match_id = m->match_id;
        o->prevented_qty = p->taker_prevented_qty;
        emit_prevented(e, o, m, now_ms);
    }
    changes_end(e, now_ms);
    if (order != NULL) {
        *order = *o;
    }
    if (n_fills != NULL) {
        *n_fills = out_n;
    }
    return 0;
}

/* ---- cancel and queries ------------------------------------------------------------------ */

/* By id (then the client id, if given, must match) or by client id. */
static struct order_rec *lookup(const struct engine_state *st, int symbol_idx, uint64_t order_id,
                                const char *client_id)
{
    struct order_rec *rec;
    bool has_cid = client_id != NULL && client_id[0] != '\0';
    if (order_id != 0) {
        rec = order_by_id(st, order_id);
        if (rec == NULL || rec->o.symbol_idx != symbol_idx ||
            (has_cid && strcmp(rec->o.client_id, client_id) != 0)) {
            return NULL;
        }
        return rec;
    }
    return has_cid ? cid_find(st, symbol_idx, client_id) : NULL;
}

/* Close an open order: release what it holds (I2) and take it off the
 * book. */
static void close_order(struct cq_sim__engine *e, struct order_rec *rec,
                        enum cq_sim__order_status status, int64_t now_ms)
{
    struct engine_state *st = &e->st;
    struct cq_sim__order *o = &rec->o;
    int asset = o->side == SIM_BUY ? st->quote_asset[o->symbol_idx] : st->base_asset[o->symbol_idx];
    cq_dec need = ZERO8;
    int rc = order_need(o, &need);
    ENGINE_INVARIANT(rc == 0, "order %" PRIu64 ": what it locks is out of range", o->order_id);
    ENGINE_INVARIANT(!dec_lt(st->bal[asset].locked, need),
                     "I2: %s locked %s is less than the %s order %" PRIu64 " holds",
                     st->bal[asset].asset, DTXT(st->bal[asset].locked), DTXT(need), o->order_id);
    change_note(e, asset);
    sub_ok(&st->bal[asset].locked, need);
    add_ok(&st->bal[asset].free, need);
    open_unlink(st, (uint32_t)(rec - st->orders));
    o->status = status;
    o->is_working = false;
    o->update_ms = now_ms;
}

int cq_sim__engine_cancel(struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                          const char *client_id, const char *cancel_client_id, int64_t now_ms,
                          struct cq_sim__order *order, struct cq_sim__reject *rej)
{
    struct order_rec *rec;
    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return reject(rej, SIM_ERR_INVALID_SYMBOL, SIM_MSG_INVALID_SYMBOL);
    }
    if (cancel_client_id != NULL && cancel_client_id[0] != '\0' &&
        !client_id_valid(cancel_client_id)) {
        return reject(rej, SIM_ERR_ILLEGAL_CHARS, MSG_BAD_CLIENT_ID);
    }
    rec = lookup(&e->st, symbol_idx, order_id, client_id);
    if (rec == NULL || !is_open(&rec->o)) {
        return reject(rej, SIM_ERR_CANCEL_REJECTED, SIM_MSG_UNKNOWN_ORDER);
    }
    if (cancel_client_id != NULL && cancel_client_id[0] != '\0') {
        /* bounded: client_id_valid allowed at most 36 characters */
        cq_strlcpy(e->cancel_client_id, cancel_client_id, sizeof(e->cancel_client_id));
    } else {
        gen_client_id(&e->st.rng, e->cancel_client_id);
    }
    close_order(e, rec, SIM_CANCELED, now_ms);
    e->st.orders_canceled++;
    emit(e, &rec->o, SIM_EXEC_CANCELED, NULL, rec->o.client_id, e->cancel_client_id, now_ms);
    changes_end(e, now_ms);
    if (order != NULL) {
        *order = rec->o;
    }
    return 0;
}

size_t cq_sim__engine_cancel_all(struct cq_sim__engine *e, int symbol_idx, int64_t now_ms,
                                 void (*fn)(void *ctx, const struct cq_sim__order *o), void *ctx)
{
    struct engine_state *st = &e->st;
    size_t count = 0;
    uint32_t idx;
    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return 0;
    }
    idx = st->open[symbol_idx].head;
    while (idx != NO_IDX) {
        struct order_rec *rec = &st->orders[idx];
        uint32_t next = rec->next;
        gen_client_id(&st->rng, e->cancel_client_id);
        close_order(e, rec, SIM_CANCELED, now_ms);
        st->orders_canceled++;
        emit(e, &rec->o, SIM_EXEC_CANCELED, NULL, rec->o.client_id, e->cancel_client_id, now_ms);
        if (fn != NULL) {
            fn(ctx, &rec->o);
        }
        count++;
        idx = next;
    }
    changes_end(e, now_ms);
    return count;
}

int cq_sim__engine_get_order(const struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                             const char *client_id, struct cq_sim__order *order,
                             struct cq_sim__reject *rej)
{
    const struct order_rec *rec;
    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return reject(rej, SIM_ERR_INVALID_SYMBOL, SIM_MSG_INVALID_SYMBOL);
    }
    rec = lookup(&e->st, symbol_idx, order_id, client_id);
    if (rec == NULL) {
        return reject(rej, SIM_ERR_NO_SUCH_ORDER, SIM_MSG_NO_SUCH_ORDER);
    }
    if (order != NULL) {
        *order = rec->o;
    }
    return 0;
}

size_t cq_sim__engine_open_orders(const struct cq_sim__engine *e, int symbol_idx,
                                  void (*fn)(void *ctx, const struct cq_sim__order *o), void *ctx)
{
    const struct engine_state *st = &e->st;
    size_t count = 0;
    bool all = symbol_idx == -1;
    uint32_t idx;
    if (!all && (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols)) {
        return 0;
    }
    idx = all ? st->all_open.head : st->open[symbol_idx].head;
    while (idx != NO_IDX) {
        const struct order_rec *rec = &st->orders[idx];
        if (fn != NULL) {
            fn(ctx, &rec->o);
        }
        count++;
        idx = all ? rec->gnext : rec->next;
    }
    return count;
}

static bool in_window(int64_t t, int64_t start_ms, int64_t end_ms)
{
    return (start_ms == 0 || t >= start_ms) && (end_ms == 0 || t <= end_ms);
}

static bool order_matches(const struct cq_sim__order *o, int symbol_idx, int64_t start_ms,
                          int64_t end_ms)
{
    return (symbol_idx < 0 || o->symbol_idx == symbol_idx) &&
           in_window(o->time_ms, start_ms, end_ms);
}

/* allOrders. limit 0 means no limit. As on Binance, without from_order_id
 * and start_ms the most recent `limit` orders come back (oldest first);
 * otherwise the oldest `limit` from there on. symbol_idx -1 = all. */
size_t cq_sim__engine_all_orders(const struct cq_sim__engine *e, int symbol_idx,
                                 uint64_t from_order_id, int64_t start_ms, int64_t end_ms,
                                 size_t limit, void (*fn)(void *ctx, const struct cq_sim__order *o),
                                 void *ctx)
{
    const struct engine_state *st = &e->st;
    size_t begin = 0;
    size_t count = 0;
    if (symbol_idx < -1 || symbol_idx >= (int)e->n_symbols) {
        return 0;
    }
    if (limit == 0) {
        limit = SIZE_MAX;
    }
    if (from_order_id > 0) {
        begin = order_lower_bound(st, from_order_id);
    }
    if (from_order_id == 0 && start_ms == 0 && limit != SIZE_MAX) {
        size_t found = 0;
        size_t i = st->n_orders;
        while (i > begin && found < limit) {
            i--;
            if (order_matches(&st->orders[i].o, symbol_idx, start_ms, end_ms)) {
                found++;
            }
        }
        begin = i;
    }
    for (size_t i = begin; i < st->n_orders && count < limit; i++) {
        const struct cq_sim__order *o = &st->orders[i].o;
        if (order_matches(o, symbol_idx, start_ms, end_ms)) {
            if (fn != NULL) {
                fn(ctx, o);
            }
            count++;
        }
    }
    return count;
}

static bool trade_matches(const struct cq_sim__trade *t, int symbol_idx, uint64_t order_id,
                          int64_t start_ms, int64_t end_ms)
{
    return (symbol_idx < 0 || t->symbol_idx == symbol_idx) &&
           (order_id == 0 || t->order_id == order_id) && in_window(t->time_ms, start_ms, end_ms);
}

/* myTrades; same conventions as allOrders (limit 0 = none; most recent
 * without from_id and start_ms). */
size_t cq_sim__engine_my_trades(const struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                                uint64_t from_id, int64_t start_ms, int64_t end_ms, size_t limit,
                                void (*fn)(void *ctx, const struct cq_sim__trade *t), void *ctx)
{
    const struct engine_state *st = &e->st;
    size_t begin = 0;
    size_t count = 0;
    uint64_t oldest;
    if (symbol_idx < -1 || symbol_idx >= (int)e->n_symbols || st->n_trades == 0) {
        return 0;
    }
    if (limit == 0) {
        limit = SIZE_MAX;
    }
    oldest = trade_at(st, 0)->trade_id;
    if (from_id > oldest) {
        if (from_id - oldest >= st->n_trades) {
            return 0;
        }
        begin = (size_t)(from_id - oldest);
    }
    if (from_id == 0 && start_ms == 0 && limit != SIZE_MAX) {
        size_t found = 0;
        size_t i = st->n_trades;
        while (i > begin && found < limit) {
            i--;
            if (trade_matches(trade_at(st, i), symbol_idx, order_id, start_ms, end_ms)) {
                found++;
            }
        }
        begin = i;
    }
    for (size_t i = begin; i < st->n_trades && count < limit; i++) {
        const struct cq_sim__trade *t = trade_at(st, i);
        if (trade_matches(t, symbol_idx, order_id, start_ms, end_ms)) {
            if (fn != NULL) {
                fn(ctx, t);
            }
            count++;
        }
    }
    return count;
}

size_t cq_sim__engine_balances(const struct cq_sim__engine *e,
                               void (*fn)(void *ctx, const struct cq_sim__balance *b), void *ctx)
{
    if (fn != NULL) {
        for (size_t i = 0; i < e->st.n_assets; i++) {
            fn(ctx, &e->st.bal[i]);
        }
    }
    return e->st.n_assets;
}

int cq_sim__engine_set_balance(struct cq_sim__engine *e, const char *asset, cq_dec free_amount,
                               int64_t now_ms)
{
    struct engine_state *st = &e->st;
    cq_dec amount;
    cq_dec sum;
    int a;
    if (asset == NULL || !asset_name_valid(asset) || free_amount.m < 0) {
        return -CQ_EINVAL;
    }
    if (cq_dec_rescale(free_amount, AMOUNT_SCALE, CQ_ROUND_DOWN, &amount) < 0) {
        return -CQ_ETOOBIG; /* above SIM_AMOUNT_MAX_TEXT */
    }
    if (to_amount(free_amount, &amount) < 0) {
        return -CQ_EINVAL; /* more than 8 decimals */
    }
    a = asset_find(st, asset);
    sum = amount;
    if (a >= 0 && !dadd(&sum, st->bal[a].locked)) {
        return -CQ_ETOOBIG; /* I1 */
    }
    if (a < 0) {
        a = asset_add(st, asset);
        if (a < 0) {
            return a;
        }
    }
    change_note(e, a);
    st->bal[a].free = amount;
    changes_end(e, now_ms);
    return 0;
}

void cq_sim__engine_corrupt_locked(struct cq_sim__engine *e, const char *asset, cq_dec locked)
{
    int a = asset != NULL ? asset_find(&e->st, asset) : -1;
    cq_dec v;
    if (a >= 0 && to_amount(locked, &v) == 0) {
        e->st.bal[a].locked = v;
    }
}

/* ---- the market moves --------------------------------------------------------------------- */

/* Fill q of a resting order as maker at its own price. -1 (nothing done)
 * if an amount would leave the int64 range or the trade store cannot
 * grow. */
static int maker_fill(struct cq_sim__engine *e, uint32_t idx, cq_dec q, bool self_trade,
                      int64_t now_ms)
{
    struct engine_state *st = &e->st;
    struct order_rec *rec = &st->orders[idx];
    struct cq_sim__order *o = &rec->o;
    const struct cq_sim__symbol *sym = &e->symbols[o->symbol_idx];
    int base_a = st->base_asset[o->symbol_idx];
    int quote_a = st->quote_asset[o->symbol_idx];
    struct cq_sim__balance b = st->bal[base_a];
    struct cq_sim__balance qb = st->bal[quote_a];
    bool buy = o->side == SIM_BUY;
    cq_dec rem = o->orig_qty;
    cq_dec rem_after, cost, comm, net, cum, sum;
    struct cq_sim__trade *t;
    struct cq_sim__fill f;

    sub_ok(&rem, o->executed_qty);
    ENGINE_INVARIANT(q.m > 0 && !dec_lt(rem, q),
                     "a maker fill of %s exceeds what order %" PRIu64 " has left (%s)", DTXT(q),
                     o->order_id, DTXT(rem));
    rem_after = rem;
    sub_ok(&rem_after, q);
    cum = o->cum_quote_qty;
    if (fill_quote(q, o->price, &cost) < 0 || !dadd(&cum, cost) ||
        commission_of(buy ? q : cost, e->maker_bps, &comm) < 0) {
        return -1;
    }
    net = buy ? q : cost;
    sub_ok(&net, comm);
    if (buy) {
        cq_dec lock_before, lock_after, release;
        if (buy_lock(rem, o->price, &lock_before) < 0 ||
            buy_lock(rem_after, o->price, &lock_after) < 0) {
            return -1;
        }
        release = lock_before;
        sub_ok(&release, cost);
        sub_ok(&release, lock_after); /* >= 0: the rounding note at the top */
        sub_ok(&qb.locked, lock_before);
        add_ok(&qb.locked, lock_after);
        add_ok(&qb.free, release);
        if (!dadd(&b.free, net)) {
            return -1;
        }
    } else {
        sub_ok(&b.locked, q);
        if (!dadd(&qb.free, net)) {
            return -1;
        }
    }
    sum = b.free;
    if (!dadd(&sum, b.locked)) {
        return -1;
    }
    sum = qb.free;
    if (!dadd(&sum, qb.locked)) {
        return -1;
    }
    if (trades_reserve(st, e->max_trades, 1) < 0) {
        return -1;
    }

    change_note(e, base_a);
    change_note(e, quote_a);
    st->bal[base_a] = b;
    st->bal[quote_a] = qb;
    if (o->executed_qty.m == 0) {
        st->orders_first_filled++;
    }
    add_ok(&o->executed_qty, q);
    o->cum_quote_qty = cum;
    o->update_ms = now_ms;
    if (rem_after.m == 0) {
        o->status = SIM_FILLED;
        o->is_working = false;
        open_unlink(st, idx);
    } else {
        o->status = SIM_PARTIALLY_FILLED;
    }

    f.trade_id = st->next_trade_id++;
    f.price = o->price;
    f.qty = q;
    f.quote_qty = cost;
    f.commission = comm;
    /* bounded: base and quote are SIM_ASSET_LEN arrays too */
    cq_strlcpy(f.commission_asset, buy ? sym->base : sym->quote, sizeof(f.commission_asset));
    f.maker = true;
    f.self_trade = self_trade;
    t = trades_push(st);
    t->trade_id = f.trade_id;
    t->order_id = o->order_id;
    t->symbol_idx = o->symbol_idx;
    t->price = f.price;
    t->qty = q;
    t->quote_qty = cost;
    t->commission = comm;
    memcpy(t->commission_asset, f.commission_asset, sizeof(t->commission_asset));
    t->time_ms = now_ms;
    t->is_buyer = buy;
    t->is_maker = true;
    st->fills++;
    emit(e, o, SIM_EXEC_TRADE, &f, NULL, NULL, now_ms);
    return 0;
}

/* The levels of one book side as resting orders see them: what is left
 * of each after what our orders took (the ledger, synced to this book). */
static size_t pool_of(struct cq_sim__engine *e, int symbol_idx,
                      const struct cq_sim__book_view *book, enum cq_sim__side taker_side,
                      cq_dec step, struct pool_level *out, const cq_dec *limit)
{
    struct side_ledger *used = &e->ledger[symbol_idx][ledger_side(taker_side)];
    size_t n, k = 0;
    const struct cq_sim__level *lv = taker_levels(book, taker_side, &n);
    ledger_sync(used, e->refill, lv, n, taker_side);
    for (size_t i = 0; i < n; i++) {
        struct pool_level *pl = &out[k];
        if (!level_price(lv[i].price, taker_side, &pl->price)) {
            continue;
        }
        if (limit != NULL && !crosses(taker_side, pl->price, *limit)) {
            break; /* no resting order reaches this level or any beyond */
        }
        pl->shown = lv[i].qty;
        pl->left = ledger_left(used, e->refill, pl->price, lv[i].qty, step);
        if (pl->left.m > 0) {
            k++;
        }
    }
    return k;
}

/* SIM_QUEUE_NONE, the rule before issue 19: resting orders fill in time
 * priority (oldest first), each at its own limit price, from one shared pool: what is left of the
 * book levels that cross it (down to the step; see "consumed liquidity"), then the market trade if
 * it crosses. What an order takes from the book goes into the ledger, so neither another order in
 * this call nor any order in a later call is offered it again until the model replaces the level.
 */
static size_t legacy_on_market(struct cq_sim__engine *e, int symbol_idx,
                               const struct cq_sim__book_view *book, cq_dec trade_price,
                               cq_dec trade_qty, int64_t now_ms)
{
    struct engine_state *st = &e->st;
    const struct cq_sim__symbol *sym;
    struct pool_level *asks = e->mk_asks;
    struct pool_level *bids = e->mk_bids;
    size_t n_asks = 0, n_bids = 0, nfills = 0;
    cq_dec step, tq = ZERO8;
    bool has_trade;
    uint32_t idx;

    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return 0;
    }
    sym = &e->symbols[symbol_idx];
    step = sym->filters.step_size;
    if (book != NULL) {
        /* synced even with no order resting, so a level replaced while
         * nothing rested is not mistaken for the one we took from */
        n_asks = pool_of(e, symbol_idx, book, SIM_BUY, step, asks, NULL);
        n_bids = pool_of(e, symbol_idx, book, SIM_SELL, step, bids, NULL);
    }
    if (st->open[symbol_idx].count == 0) {
        return 0;
    }
    has_trade = trade_price.m > 0 && trade_qty.m > 0;
    if (has_trade) {
        tq = level_qty(trade_qty, step);
        has_trade = tq.m > 0;
    }

    if (trade_price.m > 0) { /* stops trigger on the last trade price */
        for (idx = st->open[symbol_idx].head; idx != NO_IDX; idx = st->orders[idx].next) {
            struct cq_sim__order *o = &st->orders[idx].o;
            if (stop_pending(o) && stop_reached(o->type, o->side, o->stop_price, trade_price)) {
                o->is_working = true;
                o->working_ms = now_ms;
                o->update_ms = now_ms;
                emit(e, o, SIM_EXEC_NEW, NULL, NULL, NULL, now_ms);
            }
        }
    }

    idx = st->open[symbol_idx].head;
    while (idx != NO_IDX) {
        struct order_rec *rec = &st->orders[idx];
        struct cq_sim__order *o = &rec->o;
        uint32_t next = rec->next;
        if (!o->is_working) { /* a stop still waiting */
            idx = next;
            continue;
        }
        struct pool_level *lv = o->side == SIM_BUY ? asks : bids;
        size_t n = o->side == SIM_BUY ? n_asks : n_bids;
        struct side_ledger *used = &e->ledger[symbol_idx][ledger_side(o->side)];
        cq_dec rem = o->orig_qty;
        cq_dec q = ZERO8;
        cq_dec left;
        size_t i;

        sub_ok(&rem, o->executed_qty);
        for (i = 0; i < n && dec_lt(q, rem); i++) {
            cq_dec want = rem;
            if (!crosses(o->side, lv[i].price, o->price)) {
                break;
            }
            sub_ok(&want, q);
            add_ok(&q, cq_dec_min(want, lv[i].left));
        }
        if (dec_lt(q, rem) && has_trade && crosses(o->side, trade_price, o->price)) {
            cq_dec want = rem;
            sub_ok(&want, q);
            add_ok(&q, cq_dec_min(want, tq));
        }
        if (q.m > 0 && maker_fill(e, idx, q, false, now_ms) == 0) {
            nfills++;
            left = q; /* take it out of the pool, book first */
            for (i = 0; i < n && left.m > 0; i++) {
                cq_dec take;
                if (!crosses(o->side, lv[i].price, o->price)) {
                    break;
                }
                take = cq_dec_min(left, lv[i].left);
                if (take.m > 0) {
                    sub_ok(&lv[i].left, take);
                    sub_ok(&left, take);
                    ledger_take(used, lv[i].price, lv[i].shown, take);
                }
            }
            if (left.m > 0) {
                sub_ok(&tq, left);
            }
        }
        idx = next;
    }
    changes_end(e, now_ms);
    return nfills;
}

/* ---- queue model ------------------------------------------------------------------------ *
 *
 * Our resting orders wait in a queue at their price in a book we cannot
 * change (the market model's, or the recorded one). Per order (struct
 * queue_pos): on joining (placed resting, a stop triggered, or the first
 * market event after a --state load), `ahead` = what the book displays at
 * its price on its side, less what our takers took from that level; not
 * known when the price is deeper than the levels shown (then only trades
 * through its price fill it).
 *
 * A public trade of v at price x, aggressor on the other side (a sell
 * hits our BUYs with price >= x), is one pool of v shared in price-time
 * priority: first our orders priced better than x (the trade went through
 * their level, which was therefore consumed: ahead = 0), each up to what
 * is left of v; then our orders at x, oldest first: the volume that
 * reaches order i is v_at - (what our earlier orders at x took from this
 * trade), v_at being what the better-priced ones left; it first shrinks
 * `ahead`, and only what passes it fills the order. A trade whose
 * aggressor is on our side never fills us (it took from the other side).
 *
 * A book update: conservative (hftbacktest RiskAverseQueueModel):
 * ahead = min(ahead, displayed now): cancels are assumed behind us, but the
 * queue ahead can never exceed the level. Probabilistic (ProbQueueModel,
 * PowerProbQueueFunc): see queue_estimate. A level on the other side at or
 * through our price (the price moved through us) means our level was
 * consumed: ahead = 0, and the order fills from the crossing levels as
 * before, from what our orders have not taken of them (the ledger, NET by
 * default): that is the sellers who would have met our bid.
 *
 * The invariant, checked on every order a trade reaches, in every build:
 *   from_trades + to_ahead <= seen
 * (our maker fills from trades never exceed the public volume that traded
 * at or through the order's price since it joined, minus what went to the
 * queue ahead), and per trade the fills never exceed its quantity. Fills
 * from crossing levels are bounded by the ledger (I6). */

/* What the book displays at `price` on the side a resting order on `side`
 * joins (bids for a BUY), less what our takers took from that level: true
 * with *qty (0 when the price lies inside the displayed levels but is not
 * one of them, or is better than the best); false when it is unknown (the
 * side is empty or the price is deeper than the last level shown). */
static bool queue_level(const struct cq_sim__engine *e, int symbol_idx,
                        const struct cq_sim__book_view *b, enum cq_sim__side side, cq_dec price,
                        cq_dec *qty)
{
    enum cq_sim__side taker = side == SIM_BUY ? SIM_SELL : SIM_BUY;
    const struct side_ledger *used = &e->ledger[symbol_idx][ledger_side(taker)];
    const struct cq_sim__level *lv;
    size_t n;
    *qty = ZERO8;
    if (b == NULL) {
        return false;
    }
    lv = taker_levels(b, taker, &n);
    for (size_t i = 0; i < n; i++) {
        cq_dec lp;
        int c;
        if (!level_price(lv[i].price, taker, &lp)) {
            continue;
        }
        c = cq_dec_cmp(lp, price);
        if (c == 0) {
            *qty = ledger_left(used, e->refill, lp, lv[i].qty, ZERO8);
            return true;
        }
        if (side == SIM_BUY ? c < 0 : c > 0) { /* passed it: not shown */
            return true;
        }
    }
    return false;
}

static void queue_join(struct cq_sim__engine *e, struct order_rec *rec,
                       const struct cq_sim__book_view *b)
{
    struct queue_pos *q = &rec->q;
    q->ahead = ZERO8;
    q->traded = ZERO8;
    q->seen = ZERO8;
    q->to_ahead = ZERO8;
    q->from_trades = ZERO8;
    q->known = queue_level(e, rec->o.symbol_idx, b, rec->o.side, rec->o.price, &q->ahead);
    q->level_shown = q->ahead;
}

/* p = f(back) / (f(back) + f(front)), f(x) = x^n, in millionths, rounded
 * down; front and back at scale 8, both >= 0. 1 when both are 0 (nothing
 * queued: hftbacktest's non-finite case). */
static int64_t prob_behind_ppm(cq_dec front, cq_dec back, unsigned n)
{
    __extension__ typedef __int128 i128;
    i128 f = front.m, b = back.m, mx = f > b ? f : b, fn = 1, bn = 1;
    if (mx <= 0) {
        return 1000000;
    }
    f = f * 1000000 / mx; /* <= 10^6, so f^4 <= 10^24 fits */
    b = b * 1000000 / mx;
    for (unsigned i = 0; i < n; i++) {
        fn *= f;
        bn *= b;
    }
    if (fn + bn == 0) {
        return 1000000;
    }
    return (int64_t)(bn * 1000000 / (fn + bn));
}

/* hftbacktest's ProbQueueModel: a decrease of the level that the trades
 * since the last update do not explain, chg = prev - now - traded, came
 * from ahead of us with probability 1 - p (p = prob_behind_ppm):
 *   ahead = front - (1 - p) chg + min(back - p chg, 0),  back = prev - front
 * (the second term: what the model would take from behind beyond what is
 * there came from ahead). The products are rounded down (a longer queue);
 * on any overflow the estimate is left as it was (the conservative one). */
static void queue_estimate(const struct cq_sim__engine *e, struct queue_pos *q, cq_dec shown)
{
    cq_dec chg = q->level_shown;
    cq_dec back = q->level_shown;
    cq_dec est = q->ahead;
    cq_dec t;
    int64_t p;
    if (!dsub(&chg, shown) || !dsub(&chg, q->traded) || chg.m <= 0 || !dsub(&back, q->ahead) ||
        back.m < 0 || cq_dec_rescale(back, AMOUNT_SCALE, CQ_ROUND_EXACT, &back) < 0 ||
        cq_dec_rescale(est, AMOUNT_SCALE, CQ_ROUND_EXACT, &est) < 0) {
        return;
    }
    p = prob_behind_ppm(est, back, e->queue_power);
    if (cq_dec_mul(chg, cq_dec_make(1000000 - p, 6), AMOUNT_SCALE, CQ_ROUND_DOWN, &t) < 0 ||
        !dsub(&est, t)) {
        return;
    }
    if (cq_dec_mul(chg, cq_dec_make(p, 6), AMOUNT_SCALE, CQ_ROUND_DOWN, &t) < 0 ||
        !dsub(&back, t)) {
        return;
    }
    if (back.m < 0 && !dadd(&est, back)) {
        return;
    }
    q->ahead = est.m < 0 ? ZERO8 : est;
}

/* A book update reaches a resting order's level. */
static void queue_on_book(struct cq_sim__engine *e, struct order_rec *rec,
                          const struct cq_sim__book_view *b)
{
    struct queue_pos *q = &rec->q;
    cq_dec shown;
    if (!q->known) { /* joined where the book showed nothing: try again */
        if (queue_level(e, rec->o.symbol_idx, b, rec->o.side, rec->o.price, &shown)) {
            q->known = true;
            q->ahead = shown;
            q->level_shown = shown;
            q->traded = ZERO8;
        }
        return;
    }
    if (!queue_level(e, rec->o.symbol_idx, b, rec->o.side, rec->o.price, &shown)) {
        return; /* deeper than the book shows: no news */
    }
    if (e->queue_model == SIM_QUEUE_PROBABILISTIC) {
        queue_estimate(e, q, shown);
    }
    if (dec_lt(shown, q->ahead)) {
        q->ahead = shown;
    }
    q->level_shown = shown;
    q->traded = ZERO8;
}

static void check_queue(const struct order_rec *rec)
{
    const struct queue_pos *q = &rec->q;
    cq_dec used = q->from_trades;
    add_ok(&used, q->to_ahead);
    ENGINE_INVARIANT(!dec_lt(q->seen, used),
                     "queue: order %" PRIu64 " filled %s as maker from public trades and %s "
                     "went to the queue ahead of it, but only %s traded at or through %s "
                     "since it joined",
                     rec->o.order_id, DTXT(q->from_trades), DTXT(q->to_ahead), DTXT(q->seen),
                     DTXT(rec->o.price));
}

static void trigger_stops(struct cq_sim__engine *e, int symbol_idx,
                          const struct cq_sim__book_view *book, cq_dec trade_price, int64_t now_ms)
{
    struct engine_state *st = &e->st;
    for (uint32_t idx = st->open[symbol_idx].head; idx != NO_IDX; idx = st->orders[idx].next) {
        struct cq_sim__order *o = &st->orders[idx].o;
        if (stop_pending(o) && stop_reached(o->type, o->side, o->stop_price, trade_price)) {
            o->is_working = true;
            o->working_ms = now_ms;
            o->update_ms = now_ms;
            queue_join(e, &st->orders[idx], book);
            emit(e, o, SIM_EXEC_NEW, NULL, NULL, NULL, now_ms);
        }
    }
}

size_t cq_sim__engine_on_trade(struct cq_sim__engine *e, int symbol_idx,
                               const struct cq_sim__book_view *book, cq_dec trade_price,
                               cq_dec trade_qty, bool buyer_is_maker, int64_t now_ms)
{
    struct engine_state *st = &e->st;
    /* the side it hit: a sell aggressor (the buyer was the maker) hits BUYs */
    enum cq_sim__side hit = buyer_is_maker ? SIM_BUY : SIM_SELL;
    cq_dec step, v, pool, v_at = ZERO8, ours_at = ZERO8, price;
    bool at_started = false;
    size_t n = 0, nfills = 0;

    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return 0;
    }
    if (e->queue_model == SIM_QUEUE_NONE) {
        return legacy_on_market(e, symbol_idx, book, trade_price, trade_qty, now_ms);
    }
    if (trade_price.m <= 0 ||
        cq_dec_rescale(trade_price, AMOUNT_SCALE, CQ_ROUND_EXACT, &price) < 0) {
        return 0; /* not a price the engine can hold */
    }
    step = e->symbols[symbol_idx].filters.step_size;
    v = level_qty(trade_qty, ZERO8);
    pool = v;
    for (uint32_t idx = st->open[symbol_idx].head; idx != NO_IDX; idx = st->orders[idx].next) {
        const struct cq_sim__order *o = &st->orders[idx].o;
        if (!o->is_working || o->side != hit || !crosses(hit, price, o->price)) {
            continue;
        }
        if (n == SIM_QUEUE_SCAN_MAX) {
            e->queue_scan_truncated++;
            continue;
        }
        e->scan[n].idx = idx;
        e->scan[n].price = o->price;
        n++;
    }
    scan_sort(e->scan, n, hit);
    for (size_t k = 0; k < n; k++) {
        uint32_t idx = e->scan[k].idx;
        struct order_rec *rec = &st->orders[idx];
        struct queue_pos *q = &rec->q;
        cq_dec rem = rec->o.orig_qty;
        cq_dec fill = ZERO8;
        bool at = dec_eq(rec->o.price, price);
        sub_ok(&rem, rec->o.executed_qty);
        add_ok(&q->seen, v); /* the whole trade printed at or through its price */
        if (!at) {           /* the trade went through its level: consumed */
            q->ahead = ZERO8;
            q->known = true;
            fill = cq_dec_min(rem, pool);
        } else {
            cq_dec reach;
            if (!at_started) {
                v_at = pool;
                at_started = true;
            }
            reach = v_at;
            sub_ok(&reach, ours_at);
            add_ok(&q->traded, v);
            if (!q->known) {
                /* no estimate of the queue ahead: nothing passes it */
            } else if (dec_lt(q->ahead, reach)) {
                cq_dec excess = reach;
                sub_ok(&excess, q->ahead);
                add_ok(&q->to_ahead, q->ahead);
                q->ahead = ZERO8;
                fill = cq_dec_min(cq_dec_min(rem, excess), pool);
            } else {
                sub_ok(&q->ahead, reach);
                add_ok(&q->to_ahead, reach);
            }
        }
        fill = to_step(fill, step);
        if (fill.m > 0 && maker_fill(e, idx, fill, false, now_ms) == 0) {
            nfills++;
            add_ok(&q->from_trades, fill);
            sub_ok(&pool, fill);
            if (at) {
                add_ok(&ours_at, fill);
            }
        }
        check_queue(rec);
        ENGINE_INVARIANT(pool.m >= 0,
                         "queue: our maker fills from one public trade of %s at %s "
                         "exceed it",
                         DTXT(v), DTXT(price));
    }
    trigger_stops(e, symbol_idx, book, price, now_ms);
    changes_end(e, now_ms);
    return nfills;
}

size_t cq_sim__engine_on_book(struct cq_sim__engine *e, int symbol_idx,
                              const struct cq_sim__book_view *book, int64_t now_ms)
{
    struct engine_state *st = &e->st;
    struct pool_level *asks = e->mk_asks;
    struct pool_level *bids = e->mk_bids;
    size_t n_asks, n_bids, nfills = 0;
    cq_dec step;
    uint32_t idx;

    if (symbol_idx < 0 || (size_t)symbol_idx >= e->n_symbols) {
        return 0;
    }
    if (e->queue_model == SIM_QUEUE_NONE) {
        return legacy_on_market(e, symbol_idx, book, CQ_DEC_ZERO, CQ_DEC_ZERO, now_ms);
    }
    if (book == NULL) {
        return 0;
    }
    step = e->symbols[symbol_idx].filters.step_size;
    /* the ledger is synced even with no order resting (see
     * legacy_on_market); the pool is worked out only as deep as the most
     * aggressive resting order on each side reaches */
    cq_dec best_buy = ZERO8, best_sell = ZERO8;
    bool any_buy = false, any_sell = false;
    for (idx = st->open[symbol_idx].head; idx != NO_IDX; idx = st->orders[idx].next) {
        const struct cq_sim__order *o = &st->orders[idx].o;
        if (!o->is_working) {
            continue;
        }
        if (o->side == SIM_BUY && (!any_buy || dec_lt(best_buy, o->price))) {
            best_buy = o->price;
            any_buy = true;
        } else if (o->side == SIM_SELL && (!any_sell || dec_lt(o->price, best_sell))) {
            best_sell = o->price;
            any_sell = true;
        }
    }
    n_asks = pool_of(e, symbol_idx, book, SIM_BUY, step, asks, any_buy ? &best_buy : &ZERO8);
    n_bids = pool_of(e, symbol_idx, book, SIM_SELL, step, bids, any_sell ? &best_sell : &MAX_PRICE);
    idx = st->open[symbol_idx].head;
    while (idx != NO_IDX) {
        struct order_rec *rec = &st->orders[idx];
        struct cq_sim__order *o = &rec->o;
        uint32_t next = rec->next;
        struct pool_level *lv = o->side == SIM_BUY ? asks : bids;
        size_t n = o->side == SIM_BUY ? n_asks : n_bids;
        struct side_ledger *used = &e->ledger[symbol_idx][ledger_side(o->side)];
        const struct cq_sim__level *opp;
        size_t n_opp;
        cq_dec rem = o->orig_qty;
        cq_dec q = ZERO8;
        cq_dec left;
        size_t i;

        if (!o->is_working) { /* a stop still waiting */
            idx = next;
            continue;
        }
        queue_on_book(e, rec, book);
        opp = taker_levels(book, o->side, &n_opp);
        for (i = 0; i < n_opp; i++) {
            cq_dec lp;
            if (level_price(opp[i].price, o->side, &lp) && opp[i].qty.m > 0) {
                if (crosses(o->side, lp, o->price)) { /* the price moved through it */
                    rec->q.ahead = ZERO8;
                    rec->q.known = true;
                }
                break;
            }
        }
        sub_ok(&rem, o->executed_qty);
        for (i = 0; i < n && dec_lt(q, rem); i++) {
            cq_dec want = rem;
            if (!crosses(o->side, lv[i].price, o->price)) {
                break;
            }
            sub_ok(&want, q);
            add_ok(&q, cq_dec_min(want, lv[i].left));
        }
        if (q.m > 0 && maker_fill(e, idx, q, false, now_ms) == 0) {
            nfills++;
            left = q;
            for (i = 0; i < n && left.m > 0; i++) {
                cq_dec take = cq_dec_min(left, lv[i].left);
                if (take.m > 0) {
                    sub_ok(&lv[i].left, take);
                    sub_ok(&left, take);
                    ledger_take(used, lv[i].price, lv[i].shown, take);
                }
            }
            ENGINE_INVARIANT(left.m == 0,
                             "order %" PRIu64 " filled %s from crossing levels that "
                             "offered less",
                             o->order_id, DTXT(q));
        }
        idx = next;
    }
    changes_end(e, now_ms);
    return nfills;
}

bool cq_sim__engine_queue_ahead(const struct cq_sim__engine *e, uint64_t order_id, cq_dec *ahead)
{
    const struct order_rec *rec = order_by_id(&e->st, order_id);
    if (rec == NULL || !is_open(&rec->o) || !rec->o.is_working || !rec->q.known) {
        return false;
    }
    *ahead = rec->q.ahead;
    return true;
}

void cq_sim__engine_corrupt_queue(struct cq_sim__engine *e, uint64_t order_id, cq_dec seen)
{
    struct order_rec *rec = order_by_id(&e->st, order_id);
    cq_dec v;
    if (rec != NULL && to_amount(seen, &v) == 0) {
        rec->q.seen = v;
    }
}

/* ---- persistence ------------------------------------------------------------------------ */

static void put(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        *ok = false;
    }
}

static void push(json_t *arr, json_t *v, bool *ok)
{
    if (v == NULL || json_array_append_new(arr, v) != 0) {
        *ok = false;
    }
}

static json_t *dec_json(cq_dec d)
{
    char buf[CQ_DEC_STR_MAX];
    return json_string(cq_dec_format(d, buf, sizeof(buf)));
}

static json_t *order_json(const struct cq_sim__engine *e, const struct cq_sim__order *o, bool *ok)
{
    json_t *j = json_object();
    put(j, "order_id", json_integer((json_int_t)o->order_id), ok);
    put(j, "symbol", json_string(e->symbols[o->symbol_idx].symbol), ok);
    put(j, "client_id", json_string(o->client_id), ok);
    put(j, "side", json_string(cq_sim__side_name(o->side)), ok);
    put(j, "type", json_string(cq_sim__order_type_name(o->type)), ok);
    put(j, "time_in_force", json_string(cq_sim__tif_name(o->tif)), ok);
    put(j, "price", dec_json(o->price), ok);
    if (cq_sim__order_type_is_stop(o->type)) {
        put(j, "stop_price", dec_json(o->stop_price), ok);
    }
    put(j, "orig_qty", dec_json(o->orig_qty), ok);
    put(j, "orig_quote_qty", dec_json(o->orig_quote_qty), ok);
    put(j, "executed_qty", dec_json(o->executed_qty), ok);
    put(j, "cum_quote_qty", dec_json(o->cum_quote_qty), ok);
    put(j, "status", json_string(cq_sim__order_status_name(o->status)), ok);
    put(j, "time_ms", json_integer(o->time_ms), ok);
    put(j, "update_ms", json_integer(o->update_ms), ok);
    put(j, "working_ms", json_integer(o->working_ms), ok);
    put(j, "is_working", json_boolean(o->is_working), ok);
    put(j, "stp", json_string(cq_sim__stp_name(o->stp)), ok);
    if (o->expiry != SIM_EXPIRY_NONE) {
        put(j, "expiry_reason", json_string(cq_sim__expiry_name(o->expiry)), ok);
    }
    if (o->prevented) {
        put(j, "prevented_match_id", json_integer((json_int_t)o->prevented_match_id), ok);
        put(j, "prevented_qty", dec_json(o->prevented_qty), ok);
    }
    return j;
}

static json_t *trade_json(const struct cq_sim__engine *e, const struct cq_sim__trade *t, bool *ok)
{
    json_t *j = json_object();
    put(j, "trade_id", json_integer((json_int_t)t->trade_id), ok);
    put(j, "order_id", json_integer((json_int_t)t->order_id), ok);
    put(j, "symbol", json_string(e->symbols[t->symbol_idx].symbol), ok);
    put(j, "price", dec_json(t->price), ok);
    put(j, "qty", dec_json(t->qty), ok);
    put(j, "quote_qty", dec_json(t->quote_qty), ok);
    put(j, "commission", dec_json(t->commission), ok);
    put(j, "commission_asset", json_string(t->commission_asset), ok);
    put(j, "time_ms", json_integer(t->time_ms), ok);
    put(j, "is_buyer", json_boolean(t->is_buyer), ok);
    put(j, "is_maker", json_boolean(t->is_maker), ok);
    return j;
}

/* {"version":2, "first_order_id", "next_order_id", "next_trade_id",
 *  "client_id_rng" (u64 as a decimal string), "stats":{…},
 *  "balances":[{asset,free,locked}], "orders":[…], "trades":[…]} with
 * every amount an exact 8-decimal string. */
json_t *cq_sim__engine_save(const struct cq_sim__engine *e)
{
    const struct engine_state *st = &e->st;
    json_t *root = json_object();
    json_t *stats = json_object();
    json_t *bal = json_array();
    json_t *orders = json_array();
    json_t *trades = json_array();
    char rng[24];
    bool ok = root != NULL;

    snprintf(rng, sizeof(rng), "%" PRIu64, st->rng); /* bounded: at most 20 digits */
    put(root, "version", json_integer(STATE_VERSION), &ok);
    put(root, "first_order_id", json_integer((json_int_t)st->first_order_id), &ok);
    put(root, "next_order_id", json_integer((json_int_t)st->next_order_id), &ok);
    put(root, "next_trade_id", json_integer((json_int_t)st->next_trade_id), &ok);
    put(root, "client_id_rng", json_string(rng), &ok);
    put(stats, "orders_placed", json_integer((json_int_t)st->orders_placed), &ok);
    put(stats, "orders_rejected", json_integer((json_int_t)st->orders_rejected), &ok);
    put(stats, "orders_canceled", json_integer((json_int_t)st->orders_canceled), &ok);
    put(stats, "fills", json_integer((json_int_t)st->fills), &ok);
    put(stats, "orders_dropped", json_integer((json_int_t)st->orders_dropped), &ok);
    put(root, "stats", stats, &ok);
    for (size_t i = 0; i < st->n_assets; i++) {
        json_t *b = json_object();
        put(b, "asset", json_string(st->bal[i].asset), &ok);
        put(b, "free", dec_json(st->bal[i].free), &ok);
        put(b, "locked", dec_json(st->bal[i].locked), &ok);
        push(bal, b, &ok);
    }
    put(root, "balances", bal, &ok);
    for (size_t i = 0; i < st->n_orders; i++) {
        push(orders, order_json(e, &st->orders[i].o, &ok), &ok);
    }
    put(root, "orders", orders, &ok);
    for (size_t i = 0; i < st->n_trades; i++) {
        push(trades, trade_json(e, trade_at(st, i), &ok), &ok);
    }
    put(root, "trades", trades, &ok);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- load --------------------------------------------------------------------------------- */

#define LOAD_HINT "the state file is damaged or from another version; move it away to start fresh"

/* -CQ_EPARSE naming the field: "orders[3].price". */
static int bad_field(struct cq_err *err, const char *path, const char *key, const char *what)
{
    return cq_err_set(err, CQ_EPARSE, 0, LOAD_HINT, "state field '%s%s%s': %s", path,
                      path[0] != '\0' && key != NULL ? "." : "", key != NULL ? key : "", what);
}

static int get_int(const json_t *obj, const char *path, const char *key, json_int_t lo,
                   json_int_t hi, json_int_t *out, struct cq_err *err)
{
    const json_t *v = json_object_get(obj, key);
    json_int_t x;
    if (!json_is_integer(v)) {
        return bad_field(err, path, key, "missing or not an integer");
    }
    x = json_integer_value(v);
    if (x < lo || x > hi) {
        return bad_field(err, path, key, "out of range");
    }
    *out = x;
    return 0;
}

static int get_i64(const json_t *obj, const char *path, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, struct cq_err *err)
{
    json_int_t x = 0;
    int rc = get_int(obj, path, key, (json_int_t)lo, (json_int_t)hi, &x, err);
    if (rc == 0) {
        *out = (int64_t)x;
    }
    return rc;
}

static int get_u64(const json_t *obj, const char *path, const char *key, uint64_t lo, uint64_t hi,
                   uint64_t *out, struct cq_err *err)
{
    json_int_t x = 0;
    int rc = get_int(obj, path, key, (json_int_t)lo, (json_int_t)hi, &x, err);
    if (rc == 0) {
        *out = (uint64_t)x;
    }
    return rc;
}

static int get_str(const json_t *obj, const char *path, const char *key, char *buf, size_t len,
                   bool allow_empty, struct cq_err *err)
{
    const json_t *v = json_object_get(obj, key);
    size_t n;
    if (!json_is_string(v)) {
        return bad_field(err, path, key, "missing or not a string");
    }
    n = json_string_length(v);
    if ((n == 0 && !allow_empty) || n >= len || strlen(json_string_value(v)) != n) {
        return bad_field(err, path, key, "empty or too long");
    }
    memcpy(buf, json_string_value(v), n + 1);
    return 0;
}

/* A non-negative amount string with at most 8 decimals. */
static int get_amount(const json_t *obj, const char *path, const char *key, cq_dec *out,
                      struct cq_err *err)
{
    const json_t *v = json_object_get(obj, key);
    cq_dec d;
    if (!json_is_string(v) || cq_dec_parse(json_string_value(v), json_string_length(v), &d) < 0 ||
        d.m < 0 || to_amount(d, out) < 0) {
        return bad_field(err, path, key,
                         "missing or not a non-negative decimal string with at most 8 decimals");
    }
    return 0;
}

static int get_bool(const json_t *obj, const char *path, const char *key, bool *out,
                    struct cq_err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_boolean(v)) {
        return bad_field(err, path, key, "missing or not a boolean");
    }
    *out = json_is_true(v);
    return 0;
}

static const json_t *get_array(const json_t *obj, const char *key, size_t max, struct cq_err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_array(v)) {
        bad_field(err, "", key, "missing or not an array");
        return NULL;
    }
    if (json_array_size(v) > max) {
        bad_field(err, "", key, "more entries than this engine keeps");
        return NULL;
    }
    return v;
}

static int parse_status(const char *s, enum cq_sim__order_status *out)
{
    for (int i = SIM_NEW; i <= SIM_EXPIRED_IN_MATCH; i++) {
        if (strcmp(s, cq_sim__order_status_name((enum cq_sim__order_status)i)) == 0) {
            *out = (enum cq_sim__order_status)i;
            return 0;
        }
    }
    return -CQ_EPARSE;
}

static int load_balances(const struct cq_sim__engine *e, const json_t *root,
                         struct engine_state *ns, struct cq_err *err)
{
    const json_t *arr = get_array(root, "balances", SIM_ASSETS_MAX, err);
    char path[48];
    if (arr == NULL) {
        return -CQ_EPARSE;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *b = json_array_get(arr, i);
        struct cq_sim__balance *out = &ns->bal[i];
        cq_dec sum;
        int rc;
        snprintf(path, sizeof(path), "balances[%zu]", i); /* bounded: 9 + 20 + 2 < 48 */
        if (!json_is_object(b)) {
            return bad_field(err, path, NULL, "not an object");
        }
        memset(out, 0, sizeof(*out));
        rc = get_str(b, path, "asset", out->asset, sizeof(out->asset), false, err);
        if (rc == 0 && (!asset_name_valid(out->asset) || asset_find(ns, out->asset) >= 0)) {
            rc = bad_field(err, path, "asset", "not an asset name, or repeated");
        }
        if (rc == 0) {
            rc = get_amount(b, path, "free", &out->free, err);
        }
        if (rc == 0) {
            rc = get_amount(b, path, "locked", &out->locked, err);
        }
        sum = out->free;
        if (rc == 0 && !dadd(&sum, out->locked)) {
            rc = bad_field(err, path, "free", "free + locked is too large");
        }
        if (rc < 0) {
            return rc;
        }
        ns->n_assets = i + 1;
    }
    if (state_add_symbol_assets(ns, e) < 0) {
        return bad_field(err, "", "balances", "too many assets with the symbols' assets");
    }
    return 0;
}

/* One order; consistency of its fields with each other. */
static int load_order(const struct cq_sim__engine *e, const json_t *j, const char *path,
                      uint64_t min_id, uint64_t max_id, struct cq_sim__order *o, struct cq_err *err)
{
    char name[CQ_SYMBOL_LEN + 1];
    char word[40]; /* the longest: UNFILLED_IOC_QUANTITY_EXPIRED (29) */
    bool market, open;
    int rc;

    if (!json_is_object(j)) {
        return bad_field(err, path, NULL, "not an object");
    }
    memset(o, 0, sizeof(*o));
    rc = min_id <= max_id ? get_u64(j, path, "order_id", min_id, max_id, &o->order_id, err)
                          : -CQ_EPARSE;
    if (rc < 0) {
        return bad_field(err, path, "order_id",
                         "not above the previous order's id and below next_order_id");
    }
    rc = get_str(j, path, "symbol", name, sizeof(name), false, err);
    if (rc < 0) {
        return rc;
    }
    o->symbol_idx = cq_sim__engine_symbol_index(e, name);
    if (o->symbol_idx < 0) {
        return bad_field(err, path, "symbol", "not a symbol of this engine");
    }
    rc = get_str(j, path, "client_id", o->client_id, sizeof(o->client_id), false, err);
    if (rc < 0) {
        return rc;
    }
    if (!client_id_valid(o->client_id)) {
        return bad_field(err, path, "client_id", "not ^[a-zA-Z0-9-_]{1,36}$");
    }
    if (get_str(j, path, "side", word, sizeof(word), false, err) < 0 ||
        cq_sim__side_parse(word, &o->side) < 0) {
        return bad_field(err, path, "side", "not BUY or SELL");
    }
    if (get_str(j, path, "type", word, sizeof(word), false, err) < 0 ||
        cq_sim__order_type_parse(word, &o->type) < 0) {
        return bad_field(err, path, "type",
                         "not LIMIT, MARKET, LIMIT_MAKER, STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT");
    }
    market = o->type == SIM_MARKET;
    if (get_str(j, path, "time_in_force", word, sizeof(word), true, err) < 0) {
        return -CQ_EPARSE;
    }
    if (word[0] == '\0') {
        o->tif = SIM_TIF_NONE;
    } else if (cq_sim__tif_parse(word, &o->tif) < 0) {
        return bad_field(err, path, "time_in_force", "not GTC, IOC, FOK or \"\"");
    }
    if ((o->type == SIM_LIMIT || cq_sim__order_type_is_stop(o->type)) != (o->tif != SIM_TIF_NONE) ||
        (cq_sim__order_type_is_stop(o->type) && o->tif != SIM_GTC)) {
        return bad_field(err, path, "time_in_force", "does not fit the order type");
    }
    o->stp = SIM_STP_NONE; /* absent in files written before modes were offered */
    if (json_object_get(j, "stp") != NULL &&
        (get_str(j, path, "stp", word, sizeof(word), false, err) < 0 ||
         cq_sim__stp_parse(word, &o->stp) < 0)) {
        return bad_field(err, path, "stp", "not NONE, EXPIRE_TAKER, EXPIRE_MAKER or EXPIRE_BOTH");
    }
    o->expiry = SIM_EXPIRY_NONE; /* absent when not expired, and in older files */
    if (json_object_get(j, "expiry_reason") != NULL &&
        (get_str(j, path, "expiry_reason", word, sizeof(word), false, err) < 0 ||
         cq_sim__expiry_parse(word, &o->expiry) < 0)) {
        return bad_field(err, path, "expiry_reason",
                         "not UNFILLED_IOC_QUANTITY_EXPIRED, UNFILLED_FOK_ORDER_EXPIRED or "
                         "INSUFFICIENT_LIQUIDITY");
    }
    o->stop_price = ZERO8;
    if (cq_sim__order_type_is_stop(o->type) &&
        (get_amount(j, path, "stop_price", &o->stop_price, err) < 0 || o->stop_price.m <= 0)) {
        return bad_field(err, path, "stop_price", "missing or not above 0 on a stop order");
    }
    if (!cq_sim__order_type_is_stop(o->type) && json_object_get(j, "stop_price") != NULL) {
        return bad_field(err, path, "stop_price", "set on an order that is not a stop order");
    }
    if (get_amount(j, path, "price", &o->price, err) < 0 ||
        get_amount(j, path, "orig_qty", &o->orig_qty, err) < 0 ||
        get_amount(j, path, "orig_quote_qty", &o->orig_quote_qty, err) < 0 ||
        get_amount(j, path, "executed_qty", &o->executed_qty, err) < 0 ||
        get_amount(j, path, "cum_quote_qty", &o->cum_quote_qty, err) < 0) {
        return -CQ_EPARSE;
    }
    if (market != (o->price.m == 0)) {
        return bad_field(err, path, "price", "must be 0 for MARKET and > 0 otherwise");
    }
    if (!market && o->orig_quote_qty.m != 0) {
        return bad_field(err, path, "orig_quote_qty", "only a MARKET order has one");
    }
    if (!market && o->orig_qty.m == 0) {
        return bad_field(err, path, "orig_qty", "must be > 0");
    }
    if (dec_lt(o->orig_qty, o->executed_qty)) {
        return bad_field(err, path, "executed_qty", "exceeds orig_qty");
    }
    if (get_str(j, path, "status", word, sizeof(word), false, err) < 0 ||
        parse_status(word, &o->status) < 0) {
        return bad_field(err, path, "status", "not an order status");
    }
    open = is_open(o);
    if (o->status == SIM_EXPIRED_IN_MATCH) { /* STP expired it: what it prevented */
        if (get_u64(j, path, "prevented_match_id", 0, MAX_FIRST_ID, &o->prevented_match_id, err) <
                0 ||
            get_amount(j, path, "prevented_qty", &o->prevented_qty, err) < 0) {
            return -CQ_EPARSE;
        }
        o->prevented = true;
    } else if (json_object_get(j, "prevented_qty") != NULL) {
        return bad_field(err, path, "prevented_qty", "set on an order STP did not expire");
    }
    if (o->status == SIM_REJECTED || (o->status == SIM_NEW && o->executed_qty.m != 0) ||
        (o->status == SIM_PARTIALLY_FILLED &&
         (o->executed_qty.m == 0 || dec_eq(o->executed_qty, o->orig_qty))) ||
        (o->status == SIM_FILLED && !dec_eq(o->executed_qty, o->orig_qty)) ||
        (open && !(o->tif == SIM_GTC || o->type == SIM_LIMIT_MAKER))) {
        return bad_field(err, path, "status", "does not fit the order's type or quantities");
    }
    if (o->expiry != SIM_EXPIRY_NONE && o->status != SIM_EXPIRED) {
        return bad_field(err, path, "expiry_reason", "set on an order that has not expired");
    }
    if (get_i64(j, path, "time_ms", 0, INT64_MAX, &o->time_ms, err) < 0 ||
        get_i64(j, path, "update_ms", o->time_ms, INT64_MAX, &o->update_ms, err) < 0 ||
        get_i64(j, path, "working_ms", -1, INT64_MAX, &o->working_ms, err) < 0 ||
        get_bool(j, path, "is_working", &o->is_working, err) < 0) {
        return -CQ_EPARSE;
    }
    if (open && !o->is_working && cq_sim__order_type_is_stop(o->type)) {
        /* a stop waiting for its trigger: nothing executed, never on the book */
        if (o->working_ms >= 0 || o->status != SIM_NEW) {
            return bad_field(err, path, "working_ms",
                             "must be -1 on a stop order that is not working (NEW)");
        }
        return 0;
    }
    if (o->is_working != open || (open && o->working_ms < 0)) {
        return bad_field(err, path, "is_working", "must be true exactly for open orders");
    }
    return 0;
}

static int load_orders(const struct cq_sim__engine *e, const json_t *root, struct engine_state *ns,
                       struct cq_err *err)
{
    const json_t *arr = get_array(root, "orders", MAX_CAPACITY, err);
    uint64_t count;
    size_t n;
    char path[48];
    (void)e;
    if (arr == NULL) {
        return -CQ_EPARSE;
    }
    n = json_array_size(arr);
    count = (uint64_t)n + ns->orders_dropped;
    if (count > MAX_FIRST_ID || get_u64(root, "", "next_order_id", ns->first_order_id + count,
                                        ns->first_order_id + count, &ns->next_order_id, err) < 0) {
        return bad_field(err, "", "next_order_id",
                         "is not first_order_id + the orders kept + stats.orders_dropped");
    }
    if (n > 0) {
        ns->orders = malloc(n * sizeof(*ns->orders));
        if (ns->orders == NULL) {
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "state: out of memory for orders");
        }
        ns->cap_orders = n;
    }
    for (size_t i = 0; i < n; i++) {
        struct order_rec *rec = &ns->orders[i];
        const struct order_rec *dup;
        int rc;
        snprintf(path, sizeof(path), "orders[%zu]", i); /* bounded: 7 + 20 + 2 < 48 */
        /* zeroed: the queue position is not in the state file, so a resting
         * order rejoins behind what the next book shows at its price
         * (q.known false), the conservative side */
        memset(rec, 0, sizeof(*rec));
        rec->prev = rec->next = rec->gprev = rec->gnext = NO_IDX;
        rc = load_order(e, json_array_get(arr, i), path,
                        i == 0 ? ns->first_order_id : ns->orders[i - 1].o.order_id + 1,
                        ns->next_order_id - 1, &rec->o, err);
        if (rc < 0) {
            return rc;
        }
        ns->n_orders = i + 1;
        dup = cid_find(ns, rec->o.symbol_idx, rec->o.client_id);
        if (dup != NULL && is_open(&dup->o)) {
            /* no order can be placed with the id of an open one */
            return bad_field(err, path, "client_id", "an older open order has this client id");
        }
        if (cid_reserve(ns) < 0) {
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "state: out of memory for the index");
        }
        cid_put(ns, (uint32_t)i);
        if (is_open(&rec->o)) {
            open_link(ns, (uint32_t)i);
        }
    }
    return 0;
}

static int load_trades(const struct cq_sim__engine *e, const json_t *root, struct engine_state *ns,
                       struct cq_err *err)
{
    const json_t *arr = get_array(root, "trades", e->max_trades, err);
    size_t n;
    char path[48];
    if (arr == NULL) {
        return -CQ_EPARSE;
    }
    n = json_array_size(arr);
    if (n > 0) {
        ns->trades = malloc(n * sizeof(*ns->trades));
        if (ns->trades == NULL) {
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "state: out of memory for trades");
        }
        ns->cap_trades = n;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *j = json_array_get(arr, i);
        struct cq_sim__trade *t = &ns->trades[i];
        const struct order_rec *rec;
        const struct cq_sim__symbol *sym;
        char name[CQ_SYMBOL_LEN + 1];
        uint64_t lo = i == 0 ? 1 : ns->trades[i - 1].trade_id + 1;
        uint64_t hi = i == 0 ? MAX_FIRST_ID * 2 : lo;
        snprintf(path, sizeof(path), "trades[%zu]", i); /* bounded: 7 + 20 + 2 < 48 */
        if (!json_is_object(j)) {
            return bad_field(err, path, NULL, "not an object");
        }
        memset(t, 0, sizeof(*t));
        if (get_u64(j, path, "trade_id", lo, hi, &t->trade_id, err) < 0) {
            return bad_field(err, path, "trade_id", "not the next id in sequence");
        }
        if (get_u64(j, path, "order_id", 1, INT64_MAX, &t->order_id, err) < 0) {
            return -CQ_EPARSE;
        }
        rec = order_by_id(ns, t->order_id);
        /* a trade may outlive its order once closed orders were dropped */
        if (rec == NULL && (ns->orders_dropped == 0 || t->order_id < ns->first_order_id ||
                            t->order_id >= ns->next_order_id)) {
            return bad_field(err, path, "order_id", "no such order");
        }
        if (get_str(j, path, "symbol", name, sizeof(name), false, err) < 0) {
            return -CQ_EPARSE;
        }
        t->symbol_idx = cq_sim__engine_symbol_index(e, name);
        if (t->symbol_idx < 0 || (rec != NULL && t->symbol_idx != rec->o.symbol_idx)) {
            return bad_field(err, path, "symbol", "not the order's symbol");
        }
        sym = &e->symbols[t->symbol_idx];
        if (get_amount(j, path, "price", &t->price, err) < 0 ||
            get_amount(j, path, "qty", &t->qty, err) < 0 ||
            get_amount(j, path, "quote_qty", &t->quote_qty, err) < 0 ||
            get_amount(j, path, "commission", &t->commission, err) < 0 ||
            get_str(j, path, "commission_asset", t->commission_asset, sizeof(t->commission_asset),
                    false, err) < 0 ||
            get_i64(j, path, "time_ms", 0, INT64_MAX, &t->time_ms, err) < 0 ||
            get_bool(j, path, "is_buyer", &t->is_buyer, err) < 0 ||
            get_bool(j, path, "is_maker", &t->is_maker, err) < 0) {
            return -CQ_EPARSE;
        }
        if (t->price.m == 0 || t->qty.m == 0) {
            return bad_field(err, path, "qty", "price and qty must be > 0");
        }
        if (rec != NULL && t->is_buyer != (rec->o.side == SIM_BUY)) {
            return bad_field(err, path, "is_buyer", "does not match the order's side");
        }
        if (strcmp(t->commission_asset, t->is_buyer ? sym->base : sym->quote) != 0) {
            return bad_field(err, path, "commission_asset", "not the asset the order received");
        }
        ns->n_trades = i + 1;
    }
    if (n > 0 && ns->next_trade_id != ns->trades[n - 1].trade_id + 1) {
        return bad_field(err, "", "next_trade_id", "does not follow the last trade");
    }
    return 0;
}

/* I2 on the loaded state: each asset's locked is what its open orders
 * need. */
static int load_check_locked(const struct cq_sim__engine *e, struct engine_state *ns, size_t n_file,
                             struct cq_err *err)
{
    cq_dec need[SIM_ASSETS_MAX];
    char path[48];
    char want[CQ_DEC_STR_MAX];
    for (size_t a = 0; a < ns->n_assets; a++) {
        need[a] = ZERO8;
    }
    for (uint32_t i = ns->all_open.head; i != NO_IDX; i = ns->orders[i].gnext) {
        const struct cq_sim__order *o = &ns->orders[i].o;
        int asset =
            o->side == SIM_BUY ? ns->quote_asset[o->symbol_idx] : ns->base_asset[o->symbol_idx];
        cq_dec v;
        if (order_need(o, &v) < 0 || !dadd(&need[asset], v)) {
            snprintf(path, sizeof(path), "orders[%" PRIu32 "]", i); /* bounded: 7 + 10 + 2 < 48 */
            return bad_field(err, path, "orig_qty", "what the order locks is too large");
        }
    }
    (void)e;
    for (size_t a = 0; a < ns->n_assets; a++) {
        if (dec_eq(need[a], ns->bal[a].locked)) {
            continue;
        }
        cq_dec_format(need[a], want, sizeof(want));
        if (a < n_file) {
            snprintf(path, sizeof(path), "balances[%zu]", a); /* bounded: 9 + 20 + 2 < 48 */
            cq_err_set(err, CQ_EPARSE, 0, LOAD_HINT,
                       "state field '%s.locked': is not what the open orders lock (%s)", path,
                       want);
        } else {
            cq_err_set(err, CQ_EPARSE, 0, LOAD_HINT,
                       "state field 'balances': no entry for %s, which open orders lock (%s)",
                       ns->bal[a].asset, want);
        }
        return -CQ_EPARSE;
    }
    return 0;
}

static int load_state(const struct cq_sim__engine *e, const json_t *root, struct engine_state *ns,
                      struct cq_err *err)
{
    const json_t *stats;
    const json_t *rngv;
    json_int_t version;
    uint64_t rng = 0;
    const char *s;
    int rc;

    if (!json_is_object(root)) {
        return cq_err_set(err, CQ_EPARSE, 0, LOAD_HINT, "state: not a JSON object");
    }
    rc = get_int(root, "", "version", STATE_VERSION_MIN, STATE_VERSION, &version, err);
    if (rc < 0) {
        return rc;
    }
    if (get_u64(root, "", "first_order_id", 1, MAX_FIRST_ID, &ns->first_order_id, err) < 0 ||
        get_u64(root, "", "next_trade_id", 1, MAX_FIRST_ID * 2, &ns->next_trade_id, err) < 0) {
        return -CQ_EPARSE;
    }
    rngv = json_object_get(root, "client_id_rng");
    s = json_string_value(rngv);
    if (s == NULL || s[0] == '\0' || strlen(s) > 20) {
        return bad_field(err, "", "client_id_rng", "missing or not a decimal u64 string");
    }
    for (const char *p = s; *p != '\0'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > 9 || rng > (UINT64_MAX - d) / 10) {
            return bad_field(err, "", "client_id_rng", "missing or not a decimal u64 string");
        }
        rng = rng * 10 + d;
    }
    ns->rng = rng;
    stats = json_object_get(root, "stats");
    if (!json_is_object(stats)) {
        return bad_field(err, "", "stats", "missing or not an object");
    }
    if (get_u64(stats, "stats", "orders_placed", 0, INT64_MAX, &ns->orders_placed, err) < 0 ||
        get_u64(stats, "stats", "orders_rejected", 0, INT64_MAX, &ns->orders_rejected, err) < 0 ||
        get_u64(stats, "stats", "orders_canceled", 0, INT64_MAX, &ns->orders_canceled, err) < 0 ||
        get_u64(stats, "stats", "fills", 0, INT64_MAX, &ns->fills, err) < 0 ||
        (version >= 2 && get_u64(stats, "stats", "orders_dropped", 0, MAX_FIRST_ID,
                                 &ns->orders_dropped, err) < 0)) {
        return -CQ_EPARSE;
    }
    rc = load_balances(e, root, ns, err);
    if (rc < 0) {
        return rc;
    }
    {
        size_t n_file = json_array_size(json_object_get(root, "balances"));
        rc = load_orders(e, root, ns, err);
        if (rc == 0) {
            rc = load_trades(e, root, ns, err);
        }
        if (rc == 0) {
            rc = load_check_locked(e, ns, n_file, err);
        }
    }
    if (rc == 0 && ns->n_orders > e->max_orders) {
        /* a file from an engine that kept more: keep what this one keeps */
        orders_drop_closed(ns, e->max_orders);
        if (ns->n_orders > e->max_orders) {
            return bad_field(err, "", "orders", "more open orders than this engine keeps");
        }
    }
    return rc;
}

int cq_sim__engine_load(struct cq_sim__engine *e, const json_t *state, struct cq_err *err)
{
    struct engine_state ns;
    int rc;
    state_init(&ns);
    rc = load_state(e, state, &ns, err);
    if (rc < 0) {
        state_fini(&ns);
        return rc;
    }
    state_fini(&e->st);
    e->st = ns;
    return 0;
}
