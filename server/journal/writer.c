/*
 * writer.c — the live journal: the MPSC queue, the writer thread, group
 * commit, pause on ENOSPC/EIO, fail on fdatasync, snapshots and retention,
 * background verify, health and stats.
 *
 * What runs where
 *   Producers (any thread) call cq_journal_append. Under j->lock it checks
 *   the run state and the bounds, assigns seq = last + 1, reads the wall
 *   clock (so ts never goes back within seq order unless the clock does),
 *   and encodes the whole record straight into the queue buffer `fill`
 *   (prev digest and CRC left zero: the chain is sequential work for the
 *   writer). It signals the writer only when the writer is waiting.
 *
 *   The writer thread (created by cq_journal_start, which only the
 *   supervisor calls) swaps `fill` with its empty `batch` buffer under the
 *   lock (O(1): producers never wait for I/O), then without the lock seals
 *   the batch (prev digest + CRC32C per record), and writes it:
 *     GROUP   the batch in one write() per segment, then one fdatasync;
 *     ALWAYS  one write() + one fdatasync per record;
 *     OFF     one write() per segment, no fdatasync ("durable" = written).
 *   Then, in this order: commit waits (append -> durable) are sampled into
 *   a histogram, durable_seq advances and wait_durable callers are woken
 *   (durable_cv), and the records are applied to the canonical state
 *   (state_lock; readers copy it). A segment that would pass
 *   segment_max_bytes is fdatasync'ed and closed first; the new one is
 *   created with its header, fdatasync'ed, and the directory fsync'ed.
 *   When the queue is empty the writer does the low-priority work: due
 *   snapshots (+ retention) and background verify of sealed segments in
 *   256 KiB steps through its own fds (pread), so an append never waits on
 *   it and a durability wait waits at most one step.
 *
 * The queue and what happens when it is full
 *   `fill` holds at most queue_capacity records and QUEUE_MAX_BYTES bytes;
 *   beyond either, append returns -CQ_EFULL and queues nothing: the caller
 *   retries later (backpressure); nothing is ever dropped. Memory: two
 *   buffers of at most QUEUE_MAX_BYTES each.
 *
 * Failures
 *   write() fails (ENOSPC, EIO, a short write whose remainder fails): the
 *   file is ftruncate'd back to its size before the write (everything
 *   before it was already durable or, with OFF, written), the journal is
 *   PAUSED (appends -CQ_EAGAIN; records queued before stay queued), and the
 *   same bytes are retried every pause_retry_ms; the first success resumes.
 *   Log journal_paused / journal_resumed; health degraded with
 *   paused_disk_full (ENOSPC, EDQUOT) or io_error, not ready.
 *   fdatasync (or a directory fsync) fails: FAILED for good (never
 *   retried: the kernel may have dropped the dirty pages and a retry could
 *   report success over lost data). Appends -CQ_EIO; waiters for anything not yet durable get
 *   -CQ_EIO; health down / fsync_failed; logged once.
 *
 * Locks: j->lock (queue, run state, counters, quarantine set) with its two
 * condvars; state_lock (the canonical state); stats_lock (histogram and
 * writer counters). Never nested; health and logging happen with none held.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/fs.h"
#include "cq/log.h"
#include "journal-int.h"

#define SVC "journal"
#define QUEUE_MAX_BYTES ((size_t)32 << 20)
/* The idle writer sleeps until its next deadline (health, snapshot, verify,
 * pause retry) or until an append, a snapshot request or stop rings work_cv.
 * This bounds one sleep all the same: an injected clock that jumps cannot
 * ring the doorbell, and it is the health cadence anyway. */
#define IDLE_MAX_WAIT_MS 1000
#define VERIFY_STEP_BYTES ((uint64_t)256 * 1024)
#define HEALTH_EVERY_MS 1000
#define HIST_SUB 8
#define HIST_BUCKETS 512
#define HIST_WINDOW 8192 /* samples per window; p50/p99 over the last two */

struct qbuf {
    uint8_t *bytes; /* owned: encoded records back to back */
    size_t len, cap;
    int64_t *enq_ns; /* owned: monotonic append time of each record */
    size_t count, enq_cap;
};

struct hist {
    uint32_t cur[HIST_BUCKETS];
    uint32_t prev[HIST_BUCKETS];
    uint64_t cur_n, prev_n;
};

struct cq_journal {
    /* fixed after open */
    char dir[CQJ_PATH_MAX];
    struct cq_journal_options opts; /* defaults applied; opts.dir points at dir */
    const struct cq_journal_fs *fs; /* borrowed */
    const struct cq_clock *clock;   /* borrowed */
    struct cq_health_board *board;  /* borrowed */

    /* j->lock */
    pthread_mutex_t lock;
    pthread_cond_t work_cv;    /* the writer waits for records or requests */
    pthread_cond_t durable_cv; /* wait_durable callers */
    struct qbuf fill;
    uint64_t last_seq; /* assigned */
    uint64_t written_seq;
    uint64_t durable_seq;
    enum cq_journal_run_state state;
    int pause_errno;
    bool started, stop_requested, stopped, snapshot_requested, writer_waiting;
    bool joined;         /* the writer thread was joined (stop saw it finish) */
    bool stop_timed_out; /* a bounded stop gave up waiting for the writer */
    int stop_rc;
    uint64_t appends_total, full_total, pauses_total;
    char last_error[256];
    char (*quarantine)[CQ_JOURNAL_SCOPE_MAX + 1]; /* owned: scopes refused for order intents */
    size_t n_quarantine, cap_quarantine;
    pthread_t thread;

    /* writer-owned (the writer thread; before start, the opener) */
    struct qbuf batch;
    size_t b_off, b_idx;   /* next record to write */
    size_t a_off, a_idx;   /* next record to apply (durable) */
    uint64_t chain_digest; /* digest of the last sealed record */
    uint64_t batch_end_digest;
    int seg_fd;
    uint32_t segno; /* current (last) segment; 0 = none yet */
    uint64_t seg_size, seg_synced;
    bool need_truncate;
    bool dirs_synced; /* the directory entries are durable (once per process) */
    bool paused;      /* mirror of state == PAUSED */
    int64_t paused_at_ms, next_retry_ms;
    struct cq_journal__seginfo *segs; /* live segments, ascending; last = current */
    size_t n_segs, cap_segs;
    uint64_t since_snapshot;
    int64_t last_snapshot_ms;
    int64_t next_health_ms;
    bool v_active; /* background verify pass running */
    struct cq_journal__walker v_w;
    uint32_t *v_segs;
    size_t v_n;
    int64_t next_verify_ms;
    bool failed_logged;
    uint64_t idle_wakeups; /* j->lock: returns from idle_wait (cq_journal__idle_wakeups) */

    /* state_lock */
    pthread_mutex_t state_lock;
    struct cq_journal__state *cstate; /* owned: the canonical state */
    uint64_t applied_seq, applied_digest;

    /* stats_lock */
    pthread_mutex_t stats_lock;
    struct hist hist;
    struct cq_latency_histogram commit_wait; /* cumulative, for /metrics */
    uint64_t bytes_written_total, fsyncs_total, batches_total, snapshots_total, snapshot_seq;
    uint64_t verified_segments_total, verify_failures_total;
    uint32_t segments;
    bool verify_bad;
    char verify_problem[256];
    bool corrupt;         /* recovery found corruption */
    bool corrupt_persist; /* a scope is quarantined for journal_corrupt */
    char corrupt_detail[256];
    char bundle[CQJ_PATH_MAX];
    struct cq_journal_recovery recovery;
};

/* ---- small helpers ------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(const struct cq_journal *j)
{
    return cq_clock_mono_ms(j->clock);
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void qbuf_free(struct qbuf *q)
{
    free(q->bytes);
    free(q->enq_ns);
    memset(q, 0, sizeof(*q));
}

static int qbuf_reserve(struct qbuf *q, size_t add_bytes)
{
    if (q->len + add_bytes > q->cap) {
        size_t ncap = q->cap == 0 ? 64 * 1024 : q->cap;
        while (ncap < q->len + add_bytes) {
            ncap *= 2;
        }
        uint8_t *p = realloc(q->bytes, ncap);
        if (p == NULL) {
            return -CQ_ENOMEM;
        }
        q->bytes = p;
        q->cap = ncap;
    }
    if (q->count == q->enq_cap) {
        size_t ncap = q->enq_cap == 0 ? 1024 : q->enq_cap * 2;
        int64_t *p = realloc(q->enq_ns, ncap * sizeof(*p));
        if (p == NULL) {
            return -CQ_ENOMEM;
        }
        q->enq_ns = p;
        q->enq_cap = ncap;
    }
    return 0;
}

static const char *run_state_name(enum cq_journal_run_state s)
{
    switch (s) {
    case CQ_JOURNAL_OK:
        return "ok";
    case CQ_JOURNAL_PAUSED:
        return "paused";
    case CQ_JOURNAL_FAILED:
        return "failed";
    case CQ_JOURNAL_STOPPED:
        return "stopped";
    }
    return "unknown";
}

static bool is_disk_full(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/* ---- quarantine set (j->lock held) ----------------------------------------------------------- */

