/*
 * supervisor.c — coinquantd's main loop: start order, watchdog, signals,
 * config reload, health files, stop order.
 *
 * Threads (all created and joined here):
 *   main        this loop; the only thread that takes signals (sigtimedwait)
 *   log writer  drains the log queue (cq_log_writer_main)
 *   mhd         libmicrohttpd's internal polling thread (cq_api_start)
 *   feeder, ares, trader   struct cq_service loops
 *   simex (paper mode)     the embedded simulator's REST, WS and market
 *                          threads (cq_sim_start), on ephemeral loopback ports
 *   reload      one per SIGHUP, at most one at a time (cq/reload.h): reads
 *               and checks the config file, so a read that hangs never
 *               keeps this loop from taking SIGTERM
 * Every thread inherits the blocked signal mask set in main.c.
 *
 * Venue: paper mode without CQ_EXCHANGE_REST_URL/WS_URL embeds
 * coinquant-simex; with them it uses that running exchange (how crash tests
 * kill the daemon while the exchange lives on); testnet and live use
 * Binance's URLs. The choice is logged as venue_selected.
 *
 * Embedded simulator credentials: per run, random (RAND_bytes) API key,
 * API secret and /_sim/ control token, kept in one secret buffer (not in
 * core dumps, wiped at exit). The venue client signs with them; configured
 * BINANCE_API_* keys are never used against it (paper_keys_ignored says so,
 * without values). The control token is written to
 * DATA_DIR/sim-control.token (0600) for drills and tests, and removed at
 * stop.
 *
 * Start: feeder -> ARES -> trader. Each is started when the previous one is
 * ready or when CQ_SUPERVISOR_START_WAIT_MS has passed (logged as
 * start_wait_timeout: the later services then start anyway, because each
 * one gates its own work on its upstream's readiness; /readiness stays 503).
 * The wait is part of the loop, so signals and the watchdog work during it.
 *
 * Journal: opened (and recovered) before any service starts; its writer
 * thread runs until the services have stopped; every config load (start,
 * SIGHUP) is journaled as config.loaded.
 *
 * Stop (SIGTERM/SIGINT): trader, ARES, feeder, then the journal (drained,
 * snapshotted), together within CQ_SUPERVISOR_STOP_BUDGET_MS: a thread
 * still running at the deadline (service_stop_timeout,
 * journal_stop_timeout) is left to the process exit and the exit code is
 * 1. Then, not counted in the budget: the embedded simulator, the admin
 * API, a last health-file write, the log writer; exit 0 after a clean stop.
 *
 * Reload (SIGHUP): the config is read again from the same file and the
 * environment, on a reload thread; this loop polls for the result every
 * RELOAD_TICK_MS while it runs. An invalid config is rejected whole
 * (config_reload_failed). Reloadable keys take effect; others are refused
 * (config_reload_refused) and keep their running value; the resulting hash is logged
 * (config_reloaded). A SIGHUP while a reload runs is coalesced
 * (config_reload_coalesced: one more reload follows); a reload running
 * RELOAD_SLOW_MS is logged once (config_reload_slow); at stop a reload
 * still reading gets at most RELOAD_STOP_WAIT_MS of the budget, then is
 * left to the process exit (config_reload_abandoned; the exit code does
 * not change: it only reads).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cq/api.h"
#include "cq/ares.h"
#include "cq/feeder.h"
#include "cq/market.h"
#include "cq/spsc.h"
#include "cq/signal.h"
#include "cq/fs.h"
#include "cq/health.h"
#include "cq/journal.h"
#include "cq/log.h"
#include "cq/reload.h"
#include "cq/service.h"
#include "cq/sim.h"
#include "cq/supervisor.h"
#include "cq/text.h"
#include "cq/trader.h"
#include "cq/version.h"

/* The loop sleeps (sigtimedwait, so a signal ends the sleep at once) until
 * its next deadline: the next health-file write or the moment a service's
 * last beat goes stale (cq_service_watchdog_due_ms). Two phases still poll,
 * because nothing can wake this thread for them: the start order (a
 * service's readiness is a health-board record, which rings no one) every
 * START_TICK_MS, and a running reload (cq_reloader has no doorbell) every
 * RELOAD_TICK_MS. */
#define START_TICK_MS 100
#define RELOAD_TICK_MS 10        /* the loop's tick while a reload runs: its result applies soon */
#define RELOAD_SLOW_MS 5000      /* a reload running this long is logged (config_reload_slow) */
#define RELOAD_STOP_WAIT_MS 1000 /* at stop, wait at most this (and the budget) for a reload */
#define HEALTH_WRITE_MS 1000
#define SIM_BALANCES_MAX 64        /* CQ_SIM_BALANCES entries (the config rule's limit) */
#define PAPER_CRED_RANDOM_BYTES 32 /* per generated credential: 64 hex characters */
#define PAPER_CRED_LEN (2 * PAPER_CRED_RANDOM_BYTES + 1)
#define SIM_CONTROL_TOKEN_FILE "sim-control.token"

/* The embedded simulator's per-run credentials, in a struct cq_secret_buf. */
struct paper_creds {
    char api_key[PAPER_CRED_LEN];
    char api_secret[PAPER_CRED_LEN];
    char control_token[PAPER_CRED_LEN];
};

enum { STAGE_FEEDER, STAGE_ARES, STAGE_TRADER, STAGE__COUNT };

struct supervisor {
    const struct cq_supervisor_options *opts;
    struct cq_config_current *current;       /* owned */
    struct cq_health_board *board;           /* owned */
    struct cq_api *api;                      /* owned */
    struct cq_feeder *feeder;                /* owned */
    struct cq_ares *ares;                    /* owned */
    struct cq_trader *trader;                /* owned */
    _Atomic(struct cq_trader *) api_trader;  /* the trader once built, for the API's callbacks */
    struct cq_service *stages[STAGE__COUNT]; /* borrowed from the three above */
    int next_stage;                          /* index of the next service to start */
    int64_t stage_started_ms;                /* when the last started stage began */
    struct cq_journal *journal;              /* owned: the memory layer */
    bool journal_started;
    struct cq_sim *sim;       /* owned: embedded venue in paper mode, else NULL */
    char venue_rest_url[600]; /* where the feeder and trader connect */
    char venue_ws_url[600];
    char venue_wsapi_url[600]; /* the WebSocket API: the user data stream */
    const char *venue_api_key; /* borrowed (config, paper_creds or simulator default);
                                  NULL = none */
    const char *venue_api_secret;
    struct cq_secret_buf *paper_creds; /* owned: struct paper_creds, embedded simulator only */
    struct cq_sim_balance sim_balances[SIM_BALANCES_MAX];
    char sim_token_path[1200]; /* DATA_DIR/sim-control.token once written, else "" */
    struct cq_spsc to_ares;    /* feeder -> ARES: struct cq_market_event */
    struct cq_spsc to_trader;  /* feeder -> trader: struct cq_user_event */
    struct cq_spsc signals;    /* ARES -> trader: struct cq_signal */
    bool rings_ready;
    pthread_t log_thread;
    bool log_thread_running;
    char data_dir[1025];   /* CQ_DATA_DIR: at most 1024 bytes (config rule) */
    char health_dir[1100]; /* data_dir + "/health": bounded */
    struct cq_log_ratelimit health_write_rl;
    struct cq_reloader *reloader; /* owned: SIGHUP reloads, read on their own thread */
    bool reload_slow_logged;      /* config_reload_slow said for the running reload */
};

