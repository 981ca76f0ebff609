/*
 * api.c — the admin API's lifecycle and its HTTP layer: cq_api_new/start/
 * stop/free, and the libmicrohttpd callbacks that turn a request into a
 * struct cq_api_request for the router (router.c) and its answer back into
 * an HTTP response.
 *
 * Threading design
 *   - cq_api_start (supervisor only) binds the socket and starts
 *     libmicrohttpd with MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO: one
 *     thread, owned by libmicrohttpd, runs epoll/poll and calls every
 *     callback below. cq_api_stop joins it (MHD_stop_daemon).
 *   - Handlers never touch engine state. They read the health board (which
 *     has its own mutex and hands out copies), take a reference to the
 *     current config with cq_config_current_get (and unref it before
 *     returning), read the log stats and our own atomic counters. Commands
 *     to the engine, when later issues add them, will go through a queue.
 *   - Nothing here blocks on engine locks: the longest wait is the health
 *     board's mutex, held only while a record is copied.
 *
 * Limits (every one bounded)
 *   - connections, in two tiers (accept_policy decides, notify_connection
 *     records it in a struct api_conn on the connection's socket context):
 *       ordinary: at most max_connections, and at most
 *         max_connections_per_peer from one IP address;
 *       reserve: when the pool or the peer's share is full, up to
 *         reserve_connections more. A reserve slot answers GET/HEAD /health
 *         and /readiness; anything else gets a fast 503 busy with
 *         Retry-After; one answer, then the connection closes. A reserve
 *         connection whose request head is not complete is evicted (closed)
 *         when a newcomer finds the reserve full, so slow clients cannot
 *         hold it against a health check.
 *     Beyond both, the connection is accepted and closed at once (counted as
 *     connections_rejected, "api_connection_rejected" rate-limited).
 *     libmicrohttpd's own limit is set above the sum so that our policy, not
 *     the kernel backlog, decides.
 *   - time: every exchange (request head, body and answer) must end within
 *     request_deadline_ms (reserve: reserve_deadline_ms) of accept, or of the
 *     end of the previous exchange on a kept-alive connection.
 *     CQ_ADMIN_TIMEOUT_S stays the inactivity timeout inside that. There is
 *     no timer of our own: every accept and every request line sweeps the
 *     list and shuts down (shutdown(2); libmicrohttpd then sees EOF and
 *     closes) what is past its deadline, so slots are freed exactly when
 *     someone needs one ("api_slow_connection_closed", rate-limited).
 *   - headers and URL: MHD_OPTION_CONNECTION_MEMORY_LIMIT per connection
 *     (libmicrohttpd answers 431/414 itself when they do not fit).
 *   - body: counted as it arrives by the reader the simulator shares
 *     (cq/http_body.h; nothing is kept); over max_body_bytes (or a
 *     Content-Length announcing more) the router answers 413 without looking
 *     at it, counted in bodies_refused. A client that keeps sending more than
 *     CQ_HTTP_BODY_DISCARD_MAX_BYTES after that is disconnected. A
 *     Transfer-Encoding other than chunked gets 400 and close (the body's
 *     end could not be found).
 *   - a NUL in the percent-decoded path (%00) gets 400: libmicrohttpd would
 *     hand us the path cut at the NUL. Seen in the raw request target
 *     (MHD_OPTION_URI_LOG_CALLBACK, which also allocates the per-request
 *     state). A NUL inside a header name or value gets 400 too
 *     (header_has_nul).
 *
 * libmicrohttpd's own messages go to cq_log as event "mhd_error", rate
 * limited like the other noisy events (with the suppressed count) and
 * counted (mhd_errors, coinquant_api_mhd_errors_total).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "api-int.h"
#include "cq/fs.h"
#include "cq/http_body.h"
#include "cq/log.h"
#include "cq/version.h"

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_TIMEOUT_S 10
/* Per-connection memory for the request line, headers and read buffer. */
#define CONNECTION_MEMORY_BYTES ((size_t)32 * 1024)

/* One open connection (socket context). */
struct api_conn {
    struct api_conn *prev, *next;
    int fd;
    unsigned char peer[16]; /* IPv4 (also when mapped into IPv6) or IPv6 */
    size_t peer_len;
    enum cq_api_tier tier;
    int64_t exchange_start_ms; /* accept, or the end of the previous exchange */
    uint64_t seq;              /* order of arrival (the oldest is evicted first) */
    bool head_done;            /* the current request's head has arrived */
    bool doomed;               /* shut down; libmicrohttpd closes it soon */
};

