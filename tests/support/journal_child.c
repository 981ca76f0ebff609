/*
 * journal_child.c — the process the journal crash campaign kills
 * (tests/unit/test_journal_crash.c, scripts/journal-crash-soak).
 *
 *   journal_child DIR POLICY N_RECORDS [SEED] [KEY=VALUE ...]
 *   journal_child --check DIR
 *
 * Opens the journal in DIR (cq_journal_open + cq_journal_start) with the
 * fsync POLICY (always|group|off), appends N_RECORDS records and exits after
 * cq_journal_stop. Records are appended in batches of 1..batch; after
 * cq_journal_wait_durable on the last record of a batch succeeds, the child
 * writes the acknowledgement "durable <seq>\n" to stdout with write(2) (one
 * line per write: atomic on a pipe, so a kill never leaves half a line that
 * parses). "durable N" promises every seq <= N.
 *
 * Other lines on stdout (the test reads them too):
 *   "recovered <last_seq> <snapshot_seq> <torn 0|1> <corrupt_segments>"
 *       after cq_journal_open, before the writer starts: the first record
 *       this child appends is last_seq + 1;
 *   "corrupt <first_corruption>"   recovery found corruption (exit 4);
 *   "done <last_seq>"              after a clean cq_journal_stop.
 *
 * Every record is a pure function of (SEED, seq): type, scope, payload size
 * (0..~20 KiB, mostly small) and payload bytes, made by jc_make() below. The
 * payload is JSON that names its seq and SEED and ends with an FNV-1a digest
 * of the bytes before it, so a reader can check a record on its own
 * (jc_check) and against a regeneration.
 *
 * Options (KEY=VALUE, all optional):
 *   seg_bytes=N     segment_max_bytes (default 65536: segments roll often)
 *   snap_every=N    snapshot_every_records (default 500)
 *   snap_ms=N       snapshot_every_ms (default 3600000)
 *   keep_snaps=N    keep_snapshots (default 2: retention prunes segments)
 *   verify_ms=N     verify_every_ms (default 0 = off)
 *   batch=N         largest batch before a wait (default 8)
 *   snap_request=N  cq_journal_request_snapshot every N batches (0 = never)
 *   sleep_us=N      pause between batches (default 0)
 *
 * --check reads DIR offline (cq_journal_read_dir, no recovery, nothing
 * written) and checks every record with jc_check: "checked <n> <first>
 * <last>" and exit 0, or the first problem on stderr and exit 9. For
 * reproducing a campaign failure by hand on the directory it keeps.
 *
 * Exit codes: 0 done, 2 usage, 3 open/start failed, 4 recovery found
 * corruption, 5 append failed, 6 wait_durable failed, 7 stop failed,
 * 8 the journal assigned an unexpected seq, 9 --check found a problem.
 *
 * The test includes this file with JOURNAL_CHILD_NO_MAIN defined to share
 * the generator (one definition of the record contents).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cq/journal.h"
#include "cq/log.h"

/* ---- the record generator (shared with the test) --------------------------------- */

#define JC_PAYLOAD_MAX 20480
#define JC_SUM_SUFFIX ",\"sum\":\""
#define JC_SUFFIX_BYTES (sizeof(JC_SUM_SUFFIX) - 1 + 16 + 2) /* ,"sum":"<16 hex>"} */

struct jc_record {
    uint16_t type;
    char scope[CQ_JOURNAL_SCOPE_MAX + 1];
    size_t payload_len;
    char payload[JC_PAYLOAD_MAX];
};

/* Never QUARANTINE/UNQUARANTINE: the campaign asserts that nothing is
 * quarantined after recovery. */
static const uint16_t jc_types[] = {
    CQ_REC_CONFIG_LOADED, CQ_REC_MARKET_GAP, CQ_REC_SIGNAL_EMITTED, CQ_REC_SIGNAL_BLOCKED,
    CQ_REC_ORDER_INTENT,  CQ_REC_ORDER_ACK,  CQ_REC_ORDER_FILL,     CQ_REC_ORDER_REJECT,
    CQ_REC_RISK_DECISION, CQ_REC_NOTE,
};
static const char *const jc_scopes[] = {
    "global", "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT",
};

static uint64_t jc_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/* splitmix64 */
static uint64_t jc_rand(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15ULL;
    return jc_mix(*state);
}

static uint64_t jc_fnv1a(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001B3ULL;
    }
    return h;
}

/* Length of the "pad" string: 70 % small, 25 % up to 4 KiB, 5 % up to ~20 KiB. */
static size_t jc_pad_len(uint64_t *rng)
{
    uint64_t k = jc_rand(rng) % 100;
    if (k < 70) {
        return (size_t)(jc_rand(rng) % 160);
    }
    if (k < 95) {
        return 160 + (size_t)(jc_rand(rng) % 3900);
    }
    return 4096 + (size_t)(jc_rand(rng) % 16000);
}

