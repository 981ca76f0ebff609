/*
 * config.c — coinquant's configuration: the key table, loading (environment >
 * file > default), complete validation, the config hash, reload merging and
 * the generated documents (config.env.example, the docs/CONFIG.md table).
 *
 * The table `keys[]` below is the only place a key is declared: name, type,
 * default, rule, secret?, reloadable?, doc. Everything else in this file is
 * driven by it, and tests/unit/test_config.c fails if the committed documents
 * drift from it.
 *
 * Threads: a loaded struct cq_config is immutable and reference counted
 * (atomic), so any thread may read one it holds a reference to.
 * struct cq_config_current is a mutex-guarded pointer the supervisor swaps on
 * reload and readers take references from.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cq/config.h"
#include "cq/decimal.h"
#include "cq/fs.h"
#include "cq/market.h"
#include "cq/text.h"

#define CFG_FILE_MAX_BYTES (1024 * 1024)
#define CFG_LINE_MAX_BYTES 4096
#define CFG_DEFAULT_FILE "./config.env"
#define CFG_SYMBOLS_MAX CQ_MAX_SYMBOLS /* the one limit, cq/market.h */
_Static_assert(CFG_SYMBOLS_MAX == 32, "update the CQ_SYMBOLS rule and hint texts (32 symbols)");
#define CFG_SYMBOL_MIN_LEN 5
#define CFG_SYMBOL_MAX_LEN CQ_SYMBOL_MAX_CHARS /* the one limit, cq/market.h */
_Static_assert(CFG_SYMBOL_MAX_LEN == 20, "update the CQ_SYMBOLS rule text (5-20 characters)");
#define CFG_SUGGEST_MAX_DISTANCE 3

/* ---- the key table -------------------------------------------------------- */

static const char *const mode_choices[] = {"paper", "dryrun", "testnet", "live", NULL};
static const char *const yesno_choices[] = {"yes", "no", NULL};
static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const fsync_choices[] = {"always", "group", "off", NULL};
static const char *const order_type_choices[] = {"market", "limit", NULL};

/* An integer key: the rule text is generated from the bounds at compile time,
 * so MIN and MAX must be plain decimal literals. */
#define INT_KEY(key_id, key_name, lo, hi, def, is_reloadable, key_doc)                             \
    {                                                                                              \
        .id = (key_id), .name = (key_name), .type = CQ_CFG_T_INT, .default_value = (def),          \
        .rule = "whole number from " #lo " to " #hi, .min = (lo), .max = (hi), .choices = NULL,    \
        .secret = false, .reloadable = (is_reloadable), .doc = (key_doc)                           \
    }

/* ---- the rules of CQ_CFG_T_STRING keys ------------------------------------ */

static int fail_with(char *why, size_t why_len, char *hint, size_t hint_len, const char *w,
                     const char *h)
{
    /* bounded: callers pass 160/256-byte fields, every w and h here is a
     * shorter literal (a cut would only shorten a sentence for people) */
    (void)cq_strlcpy(why, w, why_len);
    (void)cq_strlcpy(hint, h, hint_len);
    return -1;
}

static int check_sim_speed(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    const char *h = "write a whole number from 1 to 1000000 (replay multiplier) or max";
    if (strcmp(v, "max") == 0) {
        return 0;
    }
    if (v[0] == '\0' || strlen(v) > 7) {
        return fail_with(why, why_len, hint, hint_len, "is not a speed", h);
    }
    int64_t n = 0;
    for (const char *c = v; *c != '\0'; c++) {
        if (*c < '0' || *c > '9') {
            return fail_with(why, why_len, hint, hint_len, "is not a speed", h);
        }
        n = n * 10 + (*c - '0');
    }
    if (n < 1 || n > 1000000) {
        return fail_with(why, why_len, hint, hint_len, "is out of range", h);
    }
    return 0;
}

static int check_sim_balances(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    const char *h = "write ASSET=AMOUNT pairs separated by commas, e.g. USDT=10000,BTC=0.5";
    size_t count = 0;
    const char *s = v;
    if (v[0] == '\0') {
        return fail_with(why, why_len, hint, hint_len, "is empty", h);
    }
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (eq == NULL || eq == s || (size_t)(eq - s) > 11 || ++count > 64) {
            return fail_with(why, why_len, hint, hint_len,
                             "has an entry that is not ASSET=AMOUNT (asset 1-11 characters, "
                             "at most 64 entries)",
                             h);
        }
        for (const char *c = s; c < eq; c++) {
            if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) {
                return fail_with(why, why_len, hint, hint_len, "has an asset name outside A-Z 0-9",
                                 h);
            }
        }
        cq_dec amount;
        if (cq_dec_parse(eq + 1, len - (size_t)(eq - s) - 1, &amount) < 0 ||
            cq_dec_sign(amount) < 0) {
            return fail_with(why, why_len, hint, hint_len,
                             "has an amount that is not a non-negative decimal", h);
        }
        if (comma == NULL) {
            return 0;
        }
        s = comma + 1;
    }
}

/* The length of "user:password@" in a URL's authority (between "//" and the
 * first '/', '?' or '#'), or 0 when there is none. */
static size_t url_userinfo_len(const char *v)
{
    const char *auth = strstr(v, "//");
    if (auth == NULL) {
        return 0;
    }
    auth += 2;
    size_t end = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < end; i++) {
        if (auth[i] == '@') {
            at = auth + i; /* the last '@' ends the user information */
        }
    }
    return at != NULL ? (size_t)(at - auth) + 1 : 0;
}

static int check_url(const char *v, const char *const *schemes, const char *h, char *why,
                     size_t why_len, char *hint, size_t hint_len)
{
    if (v[0] == '\0') {
        return 0;
    }
    if (strlen(v) > 512) {
        return fail_with(why, why_len, hint, hint_len, "is longer than 512 bytes", h);
    }
    for (const unsigned char *c = (const unsigned char *)v; *c != '\0'; c++) {
        if (*c <= 0x20 || *c >= 0x7f) {
            return fail_with(why, why_len, hint, hint_len,
                             "contains a space, control or non-ASCII character", h);
        }
    }
    for (size_t i = 0; schemes[i] != NULL; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(v, schemes[i], n) == 0 && v[n] != '\0' && v[n] != '/' && v[n] != ':') {
            if (url_userinfo_len(v) > 0) {
                return fail_with(why, why_len, hint, hint_len,
                                 "holds user information (user:password@) before the host",
                                 "remove user:password@ from the URL: exchange credentials "
                                 "belong in BINANCE_API_KEY and BINANCE_API_SECRET");
            }
            return 0;
        }
    }
    return fail_with(why, why_len, hint, hint_len, "is not a URL with a supported scheme and host",
                     h);
}

static int check_rest_url(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    static const char *const schemes[] = {"http://", "https://", NULL};
    return check_url(v, schemes,
                     "give the exchange's REST base URL, e.g. http://127.0.0.1:9000, or leave "
                     "it empty",
                     why, why_len, hint, hint_len);
}

static int check_ws_url(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    static const char *const schemes[] = {"ws://", "wss://", NULL};
    return check_url(v, schemes,
                     "give the exchange's WebSocket base URL, e.g. ws://127.0.0.1:9001, or "
                     "leave it empty",
                     why, why_len, hint, hint_len);
}

/* Decimal keys: an exact decimal (cq_dec_parse: digits, one optional point,
 * at most 18 fractional digits; no sign, exponent or spaces) within
 * (lo, hi] or [lo, hi]. Money is never a double. */
static int check_dec_range(const char *v, const char *lo, bool lo_inclusive, const char *hi,
                           const char *h, char *why, size_t why_len, char *hint, size_t hint_len)
{
    cq_dec d, l, u;
    if (v[0] == '\0' || v[0] == '+' || v[0] == '-' || cq_dec_parse(v, strlen(v), &d) < 0) {
        return fail_with(why, why_len, hint, hint_len,
                         "is not an exact decimal number (digits and at most one '.', at most 18 "
                         "digits after it)",
                         h);
    }
    if (cq_dec_parse(lo, strlen(lo), &l) < 0 || cq_dec_parse(hi, strlen(hi), &u) < 0) {
        return fail_with(why, why_len, hint, hint_len, "cannot be checked (bad bounds)", h);
    }
    int c = cq_dec_cmp(d, l);
    if (c < 0 || (c == 0 && !lo_inclusive) || cq_dec_cmp(d, u) > 0) {
        return fail_with(why, why_len, hint, hint_len, "is out of range", h);
    }
    return 0;
}

static int check_order_quote(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    return check_dec_range(v, "0", false, "1000000000",
                           "give the quote amount per entry as a decimal above 0, e.g. 100 or "
                           "25.5 (USDT for *USDT symbols)",
                           why, why_len, hint, hint_len);
}

static int check_pct(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    return check_dec_range(v, "0", true, "99",
                           "give a percentage from 0 (off) to 99 as a decimal, e.g. 2 or 1.5", why,
                           why_len, hint, hint_len);
}

static int check_scale(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    int rc = check_dec_range(v, "0", false, "0.99",
                             "give a factor above 0 and below 1 as a decimal, e.g. 0.5", why,
                             why_len, hint, hint_len);
    return rc;
}

static int check_limit_amount(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    return check_dec_range(v, "0", false, "1000000000000",
                           "give a quote amount above 0 as a decimal, e.g. 1000", why, why_len,
                           hint, hint_len);
}

/* The strategies' check, registered by ARES (core does not link it; see
 * cq_config_set_strategy_check in cq/config.h). */
static _Atomic(cq_config_strategy_check_fn) strategy_check;

void cq_config_set_strategy_check(cq_config_strategy_check_fn check)
{
    atomic_store_explicit(&strategy_check, check, memory_order_release);
}

static int check_strategy(const char *v, char *why, size_t why_len, char *hint, size_t hint_len)
{
    cq_config_strategy_check_fn check = atomic_load_explicit(&strategy_check, memory_order_acquire);
    if (check == NULL) {
        /* Both messages are fixed text well under the 160/256-byte buffers
         * the loader passes: no truncation to check. */
        (void)snprintf(why, why_len, "cannot be checked: this program has no strategy registry");
        (void)snprintf(hint, hint_len,
                       "a build mistake: link the ARES library and call "
                       "cq_strategy_register_config() before loading the config");
        return -1;
    }
    return check(v, "", why, why_len, hint, hint_len) < 0 ? -1 : 0;
}

/* For CQ_CFG_T_PATH and CQ_CFG_T_SECRET rows, min and max bound the length of
 * the value in bytes (a secret may also be empty, meaning unset). The
 * character set of a secret is in secret_char_ok(). */
