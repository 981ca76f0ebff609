/*
 * router.c — cq_api_handle: the route table, the checks every request goes
 * through, and the JSON handlers (/health, /readiness, /config).
 *
 * Order of checks (first failure answers):
 *   400 bad_request         no method, a method that is not an HTTP token, a
 *                           target that is not an absolute path, a path that
 *                           is not UTF-8 once percent-decoded, or what the
 *                           HTTP layer found (req->malformed: a NUL in the
 *                           path, a Transfer-Encoding other than chunked)
 *   421 misdirected_request on a loopback bind, a Host that names neither a
 *                           loopback address nor the bind host (DNS rebinding)
 *   413 payload_too_large   the body exceeded max_body_bytes (before anything
 *                           else: a large body is never looked at)
 *   404 not_found           no route has this path (exact match; no trailing
 *                           slash, the query string is not part of the path)
 *   405 method_not_allowed  the path exists with other methods; Allow lists them
 *   503 busy                a reserve slot (the pool was full) asks for a route
 *                           other than /health and /readiness; Retry-After
 *   401 unauthorized        the route needs the token (every route except
 *                           GET /health, /readiness, /metrics); WWW-Authenticate
 *   then the handler (200, or 503 from /health, /readiness; 500 internal)
 * Method and path are shown in messages and log lines through cq_api__show:
 * redacted, made UTF-8, then cut on a character boundary. "out of memory"
 * (500) means exactly that.
 * HEAD is answered like GET (the HTTP layer sends the headers only), so
 * Allow for a GET route is "GET, HEAD".
 *
 * Threads: called by libmicrohttpd's thread (or a test's). Handlers read only
 * the health board (its own lock), a config reference (taken and released
 * per request), the log stats and our atomic counters; never engine state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api-int.h"
#include "cq/log.h"
#include "cq/text.h"
#include "cq/version.h"

#define AUTH_HINT                                                                                  \
    "send Authorization: Bearer <token>; the token is CQ_ADMIN_TOKEN or the contents of "          \
    "DATA_DIR/admin.token"

/* ---- responses ------------------------------------------------------------------ */

static const char CONTENT_TYPE_JSON[] = "application/json";
static const char CONTENT_TYPE_METRICS[] = "text/plain; version=0.0.4; charset=utf-8";

static void set_internal(struct cq_api_response *resp)
{
    static const char body[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"the response could not be "
        "built (out of memory)\",\"hint\":\"retry; if it persists, check the process's "
        "memory\"}}";
    resp->status = 500;
    resp->content_type = CONTENT_TYPE_JSON;
    free(resp->body);
    resp->body = malloc(sizeof(body));
    if (resp->body != NULL) {
        memcpy(resp->body, body, sizeof(body));
        resp->body_len = sizeof(body) - 1;
    } else {
        resp->body_len = 0; /* the HTTP layer sends an empty 500 */
    }
}

void cq_api__json(struct cq_api_response *resp, int status, json_t *json)
{
    if (json == NULL) {
        set_internal(resp);
        return;
    }
    size_t len = json_dumpb(json, NULL, 0, JSON_COMPACT);
    char *body = len > 0 ? malloc(len + 1) : NULL;
    if (body == NULL || json_dumpb(json, body, len, JSON_COMPACT) != len) {
        free(body);
        json_decref(json);
        set_internal(resp);
        return;
    }
    body[len] = '\0';
    json_decref(json);
    free(resp->body);
    resp->status = status;
    resp->body = body;
    resp->body_len = len;
    resp->content_type = CONTENT_TYPE_JSON;
}

void cq_api__error(struct cq_api_response *resp, int status, const char *code, const char *message,
                   const char *hint)
{
    /* Callers pass text made with cq_api__show; anything that is still not
     * UTF-8 is shown, not turned into a 500 (jansson refuses it). */
    char shown_message[1024 + 4], shown_hint[1024 + 4];
    if (message != NULL && !cq_text_utf8_valid(message, strlen(message))) {
        cq_api__show(shown_message, sizeof(shown_message), message, 1024);
        message = shown_message;
    }
    if (hint != NULL && !cq_text_utf8_valid(hint, strlen(hint))) {
        cq_api__show(shown_hint, sizeof(shown_hint), hint, 1024);
        hint = shown_hint;
    }
    json_t *err = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", message, "hint",
                            hint != NULL ? hint : "");
    cq_api__json(resp, status, err);
}

