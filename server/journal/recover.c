/*
 * recover.c — what cq_journal_open does to a directory before appending.
 * Runs on the opener's thread (the supervisor) before the writer exists.
 *
 *  1. Leftover *.tmp files (a crash between writing and renaming a snapshot
 *     or a rewritten segment) are removed: the files they would have
 *     replaced are intact.
 *  2. Replay (verify.c): the newest usable snapshot, then every record after
 *     it, each checked (length, CRC32C, seq, hash chain anchored to the
 *     snapshot's chain digest). Snapshots that cannot be used are renamed
 *     <name>.invalid (kept as evidence, never pruned, never read again).
 *  3. A torn tail (format.c explains the rule) is cut off: ftruncate to the
 *     end of the last good record (or the partial segment file is removed),
 *     fdatasync, logged as journal_torn_tail_truncated. Nothing in it was
 *     acknowledged.
 *  4. Corruption anywhere else in what was replayed is never skipped
 *     ("the cut"):
 *       - the affected scopes: the bad record's scope if it is readable,
 *         plus the scope of every intact record after it (they are cut off
 *         too); "global" when a scope cannot be read, when records after the
 *         bad one are missing (a seq gap), when the problem is a segment
 *         header or a missing segment, or when more than 8 scopes are hit;
 *       - a debug bundle DATA_DIR/bundles/journal-corrupt-<UTC time>/ gets
 *         report.json (the verify report and what was done), a copy of
 *         every cut segment (the evidence: nothing is deleted) and, last,
 *         log.jsonl (the log ring, which by then holds the journal_corrupt
 *         line);
 *       - the segment holding the last good record L is rewritten
 *         atomically (tmp, fdatasync, rename, fsync dir) as: its records up
 *         to L, then one QUARANTINE record per affected scope (seq L+1…,
 *         payload {"reason":"journal_corrupt","detail","bundle",
 *         "cut_from_seq"}), and the later segments and snapshots newer than
 *         L are moved into the bundle;
 *       - health says journal_corrupt with the segment and offset.
 *     The journal keeps one verifiable chain and goes on appending after
 *     the quarantine records. The quarantine itself is a record, so it
 *     survives restarts and replays identically until an operator appends
 *     UNQUARANTINE. Order matters for a crash in the middle: the bundle
 *     copy is made before anything changes, and the quarantine records
 *     become durable before the later segments are moved away, so a crash
 *     leaves either the corruption (found again) or a header mismatch at
 *     the next segment (found again, quarantining "global"): never a clean
 *     journal without its quarantine.
 *  5. Records missing for other reasons — the oldest segments are gone and
 *     no snapshot covers them, or a checksum-valid snapshot is ahead of the
 *     last record (segments lost) — quarantine "global" the same way,
 *     without a cut (the QUARANTINE record is appended).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cq/buf.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "journal-int.h"

#define SVC "journal"
#define SCOPES_MAX 8
#define CUT_SEQS_MAX ((size_t)1 << 20)
/* the farthest past the last good record a damaged record's seq field is
 * believed (seqs skipped for it are harmless, a wild value is not) */
#define DAMAGED_SEQ_JUMP_MAX ((uint64_t)1 << 32)

struct scopeset {
    char names[SCOPES_MAX][CQ_JOURNAL_SCOPE_MAX + 1];
    size_t n;
    bool global;
};

static void scopes_add(struct scopeset *s, const char *name, size_t len)
{
    if (len > CQ_JOURNAL_SCOPE_MAX) {
        s->global = true;
        return;
    }
    if (len == 6 && memcmp(name, "global", 6) == 0) {
        s->global = true;
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strlen(s->names[i]) == len && memcmp(s->names[i], name, len) == 0) {
            return;
        }
    }
    if (s->n == SCOPES_MAX) {
        s->global = true;
        return;
    }
    memcpy(s->names[s->n], name, len);
    s->names[s->n][len] = '\0';
    s->n++;
}

void cq_journal__recovered_fini(struct cq_journal__recovered *r)
{
    cq_journal__state_free(r->state);
    free(r->segs);
    memset(r, 0, sizeof(*r));
}

/* ---- the affected scopes --------------------------------------------------------------- */

struct seqlist {
    uint64_t *v;
    size_t n, cap;
    bool overflow;
};

