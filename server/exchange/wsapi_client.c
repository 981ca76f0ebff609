/*
 * wsapi_client.c — the user data stream over the WebSocket API (see
 * cq/wsapi.h for the contract). One struct cq_ws_client carries the
 * connection (reconnect backoff, pings, silence, the 24 h cap); this file
 * adds the subscription on top of it:
 *
 *   connect ──> SUBSCRIBING ──200──> SUBSCRIBED ──eventStreamTerminated──> RETRY_WAIT
 *                   │  └──4xx──> RETRY_WAIT (backoff, retryAfter) ──due──> SUBSCRIBING
 *                   └──no answer in CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS──> reconnect
 *   any close ──> CONNECTING (the ws client reconnects with its own backoff)
 *   serverShutdown ──> reconnect now
 *
 * Owner thread only (the loop's); nothing here blocks: the HMAC is local,
 * cq_ws_client_send queues.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/backoff.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "cq/text.h"
#include "cq/wsapi.h"

#define REQUEST_MAX 1024 /* bytes of a subscribe request; key and signature are bounded */
#define API_KEY_MAX 256  /* bytes of an API key we accept (Binance's are 64) */
#define REASON_MAX 64

struct cq_wsapi {
    struct cq_ws_client *ws;      /* owned by the loop; freed with cq_wsapi_free */
    const struct cq_clock *clock; /* borrowed */
    struct cq_wsapi_callbacks cb;
    char url[CQ_WSAPI_URL_MAX];
    char api_key[API_KEY_MAX];
    char *api_secret; /* owned, cq_secret_dup: not dumped, wiped on free */
    size_t api_secret_len;

    enum cq_wsapi_state state;
    char reason[REASON_MAX];
    char problem[CQ_WSAPI_PROBLEM_MAX];
    uint64_t next_id;          /* request ids, from 1 */
    uint64_t pending_id;       /* the subscribe out; 0 = none */
    uint64_t time_id;          /* a `time` request out (after -1021); 0 = none */
    int64_t time_sent_wall_ms; /* our wall clock when it was sent */
    int64_t time_offset_ms;    /* server - local, learned after a -1021; 0 until then */
    int64_t pending_since;     /* mono ms it was sent */
    int64_t subscription_id;   /* -1 = none */
    bool ever_subscribed;
    char gap_reason[REASON_MAX]; /* why the last subscription ended; "" = none */
    struct cq_backoff retry;     /* between refused subscribes */

    uint64_t subscribes_sent, subscribes_ok, subscribes_refused, subscribe_timeouts;
    uint64_t events, malformed, stray, gaps, terminated, server_shutdowns;
    int64_t used_weight_1m, weight_limit_1m, last_error_code;

    bool reconnect_due;    /* serverShutdown: reconnect at the next tick, not
                            * inside the message callback */
    cq_wsapi_send_fn send; /* NULL = cq_ws_client_send */
    void *send_ctx;
    struct cq_log_ratelimit malformed_rl, refused_rl;
};

const char *cq_wsapi_state_name(enum cq_wsapi_state s)
{
    switch (s) {
    case CQ_WSAPI_IDLE:
        return "idle";
    case CQ_WSAPI_CONNECTING:
        return "connecting";
    case CQ_WSAPI_SUBSCRIBING:
        return "subscribing";
    case CQ_WSAPI_RETRY_WAIT:
        return "retry_wait";
    case CQ_WSAPI_SUBSCRIBED:
        return "subscribed";
    }
    return "unknown";
}

static int64_t now_mono(const struct cq_wsapi *a)
{
    return cq_clock_mono_ms(a->clock);
}

static void set_state(struct cq_wsapi *a, enum cq_wsapi_state s, const char *reason)
{
    a->state = s;
    /* Reasons are our own snake_case codes or the ws client's, all shorter
     * than REASON_MAX; a longer one would only be cut in the health text. */
    (void)cq_strlcpy(a->reason, reason, sizeof(a->reason));
}

