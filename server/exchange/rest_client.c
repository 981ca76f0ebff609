/*
 * rest_client.c — the Binance REST client (include/cq/rest.h): libcurl
 * easy API, HMAC-SHA256 signing, time sync, rate-limit budget, retries.
 *
 * Threads and ownership
 *   A client belongs to the thread that created it (the feeder's, the
 *   trader's). That thread alone touches the curl easy handle (kept alive
 *   between requests, so one TCP/TLS connection is reused), the response
 *   buffers, the PRNG and the log rate limiters. The only cross-thread entry
 *   is cq_rest_client_budget(): the owner writes the budget and counters
 *   (struct budget_state) under `lock`, in short sections with no I/O, and
 *   the snapshot copies them under the same lock. The owner reads its own
 *   budget without the lock (it is the only writer). No call blocks other
 *   than the HTTP transfer itself and the backoff sleep (real nanosleep; the
 *   injected clock only measures time).
 *
 * Two doors
 *   cq_rest_call sends safe requests and refuses every order endpoint
 *   (cq_rest_is_order_endpoint: any non-GET on /api/vN/order[/...],
 *   openOrders, orderList[/...], sor/order[/...]) with -CQ_EINVAL before
 *   anything is sent; cq_rest_order_send sends order requests and never
 *   resends them. Which door is a property of the function called, not of a
 *   flag a caller could get wrong, and only server/trader/venue.c calls the
 *   order door (tests/integration/test_order_path.sh checks the objects).
 *   Paths with '%', empty or dot segments are refused by both: curl would
 *   rewrite "/api/v3/x/../order" into an order endpoint.
 *
 * Retry policy
 *   - Safe requests (cq_rest_call: GETs, userDataStream keep-alive/close)
 *     are retried on transport errors (connect refused, timeout, reset,
 *     nothing received), on HTTP 5xx and on -1007: at most max_retries
 *     times; before retry n (0-based) we sleep uniform[0, min(backoff_max,
 *     backoff_base * 2^n)] ("full jitter", seeded splitmix64), and the sum
 *     of the sleeps of one call never exceeds retry_budget_ms (a sleep is
 *     cut to what is left; nothing left -> we stop). Exhausted -> NETWORK
 *     with the last HTTP status/code/msg seen. 4xx, 429, 418 and malformed
 *     2xx bodies are never retried.
 *   - -1021 (timestamp outside recvWindow / ahead of the server): the
 *     exchange refused the request before executing anything, so we re-sync
 *     the clock and resend ONCE, orders included. A second -1021 is
 *     REJECTED.
 *
 * What is never resent: order requests (cq_rest_order_send). Once an order request
 *   may have reached the exchange, a timeout, a connection dropped after
 *   sending, nothing received, an HTTP 5xx, -1007, or a 2xx we cannot read
 *   gives CQ_REST_UNKNOWN at once (attempts == 1) and the caller resolves
 *   it by querying origClientOrderId. Two details make that true:
 *     - libcurl silently resends a request on a REUSED keep-alive connection
 *       that dies before a single response byte arrives (Curl_retry_request).
 *       For an order that would be a blind resend, so order requests use
 *       CURLOPT_FRESH_CONNECT: a connection no request used before. The
 *       TCP handshake is made ahead, off the order's path: after each order
 *       request the client opens a spare connection to the same address
 *       (non-blocking connect), and the next order request gets it through
 *       CURLOPT_OPENSOCKETFUNCTION / CURLOPT_SOCKOPTFUNCTION
 *       (CURL_SOCKOPT_ALREADY_CONNECTED): to curl it is a fresh connection
 *       (never a reused one, so never silently resent), without a connect
 *       on the order's path (tick-to-order, docs/BENCHMARKS.md). A spare
 *       is used only when it is connected, has no pending error, has seen
 *       neither data nor end-of-file (MSG_PEEK) and is younger than
 *       ORDER_SPARE_MAX_AGE_MS; else it is closed and curl connects as
 *       before (counted: order_spares_used_total, _discarded_total). TLS,
 *       when the URL has it, is still negotiated on the order's path. The
 *       new connection is cached and reused by the next safe request.
 *     - A connect failure where curl reports that nothing was sent
 *       (CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST/_PROXY, and the
 *       URL/protocol errors raised before connecting) is definitively not
 *       executed: NETWORK, not UNKNOWN, and not resent either (the caller
 *       decides). A connect TIMEOUT is reported by curl as
 *       CURLE_OPERATION_TIMEDOUT like any other timeout, so it stays UNKNOWN
 *       (safe side).
 *   out->attempts counts transfers handed to curl, a refused connect
 *   included; requests_total counts the same. HTTP/1.1 is forced: requests
 *   are sequential on one handle, and HTTP/2 would add curl's
 *   refused-stream resend path.
 *
 * Budget
 *   Read from the exchange, not guessed. Every response's
 *   X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT-10S (names compared
 *   case-insensitively and exactly, so the legacy x-mbx-used-weight does not
 *   match) are stored with the server-time minute / 10-second window they
 *   were seen in (server time = injected wall clock + sync offset). When the
 *   server window changes the value counts as 0 until the next header (our
 *   estimate may roll a few ms before the exchange does; the headroom
 *   absorbs that).
 *   Before sending, a request whose weight would take used past
 *   limit * (100 - headroom) / 100 is refused locally (THROTTLED,
 *   retry_after_ms = ms to the next server minute); a new order (a POST
 *   through cq_rest_order_send, test orders aside) likewise against the
 *   10 s order count. Cancels are not held back by the order count:
 *   Binance's ORDERS limit counts new orders only, and a cancel must never
 *   wait behind it.
 *   A 429 blocks every request until now + Retry-After (60 s if absent),
 *   except a 429 -1015 ("Too many new orders"), which blocks only new
 *   orders: it is an order-rate limit, and cancels and queries must still
 *   go out. A 418 latches BANNED until now + Retry-After (120 s, Binance's
 *   shortest ban, if absent). A Retry-After below CQ_REST_RETRY_AFTER_MIN_MS
 *   (1 s; "Retry-After: 0" from a proxy) is raised to it, so a 429 always
 *   holds requests back. Both are measured on the injected monotonic
 *   clock. Local refusals send nothing (attempts == 0).
 *
 * Time sync
 *   offset = serverTime - (t_send + rtt / 2), t_send the wall time when the
 *   successful GET /api/v3/time attempt started, rtt its latency. Lazily
 *   before the first signed request, then whenever time_sync_interval_ms has
 *   passed (checked before each signed request), and after -1021. A failed
 *   sync is retried no sooner than 5 s later (the request goes out with the
 *   old offset, which is what a local NTP clock gives anyway).
 *
 * Options: 0 means the header's default for every field; max_retries < 0
 *   means no retries; weight_headroom_pct >= 100 is refused at _new
 *   (CQ_ECONFIG); recv_window_ms is capped at Binance's 60000. Response
 *   bodies are bounded by BODY_MAX_BYTES (16 MiB: production's unfiltered
 *   exchangeInfo is several MiB); more is BAD_RESPONSE (UNKNOWN for an
 *   order) and counted in errors_total.
 *
 * Logs: paths, statuses and codes only — never the URL (it carries the
 *   signature), the key or the secret, whether or not the log layer would
 *   redact them. Noisy events go through cq_log_ratelimit.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/buf.h"
#include "cq/clock.h"
#include "cq/rest.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "cq/sign.h"

/* A response body larger than this is BAD_RESPONSE (UNKNOWN for an order).
 * Production's unfiltered exchangeInfo is several MiB, hence not 4 MiB;
 * callers should still pass symbol(s). */
#define BODY_MAX_BYTES ((size_t)16 << 20)
/* Buffer capacity kept between requests; a bigger one is released. */
#define BODY_KEEP_BYTES ((size_t)1 << 20)
#define BASE_URL_MAX 256
#define PATH_MAX_BYTES 256
/* "&recvWindow=<20>&timestamp=<20>&signature=<64>" */
#define SIGNED_SUFFIX_MAX 160
#define QUERY_MAX (CQ_REST_PARAMS_MAX + SIGNED_SUFFIX_MAX)
#define URL_MAX (BASE_URL_MAX + PATH_MAX_BYTES + QUERY_MAX + 2)
#define KEY_HEADER_MAX 256
#define SERVICE_MAX 32
#define CLIENT_ORDER_ID_MAX 64