static bool q_contains(const struct cq_journal *j, const char *scope)
{
    for (size_t i = 0; i < j->n_quarantine; i++) {
        if (strcmp(j->quarantine[i], scope) == 0) {
            return true;
        }
    }
    return false;
}

static void q_add(struct cq_journal *j, const char *scope)
{
    if (q_contains(j, scope)) {
        return;
    }
    if (j->n_quarantine == j->cap_quarantine) {
        size_t ncap = j->cap_quarantine == 0 ? 8 : j->cap_quarantine * 2;
        void *p = realloc(j->quarantine, ncap * sizeof(*j->quarantine));
        if (p == NULL) {
            return;
        }
        j->quarantine = p;
        j->cap_quarantine = ncap;
    }
    cq_strlcpy(j->quarantine[j->n_quarantine++], scope, sizeof(j->quarantine[0]));
}

static void q_remove(struct cq_journal *j, const char *scope)
{
    for (size_t i = 0; i < j->n_quarantine; i++) {
        if (strcmp(j->quarantine[i], scope) == 0) {
            memmove(j->quarantine[i], j->quarantine[i + 1],
                    (j->n_quarantine - i - 1) * sizeof(j->quarantine[0]));
            j->n_quarantine--;
            return;
        }
    }
}

static bool q_refused(const struct cq_journal *j, const char *scope)
{
    return q_contains(j, scope) || q_contains(j, "global");
}

/* ---- commit-wait histogram ------------------------------------------------------------------- */

static unsigned hist_bucket(uint64_t ns)
{
    if (ns < HIST_SUB) {
        return (unsigned)ns;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)((ns >> (msb - 3)) & 7u);
    return (msb - 2) * HIST_SUB + sub;
}

static uint64_t hist_upper_ns(unsigned idx)
{
    if (idx < HIST_SUB) {
        return idx + 1;
    }
    unsigned msb = idx / HIST_SUB + 2;
    uint64_t lower = (uint64_t)(HIST_SUB + idx % HIST_SUB) << (msb - 3);
    return lower + ((uint64_t)1 << (msb - 3));
}

static void hist_add(struct hist *h, uint64_t ns)
{
    if (h->cur_n >= HIST_WINDOW) {
        memcpy(h->prev, h->cur, sizeof(h->cur));
        memset(h->cur, 0, sizeof(h->cur));
        h->prev_n = h->cur_n;
        h->cur_n = 0;
    }
    h->cur[hist_bucket(ns)]++;
    h->cur_n++;
}

static uint64_t hist_quantile_us(const struct hist *h, double q)
{
    uint64_t total = h->cur_n + h->prev_n;
    if (total == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total) {
        rank = total - 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += (uint64_t)h->cur[i] + h->prev[i];
        if (seen > rank) {
            return (hist_upper_ns(i) + 999) / 1000;
        }
    }
    return 0;
}

/* ---- health -------------------------------------------------------------------------------------
 */

struct qlist_ctx {
    json_t *arr;
    char first[CQ_JOURNAL_SCOPE_MAX + 1];
    bool any_corrupt;
};

static void publish_health(struct cq_journal *j)
{
    if (j->board == NULL) {
        return;
    }
    struct cq_journal_stats st;
    cq_journal_get_stats(j, &st);
    cq_health_set_journal_metrics(j->board,
                                  &(struct cq_journal_metrics){
                                      .queue_depth = st.queue_depth,
                                      .durable_seq = st.durable_seq,
                                      .appends_total = st.appends_total,
                                      .queue_full_total = st.full_total,
                                      .fsyncs_total = st.fsyncs_total,
                                      .bytes_written_total = st.bytes_written_total,
                                      .snapshots_total = st.snapshots_total,
                                      .verified_segments_total = st.verified_segments_total,
                                      .verify_failures_total = st.verify_failures_total,
                                      .pauses_total = st.pauses_total,
                                      .commit_wait = st.commit_wait,
                                  });
    json_t *details = cq_journal_stats_json(&st);
    json_t *quarantined = json_array();
    bool started, stopped;
    int pause_errno;
    pthread_mutex_lock(&j->lock);
    started = j->started;
    stopped = j->stopped;
    pause_errno = j->pause_errno;
    for (size_t i = 0; i < j->n_quarantine; i++) {
        json_array_append_new(quarantined, json_string(j->quarantine[i]));
    }
    pthread_mutex_unlock(&j->lock);

    char detail[CQ_HEALTH_DETAIL_MAX];
    bool corrupt, corrupt_persist, verify_bad;
    pthread_mutex_lock(&j->stats_lock);
    corrupt = j->corrupt;
    corrupt_persist = j->corrupt_persist;
    verify_bad = j->verify_bad;
    json_object_set_new(details, "verify",
                        json_pack("{s:b,s:s}", "ok", !verify_bad, "problem", j->verify_problem));
    if (j->corrupt) {
        json_object_set_new(details, "corruption",
                            json_pack("{s:s,s:s,s:I}", "detail", j->corrupt_detail, "bundle",
                                      j->bundle, "corrupt_segments",
                                      (json_int_t)j->recovery.corrupt_segments));
    }
    json_object_set_new(details, "recovery",
                        json_pack("{s:I,s:I,s:b,s:I}", "snapshot_seq",
                                  (json_int_t)j->recovery.snapshot_seq, "replayed_records",
                                  (json_int_t)j->recovery.replayed_records, "torn_tail_truncated",
                                  j->recovery.torn_tail_truncated, "torn_bytes",
                                  (json_int_t)j->recovery.torn_bytes));
    if (verify_bad) {
        snprintf(detail, sizeof(detail), "background verify: %.200s", j->verify_problem);
    } else if (corrupt) {
        char scopes[128] = "";
        for (size_t i = 0; i < j->recovery.n_quarantined; i++) {
            size_t used = strlen(scopes);
            snprintf(scopes + used, sizeof(scopes) - used, "%s%s", i > 0 ? "," : "",
                     j->recovery.quarantined[i]);
        }
        snprintf(detail, sizeof(detail), "%.180s; quarantined %.60s", j->corrupt_detail,
                 scopes[0] != '\0' ? scopes : "nothing");
    } else {
        snprintf(detail, sizeof(detail), "%s", j->corrupt_detail);
    }
    pthread_mutex_unlock(&j->stats_lock);
    json_object_set_new(details, "quarantined", quarantined);

    enum cq_health_status status;
    bool ready;
    const char *reason;
    char buf[CQ_HEALTH_DETAIL_MAX];
    if (st.state == CQ_JOURNAL_FAILED) {
        status = CQ_HEALTH_DOWN;
        ready = false;
        reason = "fsync_failed";
        snprintf(buf, sizeof(buf), "%.200s; appends refused until restart", st.last_error);
    } else if (stopped) {
        status = CQ_HEALTH_STOPPED;
        ready = false;
        reason = "stopped";
        snprintf(buf, sizeof(buf), "journal stopped at seq %llu",
                 (unsigned long long)st.durable_seq);
    } else if (st.state == CQ_JOURNAL_PAUSED) {
        status = CQ_HEALTH_DEGRADED;
        ready = false;
        reason = is_disk_full(pause_errno) ? "paused_disk_full" : "io_error";
        snprintf(buf, sizeof(buf), "appends paused: %s; retrying every %lld ms",
                 pause_errno != 0 ? strerror(pause_errno) : "short write",
                 (long long)j->opts.pause_retry_ms);
    } else if (!started) {
        status = CQ_HEALTH_STARTING;
        ready = false;
        reason = corrupt || verify_bad ? "journal_corrupt" : "not_started";
        snprintf(buf, sizeof(buf), "%s", corrupt || verify_bad ? detail : "writer not started");
    } else if (corrupt || corrupt_persist || verify_bad) {
        status = CQ_HEALTH_DEGRADED;
        ready = true;
        reason = "journal_corrupt";
        snprintf(buf, sizeof(buf), "%s", detail);
    } else {
        status = CQ_HEALTH_OK;
        ready = true;
        reason = "";
        snprintf(buf, sizeof(buf), "durable seq %llu", (unsigned long long)st.durable_seq);
    }
    cq_health_publish(j->board, CQ_SVC_JOURNAL, status, ready, reason, buf, details);
}

