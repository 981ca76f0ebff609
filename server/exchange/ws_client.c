/*
 * ws_client.c — the Binance WebSocket client (include/cq/ws_client.h), over
 * libwebsockets 4.1.
 *
 * Threads
 *   owner       one thread (the feeder) owns a struct cq_ws_loop: its lws
 *               context, every client attached to it and every connection.
 *               It calls cq_ws_loop_service() in its loop; every lws callback,
 *               every timer and every on_message/on_state callback runs there,
 *               inside that call (or inside the owner's own calls to
 *               start/stop/set_url/reconnect/send). No other thread touches a
 *               client, except:
 *   any thread  cq_ws_loop_wake() (lws_cancel_service: the blocked poll
 *               returns, no state is touched) and cq_ws_client_stats() (copies
 *               the client's `stats` under `stats_mu`, a mutex held only for
 *               that copy and for the owner's short counter updates).
 *
 * Waiting. lws 4.1 ignores lws_service()'s timeout (it blocks until its own
 *   next timer or an fd event), so cq_ws_loop_service(timeout_ms) schedules a
 *   no-op lws_sul timer at min(timeout_ms, the clients' next due timer) and
 *   services once; a timeout of 0 polls without waiting.
 *
 * Timers (ours, not lws's: they run against the injected struct cq_clock, so
 *   tests can drive them; checked before and after every lws_service)
 *   connect     CONNECTING longer than connect_timeout_ms (TCP, TLS and the
 *               HTTP upgrade together) -> the attempt is killed:
 *               "connect_failed", backoff.
 *   stall       CONNECTED and no complete message for stall_ms (counted from
 *               the last message, or from the handshake) -> close: "stall",
 *               backoff. Server pings do not count as data: lws answers them
 *               itself and they keep the TCP path alive, not the feed.
 *               CQ_WS_STALL_NONE: no such check (the user data stream).
 *   silence     CONNECTED and nothing at all received for silence_ms, server
 *               pings included (counted from the last byte seen, or from the
 *               handshake) -> close: "silence", backoff: the connection is
 *               dead. lws 4.1 answers pings without telling its user, so
 *               "received anything" is read from the socket: the kernel's
 *               TCP_INFO tcpi_bytes_received, sampled at every timer pass
 *               (one getsockopt per connected client, before and after each
 *               lws_service) and stamped with the injected clock when it has
 *               grown. A complete message counts too. Where TCP_INFO has no
 *               byte count (Linux < 4.1), only messages count.
 *   lifetime    CONNECTED for max_lifetime_ms -> close and reconnect at once
 *               (break before make; Binance cuts at 24 h): "lifetime".
 *   backoff     BACKOFF until the drawn delay has passed -> connect.
 *
 * Reconnect policy. After a failure or close ("closed_by_peer",
 *   "connect_failed", "stall", "oversize", cq_ws_client_reconnect) the next
 *   attempt waits a delay drawn uniformly from [0, cap] (full jitter) with
 *   cap = min(backoff_base_ms * 2^n, backoff_max_ms), n = consecutive
 *   reconnects so far; the PRNG (splitmix64) is seeded from jitter_seed (or
 *   the clock). n resets to 0 when a connection that has been up for 30 s
 *   ends. "lifetime" and "url_changed" are not failures: they reconnect at
 *   once and leave n alone. Every connect happens from the timers, never
 *   from inside an lws callback; DNS resolution is synchronous in lws 4.1
 *   built without LWS_WITH_SYS_ASYNC_DNS (Debian), so a wss:// host name
 *   costs one resolver round trip on the owner thread per attempt.
 *
 * on_state. Called when a connection comes up (CONNECTED, "connected"), when
 *   one ends or an attempt fails (BACKOFF with the cause, or CONNECTING when
 *   the reconnect is immediate: "lifetime", "url_changed", or a jitter draw
 *   of 0), and on stop (IDLE,
 *   "stopped"). The timer's BACKOFF -> CONNECTING step and start() are not
 *   reported (nothing happened yet; the state is in the stats). set_url on an
 *   idle client only stores the URL for the next start. A callback may
 *   call start/stop/set_url/reconnect/send on any client of the loop, but not
 *   free a client or the loop.
 *
 * Closing. Our side detaches a connection from its client first (c->wsi =
 *   NULL, the wsi's opaque pointer = NULL); lws then finishes it on its own:
 *   an established one gets a WRITEABLE callback that sends a close frame
 *   (1001), with a WS_CLOSE_GRACE_S kill as a backstop; one still connecting
 *   is killed at the next service. Any callback for a detached wsi only closes
 *   it, so a new connection can start before the old one is gone.
 *
 * Buffers and what happens when they are full
 *   receive     fragments (and lws's partial reads) are reassembled into a
 *               per-client buffer that grows up to max_message_bytes. A
 *               message that would exceed it is dropped, counted
 *               (oversize_total) and the connection closed (1009): "oversize",
 *               backoff. Binary messages are dropped (Binance sends text).
 *   send        a FIFO of copied frames, at most WS_SEND_FRAMES_MAX frames and
 *               WS_SEND_BYTES_MAX bytes; one frame per WRITEABLE callback.
 *               Full: cq_ws_client_send returns -CQ_EFULL (control requests
 *               are the caller's to retry; nothing is dropped silently). The
 *               queue is emptied when the connection ends: a request that
 *               must survive a reconnect is resent from on_state(connected)
 *               (subscriptions normally live in the URL instead).
 *
 * TLS. wss:// uses LCCSCF_USE_SSL with full certificate checks against the
 *   OS CA store (lws's SSL_CTX_set_default_verify_paths), ALPN http/1.1 only
 *   (never ws-over-h2), SNI/Host = the URL's host.
 *
 * lws logging is process-wide: cq_ws_loop_new routes lws errors and warnings
 *   into our log (warn/debug), as the simulator's WS server does.
 *
 * Logs (service "feeder", field "client" = the client's name; the URL path is
 *   never logged since it may carry a listen key): ws_connected,
 *   ws_disconnected (reason, uptime_ms, close_code, error),
 *   ws_reconnect_scheduled (backoff_ms, cap_ms), ws_stall_detected
 *   (silent_ms), ws_silence_detected (silent_ms), ws_lifetime_reconnect,
 *   ws_oversize. Those that can repeat
 *   quickly (a server that accepts and drops, a refused port) are
 *   rate-limited per client: 5 per 10 s each, with a "suppressed" count.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <libwebsockets.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received (glibc's lacks it) */

