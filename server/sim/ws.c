/*
 * ws.c — coinquant-simex's WebSocket server: Binance market streams and the
 * user data stream, over libwebsockets, on loopback.
 *
 * Threads
 *   ws thread   created by cq_sim__ws_start, owns the lws context, every
 *               connection and everything in struct ws_conn. It runs
 *               lws_service until cq_sim__ws_stop sets `stop` and wakes it, then
 *               destroys the context itself, so every lws callback (including
 *               the CLOSED ones during teardown) runs on this thread.
 *   publishers  cq_sim__ws_publish_* and cq_sim__ws_listen_key_closed run on the
 *               market or REST thread with sim->lock held (sim-state.h). They
 *               format the payload text once, push one item per stream into
 *               the outbound queue and wake the ws thread with
 *               lws_cancel_service. Their own state (previous book per symbol
 *               for depth diffs, the execution id counter) is serialised by
 *               that same sim->lock.
 *   The ws thread takes sim->lock only briefly and never while holding the
 *   queue mutex (lock order: sim->lock, then qlock): in
 *   cq_sim__listen_key_valid, in the WS API's requests (wsapi.c: the clock
 *   and the weight) and for eventStreamTerminated's event time. Publishers
 *   never wait for the ws thread, so its waiting for them cannot deadlock.
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
 *               callback; its header goes into the LWS_PRE headroom.
 *   Publishers skip formatting a stream nobody is subscribed to: the ws
 *   thread keeps a counting filter of subscribed stream names (`interest`,
 *   atomics, false positives only cost formatting work).
 *
 * Faults (struct cq_sim__faults, atomics, read without sim->lock)
 *   ws_drop_generation  checked on every wake and every tick (<= 100 ms):
 *                       a new value closes every open connection (1001).
 *   ws_stall            while true, stream data (market and user) is
 *                       discarded and counted as dropped; connections stay
 *                       open, control replies are still sent, server pings
 *                       still go out and client pings are still answered.
 *   ws_user_down        while true, every WS API connection (/ws-api/v3,
 *                       where the user data stream flows) is closed (1001)
 *                       within a tick and new ones are refused with 503;
 *                       market streams are not touched.
 *
 * Connections: /ws/<stream>[/<stream>…] (raw payloads; a name that is not a
 * stream keeps the connection open with no subscriptions, for ccxt.pro's
 * /ws/0 + SUBSCRIBE), /ws/<listenKey> (64 alphanumerics, checked with
 * cq_sim__listen_key_valid; unknown keys are refused) and
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
 * cq_sim__ws_start (10 ms .. 1 day; anything else is logged and ignored). A pong
 * counts only if it echoes the payload of our latest ping; pongs that do
 * answer our pings are not counted against the 5 messages/s limit, so short
 * test intervals stay usable. Client pings DO count (as on Binance), and
 * each gets its pong, queued in order with the other frames.
 *
 * The wire (issue 17): lws only accepts and polls (raw-skt role); the HTTP
 * upgrade and RFC 6455 framing are ours, because lws's server hid pings,
 * processed unmasked client frames and dropped bad handshakes without an
 * answer. The request head must arrive within WS_HANDSHAKE_TIMEOUT_S of
 * accept (at most WS_HEADER_BYTES_MAX bytes, else 431). A bad handshake gets
 * an HTTP answer with a one-line body: 400 (malformed request line, missing
 * or malformed Sec-WebSocket-Key, invalid stream or unknown listen key, too
 * many streams, an encoded NUL), 404 (unknown path), 405 (not GET), 426 (no
 * Upgrade: websocket, or a version other than 13; with Upgrade /
 * Sec-WebSocket-Version headers), 503 (too many connections). Protocol
 * errors close with a close frame and a reason: 1002 for an unmasked client
 * frame, reserved bits, an unknown opcode, a control frame over 125 bytes or
 * fragmented, a stray continuation; 1007 for text that is not UTF-8; 1009
 * for a message over WS_RX_MAX_BYTES; 1008 over the message rate. A close
 * frame from the client is answered with 1000 and the connection closed.
 * Subscription storage is freed when a connection closes (gauge:
 * cq_sim__ws_subscription_bytes) and handed back to the system with
 * malloc_trim once WS_TRIM_AFTER_BYTES were freed.
 *
 * /ws-api/v3 is the WebSocket API (wsapi.c answers its requests; user
 * events reach its subscribed connections wrapped
 * {"subscriptionId":N,"event":…}, and unsubscribing sends
 * eventStreamTerminated first). It has no 5 messages/s rule: the WS API
 * limits by request weight, shared with REST.
 *
 * Lifetime: every connection is closed (1001) SIMEX_WS_LIFETIME_MS after its
 * handshake (default 24 h, as on Binance). When the simulator stops, every
 * connection gets serverShutdown and is closed once it went out (at most
 * WS_SHUTDOWN_GRACE_MS).
 *
 * Depth diffs (@depth = @depth@1000ms, @depth@100ms) are batched: one diff
 * per period at most, sent with the first book change at least a period
 * after the previous one, listing only the levels that changed since it
 * (U = previous u + 1). A book that stops changing sends nothing more, so
 * the last change of a burst waits for the next one.
 *
 * Not simulated: timeUnit=MICROSECOND, the 300 connections / 5 min per IP
 * limit, @ticker and kline_1s; partial depths (@depth5/10/20) go out on every
 * book change.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/sha.h>

#include "cq/buf.h"
#include "cq/log.h"
#include "cq/lws_log.h"
#include "cq/text.h"
#include "sim-ws.h"
#include "sim-wsapi.h"

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
/* Every name built or copied into WS_STREAM_NAME_MAX bytes is bounded: a
 * symbol (<= CQ_SYMBOL_MAX_CHARS = 20) plus a suffix of at most 15 characters
 * ("@depth20@1000ms", "@kline_12h"), or a 64-character listen key; names
 * from clients are length-checked by classify_stream before any copy. */