/* ---- state changes ------------------------------------------------------------------------------
 */

static void fail_journal(struct cq_journal *j, int e, const char *what)
{
    bool first = false;
    pthread_mutex_lock(&j->lock);
    if (j->state != CQ_JOURNAL_FAILED) {
        j->state = CQ_JOURNAL_FAILED;
        snprintf(j->last_error, sizeof(j->last_error), "%s failed: %s", what, strerror(e));
        first = true;
    }
    pthread_mutex_unlock(&j->lock);
    j->paused = false;
    if (first) {
        cq_log_error(SVC, "journal_fsync_failed",
                     json_pack("{s:s,s:i,s:s,s:i,s:I}", "call", what, "errno", e, "error",
                               strerror(e), "segment", (int)j->segno, "durable_seq",
                               (json_int_t)j->durable_seq),
                     "%s failed (%s): the journal stops writing for good; restart after "
                     "checking the disk",
                     what, strerror(e));
        publish_health(j);
    }
    /* waiters learn of it after health says so */
    pthread_mutex_lock(&j->lock);
    pthread_cond_broadcast(&j->durable_cv);
    pthread_mutex_unlock(&j->lock);
}

static void pause_journal(struct cq_journal *j, int e, const char *what)
{
    int64_t now = now_ms(j);
    j->next_retry_ms = now + j->opts.pause_retry_ms;
    if (j->paused) {
        return;
    }
    j->paused = true;
    j->paused_at_ms = now;
    pthread_mutex_lock(&j->lock);
    if (j->state == CQ_JOURNAL_OK) {
        j->state = CQ_JOURNAL_PAUSED;
    }
    j->pause_errno = e;
    j->pauses_total++;
    snprintf(j->last_error, sizeof(j->last_error), "%s failed: %s", what,
             e != 0 ? strerror(e) : "no progress");
    pthread_mutex_unlock(&j->lock);
    cq_log_warn(SVC, "journal_paused",
                json_pack("{s:s,s:i,s:s,s:s,s:i}", "call", what, "errno", e, "error",
                          e != 0 ? strerror(e) : "no progress", "reason",
                          is_disk_full(e) ? "paused_disk_full" : "io_error", "segment",
                          (int)j->segno),
                "%s failed (%s): appends paused, retrying every %lld ms", what,
                e != 0 ? strerror(e) : "no progress", (long long)j->opts.pause_retry_ms);
    publish_health(j);
}

static void resume_journal(struct cq_journal *j)
{
    if (!j->paused) {
        return;
    }
    j->paused = false;
    pthread_mutex_lock(&j->lock);
    if (j->state == CQ_JOURNAL_PAUSED) {
        j->state = CQ_JOURNAL_OK;
    }
    j->pause_errno = 0;
    pthread_mutex_unlock(&j->lock);
    cq_log_info(SVC, "journal_resumed",
                json_pack("{s:I}", "paused_ms", (json_int_t)(now_ms(j) - j->paused_at_ms)),
                "journal writes work again; appends resumed");
    publish_health(j);
}

/* ---- segments
 * ------------------------------------------------------------------------------------ */

static int sync_segment(struct cq_journal *j)
{
    if (j->fs->fdatasync(j->fs->ctx, j->seg_fd) < 0) {
        fail_journal(j, errno, "fdatasync");
        return -1;
    }
    pthread_mutex_lock(&j->stats_lock);
    j->fsyncs_total++;
    pthread_mutex_unlock(&j->stats_lock);
    j->seg_synced = j->seg_size;
    return 0;
}

static int add_seginfo(struct cq_journal *j, uint32_t segno, uint64_t first_seq)
{
    if (j->n_segs == j->cap_segs) {
        size_t ncap = j->cap_segs == 0 ? 16 : j->cap_segs * 2;
        void *p = realloc(j->segs, ncap * sizeof(*j->segs));
        if (p == NULL) {
            return -CQ_ENOMEM;
        }
        j->segs = p;
        j->cap_segs = ncap;
    }
    j->segs[j->n_segs].segno = segno;
    j->segs[j->n_segs].first_seq = first_seq;
    j->n_segs++;
    pthread_mutex_lock(&j->stats_lock);
    j->segments = (uint32_t)j->n_segs;
    pthread_mutex_unlock(&j->stats_lock);
    return 0;
}

/* 0 ok, 1 paused, -1 failed */
static int create_segment(struct cq_journal *j, uint32_t segno, uint64_t first_seq,
                          uint64_t prev_digest)
{
    char path[CQJ_PATH_MAX];
    uint8_t hdr[CQJ_SEG_HDR_BYTES];
    struct cq_journal__seg_header h = {CQJ_FORMAT_VERSION, segno, first_seq, prev_digest};
    cq_journal__seg_path(path, sizeof(path), j->dir, segno);
    cq_journal__seg_header_encode(hdr, &h);
    int fd =
        j->fs->open(j->fs->ctx, path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | CQJ_O_SAFE, 0640);
    if (fd < 0) {
        /* "open new segment seg-00000002.cqj": the name says which file (a
         * FIFO or a symlink there fails here with ENXIO or ELOOP) */
        int e = errno;
        char what[64];
        snprintf(what, sizeof(what), "open new segment seg-%08u.cqj", segno); /* ≤ 37 bytes */
        pause_journal(j, e, what);
        return 1;
    }
    if (cq_journal__write_all(j->fs, fd, hdr, sizeof(hdr)) < 0) {
        int e = errno;
        j->fs->close(j->fs->ctx, fd);
        j->fs->unlink(j->fs->ctx, path);
        pause_journal(j, e, "write segment header");
        return 1;
    }
    if (j->fs->fdatasync(j->fs->ctx, fd) < 0) {
        int e = errno;
        j->fs->close(j->fs->ctx, fd);
        fail_journal(j, e, "fdatasync");
        return -1;
    }
    if (j->fs->fsync_dir(j->fs->ctx, j->dir) < 0) {
        int e = errno;
        j->fs->close(j->fs->ctx, fd);
        fail_journal(j, e, "fsync of the journal directory");
        return -1;
    }
    j->seg_fd = fd;
    j->segno = segno;
    j->seg_size = CQJ_SEG_HDR_BYTES;
    j->seg_synced = CQJ_SEG_HDR_BYTES;
    pthread_mutex_lock(&j->stats_lock);
    j->bytes_written_total += CQJ_SEG_HDR_BYTES;
    j->fsyncs_total++;
    pthread_mutex_unlock(&j->stats_lock);
    if (add_seginfo(j, segno, first_seq) < 0) {
        cq_log_error(SVC, "journal_out_of_memory", NULL, "segment list");
    }
    cq_log_debug(SVC, "journal_segment_created",
                 json_pack("{s:i,s:I}", "segment", (int)segno, "first_seq", (json_int_t)first_seq),
                 "segment %u started at seq %llu", segno, (unsigned long long)first_seq);
    resume_journal(j);
    return 0;
}

static void advance_durable(struct cq_journal *j);

/* Before this process acknowledges anything: the segment it appends to may
 * have been created by an earlier process that died (or failed) before the
 * directory fsync, and the journal directory itself may be new. Sync the
 * journal directory and its parent once. 0 ok, -1 failed. */
static int sync_dirs_once(struct cq_journal *j)
{
    if (j->dirs_synced) {
        return 0;
    }
    char parent[CQJ_PATH_MAX];
    cq_strlcpy(parent, j->dir, sizeof(parent)); /* bounded: j->dir has the same size */
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') {
        parent[--n] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        cq_strlcpy(parent, ".", sizeof(parent));
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    if (j->fs->fsync_dir(j->fs->ctx, j->dir) < 0 || j->fs->fsync_dir(j->fs->ctx, parent) < 0) {
        fail_journal(j, errno, "fsync of the journal directory");
        return -1;
    }
    j->dirs_synced = true;
    return 0;
}

