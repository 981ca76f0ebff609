/*
 * verify.c — the offline side: verify, read, replay, export and snapshot a
 * journal directory, plus the replay engine cq_journal_open shares.
 *
 * These functions touch only their arguments (their own fds, buffers and
 * state), so the command line, tests and the background verifier may run
 * them on any thread, even while a writer appends to the same directory
 * (they then see a prefix of it).
 *
 * Replay = the newest snapshot that is usable + the records after it.
 * Usable means: its checksums verify, and the records continue it — the
 * segment holding seq+1 exists and the chain digest of record seq (or the
 * prev digest in the header of the segment starting at seq+1) equals the one
 * the snapshot carries. Otherwise the next older one is tried, then none
 * (from seq 1).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/text.h"
#include "journal-int.h"

struct seg_headers {
    struct cq_journal__seg_header *h; /* owned, one per listed segment */
    bool *ok;                         /* owned */
};

static void headers_fini(struct seg_headers *sh)
{
    free(sh->h);
    free(sh->ok);
    sh->h = NULL;
    sh->ok = NULL;
}

static int headers_read(const char *dir, const struct cq_journal_fs *fs,
                        const struct cq_journal__dirlist *l, struct seg_headers *sh,
                        struct cq_err *err)
{
    sh->h = calloc(l->n_segs + 1, sizeof(*sh->h));
    sh->ok = calloc(l->n_segs + 1, sizeof(*sh->ok));
    if (sh->h == NULL || sh->ok == NULL) {
        headers_fini(sh);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "reading segment headers");
    }
    for (size_t i = 0; i < l->n_segs; i++) {
        struct cq_journal__problem p;
        int rc = cq_journal__read_seg_header(dir, fs, l->segs[i], &sh->h[i], &p, err);
        if (rc < 0) {
            headers_fini(sh);
            return rc;
        }
        sh->ok[i] = rc == 0;
    }
    return 0;
}

/* Index of the segment holding seq `want` (the last one with a good header
 * and first_seq <= want); -1 when every good segment starts later. */
static long find_start(const struct cq_journal__dirlist *l, const struct seg_headers *sh,
                       uint64_t want)
{
    long found = -1;
    for (size_t i = 0; i < l->n_segs; i++) {
        if (sh->ok[i] && sh->h[i].first_seq <= want) {
            found = (long)i;
        }
    }
    return found;
}

void cq_journal__replay_fini(struct cq_journal__replay *r)
{
    cq_journal__dirlist_fini(&r->list);
    cq_journal__state_free(r->state);
    r->state = NULL;
}

static void add_bad_snapshot(struct cq_journal__replay *out, uint64_t seq, const char *why)
{
    if (out->n_bad_snapshots < CQ_ARRAY_LEN(out->bad_snapshots)) {
        out->bad_snapshots[out->n_bad_snapshots] = seq;
        cq_strlcpy(out->bad_snapshot_why[out->n_bad_snapshots], why,
                   sizeof(out->bad_snapshot_why[0]));
        out->n_bad_snapshots++;
    }
}

enum attempt_result { ATTEMPT_ACCEPT, ATTEMPT_REJECT };

/* Replay the segments starting from one candidate (snap == NULL: from the
 * first record). Fills out->state, last_*, prob on ACCEPT. */
