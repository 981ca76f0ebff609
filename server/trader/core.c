/*
 * core.c — the trader's decision core: a deterministic state machine
 * without I/O (cq/trader.h, docs/TRADER.md "The decision core").
 *
 * Events in, actions out. No clock (every event carries now_ms), no socket,
 * no thread, no log, no allocation per event: every table is sized in
 * cq_trader_core_new. Replay (the restart path) parses JSON with jansson and
 * may allocate: it is not an event.
 *
 * Phases: INIT (replaying) -> EV_RECOVERED -> INFO (exchangeInfo) ->
 * ACCOUNT (balances, exponential backoff) -> RECONCILE (openOrders, then a
 * query of every journaled live order it did not list) -> READY.
 *
 * The one submit path is submit(): entries, SELL exits, stop-loss,
 * take-profit and every resend go through it, and it emits, in order,
 * risk.decision, order.intent (wait_durable) and SEND_ORDER.
 *
 * Work that may need more actions than one event holds (queries at
 * reconcile, cancels after a kill, resends, quarantine expiries) is flagged
 * on the order or symbol and pumped out in budgeted batches (pump()).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core-int.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/trader.h"

enum phase { PH_INIT, PH_INFO, PH_ACCOUNT, PH_RECONCILE, PH_READY };

struct idkey {
    uint64_t a, b;
};

/* Private state of one live order, parallel to core->orders. */
struct order_x {
    struct idkey key;
    int sym;
    unsigned attempt;
    int64_t next_query_ms; /* UNKNOWN: query; OPEN with the stream down: poll */
    int64_t resend_at_ms;  /* INTENT: resend after a rate limit or ban */
    bool reconcile_pending, query_sent;
    bool need_cancel, cancel_sent;
    bool listed; /* in the openOrders answer being collected */
    bool insufficient_last;
    unsigned n_trades;
    uint64_t trades[CQ_TRADER__TRADES_PER_ORDER]; /* ring */
};

struct sym {
    char name[CQ_SYMBOL_LEN];
    char base[CQ_TRADER_ASSET_LEN], quote[CQ_TRADER_ASSET_LEN];
    bool have_info, trading;
    struct cq_filters filters;
    int pos; /* index in core->pos, -1 none */
    cq_dec mark;
    bool quarantined;
    char q_reason[32];
    char q_detail[160];
    int64_t q_until_ms;        /* 0 = until the operator clears it */
    cq_dec sl_price, tp_price; /* 0 = off */
    int64_t exit_retry_ms;
    /* a fill (or fee) of this symbol was applied after the last account
     * snapshot arrived: that snapshot may not show it yet */
    bool fill_after_account;
    int64_t mark_next_ms;        /* the next FETCH_MARK while it has a position */
    int64_t exit_retry_delay_ms; /* the last wait after a refused exit (0: none) */
};

struct pos_x {
    int sym;
    unsigned exit_seq;
};

struct cq_trader_core {
    struct cq_trader_core_config cfg;
    size_t orders_max;
    enum phase phase;
    bool paused, killed, journal_failed, stream_up;
    bool info_in_flight, account_in_flight, open_orders_in_flight, reconcile_startup;
    bool open_orders_done; /* startup: the list arrived, queries follow */
    /* the last account snapshot still has to be compared with the positions
     * (check_balances: a symbol waits while one of its orders is unresolved) */
    bool bal_check;
    /* a shortfall on a snapshot that fills applied since have moved past:
     * confirmed on a fresh snapshot before anything is quarantined */
    bool bal_refetch;
    int64_t info_next_ms, account_next_ms, account_delay_ms, open_orders_next_ms;
    int64_t info_reload_ms, reconcile_next_ms;
    int64_t banned_until_ms, rate_until_ms;
    int64_t now_ms;
    int64_t day;
    cq_dec daily_pnl;
    bool changed;
    int64_t last_ckpt_ms;
    bool ckpt_due;
    int64_t pump_due_ms;
    bool pump_dirty;

    struct sym syms[CQ_TRADER_SYMBOLS_MAX];
    size_t n_syms;
    struct cq_trader_position pos[CQ_TRADER_SYMBOLS_MAX];
    struct pos_x posx[CQ_TRADER_SYMBOLS_MAX];
    size_t n_pos;
    struct cq_trader_balance bal[CQ_TRADER_ASSETS_MAX];
    size_t n_bal;

    struct cq_trader_order *orders; /* owned, orders_max */
    struct order_x *ox;             /* owned, orders_max */
    size_t n_orders;

    /* seen client ids: a ring of keys and an open-addressing index; an id
     * is remembered by its first 64 bits (ids are SHA-256 based: among
     * 4,096 of them a collision is ~1e-12 likely), which lets the whole
     * ring fit the checkpoint */
    struct idkey *seen;  /* owned, CQ_TRADER_SIGNALS_SEEN_MAX */
    int16_t *seen_index; /* owned, SEEN_INDEX slots, -1 empty */
    size_t seen_head, seen_n;
    /* the checkpoint's "seen" text, kept as ids arrive: newest first, 11
     * characters each, at seen_txt + seen_at (SEEN_TXT_CAP bytes, owned).
     * The free room below it takes the checkpoint's head, the room above
     * its tail, so the checkpoint is written around the text in place */
    char *seen_txt;
    size_t seen_at;

    int64_t *sent_ms; /* owned ring of send times, sent_cap */
    size_t sent_cap, sent_head, sent_n;

    char *ckpt; /* owned, CQ_TRADER_CHECKPOINT_MAX + 1 */
    uint64_t foreign_reported;
    char limits_json[384]; /* risk.decision's "limits", rendered once per pause/kill state */
    size_t limits_len;
    int limits_key;             /* -1: not rendered */
    struct cq_trader_status st; /* counters */
};

#define SEEN_INDEX (2 * CQ_TRADER_SIGNALS_SEEN_MAX)
#define SEEN_CHARS 11
/* seen_txt: below the text at least a whole checkpoint's room (its head
 * goes there), above it SEEN_TXT_TAIL bytes for the tail; the text moves
 * down one id per new id and back to the top (one memmove of at most
 * 45 KB) every 4 x 4,096 ids */
#define SEEN_TXT_LOW (CQ_TRADER_CHECKPOINT_MAX + 64)
#define SEEN_TXT_TAIL 128
#define SEEN_TXT_CAP (SEEN_TXT_LOW + 5 * CQ_TRADER_SIGNALS_SEEN_MAX * SEEN_CHARS + SEEN_TXT_TAIL)
#define SEEN_TXT_TOP (SEEN_TXT_CAP - SEEN_TXT_TAIL)

/* ---- names --------------------------------------------------------------------- */

const char *cq_trader_reason_name(enum cq_trader_reason r)
{
    switch (r) {
    case CQ_TRADER_READY_OK:
        return "ok";
    case CQ_TRADER_LOADING_EXCHANGE_INFO:
        return "loading_exchange_info";
    case CQ_TRADER_AWAITING_BALANCE:
        return "awaiting_balance";
    case CQ_TRADER_RECONCILING:
        return "reconciling";
    case CQ_TRADER_JOURNAL_UNAVAILABLE:
        return "journal_unavailable";
    case CQ_TRADER_EXCHANGE_BANNED:
        return "exchange_banned";
    case CQ_TRADER_KILL_SWITCH:
        return "kill_switch";
    case CQ_TRADER_TRADING_PAUSED:
        return "trading_paused";
    case CQ_TRADER_DAILY_LOSS_LIMIT:
        return "daily_loss_limit";
    case CQ_TRADER_SYMBOL_QUARANTINED:
        return "symbol_quarantined";
    }
    return "unknown";
}

const char *cq_trader_order_state_name(enum cq_trader_order_state s)
{
    static const char *const names[] = {"intent", "sent",     "unknown",  "open",
                                        "filled", "canceled", "rejected", "failed"};
    return (unsigned)s < CQ_ARRAY_LEN(names) ? names[s] : "unknown";
}

const char *cq_trader_purpose_name(enum cq_trader_purpose p)
{
    static const char *const names[] = {"entry", "exit", "stop_loss", "take_profit", "adopted"};
    return (unsigned)p < CQ_ARRAY_LEN(names) ? names[p] : "unknown";
}

static int parse_state(const char *s, enum cq_trader_order_state *out)
{
    for (int i = 0; i <= CQ_TRADER_OS_FAILED; i++) {
        if (strcmp(s, cq_trader_order_state_name((enum cq_trader_order_state)i)) == 0) {
            *out = (enum cq_trader_order_state)i;
            return 0;
        }
    }
    return -CQ_EPARSE;
}

static int parse_purpose(const char *s, enum cq_trader_purpose *out)
{
    for (int i = 0; i <= CQ_TRADER_ADOPTED; i++) {
        if (strcmp(s, cq_trader_purpose_name((enum cq_trader_purpose)i)) == 0) {
            *out = (enum cq_trader_purpose)i;
            return 0;
        }
    }
    return -CQ_EPARSE;
}

static bool terminal(enum cq_trader_order_state s)
{
    return s >= CQ_TRADER_OS_FILLED;
}

/* ---- client ids ----------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

/* lower-case hex digit -> value, anything else -> 16 */
static const uint8_t HEXVAL[256] = {
    ['0'] = 0, ['1'] = 1, ['2'] = 2,  ['3'] = 3,  ['4'] = 4,  ['5'] = 5,  ['6'] = 6,  ['7'] = 7,
    ['8'] = 8, ['9'] = 9, ['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
};

static bool hex_half(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned bad = 0;
    for (int i = 0; i < 16; i++) {
        unsigned h = HEXVAL[(unsigned char)s[i]];
        /* 0 in the table is also "not set": only '0' may map to 0 */
        bad |= (h == 0 && s[i] != '0');
        v = (v << 4) | h;
    }
    *out = v;
    return bad == 0;
}

/* 32 lower-case hex characters -> key; false if s is not exactly that. */
static bool hex_key(const char *s, struct idkey *k)
{
    if (memchr(s, '\0', 32) != NULL || s[32] != '\0') {
        return false;
    }
    return hex_half(s, &k->a) && hex_half(s + 16, &k->b);
}

static bool client_key(const char *id, struct idkey *k)
{
    return cq_trader_client_id_is_ours(id) && hex_key(id + 4, k);
}

void cq_trader_client_id_for_signal(const char *signal_id, char *out)
{
    memcpy(out, CQ_TRADER_CLIENT_ID_PREFIX, 4);
    size_t n = strnlen(signal_id, CQ_SIGNAL_ID_LEN);
    memcpy(out + 4, signal_id, n);
    out[4 + n] = '\0';
}

bool cq_trader_client_id_is_ours(const char *id)
{
    return id != NULL && strncmp(id, CQ_TRADER_CLIENT_ID_PREFIX, 4) == 0;
}

void cq_trader_client_id_for_exit(const char *entry_client_id, enum cq_trader_purpose kind,
                                  unsigned seq, char *out)
{
    char text[96];
    size_t n = 0;
    size_t el = strnlen(entry_client_id, CQ_TRADER_CLIENT_ID_MAX);
    memcpy(text, entry_client_id, el);
    n = el;
    text[n++] = '|';
    const char *k = cq_trader_purpose_name(kind);
    size_t kl = strlen(k);
    memcpy(text + n, k, kl);
    n += kl;
    text[n++] = '|';
    char digits[12];
    size_t d = 0;
    do {
        digits[d++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq != 0);
    while (d > 0) {
        text[n++] = digits[--d];
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    /* a pure call: SHA-256 never fails on a valid buffer */
    (void)EVP_Digest(text, n, md, &md_len, EVP_sha256(), NULL);
    memcpy(out, CQ_TRADER_CLIENT_ID_PREFIX, 4);
    for (int i = 0; i < 16; i++) {
        out[4 + 2 * i] = HEX[md[i] >> 4];
        out[5 + 2 * i] = HEX[md[i] & 15];
    }
    out[36] = '\0';
}

/* ---- decimal helpers: failures are counted, the value is not applied -------------- */

#define MS 8 /* money scale */

static cq_dec dadd(struct cq_trader_core *c, cq_dec a, cq_dec b)
{
    cq_dec r;
    if (cq_dec_add(a, b, &r) < 0) {
        c->st.math_errors_total++;
        return a;
    }
    return r;
}

static cq_dec dsub(struct cq_trader_core *c, cq_dec a, cq_dec b)
{
    cq_dec r;
    if (cq_dec_sub(a, b, &r) < 0) {
        c->st.math_errors_total++;
        return a;
    }
    return r;
}

static cq_dec dmul(struct cq_trader_core *c, cq_dec a, cq_dec b, enum cq_dec_round mode)
{
    cq_dec r;
    if (cq_dec_mul(a, b, MS, mode, &r) < 0) {
        c->st.math_errors_total++;
        return CQ_DEC_ZERO;
    }
    return r;
}

static cq_dec ddiv(struct cq_trader_core *c, cq_dec a, cq_dec b, enum cq_dec_round mode)
{
    cq_dec r;
    if (cq_dec_is_zero(b)) {
        return CQ_DEC_ZERO;
    }
    if (cq_dec_div(a, b, MS, mode, &r) < 0) {
        c->st.math_errors_total++;
        return CQ_DEC_ZERO;
    }
    return r;
}

/* ---- JSON writer (no snprintf on the hot path) ------------------------------------- */

struct jw {
    char *p, *start, *end; /* end: last byte usable (NUL goes there at most) */
    bool over;
};

/* The writer's functions are forced inline: no call then takes a writer's
 * address, so its pointer stays in a register instead of being stored and
 * reloaded around every piece (the slow paths take and return it by value). */
#define JW_FN static inline __attribute__((always_inline))

JW_FN void jw_init(struct jw *w, char *buf, size_t cap)
{
    w->p = w->start = buf;
    w->end = buf + cap - 1;
    w->over = false;
}

/* n bytes from s to d, n small (ids, decimals, ~300-byte fragments):
 * fixed-size moves instead of a library call */
static inline void copy_small(char *d, const char *s, size_t n)
{
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16) {
            memcpy(d + i, s + i, 16);
        }
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++) {
            d[i] = s[i];
        }
    }
}

JW_FN void jw_raw(struct jw *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->over = true;
        return;
    }
    if (__builtin_constant_p(n)) {
        memcpy(w->p, s, n);
    } else {
        copy_small(w->p, s, n);
    }
    w->p += n;
}

/* Room for a number written in place: the longest decimal text (sign, 19
 * digits, point, leading zeros of scale 18: < 24 bytes), its quotes and
 * the fixed 24-byte moves that write it. */
#define JW_NUM_ROOM 64

#define JW_LIT(w, lit) jw_raw((w), (lit), sizeof(lit) - 1)

/* 1: the byte must be escaped (or ends the string) in a JSON string */
static const uint8_t JSON_ESC[256] = {
    [0] = 1,  [1] = 1,  [2] = 1,  [3] = 1,  [4] = 1,  [5] = 1,   [6] = 1,    [7] = 1,  [8] = 1,
    [9] = 1,  [10] = 1, [11] = 1, [12] = 1, [13] = 1, [14] = 1,  [15] = 1,   [16] = 1, [17] = 1,
    [18] = 1, [19] = 1, [20] = 1, [21] = 1, [22] = 1, [23] = 1,  [24] = 1,   [25] = 1, [26] = 1,
    [27] = 1, [28] = 1, [29] = 1, [30] = 1, [31] = 1, ['"'] = 1, ['\\'] = 1,
};

/* No byte of x is < 0x20, '"' or '\\' (bit tricks: any byte below a bound,
 * any byte equal to a value; exact as a whole). */
static inline bool esc_free8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t bad = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
    return (bad & highs) == 0;
}

static struct jw jw_str_escaped(struct jw w, const char *s) __attribute__((noinline));

JW_FN void jw_str(struct jw *w, const char *s)
{
    /* fast path: nothing to escape (ids, symbols, names), 8 bytes a step */
    size_t len = strlen(s), n = 0;
    for (; n + 8 <= len; n += 8) {
        uint64_t x;
        memcpy(&x, s + n, 8);
        if (!esc_free8(x)) {
            break;
        }
    }
    while (n < len && !JSON_ESC[(unsigned char)s[n]]) {
        n++;
    }
    if (n == len && (size_t)(w->end - w->p) >= n + 2) {
        w->p[0] = '"';
        copy_small(w->p + 1, s, n);
        w->p[n + 1] = '"';
        w->p += n + 2;
        return;
    }
    *w = jw_str_escaped(*w, s);
}

