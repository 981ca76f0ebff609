/*
 * trader.c — the trader thread: the shell around the decision core
 * (include/cq/trader.h, docs/TRADER.md).
 *
 * It owns the REST client, reads the two rings (signals from ARES, user
 * data events from the feeder) and the operator command queue, turns them
 * into core events (parse.c), feeds the wall clock as CQ_TRADER_EV_TICK on
 * a timer, and performs the core's actions strictly in order:
 *   JOURNAL       cq_journal_append; with wait_durable, cq_journal_wait_durable
 *                 too, and when either fails the SEND that follows is skipped
 *                 and the core gets SEND_FAILED / JOURNAL_FAILED. A record
 *                 with log_event set is logged with its payload as fields.
 *   SEND_ORDER    the signed parameters (newOrderRespType FULL) through
 *                 cq_trader_venue_send, the one door to the order endpoint;
 *                 the answer becomes ORDER_UPDATEs or SEND_FAILED (REJECTED
 *                 with code and msg, UNKNOWN, RATE_LIMITED, BANNED). dryrun:
 *                 logged (order_dryrun) and answered REJECTED "dryrun".
 *   QUERY/CANCEL  by origClientOrderId; -2013 is NOT_FOUND.
 *   FETCH_*       account, exchangeInfo (only CQ_SYMBOLS are fed), open
 *                 orders, a ticker price.
 * Answers are queued (a bounded FIFO of events, TRADER_EVENTS_MAX) and fed
 * after the action list that caused them, so the core always sees one
 * event's actions performed before the next event.
 *
 * The restart path (first step): the journal's canonical state names the
 * last trader.checkpoint (trader_checkpoint_seq); every record from it on
 * goes to cq_trader_core_replay, then EV_RECOVERED starts the reconcile.
 *
 * Publishes: health (the core's reason, cq_trader_reason_name; ready only
 * when the core says so), the typed metrics (cq_trader_metrics) and a
 * read-only JSON snapshot (positions, orders, risk) the admin API copies
 * under a mutex without touching the core.
 *
 * The test-only crash hook CQ_TEST_CRASH_AT="<point>:<n>" (paper and dryrun
 * only): the n-th time the thread passes after_intent, after_send or
 * after_fill it raises SIGKILL on itself (tests/integration/test_trader_*).
 */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/clock.h"
#include "cq/doorbell.h"
#include "cq/feeder.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/rest.h"
#include "cq/signal.h"
#include "cq/trader.h"
#include "cq/version.h"
#include "trader-parse.h"
#include "trader-venue.h"

#define SVC "trader"
/* Health record cadence, ms. */
#define HEALTH_EVERY_MS 250
/* The core's timers (queries, backoff, day roll, quarantine expiry) run on
 * EV_TICK at this cadence, ms. */
#define TICK_EVERY_MS 200
/* The snapshot for the API is rebuilt at most this often, ms. */
#define SNAPSHOT_EVERY_MS 100
/* The longest sleep with nothing to do, ms (cut by the service frame to a
 * quarter of the watchdog's stall limit). */
#define SLEEP_MAX_MS 1000
/* Answers waiting to be fed to the core (one place answer gives up to
 * CQ_TRADER_PARSE_FILLS_MAX, openOrders up to this many). */
#define TRADER_EVENTS_MAX 1024
/* How often the feeder's health record is read for the user stream's
 * state, ms (its loss is not an event on the ring: only the resubscription
 * is, as a userStreamGap). */
#define STREAM_CHECK_EVERY_MS 500
/* Answers fed per step at most (the rest waits for the next step). */
#define EVENTS_PER_STEP_MAX 2048
/* How long a durable wait may take before the intent counts as failed, ms. */
#define DURABLE_WAIT_MS 5000
/* Orders closed lately, kept for GET /api/v1/orders (newest first), and the
 * intents they are matched with (side, type, purpose of a closed order). */
#define RECENT_ORDERS_MAX 100
#define INTENTS_KEPT 256
/* How long the restart path may wait for the journal, ms. */
#define JOURNAL_APPEND_RETRY_MS 1000

enum crash_point { CRASH_NONE, CRASH_AFTER_INTENT, CRASH_AFTER_SEND, CRASH_AFTER_FILL };

struct cmd {
    enum cq_trader_operator_cmd cmd;
    char symbol[CQ_SYMBOL_LEN];
};

struct cq_trader {
    struct cq_config *cfg;         /* owned reference */
    struct cq_health_board *board; /* borrowed */
    struct cq_service *svc;        /* owned */
    struct cq_spsc *user_events;   /* borrowed; the trader is the consumer */
    struct cq_spsc *signals;       /* borrowed; the trader is the consumer */
    struct cq_journal *journal;    /* borrowed */
    char *journal_dir;             /* owned */
    const struct cq_clock *clock;  /* borrowed or system */
    struct cq_doorbell bell;       /* owned; both rings and the command queue ring it */
    bool bell_ready;
    /* Set by a stop request (any thread): cuts a REST call in flight, so a
     * hanging exchange cannot hold the stop past its budget. */
    atomic_bool io_abort;
    enum cq_mode mode;
    bool have_keys;
    struct cq_rest_client *rest;   /* owned; this thread only */
    struct cq_trader_core *core;   /* owned; this thread only */
    struct cq_trader_actions acts; /* scratch for cq_trader_core_on_event */

    /* answers waiting for the core (FIFO) */
    struct cq_trader_event *events; /* owned, TRADER_EVENTS_MAX */
    size_t ev_head, ev_n;

    /* the action list being performed */
    bool skip_next_send;     /* a wait_durable journal action failed */
    int64_t list_durable_us; /* durability waits in this list */
    int64_t list_frame_us;   /* the signal's frame stamp (0 = not a signal's list) */
    /* Stage stamps of the signal's list (cq_time_mono_us; 0 = not reached),
     * logged in order_sent as stages_us (docs/TRADER.md): the signal's own
     * (feeder and ARES), then the trader's. */
    struct cq_signal list_sig;  /* the signal being fed (its stamps) */
    int64_t step_mono_us;       /* this step began */
    int64_t list_woke_us;       /* the trader took the signal (woke for it) */
    int64_t list_core_done_us;  /* cq_trader_core_on_event returned */
    int64_t list_appended_us;   /* the intent was appended to the journal */
    int64_t list_durable_at_us; /* ... and is durable */
    /* Journal log lines held back until the list's order is sent (they
     * are not on the order's path): actions of t->acts, in order. */
    bool defer_logs;
    struct {
        const struct cq_trader_action *a; /* borrowed: t->acts */
        uint64_t seq;
    } deferred[CQ_TRADER_ACTIONS_MAX];
    size_t deferred_n;

    bool in_cancel;    /* performing a CANCEL: its failures say was_cancel */
    int feeder_stream; /* the feeder's user stream: 1 subscribed, 0 not, -1 unknown */
    int64_t last_stream_check_ms;
    bool recovered;
    int64_t last_health_ms, last_tick_ms, last_snapshot_ms;
    bool snapshot_dirty;
    bool journal_broken; /* an append or durable wait failed: health says so */
    char journal_error[160];

    /* operator commands: any thread pushes, this thread pops */
    pthread_mutex_t cmd_lock;
    struct cmd cmds[CQ_TRADER_COMMANDS_MAX];
    size_t cmd_head, cmd_n;
    bool applied_paused, applied_kill; /* the config's view, for reconfigure */

    /* the snapshot for the API */
    pthread_mutex_t snap_lock;
    json_t *snapshot; /* owned; replaced whole, never modified once published */

    /* counters (this thread), and the ones other threads bump */
    struct cq_trader_metrics m;
    _Atomic uint64_t commands_refused;

    /* the crash hook */
    enum crash_point crash_point;
    unsigned crash_at, crash_seen;

    /* closed orders for the API: a ring of JSON objects, and the intents
     * (parsed payloads) they are completed from */
    json_t *recent[RECENT_ORDERS_MAX];
    size_t recent_next;
    json_t *intents[INTENTS_KEPT];
    size_t intents_next;

    char last_signal_id[CQ_SIGNAL_ID_LEN + 1];
    struct cq_log_ratelimit bad_event_rl;
    struct cq_log_ratelimit storm_rl;
    struct cq_log_ratelimit mark_rl; /* mark_fetch_failed */
};

static int64_t wall_ms(const struct cq_trader *t)
{
    return cq_clock_wall_us(t->clock) / 1000;
}

static int64_t mono_us(void)
{
    return cq_time_mono_us();
}

static const char *side_name(enum cq_side s)
{
    return s == CQ_SIDE_BUY ? "BUY" : "SELL";
}

static const char *state_name(enum cq_trader_order_state s)
{
    static const char *const names[] = {"intent", "sent",     "unknown",  "open",
                                        "filled", "canceled", "rejected", "failed"};
    return (size_t)s < CQ_ARRAY_LEN(names) ? names[s] : "?";
}

static const char *purpose_name(enum cq_trader_purpose p)
{
    static const char *const names[] = {"entry", "exit", "stop_loss", "take_profit", "adopted"};
    return (size_t)p < CQ_ARRAY_LEN(names) ? names[p] : "?";
}

static json_t *jdec(cq_dec d)
{
    char buf[CQ_DEC_STR_MAX];
    return json_string(cq_dec_format(d, buf, sizeof(buf)));
}

/* ---- the crash hook -------------------------------------------------------------------- */

