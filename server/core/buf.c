/*
 * buf.c — the growable, bounded text buffer (see cq/buf.h).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/buf.h"

#define BUF_FIRST_CAP 256

void cq_buf_init(struct cq_buf *b, size_t max_bytes)
{
    memset(b, 0, sizeof *b);
    b->max_bytes = max_bytes;
}

/* Room for extra more bytes plus the NUL. */
static bool reserve(struct cq_buf *b, size_t extra)
{
    if (b->failed) {
        return false;
    }
    size_t max = b->max_bytes != 0 ? b->max_bytes : SIZE_MAX / 2;
    if (extra >= max || b->len + extra + 1 > max) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return true;
    }
    size_t cap = b->cap > 0 ? b->cap : BUF_FIRST_CAP;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > max) {
        cap = max;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

bool cq_buf_put(struct cq_buf *b, const void *data, size_t n)
{
    if (!reserve(b, n)) {
        return false;
    }
    if (n > 0) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

bool cq_buf_puts(struct cq_buf *b, const char *s)
{
    return cq_buf_put(b, s, strlen(s));
}

bool cq_buf_putc(struct cq_buf *b, char c)
{
    return cq_buf_put(b, &c, 1);
}

bool cq_buf_printf(struct cq_buf *b, const char *fmt, ...)
{
    if (b->failed) {
        return false;
    }
    /* Format straight into the free space; only when it does not fit,
     * grow and format again (short fragments cost one pass). */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room > 0 ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->p != NULL) {
            b->p[b->len] = '\0';
        }
        b->failed = true;
        return false;
    }
    if ((size_t)n < room) { /* cap never exceeds the bound: fits both */
        b->len += (size_t)n;
        return true;
    }
    if (b->p != NULL) {
        b->p[b->len] = '\0'; /* undo the truncated attempt */
    }
    if (!reserve(b, (size_t)n)) {
        return false;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

char *cq_buf_take(struct cq_buf *b, size_t *len)
{
    char *p = NULL;
    if (!b->failed && b->len > 0) {
        p = b->p;
        b->p = NULL;
    }
    if (len != NULL) {
        *len = p != NULL ? b->len : 0;
    }
    cq_buf_free(b);
    return p;
}

void cq_buf_reset(struct cq_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->p != NULL) {
        b->p[0] = '\0';
    }
}

void cq_buf_free(struct cq_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