void cq_api_response_fini(struct cq_api_response *resp)
{
    if (resp != NULL) {
        free(resp->body);
        resp->body = NULL;
        resp->body_len = 0;
    }
}

/* ---- text shown to people --------------------------------------------------------- */

void cq_api__show(char *out, size_t out_size, const char *s, size_t max_bytes)
{
    static const char oom[] = "<out of memory>";
    static const char ellipsis[] = "...";
    if (out_size == 0) {
        return;
    }
    out[0] = '\0';
    if (s == NULL) {
        return;
    }
    /* out_size >= max_bytes + 4 is the documented contract; clamp anyway */
    if (max_bytes + sizeof(ellipsis) > out_size) {
        max_bytes = out_size > sizeof(ellipsis) ? out_size - sizeof(ellipsis) : 0;
    }
    char *red = cq_log_redact_dup(s);
    if (red == NULL) {
        if (out_size >= sizeof(oom)) {
            memcpy(out, oom, sizeof(oom));
        }
        return;
    }
    size_t len = strlen(red);
    size_t used = 0; /* bytes of out filled */
    size_t i = 0;
    bool cut = false;
    while (i < len) {
        size_t n = cq_text_utf8_char_len((const unsigned char *)red + i, len - i);
        const char *piece = red + i;
        size_t piece_len = n;
        if (n == 0) {
            piece = "?";
            piece_len = 1;
            n = 1;
        }
        if (used + piece_len > max_bytes) {
            cut = true;
            break;
        }
        memcpy(out + used, piece, piece_len);
        used += piece_len;
        i += n;
    }
    if (cut) {
        memcpy(out + used, ellipsis, sizeof(ellipsis) - 1);
        used += sizeof(ellipsis) - 1;
    }
    out[used] = '\0';
    free(red);
}

/* ---- Host (DNS rebinding) --------------------------------------------------------- */

/* "" or ":" and 1 to 5 digits. */
static bool port_suffix_ok(const char *p)
{
    if (*p == '\0') {
        return true;
    }
    if (*p != ':') {
        return false;
    }
    size_t n = strspn(p + 1, "0123456789");
    return n >= 1 && n <= 5 && p[1 + n] == '\0';
}

bool cq_api__host_ok(const struct cq_api *api, const char *host)
{
    if (!api->loopback_bind || host == NULL || host[0] == '\0') {
        return true; /* HTTP/1.0 clients may send no Host */
    }
    char name[256];
    const char *rest;
    size_t name_len;
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        if (rb == NULL) {
            return false;
        }
        name_len = (size_t)(rb - host - 1);
        rest = rb + 1;
        if (name_len == 0 || name_len >= sizeof(name)) {
            return false;
        }
        memcpy(name, host + 1, name_len);
    } else {
        const char *colon = strchr(host, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            return false; /* a bare IPv6 address is not a valid Host */
        }
        name_len = colon != NULL ? (size_t)(colon - host) : strlen(host);
        rest = host + name_len;
        if (name_len == 0 || name_len >= sizeof(name)) {
            return false;
        }
        memcpy(name, host, name_len);
    }
    name[name_len] = '\0';
    if (!port_suffix_ok(rest)) {
        return false;
    }
    if (host[0] == '[' && strchr(name, ':') == NULL) {
        return false; /* "[localhost]" */
    }
    return cq_host_is_loopback(name) || strcasecmp(name, api->bind_host) == 0;
}

