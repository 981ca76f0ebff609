/*
 * sim-engine.h — coinquant-simex's exchange core (private to server/sim/).
 *
 * Symbols and their filters, accounts (free/locked balances per asset),
 * orders, matching against the market model's book, trades, ids. It is a
 * plain data structure: no I/O, no threads, no clock of its own (callers
 * pass now_ms), deterministic for the same sequence of calls and seed.
 *
 * Threads: not thread-safe. The simulator serialises every call with its
 * one lock (REST handlers, the market thread). Listener callbacks run inside
 * the call that caused them, under that lock: they must copy what they need
 * and must not call back into the engine.
 *
 * Money is cq_dec throughout. Binance semantics (../shared/BINANCE_PROTOCOL.md):
 *   - validation order: symbol (-1121) -> filters (-1013) -> duplicate client
 *     id among open orders / balance (-2010) -> matching (LIMIT_MAKER that
 *     would cross: -2010; IOC/FOK/MARKET remainders: EXPIRED).
 *   - request syntax (-1100, -1102, -1106, -1114..-1117) is the REST layer's
 *     job; the engine gets a well-formed struct cq_sim__order_req.
 */
#ifndef CQ_SIM_ENGINE_H
#define CQ_SIM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/common.h"
#include "cq/decimal.h"
#include "cq/filters.h"
#include "cq/market.h"
#include "cq/sim.h"

/* Symbol names: CQ_SYMBOL_MAX_CHARS (cq/market.h), buffers CQ_SYMBOL_LEN, the
 * one limit the daemon uses too. An asset name is never longer than a
 * symbol: CQ_SIM_ASSET_LEN (cq/sim.h). */
#define SIM_ASSET_LEN CQ_SIM_ASSET_LEN
#define SIM_CLIENT_ID_LEN 40 /* ^[a-zA-Z0-9-_]{1,36}$ + NUL */
#define SIM_SYMBOLS_MAX 32
#define SIM_ASSETS_MAX 64
#define SIM_DEPTH_MAX 100 /* book levels per side the model exposes */
#define SIM_REJECT_MSG_LEN 200
/* Order history kept, in orders (cq_sim__engine_config.max_orders when 0): at
 * the limit a new order first drops the oldest closed orders, a quarter of
 * the limit at a time (counted in orders_dropped); open orders are never
 * dropped. About 230 bytes per order, so ~23 MB at the default. */
#define SIM_MAX_ORDERS_DEFAULT ((size_t)100000)

/* Binance error codes the engine produces. */
#define SIM_ERR_INVALID_SYMBOL -1121 /* "Invalid symbol." */
#define SIM_ERR_FILTER -1013         /* "Filter failure: <FILTER>" */
#define SIM_ERR_NEW_ORDER_REJECTED -2010
#define SIM_ERR_CANCEL_REJECTED -2011 /* "Unknown order sent." */
#define SIM_ERR_NO_SUCH_ORDER -2013   /* "Order does not exist." */

/* Exact messages (ccxt maps some by text). */
#define SIM_MSG_INSUFFICIENT "Account has insufficient balance for requested action."
#define SIM_MSG_DUPLICATE "Duplicate order sent."
#define SIM_MSG_WOULD_TAKE "Order would immediately match and take."
#define SIM_MSG_MARKET_CLOSED "Market is closed."
#define SIM_MSG_UNKNOWN_ORDER "Unknown order sent."
#define SIM_MSG_NO_SUCH_ORDER "Order does not exist."
#define SIM_MSG_INVALID_SYMBOL "Invalid symbol."
/* errors.md: "The order's stop price is not valid when compared to the
 * last traded price." */
#define SIM_MSG_WOULD_TRIGGER "Order would trigger immediately."

enum cq_sim__side { SIM_BUY, SIM_SELL };
/* STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT wait, with their funds locked and
 * not on the book (is_working false, working_ms -1), until a public trade's
 * price reaches stopPrice (rest-api.md: "Price above market price:
 * STOP_LOSS BUY, TAKE_PROFIT SELL"; "Price below market price: STOP_LOSS
 * SELL, TAKE_PROFIT BUY"); then they work as a LIMIT GTC order at their
 * price. */