static const struct cq_config_key keys[CQ_CFG__COUNT] = {
    {
        .id = CQ_CFG_MODE,
        .name = "CQ_MODE",
        .type = CQ_CFG_T_ENUM,
        .default_value = "paper",
        .rule = "one of paper, dryrun, testnet, live",
        .choices = mode_choices,
        .doc = "Trading mode: paper trades against the embedded simulator; dryrun journals "
               "intents and sends nothing; testnet and live use the exchange.",
    },
    {
        .id = CQ_CFG_SYMBOLS,
        .name = "CQ_SYMBOLS",
        .type = CQ_CFG_T_SYMBOLS,
        .default_value = "BTCUSDT,ETHUSDT",
        .rule = "1 to 32 comma-separated symbols, each 5-20 characters A-Z 0-9, no duplicates",
        .doc = "Spot symbols to trade.",
    },
    {
        .id = CQ_CFG_DATA_DIR,
        .name = "CQ_DATA_DIR",
        .type = CQ_CFG_T_PATH,
        .default_value = "./var",
        .rule = "non-empty path, at most 1024 bytes, no control characters",
        .min = 1,
        .max = 1024,
        .doc = "Directory for logs, health files, journal, admin token.",
    },
    {
        .id = CQ_CFG_ADMIN_BIND,
        .name = "CQ_ADMIN_BIND",
        .type = CQ_CFG_T_HOSTPORT,
        .default_value = "127.0.0.1:8080",
        .rule = "host:port or [ipv6]:port, port 0-65535 (0 = ephemeral)",
        .doc = "Admin API listen address; a non-loopback address needs CQ_ADMIN_TOKEN.",
    },
    {
        .id = CQ_CFG_ADMIN_TOKEN,
        .name = "CQ_ADMIN_TOKEN",
        .type = CQ_CFG_T_SECRET,
        .default_value = "",
        .rule = "empty (a token is generated into DATA_DIR/admin.token) or 16-256 characters "
                "from A-Z a-z 0-9 . _ ~ + / = -",
        .min = 16,
        .max = 256,
        .secret = true,
        .doc = "Bearer token for the admin API.",
    },
    INT_KEY(CQ_CFG_ADMIN_MAX_CONNECTIONS, "CQ_ADMIN_MAX_CONNECTIONS", 1, 1024, "64", false,
            "Concurrent admin API connections."),
    INT_KEY(CQ_CFG_ADMIN_TIMEOUT_S, "CQ_ADMIN_TIMEOUT_S", 1, 300, "10", false,
            "Admin API connection inactivity timeout, seconds."),
    INT_KEY(CQ_CFG_ADMIN_MAX_BODY_BYTES, "CQ_ADMIN_MAX_BODY_BYTES", 0, 16777216, "65536", false,
            "Largest admin API request body accepted."),
    {
        .id = CQ_CFG_BINANCE_API_KEY,
        .name = "BINANCE_API_KEY",
        .type = CQ_CFG_T_SECRET,
        .default_value = "",
        .rule = "empty, or 1-256 printable ASCII characters without spaces; required in "
                "testnet and live",
        .min = 1,
        .max = 256,
        .secret = true,
        .doc = "Exchange API key.",
    },
    {
        .id = CQ_CFG_BINANCE_API_SECRET,
        .name = "BINANCE_API_SECRET",
        .type = CQ_CFG_T_SECRET,
        .default_value = "",
        .rule = "empty, or 1-256 printable ASCII characters without spaces; required in "
                "testnet and live",
        .min = 1,
        .max = 256,
        .secret = true,
        .doc = "Exchange API secret (HMAC-SHA256 signing).",
    },
    {
        .id = CQ_CFG_LIVE_CONFIRM,
        .name = "CQ_LIVE_CONFIRM",
        .type = CQ_CFG_T_ENUM,
        .default_value = "no",
        .rule = "yes or no; live mode refuses to start unless yes",
        .choices = yesno_choices,
        .doc = "Explicit confirmation for live trading.",
    },
    INT_KEY(CQ_CFG_FEEDER_STALE_MS, "CQ_FEEDER_STALE_MS", 100, 600000, "5000", true,
            "Market data older than this blocks signals and readiness."),
    {
        .id = CQ_CFG_LOG_LEVEL,
        .name = "CQ_LOG_LEVEL",
        .type = CQ_CFG_T_ENUM,
        .default_value = "info",
        .rule = "one of debug, info, warn, error",
        .choices = log_level_choices,
        .reloadable = true,
        .doc = "Lowest level written to the log.",
    },
    INT_KEY(CQ_CFG_LOG_MAX_BYTES, "CQ_LOG_MAX_BYTES", 65536, 1073741824, "52428800", true,
            "Rotate the log file before it exceeds this size."),
    INT_KEY(CQ_CFG_LOG_KEEP, "CQ_LOG_KEEP", 1, 1000, "10", true, "Rotated log files kept."),
    INT_KEY(CQ_CFG_LOG_RING_LINES, "CQ_LOG_RING_LINES", 0, 100000, "2000", false,
            "Recent log lines kept in memory for debug bundles."),
    INT_KEY(CQ_CFG_SUPERVISOR_START_WAIT_MS, "CQ_SUPERVISOR_START_WAIT_MS", 0, 600000, "30000",
            false,
            "How long the supervisor waits for each service's readiness before starting the "
            "next."),
    INT_KEY(CQ_CFG_WATCHDOG_STALL_MS, "CQ_WATCHDOG_STALL_MS", 200, 600000, "5000", true,
            "A service thread that misses heartbeats this long is marked down (stalled)."),
    {
        .id = CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL,
        .name = "TEST_ALLOW_DEFAULT_SIGNAL",
        .type = CQ_CFG_T_ONOFF,
        .default_value = "off",
        .rule = "on or off; refused in testnet and live",
        .doc = "Lets ARES emit a periodic test signal in paper and dryrun modes.",
    },
    {
        .id = CQ_CFG_SIM_DATA,
        .name = "CQ_SIM_DATA",
        .type = CQ_CFG_T_PATH,
        .default_value = "",
        .rule = "empty (a seeded synthetic market), or a directory of <SYMBOL>-1m.csv files, "
                "or one such CSV for a single symbol; at most 1024 bytes",
        .min = 0,
        .max = 1024,
        .doc = "Recorded 1m klines the embedded simulator replays in paper mode.",
    },
    {
        .id = CQ_CFG_SIM_SPEED,
        .name = "CQ_SIM_SPEED",
        .type = CQ_CFG_T_STRING,
        .default_value = "1",
        .rule = "whole number from 1 to 1000000, or max",
        .doc = "Replay speed of the embedded simulator's market (1 = real time).",
        .check = check_sim_speed,
    },
    INT_KEY(CQ_CFG_SIM_SEED, "CQ_SIM_SEED", 0, 2147483647, "1", false,
            "Seed of the embedded simulator's synthetic market and ids."),
    {
        .id = CQ_CFG_SIM_BALANCES,
        .name = "CQ_SIM_BALANCES",
        .type = CQ_CFG_T_STRING,
        .default_value = "USDT=10000,BTC=0,ETH=0",
        .rule = "ASSET=AMOUNT pairs separated by commas, amounts non-negative decimals",
        .doc = "Starting balances of the embedded simulator's account.",
        .check = check_sim_balances,
    },
    INT_KEY(CQ_CFG_SIM_MAKER_FEE_BPS, "CQ_SIM_MAKER_FEE_BPS", 0, 10000, "10", false,
            "Commission the embedded simulator charges on maker fills, in basis points "
            "(10 = 0.1%)."),
    INT_KEY(CQ_CFG_SIM_TAKER_FEE_BPS, "CQ_SIM_TAKER_FEE_BPS", 0, 10000, "10", false,
            "Commission the embedded simulator charges on taker fills, in basis points "
            "(10 = 0.1%)."),
    {
        .id = CQ_CFG_SIM_BOOK_RECORDING,
        .name = "CQ_SIM_BOOK_RECORDING",
        .type = CQ_CFG_T_STRING,
        .default_value = "",
        .rule = "empty, or comma-separated recorded WebSocket captures (trade, bookTicker, "
                "depth; .txt or .txt.gz) of the configured symbols; at most 4095 bytes (checked "
                "when the simulator starts)",
        .doc = "Recorded order books the embedded simulator replays as the market of their "
               "symbols (docs/SIMEX.md \"Recorded book\").",
    },
    INT_KEY(CQ_CFG_SIM_ORDER_LATENCY_MS, "CQ_SIM_ORDER_LATENCY_MS", 0, 10000, "5", false,
            "Market time, in milliseconds, an order or cancel takes to reach the embedded "
            "simulator's book (5: a well-placed client's one-way trip to Binance; 0 = none, "
            "which makes paper fills rosier than live)."),
    INT_KEY(CQ_CFG_SIM_RESPONSE_LATENCY_MS, "CQ_SIM_RESPONSE_LATENCY_MS", 0, 10000, "5", false,
            "Market time, in milliseconds, the embedded simulator's answer to an order or "
            "cancel takes after it met the book."),
    {
        .id = CQ_CFG_EXCHANGE_REST_URL,
        .name = "CQ_EXCHANGE_REST_URL",
        .type = CQ_CFG_T_STRING,
        .default_value = "",
        .rule = "empty, or an http:// or https:// URL; set together with CQ_EXCHANGE_WS_URL",
        .doc = "REST base URL of the exchange, overriding the mode's default; in paper mode it "
               "replaces the embedded simulator.",
        .check = check_rest_url,
    },
    {
        .id = CQ_CFG_EXCHANGE_WS_URL,
        .name = "CQ_EXCHANGE_WS_URL",
        .type = CQ_CFG_T_STRING,
        .default_value = "",
        .rule = "empty, or a ws:// or wss:// URL; set together with CQ_EXCHANGE_REST_URL",
        .doc = "WebSocket base URL of the exchange, overriding the mode's default; in paper "
               "mode it replaces the embedded simulator.",
        .check = check_ws_url,
    },
    {
        .id = CQ_CFG_EXCHANGE_WSAPI_URL,
        .name = "CQ_EXCHANGE_WSAPI_URL",
        .type = CQ_CFG_T_STRING,
        .default_value = "",
        .rule = "empty, or a ws:// or wss:// URL (the WebSocket API, e.g. .../ws-api/v3)",
        .doc = "WebSocket API URL for the user data stream (userDataStream.subscribe.signature). "
               "Empty: CQ_EXCHANGE_WS_URL + /ws-api/v3 when that is set (the embedded "
               "simulator's in paper mode), else wss://ws-api.testnet.binance.vision/ws-api/v3 "
               "in testnet and wss://ws-api.binance.com:443/ws-api/v3 otherwise.",
        .check = check_ws_url,
    },
    INT_KEY(CQ_CFG_EXCHANGE_CONNECT_TIMEOUT_MS, "CQ_EXCHANGE_CONNECT_TIMEOUT_MS", 100, 30000,
            "2000", false, "Exchange REST connect timeout, milliseconds."),
    INT_KEY(CQ_CFG_EXCHANGE_TIMEOUT_MS, "CQ_EXCHANGE_TIMEOUT_MS", 500, 60000, "10000", false,
            "Exchange REST request timeout (one attempt), milliseconds."),
    INT_KEY(CQ_CFG_EXCHANGE_WEIGHT_HEADROOM_PCT, "CQ_EXCHANGE_WEIGHT_HEADROOM_PCT", 0, 90, "10",
            false,
            "Share of the exchange's request-weight limit kept free: requests that would use it "
            "wait for the next minute."),
    INT_KEY(CQ_CFG_FEEDER_WS_STALL_MS, "CQ_FEEDER_WS_STALL_MS", 500, 600000, "10000", false,
            "A market stream connection silent this long is closed and reconnected."),
    INT_KEY(CQ_CFG_FEEDER_WS_BACKOFF_MAX_MS, "CQ_FEEDER_WS_BACKOFF_MAX_MS", 500, 300000, "30000",
            false, "Longest wait between WebSocket reconnect attempts (exponential backoff cap)."),
    INT_KEY(CQ_CFG_FEEDER_WARMUP_BARS, "CQ_FEEDER_WARMUP_BARS", 0, 1000, "200", false,
            "Closed 1m candles per symbol fetched at start as history for ARES."),
    {
        .id = CQ_CFG_STRATEGY,
        .name = "CQ_STRATEGY",
        .type = CQ_CFG_T_STRING,
        .default_value = "ema_cross",
        .rule = "a built-in strategy: ema_cross or rsi_reversion",
        .doc = "The strategy ARES runs on every closed 1m candle of every symbol.",
        .check = check_strategy,
    },
    {
        .id = CQ_CFG_STRATEGY_PARAMS,
        .name = "CQ_STRATEGY_PARAMS",
        .type = CQ_CFG_T_STRING,
        .default_value = "",
        .rule = "empty (the strategy's defaults) or name=value pairs separated by commas, "
                "each a parameter of CQ_STRATEGY within its range (ema_cross: fast=12, "
                "slow=26, fast < slow; rsi_reversion: period=14, low=30, high=70, low < high)",
        .doc = "Strategy parameters, e.g. fast=9,slow=21.",
    },
    INT_KEY(CQ_CFG_ARES_TEST_SIGNAL_MS, "CQ_ARES_TEST_SIGNAL_MS", 1000, 3600000, "60000", false,
            "Period of the test signal that TEST_ALLOW_DEFAULT_SIGNAL=on makes ARES emit."),
    {
        .id = CQ_CFG_JOURNAL_FSYNC,
        .name = "CQ_JOURNAL_FSYNC",
        .type = CQ_CFG_T_ENUM,
        .default_value = "group",
        .rule = "one of always, group, off",
        .choices = fsync_choices,
        .doc = "Journal durability: always = fdatasync per record; group = one write and one "
               "fdatasync for everything queued; off = no fdatasync (durable means written).",
    },
    INT_KEY(CQ_CFG_JOURNAL_SEGMENT_MAX_BYTES, "CQ_JOURNAL_SEGMENT_MAX_BYTES", 65536, 1073741824,
            "67108864", false, "The journal starts a new segment file past this size."),
    INT_KEY(CQ_CFG_JOURNAL_SNAPSHOT_EVERY_RECORDS, "CQ_JOURNAL_SNAPSHOT_EVERY_RECORDS", 100,
            100000000, "100000", false, "Write a journal snapshot every this many records."),
    INT_KEY(CQ_CFG_JOURNAL_SNAPSHOT_EVERY_MS, "CQ_JOURNAL_SNAPSHOT_EVERY_MS", 1000, 86400000,
            "60000", false, "Write a journal snapshot at least this often (if anything changed)."),
    INT_KEY(CQ_CFG_JOURNAL_KEEP_SNAPSHOTS, "CQ_JOURNAL_KEEP_SNAPSHOTS", 2, 100, "2", false,
            "Journal snapshots kept; older ones and the segments only they needed are pruned."),
    {
        .id = CQ_CFG_ALLOW_CORE_DUMPS,
        .name = "CQ_ALLOW_CORE_DUMPS",
        .type = CQ_CFG_T_ONOFF,
        .default_value = "off",
        .rule = "on or off",
        .doc = "off: the process cannot dump core (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), so the API "
               "secret never lands in a core file; on: the system's settings apply (for "
               "debugging a crash).",
    },
    /* ---- the trader (docs/TRADER.md) ---- */
    {
        .id = CQ_CFG_ORDER_QUOTE,
        .name = "CQ_ORDER_QUOTE",
        .type = CQ_CFG_T_STRING,
        .default_value = "100",
        .rule = "exact decimal above 0, at most 1000000000",
        .check = check_order_quote,
        .doc = "Quote amount per entry order (e.g. USDT), capped by the free balance and the "
               "risk limits.",
    },
    {
        .id = CQ_CFG_ORDER_TYPE,
        .name = "CQ_ORDER_TYPE",
        .type = CQ_CFG_T_ENUM,
        .default_value = "market",
        .rule = "market or limit",
        .choices = order_type_choices,
        .doc = "Entry orders: market (by quote amount) or limit (GTC at the last price).",
    },
    {
        .id = CQ_CFG_STOP_LOSS_PCT,
        .name = "CQ_STOP_LOSS_PCT",
        .type = CQ_CFG_T_STRING,
        .default_value = "2",
        .rule = "exact decimal from 0 to 99; 0 = off",
        .check = check_pct,
        .doc = "Sell a position when the price falls this many percent below its average entry.",
    },
    {
        .id = CQ_CFG_TAKE_PROFIT_PCT,
        .name = "CQ_TAKE_PROFIT_PCT",
        .type = CQ_CFG_T_STRING,
        .default_value = "4",
        .rule = "exact decimal from 0 to 99; 0 = off",
        .check = check_pct,
        .doc = "Sell a position when the price rises this many percent above its average entry.",
    },
    {
        .id = CQ_CFG_INSUFFICIENT_SCALE,
        .name = "CQ_INSUFFICIENT_SCALE",
        .type = CQ_CFG_T_STRING,
        .default_value = "0.5",
        .rule = "exact decimal above 0, at most 0.99",
        .check = check_scale,
        .doc = "After an insufficient-balance rejection (-2010) the order is retried this many "
               "times smaller.",
    },
    INT_KEY(CQ_CFG_INSUFFICIENT_RETRIES, "CQ_INSUFFICIENT_RETRIES", 0, 10, "2", false,
            "Scaled-down retries after insufficient balance before the symbol is quarantined."),
    INT_KEY(CQ_CFG_QUARANTINE_S, "CQ_QUARANTINE_S", 1, 604800, "900", false,
            "How long a symbol stays quarantined after repeated insufficient balance, seconds."),
    INT_KEY(CQ_CFG_RISK_MAX_OPEN_POSITIONS, "CQ_RISK_MAX_OPEN_POSITIONS", 1, 1000, "3", false,
            "Risk gate: most symbols with an open position at once."),
    {
        .id = CQ_CFG_RISK_MAX_POSITION_NOTIONAL,
        .name = "CQ_RISK_MAX_POSITION_NOTIONAL",
        .type = CQ_CFG_T_STRING,
        .default_value = "1000",
        .rule = "exact decimal above 0",
        .check = check_limit_amount,
        .doc = "Risk gate: largest position per symbol, in quote (cost at entry).",
    },
    {
        .id = CQ_CFG_RISK_MAX_TOTAL_EXPOSURE,
        .name = "CQ_RISK_MAX_TOTAL_EXPOSURE",
        .type = CQ_CFG_T_STRING,
        .default_value = "3000",
        .rule = "exact decimal above 0",
        .check = check_limit_amount,
        .doc = "Risk gate: largest sum of all positions, in quote.",
    },
    {
        .id = CQ_CFG_RISK_MAX_DAILY_LOSS,
        .name = "CQ_RISK_MAX_DAILY_LOSS",
        .type = CQ_CFG_T_STRING,
        .default_value = "500",
        .rule = "exact decimal above 0",
        .check = check_limit_amount,
        .doc = "Risk gate: realized loss per UTC day (fees included) after which entries stop "
               "until midnight UTC.",
    },
    INT_KEY(CQ_CFG_RISK_MAX_ORDERS_PER_MINUTE, "CQ_RISK_MAX_ORDERS_PER_MINUTE", 1, 1000, "10",
            false, "Risk gate: most orders sent in any 60 s."),
    {
        .id = CQ_CFG_TRADING_PAUSED,
        .name = "CQ_TRADING_PAUSED",
        .type = CQ_CFG_T_ONOFF,
        .default_value = "off",
        .rule = "on or off",
        .reloadable = true,
        .doc = "on: no new entries (exits, stop-loss and take-profit still run); same as POST "
               "/api/v1/trader/pause. Reloadable (SIGHUP).",
    },
    {
        .id = CQ_CFG_KILL_SWITCH,
        .name = "CQ_KILL_SWITCH",
        .type = CQ_CFG_T_ONOFF,
        .default_value = "off",
        .rule = "on or off",
        .reloadable = true,
        .doc = "on: cancel our open orders and send nothing; same as POST /api/v1/trader/kill. "
               "Reloadable (SIGHUP).",
    },
    INT_KEY(CQ_CFG_TRADER_RECONCILE_MS, "CQ_TRADER_RECONCILE_MS", 5000, 86400000, "60000", false,
            "Reconcile orders and balances with the exchange this often while trading."),
    INT_KEY(CQ_CFG_TRADER_POLL_MS, "CQ_TRADER_POLL_MS", 100, 600000, "2000", false,
            "Poll open orders this often while the user data stream is down."),
    INT_KEY(CQ_CFG_TRADER_EXCHANGE_INFO_MS, "CQ_TRADER_EXCHANGE_INFO_MS", 60000, 86400000,
            "3600000", false, "Reload exchangeInfo (symbol filters) this often."),
    INT_KEY(CQ_CFG_TRADER_MARK_MS, "CQ_TRADER_MARK_MS", 250, 600000, "2000", false,
            "Fetch the last price of every symbol with a position this often (unrealized PnL, "
            "stop-loss, take-profit)."),
};