#define DEFAULT_RETRY_AFTER_429_MS 60000
#define DEFAULT_RETRY_AFTER_418_MS 120000
#define RETRY_AFTER_MAX_S (3 * 86400 + 3600) /* bans last at most 3 days */
#define FAILED_SYNC_RETRY_MS 5000
#define TEN_SECONDS_MS 10000
/* A spare order connection older than this is not used (closed, and the
 * order connects as before), ms: under the idle timeouts of servers and
 * NATs on the way (libmicrohttpd's in the simulator: 30 s). */
#define ORDER_SPARE_MAX_AGE_MS 20000

/* Written by the owner under `lock`; cq_rest_client_budget copies it. */
struct budget_state {
    uint32_t used_weight_1m;
    int64_t weight_minute; /* server minute index of used_weight_1m; -1 none */
    uint32_t weight_limit_1m;
    uint32_t order_count_10s;
    int64_t order_window; /* server 10 s index of order_count_10s; -1 none */
    uint32_t order_limit_10s;
    int64_t rate_limited_until_ms;   /* mono: every request refused before this */
    int64_t orders_limited_until_ms; /* mono: new orders refused before this (-1015) */
    int64_t banned_until_ms;         /* mono: 418 latch */
    int64_t time_offset_ms;          /* server - local wall */
    int64_t last_sync_mono_ms;       /* -1 never */
    uint64_t requests_total;
    uint64_t retries_total;
    uint64_t throttled_total;
    uint64_t rate_limited_total;
    uint64_t banned_total;
    uint64_t unknown_total;
    uint64_t time_syncs_total;
    uint64_t errors_total;
    uint64_t order_spares_used_total;
    uint64_t order_spares_discarded_total;
};

/* Headers of the current attempt's final response. */
struct attempt_headers {
    bool has_weight;
    uint32_t weight_1m;
    bool has_orders;
    uint32_t orders_10s;
    bool has_retry_after;
    int64_t retry_after_s;
};

struct cq_rest_client {
    /* configuration: immutable after _new */
    char base_url[BASE_URL_MAX];
    char *api_key;    /* owned, cq_secret_dup (fs.h); NULL when not configured */
    char *api_secret; /* owned, cq_secret_dup (fs.h); NULL when not configured */
    size_t api_secret_len;
    char service[SERVICE_MAX];
    int64_t connect_timeout_ms;
    int64_t total_timeout_ms;
    int64_t recv_window_ms;
    unsigned headroom_pct;
    int max_retries;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t retry_budget_ms;
    int64_t time_sync_interval_ms;
    const struct cq_clock *clock; /* borrowed */
    const atomic_bool *abort;     /* borrowed; NULL = never aborted */

    /* owner thread only */
    CURL *curl;                    /* owned */
    struct curl_slist *key_header; /* owned; NULL without a key */
    uint64_t rng;
    char errbuf[CURL_ERROR_SIZE];
    struct cq_buf body; /* current response body, bounded by BODY_MAX_BYTES */
    bool body_overflow;
    struct attempt_headers hdr;
    int64_t attempt_wall_ms; /* wall time when the last attempt started */
    bool sync_attempted;
    int64_t last_sync_try_mono_ms;
    char query[QUERY_MAX];
    char url[URL_MAX];
    struct cq_log_ratelimit rl_retry;
    struct cq_log_ratelimit rl_throttled;
    struct cq_log_ratelimit rl_refused;
    /* The spare order connection (see "What is never resent"): the address
     * curl connected to for the last order request, and a socket connected
     * to it ahead of the next one. */
    bool in_order;  /* an order request is being performed */
    bool have_addr; /* order_addr holds the order requests' peer */
    int order_family, order_socktype, order_protocol;
    struct sockaddr_storage order_addr;
    socklen_t order_addrlen;
    int spare_fd; /* -1 none; owned until handed to curl */
    int64_t spare_made_mono_ms;
    int handed_fd; /* the spare curl got for this request, -1 none */

    pthread_mutex_t lock;
    struct budget_state b; /* see struct budget_state */
};

/* ---- small helpers ------------------------------------------------------------ */

const char *cq_rest_status_name(enum cq_rest_status s)
{
    switch (s) {
    case CQ_REST_OK:
        return "ok";
    case CQ_REST_REJECTED:
        return "rejected";
    case CQ_REST_UNKNOWN:
        return "unknown";
    case CQ_REST_RATE_LIMITED:
        return "rate_limited";
    case CQ_REST_BANNED:
        return "banned";
    case CQ_REST_THROTTLED:
        return "throttled";
    case CQ_REST_NETWORK:
        return "network";
    case CQ_REST_BAD_RESPONSE:
        return "bad_response";
    }
    return "invalid";
}

void cq_rest_response_fini(struct cq_rest_response *r)
{
    if (r == NULL) {
        return;
    }
    json_decref(r->body);
    r->body = NULL;
}

static int64_t mono_ms(const struct cq_rest_client *c)
{
    return cq_clock_mono_ms(c->clock);
}

static int64_t wall_ms(const struct cq_rest_client *c)
{
    int64_t us = cq_clock_wall_us(c->clock);
    return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}

static int64_t server_now_ms(const struct cq_rest_client *c)
{
    return wall_ms(c) + c->b.time_offset_ms;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && (a < 0) != (b < 0)) {
        q--;
    }
    return q;
}

static int64_t ms_to_window_end(int64_t now, int64_t window)
{
    return (floor_div(now, window) + 1) * window - now;
}

/* splitmix64: tiny, seedable, good enough for jitter. */
static uint64_t next_rand(struct cq_rest_client *c)
{
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void set_msg(struct cq_rest_response *out, const char *fmt, ...) CQ_PRINTF(2, 3);

static void set_msg(struct cq_rest_response *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* our own short descriptions ("HTTP 503", "response larger than …"):
     * display text, never parsed; a cut one stays readable */
    vsnprintf(out->msg, sizeof(out->msg), fmt, ap);
    va_end(ap);
}

/* ---- params ------------------------------------------------------------------- */

static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static size_t encoded_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        n += is_unreserved(*p) ? 1 : 3;
    }
    return n;
}

static char *encode_into(char *dst, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (is_unreserved(*p)) {
            *dst++ = (char)*p;
        } else {
            *dst++ = '%';
            *dst++ = hex[*p >> 4];
            *dst++ = hex[*p & 0x0f];
        }
    }
    return dst;
}

void cq_rest_params_init(struct cq_rest_params *p)
{
    p->buf[0] = '\0';
    p->len = 0;
    p->overflow = false;
}

/* A NULL or empty key poisons the builder like an overflow: the request
 * using it fails with -CQ_ETOOBIG instead of silently dropping a param. A
 * NULL value is sent as empty. */
void cq_rest_params_add(struct cq_rest_params *p, const char *key, const char *value)
{
    if (p->overflow) {
        return;
    }
    if (key == NULL || key[0] == '\0') {
        p->overflow = true;
        return;
    }
    if (value == NULL) {
        value = "";
    }
    size_t need = (p->len > 0 ? 1 : 0) + encoded_len(key) + 1 + encoded_len(value);
    if (p->len + need >= sizeof(p->buf)) {
        p->overflow = true;
        return;
    }
    char *w = p->buf + p->len;
    if (p->len > 0) {
        *w++ = '&';
    }
    w = encode_into(w, key);
    *w++ = '=';
    w = encode_into(w, value);
    *w = '\0';
    p->len = (size_t)(w - p->buf);
}

void cq_rest_params_add_int(struct cq_rest_params *p, const char *key, int64_t value)
{
    char num[24]; /* bounded: an int64 is at most 20 characters with its sign */
    snprintf(num, sizeof(num), "%" PRId64, value);
    cq_rest_params_add(p, key, num);
}

