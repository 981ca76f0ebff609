/*
 * trader.h — the trader: the one path to the exchange's order endpoint,
 * behind the risk gate. Two parts:
 *
 *  1. The DECISION CORE (struct cq_trader_core): a deterministic state
 *     machine without I/O. It takes events (a signal, an order update or an
 *     unknown outcome, an account snapshot, exchangeInfo, a timer tick with
 *     the time passed in, …) and returns actions (append this journal
 *     record, send this order, query it, cancel it, fetch the account, …).
 *     It reads no clock, opens no socket, starts no thread, logs nothing and
 *     allocates nothing per event (its tables are sized at creation). The
 *     same core runs in the daemon, the backtest and the seeded fault
 *     simulation. Threads: one owner thread at a time; not thread-safe.
 *
 *  2. The THREAD (struct cq_trader): the shell around the core in
 *     coinquantd. It owns the REST client, reads the two rings (signals from
 *     ARES, user data events from the feeder), turns exchange JSON into core
 *     events, performs the core's actions in order (a journal action with
 *     wait_durable blocks until the record is durable, and the send that
 *     follows it is skipped when that fails), logs, and publishes health and
 *     a read-only snapshot for the admin API.
 *
 * The order path (ARCHITECTURE rule 3): the core emits a SEND only after
 * the risk decision record and a durable intent record for that order, in
 * the same action list; the shell's only way to the order endpoint is
 * cq_trader_venue_send (server/trader/trader-venue.h).
 *
 * Client order ids: CQ_TRADER_CLIENT_ID_PREFIX + 32 lower-case hex
 * characters (36 in all, [A-Za-z0-9_-]), derived from the signal id (an
 * entry or a SELL signal's exit) or from the position's entry id and the
 * exit kind (stop-loss, take-profit): deterministic, so a restart, a replay
 * or a resend after an unknown outcome always uses the same id. Orders
 * without the prefix are not ours: reported, never touched.
 */
#ifndef CQ_TRADER_H
#define CQ_TRADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/config.h"
#include "cq/decimal.h"
#include "cq/filters.h"
#include "cq/health.h"
#include "cq/market.h"
#include "cq/risk.h"
#include "cq/service.h"
#include "cq/signal.h"
#include "cq/spsc.h"
#include "cq/strategy.h"

/* ==== the decision core ======================================================= */

#define CQ_TRADER_CLIENT_ID_PREFIX "cq1-"
#define CQ_TRADER_CLIENT_ID_MAX 36 /* characters, without NUL */
#define CQ_TRADER_CLIENT_ID_LEN (CQ_TRADER_CLIENT_ID_MAX + 1)
#define CQ_TRADER_ASSET_LEN 16
#define CQ_TRADER_ACTIONS_MAX 32   /* actions one event may produce */
#define CQ_TRADER_PAYLOAD_MAX 1024 /* bytes of one journal payload (JSON) */
#define CQ_TRADER_ORDERS_MAX 512   /* live orders the core tracks (open, unknown, in flight) */
#define CQ_TRADER_SYMBOLS_MAX CQ_MAX_SYMBOLS
#define CQ_TRADER_ASSETS_MAX 64
#define CQ_TRADER_SIGNALS_SEEN_MAX 4096 /* recent signal ids remembered (duplicates refused) */
/* The trader checkpoint's payload: whole state, bounded below
 * CQ_JOURNAL_PAYLOAD_MAX (64 KiB). Too many live orders to fit: the
 * checkpoint is skipped and counted (the records after the previous one
 * still rebuild the state); seen ids: the newest that fit, the rest named
 * in "seen_dropped". */
#define CQ_TRADER_CHECKPOINT_MAX (60 * 1024)
/* Record types the core writes that cq/journal.h numbers (CQ_REC_ORDER_REFUSED,
 * CQ_REC_TRADER_CHECKPOINT): the same stable ids. */
#define CQ_TRADER_REC_ORDER_REFUSED 13
#define CQ_TRADER_REC_TRADER_CHECKPOINT 14

enum cq_trader_order_type { CQ_TRADER_MARKET, CQ_TRADER_LIMIT };