static int attempt(const char *dir, const struct cq_journal_fs *fs, const struct seg_headers *sh,
                   struct cq_journal__snapshot *snap,
                   int (*fn)(void *ctx, const struct cq_journal_record *rec), void *ctx,
                   struct cq_journal__replay *out, enum attempt_result *res, struct cq_err *err)
{
    const struct cq_journal__dirlist *l = &out->list;
    uint64_t s = snap != NULL ? snap->seq : 0;
    char why[160];
    long start = 0;
    *res = ATTEMPT_REJECT;
    if (snap != NULL) {
        start = find_start(l, sh, s + 1);
        if (start < 0) {
            bool any_good = false;
            for (size_t i = 0; i < l->n_segs; i++) {
                any_good = any_good || sh->ok[i];
            }
            if (!any_good) {
                /* ahead of every record: the segments are gone */
                add_bad_snapshot(out, s, "ahead of the journal (no segment with records)");
                if (s > out->ahead_snapshot_seq) {
                    out->ahead_snapshot_seq = s;
                }
            } else {
                add_bad_snapshot(out, s, "no segment holds the records after it");
            }
            return 0;
        }
    } else if (l->n_segs > 0 && sh->ok[0] && sh->h[0].first_seq != 1) {
        out->head_missing = true;
    }
    struct cq_journal__state *state = snap != NULL ? snap->state : cq_journal__state_new();
    if (state == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "replay");
    }
    struct cq_journal__walker w;
    cq_journal__walker_init(&w, dir, fs, l->segs, l->n_segs, (size_t)start, true);
    if (snap != NULL && s > 0) {
        w.anchor_set = true;
        w.anchor_seq = s;
        w.anchor_digest = snap->digest;
    }
    uint64_t last_seq = s, last_digest = snap != NULL ? snap->digest : 0, replayed = 0;
    int rc = 0;
    for (;;) {
        struct cq_journal__rec r;
        rc = cq_journal__walker_next(&w, &r, err);
        if (rc != 1) {
            break;
        }
        if (r.seq > s) {
            struct cq_journal_record view;
            char scope[CQ_JOURNAL_SCOPE_MAX + 1];
            cq_journal__rec_view(&r, w.last_segno, w.end_offset - r.len, scope, &view);
            rc = cq_journal__state_apply(state, &view);
            if (rc < 0) {
                cq_err_set(err, CQ_ENOMEM, 0, NULL, "replay");
                break;
            }
            if (fn != NULL) {
                rc = fn(ctx, &view);
                if (rc != 0) {
                    break;
                }
            }
            replayed++;
        }
        last_seq = r.seq;
        last_digest = r.digest;
    }
    if (rc != 0 && rc != 2) {
        cq_journal__walker_fini(&w);
        if (snap == NULL) {
            cq_journal__state_free(state);
        } else {
            snap->state = state;
        }
        return rc < 0 ? rc : 0;
    }
    bool problem = rc == 2;
    if (snap != NULL && s > 0) {
        if (problem && w.prob.kind == CQJ_P_ANCHOR) {
            add_bad_snapshot(out, s, w.prob.text);
            cq_journal__walker_fini(&w);
            return 0;
        }
        if (last_seq < s || !w.anchor_checked) {
            if (problem) {
                char p[256];
                cq_journal__problem_str(&w.prob, p, sizeof(p));
                snprintf(why, sizeof(why), "records before it are damaged (%.120s)", p);
            } else {
                snprintf(why, sizeof(why), "ahead of the journal (last seq %llu)",
                         (unsigned long long)last_seq);
                if (s > out->ahead_snapshot_seq) {
                    out->ahead_snapshot_seq = s;
                }
            }
            add_bad_snapshot(out, s, why);
            cq_journal__walker_fini(&w);
            return 0;
        }
    }
    out->state = state;
    if (snap != NULL) {
        snap->state = NULL;
    }
    out->snapshot_seq = s;
    out->replayed = replayed;
    out->last_seq = last_seq;
    out->last_digest = last_digest;
    out->last_segno = w.last_segno;
    out->last_end = w.end_offset;
    out->have_problem = problem;
    if (problem) {
        out->prob = w.prob;
    }
    cq_journal__walker_fini(&w);
    *res = ATTEMPT_ACCEPT;
    return 0;
}

