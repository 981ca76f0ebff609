/*
 * wsapi.c — coinquant-simex's WebSocket API (/ws-api/v3) requests:
 * userDataStream.subscribe.signature, userDataStream.unsubscribe,
 * session.subscriptions, ping and time (BINANCE_PROTOCOL.md §5.0,
 * binance-spot-api-docs web-socket-api.md).
 *
 * Request  {"id":…,"method":"…","params":{…}}; a method may carry the
 *          "v3/" prefix. id is an integer, a string of at most
 *          SIM_WSAPI_ID_MAX bytes, or null; it is echoed as sent.
 * Success  {"id":…,"status":200,"result":{…},"rateLimits":[…]}
 * Error    {"id":…,"status":4xx,"error":{"code":…,"msg":"…"},"rateLimits":[…]}
 *          rateLimits is left out when the request sent
 *          "returnRateLimits":false, or the connection URL had
 *          ?returnRateLimits=false and the request did not send true.
 *
 * Weight: connecting costs SIM_WSAPI_WEIGHT_CONNECT (ws.c charges it once
 * the handshake is answered).
 *
 * Weight: every request is charged its method's weight against the same
 * REQUEST_WEIGHT minute as REST (sim-auth.h), under st->lock, before it is
 * looked at; over the limit the answer is 429 -1003 with REST's text.
 *
 * userDataStream.subscribe.signature: the payload is every param but
 * `signature`, sorted by name, joined as name=value with '&' (strings as
 * sent, integers in decimal, true/false; send decimals such as a
 * fractional recvWindow as strings so both sides sign the same text); the
 * signature is the hex HMAC-SHA256 of it with the API secret. The checks
 * and their texts are REST's, in REST's order: recvWindow (-1131/-1100) ->
 * timestamp (-1102) -> signature (-1102) -> apiKey (-1102 missing, then
 * -2014/-2015 through cq_sim__auth_key) -> timing (-1021 through
 * cq_sim__auth_time) -> signature (-1022) -> one subscription per account
 * and connection (-2035 "User Data Stream subscription already active.") ->
 * ids left (-2042 "Maximum subscription ID reached for this connection.").
 *
 * Choices where the docs say nothing (marked (rec.) in docs/SIMEX.md):
 * a frame that is not JSON gets 400 -1000 "Malformed request."; no method
 * 400 -1102 for 'method'; an unknown method 400 -1000 "Unknown method.";
 * unsubscribe of an id that is not active (or with none active) 400 -2036
 * "User Data Stream subscription not active.".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cq/buf.h"
#include "cq/sign.h"
#include "sim-auth.h"
#include "sim-params.h"
#include "sim-wsapi.h"

#define WSAPI_PAYLOAD_MAX (SIM_QUERY_MAX_BYTES) /* bytes of the signed payload */

struct wsapi_req {
    struct cq_sim__state *st;
    struct cq_sim__wsapi_session *s;
    struct cq_sim__wsapi_outcome *out;
    json_t *id;       /* borrowed from the request, or NULL */
    json_t *params;   /* borrowed; NULL when absent */
    bool rate_limits; /* add rateLimits to the answer */
    uint32_t used, limit;
};

static void answer(struct wsapi_req *r, int status, json_t *result,
                   const struct cq_sim__api_error *e)
{
    json_t *o = json_object();
    json_object_set(o, "id", r->id != NULL ? r->id : json_null());
    json_object_set_new(o, "status", json_integer(status));
    if (e != NULL) {
        json_object_set_new(o, "error", json_pack("{s:i,s:s}", "code", e->code, "msg", e->msg));
        json_decref(result);
    } else {
        json_object_set_new(o, "result", result != NULL ? result : json_object());
    }
    if (r->rate_limits) {
        json_object_set_new(o, "rateLimits",
                            json_pack("[{s:s,s:s,s:i,s:I,s:I}]", "rateLimitType", "REQUEST_WEIGHT",
                                      "interval", "MINUTE", "intervalNum", 1, "limit",
                                      (json_int_t)r->limit, "count", (json_int_t)r->used));
    }
    r->out->reply = json_dumps(o, JSON_COMPACT);
    json_decref(o);
}