/* Why an order exists. */
enum cq_trader_purpose {
    CQ_TRADER_ENTRY,       /* a BUY signal */
    CQ_TRADER_EXIT,        /* a SELL signal */
    CQ_TRADER_STOP_LOSS,   /* the position fell stop_loss_pct below its entry */
    CQ_TRADER_TAKE_PROFIT, /* the position rose take_profit_pct above its entry */
    CQ_TRADER_ADOPTED      /* found open on the exchange with our prefix */
};

enum cq_trader_order_state {
    CQ_TRADER_OS_INTENT,   /* journaled, not sent yet */
    CQ_TRADER_OS_SENT,     /* request in flight */
    CQ_TRADER_OS_UNKNOWN,  /* the outcome is unknown: query before anything else */
    CQ_TRADER_OS_OPEN,     /* NEW or PARTIALLY_FILLED on the exchange */
    CQ_TRADER_OS_FILLED,   /* terminal from here on */
    CQ_TRADER_OS_CANCELED, /* CANCELED or EXPIRED (partly filled or not) */
    CQ_TRADER_OS_REJECTED, /* the exchange refused it */
    CQ_TRADER_OS_FAILED    /* never reached the exchange (an intent it never saw) */
};

struct cq_trader_core_config {
    enum cq_mode mode;
    cq_dec order_quote;                   /* CQ_ORDER_QUOTE: quote amount per entry */
    enum cq_trader_order_type entry_type; /* CQ_ORDER_TYPE */
    cq_dec stop_loss_pct;                 /* CQ_STOP_LOSS_PCT, e.g. 2.5; 0 = off */
    cq_dec take_profit_pct;               /* CQ_TAKE_PROFIT_PCT; 0 = off */
    cq_dec insufficient_scale;            /* CQ_INSUFFICIENT_SCALE, e.g. 0.5 */
    unsigned insufficient_retries;        /* CQ_INSUFFICIENT_RETRIES */
    int64_t quarantine_ms;                /* CQ_QUARANTINE_S * 1000 */
    int64_t unknown_query_every_ms;       /* query an unknown order this often */
    int64_t reconcile_every_ms;           /* periodic reconcile while trading */
    int64_t poll_orders_every_ms;         /* while the user stream is down */
    int64_t account_retry_min_ms;         /* awaiting_balance backoff */
    int64_t account_retry_max_ms;
    int64_t exchange_info_every_ms; /* reload filters */
    struct cq_risk_limits risk;
    unsigned orders_max; /* live orders tracked; 0 = CQ_TRADER_ORDERS_MAX (the most) */
    /* CQ_TRADER_MARK_MS: on EV_TICK, FETCH_MARK for each symbol with a
     * position at most this often (unrealized PnL, stop-loss, take-profit);
     * 0 = never (whoever feeds the core sends EV_MARK_PRICE itself) */
    int64_t mark_every_ms;
};

/* One symbol from exchangeInfo. */
struct cq_trader_symbol_info {
    char symbol[CQ_SYMBOL_LEN];
    char base[CQ_TRADER_ASSET_LEN];
    char quote[CQ_TRADER_ASSET_LEN];
    bool trading; /* status TRADING */
    struct cq_filters filters;
};

struct cq_trader_balance {
    char asset[CQ_TRADER_ASSET_LEN];
    cq_dec free, locked;
};

/* An order as the exchange reports it: a place response, a query
 * (GET /api/v3/order), an entry of openOrders, or an executionReport. The
 * cumulative fields make a fill count exactly once: the core applies the
 * increase of executed_qty / cum_quote over what it already knows. */
struct cq_trader_order_update {
    char symbol[CQ_SYMBOL_LEN];
    char client_id[CQ_TRADER_CLIENT_ID_LEN]; /* clientOrderId (or origClientOrderId on a cancel) */
    uint64_t order_id;                       /* the exchange's */
    enum cq_side side;
    enum cq_trader_order_type type;
    enum cq_trader_order_state state; /* OPEN, FILLED, CANCELED, REJECTED */
    cq_dec orig_qty, price;
    cq_dec executed_qty, cum_quote; /* cumulative */
    /* The last fill, when the source names one (an executionReport TRADE,
     * one element of a FULL response's fills, a myTrades row): its
     * commission is applied once per trade id. trade_id 0 = none. */
    uint64_t trade_id;
    cq_dec last_qty, last_price, commission;
    char commission_asset[CQ_TRADER_ASSET_LEN];
    int64_t event_ms; /* exchange time */
};