static void crash_hook_arm(struct cq_trader *t)
{
    const char *spec = getenv("CQ_TEST_CRASH_AT");
    if (spec == NULL || spec[0] == '\0') {
        return;
    }
    if (t->mode != CQ_MODE_PAPER && t->mode != CQ_MODE_DRYRUN) {
        cq_log_warn(SVC, "test_crash_hook_ignored", json_pack("{s:s}", "spec", spec),
                    "CQ_TEST_CRASH_AT is honoured only in paper and dryrun modes; ignored");
        return;
    }
    static const struct {
        const char *name;
        enum crash_point p;
    } points[] = {{"after_intent", CRASH_AFTER_INTENT},
                  {"after_send", CRASH_AFTER_SEND},
                  {"after_fill", CRASH_AFTER_FILL}};
    const char *colon = strchr(spec, ':');
    char *end = NULL;
    unsigned long n = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
    for (size_t i = 0; colon != NULL && i < CQ_ARRAY_LEN(points); i++) {
        if (strlen(points[i].name) == (size_t)(colon - spec) &&
            memcmp(spec, points[i].name, (size_t)(colon - spec)) == 0 && end != NULL &&
            *end == '\0' && n >= 1 && n <= UINT32_MAX) {
            t->crash_point = points[i].p;
            t->crash_at = (unsigned)n;
        }
    }
    if (t->crash_point == CRASH_NONE) {
        cq_log_error(SVC, "test_crash_hook_invalid", json_pack("{s:s}", "spec", spec),
                     "CQ_TEST_CRASH_AT=%s is not <after_intent|after_send|after_fill>:<n>, "
                     "n >= 1; ignored",
                     spec);
        return;
    }
    cq_log_warn(SVC, "test_crash_hook_armed", json_pack("{s:s,s:i}", "spec", spec, "n", (int)n),
                "TEST ONLY: the trader kills itself (SIGKILL) at %s", spec);
}

static void crash_point(struct cq_trader *t, enum crash_point p)
{
    if (t->crash_point != p || ++t->crash_seen != t->crash_at) {
        return;
    }
    /* stderr, unbuffered: the log writer may not get to it */
    fprintf(stderr, "coinquantd: CQ_TEST_CRASH_AT reached (point %d, pass %u): SIGKILL\n", (int)p,
            t->crash_seen);
    raise(SIGKILL);
}

/* ---- the event FIFO -------------------------------------------------------------------- */

/* A slot for the next answer, or NULL when the queue is full (counted). */
static struct cq_trader_event *ev_push(struct cq_trader *t, enum cq_trader_event_kind kind)
{
    if (t->ev_n == TRADER_EVENTS_MAX) {
        t->m.events_dropped_total++;
        return NULL;
    }
    struct cq_trader_event *ev = &t->events[(t->ev_head + t->ev_n) % TRADER_EVENTS_MAX];
    t->ev_n++;
    memset(ev, 0, offsetof(struct cq_trader_event, u));
    ev->kind = kind;
    ev->now_ms = wall_ms(t);
    return ev;
}

static size_t ev_space(const struct cq_trader *t)
{
    return TRADER_EVENTS_MAX - t->ev_n;
}

static void push_send_failed(struct cq_trader *t, const char *symbol, const char *client_id,
                             enum cq_trader_send_outcome outcome, int code, const char *msg,
                             int64_t retry_after_ms, bool was_query)
{
    bool was_cancel = t->in_cancel;
    struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_SEND_FAILED);
    if (ev == NULL) {
        cq_log_error(SVC, "trader_event_dropped", json_pack("{s:s}", "client_order_id", client_id),
                     "event queue full: the outcome of %s was not fed (a query resolves it)",
                     client_id);
        return;
    }
    memset(&ev->u.send, 0, sizeof(ev->u.send));
    cq_strlcpy(ev->u.send.symbol, symbol, sizeof(ev->u.send.symbol));
    cq_strlcpy(ev->u.send.client_id, client_id, sizeof(ev->u.send.client_id));
    ev->u.send.outcome = outcome;
    ev->u.send.code = code;
    cq_strlcpy(ev->u.send.msg, msg != NULL ? msg : "", sizeof(ev->u.send.msg));
    ev->u.send.retry_after_ms = retry_after_ms;
    ev->u.send.was_query = was_query;
    ev->u.send.was_cancel = was_cancel;
}

/* A REST status that is not OK as the core's outcome. */
static enum cq_trader_send_outcome outcome_of(const struct cq_rest_response *r)
{
    switch (r->status) {
    case CQ_REST_REJECTED:
        return r->code == -2013 ? CQ_TRADER_SEND_NOT_FOUND : CQ_TRADER_SEND_REJECTED;
    case CQ_REST_RATE_LIMITED:
    case CQ_REST_THROTTLED:
        return CQ_TRADER_SEND_RATE_LIMITED;
    case CQ_REST_BANNED:
        return CQ_TRADER_SEND_BANNED;
    default: /* UNKNOWN, NETWORK, BAD_RESPONSE: the fate is unsure */
        return CQ_TRADER_SEND_UNKNOWN;
    }
}

/* ---- performing actions ---------------------------------------------------------------- */

/* An intent, kept so a closed order can be shown with its side and type. */
static void remember_intent(struct cq_trader *t, const struct cq_trader_action *a)
{
    json_t *j = json_loadb(cq_trader_action_payload(a), a->u.journal.len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    json_object_set_new(j, "symbol", json_string(a->u.journal.scope));
    json_decref(t->intents[t->intents_next]);
    t->intents[t->intents_next] = j;
    t->intents_next = (t->intents_next + 1) % INTENTS_KEPT;
}

/* A terminal record (order.fill final, order.reject): the order leaves the
 * core; the API keeps showing it among the recent ones. */
static void remember_closed(struct cq_trader *t, const struct cq_trader_action *a)
{
    json_t *p = json_loadb(cq_trader_action_payload(a), a->u.journal.len, 0, NULL);
    const char *id = json_string_value(json_object_get(p, "client_order_id"));
    bool fill = a->u.journal.type == CQ_REC_ORDER_FILL;
    if (id == NULL || (fill && !json_is_true(json_object_get(p, "final")))) {
        json_decref(p);
        return;
    }
    json_t *o = NULL;
    for (size_t i = 0; i < INTENTS_KEPT && o == NULL; i++) {
        const char *iid = json_string_value(json_object_get(t->intents[i], "client_order_id"));
        if (iid != NULL && strcmp(iid, id) == 0) {
            o = json_deep_copy(t->intents[i]);
        }
    }
    if (o == NULL) {
        o = json_pack("{s:s,s:s}", "client_order_id", id, "symbol", a->u.journal.scope);
    }
    json_object_update(o, p); /* the outcome's fields over the intent's */
    json_decref(p);
    if (fill) {
        json_object_set_new(o, "state", json_string("filled"));
    }
    char ts[CQ_RFC3339_US_LEN];
    json_object_set_new(
        o, "closed_at",
        json_string(cq_time_rfc3339_us(cq_clock_wall_us(t->clock), ts, sizeof(ts))));
    json_decref(t->recent[t->recent_next]);
    t->recent[t->recent_next] = o;
    t->recent_next = (t->recent_next + 1) % RECENT_ORDERS_MAX;
}

/* A journaled record's log line (log_event) and, for an intent, the API's
 * copy of it. */
static void journal_logged(struct cq_trader *t, const struct cq_trader_action *a, uint64_t seq)
{
    if (a->u.journal.log_event != NULL &&
        cq_log_enabled((enum cq_log_level)a->u.journal.log_level)) {
        json_t *fields = json_loadb(cq_trader_action_payload(a), a->u.journal.len, 0, NULL);
        if (!json_is_object(fields)) {
            json_decref(fields);
            fields = json_object();
        }
        json_object_set_new(fields, "journal_seq", json_integer((json_int_t)seq));
        json_object_set_new(fields, "symbol", json_string(a->u.journal.scope));
        enum cq_log_level lvl = (enum cq_log_level)a->u.journal.log_level;
        if (lvl < CQ_LOG_DEBUG || lvl > CQ_LOG_ERROR) {
            lvl = CQ_LOG_INFO;
        }
        cq_log(lvl, SVC, a->u.journal.log_event, fields, "%s %s (journal seq %" PRIu64 ")",
               a->u.journal.log_event, a->u.journal.scope, seq);
    }
    if (a->u.journal.type == CQ_REC_ORDER_INTENT) {
        remember_intent(t, a);
    }
}

/* The log lines held back while an order was on its way, in their order. */
static void flush_deferred(struct cq_trader *t)
{
    for (size_t i = 0; i < t->deferred_n; i++) {
        journal_logged(t, t->deferred[i].a, t->deferred[i].seq);
    }
    t->deferred_n = 0;
    t->defer_logs = false;
}

static void act_journal(struct cq_trader *t, const struct cq_trader_action *a)
{
    uint64_t seq = 0;
    const char *typename = cq_rec_type_name(a->u.journal.type);
    int rc = cq_journal_append(t->journal, a->u.journal.type, a->u.journal.scope,
                               cq_trader_action_payload(a), a->u.journal.len, &seq);
    if (rc == -CQ_EFULL) { /* backpressure: the writer is behind; retry briefly */
        int64_t until = cq_time_mono_ms() + JOURNAL_APPEND_RETRY_MS;
        while (rc == -CQ_EFULL && cq_time_mono_ms() < until) {
            cq_time_sleep_ms(1);
            rc = cq_journal_append(t->journal, a->u.journal.type, a->u.journal.scope,
                                   cq_trader_action_payload(a), a->u.journal.len, &seq);
        }
    }
    int64_t waited_us = 0;
    if (rc == 0 && (a->u.journal.wait_durable || (a->u.journal.type == CQ_REC_ORDER_FILL &&
                                                  t->crash_point == CRASH_AFTER_FILL))) {
        int64_t t0 = mono_us();
        rc = cq_journal_wait_durable(t->journal, seq, DURABLE_WAIT_MS);
        waited_us = mono_us() - t0;
        if (a->u.journal.wait_durable) {
            t->list_appended_us = t0;
            t->list_durable_at_us = t0 + waited_us;
            cq_latency_histogram_observe(&t->m.durable_wait, (uint64_t)waited_us * 1000u);
            t->list_durable_us += waited_us;
        }
    }
    if (rc < 0) {
        t->journal_broken = true;
        snprintf(t->journal_error, sizeof(t->journal_error), "%s: %s",
                 typename != NULL ? typename : "?", cq_strerror(rc));
        if (a->u.journal.wait_durable) {
            t->skip_next_send = true;
            t->m.journal_failures_total++;
        }
        cq_log_error(SVC, "journal_append_failed",
                     json_pack("{s:s,s:s,s:s,s:b}", "type", typename != NULL ? typename : "?",
                               "scope", a->u.journal.scope, "error", cq_strerror(rc),
                               "wait_durable", a->u.journal.wait_durable),
                     "journal %s for %s failed (%s)%s", typename != NULL ? typename : "?",
                     a->u.journal.scope, cq_strerror(rc),
                     a->u.journal.wait_durable ? ": the order that follows is not sent" : "");
        return;
    }
    t->journal_broken = false;
    if (t->defer_logs && t->deferred_n < CQ_ARRAY_LEN(t->deferred)) {
        /* before the order's send: its log line (and the API's copy of an
         * intent) are done after the request is written (flush_deferred) */
        t->deferred[t->deferred_n].a = a;
        t->deferred[t->deferred_n].seq = seq;
        t->deferred_n++;
    } else {
        journal_logged(t, a, seq);
    }
    if (a->u.journal.type == CQ_REC_ORDER_INTENT) {
        crash_point(t, CRASH_AFTER_INTENT);
    } else if (a->u.journal.type == CQ_REC_ORDER_FILL) {
        remember_closed(t, a);
        crash_point(t, CRASH_AFTER_FILL);
    } else if (a->u.journal.type == CQ_REC_ORDER_REJECT) {
        remember_closed(t, a);
    } else if (a->u.journal.type == CQ_REC_ORDER_REFUSED) {
        t->m.filter_refusals_total++;
    }
}

/* Feed a place/cancel/query answer's order(s) to the core. */
static void push_order_answer(struct cq_trader *t, const struct cq_trader_action *a,
                              const json_t *body, bool place, bool was_query)
{
    struct cq_trader_order_update ups[CQ_TRADER_PARSE_FILLS_MAX];
    char why[160] = "";
    size_t n = place
                   ? cq_trader__parse_place_response(body, ups, CQ_ARRAY_LEN(ups), why, sizeof(why))
                   : (cq_trader__parse_order(body, &ups[0], why, sizeof(why)) == 0 ? 1 : 0);
    if (n == 0) {
        cq_log_error(SVC, "exchange_answer_unreadable",
                     json_pack("{s:s,s:s}", "client_order_id", a->u.order.client_id, "why", why),
                     "the answer for %s cannot be read (%s): its outcome counts as unknown",
                     a->u.order.client_id, why);
        push_send_failed(t, a->u.order.symbol, a->u.order.client_id, CQ_TRADER_SEND_UNKNOWN, 0, why,
                         0, was_query);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_ORDER_UPDATE);
        if (ev == NULL) {
            break;
        }
        ev->u.order = ups[i];
    }
}

