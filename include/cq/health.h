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

#define CQ_HEALTH_REASON_MAX 64   /* stable snake_case code */
#define CQ_HEALTH_DETAIL_MAX 256  /* one sentence for people */

const char *cq_service_name(enum cq_service_id id);        /* "feeder" … */
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

#endif /* CQ_HEALTH_H */
