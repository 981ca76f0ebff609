/*
 * reload.c — one-shot reload threads: cq_config_load() off the supervisor's
 * signal thread (see cq/reload.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cq/clock.h"
#include "cq/reload.h"

void (*cq_reload__before_read)(void) = NULL;

/* One reload. Shared by its thread and the owner until one of them lets go:
 * the owner joins and frees it (done), or abandons it and the thread frees
 * it when it ends. */
struct reload_job {
    pthread_t thread;
    pthread_mutex_t lock; /* guards done, abandoned; cond signals done */
    pthread_cond_t cond;
    bool done;
    bool abandoned;
    char *path;      /* owned copy, NULL = cq_config_load's default */
    char **envp;     /* pointers into env_block */
    char *env_block; /* the strings, wiped at the end (secrets) */
    size_t env_block_len;
    int64_t started_ms;
    struct cq_reload_result result; /* written by the thread before done */
};

struct cq_reloader {
    char *path;
    char *const *envp;
    char *const *secret_envp;
    struct reload_job *job; /* running or finished, not yet polled; NULL = idle */
    bool again;             /* a request came in while job ran */
};

static void job_wipe_env(struct reload_job *j)
{
    if (j->env_block != NULL) {
        OPENSSL_cleanse(j->env_block, j->env_block_len);
        free(j->env_block);
        j->env_block = NULL;
    }
    free(j->envp);
    j->envp = NULL;
}

static void job_destroy(struct reload_job *j)
{
    job_wipe_env(j);
    cq_reload_result_fini(&j->result);
    free(j->path);
    pthread_cond_destroy(&j->cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

void cq_reload_result_fini(struct cq_reload_result *res)
{
    if (res == NULL) {
        return;
    }
    cq_config_unref(res->config);
    free(res->report);
    res->config = NULL;
    res->report = NULL;
}

static size_t count_env(char *const *env, size_t *bytes)
{
    size_t n = 0;
    while (env != NULL && env[n] != NULL) {
        *bytes += strlen(env[n]) + 1;
        n++;
    }
    return n;
}

/* Copy envp then secret_envp into one wiped-at-the-end block. */
static int job_copy_env(struct reload_job *j, char *const *envp, char *const *secret_envp)
{
    size_t bytes = 1; /* never a zero-byte allocation */
    size_t n_env = count_env(envp, &bytes);
    size_t n_sec = count_env(secret_envp, &bytes);
    j->envp = calloc(n_env + n_sec + 1, sizeof(*j->envp));
    j->env_block = malloc(bytes);
    if (j->envp == NULL || j->env_block == NULL) {
        free(j->envp);
        free(j->env_block);
        j->envp = NULL;
        j->env_block = NULL;
        return -1;
    }
    j->env_block_len = bytes;
    char *p = j->env_block;
    size_t k = 0;
    char *const *lists[2] = {envp, secret_envp};
    size_t counts[2] = {n_env, n_sec};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            size_t len = strlen(lists[l][i]) + 1; /* bounded: counted into bytes above */
            memcpy(p, lists[l][i], len);
            j->envp[k++] = p;
            p += len;
        }
    }
    return 0;
}

static void *job_main(void *arg)
{
    struct reload_job *j = arg;
    if (cq_reload__before_read != NULL) {
        cq_reload__before_read();
    }
    struct cq_config_load_options lo = {.file_path = j->path, .envp = j->envp};
    struct cq_config *fresh = NULL;
    if (j->result.report != NULL) {
        fresh = cq_config_load(&lo, j->result.report);
    }
    job_wipe_env(j);
    pthread_mutex_lock(&j->lock);
    j->result.config = fresh;
    j->result.took_ms = cq_time_mono_ms() - j->started_ms;
    j->done = true;
    bool abandoned = j->abandoned;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
    if (abandoned) {
        job_destroy(j); /* the owner is gone (detached): nobody joins */
    }
    return NULL;
}

struct cq_reloader *cq_reloader_new(const char *path, char *const *envp, char *const *secret_envp)
{
    struct cq_reloader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    if (path != NULL) {
        r->path = strdup(path);
        if (r->path == NULL) {
            free(r);
            return NULL;
        }
    }
    r->envp = envp;
    r->secret_envp = secret_envp;
    return r;
}

int cq_reloader_request(struct cq_reloader *r, struct cq_err *err)
{
    if (r->job != NULL) {
        r->again = true;
        return CQ_RELOAD_COALESCED;
    }
    struct reload_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, "free memory, then send SIGHUP again",
                          "allocating a reload");
    }
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    j->result.report = calloc(1, sizeof(*j->result.report)); /* large: not on a stack */
    if ((r->path != NULL && (j->path = strdup(r->path)) == NULL) || j->result.report == NULL ||
        job_copy_env(j, r->envp, r->secret_envp) < 0) {
        job_destroy(j);
        return cq_err_set(err, CQ_ENOMEM, 0, "free memory, then send SIGHUP again",
                          "allocating a reload");
    }
    j->started_ms = cq_time_mono_ms();
    int e = pthread_create(&j->thread, NULL, job_main, j);
    if (e != 0) {
        job_destroy(j);
        return cq_err_set(err, CQ_EIO, e,
                          "raise the process's thread limit, then send SIGHUP again",
                          "starting the reload thread");
    }
    r->job = j;
    return CQ_RELOAD_STARTED;
}

bool cq_reloader_poll(struct cq_reloader *r, struct cq_reload_result *out, bool *again)
{
    struct reload_job *j = r->job;
    if (j == NULL) {
        return false;
    }
    pthread_mutex_lock(&j->lock);
    bool done = j->done;
    pthread_mutex_unlock(&j->lock);
    if (!done) {
        return false;
    }
    pthread_join(j->thread, NULL);
    *out = j->result;
    j->result.config = NULL;
    j->result.report = NULL;
    job_destroy(j);
    r->job = NULL;
    *again = r->again;
    r->again = false;
    return true;
}

int64_t cq_reloader_running_ms(const struct cq_reloader *r)
{
    if (r == NULL || r->job == NULL) {
        return -1;
    }
    return cq_time_mono_ms() - r->job->started_ms;
}

bool cq_reloader_free(struct cq_reloader *r, int64_t wait_ms)
{
    if (r == NULL) {
        return true;
    }
    bool clean = true;
    struct reload_job *j = r->job;
    if (j != NULL) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        if (wait_ms < 0) {
            wait_ms = 0;
        }
        deadline.tv_sec += (time_t)(wait_ms / 1000);
        deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&j->lock);
        while (!j->done) {
            if (pthread_cond_timedwait(&j->cond, &j->lock, &deadline) == ETIMEDOUT) {
                break;
            }
        }
        bool done = j->done;
        if (!done) {
            j->abandoned = true;
        }
        pthread_mutex_unlock(&j->lock);
        if (done) {
            pthread_join(j->thread, NULL);
            job_destroy(j);
        } else {
            pthread_detach(j->thread); /* it frees j when its read returns */
            clean = false;
        }
    }
    free(r->path);
    free(r);
    return clean;
}
