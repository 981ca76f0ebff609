/*
 * bench_feeder.c — the feeder's end-to-end rate: market messages received
 * over loopback WebSocket from coinquant-simex at --speed max, decoded,
 * applied to the market state and published to the ARES ring (drained by a
 * consumer thread, as ARES would).
 *
 * Starts the simulator in-process (BTCUSDT, ETHUSDT; synthetic market;
 * speed max) and a real feeder (the same object coinquantd runs) on its own
 * thread, waits until it streams, then measures messages received per
 * second over RUNS windows of WINDOW_MS and prints the median as one JSON
 * line, with what the simulator had to drop (its WS queue is bounded) so the
 * figure is read honestly: it is the rate the pair sustains, limited by
 * whichever side is slower on this machine.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/clock.h"
#include "cq/config.h"
#include "cq/feeder.h"
#include "cq/health.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/spsc.h"
#include "cq/sim.h"

#define RUNS 5
#define WINDOW_MS 2000

static atomic_bool stop_consumer;
static atomic_ullong consumed;

static void *consumer(void *arg)
{
    struct cq_spsc *ring = arg;
    struct cq_market_event ev;
    while (!atomic_load(&stop_consumer)) {
        if (cq_spsc_pop(ring, &ev)) {
            atomic_fetch_add_explicit(&consumed, 1, memory_order_relaxed);
        } else {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static long long feeder_messages(struct cq_health_board *board)
{
    json_t *rec = cq_health_record_json(board, CQ_SVC_FEEDER);
    json_t *v = json_object_get(json_object_get(json_object_get(rec, "details"), "market_stream"),
                                "messages_total");
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(rec);
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    struct cq_err err;
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = true,
                                .level = CQ_LOG_ERROR,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 0,
                                .clock = NULL};
    if (cq_log_open(&lo, &err) < 0) {
        return 1;
    }
    const char *symbols[] = {"BTCUSDT", "ETHUSDT"};
    struct cq_sim_options so = {.bind = "127.0.0.1",
                                .symbols = symbols,
                                .n_symbols = 2,
                                .speed_max = true,
                                .speed = 1,
                                .seed = 9,
                                .maker_bps = 10,
                                .taker_bps = 10};
    struct cq_sim *sim = cq_sim_new(&so, &err);
    if (sim == NULL || cq_sim_start(sim, &err) < 0) {
        fprintf(stderr, "bench_feeder: simulator: %s\n", err.message);
        return 1;
    }
    char *const envp[] = {"CQ_SYMBOLS=BTCUSDT,ETHUSDT", "CQ_FEEDER_WARMUP_BARS=0", NULL};
    struct cq_config_report report;
    struct cq_config_load_options clo = {.file_path = NULL, .envp = envp};
    struct cq_config *cfg = cq_config_load(&clo, &report);
    struct cq_health_board *board = cq_health_board_new(NULL, &err);
    struct cq_spsc ring;
    if (cfg == NULL || board == NULL ||
        cq_spsc_init(&ring, 65536, sizeof(struct cq_market_event)) < 0) {
        fprintf(stderr, "bench_feeder: setup failed\n");
        return 1;
    }
    struct cq_feeder_options fo = {.cfg = cfg,
                                   .board = board,
                                   .rest_url = cq_sim_rest_url(sim),
                                   .ws_url = cq_sim_ws_url(sim),
                                   .to_ares = &ring};
    struct cq_feeder *feeder = cq_feeder_new(&fo, &err);
    if (feeder == NULL || cq_service_start(cq_feeder_service(feeder), &err) < 0) {
        fprintf(stderr, "bench_feeder: feeder: %s\n", err.message);
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, consumer, &ring);
    for (int i = 0; i < 100 && feeder_messages(board) <= 0; i++) {
        cq_time_sleep_ms(100);
    }
    double rates[RUNS];
    for (int r = 0; r < RUNS; r++) {
        long long a = feeder_messages(board);
        cq_time_sleep_ms(WINDOW_MS);
        long long b = feeder_messages(board);
        rates[r] = (double)(b - a) * 1000.0 / WINDOW_MS;
    }
    qsort(rates, RUNS, sizeof(rates[0]), cmp_double);
    json_t *rec = cq_health_record_json(board, CQ_SVC_FEEDER);
    json_t *ms = json_object_get(json_object_get(rec, "details"), "market_stream");
    char *ms_text = json_dumps(ms, JSON_COMPACT);
    fprintf(stderr, "bench_feeder: market stream %s\n", ms_text != NULL ? ms_text : "?");
    free(ms_text);
    json_decref(rec);
    printf("{\"bench\":\"feeder_end_to_end_speed_max\",\"messages_per_s\":%.0f,\"min\":%.0f,"
           "\"max\":%.0f,\"median_of\":%d,\"window_ms\":%d,\"ares_events_consumed\":%llu}\n",
           rates[RUNS / 2], rates[0], rates[RUNS - 1], RUNS, WINDOW_MS,
           (unsigned long long)atomic_load(&consumed));
    cq_service_request_stop(cq_feeder_service(feeder));
    if (cq_service_join(cq_feeder_service(feeder), 5000) < 0) {
        fprintf(stderr, "bench_feeder: feeder did not stop\n");
        return 1;
    }
    atomic_store(&stop_consumer, true);
    pthread_join(t, NULL);
    cq_feeder_free(feeder);
    cq_spsc_fini(&ring);
    cq_health_board_free(board);
    cq_config_unref(cfg);
    cq_sim_free(sim);
    cq_log_close();
    return 0;
}
