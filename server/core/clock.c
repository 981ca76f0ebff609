/* clock.c — the system clock behind struct cq_clock, and time formatting. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cq/clock.h"

int64_t cq_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cq_time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cq_time_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cq_time_sleep_ms(int64_t ms)
{
    if (ms < 0) {
        ms = 0;
    }
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t sys_mono_ms(void *ctx)
{
    (void)ctx;
    return cq_time_mono_ms();
}

static int64_t sys_wall_us(void *ctx)
{
    (void)ctx;
    return cq_time_wall_us();
}

static const struct cq_clock system_clock = {sys_mono_ms, sys_wall_us, NULL};

const struct cq_clock *cq_clock_system(void)
{
    return &system_clock;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

char *cq_time_rfc3339_us(int64_t wall_us, char *buf, size_t buf_len)
{
    /* Clamped into years 0000..9999 (the four digits RFC 3339 has), so the
     * text is always 27 characters ending in Z and nothing overflows:
     * secs * 1000000 stays far inside int64 for these bounds. */
    if (wall_us < CQ_TIME_RFC3339_MIN_US) {
        wall_us = CQ_TIME_RFC3339_MIN_US;
    } else if (wall_us > CQ_TIME_RFC3339_MAX_US) {
        wall_us = CQ_TIME_RFC3339_MAX_US;
    }
    int64_t secs = floor_div(wall_us, 1000000);
    int64_t micros = wall_us - secs * 1000000;
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm)); /* cannot happen within the bounds */
        tm.tm_mday = 1;
        tm.tm_year = 70;
    }
    /* bounded: 27 characters and the NUL fit CQ_RFC3339_US_LEN; a shorter
     * buffer than that is a caller bug and gets a cut string */
    snprintf(buf, buf_len, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)micros);
    return buf;
}

int64_t cq_time_utc_day(int64_t wall_us)
{
    return floor_div(wall_us, (int64_t)86400 * 1000000);
}
