/*
 * common.h — error codes, the error record and small macros shared by every
 * module of coinquant.
 *
 * Conventions (see ../shared/STYLE.md):
 *   - a call that can fail returns int: 0, or a negative CQ_E* code;
 *   - constructors return NULL and fill an optional struct cq_err;
 *   - cq_strerror() names a code (accepts it with or without the sign).
 *
 * Thread-safety: everything here is reentrant; a struct cq_err belongs to the
 * caller that passed it.
 */
#ifndef CQ_COMMON_H
#define CQ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define CQ_WUR __attribute__((warn_unused_result))
#define CQ_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#define CQ_UNUSED(x) ((void)(x))
#define CQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Error codes. Functions return the negated value (-CQ_EIO). */
enum cq_errcode {
    CQ_OK = 0,
    CQ_ENOMEM,    /* allocation failed */
    CQ_EINVAL,    /* invalid argument (a caller bug or bad input) */
    CQ_EIO,       /* I/O failed; sys_errno says why */
    CQ_EPARSE,    /* malformed input */
    CQ_EFULL,     /* bounded queue or buffer is full: apply backpressure */
    CQ_EAGAIN,    /* nothing available now; try again later */
    CQ_EVENUE,    /* the exchange rejected or failed the request */
    CQ_ECONFIG,   /* configuration is invalid */
    CQ_ENOTFOUND, /* no such thing */
    CQ_EEXIST,    /* already exists */
    CQ_ETIMEDOUT, /* a bounded wait expired */
    CQ_ESTATE,    /* call not valid in the object's current state */
    CQ_EPERM,     /* refused by policy (auth, mode, loopback rule) */
    CQ_ETOOBIG,   /* input exceeds a declared maximum size */
    CQ__ECOUNT
};

#define CQ_ERR_MESSAGE_MAX 512
#define CQ_ERR_HINT_MAX 256

/* What went wrong, for a human: filled by constructors and by calls that
 * take an optional struct cq_err *. */
struct cq_err {
    int code;                          /* positive CQ_E* */
    int sys_errno;                     /* errno when a system call failed, else 0 */
    char message[CQ_ERR_MESSAGE_MAX];  /* names the problem */
    char hint[CQ_ERR_HINT_MAX];        /* names the fix ("" if none) */
};

/* Name of an error code ("CQ_EIO: input/output error"); accepts -code. */
const char *cq_strerror(int code);

/* Fill err (if not NULL) and return -code, so callers can write
 *     return cq_err_set(err, CQ_EIO, errno, "check disk space", "write %s", p);
 * hint may be NULL. */
int cq_err_set(struct cq_err *err, int code, int sys_errno, const char *hint,
               const char *fmt, ...) CQ_PRINTF(5, 6);

/* Reset err to "no error". */
void cq_err_clear(struct cq_err *err);

/* Bounded string copy that always NUL-terminates; returns strlen(src) so the
 * caller can detect truncation (result >= dst_size). */
size_t cq_strlcpy(char *dst, const char *src, size_t dst_size);

#endif /* CQ_COMMON_H */