static void seqs_add(struct seqlist *l, uint64_t seq)
{
    if (l->overflow) {
        return;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap == 0 ? 256 : l->cap * 2;
        uint64_t *p = ncap > CUT_SEQS_MAX ? NULL : realloc(l->v, ncap * sizeof(*p));
        if (p == NULL) {
            l->overflow = true;
            return;
        }
        l->v = p;
        l->cap = ncap;
    }
    l->v[l->n++] = seq;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Walk a segment from offset `from` collecting every intact record (CRC
 * good) with seq > last_good; bytes that do not parse are skipped one at a
 * time (resync). */
static int scan_rest(const char *dir, const struct cq_journal_fs *fs, uint32_t segno, uint64_t from,
                     uint64_t last_good, struct scopeset *scopes, struct seqlist *seqs,
                     uint64_t *max_seq, struct cq_err *err)
{
    struct cq_journal__seg_reader r;
    int rc = cq_journal__reader_open(&r, dir, fs, segno, err);
    if (rc < 0) {
        return rc;
    }
    uint64_t p = from;
    for (;;) {
        ssize_t n = cq_journal__reader_fill(&r, p, CQJ_REC_HDR_BYTES);
        if (n < 0) {
            rc = cq_err_set(err, CQ_EIO, errno, NULL, "reading segment %u", segno);
            break;
        }
        if ((size_t)n < CQJ_REC_HDR_BYTES) {
            break;
        }
        const uint8_t *b = r.buf + (p - r.buf_off);
        uint32_t len = cqj_get32(b + CQJ_R_LEN);
        uint64_t seq = cqj_get64(b + CQJ_R_SEQ);
        bool ok = false;
        if (len >= CQJ_REC_MIN_BYTES && len <= CQJ_REC_MAX_BYTES && seq > 0) {
            n = cq_journal__reader_fill(&r, p, len);
            if (n < 0) {
                rc = cq_err_set(err, CQ_EIO, errno, NULL, "reading segment %u", segno);
                break;
            }
            b = r.buf + (p - r.buf_off);
            ok = (size_t)n == len && cq_journal__crc32c(0, b, len - 4) == cqj_get32(b + len - 4) &&
                 b[CQJ_R_SCOPE_LEN] <= CQ_JOURNAL_SCOPE_MAX;
        }
        if (!ok) {
            p++;
            continue;
        }
        if (seq > last_good && scopes != NULL) {
            scopes_add(scopes, (const char *)b + CQJ_REC_HDR_BYTES, b[CQJ_R_SCOPE_LEN]);
            seqs_add(seqs, seq);
        }
        if (max_seq != NULL && seq > *max_seq) {
            *max_seq = seq;
        }
        p += len;
    }
    cq_journal__reader_close(&r);
    return rc;
}

static int affected_scopes(const char *dir, const struct cq_journal_fs *fs,
                           const struct cq_journal__dirlist *l,
                           const struct cq_journal__problem *prob, uint64_t last_good,
                           struct scopeset *scopes, struct cq_err *err)
{
    memset(scopes, 0, sizeof(*scopes));
    if (prob->offset < CQJ_SEG_HDR_BYTES) {
        scopes->global = true; /* a segment header or a whole segment: no scope to read */
        return 0;
    }
    struct seqlist seqs = {0};
    struct cq_journal__seg_reader r;
    int rc = cq_journal__reader_open(&r, dir, fs, prob->segment, err);
    if (rc < 0) {
        return rc;
    }
    uint64_t x = prob->offset, next = x + 1;
    ssize_t n = cq_journal__reader_fill(&r, x, CQJ_REC_HDR_BYTES + CQ_JOURNAL_SCOPE_MAX);
    if (n < 0) {
        cq_journal__reader_close(&r);
        return cq_err_set(err, CQ_EIO, errno, NULL, "reading segment %u", prob->segment);
    }
    const uint8_t *b = r.buf + (x - r.buf_off);
    if ((size_t)n >= CQJ_REC_HDR_BYTES && (size_t)n >= CQJ_REC_HDR_BYTES + b[CQJ_R_SCOPE_LEN] &&
        cq_journal__scope_readable(b + CQJ_REC_HDR_BYTES, b[CQJ_R_SCOPE_LEN])) {
        uint64_t seq = cqj_get64(b + CQJ_R_SEQ);
        uint32_t len = cqj_get32(b + CQJ_R_LEN);
        scopes_add(scopes, (const char *)b + CQJ_REC_HDR_BYTES, b[CQJ_R_SCOPE_LEN]);
        if (seq == last_good + 1 || prob->kind == CQJ_P_SEQ || prob->kind == CQJ_P_CHAIN) {
            seqs_add(&seqs, seq);
        }
        if (len >= CQJ_REC_MIN_BYTES && len <= CQJ_REC_MAX_BYTES) {
            next = x + len;
        }
    } else {
        scopes->global = true;
    }
    cq_journal__reader_close(&r);
    rc = scan_rest(dir, fs, prob->segment, next, last_good, scopes, &seqs, NULL, err);
    for (size_t i = 0; rc == 0 && i < l->n_segs; i++) {
        if (l->segs[i] > prob->segment) {
            rc = scan_rest(dir, fs, l->segs[i], CQJ_SEG_HDR_BYTES, last_good, scopes, &seqs, NULL,
                           err);
        }
    }
    if (rc == 0) {
        /* every seq from last_good + 1 to the highest seen must be accounted for */
        if (seqs.overflow) {
            scopes->global = true;
        } else if (seqs.n > 0) {
            qsort(seqs.v, seqs.n, sizeof(uint64_t), cmp_u64);
            uint64_t expect = last_good + 1;
            for (size_t i = 0; i < seqs.n; i++) {
                if (seqs.v[i] > expect) {
                    scopes->global = true;
                    break;
                }
                if (seqs.v[i] == expect) {
                    expect++;
                }
            }
        } else if (prob->kind != CQJ_P_CRC && prob->kind != CQJ_P_LENGTH &&
                   prob->kind != CQJ_P_FIELDS && prob->kind != CQJ_P_PARTIAL) {
            scopes->global = true;
        }
    }
    free(seqs.v);
    return rc;
}

/* The highest seq any record that checks out (CRC) carries in segment
 * from_segno and the ones after it (every byte, the headers' included: a
 * damaged header hides nothing), and any snapshot's name carries, raised
 * into *max_seq. Recovery's quarantine records come after it, so a seq that
 * any record on disk ever carried — acknowledged or not, cut off into the
 * bundle or not — is never given to another record. */
static int highest_seq_seen(const char *dir, const struct cq_journal_fs *fs,
                            const struct cq_journal__dirlist *l, uint32_t from_segno,
                            uint64_t *max_seq, struct cq_err *err)
{
    for (size_t i = 0; i < l->n_segs; i++) {
        if (l->segs[i] >= from_segno) {
            int rc = scan_rest(dir, fs, l->segs[i], 0, UINT64_MAX, NULL, NULL, max_seq, err);
            if (rc < 0) {
                return rc;
            }
        }
    }
    for (size_t i = 0; i < l->n_snaps; i++) {
        if (l->snaps[i] > *max_seq) {
            *max_seq = l->snaps[i];
        }
    }
    return 0;
}

/* The seq field of the (damaged) record at prob's offset; 0 when fewer
 * than a record header's bytes are there. */
static int damaged_seq(const char *dir, const struct cq_journal_fs *fs,
                       const struct cq_journal__problem *prob, uint64_t *seq, struct cq_err *err)
{
    struct cq_journal__seg_reader r;
    int rc = cq_journal__reader_open(&r, dir, fs, prob->segment, err);
    if (rc < 0) {
        return rc;
    }
    ssize_t n = cq_journal__reader_fill(&r, prob->offset, CQJ_REC_HDR_BYTES);
    if (n < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, NULL, "reading segment %u", prob->segment);
    } else if ((size_t)n >= CQJ_REC_HDR_BYTES) {
        *seq = cqj_get64(r.buf + (prob->offset - r.buf_off) + CQJ_R_SEQ);
    }
    cq_journal__reader_close(&r);
    return rc;
}