_Static_assert(CQ_ARRAY_LEN(mode_choices) == CQ_MODE_LIVE + 2,
               "mode_choices must list every enum cq_mode, in order");

/* ---- the loaded config ----------------------------------------------------- */

struct cq_config {
    atomic_int refs;
    char *values[CQ_CFG__COUNT]; /* owned: effective values ("" = unset) */
    enum cq_config_source sources[CQ_CFG__COUNT];
    int64_t ints[CQ_CFG__COUNT]; /* parsed CQ_CFG_T_INT values */
    enum cq_mode mode;
    char *symbols_buf;                    /* owned: CQ_SYMBOLS split at the commas */
    const char *symbols[CFG_SYMBOLS_MAX]; /* borrowed from symbols_buf */
    size_t n_symbols;
    char *file_path; /* owned; NULL when no file was read */
    char hash_full[65];
    char hash[13];
};

const struct cq_config_key *cq_config_keys(size_t *count)
{
    if (count != NULL) {
        *count = CQ_CFG__COUNT;
    }
    return keys;
}

const struct cq_config_key *cq_config_key_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        if (strcmp(keys[i].name, name) == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

const char *cq_config_source_name(enum cq_config_source src)
{
    switch (src) {
    case CQ_CFG_SRC_DEFAULT:
        return "default";
    case CQ_CFG_SRC_FILE:
        return "file";
    case CQ_CFG_SRC_ENV:
        return "env";
    }
    return "?";
}

const char *cq_mode_name(enum cq_mode mode)
{
    if ((int)mode < 0 || (int)mode > (int)CQ_MODE_LIVE) {
        return "?";
    }
    return mode_choices[mode];
}

static const char *type_name(enum cq_config_type type)
{
    switch (type) {
    case CQ_CFG_T_ENUM:
        return "enum";
    case CQ_CFG_T_STRING:
        return "string";
    case CQ_CFG_T_INT:
        return "int";
    case CQ_CFG_T_ONOFF:
        return "onoff";
    case CQ_CFG_T_SYMBOLS:
        return "symbols";
    case CQ_CFG_T_HOSTPORT:
        return "hostport";
    case CQ_CFG_T_PATH:
        return "path";
    case CQ_CFG_T_SECRET:
        return "secret";
    }
    return "?";
}

/* ---- small string helpers ------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim leading and trailing whitespace in place. */
static char *trim(char *s)
{
    while (is_space(*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

static bool contains_ci(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = haystack; *p != '\0'; p++) {
        size_t i = 0;
        while (i < n && p[i] != '\0' &&
               toupper((unsigned char)p[i]) == toupper((unsigned char)needle[i])) {
            i++;
        }
        if (i == n) {
            return true;
        }
    }
    return false;
}

/* A name that probably carries a secret: its value is never echoed. */
static bool looks_secret(const char *name)
{
    return contains_ci(name, "SECRET") || contains_ci(name, "TOKEN") || contains_ci(name, "KEY") ||
           contains_ci(name, "PASS");
}

/* "a, b, c" (sep ", ") or "a|b|c" from a NULL-terminated list. Bounded:
 * the longest choice list (mode) is 30 bytes against a 128-byte buffer; if
 * one were longer it would be cut, never overrun. */
static void join_choices(const char *const *choices, const char *sep, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; choices[i] != NULL && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i > 0 ? sep : "", choices[i]);
        if (n < 0) {
            return;
        }
        used += (size_t)n;
    }
}

/* The known key nearest to name (distance <= 3, case-insensitive), or NULL. */
static const struct cq_config_key *suggest_key(const char *name, size_t name_len)
{
    const struct cq_config_key *best = NULL;
    size_t best_d = CFG_SUGGEST_MAX_DISTANCE + 1;
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        size_t d = cq_text_edit_distance_ci(name, name_len, keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = &keys[i];
        }
    }
    return best;
}

