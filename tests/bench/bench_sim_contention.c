/*
 * bench_sim_contention.c — does coinquant-simex's one lock limit its order
 * throughput? Signed MARKET orders (BUY and SELL of 0.001 BTC alternating,
 * newOrderRespType=RESULT) from 1, 4 and 16 concurrent clients, each a
 * thread with its own keep-alive libcurl connection (so its own
 * libmicrohttpd connection thread), against one in-process simulator.
 *
 * For each client count it prints one JSON line: orders per second, and the
 * lock's own figures over the run from GET /_sim/state ("lock", counted by
 * cq_sim__lock in server/sim/state.c):
 *   lock_held_share      time the lock was held / wall time: near 1.0 means
 *                        the lock is the bottleneck (one order at a time no
 *                        matter how many clients); well below 1.0 means the
 *                        time goes elsewhere (HTTP, signing, the CPU).
 *   lock_contended_share acquisitions that found the lock busy.
 *   lock_wait_us_per_order  time takers spent waiting, per order.
 *   lock_held_us_per_order  time the lock was held (by anyone: REST, market
 *                        thread), per order.
 *
 * Usage: bench_sim_contention [orders per run]   (default 4000; split
 * evenly over the clients). Never timed in tests.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/log.h"
#include "cq/sign.h"
#include "cq/sim.h"

#define CLIENTS_MAX 16

struct body {
    char data[8192];
    size_t len;
};

struct client {
    pthread_t thread;
    const char *url;
    size_t orders;
    size_t first; /* alternate sides across clients too */
    int failed;
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

static void *client_main(void *arg)
{
    struct client *c = arg;
    const char *secret = CQ_SIM_DEFAULT_API_SECRET;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "X-MBX-APIKEY: " CQ_SIM_DEFAULT_API_KEY);
    struct body b;
    char query[512], full[1024], sig[CQ_SIGN_HEX_LEN + 1];
    if (curl == NULL || headers == NULL) {
        c->failed = 1;
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    for (size_t i = 0; i < c->orders; i++) {
        /* bounded: a fixed text, a 4-byte side and a 20-digit time in 512 */
        snprintf(query, sizeof(query),
                 "symbol=BTCUSDT&side=%s&type=MARKET&quantity=0.001&newOrderRespType=RESULT"
                 "&recvWindow=60000&timestamp=%lld",
                 ((c->first + i) % 2) == 0 ? "BUY" : "SELL", wall_ms());
        if (cq_sign_hmac_sha256_hex(secret, strlen(secret), query, strlen(query), NULL, 0, sig) <
            0) {
            c->failed = 1;
            goto out;
        }
        int n = snprintf(full, sizeof(full), "%s/api/v3/order?%s&signature=%s", c->url, query, sig);
        if (n < 0 || (size_t)n >= sizeof(full)) {
            c->failed = 1;
            goto out;
        }
        curl_easy_setopt(curl, CURLOPT_URL, full);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
        b.len = 0;
        b.data[0] = '\0';
        CURLcode rc = curl_easy_perform(curl);
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200 || strstr(b.data, "\"status\":\"FILLED\"") == NULL) {
            fprintf(stderr, "bench_sim_contention: order failed: curl %d, HTTP %ld: %s\n", (int)rc,
                    status, b.data);
            c->failed = 1;
            goto out;
        }
    }
out:
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return NULL;
}

struct lock_figures {
    double acquisitions, contended, wait_ns, held_ns;
};

static int read_lock(const char *url, struct lock_figures *out)
{
    char full[256];
    struct body b = {.len = 0};
    int n = snprintf(full, sizeof(full), "%s/_sim/state", url);
    if (n < 0 || (size_t)n >= sizeof(full)) {
        return -1;
    }
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        return -1;
    }
    curl_easy_setopt(curl, CURLOPT_URL, full);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        return -1;
    }
    json_t *j = json_loads(b.data, 0, NULL);
    json_t *l = json_object_get(j, "lock");
    if (!json_is_object(l)) {
        fprintf(stderr, "bench_sim_contention: no \"lock\" in /_sim/state (%zu bytes)\n", b.len);
        json_decref(j);
        return -1;
    }
    out->acquisitions = (double)json_integer_value(json_object_get(l, "acquisitions"));
    out->contended = (double)json_integer_value(json_object_get(l, "contended"));
    out->wait_ns = (double)json_integer_value(json_object_get(l, "wait_ns"));
    out->held_ns = (double)json_integer_value(json_object_get(l, "held_ns"));
    json_decref(j);
    return 0;
}

static int run(const char *url, size_t n_clients, size_t orders)
{
    struct client clients[CLIENTS_MAX];
    struct lock_figures before, after;
    size_t per = orders / n_clients;
    if (read_lock(url, &before) < 0) {
        return -1;
    }
    double t0 = now_s();
    for (size_t i = 0; i < n_clients; i++) {
        clients[i] = (struct client){.url = url, .orders = per, .first = i};
        if (pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) != 0) {
            return -1;
        }
    }
    int failed = 0;
    for (size_t i = 0; i < n_clients; i++) {
        pthread_join(clients[i].thread, NULL);
        failed |= clients[i].failed;
    }
    double secs = now_s() - t0;
    if (failed || read_lock(url, &after) < 0) {
        return -1;
    }
    double total = (double)(per * n_clients);
    double acq = after.acquisitions - before.acquisitions;
    printf("{\"bench\":\"simex_lock_contention\",\"clients\":%zu,\"orders\":%.0f,"
           "\"seconds\":%.3f,\"orders_per_s\":%.0f,\"lock_held_share\":%.3f,"
           "\"lock_contended_share\":%.3f,\"lock_wait_us_per_order\":%.1f,"
           "\"lock_held_us_per_order\":%.1f}\n",
           n_clients, total, secs, total / secs, (after.held_ns - before.held_ns) / (secs * 1e9),
           acq > 0 ? (after.contended - before.contended) / acq : 0.0,
           (after.wait_ns - before.wait_ns) / 1e3 / total,
           (after.held_ns - before.held_ns) / 1e3 / total);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    size_t orders = 4000;
    if (argc > 1) {
        char *end = NULL;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || v < CLIENTS_MAX || v > 10000000ULL) {
            fprintf(stderr, "usage: %s [orders per run (16..10000000)]\n", argv[0]);
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
        .weight_limit_1m = 100000000,
        .order_limit_10s = 100000000,
        .order_limit_1d = 1000000000,
    };
    struct cq_sim *sim = cq_sim_new(&so, &err);
    if (sim == NULL || cq_sim_start(sim, &err) < 0) {
        fprintf(stderr, "bench_sim_contention: simulator: %s\n", err.message);
        return 1;
    }
    static const size_t counts[] = {1, 4, 16};
    int rc = 0;
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]) && rc == 0; i++) {
        rc = run(cq_sim_rest_url(sim), counts[i], orders);
    }
    cq_sim_free(sim);
    cq_log_close();
    curl_global_cleanup();
    return rc == 0 ? 0 : 1;
}
