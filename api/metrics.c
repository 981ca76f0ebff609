/*
 * metrics.c — GET /metrics: the Prometheus text exposition format (0.0.4)
 * of the process's health board, log statistics and API counters.
 *
 * The document is built per scrape into a growable buffer bounded by
 * CQ_API_METRICS_MAX_BYTES (a scrape that would exceed it fails with 500
 * rather than growing without limit). Service series come from one copy of
 * the health board, so one scrape is consistent across services.
 *
 * Threads: called from the router (libmicrohttpd's thread); reads only the
 * health board, a config reference, the log stats and our atomic counters.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-int.h"
#include "cq/buf.h"
#include "cq/log.h"

/* A label value, escaped as the exposition format requires: \ " and newline. */
static void mb_label(struct cq_buf *b, const char *value)
{
    for (const char *s = value; *s != '\0'; s++) {
        if (*s == '\\') {
            cq_buf_printf(b, "\\\\");
        } else if (*s == '"') {
            cq_buf_printf(b, "\\\"");
        } else if (*s == '\n') {
            cq_buf_printf(b, "\\n");
        } else {
            cq_buf_putc(b, *s);
        }
    }
}

static void mb_head(struct cq_buf *b, const char *name, const char *type, const char *help)
{
    cq_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void mb_metric_u64(struct cq_buf *b, const char *name, const char *type, const char *help,
                          uint64_t value)
{
    mb_head(b, name, type, help);
    cq_buf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

static uint64_t load(const _Atomic uint64_t *counter)
{
    /* relaxed: a scrape needs no ordering with other memory */
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static void render_services(struct cq_buf *b, json_t *services)
{
    static const enum cq_health_status statuses[] = {
        CQ_HEALTH_STARTING, CQ_HEALTH_OK, CQ_HEALTH_DEGRADED, CQ_HEALTH_DOWN, CQ_HEALTH_STOPPED,
    };
    bool all_ready = true;

    mb_head(b, "coinquant_service_ready", "gauge",
            "1 when the service is ready (its readiness gate is open), else 0.");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        const char *name = cq_service_name((enum cq_service_id)id);
        bool ready = json_is_true(json_object_get(json_object_get(services, name), "ready"));
        all_ready = all_ready && ready;
        cq_buf_printf(b, "coinquant_service_ready{service=\"");
        mb_label(b, name);
        cq_buf_printf(b, "\"} %d\n", ready ? 1 : 0);
    }

    mb_head(b, "coinquant_service_status", "gauge",
            "1 for the service's current health status, 0 for the others.");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        const char *name = cq_service_name((enum cq_service_id)id);
        const char *current =
            json_string_value(json_object_get(json_object_get(services, name), "status"));
        for (size_t s = 0; s < CQ_ARRAY_LEN(statuses); s++) {
            const char *status = cq_health_status_name(statuses[s]);
            cq_buf_printf(b, "coinquant_service_status{service=\"");
            mb_label(b, name);
            cq_buf_printf(b, "\",status=\"");
            mb_label(b, status);
            cq_buf_printf(b, "\"} %d\n", current != NULL && strcmp(current, status) == 0 ? 1 : 0);
        }
    }

    mb_head(b, "coinquant_service_freshness_ms", "gauge",
            "Age in milliseconds of the data the service last acted on (or of its last "
            "health publish).");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        const char *name = cq_service_name((enum cq_service_id)id);
        json_t *fresh = json_object_get(json_object_get(services, name), "freshness_ms");
        cq_buf_printf(b, "coinquant_service_freshness_ms{service=\"");
        mb_label(b, name);
        cq_buf_printf(b, "\"} %lld\n",
                  (long long)(json_is_integer(fresh) ? json_integer_value(fresh) : 0));
    }

    mb_head(b, "coinquant_ready", "gauge", "1 when every service is ready, else 0.");
    cq_buf_printf(b, "coinquant_ready %d\n", all_ready ? 1 : 0);

    /* Counters the services publish in their health details. */
    json_t *ares = json_object_get(json_object_get(services, "ares"), "details");
    json_t *emitted = json_object_get(ares, "signals_emitted_total");
    mb_head(b, "coinquant_signals_emitted_total", "counter",
            "Signals ARES emitted (passed the HealthGate).");
    cq_buf_printf(b, "coinquant_signals_emitted_total %lld\n",
              (long long)(json_is_integer(emitted) ? json_integer_value(emitted) : 0));
    mb_head(b, "coinquant_signals_blocked_total", "counter",
            "Signals the HealthGate blocked, by reason.");
    const char *reason;
    json_t *count;
    json_object_foreach(json_object_get(ares, "signals_blocked_total"), reason, count) {
        cq_buf_printf(b, "coinquant_signals_blocked_total{reason=\"");
        mb_label(b, reason);
        cq_buf_printf(b, "\"} %lld\n",
                  (long long)(json_is_integer(count) ? json_integer_value(count) : 0));
    }
    json_t *feeder = json_object_get(json_object_get(services, "feeder"), "details");
    json_t *rest = json_object_get(feeder, "rest");
    static const char *const rest_gauges[][3] = {
        {"used_weight_1m", "coinquant_exchange_used_weight_1m", "gauge"},
        {"weight_limit_1m", "coinquant_exchange_weight_limit_1m", "gauge"},
        {"rate_limited_total", "coinquant_exchange_rate_limited_total", "counter"},
        {"banned_total", "coinquant_exchange_banned_total", "counter"},
        {"throttled_total", "coinquant_exchange_throttled_total", "counter"},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(rest_gauges); i++) {
        json_t *v = json_object_get(rest, rest_gauges[i][0]);
        mb_head(b, rest_gauges[i][1], rest_gauges[i][2],
                "The feeder's REST budget as the exchange reports it (X-MBX-USED-WEIGHT-1M, "
                "429, 418).");
        cq_buf_printf(b, "%s %lld\n", rest_gauges[i][1],
                  (long long)(json_is_integer(v) ? json_integer_value(v) : 0));
    }
    json_t *journal = json_object_get(json_object_get(services, "journal"), "details");
    static const char *const journal_series[][4] = {
        {"commit_wait_p50_us", "coinquant_journal_commit_wait_p50_us", "gauge",
         "Journal append-to-durable wait, median of recent records, microseconds."},
        {"commit_wait_p99_us", "coinquant_journal_commit_wait_p99_us", "gauge",
         "Journal append-to-durable wait, 99th percentile of recent records, microseconds."},
        {"queue_depth", "coinquant_journal_queue_depth", "gauge",
         "Records waiting for the journal writer."},
        {"durable_seq", "coinquant_journal_durable_seq", "gauge",
         "Highest journal sequence number on disk per the fsync policy."},
        {"appends_total", "coinquant_journal_appends_total", "counter", "Records appended."},
        {"full_total", "coinquant_journal_queue_full_total", "counter",
         "Appends refused because the queue was full (backpressure)."},
        {"fsyncs_total", "coinquant_journal_fsyncs_total", "counter", "fdatasync calls."},
        {"bytes_written_total", "coinquant_journal_bytes_written_total", "counter",
         "Bytes written to journal segments."},
        {"snapshots_total", "coinquant_journal_snapshots_total", "counter", "Snapshots written."},
        {"verified_segments_total", "coinquant_journal_verified_segments_total", "counter",
         "Sealed segments checked by the background verifier."},
        {"verify_failures_total", "coinquant_journal_verify_failures_total", "counter",
         "Background verify failures (integrity problems found)."},
        {"pauses_total", "coinquant_journal_pauses_total", "counter",
         "Times the journal paused on ENOSPC or EIO."},
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(journal_series); i++) {
        json_t *v = json_object_get(journal, journal_series[i][0]);
        mb_head(b, journal_series[i][1], journal_series[i][2], journal_series[i][3]);
        cq_buf_printf(b, "%s %lld\n", journal_series[i][1],
                  (long long)(json_is_integer(v) ? json_integer_value(v) : 0));
    }
    json_t *malformed = json_object_get(feeder, "malformed_total");
    mb_head(b, "coinquant_feeder_malformed_messages_total", "counter",
            "Market messages that failed to decode (dropped).");
    cq_buf_printf(b, "coinquant_feeder_malformed_messages_total %lld\n",
              (long long)(json_is_integer(malformed) ? json_integer_value(malformed) : 0));
}

