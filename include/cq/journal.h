/*
 * journal.h — the memory layer: one append-only journal of every decision
 * the runtime makes (market gaps, signals emitted and blocked, order
 * intents, acks, fills, rejects, risk decisions, quarantines, config loads).
 * It is the restart path, the audit log and the source of debug timelines:
 * it never loses an acknowledged record and never silently accepts a
 * corrupted one. Format: docs/JOURNAL.md.
 *
 * Threads and ownership:
 *   - One writer thread owns the files (created by cq_journal_start, which
 *     only the supervisor calls). Any thread appends through a bounded MPSC
 *     queue (mutex + condvar); a full queue returns -CQ_EFULL and the
 *     producer applies backpressure: records are never dropped.
 *   - cq_journal_wait_durable blocks the caller (e.g. the trader before it
 *     sends an order) until the record is on disk per the fsync policy.
 *   - The writer keeps the canonical state (struct cq_journal_state, a
 *     reducer over records) and writes snapshots; readers get copies.
 *   - Offline functions (verify, replay, export of a directory) touch only
 *     their arguments: for the CLI, tests and the background verifier.
 *
 * Failure policy: a failed fdatasync is fatal for writing (never retried:
 * the page cache may have dropped the data): state FAILED, health
 * "journal: down, reason fsync_failed", appends refused. ENOSPC and EIO on
 * write pause the journal (state PAUSED, appends refused with -CQ_EAGAIN,
 * nothing acknowledged is lost, the file is truncated back to the last
 * durable record) and it resumes by itself when a retry of the write
 * succeeds.
 */
#ifndef CQ_JOURNAL_H
#define CQ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"
#include "cq/health.h"

/* ---- record types ------------------------------------------------------------ */

/* Stable numeric ids: they are written to disk. Add new ones at the end. */
enum cq_rec_type {
    CQ_REC_CONFIG_LOADED = 1,  /* scope "global": {"config_hash","mode",...} */
    CQ_REC_MARKET_GAP = 2,     /* scope symbol: {"from_ms","to_ms","backfilled"} */
    CQ_REC_SIGNAL_EMITTED = 3, /* scope symbol: the signal */
    CQ_REC_SIGNAL_BLOCKED = 4, /* scope symbol: {"reason",...} */
    CQ_REC_ORDER_INTENT = 5,   /* scope symbol: {"client_order_id",...} before sending */
    CQ_REC_ORDER_ACK = 6,
    CQ_REC_ORDER_FILL = 7,
    CQ_REC_ORDER_REJECT = 8,
    CQ_REC_RISK_DECISION = 9,
    CQ_REC_QUARANTINE = 10, /* scope: the quarantined scope: {"reason","detail"} */
    CQ_REC_UNQUARANTINE = 11,
    CQ_REC_NOTE = 12,              /* free-form operator or test record */
    CQ_REC_ORDER_REFUSED = 13,     /* scope symbol: a filter refused the order (never sent):
                                      {"signal_id","client_order_id","filter","detail"} */
    CQ_REC_TRADER_CHECKPOINT = 14, /* scope "trader": the trader core's whole live state */
    CQ_REC__MAX
};

/* "config.loaded", "market.gap", "signal.emitted", "signal.blocked",
 * "order.intent", "order.ack", "order.fill", "order.reject",
 * "risk.decision", "quarantine", "unquarantine", "note", "order.refused",
 * "trader.checkpoint"; NULL if unknown. */
const char *cq_rec_type_name(uint16_t type);
/* The reverse; 0 if unknown. */
uint16_t cq_rec_type_parse(const char *name);

#define CQ_JOURNAL_SCOPE_MAX 31            /* bytes, without NUL */
#define CQ_JOURNAL_PAYLOAD_MAX (64 * 1024) /* bytes */
/* The timestamps a record may carry: 1970-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999999Z, in µs since the epoch. The writer clamps
 * the clock into this range; readers (verify, replay, export, open) treat
 * a record outside it as damaged. */
#define CQ_JOURNAL_TS_MIN_US ((int64_t)0)
#define CQ_JOURNAL_TS_MAX_US ((int64_t)253402300799999999)