void cq_rest_params_add_dec(struct cq_rest_params *p, const char *key, cq_dec value)
{
    char num[CQ_DEC_STR_MAX];
    cq_rest_params_add(p, key, cq_dec_format(value, num, sizeof(num)));
}

/* The value of `name` in an encoded query (client order ids are unreserved
 * characters, so no decoding is needed); "" if absent. Used for the
 * rest_unknown_outcome log line only: a value longer than out_len - 1 is
 * cut there (Binance's client order ids are at most 36 characters, under
 * CLIENT_ORDER_ID_MAX), never sent or compared. */
static void find_param(const char *query, const char *name, char *out, size_t out_len)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *p = query; p != NULL && *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "&");
            if (len >= out_len) {
                len = out_len - 1;
            }
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
        p = strchr(p, '&');
        if (p != NULL) {
            p++;
        }
    }
}

/* ---- construction ------------------------------------------------------------- */

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

struct cq_rest_client *cq_rest_client_new(const struct cq_rest_options *opts, struct cq_err *err)
{
    struct cq_rest_client *c = NULL;
    if (opts == NULL || opts->base_url == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "set exchange.rest_url", "REST client: no base_url");
        return NULL;
    }
    size_t url_len = strlen(opts->base_url);
    if (url_len == 0 || url_len >= BASE_URL_MAX ||
        (strncmp(opts->base_url, "http://", 7) != 0 &&
         strncmp(opts->base_url, "https://", 8) != 0) ||
        has_crlf(opts->base_url) || strchr(opts->base_url, '?') != NULL) {
        cq_err_set(err, CQ_ECONFIG, 0,
                   "use http(s)://host[:port] without a query, under 256 characters",
                   "REST client: invalid base_url");
        return NULL;
    }
    if (opts->api_key != NULL &&
        (has_crlf(opts->api_key) || strlen(opts->api_key) > KEY_HEADER_MAX - 20)) {
        cq_err_set(err, CQ_ECONFIG, 0, "check the API key",
                   "REST client: the API key has line breaks or is too long");
        return NULL;
    }
    if (opts->service != NULL && strlen(opts->service) >= SERVICE_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "use a service name under 32 characters",
                   "REST client: service name too long");
        return NULL;
    }
    if (opts->weight_headroom_pct >= 100) {
        cq_err_set(err, CQ_ECONFIG, 0, "use 0..99 (0 = default 10)",
                   "REST client: weight_headroom_pct %u leaves no budget",
                   opts->weight_headroom_pct);
        return NULL;
    }

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        cq_err_set(err, CQ_ENOMEM, ENOMEM, NULL, "REST client: out of memory");
        return NULL;
    }
    c->spare_fd = -1;
    c->handed_fd = -1;
    cq_buf_init(&c->body, BODY_MAX_BYTES + 1);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "REST client: mutex init failed");
        return NULL;
    }
    /* bounded: url_len < BASE_URL_MAX and the service name < SERVICE_MAX
     * were checked above */
    cq_strlcpy(c->base_url, opts->base_url, sizeof(c->base_url));
    while (url_len > 0 && c->base_url[url_len - 1] == '/') {
        c->base_url[--url_len] = '\0';
    }
    cq_strlcpy(c->service, opts->service != NULL ? opts->service : "exchange", sizeof(c->service));
    c->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
    c->total_timeout_ms = opts->total_timeout_ms > 0 ? opts->total_timeout_ms : 10000;
    c->recv_window_ms = opts->recv_window_ms > 0 ? opts->recv_window_ms : 5000;
    if (c->recv_window_ms > 60000) {
        c->recv_window_ms = 60000;
    }
    c->headroom_pct = opts->weight_headroom_pct > 0 ? opts->weight_headroom_pct : 10;
    /* 0 = default 3; a negative value means no retries at all */
    c->max_retries = opts->max_retries > 0 ? opts->max_retries : opts->max_retries < 0 ? 0 : 3;
    c->backoff_base_ms = opts->backoff_base_ms > 0 ? opts->backoff_base_ms : 200;
    c->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 5000;
    c->retry_budget_ms = opts->retry_budget_ms > 0 ? opts->retry_budget_ms : 8000;
    c->time_sync_interval_ms =
        opts->time_sync_interval_ms > 0 ? opts->time_sync_interval_ms : 60000;
    c->clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    c->abort = opts->abort;
    c->rng = opts->jitter_seed != 0
                 ? opts->jitter_seed
                 : (uint64_t)cq_clock_wall_us(c->clock) ^
                       ((uint64_t)cq_clock_mono_ms(c->clock) << 20) ^ (uint64_t)(uintptr_t)c;

    c->b.weight_limit_1m = opts->weight_limit_1m > 0 ? opts->weight_limit_1m : 6000;
    c->b.order_limit_10s = opts->order_limit_10s > 0 ? opts->order_limit_10s : 100;
    c->b.weight_minute = -1;
    c->b.order_window = -1;
    c->b.last_sync_mono_ms = -1;

    c->rl_retry = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    c->rl_throttled = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 1};
    c->rl_refused = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 1};

    if (opts->api_key != NULL && opts->api_key[0] != '\0') {
        char line[KEY_HEADER_MAX];
        /* bounded: the key is at most KEY_HEADER_MAX - 20 (checked above) */
        snprintf(line, sizeof(line), "X-MBX-APIKEY: %s", opts->api_key);
        c->api_key = cq_secret_dup(opts->api_key);
        c->key_header = curl_slist_append(NULL, line);
        cq_secret_wipe(line, sizeof(line));
        if (c->api_key == NULL || c->key_header == NULL) {
            goto nomem;
        }
    }
    if (opts->api_secret != NULL && opts->api_secret[0] != '\0') {
        c->api_secret = cq_secret_dup(opts->api_secret);
        if (c->api_secret == NULL) {
            goto nomem;
        }
        c->api_secret_len = strlen(c->api_secret);
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        goto nomem;
    }
    return c;

nomem:
    cq_rest_client_free(c);
    cq_err_set(err, CQ_ENOMEM, ENOMEM, NULL, "REST client: out of memory");
    return NULL;
}

void cq_rest_client_free(struct cq_rest_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
    }
    if (c->spare_fd >= 0) {
        close(c->spare_fd);
    }
    /* curl's copy of "X-MBX-APIKEY: <key>" is plain heap: wiped at least */
    for (struct curl_slist *l = c->key_header; l != NULL; l = l->next) {
        cq_secret_wipe(l->data, strlen(l->data));
    }
    curl_slist_free_all(c->key_header);
    cq_secret_free(c->api_key); /* wiped */
    cq_secret_free(c->api_secret);
    cq_buf_free(&c->body);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- one HTTP attempt ------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct cq_rest_client *c = ud;
    size_t len = size * n;
    if (len > BODY_MAX_BYTES - c->body.len) {
        c->body_overflow = true;
        return 0; /* curl aborts with CURLE_WRITE_ERROR */
    }
    if (!cq_buf_put(&c->body, p, len)) {
        return 0; /* out of memory */
    }
    return len;
}

/* Case-insensitive exact header name match. */
static bool header_name_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

/* Unsigned decimal (surrounding blanks allowed); false if not one or > max. */
static bool parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    size_t start = i;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max) {
            return false;
        }
        i++;
    }
    if (i == start) {
        return false;
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) {
        i++;
    }
    if (i != len) {
        return false;
    }
    *out = v;
    return true;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct cq_rest_client *c = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        memset(&c->hdr, 0, sizeof(c->hdr)); /* a new response (e.g. after 100) */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (colon == NULL) {
        return len;
    }
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t v_len = len - name_len - 1;
    uint64_t x = 0;
    if (header_name_is(p, name_len, "X-MBX-USED-WEIGHT-1M")) {
        if (parse_uint(v, v_len, UINT32_MAX, &x)) {
            c->hdr.has_weight = true;
            c->hdr.weight_1m = (uint32_t)x;
        }
    } else if (header_name_is(p, name_len, "X-MBX-ORDER-COUNT-10S")) {
        if (parse_uint(v, v_len, UINT32_MAX, &x)) {
            c->hdr.has_orders = true;
            c->hdr.orders_10s = (uint32_t)x;
        }
    } else if (header_name_is(p, name_len, "Retry-After")) {
        /* seconds; the HTTP-date form is ignored (the default applies) */
        if (parse_uint(v, v_len, UINT32_MAX, &x)) {
            c->hdr.has_retry_after = true;
            c->hdr.retry_after_s = x > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int64_t)x;
        }
    }
    return len;
}

