/*
 * config.h — the single source of truth for coinquant's configuration.
 *
 * Every key is declared once, in the table in server/core/config.c: name,
 * type, default, validation rule, secret?, reloadable?, one-line doc.
 * config.env.example and docs/CONFIG.md are generated from that table
 * (`coinquantd config example`, `coinquantd config doc`) and a test fails if
 * either drifts.
 *
 * Precedence: environment > config file (KEY=VALUE lines) > built-in default.
 * Validation is strict and complete: cq_config_load() collects every problem
 * (key, offending value, rule, remediation hint) before returning, so an
 * operator fixes them all in one pass.
 *
 * Ownership and threads: a struct cq_config is immutable once loaded and
 * reference counted (atomic), so any thread may read one it holds a reference
 * to. A reload (SIGHUP) builds a new object; struct cq_config_current is the
 * mutex-guarded "current config" pointer the supervisor swaps and readers
 * (admin API) take references from.
 */
#ifndef CQ_CONFIG_H
#define CQ_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "cq/common.h"
#include "cq/decimal.h"

/* Key ids: the index of each key in the table. Keep in table order. */
enum cq_config_key_id {
    CQ_CFG_MODE,                           /* paper|dryrun|testnet|live */
    CQ_CFG_SYMBOLS,                        /* BTCUSDT,ETHUSDT */
    CQ_CFG_DATA_DIR,                       /* ./var */
    CQ_CFG_ADMIN_BIND,                     /* 127.0.0.1:8080 */
    CQ_CFG_ADMIN_TOKEN,                    /* secret */
    CQ_CFG_ADMIN_MAX_CONNECTIONS,          /* 64 */
    CQ_CFG_ADMIN_TIMEOUT_S,                /* 10 */
    CQ_CFG_ADMIN_MAX_BODY_BYTES,           /* 65536 */
    CQ_CFG_BINANCE_API_KEY,                /* secret */
    CQ_CFG_BINANCE_API_SECRET,             /* secret */
    CQ_CFG_LIVE_CONFIRM,                   /* yes|no */
    CQ_CFG_FEEDER_STALE_MS,                /* 5000 */
    CQ_CFG_LOG_LEVEL,                      /* debug|info|warn|error */
    CQ_CFG_LOG_MAX_BYTES,                  /* 52428800 */
    CQ_CFG_LOG_KEEP,                       /* 10 */
    CQ_CFG_LOG_RING_LINES,                 /* 2000 */
    CQ_CFG_SUPERVISOR_START_WAIT_MS,       /* 30000 */
    CQ_CFG_WATCHDOG_STALL_MS,              /* 5000 */
    CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL,      /* on|off */
    CQ_CFG_SIM_DATA,                       /* "" = synthetic market */
    CQ_CFG_SIM_SPEED,                      /* 1..1000000 or max */
    CQ_CFG_SIM_SEED,                       /* 1 */
    CQ_CFG_SIM_BALANCES,                   /* USDT=10000,BTC=0,ETH=0 */
    CQ_CFG_SIM_MAKER_FEE_BPS,              /* 10 */
    CQ_CFG_SIM_TAKER_FEE_BPS,              /* 10 */
    CQ_CFG_SIM_BOOK_RECORDING,             /* "" = none */
    CQ_CFG_SIM_ORDER_LATENCY_MS,           /* 0 */
    CQ_CFG_SIM_RESPONSE_LATENCY_MS,        /* 0 */
    CQ_CFG_EXCHANGE_REST_URL,              /* "" = embedded simulator in paper mode */
    CQ_CFG_EXCHANGE_WS_URL,                /* "" = embedded simulator in paper mode */
    CQ_CFG_EXCHANGE_WSAPI_URL,             /* "" = derived (see config.c) */
    CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS,    /* 2000 */
    CQ_CFG_EXCHANGE_TIMEOUT_MS,            /* 10000 */
    CQ_CFG_EXCHANGE_WEIGHT_HEADROOM_PCT,   /* 10 */
    CQ_CFG_FEEDER_WS_STALL_MS,             /* 10000 */
    CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS,       /* 30000 */
    CQ_CFG_FEEDER_WARMUP_BARS,             /* 200 */
    CQ_CFG_STRATEGY,                       /* ema_cross */
    CQ_CFG_STRATEGY_PARAMS,                /* "" = the strategy's defaults */
    CQ_CFG_ARES_TEST_SIGNAL_MS,            /* 60000 */
    CQ_CFG_JOURNAL_FSYNC,                  /* always|group|off */
    CQ_CFG_JOURNAL_SEGMENT_MAX_BYTES,      /* 67108864 */
    CQ_CFG_JOURNAL_SNAPSHOT_EVERY_RECORDS, /* 100000 */
    CQ_CFG_JOURNAL_SNAPSHOT_EVERY_MS,      /* 60000 */
    CQ_CFG_JOURNAL_KEEP_SNAPSHOTS,         /* 2 */
    CQ_CFG_ALLOW_CORE_DUMPS,               /* on|off */
    /* the trader (issue 11) */
    CQ_CFG_ORDER_QUOTE,                /* "100": quote amount per entry (decimal) */
    CQ_CFG_ORDER_TYPE,                 /* market|limit */
    CQ_CFG_STOP_LOSS_PCT,              /* "2" (decimal, 0 = off) */
    CQ_CFG_TAKE_PROFIT_PCT,            /* "4" (decimal, 0 = off) */
    CQ_CFG_INSUFFICIENT_SCALE,         /* "0.5" (decimal, 0 < x < 1) */
    CQ_CFG_INSUFFICIENT_RETRIES,       /* 2 */
    CQ_CFG_QUARANTINE_S,               /* 900 */
    CQ_CFG_RISK_MAX_OPEN_POSITIONS,    /* 3 */
    CQ_CFG_RISK_MAX_POSITION_NOTIONAL, /* "1000" (decimal) */
    CQ_CFG_RISK_MAX_TOTAL_EXPOSURE,    /* "3000" (decimal) */
    CQ_CFG_RISK_MAX_DAILY_LOSS,        /* "500" (decimal) */
    CQ_CFG_RISK_MAX_ORDERS_PER_MINUTE, /* 10 */
    CQ_CFG_TRADING_PAUSED,             /* on|off, reloadable */
    CQ_CFG_KILL_SWITCH,                /* on|off, reloadable */
    CQ_CFG_TRADER_RECONCILE_MS,        /* 60000 */
    CQ_CFG_TRADER_POLL_MS,             /* 2000 */
    CQ_CFG_TRADER_EXCHANGE_INFO_MS,    /* 3600000 */
    CQ_CFG_TRADER_MARK_MS,             /* 2000: mark price of each position this often */
    CQ_CFG__COUNT
};

