/*
 * tsan_doorbell.c — the doorbells between service threads (issue 10) under
 * ThreadSanitizer: a producer, a middle service (as ARES: it consumes one
 * ring and produces into the next, and while an item waits for room it
 * sleeps until the next consumer's pop rings it) and a last service (as the
 * trader), all on real threads with struct cq_service loops whose tick is a
 * minute, so only the doorbells move the items. Items carry plain
 * (non-atomic) payload bytes, checked at the end: the rings' acquire/release
 * must carry them, and a lost wake-up shows as items not arriving within a
 * loose bound.
 */
#include <string.h>

#include "cq/doorbell.h"
#include "cq/health.h"
#include "cq/spsc.h"
#include "cq/service.h"
#include "tsan/tsan.h"

struct item {
    uint64_t seq;
    uint64_t payload[6]; /* plain bytes, written by the producer */
};

struct chain {
    struct tsan_t *t;
    struct cq_spsc first, second; /* producer -> middle -> last */
    struct cq_doorbell middle_bell, last_bell;
    struct cq_health_board *board;
    struct cq_service *middle, *last;
    /* middle's own state (its thread only) */
    struct item held;
    bool holding;
    /* last's own state; read by the test after the join */
    uint64_t got, sum, bad_payload;
    _Atomic uint64_t arrived; /* progress, for the waiting test */
};

static int middle_step(void *ctx, int64_t now)
{
    struct chain *c = ctx;
    (void)now;
    for (;;) {
        if (!c->holding) {
            if (!cq_spsc_pop(&c->first, &c->held)) {
                return 0;
            }
            c->holding = true;
        }
        if (!cq_spsc_push(&c->second, &c->held)) {
            return 0; /* no room: sleep until the last one pops */
        }
        c->holding = false;
    }
}

static bool middle_has_work(void *ctx)
{
    struct chain *c = ctx;
    return c->holding ? cq_spsc_has_room(&c->second) : cq_spsc_peek(&c->first) != NULL;
}

static int last_step(void *ctx, int64_t now)
{
    struct chain *c = ctx;
    (void)now;
    struct item it;
    while (cq_spsc_pop(&c->second, &it)) {
        for (int i = 0; i < 6; i++) {
            c->bad_payload += it.payload[i] != tsan_mix64(it.seq * 8 + (uint64_t)i);
        }
        c->got++;
        c->sum += it.seq;
        atomic_store_explicit(&c->arrived, c->got, memory_order_relaxed);
    }
    return 0;
}

static bool last_has_work(void *ctx)
{
    struct chain *c = ctx;
    return cq_spsc_peek(&c->second) != NULL;
}

static const struct cq_service_ops middle_ops = {
    .id = CQ_SVC_ARES, .tick_ms = 60000, .step = middle_step, .has_work = middle_has_work};
static const struct cq_service_ops last_ops = {
    .id = CQ_SVC_TRADER, .tick_ms = 60000, .step = last_step, .has_work = last_has_work};

static bool chain_start(struct tsan_t *t, struct chain *c, size_t cap_first, size_t cap_second)
{
    memset(c, 0, sizeof(*c));
    c->t = t;
    atomic_init(&c->arrived, 0);
    TSAN_ASSERT(t, cq_spsc_init(&c->first, cap_first, sizeof(struct item)) == 0, false, "ring");
    TSAN_ASSERT(t, cq_spsc_init(&c->second, cap_second, sizeof(struct item)) == 0, false, "ring");
    TSAN_ASSERT(t, cq_doorbell_init(&c->middle_bell, NULL) == 0, false, "doorbell");
    TSAN_ASSERT(t, cq_doorbell_init(&c->last_bell, NULL) == 0, false, "doorbell");
    c->board = cq_health_board_new(NULL, NULL);
    TSAN_ASSERT(t, c->board != NULL, false, "board");
    c->middle = cq_service_new(&middle_ops, c, c->board, NULL, NULL);
    c->last = cq_service_new(&last_ops, c, c->board, NULL, NULL);
    TSAN_ASSERT(t, c->middle != NULL && c->last != NULL, false, "services");
    /* as cq_ares_new and cq_trader_new attach them */
    cq_spsc_set_consumer_bell(&c->first, &c->middle_bell);
    cq_spsc_set_producer_bell(&c->second, &c->middle_bell);
    cq_spsc_set_consumer_bell(&c->second, &c->last_bell);
    cq_service_set_doorbell(c->middle, &c->middle_bell);
    cq_service_set_doorbell(c->last, &c->last_bell);
    TSAN_ASSERT(t, cq_service_start(c->last, NULL) == 0, false, "start");
    TSAN_ASSERT(t, cq_service_start(c->middle, NULL) == 0, false, "start");
    return true;
}

