/*
 * bench_journal.c — the journal (include/cq/journal.h) against SQLite in WAL
 * mode, the store a user would otherwise pick, on the same records, in one
 * run, on the same filesystem.
 *
 * Records: N pre-generated in memory before any timing, each a 128-byte JSON
 * object (padded to exactly 128 bytes), a trading mix cycling every 8
 * records over 4 symbols: signal.emitted x3, risk.decision, order.intent,
 * order.ack, order.fill (one order per cycle, client_order_id shared by its
 * three records), signal.blocked. -m notes keeps the payloads but types
 * every record note, so the journal's state reducer parses no payload (it
 * parses the JSON of every order record): that isolates the reducer's cost.
 * Both stores get the same records in the same order; every read-back is
 * checked against a seq-weighted checksum of them, so neither store can
 * pass for fast by losing or reordering records.
 *
 * Measurements (each the median of the runs, 5 by default, one JSON line
 * each; journal and SQLite runs alternate so drift on a shared machine hits
 * both):
 *   journal_fdatasync  the device's own cost: 4 KiB write + fdatasync,
 *       appending (the file grows, as the journal's does) and overwriting in
 *       place; p50/p99 of the samples.
 *   journal_buffered_append  journal fsync OFF, one thread appends N, timed
 *       up to wait_durable(last) (everything written); snapshots held off
 *       during the run (the stop writes one: stop_seconds). SQLite
 *       synchronous=OFF, one transaction per 10,000 records. A full journal
 *       queue (-CQ_EFULL) is answered by waiting for the producer's last
 *       record; longest_append_block_ms is the longest it was refused.
 *       Then the journal alone again with the shipped snapshot settings (a
 *       snapshot every 100,000 records, written by the writer thread):
 *       the figure a deployment gets, and the one the 2 M records/s target
 *       is judged on ("shipped_settings":true; the summary's
 *       targets.buffered_append_2m_per_s). The snapshots-off run isolates
 *       the append path (its target_met is for that path alone).
 *   journal_replay  over the N records of the last buffered run, warm page
 *       cache: cq_journal_read_dir (every record, checked) and
 *       cq_journal_replay_dir without snapshot (state reconstruction from
 *       seq 1); SQLite SELECT ... ORDER BY seq.
 *   journal_verify  cq_journal_verify_dir (CRC32C, seq, hash chain);
 *       SQLite PRAGMA integrity_check (b-tree structure; SQLite keeps no
 *       content checksums). MB/s of the bytes each store holds.
 *   journal_group_commit  K threads, each appends (inserts) one record and
 *       waits until it is durable, M times (traders waiting on intents);
 *       journal fsync GROUP; SQLite synchronous=FULL, one autocommit
 *       transaction per record, a connection per thread (SQLite's advice;
 *       its busy handler serialises the writers; -c: one serialized
 *       connection shared by the threads instead, measured with a worse
 *       p99 here). Durable records/s and the wait per record (own
 *       histogram; the journal's own commit_wait_p99_us beside it).
 *   journal_per_record_fsync  one thread, a record at a time, waiting for
 *       durability each time: journal fsync ALWAYS; SQLite synchronous=FULL.
 * Then journal_summary: the ratios journal/SQLite (throughput: > 1 means the
 * journal is faster; p99 waits: < 1 means the journal waits less).
 *
 * Everything lives in one mkdtemp directory under -d (default $TMPDIR or
 * /tmp; its filesystem type is printed; tmpfs makes the durable figures
 * meaningless), removed at the end and on error. About 2.5 minutes with the
 * defaults on 2 cores; peak disk about 0.7 GB, memory about 0.4 GB.
 *
 * Build: gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude -Iserver
 *   server/journal/[a-z]*.c server/core/{err,clock,fs,log,health}.c
 *   tests/bench/bench_journal.c -ljansson -lcrypto -lsqlite3 -lpthread
 *   -o bench_journal
 * Usage: bench_journal [-n records] [-k threads] [-g per-thread group records]
 *   [-s per-record fsync records] [-f fdatasync samples] [-r runs] [-d dir]
 *   [-m trading|notes] [-c] [-S]
 *   defaults: -n 2000000 -k 4 -g 250 -s 500 -f 200 -r 5 -m trading;
 *   -S skips the journal-only run with the shipped snapshot settings.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cq/journal.h"
#include "cq/log.h"

#define RUNS_DEFAULT 5
#define RUNS_MAX 15
#define PAYLOAD_BYTES 128
#define SQLITE_BATCH 10000
#define N_SYMBOLS 4
#define CYCLE 8
#define WAIT_TIMEOUT_MS 120000
#define FSYNC_BLOCK 4096

static const char *const symbols[N_SYMBOLS] = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"};

/* ---- plumbing ------------------------------------------------------------------------ */

static char root_dir[4096]; /* the mkdtemp directory; "" until created */

static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            for (;;) {
                struct dirent *e = readdir(d);
                if (e == NULL) {
                    break;
                }
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                    continue;
                }
                char child[4096];
                snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
                rm_tree(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_journal: %s%s%s\n", what, detail != NULL ? ": " : "",
            detail != NULL ? detail : "");
    if (root_dir[0] != '\0') {
        rm_tree(root_dir);
    }
    exit(1);
}

static void die_rc(const char *what, int rc, const struct cq_err *err)
{
    char detail[1024];
    snprintf(detail, sizeof(detail), "%s%s%s", cq_strerror(rc),
             err != NULL && err->message[0] != '\0' ? ": " : "", err != NULL ? err->message : "");
    die(what, detail);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts a copy). */
static double median(const double *v, int n)
{
    double tmp[RUNS_MAX];
    memcpy(tmp, v, (size_t)n * sizeof(*v));
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
    return tmp[n / 2];
}

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) {
        m = v[i] < m ? v[i] : m;
    }
    return m;
}

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) {
        m = v[i] > m ? v[i] : m;
    }
    return m;
}

/* Latency percentiles (nearest rank) of n samples in ns, in µs; sorts v. */
struct lat {
    double p50_us, p99_us, max_us;
};

static struct lat latencies(int64_t *v, size_t n)
{
    struct lat l = {0, 0, 0};
    if (n == 0) {
        return l;
    }
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t i50 = (n * 50 + 99) / 100;
    size_t i99 = (n * 99 + 99) / 100;
    l.p50_us = (double)v[i50 > 0 ? i50 - 1 : 0] / 1e3;
    l.p99_us = (double)v[i99 > 0 ? i99 - 1 : 0] / 1e3;
    l.max_us = (double)v[n - 1] / 1e3;
    return l;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        die("out of memory", NULL);
    }
    return p;
}