/* ---- writing records during recovery ------------------------------------------------------- */

struct recbuf {
    uint8_t *bytes;
    size_t len;
    uint64_t first_seq, last_seq, last_digest;
};

/* One QUARANTINE record per scope, chained after (last_seq, last_digest).
 * The first one gets seq first_seq: when that is beyond last_seq + 1 (seqs
 * seen in records that were cut off, or in snapshots ahead of the records),
 * it carries the SEQ_SKIP flag and the payload says which seqs it skips. */
static int build_quarantine(const struct scopeset *scopes, const char *detail, const char *bundle,
                            uint64_t cut_from_seq, uint64_t last_seq, uint64_t last_digest,
                            uint64_t first_seq, int64_t ts_us, struct recbuf *out)
{
    memset(out, 0, sizeof(*out));
    json_t *p = json_object();
    json_object_set_new(p, "reason", json_string("journal_corrupt"));
    json_object_set_new(p, "detail", json_string(detail));
    if (bundle != NULL && bundle[0] != '\0') {
        json_object_set_new(p, "bundle", json_string(bundle));
    }
    if (cut_from_seq > 0) {
        json_object_set_new(p, "cut_from_seq", json_integer((json_int_t)cut_from_seq));
    }
    if (first_seq <= last_seq) {
        first_seq = last_seq + 1;
    }
    if (first_seq > last_seq + 1) {
        json_object_set_new(
            p, "skipped_seqs",
            json_pack("[I,I]", (json_int_t)(last_seq + 1), (json_int_t)(first_seq - 1)));
    }
    char *payload = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(p);
    if (payload == NULL) {
        return -CQ_ENOMEM;
    }
    size_t plen = strlen(payload);
    if (plen > CQ_JOURNAL_PAYLOAD_MAX) {
        plen = CQ_JOURNAL_PAYLOAD_MAX; /* cannot happen: detail and bundle are bounded */
    }
    size_t n = scopes->global ? 1 : scopes->n;
    out->bytes = malloc(n * cq_journal__rec_size(CQ_JOURNAL_SCOPE_MAX, plen));
    if (out->bytes == NULL) {
        free(payload);
        return -CQ_ENOMEM;
    }
    out->first_seq = first_seq;
    out->last_seq = first_seq - 1;
    out->last_digest = last_digest;
    for (size_t i = 0; i < n; i++) {
        const char *scope = scopes->global ? "global" : scopes->names[i];
        uint8_t *rec = out->bytes + out->len;
        out->last_seq++;
        cq_journal__rec_encode(rec, CQ_REC_QUARANTINE, scope, strlen(scope), out->last_seq,
                               cq_journal__ts_clamp(ts_us), payload, plen);
        if (i == 0 && first_seq > last_seq + 1) {
            rec[CQJ_R_FLAGS] = CQJ_REC_FLAG_SEQ_SKIP;
        }
        out->last_digest = cq_journal__rec_seal(rec, out->last_digest);
        out->len += cq_journal__rec_size(strlen(scope), plen);
    }
    free(payload);
    return 0;
}

static int apply_recbuf(struct cq_journal__state *state, const struct recbuf *rb)
{
    for (size_t off = 0; off < rb->len;) {
        const uint8_t *b = rb->bytes + off;
        struct cq_journal_record v;
        char scope[CQ_JOURNAL_SCOPE_MAX + 1];
        cq_journal__record_view(b, scope, &v);
        int rc = cq_journal__state_apply(state, &v);
        if (rc < 0) {
            return rc;
        }
        off += cqj_get32(b + CQJ_R_LEN);
    }
    return 0;
}

/* Rewrite segment segno atomically as header + old bytes [40, keep_end) of
 * `old` (NULL: none) + records. */