#define WS_INTEREST_SLOTS 4096u /* power of two */
#define WS_PING_MS_DEFAULT 20000
#define WS_PONG_TIMEOUT_MS_DEFAULT 60000
#define WS_LIFETIME_MS_DEFAULT (24LL * 3600 * 1000) /* "only valid for 24 hours" */
#define WS_SHUTDOWN_GRACE_MS 500 /* stop: time to flush serverShutdown before closing */
#define WS_TICK_MS_MAX 100
#define WS_TICK_MS_MIN 10
#define WS_ENV_MS_MIN 10
#define WS_ENV_MS_MAX (24LL * 3600 * 1000)
#define WS_HEADER_BYTES_MAX 32768  /* a /stream URL with many streams */
#define WS_CLOSE_GRACE_S 2         /* force-close if no WRITEABLE comes */
#define WS_HANDSHAKE_TIMEOUT_S 5   /* the request head must be in by then (from accept) */
#define WS_FRAME_HEADER_MAX 10     /* a server frame's header: 2 + 8 length bytes */
#define WS_CONTROL_PAYLOAD_MAX 125 /* RFC 6455 5.5 */
#define WS_TRIM_AFTER_BYTES ((size_t)1 << 20)  /* freed subscription storage */
#define WS_IN_BYTES_MAX (WS_RX_MAX_BYTES + 14) /* one maximal client frame */
_Static_assert(WS_FRAME_HEADER_MAX <= LWS_PRE, "frame headers go into the LWS_PRE headroom");

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
#define WS_BUF_INIT                                                                                \
    {                                                                                              \
        .max_bytes = WS_PAYLOAD_MAX_BYTES                                                          \
    }

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
 * "btcusdt@depth@1000ms" -> "btcusdt@depth", "btcusdt@depth5@1000ms" ->
 * "btcusdt@depth5" (the 100 ms diff stream "btcusdt@depth@100ms" is its own:
 * it is batched differently); a listen key is its own canonical name. */
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
    if (sym_len == 0 || sym_len >= CQ_SYMBOL_LEN) {
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
        if (rest == suffix + 5 && strcmp(rest, "@100ms") == 0) {
            /* the 100 ms diff stream is its own */
        } else if (strcmp(rest, "@100ms") == 0 || strcmp(rest, "@1000ms") == 0) {
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

/* WebSocket opcodes (RFC 6455 5.2). */
enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xA,
};

/* One outgoing frame, shared by every recipient (ws thread only). */
struct ws_msg {
    uint32_t refs;
    bool data;      /* stream data (stall discards it) vs a control reply */
    uint8_t opcode; /* OP_TEXT, or OP_PONG answering a client's ping */
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
    bool close_after_drain;   /* listenKeyExpired / serverShutdown sent: close when empty */
    const char *drain_reason; /* static close reason for close_after_drain; NULL: listen key */

    /* /ws-api/v3: requests go to wsapi.c, user events arrive wrapped. */
    bool wsapi;
    struct cq_sim__wsapi_session api;

    struct ws_sub *subs; /* owned */
    size_t n_subs, cap_subs;
    size_t n_user_subs;

    struct ws_msg **q; /* owned ring of frames (each holds a ref) */
    size_t q_cap, q_head, q_len, q_bytes;

    char *rx; /* owned, a control message being assembled */
    size_t rx_len;
    bool in_message; /* a fragmented message is open */
    bool message_binary;

    /* The raw byte stream (we speak RFC 6455 ourselves over lws raw sockets). */
    char *hs; /* owned, the request head being read (WS_HEADER_BYTES_MAX) */
    size_t hs_len;
    bool head_done;    /* the head was answered (101, or refused) */
    bool upgraded;     /* the 101 went out */
    unsigned char *in; /* owned, frame bytes not parsed yet (WS_IN_BYTES_MAX) */
    size_t in_len, in_cap;
    bool rx_dead;   /* protocol error or close: read nothing more */
    char *http_out; /* owned, an HTTP answer to write (101 or a refusal) */
    size_t http_out_len;
    int http_status;
    bool http_close; /* the answer is a refusal: close after it */
    bool closing;    /* last bytes queued: close at the next WRITEABLE */

    int64_t rx_times[WS_RX_PER_SEC]; /* monotonic ms of the last messages */
    size_t rx_count;

    int64_t connected_ms, last_ping_ms, last_pong_ms; /* monotonic */
    bool want_ping;
    char ping_payload[32];
    size_t ping_len; /* 0: no ping outstanding */
    uint64_t ping_seq;
};

/* One diff stream's cadence: "<s>@depth" (= "@depth@1000ms") every 1000 ms,
 * "<s>@depth@100ms" every 100 ms ("Update Speed: 1000ms or 100ms"). */
enum { DEPTH_1000MS, DEPTH_100MS, DEPTH_CADENCES };
static const int64_t depth_period_ms[DEPTH_CADENCES] = {1000, 100};

struct ws_depth_cadence {
    int64_t last_emit_ms; /* monotonic; 0: never */
    uint64_t emitted_u;   /* u of the last diff sent, or of the book while nobody listened */
    size_t n_bids, n_asks;
    struct cq_sim__level bids[SIM_DEPTH_MAX]; /* the book as of emitted_u */
    struct cq_sim__level asks[SIM_DEPTH_MAX];
};

struct ws_book_state { /* publisher side, under sim->lock */
    char symbol[CQ_SYMBOL_LEN];
    struct ws_depth_cadence cad[DEPTH_CADENCES];
};

struct cq_sim__ws {
    struct cq_sim__state *sim; /* borrowed */
    struct lws_context *ctx;   /* owned; destroyed on the ws thread */
    struct lws_vhost *vhost;   /* owned by ctx */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop; /* cq_sim__ws_stop stores (release), ws thread loads (acquire) */
    int64_t ping_ms, pong_timeout_ms, tick_ms;
    int64_t lifetime_ms; /* a connection is closed this long after its handshake */

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
    /* Bytes of subscription storage held by open connections (relaxed: a
     * gauge for tests and /_sim/state). */
    _Atomic size_t sub_bytes;

    /* ws thread only. */
    struct ws_conn *conns;
    size_t n_conns;
    struct ws_item **batch; /* owned, WS_QUEUE_ITEMS_MAX */
    uint64_t seen_drop_generation;
    lws_sorted_usec_list_t tick;
    struct cq_log_ratelimit slow_rl;
    size_t freed_since_trim; /* subscription bytes freed since the last malloc_trim */
};

static struct cq_sim__ws *ws_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void count_dropped(struct cq_sim__ws *ws, uint64_t n)
{
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&ws->sim->counters.ws_messages_dropped, n, memory_order_relaxed);
}

static bool stalled(struct cq_sim__ws *ws)
{
    /* relaxed: a fault flag polled per event; no data depends on it */
    return atomic_load_explicit(&ws->sim->faults.ws_stall, memory_order_relaxed);
}

/* ---- publishers: formatting and the outbound queue ------------------------- */

static bool interested(struct cq_sim__ws *ws, const char *canon)
{
    uint32_t slot = name_hash(canon) & (WS_INTEREST_SLOTS - 1);
    return atomic_load_explicit(&ws->interest[slot], memory_order_relaxed) > 0;
}

bool cq_sim__ws_has_subscribers(struct cq_sim__ws *ws, const char *stream)
{
    return ws != NULL && stream != NULL && interested(ws, stream);
}

static bool user_interested(struct cq_sim__ws *ws)
{
    return atomic_load_explicit(&ws->user_conns, memory_order_relaxed) > 0;
}

static void lower_symbol(const char *in, char out[CQ_SYMBOL_LEN])
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < CQ_SYMBOL_LEN; i++) {
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
    cq_strlcpy(it->stream, stream, sizeof it->stream); /* bounded: see WS_STREAM_NAME_MAX */
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
static void queue_push(struct cq_sim__ws *ws, struct ws_item **items, size_t n)
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

void cq_sim__ws_publish_trade(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                              const struct cq_sim__public_trade *t, int64_t event_ms)
{
    if (ws == NULL || sym == NULL || t == NULL) {
        return;
    }
    char lsym[CQ_SYMBOL_LEN];
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
        cq_buf_printf(&b,
                      ",\"f\":%" PRIu64 ",\"l\":%" PRIu64 ",\"T\":%" PRId64 ",\"m\":%s,\"M\":true}",
                      t->trade_id, t->trade_id, t->time_ms, t->buyer_is_maker ? "true" : "false");
        items[n++] = item_take(ITEM_MARKET, name, &b);
    }
    if (n > 0) {
        queue_push(ws, items, n);
    }
}

static void sb_levels(struct cq_buf *b, const struct cq_sim__level *lv, size_t n)
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
static void sb_diff_side(struct cq_buf *b, const struct cq_sim__level *old, size_t n_old,
                         const struct cq_sim__level *cur, size_t n_cur, bool bids)
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
        const struct cq_sim__level *emit = NULL;
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

static struct ws_book_state *book_state(struct cq_sim__ws *ws, const char *symbol)
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
    cq_strlcpy(st->symbol, symbol, sizeof st->symbol); /* both CQ_SYMBOL_LEN */
    return st;
}

