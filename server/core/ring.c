/* ring.c — the SPSC ring (see include/cq/spsc.h for the memory-order rule). */
#include <stdlib.h>
#include <string.h>

#include "cq/spsc.h"

int cq_spsc_init(struct cq_spsc *r, size_t capacity, size_t elem_size)
{
    size_t cap = 2;
    if (capacity > ((size_t)1 << 30) || elem_size == 0 || elem_size > 65536) {
        return -CQ_EINVAL;
    }
    while (cap < capacity) {
        cap <<= 1;
    }
    memset(r, 0, sizeof(*r));
    r->slots = calloc(cap, elem_size);
    if (r->slots == NULL) {
        return -CQ_ENOMEM;
    }
    r->mask = cap - 1;
    r->elem_size = elem_size;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->pushed, 0);
    atomic_init(&r->full, 0);
    atomic_init(&r->high_water, 0);
    atomic_init(&r->consumer_bell, NULL);
    atomic_init(&r->producer_bell, NULL);
    return 0;
}

void cq_spsc_fini(struct cq_spsc *r)
{
    free(r->slots);
    r->slots = NULL;
}

bool cq_spsc_push(struct cq_spsc *r, const void *elem)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* our own index */
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire); /* slot freed */
    size_t used = head - tail;
    if (used > r->mask) {
        atomic_fetch_add_explicit(&r->full, 1, memory_order_relaxed);
        return false;
    }
    memcpy(r->slots + (head & r->mask) * r->elem_size, elem, r->elem_size);
    atomic_store_explicit(&r->head, head + 1, memory_order_release); /* publish the bytes */
    atomic_fetch_add_explicit(&r->pushed, 1, memory_order_relaxed);
    if (used + 1 > atomic_load_explicit(&r->high_water, memory_order_relaxed)) {
        atomic_store_explicit(&r->high_water, used + 1, memory_order_relaxed);
    }
    /* After the head store: notify's seq_cst fence orders that store before
     * its load of the consumer's sleeping flag (doorbell.h). Acquire: the
     * doorbell's fields are seen as initialised by whoever attached it. */
    cq_doorbell_notify(atomic_load_explicit(&r->consumer_bell, memory_order_acquire));
    return true;
}

const void *cq_spsc_peek(struct cq_spsc *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed); /* our own index */
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire); /* bytes visible */
    if (head == tail) {
        return NULL;
    }
    return r->slots + (tail & r->mask) * r->elem_size;
}

bool cq_spsc_pop(struct cq_spsc *r, void *out)
{
    const void *slot = cq_spsc_peek(r);
    if (slot == NULL) {
        return false;
    }
    memcpy(out, slot, r->elem_size);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release); /* slot reusable */
    /* After the tail store, as push does after the head store. */
    cq_doorbell_notify(atomic_load_explicit(&r->producer_bell, memory_order_acquire));
    return true;
}

size_t cq_spsc_size(const struct cq_spsc *r)
{
    /* Tail first, then head. The consumer only ever stores a tail it has
     * read a head at or past (acquire on both sides carries that over), so
     * the head loaded after this tail is never behind it: no wrap-around
     * when a pop lands between the two loads (loaded the other way round,
     * a size read from a third thread came out near 2^64). The tail may be
     * stale by the time head is read, so head - tail can exceed what the
     * ring ever held at one instant: clamp to the capacity. */
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t used = head - tail;
    return used > r->mask + 1 ? r->mask + 1 : used;
}

size_t cq_spsc_capacity(const struct cq_spsc *r)
{
    return r->mask + 1;
}

bool cq_spsc_has_room(const struct cq_spsc *r)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* our own index */
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire); /* slot freed */
    return head - tail <= r->mask;
}

void cq_spsc_set_consumer_bell(struct cq_spsc *r, struct cq_doorbell *bell)
{
    atomic_store_explicit(&r->consumer_bell, bell, memory_order_release); /* bell initialised */
}

void cq_spsc_set_producer_bell(struct cq_spsc *r, struct cq_doorbell *bell)
{
    atomic_store_explicit(&r->producer_bell, bell, memory_order_release); /* bell initialised */
}
