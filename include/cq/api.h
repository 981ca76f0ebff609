/*
 * api.h — the admin API: REST/JSON over libmicrohttpd.
 *
 * Endpoints (openapi/openapi.yaml is the contract):
 *   GET /health     liveness + every service's health record   (no token)
 *   GET /readiness  200 {"ready":true} or 503 with reasons       (no token)
 *   GET /metrics    Prometheus text format                       (no token)
 *   GET /config     effective config, sources, secrets redacted  (token)
 *   GET /api/v1/positions, /api/v1/orders, /api/v1/risk: the trader's
 *                   read-only snapshot                           (token)
 *   POST /api/v1/trader/pause|resume|kill|unkill, DELETE
 *                   /api/v1/quarantine/{SYMBOL}: operator commands, queued
 *                   for the trader (202; 503 when the queue is full) (token)
 * Everything else requires "Authorization: Bearer <token>" (constant-time
 * compare). Errors are {"error":{"code","message","hint"}}.
 *
 * Hostile clients (api.c has the details): every exchange has a deadline
 * from accept; slots beyond the ordinary pool are kept for /health and
 * /readiness (everything else there gets a fast 503); one peer holds at most
 * its share of the pool; on a loopback bind only loopback Host names are
 * answered (421 otherwise: DNS rebinding).
 *
 * Threads: libmicrohttpd runs its own internal polling thread (created by
 * cq_api_start, which only the supervisor calls). Handlers never touch
 * engine state: they read the health board (its own lock), the current
 * config (a reference from struct cq_config_current) and the log stats.
 * Commands to the engine, when later issues add them, go through a queue.
 *
 * The request router is plain code (cq_api_handle) so tests drive it
 * without sockets; cq_api_start puts it behind libmicrohttpd.
 */
#ifndef CQ_API_H
#define CQ_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/config.h"
#include "cq/health.h"

struct cq_api_options {
    struct cq_health_board *board;    /* borrowed */
    struct cq_config_current *config; /* borrowed; read per request */
    const struct cq_clock *clock;     /* NULL = system; borrowed */
    const char *version;              /* coinquantd version string; copied */
    const char *token;                /* bearer token (explicit or generated); copied */
    const char *bind;                 /* "127.0.0.1:8080", port 0 = ephemeral; copied */
    const char *data_dir;             /* admin.addr is written here; copied */
    unsigned max_connections;         /* the ordinary pool (CQ_ADMIN_MAX_CONNECTIONS) */
    unsigned timeout_s;               /* per-connection inactivity timeout */
    size_t max_body_bytes;            /* larger request bodies get 413 */
    /* Slow-client limits; 0 = the defaults in api-int.h (CQ_API_*). */
    unsigned request_deadline_ms;      /* head + body + answer, from accept */
    unsigned reserve_connections;      /* beyond the pool: /health, /readiness only */
    unsigned reserve_deadline_ms;      /* the same deadline on a reserve slot */
    unsigned max_connections_per_peer; /* ordinary slots one IP address may hold */
    /* The trader's operator surface (/api/v1/...), handed in by the
     * supervisor so that this library links only cqcore. NULL = the routes
     * answer 503 trader_unavailable. Called from libmicrohttpd's thread.
     *   trader_view     "positions", "orders" or "risk": a new reference to
     *                   a copy of the trader's read-only snapshot, or NULL
     *                   before its first one
     *   trader_command  "pause", "resume", "kill", "unkill",
     *                   "clear_quarantine" (symbol): 0 queued, -CQ_EFULL
     *                   (the bounded queue is full), -CQ_EINVAL (bad symbol),
     *                   -CQ_EAGAIN (the trader is not built yet) */
    json_t *(*trader_view)(void *ctx, const char *what);
    int (*trader_command)(void *ctx, const char *cmd, const char *symbol);
    void *trader_ctx;
};

struct cq_api;

/* Build the API (no socket yet). NULL on error. */
struct cq_api *cq_api_new(const struct cq_api_options *opts, struct cq_err *err);
/* Bind and start serving; on success logs "admin_listening" with the real
 * address and writes it to DATA_DIR/admin.addr ("127.0.0.1:43123\n").
 * Supervisor only. */
int cq_api_start(struct cq_api *api, struct cq_err *err) CQ_WUR;
/* "127.0.0.1:43123" once started, else "". Borrowed. */
const char *cq_api_address(const struct cq_api *api);
/* Stop serving (joins libmicrohttpd's thread); idempotent. */
void cq_api_stop(struct cq_api *api);
void cq_api_free(struct cq_api *api);

/* ---- the router, without sockets ------------------------------------------ */

struct cq_api_request {
    const char *method;        /* "GET" */
    const char *path;          /* "/health" (no query string) */
    const char *authorization; /* Authorization header value or NULL */
    const char *host;          /* Host header value or NULL */
    const char *malformed;     /* set by the HTTP layer: why this request
                                  gets 400 (a NUL in the path, an unsupported
                                  Transfer-Encoding…); NULL = nothing wrong */
    size_t body_bytes;         /* bytes of request body received */
    bool body_too_large;       /* body exceeded max_body_bytes */
    bool reserve;              /* arrived on a reserve slot: only GET/HEAD
                                  /health and /readiness are served, the
                                  rest gets 503 busy */
};

struct cq_api_response {
    int status; /* HTTP status */
    char *body; /* owned, NUL-terminated */
    size_t body_len;
    const char *content_type; /* static string */
    char allow[64];           /* Allow header for 405, else "" */
    bool www_authenticate;    /* send WWW-Authenticate: Bearer (401) */
    unsigned retry_after_s;   /* send Retry-After when > 0 (503 busy) */
};

/* Route and answer one request. resp must be released with
 * cq_api_response_fini. Thread-safe. */
void cq_api_handle(struct cq_api *api, const struct cq_api_request *req,
                   struct cq_api_response *resp);
void cq_api_response_fini(struct cq_api_response *resp);

/* Counters for /metrics and tests. */
struct cq_api_stats {
    uint64_t requests_total;
    uint64_t responses_2xx, responses_4xx, responses_5xx;
    uint64_t auth_failures;
    uint64_t connections_rejected;    /* over max_connections and the reserve */
    uint64_t connections_closed_slow; /* past their deadline, or evicted from the reserve */
    uint64_t mhd_errors;              /* messages from libmicrohttpd (logged rate-limited) */
    uint64_t bodies_refused;          /* request bodies over max_body_bytes (answered 413) */
    uint64_t bodies_dropped;          /* of those, connections dropped for sending on */
};
void cq_api_get_stats(const struct cq_api *api, struct cq_api_stats *out);

/* ---- token helpers ---------------------------------------------------------- */

/* Constant-time comparison of a presented "Bearer x" header against token. */
bool cq_api_auth_ok(const char *authorization, const char *token);

/* Load DATA_DIR/admin.token, or create it (mode 0600, 64 hex chars from the
 * OS's CSPRNG) if it does not exist. Refuses a token file readable by group
 * or others (-CQ_EPERM, hint: chmod 600). token_out gets the value. */
int cq_api_token_load_or_create(const char *data_dir, char *token_out, size_t token_len,
                                bool *created, struct cq_err *err) CQ_WUR;

#endif /* CQ_API_H */