int cq_journal__replay_run(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                           int (*fn)(void *ctx, const struct cq_journal_record *rec), void *ctx,
                           struct cq_journal__replay *out, struct cq_err *err)
{
    if (fs == NULL) {
        fs = cq_journal_fs_posix();
    }
    memset(out, 0, sizeof(*out));
    int rc = cq_journal__list_dir(dir, &out->list, err);
    if (rc < 0) {
        return rc;
    }
    char why[CQJ_PATH_MAX + 256];
    if (cq_journal__dirlist_refused(&out->list, dir, why, sizeof(why))) {
        cq_journal__replay_fini(out);
        return cq_err_set(err, CQ_EPARSE, 0, "move it out of the journal directory", "%s", why);
    }
    struct seg_headers sh = {0};
    rc = headers_read(dir, fs, &out->list, &sh, err);
    if (rc < 0) {
        cq_journal__replay_fini(out);
        return rc;
    }
    enum attempt_result res = ATTEMPT_REJECT;
    for (size_t k = use_snapshot ? out->list.n_snaps : 0; k > 0 && res != ATTEMPT_ACCEPT; k--) {
        uint64_t seq = out->list.snaps[k - 1];
        struct cq_journal__snapshot snap;
        struct cq_err serr;
        cq_err_clear(&serr);
        rc = cq_journal__snap_read(dir, fs, seq, &snap, &serr);
        if (rc == -CQ_EPARSE || rc == -CQ_ENOTFOUND) {
            add_bad_snapshot(out, seq, serr.message);
            rc = 0;
            continue;
        }
        if (rc < 0) {
            if (err != NULL) {
                *err = serr;
            }
            break;
        }
        if (seq == 0) {
            cq_journal__snapshot_fini(&snap);
            continue;
        }
        rc = attempt(dir, fs, &sh, &snap, fn, ctx, out, &res, err);
        cq_journal__snapshot_fini(&snap);
        if (rc < 0) {
            break;
        }
    }
    if (rc >= 0 && res != ATTEMPT_ACCEPT) {
        rc = attempt(dir, fs, &sh, NULL, fn, ctx, out, &res, err);
    }
    headers_fini(&sh);
    if (rc < 0) {
        cq_journal__replay_fini(out);
        return rc;
    }
    return 0;
}

/* ---- verify -------------------------------------------------------------------------------- */

struct snap_check {
    uint64_t seq;
    uint64_t digest;
};

/* A file that cannot be read is a problem of the journal like any other,
 * reported with its path (err names it). */
static void file_problem(struct cq_journal_verify_report *rep, const struct cq_err *err)
{
    rep->ok = false;
    rep->torn_tail = false;
    /* the message may be cut (it is longer than the problem field); the
     * path comes first in it, so what is cut is the end of the reason */
    cq_strlcpy(rep->problem, err->message, sizeof(rep->problem));
}

int cq_journal_verify_dir(const char *dir, const struct cq_journal_fs *fs,
                          struct cq_journal_verify_report *rep)
{
    struct cq_err err;
    struct cq_journal__dirlist l;
    struct snap_check *good = NULL;
    size_t n_good = 0, next_good = 0;
    char snap_problem[256] = "";
    if (fs == NULL) {
        fs = cq_journal_fs_posix();
    }
    memset(rep, 0, sizeof(*rep));
    int rc = cq_journal__list_dir(dir, &l, &err);
    if (rc < 0) {
        return rc;
    }
    rep->segments = (uint32_t)l.n_segs;
    rep->ok = true;

    /* snapshots first (they may vouch for pruned segments) */
    good = calloc(l.n_snaps + 1, sizeof(*good));
    if (good == NULL) {
        cq_journal__dirlist_fini(&l);
        return -CQ_ENOMEM;
    }
    for (size_t i = 0; i < l.n_snaps; i++) {
        struct cq_journal__snapshot s;
        cq_err_clear(&err);
        rc = cq_journal__snap_read(dir, fs, l.snaps[i], &s, &err);
        if (rc == -CQ_ENOMEM) {
            free(good);
            cq_journal__dirlist_fini(&l);
            return rc;
        }
        if (rc < 0) {
            if (snap_problem[0] == '\0') {
                snprintf(snap_problem, sizeof(snap_problem), "snapshot: %.200s", err.message);
            }
            continue;
        }
        good[n_good].seq = s.seq;
        good[n_good].digest = s.digest;
        n_good++;
        cq_journal__snapshot_fini(&s);
    }