#include "cq/buf.h"
#include "cq/log.h"
#include "cq/lws_log.h"
#include "cq/ws_client.h"

#define WS_SERVICE "feeder"
#define WS_PROTOCOL_NAME "cq-ws-client"

#define WS_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define WS_BACKOFF_BASE_MS_DEFAULT 250
#define WS_BACKOFF_MAX_MS_DEFAULT 30000
#define WS_MAX_LIFETIME_MS_DEFAULT ((23LL * 60 + 50) * 60 * 1000)
#define WS_MAX_MESSAGE_BYTES_DEFAULT ((size_t)1 << 20)
#define WS_BACKOFF_RESET_AFTER_MS 30000

#define WS_URL_BYTES_MAX 16384 /* a /stream URL with a few hundred streams */
#define WS_HOST_BYTES_MAX 256
#define WS_NAME_BYTES_MAX 32
#define WS_SEND_FRAMES_MAX 64
#define WS_SEND_BYTES_MAX ((size_t)64 << 10)
#define WS_CLOSE_GRACE_S 2 /* kill a closing connection that never gets WRITEABLE */
#define WS_FD_LIMIT 256    /* sockets per loop (a handful of clients) */
#define WS_SERV_BUF_BYTES (WS_URL_BYTES_MAX + 16384) /* the upgrade request */
#define WS_SERVICE_WAIT_MS_MAX (3600 * 1000)
#define WS_LOG_WINDOW_MS 10000
#define WS_LOG_BURST 5

/* ---- types ------------------------------------------------------------------ */

struct ws_url {
    bool tls;
    char host[WS_HOST_BYTES_MAX];            /* without brackets for IPv6 literals */
    char host_header[WS_HOST_BYTES_MAX + 2]; /* Host/Origin: with brackets for IPv6 */
    int port;
    char *path; /* owned; "/stream?streams=…" */
};

struct tx_frame {
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len bytes */
};

struct cq_ws_loop {
    struct lws_context *ctx;         /* owned */
    struct cq_ws_client *clients;    /* owned; attached clients */
    lws_sorted_usec_list_t wait_sul; /* bounds one lws_service call */
};

struct cq_ws_client {
    struct cq_ws_loop *loop;   /* borrowed */
    struct cq_ws_client *next; /* in loop->clients */
    char name[WS_NAME_BYTES_MAX];
    struct ws_url url;
    struct cq_ws_callbacks cb;
    const struct cq_clock *clock; /* borrowed */
    int64_t connect_timeout_ms;
    int64_t stall_ms; /* CQ_WS_STALL_NONE: no stall check */
    int64_t silence_ms;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t max_lifetime_ms;
    size_t max_message_bytes;
    uint64_t rng; /* splitmix64 state */

    /* owner thread only */
    enum cq_ws_state state;
    struct lws *wsi;    /* the current connection (lws owns it); NULL if none */
    bool in_connect;    /* inside lws_client_connect_via_info */
    bool connect_error; /* CONNECTION_ERROR arrived during in_connect */
    int64_t attempt_started_ms;
    int64_t connected_since_ms;
    int64_t last_message_ms; /* this connection's last message, 0 if none */
    int64_t last_rx_ms;      /* this connection's last byte seen (pings too), 0 if none */
    uint64_t rx_bytes_seen;  /* tcpi_bytes_received at last_rx_ms */
    int64_t next_attempt_ms; /* BACKOFF */
    unsigned backoff_n;      /* consecutive reconnects */
    int64_t backoff_cap_ms;
    int close_code;                          /* from the peer's close frame, 0 if none */
    struct cq_buf rx;                        /* reassembly buffer, bounded by max_message_bytes */
    struct tx_frame *tx[WS_SEND_FRAMES_MAX]; /* owned frames, FIFO ring */
    size_t tx_head, tx_count, tx_bytes;
    struct cq_log_ratelimit rl_connected, rl_disconnected, rl_scheduled, rl_other;

    pthread_mutex_t stats_mu;        /* guards stats */
    struct cq_ws_client_stats stats; /* next_attempt_in_ms computed on read */
    int64_t stats_next_attempt_ms;   /* guarded by stats_mu */
};

/* ---- small helpers ---------------------------------------------------------- */

const char *cq_ws_state_name(enum cq_ws_state s)
{
    switch (s) {
    case CQ_WS_IDLE:
        return "idle";
    case CQ_WS_CONNECTING:
        return "connecting";
    case CQ_WS_CONNECTED:
        return "connected";
    case CQ_WS_BACKOFF:
        return "backoff";
    }
    return "unknown";
}

