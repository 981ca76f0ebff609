/*
 * service.h — the thread frame every engine service runs in (feeder, ARES,
 * trader): a loop that heartbeats, calls the service's step function every
 * tick_ms, and stops on request; plus the watchdog verdict the supervisor
 * applies to it.
 *
 * Threads: cq_service_start creates the service's thread and only the
 * supervisor calls it (and cq_service_join). The step function runs on the
 * service's own thread and owns the service's state. cq_service_request_stop,
 * cq_service_last_beat_ms and cq_service_watchdog may be called from any
 * thread (atomics).
 */
#ifndef CQ_SERVICE_H
#define CQ_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/doorbell.h"
#include "cq/health.h"

struct cq_service_ops {
    enum cq_service_id id;
    int tick_ms; /* step period; the stop request interrupts the wait */
    /* One loop iteration on the service's thread. Returns 0, or a negative
     * CQ_E* code: the loop then ends and the service is marked down with
     * reason "failed". The step publishes its own health record. */
    int (*step)(void *ctx, int64_t now_mono_ms);
    /* Called once on the service's thread after the loop ends (may be NULL). */
    void (*on_stop)(void *ctx);
    /* Doorbell services (cq_service_set_doorbell): after each step the loop
     * arms the doorbell and sleeps until a producer rings it, a stop is
     * requested or the next timer is due; tick_ms is then only the longest
     * sleep, cut to a quarter of the stall limit the watchdog last used
     * (the heartbeat it needs). Both may be NULL; both run on the
     * service's thread.
     *   has_work       after arming: is work waiting (then no sleep)?
     *   next_timer_ms  ms until the service's next timer is due (0 = now) */
    bool (*has_work)(void *ctx);
    int64_t (*next_timer_ms)(void *ctx, int64_t now_mono_ms);
    /* Called by cq_service_request_stop on the CALLER's thread (may be
     * NULL): set a flag that cuts the service's blocking I/O short (the
     * trader's REST calls: cq_rest_options.abort), so the stop fits the
     * budget. Must not block or touch the service's state otherwise. */
    void (*stop_requested)(void *ctx);
};

struct cq_service;

/* ops, ctx, board and clock are borrowed for the life of the service. */
struct cq_service *cq_service_new(const struct cq_service_ops *ops, void *ctx,
                                  struct cq_health_board *board, const struct cq_clock *clock,
                                  struct cq_err *err);
/* Joins the thread if still running (after a stop request). NULL ok. */
void cq_service_free(struct cq_service *svc);

/* The consumer doorbell the loop sleeps on (see cq_service_ops); a stop
 * request rings it. Borrowed; set before cq_service_start. */
void cq_service_set_doorbell(struct cq_service *svc, struct cq_doorbell *bell);

int cq_service_start(struct cq_service *svc, struct cq_err *err) CQ_WUR;
void cq_service_request_stop(struct cq_service *svc);
/* Wait up to timeout_ms for the thread to end and join it. -CQ_ETIMEDOUT
 * if it did not end in time (the thread is then left to the process exit). */
int cq_service_join(struct cq_service *svc, int64_t timeout_ms) CQ_WUR;

/* A step that runs long calls this to show it is alive. Service thread. */
void cq_service_heartbeat(struct cq_service *svc);
int64_t cq_service_last_beat_ms(const struct cq_service *svc);
enum cq_service_id cq_service_id_of(const struct cq_service *svc);

/* Pure verdict: has a loop that last beat at last_beat_ms missed its
 * heartbeats for longer than stall_ms? */
bool cq_service_is_stalled(int64_t now_mono_ms, int64_t last_beat_ms, int64_t stall_ms);

/* Supervisor's watchdog: if the running service is stalled, mark it down
 * with reason "stalled" (logged once per stall as event "service_stalled")
 * and return true. A service that beats again is logged as
 * "service_recovered" and publishes its own record from then on. */
bool cq_service_watchdog(struct cq_service *svc, int64_t now_mono_ms, int64_t stall_ms);

/* When the watchdog next has something to judge, so the supervisor can sleep
 * until then instead of on a tick: milliseconds from now_mono_ms until this
 * service's last beat is older than stall_ms (0 = judge it now), or -1 when
 * there is nothing to wait for (not started, joined, or already marked
 * stalled: the service's own next beat clears that). Any thread. */
int64_t cq_service_watchdog_due_ms(const struct cq_service *svc, int64_t now_mono_ms,
                                   int64_t stall_ms);

#endif /* CQ_SERVICE_H */
