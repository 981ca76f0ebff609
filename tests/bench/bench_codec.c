/*
 * bench_codec.c — decoding throughput of the market-message decoders
 * (include/cq/codec.h): the fast scanner (server/exchange/codec.c) against
 * the jansson reference (server/exchange/codec_jansson.c), on the real
 * recorded Binance spot stream plus the kline_1m stream made from it.
 *
 * The corpus. Every line of every .txt.gz file in ../shared/data/ws/
 * recordings ("<recv_ts> <json>"), the JSON part only, in file order: about
 * 194k messages and 48 MB, the real mix (bookTicker, trade, depth@100ms
 * diffs with their level arrays, 2 REST depth snapshots). The recordings
 * hold no kline stream, and the feeder's candle path is its most involved
 * one, so each file's own trades are folded into 1-minute bars and the
 * kline_1m messages Binance would have sent are inserted where they fall:
 * an update (x=false) whenever 2 s of trade time have passed since the
 * last (Binance's kline update speed), and the closed bar (x=true) when the
 * next minute's first trade arrives (or the file ends). Bars take
 * consecutive minutes per symbol across the files (open times from
 * KLINE_BASE_MS), so the feeder sees an unbroken candle sequence, never a
 * gap that would send it to the REST backfill. Prices, quantities and
 * volumes are the recorded trades' own decimal strings and sums.
 *
 * A run decodes every message in corpus order on the calling thread, in as
 * many whole passes as it takes to last about 0.3 s (one for jansson);
 * every decode must succeed (the run aborts otherwise, so a rejection storm
 * can never pass for speed), and a checksum over every decoded field (kind,
 * symbol, times, trade ids, prices, quantities, OHLCV, book levels, depth
 * update ids) keeps the work observable: it must not change between passes
 * and both decoders must give the same one. Each decoder does 5 runs after
 * a warm-up pass; the median time per pass is reported as one JSON line per
 * decoder: messages/s, MB/s (of JSON), and the fast path's speedup over
 * jansson. One more line describes the corpus ("bench":"codec_corpus").
 *
 * Then "decoded and applied": the same passes, each message decoded and
 * handed to a feeder for BTCUSDT and ETHUSDT (not started: no thread, no
 * network; put in its streaming phase) through cq_feeder__apply, the very
 * code the stream callback runs: the sanity rules, per-symbol freshness,
 * trade-id gap checks, book coalescing, closed-candle ordering and holding,
 * and the push of trades and closed candles into the ring to ARES. As the
 * service step does after the messages of a WebSocket read, the bench
 * calls cq_feeder__flush every FLUSH_EVERY messages, which passes the
 * coalesced books on to ARES; the ring is drained (counted per event type)
 * every DRAIN_EVERY messages, so nothing is dropped. Each pass moves the
 * decoded klines' open times on by the symbol's bar count, so candles keep
 * arriving in order pass after pass (a repeated pass would otherwise be
 * all duplicates). Depth diffs reach the feeder too, which checks them
 * (update ids) and counts them: the feeder keeps no depth book, it
 * subscribes to kline_1m, bookTicker and trade only. One more JSON line
 * per decoder ("bench":"feeder_apply") with the events that reached ARES
 * per pass.
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
#include "cq/spsc.h"
#include "feeder-int.h"

#ifndef CQ_SHARED_DIR
#define CQ_SHARED_DIR "../shared"
#endif

#define RUNS 5
#define MIN_RUN_S 0.3 /* each run repeats whole passes until it lasts this long */
#define MAX_FILES 64
#define DRAIN_EVERY 4096              /* messages between drains of the ring to ARES */
#define RING_SLOTS 65536              /* > DRAIN_EVERY: the feeder never finds it full */
#define FLUSH_EVERY 16                /* messages between feeder flushes (one WS read's worth) */
#define KLINE_UPDATE_MS 2000          /* Binance's kline stream update speed */
#define KLINE_BASE_MS 1700000040000LL /* first made-up bar: 2023-11-14T22:14:00Z */
#define MAX_SYMBOLS 8
#define KLINE_JSON_MAX 768

/* A minute bar folded from one symbol's recorded trades. */
struct bar_maker {
    char symbol[CQ_SYMBOL_LEN];      /* "BTCUSDT" */
    char stream[CQ_SYMBOL_LEN + 16]; /* "btcusdt@kline_1m" */
    int64_t bars;                    /* bars closed so far: the next one's minute index */
    bool open;                       /* a bar is being built */
    int64_t src_minute;              /* the recorded trades' minute of the open bar */
    int64_t last_update_ms;          /* trade time of the last x=false message */
    cq_dec o, h, l, c, v, q;
    uint64_t first_id, last_id;
    uint32_t n;
};

