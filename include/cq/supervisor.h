/*
 * supervisor.h — runs coinquantd: the only code that creates and joins
 * threads.
 *
 * cq_supervisor_run() takes a validated config and, on the calling (main)
 * thread: opens the logs, builds the health board, starts the admin API,
 * then the feeder, ARES and the trader in that order, each waiting (bounded
 * by CQ_SUPERVISOR_START_WAIT_MS) for the previous one's readiness. It then
 * loops every 100 ms: signals (SIGTERM/SIGINT stop, SIGHUP reloads the
 * config), the watchdog (CQ_WATCHDOG_STALL_MS) and, once a second, the
 * health files in DATA_DIR/health/. Stop is the reverse order within 5 s.
 *
 * The caller must have blocked SIGTERM, SIGINT and SIGHUP in the main
 * thread before calling, so every thread created inherits the mask.
 */
#ifndef CQ_SUPERVISOR_H
#define CQ_SUPERVISOR_H

#include "cq/config.h"

struct cq_supervisor_options {
    /* Config file given with --config, or NULL for ./config.env if present;
     * re-read on SIGHUP. Borrowed. */
    const char *config_path;
    /* Environment re-read on SIGHUP. Borrowed. */
    char *const *envp;
    /* The secret "KEY=VALUE" entries main.c removed from the environment at
     * start (NULL-terminated, or NULL), added to envp on SIGHUP so a reload
     * sees the secrets the start saw. Borrowed. */
    char *const *secret_envp;
    /* Warnings from the start-up load, logged once the logs are open
     * (may be NULL). Borrowed. */
    const struct cq_config_report *startup_report;
};

/* Budget for stopping the services (trader, ARES, feeder) and then the
 * journal, from the stop signal. The embedded simulator and the admin API
 * stop after it and are not counted in it. */
#define CQ_SUPERVISOR_STOP_BUDGET_MS 5000

/* Runs until SIGTERM/SIGINT. Takes ownership of the reference to cfg.
 * Returns the process exit code: 0 after a clean stop, 1 when start-up
 * failed or the stop overran its budget. */
int cq_supervisor_run(struct cq_config *cfg, const struct cq_supervisor_options *opts);

#endif /* CQ_SUPERVISOR_H */
