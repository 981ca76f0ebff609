/*
 * rest.h — the Binance REST client (libcurl), one type for the feeder
 * and the trader.
 *
 * Ownership and threads: each thread creates and owns its own client (one
 * curl easy handle, kept alive between requests); a client is never shared.
 * curl_global_init happens in main before any thread starts. Only
 * cq_rest_client_budget may be called from another thread (it reads a
 * snapshot guarded by a small mutex), for health and metrics.
 *
 * What it guarantees:
 *   - Signing: HMAC-SHA256 over the exact query string sent (cq_sign_*),
 *     timestamp from the server-time offset (synced at start, every
 *     time_sync_interval_ms, and after any -1021), recvWindow from options.
 *   - Two doors, chosen by function, never by a flag:
 *       cq_rest_call        safe requests (market data, account and order
 *                           QUERIES, userDataStream): retried on network
 *                           errors and 5xx with exponential backoff and full
 *                           jitter, at most max_retries times and never
 *                           longer than retry_budget_ms in all. It REFUSES
 *                           every order endpoint (cq_rest_is_order_endpoint)
 *                           with -CQ_EINVAL and out->msg naming
 *                           cq_rest_order_send, so a caller cannot retry an
 *                           order by declaring it safe.
 *       cq_rest_order_send  order requests (POST/DELETE /api/v3/order, its
 *                           test, cancelReplace, amend, DELETE openOrders,
 *                           orderList, sor/order): NEVER resent after they
 *                           may have reached the exchange: a timeout, a
 *                           dropped connection after sending, a 5xx or -1007
 *                           gives CQ_REST_UNKNOWN, and the caller resolves it
 *                           by querying origClientOrderId. The one exception
 *                           is -1021 (the exchange refused the timestamp, so
 *                           nothing executed): re-sync, then one resend.
 *     Only the trader's venue module (server/trader/venue.c, the one door of
 *     rule 3) calls cq_rest_order_send; the test `order_path`
 *     (tests/integration/test_order_path.sh) fails the build's tests if any
 *     other object file references it.
 *   - Rate limits are read from the exchange, not guessed: every response's
 *     X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT-10S update the budget; a
 *     request that would take the weight past (100 - headroom)% of the limit
 *     is refused locally (CQ_REST_THROTTLED) until the minute rolls over;
 *     after a 429 nothing is sent until its Retry-After has passed
 *     (CQ_REST_RATE_LIMITED, locally); a 418 latches CQ_REST_BANNED until its
 *     Retry-After has passed. So a well-behaved caller is never banned.
 *     A Retry-After shorter than CQ_REST_RETRY_AFTER_MIN_MS ("0", from a
 *     proxy or a misconfigured gateway) is raised to it: a 429 always holds
 *     requests back for at least that long.
 * Every outcome is typed; the exchange's code and msg are kept verbatim.
 */
#ifndef CQ_EXCHANGE_H
#define CQ_EXCHANGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/decimal.h"

enum cq_rest_security {
    CQ_SEC_NONE,    /* public market data: no key sent */
    CQ_SEC_API_KEY, /* USER_STREAM: X-MBX-APIKEY only */
    CQ_SEC_SIGNED   /* TRADE / USER_DATA: key + timestamp + recvWindow + signature */
};

enum cq_rest_status {
    CQ_REST_OK,           /* 2xx with a JSON body */
    CQ_REST_REJECTED,     /* 4xx with {"code","msg"}: the exchange said no, definitively */
    CQ_REST_UNKNOWN,      /* an order request's fate is unknown: query before acting */
    CQ_REST_RATE_LIMITED, /* 429 now or one still in force: wait retry_after_ms */
    CQ_REST_BANNED,       /* 418 now or latched: nothing is sent until it ends */
    CQ_REST_THROTTLED,    /* refused locally: would cross the weight/order headroom */
    CQ_REST_NETWORK,      /* no usable answer for a safe request after the retries */
    CQ_REST_BAD_RESPONSE  /* an answer that is not the JSON the endpoint promises */
};

