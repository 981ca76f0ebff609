/* err.c — error codes, struct cq_err and small string helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cq/common.h"

static const char *const errnames[CQ__ECOUNT] = {
    [CQ_OK] = "CQ_OK: success",
    [CQ_ENOMEM] = "CQ_ENOMEM: out of memory",
    [CQ_EINVAL] = "CQ_EINVAL: invalid argument",
    [CQ_EIO] = "CQ_EIO: input/output error",
    [CQ_EPARSE] = "CQ_EPARSE: malformed input",
    [CQ_EFULL] = "CQ_EFULL: queue or buffer full",
    [CQ_EAGAIN] = "CQ_EAGAIN: try again",
    [CQ_EVENUE] = "CQ_EVENUE: exchange error",
    [CQ_ECONFIG] = "CQ_ECONFIG: invalid configuration",
    [CQ_ENOTFOUND] = "CQ_ENOTFOUND: not found",
    [CQ_EEXIST] = "CQ_EEXIST: already exists",
    [CQ_ETIMEDOUT] = "CQ_ETIMEDOUT: timed out",
    [CQ_ESTATE] = "CQ_ESTATE: invalid state for this call",
    [CQ_EPERM] = "CQ_EPERM: refused by policy",
    [CQ_ETOOBIG] = "CQ_ETOOBIG: too large",
};

const char *cq_strerror(int code)
{
    if (code < 0) {
        code = -code;
    }
    if (code >= CQ__ECOUNT) {
        return "CQ_E?: unknown error";
    }
    return errnames[code];
}

int cq_err_set(struct cq_err *err, int code, int sys_errno, const char *hint,
               const char *fmt, ...)
{
    if (code < 0) {
        code = -code;
    }
    if (err != NULL) {
        va_list ap;
        err->code = code;
        err->sys_errno = sys_errno;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        if (sys_errno != 0) {
            size_t used = strlen(err->message);
            snprintf(err->message + used, sizeof(err->message) - used, ": %s",
                     strerror(sys_errno));
        }
        cq_strlcpy(err->hint, hint != NULL ? hint : "", sizeof(err->hint));
    }
    return -code;
}

void cq_err_clear(struct cq_err *err)
{
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
    }
}

size_t cq_strlcpy(char *dst, const char *src, size_t dst_size)
{
    size_t len = strlen(src);
    if (dst_size > 0) {
        size_t n = len < dst_size - 1 ? len : dst_size - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}
