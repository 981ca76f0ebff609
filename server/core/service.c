/*
 * service.c — the thread frame of an engine service, and the watchdog.
 *
 * Design:
 *   - One pthread per service, created by cq_service_start (the supervisor).
 *   - The loop: heartbeat (atomic store of the clock's monotonic ms), step,
 *     then wait tick_ms on a condition variable (CLOCK_MONOTONIC) that a stop
 *     request signals, so stopping never waits a whole tick.
 *   - A service with a doorbell (ARES, the trader) waits on it instead: it
 *     sleeps until a producer rings, a stop is requested (which rings too)
 *     or its next timer is due, at most tick_ms (doorbell.h).
 *   - A failing step ends the loop; the record says down / failed.
 *   - On exit the record says stopped / stopped (unless the step failed).
 *   - The watchdog (supervisor thread) reads last_beat and the stalled flag,
 *     both atomics, and may publish down / stalled on the service's behalf.
 *     No other state is shared.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/log.h"
#include "cq/service.h"

struct cq_service {
    const struct cq_service_ops *ops; /* borrowed */
    void *ctx;                        /* borrowed */
    struct cq_health_board *board;    /* borrowed */
    const struct cq_clock *clock;     /* borrowed */

    struct cq_doorbell *bell; /* borrowed; NULL = tick on the condvar */

    pthread_t thread;
    bool thread_created; /* supervisor thread only */
    bool joined;         /* supervisor thread only */

    pthread_mutex_t lock; /* guards the wait and done */
    pthread_cond_t cond;
    bool done;

    /* Relaxed is enough for the stop flag: the condvar's mutex orders the
     * wake-up; the flag is re-read every tick. */
    atomic_bool stop_requested;
    /* Heartbeat: written by the service thread, read by the watchdog. Only
     * the value matters (no data is published with it): relaxed. */
    _Atomic int64_t last_beat_ms;
    /* Set by the watchdog when it marks the service stalled; cleared by
     * whichever side sees the recovery first (compare-exchange). */
    atomic_bool stalled;
    /* The stall limit the watchdog last judged by (0 = not yet): a doorbell
     * service sleeps at most a quarter of it, so it beats in time for any
     * CQ_WATCHDOG_STALL_MS, reloaded ones included. Only the value
     * matters: relaxed. */
    _Atomic int64_t watch_stall_ms;
};

struct cq_service *cq_service_new(const struct cq_service_ops *ops, void *ctx,
                                  struct cq_health_board *board, const struct cq_clock *clock,
                                  struct cq_err *err)
{
    if (ops == NULL || ops->step == NULL || ops->tick_ms <= 0 || board == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, NULL, "service needs ops with a step, a tick and a board");
        return NULL;
    }
    struct cq_service *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating service %s",
                   cq_health_service_name(ops->id));
        return NULL;
    }
    s->ops = ops;
    s->ctx = ctx;
    s->board = board;
    s->clock = clock != NULL ? clock : cq_clock_system();
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&s->stop_requested, false);
    atomic_init(&s->last_beat_ms, cq_clock_mono_ms(s->clock));
    atomic_init(&s->stalled, false);
    atomic_init(&s->watch_stall_ms, 0);
    return s;
}