enum cq_trader_send_outcome {
    CQ_TRADER_SEND_REJECTED,      /* the exchange refused it: code, msg (e.g. -2010) */
    CQ_TRADER_SEND_UNKNOWN,       /* timeout, 5xx, -1007, connection lost after send */
    CQ_TRADER_SEND_RATE_LIMITED,  /* 429 / -1003 / -1015 before it was accepted: retry_after_ms */
    CQ_TRADER_SEND_BANNED,        /* 418: retry_after_ms */
    CQ_TRADER_SEND_NOT_FOUND,     /* a query answered -2013: the exchange never saw it */
    CQ_TRADER_SEND_JOURNAL_FAILED /* the intent never became durable: not sent */
};

enum cq_trader_operator_cmd {
    CQ_TRADER_CMD_PAUSE,
    CQ_TRADER_CMD_RESUME,
    CQ_TRADER_CMD_KILL, /* kill switch on: cancel ours, send nothing */
    CQ_TRADER_CMD_UNKILL,
    CQ_TRADER_CMD_CLEAR_QUARANTINE /* .symbol */
};

enum cq_trader_event_kind {
    CQ_TRADER_EV_TICK,   /* time passed: timers (queries, backoff, day roll, quarantine expiry) */
    CQ_TRADER_EV_SIGNAL, /* .signal */
    CQ_TRADER_EV_SYMBOL_INFO,        /* .symbol_info: one symbol of exchangeInfo */
    CQ_TRADER_EV_EXCHANGE_INFO_DONE, /* every symbol delivered (or .failed) */
    CQ_TRADER_EV_ACCOUNT,            /* .balances: a full account snapshot (or .failed) */
    CQ_TRADER_EV_BALANCE_UPDATE,     /* .balances: outboundAccountPosition (the assets named) */
    CQ_TRADER_EV_ORDER_UPDATE,       /* .order */
    CQ_TRADER_EV_SEND_FAILED,        /* .send: the send or query of .send.client_id */
    CQ_TRADER_EV_OPEN_ORDERS_DONE,   /* every open order delivered as ORDER_UPDATE (or .failed) */
    CQ_TRADER_EV_STREAM_UP,          /* the user data stream is subscribed */
    CQ_TRADER_EV_STREAM_GAP,         /* the user data stream lost events or restarted: reconcile */
    CQ_TRADER_EV_MARK_PRICE, /* .mark: last price of a symbol (PnL, stop-loss, take-profit) */
    CQ_TRADER_EV_OPERATOR,   /* .op */
    CQ_TRADER_EV_RECOVERED   /* journal replay finished: start the reconcile */
};

struct cq_trader_event {
    enum cq_trader_event_kind kind;
    int64_t now_ms; /* wall clock, ms since the epoch (UTC day boundaries) */
    bool failed;    /* *_DONE / ACCOUNT: the fetch failed (backoff and retry) */
    union {
        struct cq_signal signal;
        struct cq_trader_symbol_info symbol_info;
        struct {
            size_t n;
            struct cq_trader_balance items[CQ_TRADER_ASSETS_MAX];
        } balances;
        struct cq_trader_order_update order;
        struct {
            char symbol[CQ_SYMBOL_LEN];
            char client_id[CQ_TRADER_CLIENT_ID_LEN];
            enum cq_trader_send_outcome outcome;
            int code;               /* the exchange's, 0 if none */
            char msg[160];          /* the exchange's text, or ours */
            int64_t retry_after_ms; /* RATE_LIMITED, BANNED */
            bool was_query;         /* the answer to a QUERY, not a SEND */
            bool was_cancel;        /* the answer to a CANCEL */
        } send;
        struct {
            char symbol[CQ_SYMBOL_LEN];
            cq_dec price;
        } mark;
        struct {
            enum cq_trader_operator_cmd cmd;
            char symbol[CQ_SYMBOL_LEN];
        } op;
    } u;
};

