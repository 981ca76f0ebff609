/*
 * test_metrics.c — GET /metrics (api/metrics.c) against the typed counters
 * the services export through the health board (issue 9.12).
 *
 *   - every series the page promises is there, with HELP and TYPE, and
 *     shows the exact value of the struct field it comes from (each field
 *     set to a distinct value: a series that reads the wrong field, or none,
 *     fails);
 *   - the trader and the journal, run for real, move their series;
 *   - coinquant_uptime_seconds is the process's age, not the API object's;
 *   - the page is valid exposition text and `promtool check metrics`
 *     accepts it (skipped when promtool is missing and CI is unset; a
 *     failure under CI: scripts/setup-deps installs it).
 *
 * The feeder's and ARES's exports from a running daemon are checked by
 * tests/integration/test_metrics.sh.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cq/api.h"
#include "cq/clock.h"
#include "cq/config.h"
#include "cq/feeder.h"
#include "cq/fs.h"
#include "cq/health.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/spsc.h"
#include "cq/signal.h"
#include "cq/trader.h"
#include "support/shared_data.h"

#define TOKEN "metrics-test-token-0123456789abcdef"

static char tmpdir[] = "/tmp/cq-metrics-XXXXXX";
static struct cq_health_board *board;
static struct cq_config_current *current;
static struct cq_api *api;

/* ---- fixture ------------------------------------------------------------------ */

static struct cq_config *load_config(void)
{
    char conf[512], data_env[512];
    snprintf(conf, sizeof(conf), "%s/config.env", tmpdir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("# test config\nCQ_LOG_LEVEL=info\n", f);
    fclose(f);
    snprintf(data_env, sizeof(data_env), "CQ_DATA_DIR=%s/data", tmpdir);
    char *envp[] = {"CQ_ADMIN_TOKEN=" TOKEN, data_env, NULL};
    struct cq_config_load_options lo = {.file_path = conf, .envp = envp};
    static struct cq_config_report report;
    struct cq_config *cfg = cq_config_load(&lo, &report);
    if (cfg == NULL) {
        cq_config_report_print(&report, stderr);
    }
    cr_assert_not_null(cfg, "cq_config_load failed (%zu errors)", report.n_errors);
    return cfg;
}

static struct cq_api *make_api(void)
{
    struct cq_api_options o = {
        .board = board,
        .config = current,
        .clock = NULL,
        .version = "9.9.9-test",
        .token = TOKEN,
        .bind = NULL, /* router only */
        .data_dir = NULL,
        .max_connections = 8,
        .timeout_s = 5,
        .max_body_bytes = 1024,
    };
    struct cq_err err = {0};
    struct cq_api *a = cq_api_new(&o, &err);
    cr_assert_not_null(a, "cq_api_new: %s (%s)", err.message, err.hint);
    return a;
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    char data_dir[512];
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
    cr_assert_eq(cq_fs_mkdir_p(data_dir, 0700, NULL), 0);
    struct cq_log_options lo = {.dir = NULL, .to_stderr = false, .level = CQ_LOG_INFO};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    board = cq_health_board_new(NULL, NULL);
    cr_assert_not_null(board);
    current = cq_config_current_new(load_config());
    cr_assert_not_null(current);
    api = make_api();
}

static void teardown(void)
{
    cq_api_free(api);
    cq_config_current_free(current);
    cq_health_board_free(board);
    cq_log_close();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

/* ---- the page, parsed ------------------------------------------------------------ */

#define PAGE_MAX_SAMPLES 1024

struct page {
    char *text; /* owned */
    size_t n;
    struct {
        char *key;   /* "name" or "name{labels}", borrowed from text */
        char *value; /* borrowed from text */
    } s[PAGE_MAX_SAMPLES];
};

static struct page *render(void)
{
    struct cq_api_response resp;
    struct cq_api_request req = {.method = "GET", .path = "/metrics"};
    cq_api_handle(api, &req, &resp);
    cr_assert_eq(resp.status, 200, "GET /metrics: %d %s", resp.status, resp.body);
    struct page *p = calloc(1, sizeof(*p));
    cr_assert_not_null(p);
    p->text = strdup(resp.body);
    cq_api_response_fini(&resp);
    char *work = strdup(p->text);
    free(p->text);
    p->text = work;
    char *save = NULL;
    for (char *l = strtok_r(work, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#') {
            continue;
        }
        char *sp = strrchr(l, ' ');
        cr_assert_not_null(sp, "sample without a value: %s", l);
        cr_assert_lt(p->n, PAGE_MAX_SAMPLES);
        *sp = '\0';
        p->s[p->n].key = l;
        p->s[p->n].value = sp + 1;
        p->n++;
    }
    return p;
}

static struct page *render_text(char **text_out)
{
    struct cq_api_response resp;
    struct cq_api_request req = {.method = "GET", .path = "/metrics"};
    cq_api_handle(api, &req, &resp);
    cr_assert_eq(resp.status, 200);
    *text_out = strdup(resp.body);
    cq_api_response_fini(&resp);
    return render();
}

static void page_free(struct page *p)
{
    if (p != NULL) {
        free(p->text);
        free(p);
    }
}

static const char *value_of(const struct page *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->s[i].key, key) == 0) {
            return p->s[i].value;
        }
    }
    return NULL;
}