static int rewrite_segment(const char *dir, const struct cq_journal_fs *fs, uint32_t segno,
                           const struct cq_journal__seg_header *h, const char *old,
                           uint64_t keep_end, const struct recbuf *rb, struct cq_err *err)
{
    char path[CQJ_PATH_MAX], tmp[CQJ_PATH_MAX + 8];
    uint8_t hdr[CQJ_SEG_HDR_BYTES];
    cq_journal__seg_path(path, sizeof(path), dir, segno);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    cq_journal__seg_header_encode(hdr, h);
    int fd = fs->open(fs->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC | CQJ_O_SAFE, 0640);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check free space", "cannot create %s", tmp);
    }
    int rc = 0;
    if (cq_journal__write_all(fs, fd, hdr, sizeof(hdr)) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check free space", "cannot write %s", tmp);
    }
    if (rc == 0 && old != NULL && keep_end > CQJ_SEG_HDR_BYTES) {
        int in = fs->open(fs->ctx, old, O_RDONLY | CQJ_O_SAFE, 0);
        uint8_t *buf = malloc(1 << 20);
        if (in < 0 || buf == NULL) {
            rc = cq_err_set(err, in < 0 ? CQ_EIO : CQ_ENOMEM, in < 0 ? errno : 0, NULL,
                            "cannot read %s", old);
        }
        for (uint64_t off = CQJ_SEG_HDR_BYTES; rc == 0 && off < keep_end;) {
            size_t want = keep_end - off < (1u << 20) ? (size_t)(keep_end - off) : (1u << 20);
            ssize_t n = fs->pread(fs->ctx, in, buf, want, (off_t)off);
            if (n <= 0) {
                rc = cq_err_set(err, CQ_EIO, n < 0 ? errno : 0, NULL, "cannot read %s", old);
            } else if (cq_journal__write_all(fs, fd, buf, (size_t)n) < 0) {
                rc = cq_err_set(err, CQ_EIO, errno, "check free space", "cannot write %s", tmp);
            } else {
                off += (uint64_t)n;
            }
        }
        free(buf);
        if (in >= 0) {
            fs->close(fs->ctx, in);
        }
    }
    if (rc == 0 && rb->len > 0 && cq_journal__write_all(fs, fd, rb->bytes, rb->len) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check free space", "cannot write %s", tmp);
    }
    if (rc == 0 && fs->fdatasync(fs->ctx, fd) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot sync %s", tmp);
    }
    fs->close(fs->ctx, fd);
    if (rc == 0 && fs->rename(fs->ctx, tmp, path) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot rename %s", tmp);
    }
    if (rc == 0 && fs->fsync_dir(fs->ctx, dir) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot sync directory %s", dir);
    }
    if (rc < 0) {
        fs->unlink(fs->ctx, tmp);
    }
    return rc;
}

static int append_segment(const char *dir, const struct cq_journal_fs *fs, uint32_t segno,
                          uint64_t valid_end, const struct recbuf *rb, struct cq_err *err)
{
    char path[CQJ_PATH_MAX];
    cq_journal__seg_path(path, sizeof(path), dir, segno);
    int fd = fs->open(fs->ctx, path, O_WRONLY | O_APPEND | CQJ_O_SAFE, 0);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, NULL, "cannot open %s", path);
    }
    int rc = 0;
    if (fs->ftruncate(fs->ctx, fd, (off_t)valid_end) < 0 ||
        cq_journal__write_all(fs, fd, rb->bytes, rb->len) < 0 || fs->fdatasync(fs->ctx, fd) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check free space and the disk",
                        "cannot append the quarantine to %s", path);
    }
    fs->close(fs->ctx, fd);
    return rc;
}

/* ---- the debug bundle -------------------------------------------------------------------------
 */

/* The paths built below are bounded by CQJ_DIR_MAX (journal-int.h): no
 * snprintf or cq_strlcpy in this file cuts a path. Messages (details,
 * reasons) are cut at their field's size on purpose. */
static void parent_dir(const char *dir, char *out, size_t out_len)
{
    cq_strlcpy(out, dir, out_len);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') {
        out[--n] = '\0';
    }
    char *slash = strrchr(out, '/');
    if (slash == NULL) {
        cq_strlcpy(out, ".", out_len);
    } else if (slash == out) {
        out[1] = '\0';
    } else {
        *slash = '\0';
    }
}

static int make_bundle_dir(const char *dir, int64_t wall_us, char *out, size_t out_len,
                           struct cq_err *err)
{
    char parent[CQJ_PATH_MAX], bundles[CQJ_PATH_MAX + 16];
    parent_dir(dir, parent, sizeof(parent));
    snprintf(bundles, sizeof(bundles), "%s/bundles", parent);
    int rc = cq_fs_mkdir_p(bundles, 0750, err);
    if (rc < 0) {
        return rc;
    }
    time_t t = (time_t)(wall_us / 1000000);
    struct tm tm;
    char stamp[32];
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 1; i < 1000; i++) {
        if (i == 1) {
            snprintf(out, out_len, "%.4000s/journal-corrupt-%s", bundles, stamp);
        } else {
            snprintf(out, out_len, "%.4000s/journal-corrupt-%s-%d", bundles, stamp, i);
        }
        if (mkdir(out, 0750) == 0) {
            return 0;
        }
        if (errno != EEXIST) {
            return cq_err_set(err, CQ_EIO, errno, "check permissions", "cannot create %s", out);
        }
    }
    return cq_err_set(err, CQ_EIO, EEXIST, "remove old bundles", "too many bundles in %s", bundles);
}

