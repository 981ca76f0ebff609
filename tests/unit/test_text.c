/*
 * test_text.c — the small shared text helpers (cq/text.h) and the bounded
 * growable buffer (cq/buf.h): edit distance, hex digits and encoding,
 * Content-Length judgement, and the buffer's growth, bound, latch and
 * hand-over. Also the shared sleep of cq/clock.h.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/buf.h"
#include "cq/clock.h"
#include "cq/text.h"

Test(text, edit_distance_is_case_insensitive_and_bounded)
{
    const char *a = "cq_mdoe";
    cr_expect_eq(cq_text_edit_distance_ci(a, strlen(a), "CQ_MODE"), 2, "one swap = two edits");
    cr_expect_eq(cq_text_edit_distance_ci("abc", 3, "ABC"), 0);
    cr_expect_eq(cq_text_edit_distance_ci("", 0, "abc"), 3);
    cr_expect_eq(cq_text_edit_distance_ci("kitten", 6, "sitting"), 3);
    char longer[CQ_TEXT_COMPARE_MAX + 2];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_expect_eq(cq_text_edit_distance_ci(longer, strlen(longer), "a"), SIZE_MAX,
                 "longer than CQ_TEXT_COMPARE_MAX counts as far from everything");
}

Test(text, hex_values_and_decimal_limits)
{
    cr_expect_eq(cq_text_hex_value('0'), 0);
    cr_expect_eq(cq_text_hex_value('f'), 15);
    cr_expect_eq(cq_text_hex_value('A'), 10);
    cr_expect_eq(cq_text_hex_value('g'), -1);
    cr_expect_not(cq_text_decimal_exceeds("1024", 1024));
    cr_expect(cq_text_decimal_exceeds("1025", 1024));
    cr_expect(cq_text_decimal_exceeds("  99999999999999999999999", 1024), "too much to count");
    cr_expect_not(cq_text_decimal_exceeds("abc", 1024), "left to the HTTP library");
    char *d = cq_text_dup("x");
    cr_expect_str_eq(d, "x");
    free(d);
    cr_expect_null(cq_text_dup(NULL));
}

Test(text, hex_encode_is_lowercase_and_terminated)
{
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
    char out[2 * sizeof(bytes) + 2];
    memset(out, 'X', sizeof(out));
    cr_expect_eq(cq_text_hex_encode(bytes, sizeof(bytes), out), out);
    cr_expect_str_eq(out, "000fa5ff10");
    cr_expect_eq(out[2 * sizeof(bytes) + 1], 'X', "nothing written past the NUL");
    char empty[1] = {'X'};
    cq_text_hex_encode(bytes, 0, empty);
    cr_expect_str_eq(empty, "", "zero bytes: just the NUL");
}

Test(clock, sleep_waits_at_least_its_time_and_not_for_nothing)
{
    int64_t t0 = cq_time_mono_ms();
    cq_time_sleep_ms(30);
    int64_t took = cq_time_mono_ms() - t0;
    cr_expect_geq(took, 29, "slept %lld ms for 30 (ms clock: one tick of rounding)",
                  (long long)took);
    t0 = cq_time_mono_ms();
    cq_time_sleep_ms(0);
    cq_time_sleep_ms(-5);
    cr_expect_lt(cq_time_mono_ms() - t0, 1000, "0 or less only yields (loose bound)");
    cr_expect_eq(CQ_MS_PER_MINUTE, 60 * 1000);
}

Test(buf, grows_across_many_appends_and_hands_over)
{
    struct cq_buf b = {0};
    size_t want = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert(cq_buf_printf(&b, "%d,", i));
        want += (size_t)snprintf(NULL, 0, "%d,", i);
    }
    cr_assert(cq_buf_puts(&b, "end"));
    cr_assert(cq_buf_putc(&b, '\n'));
    want += 4;
    cr_expect_eq(b.len, want);
    cr_expect_eq(b.p[b.len], '\0', "always NUL-terminated");
    cr_expect_eq(strncmp(b.p, "0,1,2,", 6), 0);
    size_t len = 0;
    char *s = cq_buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_expect_eq(len, want);
    cr_expect_eq(strcmp(s + len - 4, "end\n"), 0);
    cr_expect_null(b.p, "taking resets the buffer");
    cr_expect_eq(b.len, 0);
    free(s);
}

Test(buf, bound_latches_failure_and_take_returns_null)
{
    struct cq_buf b;
    cq_buf_init(&b, 16);
    cr_expect(cq_buf_puts(&b, "0123456789abcde"), "15 bytes + NUL fit in 16");
    cr_expect_not(cq_buf_putc(&b, 'x'), "one more does not");
    cr_expect(b.failed);
    cr_expect_not(cq_buf_puts(&b, ""), "the failure latches, even for nothing");
    cr_expect_eq(b.len, 15, "contents before the failure are untouched");
    size_t len = 99;
    cr_expect_null(cq_buf_take(&b, &len));
    cr_expect_eq(len, 0);
    cr_expect_not(b.failed, "take resets");
    cr_expect_eq(b.max_bytes, 16, "and keeps the bound");
    cr_expect(cq_buf_printf(&b, "%s", "again"));
    cr_expect_not(cq_buf_printf(&b, "%020d", 1), "a printf that would cross the bound fails");
    cq_buf_free(&b);
    cr_expect_null(b.p);
}

Test(buf, empty_take_is_null_and_binary_bytes_are_kept)
{
    struct cq_buf b = {0};
    cr_expect_null(cq_buf_take(&b, NULL), "nothing appended: nothing to hand over");
    const char bin[4] = {'a', '\0', 'b', '\0'};
    cr_assert(cq_buf_put(&b, bin, sizeof bin));
    cr_expect_eq(b.len, 4);
    cr_expect_eq(memcmp(b.p, bin, 4), 0);
    cq_buf_free(&b);
}

/* The one UTF-8 validator and cut the log, the admin API, the health board,
 * cq_err and the simulator's WebSocket share. */
Test(text, utf8_validate_and_cut_on_character_boundaries)
{
    cr_assert(cq_text_utf8_valid("abc \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    cr_assert_not(cq_text_utf8_valid("\xff", 1));
    cr_assert_not(cq_text_utf8_valid("\xc0\xaf", 2));         /* overlong */
    cr_assert_not(cq_text_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    cr_assert_not(cq_text_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    cr_assert_not(cq_text_utf8_valid("\xe2\x82", 2));         /* truncated */
    const char *s = "ab\xe2\x82\xac";                         /* "ab€": 5 bytes */
    cr_assert_eq(cq_text_utf8_cut(s, 5, 9), 5);
    cr_assert_eq(cq_text_utf8_cut(s, 5, 4), 2, "never inside the euro sign");
    cr_assert_eq(cq_text_utf8_cut(s, 5, 2), 2);
    char buf[8] = "abcd\xe2\x82\xac";   /* 7 bytes + NUL, as if cut */
    cq_text_mark_cut(buf, sizeof(buf)); /* "..." must start at byte 4 */
    cr_assert_str_eq(buf, "abcd...");
    char buf2[7] = "ab\xe2\x82\xac"
                   "c";
    cq_text_mark_cut(buf2, sizeof(buf2)); /* byte 3 is inside the euro sign */
    cr_assert_str_eq(buf2, "ab...");
    cr_assert(cq_text_utf8_valid(buf2, strlen(buf2)));
}
