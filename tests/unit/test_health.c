/*
 * test_health.c — the health board: initial records, publish, freshness,
 * readiness aggregation, readiness_changed logged once per flip, the
 * health files, and every record valid against
 * openapi/schemas/health.v1.json.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cq/health.h"
#include "cq/log.h"
#include "fakes/fake_clock.h"
#include "support/jsonschema.h"

/* 2025-11-21T00:00:00Z */
static struct fake_clock fc = FAKE_CLOCK_INIT(50000, 1763683200000000LL);
static struct cq_clock clk;
static struct cq_health_board *board;
static char tmpdir[] = "/tmp/cq-health-XXXXXX";
static char logdir[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(logdir, sizeof(logdir), "%s/logs", tmpdir);
    struct cq_log_options lo = {.dir = logdir,
                                .to_stderr = false,
                                .level = CQ_LOG_INFO,
                                .max_bytes = 1 << 20,
                                .keep = 2,
                                .ring_lines = 100,
                                .clock = NULL};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    clk = fake_clock_as_clock(&fc);
    board = cq_health_board_new(&clk, NULL);
    cr_assert_not_null(board);
}

static void teardown(void)
{
    cq_health_board_free(board);
    cq_log_close();
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    cr_assert_not_null(j, "%s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

static int count_in_log(const char *needle)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/coinquantd.log", logdir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, needle) != NULL) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static const char *str_of(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

TestSuite(health, .init = setup, .fini = teardown);

Test(health, initial_records_say_not_started)
{
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        json_t *rec = cq_health_record_json(board, (enum cq_service_id)i);
        cr_expect_str_eq(str_of(rec, "service"), cq_health_service_name((enum cq_service_id)i));
        cr_expect_str_eq(str_of(rec, "status"), "starting");
        cr_expect(json_is_false(json_object_get(rec, "ready")));
        cr_expect_str_eq(str_of(rec, "reason"), "not_started");
        json_decref(rec);
    }
    cr_expect_str_eq(cq_health_service_name(CQ_SVC_JOURNAL), "journal");
    cr_expect_str_eq(cq_health_status_name(CQ_HEALTH_DEGRADED), "degraded");
}

Test(health, publish_sets_every_field)
{
    fake_clock_advance_ms(&fc, 1500);
    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_DEGRADED, false, "rate_limited",
                      "weight 1150/1200", json_pack("{s:i}", "used_weight", 1150));
    fake_clock_advance_ms(&fc, 250);
    json_t *rec = cq_health_record_json(board, CQ_SVC_TRADER);
    cr_expect_str_eq(str_of(rec, "status"), "degraded");
    cr_expect_str_eq(str_of(rec, "reason"), "rate_limited");
    cr_expect_str_eq(str_of(rec, "detail"), "weight 1150/1200");
    cr_expect_str_eq(str_of(rec, "updated_at"), "2025-11-21T00:00:01.500000Z");
    cr_expect_eq(json_integer_value(json_object_get(rec, "freshness_ms")), 250);
    cr_expect_eq(
        json_integer_value(json_object_get(json_object_get(rec, "details"), "used_weight")), 1150);
    json_decref(rec);
}

Test(health, explicit_freshness_is_not_reset_by_publish)
{
    int64_t t0 = fake_clock_mono_ms_(&fc);
    cq_health_set_fresh(board, CQ_SVC_FEEDER, t0);
    fake_clock_advance_ms(&fc, 7000);
    cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_DEGRADED, false, "feeder_stale", "", NULL);
    json_t *rec = cq_health_record_json(board, CQ_SVC_FEEDER);
    cr_expect_eq(json_integer_value(json_object_get(rec, "freshness_ms")), 7000);
    json_decref(rec);
}

Test(health, all_ready_lists_every_unready_service)
{
    json_t *reasons = NULL;
    cr_expect_not(cq_health_all_ready(board, &reasons));
    cr_expect_eq(json_array_size(reasons), CQ_SVC__COUNT);
    json_decref(reasons);

    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        cq_health_publish(board, (enum cq_service_id)i, CQ_HEALTH_OK, true, "", "", NULL);
    }
    cq_health_publish(board, CQ_SVC_ARES, CQ_HEALTH_STARTING, false, "warmup", "12/26 bars", NULL);
    cr_expect_not(cq_health_all_ready(board, &reasons));
    cr_assert_eq(json_array_size(reasons), 1);
    json_t *r = json_array_get(reasons, 0);
    cr_expect_str_eq(str_of(r, "service"), "ares");
    cr_expect_str_eq(str_of(r, "reason"), "warmup");
    cr_expect_str_eq(str_of(r, "detail"), "12/26 bars");
    json_decref(reasons);

    cq_health_publish(board, CQ_SVC_ARES, CQ_HEALTH_OK, true, "", "", NULL);
    cr_expect(cq_health_all_ready(board, &reasons));
    cr_expect_eq(json_array_size(reasons), 0);
    json_decref(reasons);
}

Test(health, readiness_change_logged_once_per_flip)
{
    cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_STARTING, false, "binding", "", NULL);
    cr_expect_eq(count_in_log("\"readiness_changed\""), 0, "no flip, no line");
    cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_OK, true, "", "", NULL);
    cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_OK, true, "", "", NULL);
    cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_OK, true, "", "", NULL);
    cr_expect_eq(count_in_log("\"readiness_changed\""), 1);
    cq_health_publish(board, CQ_SVC_API, CQ_HEALTH_DOWN, false, "stalled", "", NULL);
    cr_expect_eq(count_in_log("\"readiness_changed\""), 2);
    cr_expect_eq(count_in_log("\"from\":true,\"to\":false"), 1);
    cr_expect_eq(count_in_log("\"reason\":\"stalled\""), 1);
}