struct attempt {
    CURLcode cc;
    long http_status;
    int64_t latency_ms;
    int64_t perform_mono_us; /* cq_time_mono_us() when curl_easy_perform was called */
    int64_t sent_mono_us;    /* cq_time_mono_us() when the request was about to be written; 0 */
};

/* ---- the spare order connection ---------------------------------------------------- */

static void spare_discard(struct cq_rest_client *c)
{
    close(c->spare_fd);
    c->spare_fd = -1;
    pthread_mutex_lock(&c->lock);
    c->b.order_spares_discarded_total++;
    pthread_mutex_unlock(&c->lock);
}

/* Is the spare connected, error-free, silent and young enough? */
static bool spare_usable(const struct cq_rest_client *c)
{
    if (mono_ms(c) - c->spare_made_mono_ms > ORDER_SPARE_MAX_AGE_MS) {
        return false;
    }
    struct pollfd pfd = {.fd = c->spare_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) != 1 || (pfd.revents & (POLLERR | POLLHUP)) != 0 ||
        (pfd.revents & POLLOUT) == 0) {
        return false; /* still connecting, or failed */
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(c->spare_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
        return false;
    }
    char byte;
    ssize_t n = recv(c->spare_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    /* -1 EAGAIN: open and silent. 0: the server closed it; data: not ours. */
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Open the next order request's connection ahead (after an order request,
 * off its path). Non-blocking: the handshake completes while we wait for
 * the next signal. */
static void spare_make(struct cq_rest_client *c)
{
    if (!c->have_addr || c->spare_fd >= 0) {
        return;
    }
    int fd = socket(c->order_family, c->order_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    c->order_protocol);
    if (fd < 0) {
        return; /* the next order connects as before */
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&c->order_addr, c->order_addrlen) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return;
    }
    c->spare_fd = fd;
    c->spare_made_mono_ms = mono_ms(c);
}

/* CURLOPT_OPENSOCKETFUNCTION: an order request's connection is the spare
 * when it is usable and goes to the same address; else a new socket, as
 * curl's own would be. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct cq_rest_client *c = clientp;
    if (c->in_order && purpose == CURLSOCKTYPE_IPCXN &&
        a->addrlen <= (unsigned)sizeof(c->order_addr)) {
        bool same = c->have_addr && c->order_family == a->family &&
                    c->order_socktype == a->socktype && c->order_protocol == a->protocol &&
                    c->order_addrlen == a->addrlen &&
                    memcmp(&c->order_addr, &a->addr, a->addrlen) == 0;
        if (!same) {
            c->have_addr = true;
            c->order_family = a->family;
            c->order_socktype = a->socktype;
            c->order_protocol = a->protocol;
            c->order_addrlen = a->addrlen;
            memcpy(&c->order_addr, &a->addr, a->addrlen);
        }
        if (c->spare_fd >= 0) {
            if (same && spare_usable(c)) {
                int fd = c->spare_fd; /* curl owns it from here (it closes it) */
                c->spare_fd = -1;
                c->handed_fd = fd;
                pthread_mutex_lock(&c->lock);
                c->b.order_spares_used_total++;
                pthread_mutex_unlock(&c->lock);
                return fd;
            }
            spare_discard(c);
        }
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* CURLOPT_SOCKOPTFUNCTION: the spare is connected already. */
static int sock_opt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    struct cq_rest_client *c = clientp;
    (void)purpose;
    return fd == c->handed_fd ? CURL_SOCKOPT_ALREADY_CONNECTED : CURL_SOCKOPT_OK;
}

static bool curl_ok(CURLcode cc)
{
    return cc == CURLE_OK;
}

/* Errors where curl never put a byte of the request on the wire. */
static bool curl_nothing_sent(CURLcode cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
           cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_UNSUPPORTED_PROTOCOL ||
           cc == CURLE_URL_MALFORMAT;
}

static bool aborted(const struct cq_rest_client *c)
{
    return c->abort != NULL && atomic_load(c->abort);
}

/* libcurl's progress callback (about once a second while a transfer
 * waits, and on every chunk): non-zero cuts the transfer
 * (CURLE_ABORTED_BY_CALLBACK) once the owner asked to abort. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return aborted(ud) ? 1 : 0;
}

static int perform(struct cq_rest_client *c, const char *method, bool send_key, bool fresh,
                   struct attempt *a)
{
    CURL *h = c->curl;
    curl_easy_reset(h); /* keeps the connection cache */
    cq_buf_reset(&c->body);
    c->body_overflow = false;
    memset(&c->hdr, 0, sizeof(c->hdr));
    c->errbuf[0] = '\0';

    CURLcode rc = CURLE_OK;
#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK) {                                                                      \
            rc = curl_easy_setopt(h, (opt), (val));                                                \
        }                                                                                          \
    } while (0)
    SETOPT(CURLOPT_URL, c->url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)c->total_timeout_ms);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_MAXCONNECTS, 2L);
    SETOPT(CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
    SETOPT(CURLOPT_USERAGENT, "coinquant");
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, c);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, c);
    if (c->abort != NULL) {
        SETOPT(CURLOPT_NOPROGRESS, 0L);
        SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
        SETOPT(CURLOPT_XFERINFODATA, c);
    }
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, c);
    SETOPT(CURLOPT_SOCKOPTFUNCTION, sock_opt);
    SETOPT(CURLOPT_SOCKOPTDATA, c);
    if (send_key && c->key_header != NULL) {
        SETOPT(CURLOPT_HTTPHEADER, c->key_header);
    }
    if (strcmp(method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "DELETE") == 0) {
        SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        /* POST/PUT: every param is in the query string; an empty body with
         * Content-Length: 0 (like @binance/connector) */
        SETOPT(CURLOPT_POSTFIELDS, "");
        SETOPT(CURLOPT_POSTFIELDSIZE, 0L);
        if (strcmp(method, "PUT") == 0) {
            SETOPT(CURLOPT_CUSTOMREQUEST, "PUT");
        }
    }
#undef SETOPT
    if (rc != CURLE_OK) {
        return -CQ_EIO;
    }

    c->attempt_wall_ms = wall_ms(c);
    int64_t t0 = mono_ms(c);
    c->in_order = fresh;
    c->handed_fd = -1;
    int64_t t0_us = cq_time_mono_us();
    a->cc = curl_easy_perform(h);
    a->latency_ms = mono_ms(c) - t0;
    c->in_order = false;
    c->handed_fd = -1;
    a->http_status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->http_status);
    /* CURLINFO_PRETRANSFER_TIME_T: from the start of the transfer until
     * just before the request is written (connect and TLS included); the
     * first byte of the request goes out right after. 0: never got there. */
    curl_off_t pre_us = 0;
    a->sent_mono_us = 0;
    a->perform_mono_us = t0_us;
    if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pre_us) == CURLE_OK && pre_us > 0) {
        a->sent_mono_us = t0_us + (int64_t)pre_us;
    }
    if (fresh) {
        spare_make(c); /* the next order's connection, after this one's answer */
    }
    pthread_mutex_lock(&c->lock);
    c->b.requests_total++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void release_big_body(struct cq_rest_client *c)
{
    if (c->body.cap > BODY_KEEP_BYTES) {
        cq_buf_free(&c->body);
    }
}

