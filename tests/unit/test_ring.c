/*
 * test_ring.c — the SPSC ring: capacity rounding, full/empty edges, FIFO
 * order, counters, and a two-thread run of a million messages checked for
 * order and integrity.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>

#include "cq/spsc.h"

struct msg {
    uint64_t seq;
    uint64_t check; /* seq * a constant: torn copies show up */
};

Test(ring, capacity_rounds_up_and_edges_hold)
{
    struct cq_spsc r;
    cr_assert_eq(cq_spsc_init(&r, 5, sizeof(struct msg)), 0);
    cr_expect_eq(cq_spsc_capacity(&r), 8);
    struct msg m = {0, 0};
    cr_expect_not(cq_spsc_pop(&r, &m), "empty ring pops nothing");
    cr_expect_null(cq_spsc_peek(&r));
    for (uint64_t i = 0; i < 8; i++) {
        m.seq = i;
        cr_expect(cq_spsc_push(&r, &m), "push %llu", (unsigned long long)i);
    }
    m.seq = 99;
    cr_expect_not(cq_spsc_push(&r, &m), "a full ring refuses");
    cr_expect_eq(atomic_load(&r.full), 1);
    cr_expect_eq(cq_spsc_size(&r), 8);
    cr_expect_eq(atomic_load(&r.high_water), 8);
    for (uint64_t i = 0; i < 8; i++) {
        cr_assert(cq_spsc_pop(&r, &m));
        cr_expect_eq(m.seq, i, "FIFO order");
    }
    cr_expect_eq(cq_spsc_size(&r), 0);
    cr_expect_eq(atomic_load(&r.pushed), 8);
    cq_spsc_fini(&r);
    cr_expect_neq(cq_spsc_init(&r, 4, 0), 0, "zero-size elements are refused");
}

#define N_MESSAGES 1000000ULL

static void *producer(void *arg)
{
    struct cq_spsc *r = arg;
    for (uint64_t i = 0; i < N_MESSAGES;) {
        struct msg m = {i, i * 0x9E3779B97F4A7C15ULL};
        if (cq_spsc_push(r, &m)) {
            i++;
        }
    }
    return NULL;
}

Test(ring, two_threads_keep_order_and_bytes)
{
    struct cq_spsc r;
    cr_assert_eq(cq_spsc_init(&r, 1024, sizeof(struct msg)), 0);
    pthread_t t;
    pthread_create(&t, NULL, producer, &r);
    uint64_t expect = 0;
    while (expect < N_MESSAGES) {
        struct msg m;
        if (cq_spsc_pop(&r, &m)) {
            cr_assert_eq(m.seq, expect, "out of order at %llu", (unsigned long long)expect);
            cr_assert_eq(m.check, m.seq * 0x9E3779B97F4A7C15ULL, "torn message");
            expect++;
        }
    }
    pthread_join(t, NULL);
    cr_expect_eq(atomic_load(&r.pushed), N_MESSAGES);
    cr_expect_leq(atomic_load(&r.high_water), 1024);
    cq_spsc_fini(&r);
}