struct corpus {
    char *bytes; /* owned: every message back to back */
    size_t len;  /* bytes used */
    size_t cap;
    size_t *offsets; /* owned: message i starts at bytes + offsets[i] */
    size_t *lens;    /* owned */
    size_t count;
    size_t count_cap;
    struct bar_maker makers[MAX_SYMBOLS];
    size_t n_makers;
    size_t kind_count[CQ_MSG_EVENT_OTHER + 1];
    size_t klines_made, klines_closed_made;
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

static struct bar_maker *maker_for(struct corpus *c, const char *symbol)
{
    for (size_t i = 0; i < c->n_makers; i++) {
        if (strcmp(c->makers[i].symbol, symbol) == 0) {
            return &c->makers[i];
        }
    }
    if (c->n_makers == MAX_SYMBOLS) {
        die("too many symbols in the recordings", symbol);
    }
    struct bar_maker *b = &c->makers[c->n_makers++];
    memset(b, 0, sizeof(*b));
    if (cq_strlcpy(b->symbol, symbol, sizeof(b->symbol)) >= sizeof(b->symbol)) {
        die("symbol too long", symbol);
    }
    size_t i = 0;
    for (; symbol[i] != '\0'; i++) {
        b->stream[i] =
            (char)(symbol[i] >= 'A' && symbol[i] <= 'Z' ? symbol[i] - 'A' + 'a' : symbol[i]);
    }
    memcpy(b->stream + i, "@kline_1m", sizeof("@kline_1m")); /* fits: 16 spare bytes */
    return b;
}

static const char *dec_text(cq_dec d, char *buf, size_t len)
{
    if (cq_dec_format(d, buf, len) == NULL) {
        die("cannot format a decimal", NULL);
    }
    return buf;
}

/* The kline_1m message for b's open bar, as Binance words it, appended to c. */
static void add_kline(struct corpus *c, const struct bar_maker *b, int64_t event_ms, bool closed)
{
    char o[CQ_DEC_STR_MAX], h[CQ_DEC_STR_MAX], l[CQ_DEC_STR_MAX], cl[CQ_DEC_STR_MAX];
    char v[CQ_DEC_STR_MAX], q[CQ_DEC_STR_MAX];
    char json[KLINE_JSON_MAX];
    int64_t open_ms = KLINE_BASE_MS + b->bars * 60000;
    int n = snprintf(
        json, sizeof(json),
        "{\"stream\":\"%s\",\"data\":{\"e\":\"kline\",\"E\":%lld,\"s\":\"%s\",\"k\":{\"t\":%lld,"
        "\"T\":%lld,\"s\":\"%s\",\"i\":\"1m\",\"f\":%llu,\"L\":%llu,\"o\":\"%s\",\"c\":\"%s\","
        "\"h\":\"%s\",\"l\":\"%s\",\"v\":\"%s\",\"n\":%u,\"x\":%s,\"q\":\"%s\",\"V\":\"0\","
        "\"Q\":\"0\",\"B\":\"0\"}}}",
        b->stream, (long long)(open_ms + (closed ? 60000 : 0) + event_ms % 60000), b->symbol,
        (long long)open_ms, (long long)(open_ms + 59999), b->symbol,
        (unsigned long long)b->first_id, (unsigned long long)b->last_id,
        dec_text(b->o, o, sizeof(o)), dec_text(b->c, cl, sizeof(cl)), dec_text(b->h, h, sizeof(h)),
        dec_text(b->l, l, sizeof(l)), dec_text(b->v, v, sizeof(v)), b->n, closed ? "true" : "false",
        dec_text(b->q, q, sizeof(q)));
    if (n < 0 || (size_t)n >= sizeof(json)) {
        die("a made-up kline message does not fit KLINE_JSON_MAX", NULL);
    }
    add_message(c, json, (size_t)n);
    c->klines_made++;
    c->klines_closed_made += closed;
}

static void close_bar(struct corpus *c, struct bar_maker *b, int64_t event_ms)
{
    if (!b->open) {
        return;
    }
    add_kline(c, b, event_ms, true);
    b->open = false;
    b->bars++;
}

/* A recorded message was added: if it is a trade, fold it into its
 * symbol's bar, closing the previous minute's bar before it and sending an
 * update after it as Binance would. */
static void fold_trade(struct corpus *c, const char *json, size_t len)
{
    struct cq_msg m;
    if (cq_codec_decode(json, len, &m, NULL) != 0) {
        die("a recorded message does not decode", NULL);
    }
    c->kind_count[m.kind]++;
    if (m.kind != CQ_MSG_TRADE) {
        return;
    }
    struct bar_maker *b = maker_for(c, m.symbol);
    const struct cq_trade_tick *t = &m.u.trade;
    int64_t minute = t->time_ms / 60000;
    cq_dec notional;
    if (cq_dec_mul(t->price, t->qty, 8, CQ_ROUND_DOWN, &notional) < 0) {
        die("price x quantity does not fit", NULL);
    }
    if (b->open && minute != b->src_minute) {
        /* The closed bar goes out before the next minute's first trade. */
        size_t keep_len = c->lens[c->count - 1];
        size_t keep_off = c->offsets[c->count - 1];
        char *copy = malloc(keep_len);
        if (copy == NULL) {
            die("out of memory", NULL);
        }
        memcpy(copy, c->bytes + keep_off, keep_len);
        c->count--;
        c->len = keep_off;
        close_bar(c, b, t->time_ms);
        add_message(c, copy, keep_len);
        free(copy);
    }
    if (!b->open) {
        b->open = true;
        b->src_minute = minute;
        b->o = b->h = b->l = t->price;
        b->v = b->q = CQ_DEC_ZERO;
        b->first_id = t->trade_id;
        b->n = 0;
        b->last_update_ms = t->time_ms;
    }
    if (cq_dec_cmp(t->price, b->h) > 0) {
        b->h = t->price;
    }
    if (cq_dec_cmp(t->price, b->l) < 0) {
        b->l = t->price;
    }
    b->c = t->price;
    b->last_id = t->trade_id;
    b->n++;
    if (cq_dec_add(b->v, t->qty, &b->v) < 0 || cq_dec_add(b->q, notional, &b->q) < 0) {
        die("bar volume does not fit", NULL);
    }
    if (t->time_ms - b->last_update_ms >= KLINE_UPDATE_MS) {
        add_kline(c, b, t->time_ms, false);
        b->last_update_ms = t->time_ms;
    }
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
            fold_trade(c, sp + 1, (size_t)(nl - sp - 1));
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
    /* a file's last bar is closed at its end: the next file's trades start
     * a new minute */
    for (size_t i = 0; i < c->n_makers; i++) {
        struct bar_maker *b = &c->makers[i];
        close_bar(c, b, b->src_minute * 60000 + 59999);
    }
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
        int len = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (len < 0 || (size_t)len >= sizeof(path)) {
            die("path too long", names[i]);
        }
        load_file(c, path);
        free(names[i]);
    }
}