enum cq_config_type {
    CQ_CFG_T_ENUM,     /* one of choices[] (exact, lower case) */
    CQ_CFG_T_STRING,   /* free text within the key's own rule */
    CQ_CFG_T_INT,      /* decimal integer in [min, max] */
    CQ_CFG_T_ONOFF,    /* on|off */
    CQ_CFG_T_SYMBOLS,  /* comma-separated exchange symbols */
    CQ_CFG_T_HOSTPORT, /* host:port or [v6]:port, port 0..65535 */
    CQ_CFG_T_PATH,     /* a filesystem path */
    CQ_CFG_T_SECRET    /* a secret string: never printed, hashed as set/unset */
};

enum cq_config_source { CQ_CFG_SRC_DEFAULT, CQ_CFG_SRC_FILE, CQ_CFG_SRC_ENV };

/* One row of the key table. */
struct cq_config_key {
    enum cq_config_key_id id;
    const char *name; /* "CQ_MODE" */
    enum cq_config_type type;
    const char *default_value;  /* "" means unset */
    const char *rule;           /* human-readable validation rule */
    int64_t min, max;           /* CQ_CFG_T_INT bounds */
    const char *const *choices; /* CQ_CFG_T_ENUM, NULL-terminated */
    bool secret;
    bool reloadable;
    const char *doc; /* one line */
    /* CQ_CFG_T_STRING: the key's own rule. Returns 0, or -1 with why (what is
     * wrong, e.g. "is not a number") and hint (the fix) filled. NULL = any
     * text is accepted. */
    int (*check)(const char *value, char *why, size_t why_len, char *hint, size_t hint_len);
};

enum cq_mode { CQ_MODE_PAPER, CQ_MODE_DRYRUN, CQ_MODE_TESTNET, CQ_MODE_LIVE };

/* The whole table, in key-id order. */
const struct cq_config_key *cq_config_keys(size_t *count);
/* A row by name, or NULL. */
const struct cq_config_key *cq_config_key_find(const char *name);
const char *cq_config_source_name(enum cq_config_source src); /* "default", "file", "env" */
const char *cq_mode_name(enum cq_mode mode);                  /* "paper", ... */

/* ---- loading and validation --------------------------------------------- */

#define CQ_CONFIG_PROBLEMS_MAX 64

/* One validation problem: which key (or "" for a file/line problem), the
 * offending value (redacted for secrets), the rule broken, and how to fix. */
struct cq_config_problem {
    char key[64];
    char value[256];
    char rule[256];
    char message[512]; /* full sentence: names file:line where relevant */
    char hint[256];    /* the fix, incl. "did you mean CQ_X?" suggestions */
};