enum cq_sim__order_type {
    SIM_LIMIT,
    SIM_MARKET,
    SIM_LIMIT_MAKER,
    SIM_STOP_LOSS_LIMIT,
    SIM_TAKE_PROFIT_LIMIT
};
enum cq_sim__tif { SIM_TIF_NONE, SIM_GTC, SIM_IOC, SIM_FOK }; /* NONE for MARKET/LIMIT_MAKER */
enum cq_sim__order_status {
    SIM_NEW,
    SIM_PARTIALLY_FILLED,
    SIM_FILLED,
    SIM_CANCELED,
    SIM_REJECTED,
    SIM_EXPIRED,
    SIM_EXPIRED_IN_MATCH
};
enum cq_sim__symbol_status { SIM_TRADING, SIM_HALT, SIM_BREAK };
/* selfTradePreventionMode. Stored and reported per order; it never fires:
 * our orders meet only the market model's exogenous book, never each other
 * (docs/SIMEX.md "What is not simulated"). */
enum cq_sim__stp { SIM_STP_NONE, SIM_STP_EXPIRE_TAKER, SIM_STP_EXPIRE_MAKER, SIM_STP_EXPIRE_BOTH };
/* Why an order expired: Binance's expiryReason (REST answers) / eR
 * (executionReport), "Appears when the order has expired." (enums.md
 * "Expiry Reasons", user-data-stream.md "Order Expiry Reason"). The three
 * this book model can produce; NONE on every order that has not expired. */
enum cq_sim__expiry {
    SIM_EXPIRY_NONE,
    SIM_EXPIRY_UNFILLED_IOC,          /* UNFILLED_IOC_QUANTITY_EXPIRED: LIMIT IOC remainder */
    SIM_EXPIRY_UNFILLED_FOK,          /* UNFILLED_FOK_ORDER_EXPIRED: LIMIT FOK not filled */
    SIM_EXPIRY_INSUFFICIENT_LIQUIDITY /* INSUFFICIENT_LIQUIDITY: MARKET the book could not fill */
};
enum cq_sim__exec_type {
    SIM_EXEC_NEW,
    SIM_EXEC_CANCELED,
    SIM_EXEC_TRADE,
    SIM_EXEC_EXPIRED,
    SIM_EXEC_REJECTED
};

/* Wire names: "BUY", "LIMIT", "GTC", "PARTIALLY_FILLED", "TRADE"… */
const char *cq_sim__side_name(enum cq_sim__side s);
const char *cq_sim__order_type_name(enum cq_sim__order_type t);
const char *cq_sim__tif_name(enum cq_sim__tif t); /* "" for NONE */
const char *cq_sim__order_status_name(enum cq_sim__order_status s);
const char *cq_sim__exec_type_name(enum cq_sim__exec_type t);
const char *cq_sim__stp_name(enum cq_sim__stp m);                         /* "EXPIRE_MAKER"… */
const char *cq_sim__expiry_name(enum cq_sim__expiry r);                   /* "" for NONE */
int cq_sim__expiry_parse(const char *s, enum cq_sim__expiry *out) CQ_WUR; /* "" = NONE */
int cq_sim__stp_parse(const char *s, enum cq_sim__stp *out) CQ_WUR;
/* Parse the wire names; -CQ_EPARSE if unknown. */
int cq_sim__side_parse(const char *s, enum cq_sim__side *out) CQ_WUR;
int cq_sim__order_type_parse(const char *s, enum cq_sim__order_type *out) CQ_WUR;
int cq_sim__tif_parse(const char *s, enum cq_sim__tif *out) CQ_WUR;

/* A symbol's filters are struct cq_filters (include/cq/filters.h), checked
 * by the one filter module the trader also uses (server/exchange/filters.c),
 * so the simulator and the trader cannot disagree. A zero cq_dec in a bound
 * disables that bound (Binance: "0" = off). ICEBERG_PARTS is listed in
 * exchangeInfo as production lists it and not enforced (iceberg and
 * trailing orders are refused -1106); MAX_NUM_ALGO_ORDERS counts open stop
 * orders. */

struct cq_sim__symbol {
    char symbol[CQ_SYMBOL_LEN];
    char base[SIM_ASSET_LEN];
    char quote[SIM_ASSET_LEN];
    unsigned base_precision;  /* 8 */
    unsigned quote_precision; /* 8 */
    enum cq_sim__symbol_status status;
    struct cq_filters filters;
};

/* Realistic defaults for a symbol: BTCUSDT, ETHUSDT, DOGEUSDT, XRPETH get the
 * 2024-09 production filters (../shared/data/README.md §3); any other
 * "<BASE><USDT|BTC|ETH|BUSD|USDC>" gets tick 0.01, step 0.001, NOTIONAL 5.
 * -CQ_EINVAL if the name can't be split into base and quote. */
