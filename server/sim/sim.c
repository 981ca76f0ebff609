/*
 * sim.c — coinquant-simex's frame: options, the one lock, the market clock
 * thread, listen keys, state persistence, and the wiring between the market
 * model, the exchange core and the stream publishers.
 *
 * Threads (see sim-int.h for the lock rules):
 *   market  this file: every 10 ms (or event to event with --speed max)
 *           takes sim->lock, advances the market to the simulated now,
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
 * Wiring, all under sim->lock: market trade/book -> engine fills resting
 * orders (maker) -> executionReport/outboundAccountPosition publishers;
 * market trade/book/kline -> stream publishers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq/fs.h"
#include "cq/log.h"
#include "cq/text.h"
#include "sim/sim-int.h"
#include "sim/ws-int.h"

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
                                               "6h", "8h", "12h", "1d", "3d", "1w", "1M"};

int64_t cq_sim__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cq_sim__server_time_ms(const struct cq_sim *sim)
{
    return cq_sim__wall_ms() + sim->faults.clock_skew_ms;
}

uint64_t cq_sim__rand(struct cq_sim *sim)
{
    /* splitmix64 */
    uint64_t z = (sim->rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

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
            return cq_err_set(err, CQ_EPARSE, 0, "write ASSET=AMOUNT pairs, e.g. USDT=10000,BTC=0.5",
                              "balance entry '%.*s' is not ASSET=AMOUNT", (int)len, p);
        }
        size_t asset_len = (size_t)(eq - p);
        if (asset_len >= sizeof(out[0].asset)) {
            return cq_err_set(err, CQ_EPARSE, 0, "asset names are at most 20 characters (CQ_SIM_ASSET_MAX_CHARS)",
                              "asset '%.*s' is %zu characters, too long", (int)asset_len, p, asset_len);
        }
        for (size_t i = 0; i < asset_len; i++) {
            char c = p[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
                return cq_err_set(err, CQ_EPARSE, 0, "asset names are upper-case letters and digits",
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
            return cq_err_set(err, CQ_EPARSE, 0, "amounts are non-negative decimals, e.g. 10000 or 0.5",
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

/* ---- listen keys ------------------------------------------------------------ */

const char *cq_sim__listen_key_create(struct cq_sim *sim, int64_t now_ms)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct cq_sim__listen_key *free_slot = NULL;
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        struct cq_sim__listen_key *k = &sim->listen_keys[i];
        if (k->active && k->expires_ms > now_ms) {
            k->expires_ms = now_ms + SIM_LISTEN_KEY_TTL_MS;
            return k->key;
        }
        if (!k->active && free_slot == NULL) {
            free_slot = k;
        }
    }
    if (free_slot == NULL) {
        free_slot = &sim->listen_keys[0];
    }
    for (int i = 0; i < SIM_LISTEN_KEY_LEN; i++) {
        free_slot->key[i] = alnum[cq_sim__rand(sim) % (sizeof(alnum) - 1)];
    }
    free_slot->key[SIM_LISTEN_KEY_LEN] = '\0';
    free_slot->expires_ms = now_ms + SIM_LISTEN_KEY_TTL_MS;
    free_slot->active = true;
    return free_slot->key;
}

static struct cq_sim__listen_key *find_key(struct cq_sim *sim, const char *key)
{
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        struct cq_sim__listen_key *k = &sim->listen_keys[i];
        if (k->active && strcmp(k->key, key) == 0) {
            return k;
        }
    }
    return NULL;
}

int cq_sim__listen_key_keepalive(struct cq_sim *sim, const char *key, int64_t now_ms)
{
    struct cq_sim__listen_key *k = find_key(sim, key);
    if (k == NULL || k->expires_ms <= now_ms) {
        return -CQ_ENOTFOUND;
    }
    k->expires_ms = now_ms + SIM_LISTEN_KEY_TTL_MS;
    return 0;
}

int cq_sim__listen_key_delete(struct cq_sim *sim, const char *key)
{
    struct cq_sim__listen_key *k = find_key(sim, key);
    if (k == NULL) {
        return -CQ_ENOTFOUND;
    }
    k->active = false;
    if (sim->ws != NULL) {
        cq_sim__ws_listen_key_closed(sim->ws, key, false, cq_sim__wall_ms());
    }
    return 0;
}

bool cq_sim__listen_key_valid(struct cq_sim *sim, const char *key)
{
    pthread_mutex_lock(&sim->lock);
    struct cq_sim__listen_key *k = find_key(sim, key);
    bool ok = k != NULL && k->expires_ms > cq_sim__wall_ms();
    pthread_mutex_unlock(&sim->lock);
    return ok;
}

static void expire_listen_keys(struct cq_sim *sim, int64_t now_ms)
{
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        struct cq_sim__listen_key *k = &sim->listen_keys[i];
        if (k->active && k->expires_ms <= now_ms) {
            k->active = false;
            if (sim->ws != NULL) {
                cq_sim__ws_listen_key_closed(sim->ws, k->key, true, now_ms);
            }
        }
    }
}

