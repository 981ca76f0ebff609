/*
 * text.h — small text helpers shared by every module that talks to people
 * (config, strategy parameters, indicator specs): the edit distance behind
 * "did you mean …?" suggestions, hex digits and lowercase hex encoding, a
 * NULL-tolerant strdup. Pure
 * and reentrant: any thread.
 */
#ifndef CQ_TEXT_H
#define CQ_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest string compared; longer ones count as far from everything. */
#define CQ_TEXT_COMPARE_MAX 64

/* Case-insensitive Levenshtein distance between a[0..alen) and the
 * NUL-terminated b; SIZE_MAX when either is longer than CQ_TEXT_COMPARE_MAX. */
size_t cq_text_edit_distance_ci(const char *a, size_t alen, const char *b);

/* The value of one hexadecimal digit (either case), or -1. */
static inline int cq_text_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Lowercase hex of bytes[0..n) into out: 2 * n characters and a NUL, so out
 * holds at least 2 * n + 1 bytes. Returns out. */
char *cq_text_hex_encode(const void *bytes, size_t n, char *out);

/* For HTTP Content-Length: true when value (optional leading blanks, then
 * decimal digits) announces more than max, or too much to count. A value
 * that does not start with a digit is not judged here (false): the HTTP
 * library rejects it. */
bool cq_text_decimal_exceeds(const char *value, uint64_t max);

/* An owned copy of s, or NULL when s is NULL (or allocation fails). */
char *cq_text_dup(const char *s);

/* UTF-8 as jansson accepts it (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). The length of the valid character at s (at most
 * left bytes), 0 if invalid; whether s[0, len) is valid throughout; and the
 * largest length <= max that does not split a character of s[0, len). */
size_t cq_text_utf8_char_len(const unsigned char *s, size_t left);
bool cq_text_utf8_valid(const char *s, size_t len);
size_t cq_text_utf8_cut(const char *s, size_t len, size_t max);

/* buf (size bytes, NUL-terminated) was cut: end it in "..." on a character
 * boundary, so the text stays valid UTF-8 and the cut is visible. */
void cq_text_mark_cut(char *buf, size_t size);

#endif /* CQ_TEXT_H */
