/*
 * metrics.c — GET /metrics: the Prometheus text exposition format (0.0.4)
 * of the process's health board, log statistics and API counters.
 *
 * The document is built per scrape into a growable buffer bounded by
 * CQ_API_METRICS_MAX_BYTES (a scrape that would exceed it fails with 500
 * rather than growing without limit). Service series come from the health
 * board as typed values: status, readiness and freshness per service
 * (cq_health_get_summaries) and the counters each service exports
 * (cq_health_get_metrics, one consistent copy), read field by field, never
 * out of the health JSON by string key. Units are base units (seconds,
 * bytes) printed as exact decimals; latency is a histogram. `promtool check
 * metrics` must accept the page (tests/integration/test_metrics.sh).
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

/* A non-negative count of `unit`ths as an exact decimal ("8.234" for 8234
 * and 1000): base units without floating point. */
static void mb_fraction(struct cq_buf *b, uint64_t value, uint64_t unit, int digits)
{
    cq_buf_printf(b, "%llu", (unsigned long long)(value / unit));
    uint64_t frac = value % unit;
    if (frac == 0) {
        return;
    }
    char text[24];
    int n = snprintf(text, sizeof(text), "%0*llu", digits, (unsigned long long)frac);
    /* bounded: frac < unit <= 10^9, digits <= 9 */
    while (n > 1 && text[n - 1] == '0') {
        text[--n] = '\0';
    }
    cq_buf_printf(b, ".%s", text);
}

static void mb_ms_as_seconds(struct cq_buf *b, int64_t ms)
{
    mb_fraction(b, ms > 0 ? (uint64_t)ms : 0, 1000, 3);
}

static void mb_ns_as_seconds(struct cq_buf *b, uint64_t ns)
{
    mb_fraction(b, ns, 1000000000, 9);
}

static void mb_histogram(struct cq_buf *b, const char *name, const char *help,
                         const struct cq_latency_histogram *h)
{
    mb_head(b, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < CQ_LATENCY_BUCKETS; i++) {
        cumulative += h->bucket[i];
        cq_buf_printf(b, "%s_bucket{le=\"", name);
        mb_ns_as_seconds(b, cq_latency_bucket_le_ns[i]);
        cq_buf_printf(b, "\"} %llu\n", (unsigned long long)cumulative);
    }
    cq_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    cq_buf_printf(b, "%s_sum ", name);
    mb_ns_as_seconds(b, h->sum_ns);
    cq_buf_printf(b, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}

struct series_u64 {
    const char *name;
    const char *type;
    const char *help;
    uint64_t value;
};

static void mb_series(struct cq_buf *b, const struct series_u64 *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mb_metric_u64(b, s[i].name, s[i].type, s[i].help, s[i].value);
    }
}

static void render_services(struct cq_buf *b, struct cq_health_board *board)
{
    static const enum cq_health_status statuses[] = {
        CQ_HEALTH_STARTING, CQ_HEALTH_OK, CQ_HEALTH_DEGRADED, CQ_HEALTH_DOWN, CQ_HEALTH_STOPPED,
    };
    struct cq_health_summary sum[CQ_SVC__COUNT];
    cq_health_get_summaries(board, sum);
    bool all_ready = true;

    mb_head(b, "coinquant_service_ready", "gauge",
            "1 when the service is ready (its readiness gate is open), else 0.");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        all_ready = all_ready && sum[id].ready;
        cq_buf_printf(b, "coinquant_service_ready{service=\"");
        mb_label(b, cq_health_service_name((enum cq_service_id)id));
        cq_buf_printf(b, "\"} %d\n", sum[id].ready ? 1 : 0);
    }

    mb_head(b, "coinquant_service_status", "gauge",
            "1 for the service's current health status, 0 for the others.");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        for (size_t s = 0; s < CQ_ARRAY_LEN(statuses); s++) {
            cq_buf_printf(b, "coinquant_service_status{service=\"");
            mb_label(b, cq_health_service_name((enum cq_service_id)id));
            cq_buf_printf(b, "\",status=\"");
            mb_label(b, cq_health_status_name(statuses[s]));
            cq_buf_printf(b, "\"} %d\n", sum[id].status == statuses[s] ? 1 : 0);
        }
    }

    mb_head(b, "coinquant_service_freshness_seconds", "gauge",
            "Age in seconds of the data the service last acted on (or of its last "
            "health publish).");
    for (int id = 0; id < CQ_SVC__COUNT; id++) {
        cq_buf_printf(b, "coinquant_service_freshness_seconds{service=\"");
        mb_label(b, cq_health_service_name((enum cq_service_id)id));
        cq_buf_printf(b, "\"} ");
        mb_ms_as_seconds(b, sum[id].freshness_ms);
        cq_buf_putc(b, '\n');
    }

    mb_head(b, "coinquant_ready", "gauge", "1 when every service is ready, else 0.");
    cq_buf_printf(b, "coinquant_ready %d\n", all_ready ? 1 : 0);
}