/* One record as read back. scope and payload are borrowed for the callback. */
struct cq_journal_record {
    uint64_t seq;  /* 1, 2, 3, … without gaps */
    int64_t ts_us; /* wall clock at append, µs since the epoch */
    uint16_t type;
    const char *scope;   /* NUL-terminated, ≤ CQ_JOURNAL_SCOPE_MAX */
    const void *payload; /* JSON text in practice; any bytes are allowed */
    size_t payload_len;
    uint32_t segment; /* segment file number it was read from */
    uint64_t offset;  /* byte offset of the record in that segment */
};

/* ---- the filesystem boundary --------------------------------------------------- */

/* Every file operation the journal makes, so tests inject short writes,
 * ENOSPC, EIO on write or fdatasync, and "power loss" (unsynced writes
 * dropped or reordered). Return values and errno as the POSIX calls. */
struct cq_journal_fs {
    int (*open)(void *ctx, const char *path, int flags, mode_t mode);
    ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, off_t offset);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync_dir)(void *ctx, const char *dir);
    int (*ftruncate)(void *ctx, int fd, off_t len);
    int (*close)(void *ctx, int fd);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    void *ctx;
};

/* The real filesystem. Static storage. */
const struct cq_journal_fs *cq_journal_fs_posix(void);

/* ---- the live journal -------------------------------------------------------------- */

enum cq_journal_fsync {
    CQ_JOURNAL_FSYNC_ALWAYS, /* one fdatasync per record */
    CQ_JOURNAL_FSYNC_GROUP,  /* everything queued: one write + one fdatasync (default) */
    CQ_JOURNAL_FSYNC_OFF     /* no fdatasync: durable means "written" */
};

enum cq_journal_run_state {
    CQ_JOURNAL_OK,
    CQ_JOURNAL_PAUSED, /* ENOSPC / EIO on write: retrying, appends refused */
    CQ_JOURNAL_FAILED, /* fdatasync failed: appends refused until restart */
    CQ_JOURNAL_STOPPED
};

struct cq_journal_options {
    const char *dir; /* DATA_DIR/journal (created) */
    enum cq_journal_fsync fsync;
    size_t queue_capacity;           /* records waiting; default 65536 */
    uint64_t segment_max_bytes;      /* roll to a new segment; default 64 MiB */
    uint64_t snapshot_every_records; /* default 100000 */
    int64_t snapshot_every_ms;       /* default 60000 */
    unsigned keep_snapshots;         /* default 2 (older ones and their segments pruned) */
    int64_t verify_every_ms; /* background verify of sealed segments; default 60000; 0 = off */
    int64_t pause_retry_ms;  /* PAUSED: retry the write every; default 1000 */
    const struct cq_journal_fs *fs; /* NULL = posix; borrowed */
    const struct cq_clock *clock;   /* NULL = system; borrowed */
    struct cq_health_board *board;  /* NULL = no health publishing; borrowed */
};

/* What opening the directory found and did. */
struct cq_journal_recovery {
    uint64_t snapshot_seq;     /* last seq covered by the snapshot used (0 = none) */
    uint64_t replayed_records; /* tail records replayed on top of it */
    uint64_t last_seq;         /* the journal continues at last_seq + 1 */
    bool torn_tail_truncated;  /* a partial last record was cut off (logged) */
    uint64_t torn_bytes;
    uint32_t corrupt_segments;  /* segments with corruption inside (not a torn tail) */
    char first_corruption[256]; /* "segment 3 offset 4096: CRC mismatch", or "" */
    char quarantined[8][CQ_JOURNAL_SCOPE_MAX + 1]; /* scopes quarantined by recovery */
    size_t n_quarantined;
};

struct cq_journal;

/* Open (creating the directory if needed) and recover: newest valid
 * snapshot, then replay the tail; a torn last record is truncated; a
 * corrupted record inside a segment quarantines its scope (or, if the scope
 * is unreadable, "global"), and health says journal_corrupt with segment
 * and offset. The writer is not running yet. NULL on error. */
struct cq_journal *cq_journal_open(const struct cq_journal_options *opts,
                                   struct cq_journal_recovery *recovery, struct cq_err *err);
