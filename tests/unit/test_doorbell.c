/*
 * test_doorbell.c — consumers are woken, not polling (issue 10).
 *
 *   - the doorbell protocol on its own: a producer writes the eventfd only
 *     when the consumer armed it (the write counter stays 0 while the
 *     consumer is awake; many pushes during one sleep make one write), on
 *     both ends of a ring (push rings the consumer, pop the producer);
 *   - a consumer service (struct cq_service with a doorbell, a tick of a
 *     minute that never comes during the tests) blocked on an empty ring
 *     wakes on a push, on a stop request and on its timer, within loose
 *     real-time bounds;
 *   - no lost wake-up: a producer and the sleeping consumer race many
 *     times (ping-pong, every push aimed at the consumer's way to sleep,
 *     then a burst); every item arrives, the sum is checked, and a lost
 *     wake-up shows as an item not taken within 5 s (the tick is 60 s);
 *   - ARES idle: with no market data it no longer wakes every 5 ms (counted
 *     as the process's voluntary context switches over one second);
 *   - the wiring: ARES and the trader attach their doorbells to their rings
 *     (ARES: consumer of the feeder's, producer of the trader's; the
 *     trader: consumer of both of its rings), their loops sleep on them, a
 *     push wakes them by a ring (not a timeout), and free detaches them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cq/ares.h"
#include "cq/clock.h"
#include "cq/config.h"
#include "cq/doorbell.h"
#include "cq/feeder.h"
#include "cq/health.h"
#include "cq/log.h"
#include "cq/market.h"
#include "cq/spsc.h"
#include "cq/service.h"
#include "cq/signal.h"
#include "cq/journal.h"
#include "cq/trader.h"

/* Loose real-time bound for "woke promptly": far below the 60 s tick. */
#define WAKE_BOUND_MS 5000

static void log_open(void)
{
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_WARN,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 50,
                                .clock = NULL};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
}

/* ---- the protocol on its own ----------------------------------------------------- */

Test(doorbell, no_write_while_the_consumer_is_awake)
{
    struct cq_doorbell b;
    struct cq_spsc r;
    cr_assert_eq(cq_doorbell_init(&b, NULL), 0);
    cr_assert_eq(cq_spsc_init(&r, 4096, sizeof(uint64_t)), 0);
    cq_spsc_set_consumer_bell(&r, &b);
    for (uint64_t i = 0; i < 1000; i++) {
        cr_assert(cq_spsc_push(&r, &i));
    }
    cr_assert_eq(atomic_load(&b.rings), 0, "the consumer never armed: no eventfd write");

    /* Armed (about to sleep): the first push writes once, the rest see the
     * flag down and write nothing. */
    cq_doorbell_arm(&b);
    for (uint64_t i = 0; i < 1000; i++) {
        cr_assert(cq_spsc_push(&r, &i));
    }
    cr_assert_eq(atomic_load(&b.rings), 1, "one write per sleep, not %llu",
                 (unsigned long long)atomic_load(&b.rings));
    /* The sleep ends at once (the ring is in the eventfd) and drains it. */
    cr_assert(cq_doorbell_sleep(&b, 10000));
    cr_assert_not(atomic_load(&b.sleeping));

    /* Armed, then work found: disarmed, pushes write nothing again. */
    cq_doorbell_arm(&b);
    cq_doorbell_disarm(&b);
    uint64_t x = 7;
    cr_assert(cq_spsc_pop(&r, &x));
    cr_assert(cq_spsc_push(&r, &x));
    cr_assert_eq(atomic_load(&b.rings), 1);
    /* Nothing rang since: a short sleep times out. */
    cq_doorbell_arm(&b);
    cr_assert_not(cq_doorbell_sleep(&b, 20));
    cq_spsc_fini(&r);
    cq_doorbell_fini(&b);
}

