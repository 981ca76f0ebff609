/*
 * snapshot.c — snapshot files: snap-<seq, 20 digits>.cqs (docs/JOURNAL.md).
 *
 *   0  magic "CQJSNAP\n"        16 u64 last seq          40 u32 CRC32C of the state
 *   8  u16 version (1)          24 u64 chain digest      44 u32 CRC32C of bytes 0..43
 *   10 u16 header length (48)   32 u64 state length      48 state: canonical JSON + "\n"
 *   12 u32 flags (0)
 *
 * Written atomically through the fs boundary: <name>.tmp, fdatasync, close,
 * rename, fsync of the directory. A crash before the rename leaves the old
 * snapshots untouched and a .tmp file that the next open removes. Any thread
 * may read; the writer thread (or the offline snapshot command) writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal-int.h"

int cq_journal__snap_write(const char *dir, const struct cq_journal_fs *fs, uint64_t seq,
                           uint64_t digest, const char *state_text, size_t state_len,
                           struct cq_err *err)
{
    char path[CQJ_PATH_MAX], tmp[CQJ_PATH_MAX + 8];
    uint8_t h[CQJ_SNAP_HDR_BYTES];
    memset(h, 0, sizeof(h));
    memcpy(h, CQJ_SNAP_MAGIC, 8);
    cqj_put16(h + 8, CQJ_FORMAT_VERSION);
    cqj_put16(h + 10, CQJ_SNAP_HDR_BYTES);
    cqj_put64(h + 16, seq);
    cqj_put64(h + 24, digest);
    cqj_put64(h + 32, state_len);
    cqj_put32(h + 40, cq_journal__crc32c(0, state_text, state_len));
    cqj_put32(h + 44, cq_journal__crc32c(0, h, 44));

    cq_journal__snap_path(path, sizeof(path), dir, seq);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = fs->open(fs->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC | CQJ_O_SAFE, 0640);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check free space in the journal directory",
                          "cannot create %s", tmp);
    }
    const char *step = "write";
    if (cq_journal__write_all(fs, fd, h, sizeof(h)) < 0 ||
        cq_journal__write_all(fs, fd, state_text, state_len) < 0 ||
        (step = "fdatasync", fs->fdatasync(fs->ctx, fd) < 0)) {
        int e = errno;
        fs->close(fs->ctx, fd);
        fs->unlink(fs->ctx, tmp);
        return cq_err_set(err, CQ_EIO, e, "check free space and the disk", "snapshot %s of %s",
                          step, tmp);
    }
    if (fs->close(fs->ctx, fd) < 0) {
        int e = errno;
        fs->unlink(fs->ctx, tmp);
        return cq_err_set(err, CQ_EIO, e, "check the disk", "close %s", tmp);
    }
    if (fs->rename(fs->ctx, tmp, path) < 0) {
        int e = errno;
        fs->unlink(fs->ctx, tmp);
        return cq_err_set(err, CQ_EIO, e, "check the journal directory", "rename %s", tmp);
    }
    if (fs->fsync_dir(fs->ctx, dir) < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the disk", "fsync directory %s", dir);
    }
    return 0;
}

void cq_journal__snapshot_fini(struct cq_journal__snapshot *s)
{
    cq_journal__state_free(s->state);
    memset(s, 0, sizeof(*s));
}

static ssize_t pread_all(const struct cq_journal_fs *fs, int fd, void *buf, size_t len,
                         uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = fs->pread(fs->ctx, fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int cq_journal__snap_read(const char *dir, const struct cq_journal_fs *fs, uint64_t seq,
                          struct cq_journal__snapshot *out, struct cq_err *err)
{
    char path[CQJ_PATH_MAX];
    const char *hint = "the snapshot is damaged; an older one (or the segments) is used";
    memset(out, 0, sizeof(*out));
    cq_journal__snap_path(path, sizeof(path), dir, seq);
    uint64_t size = 0;
    int fd = cq_journal__open_regular(fs, path, &size, err);
    if (fd < 0) {
        return fd;
    }
    uint8_t h[CQJ_SNAP_HDR_BYTES];
    char *text = NULL;
    json_t *j = NULL;
    int rc = 0;
    ssize_t n = pread_all(fs, fd, h, sizeof(h), 0);
    if (n < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot read %s", path);
        goto out;
    }
    if ((size_t)n < sizeof(h) || memcmp(h, CQJ_SNAP_MAGIC, 8) != 0 ||
        cq_journal__crc32c(0, h, 44) != cqj_get32(h + 44)) {
        rc = cq_err_set(err, CQ_EPARSE, 0, hint, "%s: bad header (checksum)", path);
        goto out;
    }
    uint64_t hseq = cqj_get64(h + 16);
    uint64_t len = cqj_get64(h + 32);
    if (cqj_get16(h + 8) != CQJ_FORMAT_VERSION || cqj_get16(h + 10) != CQJ_SNAP_HDR_BYTES ||
        cqj_get32(h + 12) != 0 || hseq != seq || len > CQJ_SNAP_STATE_MAX ||
        len > size - CQJ_SNAP_HDR_BYTES) {
        rc = cq_err_set(err, CQ_EPARSE, 0, hint, "%s: bad header (fields)", path);
        goto out;
    }
    text = malloc(len + 1);
    if (text == NULL) {
        rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "reading %s", path);
        goto out;
    }
    n = pread_all(fs, fd, text, len + 1, CQJ_SNAP_HDR_BYTES);
    if (n < 0) {
        rc = cq_err_set(err, CQ_EIO, errno, NULL, "cannot read %s", path);
        goto out;
    }
    if ((uint64_t)n != len) {
        rc = cq_err_set(err, CQ_EPARSE, 0, hint, "%s: %zd state bytes, the header says %llu", path,
                        n, (unsigned long long)len);
        goto out;
    }
    if (cq_journal__crc32c(0, text, len) != cqj_get32(h + 40)) {
        rc = cq_err_set(err, CQ_EPARSE, 0, hint, "%s: checksum mismatch", path);
        goto out;
    }
    json_error_t jerr;
    j = json_loadb(text, len, 0, &jerr);
    out->state = cq_journal__state_new();
    if (out->state == NULL) {
        rc = cq_err_set(err, CQ_ENOMEM, 0, NULL, "reading %s", path);
        goto out;
    }
    if (j == NULL) {
        rc = cq_err_set(err, CQ_EPARSE, 0, hint, "%s: state is not JSON: %s", path, jerr.text);
        goto out;
    }
    rc = cq_journal__state_from_json(out->state, j, err);
    if (rc < 0) {
        goto out;
    }
    if (cq_journal__state_last_seq(out->state) != seq) {
        rc =
            cq_err_set(err, CQ_EPARSE, 0, hint, "%s: state last_seq differs from the header", path);
        goto out;
    }
    out->seq = seq;
    out->digest = cqj_get64(h + 24);
out:
    json_decref(j);
    free(text);
    fs->close(fs->ctx, fd);
    if (rc < 0) {
        cq_journal__snapshot_fini(out);
    }
    return rc;
}