static void build_order_params(const struct cq_trader_action *a, struct cq_rest_params *p)
{
    cq_rest_params_init(p);
    cq_rest_params_add(p, "symbol", a->u.order.symbol);
    cq_rest_params_add(p, "side", side_name(a->u.order.side));
    cq_rest_params_add(p, "type", a->u.order.type == CQ_TRADER_MARKET ? "MARKET" : "LIMIT");
    if (a->u.order.type == CQ_TRADER_LIMIT) {
        cq_rest_params_add(p, "timeInForce", "GTC");
    }
    if (cq_dec_sign(a->u.order.qty) > 0) {
        cq_rest_params_add_dec(p, "quantity", a->u.order.qty);
    } else {
        cq_rest_params_add_dec(p, "quoteOrderQty", a->u.order.quote_qty);
    }
    if (a->u.order.type == CQ_TRADER_LIMIT) {
        cq_rest_params_add_dec(p, "price", a->u.order.price);
    }
    cq_rest_params_add(p, "newClientOrderId", a->u.order.client_id);
    cq_rest_params_add(p, "newOrderRespType", "FULL");
}

/* µs from the closing frame to a stage stamp; -1 when not stamped. */
static json_t *stage(const struct cq_trader *t, int64_t at_us)
{
    return json_integer(at_us > 0 ? (json_int_t)(at_us - t->list_frame_us) : -1);
}

static json_t *send_fields(const struct cq_trader *t, const struct cq_trader_action *a,
                           int64_t tto_us, int64_t handed_us, int64_t curl_us, int64_t written_us)
{
    json_t *f = json_pack(
        "{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:I,s:I}", "symbol", a->u.order.symbol, "client_order_id",
        a->u.order.client_id, "side", side_name(a->u.order.side), "type",
        a->u.order.type == CQ_TRADER_MARKET ? "MARKET" : "LIMIT", "qty", jdec(a->u.order.qty),
        "quote_qty", jdec(a->u.order.quote_qty), "price", jdec(a->u.order.price),
        "tick_to_order_us", (json_int_t)tto_us, "durable_wait_us", (json_int_t)t->list_durable_us);
    if (f != NULL && t->list_frame_us > 0) {
        /* each stage in µs since the closing frame, in path order (the
         * durable stamp includes the wait that tick_to_order_us leaves out) */
        const struct cq_signal *g = &t->list_sig;
        json_object_set_new(
            f, "stages_us",
            json_pack(
                "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "candle_pushed",
                stage(t, g->candle_pushed_mono_us), "ares_woke", stage(t, g->ares_woke_mono_us),
                "signal_decided", stage(t, g->decided_mono_us), "signal_pushed",
                stage(t, g->pushed_mono_us), "trader_woke", stage(t, t->list_woke_us), "core_done",
                stage(t, t->list_core_done_us), "intent_appended", stage(t, t->list_appended_us),
                "durable", stage(t, t->list_durable_at_us), "handed_to_rest", stage(t, handed_us),
                "handed_to_curl", stage(t, curl_us), "request_written", stage(t, written_us)));
    }
    return f;
}

static void act_send(struct cq_trader *t, const struct cq_trader_action *a)
{
    if (t->skip_next_send) {
        flush_deferred(t);
        t->skip_next_send = false;
        push_send_failed(t, a->u.order.symbol, a->u.order.client_id, CQ_TRADER_SEND_JOURNAL_FAILED,
                         0, "the intent did not become durable: not sent", 0, false);
        return;
    }
    struct cq_rest_params p;
    build_order_params(a, &p);
    int64_t tto_us = -1;
    int64_t handed_us = mono_us();
    if (t->mode == CQ_MODE_DRYRUN) {
        flush_deferred(t);
        if (t->list_frame_us > 0) { /* to where the request would be written */
            tto_us = handed_us - t->list_frame_us - t->list_durable_us;
            tto_us = tto_us < 0 ? 0 : tto_us;
        }
        json_t *fields = send_fields(t, a, tto_us, handed_us, 0, 0);
        t->m.orders_dryrun_total++;
        cq_log_info(SVC, "order_dryrun", fields, "dryrun: %s %s %s not sent (intent journaled)",
                    side_name(a->u.order.side), a->u.order.symbol, a->u.order.client_id);
        push_send_failed(t, a->u.order.symbol, a->u.order.client_id, CQ_TRADER_SEND_REJECTED, 0,
                         "dryrun: journaled and logged, not sent", 0, false);
        return;
    }
    struct cq_rest_response r = {0};
    int rc = cq_trader_venue_send(t->rest, "POST", "/api/v3/order", &p, 1, &r);
    t->m.orders_sent_total += rc == 0;
    /* Tick-to-order ends when the request is written (the REST client's
     * stamp: curl's CURLINFO_PRETRANSFER_TIME_T after the transfer began);
     * a request refused before that ends at the hand-over. */
    int64_t written_us = rc == 0 ? r.sent_mono_us : 0;
    flush_deferred(t); /* the intent's lines before order_sent, as before */
    if (t->list_frame_us > 0) {
        tto_us = (written_us > 0 ? written_us : handed_us) - t->list_frame_us - t->list_durable_us;
        tto_us = tto_us < 0 ? 0 : tto_us;
        cq_latency_histogram_observe(&t->m.tick_to_order, (uint64_t)tto_us * 1000u);
    }
    /* the log line is built after the request went out: not in tick-to-order */
    cq_log_info(SVC, "order_sent",
                send_fields(t, a, tto_us, handed_us, rc == 0 ? r.perform_mono_us : 0, written_us),
                "%s %s sent as %s: %s", side_name(a->u.order.side), a->u.order.symbol,
                a->u.order.client_id, rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status));
    crash_point(t, CRASH_AFTER_SEND);
    if (rc < 0) { /* a caller bug (too long, bad path): nothing was sent */
        push_send_failed(t, a->u.order.symbol, a->u.order.client_id, CQ_TRADER_SEND_REJECTED, 0,
                         r.msg, 0, false);
    } else if (r.status == CQ_REST_OK) {
        push_order_answer(t, a, r.body, true, false);
    } else {
        enum cq_trader_send_outcome o = outcome_of(&r);
        if (o == CQ_TRADER_SEND_NOT_FOUND) {
            o = CQ_TRADER_SEND_REJECTED; /* -2013 on a place is a rejection */
        }
        t->m.unknown_outcomes_total += o == CQ_TRADER_SEND_UNKNOWN;
        t->m.send_rejected_total += o == CQ_TRADER_SEND_REJECTED;
        cq_log_warn(SVC, "order_send_failed",
                    json_pack("{s:s,s:s,s:s,s:i,s:s,s:I}", "symbol", a->u.order.symbol,
                              "client_order_id", a->u.order.client_id, "status",
                              cq_rest_status_name(r.status), "code", r.code, "msg", r.msg,
                              "retry_after_ms", (json_int_t)r.retry_after_ms),
                    "order %s: %s (%d %s)", a->u.order.client_id, cq_rest_status_name(r.status),
                    r.code, r.msg);
        push_send_failed(t, a->u.order.symbol, a->u.order.client_id, o, r.code, r.msg,
                         r.retry_after_ms, false);
    }
    cq_rest_response_fini(&r);
}

/* A query answer with fills: the trades (GET /api/v3/myTrades?orderId=) are
 * fed first, one update each with its commission, then the answer's totals,
 * as a FULL place answer would have been. False when there is nothing to
 * add or the trades cannot be had (the plain answer is fed then). */
