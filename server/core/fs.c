/* fs.c — mkdir -p, atomic replace (tmp + fsync + rename + fsync dir), bounded
 * reads that never block on a FIFO or device, ownership checks of the data
 * directory and its private files, and page-aligned secret buffers kept out
 * of core dumps. */
/* MAP_ANONYMOUS, MADV_DONTDUMP and mlock are Linux/BSD, not POSIX 2008. */
#define _DEFAULT_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cq/fs.h"

int cq_fs_mkdir_p(const char *dir, mode_t mode, struct cq_err *err)
{
    char path[4096];
    if (cq_strlcpy(path, dir, sizeof(path)) >= sizeof(path)) {
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter path", "path too long: %.64s…", dir);
    }
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, mode) != 0 && errno != EEXIST) {
                return cq_err_set(err, CQ_EIO, errno, "check the path and its permissions",
                                  "cannot create directory %s", path);
            }
            *p = '/';
        }
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        return cq_err_set(err, CQ_EIO, errno, "check the path and its permissions",
                          "cannot create directory %s", path);
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return cq_err_set(err, CQ_EIO, 0, "remove or rename the file in the way",
                          "%s exists and is not a directory", path);
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char copy[4096];
    if (cq_strlcpy(copy, path, sizeof(copy)) >= sizeof(copy)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int cq_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, int fsync_data,
                       struct cq_err *err)
{
    /* mkstemp: a fresh name created with O_EXCL, so nobody can plant a file
     * or a symlink where the temporary goes (the old PATH.tmp.<pid> name was
     * predictable and opened with O_TRUNC, following symlinks). */
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp)) {
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter path", "path too long: %.64s…", path);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the directory exists and is writable",
                          "cannot create a temporary file for %s", path);
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cq_err_set(err, CQ_EIO, e, "check the directory's file system", "chmod %s", tmp);
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            close(fd);
            unlink(tmp);
            return cq_err_set(err, CQ_EIO, e, "check free disk space", "write %s", tmp);
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync_data && fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cq_err_set(err, CQ_EIO, e, "check the disk", "fsync %s", tmp);
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return cq_err_set(err, CQ_EIO, e, "check the disk", "close %s", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cq_err_set(err, CQ_EIO, e, "check permissions on the directory", "rename %s to %s",
                          tmp, path);
    }
    if (fsync_data && fsync_dir_of(path) != 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the disk", "fsync directory of %s", path);
    }
    return 0;
}

int cq_fs_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                    struct cq_err *err)
{
    return cq_fs_read_file_stat(path, max_bytes, out, out_len, NULL, err);
}

int cq_fs_read_file_stat(const char *path, size_t max_bytes, char **out, size_t *out_len,
                         struct stat *st_out, struct cq_err *err)
{
    *out = NULL;
    if (out_len != NULL) {
        *out_len = 0;
    }
    /* O_NONBLOCK: opening a FIFO without a writer (or a device) must not
     * block; fstat then refuses anything but a regular file. O_NOCTTY: a
     * terminal never becomes ours. Symlinks are followed: the caller chose
     * the path, and the file it names is what gets checked. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return cq_err_set(err, e == ENOENT ? CQ_ENOTFOUND : CQ_EIO, e, "check the path",
                          "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cq_err_set(err, CQ_EIO, e, NULL, "stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cq_err_set(err, CQ_EINVAL, 0, "give the path of a regular file",
                          "%s is not a regular file (it is a %s)", path,
                          cq_fs_type_name(st.st_mode));
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a smaller file",
                          "%s is %lld bytes, more than the %zu allowed", path,
                          (long long)st.st_size, max_bytes);
    }
    /* The read is bounded by the size fstat gave: a file that grows while
     * it is read is cut there. */
    size_t cap = (size_t)st.st_size, got = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        close(fd);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "reading %s", path);
    }
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            free(buf);
            close(fd);
            return cq_err_set(err, CQ_EIO, e, NULL, "read %s", path);
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (out_len != NULL) {
        *out_len = got;
    }
    if (st_out != NULL) {
        *st_out = st;
    }
    return 0;
}

const char *cq_fs_type_name(mode_t mode)
{
    if (S_ISREG(mode)) {
        return "regular file";
    }
    if (S_ISDIR(mode)) {
        return "directory";
    }
    if (S_ISLNK(mode)) {
        return "symbolic link";
    }
    if (S_ISFIFO(mode)) {
        return "FIFO";
    }
    if (S_ISSOCK(mode)) {
        return "socket";
    }
    if (S_ISCHR(mode)) {
        return "character device";
    }
    if (S_ISBLK(mode)) {
        return "block device";
    }
    return "special file";
}

/* ---- ownership ---------------------------------------------------------------- */

int cq_fs_check_owned(const char *path, const struct stat *st, bool private_mode,
                      struct cq_err *err)
{
    uid_t euid = geteuid();
    if (st->st_uid != euid) {
        return cq_err_set(err, CQ_EPERM, 0,
                          "chown it to the user coinquantd runs as, or remove it (another "
                          "user could have planted it)",
                          "%s is owned by uid %ld, not by uid %ld that runs coinquantd", path,
                          (long)st->st_uid, (long)euid);
    }
    if (private_mode && (st->st_mode & 077) != 0) {
        char hint[CQ_ERR_HINT_MAX];
        /* cut to the hint field if the path is very long */
        (void)snprintf(hint, sizeof(hint), "chmod 600 %.200s", path);
        return cq_err_set(err, CQ_EPERM, 0, hint,
                          "%s is accessible by group or others (mode %04o); it must be private "
                          "to its owner",
                          path, (unsigned)(st->st_mode & 07777));
    }
    return 0;
}