/* The subscription (if any) ended: remember why, for the gap event that the
 * next subscription reports. The first reason wins until then. */
static void subscription_lost(struct cq_wsapi *a, const char *why)
{
    if (a->subscription_id >= 0 || a->gap_reason[0] == '\0') {
        /* Bounded as set_state's reasons. */
        (void)cq_strlcpy(a->gap_reason, why, sizeof(a->gap_reason));
    }
    a->subscription_id = -1;
    a->pending_id = 0;
}

/* ---- the request ------------------------------------------------------------------ */

int cq_wsapi_subscribe_request(uint64_t id, const char *api_key, const char *api_secret,
                               int64_t timestamp_ms, int64_t recv_window_ms, char *out,
                               size_t out_len)
{
    /* Params sorted by name: apiKey < recvWindow < timestamp. */
    char payload[REQUEST_MAX];
    int n =
        snprintf(payload, sizeof(payload), "apiKey=%s&recvWindow=%" PRId64 "&timestamp=%" PRId64,
                 api_key, recv_window_ms, timestamp_ms);
    if (n < 0 || (size_t)n >= sizeof(payload)) {
        return -CQ_ETOOBIG;
    }
    char sig[CQ_SIGN_HEX_LEN + 1];
    int rc =
        cq_sign_hmac_sha256_hex(api_secret, strlen(api_secret), payload, (size_t)n, NULL, 0, sig);
    if (rc < 0) {
        return rc;
    }
    n = snprintf(out, out_len,
                 "{\"id\":%" PRIu64 ",\"method\":\"userDataStream.subscribe.signature\","
                 "\"params\":{\"apiKey\":\"%s\",\"recvWindow\":%" PRId64 ",\"timestamp\":%" PRId64
                 ",\"signature\":\"%s\"}}",
                 id, api_key, recv_window_ms, timestamp_ms, sig);
    if (n < 0 || (size_t)n >= out_len) {
        return -CQ_ETOOBIG;
    }
    return n;
}

static void retry_later(struct cq_wsapi *a, int64_t now, int64_t server_wait_ms, const char *why)
{
    int64_t delay = cq_backoff_fail(&a->retry, now, server_wait_ms);
    set_state(a, CQ_WSAPI_RETRY_WAIT, why);
    (void)delay;
}

static void send_subscribe(struct cq_wsapi *a, int64_t now)
{
    char req[REQUEST_MAX];
    uint64_t id = ++a->next_id;
    int64_t wall_ms = cq_clock_wall_us(a->clock) / 1000 + a->time_offset_ms;
    int n = cq_wsapi_subscribe_request(id, a->api_key, a->api_secret, wall_ms,
                                       CQ_WSAPI_RECV_WINDOW_MS, req, sizeof(req));
    int rc = n;
    if (n >= 0) {
        rc = a->send != NULL ? a->send(a->send_ctx, req, (size_t)n)
                             : cq_ws_client_send(a->ws, req, (size_t)n);
    }
    if (rc < 0) {
        /* Not connected after all (a close is on its way) or the send queue
         * is full: try again after the backoff. */
        (void)snprintf(a->problem, sizeof(a->problem), "cannot send the subscribe request: %s",
                       cq_strerror(-rc));
        retry_later(a, now, 0, "send_failed");
        return;
    }
    a->subscribes_sent++;
    a->pending_id = id;
    a->pending_since = now;
    set_state(a, CQ_WSAPI_SUBSCRIBING, "subscribing");
}

/* ---- answers and events --------------------------------------------------------- */

/* -1021 (timestamp outside recvWindow): our clock is off. Ask the server's
 * (`time`, weight 1) so the retry's timestamp carries the offset. */
static void ask_server_time(struct cq_wsapi *a)
{
    char req[96];
    uint64_t id = ++a->next_id;
    int n = snprintf(req, sizeof(req), "{\"id\":%" PRIu64 ",\"method\":\"time\"}", id);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        return; /* cannot happen: a 20-digit id fits */
    }
    int rc = a->send != NULL ? a->send(a->send_ctx, req, (size_t)n)
                             : cq_ws_client_send(a->ws, req, (size_t)n);
    if (rc == 0) {
        a->time_id = id;
        a->time_sent_wall_ms = cq_clock_wall_us(a->clock) / 1000;
    }
}