static void log_secret(const char *name, const char *value, void *ctx)
{
    (void)name;
    (void)ctx;
    cq_log_add_secret(value);
}

static int open_logs(struct supervisor *sv, const struct cq_config *cfg, struct cq_err *err)
{
    enum cq_log_level level = CQ_LOG_INFO;
    if (cq_log_level_parse(cq_config_str(cfg, CQ_CFG_LOG_LEVEL), &level) < 0) {
        level = CQ_LOG_INFO; /* unreachable: config validation checked it */
    }
    char log_dir[1100];
    snprintf(log_dir, sizeof(log_dir), "%s/logs", sv->data_dir); /* bounded: data_dir <= 1024 */
    struct cq_log_options lo = {
        .dir = log_dir,
        .to_stderr = true,
        .level = level,
        .max_bytes = cq_config_int(cfg, CQ_CFG_LOG_MAX_BYTES),
        .keep = (int)cq_config_int(cfg, CQ_CFG_LOG_KEEP),
        .ring_lines = (size_t)cq_config_int(cfg, CQ_CFG_LOG_RING_LINES),
        .clock = NULL,
    };
    int rc = cq_log_open(&lo, err);
    if (rc < 0) {
        return rc;
    }
    cq_config_foreach_secret(cfg, log_secret, NULL);
    int e = pthread_create(&sv->log_thread, NULL, cq_log_writer_main, NULL);
    if (e != 0) {
        /* The logger keeps writing synchronously; say so and go on. */
        cq_log_warn("supervisor", "log_writer_unavailable",
                    json_pack("{s:s}", "error", strerror(e)),
                    "log writer thread not started; logging synchronously");
    } else {
        sv->log_thread_running = true;
    }
    return 0;
}

static void close_logs(struct supervisor *sv)
{
    if (sv->log_thread_running) {
        cq_log_writer_stop();
        pthread_join(sv->log_thread, NULL);
        sv->log_thread_running = false;
    }
    cq_log_close();
}

/* The admin token: CQ_ADMIN_TOKEN, else DATA_DIR/admin.token (created at
 * first start). The value is registered for redaction, never logged. */
static int resolve_token(struct supervisor *sv, const struct cq_config *cfg, char *token,
                         size_t token_len, struct cq_err *err)
{
    if (cq_config_is_set(cfg, CQ_CFG_ADMIN_TOKEN)) {
        /* fits: the config rule bounds the token to 256 characters */
        if (cq_strlcpy(token, cq_config_str(cfg, CQ_CFG_ADMIN_TOKEN), token_len) >= token_len) {
            return cq_err_set(err, CQ_ETOOBIG, 0, NULL, "CQ_ADMIN_TOKEN does not fit its buffer");
        }
        cq_log_info("api", "admin_token", json_pack("{s:s}", "source", "CQ_ADMIN_TOKEN"),
                    "admin API token from CQ_ADMIN_TOKEN");
        return 0;
    }
    bool created = false;
    int rc = cq_api_token_load_or_create(sv->data_dir, token, token_len, &created, err);
    if (rc < 0) {
        return rc;
    }
    cq_log_add_secret(token);
    char path[1200];
    snprintf(path, sizeof(path), "%s/admin.token", sv->data_dir); /* bounded: data_dir <= 1024 */
    cq_log_info("api", created ? "admin_token_created" : "admin_token_loaded",
                json_pack("{s:s}", "path", path),
                "admin API token %s %s (send it as Authorization: Bearer <token>)",
                created ? "written to" : "read from", path);
    return 0;
}

/* The admin API's view of the trader (libmicrohttpd's thread): the
 * snapshot and the command queue, both safe from any thread. Before the
 * trader is built they answer "not yet". */
static json_t *api_trader_view(void *ctx, const char *what)
{
    struct supervisor *sv = ctx;
    struct cq_trader *t = atomic_load_explicit(&sv->api_trader, memory_order_acquire);
    return t != NULL ? cq_trader_snapshot_json(t, what) : NULL;
}

static int api_trader_command(void *ctx, const char *cmd, const char *symbol)
{
    struct supervisor *sv = ctx;
    struct cq_trader *t = atomic_load_explicit(&sv->api_trader, memory_order_acquire);
    enum cq_trader_operator_cmd c;
    if (t == NULL) {
        return -CQ_EAGAIN;
    }
    if (cq_trader_command_parse(cmd, &c) < 0) {
        return -CQ_EINVAL;
    }
    return cq_trader_command(t, c, symbol);
}

static int start_api(struct supervisor *sv, const struct cq_config *cfg, struct cq_err *err)
{
    char token[300];
    int rc = resolve_token(sv, cfg, token, sizeof(token), err);
    if (rc < 0) {
        return rc;
    }
    struct cq_api_options ao = {
        .board = sv->board,
        .config = sv->current,
        .clock = NULL,
        .version = cq_version(),
        .token = token,
        .bind = cq_config_str(cfg, CQ_CFG_ADMIN_BIND),
        .data_dir = sv->data_dir,
        .max_connections = (unsigned)cq_config_int(cfg, CQ_CFG_ADMIN_MAX_CONNECTIONS),
        .timeout_s = (unsigned)cq_config_int(cfg, CQ_CFG_ADMIN_TIMEOUT_S),
        .max_body_bytes = (size_t)cq_config_int(cfg, CQ_CFG_ADMIN_MAX_BODY_BYTES),
        .trader_view = api_trader_view,
        .trader_command = api_trader_command,
        .trader_ctx = sv,
    };
    sv->api = cq_api_new(&ao, err);
    OPENSSL_cleanse(token, sizeof(token)); /* not left on the stack */
    if (sv->api == NULL) {
        return -(err != NULL ? err->code : CQ_EIO);
    }
    rc = cq_api_start(sv->api, err);
    if (rc < 0) {
        return rc;
    }
    char detail[CQ_HEALTH_DETAIL_MAX];
    /* an address is at most [v6]:port, far below CQ_HEALTH_DETAIL_MAX */
    snprintf(detail, sizeof(detail), "listening on %s", cq_api_address(sv->api));
    cq_health_publish(sv->board, CQ_SVC_API, CQ_HEALTH_OK, true, "", detail,
                      json_pack("{s:s}", "address", cq_api_address(sv->api)));
    return 0;
}

