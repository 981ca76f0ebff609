/*
 * backoff.h — a bounded exponential backoff with jitter for anything that
 * retries a request to the exchange (listen keys today; the WS API session
 * of issue 18 tomorrow). Header-only, plain value, no clock of its own: the
 * caller passes its monotonic time in (time is an input), so tests drive it
 * on a fake clock. Owned by one thread, like the state it guards.
 *
 *   struct cq_backoff b;
 *   cq_backoff_init(&b, 1000, 300000, seed);
 *   if (cq_backoff_due(&b, now)) {
 *       if (try() == 0) cq_backoff_reset(&b);
 *       else delay = cq_backoff_fail(&b, now, retry_after_ms);
 *   }
 *
 * The n-th failure in a row waits a delay drawn uniformly from
 * [d/2, d] with d = min(max_ms, base_ms * 2^(n-1)) ("equal jitter": never
 * less than half the nominal delay, so the rate stays bounded, and spread so
 * that many clients do not retry in step), and never less than a wait the
 * server asked for (Retry-After), itself capped at max_ms.
 */
#ifndef CQ_BACKOFF_H
#define CQ_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct cq_backoff {
    int64_t base_ms;    /* nominal delay after the first failure */
    int64_t max_ms;     /* cap on every delay */
    uint32_t failures;  /* in a row since the last success */
    int64_t next_at_ms; /* monotonic ms of the next allowed attempt; 0 = now */
    int64_t last_delay_ms;
    uint64_t rng; /* xorshift64 state for the jitter; never 0 */
};

static inline void cq_backoff_init(struct cq_backoff *b, int64_t base_ms, int64_t max_ms,
                                   uint64_t seed)
{
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->max_ms = max_ms >= b->base_ms ? max_ms : b->base_ms;
    b->failures = 0;
    b->next_at_ms = 0;
    b->last_delay_ms = 0;
    b->rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
}

/* May the next attempt run at now? */
static inline bool cq_backoff_due(const struct cq_backoff *b, int64_t now_ms)
{
    return now_ms >= b->next_at_ms;
}

/* Success: the next failure starts again from base_ms. */
static inline void cq_backoff_reset(struct cq_backoff *b)
{
    b->failures = 0;
    b->next_at_ms = 0;
    b->last_delay_ms = 0;
}

/* A failed attempt at now: schedules the next one and returns its delay in
 * ms. server_wait_ms (0 = none) is a wait the server asked for. */
static inline int64_t cq_backoff_fail(struct cq_backoff *b, int64_t now_ms, int64_t server_wait_ms)
{
    int64_t d = b->base_ms;
    for (uint32_t i = 0; i < b->failures && d < b->max_ms; i++) {
        d *= 2;
    }
    if (d > b->max_ms) {
        d = b->max_ms;
    }
    if (b->failures < UINT32_MAX) {
        b->failures++;
    }
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    int64_t half = d / 2;
    int64_t delay = d - half + (int64_t)(b->rng % (uint64_t)(half + 1)); /* [d - d/2, d] */
    if (server_wait_ms > delay) {
        delay = server_wait_ms < b->max_ms ? server_wait_ms : b->max_ms;
    }
    b->last_delay_ms = delay;
    b->next_at_ms = now_ms + delay;
    return delay;
}

#endif /* CQ_BACKOFF_H */
