/*
 * format.c — the byte layout (docs/JOURNAL.md, format version 1), names,
 * directory listing, the posix filesystem, and reading segments back.
 *
 * Reading: a seg_reader owns one fd and a window (256 KiB, pread). The
 * walker strings segments together and checks, for every record, in this
 * order: length, CRC32C, field consistency, seq = previous + 1, prev digest
 * = previous record's digest; for every segment: header CRC, number = the
 * file name's = previous + 1, first seq and prev digest = where the previous
 * segment ended. The first failed check stops the walk and is described in
 * walker.prob (segment, offset of the record or 0 for a header, text).
 *
 * Torn tail or corruption? Only a problem in the journal's last segment can
 * be a torn tail (a write the crash interrupted; nothing in it was
 * acknowledged, because a record is acknowledged only after the fdatasync
 * that follows it). The rule, for the first bad record at offset X:
 *   (a) partial: the record runs past the end of the file (or fewer than 36
 *       bytes are left, or a segment header is shorter than 40 bytes) and no
 *       intact record with a later seq starts anywhere after X — an intact
 *       record after it means the length field was damaged, not cut; or
 *   (b) unwritten: the record overlaps a zero-filled sector (a 512-byte
 *       aligned block of at least 16 bytes that is all zero), or everything
 *       from X to the end is zero — what a lost page or a size update without
 *       its data looks like after a power loss.
 * Anything else is corruption. The price of (a): a bit flip in the length of
 * the very last record that makes it reach past the end of the file is taken
 * for a torn write. The price of (b): a damaged record whose payload contains
 * a 512-aligned run of zero bytes is taken for an unwritten one (JSON
 * payloads never contain zero bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal-int.h"

#define READER_WINDOW ((size_t)256 * 1024)

/* ---- record types ------------------------------------------------------------------ */

static const char *const type_names[CQ_REC__MAX] = {
    [CQ_REC_CONFIG_LOADED] = "config.loaded",   [CQ_REC_MARKET_GAP] = "market.gap",
    [CQ_REC_SIGNAL_EMITTED] = "signal.emitted", [CQ_REC_SIGNAL_BLOCKED] = "signal.blocked",
    [CQ_REC_ORDER_INTENT] = "order.intent",     [CQ_REC_ORDER_ACK] = "order.ack",
    [CQ_REC_ORDER_FILL] = "order.fill",         [CQ_REC_ORDER_REJECT] = "order.reject",
    [CQ_REC_RISK_DECISION] = "risk.decision",   [CQ_REC_QUARANTINE] = "quarantine",
    [CQ_REC_UNQUARANTINE] = "unquarantine",     [CQ_REC_NOTE] = "note",
    [CQ_REC_ORDER_REFUSED] = "order.refused",   [CQ_REC_TRADER_CHECKPOINT] = "trader.checkpoint",
};

const char *cq_rec_type_name(uint16_t type)
{
    if (type == 0 || type >= CQ_REC__MAX) {
        return NULL;
    }
    return type_names[type];
}

uint16_t cq_rec_type_parse(const char *name)
{
    if (name == NULL) {
        return 0;
    }
    for (uint16_t t = 1; t < CQ_REC__MAX; t++) {
        if (strcmp(type_names[t], name) == 0) {
            return t;
        }
    }
    return 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

void cq_journal__seg_header_encode(uint8_t out[CQJ_SEG_HDR_BYTES],
                                   const struct cq_journal__seg_header *h)
{
    memset(out, 0, CQJ_SEG_HDR_BYTES);
    memcpy(out, CQJ_SEG_MAGIC, 8);
    cqj_put16(out + 8, CQJ_FORMAT_VERSION);
    cqj_put16(out + 10, CQJ_SEG_HDR_BYTES);
    cqj_put32(out + 12, h->segment);
    cqj_put64(out + 16, h->first_seq);
    cqj_put64(out + 24, h->prev_digest);
    cqj_put32(out + 32, 0); /* flags */
    cqj_put32(out + 36, cq_journal__crc32c(0, out, 36));
}

void cq_journal__rec_encode(uint8_t *out, uint16_t type, const char *scope, size_t scope_len,
                            uint64_t seq, int64_t ts_us, const void *payload, size_t payload_len)
{
    uint32_t len = cq_journal__rec_size(scope_len, payload_len);
    cqj_put32(out + CQJ_R_LEN, len);
    cqj_put16(out + CQJ_R_TYPE, type);
    out[CQJ_R_SCOPE_LEN] = (uint8_t)scope_len;
    out[CQJ_R_FLAGS] = 0;
    cqj_put64(out + CQJ_R_SEQ, seq);
    cqj_put64(out + CQJ_R_TS, (uint64_t)ts_us);
    cqj_put32(out + CQJ_R_PAYLOAD_LEN, (uint32_t)payload_len);
    cqj_put64(out + CQJ_R_PREV, 0);
    memcpy(out + CQJ_REC_HDR_BYTES, scope, scope_len);
    if (payload_len > 0) {
        memcpy(out + CQJ_REC_HDR_BYTES + scope_len, payload, payload_len);
    }
    cqj_put32(out + len - 4, 0);
}

uint64_t cq_journal__rec_seal(uint8_t *rec, uint64_t prev_digest)
{
    uint32_t len = cqj_get32(rec + CQJ_R_LEN);
    cqj_put64(rec + CQJ_R_PREV, prev_digest);
    cqj_put32(rec + len - 4, cq_journal__crc32c(0, rec, len - 4));
    return cq_journal__xxh64(rec, len - 4, CQJ_CHAIN_SEED);
}

bool cq_journal__scope_valid(const char *s, size_t len)
{
    if (len == 0 || len > CQ_JOURNAL_SCOPE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7E) {
            return false;
        }
    }
    return true;
}

