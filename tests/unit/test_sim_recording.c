/*
 * test_sim_recording.c — the simulator's recording reader
 * (server/sim/recording.c) on the real files in ../shared/data/ws/recordings
 * (counts per kind as the data README states them, receive order, exact
 * first values, units, the split capture read as one) and on hand-written
 * bad files (file:line errors, skip_bad_lines, the always-fatal breaks).
 *
 * ../shared/data missing: the data tests skip, or fail when CI is set.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-recording.h"
#include "support/shared_data.h"

#define REC_DIR CQ_SHARED_DIR "/data/ws/recordings/"

static bool have(const char *path)
{
    if (access(path, R_OK) != 0) {
        cq_test_shared_missing(path);
        return false;
    }
    return true;
}

static cq_dec dec(const char *s)
{
    cq_dec d;
    cr_assert_eq(cq_dec_parse(s, (size_t)-1, &d), 0, "bad decimal in test: %s", s);
    return d;
}

static void assert_dec(cq_dec got, const char *want)
{
    cq_dec w = dec(want);
    cr_assert(got.m == w.m && got.scale == w.scale, "got %lld e-%u, want %s", (long long)got.m,
              got.scale, want);
}

struct file_counts {
    const char *name;
    size_t trades, tickers, depths, snapshots;
    const char *symbol;
};

/* ../shared/data/README.md §4 */
static const struct file_counts files[] = {
    {"binance-spot-BTCUSDT-20230405.txt.gz", 3144, 8015, 3929, 0, "BTCUSDT"},
    {"binance-spot-BTCUSDT-20240808.txt.gz", 9757, 28040, 3451, 1, "BTCUSDT"},
    {"binance-spot-BTCUSDT-20240809.txt.gz", 10147, 45134, 3044, 0, "BTCUSDT"},
    {"binance-spot-ETHUSDT-20240808.txt.gz", 6106, 24077, 3434, 1, "ETHUSDT"},
    {"binance-spot-ETHUSDT-20240809.txt.gz", 8409, 34681, 3036, 0, "ETHUSDT"},
};

Test(sim_recording, every_file_counts_order_and_trade_ids)
{
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char path[512];
        snprintf(path, sizeof(path), "%s%s", REC_DIR, files[f].name);
        if (!have(path)) {
            return;
        }
        const char *paths[] = {path};
        struct cq_err err;
        struct cq_sim__recording *r = cq_sim__recording_load(paths, 1, NULL, &err);
        cr_assert_not_null(r, "%s: %s", path, err.message);
        cr_assert_str_eq(r->symbol, files[f].symbol);
        cr_assert_eq(r->n_trades, files[f].trades, "%s trades %zu", files[f].name, r->n_trades);
        cr_assert_eq(r->n_tickers, files[f].tickers, "%s tickers %zu", files[f].name, r->n_tickers);
        cr_assert_eq(r->n_depths, files[f].depths, "%s depths %zu", files[f].name, r->n_depths);
        cr_assert_eq(r->n_snapshots, files[f].snapshots);
        cr_assert_eq(r->bad_lines, 0);
        uint64_t prev_id = 0;
        uint64_t prev_u = 0;
        for (size_t i = 0; i < r->n_events; i++) {
            const struct cq_sim__rec_event *e = &r->events[i];
            if (i > 0) {
                cr_assert_geq(e->recv_us, r->events[i - 1].recv_us);
            }
            /* 2023-04-05 .. 2024-08-10 in microseconds */
            cr_assert(e->recv_us > 1680000000000000LL && e->recv_us < 1723300000000000LL);
            if (e->kind == SIM_REC_TRADE) {
                cr_assert(prev_id == 0 || e->u.trade.id == prev_id + 1, "%s trade id gap at %zu",
                          files[f].name, i);
                prev_id = e->u.trade.id;
            } else if (e->kind == SIM_REC_DEPTH) {
                cr_assert(prev_u == 0 || e->u.depth.first_update_id == prev_u + 1);
                prev_u = e->u.depth.last_update_id;
                cr_assert_gt(e->u.depth.n_bids + e->u.depth.n_asks, 0);
            } else if (e->kind == SIM_REC_SNAPSHOT) {
                cr_assert_gt(e->u.depth.n_bids, 100);
                cr_assert_gt(e->u.depth.n_asks, 100);
                const struct cq_sim__rec_level *b = cq_sim__rec_bids(r, e);
                cr_assert_gt(cq_dec_cmp(b[0].price, b[1].price), 0, "snapshot bids best first");
            }
        }
        cq_sim__recording_free(r);
    }
}