/* Journal a config load (start or SIGHUP): the hash and mode, never a
 * secret. */
static void journal_config(struct supervisor *sv, const struct cq_config *cfg, const char *why)
{
    if (sv->journal == NULL) {
        return;
    }
    char text[256]; /* bounded: a 12-character hash, a mode name, "start"/"reload" */
    int n = snprintf(text, sizeof(text), "{\"config_hash\":\"%s\",\"mode\":\"%s\",\"why\":\"%s\"}",
                     cq_config_hash(cfg), cq_mode_name(cq_config_mode(cfg)), why);
    uint64_t seq = 0;
    if (cq_journal_append(sv->journal, CQ_REC_CONFIG_LOADED, "global", text, (size_t)n, &seq) < 0) {
        cq_log_warn("supervisor", "journal_append_failed",
                    json_pack("{s:s}", "type", "config.loaded"),
                    "could not journal the config load");
    }
}

/* Open DATA_DIR/journal: recovery (snapshot + tail, torn tail cut,
 * corruption quarantined) happens here, before any service runs. */
static int open_journal(struct supervisor *sv, const struct cq_config *cfg, struct cq_err *err)
{
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/journal", sv->data_dir);        /* bounded: data_dir <= 1024 */
    const char *policy = cq_config_str(cfg, CQ_CFG_JOURNAL_FSYNC); /* validated */
    enum cq_journal_fsync fsync_policy = strcmp(policy, "always") == 0 ? CQ_JOURNAL_FSYNC_ALWAYS
                                         : strcmp(policy, "off") == 0  ? CQ_JOURNAL_FSYNC_OFF
                                                                       : CQ_JOURNAL_FSYNC_GROUP;
    struct cq_journal_options jo = {
        .dir = dir,
        .fsync = fsync_policy,
        .segment_max_bytes = (uint64_t)cq_config_int(cfg, CQ_CFG_JOURNAL_SEGMENT_MAX_BYTES),
        .snapshot_every_records =
            (uint64_t)cq_config_int(cfg, CQ_CFG_JOURNAL_SNAPSHOT_EVERY_RECORDS),
        .snapshot_every_ms = cq_config_int(cfg, CQ_CFG_JOURNAL_SNAPSHOT_EVERY_MS),
        .keep_snapshots = (unsigned)cq_config_int(cfg, CQ_CFG_JOURNAL_KEEP_SNAPSHOTS),
        .board = sv->board,
    };
    struct cq_journal_recovery rec;
    memset(&rec, 0, sizeof(rec));
    sv->journal = cq_journal_open(&jo, &rec, err);
    if (sv->journal == NULL) {
        return -err->code;
    }
    cq_log_info("journal", "journal_opened",
                json_pack("{s:s,s:s,s:I,s:I,s:I,s:b,s:I,s:s}", "dir", dir, "fsync", policy,
                          "snapshot_seq", (json_int_t)rec.snapshot_seq, "replayed",
                          (json_int_t)rec.replayed_records, "last_seq", (json_int_t)rec.last_seq,
                          "torn_tail_truncated", rec.torn_tail_truncated, "quarantined",
                          (json_int_t)rec.n_quarantined, "first_corruption", rec.first_corruption),
                "journal recovered: last seq %llu (%llu replayed on snapshot %llu)",
                (unsigned long long)rec.last_seq, (unsigned long long)rec.replayed_records,
                (unsigned long long)rec.snapshot_seq);
    int rc = cq_journal_start(sv->journal, err);
    if (rc < 0) {
        return rc;
    }
    sv->journal_started = true;
    return 0;
}

/* 2 * PAPER_CRED_RANDOM_BYTES hex characters of RAND_bytes into out
 * (PAPER_CRED_LEN bytes). */
static int random_hex(char out[PAPER_CRED_LEN], struct cq_err *err)
{
    unsigned char raw[PAPER_CRED_RANDOM_BYTES];
    if (RAND_bytes(raw, (int)sizeof(raw)) != 1) {
        return cq_err_set(err, CQ_EIO, 0, "check the system's entropy source (getrandom)",
                          "cannot generate the paper-mode credentials: RAND_bytes failed");
    }
    cq_text_hex_encode(raw, sizeof(raw), out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

/* Generate the embedded simulator's per-run credentials and write the
 * control token to DATA_DIR/sim-control.token (0600, atomically). */
static int make_paper_creds(struct supervisor *sv, const struct cq_config *cfg,
                            struct paper_creds **out, struct cq_err *err)
{
    sv->paper_creds = cq_secret_buf_new(sizeof(struct paper_creds));
    if (sv->paper_creds == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the paper-mode credentials");
    }
    struct paper_creds *pc = (struct paper_creds *)(void *)sv->paper_creds->data;
    int rc = random_hex(pc->api_key, err);
    if (rc == 0) {
        rc = random_hex(pc->api_secret, err);
    }
    if (rc == 0) {
        rc = random_hex(pc->control_token, err);
    }
    if (rc < 0) {
        return rc;
    }
    cq_log_add_secret(pc->api_secret);
    cq_log_add_secret(pc->control_token);
    if (cq_config_is_set(cfg, CQ_CFG_BINANCE_API_KEY) ||
        cq_config_is_set(cfg, CQ_CFG_BINANCE_API_SECRET)) {
        cq_log_warn("supervisor", "paper_keys_ignored",
                    json_pack("{s:[s,s]}", "keys", "BINANCE_API_KEY", "BINANCE_API_SECRET"),
                    "paper mode with the embedded simulator: BINANCE_API_KEY/BINANCE_API_SECRET "
                    "are set but not used; the simulator and the venue client use generated "
                    "per-run credentials");
    }
    char path[sizeof(sv->sim_token_path)];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", sv->data_dir, SIM_CONTROL_TOKEN_FILE) >=
        sizeof(path)) {
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter CQ_DATA_DIR",
                          "data directory path too long for %s", SIM_CONTROL_TOKEN_FILE);
    }
    char line[PAPER_CRED_LEN + 1];
    /* bounded: the token is PAPER_CRED_LEN - 1 characters */
    int n = snprintf(line, sizeof(line), "%s\n", pc->control_token);
    rc = cq_fs_write_atomic(path, line, (size_t)n, 0600, 1, err);
    OPENSSL_cleanse(line, sizeof(line));
    if (rc < 0) {
        return rc;
    }
    memcpy(sv->sim_token_path, path, sizeof(path));
    cq_log_info("supervisor", "sim_control_token_written", json_pack("{s:s}", "path", path),
                "embedded simulator's /_sim/ control token written to %s (send it as "
                "Authorization: Bearer <token>)",
                path);
    *out = pc;
    return 0;
}

/* Paper mode without CQ_EXCHANGE_*_URL: start coinquant-simex in-process on
 * ephemeral loopback ports, with per-run credentials. */