static void expect_value(const struct page *p, const char *key, const char *want)
{
    const char *v = value_of(p, key);
    cr_expect_not_null(v, "series %s is missing from /metrics", key);
    if (v != NULL) {
        cr_expect_str_eq(v, want, "%s is %s, want %s", key, v, want);
    }
}

static void expect_u64(const struct page *p, const char *key, uint64_t want)
{
    char text[32];
    snprintf(text, sizeof(text), "%llu", (unsigned long long)want);
    expect_value(p, key, text);
}

static double number_of(const struct page *p, const char *key)
{
    const char *v = value_of(p, key);
    cr_assert_not_null(v, "series %s is missing from /metrics", key);
    char *end = NULL;
    double d = strtod(v, &end);
    cr_assert(end != v && *end == '\0', "%s: not a number: %s", key, v);
    return d;
}

static bool has_comment(const char *text, const char *kind, const char *name)
{
    char want[256];
    snprintf(want, sizeof(want), "\n# %s %s ", kind, name);
    return strstr(text, want) != NULL || (strncmp(text, want + 1, strlen(want + 1)) == 0);
}

/* ---- every series, its exact field ----------------------------------------------- */

/* Distinct values per field: a series that shows another field's value, or
 * 0 because it reads nothing, is caught. */
static void set_distinct_counters(void)
{
    struct cq_feeder_metrics f = {
        .messages_total = 1001,
        .malformed_total = 1002,
        .unknown_symbol_total = 1003,
        .candles_closed_total = 1004,
        .candles_backfilled_total = 1005,
        .gaps_total = 1006,
        .duplicate_candles_total = 1007,
        .books_coalesced_total = 1008,
        .trades_dropped_total = 1009,
        .to_ares_ring_full_total = 1010,
        .user_events_total = 1011,
        .user_events_dropped_total = 1012,
        .rest_used_weight_1m = 1013,
        .rest_weight_limit_1m = 1014,
        .rest_rate_limited_total = 1015,
        .rest_banned_total = 1016,
        .rest_throttled_total = 1017,
    };
    cq_health_set_feeder_metrics(board, &f);
    struct cq_ares_metrics a = {.signals_emitted_total = 2001, .n_blocked = 2};
    a.blocked[0].reason = "feeder_stale";
    a.blocked[0].total = 2002;
    a.blocked[1].reason = "warmup";
    a.blocked[1].total = 2003;
    cq_health_set_ares_metrics(board, &a);
    struct cq_trader_metrics t = {
        .signals_received_total = 3001,
        .test_signals_received_total = 3002,
        .execution_reports_total = 3003,
        .account_positions_total = 3004,
        .other_user_events_total = 3005,
    };
    cq_health_set_trader_metrics(board, &t);
    struct cq_journal_metrics j = {
        .queue_depth = 4001,
        .durable_seq = 4002,
        .appends_total = 4003,
        .queue_full_total = 4004,
        .fsyncs_total = 4005,
        .bytes_written_total = 4006,
        .snapshots_total = 4007,
        .verified_segments_total = 4008,
        .verify_failures_total = 4009,
        .pauses_total = 4010,
    };
    cq_latency_histogram_observe(&j.commit_wait, 40000);      /* 40 us: first bucket */
    cq_latency_histogram_observe(&j.commit_wait, 1000000);    /* exactly 1 ms */
    cq_latency_histogram_observe(&j.commit_wait, 7000000000); /* 7 s: only +Inf */
    cq_health_set_journal_metrics(board, &j);
}

