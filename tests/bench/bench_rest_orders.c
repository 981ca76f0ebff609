/*
 * bench_rest_orders.c — signed order round trips per second over loopback
 * against coinquant-simex's REST server, twice: through our REST client
 * (include/cq/rest.h, what the trader uses) and through a bare libcurl
 * loop (what the simulator alone can take).
 *
 * Starts the simulator in-process (ephemeral loopback ports, synthetic
 * market, order limits raised so the rate limiter never interferes), then
 * per run N orders, MARKET BUY and SELL of 0.001 BTC alternating,
 * newOrderRespType=RESULT; every answer must be HTTP 200 with status
 * FILLED (the run aborts otherwise).
 *
 *   rest_client_signed_orders     cq_rest_order_send(..., CQ_SEC_SIGNED,
 *                                 ...): params, timestamp from
 *                                 the synced offset, HMAC, budget headers,
 *                                 response parsing, and a fresh TCP
 *                                 connection per order (CURLOPT_FRESH_CONNECT:
 *                                 the never-resend guarantee's price, see
 *                                 rest_client.c). The figure the trader gets.
 *   (A kept-alive variant through the client is gone: it sent orders
 *   marked "safe", which cq_rest_call now refuses, issue 10.)
 *   simex_signed_orders_raw_curl  the same orders, signed with the same code,
 *                                 sent by a bare libcurl loop on one
 *                                 keep-alive connection, answer matched with
 *                                 strstr: the simulator's side of the cost,
 *                                 and the ceiling for any client.
 * Each prints the median of 5 runs as one JSON line; the client's line
 * carries its ratio to the raw loop (runs alternate, same simulator).
 *
 * Usage: bench_rest_orders [orders per run]   (default 5000)
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/decimal.h"
#include "cq/rest.h"
#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"

#define RUNS 5

struct body {
    char data[8192];
    size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    size_t room = sizeof(b->data) - 1 - b->len;
    size_t take = n < room ? n : room;
    memcpy(b->data + b->len, ptr, take);
    b->len += take;
    b->data[b->len] = '\0';
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double run(CURL *curl, const char *url, size_t orders)
{
    const char *secret = CQ_SIM_DEFAULT_API_SECRET;
    struct curl_slist *headers = curl_slist_append(NULL, "X-MBX-APIKEY: " CQ_SIM_DEFAULT_API_KEY);
    struct body b;
    char query[512], full[1024], sig[CQ_SIGN_HEX_LEN + 1];
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);

    double t0 = now_s();
    for (size_t i = 0; i < orders; i++) {
        /* bounded: a fixed text, a 4-byte side and a 20-digit time in 512 */
        snprintf(query, sizeof(query),
                 "symbol=BTCUSDT&side=%s&type=MARKET&quantity=0.001&newOrderRespType=RESULT"
                 "&recvWindow=5000&timestamp=%lld",
                 (i % 2) == 0 ? "BUY" : "SELL", wall_ms());
        if (cq_sign_hmac_sha256_hex(secret, strlen(secret), query, strlen(query), NULL, 0, sig) <
            0) {
            fprintf(stderr, "bench_rest_orders: signing failed\n");
            exit(1);
        }
        int n = snprintf(full, sizeof(full), "%s/api/v3/order?%s&signature=%s", url, query, sig);
        if (n < 0 || (size_t)n >= sizeof(full)) {
            fprintf(stderr, "bench_rest_orders: URL longer than %zu bytes\n", sizeof(full));
            exit(1);
        }
        curl_easy_setopt(curl, CURLOPT_URL, full);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
        b.len = 0;
        b.data[0] = '\0';
        CURLcode rc = curl_easy_perform(curl);
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200 || strstr(b.data, "\"status\":\"FILLED\"") == NULL) {
            fprintf(stderr, "bench_rest_orders: order %zu failed: curl %d, HTTP %ld: %s\n", i,
                    (int)rc, status, b.data);
            exit(1);
        }
    }
    double secs = now_s() - t0;
    curl_slist_free_all(headers);
    return secs;
}

/* The same orders through our REST client's order door (a fresh
 * connection each, as the trader sends them). */