Test(health, records_match_the_schema)
{
    json_t *schema = load_json(CQ_SOURCE_DIR "/openapi/schemas/health.v1.json");
    cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_OK, true, "", "all fresh",
                      json_pack("{s:{s:i}}", "symbols", "BTCUSDT", 120));
    cq_health_publish(board, CQ_SVC_TRADER, CQ_HEALTH_DOWN, false, "stalled", NULL, NULL);
    json_t *all = cq_health_services_json(board);
    cr_assert_eq(json_object_size(all), CQ_SVC__COUNT);
    const char *name;
    json_t *rec;
    json_object_foreach(all, name, rec)
    {
        char why[512];
        cr_expect_eq(cq_jsonschema_validate(schema, rec, why, sizeof(why)), 0, "%s: %s", name, why);
    }
    /* The schema must reject what is not a record. */
    json_t *bad = json_deep_copy(json_object_get(all, "feeder"));
    json_object_set_new(bad, "status", json_string("fine"));
    char why[512];
    cr_expect_neq(cq_jsonschema_validate(schema, bad, why, sizeof(why)), 0);
    json_decref(bad);
    json_decref(all);
    json_decref(schema);
}

Test(health, files_are_written_whole)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/health", tmpdir);
    cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_DEGRADED, false, "ws_disconnected", "x",
                      NULL);
    cr_assert_eq(cq_health_write_files(board, dir, NULL), 0);
    for (int i = 0; i < CQ_SVC__COUNT; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s.json", dir,
                 cq_health_service_name((enum cq_service_id)i));
        json_t *rec = load_json(path);
        cr_expect_str_eq(str_of(rec, "service"), cq_health_service_name((enum cq_service_id)i));
        json_decref(rec);
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/feeder.json", dir);
    json_t *rec = load_json(path);
    cr_expect_str_eq(str_of(rec, "reason"), "ws_disconnected");
    json_decref(rec);
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        files++;
        cr_expect_null(strstr(e->d_name, ".tmp"), "temporary file left: %s", e->d_name);
    }
    closedir(d);
    cr_expect_eq(files, CQ_SVC__COUNT);
}

/* A detail (or reason) longer than its field is cut on a UTF-8 character
 * boundary and marked "...": a cut inside a character made the record
 * invalid UTF-8, jansson refused it and /health answered 500. */
Test(health, long_text_is_cut_on_a_character_boundary)
{
    char detail[CQ_HEALTH_DETAIL_MAX * 2];
    size_t n = 0;
    detail[n++] = 'x'; /* so the 2-byte characters straddle the limit */
    while (n + 2 < sizeof(detail)) {
        detail[n++] = (char)0xC3; /* é */
        detail[n++] = (char)0xA9;
    }
    detail[n] = '\0';
    cq_health_publish(board, CQ_SVC_FEEDER, CQ_HEALTH_OK, true, "", detail, NULL);
    json_t *rec = cq_health_record_json(board, CQ_SVC_FEEDER);
    cr_assert_not_null(rec, "the record with a cut detail is not valid JSON");
    const char *got = json_string_value(json_object_get(rec, "detail"));
    cr_assert_not_null(got);
    size_t len = strlen(got);
    cr_assert_lt(len, CQ_HEALTH_DETAIL_MAX);
    cr_assert_geq(len, CQ_HEALTH_DETAIL_MAX - 6);
    cr_assert_str_eq(got + len - 3, "...", "the cut is not marked: %s", got);
    json_decref(rec);
    json_t *all = cq_health_services_json(board);
    cr_assert_not_null(all, "services JSON fails with a cut detail");
    json_decref(all);
}

/* The counters a service exports come back as they were set; the process's
 * start is recorded before main() and uptime counts from it. */
Test(health, typed_metrics_round_trip)
{
    struct cq_feeder_metrics f = {.books_coalesced_total = 7, .trades_dropped_total = 9};
    cq_health_set_feeder_metrics(board, &f);
    struct cq_ares_metrics a = {.signals_emitted_total = 3, .n_blocked = 99};
    cq_health_set_ares_metrics(board, &a);
    struct cq_health_metrics m;
    cq_health_get_metrics(board, &m);
    cr_assert_eq(m.feeder.books_coalesced_total, 7);
    cr_assert_eq(m.feeder.trades_dropped_total, 9);
    cr_assert_eq(m.ares.signals_emitted_total, 3);
    cr_assert_eq(m.ares.n_blocked, CQ_HEALTH_BLOCK_REASONS_MAX, "n_blocked not bounded");
    cr_assert_eq(m.trader.signals_received_total, 0);

    struct cq_latency_histogram h = {0};
    cq_latency_histogram_observe(&h, 0);
    cq_latency_histogram_observe(&h, cq_latency_bucket_le_ns[0]);     /* on the bound: in */
    cq_latency_histogram_observe(&h, cq_latency_bucket_le_ns[0] + 1); /* next bucket */
    cq_latency_histogram_observe(&h, cq_latency_bucket_le_ns[CQ_LATENCY_BUCKETS - 1] + 1);
    cr_assert_eq(h.bucket[0], 2);
    cr_assert_eq(h.bucket[1], 1);
    cr_assert_eq(h.count, 4);
    cq_latency_histogram_observe(&h, UINT64_MAX);
    cr_assert_eq(h.sum_ns, UINT64_MAX, "the sum must saturate");

    cr_assert_gt(cq_process_start_wall_us(), 0);
    cr_assert_geq(cq_process_uptime_ms(), 0);
    cr_assert_leq(cq_process_start_mono_ms(), cq_clock_mono_ms(cq_clock_system()));
}
