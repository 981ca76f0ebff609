/*
 * test_fidelity_wsapi.c — rules of Binance's WebSocket API documentation
 * (binance-spot-api-docs web-socket-api.md), each quoted, checked against a
 * running coinquant-simex over its real sockets.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cq/common.h"
#include "cq/log.h"
#include "cq/sim.h"
#include "support/ws_tclient.h"

#define WAIT_MS 10000

/* web-socket-api.md "SIGNED request example (HMAC)": the documentation's
 * own key pair, request and signature. */
#define DOC_API_KEY "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
#define DOC_SECRET "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
#define DOC_TIMESTAMP 1645423376532LL
#define DOC_RECV_WINDOW_MS 100
#define DOC_SIGNATURE "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"

static struct cq_sim *g_sim;
static char g_rest[128];
static int g_ws_port;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_doc_sim(void)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_sim_balance balances[2];
    size_t n_balances = 0;
    struct cq_err err;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cq_log_set_level(CQ_LOG_ERROR);
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=1", balances, 2, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = 1,
        .speed = 1,
        .seed = 7,
        .balances = balances,
        .n_balances = n_balances,
        .api_key = DOC_API_KEY,
        .api_secret = DOC_SECRET,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    cq_strlcpy(g_rest, cq_sim_rest_url(g_sim), sizeof g_rest);
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon);
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
}

static void stop_sim(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
    curl_global_cleanup();
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    CQ_UNUSED(p);
    CQ_UNUSED(ud);
    return size * n;
}

/* POST /_sim/clock/skew: server time = wall + ms. */
static void set_skew(int64_t ms)
{
    char url[256];
    snprintf(url, sizeof url, "%s/_sim/clock/skew?ms=%" PRId64, g_rest, ms);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    cr_assert_eq(status, 200, "clock skew: HTTP %ld", status);
}

/*
 * web-socket-api.md "SIGNED request example (HMAC)", Step 1: "Take all
 * request params except signature and sort them in alphabetical order by
 * parameter name"; "Format parameters as parameter=value pairs separated by
 * &"; Step 2: HMAC-SHA-256 with the secretKey, hex. The documentation's own
 * params (its order.place example, timestamp 1645423376532, recvWindow 100)
 * and its signature aa1b5712… must be accepted by
 * userDataStream.subscribe.signature, which signs the same way. The server
 * clock is moved back to the documented timestamp; with a 100 ms window a
 * slow machine may see -1021 on an attempt (then it retries), never -1022.
 */
/* Send the documented request with `signature` until the 100 ms window
 * lets it through (20 attempts); every refusal must be -1021. */
static void expect_doc_request_accepted(const char *signature)
{
    struct tclient *tc = tc_open(g_ws_port, "/ws-api/v3");
    cr_assert(tc_wait_established(tc, WAIT_MS));
    size_t cursor = 0;
    char req[1024];
    snprintf(req, sizeof req,
             "{\"id\":\"4885f793-e5ad-4c3b-8f6c-55d891472b71\","
             "\"method\":\"userDataStream.subscribe.signature\",\"params\":{"
             "\"symbol\":\"BTCUSDT\",\"side\":\"SELL\",\"type\":\"LIMIT\","
             "\"timeInForce\":\"GTC\",\"quantity\":\"0.01000000\",\"price\":\"52000.00\","
             "\"recvWindow\":%d,\"timestamp\":%lld,\"apiKey\":\"" DOC_API_KEY "\","
             "\"signature\":\"%s\"}}",
             DOC_RECV_WINDOW_MS, DOC_TIMESTAMP, signature);
    bool accepted = false;
    for (int attempt = 0; attempt < 20 && !accepted; attempt++) {
        /* server time = the documented timestamp + 20 ms when the skew is set */
        set_skew(DOC_TIMESTAMP + 20 - wall_ms());
        json_t *r = tc_request(tc, &cursor, req);
        char *text = json_dumps(r, JSON_COMPACT);
        if (json_integer_value(json_object_get(r, "status")) == 200) {
            cr_expect_eq(
                json_integer_value(json_object_get(json_object_get(r, "result"), "subscriptionId")),
                0, "%s", text);
            accepted = true;
        } else {
            cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "error"), "code")),
                         -1021, "only the 100 ms window may refuse it: %s", text);
        }
        free(text);
        json_decref(r);
    }
    cr_assert(accepted, "signature %s was never accepted", signature);
    tc_free(tc);
}

Test(fidelity_wsapi, documented_hmac_example_is_accepted, .init = start_doc_sim, .fini = stop_sim,
     .timeout = 60)
{
    expect_doc_request_accepted(DOC_SIGNATURE);
}

/* web-socket-api.md "Signature Case Sensitivity": "HMAC: Signatures
 * generated using HMAC are not case-sensitive." */
Test(fidelity_wsapi, hmac_signature_is_case_insensitive, .init = start_doc_sim, .fini = stop_sim,
     .timeout = 60)
{
    char upper[] = DOC_SIGNATURE;
    for (char *p = upper; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    expect_doc_request_accepted(upper);
}
