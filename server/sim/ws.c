/*
 * ws.c — coinquant-simex's WebSocket server: Binance market streams and the
 * user data stream, over libwebsockets, on loopback.
 *
 * Threads
 *   ws thread   created by sim_ws_start, owns the lws context, every
 *               connection and everything in struct ws_conn. It runs
 *               lws_service until sim_ws_stop sets `stop` and wakes it, then
 *               destroys the context itself, so every lws callback (including
 *               the CLOSED ones during teardown) runs on this thread.
 *   publishers  sim_ws_publish_* and sim_ws_listen_key_closed run on the
 *               market or REST thread with sim->lock held (sim-int.h). They
 *               format the payload text once, push one item per stream into
 *               the outbound queue and wake the ws thread with
 *               lws_cancel_service. Their own state (previous book per symbol
 *               for depth diffs, the execution id counter) is serialised by
 *               that same sim->lock.
 *   The ws thread never takes sim->lock except inside sim_listen_key_valid,
 *   and never while holding the queue mutex (lock order: sim->lock, then
 *   qlock).
 *
 * Queues and what happens when they are full
 *   outbound    publishers -> ws thread: a ring of item pointers, at most
 *               WS_QUEUE_ITEMS_MAX items and WS_QUEUE_BYTES_MAX bytes of
 *               text, guarded by qlock. Full: the new item is dropped and
 *               counted in counters.ws_messages_dropped (market data may
 *               drop; a subscriber resyncs from REST like after a gap on
 *               Binance). Publishers wake the ws thread only when the ring
 *               goes from empty to non-empty; each wake drains everything.
 *   per client  ws thread -> socket: a ring of shared, refcounted frames,
 *               at most WS_CONN_QUEUE_BYTES_MAX bytes. Full: the client is a
 *               slow consumer: it is disconnected (close 1008) and the frame
 *               is counted as dropped. One frame is written per WRITEABLE
 *               callback, with LWS_PRE headroom.
 *   Publishers skip formatting a stream nobody is subscribed to: the ws
 *   thread keeps a counting filter of subscribed stream names (`interest`,
 *   atomics, false positives only cost formatting work).
 *
 * Faults (struct sim_faults, atomics, read without sim->lock)
 *   ws_drop_generation  checked on every wake and every tick (<= 100 ms):
 *                       a new value closes every open connection (1001).
 *   ws_stall            while true, stream data (market and user) is
 *                       discarded and counted as dropped; connections stay
 *                       open, control replies are still sent, server pings
 *                       still go out and client pings are still answered.
 *
 * Connections: /ws/<stream>[/<stream>…] (raw payloads; a name that is not a
 * stream keeps the connection open with no subscriptions, for ccxt.pro's
 * /ws/0 + SUBSCRIBE), /ws/<listenKey> (64 alphanumerics, checked with
 * sim_listen_key_valid; unknown keys are refused) and
 * /stream?streams=a/b/c (wrapped {"stream","data"}; invalid names or keys
 * are refused). A listen key's expiry (listenKeyExpired first) or deletion
 * closes every connection streaming it, combined ones included. At most WS_CONNS_MAX connections
 * and WS_STREAMS_MAX streams each; more than WS_RX_PER_SEC incoming messages (text frames and
 * unsolicited pongs) in any 1 s window closes the connection (1008), as on
 * Binance.
 *
 * Control protocol (BINANCE_PROTOCOL.md §4): success is {"result":…,"id":…};
 * an error is {"error":{"code":N,"msg":"…"},"id":…}, the shape the live
 * servers send (the docs' tables show only the inner object). id is echoed
 * as sent (int64, <= 36 alphanumerics, or null) and is null when it was
 * missing or invalid or the frame was not JSON. SUBSCRIBE/UNSUBSCRIBE check
 * every name before changing anything (code 2 "Invalid request: invalid
 * stream"); stream names are lower case.
 *
 * Keepalive: the server pings every SIMEX_WS_PING_MS (environment, default
 * 20000) and closes a connection whose last matching pong is older than
 * SIMEX_WS_PONG_TIMEOUT_MS (default 60000). Both are read once by
 * sim_ws_start (10 ms .. 1 day; anything else is logged and ignored). A pong
 * counts only if it echoes the payload of our latest ping; pongs that do
 * answer our pings are not counted against the 5 messages/s limit, so short
 * test intervals stay usable. lws answers client pings itself.
 *
 * Not simulated: timeUnit=MICROSECOND, the 24 h connection cap,
 * serverShutdown, the 300 connections / 5 min per IP limit, @ticker and
 * kline_1s. @depth and @depth@100ms (and the partial depths with or without
 * @100ms) all get every book change rather than a 1000/100 ms aggregate;
 * each diff carries U = previous u + 1, so the REST-snapshot sync procedure
 * works unchanged.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <libwebsockets.h>

#include "cq/buf.h"
#include "cq/log.h"
#include "cq/lws_log.h"
#include "sim/sim-int.h"
#include "sim/ws-int.h"

#define WS_SERVICE "simex"

#define WS_CONNS_MAX 256
#define WS_STREAMS_MAX 1024 /* per connection, like Binance */
#define WS_RX_PER_SEC 5     /* incoming messages per second */
#define WS_QUEUE_ITEMS_MAX 65536u
#define WS_QUEUE_BYTES_MAX (32u << 20)
#define WS_CONN_QUEUE_BYTES_MAX (4u << 20)
#define WS_CONN_QUEUE_MSGS_MAX 65536u
#define WS_RX_MAX_BYTES (128u << 10)    /* one control message */
#define WS_PAYLOAD_MAX_BYTES (1u << 20) /* one formatted event */
#define WS_STREAM_NAME_MAX 80           /* "btcusdt@depth20@1000ms", a listen key */
#define WS_INTEREST_SLOTS 4096u         /* power of two */
#define WS_PING_MS_DEFAULT 20000
#define WS_PONG_TIMEOUT_MS_DEFAULT 60000
#define WS_TICK_MS_MAX 100
#define WS_TICK_MS_MIN 10
#define WS_ENV_MS_MIN 10
#define WS_ENV_MS_MAX (24LL * 3600 * 1000)
#define WS_HEADER_BYTES_MAX 32768 /* a /stream URL with many streams */
#define WS_CLOSE_GRACE_S 2        /* force-close if no WRITEABLE comes */

#define WS_ZERO8 "0.00000000"

/* ---- small helpers --------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/* Every outgoing frame is built in a cq_buf bounded by the payload limit. */
#define WS_BUF_INIT {.max_bytes = WS_PAYLOAD_MAX_BYTES}

/* A JSON string, escaped. */
static void sb_jstr(struct cq_buf *b, const char *s)
{
    cq_buf_put(b, "\"", 1);
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            cq_buf_put(b, esc, 2);
        } else if (ch < 0x20) {
            cq_buf_printf(b, "\\u%04x", ch);
        } else {
            cq_buf_put(b, (const char *)&ch, 1);
        }
    }
    cq_buf_put(b, "\"", 1);
}

/* A decimal as a JSON string with Binance's 8 fractional digits. */
static void sb_dec(struct cq_buf *b, cq_dec d)
{
    char buf[CQ_DEC_STR_MAX];
    if (cq_dec_format_scale(d, 8, CQ_ROUND_HALF_EVEN, buf, sizeof buf) < 0) {
        cq_dec_format(d, buf, sizeof buf); /* out of range at 8 digits: print exactly */
    }
    cq_buf_put(b, "\"", 1);
    cq_buf_puts(b, buf);
    cq_buf_put(b, "\"", 1);
}

/* ---- stream names ---------------------------------------------------------- */

enum stream_class { STREAM_INVALID, STREAM_MARKET, STREAM_USER };

static const char *const kline_intervals[] = {
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
};

static bool is_listen_key(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= SIM_LISTEN_KEY_LEN || !isalnum((unsigned char)s[n])) {
            return false;
        }
    }
    return n == SIM_LISTEN_KEY_LEN;
}

/* Is `s` a stream we serve? canon gets the name the publishers use:
 * "btcusdt@depth@100ms" -> "btcusdt@depth", "btcusdt@depth5@1000ms" ->
 * "btcusdt@depth5"; a listen key is its own canonical name. */