static void ring_line(const char *line, void *ctx)
{
    struct cq_buf *b = ctx;
    cq_buf_puts(b, line);
    cq_buf_putc(b, '\n');
}

static void write_log_ring(const struct cq_journal_fs *fs, const char *bundle)
{
    struct cq_buf b = {0}; /* bounded by the log ring's size */
    char path[CQJ_PATH_MAX + 16];
    struct cq_err e;
    cq_log_ring_foreach(ring_line, &b);
    snprintf(path, sizeof(path), "%s/log.jsonl", bundle);
    if (cq_journal__write_file(fs, path, b.p != NULL ? b.p : "", b.len, &e) < 0) {
        cq_log_warn(SVC, "journal_bundle_incomplete", json_pack("{s:s}", "error", e.message),
                    "could not write the log ring into the bundle");
    }
    cq_buf_free(&b);
}

static json_t *scopes_json(const struct scopeset *s)
{
    json_t *a = json_array();
    if (s->global) {
        json_array_append_new(a, json_string("global"));
    } else {
        for (size_t i = 0; i < s->n; i++) {
            json_array_append_new(a, json_string(s->names[i]));
        }
    }
    return a;
}

static void note_quarantined(struct cq_journal_recovery *rec, const struct scopeset *s)
{
    size_t cap = CQ_ARRAY_LEN(rec->quarantined);
    if (s->global) {
        if (rec->n_quarantined < cap) {
            cq_strlcpy(rec->quarantined[rec->n_quarantined++], "global",
                       sizeof(rec->quarantined[0]));
        }
        return;
    }
    for (size_t i = 0; i < s->n && rec->n_quarantined < cap; i++) {
        cq_strlcpy(rec->quarantined[rec->n_quarantined++], s->names[i],
                   sizeof(rec->quarantined[0]));
    }
}

static int move_into(const struct cq_journal_fs *fs, const char *from, const char *bundle,
                     const char *name, json_t *moved, struct cq_err *err)
{
    char to[CQJ_PATH_MAX * 2];
    snprintf(to, sizeof(to), "%s/%s", bundle, name);
    if (fs->rename(fs->ctx, from, to) == 0) {
        json_array_append_new(moved, json_string(name));
        return 0;
    }
    if (errno == ENOENT) {
        return 0; /* already gone (renamed .invalid) */
    }
    if (errno != EXDEV) {
        return cq_err_set(err, CQ_EIO, errno, NULL, "cannot move %s into %s", from, bundle);
    }
    int rc = cq_journal__copy_file(fs, from, to, err);
    if (rc == 0 && fs->unlink(fs->ctx, from) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot remove %s", from);
    }
    if (rc == 0) {
        json_array_append_new(moved, json_string(name));
    }
    return rc;
}

/* The cut (see the top of this file). */
static int cut(const char *dir, const struct cq_journal_fs *fs, const struct cq_clock *clock,
               struct cq_journal__replay *r, struct cq_journal_recovery *rec,
               struct cq_journal__recovered *out, struct cq_err *err)
{
    const struct cq_journal__problem *prob = &r->prob;
    struct scopeset scopes;
    char detail[256], path[CQJ_PATH_MAX], bundle[CQJ_PATH_MAX];
    struct cq_journal_verify_report vrep;
    struct recbuf rb = {0};
    json_t *moved = json_array();
    int rc;
    cq_journal__problem_str(prob, detail, sizeof(detail));
    uint64_t last_good = r->last_seq;
    bool record_level = prob->offset >= CQJ_SEG_HDR_BYTES;