/* Start the writer thread. Supervisor only. */
int cq_journal_start(struct cq_journal *j, struct cq_err *err) CQ_WUR;
/* Drain the queue, make everything durable, write a snapshot, stop the
 * writer, waiting at most timeout_ms (< 0: without limit). Supervisor only;
 * idempotent (a call after a timeout waits again, with its own deadline).
 *   0              stopped; everything appended is durable;
 *   -CQ_EIO        stopped with records never written (FAILED, or a disk
 *                  still full): logged as journal_stop_unflushed;
 *   -CQ_ETIMEDOUT  the writer did not finish in time (a write or fsync
 *                  hangs): logged as journal_stop_timeout with durable_seq
 *                  and the count of records after it. Records up to
 *                  durable_seq are on disk; later ones were never
 *                  acknowledged durable (cq_journal_wait_durable did not
 *                  return 0 for them). The writer thread goes on in the
 *                  background and appends stay refused; cq_journal_free()
 *                  then leaves the journal's memory to the process exit
 *                  if the writer is still blocked.
 * The journal logs these outcomes itself: callers do not log them again. */
int cq_journal_stop_within(struct cq_journal *j, int64_t timeout_ms, struct cq_err *err) CQ_WUR;
/* cq_journal_stop_within(j, -1, err): for tools and tests. */
int cq_journal_stop(struct cq_journal *j, struct cq_err *err) CQ_WUR;
void cq_journal_free(struct cq_journal *j);

/* Queue one record; *seq gets its sequence number (assigned now, in queue
 * order). Any thread. -CQ_EFULL: queue full (retry later; nothing queued);
 * -CQ_EAGAIN: journal PAUSED; -CQ_EIO: FAILED or stopped; -CQ_EINVAL: scope
 * or payload too long or type unknown; -CQ_EPERM: an order.intent for a
 * quarantined scope (or while "global" is quarantined). */
int cq_journal_append(struct cq_journal *j, uint16_t type, const char *scope, const void *payload,
                      size_t payload_len, uint64_t *seq) CQ_WUR;

/* Block until seq is durable per the fsync policy. 0, -CQ_ETIMEDOUT, or
 * -CQ_EIO when the journal FAILED before seq became durable. timeout_ms < 0
 * waits without limit. */
int cq_journal_wait_durable(struct cq_journal *j, uint64_t seq, int64_t timeout_ms) CQ_WUR;

/* Ask the writer for a snapshot now (asynchronous). */
void cq_journal_request_snapshot(struct cq_journal *j);

/* Append a QUARANTINE record for scope (the state marks it at once). */
int cq_journal_quarantine(struct cq_journal *j, const char *scope, const char *reason,
                          const char *detail) CQ_WUR;
/* Whether trading in scope is refused (quarantined scope or "global").
 * Any thread. */
bool cq_journal_scope_quarantined(struct cq_journal *j, const char *scope);

struct cq_journal_stats {
    enum cq_journal_run_state state;
    uint64_t last_seq;    /* assigned */
    uint64_t written_seq; /* written to the file */
    uint64_t durable_seq; /* per policy */
    size_t queue_depth, queue_capacity;
    uint64_t appends_total, full_total; /* full_total: -CQ_EFULL answers */
    uint64_t bytes_written_total, fsyncs_total, batches_total;
    uint64_t commit_wait_p50_us, commit_wait_p99_us; /* append -> durable, recent window */
    struct cq_latency_histogram commit_wait;         /* append -> durable, since open (/metrics) */
    uint64_t snapshots_total;
    uint64_t snapshot_seq;
    uint32_t segments;
    uint64_t verified_segments_total, verify_failures_total;
    uint64_t pauses_total;
    char last_error[256];
};
void cq_journal_get_stats(struct cq_journal *j, struct cq_journal_stats *out);
json_t *cq_journal_stats_json(const struct cq_journal_stats *s);

/* The canonical state (see replay) as JSON; new reference. Any thread. */
json_t *cq_journal_state_json(struct cq_journal *j);

/* ---- offline: verify, replay, export, snapshot ---------------------------------- */