void cq_sim__ws_publish_book(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                             const struct cq_sim__book_view *book, uint64_t update_id,
                             int64_t event_ms)
{
    if (ws == NULL || sym == NULL || book == NULL) {
        return;
    }
    char lsym[CQ_SYMBOL_LEN];
    char name[WS_STREAM_NAME_MAX];
    struct ws_item *items[4 + DEPTH_CADENCES]; /* bookTicker, depth5/10/20, the diffs */
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

    /* The diff streams, batched: a diff goes out with the first book change
     * at least the stream's period after its previous diff, and lists only
     * the levels that differ from the book as of that diff (U = its u + 1,
     * u = this update). While nobody listens the base follows the book, so
     * a new subscriber's first diff starts right after the current u. */
    struct ws_book_state *st = book_state(ws, sym->symbol);
    int64_t now = mono_ms();
    for (int k = 0; st != NULL && k < DEPTH_CADENCES; k++) {
        struct ws_depth_cadence *cad = &st->cad[k];
        snprintf(name, sizeof name, k == DEPTH_100MS ? "%s@depth@100ms" : "%s@depth", lsym);
        bool listening = interested(ws, name);
        if (listening && cad->last_emit_ms != 0 && now - cad->last_emit_ms < depth_period_ms[k]) {
            continue; /* hold: the next diff carries this change */
        }
        if (listening) {
            struct cq_buf b = WS_BUF_INIT;
            uint64_t first = cad->emitted_u != 0 ? cad->emitted_u + 1 : update_id;
            if (first > update_id) {
                first = update_id;
            }
            cq_buf_printf(&b, "{\"e\":\"depthUpdate\",\"E\":%" PRId64 ",\"s\":", event_ms);
            sb_jstr(&b, sym->symbol);
            cq_buf_printf(&b, ",\"U\":%" PRIu64 ",\"u\":%" PRIu64 ",\"b\":", first, update_id);
            sb_diff_side(&b, cad->bids, cad->n_bids, book->bids, n_bids, true);
            cq_buf_puts(&b, ",\"a\":");
            sb_diff_side(&b, cad->asks, cad->n_asks, book->asks, n_asks, false);
            cq_buf_puts(&b, "}");
            items[n++] = item_take(ITEM_MARKET, name, &b);
            cad->last_emit_ms = now;
        }
        memcpy(cad->bids, book->bids, n_bids * sizeof *cad->bids);
        memcpy(cad->asks, book->asks, n_asks * sizeof *cad->asks);
        cad->n_bids = n_bids;
        cad->n_asks = n_asks;
        cad->emitted_u = update_id;
    }
    if (n > 0) {
        queue_push(ws, items, n);
    }
}

void cq_sim__ws_publish_kline(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                              const char *interval, const struct cq_sim__kline *k, int64_t event_ms)
{
    if (ws == NULL || sym == NULL || interval == NULL || k == NULL) {
        return;
    }
    char lsym[CQ_SYMBOL_LEN];
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
    cq_buf_printf(&b, ",\"k\":{\"t\":%" PRId64 ",\"T\":%" PRId64 ",\"s\":", k->open_ms,
                  k->close_ms);
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
    cq_buf_printf(&b, ",\"n\":%" PRIu32 ",\"x\":%s,\"q\":", k->trades,
                  k->closed ? "true" : "false");
    sb_dec(&b, k->quote_volume);
    cq_buf_puts(&b, ",\"V\":");
    sb_dec(&b, k->taker_buy_base);
    cq_buf_puts(&b, ",\"Q\":");
    sb_dec(&b, k->taker_buy_quote);
    cq_buf_puts(&b, ",\"B\":\"0\"}}");
    struct ws_item *it = item_take(ITEM_MARKET, name, &b);
    queue_push(ws, &it, 1);
}

void cq_sim__ws_publish_execution(struct cq_sim__ws *ws, const struct cq_sim__symbol *sym,
                                  const struct cq_sim__exec_report *r)
{
    if (ws == NULL || sym == NULL || r == NULL || r->order == NULL) {
        return;
    }
    uint64_t exec_id = ++ws->next_exec_id;
    if (!user_interested(ws)) {
        return;
    }
    const struct cq_sim__order *o = r->order;
    const struct cq_sim__fill *f = r->exec_type == SIM_EXEC_TRADE ? r->fill : NULL;
    const char *client_id = o->client_id;
    if (r->exec_type == SIM_EXEC_CANCELED && r->cancel_client_id != NULL &&
        r->cancel_client_id[0] != '\0') {
        client_id = r->cancel_client_id; /* on a cancel, c is the cancel's own id */
    }
    const char *orig_id = r->orig_client_id != NULL ? r->orig_client_id : "";
    /* MARKET and LIMIT_MAKER carry no timeInForce; Binance reports GTC. */
    const char *tif = o->tif == SIM_TIF_NONE ? "GTC" : cq_sim__tif_name(o->tif);
    cq_dec zero = CQ_DEC_ZERO;

    struct cq_buf b = WS_BUF_INIT;
    cq_buf_printf(&b, "{\"e\":\"executionReport\",\"E\":%" PRId64 ",\"s\":", r->event_ms);
    sb_jstr(&b, sym->symbol);
    cq_buf_puts(&b, ",\"c\":");
    sb_jstr(&b, client_id);
    cq_buf_puts(&b, ",\"S\":");
    sb_jstr(&b, cq_sim__side_name(o->side));
    cq_buf_puts(&b, ",\"o\":");
    sb_jstr(&b, cq_sim__order_type_name(o->type));
    cq_buf_puts(&b, ",\"f\":");
    sb_jstr(&b, tif);
    cq_buf_puts(&b, ",\"q\":");
    sb_dec(&b, o->orig_qty);
    cq_buf_puts(&b, ",\"p\":");
    sb_dec(&b, o->price);
    cq_buf_puts(&b, ",\"P\":"); /* stopPrice: 0 unless a stop order */
    sb_dec(&b, o->stop_price);
    cq_buf_puts(&b, ",\"F\":\"" WS_ZERO8 "\",\"g\":-1,\"C\":");
    sb_jstr(&b, orig_id);
    cq_buf_puts(&b, ",\"x\":");
    sb_jstr(&b, cq_sim__exec_type_name(r->exec_type));
    cq_buf_puts(&b, ",\"X\":");
    sb_jstr(&b, cq_sim__order_status_name(o->status));
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
    cq_buf_printf(&b, ",\"V\":\"%s\"", cq_sim__stp_name(o->stp));
    if (o->expiry != SIM_EXPIRY_NONE) { /* eR: "Appears when the order has expired." */
        cq_buf_printf(&b, ",\"eR\":\"%s\"", cq_sim__expiry_name(o->expiry));
    }
    if (r->prevented != NULL) { /* STP (simq): "Appears only for orders that expired due to STP." */
        const struct cq_sim__prevented_match *pm = r->prevented;
        uint64_t counter =
            pm->maker_order_id == o->order_id ? pm->taker_order_id : pm->maker_order_id;
        cq_buf_printf(&b, ",\"v\":%" PRIu64 ",\"A\":", pm->match_id);
        sb_dec(&b, o->prevented_qty);
        cq_buf_puts(&b, ",\"B\":");
        sb_dec(&b, o->prevented_qty);
        cq_buf_printf(&b, ",\"u\":-1,\"U\":%" PRIu64 ",\"Cs\":", counter);
        sb_jstr(&b, sym->symbol);
        cq_buf_puts(&b, ",\"pl\":");
        sb_dec(&b, pm->match_qty);
        cq_buf_puts(&b, ",\"pL\":");
        sb_dec(&b, pm->price);
        cq_buf_puts(&b, ",\"pY\":");
        sb_dec(&b, pm->match_quote_qty);
    }
    cq_buf_puts(&b, "}");
    struct ws_item *it = item_take(ITEM_USER, "", &b);
    queue_push(ws, &it, 1);
}