/* The record number seq of a child started with seed. */
static void jc_make(uint64_t seed, uint64_t seq, struct jc_record *out)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t rng = jc_mix(seed ^ jc_mix(seq + 0x51ED2701ULL));
    out->type = jc_types[jc_rand(&rng) % CQ_ARRAY_LEN(jc_types)];
    cq_strlcpy(out->scope, jc_scopes[jc_rand(&rng) % CQ_ARRAY_LEN(jc_scopes)], sizeof(out->scope));
    size_t pad = jc_pad_len(&rng);
    int n = snprintf(out->payload, sizeof(out->payload),
                     "{\"seq\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"client_order_id\":\"c%04" PRIx64
                     "-%" PRIu64 "\",\"pad\":\"",
                     seq, seed, seed & 0xFFFFu, seq / 3);
    size_t pos = (size_t)n;
    for (size_t i = 0; i < pad; i++) {
        out->payload[pos++] = alphabet[jc_rand(&rng) % (sizeof(alphabet) - 1)];
    }
    out->payload[pos++] = '"';
    uint64_t sum = jc_fnv1a(out->payload, pos);
    n = snprintf(out->payload + pos, sizeof(out->payload) - pos, JC_SUM_SUFFIX "%016" PRIx64 "\"}",
                 sum);
    out->payload_len = pos + (size_t)n;
}

/* Check a record read back: its payload names rec->seq, its digest matches,
 * and it is byte-identical to what jc_make gives for (its seed, seq).
 * *seed gets the seed it names. false and why on any mismatch. */
static bool jc_check(const struct cq_journal_record *rec, uint64_t *seed, char *why, size_t why_len)
{
    static struct jc_record want; /* large: not on the stack; callers are single-threaded */
    char head[128];
    uint64_t seq = 0;
    if (rec->payload_len < JC_SUFFIX_BYTES + 10 || rec->payload_len > JC_PAYLOAD_MAX) {
        snprintf(why, why_len, "seq %" PRIu64 ": payload length %zu impossible", rec->seq,
                 rec->payload_len);
        return false;
    }
    const char *p = rec->payload;
    size_t body = rec->payload_len - JC_SUFFIX_BYTES;
    if (memcmp(p + body, JC_SUM_SUFFIX, sizeof(JC_SUM_SUFFIX) - 1) != 0) {
        snprintf(why, why_len, "seq %" PRIu64 ": payload has no sum field", rec->seq);
        return false;
    }
    char hex[17];
    memcpy(hex, p + body + sizeof(JC_SUM_SUFFIX) - 1, 16);
    hex[16] = '\0';
    char *end = NULL;
    errno = 0;
    uint64_t sum = strtoull(hex, &end, 16);
    if (errno != 0 || end != hex + 16 || sum != jc_fnv1a(p, body)) {
        snprintf(why, why_len, "seq %" PRIu64 ": payload checksum mismatch", rec->seq);
        return false;
    }
    size_t hl = rec->payload_len < sizeof(head) - 1 ? rec->payload_len : sizeof(head) - 1;
    memcpy(head, p, hl);
    head[hl] = '\0';
    if (sscanf(head, "{\"seq\":%" SCNu64 ",\"seed\":%" SCNu64 ",", &seq, seed) != 2) {
        snprintf(why, why_len, "seq %" PRIu64 ": payload does not name its seq and seed", rec->seq);
        return false;
    }
    if (seq != rec->seq) {
        snprintf(why, why_len, "record seq %" PRIu64 " carries the payload of seq %" PRIu64,
                 rec->seq, seq);
        return false;
    }
    jc_make(*seed, seq, &want);
    if (want.type != rec->type || strcmp(want.scope, rec->scope) != 0 ||
        want.payload_len != rec->payload_len ||
        memcmp(want.payload, rec->payload, rec->payload_len) != 0) {
        snprintf(why, why_len,
                 "seq %" PRIu64 ": record differs from the one appended (type %u/%u scope "
                 "%s/%s len %zu/%zu)",
                 rec->seq, (unsigned)rec->type, (unsigned)want.type, rec->scope, want.scope,
                 rec->payload_len, want.payload_len);
        return false;
    }
    return true;
}

#ifndef JOURNAL_CHILD_NO_MAIN

/* ---- the child -------------------------------------------------------------------- */