Test(doorbell, a_pop_rings_the_producer_waiting_for_room)
{
    struct cq_doorbell b;
    struct cq_spsc r;
    cr_assert_eq(cq_doorbell_init(&b, NULL), 0);
    cr_assert_eq(cq_spsc_init(&r, 2, sizeof(uint64_t)), 0);
    cq_spsc_set_producer_bell(&r, &b);
    uint64_t v = 1;
    cr_assert(cq_spsc_push(&r, &v));
    cr_assert(cq_spsc_push(&r, &v));
    cr_assert_not(cq_spsc_has_room(&r));
    cr_assert_eq(atomic_load(&b.rings), 0, "a push does not ring the producer's own bell");
    cq_doorbell_arm(&b); /* the producer waits for room */
    cr_assert(cq_spsc_pop(&r, &v));
    cr_assert_eq(atomic_load(&b.rings), 1);
    cr_assert(cq_spsc_has_room(&r));
    cr_assert(cq_doorbell_sleep(&b, 10000));
    cr_assert(cq_spsc_pop(&r, &v));
    cr_assert_eq(atomic_load(&b.rings), 1, "producer awake: the pop wrote nothing");
    cq_spsc_fini(&r);
    cq_doorbell_fini(&b);
}

Test(doorbell, sleep_timeout_zero_and_negative)
{
    struct cq_doorbell b;
    cr_assert_eq(cq_doorbell_init(&b, NULL), 0);
    cq_doorbell_arm(&b);
    cr_assert_not(cq_doorbell_sleep(&b, 0), "0 = do not sleep");
    cr_assert_eq(atomic_load(&b.sleeps), 0);
    cr_assert_not(atomic_load(&b.sleeping));
    /* Negative = the longest sleep: a ring ends it. */
    cq_doorbell_arm(&b);
    cq_doorbell_notify(&b);
    cr_assert(cq_doorbell_sleep(&b, -1));
    cq_doorbell_notify(NULL); /* allowed: no doorbell */
    cq_doorbell_fini(&b);
}

/* CQ_DOORBELL_SLEEP_MAX_MS at its boundary: a timeout past it (here past
 * the int that poll(2) takes: 2^32 + 20 ms, which a plain cast turns into
 * 20 ms) is cut to the limit, not wrapped: the sleep lasts until another
 * thread rings 300 ms later. */
static void *ring_later(void *arg)
{
    cq_time_sleep_ms(300);
    cq_doorbell_notify(arg);
    return NULL;
}

Test(doorbell, a_timeout_past_the_limit_is_cut_not_wrapped)
{
    struct cq_doorbell b;
    cr_assert_eq(cq_doorbell_init(&b, NULL), 0);
    pthread_t th;
    cq_doorbell_arm(&b);
    cr_assert_eq(pthread_create(&th, NULL, ring_later, &b), 0);
    int64_t t0 = cq_time_mono_ms();
    bool rung = cq_doorbell_sleep(&b, ((int64_t)1 << 32) + 20);
    int64_t slept = cq_time_mono_ms() - t0;
    pthread_join(th, NULL);
    cr_assert(rung, "ended by its timeout after %lld ms, not by the ring", (long long)slept);
    cr_assert_geq(slept, 250);
    /* At the limit itself: no cut needed, the same. */
    cq_doorbell_arm(&b);
    cr_assert_eq(pthread_create(&th, NULL, ring_later, &b), 0);
    cr_assert(cq_doorbell_sleep(&b, CQ_DOORBELL_SLEEP_MAX_MS));
    pthread_join(th, NULL);
    cq_doorbell_fini(&b);
}

/* ---- a consumer service ------------------------------------------------------------- */

struct consumer {
    struct cq_spsc ring; /* uint64_t items */
    struct cq_doorbell bell;
    struct cq_health_board *board;
    struct cq_service *svc;
    _Atomic uint64_t got, sum, steps;
    _Atomic int64_t timer_at; /* real monotonic ms the timer is due; 0 = none */
    _Atomic int64_t fired_at; /* when the step saw it due; 0 = not yet */
    /* The worst interleaving, forced: has_work pushes an item itself (as if
     * the producer's push landed right after the consumer looked) and says
     * there is none. */
    _Atomic int inject;
    _Atomic uint64_t looks, looks_unarmed; /* has_work calls; of those, not armed */
};

static int consumer_step(void *ctx, int64_t now)
{
    struct consumer *c = ctx;
    (void)now;
    atomic_fetch_add(&c->steps, 1);
    uint64_t v;
    while (cq_spsc_pop(&c->ring, &v)) {
        atomic_fetch_add(&c->sum, v);
        atomic_fetch_add(&c->got, 1);
    }
    int64_t at = atomic_load(&c->timer_at);
    if (at != 0 && cq_time_mono_ms() >= at) {
        atomic_store(&c->fired_at, cq_time_mono_ms());
        atomic_store(&c->timer_at, 0);
    }
    return 0;
}