/* Store the budget headers of the response just received. */
static void apply_headers(struct cq_rest_client *c)
{
    if (!c->hdr.has_weight && !c->hdr.has_orders) {
        return;
    }
    int64_t now = server_now_ms(c);
    pthread_mutex_lock(&c->lock);
    if (c->hdr.has_weight) {
        c->b.used_weight_1m = c->hdr.weight_1m;
        c->b.weight_minute = floor_div(now, CQ_MS_PER_MINUTE);
    }
    if (c->hdr.has_orders) {
        c->b.order_count_10s = c->hdr.orders_10s;
        c->b.order_window = floor_div(now, TEN_SECONDS_MS);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- local admission ------------------------------------------------------------ */

static uint32_t current_used_weight(const struct cq_rest_client *c, int64_t server_now)
{
    return c->b.weight_minute == floor_div(server_now, CQ_MS_PER_MINUTE) ? c->b.used_weight_1m : 0;
}

static uint32_t current_order_count(const struct cq_rest_client *c, int64_t server_now)
{
    return c->b.order_window == floor_div(server_now, TEN_SECONDS_MS) ? c->b.order_count_10s : 0;
}

/* true when the request is refused locally; *out is filled. */
static bool refused_locally(struct cq_rest_client *c, const char *path, unsigned weight,
                            bool is_new_order, struct cq_rest_response *out)
{
    int64_t now = mono_ms(c);
    uint64_t suppressed = 0;
    if (now < c->b.banned_until_ms) {
        out->status = CQ_REST_BANNED;
        out->retry_after_ms = c->b.banned_until_ms - now;
        set_msg(out, "IP banned by the exchange (418); nothing is sent for %" PRId64 " ms",
                out->retry_after_ms);
        if (cq_log_ratelimit_allow(&c->rl_refused, now, &suppressed)) {
            cq_log_debug(c->service, "rest_refused_banned",
                         json_pack("{s:s,s:I,s:I}", "path", path, "retry_after_ms",
                                   (json_int_t)out->retry_after_ms, "suppressed",
                                   (json_int_t)suppressed),
                         "%s not sent: 418 ban latched", path);
        }
        return true;
    }
    int64_t until = c->b.rate_limited_until_ms;
    if (is_new_order && c->b.orders_limited_until_ms > until) {
        until = c->b.orders_limited_until_ms;
    }
    if (now < until) {
        out->status = CQ_REST_RATE_LIMITED;
        out->retry_after_ms = until - now;
        set_msg(out, "rate limited by the exchange (429); nothing is sent for %" PRId64 " ms",
                out->retry_after_ms);
        if (cq_log_ratelimit_allow(&c->rl_refused, now, &suppressed)) {
            cq_log_debug(c->service, "rest_refused_rate_limited",
                         json_pack("{s:s,s:I,s:I}", "path", path, "retry_after_ms",
                                   (json_int_t)out->retry_after_ms, "suppressed",
                                   (json_int_t)suppressed),
                         "%s not sent: 429 Retry-After in force", path);
        }
        return true;
    }

    int64_t server_now = server_now_ms(c);
    uint64_t keep = 100u - c->headroom_pct;
    uint64_t weight_cap = (uint64_t)c->b.weight_limit_1m * keep / 100u;
    uint64_t used = current_used_weight(c, server_now);
    const char *what = NULL;
    uint64_t have = 0, cap = 0;
    if (used + weight > weight_cap) {
        what = "weight";
        have = used;
        cap = weight_cap;
        out->retry_after_ms = ms_to_window_end(server_now, CQ_MS_PER_MINUTE);
    } else if (is_new_order) {
        uint64_t orders = current_order_count(c, server_now);
        uint64_t order_cap = (uint64_t)c->b.order_limit_10s * keep / 100u;
        if (orders + 1 > order_cap) {
            what = "orders_10s";
            have = orders;
            cap = order_cap;
            out->retry_after_ms = ms_to_window_end(server_now, TEN_SECONDS_MS);
        }
    }
    if (what == NULL) {
        return false;
    }
    out->status = CQ_REST_THROTTLED;
    set_msg(out, "throttled locally: %s %" PRIu64 " + %u would pass %" PRIu64 " (%u%% headroom)",
            what, have, strcmp(what, "weight") == 0 ? weight : 1u, cap, c->headroom_pct);
    pthread_mutex_lock(&c->lock);
    c->b.throttled_total++;
    pthread_mutex_unlock(&c->lock);
    if (cq_log_ratelimit_allow(&c->rl_throttled, now, &suppressed)) {
        cq_log_warn(c->service, "rest_throttled",
                    json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "path", path, "budget", what, "used",
                              (json_int_t)have, "cap", (json_int_t)cap, "weight",
                              (json_int_t)weight, "retry_after_ms", (json_int_t)out->retry_after_ms,
                              "suppressed", (json_int_t)suppressed),
                    "%s held back: %s budget at %" PRIu64 " of %" PRIu64, path, what, have, cap);
    }
    return true;
}

/* ---- the request loop ----------------------------------------------------------- */

enum step {
    STEP_DONE,  /* *out is final */
    STEP_RETRY, /* transient failure of a safe request */
    STEP_RESYNC /* -1021: re-sync and resend once */
};

struct call {
    const char *method;
    const char *path;
    const struct cq_rest_params *params;
    enum cq_rest_security sec;
    unsigned weight;
    bool is_order;     /* came through cq_rest_order_send: never resent */
    bool is_new_order; /* ... and a POST that is not a test order */
};

/* Build c->query and c->url for one attempt (a fresh timestamp each time). */
static int build_url(struct cq_rest_client *c, const struct call *k)
{
    size_t qlen = 0;
    if (k->params != NULL && k->params->len > 0) {
        memcpy(c->query, k->params->buf, k->params->len);
        qlen = k->params->len;
    }
    c->query[qlen] = '\0';
    if (k->sec == CQ_SEC_SIGNED) {
        int64_t ts = server_now_ms(c);
        int n = snprintf(c->query + qlen, sizeof(c->query) - qlen,
                         "%srecvWindow=%" PRId64 "&timestamp=%" PRId64, qlen > 0 ? "&" : "",
                         c->recv_window_ms, ts);
        if (n < 0 || (size_t)n >= sizeof(c->query) - qlen) {
            return -CQ_ETOOBIG;
        }
        qlen += (size_t)n;
        char sig[CQ_SIGN_HEX_LEN + 1];
        int rc =
            cq_sign_hmac_sha256_hex(c->api_secret, c->api_secret_len, c->query, qlen, NULL, 0, sig);
        if (rc < 0) {
            return rc;
        }
        n = snprintf(c->query + qlen, sizeof(c->query) - qlen, "&signature=%s", sig);
        cq_secret_wipe(sig, sizeof(sig));
        if (n < 0 || (size_t)n >= sizeof(c->query) - qlen) {
            return -CQ_ETOOBIG;
        }
        qlen += (size_t)n;
    }
    int n = snprintf(c->url, sizeof(c->url), "%s%s%s%s", c->base_url, k->path, qlen > 0 ? "?" : "",
                     c->query);
    if (n < 0 || (size_t)n >= sizeof(c->url)) {
        return -CQ_ETOOBIG;
    }
    return 0;
}

/* Copy {"code","msg"} of an error body into out; true if both were there. */
static bool take_code_msg(const json_t *body, struct cq_rest_response *out)
{
    json_t *code = json_object_get(body, "code");
    json_t *msg = json_object_get(body, "msg");
    if (!json_is_integer(code)) {
        return false;
    }
    json_int_t v = json_integer_value(code);
    out->code = v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int)v;
    if (json_is_string(msg)) {
        /* The exchange's msg is shown, never parsed (the code is what
         * callers act on); Binance's are far under 256 bytes, a longer one
         * is cut. */
        cq_strlcpy(out->msg, json_string_value(msg), sizeof(out->msg));
        return true;
    }
    return false;
}