static int start_sim(struct supervisor *sv, const struct cq_config *cfg, struct cq_err *err)
{
    struct paper_creds *pc = NULL;
    int rc = make_paper_creds(sv, cfg, &pc, err);
    if (rc < 0) {
        return rc;
    }
    size_t n_balances = 0;
    rc = cq_sim_parse_balances(cq_config_str(cfg, CQ_CFG_SIM_BALANCES), sv->sim_balances,
                               CQ_ARRAY_LEN(sv->sim_balances), &n_balances, err);
    if (rc < 0) {
        return rc;
    }
    const char *const *symbols = NULL;
    size_t n_symbols = cq_config_symbols(cfg, &symbols);
    const char *speed = cq_config_str(cfg, CQ_CFG_SIM_SPEED);
    struct cq_sim_options so = {
        .bind = "127.0.0.1",
        .symbols = symbols,
        .n_symbols = n_symbols,
        .data_path =
            cq_config_is_set(cfg, CQ_CFG_SIM_DATA) ? cq_config_str(cfg, CQ_CFG_SIM_DATA) : NULL,
        .speed_max = strcmp(speed, "max") == 0,
        .speed = 1,
        .seed = (uint64_t)cq_config_int(cfg, CQ_CFG_SIM_SEED),
        .api_key = pc->api_key,
        .api_secret = pc->api_secret,
        .control_token = pc->control_token,
        .balances = sv->sim_balances,
        .n_balances = n_balances,
        /* validated: 0..10000 (the engine's own limit) */
        .maker_bps = (unsigned)cq_config_int(cfg, CQ_CFG_SIM_MAKER_FEE_BPS),
        .taker_bps = (unsigned)cq_config_int(cfg, CQ_CFG_SIM_TAKER_FEE_BPS),
    };
    if (!so.speed_max) {
        so.speed = (uint32_t)strtoul(speed, NULL, 10); /* validated: 1..1000000 */
    }
    sv->sim = cq_sim_new(&so, err);
    if (sv->sim == NULL) {
        return -err->code;
    }
    rc = cq_sim_start(sv->sim, err);
    if (rc < 0) {
        return rc;
    }
    sv->venue_api_key = pc->api_key;
    sv->venue_api_secret = pc->api_secret;
    if (cq_strlcpy(sv->venue_rest_url, cq_sim_rest_url(sv->sim), sizeof(sv->venue_rest_url)) >=
            sizeof(sv->venue_rest_url) ||
        cq_strlcpy(sv->venue_ws_url, cq_sim_ws_url(sv->sim), sizeof(sv->venue_ws_url)) >=
            sizeof(sv->venue_ws_url) ||
        snprintf(sv->venue_wsapi_url, sizeof(sv->venue_wsapi_url), "%s/ws-api/v3",
                 cq_sim_ws_url(sv->sim)) >= (int)sizeof(sv->venue_wsapi_url)) {
        return cq_err_set(err, CQ_ETOOBIG, 0, NULL, "the embedded simulator's URL is too long");
    }
    cq_log_info("supervisor", "venue_selected",
                json_pack("{s:s,s:s,s:s,s:b,s:s}", "rest", sv->venue_rest_url, "ws",
                          sv->venue_ws_url, "wsapi", sv->venue_wsapi_url, "embedded_simex", true,
                          "credentials", "generated per run"),
                "embedded simulator venue: %s, %s, %s", sv->venue_rest_url, sv->venue_ws_url,
                sv->venue_wsapi_url);
    return 0;
}

/* Paper mode without CQ_EXCHANGE_*_URL: start coinquant-simex in-process on
 * ephemeral loopback ports, so paper trading exercises the real HTTP, WS and
 * signing code. Otherwise the venue is the configured (or the mode's
 * default) exchange. */
static int start_venue(struct supervisor *sv, const struct cq_config *cfg, struct cq_err *err)
{
    enum cq_mode mode = cq_config_mode(cfg);
    bool embedded = mode == CQ_MODE_PAPER && !cq_config_is_set(cfg, CQ_CFG_EXCHANGE_REST_URL);
    /* Credentials: the embedded simulator gets generated ones (start_sim);
     * otherwise the configured ones, or in paper mode against an external
     * simulator without them, its documented local-only defaults. */
    if (embedded) {
        return start_sim(sv, cfg, err);
    }
    if (cq_config_is_set(cfg, CQ_CFG_BINANCE_API_KEY)) {
        sv->venue_api_key = cq_config_str(cfg, CQ_CFG_BINANCE_API_KEY);
        sv->venue_api_secret = cq_config_str(cfg, CQ_CFG_BINANCE_API_SECRET);
    } else if (mode == CQ_MODE_PAPER) {
        sv->venue_api_key = CQ_SIM_DEFAULT_API_KEY;
        sv->venue_api_secret = CQ_SIM_DEFAULT_API_SECRET;
    }
    /* Bounded: the config rule limits URLs to 512 bytes; the buffers hold
     * 600, and the literals below are shorter still. */
    _Static_assert(sizeof(((struct supervisor *)0)->venue_rest_url) > 512, "URL buffer");
    if (cq_config_is_set(cfg, CQ_CFG_EXCHANGE_REST_URL)) {
        cq_strlcpy(sv->venue_rest_url, cq_config_str(cfg, CQ_CFG_EXCHANGE_REST_URL),
                   sizeof(sv->venue_rest_url));
        cq_strlcpy(sv->venue_ws_url, cq_config_str(cfg, CQ_CFG_EXCHANGE_WS_URL),
                   sizeof(sv->venue_ws_url));
    } else if (mode == CQ_MODE_TESTNET) {
        cq_strlcpy(sv->venue_rest_url, "https://testnet.binance.vision",
                   sizeof(sv->venue_rest_url));
        cq_strlcpy(sv->venue_ws_url, "wss://stream.testnet.binance.vision",
                   sizeof(sv->venue_ws_url));
    } else {
        cq_strlcpy(sv->venue_rest_url, "https://api.binance.com", sizeof(sv->venue_rest_url));
        cq_strlcpy(sv->venue_ws_url, "wss://stream.binance.com:9443", sizeof(sv->venue_ws_url));
    }
    /* The WebSocket API (user data, protocol §5.0 and §6): configured, else
     * the configured WS base's /ws-api/v3 (an external simulator), else the
     * mode's default. 512-byte URLs + 11 bytes fit the 600-byte buffer. */
    if (cq_config_is_set(cfg, CQ_CFG_EXCHANGE_WSAPI_URL)) {
        cq_strlcpy(sv->venue_wsapi_url, cq_config_str(cfg, CQ_CFG_EXCHANGE_WSAPI_URL),
                   sizeof(sv->venue_wsapi_url));
    } else if (cq_config_is_set(cfg, CQ_CFG_EXCHANGE_WS_URL)) {
        int n = snprintf(sv->venue_wsapi_url, sizeof(sv->venue_wsapi_url), "%s/ws-api/v3",
                         sv->venue_ws_url);
        if (n < 0 || (size_t)n >= sizeof(sv->venue_wsapi_url)) {
            return cq_err_set(err, CQ_ETOOBIG, 0, "set CQ_EXCHANGE_WSAPI_URL",
                              "CQ_EXCHANGE_WS_URL + /ws-api/v3 is too long");
        }
    } else if (mode == CQ_MODE_TESTNET) {
        cq_strlcpy(sv->venue_wsapi_url, "wss://ws-api.testnet.binance.vision/ws-api/v3",
                   sizeof(sv->venue_wsapi_url));
    } else {
        cq_strlcpy(sv->venue_wsapi_url, "wss://ws-api.binance.com:443/ws-api/v3",
                   sizeof(sv->venue_wsapi_url));
    }
    cq_log_info("supervisor", "venue_selected",
                json_pack("{s:s,s:s,s:s,s:b}", "rest", sv->venue_rest_url, "ws", sv->venue_ws_url,
                          "wsapi", sv->venue_wsapi_url, "embedded_simex", false),
                "exchange venue: %s, %s, %s", sv->venue_rest_url, sv->venue_ws_url,
                sv->venue_wsapi_url);
    return 0;
}

