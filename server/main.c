/*
 * main.c — the coinquantd command line. Parses argv, loads and validates the
 * config, and hands over to the supervisor (or runs a one-shot command).
 *
 *   coinquantd [--config FILE]              run the daemon
 *   coinquantd config check [--config FILE] print effective config + hash
 *   coinquantd config example               print config.env.example
 *   coinquantd config doc                   print the docs/CONFIG.md key table
 *   coinquantd --version | --help
 *
 * Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/config.h"
#include "cq/supervisor.h"
#include "cq/version.h"

extern char **environ;

#define EXIT_CONFIG 2

static void usage(FILE *out)
{
    fputs("usage: coinquantd [--config FILE]\n"
          "       coinquantd config check [--config FILE]\n"
          "       coinquantd config example | config doc\n"
          "       coinquantd --version | --help\n"
          "\n"
          "Runs the coinquant trading runtime. Configuration comes from the\n"
          "environment, then FILE (default ./config.env if present), then\n"
          "built-in defaults; see docs/CONFIG.md. Exit codes: 0 ok, 1 failure,\n"
          "2 invalid configuration or usage.\n",
          out);
}

/* Parse [--config FILE] from argv[from..]; anything else is a usage error. */
static int parse_config_flag(int argc, char **argv, int from, const char **path)
{
    for (int i = from; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else {
            fprintf(stderr, "coinquantd: unexpected argument '%s'\n", argv[i]);
            fprintf(stderr, "hint: run coinquantd --help\n");
            return -1;
        }
    }
    return 0;
}

static struct cq_config *load_or_report(const char *path, struct cq_config_report *report)
{
    struct cq_config_load_options lo = {.file_path = path, .envp = environ};
    struct cq_config *cfg = cq_config_load(&lo, report);
    if (cfg == NULL) {
        cq_config_report_print(report, stderr);
        fprintf(stderr, "coinquantd: %zu configuration error(s); nothing was started\n",
                report->n_errors);
    }
    return cfg;
}

static int cmd_config(int argc, char **argv)
{
    if (argc < 3) {
        usage(stderr);
        return EXIT_CONFIG;
    }
    if (strcmp(argv[2], "example") == 0 && argc == 3) {
        cq_config_write_example(stdout);
        return 0;
    }
    if (strcmp(argv[2], "doc") == 0 && argc == 3) {
        cq_config_write_doc_table(stdout);
        return 0;
    }
    if (strcmp(argv[2], "check") != 0) {
        fprintf(stderr, "coinquantd: unknown config command '%s'\n", argv[2]);
        usage(stderr);
        return EXIT_CONFIG;
    }
    const char *path = NULL;
    if (parse_config_flag(argc, argv, 3, &path) < 0) {
        return EXIT_CONFIG;
    }
    static struct cq_config_report report;
    struct cq_config *cfg = load_or_report(path, &report);
    if (cfg == NULL) {
        return EXIT_CONFIG;
    }
    if (report.n_warnings > 0) {
        cq_config_report_print(&report, stderr);
    }
    cq_config_print(cfg, stdout);
    cq_config_unref(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        cq_version_print(stdout);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "config") == 0) {
        return cmd_config(argc, argv);
    }

    const char *path = NULL;
    if (parse_config_flag(argc, argv, 1, &path) < 0) {
        return EXIT_CONFIG;
    }
    static struct cq_config_report report;
    struct cq_config *cfg = load_or_report(path, &report);
    if (cfg == NULL) {
        return EXIT_CONFIG;
    }

    /* Before any thread exists: every thread inherits this mask, and only
     * the supervisor's loop takes these signals (sigtimedwait). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "coinquantd: libcurl failed to initialise\n");
        cq_config_unref(cfg);
        return 1;
    }
    struct cq_supervisor_options so = {
        .config_path = path,
        .envp = environ,
        .startup_report = &report,
    };
    int code = cq_supervisor_run(cfg, &so);
    curl_global_cleanup();
    return code;
}