/* s with its escapes (or a writer short of room: then it marks over). */
static struct jw jw_str_escaped(struct jw wv, const char *s)
{
    struct jw *w = &wv;
    JW_LIT(w, "\"");
    const char *run = s;
    for (;; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == 0 || ch == '"' || ch == '\\' || ch < 0x20) {
            jw_raw(w, run, (size_t)(s - run));
            if (ch == 0) {
                break;
            }
            char esc[6] = {'\\', 'u', '0', '0', HEX[ch >> 4], HEX[ch & 15]};
            if (ch == '"' || ch == '\\') {
                esc[1] = (char)ch;
                jw_raw(w, esc, 2);
            } else {
                jw_raw(w, esc, 6);
            }
            run = s + 1;
        }
    }
    JW_LIT(w, "\"");
    return wv;
}

static const char DIGITS2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline void put2(char *p, unsigned v)
{
    memcpy(p, DIGITS2 + 2 * v, 2);
}

static inline void put4(char *p, unsigned v)
{
    put2(p, v / 100);
    put2(p + 2, v % 100);
}

static inline void put8(char *p, uint32_t v)
{
    put4(p, v / 10000);
    put4(p + 4, v % 10000);
}

/* The 20 digits of u, zero-padded, at p: three independent chains of
 * divisions by constants instead of one chain of ten. */
static inline void put20(char *p, uint64_t u)
{
    uint64_t hi = u / 100000000, lo = u % 100000000;
    put4(p, (unsigned)(hi / 100000000)); /* < 1845 */
    put8(p + 4, (uint32_t)(hi % 100000000));
    put8(p + 12, (uint32_t)lo);
}

/* Decimal digits of u (1 for 0). */
static inline unsigned ndigits(uint64_t u)
{
    static const uint64_t P10[20] = {1ULL,
                                     10ULL,
                                     100ULL,
                                     1000ULL,
                                     10000ULL,
                                     100000ULL,
                                     1000000ULL,
                                     10000000ULL,
                                     100000000ULL,
                                     1000000000ULL,
                                     10000000000ULL,
                                     100000000000ULL,
                                     1000000000000ULL,
                                     10000000000000ULL,
                                     100000000000000ULL,
                                     1000000000000000ULL,
                                     10000000000000000ULL,
                                     100000000000000000ULL,
                                     1000000000000000000ULL,
                                     10000000000000000000ULL};
    unsigned bits = 64u - (unsigned)__builtin_clzll(u | 1);
    unsigned t = (bits * 1233u) >> 12; /* floor(log10(2^bits)) */
    unsigned n = t + 1 - (u < P10[t]);
    return n > 0 ? n : 1;
}

/* v < 10^8 as 8 ASCII digits in one register, the first digit in the
 * lowest byte (SWAR: 4+4, 2+2, 1+1 digit splits by multiply and shift). */
static inline uint64_t swar8(uint32_t v)
{
    uint64_t y = (uint64_t)(v / 10000) | ((uint64_t)(v % 10000) << 32);
    uint64_t z = ((y * 10486) >> 20) & 0x0000007F0000007FULL; /* / 100 per 32-bit lane */
    y = ((y - z * 100) << 16) | z;
    uint64_t t = ((y * 103) >> 10) & 0x000F000F000F000FULL; /* / 10 per 16-bit lane */
    y = ((y - t * 10) << 8) | t;
    return y | 0x3030303030303030ULL;
}

__extension__ typedef unsigned __int128 u128;

/* The register paths store a register's bytes as text: little-endian only
 * (elsewhere the digit-table path below does it all). */
#define REG_TEXT (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

/* The last n (1..16) digits of u < 10^16, zero-padded, in the low bytes. */
static inline u128 digits16(uint64_t u, unsigned n)
{
    u128 x = ((u128)swar8((uint32_t)(u % 100000000)) << 64) | swar8((uint32_t)(u / 100000000));
    return x >> (8 * (16 - n));
}

/* The digits of v at out; out has room for 24 bytes (fixed moves). */
static size_t fmt_u64(uint64_t v, char *out)
{
    unsigned n = ndigits(v);
    if (REG_TEXT && n <= 16) { /* in registers, one store: no reload of small stores */
        u128 x = digits16(v, n);
        memcpy(out, &x, 16);
        return n;
    }
    char buf[48]; /* 20 digits, then the slack the fixed move reads */
    put20(buf, v);
    memcpy(out, buf + 20 - n, 24);
    return n;
}

JW_FN void jw_i64(struct jw *w, int64_t v)
{
    char buf[48];
    char *out = (size_t)(w->end - w->p) >= JW_NUM_ROOM ? w->p : buf; /* in place */
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        out[n++] = '-';
        u = 0 - u;
    }
    n += fmt_u64(u, out + n);
    if (out == buf) {
        jw_raw(w, buf, n);
    } else {
        w->p += n;
    }
}

JW_FN void jw_u64(struct jw *w, uint64_t v)
{
    if ((size_t)(w->end - w->p) >= JW_NUM_ROOM) {
        w->p += fmt_u64(v, w->p);
        return;
    }
    char buf[48];
    jw_raw(w, buf, fmt_u64(v, buf));
}

/* Exact text of d, as cq_dec_format, into out (JW_NUM_ROOM bytes: fixed
 * moves write past the text). */
static size_t dec_text(cq_dec d, char *out)
{
    char buf[48]; /* 20 digits, then the slack the fixed moves read */
    uint64_t u = d.m < 0 ? 0 - (uint64_t)d.m : (uint64_t)d.m;
    unsigned scale = d.scale; /* <= CQ_DEC_MAX_SCALE (18) */
    unsigned n = ndigits(u);
    if (n <= scale) {
        n = scale + 1; /* "0.00…": the zero padding */
    }
    size_t k = 0;
    if (d.m < 0) {
        out[k++] = '-';
    }
    if (REG_TEXT && n + (scale > 0) <= 16) { /* in registers, one store (as fmt_u64) */
        u128 x = digits16(u, n);
        if (scale > 0) {
            unsigned ip = n - scale; /* integer digits, 1..14 */
            u128 low = x & (((u128)1 << (8 * ip)) - 1);
            x = low | ((u128)'.' << (8 * ip)) | ((x >> (8 * ip)) << (8 * (ip + 1)));
        }
        memcpy(out + k, &x, 16);
        return k + n + (scale > 0);
    }
    put20(buf, u);
    const char *p = buf + 20 - n;
    size_t int_digits = n - scale; /* <= 20 */
    memcpy(out + k, p, 24);
    k += int_digits;
    if (scale > 0) {
        out[k++] = '.';
        memcpy(out + k, p + int_digits, 24);
        k += scale;
    }
    return k;
}

JW_FN void jw_dec(struct jw *w, cq_dec d)
{
    if ((size_t)(w->end - w->p) >= JW_NUM_ROOM) { /* in place */
        w->p[0] = '"';
        size_t n = dec_text(d, w->p + 1);
        w->p[n + 1] = '"';
        w->p += n + 2;
        return;
    }
    char buf[JW_NUM_ROOM + 2];
    buf[0] = '"';
    size_t n = dec_text(d, buf + 1);
    buf[n + 1] = '"';
    jw_raw(w, buf, n + 2);
}

JW_FN void jw_bool(struct jw *w, bool b)
{
    if (b) {
        JW_LIT(w, "true");
    } else {
        JW_LIT(w, "false");
    }
}

static const char *side_name(enum cq_side s)
{
    return s == CQ_SIDE_BUY ? "BUY" : "SELL";
}

static const char *type_name(enum cq_trader_order_type t)
{
    return t == CQ_TRADER_MARKET ? "MARKET" : "LIMIT";
}

/* ---- actions ---------------------------------------------------------------------- */

static bool room(const struct cq_trader_actions *out, size_t k)
{
    return out->n + k + CQ_TRADER__ACTIONS_RESERVE <= CQ_TRADER_ACTIONS_MAX;
}

/* The next action, or NULL (counted at the end of the event: a bug). */
static struct cq_trader_action *push(struct cq_trader_actions *out, bool *overflow,
                                     enum cq_trader_action_kind kind)
{
    if (out->n >= CQ_TRADER_ACTIONS_MAX) {
        *overflow = true;
        return NULL;
    }
    struct cq_trader_action *a = &out->a[out->n++];
    a->kind = kind;
    return a;
}

struct ctx {
    struct cq_trader_core *c;
    struct cq_trader_actions *out;
    int64_t now;
    bool overflow;
    char sink[CQ_TRADER_PAYLOAD_MAX]; /* a payload with no action to go to */
    char ms_text[32];                 /* ",\"ms\":<now>}" */
    size_t ms_len;                    /* 0: not formatted yet */
};

/* Start a journal action; the payload is written through the returned jw. */
JW_FN struct cq_trader_action *journal_begin(struct ctx *x, uint16_t type, const char *scope,
                                             const char *log_event, int level, struct jw *w)
{
    struct cq_trader_action *a = push(x->out, &x->overflow, CQ_TRADER_ACT_JOURNAL);
    if (a == NULL) {
        jw_init(w, x->sink, sizeof(x->sink));
        return NULL;
    }
    a->u.journal.type = type;
    cq_strlcpy(a->u.journal.scope, scope, sizeof(a->u.journal.scope));
    a->u.journal.wait_durable = false;
    a->u.journal.log_event = log_event;
    a->u.journal.log_level = level;
    a->u.journal.payload_ext = NULL;
    jw_init(w, a->u.journal.payload, sizeof(a->u.journal.payload));
    return a;
}

JW_FN void journal_end(struct ctx *x, struct cq_trader_action *a, struct jw *w)
{
    if (x->ms_len == 0) { /* the event's time, formatted once per event */
        struct jw m;
        jw_init(&m, x->ms_text, sizeof(x->ms_text));
        JW_LIT(&m, ",\"ms\":");
        jw_i64(&m, x->now);
        JW_LIT(&m, "}");
        x->ms_len = (size_t)(m.p - m.start);
    }
    jw_raw(w, x->ms_text, x->ms_len);
    if (a == NULL) {
        return;
    }
    if (w->over) {
        /* a payload longer than CQ_TRADER_PAYLOAD_MAX: only free text can
         * make it so (an exchange message); cut and close it validly */
        x->c->st.math_errors_total++;
        w->p = w->start;
        w->over = false;
        JW_LIT(w, "{\"truncated\":true,\"ms\":");
        jw_i64(w, x->now);
        JW_LIT(w, "}");
    }
    *w->p = '\0';
    a->u.journal.len = (size_t)(w->p - w->start);
}

static void act_ref(struct ctx *x, enum cq_trader_action_kind kind, const char *symbol,
                    const char *client_id)
{
    struct cq_trader_action *a = push(x->out, &x->overflow, kind);
    if (a == NULL) {
        return;
    }
    cq_strlcpy(a->u.ref.symbol, symbol, sizeof(a->u.ref.symbol));
    cq_strlcpy(a->u.ref.client_id, client_id, sizeof(a->u.ref.client_id));
}

static void act_plain(struct ctx *x, enum cq_trader_action_kind kind)
{
    struct cq_trader_action *a = push(x->out, &x->overflow, kind);
    if (a != NULL) {
        memset(&a->u.ref, 0, sizeof(a->u.ref));
    }
}

/* ---- tables ---------------------------------------------------------------------- */

