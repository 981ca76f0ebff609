/*
 * test_http_body.c — the request body reader both libmicrohttpd front ends
 * share (cq/http_body.h): the bound at max and max + 1 bytes, announced by
 * Content-Length and streamed without one (chunked), zero-length bodies,
 * bodies split across many upload callbacks, nothing kept beyond the bound,
 * the discard allowance after a refusal, and the refusal counters.
 * The front ends over the wire: test_api (oversized_bodies_get_413_over_the_wire)
 * and test_sim_rest (a form body at and over SIM_BODY_MAX_BYTES).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/http_body.h"

#define MAX 1024u

static uint64_t load(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A body of len bytes: a repeating pattern, so a misplaced piece shows. */
static char *pattern(size_t len)
{
    char *p = malloc(len + 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < len; i++) {
        p[i] = (char)('a' + (i * 7 + i / 26) % 26);
    }
    p[len] = '\0';
    return p;
}

/* Feed body[0, len) in pieces of `piece` bytes (the last one shorter);
 * returns the status after the last piece. */
static enum cq_http_body_status feed_in_pieces(struct cq_http_body *b, const char *body, size_t len,
                                               size_t piece)
{
    enum cq_http_body_status st = CQ_HTTP_BODY_OK;
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        st = cq_http_body_feed(b, body + off, n);
    }
    return st;
}

Test(http_body, exactly_max_bytes_is_accepted_and_kept)
{
    struct cq_http_body_stats stats = {0};
    char *body = pattern(MAX);
    char cl[24];
    snprintf(cl, sizeof cl, "%u", MAX);
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, true, &stats);
    cr_assert_eq(cq_http_body_begin(&b, cl), CQ_HTTP_BODY_OK, "Content-Length: max is allowed");
    cr_assert_eq(feed_in_pieces(&b, body, MAX, 100), CQ_HTTP_BODY_OK);
    cr_expect_not(cq_http_body_refused(&b));
    size_t len = 0;
    const char *data = cq_http_body_data(&b, &len);
    cr_assert_eq(len, MAX);
    cr_expect_eq(memcmp(data, body, MAX), 0, "the kept body is the body sent");
    cr_expect_eq(data[MAX], '\0', "NUL-terminated");
    cr_expect_eq(load(&stats.refused_announced) + load(&stats.refused_streamed), 0);
    cq_http_body_fini(&b);
    free(body);
}

Test(http_body, max_plus_one_announced_is_refused_at_the_head)
{
    struct cq_http_body_stats stats = {0};
    char cl[24];
    snprintf(cl, sizeof cl, "%u", MAX + 1);
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, true, &stats);
    cr_assert_eq(cq_http_body_begin(&b, cl), CQ_HTTP_BODY_REFUSED,
                 "Content-Length: max + 1 is refused before a byte arrives");
    cr_expect(cq_http_body_refused(&b));
    cr_expect(b.refused_at_head);
    cr_expect_eq(load(&stats.refused_announced), 1);
    cr_expect_eq(load(&stats.refused_streamed), 0);
    /* what still arrives is thrown away, not kept */
    char *body = pattern(MAX + 1);
    cr_expect_eq(feed_in_pieces(&b, body, MAX + 1, 64), CQ_HTTP_BODY_REFUSED);
    size_t len = 1;
    cr_expect_str_eq(cq_http_body_data(&b, &len), "");
    cr_expect_eq(len, 0);
    cr_expect_null(b.buf.p, "nothing was buffered");
    cr_expect_eq(b.discarded_bytes, MAX + 1);
    cr_expect_eq(load(&stats.discarded_bytes), MAX + 1);
    cq_http_body_fini(&b);
    free(body);
}

