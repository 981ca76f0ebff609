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
 * decodes every message in file order on the calling thread, in as many
 * whole passes as it takes to last about 0.3 s (one for jansson); every
 * decode must succeed (the run aborts otherwise, so a rejection storm can
 * never pass for speed), and a checksum of the decoded fields keeps the
 * work observable (and must not change between passes). Each decoder does
 * 5 runs after a warm-up pass; the median time per pass is reported as one
 * JSON line per decoder: messages/s, MB/s (of JSON), and the fast path's
 * speedup over jansson.
 *
 * Then "decoded and applied": the same passes, each message decoded and
 * handed to a (not started) feeder for BTCUSDT and ETHUSDT through
 * cq_feeder__apply, the very code the stream callback runs: per-symbol
 * freshness, trade-id gap checks, book coalescing, closed-candle ordering
 * and the push of trades into the ring to ARES (drained by the same thread
 * every DRAIN_EVERY messages, so nothing is dropped). One more JSON line
 * per decoder ("bench":"feeder_apply").
 *
 * Single-threaded; pin it for stable figures:
 *   taskset -c 0 build/tests/bench_codec
 *
 * Build: tests/meson.build (links the feeder and its libraries).
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
#include "cq/config.h"
#include "cq/health.h"
#include "cq/market.h"
#include "cq/ring.h"
#include "feeder/feeder-int.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

#define RUNS 5
#define MIN_RUN_S 0.3 /* each run repeats whole passes until it lasts this long */
#define MAX_FILES 64
#define DRAIN_EVERY 4096 /* messages between drains of the ring to ARES */
#define RING_SLOTS 65536 /* > DRAIN_EVERY: the feeder never finds it full */