static void chain_stop(struct chain *c)
{
    cq_service_request_stop(c->middle);
    cq_service_request_stop(c->last);
    TSAN_EXPECT(c->t, cq_service_join(c->middle, 10000) == 0, "middle did not stop");
    TSAN_EXPECT(c->t, cq_service_join(c->last, 10000) == 0, "last did not stop");
    cq_service_free(c->middle);
    cq_service_free(c->last);
    cq_spsc_set_consumer_bell(&c->first, NULL);
    cq_spsc_set_producer_bell(&c->second, NULL);
    cq_spsc_set_consumer_bell(&c->second, NULL);
    cq_doorbell_fini(&c->middle_bell);
    cq_doorbell_fini(&c->last_bell);
    cq_spsc_fini(&c->first);
    cq_spsc_fini(&c->second);
    cq_health_board_free(c->board);
}

static void produce(struct chain *c, uint64_t items, bool wait_each)
{
    for (uint64_t s = 1; s <= items; s++) {
        struct item it = {.seq = s};
        for (int i = 0; i < 6; i++) {
            it.payload[i] = tsan_mix64(s * 8 + (uint64_t)i);
        }
        long spins = 0;
        while (!cq_spsc_push(&c->first, &it)) {
            tsan_sleep_ms(0);
            TSAN_ASSERT_V(c->t, ++spins < 10000000, "ring full for good at item %llu",
                          (unsigned long long)s);
        }
        if (wait_each) {
            TSAN_WAIT_FOR(atomic_load_explicit(&c->arrived, memory_order_relaxed) >= s, 10000);
            TSAN_ASSERT_V(c->t, atomic_load(&c->arrived) >= s,
                          "item %llu not through in 10 s: a lost wake-up", (unsigned long long)s);
        }
    }
}

static void check(struct chain *c, uint64_t items)
{
    TSAN_WAIT_FOR(atomic_load_explicit(&c->arrived, memory_order_relaxed) >= items, 10000);
    chain_stop(c); /* the joins order the last service's plain fields before these reads */
    TSAN_EXPECT(c->t, c->got == items, "%llu of %llu items arrived", (unsigned long long)c->got,
                (unsigned long long)items);
    TSAN_EXPECT(c->t, c->sum == items * (items + 1) / 2, "sum %llu", (unsigned long long)c->sum);
    TSAN_EXPECT(c->t, c->bad_payload == 0, "%llu payload words wrong",
                (unsigned long long)c->bad_payload);
}

/* Each item through both hops before the next: every push meets a
 * consumer on its way to sleep. */
static void doorbell_chain_ping_pong(struct tsan_t *t)
{
    struct chain c;
    if (!chain_start(t, &c, 4, 4)) {
        return;
    }
    produce(&c, 3000, true);
    check(&c, 3000);
}

/* A burst into rings of 2: the middle service keeps finding the second
 * ring full and sleeps until the last one's pop rings it. */
static void doorbell_chain_burst_backpressure(struct tsan_t *t)
{
    struct chain c;
    if (!chain_start(t, &c, 2, 2)) {
        return;
    }
    produce(&c, 50000, false);
    check(&c, 50000);
}

/* Both services asleep with nothing to do: a stop wakes them at once. */
static void doorbell_stop_wakes_sleepers(struct tsan_t *t)
{
    struct chain c;
    if (!chain_start(t, &c, 4, 4)) {
        return;
    }
    TSAN_WAIT_FOR(atomic_load(&c.middle_bell.sleeps) > 0 && atomic_load(&c.last_bell.sleeps) > 0,
                  10000);
    TSAN_EXPECT(t, atomic_load(&c.middle_bell.sleeps) > 0, "middle never slept");
    check(&c, 0); /* joins within 10 s although the tick is 60 s */
}

const struct tsan_case tsan_doorbell_cases[] = {
    {"doorbell_chain_ping_pong", doorbell_chain_ping_pong},
    {"doorbell_chain_burst_backpressure", doorbell_chain_burst_backpressure},
    {"doorbell_stop_wakes_sleepers", doorbell_stop_wakes_sleepers},
    {NULL, NULL},
};