const char *cq_rest_status_name(enum cq_rest_status s); /* "ok", "rejected", … */

/* The shortest hold after a 429 or a 418, in milliseconds, whatever the
 * Retry-After header says. */
#define CQ_REST_RETRY_AFTER_MIN_MS 1000

struct cq_rest_response {
    enum cq_rest_status status;
    int http_status;         /* last HTTP status seen (0 if none) */
    int code;                /* the exchange's error code, e.g. -2010; 0 if none */
    char msg[256];           /* the exchange's msg verbatim, or our description */
    json_t *body;            /* owned: the parsed body for OK (and the error object) */
    int64_t retry_after_ms;  /* RATE_LIMITED / BANNED / THROTTLED: how long to wait */
    int attempts;            /* requests actually sent */
    int64_t latency_ms;      /* of the last attempt */
    int64_t perform_mono_us; /* cq_time_mono_us() when the last attempt went to curl
                                (curl_easy_perform, signed and set up); 0 none */
    int64_t sent_mono_us;    /* cq_time_mono_us() when the last attempt's request was about to
                                be written (curl's CURLINFO_PRETRANSFER_TIME_T after its start);
                                0 when it never got that far */
};

/* Release body; safe on a zeroed or already released response. */
void cq_rest_response_fini(struct cq_rest_response *r);

/* A bounded query-string builder. Values are percent-encoded (RFC 3986
 * unreserved characters kept). On overflow, overflow is set and the request
 * using it fails with -CQ_ETOOBIG. */
#define CQ_REST_PARAMS_MAX 2048
struct cq_rest_params {
    char buf[CQ_REST_PARAMS_MAX];
    size_t len;
    bool overflow;
};
void cq_rest_params_init(struct cq_rest_params *p);
void cq_rest_params_add(struct cq_rest_params *p, const char *key, const char *value);
void cq_rest_params_add_int(struct cq_rest_params *p, const char *key, int64_t value);
void cq_rest_params_add_dec(struct cq_rest_params *p, const char *key, cq_dec value);

struct cq_rest_options {
    const char *base_url; /* "https://api.binance.com" or "http://127.0.0.1:P" */
    const char *api_key;  /* NULL: public endpoints only */
    const char *api_secret;
    const char *service;           /* log service name: "feeder", "trader" */
    int64_t connect_timeout_ms;    /* default 2000 */
    int64_t total_timeout_ms;      /* per attempt; default 10000 */
    int64_t recv_window_ms;        /* default 5000 */
    unsigned weight_headroom_pct;  /* default 10: throttle at 90% of the limit */
    uint32_t weight_limit_1m;      /* until exchangeInfo says otherwise; default 6000 */
    uint32_t order_limit_10s;      /* default 100 */
    int max_retries;               /* safe requests; default 3 */
    int64_t backoff_base_ms;       /* default 200 */
    int64_t backoff_max_ms;        /* one sleep's cap; default 5000 */
    int64_t retry_budget_ms;       /* all sleeps of one call together; default 8000 */
    int64_t time_sync_interval_ms; /* default 60000 */
    uint64_t jitter_seed;          /* 0 = from the clock */
    const struct cq_clock *clock;  /* NULL = system; borrowed */
    /* NULL = none. Once *abort is true (any thread sets it, e.g. a stop
     * request), a transfer in flight is cut within ~1 s (libcurl's progress
     * callback), no retry or backoff sleep starts, and the call returns:
     * a safe request as CQ_REST_NETWORK, an order request whose fate is
     * unsure as CQ_REST_UNKNOWN (the restart path resolves it). Borrowed. */
    const atomic_bool *abort;
};

struct cq_rest_client;

struct cq_rest_client *cq_rest_client_new(const struct cq_rest_options *opts, struct cq_err *err);
void cq_rest_client_free(struct cq_rest_client *c);

/* Is (method, path) one that places, changes or cancels orders? True for
 * every method but GET on /api/vN/order, /api/vN/order/... (test,
 * cancelReplace, amend, oco), /api/vN/openOrders, /api/vN/orderList[/...]
 * and /api/vN/sor/order[/...], names compared case-insensitively. GETs on
 * them are queries: safe. */