/* ---- lifecycle ------------------------------------------------------------------ */

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = strdup(s);
    if (d == NULL) {
        *failed = true;
    }
    return d;
}

struct cq_api *cq_api_new(const struct cq_api_options *opts, struct cq_err *err)
{
    if (opts == NULL || opts->board == NULL || opts->config == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "pass the health board and the current config",
                   "cq_api_new needs a health board and a config");
        return NULL;
    }
    if (opts->bind != NULL) {
        char host[256];
        int port = 0;
        if (cq_hostport_parse(opts->bind, host, sizeof(host), &port, err) < 0) {
            return NULL;
        }
    }
    struct cq_api *api = calloc(1, sizeof(*api));
    if (api == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the admin API");
        return NULL;
    }
    bool failed = false;
    api->board = opts->board;
    api->config = opts->config;
    api->clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    api->version = dup_or_null(opts->version != NULL ? opts->version : cq_version(), &failed);
    /* in a secret buffer (fs.h): out of core dumps, wiped on free */
    api->token = cq_secret_dup(opts->token != NULL ? opts->token : "");
    failed = failed || api->token == NULL;
    api->bind = dup_or_null(opts->bind, &failed);
    api->data_dir = dup_or_null(opts->data_dir, &failed);
    api->max_connections =
        opts->max_connections > 0 ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
    api->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    api->max_body_bytes = opts->max_body_bytes;
    api->trader_view = opts->trader_view;
    api->trader_command = opts->trader_command;
    api->trader_ctx = opts->trader_ctx;
    api->request_deadline_ms =
        opts->request_deadline_ms > 0 ? opts->request_deadline_ms : CQ_API_REQUEST_DEADLINE_MS;
    api->reserve_connections =
        opts->reserve_connections > 0 ? opts->reserve_connections : CQ_API_RESERVE_CONNECTIONS;
    api->reserve_deadline_ms =
        opts->reserve_deadline_ms > 0 ? opts->reserve_deadline_ms : CQ_API_RESERVE_DEADLINE_MS;
    if (opts->max_connections_per_peer > 0) {
        api->max_connections_per_peer = opts->max_connections_per_peer;
    } else {
        api->max_connections_per_peer = api->max_connections / CQ_API_PEER_SHARE_DIVISOR;
        if (api->max_connections_per_peer == 0) {
            api->max_connections_per_peer = 1;
        }
    }
    if (api->max_connections_per_peer > api->max_connections) {
        api->max_connections_per_peer = api->max_connections;
    }
    if (opts->bind != NULL) {
        int port = 0;
        /* parsed above already: cannot fail; the host fits (cq_hostport_parse
         * refuses a host that does not fit the buffer) */
        if (cq_hostport_parse(opts->bind, api->bind_host, sizeof(api->bind_host), &port, NULL) ==
            0) {
            api->loopback_bind = cq_host_is_loopback(api->bind_host);
        }
    }
    api->created_mono_ms = cq_clock_mono_ms(api->clock);
    api->auth_log_rl.window_ms = CQ_MS_PER_MINUTE;
    api->auth_log_rl.burst = 5;
    api->conn_log_rl.window_ms = CQ_MS_PER_MINUTE;
    api->conn_log_rl.burst = 5;
    api->slow_log_rl.window_ms = CQ_MS_PER_MINUTE;
    api->slow_log_rl.burst = 5;
    api->mhd_log_rl.window_ms = CQ_MS_PER_MINUTE;
    api->mhd_log_rl.burst = 5;
    if (failed) {
        free(api->version);
        cq_secret_free(api->token);
        free(api->bind);
        free(api->data_dir);
        free(api);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the admin API");
        return NULL;
    }
    pthread_mutex_init(&api->log_lock, NULL);
    pthread_mutex_init(&api->mhd_error_lock, NULL);
    return api;
}

const char *cq_api_address(const struct cq_api *api)
{
    return api != NULL ? api->address : "";
}

void cq_api_stop(struct cq_api *api)
{
    if (api == NULL || api->daemon == NULL) {
        return;
    }
    MHD_stop_daemon(api->daemon); /* joins libmicrohttpd's thread */
    api->daemon = NULL;
    /* it reports every connection closed; free any it did not */
    while (api->conns != NULL) {
        struct api_conn *c = api->conns;
        api->conns = c->next;
        free(c);
    }
    api->pending_valid = false;
    atomic_store_explicit(&api->connections_open, 0, memory_order_relaxed);
    api->address[0] = '\0';
    cq_log_info(CQ_API_SERVICE, "admin_stopped", NULL, "admin API stopped");
}