bool cq_journal__scope_readable(const uint8_t *s, size_t len)
{
    if (len == 0 || len > CQ_JOURNAL_SCOPE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.' || c == ':' || c == '/' || c == '@';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Both names are bounded: every entry point lists the directory first,
 * which refuses a dir longer than CQJ_DIR_MAX, and CQJ_DIR_MAX plus the
 * longest name ("/snap-<20 digits>.cqs.invalid", 35 bytes) fits CQJ_PATH_MAX. */
void cq_journal__seg_path(char *out, size_t out_len, const char *dir, uint32_t segno)
{
    snprintf(out, out_len, "%s/seg-%08u.cqj", dir, segno);
}

void cq_journal__snap_path(char *out, size_t out_len, const char *dir, uint64_t seq)
{
    snprintf(out, out_len, "%s/snap-%020llu.cqs", dir, (unsigned long long)seq);
}

void cq_journal__rec_view(const struct cq_journal__rec *r, uint32_t segment, uint64_t offset,
                          char scope_buf[CQ_JOURNAL_SCOPE_MAX + 1], struct cq_journal_record *out)
{
    memcpy(scope_buf, r->scope, r->scope_len);
    scope_buf[r->scope_len] = '\0';
    out->seq = r->seq;
    out->ts_us = r->ts_us;
    out->type = r->type;
    out->scope = scope_buf;
    out->payload = r->payload;
    out->payload_len = r->payload_len;
    out->segment = segment;
    out->offset = offset;
}

void cq_journal__problem_str(const struct cq_journal__problem *p, char *out, size_t out_len)
{
    snprintf(out, out_len, "segment %u offset %llu: %s", p->segment, (unsigned long long)p->offset,
             p->text);
}

/* ---- directory listing ------------------------------------------------------------------ */

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return n > 0;
}

static bool parse_seg_name(const char *name, uint32_t *segno)
{
    size_t n = strlen(name);
    if (n < 4 + 8 + 4 || n > 4 + 10 + 4 || strncmp(name, "seg-", 4) != 0 ||
        strcmp(name + n - 4, ".cqj") != 0 || !all_digits(name + 4, n - 8)) {
        return false;
    }
    unsigned long long v = strtoull(name + 4, NULL, 10);
    if (v == 0 || v > UINT32_MAX) {
        return false;
    }
    /* only the name cq_journal__seg_path makes: "seg-000000001.cqj" would
     * otherwise stand for the file "seg-00000001.cqj" */
    char canon[32];
    snprintf(canon, sizeof(canon), "seg-%08u.cqj", (unsigned)v); /* ≤ 18 bytes: fits */
    if (strcmp(canon, name) != 0) {
        return false;
    }
    *segno = (uint32_t)v;
    return true;
}

/* A name that looks meant for the journal (seg-*, snap-*, *.cqj, *.cqs)
 * but is none of the names it uses. */
static bool journal_like(const char *name)
{
    size_t n = strlen(name);
    if (strncmp(name, "seg-", 4) == 0 || strncmp(name, "snap-", 5) == 0) {
        return true;
    }
    return n >= 4 && (strcmp(name + n - 4, ".cqj") == 0 || strcmp(name + n - 4, ".cqs") == 0);
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISLNK(m)  ? "a symbolic link"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

static bool parse_snap_name(const char *name, uint64_t *seq)
{
    size_t n = strlen(name);
    if (n != 5 + 20 + 4 || strncmp(name, "snap-", 5) != 0 || strcmp(name + n - 4, ".cqs") != 0 ||
        !all_digits(name + 5, 20)) {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(name + 5, NULL, 10);
    if (errno != 0) {
        return false;
    }
    *seq = v;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int push(void **arr, size_t *n, size_t *cap, size_t elem, const void *v)
{
    if (*n == *cap) {
        size_t ncap = *cap == 0 ? 16 : *cap * 2;
        void *p = realloc(*arr, ncap * elem);
        if (p == NULL) {
            return -CQ_ENOMEM;
        }
        *arr = p;
        *cap = ncap;
    }
    memcpy((char *)*arr + *n * elem, v, elem);
    (*n)++;
    return 0;
}

/* Note a file the journal will not read (stray: an out-of-pattern name,
 * reported, never deleted; otherwise a journal name on something that is
 * not a regular file, refused). */
static int add_odd(struct cq_journal__dirlist *out, size_t *cap, const char *name, bool stray,
                   const char *why)
{
    struct cq_journal__odd_file f;
    memset(&f, 0, sizeof(f));
    /* bounded: d_name holds at most NAME_MAX (255) bytes, and every reason
     * is a literal or a 96-byte buffer */
    cq_strlcpy(f.name, name, sizeof(f.name));
    cq_strlcpy(f.why, why, sizeof(f.why));
    f.stray = stray;
    if (stray) {
        out->n_stray++;
    } else {
        out->n_refused++;
    }
    return push((void **)&out->odd, &out->n_odd, cap, sizeof(f), &f);
}

int cq_journal__list_dir(const char *dir, struct cq_journal__dirlist *out, struct cq_err *err)
{
    memset(out, 0, sizeof(*out));
    if (strlen(dir) > CQJ_DIR_MAX) {
        return cq_err_set(err, CQ_EINVAL, 0, "use a shorter path",
                          "journal directory path is %zu bytes, the limit is %u", strlen(dir),
                          CQJ_DIR_MAX);
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        return cq_err_set(err, CQ_EIO, errno, "check the journal directory and its permissions",
                          "cannot list %s", dir);
    }
    size_t cap_segs = 0, cap_snaps = 0, cap_tmps = 0, cap_odd = 0;
    int rc = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d)) != NULL) {
        uint32_t segno;
        uint64_t seq;
        const char *name = de->d_name;
        size_t n = strlen(name);
        bool seg = parse_seg_name(name, &segno);
        bool snap = !seg && parse_snap_name(name, &seq);
        if (seg || snap) {
            /* lstat: a FIFO would block open(), a symlink may lead anywhere
             * (/dev/zero never ends), a directory cannot be read */
            struct stat st;
            if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) {
                    continue; /* removed meanwhile */
                }
                char why[96];
                snprintf(why, sizeof(why), "cannot stat: %.70s", strerror(errno));
                rc = add_odd(out, &cap_odd, name, false, why);
                seg = snap = false;
            } else if (!S_ISREG(st.st_mode)) {
                char why[96];
                snprintf(why, sizeof(why), "%s, not a regular file", file_kind(st.st_mode));
                rc = add_odd(out, &cap_odd, name, false, why);
                seg = snap = false;
            }
        }
        if (rc < 0) {
            break;
        }
        if (seg) {
            rc = push((void **)&out->segs, &out->n_segs, &cap_segs, sizeof(segno), &segno);
        } else if (snap) {
            rc = push((void **)&out->snaps, &out->n_snaps, &cap_snaps, sizeof(seq), &seq);
        } else if (n > 4 && strcmp(name + n - 4, ".tmp") == 0 &&
                   (strncmp(name, "seg-", 4) == 0 || strncmp(name, "snap-", 5) == 0)) {
            char *copy = strdup(name);
            rc = copy == NULL
                     ? -CQ_ENOMEM
                     : push((void **)&out->tmps, &out->n_tmps, &cap_tmps, sizeof(copy), &copy);
            if (rc < 0) {
                free(copy);
            }
        } else if (n > 8 && strcmp(name + n - 8, ".invalid") == 0 &&
                   strncmp(name, "snap-", 5) == 0) {
            /* a snapshot recovery set aside: evidence, never read */
        } else if (journal_like(name) &&
                   !(parse_seg_name(name, &segno) || parse_snap_name(name, &seq))) {
            rc = add_odd(out, &cap_odd, name, true,
                         "name out of the journal's pattern (seg-NNNNNNNN.cqj, "
                         "snap-<20 digits>.cqs): not read");
        }
        if (rc < 0) {
            break;
        }
    }
    closedir(d);
    if (rc < 0) {
        cq_journal__dirlist_fini(out);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "listing %s", dir);
    }
    if (out->n_segs > 1) {
        qsort(out->segs, out->n_segs, sizeof(uint32_t), cmp_u32);
    }
    if (out->n_snaps > 1) {
        qsort(out->snaps, out->n_snaps, sizeof(uint64_t), cmp_u64);
    }
    return 0;
}