static int sym_find(const struct cq_trader_core *c, const char *name)
{
    for (size_t i = 0; i < c->n_syms; i++) {
        if (c->syms[i].name[0] == name[0] && strcmp(c->syms[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int sym_get(struct cq_trader_core *c, const char *name)
{
    int i = sym_find(c, name);
    if (i >= 0 || name[0] == '\0' || c->n_syms >= CQ_TRADER_SYMBOLS_MAX) {
        return i;
    }
    struct sym *s = &c->syms[c->n_syms];
    memset(s, 0, sizeof(*s));
    cq_strlcpy(s->name, name, sizeof(s->name));
    s->pos = -1;
    return (int)c->n_syms++;
}

static struct cq_trader_position *pos_of(struct cq_trader_core *c, int sym, bool create)
{
    struct sym *s = &c->syms[sym];
    if (s->pos >= 0) {
        return &c->pos[s->pos];
    }
    if (!create || c->n_pos >= CQ_TRADER_SYMBOLS_MAX) {
        return NULL;
    }
    struct cq_trader_position *p = &c->pos[c->n_pos];
    memset(p, 0, sizeof(*p));
    cq_strlcpy(p->symbol, s->name, sizeof(p->symbol));
    p->mark = s->mark;
    c->posx[c->n_pos].sym = sym;
    c->posx[c->n_pos].exit_seq = 0;
    s->pos = (int)c->n_pos++;
    return p;
}

static int order_find(const struct cq_trader_core *c, const struct idkey *k)
{
    for (size_t i = 0; i < c->n_orders; i++) {
        if (c->ox[i].key.a == k->a && c->ox[i].key.b == k->b) {
            return (int)i;
        }
    }
    return -1;
}

static int order_add(struct cq_trader_core *c, const char *client_id, const struct idkey *k,
                     int sym)
{
    if (c->n_orders >= c->orders_max) {
        return -1;
    }
    size_t i = c->n_orders++;
    struct cq_trader_order *o = &c->orders[i];
    memset(o, 0, sizeof(*o));
    memset(&c->ox[i], 0, sizeof(c->ox[i]));
    cq_strlcpy(o->client_id, client_id, sizeof(o->client_id));
    cq_strlcpy(o->symbol, c->syms[sym].name, sizeof(o->symbol));
    c->ox[i].key = *k;
    c->ox[i].sym = sym;
    c->changed = true;
    return (int)i;
}

/* Closed orders leave the table; their ids stay in the seen ring. */
static void order_remove(struct cq_trader_core *c, int i)
{
    size_t last = c->n_orders - 1;
    if ((size_t)i != last) {
        c->orders[i] = c->orders[last];
        c->ox[i] = c->ox[last];
    }
    c->n_orders--;
    c->changed = true;
}

/* seen ids: ring + linear-probing index with backward-shift deletion;
 * keyed by k->a, the id's first 64 bits */
static size_t seen_slot(const struct idkey *k)
{
    /* ids are SHA-256 based, but a hostile or test id must not cluster:
     * mix both halves (splitmix64's finalizer) */
    uint64_t h = k->a * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (size_t)(h & (SEEN_INDEX - 1));
}

static bool seen_has(const struct cq_trader_core *c, const struct idkey *k)
{
    for (size_t s = seen_slot(k);; s = (s + 1) & (SEEN_INDEX - 1)) {
        int16_t r = c->seen_index[s];
        if (r < 0) {
            return false;
        }
        if (c->seen[r].a == k->a) {
            return true;
        }
    }
}

static void seen_unindex(struct cq_trader_core *c, int16_t ring_idx)
{
    size_t s = seen_slot(&c->seen[ring_idx]);
    while (c->seen_index[s] != ring_idx) {
        s = (s + 1) & (SEEN_INDEX - 1);
    }
    /* backward-shift deletion */
    size_t hole = s;
    for (size_t j = (s + 1) & (SEEN_INDEX - 1);; j = (j + 1) & (SEEN_INDEX - 1)) {
        int16_t r = c->seen_index[j];
        if (r < 0) {
            break;
        }
        size_t home = seen_slot(&c->seen[r]);
        /* can r move to hole? only if home is not in (hole, j] cyclically */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            c->seen_index[hole] = r;
            hole = j;
        }
    }
    c->seen_index[hole] = -1;
}

static void seen_encode(uint64_t v, char *out);

static void seen_add(struct cq_trader_core *c, const struct idkey *k)
{
    if (seen_has(c, k)) {
        return;
    }
    size_t idx;
    if (c->seen_n < CQ_TRADER_SIGNALS_SEEN_MAX) {
        idx = (c->seen_head + c->seen_n) % CQ_TRADER_SIGNALS_SEEN_MAX;
        c->seen_n++;
    } else {
        idx = c->seen_head;
        seen_unindex(c, (int16_t)idx);
        c->seen_head = (c->seen_head + 1) % CQ_TRADER_SIGNALS_SEEN_MAX;
    }
    c->seen[idx] = *k;
    size_t s = seen_slot(k);
    while (c->seen_index[s] >= 0) {
        s = (s + 1) & (SEEN_INDEX - 1);
    }
    c->seen_index[s] = (int16_t)idx;
    /* the text: the newest id goes in front of the others */
    size_t older = c->seen_n - 1;
    if (c->seen_at < SEEN_TXT_LOW + SEEN_CHARS) {
        memmove(c->seen_txt + SEEN_TXT_TOP - older * SEEN_CHARS, c->seen_txt + c->seen_at,
                older * SEEN_CHARS);
        c->seen_at = SEEN_TXT_TOP - older * SEEN_CHARS;
    }
    c->seen_at -= SEEN_CHARS;
    seen_encode(k->a, c->seen_txt + c->seen_at);
    c->changed = true;
}

static void seen_clear(struct cq_trader_core *c)
{
    for (size_t i = 0; i < SEEN_INDEX; i++) {
        c->seen_index[i] = -1;
    }
    c->seen_head = c->seen_n = 0;
    c->seen_at = SEEN_TXT_TOP;
}

/* A seen id's 64 bits as 11 base64url characters (4 + 10 x 6 bits, most
 * significant first): the checkpoint's "seen" string. */
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void seen_encode(uint64_t v, char *out)
{
    for (int i = 0; i < SEEN_CHARS; i++) {
        out[i] = B64URL[(v >> (60 - 6 * i)) & 63];
    }
}

static bool seen_decode(const char *s, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < SEEN_CHARS; i++) {
        const char *p = s[i] != '\0' ? strchr(B64URL, s[i]) : NULL;
        if (p == NULL || (i == 0 && p - B64URL > 15)) {
            return false;
        }
        r = (r << 6) | (uint64_t)(p - B64URL);
    }
    *v = r;
    return true;
}

static cq_dec *balance_free(struct cq_trader_core *c, const char *asset)
{
    for (size_t i = 0; i < c->n_bal; i++) {
        if (strcmp(c->bal[i].asset, asset) == 0) {
            return &c->bal[i].free;
        }
    }
    return NULL;
}

static unsigned orders_last_minute(struct cq_trader_core *c, int64_t now)
{
    while (c->sent_n > 0 && c->sent_ms[c->sent_head] <= now - CQ_TRADER__ORDER_WINDOW_MS) {
        c->sent_head = (c->sent_head + 1) % c->sent_cap;
        c->sent_n--;
    }
    return (unsigned)c->sent_n;
}

static void note_sent(struct cq_trader_core *c, int64_t now)
{
    if (c->sent_n == c->sent_cap) {
        c->sent_head = (c->sent_head + 1) % c->sent_cap;
        c->sent_n--;
    }
    c->sent_ms[(c->sent_head + c->sent_n) % c->sent_cap] = now;
    c->sent_n++;
    c->st.orders_sent_total++;
}

/* ---- positions ------------------------------------------------------------------- */

static void pos_thresholds(struct cq_trader_core *c, int sym)
{
    struct sym *s = &c->syms[sym];
    s->sl_price = s->tp_price = CQ_DEC_ZERO;
    if (s->pos < 0 || cq_dec_sign(c->pos[s->pos].qty) <= 0) {
        return;
    }
    cq_dec avg = c->pos[s->pos].avg_entry;
    cq_dec hundred = cq_dec_make(100, 0);
    if (cq_dec_sign(c->cfg.stop_loss_pct) > 0) {
        cq_dec f = dsub(c, hundred, c->cfg.stop_loss_pct);
        s->sl_price = ddiv(c, dmul(c, avg, f, CQ_ROUND_HALF_EVEN), hundred, CQ_ROUND_HALF_EVEN);
    }
    if (cq_dec_sign(c->cfg.take_profit_pct) > 0) {
        cq_dec f = dadd(c, hundred, c->cfg.take_profit_pct);
        s->tp_price = ddiv(c, dmul(c, avg, f, CQ_ROUND_HALF_EVEN), hundred, CQ_ROUND_HALF_EVEN);
    }
}

static void pos_unrealized(struct cq_trader_core *c, struct cq_trader_position *p)
{
    if (cq_dec_is_zero(p->mark) || cq_dec_is_zero(p->qty)) {
        p->unrealized_pnl = CQ_DEC_ZERO;
        return;
    }
    p->unrealized_pnl = dsub(c, dmul(c, p->qty, p->mark, CQ_ROUND_HALF_EVEN), p->cost);
}

static void pos_recompute_avg(struct cq_trader_core *c, struct cq_trader_position *p)
{
    if (cq_dec_sign(p->qty) <= 0) {
        p->qty = CQ_DEC_ZERO;
        p->cost = CQ_DEC_ZERO;
        p->avg_entry = CQ_DEC_ZERO;
        p->entry_client_id[0] = '\0';
    } else {
        if (cq_dec_sign(p->cost) < 0) {
            p->cost = CQ_DEC_ZERO;
        }
        p->avg_entry = ddiv(c, p->cost, p->qty, CQ_ROUND_HALF_EVEN);
    }
}

static void realize(struct cq_trader_core *c, struct cq_trader_position *p, cq_dec amount)
{
    p->realized_pnl = dadd(c, p->realized_pnl, amount);
    c->daily_pnl = dadd(c, c->daily_pnl, amount);
}

static void day_roll(struct cq_trader_core *c, int64_t now)
{
    int64_t day = now >= 0 ? now / CQ_TRADER__DAY_MS : -1;
    if (day > c->day) {
        c->day = day;
        c->daily_pnl = CQ_DEC_ZERO;
        c->changed = true;
    }
}

/* ---- quarantine ------------------------------------------------------------------- */

static void quarantine(struct ctx *x, int sym, const char *reason, const char *detail,
                       int64_t until_ms)
{
    struct cq_trader_core *c = x->c;
    struct sym *s = &c->syms[sym];
    s->quarantined = true;
    cq_strlcpy(s->q_reason, reason, sizeof(s->q_reason));
    cq_strlcpy(s->q_detail, detail, sizeof(s->q_detail));
    s->q_until_ms = until_ms;
    c->st.quarantines_total++;
    c->changed = true;
    struct jw w;
    struct cq_trader_action *a =
        journal_begin(x, CQ_REC_QUARANTINE, s->name, "symbol_quarantined", CQ_LOG_WARN, &w);
    JW_LIT(&w, "{\"reason\":");
    jw_str(&w, reason);
    JW_LIT(&w, ",\"detail\":");
    jw_str(&w, detail);
    JW_LIT(&w, ",\"until_ms\":");
    jw_i64(&w, until_ms);
    journal_end(x, a, &w);
}

static void unquarantine(struct ctx *x, int sym, const char *why)
{
    struct sym *s = &x->c->syms[sym];
    s->quarantined = false;
    s->q_until_ms = 0;
    s->exit_retry_ms = s->exit_retry_delay_ms = 0; /* a stop may go at the next mark */
    x->c->changed = true;
    struct jw w;
    struct cq_trader_action *a =
        journal_begin(x, CQ_REC_UNQUARANTINE, s->name, "symbol_unquarantined", CQ_LOG_INFO, &w);
    JW_LIT(&w, "{\"reason\":");
    jw_str(&w, why);
    JW_LIT(&w, ",\"previous\":");
    jw_str(&w, s->q_reason);
    journal_end(x, a, &w);
    s->q_reason[0] = s->q_detail[0] = '\0';
}

/* ---- records ---------------------------------------------------------------------- */

static void rec_refused(struct ctx *x, const char *symbol, const char *signal_id,
                        const char *client_id, const char *filter, const char *detail)
{
    struct jw w;
    struct cq_trader_action *a =
        journal_begin(x, CQ_TRADER_REC_ORDER_REFUSED, symbol[0] ? symbol : "trader",
                      "order_refused", CQ_LOG_WARN, &w);
    JW_LIT(&w, "{\"signal_id\":");
    jw_str(&w, signal_id);
    JW_LIT(&w, ",\"client_order_id\":");
    jw_str(&w, client_id);
    JW_LIT(&w, ",\"filter\":");
    jw_str(&w, filter);
    JW_LIT(&w, ",\"detail\":");
    jw_str(&w, detail);
    journal_end(x, a, &w);
}

static void rec_reject(struct ctx *x, const struct cq_trader_order *o, const char *state, int code,
                       const char *msg)
{
    struct jw w;
    struct cq_trader_action *a =
        journal_begin(x, CQ_REC_ORDER_REJECT, o->symbol, "order_closed", CQ_LOG_INFO, &w);
    JW_LIT(&w, "{\"client_order_id\":");
    jw_str(&w, o->client_id);
    JW_LIT(&w, ",\"state\":");
    jw_str(&w, state);
    JW_LIT(&w, ",\"code\":");
    jw_i64(&w, code);
    JW_LIT(&w, ",\"msg\":");
    jw_str(&w, msg);
    JW_LIT(&w, ",\"executed_qty\":");
    jw_dec(&w, o->executed_qty);
    journal_end(x, a, &w);
}

static void rec_ack(struct ctx *x, const struct cq_trader_order *o)
{
    struct jw w;
    struct cq_trader_action *a = journal_begin(x, CQ_REC_ORDER_ACK, o->symbol, NULL, 0, &w);
    JW_LIT(&w, "{\"client_order_id\":");
    jw_str(&w, o->client_id);
    JW_LIT(&w, ",\"order_id\":");
    jw_u64(&w, o->order_id);
    JW_LIT(&w, ",\"status\":");
    jw_str(&w, cq_trader_order_state_name(o->state));
    JW_LIT(&w, ",\"executed_qty\":");
    jw_dec(&w, o->executed_qty);
    JW_LIT(&w, ",\"cum_quote\":");
    jw_dec(&w, o->cum_quote);
    journal_end(x, a, &w);
}

/* An order leaves the table as failed (never reached the exchange). */
static void order_fail(struct ctx *x, int i, int code, const char *msg)
{
    struct cq_trader_order *o = &x->c->orders[i];
    o->state = CQ_TRADER_OS_FAILED;
    o->updated_ms = x->now;
    x->c->st.failed_intents_total++;
    rec_reject(x, o, "failed", code, msg);
    order_remove(x->c, i);
}

/* ---- risk usage ------------------------------------------------------------------- */

/* Quote a live BUY may still spend: its budget minus what it spent. */
static cq_dec live_buy_remaining(struct cq_trader_core *c, const struct cq_trader_order *o)
{
    cq_dec budget = o->quote_qty;
    if (cq_dec_is_zero(budget)) {
        budget = dmul(c, o->qty, o->price, CQ_ROUND_UP);
    }
    cq_dec r = dsub(c, budget, o->cum_quote);
    return cq_dec_sign(r) > 0 ? r : CQ_DEC_ZERO;
}

static void usage_for(struct cq_trader_core *c, int sym, int skip_order, struct cq_risk_usage *u,
                      cq_dec *pending_quote)
{
    memset(u, 0, sizeof(*u));
    bool open[CQ_TRADER_SYMBOLS_MAX] = {false};
    cq_dec sym_notional[CQ_TRADER_SYMBOLS_MAX];
    for (size_t i = 0; i < c->n_syms; i++) {
        sym_notional[i] = CQ_DEC_ZERO;
    }
    cq_dec total = CQ_DEC_ZERO;
    for (size_t i = 0; i < c->n_pos; i++) {
        if (cq_dec_sign(c->pos[i].qty) > 0) {
            int s = c->posx[i].sym;
            open[s] = true;
            sym_notional[s] = dadd(c, sym_notional[s], c->pos[i].cost);
            total = dadd(c, total, c->pos[i].cost);
        }
    }
    *pending_quote = CQ_DEC_ZERO;
    for (size_t i = 0; i < c->n_orders; i++) {
        const struct cq_trader_order *o = &c->orders[i];
        if ((int)i == skip_order || o->side != CQ_SIDE_BUY) {
            continue;
        }
        cq_dec r = live_buy_remaining(c, o);
        int s = c->ox[i].sym;
        open[s] = true;
        sym_notional[s] = dadd(c, sym_notional[s], r);
        total = dadd(c, total, r);
        /* every live BUY, open ones too: whether the balance we hold
         * already shows the exchange's lock or not, we never overspend */
        *pending_quote = dadd(c, *pending_quote, r);
    }
    for (size_t i = 0; i < c->n_syms; i++) {
        u->open_positions += open[i];
    }
    u->symbol_has_position = open[sym];
    u->symbol_notional = sym_notional[sym];
    u->total_exposure = total;
    u->daily_realized_pnl = c->daily_pnl;
    u->orders_last_minute = orders_last_minute(c, c->now_ms);
    u->symbol_quarantined = c->syms[sym].quarantined;
}

static void rec_risk(struct ctx *x, const struct cq_trader_order *o, const char *signal_id,
                     const struct cq_risk_limits *lim, const struct cq_risk_usage *u,
                     const struct cq_risk_request *req, const struct cq_risk_decision *d,
                     enum cq_trader_purpose purpose)
{
    struct jw w;
    struct cq_trader_action *a = journal_begin(x, CQ_REC_RISK_DECISION, o->symbol, "risk_decision",
                                               d->allowed ? CQ_LOG_INFO : CQ_LOG_WARN, &w);
    JW_LIT(&w, "{\"signal_id\":");
    jw_str(&w, signal_id);
    JW_LIT(&w, ",\"client_order_id\":");
    jw_str(&w, o->client_id);
    JW_LIT(&w, ",\"allowed\":");
    jw_bool(&w, d->allowed);
    JW_LIT(&w, ",\"rule\":");
    jw_str(&w, d->rule != NULL ? d->rule : "");
    JW_LIT(&w, ",\"detail\":");
    jw_str(&w, d->detail);
    JW_LIT(&w, ",\"side\":");
    jw_str(&w, side_name(req->side));
    JW_LIT(&w, ",\"reduce_only\":");
    jw_bool(&w, req->reduce_only);
    JW_LIT(&w, ",\"notional\":");
    jw_dec(&w, req->notional);
    JW_LIT(&w, ",\"purpose\":");
    jw_str(&w, cq_trader_purpose_name(purpose));
    JW_LIT(&w, ",\"usage\":{\"open_positions\":");
    jw_u64(&w, u->open_positions);
    JW_LIT(&w, ",\"symbol_has_position\":");
    jw_bool(&w, u->symbol_has_position);
    JW_LIT(&w, ",\"symbol_notional\":");
    jw_dec(&w, u->symbol_notional);
    JW_LIT(&w, ",\"total_exposure\":");
    jw_dec(&w, u->total_exposure);
    JW_LIT(&w, ",\"daily_realized_pnl\":");
    jw_dec(&w, u->daily_realized_pnl);
    JW_LIT(&w, ",\"orders_last_minute\":");
    jw_u64(&w, u->orders_last_minute);
    JW_LIT(&w, ",\"symbol_quarantined\":");
    jw_bool(&w, u->symbol_quarantined);
    JW_LIT(&w, "},\"limits\":");
    /* the limits change only with pause and kill: rendered once per state */
    struct cq_trader_core *c = x->c;
    int key = (int)lim->trading_paused | (int)lim->kill_switch << 1;
    if (c->limits_key != key) {
        struct jw l;
        jw_init(&l, c->limits_json, sizeof(c->limits_json));
        JW_LIT(&l, "{\"max_open_positions\":");
        jw_u64(&l, lim->max_open_positions);
        JW_LIT(&l, ",\"max_position_notional\":");
        jw_dec(&l, lim->max_position_notional);
        JW_LIT(&l, ",\"max_total_exposure\":");
        jw_dec(&l, lim->max_total_exposure);
        JW_LIT(&l, ",\"max_daily_loss\":");
        jw_dec(&l, lim->max_daily_loss);
        JW_LIT(&l, ",\"max_orders_per_minute\":");
        jw_u64(&l, lim->max_orders_per_minute);
        JW_LIT(&l, ",\"trading_paused\":");
        jw_bool(&l, lim->trading_paused);
        JW_LIT(&l, ",\"kill_switch\":");
        jw_bool(&l, lim->kill_switch);
        JW_LIT(&l, "}");
        c->limits_len = (size_t)(l.p - l.start); /* fits: 7 bounded fields */
        c->limits_key = key;
    }
    jw_raw(&w, c->limits_json, c->limits_len);
    journal_end(x, a, &w);
}

/* ---- sizing ----------------------------------------------------------------------- */

struct sizing {
    enum cq_trader_order_type type;
    cq_dec qty, quote_qty, price;
    cq_dec dust; /* an exit's remainder below the step */
    const char *filter;
    char detail[160];
};

static void detail_dec(char *buf, size_t cap, const char *what, cq_dec v)
{
    char t[CQ_DEC_STR_MAX];
    size_t n = strnlen(what, cap - 1);
    memcpy(buf, what, n);
    size_t k = dec_text(v, t);
    if (n + k + 1 > cap) {
        k = cap - n - 1;
    }
    memcpy(buf + n, t, k);
    buf[n + k] = '\0';
}

/* Entries: want_quote (already capped); exits: want_qty. ref: the reference
 * price (signal close or mark). Returns false with z->filter set. */
static bool size_order(struct cq_trader_core *c, int sym, enum cq_side side,
                       enum cq_trader_order_type type, cq_dec want_quote, cq_dec want_qty,
                       cq_dec ref, struct sizing *z)
{
    const struct cq_filters *f = &c->syms[sym].filters;
    const char *why = NULL;
    z->type = type;
    z->qty = z->quote_qty = z->price = z->dust = CQ_DEC_ZERO;
    z->filter = NULL;
    z->detail[0] = '\0';
    if (side == CQ_SIDE_BUY && type == CQ_TRADER_MARKET) {
        /* MARKET BUY by quoteOrderQty: the exchange sizes it at the book;
         * our side only needs the quote amount and its notional floor */
        if (cq_dec_rescale(want_quote, MS, CQ_ROUND_DOWN, &z->quote_qty) < 0) {
            z->quote_qty = want_quote;
        }
        why = cq_filters_check_notional(f, true, z->quote_qty, cq_dec_make(1, 0));
        if (why != NULL) {
            z->filter = why;
            detail_dec(z->detail, sizeof(z->detail), "quote amount ", z->quote_qty);
            return false;
        }
        return true;
    }
    if (type == CQ_TRADER_LIMIT) {
        if (cq_filters_round_price(f, side, ref, &z->price, &why) < 0) {
            z->filter = why != NULL ? why : "PRICE_FILTER";
            detail_dec(z->detail, sizeof(z->detail), "price ", ref);
            return false;
        }
        why = cq_filters_check_price(f, z->price);
        if (why == NULL) {
            why = cq_filters_check_percent_price(f, side, z->price, c->syms[sym].mark);
        }
        if (why != NULL) {
            z->filter = why;
            detail_dec(z->detail, sizeof(z->detail), "price ", z->price);
            return false;
        }
        if (side == CQ_SIDE_BUY && !cq_dec_is_zero(want_quote)) {
            want_qty = ddiv(c, want_quote, z->price, CQ_ROUND_DOWN);
        }
    }
    bool market = type == CQ_TRADER_MARKET;
    if (cq_filters_round_qty(f, market, want_qty, &z->qty, &why) < 0) {
        z->filter = why != NULL ? why : (market ? "MARKET_LOT_SIZE" : "LOT_SIZE");
        detail_dec(z->detail, sizeof(z->detail),
                   side == CQ_SIDE_SELL ? "dust: position below the lot size: " : "quantity ",
                   want_qty);
        return false;
    }
    z->dust = dsub(c, want_qty, z->qty);
    why = cq_filters_check_qty(f, market, z->qty);
    if (why == NULL) {
        cq_dec p = market ? ref : z->price;
        if (!cq_dec_is_zero(p)) {
            why = cq_filters_check_notional(f, market, p, z->qty);
        }
    }
    if (why != NULL) {
        z->filter = why;
        detail_dec(z->detail, sizeof(z->detail),
                   side == CQ_SIDE_SELL ? "dust: below the minimum: quantity " : "quantity ",
                   z->qty);
        return false;
    }
    return true;
}

/* ---- the one submit path ---------------------------------------------------------- */

struct submit_req {
    int sym;
    enum cq_side side;
    enum cq_trader_purpose purpose;
    const char *signal_id; /* "" for stop-loss / take-profit */
    const char *client_id;
    struct idkey key;
    cq_dec ref_price;
    int resend; /* -1: a new order; else the live order being sent again */
    bool scale; /* resend after insufficient balance: scale it down */
};

static void emit_send(struct ctx *x, int i)
{
    struct cq_trader_core *c = x->c;
    struct cq_trader_order *o = &c->orders[i];
    struct order_x *ox = &c->ox[i];
    struct jw w;
    struct cq_trader_action *a =
        journal_begin(x, CQ_REC_ORDER_INTENT, o->symbol, "order_intent", CQ_LOG_INFO, &w);
    if (a != NULL) {
        a->u.journal.wait_durable = true;
    }
    JW_LIT(&w, "{\"client_order_id\":");
    jw_str(&w, o->client_id);
    JW_LIT(&w, ",\"signal_id\":");
    jw_str(&w, o->signal_id);
    JW_LIT(&w, ",\"side\":");
    jw_str(&w, side_name(o->side));
    JW_LIT(&w, ",\"type\":");
    jw_str(&w, type_name(o->type));
    JW_LIT(&w, ",\"qty\":");
    jw_dec(&w, o->qty);
    JW_LIT(&w, ",\"quote_qty\":");
    jw_dec(&w, o->quote_qty);
    JW_LIT(&w, ",\"price\":");
    jw_dec(&w, o->price);
    JW_LIT(&w, ",\"purpose\":");
    jw_str(&w, cq_trader_purpose_name(o->purpose));
    JW_LIT(&w, ",\"attempt\":");
    jw_u64(&w, ox->attempt);
    JW_LIT(&w, ",\"created_ms\":");
    jw_i64(&w, o->created_ms);
    journal_end(x, a, &w);

    struct cq_trader_action *s = push(x->out, &x->overflow, CQ_TRADER_ACT_SEND_ORDER);
    if (s != NULL) {
        cq_strlcpy(s->u.order.symbol, o->symbol, sizeof(s->u.order.symbol));
        memcpy(s->u.order.client_id, o->client_id, sizeof(s->u.order.client_id));
        s->u.order.side = o->side;
        s->u.order.type = o->type;
        s->u.order.qty = o->qty;
        s->u.order.quote_qty = o->quote_qty;
        s->u.order.price = o->price;
    }
    o->state = CQ_TRADER_OS_SENT;
    o->updated_ms = x->now;
    ox->resend_at_ms = 0;
    note_sent(c, x->now);
}

/* Returns true when a SEND was emitted. */
static bool submit(struct ctx *x, const struct submit_req *r)
{
    struct cq_trader_core *c = x->c;
    struct sym *s = &c->syms[r->sym];
    bool entry = r->side == CQ_SIDE_BUY;
    struct cq_trader_order tmp;
    struct cq_trader_order *o = &tmp;
    if (r->resend >= 0) {
        o = &c->orders[r->resend];
    } else {
        if (x->now < c->rate_until_ms) {
            /* a 429 asked us to wait: a new order now would earn a 418 */
            char detail[64] = "the exchange asked to wait until ms ";
            size_t n = strlen(detail);
            n += fmt_u64((uint64_t)c->rate_until_ms, detail + n);
            detail[n] = '\0';
            rec_refused(x, s->name, r->signal_id, r->client_id, "rate_limited", detail);
            return false;
        }
        /* only what rec_risk reads and the new order takes over */
        memcpy(tmp.client_id, r->client_id, sizeof(tmp.client_id));
        cq_strlcpy(tmp.signal_id, r->signal_id, sizeof(tmp.signal_id));
        memcpy(tmp.symbol, s->name, sizeof(tmp.symbol));
        tmp.side = r->side;
        tmp.purpose = r->purpose;
        if (c->n_orders >= c->orders_max) {
            c->st.orders_table_full_total++;
            rec_refused(x, s->name, r->signal_id, r->client_id, "orders_table_full",
                        "CQ_TRADER_ORDERS_MAX live orders tracked already");
            return false;
        }
    }

    /* what the order would be: entries spend order_quote capped by the free
     * quote balance (minus what our unanswered BUYs may take) and by the
     * risk limits' headroom; exits sell what the position holds beyond the
     * live sells */
    struct cq_risk_usage u;
    cq_dec pending;
    usage_for(c, r->sym, r->resend, &u, &pending);
    cq_dec want_quote = CQ_DEC_ZERO, want_qty = CQ_DEC_ZERO, notional;
    cq_dec avail = CQ_DEC_ZERO;
    bool balance_bound = false; /* the free balance, not order_quote, set the size */
    struct cq_trader_position *p = pos_of(c, r->sym, false);
    if (r->resend >= 0) {
        want_quote = o->quote_qty;
        want_qty = o->qty;
        if (r->scale) {
            want_quote = dmul(c, want_quote, c->cfg.insufficient_scale, CQ_ROUND_DOWN);
            want_qty = dmul(c, want_qty, c->cfg.insufficient_scale, CQ_ROUND_DOWN);
        }
        notional = entry ? (cq_dec_is_zero(want_quote) ? dmul(c, want_qty, o->price, CQ_ROUND_UP)
                                                       : want_quote)
                         : CQ_DEC_ZERO;
    } else if (entry) {
        want_quote = c->cfg.order_quote;
        cq_dec *fq = balance_free(c, s->quote);
        avail = fq != NULL ? dsub(c, *fq, pending) : CQ_DEC_ZERO;
        if (cq_dec_sign(avail) < 0) {
            avail = CQ_DEC_ZERO;
        }
        balance_bound = cq_dec_cmp(avail, want_quote) < 0;
        want_quote = cq_dec_min(want_quote, avail);
        const struct cq_risk_limits *l = &c->cfg.risk;
        if (cq_dec_sign(l->max_position_notional) > 0) {
            cq_dec h = dsub(c, l->max_position_notional, u.symbol_notional);
            if (cq_dec_sign(h) > 0) {
                want_quote = cq_dec_min(want_quote, h);
            }
        }
        if (cq_dec_sign(l->max_total_exposure) > 0) {
            cq_dec h = dsub(c, l->max_total_exposure, u.total_exposure);
            if (cq_dec_sign(h) > 0) {
                want_quote = cq_dec_min(want_quote, h);
            }
        }
        notional = want_quote;
    } else {
        want_qty = p != NULL ? p->qty : CQ_DEC_ZERO;
        for (size_t i = 0; i < c->n_orders; i++) {
            const struct cq_trader_order *q = &c->orders[i];
            if (c->ox[i].sym == r->sym && q->side == CQ_SIDE_SELL) {
                want_qty = dsub(c, want_qty, dsub(c, q->qty, q->executed_qty));
            }
        }
        if (cq_dec_sign(want_qty) < 0) {
            want_qty = CQ_DEC_ZERO;
        }
        notional = CQ_DEC_ZERO;
    }

    /* the risk gate, journaled allowed or not */
    struct cq_risk_limits lim = c->cfg.risk;
    lim.trading_paused = c->paused;
    lim.kill_switch = c->killed;
    struct cq_risk_request req = {
        .symbol = s->name, .side = r->side, .reduce_only = !entry, .notional = notional};
    struct cq_risk_decision d;
    cq_risk_check(&lim, &u, &req, &d);
    rec_risk(x, o, r->signal_id, &lim, &u, &req, &d, r->purpose);
    if (r->resend < 0) {
        seen_add(c, &r->key);
    }
    if (!d.allowed) {
        c->st.risk_refusals_total++;
        if (r->resend >= 0) {
            order_fail(x, r->resend, 0, d.rule);
        }
        return false;
    }

    /* sizing and the filters */
    struct sizing z;
    enum cq_trader_order_type type =
        r->resend >= 0 ? o->type : (entry ? c->cfg.entry_type : CQ_TRADER_MARKET);
    cq_dec ref = r->resend >= 0 && type == CQ_TRADER_LIMIT ? o->price : r->ref_price;
    if (cq_dec_is_zero(ref)) {
        ref = s->mark;
    }
    bool ok = s->have_info;
    if (!ok) {
        z.filter = "unknown_symbol";
        cq_strlcpy(z.detail, "no exchangeInfo for the symbol", sizeof(z.detail));
    } else if (!s->trading) {
        ok = false;
        z.filter = "symbol_not_trading";
        cq_strlcpy(z.detail, "exchangeInfo status is not TRADING", sizeof(z.detail));
    } else if (!entry && r->resend < 0 && cq_dec_sign(want_qty) <= 0) {
        ok = false;
        z.filter = "no_position";
        cq_strlcpy(z.detail, "nothing held beyond the live sell orders", sizeof(z.detail));
    } else {
        ok = size_order(c, r->sym, r->side, type, want_quote, want_qty, ref, &z);
    }
    if (!ok) {
        c->st.filter_refusals_total++;
        if (r->resend >= 0) {
            return false; /* the caller closes the order with its reason */
        }
        if (balance_bound && s->have_info && s->trading) {
            /* the size the filters refused is what the balance left */
            z.filter = "insufficient_balance";
            detail_dec(z.detail, sizeof(z.detail),
                       "free quote less what live BUYs may spend: ", avail);
        }
        rec_refused(x, s->name, r->signal_id, r->client_id, z.filter, z.detail);
        return false;
    }

    int i = r->resend;
    if (i < 0) {
        i = order_add(c, r->client_id, &r->key, r->sym);
        o = &c->orders[i];
        memcpy(o->signal_id, tmp.signal_id, sizeof(o->signal_id));
        o->side = r->side;
        o->purpose = r->purpose;
        o->created_ms = x->now;
    }
    o->type = z.type;
    o->qty = z.qty;
    o->quote_qty = z.quote_qty;
    o->price = z.price;
    c->ox[i].attempt++;
    c->changed = true;
    emit_send(x, i);
    return true;
}

/* ---- fills ------------------------------------------------------------------------ */

static bool trade_seen(struct order_x *ox, uint64_t trade_id)
{
    unsigned n =
        ox->n_trades < CQ_TRADER__TRADES_PER_ORDER ? ox->n_trades : CQ_TRADER__TRADES_PER_ORDER;
    for (unsigned i = 0; i < n; i++) {
        if (ox->trades[i] == trade_id) {
            return true;
        }
    }
    ox->trades[ox->n_trades % CQ_TRADER__TRADES_PER_ORDER] = trade_id;
    ox->n_trades++;
    return false;
}

/* A mark for an asset in quote: <asset><quote> known and marked. */
static cq_dec asset_mark(const struct cq_trader_core *c, const char *asset, const char *quote)
{
    for (size_t i = 0; i < c->n_syms; i++) {
        const struct sym *s = &c->syms[i];
        if (strcmp(s->base, asset) == 0 && strcmp(s->quote, quote) == 0) {
            return s->mark;
        }
    }
    return CQ_DEC_ZERO;
}

static void apply_update(struct ctx *x, int i, const struct cq_trader_order_update *u)
{
    struct cq_trader_core *c = x->c;
    struct cq_trader_order *o = &c->orders[i];
    struct order_x *ox = &c->ox[i];
    struct sym *s = &c->syms[ox->sym];
    enum cq_trader_order_state before = o->state;
    bool id_new = u->order_id != 0 && o->order_id != u->order_id;
    if (u->order_id != 0) {
        o->order_id = u->order_id;
    }
    if (c->open_orders_in_flight && u->state == CQ_TRADER_OS_OPEN) {
        ox->listed = true;
    }
    if (ox->reconcile_pending) {
        ox->reconcile_pending = false;
        ox->query_sent = false;
    }
    if (c->journal_failed) {
        c->journal_failed = false; /* an order reached the exchange: the journal works */
    }

    cq_dec dq = CQ_DEC_ZERO, dquote = CQ_DEC_ZERO;
    if (cq_dec_cmp(u->executed_qty, o->executed_qty) > 0) {
        dq = dsub(c, u->executed_qty, o->executed_qty);
        dquote = dsub(c, u->cum_quote, o->cum_quote);
        if (cq_dec_sign(dquote) < 0) {
            dquote = CQ_DEC_ZERO;
        }
        o->executed_qty = u->executed_qty;
        o->cum_quote = cq_dec_max(u->cum_quote, o->cum_quote);
    }
    bool fee_new =
        u->trade_id != 0 && !cq_dec_is_zero(u->commission) && !trade_seen(ox, u->trade_id);
    bool fill = cq_dec_sign(dq) > 0;
    struct cq_trader_position *p = NULL;
    cq_dec fee_quote = CQ_DEC_ZERO;
    bool fee_unconverted = false;
    cq_dec price = fill ? ddiv(c, dquote, dq, CQ_ROUND_HALF_EVEN) : u->last_price;
    if (fill || fee_new) {
        p = pos_of(c, ox->sym, true);
    }
    if (fill && p != NULL) {
        if (o->side == CQ_SIDE_BUY) {
            if (cq_dec_is_zero(p->qty)) {
                /* a new position: its exits are numbered from 0 again */
                memcpy(p->entry_client_id, o->client_id, sizeof(p->entry_client_id));
                c->posx[s->pos].exit_seq = 0;
            }
            p->qty = dadd(c, p->qty, dq);
            p->cost = dadd(c, p->cost, dquote);
            /* the quote spent leaves our copy of the balance now (the next
             * balance update or account snapshot replaces it): a lagging
             * update never lets the next entry overspend. Proceeds of sells
             * wait for the exchange's word. */
            cq_dec *fq = balance_free(c, s->quote);
            if (fq != NULL) {
                cq_dec left = dsub(c, *fq, dquote);
                *fq = cq_dec_sign(left) > 0 ? left : CQ_DEC_ZERO;
            }
        } else {
            cq_dec sold = dq;
            if (cq_dec_cmp(dq, p->qty) > 0) {
                sold = p->qty;
                char detail[160];
                detail_dec(detail, sizeof(detail), "sell fill exceeds the position by ",
                           dsub(c, dq, p->qty));
                if (!s->quarantined) {
                    quarantine(x, ox->sym, "position_mismatch", detail, 0);
                }
            }
            cq_dec removed = cq_dec_cmp(sold, p->qty) == 0
                                 ? p->cost
                                 : dmul(c, p->avg_entry, sold, CQ_ROUND_HALF_EVEN);
            realize(c, p, dsub(c, dquote, removed));
            p->cost = dsub(c, p->cost, removed);
            p->qty = dsub(c, p->qty, sold);
        }
        pos_recompute_avg(c, p);
    }
    if (fee_new && p != NULL) {
        cq_dec fprice = cq_dec_is_zero(u->last_price) ? price : u->last_price;
        if (strcmp(u->commission_asset, s->quote) == 0) {
            fee_quote = u->commission;
        } else if (strcmp(u->commission_asset, s->base) == 0) {
            fee_quote = dmul(c, u->commission, fprice, CQ_ROUND_HALF_EVEN);
            /* the base asset paid as the fee is not held */
            p->qty = dsub(c, p->qty, u->commission);
            p->cost = dsub(c, p->cost, fee_quote);
            pos_recompute_avg(c, p);
        } else {
            cq_dec m = asset_mark(c, u->commission_asset, s->quote);
            if (cq_dec_is_zero(m)) {
                fee_unconverted = true;
                c->st.fees_unconverted_total++;
            } else {
                fee_quote = dmul(c, u->commission, m, CQ_ROUND_HALF_EVEN);
            }
        }
        p->fees = dadd(c, p->fees, fee_quote);
        realize(c, p, dsub(c, CQ_DEC_ZERO, fee_quote));
    }
    if (p != NULL) {
        pos_unrealized(c, p);
        pos_thresholds(c, ox->sym);
        s->fill_after_account = true;
        s->exit_retry_ms = s->exit_retry_delay_ms = 0; /* the position changed */
    }

    enum cq_trader_order_state ns = u->state;
    if (ns == CQ_TRADER_OS_OPEN && o->state != CQ_TRADER_OS_OPEN) {
        ox->next_query_ms = x->now + c->cfg.poll_orders_every_ms;
    }
    if (ns == CQ_TRADER_OS_OPEN || terminal(ns)) {
        o->state = ns;
    } else if (o->state == CQ_TRADER_OS_UNKNOWN || o->state == CQ_TRADER_OS_SENT ||
               o->state == CQ_TRADER_OS_INTENT) {
        o->state = CQ_TRADER_OS_OPEN;
    }
    o->updated_ms = x->now;
    c->changed = true;
    bool final = o->state == CQ_TRADER_OS_FILLED;

    if (fill || fee_new || final) {
        struct jw w;
        struct cq_trader_action *a =
            journal_begin(x, CQ_REC_ORDER_FILL, o->symbol, "order_fill", CQ_LOG_INFO, &w);
        JW_LIT(&w, "{\"client_order_id\":");
        jw_str(&w, o->client_id);
        JW_LIT(&w, ",\"order_id\":");
        jw_u64(&w, o->order_id);
        JW_LIT(&w, ",\"trade_id\":");
        jw_u64(&w, u->trade_id);
        JW_LIT(&w, ",\"side\":");
        jw_str(&w, side_name(o->side));
        JW_LIT(&w, ",\"qty\":");
        jw_dec(&w, dq);
        JW_LIT(&w, ",\"price\":");
        jw_dec(&w, price);
        JW_LIT(&w, ",\"commission\":");
        jw_dec(&w, fee_new ? u->commission : CQ_DEC_ZERO);
        JW_LIT(&w, ",\"commission_asset\":");
        jw_str(&w, fee_new ? u->commission_asset : "");
        JW_LIT(&w, ",\"fee_quote\":");
        if (fee_unconverted) {
            JW_LIT(&w, "null,\"fee_unconverted\":true");
        } else {
            jw_dec(&w, fee_quote);
        }
        JW_LIT(&w, ",\"executed_qty\":");
        jw_dec(&w, o->executed_qty);
        JW_LIT(&w, ",\"cum_quote\":");
        jw_dec(&w, o->cum_quote);
        struct cq_trader_position zero = {0};
        const struct cq_trader_position *pp = p != NULL ? p : pos_of(c, ox->sym, false);
        if (pp == NULL) {
            pp = &zero;
        }
        JW_LIT(&w, ",\"position_qty\":");
        jw_dec(&w, pp->qty);
        JW_LIT(&w, ",\"avg_entry\":");
        jw_dec(&w, pp->avg_entry);
        JW_LIT(&w, ",\"cost\":");
        jw_dec(&w, pp->cost);
        JW_LIT(&w, ",\"realized_pnl\":");
        jw_dec(&w, pp->realized_pnl);
        JW_LIT(&w, ",\"fees\":");
        jw_dec(&w, pp->fees);
        JW_LIT(&w, ",\"entry_client_id\":");
        jw_str(&w, pp->entry_client_id);
        JW_LIT(&w, ",\"daily_pnl\":");
        jw_dec(&w, c->daily_pnl);
        JW_LIT(&w, ",\"day\":");
        jw_i64(&w, c->day);
        JW_LIT(&w, ",\"state\":");
        jw_str(&w, cq_trader_order_state_name(o->state));
        JW_LIT(&w, ",\"final\":");
        jw_bool(&w, final);
        journal_end(x, a, &w);
    } else if (o->state != before || id_new) {
        if (!terminal(o->state)) {
            rec_ack(x, o);
        }
    }
    if (terminal(o->state) && !final) {
        const char *st = o->state == CQ_TRADER_OS_REJECTED ? "rejected" : "canceled";
        rec_reject(x, o, st, 0, "");
    }
    if (terminal(o->state)) {
        order_remove(c, i);
    }
}

static void on_order_update(struct ctx *x, const struct cq_trader_order_update *u)
{
    struct cq_trader_core *c = x->c;
    struct idkey k;
    if (!client_key(u->client_id, &k)) {
        if (c->open_orders_in_flight) {
            c->st.foreign_open_orders++;
        }
        return;
    }
    int i = order_find(c, &k);
    if (i < 0) {
        if (seen_has(c, &k)) {
            c->st.stale_updates_total++; /* closed and pruned already: applied once */
            return;
        }
        int sym = sym_get(c, u->symbol);
        if (sym < 0) {
            c->st.stale_updates_total++;
            return;
        }
        i = order_add(c, u->client_id, &k, sym);
        if (i < 0) {
            c->st.orders_table_full_total++;
            return;
        }
        seen_add(c, &k);
        struct cq_trader_order *o = &c->orders[i];
        o->side = u->side;
        o->type = u->type;
        o->purpose = CQ_TRADER_ADOPTED;
        o->qty = u->orig_qty;
        o->price = u->price;
        o->state = CQ_TRADER_OS_SENT;
        o->created_ms = x->now;
        c->ox[i].attempt = 1;
        c->st.adopted_orders_total++;
        if (c->phase == PH_READY) {
            c->st.reconcile_drifts_total++;
        }
        /* the adoption record: replay rebuilds the order from it */
        struct jw w;
        struct cq_trader_action *a =
            journal_begin(x, CQ_REC_ORDER_INTENT, o->symbol, "order_adopted", CQ_LOG_WARN, &w);
        JW_LIT(&w, "{\"client_order_id\":");
        jw_str(&w, o->client_id);
        JW_LIT(&w, ",\"signal_id\":\"\",\"side\":");
        jw_str(&w, side_name(o->side));
        JW_LIT(&w, ",\"type\":");
        jw_str(&w, type_name(o->type));
        JW_LIT(&w, ",\"qty\":");
        jw_dec(&w, o->qty);
        JW_LIT(&w, ",\"quote_qty\":\"0\",\"price\":");
        jw_dec(&w, o->price);
        JW_LIT(&w, ",\"purpose\":\"adopted\",\"attempt\":1,\"created_ms\":");
        jw_i64(&w, x->now);
        journal_end(x, a, &w);
        if (terminal(u->state)) {
            quarantine(x, sym, "unattributed_fill",
                       "a closed order with our prefix that the journal does not know", 0);
        }
    }
    apply_update(x, i, u);
}

/* ---- send failures ----------------------------------------------------------------- */

static const char INSUFFICIENT_MSG[] = "Account has insufficient balance for requested action.";

static int64_t retry_after(const struct cq_trader_event *ev)
{
    int64_t r = ev->u.send.retry_after_ms;
    return ev->now_ms + (r > 0 ? r : CQ_TRADER__RETRY_AFTER_DEFAULT_MS);
}

static void resend(struct ctx *x, int i, bool scale)
{
    struct cq_trader_core *c = x->c;
    struct cq_trader_order *o = &c->orders[i];
    struct submit_req r = {.sym = c->ox[i].sym,
                           .side = o->side,
                           .purpose = o->purpose,
                           .signal_id = o->signal_id,
                           .client_id = o->client_id,
                           .key = c->ox[i].key,
                           .ref_price = o->price,
                           .resend = i,
                           .scale = scale};
    size_t before = c->n_orders;
    if (!submit(x, &r) && c->n_orders == before) {
        /* still in the table: the filters refused the new size */
        order_fail(x, i, 0, "resend refused by the filters");
    }
}

static void on_send_failed(struct ctx *x, const struct cq_trader_event *ev)
{
    struct cq_trader_core *c = x->c;
    struct idkey k;
    if (!client_key(ev->u.send.client_id, &k)) {
        return;
    }
    int i = order_find(c, &k);
    if (i < 0) {
        c->st.stale_updates_total++;
        return;
    }
    struct cq_trader_order *o = &c->orders[i];
    struct order_x *ox = &c->ox[i];
    enum cq_trader_send_outcome oc = ev->u.send.outcome;
    if (oc != CQ_TRADER_SEND_JOURNAL_FAILED) {
        c->journal_failed = false;
    }
    if (oc == CQ_TRADER_SEND_BANNED) {
        c->banned_until_ms = retry_after(ev);
    }
    if (oc == CQ_TRADER_SEND_RATE_LIMITED) {
        c->rate_until_ms = retry_after(ev);
    }
    c->pump_dirty = true;

    if (ev->u.send.was_cancel) {
        ox->cancel_sent = false;
        if (oc == CQ_TRADER_SEND_REJECTED || oc == CQ_TRADER_SEND_NOT_FOUND) {
            /* -2011 unknown order: find out what it is */
            ox->need_cancel = false;
            ox->next_query_ms = x->now;
            if (o->state == CQ_TRADER_OS_OPEN) {
                o->state = CQ_TRADER_OS_UNKNOWN;
            }
        } else {
            ox->resend_at_ms = oc == CQ_TRADER_SEND_UNKNOWN ? x->now + c->cfg.unknown_query_every_ms
                                                            : retry_after(ev);
        }
        return;
    }
    if (ev->u.send.was_query) {
        ox->query_sent = false;
        if (oc == CQ_TRADER_SEND_NOT_FOUND) {
            if (c->phase == PH_READY && o->state == CQ_TRADER_OS_UNKNOWN && !c->killed) {
                /* the exchange never saw it: send again, same id */
                resend(x, i, false);
            } else if (o->state != CQ_TRADER_OS_OPEN || c->phase != PH_READY) {
                order_fail(x, i, ev->u.send.code, "the exchange never saw it (query: not found)");
            } else {
                c->st.reconcile_drifts_total++;
                order_fail(x, i, ev->u.send.code, "open order vanished (query: not found)");
            }
            return;
        }
        ox->next_query_ms = oc == CQ_TRADER_SEND_RATE_LIMITED || oc == CQ_TRADER_SEND_BANNED
                                ? retry_after(ev)
                                : x->now + c->cfg.unknown_query_every_ms;
        return;
    }

    switch (oc) {
    case CQ_TRADER_SEND_REJECTED:
        if (ev->u.send.code == -2010 && strcmp(ev->u.send.msg, "Duplicate order sent.") == 0) {
            /* an order with this id is live on the exchange: learn it */
            o->state = CQ_TRADER_OS_UNKNOWN;
            ox->next_query_ms = x->now;
            rec_ack(x, o);
            return;
        }
        if (ev->u.send.code == -2010 && strcmp(ev->u.send.msg, INSUFFICIENT_MSG) == 0) {
            int sym = ox->sym;
            c->st.insufficient_retries_total++;
            if (ox->attempt <= c->cfg.insufficient_retries && !c->killed) {
                size_t n = c->n_orders;
                resend(x, i, true);
                if (c->n_orders == n) {
                    return; /* resent */
                }
            } else {
                o->state = CQ_TRADER_OS_REJECTED;
                rec_reject(x, o, "rejected", ev->u.send.code, ev->u.send.msg);
                order_remove(c, i);
            }
            if (!c->syms[sym].quarantined) {
                quarantine(x, sym, "insufficient_balance",
                           "insufficient balance after scaling down",
                           x->now + c->cfg.quarantine_ms);
            }
            return;
        }
        o->state = CQ_TRADER_OS_REJECTED;
        rec_reject(x, o, "rejected", ev->u.send.code, ev->u.send.msg);
        order_remove(c, i);
        return;
    case CQ_TRADER_SEND_UNKNOWN:
        o->state = CQ_TRADER_OS_UNKNOWN;
        o->updated_ms = x->now;
        ox->next_query_ms = x->now;
        c->st.unknown_outcomes_total++;
        c->changed = true;
        rec_ack(x, o);
        return;
    case CQ_TRADER_SEND_RATE_LIMITED:
    case CQ_TRADER_SEND_BANNED:
        /* not accepted: the same id may go again once the wait is over */
        o->state = CQ_TRADER_OS_INTENT;
        ox->resend_at_ms = retry_after(ev);
        c->changed = true;
        rec_ack(x, o);
        return;
    case CQ_TRADER_SEND_NOT_FOUND:
        order_fail(x, i, ev->u.send.code, "not found");
        return;
    case CQ_TRADER_SEND_JOURNAL_FAILED:
        c->journal_failed = true;
        order_fail(x, i, 0, "journal_unavailable: the intent never became durable");
        return;
    }
}

/* ---- signals, marks, operator ------------------------------------------------------ */

static enum cq_trader_reason reason_of(const struct cq_trader_core *c, int64_t now);

static void on_signal(struct ctx *x, const struct cq_signal *sg)
{
    struct cq_trader_core *c = x->c;
    struct idkey k;
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    int sym = sym_find(c, sg->symbol);
    if (!hex_key(sg->id, &k)) {
        rec_refused(x, sym >= 0 ? sg->symbol : "", "", "", "bad_signal_id",
                    "a signal id is 32 lower-case hex characters");
        return;
    }
    cq_trader_client_id_for_signal(sg->id, cid);
    if (seen_has(c, &k)) {
        c->st.duplicate_signals_total++;
        rec_refused(x, sym >= 0 ? sg->symbol : "", sg->id, cid, "duplicate_signal",
                    "this signal was decided already");
        return;
    }
    enum cq_trader_reason r = reason_of(c, x->now);
    if (r == CQ_TRADER_LOADING_EXCHANGE_INFO || r == CQ_TRADER_AWAITING_BALANCE ||
        r == CQ_TRADER_RECONCILING || r == CQ_TRADER_EXCHANGE_BANNED) {
        rec_refused(x, sym >= 0 ? sg->symbol : "", sg->id, cid, "trader_not_ready",
                    cq_trader_reason_name(r));
        return;
    }
    if (sym < 0) {
        rec_refused(x, "", sg->id, cid, "unknown_symbol", "no exchangeInfo for the symbol");
        return;
    }
    struct submit_req req = {.sym = sym,
                             .side = sg->side,
                             .purpose = sg->side == CQ_SIDE_BUY ? CQ_TRADER_ENTRY : CQ_TRADER_EXIT,
                             .signal_id = sg->id,
                             .client_id = cid,
                             .key = k,
                             .ref_price = sg->reference_price,
                             .resend = -1};
    submit(x, &req);
}

static bool exit_live(const struct cq_trader_core *c, int sym)
{
    for (size_t i = 0; i < c->n_orders; i++) {
        if (c->ox[i].sym == sym && c->orders[i].side == CQ_SIDE_SELL) {
            return true;
        }
    }
    return false;
}

static void on_mark(struct ctx *x, const char *symbol, cq_dec price)
{
    struct cq_trader_core *c = x->c;
    int sym = sym_find(c, symbol);
    if (sym < 0 || cq_dec_sign(price) <= 0) {
        return;
    }
    struct sym *s = &c->syms[sym];
    s->mark = price;
    if (s->pos < 0) {
        return;
    }
    struct cq_trader_position *p = &c->pos[s->pos];
    p->mark = price;
    pos_unrealized(c, p);
    if (cq_dec_sign(p->qty) <= 0 || c->phase != PH_READY || x->now < s->exit_retry_ms) {
        return;
    }
    enum cq_trader_purpose kind;
    if (!cq_dec_is_zero(s->sl_price) && cq_dec_cmp(price, s->sl_price) <= 0) {
        kind = CQ_TRADER_STOP_LOSS;
    } else if (!cq_dec_is_zero(s->tp_price) && cq_dec_cmp(price, s->tp_price) >= 0) {
        kind = CQ_TRADER_TAKE_PROFIT;
    } else {
        return;
    }
    if (exit_live(c, sym) || !room(x->out, 4)) {
        return;
    }
    struct pos_x *px = &c->posx[s->pos];
    char cid[CQ_TRADER_CLIENT_ID_LEN];
    cq_trader_client_id_for_exit(p->entry_client_id, kind, px->exit_seq, cid);
    struct submit_req req = {.sym = sym,
                             .side = CQ_SIDE_SELL,
                             .purpose = kind,
                             .signal_id = "",
                             .client_id = cid,
                             .ref_price = price,
                             .resend = -1};
    (void)client_key(cid, &req.key);
    if (submit(x, &req)) {
        px->exit_seq++; /* the next exit of this position gets a new id */
        s->exit_retry_delay_ms = 0;
    } else {
        int64_t d = s->exit_retry_delay_ms;
        d = d <= 0 ? CQ_TRADER__EXIT_RETRY_MS : d * 2;
        s->exit_retry_delay_ms =
            d < CQ_TRADER__EXIT_RETRY_MAX_MS ? d : CQ_TRADER__EXIT_RETRY_MAX_MS;
        s->exit_retry_ms = x->now + s->exit_retry_delay_ms;
    }
}

/* ---- reconcile, timers, the pump ------------------------------------------------------ */

static void start_open_orders(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    for (size_t i = 0; i < c->n_orders; i++) {
        c->ox[i].listed = false;
    }
    c->st.foreign_open_orders = 0;
    c->open_orders_in_flight = true;
    act_plain(x, CQ_TRADER_ACT_FETCH_OPEN_ORDERS);
}

static void account_backoff(struct cq_trader_core *c, int64_t now)
{
    int64_t d = c->account_delay_ms;
    d = d <= 0 ? c->cfg.account_retry_min_ms : d * 2;
    if (d > c->cfg.account_retry_max_ms) {
        d = c->cfg.account_retry_max_ms;
    }
    if (d < 1) {
        d = 1;
    }
    c->account_delay_ms = d;
    c->account_next_ms = now + d;
}

/* An order of the symbol whose outcome the core does not know yet: not sent
 * (intent), in flight (sent), unknown, or journaled live and not yet
 * confirmed by the start-up reconcile (openOrders or its query). Its fills
 * may already be in the exchange's balances and not in the position. */
static bool sym_unresolved(const struct cq_trader_core *c, int sym)
{
    for (size_t i = 0; i < c->n_orders; i++) {
        if (c->ox[i].sym != sym) {
            continue;
        }
        enum cq_trader_order_state st = c->orders[i].state;
        if (c->ox[i].reconcile_pending || st == CQ_TRADER_OS_INTENT || st == CQ_TRADER_OS_SENT ||
            st == CQ_TRADER_OS_UNKNOWN) {
            return true;
        }
    }
    return false;
}

static void request_account(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    if (c->account_in_flight || x->now < c->account_next_ms || x->now < c->banned_until_ms ||
        !room(x->out, 1)) {
        return; /* timers() asks again */
    }
    c->account_in_flight = true;
    act_plain(x, CQ_TRADER_ACT_FETCH_ACCOUNT);
}

/* Compare the last account snapshot with the positions: a base-asset
 * balance (free + locked) below the position quarantines that symbol. Only
 * on settled facts: a symbol with an unresolved order waits (the check
 * stays due, bal_check), and a shortfall on a snapshot that fills applied
 * since have moved past is confirmed on a fresh snapshot (bal_refetch,
 * balance_rechecks_total) instead of quarantining. */
static void check_balances(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    bool waiting = false;
    for (size_t i = 0; i < c->n_pos; i++) {
        int sym = c->posx[i].sym;
        struct sym *s = &c->syms[sym];
        if (cq_dec_sign(c->pos[i].qty) <= 0 || s->quarantined || s->base[0] == '\0') {
            continue;
        }
        if (sym_unresolved(c, sym)) {
            waiting = true;
            continue;
        }
        cq_dec held = CQ_DEC_ZERO;
        for (size_t b = 0; b < c->n_bal; b++) {
            if (strcmp(c->bal[b].asset, s->base) == 0) {
                held = dadd(c, c->bal[b].free, c->bal[b].locked);
            }
        }
        if (cq_dec_cmp(held, c->pos[i].qty) >= 0) {
            continue;
        }
        if (s->fill_after_account) {
            waiting = true;
            if (!c->bal_refetch) {
                c->bal_refetch = true;
                c->st.balance_rechecks_total++;
            }
            continue;
        }
        if (!room(x->out, 1)) {
            waiting = true;
            continue;
        }
        char detail[160];
        detail_dec(detail, sizeof(detail), "balance below the position: held ", held);
        c->st.reconcile_drifts_total++;
        quarantine(x, sym, "balance_below_position", detail, 0);
    }
    c->bal_check = waiting;
    if (c->bal_refetch) {
        request_account(x);
    }
}

/* EV_TICK: the last price of every symbol with a position, at most every
 * mark_every_ms each (the answer comes back as EV_MARK_PRICE: unrealized
 * PnL, stop-loss, take-profit). Not while a ban or a rate limit holds every
 * request; a symbol that finds no room in this list goes at the next tick. */
static void request_marks(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    int64_t now = x->now;
    if (c->cfg.mark_every_ms <= 0 || c->phase != PH_READY || now < c->banned_until_ms ||
        now < c->rate_until_ms) {
        return;
    }
    for (size_t i = 0; i < c->n_pos && room(x->out, 1); i++) {
        struct sym *s = &c->syms[c->posx[i].sym];
        if (cq_dec_sign(c->pos[i].qty) <= 0 || now < s->mark_next_ms) {
            continue;
        }
        s->mark_next_ms = now + c->cfg.mark_every_ms;
        c->st.marks_requested_total++;
        act_ref(x, CQ_TRADER_ACT_FETCH_MARK, s->name, "");
    }
}

static void timers(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    int64_t now = x->now;
    if (c->phase == PH_INIT) {
        return;
    }
    bool banned = now < c->banned_until_ms;
    if (!banned && c->phase == PH_INFO && !c->info_in_flight && now >= c->info_next_ms) {
        c->info_in_flight = true;
        act_plain(x, CQ_TRADER_ACT_FETCH_EXCHANGE_INFO);
    }
    if (!banned && c->phase == PH_ACCOUNT && !c->account_in_flight && now >= c->account_next_ms) {
        c->account_in_flight = true;
        act_plain(x, CQ_TRADER_ACT_FETCH_ACCOUNT);
    }
    if (!banned && c->phase == PH_RECONCILE && !c->open_orders_in_flight && !c->open_orders_done &&
        now >= c->open_orders_next_ms) {
        start_open_orders(x);
    }
    if (c->bal_refetch && (c->phase == PH_RECONCILE || c->phase == PH_READY)) {
        request_account(x);
    }
    if (c->phase == PH_READY && !banned) {
        if (now >= c->reconcile_next_ms && !c->open_orders_in_flight && !c->account_in_flight &&
            room(x->out, 2)) {
            c->reconcile_next_ms = now + c->cfg.reconcile_every_ms;
            c->reconcile_startup = false;
            start_open_orders(x);
            c->account_in_flight = true;
            act_plain(x, CQ_TRADER_ACT_FETCH_ACCOUNT);
        }
        if (c->cfg.exchange_info_every_ms > 0 && now >= c->info_reload_ms && !c->info_in_flight &&
            room(x->out, 1)) {
            c->info_reload_ms = now + c->cfg.exchange_info_every_ms;
            c->info_in_flight = true;
            act_plain(x, CQ_TRADER_ACT_FETCH_EXCHANGE_INFO);
        }
    }
    for (size_t i = 0; i < c->n_syms && room(x->out, 1); i++) {
        struct sym *s = &c->syms[i];
        if (s->quarantined && s->q_until_ms > 0 && now >= s->q_until_ms) {
            unquarantine(x, (int)i, "expired");
        }
    }
}

static void pump(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    int64_t now = x->now;
    if (c->phase == PH_INIT || (!c->pump_dirty && now < c->pump_due_ms)) {
        return;
    }
    /* a ban or a rate limit holds every request to the exchange */
    int64_t blocked_until =
        c->banned_until_ms > c->rate_until_ms ? c->banned_until_ms : c->rate_until_ms;
    bool banned = now < blocked_until;
    int64_t next = INT64_MAX;
    size_t i = 0;
    while (i < c->n_orders) {
        if (!room(x->out, 3)) {
            next = now;
            break;
        }
        struct cq_trader_order *o = &c->orders[i];
        struct order_x *ox = &c->ox[i];
        size_t n_before = c->n_orders;
        if (banned) {
            next = blocked_until;
            break;
        }
        if (ox->need_cancel && !ox->cancel_sent) {
            if (o->state == CQ_TRADER_OS_INTENT) {
                order_fail(x, (int)i, 0, "kill_switch: not sent");
                continue;
            }
            if (now >= ox->resend_at_ms) {
                ox->cancel_sent = true;
                act_ref(x, CQ_TRADER_ACT_CANCEL_ORDER, o->symbol, o->client_id);
            } else if (ox->resend_at_ms < next) {
                next = ox->resend_at_ms;
            }
        } else if (o->state == CQ_TRADER_OS_INTENT) {
            int64_t at = ox->resend_at_ms;
            at = at > c->rate_until_ms ? at : c->rate_until_ms;
            if (c->killed) {
                order_fail(x, (int)i, 0, "kill_switch: not sent");
                continue;
            }
            if (now >= at && c->phase == PH_READY) {
                resend(x, (int)i, false);
                if (c->n_orders < n_before) {
                    continue;
                }
            } else if (at < next) {
                next = at;
            }
        } else if (ox->reconcile_pending) {
            if (!ox->query_sent && now >= ox->next_query_ms) {
                ox->query_sent = true;
                act_ref(x, CQ_TRADER_ACT_QUERY_ORDER, o->symbol, o->client_id);
            } else if (!ox->query_sent && ox->next_query_ms < next) {
                next = ox->next_query_ms;
            }
        } else if (o->state == CQ_TRADER_OS_UNKNOWN ||
                   (o->state == CQ_TRADER_OS_OPEN && !c->stream_up && c->phase == PH_READY)) {
            if (now >= ox->next_query_ms) {
                act_ref(x, CQ_TRADER_ACT_QUERY_ORDER, o->symbol, o->client_id);
                ox->next_query_ms =
                    now + (o->state == CQ_TRADER_OS_UNKNOWN ? c->cfg.unknown_query_every_ms
                                                            : c->cfg.poll_orders_every_ms);
            }
            if (ox->next_query_ms < next) {
                next = ox->next_query_ms;
            }
        }
        i++;
    }
    c->pump_due_ms = next;
    c->pump_dirty = false;
}

static void finish_reconcile(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    if (c->phase != PH_RECONCILE || !c->open_orders_done) {
        return;
    }
    for (size_t i = 0; i < c->n_orders; i++) {
        if (c->ox[i].reconcile_pending) {
            return;
        }
    }
    /* every journaled order is resolved: only now do the balances say
     * something about the positions */
    if (c->bal_check) {
        check_balances(x);
    }
    if (c->bal_check) {
        return; /* a shortfall to confirm on a fresh snapshot: still reconciling */
    }
    c->phase = PH_READY;
    c->reconcile_next_ms = x->now + c->cfg.reconcile_every_ms;
    c->info_reload_ms = x->now + c->cfg.exchange_info_every_ms;
    c->ckpt_due = true;
    c->pump_dirty = true;
}

static void on_open_orders_done(struct ctx *x, bool failed)
{
    struct cq_trader_core *c = x->c;
    c->open_orders_in_flight = false;
    if (failed) {
        if (c->phase == PH_RECONCILE) {
            account_backoff(c, x->now);
            c->open_orders_next_ms = c->account_next_ms;
        }
        return;
    }
    bool startup = c->phase == PH_RECONCILE;
    for (size_t i = 0; i < c->n_orders; i++) {
        struct cq_trader_order *o = &c->orders[i];
        struct order_x *ox = &c->ox[i];
        if (ox->listed) {
            continue;
        }
        if (startup && (o->state == CQ_TRADER_OS_INTENT || o->state == CQ_TRADER_OS_SENT ||
                        o->state == CQ_TRADER_OS_UNKNOWN || o->state == CQ_TRADER_OS_OPEN)) {
            ox->reconcile_pending = true;
            ox->query_sent = false;
            ox->next_query_ms = x->now;
        } else if (!startup && o->state == CQ_TRADER_OS_OPEN) {
            /* open for us, not for the exchange: it closed unseen */
            c->st.reconcile_drifts_total++;
            o->state = CQ_TRADER_OS_UNKNOWN;
            ox->next_query_ms = x->now;
            if (room(x->out, 1)) {
                struct jw w;
                struct cq_trader_action *a =
                    journal_begin(x, CQ_REC_NOTE, o->symbol, "reconcile_drift", CQ_LOG_WARN, &w);
                JW_LIT(&w, "{\"event\":\"reconcile_drift\",\"client_order_id\":");
                jw_str(&w, o->client_id);
                JW_LIT(&w, ",\"detail\":\"open for us, not in openOrders: queried\"");
                journal_end(x, a, &w);
            }
        }
    }
    c->pump_dirty = true;
    if (startup) {
        c->open_orders_done = true;
    }
    if (c->st.foreign_open_orders > 0 && c->st.foreign_open_orders != c->foreign_reported) {
        struct jw w;
        struct cq_trader_action *a =
            journal_begin(x, CQ_REC_NOTE, "trader", "foreign_open_orders", CQ_LOG_WARN, &w);
        JW_LIT(&w, "{\"event\":\"foreign_open_orders\",\"count\":");
        jw_u64(&w, c->st.foreign_open_orders);
        JW_LIT(&w, ",\"detail\":\"open orders without our prefix: reported, left alone\"");
        journal_end(x, a, &w);
    }
    c->foreign_reported = c->st.foreign_open_orders;
}

/* ---- checkpoint -------------------------------------------------------------------- */

static void ckpt_order(struct cq_trader_core *c, struct jw *w, size_t i)
{
    const struct cq_trader_order *o = &c->orders[i];
    JW_LIT(w, "{\"client_order_id\":");
    jw_str(w, o->client_id);
    JW_LIT(w, ",\"signal_id\":");
    jw_str(w, o->signal_id);
    JW_LIT(w, ",\"symbol\":");
    jw_str(w, o->symbol);
    JW_LIT(w, ",\"side\":");
    jw_str(w, side_name(o->side));
    JW_LIT(w, ",\"type\":");
    jw_str(w, type_name(o->type));
    JW_LIT(w, ",\"purpose\":");
    jw_str(w, cq_trader_purpose_name(o->purpose));
    JW_LIT(w, ",\"state\":");
    jw_str(w, cq_trader_order_state_name(o->state));
    JW_LIT(w, ",\"qty\":");
    jw_dec(w, o->qty);
    JW_LIT(w, ",\"quote_qty\":");
    jw_dec(w, o->quote_qty);
    JW_LIT(w, ",\"price\":");
    jw_dec(w, o->price);
    JW_LIT(w, ",\"executed_qty\":");
    jw_dec(w, o->executed_qty);
    JW_LIT(w, ",\"cum_quote\":");
    jw_dec(w, o->cum_quote);
    JW_LIT(w, ",\"order_id\":");
    jw_u64(w, o->order_id);
    JW_LIT(w, ",\"attempt\":");
    jw_u64(w, c->ox[i].attempt);
    JW_LIT(w, ",\"created_ms\":");
    jw_i64(w, o->created_ms);
    JW_LIT(w, ",\"updated_ms\":");
    jw_i64(w, o->updated_ms);
    JW_LIT(w, "}");
}

static void checkpoint(struct ctx *x)
{
    struct cq_trader_core *c = x->c;
    struct jw w;
    jw_init(&w, c->ckpt, CQ_TRADER_CHECKPOINT_MAX + 1);
    JW_LIT(&w, "{\"v\":1,\"day\":");
    jw_i64(&w, c->day);
    JW_LIT(&w, ",\"daily_pnl\":");
    jw_dec(&w, c->daily_pnl);
    JW_LIT(&w, ",\"positions\":[");
    for (size_t i = 0; i < c->n_pos; i++) {
        const struct cq_trader_position *p = &c->pos[i];
        if (i > 0) {
            JW_LIT(&w, ",");
        }
        JW_LIT(&w, "{\"symbol\":");
        jw_str(&w, p->symbol);
        JW_LIT(&w, ",\"qty\":");
        jw_dec(&w, p->qty);
        JW_LIT(&w, ",\"avg_entry\":");
        jw_dec(&w, p->avg_entry);
        JW_LIT(&w, ",\"cost\":");
        jw_dec(&w, p->cost);
        JW_LIT(&w, ",\"realized_pnl\":");
        jw_dec(&w, p->realized_pnl);
        JW_LIT(&w, ",\"fees\":");
        jw_dec(&w, p->fees);
        JW_LIT(&w, ",\"entry_client_id\":");
        jw_str(&w, p->entry_client_id);
        JW_LIT(&w, ",\"exit_seq\":");
        jw_u64(&w, c->posx[i].exit_seq);
        JW_LIT(&w, "}");
    }
    JW_LIT(&w, "],\"quarantines\":[");
    bool first = true;
    for (size_t i = 0; i < c->n_syms; i++) {
        const struct sym *s = &c->syms[i];
        if (!s->quarantined) {
            continue;
        }
        if (!first) {
            JW_LIT(&w, ",");
        }
        first = false;
        JW_LIT(&w, "{\"symbol\":");
        jw_str(&w, s->name);
        JW_LIT(&w, ",\"reason\":");
        jw_str(&w, s->q_reason);
        JW_LIT(&w, ",\"detail\":");
        jw_str(&w, s->q_detail);
        JW_LIT(&w, ",\"until_ms\":");
        jw_i64(&w, s->q_until_ms);
        JW_LIT(&w, "}");
    }
    JW_LIT(&w, "],\"orders\":[");
    for (size_t i = 0; i < c->n_orders; i++) {
        if (i > 0) {
            JW_LIT(&w, ",");
        }
        ckpt_order(c, &w, i);
    }
    JW_LIT(&w, "]");
    /* the seen ids, newest first, 11 characters each, as many as fit with
     * room to close (all 4,096 unless many orders are live) */
    JW_LIT(&w, ",\"seen\":\"");
    if (w.over) {
        c->st.checkpoints_skipped_total++;
        return;
    }
    /* as many ids as fit with 96 bytes left each time (an id, and the
     * closing fields): all 4,096 unless many orders are live */
    size_t room_left = (size_t)(w.end - w.p);
    size_t kept = room_left < 96 ? 0 : (room_left - 96) / SEEN_CHARS + 1;
    if (kept > c->seen_n) {
        kept = c->seen_n;
    }
    const char *text = c->seen_txt + c->seen_at;
    char *payload = c->ckpt;
    if (kept == c->seen_n) {
        /* in place: the head in front of the text, the tail after it */
        size_t head = (size_t)(w.p - w.start);
        payload = c->seen_txt + c->seen_at - head;
        memcpy(payload, c->ckpt, head);
        w.start = payload;
        w.p = c->seen_txt + c->seen_at + kept * SEEN_CHARS;
        w.end = c->seen_txt + SEEN_TXT_CAP - 1;
    } else {
        memcpy(w.p, text, kept * SEEN_CHARS);
        w.p += kept * SEEN_CHARS;
    }
    JW_LIT(&w, "\",\"seen_dropped\":");
    jw_u64(&w, c->seen_n - kept);
    JW_LIT(&w, ",\"ms\":");
    jw_i64(&w, x->now);
    JW_LIT(&w, "}");
    *w.p = '\0';
    struct cq_trader_action *a = push(x->out, &x->overflow, CQ_TRADER_ACT_JOURNAL);
    if (a == NULL) {
        return;
    }
    a->u.journal.type = CQ_TRADER_REC_TRADER_CHECKPOINT;
    cq_strlcpy(a->u.journal.scope, "trader", sizeof(a->u.journal.scope));
    a->u.journal.wait_durable = false;
    a->u.journal.log_event = "trader_checkpoint";
    a->u.journal.log_level = CQ_LOG_DEBUG;
    a->u.journal.payload[0] = '\0';
    a->u.journal.payload_ext = payload;
    a->u.journal.len = (size_t)(w.p - w.start);
    c->st.checkpoints_total++;
    c->last_ckpt_ms = x->now;
    c->changed = false;
    c->ckpt_due = false;
}

/* ---- the event entry --------------------------------------------------------------- */

static void apply_balances(struct cq_trader_core *c, const struct cq_trader_event *ev)
{
    for (size_t i = 0; i < ev->u.balances.n && i < CQ_TRADER_ASSETS_MAX; i++) {
        const struct cq_trader_balance *b = &ev->u.balances.items[i];
        size_t j = 0;
        while (j < c->n_bal && strcmp(c->bal[j].asset, b->asset) != 0) {
            j++;
        }
        if (j == c->n_bal) {
            if (c->n_bal >= CQ_TRADER_ASSETS_MAX) {
                continue;
            }
            c->n_bal++;
        }
        c->bal[j] = *b;
    }
}

int cq_trader_core_on_event(struct cq_trader_core *c, const struct cq_trader_event *ev,
                            struct cq_trader_actions *out)
{
    struct ctx x;
    x.c = c;
    x.out = out;
    x.now = ev->now_ms;
    x.overflow = false;
    x.ms_len = 0;
    out->n = 0;
    c->now_ms = ev->now_ms;
    c->st.events_total++;
    day_roll(c, ev->now_ms);
    switch (ev->kind) {
    case CQ_TRADER_EV_TICK:
        request_marks(&x);
        break;
    case CQ_TRADER_EV_SIGNAL:
        on_signal(&x, &ev->u.signal);
        break;
    case CQ_TRADER_EV_SYMBOL_INFO: {
        const struct cq_trader_symbol_info *si = &ev->u.symbol_info;
        int sym = sym_get(c, si->symbol);
        if (sym >= 0) {
            struct sym *s = &c->syms[sym];
            cq_strlcpy(s->base, si->base, sizeof(s->base));
            cq_strlcpy(s->quote, si->quote, sizeof(s->quote));
            s->trading = si->trading;
            s->filters = si->filters;
            s->have_info = true;
        }
        break;
    }
    case CQ_TRADER_EV_EXCHANGE_INFO_DONE:
        c->info_in_flight = false;
        if (ev->failed) {
            if (c->phase == PH_INFO) {
                account_backoff(c, ev->now_ms);
                c->info_next_ms = c->account_next_ms;
            }
        } else if (c->phase == PH_INFO) {
            c->phase = PH_ACCOUNT;
            c->account_delay_ms = 0;
            c->account_next_ms = ev->now_ms;
        }
        break;
    case CQ_TRADER_EV_ACCOUNT:
        c->account_in_flight = false;
        if (ev->failed) {
            if (c->phase == PH_ACCOUNT || c->bal_refetch) {
                account_backoff(c, ev->now_ms);
            }
            break;
        }
        c->n_bal = 0; /* a full snapshot replaces the table */
        apply_balances(c, ev);
        if (c->phase == PH_ACCOUNT) {
            c->phase = PH_RECONCILE;
            c->open_orders_done = false;
            c->open_orders_next_ms = ev->now_ms;
        }
        c->account_delay_ms = 0;
        /* compared with the positions once every order is resolved: at
         * start-up when the reconcile ends (finish_reconcile), while ready
         * at the end of this event, or later for a symbol that waits */
        c->bal_check = true;
        c->bal_refetch = false;
        for (size_t i = 0; i < c->n_syms; i++) {
            c->syms[i].fill_after_account = false;
        }
        break;
    case CQ_TRADER_EV_BALANCE_UPDATE:
        apply_balances(c, ev);
        break;
    case CQ_TRADER_EV_ORDER_UPDATE:
        on_order_update(&x, &ev->u.order);
        c->pump_dirty = true;
        break;
    case CQ_TRADER_EV_SEND_FAILED:
        on_send_failed(&x, ev);
        break;
    case CQ_TRADER_EV_OPEN_ORDERS_DONE:
        on_open_orders_done(&x, ev->failed);
        break;
    case CQ_TRADER_EV_STREAM_UP:
        c->stream_up = true;
        break;
    case CQ_TRADER_EV_STREAM_GAP:
        c->stream_up = false;
        c->pump_dirty = true;
        if (c->phase == PH_READY) {
            c->reconcile_next_ms = ev->now_ms; /* reconcile now (timers below) */
        }
        break;
    case CQ_TRADER_EV_MARK_PRICE:
        on_mark(&x, ev->u.mark.symbol, ev->u.mark.price);
        break;
    case CQ_TRADER_EV_OPERATOR: {
        int sym = sym_find(c, ev->u.op.symbol);
        switch (ev->u.op.cmd) {
        case CQ_TRADER_CMD_PAUSE:
            c->paused = true;
            break;
        case CQ_TRADER_CMD_RESUME:
            c->paused = false;
            break;
        case CQ_TRADER_CMD_KILL:
            c->killed = true;
            for (size_t i = 0; i < c->n_orders; i++) {
                c->ox[i].need_cancel = true;
            }
            c->pump_dirty = true;
            break;
        case CQ_TRADER_CMD_UNKILL:
            c->killed = false;
            for (size_t i = 0; i < c->n_syms; i++) {
                c->syms[i].exit_retry_ms = c->syms[i].exit_retry_delay_ms = 0;
            }
            break;
        case CQ_TRADER_CMD_CLEAR_QUARANTINE:
            if (sym >= 0 && c->syms[sym].quarantined) {
                unquarantine(&x, sym, "operator");
            }
            break;
        }
        break;
    }
    case CQ_TRADER_EV_RECOVERED:
        if (c->phase == PH_INIT) {
            c->phase = PH_INFO;
            c->info_next_ms = ev->now_ms;
            c->ckpt_due = true;
            for (size_t i = 0; i < c->n_syms; i++) {
                pos_thresholds(c, (int)i);
            }
        }
        break;
    }
    timers(&x);
    pump(&x);
    finish_reconcile(&x);
    if (c->phase == PH_READY && c->bal_check) {
        check_balances(&x);
    }
    if (c->phase != PH_INIT &&
        (c->ckpt_due ||
         (c->changed && ev->now_ms - c->last_ckpt_ms >= CQ_TRADER__CHECKPOINT_EVERY_MS)) &&
        out->n < CQ_TRADER_ACTIONS_MAX) {
        checkpoint(&x);
    }
    if (x.overflow) {
        c->st.actions_overflow_total++;
        out->n = 0;
        return -CQ_ETOOBIG;
    }
    return 0;
}

/* ---- status and reads ---------------------------------------------------------------- */

static enum cq_trader_reason reason_of(const struct cq_trader_core *c, int64_t now)
{
    switch (c->phase) {
    case PH_INIT:
    case PH_INFO:
        return CQ_TRADER_LOADING_EXCHANGE_INFO;
    case PH_ACCOUNT:
        return CQ_TRADER_AWAITING_BALANCE;
    case PH_RECONCILE:
        return CQ_TRADER_RECONCILING;
    case PH_READY:
        break;
    }
    if (c->journal_failed) {
        return CQ_TRADER_JOURNAL_UNAVAILABLE;
    }
    if (now < c->banned_until_ms) {
        return CQ_TRADER_EXCHANGE_BANNED;
    }
    if (c->killed) {
        return CQ_TRADER_KILL_SWITCH;
    }
    if (c->paused) {
        return CQ_TRADER_TRADING_PAUSED;
    }
    if (cq_dec_sign(c->cfg.risk.max_daily_loss) > 0) {
        cq_dec floor;
        if (cq_dec_neg(c->cfg.risk.max_daily_loss, &floor) == 0 &&
            cq_dec_cmp(c->daily_pnl, floor) <= 0) {
            return CQ_TRADER_DAILY_LOSS_LIMIT;
        }
    }
    for (size_t i = 0; i < c->n_syms; i++) {
        if (c->syms[i].quarantined) {
            return CQ_TRADER_SYMBOL_QUARANTINED;
        }
    }
    return CQ_TRADER_READY_OK;
}

void cq_trader_core_status(const struct cq_trader_core *c, struct cq_trader_status *out)
{
    *out = c->st;
    out->reason = reason_of(c, c->now_ms);
    out->ready = out->reason == CQ_TRADER_READY_OK || out->reason >= CQ_TRADER_TRADING_PAUSED;
    out->open_orders = out->unknown_orders = 0;
    for (size_t i = 0; i < c->n_orders; i++) {
        out->open_orders += c->orders[i].state == CQ_TRADER_OS_OPEN;
        out->unknown_orders += c->orders[i].state == CQ_TRADER_OS_UNKNOWN;
    }
    out->positions = 0;
    out->total_exposure = CQ_DEC_ZERO;
    for (size_t i = 0; i < c->n_pos; i++) {
        if (cq_dec_sign(c->pos[i].qty) > 0) {
            out->positions++;
            cq_dec t;
            if (cq_dec_add(out->total_exposure, c->pos[i].cost, &t) == 0) {
                out->total_exposure = t;
            }
        }
    }
    out->quarantined = 0;
    for (size_t i = 0; i < c->n_syms; i++) {
        out->quarantined += c->syms[i].quarantined;
    }
    out->daily_realized_pnl = c->daily_pnl;
    unsigned n = 0;
    for (size_t i = 0; i < c->sent_n; i++) {
        n += c->sent_ms[(c->sent_head + i) % c->sent_cap] > c->now_ms - CQ_TRADER__ORDER_WINDOW_MS;
    }
    out->orders_last_minute = n;
    out->stream_up = c->stream_up;
    out->banned_until_ms = c->now_ms < c->banned_until_ms ? c->banned_until_ms : 0;
}

size_t cq_trader_core_positions(const struct cq_trader_core *c,
                                const struct cq_trader_position **out)
{
    *out = c->pos;
    return c->n_pos;
}

size_t cq_trader_core_orders(const struct cq_trader_core *c, const struct cq_trader_order **out)
{
    *out = c->orders;
    return c->n_orders;
}

size_t cq_trader_core_quarantined(const struct cq_trader_core *c, size_t i, const char **symbol,
                                  const char **reason, int64_t *until_ms)
{
    size_t n = 0;
    for (size_t s = 0; s < c->n_syms; s++) {
        if (!c->syms[s].quarantined) {
            continue;
        }
        if (n == i) {
            *symbol = c->syms[s].name;
            *reason = c->syms[s].q_reason;
            *until_ms = c->syms[s].q_until_ms;
        }
        n++;
    }
    return n;
}

/* ---- construction ---------------------------------------------------------------------- */

struct cq_trader_core *cq_trader_core_new(const struct cq_trader_core_config *cfg,
                                          struct cq_err *err)
{
    if (cfg == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, NULL, "trader core: no config");
        return NULL;
    }
    const char *bad = NULL;
    if (cq_dec_sign(cfg->order_quote) <= 0) {
        bad = "order_quote must be > 0 (CQ_ORDER_QUOTE)";
    } else if (cq_dec_sign(cfg->insufficient_scale) <= 0 ||
               cq_dec_cmp(cfg->insufficient_scale, cq_dec_make(1, 0)) >= 0) {
        bad = "insufficient_scale must be in (0, 1) (CQ_INSUFFICIENT_SCALE)";
    } else if (cq_dec_sign(cfg->stop_loss_pct) < 0 ||
               cq_dec_cmp(cfg->stop_loss_pct, cq_dec_make(100, 0)) >= 0) {
        bad = "stop_loss_pct must be in [0, 100) (CQ_STOP_LOSS_PCT)";
    } else if (cq_dec_sign(cfg->take_profit_pct) < 0) {
        bad = "take_profit_pct must be >= 0 (CQ_TAKE_PROFIT_PCT)";
    } else if (cfg->quarantine_ms <= 0 || cfg->unknown_query_every_ms <= 0 ||
               cfg->reconcile_every_ms <= 0 || cfg->poll_orders_every_ms <= 0 ||
               cfg->account_retry_min_ms <= 0 ||
               cfg->account_retry_max_ms < cfg->account_retry_min_ms ||
               cfg->exchange_info_every_ms < 0 || cfg->mark_every_ms < 0) {
        bad = "every interval must be > 0 ms (exchange_info_every_ms, mark_every_ms: >= 0) and "
              "account_retry_max_ms >= account_retry_min_ms";
    } else if (cfg->orders_max > CQ_TRADER_ORDERS_MAX) {
        bad = "orders_max must be <= CQ_TRADER_ORDERS_MAX (512)";
    }
    if (bad != NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "fix the trader settings", "trader core: %s", bad);
        return NULL;
    }
    struct cq_trader_core *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto oom;
    }
    c->cfg = *cfg;
    c->orders_max = cfg->orders_max > 0 ? cfg->orders_max : CQ_TRADER_ORDERS_MAX;
    c->orders = calloc(c->orders_max, sizeof(*c->orders));
    c->ox = calloc(c->orders_max, sizeof(*c->ox));
    c->seen = calloc(CQ_TRADER_SIGNALS_SEEN_MAX, sizeof(*c->seen));
    c->seen_index = malloc(SEEN_INDEX * sizeof(*c->seen_index));
    c->sent_cap = cfg->risk.max_orders_per_minute > 0 ? cfg->risk.max_orders_per_minute + 1 : 1024;
    c->sent_ms = calloc(c->sent_cap, sizeof(*c->sent_ms));
    c->ckpt = malloc(CQ_TRADER_CHECKPOINT_MAX + 1);
    c->seen_txt = malloc(SEEN_TXT_CAP);
    if (c->orders == NULL || c->ox == NULL || c->seen == NULL || c->seen_index == NULL ||
        c->sent_ms == NULL || c->ckpt == NULL || c->seen_txt == NULL) {
        cq_trader_core_free(c);
        goto oom;
    }
    seen_clear(c);
    c->paused = cfg->risk.trading_paused;
    c->killed = cfg->risk.kill_switch;
    c->phase = PH_INIT;
    c->day = -1;
    c->last_ckpt_ms = INT64_MIN / 2;
    c->limits_key = -1;
    return c;
oom:
    cq_err_set(err, CQ_ENOMEM, 0, NULL, "trader core: out of memory");
    return NULL;
}

