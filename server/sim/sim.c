/*
 * sim.c — coinquant-simex's frame: options, the one lock, the market clock
 * thread, listen keys, state persistence, and the wiring between the market
 * model, the exchange core and the stream publishers.
 *
 * Threads (see sim-int.h for the lock rules):
 *   market  this file: every 10 ms (or event to event with --speed max)
 *           takes sim->state.lock, advances the market to the simulated now,
 *           expires listen keys, saves --state every 5 s when the account
 *           changed, releases the lock.
 *   rest    rest.c (libmicrohttpd's thread)
 *   ws      ws.c (libwebsockets' service thread)
 *
 * Simulated time: the market clock starts at the current wall minute and
 * runs `speed` times faster than the wall clock; with --speed max it jumps
 * from event to event. The server's own time (/api/v3/time, signatures) is
 * always the real wall clock plus any injected skew.
 *
 * Wiring, all under sim->state.lock: market trade/book -> engine fills resting
 * orders (maker) -> executionReport/outboundAccountPosition publishers;
 * market trade/book/kline -> stream publishers; our taker fills (execution
 * reports) -> cq_sim__market_print_trade -> @trade/@aggTrade and book
 * publishers (not back to the engine).
 *
 * Order entry latency: the market thread never advances the market clock
 * past the earliest instant an order or cancel is due to reach the book
 * (cq_sim__latency_barrier_ms, registered by rest.c), so that request meets
 * the book exactly as it is then.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/clock.h"
#include "cq/fs.h"
#include "cq/log.h"
#include "cq/text.h"
#include "sim-int.h"

#define MARKET_TICK_MS 10
#define MAX_BURST_EVENTS 1024
/* --speed max runs as fast as the slowest WebSocket consumer takes the
 * data: above this backlog the market waits instead of making the server
 * drop or disconnect a client (which is what a sped-up replay is for). */
#define MAX_SPEED_BACKLOG_BYTES (1u << 20)
#define STATE_SAVE_MS 5000
#define HISTORY_BARS 1000
#define BOOK_LEVELS 20

/* Kline intervals streamed besides 1m: each is aggregated on a 1m update
 * only while some connection subscribes to it. */
static const char *const stream_intervals[] = {"3m", "5m", "15m", "30m", "1h", "2h", "4h",
                                               "6h", "8h", "12h", "1d",  "3d", "1w", "1M"};

int cq_sim_parse_balances(const char *s, struct cq_sim_balance *out, size_t max, size_t *n,
                          struct cq_err *err)
{
    *n = 0;
    const char *p = s;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq == NULL || eq == p) {
            return cq_err_set(err, CQ_EPARSE, 0,
                              "write ASSET=AMOUNT pairs, e.g. USDT=10000,BTC=0.5",
                              "balance entry '%.*s' is not ASSET=AMOUNT", (int)len, p);
        }
        size_t asset_len = (size_t)(eq - p);
        if (asset_len >= sizeof(out[0].asset)) {
            return cq_err_set(
                err, CQ_EPARSE, 0, "asset names are at most 20 characters (CQ_SIM_ASSET_MAX_CHARS)",
                "asset '%.*s' is %zu characters, too long", (int)asset_len, p, asset_len);
        }
        for (size_t i = 0; i < asset_len; i++) {
            char c = p[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
                return cq_err_set(err, CQ_EPARSE, 0,
                                  "asset names are upper-case letters and digits",
                                  "asset '%.*s' has an invalid character", (int)asset_len, p);
            }
        }
        if (*n >= max) {
            return cq_err_set(err, CQ_ETOOBIG, 0, "give fewer balances",
                              "more than %zu balance entries", max);
        }
        cq_dec amount;
        size_t amount_len = len - asset_len - 1;
        if (cq_dec_parse(eq + 1, amount_len, &amount) < 0 || cq_dec_sign(amount) < 0) {
            return cq_err_set(err, CQ_EPARSE, 0,
                              "amounts are non-negative decimals, e.g. 10000 or 0.5",
                              "balance '%.*s' is not a non-negative decimal", (int)len, p);
        }
        memcpy(out[*n].asset, p, asset_len);
        out[*n].asset[asset_len] = '\0';
        out[*n].amount = amount;
        (*n)++;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return 0;
}

