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

size_t cq_text_utf8_char_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (uint32_t)(s[i] & 0x3F);
    }
    if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) {
        return 0;
    }
    if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) {
        return 0;
    }
    return n;
}

bool cq_text_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = cq_text_utf8_char_len((const unsigned char *)s + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

size_t cq_text_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--; /* s[n] continues a character: cut before its lead byte */
    }
    return n;
}

void cq_text_mark_cut(char *buf, size_t size)
{
    if (size < 4) {
        return;
    }
    size_t p = cq_text_utf8_cut(buf, size - 1, size - 4); /* "..." and the NUL fill the last 4 */
    memcpy(buf + p, "...", 4);
}