struct cq_journal_verify_report {
    uint64_t records;
    uint32_t segments;
    uint64_t bytes;
    uint64_t first_seq, last_seq;
    bool ok;
    uint32_t bad_segment; /* where the first problem is (if !ok) */
    uint64_t bad_offset;
    char problem[256]; /* "CRC mismatch", "hash chain broken", "seq gap 41 -> 43",
                        * "truncated record", "bad segment header", … */
    bool torn_tail;    /* the only problem is a partial last record */
};

/* Check every segment: headers, lengths, CRC32C, seq continuity, the hash
 * chain (within and across segments) and snapshots' checksums. 0 when the
 * report is filled (look at ok), negative on I/O error. fs NULL = posix. */
int cq_journal_verify_dir(const char *dir, const struct cq_journal_fs *fs,
                          struct cq_journal_verify_report *rep) CQ_WUR;

/* Call fn for every record with seq > after_seq, in order (after_seq 0 =
 * from the oldest record kept). Stops at the first integrity problem with
 * -CQ_EPARSE (err names segment and offset); a torn tail (a partial last
 * record, which cq_journal_open cuts off) just ends the iteration.
 * -CQ_ENOTFOUND: records after after_seq were pruned. fn returning non-zero
 * stops early (a negative value is returned). */
int cq_journal_read_dir(const char *dir, const struct cq_journal_fs *fs, uint64_t after_seq,
                        int (*fn)(void *ctx, const struct cq_journal_record *rec), void *ctx,
                        struct cq_err *err) CQ_WUR;

/* Reconstruct the canonical state: from the newest valid snapshot (if
 * use_snapshot) plus the tail, or from the first record. *state gets the
 * canonical JSON object (new reference). Deterministic: the same journal
 * always gives byte-identical cq_journal_state_dump output. -CQ_ENOTFOUND
 * when pruned segments are needed (no usable snapshot covers them). */
int cq_journal_replay_dir(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                          json_t **state, struct cq_err *err) CQ_WUR;
/* What a replay used and what it skipped (for the command line). */
struct cq_journal_replay_info {
    uint64_t snapshot_seq;     /* the snapshot used (0 = none) */
    uint64_t replayed_records; /* records applied on top of it */
    uint64_t last_seq;
    size_t n_skipped; /* snapshots not used, newest first */
    uint64_t skipped_seq[16];
    char skipped_why[16][160]; /* "ahead of the journal (last seq 41)", "…: checksum mismatch" */
};

/* cq_journal_replay_dir, and *info (may be NULL) says which snapshot was
 * used and which were skipped and why — filled on failure too, as far as
 * the replay got. A snapshot ahead of every record fails the replay
 * (-CQ_EPARSE): records are missing. */
int cq_journal_replay_dir_info(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                               json_t **state, struct cq_journal_replay_info *info,
                               struct cq_err *err) CQ_WUR;

/* Canonical text of a state: sorted keys, compact, trailing newline.
 * Caller frees. */
char *cq_journal_state_dump(const json_t *state);

/* One JSON object per record per line:
 * {"seq","ts","type","scope","payload"} (payload inlined when it is JSON,
 * else a string; seq unsigned). Refuses what replay refuses (records
 * missing before the first segment with no snapshot covering them, a
 * snapshot ahead of every record, damage) before writing anything; an
 * error names the file (a read) or says the output failed (a write). */
int cq_journal_export_dir(const char *dir, const struct cq_journal_fs *fs, FILE *out,
                          struct cq_err *err) CQ_WUR;

/* Which records an export writes: types is a bit mask (1u << type) of the
 * record types wanted, 0 = every type; scope NULL = every scope, else only
 * records of that exact scope. The checks before writing are the same. */
_Static_assert(CQ_REC__MAX <= 32, "struct cq_journal_export_filter: a bit per record type");
struct cq_journal_export_filter {
    uint32_t types;
    const char *scope;
};
int cq_journal_export_dir_filtered(const char *dir, const struct cq_journal_fs *fs,
                                   const struct cq_journal_export_filter *filter, FILE *out,
                                   struct cq_err *err) CQ_WUR;

/* Write a snapshot of the directory's replayed state now (offline). */
int cq_journal_snapshot_dir(const char *dir, const struct cq_journal_fs *fs,
                            struct cq_err *err) CQ_WUR;

#endif /* CQ_JOURNAL_H */
