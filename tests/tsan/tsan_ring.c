/*
 * tsan_ring.c — the SPSC ring on real threads: order and checksums over
 * many messages, the full policy (a producer that retries never loses a
 * message; one that drops counts exactly what it dropped), and the size a
 * third thread reads while both sides run (never above the capacity).
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "cq/spsc.h"
#include "tsan/tsan.h"

#define RING_MESSAGES 200000ULL

/* The size test spins a third thread on two atomic loads; under TSan each is
 * a call, so it runs a quarter of the messages there (the wrap it guards
 * against is caught by the plain builds, where the loads are fast). */
#if defined(__SANITIZE_THREAD__)
#define SIZE_TEST_MESSAGES (RING_MESSAGES / 4)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIZE_TEST_MESSAGES (RING_MESSAGES / 4)
#endif
#endif
#ifndef SIZE_TEST_MESSAGES
#define SIZE_TEST_MESSAGES RING_MESSAGES
#endif

struct msg {
    uint64_t seq;
    uint64_t check;  /* tsan_mix64(seq): a torn copy shows up */
    uint64_t pad[2]; /* seq ^ check, ~seq: more bytes to tear */
};

static struct msg make_msg(uint64_t seq)
{
    struct msg m = {seq, tsan_mix64(seq), {0, ~seq}};
    m.pad[0] = seq ^ m.check;
    return m;
}

static bool msg_ok(const struct msg *m)
{
    return m->check == tsan_mix64(m->seq) && m->pad[0] == (m->seq ^ m->check) &&
           m->pad[1] == ~m->seq;
}

enum full_policy { RETRY, DROP };

struct ring_run {
    struct tsan_t *t;
    struct cq_spsc ring;
    uint64_t n;
    enum full_policy policy;
    atomic_bool consumer_go;   /* the consumer starts when this is set */
    atomic_bool producer_done; /* release: everything pushed is visible */
    atomic_bool stop_monitor;
    /* producer's side (read after join) */
    uint64_t refused, dropped, sent_sum;
    /* consumer's side (read after join) */
    uint64_t received, received_sum, last_seq;
    bool any_received;
    /* monitor's side */
    uint64_t size_reads, size_over_capacity;
    size_t worst_size;
};

static void *producer(void *arg)
{
    struct ring_run *r = arg;
    for (uint64_t i = 0; i < r->n;) {
        struct msg m = make_msg(i);
        if (cq_spsc_push(&r->ring, &m)) {
            r->sent_sum += m.check;
            i++;
            continue;
        }
        r->refused++;
        if (r->refused == 5) {
            /* A consumer held back until now: the full path has run. */
            atomic_store(&r->consumer_go, true);
        }
        if (r->policy == DROP) {
            r->dropped++;
            i++;
            sched_yield(); /* let the consumer drain some: not every message drops */
        } else {
            sched_yield();
        }
    }
    atomic_store_explicit(&r->producer_done, true, memory_order_release);
    return NULL;
}

static void *consumer(void *arg)
{
    struct ring_run *r = arg;
    while (!atomic_load(&r->consumer_go)) {
        sched_yield();
    }
    for (;;) {
        bool done = atomic_load_explicit(&r->producer_done, memory_order_acquire);
        const struct msg *peeked = cq_spsc_peek(&r->ring);
        if (peeked == NULL) {
            if (done) {
                break; /* done was read before peek found the ring empty */
            }
            sched_yield();
            continue;
        }
        uint64_t peeked_seq = peeked->seq;
        struct msg m;
        if (!cq_spsc_pop(&r->ring, &m) || m.seq != peeked_seq) {
            tsan__fail(r->t, __FILE__, __LINE__, "peek == pop",
                       "peek showed seq %llu, pop did not give it", (unsigned long long)peeked_seq);
            return NULL;
        }
        if (!msg_ok(&m)) {
            tsan__fail(r->t, __FILE__, __LINE__, "msg_ok", "torn message at seq %llu",
                       (unsigned long long)m.seq);
            return NULL;
        }
        bool in_order =
            r->policy == RETRY ? m.seq == r->received : (!r->any_received || m.seq > r->last_seq);
        if (!in_order) {
            tsan__fail(r->t, __FILE__, __LINE__, "order", "seq %llu after %llu (%llu received)",
                       (unsigned long long)m.seq, (unsigned long long)r->last_seq,
                       (unsigned long long)r->received);
            return NULL;
        }
        r->last_seq = m.seq;
        r->any_received = true;
        r->received++;
        r->received_sum += m.check;
    }
    return NULL;
}

static void *monitor(void *arg)
{
    struct ring_run *r = arg;
    size_t cap = cq_spsc_capacity(&r->ring);
    while (!atomic_load(&r->stop_monitor)) {
        size_t s = cq_spsc_size(&r->ring);
        r->size_reads++; /* no yield: the window between two loads is a few ns */
        if (s > cap) {
            r->size_over_capacity++;
            if (s > r->worst_size) {
                r->worst_size = s;
            }
        }
    }
    return NULL;
}

/* Run producer and consumer (and the size monitor if asked). With
 * prefill_until_full the consumer waits until the producer has found the
 * ring full 5 times, so the full path runs whatever the scheduling. */