static void log_unknown(struct cq_rest_client *c, const struct call *k,
                        const struct cq_rest_response *out, const char *cause)
{
    char client_id[CLIENT_ORDER_ID_MAX] = "";
    if (k->params != NULL) {
        find_param(k->params->buf, "newClientOrderId", client_id, sizeof(client_id));
        if (client_id[0] == '\0') {
            find_param(k->params->buf, "origClientOrderId", client_id, sizeof(client_id));
        }
    }
    pthread_mutex_lock(&c->lock);
    c->b.unknown_total++;
    pthread_mutex_unlock(&c->lock);
    cq_log_warn(c->service, "rest_unknown_outcome",
                json_pack("{s:s,s:s,s:s,s:i,s:i,s:s,s:I}", "method", k->method, "path", k->path,
                          "client_order_id", client_id, "http_status", out->http_status, "code",
                          out->code, "cause", cause, "latency_ms", (json_int_t)out->latency_ms),
                "%s %s: outcome unknown (%s); query origClientOrderId before acting", k->method,
                k->path, cause);
}

/* Classify one finished attempt. */
static enum step classify(struct cq_rest_client *c, const struct call *k, const struct attempt *a,
                          struct cq_rest_response *out)
{
    out->http_status = (int)a->http_status;
    out->latency_ms = a->latency_ms;
    out->code = 0;
    out->msg[0] = '\0';
    json_decref(out->body);
    out->body = NULL;

