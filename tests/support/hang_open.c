/*
 * hang_open.c — an LD_PRELOAD shim for tests/integration/test_reload_hang.sh
 * (issue 17.3): while the file named by HANG_OPEN_WHILE exists, opening the
 * path named by HANG_OPEN_PATH blocks, on whichever thread opens it, as a
 * read of a regular file on a hung NFS or FUSE mount would. Nothing in
 * coinquantd knows about it: it is never linked into a program, only
 * preloaded by that test. Without both variables it changes nothing.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE   /* fcntl.h must declare open(), not define a wrapper */
#undef _FILE_OFFSET_BITS /* nor rename open() to open64(): each is defined below */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static void maybe_hang(const char *path)
{
    const char *target = getenv("HANG_OPEN_PATH");
    const char *marker = getenv("HANG_OPEN_WHILE");
    if (path == NULL || target == NULL || marker == NULL || strcmp(path, target) != 0) {
        return;
    }
    struct timespec slice = {0, 10 * 1000000L};
    while (access(marker, F_OK) == 0) {
        nanosleep(&slice, NULL);
    }
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

#define SHIM_OPEN(name)                                                                            \
    int name(const char *path, int flags, ...)                                                     \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = mode_arg(flags, ap);                                                         \
        va_end(ap);                                                                                \
        maybe_hang(path);                                                                          \
        open_fn real;                                                                              \
        void *sym = dlsym(RTLD_NEXT, #name);                                                       \
        memcpy(&real, &sym, sizeof(real)); /* POSIX: dlsym returns functions so */                 \
        return real(path, flags, mode);                                                            \
    }

#define SHIM_OPENAT(name)                                                                          \
    int name(int dirfd, const char *path, int flags, ...)                                          \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = mode_arg(flags, ap);                                                         \
        va_end(ap);                                                                                \
        maybe_hang(path);                                                                          \
        openat_fn real;                                                                            \
        void *sym = dlsym(RTLD_NEXT, #name);                                                       \
        memcpy(&real, &sym, sizeof(real));                                                         \
        return real(dirfd, path, flags, mode);                                                     \
    }

SHIM_OPEN(open)
SHIM_OPEN(open64)
SHIM_OPENAT(openat)
SHIM_OPENAT(openat64)

/* What a _FORTIFY_SOURCE build calls for open() with flags not known at
 * compile time. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __open_2(const char *path, int flags)
{
    return open(path, flags);
}
int __open64_2(const char *path, int flags)
{
    return open64(path, flags);
}
