/*
 * journal-int.h — private to the journal module (the .c files in server/journal/) and its
 * tests. The public interface is include/cq/journal.h; the on-disk format is
 * docs/JOURNAL.md (format version 1).
 *
 * Pieces and who uses them:
 *   hash.c     CRC32C (SSE4.2 when the CPU has it, slicing-by-8 otherwise)
 *              and XXH64 (the hash chain). Pure functions, any thread.
 *   format.c   byte layout of segment headers and records, file names,
 *              directory listing, the posix filesystem, the segment reader
 *              and the walker (record -> record across segments, checking
 *              lengths, CRCs, seq continuity and the hash chain, and telling
 *              a torn tail from corruption). Readers own their buffers and
 *              fds: any thread may run its own.
 *   state.c    the canonical state (the reducer over records).
 *   snapshot.c snapshot files: write atomically, read and check.
 *   verify.c   verify_dir, read_dir, replay_dir, export_dir, snapshot_dir.
 *   recover.c  what cq_journal_open does to a directory (snapshot choice,
 *              torn-tail truncation, the corruption cut and quarantine, the
 *              debug bundle).
 *   writer.c   the live journal: queue, writer thread, group commit,
 *              pause/fail, snapshots and retention, background verify,
 *              health and stats.
 */
#ifndef CQ_JOURNAL_INT_H
#define CQ_JOURNAL_INT_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cq/journal.h"

/* ---- format constants (docs/JOURNAL.md) ----------------------------------------- */

#define CQJ_FORMAT_VERSION 1
#define CQJ_SEG_MAGIC "CQJSEG\r\n" /* 8 bytes */
#define CQJ_SEG_HDR_BYTES 40u
#define CQJ_REC_HDR_BYTES 36u /* fixed part before scope and payload */
#define CQJ_REC_MIN_BYTES 40u /* empty scope and payload, plus the CRC */
#define CQJ_REC_MAX_BYTES (CQJ_REC_HDR_BYTES + CQ_JOURNAL_SCOPE_MAX + CQ_JOURNAL_PAYLOAD_MAX + 4u)
#define CQJ_SNAP_MAGIC "CQJSNAP\n" /* 8 bytes */
#define CQJ_SNAP_HDR_BYTES 48u
#define CQJ_SNAP_STATE_MAX ((uint64_t)1 << 30) /* largest state a snapshot may hold */
#define CQJ_CHAIN_SEED 0u                      /* XXH64 seed of the hash chain */
#define CQJ_ZERO_BLOCK 512u                    /* sector size for the torn-tail rule */
#define CQJ_ZERO_MIN 16u                       /* shortest zero run counted as unwritten */
#define CQJ_PATH_MAX 4096
/* Longest journal directory path, bytes. Every path made from it fits
 * CQJ_PATH_MAX and the "%.4000s" bounds in recover.c without a cut: the
 * bundle directory is at most CQJ_DIR_MAX + 8 ("/bundles") + 40
 * ("/journal-corrupt-<stamp>-NNN"), and the longest file name added to
 * any of them is 35 bytes ("/snap-<20 digits>.cqs.invalid"). */
#define CQJ_DIR_MAX 3800u
/* Added to every open of a journal file: never block on a FIFO put where a
 * file is expected, never follow a symlink (no effect on regular files). */
#define CQJ_O_SAFE (O_NOFOLLOW | O_NONBLOCK)

/* Record flags (byte 7). SEQ_SKIP: only on a quarantine record written by
 * recovery's cut: its seq may be more than the previous + 1, because the
 * seqs in between belong to the records cut off into the bundle and are
 * never used again. Every other bit must be 0. */
#define CQJ_REC_FLAG_SEQ_SKIP 0x01u

/* Record field offsets. */
#define CQJ_R_LEN 0
#define CQJ_R_TYPE 4
#define CQJ_R_SCOPE_LEN 6
#define CQJ_R_FLAGS 7
#define CQJ_R_SEQ 8
#define CQJ_R_TS 16
#define CQJ_R_PAYLOAD_LEN 24
#define CQJ_R_PREV 28

/* ---- little-endian helpers ---------------------------------------------------------- */