static int64_t now_ms(const struct cq_ws_client *c)
{
    return cq_clock_mono_ms(c->clock);
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void ratelimit_init(struct cq_log_ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    rl->window_ms = WS_LOG_WINDOW_MS;
    rl->burst = WS_LOG_BURST;
    rl->window_start_ms = INT64_MIN / 2;
}

/* ---- URL parsing ------------------------------------------------------------ */

static bool host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

static bool path_char_ok(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '#';
}

/* "ws[s]://host[:port][/path][?query]" -> out (out->path owned on success). */
static int url_parse(const char *url, struct ws_url *out, struct cq_err *err)
{
    memset(out, 0, sizeof *out);
    if (url == NULL || url[0] == '\0') {
        return cq_err_set(err, CQ_EINVAL, 0, "e.g. ws://127.0.0.1:9443/ws/btcusdt@trade",
                          "WS URL is empty");
    }
    size_t url_len = strnlen(url, WS_URL_BYTES_MAX + 1);
    if (url_len > WS_URL_BYTES_MAX) {
        return cq_err_set(err, CQ_EINVAL, 0, "split the streams over several connections",
                          "WS URL is longer than %d bytes", WS_URL_BYTES_MAX);
    }
    const char *p;
    if (strncasecmp(url, "ws://", 5) == 0) {
        p = url + 5;
        out->tls = false;
        out->port = 80;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        p = url + 6;
        out->tls = true;
        out->port = 443;
    } else {
        return cq_err_set(err, CQ_EINVAL, 0, "use ws://host:port/path or wss://host:port/path",
                          "WS URL must start with ws:// or wss://");
    }

    const char *host = p;
    size_t host_len;
    bool ipv6 = *p == '[';
    if (ipv6) {
        const char *close = strchr(p, ']');
        if (close == NULL) {
            return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL: unterminated [IPv6] host");
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        for (size_t i = 0; i < host_len; i++) {
            char ch = host[i];
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                  (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.')) {
                return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL: bad character in [IPv6] host");
            }
        }
        p = close + 1;
    } else {
        while (*p != '\0' && *p != ':' && *p != '/' && *p != '?') {
            if (!host_char_ok(*p)) {
                return cq_err_set(err, CQ_EINVAL, 0, "user:password@ is not supported",
                                  "WS URL: bad character '%c' in host", *p);
            }
            p++;
        }
        host_len = (size_t)(p - host);
    }
    if (host_len == 0) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL has no host");
    }
    if (host_len >= WS_HOST_BYTES_MAX) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL: host longer than %d bytes",
                          WS_HOST_BYTES_MAX - 1);
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (ipv6) {
        /* bounded: host < WS_HOST_BYTES_MAX (checked), host_header has 2 more */
        snprintf(out->host_header, sizeof out->host_header, "[%s]", out->host);
    } else {
        memcpy(out->host_header, out->host, host_len + 1);
    }

    if (*p == ':') {
        p++;
        long port = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            port = port * 10 + (*p - '0');
            p++;
            if (++digits > 5) {
                break;
            }
        }
        if (digits == 0 || digits > 5 || port < 1 || port > 65535 ||
            (*p != '\0' && *p != '/' && *p != '?')) {
            return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL: port must be 1..65535");
        }
        out->port = (int)port;
    } else if (*p != '\0' && *p != '/' && *p != '?') {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "WS URL: bad character after the host");
    }

    /* path + query; "?q" alone becomes "/?q", nothing becomes "/" */
    size_t rest = strlen(p);
    for (size_t i = 0; i < rest; i++) {
        if (!path_char_ok((unsigned char)p[i])) {
            return cq_err_set(err, CQ_EINVAL, 0, "percent-encode it",
                              "WS URL: bad character (0x%02x) in the path",
                              (unsigned)(unsigned char)p[i]);
        }
    }
    bool add_slash = rest == 0 || p[0] == '?';
    out->path = malloc(rest + 2);
    if (out->path == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "WS URL: out of memory");
    }
    size_t o = 0;
    if (add_slash) {
        out->path[o++] = '/';
    }
    memcpy(out->path + o, p, rest);
    out->path[o + rest] = '\0';
    return 0;
}

static void url_fini(struct ws_url *u)
{
    free(u->path);
    u->path = NULL;
}

/* ---- stats ------------------------------------------------------------------ */

/* Publish the owner's view of state and timers. Owner thread. */
static void stats_publish(struct cq_ws_client *c)
{
    pthread_mutex_lock(&c->stats_mu);
    c->stats.state = c->state;
    c->stats.connected_since_mono_ms = c->state == CQ_WS_CONNECTED ? c->connected_since_ms : 0;
    c->stats.backoff_ms = c->backoff_cap_ms;
    c->stats_next_attempt_ms = c->next_attempt_ms;
    pthread_mutex_unlock(&c->stats_mu);
}

void cq_ws_client_stats(struct cq_ws_client *c, struct cq_ws_client_stats *out)
{
    pthread_mutex_lock(&c->stats_mu);
    *out = c->stats;
    int64_t next = c->stats_next_attempt_ms;
    pthread_mutex_unlock(&c->stats_mu);
    out->next_attempt_in_ms = 0;
    if (out->state == CQ_WS_BACKOFF) {
        int64_t left = next - now_ms(c); /* the clock is callable from any thread */
        out->next_attempt_in_ms = left > 0 ? left : 0;
    }
}

json_t *cq_ws_client_stats_json(const struct cq_ws_client_stats *s)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "state",
                     cq_ws_state_name(s->state), "connects_total", (json_int_t)s->connects_total,
                     "connect_failures_total", (json_int_t)s->connect_failures_total,
                     "disconnects_total", (json_int_t)s->disconnects_total, "stalls_total",
                     (json_int_t)s->stalls_total, "silences_total", (json_int_t)s->silences_total,
                     "last_rx_mono_ms", (json_int_t)s->last_rx_mono_ms, "lifetime_reconnects_total",
                     (json_int_t)s->lifetime_reconnects_total, "messages_total",
                     (json_int_t)s->messages_total, "bytes_total", (json_int_t)s->bytes_total,
                     "oversize_total", (json_int_t)s->oversize_total, "last_message_mono_ms",
                     (json_int_t)s->last_message_mono_ms, "connected_since_mono_ms",
                     (json_int_t)s->connected_since_mono_ms, "next_attempt_in_ms",
                     (json_int_t)s->next_attempt_in_ms, "backoff_ms", (json_int_t)s->backoff_ms);
}