/* The series the page promises (RUNBOOK's list), with their TYPE. */
static const char *const promised[][2] = {
    {"coinquant_up", "gauge"},
    {"coinquant_uptime_seconds", "gauge"},
    {"coinquant_process_start_time_seconds", "gauge"},
    {"coinquant_build_info", "gauge"},
    {"coinquant_service_ready", "gauge"},
    {"coinquant_service_status", "gauge"},
    {"coinquant_service_freshness_seconds", "gauge"},
    {"coinquant_ready", "gauge"},
    {"coinquant_signals_emitted_total", "counter"},
    {"coinquant_signals_blocked_total", "counter"},
    {"coinquant_exchange_used_weight_1m", "gauge"},
    {"coinquant_exchange_weight_limit_1m", "gauge"},
    {"coinquant_exchange_rate_limited_total", "counter"},
    {"coinquant_exchange_banned_total", "counter"},
    {"coinquant_exchange_throttled_total", "counter"},
    {"coinquant_feeder_messages_total", "counter"},
    {"coinquant_feeder_malformed_messages_total", "counter"},
    {"coinquant_feeder_unknown_symbol_messages_total", "counter"},
    {"coinquant_feeder_candles_closed_total", "counter"},
    {"coinquant_feeder_candles_backfilled_total", "counter"},
    {"coinquant_feeder_gaps_total", "counter"},
    {"coinquant_feeder_duplicate_candles_total", "counter"},
    {"coinquant_feeder_books_coalesced_total", "counter"},
    {"coinquant_feeder_trades_dropped_total", "counter"},
    {"coinquant_feeder_ring_full_total", "counter"},
    {"coinquant_feeder_user_events_total", "counter"},
    {"coinquant_feeder_user_events_dropped_total", "counter"},
    {"coinquant_trader_signals_received_total", "counter"},
    {"coinquant_trader_test_signals_received_total", "counter"},
    {"coinquant_trader_user_events_total", "counter"},
    {"coinquant_trader_orders_sent_total", "counter"},
    {"coinquant_trader_risk_refusals_total", "counter"},
    {"coinquant_trader_filter_refusals_total", "counter"},
    {"coinquant_trader_unknown_outcomes_total", "counter"},
    {"coinquant_trader_open_orders", "gauge"},
    {"coinquant_trader_tick_to_order_seconds", "histogram"},
    {"coinquant_trader_durable_wait_seconds", "histogram"},
    {"coinquant_journal_commit_wait_seconds", "histogram"},
    {"coinquant_journal_queue_depth", "gauge"},
    {"coinquant_journal_durable_seq", "gauge"},
    {"coinquant_journal_appends_total", "counter"},
    {"coinquant_journal_queue_full_total", "counter"},
    {"coinquant_journal_fsyncs_total", "counter"},
    {"coinquant_journal_bytes_written_total", "counter"},
    {"coinquant_journal_snapshots_total", "counter"},
    {"coinquant_journal_verified_segments_total", "counter"},
    {"coinquant_journal_verify_failures_total", "counter"},
    {"coinquant_journal_pauses_total", "counter"},
    {"coinquant_log_lines_total", "counter"},
    {"coinquant_log_lines_dropped_total", "counter"},
    {"coinquant_log_rotations_total", "counter"},
    {"coinquant_log_write_errors_total", "counter"},
    {"coinquant_log_queue_bytes", "gauge"},
    {"coinquant_api_requests_total", "counter"},
    {"coinquant_api_responses_total", "counter"},
    {"coinquant_api_auth_failures_total", "counter"},
    {"coinquant_api_connections_rejected_total", "counter"},
    {"coinquant_api_request_bodies_refused_total", "counter"},
    {"coinquant_api_connections_closed_slow_total", "counter"},
    {"coinquant_api_mhd_errors_total", "counter"},
};

