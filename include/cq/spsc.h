/*
 * spsc.h — a bounded single-producer/single-consumer ring of fixed-size
 * messages, copied in and out (PipeWire's spa_ringbuffer idea, minus the
 * byte stream). The producer thread calls push, the consumer thread pop;
 * any thread may read the counters. Capacity is a power of two.
 *
 * Full policy is the caller's: cq_spsc_push returns false when full, and the
 * producer either coalesces (market data), retries later (backpressure), or
 * counts a drop. The ring itself never blocks and never allocates after init.
 *
 * Doorbells (include/cq/doorbell.h): a ring may carry its consumer's
 * doorbell, which a push rings when the consumer may be sleeping, and its
 * producer's, which a pop rings when the producer may be sleeping for room.
 * Without doorbells (the default) push and pop are as before.
 */
#ifndef CQ_RING_H
#define CQ_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/doorbell.h"

struct cq_spsc {
    /* head: next slot to write (producer); tail: next slot to read
     * (consumer). Each side stores its own index with release and loads the
     * other's with acquire, so a slot's bytes are visible before its index. */
    _Atomic size_t head;
    _Atomic size_t tail;
    size_t mask; /* capacity - 1 */
    size_t elem_size;
    unsigned char *slots;      /* owned */
    _Atomic uint64_t pushed;   /* totals, for metrics */
    _Atomic uint64_t full;     /* push attempts that found the ring full */
    _Atomic size_t high_water; /* most messages ever waiting */
    /* Borrowed doorbells, NULL = none. Set with the functions below; loaded
     * with acquire by the side that rings them, so one set while the other
     * side runs is seen whole. */
    struct cq_doorbell *_Atomic consumer_bell; /* rung after a push */
    struct cq_doorbell *_Atomic producer_bell; /* rung after a pop */
};

/* capacity is rounded up to a power of two (>= 2). */
int cq_spsc_init(struct cq_spsc *r, size_t capacity, size_t elem_size) CQ_WUR;
void cq_spsc_fini(struct cq_spsc *r);

/* Producer only. false when full (counted in r->full). */
bool cq_spsc_push(struct cq_spsc *r, const void *elem);
/* Consumer only. false when empty. */
bool cq_spsc_pop(struct cq_spsc *r, void *out);
/* Consumer only: the oldest message without removing it, or NULL. */
const void *cq_spsc_peek(struct cq_spsc *r);

/* Any thread: messages waiting (a snapshot, between 0 and the capacity;
 * while both sides run it may lag either of them). */
size_t cq_spsc_size(const struct cq_spsc *r);
size_t cq_spsc_capacity(const struct cq_spsc *r);

/* Producer only: is there room for one more message? (It can only grow
 * until the producer pushes.) */
bool cq_spsc_has_room(const struct cq_spsc *r);

/* The consumer's doorbell, rung by cq_spsc_push when the consumer may be
 * sleeping; the producer's, rung by cq_spsc_pop when the producer may be
 * sleeping for room. Borrowed: NULL detaches; detach before freeing the
 * doorbell while the other side may still run. Any thread. */
void cq_spsc_set_consumer_bell(struct cq_spsc *r, struct cq_doorbell *bell);
void cq_spsc_set_producer_bell(struct cq_spsc *r, struct cq_doorbell *bell);

#endif /* CQ_RING_H */