void cq_trader_core_free(struct cq_trader_core *c)
{
    if (c == NULL) {
        return;
    }
    free(c->orders);
    free(c->ox);
    free(c->seen);
    free(c->seen_index);
    free(c->sent_ms);
    free(c->ckpt);
    free(c->seen_txt);
    free(c);
}

/* ---- replay --------------------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static int jdec(json_t *o, const char *k, cq_dec *out)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (s == NULL) {
        *out = CQ_DEC_ZERO;
        return json_object_get(o, k) == NULL || json_is_null(json_object_get(o, k)) ? 0
                                                                                    : -CQ_EPARSE;
    }
    return cq_dec_parse(s, (size_t)-1, out);
}

static int64_t jint(json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static int replay_order(struct cq_trader_core *c, json_t *j, const char *symbol, bool full)
{
    struct idkey k;
    const char *cid = jstr(j, "client_order_id");
    if (!client_key(cid, &k)) {
        return -CQ_EPARSE;
    }
    int sym = sym_get(c, symbol);
    if (sym < 0) {
        return -CQ_EFULL;
    }
    int i = order_find(c, &k);
    bool fresh = i < 0;
    if (fresh) {
        i = order_add(c, cid, &k, sym);
        if (i < 0) {
            c->st.orders_table_full_total++;
            return -CQ_EFULL;
        }
    }
    seen_add(c, &k);
    struct cq_trader_order *o = &c->orders[i];
    cq_strlcpy(o->signal_id, jstr(j, "signal_id"), sizeof(o->signal_id));
    o->side = strcmp(jstr(j, "side"), "SELL") == 0 ? CQ_SIDE_SELL : CQ_SIDE_BUY;
    o->type = strcmp(jstr(j, "type"), "LIMIT") == 0 ? CQ_TRADER_LIMIT : CQ_TRADER_MARKET;
    int rc = parse_purpose(jstr(j, "purpose"), &o->purpose);
    if (rc == 0) {
        rc = jdec(j, "qty", &o->qty);
    }
    if (rc == 0) {
        rc = jdec(j, "quote_qty", &o->quote_qty);
    }
    if (rc == 0) {
        rc = jdec(j, "price", &o->price);
    }
    unsigned attempt = (unsigned)jint(j, "attempt");
    c->ox[i].attempt = attempt;
    o->created_ms = jint(j, "created_ms");
    if (full) {
        if (rc == 0) {
            rc = parse_state(jstr(j, "state"), &o->state);
        }
        if (rc == 0) {
            rc = jdec(j, "executed_qty", &o->executed_qty);
        }
        if (rc == 0) {
            rc = jdec(j, "cum_quote", &o->cum_quote);
        }
        o->order_id = (uint64_t)jint(j, "order_id");
        o->updated_ms = jint(j, "updated_ms");
    } else {
        o->state = CQ_TRADER_OS_SENT;
        o->updated_ms = jint(j, "ms");
        struct cq_trader_position *p = pos_of(c, sym, false);
        if (attempt == 1 && p != NULL &&
            (o->purpose == CQ_TRADER_STOP_LOSS || o->purpose == CQ_TRADER_TAKE_PROFIT)) {
            c->posx[c->syms[sym].pos].exit_seq++;
        }
        if (o->purpose == CQ_TRADER_ADOPTED) {
            c->st.adopted_orders_total++;
        }
    }
    return rc;
}

static void replay_reset(struct cq_trader_core *c)
{
    c->n_orders = 0;
    c->n_pos = 0;
    for (size_t i = 0; i < c->n_syms; i++) {
        c->syms[i].pos = -1;
        c->syms[i].quarantined = false;
        c->syms[i].q_until_ms = 0;
    }
    seen_clear(c);
}

static int replay_checkpoint(struct cq_trader_core *c, json_t *j)
{
    replay_reset(c);
    c->day = jint(j, "day");
    int rc = jdec(j, "daily_pnl", &c->daily_pnl);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "positions"), i, e)
    {
        int sym = sym_get(c, jstr(e, "symbol"));
        struct cq_trader_position *p = sym >= 0 ? pos_of(c, sym, true) : NULL;
        if (p == NULL) {
            return -CQ_EFULL;
        }
        if (rc == 0) {
            rc = jdec(e, "qty", &p->qty);
        }
        if (rc == 0) {
            rc = jdec(e, "avg_entry", &p->avg_entry);
        }
        if (rc == 0) {
            rc = jdec(e, "cost", &p->cost);
        }
        if (rc == 0) {
            rc = jdec(e, "realized_pnl", &p->realized_pnl);
        }
        if (rc == 0) {
            rc = jdec(e, "fees", &p->fees);
        }
        cq_strlcpy(p->entry_client_id, jstr(e, "entry_client_id"), sizeof(p->entry_client_id));
        c->posx[c->syms[sym].pos].exit_seq = (unsigned)jint(e, "exit_seq");
    }
    json_array_foreach(json_object_get(j, "quarantines"), i, e)
    {
        int sym = sym_get(c, jstr(e, "symbol"));
        if (sym < 0) {
            return -CQ_EFULL;
        }
        struct sym *s = &c->syms[sym];
        s->quarantined = true;
        cq_strlcpy(s->q_reason, jstr(e, "reason"), sizeof(s->q_reason));
        cq_strlcpy(s->q_detail, jstr(e, "detail"), sizeof(s->q_detail));
        s->q_until_ms = jint(e, "until_ms");
    }
    json_array_foreach(json_object_get(j, "orders"), i, e)
    {
        if (rc == 0) {
            rc = replay_order(c, e, jstr(e, "symbol"), true);
        }
    }
    /* newest first in the record: add oldest first */
    const char *seen = jstr(j, "seen");
    size_t len = strlen(seen);
    if (len % SEEN_CHARS != 0 || len / SEEN_CHARS > CQ_TRADER_SIGNALS_SEEN_MAX) {
        return rc < 0 ? rc : -CQ_EPARSE;
    }
    for (size_t n = len / SEEN_CHARS; n > 0; n--) {
        struct idkey k = {0, 0};
        if (!seen_decode(seen + (n - 1) * SEEN_CHARS, &k.a)) {
            return -CQ_EPARSE;
        }
        seen_add(c, &k);
    }
    return rc;
}

