/*
 * health.c — the health board: one canonical record per service.
 *
 * One mutex guards the whole board (five small records); publishers hold it
 * for a few copies, readers for a deep copy. JSON built for readers is made
 * outside the lock where possible. Readiness flips are logged after the lock
 * is released, so the log layer never runs under the board's lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/fs.h"
#include "cq/health.h"
#include "cq/log.h"
#include "cq/text.h"

struct record {
    enum cq_health_status status;
    bool ready;
    char reason[CQ_HEALTH_REASON_MAX];
    char detail[CQ_HEALTH_DETAIL_MAX];
    int64_t updated_at_wall_us;
    int64_t fresh_at_mono_ms;
    bool fresh_explicit; /* the service sets freshness itself */
    json_t *details;     /* owned */
};

struct cq_health_board {
    pthread_mutex_t lock;
    const struct cq_clock *clock; /* borrowed */
    struct record rec[CQ_SVC__COUNT];
    struct cq_health_metrics metrics; /* the services' typed counters (copies) */
};

/* ---- the process's start ------------------------------------------------------ */

static int64_t process_start_mono_ms;
static int64_t process_start_wall_us;

/* Runs before main(): the earliest moment we can read the clock. Written
 * once, before any thread exists; read-only afterwards. */
__attribute__((constructor)) static void record_process_start(void)
{
    const struct cq_clock *sys = cq_clock_system();
    process_start_mono_ms = cq_clock_mono_ms(sys);
    process_start_wall_us = cq_clock_wall_us(sys);
}

int64_t cq_process_start_mono_ms(void)
{
    return process_start_mono_ms;
}

int64_t cq_process_start_wall_us(void)
{
    return process_start_wall_us;
}

int64_t cq_process_uptime_ms(void)
{
    int64_t ms = cq_clock_mono_ms(cq_clock_system()) - process_start_mono_ms;
    return ms > 0 ? ms : 0;
}

/* ---- latency histograms ---------------------------------------------------------- */

const uint64_t cq_latency_bucket_le_ns[CQ_LATENCY_BUCKETS] = {
    50000,    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
};

void cq_latency_histogram_observe(struct cq_latency_histogram *h, uint64_t ns)
{
    for (size_t i = 0; i < CQ_LATENCY_BUCKETS; i++) {
        if (ns <= cq_latency_bucket_le_ns[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum_ns = h->sum_ns > UINT64_MAX - ns ? UINT64_MAX : h->sum_ns + ns;
}

static const char *const service_names[CQ_SVC__COUNT] = {
    [CQ_SVC_FEEDER] = "feeder",   [CQ_SVC_ARES] = "ares", [CQ_SVC_TRADER] = "trader",
    [CQ_SVC_JOURNAL] = "journal", [CQ_SVC_API] = "api",
};

static const char *const status_names[] = {
    [CQ_HEALTH_STARTING] = "starting", [CQ_HEALTH_OK] = "ok",
    [CQ_HEALTH_DEGRADED] = "degraded", [CQ_HEALTH_DOWN] = "down",
    [CQ_HEALTH_STOPPED] = "stopped",
};

const char *cq_health_service_name(enum cq_service_id id)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        return "unknown";
    }
    return service_names[id];
}

const char *cq_health_status_name(enum cq_health_status s)
{
    if ((unsigned)s >= CQ_ARRAY_LEN(status_names)) {
        return "unknown";
    }
    return status_names[s];
}

struct cq_health_board *cq_health_board_new(const struct cq_clock *clock, struct cq_err *err)
{
    struct cq_health_board *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the health board");
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    b->clock = clock != NULL ? clock : cq_clock_system();
    int64_t now_mono = cq_clock_mono_ms(b->clock);
    int64_t now_wall = cq_clock_wall_us(b->clock);
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        struct record *r = &b->rec[i];
        r->status = CQ_HEALTH_STARTING;
        r->ready = false;
        cq_strlcpy(r->reason, "not_started", sizeof(r->reason));                     /* fits */
        cq_strlcpy(r->detail, "the service has not started yet", sizeof(r->detail)); /* fits */
        r->updated_at_wall_us = now_wall;
        r->fresh_at_mono_ms = now_mono;
        r->details = json_object();
        if (r->details == NULL) {
            cq_health_board_free(b);
            cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the health board");
            return NULL;
        }
    }
    return b;
}

