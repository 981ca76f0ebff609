/*
 * bench_codec.c — decoding throughput of the market-message decoders
 * (include/cq/codec.h): the fast scanner (server/exchange/codec.c) against
 * the jansson reference (server/exchange/codec_jansson.c), on the real
 * recorded Binance spot stream.
 *
 * Every line of every .txt.gz file in ../shared/data/ws/recordings
 * ("<recv_ts> <json>") is loaded once, the JSON part only, into one contiguous buffer:
 * about 194k messages and 52 MB, the real mix (72 % bookTicker, 19 % trade,
 * 9 % depth diffs with their level arrays, 2 REST depth snapshots). A run
 * decodes every message once, in file order, on the calling thread; every
 * decode must succeed (the run aborts otherwise, so a rejection storm can
 * never pass for speed), and a checksum of the decoded fields keeps the
 * work observable. Each decoder does 5 runs; the median is reported as one
 * JSON line per decoder: messages/s, MB/s, and the fast path's speedup
 * over jansson. Single-threaded; pin it for stable figures:
 *   taskset -c 0 build/tests/bench_codec
 *
 * Build: gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude
 *   -DCQ_SHARED_DIR='"'$PWD/../shared'"' tests/bench/bench_codec.c
 *   server/exchange/codec.c server/exchange/codec_jansson.c
 *   server/core/decimal.c server/core/err.c -ljansson -lz -o bench_codec
 * Usage: bench_codec [recordings-dir]
 *   (default CQ_SHARED_DIR/data/ws/recordings)
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "cq/codec.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

#define RUNS 5
#define MAX_FILES 64

struct corpus {
    char *bytes;     /* owned: every message back to back */
    size_t len;      /* bytes used */
    size_t cap;
    size_t *offsets; /* owned: message i starts at bytes + offsets[i] */
    size_t *lens;    /* owned */
    size_t count;
    size_t count_cap;
};

typedef int (*decode_fn)(const char *, size_t, struct cq_msg *, size_t *);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_codec: %s%s%s\n", what, detail != NULL ? ": " : "",
            detail != NULL ? detail : "");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_message(struct corpus *c, const char *msg, size_t len)
{
    if (c->len + len > c->cap) {
        c->cap = (c->cap + len) * 2;
        c->bytes = realloc(c->bytes, c->cap);
        if (c->bytes == NULL) {
            die("out of memory", NULL);
        }
    }
    if (c->count == c->count_cap) {
        c->count_cap = c->count_cap != 0 ? c->count_cap * 2 : 1 << 16;
        c->offsets = realloc(c->offsets, c->count_cap * sizeof(*c->offsets));
        c->lens = realloc(c->lens, c->count_cap * sizeof(*c->lens));
        if (c->offsets == NULL || c->lens == NULL) {
            die("out of memory", NULL);
        }
    }
    memcpy(c->bytes + c->len, msg, len);
    c->offsets[c->count] = c->len;
    c->lens[c->count] = len;
    c->len += len;
    c->count++;
}

