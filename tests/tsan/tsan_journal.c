/*
 * tsan_journal.c — the live journal from several threads.
 *
 *   journal_group_commit_from_threads: the writer is held inside an
 *   fdatasync (a gate in front of the real one) while four threads append
 *   and wait for durability; released, everything they queued goes out in
 *   one batch with one fdatasync. Then every record is on disk, in each
 *   thread's order, with its checksum.
 *
 *   journal_live_reader_beside_writer: four threads append through a small
 *   queue (so -CQ_EFULL backpressure happens) into small segments (so the
 *   writer rolls them and verifies sealed ones in the background) while a
 *   reader reads the directory, verifies it, copies the stats and the state
 *   and asks for snapshots. What the reader sees is always a gapless prefix
 *   1..n of whole records; at the end nothing is lost.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "cq/health.h"
#include "cq/journal.h"
#include "tsan/tsan.h"

#define JOURNAL_THREADS 4

/* ---- a gate in front of fdatasync ------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool closed;
    int waiting; /* fdatasync calls held at the gate now */
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

static struct cq_journal_fs gated_fs;

static int gated_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    pthread_mutex_lock(&gate.lock);
    gate.waiting++;
    pthread_cond_broadcast(&gate.cond);
    while (gate.closed) {
        pthread_cond_wait(&gate.cond, &gate.lock);
    }
    gate.waiting--;
    pthread_mutex_unlock(&gate.lock);
    const struct cq_journal_fs *posix = cq_journal_fs_posix();
    return posix->fdatasync(posix->ctx, fd);
}

