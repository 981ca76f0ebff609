/*
 * bench_rest_orders.c — signed order round-trips per second over loopback
 * against coinquant-simex's REST server.
 *
 * Starts the simulator in-process (ephemeral loopback ports, synthetic
 * market, order limits raised so the rate limiter never interferes), then
 * sends N signed POST /api/v3/order requests over one keep-alive libcurl
 * connection: MARKET BUY and SELL of 0.001 BTC alternating, each with a fresh
 * timestamp and HMAC-SHA256 signature (our own client-side signing code),
 * newOrderRespType=RESULT. Every answer must be HTTP 200 with status FILLED
 * (the run aborts otherwise). Prints the median of 5 runs as one JSON line.
 *
 * Usage: bench_rest_orders [orders per run]   (default 5000)
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    struct curl_slist *headers =
        curl_slist_append(NULL, "X-MBX-APIKEY: " CQ_SIM_DEFAULT_API_KEY);
    struct body b;
    char query[512], full[1024], sig[CQ_SIGN_HEX_LEN + 1];
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);

    double t0 = now_s();
    for (size_t i = 0; i < orders; i++) {
        snprintf(query, sizeof(query),
                 "symbol=BTCUSDT&side=%s&type=MARKET&quantity=0.001&newOrderRespType=RESULT"
                 "&recvWindow=5000&timestamp=%lld",
                 (i % 2) == 0 ? "BUY" : "SELL", wall_ms());
        if (cq_sign_hmac_sha256_hex(secret, strlen(secret), query, strlen(query), NULL, 0, sig) <
            0) {
            fprintf(stderr, "bench_rest_orders: signing failed\n");
            exit(1);
        }
        snprintf(full, sizeof(full), "%s/api/v3/order?%s&signature=%s", url, query, sig);
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
    struct cq_log_options lo = {.dir = NULL, .to_stderr = true, .level = CQ_LOG_WARN,
                                .max_bytes = 1 << 20, .keep = 1, .ring_lines = 0, .clock = NULL};
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
    double secs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        secs[r] = run(curl, cq_sim_rest_url(sim), orders);
    }
    qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
    double median = secs[RUNS / 2];
    printf("{\"bench\":\"simex_signed_orders_loopback\",\"orders\":%zu,\"seconds\":%.3f,"
           "\"orders_per_s\":%.0f,\"median_of\":%d}\n",
           orders, median, (double)orders / median, RUNS);
    fprintf(stderr, "bench_rest_orders: runs %.3f..%.3f s\n", secs[0], secs[RUNS - 1]);
    curl_easy_cleanup(curl);
    cq_sim_free(sim);
    cq_log_close();
    curl_global_cleanup();
    return 0;
}