/* RFC 9110 token: the characters a method may have. */
static bool method_is_token(const char *m)
{
    static const char tchar_punct[] = "!#$%&'*+-.^_`|~";
    for (const char *p = m; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c != '\0' && strchr(tchar_punct, c) != NULL);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* ---- handlers ------------------------------------------------------------------- */

int64_t cq_api__uptime_s(const struct cq_api *api)
{
    int64_t ms = cq_clock_mono_ms(api->clock) - api->created_mono_ms;
    return ms > 0 ? ms / 1000 : 0;
}

/* "down" if a loop is not alive (the watchdog marked a service down/stalled),
 * "ok" if every service is ok, else "degraded". */
static const char *overall_status(json_t *services)
{
    bool stalled = false, all_ok = json_object_size(services) > 0;
    const char *name;
    json_t *rec;
    json_object_foreach(services, name, rec)
    {
        const char *status = json_string_value(json_object_get(rec, "status"));
        const char *reason = json_string_value(json_object_get(rec, "reason"));
        if (status != NULL && strcmp(status, "down") == 0 && reason != NULL &&
            strcmp(reason, "stalled") == 0) {
            stalled = true;
        }
        if (status == NULL || strcmp(status, "ok") != 0) {
            all_ok = false;
        }
    }
    if (stalled) {
        return "down";
    }
    return all_ok ? "ok" : "degraded";
}

static void not_ready_config(struct cq_api_response *resp)
{
    cq_api__error(resp, 503, "not_ready", "no configuration is loaded yet",
                  "retry in a moment; if it persists, check the coinquantd log");
}

static void handle_health(struct cq_api *api, const struct cq_api_request *req,
                          struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    struct cq_config *cfg = cq_config_current_get(api->config);
    if (cfg == NULL) {
        not_ready_config(resp);
        return;
    }
    json_t *services = cq_health_services_json(api->board);
    json_t *libraries = cq_version_libraries_json();
    json_t *body = json_object();
    if (services == NULL || body == NULL) {
        json_decref(services);
        json_decref(libraries);
        json_decref(body);
        cq_config_unref(cfg);
        set_internal(resp);
        return;
    }
    const char *status = overall_status(services);
    int rc = 0;
    rc |= json_object_set_new(body, "status", json_string(status));
    rc |= json_object_set_new(body, "version", json_string(api->version));
    rc |= json_object_set_new(body, "uptime_s", json_integer(cq_api__uptime_s(api)));
    rc |= json_object_set_new(body, "mode", json_string(cq_mode_name(cq_config_mode(cfg))));
    rc |= json_object_set_new(body, "config_hash", json_string(cq_config_hash(cfg)));
    rc |= json_object_set_new(body, "services", services);
    rc |= json_object_set_new(body, "libraries", libraries != NULL ? libraries : json_object());
    cq_config_unref(cfg);
    if (rc != 0) {
        json_decref(body);
        set_internal(resp);
        return;
    }
    cq_api__json(resp, strcmp(status, "down") == 0 ? 503 : 200, body);
}

static void handle_readiness(struct cq_api *api, const struct cq_api_request *req,
                             struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    json_t *reasons = NULL;
    bool ready = cq_health_all_ready(api->board, &reasons);
    json_t *body;
    if (ready) {
        json_decref(reasons);
        body = json_pack("{s:b}", "ready", 1);
    } else {
        /* "o" steals reasons, on failure too */
        body =
            json_pack("{s:b,s:o}", "ready", 0, "reasons", reasons != NULL ? reasons : json_array());
    }
    cq_api__json(resp, ready ? 200 : 503, body);
}

static void handle_config(struct cq_api *api, const struct cq_api_request *req,
                          struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    struct cq_config *cfg = cq_config_current_get(api->config);
    if (cfg == NULL) {
        not_ready_config(resp);
        return;
    }
    json_t *body = cq_config_to_json(cfg);
    cq_config_unref(cfg);
    cq_api__json(resp, 200, body);
}

static void handle_metrics(struct cq_api *api, const struct cq_api_request *req,
                           struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    char *text = NULL;
    size_t len = 0;
    if (cq_api__metrics_render(api, &text, &len) < 0) {
        cq_api__error(resp, 500, "internal", "the metrics could not be rendered",
                      "retry; if it persists, check the coinquantd log");
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->body = text;
    resp->body_len = len;
    resp->content_type = CONTENT_TYPE_METRICS;
}

/* ---- the trader's operator surface (/api/v1) --------------------------------------- */

static void trader_unavailable(struct cq_api_response *resp)
{
    cq_api__error(resp, 503, "not_ready", "the trader is not running yet",
                  "retry in a few seconds; GET /readiness says what the trader waits for");
    resp->retry_after_s = CQ_API_BUSY_RETRY_AFTER_S;
}

static void trader_view(struct cq_api *api, const char *what, struct cq_api_response *resp)
{
    json_t *v = api->trader_view != NULL ? api->trader_view(api->trader_ctx, what) : NULL;
    if (v == NULL) {
        trader_unavailable(resp);
        return;
    }
    json_t *body = json_object();
    json_object_set_new(body, what, v);
    cq_api__json(resp, 200, body);
}

static void handle_positions(struct cq_api *api, const struct cq_api_request *req,
                             struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_view(api, "positions", resp);
}

static void handle_orders(struct cq_api *api, const struct cq_api_request *req,
                          struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_view(api, "orders", resp);
}

static void handle_risk(struct cq_api *api, const struct cq_api_request *req,
                        struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_view(api, "risk", resp);
}

static void trader_command(struct cq_api *api, const char *cmd, const char *symbol,
                           struct cq_api_response *resp)
{
    int rc = api->trader_command != NULL ? api->trader_command(api->trader_ctx, cmd, symbol)
                                         : -CQ_EAGAIN;
    if (rc == 0) {
        cq_log_info(CQ_API_SERVICE, "trader_command_queued",
                    json_pack("{s:s,s:s}", "command", cmd, "symbol", symbol != NULL ? symbol : ""),
                    "operator command %s%s%s queued for the trader", cmd, symbol != NULL ? " " : "",
                    symbol != NULL ? symbol : "");
        cq_api__json(resp, 202,
                     json_pack("{s:b,s:s,s:s?}", "accepted", 1, "command", cmd, "symbol", symbol));
    } else if (rc == -CQ_EFULL) {
        cq_api__error(resp, 503, "busy", "the trader's command queue is full",
                      "retry in a second; the trader applies queued commands in order");
        resp->retry_after_s = CQ_API_BUSY_RETRY_AFTER_S;
    } else if (rc == -CQ_EINVAL) {
        cq_api__error(resp, 400, "bad_request", "the symbol is not a valid exchange symbol",
                      "give the symbol in upper case, e.g. DELETE /api/v1/quarantine/BTCUSDT");
    } else {
        trader_unavailable(resp);
    }
}

static void handle_pause(struct cq_api *api, const struct cq_api_request *req,
                         struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_command(api, "pause", NULL, resp);
}

static void handle_resume(struct cq_api *api, const struct cq_api_request *req,
                          struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_command(api, "resume", NULL, resp);
}

static void handle_kill(struct cq_api *api, const struct cq_api_request *req,
                        struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_command(api, "kill", NULL, resp);
}

static void handle_unkill(struct cq_api *api, const struct cq_api_request *req,
                          struct cq_api_response *resp)
{
    CQ_UNUSED(req);
    trader_command(api, "unkill", NULL, resp);
}

#define QUARANTINE_PREFIX "/api/v1/quarantine/"

static void handle_unquarantine(struct cq_api *api, const struct cq_api_request *req,
                                struct cq_api_response *resp)
{
    trader_command(api, "clear_quarantine", req->path + strlen(QUARANTINE_PREFIX), resp);
}

/* ---- the table ------------------------------------------------------------------- */

/* Keep in step with openapi/openapi.yaml (test_api checks every path here is
 * documented there, and every documented path is here). */
static const struct cq_api_route routes[] = {
    {"GET", "/health", handle_health, false, true},
    {"GET", "/readiness", handle_readiness, false, true},
    {"GET", "/metrics", handle_metrics, false, false},
    {"GET", "/config", handle_config, true, false},
    {"GET", "/api/v1/positions", handle_positions, true, false},
    {"GET", "/api/v1/orders", handle_orders, true, false},
    {"GET", "/api/v1/risk", handle_risk, true, false},
    {"POST", "/api/v1/trader/pause", handle_pause, true, false},
    {"POST", "/api/v1/trader/resume", handle_resume, true, false},
    {"POST", "/api/v1/trader/kill", handle_kill, true, false},
    {"POST", "/api/v1/trader/unkill", handle_unkill, true, false},
    {"DELETE", QUARANTINE_PREFIX "{symbol}", handle_unquarantine, true, false},
};

/* A route's path against the request's: exact, or a last segment
 * "{symbol}" that matches one non-empty segment. */
static bool path_matches(const char *route_path, const char *path)
{
    const char *brace = strchr(route_path, '{');
    if (brace == NULL) {
        return strcmp(route_path, path) == 0;
    }
    size_t pre = (size_t)(brace - route_path);
    return strncmp(route_path, path, pre) == 0 && path[pre] != '\0' &&
           strchr(path + pre, '/') == NULL;
}

const struct cq_api_route *cq_api__routes(size_t *count)
{
    *count = CQ_ARRAY_LEN(routes);
    return routes;
}

static bool method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0) {
        return true;
    }
    return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

static void append_allow(char *allow, size_t allow_size, const char *method)
{
    /* skip duplicates: "GET" twice must not appear as "GET, GET" */
    size_t mlen = strlen(method);
    for (const char *p = allow; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == mlen && strncmp(p, method, n) == 0) {
            return;
        }
        p += n;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    size_t used = strlen(allow);
    size_t need = (used > 0 ? 2 : 0) + mlen;
    if (used + need >= allow_size) {
        return; /* cannot happen with our route table ("GET, HEAD"); never cut a name */
    }
    (void)snprintf(allow + used, allow_size - used, "%s%s", used > 0 ? ", " : "", method);
}

static void log_auth_failure(struct cq_api *api, const struct cq_api_request *req,
                             const char *reason)
{
    uint64_t suppressed = 0;
    bool allowed;
    pthread_mutex_lock(&api->log_lock);
    allowed = cq_log_ratelimit_allow(&api->auth_log_rl, cq_clock_mono_ms(api->clock), &suppressed);
    pthread_mutex_unlock(&api->log_lock);
    if (allowed) {
        char method[CQ_API_SHOW_METHOD_MAX + 4], path[CQ_API_SHOW_PATH_MAX + 4];
        cq_api__show(method, sizeof(method), req->method, CQ_API_SHOW_METHOD_MAX);
        cq_api__show(path, sizeof(path), req->path, CQ_API_SHOW_PATH_MAX);
        cq_log_warn(CQ_API_SERVICE, "api_auth_failed",
                    json_pack("{s:s,s:s,s:s,s:I}", "method", method, "path", path, "reason", reason,
                              "suppressed", (json_int_t)suppressed),
                    "refused %s %s: %s", method, path, reason);
    }
}

static bool authorize(struct cq_api *api, const struct cq_api_request *req,
                      struct cq_api_response *resp)
{
    enum cq_api_auth_result r = cq_api__auth_check(req->authorization, api->token);
    if (r == CQ_API_AUTH_OK) {
        return true;
    }
    /* message: at most 16 + 128 + 3 + 3 bytes of method and path plus the
     * longest fixed text (79 bytes): fits 256, so snprintf cannot cut. */
    char message[256];
    char method[CQ_API_SHOW_METHOD_MAX + 4], path[CQ_API_SHOW_PATH_MAX + 4];
    cq_api__show(method, sizeof(method), req->method, CQ_API_SHOW_METHOD_MAX);
    cq_api__show(path, sizeof(path), req->path, CQ_API_SHOW_PATH_MAX);
    const char *reason = "wrong_token";
    switch (r) {
    case CQ_API_AUTH_MISSING:
        reason = "missing";
        snprintf(message, sizeof(message),
                 "%s %s needs the admin token and the request has no Authorization header", method,
                 path);
        break;
    case CQ_API_AUTH_SCHEME:
        reason = "wrong_scheme";
        snprintf(message, sizeof(message),
                 "the Authorization header is not of the form \"Bearer <token>\"");
        break;
    case CQ_API_AUTH_NO_TOKEN:
        reason = "no_token_configured";
        snprintf(message, sizeof(message),
                 "%s %s needs the admin token and this server has none configured", method, path);
        break;
    case CQ_API_AUTH_MISMATCH:
    case CQ_API_AUTH_OK:
    default:
        snprintf(message, sizeof(message), "the bearer token is not the admin token");
        break;
    }
    atomic_fetch_add_explicit(&api->auth_failures, 1, memory_order_relaxed);
    log_auth_failure(api, req, reason);
    cq_api__error(resp, 401, "unauthorized", message,
                  r == CQ_API_AUTH_NO_TOKEN
                      ? "set CQ_ADMIN_TOKEN (16+ characters) or let coinquantd create "
                        "DATA_DIR/admin.token, then restart coinquantd"
                      : AUTH_HINT);
    resp->www_authenticate = true;
    return false;
}

static void route(struct cq_api *api, const struct cq_api_request *req,
                  struct cq_api_response *resp)
{
    /* message and hint: the fixed texts are under 100 bytes and method and
     * path are shown at most 16 + 128 bytes (+ "..." each): they fit 512, so
     * the snprintf calls below cannot cut; the Allow list is at most 63. */
    char message[512], hint[512];
    char method[CQ_API_SHOW_METHOD_MAX + 4], path[CQ_API_SHOW_PATH_MAX + 4];

    if (req->method == NULL || req->method[0] == '\0' || req->path == NULL || req->path[0] != '/') {
        cq_api__error(resp, 400, "bad_request",
                      "the request has no method or its target is not an absolute path",
                      "request a path such as GET /health");
        return;
    }
    if (req->malformed != NULL) {
        cq_api__error(resp, 400, "bad_request", req->malformed,
                      "send a plain request such as GET /health (see openapi/openapi.yaml)");
        return;
    }
    if (!method_is_token(req->method)) {
        cq_api__show(method, sizeof(method), req->method, CQ_API_SHOW_METHOD_MAX);
        snprintf(message, sizeof(message), "the method \"%s\" is not an HTTP token", method);
        cq_api__error(resp, 400, "bad_request", message,
                      "use GET or HEAD (letters, digits and !#$%&'*+-.^_`|~ only)");
        return;
    }
    if (!cq_text_utf8_valid(req->path, strlen(req->path))) {
        cq_api__show(path, sizeof(path), req->path, CQ_API_SHOW_PATH_MAX);
        snprintf(message, sizeof(message),
                 "the path \"%s\" is not UTF-8 once percent-decoded (shown with '?' for the "
                 "bad bytes)",
                 path);
        cq_api__error(resp, 400, "bad_request", message,
                      "request a path such as GET /health; percent-encode UTF-8 only");
        return;
    }
    if (!cq_api__host_ok(api, req->host)) {
        char host[CQ_API_SHOW_PATH_MAX + 4];
        cq_api__show(host, sizeof(host), req->host, CQ_API_SHOW_PATH_MAX);
        snprintf(message, sizeof(message),
                 "Host \"%s\" is not this server: on a loopback bind only localhost, 127.x.y.z, "
                 "[::1] and the bind host are answered",
                 host);
        cq_api__error(resp, 421, "misdirected_request", message,
                      "connect to http://127.0.0.1:<port> (or localhost) directly; a page on "
                      "another site cannot read the admin API");
        return;
    }
    if (req->body_too_large) {
        snprintf(message, sizeof(message), "the request body is larger than %zu bytes",
                 api->max_body_bytes);
        snprintf(hint, sizeof(hint),
                 "send at most %zu bytes (CQ_ADMIN_MAX_BODY_BYTES); no admin endpoint "
                 "needs a larger body",
                 api->max_body_bytes);
        cq_api__error(resp, 413, "payload_too_large", message, hint);
        return;
    }

    const struct cq_api_route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < CQ_ARRAY_LEN(routes); i++) {
        if (!path_matches(routes[i].path, req->path)) {
            continue;
        }
        path_known = true;
        append_allow(resp->allow, sizeof(resp->allow), routes[i].method);
        if (strcmp(routes[i].method, "GET") == 0) {
            append_allow(resp->allow, sizeof(resp->allow), "HEAD");
        }
        if (found == NULL && method_matches(routes[i].method, req->method)) {
            found = &routes[i];
        }
    }
    cq_api__show(method, sizeof(method), req->method, CQ_API_SHOW_METHOD_MAX);
    cq_api__show(path, sizeof(path), req->path, CQ_API_SHOW_PATH_MAX);
    if (!path_known) {
        resp->allow[0] = '\0';
        snprintf(message, sizeof(message), "there is no endpoint %s", path);
        cq_api__error(resp, 404, "not_found", message,
                      "the endpoints are /health, /readiness, /metrics, /config and /api/v1/... "
                      "(see openapi/openapi.yaml)");
        return;
    }
    if (found == NULL) {
        snprintf(message, sizeof(message), "method %s is not allowed on %s", method, path);
        snprintf(hint, sizeof(hint), "use one of: %s", resp->allow);
        cq_api__error(resp, 405, "method_not_allowed", message, hint);
        return;
    }
    resp->allow[0] = '\0'; /* Allow is sent with 405 only */
    if (req->reserve && !found->on_reserve) {
        snprintf(message, sizeof(message),
                 "the admin API is busy: every connection slot for %s is taken", path);
        snprintf(hint, sizeof(hint),
                 "retry in %d s; /health and /readiness are answered even now (slots are "
                 "kept for them); see CQ_ADMIN_MAX_CONNECTIONS in docs/RUNBOOK.md",
                 CQ_API_BUSY_RETRY_AFTER_S);
        cq_api__error(resp, 503, "busy", message, hint);
        resp->retry_after_s = CQ_API_BUSY_RETRY_AFTER_S;
        return;
    }
    if (found->needs_token && !authorize(api, req, resp)) {
        return;
    }
    found->handler(api, req, resp);
}

