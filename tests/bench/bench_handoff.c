/*
 * bench_handoff.c — the hand-offs feeder -> ARES -> trader, before and after
 * the doorbells (issue 10), side by side in one run.
 *
 * A producer thread (the feeder) pushes items at random moments (uniform
 * gaps of 0.5 to 4.5 ms: sporadic events, the case a polling tick hurts)
 * into the real SPSC ring; a consumer thread (ARES) pops them and pushes
 * each on into a second ring; a second consumer (the trader) pops them.
 * Both consumers are real struct cq_service threads, so they block exactly
 * as the services do:
 *   doorbell  each ring carries its consumer's doorbell (as cq_ares_new and
 *             cq_trader_new attach them); the loop sleeps until a push
 *   poll      no doorbell: the loop sleeps its fixed tick, 5 ms for ARES
 *             and 250 ms for the trader, as before issue 10
 * The two modes alternate in rounds (noisy shared machines hit both alike).
 * Per mode and hop, one JSON line: p50/p99/p99.9 in microseconds, the
 * items, a checksum over the items that arrived (the sum of their sequence
 * numbers, equal in both modes), and the process CPU time the mode used.
 * Then what the doorbell costs a producer whose consumer is awake (the busy
 * case: one fence and one load per push, no system call): push + pop of a
 * 64-byte message on one thread, without and with a doorbell attached.
 *
 *   bench_handoff [items per round, default 1000] [rounds, default 3]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cq/doorbell.h"
#include "cq/health.h"
#include "cq/spsc.h"
#include "cq/service.h"

struct item {
    uint64_t seq;
    int64_t t_push_ns; /* the feeder pushed it */
    int64_t t_ares_ns; /* ARES popped it */
};

enum { MODE_POLL, MODE_DOORBELL, MODE__COUNT };
static const char *const mode_names[MODE__COUNT] = {"poll", "doorbell"};