Test(metrics, every_series_shows_its_own_field, .init = setup, .fini = teardown, .timeout = 30)
{
    set_distinct_counters();
    cq_health_set_fresh(board, CQ_SVC_FEEDER, cq_clock_mono_ms(cq_clock_system()) - 8234);
    cq_log_info("t", "one_line", NULL, "a line for coinquant_log_lines_total");
    char *text = NULL;
    struct page *p = render_text(&text);

    for (size_t i = 0; i < CQ_ARRAY_LEN(promised); i++) {
        char want[256];
        snprintf(want, sizeof(want), "\n# TYPE %s %s\n", promised[i][0], promised[i][1]);
        cr_expect(strstr(text, want) != NULL, "no '# TYPE %s %s'", promised[i][0], promised[i][1]);
        cr_expect(has_comment(text, "HELP", promised[i][0]), "no HELP for %s", promised[i][0]);
        /* at least one sample of the family */
        bool found = false;
        size_t n = strlen(promised[i][0]);
        for (size_t k = 0; k < p->n && !found; k++) {
            found = strncmp(p->s[k].key, promised[i][0], n) == 0 &&
                    (p->s[k].key[n] == '\0' || p->s[k].key[n] == '{' || p->s[k].key[n] == '_');
        }
        cr_expect(found, "no sample of %s", promised[i][0]);
    }
    /* the renamed series are gone */
    cr_expect_null(strstr(text, "commit_wait_p50_us"), "the old quantile gauges are still there");
    cr_expect_null(strstr(text, "commit_wait_p99_us"));
    cr_expect_null(strstr(text, "freshness_ms"));

    /* the typed counters, field by field */
    expect_u64(p, "coinquant_feeder_messages_total", 1001);
    expect_u64(p, "coinquant_feeder_malformed_messages_total", 1002);
    expect_u64(p, "coinquant_feeder_unknown_symbol_messages_total", 1003);
    expect_u64(p, "coinquant_feeder_candles_closed_total", 1004);
    expect_u64(p, "coinquant_feeder_candles_backfilled_total", 1005);
    expect_u64(p, "coinquant_feeder_gaps_total", 1006);
    expect_u64(p, "coinquant_feeder_duplicate_candles_total", 1007);
    expect_u64(p, "coinquant_feeder_books_coalesced_total", 1008);
    expect_u64(p, "coinquant_feeder_trades_dropped_total", 1009);
    expect_u64(p, "coinquant_feeder_ring_full_total", 1010);
    expect_u64(p, "coinquant_feeder_user_events_total", 1011);
    expect_u64(p, "coinquant_feeder_user_events_dropped_total", 1012);
    expect_u64(p, "coinquant_exchange_used_weight_1m", 1013);
    expect_u64(p, "coinquant_exchange_weight_limit_1m", 1014);
    expect_u64(p, "coinquant_exchange_rate_limited_total", 1015);
    expect_u64(p, "coinquant_exchange_banned_total", 1016);
    expect_u64(p, "coinquant_exchange_throttled_total", 1017);
    expect_u64(p, "coinquant_signals_emitted_total", 2001);
    expect_u64(p, "coinquant_signals_blocked_total{reason=\"feeder_stale\"}", 2002);
    expect_u64(p, "coinquant_signals_blocked_total{reason=\"warmup\"}", 2003);
    expect_u64(p, "coinquant_trader_signals_received_total", 3001);
    expect_u64(p, "coinquant_trader_test_signals_received_total", 3002);
    expect_u64(p, "coinquant_trader_user_events_total{type=\"execution_report\"}", 3003);
    expect_u64(p, "coinquant_trader_user_events_total{type=\"account_position\"}", 3004);
    expect_u64(p, "coinquant_trader_user_events_total{type=\"other\"}", 3005);
    expect_u64(p, "coinquant_journal_queue_depth", 4001);
    expect_u64(p, "coinquant_journal_durable_seq", 4002);
    expect_u64(p, "coinquant_journal_appends_total", 4003);
    expect_u64(p, "coinquant_journal_queue_full_total", 4004);
    expect_u64(p, "coinquant_journal_fsyncs_total", 4005);
    expect_u64(p, "coinquant_journal_bytes_written_total", 4006);
    expect_u64(p, "coinquant_journal_snapshots_total", 4007);
    expect_u64(p, "coinquant_journal_verified_segments_total", 4008);
    expect_u64(p, "coinquant_journal_verify_failures_total", 4009);
    expect_u64(p, "coinquant_journal_pauses_total", 4010);

    /* the histogram: cumulative buckets in seconds, +Inf = count, sum in seconds */
    expect_u64(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"0.00005\"}", 1);
    expect_u64(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"0.0005\"}", 1);
    expect_u64(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"0.001\"}", 2);
    expect_u64(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"5\"}", 2);
    expect_u64(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"+Inf\"}", 3);
    expect_u64(p, "coinquant_journal_commit_wait_seconds_count", 3);
    expect_value(p, "coinquant_journal_commit_wait_seconds_sum", "7.00104");

    /* freshness in seconds, exact */
    double fresh = number_of(p, "coinquant_service_freshness_seconds{service=\"feeder\"}");
    cr_expect(fresh >= 8.234 && fresh < 60.0, "feeder freshness %.3f s", fresh);
    cr_expect_gt(number_of(p, "coinquant_log_lines_total"), 0);
    cr_expect_gt(number_of(p, "coinquant_api_requests_total"), 0);
    page_free(p);
    free(text);
}