static void gate_set(bool closed)
{
    pthread_mutex_lock(&gate.lock);
    gate.closed = closed;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

static int gate_waiting(void)
{
    pthread_mutex_lock(&gate.lock);
    int n = gate.waiting;
    pthread_mutex_unlock(&gate.lock);
    return n;
}

/* ---- records and their check -------------------------------------------------------- */

static uint64_t record_check(int thread, int k)
{
    return tsan_mix64(((uint64_t)thread << 32) | (uint64_t)k) >> 12; /* fits a JSON integer */
}

/* Append {"t","k","c"} for thread/k, retrying while the queue is full. */
static int append_rec(struct cq_journal *j, int thread, int k, uint64_t *seq, uint64_t *fulls)
{
    char payload[128];
    int len = snprintf(payload, sizeof(payload), "{\"t\":%d,\"k\":%d,\"c\":%llu}", thread, k,
                       (unsigned long long)record_check(thread, k));
    if (len < 0 || (size_t)len >= sizeof(payload)) {
        return -CQ_EINVAL; /* cannot happen: three bounded integers */
    }
    for (;;) {
        int rc = cq_journal_append(j, CQ_REC_NOTE, "tsan", payload, (size_t)len, seq);
        if (rc != -CQ_EFULL) {
            return rc;
        }
        (*fulls)++;
        sched_yield();
    }
}

/* What a pass over the directory found. */
struct scan {
    struct tsan_t *t;
    uint64_t records, next_seq;
    int next_k[JOURNAL_THREADS];
    uint64_t sum;
    bool bad;
};

static int scan_record(void *ctx, const struct cq_journal_record *rec)
{
    struct scan *s = ctx;
    if (rec->seq != s->next_seq) {
        tsan__fail(s->t, __FILE__, __LINE__, "seq", "seq %llu where %llu was next",
                   (unsigned long long)rec->seq, (unsigned long long)s->next_seq);
        s->bad = true;
        return -1;
    }
    s->next_seq++;
    s->records++;
    if (rec->type != CQ_REC_NOTE || strcmp(rec->scope, "tsan") != 0) {
        return 0; /* not one of the threads' records */
    }
    json_error_t je;
    json_t *o = json_loadb(rec->payload, rec->payload_len, 0, &je);
    json_int_t th = json_integer_value(json_object_get(o, "t"));
    json_int_t k = json_integer_value(json_object_get(o, "k"));
    json_int_t c = json_integer_value(json_object_get(o, "c"));
    json_decref(o);
    if (th < 0 || th >= JOURNAL_THREADS || (uint64_t)c != record_check((int)th, (int)k)) {
        tsan__fail(s->t, __FILE__, __LINE__, "payload", "seq %llu: a damaged payload",
                   (unsigned long long)rec->seq);
        s->bad = true;
        return -1;
    }
    if (k != s->next_k[th]) {
        tsan__fail(s->t, __FILE__, __LINE__, "order", "thread %lld: k %lld where %d was next",
                   (long long)th, (long long)k, s->next_k[th]);
        s->bad = true;
        return -1;
    }
    s->next_k[th]++;
    s->sum += (uint64_t)c;
    return 0;
}

static int scan_dir(struct tsan_t *t, const char *dir, struct scan *s, struct cq_err *err)
{
    memset(s, 0, sizeof(*s));
    s->t = t;
    s->next_seq = 1;
    cq_err_clear(err);
    return cq_journal_read_dir(dir, NULL, 0, scan_record, s, err);
}

static uint64_t expected_sum(int per_thread)
{
    uint64_t sum = 0;
    for (int th = 0; th < JOURNAL_THREADS; th++) {
        for (int k = 0; k < per_thread; k++) {
            sum += record_check(th, k);
        }
    }
    return sum;
}

static struct cq_journal_options base_opts(const char *dir, struct cq_health_board *board)
{
    struct cq_journal_options o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.fsync = CQ_JOURNAL_FSYNC_GROUP;
    o.queue_capacity = 4096;
    o.segment_max_bytes = 1 << 20;
    o.snapshot_every_records = 1000000;
    o.snapshot_every_ms = 3600000;
    o.keep_snapshots = 1000; /* nothing pruned while the reader reads */
    o.verify_every_ms = 0;
    o.pause_retry_ms = 100;
    o.board = board;
    return o;
}

/* ---- group commit ------------------------------------------------------------------- */

#define GROUP_PER_THREAD 250

struct appender {
    struct tsan_t *t;
    struct cq_journal *j;
    int thread, per_thread, wait_every;
    atomic_int *appended; /* threads done appending */
    uint64_t fulls, last_seq;
    int wait_rc;
};

static void *append_main(void *arg)
{
    struct appender *a = arg;
    uint64_t prev = 0;
    for (int k = 0; k < a->per_thread; k++) {
        uint64_t seq = 0;
        int rc = append_rec(a->j, a->thread, k, &seq, &a->fulls);
        TSAN_ASSERT(a->t, rc == 0, NULL, "thread %d append %d: %s", a->thread, k, cq_strerror(rc));
        TSAN_EXPECT(a->t, seq > prev, "thread %d: seq %llu after %llu", a->thread,
                    (unsigned long long)seq, (unsigned long long)prev);
        prev = seq;
        if (a->wait_every > 0 && k % a->wait_every == a->wait_every - 1) {
            rc = cq_journal_wait_durable(a->j, seq, 60000);
            TSAN_EXPECT(a->t, rc == 0, "thread %d wait durable %llu: %s", a->thread,
                        (unsigned long long)seq, cq_strerror(rc));
        }
    }
    a->last_seq = prev;
    atomic_fetch_add(a->appended, 1);
    a->wait_rc = cq_journal_wait_durable(a->j, prev, 60000);
    return NULL;
}

static void journal_group_commit_from_threads(struct tsan_t *t)
{
    char dir[300];
    int len = snprintf(dir, sizeof(dir), "%s/journal", t->tmpdir);
    TSAN_ASSERT_V(t, len > 0 && (size_t)len < sizeof(dir), "directory name too long");
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_health_board *board = cq_health_board_new(NULL, &err);
    TSAN_ASSERT_V(t, board != NULL, "board: %s", err.message);
    gated_fs = *cq_journal_fs_posix();
    gated_fs.fdatasync = gated_fdatasync;
    gate_set(false);
    struct cq_journal_options o = base_opts(dir, board);
    o.fs = &gated_fs;
    struct cq_journal_recovery rec;
    struct cq_journal *j = cq_journal_open(&o, &rec, &err);
    TSAN_ASSERT_V(t, j != NULL, "open: %s", err.message);
    TSAN_ASSERT_V(t, cq_journal_start(j, &err) == 0, "start: %s", err.message);

    uint64_t seq = 0, fulls = 0;
    TSAN_EXPECT(t, cq_journal_append(j, CQ_REC_NOTE, "setup", "{}", 2, &seq) == 0, "append");
    TSAN_EXPECT(t, cq_journal_wait_durable(j, seq, 60000) == 0, "first record durable");
    struct cq_journal_stats before;
    cq_journal_get_stats(j, &before);

    /* Hold the writer inside the fdatasync of one record. */
    gate_set(true);
    TSAN_EXPECT(t, cq_journal_append(j, CQ_REC_NOTE, "setup", "{}", 2, &seq) == 0, "append");
    TSAN_WAIT_FOR(gate_waiting() == 1, 60000);
    TSAN_EXPECT(t, gate_waiting() == 1, "the writer never reached fdatasync");

    atomic_int appended;
    atomic_init(&appended, 0);
    struct appender a[JOURNAL_THREADS];
    pthread_t th[JOURNAL_THREADS];
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        a[i] = (struct appender){t, j, i, GROUP_PER_THREAD, 0, &appended, 0, 0, 0};
        pthread_create(&th[i], NULL, append_main, &a[i]);
    }
    TSAN_WAIT_FOR(atomic_load(&appended) == JOURNAL_THREADS, 60000);
    TSAN_EXPECT(t, atomic_load(&appended) == JOURNAL_THREADS, "the appenders did not finish");
    struct cq_journal_stats held;
    cq_journal_get_stats(j, &held);
    TSAN_EXPECT(t, held.durable_seq == before.durable_seq,
                "durable moved from %llu to %llu while fdatasync was held",
                (unsigned long long)before.durable_seq, (unsigned long long)held.durable_seq);
    gate_set(false);
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        pthread_join(th[i], NULL);
        TSAN_EXPECT(t, a[i].wait_rc == 0, "thread %d: wait durable: %s", i,
                    cq_strerror(a[i].wait_rc));
        fulls += a[i].fulls;
    }
    struct cq_journal_stats after;
    cq_journal_get_stats(j, &after);
    uint64_t total = 2 + JOURNAL_THREADS * GROUP_PER_THREAD;
    TSAN_EXPECT(t, after.durable_seq == total, "durable %llu of %llu",
                (unsigned long long)after.durable_seq, (unsigned long long)total);
    TSAN_EXPECT(t, fulls == 0, "the queue (4096) was never full here");
    /* The held record's fdatasync, then one for everything queued meanwhile. */
    TSAN_EXPECT(t, after.fsyncs_total - before.fsyncs_total == 2,
                "%llu fdatasyncs for %d records queued behind one (group commit: 2)",
                (unsigned long long)(after.fsyncs_total - before.fsyncs_total),
                JOURNAL_THREADS * GROUP_PER_THREAD);
    TSAN_EXPECT(t, after.batches_total - before.batches_total == 2, "%llu batches (expected 2)",
                (unsigned long long)(after.batches_total - before.batches_total));
    TSAN_EXPECT(t, cq_journal_stop(j, &err) == 0, "stop: %s", err.message);
    cq_journal_free(j);

    struct cq_journal_verify_report rep;
    TSAN_EXPECT(t, cq_journal_verify_dir(dir, NULL, &rep) == 0, "verify");
    TSAN_EXPECT(t, rep.ok && rep.records == total && rep.last_seq == total,
                "verify: ok %d records %llu last %llu: %s", rep.ok, (unsigned long long)rep.records,
                (unsigned long long)rep.last_seq, rep.problem);
    struct scan s;
    TSAN_EXPECT(t, scan_dir(t, dir, &s, &err) == 0, "read: %s", err.message);
    TSAN_EXPECT(t, s.records == total, "read %llu records", (unsigned long long)s.records);
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        TSAN_EXPECT(t, s.next_k[i] == GROUP_PER_THREAD, "thread %d: %d records", i, s.next_k[i]);
    }
    TSAN_EXPECT(t, s.sum == expected_sum(GROUP_PER_THREAD), "checksum of the payloads");
    cq_health_board_free(board);
}