static bool query_with_trades(struct cq_trader *t, const struct cq_trader_action *as_order,
                              json_t *body)
{
    const char *exec = json_string_value(json_object_get(body, "executedQty"));
    cq_dec e;
    if (exec == NULL || cq_dec_parse(exec, strlen(exec), &e) < 0 || cq_dec_sign(e) <= 0 ||
        !json_is_integer(json_object_get(body, "orderId"))) {
        return false;
    }
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", as_order->u.order.symbol);
    cq_rest_params_add_int(&p, "orderId", json_integer_value(json_object_get(body, "orderId")));
    struct cq_rest_response r = {0};
    int rc = cq_rest_call(t->rest, "GET", "/api/v3/myTrades", &p, CQ_SEC_SIGNED, 20, &r);
    char why[160] = "";
    bool ok = rc == 0 && r.status == CQ_REST_OK &&
              cq_trader__attach_trades(body, r.body, why, sizeof(why)) == 0 &&
              json_array_size(json_object_get(body, "fills")) > 0;
    if (!ok) {
        cq_log_warn(SVC, "order_trades_fetch_failed",
                    json_pack("{s:s,s:s,s:s}", "client_order_id", as_order->u.order.client_id,
                              "status", rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status),
                              "why", why[0] != '\0' ? why : r.msg),
                    "the trades of %s could not be read (%s): its fill is applied without "
                    "their commissions",
                    as_order->u.order.client_id, why[0] != '\0' ? why : r.msg);
        json_object_del(body, "fills");
    } else {
        push_order_answer(t, as_order, body, true, true);
    }
    cq_rest_response_fini(&r);
    return ok;
}

static void act_query_or_cancel(struct cq_trader *t, const struct cq_trader_action *a, bool cancel)
{
    if (t->mode == CQ_MODE_DRYRUN) { /* nothing ever reached the exchange */
        push_send_failed(t, a->u.ref.symbol, a->u.ref.client_id, CQ_TRADER_SEND_NOT_FOUND, -2013,
                         "dryrun: never sent", 0, !cancel);
        return;
    }
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", a->u.ref.symbol);
    cq_rest_params_add(&p, "origClientOrderId", a->u.ref.client_id);
    struct cq_rest_response r = {0};
    int rc = cancel ? cq_trader_venue_send(t->rest, "DELETE", "/api/v3/order", &p, 1, &r)
                    : cq_rest_call(t->rest, "GET", "/api/v3/order", &p, CQ_SEC_SIGNED, 4, &r);
    struct cq_trader_action as_order = {.kind = CQ_TRADER_ACT_SEND_ORDER};
    cq_strlcpy(as_order.u.order.symbol, a->u.ref.symbol, sizeof(as_order.u.order.symbol));
    cq_strlcpy(as_order.u.order.client_id, a->u.ref.client_id, sizeof(as_order.u.order.client_id));
    if (rc < 0) {
        push_send_failed(t, a->u.ref.symbol, a->u.ref.client_id, CQ_TRADER_SEND_UNKNOWN, 0, r.msg,
                         0, !cancel);
    } else if (r.status == CQ_REST_OK && !cancel && query_with_trades(t, &as_order, r.body)) {
        /* fed with its trades (commissions) */
    } else if (r.status == CQ_REST_OK) {
        push_order_answer(t, &as_order, r.body, false, !cancel);
    } else {
        cq_log_warn(SVC, cancel ? "order_cancel_failed" : "order_query_failed",
                    json_pack("{s:s,s:s,s:s,s:i,s:s}", "symbol", a->u.ref.symbol, "client_order_id",
                              a->u.ref.client_id, "status", cq_rest_status_name(r.status), "code",
                              r.code, "msg", r.msg),
                    "%s %s: %s (%d %s)", cancel ? "cancel" : "query", a->u.ref.client_id,
                    cq_rest_status_name(r.status), r.code, r.msg);
        push_send_failed(t, a->u.ref.symbol, a->u.ref.client_id, outcome_of(&r), r.code, r.msg,
                         r.retry_after_ms, !cancel);
    }
    cq_rest_response_fini(&r);
}

static void act_fetch_account(struct cq_trader *t)
{
    struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_ACCOUNT);
    if (ev == NULL) {
        return; /* the core's backoff asks again */
    }
    char why[160] = "";
    ev->u.balances.n = 0;
    if (t->mode == CQ_MODE_DRYRUN && !t->have_keys) {
        /* dryrun without keys: a virtual account from CQ_SIM_BALANCES */
        if (cq_trader__parse_balance_list(cq_config_str(t->cfg, CQ_CFG_SIM_BALANCES), ev, why,
                                          sizeof(why)) < 0) {
            ev->failed = true;
        }
        return;
    }
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "omitZeroBalances", "true");
    struct cq_rest_response r = {0};
    int rc = cq_rest_call(t->rest, "GET", "/api/v3/account", &p, CQ_SEC_SIGNED, 20, &r);
    size_t dropped = 0;
    if (rc < 0 || r.status != CQ_REST_OK ||
        cq_trader__parse_account(r.body, ev, &dropped, why, sizeof(why)) < 0) {
        ev->failed = true;
        cq_log_warn(SVC, "account_fetch_failed",
                    json_pack("{s:s,s:i,s:s,s:s}", "status",
                              rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), "code",
                              r.code, "msg", r.msg, "why", why),
                    "GET /api/v3/account failed (%s %s%s): retrying with backoff",
                    rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), r.msg, why);
    } else if (dropped > 0) {
        cq_log_warn(
            SVC, "account_assets_dropped",
            json_pack("{s:I,s:i}", "dropped", (json_int_t)dropped, "kept", CQ_TRADER_ASSETS_MAX),
            "the account holds more than %d non-zero assets: %zu not tracked", CQ_TRADER_ASSETS_MAX,
            dropped);
    }
    cq_rest_response_fini(&r);
}

static bool is_our_symbol(const struct cq_trader *t, const char *symbol)
{
    const char *const *syms;
    size_t n = cq_config_symbols(t->cfg, &syms);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(syms[i], symbol) == 0) {
            return true;
        }
    }
    return false;
}

static void act_fetch_exchange_info(struct cq_trader *t)
{
    struct cq_rest_response r = {0};
    int rc = cq_rest_call(t->rest, "GET", "/api/v3/exchangeInfo", NULL, CQ_SEC_NONE, 20, &r);
    bool failed = rc < 0 || r.status != CQ_REST_OK;
    const json_t *syms = failed ? NULL : json_object_get(r.body, "symbols");
    if (!failed) {
        cq_rest_client_learn_limits(t->rest, r.body);
    }
    size_t fed = 0;
    for (size_t i = 0; json_is_array(syms) && i < json_array_size(syms); i++) {
        const json_t *s = json_array_get(syms, i);
        const char *name = json_string_value(json_object_get(s, "symbol"));
        if (name == NULL || !is_our_symbol(t, name) || ev_space(t) < 2) {
            continue;
        }
        struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_SYMBOL_INFO);
        char why[200] = "";
        if (cq_trader__parse_symbol(s, &ev->u.symbol_info, why, sizeof(why)) < 0) {
            t->ev_n--; /* not fed */
            cq_log_error(SVC, "exchange_info_symbol_unreadable",
                         json_pack("{s:s,s:s}", "symbol", name, "why", why),
                         "exchangeInfo for %s cannot be used (%s): it is not traded", name, why);
            continue;
        }
        fed++;
    }
    failed = failed || !json_is_array(syms);
    if (failed) {
        cq_log_warn(SVC, "exchange_info_fetch_failed",
                    json_pack("{s:s,s:i,s:s}", "status",
                              rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), "code",
                              r.code, "msg", r.msg),
                    "GET /api/v3/exchangeInfo failed (%s): retrying",
                    rc < 0 ? cq_strerror(rc) : r.msg);
    } else {
        cq_log_info(SVC, "exchange_info_loaded", json_pack("{s:I}", "symbols", (json_int_t)fed),
                    "exchangeInfo loaded: filters of %zu symbols", fed);
    }
    struct cq_trader_event *done = ev_push(t, CQ_TRADER_EV_EXCHANGE_INFO_DONE);
    if (done != NULL) {
        done->failed = failed;
    }
    cq_rest_response_fini(&r);
}

static void act_fetch_open_orders(struct cq_trader *t)
{
    bool failed = false;
    if (!(t->mode == CQ_MODE_DRYRUN && !t->have_keys)) {
        struct cq_rest_response r = {0};
        int rc = cq_rest_call(t->rest, "GET", "/api/v3/openOrders", NULL, CQ_SEC_SIGNED, 80, &r);
        failed = rc < 0 || r.status != CQ_REST_OK || !json_is_array(r.body);
        for (size_t i = 0; !failed && i < json_array_size(r.body); i++) {
            if (ev_space(t) < 2) {
                failed = true; /* the core retries; the queue is full of answers */
                break;
            }
            struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_ORDER_UPDATE);
            char why[160] = "";
            if (cq_trader__parse_order(json_array_get(r.body, i), &ev->u.order, why, sizeof(why)) <
                0) {
                t->ev_n--;
                cq_log_warn(SVC, "open_order_unreadable", json_pack("{s:s}", "why", why),
                            "an open order cannot be read (%s): skipped", why);
            }
        }
        if (failed) {
            cq_log_warn(SVC, "open_orders_fetch_failed",
                        json_pack("{s:s,s:i,s:s}", "status",
                                  rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), "code",
                                  r.code, "msg", r.msg),
                        "GET /api/v3/openOrders failed (%s): retrying",
                        rc < 0 ? cq_strerror(rc) : r.msg);
        }
        cq_rest_response_fini(&r);
    }
    struct cq_trader_event *done = ev_push(t, CQ_TRADER_EV_OPEN_ORDERS_DONE);
    if (done != NULL) {
        done->failed = failed;
    }
}