enum cq_trader_action_kind {
    CQ_TRADER_ACT_JOURNAL,             /* .journal */
    CQ_TRADER_ACT_SEND_ORDER,          /* .order */
    CQ_TRADER_ACT_QUERY_ORDER,         /* .ref: GET /api/v3/order?origClientOrderId= */
    CQ_TRADER_ACT_CANCEL_ORDER,        /* .ref: DELETE /api/v3/order?origClientOrderId= */
    CQ_TRADER_ACT_FETCH_ACCOUNT,       /* GET /api/v3/account -> EV_ACCOUNT */
    CQ_TRADER_ACT_FETCH_EXCHANGE_INFO, /* -> EV_SYMBOL_INFO…, EV_EXCHANGE_INFO_DONE */
    CQ_TRADER_ACT_FETCH_OPEN_ORDERS,   /* GET /api/v3/openOrders -> EV_ORDER_UPDATE…,
                                          EV_OPEN_ORDERS_DONE */
    CQ_TRADER_ACT_FETCH_MARK           /* .ref.symbol: last price -> EV_MARK_PRICE */
};

struct cq_trader_action {
    enum cq_trader_action_kind kind;
    union {
        struct {
            uint16_t type; /* enum cq_rec_type (cq/journal.h) */
            char scope[CQ_SYMBOL_LEN > 32 ? CQ_SYMBOL_LEN : 32]; /* a symbol or "trader" */
            bool wait_durable;     /* the next SEND must not happen before it is durable */
            const char *log_event; /* static: the log event name ("risk_decision", …) or NULL */
            int log_level;         /* enum cq_log_level when log_event is set */
            size_t len;
            char payload[CQ_TRADER_PAYLOAD_MAX]; /* JSON, NUL-terminated */
            /* borrowed from the core: when not NULL the payload (len bytes,
             * NUL-terminated, up to CQ_TRADER_CHECKPOINT_MAX) is here, not in
             * .payload (the checkpoint); valid until the next call into the
             * core. Read it with cq_trader_action_payload. */
            const char *payload_ext;
        } journal;
        struct {
            char symbol[CQ_SYMBOL_LEN];
            char client_id[CQ_TRADER_CLIENT_ID_LEN];
            enum cq_side side;
            enum cq_trader_order_type type;
            cq_dec qty; /* 0 with quote_qty set: MARKET by quoteOrderQty */
            cq_dec quote_qty;
            cq_dec price; /* LIMIT only (timeInForce GTC) */
        } order;
        struct {
            char symbol[CQ_SYMBOL_LEN];
            char client_id[CQ_TRADER_CLIENT_ID_LEN];
        } ref;
    } u;
};

struct cq_trader_actions {
    size_t n;
    struct cq_trader_action a[CQ_TRADER_ACTIONS_MAX];
};

/* A JOURNAL action's payload, wherever it lives. */
static inline const char *cq_trader_action_payload(const struct cq_trader_action *a)
{
    return a->u.journal.payload_ext != NULL ? a->u.journal.payload_ext : a->u.journal.payload;
}

/* Why the trader is not ready, in the order the health record reports them
 * (docs/RUNBOOK.md says what to do about each). */
enum cq_trader_reason {
    CQ_TRADER_READY_OK,
    CQ_TRADER_LOADING_EXCHANGE_INFO,
    CQ_TRADER_AWAITING_BALANCE,
    CQ_TRADER_RECONCILING,
    CQ_TRADER_JOURNAL_UNAVAILABLE,
    CQ_TRADER_EXCHANGE_BANNED,
    CQ_TRADER_KILL_SWITCH,
    CQ_TRADER_TRADING_PAUSED,    /* ready, degraded */
    CQ_TRADER_DAILY_LOSS_LIMIT,  /* ready, degraded */
    CQ_TRADER_SYMBOL_QUARANTINED /* ready, degraded, symbols in the details */
};
const char *cq_trader_reason_name(enum cq_trader_reason r); /* "awaiting_balance", … */

