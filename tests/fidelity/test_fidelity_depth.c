/*
 * test_fidelity_depth.c — the diff depth streams of Binance's documentation
 * (binance-spot-api-docs web-socket-streams.md "Diff. Depth Stream"),
 * checked against a running coinquant-simex over its real sockets.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cq/common.h"
#include "cq/log.h"
#include "cq/sim.h"
#include "support/ws_tclient.h"

#define WAIT_MS 10000
#define WATCH_MS 4000 /* how long the streams are watched */
#define LEVELS_MAX 4096

static struct cq_sim *g_sim;
static int g_ws_port;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_sim(void)
{
    static const char *const symbols[] = {"BTCUSDT"};
    struct cq_sim_balance balances[2];
    size_t n_balances = 0;
    struct cq_err err;
    cq_log_set_level(CQ_LOG_ERROR);
    cr_assert_eq(cq_sim_parse_balances("USDT=10000,BTC=1", balances, 2, &n_balances, &err), 0);
    struct cq_sim_options o = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = 1,
        .speed = 100, /* many book changes per 100 ms (as test_sim_ws) */
        .seed = 11,
        .balances = balances,
        .n_balances = n_balances,
    };
    g_sim = cq_sim_new(&o, &err);
    cr_assert_not_null(g_sim, "cq_sim_new: %s", err.message);
    cr_assert_eq(cq_sim_start(g_sim, &err), 0, "cq_sim_start: %s", err.message);
    const char *colon = strrchr(cq_sim_ws_url(g_sim), ':');
    cr_assert_not_null(colon);
    g_ws_port = (int)strtol(colon + 1, NULL, 10);
}

static void stop_sim(void)
{
    cq_sim_free(g_sim);
    g_sim = NULL;
}

/* The levels seen so far on one side: price text -> quantity text. */
struct side {
    char price[LEVELS_MAX][32];
    char qty[LEVELS_MAX][32];
    size_t n;
};

/* Apply one side of a diff; fails when a level repeats the quantity the
 * previous diffs left it at ("changed levels only"). */
static void apply(struct side *sd, const json_t *levels, const char *what)
{
    size_t i;
    json_t *lv;
    json_array_foreach(levels, i, lv)
    {
        const char *p = json_string_value(json_array_get(lv, 0));
        const char *q = json_string_value(json_array_get(lv, 1));
        cr_assert(p != NULL && q != NULL, "%s: a level is [price, qty] strings", what);
        size_t k = 0;
        while (k < sd->n && strcmp(sd->price[k], p) != 0) {
            k++;
        }
        if (k < sd->n) {
            cr_expect_str_neq(sd->qty[k], q, "%s: level %s unchanged at %s but listed", what, p, q);
        } else if (sd->n < LEVELS_MAX) {
            sd->n++;
            cq_strlcpy(sd->price[k], p, sizeof sd->price[k]);
        } else {
            continue;
        }
        cq_strlcpy(sd->qty[k], q, sizeof sd->qty[k]);
    }
}

struct watch {
    size_t diffs;
    int64_t last_u;
    struct side bids, asks;
};

static void on_diff(struct watch *w, const json_t *d, const char *what)
{
    cr_assert_str_eq(json_string_value(json_object_get(d, "e")), "depthUpdate", "%s", what);
    int64_t U = json_integer_value(json_object_get(d, "U"));
    int64_t u = json_integer_value(json_object_get(d, "u"));
    cr_assert_leq(U, u, "%s", what);
    if (w->last_u >= 0) {
        cr_assert_eq(U, w->last_u + 1, "%s: U %" PRId64 " after u %" PRId64, what, U, w->last_u);
    }
    w->last_u = u;
    apply(&w->bids, json_object_get(d, "b"), what);
    apply(&w->asks, json_object_get(d, "a"), what);
    w->diffs++;
}

/*
 * web-socket-streams.md "Diff. Depth Stream": "Stream Name: <symbol>@depth
 * OR <symbol>@depth@100ms", "Update Speed: 1000ms or 100ms". Watched for
 * WATCH_MS on one combined connection next to @bookTicker (sent on every
 * book change): @depth sends at most one diff per 1000 ms, @depth@100ms at
 * most one per 100 ms, far fewer than the book changes; each diff chains
 * (U = previous u + 1) and lists only levels that changed since the
 * previous diff of its stream.
 */
Test(fidelity_depth, diffs_are_batched_per_period_and_list_changed_levels, .init = start_sim,
     .fini = stop_sim, .timeout = 60)
{
    struct tclient *tc = tc_open(g_ws_port, "/stream?streams=btcusdt@depth/btcusdt@depth@100ms/"
                                            "btcusdt@bookTicker");
    cr_assert(tc_wait_established(tc, WAIT_MS));
    static struct watch slow, fast; /* big: not on the stack */
    slow.last_u = fast.last_u = -1;
    size_t tickers = 0, cursor = 0;
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < WATCH_MS) {
        json_t *m = tc_try_next(tc, &cursor, (int)(WATCH_MS - (mono_ms() - t0)));
        if (m == NULL) {
            break;
        }
        const char *stream = json_string_value(json_object_get(m, "stream"));
        const json_t *d = json_object_get(m, "data");
        cr_assert_not_null(stream);
        if (strcmp(stream, "btcusdt@depth") == 0) {
            on_diff(&slow, d, "@depth");
        } else if (strcmp(stream, "btcusdt@depth@100ms") == 0) {
            on_diff(&fast, d, "@depth@100ms");
        } else {
            tickers++;
        }
        json_decref(m);
    }
    int64_t elapsed = mono_ms() - t0;
    cr_assert_gt(fast.diffs, 0, "no @depth@100ms diff in %" PRId64 " ms (@depth %zu, tickers %zu)",
                 elapsed, slow.diffs, tickers);
    cr_expect_leq(slow.diffs, (size_t)(elapsed / 1000 + 1), "@depth: %zu diffs in %" PRId64 " ms",
                  slow.diffs, elapsed);
    cr_expect_leq(fast.diffs, (size_t)(elapsed / 100 + 1),
                  "@depth@100ms: %zu diffs in %" PRId64 " ms", fast.diffs, elapsed);
    cr_expect_gt(tickers, fast.diffs, "book changes (%zu) outnumber 100 ms diffs (%zu)", tickers,
                 fast.diffs);
    tc_free(tc);
}