/* The `time` answer: offset = server time - the midpoint of our round trip. */
static void on_time_answer(struct cq_wsapi *a, json_t *msg)
{
    a->time_id = 0;
    json_t *t = json_object_get(json_object_get(msg, "result"), "serverTime");
    if (json_integer_value(json_object_get(msg, "status")) != 200 || !json_is_integer(t)) {
        return;
    }
    int64_t now_wall = cq_clock_wall_us(a->clock) / 1000;
    int64_t mid = a->time_sent_wall_ms + (now_wall - a->time_sent_wall_ms) / 2;
    a->time_offset_ms = (int64_t)json_integer_value(t) - mid;
    cq_log_info("feeder", "user_stream_time_synced",
                json_pack("{s:I}", "offset_ms", (json_int_t)a->time_offset_ms),
                "the WebSocket API's clock is %lld ms from ours; subscribes carry the offset",
                (long long)a->time_offset_ms);
}

static void note_rate_limits(struct cq_wsapi *a, json_t *limits)
{
    size_t i;
    json_t *l;
    json_array_foreach(limits, i, l)
    {
        const char *type = json_string_value(json_object_get(l, "rateLimitType"));
        const char *interval = json_string_value(json_object_get(l, "interval"));
        json_int_t num = json_integer_value(json_object_get(l, "intervalNum"));
        json_t *count = json_object_get(l, "count");
        json_t *limit = json_object_get(l, "limit");
        if (type != NULL && strcmp(type, "REQUEST_WEIGHT") == 0 && interval != NULL &&
            strcmp(interval, "MINUTE") == 0 && num == 1 && json_is_integer(count)) {
            a->used_weight_1m = json_integer_value(count);
            if (json_is_integer(limit)) {
                a->weight_limit_1m = json_integer_value(limit);
            }
        }
    }
}

static void on_subscribe_answer(struct cq_wsapi *a, json_t *msg, int64_t now)
{
    json_int_t status = json_integer_value(json_object_get(msg, "status"));
    a->pending_id = 0;
    json_t *sub = json_object_get(json_object_get(msg, "result"), "subscriptionId");
    if (status == 200 && json_is_integer(sub) && json_integer_value(sub) >= 0) {
        a->subscribes_ok++;
        a->subscription_id = json_integer_value(sub);
        a->problem[0] = '\0';
        a->last_error_code = 0;
        uint32_t failures = a->retry.failures;
        cq_backoff_reset(&a->retry);
        set_state(a, CQ_WSAPI_SUBSCRIBED, "subscribed");
        const char *why = a->ever_subscribed
                              ? (a->gap_reason[0] != '\0' ? a->gap_reason : "resubscribed")
                              : "start";
        char reason[REASON_MAX];
        (void)cq_strlcpy(reason, why, sizeof(reason)); /* same size: never cut */
        a->gap_reason[0] = '\0';
        a->ever_subscribed = true;
        a->gaps++;
        cq_log_info("feeder", "user_stream_subscribed",
                    json_pack("{s:I,s:s,s:I}", "subscription_id", (json_int_t)a->subscription_id,
                              "after", reason, "failures", (json_int_t)failures),
                    "user data stream subscribed over the WebSocket API (subscription %" PRId64
                    ", after %s)",
                    a->subscription_id, reason);
        if (a->cb.on_gap != NULL) {
            a->cb.on_gap(a->cb.ctx, reason, a->gaps, now);
        }
        return;
    }
    a->subscribes_refused++;
    json_t *error = json_object_get(msg, "error");
    json_int_t code = json_integer_value(json_object_get(error, "code"));
    const char *text = json_string_value(json_object_get(error, "msg"));
    a->last_error_code = code;
    if (status == 200) {
        (void)snprintf(a->problem, sizeof(a->problem), "answer without a subscriptionId");
    } else {
        /* %.100s: the server's text is cut to fit; the code says what it was. */
        (void)snprintf(a->problem, sizeof(a->problem), "status %d code %lld: %.100s", (int)status,
                       (long long)code, text != NULL ? text : "(no msg)");
    }
    /* 429/418 carry {"data":{"serverTime":ms,"retryAfter":ms}}: not sooner. */
    json_t *data = json_object_get(error, "data");
    json_int_t retry_after = json_integer_value(json_object_get(data, "retryAfter"));
    json_int_t server_time = json_integer_value(json_object_get(data, "serverTime"));
    int64_t server_wait =
        retry_after > server_time && server_time > 0 ? (int64_t)(retry_after - server_time) : 0;
    retry_later(a, now, server_wait, "subscribe_refused");
    if (code == -1021) {
        ask_server_time(a);
    }
    uint64_t suppressed = 0;
    if (cq_log_ratelimit_allow(&a->refused_rl, now, &suppressed)) {
        cq_log_warn("feeder", "user_stream_subscribe_failed",
                    json_pack("{s:I,s:I,s:s,s:I,s:I,s:I}", "status", (json_int_t)status, "code",
                              code, "msg", text != NULL ? text : "", "attempt",
                              (json_int_t)a->retry.failures, "retry_in_ms",
                              (json_int_t)a->retry.last_delay_ms, "suppressed",
                              (json_int_t)suppressed),
                    "the user data stream subscription was refused (%s); retry in %lld ms",
                    a->problem, (long long)a->retry.last_delay_ms);
    }
}