    struct cq_journal__walker w;
    cq_journal__walker_init(&w, dir, fs, l.segs, l.n_segs, 0, true);
    if (l.n_segs > 0) {
        struct cq_journal__seg_header h;
        struct cq_journal__problem p;
        rc = cq_journal__read_seg_header(dir, fs, l.segs[0], &h, &p, &err);
        if (rc == -CQ_ENOMEM) {
            goto io_error;
        }
        if (rc < 0) {
            file_problem(rep, &err);
        }
        if (rc == 0 && h.first_seq != 1) {
            /* pruned: a good snapshot must cover everything before the first record */
            bool covered = false;
            for (size_t i = 0; i < n_good; i++) {
                if (good[i].seq + 1 >= h.first_seq) {
                    covered = true;
                }
                if (good[i].seq + 1 == h.first_seq) {
                    w.anchor_set = true;
                    w.anchor_seq = good[i].seq;
                    w.anchor_digest = good[i].digest;
                }
            }
            if (!covered) {
                rep->ok = false;
                rep->bad_segment = l.segs[0];
                rep->bad_offset = 0;
                snprintf(rep->problem, sizeof(rep->problem),
                         "records before seq %llu are missing and no snapshot covers them",
                         (unsigned long long)h.first_seq);
            }
        }
    }
    while (rep->ok) {
        struct cq_journal__rec r;
        rc = cq_journal__walker_next(&w, &r, &err);
        if (rc == -CQ_ENOMEM) {
            goto io_error;
        }
        if (rc < 0) {
            file_problem(rep, &err);
            break;
        }
        if (rc == 0) {
            break;
        }
        if (rc == 2) {
            rep->ok = false;
            rep->bad_segment = w.prob.segment;
            rep->bad_offset = w.prob.offset;
            cq_strlcpy(rep->problem, w.prob.text, sizeof(rep->problem));
            rep->torn_tail = w.prob.torn;
            if (w.prob.torn) {
                snprintf(rep->problem, sizeof(rep->problem), "torn tail: %s", w.prob.text);
            }
            break;
        }
        if (rep->records == 0) {
            rep->first_seq = r.seq;
        }
        rep->records++;
        rep->last_seq = r.seq;
        while (next_good < n_good && good[next_good].seq < r.seq) {
            next_good++;
        }
        if (next_good < n_good && good[next_good].seq == r.seq &&
            good[next_good].digest != r.digest && snap_problem[0] == '\0') {
            snprintf(snap_problem, sizeof(snap_problem),
                     "snapshot at seq %llu does not match the journal (chain digest)",
                     (unsigned long long)r.seq);
        }
    }
    rep->bytes = w.bytes;
    if (rep->ok || rep->torn_tail) {
        for (size_t i = 0; i < n_good && snap_problem[0] == '\0'; i++) {
            if (good[i].seq > rep->last_seq && rep->ok) {
                snprintf(snap_problem, sizeof(snap_problem),
                         "snapshot at seq %llu is ahead of the journal (last seq %llu)",
                         (unsigned long long)good[i].seq, (unsigned long long)rep->last_seq);
            }
        }
        if (snap_problem[0] != '\0') {
            rep->ok = false;
            rep->torn_tail = false;
            rep->bad_segment = 0;
            rep->bad_offset = 0;
            cq_strlcpy(rep->problem, snap_problem, sizeof(rep->problem));
        }
    }
    /* files the journal does not read: one named like a segment or a
     * snapshot that is not a regular file explains any gap it leaves, so
     * it comes first; an out-of-pattern name only when nothing else is wrong */
    for (size_t i = 0; i < l.n_odd; i++) {
        const struct cq_journal__odd_file *f = &l.odd[i];
        if (!f->stray || rep->ok) {
            rep->ok = false;
            rep->torn_tail = false;
            rep->bad_segment = 0;
            rep->bad_offset = 0;
            snprintf(rep->problem, sizeof(rep->problem), "%.150s: %.100s", f->name, f->why);
            if (!f->stray) {
                break;
            }
        }
    }
    cq_journal__walker_fini(&w);
    free(good);
    cq_journal__dirlist_fini(&l);
    return 0;
io_error:
    cq_journal__walker_fini(&w);
    free(good);
    cq_journal__dirlist_fini(&l);
    return rc;
}

