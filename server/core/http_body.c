/*
 * http_body.c — the bounded request body reader of both libmicrohttpd front
 * ends (see cq/http_body.h). Pure bookkeeping: no I/O, no lock, no sleep.
 */
#include <string.h>

#include "cq/http_body.h"
#include "cq/text.h"

void cq_http_body_init(struct cq_http_body *b, uint64_t max_bytes, bool keep,
                       struct cq_http_body_stats *stats)
{
    memset(b, 0, sizeof(*b));
    b->max_bytes = max_bytes;
    b->keep = keep;
    b->stats = stats;
    /* cq_buf's bound counts the NUL; 0 would mean "unbounded", so a bound
     * that does not fit a size_t is clamped to the largest one it takes
     * (only reachable when counting: keeping readers have small bounds) */
    size_t buf_max = max_bytes < (uint64_t)(SIZE_MAX / 2) ? (size_t)max_bytes + 1 : SIZE_MAX / 2;
    cq_buf_init(&b->buf, buf_max);
    b->status = CQ_HTTP_BODY_OK;
}

static void count(_Atomic uint64_t *counter, uint64_t n)
{
    /* relaxed: a statistic, nothing is ordered by it */
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static void discard(struct cq_http_body *b, uint64_t n)
{
    b->discarded_bytes += n;
    if (b->stats != NULL && n > 0) {
        count(&b->stats->discarded_bytes, n);
    }
    if (b->status == CQ_HTTP_BODY_REFUSED && b->discarded_bytes > CQ_HTTP_BODY_DISCARD_MAX_BYTES) {
        b->status = CQ_HTTP_BODY_DROP;
        if (b->stats != NULL) {
            count(&b->stats->dropped, 1);
        }
    }
}

static void refuse(struct cq_http_body *b, bool at_head)
{
    b->status = CQ_HTTP_BODY_REFUSED;
    b->refused_at_head = at_head;
    if (b->stats != NULL) {
        count(at_head ? &b->stats->refused_announced : &b->stats->refused_streamed, 1);
    }
}

enum cq_http_body_status cq_http_body_begin(struct cq_http_body *b, const char *content_length)
{
    if (b->status == CQ_HTTP_BODY_OK && content_length != NULL &&
        cq_text_decimal_exceeds(content_length, b->max_bytes)) {
        refuse(b, true);
    }
    return b->status;
}

enum cq_http_body_status cq_http_body_feed(struct cq_http_body *b, const void *data, size_t n)
{
    if (b->status != CQ_HTTP_BODY_OK) {
        discard(b, n);
        return b->status;
    }
    /* accepted_bytes <= max_bytes always holds, so this cannot wrap */
    if ((uint64_t)n > b->max_bytes - b->accepted_bytes) {
        refuse(b, false);
        discard(b, n); /* the piece that would cross the bound is not kept */
        return b->status;
    }
    if (b->keep && n > 0 && !cq_buf_put(&b->buf, data, n)) {
        b->status = CQ_HTTP_BODY_NOMEM; /* within the bound: only allocation fails */
        return b->status;
    }
    b->accepted_bytes += n;
    return b->status;
}

bool cq_http_body_refused(const struct cq_http_body *b)
{
    return b->status == CQ_HTTP_BODY_REFUSED || b->status == CQ_HTTP_BODY_DROP;
}

const char *cq_http_body_data(const struct cq_http_body *b, size_t *len)
{
    bool has = b->keep && b->buf.p != NULL && !b->buf.failed;
    if (len != NULL) {
        *len = has ? b->buf.len : 0;
    }
    return has ? b->buf.p : "";
}

void cq_http_body_fini(struct cq_http_body *b)
{
    cq_buf_free(&b->buf);
}
