/*
 * test_reload.c — the config reload runs off the signal thread (issue 17.3):
 * a reload whose read hangs (the test seam cq_reload__before_read blocks, as
 * a read on a hung NFS/FUSE mount would) does not block the owner's calls;
 * a second request while one runs is coalesced into one more reload; stop
 * abandons a stuck reload within its wait; a finished reload hands back the
 * config (or the errors) it read, and its copy of the environment.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cq/clock.h"
#include "cq/reload.h"

static char tmpdir[64];
static char cfg_path[128];

/* The seam: blocks while `held` is set. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool held;
static atomic_int entered; /* reload threads that reached the read */

static void gate(void)
{
    atomic_fetch_add(&entered, 1);
    pthread_mutex_lock(&gate_lock);
    while (held) {
        pthread_cond_wait(&gate_cond, &gate_lock);
    }
    pthread_mutex_unlock(&gate_lock);
}

static void hold(bool on)
{
    pthread_mutex_lock(&gate_lock);
    held = on;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void write_config(const char *content)
{
    FILE *f = fopen(cfg_path, "w");
    cr_assert_not_null(f, "fopen %s: %s", cfg_path, strerror(errno));
    cr_assert_gt(fputs(content, f), -1);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(chmod(cfg_path, 0600), 0);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cq-test-reload-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(cfg_path, sizeof(cfg_path), "%s/config.env", tmpdir);
    write_config("CQ_MODE=paper\nCQ_SYMBOLS=BTCUSDT\n");
    atomic_store(&entered, 0);
    hold(false);
    cq_reload__before_read = gate;
}

static void teardown(void)
{
    cq_reload__before_read = NULL;
    hold(false);
    unlink(cfg_path);
    rmdir(tmpdir);
}

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 30);

static char *const test_env[] = {"CQ_LOG_LEVEL=debug", NULL};
static char *const test_secrets[] = {"CQ_ADMIN_TOKEN=0123456789abcdef0123", NULL};

/* Poll until a reload finishes (the result is real I/O: no fixed sleep). */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void wait_result(struct cq_reloader *r, struct cq_reload_result *res, bool *again)
{
    for (int i = 0; i < 10000; i++) {
        if (cq_reloader_poll(r, res, again)) {
            return;
        }
        sleep_ms(1);
    }
    cr_assert_fail("the reload never finished");
}

static void wait_entered(int n)
{
    for (int i = 0; i < 10000 && atomic_load(&entered) < n; i++) {
        sleep_ms(1);
    }
    cr_assert_eq(atomic_load(&entered), n);
}

Test(reload, a_reload_reads_the_file_and_the_environment_on_its_own_thread)
{
    struct cq_reloader *r = cq_reloader_new(cfg_path, test_env, test_secrets);
    cr_assert_not_null(r);
    struct cq_err err;
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    struct cq_reload_result res = {0};
    bool again = true;
    wait_result(r, &res, &again);
    cr_assert_not(again);
    cr_assert_not_null(res.config, "errors: %zu, first: %s", res.report->n_errors,
                       res.report->n_errors > 0 ? res.report->errors[0].message : "");
    cr_assert_str_eq(cq_config_str(res.config, CQ_CFG_SYMBOLS), "BTCUSDT"); /* the file */
    cr_assert_str_eq(cq_config_str(res.config, CQ_CFG_LOG_LEVEL), "debug"); /* the env */
    cr_assert_str_eq(cq_config_str(res.config, CQ_CFG_ADMIN_TOKEN),
                     "0123456789abcdef0123"); /* the secrets */
    cr_assert_geq(res.took_ms, 0);
    cq_reload_result_fini(&res);
    cr_assert_eq(cq_reloader_running_ms(r), -1);
    cr_assert(cq_reloader_free(r, 0));
}

Test(reload, a_bad_file_comes_back_as_errors)
{
    write_config("CQ_MODE=papr\n");
    struct cq_reloader *r = cq_reloader_new(cfg_path, test_env, NULL);
    struct cq_err err;
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    struct cq_reload_result res = {0};
    bool again = false;
    wait_result(r, &res, &again);
    cr_assert_null(res.config);
    cr_assert_gt(res.report->n_errors, 0);
    cr_assert_str_eq(res.report->errors[0].key, "CQ_MODE");
    cq_reload_result_fini(&res);
    cr_assert(cq_reloader_free(r, 0));
}

/* The defect: the read ran on the thread that takes SIGTERM. With the read
 * stuck, every call the supervisor's loop makes returns at once. */
Test(reload, a_stuck_read_does_not_block_the_owner_and_requests_coalesce)
{
    hold(true);
    struct cq_reloader *r = cq_reloader_new(cfg_path, test_env, NULL);
    struct cq_err err;
    int64_t t0 = cq_time_mono_ms();
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    wait_entered(1);
    struct cq_reload_result res = {0};
    bool again = false;
    cr_assert_not(cq_reloader_poll(r, &res, &again), "the read is stuck: nothing to take");
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_COALESCED);
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_COALESCED);
    cr_assert_geq(cq_reloader_running_ms(r), 0);
    cr_assert_eq(atomic_load(&entered), 1, "one reload at a time");
    cr_assert_lt(cq_time_mono_ms() - t0, 5000); /* loose: nothing above waited */

    hold(false);
    wait_result(r, &res, &again);
    cr_assert_not_null(res.config);
    cr_assert(again, "the requests made while it ran ask for one more");
    cq_reload_result_fini(&res);
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    wait_result(r, &res, &again);
    cr_assert_not(again, "two coalesced requests make one reload");
    cr_assert_eq(atomic_load(&entered), 2);
    cq_reload_result_fini(&res);
    cr_assert(cq_reloader_free(r, 0));
}

/* Stop holds its budget: a reload stuck past the wait is abandoned; its
 * thread frees its job when the read returns (no leak under ASan). */
Test(reload, stop_abandons_a_stuck_reload_within_its_wait)
{
    hold(true);
    struct cq_reloader *r = cq_reloader_new(cfg_path, test_env, test_secrets);
    struct cq_err err;
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    wait_entered(1);
    int64_t t0 = cq_time_mono_ms();
    cr_assert_not(cq_reloader_free(r, 50), "a stuck reload is reported as abandoned");
    int64_t waited = cq_time_mono_ms() - t0;
    cr_assert_geq(waited, 50);
    cr_assert_lt(waited, 5000); /* loose: the wait is bounded, not the read */
    hold(false);                /* the hung read returns; the thread frees its job */
    sleep_ms(200);              /* let it finish before the process exits (leak check) */
}

Test(reload, stop_joins_a_reload_that_finishes_within_its_wait)
{
    struct cq_reloader *r = cq_reloader_new(cfg_path, test_env, NULL);
    struct cq_err err;
    cr_assert_eq(cq_reloader_request(r, &err), CQ_RELOAD_STARTED);
    cr_assert(cq_reloader_free(r, 10000));
}