int cq_sim__symbol_defaults(const char *name, struct cq_sim__symbol *out) CQ_WUR;

/* One price level of the model's book; bids best (highest) first, asks best
 * (lowest) first. The model's liquidity is exogenous: the engine does not
 * change the model, but remembers what our orders took from each level and
 * offers only the rest, until the model replaces the level (a different
 * quantity at that price, or the price gone: docs/SIMEX.md "Queue model"). */
struct cq_sim__level {
    cq_dec price;
    cq_dec qty;
};

struct cq_sim__book_view {
    const struct cq_sim__level *bids;
    size_t n_bids;
    const struct cq_sim__level *asks;
    size_t n_asks;
    cq_dec last_price; /* the last public trade's price; 0 = none */
    /* The volume-weighted average price of the public trades of the last
     * avgPriceMins minutes (GET /api/v3/avgPrice), the last price when there
     * were none; 0 = unknown (PERCENT_PRICE_BY_SIDE is then skipped). The
     * reference of PERCENT_PRICE_BY_SIDE and of MARKET notional checks. */
    cq_dec avg_price;
};

struct cq_sim__balance {
    char asset[SIM_ASSET_LEN];
    cq_dec free;
    cq_dec locked;
};

struct cq_sim__engine_config {
    const struct cq_sim__symbol *symbols;
    size_t n_symbols;
    const struct cq_sim__balance *balances; /* starting free balances */
    size_t n_balances;
    unsigned maker_bps, taker_bps; /* fees in basis points (default 10, 10) */
    uint64_t seed;                 /* for generated client order ids */
    uint64_t first_order_id;       /* 0 = 1 */
    uint64_t first_trade_id;       /* 0 = 1 */
    size_t max_orders;             /* orders kept (0 = SIM_MAX_ORDERS_DEFAULT) */
    size_t max_trades;             /* total trades kept (0 = 1,000,000) */
};

struct cq_sim__order_req {
    int symbol_idx; /* from cq_sim__engine_symbol_index */
    enum cq_sim__side side;
    enum cq_sim__order_type type;
    enum cq_sim__tif tif;
    bool has_qty;
    cq_dec qty;
    bool has_quote_qty; /* MARKET only */
    cq_dec quote_qty;
    bool has_price;
    cq_dec price;
    bool has_stop_price; /* STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT only */
    cq_dec stop_price;
    char client_id[SIM_CLIENT_ID_LEN]; /* "" = generate (22 alnum chars) */
    enum cq_sim__stp stp;              /* the REST layer's default: EXPIRE_MAKER */
};

struct cq_sim__order {
    uint64_t order_id;
    int symbol_idx;
    char client_id[SIM_CLIENT_ID_LEN];
    enum cq_sim__side side;
    enum cq_sim__order_type type;
    enum cq_sim__tif tif;
    cq_dec price;          /* 0 for MARKET */
    cq_dec stop_price;     /* 0 unless STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT */
    cq_dec orig_qty;       /* for a quoteOrderQty MARKET: the executed qty */
    cq_dec orig_quote_qty; /* 0 unless quoteOrderQty was sent */
    cq_dec executed_qty;
    cq_dec cum_quote_qty;
    enum cq_sim__order_status status;
    int64_t time_ms; /* creation */
    int64_t update_ms;
    int64_t working_ms;         /* when it went on the book; -1 if never */
    bool is_working;            /* resting on the book now (false: a stop not yet triggered) */
    enum cq_sim__stp stp;       /* as placed */
    enum cq_sim__expiry expiry; /* NONE unless status is EXPIRED */
};

struct cq_sim__fill {
    uint64_t trade_id;
    cq_dec price;
    cq_dec qty;
    cq_dec quote_qty;
    cq_dec commission; /* in commission_asset, 8 decimals */
    char commission_asset[SIM_ASSET_LEN];
    bool maker;
};

struct cq_sim__trade { /* one row of myTrades */
    uint64_t trade_id;
    uint64_t order_id;
    int symbol_idx;
    cq_dec price, qty, quote_qty, commission;
    char commission_asset[SIM_ASSET_LEN];
    int64_t time_ms;
    bool is_buyer, is_maker;
};

struct cq_sim__reject {
    int code;                     /* negative Binance code */
    char msg[SIM_REJECT_MSG_LEN]; /* exact text */
};