#define TO_ARES_CAPACITY 65536  /* market events (~180 B each) */
#define TO_TRADER_CAPACITY 1024 /* user data events (2 KiB each) */
#define SIGNALS_CAPACITY 1024   /* signals (never dropped: ARES holds them when full) */

static int build_services(struct supervisor *sv, struct cq_config *cfg, struct cq_err *err)
{
    int rc = cq_spsc_init(&sv->to_ares, TO_ARES_CAPACITY, sizeof(struct cq_market_event));
    if (rc == 0) {
        rc = cq_spsc_init(&sv->to_trader, TO_TRADER_CAPACITY, sizeof(struct cq_user_event));
        if (rc < 0) {
            cq_spsc_fini(&sv->to_ares);
        }
    }
    if (rc == 0) {
        rc = cq_spsc_init(&sv->signals, SIGNALS_CAPACITY, sizeof(struct cq_signal));
        if (rc < 0) {
            cq_spsc_fini(&sv->to_ares);
            cq_spsc_fini(&sv->to_trader);
        }
    }
    if (rc < 0) {
        return cq_err_set(err, -rc, 0, NULL, "allocating the service rings");
    }
    sv->rings_ready = true;
    struct cq_feeder_options fo = {
        .cfg = cfg,
        .board = sv->board,
        .rest_url = sv->venue_rest_url,
        .ws_url = sv->venue_ws_url,
        .wsapi_url = sv->venue_wsapi_url,
        .api_key = sv->venue_api_key,
        .api_secret = sv->venue_api_secret,
        .to_ares = &sv->to_ares,
        .to_trader = &sv->to_trader,
        .clock = NULL,
    };
    sv->feeder = cq_feeder_new(&fo, err);
    if (sv->feeder == NULL) {
        return -err->code;
    }
    struct cq_ares_options ao = {
        .cfg = cfg,
        .board = sv->board,
        .from_feeder = &sv->to_ares,
        .to_trader = &sv->signals,
        .journal = sv->journal,
        .clock = NULL,
    };
    sv->ares = cq_ares_new(&ao, err);
    if (sv->ares == NULL) {
        return -err->code;
    }
    char journal_dir[1100];
    snprintf(journal_dir, sizeof(journal_dir), "%s/journal", sv->data_dir); /* bounded */
    struct cq_trader_options to = {
        .cfg = cfg,
        .board = sv->board,
        .user_events = &sv->to_trader,
        .signals = &sv->signals,
        .journal = sv->journal,
        .journal_dir = journal_dir,
        .rest_url = sv->venue_rest_url,
        .api_key = sv->venue_api_key,
        .api_secret = sv->venue_api_secret,
        .clock = NULL,
    };
    sv->trader = cq_trader_new(&to, err);
    if (sv->trader == NULL) {
        return -err->code;
    }
    atomic_store_explicit(&sv->api_trader, sv->trader, memory_order_release);
    sv->stages[STAGE_FEEDER] = cq_feeder_service(sv->feeder);
    sv->stages[STAGE_ARES] = cq_ares_service(sv->ares);
    sv->stages[STAGE_TRADER] = cq_trader_service(sv->trader);
    return 0;
}

/* Start the next service when the previous one is ready or its wait ran
 * out. Returns a negative code if a thread could not be created. */
static int advance_start(struct supervisor *sv, int64_t now_ms, int64_t wait_ms, struct cq_err *err)
{
    if (sv->next_stage >= STAGE__COUNT) {
        return 0;
    }
    if (sv->next_stage > 0) {
        struct cq_service *prev = sv->stages[sv->next_stage - 1];
        enum cq_service_id prev_id = cq_service_id_of(prev);
        if (!cq_health_is_ready(sv->board, prev_id)) {
            if (now_ms - sv->stage_started_ms < wait_ms) {
                return 0;
            }
            json_t *rec = cq_health_record_json(sv->board, prev_id);
            cq_log_warn(
                cq_health_service_name(prev_id), "start_wait_timeout",
                json_pack("{s:s,s:I,s:O}", "next",
                          cq_health_service_name(cq_service_id_of(sv->stages[sv->next_stage])),
                          "waited_ms", (json_int_t)(now_ms - sv->stage_started_ms), "reason",
                          json_object_get(rec, "reason")),
                "%s not ready after %lld ms; starting the next service anyway",
                cq_health_service_name(prev_id), (long long)(now_ms - sv->stage_started_ms));
            json_decref(rec);
        }
    }
    struct cq_service *svc = sv->stages[sv->next_stage];
    int rc = cq_service_start(svc, err);
    if (rc < 0) {
        return rc;
    }
    cq_log_info(cq_health_service_name(cq_service_id_of(svc)), "service_started", NULL,
                "%s thread started", cq_health_service_name(cq_service_id_of(svc)));
    sv->next_stage++;
    sv->stage_started_ms = now_ms;
    return 0;
}

static void write_health_files(struct supervisor *sv, int64_t now_ms)
{
    struct cq_err err;
    if (cq_health_write_files(sv->board, sv->health_dir, &err) < 0) {
        uint64_t suppressed = 0;
        if (cq_log_ratelimit_allow(&sv->health_write_rl, now_ms, &suppressed)) {
            cq_log_error("supervisor", "health_write_failed",
                         json_pack("{s:s,s:s,s:I}", "dir", sv->health_dir, "hint", err.hint,
                                   "suppressed", (json_int_t)suppressed),
                         "cannot write health files: %s", err.message);
        }
    }
}

struct reload_ctx {
    json_t *refused;
    json_t *changed;
};