Test(http_body, announced_numbers_too_large_to_count_are_refused)
{
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, false, NULL);
    cr_expect_eq(cq_http_body_begin(&b, "  99999999999999999999999999"), CQ_HTTP_BODY_REFUSED);
    cq_http_body_fini(&b);
    /* not a number: left to libmicrohttpd; the bytes are still bounded */
    cq_http_body_init(&b, MAX, false, NULL);
    cr_expect_eq(cq_http_body_begin(&b, "abc"), CQ_HTTP_BODY_OK);
    char *body = pattern(MAX + 1);
    cr_expect_eq(cq_http_body_feed(&b, body, MAX + 1), CQ_HTTP_BODY_REFUSED);
    cq_http_body_fini(&b);
    free(body);
}

/* Transfer-Encoding: chunked (no Content-Length): counted as it arrives,
 * one byte per upload callback. max bytes pass; the byte after is refused
 * and nothing beyond the bound is kept. */
Test(http_body, chunked_without_content_length_is_bounded_as_it_arrives)
{
    struct cq_http_body_stats stats = {0};
    char *body = pattern(MAX + 1);
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, true, &stats);
    cr_assert_eq(cq_http_body_begin(&b, NULL), CQ_HTTP_BODY_OK);
    cr_assert_eq(feed_in_pieces(&b, body, MAX, 1), CQ_HTTP_BODY_OK, "max bytes, one at a time");
    size_t len = 0;
    cr_expect_eq(memcmp(cq_http_body_data(&b, &len), body, MAX), 0);
    cr_expect_eq(len, MAX);
    cr_assert_eq(cq_http_body_feed(&b, body + MAX, 1), CQ_HTTP_BODY_REFUSED, "byte max + 1");
    cr_expect(cq_http_body_refused(&b));
    cr_expect_not(b.refused_at_head);
    cr_expect_eq(b.accepted_bytes, MAX);
    cr_expect_eq(b.buf.len, MAX, "the refused byte is not kept");
    cr_expect_leq(b.buf.cap, (size_t)MAX + 1, "never buffered beyond the bound");
    cr_expect_eq(load(&stats.refused_streamed), 1);
    cr_expect_eq(load(&stats.refused_announced), 0);
    cq_http_body_fini(&b);
    free(body);
}

/* A Content-Length that understates the body does not widen the bound. */
Test(http_body, a_lying_content_length_does_not_widen_the_bound)
{
    struct cq_http_body_stats stats = {0};
    char *body = pattern(MAX + 10);
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, true, &stats);
    cr_assert_eq(cq_http_body_begin(&b, "10"), CQ_HTTP_BODY_OK);
    cr_expect_eq(feed_in_pieces(&b, body, MAX + 10, 512), CQ_HTTP_BODY_REFUSED);
    cr_expect_leq(b.buf.len, MAX);
    cr_expect_eq(load(&stats.refused_streamed), 1);
    cq_http_body_fini(&b);
    free(body);
}

Test(http_body, zero_length_bodies)
{
    struct cq_http_body b;
    size_t len = 1;
    /* Content-Length: 0, and the empty upload call libmicrohttpd may make */
    cq_http_body_init(&b, MAX, true, NULL);
    cr_expect_eq(cq_http_body_begin(&b, "0"), CQ_HTTP_BODY_OK);
    cr_expect_eq(cq_http_body_feed(&b, NULL, 0), CQ_HTTP_BODY_OK);
    cr_expect_str_eq(cq_http_body_data(&b, &len), "");
    cr_expect_eq(len, 0);
    cq_http_body_fini(&b);
    /* max_bytes 0: an empty body passes, the first byte is refused */
    cq_http_body_init(&b, 0, true, NULL);
    cr_expect_eq(cq_http_body_begin(&b, "0"), CQ_HTTP_BODY_OK);
    cr_expect_eq(cq_http_body_feed(&b, "", 0), CQ_HTTP_BODY_OK);
    cr_expect_eq(cq_http_body_feed(&b, "x", 1), CQ_HTTP_BODY_REFUSED);
    cq_http_body_fini(&b);
    cq_http_body_init(&b, 0, false, NULL);
    cr_expect_eq(cq_http_body_begin(&b, "1"), CQ_HTTP_BODY_REFUSED);
    cq_http_body_fini(&b);
}