/* One executionReport's worth of facts. */
struct cq_sim__exec_report {
    const struct cq_sim__order *order; /* state after the event */
    enum cq_sim__exec_type exec_type;
    const struct cq_sim__fill *fill; /* TRADE only, else NULL */
    const char *orig_client_id;      /* CANCELED: the canceled order's id; else "" */
    const char *cancel_client_id;    /* CANCELED: the cancel request's id, or "" */
    int64_t event_ms;
};

/* Listener for the user data stream. Either callback may be NULL. */
struct cq_sim__engine_listener {
    void (*execution_report)(void *ctx, const struct cq_sim__exec_report *report);
    /* Assets whose balance changed in one call, after the change. */
    void (*account_position)(void *ctx, const struct cq_sim__balance *changed, size_t n,
                             int64_t event_ms);
    void *ctx;
};

struct cq_sim__engine;

struct cq_sim__engine *cq_sim__engine_new(const struct cq_sim__engine_config *cfg,
                                          struct cq_err *err);
void cq_sim__engine_free(struct cq_sim__engine *e);
void cq_sim__engine_set_listener(struct cq_sim__engine *e, const struct cq_sim__engine_listener *l);

/* -1 if unknown. */
int cq_sim__engine_symbol_index(const struct cq_sim__engine *e, const char *symbol);
size_t cq_sim__engine_symbol_count(const struct cq_sim__engine *e);
const struct cq_sim__symbol *cq_sim__engine_symbol(const struct cq_sim__engine *e, int idx);
/* A STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT type. */
bool cq_sim__order_type_is_stop(enum cq_sim__order_type t);

/* Change a symbol's status (fault injection: HALT makes new orders fail
 * -2010 "Market is closed."). */
void cq_sim__engine_set_symbol_status(struct cq_sim__engine *e, int idx,
                                      enum cq_sim__symbol_status s);

/* Validate only (order/test): 0, or -CQ_EVENUE with rej filled. */
int cq_sim__engine_test_order(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                              const struct cq_sim__book_view *book,
                              struct cq_sim__reject *rej) CQ_WUR;

/* Place and match. 0 with *order (final state after matching) and up to
 * max_fills fills (*n_fills); or -CQ_EVENUE with rej filled (nothing
 * changed). -CQ_EFULL when max_orders orders are kept and every one of them
 * is open, so none can be dropped (rej: -1013
 * "Filter failure: MAX_NUM_ORDERS" style is NOT used; the REST layer answers
 * -1000). Emits NEW, then TRADE per fill, then EXPIRED for an IOC/FOK/MARKET
 * remainder, and one account_position for the changed assets. */
int cq_sim__engine_place(struct cq_sim__engine *e, const struct cq_sim__order_req *req,
                         const struct cq_sim__book_view *book, int64_t now_ms,
                         struct cq_sim__order *order, struct cq_sim__fill *fills, size_t max_fills,
                         size_t *n_fills, struct cq_sim__reject *rej) CQ_WUR;

/* Cancel by order_id (non-zero) or client_id (non-NULL, non-empty); if both,
 * look up by id and require the client id to match. Unknown or closed
 * order: -CQ_EVENUE with -2011 "Unknown order sent.". cancel_client_id may
 * be NULL/"" (then generated). */
int cq_sim__engine_cancel(struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                          const char *client_id, const char *cancel_client_id, int64_t now_ms,
                          struct cq_sim__order *order, struct cq_sim__reject *rej) CQ_WUR;
/* The client id of the latest cancel (the one passed, or the one generated
 * when it was NULL/""): the cancel response's clientOrderId. Inside
 * cancel_all's fn it is the id of the cancel being reported. Borrowed until
 * the next mutating call. */
const char *cq_sim__engine_last_cancel_client_id(const struct cq_sim__engine *e);

/* Cancel every open order of the symbol; fn gets each canceled order.
 * Returns the count (0 is fine). */
size_t cq_sim__engine_cancel_all(struct cq_sim__engine *e, int symbol_idx, int64_t now_ms,
                                 void (*fn)(void *ctx, const struct cq_sim__order *o), void *ctx);

/* GET /order: -CQ_EVENUE with -2013 "Order does not exist." if not found. */
int cq_sim__engine_get_order(const struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                             const char *client_id, struct cq_sim__order *order,
                             struct cq_sim__reject *rej) CQ_WUR;

