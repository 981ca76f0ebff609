/*
 * api-int.h — private to api/: the struct behind struct cq_api, the route
 * table, and the helpers api.c, router.c, auth.c and metrics.c share.
 * Nothing outside api/ includes this except tests/unit/test_api.c (which
 * checks the route table against openapi/openapi.yaml).
 *
 * Threads: the fields set by cq_api_new are read-only afterwards. The
 * counters are atomics (relaxed: they are statistics, nothing is ordered by
 * them). `daemon` and `address` are touched only by the caller of
 * cq_api_start/cq_api_stop (the supervisor). `last_mhd_error` is written by
 * libmicrohttpd's thread through the external logger and read by
 * cq_api_start to explain a failed start, so it has its own mutex.
 */
#ifndef CQ_API_INT_H
#define CQ_API_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/api.h"
#include "cq/http_body.h"
#include "cq/log.h"

#define CQ_API_SERVICE "api" /* the "service" field of our log lines */

/* Longest Authorization header value we look at; longer ones are refused
 * without comparing. */
#define CQ_API_AUTHZ_MAX 1024
/* Longest admin token accepted from a file (a generated one is 64). */
#define CQ_API_TOKEN_MAX 256
/* Shortest admin token accepted from a file (CQ_ADMIN_TOKEN's rule too). */
#define CQ_API_TOKEN_MIN 16
/* Largest /metrics document; over it the scrape gets a 500. */
#define CQ_API_METRICS_MAX_BYTES (1024 * 1024)

/* Slow clients (defaults of the cq_api_options fields of the same names).
 * Every exchange on a connection (request head, body and answer) must end
 * within CQ_API_REQUEST_DEADLINE_MS of accept, or of the end of the previous
 * exchange on a kept-alive connection; CQ_ADMIN_TIMEOUT_S stays the
 * inactivity timeout inside it. */
#define CQ_API_REQUEST_DEADLINE_MS 5000
/* Slots beyond the ordinary pool, taken when the pool or the peer's share of
 * it is full: GET/HEAD /health and /readiness are answered there, anything
 * else gets 503 busy; one answer, then close. A reserve connection whose
 * head is not complete is evicted when a newcomer needs its slot, and none
 * lives longer than CQ_API_RESERVE_DEADLINE_MS. */
#define CQ_API_RESERVE_CONNECTIONS 8
#define CQ_API_RESERVE_DEADLINE_MS 2000
/* Ordinary slots one peer (IP address) may hold: max_connections / this,
 * at least 1 (so half the pool by default). */
#define CQ_API_PEER_SHARE_DIVISOR 2
/* Retry-After on a 503 busy, seconds. */
#define CQ_API_BUSY_RETRY_AFTER_S 1
/* Longest method and path shown in a message or a log line, bytes (after
 * redaction; cut on a character boundary, "..." appended). */
#define CQ_API_SHOW_METHOD_MAX 16
#define CQ_API_SHOW_PATH_MAX 128

struct MHD_Daemon;
struct api_conn; /* api.c: one per open connection */

enum cq_api_tier {
    CQ_API_TIER_ORDINARY, /* the pool of max_connections */
    CQ_API_TIER_RESERVE   /* kept for /health and /readiness */
};

struct cq_api {
    /* set by cq_api_new, read-only afterwards */
    struct cq_health_board *board;    /* borrowed */
    struct cq_config_current *config; /* borrowed */
    const struct cq_clock *clock;     /* borrowed; never NULL */
    char *version;                    /* owned */
    char *token;                      /* owned, cq_secret_dup; "" = no token route works */
    char *bind;                       /* owned; NULL = router only */
    char *data_dir;                   /* owned; NULL = no admin.addr */
    unsigned max_connections;
    unsigned timeout_s;
    size_t max_body_bytes;
    unsigned request_deadline_ms;
    unsigned reserve_connections;
    unsigned reserve_deadline_ms;
    unsigned max_connections_per_peer;
    bool loopback_bind;      /* bind host is loopback: Host is checked */
    char bind_host[256];     /* host part of bind, as configured */
    int64_t created_mono_ms; /* uptime counts from here */
    json_t *(*trader_view)(void *ctx, const char *what);                   /* may be NULL */
    int (*trader_command)(void *ctx, const char *cmd, const char *symbol); /* may be NULL */
    void *trader_ctx;

    /* supervisor thread only (cq_api_start / cq_api_stop) */
    struct MHD_Daemon *daemon; /* owned; NULL when not serving */
    char address[96];          /* "127.0.0.1:43123", "[::1]:8080" or "" */