/* Strict decimal int64: optional '-', digits only, nothing else. */
static int parse_int64(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '-') {
        p++;
    }
    if (!isdigit((unsigned char)*p)) {
        return -CQ_EPARSE;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0') {
        return -CQ_EPARSE;
    }
    if (errno == ERANGE) {
        return -CQ_ETOOBIG;
    }
    *out = (int64_t)v;
    return 0;
}

/* ---- reports -------------------------------------------------------------- */

/* Replace every byte that is not part of a valid UTF-8 sequence with '?', so
 * report fields can go into JSON logs (a value cut to fit a field may end in
 * half a character; a file may hold any bytes). */
static void sanitize_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != '\0') {
        size_t n;
        uint32_t cp;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if ((*p & 0xE0) == 0xC0) {
            n = 2;
            cp = *p & 0x1Fu;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 3;
            cp = *p & 0x0Fu;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 4;
            cp = *p & 0x07u;
        } else {
            *p++ = '?';
            continue;
        }
        size_t i = 1;
        while (i < n && (p[i] & 0xC0) == 0x80) {
            cp = (cp << 6) | (p[i] & 0x3Fu);
            i++;
        }
        bool ok = i == n;
        if (ok) {
            static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= min_cp[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

static void report_add(struct cq_config_report *r, bool warning, const char *key, const char *value,
                       const char *rule, const char *hint, const char *fmt, ...) CQ_PRINTF(7, 8);

static void report_add(struct cq_config_report *r, bool warning, const char *key, const char *value,
                       const char *rule, const char *hint, const char *fmt, ...)
{
    struct cq_config_problem *list = warning ? r->warnings : r->errors;
    size_t *n = warning ? &r->n_warnings : &r->n_errors;
    if (*n >= CQ_CONFIG_PROBLEMS_MAX) {
        r->truncated = true;
        return;
    }
    struct cq_config_problem *p = &list[*n];
    memset(p, 0, sizeof(*p));
    /* Report fields are sentences for people with fixed sizes: a longer
     * value or message is cut on purpose (a value in the report is a
     * reminder, the file:line names where it is), and sanitize_utf8 below
     * repairs a character cut in half. */
    cq_strlcpy(p->key, key != NULL ? key : "", sizeof(p->key));
    cq_strlcpy(p->value, value != NULL ? value : "", sizeof(p->value));
    cq_strlcpy(p->rule, rule != NULL ? rule : "", sizeof(p->rule));
    cq_strlcpy(p->hint, hint != NULL ? hint : "", sizeof(p->hint));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    sanitize_utf8(p->key);
    sanitize_utf8(p->value);
    sanitize_utf8(p->message);
    sanitize_utf8(p->hint);
    (*n)++;
}

/* The value as it may appear in a report: secrets never in clear. */
static const char *shown_value(const struct cq_config_key *k, const char *value)
{
    if (k->secret) {
        return value[0] != '\0' ? "<redacted>" : "<unset>";
    }
    return value;
}

/* shown_value() for an error report, into buf: a URL's user information
 * (refused by check_url) is replaced by "<redacted>@" so a password in it
 * is never echoed. Cutting a long value to the report field is intended. */
static void shown_value_buf(const struct cq_config_key *k, const char *value, char *buf, size_t len)
{
    size_t userinfo = k->secret ? 0 : url_userinfo_len(value);
    if (userinfo == 0) {
        (void)cq_strlcpy(buf, shown_value(k, value), len); /* cut to the report field */
        return;
    }
    size_t prefix = (size_t)(strstr(value, "//") + 2 - value);
    /* cut to the report field, as above */
    (void)snprintf(buf, len, "%.*s<redacted>@%s", (int)prefix, value, value + prefix + userinfo);
}

void cq_config_report_print(const struct cq_config_report *report, FILE *out)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct cq_config_problem *list = pass == 0 ? report->errors : report->warnings;
        size_t n = pass == 0 ? report->n_errors : report->n_warnings;
        const char *label = pass == 0 ? "error" : "warning";
        for (size_t i = 0; i < n; i++) {
            const struct cq_config_problem *p = &list[i];
            if (p->key[0] != '\0') {
                fprintf(out, "%s: %s=%s: %s", label, p->key, p->value, p->message);
            } else {
                fprintf(out, "%s: %s", label, p->message);
            }
            if (p->rule[0] != '\0') {
                fprintf(out, " (rule: %s)", p->rule);
            }
            fputc('.', out);
            if (p->hint[0] != '\0') {
                fprintf(out, " fix: %s", p->hint);
            }
            fputc('\n', out);
        }
    }
    if (report->truncated) {
        fprintf(out, "error: more problems than fit in one report; fix these and run "
                     "`coinquantd config check` again.\n");
    }
}

/* ---- value validation ------------------------------------------------------ */

/* What is wrong with one value, without where it came from. */
struct value_problem {
    char what[256]; /* "is not a whole number" */
    char hint[256];
};

static int problem(struct value_problem *p, const char *hint, const char *fmt, ...) CQ_PRINTF(3, 4);

static int problem(struct value_problem *p, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof(p->what), fmt, ap);
    va_end(ap);
    cq_strlcpy(p->hint, hint, sizeof(p->hint));
    return -CQ_ECONFIG;
}

static int check_enum(const struct cq_config_key *k, const char *v, struct value_problem *p,
                      size_t *index)
{
    char list[128];
    char hint[256];
    join_choices(k->choices, ", ", list, sizeof(list));
    for (size_t i = 0; k->choices[i] != NULL; i++) {
        if (strcmp(v, k->choices[i]) == 0) {
            *index = i;
            return 0;
        }
    }
    for (size_t i = 0; k->choices[i] != NULL; i++) {
        if (strcasecmp(v, k->choices[i]) == 0) {
            snprintf(hint, sizeof(hint), "write %s (values are lower case)", k->choices[i]);
            return problem(p, hint, "is not one of %s", list);
        }
    }
    snprintf(hint, sizeof(hint), "write one of %s", list);
    if (v[0] == '\0') {
        return problem(p, hint, "is empty");
    }
    return problem(p, hint, "is not one of %s", list);
}

static int check_int(const struct cq_config_key *k, const char *v, struct value_problem *p,
                     int64_t *out)
{
    char hint[256];
    int64_t n = 0;
    int rc = parse_int64(v, &n);
    bool has_unit = false;
    if (rc == -CQ_EPARSE && isdigit((unsigned char)v[0])) {
        const char *q = v;
        while (isdigit((unsigned char)*q)) {
            q++;
        }
        has_unit = isalpha((unsigned char)*q) != 0;
    }
    snprintf(hint, sizeof(hint), "write a %s, e.g. %s%s", k->rule, k->default_value,
             has_unit ? " (no unit suffix: the unit is in the key name)" : "");
    if (v[0] == '\0') {
        return problem(p, hint, "is empty");
    }
    if (rc == -CQ_EPARSE) {
        return problem(p, hint, "is not a whole number");
    }
    if (rc < 0 || n < k->min || n > k->max) {
        return problem(p, hint, "is out of range");
    }
    *out = n;
    return 0;
}

static int check_onoff(const char *v, struct value_problem *p)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0) {
        return 0;
    }
    if (strcasecmp(v, "on") == 0 || strcasecmp(v, "off") == 0) {
        return problem(p,
                       strcasecmp(v, "on") == 0 ? "write on (values are lower case)"
                                                : "write off (values are lower case)",
                       "is not on or off");
    }
    if (v[0] == '\0') {
        return problem(p, "write on or off", "is empty");
    }
    return problem(p, "write on or off", "is not on or off");
}

/* Split a CQ_SYMBOLS value. On success *buf_out (owned by the caller) holds
 * the symbols, NUL-separated, and syms[] points into it. */
static int check_symbols(const char *v, struct value_problem *p, char **buf_out, const char **syms,
                         size_t *n_syms)
{
    const char *hint = "write upper-case symbols separated by commas, e.g. BTCUSDT,ETHUSDT";
    size_t count = 0;
    const char *starts[CFG_SYMBOLS_MAX];
    size_t lens[CFG_SYMBOLS_MAX];
    if (v[0] == '\0') {
        return problem(p, hint, "is empty");
    }
    const char *s = v;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (count == CFG_SYMBOLS_MAX) {
            return problem(p, "list at most 32 symbols", "lists more than 32 symbols");
        }
        if (len == 0) {
            return problem(p,
                           "remove the empty entry (two commas in a row, or a comma at "
                           "either end)",
                           "has an empty symbol");
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
                return problem(p, hint, "has symbol \"%.*s\" with characters outside A-Z 0-9",
                               (int)(len < 40 ? len : 40), s);
            }
        }
        if (len < CFG_SYMBOL_MIN_LEN || len > CFG_SYMBOL_MAX_LEN) {
            return problem(p, "write the exchange's full symbol, base then quote, e.g. BTCUSDT",
                           "has symbol \"%.*s\" of %zu characters; symbols are %d to %d",
                           (int)(len < 40 ? len : 40), s, len, CFG_SYMBOL_MIN_LEN,
                           CFG_SYMBOL_MAX_LEN);
        }
        for (size_t i = 0; i < count; i++) {
            if (lens[i] == len && memcmp(starts[i], s, len) == 0) {
                return problem(p, "list each symbol once", "lists \"%.*s\" twice", (int)len, s);
            }
        }
        starts[count] = s;
        lens[count] = len;
        count++;
        if (comma == NULL) {
            break;
        }
        s = comma + 1;
    }
    if (buf_out != NULL) {
        char *buf = strdup(v);
        if (buf == NULL) {
            return -CQ_ENOMEM;
        }
        for (size_t i = 0; i < count; i++) {
            buf[(size_t)(starts[i] - v) + lens[i]] = '\0';
            syms[i] = buf + (starts[i] - v);
        }
        *buf_out = buf;
        *n_syms = count;
    }
    return 0;
}