static int replay_fill(struct cq_trader_core *c, json_t *j, const char *symbol)
{
    int sym = sym_get(c, symbol);
    if (sym < 0) {
        return -CQ_EFULL;
    }
    struct cq_trader_position *p = pos_of(c, sym, true);
    if (p == NULL) {
        return -CQ_EFULL;
    }
    bool was_flat = cq_dec_is_zero(p->qty);
    int rc = jdec(j, "position_qty", &p->qty);
    if (was_flat && cq_dec_sign(p->qty) > 0) {
        c->posx[c->syms[sym].pos].exit_seq = 0;
    }
    if (rc == 0) {
        rc = jdec(j, "avg_entry", &p->avg_entry);
    }
    if (rc == 0) {
        rc = jdec(j, "cost", &p->cost);
    }
    if (rc == 0) {
        rc = jdec(j, "realized_pnl", &p->realized_pnl);
    }
    if (rc == 0) {
        rc = jdec(j, "fees", &p->fees);
    }
    if (rc == 0) {
        rc = jdec(j, "daily_pnl", &c->daily_pnl);
    }
    c->day = jint(j, "day");
    cq_strlcpy(p->entry_client_id, jstr(j, "entry_client_id"), sizeof(p->entry_client_id));
    if (json_object_get(j, "fee_unconverted") != NULL) {
        c->st.fees_unconverted_total++;
    }
    struct idkey k;
    if (!client_key(jstr(j, "client_order_id"), &k)) {
        return rc;
    }
    int i = order_find(c, &k);
    if (i < 0) {
        return rc;
    }
    struct cq_trader_order *o = &c->orders[i];
    if (rc == 0) {
        rc = jdec(j, "executed_qty", &o->executed_qty);
    }
    if (rc == 0) {
        rc = jdec(j, "cum_quote", &o->cum_quote);
    }
    o->order_id = (uint64_t)jint(j, "order_id");
    o->updated_ms = jint(j, "ms");
    uint64_t tid = (uint64_t)jint(j, "trade_id");
    if (tid != 0 && jstr(j, "commission_asset")[0] != '\0') {
        (void)trade_seen(&c->ox[i], tid);
    }
    enum cq_trader_order_state s;
    if (parse_state(jstr(j, "state"), &s) == 0) {
        o->state = s;
    }
    if (json_is_true(json_object_get(j, "final")) || terminal(o->state)) {
        order_remove(c, i);
    }
    return rc;
}