/* The feeder that "applied" runs hand messages to, and its ring. */
struct apply_target {
    struct cq_feeder *feeder;
    struct cq_spsc *ring;
    unsigned long long events; /* popped from the ring */
    unsigned long long candles, books, trades;
    uint64_t passes_applied; /* every pass ever applied: the kline time shift */
    const struct corpus *corpus;
};

static void drain(struct apply_target *t)
{
    struct cq_market_event ev;
    while (cq_spsc_pop(t->ring, &ev)) {
        t->events++;
        t->candles += ev.type == CQ_MARKET_CANDLE_CLOSED;
        t->books += ev.type == CQ_MARKET_BOOK;
        t->trades += ev.type == CQ_MARKET_TRADE;
    }
}

static unsigned long long dec_sum(cq_dec d)
{
    return (unsigned long long)d.m * 31u + d.scale;
}

/* Every field the feeder uses, so a decoder that skipped one would change
 * the sum. */
static unsigned long long msg_sum(const struct cq_msg *m)
{
    unsigned long long sum =
        (unsigned long long)m->kind * 1000003u + (unsigned long long)m->event_ms;
    for (const char *p = m->symbol; *p != '\0'; p++) {
        sum = sum * 131u + (unsigned char)*p;
    }
    switch (m->kind) {
    case CQ_MSG_TRADE:
    case CQ_MSG_AGG_TRADE:
        sum += m->u.trade.trade_id + dec_sum(m->u.trade.price) * 3u + dec_sum(m->u.trade.qty) * 5u +
               (unsigned long long)m->u.trade.time_ms + m->u.trade.buyer_is_maker;
        break;
    case CQ_MSG_BOOK_TICKER:
        sum += dec_sum(m->u.book.bid) * 3u + dec_sum(m->u.book.bid_qty) * 5u +
               dec_sum(m->u.book.ask) * 7u + dec_sum(m->u.book.ask_qty) * 11u + m->u.book.update_id;
        break;
    case CQ_MSG_KLINE: {
        const struct cq_candle *k = &m->u.kline.candle;
        sum += (unsigned long long)k->open_ms + (unsigned long long)k->close_ms +
               dec_sum(k->open) * 3u + dec_sum(k->high) * 5u + dec_sum(k->low) * 7u +
               dec_sum(k->close) * 11u + dec_sum(k->volume) * 13u + dec_sum(k->quote_volume) * 17u +
               k->trades + k->closed + (unsigned char)m->u.kline.interval[0];
        break;
    }
    case CQ_MSG_DEPTH_UPDATE:
        sum += m->u.depth.first_update_id * 3u + m->u.depth.last_update_id;
        break;
    default:
        break;
    }
    return sum;
}