static bool consumer_has_work(void *ctx)
{
    struct consumer *c = ctx;
    atomic_fetch_add(&c->looks, 1);
    if (!atomic_load(&c->bell.sleeping)) {
        atomic_fetch_add(&c->looks_unarmed, 1);
    }
    bool found = cq_spsc_peek(&c->ring) != NULL;
    if (!found && atomic_load(&c->inject) > 0) {
        atomic_fetch_sub(&c->inject, 1);
        uint64_t v = 1000;
        cq_spsc_push(&c->ring, &v); /* the producer is idle meanwhile */
    }
    return found;
}

static int64_t consumer_next_timer_ms(void *ctx, int64_t now)
{
    struct consumer *c = ctx;
    (void)now;
    int64_t at = atomic_load(&c->timer_at);
    if (at == 0) {
        return 3600000;
    }
    int64_t wait = at - cq_time_mono_ms();
    return wait < 0 ? 0 : wait;
}

static const struct cq_service_ops consumer_ops = {
    .id = CQ_SVC_TRADER,
    .tick_ms = 60000, /* never comes during a test: only the doorbell wakes */
    .step = consumer_step,
    .has_work = consumer_has_work,
    .next_timer_ms = consumer_next_timer_ms,
};

static void consumer_start(struct consumer *c, size_t capacity, int64_t timer_in_ms)
{
    memset(c, 0, sizeof(*c));
    log_open();
    cr_assert_eq(cq_spsc_init(&c->ring, capacity, sizeof(uint64_t)), 0);
    cr_assert_eq(cq_doorbell_init(&c->bell, NULL), 0);
    cq_spsc_set_consumer_bell(&c->ring, &c->bell);
    c->board = cq_health_board_new(NULL, NULL);
    cr_assert_not_null(c->board);
    if (timer_in_ms > 0) {
        atomic_store(&c->timer_at, cq_time_mono_ms() + timer_in_ms);
    }
    struct cq_err err;
    c->svc = cq_service_new(&consumer_ops, c, c->board, NULL, &err);
    cr_assert_not_null(c->svc, "%s", err.message);
    cq_service_set_doorbell(c->svc, &c->bell);
    cr_assert_eq(cq_service_start(c->svc, &err), 0, "%s", err.message);
}

static void consumer_stop(struct consumer *c)
{
    cq_service_request_stop(c->svc);
    cr_assert_eq(cq_service_join(c->svc, WAKE_BOUND_MS), 0);
    cq_service_free(c->svc);
    cq_health_board_free(c->board);
    cq_spsc_fini(&c->ring);
    cq_doorbell_fini(&c->bell);
    cq_log_close();
}

/* Wait (bounded) until the consumer sleeps in poll(2) with nothing to do. */
static void wait_asleep(struct consumer *c, uint64_t sleeps_before)
{
    for (int i = 0; i < WAKE_BOUND_MS; i++) {
        if (atomic_load(&c->bell.sleeps) > sleeps_before && atomic_load(&c->bell.sleeping)) {
            cq_time_sleep_ms(20); /* well inside poll(2) now, most likely */
            return;
        }
        cq_time_sleep_ms(1);
    }
    cr_assert_fail("the consumer never went to sleep");
}

Test(doorbell, a_push_wakes_a_sleeping_consumer)
{
    struct consumer c;
    consumer_start(&c, 64, 0);
    wait_asleep(&c, 0);
    uint64_t steps = atomic_load(&c.steps);
    int64_t t0 = cq_time_mono_ms();
    uint64_t v = 42;
    cr_assert(cq_spsc_push(&c.ring, &v));
    while (atomic_load(&c.got) < 1 && cq_time_mono_ms() - t0 < WAKE_BOUND_MS) {
        cq_time_sleep_ms(1);
    }
    int64_t took = cq_time_mono_ms() - t0;
    cr_assert_eq(atomic_load(&c.got), 1, "not taken within %d ms (the tick is 60 s)",
                 WAKE_BOUND_MS);
    cr_assert_eq(atomic_load(&c.sum), 42);
    cr_assert_lt(took, WAKE_BOUND_MS);
    cr_assert_eq(atomic_load(&c.bell.rings), 1, "the push rang once");
    cr_assert_geq(atomic_load(&c.bell.woken), 1);
    cr_assert_eq(atomic_load(&c.steps), steps + 1, "one wake, one step");
    consumer_stop(&c);
}