Test(sim_recording, first_values_exact_and_time_units)
{
    const char *p23 = REC_DIR "binance-spot-BTCUSDT-20230405.txt.gz";
    const char *p24 = REC_DIR "binance-spot-BTCUSDT-20240808.txt.gz";
    if (!have(p23) || !have(p24)) {
        return;
    }
    struct cq_err err;
    struct cq_sim__recording *r = cq_sim__recording_load(&p23, 1, NULL, &err);
    cr_assert_not_null(r, "%s", err.message);
    /* 1680652800004107 {"stream":"btcusdt@trade","data":{...,"t":3071245454,
     * "p":"28165.47000000","q":"0.00056000",...,"T":1680652799999,"m":true,...}} */
    const struct cq_sim__rec_event *e = &r->events[0];
    cr_assert_eq(e->kind, SIM_REC_TRADE);
    cr_assert_eq(e->recv_us, 1680652800004107LL); /* microsecond file */
    cr_assert_eq(e->u.trade.id, 3071245454ULL);
    assert_dec(e->u.trade.price, "28165.47000000");
    assert_dec(e->u.trade.qty, "0.00056000");
    cr_assert_eq(e->u.trade.time_ms, 1680652799999LL);
    cr_assert(e->u.trade.buyer_is_maker);
    e = &r->events[1];
    cr_assert_eq(e->kind, SIM_REC_BOOK_TICKER);
    cr_assert_eq(e->u.ticker.update_id, 36090299876ULL);
    assert_dec(e->u.ticker.bid, "28165.47000000");
    assert_dec(e->u.ticker.bid_qty, "7.98680000");
    assert_dec(e->u.ticker.ask, "28165.48000000");
    assert_dec(e->u.ticker.ask_qty, "3.26888000");
    cq_sim__recording_free(r);

    r = cq_sim__recording_load(&p24, 1, NULL, &err);
    cr_assert_not_null(r, "%s", err.message);
    /* 1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",
     * "E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,
     * "b":[["61737.63000000","0.00000000"],...],"a":[["61837.64000000","1.54698000"],...]}} */
    e = &r->events[0];
    cr_assert_eq(e->kind, SIM_REC_DEPTH);
    cr_assert_eq(e->recv_us, 1723161253937085LL); /* nanoseconds, truncated to us */
    cr_assert_eq(e->u.depth.first_update_id, 50093239189ULL);
    cr_assert_eq(e->u.depth.last_update_id, 50093239202ULL);
    cr_assert_eq(e->u.depth.event_ms, 1723161255208LL);
    assert_dec(cq_sim__rec_bids(r, e)[0].price, "61737.63000000");
    assert_dec(cq_sim__rec_bids(r, e)[0].qty, "0.00000000");
    assert_dec(cq_sim__rec_asks(r, e)[0].price, "61837.64000000");
    assert_dec(cq_sim__rec_asks(r, e)[0].qty, "1.54698000");
    /* the snapshot is line 8 */
    cr_assert_eq(r->events[7].kind, SIM_REC_SNAPSHOT);
    cr_assert_eq(r->events[7].u.depth.last_update_id, 50093239218ULL);
    cq_sim__recording_free(r);
}

/* The capture split at midnight reads as one (depth ids continue); the
 * wrong order is refused. */
Test(sim_recording, split_capture_in_order_only)
{
    const char *paths[] = {REC_DIR "binance-spot-ETHUSDT-20240808.txt.gz",
                           REC_DIR "binance-spot-ETHUSDT-20240809.txt.gz"};
    if (!have(paths[0]) || !have(paths[1])) {
        return;
    }
    struct cq_err err;
    struct cq_sim__recording *r = cq_sim__recording_load(paths, 2, NULL, &err);
    cr_assert_not_null(r, "%s", err.message);
    cr_assert_eq(r->n_trades, 6106 + 8409);
    cr_assert_eq(r->n_depths, 3434 + 3036);
    cq_sim__recording_free(r);
    const char *reversed[] = {paths[1], paths[0]};
    r = cq_sim__recording_load(reversed, 2, NULL, &err);
    cr_assert_null(r);
    cr_assert(strstr(err.message, "ETHUSDT-20240808.txt.gz:1:") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "backwards") != NULL, "%s", err.message);
}

/* ---- hand-written files ------------------------------------------------------ */

static char tmp_path[64];

