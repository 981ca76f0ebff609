/*
 * test_api.c — the admin API. Most tests drive the router (cq_api_handle)
 * directly with a real health board and a config from cq_config_load:
 * every endpoint's status and body, the auth paths, 400/404/405/413, the
 * error body shape, /metrics series, and every /health record against
 * openapi/schemas/health.v1.json. Then the subset JSON Schema validator,
 * the route table against openapi/openapi.yaml, a few socket-level tests
 * over loopback (libcurl), and the admin token file.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api-int.h"
#include "cq/api.h"
#include "cq/clock.h"
#include "cq/config.h"
#include "cq/fs.h"
#include "cq/health.h"
#include "cq/log.h"
#include "fakes/fake_clock.h"
#include "support/jsonschema.h"

#define TOKEN "test-token-0123456789abcdef"
#define BINANCE_KEY "binance-key-ABCDEF123456"
#define BINANCE_SECRET "binance-secret-zyx987654321"
#define VERSION "9.9.9-test"
#define HEALTH_SCHEMA CQ_SOURCE_DIR "/openapi/schemas/health.v1.json"
#define EXAMPLES_DIR CQ_SOURCE_DIR "/openapi/schemas/examples"
#define OPENAPI_YAML CQ_SOURCE_DIR "/openapi/openapi.yaml"

/* 2025-11-21T00:00:00Z */
static struct fake_clock fc = FAKE_CLOCK_INIT(1000, 1763683200000000LL);
static struct cq_clock clk;
static char tmpdir[] = "/tmp/cq-api-XXXXXX";
static struct cq_health_board *board;
static struct cq_config_current *current;
static struct cq_api *api;

/* The error body: exactly {"error":{"code","message","hint"}}. */
static const char ERROR_SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"error\"],\"additionalProperties\":false,"
    "\"properties\":{\"error\":{\"type\":\"object\",\"required\":[\"code\",\"message\",\"hint\"],"
    "\"additionalProperties\":false,\"properties\":{"
    "\"code\":{\"enum\":[\"bad_request\",\"unauthorized\",\"not_found\","
    "\"method_not_allowed\",\"payload_too_large\",\"not_ready\",\"internal\","
    "\"misdirected_request\",\"busy\"]},"
    "\"message\":{\"type\":\"string\",\"minLength\":1},"
    "\"hint\":{\"type\":\"string\",\"minLength\":1}}}}}";

/* ---- fixture ----------------------------------------------------------------------- */

static struct cq_config *load_config(void)
{
    char conf[512], data_env[512];
    snprintf(conf, sizeof(conf), "%s/config.env", tmpdir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("# test config\nCQ_LOG_LEVEL=info\n", f);
    fclose(f);
    snprintf(data_env, sizeof(data_env), "CQ_DATA_DIR=%s/data", tmpdir);
    char *envp[] = {"CQ_ADMIN_TOKEN=" TOKEN, data_env, "BINANCE_API_KEY=" BINANCE_KEY,
                    "BINANCE_API_SECRET=" BINANCE_SECRET, NULL};
    struct cq_config_load_options lo = {.file_path = conf, .envp = envp};
    static struct cq_config_report report;
    struct cq_config *cfg = cq_config_load(&lo, &report);
    if (cfg == NULL) {
        cq_config_report_print(&report, stderr);
    }
    cr_assert_not_null(cfg, "cq_config_load failed (%zu errors)", report.n_errors);
    return cfg;
}

/* extra (optional): the slow-client limits to use. */
static struct cq_api *make_api_with(const char *token, const char *bind, size_t max_body,
                                    unsigned max_conn, const struct cq_api_options *extra)
{
    char data_dir[512];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    struct cq_api_options o = {
        .board = board,
        .config = current,
        .clock = &clk,
        .version = VERSION,
        .token = token,
        .bind = bind,
        .data_dir = data_dir,
        .max_connections = max_conn,
        .timeout_s = 5,
        .max_body_bytes = max_body,
    };
    if (extra != NULL) {
        o.request_deadline_ms = extra->request_deadline_ms;
        o.reserve_connections = extra->reserve_connections;
        o.reserve_deadline_ms = extra->reserve_deadline_ms;
        o.max_connections_per_peer = extra->max_connections_per_peer;
    }
    struct cq_err err = {0};
    struct cq_api *a = cq_api_new(&o, &err);
    cr_assert_not_null(a, "cq_api_new: %s (%s)", err.message, err.hint);
    return a;
}

static struct cq_api *make_api(const char *token, const char *bind, size_t max_body,
                               unsigned max_conn)
{
    return make_api_with(token, bind, max_body, max_conn, NULL);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    char data_dir[512];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    cr_assert_eq(cq_fs_mkdir_p(data_dir, 0700, NULL), 0);
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_DEBUG,
                                .max_bytes = 1 << 20,
                                .keep = 2,
                                .ring_lines = 500,
                                .clock = NULL};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    cq_log_add_secret(TOKEN);
    clk = fake_clock_as_clock(&fc);
    board = cq_health_board_new(&clk, NULL);
    cr_assert_not_null(board);
    current = cq_config_current_new(load_config());
    cr_assert_not_null(current);
    api = make_api(TOKEN, "127.0.0.1:0", 1024, 8);
}

static void teardown(void)
{
    cq_api_free(api);
    cq_config_current_free(current);
    cq_health_board_free(board);
    cq_log_close();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 30);

/* ---- helpers ------------------------------------------------------------------------ */

static void request(const char *method, const char *path, const char *authz,
                    struct cq_api_response *resp)
{
    struct cq_api_request req = {.method = method, .path = path, .authorization = authz};
    cq_api_handle(api, &req, resp);
    cr_assert_not_null(resp->body);
    cr_assert_eq(strlen(resp->body), resp->body_len);
    cr_assert_not_null(resp->content_type);
}

static json_t *body_json(const struct cq_api_response *resp)
{
    json_error_t jerr;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &jerr);
    cr_assert_not_null(j, "body is not JSON (%s): %s", jerr.text, resp->body);
    return j;
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    cr_assert_not_null(j, "%s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

/* Status, then the error body's shape and code. */
static void assert_error(const struct cq_api_response *resp, int status, const char *code)
{
    cr_assert_eq(resp->status, status, "want %d, got %d: %s", status, resp->status, resp->body);
    cr_assert_str_eq(resp->content_type, "application/json");
    json_t *j = body_json(resp);
    json_t *schema = json_loads(ERROR_SCHEMA, 0, NULL);
    cr_assert_not_null(schema);
    char err[512];
    cr_assert_eq(cq_jsonschema_validate(schema, j, err, sizeof(err)), 0, "%s: %s", err, resp->body);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")), code);
    json_decref(schema);
    json_decref(j);
}

static void publish_all(enum cq_health_status status, bool ready)
{
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        cq_health_publish(board, (enum cq_service_id)i, status, ready, "", "fine", NULL);
    }
}

static const char *config_hash(void)
{
    static char hash[32];
    struct cq_config *cfg = cq_config_current_get(current);
    cq_strlcpy(hash, cq_config_hash(cfg), sizeof(hash));
    cq_config_unref(cfg);
    return hash;
}

/* ---- /health ------------------------------------------------------------------------- */

Test(api, health_reports_version_mode_hash_services_libraries)
{
    struct cq_api_response resp;
    fake_clock_advance_ms(&fc, 5500);
    request("GET", "/health", NULL, &resp);
    cr_assert_eq(resp.status, 200, "%s", resp.body);
    cr_assert_str_eq(resp.content_type, "application/json");
    cr_assert_str_eq(resp.allow, "");
    cr_assert(!resp.www_authenticate);
    json_t *j = body_json(&resp);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "degraded");
    cr_assert_str_eq(json_string_value(json_object_get(j, "version")), VERSION);
    cr_assert_eq(json_integer_value(json_object_get(j, "uptime_s")), 5);
    cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), "paper");
    const char *hash = json_string_value(json_object_get(j, "config_hash"));
    cr_assert_not_null(hash);
    cr_assert_str_eq(hash, config_hash());
    cr_assert_eq(strlen(hash), 12);
    json_t *services = json_object_get(j, "services");
    cr_assert_eq(json_object_size(services), 5);
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        cr_assert_not_null(
            json_object_get(services, cq_health_service_name((enum cq_service_id)i)));
    }
    cr_assert(json_is_object(json_object_get(j, "libraries")));
    cr_assert(json_is_string(json_object_get(json_object_get(j, "libraries"), "jansson")));
    json_decref(j);
    cq_api_response_fini(&resp);
}

struct health_case {
    enum cq_health_status trader_status;
    char reason[32];
    int want_http;
    char want_status[16];
};

ParameterizedTestParameters(api, health_status_from_records)
{
    static struct health_case cases[] = {
        {CQ_HEALTH_OK, "", 200, "ok"},
        {CQ_HEALTH_DEGRADED, "stale_market_data", 200, "degraded"},
        {CQ_HEALTH_STARTING, "not_started", 200, "degraded"},
        {CQ_HEALTH_STOPPED, "stopped", 200, "degraded"},
        {CQ_HEALTH_DOWN, "venue_unreachable", 200, "degraded"},
        {CQ_HEALTH_DOWN, "stalled", 503, "down"},
    };
    return cr_make_param_array(struct health_case, cases, CQ_ARRAY_LEN(cases));
}

ParameterizedTest(struct health_case *c, api, health_status_from_records)
{
    publish_all(CQ_HEALTH_OK, true);
    cq_health_publish(board, CQ_SVC_TRADER, c->trader_status, false, c->reason, "x", NULL);
    struct cq_api_response resp;
    request("GET", "/health", NULL, &resp);
    cr_assert_eq(resp.status, c->want_http, "%s", resp.body);
    json_t *j = body_json(&resp);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), c->want_status);
    json_decref(j);
    cq_api_response_fini(&resp);
}

Test(api, health_records_validate_against_schema)
{
    json_t *schema = load_json(HEALTH_SCHEMA);
    char err[512];
    /* three board states: initial, mixed, stalled */
    for (int round = 0; round < 3; round++) {
        if (round == 1) {
            cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_OK, true, "", "streaming",
                              json_pack("{s:[s,s]}", "symbols", "BTCUSDT", "ETHUSDT"));
            cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_OK, true, "", NULL, NULL);
            cq_health_set_fresh(board, CQ_SVC_FEEDER, fc.mono_ms - 250);
        } else if (round == 2) {
            cq_health_publish(board, CQ_SVC_ARES, CQ_HEALTH_DOWN, false, "stalled",
                              "no heartbeat for 5000 ms", NULL);
        }
        fake_clock_advance_ms(&fc, 100);
        struct cq_api_response resp;
        request("GET", "/health", NULL, &resp);
        json_t *j = body_json(&resp);
        const char *name;
        json_t *rec;
        size_t n = 0;
        json_object_foreach(json_object_get(j, "services"), name, rec)
        {
            cr_assert_eq(cq_jsonschema_validate(schema, rec, err, sizeof(err)), 0,
                         "round %d, /services/%s: %s", round, name, err);
            cr_assert_str_eq(json_string_value(json_object_get(rec, "service")), name);
            n++;
        }
        cr_assert_eq(n, 5);
        json_decref(j);
        cq_api_response_fini(&resp);
    }
    json_decref(schema);
}

