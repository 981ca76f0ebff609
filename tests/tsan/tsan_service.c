/*
 * tsan_service.c — service threads as the supervisor runs them: start and
 * stop in quick cycles (a stop request racing the thread's first step),
 * three services at once with a watchdog reading their heartbeats, and a
 * stall the watchdog marks down followed by the service's recovery.
 */
#include <pthread.h>
#include <semaphore.h>
#include <string.h>

#include "cq/health.h"
#include "cq/service.h"
#include "fakes/fake_clock.h"
#include "tsan/tsan.h"

struct probe {
    struct tsan_t *t;
    struct cq_health_board *board;
    enum cq_service_id id;
    atomic_int steps;
    atomic_int stops;         /* on_stop calls */
    atomic_bool wrong_thread; /* on_stop ran on another thread than the steps */
    pthread_t step_thread;    /* written by the service thread only */
    atomic_bool block;        /* the next step blocks until released */
    atomic_bool blocked;
    sem_t release;
};

static int probe_step(void *ctx, int64_t now)
{
    struct probe *p = ctx;
    (void)now;
    int n = atomic_fetch_add(&p->steps, 1) + 1;
    if (n == 1) {
        p->step_thread = pthread_self();
    } else if (!pthread_equal(p->step_thread, pthread_self())) {
        atomic_store(&p->wrong_thread, true);
    }
    if (atomic_load(&p->block)) {
        atomic_store(&p->block, false);
        atomic_store(&p->blocked, true);
        sem_wait(&p->release);
        atomic_store(&p->blocked, false);
    }
    cq_health_publish(p->board, p->id, CQ_HEALTH_OK, true, "", "probe",
                      json_pack("{s:i}", "steps", n));
    return 0;
}

static void probe_stop(void *ctx)
{
    struct probe *p = ctx;
    if (atomic_load(&p->steps) > 0 && !pthread_equal(p->step_thread, pthread_self())) {
        atomic_store(&p->wrong_thread, true);
    }
    atomic_fetch_add(&p->stops, 1);
}

static const struct cq_service_ops ops_by_id[] = {
    {.id = CQ_SVC_FEEDER, .tick_ms = 1, .step = probe_step, .on_stop = probe_stop},
    {.id = CQ_SVC_ARES, .tick_ms = 2, .step = probe_step, .on_stop = probe_stop},
    {.id = CQ_SVC_TRADER, .tick_ms = 3, .step = probe_step, .on_stop = probe_stop},
};

static void probe_init(struct probe *p, struct tsan_t *t, struct cq_health_board *b,
                       enum cq_service_id id)
{
    memset(p, 0, sizeof(*p));
    p->t = t;
    p->board = b;
    p->id = id;
    atomic_init(&p->steps, 0);
    atomic_init(&p->stops, 0);
    atomic_init(&p->wrong_thread, false);
    atomic_init(&p->block, false);
    atomic_init(&p->blocked, false);
    sem_init(&p->release, 0, 0);
}

static void service_start_stop_cycles(struct tsan_t *t)
{
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_health_board *b = cq_health_board_new(NULL, &err);
    TSAN_ASSERT_V(t, b != NULL, "board: %s", err.message);
    for (int cycle = 0; cycle < 40; cycle++) {
        struct probe p;
        probe_init(&p, t, b, CQ_SVC_FEEDER);
        struct cq_service *s = cq_service_new(&ops_by_id[0], &p, b, NULL, &err);
        TSAN_ASSERT_V(t, s != NULL, "new: %s", err.message);
        TSAN_EXPECT(t, cq_service_start(s, &err) == 0, "start: %s", err.message);
        TSAN_EXPECT(t, cq_service_start(s, &err) == -CQ_ESTATE, "a second start is refused");
        if (cycle % 2 == 1) {
            /* Odd cycles stop only after a few steps; even ones at once. */
            TSAN_WAIT_FOR(atomic_load(&p.steps) >= 3, 30000);
        }
        cq_service_request_stop(s);
        TSAN_EXPECT(t, cq_service_join(s, 30000) == 0, "cycle %d: join timed out", cycle);
        TSAN_EXPECT(t, atomic_load(&p.stops) == 1, "cycle %d: on_stop ran %d times", cycle,
                    atomic_load(&p.stops));
        TSAN_EXPECT(t, !atomic_load(&p.wrong_thread), "cycle %d: a callback ran elsewhere", cycle);
        TSAN_EXPECT(t, cq_health_status_of(b, CQ_SVC_FEEDER) == CQ_HEALTH_STOPPED,
                    "cycle %d: the record does not say stopped", cycle);
        TSAN_EXPECT(t, !cq_health_is_ready(b, CQ_SVC_FEEDER), "stopped but ready");
        cq_service_free(s);
        sem_destroy(&p.release);
    }
    /* free without join: it stops and joins itself. */
    struct probe p;
    probe_init(&p, t, b, CQ_SVC_FEEDER);
    struct cq_service *s = cq_service_new(&ops_by_id[0], &p, b, NULL, &err);
    TSAN_ASSERT_V(t, s != NULL, "new: %s", err.message);
    TSAN_EXPECT(t, cq_service_start(s, &err) == 0, "start: %s", err.message);
    TSAN_WAIT_FOR(atomic_load(&p.steps) >= 1, 30000);
    cq_service_free(s);
    TSAN_EXPECT(t, atomic_load(&p.stops) == 1, "free without join: on_stop ran %d times",
                atomic_load(&p.stops));
    sem_destroy(&p.release);
    cq_health_board_free(b);
}

/* Three services stepping while the supervisor's side reads heartbeats and
 * runs the watchdog with a generous limit (nothing is stalled), and a
 * reader copies the board. */