/* The format is little-endian. On little-endian hosts a field is one
 * unaligned load or store (memcpy); elsewhere it is assembled byte by byte. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline void cqj_put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline void cqj_put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void cqj_put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint16_t cqj_get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t cqj_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t cqj_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
#else
static inline void cqj_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void cqj_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline void cqj_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline uint16_t cqj_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t cqj_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}
static inline uint64_t cqj_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}
#endif

/* ---- hash.c ------------------------------------------------------------------------ */

/* CRC32C (Castagnoli, reflected 0x82F63B78) of buf, continuing from crc (the
 * finished CRC of what came before; 0 to start). "123456789" -> 0xE3069283. */
uint32_t cq_journal__crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable slicing-by-8 path, for tests comparing it with the hardware one. */
uint32_t cq_journal__crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* XXH64 (xxHash, 64-bit). "abc", seed 0 -> 0x44BC2CF5AD770999. */
uint64_t cq_journal__xxh64(const void *buf, size_t len, uint64_t seed);

/* ---- format.c: headers, records, names ------------------------------------------------ */

struct cq_journal__seg_header {
    uint16_t version;
    uint32_t segment;
    uint64_t first_seq;
    uint64_t prev_digest;
};

void cq_journal__seg_header_encode(uint8_t out[CQJ_SEG_HDR_BYTES],
                                   const struct cq_journal__seg_header *h);

/* A record as decoded from its bytes (borrowed pointers). */
struct cq_journal__rec {
    uint32_t len;
    uint16_t type;
    uint8_t scope_len;
    uint64_t seq;
    int64_t ts_us;
    uint32_t payload_len;
    uint64_t prev_digest;
    const uint8_t *scope;
    const uint8_t *payload;
    uint64_t digest; /* XXH64 of bytes [0, len - 4): what the next record chains to */
    const uint8_t *bytes;
};

/* Size of the record for these lengths. */
static inline uint32_t cq_journal__rec_size(size_t scope_len, size_t payload_len)
{
    return (uint32_t)(CQJ_REC_HDR_BYTES + scope_len + payload_len + 4u);
}

/* A view of the encoded (already checked) record at b: the fixed fields,
 * the scope copied NUL-terminated into scope, the payload borrowed from b.
 * segment and offset are the caller's to set. */
static inline void cq_journal__record_view(const uint8_t *b, char scope[CQ_JOURNAL_SCOPE_MAX + 1],
                                           struct cq_journal_record *v)
{
    uint8_t sl = b[CQJ_R_SCOPE_LEN];
    memcpy(scope, b + CQJ_REC_HDR_BYTES, sl);
    scope[sl] = '\0';
    v->seq = cqj_get64(b + CQJ_R_SEQ);
    v->ts_us = (int64_t)cqj_get64(b + CQJ_R_TS);
    v->type = cqj_get16(b + CQJ_R_TYPE);
    v->scope = scope;
    v->payload = b + CQJ_REC_HDR_BYTES + sl;
    v->payload_len = cqj_get32(b + CQJ_R_PAYLOAD_LEN);
    v->segment = 0;
    v->offset = 0;
}

/* A wall-clock reading as a record's timestamp: clamped into
 * [CQ_JOURNAL_TS_MIN_US, CQ_JOURNAL_TS_MAX_US], the range readers accept. */
static inline int64_t cq_journal__ts_clamp(int64_t wall_us)
{
    return wall_us < CQ_JOURNAL_TS_MIN_US   ? CQ_JOURNAL_TS_MIN_US
           : wall_us > CQ_JOURNAL_TS_MAX_US ? CQ_JOURNAL_TS_MAX_US
                                            : wall_us;
}

/* Write the fields of a record (prev digest and CRC zero) into out, which
 * has cq_journal__rec_size() bytes. */
void cq_journal__rec_encode(uint8_t *out, uint16_t type, const char *scope, size_t scope_len,
                            uint64_t seq, int64_t ts_us, const void *payload, size_t payload_len);
/* Fill in prev_digest and the CRC of an encoded record; returns its digest. */
uint64_t cq_journal__rec_seal(uint8_t *rec, uint64_t prev_digest);

/* Scope names: 1..31 printable ASCII bytes, no spaces. */
bool cq_journal__scope_valid(const char *s, size_t len);

/* "seg-00000001.cqj", "snap-00000000000000000042.cqs" under dir. */
void cq_journal__seg_path(char *out, size_t out_len, const char *dir, uint32_t segno);
void cq_journal__snap_path(char *out, size_t out_len, const char *dir, uint64_t seq);

