/* text.c — small text helpers (see include/cq/text.h). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq/text.h"

size_t cq_text_edit_distance_ci(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    size_t prev[CQ_TEXT_COMPARE_MAX + 1];
    size_t cur[CQ_TEXT_COMPARE_MAX + 1];
    if (alen > CQ_TEXT_COMPARE_MAX || blen > CQ_TEXT_COMPARE_MAX) {
        return SIZE_MAX;
    }
    for (size_t j = 0; j <= blen; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t cost =
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best) {
                best = prev[j] + 1;
            }
            if (cur[j - 1] + 1 < best) {
                best = cur[j - 1] + 1;
            }
            cur[j] = best;
        }
        memcpy(prev, cur, (blen + 1) * sizeof(prev[0]));
    }
    return prev[blen];
}

char *cq_text_dup(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

char *cq_text_hex_encode(const void *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
    return out;
}

bool cq_text_decimal_exceeds(const char *value, uint64_t max)
{
    uint64_t n = 0;
    const char *p = value;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p < '0' || *p > '9') {
        return false;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) {
            return true;
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }
    return n > max;
}