int cq_journal__dirlist_refused(const struct cq_journal__dirlist *l, const char *dir, char *out,
                                size_t out_len)
{
    for (size_t i = 0; i < l->n_odd; i++) {
        if (!l->odd[i].stray) {
            snprintf(out, out_len, "%.3800s/%s: %s", dir, l->odd[i].name, l->odd[i].why);
            return 1;
        }
    }
    return 0;
}

void cq_journal__dirlist_fini(struct cq_journal__dirlist *l)
{
    for (size_t i = 0; i < l->n_tmps; i++) {
        free(l->tmps[i]);
    }
    free(l->tmps);
    free(l->odd);
    free(l->segs);
    free(l->snaps);
    memset(l, 0, sizeof(*l));
}

/* ---- the posix filesystem ------------------------------------------------------------------ */

static int px_open(void *ctx, const char *path, int flags, mode_t mode)
{
    (void)ctx;
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static ssize_t px_write(void *ctx, int fd, const void *buf, size_t len)
{
    (void)ctx;
    ssize_t n;
    do {
        n = write(fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t px_pread(void *ctx, int fd, void *buf, size_t len, off_t offset)
{
    (void)ctx;
    ssize_t n;
    do {
        n = pread(fd, buf, len, offset);
    } while (n < 0 && errno == EINTR);
    return n;
}

static int px_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd);
}

static int px_fsync_dir(void *ctx, const char *dir)
{
    (void)ctx;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int px_ftruncate(void *ctx, int fd, off_t len)
{
    (void)ctx;
    int rc;
    do {
        rc = ftruncate(fd, len);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static int px_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd);
}

static int px_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    return rename(from, to);
}

static int px_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return unlink(path);
}

static const struct cq_journal_fs posix_fs = {
    px_open,      px_write, px_pread,  px_fdatasync, px_fsync_dir,
    px_ftruncate, px_close, px_rename, px_unlink,    NULL,
};

const struct cq_journal_fs *cq_journal_fs_posix(void)
{
    return &posix_fs;
}

int cq_journal__write_all(const struct cq_journal_fs *fs, int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = fs->write(fs->ctx, fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cq_journal__write_file(const struct cq_journal_fs *fs, const char *path, const void *data,
                           size_t len, struct cq_err *err)
{
    int fd = fs->open(fs->ctx, path, O_WRONLY | O_CREAT | O_TRUNC | CQJ_O_SAFE, 0640);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the directory and free space",
                          "cannot create %s", path);
    }
    if (cq_journal__write_all(fs, fd, data, len) < 0 || fs->fdatasync(fs->ctx, fd) < 0) {
        int e = errno;
        fs->close(fs->ctx, fd);
        return cq_err_set(err, CQ_EIO, e, "check free space and the disk", "cannot write %s", path);
    }
    if (fs->close(fs->ctx, fd) < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot close %s", path);
    }
    return 0;
}

int cq_journal__copy_file(const struct cq_journal_fs *fs, const char *from, const char *to,
                          struct cq_err *err)
{
    enum { CHUNK = 1 << 20 };
    int in = fs->open(fs->ctx, from, O_RDONLY | CQJ_O_SAFE, 0);
    if (in < 0) {
        return cq_err_set(err, CQ_EIO, errno, NULL, "cannot open %s", from);
    }
    int out = fs->open(fs->ctx, to, O_WRONLY | O_CREAT | O_TRUNC | CQJ_O_SAFE, 0640);
    if (out < 0) {
        int e = errno;
        fs->close(fs->ctx, in);
        return cq_err_set(err, CQ_EIO, e, "check free space", "cannot create %s", to);
    }
    uint8_t *buf = malloc(CHUNK);
    int rc = 0;
    if (buf == NULL) {
        rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "copying %s", from);
    }
    for (off_t off = 0; rc == 0;) {
        ssize_t n = fs->pread(fs->ctx, in, buf, CHUNK, off);
        if (n < 0) {
            rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot read %s", from);
            break;
        }
        if (n == 0) {
            break;
        }
        if (cq_journal__write_all(fs, out, buf, (size_t)n) < 0) {
            rc = cq_err_set(err, CQ_EIO, errno, "check free space", "cannot write %s", to);
            break;
        }
        off += n;
    }
    if (rc == 0 && fs->fdatasync(fs->ctx, out) < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, "check the disk", "cannot sync %s", to);
    }
    free(buf);
    fs->close(fs->ctx, in);
    fs->close(fs->ctx, out);
    return rc;
}