/* Bars per symbol in the corpus: how far a pass moves kline times. */
static int64_t kline_shift_ms(const struct corpus *c, const char *symbol, uint64_t pass)
{
    for (size_t i = 0; i < c->n_makers; i++) {
        if (strcmp(c->makers[i].symbol, symbol) == 0) {
            return (int64_t)pass * c->makers[i].bars * 60000;
        }
    }
    return 0;
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
        uint64_t shift_pass = t != NULL ? t->passes_applied++ : 0;
        for (size_t i = 0; i < c->count; i++) {
            const char *msg = c->bytes + c->offsets[i];
            if (decode(msg, c->lens[i], &m, NULL) != 0) {
                fprintf(stderr, "bench_codec: message %zu does not decode: %.200s\n", i, msg);
                exit(1);
            }
            sum += msg_sum(&m);
            if (t != NULL) {
                if (m.kind == CQ_MSG_KLINE && shift_pass > 0) {
                    int64_t shift = kline_shift_ms(c, m.symbol, shift_pass);
                    m.u.kline.candle.open_ms += shift;
                    m.u.kline.candle.close_ms += shift;
                    m.event_ms += shift;
                }
                cq_feeder__apply(t->feeder, &m, ++recv_ms);
                if (i % FLUSH_EVERY == 0) {
                    cq_feeder__flush(t->feeder);
                }
                if (i % DRAIN_EVERY == 0) {
                    drain(t);
                }
            }
        }
    }
    if (t != NULL) {
        cq_feeder__flush(t->feeder);
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
    struct cq_feeder_options fo = {.cfg = cfg,
                                   .board = board,
                                   .rest_url = "http://127.0.0.1:9",
                                   .ws_url = "ws://127.0.0.1:9",
                                   .to_ares = &ring};
    t.feeder = cq_feeder_new(&fo, &err);
    if (t.feeder == NULL) {
        die("feeder", err.message);
    }
    cq_feeder__assume_streaming(t.feeder); /* start-up done, stream connected */
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
    printf("{\"bench\":\"codec_corpus\",\"messages\":%zu,\"bytes\":%zu,\"trade\":%zu,"
           "\"book_ticker\":%zu,\"depth_update\":%zu,\"other\":%zu,\"kline_made_from_trades\":%zu,"
           "\"kline_closed\":%zu}\n",
           c.count, c.len, c.kind_count[CQ_MSG_TRADE], c.kind_count[CQ_MSG_BOOK_TICKER],
           c.kind_count[CQ_MSG_DEPTH_UPDATE],
           c.kind_count[CQ_MSG_EVENT_OTHER] + c.kind_count[CQ_MSG_CONTROL] +
               c.kind_count[CQ_MSG_AGG_TRADE] + c.kind_count[CQ_MSG_KLINE],
           c.klines_made, c.klines_closed_made);

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
    printf(
        "{\"bench\":\"feeder_apply_events\",\"passes\":%llu,\"per_pass\":{\"candles_closed\":%.0f,"
        "\"books\":%.0f,\"trades\":%.0f},\"kline_closed_in_corpus\":%zu}\n",
        (unsigned long long)t->passes_applied, (double)t->candles / (double)t->passes_applied,
        (double)t->books / (double)t->passes_applied, (double)t->trades / (double)t->passes_applied,
        c.klines_closed_made);
    if (t->candles != (unsigned long long)c.klines_closed_made * t->passes_applied) {
        die("not every closed kline reached ARES as a candle (ordering or a gap)", NULL);
    }

    free(c.bytes);
    free(c.offsets);
    free(c.lens);
    return 0;
}