void cq_api_free(struct cq_api *api)
{
    if (api == NULL) {
        return;
    }
    cq_api_stop(api);
    pthread_mutex_destroy(&api->log_lock);
    pthread_mutex_destroy(&api->mhd_error_lock);
    free(api->version);
    cq_secret_free(api->token); /* wiped */
    free(api->bind);
    free(api->data_dir);
    free(api);
}

void cq_api_get_stats(const struct cq_api *api, struct cq_api_stats *out)
{
    /* relaxed: statistics, no ordering needed */
    out->requests_total = atomic_load_explicit(&api->requests_total, memory_order_relaxed);
    out->responses_2xx = atomic_load_explicit(&api->responses_2xx, memory_order_relaxed);
    out->responses_4xx = atomic_load_explicit(&api->responses_4xx, memory_order_relaxed);
    out->responses_5xx = atomic_load_explicit(&api->responses_5xx, memory_order_relaxed);
    out->auth_failures = atomic_load_explicit(&api->auth_failures, memory_order_relaxed);
    out->connections_rejected =
        atomic_load_explicit(&api->connections_rejected, memory_order_relaxed);
    out->connections_closed_slow =
        atomic_load_explicit(&api->connections_closed_slow, memory_order_relaxed);
    out->mhd_errors = atomic_load_explicit(&api->mhd_errors, memory_order_relaxed);
    out->bodies_refused =
        atomic_load_explicit(&api->body_stats.refused_announced, memory_order_relaxed) +
        atomic_load_explicit(&api->body_stats.refused_streamed, memory_order_relaxed);
    out->bodies_dropped = atomic_load_explicit(&api->body_stats.dropped, memory_order_relaxed);
}

/* ---- libmicrohttpd callbacks (all on libmicrohttpd's thread) ---------------------- */

static bool ratelimit(struct cq_api *api, struct cq_log_ratelimit *rl, uint64_t *suppressed)
{
    pthread_mutex_lock(&api->log_lock);
    bool allowed = cq_log_ratelimit_allow(rl, cq_clock_mono_ms(api->clock), suppressed);
    pthread_mutex_unlock(&api->log_lock);
    return allowed;
}

/* Longest libmicrohttpd message we keep, bytes (formatted into a larger
 * buffer first, then redacted and cut by cq_api__show). */
#define MHD_MESSAGE_SHOW_MAX 240

static void mhd_logger(void *cls, const char *fmt, va_list ap) CQ_PRINTF(2, 0);

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct cq_api *api = cls;
    char raw[1024];
    /* a longer message is cut here and again, redacted first, below */
    (void)vsnprintf(raw, sizeof(raw), fmt, ap);
    char line[MHD_MESSAGE_SHOW_MAX + 4];
    cq_api__show(line, sizeof(line), raw, MHD_MESSAGE_SHOW_MAX);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    pthread_mutex_lock(&api->mhd_error_lock);
    /* line is shorter than last_mhd_error (MHD_MESSAGE_SHOW_MAX + 4 <= 256) */
    cq_strlcpy(api->last_mhd_error, line, sizeof(api->last_mhd_error));
    pthread_mutex_unlock(&api->mhd_error_lock);
    /* relaxed: statistics */
    atomic_fetch_add_explicit(&api->mhd_errors, 1, memory_order_relaxed);
    uint64_t suppressed = 0;
    if (ratelimit(api, &api->mhd_log_rl, &suppressed)) {
        cq_log_warn(CQ_API_SERVICE, "mhd_error",
                    json_pack("{s:s,s:I}", "detail", line, "suppressed", (json_int_t)suppressed),
                    "libmicrohttpd: %s", line);
    }
}