/* ---- wiring (all called with sim->state.lock held) ------------------------------ */

static void on_market_trade(void *ctx, int symbol_idx, const struct cq_sim__public_trade *t)
{
    struct cq_sim *sim = ctx;
    struct cq_sim__book_view book;
    sim->state.counters.market_events++;
    cq_sim__market_book(sim->state.market, symbol_idx, &book);
    /* Fills are the exchange's own events: stamped with the server clock,
     * not the (possibly sped-up) market clock of the public feed. */
    cq_sim__engine_on_trade(sim->state.engine, symbol_idx, &book, t->price, t->qty,
                            t->buyer_is_maker, cq_sim__server_time_ms(&sim->state));
    if (sim->ws != NULL) {
        cq_sim__ws_publish_trade(sim->ws, cq_sim__engine_symbol(sim->state.engine, symbol_idx), t,
                                 t->time_ms);
    }
}

static void on_market_book(void *ctx, int symbol_idx, const struct cq_sim__book_view *book,
                           uint64_t update_id, int64_t time_ms)
{
    struct cq_sim *sim = ctx;
    sim->state.counters.market_events++;
    cq_sim__engine_on_book(sim->state.engine, symbol_idx, book,
                           cq_sim__server_time_ms(&sim->state));
    if (sim->ws != NULL) {
        cq_sim__ws_publish_book(sim->ws, cq_sim__engine_symbol(sim->state.engine, symbol_idx), book,
                                update_id, time_ms);
    }
}

struct last_kline {
    struct cq_sim__kline k;
    bool found;
};

static void keep_last_kline(void *ctx, const struct cq_sim__kline *k)
{
    struct last_kline *lk = ctx;
    lk->k = *k;
    lk->found = true;
}