static void on_refused(const struct cq_config_key *key, void *ctx)
{
    struct reload_ctx *rc = ctx;
    json_array_append_new(rc->refused, json_string(key->name));
    cq_log_warn("supervisor", "config_reload_refused",
                json_pack("{s:s,s:s}", "key", key->name, "hint",
                          "this key is not reloadable: restart coinquantd to apply it"),
                "%s changed but is not reloadable; keeping the running value", key->name);
}

static void on_changed(const struct cq_config_key *key, const char *old_value,
                       const char *new_value, void *ctx)
{
    struct reload_ctx *rc = ctx;
    (void)old_value;
    (void)new_value;
    json_array_append_new(rc->changed, json_string(key->name));
}

static void apply_reloadable(struct supervisor *sv, const struct cq_config *cfg)
{
    enum cq_log_level level;
    if (cq_log_level_parse(cq_config_str(cfg, CQ_CFG_LOG_LEVEL), &level) == 0) {
        cq_log_set_level(level);
    }
    cq_log_set_rotation(cq_config_int(cfg, CQ_CFG_LOG_MAX_BYTES),
                        (int)cq_config_int(cfg, CQ_CFG_LOG_KEEP));
    cq_feeder_reconfigure(sv->feeder, cfg);
    cq_ares_reconfigure(sv->ares, cfg);
    cq_trader_reconfigure(sv->trader, cfg); /* CQ_TRADING_PAUSED, CQ_KILL_SWITCH */
    /* CQ_WATCHDOG_STALL_MS is read from the current config every tick. */
}

static void log_config_warnings(const struct cq_config_report *report)
{
    for (size_t i = 0; report != NULL && i < report->n_warnings; i++) {
        const struct cq_config_problem *p = &report->warnings[i];
        cq_log_warn("supervisor", "config_warning",
                    json_pack("{s:s,s:s}", "key", p->key, "hint", p->hint), "%s", p->message);
    }
}

/* SIGHUP: start a reload on its own thread (issue 17.3: a read that hangs,
 * a file on a hung NFS or FUSE mount, must not keep this thread, the only
 * one that takes SIGTERM, from taking it). The reload reads the same file
 * and the process environment (secrets were removed from it at start)
 * followed by the secret entries main.c saved (opts->secret_envp), so a
 * reload sees the same secrets as the start. A SIGHUP while one runs is
 * coalesced: one more reload follows it. */
static void reload_start(struct supervisor *sv)
{
    struct cq_err err;
    cq_err_clear(&err);
    if (sv->reloader == NULL) {
        sv->reloader =
            cq_reloader_new(sv->opts->config_path, sv->opts->envp, sv->opts->secret_envp);
        if (sv->reloader == NULL) {
            cq_log_error("supervisor", "config_reload_failed", NULL,
                         "SIGHUP: out of memory; keeping the running config");
            return;
        }
    }
    int64_t running_ms = cq_reloader_running_ms(sv->reloader);
    int rc = cq_reloader_request(sv->reloader, &err);
    if (rc == CQ_RELOAD_COALESCED) {
        cq_log_info("supervisor", "config_reload_coalesced",
                    json_pack("{s:I}", "running_ms", (json_int_t)running_ms),
                    "SIGHUP: a reload is already running (%lld ms); one more follows it",
                    (long long)running_ms);
    } else if (rc < 0) {
        cq_log_error("supervisor", "config_reload_failed", json_pack("{s:s}", "hint", err.hint),
                     "SIGHUP: %s; keeping the running config", err.message);
    } else {
        sv->reload_slow_logged = false;
    }
}

/* Apply what a reload read, on this thread as before: log its problems, or
 * merge, apply, journal, publish and log config_reloaded. */
static void reload_apply(struct supervisor *sv, struct cq_reload_result *res)
{
    struct cq_config_report *report = res->report;
    log_config_warnings(report);
    struct cq_config *fresh = res->config;
    res->config = NULL; /* ours now */
    if (fresh == NULL) {
        json_t *errors = json_array();
        for (size_t i = 0; i < report->n_errors; i++) {
            const struct cq_config_problem *p = &report->errors[i];
            json_array_append_new(errors, json_pack("{s:s,s:s,s:s,s:s}", "key", p->key, "value",
                                                    p->value, "rule", p->rule, "hint", p->hint));
            cq_log_error(
                "supervisor", "config_error",
                json_pack("{s:s,s:s,s:s}", "key", p->key, "rule", p->rule, "hint", p->hint), "%s",
                p->message);
        }
        cq_log_error(
            "supervisor", "config_reload_failed",
            json_pack("{s:o,s:I}", "errors", errors, "count", (json_int_t)report->n_errors),
            "SIGHUP: the config has %zu error(s); keeping the running config", report->n_errors);
        return;
    }
    struct cq_config *old = cq_config_current_get(sv->current);
    struct reload_ctx rctx = {json_array(), json_array()};
    struct cq_config *merged = cq_config_merge_reload(old, fresh, on_refused, &rctx);
    cq_config_unref(fresh);
    if (merged == NULL) {
        cq_log_error("supervisor", "config_reload_failed", NULL,
                     "SIGHUP: out of memory building the new config; keeping the running one");
        json_decref(rctx.refused);
        json_decref(rctx.changed);
        cq_config_unref(old);
        return;
    }
    cq_config_diff(old, merged, on_changed, &rctx);
    cq_config_foreach_secret(merged, log_secret, NULL);
    apply_reloadable(sv, merged);
    /* Journal, then publish, then log: once config_reloaded is in the log,
     * /health and /config already answer with the new hash. */
    journal_config(sv, merged, "reload");
    cq_config_ref(merged);
    cq_config_current_set(sv->current, merged);
    cq_log_info("supervisor", "config_reloaded",
                json_pack("{s:s,s:s,s:o,s:o}", "old_hash", cq_config_hash(old), "config_hash",
                          cq_config_hash(merged), "changed", rctx.changed, "refused", rctx.refused),
                "SIGHUP: config reloaded, hash %s -> %s", cq_config_hash(old),
                cq_config_hash(merged));
    cq_config_unref(old);
    cq_config_unref(merged);
}

/* Every tick: apply a finished reload (and start the one a coalesced
 * SIGHUP asked for); say once when one runs long. */
static void reload_poll(struct supervisor *sv)
{
    if (sv->reloader == NULL) {
        return;
    }
    struct cq_reload_result res = {0};
    bool again = false;
    if (cq_reloader_poll(sv->reloader, &res, &again)) {
        if (res.report == NULL) { /* unreachable: a started reload has a report */
            cq_reload_result_fini(&res);
            return;
        }
        reload_apply(sv, &res);
        cq_reload_result_fini(&res);
        if (again) {
            reload_start(sv);
        }
        return;
    }
    int64_t running_ms = cq_reloader_running_ms(sv->reloader);
    if (running_ms >= RELOAD_SLOW_MS && !sv->reload_slow_logged) {
        sv->reload_slow_logged = true;
        cq_log_warn("supervisor", "config_reload_slow",
                    json_pack("{s:s?,s:I,s:s}", "file", sv->opts->config_path, "running_ms",
                              (json_int_t)running_ms, "hint",
                              "check the file system that holds the config file (a hung "
                              "mount?); SIGTERM still stops coinquantd"),
                    "SIGHUP: reading the config has taken %lld ms so far", (long long)running_ms);
    }
}