    rc = affected_scopes(dir, fs, &r->list, prob, last_good, &scopes, err);
    if (rc < 0) {
        goto out;
    }
    uint64_t max_seen = last_good;
    rc = highest_seq_seen(dir, fs, &r->list, prob->segment, &max_seen, err);
    if (rc < 0) {
        goto out;
    }
    if (record_level) {
        /* the damaged record's own seq field, when it is plausible (a
         * damaged seq field could say anything) */
        uint64_t dseq = 0;
        rc = damaged_seq(dir, fs, prob, &dseq, err);
        if (rc < 0) {
            goto out;
        }
        if (dseq > max_seen && dseq - last_good <= DAMAGED_SEQ_JUMP_MAX) {
            max_seen = dseq;
        }
    }
    rc = cq_journal_verify_dir(dir, fs, &vrep);
    if (rc < 0) {
        cq_err_set(err, -rc, 0, NULL, "verifying %s", dir);
        goto out;
    }
    rc = make_bundle_dir(dir, cq_clock_wall_us(clock), bundle, sizeof(bundle), err);
    if (rc < 0) {
        goto out;
    }
    /* 1. the report and the evidence, before anything changes */
    json_t *report = json_pack(
        "{s:s,s:s,s:s,s:i,s:I,s:s,s:I,s:I,s:o,s:o,s:I,s:I}", "kind", "journal_corrupt", "dir", dir,
        "problem", prob->text, "segment", (int)prob->segment, "offset", (json_int_t)prob->offset,
        "detail", detail, "last_good_seq", (json_int_t)last_good, "cut_from_seq",
        (json_int_t)(last_good + 1), "quarantined", scopes_json(&scopes), "verify",
        cq_journal__verify_report_json(&vrep), "snapshot_seq", (json_int_t)r->snapshot_seq,
        "highest_seq_seen", (json_int_t)max_seen);
    char *report_text = report != NULL ? json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(report);
    if (report_text == NULL) {
        rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "bundle report");
        goto out;
    }
    snprintf(path, sizeof(path), "%.4000s/report.json", bundle);
    rc = cq_journal__write_file(fs, path, report_text, strlen(report_text), err);
    free(report_text);
    if (rc < 0) {
        goto out;
    }
    uint32_t keep_segno; /* the segment that will end with the quarantine records */
    struct cq_journal__seg_header h;
    if (record_level) {
        struct cq_journal__problem hp;
        keep_segno = prob->segment;
        rc = cq_journal__read_seg_header(dir, fs, keep_segno, &h, &hp, err);
        if (rc != 0) {
            rc = rc < 0 ? rc : cq_err_set(err, CQ_EIO, 0, NULL, "segment header changed");
            goto out;
        }
    } else {
        keep_segno = r->last_segno != 0 ? r->last_segno + 1 : prob->segment;
        h.version = CQJ_FORMAT_VERSION;
        h.segment = keep_segno;
        h.first_seq = last_good + 1;
        h.prev_digest = r->last_digest;
    }
    for (size_t i = 0; i < r->list.n_segs; i++) {
        uint32_t s = r->list.segs[i];
        if (s >= prob->segment) {
            char from[CQJ_PATH_MAX], to[CQJ_PATH_MAX * 2];
            cq_journal__seg_path(from, sizeof(from), dir, s);
            snprintf(to, sizeof(to), "%s/%s", bundle, strrchr(from, '/') + 1);
            rc = cq_journal__copy_file(fs, from, to, err);
            if (rc < 0) {
                goto out;
            }
        }
    }
    if (fs->fsync_dir(fs->ctx, bundle) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot sync %s", bundle);
        goto out;
    }
    /* 2. the quarantine records, durable, at the end of the kept chain */
    rc = build_quarantine(&scopes, detail, bundle, last_good + 1, last_good, r->last_digest,
                          max_seen + 1, cq_clock_wall_us(clock), &rb);
    if (rc < 0) {
        cq_err_set(err, -rc, 0, NULL, "quarantine records");
        goto out;
    }
    char old[CQJ_PATH_MAX];
    cq_journal__seg_path(old, sizeof(old), dir, keep_segno);
    rc =
        rewrite_segment(dir, fs, keep_segno, &h, record_level ? old : NULL, prob->offset, &rb, err);
    if (rc < 0) {
        goto out;
    }
    /* 3. move what was cut off out of the journal (copies are in the bundle) */
    for (size_t i = 0; i < r->list.n_segs; i++) {
        uint32_t s = r->list.segs[i];
        if (s > keep_segno) {
            cq_journal__seg_path(path, sizeof(path), dir, s);
            if (fs->unlink(fs->ctx, path) < 0) {
                rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot remove %s", path);
                goto out;
            }
            json_array_append_new(moved, json_string(strrchr(path, '/') + 1));
        }
    }
    for (size_t i = 0; i < r->list.n_snaps; i++) {
        if (r->list.snaps[i] > last_good) {
            cq_journal__snap_path(path, sizeof(path), dir, r->list.snaps[i]);
            rc = move_into(fs, path, bundle, strrchr(path, '/') + 1, moved, err);
            if (rc < 0) {
                goto out;
            }
        }
    }
    if (fs->fsync_dir(fs->ctx, dir) < 0 || fs->fsync_dir(fs->ctx, bundle) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot sync %s", dir);
        goto out;
    }
    rc = apply_recbuf(r->state, &rb);
    if (rc < 0) {
        cq_err_set(err, -rc, 0, NULL, "quarantine records");
        goto out;
    }
    r->last_seq = rb.last_seq;
    r->last_digest = rb.last_digest;

    rec->corrupt_segments++;
    cq_strlcpy(rec->first_corruption, detail, sizeof(rec->first_corruption));
    note_quarantined(rec, &scopes);
    out->corrupt = true;
    out->corrupt_segment = prob->segment;
    out->corrupt_offset = prob->offset;
    cq_strlcpy(out->corrupt_detail, detail, sizeof(out->corrupt_detail));
    cq_strlcpy(out->bundle, bundle, sizeof(out->bundle));
    cq_log_error(SVC, "journal_corrupt",
                 json_pack("{s:i,s:I,s:s,s:o,s:s,s:I,s:o}", "segment", (int)prob->segment, "offset",
                           (json_int_t)prob->offset, "problem", prob->text, "quarantined",
                           scopes_json(&scopes), "bundle", bundle, "cut_from_seq",
                           (json_int_t)(last_good + 1), "moved", json_incref(moved)),
                 "journal corrupt at %s: records from seq %llu cut into the bundle, scopes "
                 "quarantined",
                 detail, (unsigned long long)(last_good + 1));
    write_log_ring(fs, bundle);
out:
    json_decref(moved);
    free(rb.bytes);
    return rc;
}

