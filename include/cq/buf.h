/*
 * buf.h — a growable, bounded text buffer: append bytes, strings or
 * printf output; the first failure (out of memory, or over the buffer's
 * max_bytes) latches, later appends do nothing, and the owner checks once
 * at the end. Used wherever a module builds a document of unknown length:
 * log lines, canonical journal state, Prometheus metrics, debug bundles.
 *
 * Not thread-safe: one owner at a time. The contents are NUL-terminated
 * whenever len > 0.
 */
#ifndef CQ_BUF_H
#define CQ_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "cq/common.h"

struct cq_buf {
    char *p;          /* owned; NULL until the first append */
    size_t len;       /* bytes used, without the NUL */
    size_t cap;       /* bytes allocated */
    size_t max_bytes; /* bound on len + 1; 0 means SIZE_MAX / 2 */
    bool failed;      /* latched: out of memory or over max_bytes */
};

/* An empty buffer; also a valid initializer: struct cq_buf b = {0}. */
void cq_buf_init(struct cq_buf *b, size_t max_bytes);

/* Append; false (and failed latched) when it does not fit. */
bool cq_buf_put(struct cq_buf *b, const void *data, size_t n);
bool cq_buf_puts(struct cq_buf *b, const char *s);
bool cq_buf_putc(struct cq_buf *b, char c);
bool cq_buf_printf(struct cq_buf *b, const char *fmt, ...) CQ_PRINTF(2, 3);

/* Empty the buffer and clear a failure, keeping its memory for reuse. */
void cq_buf_reset(struct cq_buf *b);

/* Hand the contents to the caller (free() them) and empty the buffer.
 * NULL when the buffer failed (its memory is freed) or is empty; *len, if
 * given, receives the length. */
char *cq_buf_take(struct cq_buf *b, size_t *len);

/* Release the memory. The buffer stays usable, with the same bound. */
void cq_buf_free(struct cq_buf *b);

#endif /* CQ_BUF_H */
