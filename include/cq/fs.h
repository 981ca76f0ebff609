/*
 * fs.h — small filesystem helpers: mkdir -p, atomic file replace, bounded
 * whole-file reads that never block on a FIFO, checks that the data
 * directory and private files belong to us, and page-aligned secret buffers
 * excluded from core dumps. Reentrant; callable from any thread.
 */
#ifndef CQ_FS_H
#define CQ_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cq/common.h"

/* Create dir and its parents with mode (existing dirs are fine). */
int cq_fs_mkdir_p(const char *dir, mode_t mode, struct cq_err *err) CQ_WUR;

/* Replace path atomically: write a fresh mkstemp file path.tmp.XXXXXX
 * (created O_EXCL, so nothing planted there is followed or truncated), chmod
 * it to mode, fsync, rename over path, fsync the directory. Readers see the old or the new content,
 * never a mix. fsync_data=false skips both fsyncs (for frequently rewritten status files where
 * atomicity matters but durability does not). */
int cq_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, int fsync_data,
                       struct cq_err *err) CQ_WUR;

/* Read a whole file of at most max_bytes into a NUL-terminated heap buffer
 * (*out, caller frees). -CQ_ENOTFOUND if it does not exist, -CQ_ETOOBIG if it
 * is larger than max_bytes. */
int cq_fs_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                    struct cq_err *err) CQ_WUR;
/* The same, and *st (if not NULL) gets the file's fstat. The open never
 * blocks (O_NONBLOCK|O_NOCTTY): a FIFO, socket or device is refused with
 * -CQ_EINVAL naming its type; the read is bounded by the size fstat gave.
 * Symlinks are followed (the caller chose the path); the target is checked. */
int cq_fs_read_file_stat(const char *path, size_t max_bytes, char **out, size_t *out_len,
                         struct stat *st, struct cq_err *err) CQ_WUR;

/* "regular file", "FIFO", "directory", … for an st_mode. */
const char *cq_fs_type_name(mode_t mode);

/* st (of path) must be owned by the effective user and, with private_mode,
 * not accessible by group or others. -CQ_EPERM with the fix (chown / chmod
 * 600 PATH) otherwise. */
int cq_fs_check_owned(const char *path, const struct stat *st, bool private_mode,
                      struct cq_err *err) CQ_WUR;

/* How deep cq_fs_check_data_dir looks under the data directory (levels). */
#define CQ_FS_DATA_DIR_CHECK_DEPTH 2

/* The data directory (followed if a symlink) and every directory under it
 * down to CQ_FS_DATA_DIR_CHECK_DEPTH levels (never followed) must be owned by
 * the effective user and not writable by group or others; a symlink to a
 * directory inside it is refused. -CQ_EPERM naming the path and the fix. */
int cq_fs_check_data_dir(const char *dir, struct cq_err *err) CQ_WUR;

/* A secret kept in its own anonymous pages: MADV_DONTDUMP (not in core
 * dumps) and mlock (not swapped) where the system allows; wiped and unmapped
 * by _free. At most CQ_SECRET_BUF_MAX_BYTES. */
#define CQ_SECRET_BUF_MAX_BYTES (64 * 1024)
struct cq_secret_buf {
    char *data; /* len bytes, zeroed */
    size_t len;
    size_t mapped; /* whole pages */
    bool dontdump; /* MADV_DONTDUMP took effect */
};
struct cq_secret_buf *cq_secret_buf_new(size_t len); /* NULL: len 0 or too big, or ENOMEM */
void cq_secret_buf_free(struct cq_secret_buf *sb);   /* NULL ok */

/* A NUL-terminated copy of s in a secret buffer of its own (above): out of
 * core dumps, wiped with OPENSSL_cleanse and unmapped by cq_secret_free. For
 * every long-lived copy of an API key, API secret or token (the config's
 * values, the REST and WebSocket API clients, the admin API). NULL: s NULL,
 * longer than CQ_SECRET_DUP_MAX_LEN bytes, or ENOMEM. */
#define CQ_SECRET_DUP_MAX_LEN (CQ_SECRET_BUF_MAX_BYTES - 64 - 1) /* a 64-byte header, the NUL */
char *cq_secret_dup(const char *s);
/* The same for at most the first n bytes of s (NULL when n is above
 * CQ_SECRET_DUP_MAX_LEN and s is longer). */
char *cq_secret_dupn(const char *s, size_t n);
void cq_secret_free(char *s); /* NULL ok; s from cq_secret_dup only */

/* Overwrites n bytes at p with zeros in a way the compiler may not drop
 * (OPENSSL_cleanse; a memset before free may be removed as a dead store).
 * For stack and heap copies of secrets that cannot live in a secret buffer. */
void cq_secret_wipe(void *p, size_t n);

#endif /* CQ_FS_H */