/* A directory entry the journal does not read. */
struct cq_journal__odd_file {
    char name[256]; /* the entry's name (NAME_MAX fits) */
    char why[128];  /* "a FIFO, not a regular file", "name out of the journal's pattern …" */
    bool stray;     /* an out-of-pattern name (reported); else a journal name on
                     * something that is not a regular file (refused) */
};

struct cq_journal__dirlist {
    uint32_t *segs; /* owned; ascending; regular files only */
    size_t n_segs;
    uint64_t *snaps; /* owned; ascending by seq; regular files only */
    size_t n_snaps;
    char **tmps; /* owned; leftover "*.tmp" files (names, not paths) */
    size_t n_tmps;
    struct cq_journal__odd_file *odd; /* owned; in directory order */
    size_t n_odd;
    size_t n_refused, n_stray; /* how many of odd are which */
};

/* List dir (opendir: the fs boundary has no readdir; the fakes wrap a real
 * directory). A missing dir lists as empty. Entries named like a segment or
 * a snapshot that are not regular files (lstat: FIFOs, symlinks, devices,
 * directories) are not listed as such but in odd (refused), and so are
 * journal-like names out of the pattern (stray). */
int cq_journal__list_dir(const char *dir, struct cq_journal__dirlist *out, struct cq_err *err);
void cq_journal__dirlist_fini(struct cq_journal__dirlist *l);
/* 1 and a message naming the first refused entry's path and the fix, 0 when none. */
int cq_journal__dirlist_refused(const struct cq_journal__dirlist *l, const char *dir, char *out,
                                size_t out_len);
/* Open path for reading without blocking or following a symlink (a FIFO,
 * a symlink to /dev/zero), and only if it is a regular file: the fd and
 * *size, or a negative code with err naming the path. */
int cq_journal__open_regular(const struct cq_journal_fs *fs, const char *path, uint64_t *size,
                             struct cq_err *err);

/* ---- format.c: reading segments -------------------------------------------------------- */

enum cq_journal__problem_kind {
    CQJ_P_NONE,
    CQJ_P_PARTIAL, /* a record runs past the end of the file */
    CQJ_P_LENGTH,  /* an impossible record length */
    CQJ_P_CRC,     /* CRC mismatch */
    CQJ_P_FIELDS,  /* CRC fine but the fields contradict each other */
    CQJ_P_HEADER,  /* bad or partial segment header */
    CQJ_P_SEQ,     /* seq gap, duplicate or out of order */
    CQJ_P_CHAIN,   /* hash chain broken */
    CQJ_P_MISSING, /* a whole segment (or the records before the first) missing */
    CQJ_P_ANCHOR,  /* the snapshot's chain digest does not match the records */
};

struct cq_journal__problem {
    enum cq_journal__problem_kind kind;
    uint32_t segment;
    uint64_t offset;
    bool torn;          /* a partial write at the end of the last segment */
    uint64_t file_size; /* of that segment (when torn) */
    char text[200];     /* "CRC mismatch", "seq gap 41 -> 43", … */
};

/* Reads one segment file through the fs boundary with pread into a window. */
struct cq_journal__seg_reader {
    const struct cq_journal_fs *fs;
    int fd;
    uint32_t segno;
    struct cq_journal__seg_header hdr;
    uint8_t *buf; /* owned window */
    size_t cap;
    uint64_t buf_off; /* file offset of buf[0] */
    size_t buf_len;
    bool size_known;
    uint64_t file_size;
    uint64_t size_bound; /* the size at open (fstat): reads never go past it */
    uint64_t off;        /* offset of the next record */
};

/* The walker: records in order across a list of segments, checking each
 * record (length, CRC, fields) and the links between them (seq + 1, the hash
 * chain, segment numbers, each segment header's first seq and prev digest). */
struct cq_journal__walker {
    const char *dir;                /* borrowed */
    const struct cq_journal_fs *fs; /* borrowed */
    const uint32_t *segs;           /* borrowed, ascending */
    size_t n_segs;
    size_t idx;        /* segment being read */
    bool tail_is_live; /* segs[n-1] is the journal's last segment: torn tails possible */
    struct cq_journal__seg_reader rd;
    bool rd_open;
    bool have_expect; /* expect_* are known (else the first header sets them) */
    uint64_t expect_seq;
    uint64_t expect_digest;
    bool anchor_set; /* record anchor_seq must have digest anchor_digest */
    bool anchor_checked;
    uint64_t anchor_seq;
    uint64_t anchor_digest;
    uint32_t last_segno;             /* last segment entered */
    uint64_t end_offset;             /* end of the last good record in last_segno */
    uint64_t bytes;                  /* bytes of records and headers checked */
    struct cq_journal__problem prob; /* when walk_next returned 2 */
};