    /* statistics: relaxed atomics, any thread */
    _Atomic uint64_t requests_total;
    _Atomic uint64_t responses_2xx;
    _Atomic uint64_t responses_4xx;
    _Atomic uint64_t responses_5xx;
    _Atomic uint64_t auth_failures;
    _Atomic uint64_t connections_rejected;
    _Atomic uint64_t connections_open; /* written by MHD's thread only */
    _Atomic uint64_t connections_closed_slow;
    _Atomic uint64_t mhd_errors;
    struct cq_http_body_stats body_stats; /* what the body readers refused */

    /* libmicrohttpd's thread only (its callbacks; after MHD_stop_daemon
     * the supervisor): the open connections, and what accept_policy
     * decided for the connection notify_connection is about to report. */
    struct api_conn *conns; /* owned list */
    enum cq_api_tier pending_tier;
    bool pending_valid;
    uint64_t conn_seq; /* arrivals so far */

    /* rate limits for "api_auth_failed" and "api_connection_rejected"
     * lines (any thread: mutex) */
    pthread_mutex_t log_lock;
    struct cq_log_ratelimit auth_log_rl;
    struct cq_log_ratelimit conn_log_rl;
    struct cq_log_ratelimit slow_log_rl; /* "api_slow_connection_closed" */
    struct cq_log_ratelimit mhd_log_rl;  /* "mhd_error" */

    /* last message from libmicrohttpd's logger (explains a failed start) */
    pthread_mutex_t mhd_error_lock;
    char last_mhd_error[256];
};

/* ---- router.c --------------------------------------------------------------- */

typedef void (*cq_api_handler_fn)(struct cq_api *api, const struct cq_api_request *req,
                                  struct cq_api_response *resp);

struct cq_api_route {
    const char *method; /* "GET" (HEAD is answered like GET) */
    const char *path;   /* exact match, no trailing slash; a last segment "{symbol}"
                           matches one non-empty segment (the handler reads it) */
    cq_api_handler_fn handler;
    bool needs_token;
    bool on_reserve; /* answered on a reserve slot (/health, /readiness) */
};

/* The route table (static storage). */
const struct cq_api_route *cq_api__routes(size_t *count);

/* Fill resp with {"error":{"code","message","hint"}}. */
void cq_api__error(struct cq_api_response *resp, int status, const char *code, const char *message,
                   const char *hint);
/* Fill resp with json (stolen) as application/json; 500 if it cannot be
 * serialised. */
void cq_api__json(struct cq_api_response *resp, int status, json_t *json);

/* s made fit for a message or a log line: registered secrets redacted first
 * (a cut secret would no longer be recognised), bytes that are not UTF-8
 * replaced by '?', then cut on a character boundary to at most max_bytes
 * with "..." appended when cut. out_size must be at least max_bytes + 4.
 * "<out of memory>" when redaction cannot allocate. */
void cq_api__show(char *out, size_t out_size, const char *s, size_t max_bytes);
/* True when s[0, len) is valid UTF-8 (RFC 3629, as jansson accepts it). */
/* The Host check of a loopback bind: true when host is NULL or empty, or
 * names a loopback address (localhost, 127.x.y.z, [::1]) or the bind host,
 * with or without a port. Always true on a non-loopback bind. */
bool cq_api__host_ok(const struct cq_api *api, const char *host);

/* ---- handlers (router.c) and /metrics (metrics.c) ----------------------------- */

int64_t cq_api__uptime_s(const struct cq_api *api);
/* The text of /metrics: *out is malloc'd and NUL-terminated. */
int cq_api__metrics_render(struct cq_api *api, char **out, size_t *out_len) CQ_WUR;

/* ---- auth.c ----------------------------------------------------------------- */

enum cq_api_auth_result {
    CQ_API_AUTH_OK,
    CQ_API_AUTH_MISSING,  /* no Authorization header */
    CQ_API_AUTH_SCHEME,   /* not "Bearer <token>" */
    CQ_API_AUTH_MISMATCH, /* wrong token */
    CQ_API_AUTH_NO_TOKEN  /* the server has no token configured */
};

/* The admin API's authorization decision with its reason (router.c uses
 * it; cq_api_auth_ok in cq/api.h is the yes/no form built on it). Constant
 * time in the content of the token. */
enum cq_api_auth_result cq_api__auth_check(const char *authorization, const char *token);

#endif /* CQ_API_INT_H */
