/*
 * fake_fs.c — see fake_fs.h. One mutex around everything, real calls
 * included. Unsynced changes are recorded as operations on the file's
 * content with what they replaced ("before") and what they wrote ("data"),
 * so a power loss can undo them (DROP), redo a prefix (PREFIX) or mix old
 * and new pages (REORDER), all computed in memory and written back in one
 * go.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fakes/fake_fs.h"

#define FD_MAX 65536
#define PAGE 4096u
#define PATH_LEN 4096

enum rec_kind { REC_WRITE, REC_TRUNC };

struct change {
    enum rec_kind kind;
    uint64_t off;    /* write: where; trunc: new length */
    uint64_t len;    /* write: bytes written */
    uint8_t *data;   /* write: the bytes (owned) */
    uint8_t *before; /* what was replaced (owned) */
    uint64_t before_len;
    uint64_t size_before; /* file size before the change */
};

struct tfile {
    char path[PATH_LEN];
    struct change *ch;
    size_t n, cap;
};

struct fake_fs {
    struct cq_journal_fs vt;
    pthread_mutex_t mu;
    char filter[256];
    unsigned nth_left[FAKE_FS__OPS];
    int nth_err[FAKE_FS__OPS];
    int always_err[FAKE_FS__OPS];
    unsigned short_left;
    size_t short_max;
    int short_then_err;
    int (*hook)(void *ctx, enum fake_fs_op op, const char *path, size_t len);
    void *hook_ctx;
    struct fake_fs_counts counts;
    char *fdpath[FD_MAX];
    struct tfile *files;
    size_t n_files, cap_files;
    bool off;
    uint64_t rng;
};

static uint64_t rnd(struct fake_fs *ff)
{
    /* xorshift64* */
    uint64_t x = ff->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ff->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static const char *fd_path(struct fake_fs *ff, int fd)
{
    return fd >= 0 && fd < FD_MAX ? ff->fdpath[fd] : NULL;
}

/* Should this call fail? Returns the errno or 0. Counts the call. */
static int fault(struct fake_fs *ff, enum fake_fs_op op, const char *path, size_t len)
{
    ff->counts.calls[op]++;
    if (ff->off && op != FAKE_FS_CLOSE) {
        return EIO;
    }
    if (ff->hook != NULL) {
        int e = ff->hook(ff->hook_ctx, op, path, len);
        if (e != 0) {
            ff->counts.faults++;
            return e;
        }
    }
    bool match = ff->filter[0] == '\0' || (path != NULL && strstr(path, ff->filter) != NULL);
    if (!match) {
        return 0;
    }
    if (ff->nth_left[op] > 0 && --ff->nth_left[op] == 0) {
        ff->counts.faults++;
        return ff->nth_err[op];
    }
    if (ff->always_err[op] != 0) {
        ff->counts.faults++;
        return ff->always_err[op];
    }
    return 0;
}

static struct tfile *tfile_get(struct fake_fs *ff, const char *path, bool create)
{
    if (path == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < ff->n_files; i++) {
        if (strcmp(ff->files[i].path, path) == 0) {
            return &ff->files[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (ff->n_files == ff->cap_files) {
        size_t ncap = ff->cap_files == 0 ? 16 : ff->cap_files * 2;
        struct tfile *p = realloc(ff->files, ncap * sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        ff->files = p;
        ff->cap_files = ncap;
    }
    struct tfile *t = &ff->files[ff->n_files++];
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s", path);
    return t;
}

static void tfile_clear(struct tfile *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->ch[i].data);
        free(t->ch[i].before);
    }
    t->n = 0;
}

static void tfile_drop(struct fake_fs *ff, const char *path)
{
    for (size_t i = 0; i < ff->n_files; i++) {
        if (strcmp(ff->files[i].path, path) == 0) {
            tfile_clear(&ff->files[i]);
            free(ff->files[i].ch);
            ff->files[i] = ff->files[ff->n_files - 1];
            ff->n_files--;
            return;
        }
    }
}

static struct change *tfile_add(struct tfile *t)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap == 0 ? 16 : t->cap * 2;
        struct change *p = realloc(t->ch, ncap * sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        t->ch = p;
        t->cap = ncap;
    }
    struct change *c = &t->ch[t->n++];
    memset(c, 0, sizeof(*c));
    return c;
}

static uint8_t *read_range(int fd, uint64_t off, uint64_t len)
{
    uint8_t *b = malloc(len > 0 ? len : 1);
    if (b == NULL) {
        return NULL;
    }
    uint64_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, b + got, len - got, (off_t)(off + got));
        if (n <= 0) {
            break;
        }
        got += (uint64_t)n;
    }
    memset(b + got, 0, len - got);
    return b;
}

