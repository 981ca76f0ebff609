/*
 * test_trader_shell.c — the trader thread's own parts (server/trader/trader.c)
 * that need no exchange: the bounded operator command queue (-CQ_EFULL when
 * full, drained in order by the thread), command names, the reload path
 * (CQ_TRADING_PAUSED / CQ_KILL_SWITCH become the same commands), and the
 * read-only snapshot (none before the thread runs; a deep copy after). The
 * venue URL points at a closed port: every fetch fails fast and the trader
 * stays awaiting its exchangeInfo, which is what these tests want.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq/clock.h"
#include "cq/config.h"
#include "cq/feeder.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/service.h"
#include "cq/trader.h"

static char tmpdir[] = "/tmp/cq-trader-shell-XXXXXX";
static struct cq_health_board *board;
static struct cq_journal *journal;
static struct cq_spsc user_events, signals;

static struct cq_config *load_config(const char *extra)
{
    char *const envp[] = {"CQ_SYMBOLS=BTCUSDT", (char *)extra, NULL};
    struct cq_config_report rep;
    struct cq_config_load_options lopt = {.file_path = NULL, .envp = envp};
    struct cq_config *cfg = cq_config_load(&lopt, &rep);
    cr_assert_not_null(cfg, "config: %s", rep.n_errors > 0 ? rep.errors[0].message : "?");
    return cfg;
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    struct cq_log_options lo = {.dir = NULL,
                                .to_stderr = false,
                                .level = CQ_LOG_ERROR,
                                .max_bytes = 1 << 20,
                                .keep = 2,
                                .ring_lines = 100};
    cr_assert_eq(cq_log_open(&lo, NULL), 0);
    board = cq_health_board_new(NULL, NULL);
    struct cq_journal_options jo = {.dir = tmpdir, .fsync = CQ_JOURNAL_FSYNC_OFF};
    struct cq_err err;
    journal = cq_journal_open(&jo, NULL, &err);
    cr_assert_not_null(journal, "%s", err.message);
    cr_assert_eq(cq_journal_start(journal, &err), 0, "%s", err.message);
    cr_assert_eq(cq_spsc_init(&user_events, 16, sizeof(struct cq_user_event)), 0);
    cr_assert_eq(cq_spsc_init(&signals, 16, sizeof(struct cq_signal)), 0);
}

static void teardown(void)
{
    struct cq_err err;
    if (cq_journal_stop(journal, &err) < 0) {
        fprintf(stderr, "journal stop: %s\n", err.message);
    }
    cq_journal_free(journal);
    cq_spsc_fini(&user_events);
    cq_spsc_fini(&signals);
    cq_health_board_free(board);
    cq_log_close();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

TestSuite(trader_shell, .init = setup, .fini = teardown, .timeout = 60);

static struct cq_trader *make_trader(struct cq_config *cfg)
{
    struct cq_trader_options o = {.cfg = cfg,
                                  .board = board,
                                  .user_events = &user_events,
                                  .signals = &signals,
                                  .journal = journal,
                                  .journal_dir = tmpdir,
                                  .rest_url = "http://127.0.0.1:9"};
    struct cq_err err;
    struct cq_trader *t = cq_trader_new(&o, &err);
    cr_assert_not_null(t, "%s", err.message);
    return t;
}

static uint64_t commands_total(void)
{
    struct cq_health_metrics m;
    cq_health_get_metrics(board, &m);
    return m.trader.commands_total;
}

static void wait_commands(uint64_t n)
{
    for (int i = 0; i < 5000 && commands_total() < n; i++) {
        cq_time_sleep_ms(2);
    }
    cr_assert_eq(commands_total(), n);
}

Test(trader_shell, options_are_checked)
{
    struct cq_err err;
    struct cq_trader_options o = {.board = board};
    cr_expect_null(cq_trader_new(&o, &err));
    cr_expect_eq(err.code, CQ_EINVAL);
    cr_expect_null(cq_trader_new(NULL, &err));
}

Test(trader_shell, command_queue_is_bounded_and_drained_in_order)
{
    struct cq_config *cfg = load_config(NULL);
    struct cq_trader *t = make_trader(cfg);
    /* a snapshot from the start (empty), before the thread runs */
    json_t *orders0 = cq_trader_snapshot_json(t, "orders");
    cr_expect(json_is_array(orders0) && json_array_size(orders0) == 0);
    json_decref(orders0);
    cr_expect_null(cq_trader_snapshot_json(t, "nonsense"));
    /* the thread is not running: the queue fills up to its bound */
    for (int i = 0; i < CQ_TRADER_COMMANDS_MAX; i++) {
        cr_assert_eq(cq_trader_command(t, i % 2 ? CQ_TRADER_CMD_RESUME : CQ_TRADER_CMD_PAUSE, NULL),
                     0, "command %d", i);
    }
    cr_expect_eq(cq_trader_command(t, CQ_TRADER_CMD_KILL, NULL), -CQ_EFULL);
    cr_expect_eq(cq_trader_command(t, CQ_TRADER_CMD_CLEAR_QUARANTINE, "btc"), -CQ_EINVAL);
    cr_expect_eq(cq_trader_command(t, CQ_TRADER_CMD_CLEAR_QUARANTINE, ""), -CQ_EINVAL);
    cr_expect_eq(cq_trader_command(t, CQ_TRADER_CMD_CLEAR_QUARANTINE, NULL), -CQ_EINVAL);
    struct cq_err err;
    cr_assert_eq(cq_service_start(cq_trader_service(t), &err), 0, "%s", err.message);
    wait_commands(CQ_TRADER_COMMANDS_MAX);
    /* drained: room again, and the refused one was counted */
    cr_expect_eq(cq_trader_command(t, CQ_TRADER_CMD_CLEAR_QUARANTINE, "BTCUSDT"), 0);
    wait_commands(CQ_TRADER_COMMANDS_MAX + 1);
    struct cq_health_metrics m;
    for (int i = 0; i < 2000; i++) {
        cq_health_get_metrics(board, &m);
        if (m.trader.commands_refused_total == 1) {
            break;
        }
        cq_time_sleep_ms(2);
    }
    cr_expect_eq(m.trader.commands_refused_total, 1);
    /* the snapshot exists once the thread ran, and is a copy */
    json_t *risk = NULL;
    for (int i = 0; i < 2000 && risk == NULL; i++) {
        risk = cq_trader_snapshot_json(t, "risk");
        cq_time_sleep_ms(2);
    }
    cr_assert_not_null(risk);
    cr_expect_not_null(json_object_get(risk, "limits"));
    json_object_clear(risk); /* ours alone */
    json_decref(risk);
    json_t *again = cq_trader_snapshot_json(t, "risk");
    cr_expect_not_null(json_object_get(again, "limits"), "the published snapshot is untouched");
    json_decref(again);
    cq_service_request_stop(cq_trader_service(t));
    cr_assert_eq(cq_service_join(cq_trader_service(t), 10000), 0);
    cq_trader_free(t);
    cq_config_unref(cfg);
}