/* Records are missing without anything to cut: quarantine "global" at the end. */
static int quarantine_missing(const char *dir, const struct cq_journal_fs *fs,
                              const struct cq_clock *clock, struct cq_journal__replay *r,
                              const char *why, struct cq_journal_recovery *rec,
                              struct cq_journal__recovered *out, struct cq_err *err)
{
    struct scopeset scopes = {.global = true};
    struct recbuf rb;
    char bundle[CQJ_PATH_MAX], path[CQJ_PATH_MAX + 16];
    struct cq_journal_verify_report vrep;
    int rc = cq_journal_verify_dir(dir, fs, &vrep);
    if (rc < 0) {
        return cq_err_set(err, -rc, 0, NULL, "verifying %s", dir);
    }
    rc = make_bundle_dir(dir, cq_clock_wall_us(clock), bundle, sizeof(bundle), err);
    if (rc < 0) {
        return rc;
    }
    json_t *report = json_pack("{s:s,s:s,s:s,s:o,s:o}", "kind", "journal_corrupt", "dir", dir,
                               "problem", why, "quarantined", scopes_json(&scopes), "verify",
                               cq_journal__verify_report_json(&vrep));
    char *text = report != NULL ? json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(report);
    if (text == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "bundle report");
    }
    snprintf(path, sizeof(path), "%.4000s/report.json", bundle);
    rc = cq_journal__write_file(fs, path, text, strlen(text), err);
    free(text);
    if (rc < 0) {
        return rc;
    }
    uint64_t max_seen = r->last_seq > r->ahead_snapshot_seq ? r->last_seq : r->ahead_snapshot_seq;
    for (size_t i = 0; i < r->list.n_snaps; i++) {
        if (r->list.snaps[i] > max_seen) {
            max_seen = r->list.snaps[i];
        }
    }
    rc = build_quarantine(&scopes, why, bundle, 0, r->last_seq, r->last_digest, max_seen + 1,
                          cq_clock_wall_us(clock), &rb);
    if (rc < 0) {
        return cq_err_set(err, -rc, 0, NULL, "quarantine records");
    }
    if (r->last_segno != 0) {
        rc = append_segment(dir, fs, r->last_segno, r->last_end, &rb, err);
    } else {
        struct cq_journal__seg_header h = {CQJ_FORMAT_VERSION, 1, r->last_seq + 1, r->last_digest};
        uint32_t segno = r->list.n_segs > 0 ? r->list.segs[r->list.n_segs - 1] + 1 : 1;
        h.segment = segno;
        rc = rewrite_segment(dir, fs, segno, &h, NULL, 0, &rb, err);
    }
    if (rc == 0) {
        rc = apply_recbuf(r->state, &rb);
    }
    if (rc == 0) {
        r->last_seq = rb.last_seq;
        r->last_digest = rb.last_digest;
        rec->corrupt_segments++;
        cq_strlcpy(rec->first_corruption, why, sizeof(rec->first_corruption));
        note_quarantined(rec, &scopes);
        out->corrupt = true;
        cq_strlcpy(out->corrupt_detail, why, sizeof(out->corrupt_detail));
        cq_strlcpy(out->bundle, bundle, sizeof(out->bundle));
        cq_log_error(
            SVC, "journal_corrupt",
            json_pack("{s:s,s:s,s:s}", "problem", why, "quarantined", "global", "bundle", bundle),
            "journal records missing: %s; quarantined global", why);
        write_log_ring(fs, bundle);
    }
    free(rb.bytes);
    return rc;
}

static int truncate_torn(const char *dir, const struct cq_journal_fs *fs,
                         struct cq_journal__replay *r, struct cq_journal_recovery *rec,
                         struct cq_err *err)
{
    const struct cq_journal__problem *p = &r->prob;
    char path[CQJ_PATH_MAX];
    cq_journal__seg_path(path, sizeof(path), dir, p->segment);
    uint64_t bytes = p->file_size > p->offset ? p->file_size - p->offset : 0;
    if (p->offset < CQJ_SEG_HDR_BYTES) {
        /* the segment's creation itself was torn: nothing in it was acknowledged */
        if (fs->unlink(fs->ctx, path) < 0 || fs->fsync_dir(fs->ctx, dir) < 0) {
            return cq_err_set(err, CQ_EIO, errno, NULL, "cannot remove torn %s", path);
        }
        bytes = p->file_size;
    } else {
        int fd = fs->open(fs->ctx, path, O_WRONLY | CQJ_O_SAFE, 0);
        if (fd < 0) {
            return cq_err_set(err, CQ_EIO, errno, NULL, "cannot open %s", path);
        }
        int rc = 0;
        if (fs->ftruncate(fs->ctx, fd, (off_t)p->offset) < 0 || fs->fdatasync(fs->ctx, fd) < 0) {
            rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot truncate %s", path);
        }
        fs->close(fs->ctx, fd);
        if (rc < 0) {
            return rc;
        }
    }
    rec->torn_tail_truncated = true;
    rec->torn_bytes = bytes;
    cq_log_warn(SVC, "journal_torn_tail_truncated",
                json_pack("{s:i,s:I,s:I,s:s}", "segment", (int)p->segment, "offset",
                          (json_int_t)p->offset, "bytes", (json_int_t)bytes, "problem", p->text),
                "cut a torn write of %llu bytes at segment %u offset %llu (never acknowledged)",
                (unsigned long long)bytes, p->segment, (unsigned long long)p->offset);
    return 0;
}

static void invalidate_snapshots(const char *dir, const struct cq_journal_fs *fs,
                                 const struct cq_journal__replay *r)
{
    for (size_t i = 0; i < r->n_bad_snapshots; i++) {
        char path[CQJ_PATH_MAX], to[CQJ_PATH_MAX + 16];
        cq_journal__snap_path(path, sizeof(path), dir, r->bad_snapshots[i]);
        snprintf(to, sizeof(to), "%s.invalid", path);
        fs->rename(fs->ctx, path, to);
        cq_log_warn(SVC, "journal_snapshot_invalid",
                    json_pack("{s:I,s:s}", "seq", (json_int_t)r->bad_snapshots[i], "why",
                              r->bad_snapshot_why[i]),
                    "snapshot at seq %llu not used (%s); kept as %s",
                    (unsigned long long)r->bad_snapshots[i], r->bad_snapshot_why[i], to);
    }
}