/* Every problem found by one load, errors first; bounded. */
struct cq_config_report {
    struct cq_config_problem errors[CQ_CONFIG_PROBLEMS_MAX];
    size_t n_errors;
    struct cq_config_problem warnings[CQ_CONFIG_PROBLEMS_MAX];
    size_t n_warnings;
    bool truncated; /* more problems than fit; the count above is a floor */
};

struct cq_config_load_options {
    /* Config file path. NULL: use "./config.env" if it exists, else none.
     * Non-NULL: the file must exist (missing file is an error). */
    const char *file_path;
    /* Environment, NULL-terminated "KEY=VALUE" strings (pass `environ`). */
    char *const *envp;
};

/* Load, merge and validate. Returns a new config with refcount 1, or NULL
 * when report->n_errors > 0 (or on ENOMEM, reported as an error too).
 * Warnings (unknown CQ_* environment variables) never fail the load.
 *
 * File syntax: one KEY=VALUE per line; blank lines and lines starting with
 * '#' ignored; whitespace around KEY and VALUE trimmed; VALUE may be wrapped
 * in matching single or double quotes (removed); "export KEY=VALUE" accepted.
 * Errors: a line without '=', an unknown key (with did-you-mean), a key given
 * twice, a line longer than 4096 bytes, a file larger than 1 MiB.
 *
 * Cross-key rules (all errors): live mode needs CQ_LIVE_CONFIRM=yes;
 * testnet/live need BINANCE_API_KEY and BINANCE_API_SECRET;
 * TEST_ALLOW_DEFAULT_SIGNAL=on is refused in testnet and live; a
 * non-loopback CQ_ADMIN_BIND needs CQ_ADMIN_TOKEN set. */
struct cq_config *cq_config_load(const struct cq_config_load_options *opts,
                                 struct cq_config_report *report);

/* CQ_STRATEGY and CQ_STRATEGY_PARAMS are checked by the module that owns the
 * strategies (ARES), which sits above core: core does not link it. ARES
 * registers its check here (cq_strategy_register_config() in cq/strategy.h)
 * and a program registers it before its first cq_config_load(); coinquantd's
 * main() does so first thing.
 *
 * The check gets the strategy name and the parameter spec ("" for the
 * defaults) and returns 0, or a negative value with why (a predicate put
 * after the key, "has unknown parameter 'fsat'") and hint (the fix) filled.
 *
 * Without a registered check, cq_config_load() refuses CQ_STRATEGY with an
 * error saying so: a program that loads config without the strategies linked
 * is a build mistake and must not accept a strategy nobody checked. NULL
 * unregisters. Any thread may call it; a load in progress sees the old or
 * the new check, never a torn one. */
typedef int (*cq_config_strategy_check_fn)(const char *name, const char *params, char *why,
                                           size_t why_len, char *hint, size_t hint_len);
void cq_config_set_strategy_check(cq_config_strategy_check_fn check);

/* Print the report for people: one line per problem,
 * "error: CQ_KEY=value: message (rule: ...). fix: hint". */
void cq_config_report_print(const struct cq_config_report *report, FILE *out);

struct cq_config *cq_config_ref(struct cq_config *cfg);
void cq_config_unref(struct cq_config *cfg); /* NULL ok; frees at zero */

/* ---- reading ------------------------------------------------------------- */

/* Effective value as a string ("" when an optional key is unset). Borrowed
 * for the life of cfg. Secrets are returned in clear: only for the code that
 * uses them (signing, auth), never for display. */
const char *cq_config_str(const struct cq_config *cfg, enum cq_config_key_id id);
/* CQ_CFG_T_INT value. */
int64_t cq_config_int(const struct cq_config *cfg, enum cq_config_key_id id);
/* CQ_CFG_T_ONOFF value (on = true). */
bool cq_config_onoff(const struct cq_config *cfg, enum cq_config_key_id id);
/* A decimal key's value (CQ_ORDER_QUOTE, CQ_STOP_LOSS_PCT, …: validated
 * exactly at load, so this cannot fail on a loaded config). */
cq_dec cq_config_dec(const struct cq_config *cfg, enum cq_config_key_id id);
/* True when the key has a non-empty value. */
bool cq_config_is_set(const struct cq_config *cfg, enum cq_config_key_id id);
enum cq_config_source cq_config_source(const struct cq_config *cfg, enum cq_config_key_id id);
enum cq_mode cq_config_mode(const struct cq_config *cfg);
/* Parsed CQ_SYMBOLS, in the order given; borrowed. */
size_t cq_config_symbols(const struct cq_config *cfg, const char *const **symbols);
/* Path of the file that was read, or NULL if none. */
const char *cq_config_file_path(const struct cq_config *cfg);