static void answer_error(struct wsapi_req *r, const struct cq_sim__api_error *e)
{
    answer(r, e->http_status, NULL, e);
}

static void answer_code(struct wsapi_req *r, int status, int code, const char *msg)
{
    struct cq_sim__api_error e;
    cq_sim__api_error_set(&e, status, code, "%s", msg);
    answer_error(r, &e);
}

/* Charge `weight`; false (answered 429) when over the limit. */
static bool charge(struct wsapi_req *r, unsigned weight)
{
    struct cq_sim__state *st = r->st;
    cq_sim__lock(st);
    struct cq_sim__ratelimit *rl = &st->rl;
    cq_sim__rl_roll_weight_locked(rl, cq_sim__wall_ms());
    rl->weight_used = rl->weight_used > UINT32_MAX - weight ? UINT32_MAX : rl->weight_used + weight;
    r->used = rl->weight_used;
    r->limit = cq_sim__rl_weight_limit(rl);
    cq_sim__unlock(st);
    if (r->used > r->limit) {
        struct cq_sim__api_error e;
        cq_sim__api_error_set(&e, 429, -1003,
                              "Too much request weight used; current limit is %u request weight "
                              "per 1 MINUTE. Please use WebSocket Streams for live updates to "
                              "avoid polling the API.",
                              r->limit);
        answer_error(r, &e);
        return false;
    }
    return true;
}

/* A param value as text: strings as sent, integers in decimal, booleans.
 * false for objects, arrays, null and reals (send decimals as strings). */
static bool value_text(const json_t *v, char *buf, size_t cap, const char **out)
{
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return true;
    }
    if (json_is_integer(v)) {
        /* an int64 in decimal is at most 20 characters: fits in cap >= 32 */
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = buf;
        return true;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? "true" : "false";
        return true;
    }
    return false;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void pct_encode(struct cq_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            cq_buf_printf(b, "%c", *p);
        } else {
            cq_buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
        }
    }
}

/* The params object as REST params (for the typed getters) and the signed
 * payload (sorted, without `signature`). 0, or -CQ_EPARSE with e filled. */
static int collect_params(const json_t *params, struct cq_sim__params *p, struct cq_buf *payload,
                          struct cq_sim__api_error *e)
{
    const char *names[SIM_PARAMS_MAX];
    size_t n = 0;
    const char *name;
    json_t *v;
    if (params != NULL && !json_is_object(params)) {
        return cq_sim__api_error_set(e, 400, -1102,
                                     "Mandatory parameter 'params' was not sent, was empty/null, "
                                     "or malformed.");
    }
    if (params != NULL && json_object_size(params) > SIM_PARAMS_MAX) {
        return cq_sim__api_error_set(e, 400, -1101, "Too many parameters sent for this endpoint.");
    }
    json_object_foreach((json_t *)params, name, v)
    {
        names[n++] = name;
    }
    qsort(names, n, sizeof names[0], cmp_names);
    struct cq_buf query = {.max_bytes = SIM_QUERY_MAX_BYTES};
    bool first_signed = true;
    for (size_t i = 0; i < n; i++) {
        char num[32];
        const char *text = NULL;
        if (!value_text(json_object_get(params, names[i]), num, sizeof num, &text)) {
            cq_buf_free(&query);
            return cq_sim__api_error_set(
                e, 400, -1100,
                "Illegal characters found in parameter '%s'; legal range is 'a string, an "
                "integer or a boolean'.",
                names[i]);
        }
        cq_buf_puts(&query, i == 0 ? "" : "&");
        pct_encode(&query, names[i]);
        cq_buf_puts(&query, "=");
        pct_encode(&query, text);
        if (strcmp(names[i], "signature") != 0) {
            cq_buf_printf(payload, "%s%s=%s", first_signed ? "" : "&", names[i], text);
            first_signed = false;
        }
    }
    if (query.failed || payload->failed) {
        cq_buf_free(&query);
        return cq_sim__api_error_set(e, 400, -1101, "Too many parameters sent for this endpoint.");
    }
    size_t qlen = 0;
    char *q = cq_buf_take(&query, &qlen);
    int rc = cq_sim__params_parse(p, q != NULL ? q : "", q != NULL ? qlen : 0, NULL, 0, e);
    free(q);
    return rc;
}