Test(doorbell, a_stop_wakes_a_sleeping_consumer)
{
    struct consumer c;
    consumer_start(&c, 64, 0);
    wait_asleep(&c, 0);
    int64_t t0 = cq_time_mono_ms();
    cq_service_request_stop(c.svc);
    cr_assert_eq(cq_service_join(c.svc, WAKE_BOUND_MS), 0, "stop did not wake the consumer");
    cr_assert_lt(cq_time_mono_ms() - t0, WAKE_BOUND_MS);
    cr_assert_geq(atomic_load(&c.bell.woken), 1, "woken by the ring, not a timeout");
    consumer_stop(&c);
}

Test(doorbell, the_timer_wakes_a_sleeping_consumer)
{
    struct consumer c;
    int64_t t0 = cq_time_mono_ms();
    consumer_start(&c, 64, 300);
    int64_t due = atomic_load(&c.timer_at);
    while (atomic_load(&c.fired_at) == 0 && cq_time_mono_ms() - t0 < WAKE_BOUND_MS) {
        cq_time_sleep_ms(5);
    }
    int64_t fired = atomic_load(&c.fired_at);
    cr_assert_neq(fired, 0, "the timer never fired (the tick is 60 s)");
    cr_assert_geq(fired, due, "fired before it was due");
    cr_assert_eq(atomic_load(&c.bell.rings), 0, "nothing rang: the timeout woke it");
    /* Slept through to the timer: a handful of steps, not a tick's worth. */
    cr_assert_leq(atomic_load(&c.steps), 4, "%llu steps",
                  (unsigned long long)atomic_load(&c.steps));
    consumer_stop(&c);
}

/* Idle with a tick of 60 s, the consumer still beats in time for the
 * watchdog's stall limit (here 400 ms, CQ_WATCHDOG_STALL_MS allows 200):
 * it sleeps at most a quarter of the limit the watchdog last used. */
Test(doorbell, an_idle_consumer_beats_in_time_for_the_watchdog)
{
    struct consumer c;
    memset(&c, 0, sizeof(c));
    log_open();
    cr_assert_eq(cq_spsc_init(&c.ring, 64, sizeof(uint64_t)), 0);
    cr_assert_eq(cq_doorbell_init(&c.bell, NULL), 0);
    cq_spsc_set_consumer_bell(&c.ring, &c.bell);
    c.board = cq_health_board_new(NULL, NULL);
    struct cq_err err;
    c.svc = cq_service_new(&consumer_ops, &c, c.board, NULL, &err);
    cr_assert_not_null(c.svc, "%s", err.message);
    cq_service_set_doorbell(c.svc, &c.bell);
    /* The supervisor's loop calls the watchdog every iteration. */
    cr_assert_not(cq_service_watchdog(c.svc, cq_time_mono_ms(), 400));
    cr_assert_eq(cq_service_start(c.svc, &err), 0, "%s", err.message);
    int64_t t0 = cq_time_mono_ms();
    int64_t worst = 0;
    while (cq_time_mono_ms() - t0 < 1000) {
        int64_t age = cq_time_mono_ms() - cq_service_last_beat_ms(c.svc);
        worst = age > worst ? age : worst;
        cq_service_watchdog(c.svc, cq_time_mono_ms(), 400);
        cq_time_sleep_ms(10);
    }
    /* 100 ms sleeps: about 10 steps in the second; loose bounds. */
    cr_assert_geq(atomic_load(&c.steps), 4, "%llu steps in 1 s: it slept through",
                  (unsigned long long)atomic_load(&c.steps));
    cr_assert_lt(worst, 400, "the heartbeat aged %lld ms", (long long)worst);
    consumer_stop(&c);
}

/* A push right after the consumer looked and found nothing: the ring must
 * still wake it (it armed before looking). Deterministic: the push is made
 * from inside the look. Looking first and arming after loses this push for
 * the whole 60 s tick. */