Test(trader_shell, command_names)
{
    enum cq_trader_operator_cmd c;
    cr_expect_eq(cq_trader_command_parse("pause", &c), 0);
    cr_expect_eq(c, CQ_TRADER_CMD_PAUSE);
    cr_expect_eq(cq_trader_command_parse("clear_quarantine", &c), 0);
    cr_expect_eq(c, CQ_TRADER_CMD_CLEAR_QUARANTINE);
    cr_expect_eq(cq_trader_command_parse("Pause", &c), -CQ_EINVAL);
    cr_expect_eq(cq_trader_command_parse(NULL, &c), -CQ_EINVAL);
}

/* SIGHUP: a changed CQ_TRADING_PAUSED / CQ_KILL_SWITCH becomes one command
 * each; an unchanged one none. */
Test(trader_shell, reload_maps_paused_and_kill_switch_to_commands)
{
    struct cq_config *cfg = load_config(NULL);
    struct cq_trader *t = make_trader(cfg);
    struct cq_err err;
    cr_assert_eq(cq_service_start(cq_trader_service(t), &err), 0, "%s", err.message);
    cq_trader_reconfigure(t, cfg); /* nothing changed */
    struct cq_config *paused = load_config("CQ_TRADING_PAUSED=on");
    cq_trader_reconfigure(t, paused);
    wait_commands(1);
    cq_trader_reconfigure(t, paused); /* again: no second command */
    struct cq_config *both = load_config("CQ_KILL_SWITCH=on");
    cq_trader_reconfigure(t, both); /* paused off again, kill on: two */
    wait_commands(3);
    cq_time_sleep_ms(50);
    cr_expect_eq(commands_total(), 3);
    cq_service_request_stop(cq_trader_service(t));
    cr_assert_eq(cq_service_join(cq_trader_service(t), 10000), 0);
    cq_trader_free(t);
    cq_config_unref(paused);
    cq_config_unref(both);
    cq_config_unref(cfg);
}
