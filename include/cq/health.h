/*
 * health.h — the health board: one canonical health record per service.
 *
 * Record (JSON Schema openapi/schemas/health.v1.json):
 *   {"service":"feeder","status":"starting|ok|degraded|down|stopped",
 *    "ready":false,"reason":"ws_connecting","detail":"…",
 *    "updated_at":"RFC 3339 UTC","freshness_ms":123,"details":{…}}
 *
 * Each service publishes only its own record (its owner thread calls
 * cq_health_publish); the supervisor's watchdog may overwrite a stalled
 * service's record with status down / reason "stalled". Readers (admin API,
 * supervisor's file writer) get deep copies. The board is guarded by one
 * mutex; every call is safe from any thread and never blocks on I/O except
 * cq_health_write_files().
 *
 * Every change of a record's `ready` flag is logged once as event
 * "readiness_changed" with service, from, to, reason.
 */
#ifndef CQ_HEALTH_H
#define CQ_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/clock.h"
#include "cq/common.h"

enum cq_service_id {
    CQ_SVC_FEEDER,
    CQ_SVC_ARES,
    CQ_SVC_TRADER,
    CQ_SVC_JOURNAL,
    CQ_SVC_API,
    CQ_SVC__COUNT
};

enum cq_health_status {
    CQ_HEALTH_STARTING,
    CQ_HEALTH_OK,
    CQ_HEALTH_DEGRADED,
    CQ_HEALTH_DOWN,
    CQ_HEALTH_STOPPED
};

#define CQ_HEALTH_REASON_MAX 64  /* stable snake_case code */
#define CQ_HEALTH_DETAIL_MAX 256 /* one sentence for people */

const char *cq_health_service_name(enum cq_service_id id);  /* "feeder" … */
const char *cq_health_status_name(enum cq_health_status s); /* "starting" … */

struct cq_health_board;

/* clock: NULL = system clock (borrowed). All records start as
 * status starting, ready false, reason "not_started". */
struct cq_health_board *cq_health_board_new(const struct cq_clock *clock, struct cq_err *err);
void cq_health_board_free(struct cq_health_board *board);

/* Publish a service's record. reason must be snake_case ("" for none);
 * detail may be NULL. details (may be NULL = {}) is stolen. Also counts as a
 * freshness mark unless cq_health_set_fresh() has been used for this
 * service (services with real data age set it themselves). */
void cq_health_publish(struct cq_health_board *board, enum cq_service_id id,
                       enum cq_health_status status, bool ready, const char *reason,
                       const char *detail, json_t *details);

/* Declare when the data the service acts on was last fresh (monotonic ms);
 * freshness_ms in the record is now minus this. */
void cq_health_set_fresh(struct cq_health_board *board, enum cq_service_id id,
                         int64_t fresh_at_mono_ms);

/* Read one field without copying the record. */
bool cq_health_is_ready(struct cq_health_board *board, enum cq_service_id id);
enum cq_health_status cq_health_status_of(struct cq_health_board *board, enum cq_service_id id);

/* A copy of one record as JSON (new reference). */
json_t *cq_health_record_json(struct cq_health_board *board, enum cq_service_id id);
/* {"feeder":{record},"ares":{…},…} (new reference). */
json_t *cq_health_services_json(struct cq_health_board *board);

/* True when every service is ready. If reasons is not NULL it receives a new
 * array [{"service","reason","detail"}] of the services that are not. */
bool cq_health_all_ready(struct cq_health_board *board, json_t **reasons);

/* Write DATA_DIR/health/<service>.json for each service atomically
 * (tmp + rename). Called by the supervisor once a second. */
int cq_health_write_files(struct cq_health_board *board, const char *dir,
                          struct cq_err *err) CQ_WUR;

/* ---- typed counters for /metrics ---------------------------------------------
 * Each service hands the board a copy of its counters whenever it publishes
 * its record (cq_health_set_*_metrics; the service's own thread). The admin
 * API's /metrics reads them back with cq_health_get_metrics() as plain
 * struct fields: no lookup by string key, so a renamed counter is a compile
 * error rather than a series that silently renders 0. Fields named *_total
 * count since the process started and never decrease; the others are
 * gauges. Before a service's first publish its counters read 0. */

struct cq_feeder_metrics {
    uint64_t messages_total;            /* market messages decoded and applied */
    uint64_t malformed_total;           /* market messages that failed to decode (dropped) */
    uint64_t unknown_symbol_total;      /* messages for a symbol we do not follow */
    uint64_t candles_closed_total;      /* closed candles from the stream */
    uint64_t candles_backfilled_total;  /* closed candles fetched over REST for gaps */
    uint64_t gaps_total;                /* gaps detected in the candle sequence */
    uint64_t duplicate_candles_total;   /* closed candles seen before (dropped) */
    uint64_t books_coalesced_total;     /* book updates replaced by a newer one before ARES */
    uint64_t trades_dropped_total;      /* trades dropped: the ring to ARES was full */
    uint64_t to_ares_ring_full_total;   /* pushes into the ring to ARES refused (full) */
    uint64_t user_events_total;         /* user data stream events passed to the trader */
    uint64_t user_events_dropped_total; /* user data stream events dropped (trader's ring full) */
    /* the REST budget as the exchange reports it */
    uint64_t rest_used_weight_1m;     /* gauge: last X-MBX-USED-WEIGHT-1M */
    uint64_t rest_weight_limit_1m;    /* gauge */
    uint64_t rest_rate_limited_total; /* 429 answers */
    uint64_t rest_banned_total;       /* 418 answers */
    uint64_t rest_throttled_total;    /* requests refused locally for headroom */
};