/* The services' typed counters (cq_health_get_metrics): one field, one
 * series. */
static void render_counters(struct cq_buf *b, struct cq_health_board *board)
{
    struct cq_health_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        cq_buf_printf(b, "# coinquant: out of memory reading the service counters\n");
        return;
    }
    cq_health_get_metrics(board, m);

    const struct cq_ares_metrics *a = &m->ares;
    mb_metric_u64(b, "coinquant_signals_emitted_total", "counter",
                  "Signals ARES emitted (passed the HealthGate).", a->signals_emitted_total);
    mb_head(b, "coinquant_signals_blocked_total", "counter",
            "Signals the HealthGate blocked, by reason.");
    for (size_t i = 0; i < a->n_blocked && i < CQ_HEALTH_BLOCK_REASONS_MAX; i++) {
        cq_buf_printf(b, "coinquant_signals_blocked_total{reason=\"");
        mb_label(b, a->blocked[i].reason != NULL ? a->blocked[i].reason : "unknown");
        cq_buf_printf(b, "\"} %llu\n", (unsigned long long)a->blocked[i].total);
    }

    const struct cq_feeder_metrics *f = &m->feeder;
    const struct series_u64 feeder[] = {
        {"coinquant_exchange_used_weight_1m", "gauge",
         "REST request weight used in the current minute, as the exchange reports it "
         "(X-MBX-USED-WEIGHT-1M).",
         f->rest_used_weight_1m},
        {"coinquant_exchange_weight_limit_1m", "gauge", "REST request weight allowed per minute.",
         f->rest_weight_limit_1m},
        {"coinquant_exchange_rate_limited_total", "counter",
         "REST answers 429 (rate limited) from the exchange.", f->rest_rate_limited_total},
        {"coinquant_exchange_banned_total", "counter", "REST answers 418 (IP banned).",
         f->rest_banned_total},
        {"coinquant_exchange_throttled_total", "counter",
         "REST requests refused locally to keep weight headroom.", f->rest_throttled_total},
        {"coinquant_feeder_messages_total", "counter",
         "Market messages decoded and applied by the feeder.", f->messages_total},
        {"coinquant_feeder_malformed_messages_total", "counter",
         "Market messages that failed to decode (dropped).", f->malformed_total},
        {"coinquant_feeder_unknown_symbol_messages_total", "counter",
         "Market messages for a symbol the feeder does not follow (dropped).",
         f->unknown_symbol_total},
        {"coinquant_feeder_candles_closed_total", "counter",
         "Closed candles received on the market stream.", f->candles_closed_total},
        {"coinquant_feeder_candles_backfilled_total", "counter",
         "Closed candles fetched over REST to fill gaps.", f->candles_backfilled_total},
        {"coinquant_feeder_gaps_total", "counter", "Gaps detected in the candle sequence.",
         f->gaps_total},
        {"coinquant_feeder_duplicate_candles_total", "counter",
         "Closed candles received again (dropped).", f->duplicate_candles_total},
        {"coinquant_feeder_books_coalesced_total", "counter",
         "Book updates replaced by a newer one before ARES took them (coalesced).",
         f->books_coalesced_total},
        {"coinquant_feeder_trades_dropped_total", "counter",
         "Trades dropped because the ring to ARES was full.", f->trades_dropped_total},
        {"coinquant_feeder_ring_full_total", "counter",
         "Pushes into the ring to ARES refused because it was full.", f->to_ares_ring_full_total},
        {"coinquant_feeder_user_events_total", "counter",
         "User data stream events passed to the trader.", f->user_events_total},
        {"coinquant_feeder_user_events_dropped_total", "counter",
         "User data stream events dropped because the trader's ring stayed full.",
         f->user_events_dropped_total},
    };
    mb_series(b, feeder, CQ_ARRAY_LEN(feeder));

    const struct cq_trader_metrics *t = &m->trader;
    const struct series_u64 trader[] = {
        {"coinquant_trader_signals_received_total", "counter",
         "Signals the trader took from ARES (test signals included).", t->signals_received_total},
        {"coinquant_trader_test_signals_received_total", "counter",
         "Test signals (TEST_ALLOW_DEFAULT_SIGNAL) the trader took from ARES.",
         t->test_signals_received_total},
        {"coinquant_trader_user_stream_gaps_total", "counter",
         "User data stream gaps (a REST reconcile follows each).", t->user_stream_gaps_total},
        {"coinquant_trader_orders_sent_total", "counter",
         "Order requests the trader wrote to the venue.", t->orders_sent_total},
        {"coinquant_trader_orders_dryrun_total", "counter",
         "Orders journaled and logged instead of sent (dryrun).", t->orders_dryrun_total},
        {"coinquant_trader_risk_refusals_total", "counter", "Orders the risk gate refused.",
         t->risk_refusals_total},
        {"coinquant_trader_filter_refusals_total", "counter",
         "Orders the symbol filters refused (never sent).", t->filter_refusals_total},
        {"coinquant_trader_unknown_outcomes_total", "counter",
         "Order requests whose outcome was unknown (resolved by a query).",
         t->unknown_outcomes_total},
        {"coinquant_trader_send_rejected_total", "counter", "Orders the exchange rejected.",
         t->send_rejected_total},
        {"coinquant_trader_journal_failures_total", "counter",
         "Order intents that never became durable (the order was not sent).",
         t->journal_failures_total},
        {"coinquant_trader_commands_total", "counter", "Operator commands applied.",
         t->commands_total},
        {"coinquant_trader_commands_refused_total", "counter",
         "Operator commands refused because the command queue was full.",
         t->commands_refused_total},
        {"coinquant_trader_events_dropped_total", "counter",
         "Exchange answers not fed to the core because its event queue was full.",
         t->events_dropped_total},
        {"coinquant_trader_event_storms_total", "counter",
         "Steps that fed the most answers allowed and left the rest for the next step.",
         t->event_storms_total},
        {"coinquant_trader_open_orders", "gauge", "Orders open, in flight or unknown.",
         t->open_orders},
        {"coinquant_trader_positions", "gauge", "Symbols with an open position.", t->positions},
        {"coinquant_trader_quarantined_symbols", "gauge", "Symbols the trader quarantined.",
         t->quarantined_symbols},
    };
    mb_series(b, trader, CQ_ARRAY_LEN(trader));
    mb_head(b, "coinquant_trader_user_events_total", "counter",
            "User data stream events the trader took, by type.");
    cq_buf_printf(b, "coinquant_trader_user_events_total{type=\"execution_report\"} %llu\n",
                  (unsigned long long)t->execution_reports_total);
    cq_buf_printf(b, "coinquant_trader_user_events_total{type=\"account_position\"} %llu\n",
                  (unsigned long long)t->account_positions_total);
    cq_buf_printf(b, "coinquant_trader_user_events_total{type=\"other\"} %llu\n",
                  (unsigned long long)t->other_user_events_total);
    mb_histogram(b, "coinquant_trader_tick_to_order_seconds",
                 "From the WebSocket frame that closed the candle to the order request, minus the "
                 "journal durability wait, seconds.",
                 &t->tick_to_order);
    mb_histogram(b, "coinquant_trader_durable_wait_seconds",
                 "Wait for an order intent to become durable before its send, seconds.",
                 &t->durable_wait);

    const struct cq_journal_metrics *j = &m->journal;
    mb_histogram(b, "coinquant_journal_commit_wait_seconds",
                 "Journal append-to-durable wait per record, seconds.", &j->commit_wait);
    const struct series_u64 journal[] = {
        {"coinquant_journal_queue_depth", "gauge", "Records waiting for the journal writer.",
         j->queue_depth},
        {"coinquant_journal_durable_seq", "gauge",
         "Highest journal sequence number on disk per the fsync policy.", j->durable_seq},
        {"coinquant_journal_appends_total", "counter", "Records appended.", j->appends_total},
        {"coinquant_journal_queue_full_total", "counter",
         "Appends refused because the queue was full (backpressure).", j->queue_full_total},
        {"coinquant_journal_fsyncs_total", "counter", "fdatasync calls.", j->fsyncs_total},
        {"coinquant_journal_bytes_written_total", "counter", "Bytes written to journal segments.",
         j->bytes_written_total},
        {"coinquant_journal_snapshots_total", "counter", "Snapshots written.", j->snapshots_total},
        {"coinquant_journal_verified_segments_total", "counter",
         "Sealed segments checked by the background verifier.", j->verified_segments_total},
        {"coinquant_journal_verify_failures_total", "counter",
         "Background verify failures (integrity problems found).", j->verify_failures_total},
        {"coinquant_journal_pauses_total", "counter", "Times the journal paused on ENOSPC or EIO.",
         j->pauses_total},
    };
    mb_series(b, journal, CQ_ARRAY_LEN(journal));
    free(m);
}