static double run_client(struct cq_rest_client *c, size_t orders)
{
    cq_dec qty;
    if (cq_dec_parse("0.001", 5, &qty) < 0) {
        exit(1);
    }
    double t0 = now_s();
    for (size_t i = 0; i < orders; i++) {
        struct cq_rest_params p;
        cq_rest_params_init(&p);
        cq_rest_params_add(&p, "symbol", "BTCUSDT");
        cq_rest_params_add(&p, "side", (i % 2) == 0 ? "BUY" : "SELL");
        cq_rest_params_add(&p, "type", "MARKET");
        cq_rest_params_add_dec(&p, "quantity", qty);
        cq_rest_params_add(&p, "newOrderRespType", "RESULT");
        struct cq_rest_response r;
        memset(&r, 0, sizeof(r));
        int rc = cq_rest_order_send(c, "POST", "/api/v3/order", &p, CQ_SEC_SIGNED, 1, &r);
        const char *status = json_string_value(json_object_get(r.body, "status"));
        if (rc < 0 || r.status != CQ_REST_OK || status == NULL || strcmp(status, "FILLED") != 0) {
            fprintf(stderr, "bench_rest_orders: client order %zu failed: %s, HTTP %d, %d %s\n", i,
                    rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), r.http_status, r.code,
                    r.msg);
            exit(1);
        }
        cq_rest_response_fini(&r);
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    size_t orders = 5000;
    if (argc > 1) {
        char *end = NULL;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || v == 0 || v > 10000000ULL) {
            fprintf(stderr, "usage: %s [orders per run (1..10000000)]\n", argv[0]);
            return 2;
        }
        orders = (size_t)v;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = true,
                                .level = CQ_LOG_WARN,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 0,
                                .clock = NULL};
    struct cq_err err;
    if (cq_log_open(&lo, &err) < 0) {
        return 1;
    }
    const char *symbols[] = {"BTCUSDT"};
    struct cq_sim_balance balances[2];
    size_t nb = 0;
    if (cq_sim_parse_balances("USDT=100000000,BTC=1000", balances, 2, &nb, &err) < 0) {
        return 1;
    }
    struct cq_sim_options so = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = 1,
        .speed = 1,
        .seed = 42,
        .balances = balances,
        .n_balances = nb,
        .maker_bps = 10,
        .taker_bps = 10,
        .weight_limit_1m = 1000000,
        .order_limit_10s = 1000000,
        .order_limit_1d = 100000000,
    };
    struct cq_sim *sim = cq_sim_new(&so, &err);
    if (sim == NULL || cq_sim_start(sim, &err) < 0) {
        fprintf(stderr, "bench_rest_orders: simulator: %s\n", err.message);
        return 1;
    }
    CURL *curl = curl_easy_init();
    struct cq_rest_options ro = {
        .base_url = cq_sim_rest_url(sim),
        .api_key = CQ_SIM_DEFAULT_API_KEY,
        .api_secret = CQ_SIM_DEFAULT_API_SECRET,
        .service = "bench",
        .weight_limit_1m = 1000000,
        .order_limit_10s = 1000000,
    };
    struct cq_rest_client *client = cq_rest_client_new(&ro, &err);
    if (client == NULL) {
        fprintf(stderr, "bench_rest_orders: REST client: %s\n", err.message);
        return 1;
    }
    double raw[RUNS], via[RUNS];
    for (int r = 0; r < RUNS; r++) { /* alternate, so drift hits all alike */
        via[r] = run_client(client, orders);
        raw[r] = run(curl, cq_sim_rest_url(sim), orders);
    }
    qsort(raw, RUNS, sizeof(raw[0]), cmp_double);
    qsort(via, RUNS, sizeof(via[0]), cmp_double);
    double raw_median = raw[RUNS / 2];
    double via_median = via[RUNS / 2];
    printf("{\"bench\":\"rest_client_signed_orders\",\"orders\":%zu,\"seconds\":%.3f,"
           "\"orders_per_s\":%.0f,\"us_per_order\":%.1f,\"fresh_connection_per_order\":true,"
           "\"ratio_to_raw_curl\":%.2f,\"median_of\":%d}\n",
           orders, via_median, (double)orders / via_median, via_median * 1e6 / (double)orders,
           raw_median / via_median, RUNS);
    printf("{\"bench\":\"simex_signed_orders_raw_curl\",\"orders\":%zu,\"seconds\":%.3f,"
           "\"orders_per_s\":%.0f,\"us_per_order\":%.1f,\"keep_alive\":true,"
           "\"median_of\":%d}\n",
           orders, raw_median, (double)orders / raw_median, raw_median * 1e6 / (double)orders,
           RUNS);
    fprintf(stderr, "bench_rest_orders: runs: client %.3f..%.3f s, raw curl %.3f..%.3f s\n", via[0],
            via[RUNS - 1], raw[0], raw[RUNS - 1]);
    cq_rest_client_free(client);
    curl_easy_cleanup(curl);
    cq_sim_free(sim);
    cq_log_close();
    curl_global_cleanup();
    return 0;
}