/* ---- a live reader ------------------------------------------------------------------ */

#define LIVE_PER_THREAD 1500

struct reader {
    struct tsan_t *t;
    struct cq_journal *j;
    const char *dir;
    atomic_int *appended;
    int passes;
    uint64_t most_seen;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct tsan_t *t = r->t;
    for (;;) {
        bool last = atomic_load(r->appended) == JOURNAL_THREADS;
        struct cq_journal_stats st;
        cq_journal_get_stats(r->j, &st);
        TSAN_EXPECT(t, st.durable_seq <= st.written_seq && st.written_seq <= st.last_seq,
                    "stats out of order: durable %llu written %llu last %llu",
                    (unsigned long long)st.durable_seq, (unsigned long long)st.written_seq,
                    (unsigned long long)st.last_seq);
        struct scan s;
        struct cq_err err;
        int rc = scan_dir(t, r->dir, &s, &err);
        TSAN_EXPECT(t, rc == 0 && !s.bad, "live read (pass %d): %s (%s)", r->passes,
                    cq_strerror(rc), err.message);
        TSAN_EXPECT(t, s.records >= st.durable_seq,
                    "read %llu records, but %llu were durable before the read",
                    (unsigned long long)s.records, (unsigned long long)st.durable_seq);
        if (s.records > r->most_seen) {
            r->most_seen = s.records;
        }
        struct cq_journal_verify_report rep;
        rc = cq_journal_verify_dir(r->dir, NULL, &rep);
        TSAN_EXPECT(t, rc == 0 && (rep.ok || rep.torn_tail),
                    "live verify (pass %d): segment %u offset %llu: %s", r->passes, rep.bad_segment,
                    (unsigned long long)rep.bad_offset, rep.problem);
        json_t *state = cq_journal_state_json(r->j);
        TSAN_EXPECT(t, state != NULL, "state");
        json_decref(state);
        if (r->passes % 3 == 0) {
            cq_journal_request_snapshot(r->j);
        }
        r->passes++;
        if (last || atomic_load(&t->failures) > 0) {
            break;
        }
    }
    return NULL;
}