static enum stream_class classify_stream(const char *s, char canon[WS_STREAM_NAME_MAX])
{
    size_t len = strlen(s);
    if (len == 0 || len >= WS_STREAM_NAME_MAX) {
        return STREAM_INVALID;
    }
    if (is_listen_key(s)) {
        memcpy(canon, s, len + 1);
        return STREAM_USER;
    }
    const char *at = strchr(s, '@');
    if (at == NULL) {
        return STREAM_INVALID;
    }
    size_t sym_len = (size_t)(at - s);
    if (sym_len == 0 || sym_len >= SIM_SYMBOL_LEN) {
        return STREAM_INVALID;
    }
    for (size_t i = 0; i < sym_len; i++) {
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]))) {
            return STREAM_INVALID;
        }
    }
    const char *suffix = at + 1;
    size_t keep = len; /* canonical length */
    if (strcmp(suffix, "trade") == 0 || strcmp(suffix, "aggTrade") == 0 ||
        strcmp(suffix, "bookTicker") == 0) {
        /* as is */
    } else if (strncmp(suffix, "kline_", 6) == 0) {
        bool ok = false;
        for (size_t i = 0; i < CQ_ARRAY_LEN(kline_intervals); i++) {
            if (strcmp(suffix + 6, kline_intervals[i]) == 0) {
                ok = true;
            }
        }
        if (!ok) {
            return STREAM_INVALID;
        }
    } else if (strncmp(suffix, "depth", 5) == 0) {
        const char *rest = suffix + 5;
        if (strncmp(rest, "20", 2) == 0 || strncmp(rest, "10", 2) == 0) {
            rest += 2;
        } else if (rest[0] == '5') {
            rest += 1;
        }
        if (strcmp(rest, "@100ms") == 0 || strcmp(rest, "@1000ms") == 0) {
            keep = (size_t)(rest - s);
        } else if (rest[0] != '\0') {
            return STREAM_INVALID;
        }
    } else {
        return STREAM_INVALID;
    }
    memcpy(canon, s, keep);
    canon[keep] = '\0';
    return STREAM_MARKET;
}

/* ---- the server's state ---------------------------------------------------- */

/* One outgoing text frame, shared by every recipient (ws thread only). */
struct ws_msg {
    uint32_t refs;
    bool data; /* stream data (stall discards it) vs a control reply */
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len bytes */
};

enum ws_item_kind { ITEM_MARKET, ITEM_USER, ITEM_KEY_CLOSED };

/* One published event, queued by a publisher for the ws thread. */
struct ws_item {
    enum ws_item_kind kind;
    bool expired;                    /* ITEM_KEY_CLOSED: send text, then close */
    uint32_t hash;                   /* name_hash(stream) */
    char stream[WS_STREAM_NAME_MAX]; /* canonical market stream, or the listen key */
    size_t len;
    char *text; /* owned raw payload; NULL for a plain close */
};

struct ws_sub {
    char name[WS_STREAM_NAME_MAX]; /* as the client wrote it (wrapping uses it) */
    char canon[WS_STREAM_NAME_MAX];
    uint32_t hash; /* name_hash(canon) */
    bool user;
};

/* Per connection: lws's per-session data, touched by the ws thread only. */
struct ws_conn {
    struct lws *wsi;             /* borrowed from lws */
    struct ws_conn *prev, *next; /* ws->conns */
    bool registered;             /* in ws->conns, counted */
    bool established;
    bool combined;            /* wrap payloads as {"stream","data"} */
    uint16_t close_status;    /* non-zero: close at the next WRITEABLE */
    const char *close_reason; /* static text */
    bool close_after_drain;   /* listenKeyExpired sent: close when empty */

    struct ws_sub *subs; /* owned */
    size_t n_subs, cap_subs;
    size_t n_user_subs;

    struct ws_msg **q; /* owned ring of frames (each holds a ref) */
    size_t q_cap, q_head, q_len, q_bytes;

    char *rx; /* owned, a control message being assembled */
    size_t rx_len;
    bool rx_overflow;

    int64_t rx_times[WS_RX_PER_SEC]; /* monotonic ms of the last messages */
    size_t rx_count;

    int64_t connected_ms, last_ping_ms, last_pong_ms; /* monotonic */
    bool want_ping;
    char ping_payload[32];
    size_t ping_len; /* 0: no ping outstanding */
    uint64_t ping_seq;
};

struct ws_book_state { /* publisher side, under sim->lock */
    char symbol[SIM_SYMBOL_LEN];
    uint64_t last_update_id;
    size_t n_bids, n_asks;
    struct sim_level bids[SIM_DEPTH_MAX];
    struct sim_level asks[SIM_DEPTH_MAX];
};

struct sim_ws {
    struct cq_sim *sim;      /* borrowed */
    struct lws_context *ctx; /* owned; destroyed on the ws thread */
    struct lws_vhost *vhost; /* owned by ctx */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop; /* sim_ws_stop stores (release), ws thread loads (acquire) */
    int64_t ping_ms, pong_timeout_ms, tick_ms;

    /* Publisher side, serialised by the caller's sim->lock. */
    struct ws_book_state *books; /* owned, SIM_SYMBOLS_MAX */
    size_t n_books;
    uint64_t next_exec_id;

    /* Outbound queue. */
    pthread_mutex_t qlock;
    struct ws_item **q; /* owned ring, WS_QUEUE_ITEMS_MAX */
    size_t q_head, q_len, q_bytes;
    bool q_closed; /* context going away: don't wake it */

    /* Subscribed-stream filter: written by the ws thread, read by publishers.
     * relaxed: a publisher racing a (un)subscribe may format one event too
     * many or too few, which a live subscription on Binance also sees. */
    _Atomic uint32_t interest[WS_INTEREST_SLOTS];
    _Atomic uint32_t user_conns; /* connections with a listen-key stream */
    /* Bytes waiting in the central queue and every connection's send queue
     * together (relaxed: a gauge read by the market thread for pacing). */
    _Atomic size_t backlog_bytes;

    /* ws thread only. */
    struct ws_conn *conns;
    size_t n_conns;
    struct ws_item **batch; /* owned, WS_QUEUE_ITEMS_MAX */
    uint64_t seen_drop_generation;
    lws_sorted_usec_list_t tick;
    struct cq_log_ratelimit slow_rl;
};

static struct sim_ws *ws_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void count_dropped(struct sim_ws *ws, uint64_t n)
{
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&ws->sim->counters.ws_messages_dropped, n, memory_order_relaxed);
}

static bool stalled(struct sim_ws *ws)
{
    /* relaxed: a fault flag polled per event; no data depends on it */
    return atomic_load_explicit(&ws->sim->faults.ws_stall, memory_order_relaxed);
}

/* ---- publishers: formatting and the outbound queue ------------------------- */

static bool interested(struct sim_ws *ws, const char *canon)
{
    uint32_t slot = name_hash(canon) & (WS_INTEREST_SLOTS - 1);
    return atomic_load_explicit(&ws->interest[slot], memory_order_relaxed) > 0;
}

bool sim_ws_has_subscribers(struct sim_ws *ws, const char *stream)
{
    return ws != NULL && stream != NULL && interested(ws, stream);
}

static bool user_interested(struct sim_ws *ws)
{
    return atomic_load_explicit(&ws->user_conns, memory_order_relaxed) > 0;
}

static void lower_symbol(const char *in, char out[SIM_SYMBOL_LEN])
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < SIM_SYMBOL_LEN; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[i] = '\0';
}

/* Takes b's text (on every path) into a new item. */
static struct ws_item *item_take(enum ws_item_kind kind, const char *stream, struct cq_buf *b)
{
    struct ws_item *it = calloc(1, sizeof *it);
    if (it == NULL || (b != NULL && (b->failed || b->p == NULL))) {
        free(it);
        if (b != NULL) {
            cq_buf_free(b);
        }
        return NULL;
    }
    it->kind = kind;
    cq_strlcpy(it->stream, stream, sizeof it->stream);
    it->hash = name_hash(it->stream);
    if (b != NULL) {
        it->text = cq_buf_take(b, &it->len);
    }
    return it;
}

static void item_free(struct ws_item *it)
{
    if (it != NULL) {
        free(it->text);
        free(it);
    }
}

/* Queue items in order (NULL entries are formatting failures: dropped and
 * counted). Wakes the ws thread if the queue was empty. */
static void queue_push(struct sim_ws *ws, struct ws_item **items, size_t n)
{
    uint64_t dropped = 0;
    bool wake = false;
    pthread_mutex_lock(&ws->qlock);
    bool was_empty = ws->q_len == 0;
    for (size_t i = 0; i < n; i++) {
        struct ws_item *it = items[i];
        if (it == NULL) {
            dropped++;
            continue;
        }
        if (ws->q_closed || ws->q_len >= WS_QUEUE_ITEMS_MAX ||
            ws->q_bytes + it->len > WS_QUEUE_BYTES_MAX) {
            item_free(it);
            dropped++;
            continue;
        }
        ws->q[(ws->q_head + ws->q_len) % WS_QUEUE_ITEMS_MAX] = it;
        ws->q_len++;
        ws->q_bytes += it->len;
        atomic_fetch_add_explicit(&ws->backlog_bytes, it->len, memory_order_relaxed);
        wake = true;
    }
    if (wake && was_empty && !ws->q_closed) {
        /* Under qlock so the ws thread cannot destroy the context meanwhile. */
        lws_cancel_service(ws->ctx);
    }
    pthread_mutex_unlock(&ws->qlock);
    if (dropped > 0) {
        count_dropped(ws, dropped);
    }
}