void cq_sim__ws_publish_account(struct cq_sim__ws *ws, const struct cq_sim__balance *changed,
                                size_t n, int64_t event_ms)
{
    if (ws == NULL || (changed == NULL && n > 0) || !user_interested(ws)) {
        return;
    }
    struct cq_buf b = WS_BUF_INIT;
    cq_buf_printf(&b,
                  "{\"e\":\"outboundAccountPosition\",\"E\":%" PRId64 ",\"u\":%" PRId64 ",\"B\":[",
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

void cq_sim__ws_listen_key_closed(struct cq_sim__ws *ws, const char *key, bool expired,
                                  int64_t event_ms)
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
    m->opcode = OP_TEXT;
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
static void conn_enqueue(struct cq_sim__ws *ws, struct ws_conn *c, struct ws_msg *m)
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

static struct ws_msg *conn_pop(struct cq_sim__ws *ws, struct ws_conn *c)
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
static void conn_reply(struct cq_sim__ws *ws, struct ws_conn *c, json_t *reply)
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

static void interest_add(struct cq_sim__ws *ws, const struct ws_sub *s, int delta)
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

static void conn_user_count(struct cq_sim__ws *ws, struct ws_conn *c, int delta)
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
static int conn_add_sub(struct cq_sim__ws *ws, struct ws_conn *c, const char *name,
                        const char *canon, bool user)
{
    if (conn_find_sub(c, name) >= 0) {
        return 0;
    }
    if (c->n_subs >= WS_STREAMS_MAX) {
        return -CQ_EFULL;
    }
    if (c->n_subs == c->cap_subs) {
        size_t cap = c->cap_subs != 0 ? c->cap_subs * 2 : 4;
        if (cap > WS_STREAMS_MAX) {
            cap = WS_STREAMS_MAX;
        }
        struct ws_sub *subs = realloc(c->subs, cap * sizeof *subs);
        if (subs == NULL) {
            return -CQ_ENOMEM;
        }
        c->subs = subs;
        /* relaxed: a gauge */
        atomic_fetch_add_explicit(&ws->sub_bytes, (cap - c->cap_subs) * sizeof *subs,
                                  memory_order_relaxed);
        c->cap_subs = cap;
    }
    struct ws_sub *s = &c->subs[c->n_subs++];
    /* both come from WS_STREAM_NAME_MAX buffers: they fit */
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

static void conn_remove_sub(struct cq_sim__ws *ws, struct ws_conn *c, size_t i)
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

static void conn_register(struct cq_sim__ws *ws, struct ws_conn *c, struct lws *wsi)
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
static void conn_release(struct cq_sim__ws *ws, struct ws_conn *c)
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
    if (c->cap_subs > 0) {
        size_t bytes = c->cap_subs * sizeof *c->subs;
        /* relaxed: a gauge */
        atomic_fetch_sub_explicit(&ws->sub_bytes, bytes, memory_order_relaxed);
        ws->freed_since_trim += bytes;
    }
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
        char head[WS_STREAM_NAME_MAX + 32]; /* name < WS_STREAM_NAME_MAX + 21 fixed bytes */
        int n = snprintf(head, sizeof head, "{\"stream\":\"%s\",\"data\":", name);
        msg_unref(fr->wrapped);
        fr->wrapped = msg_new(true, head, (size_t)n, it->text, it->len, "}", 1);
        cq_strlcpy(fr->wrapped_name, name, sizeof fr->wrapped_name); /* same size as s->name */
    }
    return fr->wrapped;
}

static void deliver_item(struct cq_sim__ws *ws, const struct ws_item *it)
{
    struct item_frames fr = {0};
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (c->close_status != 0) {
            continue;
        }
        if (c->wsapi) {
            if (it->kind == ITEM_USER && c->api.subscribed) {
                /* {"subscriptionId":N,"event":<payload>} (web-socket-api.md "Event format") */
                char head[48]; /* 25 fixed bytes and a uint32: fits */
                int hn = snprintf(head, sizeof head,
                                  "{\"subscriptionId\":%" PRIu32 ",\"event\":", c->api.sub_id);
                struct ws_msg *m = msg_new(true, head, (size_t)hn, it->text, it->len, "}", 1);
                conn_enqueue(ws, c, m);
                msg_unref(m);
            }
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

static void check_user_down_fault(struct cq_sim__ws *ws)
{
    if (!atomic_load_explicit(&ws->sim->faults.ws_user_down, memory_order_relaxed)) {
        return;
    }
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (c->wsapi) {
            conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "simex fault: user stream down");
        }
    }
}

static void check_drop_fault(struct cq_sim__ws *ws)
{
    check_user_down_fault(ws);
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

static void drain_queue(struct cq_sim__ws *ws)
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
    struct cq_sim__ws *ws = lws_container_of(sul, struct cq_sim__ws, tick);
    int64_t now = mono_ms();
    check_drop_fault(ws);
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (!c->established || c->close_status != 0) {
            continue;
        }
        if (now - c->connected_ms >= ws->lifetime_ms) {
            /* "A single connection ... is only valid for 24 hours" */
            cq_log_info(WS_SERVICE, "ws_lifetime_reached",
                        json_pack("{s:I}", "lifetime_ms", (json_int_t)ws->lifetime_ms),
                        "WS connection reached its lifetime: closing");
            conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "connection lifetime reached");
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
    if (ws->freed_since_trim >= WS_TRIM_AFTER_BYTES) {
        /* 256 connections x 1024 streams is ~40 MB that the allocator would
         * otherwise keep after they close: hand it back to the system. */
        ws->freed_since_trim = 0;
        malloc_trim(0);
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
static const char *check_stream_params(struct cq_sim__ws *ws, const json_t *params, bool subscribe)
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
        if (cls == STREAM_USER && subscribe && !cq_sim__listen_key_valid(ws->sim, canon)) {
            return MSG_BAD_STREAM;
        }
    }
    return NULL;
}

static json_t *do_subscribe(struct cq_sim__ws *ws, struct ws_conn *c, const json_t *params,
                            json_t *id)
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

static json_t *do_unsubscribe(struct cq_sim__ws *ws, struct ws_conn *c, const json_t *params,
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

static void handle_control(struct cq_sim__ws *ws, struct ws_conn *c, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(text, len, 0, &jerr);
    json_t *reply;
    if (req == NULL) {
        char msg[256]; /* jerr.text is < JSON_ERROR_TEXT_LENGTH (160): it fits */
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
        char msg[256]; /* %.64s keeps it under 256 */
        snprintf(msg, sizeof msg,
                 "Invalid request: unknown variant `%.64s`, expected one of `SUBSCRIBE`, "
                 "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                 m != NULL ? m : "(not a string)");
        reply = reply_error(2, msg, id);
    }
    conn_reply(ws, c, reply);
    json_decref(req);
}

/* ---- ws thread: the WebSocket API (/ws-api/v3) ------------------------------ */

static void enqueue_text(struct cq_sim__ws *ws, struct ws_conn *c, bool data, char *text)
{
    if (text == NULL) {
        count_dropped(ws, 1);
        return;
    }
    struct ws_msg *m = msg_new(data, NULL, 0, text, strlen(text), NULL, 0);
    free(text);
    conn_enqueue(ws, c, m);
    msg_unref(m);
}

static void handle_wsapi(struct cq_sim__ws *ws, struct ws_conn *c, const char *text, size_t len)
{
    struct cq_sim__wsapi_outcome out;
    cq_sim__wsapi_handle(ws->sim, &c->api, text, len, &out);
    if (out.terminated) {
        /* The stream ends before the unsubscribe answer: no event of that
         * subscription follows the response (user-data-stream.md "Event
         * Stream Terminated"). */
        cq_sim__lock(ws->sim);
        int64_t now = cq_sim__server_time_ms(ws->sim);
        cq_sim__unlock(ws->sim);
        enqueue_text(ws, c, false, cq_sim__wsapi_terminated_text(out.terminated_id, now));
        c->n_user_subs--;
        conn_user_count(ws, c, -1);
    }
    enqueue_text(ws, c, false, out.reply);
    if (out.started) {
        c->n_user_subs++;
        conn_user_count(ws, c, +1);
    }
}

/* ---- ws thread: connection setup ------------------------------------------- */

/* Decode %XX in place. false when it would decode a NUL byte. */
static bool url_decode_inplace(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], '\0'};
            char ch = (char)strtol(hex, NULL, 16);
            if (ch == '\0') {
                return false;
            }
            *w++ = ch;
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}

/* Parse the request target into the connection's subscriptions. 0, or an
 * HTTP status to refuse the handshake with (*why says what was wrong, for
 * the log line and the answer's body). */
static int conn_setup(struct cq_sim__ws *ws, struct ws_conn *c, char *target, const char **why)
{
    char *query = strchr(target, '?');
    if (query != NULL) {
        *query++ = '\0';
    }
    char *path = target;
    if (!url_decode_inplace(path)) {
        *why = "the path holds an encoded NUL byte";
        return 400;
    }
    bool combined;
    char *list;
    if (strcmp(path, SIM_WSAPI_PATH) == 0) {
        c->wsapi = true; /* no streams in the URL: subscriptions come as requests */
        /* "?returnRateLimits=false": rateLimits left out unless a request asks */
        for (char *p = query; p != NULL && *p != '\0';) {
            char *amp = strchr(p, '&');
            if (amp != NULL) {
                *amp = '\0';
            }
            if (strcmp(p, "returnRateLimits=false") == 0) {
                c->api.hide_rate_limits = true;
            }
            p = amp != NULL ? amp + 1 : NULL;
        }
        return 0;
    }
    if (strcmp(path, "/ws") == 0 || strncmp(path, "/ws/", 4) == 0) {
        combined = false;
        list = path[3] == '/' ? path + 4 : path + 3;
    } else if (strcmp(path, "/stream") == 0 || strcmp(path, "/stream/") == 0) {
        combined = true;
        list = NULL;
        for (char *p = query; p != NULL && *p != '\0';) {
            char *amp = strchr(p, '&');
            if (amp != NULL) {
                *amp = '\0';
            }
            if (strncmp(p, "streams=", 8) == 0) {
                list = p + 8;
                break;
            }
            p = amp != NULL ? amp + 1 : NULL;
        }
        if (list == NULL) {
            list = path + strlen(path); /* "" */
        } else if (!url_decode_inplace(list)) {
            *why = "the streams parameter holds an encoded NUL byte";
            return 400;
        }
    } else {
        *why = "unknown path: use /ws/<stream>[/<stream>...], /stream?streams=<a>/<b> or "
               "/ws-api/v3";
        return 404;
    }
    c->combined = combined;

    /* Walk "a/b/c". */
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char name[WS_STREAM_NAME_MAX];
        char canon[WS_STREAM_NAME_MAX];
        if (n > 0) {
            enum stream_class cls = STREAM_INVALID;
            if (n < sizeof name) {
                memcpy(name, p, n); /* n < sizeof name: fits with the NUL */
                name[n] = '\0';
                cls = classify_stream(name, canon);
            }
            if (cls == STREAM_USER && !cq_sim__listen_key_valid(ws->sim, canon)) {
                *why = "unknown or expired listen key";
                return 400;
            }
            if (cls == STREAM_INVALID && combined) {
                *why = "invalid stream name";
                return 400;
            }
            /* /ws/<anything else>: stays open without that subscription */
            if (cls != STREAM_INVALID) {
                int add = conn_add_sub(ws, c, name, canon, cls == STREAM_USER);
                if (add < 0) {
                    *why = add == -CQ_EFULL ? "too many streams (at most 1024 per connection)"
                                            : "out of memory";
                    return add == -CQ_EFULL ? 400 : 503;
                }
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return 0;
}

/* A complete incoming message, ping or unsolicited pong: false when the
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

/* ---- ws thread: the HTTP upgrade (RFC 6455 §4) ----------------------------- */

static const char *find_header_end(const char *s, size_t len)
{
    for (size_t i = 3; i < len; i++) {
        if (s[i - 3] == '\r' && s[i - 2] == '\n' && s[i - 1] == '\r' && s[i] == '\n') {
            return s + i + 1;
        }
    }
    return NULL;
}

/* The value of header `name` (case-insensitive) in a NUL-terminated head,
 * copied into out, trimmed. false when absent or longer than out. */
static bool header_value(const char *head, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line != NULL && line[2] != '\0' && line[2] != '\r') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL) {
            return false;
        }
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) {
                e--;
            }
            if ((size_t)(e - v) >= out_len) {
                return false;
            }
            memcpy(out, v, (size_t)(e - v)); /* checked above: fits with the NUL */
            out[e - v] = '\0';
            return true;
        }
        line = eol;
    }
    return false;
}