/* ---- the real trader and journal move their series ---------------------------------- */

static struct page *poll_until(const char *key, uint64_t want, int64_t timeout_ms)
{
    int64_t waited = 0;
    for (;;) {
        struct page *p = render();
        const char *v = value_of(p, key);
        if (v != NULL && strtoull(v, NULL, 10) >= want) {
            return p;
        }
        if (waited >= timeout_ms) {
            cr_assert_fail("%s stayed at %s (want %llu) for %lld ms", key, v != NULL ? v : "-",
                           (unsigned long long)want, (long long)timeout_ms);
        }
        page_free(p);
        cq_time_sleep_ms(20);
        waited += 20;
    }
}

Test(metrics, trader_and_journal_move_their_series, .init = setup, .fini = teardown, .timeout = 60)
{
    /* the journal, on disk, publishing into the board */
    char jdir[600];
    snprintf(jdir, sizeof(jdir), "%s/data/journal", tmpdir);
    struct cq_journal_options jo = {.dir = jdir, .fsync = CQ_JOURNAL_FSYNC_ALWAYS, .board = board};
    struct cq_journal_recovery rec;
    struct cq_err err = {0};
    struct cq_journal *j = cq_journal_open(&jo, &rec, &err);
    cr_assert_not_null(j, "journal open: %s", err.message);
    cr_assert_eq(cq_journal_start(j, &err), 0, "journal start: %s", err.message);
    uint64_t seq = 0;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(cq_journal_append(j, CQ_REC_MARKET_GAP, "BTCUSDT", "{}", 2, &seq), 0);
    }
    cr_assert_eq(cq_journal_wait_durable(j, seq, 10000), 0);

    /* the trader, on its own thread, fed through its rings */
    struct cq_spsc user_events, signals;
    cr_assert_eq(cq_spsc_init(&user_events, 16, sizeof(struct cq_user_event)), 0);
    cr_assert_eq(cq_spsc_init(&signals, 16, sizeof(struct cq_signal)), 0);
    struct cq_config *cfg = cq_config_current_get(current);
    struct cq_trader_options to = {.cfg = cfg,
                                   .board = board,
                                   .user_events = &user_events,
                                   .signals = &signals,
                                   .journal = j,
                                   .journal_dir = jdir,
                                   .rest_url = "http://127.0.0.1:9"}; /* nothing listens */
    struct cq_trader *t = cq_trader_new(&to, &err);
    cq_config_unref(cfg);
    cr_assert_not_null(t, "trader: %s", err.message);
    struct cq_signal sig = {.test = true};
    cq_strlcpy(sig.id, "0123456789abcdef0123456789abcdef", sizeof(sig.id));
    cr_assert(cq_spsc_push(&signals, &sig));
    static const char *const events[] = {
        /* real shapes (a bare event is unreadable: counted as other) */
        "{\"e\":\"executionReport\",\"s\":\"BTCUSDT\",\"c\":\"web_1\",\"S\":\"BUY\","
        "\"o\":\"LIMIT\",\"q\":\"1\",\"p\":\"1\",\"x\":\"NEW\",\"X\":\"NEW\",\"i\":1,"
        "\"z\":\"0\",\"Z\":\"0\"}",
        "{\"e\":\"outboundAccountPosition\",\"B\":[{\"a\":\"USDT\",\"f\":\"1\",\"l\":\"0\"}]}",
        "{\"e\":\"balanceUpdate\"}",
    };
    for (size_t i = 0; i < CQ_ARRAY_LEN(events); i++) {
        struct cq_user_event ev = {.len = (uint32_t)strlen(events[i])};
        cq_strlcpy(ev.json, events[i], sizeof(ev.json));
        cr_assert(cq_spsc_push(&user_events, &ev));
    }
    cr_assert_eq(cq_service_start(cq_trader_service(t), &err), 0);

    struct page *p = poll_until("coinquant_trader_signals_received_total", 1, 20000);
    page_free(p);
    p = poll_until("coinquant_trader_user_events_total{type=\"other\"}", 1, 20000);
    expect_u64(p, "coinquant_trader_signals_received_total", 1);
    expect_u64(p, "coinquant_trader_test_signals_received_total", 1);
    expect_u64(p, "coinquant_trader_user_events_total{type=\"execution_report\"}", 1);
    expect_u64(p, "coinquant_trader_user_events_total{type=\"account_position\"}", 1);
    page_free(p);

    p = poll_until("coinquant_journal_appends_total", 5, 20000);
    page_free(p);
    p = poll_until("coinquant_journal_commit_wait_seconds_count", 5, 20000);
    cr_expect_geq(number_of(p, "coinquant_journal_durable_seq"), 5);
    cr_expect_gt(number_of(p, "coinquant_journal_fsyncs_total"), 0);
    cr_expect_gt(number_of(p, "coinquant_journal_bytes_written_total"), 0);
    cr_expect_geq(number_of(p, "coinquant_journal_commit_wait_seconds_bucket{le=\"+Inf\"}"), 5);
    cr_expect_gt(number_of(p, "coinquant_journal_commit_wait_seconds_sum"), 0);
    page_free(p);

    cq_service_request_stop(cq_trader_service(t));
    cr_assert_eq(cq_service_join(cq_trader_service(t), 5000), 0);
    cq_trader_free(t);
    cq_spsc_fini(&user_events);
    cq_spsc_fini(&signals);
    cr_assert_eq(cq_journal_stop(j, &err), 0, "journal stop: %s", err.message);
    cq_journal_free(j);
}