static void drop_malformed(struct cq_wsapi *a, const char *why, size_t len, int64_t now)
{
    a->malformed++;
    uint64_t suppressed = 0;
    if (cq_log_ratelimit_allow(&a->malformed_rl, now, &suppressed)) {
        cq_log_warn("feeder", "user_stream_malformed",
                    json_pack("{s:s,s:I,s:I}", "why", why, "bytes", (json_int_t)len, "suppressed",
                              (json_int_t)suppressed),
                    "a WebSocket API frame was dropped: %s", why);
    }
}

static void on_server_shutdown(struct cq_wsapi *a)
{
    a->server_shutdowns++;
    cq_log_info("feeder", "user_stream_server_shutdown", NULL,
                "the exchange announced a WebSocket API shutdown; reconnecting now");
    subscription_lost(a, "server_shutdown");
    set_state(a, CQ_WSAPI_CONNECTING, "server_shutdown");
    a->reconnect_due = true;
}

void cq_wsapi__on_message(struct cq_wsapi *a, const char *data, size_t len, int64_t recv_mono_ms)
{
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(msg)) {
        drop_malformed(a, msg == NULL ? "not JSON" : "not a JSON object", len, recv_mono_ms);
        json_decref(msg);
        return;
    }
    json_t *limits = json_object_get(msg, "rateLimits");
    if (json_is_array(limits)) {
        note_rate_limits(a, limits);
    }
    json_t *event = json_object_get(msg, "event");
    json_t *status = json_object_get(msg, "status");
    if (json_is_object(event)) {
        const char *e = json_string_value(json_object_get(event, "e"));
        json_t *sub = json_object_get(msg, "subscriptionId");
        if (e != NULL && strcmp(e, "serverShutdown") == 0) {
            on_server_shutdown(a);
        } else if (e == NULL) {
            drop_malformed(a, "event without \"e\"", len, recv_mono_ms);
        } else if (!json_is_integer(sub) || a->subscription_id < 0 ||
                   json_integer_value(sub) != a->subscription_id) {
            a->stray++; /* not the subscription we hold (an old one, or none) */
        } else if (strcmp(e, "eventStreamTerminated") == 0) {
            a->terminated++;
            cq_log_warn("feeder", "user_stream_terminated",
                        json_pack("{s:I}", "subscription_id", (json_int_t)a->subscription_id),
                        "the exchange ended the user data subscription; resubscribing");
            subscription_lost(a, "event_stream_terminated");
            /* Not a failure, but a server that ends every subscription at
             * once must not get a subscribe per millisecond: the backoff. */
            retry_later(a, recv_mono_ms, 0, "event_stream_terminated");
        } else {
            char *text = json_dumps(event, JSON_COMPACT);
            if (text == NULL) {
                drop_malformed(a, "out of memory", len, recv_mono_ms);
            } else {
                a->events++;
                if (a->cb.on_event != NULL) {
                    a->cb.on_event(a->cb.ctx, text, strlen(text), recv_mono_ms);
                }
                free(text);
            }
        }
    } else if (json_is_integer(status)) {
        json_t *id = json_object_get(msg, "id");
        if (a->pending_id != 0 && json_is_integer(id) &&
            (uint64_t)json_integer_value(id) == a->pending_id && a->state == CQ_WSAPI_SUBSCRIBING) {
            on_subscribe_answer(a, msg, recv_mono_ms);
        } else if (a->time_id != 0 && json_is_integer(id) &&
                   (uint64_t)json_integer_value(id) == a->time_id) {
            on_time_answer(a, msg);
        } else {
            a->stray++; /* an answer to nothing we have out */
        }
    } else {
        drop_malformed(a, "neither an answer nor an event", len, recv_mono_ms);
    }
    json_decref(msg);
}

