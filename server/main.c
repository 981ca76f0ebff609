/*
 * main.c — the coinquantd command line. Parses argv, loads and validates the
 * config, and hands over to the supervisor (or runs a one-shot command).
 *
 *   coinquantd [--config FILE]              run the daemon
 *   coinquantd config check [--config FILE] print effective config + hash
 *   coinquantd config example               print config.env.example
 *   coinquantd config doc                   print the docs/CONFIG.md key table
 *   coinquantd journal verify|replay|export|snapshot --dir DIR
 *   coinquantd journal export --dir DIR [--type risk.decision,…] [--scope BTCUSDT]
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
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "cq/config.h"
#include "cq/fs.h"
#include "cq/indicators.h"
#include "cq/journal.h"
#include "cq/strategy.h"
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
          "       coinquantd journal export --dir DIR [--type T[,T…]] [--scope SCOPE]\n"
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
    struct cq_config_report *report = calloc(1, sizeof(*report)); /* large: not on the stack */
    if (report == NULL) {
        fprintf(stderr, "coinquantd: out of memory\n");
        return 1;
    }
    struct cq_config *cfg = load_or_report(path, report);
    if (cfg == NULL) {
        free(report);
        return EXIT_CONFIG;
    }
    if (report->n_warnings > 0) {
        cq_config_report_print(report, stderr);
    }
    free(report);
    cq_config_print(cfg, stdout);
    cq_config_unref(cfg);
    return 0;
}

/* Secrets leave the environment once loaded (issue 9.10): otherwise they
 * stay readable in /proc/PID/environ for the whole run and are inherited
 * by children. Each secret key's first "KEY=VALUE" entry is copied into a
 * secret buffer (for SIGHUP reloads, which see the same secrets), the
 * variable is unset, and the original bytes, which /proc/PID/environ shows
 * whatever environ points to, are wiped. Before any thread starts. */
struct secret_env {
    struct cq_secret_buf *buf;        /* owned: the saved entries */
    char *entries[CQ_CFG__COUNT + 1]; /* into buf; NULL-terminated */
};

static int scrub_secret_env(struct secret_env *se)
{
    size_t n_keys = 0;
    const struct cq_config_key *keys = cq_config_keys(&n_keys);
    size_t n_env = 0;
    while (environ != NULL && environ[n_env] != NULL) {
        n_env++;
    }
    char **doomed = calloc(n_env + 1, sizeof(*doomed)); /* every secret entry, to wipe */
    if (doomed == NULL) {
        return -CQ_ENOMEM;
    }
    const char *first[CQ_CFG__COUNT] = {NULL};
    size_t n_doomed = 0, total = 0;
    for (size_t e = 0; e < n_env; e++) {
        for (size_t k = 0; k < n_keys; k++) {
            size_t len = strlen(keys[k].name);
            if (keys[k].secret && strncmp(environ[e], keys[k].name, len) == 0 &&
                environ[e][len] == '=') {
                doomed[n_doomed++] = environ[e];
                if (first[k] == NULL) { /* the one getenv() and the config load use */
                    first[k] = environ[e];
                    total += strlen(environ[e]) + 1;
                }
                break;
            }
        }
    }
    if (total > 0) {
        se->buf = cq_secret_buf_new(total);
        if (se->buf == NULL) {
            free(doomed);
            return -CQ_ENOMEM;
        }
        size_t used = 0, n = 0;
        for (size_t k = 0; k < n_keys; k++) {
            if (first[k] != NULL) {
                size_t len = strlen(first[k]) + 1;
                memcpy(se->buf->data + used, first[k], len); /* total counted every len */
                se->entries[n++] = se->buf->data + used;
                used += len;
            }
        }
    }
    for (size_t k = 0; k < n_keys; k++) {
        if (keys[k].secret) {
            (void)unsetenv(keys[k].name);
        }
    }
    for (size_t i = 0; i < n_doomed; i++) {
        OPENSSL_cleanse(doomed[i], strlen(doomed[i]));
    }
    free(doomed);
    return 0;
}

/* No core dumps unless CQ_ALLOW_CORE_DUMPS=on: a core file would hold the
 * API secret. The supervisor logs the resulting state (core_dumps). */
static int disable_core_dumps(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        return -1;
    }
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : -1;
}

#if defined(__SANITIZE_ADDRESS__)
#define CQ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CQ_SANITIZED 1
#endif
#endif
#ifndef CQ_SANITIZED
#define CQ_SANITIZED 0
#endif