json_t *cq_journal__verify_report_json(const struct cq_journal_verify_report *rep)
{
    return json_pack("{s:b,s:I,s:i,s:I,s:I,s:I,s:i,s:I,s:s,s:b}", "ok", rep->ok, "records",
                     (json_int_t)rep->records, "segments", (int)rep->segments, "bytes",
                     (json_int_t)rep->bytes, "first_seq", (json_int_t)rep->first_seq, "last_seq",
                     (json_int_t)rep->last_seq, "bad_segment", (int)rep->bad_segment, "bad_offset",
                     (json_int_t)rep->bad_offset, "problem", rep->problem, "torn_tail",
                     rep->torn_tail);
}

/* ---- read, replay, export, snapshot ---------------------------------------------------------- */

int cq_journal_read_dir(const char *dir, const struct cq_journal_fs *fs, uint64_t after_seq,
                        int (*fn)(void *ctx, const struct cq_journal_record *rec), void *ctx,
                        struct cq_err *err)
{
    struct cq_journal__dirlist l;
    struct seg_headers sh = {0};
    if (fs == NULL) {
        fs = cq_journal_fs_posix();
    }
    int rc = cq_journal__list_dir(dir, &l, err);
    if (rc < 0) {
        return rc;
    }
    char why[CQJ_PATH_MAX + 256];
    if (cq_journal__dirlist_refused(&l, dir, why, sizeof(why))) {
        cq_journal__dirlist_fini(&l);
        return cq_err_set(err, CQ_EPARSE, 0, "move it out of the journal directory", "%s", why);
    }
    rc = headers_read(dir, fs, &l, &sh, err);
    if (rc < 0) {
        cq_journal__dirlist_fini(&l);
        return rc;
    }
    long start = find_start(&l, &sh, after_seq + 1);
    if (start < 0) {
        start = 0;
        if (after_seq > 0 && l.n_segs > 0 && sh.ok[0]) {
            rc = cq_err_set(err, CQ_ENOTFOUND, 0, "read from a snapshot instead",
                            "records after seq %llu were pruned (the oldest kept starts at %llu)",
                            (unsigned long long)after_seq, (unsigned long long)sh.h[0].first_seq);
        }
    }
    struct cq_journal__walker w;
    cq_journal__walker_init(&w, dir, fs, l.segs, l.n_segs, (size_t)start, true);
    while (rc == 0) {
        struct cq_journal__rec r;
        rc = cq_journal__walker_next(&w, &r, err);
        if (rc == 1) {
            rc = 0;
            if (r.seq > after_seq) {
                struct cq_journal_record view;
                char scope[CQ_JOURNAL_SCOPE_MAX + 1];
                cq_journal__rec_view(&r, w.last_segno, w.end_offset - r.len, scope, &view);
                int frc = fn(ctx, &view);
                if (frc != 0) {
                    rc = frc < 0 ? frc : 0;
                    break;
                }
            }
            continue;
        }
        if (rc == 2) {
            if (w.prob.torn) {
                rc = 0;
            } else {
                char p[256];
                cq_journal__problem_str(&w.prob, p, sizeof(p));
                rc = cq_err_set(err, CQ_EPARSE, 0, "run `coinquantd journal verify` for details",
                                "journal %s: %s", dir, p);
            }
        }
        break;
    }
    cq_journal__walker_fini(&w);
    headers_fini(&sh);
    cq_journal__dirlist_fini(&l);
    return rc;
}