/* Every "<recv_ts> <json>" line of one gzip file into c. */
static void load_file(struct corpus *c, const char *path)
{
    gzFile gz = gzopen(path, "rb");
    size_t cap = 1 << 16;
    size_t have = 0;
    char *buf = malloc(cap);

    if (gz == NULL || buf == NULL) {
        die("cannot open", path);
    }
    for (;;) {
        if (cap - have < (1 << 15)) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL) {
                die("out of memory", NULL);
            }
        }
        int n = gzread(gz, buf + have, (unsigned)(cap - have));
        if (n < 0) {
            die("gzread failed", path);
        }
        have += (size_t)n;
        /* hand over complete lines, keep the tail */
        char *line = buf;
        char *end = buf + have;
        for (;;) {
            char *nl = memchr(line, '\n', (size_t)(end - line));
            if (nl == NULL) {
                break;
            }
            char *sp = memchr(line, ' ', (size_t)(nl - line));
            if (sp == NULL) {
                die("line without '<recv_ts> <json>'", path);
            }
            add_message(c, sp + 1, (size_t)(nl - sp - 1));
            line = nl + 1;
        }
        have = (size_t)(end - line);
        memmove(buf, line, have);
        if (n == 0) {
            break;
        }
    }
    if (have != 0) {
        die("last line has no newline", path);
    }
    gzclose(gz);
    free(buf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_dir(struct corpus *c, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[MAX_FILES];
    size_t n = 0;
    char path[4096];

    if (d == NULL) {
        die("cannot open the recordings directory", dir);
    }
    for (;;) {
        e = readdir(d);
        if (e == NULL) {
            break;
        }
        size_t len = strlen(e->d_name);
        if (len > 7 && strcmp(e->d_name + len - 7, ".txt.gz") == 0 && n < MAX_FILES) {
            names[n] = strdup(e->d_name);
            if (names[n] == NULL) {
                die("out of memory", NULL);
            }
            n++;
        }
    }
    closedir(d);
    if (n == 0) {
        die("no .txt.gz recordings in", dir);
    }
    qsort(names, n, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        load_file(c, path);
        free(names[i]);
    }
}

/* One pass over every message; returns seconds, adds to *checksum. */
static double run_once(const struct corpus *c, decode_fn decode, unsigned long long *checksum)
{
    struct cq_msg m;
    unsigned long long sum = 0;
    double t0 = now_s();
    for (size_t i = 0; i < c->count; i++) {
        const char *msg = c->bytes + c->offsets[i];
        if (decode(msg, c->lens[i], &m, NULL) != 0) {
            fprintf(stderr, "bench_codec: message %zu does not decode: %.200s\n", i, msg);
            exit(1);
        }
        sum += (unsigned long long)m.kind + (unsigned long long)m.event_ms +
               (unsigned long long)m.u.trade.trade_id + (unsigned char)m.symbol[0];
    }
    double t1 = now_s();
    *checksum = sum;
    return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_run(const struct corpus *c, decode_fn decode, double *min_s, double *max_s,
                         unsigned long long *checksum)
{
    double secs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        secs[r] = run_once(c, decode, checksum);
    }
    qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
    *min_s = secs[0];
    *max_s = secs[RUNS - 1];
    return secs[RUNS / 2];
}

int main(int argc, char **argv)
{
    struct corpus c = {0};
    const char *dir = argc > 1 ? argv[1] : CQ_SHARED_DIR "/data/ws/recordings";
    unsigned long long sum_fast = 0;
    unsigned long long sum_ref = 0;
    double lo_fast, hi_fast, lo_ref, hi_ref;

    if (argc > 2) {
        fprintf(stderr, "usage: %s [recordings-dir]\n", argv[0]);
        return 2;
    }
    load_dir(&c, dir);

    double ref_s = median_run(&c, cq_codec_decode_jansson, &lo_ref, &hi_ref, &sum_ref);
    double fast_s = median_run(&c, cq_codec_decode, &lo_fast, &hi_fast, &sum_fast);
    if (sum_fast != sum_ref) {
        die("the decoders disagree (checksums differ)", NULL);
    }

    const double mb = (double)c.len / 1e6;
    printf("{\"bench\":\"codec\",\"decoder\":\"fast\",\"messages\":%zu,\"bytes\":%zu,"
           "\"seconds\":%.4f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"speedup_vs_jansson\":%.2f,"
           "\"median_of\":%d}\n",
           c.count, c.len, fast_s, (double)c.count / fast_s, mb / fast_s, ref_s / fast_s, RUNS);
    printf("{\"bench\":\"codec\",\"decoder\":\"jansson\",\"messages\":%zu,\"bytes\":%zu,"
           "\"seconds\":%.4f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"speedup_vs_jansson\":1.00,"
           "\"median_of\":%d}\n",
           c.count, c.len, ref_s, (double)c.count / ref_s, mb / ref_s, RUNS);
    fprintf(stderr, "bench_codec: runs fast %.4f..%.4f s, jansson %.4f..%.4f s\n", lo_fast,
            hi_fast, lo_ref, hi_ref);

    free(c.bytes);
    free(c.offsets);
    free(c.lens);
    return 0;
}