enum {
    EXIT_DONE = 0,
    EXIT_USAGE = 2,
    EXIT_OPEN = 3,
    EXIT_CORRUPT = 4,
    EXIT_APPEND = 5,
    EXIT_WAIT = 6,
    EXIT_STOP = 7,
    EXIT_SEQ = 8,
    EXIT_CHECK = 9,
};

#define WAIT_DURABLE_MS 30000
#define FULL_RETRIES 10000

struct child_opts {
    uint64_t seg_bytes, snap_every, snap_ms, keep_snaps, verify_ms, batch, snap_request, sleep_us;
};

/* One line to stdout with a single write(2) (<= PIPE_BUF: atomic on a pipe). */
static void say(const char *fmt, ...) CQ_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDOUT_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        off += (size_t)w;
    }
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-') {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static bool parse_option(const char *arg, struct child_opts *o)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"seg_bytes", offsetof(struct child_opts, seg_bytes)},
        {"snap_every", offsetof(struct child_opts, snap_every)},
        {"snap_ms", offsetof(struct child_opts, snap_ms)},
        {"keep_snaps", offsetof(struct child_opts, keep_snaps)},
        {"verify_ms", offsetof(struct child_opts, verify_ms)},
        {"batch", offsetof(struct child_opts, batch)},
        {"snap_request", offsetof(struct child_opts, snap_request)},
        {"sleep_us", offsetof(struct child_opts, sleep_us)},
    };
    const char *eq = strchr(arg, '=');
    if (eq == NULL) {
        return false;
    }
    for (size_t i = 0; i < CQ_ARRAY_LEN(keys); i++) {
        if (strlen(keys[i].key) == (size_t)(eq - arg) &&
            memcmp(keys[i].key, arg, (size_t)(eq - arg)) == 0) {
            return parse_u64(eq + 1, (uint64_t *)(void *)((char *)o + keys[i].off));
        }
    }
    return false;
}