/* ---- buffers ---------------------------------------------------------------- */

static void tx_clear(struct cq_ws_client *c)
{
    while (c->tx_count > 0) {
        free(c->tx[c->tx_head]);
        c->tx[c->tx_head] = NULL;
        c->tx_head = (c->tx_head + 1) % WS_SEND_FRAMES_MAX;
        c->tx_count--;
    }
    c->tx_head = 0;
    c->tx_bytes = 0;
}

static void rx_reset(struct cq_ws_client *c)
{
    cq_buf_reset(&c->rx);
}

/* ---- the state machine -------------------------------------------------------- */

static void notify_state(struct cq_ws_client *c, const char *reason)
{
    if (c->cb.on_state != NULL) {
        c->cb.on_state(c->cb.ctx, c->state, reason);
    }
}

/* Detach the current connection and let lws finish it (see "Closing"). */
static void detach_wsi(struct cq_ws_client *c)
{
    struct lws *w = c->wsi;
    if (w == NULL) {
        return;
    }
    c->wsi = NULL;
    lws_set_opaque_user_data(w, NULL);
    if (c->state == CQ_WS_CONNECTED) {
        lws_callback_on_writable(w); /* sends the close frame */
        lws_set_timeout(w, PENDING_TIMEOUT_USER_OK, WS_CLOSE_GRACE_S);
    } else {
        lws_set_timeout(w, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* Draw the next delay; advances the exponential step. */
static int64_t backoff_draw(struct cq_ws_client *c)
{
    int64_t cap = c->backoff_base_ms;
    for (unsigned i = 0; i < c->backoff_n && cap < c->backoff_max_ms; i++) {
        cap *= 2;
    }
    if (cap > c->backoff_max_ms) {
        cap = c->backoff_max_ms;
    }
    if (c->backoff_n < 64) {
        c->backoff_n++;
    }
    c->backoff_cap_ms = cap;
    return (int64_t)(splitmix64(&c->rng) % (uint64_t)(cap + 1)); /* full jitter */
}

/*
 * The connection (or attempt) is over; c->wsi is already detached or gone.
 * immediate: reconnect now ("lifetime", "url_changed") instead of backing off.
 * error: lws's description of a failed attempt, or NULL.
 */
static void went_down(struct cq_ws_client *c, const char *reason, bool immediate, const char *error)
{
    int64_t now = now_ms(c);
    bool was_connected = c->state == CQ_WS_CONNECTED;
    int64_t uptime_ms = was_connected ? now - c->connected_since_ms : 0;
    int close_code = c->close_code;
    c->wsi = NULL;
    c->close_code = 0;
    rx_reset(c);
    tx_clear(c);
    if (was_connected && uptime_ms >= WS_BACKOFF_RESET_AFTER_MS) {
        c->backoff_n = 0;
    }
    int64_t delay_ms = 0;
    if (!immediate) {
        delay_ms = backoff_draw(c);
    }
    c->state = delay_ms > 0 ? CQ_WS_BACKOFF : CQ_WS_CONNECTING;
    c->next_attempt_ms = now + delay_ms;
    c->connected_since_ms = 0;

    pthread_mutex_lock(&c->stats_mu);
    if (was_connected) {
        c->stats.disconnects_total++;
    } else {
        c->stats.connect_failures_total++;
    }
    pthread_mutex_unlock(&c->stats_mu);
    stats_publish(c);

    uint64_t suppressed = 0;
    enum cq_log_level level = was_connected ? CQ_LOG_INFO : CQ_LOG_WARN;
    if (cq_log_enabled(level) && cq_log_ratelimit_allow(&c->rl_disconnected, now, &suppressed)) {
        cq_log__emit(level, WS_SERVICE, "ws_disconnected",
                     json_pack("{s:s,s:s,s:I,s:i,s:s?,s:I}", "client", c->name, "reason", reason,
                               "uptime_ms", (json_int_t)uptime_ms, "close_code", close_code,
                               "error", error, "suppressed", (json_int_t)suppressed),
                     "WS %s %s: %s", c->name, was_connected ? "disconnected" : "could not connect",
                     reason);
    }
    if (cq_log_enabled(CQ_LOG_INFO) && cq_log_ratelimit_allow(&c->rl_scheduled, now, &suppressed)) {
        cq_log_info(WS_SERVICE, "ws_reconnect_scheduled",
                    json_pack("{s:s,s:s,s:I,s:I,s:I}", "client", c->name, "reason", reason,
                              "backoff_ms", (json_int_t)delay_ms, "cap_ms",
                              (json_int_t)(immediate ? 0 : c->backoff_cap_ms), "suppressed",
                              (json_int_t)suppressed),
                    "WS %s reconnects in %" PRId64 " ms", c->name, delay_ms);
    }
    notify_state(c, reason);
}

/* Close the current connection from our side and go down with reason. */
static void close_and_go_down(struct cq_ws_client *c, const char *reason, bool immediate)
{
    detach_wsi(c);
    went_down(c, reason, immediate, NULL);
}

static void launch(struct cq_ws_client *c)
{
    int64_t now = now_ms(c);
    c->state = CQ_WS_CONNECTING;
    c->attempt_started_ms = now;
    c->close_code = 0;
    stats_publish(c);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->loop->ctx;
    ci.address = c->url.host;
    ci.port = c->url.port;
    ci.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
    ci.path = c->url.path;
    ci.host = c->url.host_header; /* no port: lws also takes SNI from it */
    ci.origin = c->url.host_header;
    ci.local_protocol_name = WS_PROTOCOL_NAME;
    ci.alpn = "http/1.1"; /* never ws-over-h2 */
    ci.opaque_user_data = c;

    c->in_connect = true;
    c->connect_error = false;
    struct lws *w = lws_client_connect_via_info(&ci);
    c->in_connect = false;
    if (c->connect_error) {
        return; /* the CONNECTION_ERROR callback already went down */
    }
    if (w == NULL) {
        went_down(c, "connect_failed", false, "lws_client_connect_via_info failed");
        return;
    }
    c->wsi = w;
}

/* The kernel's count of bytes received on the connection's socket, or false
 * when it has none (not TCP, or Linux < 4.1: the field is missing). */
static bool socket_rx_bytes(struct lws *wsi, uint64_t *out)
{
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd < 0) {
        return false;
    }
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received) {
        return false;
    }
    *out = ti.tcpi_bytes_received;
    return true;
}

/* Stamp last_rx_ms with now if bytes (a ping, part of a message) arrived
 * since the last look. Owner thread, CONNECTED. */
static void sample_rx(struct cq_ws_client *c, int64_t now)
{
    uint64_t bytes = 0;
    if (c->wsi == NULL || !socket_rx_bytes(c->wsi, &bytes) || bytes == c->rx_bytes_seen) {
        return;
    }
    c->rx_bytes_seen = bytes;
    c->last_rx_ms = now;
    pthread_mutex_lock(&c->stats_mu);
    c->stats.last_rx_mono_ms = now;
    pthread_mutex_unlock(&c->stats_mu);
}

/* Run one client's timers. Owner thread, outside lws callbacks. */
static void client_timers(struct cq_ws_client *c)
{
    int64_t now = now_ms(c);
    switch (c->state) {
    case CQ_WS_IDLE:
        return;
    case CQ_WS_BACKOFF:
        if (now >= c->next_attempt_ms) {
            launch(c);
        }
        return;
    case CQ_WS_CONNECTING:
        if (c->wsi == NULL) {
            launch(c); /* start(), or an immediate reconnect */
        } else if (now - c->attempt_started_ms >= c->connect_timeout_ms) {
            detach_wsi(c);
            went_down(c, "connect_failed", false, "connect timeout");
        }
        return;
    case CQ_WS_CONNECTED: {
        sample_rx(c, now);
        int64_t quiet_since =
            c->last_message_ms > c->connected_since_ms ? c->last_message_ms : c->connected_since_ms;
        int64_t silent_since =
            c->last_rx_ms > c->connected_since_ms ? c->last_rx_ms : c->connected_since_ms;
        if (c->stall_ms != CQ_WS_STALL_NONE && now - quiet_since >= c->stall_ms) {
            pthread_mutex_lock(&c->stats_mu);
            c->stats.stalls_total++;
            pthread_mutex_unlock(&c->stats_mu);
            uint64_t suppressed = 0;
            if (cq_log_enabled(CQ_LOG_WARN) &&
                cq_log_ratelimit_allow(&c->rl_other, now, &suppressed)) {
                cq_log_warn(WS_SERVICE, "ws_stall_detected",
                            json_pack("{s:s,s:I,s:I,s:I}", "client", c->name, "silent_ms",
                                      (json_int_t)(now - quiet_since), "stall_ms",
                                      (json_int_t)c->stall_ms, "suppressed",
                                      (json_int_t)suppressed),
                            "WS %s: no message for %" PRId64 " ms: reconnecting", c->name,
                            now - quiet_since);
            }
            close_and_go_down(c, "stall", false);
        } else if (now - silent_since >= c->silence_ms) {
            pthread_mutex_lock(&c->stats_mu);
            c->stats.silences_total++;
            pthread_mutex_unlock(&c->stats_mu);
            uint64_t suppressed = 0;
            if (cq_log_enabled(CQ_LOG_WARN) &&
                cq_log_ratelimit_allow(&c->rl_other, now, &suppressed)) {
                cq_log_warn(WS_SERVICE, "ws_silence_detected",
                            json_pack("{s:s,s:I,s:I,s:I}", "client", c->name, "silent_ms",
                                      (json_int_t)(now - silent_since), "silence_ms",
                                      (json_int_t)c->silence_ms, "suppressed",
                                      (json_int_t)suppressed),
                            "WS %s: nothing received, not even a ping, for %" PRId64
                            " ms: the connection is dead: reconnecting",
                            c->name, now - silent_since);
            }
            close_and_go_down(c, "silence", false);
        } else if (now - c->connected_since_ms >= c->max_lifetime_ms) {
            pthread_mutex_lock(&c->stats_mu);
            c->stats.lifetime_reconnects_total++;
            pthread_mutex_unlock(&c->stats_mu);
            uint64_t suppressed = 0;
            if (cq_log_enabled(CQ_LOG_INFO) &&
                cq_log_ratelimit_allow(&c->rl_other, now, &suppressed)) {
                cq_log_info(WS_SERVICE, "ws_lifetime_reconnect",
                            json_pack("{s:s,s:I,s:I,s:I}", "client", c->name, "uptime_ms",
                                      (json_int_t)(now - c->connected_since_ms), "max_lifetime_ms",
                                      (json_int_t)c->max_lifetime_ms, "suppressed",
                                      (json_int_t)suppressed),
                            "WS %s reached its maximum lifetime: reconnecting", c->name);
            }
            close_and_go_down(c, "lifetime", true);
        }
        return;
    }
    }
}

/* Milliseconds until this client's next timer is due (INT64_MAX: none). */
static int64_t client_due_in_ms(const struct cq_ws_client *c, int64_t now)
{
    switch (c->state) {
    case CQ_WS_IDLE:
        return INT64_MAX;
    case CQ_WS_BACKOFF:
        return c->next_attempt_ms - now;
    case CQ_WS_CONNECTING:
        if (c->wsi == NULL) {
            return 0;
        }
        return c->attempt_started_ms + c->connect_timeout_ms - now;
    case CQ_WS_CONNECTED: {
        int64_t quiet_since =
            c->last_message_ms > c->connected_since_ms ? c->last_message_ms : c->connected_since_ms;
        int64_t silent_since =
            c->last_rx_ms > c->connected_since_ms ? c->last_rx_ms : c->connected_since_ms;
        int64_t due = c->connected_since_ms + c->max_lifetime_ms - now;
        int64_t silence = silent_since + c->silence_ms - now;
        if (silence < due) {
            due = silence;
        }
        if (c->stall_ms != CQ_WS_STALL_NONE && quiet_since + c->stall_ms - now < due) {
            due = quiet_since + c->stall_ms - now;
        }
        return due;
    }
    }
    return INT64_MAX;
}

static void loop_timers(struct cq_ws_loop *loop)
{
    for (struct cq_ws_client *c = loop->clients; c != NULL; c = c->next) {
        client_timers(c);
    }
}

/* ---- lws callbacks ------------------------------------------------------------- */

/* The client this wsi is the current connection of, or NULL if detached. */
static struct cq_ws_client *client_of(struct lws *wsi)
{
    struct cq_ws_client *c = lws_get_opaque_user_data(wsi);
    if (c == NULL) {
        return NULL;
    }
    if (c->wsi != wsi && !c->in_connect) {
        return NULL;
    }
    return c;
}

static void on_established(struct cq_ws_client *c)
{
    int64_t now = now_ms(c);
    c->state = CQ_WS_CONNECTED;
    c->connected_since_ms = now;
    c->last_message_ms = 0;
    c->last_rx_ms = 0;
    c->rx_bytes_seen = 0;
    if (c->wsi != NULL) {
        (void)socket_rx_bytes(c->wsi, &c->rx_bytes_seen); /* the handshake's bytes */
    }
    c->close_code = 0;
    rx_reset(c);
    pthread_mutex_lock(&c->stats_mu);
    c->stats.connects_total++;
    pthread_mutex_unlock(&c->stats_mu);
    stats_publish(c);
    uint64_t suppressed = 0;
    if (cq_log_enabled(CQ_LOG_INFO) && cq_log_ratelimit_allow(&c->rl_connected, now, &suppressed)) {
        cq_log_info(WS_SERVICE, "ws_connected",
                    json_pack("{s:s,s:s,s:i,s:b,s:I,s:I}", "client", c->name, "host", c->url.host,
                              "port", c->url.port, "tls", c->url.tls, "connect_ms",
                              (json_int_t)(now - c->attempt_started_ms), "suppressed",
                              (json_int_t)suppressed),
                    "WS %s connected to %s:%d", c->name, c->url.host, c->url.port);
    }
    notify_state(c, "connected");
}

/* Returns the lws callback result: -1 closes wsi. */
static int on_receive(struct cq_ws_client *c, struct lws *wsi, const void *in, size_t len)
{
    size_t seen = c->rx.len + len;
    if (!cq_buf_put(&c->rx, in, len)) { /* over max_message_bytes (or out of memory) */
        int64_t now = now_ms(c);
        pthread_mutex_lock(&c->stats_mu);
        c->stats.oversize_total++;
        pthread_mutex_unlock(&c->stats_mu);
        uint64_t suppressed = 0;
        if (cq_log_enabled(CQ_LOG_WARN) && cq_log_ratelimit_allow(&c->rl_other, now, &suppressed)) {
            cq_log_warn(WS_SERVICE, "ws_oversize",
                        json_pack("{s:s,s:I,s:I,s:I}", "client", c->name, "max_message_bytes",
                                  (json_int_t)c->max_message_bytes, "bytes_at_least",
                                  (json_int_t)(seen + lws_remaining_packet_payload(wsi)),
                                  "suppressed", (json_int_t)suppressed),
                        "WS %s: message larger than %zu bytes dropped: reconnecting", c->name,
                        c->max_message_bytes);
        }
        c->wsi = NULL;
        lws_set_opaque_user_data(wsi, NULL);
        static const char why[] = "message too large";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
                         sizeof why - 1);
        went_down(c, "oversize", false, NULL);
        return -1;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) {
        return 0;
    }
    /* one complete message */
    size_t n = c->rx.len;
    if (lws_frame_is_binary(wsi)) {
        rx_reset(c);
        return 0; /* Binance sends text only */
    }
    int64_t now = now_ms(c);
    c->last_message_ms = now;
    c->last_rx_ms = now;
    pthread_mutex_lock(&c->stats_mu);
    c->stats.messages_total++;
    c->stats.bytes_total += n;
    c->stats.last_message_mono_ms = now;
    c->stats.last_rx_mono_ms = now;
    pthread_mutex_unlock(&c->stats_mu);
    if (c->cb.on_message != NULL) {
        c->cb.on_message(c->cb.ctx, c->rx.p, n, now); /* NUL-terminated */
    }
    rx_reset(c);
    return c->wsi == wsi ? 0 : -1; /* the callback may have stopped or moved us */
}