static void on_market_kline(void *ctx, int symbol_idx, const struct cq_sim__kline *k)
{
    struct cq_sim *sim = ctx;
    sim->state.counters.market_events++;
    if (sim->ws == NULL) {
        return;
    }
    const struct cq_sim__symbol *sym = cq_sim__engine_symbol(sim->state.engine, symbol_idx);
    cq_sim__ws_publish_kline(sim->ws, sym, "1m", k,
                             k->closed ? k->close_ms : cq_sim__market_now_ms(sim->state.market));
    char lower[CQ_SYMBOL_LEN];
    size_t n = 0;
    for (; sym->symbol[n] != '\0' && n + 1 < sizeof(lower); n++) {
        char c = sym->symbol[n];
        lower[n] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    lower[n] = '\0';
    for (size_t i = 0; i < CQ_ARRAY_LEN(stream_intervals); i++) {
        char stream[64]; /* symbol < 20 + "@kline_" + an interval of <= 3: fits */
        snprintf(stream, sizeof(stream), "%s@kline_%s", lower, stream_intervals[i]);
        if (!cq_sim__ws_has_subscribers(sim->ws, stream)) {
            continue;
        }
        /* Events come in time order, so the newest bar of the interval is
         * the one that contains this 1m bar. */
        struct last_kline lk = {.found = false};
        if (cq_sim__market_klines(sim->state.market, symbol_idx, stream_intervals[i], 0, 0, 1,
                                  keep_last_kline, &lk) > 0 &&
            lk.found) {
            cq_sim__ws_publish_kline(sim->ws, sym, stream_intervals[i], &lk.k,
                                     cq_sim__market_now_ms(sim->state.market));
        }
    }
}

/* Our taker fill is a public trade like anyone's: on the tape, in the bar,
 * taken from the displayed book (cq_sim__market_print_trade), and on the
 * @trade/@aggTrade and book streams. Not passed back to the engine: our
 * resting orders never fill against our own taker order. */
static void print_our_trade(struct cq_sim *sim, const struct cq_sim__exec_report *r)
{
    struct cq_sim__public_trade t;
    int idx = r->order->symbol_idx;
    if (cq_sim__market_print_trade(sim->state.market, idx, r->fill->price, r->fill->qty,
                                   r->order->side == SIM_SELL, &t) < 0) {
        return; /* the engine fills on the symbol's grids: cannot happen */
    }
    sim->state.counters.our_trades_printed++;
    if (sim->ws != NULL) {
        const struct cq_sim__symbol *sym = cq_sim__engine_symbol(sim->state.engine, idx);
        struct cq_sim__book_view book;
        cq_sim__market_book(sim->state.market, idx, &book);
        cq_sim__ws_publish_trade(sim->ws, sym, &t, t.time_ms);
        cq_sim__ws_publish_book(sim->ws, sym, &book,
                                cq_sim__market_book_update_id(sim->state.market, idx), t.time_ms);
    }
}

static void on_execution(void *ctx, const struct cq_sim__exec_report *r)
{
    struct cq_sim *sim = ctx;
    /* a self-trade (STP NONE, simq) did not take from the public book */
    if (r->exec_type == SIM_EXEC_TRADE && r->fill != NULL && !r->fill->maker &&
        !r->fill->self_trade) {
        print_our_trade(sim, r);
    }
    if (sim->ws != NULL) {
        cq_sim__ws_publish_execution(
            sim->ws, cq_sim__engine_symbol(sim->state.engine, r->order->symbol_idx), r);
    }
}

static void on_account(void *ctx, const struct cq_sim__balance *changed, size_t n, int64_t event_ms)
{
    struct cq_sim *sim = ctx;
    if (sim->ws != NULL) {
        cq_sim__ws_publish_account(sim->ws, changed, n, event_ms);
    }
}

static int load_state(struct cq_sim *sim, struct cq_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cq_fs_read_file(sim->state.state_path, 256u << 20, &text, &len, err);
    if (rc == -CQ_ENOTFOUND) {
        return 0; /* first start: the file is written at stop */
    }
    if (rc < 0) {
        return rc;
    }
    json_error_t jerr;
    json_t *state = json_loadb(text, len, 0, &jerr);
    free(text);
    if (state == NULL) {
        return cq_err_set(err, CQ_EPARSE, 0, "fix or remove the state file", "%s:%d: not JSON: %s",
                          sim->state.state_path, jerr.line, jerr.text);
    }
    rc = cq_sim__engine_load(sim->state.engine, state, err);
    json_decref(state);
    return rc;
}

/* Caller holds the lock. */
static int save_state(struct cq_sim *sim, struct cq_err *err)
{
    json_t *state = cq_sim__engine_save(sim->state.engine);
    if (state == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "serialising the simulator state");
    }
    char *text = json_dumps(state, JSON_COMPACT);
    json_decref(state);
    if (text == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "serialising the simulator state");
    }
    int rc = cq_fs_write_atomic(sim->state.state_path, text, strlen(text), 0600, 1, err);
    free(text);
    return rc;
}

/* st->events.listen_key_closed: the WS front end closes the key's connections. */
static void forward_listen_key_closed(void *ctx, const char *key, bool expired, int64_t event_ms)
{
    cq_sim__ws_listen_key_closed(ctx, key, expired, event_ms);
}

/* ---- market thread -------------------------------------------------------- */

static int64_t market_target_ms(const struct cq_sim *sim, int64_t wall_ms)
{
    return sim->market_start_sim_ms +
           (wall_ms - sim->market_start_wall_ms) * (int64_t)sim->state.opts.speed;
}