/* Bytes of the regular files under path (one level, plus subdirectories). */
static uint64_t tree_bytes(const char *path)
{
    struct stat st;
    uint64_t total = 0;
    if (lstat(path, &st) < 0) {
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        return S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    for (;;) {
        struct dirent *e = readdir(d);
        if (e == NULL) {
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char child[4096];
        snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        total += tree_bytes(child);
    }
    closedir(d);
    return total;
}

static const char *fs_name(long type)
{
    switch ((unsigned long)type) {
    case 0xEF53UL:
        return "ext4"; /* also ext2/ext3: one magic */
    case 0x58465342UL:
        return "xfs";
    case 0x9123683EUL:
        return "btrfs";
    case 0x01021994UL:
        return "tmpfs";
    case 0x794C7630UL:
        return "overlayfs";
    case 0x2FC12FC1UL:
        return "zfs";
    case 0xF2F52010UL:
        return "f2fs";
    case 0x6969UL:
        return "nfs";
    default:
        return "unknown";
    }
}

/* ---- the records ---------------------------------------------------------------------- */

struct records {
    char *payloads;  /* owned: n * PAYLOAD_BYTES, no NULs */
    uint16_t *types; /* owned */
    uint8_t *scopes; /* owned: index into symbols[] */
    size_t n;
    uint64_t checksum; /* seq-weighted (seq = index + 1) */
};

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* What every read-back adds up: cheap, but it touches both ends of the
 * payload and weighs by seq, so a lost, changed or reordered record shows. */
static uint64_t rec_sum(uint64_t seq, uint16_t type, const char *scope, const void *payload,
                        size_t len)
{
    const unsigned char *p = payload;
    uint64_t h =
        (uint64_t)type * 1000003u + (unsigned char)scope[0] * 31u + (unsigned char)scope[1];
    h += len;
    if (len == PAYLOAD_BYTES) {
        h ^= load64(p + 16) * 0x9E3779B97F4A7C15ULL;
        h += load64(p + PAYLOAD_BYTES - 8);
    }
    return h * (seq | 1u) + seq;
}

/* JSON text prefix (without the closing brace) padded with a "pad" member
 * to exactly PAYLOAD_BYTES. */
static void pad_payload(char *out, const char *prefix)
{
    size_t len = strlen(prefix);
    const size_t overhead = strlen(",\"pad\":\"\"}");
    if (len + overhead > PAYLOAD_BYTES) {
        die("payload prefix too long", prefix);
    }
    size_t pad = PAYLOAD_BYTES - len - overhead;
    char buf[PAYLOAD_BYTES + 1];
    memcpy(buf, prefix, len);
    memcpy(buf + len, ",\"pad\":\"", 8);
    memset(buf + len + 8, 'x', pad);
    memcpy(buf + len + 8 + pad, "\"}", 2);
    buf[PAYLOAD_BYTES] = '\0';
    if (strlen(buf) != PAYLOAD_BYTES) {
        die("payload is not 128 bytes", buf);
    }
    memcpy(out, buf, PAYLOAD_BYTES);
}

static void records_make(struct records *r, size_t n, bool notes)
{
    char prefix[256];
    r->n = n;
    r->payloads = xcalloc(n, PAYLOAD_BYTES);
    r->types = xcalloc(n, sizeof(*r->types));
    r->scopes = xcalloc(n, sizeof(*r->scopes));
    r->checksum = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cycle = i / CYCLE;
        unsigned sym = (unsigned)(cycle % N_SYMBOLS);
        const char *side = (cycle & 1) ? "SELL" : "BUY";
        unsigned long long px = 6000000ULL + (cycle * 37) % 100000; /* 2 decimals */
        uint16_t type;
        switch (i % CYCLE) {
        case 0:
        case 1:
        case 2:
            type = CQ_REC_SIGNAL_EMITTED;
            snprintf(prefix, sizeof(prefix),
                     "{\"strategy\":\"ares-mr\",\"side\":\"%s\",\"price\":\"%llu.%02llu\","
                     "\"score\":\"0.%04zu\",\"bar\":%zu",
                     side, px / 100, px % 100, (i * 7919) % 10000, 1700000000000 + i * 1000);
            break;
        case 3:
            type = CQ_REC_RISK_DECISION;
            snprintf(prefix, sizeof(prefix),
                     "{\"decision\":\"allow\",\"notional\":\"%llu.%02llu\",\"limit\":\"25000\","
                     "\"exposure\":\"0.%04zu\"",
                     px / 100 / 10, px % 100, (i * 31) % 10000);
            break;
        case 4:
        case 5:
        case 6: {
            static const char *const status[3] = {"intent", "ack", "fill"};
            type = (uint16_t)(CQ_REC_ORDER_INTENT + (i % CYCLE) - 4);
            snprintf(prefix, sizeof(prefix),
                     "{\"client_order_id\":\"cq-%010zu\",\"side\":\"%s\",\"type\":\"LIMIT\","
                     "\"price\":\"%llu.%02llu\",\"qty\":\"0.00100\",\"st\":\"%s\"",
                     cycle, side, px / 100, px % 100, status[(i % CYCLE) - 4]);
            break;
        }
        default:
            type = CQ_REC_SIGNAL_BLOCKED;
            snprintf(prefix, sizeof(prefix),
                     "{\"reason\":\"stale_market\",\"freshness_ms\":%zu,\"side\":\"%s\"",
                     1500 + (i % 997), side);
            break;
        }
        pad_payload(r->payloads + i * PAYLOAD_BYTES, prefix);
        if (notes) {
            type = CQ_REC_NOTE;
        }
        r->types[i] = type;
        r->scopes[i] = (uint8_t)sym;
        r->checksum +=
            rec_sum(i + 1, type, symbols[sym], r->payloads + i * PAYLOAD_BYTES, PAYLOAD_BYTES);
    }
}

static void records_free(struct records *r)
{
    free(r->payloads);
    free(r->types);
    free(r->scopes);
}

static const char *rec_payload(const struct records *r, size_t i)
{
    return r->payloads + i * PAYLOAD_BYTES;
}

/* ---- coinquant journal ------------------------------------------------------------------ */

/* snapshots false: none while the benchmark appends (the stop still writes
 * one), so the figure is the append pipeline alone and the directory keeps
 * every segment (a snapshot prunes the segments it makes redundant). */
static struct cq_journal *journal_open(const char *dir, enum cq_journal_fsync policy,
                                       bool snapshots)
{
    struct cq_err err;
    struct cq_journal_recovery rec;
    struct cq_journal_options o;
    memset(&o, 0, sizeof(o));
    memset(&rec, 0, sizeof(rec));
    cq_err_clear(&err);
    o.dir = dir;
    o.fsync = policy;
    /* everything else 0: the documented defaults (queue 65536 records,
     * 64 MiB segments, a snapshot every 100000 records or 60 s, keep 2);
     * verify_every_ms 0 = no background verify (its first pass would come
     * after 60 s anyway) */
    if (!snapshots) {
        o.snapshot_every_records = UINT64_MAX;
        o.snapshot_every_ms = INT64_MAX;
    }
    struct cq_journal *j = cq_journal_open(&o, &rec, &err);
    if (j == NULL) {
        die_rc("cq_journal_open", err.code, &err);
    }
    int rc = cq_journal_start(j, &err);
    if (rc < 0) {
        die_rc("cq_journal_start", rc, &err);
    }
    return j;
}

static void journal_close(struct cq_journal *j)
{
    struct cq_err err;
    cq_err_clear(&err);
    int rc = cq_journal_stop(j, &err);
    if (rc < 0) {
        die_rc("cq_journal_stop", rc, &err);
    }
    cq_journal_free(j);
}

static void journal_wait(struct cq_journal *j, uint64_t seq)
{
    int rc = cq_journal_wait_durable(j, seq, WAIT_TIMEOUT_MS);
    if (rc < 0) {
        die_rc("cq_journal_wait_durable", rc, NULL);
    }
}

/* One appending thread's view. */
struct producer {
    uint64_t last;          /* seq of its last record (0 = none yet) */
    uint64_t full;          /* -CQ_EFULL answers */
    int64_t max_blocked_ns; /* longest stretch spent unable to append */
};

/* Append record i. A full queue is backpressure: wait until this
 * producer's last record is durable, then retry (measured about 15 %
 * faster on 2 cores than spinning on sched_yield, which keeps taking the
 * queue lock from the writer). */
static uint64_t journal_append(struct cq_journal *j, const struct records *r, size_t i,
                               struct producer *p)
{
    uint64_t seq = 0;
    int64_t blocked_since = 0;
    for (;;) {
        int rc = cq_journal_append(j, r->types[i], symbols[r->scopes[i]], rec_payload(r, i),
                                   PAYLOAD_BYTES, &seq);
        if (rc == 0) {
            if (blocked_since != 0) {
                int64_t blocked = now_ns() - blocked_since;
                p->max_blocked_ns = blocked > p->max_blocked_ns ? blocked : p->max_blocked_ns;
            }
            p->last = seq;
            return seq;
        }
        if (rc != -CQ_EFULL) {
            die_rc("cq_journal_append", rc, NULL);
        }
        p->full++;
        if (blocked_since == 0) {
            blocked_since = now_ns();
        }
        if (p->last != 0) {
            journal_wait(j, p->last);
        } else {
            sched_yield();
        }
    }
}

struct buffered_result {
    double seconds;
    double stop_seconds;   /* cq_journal_stop after the timed part (drain + snapshot) */
    uint64_t full_retries; /* -CQ_EFULL answers */
    double max_blocked_ms; /* longest the producer could not append */
    uint64_t batches, snapshots, bytes_written;
    uint64_t disk_bytes;
};

/* keep_open: the journal is left running (writer idle, nothing pruned)
 * and returned there; the caller stops it. */
static struct buffered_result journal_buffered(const struct records *r, const char *dir,
                                               bool snapshots, struct cq_journal **keep_open)
{
    struct buffered_result res;
    struct cq_journal_stats st;
    memset(&res, 0, sizeof(res));
    struct cq_journal *j = journal_open(dir, CQ_JOURNAL_FSYNC_OFF, snapshots);
    uint64_t seq = 0;
    struct producer prod = {0, 0, 0};
    int64_t t0 = now_ns();
    for (size_t i = 0; i < r->n; i++) {
        seq = journal_append(j, r, i, &prod);
    }
    journal_wait(j, seq);
    int64_t t1 = now_ns();
    if (seq != r->n) {
        die("journal: the last seq is not N", NULL);
    }
    cq_journal_get_stats(j, &st);
    res.batches = st.batches_total;
    res.snapshots = st.snapshots_total;
    res.bytes_written = st.bytes_written_total;
    res.full_retries = prod.full;
    res.max_blocked_ms = (double)prod.max_blocked_ns / 1e6;
    res.seconds = (double)(t1 - t0) / 1e9;
    res.disk_bytes = tree_bytes(dir);
    if (keep_open != NULL) {
        *keep_open = j;
        return res;
    }
    t1 = now_ns();
    journal_close(j);
    res.stop_seconds = (double)(now_ns() - t1) / 1e9;
    return res;
}

/* K threads, each append + wait durable, M times. */
struct durable_result {
    double seconds;
    struct lat lat;                      /* per-record wait, own histogram */
    uint64_t stats_p50_us, stats_p99_us; /* the journal's own (recent window) */
    uint64_t fsyncs;
    uint64_t records;
};

struct group_ctx {
    const struct records *r;
    struct cq_journal *j; /* journal runs */
    sqlite3 *db;          /* SQLite runs: shared connection, or NULL */
    const char *db_path;  /* SQLite runs: own connection per thread when db is NULL */
    pthread_barrier_t *start;
    size_t first, count;
    int64_t *waits_ns; /* count samples, this thread's slice */
};

static void *journal_group_thread(void *arg)
{
    struct group_ctx *c = arg;
    struct producer prod = {0, 0, 0};
    pthread_barrier_wait(c->start);
    for (size_t i = 0; i < c->count; i++) {
        int64_t t0 = now_ns();
        uint64_t seq = journal_append(c->j, c->r, c->first + i, &prod);
        journal_wait(c->j, seq);
        c->waits_ns[i] = now_ns() - t0;
    }
    return NULL;
}

static struct durable_result run_threads(const struct records *r, size_t threads, size_t per_thread,
                                         struct cq_journal *j, sqlite3 *db, const char *db_path,
                                         void *(*body)(void *))
{
    struct durable_result res;
    pthread_barrier_t start;
    pthread_t tids[64];
    struct group_ctx ctx[64];
    size_t total = threads * per_thread;
    int64_t *waits = xcalloc(total, sizeof(*waits));
    memset(&res, 0, sizeof(res));
    if (pthread_barrier_init(&start, NULL, (unsigned)threads + 1) != 0) {
        die("pthread_barrier_init", NULL);
    }
    for (size_t t = 0; t < threads; t++) {
        ctx[t] = (struct group_ctx){
            r, j, db, db_path, &start, t * per_thread, per_thread, waits + t * per_thread};
        if (pthread_create(&tids[t], NULL, body, &ctx[t]) != 0) {
            die("pthread_create", NULL);
        }
    }
    pthread_barrier_wait(&start);
    int64_t t0 = now_ns();
    for (size_t t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
    }
    int64_t t1 = now_ns();
    pthread_barrier_destroy(&start);
    res.seconds = (double)(t1 - t0) / 1e9;
    res.records = total;
    res.lat = latencies(waits, total);
    free(waits);
    return res;
}

static struct durable_result journal_durable(const struct records *r, const char *dir,
                                             enum cq_journal_fsync policy, size_t threads,
                                             size_t per_thread)
{
    struct cq_journal_stats st;
    struct cq_journal *j = journal_open(dir, policy, true);
    struct durable_result res =
        run_threads(r, threads, per_thread, j, NULL, NULL, journal_group_thread);
    cq_journal_get_stats(j, &st);
    if (st.durable_seq < res.records) {
        die("journal: fewer durable records than appended", NULL);
    }
    res.stats_p50_us = st.commit_wait_p50_us;
    res.stats_p99_us = st.commit_wait_p99_us;
    res.fsyncs = st.fsyncs_total;
    journal_close(j);
    rm_tree(dir);
    return res;
}

struct read_sink {
    uint64_t n;
    uint64_t sum;
    uint64_t bytes;
};

static int on_record(void *ctx, const struct cq_journal_record *rec)
{
    struct read_sink *s = ctx;
    s->n++;
    s->bytes += rec->payload_len;
    s->sum += rec_sum(rec->seq, rec->type, rec->scope, rec->payload, rec->payload_len);
    return 0;
}

static double journal_read(const struct records *r, const char *dir)
{
    struct read_sink s = {0, 0, 0};
    struct cq_err err;
    cq_err_clear(&err);
    int64_t t0 = now_ns();
    int rc = cq_journal_read_dir(dir, NULL, 0, on_record, &s, &err);
    int64_t t1 = now_ns();
    if (rc < 0) {
        die_rc("cq_journal_read_dir", rc, &err);
    }
    if (s.n != r->n || s.sum != r->checksum) {
        die("cq_journal_read_dir: records differ from what was appended", NULL);
    }
    return (double)(t1 - t0) / 1e9;
}

static double journal_replay(const struct records *r, const char *dir)
{
    struct cq_err err;
    json_t *state = NULL;
    cq_err_clear(&err);
    int64_t t0 = now_ns();
    int rc = cq_journal_replay_dir(dir, NULL, false, &state, &err);
    int64_t t1 = now_ns();
    if (rc < 0) {
        die_rc("cq_journal_replay_dir", rc, &err);
    }
    json_t *records = json_object_get(state, "records");
    json_t *last = json_object_get(state, "last_seq");
    if (!json_is_integer(records) || (uint64_t)json_integer_value(records) != r->n ||
        !json_is_integer(last) || (uint64_t)json_integer_value(last) != r->n) {
        die("cq_journal_replay_dir: the state does not count N records", NULL);
    }
    json_decref(state);
    return (double)(t1 - t0) / 1e9;
}

static double journal_verify(const struct records *r, const char *dir, uint64_t *bytes)
{
    struct cq_journal_verify_report rep;
    memset(&rep, 0, sizeof(rep));
    int64_t t0 = now_ns();
    int rc = cq_journal_verify_dir(dir, NULL, &rep);
    int64_t t1 = now_ns();
    if (rc < 0) {
        die_rc("cq_journal_verify_dir", rc, NULL);
    }
    if (!rep.ok || rep.records != r->n) {
        die("cq_journal_verify_dir: not ok", rep.problem);
    }
    *bytes = rep.bytes;
    return (double)(t1 - t0) / 1e9;
}

/* ---- SQLite -------------------------------------------------------------------------------- */

static void sq_check(sqlite3 *db, int rc, int want, const char *what)
{
    if (rc != want) {
        die(what, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
}

static void sq_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        char detail[1024];
        snprintf(detail, sizeof(detail), "%s: %s", sql, msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        die("sqlite3_exec", detail);
    }
}

static void sq_remove(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

/* A connection in WAL mode with the given synchronous setting; creates the
 * table. flags: SQLITE_OPEN_FULLMUTEX to share it between threads. */
static sqlite3 *sq_open(const char *path, const char *synchronous, int flags)
{
    sqlite3 *db = NULL;
    char sql[128];
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | flags, NULL);
    if (rc != SQLITE_OK) {
        die("sqlite3_open_v2", db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
    sqlite3_busy_timeout(db, WAIT_TIMEOUT_MS);
    sqlite3_stmt *st = NULL;
    sq_check(db, sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL), SQLITE_OK,
             "prepare journal_mode");
    sq_check(db, sqlite3_step(st), SQLITE_ROW, "journal_mode=WAL");
    if (strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        die("sqlite: WAL mode refused", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", synchronous);
    sq_exec(db, sql);
    sq_exec(db, "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, ts INTEGER, "
                "type INTEGER, scope TEXT, payload BLOB)");
    return db;
}

static sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    sq_check(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, sql);
    return st;
}

#define SQ_INSERT "INSERT INTO journal (ts, type, scope, payload) VALUES (?, ?, ?, ?)"

/* Bind and run the insert of record i (seq = the rowid SQLite assigns, as
 * the journal assigns its own); the wall clock per record, as the journal
 * stamps its records. */
static void sq_insert(sqlite3 *db, sqlite3_stmt *ins, const struct records *r, size_t i)
{
    sqlite3_bind_int64(ins, 1, cq_time_wall_us());
    sqlite3_bind_int(ins, 2, r->types[i]);
    sqlite3_bind_text(ins, 3, symbols[r->scopes[i]], -1, SQLITE_STATIC);
    sqlite3_bind_blob(ins, 4, rec_payload(r, i), PAYLOAD_BYTES, SQLITE_STATIC);
    sq_check(db, sqlite3_step(ins), SQLITE_DONE, "insert");
    sqlite3_reset(ins);
}

static struct buffered_result sqlite_buffered(const struct records *r, const char *path)
{
    struct buffered_result res;
    memset(&res, 0, sizeof(res));
    sq_remove(path);
    sqlite3 *db = sq_open(path, "OFF", 0);
    sqlite3_stmt *ins = sq_prepare(db, SQ_INSERT);
    sqlite3_stmt *begin = sq_prepare(db, "BEGIN");
    sqlite3_stmt *commit = sq_prepare(db, "COMMIT");
    int64_t t0 = now_ns();
    for (size_t i = 0; i < r->n; i += SQLITE_BATCH) {
        size_t end = i + SQLITE_BATCH < r->n ? i + SQLITE_BATCH : r->n;
        sq_check(db, sqlite3_step(begin), SQLITE_DONE, "BEGIN");
        sqlite3_reset(begin);
        for (size_t k = i; k < end; k++) {
            sq_insert(db, ins, r, k);
        }
        sq_check(db, sqlite3_step(commit), SQLITE_DONE, "COMMIT");
        sqlite3_reset(commit);
        res.batches++;
    }
    int64_t t1 = now_ns();
    if ((uint64_t)sqlite3_last_insert_rowid(db) != r->n) {
        die("sqlite: the last seq is not N", NULL);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    /* fold the WAL into the database file so replay and verify read one file */
    sq_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sq_check(db, sqlite3_close(db), SQLITE_OK, "sqlite3_close");
    int64_t t2 = now_ns();
    res.seconds = (double)(t1 - t0) / 1e9;
    res.stop_seconds = (double)(t2 - t1) / 1e9;
    res.disk_bytes = tree_bytes(path);
    return res;
}

static void *sqlite_group_thread(void *arg)
{
    struct group_ctx *c = arg;
    sqlite3 *db = c->db;
    if (db == NULL) {
        db = sq_open(c->db_path, "FULL", SQLITE_OPEN_NOMUTEX);
    }
    sqlite3_stmt *ins = sq_prepare(db, SQ_INSERT);
    pthread_barrier_wait(c->start);
    for (size_t i = 0; i < c->count; i++) {
        int64_t t0 = now_ns();
        sq_insert(db, ins, c->r, c->first + i); /* autocommit: durable when it returns */
        c->waits_ns[i] = now_ns() - t0;
    }
    sqlite3_finalize(ins);
    if (c->db == NULL) {
        sq_check(db, sqlite3_close(db), SQLITE_OK, "sqlite3_close");
    }
    return NULL;
}

static struct durable_result sqlite_durable(const struct records *r, const char *path,
                                            size_t threads, size_t per_thread, bool own_conns)
{
    sq_remove(path);
    sqlite3 *db = sq_open(path, "FULL", SQLITE_OPEN_FULLMUTEX);
    struct durable_result res =
        run_threads(r, threads, per_thread, NULL, own_conns ? NULL : db, path, sqlite_group_thread);
    sqlite3_stmt *cnt = sq_prepare(db, "SELECT count(*) FROM journal");
    sq_check(db, sqlite3_step(cnt), SQLITE_ROW, "count");
    if ((uint64_t)sqlite3_column_int64(cnt, 0) != res.records) {
        die("sqlite: row count differs from inserted", NULL);
    }
    sqlite3_finalize(cnt);
    sq_check(db, sqlite3_close(db), SQLITE_OK, "sqlite3_close");
    sq_remove(path);
    return res;
}

static double sqlite_read(const struct records *r, const char *path)
{
    sqlite3 *db = NULL;
    struct read_sink s = {0, 0, 0};
    sq_check(NULL, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK,
             "sqlite3_open_v2");
    int64_t t0 = now_ns();
    sqlite3_stmt *sel =
        sq_prepare(db, "SELECT seq, ts, type, scope, payload FROM journal ORDER BY seq");
    for (;;) {
        int rc = sqlite3_step(sel);
        if (rc == SQLITE_DONE) {
            break;
        }
        sq_check(db, rc, SQLITE_ROW, "select");
        struct cq_journal_record rec;
        rec.seq = (uint64_t)sqlite3_column_int64(sel, 0);
        rec.ts_us = sqlite3_column_int64(sel, 1);
        rec.type = (uint16_t)sqlite3_column_int(sel, 2);
        rec.scope = (const char *)sqlite3_column_text(sel, 3);
        rec.payload = sqlite3_column_blob(sel, 4);
        rec.payload_len = (size_t)sqlite3_column_bytes(sel, 4);
        rec.segment = 0;
        rec.offset = 0;
        on_record(&s, &rec);
    }
    sqlite3_finalize(sel);
    int64_t t1 = now_ns();
    sq_check(db, sqlite3_close(db), SQLITE_OK, "sqlite3_close");
    if (s.n != r->n || s.sum != r->checksum) {
        die("sqlite select: records differ from what was inserted", NULL);
    }
    return (double)(t1 - t0) / 1e9;
}

static double sqlite_verify(const char *path, uint64_t *bytes)
{
    sqlite3 *db = NULL;
    sq_check(NULL, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK,
             "sqlite3_open_v2");
    int64_t t0 = now_ns();
    sqlite3_stmt *st = sq_prepare(db, "PRAGMA integrity_check");
    sq_check(db, sqlite3_step(st), SQLITE_ROW, "integrity_check");
    if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        die("sqlite integrity_check", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    int64_t t1 = now_ns();
    sq_check(db, sqlite3_close(db), SQLITE_OK, "sqlite3_close");
    *bytes = tree_bytes(path);
    return (double)(t1 - t0) / 1e9;
}

/* ---- the device ------------------------------------------------------------------------------ */

/* samples x (4 KiB write + fdatasync): appending to a new file, or
 * overwriting a file of that size written and synced beforehand. */
static struct lat device_fdatasync(const char *path, size_t samples, bool overwrite)
{
    char block[FSYNC_BLOCK];
    int64_t *v = xcalloc(samples, sizeof(*v));
    memset(block, 'j', sizeof(block));
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        die("open", strerror(errno));
    }
    if (overwrite) {
        for (size_t i = 0; i < samples; i++) {
            if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
                die("write", strerror(errno));
            }
        }
        if (fsync(fd) < 0) {
            die("fsync", strerror(errno));
        }
    }
    for (size_t i = 0; i < samples; i++) {
        int64_t t0 = now_ns();
        ssize_t n = overwrite ? pwrite(fd, block, sizeof(block), (off_t)(i * sizeof(block)))
                              : write(fd, block, sizeof(block));
        if (n != (ssize_t)sizeof(block)) {
            die("write", strerror(errno));
        }
        if (fdatasync(fd) < 0) {
            die("fdatasync", strerror(errno));
        }
        v[i] = now_ns() - t0;
    }
    close(fd);
    unlink(path);
    struct lat l = latencies(v, samples);
    free(v);
    return l;
}

/* ---- main ---------------------------------------------------------------------------------- */

struct config {
    size_t n, threads, group_per_thread, fsync_records, fsync_samples;
    int runs;
    const char *base;
    bool shared_conn;       /* SQLite group commit: one serialized connection for all threads */
    bool default_snapshots; /* also the buffered run with shipped snapshot settings */
    bool notes;             /* -m notes: every record type note (the reducer only counts) */
};

static size_t parse_size(const char *arg, size_t lo, size_t hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_journal: %s must be %zu..%zu\n", what, lo, hi);
        exit(2);
    }
    return (size_t)v;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-n records] [-k threads] [-g per-thread group records]\n"
            "          [-s per-record fsync records] [-f fdatasync samples] [-r runs]\n"
            "          [-d dir] [-m trading|notes] [-c] [-S]\n"
            "  defaults: -n 2000000 -k 4 -g 250 -s 500 -f 200 -r 5, -d $TMPDIR or /tmp,\n"
            "            -m trading;\n"
            "  -m notes: the same payloads, every record of type note (the journal's\n"
            "      state reducer then parses no payload: isolates its cost);\n"
            "  -c: SQLite group commit on one serialized connection shared by the\n"
            "      threads (default: a connection per thread, busy timeout);\n"
            "  -S: skip the buffered run with the shipped snapshot settings\n",
            argv0);
    exit(2);
}

static void parse_args(int argc, char **argv, struct config *c)
{
    const char *tmp = getenv("TMPDIR");
    c->n = 2000000;
    c->threads = 4;
    c->group_per_thread = 250;
    c->fsync_records = 500;
    c->fsync_samples = 200;
    c->runs = RUNS_DEFAULT;
    c->base = tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp";
    c->shared_conn = false;
    c->default_snapshots = true;
    c->notes = false;
    for (;;) {
        int opt = getopt(argc, argv, "n:k:g:s:f:r:d:m:cSh");
        if (opt == -1) {
            break;
        }
        switch (opt) {
        case 'n':
            c->n = parse_size(optarg, 1000, 100000000, "-n records");
            break;
        case 'k':
            c->threads = parse_size(optarg, 1, 64, "-k threads");
            break;
        case 'g':
            c->group_per_thread = parse_size(optarg, 1, 1000000, "-g records per thread");
            break;
        case 's':
            c->fsync_records = parse_size(optarg, 1, 1000000, "-s records");
            break;
        case 'f':
            c->fsync_samples = parse_size(optarg, 1, 100000, "-f samples");
            break;
        case 'r':
            c->runs = (int)parse_size(optarg, 1, RUNS_MAX, "-r runs");
            break;
        case 'd':
            c->base = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "trading") == 0) {
                c->notes = false;
            } else if (strcmp(optarg, "notes") == 0) {
                c->notes = true;
            } else {
                usage(argv[0]);
            }
            break;
        case 'c':
            c->shared_conn = true;
            break;
        case 'S':
            c->default_snapshots = false;
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind != argc) {
        usage(argv[0]);
    }
    /* the group and per-record runs take their records from the same set */
    if (c->threads * c->group_per_thread > c->n || c->fsync_records > c->n) {
        fprintf(stderr, "bench_journal: -k x -g and -s must not exceed -n\n");
        exit(2);
    }
}