/* Make sure a segment is open for a record of rec_len bytes starting at seq
 * (whose prev digest is prev_digest). 0 ok, 1 paused, -1 failed. */
static int ensure_segment(struct cq_journal *j, uint32_t rec_len, uint64_t seq,
                          uint64_t prev_digest)
{
    bool full = j->segno != 0 && j->seg_size > CQJ_SEG_HDR_BYTES &&
                j->seg_size + rec_len > j->opts.segment_max_bytes;
    if (j->seg_fd >= 0 && !full) {
        return 0;
    }
    if (j->seg_fd >= 0) {
        if (j->seg_size > j->seg_synced && sync_segment(j) < 0) {
            return -1;
        }
        advance_durable(j);
        j->fs->close(j->fs->ctx, j->seg_fd);
        j->seg_fd = -1;
    }
    if (sync_dirs_once(j) < 0) {
        return -1;
    }
    if (j->segno != 0 && !full) {
        char path[CQJ_PATH_MAX];
        cq_journal__seg_path(path, sizeof(path), j->dir, j->segno);
        int fd = j->fs->open(j->fs->ctx, path, O_WRONLY | O_APPEND | CQJ_O_SAFE, 0);
        if (fd < 0) {
            pause_journal(j, errno, "open segment");
            return 1;
        }
        if (j->fs->ftruncate(j->fs->ctx, fd, (off_t)j->seg_size) < 0) {
            int e = errno;
            j->fs->close(j->fs->ctx, fd);
            pause_journal(j, e, "ftruncate");
            return 1;
        }
        j->seg_fd = fd;
        j->seg_synced = 0; /* written by an earlier run: sync before sealing */
        return 0;
    }
    return create_segment(j, j->segno + 1, seq, prev_digest);
}

/* ---- writing a batch
 * ------------------------------------------------------------------------------ */

static void seal_batch(struct cq_journal *j)
{
    uint64_t d = j->chain_digest;
    for (size_t off = 0; off < j->batch.len;) {
        uint8_t *rec = j->batch.bytes + off;
        d = cq_journal__rec_seal(rec, d);
        off += cqj_get32(rec + CQJ_R_LEN);
    }
    j->chain_digest = d;
    j->batch_end_digest = d;
}

/* Everything written so far is durable: publish it, sample, apply. */
static void advance_durable(struct cq_journal *j)
{
    if (j->a_idx == j->b_idx) {
        return;
    }
    int64_t t = mono_ns();
    const uint8_t *last = NULL;
    for (size_t off = j->a_off; off < j->b_off;) {
        last = j->batch.bytes + off;
        off += cqj_get32(last + CQJ_R_LEN);
    }
    uint64_t seq = cqj_get64(last + CQJ_R_SEQ);
    /* samples first, so a woken waiter's stats include its own record */
    pthread_mutex_lock(&j->stats_lock);
    for (size_t i = j->a_idx; i < j->b_idx; i++) {
        int64_t w = t - j->batch.enq_ns[i];
        hist_add(&j->hist, w > 0 ? (uint64_t)w : 0);
        cq_latency_histogram_observe(&j->commit_wait, w > 0 ? (uint64_t)w : 0);
    }
    pthread_mutex_unlock(&j->stats_lock);
    pthread_mutex_lock(&j->lock);
    j->written_seq = seq;
    j->durable_seq = seq;
    pthread_cond_broadcast(&j->durable_cv);
    pthread_mutex_unlock(&j->lock);

    pthread_mutex_lock(&j->state_lock);
    size_t off = j->a_off;
    for (size_t i = j->a_idx; i < j->b_idx; i++) {
        const uint8_t *b = j->batch.bytes + off;
        uint32_t len = cqj_get32(b + CQJ_R_LEN);
        struct cq_journal_record v;
        char scope[CQ_JOURNAL_SCOPE_MAX + 1];
        cq_journal__record_view(b, scope, &v);
        v.segment = j->segno;
        if (cq_journal__state_apply(j->cstate, &v) < 0) {
            cq_log_error(SVC, "journal_out_of_memory", NULL, "canonical state not updated");
        }
        off += len;
        j->applied_seq = v.seq;
        j->applied_digest =
            off < j->batch.len ? cqj_get64(j->batch.bytes + off + CQJ_R_PREV) : j->batch_end_digest;
    }
    pthread_mutex_unlock(&j->state_lock);
    j->since_snapshot += j->b_idx - j->a_idx;
    j->a_idx = j->b_idx;
    j->a_off = j->b_off;
}

/* 0 ok, 1 paused (nothing of the chunk stays in the file) */
static int write_chunk(struct cq_journal *j, const uint8_t *buf, size_t len)
{
    if (j->need_truncate) {
        if (j->fs->ftruncate(j->fs->ctx, j->seg_fd, (off_t)j->seg_size) < 0) {
            pause_journal(j, errno, "ftruncate");
            return 1;
        }
        j->need_truncate = false;
    }
    if (cq_journal__write_all(j->fs, j->seg_fd, buf, len) < 0) {
        int e = errno;
        if (j->fs->ftruncate(j->fs->ctx, j->seg_fd, (off_t)j->seg_size) < 0) {
            j->need_truncate = true;
        }
        pause_journal(j, e, "write");
        return 1;
    }
    pthread_mutex_lock(&j->stats_lock);
    j->bytes_written_total += len;
    pthread_mutex_unlock(&j->stats_lock);
    resume_journal(j);
    return 0;
}

/* Write the rest of the batch. 0 done, 1 paused, -1 failed. */
static int batch_write(struct cq_journal *j)
{
    struct qbuf *b = &j->batch;
    enum cq_journal_fsync pol = j->opts.fsync;
    while (j->b_idx < b->count) {
        const uint8_t *rec = b->bytes + j->b_off;
        uint32_t len = cqj_get32(rec + CQJ_R_LEN);
        int rc = ensure_segment(j, len, cqj_get64(rec + CQJ_R_SEQ), cqj_get64(rec + CQJ_R_PREV));
        if (rc != 0) {
            return rc;
        }
        size_t end_off = j->b_off, end_idx = j->b_idx;
        uint64_t size = j->seg_size;
        while (end_idx < b->count) {
            uint32_t l = cqj_get32(b->bytes + end_off + CQJ_R_LEN);
            if (end_idx > j->b_idx &&
                (pol == CQ_JOURNAL_FSYNC_ALWAYS || size + l > j->opts.segment_max_bytes)) {
                break;
            }
            size += l;
            end_off += l;
            end_idx++;
        }
        if (write_chunk(j, rec, end_off - j->b_off) != 0) {
            return 1;
        }
        j->seg_size = size;
        j->b_off = end_off;
        j->b_idx = end_idx;
        if (pol == CQ_JOURNAL_FSYNC_ALWAYS) {
            if (sync_segment(j) < 0) {
                return -1;
            }
            advance_durable(j);
        } else if (pol == CQ_JOURNAL_FSYNC_OFF) {
            advance_durable(j);
        }
    }
    if (pol == CQ_JOURNAL_FSYNC_GROUP && j->a_idx < j->b_idx) {
        if (sync_segment(j) < 0) {
            return -1;
        }
        advance_durable(j);
    }
    return 0;
}

static void batch_reset(struct cq_journal *j)
{
    j->batch.len = 0;
    j->batch.count = 0;
    j->b_off = j->b_idx = j->a_off = j->a_idx = 0;
}

/* ---- snapshots and retention
 * ---------------------------------------------------------------------- */

static void abort_verify_pass(struct cq_journal *j)
{
    if (j->v_active) {
        cq_journal__walker_fini(&j->v_w);
        free(j->v_segs);
        j->v_segs = NULL;
        j->v_active = false;
    }
}