void cq_health_board_free(struct cq_health_board *b)
{
    if (b == NULL) {
        return;
    }
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        json_decref(b->rec[i].details);
    }
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Copy src (NULL = "") into dst. A text too long is cut on a UTF-8
 * character boundary and ends in "..." so the cut is visible and the record
 * stays valid UTF-8 (jansson refuses anything else, which would turn /health
 * into a 500). */
static void copy_text(char *dst, size_t size, const char *src)
{
    if (cq_strlcpy(dst, src != NULL ? src : "", size) < size) {
        return;
    }
    cq_text_mark_cut(dst, size);
}

void cq_health_publish(struct cq_health_board *b, enum cq_service_id id,
                       enum cq_health_status status, bool ready, const char *reason,
                       const char *detail, json_t *details)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        json_decref(details);
        return;
    }
    if (details == NULL) {
        details = json_object();
    }
    int64_t now_mono = cq_clock_mono_ms(b->clock);
    int64_t now_wall = cq_clock_wall_us(b->clock);
    bool was_ready;
    json_t *old_details;

    pthread_mutex_lock(&b->lock);
    struct record *r = &b->rec[id];
    was_ready = r->ready;
    r->status = status;
    r->ready = ready;
    copy_text(r->reason, sizeof(r->reason), reason);
    copy_text(r->detail, sizeof(r->detail), detail);
    r->updated_at_wall_us = now_wall;
    if (!r->fresh_explicit) {
        r->fresh_at_mono_ms = now_mono;
    }
    old_details = r->details;
    r->details = details;
    pthread_mutex_unlock(&b->lock);

    json_decref(old_details);
    if (was_ready != ready) {
        cq_log_info(service_names[id], "readiness_changed",
                    json_pack("{s:b,s:b,s:s,s:s,s:s}", "from", was_ready, "to", ready, "status",
                              cq_health_status_name(status), "reason", reason != NULL ? reason : "",
                              "detail", detail != NULL ? detail : ""),
                    "%s is %s (%s)", service_names[id], ready ? "ready" : "not ready",
                    reason != NULL && reason[0] != '\0' ? reason : "no reason given");
    }
}

void cq_health_set_fresh(struct cq_health_board *b, enum cq_service_id id, int64_t fresh_at_mono_ms)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        return;
    }
    pthread_mutex_lock(&b->lock);
    b->rec[id].fresh_at_mono_ms = fresh_at_mono_ms;
    b->rec[id].fresh_explicit = true;
    pthread_mutex_unlock(&b->lock);
}

bool cq_health_is_ready(struct cq_health_board *b, enum cq_service_id id)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        return false;
    }
    pthread_mutex_lock(&b->lock);
    bool ready = b->rec[id].ready;
    pthread_mutex_unlock(&b->lock);
    return ready;
}

enum cq_health_status cq_health_status_of(struct cq_health_board *b, enum cq_service_id id)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        return CQ_HEALTH_DOWN;
    }
    pthread_mutex_lock(&b->lock);
    enum cq_health_status s = b->rec[id].status;
    pthread_mutex_unlock(&b->lock);
    return s;
}

/* Caller holds the lock. */
static json_t *record_json_locked(const struct cq_health_board *b, enum cq_service_id id,
                                  int64_t now_mono)
{
    const struct record *r = &b->rec[id];
    char ts[CQ_RFC3339_US_LEN];
    int64_t freshness_ms = now_mono - r->fresh_at_mono_ms;
    if (freshness_ms < 0) {
        freshness_ms = 0;
    }
    return json_pack("{s:s,s:s,s:b,s:s,s:s,s:s,s:I,s:O}", "service", service_names[id], "status",
                     cq_health_status_name(r->status), "ready", r->ready, "reason", r->reason,
                     "detail", r->detail, "updated_at",
                     cq_time_rfc3339_us(r->updated_at_wall_us, ts, sizeof(ts)), "freshness_ms",
                     (json_int_t)freshness_ms, "details", r->details);
}

json_t *cq_health_record_json(struct cq_health_board *b, enum cq_service_id id)
{
    if ((unsigned)id >= CQ_SVC__COUNT) {
        return NULL;
    }
    int64_t now_mono = cq_clock_mono_ms(b->clock);
    pthread_mutex_lock(&b->lock);
    json_t *rec = record_json_locked(b, id, now_mono);
    /* "details" is shared by reference (s:O); give the reader its own copy so
     * the publisher may replace it while the reader serialises. */
    json_t *copy = json_deep_copy(rec);
    pthread_mutex_unlock(&b->lock);
    json_decref(rec);
    return copy;
}