/* ---- the vtable -------------------------------------------------------------------------------
 */

static int ff_open(void *ctx, const char *path, int flags, mode_t mode)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    int e = fault(ff, FAKE_FS_OPEN, path, 0);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    uint8_t *before = NULL;
    uint64_t before_len = 0;
    bool truncating = false;
    if ((flags & O_TRUNC) != 0) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > 0) {
            int rfd = open(path, O_RDONLY | O_CLOEXEC);
            if (rfd >= 0) {
                before_len = (uint64_t)st.st_size;
                before = read_range(rfd, 0, before_len);
                close(rfd);
                truncating = true;
            }
        }
    }
    int fd = open(path, flags | O_CLOEXEC, mode);
    int oe = errno;
    if (fd >= 0 && fd < FD_MAX) {
        free(ff->fdpath[fd]);
        ff->fdpath[fd] = strdup(path);
        if (truncating) {
            struct change *c = tfile_add(tfile_get(ff, path, true));
            if (c != NULL) {
                c->kind = REC_TRUNC;
                c->off = 0;
                c->before = before;
                c->before_len = before_len;
                c->size_before = before_len;
                before = NULL;
            }
        }
    }
    free(before);
    pthread_mutex_unlock(&ff->mu);
    errno = oe;
    return fd;
}

static ssize_t ff_write(void *ctx, int fd, const void *buf, size_t len)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    const char *path = fd_path(ff, fd);
    int e = fault(ff, FAKE_FS_WRITE, path, len);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    bool match = ff->filter[0] == '\0' || (path != NULL && strstr(path, ff->filter) != NULL);
    if (match && ff->short_left > 0 && --ff->short_left == 0) {
        if (len > ff->short_max) {
            len = ff->short_max;
        }
        ff->counts.short_writes++;
        if (ff->short_then_err != 0) {
            ff->always_err[FAKE_FS_WRITE] = ff->short_then_err;
        }
    }
    struct stat st;
    uint64_t off = 0, size = 0;
    if (fstat(fd, &st) == 0) {
        size = (uint64_t)st.st_size;
        int fl = fcntl(fd, F_GETFL);
        off = (fl >= 0 && (fl & O_APPEND) != 0) ? size : (uint64_t)lseek(fd, 0, SEEK_CUR);
    }
    uint64_t overlap = off < size ? (size - off < len ? size - off : len) : 0;
    uint8_t *before = overlap > 0 ? read_range(fd, off, overlap) : NULL;
    ssize_t n = write(fd, buf, len);
    int we = errno;
    if (n > 0) {
        ff->counts.bytes_written += (uint64_t)n;
        struct change *c = tfile_add(tfile_get(ff, path, true));
        if (c != NULL) {
            c->kind = REC_WRITE;
            c->off = off;
            c->len = (uint64_t)n;
            c->data = malloc((size_t)n);
            if (c->data != NULL) {
                memcpy(c->data, buf, (size_t)n);
            }
            c->before = before;
            c->before_len = overlap < (uint64_t)n ? overlap : (uint64_t)n;
            c->size_before = size;
            before = NULL;
        }
    }
    free(before);
    pthread_mutex_unlock(&ff->mu);
    errno = we;
    return n;
}

static ssize_t ff_pread(void *ctx, int fd, void *buf, size_t len, off_t offset)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    int e = fault(ff, FAKE_FS_PREAD, fd_path(ff, fd), len);
    pthread_mutex_unlock(&ff->mu);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return pread(fd, buf, len, offset);
}