static void prune(struct cq_journal *j)
{
    struct cq_journal__dirlist l;
    struct cq_err err;
    if (cq_journal__list_dir(j->dir, &l, &err) < 0) {
        cq_log_warn(SVC, "journal_prune_failed", json_pack("{s:s}", "error", err.message),
                    "cannot list the journal directory");
        return;
    }
    size_t keep = j->opts.keep_snapshots > 0 ? j->opts.keep_snapshots : 1;
    unsigned snaps_pruned = 0, segs_pruned = 0;
    if (l.n_snaps > keep) {
        for (size_t i = 0; i + keep < l.n_snaps; i++) {
            char path[CQJ_PATH_MAX];
            cq_journal__snap_path(path, sizeof(path), j->dir, l.snaps[i]);
            if (j->fs->unlink(j->fs->ctx, path) == 0) {
                snaps_pruned++;
            }
        }
    }
    /* segments go only once keep snapshots exist: until then the fallback
     * for a damaged snapshot is the full replay, which needs them all */
    uint64_t oldest_kept = l.n_snaps < keep ? 0 : l.snaps[l.n_snaps - keep];
    size_t k = 0;
    while (oldest_kept > 0 && k + 1 < j->n_segs && j->segs[k + 1].first_seq > 0 &&
           j->segs[k + 1].first_seq - 1 <= oldest_kept) {
        k++;
    }
    if (k > 0) {
        abort_verify_pass(j);
    }
    size_t removed = 0;
    for (size_t i = 0; i < k; i++) {
        char path[CQJ_PATH_MAX];
        cq_journal__seg_path(path, sizeof(path), j->dir, j->segs[i].segno);
        if (j->fs->unlink(j->fs->ctx, path) < 0 && errno != ENOENT) {
            break;
        }
        removed++;
        segs_pruned++;
    }
    if (removed > 0) {
        memmove(j->segs, j->segs + removed, (j->n_segs - removed) * sizeof(*j->segs));
        j->n_segs -= removed;
        pthread_mutex_lock(&j->stats_lock);
        j->segments = (uint32_t)j->n_segs;
        pthread_mutex_unlock(&j->stats_lock);
    }
    if (snaps_pruned + segs_pruned > 0) {
        if (j->fs->fsync_dir(j->fs->ctx, j->dir) < 0) {
            cq_log_warn(SVC, "journal_prune_failed", json_pack("{s:s}", "error", strerror(errno)),
                        "fsync of the journal directory after pruning failed");
        }
        cq_log_info(SVC, "journal_pruned",
                    json_pack("{s:i,s:i,s:I}", "snapshots", (int)snaps_pruned, "segments",
                              (int)segs_pruned, "oldest_snapshot_seq", (json_int_t)oldest_kept),
                    "pruned %u snapshots and %u segments older than the snapshot at seq %llu",
                    snaps_pruned, segs_pruned, (unsigned long long)oldest_kept);
    }
    cq_journal__dirlist_fini(&l);
}

/* 0 written (or nothing to do), -1 failed. */
static int do_snapshot(struct cq_journal *j)
{
    struct cq_err err;
    uint64_t snap_seq;
    pthread_mutex_lock(&j->stats_lock);
    snap_seq = j->snapshot_seq;
    pthread_mutex_unlock(&j->stats_lock);
    j->since_snapshot = 0;
    j->last_snapshot_ms = now_ms(j);
    if (j->applied_seq == 0 || j->applied_seq == snap_seq) {
        return 0;
    }
    /* never let a snapshot get ahead of what is on disk (OFF writes without syncing) */
    if (j->seg_fd >= 0 && j->seg_size > j->seg_synced && sync_segment(j) < 0) {
        return -1;
    }
    size_t len = 0;
    pthread_mutex_lock(&j->state_lock);
    char *text = cq_journal__state_dump(j->cstate, &len);
    uint64_t seq = j->applied_seq, digest = j->applied_digest;
    pthread_mutex_unlock(&j->state_lock);
    if (text == NULL) {
        cq_log_error(SVC, "journal_snapshot_failed", NULL, "out of memory dumping the state");
        return -1;
    }
    int rc = cq_journal__snap_write(j->dir, j->fs, seq, digest, text, len, &err);
    free(text);
    if (rc < 0) {
        pthread_mutex_lock(&j->lock);
        snprintf(j->last_error, sizeof(j->last_error), "snapshot: %.200s", err.message);
        pthread_mutex_unlock(&j->lock);
        cq_log_warn(SVC, "journal_snapshot_failed",
                    json_pack("{s:I,s:s}", "seq", (json_int_t)seq, "error", err.message),
                    "snapshot at seq %llu not written: %s (the journal itself is fine)",
                    (unsigned long long)seq, err.message);
        return -1;
    }
    pthread_mutex_lock(&j->stats_lock);
    j->snapshots_total++;
    j->snapshot_seq = seq;
    pthread_mutex_unlock(&j->stats_lock);
    cq_log_info(SVC, "journal_snapshot_written",
                json_pack("{s:I,s:I}", "seq", (json_int_t)seq, "bytes", (json_int_t)len),
                "snapshot at seq %llu (%zu bytes)", (unsigned long long)seq, len);
    prune(j);
    return 0;
}

static bool maybe_snapshot(struct cq_journal *j)
{
    pthread_mutex_lock(&j->lock);
    bool req = j->snapshot_requested;
    j->snapshot_requested = false;
    pthread_mutex_unlock(&j->lock);
    bool due =
        req || j->since_snapshot >= j->opts.snapshot_every_records ||
        (j->since_snapshot > 0 && now_ms(j) - j->last_snapshot_ms >= j->opts.snapshot_every_ms);
    if (!due) {
        return false;
    }
    do_snapshot(j);
    return true;
}

/* ---- background verify
 * ------------------------------------------------------------------------------ */

static bool verify_step(struct cq_journal *j)
{
    if (j->opts.verify_every_ms <= 0) {
        return false;
    }
    int64_t now = now_ms(j);
    if (!j->v_active) {
        if (now < j->next_verify_ms) {
            return false;
        }
        size_t sealed = j->n_segs > 0 ? j->n_segs - 1 : 0;
        if (sealed == 0) {
            j->next_verify_ms = now + j->opts.verify_every_ms;
            return false;
        }
        j->v_segs = malloc(sealed * sizeof(uint32_t));
        if (j->v_segs == NULL) {
            return false;
        }
        for (size_t i = 0; i < sealed; i++) {
            j->v_segs[i] = j->segs[i].segno;
        }
        j->v_n = sealed;
        cq_journal__walker_init(&j->v_w, j->dir, j->fs, j->v_segs, sealed, 0, false);
        j->v_active = true;
    }
    uint64_t start = j->v_w.bytes;
    struct cq_err err;
    int rc;
    do {
        struct cq_journal__rec r;
        rc = cq_journal__walker_next(&j->v_w, &r, &err);
    } while (rc == 1 && j->v_w.bytes - start < VERIFY_STEP_BYTES);
    if (rc == 1) {
        return true;
    }
    bool was_bad, changed;
    char problem[256];
    if (rc == 2) {
        cq_journal__problem_str(&j->v_w.prob, problem, sizeof(problem));
    } else if (rc < 0) {
        snprintf(problem, sizeof(problem), "read error: %.200s", err.message);
    }
    pthread_mutex_lock(&j->stats_lock);
    was_bad = j->verify_bad;
    if (rc == 0) {
        j->verified_segments_total += j->v_n;
        j->verify_bad = false;
        j->verify_problem[0] = '\0';
    } else {
        j->verify_failures_total++;
        j->verify_bad = true;
        cq_strlcpy(j->verify_problem, problem, sizeof(j->verify_problem));
    }
    changed = was_bad != j->verify_bad;
    pthread_mutex_unlock(&j->stats_lock);
    if (rc != 0 && !was_bad) {
        cq_log_error(SVC, "journal_verify_failed",
                     json_pack("{s:s,s:i,s:I}", "problem", problem, "segment",
                               rc == 2 ? (int)j->v_w.prob.segment : 0, "offset",
                               (json_int_t)(rc == 2 ? j->v_w.prob.offset : 0)),
                     "background verify found %s; the next open will quarantine what it "
                     "affects",
                     problem);
    }
    abort_verify_pass(j);
    j->next_verify_ms = now + j->opts.verify_every_ms;
    if (changed) {
        publish_health(j);
    }
    return true;
}

/* ---- the writer thread
 * ----------------------------------------------------------------------------- */

/* Sleep (j->lock held) for ms, at most IDLE_MAX_WAIT_MS, or until work_cv rings. */
static void idle_wait(struct cq_journal *j, int64_t ms)
{
    struct timespec ts;
    if (ms > IDLE_MAX_WAIT_MS) {
        ms = IDLE_MAX_WAIT_MS;
    }
    deadline_in(&ts, ms > 0 ? ms : 1);
    j->writer_waiting = true;
    pthread_cond_timedwait(&j->work_cv, &j->lock, &ts);
    j->writer_waiting = false;
    j->idle_wakeups++;
}