static void *market_main(void *arg)
{
    struct cq_sim *sim = arg;
    int64_t last_save_ms = cq_sim__wall_ms();
    uint64_t saved_placed = UINT64_MAX, saved_fills = UINT64_MAX, saved_canceled = UINT64_MAX;

    while (!atomic_load(&sim->state.stop)) {
        int64_t wall = cq_sim__wall_ms();
        size_t events = 0;
        cq_sim__lock(&sim->state);
        cq_sim__market_set_paused(sim->state.market, sim->state.faults.market_paused);
        if (sim->state.opts.speed_max &&
            cq_sim__ws_backlog_bytes(sim->ws) > MAX_SPEED_BACKLOG_BYTES) {
            /* paced: let the WS thread catch up (see MAX_SPEED_BACKLOG_BYTES) */
        } else if (sim->state.opts.speed_max) {
            while (events < MAX_BURST_EVENTS) {
                int64_t next = cq_sim__market_next_event_ms(sim->state.market);
                int64_t barrier = cq_sim__latency_barrier_ms(&sim->state);
                if (next == INT64_MAX || cq_sim__market_now_ms(sim->state.market) >= barrier) {
                    break;
                }
                /* never past an order still on its way (order entry latency) */
                events +=
                    cq_sim__market_advance(sim->state.market, next < barrier ? next : barrier);
                if (sim->state.faults.market_paused) {
                    break;
                }
            }
        } else {
            int64_t to = market_target_ms(sim, wall);
            int64_t barrier = cq_sim__latency_barrier_ms(&sim->state);
            /* never past an order still on its way (order entry latency) */
            events = cq_sim__market_advance(sim->state.market, to < barrier ? to : barrier);
        }
        cq_sim__listen_keys_expire(&sim->state, wall);
        if (sim->state.state_path != NULL && wall - last_save_ms >= STATE_SAVE_MS) {
            struct cq_sim__engine_stats es;
            cq_sim__engine_get_stats(sim->state.engine, &es);
            if (es.orders_placed != saved_placed || es.fills != saved_fills ||
                es.orders_canceled != saved_canceled) {
                struct cq_err err;
                if (save_state(sim, &err) == 0) {
                    saved_placed = es.orders_placed;
                    saved_fills = es.fills;
                    saved_canceled = es.orders_canceled;
                } else {
                    cq_log_error(
                        "simex", "state_save_failed",
                        json_pack("{s:s,s:s}", "path", sim->state.state_path, "hint", err.hint),
                        "cannot save the simulator state: %s", err.message);
                }
            }
            last_save_ms = wall;
        }
        cq_sim__unlock(&sim->state);
        if (!sim->state.opts.speed_max) {
            cq_time_sleep_ms(MARKET_TICK_MS);
        } else if (events == 0) {
            struct timespec ts = {0, 200000}; /* 0.2 ms: paced or nothing to do */
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

/* A credential the REST server can compare: min..max printable ASCII
 * characters (no spaces or controls: they could not travel in a header or a
 * signed query unchanged). 0, or -CQ_EINVAL with err naming the option. */
static int check_credential(const char *what, const char *v, size_t min, size_t max,
                            struct cq_err *err)
{
    size_t len = strnlen(v, max + 1);
    bool printable = true;
    for (size_t i = 0; i < len && printable; i++) {
        unsigned char c = (unsigned char)v[i];
        printable = c > 0x20 && c < 0x7f;
    }
    if (len < min || len > max || !printable) {
        /* the value itself is never echoed: it may be a secret */
        cq_err_set(err, CQ_EINVAL, 0,
                   "use printable ASCII characters without spaces (e.g. a hex string)",
                   "the simulator's %s must be %zu to %zu printable characters (got %s%zu)", what,
                   min, max, len > max ? "more than " : "", len > max ? max : len);
        return -CQ_EINVAL;
    }
    return 0;
}

/* Overwrite a secret before freeing it (volatile: not optimised away). */
static void free_secret(char *s)
{
    if (s == NULL) {
        return;
    }
    volatile char *v = s;
    while (*v != '\0') {
        *v++ = '\0';
    }
    free(s);
}

struct cq_sim *cq_sim_new(const struct cq_sim_options *opts, struct cq_err *err)
{
    struct cq_sim *sim = calloc(1, sizeof(*sim));
    if (sim == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the simulator");
        return NULL;
    }
    pthread_mutex_init(&sim->state.lock, NULL);
    atomic_init(&sim->state.stop, false);
    atomic_init(&sim->state.faults.ws_drop_generation, 0);
    atomic_init(&sim->state.faults.ws_stall, false);
    atomic_init(&sim->state.counters.ws_connections, 0);
    atomic_init(&sim->state.counters.ws_messages_sent, 0);
    atomic_init(&sim->state.counters.ws_messages_dropped, 0);

    sim->state.opts = *opts;
    if (opts->n_symbols == 0 || opts->n_symbols > SIM_SYMBOLS_MAX) {
        cq_err_set(err, CQ_EINVAL, 0,
                   "give between 1 and 32 symbols, e.g. --symbols BTCUSDT,ETHUSDT",
                   "%zu symbols given", opts->n_symbols);
        goto fail;
    }
    if (opts->speed == 0 && !opts->speed_max) {
        sim->state.opts.speed = 1;
    }
    if (opts->order_latency_ms > CQ_SIM_LATENCY_MS_MAX ||
        opts->response_latency_ms > CQ_SIM_LATENCY_MS_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "give latencies from 0 to 10000 ms",
                   "order latency %u ms / response latency %u ms: above %u ms",
                   opts->order_latency_ms, opts->response_latency_ms, CQ_SIM_LATENCY_MS_MAX);
        goto fail;
    }
    sim->state.bind = cq_text_dup(opts->bind != NULL ? opts->bind : "127.0.0.1");
    sim->state.data_path = cq_text_dup(opts->data_path);
    sim->state.book_recording = cq_text_dup(opts->book_recording);
    sim->state.state_path = cq_text_dup(opts->state_path);
    sim->state.api_key =
        cq_text_dup(opts->api_key != NULL ? opts->api_key : CQ_SIM_DEFAULT_API_KEY);
    sim->state.api_secret =
        cq_text_dup(opts->api_secret != NULL ? opts->api_secret : CQ_SIM_DEFAULT_API_SECRET);
    sim->state.control_token = cq_text_dup(opts->control_token);
    sim->state.symbols = calloc(opts->n_symbols, sizeof(*sim->state.symbols));
    sim->state.balances = calloc(opts->n_balances + 1, sizeof(*sim->state.balances));
    if (sim->state.bind == NULL || sim->state.api_key == NULL || sim->state.api_secret == NULL ||
        sim->state.symbols == NULL || sim->state.balances == NULL ||
        (opts->control_token != NULL && sim->state.control_token == NULL)) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the simulator");
        goto fail;
    }
    /* Any well-formed key and secret work (coinquantd's paper mode passes
     * generated ones); neither is ever logged: the secret and the control
     * token are registered with the log's redaction as well. */
    if (check_credential("API key", sim->state.api_key, 1, CQ_SIM_API_KEY_MAX, err) < 0 ||
        check_credential("API secret", sim->state.api_secret, 1, CQ_SIM_API_SECRET_MAX, err) < 0 ||
        (sim->state.control_token != NULL &&
         check_credential("control token", sim->state.control_token, CQ_SIM_CONTROL_TOKEN_MIN,
                          CQ_SIM_CONTROL_TOKEN_MAX, err) < 0)) {
        goto fail;
    }
    if (opts->api_secret != NULL) {
        cq_log_add_secret(sim->state.api_secret);
    }
    cq_log_add_secret(sim->state.control_token);
    sim->state.opts.bind = sim->state.bind;
    sim->state.opts.data_path = sim->state.data_path;
    sim->state.opts.book_recording = sim->state.book_recording;
    sim->state.opts.state_path = sim->state.state_path;
    sim->state.opts.api_key = sim->state.api_key;
    sim->state.opts.api_secret = sim->state.api_secret;
    sim->state.opts.control_token = sim->state.control_token;
    if (opts->n_balances > 0) {
        memcpy(sim->state.balances, opts->balances,
               opts->n_balances * sizeof(*sim->state.balances));
    }
    sim->state.opts.balances = sim->state.balances;
    sim->state.rng_state = opts->seed ^ 0x5151DEADBEEF5151ULL;

    struct cq_sim__symbol specs[SIM_SYMBOLS_MAX];
    for (size_t i = 0; i < opts->n_symbols; i++) {
        size_t name_len = opts->symbols[i] != NULL ? strlen(opts->symbols[i]) : 0;
        if (name_len == 0 || name_len > CQ_SYMBOL_MAX_CHARS) {
            cq_err_set(err, CQ_EINVAL, 0,
                       "symbol names are 1 to 20 characters (CQ_SYMBOL_MAX_CHARS), e.g. BTCUSDT",
                       "symbol %zu '%.40s' is %zu characters", i + 1,
                       opts->symbols[i] != NULL ? opts->symbols[i] : "", name_len);
            goto fail;
        }
        if (cq_sim__symbol_defaults(opts->symbols[i], &specs[i]) < 0) {
            cq_err_set(
                err, CQ_EINVAL, 0,
                "symbols are BASE+QUOTE with a USDT, BTC, ETH, BUSD or USDC quote, e.g. BTCUSDT",
                "cannot derive base and quote assets from symbol '%s'", opts->symbols[i]);
            goto fail;
        }
        cq_strlcpy(sim->state.symbols[i], specs[i].symbol, CQ_SYMBOL_LEN); /* same size */
    }
    sim->state.opts.symbols = NULL; /* the copies live in specs/engine */

    struct cq_sim__balance start_balances[SIM_ASSETS_MAX];
    size_t nb = opts->n_balances < SIM_ASSETS_MAX ? opts->n_balances : SIM_ASSETS_MAX;
    for (size_t i = 0; i < nb; i++) {
        memset(&start_balances[i], 0, sizeof(start_balances[i]));
        /* cq_sim_balance.asset is CQ_SIM_ASSET_LEN bytes = SIM_ASSET_LEN */
        cq_strlcpy(start_balances[i].asset, opts->balances[i].asset, SIM_ASSET_LEN);
        start_balances[i].free = opts->balances[i].amount;
        start_balances[i].locked = CQ_DEC_ZERO;
    }
    enum cq_sim__queue_model qm = SIM_QUEUE_CONSERVATIVE;
    enum cq_sim__refill refill = SIM_REFILL_DEFAULT;
    if (opts->queue_model != NULL && cq_sim__queue_model_parse(opts->queue_model, &qm) < 0) {
        cq_err_set(err, CQ_ECONFIG, 0, "use conservative, probabilistic or none",
                   "queue model '%.40s' is unknown", opts->queue_model);
        goto fail;
    }
    if (opts->refill != NULL &&
        (cq_sim__refill_parse(opts->refill, &refill) < 0 || refill == SIM_REFILL_DEFAULT)) {
        cq_err_set(err, CQ_ECONFIG, 0, "use change or net", "refill rule '%.40s' is unknown",
                   opts->refill);
        goto fail;
    }
    if (opts->queue_power > 4) {
        cq_err_set(err, CQ_ECONFIG, 0, "the power is 1 to 4 (3 by default)",
                   "queue power %u is out of range", opts->queue_power);
        goto fail;
    }
    struct cq_sim__engine_config ec = {
        .queue_model = qm,
        .queue_power = opts->queue_power,
        .refill = refill,
        .symbols = specs,
        .n_symbols = opts->n_symbols,
        .balances = start_balances,
        .n_balances = nb,
        .maker_bps = opts->maker_bps,
        .taker_bps = opts->taker_bps,
        .seed = opts->seed,
    };
    sim->state.engine = cq_sim__engine_new(&ec, err);
    if (sim->state.engine == NULL) {
        goto fail;
    }
    struct cq_sim__market_options mo = {
        .symbols = specs,
        .n_symbols = opts->n_symbols,
        .data_path = sim->state.data_path,
        .book_recording = sim->state.book_recording,
        .seed = opts->seed,
        .start_ms = cq_sim__wall_ms() / SIM_MINUTE_MS * SIM_MINUTE_MS,
        .history_bars = HISTORY_BARS,
        .book_levels = BOOK_LEVELS,
        .trades_per_bar_max = opts->trades_per_bar_max,
    };
    sim->state.market = cq_sim__market_new(&mo, err);
    if (sim->state.market == NULL) {
        goto fail;
    }
    sim->market_start_sim_ms = mo.start_ms;
    struct cq_sim__market_listener ml = {on_market_trade, on_market_book, on_market_kline, sim};
    cq_sim__market_set_listener(sim->state.market, &ml);
    struct cq_sim__engine_listener el = {on_execution, on_account, sim};
    cq_sim__engine_set_listener(sim->state.engine, &el);

    sim->state.rl.weight_limit_1m = opts->weight_limit_1m != 0 ? opts->weight_limit_1m : 6000;
    sim->state.rl.order_limit_10s = opts->order_limit_10s != 0 ? opts->order_limit_10s : 50;
    sim->state.rl.order_limit_1d = opts->order_limit_1d != 0 ? opts->order_limit_1d : 160000;
    return sim;

fail:
    cq_sim_free(sim);
    return NULL;
}

int cq_sim_start(struct cq_sim *sim, struct cq_err *err)
{
    int rc;
    if (sim->state.state_path != NULL) {
        rc = load_state(sim, err);
        if (rc < 0) {
            return rc;
        }
        sim->state_writable = true;
    }
    int rest_port = sim->state.opts.rest_port;
    int ws_port = sim->state.opts.ws_port;
    sim->ws = cq_sim__ws_start(&sim->state, &ws_port, err);
    if (sim->ws == NULL) {
        return -(err != NULL ? err->code : CQ_EIO);
    }
    /* Nothing raises state events yet (no REST, no market thread). */
    sim->state.events.ctx = sim->ws;
    sim->state.events.listen_key_closed = forward_listen_key_closed;
    sim->rest = cq_sim__rest_start(&sim->state, &rest_port, err);
    if (sim->rest == NULL) {
        cq_sim_stop(sim);
        return -(err != NULL ? err->code : CQ_EIO);
    }
    /* bind is an IP literal by now (cq_sim__rest_start refused anything else): at
     * most 45 characters + 16 of scheme, brackets and port < 96 */
    const char *host = sim->state.bind;
    bool v6 = strchr(host, ':') != NULL;
    snprintf(sim->rest_url, sizeof(sim->rest_url), v6 ? "http://[%s]:%d" : "http://%s:%d", host,
             rest_port);
    snprintf(sim->ws_url, sizeof(sim->ws_url), v6 ? "ws://[%s]:%d" : "ws://%s:%d", host, ws_port);

    /* The market clock starts at the current wall minute (bars align with
     * minutes), and that minute's wall time is its origin too: at speed 1
     * market time equals wall time (the elapsed part of the minute plays out
     * at once); at speed N it runs N times faster from there. */
    sim->market_start_wall_ms = sim->market_start_sim_ms;
    int e = pthread_create(&sim->market_thread, NULL, market_main, sim);
    if (e != 0) {
        cq_sim_stop(sim);
        return cq_err_set(err, CQ_EIO, e, "check the thread limit",
                          "cannot start the market thread");
    }
    sim->market_thread_running = true;
    return 0;
}

const char *cq_sim_rest_url(const struct cq_sim *sim)
{
    return sim->rest_url;
}

const char *cq_sim_ws_url(const struct cq_sim *sim)
{
    return sim->ws_url;
}

void cq_sim_stop(struct cq_sim *sim)
{
    if (sim == NULL) {
        return;
    }
    atomic_store(&sim->state.stop, true);
    if (sim->market_thread_running) {
        pthread_join(sim->market_thread, NULL);
        sim->market_thread_running = false;
    }
    cq_sim__rest_stop(sim->rest);
    sim->rest = NULL;
    /* No thread raises state events now (market and REST are joined). */
    sim->state.events.listen_key_closed = NULL;
    sim->state.events.ctx = NULL;
    cq_sim__ws_stop(sim->ws);
    sim->ws = NULL;
    if (sim->state_writable && sim->state.engine != NULL) {
        struct cq_err err;
        cq_sim__lock(&sim->state);
        if (save_state(sim, &err) < 0) {
            cq_log_error("simex", "state_save_failed",
                         json_pack("{s:s,s:s}", "path", sim->state.state_path, "hint", err.hint),
                         "cannot save the simulator state: %s", err.message);
        }
        cq_sim__unlock(&sim->state);
    }
}

void cq_sim_free(struct cq_sim *sim)
{
    if (sim == NULL) {
        return;
    }
    cq_sim_stop(sim);
    cq_sim__market_free(sim->state.market);
    cq_sim__engine_free(sim->state.engine);
    free(sim->state.bind);
    free(sim->state.data_path);
    free(sim->state.book_recording);
    free(sim->state.state_path);
    free(sim->state.api_key);
    free_secret(sim->state.api_secret);
    free_secret(sim->state.control_token);
    free(sim->state.symbols);
    free(sim->state.balances);
    pthread_mutex_destroy(&sim->state.lock);
    free(sim);
}