/* LeakSanitizer's check at exit ptrace()s the process, which a
 * non-dumpable process refuses to an unprivileged tracer (LSan then fails
 * the run). Sanitizer builds become dumpable again on the way out, once
 * every secret is wiped; RLIMIT_CORE stays 0, so still no core file. */
static int exit_code(int code)
{
    if (CQ_SANITIZED) {
        (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    return code;
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
/* export --type a,b: the record types' bit mask; false (with the message
 * printed) when a name is unknown. */
static bool parse_export_types(const char *list, uint32_t *mask)
{
    char buf[512];
    if (cq_strlcpy(buf, list, sizeof(buf)) >= sizeof(buf)) {
        fprintf(stderr, "coinquantd journal export: --type list too long\n");
        return false;
    }
    *mask = 0;
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name != NULL;
         name = strtok_r(NULL, ",", &save)) {
        uint16_t t = cq_rec_type_parse(name);
        if (t == 0) {
            fprintf(stderr, "coinquantd journal export: unknown record type '%s'; known:", name);
            for (uint16_t k = 1; k < CQ_REC__MAX; k++) {
                fprintf(stderr, "%s%s", k == 1 ? " " : ", ", cq_rec_type_name(k));
            }
            fprintf(stderr, "\n");
            return false;
        }
        *mask |= 1u << t;
    }
    if (*mask == 0) {
        fprintf(stderr, "coinquantd journal export: --type needs at least one record type "
                        "(e.g. --type risk.decision)\n");
        return false;
    }
    return true;
}

static int cmd_journal(int argc, char **argv)
{
    const char *dir = NULL;
    struct cq_journal_export_filter filter = {0, NULL};
    if (argc < 3) {
        usage(stderr);
        return EXIT_CONFIG;
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[2], "export") == 0 && strcmp(argv[i], "--type") == 0 &&
                   i + 1 < argc) {
            if (!parse_export_types(argv[++i], &filter.types)) {
                return EXIT_CONFIG;
            }
        } else if (strcmp(argv[2], "export") == 0 && strcmp(argv[i], "--scope") == 0 &&
                   i + 1 < argc) {
            filter.scope = argv[++i];
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
        json_t *j =
            json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:b,s:s?,s:I,s:I}", "ok", rep.ok, "records",
                      (json_int_t)rep.records, "segments", (json_int_t)rep.segments, "bytes",
                      (json_int_t)rep.bytes, "first_seq", (json_int_t)rep.first_seq, "last_seq",
                      (json_int_t)rep.last_seq, "torn_tail", rep.torn_tail, "problem",
                      rep.ok ? NULL : rep.problem, "bad_segment", (json_int_t)rep.bad_segment,
                      "bad_offset", (json_int_t)rep.bad_offset);
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
        if (cq_journal_export_dir_filtered(dir, NULL, &filter, stdout, &err) < 0) {
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
    /* Core checks CQ_STRATEGY through ARES's registry: hand it over before
     * any config is loaded (config check, the daemon, a SIGHUP reload). */
    cq_strategy_register_config();
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
    struct cq_config_report *report = calloc(1, sizeof(*report)); /* large: not on the stack */
    if (report == NULL) {
        fprintf(stderr, "coinquantd: out of memory\n");
        return 1;
    }
    struct cq_config *cfg = load_or_report(path, report);
    if (cfg == NULL) {
        free(report);
        return EXIT_CONFIG;
    }
    if (!cq_config_onoff(cfg, CQ_CFG_ALLOW_CORE_DUMPS) && disable_core_dumps() != 0) {
        perror("coinquantd: cannot disable core dumps (set CQ_ALLOW_CORE_DUMPS=on to go on "
               "without)");
        cq_config_unref(cfg);
        free(report);
        return 1;
    }
    struct secret_env se = {.buf = NULL};
    if (scrub_secret_env(&se) < 0) {
        fprintf(stderr, "coinquantd: out of memory\n");
        cq_config_unref(cfg);
        free(report);
        return exit_code(1);
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
        cq_secret_buf_free(se.buf);
        free(report);
        return exit_code(1);
    }
    struct cq_supervisor_options so = {
        .config_path = path,
        .envp = environ,
        .secret_envp = se.entries,
        .startup_report = report,
    };
    int code = cq_supervisor_run(cfg, &so);
    curl_global_cleanup();
    cq_secret_buf_free(se.buf); /* wiped */
    free(report);
    return exit_code(code);
}