/* ---- uptime is the process's ------------------------------------------------------------ */

Test(metrics, uptime_is_the_process_age, .init = setup, .fini = teardown, .timeout = 30)
{
    /* Let the process grow older than a second, then make a new API object:
     * its own age is ~0 s, the process's is > 1.5 s. */
    while (cq_process_uptime_ms() < 1600) {
        cq_time_sleep_ms(50);
    }
    cq_api_free(api);
    api = make_api();
    struct page *p = render();
    double up = number_of(p, "coinquant_uptime_seconds");
    cr_expect_geq(up, 1.5, "coinquant_uptime_seconds %.3f is not the process's age", up);
    double start = number_of(p, "coinquant_process_start_time_seconds");
    double want = (double)cq_process_start_wall_us() / 1e6;
    cr_expect(start > want - 0.001 && start < want + 0.001, "start %.6f, want %.6f", start, want);
    cr_expect_gt(start, 1.7e9, "the start time is a Unix time");
    page_free(p);
}

/* ---- the exposition format, and promtool ----------------------------------------------- */

Test(metrics, lines_follow_the_exposition_format, .init = setup, .fini = teardown, .timeout = 30)
{
    set_distinct_counters();
    char *text = NULL;
    struct page *p = render_text(&text);
    page_free(p);
    regex_t sample, comment;
    cr_assert_eq(regcomp(&sample,
                         "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? [0-9]+(\\.[0-9]+)?$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(regcomp(&comment,
                         "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                         "(gauge|counter|histogram))$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        /* no abbreviated units left in any name */
        cr_expect_null(strstr(l, "_ms{"), "abbreviated unit: %s", l);
        cr_expect_null(strstr(l, "_us "), "abbreviated unit: %s", l);
        if (l[0] == '#') {
            cr_expect_eq(regexec(&comment, l, 0, NULL, 0), 0, "bad comment line: %s", l);
        } else {
            cr_expect_eq(regexec(&sample, l, 0, NULL, 0), 0, "bad sample line: %s", l);
        }
    }
    regfree(&sample);
    regfree(&comment);
    free(text);
}