Test(api, schema_examples_validate)
{
    json_t *schema = load_json(HEALTH_SCHEMA);
    char err[512], path[1024];
    size_t n = 0;
    json_t *ex;
    size_t i;
    json_array_foreach(json_object_get(schema, "examples"), i, ex)
    {
        cr_assert_eq(cq_jsonschema_validate(schema, ex, err, sizeof(err)), 0, "examples[%zu]: %s",
                     i, err);
        n++;
    }
    cr_assert_geq(n, 2, "the schema should carry examples");

    DIR *d = opendir(EXAMPLES_DIR);
    cr_assert_not_null(d);
    struct dirent *de;
    size_t files = 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "health-", 7) != 0 || strstr(de->d_name, ".json") == NULL) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", EXAMPLES_DIR, de->d_name);
        json_t *doc = load_json(path);
        cr_assert_eq(cq_jsonschema_validate(schema, doc, err, sizeof(err)), 0, "%s: %s", path, err);
        json_decref(doc);
        files++;
    }
    closedir(d);
    cr_assert_geq(files, 2, "expected health-*.json examples in %s", EXAMPLES_DIR);
    json_decref(schema);
}

/* ---- /readiness ----------------------------------------------------------------------- */

Test(api, readiness_503_with_reasons_then_200)
{
    struct cq_api_response resp;
    request("GET", "/readiness", NULL, &resp);
    cr_assert_eq(resp.status, 503, "%s", resp.body);
    json_t *j = body_json(&resp);
    cr_assert(json_is_false(json_object_get(j, "ready")));
    json_t *reasons = json_object_get(j, "reasons");
    cr_assert_eq(json_array_size(reasons), 5);
    json_t *r0 = json_array_get(reasons, 0);
    cr_assert(json_is_string(json_object_get(r0, "service")));
    cr_assert_str_eq(json_string_value(json_object_get(r0, "reason")), "not_started");
    cr_assert(json_is_string(json_object_get(r0, "detail")));
    json_decref(j);
    cq_api_response_fini(&resp);

    publish_all(CQ_HEALTH_OK, true);
    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_DEGRADED, false, "risk_limit_hit",
                      "daily loss limit reached", NULL);
    request("GET", "/readiness", NULL, &resp);
    cr_assert_eq(resp.status, 503);
    j = body_json(&resp);
    reasons = json_object_get(j, "reasons");
    cr_assert_eq(json_array_size(reasons), 1);
    json_t *r = json_array_get(reasons, 0);
    cr_assert_str_eq(json_string_value(json_object_get(r, "service")), "trader");
    cr_assert_str_eq(json_string_value(json_object_get(r, "reason")), "risk_limit_hit");
    cr_assert_str_eq(json_string_value(json_object_get(r, "detail")), "daily loss limit reached");
    json_decref(j);
    cq_api_response_fini(&resp);

    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_OK, true, "", "", NULL);
    request("GET", "/readiness", NULL, &resp);
    cr_assert_eq(resp.status, 200);
    cr_assert_str_eq(resp.body, "{\"ready\":true}");
    cq_api_response_fini(&resp);
}

/* ---- /config -------------------------------------------------------------------------- */

Test(api, config_with_token_shows_sources_and_redacts_secrets)
{
    struct cq_api_response resp;
    request("GET", "/config", "Bearer " TOKEN, &resp);
    cr_assert_eq(resp.status, 200, "%s", resp.body);
    cr_assert_null(strstr(resp.body, TOKEN), "the admin token leaked into /config");
    cr_assert_null(strstr(resp.body, BINANCE_SECRET), "a secret leaked into /config");
    cr_assert_null(strstr(resp.body, BINANCE_KEY), "a secret leaked into /config");
    json_t *j = body_json(&resp);
    cr_assert_str_eq(json_string_value(json_object_get(j, "config_hash")), config_hash());
    json_t *keys = json_object_get(j, "keys");
    json_t *tok = json_object_get(keys, "CQ_ADMIN_TOKEN");
    cr_assert_str_eq(json_string_value(json_object_get(tok, "value")), "<redacted>");
    cr_assert_str_eq(json_string_value(json_object_get(tok, "source")), "env");
    cr_assert(json_is_true(json_object_get(tok, "secret")));
    json_t *sec = json_object_get(keys, "BINANCE_API_SECRET");
    cr_assert_str_eq(json_string_value(json_object_get(sec, "value")), "<redacted>");
    json_t *lvl = json_object_get(keys, "CQ_LOG_LEVEL");
    cr_assert_str_eq(json_string_value(json_object_get(lvl, "value")), "info");
    cr_assert_str_eq(json_string_value(json_object_get(lvl, "source")), "file");
    json_t *mode = json_object_get(keys, "CQ_MODE");
    cr_assert_str_eq(json_string_value(json_object_get(mode, "source")), "default");
    json_decref(j);
    cq_api_response_fini(&resp);
}

/* ---- auth ------------------------------------------------------------------------------ */

struct auth_case {
    char header[96]; /* "" with is_null: no header */
    bool is_null;
    bool ok;
};

static struct auth_case auth_cases[] = {
    {"", true, false},
    {"", false, false},
    {"Basic dGVzdDp0ZXN0", false, false},
    {"Token " TOKEN, false, false},
    {"Bearer", false, false},
    {"Bearer ", false, false},
    {"Bearer" TOKEN, false, false},
    {"Bearer wrong-token-0123456789abc", false, false},
    {"Bearer test-token-0123456789abcde", false, false},  /* prefix */
    {"Bearer " TOKEN "f", false, false},                  /* suffix added */
    {"Bearer x" TOKEN, false, false},                     /* prefix added */
    {"Bearer est-token-0123456789abcdef", false, false},  /* first char dropped */
    {"Bearer TEST-TOKEN-0123456789ABCDEF", false, false}, /* token is case-sensitive */
    {"Bearer " TOKEN " extra", false, false},
    {"Bearer " TOKEN, false, true},
    {"bearer " TOKEN, false, true},
    {"BEARER   " TOKEN, false, true},
    {"  Bearer " TOKEN "  ", false, true},
};

ParameterizedTestParameters(api, config_auth)
{
    return cr_make_param_array(struct auth_case, auth_cases, CQ_ARRAY_LEN(auth_cases));
}

ParameterizedTest(struct auth_case *c, api, config_auth)
{
    struct cq_api_response resp;
    struct cq_api_stats before, after;
    cq_api_get_stats(api, &before);
    request("GET", "/config", c->is_null ? NULL : c->header, &resp);
    cq_api_get_stats(api, &after);
    if (c->ok) {
        cr_assert_eq(resp.status, 200, "[%s]: %s", c->header, resp.body);
        cr_assert(!resp.www_authenticate);
        cr_assert_eq(after.auth_failures, before.auth_failures);
    } else {
        assert_error(&resp, 401, "unauthorized");
        cr_assert(resp.www_authenticate, "401 must ask for Bearer");
        cr_assert_not_null(strstr(resp.body, "Authorization: Bearer <token>"), "%s", resp.body);
        cr_assert_not_null(strstr(resp.body, "DATA_DIR/admin.token"), "%s", resp.body);
        cr_assert_null(strstr(resp.body, TOKEN), "the token leaked into a 401: %s", resp.body);
        cr_assert_eq(after.auth_failures, before.auth_failures + 1);
    }
    cr_assert_eq(cq_api_auth_ok(c->is_null ? NULL : c->header, TOKEN), c->ok, "[%s]", c->header);
    cq_api_response_fini(&resp);
}

Test(api, auth_ok_refuses_when_no_token_is_configured)
{
    cr_assert(!cq_api_auth_ok("Bearer ", ""));
    cr_assert(!cq_api_auth_ok("Bearer x", ""));
    cr_assert(!cq_api_auth_ok("Bearer x", NULL));
    cr_assert(!cq_api_auth_ok(NULL, NULL));
    cr_assert(cq_api_auth_ok("Bearer 0123456789abcdef", "0123456789abcdef"));

    /* an API built without a token refuses every token route */
    cq_api_free(api);
    api = make_api("", NULL, 1024, 8);
    struct cq_api_response resp;
    request("GET", "/config", "Bearer ", &resp);
    assert_error(&resp, 401, "unauthorized");
    cq_api_response_fini(&resp);
}

Test(api, open_endpoints_need_no_token)
{
    static const char *const paths[] = {"/health", "/readiness", "/metrics"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(paths); i++) {
        struct cq_api_response resp;
        request("GET", paths[i], NULL, &resp);
        cr_assert(resp.status == 200 || resp.status == 503, "%s: %d", paths[i], resp.status);
        cq_api_response_fini(&resp);
        /* a wrong token on an open endpoint is ignored, not refused */
        request("GET", paths[i], "Bearer nope-nope-nope-nope", &resp);
        cr_assert(resp.status == 200 || resp.status == 503, "%s: %d", paths[i], resp.status);
        cq_api_response_fini(&resp);
    }
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_eq(st.auth_failures, 0);
}

/* ---- routing errors ----------------------------------------------------------------------- */

Test(api, unknown_path_is_404)
{
    static const char *const paths[] = {"/nope",     "/health/", "/HEALTH",
                                        "/health/x", "/",        "/config.json"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(paths); i++) {
        struct cq_api_response resp;
        request("GET", paths[i], NULL, &resp);
        assert_error(&resp, 404, "not_found");
        cr_assert_str_eq(resp.allow, "");
        cq_api_response_fini(&resp);
    }
}

Test(api, wrong_method_is_405_with_allow)
{
    struct cq_api_response resp;
    request("POST", "/health", NULL, &resp);
    assert_error(&resp, 405, "method_not_allowed");
    cr_assert_str_eq(resp.allow, "GET, HEAD");
    cq_api_response_fini(&resp);

    /* the method is checked before the token: no 401 for a wrong method */
    request("DELETE", "/config", NULL, &resp);
    assert_error(&resp, 405, "method_not_allowed");
    cr_assert_str_eq(resp.allow, "GET, HEAD");
    cr_assert(!resp.www_authenticate);
    cq_api_response_fini(&resp);

    request("get", "/metrics", NULL, &resp); /* methods are case-sensitive */
    assert_error(&resp, 405, "method_not_allowed");
    cq_api_response_fini(&resp);
}

Test(api, head_is_answered_like_get)
{
    struct cq_api_response resp;
    request("HEAD", "/readiness", NULL, &resp);
    cr_assert_eq(resp.status, 503);
    cq_api_response_fini(&resp);
    request("HEAD", "/config", NULL, &resp);
    assert_error(&resp, 401, "unauthorized");
    cq_api_response_fini(&resp);
    request("HEAD", "/config", "Bearer " TOKEN, &resp);
    cr_assert_eq(resp.status, 200);
    cq_api_response_fini(&resp);
}

Test(api, body_too_large_is_413_before_auth_and_routing)
{
    static const char *const paths[] = {"/health", "/config", "/nope"};
    for (size_t i = 0; i < CQ_ARRAY_LEN(paths); i++) {
        struct cq_api_request req = {
            .method = "POST", .path = paths[i], .body_bytes = 4096, .body_too_large = true};
        struct cq_api_response resp;
        cq_api_handle(api, &req, &resp);
        assert_error(&resp, 413, "payload_too_large");
        cr_assert_not_null(strstr(resp.body, "1024"), "names the limit: %s", resp.body);
        cq_api_response_fini(&resp);
    }
}

Test(api, malformed_request_is_400)
{
    struct cq_api_response resp;
    request("GET", "health", NULL, &resp);
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
    struct cq_api_request req = {.method = NULL, .path = "/health"};
    cq_api_handle(api, &req, &resp);
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
}