static const char *write_tmp(const char *text)
{
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/cq-rec-XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

#define TRADE(ts, id)                                                                              \
    ts " {\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"t\":" id                        \
       ",\"p\":\"100.01\",\"q\":\"0.5\",\"T\":1700000000000,\"m\":false}}\n"
#define TICKER(ts)                                                                                 \
    ts " {\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":5,\"s\":\"BTCUSDT\",\"b\":\"100.00\"," \
       "\"B\":\"1\",\"a\":\"100.01\",\"A\":\"2\"}}\n"
#define DEPTH(ts, U, u)                                                                            \
    ts " {\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1700000000000," \
       "\"U\":" U ",\"u\":" u ",\"b\":[[\"100.00\",\"0\"]],\"a\":[[\"100.02\",\"3\"]]}}\n"

struct bad_case {
    const char *name;
    const char *text;
    size_t line;         /* the line the error names */
    const char *problem; /* a piece of the message */
    bool fatal;          /* stops even with skip_bad_lines */
};

static const struct bad_case bad_cases[] = {
    {"not json", TRADE("1700000000000000", "1") "1700000000000001 {nope\n", 2, "not JSON", false},
    {"no time", TRADE("1700000000000000", "1") "{\"stream\":1}\n", 2, "receive time", false},
    {"unknown stream",
     TRADE("1700000000000000", "1") "1700000000000001 {\"stream\":\"btcusdt@kline_1m\","
                                    "\"data\":{}}\n",
     2, "not one the replay reads", false},
    {"price text",
     "1700000000000000 {\"stream\":\"btcusdt@trade\",\"data\":{\"t\":1,\"p\":\"1e5\",\"q\":\"1\","
     "\"T\":1,\"m\":true}}\n",
     1, "\"p\"", false},
    {"negative qty",
     "1700000000000000 {\"stream\":\"btcusdt@trade\",\"data\":{\"t\":1,\"p\":\"1\",\"q\":\"-1\","
     "\"T\":1,\"m\":true}}\n",
     1, "\"q\"", false},
    {"crossed ticker",
     "1700000000000000 {\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":5,\"b\":\"100.02\","
     "\"B\":\"1\",\"a\":\"100.01\",\"A\":\"2\"}}\n",
     1, "bid is not below ask", false},
    {"time backwards", TRADE("1700000000000005", "1") TRADE("1700000000000004", "2"), 2,
     "backwards", true},
    {"depth gap", DEPTH("1700000000000000", "10", "12") DEPTH("1700000000000001", "14", "15"), 2,
     "does not follow", true},
    {"two symbols",
     TRADE("1700000000000000", "1") "1700000000000001 {\"stream\":\"ethusdt@trade\",\"data\":{"
                                    "\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}}\n",
     2, "one symbol", true},
    {"mixed units", TRADE("1700000000000000", "1") TRADE("1700000000000000000", "2"), 2, "digits",
     true},
};

Test(sim_recording, bad_lines_name_file_and_line)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        const char *path = write_tmp(c->text);
        char where[96];
        snprintf(where, sizeof(where), "%s:%zu:", path, c->line);
        struct cq_err err;
        struct cq_sim__recording *r = cq_sim__recording_load(&path, 1, NULL, &err);
        cr_assert_null(r, "%s: loaded", c->name);
        cr_assert(strstr(err.message, where) != NULL, "%s: %s", c->name, err.message);
        cr_assert(strstr(err.message, c->problem) != NULL, "%s: %s", c->name, err.message);
        struct cq_sim__recording_options o = {.skip_bad_lines = true};
        r = cq_sim__recording_load(&path, 1, &o, &err);
        if (c->fatal) {
            cr_assert_null(r, "%s: loaded with skip_bad_lines", c->name);
        } else {
            /* the one good line (if any) survives; the bad one is counted */
            if (r == NULL) {
                cr_assert(strstr(err.message, "no events") != NULL, "%s: %s", c->name, err.message);
            } else {
                cr_assert_eq(r->bad_lines, 1, "%s", c->name);
                cr_assert(strstr(r->first_bad, where) != NULL, "%s: %s", c->name, r->first_bad);
                cr_assert_eq(r->n_events, 1);
                cq_sim__recording_free(r);
            }
        }
        unlink(path);
    }
}

Test(sim_recording, good_hand_written_file)
{
    const char *path = write_tmp(DEPTH("1700000000000", "10", "12") TICKER("1700000000001") TRADE(
        "1700000000002", "7") DEPTH("1700000000003", "13", "13"));
    struct cq_err err;
    struct cq_sim__recording *r = cq_sim__recording_load(&path, 1, NULL, &err);
    cr_assert_not_null(r, "%s", err.message);
    cr_assert_eq(r->n_events, 4);
    cr_assert_eq(r->events[0].recv_us, 1700000000000000LL); /* ms file */
    cr_assert_eq(r->events[2].kind, SIM_REC_TRADE);
    cr_assert_eq(r->events[2].u.trade.id, 7);
    cr_assert_not(r->events[2].u.trade.buyer_is_maker);
    cr_assert_eq(r->events[3].u.depth.n_bids, 1);
    cr_assert_eq(r->events[3].u.depth.n_asks, 1);
    cr_assert_eq(r->n_levels, 4);
    cq_sim__recording_free(r);
    unlink(path);

    const char *missing = "/nonexistent/rec.txt.gz";
    cr_assert_null(cq_sim__recording_load(&missing, 1, NULL, &err));
    cr_assert(strstr(err.message, missing) != NULL, "%s", err.message);
}