json_t *cq_health_services_json(struct cq_health_board *b)
{
    json_t *all = json_object();
    if (all == NULL) {
        return NULL;
    }
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        json_t *rec = cq_health_record_json(b, (enum cq_service_id)i);
        if (rec == NULL) {
            json_decref(all);
            return NULL;
        }
        json_object_set_new(all, service_names[i], rec);
    }
    return all;
}

/* ---- typed counters ---------------------------------------------------------------- */

void cq_health_set_feeder_metrics(struct cq_health_board *b, const struct cq_feeder_metrics *m)
{
    pthread_mutex_lock(&b->lock);
    b->metrics.feeder = *m;
    pthread_mutex_unlock(&b->lock);
}

void cq_health_set_ares_metrics(struct cq_health_board *b, const struct cq_ares_metrics *m)
{
    pthread_mutex_lock(&b->lock);
    b->metrics.ares = *m;
    if (b->metrics.ares.n_blocked > CQ_HEALTH_BLOCK_REASONS_MAX) {
        b->metrics.ares.n_blocked = CQ_HEALTH_BLOCK_REASONS_MAX;
    }
    pthread_mutex_unlock(&b->lock);
}

void cq_health_set_trader_metrics(struct cq_health_board *b, const struct cq_trader_metrics *m)
{
    pthread_mutex_lock(&b->lock);
    b->metrics.trader = *m;
    pthread_mutex_unlock(&b->lock);
}

void cq_health_set_journal_metrics(struct cq_health_board *b, const struct cq_journal_metrics *m)
{
    pthread_mutex_lock(&b->lock);
    b->metrics.journal = *m;
    pthread_mutex_unlock(&b->lock);
}

void cq_health_get_metrics(struct cq_health_board *b, struct cq_health_metrics *out)
{
    pthread_mutex_lock(&b->lock);
    *out = b->metrics;
    pthread_mutex_unlock(&b->lock);
}

void cq_health_get_summaries(struct cq_health_board *b, struct cq_health_summary out[CQ_SVC__COUNT])
{
    int64_t now_mono = cq_clock_mono_ms(b->clock);
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        const struct record *r = &b->rec[i];
        int64_t freshness_ms = now_mono - r->fresh_at_mono_ms;
        out[i] = (struct cq_health_summary){
            .status = r->status,
            .ready = r->ready,
            .freshness_ms = freshness_ms > 0 ? freshness_ms : 0,
        };
    }
    pthread_mutex_unlock(&b->lock);
}

bool cq_health_all_ready(struct cq_health_board *b, json_t **reasons)
{
    bool all = true;
    json_t *list = reasons != NULL ? json_array() : NULL;
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        const struct record *r = &b->rec[i];
        if (r->ready) {
            continue;
        }
        all = false;
        if (list != NULL) {
            json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "service", service_names[i],
                                                  "reason", r->reason, "detail", r->detail));
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (reasons != NULL) {
        *reasons = list;
    }
    return all;
}

int cq_health_write_files(struct cq_health_board *b, const char *dir, struct cq_err *err)
{
    int rc = cq_fs_mkdir_p(dir, 0750, err);
    if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        json_t *rec = cq_health_record_json(b, (enum cq_service_id)i);
        if (rec == NULL) {
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "building the %s health record",
                              service_names[i]);
        }
        char *text = json_dumps(rec, JSON_INDENT(2));
        json_decref(rec);
        if (text == NULL) {
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "serialising the %s health record",
                              service_names[i]);
        }
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s/%s.json", dir, service_names[i]);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            free(text);
            return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter CQ_DATA_DIR",
                              "health file path too long (%d bytes, at most 4095)", n);
        }
        size_t len = strlen(text);
        /* Rewritten every second: atomic (tmp + rename) but not fsynced. */
        char *with_nl = realloc(text, len + 2);
        if (with_nl == NULL) {
            free(text);
            return cq_err_set(err, CQ_ENOMEM, 0, NULL, "health file buffer");
        }
        with_nl[len] = '\n';
        with_nl[len + 1] = '\0';
        rc = cq_fs_write_atomic(path, with_nl, len + 1, 0640, 0, err);
        free(with_nl);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}