/* Iterate, oldest first. symbol_idx -1 = all symbols (open orders only). */
size_t cq_sim__engine_open_orders(const struct cq_sim__engine *e, int symbol_idx,
                                  void (*fn)(void *ctx, const struct cq_sim__order *o), void *ctx);
/* allOrders: order_id >= from_order_id (0 = any), time in [start_ms, end_ms]
 * (0 = unbounded), at most limit, oldest first; only the orders still kept
 * (see SIM_MAX_ORDERS_DEFAULT). */
size_t cq_sim__engine_all_orders(const struct cq_sim__engine *e, int symbol_idx,
                                 uint64_t from_order_id, int64_t start_ms, int64_t end_ms,
                                 size_t limit, void (*fn)(void *ctx, const struct cq_sim__order *o),
                                 void *ctx);
/* myTrades: order_id filter (0 = any), trade id >= from_id (0 = any), time
 * window, at most limit, oldest first. */
size_t cq_sim__engine_my_trades(const struct cq_sim__engine *e, int symbol_idx, uint64_t order_id,
                                uint64_t from_id, int64_t start_ms, int64_t end_ms, size_t limit,
                                void (*fn)(void *ctx, const struct cq_sim__trade *t), void *ctx);

/* Every asset with a balance entry (zero ones included), in first-seen
 * order. */
size_t cq_sim__engine_balances(const struct cq_sim__engine *e,
                               void (*fn)(void *ctx, const struct cq_sim__balance *b), void *ctx);
/* The largest amount the engine holds: an int64 mantissa at 8 decimals.
 * A balance's free + locked must stay at or below it. */
#define SIM_AMOUNT_MAX_TEXT "92233720368.54775807"

/* Set an asset's free balance (setup and fault injection); locked unchanged.
 * Emits account_position. -CQ_ETOOBIG when free + locked would exceed
 * SIM_AMOUNT_MAX_TEXT; -CQ_EINVAL for a bad asset name, a negative amount
 * or one with more than 8 decimals. */
int cq_sim__engine_set_balance(struct cq_sim__engine *e, const char *asset, cq_dec free_amount,
                               int64_t now_ms) CQ_WUR;
void cq_sim__engine_fees(const struct cq_sim__engine *e, unsigned *maker_bps, unsigned *taker_bps);

/* The market moved: first a market trade at trade_price (if non-zero)
 * triggers the stop orders it reaches (each emits NEW with is_working and
 * working_ms set: it goes on the book); then fill resting orders of the
 * symbol that the new book (or that trade) crosses, as maker, at the
 * order's own limit price, up to what is left of the crossing levels after
 * what our orders already took from them (and up to the trade's quantity).
 * Emits TRADE reports and account_position. Returns the number of fills. */
size_t cq_sim__engine_on_market(struct cq_sim__engine *e, int symbol_idx,
                                const struct cq_sim__book_view *book, cq_dec trade_price,
                                cq_dec trade_qty, int64_t now_ms);

/* Tests only: overwrite an asset's locked amount behind the engine's back,
 * breaking I2 (engine.c), so a test can show that the money invariant
 * checks stop the engine in a release (NDEBUG) build. The simulator never
 * calls it. */
void cq_sim__engine_corrupt_locked(struct cq_sim__engine *e, const char *asset, cq_dec locked);

/* Counters for /_sim/state and benchmarks. */
struct cq_sim__engine_stats {
    uint64_t orders_placed, orders_rejected, orders_canceled, fills, open_orders;
    uint64_t orders_kept;    /* in the history now (open and closed) */
    uint64_t orders_dropped; /* closed orders dropped from the history at max_orders */
    /* Orders that got their first fill (at placement or later as maker): the
     * unfilled-order count gives one order back for each (rest.c). */
    uint64_t orders_first_filled;
};
void cq_sim__engine_get_stats(const struct cq_sim__engine *e, struct cq_sim__engine_stats *out);

/* Persistence (--state FILE): the whole account state — balances, orders,
 * trades, next ids, the client-id generator — as one JSON object, and back.
 * load replaces the engine's state; -CQ_EPARSE with err naming the field on
 * malformed input (the engine is then unchanged). A file with more orders
 * than max_orders loads with its oldest closed orders dropped (counted). */
json_t *cq_sim__engine_save(const struct cq_sim__engine *e);
int cq_sim__engine_load(struct cq_sim__engine *e, const json_t *state, struct cq_err *err) CQ_WUR;

#endif /* CQ_SIM_ENGINE_H */
