/*
 * fs.h — small filesystem helpers: mkdir -p, atomic file replace, bounded
 * whole-file reads. Reentrant; callable from any thread.
 */
#ifndef CQ_FS_H
#define CQ_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "cq/common.h"

/* Create dir and its parents with mode (existing dirs are fine). */
int cq_fs_mkdir_p(const char *dir, mode_t mode, struct cq_err *err) CQ_WUR;

/* Replace path atomically: write path.tmp.<pid>, fsync, rename over path,
 * fsync the directory. Readers see the old or the new content, never a mix.
 * fsync_data=false skips both fsyncs (for frequently rewritten status files
 * where atomicity matters but durability does not). */
int cq_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                       int fsync_data, struct cq_err *err) CQ_WUR;

/* Read a whole file of at most max_bytes into a NUL-terminated heap buffer
 * (*out, caller frees). -CQ_ENOTFOUND if it does not exist, -CQ_ETOOBIG if it
 * is larger than max_bytes. */
int cq_fs_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                    struct cq_err *err) CQ_WUR;

#endif /* CQ_FS_H */