void sim_ws_publish_trade(struct sim_ws *ws, const struct sim_symbol *sym,
                          const struct sim_public_trade *t, int64_t event_ms)
{
    if (ws == NULL || sym == NULL || t == NULL) {
        return;
    }
    char lsym[SIM_SYMBOL_LEN];
    char name[WS_STREAM_NAME_MAX];
    struct ws_item *items[2];
    size_t n = 0;
    lower_symbol(sym->symbol, lsym);

    snprintf(name, sizeof name, "%s@trade", lsym);
    if (interested(ws, name)) {
        struct cq_buf b = WS_BUF_INIT;
        cq_buf_printf(&b, "{\"e\":\"trade\",\"E\":%" PRId64 ",\"s\":", event_ms);
        sb_jstr(&b, sym->symbol);
        cq_buf_printf(&b, ",\"t\":%" PRIu64 ",\"p\":", t->trade_id);
        sb_dec(&b, t->price);
        cq_buf_puts(&b, ",\"q\":");
        sb_dec(&b, t->qty);
        cq_buf_printf(&b, ",\"T\":%" PRId64 ",\"m\":%s,\"M\":true}", t->time_ms,
                  t->buyer_is_maker ? "true" : "false");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }
    snprintf(name, sizeof name, "%s@aggTrade", lsym);
    if (interested(ws, name)) {
        /* One trade per aggregate: a = f = l = the trade id. */
        struct cq_buf b = WS_BUF_INIT;
        cq_buf_printf(&b, "{\"e\":\"aggTrade\",\"E\":%" PRId64 ",\"s\":", event_ms);
        sb_jstr(&b, sym->symbol);
        cq_buf_printf(&b, ",\"a\":%" PRIu64 ",\"p\":", t->trade_id);
        sb_dec(&b, t->price);
        cq_buf_puts(&b, ",\"q\":");
        sb_dec(&b, t->qty);
        cq_buf_printf(&b, ",\"f\":%" PRIu64 ",\"l\":%" PRIu64 ",\"T\":%" PRId64 ",\"m\":%s,\"M\":true}",
                  t->trade_id, t->trade_id, t->time_ms, t->buyer_is_maker ? "true" : "false");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }
    if (n > 0) {
        queue_push(ws, items, n);
    }
}

static void sb_levels(struct cq_buf *b, const struct sim_level *lv, size_t n)
{
    cq_buf_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        cq_buf_puts(b, i == 0 ? "[" : ",[");
        sb_dec(b, lv[i].price);
        cq_buf_put(b, ",", 1);
        sb_dec(b, lv[i].qty);
        cq_buf_put(b, "]", 1);
    }
    cq_buf_put(b, "]", 1);
}

/* Levels that differ between two books of one side (both best first):
 * changed or new levels with their new quantity, vanished ones with 0. */
static void sb_diff_side(struct cq_buf *b, const struct sim_level *old, size_t n_old,
                         const struct sim_level *cur, size_t n_cur, bool bids)
{
    size_t i = 0, j = 0;
    bool first = true;
    cq_buf_put(b, "[", 1);
    while (i < n_old || j < n_cur) {
        int c;
        if (i >= n_old) {
            c = 1;
        } else if (j >= n_cur) {
            c = -1;
        } else {
            c = cq_dec_cmp(old[i].price, cur[j].price);
            if (bids) {
                c = -c; /* bids run high to low */
            }
        }
        const struct sim_level *emit = NULL;
        bool removed = false;
        if (c < 0) {
            emit = &old[i++];
            removed = true;
        } else if (c > 0) {
            emit = &cur[j++];
        } else {
            if (cq_dec_cmp(old[i].qty, cur[j].qty) != 0) {
                emit = &cur[j];
            }
            i++;
            j++;
        }
        if (emit != NULL) {
            cq_buf_puts(b, first ? "[" : ",[");
            first = false;
            sb_dec(b, emit->price);
            cq_buf_put(b, ",", 1);
            if (removed) {
                cq_buf_puts(b, "\"" WS_ZERO8 "\"");
            } else {
                sb_dec(b, emit->qty);
            }
            cq_buf_put(b, "]", 1);
        }
    }
    cq_buf_put(b, "]", 1);
}

static struct ws_book_state *book_state(struct sim_ws *ws, const char *symbol)
{
    for (size_t i = 0; i < ws->n_books; i++) {
        if (strcmp(ws->books[i].symbol, symbol) == 0) {
            return &ws->books[i];
        }
    }
    if (ws->n_books >= SIM_SYMBOLS_MAX) {
        return NULL;
    }
    struct ws_book_state *st = &ws->books[ws->n_books++];
    memset(st, 0, sizeof *st);
    cq_strlcpy(st->symbol, symbol, sizeof st->symbol);
    return st;
}

void sim_ws_publish_book(struct sim_ws *ws, const struct sim_symbol *sym,
                         const struct sim_book_view *book, uint64_t update_id, int64_t event_ms)
{
    if (ws == NULL || sym == NULL || book == NULL) {
        return;
    }
    char lsym[SIM_SYMBOL_LEN];
    char name[WS_STREAM_NAME_MAX];
    struct ws_item *items[5];
    size_t n = 0;
    size_t n_bids = book->n_bids < SIM_DEPTH_MAX ? book->n_bids : SIM_DEPTH_MAX;
    size_t n_asks = book->n_asks < SIM_DEPTH_MAX ? book->n_asks : SIM_DEPTH_MAX;
    lower_symbol(sym->symbol, lsym);

    snprintf(name, sizeof name, "%s@bookTicker", lsym);
    if (interested(ws, name)) {
        struct cq_buf b = WS_BUF_INIT;
        cq_dec zero = CQ_DEC_ZERO;
        cq_buf_printf(&b, "{\"u\":%" PRIu64 ",\"s\":", update_id);
        sb_jstr(&b, sym->symbol);
        cq_buf_puts(&b, ",\"b\":");
        sb_dec(&b, n_bids > 0 ? book->bids[0].price : zero);
        cq_buf_puts(&b, ",\"B\":");
        sb_dec(&b, n_bids > 0 ? book->bids[0].qty : zero);
        cq_buf_puts(&b, ",\"a\":");
        sb_dec(&b, n_asks > 0 ? book->asks[0].price : zero);
        cq_buf_puts(&b, ",\"A\":");
        sb_dec(&b, n_asks > 0 ? book->asks[0].qty : zero);
        cq_buf_puts(&b, "}");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }
    static const size_t partial_levels[] = {5, 10, 20};
    for (size_t k = 0; k < CQ_ARRAY_LEN(partial_levels); k++) {
        size_t lv = partial_levels[k];
        snprintf(name, sizeof name, "%s@depth%zu", lsym, lv);
        if (!interested(ws, name)) {
            continue;
        }
        struct cq_buf b = WS_BUF_INIT;
        cq_buf_printf(&b, "{\"lastUpdateId\":%" PRIu64 ",\"bids\":", update_id);
        sb_levels(&b, book->bids, n_bids < lv ? n_bids : lv);
        cq_buf_puts(&b, ",\"asks\":");
        sb_levels(&b, book->asks, n_asks < lv ? n_asks : lv);
        cq_buf_puts(&b, "}");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }

    /* The diff stream: always track the book so U chains from the last u
     * even while nobody listens (a new subscriber syncs against REST). */
    struct ws_book_state *st = book_state(ws, sym->symbol);
    snprintf(name, sizeof name, "%s@depth", lsym);
    if (st != NULL && interested(ws, name)) {
        struct cq_buf b = WS_BUF_INIT;
        uint64_t first = st->last_update_id != 0 ? st->last_update_id + 1 : update_id;
        if (first > update_id) {
            first = update_id;
        }
        cq_buf_printf(&b, "{\"e\":\"depthUpdate\",\"E\":%" PRId64 ",\"s\":", event_ms);
        sb_jstr(&b, sym->symbol);
        cq_buf_printf(&b, ",\"U\":%" PRIu64 ",\"u\":%" PRIu64 ",\"b\":", first, update_id);
        sb_diff_side(&b, st->bids, st->n_bids, book->bids, n_bids, true);
        cq_buf_puts(&b, ",\"a\":");
        sb_diff_side(&b, st->asks, st->n_asks, book->asks, n_asks, false);
        cq_buf_puts(&b, "}");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }
    if (st != NULL) {
        memcpy(st->bids, book->bids, n_bids * sizeof *st->bids);
        memcpy(st->asks, book->asks, n_asks * sizeof *st->asks);
        st->n_bids = n_bids;
        st->n_asks = n_asks;
        st->last_update_id = update_id;
    }
    if (n > 0) {
        queue_push(ws, items, n);
    }
}