static void do_subscribe_signature(struct wsapi_req *r)
{
    struct cq_sim__api_error e;
    struct cq_sim__params p = {0}; /* fini-safe before collect_params parses into it */
    struct cq_buf payload = {.max_bytes = WSAPI_PAYLOAD_MAX};
    int64_t recv_us = 0, ts = 0;
    const char *sig = NULL, *key = NULL;
    if (collect_params(r->params, &p, &payload, &e) < 0) {
        cq_buf_free(&payload);
        cq_sim__params_fini(&p);
        answer_error(r, &e);
        return;
    }
    int rc = cq_sim__param_recv_window_us(&p, &recv_us, &e);
    if (rc == 0) {
        rc = cq_sim__param_long(&p, "timestamp", true, &ts, NULL, &e);
    }
    if (rc == 0 && (sig = cq_sim__params_get(&p, "signature")) == NULL) {
        rc = cq_sim__api_error_set(
            &e, 400, -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.");
    }
    if (rc == 0 && (key = cq_sim__params_get(&p, "apiKey")) == NULL) {
        rc = cq_sim__api_error_set(
            &e, 400, -1102,
            "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.");
    }
    if (rc == 0) {
        rc = cq_sim__auth_key(r->st, key, &e);
    }
    if (rc == 0) {
        cq_sim__lock(r->st);
        int64_t server_ms = cq_sim__server_time_ms(r->st);
        cq_sim__unlock(r->st);
        rc = cq_sim__auth_time(server_ms, cq_sim__time_param_to_us(ts), recv_us, &e);
    }
    if (rc == 0) {
        const char *secret = r->st->api_secret;
        const char *pl = payload.p != NULL ? payload.p : "";
        if (!cq_sign_verify(secret, strlen(secret), pl, payload.len, "", 0, sig, strlen(sig))) {
            rc = cq_sim__api_error_set(&e, 400, -1022, "Signature for this request is not valid.");
        }
    }
    if (rc == 0 && r->s->subscribed) {
        rc = cq_sim__api_error_set(&e, 400, -2035, "User Data Stream subscription already active.");
    }
    if (rc == 0 && r->s->next_id >= SIM_WSAPI_SUB_IDS_MAX) {
        rc = cq_sim__api_error_set(&e, 400, -2042,
                                   "Maximum subscription ID reached for this connection.");
    }
    cq_buf_free(&payload);
    cq_sim__params_fini(&p);
    if (rc < 0) {
        answer_error(r, &e);
        return;
    }
    r->s->subscribed = true;
    r->s->sub_id = r->s->next_id++;
    r->out->started = true;
    answer(r, 200, json_pack("{s:I}", "subscriptionId", (json_int_t)r->s->sub_id), NULL);
}

static void do_unsubscribe(struct wsapi_req *r)
{
    json_t *want = r->params != NULL ? json_object_get(r->params, "subscriptionId") : NULL;
    if (r->params != NULL && !json_is_object(r->params)) {
        answer_code(r, 400, -1102,
                    "Mandatory parameter 'params' was not sent, was empty/null, or malformed.");
        return;
    }
    if (want != NULL && !json_is_integer(want)) {
        answer_code(r, 400, -1100,
                    "Illegal characters found in parameter 'subscriptionId'; legal range is "
                    "'^[0-9]{1,20}$'.");
        return;
    }
    if (!r->s->subscribed ||
        (want != NULL && json_integer_value(want) != (json_int_t)r->s->sub_id)) {
        answer_code(r, 400, -2036, "User Data Stream subscription not active.");
        return;
    }
    r->s->subscribed = false;
    r->out->terminated = true;
    r->out->terminated_id = r->s->sub_id;
    answer(r, 200, json_object(), NULL);
}

static void do_subscriptions(struct wsapi_req *r)
{
    json_t *list = json_array();
    if (r->s->subscribed) {
        json_array_append_new(list, json_pack("{s:I}", "subscriptionId", (json_int_t)r->s->sub_id));
    }
    answer(r, 200, list, NULL);
}

static bool id_ok(const json_t *id)
{
    return json_is_null(id) || json_is_integer(id) ||
           (json_is_string(id) && json_string_length(id) <= SIM_WSAPI_ID_MAX);
}

void cq_sim__wsapi_handle(struct cq_sim__state *st, struct cq_sim__wsapi_session *s,
                          const char *text, size_t len, struct cq_sim__wsapi_outcome *out)
{
    memset(out, 0, sizeof *out);
    struct wsapi_req r = {.st = st, .s = s, .out = out};
    json_t *req = json_loadb(text, len, 0, NULL);
    if (req == NULL || !json_is_object(req)) {
        answer_code(&r, 400, -1000, "Malformed request.");
        json_decref(req);
        return;
    }
    json_t *id = json_object_get(req, "id");
    if (id != NULL && id_ok(id)) {
        r.id = id;
    }
    json_t *method = json_object_get(req, "method");
    const char *m = json_is_string(method) ? json_string_value(method) : NULL;
    if (m == NULL || id == NULL || !id_ok(id)) {
        answer_code(&r, 400, -1102,
                    m == NULL
                        ? "Mandatory parameter 'method' was not sent, was empty/null, or malformed."
                        : "Mandatory parameter 'id' was not sent, was empty/null, or malformed.");
        json_decref(req);
        return;
    }
    if (strncmp(m, "v3/", 3) == 0) {
        m += 3;
    }
    r.params = json_object_get(req, "params");
    json_t *rrl = json_is_object(r.params) ? json_object_get(r.params, "returnRateLimits") : NULL;
    /* the request's own returnRateLimits wins over the URL's */
    r.rate_limits = rrl != NULL ? !json_is_false(rrl) : !s->hide_rate_limits;
    static const struct {
        const char *name;
        unsigned weight;
        void (*fn)(struct wsapi_req *r);
    } methods[] = {
        {"userDataStream.subscribe.signature", SIM_WSAPI_WEIGHT_SUBSCRIBE, do_subscribe_signature},
        {"userDataStream.unsubscribe", SIM_WSAPI_WEIGHT_UNSUBSCRIBE, do_unsubscribe},
        {"session.subscriptions", SIM_WSAPI_WEIGHT_SUBSCRIPTIONS, do_subscriptions},
        {"ping", SIM_WSAPI_WEIGHT_PING, NULL},
        {"time", SIM_WSAPI_WEIGHT_TIME, NULL},
    };
    size_t i = 0;
    while (i < CQ_ARRAY_LEN(methods) && strcmp(methods[i].name, m) != 0) {
        i++;
    }
    if (i == CQ_ARRAY_LEN(methods)) {
        if (charge(&r, 1)) {
            answer_code(&r, 400, -1000, "Unknown method.");
        }
    } else if (charge(&r, methods[i].weight)) {
        if (methods[i].fn != NULL) {
            methods[i].fn(&r);
        } else if (strcmp(m, "time") == 0) {
            cq_sim__lock(st);
            int64_t now = cq_sim__server_time_ms(st);
            cq_sim__unlock(st);
            answer(&r, 200, json_pack("{s:I}", "serverTime", (json_int_t)now), NULL);
        } else {
            answer(&r, 200, json_object(), NULL);
        }
    }
    json_decref(req);
}

void cq_sim__wsapi_charge_connect(struct cq_sim__state *st)
{
    cq_sim__lock(st);
    struct cq_sim__ratelimit *rl = &st->rl;
    cq_sim__rl_roll_weight_locked(rl, cq_sim__wall_ms());
    rl->weight_used = rl->weight_used > UINT32_MAX - SIM_WSAPI_WEIGHT_CONNECT
                          ? UINT32_MAX
                          : rl->weight_used + SIM_WSAPI_WEIGHT_CONNECT;
    cq_sim__unlock(st);
}

char *cq_sim__wsapi_terminated_text(uint32_t sub_id, int64_t event_ms)
{
    char buf[128]; /* two integers and 60 fixed bytes: fits */
    int n = snprintf(buf, sizeof buf,
                     "{\"subscriptionId\":%" PRIu32
                     ",\"event\":{\"e\":\"eventStreamTerminated\",\"E\":%" PRId64 "}}",
                     sub_id, event_ms);
    if (n < 0 || (size_t)n >= sizeof buf) {
        return NULL;
    }
    return strdup(buf);
}