struct corpus {
    char *bytes; /* owned: every message back to back */
    size_t len;  /* bytes used */
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

/* The feeder that "applied" runs hand messages to, and its ring. */
struct apply_target {
    struct cq_feeder *feeder;
    struct cq_spsc *ring;
    unsigned long long events; /* popped from the ring */
};

static void drain(struct apply_target *t)
{
    struct cq_market_event ev;
    while (cq_spsc_pop(t->ring, &ev)) {
        t->events++;
    }
}

/* `passes` passes over every message; returns seconds, sets *checksum.
 * With a target, every decoded message is also applied to the feeder. */
static double run_once(const struct corpus *c, decode_fn decode, struct apply_target *t,
                       unsigned passes, unsigned long long *checksum)
{
    struct cq_msg m;
    unsigned long long sum = 0;
    int64_t recv_ms = 0;
    double t0 = now_s();
    for (unsigned pass = 0; pass < passes; pass++) {
        for (size_t i = 0; i < c->count; i++) {
            const char *msg = c->bytes + c->offsets[i];
            if (decode(msg, c->lens[i], &m, NULL) != 0) {
                fprintf(stderr, "bench_codec: message %zu does not decode: %.200s\n", i, msg);
                exit(1);
            }
            sum += (unsigned long long)m.kind + (unsigned long long)m.event_ms +
                   (unsigned long long)m.u.trade.trade_id + (unsigned char)m.symbol[0];
            if (t != NULL) {
                cq_feeder__apply(t->feeder, &m, ++recv_ms);
                if (i % DRAIN_EVERY == 0) {
                    drain(t);
                }
            }
        }
    }
    if (t != NULL) {
        drain(t);
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

struct result {
    unsigned passes; /* passes over the corpus per run */
    double median_s; /* per pass */
    double min_s, max_s;
    unsigned long long checksum; /* of one pass */
};

/* A warm-up pass sizes the runs to about MIN_RUN_S each, then RUNS runs;
 * times are per pass. */
static struct result measure(const struct corpus *c, decode_fn decode, struct apply_target *t)
{
    struct result r;
    double secs[RUNS];
    double warm = run_once(c, decode, t, 1, &r.checksum);
    r.passes = warm >= MIN_RUN_S ? 1 : (unsigned)(MIN_RUN_S / warm) + 1;
    for (int i = 0; i < RUNS; i++) {
        unsigned long long sum;
        secs[i] = run_once(c, decode, t, r.passes, &sum) / r.passes;
        if (sum != r.checksum * r.passes) {
            die("decoding is not deterministic (checksums differ)", NULL);
        }
    }
    qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
    r.min_s = secs[0];
    r.max_s = secs[RUNS - 1];
    r.median_s = secs[RUNS / 2];
    return r;
}

static void print_result(const char *bench, const char *name, const struct corpus *c,
                         const struct result *r, double speedup)
{
    printf("{\"bench\":\"%s\",\"decoder\":\"%s\",\"messages\":%zu,\"bytes\":%zu,"
           "\"seconds\":%.4f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"speedup_vs_jansson\":%.2f,"
           "\"passes_per_run\":%u,\"median_of\":%d}\n",
           bench, name, c->count, c->len, r->median_s, (double)c->count / r->median_s,
           (double)c->len / 1e6 / r->median_s, speedup, r->passes, RUNS);
}

/* A feeder for the recorded symbols, never started: no thread, no network
 * (its REST and WS URLs point at a closed loopback port). */
static struct apply_target *apply_target_new(void)
{
    static struct cq_spsc ring;
    static struct apply_target t;
    struct cq_err err;
    char *const envp[] = {"CQ_SYMBOLS=BTCUSDT,ETHUSDT", NULL};
    struct cq_config_report report;
    struct cq_config_load_options clo = {.file_path = NULL, .envp = envp};
    struct cq_config *cfg = cq_config_load(&clo, &report);
    struct cq_health_board *board = cq_health_board_new(NULL, &err);
    if (cfg == NULL || board == NULL ||
        cq_spsc_init(&ring, RING_SLOTS, sizeof(struct cq_market_event)) < 0) {
        die("feeder set-up failed", NULL);
    }
    struct cq_feeder_options fo = {.cfg = cfg, .board = board,
                                   .rest_url = "http://127.0.0.1:9", .ws_url = "ws://127.0.0.1:9",
                                   .to_ares = &ring};
    t.feeder = cq_feeder_new(&fo, &err);
    if (t.feeder == NULL) {
        die("feeder", err.message);
    }
    cq_config_unref(cfg);
    t.ring = &ring;
    return &t; /* lives until exit */
}

int main(int argc, char **argv)
{
    struct corpus c = {0};
    const char *dir = argc > 1 ? argv[1] : CQ_SHARED_DIR "/data/ws/recordings";

    if (argc > 2) {
        fprintf(stderr, "usage: %s [recordings-dir]\n", argv[0]);
        return 2;
    }
    load_dir(&c, dir);

    struct result ref = measure(&c, cq_codec_decode_jansson, NULL);
    struct result fast = measure(&c, cq_codec_decode, NULL);
    if (fast.checksum != ref.checksum) {
        die("the decoders disagree (checksums differ)", NULL);
    }
    print_result("codec", "fast", &c, &fast, ref.median_s / fast.median_s);
    print_result("codec", "jansson", &c, &ref, 1.0);
    fprintf(stderr, "bench_codec: seconds per pass: fast %.4f..%.4f, jansson %.4f..%.4f\n",
            fast.min_s, fast.max_s, ref.min_s, ref.max_s);

    struct apply_target *t = apply_target_new();
    struct result ref_applied = measure(&c, cq_codec_decode_jansson, t);
    struct result fast_applied = measure(&c, cq_codec_decode, t);
    print_result("feeder_apply", "fast", &c, &fast_applied,
                 ref_applied.median_s / fast_applied.median_s);
    print_result("feeder_apply", "jansson", &c, &ref_applied, 1.0);
    fprintf(stderr, "bench_codec: decoded and applied: %llu events reached the ring to ARES\n",
            t->events);

    free(c.bytes);
    free(c.offsets);
    free(c.lens);
    return 0;
}