static int64_t stall_ms_now(struct supervisor *sv)
{
    struct cq_config *cfg = cq_config_current_get(sv->current);
    int64_t v = cq_config_int(cfg, CQ_CFG_WATCHDOG_STALL_MS);
    cq_config_unref(cfg);
    return v;
}

/* How long the main loop may sleep from now: to the next health-file write
 * or watchdog verdict, or one poll tick while starting or reloading (see
 * START_TICK_MS). At least 1 ms, at most HEALTH_WRITE_MS. */
static int64_t loop_wait_ms(struct supervisor *sv, int64_t now, int64_t last_health_write,
                            int64_t stall_ms)
{
    int64_t wait = last_health_write + HEALTH_WRITE_MS - now;
    for (int i = 0; i < sv->next_stage; i++) {
        int64_t due = cq_service_watchdog_due_ms(sv->stages[i], now, stall_ms);
        if (due >= 0 && due < wait) {
            wait = due;
        }
    }
    if (sv->next_stage < STAGE__COUNT && wait > START_TICK_MS) {
        wait = START_TICK_MS;
    }
    if (cq_reloader_running_ms(sv->reloader) >= 0 && wait > RELOAD_TICK_MS) {
        wait = RELOAD_TICK_MS;
    }
    if (wait > HEALTH_WRITE_MS) {
        wait = HEALTH_WRITE_MS;
    }
    return wait < 1 ? 1 : wait;
}

/* Stop the started services in reverse order within the budget. Returns
 * false if one overran it. */
static bool stop_services(struct supervisor *sv, int64_t deadline_ms)
{
    bool clean = true;
    for (int i = sv->next_stage - 1; i >= 0; i--) {
        struct cq_service *svc = sv->stages[i];
        const char *name = cq_health_service_name(cq_service_id_of(svc));
        cq_service_request_stop(svc);
        int64_t left = deadline_ms - cq_time_mono_ms();
        if (cq_service_join(svc, left > 0 ? left : 0) < 0) {
            clean = false;
            cq_log_error(name, "service_stop_timeout", NULL,
                         "%s did not stop within the stop budget", name);
        } else {
            cq_log_info(name, "service_stopped", NULL, "%s stopped", name);
        }
    }
    return clean;
}

static void free_all(struct supervisor *sv)
{
    cq_sim_free(sv->sim);
    cq_secret_buf_free(sv->paper_creds); /* wiped */
    cq_api_free(sv->api);
    atomic_store_explicit(&sv->api_trader, NULL, memory_order_release);
    cq_trader_free(sv->trader);
    cq_ares_free(sv->ares);
    cq_feeder_free(sv->feeder);
    cq_journal_free(sv->journal);
    if (sv->rings_ready) {
        cq_spsc_fini(&sv->to_ares);
        cq_spsc_fini(&sv->to_trader);
        cq_spsc_fini(&sv->signals);
    }
    cq_health_board_free(sv->board);
    cq_config_current_free(sv->current);
}

/* What main.c's hardening left in place (issue 9.10), read back from the
 * kernel: dumpable 0 and a core limit of 0 unless CQ_ALLOW_CORE_DUMPS=on. */
static void log_core_dumps(const struct cq_config *cfg)
{
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    struct rlimit rl = {0, 0};
    long long core_limit = getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                               ? (long long)rl.rlim_cur
                               : -1;
    bool allowed = cq_config_onoff(cfg, CQ_CFG_ALLOW_CORE_DUMPS);
    cq_log_info("supervisor", "core_dumps",
                json_pack("{s:b,s:i,s:I}", "allowed", allowed, "dumpable", dumpable,
                          "core_limit_bytes", (json_int_t)core_limit),
                allowed ? "core dumps allowed (CQ_ALLOW_CORE_DUMPS=on): a core file may hold "
                          "secrets"
                        : "core dumps disabled (the process is not dumpable); secrets are "
                          "removed from the environment");
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "signal";
    }
}

