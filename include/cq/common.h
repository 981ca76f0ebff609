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
 * take an optional struct cq_err *.
 *
 * The one sign convention: a CQ_E* value written as its name (CQ_EIO) is
 * positive; a function's return code is its negation (-CQ_EIO). So
 *   - cq_err_set() takes the POSITIVE code (write -rc to pass on a return
 *     code rc < 0) and returns the negative one;
 *   - struct cq_err.code holds the POSITIVE code (compare with CQ_EIO). */
struct cq_err {
    int code;                         /* positive CQ_E* (never 0 once set) */
    int sys_errno;                    /* errno when a system call failed, else 0 */
    char message[CQ_ERR_MESSAGE_MAX]; /* names the problem */
    char hint[CQ_ERR_HINT_MAX];       /* names the fix ("" if none) */
};

/* Name of an error code ("CQ_EIO: input/output error"); accepts -code. */
const char *cq_strerror(int code);

/* Fill err (if not NULL) and return -code, so callers can write
 *     return cq_err_set(err, CQ_EIO, errno, "check disk space", "write %s", p);
 *     return cq_err_set(err, -rc, 0, NULL, "verifying %s", dir);  (rc < 0)
 * code must be a positive CQ_E* (1 .. CQ__ECOUNT-1); hint may be NULL.
 *
 * A code outside that range is a programming error at the call site (the
 * caller passed a return code without negating it, or 0). It is checked in
 * every build: the call site (file:line) is reported once on stderr as
 * event "err_code_misuse" and every occurrence is counted
 * (cq_err_misuse_count()); then, in a build with assertions (!NDEBUG, which
 * includes CI and the tests) the process aborts, while a release build
 * carries on with the code normalised (-code for a negated code, CQ_EINVAL
 * for 0 or an unknown value), so a wrong sign never turns an error into a
 * success nor takes a trading process down. */
#define cq_err_set(err, code, ...) cq_err__set(__FILE__, __LINE__, (err), (code), __VA_ARGS__)
int cq_err__set(const char *file, int line, struct cq_err *err, int code, int sys_errno,
                const char *hint, const char *fmt, ...) CQ_PRINTF(7, 8);

/* How many cq_err_set calls passed a code outside 1 .. CQ__ECOUNT-1 since
 * the process started. Any thread. */
unsigned long cq_err_misuse_count(void);

/* Tests only: whether a misuse aborts (default: true unless NDEBUG).
 * Returns the previous setting. */
bool cq_err__abort_on_misuse(bool on);

/* Reset err to "no error". */
void cq_err_clear(struct cq_err *err);

/* Bounded string copy that always NUL-terminates; returns strlen(src) so the
 * caller can detect truncation (result >= dst_size). */
size_t cq_strlcpy(char *dst, const char *src, size_t dst_size);

#endif /* CQ_COMMON_H */
