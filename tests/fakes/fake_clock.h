/*
 * fake_clock.h — a settable struct cq_clock for tests (header-only).
 *
 *   struct fake_clock fc = FAKE_CLOCK_INIT(1000, 1763683200000000LL);
 *   struct cq_clock c = fake_clock_as_clock(&fc);
 *   fc.mono_ms += 5000;  // time passes
 */
#ifndef CQ_TEST_FAKE_CLOCK_H
#define CQ_TEST_FAKE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "cq/clock.h"

struct fake_clock {
    _Atomic int64_t mono_ms;
    _Atomic int64_t wall_us;
};

#define FAKE_CLOCK_INIT(mono, wall)                                                                \
    {                                                                                              \
        (mono), (wall)                                                                             \
    }

static inline int64_t fake_clock_mono_ms_(void *ctx)
{
    return atomic_load(&((struct fake_clock *)ctx)->mono_ms);
}

static inline int64_t fake_clock_wall_us_(void *ctx)
{
    return atomic_load(&((struct fake_clock *)ctx)->wall_us);
}

static inline struct cq_clock fake_clock_as_clock(struct fake_clock *fc)
{
    struct cq_clock c = {fake_clock_mono_ms_, fake_clock_wall_us_, fc};
    return c;
}

/* Advance both clocks by ms. */
static inline void fake_clock_advance_ms(struct fake_clock *fc, int64_t ms)
{
    atomic_fetch_add(&fc->mono_ms, ms);
    atomic_fetch_add(&fc->wall_us, ms * 1000);
}

#endif /* CQ_TEST_FAKE_CLOCK_H */