static int check_path(const struct cq_config_key *k, const char *v, struct value_problem *p)
{
    size_t len = strlen(v);
    if (len == 0 && k->min > 0) {
        return problem(p, "give a directory path, e.g. ./var", "is empty");
    }
    if ((int64_t)len > k->max) {
        return problem(p, "use a shorter path", "is longer than %lld bytes", (long long)k->max);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) {
            return problem(p, "remove the control character (tab, newline…) from the path",
                           "contains a control character");
        }
    }
    return 0;
}

/* Resolved with the function the admin API binds with (cq_bind_addr_resolve),
 * so what passes here cannot fail at start for its form. */
static int check_hostport(const char *v, struct value_problem *p)
{
    struct cq_bind_addr ba;
    struct cq_err err;
    cq_err_clear(&err);
    if (cq_bind_addr_resolve(v, &ba, &err) < 0) {
        return problem(p, err.hint, "%s", err.message);
    }
    return 0;
}

/* Characters allowed in a secret, per key (see the table's rule text). */
static bool secret_char_ok(enum cq_config_key_id id, unsigned char c)
{
    if (id == CQ_CFG_ADMIN_TOKEN) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               strchr("._~+/=-", c) != NULL;
    }
    return c >= 0x21 && c <= 0x7e; /* printable ASCII, no space */
}

/* Never quotes the value, nor its length or any of its characters. */
static int check_secret(const struct cq_config_key *k, const char *v, struct value_problem *p)
{
    size_t len = strlen(v);
    char hint[256];
    if (len == 0) {
        return 0;
    }
    if (k->id == CQ_CFG_ADMIN_TOKEN) {
        snprintf(hint, sizeof(hint),
                 "use %lld-%lld characters from A-Z a-z 0-9 . _ ~ + / = -, e.g. the output "
                 "of `openssl rand -hex 24`, or leave it empty to have one generated",
                 (long long)k->min, (long long)k->max);
    } else {
        snprintf(hint, sizeof(hint),
                 "paste the %s exactly as the exchange issued it (no spaces or quotes "
                 "inside)",
                 k->id == CQ_CFG_BINANCE_API_KEY ? "API key" : "API secret");
    }
    if ((int64_t)len < k->min) {
        return problem(p, hint, "is shorter than %lld characters", (long long)k->min);
    }
    if ((int64_t)len > k->max) {
        return problem(p, hint, "is longer than %lld characters", (long long)k->max);
    }
    for (size_t i = 0; i < len; i++) {
        if (!secret_char_ok(k->id, (unsigned char)v[i])) {
            return problem(p, hint, "contains a character that is not allowed");
        }
    }
    return 0;
}

/* Validate one value. When cfg is not NULL, also store what is derived from
 * it (ints, mode, symbols; an int's value is rewritten in canonical form).
 * Returns 0, -CQ_ECONFIG with p filled, or -CQ_ENOMEM. */
static int check_value(const struct cq_config_key *k, const char *v, struct value_problem *p,
                       struct cq_config *cfg)
{
    int rc = 0;
    switch (k->type) {
    case CQ_CFG_T_ENUM: {
        size_t index = 0;
        rc = check_enum(k, v, p, &index);
        if (rc == 0 && cfg != NULL && k->id == CQ_CFG_MODE) {
            cfg->mode = (enum cq_mode)index;
        }
        break;
    }
    case CQ_CFG_T_INT: {
        int64_t n = 0;
        rc = check_int(k, v, p, &n);
        if (rc == 0 && cfg != NULL) {
            char canon[32];
            cfg->ints[k->id] = n;
            snprintf(canon, sizeof(canon), "%lld", (long long)n); /* <= 20 chars: fits */
            if (strcmp(canon, cfg->values[k->id]) != 0) {
                char *copy = strdup(canon);
                if (copy == NULL) {
                    return -CQ_ENOMEM;
                }
                free(cfg->values[k->id]);
                cfg->values[k->id] = copy;
            }
        }
        break;
    }
    case CQ_CFG_T_ONOFF:
        rc = check_onoff(v, p);
        break;
    case CQ_CFG_T_SYMBOLS:
        if (cfg != NULL) {
            free(cfg->symbols_buf);
            cfg->symbols_buf = NULL;
            cfg->n_symbols = 0;
            rc = check_symbols(v, p, &cfg->symbols_buf, cfg->symbols, &cfg->n_symbols);
        } else {
            rc = check_symbols(v, p, NULL, NULL, NULL);
        }
        break;
    case CQ_CFG_T_HOSTPORT:
        rc = check_hostport(v, p);
        break;
    case CQ_CFG_T_PATH:
        rc = check_path(k, v, p);
        break;
    case CQ_CFG_T_SECRET:
        rc = check_secret(k, v, p);
        break;
    case CQ_CFG_T_STRING:
        if (k->check != NULL) {
            char why[160], hint[256];
            if (k->check(v, why, sizeof(why), hint, sizeof(hint)) < 0) {
                rc = problem(p, hint, "%s", why);
            }
        }
        break;
    }
    return rc;
}

/* ---- loading --------------------------------------------------------------- */

struct loader {
    struct cq_config_report *report;
    const char *file_path;                 /* borrowed; NULL when no file */
    char *file_values[CQ_CFG__COUNT];      /* owned: values given in the file */
    unsigned file_lines[CQ_CFG__COUNT];    /* line of each, 0 = not in the file */
    const char *env_values[CQ_CFG__COUNT]; /* borrowed from envp */
    bool valid[CQ_CFG__COUNT];
    bool oom;
};

static void loader_oom(struct loader *ld)
{
    if (!ld->oom) {
        ld->oom = true;
        report_add(ld->report, false, "", "", "", "free memory and try again",
                   "out of memory while loading the configuration");
    }
}

/* "did you mean CQ_MODE?" or a generic hint. */
static void unknown_key_hint(const struct cq_config_key *suggestion, const char *generic,
                             char *hint, size_t len)
{
    if (suggestion != NULL) {
        snprintf(hint, len, "did you mean %s?", suggestion->name);
    } else {
        snprintf(hint, len, "%s", generic);
    }
}

static const char *unknown_key_value(const char *name, const struct cq_config_key *suggestion,
                                     const char *value)
{
    if ((suggestion != NULL && suggestion->secret) || looks_secret(name)) {
        return value[0] != '\0' ? "<redacted>" : "<unset>";
    }
    return value;
}

/* A key name as a report shows it: every byte outside printable ASCII
 * escaped as \xHH (key names are ASCII, so such bytes are invisible or
 * pasted characters, e.g. a U+FEFF byte order mark in the middle of a file,
 * which would otherwise print as nothing). plain gets the name without
 * them, for the did-you-mean suggestion. Returns true when anything was
 * escaped; *bom tells whether a byte order mark (EF BB BF) was among it.
 * Output cut to the buffers is intended (report fields are bounded). */
static bool escape_key_name(const char *name, size_t n, char *shown, size_t shown_len, char *plain,
                            size_t plain_len, bool *bom)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t si = 0, pi = 0;
    bool escaped = false;
    *bom = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x21 && c <= 0x7e) {
            if (si + 1 < shown_len) {
                shown[si++] = (char)c;
            }
            if (pi + 1 < plain_len) {
                plain[pi++] = (char)c;
            }
            continue;
        }
        escaped = true;
        if (c == 0xEF && i + 2 < n && (unsigned char)name[i + 1] == 0xBB &&
            (unsigned char)name[i + 2] == 0xBF) {
            *bom = true;
        }
        if (si + 4 < shown_len) {
            shown[si++] = '\\';
            shown[si++] = 'x';
            shown[si++] = hex[c >> 4];
            shown[si++] = hex[c & 0x0f];
        }
    }
    shown[si] = '\0';
    plain[pi] = '\0';
    return escaped;
}

/* Report an unknown key (file line or CQ_* environment variable). */
static void report_unknown_key(struct loader *ld, bool warning, const char *name, size_t name_len,
                               const char *value, const char *generic_hint, const char *where)
{
    char shown[256];
    char plain[128];
    char hint[256];
    char name_z[128];
    bool bom = false;
    bool escaped =
        escape_key_name(name, name_len, shown, sizeof(shown), plain, sizeof(plain), &bom);
    const struct cq_config_key *sug = suggest_key(plain, strlen(plain));
    unknown_key_hint(sug, generic_hint, hint, sizeof(hint));
    (void)snprintf(name_z, sizeof(name_z), "%.*s", (int)(name_len < 127 ? name_len : 127), name);
    const char *shown_v = unknown_key_value(name_z, sug, value);
    if (!escaped) {
        report_add(ld->report, warning, shown, shown_v, "a key listed in config.env.example", hint,
                   "%s%s %s%s", where, warning ? "unknown environment variable" : "unknown key",
                   shown, warning ? " is ignored" : "");
        return;
    }
    char fix[320]; /* report_add cuts it to the hint field */
    (void)snprintf(fix, sizeof(fix), "retype the name in plain ASCII; %s", hint);
    report_add(ld->report, warning, shown, shown_v, "a key listed in config.env.example", fix,
               "%s%s %s%s: the name holds %s, shown escaped as \\xHH", where,
               warning ? "unknown environment variable" : "unknown key", shown,
               warning ? " is ignored" : "",
               bom ? "a byte order mark (U+FEFF, \\xEF\\xBB\\xBF)"
                   : "invisible or non-ASCII bytes");
}

static void parse_line(struct loader *ld, unsigned line_no, char *line)
{
    const char *path = ld->file_path;
    char *s = trim(line);
    if (s[0] == '\0' || s[0] == '#') {
        return;
    }
    if (strncmp(s, "export", 6) == 0 && (s[6] == ' ' || s[6] == '\t')) {
        s = trim(s + 6);
    }
    char *eq = strchr(s, '=');
    if (eq == NULL || eq == s) {
        char shown[64];
        snprintf(shown, sizeof(shown), "%.60s", looks_secret(s) ? "<redacted>" : s);
        report_add(ld->report, false, "", shown, "KEY=VALUE",
                   "write KEY=VALUE, or start the line with # to make it a comment",
                   eq == NULL ? "%s:%u: expected KEY=VALUE, found no '='"
                              : "%s:%u: expected KEY=VALUE, found no key before '='",
                   path, line_no);
        return;
    }
    *eq = '\0';
    char *name = trim(s);
    char *value = trim(eq + 1);
    size_t vlen = strlen(value);
    if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
        value[vlen - 1] = '\0';
        value++;
    }

    const struct cq_config_key *k = cq_config_key_find(name);
    if (k == NULL) {
        char where[1200];
        (void)snprintf(where, sizeof(where), "%s:%u: ", path, line_no); /* cut ok */
        report_unknown_key(ld, false, name, strlen(name), value,
                           "remove the line, or check the name against config.env.example", where);
        return;
    }
    if (ld->file_lines[k->id] != 0) {
        char shown[256];
        shown_value_buf(k, value, shown, sizeof(shown));
        report_add(ld->report, false, k->name, shown, "each key at most once",
                   "delete one of the two lines", "%s:%u: %s is given twice, on lines %u and %u",
                   path, line_no, k->name, ld->file_lines[k->id], line_no);
        return;
    }
    char *copy = strdup(value);
    if (copy == NULL) {
        loader_oom(ld);
        return;
    }
    ld->file_values[k->id] = copy;
    ld->file_lines[k->id] = line_no;
}

