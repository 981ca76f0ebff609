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
 *   - connections: at most max_connections open. libmicrohttpd's own limit is
 *     set one higher so that the connection over our limit is accepted and
 *     closed at once by the accept-policy callback (and counted as
 *     connections_rejected) instead of waiting unseen in the kernel backlog.
 *   - headers and URL: MHD_OPTION_CONNECTION_MEMORY_LIMIT per connection
 *     (libmicrohttpd answers 431/414 itself when they do not fit).
 *   - body: counted as it arrives; over max_body_bytes (or a Content-Length
 *     announcing more) the router answers 413 without looking at it. A
 *     client that keeps sending long after that is disconnected.
 *   - idle connections: closed after timeout_s (MHD_OPTION_CONNECTION_TIMEOUT).
 *
 * libmicrohttpd's own messages go to cq_log as event "mhd_error".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "api-int.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "cq/version.h"
#include "cq/text.h"

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_TIMEOUT_S 10
/* Per-connection memory for the request line, headers and read buffer. */
#define CONNECTION_MEMORY_BYTES ((size_t)32 * 1024)
/* After a body went over max_body_bytes we read and discard at most this
 * much more, then drop the connection. */
#define DISCARD_MAX_BYTES ((uint64_t)1024 * 1024)

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
    api->token = dup_or_null(opts->token != NULL ? opts->token : "", &failed);
    api->bind = dup_or_null(opts->bind, &failed);
    api->data_dir = dup_or_null(opts->data_dir, &failed);
    api->max_connections =
        opts->max_connections > 0 ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
    api->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    api->max_body_bytes = opts->max_body_bytes;
    api->created_mono_ms = cq_clock_mono_ms(api->clock);
    api->auth_log_rl.window_ms = 60000;
    api->auth_log_rl.burst = 5;
    api->conn_log_rl.window_ms = 60000;
    api->conn_log_rl.burst = 5;
    if (failed) {
        free(api->version);
        free(api->token);
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
    if (api->token != NULL) {
        OPENSSL_cleanse(api->token, strlen(api->token)); /* not left in freed memory */
    }
    free(api->version);
    free(api->token);
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
}

/* ---- libmicrohttpd callbacks (all on libmicrohttpd's thread) ---------------------- */

static void mhd_logger(void *cls, const char *fmt, va_list ap) CQ_PRINTF(2, 0);

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct cq_api *api = cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    pthread_mutex_lock(&api->mhd_error_lock);
    cq_strlcpy(api->last_mhd_error, line, sizeof(api->last_mhd_error));
    pthread_mutex_unlock(&api->mhd_error_lock);
    cq_log_warn(CQ_API_SERVICE, "mhd_error", json_pack("{s:s}", "detail", line),
                "libmicrohttpd: %s", line);
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct cq_api *api = cls;
    CQ_UNUSED(addr);
    CQ_UNUSED(addrlen);
    /* relaxed: connections_open is written only on this thread */
    uint64_t open_now = atomic_load_explicit(&api->connections_open, memory_order_relaxed);
    if (open_now < api->max_connections) {
        return MHD_YES;
    }
    atomic_fetch_add_explicit(&api->connections_rejected, 1, memory_order_relaxed);
    uint64_t suppressed = 0;
    pthread_mutex_lock(&api->log_lock);
    bool allowed =
        cq_log_ratelimit_allow(&api->conn_log_rl, cq_clock_mono_ms(api->clock), &suppressed);
    pthread_mutex_unlock(&api->log_lock);
    if (allowed) {
        cq_log_warn(CQ_API_SERVICE, "api_connection_rejected",
                    json_pack("{s:I,s:I}", "max_connections", (json_int_t)api->max_connections,
                              "suppressed", (json_int_t)suppressed),
                    "refused a connection: %u connections are open (CQ_ADMIN_MAX_CONNECTIONS)",
                    api->max_connections);
    }
    return MHD_NO;
}

static void notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    struct cq_api *api = cls;
    CQ_UNUSED(connection);
    CQ_UNUSED(socket_context);
    /* relaxed: only this thread writes; readers want an estimate */
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add_explicit(&api->connections_open, 1, memory_order_relaxed);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub_explicit(&api->connections_open, 1, memory_order_relaxed);
    }
}

/* Per-request state (con_cls). */
struct http_request {
    uint64_t body_bytes;
    uint64_t discarded_bytes;
    bool too_large;
    bool answered; /* a response is queued: ignore further calls */
};

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    CQ_UNUSED(cls);
    CQ_UNUSED(connection);
    CQ_UNUSED(toe);
    free(*con_cls);
    *con_cls = NULL;
}

static enum MHD_Result send_answer(struct cq_api *api, struct MHD_Connection *connection,
                                   const char *url, const char *method,
                                   const struct http_request *st)
{
    struct cq_api_request req = {
        .method = method,
        .path = url,
        .authorization =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .body_bytes = (size_t)st->body_bytes,
        .body_too_large = st->too_large,
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
    CQ_UNUSED(version);
    CQ_UNUSED(upload_data);

    if (st == NULL) {
        /* First call: headers only. Refuse an announced oversized body now,
         * before the client sends it (no "100 Continue" goes out). */
        st = calloc(1, sizeof(*st));
        if (st == NULL) {
            return MHD_NO;
        }
        *con_cls = st;
        const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && cq_text_decimal_exceeds(cl, api->max_body_bytes)) {
            st->too_large = true;
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
        uint64_t n = *upload_data_size;
        *upload_data_size = 0; /* consumed (we never need the content) */
        if (!st->too_large) {
            st->body_bytes += n;
            if (st->body_bytes > api->max_body_bytes) {
                st->too_large = true;
            }
        } else {
            st->discarded_bytes += n;
            if (st->discarded_bytes > DISCARD_MAX_BYTES) {
                return MHD_NO; /* the client keeps sending: drop it */
            }
        }
        return MHD_YES;
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
    char mhd_msg[256];
    pthread_mutex_lock(&api->mhd_error_lock);
    cq_strlcpy(mhd_msg, api->last_mhd_error, sizeof(mhd_msg));
    pthread_mutex_unlock(&api->mhd_error_lock);

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
        snprintf(hint, sizeof(hint), "check CQ_ADMIN_BIND (now %s)", api->bind);
        break;
    }
    if (e != 0) {
        return cq_err_set(err, CQ_EIO, e, hint, "cannot listen on %s (CQ_ADMIN_BIND)", api->bind);
    }
    return cq_err_set(err, CQ_EIO, 0, hint, "cannot listen on %s (CQ_ADMIN_BIND): %s", api->bind,
                      mhd_msg[0] != '\0' ? mhd_msg : "libmicrohttpd failed to start");
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
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(api->max_connections + 1),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)api->timeout_s,
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
    if (ba.v6) {
        snprintf(api->address, sizeof(api->address), "[%s]:%d", ba.host, real_port);
    } else {
        snprintf(api->address, sizeof(api->address), "%s:%d", ba.host, real_port);
    }
    api->daemon = d;

    if (api->data_dir != NULL && api->data_dir[0] != '\0') {
        char path[4096], line[128];
        int n = snprintf(line, sizeof(line), "%s\n", api->address);
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
