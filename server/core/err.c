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

/* buf (size bytes) held a text that did not fit: end it with "..." on a
 * UTF-8 character boundary, so the cut is visible and the text stays valid
 * UTF-8 for JSON logs. */
static void mark_cut(char *buf, size_t size)
{
    if (size < 4) {
        return;
    }
    size_t p = size - 4; /* "..." and the NUL fill the last 4 bytes */
    while (p > 0 && ((unsigned char)buf[p] & 0xC0) == 0x80) {
        p--; /* back to the first byte of the character being cut */
    }
    memcpy(buf + p, "...", 4);
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
        /* The errno text is kept whole: the message is cut before it. */
        char suffix[128] = "";
        if (sys_errno != 0) {
            /* bounded: strerror texts are short; a longer one is cut */
            (void)snprintf(suffix, sizeof(suffix), ": %s", strerror(sys_errno));
        }
        size_t room = sizeof(err->message) - strlen(suffix);
        va_start(ap, fmt);
        int n = vsnprintf(err->message, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            err->message[0] = '\0';
        } else if ((size_t)n >= room) {
            mark_cut(err->message, room);
        }
        size_t used = strlen(err->message);
        memcpy(err->message + used, suffix, strlen(suffix) + 1); /* fits: room left for it */
        if (cq_strlcpy(err->hint, hint != NULL ? hint : "", sizeof(err->hint)) >=
            sizeof(err->hint)) {
            mark_cut(err->hint, sizeof(err->hint));
        }
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