Test(doorbell, a_push_just_after_the_look_still_wakes)
{
    struct consumer c;
    consumer_start(&c, 64, 0);
    wait_asleep(&c, 0);
    atomic_store(&c.inject, 1);
    uint64_t v = 1;
    cr_assert(cq_spsc_push(&c.ring, &v)); /* wakes it; its next look injects */
    int64_t t0 = cq_time_mono_ms();
    while (atomic_load(&c.got) < 2 && cq_time_mono_ms() - t0 < WAKE_BOUND_MS) {
        cq_time_sleep_ms(1);
    }
    cr_assert_eq(atomic_load(&c.inject), 0, "the injected push happened");
    cr_assert_eq(atomic_load(&c.got), 2, "the push made after the look was lost");
    cr_assert_eq(atomic_load(&c.sum), 1001);
    cr_assert_eq(atomic_load(&c.looks_unarmed), 0, "%llu of %llu looks before arming",
                 (unsigned long long)atomic_load(&c.looks_unarmed),
                 (unsigned long long)atomic_load(&c.looks));
    consumer_stop(&c);
}

/* A busy wait of a pseudo-random length (xorshift), so that pushes land
 * at every point of the consumer's way from its step to poll(2). */
static void jitter(uint64_t *state, unsigned max_spins)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    for (volatile unsigned i = 0; i < (unsigned)(*state % max_spins); i++) {
    }
}

/* Every push lands while the consumer is on its way to sleep: the producer
 * waits for each item to be taken, and a random moment more, before the
 * next. */
Test(doorbell, no_lost_wakeup_ping_pong, .timeout = 240)
{
    enum { ITEMS = 20000 };
    struct consumer c;
    consumer_start(&c, 64, 0);
    uint64_t want_sum = 0;
    uint64_t rnd = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 1; i <= ITEMS; i++) {
        jitter(&rnd, 4000);
        cr_assert(cq_spsc_push(&c.ring, &i));
        want_sum += i;
        int64_t t0 = cq_time_mono_ms();
        int spins = 0;
        while (atomic_load_explicit(&c.got, memory_order_acquire) < i) {
            if (++spins % 64 == 0) {
                sched_yield();
                if (cq_time_mono_ms() - t0 > WAKE_BOUND_MS) {
                    cr_assert_fail("item %llu not taken within %d ms: a lost wake-up",
                                   (unsigned long long)i, WAKE_BOUND_MS);
                }
            }
        }
    }
    cr_assert_eq(atomic_load(&c.got), ITEMS);
    cr_assert_eq(atomic_load(&c.sum), want_sum);
    /* At most one write per arm: a producer takes the flag down when it
     * rings. Not "per sleep": a consumer that armed and then found the item
     * (pushed while it looked) does not sleep, yet the producer that saw the
     * flag up has rung (seen once on a loaded CI-style run). */
    cr_assert_leq(atomic_load(&c.bell.rings), atomic_load(&c.bell.arms),
                  "at most one write per arm");
    cr_assert_leq(atomic_load(&c.bell.rings), (uint64_t)ITEMS, "at most one write per push");
    consumer_stop(&c);
}

/* A burst through a small ring: the producer meets a full ring and the
 * consumer an empty one many times. */
