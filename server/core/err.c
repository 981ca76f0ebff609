/* err.c — error codes, struct cq_err and small string helpers. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cq/common.h"
#include "cq/text.h"

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

/* ---- the sign convention (see common.h) ---- */

static atomic_ulong misuse_total;
static atomic_bool misuse_reported;
#ifdef NDEBUG
static atomic_bool misuse_aborts = false;
#else
static atomic_bool misuse_aborts = true;
#endif

unsigned long cq_err_misuse_count(void)
{
    return atomic_load(&misuse_total);
}

bool cq_err__abort_on_misuse(bool on)
{
    return atomic_exchange(&misuse_aborts, on);
}

/* A call site passed a code that is not a positive CQ_E*: count it, report
 * the first one (file:line names the call site to fix), abort in a build
 * with assertions, else return the code it most likely meant. Written to
 * stderr directly, as one JSON line: err.c sits below the logger (and is
 * linked without it), and this must work before the logger is open. */
static int misuse(const char *file, int line, int code)
{
    atomic_fetch_add(&misuse_total, 1);
    int meant = code < 0 && code > -CQ__ECOUNT ? -code : CQ_EINVAL;
    if (!atomic_exchange(&misuse_reported, true) || atomic_load(&misuse_aborts)) {
        (void)fprintf(stderr,
                      "{\"level\":\"error\",\"service\":\"core\",\"event\":\"err_code_misuse\","
                      "\"file\":\"%s\",\"line\":%d,\"code\":%d,\"used\":%d,"
                      "\"msg\":\"cq_err_set got code %d at %s:%d: it takes a positive CQ_E* "
                      "(write -rc to pass on a return code); using %d\"}\n",
                      file, line, code, meant, code, file, line, meant);
        (void)fflush(stderr);
    }
    if (atomic_load(&misuse_aborts)) {
        abort();
    }
    return meant;
}

int cq_err__set(const char *file, int line, struct cq_err *err, int code, int sys_errno,
                const char *hint, const char *fmt, ...)
{
    if (code <= 0 || code >= CQ__ECOUNT) {
        code = misuse(file, line, code);
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
            cq_text_mark_cut(err->message, room);
        }
        size_t used = strlen(err->message);
        memcpy(err->message + used, suffix, strlen(suffix) + 1); /* fits: room left for it */
        if (cq_strlcpy(err->hint, hint != NULL ? hint : "", sizeof(err->hint)) >=
            sizeof(err->hint)) {
            cq_text_mark_cut(err->hint, sizeof(err->hint));
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
