/*
 * tsan.h — the plain-C concurrency test harness (see tsan_main.c for what
 * it is for and how to run it).
 *
 * A test is a function taking a struct tsan_t; it runs in the runner's own
 * process (no fork: ThreadSanitizer must see every thread) and reports
 * failures with TSAN_EXPECT / TSAN_ASSERT, which any of the test's threads
 * may call. Each module file exports a table of cases ended by {NULL, NULL}.
 */
#ifndef CQ_TESTS_TSAN_H
#define CQ_TESTS_TSAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tsan_t {
    const char *name;
    atomic_int failures; /* any thread may fail the test */
    char tmpdir[256];    /* a fresh directory, removed after the test passes */
};

struct tsan_case {
    const char *name;
    void (*fn)(struct tsan_t *t);
};

/* Print one diagnostic ("# file:line: cond: message") and count a failure.
 * Thread-safe. */
void tsan__fail(struct tsan_t *t, const char *file, int line, const char *cond, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* EXPECT records the failure and goes on; ASSERT also returns from the
 * calling function (the value given, or nothing: use TSAN_ASSERT_V in void
 * functions). The message is a printf format and its arguments. */
#define TSAN_EXPECT(t, cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tsan__fail((t), __FILE__, __LINE__, #cond, __VA_ARGS__);                               \
        }                                                                                          \
    } while (0)

#define TSAN_ASSERT(t, cond, ret, ...)                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tsan__fail((t), __FILE__, __LINE__, #cond, __VA_ARGS__);                               \
            return ret;                                                                            \
        }                                                                                          \
    } while (0)

#define TSAN_ASSERT_V(t, cond, ...)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tsan__fail((t), __FILE__, __LINE__, #cond, __VA_ARGS__);                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Helpers for the tests. */
void tsan_sleep_ms(long ms);
/* Poll cond every millisecond for up to ms (a loose real-time bound: the
 * tests only use it for "eventually", never to measure speed). */
#define TSAN_WAIT_FOR(cond, ms)                                                                    \
    do {                                                                                           \
        for (long tw_i_ = 0; tw_i_ < (ms) && !(cond); tw_i_++) {                                   \
            tsan_sleep_ms(1);                                                                      \
        }                                                                                          \
    } while (0)

/* A cheap mixing function for checksums (splitmix64's finaliser). */
static inline uint64_t tsan_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* The case tables, one per module file. */
extern const struct tsan_case tsan_ring_cases[];
extern const struct tsan_case tsan_journal_cases[];
extern const struct tsan_case tsan_health_cases[];
extern const struct tsan_case tsan_service_cases[];
extern const struct tsan_case tsan_doorbell_cases[];

#endif /* CQ_TESTS_TSAN_H */