Test(doorbell, no_lost_wakeup_burst, .timeout = 240)
{
    enum { ITEMS = 200000 };
    struct consumer c;
    consumer_start(&c, 8, 0);
    uint64_t want_sum = 0;
    for (uint64_t i = 1; i <= ITEMS; i++) {
        int64_t t0 = cq_time_mono_ms();
        while (!cq_spsc_push(&c.ring, &i)) {
            sched_yield();
            if (cq_time_mono_ms() - t0 > WAKE_BOUND_MS) {
                cr_assert_fail("ring full for %d ms at item %llu: the consumer missed a "
                               "wake-up",
                               WAKE_BOUND_MS, (unsigned long long)i);
            }
        }
        want_sum += i;
        if (i % 997 == 0) {
            cq_time_sleep_ms(0); /* let the consumer run dry and go to sleep now and then */
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
    int64_t t0 = cq_time_mono_ms();
    while (atomic_load(&c.got) < ITEMS && cq_time_mono_ms() - t0 < WAKE_BOUND_MS) {
        cq_time_sleep_ms(1);
    }
    cr_assert_eq(atomic_load(&c.got), ITEMS, "%llu of %d items: a lost wake-up",
                 (unsigned long long)atomic_load(&c.got), ITEMS);
    cr_assert_eq(atomic_load(&c.sum), want_sum);
    consumer_stop(&c);
}

/* ---- ARES idle ------------------------------------------------------------------------ */

static long voluntary_switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw;
}

static struct cq_config *load_config(void)
{
    char *const envp[] = {"CQ_SYMBOLS=BTCUSDT", "CQ_STRATEGY=ema_cross",
                          "CQ_STRATEGY_PARAMS=fast=2,slow=3", NULL};
    struct cq_config_report rep;
    struct cq_config_load_options lopt = {.file_path = NULL, .envp = envp};
    struct cq_config *cfg = cq_config_load(&lopt, &rep);
    cr_assert_not_null(cfg, "config: %s", rep.errors[0].message);
    return cfg;
}

static struct cq_ares *ares_start(struct cq_config *cfg, struct cq_health_board *board,
                                  struct cq_spsc *in, struct cq_spsc *out)
{
    cr_assert_eq(cq_spsc_init(in, 64, sizeof(struct cq_market_event)), 0);
    cr_assert_eq(cq_spsc_init(out, 64, sizeof(struct cq_signal)), 0);
    struct cq_ares_options ao = {.cfg = cfg,
                                 .board = board,
                                 .from_feeder = in,
                                 .to_trader = out,
                                 .journal = NULL,
                                 .clock = NULL};
    struct cq_err err;
    struct cq_ares *a = cq_ares_new(&ao, &err);
    cr_assert_not_null(a, "%s", err.message);
    cr_assert_eq(cq_service_start(cq_ares_service(a), NULL), 0);
    return a;
}

/* The doorbell a ring's consumer attached, once its loop sleeps on it. */
static struct cq_doorbell *wait_bell_asleep(struct cq_spsc *r)
{
    for (int i = 0; i < WAKE_BOUND_MS; i++) {
        struct cq_doorbell *b = atomic_load(&r->consumer_bell);
        if (b != NULL && atomic_load(&b->sleeps) > 0 && atomic_load(&b->sleeping)) {
            return b;
        }
        cq_time_sleep_ms(1);
    }
    cr_assert_fail("no consumer sleeps on the ring's doorbell");
    return NULL;
}

/* With the consumer asleep, push one message and wait (bounded) until the
 * ring is drained and the doorbell counted a wake-up by a ring. The
 * consumer's health timer may wake it between the look and the push (then
 * the push rings nothing): up to 5 tries, one must be woken by the ring. */
static void push_and_see_it_woken(struct cq_spsc *r, const void *msg, const char *who)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        struct cq_doorbell *b = wait_bell_asleep(r);
        uint64_t woken = atomic_load(&b->woken);
        cr_assert(cq_spsc_push(r, msg));
        int64_t t0 = cq_time_mono_ms();
        while ((cq_spsc_size(r) > 0 || atomic_load(&b->woken) == woken) &&
               cq_time_mono_ms() - t0 < 1000) {
            cq_time_sleep_ms(1);
        }
        cr_assert_eq(cq_spsc_size(r), 0, "%s did not take the message", who);
        if (atomic_load(&b->woken) > woken) {
            return;
        }
    }
    cr_assert_fail("%s was never woken by a push's ring (5 tries)", who);
}

Test(doorbell, ares_sleeps_on_its_doorbell_and_a_push_wakes_it)
{
    log_open();
    struct cq_config *cfg = load_config();
    struct cq_health_board *board = cq_health_board_new(NULL, NULL);
    struct cq_spsc in, out;
    struct cq_ares *a = ares_start(cfg, board, &in, &out);
    struct cq_doorbell *b = wait_bell_asleep(&in);
    cr_assert_eq(atomic_load(&out.producer_bell), b, "ARES sleeps for room on the same bell");
    struct cq_market_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CQ_MARKET_BOOK;
    ev.symbol_idx = 0;
    ev.recv_mono_ms = cq_time_mono_ms();
    push_and_see_it_woken(&in, &ev, "ARES");
    cq_service_request_stop(cq_ares_service(a));
    cr_assert_eq(cq_service_join(cq_ares_service(a), WAKE_BOUND_MS), 0);
    cq_ares_free(a);
    cr_assert_null(atomic_load(&in.consumer_bell), "detached on free");
    cr_assert_null(atomic_load(&out.producer_bell), "detached on free");
    cq_spsc_fini(&in);
    cq_spsc_fini(&out);
    cq_health_board_free(board);
    cq_config_unref(cfg);
    cq_log_close();
}