void sim_ws_publish_kline(struct sim_ws *ws, const struct sim_symbol *sym, const char *interval,
                          const struct sim_kline *k, int64_t event_ms)
{
    if (ws == NULL || sym == NULL || interval == NULL || k == NULL) {
        return;
    }
    char lsym[SIM_SYMBOL_LEN];
    char name[WS_STREAM_NAME_MAX];
    lower_symbol(sym->symbol, lsym);
    snprintf(name, sizeof name, "%s@kline_%s", lsym, interval);
    if (!interested(ws, name)) {
        return;
    }
    /* No trade in the bar: Binance sends f = L = -1. */
    int64_t first = k->trades > 0 ? (int64_t)k->first_trade_id : -1;
    int64_t last = k->trades > 0 ? (int64_t)k->last_trade_id : -1;
    struct cq_buf b = WS_BUF_INIT;
    cq_buf_printf(&b, "{\"e\":\"kline\",\"E\":%" PRId64 ",\"s\":", event_ms);
    sb_jstr(&b, sym->symbol);
    cq_buf_printf(&b, ",\"k\":{\"t\":%" PRId64 ",\"T\":%" PRId64 ",\"s\":", k->open_ms, k->close_ms);
    sb_jstr(&b, sym->symbol);
    cq_buf_puts(&b, ",\"i\":");
    sb_jstr(&b, interval);
    cq_buf_printf(&b, ",\"f\":%" PRId64 ",\"L\":%" PRId64 ",\"o\":", first, last);
    sb_dec(&b, k->open);
    cq_buf_puts(&b, ",\"c\":");
    sb_dec(&b, k->close);
    cq_buf_puts(&b, ",\"h\":");
    sb_dec(&b, k->high);
    cq_buf_puts(&b, ",\"l\":");
    sb_dec(&b, k->low);
    cq_buf_puts(&b, ",\"v\":");
    sb_dec(&b, k->volume);
    cq_buf_printf(&b, ",\"n\":%" PRIu32 ",\"x\":%s,\"q\":", k->trades, k->closed ? "true" : "false");
    sb_dec(&b, k->quote_volume);
    cq_buf_puts(&b, ",\"V\":");
    sb_dec(&b, k->taker_buy_base);
    cq_buf_puts(&b, ",\"Q\":");
    sb_dec(&b, k->taker_buy_quote);
    cq_buf_puts(&b, ",\"B\":\"0\"}}");
    struct ws_item *it = item_take(ITEM_MARKET, name, &b);
    queue_push(ws, &it, 1);
}

void sim_ws_publish_execution(struct sim_ws *ws, const struct sim_symbol *sym,
                              const struct sim_exec_report *r)
{
    if (ws == NULL || sym == NULL || r == NULL || r->order == NULL) {
        return;
    }
    uint64_t exec_id = ++ws->next_exec_id;
    if (!user_interested(ws)) {
        return;
    }
    const struct sim_order *o = r->order;
    const struct sim_fill *f = r->exec_type == SIM_EXEC_TRADE ? r->fill : NULL;
    const char *client_id = o->client_id;
    if (r->exec_type == SIM_EXEC_CANCELED && r->cancel_client_id != NULL &&
        r->cancel_client_id[0] != '\0') {
        client_id = r->cancel_client_id; /* on a cancel, c is the cancel's own id */
    }
    const char *orig_id = r->orig_client_id != NULL ? r->orig_client_id : "";
    /* MARKET and LIMIT_MAKER carry no timeInForce; Binance reports GTC. */
    const char *tif = o->tif == SIM_TIF_NONE ? "GTC" : sim_tif_name(o->tif);
    cq_dec zero = CQ_DEC_ZERO;

    struct cq_buf b = WS_BUF_INIT;
    cq_buf_printf(&b, "{\"e\":\"executionReport\",\"E\":%" PRId64 ",\"s\":", r->event_ms);
    sb_jstr(&b, sym->symbol);
    cq_buf_puts(&b, ",\"c\":");
    sb_jstr(&b, client_id);
    cq_buf_puts(&b, ",\"S\":");
    sb_jstr(&b, sim_side_name(o->side));
    cq_buf_puts(&b, ",\"o\":");
    sb_jstr(&b, sim_order_type_name(o->type));
    cq_buf_puts(&b, ",\"f\":");
    sb_jstr(&b, tif);
    cq_buf_puts(&b, ",\"q\":");
    sb_dec(&b, o->orig_qty);
    cq_buf_puts(&b, ",\"p\":");
    sb_dec(&b, o->price);
    cq_buf_puts(&b, ",\"P\":\"" WS_ZERO8 "\",\"F\":\"" WS_ZERO8 "\",\"g\":-1,\"C\":");
    sb_jstr(&b, orig_id);
    cq_buf_puts(&b, ",\"x\":");
    sb_jstr(&b, sim_exec_type_name(r->exec_type));
    cq_buf_puts(&b, ",\"X\":");
    sb_jstr(&b, sim_order_status_name(o->status));
    cq_buf_printf(&b, ",\"r\":\"NONE\",\"i\":%" PRIu64 ",\"l\":", o->order_id);
    sb_dec(&b, f != NULL ? f->qty : zero);
    cq_buf_puts(&b, ",\"z\":");
    sb_dec(&b, o->executed_qty);
    cq_buf_puts(&b, ",\"L\":");
    sb_dec(&b, f != NULL ? f->price : zero);
    cq_buf_puts(&b, ",\"n\":");
    if (f != NULL) {
        sb_dec(&b, f->commission);
        cq_buf_puts(&b, ",\"N\":");
        sb_jstr(&b, f->commission_asset);
    } else {
        cq_buf_puts(&b, "\"0\",\"N\":null");
    }
    cq_buf_printf(&b,
              ",\"T\":%" PRId64 ",\"t\":%" PRId64 ",\"I\":%" PRIu64
              ",\"w\":%s,\"m\":%s,\"M\":false,\"O\":%" PRId64 ",\"Z\":",
              r->event_ms, f != NULL ? (int64_t)f->trade_id : (int64_t)-1, exec_id,
              o->is_working ? "true" : "false", (f != NULL && f->maker) ? "true" : "false",
              o->time_ms);
    sb_dec(&b, o->cum_quote_qty);
    cq_buf_puts(&b, ",\"Y\":");
    sb_dec(&b, f != NULL ? f->quote_qty : zero);
    cq_buf_puts(&b, ",\"Q\":");
    sb_dec(&b, o->orig_quote_qty);
    if (o->working_ms >= 0) { /* only once the order has been on the book */
        cq_buf_printf(&b, ",\"W\":%" PRId64, o->working_ms);
    }
    cq_buf_puts(&b, ",\"V\":\"NONE\"}"); /* the only STP mode the simulator offers */
    struct ws_item *it = item_take(ITEM_USER, "", &b);
    queue_push(ws, &it, 1);
}

void sim_ws_publish_account(struct sim_ws *ws, const struct sim_balance *changed, size_t n,
                            int64_t event_ms)
{
    if (ws == NULL || (changed == NULL && n > 0) || !user_interested(ws)) {
        return;
    }
    struct cq_buf b = WS_BUF_INIT;
    cq_buf_printf(&b, "{\"e\":\"outboundAccountPosition\",\"E\":%" PRId64 ",\"u\":%" PRId64 ",\"B\":[",
              event_ms, event_ms);
    for (size_t i = 0; i < n; i++) {
        cq_buf_puts(&b, i == 0 ? "{\"a\":" : ",{\"a\":");
        sb_jstr(&b, changed[i].asset);
        cq_buf_puts(&b, ",\"f\":");
        sb_dec(&b, changed[i].free);
        cq_buf_puts(&b, ",\"l\":");
        sb_dec(&b, changed[i].locked);
        cq_buf_puts(&b, "}");
    }
    cq_buf_puts(&b, "]}");
    struct ws_item *it = item_take(ITEM_USER, "", &b);
    queue_push(ws, &it, 1);
}

void sim_ws_listen_key_closed(struct sim_ws *ws, const char *key, bool expired, int64_t event_ms)
{
    if (ws == NULL || key == NULL) {
        return;
    }
    struct ws_item *it;
    if (expired) {
        struct cq_buf b = WS_BUF_INIT;
        cq_buf_printf(&b, "{\"e\":\"listenKeyExpired\",\"E\":%" PRId64 ",\"listenKey\":", event_ms);
        sb_jstr(&b, key);
        cq_buf_puts(&b, "}");
        it = item_take(ITEM_KEY_CLOSED, key, &b);
    } else {
        it = item_take(ITEM_KEY_CLOSED, key, NULL);
    }
    if (it != NULL) {
        it->expired = expired;
    }
    queue_push(ws, &it, 1);
}

/* ---- ws thread: frames and per-connection queues ---------------------------- */