static void fill_info(const struct cq_journal__replay *r, struct cq_journal_replay_info *info)
{
    if (info == NULL) {
        return;
    }
    memset(info, 0, sizeof(*info));
    info->snapshot_seq = r->snapshot_seq;
    info->replayed_records = r->replayed;
    info->last_seq = r->last_seq;
    for (size_t i = 0; i < r->n_bad_snapshots && i < CQ_ARRAY_LEN(info->skipped_seq); i++) {
        info->skipped_seq[i] = r->bad_snapshots[i];
        /* both fields are 160 bytes */
        cq_strlcpy(info->skipped_why[i], r->bad_snapshot_why[i], sizeof(info->skipped_why[i]));
        info->n_skipped++;
    }
}

static int replay_checked(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                          struct cq_journal__replay *r, struct cq_journal_replay_info *info,
                          struct cq_err *err)
{
    if (info != NULL) {
        memset(info, 0, sizeof(*info));
    }
    int rc = cq_journal__replay_run(dir, fs, use_snapshot, NULL, NULL, r, err);
    if (rc < 0) {
        return rc;
    }
    fill_info(r, info);
    if (r->have_problem && !r->prob.torn) {
        char p[256];
        cq_journal__problem_str(&r->prob, p, sizeof(p));
        rc = cq_err_set(err, CQ_EPARSE, 0, "run `coinquantd journal verify` for details",
                        "journal %s: %s", dir, p);
    } else if (r->head_missing && r->snapshot_seq == 0) {
        rc = cq_err_set(err, CQ_ENOTFOUND, 0, "replay with a snapshot",
                        "journal %s: the oldest segments were pruned and no snapshot covers them",
                        dir);
    } else if (r->ahead_snapshot_seq > 0) {
        rc = cq_err_set(err, CQ_EPARSE, 0, "run `coinquantd journal verify` for details",
                        "journal %s: a snapshot at seq %llu is ahead of the last record %llu", dir,
                        (unsigned long long)r->ahead_snapshot_seq, (unsigned long long)r->last_seq);
    }
    if (rc < 0) {
        cq_journal__replay_fini(r);
    }
    return rc;
}

int cq_journal_replay_dir(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                          json_t **state, struct cq_err *err)
{
    return cq_journal_replay_dir_info(dir, fs, use_snapshot, state, NULL, err);
}

int cq_journal_replay_dir_info(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                               json_t **state, struct cq_journal_replay_info *info,
                               struct cq_err *err)
{
    struct cq_journal__replay r;
    *state = NULL;
    int rc = replay_checked(dir, fs, use_snapshot, &r, info, err);
    if (rc < 0) {
        return rc;
    }
    *state = cq_journal__state_to_json(r.state);
    cq_journal__replay_fini(&r);
    if (*state == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "replay %s", dir);
    }
    return 0;
}

struct export_ctx {
    FILE *out;
    int write_errno;                               /* a write to out failed (0 = none) */
    const struct cq_journal_export_filter *filter; /* NULL = every record */
};

static int is_utf8(const uint8_t *s, size_t n)
{
    json_t *j = json_stringn((const char *)s, n);
    int ok = j != NULL;
    json_decref(j);
    return ok;
}