static size_t peer_key(const struct sockaddr *addr, unsigned char out[16])
{
    if (addr == NULL) {
        return 0;
    }
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
        memcpy(out, &sin->sin_addr, 4);
        return 4;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            memcpy(out, &sin6->sin6_addr.s6_addr[12], 4);
            return 4;
        }
        memcpy(out, &sin6->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static void close_slow(struct cq_api *api, struct api_conn *c, int64_t now_ms, const char *reason)
{
    c->doomed = true;
    /* libmicrohttpd sees EOF on its next read and closes the connection */
    (void)shutdown(c->fd, SHUT_RDWR);
    atomic_fetch_add_explicit(&api->connections_closed_slow, 1, memory_order_relaxed);
    uint64_t suppressed = 0;
    if (ratelimit(api, &api->slow_log_rl, &suppressed)) {
        char peer[INET6_ADDRSTRLEN] = "?";
        inet_ntop(c->peer_len == 4 ? AF_INET : AF_INET6, c->peer, peer, sizeof(peer));
        int64_t age_ms = now_ms - c->exchange_start_ms;
        cq_log_warn(CQ_API_SERVICE, "api_slow_connection_closed",
                    json_pack("{s:s,s:s,s:s,s:I,s:I}", "peer", peer, "tier",
                              c->tier == CQ_API_TIER_RESERVE ? "reserve" : "ordinary", "reason",
                              reason, "age_ms", (json_int_t)age_ms, "suppressed",
                              (json_int_t)suppressed),
                    "closed a slow admin connection from %s after %lld ms: %s", peer,
                    (long long)age_ms, reason);
    }
}

/* Shut down every connection past its deadline. */
static void sweep(struct cq_api *api, int64_t now_ms)
{
    for (struct api_conn *c = api->conns; c != NULL; c = c->next) {
        if (c->doomed) {
            continue;
        }
        int64_t limit = c->tier == CQ_API_TIER_RESERVE ? (int64_t)api->reserve_deadline_ms
                                                       : (int64_t)api->request_deadline_ms;
        if (now_ms - c->exchange_start_ms >= limit) {
            close_slow(api, c, now_ms,
                       c->head_done ? "the exchange did not end within its deadline"
                                    : "the request head did not arrive within its deadline");
        }
    }
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct cq_api *api = cls;
    CQ_UNUSED(addrlen);
    int64_t now = cq_clock_mono_ms(api->clock);
    sweep(api, now);

    unsigned char peer[16];
    size_t peer_len = peer_key(addr, peer);
    unsigned ordinary = 0, same_peer = 0, reserve = 0;
    struct api_conn *evict = NULL; /* earliest reserve arrival without a head */
    for (struct api_conn *c = api->conns; c != NULL; c = c->next) {
        if (c->doomed) {
            continue;
        }
        if (c->tier == CQ_API_TIER_ORDINARY) {
            ordinary++;
            if (c->peer_len == peer_len && memcmp(c->peer, peer, peer_len) == 0) {
                same_peer++;
            }
        } else {
            reserve++;
            if (!c->head_done && (evict == NULL || c->seq < evict->seq)) {
                evict = c;
            }
        }
    }
    api->pending_valid = true;
    if (ordinary < api->max_connections && same_peer < api->max_connections_per_peer) {
        api->pending_tier = CQ_API_TIER_ORDINARY;
        return MHD_YES;
    }
    api->pending_tier = CQ_API_TIER_RESERVE;
    if (reserve < api->reserve_connections) {
        return MHD_YES;
    }
    if (evict != NULL) {
        close_slow(api, evict, now,
                   "evicted from the reserve: its request head was still "
                   "incomplete when a newcomer needed the slot");
        return MHD_YES;
    }
    api->pending_valid = false;
    atomic_fetch_add_explicit(&api->connections_rejected, 1, memory_order_relaxed);
    uint64_t suppressed = 0;
    if (ratelimit(api, &api->conn_log_rl, &suppressed)) {
        cq_log_warn(CQ_API_SERVICE, "api_connection_rejected",
                    json_pack("{s:I,s:I,s:I}", "max_connections", (json_int_t)api->max_connections,
                              "reserve_connections", (json_int_t)api->reserve_connections,
                              "suppressed", (json_int_t)suppressed),
                    "refused a connection: %u ordinary (CQ_ADMIN_MAX_CONNECTIONS) and %u reserve "
                    "connections are busy",
                    api->max_connections, api->reserve_connections);
    }
    return MHD_NO;
}

static void notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct cq_api *api = cls;
    /* relaxed: only this thread writes; readers want an estimate */
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add_explicit(&api->connections_open, 1, memory_order_relaxed);
        const union MHD_ConnectionInfo *fd_info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr_info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct api_conn *c = calloc(1, sizeof(*c));
        if (c == NULL || fd_info == NULL) {
            /* cannot track it, so cannot bound it: close it */
            free(c);
            if (fd_info != NULL) {
                (void)shutdown(fd_info->connect_fd, SHUT_RDWR);
            }
            *socket_context = NULL;
            api->pending_valid = false;
            return;
        }
        c->fd = fd_info->connect_fd;
        c->peer_len = peer_key(addr_info != NULL ? addr_info->client_addr : NULL, c->peer);
        /* accept_policy ran just before for this connection, on this thread */
        c->tier = api->pending_valid ? api->pending_tier : CQ_API_TIER_RESERVE;
        api->pending_valid = false;
        c->exchange_start_ms = cq_clock_mono_ms(api->clock);
        c->seq = ++api->conn_seq;
        c->next = api->conns;
        if (api->conns != NULL) {
            api->conns->prev = c;
        }
        api->conns = c;
        *socket_context = c;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub_explicit(&api->connections_open, 1, memory_order_relaxed);
        struct api_conn *c = *socket_context;
        if (c != NULL) {
            if (c->prev != NULL) {
                c->prev->next = c->next;
            } else {
                api->conns = c->next;
            }
            if (c->next != NULL) {
                c->next->prev = c->prev;
            }
            free(c);
            *socket_context = NULL;
        }
    }
}