static int on_writeable(struct cq_ws_client *c, struct lws *wsi)
{
    if (c->tx_count == 0) {
        return 0;
    }
    struct tx_frame *f = c->tx[c->tx_head];
    c->tx[c->tx_head] = NULL;
    c->tx_head = (c->tx_head + 1) % WS_SEND_FRAMES_MAX;
    c->tx_count--;
    c->tx_bytes -= f->len;
    int n = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
    bool ok = n >= 0 && (size_t)n >= f->len;
    free(f);
    if (!ok) {
        return -1; /* CLIENT_CLOSED follows */
    }
    if (c->tx_count > 0) {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)user;
    struct cq_ws_client *c;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        c = client_of(wsi);
        if (c != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            c->connect_error = c->in_connect;
            char error[160] = "connection error";
            if (in != NULL && len > 0) {
                size_t n = len < sizeof error - 1 ? len : sizeof error - 1;
                memcpy(error, in, n);
                error[n] = '\0';
            } else if (in != NULL) {
                /* lws's description, logged only: a cut one stays readable */
                cq_strlcpy(error, in, sizeof error);
            }
            went_down(c, "connect_failed", false, error);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c = client_of(wsi);
        if (c == NULL) {
            return -1;
        }
        on_established(c);
        return c->wsi == wsi ? 0 : -1;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        c = client_of(wsi);
        if (c == NULL) {
            return -1;
        }
        return on_receive(c, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        c = client_of(wsi);
        if (c == NULL) { /* detached by us: say goodbye */
            lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
            return -1;
        }
        return on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        c = client_of(wsi);
        if (c != NULL && in != NULL && len >= 2) {
            const unsigned char *p = in;
            c->close_code = (p[0] << 8) | p[1];
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY: /* a backstop: a wsi that dies without CLOSED */
        c = client_of(wsi);
        if (c != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            c->connect_error = c->in_connect;
            c->wsi = NULL;
            if (c->state == CQ_WS_CONNECTED) {
                went_down(c, "closed_by_peer", false, NULL);
            } else {
                went_down(c, "connect_failed", false, "closed during the handshake");
            }
        }
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols[] = {
    {WS_PROTOCOL_NAME, ws_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- the loop ----------------------------------------------------------------- */

static void wait_sul_cb(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only ends the poll */
}

struct cq_ws_loop *cq_ws_loop_new(struct cq_err *err)
{
    struct cq_ws_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "WS client: out of memory");
        return NULL;
    }
    cq_lws_log_route();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN; /* client-only vhost */
    info.protocols = ws_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* wss:// (OS CA store) */
    info.user = loop;
    info.fd_limit_per_thread = WS_FD_LIMIT;
    info.pt_serv_buf_size = WS_SERV_BUF_BYTES;
    info.gid = -1;
    info.uid = -1;
    loop->ctx = lws_create_context(&info);
    if (loop->ctx == NULL) {
        cq_err_set(err, CQ_EIO, 0, NULL, "WS client: lws_create_context failed");
        free(loop);
        return NULL;
    }
    return loop;
}

void cq_ws_loop_free(struct cq_ws_loop *loop)
{
    if (loop == NULL) {
        return;
    }
    /* Detach every connection first: lws_context_destroy runs CLOSED callbacks. */
    for (struct cq_ws_client *c = loop->clients; c != NULL; c = c->next) {
        if (c->wsi != NULL) {
            lws_set_opaque_user_data(c->wsi, NULL);
            c->wsi = NULL;
        }
    }
    lws_sul_cancel(&loop->wait_sul);
    lws_context_destroy(loop->ctx);
    loop->ctx = NULL;
    while (loop->clients != NULL) {
        cq_ws_client_free(loop->clients);
    }
    free(loop);
}

int cq_ws_loop_service(struct cq_ws_loop *loop, int timeout_ms)
{
    loop_timers(loop);

    int64_t wait_ms = timeout_ms > 0 ? timeout_ms : 0;
    if (wait_ms > WS_SERVICE_WAIT_MS_MAX) {
        wait_ms = WS_SERVICE_WAIT_MS_MAX;
    }
    for (struct cq_ws_client *c = loop->clients; c != NULL && wait_ms > 0; c = c->next) {
        int64_t due = client_due_in_ms(c, now_ms(c));
        if (due < wait_ms) {
            wait_ms = due > 0 ? due : 0;
        }
    }
    int n;
    if (wait_ms <= 0) {
        n = lws_service(loop->ctx, -1); /* poll without waiting */
    } else {
        /* lws 4.1 waits for its next timer, whatever the timeout says */
        lws_sul_schedule(loop->ctx, 0, &loop->wait_sul, wait_sul_cb,
                         (lws_usec_t)wait_ms * LWS_US_PER_MS);
        n = lws_service(loop->ctx, 0);
        lws_sul_cancel(&loop->wait_sul);
    }

    loop_timers(loop);
    return n < 0 ? -CQ_EIO : 0;
}

void cq_ws_loop_wake(struct cq_ws_loop *loop)
{
    lws_cancel_service(loop->ctx);
}

/* ---- clients ------------------------------------------------------------------- */

static int64_t opt_ms(int64_t v, int64_t dflt)
{
    return v == 0 ? dflt : v;
}

struct cq_ws_client *cq_ws_client_new(struct cq_ws_loop *loop,
                                      const struct cq_ws_client_options *opts,
                                      const struct cq_ws_callbacks *cb, struct cq_err *err)
{
    if (loop == NULL || opts == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, NULL, "WS client: loop and options are required");
        return NULL;
    }
    struct cq_ws_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "WS client: out of memory");
        return NULL;
    }
    if (url_parse(opts->url, &c->url, err) < 0) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    const char *name = opts->name != NULL && opts->name[0] != '\0' ? opts->name : "ws";
    if (cq_strlcpy(c->name, name, sizeof c->name) >= sizeof c->name) {
        cq_err_set(err, CQ_EINVAL, 0, "use a name under 32 characters",
                   "WS client: name '%.40s' is too long", name);
        url_fini(&c->url);
        free(c);
        return NULL;
    }
    if (cb != NULL) {
        c->cb = *cb;
    }
    c->clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    c->connect_timeout_ms = opt_ms(opts->connect_timeout_ms, WS_CONNECT_TIMEOUT_MS_DEFAULT);
    c->stall_ms = opts->stall_ms; /* no default: see CQ_WS_STALL_NONE */
    c->silence_ms = opt_ms(opts->silence_ms, CQ_WS_SILENCE_DEFAULT_MS);
    c->backoff_base_ms = opt_ms(opts->backoff_base_ms, WS_BACKOFF_BASE_MS_DEFAULT);
    c->backoff_max_ms = opt_ms(opts->backoff_max_ms, WS_BACKOFF_MAX_MS_DEFAULT);
    c->max_lifetime_ms = opt_ms(opts->max_lifetime_ms, WS_MAX_LIFETIME_MS_DEFAULT);
    c->max_message_bytes =
        opts->max_message_bytes != 0 ? opts->max_message_bytes : WS_MAX_MESSAGE_BYTES_DEFAULT;
    cq_buf_init(&c->rx, c->max_message_bytes + 1);
    const char *bad = NULL;
    if (c->stall_ms == 0) {
        cq_err_set(err, CQ_EINVAL, 0,
                   "pass CQ_WS_STALL_NONE for no stall check, or a time in ms "
                   "(CQ_WS_STALL_DEFAULT_MS for the usual 10 s)",
                   "WS client %s: stall_ms is 0, which has no meaning", c->name);
        cq_buf_free(&c->rx);
        url_fini(&c->url);
        free(c);
        return NULL;
    }
    if (c->connect_timeout_ms < 0) {
        bad = "connect_timeout_ms";
    } else if (c->stall_ms < 0 && c->stall_ms != CQ_WS_STALL_NONE) {
        bad = "stall_ms (> 0, or CQ_WS_STALL_NONE)";
    } else if (c->silence_ms < 0) {
        bad = "silence_ms";
    } else if (c->backoff_base_ms < 0) {
        bad = "backoff_base_ms";
    } else if (c->backoff_max_ms < c->backoff_base_ms) {
        bad = "backoff_max_ms (must be >= backoff_base_ms)";
    } else if (c->max_lifetime_ms < 0) {
        bad = "max_lifetime_ms";
    } else if (c->max_message_bytes > ((size_t)1 << 30)) {
        bad = "max_message_bytes (at most 1 GiB)";
    }
    if (bad != NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "0 means the default", "WS client %s: invalid %s", c->name,
                   bad);
        url_fini(&c->url);
        free(c);
        return NULL;
    }
    c->rng = opts->jitter_seed != 0
                 ? opts->jitter_seed
                 : (uint64_t)cq_clock_wall_us(c->clock) ^ ((uint64_t)(uintptr_t)c << 16);
    ratelimit_init(&c->rl_connected);
    ratelimit_init(&c->rl_disconnected);
    ratelimit_init(&c->rl_scheduled);
    ratelimit_init(&c->rl_other);
    c->state = CQ_WS_IDLE;
    pthread_mutex_init(&c->stats_mu, NULL);
    c->stats.state = CQ_WS_IDLE;

    c->next = loop->clients;
    loop->clients = c;
    return c;
}