/* Milliseconds until the idle writer has something to do on its own:
 * the next health publish, a time-due snapshot, the next verify pass. */
static int64_t idle_due_in(const struct cq_journal *j)
{
    int64_t now = now_ms(j);
    int64_t due = j->next_health_ms;
    if (j->since_snapshot > 0 && j->last_snapshot_ms + j->opts.snapshot_every_ms < due) {
        due = j->last_snapshot_ms + j->opts.snapshot_every_ms;
    }
    if (j->opts.verify_every_ms > 0 && j->next_verify_ms < due) {
        due = j->next_verify_ms;
    }
    return due - now;
}

uint64_t cq_journal__idle_wakeups(struct cq_journal *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t n = j->idle_wakeups;
    pthread_mutex_unlock(&j->lock);
    return n;
}

static void writer_finish(struct cq_journal *j)
{
    pthread_mutex_lock(&j->lock);
    enum cq_journal_run_state st = j->state;
    size_t unflushed = j->fill.count + (j->batch.count - j->b_idx);
    pthread_mutex_unlock(&j->lock);
    int rc = 0;
    if (st == CQ_JOURNAL_OK && unflushed == 0) {
        if (j->seg_fd >= 0 && j->seg_size > j->seg_synced && sync_segment(j) < 0) {
            rc = -CQ_EIO;
        } else {
            advance_durable(j);
            do_snapshot(j);
        }
    } else {
        rc = -CQ_EIO;
    }
    abort_verify_pass(j);
    if (j->seg_fd >= 0) {
        j->fs->close(j->fs->ctx, j->seg_fd);
        j->seg_fd = -1;
    }
    pthread_mutex_lock(&j->lock);
    if (j->state != CQ_JOURNAL_FAILED) {
        j->state = CQ_JOURNAL_STOPPED;
    }
    j->stopped = true;
    j->stop_rc = rc;
    uint64_t durable = j->durable_seq, last = j->last_seq;
    pthread_cond_broadcast(&j->durable_cv);
    pthread_mutex_unlock(&j->lock);
    if (unflushed > 0) {
        cq_log_error(SVC, "journal_stop_unflushed",
                     json_pack("{s:I,s:I,s:I}", "records", (json_int_t)unflushed, "durable_seq",
                               (json_int_t)durable, "last_seq", (json_int_t)last),
                     "stopped with %zu records never written (never acknowledged durable)",
                     unflushed);
    }
    cq_log_info(
        SVC, "journal_stopped",
        json_pack("{s:I,s:s}", "durable_seq", (json_int_t)durable, "state", run_state_name(st)),
        "journal stopped at durable seq %llu", (unsigned long long)durable);
    publish_health(j);
}

static void periodic_health(struct cq_journal *j)
{
    int64_t now = now_ms(j);
    if (now >= j->next_health_ms) {
        j->next_health_ms = now + HEALTH_EVERY_MS;
        publish_health(j);
    }
}

static void *writer_main(void *arg)
{
    struct cq_journal *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        bool pending = j->b_idx < j->batch.count;
        if (j->state == CQ_JOURNAL_FAILED) {
            if (j->stop_requested) {
                break;
            }
            idle_wait(j, IDLE_MAX_WAIT_MS); /* only stop (which rings) ends this */
            continue;
        }
        if (j->state == CQ_JOURNAL_PAUSED) {
            int64_t now = now_ms(j);
            if (now < j->next_retry_ms && !j->stop_requested) {
                int64_t left = j->next_retry_ms - now;
                idle_wait(j, left);
                continue;
            }
            bool stopping = j->stop_requested;
            pthread_mutex_unlock(&j->lock);
            int rc = batch_write(j);
            if (rc == 0) {
                batch_reset(j);
                resume_journal(j); /* (a success already did; this covers an empty batch) */
            }
            pthread_mutex_lock(&j->lock);
            if (rc == 1 && stopping) {
                break; /* give up: the disk is still full */
            }
            continue;
        }
        if (!pending && j->fill.count > 0) {
            struct qbuf t = j->batch;
            j->batch = j->fill;
            j->fill = t;
            j->fill.len = 0;
            j->fill.count = 0;
            pending = true;
            pthread_mutex_unlock(&j->lock);
            seal_batch(j);
            pthread_mutex_lock(&j->stats_lock);
            j->batches_total++;
            pthread_mutex_unlock(&j->stats_lock);
            pthread_mutex_lock(&j->lock);
        }
        if (pending) {
            pthread_mutex_unlock(&j->lock);
            if (batch_write(j) == 0) {
                batch_reset(j);
                if (j->since_snapshot >= j->opts.snapshot_every_records) {
                    maybe_snapshot(j);
                }
            }
            periodic_health(j); /* also under a load that never lets the queue drain */
            pthread_mutex_lock(&j->lock);
            continue;
        }
        if (j->stop_requested) {
            break;
        }
        pthread_mutex_unlock(&j->lock);
        bool busy = maybe_snapshot(j);
        if (!busy) {
            busy = verify_step(j);
        }
        periodic_health(j);
        int64_t due_in = idle_due_in(j); /* writer-owned fields: read before the lock */
        pthread_mutex_lock(&j->lock);
        if (!busy && j->fill.count == 0 && !j->stop_requested && !j->snapshot_requested) {
            idle_wait(j, due_in);
        }
    }
    pthread_mutex_unlock(&j->lock);
    writer_finish(j);
    return NULL;
}

/* ---- public: lifecycle
 * ---------------------------------------------------------------------------------- */

static void quarantine_from_state(const char *scope, const char *reason, void *ctx)
{
    struct cq_journal *j = ctx;
    q_add(j, scope);
    if (strcmp(reason, "journal_corrupt") == 0 && !j->corrupt_persist) {
        j->corrupt_persist = true;
        if (!j->corrupt) {
            snprintf(j->corrupt_detail, sizeof(j->corrupt_detail),
                     "scope %s quarantined after a journal corruption (see the quarantine "
                     "record)",
                     scope);
        }
    }
}

struct cq_journal *cq_journal_open(const struct cq_journal_options *opts,
                                   struct cq_journal_recovery *recovery, struct cq_err *err)
{
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
        cq_err_set(err, CQ_EINVAL, 0, "set the journal directory", "journal: no directory");
        return NULL;
    }
    if (strlen(opts->dir) > CQJ_DIR_MAX) {
        cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter path",
                   "journal directory path is %zu bytes, the limit is %u", strlen(opts->dir),
                   CQJ_DIR_MAX);
        return NULL;
    }
    if ((unsigned)opts->fsync > CQ_JOURNAL_FSYNC_OFF) {
        cq_err_set(err, CQ_EINVAL, 0, "use always, group or off", "journal: bad fsync policy %d",
                   (int)opts->fsync);
        return NULL;
    }
    struct cq_journal *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "journal");
        return NULL;
    }
    cq_strlcpy(j->dir, opts->dir, sizeof(j->dir)); /* bounded: ≤ CQJ_DIR_MAX, checked above */
    j->opts = *opts;
    j->opts.dir = j->dir;
    if (j->opts.queue_capacity == 0) {
        j->opts.queue_capacity = 65536;
    }
    if (j->opts.segment_max_bytes == 0) {
        j->opts.segment_max_bytes = (uint64_t)64 << 20;
    }
    if (j->opts.snapshot_every_records == 0) {
        j->opts.snapshot_every_records = 100000;
    }
    if (j->opts.snapshot_every_ms <= 0) {
        j->opts.snapshot_every_ms = CQ_MS_PER_MINUTE;
    }
    if (j->opts.keep_snapshots == 0) {
        j->opts.keep_snapshots = 2;
    }
    if (j->opts.verify_every_ms < 0) {
        j->opts.verify_every_ms = 0;
    }
    if (j->opts.pause_retry_ms <= 0) {
        j->opts.pause_retry_ms = 1000;
    }
    j->fs = opts->fs != NULL ? opts->fs : cq_journal_fs_posix();
    j->clock = opts->clock != NULL ? opts->clock : cq_clock_system();
    j->board = opts->board;
    j->seg_fd = -1;

    if (cq_fs_mkdir_p(j->dir, 0750, err) < 0) {
        free(j);
        return NULL;
    }
    struct cq_journal__recovered res;
    if (cq_journal__recover(j->dir, j->fs, j->clock, &j->recovery, &res, err) < 0) {
        free(j);
        return NULL;
    }
    if (recovery != NULL) {
        *recovery = j->recovery;
    }
    j->cstate = res.state;
    res.state = NULL;
    j->last_seq = j->written_seq = j->durable_seq = res.last_seq;
    j->applied_seq = res.last_seq;
    j->applied_digest = res.last_digest;
    j->chain_digest = res.last_digest;
    j->segs = res.segs;
    j->n_segs = j->cap_segs = res.n_segs;
    res.segs = NULL;
    if (j->n_segs > 0) {
        j->segno = j->segs[j->n_segs - 1].segno;
        j->seg_size = res.active_size;
    }
    j->segments = (uint32_t)j->n_segs;
    j->snapshot_seq = res.snapshot_seq;
    j->corrupt = res.corrupt;
    cq_strlcpy(j->corrupt_detail, res.corrupt_detail, sizeof(j->corrupt_detail));
    cq_strlcpy(j->bundle, res.bundle, sizeof(j->bundle));
    cq_journal__recovered_fini(&res);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->work_cv, &ca);
    pthread_cond_init(&j->durable_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&j->state_lock, NULL);
    pthread_mutex_init(&j->stats_lock, NULL);
    cq_journal__state_foreach_quarantined(j->cstate, quarantine_from_state, j);

    int64_t now = now_ms(j);
    j->last_snapshot_ms = now;
    j->next_verify_ms = now; /* first pass soon after start, when idle */
    j->next_health_ms = now + HEALTH_EVERY_MS;
    cq_log_info(SVC, "journal_opened",
                json_pack("{s:s,s:I,s:I,s:I,s:i,s:b,s:i}", "dir", j->dir, "last_seq",
                          (json_int_t)j->last_seq, "snapshot_seq",
                          (json_int_t)j->recovery.snapshot_seq, "replayed",
                          (json_int_t)j->recovery.replayed_records, "segments", (int)j->n_segs,
                          "torn_tail_truncated", j->recovery.torn_tail_truncated,
                          "corrupt_segments", (int)j->recovery.corrupt_segments),
                "journal open at seq %llu (snapshot %llu + %llu records replayed)",
                (unsigned long long)j->last_seq, (unsigned long long)j->recovery.snapshot_seq,
                (unsigned long long)j->recovery.replayed_records);
    publish_health(j);
    return j;
}