int cq_trader_core_replay(struct cq_trader_core *c, uint16_t type, const char *scope,
                          const char *payload, size_t len)
{
    if (c->phase != PH_INIT) {
        return -CQ_ESTATE;
    }
    switch (type) {
    case CQ_REC_ORDER_INTENT:
    case CQ_REC_ORDER_ACK:
    case CQ_REC_ORDER_FILL:
    case CQ_REC_ORDER_REJECT:
    case CQ_REC_RISK_DECISION:
    case CQ_REC_QUARANTINE:
    case CQ_REC_UNQUARANTINE:
    case CQ_TRADER_REC_TRADER_CHECKPOINT:
        break;
    default:
        return 0; /* not the core's */
    }
    json_t *j = json_loadb(payload, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return -CQ_EPARSE;
    }
    int rc = 0;
    struct idkey k;
    int i;
    switch (type) {
    case CQ_TRADER_REC_TRADER_CHECKPOINT:
        rc = replay_checkpoint(c, j);
        break;
    case CQ_REC_RISK_DECISION:
        if (client_key(jstr(j, "client_order_id"), &k)) {
            seen_add(c, &k);
        }
        break;
    case CQ_REC_ORDER_INTENT:
        rc = replay_order(c, j, scope, false);
        break;
    case CQ_REC_ORDER_ACK:
        if (client_key(jstr(j, "client_order_id"), &k) && (i = order_find(c, &k)) >= 0) {
            struct cq_trader_order *o = &c->orders[i];
            enum cq_trader_order_state s;
            rc = parse_state(jstr(j, "status"), &s);
            if (rc == 0) {
                o->state = s;
                o->order_id = (uint64_t)jint(j, "order_id");
                o->updated_ms = jint(j, "ms");
                rc = jdec(j, "executed_qty", &o->executed_qty);
            }
            if (rc == 0) {
                rc = jdec(j, "cum_quote", &o->cum_quote);
            }
        }
        break;
    case CQ_REC_ORDER_FILL:
        rc = replay_fill(c, j, scope);
        break;
    case CQ_REC_ORDER_REJECT:
        if (client_key(jstr(j, "client_order_id"), &k) && (i = order_find(c, &k)) >= 0) {
            order_remove(c, i);
        }
        break;
    case CQ_REC_QUARANTINE:
    case CQ_REC_UNQUARANTINE: {
        int sym = sym_get(c, scope);
        if (sym < 0) {
            rc = -CQ_EFULL;
            break;
        }
        struct sym *s = &c->syms[sym];
        s->quarantined = type == CQ_REC_QUARANTINE;
        if (s->quarantined) {
            cq_strlcpy(s->q_reason, jstr(j, "reason"), sizeof(s->q_reason));
            cq_strlcpy(s->q_detail, jstr(j, "detail"), sizeof(s->q_detail));
            s->q_until_ms = jint(j, "until_ms");
        } else {
            s->q_reason[0] = s->q_detail[0] = '\0';
            s->q_until_ms = 0;
        }
        break;
    }
    default:
        break;
    }
    json_decref(j);
    return rc;
}