void cq_ws_client_free(struct cq_ws_client *c)
{
    if (c == NULL) {
        return;
    }
    detach_wsi(c); /* lws closes it at its next service (or context destroy) */
    for (struct cq_ws_client **pp = &c->loop->clients; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    tx_clear(c);
    cq_buf_free(&c->rx);
    url_fini(&c->url);
    pthread_mutex_destroy(&c->stats_mu);
    free(c);
}

int cq_ws_client_start(struct cq_ws_client *c)
{
    if (c->state != CQ_WS_IDLE) {
        return 0; /* already running */
    }
    c->state = CQ_WS_CONNECTING; /* wsi == NULL: the next timer pass connects */
    c->backoff_n = 0;
    c->backoff_cap_ms = 0;
    c->next_attempt_ms = now_ms(c);
    stats_publish(c);
    return 0;
}

void cq_ws_client_stop(struct cq_ws_client *c)
{
    if (c->state == CQ_WS_IDLE) {
        return;
    }
    int64_t now = now_ms(c);
    bool was_connected = c->state == CQ_WS_CONNECTED;
    int64_t uptime_ms = was_connected ? now - c->connected_since_ms : 0;
    detach_wsi(c);
    rx_reset(c);
    tx_clear(c);
    c->state = CQ_WS_IDLE;
    c->connected_since_ms = 0;
    c->backoff_cap_ms = 0;
    if (was_connected) {
        pthread_mutex_lock(&c->stats_mu);
        c->stats.disconnects_total++;
        pthread_mutex_unlock(&c->stats_mu);
        cq_log_info(WS_SERVICE, "ws_disconnected",
                    json_pack("{s:s,s:s,s:I}", "client", c->name, "reason", "stopped", "uptime_ms",
                              (json_int_t)uptime_ms),
                    "WS %s stopped", c->name);
    }
    stats_publish(c);
    notify_state(c, "stopped");
}

int cq_ws_client_set_url(struct cq_ws_client *c, const char *url, struct cq_err *err)
{
    struct ws_url u;
    int rc = url_parse(url, &u, err);
    if (rc < 0) {
        return rc; /* the caller logs it, where it is handled */
    }
    url_fini(&c->url);
    c->url = u;
    if (c->state != CQ_WS_IDLE) {
        close_and_go_down(c, "url_changed", true);
    }
    return 0;
}

void cq_ws_client_reconnect(struct cq_ws_client *c, const char *reason)
{
    if (c->state == CQ_WS_IDLE) {
        return;
    }
    close_and_go_down(c, reason != NULL ? reason : "closed_by_peer", false);
}

int cq_ws_client_send(struct cq_ws_client *c, const char *text, size_t len)
{
    if (c->state != CQ_WS_CONNECTED || c->wsi == NULL) {
        return -CQ_ESTATE;
    }
    if (text == NULL || len == 0) {
        return -CQ_EINVAL;
    }
    if (len > WS_SEND_BYTES_MAX) {
        return -CQ_ETOOBIG;
    }
    if (c->tx_count >= WS_SEND_FRAMES_MAX || len > WS_SEND_BYTES_MAX - c->tx_bytes) {
        return -CQ_EFULL;
    }
    struct tx_frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (f == NULL) {
        return -CQ_ENOMEM;
    }
    f->len = len;
    memcpy(f->buf + LWS_PRE, text, len);
    c->tx[(c->tx_head + c->tx_count) % WS_SEND_FRAMES_MAX] = f;
    c->tx_count++;
    c->tx_bytes += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}