static void run(struct tsan_t *t, struct ring_run *r, size_t capacity, uint64_t n,
                enum full_policy policy, bool with_monitor, bool prefill_until_full)
{
    memset(r, 0, sizeof(*r));
    r->t = t;
    r->n = n;
    r->policy = policy;
    atomic_init(&r->consumer_go, !prefill_until_full);
    atomic_init(&r->producer_done, false);
    atomic_init(&r->stop_monitor, false);
    TSAN_ASSERT_V(t, cq_spsc_init(&r->ring, capacity, sizeof(struct msg)) == 0, "init");
    pthread_t p, c, mon;
    pthread_create(&c, NULL, consumer, r);
    if (with_monitor) {
        pthread_create(&mon, NULL, monitor, r);
    }
    pthread_create(&p, NULL, producer, r);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    if (with_monitor) {
        atomic_store(&r->stop_monitor, true);
        pthread_join(mon, NULL);
    }
}

static void ring_spsc_order_and_checksums(struct tsan_t *t)
{
    static struct ring_run r;
    run(t, &r, 256, RING_MESSAGES, RETRY, false, false);
    TSAN_EXPECT(t, r.received == RING_MESSAGES, "received %llu of %llu",
                (unsigned long long)r.received, RING_MESSAGES);
    TSAN_EXPECT(t, r.received_sum == r.sent_sum, "checksum: sent %llx received %llx",
                (unsigned long long)r.sent_sum, (unsigned long long)r.received_sum);
    TSAN_EXPECT(t, atomic_load(&r.ring.pushed) == RING_MESSAGES, "pushed counter %llu",
                (unsigned long long)atomic_load(&r.ring.pushed));
    TSAN_EXPECT(t, atomic_load(&r.ring.full) == r.refused, "full counter %llu, refusals seen %llu",
                (unsigned long long)atomic_load(&r.ring.full), (unsigned long long)r.refused);
    TSAN_EXPECT(t, atomic_load(&r.ring.high_water) <= 256, "high water %zu",
                atomic_load(&r.ring.high_water));
    TSAN_EXPECT(t, cq_spsc_size(&r.ring) == 0, "ring not empty at the end");
    cq_spsc_fini(&r.ring);
}

/* Backpressure: a tiny ring, a producer that starts alone and so fills it,
 * then retries; nothing is lost or reordered. */
static void ring_full_policy_retry_loses_nothing(struct tsan_t *t)
{
    static struct ring_run r;
    run(t, &r, 2, RING_MESSAGES / 4, RETRY, false, true);
    TSAN_EXPECT(t, r.received == RING_MESSAGES / 4, "received %llu",
                (unsigned long long)r.received);
    TSAN_EXPECT(t, r.received_sum == r.sent_sum, "checksum differs");
    TSAN_EXPECT(t, r.refused >= 5, "refusals %llu", (unsigned long long)r.refused);
    TSAN_EXPECT(t, atomic_load(&r.ring.full) == r.refused, "full counter %llu, refusals %llu",
                (unsigned long long)atomic_load(&r.ring.full), (unsigned long long)r.refused);
    TSAN_EXPECT(t, atomic_load(&r.ring.high_water) == 2, "high water %zu (capacity 2)",
                atomic_load(&r.ring.high_water));
    cq_spsc_fini(&r.ring);
}

/* Drop policy (market data): every refusal is one message dropped and
 * counted; what arrives is in order and whole. */
static void ring_full_policy_drop_counts_exactly(struct tsan_t *t)
{
    static struct ring_run r;
    run(t, &r, 8, RING_MESSAGES / 4, DROP, false, true);
    TSAN_EXPECT(t, r.received + r.dropped == RING_MESSAGES / 4,
                "received %llu + dropped %llu != %llu", (unsigned long long)r.received,
                (unsigned long long)r.dropped, RING_MESSAGES / 4);
    TSAN_EXPECT(t, r.dropped >= 5, "dropped %llu", (unsigned long long)r.dropped);
    TSAN_EXPECT(t, r.received_sum == r.sent_sum, "checksum of what was pushed differs");
    TSAN_EXPECT(t, atomic_load(&r.ring.full) == r.dropped, "full counter %llu, dropped %llu",
                (unsigned long long)atomic_load(&r.ring.full), (unsigned long long)r.dropped);
    TSAN_EXPECT(t, atomic_load(&r.ring.pushed) == r.received, "pushed %llu, received %llu",
                (unsigned long long)atomic_load(&r.ring.pushed), (unsigned long long)r.received);
    cq_spsc_fini(&r.ring);
}

/* cq_spsc_size from a third thread (metrics) while both sides run: a
 * snapshot, but never more than the ring holds (it once loaded head before
 * tail, so a pop in between made it wrap to about 2^64). */
static void ring_size_from_a_third_thread_stays_in_bounds(struct tsan_t *t)
{
    static struct ring_run r;
    run(t, &r, 4, SIZE_TEST_MESSAGES, RETRY, true, false);
    TSAN_EXPECT(t, r.received == SIZE_TEST_MESSAGES, "received %llu",
                (unsigned long long)r.received);
    TSAN_EXPECT(t, r.received_sum == r.sent_sum, "checksum differs");
    TSAN_EXPECT(t, r.size_reads > 0, "the monitor never ran");
    TSAN_EXPECT(
        t, r.size_over_capacity == 0, "%llu of %llu size reads above the capacity 4 (worst %zu)",
        (unsigned long long)r.size_over_capacity, (unsigned long long)r.size_reads, r.worst_size);
    cq_spsc_fini(&r.ring);
}

const struct tsan_case tsan_ring_cases[] = {
    {"ring_spsc_order_and_checksums", ring_spsc_order_and_checksums},
    {"ring_full_policy_retry_loses_nothing", ring_full_policy_retry_loses_nothing},
    {"ring_full_policy_drop_counts_exactly", ring_full_policy_drop_counts_exactly},
    {"ring_size_from_a_third_thread_stays_in_bounds",
     ring_size_from_a_third_thread_stays_in_bounds},
    {NULL, NULL},
};