/* ---- wiring (all called with sim->lock held) ------------------------------ */

void cq_sim__book_view(struct cq_sim *sim, int symbol_idx, struct cq_sim__book_view *out)
{
    cq_sim__market_book(sim->market, symbol_idx, out);
}

static void on_market_trade(void *ctx, int symbol_idx, const struct cq_sim__public_trade *t)
{
    struct cq_sim *sim = ctx;
    struct cq_sim__book_view book;
    sim->counters.market_events++;
    cq_sim__market_book(sim->market, symbol_idx, &book);
    /* Fills are the exchange's own events: stamped with the server clock,
     * not the (possibly sped-up) market clock of the public feed. */
    cq_sim__engine_on_market(sim->engine, symbol_idx, &book, t->price, t->qty,
                         cq_sim__server_time_ms(sim));
    if (sim->ws != NULL) {
        cq_sim__ws_publish_trade(sim->ws, cq_sim__engine_symbol(sim->engine, symbol_idx), t, t->time_ms);
    }
}

static void on_market_book(void *ctx, int symbol_idx, const struct cq_sim__book_view *book,
                           uint64_t update_id, int64_t time_ms)
{
    struct cq_sim *sim = ctx;
    sim->counters.market_events++;
    cq_sim__engine_on_market(sim->engine, symbol_idx, book, CQ_DEC_ZERO, CQ_DEC_ZERO,
                         cq_sim__server_time_ms(sim));
    if (sim->ws != NULL) {
        cq_sim__ws_publish_book(sim->ws, cq_sim__engine_symbol(sim->engine, symbol_idx), book, update_id,
                            time_ms);
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
    sim->counters.market_events++;
    if (sim->ws == NULL) {
        return;
    }
    const struct cq_sim__symbol *sym = cq_sim__engine_symbol(sim->engine, symbol_idx);
    cq_sim__ws_publish_kline(sim->ws, sym, "1m", k, k->closed ? k->close_ms : cq_sim__market_now_ms(sim->market));
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
        if (cq_sim__market_klines(sim->market, symbol_idx, stream_intervals[i], 0, 0, 1,
                              keep_last_kline, &lk) > 0 &&
            lk.found) {
            cq_sim__ws_publish_kline(sim->ws, sym, stream_intervals[i], &lk.k,
                                 cq_sim__market_now_ms(sim->market));
        }
    }
}

static void on_execution(void *ctx, const struct cq_sim__exec_report *r)
{
    struct cq_sim *sim = ctx;
    if (sim->ws != NULL) {
        cq_sim__ws_publish_execution(sim->ws, cq_sim__engine_symbol(sim->engine, r->order->symbol_idx), r);
    }
}

static void on_account(void *ctx, const struct cq_sim__balance *changed, size_t n, int64_t event_ms)
{
    struct cq_sim *sim = ctx;
    if (sim->ws != NULL) {
        cq_sim__ws_publish_account(sim->ws, changed, n, event_ms);
    }
}

/* ---- state ------------------------------------------------------------------ */

struct balance_acc {
    json_t *arr;
};

static void add_balance(void *ctx, const struct cq_sim__balance *b)
{
    struct balance_acc *acc = ctx;
    char f[CQ_DEC_STR_MAX], l[CQ_DEC_STR_MAX];
    json_array_append_new(acc->arr, json_pack("{s:s,s:s,s:s}", "asset", b->asset, "free",
                                              cq_dec_format(b->free, f, sizeof(f)), "locked",
                                              cq_dec_format(b->locked, l, sizeof(l))));
}

