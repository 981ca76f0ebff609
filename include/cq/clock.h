/*
 * clock.h — time sources behind a small vtable, so tests can inject time.
 *
 * Two clocks: monotonic milliseconds (durations, freshness, timeouts) and wall
 * clock microseconds since the Unix epoch (timestamps shown to people).
 * cq_clock_system() is the real one; tests/fakes/fake_clock.h is a settable
 * one. Every function here may be called from any thread.
 */
#ifndef CQ_CLOCK_H
#define CQ_CLOCK_H

#include <stdint.h>
#include <stddef.h>

struct cq_clock {
    int64_t (*mono_ms)(void *ctx); /* monotonic, never goes back */
    int64_t (*wall_us)(void *ctx); /* Unix epoch, microseconds, UTC */
    void *ctx;                     /* borrowed */
};

/* The process's real clock (CLOCK_MONOTONIC, CLOCK_REALTIME). Static storage. */
const struct cq_clock *cq_clock_system(void);

static inline int64_t cq_clock_mono_ms(const struct cq_clock *c)
{
    return c->mono_ms(c->ctx);
}
static inline int64_t cq_clock_wall_us(const struct cq_clock *c)
{
    return c->wall_us(c->ctx);
}

/* One minute in milliseconds: the 1m candle's length, and "a minute" for
 * rate limits and retries. */
#define CQ_MS_PER_MINUTE INT64_C(60000)

/* Direct reads of the system clock. */
int64_t cq_time_mono_ms(void);
/* The same clock in microseconds (latency stamps: tick-to-order). */
int64_t cq_time_mono_us(void);
int64_t cq_time_wall_us(void);

/* Sleep ms milliseconds, resuming after a signal handler interrupts it;
 * ms <= 0 only gives the CPU away (a zero-length nanosleep). Blocks the
 * calling thread: never inside a library callback, and a consumer waits on
 * its doorbell instead. */
void cq_time_sleep_ms(int64_t ms);

/* "2026-11-21T11:16:00.123456Z" plus NUL. */
#define CQ_RFC3339_US_LEN 28

/* The range cq_time_rfc3339_us prints as is: 0000-01-01T00:00:00.000000Z
 * to 9999-12-31T23:59:59.999999Z, µs since the epoch. */
#define CQ_TIME_RFC3339_MIN_US ((int64_t)-62167219200000000)
#define CQ_TIME_RFC3339_MAX_US ((int64_t)253402300799999999)

/* Format wall_us as RFC 3339 UTC with microseconds into buf (at least
 * CQ_RFC3339_US_LEN bytes). Any int64 is accepted: a time outside
 * [CQ_TIME_RFC3339_MIN_US, CQ_TIME_RFC3339_MAX_US] is clamped to the nearer
 * bound, so the text is always 27 characters ending in "Z". Returns buf. */
char *cq_time_rfc3339_us(int64_t wall_us, char *buf, size_t buf_len);

/* Days since the Unix epoch of wall_us in UTC (for midnight rotation). */
int64_t cq_time_utc_day(int64_t wall_us);

#endif /* CQ_CLOCK_H */
