/*
 * hash.c — CRC32C for every record, snapshot and segment header, and XXH64
 * for the hash chain (docs/JOURNAL.md explains both choices).
 *
 * CRC32C: the Castagnoli polynomial (reflected 0x82F63B78), init and final
 * xor 0xFFFFFFFF, check value 0xE3069283 for "123456789". On x86-64 CPUs with
 * SSE4.2 (checked once at run time) the crc32 instruction does 8 bytes per
 * step; elsewhere a slicing-by-8 table walk (8 KiB of tables built once).
 *
 * XXH64: Yann Collet's xxHash, 64-bit variant, written from its published
 * specification (check values: "" -> 0xEF46DB3751D8E999, "abc" ->
 * 0x44BC2CF5AD770999, seed 0).
 *
 * Pure functions; any thread (the tables are built under pthread_once).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "journal-int.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static bool crc_use_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CQJ_HAVE_X86_CRC 1
static bool cpu_has_sse42(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        c = __builtin_ia32_crc32qi(c, *p++);
        len--;
    }
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len > 0) {
        c = __builtin_ia32_crc32qi(c, *p++);
        len--;
    }
    return c;
}
#else
#define CQJ_HAVE_X86_CRC 0
static bool cpu_has_sse42(void)
{
    return false;
}

static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
    (void)p;
    (void)len;
    return c;
}
#endif

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) != 0 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc_table[0][c & 0xFFu] ^ (c >> 8);
            crc_table[k][n] = c;
        }
    }
    crc_use_hw = CQJ_HAVE_X86_CRC && cpu_has_sse42();
}

/* c is the running (inverted) register. Slicing-by-8 reads the words as
 * little-endian values byte by byte, so it is correct on any host. */
static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFFu] ^ crc_table[6][(lo >> 8) & 0xFFu] ^
            crc_table[5][(lo >> 16) & 0xFFu] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = crc_table[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
        len--;
    }
    return c;
}

uint32_t cq_journal__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    return ~crc_sw(~crc, buf, len);
}

uint32_t cq_journal__crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    if (crc_use_hw) {
        return ~crc_hw(~crc, buf, len);
    }
    return ~crc_sw(~crc, buf, len);
}

/* ---- XXH64 ------------------------------------------------------------------------- */

#define XXP1 0x9E3779B185EBCA87ULL
#define XXP2 0xC2B2AE3D27D4EB4FULL
#define XXP3 0x165667B19E3779F9ULL
#define XXP4 0x85EBCA77C2B2AE63ULL
#define XXP5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t xx_round(uint64_t acc, uint64_t input)
{
    acc += input * XXP2;
    acc = rotl64(acc, 31);
    return acc * XXP1;
}

static inline uint64_t xx_merge(uint64_t acc, uint64_t val)
{
    acc ^= xx_round(0, val);
    return acc * XXP1 + XXP4;
}

uint64_t cq_journal__xxh64(const void *buf, size_t len, uint64_t seed)
{
    const uint8_t *p = buf;
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + XXP1 + XXP2;
        uint64_t v2 = seed + XXP2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - XXP1;
        const uint8_t *limit = end - 32;
        do {
            v1 = xx_round(v1, cqj_get64(p));
            v2 = xx_round(v2, cqj_get64(p + 8));
            v3 = xx_round(v3, cqj_get64(p + 16));
            v4 = xx_round(v4, cqj_get64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xx_merge(h, v1);
        h = xx_merge(h, v2);
        h = xx_merge(h, v3);
        h = xx_merge(h, v4);
    } else {
        h = seed + XXP5;
    }
    h += (uint64_t)len;
    while (end - p >= 8) {
        h ^= xx_round(0, cqj_get64(p));
        h = rotl64(h, 27) * XXP1 + XXP4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)cqj_get32(p) * XXP1;
        h = rotl64(h, 23) * XXP2 + XXP3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * XXP5;
        h = rotl64(h, 11) * XXP1;
        p++;
    }
    h ^= h >> 33;
    h *= XXP2;
    h ^= h >> 29;
    h *= XXP3;
    h ^= h >> 32;
    return h;
}
