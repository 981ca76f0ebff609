/*
 * text.h — small text helpers shared by every module that talks to people
 * (config, strategy parameters, indicator specs): the edit distance behind
 * "did you mean …?" suggestions, hex digits, a NULL-tolerant strdup. Pure
 * and reentrant: any thread.
 */
#ifndef CQ_TEXT_H
#define CQ_TEXT_H

#include <stddef.h>

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

/* An owned copy of s, or NULL when s is NULL (or allocation fails). */
char *cq_text_dup(const char *s);

#endif /* CQ_TEXT_H */