static int usage(void)
{
    fprintf(stderr, "usage: journal_child DIR always|group|off N_RECORDS [SEED] [KEY=VALUE ...]\n"
                    "keys: seg_bytes snap_every snap_ms keep_snaps verify_ms batch "
                    "snap_request sleep_us\n");
    return EXIT_USAGE;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Append one record, retrying a full queue (bounded). */
static int append_one(struct cq_journal *j, const struct jc_record *r, uint64_t *seq)
{
    int rc = -CQ_EFULL;
    for (int tries = 0; tries < FULL_RETRIES && rc == -CQ_EFULL; tries++) {
        rc = cq_journal_append(j, r->type, r->scope, r->payload, r->payload_len, seq);
        if (rc == -CQ_EFULL) {
            sleep_us(1000);
        }
    }
    return rc;
}

static int run(struct cq_journal *j, uint64_t first_seq, uint64_t n_records, uint64_t seed,
               const struct child_opts *o)
{
    static struct jc_record rec;
    uint64_t rng = jc_mix(seed ^ 0xC0FFEEULL);
    uint64_t next = first_seq, end = first_seq + n_records, batches = 0;
    while (next < end) {
        uint64_t b = 1 + jc_rand(&rng) % (o->batch > 0 ? o->batch : 1);
        if (b > end - next) {
            b = end - next;
        }
        uint64_t seq = 0;
        for (uint64_t i = 0; i < b; i++, next++) {
            jc_make(seed, next, &rec);
            int rc = append_one(j, &rec, &seq);
            if (rc < 0) {
                fprintf(stderr, "journal_child: append seq %" PRIu64 ": %s\n", next,
                        cq_strerror(rc));
                return EXIT_APPEND;
            }
            if (seq != next) {
                fprintf(stderr,
                        "journal_child: append returned seq %" PRIu64 ", expected %" PRIu64 "\n",
                        seq, next);
                return EXIT_SEQ;
            }
        }
        int rc = cq_journal_wait_durable(j, seq, WAIT_DURABLE_MS);
        if (rc < 0) {
            fprintf(stderr, "journal_child: wait_durable %" PRIu64 ": %s\n", seq, cq_strerror(rc));
            return EXIT_WAIT;
        }
        say("durable %" PRIu64 "\n", seq);
        batches++;
        if (o->snap_request > 0 && batches % o->snap_request == 0) {
            cq_journal_request_snapshot(j);
        }
        if (o->sleep_us > 0) {
            sleep_us(o->sleep_us);
        }
    }
    return EXIT_DONE;
}

struct check_ctx {
    uint64_t n, first, last;
    char why[512];
};

static int check_one(void *vctx, const struct cq_journal_record *rec)
{
    struct check_ctx *c = vctx;
    uint64_t seed = 0;
    if (c->n > 0 && rec->seq != c->last + 1) {
        snprintf(c->why, sizeof(c->why), "seq %" PRIu64 " follows %" PRIu64, rec->seq, c->last);
        return 1;
    }
    if (!jc_check(rec, &seed, c->why, sizeof(c->why))) {
        return 1;
    }
    if (c->n == 0) {
        c->first = rec->seq;
    }
    c->n++;
    c->last = rec->seq;
    return 0;
}

static int check_dir(const char *dir)
{
    struct check_ctx c = {0};
    struct cq_err err;
    cq_err_clear(&err);
    int rc = cq_journal_read_dir(dir, NULL, 0, check_one, &c, &err);
    if (rc < 0) {
        fprintf(stderr, "journal_child: read %s: %s\n", dir, err.message);
        return EXIT_CHECK;
    }
    if (c.why[0] != '\0') {
        fprintf(stderr, "journal_child: %s\n", c.why);
        return EXIT_CHECK;
    }
    say("checked %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", c.n, c.first, c.last);
    return EXIT_DONE;
}

int main(int argc, char **argv)
{
    struct child_opts o = {
        .seg_bytes = 65536,
        .snap_every = 500,
        .snap_ms = 3600000,
        .keep_snaps = 2,
        .verify_ms = 0,
        .batch = 8,
        .snap_request = 0,
        .sleep_us = 0,
    };
    uint64_t n_records = 0, seed = 1;
    enum cq_journal_fsync policy;
    if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        return check_dir(argv[2]);
    }
    if (argc < 4) {
        return usage();
    }
    if (strcmp(argv[2], "always") == 0) {
        policy = CQ_JOURNAL_FSYNC_ALWAYS;
    } else if (strcmp(argv[2], "group") == 0) {
        policy = CQ_JOURNAL_FSYNC_GROUP;
    } else if (strcmp(argv[2], "off") == 0) {
        policy = CQ_JOURNAL_FSYNC_OFF;
    } else {
        return usage();
    }
    if (!parse_u64(argv[3], &n_records)) {
        return usage();
    }
    int argi = 4;
    if (argc > 4 && strchr(argv[4], '=') == NULL) {
        if (!parse_u64(argv[4], &seed)) {
            return usage();
        }
        argi = 5;
    }
    for (; argi < argc; argi++) {
        if (!parse_option(argv[argi], &o)) {
            return usage();
        }
    }

    struct cq_err err;
    cq_err_clear(&err);
    struct cq_log_options lo = {.dir = NULL, .to_stderr = true, .level = CQ_LOG_WARN};
    if (cq_log_open(&lo, &err) < 0) {
        fprintf(stderr, "journal_child: log: %s\n", err.message);
        return EXIT_OPEN;
    }

    struct cq_journal_options jo = {
        .dir = argv[1],
        .fsync = policy,
        .segment_max_bytes = o.seg_bytes,
        .snapshot_every_records = o.snap_every,
        .snapshot_every_ms = (int64_t)o.snap_ms,
        .keep_snapshots = (unsigned)o.keep_snaps,
        .verify_every_ms = (int64_t)o.verify_ms,
    };
    struct cq_journal_recovery rec;
    memset(&rec, 0, sizeof(rec));
    struct cq_journal *j = cq_journal_open(&jo, &rec, &err);
    if (j == NULL) {
        fprintf(stderr, "journal_child: open %s: %s (%s)\n", argv[1], err.message,
                cq_strerror(err.code));
        cq_log_close();
        return EXIT_OPEN;
    }
    say("recovered %" PRIu64 " %" PRIu64 " %d %u\n", rec.last_seq, rec.snapshot_seq,
        rec.torn_tail_truncated ? 1 : 0, (unsigned)rec.corrupt_segments);
    if (rec.corrupt_segments > 0 || rec.n_quarantined > 0) {
        say("corrupt %s\n", rec.first_corruption);
        cq_journal_free(j);
        cq_log_close();
        return EXIT_CORRUPT;
    }
    if (cq_journal_start(j, &err) < 0) {
        fprintf(stderr, "journal_child: start: %s\n", err.message);
        cq_journal_free(j);
        cq_log_close();
        return EXIT_OPEN;
    }

    int code = run(j, rec.last_seq + 1, n_records, seed, &o);

    cq_err_clear(&err);
    if (cq_journal_stop(j, &err) < 0) {
        fprintf(stderr, "journal_child: stop: %s\n", err.message);
        if (code == EXIT_DONE) {
            code = EXIT_STOP;
        }
    }
    if (code == EXIT_DONE) {
        struct cq_journal_stats st;
        cq_journal_get_stats(j, &st);
        say("done %" PRIu64 "\n", st.last_seq);
    }
    cq_journal_free(j);
    cq_log_close();
    return code;
}

#endif /* JOURNAL_CHILD_NO_MAIN */