void cq_api_handle(struct cq_api *api, const struct cq_api_request *req,
                   struct cq_api_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    /* relaxed: statistics only */
    atomic_fetch_add_explicit(&api->requests_total, 1, memory_order_relaxed);
    route(api, req, resp);
    if (resp->content_type == NULL) {
        resp->content_type = CONTENT_TYPE_JSON;
    }
    if (resp->status >= 500) {
        atomic_fetch_add_explicit(&api->responses_5xx, 1, memory_order_relaxed);
    } else if (resp->status >= 400) {
        atomic_fetch_add_explicit(&api->responses_4xx, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&api->responses_2xx, 1, memory_order_relaxed);
    }
    if (cq_log_enabled(CQ_LOG_DEBUG)) {
        char method[CQ_API_SHOW_METHOD_MAX + 4], path[CQ_API_SHOW_PATH_MAX + 4];
        cq_api__show(method, sizeof(method), req->method != NULL ? req->method : "-",
                     CQ_API_SHOW_METHOD_MAX);
        cq_api__show(path, sizeof(path), req->path != NULL ? req->path : "-", CQ_API_SHOW_PATH_MAX);
        cq_log_debug(
            CQ_API_SERVICE, "api_request",
            json_pack("{s:s,s:s,s:i}", "method", method, "path", path, "status", resp->status),
            "%s %s -> %d", method, path, resp->status);
    }
}