static void act_fetch_mark(struct cq_trader *t, const struct cq_trader_action *a)
{
    struct cq_rest_params p;
    cq_rest_params_init(&p);
    cq_rest_params_add(&p, "symbol", a->u.ref.symbol);
    struct cq_rest_response r = {0};
    int rc = cq_rest_call(t->rest, "GET", "/api/v3/ticker/price", &p, CQ_SEC_NONE, 2, &r);
    char sym[CQ_SYMBOL_LEN], why[160] = "";
    cq_dec price;
    if (rc == 0 && r.status == CQ_REST_OK &&
        cq_trader__parse_ticker_price(r.body, sym, sizeof(sym), &price, why, sizeof(why)) == 0) {
        struct cq_trader_event *ev = ev_push(t, CQ_TRADER_EV_MARK_PRICE);
        if (ev != NULL) {
            cq_strlcpy(ev->u.mark.symbol, sym, sizeof(ev->u.mark.symbol));
            ev->u.mark.price = price;
        }
    } else {
        /* the core asks again after CQ_TRADER_MARK_MS; until then the
         * position keeps its last mark */
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&t->mark_rl, cq_time_mono_ms(), &suppressed)) {
            cq_log_warn(SVC, "mark_fetch_failed",
                        json_pack("{s:s,s:s,s:i,s:s,s:I}", "symbol", a->u.ref.symbol, "status",
                                  rc < 0 ? cq_strerror(rc) : cq_rest_status_name(r.status), "code",
                                  r.code, "why", why[0] != '\0' ? why : r.msg, "suppressed",
                                  (json_int_t)suppressed),
                        "GET /api/v3/ticker/price?symbol=%s failed (%s): the mark of the "
                        "position is not updated (asked again after CQ_TRADER_MARK_MS)",
                        a->u.ref.symbol, why[0] != '\0' ? why : r.msg);
        }
    }
    cq_rest_response_fini(&r);
}

static void perform(struct cq_trader *t, const struct cq_trader_action *a)
{
    switch (a->kind) {
    case CQ_TRADER_ACT_JOURNAL:
        act_journal(t, a);
        break;
    case CQ_TRADER_ACT_SEND_ORDER:
        act_send(t, a);
        break;
    case CQ_TRADER_ACT_QUERY_ORDER:
        act_query_or_cancel(t, a, false);
        break;
    case CQ_TRADER_ACT_CANCEL_ORDER:
        t->in_cancel = true;
        act_query_or_cancel(t, a, true);
        t->in_cancel = false;
        break;
    case CQ_TRADER_ACT_FETCH_ACCOUNT:
        act_fetch_account(t);
        break;
    case CQ_TRADER_ACT_FETCH_EXCHANGE_INFO:
        act_fetch_exchange_info(t);
        break;
    case CQ_TRADER_ACT_FETCH_OPEN_ORDERS:
        act_fetch_open_orders(t);
        break;
    case CQ_TRADER_ACT_FETCH_MARK:
        act_fetch_mark(t, a);
        break;
    }
    cq_service_heartbeat(t->svc); /* a slow exchange is not a stalled thread */
}

/* Feed one event and perform its actions in order; then feed the answers
 * they queued, in order, until none is left. frame_us: the closing frame's
 * stamp of a signal (0 otherwise). */
/* One event through the core, and its actions performed in order. */
static void feed_one(struct cq_trader *t, const struct cq_trader_event *ev, int64_t frame_us)
{
    int rc = cq_trader_core_on_event(t->core, ev, &t->acts);
    t->list_core_done_us = frame_us > 0 ? mono_us() : 0;
    t->list_appended_us = 0;
    t->list_durable_at_us = 0;
    if (rc < 0) {
        cq_log_error(SVC, "core_event_refused",
                     json_pack("{s:i,s:s}", "kind", (int)ev->kind, "error", cq_strerror(rc)),
                     "the decision core refused event kind %d (%s)", (int)ev->kind,
                     cq_strerror(rc));
    }
    if (cq_log_enabled(CQ_LOG_DEBUG)) {
        json_t *kinds = json_array();
        for (size_t i = 0; rc == 0 && i < t->acts.n; i++) {
            json_array_append_new(kinds, json_integer(t->acts.a[i].kind));
        }
        cq_log_debug(SVC, "core_event",
                     json_pack("{s:i,s:o}", "kind", (int)ev->kind, "actions", kinds),
                     "event %d -> %zu actions", (int)ev->kind, rc == 0 ? t->acts.n : 0);
    }
    t->skip_next_send = false;
    t->list_durable_us = 0;
    t->list_frame_us = frame_us;
    /* Log lines of the records before an order's send wait for the send
     * (not with the crash hook armed: its kill after the intent must find
     * them written, as before). */
    size_t send_at = t->acts.n;
    for (size_t i = 0; rc == 0 && i < t->acts.n && send_at == t->acts.n; i++) {
        if (t->acts.a[i].kind == CQ_TRADER_ACT_SEND_ORDER) {
            send_at = i;
        }
    }
    for (size_t i = 0; rc == 0 && i < t->acts.n; i++) {
        t->defer_logs = i < send_at && t->crash_point == CRASH_NONE;
        perform(t, &t->acts.a[i]);
    }
    flush_deferred(t);
    t->snapshot_dirty = true;
    cq_service_heartbeat(t->svc);
}

/* Feed the queued answers, oldest first, at most EVENTS_PER_STEP_MAX of
 * them: a core that kept asking for more (a bug) leaves the rest for the
 * next step instead of stalling the thread, and says so. */
static void drain(struct cq_trader *t)
{
    unsigned fed = 0;
    while (t->ev_n > 0 && fed < EVENTS_PER_STEP_MAX) {
        feed_one(t, &t->events[t->ev_head], 0);
        t->ev_head = (t->ev_head + 1) % TRADER_EVENTS_MAX;
        t->ev_n--;
        fed++;
    }
    if (t->ev_n > 0) {
        t->m.event_storms_total++;
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&t->storm_rl, cq_time_mono_ms(), &suppressed)) {
            cq_log_warn(SVC, "trader_event_storm",
                        json_pack("{s:i,s:I,s:i,s:I}", "fed", (int)fed, "left", (json_int_t)t->ev_n,
                                  "next_kind", (int)t->events[t->ev_head].kind, "suppressed",
                                  (json_int_t)suppressed),
                        "the core asked for %u exchange calls in one step; %zu answers wait "
                        "for the next step",
                        fed, t->ev_n);
        }
    }
}

/* Feed one event and perform its actions in order; then feed the answers
 * they queued, in order. frame_us: the closing frame's stamp of a signal
 * (0 otherwise). */
static void feed(struct cq_trader *t, const struct cq_trader_event *first, int64_t frame_us)
{
    feed_one(t, first, frame_us);
    drain(t);
}

static void feed_simple(struct cq_trader *t, enum cq_trader_event_kind kind)
{
    struct cq_trader_event ev;
    memset(&ev, 0, offsetof(struct cq_trader_event, u));
    ev.kind = kind;
    ev.now_ms = wall_ms(t);
    feed(t, &ev, 0);
}

/* ---- the restart path ------------------------------------------------------------------ */

struct replay_ctx {
    struct cq_trader *t;
    uint64_t records, refused;
};

static int replay_one(void *ctx, const struct cq_journal_record *rec)
{
    struct replay_ctx *rc = ctx;
    rc->records++;
    int r =
        cq_trader_core_replay(rc->t->core, rec->type, rec->scope, rec->payload, rec->payload_len);
    if (r < 0) {
        if (++rc->refused <= 5) { /* the first few, named */
            const char *name = cq_rec_type_name(rec->type);
            cq_log_warn(SVC, "trader_replay_refused",
                        json_pack("{s:I,s:s,s:s,s:s}", "seq", (json_int_t)rec->seq, "type",
                                  name != NULL ? name : "?", "scope", rec->scope, "error",
                                  cq_strerror(r)),
                        "the decision core refused journal record %" PRIu64 " (%s %s): %s",
                        rec->seq, name != NULL ? name : "?", rec->scope, cq_strerror(r));
        }
    }
    return 0;
}

static void recover(struct cq_trader *t)
{
    uint64_t from = 0;
    json_t *state = cq_journal_state_json(t->journal);
    json_t *ck = json_object_get(state, "trader_checkpoint_seq");
    if (json_is_integer(ck) && json_integer_value(ck) > 0) {
        from = (uint64_t)json_integer_value(ck);
    }
    json_decref(state);
    struct replay_ctx rc = {t, 0, 0};
    struct cq_err err;
    cq_err_clear(&err);
    int64_t t0 = cq_time_mono_ms();
    int r =
        cq_journal_read_dir(t->journal_dir, NULL, from > 0 ? from - 1 : 0, replay_one, &rc, &err);
    if (r == -CQ_ENOTFOUND && from > 0) {
        cq_log_warn(SVC, "trader_checkpoint_pruned", json_pack("{s:I}", "seq", (json_int_t)from),
                    "the trader checkpoint at seq %" PRIu64 " was pruned: replaying what is "
                    "kept; the reconcile with the exchange corrects the rest",
                    from);
        rc.records = rc.refused = 0;
        r = cq_journal_read_dir(t->journal_dir, NULL, 0, replay_one, &rc, &err);
    }
    if (r < 0) {
        cq_log_error(SVC, "trader_recovery_failed",
                     json_pack("{s:s,s:s}", "error", err.message, "hint", err.hint),
                     "reading the journal for the trader failed (%s): starting from the "
                     "exchange's state (reconcile)",
                     err.message);
    }
    cq_log_info(SVC, "trader_recovered",
                json_pack("{s:I,s:I,s:I,s:I}", "checkpoint_seq", (json_int_t)from, "records",
                          (json_int_t)rc.records, "ignored", (json_int_t)rc.refused, "ms",
                          (json_int_t)(cq_time_mono_ms() - t0)),
                "trader state recovered from the journal: %" PRIu64 " records from seq %" PRIu64,
                rc.records, from);
    feed_simple(t, CQ_TRADER_EV_RECOVERED);
}

/* ---- snapshot and health --------------------------------------------------------------- */

static json_t *positions_json(const struct cq_trader *t)
{
    const struct cq_trader_position *ps;
    size_t n = cq_trader_core_positions(t->core, &ps);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct cq_trader_position *p = &ps[i];
        json_array_append_new(
            a, json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s}", "symbol", p->symbol, "qty",
                         jdec(p->qty), "avg_entry", jdec(p->avg_entry), "cost", jdec(p->cost),
                         "realized_pnl", jdec(p->realized_pnl), "unrealized_pnl",
                         jdec(p->unrealized_pnl), "fees", jdec(p->fees), "mark", jdec(p->mark),
                         "entry_client_order_id", p->entry_client_id));
    }
    return a;
}

