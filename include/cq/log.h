/*
 * log.h — structured JSON logs for the whole process.
 *
 * One JSON object per line, to stderr and DATA_DIR/logs/coinquantd.log:
 *   {"ts":"2026-11-21T11:16:00.123456Z","level":"info","service":"api",
 *    "event":"admin_listening","msg":"…", <fields…>}
 * `event` is a stable snake_case name runbooks and tests grep for.
 *
 * The logger is process-wide (like redis's serverLog): cq_log_open() once in
 * main before any thread starts, cq_log_close() last. Any thread may log.
 * Callers never block on log I/O once the writer runs: cq_log__emit formats
 * the line, redacts secrets, appends it to the in-memory ring and to a
 * bounded queue (1 MiB of lines); the writer thread (cq_log_writer_main,
 * created by the supervisor) drains it to stderr and the file. When the queue
 * is full the line is dropped and counted (stats.lines_dropped). Before the
 * writer starts and after it stops, lines are written synchronously.
 *
 * Rotation: when the file would exceed max_bytes, or the UTC day changes,
 * coinquantd.log is renamed to coinquantd.log.1 (.1 -> .2 …) and at most
 * `keep` rotated files are kept.
 *
 * Redaction: every value passed to cq_log_add_secret() is replaced by
 * "<redacted>" in every line (raw and JSON-escaped forms) before it leaves
 * the process or enters the ring.
 */
#ifndef CQ_LOG_H
#define CQ_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"

enum cq_log_level { CQ_LOG_DEBUG, CQ_LOG_INFO, CQ_LOG_WARN, CQ_LOG_ERROR };

/* A formatted line is at most this long; longer msg/fields are truncated and
 * the line gets "truncated":true (still valid JSON). */
#define CQ_LOG_LINE_MAX 8192

struct cq_log_options {
    const char *dir; /* log directory (created); NULL = no file */
    bool to_stderr;  /* also write to stderr */
    enum cq_log_level level;
    int64_t max_bytes;            /* rotate before the file exceeds this */
    int keep;                     /* rotated files kept (coinquantd.log.1 … .keep) */
    size_t ring_lines;            /* recent lines kept in memory (0 = none) */
    const struct cq_clock *clock; /* NULL = system clock; borrowed */
};

struct cq_log_stats {
    uint64_t lines_total;   /* lines accepted (after level filter) */
    uint64_t lines_dropped; /* dropped because the queue was full */
    uint64_t bytes_written; /* to the file */
    uint64_t rotations;
    uint64_t write_errors; /* failed writes/opens/renames (each also reported on stderr) */
    uint64_t queue_bytes;  /* bytes waiting in the queue now */
    uint64_t queue_max_bytes;
};

/* Open the process logger. Main thread, before other threads exist. May be
 * called again after cq_log_close() (tests). */
int cq_log_open(const struct cq_log_options *opts, struct cq_err *err) CQ_WUR;
/* Drain the queue, close the file, free the ring and secrets. Call after the
 * writer thread has been stopped and joined. */
void cq_log_close(void);

/* The writer thread's body; arg unused. Returns after cq_log_writer_stop()
 * once the queue is drained. The supervisor creates and joins this thread. */
void *cq_log_writer_main(void *arg);
void cq_log_writer_stop(void);

/* Reloadable settings (SIGHUP). Any thread. */
void cq_log_set_level(enum cq_log_level level);
void cq_log_set_rotation(int64_t max_bytes, int keep);
bool cq_log_enabled(enum cq_log_level level);

/* "debug"… -> level; returns -CQ_EINVAL for anything else. */
int cq_log_level_parse(const char *s, enum cq_log_level *out) CQ_WUR;
const char *cq_log_level_name(enum cq_log_level level);

/* Register a secret to redact (copied). Empty strings ignored. Any thread. */
void cq_log_add_secret(const char *value);
/* An owned copy of s with every registered secret replaced by "<redacted>"
 * (raw form). Redact before cutting a text for a message: a cut secret is
 * no longer recognised. NULL when s is NULL or allocation fails. Any thread. */
char *cq_log_redact_dup(const char *s);

/* Emit one line. fields: a JSON object whose members are appended after
 * "msg" in their order (stolen; may be NULL). Members named ts, level,
 * service, event or msg are renamed with a "field_" prefix. Use the macros. */
void cq_log__emit(enum cq_log_level level, const char *service, const char *event, json_t *fields,
                  const char *fmt, ...) CQ_PRINTF(5, 6);

/* Release a fields object that will not be logged (NULL ok). */
void cq_log__discard(json_t *fields);

/* `fields` is evaluated exactly once at EVERY level and always consumed:
 * callers pass owned references into it (json_pack "s:o"), which must be
 * released even when the line is filtered out. The message and its
 * arguments are evaluated, and the line formatted, only when the level is
 * enabled. */
#define cq_log(level, service, event, fields, ...)                                                 \
    do {                                                                                           \
        json_t *cq_log_fields_ = (fields);                                                         \
        if (cq_log_enabled(level)) {                                                               \
            cq_log__emit((level), (service), (event), cq_log_fields_, __VA_ARGS__);                \
        } else {                                                                                   \
            cq_log__discard(cq_log_fields_);                                                       \
        }                                                                                          \
    } while (0)
#define cq_log_debug(svc, ev, fields, ...) cq_log(CQ_LOG_DEBUG, svc, ev, fields, __VA_ARGS__)
#define cq_log_info(svc, ev, fields, ...) cq_log(CQ_LOG_INFO, svc, ev, fields, __VA_ARGS__)
#define cq_log_warn(svc, ev, fields, ...) cq_log(CQ_LOG_WARN, svc, ev, fields, __VA_ARGS__)
#define cq_log_error(svc, ev, fields, ...) cq_log(CQ_LOG_ERROR, svc, ev, fields, __VA_ARGS__)

/* Recent lines, oldest first, for debug bundles. fn gets each line without
 * its trailing newline. Any thread. */
void cq_log_ring_foreach(void (*fn)(const char *line, void *ctx), void *ctx);

void cq_log_get_stats(struct cq_log_stats *out);

/* Rate limiting for noisy events: at most `burst` lines per window_ms; the
 * caller owns the struct (one per event site and thread). Returns true when
 * the line may be logged; *suppressed gets the number of lines suppressed
 * since the last allowed one (to report in that line). */
struct cq_log_ratelimit {
    int64_t window_start_ms;
    int64_t window_ms;
    uint32_t burst;
    uint32_t used;
    uint64_t suppressed;
};
bool cq_log_ratelimit_allow(struct cq_log_ratelimit *rl, int64_t now_ms, uint64_t *suppressed);

#endif /* CQ_LOG_H */
