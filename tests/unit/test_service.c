/*
 * test_service.c — the service thread frame and the supervisor's watchdog:
 * lifecycle (start, step, stop, join), a failing step, and a stalled loop
 * marked down with reason "stalled" then recovering. Time is a fake clock;
 * the stall is a step that blocks until the test releases it.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cq/clock.h"
#include "cq/health.h"
#include "cq/log.h"
#include "cq/service.h"
#include "fakes/fake_clock.h"

struct probe {
    struct cq_health_board *board;
    atomic_int steps;
    atomic_bool block;   /* next step blocks until released */
    atomic_bool blocked; /* a step is blocked now */
    sem_t release;
    int fail_at; /* step number that returns an error (0 = never) */
};

static int probe_step(void *ctx, int64_t now)
{
    struct probe *p = ctx;
    (void)now;
    int n = atomic_fetch_add(&p->steps, 1) + 1;
    if (atomic_load(&p->block)) {
        atomic_store(&p->blocked, true);
        sem_wait(&p->release);
        atomic_store(&p->blocked, false);
    }
    if (p->fail_at != 0 && n >= p->fail_at) {
        return -CQ_EIO;
    }
    cq_health_publish(p->board, CQ_SVC_FEEDER, CQ_HEALTH_OK, true, "", "probe", NULL);
    return 0;
}

static const struct cq_service_ops probe_ops = {
    .id = CQ_SVC_FEEDER, .tick_ms = 5, .step = probe_step, .on_stop = NULL};

static struct fake_clock fc = FAKE_CLOCK_INIT(100000, 1763683200000000LL);
static struct cq_clock clk;

static void setup(void)
{
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20,
                                .keep = 2,
                                .ring_lines = 100,
                                .clock = NULL};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    clk = fake_clock_as_clock(&fc);
}

static void teardown(void)
{
    cq_log_close();
}

static void wait_until(atomic_int *v, int at_least)
{
    for (int i = 0; i < 4000 && atomic_load(v) < at_least; i++) {
        cq_time_sleep_ms(1);
    }
    cr_assert_geq(atomic_load(v), at_least, "the service thread did not run");
}

struct ring_count {
    const char *needle;
    int n;
};

static void count_line(const char *line, void *arg)
{
    struct ring_count *c = arg;
    if (strstr(line, c->needle) != NULL) {
        c->n++;
    }
}

/* How many recent log lines contain needle. */
static int count_ring(const char *needle)
{
    struct ring_count c = {needle, 0};
    cq_log_ring_foreach(count_line, &c);
    return c.n;
}

TestSuite(service, .init = setup, .fini = teardown);

Test(service, stall_verdict_table)
{
    struct {
        int64_t now, beat, stall;
        bool stalled;
    } rows[] = {
        {1000, 1000, 500, false}, {1500, 1000, 500, false},  {1501, 1000, 500, true},
        {9000, 1000, 5000, true}, {5999, 1000, 5000, false},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rows); i++) {
        cr_expect_eq(cq_service_is_stalled(rows[i].now, rows[i].beat, rows[i].stall),
                     rows[i].stalled, "row %zu", i);
    }
}

