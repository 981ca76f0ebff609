/*
 * trader.c — the trader (skeleton).
 *
 * Runs on its own thread (struct cq_service). Today it drains the user data
 * stream events the feeder forwards (counting them by type), heartbeats and
 * reports status starting, not ready, reason not_implemented; it sends no
 * order. The risk gate, filters and the one order path replace the step
 * function in the trader issue.
 *
 * The wait (this stays when the step grows): the trader sleeps on its
 * doorbell, which both input rings ring on a push (ARES's signals, the
 * feeder's user events) and a stop request rings too; otherwise it wakes
 * only for its health record (HEALTH_EVERY_MS). No fixed polling tick.
 */
#include <stdlib.h>
#include <string.h>

#include "cq/doorbell.h"

#include "cq/feeder.h"
#include "cq/log.h"
#include "cq/signal.h"
#include "cq/trader.h"
#include "cq/version.h"

/* Health record cadence, ms. */
#define HEALTH_EVERY_MS 250
/* The longest sleep with nothing to do, ms. The service frame cuts it to a
 * quarter of the watchdog's stall limit (CQ_WATCHDOG_STALL_MS) when that
 * is lower, so the heartbeat is always in time. */
#define SLEEP_MAX_MS 1000

struct cq_trader {
    struct cq_config *cfg;         /* owned reference */
    struct cq_health_board *board; /* borrowed */
    struct cq_service *svc;        /* owned */
    struct cq_spsc *user_events;   /* borrowed; the trader is the consumer */
    struct cq_spsc *signals;       /* borrowed; the trader is the consumer */
    struct cq_doorbell bell;       /* owned; both rings ring it on a push */
    bool bell_ready;
    int64_t last_health_ms; /* real monotonic time of the last record */
    uint64_t execution_reports, account_positions, other_events;
    uint64_t user_stream_gaps; /* userStreamGap events (the feeder's): reconcile */
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
        } else if (strstr(ev.json, "\"userStreamGap\"") != NULL) {
            /* The user stream (re)started or lost events: orders and
             * balances must be reconciled over REST. The skeleton has no
             * REST access yet: it counts and logs the gap. */
            t->user_stream_gaps++;
            json_t *gap = json_loads(ev.json, 0, NULL);
            const char *why = json_string_value(json_object_get(gap, "reason"));
            cq_log_warn("trader", "user_stream_gap",
                        json_pack("{s:s,s:I}", "reason", why != NULL ? why : "?", "gaps",
                                  (json_int_t)t->user_stream_gaps),
                        "user data stream gap (%s): orders and balances need a REST "
                        "reconcile (not implemented in the skeleton)",
                        why != NULL ? why : "?");
            json_decref(gap);
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
    /* The record at its cadence (real time: an operational timer), not on
     * every wake: a burst of signals does not rebuild it per signal. */
    int64_t real_now = cq_time_mono_ms();
    if (real_now - t->last_health_ms < HEALTH_EVERY_MS) {
        return 0;
    }
    t->last_health_ms = real_now;
    cq_health_publish(
        t->board, CQ_SVC_TRADER, CQ_HEALTH_STARTING, false, "not_implemented",
        "trader skeleton: no order path yet, nothing is sent",
        json_pack("{s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:s}}", "user_events", "execution_reports",
                  (json_int_t)t->execution_reports, "account_positions",
                  (json_int_t)t->account_positions, "other", (json_int_t)t->other_events, "gaps",
                  (json_int_t)t->user_stream_gaps, "signals", "received",
                  (json_int_t)t->signals_received, "test", (json_int_t)t->test_signals_received,
                  "last_id", t->last_signal_id));
    return 0;
}

/* After arming the doorbell: anything in either ring? */
static bool trader_has_work(void *ctx)
{
    struct cq_trader *t = ctx;
    return (t->signals != NULL && cq_spsc_peek(t->signals) != NULL) ||
           (t->user_events != NULL && cq_spsc_peek(t->user_events) != NULL);
}

static int64_t trader_next_timer_ms(void *ctx, int64_t now_mono_ms)
{
    struct cq_trader *t = ctx;
    (void)now_mono_ms;
    int64_t wait = t->last_health_ms + HEALTH_EVERY_MS - cq_time_mono_ms();
    return wait < 0 ? 0 : wait;
}

static const struct cq_service_ops trader_ops = {
    .id = CQ_SVC_TRADER,
    .tick_ms = SLEEP_MAX_MS, /* with the doorbell: the longest sleep */
    .step = trader_step,
    .on_stop = NULL,
    .has_work = trader_has_work,
    .next_timer_ms = trader_next_timer_ms,
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
    t->last_health_ms = cq_time_mono_ms() - HEALTH_EVERY_MS; /* first step publishes */
    t->svc = cq_service_new(&trader_ops, t, board, NULL, err);
    if (t->svc == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    if (cq_doorbell_init(&t->bell, err) < 0) {
        cq_trader_free(t);
        return NULL;
    }
    t->bell_ready = true;
    /* One doorbell for both input rings. */
    if (t->signals != NULL) {
        cq_spsc_set_consumer_bell(t->signals, &t->bell);
    }
    if (t->user_events != NULL) {
        cq_spsc_set_consumer_bell(t->user_events, &t->bell);
    }
    cq_service_set_doorbell(t->svc, &t->bell);
    cq_version_log_banner(
        "trader", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
        json_pack("{s:s,s:b}", "mode", cq_mode_name(cq_config_mode(cfg)), "orders_enabled", 0));
    return t;
}

void cq_trader_free(struct cq_trader *t)
{
    if (t == NULL) {
        return;
    }
    cq_service_free(t->svc);
    if (t->bell_ready) {
        if (t->signals != NULL) {
            cq_spsc_set_consumer_bell(t->signals, NULL);
        }
        if (t->user_events != NULL) {
            cq_spsc_set_consumer_bell(t->user_events, NULL);
        }
        cq_doorbell_fini(&t->bell);
    }
    cq_config_unref(t->cfg);
    free(t);
}

struct cq_service *cq_trader_service(struct cq_trader *t)
{
    return t->svc;
}