static void add_order(void *ctx, const struct cq_sim__order *o)
{
    struct balance_acc *acc = ctx;
    char p[CQ_DEC_STR_MAX], q[CQ_DEC_STR_MAX], e[CQ_DEC_STR_MAX];
    json_array_append_new(
        acc->arr, json_pack("{s:I,s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "orderId",
                            (json_int_t)o->order_id, "symbolIdx", o->symbol_idx, "clientOrderId",
                            o->client_id, "side", cq_sim__side_name(o->side), "type",
                            cq_sim__order_type_name(o->type), "status",
                            cq_sim__order_status_name(o->status), "price",
                            cq_dec_format(o->price, p, sizeof(p)), "origQty",
                            cq_dec_format(o->orig_qty, q, sizeof(q)), "executedQty",
                            cq_dec_format(o->executed_qty, e, sizeof(e))));
}

json_t *cq_sim__state_json(struct cq_sim *sim)
{
    struct balance_acc balances = {json_array()};
    struct balance_acc open = {json_array()};
    struct cq_sim__engine_stats es;
    cq_sim__engine_balances(sim->engine, add_balance, &balances);
    cq_sim__engine_open_orders(sim->engine, -1, add_order, &open);
    cq_sim__engine_get_stats(sim->engine, &es);
    json_t *symbols = json_array();
    for (size_t i = 0; i < cq_sim__engine_symbol_count(sim->engine); i++) {
        char last[CQ_DEC_STR_MAX];
        const struct cq_sim__symbol *s = cq_sim__engine_symbol(sim->engine, (int)i);
        json_array_append_new(
            symbols, json_pack("{s:s,s:s,s:I}", "symbol", s->symbol, "last_price",
                               cq_dec_format(cq_sim__market_last_price(sim->market, (int)i), last,
                                             sizeof(last)),
                               "market_time_ms", (json_int_t)cq_sim__market_now_ms(sim->market)));
    }
    struct cq_sim__rest_stats rs;
    cq_sim__rest_stats(sim->rest, &rs);
    json_t *rest_conns = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "open", (json_int_t)rs.open, "waiting",
        (json_int_t)rs.waiting, "evicted_deadline", (json_int_t)rs.evicted_deadline,
        "evicted_for_room", (json_int_t)rs.evicted_for_room, "refused_busy",
        (json_int_t)rs.refused_busy, "head_deadline_ms", (json_int_t)rs.head_deadline_ms,
        "per_ip_max", (json_int_t)rs.per_ip_max, "connections_max", (json_int_t)rs.connections_max);
    return json_pack(
        "{s:o,s:o,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I,s:I,s:b,s:I,s:b,s:I,s:b},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
        "balances", balances.arr, "open_orders", open.arr, "symbols", symbols,
        "rest_connections", rest_conns, "engine",
        "orders_placed", (json_int_t)es.orders_placed, "orders_rejected",
        (json_int_t)es.orders_rejected, "orders_canceled", (json_int_t)es.orders_canceled, "fills",
        (json_int_t)es.fills, "open_orders", (json_int_t)es.open_orders, "orders_kept",
        (json_int_t)es.orders_kept, "orders_dropped", (json_int_t)es.orders_dropped, "counters",
        "rest_requests", (json_int_t)sim->counters.rest_requests, "rest_errors_4xx",
        (json_int_t)sim->counters.rest_errors_4xx, "rest_errors_5xx",
        (json_int_t)sim->counters.rest_errors_5xx, "rest_429", (json_int_t)sim->counters.rest_429,
        "rest_418", (json_int_t)sim->counters.rest_418, "market_events",
        (json_int_t)sim->counters.market_events, "ws_connections",
        (json_int_t)atomic_load(&sim->counters.ws_connections), "ws_messages_sent",
        (json_int_t)atomic_load(&sim->counters.ws_messages_sent), "ws_messages_dropped",
        (json_int_t)atomic_load(&sim->counters.ws_messages_dropped), "faults", "rest_latency_ms",
        (json_int_t)sim->faults.rest_latency_ms, "rest_5xx_per_mille",
        (json_int_t)sim->faults.rest_5xx_per_mille, "storm_until_ms",
        (json_int_t)sim->faults.storm_until_ms, "reject_next_orders",
        (json_int_t)sim->faults.reject_next_orders, "force_insufficient",
        sim->faults.force_insufficient, "clock_skew_ms", (json_int_t)sim->faults.clock_skew_ms,
        "market_paused", sim->faults.market_paused, "ws_drop_generation",
        (json_int_t)atomic_load(&sim->faults.ws_drop_generation), "ws_stall",
        atomic_load(&sim->faults.ws_stall), "ratelimit", "weight_limit_1m",
        (json_int_t)sim->rl.weight_limit_1m, "weight_used", (json_int_t)sim->rl.weight_used,
        "order_limit_10s", (json_int_t)sim->rl.order_limit_10s, "orders_10s",
        (json_int_t)sim->rl.orders_10s, "order_limit_1d", (json_int_t)sim->rl.order_limit_1d,
        "orders_1d", (json_int_t)sim->rl.orders_1d, "banned_until_ms",
        (json_int_t)sim->rl.banned_until_ms);
}