int cq_api__metrics_render(struct cq_api *api, char **out, size_t *out_len)
{
    struct cq_buf b;
    cq_buf_init(&b, CQ_API_METRICS_MAX_BYTES);
    *out = NULL;
    *out_len = 0;

    struct cq_config *cfg = cq_config_current_get(api->config);

    mb_metric_u64(&b, "coinquant_up", "gauge", "1 while coinquantd is running.", 1);
    mb_head(&b, "coinquant_uptime_seconds", "gauge", "Seconds since the process started.");
    cq_buf_printf(&b, "coinquant_uptime_seconds ");
    mb_ms_as_seconds(&b, cq_process_uptime_ms());
    cq_buf_putc(&b, '\n');
    mb_head(&b, "coinquant_process_start_time_seconds", "gauge",
            "Start time of the process since the Unix epoch, seconds.");
    cq_buf_printf(&b, "coinquant_process_start_time_seconds ");
    int64_t start_us = cq_process_start_wall_us();
    mb_fraction(&b, start_us > 0 ? (uint64_t)start_us : 0, 1000000, 6);
    cq_buf_putc(&b, '\n');

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

    render_services(&b, api->board);
    render_counters(&b, api->board);

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
                  "Admin API connections closed at accept: the pool and the reserve were full.",
                  load(&api->connections_rejected));
    mb_metric_u64(&b, "coinquant_api_connections_closed_slow_total", "counter",
                  "Admin API connections closed past their request deadline or evicted from "
                  "the reserve with an incomplete request head.",
                  load(&api->connections_closed_slow));
    mb_metric_u64(&b, "coinquant_api_request_bodies_refused_total", "counter",
                  "Admin API request bodies over CQ_ADMIN_MAX_BODY_BYTES, answered 413 "
                  "(announced by Content-Length, or counted as they arrived).",
                  load(&api->body_stats.refused_announced) +
                      load(&api->body_stats.refused_streamed));
    mb_metric_u64(&b, "coinquant_api_mhd_errors_total", "counter",
                  "Messages from libmicrohttpd (logged as mhd_error, rate-limited).",
                  load(&api->mhd_errors));

    *out = cq_buf_take(&b, out_len);
    return *out != NULL ? 0 : -CQ_ENOMEM;
}