/* Config hash: SHA-256 over the canonical list of lines "KEY=VALUE\n" sorted
 * by key, with the effective value for non-secret keys and "<set>"/"<unset>"
 * for secrets. cq_config_hash() is its first 12 hex characters;
 * cq_config_hash_full() all 64. Borrowed. */
const char *cq_config_hash(const struct cq_config *cfg);
const char *cq_config_hash_full(const struct cq_config *cfg);

/* {"config_hash":"…","file":"…"|null,"keys":{"CQ_MODE":{"value":"paper",
 *  "source":"default","secret":false,"reloadable":false},…}}; secrets have
 * "value":"<redacted>" when set and null when unset. New reference. */
json_t *cq_config_to_json(const struct cq_config *cfg);

/* `coinquantd config check` output: one line per key
 * "KEY=VALUE  (source)" (secrets shown as <redacted>/<unset>), then
 * "config_hash=" and the 12 hex characters. */
void cq_config_print(const struct cq_config *cfg, FILE *out);

/* Calls fn for each secret that is set, with its clear value, so the log
 * layer can redact it. */
void cq_config_foreach_secret(const struct cq_config *cfg,
                              void (*fn)(const char *name, const char *value, void *ctx),
                              void *ctx);

/* ---- reload -------------------------------------------------------------- */

/* Compare old and new: for every key whose effective value differs, call fn
 * with the key row (values of secrets are not passed: NULL). Returns the
 * number of differing keys. */
size_t cq_config_diff(const struct cq_config *old_cfg, const struct cq_config *new_cfg,
                      void (*fn)(const struct cq_config_key *key, const char *old_value,
                                 const char *new_value, void *ctx),
                      void *ctx);

/* Build the config that a reload results in: reloadable keys from new_cfg,
 * every other key kept from old_cfg. For each non-reloadable key that
 * differs, refused_fn (may be NULL) is called. Returns a new config
 * (refcount 1) with its own hash, or NULL on ENOMEM. */
struct cq_config *
cq_config_merge_reload(const struct cq_config *old_cfg, const struct cq_config *new_cfg,
                       void (*refused_fn)(const struct cq_config_key *key, void *ctx), void *ctx);

/* ---- generated documents --------------------------------------------------- */

/* config.env.example: every key, commented with its doc, rule, default,
 * secret/reloadable flags, as "# KEY=default" (commented out). */
void cq_config_write_example(FILE *out);
/* The Markdown table for docs/CONFIG.md between the markers
 * "<!-- BEGIN config-keys -->" and "<!-- END config-keys -->" (markers not
 * included): | key | type | default | rule | secret | reloadable | doc |. */
void cq_config_write_doc_table(FILE *out);

/* ---- helpers --------------------------------------------------------------- */

/* Split "host:port" / "[::1]:port". host gets the bare host (no brackets). */
int cq_hostport_parse(const char *s, char *host, size_t host_len, int *port,
                      struct cq_err *err) CQ_WUR;
/* True for 127.0.0.0/8, ::1 and "localhost". */
bool cq_host_is_loopback(const char *host);

/* A listen address resolved exactly as the admin API binds it; config
 * validation calls the same function, so an address that passes
 * `config check` is one the daemon can try to bind (exit 2 at load, not 1 at
 * start). Accepted hosts: an IPv4 literal, a bracketed IPv6 literal, or
 * "localhost" in any case (= 127.0.0.1). Refused: other host names (no DNS at
 * start) and IPv4-mapped IPv6 addresses such as [::ffff:127.0.0.1] (the admin
 * socket is IPv6-only: write the IPv4 address). */
struct cq_bind_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool v6;
    int port;
    char host[INET6_ADDRSTRLEN]; /* canonical text form, without brackets */
};
/* Errors (-CQ_EPARSE, -CQ_ECONFIG) carry a message phrased as a predicate
 * ("has no :port", "names host ... which is not an IP address") and a hint. */
int cq_bind_addr_resolve(const char *s, struct cq_bind_addr *out, struct cq_err *err) CQ_WUR;

/* ---- current config (reload swaps it) ------------------------------------ */

struct cq_config_current;
/* Takes ownership of the caller's reference to cfg. */
struct cq_config_current *cq_config_current_new(struct cq_config *cfg);
void cq_config_current_free(struct cq_config_current *cur);
/* New reference to the current config; caller unrefs. Any thread. */
struct cq_config *cq_config_current_get(struct cq_config_current *cur);
/* Replace; takes ownership of the reference to cfg. Supervisor only. */
void cq_config_current_set(struct cq_config_current *cur, struct cq_config *cfg);

#endif /* CQ_CONFIG_H */