/* ARES's HealthGate reasons; more than this many is a programming error
 * (the rest are not exported). */
#define CQ_HEALTH_BLOCK_REASONS_MAX 16
struct cq_ares_metrics {
    uint64_t signals_emitted_total; /* signals that passed the HealthGate */
    size_t n_blocked;
    struct {
        const char *reason; /* static storage (ARES's gate names) */
        uint64_t total;     /* signals blocked for this reason */
    } blocked[CQ_HEALTH_BLOCK_REASONS_MAX];
};

/* A latency histogram with fixed bucket bounds, in the shape Prometheus
 * wants (cumulative over the process's life). bucket[i] counts the
 * observations in (le[i-1], le[i]]; observations above the last bound are
 * only in count (the +Inf bucket). */
#define CQ_LATENCY_BUCKETS 16
extern const uint64_t cq_latency_bucket_le_ns[CQ_LATENCY_BUCKETS]; /* ascending */
struct cq_latency_histogram {
    uint64_t bucket[CQ_LATENCY_BUCKETS];
    uint64_t count;  /* all observations */
    uint64_t sum_ns; /* of all observations (saturates at UINT64_MAX) */
};
void cq_latency_histogram_observe(struct cq_latency_histogram *h, uint64_t ns);

struct cq_trader_metrics {
    uint64_t signals_received_total; /* from ARES, test signals included */
    uint64_t test_signals_received_total;
    uint64_t execution_reports_total; /* user data stream events, by type */
    uint64_t account_positions_total;
    uint64_t other_user_events_total;
    /* the order path (issue 11) */
    uint64_t user_stream_gaps_total; /* userStreamGap events: a reconcile follows */
    uint64_t orders_sent_total;      /* order requests written to the venue */
    uint64_t orders_dryrun_total;    /* dryrun: journaled and logged instead of sent */
    uint64_t risk_refusals_total;    /* signals the risk gate refused */
    uint64_t filter_refusals_total;  /* orders the filters refused (order.refused) */
    uint64_t unknown_outcomes_total; /* sends whose outcome was unknown (then queried) */
    uint64_t send_rejected_total;    /* orders the exchange rejected */
    uint64_t journal_failures_total; /* intents that never became durable: not sent */
    uint64_t commands_total;         /* operator commands applied */
    uint64_t commands_refused_total; /* operator commands refused: queue full */
    uint64_t events_dropped_total;   /* exchange answers not fed: the event queue was full */
    uint64_t event_storms_total;     /* steps that left answers for the next (a core loop) */
    uint64_t open_orders;            /* gauge */
    uint64_t positions;              /* gauge */
    uint64_t quarantined_symbols;    /* gauge */
    struct cq_latency_histogram tick_to_order; /* closing frame -> send, minus durable wait */
    struct cq_latency_histogram durable_wait;  /* intent append -> durable */
};

struct cq_journal_metrics {
    uint64_t queue_depth; /* gauge: records waiting for the writer */
    uint64_t durable_seq; /* gauge: highest seq durable per the policy */
    uint64_t appends_total;
    uint64_t queue_full_total; /* appends refused with -CQ_EFULL */
    uint64_t fsyncs_total;
    uint64_t bytes_written_total;
    uint64_t snapshots_total;
    uint64_t verified_segments_total;
    uint64_t verify_failures_total;
    uint64_t pauses_total;                   /* paused on ENOSPC/EIO */
    struct cq_latency_histogram commit_wait; /* append -> durable */
};

struct cq_health_metrics {
    struct cq_feeder_metrics feeder;
    struct cq_ares_metrics ares;
    struct cq_trader_metrics trader;
    struct cq_journal_metrics journal;
};

/* Copy a service's counters into the board. Any thread. */
void cq_health_set_feeder_metrics(struct cq_health_board *board, const struct cq_feeder_metrics *m);
void cq_health_set_ares_metrics(struct cq_health_board *board, const struct cq_ares_metrics *m);
void cq_health_set_trader_metrics(struct cq_health_board *board, const struct cq_trader_metrics *m);
void cq_health_set_journal_metrics(struct cq_health_board *board,
                                   const struct cq_journal_metrics *m);
/* One consistent copy of every service's counters. Any thread. */
void cq_health_get_metrics(struct cq_health_board *board, struct cq_health_metrics *out);

/* Status, readiness and freshness of every service, typed (for /metrics). */
struct cq_health_summary {
    enum cq_health_status status;
    bool ready;
    int64_t freshness_ms;
};
void cq_health_get_summaries(struct cq_health_board *board,
                             struct cq_health_summary out[CQ_SVC__COUNT]);

/* ---- the process's start ------------------------------------------------------
 * Recorded once, before main() runs (a constructor in health.c), on the
 * system clock: uptime is the process's age, whatever object asks. */
int64_t cq_process_start_mono_ms(void);
int64_t cq_process_start_wall_us(void);
/* Milliseconds since the process started (system monotonic clock). */
int64_t cq_process_uptime_ms(void);

#endif /* CQ_HEALTH_H */