static int load_state(struct cq_sim *sim, struct cq_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cq_fs_read_file(sim->state_path, 256u << 20, &text, &len, err);
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
        return cq_err_set(err, CQ_EPARSE, 0, "fix or remove the state file",
                          "%s:%d: not JSON: %s", sim->state_path, jerr.line, jerr.text);
    }
    rc = cq_sim__engine_load(sim->engine, state, err);
    json_decref(state);
    return rc;
}

/* Caller holds the lock. */
static int save_state(struct cq_sim *sim, struct cq_err *err)
{
    json_t *state = cq_sim__engine_save(sim->engine);
    if (state == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "serialising the simulator state");
    }
    char *text = json_dumps(state, JSON_COMPACT);
    json_decref(state);
    if (text == NULL) {
        return cq_err_set(err, CQ_ENOMEM, 0, NULL, "serialising the simulator state");
    }
    int rc = cq_fs_write_atomic(sim->state_path, text, strlen(text), 0600, 1, err);
    free(text);
    return rc;
}

/* ---- market thread -------------------------------------------------------- */

static int64_t market_target_ms(const struct cq_sim *sim, int64_t wall_ms)
{
    return sim->market_start_sim_ms + (wall_ms - sim->market_start_wall_ms) * (int64_t)sim->opts.speed;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *market_main(void *arg)
{
    struct cq_sim *sim = arg;
    int64_t last_save_ms = cq_sim__wall_ms();
    uint64_t saved_placed = UINT64_MAX, saved_fills = UINT64_MAX, saved_canceled = UINT64_MAX;

    while (!atomic_load(&sim->stop)) {
        int64_t wall = cq_sim__wall_ms();
        size_t events = 0;
        pthread_mutex_lock(&sim->lock);
        cq_sim__market_set_paused(sim->market, sim->faults.market_paused);
        if (sim->opts.speed_max && cq_sim__ws_backlog_bytes(sim->ws) > MAX_SPEED_BACKLOG_BYTES) {
            /* paced: let the WS thread catch up (see MAX_SPEED_BACKLOG_BYTES) */
        } else if (sim->opts.speed_max) {
            while (events < MAX_BURST_EVENTS) {
                int64_t next = cq_sim__market_next_event_ms(sim->market);
                if (next == INT64_MAX) {
                    break;
                }
                events += cq_sim__market_advance(sim->market, next);
                if (sim->faults.market_paused) {
                    break;
                }
            }
        } else {
            events = cq_sim__market_advance(sim->market, market_target_ms(sim, wall));
        }
        expire_listen_keys(sim, wall);
        if (sim->state_path != NULL && wall - last_save_ms >= STATE_SAVE_MS) {
            struct cq_sim__engine_stats es;
            cq_sim__engine_get_stats(sim->engine, &es);
            if (es.orders_placed != saved_placed || es.fills != saved_fills ||
                es.orders_canceled != saved_canceled) {
                struct cq_err err;
                if (save_state(sim, &err) == 0) {
                    saved_placed = es.orders_placed;
                    saved_fills = es.fills;
                    saved_canceled = es.orders_canceled;
                } else {
                    cq_log_error("simex", "state_save_failed",
                                 json_pack("{s:s,s:s}", "path", sim->state_path, "hint", err.hint),
                                 "cannot save the simulator state: %s", err.message);
                }
            }
            last_save_ms = wall;
        }
        pthread_mutex_unlock(&sim->lock);
        if (!sim->opts.speed_max) {
            sleep_ms(MARKET_TICK_MS);
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
    pthread_mutex_init(&sim->lock, NULL);
    atomic_init(&sim->stop, false);
    atomic_init(&sim->faults.ws_drop_generation, 0);
    atomic_init(&sim->faults.ws_stall, false);
    atomic_init(&sim->counters.ws_connections, 0);
    atomic_init(&sim->counters.ws_messages_sent, 0);
    atomic_init(&sim->counters.ws_messages_dropped, 0);

    sim->opts = *opts;
    if (opts->n_symbols == 0 || opts->n_symbols > SIM_SYMBOLS_MAX) {
        cq_err_set(err, CQ_EINVAL, 0, "give between 1 and 32 symbols, e.g. --symbols BTCUSDT,ETHUSDT",
                   "%zu symbols given", opts->n_symbols);
        goto fail;
    }
    if (opts->speed == 0 && !opts->speed_max) {
        sim->opts.speed = 1;
    }
    sim->bind = cq_text_dup(opts->bind != NULL ? opts->bind : "127.0.0.1");
    sim->data_path = cq_text_dup(opts->data_path);
    sim->state_path = cq_text_dup(opts->state_path);
    sim->api_key = cq_text_dup(opts->api_key != NULL ? opts->api_key : CQ_SIM_DEFAULT_API_KEY);
    sim->api_secret =
        cq_text_dup(opts->api_secret != NULL ? opts->api_secret : CQ_SIM_DEFAULT_API_SECRET);
    sim->control_token = cq_text_dup(opts->control_token);
    sim->symbols = calloc(opts->n_symbols, sizeof(*sim->symbols));
    sim->balances = calloc(opts->n_balances + 1, sizeof(*sim->balances));
    if (sim->bind == NULL || sim->api_key == NULL || sim->api_secret == NULL ||
        sim->symbols == NULL || sim->balances == NULL ||
        (opts->control_token != NULL && sim->control_token == NULL)) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the simulator");
        goto fail;
    }
    /* Any well-formed key and secret work (coinquantd's paper mode passes
     * generated ones); neither is ever logged: the secret and the control
     * token are registered with the log's redaction as well. */
    if (check_credential("API key", sim->api_key, 1, CQ_SIM_API_KEY_MAX, err) < 0 ||
        check_credential("API secret", sim->api_secret, 1, CQ_SIM_API_SECRET_MAX, err) < 0 ||
        (sim->control_token != NULL &&
         check_credential("control token", sim->control_token, CQ_SIM_CONTROL_TOKEN_MIN,
                          CQ_SIM_CONTROL_TOKEN_MAX, err) < 0)) {
        goto fail;
    }
    if (opts->api_secret != NULL) {
        cq_log_add_secret(sim->api_secret);
    }
    cq_log_add_secret(sim->control_token);
    sim->opts.bind = sim->bind;
    sim->opts.data_path = sim->data_path;
    sim->opts.state_path = sim->state_path;
    sim->opts.api_key = sim->api_key;
    sim->opts.api_secret = sim->api_secret;
    sim->opts.control_token = sim->control_token;
    if (opts->n_balances > 0) {
        memcpy(sim->balances, opts->balances, opts->n_balances * sizeof(*sim->balances));
    }
    sim->opts.balances = sim->balances;
    sim->rng_state = opts->seed ^ 0x5151DEADBEEF5151ULL;

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
            cq_err_set(err, CQ_EINVAL, 0,
                       "symbols are BASE+QUOTE with a USDT, BTC, ETH, BUSD or USDC quote, e.g. BTCUSDT",
                       "cannot derive base and quote assets from symbol '%s'", opts->symbols[i]);
            goto fail;
        }
        cq_strlcpy(sim->symbols[i], specs[i].symbol, CQ_SYMBOL_LEN); /* same size */
    }
    sim->opts.symbols = NULL; /* the copies live in specs/engine */

    struct cq_sim__balance start_balances[SIM_ASSETS_MAX];
    size_t nb = opts->n_balances < SIM_ASSETS_MAX ? opts->n_balances : SIM_ASSETS_MAX;
    for (size_t i = 0; i < nb; i++) {
        memset(&start_balances[i], 0, sizeof(start_balances[i]));
        /* cq_sim_balance.asset is CQ_SIM_ASSET_LEN bytes = SIM_ASSET_LEN */
        cq_strlcpy(start_balances[i].asset, opts->balances[i].asset, SIM_ASSET_LEN);
        start_balances[i].free = opts->balances[i].amount;
        start_balances[i].locked = CQ_DEC_ZERO;
    }
    struct cq_sim__engine_config ec = {
        .symbols = specs,
        .n_symbols = opts->n_symbols,
        .balances = start_balances,
        .n_balances = nb,
        .maker_bps = opts->maker_bps,
        .taker_bps = opts->taker_bps,
        .seed = opts->seed,
    };
    sim->engine = cq_sim__engine_new(&ec, err);
    if (sim->engine == NULL) {
        goto fail;
    }
    struct cq_sim__market_options mo = {
        .symbols = specs,
        .n_symbols = opts->n_symbols,
        .data_path = sim->data_path,
        .seed = opts->seed,
        .start_ms = cq_sim__wall_ms() / SIM_MINUTE_MS * SIM_MINUTE_MS,
        .history_bars = HISTORY_BARS,
        .book_levels = BOOK_LEVELS,
    };
    sim->market = cq_sim__market_new(&mo, err);
    if (sim->market == NULL) {
        goto fail;
    }
    sim->market_start_sim_ms = mo.start_ms;
    struct cq_sim__market_listener ml = {on_market_trade, on_market_book, on_market_kline, sim};
    cq_sim__market_set_listener(sim->market, &ml);
    struct cq_sim__engine_listener el = {on_execution, on_account, sim};
    cq_sim__engine_set_listener(sim->engine, &el);

    sim->rl.weight_limit_1m = opts->weight_limit_1m != 0 ? opts->weight_limit_1m : 6000;
    sim->rl.order_limit_10s = opts->order_limit_10s != 0 ? opts->order_limit_10s : 100;
    sim->rl.order_limit_1d = opts->order_limit_1d != 0 ? opts->order_limit_1d : 200000;
    return sim;

fail:
    cq_sim_free(sim);
    return NULL;
}