static bool promtool_path(char *out, size_t out_len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    if (cq_strlcpy(dirs, path != NULL ? path : "/usr/bin:/bin", sizeof(dirs)) >= sizeof(dirs)) {
        cq_strlcpy(dirs, "/usr/bin:/bin", sizeof(dirs)); /* fits */
    }
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        int n = snprintf(out, out_len, "%s/promtool", d);
        if (n > 0 && (size_t)n < out_len && access(out, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

Test(metrics, promtool_accepts_the_page, .init = setup, .fini = teardown, .timeout = 60)
{
    char promtool[4200];
    if (!promtool_path(promtool, sizeof(promtool))) {
        if (cq_test_ci_set()) {
            cr_assert_fail("promtool is missing and CI is set: run scripts/setup-deps "
                           "(Debian package prometheus)");
        }
        cr_skip_test("promtool is missing: install the Debian package prometheus "
                     "(scripts/setup-deps) to check /metrics (set CI to make this a failure)");
    }
    set_distinct_counters();
    cq_health_set_fresh(board, CQ_SVC_FEEDER, cq_clock_mono_ms(cq_clock_system()) - 1234);
    char *text = NULL;
    struct page *p = render_text(&text);
    page_free(p);
    char page_path[600], out_path[600], cmd[6000];
    snprintf(page_path, sizeof(page_path), "%s/metrics.txt", tmpdir);
    snprintf(out_path, sizeof(out_path), "%s/promtool.out", tmpdir);
    FILE *f = fopen(page_path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' > '%s' 2>&1", promtool, page_path,
             out_path);
    int rc = system(cmd);
    char report[8192] = "";
    f = fopen(out_path, "r");
    if (f != NULL) {
        size_t n = fread(report, 1, sizeof(report) - 1, f);
        report[n] = '\0';
        fclose(f);
    }
    cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
              "promtool check metrics rejected /metrics (exit %d):\n%s", WEXITSTATUS(rc), report);
}