/* ---- the segment reader ---------------------------------------------------------------------- */

int cq_journal__reader_open(struct cq_journal__seg_reader *r, const char *dir,
                            const struct cq_journal_fs *fs, uint32_t segno, struct cq_err *err)
{
    char path[CQJ_PATH_MAX];
    memset(r, 0, sizeof(*r));
    r->fs = fs;
    r->fd = -1;
    r->segno = segno;
    cq_journal__seg_path(path, sizeof(path), dir, segno);
    uint64_t size = 0;
    r->fd = cq_journal__open_regular(fs, path, &size, err);
    if (r->fd < 0) {
        return r->fd;
    }
    /* reads stop at the size the file had when it was opened: a reader
     * sees a prefix of a file that grows, and never more than was there */
    r->size_bound = size;
    return 0;
}

int cq_journal__open_regular(const struct cq_journal_fs *fs, const char *path, uint64_t *size,
                             struct cq_err *err)
{
    int fd = fs->open(fs->ctx, path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) {
            return cq_err_set(err, CQ_EIO, e, "move it out of the journal directory",
                              "%s: a symbolic link, not a regular file", path);
        }
        return cq_err_set(err, e == ENOENT ? CQ_ENOTFOUND : CQ_EIO, e, NULL, "cannot open %s",
                          path);
    }
    /* the fs boundary hands out real descriptors (posix and the fakes) */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        fs->close(fs->ctx, fd);
        return cq_err_set(err, CQ_EIO, e, NULL, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        fs->close(fs->ctx, fd);
        return cq_err_set(err, CQ_EIO, 0, "move it out of the journal directory",
                          "%s: %s, not a regular file", path, file_kind(st.st_mode));
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

void cq_journal__reader_close(struct cq_journal__seg_reader *r)
{
    if (r->fd >= 0) {
        r->fs->close(r->fs->ctx, r->fd);
        r->fd = -1;
    }
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->buf_len = 0;
}

ssize_t cq_journal__reader_fill(struct cq_journal__seg_reader *r, uint64_t off, size_t need)
{
    if (r->size_known && off >= r->file_size) {
        return 0;
    }
    uint64_t win_end = r->buf_off + r->buf_len;
    if (r->buf != NULL && off >= r->buf_off) {
        if (off + need <= win_end) {
            return (ssize_t)need;
        }
        if (r->size_known && r->file_size <= win_end) {
            return (ssize_t)(r->file_size - off);
        }
    }
    if (r->buf == NULL) {
        r->cap = READER_WINDOW;
        r->buf = malloc(r->cap);
        if (r->buf == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    size_t got = 0;
    size_t want = r->cap;
    if (off >= r->size_bound) {
        want = 0;
    } else if (r->size_bound - off < want) {
        want = (size_t)(r->size_bound - off);
    }
    if (want < r->cap) {
        r->size_known = true; /* the bound: nothing after it is read */
        r->file_size = off + want;
    }
    while (got < want) {
        ssize_t n = r->fs->pread(r->fs->ctx, r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            r->buf_len = 0;
            return -1;
        }
        if (n == 0) {
            r->size_known = true;
            r->file_size = off + got;
            break;
        }
        got += (size_t)n;
    }
    r->buf_off = off;
    r->buf_len = got;
    return (ssize_t)(got < need ? got : need);
}

int cq_journal__reader_size(struct cq_journal__seg_reader *r, uint64_t *size)
{
    uint64_t off = r->buf_off + r->buf_len;
    while (!r->size_known) {
        ssize_t n = cq_journal__reader_fill(r, off, r->cap > 0 ? r->cap : READER_WINDOW);
        if (n < 0) {
            return -1;
        }
        off += (uint64_t)n;
    }
    *size = r->file_size;
    return 0;
}

static const uint8_t *window_at(const struct cq_journal__seg_reader *r, uint64_t off)
{
    return r->buf + (off - r->buf_off);
}

static void set_problem(struct cq_journal__problem *p, enum cq_journal__problem_kind kind,
                        uint32_t segno, uint64_t off, const char *fmt, ...) CQ_PRINTF(5, 6);

static void set_problem(struct cq_journal__problem *p, enum cq_journal__problem_kind kind,
                        uint32_t segno, uint64_t off, const char *fmt, ...)
{
    va_list ap;
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->segment = segno;
    p->offset = off;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof(p->text), fmt, ap);
    va_end(ap);
}

/* Check a segment header in buf (len bytes available). */
static bool header_decode(const uint8_t *b, size_t avail, uint32_t segno,
                          struct cq_journal__seg_header *h, struct cq_journal__problem *prob)
{
    if (avail < CQJ_SEG_HDR_BYTES) {
        set_problem(prob, CQJ_P_HEADER, segno, 0, "partial segment header (%zu of %u bytes)", avail,
                    CQJ_SEG_HDR_BYTES);
        return false;
    }
    if (memcmp(b, CQJ_SEG_MAGIC, 8) != 0) {
        set_problem(prob, CQJ_P_HEADER, segno, 0, "bad segment header (magic)");
        return false;
    }
    if (cq_journal__crc32c(0, b, 36) != cqj_get32(b + 36)) {
        set_problem(prob, CQJ_P_HEADER, segno, 0, "bad segment header (CRC mismatch)");
        return false;
    }
    h->version = cqj_get16(b + 8);
    if (h->version != CQJ_FORMAT_VERSION || cqj_get16(b + 10) != CQJ_SEG_HDR_BYTES) {
        set_problem(prob, CQJ_P_HEADER, segno, 0,
                    "bad segment header (format version %u, this build reads %u)", h->version,
                    CQJ_FORMAT_VERSION);
        return false;
    }
    h->segment = cqj_get32(b + 12);
    h->first_seq = cqj_get64(b + 16);
    h->prev_digest = cqj_get64(b + 24);
    if (h->segment != segno) {
        set_problem(prob, CQJ_P_HEADER, segno, 0,
                    "bad segment header (it says segment %u, the file name says %u)", h->segment,
                    segno);
        return false;
    }
    if (h->first_seq == 0 || cqj_get32(b + 32) != 0) {
        set_problem(prob, CQJ_P_HEADER, segno, 0, "bad segment header (fields)");
        return false;
    }
    return true;
}

int cq_journal__read_seg_header(const char *dir, const struct cq_journal_fs *fs, uint32_t segno,
                                struct cq_journal__seg_header *h, struct cq_journal__problem *prob,
                                struct cq_err *err)
{
    struct cq_journal__seg_reader r;
    int rc = cq_journal__reader_open(&r, dir, fs, segno, err);
    if (rc < 0) {
        return rc;
    }
    ssize_t n = cq_journal__reader_fill(&r, 0, CQJ_SEG_HDR_BYTES);
    if (n < 0) {
        char path[CQJ_PATH_MAX];
        int e = errno;
        cq_journal__seg_path(path, sizeof(path), dir, segno);
        rc = cq_err_set(err, CQ_EIO, e, "check the file and the disk", "cannot read %s", path);
    } else {
        rc = header_decode(r.buf, (size_t)n, segno, h, prob) ? 0 : 1;
    }
    cq_journal__reader_close(&r);
    return rc;
}

/* ---- the walker
 * ---------------------------------------------------------------------------------- */

void cq_journal__walker_init(struct cq_journal__walker *w, const char *dir,
                             const struct cq_journal_fs *fs, const uint32_t *segs, size_t n_segs,
                             size_t start_idx, bool tail_is_live)
{
    memset(w, 0, sizeof(*w));
    w->dir = dir;
    w->fs = fs;
    w->segs = segs;
    w->n_segs = n_segs;
    w->idx = start_idx;
    w->tail_is_live = tail_is_live;
    w->rd.fd = -1;
}

void cq_journal__walker_fini(struct cq_journal__walker *w)
{
    if (w->rd_open) {
        cq_journal__reader_close(&w->rd);
        w->rd_open = false;
    }
}

/* Is [from, to) all zero? 1 yes, 0 no, -1 I/O. */
static int range_zero(struct cq_journal__seg_reader *r, uint64_t from, uint64_t to)
{
    while (from < to) {
        size_t want = (size_t)(to - from < READER_WINDOW / 2 ? to - from : READER_WINDOW / 2);
        ssize_t n = cq_journal__reader_fill(r, from, want);
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            return 1;
        }
        const uint8_t *p = window_at(r, from);
        for (ssize_t i = 0; i < n; i++) {
            if (p[i] != 0) {
                return 0;
            }
        }
        from += (uint64_t)n;
    }
    return 1;
}

/* Does an intact record with seq >= min_seq start anywhere in (x, size)? */
static int intact_record_after(struct cq_journal__seg_reader *r, uint64_t x, uint64_t size,
                               uint64_t min_seq)
{
    for (uint64_t p = x + 1; p + CQJ_REC_MIN_BYTES <= size; p++) {
        ssize_t n = cq_journal__reader_fill(r, p, CQJ_REC_HDR_BYTES);
        if (n < 0) {
            return -1;
        }
        if ((size_t)n < CQJ_REC_HDR_BYTES) {
            return 0;
        }
        const uint8_t *b = window_at(r, p);
        uint64_t seq = cqj_get64(b + CQJ_R_SEQ);
        uint32_t len = cqj_get32(b + CQJ_R_LEN);
        if (seq < min_seq || seq - min_seq > UINT32_MAX || len < CQJ_REC_MIN_BYTES ||
            len > CQJ_REC_MAX_BYTES || p + len > size) {
            continue;
        }
        n = cq_journal__reader_fill(r, p, len);
        if (n < 0) {
            return -1;
        }
        if ((size_t)n < len) {
            continue;
        }
        b = window_at(r, p);
        if (cq_journal__crc32c(0, b, len - 4) == cqj_get32(b + len - 4)) {
            return 1;
        }
    }
    return 0;
}

/* Is the record at x complete except for its length field? Its length is
 * taken from its scope and payload lengths, and then as "to the end of the
 * file"; with the length field set to it, the CRC must match. 1 yes, 0 no,
 * -1 I/O. */
static int whole_but_length(struct cq_journal__seg_reader *r, uint64_t x, uint64_t size)
{
    if (size - x < CQJ_REC_MIN_BYTES) {
        return 0;
    }
    uint64_t avail = size - x < CQJ_REC_MAX_BYTES ? size - x : CQJ_REC_MAX_BYTES;
    ssize_t n = cq_journal__reader_fill(r, x, (size_t)avail);
    if (n < 0) {
        return -1;
    }
    if ((uint64_t)n < CQJ_REC_HDR_BYTES) {
        return 0;
    }
    const uint8_t *b = window_at(r, x);
    uint64_t by_fields =
        (uint64_t)CQJ_REC_HDR_BYTES + b[CQJ_R_SCOPE_LEN] + cqj_get32(b + CQJ_R_PAYLOAD_LEN) + 4u;
    uint64_t cands[2] = {by_fields, (uint64_t)n};
    for (int i = 0; i < 2; i++) {
        uint64_t len = cands[i];
        if (len < CQJ_REC_MIN_BYTES || len > (uint64_t)n) {
            continue;
        }
        uint8_t lf[4];
        cqj_put32(lf, (uint32_t)len);
        uint32_t crc = cq_journal__crc32c(0, lf, 4);
        crc = cq_journal__crc32c(crc, b + 4, (size_t)len - 8);
        if (crc == cqj_get32(b + len - 4)) {
            return 1;
        }
    }
    return 0;
}

/* Decide whether the problem at w->prob (in the last segment) is a torn tail. */
static int torn_check(struct cq_journal__walker *w, uint32_t claimed_len)
{
    struct cq_journal__seg_reader *r = &w->rd;
    struct cq_journal__problem *p = &w->prob;
    uint64_t size;
    if (cq_journal__reader_size(r, &size) < 0) {
        return -1;
    }
    p->file_size = size;
    uint64_t x = p->offset;
    if (size <= x) {
        p->torn = true;
        return 0;
    }
    uint64_t extent;
    if (p->kind == CQJ_P_HEADER) {
        extent = CQJ_SEG_HDR_BYTES;
    } else if (claimed_len >= CQJ_REC_MIN_BYTES && claimed_len <= CQJ_REC_MAX_BYTES) {
        extent = claimed_len;
    } else {
        extent = CQJ_REC_HDR_BYTES;
    }
    /* (b) unwritten: a zero length field, or a zero sector overlapping the
     * record or right after where it starts, or zeros from x to the end.
     * Zeros look like a lost page, but a zeroed sector or length field in
     * the middle of acknowledged data looks the same: (a) and (b) only make
     * the problem a candidate, and it is a torn tail only when no intact
     * record with a later seq follows it (checked at the end). */
    bool candidate = false;
    if (p->kind != CQJ_P_HEADER && claimed_len == 0) {
        candidate = true;
    }
    uint64_t first_b = (x + CQJ_ZERO_BLOCK - 1) / CQJ_ZERO_BLOCK * CQJ_ZERO_BLOCK;
    uint64_t end = x + extent < size ? x + extent : size;
    if (end <= first_b) {
        end = first_b + 1;
    }
    for (uint64_t b = first_b; !candidate && b < end && b < size; b += CQJ_ZERO_BLOCK) {
        uint64_t e = b + CQJ_ZERO_BLOCK < size ? b + CQJ_ZERO_BLOCK : size;
        if (e - b < CQJ_ZERO_MIN) {
            continue;
        }
        int z = range_zero(r, b, e);
        if (z < 0) {
            return -1;
        }
        candidate = z == 1;
    }
    int z = range_zero(r, x, size);
    if (z < 0) {
        return -1;
    }
    if (z == 1) {
        p->torn = true; /* nothing but zeros after x: nothing can follow */
        return 0;
    }
    /* (a) partial */
    if (p->kind == CQJ_P_PARTIAL || (p->kind == CQJ_P_HEADER && size < CQJ_SEG_HDR_BYTES)) {
        candidate = true;
    }
    if (!candidate) {
        return 0;
    }
    /* and nothing intact after it: a record that checks out with a later seq
     * means the damage sits in the middle of written (and possibly
     * acknowledged) data — corruption, never a tail to cut. The walker
     * only calls this for the journal's last segment, so no later segment
     * exists to look into. */
    int found = intact_record_after(r, x, size, w->have_expect ? w->expect_seq : 1);
    if (found < 0) {
        return -1;
    }
    if (found == 0 && p->kind != CQJ_P_HEADER) {
        /* the record itself whole but for its length field (zeroed, or a
         * bit flip that makes it reach past the end): written in full, so
         * possibly acknowledged — corruption too */
        found = whole_but_length(r, x, size);
        if (found < 0) {
            return -1;
        }
    }
    p->torn = found == 0;
    return 0;
}

/* A read of segment segno failed (errno): the error names the file. */
static int read_error(const struct cq_journal__walker *w, uint32_t segno, struct cq_err *err)
{
    int e = errno;
    char path[CQJ_PATH_MAX];
    cq_journal__seg_path(path, sizeof(path), w->dir, segno);
    return cq_err_set(err, CQ_EIO, e, "check the file and the disk", "cannot read %s", path);
}

static int fail(struct cq_journal__walker *w, uint32_t claimed_len, struct cq_err *err)
{
    bool last = w->idx + 1 == w->n_segs;
    enum cq_journal__problem_kind k = w->prob.kind;
    if (last && w->tail_is_live &&
        (k == CQJ_P_PARTIAL || k == CQJ_P_LENGTH || k == CQJ_P_CRC || k == CQJ_P_FIELDS ||
         k == CQJ_P_HEADER)) {
        if (torn_check(w, claimed_len) < 0) {
            return read_error(w, w->rd.segno, err);
        }
    }
    w->idx = w->n_segs; /* sticky: the walk is over */
    return 2;
}

static int enter_segment(struct cq_journal__walker *w, struct cq_err *err)
{
    uint32_t segno = w->segs[w->idx];
    int rc = cq_journal__reader_open(&w->rd, w->dir, w->fs, segno, err);
    if (rc < 0) {
        return rc;
    }
    w->rd_open = true;
    if (w->last_segno != 0 && segno != w->last_segno + 1) {
        set_problem(&w->prob, CQJ_P_MISSING, segno, 0, "segment %u missing", w->last_segno + 1);
        if (segno - w->last_segno > 2) {
            snprintf(w->prob.text, sizeof(w->prob.text), "segments %u to %u missing",
                     w->last_segno + 1, segno - 1);
        }
        return fail(w, 0, err);
    }
    ssize_t n = cq_journal__reader_fill(&w->rd, 0, CQJ_SEG_HDR_BYTES);
    if (n < 0) {
        return read_error(w, segno, err);
    }
    struct cq_journal__seg_header h;
    if (!header_decode(w->rd.buf, (size_t)n, segno, &h, &w->prob)) {
        return fail(w, 0, err);
    }
    if (w->have_expect) {
        if (h.first_seq != w->expect_seq) {
            set_problem(&w->prob, CQJ_P_SEQ, segno, 0,
                        "seq gap across segments: segment %u starts at %llu, expected %llu", segno,
                        (unsigned long long)h.first_seq, (unsigned long long)w->expect_seq);
            return fail(w, 0, err);
        }
        if (h.prev_digest != w->expect_digest) {
            set_problem(&w->prob, CQJ_P_CHAIN, segno, 0, "hash chain broken across segments");
            return fail(w, 0, err);
        }
    } else {
        w->have_expect = true;
        w->expect_seq = h.first_seq;
        w->expect_digest = h.prev_digest;
        if (w->anchor_set && !w->anchor_checked && h.first_seq == w->anchor_seq + 1) {
            w->anchor_checked = true;
            if (h.prev_digest != w->anchor_digest) {
                set_problem(&w->prob, CQJ_P_ANCHOR, segno, 0,
                            "segment does not chain to the snapshot at seq %llu",
                            (unsigned long long)w->anchor_seq);
                return fail(w, 0, err);
            }
        }
    }
    w->rd.hdr = h;
    w->rd.off = CQJ_SEG_HDR_BYTES;
    w->last_segno = segno;
    w->end_offset = CQJ_SEG_HDR_BYTES;
    w->bytes += CQJ_SEG_HDR_BYTES;
    return 0;
}

int cq_journal__walker_next(struct cq_journal__walker *w, struct cq_journal__rec *rec,
                            struct cq_err *err)
{
    for (;;) {
        if (w->idx >= w->n_segs) {
            return w->prob.kind != CQJ_P_NONE ? 2 : 0;
        }
        if (!w->rd_open) {
            int rc = enter_segment(w, err);
            if (rc != 0) {
                return rc;
            }
        }
        struct cq_journal__seg_reader *r = &w->rd;
        uint32_t segno = r->segno;
        uint64_t x = r->off;
        ssize_t n = cq_journal__reader_fill(r, x, CQJ_REC_HDR_BYTES);
        if (n < 0) {
            return read_error(w, segno, err);
        }
        if (n == 0) {
            cq_journal__reader_close(r);
            w->rd_open = false;
            w->idx++;
            continue;
        }
        if ((size_t)n < CQJ_REC_HDR_BYTES) {
            set_problem(&w->prob, CQJ_P_PARTIAL, segno, x,
                        "truncated record (%zd bytes left, a record has at least %u)", n,
                        CQJ_REC_MIN_BYTES);
            return fail(w, n >= 4 ? cqj_get32(window_at(r, x)) : UINT32_MAX, err);
        }
        uint32_t len = cqj_get32(window_at(r, x) + CQJ_R_LEN);
        if (len < CQJ_REC_MIN_BYTES || len > CQJ_REC_MAX_BYTES) {
            set_problem(&w->prob, CQJ_P_LENGTH, segno, x, "bad record length %u", len);
            return fail(w, len, err);
        }
        n = cq_journal__reader_fill(r, x, len);
        if (n < 0) {
            return read_error(w, segno, err);
        }
        if ((size_t)n < len) {
            set_problem(&w->prob, CQJ_P_PARTIAL, segno, x, "truncated record (%zd of %u bytes)", n,
                        len);
            return fail(w, len, err);
        }
        const uint8_t *b = window_at(r, x);
        if (cq_journal__crc32c(0, b, len - 4) != cqj_get32(b + len - 4)) {
            set_problem(&w->prob, CQJ_P_CRC, segno, x, "CRC mismatch");
            return fail(w, len, err);
        }
        rec->len = len;
        rec->type = cqj_get16(b + CQJ_R_TYPE);
        rec->scope_len = b[CQJ_R_SCOPE_LEN];
        rec->seq = cqj_get64(b + CQJ_R_SEQ);
        rec->ts_us = (int64_t)cqj_get64(b + CQJ_R_TS);
        rec->payload_len = cqj_get32(b + CQJ_R_PAYLOAD_LEN);
        rec->prev_digest = cqj_get64(b + CQJ_R_PREV);
        rec->scope = b + CQJ_REC_HDR_BYTES;
        rec->payload = rec->scope + rec->scope_len;
        rec->bytes = b;
        uint8_t flags = b[CQJ_R_FLAGS];
        bool seq_skip = (flags & CQJ_REC_FLAG_SEQ_SKIP) != 0;
        if ((flags & ~CQJ_REC_FLAG_SEQ_SKIP) != 0 || (seq_skip && rec->type != CQ_REC_QUARANTINE) ||
            rec->scope_len > CQ_JOURNAL_SCOPE_MAX ||
            (uint64_t)CQJ_REC_HDR_BYTES + rec->scope_len + rec->payload_len + 4 != len ||
            !cq_journal__scope_valid((const char *)rec->scope, rec->scope_len) || rec->type == 0) {
            set_problem(&w->prob, CQJ_P_FIELDS, segno, x, "record fields inconsistent");
            return fail(w, len, err);
        }
        if (rec->payload_len > CQ_JOURNAL_PAYLOAD_MAX) {
            set_problem(&w->prob, CQJ_P_FIELDS, segno, x,
                        "payload of %u bytes is over the limit of %u bytes", rec->payload_len,
                        (unsigned)CQ_JOURNAL_PAYLOAD_MAX);
            return fail(w, len, err);
        }
        if (rec->ts_us < CQ_JOURNAL_TS_MIN_US || rec->ts_us > CQ_JOURNAL_TS_MAX_US) {
            set_problem(&w->prob, CQJ_P_FIELDS, segno, x,
                        "timestamp %lld us is outside 1970-01-01 .. 9999-12-31 UTC",
                        (long long)rec->ts_us);
            return fail(w, len, err);
        }
        if (!w->have_expect) {
            /* cannot happen: entering a segment sets the expectation */
            w->have_expect = true;
            w->expect_seq = rec->seq;
            w->expect_digest = rec->prev_digest;
        }
        /* A quarantine record written by recovery's cut may jump over the seqs
         * of the records cut off (flag SEQ_SKIP), so a seq is never used
         * twice; nothing else may skip, and nothing may repeat or go back. */
        if (rec->seq != w->expect_seq && !(seq_skip && rec->seq > w->expect_seq)) {
            if (rec->seq > w->expect_seq) {
                set_problem(&w->prob, CQJ_P_SEQ, segno, x, "seq gap %llu -> %llu",
                            (unsigned long long)(w->expect_seq - 1), (unsigned long long)rec->seq);
            } else {
                set_problem(&w->prob, CQJ_P_SEQ, segno, x,
                            "seq out of order: expected %llu, found %llu",
                            (unsigned long long)w->expect_seq, (unsigned long long)rec->seq);
            }
            return fail(w, len, err);
        }
        if (rec->prev_digest != w->expect_digest) {
            set_problem(&w->prob, CQJ_P_CHAIN, segno, x, "hash chain broken");
            return fail(w, len, err);
        }
        rec->digest = cq_journal__xxh64(b, len - 4, CQJ_CHAIN_SEED);
        if (w->anchor_set && !w->anchor_checked && rec->seq == w->anchor_seq) {
            w->anchor_checked = true;
            if (rec->digest != w->anchor_digest) {
                set_problem(&w->prob, CQJ_P_ANCHOR, segno, x,
                            "record %llu does not match the snapshot's chain digest",
                            (unsigned long long)rec->seq);
                return fail(w, len, err);
            }
        }
        w->expect_seq = rec->seq + 1;
        w->expect_digest = rec->digest;
        r->off = x + len;
        w->end_offset = r->off;
        w->bytes += len;
        return 1;
    }
}
