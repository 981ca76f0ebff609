/*
 * main.c — the coinquantd command line. Parses argv, loads and validates the
 * config, and hands over to the supervisor (or runs a one-shot command).
 *
 *   coinquantd [--config FILE]              run the daemon
 *   coinquantd config check [--config FILE] print effective config + hash
 *   coinquantd config example               print config.env.example
 *   coinquantd config doc                   print the docs/CONFIG.md key table
 *   coinquantd journal verify|replay|export|snapshot --dir DIR
 *   coinquantd indicators --data FILE.csv --indicators SPEC [--format csv|json]
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
#include "cq/indicators.h"
#include "cq/journal.h"
#include "cq/supervisor.h"
#include "cq/version.h"

extern char **environ;

#define EXIT_CONFIG 2

static void usage(FILE *out)
{
    fputs("usage: coinquantd [--config FILE]\n"
          "       coinquantd config check [--config FILE]\n"
          "       coinquantd config example | config doc\n"
          "       coinquantd journal verify|replay|export|snapshot --dir DIR\n"
          "       coinquantd indicators --data FILE.csv --indicators SPEC [--format csv|json]\n"
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

/* One line naming the problem (err's message names the file), then the
 * fix when there is one. */
static void journal_error(const char *what, const struct cq_err *err)
{
    fprintf(stderr, "coinquantd journal %s: %s\n", what,
            err->message[0] != '\0' ? err->message : cq_strerror(err->code));
    if (err->hint[0] != '\0') {
        fprintf(stderr, "hint: %s\n", err->hint);
    }
}

/* coinquantd journal verify|replay|export|snapshot --dir DIR: offline
 * tools over a journal directory (a stopped daemon's DATA_DIR/journal, or a
 * copy). verify exits 1 on any integrity failure. */
static int cmd_journal(int argc, char **argv)
{
    const char *dir = NULL;
    if (argc < 3) {
        usage(stderr);
        return EXIT_CONFIG;
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "coinquantd journal: unexpected argument '%s'\n", argv[i]);
            return EXIT_CONFIG;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "coinquantd journal: --dir DIR is required (e.g. --dir ./var/journal)\n");
        return EXIT_CONFIG;
    }
    struct cq_err err;
    cq_err_clear(&err);
    const char *what = argv[2];
    if (strcmp(what, "verify") == 0) {
        struct cq_journal_verify_report rep;
        int rc = cq_journal_verify_dir(dir, NULL, &rep);
        if (rc < 0) {
            fprintf(stderr, "coinquantd journal verify: %s: %s\n", dir, cq_strerror(rc));
            return 1;
        }
        json_t *j = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:b,s:s?,s:I,s:I}", "ok", rep.ok,
                              "records", (json_int_t)rep.records, "segments",
                              (json_int_t)rep.segments, "bytes", (json_int_t)rep.bytes,
                              "first_seq", (json_int_t)rep.first_seq, "last_seq",
                              (json_int_t)rep.last_seq, "torn_tail", rep.torn_tail, "problem",
                              rep.ok ? NULL : rep.problem, "bad_segment",
                              (json_int_t)rep.bad_segment, "bad_offset",
                              (json_int_t)rep.bad_offset);
        char *text = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        json_decref(j);
        if (!rep.ok) {
            fprintf(stderr, "coinquantd journal verify: %s: %s\n", dir, rep.problem);
        }
        return rep.ok ? 0 : 1;
    }
    if (strcmp(what, "replay") == 0) {
        json_t *state = NULL;
        struct cq_journal_replay_info info;
        int rc = cq_journal_replay_dir_info(dir, NULL, true, &state, &info, &err);
        for (size_t i = 0; i < info.n_skipped; i++) {
            fprintf(stderr, "coinquantd journal replay: snapshot at seq %llu not used: %s\n",
                    (unsigned long long)info.skipped_seq[i], info.skipped_why[i]);
        }
        if (rc < 0) {
            journal_error("replay", &err);
            return 1;
        }
        if (info.n_skipped > 0) {
            if (info.snapshot_seq > 0) {
                fprintf(stderr, "coinquantd journal replay: used the snapshot at seq %llu\n",
                        (unsigned long long)info.snapshot_seq);
            } else {
                fprintf(stderr, "coinquantd journal replay: replayed from the first record\n");
            }
        }
        char *text = cq_journal_state_dump(state);
        fputs(text != NULL ? text : "", stdout);
        free(text);
        json_decref(state);
        return 0;
    }
    if (strcmp(what, "export") == 0) {
        if (cq_journal_export_dir(dir, NULL, stdout, &err) < 0) {
            journal_error("export", &err);
            return 1;
        }
        return 0;
    }
    if (strcmp(what, "snapshot") == 0) {
        if (cq_journal_snapshot_dir(dir, NULL, &err) < 0) {
            journal_error("snapshot", &err);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "coinquantd journal: unknown command '%s' (verify, replay, export, snapshot)\n",
            what);
    return EXIT_CONFIG;
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
    if (argc >= 2 && strcmp(argv[1], "journal") == 0) {
        return cmd_journal(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "indicators") == 0) {
        return cq_indicators_cli(argc - 1, argv + 1, stdout, stderr);
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