void cq_wsapi__on_state(struct cq_wsapi *a, enum cq_ws_state state, const char *reason)
{
    if (state == CQ_WS_CONNECTED) {
        /* A fresh connection holds no subscription. */
        a->subscription_id = -1;
        a->pending_id = 0;
        a->time_id = 0;
        send_subscribe(a, now_mono(a));
        return;
    }
    if (a->state == CQ_WSAPI_IDLE) {
        return;
    }
    subscription_lost(a, reason != NULL ? reason : "closed");
    set_state(a, state == CQ_WS_IDLE ? CQ_WSAPI_IDLE : CQ_WSAPI_CONNECTING,
              reason != NULL ? reason : "closed");
}

static void ws_on_message(void *ctx, const char *data, size_t len, int64_t recv_mono_ms)
{
    cq_wsapi__on_message(ctx, data, len, recv_mono_ms);
}

static void ws_on_state(void *ctx, enum cq_ws_state state, const char *reason)
{
    cq_wsapi__on_state(ctx, state, reason);
}

void cq_wsapi_tick(struct cq_wsapi *a, int64_t now)
{
    if (a->reconnect_due) {
        a->reconnect_due = false;
        struct cq_ws_client_stats ws;
        cq_ws_client_stats(a->ws, &ws);
        if (a->send == NULL && ws.state == CQ_WS_CONNECTED) { /* not if the server closed first */
            cq_ws_client_reconnect(a->ws, "server_shutdown");
        }
        return;
    }
    if (a->state == CQ_WSAPI_RETRY_WAIT && cq_backoff_due(&a->retry, now)) {
        send_subscribe(a, now);
    } else if (a->state == CQ_WSAPI_SUBSCRIBING &&
               now - a->pending_since >= CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS) {
        a->subscribe_timeouts++;
        cq_log_warn("feeder", "user_stream_subscribe_timeout",
                    json_pack("{s:I}", "timeout_ms", (json_int_t)CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS),
                    "no answer to the user data subscribe within %d ms; reconnecting",
                    CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS);
        subscription_lost(a, "subscribe_timeout");
        set_state(a, CQ_WSAPI_CONNECTING, "subscribe_timeout");
        if (a->send == NULL) {
            cq_ws_client_reconnect(a->ws, "subscribe_timeout");
        }
    }
}