int cq_journal_start(struct cq_journal *j, struct cq_err *err)
{
    pthread_mutex_lock(&j->lock);
    if (j->started || j->stopped || j->stop_requested) {
        pthread_mutex_unlock(&j->lock);
        return cq_err_set(err, CQ_ESTATE, 0, NULL, "journal writer already started or stopped");
    }
    j->started = true;
    int rc = pthread_create(&j->thread, NULL, writer_main, j);
    if (rc != 0) {
        j->started = false;
        pthread_mutex_unlock(&j->lock);
        return cq_err_set(err, CQ_EIO, rc, NULL, "cannot start the journal writer");
    }
    pthread_mutex_unlock(&j->lock);
    publish_health(j);
    return 0;
}

int cq_journal_stop(struct cq_journal *j, struct cq_err *err)
{
    return cq_journal_stop_within(j, -1, err);
}

/* The writer gave up being waited for: say what is safe and what is not.
 * Records up to durable_seq were acknowledged durable and are on disk;
 * later ones were never acknowledged (wait_durable did not return 0 for
 * them), so nothing acknowledged is lost whatever the writer does next. */
static int stop_timeout(struct cq_journal *j, int64_t timeout_ms, struct cq_err *err)
{
    uint64_t durable = j->durable_seq, written = j->written_seq, last = j->last_seq;
    j->stop_timed_out = true;
    pthread_mutex_unlock(&j->lock);
    uint64_t not_durable = last - durable;
    cq_log_error(SVC, "journal_stop_timeout",
                 json_pack("{s:I,s:I,s:I,s:I,s:I}", "timeout_ms", (json_int_t)timeout_ms,
                           "durable_seq", (json_int_t)durable, "written_seq", (json_int_t)written,
                           "last_seq", (json_int_t)last, "not_durable", (json_int_t)not_durable),
                 "the journal writer did not finish within %lld ms (a write or fsync hangs): "
                 "records up to seq %llu are durable; %llu later records (seq %llu..%llu) "
                 "were never acknowledged durable and may be lost",
                 (long long)timeout_ms, (unsigned long long)durable,
                 (unsigned long long)not_durable, (unsigned long long)(durable + 1),
                 (unsigned long long)last);
    return cq_err_set(err, CQ_ETIMEDOUT, 0,
                      "check the disk (a hung fsync or write); see journal_stop_timeout in the log",
                      "journal stop timed out after %lld ms: durable up to seq %llu, %llu "
                      "records never acknowledged durable",
                      (long long)timeout_ms, (unsigned long long)durable,
                      (unsigned long long)not_durable);
}

int cq_journal_stop_within(struct cq_journal *j, int64_t timeout_ms, struct cq_err *err)
{
    if (j == NULL) {
        return 0;
    }
    pthread_mutex_lock(&j->lock);
    j->stop_requested = true;
    bool inline_drain = false;
    if (!j->started && !j->stopped) {
        /* never started: drain on a thread all the same, so the deadline holds */
        j->started = true;
        if (pthread_create(&j->thread, NULL, writer_main, j) != 0) {
            j->started = false;
            inline_drain = true;
        }
    }
    pthread_cond_signal(&j->work_cv);
    if (inline_drain) {
        pthread_mutex_unlock(&j->lock);
        writer_main(j); /* no thread to be had: drain on the caller's thread */
        pthread_mutex_lock(&j->lock);
    }
    struct timespec ts;
    if (timeout_ms >= 0) {
        deadline_in(&ts, timeout_ms);
    }
    while (!j->stopped) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&j->durable_cv, &j->lock);
        } else if (pthread_cond_timedwait(&j->durable_cv, &j->lock, &ts) == ETIMEDOUT &&
                   !j->stopped) {
            return stop_timeout(j, timeout_ms, err); /* unlocks */
        }
    }
    bool join = j->started && !j->joined;
    j->joined = true;
    pthread_mutex_unlock(&j->lock);
    if (join) {
        pthread_join(j->thread, NULL); /* it set stopped as its last act: returns at once */
    }
    pthread_mutex_lock(&j->lock);
    int rc = j->stop_rc;
    char msg[256];
    cq_strlcpy(msg, j->last_error, sizeof(msg)); /* same size: never cut */
    pthread_mutex_unlock(&j->lock);
    if (rc < 0) {
        return cq_err_set(err, -rc, 0, "check the disk; see journal_stop_unflushed in the log",
                          "journal stopped with unwritten records (%s)", msg);
    }
    return 0;
}

void cq_journal_free(struct cq_journal *j)
{
    if (j == NULL) {
        return;
    }
    pthread_mutex_lock(&j->lock);
    bool running = j->started && !j->stopped;
    bool timed_out = j->stop_timed_out;
    size_t dropped = j->stopped || j->started ? 0 : j->fill.count;
    pthread_mutex_unlock(&j->lock);
    if (running && timed_out) {
        /* A bounded stop gave up on a writer that still runs (a hung fsync):
         * its memory is left to the process exit rather than freed under it. */
        cq_log_warn(SVC, "journal_free_abandoned", NULL,
                    "journal writer still blocked after a timed-out stop: not freed");
        return;
    }
    if (j->started) {
        (void)!cq_journal_stop(j, NULL); /* joins; logs its own outcome */
    } else if (dropped > 0) {
        cq_log_warn(
            SVC, "journal_freed_unwritten", json_pack("{s:I}", "records", (json_int_t)dropped),
            "journal freed without cq_journal_stop: %zu queued records not written", dropped);
    }
    abort_verify_pass(j);
    if (j->seg_fd >= 0) {
        j->fs->close(j->fs->ctx, j->seg_fd);
    }
    qbuf_free(&j->fill);
    qbuf_free(&j->batch);
    free(j->segs);
    free(j->quarantine);
    cq_journal__state_free(j->cstate);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->work_cv);
    pthread_cond_destroy(&j->durable_cv);
    pthread_mutex_destroy(&j->state_lock);
    pthread_mutex_destroy(&j->stats_lock);
    free(j);
}

/* ---- public: appending
 * -------------------------------------------------------------------------------- */

