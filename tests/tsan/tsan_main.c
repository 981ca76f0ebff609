/*
 * tsan_main.c — the concurrency tests, in a runner ThreadSanitizer can run.
 *
 * Why this exists
 *   Criterion's runner forks a worker per test and aborts at start under
 *   ThreadSanitizer, so no unit suite could give the lock-free rings, the
 *   journal writer, the health board or the service threads race coverage.
 *   This runner is plain C: every test runs in this one process, on real
 *   threads, one test after the other, and asserts its results (counts,
 *   checksums, order), so a test can fail on its own, with or without TSan.
 *
 * What is covered (one file per module)
 *   tsan_ring.c     SPSC ring: producer/consumer with many messages checked
 *                   for order and checksums, the full policy (retry and
 *                   drop), and a third thread reading the size meanwhile.
 *   tsan_journal.c  appends from several threads, group commit held behind
 *                   a gated fdatasync (one fdatasync for everything queued),
 *                   and a live reader (read, verify, stats, state,
 *                   snapshots) beside the writer and its background verify.
 *   tsan_health.c   the health board: one publisher per service, readers of
 *                   records, summaries, typed counters and the health files.
 *   tsan_service.c  service threads: start/stop cycles, several services
 *                   with the watchdog reading them, a stall and recovery.
 *   tsan_doorbell.c doorbells between service threads: a producer, a
 *                   middle service (consumer and producer, sleeping for
 *                   room) and a last one; ping-pong, a burst against full
 *                   rings, a stop waking sleepers.
 *
 * How to run
 *   It is built in every build (tests/tsan_tests) and is the meson test
 *   `tsan` (suite unit), so the normal and ASan builds run it too.
 *   scripts/tsan builds it with clang -fsanitize=thread in build-tsan and
 *   runs it, then the integration tests that run the daemon (test_daemon,
 *   test_api_hostile, test_feeder, test_ares, test_metrics) and the
 *   simulator's (test_simex) against TSan-built coinquantd and
 *   coinquant-simex, with
 *   TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1; any report fails
 *   the script. tests/tsan.supp holds suppressions for third-party
 *   libraries only, each with its reason; our own code is never suppressed
 *   (today: jansson, whose internal refcount atomics TSan cannot see).
 *
 *   A new concurrency test: a function in the module's file, a row in its
 *   table; assert results, not only "no crash", so it fails without TSan
 *   too. Keep each test to a few seconds under TSan (2 loaded cores).
 *
 *   tsan_tests [--list] [SUBSTRING...]   runs the tests whose name contains
 *                                        one of the substrings (all if none)
 *
 * Output: TAP lines "ok N - name" / "not ok N - name" (diagnostics as "#"
 * comments), then one line "N passed, N failed". Exit 0 when all passed.
 * Each test gets a fresh directory under $TMPDIR (default /tmp), removed
 * when it passes and kept (and named) when it fails.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cq/log.h"
#include "tsan/tsan.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

void tsan__fail(struct tsan_t *t, const char *file, int line, const char *cond, const char *fmt,
                ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    /* A diagnostic cut at 511 bytes still names file, line and condition. */
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    atomic_fetch_add(&t->failures, 1);
    pthread_mutex_lock(&out_lock);
    printf("# %s:%d: %s: %s\n", file, line, cond, msg);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

void tsan_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* rm -r of a test directory (files and directories only; no symlinks are
 * followed: lstat). Best effort: a leftover is reported, not fatal. */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return unlink(path);
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char child[1024];
        int n = snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(child)) {
            rc = -1; /* a name this long is not ours: leave it */
            continue;
        }
        if (remove_tree(child) != 0) {
            rc = -1;
        }
    }
    closedir(d);
    if (rmdir(path) != 0) {
        rc = -1;
    }
    return rc;
}

static bool selected(const char *name, int argc, char **argv, int first)
{
    if (first >= argc) {
        return true;
    }
    for (int i = first; i < argc; i++) {
        if (strstr(name, argv[i]) != NULL) {
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    const struct tsan_case *tables[] = {tsan_ring_cases, tsan_journal_cases, tsan_health_cases,
                                        tsan_service_cases, tsan_doorbell_cases};
    bool list = argc > 1 && strcmp(argv[1], "--list") == 0;
    int first = list ? 2 : 1;

    /* The modules log (journal, health, services): into the in-memory ring
     * only, synchronously (no writer thread), so the output stays TAP. */
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 256,
                                .clock = NULL};
    if (cq_log_open(&lo, NULL) != 0) {
        fprintf(stderr, "tsan_tests: cannot open the in-memory log\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }

    int n = 0, passed = 0, failed = 0;
    for (size_t ti = 0; ti < sizeof(tables) / sizeof(tables[0]); ti++) {
        for (const struct tsan_case *c = tables[ti]; c->name != NULL; c++) {
            if (!selected(c->name, argc, argv, first)) {
                continue;
            }
            if (list) {
                printf("%s\n", c->name);
                continue;
            }
            n++;
            struct tsan_t t;
            memset(&t, 0, sizeof(t));
            t.name = c->name;
            atomic_init(&t.failures, 0);
            int len = snprintf(t.tmpdir, sizeof(t.tmpdir), "%s/cq-tsan-XXXXXX", tmp);
            if (len < 0 || (size_t)len >= sizeof(t.tmpdir) || mkdtemp(t.tmpdir) == NULL) {
                printf("not ok %d - %s\n# cannot create a directory under %s (TMPDIR)\n", n,
                       c->name, tmp);
                failed++;
                continue;
            }
            c->fn(&t);
            if (atomic_load(&t.failures) == 0) {
                printf("ok %d - %s\n", n, c->name);
                passed++;
                if (remove_tree(t.tmpdir) != 0) {
                    printf("# could not remove %s\n", t.tmpdir);
                }
            } else {
                printf("not ok %d - %s\n# work dir kept: %s\n", n, c->name, t.tmpdir);
                failed++;
            }
            fflush(stdout);
        }
    }
    if (!list) {
        printf("1..%d\n%d passed, %d failed\n", n, passed, failed);
    }
    cq_log_close();
    return failed == 0 ? 0 : 1;
}