static void parse_file(struct loader *ld, const char *buf, size_t len)
{
    size_t pos = 0;
    unsigned line_no = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        pos = 3; /* UTF-8 byte order mark */
    }
    while (pos < len) {
        const char *start = buf + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;
        pos += n + (nl != NULL ? 1 : 0);
        line_no++;
        if (n > 0 && start[n - 1] == '\r') {
            n--;
        }
        if (n > CFG_LINE_MAX_BYTES) {
            report_add(ld->report, false, "", "", "a line is at most 4096 bytes",
                       "shorten the line or split the value",
                       "%s:%u: line is %zu bytes, longer than 4096", ld->file_path, line_no, n);
            continue;
        }
        if (memchr(start, '\0', n) != NULL) {
            report_add(ld->report, false, "", "", "text lines", "save the file as plain text",
                       "%s:%u: line contains a NUL byte", ld->file_path, line_no);
            continue;
        }
        char line[CFG_LINE_MAX_BYTES + 1];
        memcpy(line, start, n);
        line[n] = '\0';
        parse_line(ld, line_no, line);
        cq_secret_wipe(line, n); /* it may hold a secret */
    }
}

/* A config file that holds a secret must be private to its owner (as the
 * admin token file is): anyone who can read it has the exchange keys. */
static void check_file_secrets_private(struct loader *ld, const struct stat *st)
{
    if ((st->st_mode & 077) == 0) {
        return;
    }
    char names[256];
    size_t used = 0;
    names[0] = '\0';
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        if (keys[i].secret && ld->file_values[i] != NULL && ld->file_values[i][0] != '\0') {
            int n = snprintf(names + used, sizeof(names) - used, "%s%s", used > 0 ? ", " : "",
                             keys[i].name);
            if (n < 0 || (size_t)n >= sizeof(names) - used) {
                break; /* the names of three keys fit; cut otherwise */
            }
            used += (size_t)n;
        }
    }
    if (used == 0) {
        return;
    }
    char hint[256];
    /* cut to the hint field if the path is very long */
    (void)snprintf(hint, sizeof(hint), "chmod 600 %.200s (or move the secrets to the environment)",
                   ld->file_path);
    report_add(ld->report, false, "", "", "a config file holding a secret is private (0600)", hint,
               "config file %s holds %s and is accessible by group or others (mode %04o)",
               ld->file_path, names, (unsigned)(st->st_mode & 07777));
}

/* Read the file into ld; returns the path read (owned) or NULL. */
static char *load_file(struct loader *ld, const char *explicit_path)
{
    const char *path = explicit_path;
    if (path == NULL) {
        struct stat st;
        if (stat(CFG_DEFAULT_FILE, &st) != 0 && errno == ENOENT) {
            return NULL;
        }
        path = CFG_DEFAULT_FILE;
    }
    char *owned = strdup(path);
    if (owned == NULL) {
        loader_oom(ld);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    struct cq_err err;
    cq_err_clear(&err);
    struct stat st;
    int rc = cq_fs_read_file_stat(path, CFG_FILE_MAX_BYTES, &buf, &len, &st, &err);
    if (rc == -CQ_ENOTFOUND) {
        report_add(ld->report, false, "", path, "",
                   "check the path given with --config (relative paths start from the "
                   "working directory), or omit --config to use ./config.env when present",
                   "config file %s does not exist", path);
        free(owned);
        return NULL;
    }
    if (rc == -CQ_ETOOBIG) {
        report_add(ld->report, false, "", path, "a config file is at most 1 MiB",
                   "give the path of the KEY=VALUE config file; it should be a few KiB",
                   "config file %s is larger than 1 MiB", path);
        free(owned);
        return NULL;
    }
    if (rc == -CQ_ENOMEM) {
        loader_oom(ld);
        free(owned);
        return NULL;
    }
    if (rc < 0) {
        report_add(ld->report, false, "", path, "",
                   err.hint[0] != '\0' ? err.hint : "check the path", "cannot read config file: %s",
                   err.message);
        free(owned);
        return NULL;
    }
    ld->file_path = owned;
    parse_file(ld, buf, len);
    OPENSSL_cleanse(buf, len); /* it may hold secrets */
    free(buf);
    check_file_secrets_private(ld, &st);
    return owned;
}

static void load_env(struct loader *ld, char *const *envp)
{
    if (envp == NULL) {
        return;
    }
    for (size_t i = 0; envp[i] != NULL; i++) {
        const char *entry = envp[i];
        const char *eq = strchr(entry, '=');
        if (eq == NULL) {
            continue;
        }
        size_t name_len = (size_t)(eq - entry);
        const struct cq_config_key *k = NULL;
        for (size_t j = 0; j < CQ_CFG__COUNT; j++) {
            if (strlen(keys[j].name) == name_len && memcmp(keys[j].name, entry, name_len) == 0) {
                k = &keys[j];
                break;
            }
        }
        if (k != NULL) {
            if (ld->env_values[k->id] == NULL) { /* first one wins, as getenv() */
                ld->env_values[k->id] = eq + 1;
            }
            continue;
        }
        if (name_len > 3 && strncmp(entry, "CQ_", 3) == 0) {
            report_unknown_key(ld, true, entry, name_len < 63 ? name_len : 63, eq + 1,
                               "unset it, or check the name against config.env.example", "");
        }
    }
}

/* "env", "file ./config.env:4" or "default". */
static void describe_source(const struct loader *ld, const struct cq_config *cfg,
                            enum cq_config_key_id id, char *buf, size_t len)
{
    switch (cfg->sources[id]) {
    case CQ_CFG_SRC_ENV:
        snprintf(buf, len, "env");
        break;
    case CQ_CFG_SRC_FILE:
        snprintf(buf, len, "file %s:%u", ld->file_path, ld->file_lines[id]);
        break;
    case CQ_CFG_SRC_DEFAULT:
        snprintf(buf, len, "default");
        break;
    }
}

static void validate_values(struct loader *ld, struct cq_config *cfg)
{
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        struct value_problem p;
        memset(&p, 0, sizeof(p));
        /* Shown before check_value() may rewrite an int in canonical form. */
        char shown[256];
        shown_value_buf(k, cfg->values[i], shown, sizeof(shown));
        int rc = check_value(k, cfg->values[i], &p, cfg);
        if (rc == -CQ_ENOMEM) {
            loader_oom(ld);
            continue;
        }
        if (rc < 0) {
            char src[1200];
            describe_source(ld, cfg, k->id, src, sizeof(src));
            report_add(ld->report, false, k->name, shown, k->rule, p.hint, "value from %s %s", src,
                       p.what);
            continue;
        }
        ld->valid[i] = true;
    }
}

static void validate_cross(struct loader *ld, struct cq_config *cfg)
{
    const bool *ok = ld->valid;
    const char *mode_src = cq_config_source_name(cfg->sources[CQ_CFG_MODE]);
    bool exchange = ok[CQ_CFG_MODE] && (cfg->mode == CQ_MODE_TESTNET || cfg->mode == CQ_MODE_LIVE);

    if (ok[CQ_CFG_MODE] && ok[CQ_CFG_LIVE_CONFIRM] && cfg->mode == CQ_MODE_LIVE &&
        strcmp(cfg->values[CQ_CFG_LIVE_CONFIRM], "yes") != 0) {
        report_add(ld->report, false, "CQ_LIVE_CONFIRM", cfg->values[CQ_CFG_LIVE_CONFIRM],
                   "live mode refuses to start unless CQ_LIVE_CONFIRM=yes",
                   "set CQ_LIVE_CONFIRM=yes to confirm trading real funds, or choose "
                   "CQ_MODE=paper, dryrun or testnet",
                   "CQ_MODE=live (from %s) needs CQ_LIVE_CONFIRM=yes; it is %s (from %s)", mode_src,
                   cfg->values[CQ_CFG_LIVE_CONFIRM],
                   cq_config_source_name(cfg->sources[CQ_CFG_LIVE_CONFIRM]));
    }
    if (exchange) {
        static const enum cq_config_key_id creds[] = {CQ_CFG_BINANCE_API_KEY,
                                                      CQ_CFG_BINANCE_API_SECRET};
        for (size_t i = 0; i < CQ_ARRAY_LEN(creds); i++) {
            const struct cq_config_key *k = &keys[creds[i]];
            if (cfg->values[k->id][0] == '\0') {
                char hint[256];
                snprintf(hint, sizeof(hint),
                         "set %s in the environment or the config file, or use CQ_MODE=paper "
                         "or dryrun",
                         k->name);
                report_add(ld->report, false, k->name, "<unset>", "required in testnet and live",
                           hint, "CQ_MODE=%s (from %s) needs %s, which is not set",
                           cq_mode_name(cfg->mode), mode_src, k->name);
            }
        }
    }
    if (exchange && ok[CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL] &&
        strcmp(cfg->values[CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL], "on") == 0) {
        report_add(ld->report, false, "TEST_ALLOW_DEFAULT_SIGNAL", "on",
                   "refused in testnet and live",
                   "set TEST_ALLOW_DEFAULT_SIGNAL=off, or use CQ_MODE=paper or dryrun",
                   "TEST_ALLOW_DEFAULT_SIGNAL=on (from %s) is refused in %s mode (from %s)",
                   cq_config_source_name(cfg->sources[CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL]),
                   cq_mode_name(cfg->mode), mode_src);
    }
    /* ok[CQ_CFG_STRATEGY] implies a registered check (check_strategy). */
    cq_config_strategy_check_fn strategy_params_check =
        atomic_load_explicit(&strategy_check, memory_order_acquire);
    if (ok[CQ_CFG_STRATEGY] && ok[CQ_CFG_STRATEGY_PARAMS] && strategy_params_check != NULL) {
        char why[160], hint[256];
        if (strategy_params_check(cfg->values[CQ_CFG_STRATEGY], cfg->values[CQ_CFG_STRATEGY_PARAMS],
                                  why, sizeof(why), hint, sizeof(hint)) < 0) {
            report_add(ld->report, false, "CQ_STRATEGY_PARAMS", cfg->values[CQ_CFG_STRATEGY_PARAMS],
                       keys[CQ_CFG_STRATEGY_PARAMS].rule, hint,
                       "CQ_STRATEGY_PARAMS (from %s) %s for CQ_STRATEGY=%s",
                       cq_config_source_name(cfg->sources[CQ_CFG_STRATEGY_PARAMS]), why,
                       cfg->values[CQ_CFG_STRATEGY]);
        }
    }
    if (ok[CQ_CFG_EXCHANGE_REST_URL] && ok[CQ_CFG_EXCHANGE_WS_URL] &&
        (cfg->values[CQ_CFG_EXCHANGE_REST_URL][0] == '\0') !=
            (cfg->values[CQ_CFG_EXCHANGE_WS_URL][0] == '\0')) {
        bool rest_set = cfg->values[CQ_CFG_EXCHANGE_REST_URL][0] != '\0';
        const char *unset = rest_set ? "CQ_EXCHANGE_WS_URL" : "CQ_EXCHANGE_REST_URL";
        report_add(ld->report, false, unset, "<unset>",
                   "CQ_EXCHANGE_REST_URL and CQ_EXCHANGE_WS_URL are set together",
                   "set both URLs of the running exchange, or neither to use the embedded "
                   "simulator",
                   "%s is set but %s is not",
                   rest_set ? "CQ_EXCHANGE_REST_URL" : "CQ_EXCHANGE_WS_URL", unset);
    }
    if (ok[CQ_CFG_ADMIN_BIND] && cfg->values[CQ_CFG_ADMIN_TOKEN][0] == '\0') {
        char host[256];
        int port = 0;
        int rc = cq_hostport_parse(cfg->values[CQ_CFG_ADMIN_BIND], host, sizeof(host), &port, NULL);
        if (rc == 0 && !cq_host_is_loopback(host)) {
            report_add(ld->report, false, "CQ_ADMIN_BIND", cfg->values[CQ_CFG_ADMIN_BIND],
                       "a non-loopback address needs CQ_ADMIN_TOKEN",
                       "set CQ_ADMIN_TOKEN (16-256 characters), or bind to 127.0.0.1",
                       "CQ_ADMIN_BIND (from %s) is not a loopback address and CQ_ADMIN_TOKEN "
                       "is not set",
                       cq_config_source_name(cfg->sources[CQ_CFG_ADMIN_BIND]));
        }
    }
}

