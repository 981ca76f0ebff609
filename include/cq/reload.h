/*
 * reload.h — a config reload (SIGHUP) read and checked off the thread that
 * takes signals (issue 17.3).
 *
 * The supervisor's loop is the only thread that takes SIGTERM; a file read
 * that hangs (a regular file on a hung NFS or FUSE mount, a dying disk)
 * must not stop it from taking one. So each reload runs cq_config_load() on
 * a one-shot thread of its own, and the supervisor polls for the result
 * every tick and applies it on its own thread (journal, publish, log), as
 * before.
 *
 * At most one reload runs at a time. A request while one runs is coalesced:
 * one more reload follows the running one (cq_reloader_poll says so), however
 * many requests came in the meantime, so the last SIGHUP's file is the one
 * that is read.
 *
 * The job copies what it reads (the path, the environment strings; the copy
 * is wiped when the job ends, it holds the secrets), so a job that is still
 * stuck when the supervisor stops can be abandoned: cq_reloader_free waits
 * at most wait_ms, then detaches the thread, which frees its job when (if)
 * its read returns.
 *
 * Threads: every function is for the one owner thread (the supervisor);
 * the job's thread touches only its job.
 */
#ifndef CQ_RELOAD_H
#define CQ_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "cq/common.h"
#include "cq/config.h"

struct cq_reloader;

/* What a finished reload read. Owned by the caller: cq_reload_result_fini. */
struct cq_reload_result {
    struct cq_config *config;        /* NULL: the load failed (report->errors say why) */
    struct cq_config_report *report; /* warnings and errors of the load */
    int64_t took_ms;                 /* from the thread's start to the end of the load */
};
void cq_reload_result_fini(struct cq_reload_result *res);

/* path: the config file (NULL: as cq_config_load). envp and secret_envp:
 * NULL-terminated "KEY=VALUE" lists (either may be NULL), read together as
 * one environment (the process environment, then the secrets main() took out
 * of it). They are copied at each request. NULL on ENOMEM. */
struct cq_reloader *cq_reloader_new(const char *path, char *const *envp, char *const *secret_envp);

enum cq_reload_request {
    CQ_RELOAD_STARTED = 0,   /* a reload thread was started */
    CQ_RELOAD_COALESCED = 1, /* one is running: one more follows it */
};
/* Start a reload, or coalesce with the running one. Returns
 * enum cq_reload_request, or a negative CQ_E* code (ENOMEM, no thread) with
 * err filled; nothing runs then. */
int cq_reloader_request(struct cq_reloader *r, struct cq_err *err) CQ_WUR;

/* Never blocks. True when a reload has finished: its result is moved to
 * *out (joined and freed here) and *again says whether a request came in
 * while it ran (then call cq_reloader_request again). False: none finished
 * (running or idle). */
bool cq_reloader_poll(struct cq_reloader *r, struct cq_reload_result *out, bool *again);

/* Milliseconds the running reload has taken so far, or -1 when none runs. */
int64_t cq_reloader_running_ms(const struct cq_reloader *r);

/* Wait at most wait_ms for a running reload, then free. Returns true when
 * nothing was left running, false when a stuck reload thread was detached
 * (it frees its own job when its read returns; its result is dropped).
 * NULL ok (true). */
bool cq_reloader_free(struct cq_reloader *r, int64_t wait_ms);

/* Test seam: when set, the reload thread calls it first, before reading the
 * file (a unit test makes it block, as a hung mount would). Set it before
 * cq_reloader_request; NULL in the daemon. */
extern void (*cq_reload__before_read)(void);

#endif /* CQ_RELOAD_H */
