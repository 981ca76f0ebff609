/*
 * doorbell.h — how a consumer thread sleeps until its producers have work
 * for it (ARCHITECTURE rule 8: consumers are woken, never on a fixed tick).
 *
 * One doorbell per consumer thread, shared by all its input rings (and by
 * the ring it produces into, when it waits for room there). It is an
 * eventfd plus a "consumer may be sleeping" flag: producers write the
 * eventfd only while the flag is up, so a busy consumer costs its producers
 * one fence and one load per push, never a system call.
 *
 * The protocol (a Dekker pair, each side's store then a sequentially
 * consistent fence then a load of the other side's variable):
 *
 *   consumer                           producer
 *   cq_doorbell_arm(b)                 publish the work (ring index store)
 *     sleeping = 1; fence(seq_cst)     cq_doorbell_notify(b)
 *   look for work (ring indexes)         fence(seq_cst); load sleeping
 *   found: cq_doorbell_disarm(b)         if up: take it down (exchange),
 *   none:  cq_doorbell_sleep(b, ms)             write the eventfd once
 *
 * The two fences are totally ordered, so either the consumer's look sees
 * the work or the producer's load sees the flag: no lost wake-up. A stop
 * request is work like any other (store the stop flag, then notify).
 *
 * Threads: init/fini by the owner before/after both sides run; arm,
 * disarm and sleep on the consumer's thread only; notify from any thread.
 */
#ifndef CQ_DOORBELL_H
#define CQ_DOORBELL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cq/common.h"

/* The longest single sleep, in ms: a caller's longer timeout is cut to this
 * (poll(2) takes an int; the caller's loop sleeps again). */
#define CQ_DOORBELL_SLEEP_MAX_MS 3600000

struct cq_doorbell {
    int fd;               /* eventfd, non-blocking, close-on-exec; -1 = none */
    atomic_bool sleeping; /* the consumer armed and may be in poll(2) */
    /* Counters, for /metrics and the tests (relaxed: values only). */
    _Atomic uint64_t arms;   /* times the consumer raised its flag */
    _Atomic uint64_t rings;  /* eventfd writes by producers */
    _Atomic uint64_t sleeps; /* sleeps that reached poll(2) */
    _Atomic uint64_t woken;  /* of those, ended by a ring (not the timeout) */
};

int cq_doorbell_init(struct cq_doorbell *b, struct cq_err *err) CQ_WUR;
void cq_doorbell_fini(struct cq_doorbell *b);

/* Consumer: raise the flag, then look for work. */
void cq_doorbell_arm(struct cq_doorbell *b);
/* Consumer: work was found after arming; do not sleep. */
void cq_doorbell_disarm(struct cq_doorbell *b);
/* Consumer, armed, no work found: sleep until a producer rings or
 * timeout_ms passes (0 = do not sleep, negative = as long as allowed, cut to
 * CQ_DOORBELL_SLEEP_MAX_MS). Disarms and drains the eventfd. Returns true
 * when woken by a ring. A stale ring (one that raced a timeout) may end a
 * later sleep early: callers re-check their work, so that costs one loop. */
bool cq_doorbell_sleep(struct cq_doorbell *b, int64_t timeout_ms);

/* Producer (any thread), after publishing the work: wake the consumer if
 * it may be sleeping. NULL is allowed (no doorbell: nothing to do). */
void cq_doorbell_notify(struct cq_doorbell *b);

#endif /* CQ_DOORBELL_H */