/* One directory of the data tree: a real directory (not a symlink, unless
 * follow), owned by the effective user, not writable by group or others. */
static int check_dir(const char *path, bool follow, struct cq_err *err)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the path", "cannot stat %s", path);
    }
    if (!S_ISDIR(st.st_mode)) {
        return cq_err_set(err, CQ_EPERM, 0,
                          "remove it (coinquantd creates its own directories there)",
                          "%s is a %s, not a directory", path, cq_fs_type_name(st.st_mode));
    }
    if (st.st_uid != geteuid()) {
        return cq_err_set(err, CQ_EPERM, 0,
                          "use a data directory of your own, or chown -R it to the user "
                          "coinquantd runs as",
                          "%s is owned by uid %ld, not by uid %ld that runs coinquantd: another "
                          "user could replace what it holds",
                          path, (long)st.st_uid, (long)geteuid());
    }
    if ((st.st_mode & 022) != 0) {
        char hint[CQ_ERR_HINT_MAX];
        (void)snprintf(hint, sizeof(hint), "chmod go-w %.200s", path); /* cut: hint field */
        return cq_err_set(err, CQ_EPERM, 0, hint,
                          "%s is writable by group or others (mode %04o): another user could "
                          "plant files or symlinks in it",
                          path, (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* The directories under dir, down to depth levels: each checked as above,
 * never followed; a symlink to a directory is refused. */
static int check_tree(const char *dir, int depth, struct cq_err *err)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return cq_err_set(err, CQ_EIO, errno, "check the permissions of the data directory",
                          "cannot list %s", dir);
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char sub[4096];
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= sizeof(sub)) {
            rc = cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter CQ_DATA_DIR",
                            "a path under %.200s is longer than %zu bytes", dir, sizeof(sub));
            break;
        }
        struct stat st;
        if (lstat(sub, &st) != 0) {
            continue; /* removed meanwhile */
        }
        if (S_ISLNK(st.st_mode)) {
            struct stat target;
            if (stat(sub, &target) == 0 && S_ISDIR(target.st_mode)) {
                rc = cq_err_set(err, CQ_EPERM, 0,
                                "replace the symlink with a real directory (or point "
                                "CQ_DATA_DIR at the real place)",
                                "%s is a symbolic link to a directory: coinquantd writes only "
                                "into directories of its own data tree",
                                sub);
            }
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            continue;
        }
        rc = check_dir(sub, false, err);
        if (rc == 0 && depth > 1) {
            rc = check_tree(sub, depth - 1, err);
        }
    }
    closedir(d);
    return rc;
}

int cq_fs_check_data_dir(const char *dir, struct cq_err *err)
{
    /* The data directory itself may be a symlink (an operator's choice of
     * where it lives); its target is what gets checked. */
    int rc = check_dir(dir, true, err);
    if (rc < 0) {
        return rc;
    }
    return check_tree(dir, CQ_FS_DATA_DIR_CHECK_DEPTH, err);
}

/* ---- secret buffers ------------------------------------------------------------- */

struct cq_secret_buf *cq_secret_buf_new(size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t psz = page > 0 ? (size_t)page : 4096;
    if (len == 0 || len > CQ_SECRET_BUF_MAX_BYTES) {
        return NULL;
    }
    size_t total = (len + psz - 1) / psz * psz;
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        return NULL;
    }
    struct cq_secret_buf *sb = malloc(sizeof(*sb));
    if (sb == NULL) {
        munmap(mem, total);
        return NULL;
    }
    sb->data = mem;
    sb->len = len;
    sb->mapped = total;
    /* Best effort: kept out of core dumps where the kernel supports it, and
     * out of swap where the memlock limit allows. */
    sb->dontdump = madvise(mem, total, MADV_DONTDUMP) == 0;
    (void)mlock(mem, total);
    return sb;
}

void cq_secret_buf_free(struct cq_secret_buf *sb)
{
    if (sb == NULL) {
        return;
    }
    OPENSSL_cleanse(sb->data, sb->mapped);
    (void)munlock(sb->data, sb->mapped);
    munmap(sb->data, sb->mapped);
    free(sb);
}

/* cq_secret_dup's layout: the owning struct cq_secret_buf pointer at the
 * start of the buffer, the string SECRET_DUP_HEADER bytes in. */
#define SECRET_DUP_HEADER 64

char *cq_secret_dup(const char *s)
{
    return cq_secret_dupn(s, CQ_SECRET_DUP_MAX_LEN + 1);
}

char *cq_secret_dupn(const char *s, size_t n)
{
    if (s == NULL) {
        return NULL;
    }
    size_t len = strnlen(s, n);
    if (len > CQ_SECRET_DUP_MAX_LEN) {
        return NULL;
    }
    /* <= CQ_SECRET_BUF_MAX_BYTES: CQ_SECRET_DUP_MAX_LEN leaves room for both */
    struct cq_secret_buf *sb = cq_secret_buf_new(SECRET_DUP_HEADER + len + 1);
    if (sb == NULL) {
        return NULL;
    }
    memcpy(sb->data, &sb, sizeof(sb));
    char *d = sb->data + SECRET_DUP_HEADER;
    memcpy(d, s, len); /* the terminator is there already: the buffer is zeroed */
    return d;
}

void cq_secret_free(char *s)
{
    if (s == NULL) {
        return;
    }
    struct cq_secret_buf *sb;
    memcpy(&sb, s - SECRET_DUP_HEADER, sizeof(sb));
    cq_secret_buf_free(sb); /* wipes the whole mapping, header and string */
}

void cq_secret_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        OPENSSL_cleanse(p, n);
    }
}