    if (c->body_overflow) {
        out->status = k->is_order ? CQ_REST_UNKNOWN : CQ_REST_BAD_RESPONSE;
        set_msg(out, "response body larger than %zu bytes", BODY_MAX_BYTES);
        if (k->is_order) {
            log_unknown(c, k, out, "body_too_large");
        }
        return STEP_DONE;
    }
    if (!curl_ok(a->cc)) {
        set_msg(out, "%s: %s", curl_easy_strerror(a->cc),
                c->errbuf[0] != '\0' ? c->errbuf : "no detail");
        if (!k->is_order) {
            out->status = CQ_REST_NETWORK;
            return STEP_RETRY;
        }
        if (curl_nothing_sent(a->cc)) {
            out->status = CQ_REST_NETWORK; /* definitively not executed */
            return STEP_DONE;
        }
        out->status = CQ_REST_UNKNOWN;
        log_unknown(c, k, out, a->cc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport");
        return STEP_DONE;
    }

    long st = a->http_status;
    json_error_t jerr;
    json_t *body = c->body.len > 0 ? json_loadb(c->body.p, c->body.len, 0, &jerr) : NULL;
    bool has_code = body != NULL && json_is_object(body) && take_code_msg(body, out);
    out->body = body;

    if (st == 429 || st == 418) {
        int64_t now = mono_ms(c);
        int64_t wait = c->hdr.has_retry_after ? c->hdr.retry_after_s * 1000
                       : st == 429            ? DEFAULT_RETRY_AFTER_429_MS
                                              : DEFAULT_RETRY_AFTER_418_MS;
        /* "Retry-After: 0" (a proxy, a misconfigured gateway) would block
         * nothing and let the next call hit the limit again at once. */
        if (wait < CQ_REST_RETRY_AFTER_MIN_MS) {
            wait = CQ_REST_RETRY_AFTER_MIN_MS;
        }
        out->retry_after_ms = wait;
        if (!has_code) {
            set_msg(out, "HTTP %ld", st);
        }
        pthread_mutex_lock(&c->lock);
        if (st == 418) {
            c->b.banned_until_ms = now + wait;
            c->b.banned_total++;
        } else if (out->code == -1015) {
            c->b.orders_limited_until_ms = now + wait;
            c->b.rate_limited_total++;
        } else {
            c->b.rate_limited_until_ms = now + wait;
            c->b.rate_limited_total++;
        }
        pthread_mutex_unlock(&c->lock);
        if (st == 418) {
            out->status = CQ_REST_BANNED;
            cq_log_error(c->service, "rest_banned",
                         json_pack("{s:s,s:s,s:i,s:I}", "method", k->method, "path", k->path,
                                   "code", out->code, "retry_after_ms", (json_int_t)wait),
                         "%s %s: IP banned (418); nothing is sent for %" PRId64 " ms", k->method,
                         k->path, wait);
        } else {
            out->status = CQ_REST_RATE_LIMITED;
            cq_log_warn(c->service, "rest_rate_limited",
                        json_pack("{s:s,s:s,s:i,s:I,s:s}", "method", k->method, "path", k->path,
                                  "code", out->code, "retry_after_ms", (json_int_t)wait, "scope",
                                  out->code == -1015 ? "new_orders" : "all"),
                        "%s %s: 429; %s held back for %" PRId64 " ms", k->method, k->path,
                        out->code == -1015 ? "new orders" : "every request", wait);
        }
        return STEP_DONE;
    }
    if (has_code && out->code == -1021 && st >= 400 && st < 500) {
        out->status = CQ_REST_REJECTED;
        return STEP_RESYNC;
    }
    if ((has_code && out->code == -1007) || st >= 500) {
        if (!has_code) {
            set_msg(out, "HTTP %ld", st);
        }
        if (!k->is_order) {
            out->status = CQ_REST_NETWORK;
            return STEP_RETRY;
        }
        out->status = CQ_REST_UNKNOWN;
        log_unknown(c, k, out, st >= 500 ? "http_5xx" : "code_1007");
        return STEP_DONE;
    }
    if (st >= 200 && st < 300) {
        if (body != NULL && !(has_code && out->code != 0)) {
            out->code = 0;
            out->msg[0] = '\0';
            out->status = CQ_REST_OK;
            return STEP_DONE;
        }
        if (body == NULL) {
            set_msg(out, "HTTP %ld with a body that is not JSON (%zu bytes)", st, c->body.len);
        }
        /* a 2xx order answer we cannot read: it was most likely executed */
        out->status = k->is_order ? CQ_REST_UNKNOWN : CQ_REST_BAD_RESPONSE;
        if (k->is_order) {
            log_unknown(c, k, out, "unreadable_2xx");
        }
        return STEP_DONE;
    }
    if (st >= 400 && st < 500 && has_code) {
        out->status = CQ_REST_REJECTED;
        return STEP_DONE;
    }
    out->status = CQ_REST_BAD_RESPONSE;
    if (!has_code) {
        set_msg(out, "HTTP %ld with %s", st, body != NULL ? "no code/msg" : "a non-JSON body");
    }
    return STEP_DONE;
}

/* Sleep before retry `n` (0-based); false when the budget is spent. */
/* A backoff sleep is taken in slices of this many ms, checking the abort
 * flag between them. */
#define BACKOFF_SLICE_MS 50

static bool backoff(struct cq_rest_client *c, int n, int64_t *slept_ms, int64_t *this_sleep)
{
    int64_t left = c->retry_budget_ms - *slept_ms;
    if (left <= 0) {
        return false;
    }
    int64_t cap = c->backoff_base_ms;
    for (int i = 0; i < n && cap < c->backoff_max_ms; i++) {
        cap *= 2;
    }
    if (cap > c->backoff_max_ms) {
        cap = c->backoff_max_ms;
    }
    int64_t d = (int64_t)(next_rand(c) % (uint64_t)(cap + 1));
    if (d > left) {
        d = left;
    }
    *this_sleep = d;
    /* in slices, so an abort (a stop request) ends the wait */
    for (int64_t waited = 0; waited < d && !aborted(c); waited += BACKOFF_SLICE_MS) {
        cq_time_sleep_ms(d - waited < BACKOFF_SLICE_MS ? d - waited : BACKOFF_SLICE_MS);
    }
    *slept_ms += d;
    return !aborted(c);
}

static int sync_time_inner(struct cq_rest_client *c, struct cq_rest_response *r);

static int run(struct cq_rest_client *c, const struct call *k, struct cq_rest_response *out)
{
    int retries = 0;
    bool resent_after_1021 = false;
    int64_t slept_ms = 0;
    for (;;) {
        if (refused_locally(c, k->path, k->weight, k->is_new_order, out)) {
            return 0;
        }
        int rc = build_url(c, k);
        if (rc < 0) {
            return rc;
        }
        struct attempt a;
        rc = perform(c, k->method, k->sec != CQ_SEC_NONE, k->is_order, &a);
        if (rc < 0) {
            return rc;
        }
        out->attempts++;
        out->perform_mono_us = a.perform_mono_us;
        out->sent_mono_us = a.sent_mono_us;
        apply_headers(c);
        enum step s = classify(c, k, &a, out);
        release_big_body(c);

        if (s == STEP_RESYNC) {
            if (resent_after_1021) {
                break; /* REJECTED -1021 */
            }
            struct cq_rest_response sync = {0};
            int src = sync_time_inner(c, &sync);
            cq_rest_response_fini(&sync);
            if (src < 0) {
                break; /* the offset did not change: resending is pointless */
            }
            resent_after_1021 = true;
            pthread_mutex_lock(&c->lock);
            c->b.retries_total++;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        if (s == STEP_RETRY) {
            int64_t d = 0;
            if (aborted(c) || retries >= c->max_retries || !backoff(c, retries, &slept_ms, &d)) {
                break; /* NETWORK, last status/code/msg kept */
            }
            retries++;
            pthread_mutex_lock(&c->lock);
            c->b.retries_total++;
            pthread_mutex_unlock(&c->lock);
            uint64_t suppressed = 0;
            if (cq_log_ratelimit_allow(&c->rl_retry, mono_ms(c), &suppressed)) {
                cq_log_warn(c->service, "rest_retry",
                            json_pack("{s:s,s:s,s:i,s:i,s:i,s:I,s:I}", "method", k->method, "path",
                                      k->path, "attempt", out->attempts, "http_status",
                                      out->http_status, "code", out->code, "sleep_ms",
                                      (json_int_t)d, "suppressed", (json_int_t)suppressed),
                            "%s %s failed (%s); retry %d of %d after %" PRId64 " ms", k->method,
                            k->path, out->msg, retries, c->max_retries, d);
            }
            continue;
        }
        break;
    }
    if (out->status == CQ_REST_REJECTED || out->status == CQ_REST_NETWORK ||
        out->status == CQ_REST_BAD_RESPONSE) {
        pthread_mutex_lock(&c->lock);
        c->b.errors_total++;
        pthread_mutex_unlock(&c->lock);
    }
    return 0;
}

/* ---- time sync ------------------------------------------------------------------ */

static int sync_time_inner(struct cq_rest_client *c, struct cq_rest_response *r)
{
    struct call k = {"GET", "/api/v3/time", NULL, CQ_SEC_NONE, 1, false, false};
    c->sync_attempted = true;
    c->last_sync_try_mono_ms = mono_ms(c);
    int rc = run(c, &k, r);
    if (rc < 0) {
        return rc;
    }
    if (r->status != CQ_REST_OK) {
        return -CQ_EVENUE;
    }
    json_t *t = json_object_get(r->body, "serverTime");
    if (!json_is_integer(t) || json_integer_value(t) <= 0) {
        r->status = CQ_REST_BAD_RESPONSE;
        set_msg(r, "GET /api/v3/time: no integer serverTime");
        pthread_mutex_lock(&c->lock);
        c->b.errors_total++;
        pthread_mutex_unlock(&c->lock);
        return -CQ_EVENUE;
    }
    int64_t server_ms = (int64_t)json_integer_value(t);
    int64_t offset = server_ms - (c->attempt_wall_ms + r->latency_ms / 2);
    pthread_mutex_lock(&c->lock);
    int64_t previous = c->b.time_offset_ms;
    c->b.time_offset_ms = offset;
    c->b.last_sync_mono_ms = mono_ms(c);
    c->b.time_syncs_total++;
    pthread_mutex_unlock(&c->lock);
    cq_log_info(c->service, "rest_time_synced",
                json_pack("{s:I,s:I,s:I}", "offset_ms", (json_int_t)offset, "previous_offset_ms",
                          (json_int_t)previous, "rtt_ms", (json_int_t)r->latency_ms),
                "server time offset %" PRId64 " ms (round trip %" PRId64 " ms)", offset,
                r->latency_ms);
    return 0;
}

int cq_rest_sync_time(struct cq_rest_client *c, struct cq_err *err)
{
    if (c == NULL) {
        return cq_err_set(err, CQ_EINVAL, 0, NULL, "cq_rest_sync_time: no client");
    }
    struct cq_rest_response r = {0};
    int rc = sync_time_inner(c, &r);
    if (rc == -CQ_EVENUE) {
        cq_err_set(err, CQ_EVENUE, 0, "check the exchange URL and connectivity",
                   "time sync failed: %s (HTTP %d, code %d): %s", cq_rest_status_name(r.status),
                   r.http_status, r.code, r.msg);
    } else if (rc < 0) {
        cq_err_set(err, -rc, 0, NULL, "time sync failed: %s", cq_strerror(rc));
    }
    cq_rest_response_fini(&r);
    return rc;
}

static void maybe_sync(struct cq_rest_client *c)
{
    int64_t now = mono_ms(c);
    bool due =
        c->b.last_sync_mono_ms < 0 || now - c->b.last_sync_mono_ms >= c->time_sync_interval_ms;
    if (!due) {
        return;
    }
    if (c->sync_attempted && now - c->last_sync_try_mono_ms < FAILED_SYNC_RETRY_MS &&
        c->last_sync_try_mono_ms > c->b.last_sync_mono_ms) {
        return; /* the last try failed a moment ago */
    }
    struct cq_rest_response r = {0};
    int rc = sync_time_inner(c, &r);
    if (rc < 0) {
        cq_log_warn(c->service, "rest_time_sync_failed",
                    json_pack("{s:s,s:i,s:i}", "status", cq_rest_status_name(r.status),
                              "http_status", r.http_status, "code", r.code),
                    "time sync failed (%s); signing with offset %" PRId64 " ms", r.msg,
                    c->b.time_offset_ms);
    }
    cq_rest_response_fini(&r);
}

/* ---- public requests: the safe door and the order door ------------------------- */

/* What follows "/api/vN/" on an order endpoint: the name alone, or the name
 * and "/..." (order/test, order/cancelReplace, order/amend/keepPriority,
 * order/oco, orderList/oco|oto|otoco, sor/order/test). */
static const char *const ORDER_ENDPOINTS[] = {"order", "openOrders", "orderList", "sor/order"};

bool cq_rest_is_order_endpoint(const char *method, const char *path)
{
    if (method == NULL || path == NULL || strcasecmp(method, "GET") == 0 ||
        strncasecmp(path, "/api/v", 6) != 0) {
        return false;
    }
    const char *p = path + 6;
    if (*p < '0' || *p > '9') {
        return false;
    }
    while (*p >= '0' && *p <= '9') {
        p++;
    }
    if (*p != '/') {
        return false;
    }
    p++;
    for (size_t i = 0; i < CQ_ARRAY_LEN(ORDER_ENDPOINTS); i++) {
        size_t n = strlen(ORDER_ENDPOINTS[i]);
        if (strncasecmp(p, ORDER_ENDPOINTS[i], n) == 0 && (p[n] == '\0' || p[n] == '/')) {
            return true;
        }
    }
    return false;
}

/* A path curl sends as written: no query or fragment, no '%' escapes, no
 * empty or dot segments (curl removes "/./" and "/../", so "/api/v3/x/../order"
 * would reach the exchange as "/api/v3/order" and slip past the check above). */
static bool path_is_plain(const char *path)
{
    if (path[0] != '/' || strlen(path) >= PATH_MAX_BYTES || strpbrk(path, "?#& \r\n%\\") != NULL ||
        strstr(path, "//") != NULL) {
        return false;
    }
    for (const char *seg = path; seg != NULL; seg = strchr(seg + 1, '/')) {
        const char *s = seg + 1;
        size_t n = strcspn(s, "/");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
            return false;
        }
    }
    return true;
}

/* The checks both doors share; -CQ_EINVAL/-CQ_ETOOBIG with out->msg set. */
static int check_request(const struct cq_rest_client *c, const char *fn, const char *method,
                         const char *path, const struct cq_rest_params *params,
                         enum cq_rest_security sec, struct cq_rest_response *out)
{
    if (c == NULL || method == NULL || path == NULL) {
        set_msg(out, "%s: no client, method or path", fn);
        return -CQ_EINVAL;
    }
    if (!path_is_plain(path)) {
        set_msg(out,
                "%s: path must start with '/', be under %d bytes and have no query, '%%', "
                "empty or dot segments",
                fn, PATH_MAX_BYTES);
        return -CQ_EINVAL;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0 &&
        strcmp(method, "DELETE") != 0) {
        set_msg(out, "%s: method must be GET, POST, PUT or DELETE", fn);
        return -CQ_EINVAL;
    }
    if (sec != CQ_SEC_NONE && sec != CQ_SEC_API_KEY && sec != CQ_SEC_SIGNED) {
        set_msg(out, "%s: unknown security type %d", fn, (int)sec);
        return -CQ_EINVAL;
    }
    if ((sec != CQ_SEC_NONE && c->api_key == NULL) ||
        (sec == CQ_SEC_SIGNED && c->api_secret == NULL)) {
        set_msg(out, "%s: %s request without an API %s: set them in the client options", fn,
                sec == CQ_SEC_SIGNED ? "signed" : "API-key", c->api_key == NULL ? "key" : "secret");
        return -CQ_EINVAL;
    }
    if (params != NULL && params->overflow) {
        set_msg(out, "%s: parameters longer than %d bytes", fn, CQ_REST_PARAMS_MAX);
        return -CQ_ETOOBIG;
    }
    return 0;
}

static int send_call(struct cq_rest_client *c, const struct call *k, struct cq_rest_response *out)
{
    if (k->sec == CQ_SEC_SIGNED) {
        maybe_sync(c);
    }
    return run(c, k, out);
}

int cq_rest_call(struct cq_rest_client *c, const char *method, const char *path,
                 const struct cq_rest_params *params, enum cq_rest_security sec, unsigned weight,
                 struct cq_rest_response *out)
{
    if (out == NULL) {
        return -CQ_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    int rc = check_request(c, "cq_rest_call", method, path, params, sec, out);
    if (rc < 0) {
        return rc;
    }
    if (cq_rest_is_order_endpoint(method, path)) {
        /* A safe request is retried on a 5xx: for an order that is a
         * duplicate. The method and path are ours (a few dozen bytes). */
        set_msg(out,
                "%s %.64s places, changes or cancels orders: cq_rest_call retries and never "
                "sends it; use cq_rest_order_send (server/trader/venue.c only)",
                method, path);
        return -CQ_EINVAL;
    }
    struct call k = {method, path, params, sec, weight, false, false};
    return send_call(c, &k, out);
}

int cq_rest_order_send(struct cq_rest_client *c, const char *method, const char *path,
                       const struct cq_rest_params *params, enum cq_rest_security sec,
                       unsigned weight, struct cq_rest_response *out)
{
    if (out == NULL) {
        return -CQ_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    int rc = check_request(c, "cq_rest_order_send", method, path, params, sec, out);
    if (rc < 0) {
        return rc;
    }
    /* A new order counts against the 10 s ORDERS budget; a test order
     * (".../test") reaches no matching engine and counts against nothing. */
    size_t n = strlen(path);
    bool is_test = n >= 5 && strcasecmp(path + n - 5, "/test") == 0;
    struct call k = {
        method, path, params, sec, weight, true, strcmp(method, "POST") == 0 && !is_test};
    return send_call(c, &k, out);
}

/* ---- limits and budget ---------------------------------------------------------- */

void cq_rest_client_learn_limits(struct cq_rest_client *c, const json_t *exchange_info)
{
    const json_t *limits = json_object_get(exchange_info, "rateLimits");
    if (c == NULL || !json_is_array(limits)) {
        return;
    }
    size_t i;
    const json_t *l;
    json_array_foreach(limits, i, l)
    {
        const char *type = json_string_value(json_object_get(l, "rateLimitType"));
        const char *interval = json_string_value(json_object_get(l, "interval"));
        const json_t *num = json_object_get(l, "intervalNum");
        const json_t *limit = json_object_get(l, "limit");
        if (type == NULL || interval == NULL || !json_is_integer(num) || !json_is_integer(limit) ||
            json_integer_value(limit) <= 0 || json_integer_value(limit) > (json_int_t)UINT32_MAX) {
            continue;
        }
        uint32_t v = (uint32_t)json_integer_value(limit);
        json_int_t n = json_integer_value(num);
        pthread_mutex_lock(&c->lock);
        if (strcmp(type, "REQUEST_WEIGHT") == 0 && strcmp(interval, "MINUTE") == 0 && n == 1) {
            c->b.weight_limit_1m = v;
        } else if (strcmp(type, "ORDERS") == 0 && strcmp(interval, "SECOND") == 0 && n == 10) {
            c->b.order_limit_10s = v;
        }
        pthread_mutex_unlock(&c->lock);
    }
}

void cq_rest_client_budget(struct cq_rest_client *c, struct cq_rest_budget *out)
{
    memset(out, 0, sizeof(*out));
    if (c == NULL) {
        return;
    }
    int64_t now = mono_ms(c);
    int64_t wall = wall_ms(c);
    pthread_mutex_lock(&c->lock);
    int64_t server_now = wall + c->b.time_offset_ms;
    out->used_weight_1m = current_used_weight(c, server_now);
    out->weight_limit_1m = c->b.weight_limit_1m;
    out->order_count_10s = current_order_count(c, server_now);
    out->order_limit_10s = c->b.order_limit_10s;
    int64_t rl_until = c->b.rate_limited_until_ms > c->b.orders_limited_until_ms
                           ? c->b.rate_limited_until_ms
                           : c->b.orders_limited_until_ms;
    out->rate_limited_for_ms = rl_until > now ? rl_until - now : 0;
    out->banned_for_ms = c->b.banned_until_ms > now ? c->b.banned_until_ms - now : 0;
    out->time_offset_ms = c->b.time_offset_ms;
    out->last_sync_age_ms = c->b.last_sync_mono_ms < 0 ? -1 : now - c->b.last_sync_mono_ms;
    out->requests_total = c->b.requests_total;
    out->retries_total = c->b.retries_total;
    out->throttled_total = c->b.throttled_total;
    out->rate_limited_total = c->b.rate_limited_total;
    out->banned_total = c->b.banned_total;
    out->unknown_total = c->b.unknown_total;
    out->time_syncs_total = c->b.time_syncs_total;
    out->errors_total = c->b.errors_total;
    out->order_spares_used_total = c->b.order_spares_used_total;
    out->order_spares_discarded_total = c->b.order_spares_discarded_total;
    pthread_mutex_unlock(&c->lock);
}

json_t *cq_rest_budget_json(const struct cq_rest_budget *b)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                     "used_weight_1m", (json_int_t)b->used_weight_1m, "weight_limit_1m",
                     (json_int_t)b->weight_limit_1m, "order_count_10s",
                     (json_int_t)b->order_count_10s, "order_limit_10s",
                     (json_int_t)b->order_limit_10s, "rate_limited_for_ms",
                     (json_int_t)b->rate_limited_for_ms, "banned_for_ms",
                     (json_int_t)b->banned_for_ms, "time_offset_ms", (json_int_t)b->time_offset_ms,
                     "last_sync_age_ms", (json_int_t)b->last_sync_age_ms, "requests_total",
                     (json_int_t)b->requests_total, "retries_total", (json_int_t)b->retries_total,
                     "throttled_total", (json_int_t)b->throttled_total, "rate_limited_total",
                     (json_int_t)b->rate_limited_total, "banned_total", (json_int_t)b->banned_total,
                     "unknown_total", (json_int_t)b->unknown_total, "time_syncs_total",
                     (json_int_t)b->time_syncs_total, "errors_total", (json_int_t)b->errors_total,
                     "order_spares_used_total", (json_int_t)b->order_spares_used_total,
                     "order_spares_discarded_total", (json_int_t)b->order_spares_discarded_total);
}