/* The journal's buffered line; returns the median records/s. */
static double print_buffered(const char *snapshots, const struct records *r,
                             const struct buffered_result *res, int runs)
{
    double rps[RUNS_MAX] = {0}, mbps[RUNS_MAX] = {0}, stop[RUNS_MAX] = {0}, full[RUNS_MAX] = {0},
           batch[RUNS_MAX] = {0}, snaps[RUNS_MAX] = {0}, blocked[RUNS_MAX] = {0};
    for (int i = 0; i < runs; i++) {
        rps[i] = (double)r->n / res[i].seconds;
        mbps[i] = (double)res[i].bytes_written / res[i].seconds / 1e6;
        stop[i] = res[i].stop_seconds;
        full[i] = (double)res[i].full_retries;
        blocked[i] = res[i].max_blocked_ms;
        batch[i] = res[i].batches > 0 ? (double)r->n / (double)res[i].batches : 0;
        snaps[i] = (double)res[i].snapshots;
    }
    double m = median(rps, runs);
    bool shipped = strcmp(snapshots, "off_during_run") != 0;
    printf("{\"bench\":\"journal_buffered_append\",\"store\":\"coinquant\",\"fsync\":\"off\","
           "\"snapshots\":\"%s\",\"shipped_settings\":%s,\"records\":%zu,\"seconds\":%.3f,"
           "\"records_per_s\":%.0f,"
           "\"mb_per_s\":%.1f,\"target_records_per_s\":2000000,\"target_met\":%s,"
           "\"snapshots_written\":%.0f,\"queue_full_answers\":%.0f,"
           "\"longest_append_block_ms\":%.1f,\"records_per_write_batch\":%.0f,"
           "\"stop_seconds\":%.3f,\"disk_bytes\":%llu,\"runs_records_per_s\":[%.0f,%.0f],"
           "\"median_of\":%d}\n",
           snapshots, shipped ? "true" : "false", r->n, (double)r->n / m, m, median(mbps, runs),
           m >= 2e6 ? "true" : "false", median(snaps, runs), median(full, runs),
           median(blocked, runs), median(batch, runs), median(stop, runs),
           (unsigned long long)res[runs - 1].disk_bytes, min_of(rps, runs), max_of(rps, runs),
           runs);
    fflush(stdout);
    return m;
}