struct ring_count {
    const char *needle1;
    const char *needle2;
    size_t count;
    char first[1024];
};

static void ring_count_fn(const char *line, void *ctx)
{
    struct ring_count *rc = ctx;
    if (strstr(line, rc->needle1) != NULL && (rc->needle2 == NULL || strstr(line, rc->needle2))) {
        if (rc->count == 0) {
            cq_strlcpy(rc->first, line, sizeof(rc->first)); /* a cut copy is fine here */
        }
        rc->count++;
    }
}

static size_t ring_lines_with(const char *needle1, const char *needle2)
{
    struct ring_count rc = {needle1, needle2, 0, ""};
    cq_log_ring_foreach(ring_count_fn, &rc);
    return rc.count;
}

/* Issue 17.8: a method or path that is not UTF-8 got 500 "out of memory"
 * (jansson refuses the message), and so did a path whose last character
 * straddled the 128 bytes shown. Now 400 (not UTF-8, not a token) or 404,
 * with a JSON body; the request's log line keeps method, path and status. */
Test(api, non_utf8_and_long_multibyte_paths_get_400_or_404_never_500)
{
    struct cq_api_response resp;
    request("G\xff"
            "T",
            "/health", NULL, &resp);
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
    request("GET", "/\xff", NULL, &resp); /* what /%FF decodes to */
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
    request("GET", "/health\xc3", NULL, &resp); /* a cut character */
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
    request("G T", "/health", NULL, &resp); /* not an HTTP token */
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);

    /* valid UTF-8 whose last character (2, 3 or 4 bytes) straddles the
     * shown length, starting at every byte from 120 to 131 */
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t c = 0; c < CQ_ARRAY_LEN(chars); c++) {
        for (size_t at = 120; at <= 131; at++) {
            char path[256];
            path[0] = '/';
            memset(path + 1, 'a', at - 1);
            strcpy(path + at, chars[c]);
            request("GET", path, NULL, &resp);
            assert_error(&resp, 404, "not_found");
            cq_api_response_fini(&resp);
            request("P\xc3\xa9T", path, NULL, &resp); /* a method that is UTF-8 but no token */
            assert_error(&resp, 400, "bad_request");
            cq_api_response_fini(&resp);
        }
    }
    cr_assert_eq(ring_lines_with("\"event\":\"api_request\"", "\"method\":\"G?T\""), 1,
                 "the log line of G\\xffT keeps its method");
    cr_assert_eq(ring_lines_with("\"event\":\"api_request\"", "\"path\":\"/?\",\"status\":400"), 1,
                 "the log line of /%%FF keeps its path and status");
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_eq(st.responses_5xx, 0);
}

/* CQ_API_SHOW_PATH_MAX and CQ_API_SHOW_METHOD_MAX at the boundary: shown
 * whole at the limit, cut with "..." one byte over. */
Test(api, shown_path_and_method_are_cut_exactly_at_their_limits)
{
    char path[CQ_API_SHOW_PATH_MAX + 2];
    char want[CQ_API_SHOW_PATH_MAX + 64];
    path[0] = '/';
    memset(path + 1, 'q', CQ_API_SHOW_PATH_MAX - 1);
    path[CQ_API_SHOW_PATH_MAX] = '\0'; /* exactly the limit */
    struct cq_api_response resp;
    request("GET", path, NULL, &resp);
    snprintf(want, sizeof(want), "there is no endpoint %s\"", path);
    cr_assert_not_null(strstr(resp.body, want), "%s", resp.body);
    cq_api_response_fini(&resp);
    path[CQ_API_SHOW_PATH_MAX] = 'q'; /* one over */
    path[CQ_API_SHOW_PATH_MAX + 1] = '\0';
    request("GET", path, NULL, &resp);
    path[CQ_API_SHOW_PATH_MAX] = '\0';
    snprintf(want, sizeof(want), "there is no endpoint %s...\"", path);
    cr_assert_not_null(strstr(resp.body, want), "%s", resp.body);
    cq_api_response_fini(&resp);

    char method[CQ_API_SHOW_METHOD_MAX + 2];
    memset(method, 'M', CQ_API_SHOW_METHOD_MAX);
    method[CQ_API_SHOW_METHOD_MAX] = '\0';
    request(method, "/health", NULL, &resp);
    snprintf(want, sizeof(want), "method %s is not allowed", method);
    cr_assert_not_null(strstr(resp.body, want), "%s", resp.body);
    cq_api_response_fini(&resp);
    method[CQ_API_SHOW_METHOD_MAX] = 'M';
    method[CQ_API_SHOW_METHOD_MAX + 1] = '\0';
    request(method, "/health", NULL, &resp);
    method[CQ_API_SHOW_METHOD_MAX] = '\0';
    snprintf(want, sizeof(want), "method %s... is not allowed", method);
    cr_assert_not_null(strstr(resp.body, want), "%s", resp.body);
    cq_api_response_fini(&resp);
}

/* Issue 17.smaller: the path and method were logged cut to 128 and 16
 * bytes, and a token cut by that was no longer recognised by redaction. */
Test(api, token_in_method_or_path_is_redacted_before_it_is_cut)
{
    char path[300];
    /* the token starts at byte 120: it straddles the 128 bytes shown */
    path[0] = '/';
    memset(path + 1, 'p', 119);
    strcpy(path + 120, TOKEN);
    struct cq_api_response resp;
    request("GET", path, NULL, &resp);
    assert_error(&resp, 404, "not_found");
    cr_assert_null(strstr(resp.body, "test-tok"), "%s", resp.body);
    cq_api_response_fini(&resp);
    request(TOKEN, "/health", NULL, &resp); /* 27 bytes, shown at most 16 */
    assert_error(&resp, 405, "method_not_allowed");
    cr_assert_null(strstr(resp.body, "test-tok"), "%s", resp.body);
    cq_api_response_fini(&resp);
    request(TOKEN, "/config", NULL, &resp);
    cq_api_response_fini(&resp);
    request("GET", "/config", NULL, &resp); /* the auth failure line */
    cq_api_response_fini(&resp);

    struct ring_count rc = {"test-tok", NULL, 0, ""};
    cq_log_ring_foreach(ring_count_fn, &rc);
    cr_assert_eq(rc.count, 0, "a piece of the token was logged: %s", rc.first);
    cr_assert_geq(ring_lines_with("\"event\":\"api_request\"", "<redacted>"), 2);
}

/* Issue 17.smaller: on a loopback bind, a Host naming another site (DNS
 * rebinding: a web page reading /health and /metrics) gets 421. */
Test(api, foreign_host_on_a_loopback_bind_is_421)
{
    static const char *const good[] = {
        "localhost",       "LocalHost:8080",       "127.0.0.1",
        "127.0.0.1:43123", "127.1.2.3:1",          "[::1]",
        "[::1]:8080",      "[0:0:0:0:0:0:0:1]:80", "",
    };
    static const char *const bad[] = {
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "10.0.0.1",
        "[::2]:80",
        "::1",
        "localhost:",
        "localhost:123456",
        "localhost:80x",
        "[localhost]",
        "[::1",
        "0.0.0.0:8080",
        "127.0.0.1@evil",
        "localhost:80:80",
    };
    publish_all(CQ_HEALTH_OK, true);
    for (size_t i = 0; i < CQ_ARRAY_LEN(good); i++) {
        struct cq_api_request req = {.method = "GET", .path = "/health", .host = good[i]};
        struct cq_api_response resp;
        cq_api_handle(api, &req, &resp);
        cr_assert_eq(resp.status, 200, "Host %s: %d %s", good[i], resp.status, resp.body);
        cq_api_response_fini(&resp);
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(bad); i++) {
        struct cq_api_request req = {.method = "GET", .path = "/metrics", .host = bad[i]};
        struct cq_api_response resp;
        cq_api_handle(api, &req, &resp);
        assert_error(&resp, 421, "misdirected_request");
        cq_api_response_fini(&resp);
    }
    /* a non-loopback bind (which needs a token) does not check Host */
    struct cq_api *open_api = make_api(TOKEN, "0.0.0.0:0", 1024, 8);
    struct cq_api_request req = {.method = "GET", .path = "/health", .host = "evil.example"};
    struct cq_api_response resp;
    cq_api_handle(open_api, &req, &resp);
    cr_assert_eq(resp.status, 200, "%s", resp.body);
    cq_api_response_fini(&resp);
    cq_api_free(open_api);
}

/* A reserve slot (taken when the pool was full) answers /health and
 * /readiness; anything else gets a fast 503 busy with Retry-After. */
Test(api, reserve_slot_answers_probes_and_503_busy_otherwise)
{
    publish_all(CQ_HEALTH_OK, false);
    struct {
        const char *method, *path, *authz;
        int status;
        const char *code; /* NULL: not an error body */
    } cases[] = {
        {"GET", "/health", NULL, 200, NULL},
        {"HEAD", "/health", NULL, 200, NULL},
        {"GET", "/readiness", NULL, 503, NULL},
        {"GET", "/metrics", NULL, 503, "busy"},
        {"GET", "/config", "Bearer " TOKEN, 503, "busy"},
        {"GET", "/config", NULL, 503, "busy"},
        {"GET", "/nope", NULL, 404, "not_found"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        struct cq_api_request req = {.method = cases[i].method,
                                     .path = cases[i].path,
                                     .authorization = cases[i].authz,
                                     .reserve = true};
        struct cq_api_response resp;
        cq_api_handle(api, &req, &resp);
        cr_assert_eq(resp.status, cases[i].status, "%s %s: %d %s", cases[i].method, cases[i].path,
                     resp.status, resp.body);
        if (cases[i].code != NULL) {
            assert_error(&resp, cases[i].status, cases[i].code);
        }
        cr_assert_eq(resp.retry_after_s,
                     strcmp(cases[i].code != NULL ? cases[i].code : "", "busy") == 0 ? 1u : 0u);
        cq_api_response_fini(&resp);
    }
}

Test(api, malformed_reason_from_the_http_layer_is_400)
{
    struct cq_api_request req = {.method = "GET",
                                 .path = "/health",
                                 .malformed = "the path holds a NUL byte (%00); paths are text"};
    struct cq_api_response resp;
    cq_api_handle(api, &req, &resp);
    assert_error(&resp, 400, "bad_request");
    cr_assert_not_null(strstr(resp.body, "NUL"), "%s", resp.body);
    cq_api_response_fini(&resp);
}

/* ---- /metrics ------------------------------------------------------------------------------ */

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0')) {
            return true;
        }
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    return false;
}

static bool has_prefix_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, n) == 0) {
            return true;
        }
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    return false;
}

