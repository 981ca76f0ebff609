/* fs.c — mkdir -p, atomic replace (tmp + fsync + rename + fsync dir), bounded reads. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    cq_strlcpy(copy, path, sizeof(copy));
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int cq_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                       int fsync_data, struct cq_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the directory exists and is writable",
                          "cannot create %s", tmp);
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
        return cq_err_set(err, CQ_EIO, e, "check permissions on the directory",
                          "rename %s to %s", tmp, path);
    }
    if (fsync_data && fsync_dir_of(path) != 0) {
        return cq_err_set(err, CQ_EIO, errno, "check the disk", "fsync directory of %s", path);
    }
    return 0;
}

int cq_fs_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                    struct cq_err *err)
{
    *out = NULL;
    if (out_len != NULL) {
        *out_len = 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return cq_err_set(err, e == ENOENT ? CQ_ENOTFOUND : CQ_EIO, e,
                          "check the path", "cannot open %s", path);
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
                          "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        close(fd);
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a smaller file",
                          "%s is %lld bytes, more than the %zu allowed", path,
                          (long long)st.st_size, max_bytes);
    }
    char *buf = malloc(max_bytes + 1 < (size_t)st.st_size + 1 ? max_bytes + 1
                                                              : (size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "reading %s", path);
    }
    size_t cap = (size_t)st.st_size, got = 0;
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
    return 0;
}