int64_t cq_wsapi_due_in_ms(const struct cq_wsapi *a, int64_t now)
{
    if (a->reconnect_due) {
        return 0;
    }
    if (a->state == CQ_WSAPI_RETRY_WAIT) {
        return a->retry.next_at_ms > now ? a->retry.next_at_ms - now : 0;
    }
    if (a->state == CQ_WSAPI_SUBSCRIBING) {
        int64_t due = a->pending_since + CQ_WSAPI_SUBSCRIBE_TIMEOUT_MS - now;
        return due > 0 ? due : 0;
    }
    return INT64_MAX; /* otherwise the WS client's own timers (cq_ws_loop_service) */
}

/* ---- life cycle ------------------------------------------------------------------- */

struct cq_wsapi *cq_wsapi_new(struct cq_ws_loop *loop, const struct cq_wsapi_options *opts,
                              const struct cq_wsapi_callbacks *cb, struct cq_err *err)
{
    if (opts->url == NULL || opts->api_key == NULL || opts->api_key[0] == '\0' ||
        opts->api_secret == NULL || opts->api_secret[0] == '\0') {
        cq_err_set(err, CQ_EINVAL, 0, "set BINANCE_API_KEY and BINANCE_API_SECRET",
                   "the user data stream needs a URL, an API key and its secret");
        return NULL;
    }
    struct cq_wsapi *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the WebSocket API client");
        return NULL;
    }
    if (cq_strlcpy(a->url, opts->url, sizeof(a->url)) >= sizeof(a->url) ||
        cq_strlcpy(a->api_key, opts->api_key, sizeof(a->api_key)) >= sizeof(a->api_key)) {
        free(a);
        cq_err_set(err, CQ_EINVAL, 0, "check CQ_EXCHANGE_WSAPI_URL and BINANCE_API_KEY",
                   "the WebSocket API URL (max %d bytes) or the API key (max %d bytes) is too long",
                   CQ_WSAPI_URL_MAX - 1, API_KEY_MAX - 1);
        return NULL;
    }
    a->api_secret_len = strlen(opts->api_secret);
    a->api_secret = cq_secret_dup(opts->api_secret);
    if (a->api_secret == NULL) {
        free(a);
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the WebSocket API client");
        return NULL;
    }
    a->clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    if (cb != NULL) {
        a->cb = *cb;
    }
    a->subscription_id = -1;
    a->used_weight_1m = -1;
    a->weight_limit_1m = -1;
    set_state(a, CQ_WSAPI_IDLE, "not_started");
    cq_backoff_init(&a->retry, CQ_WSAPI_RETRY_MIN_MS, CQ_WSAPI_RETRY_MAX_MS,
                    opts->jitter_seed != 0 ? opts->jitter_seed
                                           : (uint64_t)cq_clock_wall_us(a->clock));
    a->malformed_rl = (struct cq_log_ratelimit){.window_ms = 10000, .burst = 5};
    a->refused_rl = (struct cq_log_ratelimit){.window_ms = 60000, .burst = 3};
    struct cq_ws_client_options wo = {
        .url = a->url,
        .name = "user",
        .stall_ms = CQ_WS_STALL_NONE, /* quiet by nature: pings keep it alive */
        .backoff_max_ms = opts->backoff_max_ms,
        .max_lifetime_ms = opts->max_lifetime_ms,
        .jitter_seed = opts->jitter_seed,
        .clock = opts->clock,
    };
    struct cq_ws_callbacks wcb = {ws_on_message, ws_on_state, a};
    a->ws = cq_ws_client_new(loop, &wo, &wcb, err);
    if (a->ws == NULL) {
        cq_wsapi_free(a);
        return NULL;
    }
    return a;
}

void cq_wsapi_free(struct cq_wsapi *a)
{
    if (a == NULL) {
        return;
    }
    if (a->ws != NULL) {
        cq_ws_client_free(a->ws);
    }
    cq_secret_free(a->api_secret); /* wiped */
    free(a);
}

int cq_wsapi_start(struct cq_wsapi *a)
{
    set_state(a, CQ_WSAPI_CONNECTING, "connecting");
    int rc = cq_ws_client_start(a->ws);
    if (rc < 0) {
        set_state(a, CQ_WSAPI_IDLE, "start_failed");
    }
    return rc;
}