static int ff_fdatasync(void *ctx, int fd)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    const char *path = fd_path(ff, fd);
    int e = fault(ff, FAKE_FS_FDATASYNC, path, 0);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    int rc = fdatasync(fd);
    int se = errno;
    if (rc == 0) {
        struct tfile *t = tfile_get(ff, path, false);
        if (t != NULL) {
            tfile_clear(t);
        }
    }
    pthread_mutex_unlock(&ff->mu);
    errno = se;
    return rc;
}

static int ff_fsync_dir(void *ctx, const char *dir)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    int e = fault(ff, FAKE_FS_FSYNC_DIR, dir, 0);
    pthread_mutex_unlock(&ff->mu);
    if (e != 0) {
        errno = e;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    int se = errno;
    close(fd);
    errno = se;
    return rc;
}

static int ff_ftruncate(void *ctx, int fd, off_t len)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    const char *path = fd_path(ff, fd);
    int e = fault(ff, FAKE_FS_FTRUNCATE, path, (size_t)len);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    struct stat st;
    uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    uint8_t *before = NULL;
    uint64_t before_len = 0;
    if ((uint64_t)len < size) {
        before_len = size - (uint64_t)len;
        before = read_range(fd, (uint64_t)len, before_len);
    }
    int rc = ftruncate(fd, len);
    int te = errno;
    if (rc == 0 && (uint64_t)len != size) {
        struct change *c = tfile_add(tfile_get(ff, path, true));
        if (c != NULL) {
            c->kind = REC_TRUNC;
            c->off = (uint64_t)len;
            c->before = before;
            c->before_len = before_len;
            c->size_before = size;
            before = NULL;
        }
    }
    free(before);
    pthread_mutex_unlock(&ff->mu);
    errno = te;
    return rc;
}

static int ff_close(void *ctx, int fd)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    fault(ff, FAKE_FS_CLOSE, fd_path(ff, fd), 0);
    if (fd >= 0 && fd < FD_MAX) {
        free(ff->fdpath[fd]);
        ff->fdpath[fd] = NULL;
    }
    int rc = close(fd);
    pthread_mutex_unlock(&ff->mu);
    return rc;
}

static int ff_rename(void *ctx, const char *from, const char *to)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    int e = fault(ff, FAKE_FS_RENAME, from, 0);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    int rc = rename(from, to);
    int re = errno;
    if (rc == 0) {
        tfile_drop(ff, to);
        struct tfile *t = tfile_get(ff, from, false);
        if (t != NULL) {
            snprintf(t->path, sizeof(t->path), "%s", to);
        }
        for (int fd = 0; fd < FD_MAX; fd++) {
            if (ff->fdpath[fd] != NULL && strcmp(ff->fdpath[fd], from) == 0) {
                free(ff->fdpath[fd]);
                ff->fdpath[fd] = strdup(to);
            }
        }
    }
    pthread_mutex_unlock(&ff->mu);
    errno = re;
    return rc;
}

static int ff_unlink(void *ctx, const char *path)
{
    struct fake_fs *ff = ctx;
    pthread_mutex_lock(&ff->mu);
    int e = fault(ff, FAKE_FS_UNLINK, path, 0);
    if (e != 0) {
        pthread_mutex_unlock(&ff->mu);
        errno = e;
        return -1;
    }
    int rc = unlink(path);
    int ue = errno;
    if (rc == 0) {
        tfile_drop(ff, path);
    }
    pthread_mutex_unlock(&ff->mu);
    errno = ue;
    return rc;
}

/* ---- setup and faults
 * ----------------------------------------------------------------------------- */

struct fake_fs *fake_fs_new(uint64_t seed)
{
    struct fake_fs *ff = calloc(1, sizeof(*ff));
    if (ff == NULL) {
        return NULL;
    }
    pthread_mutex_init(&ff->mu, NULL);
    ff->rng = seed != 0 ? seed : 0x9E3779B97F4A7C15ULL;
    ff->vt.open = ff_open;
    ff->vt.write = ff_write;
    ff->vt.pread = ff_pread;
    ff->vt.fdatasync = ff_fdatasync;
    ff->vt.fsync_dir = ff_fsync_dir;
    ff->vt.ftruncate = ff_ftruncate;
    ff->vt.close = ff_close;
    ff->vt.rename = ff_rename;
    ff->vt.unlink = ff_unlink;
    ff->vt.ctx = ff;
    return ff;
}