static json_t *orders_json(const struct cq_trader *t)
{
    const struct cq_trader_order *os;
    size_t n = cq_trader_core_orders(t->core, &os);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct cq_trader_order *o = &os[i];
        json_array_append_new(
            a, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I}",
                         "client_order_id", o->client_id, "signal_id", o->signal_id, "symbol",
                         o->symbol, "side", side_name(o->side), "type",
                         o->type == CQ_TRADER_MARKET ? "MARKET" : "LIMIT", "purpose",
                         purpose_name(o->purpose), "state", state_name(o->state), "qty",
                         jdec(o->qty), "quote_qty", jdec(o->quote_qty), "price", jdec(o->price),
                         "executed_qty", jdec(o->executed_qty), "cum_quote", jdec(o->cum_quote),
                         "order_id", (json_int_t)o->order_id, "created_ms",
                         (json_int_t)o->created_ms, "updated_ms", (json_int_t)o->updated_ms));
    }
    /* then the ones closed lately, newest first */
    for (size_t k = 1; k <= RECENT_ORDERS_MAX; k++) {
        const json_t *r = t->recent[(t->recent_next + RECENT_ORDERS_MAX - k) % RECENT_ORDERS_MAX];
        if (r != NULL) {
            json_array_append_new(a, json_deep_copy(r));
        }
    }
    return a;
}

static json_t *quarantine_json(const struct cq_trader *t)
{
    json_t *a = json_array();
    const char *sym, *reason;
    int64_t until;
    /* the count, whatever i is; the i-th entry's fields when i < count */
    size_t n = cq_trader_core_quarantined(t->core, 0, &sym, &reason, &until);
    for (size_t i = 0; i < n; i++) {
        sym = NULL;
        reason = NULL;
        until = 0;
        (void)cq_trader_core_quarantined(t->core, i, &sym, &reason, &until);
        if (sym == NULL) {
            continue;
        }
        json_array_append_new(a, json_pack("{s:s,s:s,s:I}", "symbol", sym, "reason",
                                           reason != NULL ? reason : "", "until_ms",
                                           (json_int_t)until));
    }
    return a;
}

static json_t *risk_json(const struct cq_trader *t, const struct cq_trader_status *st)
{
    return json_pack(
        "{s:s,s:b,s:{s:I,s:o,s:o,s:o,s:I,s:b,s:b},s:{s:I,s:o,s:o,s:I,s:I,s:I},s:o}", "reason",
        cq_trader_reason_name(st->reason), "ready", st->ready, "limits", "max_open_positions",
        (json_int_t)cq_config_int(t->cfg, CQ_CFG_RISK_MAX_OPEN_POSITIONS), "max_position_notional",
        jdec(cq_config_dec(t->cfg, CQ_CFG_RISK_MAX_POSITION_NOTIONAL)), "max_total_exposure",
        jdec(cq_config_dec(t->cfg, CQ_CFG_RISK_MAX_TOTAL_EXPOSURE)), "max_daily_loss",
        jdec(cq_config_dec(t->cfg, CQ_CFG_RISK_MAX_DAILY_LOSS)), "max_orders_per_minute",
        (json_int_t)cq_config_int(t->cfg, CQ_CFG_RISK_MAX_ORDERS_PER_MINUTE), "trading_paused",
        st->reason == CQ_TRADER_TRADING_PAUSED, "kill_switch", st->reason == CQ_TRADER_KILL_SWITCH,
        "usage", "open_positions", (json_int_t)st->positions, "total_exposure",
        jdec(st->total_exposure), "daily_realized_pnl", jdec(st->daily_realized_pnl),
        "orders_last_minute", (json_int_t)st->orders_last_minute, "open_orders",
        (json_int_t)st->open_orders, "unknown_orders", (json_int_t)st->unknown_orders,
        "quarantined", quarantine_json(t));
}

static void publish_snapshot(struct cq_trader *t, const struct cq_trader_status *st)
{
    char ts[CQ_RFC3339_US_LEN];
    json_t *snap = json_pack("{s:o,s:o,s:o,s:s}", "positions", positions_json(t), "orders",
                             orders_json(t), "risk", risk_json(t, st), "updated_at",
                             cq_time_rfc3339_us(cq_clock_wall_us(t->clock), ts, sizeof(ts)));
    if (snap == NULL) {
        return;
    }
    pthread_mutex_lock(&t->snap_lock);
    json_t *old = t->snapshot;
    t->snapshot = snap;
    pthread_mutex_unlock(&t->snap_lock);
    json_decref(old);
}

json_t *cq_trader_snapshot_json(struct cq_trader *t, const char *what)
{
    if (t == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&t->snap_lock);
    json_t *src = t->snapshot;
    if (src != NULL && what != NULL) {
        src = json_object_get(src, what);
    }
    json_t *copy = src != NULL ? json_deep_copy(src) : NULL;
    pthread_mutex_unlock(&t->snap_lock);
    return copy;
}

static enum cq_health_status health_status(const struct cq_trader_status *st)
{
    switch (st->reason) {
    case CQ_TRADER_READY_OK:
        return CQ_HEALTH_OK;
    case CQ_TRADER_TRADING_PAUSED:
    case CQ_TRADER_DAILY_LOSS_LIMIT:
    case CQ_TRADER_SYMBOL_QUARANTINED:
    case CQ_TRADER_KILL_SWITCH:
        return CQ_HEALTH_DEGRADED;
    case CQ_TRADER_JOURNAL_UNAVAILABLE:
    case CQ_TRADER_EXCHANGE_BANNED:
        return CQ_HEALTH_DOWN;
    default:
        return st->ready ? CQ_HEALTH_OK : CQ_HEALTH_STARTING;
    }
}

static const char *reason_detail(enum cq_trader_reason r)
{
    switch (r) {
    case CQ_TRADER_READY_OK:
        return "trading";
    case CQ_TRADER_LOADING_EXCHANGE_INFO:
        return "loading exchangeInfo (symbol filters)";
    case CQ_TRADER_AWAITING_BALANCE:
        return "waiting for the account balance (retrying with backoff)";
    case CQ_TRADER_RECONCILING:
        return "reconciling orders and balances with the exchange";
    case CQ_TRADER_JOURNAL_UNAVAILABLE:
        return "the journal refuses records: nothing is sent";
    case CQ_TRADER_EXCHANGE_BANNED:
        return "the exchange banned this IP (418): nothing is sent until it ends";
    case CQ_TRADER_KILL_SWITCH:
        return "kill switch on: our orders canceled, nothing is sent";
    case CQ_TRADER_TRADING_PAUSED:
        return "paused: no new entries; exits and stops still run";
    case CQ_TRADER_DAILY_LOSS_LIMIT:
        return "daily loss limit reached: no new entries until midnight UTC";
    case CQ_TRADER_SYMBOL_QUARANTINED:
        return "some symbols are quarantined (details.quarantined)";
    }
    return "";
}

static void publish_health(struct cq_trader *t, const struct cq_trader_status *st)
{
    struct cq_rest_budget b;
    cq_rest_client_budget(t->rest, &b);
    enum cq_trader_reason reason = st->reason;
    bool ready = st->ready;
    if (t->journal_broken && reason != CQ_TRADER_JOURNAL_UNAVAILABLE) {
        reason = CQ_TRADER_JOURNAL_UNAVAILABLE; /* seen by the shell first */
        ready = false;
    }
    struct cq_trader_status shown = *st;
    shown.reason = reason;
    char detail[CQ_HEALTH_DETAIL_MAX];
    snprintf(detail, sizeof(detail), "%s%s%s", reason_detail(reason), t->journal_broken ? ": " : "",
             t->journal_broken ? t->journal_error : "");
    json_t *details = json_pack(
        "{s:s,s:I,s:I,s:I,s:o,s:o,s:o,s:I,s:b,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:s,s:o}",
        "mode", cq_mode_name(t->mode), "open_orders", (json_int_t)st->open_orders, "unknown_orders",
        (json_int_t)st->unknown_orders, "positions", (json_int_t)st->positions, "quarantined",
        quarantine_json(t), "daily_realized_pnl", jdec(st->daily_realized_pnl), "total_exposure",
        jdec(st->total_exposure), "orders_last_minute", (json_int_t)st->orders_last_minute,
        "user_stream_up", st->stream_up, "counters", "signals",
        (json_int_t)t->m.signals_received_total, "orders_sent", (json_int_t)t->m.orders_sent_total,
        "risk_refusals", (json_int_t)st->risk_refusals_total, "filter_refusals",
        (json_int_t)st->filter_refusals_total, "unknown_outcomes",
        (json_int_t)st->unknown_outcomes_total, "duplicate_signals",
        (json_int_t)st->duplicate_signals_total, "reconcile_drifts",
        (json_int_t)st->reconcile_drifts_total, "last_signal_id", t->last_signal_id, "rest",
        cq_rest_budget_json(&b));
    json_object_set_new(json_object_get(details, "counters"), "balance_rechecks",
                        json_integer((json_int_t)st->balance_rechecks_total));
    json_object_set_new(json_object_get(details, "counters"), "marks_requested",
                        json_integer((json_int_t)st->marks_requested_total));
    /* what the skeleton published, kept for the operators' (and tests') jq */
    json_object_set_new(
        details, "signals",
        json_pack("{s:I,s:I,s:s}", "received", (json_int_t)t->m.signals_received_total, "test",
                  (json_int_t)t->m.test_signals_received_total, "last_id", t->last_signal_id));
    json_object_set_new(details, "user_events",
                        json_pack("{s:I,s:I,s:I,s:I}", "execution_reports",
                                  (json_int_t)t->m.execution_reports_total, "account_positions",
                                  (json_int_t)t->m.account_positions_total, "other",
                                  (json_int_t)t->m.other_user_events_total, "gaps",
                                  (json_int_t)t->m.user_stream_gaps_total));
    cq_health_publish(t->board, CQ_SVC_TRADER, health_status(&shown), ready,
                      cq_trader_reason_name(reason), detail, details);
}

