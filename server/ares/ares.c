/*
 * ares.c — the ARES signal engine (skeleton).
 *
 * Runs on its own thread (struct cq_service, tick 5 ms). It is the consumer
 * of the feeder's ring: every step drains it completely. Today it only
 * counts what arrives and checks the one promise the feeder makes about
 * closed candles — each exactly once, in time order, per symbol — so the
 * feeder's gap handling can be observed end to end; it emits no signal of
 * any kind and reports status starting, reason not_implemented. Indicators,
 * strategies and the HealthGate replace the step in the ARES issue.
 */
#include <stdlib.h>
#include <string.h>

#include "cq/ares.h"
#include "cq/market.h"
#include "cq/version.h"

#define MAX_SYMBOLS 32
#define HEALTH_EVERY_MS 250

struct sym_seen {
    int64_t first_open_ms;     /* -1 = none */
    int64_t last_open_ms;      /* -1 = none */
    uint64_t candles, from_stream, from_backfill, from_warmup;
    uint64_t out_of_order;     /* a closed candle at or before the previous one */
    uint64_t missing_minutes;  /* gaps between consecutive closed candles */
    uint64_t books, trades;
};

struct cq_ares {
    struct cq_config *cfg;           /* owned reference */
    struct cq_health_board *board;   /* borrowed */
    struct cq_spsc *in;              /* borrowed; ARES is the consumer */
    struct cq_service *svc;          /* owned */
    struct sym_seen seen[MAX_SYMBOLS];
    size_t n_syms;
    const char *const *symbols;      /* borrowed from cfg */
    int64_t last_health_ms;
};

static void consume(struct cq_ares *a, const struct cq_market_event *ev)
{
    if (ev->symbol_idx < 0 || (size_t)ev->symbol_idx >= a->n_syms) {
        return;
    }
    struct sym_seen *s = &a->seen[ev->symbol_idx];
    switch (ev->type) {
    case CQ_MARKET_CANDLE_CLOSED: {
        int64_t open = ev->u.candle.candle.open_ms;
        if (s->last_open_ms >= 0 && open <= s->last_open_ms) {
            s->out_of_order++;
            return;
        }
        if (s->last_open_ms >= 0 && open > s->last_open_ms + 60000) {
            s->missing_minutes += (uint64_t)((open - s->last_open_ms) / 60000 - 1);
        }
        if (s->first_open_ms < 0) {
            s->first_open_ms = open;
        }
        s->last_open_ms = open;
        s->candles++;
        s->from_stream += ev->u.candle.source == CQ_CANDLE_FROM_STREAM;
        s->from_backfill += ev->u.candle.source == CQ_CANDLE_FROM_BACKFILL;
        s->from_warmup += ev->u.candle.source == CQ_CANDLE_FROM_WARMUP;
        break;
    }
    case CQ_MARKET_BOOK:
        s->books++;
        break;
    case CQ_MARKET_TRADE:
        s->trades++;
        break;
    }
}

static int ares_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_ares *a = ctx;
    struct cq_market_event ev;
    while (cq_spsc_pop(a->in, &ev)) {
        consume(a, &ev);
    }
    if (now_mono_ms - a->last_health_ms < HEALTH_EVERY_MS) {
        return 0;
    }
    a->last_health_ms = now_mono_ms;
    json_t *symbols = json_object();
    for (size_t i = 0; i < a->n_syms; i++) {
        const struct sym_seen *s = &a->seen[i];
        json_object_set_new(
            symbols, a->symbols[i],
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "candles_closed",
                      (json_int_t)s->candles, "first_open_ms", (json_int_t)s->first_open_ms,
                      "from_stream", (json_int_t)s->from_stream,
                      "from_backfill", (json_int_t)s->from_backfill, "from_warmup",
                      (json_int_t)s->from_warmup, "last_open_ms", (json_int_t)s->last_open_ms,
                      "out_of_order", (json_int_t)s->out_of_order, "missing_minutes",
                      (json_int_t)s->missing_minutes, "books", (json_int_t)s->books, "trades",
                      (json_int_t)s->trades));
    }
    cq_health_publish(a->board, CQ_SVC_ARES, CQ_HEALTH_STARTING, false, "not_implemented",
                      "ARES skeleton: consumes market events, runs no strategy, emits no signal",
                      json_pack("{s:o}", "symbols", symbols));
    return 0;
}

static const struct cq_service_ops ares_ops = {
    .id = CQ_SVC_ARES,
    .tick_ms = 5,
    .step = ares_step,
    .on_stop = NULL,
};

struct cq_ares *cq_ares_new(struct cq_config *cfg, struct cq_health_board *board,
                            struct cq_spsc *from_feeder, struct cq_err *err)
{
    struct cq_ares *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating ARES");
        return NULL;
    }
    a->cfg = cq_config_ref(cfg);
    a->board = board;
    a->in = from_feeder;
    size_t n = cq_config_symbols(cfg, &a->symbols);
    a->n_syms = n < MAX_SYMBOLS ? n : MAX_SYMBOLS;
    for (size_t i = 0; i < a->n_syms; i++) {
        a->seen[i].first_open_ms = -1;
        a->seen[i].last_open_ms = -1;
    }
    a->last_health_ms = -HEALTH_EVERY_MS;
    a->svc = cq_service_new(&ares_ops, a, board, NULL, err);
    if (a->svc == NULL) {
        cq_ares_free(a);
        return NULL;
    }
    cq_version_log_banner("ares", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:I,s:b}", "feeder_stale_ms",
                                    (json_int_t)cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS),
                                    "test_default_signal",
                                    cq_config_onoff(cfg, CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL)));
    return a;
}

void cq_ares_free(struct cq_ares *a)
{
    if (a == NULL) {
        return;
    }
    cq_service_free(a->svc);
    cq_config_unref(a->cfg);
    free(a);
}

struct cq_service *cq_ares_service(struct cq_ares *a)
{
    return a->svc;
}