static struct ws_msg *msg_new(bool data, const char *a, size_t a_len, const char *body,
                              size_t body_len, const char *z, size_t z_len)
{
    size_t len = a_len + body_len + z_len;
    struct ws_msg *m = malloc(sizeof *m + LWS_PRE + len + 1);
    if (m == NULL) {
        return NULL;
    }
    m->refs = 1;
    m->data = data;
    m->len = len;
    unsigned char *p = m->buf + LWS_PRE;
    if (a_len > 0) {
        memcpy(p, a, a_len);
    }
    if (body_len > 0) {
        memcpy(p + a_len, body, body_len);
    }
    if (z_len > 0) {
        memcpy(p + a_len + body_len, z, z_len);
    }
    p[len] = '\0';
    return m;
}

static void msg_unref(struct ws_msg *m)
{
    if (m != NULL && --m->refs == 0) {
        free(m);
    }
}

static void conn_close(struct ws_conn *c, uint16_t status, const char *reason)
{
    if (c->close_status != 0) {
        return;
    }
    c->close_status = status;
    c->close_reason = reason;
    if (c->wsi != NULL && c->established) {
        lws_callback_on_writable(c->wsi);
        /* A peer that stopped reading never gets WRITEABLE: force it. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, WS_CLOSE_GRACE_S);
    }
}

/* Append a frame to the client's queue (takes a new reference). */
static void conn_enqueue(struct sim_ws *ws, struct ws_conn *c, struct ws_msg *m)
{
    if (m == NULL) {
        count_dropped(ws, 1);
        return;
    }
    if (c->close_status != 0) {
        return;
    }
    if (m->data && stalled(ws)) {
        count_dropped(ws, 1);
        return;
    }
    if (c->q_len >= WS_CONN_QUEUE_MSGS_MAX || c->q_bytes + m->len > WS_CONN_QUEUE_BYTES_MAX) {
        count_dropped(ws, 1);
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&ws->slow_rl, mono_ms(), &suppressed)) {
            cq_log_warn(WS_SERVICE, "ws_slow_consumer",
                        json_pack("{s:I,s:I,s:I}", "queued_bytes", (json_int_t)c->q_bytes,
                                  "queued_messages", (json_int_t)c->q_len, "suppressed",
                                  (json_int_t)suppressed),
                        "WS client too slow: send queue full, disconnecting");
        }
        conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer");
        return;
    }
    if (c->q_len == c->q_cap) {
        size_t cap = c->q_cap != 0 ? c->q_cap * 2 : 16;
        struct ws_msg **q = malloc(cap * sizeof *q);
        if (q == NULL) {
            count_dropped(ws, 1);
            return;
        }
        for (size_t i = 0; i < c->q_len; i++) {
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        }
        free(c->q);
        c->q = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    m->refs++;
    c->q[(c->q_head + c->q_len) % c->q_cap] = m;
    c->q_len++;
    c->q_bytes += m->len;
    atomic_fetch_add_explicit(&ws->backlog_bytes, m->len, memory_order_relaxed);
    if (c->established) {
        lws_callback_on_writable(c->wsi);
    }
}

static struct ws_msg *conn_pop(struct sim_ws *ws, struct ws_conn *c)
{
    if (c->q_len == 0) {
        return NULL;
    }
    struct ws_msg *m = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    c->q_bytes -= m->len;
    atomic_fetch_sub_explicit(&ws->backlog_bytes, m->len, memory_order_relaxed);
    return m;
}

/* A control reply (not stream data: sent even while stalled). */
static void conn_reply(struct sim_ws *ws, struct ws_conn *c, json_t *reply)
{
    char *text = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
    if (text == NULL) {
        count_dropped(ws, 1);
        return;
    }
    struct ws_msg *m = msg_new(false, NULL, 0, text, strlen(text), NULL, 0);
    free(text);
    conn_enqueue(ws, c, m);
    msg_unref(m);
}

/* ---- ws thread: subscriptions --------------------------------------------- */

static void interest_add(struct sim_ws *ws, const struct ws_sub *s, int delta)
{
    uint32_t slot = s->hash & (WS_INTEREST_SLOTS - 1);
    /* relaxed: see the field's comment */
    if (delta > 0) {
        atomic_fetch_add_explicit(&ws->interest[slot], 1, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&ws->interest[slot], 1, memory_order_relaxed);
    }
}

static ssize_t conn_find_sub(const struct ws_conn *c, const char *name)
{
    for (size_t i = 0; i < c->n_subs; i++) {
        if (strcmp(c->subs[i].name, name) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static void conn_user_count(struct sim_ws *ws, struct ws_conn *c, int delta)
{
    if (!c->registered) {
        return;
    }
    if (delta > 0 && c->n_user_subs == 1) {
        atomic_fetch_add_explicit(&ws->user_conns, 1, memory_order_relaxed);
    } else if (delta < 0 && c->n_user_subs == 0) {
        atomic_fetch_sub_explicit(&ws->user_conns, 1, memory_order_relaxed);
    }
}

/* Subscribe (a no-op for a stream already there). -CQ_EFULL past the limit. */
static int conn_add_sub(struct sim_ws *ws, struct ws_conn *c, const char *name, const char *canon,
                        bool user)
{
    if (conn_find_sub(c, name) >= 0) {
        return 0;
    }
    if (c->n_subs >= WS_STREAMS_MAX) {
        return -CQ_EFULL;
    }
    if (c->n_subs == c->cap_subs) {
        size_t cap = c->cap_subs != 0 ? c->cap_subs * 2 : 4;
        struct ws_sub *subs = realloc(c->subs, cap * sizeof *subs);
        if (subs == NULL) {
            return -CQ_ENOMEM;
        }
        c->subs = subs;
        c->cap_subs = cap;
    }
    struct ws_sub *s = &c->subs[c->n_subs++];
    cq_strlcpy(s->name, name, sizeof s->name);
    cq_strlcpy(s->canon, canon, sizeof s->canon);
    s->hash = name_hash(s->canon);
    s->user = user;
    if (c->registered) {
        interest_add(ws, s, +1);
    }
    if (user) {
        c->n_user_subs++;
        conn_user_count(ws, c, +1);
    }
    return 0;
}

static void conn_remove_sub(struct sim_ws *ws, struct ws_conn *c, size_t i)
{
    struct ws_sub *s = &c->subs[i];
    if (c->registered) {
        interest_add(ws, s, -1);
    }
    if (s->user) {
        c->n_user_subs--;
        conn_user_count(ws, c, -1);
    }
    memmove(&c->subs[i], &c->subs[i + 1], (c->n_subs - i - 1) * sizeof *s);
    c->n_subs--;
}

static void conn_register(struct sim_ws *ws, struct ws_conn *c, struct lws *wsi)
{
    c->wsi = wsi;
    c->registered = true;
    c->prev = NULL;
    c->next = ws->conns;
    if (ws->conns != NULL) {
        ws->conns->prev = c;
    }
    ws->conns = c;
    ws->n_conns++;
    for (size_t i = 0; i < c->n_subs; i++) {
        interest_add(ws, &c->subs[i], +1);
    }
    if (c->n_user_subs > 0) {
        atomic_fetch_add_explicit(&ws->user_conns, 1, memory_order_relaxed);
    }
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&ws->sim->counters.ws_connections, 1, memory_order_relaxed);
}

/* Undo everything a connection holds; safe to call twice. */
static void conn_release(struct sim_ws *ws, struct ws_conn *c)
{
    if (c->registered) {
        for (size_t i = 0; i < c->n_subs; i++) {
            interest_add(ws, &c->subs[i], -1);
        }
        if (c->n_user_subs > 0) {
            atomic_fetch_sub_explicit(&ws->user_conns, 1, memory_order_relaxed);
        }
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            ws->conns = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        ws->n_conns--;
        c->registered = false;
        atomic_fetch_sub_explicit(&ws->sim->counters.ws_connections, 1, memory_order_relaxed);
    }
    struct ws_msg *m;
    while ((m = conn_pop(ws, c)) != NULL) {
        msg_unref(m);
    }
    free(c->q);
    c->q = NULL;
    c->q_cap = c->q_len = c->q_head = c->q_bytes = 0;
    free(c->subs);
    c->subs = NULL;
    c->n_subs = c->cap_subs = c->n_user_subs = 0;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = 0;
}

/* ---- ws thread: delivery --------------------------------------------------- */

/* Frames built for one item: the raw payload and the latest wrapping. */
struct item_frames {
    struct ws_msg *raw;
    struct ws_msg *wrapped;
    char wrapped_name[WS_STREAM_NAME_MAX];
};

static struct ws_msg *frame_for(struct item_frames *fr, const struct ws_item *it, bool combined,
                                const char *name)
{
    if (!combined) {
        if (fr->raw == NULL) {
            fr->raw = msg_new(true, NULL, 0, it->text, it->len, NULL, 0);
        }
        return fr->raw;
    }
    if (fr->wrapped == NULL || strcmp(fr->wrapped_name, name) != 0) {
        char head[WS_STREAM_NAME_MAX + 32];
        int n = snprintf(head, sizeof head, "{\"stream\":\"%s\",\"data\":", name);
        msg_unref(fr->wrapped);
        fr->wrapped = msg_new(true, head, (size_t)n, it->text, it->len, "}", 1);
        cq_strlcpy(fr->wrapped_name, name, sizeof fr->wrapped_name);
    }
    return fr->wrapped;
}

static void deliver_item(struct sim_ws *ws, const struct ws_item *it)
{
    struct item_frames fr = {0};
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (c->close_status != 0) {
            continue;
        }
        for (size_t i = 0; i < c->n_subs; i++) {
            const struct ws_sub *s = &c->subs[i];
            if (it->kind == ITEM_USER) {
                if (s->user) {
                    conn_enqueue(ws, c, frame_for(&fr, it, c->combined, s->name));
                }
            } else if (s->hash == it->hash && strcmp(s->canon, it->stream) == 0) {
                if (it->kind == ITEM_MARKET) {
                    conn_enqueue(ws, c, frame_for(&fr, it, c->combined, s->name));
                } else if (it->expired && it->text != NULL) {
                    conn_enqueue(ws, c, frame_for(&fr, it, c->combined, s->name));
                    c->close_after_drain = true;
                    if (c->established) {
                        lws_callback_on_writable(c->wsi);
                    }
                    break;
                } else {
                    conn_close(c, LWS_CLOSE_STATUS_NORMAL, "listen key closed");
                    break;
                }
            }
        }
    }
    msg_unref(fr.raw);
    msg_unref(fr.wrapped);
}

static void check_drop_fault(struct sim_ws *ws)
{
    /* acquire: pairs with nothing in particular; the generation is the data */
    uint64_t gen = atomic_load_explicit(&ws->sim->faults.ws_drop_generation, memory_order_acquire);
    if (gen == ws->seen_drop_generation) {
        return;
    }
    ws->seen_drop_generation = gen;
    size_t n = 0;
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "simex fault: drop");
        n++;
    }
    cq_log_info(WS_SERVICE, "ws_fault_drop", json_pack("{s:I}", "connections", (json_int_t)n),
                "WS drop fault: closing every connection");
}