Test(service, start_step_stop_join)
{
    struct probe p = {0};
    p.board = cq_health_board_new(&clk, NULL);
    sem_init(&p.release, 0, 0);
    struct cq_service *s = cq_service_new(&probe_ops, &p, p.board, &clk, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(cq_service_start(s, NULL), 0);
    wait_until(&p.steps, 3);
    cr_expect(cq_health_is_ready(p.board, CQ_SVC_FEEDER));
    cq_service_request_stop(s);
    cr_assert_eq(cq_service_join(s, 2000), 0);
    cr_expect_eq(cq_health_status_of(p.board, CQ_SVC_FEEDER), CQ_HEALTH_STOPPED);
    cr_expect_not(cq_health_is_ready(p.board, CQ_SVC_FEEDER));
    cq_service_free(s);
    cq_health_board_free(p.board);
}

Test(service, failing_step_marks_down_failed)
{
    struct probe p = {0};
    p.fail_at = 2;
    p.board = cq_health_board_new(&clk, NULL);
    sem_init(&p.release, 0, 0);
    struct cq_service *s = cq_service_new(&probe_ops, &p, p.board, &clk, NULL);
    cr_assert_eq(cq_service_start(s, NULL), 0);
    cr_assert_eq(cq_service_join(s, 2000), 0, "a failing step must end the loop");
    json_t *rec = cq_health_record_json(p.board, CQ_SVC_FEEDER);
    cr_expect_str_eq(json_string_value(json_object_get(rec, "status")), "down");
    cr_expect_str_eq(json_string_value(json_object_get(rec, "reason")), "failed");
    json_decref(rec);
    cq_service_free(s);
    cq_health_board_free(p.board);
}

/* issue 10: the supervisor sleeps until the watchdog's next verdict is due
 * (a beat older than the stall limit), not on a 100 ms tick. */
Test(service, watchdog_due_is_the_moment_the_last_beat_goes_stale)
{
    struct probe p = {0};
    p.board = cq_health_board_new(&clk, NULL);
    sem_init(&p.release, 0, 0);
    struct cq_service *s = cq_service_new(&probe_ops, &p, p.board, &clk, NULL);
    int64_t now = fake_clock_mono_ms_(&fc);
    cr_expect_eq(cq_service_watchdog_due_ms(s, now, 1000), -1, "not started: nothing due");
    atomic_store(&p.block, true); /* its beat then stands still at the blocked step */
    cr_assert_eq(cq_service_start(s, NULL), 0);
    for (int i = 0; i < 4000 && !atomic_load(&p.blocked); i++) {
        cq_time_sleep_ms(1);
    }
    cr_assert(atomic_load(&p.blocked));
    int64_t beat = cq_service_last_beat_ms(s);
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat, 1000), 1001);
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat + 400, 1000), 601);
    /* one ms before the due time it is not stalled yet; at it, it is */
    cr_expect_not(cq_service_watchdog(s, beat + 1000, 1000));
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat + 1000, 1000), 1);
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat + 5000, 1000), 0, "overdue: judge now");
    cr_expect(cq_service_watchdog(s, beat + 1001, 1000));
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat + 1001, 1000), -1);
    atomic_store(&p.block, false);
    sem_post(&p.release);
    cq_service_request_stop(s);
    cr_assert_eq(cq_service_join(s, 2000), 0);
    cr_expect_eq(cq_service_watchdog_due_ms(s, beat, 1000), -1, "joined: nothing due");
    cq_service_free(s);
    cq_health_board_free(p.board);
}

Test(service, watchdog_marks_stalled_once_then_recovers)
{
    struct probe p = {0};
    p.board = cq_health_board_new(&clk, NULL);
    sem_init(&p.release, 0, 0);
    struct cq_service *s = cq_service_new(&probe_ops, &p, p.board, &clk, NULL);
    cr_assert_eq(cq_service_start(s, NULL), 0);
    wait_until(&p.steps, 2);

    int64_t now = fake_clock_mono_ms_(&fc);
    cr_expect_not(cq_service_watchdog(s, now, 1000), "fresh beat must not be stalled");

    atomic_store(&p.block, true);
    for (int i = 0; i < 4000 && !atomic_load(&p.blocked); i++) {
        cq_time_sleep_ms(1);
    }
    cr_assert(atomic_load(&p.blocked));
    fake_clock_advance_ms(&fc, 1001);
    now = fake_clock_mono_ms_(&fc);
    cr_expect(cq_service_watchdog(s, now, 1000));
    json_t *rec = cq_health_record_json(p.board, CQ_SVC_FEEDER);
    cr_expect_str_eq(json_string_value(json_object_get(rec, "status")), "down");
    cr_expect_str_eq(json_string_value(json_object_get(rec, "reason")), "stalled");
    cr_expect_eq(json_is_false(json_object_get(rec, "ready")), 1);
    json_decref(rec);
    cr_expect(cq_service_watchdog(s, now + 10, 1000), "still stalled");
    cr_expect_eq(cq_service_watchdog_due_ms(s, now + 10, 1000), -1,
                 "marked stalled: nothing more to wait for until it beats");
    cr_expect_eq(count_ring("\"event\":\"service_stalled\""), 1, "stall logged once");

    atomic_store(&p.block, false);
    int before = atomic_load(&p.steps);
    sem_post(&p.release);
    wait_until(&p.steps, before + 2);
    cr_expect_not(cq_service_watchdog(s, fake_clock_mono_ms_(&fc), 1000));
    cr_expect(cq_health_is_ready(p.board, CQ_SVC_FEEDER), "the service republished itself");
    cr_expect_eq(count_ring("\"event\":\"service_recovered\""), 1);

    cq_service_request_stop(s);
    cr_assert_eq(cq_service_join(s, 2000), 0);
    cq_service_free(s);
    cq_health_board_free(p.board);
}