int cq_sim_start(struct cq_sim *sim, struct cq_err *err)
{
    int rc;
    if (sim->state_path != NULL) {
        rc = load_state(sim, err);
        if (rc < 0) {
            return rc;
        }
        sim->state_writable = true;
    }
    int rest_port = sim->opts.rest_port;
    int ws_port = sim->opts.ws_port;
    sim->ws = cq_sim__ws_start(sim, &ws_port, err);
    if (sim->ws == NULL) {
        return -(err != NULL ? err->code : CQ_EIO);
    }
    sim->rest = cq_sim__rest_start(sim, &rest_port, err);
    if (sim->rest == NULL) {
        cq_sim_stop(sim);
        return -(err != NULL ? err->code : CQ_EIO);
    }
    /* bind is an IP literal by now (cq_sim__rest_start refused anything else): at
     * most 45 characters + 16 of scheme, brackets and port < 96 */
    const char *host = sim->bind;
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
        return cq_err_set(err, CQ_EIO, e, "check the thread limit", "cannot start the market thread");
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
    atomic_store(&sim->stop, true);
    if (sim->market_thread_running) {
        pthread_join(sim->market_thread, NULL);
        sim->market_thread_running = false;
    }
    cq_sim__rest_stop(sim->rest);
    sim->rest = NULL;
    cq_sim__ws_stop(sim->ws);
    sim->ws = NULL;
    if (sim->state_writable && sim->engine != NULL) {
        struct cq_err err;
        pthread_mutex_lock(&sim->lock);
        if (save_state(sim, &err) < 0) {
            cq_log_error("simex", "state_save_failed",
                         json_pack("{s:s,s:s}", "path", sim->state_path, "hint", err.hint),
                         "cannot save the simulator state: %s", err.message);
        }
        pthread_mutex_unlock(&sim->lock);
    }
}

void cq_sim_free(struct cq_sim *sim)
{
    if (sim == NULL) {
        return;
    }
    cq_sim_stop(sim);
    cq_sim__market_free(sim->market);
    cq_sim__engine_free(sim->engine);
    free(sim->bind);
    free(sim->data_path);
    free(sim->state_path);
    free(sim->api_key);
    free_secret(sim->api_secret);
    free_secret(sim->control_token);
    free(sim->symbols);
    free(sim->balances);
    pthread_mutex_destroy(&sim->lock);
    free(sim);
}