static void journal_live_reader_beside_writer(struct tsan_t *t)
{
    char dir[300];
    int len = snprintf(dir, sizeof(dir), "%s/journal", t->tmpdir);
    TSAN_ASSERT_V(t, len > 0 && (size_t)len < sizeof(dir), "directory name too long");
    struct cq_err err;
    cq_err_clear(&err);
    struct cq_health_board *board = cq_health_board_new(NULL, &err);
    TSAN_ASSERT_V(t, board != NULL, "board: %s", err.message);
    struct cq_journal_options o = base_opts(dir, board);
    o.queue_capacity = 64;           /* appenders meet -CQ_EFULL */
    o.segment_max_bytes = 16 * 1024; /* the writer rolls segments */
    o.verify_every_ms = 1;           /* and verifies sealed ones in the background */
    struct cq_journal_recovery rec;
    struct cq_journal *j = cq_journal_open(&o, &rec, &err);
    TSAN_ASSERT_V(t, j != NULL, "open: %s", err.message);
    TSAN_ASSERT_V(t, cq_journal_start(j, &err) == 0, "start: %s", err.message);

    atomic_int appended;
    atomic_init(&appended, 0);
    struct reader r = {t, j, dir, &appended, 0, 0};
    pthread_t rt;
    pthread_create(&rt, NULL, reader_main, &r);
    struct appender a[JOURNAL_THREADS];
    pthread_t th[JOURNAL_THREADS];
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        a[i] = (struct appender){t, j, i, LIVE_PER_THREAD, 100, &appended, 0, 0, 0};
        pthread_create(&th[i], NULL, append_main, &a[i]);
    }
    uint64_t fulls = 0;
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        pthread_join(th[i], NULL);
        TSAN_EXPECT(t, a[i].wait_rc == 0, "thread %d: wait durable: %s", i,
                    cq_strerror(a[i].wait_rc));
        fulls += a[i].fulls;
    }
    pthread_join(rt, NULL);
    uint64_t total = (uint64_t)JOURNAL_THREADS * LIVE_PER_THREAD;
    struct cq_journal_stats st;
    cq_journal_get_stats(j, &st);
    TSAN_EXPECT(t, st.appends_total == total && st.durable_seq == total,
                "appends %llu durable %llu of %llu", (unsigned long long)st.appends_total,
                (unsigned long long)st.durable_seq, (unsigned long long)total);
    TSAN_EXPECT(t, st.full_total == fulls, "-CQ_EFULL answers: journal %llu, appenders %llu",
                (unsigned long long)st.full_total, (unsigned long long)fulls);
    TSAN_EXPECT(t, st.segments > 1, "%u segment(s): the writer never rolled", st.segments);
    TSAN_EXPECT(t, r.passes > 0, "the reader never read");
    printf("# live reader: %d passes (up to %llu records seen); %llu -CQ_EFULL retries; "
           "%u segments\n",
           r.passes, (unsigned long long)r.most_seen, (unsigned long long)fulls, st.segments);
    TSAN_EXPECT(t, cq_journal_stop(j, &err) == 0, "stop: %s", err.message);
    cq_journal_get_stats(j, &st);
    TSAN_EXPECT(t, st.snapshots_total >= 1, "no snapshot");
    TSAN_EXPECT(t, st.verify_failures_total == 0, "background verify failed %llu times",
                (unsigned long long)st.verify_failures_total);
    cq_journal_free(j);

    struct cq_journal_verify_report rep;
    TSAN_EXPECT(t, cq_journal_verify_dir(dir, NULL, &rep) == 0, "verify");
    TSAN_EXPECT(t, rep.ok && rep.records == total, "verify: ok %d records %llu: %s", rep.ok,
                (unsigned long long)rep.records, rep.problem);
    struct scan s;
    TSAN_EXPECT(t, scan_dir(t, dir, &s, &err) == 0, "read: %s", err.message);
    TSAN_EXPECT(t, s.records == total, "read %llu records", (unsigned long long)s.records);
    for (int i = 0; i < JOURNAL_THREADS; i++) {
        TSAN_EXPECT(t, s.next_k[i] == LIVE_PER_THREAD, "thread %d: %d records", i, s.next_k[i]);
    }
    TSAN_EXPECT(t, s.sum == expected_sum(LIVE_PER_THREAD), "checksum of the payloads");
    cq_health_board_free(board);
}

const struct tsan_case tsan_journal_cases[] = {
    {"journal_group_commit_from_threads", journal_group_commit_from_threads},
    {"journal_live_reader_beside_writer", journal_live_reader_beside_writer},
    {NULL, NULL},
};