static struct api_conn *conn_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

/* Per-request state (con_cls), made by uri_logged. */
struct http_request {
    struct cq_http_body body; /* counts only: the admin API reads no body */
    const char *malformed;    /* static text: why this request gets 400 */
    bool headers_seen;        /* the access handler was called once */
    bool answered;            /* a response is queued: ignore further calls */
};

/* The raw request target, before libmicrohttpd percent-decodes it in place:
 * a %00 in the path would be decoded to a NUL that silently cuts the path
 * ("/health%00xyz" would be answered as "/health"). Also sweeps slow
 * connections, and makes the per-request state. */
static void *uri_logged(void *cls, const char *uri, struct MHD_Connection *connection)
{
    struct cq_api *api = cls;
    CQ_UNUSED(connection);
    sweep(api, cq_clock_mono_ms(api->clock));
    struct http_request *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL; /* the access handler drops the connection */
    }
    cq_http_body_init(&st->body, api->max_body_bytes, false, &api->body_stats);
    if (uri != NULL) {
        size_t path_len = strcspn(uri, "?");
        for (size_t i = 0; i + 2 < path_len; i++) {
            if (uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0') {
                st->malformed = "the path holds a NUL byte (%00); paths are text";
                break;
            }
        }
    }
    return st;
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct cq_api *api = cls;
    CQ_UNUSED(toe);
    struct http_request *st = *con_cls;
    if (st != NULL) {
        cq_http_body_fini(&st->body);
        free(st);
    }
    *con_cls = NULL;
    struct api_conn *c = conn_of(connection);
    if (c != NULL) {
        /* a kept-alive connection's next exchange starts now */
        c->exchange_start_ms = cq_clock_mono_ms(api->clock);
        c->head_done = false;
    }
}

/* A NUL inside a header name or value. libmicrohttpd up to 0.9.77 keeps
 * the request head in its read buffer as C strings, so a NUL cuts a value
 * silently ("Authorization: Bearer <token>\0junk" would read as the token
 * alone). In that layout a value is followed by its line end (CR LF or LF,
 * overwritten with NULs), then by the next header's name; the last value by
 * its line end and the empty line that ends the head. So a value is whole
 * when the distance from its terminating NUL to the next name is at most 2
 * (to the end of the head: at most twice the longest line end seen, on the
 * request line or between headers).
 * Only pointers are compared, nothing is read; a value found outside the
 * head as read (moved: a folded line) is not judged. Not caught: a NUL
 * right before a line end (it cuts nothing). From 1.0 on value_size is
 * the real length, which the first test catches. */
#define MHD_HEADS_IN_PLACE (MHD_VERSION < 0x00097800)

struct nul_scan {
    uintptr_t head_start, head_end; /* the request head as read */
    uintptr_t version_end;          /* end of the request line's HTTP version */
    uintptr_t line_end_bytes;       /* longest line end seen: 1 (LF) or 2 (CR LF) */
    const char *prev_value;
    size_t prev_len;
    bool found;
};

static bool in_head(const struct nul_scan *ns, uintptr_t p)
{
    return p >= ns->head_start && p < ns->head_end;
}

static bool value_whole(const struct nul_scan *ns, const char *v, size_t len, const char *next_key)
{
    uintptr_t end = (uintptr_t)v + len; /* its terminating NUL */
    if (!in_head(ns, (uintptr_t)v) || !in_head(ns, end)) {
        return true; /* not where the head was read: cannot tell */
    }
    if (next_key != NULL) {
        uintptr_t next = (uintptr_t)next_key;
        if (!in_head(ns, next) || next <= end) {
            return true;
        }
        return next - end <= 2;
    }
    /* the last value: its line end, then the empty line */
    return ns->head_end - end <= 2 * ns->line_end_bytes;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct nul_scan *ns = cls;
    CQ_UNUSED(kind);
    if ((key != NULL && strlen(key) != key_size) ||
        (value != NULL && strlen(value) != value_size)) {
        ns->found = true;
        return MHD_NO;
    }
    if (MHD_HEADS_IN_PLACE && ns->prev_value == NULL && key != NULL && ns->version_end != 0 &&
        in_head(ns, (uintptr_t)key) && (uintptr_t)key > ns->version_end) {
        uintptr_t gap = (uintptr_t)key - ns->version_end;
        ns->line_end_bytes = gap == 1 ? 1 : 2;
    }
    if (MHD_HEADS_IN_PLACE && ns->prev_value != NULL) {
        if (!value_whole(ns, ns->prev_value, ns->prev_len, key)) {
            ns->found = true;
            return MHD_NO;
        }
        uintptr_t gap = (uintptr_t)key - ((uintptr_t)ns->prev_value + ns->prev_len);
        if (gap == 2) {
            ns->line_end_bytes = 2;
        }
    }
    ns->prev_value = value;
    ns->prev_len = value != NULL ? value_size : 0;
    return MHD_YES;
}