static void service_three_services_and_the_watchdog(struct tsan_t *t)
{
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_health_board *b = cq_health_board_new(NULL, &err);
    TSAN_ASSERT_V(t, b != NULL, "board: %s", err.message);
    struct probe p[3];
    struct cq_service *s[3];
    for (int i = 0; i < 3; i++) {
        probe_init(&p[i], t, b, ops_by_id[i].id);
        s[i] = cq_service_new(&ops_by_id[i], &p[i], b, NULL, &err);
        TSAN_ASSERT_V(t, s[i] != NULL, "new: %s", err.message);
        TSAN_EXPECT(t, cq_service_start(s[i], &err) == 0, "start: %s", err.message);
    }
    int64_t last_beat[3] = {0, 0, 0};
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 3; i++) {
            int64_t beat = cq_service_last_beat_ms(s[i]);
            TSAN_EXPECT(t, beat >= last_beat[i], "heartbeat went back");
            last_beat[i] = beat;
            TSAN_EXPECT(t, !cq_service_watchdog(s[i], cq_time_mono_ms(), 600000),
                        "a running service was called stalled");
        }
        json_t *all = cq_health_services_json(b);
        json_decref(all);
        tsan_sleep_ms(1);
    }
    for (int i = 0; i < 3; i++) {
        TSAN_WAIT_FOR(atomic_load(&p[i].steps) >= 5, 30000);
        cq_service_request_stop(s[i]);
    }
    for (int i = 0; i < 3; i++) {
        TSAN_EXPECT(t, cq_service_join(s[i], 30000) == 0, "join %d", i);
        TSAN_EXPECT(t, atomic_load(&p[i].steps) >= 5, "service %d stepped %d times", i,
                    atomic_load(&p[i].steps));
        TSAN_EXPECT(t, atomic_load(&p[i].stops) == 1, "on_stop %d", i);
        TSAN_EXPECT(t, !atomic_load(&p[i].wrong_thread), "a callback ran elsewhere");
        TSAN_EXPECT(t, cq_health_status_of(b, ops_by_id[i].id) == CQ_HEALTH_STOPPED,
                    "service %d not stopped", i);
        TSAN_EXPECT(t, !cq_service_watchdog(s[i], cq_time_mono_ms() + 3600000, 1),
                    "a joined service is never stalled");
        cq_service_free(s[i]);
        sem_destroy(&p[i].release);
    }
    cq_health_board_free(b);
}

/* A step blocks; on the fake clock the watchdog finds the heartbeat old and
 * marks the service down/stalled from the supervisor's thread; released,
 * the service beats again and publishes ok itself. */
static void service_stall_marked_then_recovers(struct tsan_t *t)
{
    static struct fake_clock fc = FAKE_CLOCK_INIT(100000, 1763683200000000LL);
    struct cq_clock clk = fake_clock_as_clock(&fc);
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_health_board *b = cq_health_board_new(&clk, &err);
    TSAN_ASSERT_V(t, b != NULL, "board: %s", err.message);
    struct probe p;
    probe_init(&p, t, b, CQ_SVC_ARES);
    struct cq_service *s = cq_service_new(&ops_by_id[1], &p, b, &clk, &err);
    TSAN_ASSERT_V(t, s != NULL, "new: %s", err.message);
    TSAN_EXPECT(t, cq_service_start(s, &err) == 0, "start: %s", err.message);
    TSAN_WAIT_FOR(atomic_load(&p.steps) >= 2, 30000);
    atomic_store(&p.block, true);
    TSAN_WAIT_FOR(atomic_load(&p.blocked), 30000);
    TSAN_ASSERT_V(t, atomic_load(&p.blocked), "the step never blocked");

    int64_t beat = cq_service_last_beat_ms(s);
    fake_clock_advance_ms(&fc, 10000);
    TSAN_EXPECT(t, cq_service_watchdog(s, cq_clock_mono_ms(&clk), 5000),
                "10 s without a beat (limit 5 s) is a stall");
    TSAN_EXPECT(t, cq_health_status_of(b, CQ_SVC_ARES) == CQ_HEALTH_DOWN, "marked down");
    json_t *rec = cq_health_record_json(b, CQ_SVC_ARES);
    TSAN_EXPECT(t, strcmp(json_string_value(json_object_get(rec, "reason")), "stalled") == 0,
                "reason stalled");
    json_decref(rec);
    TSAN_EXPECT(t, cq_service_last_beat_ms(s) == beat, "no beat while blocked");

    sem_post(&p.release);
    int before = atomic_load(&p.steps);
    TSAN_WAIT_FOR(atomic_load(&p.steps) > before + 1, 30000);
    TSAN_EXPECT(t, cq_service_last_beat_ms(s) > beat, "beats again after the release");
    TSAN_EXPECT(t, !cq_service_watchdog(s, cq_clock_mono_ms(&clk), 5000), "recovered");
    TSAN_WAIT_FOR(cq_health_status_of(b, CQ_SVC_ARES) == CQ_HEALTH_OK, 30000);
    TSAN_EXPECT(t, cq_health_status_of(b, CQ_SVC_ARES) == CQ_HEALTH_OK,
                "the service publishes ok again");
    cq_service_request_stop(s);
    TSAN_EXPECT(t, cq_service_join(s, 30000) == 0, "join");
    cq_service_free(s);
    sem_destroy(&p.release);
    cq_health_board_free(b);
}

const struct tsan_case tsan_service_cases[] = {
    {"service_start_stop_cycles", service_start_stop_cycles},
    {"service_three_services_and_the_watchdog", service_three_services_and_the_watchdog},
    {"service_stall_marked_then_recovers", service_stall_marked_then_recovers},
    {NULL, NULL},
};
