/*
 * http_body.h — the request body reader shared by the two libmicrohttpd
 * front ends: the admin API (api/api.c), which only counts a body, and the
 * simulator's REST server (server/sim/rest.c), which keeps it (form
 * parameters).
 *
 * One reader per request. The access handler gives it the request's
 * Content-Length once the head has arrived (cq_http_body_begin; NULL when
 * there is none, e.g. Transfer-Encoding: chunked), then every piece of
 * upload data as libmicrohttpd hands it over (cq_http_body_feed). The reader
 * accepts at most max_bytes in all. A body announced larger is refused at
 * the head, before the client sends a byte of it (the front end answers 413
 * at once, so no "100 Continue" goes out); a body without an honest
 * Content-Length is refused on the piece that would take it past max_bytes,
 * and that piece is not kept: nothing beyond the bound is ever buffered.
 * After a refusal the reader throws away what still arrives, up to
 * CQ_HTTP_BODY_DISCARD_MAX_BYTES; beyond that it says to drop the
 * connection (a client that ignores the 413 does not keep a slot).
 *
 * Threads: no I/O, no lock, no sleep, no allocation beyond the kept body
 * (grown on demand, never past max_bytes + 1): it runs inside libmicrohttpd's
 * callbacks (ARCHITECTURE rule 8). A reader belongs to the one thread that
 * serves its request. The refusal counters (struct cq_http_body_stats) are
 * shared by every reader of a front end: relaxed atomics, any thread.
 */
#ifndef CQ_HTTP_BODY_H
#define CQ_HTTP_BODY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq/buf.h"
#include "cq/common.h"

/* After a refusal, bytes read and thrown away before the reader says to
 * drop the connection. */
#define CQ_HTTP_BODY_DISCARD_MAX_BYTES ((uint64_t)1024 * 1024)

enum cq_http_body_status {
    CQ_HTTP_BODY_OK,      /* within max_bytes so far: keep reading */
    CQ_HTTP_BODY_REFUSED, /* over max_bytes: answer 413; later pieces are discarded */
    CQ_HTTP_BODY_DROP,    /* refused, and more than the discard allowance came after: close */
    CQ_HTTP_BODY_NOMEM    /* a piece within the bound could not be kept: close */
};

/* What a front end's readers refused, for its statistics. Zero-initialise;
 * relaxed atomics (counters only: nothing is ordered by them). */
struct cq_http_body_stats {
    _Atomic uint64_t refused_announced; /* Content-Length over max_bytes: refused at the head */
    _Atomic uint64_t
        refused_streamed; /* no (or a lower) Content-Length: the bound hit while reading */
    _Atomic uint64_t discarded_bytes; /* bytes read and thrown away after a refusal */
    _Atomic uint64_t dropped;         /* connections dropped: past the discard allowance */
};

struct cq_http_body {
    uint64_t max_bytes;               /* the bound on the whole body */
    bool keep;                        /* keep the bytes (else count them only) */
    struct cq_http_body_stats *stats; /* borrowed; NULL: not counted */
    struct cq_buf buf;                /* the kept body (keep only); len <= max_bytes */
    uint64_t accepted_bytes;          /* bytes accepted so far: <= max_bytes */
    uint64_t discarded_bytes;         /* bytes thrown away after the refusal */
    bool refused_at_head;             /* refused by its Content-Length */
    enum cq_http_body_status status;  /* latched: OK until the first refusal or failure */
};

/* An empty reader for a body of at most max_bytes; keep: store the bytes
 * (cq_http_body_data), else count them only. stats may be NULL. */
void cq_http_body_init(struct cq_http_body *b, uint64_t max_bytes, bool keep,
                       struct cq_http_body_stats *stats);

/* The request head has arrived. content_length: the Content-Length header's
 * value, or NULL when the request has none. REFUSED when it announces more
 * than max_bytes (or a number too large to count); a value that is not a
 * number is not judged here (libmicrohttpd rejects it), the bytes that
 * arrive are. Call once, before any cq_http_body_feed. */
enum cq_http_body_status cq_http_body_begin(struct cq_http_body *b, const char *content_length);

/* The next n bytes of the body (n may be 0). Returns the reader's status
 * after them. Once not OK, the bytes are only counted as discarded. */
enum cq_http_body_status cq_http_body_feed(struct cq_http_body *b, const void *data, size_t n);

/* True once the body was refused (REFUSED or DROP): answer 413. */
bool cq_http_body_refused(const struct cq_http_body *b);

/* The kept body, NUL-terminated ("" when empty or when only counting);
 * borrowed until the next feed or fini. *len (optional) gets its length. */
const char *cq_http_body_data(const struct cq_http_body *b, size_t *len);

/* Release the kept body. The reader must be initialised again to be used. */
void cq_http_body_fini(struct cq_http_body *b);

#endif /* CQ_HTTP_BODY_H */