static void drain_queue(struct sim_ws *ws)
{
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&ws->qlock);
        while (ws->q_len > 0) {
            ws->batch[n++] = ws->q[ws->q_head];
            ws->q_head = (ws->q_head + 1) % WS_QUEUE_ITEMS_MAX;
            ws->q_len--;
        }
        atomic_fetch_sub_explicit(&ws->backlog_bytes, ws->q_bytes, memory_order_relaxed);
        ws->q_bytes = 0;
        pthread_mutex_unlock(&ws->qlock);
        if (n == 0) {
            return;
        }
        for (size_t i = 0; i < n; i++) {
            deliver_item(ws, ws->batch[i]);
            item_free(ws->batch[i]);
        }
    }
}

/* ---- ws thread: keepalive tick --------------------------------------------- */

static void tick_cb(lws_sorted_usec_list_t *sul)
{
    struct sim_ws *ws = lws_container_of(sul, struct sim_ws, tick);
    int64_t now = mono_ms();
    check_drop_fault(ws);
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (!c->established || c->close_status != 0) {
            continue;
        }
        if (now - c->last_pong_ms > ws->pong_timeout_ms) {
            cq_log_info(WS_SERVICE, "ws_pong_timeout",
                        json_pack("{s:I}", "since_pong_ms", (json_int_t)(now - c->last_pong_ms)),
                        "WS client did not answer pings: closing");
            conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "pong timeout");
            continue;
        }
        if (now - c->last_ping_ms >= ws->ping_ms) {
            c->last_ping_ms = now;
            c->want_ping = true;
            lws_callback_on_writable(c->wsi);
        }
    }
    lws_sul_schedule(ws->ctx, 0, &ws->tick, tick_cb, ws->tick_ms * LWS_US_PER_MS);
}

/* ---- ws thread: the control protocol ---------------------------------------- */

static json_t *reply_result(json_t *result, json_t *id)
{
    json_t *r = json_object();
    json_object_set_new(r, "result", result != NULL ? result : json_null());
    json_object_set(r, "id", id != NULL ? id : json_null());
    return r;
}

static json_t *reply_error(int code, const char *msg, json_t *id)
{
    json_t *r = json_object();
    json_object_set_new(r, "error", json_pack("{s:i,s:s}", "code", code, "msg", msg));
    json_object_set(r, "id", id != NULL ? id : json_null());
    return r;
}

static bool id_ok(const json_t *id)
{
    if (json_is_null(id) || json_is_integer(id)) {
        return true;
    }
    if (!json_is_string(id)) {
        return false;
    }
    const char *s = json_string_value(id);
    size_t n = json_string_length(id);
    if (n > 36) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

#define MSG_BAD_ID "Invalid request: request ID must be an unsigned integer"
#define MSG_TOO_MANY "Invalid request: too many parameters"
#define MSG_PROP_NAME "Invalid request: property name must be a string"
#define MSG_BAD_STREAM "Invalid request: invalid stream"

/* Validate every name of a SUBSCRIBE/UNSUBSCRIBE first (all or nothing).
 * Returns NULL or the error message. */
static const char *check_stream_params(struct sim_ws *ws, const json_t *params, bool subscribe)
{
    if (params == NULL) {
        return "Invalid request: missing field `params`";
    }
    if (!json_is_array(params)) {
        return "Invalid request: invalid type: params must be an array of strings";
    }
    size_t i;
    const json_t *v;
    json_array_foreach(params, i, v)
    {
        char canon[WS_STREAM_NAME_MAX];
        if (!json_is_string(v)) {
            return MSG_BAD_STREAM;
        }
        enum stream_class cls = classify_stream(json_string_value(v), canon);
        if (cls == STREAM_INVALID) {
            return MSG_BAD_STREAM;
        }
        if (cls == STREAM_USER && subscribe && !sim_listen_key_valid(ws->sim, canon)) {
            return MSG_BAD_STREAM;
        }
    }
    return NULL;
}

static json_t *do_subscribe(struct sim_ws *ws, struct ws_conn *c, const json_t *params, json_t *id)
{
    const char *err = check_stream_params(ws, params, true);
    if (err != NULL) {
        return reply_error(2, err, id);
    }
    size_t fresh = 0, i;
    const json_t *v;
    json_array_foreach(params, i, v)
    {
        if (conn_find_sub(c, json_string_value(v)) < 0) {
            fresh++;
        }
    }
    if (c->n_subs + fresh > WS_STREAMS_MAX) {
        return reply_error(2, "Invalid request: too many streams (at most 1024 per connection)",
                           id);
    }
    json_array_foreach(params, i, v)
    {
        char canon[WS_STREAM_NAME_MAX];
        const char *name = json_string_value(v);
        enum stream_class cls = classify_stream(name, canon);
        if (conn_add_sub(ws, c, name, canon, cls == STREAM_USER) < 0) {
            return reply_error(2, "Invalid request: out of memory", id);
        }
    }
    return reply_result(NULL, id);
}

static json_t *do_unsubscribe(struct sim_ws *ws, struct ws_conn *c, const json_t *params,
                              json_t *id)
{
    const char *err = check_stream_params(ws, params, false);
    if (err != NULL) {
        return reply_error(2, err, id);
    }
    size_t i;
    const json_t *v;
    json_array_foreach(params, i, v)
    {
        ssize_t at = conn_find_sub(c, json_string_value(v));
        if (at >= 0) {
            conn_remove_sub(ws, c, (size_t)at);
        }
    }
    return reply_result(NULL, id);
}

static void handle_control(struct sim_ws *ws, struct ws_conn *c, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(text, len, 0, &jerr);
    json_t *reply;
    if (req == NULL) {
        char msg[256];
        snprintf(msg, sizeof msg, "Invalid JSON: %s at line %d column %d", jerr.text, jerr.line,
                 jerr.column);
        conn_reply(ws, c, reply_error(3, msg, NULL));
        return;
    }
    if (!json_is_object(req)) {
        conn_reply(ws, c, reply_error(2, "Invalid request: expected a JSON object", NULL));
        json_decref(req);
        return;
    }
    json_t *method = json_object_get(req, "method");
    json_t *id = json_object_get(req, "id");
    json_t *params = json_object_get(req, "params");
    const char *m = json_is_string(method) ? json_string_value(method) : NULL;
    if (method == NULL) {
        reply = reply_error(2, "Invalid request: missing field `method`",
                            id != NULL && id_ok(id) ? id : NULL);
    } else if (id == NULL || !id_ok(id)) {
        reply = reply_error(2, MSG_BAD_ID, NULL);
    } else if (m != NULL && strcmp(m, "SUBSCRIBE") == 0) {
        reply = do_subscribe(ws, c, params, id);
    } else if (m != NULL && strcmp(m, "UNSUBSCRIBE") == 0) {
        reply = do_unsubscribe(ws, c, params, id);
    } else if (m != NULL && strcmp(m, "LIST_SUBSCRIPTIONS") == 0) {
        if (params != NULL && !(json_is_array(params) && json_array_size(params) == 0)) {
            reply = reply_error(2, MSG_TOO_MANY, id);
        } else {
            json_t *list = json_array();
            for (size_t i = 0; i < c->n_subs; i++) {
                json_array_append_new(list, json_string(c->subs[i].name));
            }
            reply = reply_result(list, id);
        }
    } else if (m != NULL && (strcmp(m, "SET_PROPERTY") == 0 || strcmp(m, "GET_PROPERTY") == 0)) {
        bool set = m[0] == 'S';
        size_t want = set ? 2 : 1;
        json_t *name = json_is_array(params) ? json_array_get(params, 0) : NULL;
        if (json_is_array(params) && json_array_size(params) > want) {
            reply = reply_error(2, MSG_TOO_MANY, id);
        } else if (!json_is_string(name)) {
            reply = reply_error(2, MSG_PROP_NAME, id);
        } else if (strcmp(json_string_value(name), "combined") != 0) {
            reply = reply_error(0, "Unknown property", id);
        } else if (!set) {
            reply = reply_result(json_boolean(c->combined), id);
        } else {
            json_t *value = json_array_get(params, 1);
            if (!json_is_boolean(value)) {
                reply = reply_error(1, "Invalid value type: expected Boolean", id);
            } else {
                c->combined = json_is_true(value);
                reply = reply_result(NULL, id);
            }
        }
    } else {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "Invalid request: unknown variant `%.64s`, expected one of `SUBSCRIBE`, "
                 "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                 m != NULL ? m : "(not a string)");
        reply = reply_error(2, msg, id);
    }
    conn_reply(ws, c, reply);
    json_decref(req);
}

/* ---- ws thread: connection setup ------------------------------------------- */

static void url_decode_inplace(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], '\0'};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Parse the request path into the connection's subscriptions. 0, or -1 to
 * refuse the handshake (reason logged). */