struct cq_trader_position {
    char symbol[CQ_SYMBOL_LEN];
    cq_dec qty;            /* base asset held by our orders */
    cq_dec avg_entry;      /* quote per base */
    cq_dec cost;           /* qty * avg_entry, quote */
    cq_dec realized_pnl;   /* since start of the journal, quote, fees included */
    cq_dec unrealized_pnl; /* at the last mark, quote */
    cq_dec fees;           /* quote */
    cq_dec mark;           /* last mark price (0 = unknown) */
    char entry_client_id[CQ_TRADER_CLIENT_ID_LEN];
};

struct cq_trader_order {
    char client_id[CQ_TRADER_CLIENT_ID_LEN];
    char signal_id[CQ_SIGNAL_ID_LEN + 1];
    char symbol[CQ_SYMBOL_LEN];
    enum cq_side side;
    enum cq_trader_order_type type;
    enum cq_trader_purpose purpose;
    enum cq_trader_order_state state;
    cq_dec qty, quote_qty, price;
    cq_dec executed_qty, cum_quote;
    uint64_t order_id;
    unsigned insufficient_attempts;
    int64_t created_ms, updated_ms;
};

struct cq_trader_status {
    enum cq_trader_reason reason;
    bool ready;
    size_t open_orders, unknown_orders, positions;
    size_t quarantined; /* symbols; cq_trader_core_quarantined lists them */
    cq_dec daily_realized_pnl, total_exposure;
    unsigned orders_last_minute;
    uint64_t events_total, orders_sent_total, risk_refusals_total, filter_refusals_total;
    uint64_t duplicate_signals_total, unknown_outcomes_total, reconcile_drifts_total;
    bool stream_up;
    /* added by the core */
    uint64_t foreign_open_orders;     /* without our prefix, last openOrders answer: left alone */
    uint64_t adopted_orders_total;    /* ours on the exchange, unknown to us: adopted */
    uint64_t orders_table_full_total; /* orders refused: CQ_TRADER_ORDERS_MAX live already */
    uint64_t checkpoints_total, checkpoints_skipped_total; /* skipped: too big */
    uint64_t fees_unconverted_total; /* commissions in an asset without a mark */
    uint64_t stale_updates_total;    /* updates of orders already closed (ignored) */
    uint64_t actions_overflow_total; /* events dropped: a bug, the bound is sized */
    uint64_t math_errors_total;      /* decimal overflows (the value was not applied) */
    uint64_t insufficient_retries_total, quarantines_total, failed_intents_total;
    int64_t banned_until_ms; /* 0 = not banned */
    /* a balance shortfall seen on an account snapshot older than fills of
     * the symbol: confirmed on a fresh snapshot instead of quarantining */
    uint64_t balance_rechecks_total;
    uint64_t marks_requested_total; /* FETCH_MARK actions (mark_every_ms) */
};

struct cq_trader_core;

/* Tables sized here; nothing is allocated per event afterwards. NULL on
 * error (err says which field). cfg is copied. */
struct cq_trader_core *cq_trader_core_new(const struct cq_trader_core_config *cfg,
                                          struct cq_err *err);
void cq_trader_core_free(struct cq_trader_core *core);

/* Feed one event; out is reset and gets the actions, in the order to
 * perform them. Returns 0, or -CQ_ETOOBIG if the action list would
 * overflow (the core then emits nothing for this event and counts it: a
 * bug, the bound is sized for the worst event). */
int cq_trader_core_on_event(struct cq_trader_core *core, const struct cq_trader_event *ev,
                            struct cq_trader_actions *out) CQ_WUR;

/* Restart path: apply one journal record the core itself wrote earlier
 * (records of other writers are ignored), rebuilding orders, positions,
 * PnL, quarantines and seen signals without emitting actions. Called for
 * every record from the newest trader checkpoint on, then EV_RECOVERED. */
int cq_trader_core_replay(struct cq_trader_core *core, uint16_t type, const char *scope,
                          const char *payload, size_t len) CQ_WUR;

/* Reads for the shell's snapshot and tests; valid until the next call that
 * changes the core. */
void cq_trader_core_status(const struct cq_trader_core *core, struct cq_trader_status *out);
size_t cq_trader_core_positions(const struct cq_trader_core *core,
                                const struct cq_trader_position **out);
