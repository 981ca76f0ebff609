/*
 * router.c — cq_api_handle: the route table, the checks every request goes
 * through, and the JSON handlers (/health, /readiness, /config).
 *
 * Order of checks (first failure answers):
 *   400 bad_request         no method, or a target that is not an absolute path
 *   413 payload_too_large   the body exceeded max_body_bytes (before anything
 *                           else: a large body is never looked at)
 *   404 not_found           no route has this path (exact match; no trailing
 *                           slash, the query string is not part of the path)
 *   405 method_not_allowed  the path exists with other methods; Allow lists them
 *   401 unauthorized        the route needs the token (every route except
 *                           GET /health, /readiness, /metrics); WWW-Authenticate
 *   then the handler (200, or 503 from /health, /readiness; 500 internal)
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

#include "api-int.h"
#include "cq/log.h"
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

/* ---- the table ------------------------------------------------------------------- */

/* Keep in step with openapi/openapi.yaml (test_api checks every path here is
 * documented there, and every documented path is here). */
static const struct cq_api_route routes[] = {
    {"GET", "/health", handle_health, false},
    {"GET", "/readiness", handle_readiness, false},
    {"GET", "/metrics", handle_metrics, false},
    {"GET", "/config", handle_config, true},
};

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
    snprintf(allow + used, allow_size - used, "%s%s", used > 0 ? ", " : "", method);
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
        cq_log_warn(CQ_API_SERVICE, "api_auth_failed",
                    json_pack("{s:s,s:s,s:s,s:I}", "method", req->method, "path", req->path,
                              "reason", reason, "suppressed", (json_int_t)suppressed),
                    "refused %.16s %.128s: %s", req->method, req->path, reason);
    }
}

static bool authorize(struct cq_api *api, const struct cq_api_request *req,
                      struct cq_api_response *resp)
{
    enum cq_api_auth_result r = cq_api__auth_check(req->authorization, api->token);
    if (r == CQ_API_AUTH_OK) {
        return true;
    }
    char message[256];
    const char *reason = "wrong_token";
    switch (r) {
    case CQ_API_AUTH_MISSING:
        reason = "missing";
        snprintf(message, sizeof(message),
                 "%.16s %.128s needs the admin token and the request has no Authorization "
                 "header",
                 req->method, req->path);
        break;
    case CQ_API_AUTH_SCHEME:
        reason = "wrong_scheme";
        snprintf(message, sizeof(message),
                 "the Authorization header is not of the form \"Bearer <token>\"");
        break;
    case CQ_API_AUTH_NO_TOKEN:
        reason = "no_token_configured";
        snprintf(message, sizeof(message),
                 "%.16s %.128s needs the admin token and this server has none configured",
                 req->method, req->path);
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
    char message[256], hint[256];

    if (req->method == NULL || req->method[0] == '\0' || req->path == NULL || req->path[0] != '/') {
        cq_api__error(resp, 400, "bad_request",
                      "the request has no method or its target is not an absolute path",
                      "request a path such as GET /health");
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
        if (strcmp(routes[i].path, req->path) != 0) {
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
    if (!path_known) {
        resp->allow[0] = '\0';
        snprintf(message, sizeof(message), "there is no endpoint %.128s", req->path);
        cq_api__error(resp, 404, "not_found", message,
                      "the endpoints are /health, /readiness, /metrics and /config "
                      "(see openapi/openapi.yaml)");
        return;
    }
    if (found == NULL) {
        snprintf(message, sizeof(message), "method %.16s is not allowed on %.128s", req->method,
                 req->path);
        snprintf(hint, sizeof(hint), "use one of: %s", resp->allow);
        cq_api__error(resp, 405, "method_not_allowed", message, hint);
        return;
    }
    resp->allow[0] = '\0'; /* Allow is sent with 405 only */
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
    cq_log_debug(CQ_API_SERVICE, "api_request",
                 json_pack("{s:s,s:s,s:i}", "method", req->method != NULL ? req->method : "",
                           "path", req->path != NULL ? req->path : "", "status", resp->status),
                 "%.16s %.128s -> %d", req->method != NULL ? req->method : "-",
                 req->path != NULL ? req->path : "-", resp->status);
}