int cq_api__metrics_render(struct cq_api *api, char **out, size_t *out_len)
{
    struct cq_buf b;
    cq_buf_init(&b, CQ_API_METRICS_MAX_BYTES);
    *out = NULL;
    *out_len = 0;

    struct cq_config *cfg = cq_config_current_get(api->config);
    json_t *services = cq_health_services_json(api->board);
    if (services == NULL) {
        cq_config_unref(cfg);
        return -CQ_ENOMEM;
    }

    mb_metric_u64(&b, "coinquant_up", "gauge", "1 while coinquantd is running.", 1);
    mb_head(&b, "coinquant_uptime_seconds", "gauge", "Seconds since the admin API was created.");
    cq_buf_printf(&b, "coinquant_uptime_seconds %lld\n", (long long)cq_api__uptime_s(api));

    mb_head(&b, "coinquant_build_info", "gauge",
            "Always 1; the labels name the version, the trading mode and the config hash.");
    cq_buf_printf(&b, "coinquant_build_info{version=\"");
    mb_label(&b, api->version);
    cq_buf_printf(&b, "\",mode=\"");
    mb_label(&b, cfg != NULL ? cq_mode_name(cq_config_mode(cfg)) : "unknown");
    cq_buf_printf(&b, "\",config_hash=\"");
    mb_label(&b, cfg != NULL ? cq_config_hash(cfg) : "");
    cq_buf_printf(&b, "\"} 1\n");
    cq_config_unref(cfg);

    render_services(&b, services);
    json_decref(services);

    struct cq_log_stats ls;
    memset(&ls, 0, sizeof(ls));
    cq_log_get_stats(&ls);
    mb_metric_u64(&b, "coinquant_log_lines_total", "counter",
                  "Log lines accepted (after the level filter).", ls.lines_total);
    mb_metric_u64(&b, "coinquant_log_lines_dropped_total", "counter",
                  "Log lines dropped because the log queue was full.", ls.lines_dropped);
    mb_metric_u64(&b, "coinquant_log_rotations_total", "counter", "Log file rotations.",
                  ls.rotations);
    mb_metric_u64(&b, "coinquant_log_write_errors_total", "counter",
                  "Failed log writes, opens or renames.", ls.write_errors);
    mb_metric_u64(&b, "coinquant_log_queue_bytes", "gauge",
                  "Bytes of log lines waiting to be written.", ls.queue_bytes);

    mb_metric_u64(&b, "coinquant_api_requests_total", "counter",
                  "Admin API requests routed (this scrape included).", load(&api->requests_total));
    mb_head(&b, "coinquant_api_responses_total", "counter", "Admin API responses by status class.");
    cq_buf_printf(&b, "coinquant_api_responses_total{class=\"2xx\"} %llu\n",
              (unsigned long long)load(&api->responses_2xx));
    cq_buf_printf(&b, "coinquant_api_responses_total{class=\"4xx\"} %llu\n",
              (unsigned long long)load(&api->responses_4xx));
    cq_buf_printf(&b, "coinquant_api_responses_total{class=\"5xx\"} %llu\n",
              (unsigned long long)load(&api->responses_5xx));
    mb_metric_u64(&b, "coinquant_api_auth_failures_total", "counter",
                  "Admin API requests refused for a missing or wrong bearer token.",
                  load(&api->auth_failures));
    mb_metric_u64(&b, "coinquant_api_connections_rejected_total", "counter",
                  "Admin API connections closed because max_connections were open.",
                  load(&api->connections_rejected));

    *out = cq_buf_take(&b, out_len);
    return *out != NULL ? 0 : -CQ_ENOMEM;
}