bool cq_rest_is_order_endpoint(const char *method, const char *path);

/* A safe request, retried as above. method "GET"/"POST"/"PUT"/"DELETE";
 * path "/api/v3/klines" (no query, no '%', no empty or dot segments: curl
 * would rewrite those); params may be NULL; weight is the endpoint's
 * documented weight (used to throttle before sending). Returns 0 when *out
 * is filled (look at out->status; REJECTED is an answer, not an error), or
 * a negative CQ_E* for a caller bug (-CQ_EINVAL, -CQ_ETOOBIG; out->msg says
 * which) or -CQ_ENOMEM. An order endpoint is such a bug: -CQ_EINVAL, nothing
 * sent, out->msg naming cq_rest_order_send. */
int cq_rest_call(struct cq_rest_client *c, const char *method, const char *path,
                 const struct cq_rest_params *params, enum cq_rest_security sec, unsigned weight,
                 struct cq_rest_response *out) CQ_WUR;

/* An order request, sent at most once (the -1021 re-sync aside): when its
 * fate is unsure, out->status is CQ_REST_UNKNOWN and unknown_total counts
 * it. Same arguments and returns as cq_rest_call; any path is accepted (the
 * venue module decides what is an order), a POST that is not a test order
 * counts against the 10 s order budget. Called ONLY from the trader's venue
 * module (server/trader/venue.c): tests/integration/test_order_path.sh
 * enforces it over the object files. */
int cq_rest_order_send(struct cq_rest_client *c, const char *method, const char *path,
                       const struct cq_rest_params *params, enum cq_rest_security sec,
                       unsigned weight, struct cq_rest_response *out) CQ_WUR;

/* GET /api/v3/time and set the offset (server - local, ms, with half the
 * round trip accounted for). 0 or the failing status as -CQ_EVENUE. */
int cq_rest_sync_time(struct cq_rest_client *c, struct cq_err *err) CQ_WUR;

/* Learn the limits from an exchangeInfo body's rateLimits (REQUEST_WEIGHT
 * per 1 MINUTE, ORDERS per 10 SECOND). Unknown shapes are ignored. */
void cq_rest_client_learn_limits(struct cq_rest_client *c, const json_t *exchange_info);

struct cq_rest_budget {
    uint32_t used_weight_1m; /* last X-MBX-USED-WEIGHT-1M (0 after the minute rolls) */
    uint32_t weight_limit_1m;
    uint32_t order_count_10s; /* last X-MBX-ORDER-COUNT-10S */
    uint32_t order_limit_10s;
    int64_t rate_limited_for_ms; /* > 0 while a 429's Retry-After is in force */
    int64_t banned_for_ms;       /* > 0 while a 418 ban is latched */
    int64_t time_offset_ms;      /* server - local */
    int64_t last_sync_age_ms;    /* since the last successful time sync; -1 if never */
    uint64_t requests_total;     /* requests sent */
    uint64_t retries_total;
    uint64_t throttled_total;    /* refused locally for headroom */
    uint64_t rate_limited_total; /* 429s received */
    uint64_t banned_total;       /* 418s received */
    uint64_t unknown_total;      /* order requests with an unknown outcome */
    uint64_t time_syncs_total;
    uint64_t errors_total; /* REJECTED + NETWORK + BAD_RESPONSE */
    /* order requests sent on the connection opened ahead for them, and
     * spares closed unused (not connected yet, closed by the server, older
     * than 20 s): rest_client.c "What is never resent" */
    uint64_t order_spares_used_total;
    uint64_t order_spares_discarded_total;
};

/* Snapshot of the budget and counters; any thread. */
void cq_rest_client_budget(struct cq_rest_client *c, struct cq_rest_budget *out);

/* JSON of the budget for health details (new reference). */
json_t *cq_rest_budget_json(const struct cq_rest_budget *b);

#endif /* CQ_EXCHANGE_H */