static bool header_has_nul(struct MHD_Connection *connection, const char *method,
                           const char *version)
{
    const union MHD_ConnectionInfo *hs =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    struct nul_scan ns = {
        .head_start = (uintptr_t)method,
        .head_end = (uintptr_t)method + (hs != NULL ? hs->header_size : 0),
        .line_end_bytes = 2, /* unless the request line shows LF */
    };
    if (version != NULL && version[0] != '\0') {
        ns.version_end = (uintptr_t)version + strlen(version);
    }
    (void)MHD_get_connection_values_n(connection, MHD_HEADER_KIND, scan_header, &ns);
    if (!ns.found && MHD_HEADS_IN_PLACE && ns.prev_value != NULL &&
        !value_whole(&ns, ns.prev_value, ns.prev_len, NULL)) {
        ns.found = true;
    }
    return ns.found;
}

/* Transfer-Encoding: only "chunked" (libmicrohttpd decodes it). Anything
 * else leaves the body's end unknown: the request would wait for the idle
 * timeout. */
static bool transfer_encoding_ok(const char *te)
{
    if (te == NULL) {
        return true;
    }
    while (*te == ' ' || *te == '\t') {
        te++;
    }
    size_t len = strlen(te);
    while (len > 0 && (te[len - 1] == ' ' || te[len - 1] == '\t')) {
        len--;
    }
    return len == 7 && strncasecmp(te, "chunked", 7) == 0;
}

static enum MHD_Result send_answer(struct cq_api *api, struct MHD_Connection *connection,
                                   const char *url, const char *method,
                                   const struct http_request *st)
{
    struct api_conn *c = conn_of(connection);
    bool reserve = c == NULL || c->tier == CQ_API_TIER_RESERVE;
    struct cq_api_request req = {
        .method = method,
        .path = url,
        .authorization =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .host = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
        .malformed = st->malformed,
        .body_bytes = (size_t)st->body.accepted_bytes,
        .body_too_large = cq_http_body_refused(&st->body),
        .reserve = reserve,
    };
    struct cq_api_response resp;
    cq_api_handle(api, &req, &resp);

    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp.body_len, resp.body != NULL ? resp.body : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        cq_api_response_fini(&resp);
        return MHD_NO; /* out of memory: drop the connection */
    }
    bool ok =
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type) == MHD_YES &&
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") == MHD_YES;
    if (ok && resp.allow[0] != '\0') {
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp.allow) == MHD_YES;
    }
    if (ok && resp.www_authenticate) {
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                     "Bearer realm=\"coinquant\"") == MHD_YES;
    }
    if (ok && resp.retry_after_s > 0) {
        char secs[24];
        /* an unsigned fits 24 bytes: cannot be cut */
        (void)snprintf(secs, sizeof(secs), "%u", resp.retry_after_s);
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, secs) == MHD_YES;
    }
    if (ok && (reserve || st->malformed != NULL)) {
        /* one answer per reserve slot; a malformed request's stream cannot
         * be trusted for the next one */
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    }
    enum MHD_Result rc = MHD_NO;
    if (ok) {
        rc = MHD_queue_response(connection, (unsigned int)resp.status, r);
    }
    MHD_destroy_response(r);
    cq_api_response_fini(&resp);
    return rc;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct cq_api *api = cls;
    struct http_request *st = *con_cls;

    if (st == NULL) {
        return MHD_NO; /* uri_logged could not allocate: drop the connection */
    }
    if (!st->headers_seen) {
        /* First call: headers only. Answer now what needs no body: a
         * malformed request, an announced oversized body (before the client
         * sends it: no "100 Continue" goes out), a reserve slot. Answering
         * now makes libmicrohttpd discard the body and close. */
        st->headers_seen = true;
        struct api_conn *c = conn_of(connection);
        if (c != NULL) {
            c->head_done = true;
        }
        const char *te = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (st->malformed == NULL && header_has_nul(connection, method, version)) {
            st->malformed = "a header holds a NUL byte; header values are text";
        }
        if (st->malformed == NULL && !transfer_encoding_ok(te)) {
            st->malformed = "the request has a Transfer-Encoding other than chunked; its body's "
                            "end cannot be found (send Content-Length or "
                            "Transfer-Encoding: chunked)";
        }
        const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        (void)cq_http_body_begin(&st->body, cl); /* refused: answered 413 now */
        if (st->malformed != NULL || cq_http_body_refused(&st->body) || c == NULL ||
            c->tier == CQ_API_TIER_RESERVE) {
            st->answered = true;
            return send_answer(api, connection, url, method, st);
        }
        return MHD_YES;
    }
    if (st->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0; /* consumed (counted only) */
        enum cq_http_body_status bs = cq_http_body_feed(&st->body, upload_data, n);
        /* DROP: the client kept sending after the refusal; NOMEM cannot
         * happen when counting */
        return bs == CQ_HTTP_BODY_DROP || bs == CQ_HTTP_BODY_NOMEM ? MHD_NO : MHD_YES;
    }
    st->answered = true;
    return send_answer(api, connection, url, method, st);
}