struct chain {
    struct cq_spsc to_ares, to_trader;
    struct cq_doorbell ares_bell, trader_bell;
    struct cq_health_board *board;
    struct cq_service *ares, *trader;
    int64_t *lat_feeder_ares, *lat_ares_trader, *lat_total; /* ns, by arrival */
    _Atomic uint64_t arrived;                               /* at the trader */
    uint64_t checksum;                                      /* trader thread, read after the join */
    uint64_t forward_full; /* ARES thread: to_trader was full, retried */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int ares_step(void *ctx, int64_t now)
{
    struct chain *c = ctx;
    (void)now;
    struct item it;
    while (cq_spsc_pop(&c->to_ares, &it)) {
        it.t_ares_ns = now_ns();
        while (!cq_spsc_push(&c->to_trader, &it)) { /* sized never to fill */
            c->forward_full++;
        }
    }
    return 0;
}

static int trader_step(void *ctx, int64_t now)
{
    struct chain *c = ctx;
    (void)now;
    struct item it;
    while (cq_spsc_pop(&c->to_trader, &it)) {
        int64_t t = now_ns();
        uint64_t i = atomic_load_explicit(&c->arrived, memory_order_relaxed);
        c->lat_feeder_ares[i] = it.t_ares_ns - it.t_push_ns;
        c->lat_ares_trader[i] = t - it.t_ares_ns;
        c->lat_total[i] = t - it.t_push_ns;
        c->checksum += it.seq;
        atomic_store_explicit(&c->arrived, i + 1, memory_order_release);
    }
    return 0;
}

static bool ares_has_work(void *ctx)
{
    return cq_spsc_peek(&((struct chain *)ctx)->to_ares) != NULL;
}

static bool trader_has_work(void *ctx)
{
    return cq_spsc_peek(&((struct chain *)ctx)->to_trader) != NULL;
}

/* The old loops: a fixed tick, no doorbell (ARES 5 ms, trader 250 ms). */
static const struct cq_service_ops ares_poll = {.id = CQ_SVC_ARES, .tick_ms = 5, .step = ares_step};
static const struct cq_service_ops trader_poll = {
    .id = CQ_SVC_TRADER, .tick_ms = 250, .step = trader_step};
/* The new ones: as server/ares/ares.c and server/trader/trader.c (their
 * health timers left out: they do not move the hand-off). */
static const struct cq_service_ops ares_bell = {
    .id = CQ_SVC_ARES, .tick_ms = 1000, .step = ares_step, .has_work = ares_has_work};
static const struct cq_service_ops trader_bell = {
    .id = CQ_SVC_TRADER, .tick_ms = 1000, .step = trader_step, .has_work = trader_has_work};

static void die(const char *what, const struct cq_err *err)
{
    fprintf(stderr, "bench_handoff: %s: %s\n", what, err != NULL ? err->message : "failed");
    exit(1);
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* One round of one mode; latencies appended to out[hop] at *n. */
static void run_round(int mode, size_t items, uint64_t *seed, int64_t *out[3], size_t *n,
                      uint64_t *checksum, double *cpu)
{
    struct chain c;
    struct cq_err err;
    memset(&c, 0, sizeof(c));
    atomic_init(&c.arrived, 0);
    if (cq_spsc_init(&c.to_ares, 4096, sizeof(struct item)) < 0 ||
        cq_spsc_init(&c.to_trader, 4096, sizeof(struct item)) < 0) {
        die("ring", NULL);
    }
    c.board = cq_health_board_new(NULL, &err);
    if (c.board == NULL) {
        die("board", &err);
    }
    c.lat_feeder_ares = out[0] + *n;
    c.lat_ares_trader = out[1] + *n;
    c.lat_total = out[2] + *n;
    bool bells = mode == MODE_DOORBELL;
    c.ares = cq_service_new(bells ? &ares_bell : &ares_poll, &c, c.board, NULL, &err);
    c.trader = cq_service_new(bells ? &trader_bell : &trader_poll, &c, c.board, NULL, &err);
    if (c.ares == NULL || c.trader == NULL) {
        die("service", &err);
    }
    if (bells) {
        if (cq_doorbell_init(&c.ares_bell, &err) < 0 ||
            cq_doorbell_init(&c.trader_bell, &err) < 0) {
            die("doorbell", &err);
        }
        cq_spsc_set_consumer_bell(&c.to_ares, &c.ares_bell);
        cq_spsc_set_consumer_bell(&c.to_trader, &c.trader_bell);
        cq_service_set_doorbell(c.ares, &c.ares_bell);
        cq_service_set_doorbell(c.trader, &c.trader_bell);
    }
    double cpu0 = cpu_ms();
    if (cq_service_start(c.trader, &err) < 0 || cq_service_start(c.ares, &err) < 0) {
        die("start", &err);
    }
    struct timespec settle = {0, 20000000};
    nanosleep(&settle, NULL); /* both asleep before the first item */
    for (size_t i = 0; i < items; i++) {
        /* xorshift: gaps of 500 to 4500 us */
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        long gap_us = 500 + (long)(*seed % 4000);
        struct timespec gap = {0, gap_us * 1000L};
        nanosleep(&gap, NULL);
        struct item it = {.seq = i + 1, .t_push_ns = now_ns(), .t_ares_ns = 0};
        while (!cq_spsc_push(&c.to_ares, &it)) {
            nanosleep(&settle, NULL);
        }
    }
    int64_t t0 = now_ns();
    while (atomic_load_explicit(&c.arrived, memory_order_acquire) < items) {
        if (now_ns() - t0 > 30000000000LL) {
            fprintf(stderr, "bench_handoff: %s: %llu of %zu items arrived in 30 s\n",
                    mode_names[mode], (unsigned long long)atomic_load(&c.arrived), items);
            exit(1);
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    cq_service_request_stop(c.ares);
    cq_service_request_stop(c.trader);
    if (cq_service_join(c.ares, 5000) < 0 || cq_service_join(c.trader, 5000) < 0) {
        die("join", NULL);
    }
    *cpu += cpu_ms() - cpu0;
    *checksum += c.checksum;
    *n += items;
    cq_service_free(c.ares);
    cq_service_free(c.trader);
    if (bells) {
        cq_spsc_set_consumer_bell(&c.to_ares, NULL);
        cq_spsc_set_consumer_bell(&c.to_trader, NULL);
        cq_doorbell_fini(&c.ares_bell);
        cq_doorbell_fini(&c.trader_bell);
    }
    cq_spsc_fini(&c.to_ares);
    cq_spsc_fini(&c.to_trader);
    cq_health_board_free(c.board);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct_us(const int64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e3;
}

/* ns per push + pop on one thread, the consumer's doorbell attached or not
 * (never armed: the busy case). Median of 5 runs. */
static void push_cost(void)
{
    enum { OPS = 5000000, RUNS = 5 };
    for (int with_bell = 0; with_bell < 2; with_bell++) {
        double ns[RUNS];
        uint64_t sum = 0;
        struct cq_doorbell bell;
        struct cq_spsc r;
        if (cq_doorbell_init(&bell, NULL) < 0 || cq_spsc_init(&r, 1024, 64) < 0) {
            die("push_cost", NULL);
        }
        cq_spsc_set_consumer_bell(&r, with_bell ? &bell : NULL);
        unsigned char msg[64] = {0}, out[64];
        for (int run = 0; run < RUNS; run++) {
            int64_t t0 = now_ns();
            for (uint32_t i = 0; i < OPS; i++) {
                memcpy(msg, &i, sizeof(i));
                (void)cq_spsc_push(&r, msg);
                (void)cq_spsc_pop(&r, out);
                sum += out[0];
            }
            ns[run] = (double)(now_ns() - t0) / OPS;
        }
        qsort(ns, RUNS, sizeof(double), cmp_double);
        printf("{\"bench\":\"handoff_push_cost\",\"doorbell\":%s,\"ops\":%d,"
               "\"ns_per_push_pop\":%.1f,\"min\":%.1f,\"max\":%.1f,\"eventfd_writes\":%llu,"
               "\"checksum\":%llu,\"median_of\":%d}\n",
               with_bell ? "\"attached_consumer_awake\"" : "\"none\"", OPS, ns[RUNS / 2], ns[0],
               ns[RUNS - 1], (unsigned long long)atomic_load(&bell.rings), (unsigned long long)sum,
               RUNS);
        cq_spsc_set_consumer_bell(&r, NULL);
        cq_spsc_fini(&r);
        cq_doorbell_fini(&bell);
    }
}

int main(int argc, char **argv)
{
    size_t items = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (items < 10 || items > 1000000 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "usage: bench_handoff [items per round, 10..1000000] [rounds, 1..100]\n");
        return 2;
    }
    static const char *const hops[3] = {"feeder_to_ares", "ares_to_trader", "feeder_to_trader"};
    int64_t *lat[MODE__COUNT][3];
    size_t n[MODE__COUNT] = {0};
    uint64_t checksum[MODE__COUNT] = {0};
    double cpu[MODE__COUNT] = {0};
    for (int m = 0; m < MODE__COUNT; m++) {
        for (int h = 0; h < 3; h++) {
            lat[m][h] = calloc(items * (size_t)rounds, sizeof(int64_t));
            if (lat[m][h] == NULL) {
                die("memory", NULL);
            }
        }
    }
    for (int r = 0; r < rounds; r++) {
        for (int m = 0; m < MODE__COUNT; m++) {
            uint64_t seed = 0x9e3779b97f4a7c15ULL + (uint64_t)r; /* same gaps in both modes */
            run_round(m, items, &seed, lat[m], &n[m], &checksum[m], &cpu[m]);
        }
    }
    for (int m = 0; m < MODE__COUNT; m++) {
        for (int h = 0; h < 3; h++) {
            qsort(lat[m][h], n[m], sizeof(int64_t), cmp_i64);
            printf("{\"bench\":\"handoff\",\"mode\":\"%s\",\"hop\":\"%s\",\"items\":%zu,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
                   "\"checksum\":%llu,\"cpu_ms\":%.1f}\n",
                   mode_names[m], hops[h], n[m], pct_us(lat[m][h], n[m], 0.50),
                   pct_us(lat[m][h], n[m], 0.99), pct_us(lat[m][h], n[m], 0.999),
                   pct_us(lat[m][h], n[m], 1.0), (unsigned long long)checksum[m], cpu[m]);
            free(lat[m][h]);
        }
    }
    push_cost();
    if (checksum[MODE_POLL] != checksum[MODE_DOORBELL]) {
        fprintf(stderr, "bench_handoff: checksums differ: items were lost or doubled\n");
        return 1;
    }
    return 0;
}