/* Does the comma-separated header value hold `token` (case-insensitive)? */
static bool has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        const char *e = p;
        while (*e != '\0' && *e != ',') {
            e++;
        }
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) {
            t--;
        }
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0) {
            return true;
        }
        p = e;
    }
    return false;
}

static void base64_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
}

/* A Sec-WebSocket-Key: base64 of 16 bytes (24 characters, "==" at the end). */
static bool key_ok(const char *k)
{
    if (strlen(k) != 24 || k[22] != '=' || k[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        if (!isalnum((unsigned char)k[i]) && k[i] != '+' && k[i] != '/') {
            return false;
        }
    }
    return true;
}

/* Queue an HTTP answer that ends the connection. */
static void http_refuse(struct ws_conn *c, int status, const char *why, const char *extra_headers)
{
    const char *text = status == 400   ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 426 ? "Upgrade Required"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Service Unavailable";
    free(c->http_out);
    c->http_out = NULL;
    struct cq_buf b = {.max_bytes = 4096};
    /* A short body naming the problem; bounded by max_bytes (why is ours). */
    cq_buf_printf(&b,
                  "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s\n",
                  status, text, strlen(why) + 1, extra_headers != NULL ? extra_headers : "", why);
    c->http_out = (char *)b.p;
    c->http_out_len = b.len;
    c->http_close = true;
    c->http_status = status;
}

/* The request head is in: answer 101 and subscribe, or refuse with a status. */
static void handle_handshake(struct cq_sim__ws *ws, struct ws_conn *c, char *head)
{
    const char *why = NULL;
    int status = 0;
    const char *extra = NULL;
    char upgrade[64], connection[256], version[16], key[64];
    char *sp1 = strchr(head, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    char *eol = strstr(head, "\r\n");
    if (sp1 == NULL || sp2 == NULL || eol == NULL || sp2 > eol ||
        strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        status = 400;
        why = "malformed request line";
    } else if (sp1 - head != 3 || strncmp(head, "GET", 3) != 0) {
        status = 405;
        why = "a WebSocket handshake is a GET request";
        extra = "Allow: GET\r\n";
    }
    char *target = NULL;
    if (status == 0) {
        *sp2 = '\0';
        target = strdup(sp1 + 1);
        *sp2 = ' ';
        if (target == NULL) {
            status = 503;
            why = "out of memory";
        }
    }
    if (status == 0 && (!header_value(head, "Upgrade", upgrade, sizeof upgrade) ||
                        !has_token(upgrade, "websocket") ||
                        !header_value(head, "Connection", connection, sizeof connection) ||
                        !has_token(connection, "upgrade"))) {
        /* a plain HTTP request: say where the protocol switch is expected,
         * after checking the path so that a wrong path still reads 404 */
        char *probe = strdup(target);
        struct ws_conn scratch;
        memset(&scratch, 0, sizeof scratch);
        const char *pwhy = NULL;
        int pst = probe != NULL ? conn_setup(ws, &scratch, probe, &pwhy) : 503;
        conn_release(ws, &scratch);
        free(probe);
        if (pst == 404) {
            status = 404;
            why = pwhy;
        } else {
            status = 426;
            why = "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade";
            extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
        }
    }
    if (status == 0 && (!header_value(head, "Sec-WebSocket-Version", version, sizeof version) ||
                        strcmp(version, "13") != 0)) {
        status = 426;
        why = "unsupported WebSocket version: only 13 (RFC 6455)";
        extra = "Sec-WebSocket-Version: 13\r\n";
    }
    if (status == 0 &&
        (!header_value(head, "Sec-WebSocket-Key", key, sizeof key) || !key_ok(key))) {
        status = 400;
        why = "missing or malformed Sec-WebSocket-Key (base64 of 16 bytes)";
    }
    if (status == 0 && ws->n_conns >= WS_CONNS_MAX) {
        status = 503;
        why = "too many connections (at most 256)";
        cq_log_warn(WS_SERVICE, "ws_refused",
                    json_pack("{s:s,s:I}", "reason", "too many connections", "limit",
                              (json_int_t)WS_CONNS_MAX),
                    "WS connection refused: too many connections");
    }
    if (status == 0) {
        status = conn_setup(ws, c, target, &why);
        if (status == 0 && c->wsapi &&
            atomic_load_explicit(&ws->sim->faults.ws_user_down, memory_order_relaxed)) {
            status = 503;
            why = "simex fault: the WebSocket API is down (POST /_sim/ws/user_down)";
        }
        if (status != 0) {
            conn_release(ws, c);
            cq_log_info(WS_SERVICE, "ws_refused",
                        json_pack("{s:s,s:i}", "reason", why, "status", status),
                        "WS connection refused: %s", why);
        }
    }
    free(target);
    if (status != 0) {
        http_refuse(c, status, why, extra);
        lws_callback_on_writable(c->wsi);
        return;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char cat[64 + 36 + 1];
    int cn = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[SHA_DIGEST_LENGTH];
    char accept[32];
    SHA1((const unsigned char *)cat, (size_t)cn, digest); /* key <= 63, so cn < sizeof cat */
    base64_encode(digest, sizeof digest, accept);
    struct cq_buf b = {.max_bytes = 512};
    cq_buf_printf(&b,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  accept);
    if (b.p == NULL) {
        http_refuse(c, 503, "out of memory", NULL);
        lws_callback_on_writable(c->wsi);
        conn_release(ws, c);
        return;
    }
    c->http_out = (char *)b.p;
    c->http_out_len = b.len;
    c->http_close = false;
    c->http_status = 101;
    /* Registered before the 101 goes out, so an event published once the
     * client sees the handshake is delivered. */
    conn_register(ws, c, c->wsi);
    lws_callback_on_writable(c->wsi);
}

/* ---- ws thread: frames (RFC 6455 §5) ---------------------------------------- */

/* One server frame (never masked). payload has at least WS_FRAME_HEADER_MAX
 * bytes of headroom before it, where the header goes. */
static int write_frame(struct lws *wsi, unsigned opcode, unsigned char *payload, size_t len)
{
    unsigned char hdr[WS_FRAME_HEADER_MAX];
    size_t h = 0;
    hdr[h++] = (unsigned char)(0x80u | opcode);
    if (len < 126) {
        hdr[h++] = (unsigned char)len;
    } else if (len <= 0xffff) {
        hdr[h++] = 126;
        hdr[h++] = (unsigned char)(len >> 8);
        hdr[h++] = (unsigned char)(len & 0xff);
    } else {
        hdr[h++] = 127;
        for (int i = 7; i >= 0; i--) {
            hdr[h++] = (unsigned char)(((uint64_t)len >> (8 * i)) & 0xff);
        }
    }
    unsigned char *start = payload - h;
    memcpy(start, hdr, h);
    return lws_write(wsi, start, h + len, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

/* Protocol error from the client: close with `status` and a reason. */
static void protocol_error(struct ws_conn *c, uint16_t status, const char *reason)
{
    c->rx_dead = true; /* read nothing more */
    conn_close(c, status, reason);
}

/* A whole data message (text, or binary treated as text like before). */
static void on_message(struct cq_sim__ws *ws, struct ws_conn *c, const char *text, size_t len)
{
    if (c->wsapi) {
        /* the WS API limits requests by weight, not by messages per second */
        if (c->close_status == 0) {
            handle_wsapi(ws, c, text, len);
        }
        return;
    }
    if (!rx_rate_ok(c, mono_ms())) {
        cq_log_info(WS_SERVICE, "ws_rate_limited", NULL,
                    "WS client sent more than %d messages in 1 s: closing", WS_RX_PER_SEC);
        protocol_error(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "Too many messages");
        return;
    }
    if (c->close_status == 0) {
        handle_control(ws, c, text, len);
    }
}

/* One complete client frame: opcode, fin, unmasked payload. */
static void on_frame(struct cq_sim__ws *ws, struct ws_conn *c, unsigned op, bool fin,
                     unsigned char *p, size_t n)
{
    switch (op) {
    case OP_PING:
        /* Binance counts pings against the 5 messages/s limit too */
        if (!rx_rate_ok(c, mono_ms())) {
            cq_log_info(WS_SERVICE, "ws_rate_limited", NULL,
                        "WS client sent more than %d messages (pings count) in 1 s: closing",
                        WS_RX_PER_SEC);
            protocol_error(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "Too many messages");
            return;
        }
        {
            /* every ping gets its pong, in order with the other frames */
            struct ws_msg *m = msg_new(false, NULL, 0, (const char *)p, n, NULL, 0);
            if (m != NULL) {
                m->opcode = OP_PONG;
            }
            conn_enqueue(ws, c, m);
            msg_unref(m);
        }
        return;
    case OP_PONG:
        if (c->ping_len > 0 && n == c->ping_len && memcmp(p, c->ping_payload, n) == 0) {
            c->last_pong_ms = mono_ms();
            c->ping_len = 0;
            return;
        }
        /* Unsolicited: allowed, counts against the rate, keeps nothing alive. */
        if (!rx_rate_ok(c, mono_ms())) {
            protocol_error(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "Too many messages");
        }
        return;
    case OP_CLOSE:
        if (n == 1) {
            protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "close frame with a 1-byte payload");
            return;
        }
        c->rx_dead = true;
        conn_close(c, LWS_CLOSE_STATUS_NORMAL, "");
        return;
    default:
        break;
    }
    /* data: text/binary start a message, continuation frames extend it */
    if (op == OP_CONT && !c->in_message) {
        protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "continuation frame without a message");
        return;
    }
    if (op != OP_CONT && c->in_message) {
        protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "new message inside a fragmented one");
        return;
    }
    if (op != OP_CONT) {
        c->in_message = true;
        c->message_binary = op == OP_BINARY;
        c->rx_len = 0;
    }
    if (c->rx_len + n > WS_RX_MAX_BYTES) {
        protocol_error(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
        return;
    }
    char *rx = realloc(c->rx, c->rx_len + n + 1);
    if (rx == NULL) {
        protocol_error(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    c->rx = rx;
    if (n > 0) {
        memcpy(c->rx + c->rx_len, p, n);
    }
    c->rx_len += n;
    c->rx[c->rx_len] = '\0';
    if (!fin) {
        return;
    }
    c->in_message = false;
    if (!c->message_binary && !cq_text_utf8_valid(c->rx, c->rx_len)) {
        protocol_error(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "text frame is not UTF-8");
        return;
    }
    on_message(ws, c, c->rx, c->rx_len);
    c->rx_len = 0;
}

/* Parse every complete frame in c->in; keep a partial one for later. */
static void parse_frames(struct cq_sim__ws *ws, struct ws_conn *c)
{
    size_t off = 0;
    while (!c->rx_dead && c->in_len - off >= 2) {
        const unsigned char *h = c->in + off;
        size_t avail = c->in_len - off;
        bool fin = (h[0] & 0x80) != 0;
        unsigned op = h[0] & 0x0F;
        bool masked = (h[1] & 0x80) != 0;
        uint64_t len = h[1] & 0x7F;
        size_t hl = 2;
        if ((h[0] & 0x70) != 0) {
            protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "reserved bits set (no extension)");
            break;
        }
        if (op != OP_CONT && op != OP_TEXT && op != OP_BINARY && op != OP_CLOSE && op != OP_PING &&
            op != OP_PONG) {
            protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "unknown opcode");
            break;
        }
        if (!masked) {
            protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR,
                           "client frames must be masked (RFC 6455 5.1)");
            break;
        }
        if ((op & 0x8) != 0 && (len > WS_CONTROL_PAYLOAD_MAX || !fin)) {
            protocol_error(c, LWS_CLOSE_STATUS_PROTOCOL_ERR,
                           !fin ? "fragmented control frame"
                                : "control frame payload over 125 bytes");
            break;
        }
        if (len == 126) {
            if (avail < 4) {
                break;
            }
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) {
                break;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | h[2 + i];
            }
            hl = 10;
        }
        if (len > WS_RX_MAX_BYTES) {
            protocol_error(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
            break;
        }
        if (avail < hl + 4 + len) {
            break; /* the rest of the frame has not arrived */
        }
        unsigned char mask[4];
        memcpy(mask, h + hl, 4);
        unsigned char *p = c->in + off + hl + 4;
        for (size_t i = 0; i < (size_t)len; i++) {
            p[i] ^= mask[i & 3];
        }
        off += hl + 4 + (size_t)len;
        on_frame(ws, c, op, fin, p, (size_t)len);
    }
    if (c->rx_dead) {
        c->in_len = 0;
        return;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* Bytes from the socket: the request head until the upgrade, then frames. */
static void on_raw_rx(struct cq_sim__ws *ws, struct ws_conn *c, const unsigned char *in, size_t len)
{
    if (!c->head_done && len > 0 && !c->rx_dead) {
        if (c->hs == NULL) {
            c->hs = malloc(WS_HEADER_BYTES_MAX + 1);
            if (c->hs == NULL) {
                c->rx_dead = true;
                http_refuse(c, 503, "out of memory", NULL);
                lws_callback_on_writable(c->wsi);
                return;
            }
        }
        size_t room = WS_HEADER_BYTES_MAX - c->hs_len;
        size_t take = len < room ? len : room;
        memcpy(c->hs + c->hs_len, in, take);
        c->hs_len += take;
        c->hs[c->hs_len] = '\0';
        in += take;
        len -= take;
        const char *end = find_header_end(c->hs, c->hs_len);
        if (end == NULL) {
            if (c->hs_len >= WS_HEADER_BYTES_MAX) {
                c->rx_dead = true;
                http_refuse(c, 431, "request head over 32768 bytes", NULL);
                lws_callback_on_writable(c->wsi);
            }
            return;
        }
        c->head_done = true;
        /* bytes after the head: a client that did not wait for the 101 */
        size_t head_len = (size_t)(end - c->hs);
        size_t extra = c->hs_len - head_len;
        unsigned char *early = NULL;
        if (extra > 0) {
            early = malloc(extra);
            if (early == NULL) {
                c->rx_dead = true;
                http_refuse(c, 503, "out of memory", NULL);
                lws_callback_on_writable(c->wsi);
                return;
            }
            memcpy(early, end, extra);
        }
        c->hs[head_len] = '\0';
        handle_handshake(ws, c, c->hs);
        free(c->hs);
        c->hs = NULL;
        c->hs_len = 0;
        if (c->http_close) {
            c->rx_dead = true;
        } else if (early != NULL) {
            on_raw_rx(ws, c, early, extra);
        }
        free(early);
    }
    /* frames: append, bounded by one maximal frame */
    while (len > 0 && !c->rx_dead) {
        if (c->in_cap - c->in_len < len && c->in_cap < WS_IN_BYTES_MAX) {
            size_t cap = c->in_cap != 0 ? c->in_cap : 4096;
            while (cap - c->in_len < len && cap < WS_IN_BYTES_MAX) {
                cap *= 2;
            }
            if (cap > WS_IN_BYTES_MAX) {
                cap = WS_IN_BYTES_MAX;
            }
            unsigned char *ni = realloc(c->in, cap);
            if (ni == NULL) {
                protocol_error(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
                return;
            }
            c->in = ni;
            c->in_cap = cap;
        }
        size_t take = c->in_cap - c->in_len < len ? c->in_cap - c->in_len : len;
        if (take == 0) {
            /* cannot happen: parse_frames refuses a frame over WS_IN_BYTES_MAX */
            protocol_error(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
            return;
        }
        memcpy(c->in + c->in_len, in, take);
        c->in_len += take;
        in += take;
        len -= take;
        parse_frames(ws, c);
    }
}

static int on_writeable(struct cq_sim__ws *ws, struct ws_conn *c, struct lws *wsi)
{
    if (c->closing) {
        return -1; /* the close frame or refusal went out (lws flushed it first) */
    }
    if (c->http_out != NULL) {
        int n = lws_write(wsi, (unsigned char *)c->http_out, c->http_out_len, LWS_WRITE_RAW);
        free(c->http_out);
        c->http_out = NULL;
        if (n < 0) {
            return -1;
        }
        if (c->http_close) {
            cq_log_debug(WS_SERVICE, "ws_handshake_refused",
                         json_pack("{s:i}", "status", c->http_status), "WS handshake answered %d",
                         c->http_status);
            c->closing = true;
            lws_callback_on_writable(wsi);
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, WS_CLOSE_GRACE_S);
            return 0;
        }
        /* 101 sent: the connection is a WebSocket now */
        int64_t now = mono_ms();
        c->upgraded = true;
        c->established = true;
        c->connected_ms = c->last_ping_ms = c->last_pong_ms = now;
        if (c->wsapi) {
            cq_sim__wsapi_charge_connect(ws->sim);
        }
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        cq_log_debug(
            WS_SERVICE, "ws_connected",
            json_pack("{s:I,s:b}", "streams", (json_int_t)c->n_subs, "combined", c->combined),
            "WS client connected");
        if (c->close_status != 0) {
            /* closed before the handshake finished (fault, key deleted) */
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, WS_CLOSE_GRACE_S);
        }
        if (c->close_status != 0 || c->q_len > 0) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    if (!c->upgraded) {
        return 0;
    }
    if (c->close_status != 0) {
        unsigned char buf[WS_FRAME_HEADER_MAX + WS_CONTROL_PAYLOAD_MAX];
        unsigned char *p = buf + WS_FRAME_HEADER_MAX;
        const char *r = c->close_reason != NULL ? c->close_reason : "";
        size_t rl = strnlen(r, WS_CONTROL_PAYLOAD_MAX - 2);
        p[0] = (unsigned char)(c->close_status >> 8);
        p[1] = (unsigned char)(c->close_status & 0xff);
        memcpy(p + 2, r, rl); /* rl <= 123: fits in the control payload */
        if (write_frame(wsi, OP_CLOSE, p, 2 + rl) < 0) {
            return -1;
        }
        c->closing = true;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->want_ping) {
        unsigned char buf[WS_FRAME_HEADER_MAX + 32];
        c->want_ping = false;
        int n = snprintf(c->ping_payload, sizeof c->ping_payload, "%" PRIu64 "-%" PRId64,
                         ++c->ping_seq, c->last_ping_ms);
        /* a truncated payload is still what we compare the pong against */
        c->ping_len =
            n > 0 && (size_t)n < sizeof c->ping_payload ? (size_t)n : sizeof c->ping_payload - 1;
        memcpy(buf + WS_FRAME_HEADER_MAX, c->ping_payload, c->ping_len);
        if (write_frame(wsi, OP_PING, buf + WS_FRAME_HEADER_MAX, c->ping_len) < 0) {
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
        bool counted = m->opcode == OP_TEXT;
        int n = write_frame(wsi, m->opcode, m->buf + LWS_PRE, m->len);
        msg_unref(m);
        if (n < 0) {
            return -1;
        }
        if (!counted) {
            break;
        }
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&ws->sim->counters.ws_messages_sent, 1, memory_order_relaxed);
        break;
    }
    if (c->q_len > 0) {
        lws_callback_on_writable(wsi);
    } else if (c->close_after_drain) {
        conn_close(c,
                   c->drain_reason != NULL ? LWS_CLOSE_STATUS_GOINGAWAY : LWS_CLOSE_STATUS_NORMAL,
                   c->drain_reason != NULL ? c->drain_reason : "listen key expired");
    }
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct cq_sim__ws *ws = ws_of(wsi);
    struct ws_conn *c = lws_get_opaque_user_data(wsi);
    CQ_UNUSED(user);
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (ws != NULL) {
            check_drop_fault(ws);
            drain_queue(ws);
        }
        return 0;
    case LWS_CALLBACK_RAW_ADOPT:
        if (ws == NULL) {
            return -1;
        }
        c = calloc(1, sizeof *c);
        if (c == NULL) {
            return -1;
        }
        c->wsi = wsi;
        lws_set_opaque_user_data(wsi, c);
        /* the request head must be in within WS_HANDSHAKE_TIMEOUT_S of accept */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, WS_HANDSHAKE_TIMEOUT_S);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        if (c == NULL || ws == NULL) {
            return -1;
        }
        on_raw_rx(ws, c, in, len);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE:
        if (c == NULL || ws == NULL) {
            return -1;
        }
        return on_writeable(ws, c, wsi);
    case LWS_CALLBACK_RAW_CLOSE:
        if (c != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            if (ws != NULL) {
                conn_release(ws, c);
            }
            free(c->hs);
            free(c->in);
            free(c->http_out);
            free(c);
        }
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols[] = {
    {"binance", ws_callback, 0, 4096, 0, NULL, 0},
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

/* The simulator is stopping: every connection gets serverShutdown
 * ({"event":{"e":"serverShutdown","E":ms}} on the WS API, web-socket-api.md
 * "Server Shutdown"; {"e":"serverShutdown","E":ms} on market streams, §4)
 * and is closed (1001) once it went out, for at most WS_SHUTDOWN_GRACE_MS. */
static void announce_shutdown(struct cq_sim__ws *ws)
{
    int64_t event_ms = cq_sim__wall_ms();
    size_t n = 0;
    for (struct ws_conn *c = ws->conns; c != NULL; c = c->next) {
        if (!c->established || c->close_status != 0) {
            continue;
        }
        char text[96]; /* 50 fixed bytes and an int64: fits */
        snprintf(text, sizeof text,
                 c->wsapi ? "{\"event\":{\"e\":\"serverShutdown\",\"E\":%" PRId64 "}}"
                          : "{\"e\":\"serverShutdown\",\"E\":%" PRId64 "}",
                 event_ms);
        enqueue_text(ws, c, false, strdup(text));
        c->close_after_drain = true;
        c->drain_reason = "server shutdown";
        lws_callback_on_writable(c->wsi);
        n++;
    }
    int64_t until = mono_ms() + WS_SHUTDOWN_GRACE_MS;
    while (n > 0 && ws->n_conns > 0 && mono_ms() < until) {
        if (lws_service(ws->ctx, 0) < 0) {
            break;
        }
    }
}

static void *ws_thread_main(void *arg)
{
    struct cq_sim__ws *ws = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    lws_sul_schedule(ws->ctx, 0, &ws->tick, tick_cb, ws->tick_ms * LWS_US_PER_MS);
    /* acquire: pairs with the release store in cq_sim__ws_stop */
    while (!atomic_load_explicit(&ws->stop, memory_order_acquire)) {
        if (lws_service(ws->ctx, 0) < 0) {
            cq_log_error(WS_SERVICE, "ws_service_failed", NULL,
                         "lws_service failed; the WS server stops");
            break;
        }
    }
    announce_shutdown(ws);
    pthread_mutex_lock(&ws->qlock);
    ws->q_closed = true;
    pthread_mutex_unlock(&ws->qlock);
    lws_sul_cancel(&ws->tick);
    lws_context_destroy(ws->ctx); /* CLOSED callbacks run here, on this thread */
    ws->ctx = NULL;
    return NULL;
}

static void ws_free(struct cq_sim__ws *ws)
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

struct cq_sim__ws *cq_sim__ws_start(struct cq_sim__state *sim, int *port_out, struct cq_err *err)
{
    const char *bind = sim->bind != NULL ? sim->bind : sim->opts.bind;
    if (bind == NULL || bind[0] == '\0' || strcmp(bind, "localhost") == 0) {
        bind = "127.0.0.1";
    }
    struct cq_sim__ws *ws = calloc(1, sizeof *ws);
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
    ws->lifetime_ms = env_ms("SIMEX_WS_LIFETIME_MS", WS_LIFETIME_MS_DEFAULT);
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
    /* Raw sockets: lws accepts and polls, we speak HTTP upgrade and RFC 6455
     * framing ourselves (lws's server hides pings, accepts unmasked client
     * frames and drops bad handshakes without an HTTP answer). */
    vinfo.listen_accept_role = "raw-skt";
    vinfo.listen_accept_protocol = "binance";
    vinfo.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG |
                    (strchr(bind, ':') == NULL ? LWS_SERVER_OPTION_DISABLE_IPV6 : 0);
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
                json_pack("{s:s,s:i,s:I,s:I,s:I}", "bind", bind, "port", port, "ping_ms",
                          (json_int_t)ws->ping_ms, "pong_timeout_ms",
                          (json_int_t)ws->pong_timeout_ms, "lifetime_ms",
                          (json_int_t)ws->lifetime_ms),
                "WS server listening on %s:%d", bind, port);
    return ws;
}

void cq_sim__ws_stop(struct cq_sim__ws *ws)
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

size_t cq_sim__ws_subscription_bytes(struct cq_sim__ws *ws)
{
    if (ws == NULL) {
        return 0;
    }
    return atomic_load_explicit(&ws->sub_bytes, memory_order_relaxed);
}

size_t cq_sim__ws_backlog_bytes(struct cq_sim__ws *ws)
{
    if (ws == NULL) {
        return 0;
    }
    return atomic_load_explicit(&ws->backlog_bytes, memory_order_relaxed);
}