int cq_journal_append(struct cq_journal *j, uint16_t type, const char *scope, const void *payload,
                      size_t payload_len, uint64_t *seq)
{
    if (j == NULL || type == 0 || type >= CQ_REC__MAX || scope == NULL ||
        payload_len > CQ_JOURNAL_PAYLOAD_MAX || (payload == NULL && payload_len > 0)) {
        return -CQ_EINVAL;
    }
    size_t slen = strnlen(scope, CQ_JOURNAL_SCOPE_MAX + 1);
    if (!cq_journal__scope_valid(scope, slen)) {
        return -CQ_EINVAL;
    }
    uint32_t len = cq_journal__rec_size(slen, payload_len);
    int64_t t = mono_ns();
    int rc = 0;
    pthread_mutex_lock(&j->lock);
    if (j->stop_requested || j->stopped || j->state == CQ_JOURNAL_FAILED) {
        rc = -CQ_EIO;
    } else if (j->state == CQ_JOURNAL_PAUSED) {
        rc = -CQ_EAGAIN;
    } else if (type == CQ_REC_ORDER_INTENT && q_refused(j, scope)) {
        rc = -CQ_EPERM;
    } else if (j->fill.count >= j->opts.queue_capacity ||
               (j->fill.len > 0 && j->fill.len + len > QUEUE_MAX_BYTES)) {
        j->full_total++;
        rc = -CQ_EFULL;
    } else if (qbuf_reserve(&j->fill, len) < 0) {
        rc = -CQ_ENOMEM;
    } else {
        uint64_t s = ++j->last_seq;
        cq_journal__rec_encode(j->fill.bytes + j->fill.len, type, scope, slen, s,
                               cq_journal__ts_clamp(cq_clock_wall_us(j->clock)), payload,
                               payload_len);
        j->fill.len += len;
        j->fill.enq_ns[j->fill.count++] = t;
        j->appends_total++;
        if (type == CQ_REC_QUARANTINE) {
            q_add(j, scope);
        } else if (type == CQ_REC_UNQUARANTINE) {
            q_remove(j, scope);
        }
        if (j->writer_waiting) {
            pthread_cond_signal(&j->work_cv);
        }
        if (seq != NULL) {
            *seq = s;
        }
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int cq_journal_wait_durable(struct cq_journal *j, uint64_t seq, int64_t timeout_ms)
{
    struct timespec ts;
    int rc = 0;
    if (seq == 0) {
        return 0;
    }
    if (timeout_ms >= 0) {
        deadline_in(&ts, timeout_ms);
    }
    pthread_mutex_lock(&j->lock);
    if (seq > j->last_seq) {
        pthread_mutex_unlock(&j->lock);
        return -CQ_EINVAL;
    }
    while (j->durable_seq < seq) {
        if (j->state == CQ_JOURNAL_FAILED || j->stopped) {
            rc = -CQ_EIO;
            break;
        }
        if (timeout_ms >= 0) {
            if (pthread_cond_timedwait(&j->durable_cv, &j->lock, &ts) == ETIMEDOUT &&
                j->durable_seq < seq) {
                rc = j->state == CQ_JOURNAL_FAILED ? -CQ_EIO : -CQ_ETIMEDOUT;
                break;
            }
        } else {
            pthread_cond_wait(&j->durable_cv, &j->lock);
        }
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void cq_journal_request_snapshot(struct cq_journal *j)
{
    pthread_mutex_lock(&j->lock);
    j->snapshot_requested = true;
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->lock);
}

int cq_journal_quarantine(struct cq_journal *j, const char *scope, const char *reason,
                          const char *detail)
{
    if (j == NULL || scope == NULL ||
        !cq_journal__scope_valid(scope, strnlen(scope, CQ_JOURNAL_SCOPE_MAX + 1))) {
        return -CQ_EINVAL;
    }
    json_t *p = json_pack("{s:s,s:s}", "reason",
                          reason != NULL && reason[0] != '\0' ? reason : "unspecified", "detail",
                          detail != NULL ? detail : "");
    char *text = p != NULL ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(p);
    if (text == NULL) {
        return -CQ_ENOMEM;
    }
    int rc = cq_journal_append(j, CQ_REC_QUARANTINE, scope, text, strlen(text), NULL);
    free(text);
    if (rc < 0 && rc != -CQ_EINVAL) {
        /* refusing to trade is the safe side: mark it even if it could not be journaled */
        pthread_mutex_lock(&j->lock);
        q_add(j, scope);
        pthread_mutex_unlock(&j->lock);
    }
    return rc;
}

bool cq_journal_scope_quarantined(struct cq_journal *j, const char *scope)
{
    pthread_mutex_lock(&j->lock);
    bool q = scope != NULL && q_refused(j, scope);
    pthread_mutex_unlock(&j->lock);
    return q;
}

/* ---- public: stats and state
 * ------------------------------------------------------------------------------ */

void cq_journal_get_stats(struct cq_journal *j, struct cq_journal_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&j->lock);
    out->state = j->state;
    out->last_seq = j->last_seq;
    out->written_seq = j->written_seq;
    out->durable_seq = j->durable_seq;
    out->queue_depth = j->fill.count;
    out->queue_capacity = j->opts.queue_capacity;
    out->appends_total = j->appends_total;
    out->full_total = j->full_total;
    out->pauses_total = j->pauses_total;
    cq_strlcpy(out->last_error, j->last_error, sizeof(out->last_error));
    pthread_mutex_unlock(&j->lock);
    pthread_mutex_lock(&j->stats_lock);
    out->bytes_written_total = j->bytes_written_total;
    out->fsyncs_total = j->fsyncs_total;
    out->batches_total = j->batches_total;
    out->commit_wait_p50_us = hist_quantile_us(&j->hist, 0.50);
    out->commit_wait_p99_us = hist_quantile_us(&j->hist, 0.99);
    out->commit_wait = j->commit_wait;
    out->snapshots_total = j->snapshots_total;
    out->snapshot_seq = j->snapshot_seq;
    out->segments = j->segments;
    out->verified_segments_total = j->verified_segments_total;
    out->verify_failures_total = j->verify_failures_total;
    pthread_mutex_unlock(&j->stats_lock);
}

json_t *cq_journal_stats_json(const struct cq_journal_stats *s)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "state", json_string(run_state_name(s->state)));
    json_object_set_new(o, "last_seq", json_integer((json_int_t)s->last_seq));
    json_object_set_new(o, "written_seq", json_integer((json_int_t)s->written_seq));
    json_object_set_new(o, "durable_seq", json_integer((json_int_t)s->durable_seq));
    json_object_set_new(o, "queue_depth", json_integer((json_int_t)s->queue_depth));
    json_object_set_new(o, "queue_capacity", json_integer((json_int_t)s->queue_capacity));
    json_object_set_new(o, "appends_total", json_integer((json_int_t)s->appends_total));
    json_object_set_new(o, "full_total", json_integer((json_int_t)s->full_total));
    json_object_set_new(o, "bytes_written_total", json_integer((json_int_t)s->bytes_written_total));
    json_object_set_new(o, "fsyncs_total", json_integer((json_int_t)s->fsyncs_total));
    json_object_set_new(o, "batches_total", json_integer((json_int_t)s->batches_total));
    json_object_set_new(o, "commit_wait_p50_us", json_integer((json_int_t)s->commit_wait_p50_us));
    json_object_set_new(o, "commit_wait_p99_us", json_integer((json_int_t)s->commit_wait_p99_us));
    json_object_set_new(o, "snapshots_total", json_integer((json_int_t)s->snapshots_total));
    json_object_set_new(o, "snapshot_seq", json_integer((json_int_t)s->snapshot_seq));
    json_object_set_new(o, "segments", json_integer((json_int_t)s->segments));
    json_object_set_new(o, "verified_segments_total",
                        json_integer((json_int_t)s->verified_segments_total));
    json_object_set_new(o, "verify_failures_total",
                        json_integer((json_int_t)s->verify_failures_total));
    json_object_set_new(o, "pauses_total", json_integer((json_int_t)s->pauses_total));
    json_object_set_new(o, "last_error", json_string(s->last_error));
    return o;
}

json_t *cq_journal_state_json(struct cq_journal *j)
{
    pthread_mutex_lock(&j->state_lock);
    json_t *s = cq_journal__state_to_json(j->cstate);
    pthread_mutex_unlock(&j->state_lock);
    return s;
}
