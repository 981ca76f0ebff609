/*
 * trader.c — the trader (skeleton).
 *
 * Runs on its own thread (struct cq_service). Today it drains the user data
 * stream events the feeder forwards (counting them by type), heartbeats and
 * reports status starting, not ready, reason not_implemented; it sends no
 * order. The risk gate, filters and the one order path replace the step
 * function in the trader issue.
 */
#include <stdlib.h>
#include <string.h>

#include "cq/feeder.h"
#include "cq/signal.h"
#include "cq/trader.h"
#include "cq/version.h"

struct cq_trader {
    struct cq_config *cfg;           /* owned reference */
    struct cq_health_board *board;   /* borrowed */
    struct cq_service *svc;          /* owned */
    struct cq_spsc *user_events;     /* borrowed; the trader is the consumer */
    struct cq_spsc *signals;         /* borrowed; the trader is the consumer */
    uint64_t execution_reports, account_positions, other_events;
    uint64_t signals_received, test_signals_received;
    char last_signal_id[CQ_SIGNAL_ID_LEN + 1];
};

static int trader_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_trader *t = ctx;
    struct cq_user_event ev;
    (void)now_mono_ms;
    struct cq_signal sig;
    while (t->signals != NULL && cq_spsc_pop(t->signals, &sig)) {
        t->signals_received++;
        t->test_signals_received += sig.test;
        /* fits: both are CQ_SIGNAL_ID_LEN + 1 bytes */
        cq_strlcpy(t->last_signal_id, sig.id, sizeof(t->last_signal_id));
    }
    while (t->user_events != NULL && cq_spsc_pop(t->user_events, &ev)) {
        if (strstr(ev.json, "\"executionReport\"") != NULL) {
            t->execution_reports++;
        } else if (strstr(ev.json, "\"outboundAccountPosition\"") != NULL) {
            t->account_positions++;
        } else {
            t->other_events++;
        }
    }
    struct cq_trader_metrics m = {
        .signals_received_total = t->signals_received,
        .test_signals_received_total = t->test_signals_received,
        .execution_reports_total = t->execution_reports,
        .account_positions_total = t->account_positions,
        .other_user_events_total = t->other_events,
    };
    cq_health_set_trader_metrics(t->board, &m);
    cq_health_publish(t->board, CQ_SVC_TRADER, CQ_HEALTH_STARTING, false, "not_implemented",
                      "trader skeleton: no order path yet, nothing is sent",
                      json_pack("{s:{s:I,s:I,s:I},s:{s:I,s:I,s:s}}", "user_events",
                                "execution_reports", (json_int_t)t->execution_reports,
                                "account_positions", (json_int_t)t->account_positions, "other",
                                (json_int_t)t->other_events, "signals", "received",
                                (json_int_t)t->signals_received, "test",
                                (json_int_t)t->test_signals_received, "last_id",
                                t->last_signal_id));
    return 0;
}

static const struct cq_service_ops trader_ops = {
    .id = CQ_SVC_TRADER,
    .tick_ms = 250,
    .step = trader_step,
    .on_stop = NULL,
};

struct cq_trader *cq_trader_new(struct cq_config *cfg, struct cq_health_board *board,
                                struct cq_spsc *user_events, struct cq_spsc *signals,
                                struct cq_err *err)
{
    struct cq_trader *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the trader");
        return NULL;
    }
    t->cfg = cq_config_ref(cfg);
    t->board = board;
    t->user_events = user_events;
    t->signals = signals;
    t->svc = cq_service_new(&trader_ops, t, board, NULL, err);
    if (t->svc == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    cq_version_log_banner("trader", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:s,s:b}", "mode", cq_mode_name(cq_config_mode(cfg)),
                                    "orders_enabled", 0));
    return t;
}

void cq_trader_free(struct cq_trader *t)
{
    if (t == NULL) {
        return;
    }
    cq_service_free(t->svc);
    cq_config_unref(t->cfg);
    free(t);
}

struct cq_service *cq_trader_service(struct cq_trader *t)
{
    return t->svc;
}