/* changed: the last segment was rewritten or appended to after the replay. */
static int finish(const char *dir, const struct cq_journal_fs *fs, struct cq_journal__replay *r,
                  bool changed, struct cq_journal__recovered *out, struct cq_err *err)
{
    struct cq_journal__dirlist l;
    int rc = cq_journal__list_dir(dir, &l, err);
    if (rc < 0) {
        return rc;
    }
    out->segs = calloc(l.n_segs + 1, sizeof(*out->segs));
    if (out->segs == NULL) {
        cq_journal__dirlist_fini(&l);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "recovery");
    }
    for (size_t i = 0; i < l.n_segs; i++) {
        struct cq_journal__seg_header h;
        struct cq_journal__problem p;
        rc = cq_journal__read_seg_header(dir, fs, l.segs[i], &h, &p, err);
        if (rc < 0) {
            break;
        }
        out->segs[out->n_segs].segno = l.segs[i];
        out->segs[out->n_segs].first_seq = rc == 0 ? h.first_seq : 0;
        out->n_segs++;
        rc = 0;
    }
    if (rc == 0 && out->n_segs > 0 && !changed &&
        out->segs[out->n_segs - 1].segno == r->last_segno) {
        out->active_size = r->last_end; /* where the replay (or the torn-tail cut) ended */
    } else if (rc == 0 && out->n_segs > 0) {
        struct cq_journal__seg_reader rd;
        rc = cq_journal__reader_open(&rd, dir, fs, out->segs[out->n_segs - 1].segno, err);
        if (rc == 0) {
            if (cq_journal__reader_size(&rd, &out->active_size) < 0) {
                rc = cq_err_set(err, CQ_EIO, errno, NULL, "reading the last segment");
            }
            cq_journal__reader_close(&rd);
        }
    }
    out->snapshot_seq = l.n_snaps > 0 ? l.snaps[l.n_snaps - 1] : 0;
    cq_journal__dirlist_fini(&l);
    if (rc < 0) {
        return rc;
    }
    out->state = r->state;
    r->state = NULL;
    out->last_seq = r->last_seq;
    out->last_digest = r->last_digest;
    return 0;
}

int cq_journal__recover(const char *dir, const struct cq_journal_fs *fs,
                        const struct cq_clock *clock, struct cq_journal_recovery *rec,
                        struct cq_journal__recovered *out, struct cq_err *err)
{
    struct cq_journal__dirlist l;
    struct cq_journal__replay r;
    memset(out, 0, sizeof(*out));
    memset(rec, 0, sizeof(*rec));
    int rc = cq_journal__list_dir(dir, &l, err);
    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < l.n_tmps; i++) {
        char path[CQJ_PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, l.tmps[i]);
        if (fs->unlink(fs->ctx, path) == 0) {
            cq_log_info(SVC, "journal_tmp_removed", json_pack("{s:s}", "file", l.tmps[i]),
                        "removed %s left by an interrupted write", l.tmps[i]);
        }
    }
    for (size_t i = 0; i < l.n_odd; i++) {
        if (l.odd[i].stray) {
            /* not ours by name: reported, never read, never deleted */
            cq_log_warn(SVC, "journal_unexpected_file",
                        json_pack("{s:s,s:s}", "file", l.odd[i].name, "why", l.odd[i].why),
                        "%s/%s: %s; move it out of the journal directory", dir, l.odd[i].name,
                        l.odd[i].why);
        }
    }
    cq_journal__dirlist_fini(&l);

    rc = cq_journal__replay_run(dir, fs, true, NULL, NULL, &r, err);
    if (rc < 0) {
        return rc;
    }
    invalidate_snapshots(dir, fs, &r);
    rec->snapshot_seq = r.snapshot_seq;
    rec->replayed_records = r.replayed;
    if (r.have_problem && r.prob.torn) {
        rc = truncate_torn(dir, fs, &r, rec, err);
    } else if (r.have_problem) {
        rc = cut(dir, fs, clock, &r, rec, out, err);
    }
    if (rc == 0 && r.head_missing && r.snapshot_seq == 0) {
        char why[200];
        snprintf(why, sizeof(why),
                 "records before segment %u are missing and no snapshot covers them",
                 r.list.n_segs > 0 ? r.list.segs[0] : 0);
        rc = quarantine_missing(dir, fs, clock, &r, why, rec, out, err);
    }
    if (rc == 0 && r.ahead_snapshot_seq > r.last_seq && !out->corrupt) {
        char why[200];
        snprintf(why, sizeof(why),
                 "a snapshot at seq %llu is ahead of the last record %llu: records are missing",
                 (unsigned long long)r.ahead_snapshot_seq, (unsigned long long)r.last_seq);
        rc = quarantine_missing(dir, fs, clock, &r, why, rec, out, err);
    }
    if (rc == 0) {
        rc = finish(dir, fs, &r, out->corrupt, out, err);
    }
    rec->last_seq = out->last_seq;
    cq_journal__replay_fini(&r);
    if (rc < 0) {
        cq_journal__recovered_fini(out);
    }
    return rc;
}