static void publish_metrics(struct cq_trader *t, const struct cq_trader_status *st)
{
    t->m.risk_refusals_total = st->risk_refusals_total;
    t->m.filter_refusals_total = st->filter_refusals_total;
    if (st->unknown_outcomes_total > t->m.unknown_outcomes_total) {
        t->m.unknown_outcomes_total = st->unknown_outcomes_total;
    }
    t->m.open_orders = st->open_orders;
    t->m.positions = st->positions;
    t->m.quarantined_symbols = st->quarantined;
    t->m.commands_refused_total = atomic_load_explicit(&t->commands_refused, memory_order_relaxed);
    cq_health_set_trader_metrics(t->board, &t->m);
}

/* ---- commands -------------------------------------------------------------------------- */

static const char *command_name(enum cq_trader_operator_cmd c)
{
    static const char *const names[] = {"pause", "resume", "kill", "unkill", "clear_quarantine"};
    return (size_t)c < CQ_ARRAY_LEN(names) ? names[c] : "?";
}

int cq_trader_command_parse(const char *name, enum cq_trader_operator_cmd *out)
{
    static const struct {
        const char *name;
        enum cq_trader_operator_cmd cmd;
    } map[] = {{"pause", CQ_TRADER_CMD_PAUSE},
               {"resume", CQ_TRADER_CMD_RESUME},
               {"kill", CQ_TRADER_CMD_KILL},
               {"unkill", CQ_TRADER_CMD_UNKILL},
               {"clear_quarantine", CQ_TRADER_CMD_CLEAR_QUARANTINE}};
    for (size_t i = 0; name != NULL && i < CQ_ARRAY_LEN(map); i++) {
        if (strcmp(name, map[i].name) == 0) {
            *out = map[i].cmd;
            return 0;
        }
    }
    return -CQ_EINVAL;
}

static bool symbol_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > CQ_SYMBOL_MAX_CHARS) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) {
            return false;
        }
    }
    return true;
}

int cq_trader_command(struct cq_trader *t, enum cq_trader_operator_cmd cmd, const char *symbol)
{
    if (cmd == CQ_TRADER_CMD_CLEAR_QUARANTINE && !symbol_ok(symbol)) {
        return -CQ_EINVAL;
    }
    pthread_mutex_lock(&t->cmd_lock);
    if (t->cmd_n == CQ_TRADER_COMMANDS_MAX) {
        pthread_mutex_unlock(&t->cmd_lock);
        atomic_fetch_add_explicit(&t->commands_refused, 1, memory_order_relaxed);
        return -CQ_EFULL;
    }
    struct cmd *c = &t->cmds[(t->cmd_head + t->cmd_n) % CQ_TRADER_COMMANDS_MAX];
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    if (symbol != NULL) {
        cq_strlcpy(c->symbol, symbol, sizeof(c->symbol));
    }
    t->cmd_n++;
    pthread_mutex_unlock(&t->cmd_lock);
    cq_doorbell_notify(&t->bell);
    return 0;
}

static bool cmd_pop(struct cq_trader *t, struct cmd *out)
{
    pthread_mutex_lock(&t->cmd_lock);
    bool have = t->cmd_n > 0;
    if (have) {
        *out = t->cmds[t->cmd_head];
        t->cmd_head = (t->cmd_head + 1) % CQ_TRADER_COMMANDS_MAX;
        t->cmd_n--;
    }
    pthread_mutex_unlock(&t->cmd_lock);
    return have;
}

void cq_trader_reconfigure(struct cq_trader *t, const struct cq_config *cfg)
{
    if (t == NULL || cfg == NULL) {
        return;
    }
    bool paused = cq_config_onoff(cfg, CQ_CFG_TRADING_PAUSED);
    bool kill = cq_config_onoff(cfg, CQ_CFG_KILL_SWITCH);
    if (paused != t->applied_paused &&
        cq_trader_command(t, paused ? CQ_TRADER_CMD_PAUSE : CQ_TRADER_CMD_RESUME, NULL) == 0) {
        t->applied_paused = paused;
    }
    if (kill != t->applied_kill &&
        cq_trader_command(t, kill ? CQ_TRADER_CMD_KILL : CQ_TRADER_CMD_UNKILL, NULL) == 0) {
        t->applied_kill = kill;
    }
}

/* ---- the step -------------------------------------------------------------------------- */

static void take_user_event(struct cq_trader *t, const struct cq_user_event *ue)
{
    struct cq_trader_event ev;
    char why[200] = "";
    enum cq_trader__user_kind k =
        cq_trader__parse_user_event(ue->json, ue->len, &ev, why, sizeof(why));
    switch (k) {
    case CQ_TRADER__USER_ORDER:
        t->m.execution_reports_total++;
        break;
    case CQ_TRADER__USER_BALANCE:
        t->m.account_positions_total++;
        break;
    case CQ_TRADER__USER_GAP:
        t->m.user_stream_gaps_total++;
        cq_log_warn(SVC, "user_stream_gap",
                    json_pack("{s:I}", "gaps", (json_int_t)t->m.user_stream_gaps_total),
                    "user data stream gap: reconciling orders and balances over REST");
        break;
    case CQ_TRADER__USER_OTHER:
        t->m.other_user_events_total++;
        return;
    case CQ_TRADER__USER_BAD: {
        t->m.other_user_events_total++;
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&t->bad_event_rl, cq_time_mono_ms(), &suppressed)) {
            cq_log_warn(SVC, "user_event_unreadable",
                        json_pack("{s:s,s:I}", "why", why, "suppressed", (json_int_t)suppressed),
                        "a user data event cannot be read (%s): ignored; the periodic reconcile "
                        "covers it",
                        why);
        }
        return;
    }
    }
    ev.now_ms = wall_ms(t);
    feed(t, &ev, 0);
    if (k == CQ_TRADER__USER_GAP) {
        /* the feeder sends the gap once the new subscription stands: the
         * stream is up again (the core reconciles what it missed) */
        feed_simple(t, CQ_TRADER_EV_STREAM_UP);
    }
}

/* The feeder says whether the user data stream is subscribed (its health
 * record): when it goes down the core is told (STREAM_GAP: it polls open
 * orders and reconciles until the stream is back), when it comes back
 * STREAM_UP (the feeder's own userStreamGap follows and reconciles). */
static void check_user_stream(struct cq_trader *t, int64_t now_mono)
{
    if (now_mono - t->last_stream_check_ms < STREAM_CHECK_EVERY_MS) {
        return;
    }
    t->last_stream_check_ms = now_mono;
    json_t *rec = cq_health_record_json(t->board, CQ_SVC_FEEDER);
    json_t *sub = json_object_get(json_object_get(json_object_get(rec, "details"), "user_stream"),
                                  "subscribed");
    int now = json_is_boolean(sub) ? json_is_true(sub) : -1;
    json_decref(rec);
    if (now < 0 || now == t->feeder_stream) {
        return;
    }
    int before = t->feeder_stream;
    t->feeder_stream = now;
    if (now == 0 && before == 1) {
        cq_log_warn(SVC, "user_stream_down", NULL,
                    "the user data stream is down: polling open orders every %lld ms until it "
                    "is back",
                    (long long)cq_config_int(t->cfg, CQ_CFG_TRADER_POLL_MS));
        feed_simple(t, CQ_TRADER_EV_STREAM_GAP);
    } else if (now == 1 && before == 0) {
        feed_simple(t, CQ_TRADER_EV_STREAM_UP);
    }
}

static void tick(struct cq_trader *t)
{
    t->last_tick_ms = cq_time_mono_ms();
    feed_simple(t, CQ_TRADER_EV_TICK);
}

static int trader_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_trader *t = ctx;
    (void)now_mono_ms;
    t->step_mono_us = mono_us();
    if (!t->recovered) {
        t->recovered = true;
        recover(t);
        tick(t);
    }
    drain(t); /* answers left over by a storm */
    struct cmd c;
    while (cmd_pop(t, &c)) {
        struct cq_trader_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.kind = CQ_TRADER_EV_OPERATOR;
        ev.now_ms = wall_ms(t);
        ev.u.op.cmd = c.cmd;
        cq_strlcpy(ev.u.op.symbol, c.symbol, sizeof(ev.u.op.symbol));
        t->m.commands_total++;
        cq_log_info(SVC, "operator_command",
                    json_pack("{s:s,s:s}", "command", command_name(c.cmd), "symbol", c.symbol),
                    "operator command %s %s applied", command_name(c.cmd), c.symbol);
        feed(t, &ev, 0);
    }
    struct cq_trader_event sev;
    memset(&sev, 0, offsetof(struct cq_trader_event, u));
    while (t->signals != NULL && cq_spsc_pop(t->signals, &sev.u.signal)) {
        if (sev.u.signal.frame_mono_us > 0) {
            /* woke for it; or, already awake when it came, took it now */
            t->list_sig = sev.u.signal;
            t->list_woke_us =
                t->step_mono_us >= sev.u.signal.pushed_mono_us ? t->step_mono_us : mono_us();
        }
        t->m.signals_received_total++;
        t->m.test_signals_received_total += sev.u.signal.test;
        cq_strlcpy(t->last_signal_id, sev.u.signal.id, sizeof(t->last_signal_id));
        sev.kind = CQ_TRADER_EV_SIGNAL;
        sev.failed = false;
        sev.now_ms = wall_ms(t);
        feed(t, &sev, sev.u.signal.frame_mono_us);
    }
    struct cq_user_event ue;
    while (t->user_events != NULL && cq_spsc_pop(t->user_events, &ue)) {
        take_user_event(t, &ue);
    }
    int64_t real_now = cq_time_mono_ms();
    if (real_now - t->last_tick_ms >= TICK_EVERY_MS) {
        tick(t);
    }
    check_user_stream(t, real_now);
    struct cq_trader_status st;
    cq_trader_core_status(t->core, &st);
    if (t->snapshot_dirty && real_now - t->last_snapshot_ms >= SNAPSHOT_EVERY_MS) {
        t->snapshot_dirty = false;
        t->last_snapshot_ms = real_now;
        publish_snapshot(t, &st);
    }
    publish_metrics(t, &st);
    if (real_now - t->last_health_ms >= HEALTH_EVERY_MS) {
        t->last_health_ms = real_now;
        publish_health(t, &st);
    }
    return 0;
}