size_t cq_trader_core_orders(const struct cq_trader_core *core, const struct cq_trader_order **out);
/* Quarantined symbols: name, reason and expiry (ms since the epoch). */
size_t cq_trader_core_quarantined(const struct cq_trader_core *core, size_t i, const char **symbol,
                                  const char **reason, int64_t *until_ms);

/* The client order id for a signal (entry or SELL exit): prefix + the
 * signal's 32 hex characters. out holds CQ_TRADER_CLIENT_ID_LEN bytes. */
void cq_trader_client_id_for_signal(const char *signal_id, char *out);
/* True when id carries our prefix. */
bool cq_trader_client_id_is_ours(const char *id);
/* The stop-loss / take-profit id of a position: prefix + 32 hex of SHA-256
 * over "<entry_client_id>|<kind>|<seq>" (kind "stop_loss", "take_profit"). */
void cq_trader_client_id_for_exit(const char *entry_client_id, enum cq_trader_purpose kind,
                                  unsigned seq, char *out);
/* Names as the journal payloads and the snapshot print them. */
const char *cq_trader_order_state_name(enum cq_trader_order_state s); /* "open", … */
const char *cq_trader_purpose_name(enum cq_trader_purpose p);         /* "entry", … */

/* ==== the thread (coinquantd) ================================================= */

struct cq_trader;
struct cq_journal;
struct cq_clock;

struct cq_trader_options {
    struct cq_config *cfg;         /* a reference is taken */
    struct cq_health_board *board; /* borrowed */
    struct cq_spsc *user_events;   /* borrowed; the trader consumes struct cq_user_event */
    struct cq_spsc *signals;       /* borrowed; the trader consumes struct cq_signal */
    struct cq_journal *journal;    /* borrowed; intents and outcomes (required) */
    const char *journal_dir;       /* DATA_DIR/journal: the restart path reads it; copied */
    const char *rest_url;          /* the venue's REST base; copied */
    const char *api_key;           /* the venue's key (paper: the embedded simulator's
                                      generated one); NULL/"" = none; copied */
    const char *api_secret;
    const struct cq_clock *clock; /* NULL = system; borrowed */
};

/* Threads: cq_trader_new/free are called by the supervisor; the rest runs
 * on the trader's own thread through the struct cq_service it returns,
 * except where a function says "any thread". The thread sleeps on a
 * doorbell that both rings and the command queue ring. NULL on error (err
 * says what). */
struct cq_trader *cq_trader_new(const struct cq_trader_options *opts, struct cq_err *err);
void cq_trader_free(struct cq_trader *trader);
struct cq_service *cq_trader_service(struct cq_trader *trader);

/* An operator command (pause, resume, kill, unkill, clear a quarantine):
 * queued for the trader's thread, which feeds it to the core as
 * CQ_TRADER_EV_OPERATOR. Any thread. 0, -CQ_EFULL when the bounded queue
 * (CQ_TRADER_COMMANDS_MAX) is full (counted; retry), -CQ_EINVAL for a bad
 * symbol. */
#define CQ_TRADER_COMMANDS_MAX 64
int cq_trader_command(struct cq_trader *trader, enum cq_trader_operator_cmd cmd,
                      const char *symbol) CQ_WUR;
/* "pause", "resume", "kill", "unkill", "clear_quarantine" -> the command;
 * -CQ_EINVAL for anything else. */
int cq_trader_command_parse(const char *name, enum cq_trader_operator_cmd *out) CQ_WUR;

/* A SIGHUP's config: CQ_TRADING_PAUSED and CQ_KILL_SWITCH, when they
 * changed, become the same commands as the API's. Supervisor thread. */
void cq_trader_reconfigure(struct cq_trader *trader, const struct cq_config *cfg);

/* The read-only snapshot the trader thread rebuilds after changes: what is
 * "positions", "orders", "risk" (limits, usage, quarantined symbols, PnL)
 * or NULL for all of it. A deep copy (new reference), or NULL before the
 * first snapshot. Any thread; never touches the trader's state. */
json_t *cq_trader_snapshot_json(struct cq_trader *trader, const char *what);

#endif /* CQ_TRADER_H */
