/*
 * fake_fs.h — a fault-injecting struct cq_journal_fs for tests.
 *
 * It wraps the real filesystem (use it on a temporary directory): every call
 * goes to the real POSIX call unless a fault says otherwise, so what the
 * journal leaves behind can be inspected, reopened with the posix fs, or
 * verified. Thread-safe (one mutex; the real calls run under it), so the
 * journal's writer thread and the test thread may both use it.
 *
 *   struct fake_fs *ff = fake_fs_new(42);            // seed for power-loss choices
 *   opts.fs = fake_fs_ops(ff);
 *   fake_fs_set_filter(ff, ".cqj");                   // faults only on segment files
 *   fake_fs_fail_always(ff, FAKE_FS_WRITE, ENOSPC);   // disk full…
 *   fake_fs_fail_always(ff, FAKE_FS_WRITE, 0);        // …space is back
 *   fake_fs_fail_nth(ff, FAKE_FS_FDATASYNC, 1, EIO);  // the next fdatasync fails
 *   fake_fs_short_write_nth(ff, 1, 10, ENOSPC);       // next write: 10 bytes, then ENOSPC
 *   fake_fs_power_loss(ff, FAKE_FS_LOSS_PREFIX);      // pull the plug
 *   fake_fs_power_on(ff);                             // and reopen with a new journal
 *   fake_fs_free(ff);
 *
 * Faults
 *   Only calls whose path contains the filter substring count and can fail
 *   (fd calls use the path the fd was opened with; default filter: every
 *   path). "nth" counts matching calls of that kind from the moment the
 *   fault is set: 1 = the very next one. A failed call does nothing and
 *   returns -1 with errno = err. Faults of different kinds combine; a
 *   one-shot (nth) fault is consumed when it fires. The hook, if set, is
 *   asked before every call and may return an errno to fail it (0 = go on):
 *   for campaigns that need arbitrary schedules.
 *
 * Power loss
 *   Every write and ftruncate (and O_TRUNC at open) is recorded per file
 *   (by path; renames carry the record, unlink drops it) until an
 *   fdatasync of that file makes it durable. fake_fs_power_loss() rewrites
 *   each file with unsynced changes as the disk could hold them after a
 *   crash:
 *     FAKE_FS_LOSS_DROP     every unsynced change is lost (the file is as
 *                           of its last fdatasync);
 *     FAKE_FS_LOSS_PREFIX   a random prefix of the unsynced changes, in
 *                           order, survives (the last write possibly cut in
 *                           the middle): a torn write;
 *     FAKE_FS_LOSS_REORDER  the file keeps its latest size, and each 4 KiB
 *                           page touched since the last fdatasync holds
 *                           either its new or its old content (old beyond
 *                           the old size = zeros), chosen at random: pages
 *                           written back out of order.
 *   Directory operations (create, rename, unlink) are treated as durable at
 *   once; fsync_dir only counts. After a power loss the "machine is off":
 *   every call fails with EIO (close still closes the real fd) until
 *   fake_fs_power_on(). The random choices come from the seed, so a run is
 *   reproducible.
 */
#ifndef CQ_TEST_FAKE_FS_H
#define CQ_TEST_FAKE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/journal.h"

enum fake_fs_op {
    FAKE_FS_OPEN,
    FAKE_FS_WRITE,
    FAKE_FS_PREAD,
    FAKE_FS_FDATASYNC,
    FAKE_FS_FSYNC_DIR,
    FAKE_FS_FTRUNCATE,
    FAKE_FS_CLOSE,
    FAKE_FS_RENAME,
    FAKE_FS_UNLINK,
    FAKE_FS__OPS
};

enum fake_fs_loss { FAKE_FS_LOSS_DROP, FAKE_FS_LOSS_PREFIX, FAKE_FS_LOSS_REORDER };

struct fake_fs;

struct fake_fs_counts {
    uint64_t calls[FAKE_FS__OPS]; /* every call, faulted or not */
    uint64_t faults;              /* calls failed on purpose */
    uint64_t short_writes;
    uint64_t bytes_written; /* really written */
};

/* seed: for the power-loss choices. */
struct fake_fs *fake_fs_new(uint64_t seed);
void fake_fs_free(struct fake_fs *ff);
/* The vtable to put in cq_journal_options.fs (valid until fake_fs_free). */
const struct cq_journal_fs *fake_fs_ops(struct fake_fs *ff);

/* Only paths containing substr count for faults (NULL or "" = all). */
void fake_fs_set_filter(struct fake_fs *ff, const char *substr);
/* The nth matching call of op from now fails with err (once). */
void fake_fs_fail_nth(struct fake_fs *ff, enum fake_fs_op op, unsigned nth, int err);
/* Every matching call of op fails with err; err 0 turns it off. */
void fake_fs_fail_always(struct fake_fs *ff, enum fake_fs_op op, int err);
/* The nth matching write from now writes at most max_bytes and returns
 * that count; if then_err is not 0, every later matching write fails with
 * then_err (a disk that fills up in the middle of a write) until
 * fake_fs_fail_always(ff, FAKE_FS_WRITE, 0) or fake_fs_clear_faults(). */
void fake_fs_short_write_nth(struct fake_fs *ff, unsigned nth, size_t max_bytes, int then_err);
/* Asked before every call (path may be NULL for unknown fds); return an
 * errno to fail the call, 0 to let it run. NULL removes it. */
void fake_fs_set_hook(struct fake_fs *ff,
                      int (*hook)(void *ctx, enum fake_fs_op op, const char *path, size_t len),
                      void *ctx);
/* Remove every fault and the hook (counters and power-loss records stay). */
void fake_fs_clear_faults(struct fake_fs *ff);

void fake_fs_get_counts(struct fake_fs *ff, struct fake_fs_counts *out);
/* Bytes written or truncated since the last fdatasync, over all files. */
uint64_t fake_fs_unsynced_bytes(struct fake_fs *ff);

/* Pull the plug (see above). 0, or -1 if a file could not be rewritten. */
int fake_fs_power_loss(struct fake_fs *ff, enum fake_fs_loss mode);
void fake_fs_power_on(struct fake_fs *ff);
bool fake_fs_is_off(struct fake_fs *ff);

#endif /* CQ_TEST_FAKE_FS_H */