Test(doorbell, the_trader_sleeps_on_one_doorbell_for_both_rings)
{
    log_open();
    struct cq_config *cfg = load_config();
    struct cq_health_board *board = cq_health_board_new(NULL, NULL);
    struct cq_spsc user_events, signals;
    cr_assert_eq(cq_spsc_init(&user_events, 16, sizeof(struct cq_user_event)), 0);
    cr_assert_eq(cq_spsc_init(&signals, 16, sizeof(struct cq_signal)), 0);
    struct cq_err err;
    /* the trader needs its journal (intents): one in a temporary directory */
    char jdir[] = "/tmp/cq-doorbell-trader-XXXXXX";
    cr_assert_not_null(mkdtemp(jdir));
    struct cq_journal_options jo = {.dir = jdir, .fsync = CQ_JOURNAL_FSYNC_OFF};
    struct cq_journal *j = cq_journal_open(&jo, NULL, &err);
    cr_assert_not_null(j, "%s", err.message);
    cr_assert_eq(cq_journal_start(j, &err), 0, "%s", err.message);
    struct cq_trader_options to = {.cfg = cfg,
                                   .board = board,
                                   .user_events = &user_events,
                                   .signals = &signals,
                                   .journal = j,
                                   .journal_dir = jdir,
                                   .rest_url = "http://127.0.0.1:9"}; /* nothing listens */
    struct cq_trader *t = cq_trader_new(&to, &err);
    cr_assert_not_null(t, "%s", err.message);
    cr_assert_eq(cq_service_start(cq_trader_service(t), NULL), 0);
    struct cq_doorbell *b = wait_bell_asleep(&signals);
    cr_assert_eq(atomic_load(&user_events.consumer_bell), b, "one doorbell for both rings");
    struct cq_signal sig;
    memset(&sig, 0, sizeof(sig));
    sig.test = true;
    push_and_see_it_woken(&signals, &sig, "the trader (signal)");
    struct cq_user_event ue;
    memset(&ue, 0, sizeof(ue));
    push_and_see_it_woken(&user_events, &ue, "the trader (user event)");
    cq_service_request_stop(cq_trader_service(t));
    cr_assert_eq(cq_service_join(cq_trader_service(t), WAKE_BOUND_MS), 0);
    cq_trader_free(t);
    cr_assert_eq(cq_journal_stop(j, &err), 0);
    cq_journal_free(j);
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", jdir);
    cr_assert_eq(system(rm), 0);
    cr_assert_null(atomic_load(&signals.consumer_bell), "detached on free");
    cr_assert_null(atomic_load(&user_events.consumer_bell), "detached on free");
    cq_spsc_fini(&user_events);
    cq_spsc_fini(&signals);
    cq_health_board_free(board);
    cq_config_unref(cfg);
    cq_log_close();
}

/* Idle (no market data), ARES wakes for its health record (4 per second),
 * not every 5 ms (200 per second before the doorbell). */
Test(doorbell, ares_idle_does_not_poll)
{
    log_open();
    struct cq_config *cfg = load_config();
    struct cq_health_board *board = cq_health_board_new(NULL, NULL);
    struct cq_spsc in, out;
    struct cq_ares *a = ares_start(cfg, board, &in, &out);
    cq_time_sleep_ms(100);
    long before = voluntary_switches();
    cq_time_sleep_ms(1000);
    long switches = voluntary_switches() - before;
    /* The test thread's own sleep is 1; ARES's health timer 4; slack for
     * the log and anything else in the process. Polling every 5 ms: ~200. */
    cr_assert_lt(switches, 40, "%ld voluntary context switches in 1 s idle", switches);
    cq_service_request_stop(cq_ares_service(a));
    cr_assert_eq(cq_service_join(cq_ares_service(a), WAKE_BOUND_MS), 0);
    cq_ares_free(a);
    cq_spsc_fini(&in);
    cq_spsc_fini(&out);
    cq_health_board_free(board);
    cq_config_unref(cfg);
    cq_log_close();
}