void cq_service_free(struct cq_service *s)
{
    if (s == NULL) {
        return;
    }
    if (s->thread_created && !s->joined) {
        cq_service_request_stop(s);
        pthread_join(s->thread, NULL);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void cq_service_heartbeat(struct cq_service *s)
{
    atomic_store_explicit(&s->last_beat_ms, cq_clock_mono_ms(s->clock), memory_order_relaxed);
    bool was = true;
    if (atomic_compare_exchange_strong(&s->stalled, &was, false)) {
        cq_log_warn(cq_health_service_name(s->ops->id), "service_recovered", NULL,
                    "%s is beating again after a stall", cq_health_service_name(s->ops->id));
    }
}

int64_t cq_service_last_beat_ms(const struct cq_service *s)
{
    return atomic_load_explicit(&s->last_beat_ms, memory_order_relaxed);
}

enum cq_service_id cq_service_id_of(const struct cq_service *s)
{
    return s->ops->id;
}

static void wait_tick(struct cq_service *s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->ops->tick_ms / 1000;
    deadline.tv_nsec += (long)(s->ops->tick_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!atomic_load_explicit(&s->stop_requested, memory_order_relaxed)) {
        if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void cq_service_set_doorbell(struct cq_service *s, struct cq_doorbell *bell)
{
    s->bell = bell;
}

/* Sleep on the doorbell until work, a stop request or the next timer. */
static void wait_bell(struct cq_service *s)
{
    int64_t timeout = s->ops->tick_ms;
    int64_t stall = atomic_load_explicit(&s->watch_stall_ms, memory_order_relaxed);
    if (stall > 0 && stall / 4 < timeout) {
        timeout = stall / 4; /* the heartbeat the watchdog needs */
    }
    if (s->ops->next_timer_ms != NULL) {
        int64_t due = s->ops->next_timer_ms(s->ctx, cq_clock_mono_ms(s->clock));
        timeout = due < 0 ? 0 : (due < timeout ? due : timeout);
    }
    cq_doorbell_arm(s->bell);
    /* After arming (doorbell.h): a stop or a push from here on rings. The
     * stop flag is relaxed: the doorbell's fences order it. */
    if (atomic_load_explicit(&s->stop_requested, memory_order_relaxed) ||
        (s->ops->has_work != NULL && s->ops->has_work(s->ctx))) {
        cq_doorbell_disarm(s->bell);
        return;
    }
    cq_doorbell_sleep(s->bell, timeout);
}

static void *service_main(void *arg)
{
    struct cq_service *s = arg;
    const char *name = cq_health_service_name(s->ops->id);
    int rc = 0;

    while (!atomic_load_explicit(&s->stop_requested, memory_order_relaxed)) {
        cq_service_heartbeat(s);
        rc = s->ops->step(s->ctx, cq_clock_mono_ms(s->clock));
        if (rc < 0) {
            break;
        }
        if (s->bell != NULL) {
            wait_bell(s);
        } else {
            wait_tick(s);
        }
    }
    if (s->ops->on_stop != NULL) {
        s->ops->on_stop(s->ctx);
    }
    if (rc < 0) {
        char detail[CQ_HEALTH_DETAIL_MAX];
        /* bounded: a service name and a cq_strerror text, far below 256 */
        snprintf(detail, sizeof(detail), "the %s loop ended: %s", name, cq_strerror(rc));
        cq_health_publish(s->board, s->ops->id, CQ_HEALTH_DOWN, false, "failed", detail, NULL);
        cq_log_error(name, "service_failed", json_pack("{s:s}", "error", cq_strerror(rc)),
                     "%s stopped on an error", name);
    } else {
        cq_health_publish(s->board, s->ops->id, CQ_HEALTH_STOPPED, false, "stopped",
                          "stopped on request", NULL);
    }
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int cq_service_start(struct cq_service *s, struct cq_err *err)
{
    if (s->thread_created) {
        return cq_err_set(err, CQ_ESTATE, 0, NULL, "%s already started",
                          cq_health_service_name(s->ops->id));
    }
    atomic_store(&s->last_beat_ms, cq_clock_mono_ms(s->clock));
    int e = pthread_create(&s->thread, NULL, service_main, s);
    if (e != 0) {
        return cq_err_set(err, CQ_EIO, e, "check the process's thread limit (ulimit -u)",
                          "cannot start the %s thread", cq_health_service_name(s->ops->id));
    }
    s->thread_created = true;
    return 0;
}

void cq_service_request_stop(struct cq_service *s)
{
    pthread_mutex_lock(&s->lock);
    atomic_store_explicit(&s->stop_requested, true, memory_order_relaxed);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->ops->stop_requested != NULL) {
        s->ops->stop_requested(s->ctx); /* cut blocking I/O short */
    }
    cq_doorbell_notify(s->bell); /* after the store; NULL: no doorbell */
}

int cq_service_join(struct cq_service *s, int64_t timeout_ms)
{
    if (!s->thread_created || s->joined) {
        return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->done) {
        if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    bool done = s->done;
    pthread_mutex_unlock(&s->lock);
    if (!done) {
        return -CQ_ETIMEDOUT;
    }
    pthread_join(s->thread, NULL);
    s->joined = true;
    return 0;
}

bool cq_service_is_stalled(int64_t now_mono_ms, int64_t last_beat_ms, int64_t stall_ms)
{
    return now_mono_ms - last_beat_ms > stall_ms;
}

bool cq_service_watchdog(struct cq_service *s, int64_t now_mono_ms, int64_t stall_ms)
{
    atomic_store_explicit(&s->watch_stall_ms, stall_ms, memory_order_relaxed);
    if (!s->thread_created || s->joined) {
        return false;
    }
    int64_t last = cq_service_last_beat_ms(s);
    if (!cq_service_is_stalled(now_mono_ms, last, stall_ms)) {
        return false;
    }
    bool was = false;
    if (atomic_compare_exchange_strong(&s->stalled, &was, true)) {
        const char *name = cq_health_service_name(s->ops->id);
        char detail[CQ_HEALTH_DETAIL_MAX];
        /* bounded: two int64 numbers and 30 characters, far below 256 */
        snprintf(detail, sizeof(detail), "no heartbeat for %lld ms (limit %lld ms)",
                 (long long)(now_mono_ms - last), (long long)stall_ms);
        cq_health_publish(s->board, s->ops->id, CQ_HEALTH_DOWN, false, "stalled", detail, NULL);
        cq_log_error(name, "service_stalled",
                     json_pack("{s:I,s:I}", "since_beat_ms", (json_int_t)(now_mono_ms - last),
                               "stall_ms", (json_int_t)stall_ms),
                     "%s missed its heartbeats: marked down", name);
    }
    return true;
}

int64_t cq_service_watchdog_due_ms(const struct cq_service *s, int64_t now_mono_ms,
                                   int64_t stall_ms)
{
    if (!s->thread_created || s->joined || atomic_load(&s->stalled)) {
        return -1;
    }
    /* cq_service_is_stalled: stalled once now - last > stall_ms */
    int64_t due = cq_service_last_beat_ms(s) + stall_ms + 1 - now_mono_ms;
    return due > 0 ? due : 0;
}