void cq_wsapi_stop(struct cq_wsapi *a)
{
    set_state(a, CQ_WSAPI_IDLE, "stopped");
    a->subscription_id = -1;
    a->pending_id = 0;
    cq_ws_client_stop(a->ws);
}

struct cq_ws_client *cq_wsapi_ws(struct cq_wsapi *a)
{
    return a != NULL ? a->ws : NULL;
}

void cq_wsapi__set_sender(struct cq_wsapi *a, cq_wsapi_send_fn send, void *ctx)
{
    a->send = send;
    a->send_ctx = ctx;
}

void cq_wsapi_stats(const struct cq_wsapi *a, struct cq_wsapi_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->state = a->state;
    /* Same sizes as the sources: never cut. */
    (void)cq_strlcpy(out->reason, a->reason, sizeof(out->reason));
    (void)cq_strlcpy(out->problem, a->problem, sizeof(out->problem));
    out->subscription_id = a->subscription_id;
    out->subscribes_sent = a->subscribes_sent;
    out->subscribes_ok = a->subscribes_ok;
    out->subscribes_refused = a->subscribes_refused;
    out->subscribe_timeouts = a->subscribe_timeouts;
    out->events = a->events;
    out->malformed = a->malformed;
    out->stray = a->stray;
    out->gaps = a->gaps;
    out->terminated = a->terminated;
    out->server_shutdowns = a->server_shutdowns;
    out->retry_failures = a->retry.failures;
    int64_t now = now_mono(a);
    out->retry_in_ms = a->state == CQ_WSAPI_RETRY_WAIT && a->retry.next_at_ms > now
                           ? a->retry.next_at_ms - now
                           : 0;
    out->used_weight_1m = a->used_weight_1m;
    out->weight_limit_1m = a->weight_limit_1m;
    out->last_error_code = a->last_error_code;
    out->time_offset_ms = a->time_offset_ms;
}

json_t *cq_wsapi_stats_json(const struct cq_wsapi_stats *s)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "state", json_string(cq_wsapi_state_name(s->state)));
    json_object_set_new(o, "reason", json_string(s->reason));
    json_object_set_new(o, "subscribed", json_boolean(s->state == CQ_WSAPI_SUBSCRIBED));
    json_object_set_new(o, "subscription_id", json_integer(s->subscription_id));
    json_object_set_new(o, "problem", json_string(s->problem));
    json_object_set_new(o, "last_error_code", json_integer(s->last_error_code));
    json_object_set_new(o, "subscribes_sent", json_integer((json_int_t)s->subscribes_sent));
    json_object_set_new(o, "subscribes_ok", json_integer((json_int_t)s->subscribes_ok));
    json_object_set_new(o, "subscribes_refused", json_integer((json_int_t)s->subscribes_refused));
    json_object_set_new(o, "subscribe_timeouts", json_integer((json_int_t)s->subscribe_timeouts));
    json_object_set_new(o, "retry_failures", json_integer((json_int_t)s->retry_failures));
    json_object_set_new(o, "retry_in_ms", json_integer(s->retry_in_ms));
    json_object_set_new(o, "wsapi_events", json_integer((json_int_t)s->events));
    json_object_set_new(o, "malformed", json_integer((json_int_t)s->malformed));
    json_object_set_new(o, "stray", json_integer((json_int_t)s->stray));
    json_object_set_new(o, "gaps", json_integer((json_int_t)s->gaps));
    json_object_set_new(o, "terminated", json_integer((json_int_t)s->terminated));
    json_object_set_new(o, "server_shutdowns", json_integer((json_int_t)s->server_shutdowns));
    json_object_set_new(o, "used_weight_1m", json_integer(s->used_weight_1m));
    json_object_set_new(o, "weight_limit_1m", json_integer(s->weight_limit_1m));
    json_object_set_new(o, "time_offset_ms", json_integer(s->time_offset_ms));
    return o;
}