/* A value as the config keeps it: a secret key's in a secret buffer of its
 * own (cq_secret_dup: out of core dumps, wiped when freed). A secret longer
 * than a secret buffer holds keeps its first CQ_SECRET_DUP_MAX_LEN bytes,
 * which check_secret refuses all the same (its max is 256). */
static char *value_dup(const struct cq_config_key *k, const char *v)
{
    return k->secret ? cq_secret_dupn(v, CQ_SECRET_DUP_MAX_LEN) : strdup(v);
}

static void value_free(const struct cq_config_key *k, char *v)
{
    if (k->secret) {
        cq_secret_free(v);
    } else {
        free(v);
    }
}

static void config_free(struct cq_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        value_free(&keys[i], cfg->values[i]);
    }
    free(cfg->symbols_buf);
    free(cfg->file_path);
    free(cfg);
}

static int key_name_cmp(const void *a, const void *b)
{
    const struct cq_config_key *const *ka = a;
    const struct cq_config_key *const *kb = b;
    return strcmp((*ka)->name, (*kb)->name);
}

/* SHA-256 over the sorted "KEY=VALUE\n" lines; secrets as <set>/<unset>. */
static int compute_hash(struct cq_config *cfg)
{
    const struct cq_config_key *sorted[CQ_CFG__COUNT];
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        sorted[i] = &keys[i];
    }
    qsort(sorted, CQ_CFG__COUNT, sizeof(sorted[0]), key_name_cmp);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return -CQ_ENOMEM;
    }
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < CQ_CFG__COUNT && ok == 1; i++) {
        const struct cq_config_key *k = sorted[i];
        const char *v = cfg->values[k->id];
        if (k->secret) {
            v = v[0] != '\0' ? "<set>" : "<unset>";
        }
        ok = EVP_DigestUpdate(ctx, k->name, strlen(k->name));
        if (ok == 1) {
            ok = EVP_DigestUpdate(ctx, "=", 1);
        }
        if (ok == 1) {
            ok = EVP_DigestUpdate(ctx, v, strlen(v));
        }
        if (ok == 1) {
            ok = EVP_DigestUpdate(ctx, "\n", 1);
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (ok == 1) {
        ok = EVP_DigestFinal_ex(ctx, md, &md_len);
    }
    EVP_MD_CTX_free(ctx);
    if (ok != 1 || md_len != 32) {
        return -CQ_ENOMEM;
    }
    _Static_assert(sizeof(cfg->hash_full) == 2 * 32 + 1, "hex of a SHA-256 and a NUL");
    cq_text_hex_encode(md, md_len, cfg->hash_full);
    memcpy(cfg->hash, cfg->hash_full, 12);
    cfg->hash[12] = '\0';
    return 0;
}

static struct cq_config *config_alloc(void)
{
    struct cq_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        return NULL;
    }
    atomic_init(&cfg->refs, 1);
    return cfg;
}

struct cq_config *cq_config_load(const struct cq_config_load_options *opts,
                                 struct cq_config_report *report)
{
    struct cq_config_report *own_report = NULL;
    if (report == NULL) {
        own_report = malloc(sizeof(*own_report));
        if (own_report == NULL) {
            return NULL;
        }
        report = own_report;
    }
    memset(report, 0, sizeof(*report));

    struct loader ld;
    memset(&ld, 0, sizeof(ld));
    ld.report = report;

    struct cq_config *cfg = config_alloc();
    if (cfg == NULL) {
        loader_oom(&ld);
        free(own_report);
        return NULL;
    }
    cfg->file_path = load_file(&ld, opts != NULL ? opts->file_path : NULL);
    load_env(&ld, opts != NULL ? opts->envp : NULL);

    for (size_t i = 0; i < CQ_CFG__COUNT && !ld.oom; i++) {
        const char *v = keys[i].default_value;
        cfg->sources[i] = CQ_CFG_SRC_DEFAULT;
        if (ld.env_values[i] != NULL) {
            v = ld.env_values[i];
            cfg->sources[i] = CQ_CFG_SRC_ENV;
        } else if (ld.file_values[i] != NULL) {
            v = ld.file_values[i];
            cfg->sources[i] = CQ_CFG_SRC_FILE;
        }
        cfg->values[i] = value_dup(&keys[i], v);
        if (cfg->values[i] == NULL) {
            loader_oom(&ld);
        }
    }
    if (!ld.oom) {
        validate_values(&ld, cfg);
        validate_cross(&ld, cfg);
    }
    if (report->n_errors == 0 && compute_hash(cfg) < 0) {
        loader_oom(&ld);
    }

    bool failed = ld.oom || report->n_errors > 0;
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        if (keys[i].secret && ld.file_values[i] != NULL) {
            cq_secret_wipe(ld.file_values[i], strlen(ld.file_values[i]));
        }
        free(ld.file_values[i]);
    }
    free(own_report);
    if (failed) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct cq_config *cq_config_ref(struct cq_config *cfg)
{
    if (cfg != NULL) {
        /* relaxed: a new reference is only made from an existing one, which
         * already keeps the object alive; no data is published by this. */
        atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    }
    return cfg;
}

void cq_config_unref(struct cq_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    /* release: this thread's reads of cfg happen before the count drops;
     * the acquire fence in the last owner orders them before the free. */
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_release) == 1) {
        atomic_thread_fence(memory_order_acquire);
        config_free(cfg);
    }
}

/* ---- reading --------------------------------------------------------------- */

const char *cq_config_str(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT);
    return cfg->values[id];
}

int64_t cq_config_int(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT && keys[id].type == CQ_CFG_T_INT);
    return cfg->ints[id];
}

bool cq_config_onoff(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT && keys[id].type == CQ_CFG_T_ONOFF);
    return strcmp(cfg->values[id], "on") == 0;
}

cq_dec cq_config_dec(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT && keys[id].type == CQ_CFG_T_STRING &&
           keys[id].check != NULL);
    cq_dec d = CQ_DEC_ZERO;
    const char *v = cfg->values[id];
    if (cq_dec_parse(v, strlen(v), &d) < 0) {
        /* unreachable on a loaded config: the key's check parsed it */
        return CQ_DEC_ZERO;
    }
    return d;
}

bool cq_config_is_set(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT);
    return cfg->values[id][0] != '\0';
}

enum cq_config_source cq_config_source(const struct cq_config *cfg, enum cq_config_key_id id)
{
    assert((size_t)id < CQ_CFG__COUNT);
    return cfg->sources[id];
}

enum cq_mode cq_config_mode(const struct cq_config *cfg)
{
    return cfg->mode;
}

size_t cq_config_symbols(const struct cq_config *cfg, const char *const **symbols)
{
    if (symbols != NULL) {
        *symbols = cfg->symbols;
    }
    return cfg->n_symbols;
}

const char *cq_config_file_path(const struct cq_config *cfg)
{
    return cfg->file_path;
}

const char *cq_config_hash(const struct cq_config *cfg)
{
    return cfg->hash;
}

const char *cq_config_hash_full(const struct cq_config *cfg)
{
    return cfg->hash_full;
}

/* json_string() needs UTF-8; a path may hold other bytes: those show as '?'. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL) {
        return j;
    }
    char *copy = strdup(s);
    if (copy == NULL) {
        return NULL;
    }
    sanitize_utf8(copy);
    j = json_string(copy);
    free(copy);
    return j;
}

json_t *cq_config_to_json(const struct cq_config *cfg)
{
    json_t *root = json_object();
    json_t *jkeys = json_object();
    if (root == NULL || jkeys == NULL) {
        goto fail;
    }
    if (json_object_set_new(root, "config_hash", json_string(cfg->hash)) != 0 ||
        json_object_set_new(
            root, "file", cfg->file_path != NULL ? json_text(cfg->file_path) : json_null()) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        json_t *jk = json_object();
        if (jk == NULL) {
            goto fail;
        }
        json_t *value;
        if (k->secret) {
            value = cfg->values[i][0] != '\0' ? json_string("<redacted>") : json_null();
        } else {
            value = json_text(cfg->values[i]);
        }
        if (json_object_set_new(jk, "value", value) != 0 ||
            json_object_set_new(jk, "source",
                                json_string(cq_config_source_name(cfg->sources[i]))) != 0 ||
            json_object_set_new(jk, "secret", json_boolean(k->secret)) != 0 ||
            json_object_set_new(jk, "reloadable", json_boolean(k->reloadable)) != 0) {
            json_decref(jk);
            goto fail;
        }
        if (json_object_set_new(jkeys, k->name, jk) != 0) {
            goto fail;
        }
    }
    if (json_object_set_new(root, "keys", jkeys) != 0) {
        jkeys = NULL; /* stolen even on failure */
        goto fail;
    }
    return root;
fail:
    json_decref(jkeys);
    json_decref(root);
    return NULL;
}

void cq_config_print(const struct cq_config *cfg, FILE *out)
{
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        fprintf(out, "%s=%s  (%s)\n", k->name, shown_value(k, cfg->values[i]),
                cq_config_source_name(cfg->sources[i]));
    }
    fprintf(out, "config_hash=%s\n", cfg->hash);
}