static int export_one(void *vctx, const struct cq_journal_record *rec)
{
    struct export_ctx *x = vctx;
    const struct cq_journal_export_filter *f = x->filter;
    if (f != NULL && ((f->types != 0 && (rec->type >= 32 || !(f->types & (1u << rec->type)))) ||
                      (f->scope != NULL && strcmp(f->scope, rec->scope) != 0))) {
        return 0;
    }
    char ts[CQ_RFC3339_US_LEN];
    char tname[16];
    const char *type = cq_rec_type_name(rec->type);
    if (type == NULL) {
        snprintf(tname, sizeof(tname), "type_%u", (unsigned)rec->type);
        type = tname;
    }
    json_t *o = json_object();
    if (o == NULL) {
        return -CQ_ENOMEM;
    }
    /* seq is unsigned 64-bit, which a JSON integer in jansson is not: it is
     * printed by hand in front of the rest */
    json_object_set_new(o, "ts", json_string(cq_time_rfc3339_us(rec->ts_us, ts, sizeof(ts))));
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "scope", json_string(rec->scope));
    json_t *payload = rec->payload_len > 0
                          ? json_loadb(rec->payload, rec->payload_len, JSON_DECODE_ANY, NULL)
                          : NULL;
    if (payload == NULL) {
        if (is_utf8(rec->payload, rec->payload_len)) {
            payload = json_stringn(rec->payload, rec->payload_len);
        } else {
            char *h = malloc(rec->payload_len * 2 + 1);
            if (h == NULL) {
                json_decref(o);
                return -CQ_ENOMEM;
            }
            payload = json_string(cq_text_hex_encode(rec->payload, rec->payload_len, h));
            free(h);
            json_object_set_new(o, "payload_encoding", json_string("hex"));
        }
    }
    json_object_set_new(o, "payload", payload);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (line == NULL) {
        return -CQ_ENOMEM;
    }
    int rc = 0;
    if (fprintf(x->out, "{\"seq\":%llu,%s\n", (unsigned long long)rec->seq, line + 1) < 0) {
        x->write_errno = errno != 0 ? errno : EIO;
        rc = -CQ_EIO;
    }
    free(line);
    return rc;
}

int cq_journal_export_dir(const char *dir, const struct cq_journal_fs *fs, FILE *out,
                          struct cq_err *err)
{
    return cq_journal_export_dir_filtered(dir, fs, NULL, out, err);
}

int cq_journal_export_dir_filtered(const char *dir, const struct cq_journal_fs *fs,
                                   const struct cq_journal_export_filter *filter, FILE *out,
                                   struct cq_err *err)
{
    struct export_ctx x = {out, 0, filter};
    /* replay's checks first: an export that starts after missing records
     * (pruned with no snapshot covering them, a snapshot ahead of every
     * record) is refused like the replay */
    struct cq_journal__replay r;
    int rc = replay_checked(dir, fs, true, &r, NULL, err);
    if (rc < 0) {
        return rc;
    }
    cq_journal__replay_fini(&r);
    rc = cq_journal_read_dir(dir, fs, 0, export_one, &x, err);
    if (x.write_errno != 0) {
        return cq_err_set(err, CQ_EIO, x.write_errno, "check the output (disk full? closed pipe?)",
                          "writing the export of %s", dir);
    }
    if (rc == 0 && fflush(out) != 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the output (disk full? closed pipe?)",
                          "writing the export of %s", dir);
    }
    return rc;
}

int cq_journal_snapshot_dir(const char *dir, const struct cq_journal_fs *fs, struct cq_err *err)
{
    struct cq_journal__replay r;
    if (fs == NULL) {
        fs = cq_journal_fs_posix();
    }
    int rc = replay_checked(dir, fs, true, &r, NULL, err);
    if (rc < 0) {
        return rc;
    }
    if (r.last_seq == 0 || r.last_seq == r.snapshot_seq) {
        cq_journal__replay_fini(&r);
        return 0; /* nothing new to cover */
    }
    size_t len = 0;
    char *text = cq_journal__state_dump(r.state, &len);
    if (text == NULL) {
        cq_journal__replay_fini(&r);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "snapshot %s", dir);
    }
    rc = cq_journal__snap_write(dir, fs, r.last_seq, r.last_digest, text, len, err);
    free(text);
    cq_journal__replay_fini(&r);
    return rc;
}
