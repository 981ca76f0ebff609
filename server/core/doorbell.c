/* doorbell.c — eventfd doorbell (see include/cq/doorbell.h for the protocol). */
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cq/doorbell.h"

int cq_doorbell_init(struct cq_doorbell *b, struct cq_err *err)
{
    atomic_init(&b->sleeping, false);
    atomic_init(&b->arms, 0);
    atomic_init(&b->rings, 0);
    atomic_init(&b->sleeps, 0);
    atomic_init(&b->woken, 0);
    b->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the process's open file limit (ulimit -n)",
                          "cannot create a doorbell (eventfd)");
    }
    return 0;
}

void cq_doorbell_fini(struct cq_doorbell *b)
{
    if (b->fd >= 0) {
        close(b->fd);
    }
    b->fd = -1;
}

void cq_doorbell_arm(struct cq_doorbell *b)
{
    /* The flag goes up before the consumer looks at the ring indexes: the
     * seq_cst fence orders this store before those loads, and pairs with the
     * fence in cq_doorbell_notify (see the header). */
    atomic_fetch_add_explicit(&b->arms, 1, memory_order_relaxed);
    atomic_store_explicit(&b->sleeping, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

void cq_doorbell_disarm(struct cq_doorbell *b)
{
    /* Relaxed: a producer that already took the flag down writes the
     * eventfd anyway; that stale ring only ends a later sleep early. */
    atomic_store_explicit(&b->sleeping, false, memory_order_relaxed);
}

static void drain(struct cq_doorbell *b)
{
    uint64_t count;
    /* Non-blocking: EAGAIN when nothing was written; the value is unused. */
    ssize_t n = read(b->fd, &count, sizeof(count));
    (void)n;
}

bool cq_doorbell_sleep(struct cq_doorbell *b, int64_t timeout_ms)
{
    bool rung = false;
    if (timeout_ms != 0) {
        if (timeout_ms < 0 || timeout_ms > CQ_DOORBELL_SLEEP_MAX_MS) {
            timeout_ms = CQ_DOORBELL_SLEEP_MAX_MS;
        }
        atomic_fetch_add_explicit(&b->sleeps, 1, memory_order_relaxed);
        struct pollfd pfd = {.fd = b->fd, .events = POLLIN};
        /* EINTR (signals are blocked in service threads; a test thread may
         * get one) ends the sleep early: the caller re-checks its work. */
        rung = poll(&pfd, 1, (int)timeout_ms) == 1;
        if (rung) {
            atomic_fetch_add_explicit(&b->woken, 1, memory_order_relaxed);
        }
    }
    cq_doorbell_disarm(b);
    drain(b);
    return rung;
}

void cq_doorbell_notify(struct cq_doorbell *b)
{
    if (b == NULL) {
        return;
    }
    /* The work was stored before this fence; the flag is loaded after it.
     * Paired with the fence in cq_doorbell_arm: if this load misses the
     * flag, the consumer's look after its fence sees the work. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&b->sleeping, memory_order_relaxed)) {
        return; /* the consumer is awake and will see the work: no system call */
    }
    /* Take the flag down so that one sleep gets one write, however many
     * producers (or pushes) see it up. Relaxed: the eventfd write and the
     * consumer's poll order the wake-up; nothing is published with the flag. */
    if (!atomic_exchange_explicit(&b->sleeping, false, memory_order_relaxed)) {
        return;
    }
    atomic_fetch_add_explicit(&b->rings, 1, memory_order_relaxed);
    uint64_t one = 1;
    /* Fails only with EAGAIN when the counter would pass 2^64 - 2, which
     * cannot happen (each sleep drains it); nothing to do then anyway:
     * the consumer is already due to wake. */
    ssize_t n = write(b->fd, &one, sizeof(one));
    (void)n;
}