Test(api, metrics_exposes_the_expected_series)
{
    publish_all(CQ_HEALTH_OK, true);
    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_DEGRADED, false, "x", "", NULL);
    cq_health_set_fresh(board, CQ_SVC_FEEDER, fc.mono_ms - 1234);
    fake_clock_advance_ms(&fc, 7000);

    struct cq_api_response resp;
    request("GET", "/nope", NULL, &resp); /* one 4xx */
    cq_api_response_fini(&resp);
    request("GET", "/config", NULL, &resp); /* one auth failure */
    cq_api_response_fini(&resp);
    request("GET", "/metrics", NULL, &resp);
    cr_assert_eq(resp.status, 200);
    cr_assert_str_eq(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
    const char *t = resp.body;

    char line[256];
    cr_assert(has_line(t, "# TYPE coinquant_up gauge"), "%s", t);
    cr_assert(has_prefix_line(t, "# HELP coinquant_up "));
    cr_assert(has_line(t, "coinquant_up 1"));
    /* the process's age (tests/unit/test_metrics.c checks the value) */
    cr_assert(has_prefix_line(t, "coinquant_uptime_seconds "), "%s", t);
    snprintf(line, sizeof(line),
             "coinquant_build_info{version=\"" VERSION "\",mode=\"paper\",config_hash=\"%s\"} 1",
             config_hash());
    cr_assert(has_line(t, line), "missing %s in\n%s", line, t);
    cr_assert(has_line(t, "coinquant_service_ready{service=\"feeder\"} 1"));
    cr_assert(has_line(t, "coinquant_service_ready{service=\"trader\"} 0"));
    cr_assert(has_line(t, "coinquant_service_status{service=\"trader\",status=\"degraded\"} 1"));
    cr_assert(has_line(t, "coinquant_service_status{service=\"trader\",status=\"ok\"} 0"));
    cr_assert(has_line(t, "coinquant_service_status{service=\"api\",status=\"ok\"} 1"));
    cr_assert(has_line(t, "coinquant_service_freshness_seconds{service=\"feeder\"} 8.234"), "%s",
              t);
    cr_assert(has_line(t, "coinquant_ready 0"));
    cr_assert(has_line(t, "coinquant_api_requests_total 3"), "%s", t);
    cr_assert(has_line(t, "coinquant_api_responses_total{class=\"4xx\"} 2"), "%s", t);
    cr_assert(has_line(t, "coinquant_api_responses_total{class=\"2xx\"} 0"), "%s", t);
    cr_assert(has_line(t, "coinquant_api_responses_total{class=\"5xx\"} 0"));
    cr_assert(has_line(t, "coinquant_api_auth_failures_total 1"));
    cr_assert(has_line(t, "coinquant_api_connections_rejected_total 0"));
    static const char *const names[] = {
        "coinquant_log_lines_total",
        "coinquant_log_lines_dropped_total",
        "coinquant_log_rotations_total",
        "coinquant_log_write_errors_total",
        "coinquant_log_queue_bytes",
        "coinquant_service_ready",
        "coinquant_service_status",
        "coinquant_service_freshness_seconds",
        "coinquant_ready",
        "coinquant_api_requests_total",
        "coinquant_api_responses_total",
        "coinquant_api_auth_failures_total",
        "coinquant_api_connections_rejected_total",
        "coinquant_build_info",
        "coinquant_uptime_seconds",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(names); i++) {
        snprintf(line, sizeof(line), "# HELP %s ", names[i]);
        cr_assert(has_prefix_line(t, line), "no HELP for %s", names[i]);
        snprintf(line, sizeof(line), "# TYPE %s ", names[i]);
        cr_assert(has_prefix_line(t, line), "no TYPE for %s", names[i]);
    }
    /* with every service ready, coinquant_ready flips */
    cq_api_response_fini(&resp);
    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_OK, true, "", "", NULL);
    request("GET", "/metrics", NULL, &resp);
    cr_assert(has_line(resp.body, "coinquant_ready 1"));
    cq_api_response_fini(&resp);
}

Test(api, metrics_lines_follow_the_exposition_format)
{
    struct cq_api_response resp;
    request("GET", "/metrics", NULL, &resp);
    regex_t sample, comment;
    cr_assert_eq(regcomp(&sample,
                         "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? -?[0-9]+(\\.[0-9]+)?$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(regcomp(&comment,
                         "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                         "(gauge|counter|histogram))$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    char *copy = strdup(resp.body);
    size_t samples = 0;
    char *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#') {
            cr_assert_eq(regexec(&comment, l, 0, NULL, 0), 0, "bad comment line: %s", l);
        } else {
            cr_assert_eq(regexec(&sample, l, 0, NULL, 0), 0, "bad sample line: %s", l);
            samples++;
        }
    }
    /* up, uptime, build_info, 5 ready, 25 status, 5 freshness, ready, 5 log, requests,
     * 3 response classes, auth failures, connections rejected */
    cr_assert_geq(samples, 50, "only %zu samples", samples);
    cr_assert_eq(resp.body[resp.body_len - 1], '\n');
    free(copy);
    regfree(&sample);
    regfree(&comment);
    cq_api_response_fini(&resp);
}

Test(api, stats_count_requests_and_response_classes)
{
    struct cq_api_response resp;
    request("GET", "/health", NULL, &resp); /* 200 */
    cq_api_response_fini(&resp);
    publish_all(CQ_HEALTH_DOWN, false);
    cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_DOWN, false, "stalled", "", NULL);
    request("GET", "/health", NULL, &resp); /* 503 */
    cq_api_response_fini(&resp);
    request("PUT", "/health", NULL, &resp); /* 405 */
    cq_api_response_fini(&resp);
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_eq(st.requests_total, 3);
    cr_assert_eq(st.responses_2xx, 1);
    cr_assert_eq(st.responses_4xx, 1);
    cr_assert_eq(st.responses_5xx, 1);
    cr_assert_eq(st.connections_rejected, 0);
}

/* ---- the route table against openapi.yaml ---------------------------------------------------- */

/* The methods documented under `paths:` for path (lower case, "get,"),
 * or NULL when the path is not there. Simple text parsing: paths are the
 * 2-space-indented keys, methods the 4-space-indented ones. */
static bool openapi_has(const char *yaml, const char *path, const char *method_lower,
                        bool *path_found)
{
    const char *p = strstr(yaml, "\npaths:\n");
    cr_assert_not_null(p, "openapi.yaml has no top-level paths:");
    p += strlen("\npaths:\n");
    bool in_path = false;
    *path_found = false;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (len > 0 && p[0] != ' ' && p[0] != '#') {
            break; /* next top-level key */
        }
        if (len > 3 && strncmp(p, "  /", 3) == 0) {
            in_path = len - 2 == strlen(path) + 1 && strncmp(p + 2, path, strlen(path)) == 0 &&
                      p[2 + strlen(path)] == ':';
            *path_found = *path_found || in_path;
        } else if (in_path && len > 4 && strncmp(p, "    ", 4) == 0 && p[4] != ' ') {
            size_t m = strlen(method_lower);
            if (len == 4 + m + 1 && strncmp(p + 4, method_lower, m) == 0 && p[4 + m] == ':') {
                return true;
            }
        }
        if (eol == NULL) {
            break;
        }
        p = eol + 1;
    }
    return false;
}

Test(api, every_route_is_documented_in_openapi_and_back)
{
    char *yaml = NULL;
    cr_assert_eq(cq_fs_read_file(OPENAPI_YAML, 1 << 20, &yaml, NULL, NULL), 0);
    size_t n;
    const struct cq_api_route *routes = cq_api__routes(&n);
    cr_assert_geq(n, 4);
    for (size_t i = 0; i < n; i++) {
        char method[16];
        size_t k = 0;
        for (; routes[i].method[k] != '\0' && k + 1 < sizeof(method); k++) {
            method[k] = (char)(routes[i].method[k] | 0x20);
        }
        method[k] = '\0';
        bool path_found = false;
        cr_assert(openapi_has(yaml, routes[i].path, method, &path_found),
                  "%s %s is routed but not documented under paths: in openapi.yaml%s",
                  routes[i].method, routes[i].path, path_found ? " (path without method)" : "");
    }
    /* and back: every documented path is routed */
    const char *p = strstr(yaml, "\npaths:\n") + strlen("\npaths:\n");
    size_t documented = 0;
    while (*p != '\0' && (*p == ' ' || *p == '#' || *p == '\n')) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, "  /", 3) == 0) {
            const char *colon = strchr(p + 2, ':');
            cr_assert_not_null(colon);
            char path[128];
            size_t len = (size_t)(colon - (p + 2));
            cr_assert_lt(len, sizeof(path));
            memcpy(path, p + 2, len);
            path[len] = '\0';
            bool routed = false;
            for (size_t i = 0; i < n; i++) {
                routed = routed || strcmp(routes[i].path, path) == 0;
            }
            cr_assert(routed, "openapi.yaml documents %s but the router has no such route", path);
            documented++;
        }
        if (eol == NULL) {
            break;
        }
        p = eol + 1;
    }
    cr_assert_eq(documented, n);
    free(yaml);
}

Test(api, openapi_marks_open_endpoints_and_only_them)
{
    char *yaml = NULL;
    cr_assert_eq(cq_fs_read_file(OPENAPI_YAML, 1 << 20, &yaml, NULL, NULL), 0);
    size_t n;
    const struct cq_api_route *routes = cq_api__routes(&n);
    for (size_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "\n  %s:\n", routes[i].path);
        const char *start = strstr(yaml, key);
        cr_assert_not_null(start, "%s", routes[i].path);
        start += strlen(key);
        const char *end = strstr(start, "\n  /");
        if (end == NULL) {
            end = strstr(start, "\ncomponents:");
        }
        cr_assert_not_null(end);
        const char *open = strstr(start, "      security: []\n");
        bool documented_open = open != NULL && open < end;
        cr_assert_eq(documented_open, !routes[i].needs_token,
                     "%s: security in openapi.yaml does not match the router", routes[i].path);
        const char *unauth = strstr(start, "'401'");
        cr_assert_eq(unauth != NULL && unauth < end, routes[i].needs_token,
                     "%s: 401 documented iff the token is needed", routes[i].path);
    }
    free(yaml);
}

/* ---- JSON Schema subset validator --------------------------------------------------------------
 */

static json_t *valid_record(void)
{
    return json_pack("{s:s,s:s,s:b,s:s,s:s,s:s,s:i,s:{}}", "service", "feeder", "status", "ok",
                     "ready", 1, "reason", "", "detail", "streaming", "updated_at",
                     "2026-11-21T11:16:00.123456Z", "freshness_ms", 12, "details");
}

struct mutation {
    char key[16];
    char value_json[320]; /* "" = delete the key */
    char want_in_err[32];
};

ParameterizedTestParameters(jsonschema, rejects_wrong_health_records)
{
    static struct mutation cases[] = {
        {"service", "", "\"service\" is missing"},
        {"service", "\"bogus\"", "/service"},
        {"service", "7", "/service"},
        {"status", "\"fine\"", "/status"},
        {"status", "", "\"status\""},
        {"ready", "\"yes\"", "/ready"},
        {"ready", "null", "/ready"},
        {"reason", "\"Bad-Reason\"", "/reason"},
        {"reason", "\"9lives\"", "/reason"},
        {"reason", "\"a23456789012345678901234567890123456789012345678901234567890abcd\"",
         "maxLength"},
        {"detail", "5", "/detail"},
        {"updated_at", "\"yesterday\"", "/updated_at"},
        {"updated_at", "\"2026-11-21 11:16:00Z\"", "/updated_at"},
        {"freshness_ms", "-1", "minimum"},
        {"freshness_ms", "1.5", "/freshness_ms"},
        {"freshness_ms", "\"12\"", "/freshness_ms"},
        {"details", "[]", "/details"},
        {"extra", "1", "/extra"},
    };
    return cr_make_param_array(struct mutation, cases, CQ_ARRAY_LEN(cases));
}