/* Split across many upload callbacks of varying sizes (a fixed sequence):
 * the kept body is the body sent, byte for byte. */
Test(http_body, split_across_many_upload_callbacks)
{
    const size_t len = 60000;
    char *body = pattern(len);
    struct cq_http_body b;
    cq_http_body_init(&b, len, true, NULL);
    cr_assert_eq(cq_http_body_begin(&b, NULL), CQ_HTTP_BODY_OK);
    size_t off = 0, calls = 0;
    uint32_t x = 12345;
    while (off < len) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 16) % 97; /* 0..96 bytes, empty calls included */
        if (n > len - off) {
            n = len - off;
        }
        cr_assert_eq(cq_http_body_feed(&b, body + off, n), CQ_HTTP_BODY_OK, "at %zu", off);
        off += n;
        calls++;
    }
    cr_expect_gt(calls, 1000);
    size_t got = 0;
    const char *data = cq_http_body_data(&b, &got);
    cr_assert_eq(got, len);
    cr_expect_eq(memcmp(data, body, len), 0);
    cq_http_body_fini(&b);
    free(body);
}

/* The admin API only counts: nothing is allocated however much arrives. */
Test(http_body, counting_reader_keeps_nothing)
{
    char *body = pattern(MAX);
    struct cq_http_body b;
    cq_http_body_init(&b, MAX, false, NULL);
    cr_assert_eq(cq_http_body_begin(&b, NULL), CQ_HTTP_BODY_OK);
    cr_expect_eq(feed_in_pieces(&b, body, MAX, 7), CQ_HTTP_BODY_OK);
    cr_expect_eq(b.accepted_bytes, MAX);
    cr_expect_null(b.buf.p);
    size_t len = 1;
    cr_expect_str_eq(cq_http_body_data(&b, &len), "");
    cr_expect_eq(len, 0);
    cq_http_body_fini(&b);
    free(body);
}

/* After a refusal the reader reads and throws away up to
 * CQ_HTTP_BODY_DISCARD_MAX_BYTES; one byte more says "drop the connection",
 * counted once. */
Test(http_body, discard_allowance_then_drop)
{
    struct cq_http_body_stats stats = {0};
    static char chunk[4096];
    memset(chunk, 'z', sizeof chunk);
    struct cq_http_body b;
    cq_http_body_init(&b, 16, false, &stats);
    cr_assert_eq(cq_http_body_begin(&b, "17"), CQ_HTTP_BODY_REFUSED);
    uint64_t sent = 0;
    while (sent + sizeof chunk <= CQ_HTTP_BODY_DISCARD_MAX_BYTES) {
        cr_assert_eq(cq_http_body_feed(&b, chunk, sizeof chunk), CQ_HTTP_BODY_REFUSED,
                     "within the allowance at %llu", (unsigned long long)sent);
        sent += sizeof chunk;
    }
    cr_assert_eq(sent, CQ_HTTP_BODY_DISCARD_MAX_BYTES, "the allowance is a multiple of 4096");
    cr_expect_eq(cq_http_body_feed(&b, chunk, 1), CQ_HTTP_BODY_DROP, "one byte past it");
    cr_expect(cq_http_body_refused(&b));
    cr_expect_eq(cq_http_body_feed(&b, chunk, 1), CQ_HTTP_BODY_DROP, "latched");
    cr_expect_eq(load(&stats.dropped), 1, "counted once");
    cr_expect_eq(load(&stats.discarded_bytes), CQ_HTTP_BODY_DISCARD_MAX_BYTES + 2);
    cr_expect_eq(load(&stats.refused_announced), 1);
    cq_http_body_fini(&b);
}