static int conn_setup(struct sim_ws *ws, struct ws_conn *c, struct lws *wsi)
{
    int path_len = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI);
    if (path_len <= 0 || path_len >= WS_HEADER_BYTES_MAX) {
        return -1;
    }
    char *path = malloc((size_t)path_len + 1);
    char *streams = NULL;
    int rc = -1;
    const char *why = "bad path";
    if (path == NULL || lws_hdr_copy(wsi, path, path_len + 1, WSI_TOKEN_GET_URI) < 0) {
        goto out;
    }
    url_decode_inplace(path);

    bool combined;
    const char *list;
    char sep = '/';
    if (strcmp(path, "/ws") == 0 || strncmp(path, "/ws/", 4) == 0) {
        combined = false;
        list = path[3] == '/' ? path + 4 : "";
    } else if (strcmp(path, "/stream") == 0 || strcmp(path, "/stream/") == 0) {
        combined = true;
        streams = malloc(WS_HEADER_BYTES_MAX);
        if (streams == NULL) {
            goto out;
        }
        const char *v = lws_get_urlarg_by_name(wsi, "streams=", streams, WS_HEADER_BYTES_MAX);
        list = v != NULL ? v : "";
        url_decode_inplace((char *)list);
    } else {
        why = "unknown path";
        goto out;
    }
    c->combined = combined;

    /* Walk "a/b/c". */
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, sep);
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char name[WS_STREAM_NAME_MAX];
        char canon[WS_STREAM_NAME_MAX];
        if (n > 0) {
            enum stream_class cls = STREAM_INVALID;
            if (n < sizeof name) {
                memcpy(name, p, n);
                name[n] = '\0';
                cls = classify_stream(name, canon);
            }
            if (cls == STREAM_USER && !sim_listen_key_valid(ws->sim, canon)) {
                why = "unknown listen key";
                goto out;
            }
            if (cls == STREAM_INVALID && combined) {
                why = "invalid stream name";
                goto out;
            }
            /* /ws/<anything else>: stays open without that subscription */
            if (cls != STREAM_INVALID) {
                int add = conn_add_sub(ws, c, name, canon, cls == STREAM_USER);
                if (add < 0) {
                    why = add == -CQ_EFULL ? "too many streams" : "out of memory";
                    goto out;
                }
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    rc = 0;
out:
    if (rc < 0) {
        cq_log_info(WS_SERVICE, "ws_refused",
                    json_pack("{s:s,s:s}", "reason", why, "path", path != NULL ? path : ""),
                    "WS connection refused: %s", why);
    }
    free(path);
    free(streams);
    return rc;
}

/* A complete incoming message or an unsolicited pong: false when the
 * connection went over WS_RX_PER_SEC in the last second. */
static bool rx_rate_ok(struct ws_conn *c, int64_t now)
{
    size_t slot = c->rx_count % WS_RX_PER_SEC;
    if (c->rx_count >= WS_RX_PER_SEC && now - c->rx_times[slot] < 1000) {
        return false;
    }
    c->rx_times[slot] = now;
    c->rx_count++;
    return true;
}

static int on_writeable(struct sim_ws *ws, struct ws_conn *c, struct lws *wsi)
{
    if (c->close_status != 0) {
        const char *r = c->close_reason != NULL ? c->close_reason : "";
        lws_close_reason(wsi, (enum lws_close_status)c->close_status, (unsigned char *)r,
                         strlen(r));
        return -1;
    }
    if (c->want_ping) {
        unsigned char buf[LWS_PRE + 32];
        c->want_ping = false;
        int n = snprintf(c->ping_payload, sizeof c->ping_payload, "%" PRIu64 "-%" PRId64,
                         ++c->ping_seq, c->last_ping_ms);
        c->ping_len = (size_t)n;
        memcpy(buf + LWS_PRE, c->ping_payload, c->ping_len);
        if (lws_write(wsi, buf + LWS_PRE, c->ping_len, LWS_WRITE_PING) < 0) {
            return -1;
        }
        if (c->q_len > 0 || c->close_after_drain) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    struct ws_msg *m;
    while ((m = conn_pop(ws, c)) != NULL) {
        if (m->data && stalled(ws)) {
            count_dropped(ws, 1);
            msg_unref(m);
            continue;
        }
        int n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        msg_unref(m);
        if (n < 0) {
            return -1;
        }
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&ws->sim->counters.ws_messages_sent, 1, memory_order_relaxed);
        break;
    }
    if (c->q_len > 0) {
        lws_callback_on_writable(wsi);
    } else if (c->close_after_drain) {
        conn_close(c, LWS_CLOSE_STATUS_NORMAL, "listen key expired");
    }
    return 0;
}

static int on_receive(struct sim_ws *ws, struct ws_conn *c, struct lws *wsi, const void *in,
                      size_t len)
{
    if (!c->rx_overflow) {
        if (c->rx_len + len > WS_RX_MAX_BYTES) {
            c->rx_overflow = true;
        } else {
            char *rx = realloc(c->rx, c->rx_len + len + 1);
            if (rx == NULL) {
                return -1;
            }
            c->rx = rx;
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += len;
            c->rx[c->rx_len] = '\0';
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) {
        return 0;
    }
    bool overflow = c->rx_overflow;
    c->rx_overflow = false;
    if (!rx_rate_ok(c, mono_ms())) {
        cq_log_info(WS_SERVICE, "ws_rate_limited", NULL,
                    "WS client sent more than %d messages in 1 s: closing", WS_RX_PER_SEC);
        static const char why[] = "Too many messages";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why,
                         sizeof why - 1);
        return -1;
    }
    if (overflow) {
        static const char why[] = "Message too big";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
                         sizeof why - 1);
        return -1;
    }
    if (c->close_status == 0) {
        handle_control(ws, c, c->rx != NULL ? c->rx : "", c->rx_len);
    }
    c->rx_len = 0;
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct sim_ws *ws = ws_of(wsi);
    struct ws_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (ws != NULL) {
            check_drop_fault(ws);
            drain_queue(ws);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        /* WebSocket only. */
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return -1;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (c == NULL) {
            return 1;
        }
        memset(c, 0, sizeof *c);
        if (ws->n_conns >= WS_CONNS_MAX) {
            cq_log_warn(WS_SERVICE, "ws_refused",
                        json_pack("{s:s,s:I}", "reason", "too many connections", "limit",
                                  (json_int_t)WS_CONNS_MAX),
                        "WS connection refused: too many connections");
            return 1;
        }
        if (conn_setup(ws, c, wsi) < 0) {
            conn_release(ws, c);
            return 1;
        }
        /* Registered before the 101 goes out, so an event published once the
         * client sees the handshake is delivered. */
        conn_register(ws, c, wsi);
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        if (c == NULL || !c->registered) {
            return -1;
        }
        int64_t now = mono_ms();
        c->established = true;
        c->connected_ms = c->last_ping_ms = c->last_pong_ms = now;
        cq_log_debug(
            WS_SERVICE, "ws_connected",
            json_pack("{s:I,s:b}", "streams", (json_int_t)c->n_subs, "combined", c->combined),
            "WS client connected");
        if (c->close_status != 0) {
            /* closed before the handshake finished (fault, key deleted) */
            lws_callback_on_writable(wsi);
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, WS_CLOSE_GRACE_S);
        } else if (c->q_len > 0) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c == NULL || !c->registered) {
            return -1;
        }
        return on_writeable(ws, c, wsi);
    case LWS_CALLBACK_RECEIVE:
        if (c == NULL || !c->registered) {
            return -1;
        }
        return on_receive(ws, c, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c == NULL || !c->registered) {
            return 0;
        }
        if (c->ping_len > 0 && len == c->ping_len && memcmp(in, c->ping_payload, len) == 0) {
            c->last_pong_ms = mono_ms();
            c->ping_len = 0;
            return 0;
        }
        /* Unsolicited: allowed, counts against the rate, keeps nothing alive. */
        if (!rx_rate_ok(c, mono_ms())) {
            static const char why[] = "Too many messages";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why,
                             sizeof why - 1);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (c != NULL && ws != NULL && (c->registered || c->q != NULL || c->subs != NULL)) {
            conn_release(ws, c);
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols ws_protocols[] = {
    {"binance", ws_callback, sizeof(struct ws_conn), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- lifecycle ------------------------------------------------------------- */

static int64_t env_ms(const char *name, int64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || s[0] == '\0') {
        return dflt;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < WS_ENV_MS_MIN || v > WS_ENV_MS_MAX) {
        cq_log_warn(WS_SERVICE, "ws_env_ignored", json_pack("{s:s,s:s}", "name", name, "value", s),
                    "%s must be milliseconds between %d and %lld; using %lld", name, WS_ENV_MS_MIN,
                    (long long)WS_ENV_MS_MAX, (long long)dflt);
        return dflt;
    }
    return v;
}

static void *ws_thread_main(void *arg)
{
    struct sim_ws *ws = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    lws_sul_schedule(ws->ctx, 0, &ws->tick, tick_cb, ws->tick_ms * LWS_US_PER_MS);
    /* acquire: pairs with the release store in sim_ws_stop */
    while (!atomic_load_explicit(&ws->stop, memory_order_acquire)) {
        if (lws_service(ws->ctx, 0) < 0) {
            cq_log_error(WS_SERVICE, "ws_service_failed", NULL,
                         "lws_service failed; the WS server stops");
            break;
        }
    }
    pthread_mutex_lock(&ws->qlock);
    ws->q_closed = true;
    pthread_mutex_unlock(&ws->qlock);
    lws_sul_cancel(&ws->tick);
    lws_context_destroy(ws->ctx); /* CLOSED callbacks run here, on this thread */
    ws->ctx = NULL;
    return NULL;
}

static void ws_free(struct sim_ws *ws)
{
    if (ws == NULL) {
        return;
    }
    if (ws->ctx != NULL) {
        lws_context_destroy(ws->ctx);
    }
    if (ws->q != NULL) {
        while (ws->q_len > 0) {
            item_free(ws->q[ws->q_head]);
            ws->q_head = (ws->q_head + 1) % WS_QUEUE_ITEMS_MAX;
            ws->q_len--;
        }
    }
    pthread_mutex_destroy(&ws->qlock);
    free(ws->q);
    free(ws->batch);
    free(ws->books);
    free(ws);
}

struct sim_ws *sim_ws_start(struct cq_sim *sim, int *port_out, struct cq_err *err)
{
    const char *bind = sim->bind != NULL ? sim->bind : sim->opts.bind;
    if (bind == NULL || bind[0] == '\0' || strcmp(bind, "localhost") == 0) {
        bind = "127.0.0.1";
    }
    struct sim_ws *ws = calloc(1, sizeof *ws);
    if (ws == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "WS server: out of memory");
        return NULL;
    }
    ws->sim = sim;
    pthread_mutex_init(&ws->qlock, NULL);
    ws->q = calloc(WS_QUEUE_ITEMS_MAX, sizeof *ws->q);
    ws->batch = calloc(WS_QUEUE_ITEMS_MAX, sizeof *ws->batch);
    ws->books = calloc(SIM_SYMBOLS_MAX, sizeof *ws->books);
    if (ws->q == NULL || ws->batch == NULL || ws->books == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "WS server: out of memory");
        ws_free(ws);
        return NULL;
    }
    ws->ping_ms = env_ms("SIMEX_WS_PING_MS", WS_PING_MS_DEFAULT);
    ws->pong_timeout_ms = env_ms("SIMEX_WS_PONG_TIMEOUT_MS", WS_PONG_TIMEOUT_MS_DEFAULT);
    int64_t shortest = ws->ping_ms < ws->pong_timeout_ms ? ws->ping_ms : ws->pong_timeout_ms;
    ws->tick_ms = shortest / 4;
    if (ws->tick_ms > WS_TICK_MS_MAX) {
        ws->tick_ms = WS_TICK_MS_MAX;
    }
    if (ws->tick_ms < WS_TICK_MS_MIN) {
        ws->tick_ms = WS_TICK_MS_MIN;
    }
    ws->slow_rl.window_ms = 10000;
    ws->slow_rl.burst = 5;
    /* relaxed: the ws thread does not exist yet */
    ws->seen_drop_generation =
        atomic_load_explicit(&sim->faults.ws_drop_generation, memory_order_relaxed);

    cq_lws_log_route();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.user = ws;
    info.max_http_header_data = WS_HEADER_BYTES_MAX;
    info.fd_limit_per_thread = WS_CONNS_MAX + 64;
    ws->ctx = lws_create_context(&info);
    if (ws->ctx == NULL) {
        cq_err_set(err, CQ_EIO, 0, NULL, "WS server: lws_create_context failed");
        ws_free(ws);
        return NULL;
    }
    struct lws_context_creation_info vinfo;
    memset(&vinfo, 0, sizeof vinfo);
    vinfo.vhost_name = "simex";
    vinfo.port = sim->opts.ws_port;
    vinfo.iface = bind;
    vinfo.protocols = ws_protocols;
    vinfo.options = strchr(bind, ':') == NULL ? LWS_SERVER_OPTION_DISABLE_IPV6 : 0;
    ws->vhost = lws_create_vhost(ws->ctx, &vinfo);
    if (ws->vhost == NULL) {
        cq_err_set(err, CQ_EIO, 0, "pick another --ws-port or free the port",
                   "WS server: cannot listen on %s:%d", bind, sim->opts.ws_port);
        ws_free(ws);
        return NULL;
    }
    int port = lws_get_vhost_listen_port(ws->vhost);
    if (port <= 0) {
        cq_err_set(err, CQ_EIO, 0, NULL, "WS server: no listening port on %s", bind);
        ws_free(ws);
        return NULL;
    }
    int prc = pthread_create(&ws->thread, NULL, ws_thread_main, ws);
    if (prc != 0) {
        cq_err_set(err, CQ_EIO, prc, NULL, "WS server: cannot start its thread");
        ws_free(ws);
        return NULL;
    }
    ws->thread_started = true;
    if (port_out != NULL) {
        *port_out = port;
    }
    cq_log_info(WS_SERVICE, "ws_listening",
                json_pack("{s:s,s:i,s:I,s:I}", "bind", bind, "port", port, "ping_ms",
                          (json_int_t)ws->ping_ms, "pong_timeout_ms",
                          (json_int_t)ws->pong_timeout_ms),
                "WS server listening on %s:%d", bind, port);
    return ws;
}

void sim_ws_stop(struct sim_ws *ws)
{
    if (ws == NULL) {
        return;
    }
    if (ws->thread_started) {
        /* release: pairs with the ws thread's acquire load */
        atomic_store_explicit(&ws->stop, true, memory_order_release);
        pthread_mutex_lock(&ws->qlock);
        if (!ws->q_closed) {
            lws_cancel_service(ws->ctx);
        }
        pthread_mutex_unlock(&ws->qlock);
        pthread_join(ws->thread, NULL);
        ws->thread_started = false;
    }
    ws_free(ws);
}

size_t sim_ws_backlog_bytes(struct sim_ws *ws)
{
    if (ws == NULL) {
        return 0;
    }
    return atomic_load_explicit(&ws->backlog_bytes, memory_order_relaxed);
}