static void print_durable(const char *bench, const char *store, const char *policy, size_t threads,
                          const struct durable_result *res, int runs, bool journal, double *rps_out,
                          double *p99_out)
{
    double rps[RUNS_MAX] = {0}, p50[RUNS_MAX] = {0}, p99[RUNS_MAX] = {0}, mx[RUNS_MAX] = {0},
           sp99[RUNS_MAX] = {0}, per_fsync[RUNS_MAX] = {0};
    for (int i = 0; i < runs; i++) {
        rps[i] = (double)res[i].records / res[i].seconds;
        p50[i] = res[i].lat.p50_us;
        p99[i] = res[i].lat.p99_us;
        mx[i] = res[i].lat.max_us;
        sp99[i] = (double)res[i].stats_p99_us;
        per_fsync[i] = res[i].fsyncs > 0 ? (double)res[i].records / (double)res[i].fsyncs : 0;
    }
    *rps_out = median(rps, runs);
    *p99_out = median(p99, runs);
    printf("{\"bench\":\"%s\",\"store\":\"%s\",\"durability\":\"%s\",\"threads\":%zu,"
           "\"records\":%llu,\"durable_records_per_s\":%.0f,\"wait_p50_us\":%.0f,"
           "\"wait_p99_us\":%.0f,\"wait_max_us\":%.0f,",
           bench, store, policy, threads, (unsigned long long)res[0].records, *rps_out,
           median(p50, runs), *p99_out, median(mx, runs));
    if (journal) {
        printf("\"stats_commit_wait_p99_us\":%.0f,\"records_per_fsync\":%.2f,", median(sp99, runs),
               median(per_fsync, runs));
    }
    printf("\"runs_records_per_s\":[%.0f,%.0f],\"median_of\":%d}\n", min_of(rps, runs),
           max_of(rps, runs), runs);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct records recs;
    struct cq_err err;
    char tmpl[4096], path[4300], jdir[4300], dbpath[4300];
    struct statfs sfs;

    parse_args(argc, argv, &cfg);
    const int runs = cfg.runs;

    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = true,
                                .level = CQ_LOG_WARN,
                                .max_bytes = 1 << 20,
                                .keep = 1,
                                .ring_lines = 0,
                                .clock = NULL};
    if (cq_log_open(&lo, &err) < 0) {
        die("cq_log_open", err.message);
    }
    if (sqlite3_threadsafe() == 0) {
        die("this SQLite is built without thread safety", NULL);
    }

    snprintf(tmpl, sizeof(tmpl), "%s/cq-bench-journal-XXXXXX", cfg.base);
    if (mkdtemp(tmpl) == NULL) {
        die("mkdtemp", strerror(errno));
    }
    memcpy(root_dir, tmpl, sizeof(root_dir));
    if (statfs(root_dir, &sfs) < 0) {
        die("statfs", strerror(errno));
    }
    const char *fs = fs_name((long)sfs.f_type);
    printf("{\"bench\":\"journal_setup\",\"dir\":\"%s\",\"fs\":\"%s\",\"fs_magic\":\"0x%lx\","
           "\"nproc\":%ld,\"sqlite\":\"%s\",\"records\":%zu,\"payload_bytes\":%d,"
           "\"mix\":\"%s\",\"threads\":%zu,\"runs\":%d}\n",
           root_dir, fs, (unsigned long)sfs.f_type, sysconf(_SC_NPROCESSORS_ONLN),
           sqlite3_libversion(), cfg.n, PAYLOAD_BYTES, cfg.notes ? "notes" : "trading", cfg.threads,
           runs);
    fflush(stdout);
    if (strcmp(fs, "tmpfs") == 0) {
        fprintf(stderr,
                "bench_journal: warning: %s is tmpfs: fdatasync is free there, the "
                "durable figures mean nothing (use -d on a disk)\n",
                root_dir);
    }

    records_make(&recs, cfg.n, cfg.notes);

    /* the device */
    snprintf(path, sizeof(path), "%s/fdatasync.dat", root_dir);
    struct lat dev_append = device_fdatasync(path, cfg.fsync_samples, false);
    struct lat dev_over = device_fdatasync(path, cfg.fsync_samples, true);
    printf("{\"bench\":\"journal_fdatasync\",\"store\":\"device\",\"fs\":\"%s\",\"write_bytes\":%d,"
           "\"mode\":\"append\",\"samples\":%zu,\"p50_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f}\n",
           fs, FSYNC_BLOCK, cfg.fsync_samples, dev_append.p50_us, dev_append.p99_us,
           dev_append.max_us);
    printf("{\"bench\":\"journal_fdatasync\",\"store\":\"device\",\"fs\":\"%s\",\"write_bytes\":%d,"
           "\"mode\":\"overwrite\",\"samples\":%zu,\"p50_us\":%.0f,\"p99_us\":%.0f,"
           "\"max_us\":%.0f}\n",
           fs, FSYNC_BLOCK, cfg.fsync_samples, dev_over.p50_us, dev_over.p99_us, dev_over.max_us);
    fflush(stdout);

    /* buffered append, alternating stores; the last run of each is kept
     * for replay and verify (the journal still running, writer idle) */
    struct buffered_result jb[RUNS_MAX], sb[RUNS_MAX], jd[RUNS_MAX];
    struct cq_journal *kept = NULL;
    snprintf(jdir, sizeof(jdir), "%s/journal-buffered", root_dir);
    snprintf(dbpath, sizeof(dbpath), "%s/sqlite-buffered.db", root_dir);
    for (int i = 0; i < runs; i++) {
        rm_tree(jdir);
        jb[i] = journal_buffered(&recs, jdir, false, i == runs - 1 ? &kept : NULL);
        sb[i] = sqlite_buffered(&recs, dbpath);
    }

    /* replay and verify over those N records (warm page cache) */
    double jr[RUNS_MAX] = {0}, jp[RUNS_MAX] = {0}, sr[RUNS_MAX] = {0}, jv[RUNS_MAX] = {0},
           sv[RUNS_MAX] = {0};
    uint64_t jbytes = 0, sbytes = 0;
    for (int i = 0; i < runs; i++) {
        jr[i] = (double)recs.n / journal_read(&recs, jdir);
        sr[i] = (double)recs.n / sqlite_read(&recs, dbpath);
        jp[i] = (double)recs.n / journal_replay(&recs, jdir);
    }
    for (int i = 0; i < runs; i++) {
        double js = journal_verify(&recs, jdir, &jbytes);
        double ss = sqlite_verify(dbpath, &sbytes);
        jv[i] = (double)jbytes / js / 1e6;
        sv[i] = (double)sbytes / ss / 1e6;
    }
    int64_t stop_t0 = now_ns();
    journal_close(kept);
    jb[runs - 1].stop_seconds = (double)(now_ns() - stop_t0) / 1e9;
    rm_tree(jdir);
    sq_remove(dbpath);

    double j_buf_rps, s_buf_rps;
    {
        double rps[RUNS_MAX] = {0}, stop[RUNS_MAX] = {0};
        for (int i = 0; i < runs; i++) {
            rps[i] = (double)recs.n / sb[i].seconds;
            stop[i] = sb[i].stop_seconds;
        }
        s_buf_rps = median(rps, runs);
        j_buf_rps = print_buffered("off_during_run", &recs, jb, runs);
        printf("{\"bench\":\"journal_buffered_append\",\"store\":\"sqlite\","
               "\"synchronous\":\"off\",\"journal_mode\":\"wal\",\"records\":%zu,"
               "\"records_per_transaction\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f,"
               "\"mb_per_s\":%.1f,\"checkpoint_close_seconds\":%.3f,\"disk_bytes\":%llu,"
               "\"runs_records_per_s\":[%.0f,%.0f],\"median_of\":%d}\n",
               recs.n, SQLITE_BATCH, (double)recs.n / s_buf_rps, s_buf_rps,
               s_buf_rps * (double)sb[runs - 1].disk_bytes / (double)recs.n / 1e6,
               median(stop, runs), (unsigned long long)sb[runs - 1].disk_bytes, min_of(rps, runs),
               max_of(rps, runs), runs);
        fflush(stdout);
    }

    double j_read_rps, j_replay_rps, s_read_rps, j_verify_mbps, s_verify_mbps;
    {
        j_read_rps = median(jr, runs);
        j_replay_rps = median(jp, runs);
        s_read_rps = median(sr, runs);
        j_verify_mbps = median(jv, runs);
        s_verify_mbps = median(sv, runs);
        printf("{\"bench\":\"journal_replay\",\"store\":\"coinquant\",\"call\":\"read_dir\","
               "\"records\":%zu,\"seconds\":%.3f,\"records_per_s\":%.0f,"
               "\"target_records_per_s\":5000000,\"target_met\":%s,\"cache\":\"warm\","
               "\"runs_records_per_s\":[%.0f,%.0f],\"median_of\":%d}\n",
               recs.n, (double)recs.n / j_read_rps, j_read_rps,
               j_read_rps >= 5e6 ? "true" : "false", min_of(jr, runs), max_of(jr, runs), runs);
        printf("{\"bench\":\"journal_replay\",\"store\":\"coinquant\","
               "\"call\":\"replay_dir_no_snapshot\",\"records\":%zu,\"seconds\":%.3f,"
               "\"records_per_s\":%.0f,\"cache\":\"warm\",\"runs_records_per_s\":[%.0f,%.0f],"
               "\"median_of\":%d}\n",
               recs.n, (double)recs.n / j_replay_rps, j_replay_rps, min_of(jp, runs),
               max_of(jp, runs), runs);
        printf(
            "{\"bench\":\"journal_replay\",\"store\":\"sqlite\",\"call\":\"select_order_by_seq\","
            "\"records\":%zu,\"seconds\":%.3f,\"records_per_s\":%.0f,\"cache\":\"warm\","
            "\"runs_records_per_s\":[%.0f,%.0f],\"median_of\":%d}\n",
            recs.n, (double)recs.n / s_read_rps, s_read_rps, min_of(sr, runs), max_of(sr, runs),
            runs);
        printf("{\"bench\":\"journal_verify\",\"store\":\"coinquant\",\"call\":\"verify_dir\","
               "\"checks\":\"crc32c,seq,hash_chain\",\"bytes\":%llu,\"mb_per_s\":%.0f,"
               "\"cache\":\"warm\",\"runs_mb_per_s\":[%.0f,%.0f],\"median_of\":%d}\n",
               (unsigned long long)jbytes, j_verify_mbps, min_of(jv, runs), max_of(jv, runs), runs);
        printf("{\"bench\":\"journal_verify\",\"store\":\"sqlite\",\"call\":\"integrity_check\","
               "\"checks\":\"btree_structure\",\"bytes\":%llu,\"mb_per_s\":%.0f,"
               "\"cache\":\"warm\",\"runs_mb_per_s\":[%.0f,%.0f],\"median_of\":%d}\n",
               (unsigned long long)sbytes, s_verify_mbps, min_of(sv, runs), max_of(sv, runs), runs);
        fflush(stdout);
    }

    /* the same, as shipped: snapshots every 100000 records on the writer
     * thread (journal only; SQLite has no equivalent) */
    double j_shipped_rps = 0;
    if (cfg.default_snapshots) {
        for (int i = 0; i < runs; i++) {
            rm_tree(jdir);
            jd[i] = journal_buffered(&recs, jdir, true, NULL);
        }
        rm_tree(jdir);
        j_shipped_rps = print_buffered("default_every_100000", &recs, jd, runs);
    }

    /* group commit: K threads waiting for durability per record */
    struct durable_result jg[RUNS_MAX], sg[RUNS_MAX];
    snprintf(jdir, sizeof(jdir), "%s/journal-durable", root_dir);
    snprintf(dbpath, sizeof(dbpath), "%s/sqlite-durable.db", root_dir);
    for (int i = 0; i < runs; i++) {
        jg[i] =
            journal_durable(&recs, jdir, CQ_JOURNAL_FSYNC_GROUP, cfg.threads, cfg.group_per_thread);
        sg[i] = sqlite_durable(&recs, dbpath, cfg.threads, cfg.group_per_thread, !cfg.shared_conn);
    }
    double j_grp_rps, j_grp_p99, s_grp_rps, s_grp_p99;
    print_durable("journal_group_commit", "coinquant", "fsync_group", cfg.threads, jg, runs, true,
                  &j_grp_rps, &j_grp_p99);
    print_durable("journal_group_commit", "sqlite",
                  cfg.shared_conn ? "synchronous_full_wal_shared_conn"
                                  : "synchronous_full_wal_conn_per_thread",
                  cfg.threads, sg, runs, false, &s_grp_rps, &s_grp_p99);

    /* per-record fsync: one thread, one record at a time */
    struct durable_result ja[RUNS_MAX], sa[RUNS_MAX];
    for (int i = 0; i < runs; i++) {
        ja[i] = journal_durable(&recs, jdir, CQ_JOURNAL_FSYNC_ALWAYS, 1, cfg.fsync_records);
        sa[i] = sqlite_durable(&recs, dbpath, 1, cfg.fsync_records, false);
    }
    double j_one_rps, j_one_p99, s_one_rps, s_one_p99;
    print_durable("journal_per_record_fsync", "coinquant", "fsync_always", 1, ja, runs, true,
                  &j_one_rps, &j_one_p99);
    print_durable("journal_per_record_fsync", "sqlite", "synchronous_full_wal", 1, sa, runs, false,
                  &s_one_rps, &s_one_p99);

    char shipped_ratio[32] = "null"; /* -S: not measured */
    const char *shipped_target = "null";
    if (cfg.default_snapshots) {
        /* bounded: "%.2f" of a ratio of two rates, far below 32 bytes */
        snprintf(shipped_ratio, sizeof(shipped_ratio), "%.2f", j_shipped_rps / s_buf_rps);
        shipped_target = j_shipped_rps >= 2e6 ? "true" : "false";
    }
    printf("{\"bench\":\"journal_summary\",\"fs\":\"%s\",\"nproc\":%ld,"
           "\"fdatasync_append_p50_us\":%.0f,\"fdatasync_append_p99_us\":%.0f,"
           "\"ratio_journal_over_sqlite\":{\"buffered_append_records_per_s\":%.2f,"
           "\"buffered_append_shipped_snapshots_records_per_s\":%s,"
           "\"group_commit_durable_records_per_s\":%.2f,\"group_commit_wait_p99\":%.2f,"
           "\"per_record_fsync_records_per_s\":%.2f,\"per_record_fsync_wait_p99\":%.2f,"
           "\"replay_records_per_s\":%.2f,\"verify_mb_per_s\":%.2f},"
           "\"targets\":{\"buffered_append_2m_per_s\":%s,"
           "\"buffered_append_2m_per_s_snapshots_off\":%s,\"replay_5m_per_s\":%s},"
           "\"median_of\":%d}\n",
           fs, sysconf(_SC_NPROCESSORS_ONLN), dev_append.p50_us, dev_append.p99_us,
           j_buf_rps / s_buf_rps, shipped_ratio, j_grp_rps / s_grp_rps, j_grp_p99 / s_grp_p99,
           j_one_rps / s_one_rps, j_one_p99 / s_one_p99, j_read_rps / s_read_rps,
           j_verify_mbps / s_verify_mbps, shipped_target, j_buf_rps >= 2e6 ? "true" : "false",
           j_read_rps >= 5e6 ? "true" : "false", runs);
    fflush(stdout);

    rm_tree(root_dir);
    root_dir[0] = '\0';
    records_free(&recs);
    cq_log_close();
    return 0;
}