void cq_journal__walker_init(struct cq_journal__walker *w, const char *dir,
                             const struct cq_journal_fs *fs, const uint32_t *segs, size_t n_segs,
                             size_t start_idx, bool tail_is_live);
/* 1: *rec is the next record (borrowed until the next call); 0: the end;
 * 2: w->prob describes the first problem; negative: I/O error (err). */
int cq_journal__walker_next(struct cq_journal__walker *w, struct cq_journal__rec *rec,
                            struct cq_err *err);
void cq_journal__walker_fini(struct cq_journal__walker *w);

/* Read the header of segment segno: 0 and *h, 1 when the header is bad
 * (prob filled), negative on I/O error. */
int cq_journal__read_seg_header(const char *dir, const struct cq_journal_fs *fs, uint32_t segno,
                                struct cq_journal__seg_header *h, struct cq_journal__problem *prob,
                                struct cq_err *err);

/* Open a segment for reading (fd owned by the reader). */
int cq_journal__reader_open(struct cq_journal__seg_reader *r, const char *dir,
                            const struct cq_journal_fs *fs, uint32_t segno, struct cq_err *err);
void cq_journal__reader_close(struct cq_journal__seg_reader *r);
/* Make [off, off + need) available in the window; returns how many bytes from
 * off are available (less at the end of the file) or negative (I/O). */
ssize_t cq_journal__reader_fill(struct cq_journal__seg_reader *r, uint64_t off, size_t need);
/* Size of the file (reads to the end once). */
int cq_journal__reader_size(struct cq_journal__seg_reader *r, uint64_t *size);

/* Whether a scope read from a damaged record looks like a real scope name. */
bool cq_journal__scope_readable(const uint8_t *s, size_t len);

/* One-line description "segment 3 offset 4096: CRC mismatch". */
void cq_journal__problem_str(const struct cq_journal__problem *p, char *out, size_t out_len);

/* Copy a file through the fs boundary (for evidence in bundles); the copy is
 * fdatasync'ed. */
int cq_journal__copy_file(const struct cq_journal_fs *fs, const char *from, const char *to,
                          struct cq_err *err);
/* Write a whole file (O_TRUNC), fdatasync it. */
int cq_journal__write_file(const struct cq_journal_fs *fs, const char *path, const void *data,
                           size_t len, struct cq_err *err);
/* write() until done; a short write is continued, an error returned (errno set). */
int cq_journal__write_all(const struct cq_journal_fs *fs, int fd, const void *buf, size_t len);

/* ---- state.c ------------------------------------------------------------------------- */

struct cq_journal__state;

struct cq_journal__state *cq_journal__state_new(void);
void cq_journal__state_free(struct cq_journal__state *s);
/* Apply one record (seq must be last_seq + 1). -CQ_ENOMEM. */
int cq_journal__state_apply(struct cq_journal__state *s, const struct cq_journal_record *rec);
uint64_t cq_journal__state_last_seq(const struct cq_journal__state *s);
/* The canonical JSON (new reference); NULL on ENOMEM. */
json_t *cq_journal__state_to_json(const struct cq_journal__state *s);
/* The canonical dump (what cq_journal_state_dump prints for the state's JSON,
 * trailing newline included) straight from the tables; caller frees. NULL
 * on ENOMEM. */
char *cq_journal__state_dump(const struct cq_journal__state *s, size_t *len);
/* Load a state from canonical JSON (a snapshot). -CQ_EPARSE names what is wrong. */
int cq_journal__state_from_json(struct cq_journal__state *s, const json_t *j, struct cq_err *err);
/* Quarantined scopes, in name order. */
void cq_journal__state_foreach_quarantined(const struct cq_journal__state *s,
                                           void (*fn)(const char *scope, const char *reason,
                                                      void *ctx),
                                           void *ctx);