void fake_fs_free(struct fake_fs *ff)
{
    if (ff == NULL) {
        return;
    }
    for (int fd = 0; fd < FD_MAX; fd++) {
        free(ff->fdpath[fd]);
    }
    for (size_t i = 0; i < ff->n_files; i++) {
        tfile_clear(&ff->files[i]);
        free(ff->files[i].ch);
    }
    free(ff->files);
    pthread_mutex_destroy(&ff->mu);
    free(ff);
}

const struct cq_journal_fs *fake_fs_ops(struct fake_fs *ff)
{
    return &ff->vt;
}

void fake_fs_set_filter(struct fake_fs *ff, const char *substr)
{
    pthread_mutex_lock(&ff->mu);
    snprintf(ff->filter, sizeof(ff->filter), "%s", substr != NULL ? substr : "");
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_fail_nth(struct fake_fs *ff, enum fake_fs_op op, unsigned nth, int err)
{
    pthread_mutex_lock(&ff->mu);
    ff->nth_left[op] = nth;
    ff->nth_err[op] = err;
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_fail_always(struct fake_fs *ff, enum fake_fs_op op, int err)
{
    pthread_mutex_lock(&ff->mu);
    ff->always_err[op] = err;
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_short_write_nth(struct fake_fs *ff, unsigned nth, size_t max_bytes, int then_err)
{
    pthread_mutex_lock(&ff->mu);
    ff->short_left = nth;
    ff->short_max = max_bytes;
    ff->short_then_err = then_err;
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_set_hook(struct fake_fs *ff,
                      int (*hook)(void *ctx, enum fake_fs_op op, const char *path, size_t len),
                      void *ctx)
{
    pthread_mutex_lock(&ff->mu);
    ff->hook = hook;
    ff->hook_ctx = ctx;
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_clear_faults(struct fake_fs *ff)
{
    pthread_mutex_lock(&ff->mu);
    memset(ff->nth_left, 0, sizeof(ff->nth_left));
    memset(ff->always_err, 0, sizeof(ff->always_err));
    ff->short_left = 0;
    ff->short_then_err = 0;
    ff->hook = NULL;
    ff->hook_ctx = NULL;
    pthread_mutex_unlock(&ff->mu);
}

void fake_fs_get_counts(struct fake_fs *ff, struct fake_fs_counts *out)
{
    pthread_mutex_lock(&ff->mu);
    *out = ff->counts;
    pthread_mutex_unlock(&ff->mu);
}

uint64_t fake_fs_unsynced_bytes(struct fake_fs *ff)
{
    uint64_t n = 0;
    pthread_mutex_lock(&ff->mu);
    for (size_t i = 0; i < ff->n_files; i++) {
        for (size_t k = 0; k < ff->files[i].n; k++) {
            const struct change *c = &ff->files[i].ch[k];
            n += c->kind == REC_WRITE ? c->len : c->before_len;
        }
    }
    pthread_mutex_unlock(&ff->mu);
    return n;
}

/* ---- power loss
 * ------------------------------------------------------------------------------------- */

struct image {
    uint8_t *b;
    uint64_t size, cap;
};

static int image_resize(struct image *im, uint64_t size)
{
    if (size > im->cap) {
        uint64_t ncap = im->cap == 0 ? 4096 : im->cap;
        while (ncap < size) {
            ncap *= 2;
        }
        uint8_t *p = realloc(im->b, ncap);
        if (p == NULL) {
            return -1;
        }
        im->b = p;
        im->cap = ncap;
    }
    if (size > im->size) {
        memset(im->b + im->size, 0, size - im->size);
    }
    im->size = size;
    return 0;
}

static int image_put(struct image *im, uint64_t off, const uint8_t *data, uint64_t len)
{
    if (off + len > im->size && image_resize(im, off + len) < 0) {
        return -1;
    }
    memcpy(im->b + off, data, len);
    return 0;
}

static int lose_file(struct fake_fs *ff, struct tfile *t, enum fake_fs_loss mode)
{
    struct image cur = {0}, old = {0}, out = {0};
    int rc = -1;
    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    cur.size = (uint64_t)st.st_size;
    cur.b = read_range(fd, 0, cur.size);
    cur.cap = cur.size;
    close(fd);
    if (cur.b == NULL) {
        return -1;
    }
    /* old = cur with every recorded change undone, newest first */
    if (image_resize(&old, cur.size) < 0) {
        goto out;
    }
    memcpy(old.b, cur.b, cur.size);
    for (size_t i = t->n; i > 0; i--) {
        const struct change *c = &t->ch[i - 1];
        if (c->kind == REC_WRITE) {
            if (c->before_len > 0 && image_put(&old, c->off, c->before, c->before_len) < 0) {
                goto out;
            }
            if (image_resize(&old, c->size_before) < 0) {
                goto out;
            }
        } else {
            if (image_resize(&old, c->size_before) < 0) {
                goto out;
            }
            if (c->before_len > 0 && image_put(&old, c->off, c->before, c->before_len) < 0) {
                goto out;
            }
        }
    }
    if (mode == FAKE_FS_LOSS_DROP) {
        out = old;
        old.b = NULL;
    } else if (mode == FAKE_FS_LOSS_PREFIX) {
        uint64_t total = 0;
        for (size_t i = 0; i < t->n; i++) {
            total += t->ch[i].kind == REC_WRITE ? t->ch[i].len : 0;
        }
        uint64_t budget = total > 0 ? rnd(ff) % (total + 1) : 0;
        out = old;
        old.b = NULL;
        for (size_t i = 0; i < t->n && budget > 0; i++) {
            const struct change *c = &t->ch[i];
            if (c->kind == REC_TRUNC) {
                if (image_resize(&out, c->off) < 0) {
                    goto out;
                }
                continue;
            }
            uint64_t n = c->len < budget ? c->len : budget;
            if (c->data != NULL && image_put(&out, c->off, c->data, n) < 0) {
                goto out;
            }
            budget -= n;
        }
    } else {
        if (image_resize(&out, cur.size) < 0) {
            goto out;
        }
        memcpy(out.b, cur.b, cur.size);
        for (uint64_t p = 0; p < cur.size; p += PAGE) {
            bool touched = false;
            for (size_t i = 0; i < t->n && !touched; i++) {
                const struct change *c = &t->ch[i];
                uint64_t lo, hi;
                if (c->kind == REC_WRITE) {
                    lo = c->off;
                    hi = c->off + c->len;
                } else {
                    lo = c->off < c->size_before ? c->off : c->size_before;
                    hi = c->off < c->size_before ? c->size_before : c->off;
                }
                touched = lo < p + PAGE && hi > p;
            }
            if (touched && (rnd(ff) & 1u) == 0) {
                uint64_t end = p + PAGE < cur.size ? p + PAGE : cur.size;
                for (uint64_t k = p; k < end; k++) {
                    out.b[k] = k < old.size ? old.b[k] : 0;
                }
            }
        }
    }
    fd = open(t->path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        goto out;
    }
    uint64_t done = 0;
    while (done < out.size) {
        ssize_t n = write(fd, out.b + done, out.size - done);
        if (n <= 0) {
            break;
        }
        done += (uint64_t)n;
    }
    fsync(fd);
    close(fd);
    rc = done == out.size ? 0 : -1;
out:
    free(cur.b);
    free(old.b);
    free(out.b);
    return rc;
}

int fake_fs_power_loss(struct fake_fs *ff, enum fake_fs_loss mode)
{
    int rc = 0;
    pthread_mutex_lock(&ff->mu);
    for (size_t i = 0; i < ff->n_files; i++) {
        struct tfile *t = &ff->files[i];
        if (t->n > 0 && lose_file(ff, t, mode) < 0) {
            rc = -1;
        }
        tfile_clear(t);
    }
    ff->off = true;
    pthread_mutex_unlock(&ff->mu);
    return rc;
}

void fake_fs_power_on(struct fake_fs *ff)
{
    pthread_mutex_lock(&ff->mu);
    ff->off = false;
    pthread_mutex_unlock(&ff->mu);
}

bool fake_fs_is_off(struct fake_fs *ff)
{
    pthread_mutex_lock(&ff->mu);
    bool off = ff->off;
    pthread_mutex_unlock(&ff->mu);
    return off;
}