/* ---- start ---------------------------------------------------------------------- */

struct bind_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool v6;
    char host[INET6_ADDRSTRLEN]; /* canonical text form */
};

/* The same function validates CQ_ADMIN_BIND at config load (exit 2), so an
 * address that passes `config check` is one this can bind. */
static int resolve_bind(const char *bind, struct bind_addr *out, int *port, struct cq_err *err)
{
    struct cq_bind_addr ba;
    int rc = cq_bind_addr_resolve(bind, &ba, err);
    if (rc < 0) {
        return rc;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, &ba.ss, sizeof(out->ss));
    out->len = ba.len;
    out->v6 = ba.v6;
    memcpy(out->host, ba.host, sizeof(out->host)); /* both INET6_ADDRSTRLEN */
    *port = ba.port;
    return 0;
}

/* libmicrohttpd does not promise errno after a failed start: when it is not
 * a bind error, bind a throwaway socket to the same address to learn why. */
static int diagnose_bind_errno(const struct bind_addr *ba)
{
    int fd = socket(ba->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int e = 0;
    if (bind(fd, (const struct sockaddr *)&ba->ss, ba->len) != 0) {
        e = errno;
    }
    close(fd);
    return e;
}

static int start_error(struct cq_api *api, const struct bind_addr *ba, int port, int e,
                       struct cq_err *err)
{
    char hint[CQ_ERR_HINT_MAX];
    char mhd_msg[sizeof(api->last_mhd_error)]; /* same size: cq_strlcpy cannot cut */
    pthread_mutex_lock(&api->mhd_error_lock);
    cq_strlcpy(mhd_msg, api->last_mhd_error, sizeof(mhd_msg));
    pthread_mutex_unlock(&api->mhd_error_lock);

    /* Every hint below fits CQ_ERR_HINT_MAX (256): the fixed texts are under
     * 130 bytes, a port is at most 5 digits, ba->host at most 45 bytes, and
     * api->bind is shown only when it fits (the message names it whole). */
    switch (e) {
    case EADDRINUSE:
        snprintf(hint, sizeof(hint),
                 "another process uses port %d; stop it, or set CQ_ADMIN_BIND=%s:0 for an "
                 "ephemeral port",
                 port, ba->v6 ? "[::1]" : "127.0.0.1");
        break;
    case EADDRNOTAVAIL:
        snprintf(hint, sizeof(hint),
                 "%s is not an address of this machine; set CQ_ADMIN_BIND to one of its "
                 "addresses, e.g. 127.0.0.1:%d",
                 ba->host, port);
        break;
    case EACCES:
        snprintf(hint, sizeof(hint),
                 "ports below 1024 need privileges; use a port from 1024 up, or 0 for an "
                 "ephemeral port");
        break;
    case EAFNOSUPPORT:
        snprintf(hint, sizeof(hint), "this host has no %s support; bind an %s address",
                 ba->v6 ? "IPv6" : "IPv4", ba->v6 ? "IPv4" : "IPv6");
        break;
    default:
        if (strlen(api->bind) <= 200) {
            snprintf(hint, sizeof(hint), "check CQ_ADMIN_BIND (now %s)", api->bind);
        } else {
            snprintf(hint, sizeof(hint), "check CQ_ADMIN_BIND");
        }
        break;
    }
    if (e != 0) {
        return cq_err_set(err, CQ_EIO, e, hint, "cannot listen on %s (CQ_ADMIN_BIND)", api->bind);
    }
    return cq_err_set(err, CQ_EIO, 0, hint, "cannot listen on %s (CQ_ADMIN_BIND): %s", api->bind,
                      mhd_msg[0] != '\0' ? mhd_msg : "libmicrohttpd failed to start");
}

/* libmicrohttpd's own limit: above ours (pool + reserve) with room for the
 * connections we have shut down and it has not closed yet (it does so in
 * its next loop step), so that our accept policy, not the kernel backlog,
 * decides who gets in. */
static unsigned int mhd_connection_limit(const struct cq_api *api)
{
    return 2 * (api->max_connections + api->reserve_connections) + 1;
}

int cq_api_start(struct cq_api *api, struct cq_err *err)
{
    if (api == NULL) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "cq_api_start: no API");
    }
    if (api->daemon != NULL) {
        return cq_err_set(err, CQ_ESTATE, 0, "call cq_api_stop first",
                          "the admin API is already listening on %s", api->address);
    }
    if (api->bind == NULL) {
        return cq_err_set(err, CQ_EINVAL, 0, "set CQ_ADMIN_BIND",
                          "no bind address given to the admin API");
    }
    struct bind_addr ba;
    int port = 0;
    int rc = resolve_bind(api->bind, &ba, &port, err);
    if (rc < 0) {
        return rc;
    }
    if (!cq_host_is_loopback(ba.host) && api->token[0] == '\0') {
        return cq_err_set(err, CQ_EPERM, 0,
                          "set CQ_ADMIN_TOKEN, or bind 127.0.0.1 (CQ_ADMIN_BIND=127.0.0.1:8080)",
                          "refusing to serve the admin API on non-loopback %s without a token",
                          api->bind);
    }

    pthread_mutex_lock(&api->mhd_error_lock);
    api->last_mhd_error[0] = '\0';
    pthread_mutex_unlock(&api->mhd_error_lock);

    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (ba.v6) {
        flags |= MHD_USE_IPv6;
    }
    errno = 0;
    struct MHD_Daemon *d = MHD_start_daemon(
        /* The logger first, so libmicrohttpd never falls back to stderr. */
        flags, (uint16_t)port, accept_policy, api, access_handler, api, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, api, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ba.ss,
        MHD_OPTION_CONNECTION_LIMIT, mhd_connection_limit(api), MHD_OPTION_URI_LOG_CALLBACK,
        uri_logged, api, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)api->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY_BYTES, MHD_OPTION_NOTIFY_CONNECTION,
        notify_connection, api, MHD_OPTION_NOTIFY_COMPLETED, request_completed, api,
        MHD_OPTION_END);
    if (d == NULL) {
        int e = errno;
        if (e != EADDRINUSE && e != EADDRNOTAVAIL && e != EACCES && e != EAFNOSUPPORT) {
            int diag = diagnose_bind_errno(&ba);
            e = diag != 0 ? diag : e;
        }
        return start_error(api, &ba, port, e, err);
    }

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int real_port = info != NULL && info->port != 0 ? (int)info->port : port;
    /* address is 96 bytes: "[" + at most 45 (INET6_ADDRSTRLEN - 1) + "]:" + 5
     * digits cannot be cut */
    if (ba.v6) {
        snprintf(api->address, sizeof(api->address), "[%s]:%d", ba.host, real_port);
    } else {
        snprintf(api->address, sizeof(api->address), "%s:%d", ba.host, real_port);
    }
    api->daemon = d;

    if (api->data_dir != NULL && api->data_dir[0] != '\0') {
        char path[4096], line[sizeof(api->address) + 1];
        int n = snprintf(line, sizeof(line), "%s\n", api->address); /* fits: address + \n */
        if ((size_t)snprintf(path, sizeof(path), "%s/admin.addr", api->data_dir) >= sizeof(path)) {
            cq_api_stop(api);
            return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter CQ_DATA_DIR",
                              "data directory path too long");
        }
        rc = cq_fs_write_atomic(path, line, (size_t)n, 0644, 0, err);
        if (rc < 0) {
            cq_api_stop(api);
            return rc;
        }
    }
    cq_log_info(CQ_API_SERVICE, "admin_listening",
                json_pack("{s:s,s:I}", "addr", api->address, "max_connections",
                          (json_int_t)api->max_connections),
                "admin API listening on http://%s", api->address);
    return 0;
}