/* After arming the doorbell: anything in either ring or the command queue? */
static bool trader_has_work(void *ctx)
{
    struct cq_trader *t = ctx;
    if (t->ev_n > 0) {
        return true;
    }
    pthread_mutex_lock(&t->cmd_lock);
    bool cmds = t->cmd_n > 0;
    pthread_mutex_unlock(&t->cmd_lock);
    return cmds || (t->signals != NULL && cq_spsc_peek(t->signals) != NULL) ||
           (t->user_events != NULL && cq_spsc_peek(t->user_events) != NULL);
}

static int64_t trader_next_timer_ms(void *ctx, int64_t now_mono_ms)
{
    struct cq_trader *t = ctx;
    (void)now_mono_ms;
    int64_t now = cq_time_mono_ms();
    int64_t wait = t->last_health_ms + HEALTH_EVERY_MS - now;
    int64_t tick_wait = t->last_tick_ms + TICK_EVERY_MS - now;
    if (tick_wait < wait) {
        wait = tick_wait;
    }
    if (t->snapshot_dirty) {
        int64_t snap_wait = t->last_snapshot_ms + SNAPSHOT_EVERY_MS - now;
        if (snap_wait < wait) {
            wait = snap_wait;
        }
    }
    return wait < 0 ? 0 : wait;
}

/* The supervisor's stop request (its thread): abort REST I/O in flight. */
static void trader_stop_requested(void *ctx)
{
    struct cq_trader *t = ctx;
    atomic_store(&t->io_abort, true);
}

static const struct cq_service_ops trader_ops = {
    .id = CQ_SVC_TRADER,
    .tick_ms = SLEEP_MAX_MS, /* with the doorbell: the longest sleep */
    .step = trader_step,
    .on_stop = NULL,
    .stop_requested = trader_stop_requested,
    .has_work = trader_has_work,
    .next_timer_ms = trader_next_timer_ms,
};

/* ---- construction ---------------------------------------------------------------------- */

static struct cq_trader_core_config core_config(const struct cq_config *cfg)
{
    int64_t poll = cq_config_int(cfg, CQ_CFG_TRADER_POLL_MS);
    struct cq_trader_core_config c = {
        .mode = cq_config_mode(cfg),
        .order_quote = cq_config_dec(cfg, CQ_CFG_ORDER_QUOTE),
        .entry_type = strcmp(cq_config_str(cfg, CQ_CFG_ORDER_TYPE), "limit") == 0
                          ? CQ_TRADER_LIMIT
                          : CQ_TRADER_MARKET,
        .stop_loss_pct = cq_config_dec(cfg, CQ_CFG_STOP_LOSS_PCT),
        .take_profit_pct = cq_config_dec(cfg, CQ_CFG_TAKE_PROFIT_PCT),
        .insufficient_scale = cq_config_dec(cfg, CQ_CFG_INSUFFICIENT_SCALE),
        .insufficient_retries = (unsigned)cq_config_int(cfg, CQ_CFG_INSUFFICIENT_RETRIES),
        .quarantine_ms = cq_config_int(cfg, CQ_CFG_QUARANTINE_S) * 1000,
        .unknown_query_every_ms = poll,
        .reconcile_every_ms = cq_config_int(cfg, CQ_CFG_TRADER_RECONCILE_MS),
        .poll_orders_every_ms = poll,
        .account_retry_min_ms = 500,
        .account_retry_max_ms = 30000,
        .exchange_info_every_ms = cq_config_int(cfg, CQ_CFG_TRADER_EXCHANGE_INFO_MS),
        .mark_every_ms = cq_config_int(cfg, CQ_CFG_TRADER_MARK_MS),
        .risk =
            {
                .max_open_positions = (unsigned)cq_config_int(cfg, CQ_CFG_RISK_MAX_OPEN_POSITIONS),
                .max_position_notional = cq_config_dec(cfg, CQ_CFG_RISK_MAX_POSITION_NOTIONAL),
                .max_total_exposure = cq_config_dec(cfg, CQ_CFG_RISK_MAX_TOTAL_EXPOSURE),
                .max_daily_loss = cq_config_dec(cfg, CQ_CFG_RISK_MAX_DAILY_LOSS),
                .max_orders_per_minute =
                    (unsigned)cq_config_int(cfg, CQ_CFG_RISK_MAX_ORDERS_PER_MINUTE),
                .trading_paused = cq_config_onoff(cfg, CQ_CFG_TRADING_PAUSED),
                .kill_switch = cq_config_onoff(cfg, CQ_CFG_KILL_SWITCH),
            },
    };
    return c;
}

struct cq_trader *cq_trader_new(const struct cq_trader_options *o, struct cq_err *err)
{
    if (o == NULL || o->cfg == NULL || o->board == NULL || o->journal == NULL ||
        o->journal_dir == NULL || o->rest_url == NULL) {
        cq_err_set(err, CQ_EINVAL, 0, "pass cfg, board, journal, journal_dir and rest_url",
                   "cq_trader_new: an option is missing");
        return NULL;
    }
    struct cq_trader *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the trader");
        return NULL;
    }
    pthread_mutex_init(&t->cmd_lock, NULL);
    pthread_mutex_init(&t->snap_lock, NULL);
    t->cfg = cq_config_ref(o->cfg);
    t->board = o->board;
    t->user_events = o->user_events;
    t->signals = o->signals;
    t->journal = o->journal;
    t->clock = o->clock != NULL ? o->clock : cq_clock_system();
    t->mode = cq_config_mode(o->cfg);
    t->have_keys = o->api_key != NULL && o->api_key[0] != '\0' && o->api_secret != NULL &&
                   o->api_secret[0] != '\0';
    t->applied_paused = cq_config_onoff(o->cfg, CQ_CFG_TRADING_PAUSED);
    t->applied_kill = cq_config_onoff(o->cfg, CQ_CFG_KILL_SWITCH);
    t->feeder_stream = -1;
    t->bad_event_rl.window_ms = 10000;
    t->bad_event_rl.burst = 5;
    t->storm_rl.window_ms = 10000;
    t->storm_rl.burst = 3;
    t->mark_rl.window_ms = 60000;
    t->mark_rl.burst = 3;
    t->journal_dir = strdup(o->journal_dir);
    t->events = malloc(sizeof(*t->events) * TRADER_EVENTS_MAX);
    if (t->journal_dir == NULL || t->events == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the trader's queues");
        cq_trader_free(t);
        return NULL;
    }
    struct cq_trader_core_config cc = core_config(o->cfg);
    t->core = cq_trader_core_new(&cc, err);
    if (t->core == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    /* Per-request timeouts below the watchdog's stall limit: the thread
     * heartbeats between requests, not inside one. */
    int64_t stall = cq_config_int(o->cfg, CQ_CFG_WATCHDOG_STALL_MS);
    int64_t timeout = cq_config_int(o->cfg, CQ_CFG_EXCHANGE_TIMEOUT_MS);
    if (timeout > stall / 2) {
        timeout = stall / 2;
    }
    struct cq_rest_options ro = {
        .base_url = o->rest_url,
        .api_key = t->have_keys ? o->api_key : NULL,
        .api_secret = t->have_keys ? o->api_secret : NULL,
        .service = SVC,
        .connect_timeout_ms = cq_config_int(o->cfg, CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS),
        .total_timeout_ms = timeout,
        .weight_headroom_pct = (unsigned)cq_config_int(o->cfg, CQ_CFG_EXCHANGE_WEIGHT_HEADROOM_PCT),
        .max_retries = 1,
        .retry_budget_ms = timeout / 2,
        .clock = o->clock,
        .abort = &t->io_abort,
    };
    t->rest = cq_rest_client_new(&ro, err);
    if (t->rest == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    /* The first snapshot now (no other thread has the core yet): the API
     * answers 200 with empty lists while the trader waits for its start
     * stage, rather than 503. */
    struct cq_trader_status st0;
    cq_trader_core_status(t->core, &st0);
    publish_snapshot(t, &st0);
    t->last_health_ms = cq_time_mono_ms() - HEALTH_EVERY_MS; /* first step publishes */
    t->last_tick_ms = cq_time_mono_ms();
    t->svc = cq_service_new(&trader_ops, t, o->board, NULL, err);
    if (t->svc == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    if (cq_doorbell_init(&t->bell, err) < 0) {
        cq_trader_free(t);
        return NULL;
    }
    t->bell_ready = true;
    /* One doorbell for both input rings and the command queue. */
    if (t->signals != NULL) {
        cq_spsc_set_consumer_bell(t->signals, &t->bell);
    }
    if (t->user_events != NULL) {
        cq_spsc_set_consumer_bell(t->user_events, &t->bell);
    }
    cq_service_set_doorbell(t->svc, &t->bell);
    crash_hook_arm(t);
    cq_version_log_banner(SVC, cq_mode_name(t->mode), cq_config_hash(o->cfg),
                          json_pack("{s:s,s:b,s:s,s:b}", "mode", cq_mode_name(t->mode),
                                    "orders_enabled", t->mode != CQ_MODE_DRYRUN, "venue",
                                    o->rest_url, "keys", t->have_keys));
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
    cq_rest_client_free(t->rest);
    cq_trader_core_free(t->core);
    json_decref(t->snapshot);
    for (size_t i = 0; i < RECENT_ORDERS_MAX; i++) {
        json_decref(t->recent[i]);
    }
    for (size_t i = 0; i < INTENTS_KEPT; i++) {
        json_decref(t->intents[i]);
    }
    free(t->events);
    free(t->journal_dir);
    pthread_mutex_destroy(&t->cmd_lock);
    pthread_mutex_destroy(&t->snap_lock);
    cq_config_unref(t->cfg);
    free(t);
}

struct cq_service *cq_trader_service(struct cq_trader *t)
{
    return t->svc;
}