int cq_supervisor_run(struct cq_config *cfg, const struct cq_supervisor_options *opts)
{
    struct supervisor sv;
    struct cq_err err;
    int exit_code = 0;
    bool overran = false; /* a service thread outlived the stop budget */
    int64_t stop_started_ms = 0;
    memset(&sv, 0, sizeof(sv));
    cq_err_clear(&err);
    sv.opts = opts;
    sv.health_write_rl.window_ms = CQ_MS_PER_MINUTE;
    sv.health_write_rl.burst = 1;
    /* bounded: the config rule limits CQ_DATA_DIR to 1024 bytes (the buffer
     * holds 1025), and health_dir 1100 holds it and "/health" */
    _Static_assert(sizeof(sv.data_dir) > 1024, "CQ_DATA_DIR buffer");
    cq_strlcpy(sv.data_dir, cq_config_str(cfg, CQ_CFG_DATA_DIR), sizeof(sv.data_dir));
    snprintf(sv.health_dir, sizeof(sv.health_dir), "%s/health", sv.data_dir);

    if (cq_fs_mkdir_p(sv.data_dir, 0750, &err) < 0) {
        fprintf(stderr, "coinquantd: cannot use CQ_DATA_DIR: %s (%s)\n", err.message, err.hint);
        cq_config_unref(cfg);
        return 1;
    }
    /* Before anything is written there (the log first): a data directory
     * another user can write to, or owns, could hold their symlinks and
     * files (issue 17.5). */
    if (cq_fs_check_data_dir(sv.data_dir, &err) < 0) {
        fprintf(stderr, "coinquantd: refusing CQ_DATA_DIR: %s. fix: %s\n", err.message, err.hint);
        cq_config_unref(cfg);
        return 1;
    }
    if (open_logs(&sv, cfg, &err) < 0) {
        fprintf(stderr, "coinquantd: cannot open logs: %s (%s)\n", err.message, err.hint);
        cq_config_unref(cfg);
        return 1;
    }
    sv.current = cq_config_current_new(cq_config_ref(cfg));
    cq_version_log_banner("supervisor", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:I,s:I,s:I}", "start_wait_ms",
                                    (json_int_t)cq_config_int(cfg, CQ_CFG_SUPERVISOR_START_WAIT_MS),
                                    "watchdog_stall_ms",
                                    (json_int_t)cq_config_int(cfg, CQ_CFG_WATCHDOG_STALL_MS),
                                    "stop_budget_ms", (json_int_t)CQ_SUPERVISOR_STOP_BUDGET_MS));
    cq_log_info("supervisor", "config_loaded",
                json_pack("{s:s?,s:s,s:s}", "file", cq_config_file_path(cfg), "config_hash",
                          cq_config_hash(cfg), "data_dir", sv.data_dir),
                "config %s loaded", cq_config_hash(cfg));
    log_config_warnings(opts->startup_report);
    log_core_dumps(cfg);

    sv.board = cq_health_board_new(NULL, &err);
    if (sv.board == NULL) {
        exit_code = 1;
        goto out;
    }

    if (start_api(&sv, cfg, &err) < 0) {
        cq_log_error(
            "api", "admin_start_failed",
            json_pack("{s:s,s:s}", "bind", cq_config_str(cfg, CQ_CFG_ADMIN_BIND), "hint", err.hint),
            "admin API did not start: %s", err.message);
        exit_code = 1;
        goto out;
    }
    if (open_journal(&sv, cfg, &err) < 0) {
        cq_log_error("journal", "journal_open_failed",
                     json_pack("{s:s,s:s}", "data_dir", sv.data_dir, "hint", err.hint),
                     "the journal did not open: %s", err.message);
        exit_code = 1;
        goto out;
    }
    journal_config(&sv, cfg, "start");
    if (start_venue(&sv, cfg, &err) < 0) {
        cq_log_error("supervisor", "venue_start_failed", json_pack("{s:s}", "hint", err.hint),
                     "the trading venue did not start: %s", err.message);
        exit_code = 1;
        goto out;
    }
    if (build_services(&sv, cfg, &err) < 0) {
        cq_log_error("supervisor", "start_failed", json_pack("{s:s}", "hint", err.hint), "%s",
                     err.message);
        exit_code = 1;
        goto out;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    const int64_t start_wait_ms = cq_config_int(cfg, CQ_CFG_SUPERVISOR_START_WAIT_MS);
    int64_t last_health_write = 0;
    int stop_signal = 0;

    while (stop_signal == 0) {
        int64_t now = cq_time_mono_ms();
        if (advance_start(&sv, now, start_wait_ms, &err) < 0) {
            cq_log_error("supervisor", "start_failed", json_pack("{s:s}", "hint", err.hint), "%s",
                         err.message);
            exit_code = 1;
            break;
        }
        int64_t stall_ms = stall_ms_now(&sv);
        for (int i = 0; i < sv.next_stage; i++) {
            cq_service_watchdog(sv.stages[i], now, stall_ms);
        }
        if (now - last_health_write >= HEALTH_WRITE_MS) {
            write_health_files(&sv, now);
            last_health_write = now;
        }
        reload_poll(&sv);
        int64_t wait_ms = loop_wait_ms(&sv, cq_time_mono_ms(), last_health_write, stall_ms);
        struct timespec tick = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGHUP) {
            cq_log_info("supervisor", "signal_received", json_pack("{s:s}", "signal", "SIGHUP"),
                        "SIGHUP: reloading the config");
            reload_start(&sv);
        } else if (sig == SIGTERM || sig == SIGINT) {
            stop_signal = sig;
        }
    }

    stop_started_ms = cq_time_mono_ms();
    if (stop_signal != 0) {
        cq_log_info("supervisor", "shutdown_started",
                    json_pack("{s:s,s:I}", "signal", signal_name(stop_signal), "budget_ms",
                              (json_int_t)CQ_SUPERVISOR_STOP_BUDGET_MS),
                    "%s: stopping trader, ARES, feeder, then the admin API",
                    signal_name(stop_signal));
    }
    if (!stop_services(&sv, stop_started_ms + CQ_SUPERVISOR_STOP_BUDGET_MS)) {
        overran = true;
        exit_code = 1;
    }

out:
    if (sv.journal_started) {
        /* The journal gets what is left of the stop budget (all of it when
         * a start failed before any stop began). It logs its own outcome
         * (journal_stopped, journal_stop_unflushed, journal_stop_timeout):
         * not logged again here. */
        int64_t now = cq_time_mono_ms();
        int64_t left =
            (stop_started_ms != 0 ? stop_started_ms : now) + CQ_SUPERVISOR_STOP_BUDGET_MS - now;
        int jrc = cq_journal_stop_within(sv.journal, left > 0 ? left : 0, &err);
        if (jrc < 0) {
            exit_code = 1;
            if (jrc == -CQ_ETIMEDOUT) {
                overran = true; /* its writer still runs: do not free under it */
            }
        }
        sv.journal_started = false;
    }
    if (sv.reloader != NULL) {
        /* A reload still reading (a hung mount) gets what is left of the
         * stop budget, at most RELOAD_STOP_WAIT_MS, then is left to the
         * process exit: it only reads, and its result is not wanted now. */
        int64_t now = cq_time_mono_ms();
        int64_t left =
            (stop_started_ms != 0 ? stop_started_ms : now) + CQ_SUPERVISOR_STOP_BUDGET_MS - now;
        int64_t wait_ms = left < RELOAD_STOP_WAIT_MS ? left : RELOAD_STOP_WAIT_MS;
        int64_t running_ms = cq_reloader_running_ms(sv.reloader);
        if (!cq_reloader_free(sv.reloader, wait_ms > 0 ? wait_ms : 0)) {
            cq_log_warn("supervisor", "config_reload_abandoned",
                        json_pack("{s:I,s:I}", "running_ms", (json_int_t)running_ms, "waited_ms",
                                  (json_int_t)(wait_ms > 0 ? wait_ms : 0)),
                        "a config reload still reads after %lld ms; not waiting for it",
                        (long long)running_ms);
        }
        sv.reloader = NULL;
    }
    if (sv.sim != NULL) {
        cq_sim_stop(sv.sim);
        cq_log_info("supervisor", "venue_stopped", NULL, "embedded simulator stopped");
    }
    if (sv.sim_token_path[0] != '\0') {
        (void)unlink(sv.sim_token_path); /* this run's token is void now */
        sv.sim_token_path[0] = '\0';
    }
    if (sv.api != NULL) {
        cq_api_stop(sv.api);
        cq_health_publish(sv.board, CQ_SVC_API, CQ_HEALTH_STOPPED, false, "stopped",
                          "stopped on request", NULL);
    }
    if (sv.board != NULL) {
        write_health_files(&sv, cq_time_mono_ms());
    }
    if (exit_code == 0) {
        cq_log_info(
            "supervisor", "shutdown_complete",
            json_pack("{s:I}", "took_ms", (json_int_t)(cq_time_mono_ms() - stop_started_ms)),
            "coinquantd stopped cleanly");
    } else {
        cq_log_error("supervisor", "exit_failure", json_pack("{s:i}", "exit_code", exit_code),
                     "coinquantd exits with code %d", exit_code);
    }
    /* Threads that overran the stop budget still run: leave their memory to
     * the process exit rather than free it under their feet. */
    if (!overran) {
        free_all(&sv);
    }
    close_logs(&sv);
    cq_config_unref(cfg);
    return exit_code;
}