/* Convert a decoded record into the public view (scope copied into scope_buf). */
void cq_journal__rec_view(const struct cq_journal__rec *r, uint32_t segment, uint64_t offset,
                          char scope_buf[CQ_JOURNAL_SCOPE_MAX + 1], struct cq_journal_record *out);

/* ---- snapshot.c ------------------------------------------------------------------------ */

struct cq_journal__snapshot {
    uint64_t seq;
    uint64_t digest;                 /* chain digest of record seq (0 when seq is 0) */
    struct cq_journal__state *state; /* owned */
};

/* Write snap-<seq>.cqs atomically: <name>.tmp, fdatasync, rename, fsync dir. */
int cq_journal__snap_write(const char *dir, const struct cq_journal_fs *fs, uint64_t seq,
                           uint64_t digest, const char *state_text, size_t state_len,
                           struct cq_err *err);
/* Read and check one snapshot. -CQ_EPARSE: damaged (err says how). */
int cq_journal__snap_read(const char *dir, const struct cq_journal_fs *fs, uint64_t seq,
                          struct cq_journal__snapshot *out, struct cq_err *err);
void cq_journal__snapshot_fini(struct cq_journal__snapshot *s);

/* ---- verify.c: the shared replay engine ------------------------------------------------- */

/* Result of replaying a directory: the newest usable snapshot plus the tail. */
struct cq_journal__replay {
    struct cq_journal__dirlist list;
    struct cq_journal__state *state; /* owned */
    uint64_t snapshot_seq;           /* 0 = none used */
    uint64_t replayed;               /* tail records applied */
    uint64_t last_seq;               /* last good record */
    uint64_t last_digest;
    uint32_t last_segno; /* segment of the last good record (0 = none) */
    uint64_t last_end;   /* end offset of the last good record in it */
    bool have_problem;   /* the walk stopped at prob (torn or not) */
    struct cq_journal__problem prob;
    uint64_t bad_snapshots[16]; /* snapshots that could not be used */
    char bad_snapshot_why[16][160];
    size_t n_bad_snapshots;
    bool head_missing;           /* no usable snapshot and segments start after seq 1 */
    uint64_t ahead_snapshot_seq; /* a checksum-valid snapshot beyond the last record */
};

/* Replay dir. fn (may be NULL) sees every tail record. Returns 0 when the
 * replay ran (look at have_problem), negative on I/O or memory errors. */
int cq_journal__replay_run(const char *dir, const struct cq_journal_fs *fs, bool use_snapshot,
                           int (*fn)(void *ctx, const struct cq_journal_record *rec), void *ctx,
                           struct cq_journal__replay *out, struct cq_err *err);
void cq_journal__replay_fini(struct cq_journal__replay *r);

/* The verify report as JSON (for bundles and the command line). */
json_t *cq_journal__verify_report_json(const struct cq_journal_verify_report *rep);

/* ---- recover.c ------------------------------------------------------------------------- */

struct cq_journal__seginfo {
    uint32_t segno;
    uint64_t first_seq;
};

/* What cq_journal_open continues from. */
struct cq_journal__recovered {
    struct cq_journal__state *state; /* owned */
    uint64_t last_seq;
    uint64_t last_digest;
    struct cq_journal__seginfo *segs; /* owned, ascending; the last one is where appends go */
    size_t n_segs;
    uint64_t active_size;  /* valid bytes of the last segment */
    uint64_t snapshot_seq; /* newest snapshot on disk after recovery (0 = none) */
    bool corrupt;          /* recovery found corruption (health journal_corrupt) */
    uint32_t corrupt_segment;
    uint64_t corrupt_offset;
    char corrupt_detail[256];  /* "segment 3 offset 4096: CRC mismatch" */
    char bundle[CQJ_PATH_MAX]; /* debug bundle written ("" = none) */
};

/* Recover dir (see recover.c): fills *out and the public *rec. */
int cq_journal__recover(const char *dir, const struct cq_journal_fs *fs,
                        const struct cq_clock *clock, struct cq_journal_recovery *rec,
                        struct cq_journal__recovered *out, struct cq_err *err);
void cq_journal__recovered_fini(struct cq_journal__recovered *r);

/* How many times the writer came back from an idle wait (timeout or signal),
 * since open: the tests' measure that an idle writer sleeps to its deadlines. */
uint64_t cq_journal__idle_wakeups(struct cq_journal *j);

#endif /* CQ_JOURNAL_INT_H */