ParameterizedTest(struct mutation *m, jsonschema, rejects_wrong_health_records)
{
    json_t *schema = load_json(HEALTH_SCHEMA);
    json_t *doc = valid_record();
    char err[512];
    cr_assert_eq(cq_jsonschema_validate(schema, doc, err, sizeof(err)), 0, "%s", err);
    if (m->value_json[0] == '\0') {
        json_object_del(doc, m->key);
    } else {
        json_t *v = json_loads(m->value_json, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(v, "%s", m->value_json);
        json_object_set_new(doc, m->key, v);
    }
    cr_assert_eq(cq_jsonschema_validate(schema, doc, err, sizeof(err)), -1,
                 "%s=%s should be rejected", m->key, m->value_json);
    cr_assert_not_null(strstr(err, m->want_in_err), "error \"%s\" lacks \"%s\"", err,
                       m->want_in_err);
    json_decref(doc);
    json_decref(schema);
}

Test(jsonschema, detail_length_counts_code_points)
{
    json_t *schema = load_json(HEALTH_SCHEMA);
    json_t *doc = valid_record();
    char detail[3 * 255 + 1], err[512];
    /* 255 three-byte characters: 765 bytes but 255 code points: valid */
    for (int i = 0; i < 255; i++) {
        memcpy(detail + 3 * i, "\xe2\x82\xac", 3); /* € */
    }
    detail[3 * 255] = '\0';
    json_object_set_new(doc, "detail", json_string(detail));
    cr_assert_eq(cq_jsonschema_validate(schema, doc, err, sizeof(err)), 0, "%s", err);
    char longer[300];
    memset(longer, 'x', 256);
    longer[256] = '\0';
    json_object_set_new(doc, "detail", json_string(longer));
    cr_assert_eq(cq_jsonschema_validate(schema, doc, err, sizeof(err)), -1);
    json_decref(doc);
    json_decref(schema);
}

struct subset_case {
    char schema[320];
    char doc[96];
    int want; /* 0 valid, -1 invalid */
    char want_in_err[40];
};

ParameterizedTestParameters(jsonschema, subset_keywords)
{
    static struct subset_case cases[] = {
        {"{\"type\":[\"string\",\"null\"]}", "null", 0, ""},
        {"{\"type\":[\"string\",\"null\"]}", "3", -1, "expected type"},
        {"{\"type\":\"integer\"}", "3.0", 0, ""},
        {"{\"type\":\"number\",\"minimum\":1.5,\"maximum\":2}", "2", 0, ""},
        {"{\"type\":\"number\",\"maximum\":2}", "2.5", -1, "maximum"},
        {"{\"const\":\"x\"}", "\"x\"", 0, ""},
        {"{\"const\":\"x\"}", "\"y\"", -1, "constant"},
        {"{\"enum\":[1,\"a\",null]}", "null", 0, ""},
        {"{\"minLength\":2}", "\"a\"", -1, "minLength"},
        {"{\"items\":{\"type\":\"integer\"}}", "[1,2,\"3\"]", -1, "/2"},
        {"{\"$defs\":{\"n\":{\"type\":\"integer\",\"minimum\":0}},\"type\":\"object\","
         "\"properties\":{\"a\":{\"$ref\":\"#/$defs/n\"}}}",
         "{\"a\":-1}", -1, "/a"},
        {"{\"$defs\":{\"n\":{\"type\":\"integer\"}},\"items\":{\"$ref\":\"#/$defs/n\"}}", "[1,2]",
         0, ""},
        {"{\"additionalProperties\":{\"type\":\"string\"}}", "{\"a\":\"x\",\"b\":2}", -1, "/b"},
        {"{\"properties\":{\"a~b/c\":{\"type\":\"string\"}}}", "{\"a~b/c\":1}", -1, "/a~0b~1c"},
        {"{\"pattern\":\"^[0-9]+$\"}", "\"12a\"", -1, "pattern"},
        {"{\"pattern\":\"b\"}", "\"abc\"", 0, ""}, /* unanchored like ECMA-262 */
        {"false", "1", -1, "no value is allowed"},
        {"true", "{\"x\":[1]}", 0, ""},
        /* schema errors: the subset never silently passes */
        {"{\"oneOf\":[{\"type\":\"string\"}]}", "\"x\"", -1, "unsupported keyword"},
        {"{\"properties\":{\"never\":{\"anyOf\":[]}}}", "{}", -1, "unsupported keyword"},
        {"{\"$ref\":\"other.json#/x\"}", "1", -1, "does not resolve"},
        {"{\"$ref\":\"#/$defs/missing\",\"$defs\":{}}", "1", -1, "does not resolve"},
        {"{\"pattern\":\"([a-z\"}", "\"a\"", -1, "does not compile"},
        {"{\"type\":\"float\"}", "1", -1, "unknown type"},
        {"{\"required\":\"a\"}", "{}", -1, "required must be"},
        {"{\"minLength\":-1}", "\"\"", -1, "non-negative"},
    };
    return cr_make_param_array(struct subset_case, cases, CQ_ARRAY_LEN(cases));
}

ParameterizedTest(struct subset_case *c, jsonschema, subset_keywords)
{
    json_error_t jerr;
    json_t *schema = json_loads(c->schema, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(schema, "%s: %s", c->schema, jerr.text);
    json_t *doc = json_loads(c->doc, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(doc, "%s: %s", c->doc, jerr.text);
    char err[512];
    int rc = cq_jsonschema_validate(schema, doc, err, sizeof(err));
    cr_assert_eq(rc, c->want, "%s against %s: rc %d (%s)", c->doc, c->schema, rc, err);
    if (c->want != 0) {
        cr_assert_not_null(strstr(err, c->want_in_err), "error \"%s\" lacks \"%s\"", err,
                           c->want_in_err);
    }
    json_decref(doc);
    json_decref(schema);
}

Test(jsonschema, json_pointer)
{
    json_t *doc = json_loads("{\"a\":{\"b/c\":[10,{\"d~e\":true}]},\"\":1}", 0, NULL);
    cr_assert_not_null(doc);
    cr_assert_eq(cq_jsonschema_pointer(doc, ""), doc);
    cr_assert_eq(json_integer_value(cq_jsonschema_pointer(doc, "/a/b~1c/0")), 10);
    cr_assert(json_is_true(cq_jsonschema_pointer(doc, "/a/b~1c/1/d~0e")));
    cr_assert_eq(json_integer_value(cq_jsonschema_pointer(doc, "/")), 1);
    cr_assert_null(cq_jsonschema_pointer(doc, "/a/b~1c/2"));
    cr_assert_null(cq_jsonschema_pointer(doc, "/a/b~1c/01"));
    cr_assert_null(cq_jsonschema_pointer(doc, "/nope"));
    cr_assert_null(cq_jsonschema_pointer(doc, "a"));
    cr_assert_null(cq_jsonschema_pointer(doc, "/a/~2"));
    json_decref(doc);
}

/* ---- over a socket
 * ------------------------------------------------------------------------------- */

struct http_result {
    long status;
    char body[8192];
    size_t body_len;
    char headers[4096];
    size_t headers_len;
};

static size_t collect_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct http_result *r = ud;
    size_t n = size * nmemb;
    size_t room = sizeof(r->body) - 1 - r->body_len;
    size_t take = n < room ? n : room;
    memcpy(r->body + r->body_len, ptr, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return n;
}

static size_t collect_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct http_result *r = ud;
    size_t n = size * nmemb;
    size_t room = sizeof(r->headers) - 1 - r->headers_len;
    size_t take = n < room ? n : room;
    memcpy(r->headers + r->headers_len, ptr, take);
    r->headers_len += take;
    r->headers[r->headers_len] = '\0';
    return n;
}

static const char *http_local_ip; /* NULL: the default source address */

struct upload {
    const char *p;
    size_t left;
};

static size_t feed_body(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct upload *u = ud;
    size_t room = size * nmemb;
    size_t n = u->left < room ? u->left : room;
    if (n > 512) {
        n = 512; /* several chunks */
    }
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

/* One request to http://<addr><path>. body != NULL sends it (POST unless
 * method says otherwise); chunked sends it without Content-Length. */
static CURLcode http(const char *addr, const char *method, const char *path, const char *authz,
                     const char *body, bool chunked, struct http_result *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[256], auth[256];
    snprintf(url, sizeof(url), "http://%s%s", addr, path);
    struct curl_slist *hdrs = NULL;
    if (authz != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: %s", authz);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (chunked) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (http_local_ip != NULL) {
        curl_easy_setopt(c, CURLOPT_INTERFACE, http_local_ip);
    }
    struct upload up = {body, body != NULL ? strlen(body) : 0};
    if (body != NULL && chunked) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, feed_body);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
    } else if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (method != NULL) {
        if (strcmp(method, "HEAD") == 0) {
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else {
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        }
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

static bool header_has(const struct http_result *r, const char *line)
{
    /* header names are case-insensitive; our values are exact */
    const char *colon = strchr(line, ':');
    size_t name_len = (size_t)(colon - line);
    for (const char *p = r->headers; *p != '\0';) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (len == strlen(line) && strncasecmp(p, line, name_len) == 0 &&
            strncmp(p + name_len, line + name_len, len - name_len) == 0) {
            return true;
        }
        if (eol == NULL) {
            break;
        }
        p = eol + 2;
    }
    return false;
}

struct ring_search {
    const char *needle1;
    const char *needle2;
    bool found;
};

static void ring_find(const char *line, void *ctx)
{
    struct ring_search *s = ctx;
    if (strstr(line, s->needle1) != NULL && strstr(line, s->needle2) != NULL) {
        s->found = true;
    }
}

static void start_or_fail(struct cq_api *a)
{
    struct cq_err err = {0};
    int rc = cq_api_start(a, &err);
    cr_assert_eq(rc, 0, "cq_api_start: %s (hint: %s)", err.message, err.hint);
}

Test(api, serves_over_loopback_and_writes_admin_addr)
{
    start_or_fail(api);
    const char *addr = cq_api_address(api);
    regex_t re;
    cr_assert_eq(regcomp(&re, "^127\\.0\\.0\\.1:[1-9][0-9]*$", REG_EXTENDED | REG_NOSUB), 0);
    cr_assert_eq(regexec(&re, addr, 0, NULL, 0), 0, "address %s", addr);
    regfree(&re);

    char path[600], *content = NULL, want[128];
    snprintf(path, sizeof(path), "%s/data/admin.addr", tmpdir);
    cr_assert_eq(cq_fs_read_file(path, 4096, &content, NULL, NULL), 0);
    snprintf(want, sizeof(want), "%s\n", addr);
    cr_assert_str_eq(content, want);
    free(content);

    struct ring_search s = {"\"event\":\"admin_listening\"", addr, false};
    cq_log_ring_foreach(ring_find, &s);
    cr_assert(s.found, "admin_listening with the address was not logged");

    struct http_result r;
    cr_assert_eq(http(addr, NULL, "/health", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(header_has(&r, "Cache-Control: no-store"), "%s", r.headers);
    cr_assert(header_has(&r, "Content-Type: application/json"), "%s", r.headers);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert_not_null(j, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), "paper");
    json_decref(j);

    cr_assert_eq(http(addr, NULL, "/health?verbose=1", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "the query string is not part of the path");

    cr_assert_eq(http(addr, NULL, "/config", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 401, "%s", r.body);
    cr_assert(header_has(&r, "WWW-Authenticate: Bearer realm=\"coinquant\""), "%s", r.headers);
    cr_assert(header_has(&r, "Cache-Control: no-store"), "%s", r.headers);
    cr_assert_not_null(strstr(r.body, "\"code\":\"unauthorized\""), "%s", r.body);

    cr_assert_eq(http(addr, NULL, "/config", "Bearer " TOKEN, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);

    cr_assert_eq(http(addr, "DELETE", "/health", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 405);
    cr_assert(header_has(&r, "Allow: GET, HEAD"), "%s", r.headers);

    cr_assert_eq(http(addr, "HEAD", "/readiness", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 503);
    cr_assert_eq(r.body_len, 0, "HEAD has no body");

    cr_assert_eq(http(addr, NULL, "/metrics", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    cr_assert(header_has(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"), "%s",
              r.headers);

    cq_api_stop(api);
    cr_assert_str_eq(cq_api_address(api), "");
    cq_api_stop(api); /* idempotent */
    cr_assert_neq(http(addr, NULL, "/health", NULL, NULL, false, &r), CURLE_OK,
                  "still serving after stop");
}

Test(api, oversized_bodies_get_413_over_the_wire)
{
    start_or_fail(api); /* max_body_bytes 1024 */
    const char *addr = cq_api_address(api);
    char big[4097];
    memset(big, 'x', 4096);
    big[4096] = '\0';
    struct http_result r;
    /* announced by Content-Length: refused before the body is read */
    cr_assert_eq(http(addr, "POST", "/config", "Bearer " TOKEN, big, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 413, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"code\":\"payload_too_large\""), "%s", r.body);
    /* chunked: counted as it arrives */
    cr_assert_eq(http(addr, "POST", "/health", NULL, big, true, &r), CURLE_OK);
    cr_assert_eq(r.status, 413, "%s", r.body);
    /* a small body is fine (and then the method decides) */
    cr_assert_eq(http(addr, "POST", "/health", NULL, "{}", false, &r), CURLE_OK);
    cr_assert_eq(r.status, 405, "%s", r.body);
    /* the server still answers afterwards */
    cr_assert_eq(http(addr, NULL, "/health", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    /* the shared body reader (cq/http_body.h) counted both refusals */
    struct cq_api_stats stats;
    cq_api_get_stats(api, &stats);
    cr_expect_eq(stats.bodies_refused, 2, "bodies_refused %llu",
                 (unsigned long long)stats.bodies_refused);
    cr_expect_eq(stats.bodies_dropped, 0);
}

/* The bound over the wire, with and without Content-Length: exactly
 * max_body_bytes (1024) passes to the router, one byte more is 413. */
Test(api, body_bound_is_exact_over_the_wire)
{
    start_or_fail(api); /* max_body_bytes 1024 */
    const char *addr = cq_api_address(api);
    char body[1026];
    struct http_result r;
    for (int chunked = 0; chunked <= 1; chunked++) {
        memset(body, 'x', 1024);
        body[1024] = '\0';
        cr_assert_eq(http(addr, "POST", "/health", NULL, body, chunked, &r), CURLE_OK);
        cr_expect_eq(r.status, 405, "1024 bytes (chunked %d): the method decides: %s", chunked,
                     r.body);
        body[1024] = 'x';
        body[1025] = '\0';
        cr_assert_eq(http(addr, "POST", "/health", NULL, body, chunked, &r), CURLE_OK);
        cr_expect_eq(r.status, 413, "1025 bytes (chunked %d): %s", chunked, r.body);
    }
    struct cq_api_stats stats;
    cq_api_get_stats(api, &stats);
    cr_expect_eq(stats.bodies_refused, 2);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(const char *addr)
{
    long port = strtol(strrchr(addr, ':') + 1, NULL, 10);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static void wait_open(const struct cq_api *a, uint64_t want)
{
    int64_t deadline = now_ms() + 5000;
    while (atomic_load(&a->connections_open) != want && now_ms() < deadline) {
        cq_time_sleep_ms(5);
    }
    cr_assert_eq(atomic_load(&a->connections_open), want, "open connections: %llu, want %llu",
                 (unsigned long long)atomic_load(&a->connections_open), (unsigned long long)want);
}

static void wait_closed_slow(const struct cq_api *a, uint64_t want)
{
    struct cq_api_stats st;
    int64_t deadline = now_ms() + 5000;
    do {
        cq_api_get_stats(a, &st);
        if (st.connections_closed_slow >= want) {
            break;
        }
        cq_time_sleep_ms(5);
    } while (now_ms() < deadline);
    cr_assert_eq(st.connections_closed_slow, want);
}

/* True when the server closed fd (EOF or reset) within timeout_ms. */
static bool closed_by_server(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1) {
        return false;
    }
    char buf[256];
    return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    cr_assert_eq(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len, "send: %s", strerror(errno));
}

/* Send `bytes` on a new connection and read until the server closes it or
 * timeout_ms pass. *closed: the server closed it. */
static size_t raw_exchange_n(const char *addr, const char *bytes, size_t len, char *out,
                             size_t out_size, int timeout_ms, bool *closed)
{
    int fd = connect_to(addr);
    cr_assert_eq(send(fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len, "send: %s", strerror(errno));
    size_t got = 0;
    *closed = false;
    int64_t deadline = now_ms() + timeout_ms;
    while (got + 1 < out_size) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) != 1) {
            break;
        }
        ssize_t n = recv(fd, out + got, out_size - 1 - got, 0);
        if (n <= 0) {
            *closed = true;
            break;
        }
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

static size_t raw_exchange(const char *addr, const char *bytes, char *out, size_t out_size,
                           int timeout_ms, bool *closed)
{
    return raw_exchange_n(addr, bytes, strlen(bytes), out, out_size, timeout_ms, closed);
}

/* Connections over the pool take the reserve; a reserve connection whose
 * head is incomplete is evicted by the next newcomer, and counted. */
Test(api, connections_over_the_pool_take_the_reserve_and_slow_ones_are_evicted)
{
    cq_api_free(api);
    struct cq_api_options lim = {.reserve_connections = 1};
    api = make_api_with(TOKEN, "127.0.0.1:0", 1024, 1, &lim);
    start_or_fail(api);
    const char *addr = cq_api_address(api);

    int first = connect_to(addr); /* the ordinary slot */
    wait_open(api, 1);
    int second = connect_to(addr); /* the reserve slot */
    wait_open(api, 2);
    int third = connect_to(addr); /* evicts the second */
    wait_closed_slow(api, 1);
    cr_assert(closed_by_server(second, 3000), "the evicted connection is still open");
    cr_assert(!closed_by_server(first, 100), "the ordinary connection was closed");
    close(second);
    close(third);
    close(first);
    wait_open(api, 0);

    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_eq(st.connections_rejected, 0);
    struct ring_search s = {"\"event\":\"api_slow_connection_closed\"", "\"reason\":\"evicted",
                            false};
    cq_log_ring_foreach(ring_find, &s);
    cr_assert(s.found, "no api_slow_connection_closed line for the eviction");
}

/* The reserve deadline at its boundary (fake clock): a reserve connection
 * is still open 1 ms before reserve_deadline_ms and closed at it, when the
 * next arrival sweeps. */
Test(api, reserve_connections_are_closed_exactly_at_their_deadline)
{
    cq_api_free(api);
    struct cq_api_options lim = {.reserve_connections = 2, .reserve_deadline_ms = 2000};
    api = make_api_with(TOKEN, "127.0.0.1:0", 1024, 1, &lim);
    start_or_fail(api);
    const char *addr = cq_api_address(api);
    int ordinary = connect_to(addr);
    wait_open(api, 1);
    int reserve = connect_to(addr);
    wait_open(api, 2);

    fake_clock_advance_ms(&fc, 1999);
    int third = connect_to(addr); /* sweeps; the second reserve slot is free */
    wait_open(api, 3);
    cr_assert(!closed_by_server(reserve, 100), "closed 1 ms before its deadline");

    fake_clock_advance_ms(&fc, 1);
    int fourth = connect_to(addr); /* sweeps: the first reserve connection is due */
    cr_assert(closed_by_server(reserve, 3000), "still open at its deadline");
    cr_assert(!closed_by_server(third, 100), "a younger reserve connection was closed");
    cr_assert(!closed_by_server(ordinary, 100), "the ordinary connection (5 s) was closed");
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_eq(st.connections_closed_slow, 1);
    struct ring_search s = {"\"event\":\"api_slow_connection_closed\"",
                            "\"reason\":\"the request head did not arrive within its deadline\"",
                            false};
    cq_log_ring_foreach(ring_find, &s);
    cr_assert(s.found, "no api_slow_connection_closed line naming the deadline");
    close(ordinary);
    close(reserve);
    close(third);
    close(fourth);
}

/* Issue 17.1: clients that send their request head slowly held every slot
 * and /health got resets for as long as they lasted. Pool of 4, 2 per peer,
 * 2 reserve slots; 8 slow clients from 127.0.0.1. /health is still
 * answered (a reserve slot), /config gets a fast 503 busy, another peer
 * (127.0.0.2) still gets an ordinary slot, and once the (fake) clock passes
 * the request deadline the slow clients are closed and /config is served. */
Test(api, slow_clients_cannot_keep_health_from_answering, .timeout = 60)
{
    cq_api_free(api);
    struct cq_api_options lim = {
        .request_deadline_ms = 5000, .reserve_connections = 2, .reserve_deadline_ms = 2000};
    api = make_api_with(TOKEN, "127.0.0.1:0", 1024, 4, &lim);
    publish_all(CQ_HEALTH_OK, true);
    start_or_fail(api);
    const char *addr = cq_api_address(api);

    enum { SLOW = 8 };
    int slow[SLOW];
    for (int i = 0; i < SLOW; i++) {
        slow[i] = connect_to(addr);
        send_all(slow[i], "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        /* one at a time: the order of arrival decides who is evicted */
        if (i < 4) {
            wait_open(api, (uint64_t)i + 1);
        } else {
            wait_closed_slow(api, (uint64_t)i - 3);
        }
    }
    wait_open(api, 4); /* 2 ordinary (the peer's share) + 2 reserve */
    for (int i = 0; i < SLOW; i++) {
        bool gone = closed_by_server(slow[i], i < 2 || i >= SLOW - 2 ? 50 : 3000);
        cr_assert_eq(gone, i >= 2 && i < SLOW - 2, "slow client %d: closed=%d", i, gone);
    }
    /* the slow clients keep sending header lines, slowly */
    send_all(slow[0], "X-Slow: 1\r\n");
    send_all(slow[1], "X-Slow: 1\r\n");

    struct http_result r;
    int64_t t0 = now_ms();
    cr_assert_eq(http(addr, NULL, "/health", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_lt(now_ms() - t0, 3000, "/health took %lld ms", (long long)(now_ms() - t0));
    cr_assert(header_has(&r, "Connection: close"), "%s", r.headers);

    t0 = now_ms();
    cr_assert_eq(http(addr, NULL, "/config", "Bearer " TOKEN, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"code\":\"busy\""), "%s", r.body);
    cr_assert(header_has(&r, "Retry-After: 1"), "%s", r.headers);
    cr_assert_lt(now_ms() - t0, 3000, "the 503 took %lld ms", (long long)(now_ms() - t0));

    /* another peer is not limited by 127.0.0.1's share */
    http_local_ip = "127.0.0.2";
    cr_assert_eq(http(addr, NULL, "/config", "Bearer " TOKEN, NULL, false, &r), CURLE_OK);
    http_local_ip = NULL;
    cr_assert_eq(r.status, 200, "%s", r.body);

    /* 1 ms before the deadline the slow clients still hold 127.0.0.1's
     * share; at the deadline they are closed at the next arrival */
    fake_clock_advance_ms(&fc, 4999);
    cr_assert_eq(http(addr, NULL, "/config", "Bearer " TOKEN, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert(!closed_by_server(slow[0], 50), "slow client 0 closed before its deadline");
    fake_clock_advance_ms(&fc, 1);
    cr_assert_eq(http(addr, NULL, "/config", "Bearer " TOKEN, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(closed_by_server(slow[0], 3000), "slow client 0 outlived its deadline");
    cr_assert(closed_by_server(slow[1], 3000), "slow client 1 outlived its deadline");
    for (int i = 0; i < SLOW; i++) {
        close(slow[i]);
    }
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_geq(st.connections_closed_slow, 4 + 2, "4 evicted, 2 past the deadline");
    cr_assert_eq(st.connections_rejected, 0);
    cq_api_get_stats(api, &st);
    struct cq_api_response resp; /* the router: no arrival, no sweep */
    request("GET", "/metrics", NULL, &resp);
    char line[96];
    snprintf(line, sizeof(line), "\ncoinquant_api_connections_closed_slow_total %llu\n",
             (unsigned long long)st.connections_closed_slow);
    cr_assert_not_null(strstr(resp.body, line), "no '%s' in /metrics", line + 1);
    cq_api_response_fini(&resp);
}

/* Issue 17.smaller: "/health%00xyz" was answered as /health (200). */
Test(api, nul_in_the_path_is_400_over_the_wire)
{
    publish_all(CQ_HEALTH_OK, true);
    start_or_fail(api);
    char out[4096];
    bool closed;
    raw_exchange(cq_api_address(api), "GET /health%00xyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", out,
                 sizeof(out), 3000, &closed);
    cr_assert_eq(strncmp(out, "HTTP/1.1 400", 12), 0, "%s", out);
    cr_assert_not_null(strstr(out, "NUL"), "%s", out);
    raw_exchange(cq_api_address(api), "GET /health?x=%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", out,
                 sizeof(out), 3000, &closed);
    cr_assert_eq(strncmp(out, "HTTP/1.1 200", 12), 0, "the query string is not the path: %s", out);
}

/* Issue 17.smaller: a NUL inside a header value cut it silently: a token
 * followed by NUL and junk was accepted. Now 400, wherever the header is;
 * requests with bare LF line ends (no NUL) are still answered. */
Test(api, nul_in_a_header_value_is_400_over_the_wire)
{
    publish_all(CQ_HEALTH_OK, true);
    start_or_fail(api);
    const char *addr = cq_api_address(api);
    static const char with_token[] = "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Authorization: Bearer " TOKEN "\0junk\r\nX-After: 1\r\n\r\n";
    static const char last[] = "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Authorization: Bearer " TOKEN "\0junk\r\n\r\n";
    static const char bare_lf[] = "GET /health HTTP/1.1\nHost: 127.0.0.1\nX-A: a\0b\nX-B: c\n\n";
    static const char bare_lf_last[] = "GET /health HTTP/1.1\nHost: 127.0.0.1\nX-A: a\0b\n\n";
    static const char empty_value[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-E: \0\r\n\r\n";
    struct {
        const char *bytes;
        size_t len;
        const char *want;
    } cases[] = {
        {with_token, sizeof(with_token) - 1, "HTTP/1.1 400"},
        {last, sizeof(last) - 1, "HTTP/1.1 400"},
        {bare_lf, sizeof(bare_lf) - 1, "HTTP/1.1 400"},
        {bare_lf_last, sizeof(bare_lf_last) - 1, "HTTP/1.1 400"},
        {empty_value, sizeof(empty_value) - 1, "HTTP/1.1 400"},
        /* no NUL: answered, whatever the line ends */
        {"GET /health HTTP/1.1\nHost: 127.0.0.1\nX-A: a\nX-B:\n\n", 0, "HTTP/1.1 200"},
        {"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:   \r\nX-B: b  \r\n\r\n", 0,
         "HTTP/1.1 200"},
        {"GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", 0,
         "HTTP/1.1 200"},
        {"GET /health HTTP/1.1\r\nHost: 127.0.0.1\nX-A: a\n\n", 0, "HTTP/1.1 200"},
        {"GET /health HTTP/1.1\nHost: 127.0.0.1\r\nX-A: a\r\n\r\n", 0, "HTTP/1.1 200"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(cases); i++) {
        char out[8192];
        bool closed;
        size_t len = cases[i].len > 0 ? cases[i].len : strlen(cases[i].bytes);
        raw_exchange_n(addr, cases[i].bytes, len, out, sizeof(out), 3000, &closed);
        cr_assert_eq(strncmp(out, cases[i].want, 12), 0, "case %zu: want %s, got: %.200s", i,
                     cases[i].want, out);
        if (strcmp(cases[i].want, "HTTP/1.1 400") == 0) {
            cr_assert_not_null(strstr(out, "NUL"), "case %zu: %s", i, out);
        }
    }
}

/* Issue 17.smaller: "Transfer-Encoding: gzip" without chunked left the
 * request waiting for the idle timeout (5 s here). */
Test(api, transfer_encoding_other_than_chunked_is_400_and_closed)
{
    start_or_fail(api);
    char out[4096];
    bool closed;
    int64_t t0 = now_ms();
    raw_exchange(cq_api_address(api),
                 "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", out,
                 sizeof(out), 4000, &closed);
    cr_assert_eq(strncmp(out, "HTTP/1.1 400", 12), 0, "%s", out);
    cr_assert_not_null(strstr(out, "Transfer-Encoding"), "%s", out);
    cr_assert(closed, "the connection was left open");
    cr_assert_lt(now_ms() - t0, 3000);
    /* chunked still works (413 over the limit is in oversized_bodies_...) */
    struct http_result r;
    cr_assert_eq(http(cq_api_address(api), "POST", "/health", NULL, "{}", true, &r), CURLE_OK);
    cr_assert_eq(r.status, 405, "%s", r.body);
}

Test(api, foreign_host_is_421_over_the_wire)
{
    start_or_fail(api);
    char out[4096];
    bool closed;
    raw_exchange(cq_api_address(api),
                 "GET /metrics HTTP/1.1\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n",
                 out, sizeof(out), 3000, &closed);
    cr_assert_eq(strncmp(out, "HTTP/1.1 421", 12), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"code\":\"misdirected_request\""), "%s", out);
}

/* Issue 17.9: every malformed request wrote a warn line from
 * libmicrohttpd, without a limit. Now: at most the burst (5 per minute),
 * the suppressed count in the next allowed line, and a counter. */
Test(api, mhd_errors_are_rate_limited_and_counted)
{
    start_or_fail(api);
    char out[4096];
    bool closed;
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        raw_exchange(cq_api_address(api),
                     "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", out,
                     sizeof(out), 3000, &closed);
        cr_assert_eq(strncmp(out, "HTTP/1.1 400", 12), 0, "%s", out);
    }
    struct cq_api_stats st;
    cq_api_get_stats(api, &st);
    cr_assert_geq(st.mhd_errors, N);
    size_t lines = ring_lines_with("\"event\":\"mhd_error\"", NULL);
    cr_assert_leq(lines, 5, "%zu mhd_error lines for %d malformed requests", lines, N);
    cr_assert_geq(lines, 1);
    /* the window passes: the next line reports what was suppressed */
    fake_clock_advance_ms(&fc, 60000);
    raw_exchange(cq_api_address(api),
                 "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", out,
                 sizeof(out), 3000, &closed);
    char needle[64];
    snprintf(needle, sizeof(needle), "\"suppressed\":%llu",
             (unsigned long long)(st.mhd_errors - lines));
    cr_assert_eq(ring_lines_with("\"event\":\"mhd_error\"", needle), 1,
                 "no line reports the %llu suppressed ones",
                 (unsigned long long)(st.mhd_errors - lines));
    /* and /metrics shows the counter */
    cq_api_get_stats(api, &st);
    struct cq_api_response resp;
    request("GET", "/metrics", NULL, &resp);
    snprintf(needle, sizeof(needle), "\ncoinquant_api_mhd_errors_total %llu\n",
             (unsigned long long)st.mhd_errors);
    cr_assert_not_null(strstr(resp.body, needle), "no '%s' in /metrics", needle + 1);
    cq_api_response_fini(&resp);
}

struct bind_case {
    char bind[64];
    char want_addr_prefix[32];
};

ParameterizedTestParameters(api, binds_ipv4_ipv6_and_localhost)
{
    static struct bind_case cases[] = {
        {"localhost:0", "127.0.0.1:"},
        {"127.0.0.1:0", "127.0.0.1:"},
        {"[::1]:0", "[::1]:"},
    };
    return cr_make_param_array(struct bind_case, cases, CQ_ARRAY_LEN(cases));
}

ParameterizedTest(struct bind_case *c, api, binds_ipv4_ipv6_and_localhost)
{
    cq_api_free(api);
    api = make_api(TOKEN, c->bind, 1024, 8);
    struct cq_err err = {0};
    int rc = cq_api_start(api, &err);
    if (rc < 0 && strchr(c->bind, '[') != NULL &&
        (err.sys_errno == EADDRNOTAVAIL || err.sys_errno == EAFNOSUPPORT)) {
        cr_skip_test("no IPv6 loopback here: %s", err.message);
    }
    cr_assert_eq(rc, 0, "%s: %s", c->bind, err.message);
    const char *addr = cq_api_address(api);
    cr_assert_eq(strncmp(addr, c->want_addr_prefix, strlen(c->want_addr_prefix)), 0, "%s -> %s",
                 c->bind, addr);
    cr_assert_gt(strtol(addr + strlen(c->want_addr_prefix), NULL, 10), 0);
    struct http_result r;
    cr_assert_eq(http(addr, NULL, "/readiness", NULL, NULL, false, &r), CURLE_OK);
    cr_assert_eq(r.status, 503);
}

Test(api, bind_failures_are_clear)
{
    struct cq_err err = {0};
    /* 192.0.2.1 (TEST-NET-1) is no address of this machine */
    cq_api_free(api);
    api = make_api(TOKEN, "192.0.2.1:0", 1024, 8);
    cr_assert_lt(cq_api_start(api, &err), 0);
    cr_assert_eq(err.sys_errno, EADDRNOTAVAIL, "%s", err.message);
    cr_assert_not_null(strstr(err.message, "192.0.2.1"), "%s", err.message);
    cr_assert_not_null(strstr(err.hint, "CQ_ADMIN_BIND"), "%s", err.hint);
    cr_assert_str_eq(cq_api_address(api), "");

    /* port in use */
    struct cq_api *first = make_api(TOKEN, "127.0.0.1:0", 1024, 8);
    start_or_fail(first);
    cq_api_free(api);
    api = make_api(TOKEN, cq_api_address(first), 1024, 8);
    memset(&err, 0, sizeof(err));
    cr_assert_lt(cq_api_start(api, &err), 0);
    cr_assert_eq(err.sys_errno, EADDRINUSE, "%s", err.message);
    cr_assert_not_null(strstr(err.message, cq_api_address(first)), "%s", err.message);
    cr_assert_not_null(strstr(err.hint, "another process uses port"), "%s", err.hint);
    cr_assert_not_null(strstr(err.hint, ":0"), "%s", err.hint);
    cq_api_free(first);

    /* not an IP address (no DNS lookups here) */
    cq_api_free(api);
    api = make_api(TOKEN, "example.com:8080", 1024, 8);
    memset(&err, 0, sizeof(err));
    cr_assert_eq(cq_api_start(api, &err), -CQ_ECONFIG);
    cr_assert_not_null(strstr(err.message, "example.com"), "%s", err.message);

    /* non-loopback without a token */
    cq_api_free(api);
    api = make_api("", "0.0.0.0:0", 1024, 8);
    memset(&err, 0, sizeof(err));
    cr_assert_eq(cq_api_start(api, &err), -CQ_EPERM);
    cr_assert_not_null(strstr(err.hint, "CQ_ADMIN_TOKEN"), "%s", err.hint);

    /* a malformed bind is refused already by cq_api_new */
    struct cq_api_options o = {.board = board, .config = current, .bind = "nonsense"};
    memset(&err, 0, sizeof(err));
    cr_assert_null(cq_api_new(&o, &err));
    cr_assert_neq(err.message[0], '\0');
}

/* ---- the admin token file ----------------------------------------------------------------------
 */

static void token_path(char *path, size_t len)
{
    snprintf(path, len, "%s/data/admin.token", tmpdir);
}

static void write_file(const char *path, const char *content, size_t len, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(content, 1, len, f), len);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

Test(api, token_is_created_0600_then_reused)
{
    char data_dir[512], path[600], tok[128], tok2[128];
    snprintf(data_dir, sizeof(data_dir), "%s/data/fresh", tmpdir);
    snprintf(path, sizeof(path), "%s/admin.token", data_dir);
    bool created = false;
    struct cq_err err = {0};
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), &created, &err), 0, "%s",
                 err.message);
    cr_assert(created);
    cr_assert_eq(strlen(tok), 64);
    cr_assert_eq(strspn(tok, "0123456789abcdef"), 64);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    char *content = NULL;
    cr_assert_eq(cq_fs_read_file(path, 4096, &content, NULL, NULL), 0);
    cr_assert_eq(strlen(content), 65);
    cr_assert_eq(strncmp(content, tok, 64), 0);
    cr_assert_eq(content[64], '\n');
    free(content);

    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok2, sizeof(tok2), &created, &err), 0);
    cr_assert(!created);
    cr_assert_str_eq(tok2, tok);

    /* a new file gets a different token */
    unlink(path);
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok2, sizeof(tok2), &created, &err), 0);
    cr_assert(created);
    cr_assert_str_neq(tok2, tok);
}

Test(api, token_file_readable_by_others_is_refused)
{
    char data_dir[512], path[600], tok[128];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    token_path(path, sizeof(path));
    static const char content[] = "my-own-token-0123456789\n";
    static const mode_t modes[] = {0644, 0640, 0604, 0660};
    for (size_t i = 0; i < CQ_ARRAY_LEN(modes); i++) {
        write_file(path, content, strlen(content), modes[i]);
        struct cq_err err = {0};
        cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), NULL, &err), -CQ_EPERM,
                     "mode %o", modes[i]);
        cr_assert_not_null(strstr(err.hint, "chmod 600"), "%s", err.hint);
        cr_assert_not_null(strstr(err.hint, "admin.token"), "%s", err.hint);
        cr_assert_null(strstr(err.message, "my-own-token"), "the token leaked: %s", err.message);
    }
    /* an owner-only, hand-written token is accepted, whitespace trimmed */
    write_file(path, content, strlen(content), 0600);
    bool created = true;
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), &created, NULL), 0);
    cr_assert(!created);
    cr_assert_str_eq(tok, "my-own-token-0123456789");
    /* 0400 is fine too */
    cr_assert_eq(chmod(path, 0400), 0);
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), NULL, NULL), 0);
}

struct bad_token_case {
    char content[48];
    size_t len;
};

ParameterizedTestParameters(api, token_file_garbage_is_refused)
{
    static struct bad_token_case cases[] = {
        {"", 0},
        {"\n\n  \n", 5},
        {"short\n", 6},
        {"two tokens 0123456789 abcdef\n", 29},
        {"bin\x01\x02\x03ary-0123456789abcdef", 26},
        {"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef", 17},
        {"nul\0inside-0123456789abcdef", 27},
    };
    return cr_make_param_array(struct bad_token_case, cases, CQ_ARRAY_LEN(cases));
}

ParameterizedTest(struct bad_token_case *c, api, token_file_garbage_is_refused)
{
    char data_dir[512], path[600], tok[128];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    token_path(path, sizeof(path));
    write_file(path, c->content, c->len, 0600);
    struct cq_err err = {0};
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), NULL, &err), -CQ_EPARSE,
                 "%s", err.message);
    cr_assert_not_null(strstr(err.message, "admin.token"), "%s", err.message);
    cr_assert_not_null(strstr(err.hint, "delete"), "%s", err.hint);
    cr_assert_eq(tok[0], '\0');
}

Test(api, token_through_a_symlink_or_in_a_small_buffer_is_refused)
{
    char data_dir[512], path[600], target[600], tok[128];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    token_path(path, sizeof(path));
    snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
    write_file(target, "abcdefghijklmnopqrstuvwxyz\n", 27, 0600);
    cr_assert_eq(symlink(target, path), 0);
    struct cq_err err = {0};
    cr_assert_eq(cq_api_token_load_or_create(data_dir, tok, sizeof(tok), NULL, &err), -CQ_EPERM);
    cr_assert_not_null(strstr(err.message, "symbolic link"), "%s", err.message);
    unlink(path);

    char small[32];
    cr_assert_lt(cq_api_token_load_or_create(data_dir, small, sizeof(small), NULL, &err), 0);
    cr_assert_neq(err.message[0], '\0');
}

/* ---- the trader's operator surface (/api/v1, issue 11) ----------------------------------- */

struct fake_trader {
    bool built;
    unsigned queued, capacity;
    char last_cmd[32], last_symbol[32];
};
static struct fake_trader ft;

static json_t *fake_view(void *ctx, const char *what)
{
    struct fake_trader *f = ctx;
    if (!f->built) {
        return NULL;
    }
    return strcmp(what, "risk") == 0 ? json_pack("{s:s}", "reason", "ok")
                                     : json_pack("[{s:s}]", "symbol", "BTCUSDT");
}

static int fake_command(void *ctx, const char *cmd, const char *symbol)
{
    struct fake_trader *f = ctx;
    if (!f->built) {
        return -CQ_EAGAIN;
    }
    if (symbol != NULL && (symbol[0] < 'A' || symbol[0] > 'Z')) {
        return -CQ_EINVAL;
    }
    if (f->queued == f->capacity) {
        return -CQ_EFULL;
    }
    f->queued++;
    cq_strlcpy(f->last_cmd, cmd, sizeof(f->last_cmd));
    cq_strlcpy(f->last_symbol, symbol != NULL ? symbol : "", sizeof(f->last_symbol));
    return 0;
}

static struct cq_api *make_trader_api(void)
{
    struct cq_api_options o = {
        .board = board,
        .config = current,
        .clock = &clk,
        .version = VERSION,
        .token = TOKEN,
        .bind = NULL,
        .max_connections = 8,
        .timeout_s = 5,
        .max_body_bytes = 1024,
        .trader_view = fake_view,
        .trader_command = fake_command,
        .trader_ctx = &ft,
    };
    struct cq_err err = {0};
    struct cq_api *a = cq_api_new(&o, &err);
    cr_assert_not_null(a, "%s", err.message);
    return a;
}

Test(api, trader_views_and_commands_need_the_token_and_answer_in_shape)
{
    memset(&ft, 0, sizeof(ft));
    ft.capacity = 2;
    cq_api_free(api);
    api = make_trader_api();
    struct cq_api_response resp;
    static const char *const paths[][2] = {
        {"GET", "/api/v1/positions"},      {"GET", "/api/v1/orders"},
        {"GET", "/api/v1/risk"},           {"POST", "/api/v1/trader/pause"},
        {"POST", "/api/v1/trader/resume"}, {"POST", "/api/v1/trader/kill"},
        {"POST", "/api/v1/trader/unkill"}, {"DELETE", "/api/v1/quarantine/BTCUSDT"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(paths); i++) {
        request(paths[i][0], paths[i][1], NULL, &resp);
        assert_error(&resp, 401, "unauthorized");
        cq_api_response_fini(&resp);
        /* before the trader is built: 503 not_ready with Retry-After */
        request(paths[i][0], paths[i][1], "Bearer " TOKEN, &resp);
        assert_error(&resp, 503, "not_ready");
        cr_expect_gt(resp.retry_after_s, 0);
        cq_api_response_fini(&resp);
    }
    ft.built = true;
    request("GET", "/api/v1/orders", "Bearer " TOKEN, &resp);
    cr_expect_eq(resp.status, 200);
    json_t *b = body_json(&resp);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(b, "orders"), 0), "symbol")),
                     "BTCUSDT");
    json_decref(b);
    cq_api_response_fini(&resp);
    request("GET", "/api/v1/risk", "Bearer " TOKEN, &resp);
    cr_expect_eq(resp.status, 200);
    cr_expect_not_null(strstr(resp.body, "\"risk\":{\"reason\":\"ok\"}"), "%s", resp.body);
    cq_api_response_fini(&resp);

    request("POST", "/api/v1/trader/pause", "Bearer " TOKEN, &resp);
    cr_expect_eq(resp.status, 202);
    cr_expect_str_eq(ft.last_cmd, "pause");
    cq_api_response_fini(&resp);
    request("DELETE", "/api/v1/quarantine/ETHUSDT", "Bearer " TOKEN, &resp);
    cr_expect_eq(resp.status, 202);
    cr_expect_str_eq(ft.last_cmd, "clear_quarantine");
    cr_expect_str_eq(ft.last_symbol, "ETHUSDT");
    cq_api_response_fini(&resp);
    /* the bounded queue is full: 503 busy with Retry-After, nothing queued */
    request("POST", "/api/v1/trader/kill", "Bearer " TOKEN, &resp);
    assert_error(&resp, 503, "busy");
    cr_expect_gt(resp.retry_after_s, 0);
    cr_expect_eq(ft.queued, 2);
    cq_api_response_fini(&resp);
    ft.capacity = 10;
    request("DELETE", "/api/v1/quarantine/btc", "Bearer " TOKEN, &resp);
    assert_error(&resp, 400, "bad_request");
    cq_api_response_fini(&resp);
    /* the symbol is one segment, never empty */
    request("DELETE", "/api/v1/quarantine/", "Bearer " TOKEN, &resp);
    assert_error(&resp, 404, "not_found");
    cq_api_response_fini(&resp);
    request("DELETE", "/api/v1/quarantine/BTC/USDT", "Bearer " TOKEN, &resp);
    assert_error(&resp, 404, "not_found");
    cq_api_response_fini(&resp);
    request("GET", "/api/v1/quarantine/BTCUSDT", "Bearer " TOKEN, &resp);
    assert_error(&resp, 405, "method_not_allowed");
    cr_expect_str_eq(resp.allow, "DELETE");
    cq_api_response_fini(&resp);
    request("GET", "/api/v1/trader/pause", "Bearer " TOKEN, &resp);
    assert_error(&resp, 405, "method_not_allowed");
    cq_api_response_fini(&resp);
}