void cq_config_foreach_secret(const struct cq_config *cfg,
                              void (*fn)(const char *name, const char *value, void *ctx), void *ctx)
{
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        if (keys[i].secret && cfg->values[i][0] != '\0') {
            fn(keys[i].name, cfg->values[i], ctx);
        }
    }
}

/* ---- reload ---------------------------------------------------------------- */

size_t cq_config_diff(const struct cq_config *old_cfg, const struct cq_config *new_cfg,
                      void (*fn)(const struct cq_config_key *key, const char *old_value,
                                 const char *new_value, void *ctx),
                      void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        if (strcmp(old_cfg->values[i], new_cfg->values[i]) == 0) {
            continue;
        }
        n++;
        if (fn != NULL) {
            fn(k, k->secret ? NULL : old_cfg->values[i], k->secret ? NULL : new_cfg->values[i],
               ctx);
        }
    }
    return n;
}

struct cq_config *
cq_config_merge_reload(const struct cq_config *old_cfg, const struct cq_config *new_cfg,
                       void (*refused_fn)(const struct cq_config_key *key, void *ctx), void *ctx)
{
    struct cq_config *cfg = config_alloc();
    if (cfg == NULL) {
        return NULL;
    }
    if (new_cfg->file_path != NULL) {
        cfg->file_path = strdup(new_cfg->file_path);
        if (cfg->file_path == NULL) {
            goto fail;
        }
    }
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        const struct cq_config *from = k->reloadable ? new_cfg : old_cfg;
        if (!k->reloadable && refused_fn != NULL &&
            strcmp(old_cfg->values[i], new_cfg->values[i]) != 0) {
            refused_fn(k, ctx);
        }
        cfg->values[i] = value_dup(k, from->values[i]);
        if (cfg->values[i] == NULL) {
            goto fail;
        }
        cfg->sources[i] = from->sources[i];
    }
    /* Both inputs were validated, so every value passes again; this only
     * rebuilds the derived fields (ints, mode, symbols). */
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        struct value_problem p;
        int rc = check_value(&keys[i], cfg->values[i], &p, cfg);
        if (rc < 0) {
            goto fail;
        }
    }
    if (compute_hash(cfg) < 0) {
        goto fail;
    }
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

/* ---- generated documents --------------------------------------------------- */

void cq_config_write_example(FILE *out)
{
    fputs("# config.env.example: every coinquant configuration key, commented out, with\n"
          "# its default. Generated from the key table in server/core/config.c by\n"
          "# `coinquantd config example > config.env.example`; do not edit by hand (a test\n"
          "# fails when this file and the table differ).\n"
          "#\n"
          "# Copy it to ./config.env (or pass --config FILE) and uncomment what you change.\n"
          "# Precedence: environment > config file > default. Syntax: KEY=VALUE per line,\n"
          "# '#' comments, optional `export ` prefix, optional matching quotes.\n"
          "# Check the result with `coinquantd config check`. See docs/CONFIG.md.\n",
          out);
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        fprintf(out, "\n# %s\n", k->doc);
        fprintf(out, "# type: %s; rule: %s\n", type_name(k->type), k->rule);
        fprintf(out, "# default: %s; %s%s\n",
                k->default_value[0] != '\0' ? k->default_value : "(empty)",
                k->reloadable ? "reloadable (SIGHUP)" : "restart to change",
                k->secret ? "; secret: never printed, hashed only as set/unset" : "");
        fprintf(out, "# %s=%s\n", k->name, k->default_value);
    }
}

/* A Markdown table cell: '|' escaped. */
static void md_cell(FILE *out, const char *s, bool code)
{
    fputs(code ? " `" : " ", out);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '|') {
            fputc('\\', out);
        }
        fputc(*p, out);
    }
    fputs(code ? "` |" : " |", out);
}

void cq_config_write_doc_table(FILE *out)
{
    fputs("| key | type | default | rule | secret | reloadable | doc |\n"
          "|---|---|---|---|---|---|---|\n",
          out);
    for (size_t i = 0; i < CQ_CFG__COUNT; i++) {
        const struct cq_config_key *k = &keys[i];
        fputc('|', out);
        md_cell(out, k->name, true);
        md_cell(out, type_name(k->type), false);
        if (k->default_value[0] != '\0') {
            md_cell(out, k->default_value, true);
        } else {
            md_cell(out, "(empty)", false);
        }
        md_cell(out, k->rule, false);
        md_cell(out, k->secret ? "yes" : "no", false);
        md_cell(out, k->reloadable ? "yes" : "no", false);
        md_cell(out, k->doc, false);
        fputc('\n', out);
    }
}

/* ---- helpers ---------------------------------------------------------------- */

static bool hostname_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-';
}

static bool ipv6_char_ok(unsigned char c)
{
    return isxdigit(c) || c == ':' || c == '.';
}

int cq_hostport_parse(const char *s, char *host, size_t host_len, int *port, struct cq_err *err)
{
    static const char *const hint = "write host:port or [ipv6]:port, e.g. 127.0.0.1:8080";
    const char *host_start;
    size_t hlen;
    const char *port_str;

    if (s == NULL || s[0] == '\0') {
        return cq_err_set(err, CQ_EPARSE, 0, hint, "is empty");
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "has '[' without ']'");
        }
        host_start = s + 1;
        hlen = (size_t)(close - host_start);
        if (hlen == 0) {
            return cq_err_set(err, CQ_EPARSE, 0, hint, "has an empty IPv6 address");
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!ipv6_char_ok((unsigned char)host_start[i])) {
                return cq_err_set(err, CQ_EPARSE, 0, hint,
                                  "has a character not allowed in an IPv6 address");
            }
        }
        if (memchr(host_start, ':', hlen) == NULL) {
            return cq_err_set(err, CQ_EPARSE, 0, hint,
                              "has brackets around something that is not an IPv6 address");
        }
        if (close[1] != ':') {
            return cq_err_set(err, CQ_EPARSE, 0, "add the port, e.g. [::1]:8080",
                              "has no :port after the IPv6 address");
        }
        port_str = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            return cq_err_set(err, CQ_EPARSE, 0, "add the port, e.g. 127.0.0.1:8080",
                              "has no :port");
        }
        if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
            return cq_err_set(err, CQ_EPARSE, 0,
                              "write an IPv6 address in brackets, e.g. [::1]:8080",
                              "has several ':' (an IPv6 address needs brackets)");
        }
        host_start = s;
        hlen = (size_t)(colon - s);
        if (hlen == 0) {
            return cq_err_set(err, CQ_EPARSE, 0,
                              "name the host, e.g. 127.0.0.1:8080 (0.0.0.0:8080 listens on "
                              "every interface)",
                              "has no host before ':'");
        }
        if (hlen > 253) {
            return cq_err_set(err, CQ_EPARSE, 0, hint,
                              "has a host name longer than 253 characters");
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!hostname_char_ok((unsigned char)host_start[i])) {
                return cq_err_set(err, CQ_EPARSE, 0, hint,
                                  "has a character not allowed in a host name or address");
            }
        }
        port_str = colon + 1;
    }

    size_t plen = strlen(port_str);
    if (plen == 0) {
        return cq_err_set(err, CQ_EPARSE, 0, "add the port number, e.g. 127.0.0.1:8080",
                          "has an empty port");
    }
    if (plen > 5) {
        return cq_err_set(err, CQ_EPARSE, 0, "use a port from 0 to 65535",
                          "has a port out of range");
    }
    int value = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char)port_str[i])) {
            return cq_err_set(err, CQ_EPARSE, 0, "use a port from 0 to 65535",
                              "has a port that is not a number");
        }
        value = value * 10 + (port_str[i] - '0');
    }
    if (value > 65535) {
        return cq_err_set(err, CQ_EPARSE, 0, "use a port from 0 to 65535",
                          "has a port out of range");
    }
    if (host == NULL || hlen >= host_len) {
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter host name",
                          "has a host longer than the %zu bytes allowed",
                          host_len > 0 ? host_len - 1 : 0);
    }
    memcpy(host, host_start, hlen);
    host[hlen] = '\0';
    if (port != NULL) {
        *port = value;
    }
    return 0;
}

bool cq_host_is_loopback(const char *host)
{
    if (host == NULL) {
        return false;
    }
    if (strcasecmp(host, "localhost") == 0) {
        return true;
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) {
            return true;
        }
        /* ::ffff:127.x.y.z, an IPv4 loopback address mapped into IPv6 */
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

int cq_bind_addr_resolve(const char *s, struct cq_bind_addr *out, struct cq_err *err)
{
    char host[256];
    int port = 0;
    int rc = cq_hostport_parse(s, host, sizeof(host), &port, err);
    if (rc < 0) {
        return rc;
    }
    memset(out, 0, sizeof(*out));
    out->port = port;
    /* Host names are case-insensitive: LOCALHOST is localhost. */
    const char *ip = strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        inet_ntop(AF_INET, &sin->sin_addr, out->host, sizeof(out->host));
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            char v4[INET_ADDRSTRLEN];
            char hint[CQ_ERR_HINT_MAX];
            inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], v4, sizeof(v4));
            /* bounded: v4 is at most 15 characters */
            snprintf(hint, sizeof(hint), "write the IPv4 address itself, e.g. %s:%d", v4, port);
            return cq_err_set(err, CQ_ECONFIG, 0, hint,
                              "names the IPv4-mapped IPv6 address %s, which an IPv6-only "
                              "listening socket cannot bind",
                              host);
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
        out->v6 = true;
        inet_ntop(AF_INET6, &sin6->sin6_addr, out->host, sizeof(out->host));
        return 0;
    }
    return cq_err_set(
        err, CQ_ECONFIG, 0, "use an IP address (127.0.0.1, [::1], 0.0.0.0) or localhost",
        "names host \"%.64s\", which is not an IP address (no DNS lookup is made)", host);
}

/* ---- current config ---------------------------------------------------------- */

struct cq_config_current {
    pthread_mutex_t lock;  /* guards cfg */
    struct cq_config *cfg; /* owned reference */
};

struct cq_config_current *cq_config_current_new(struct cq_config *cfg)
{
    struct cq_config_current *cur = calloc(1, sizeof(*cur));
    if (cur == NULL) {
        cq_config_unref(cfg);
        return NULL;
    }
    if (pthread_mutex_init(&cur->lock, NULL) != 0) {
        free(cur);
        cq_config_unref(cfg);
        return NULL;
    }
    cur->cfg = cfg;
    return cur;
}

void cq_config_current_free(struct cq_config_current *cur)
{
    if (cur == NULL) {
        return;
    }
    cq_config_unref(cur->cfg);
    pthread_mutex_destroy(&cur->lock);
    free(cur);
}

struct cq_config *cq_config_current_get(struct cq_config_current *cur)
{
    pthread_mutex_lock(&cur->lock);
    struct cq_config *cfg = cq_config_ref(cur->cfg);
    pthread_mutex_unlock(&cur->lock);
    return cfg;
}

void cq_config_current_set(struct cq_config_current *cur, struct cq_config *cfg)
{
    pthread_mutex_lock(&cur->lock);
    struct cq_config *old = cur->cfg;
    cur->cfg = cfg;
    pthread_mutex_unlock(&cur->lock);
    cq_config_unref(old); /* outside the lock: freeing may take a while */
}
