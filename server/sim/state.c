/*
 * state.c — coinquant-simex's shared state (sim-state.h): the lock and its
 * contention counters, the server clock, the seeded RNG, listen keys, the
 * book view and GET /_sim/state. The layer below the REST and WS front ends;
 * it calls nothing above it (listen-key closes go out through st->events).
 */
#include <string.h>
#include <time.h>

#include "sim-state.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the lock ----------------------------------------------------------------- */

void cq_sim__lock(struct cq_sim__state *st)
{
    if (pthread_mutex_trylock(&st->lock) == 0) {
        st->lock_stats.held_since_ns = now_ns();
        st->lock_stats.acquisitions++;
        return;
    }
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&st->lock);
    uint64_t t1 = now_ns();
    st->lock_stats.held_since_ns = t1;
    st->lock_stats.acquisitions++;
    st->lock_stats.contended++;
    st->lock_stats.wait_ns += t1 - t0;
}

void cq_sim__unlock(struct cq_sim__state *st)
{
    st->lock_stats.held_ns += now_ns() - st->lock_stats.held_since_ns;
    pthread_mutex_unlock(&st->lock);
}

/* ---- clock and RNG ------------------------------------------------------------ */

int64_t cq_sim__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cq_sim__server_time_ms(const struct cq_sim__state *sim)
{
    return cq_sim__wall_ms() + sim->faults.clock_skew_ms;
}

uint64_t cq_sim__rand(struct cq_sim__state *sim)
{
    /* splitmix64 */
    uint64_t z = (sim->rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- listen keys ------------------------------------------------------------ */

const char *cq_sim__listen_key_create(struct cq_sim__state *sim, int64_t now_ms)
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

static struct cq_sim__listen_key *find_key(struct cq_sim__state *sim, const char *key)
{
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        struct cq_sim__listen_key *k = &sim->listen_keys[i];
        if (k->active && strcmp(k->key, key) == 0) {
            return k;
        }
    }
    return NULL;
}

int cq_sim__listen_key_keepalive(struct cq_sim__state *sim, const char *key, int64_t now_ms)
{
    struct cq_sim__listen_key *k = find_key(sim, key);
    if (k == NULL || k->expires_ms <= now_ms) {
        return -CQ_ENOTFOUND;
    }
    k->expires_ms = now_ms + SIM_LISTEN_KEY_TTL_MS;
    return 0;
}

int cq_sim__listen_key_delete(struct cq_sim__state *sim, const char *key)
{
    struct cq_sim__listen_key *k = find_key(sim, key);
    if (k == NULL) {
        return -CQ_ENOTFOUND;
    }
    k->active = false;
    if (sim->events.listen_key_closed != NULL) {
        sim->events.listen_key_closed(sim->events.ctx, key, false, cq_sim__wall_ms());
    }
    return 0;
}

bool cq_sim__listen_key_valid(struct cq_sim__state *sim, const char *key)
{
    cq_sim__lock(sim);
    struct cq_sim__listen_key *k = find_key(sim, key);
    bool ok = k != NULL && k->expires_ms > cq_sim__wall_ms();
    cq_sim__unlock(sim);
    return ok;
}

void cq_sim__listen_keys_expire(struct cq_sim__state *sim, int64_t now_ms)
{
    for (int i = 0; i < SIM_LISTEN_KEYS_MAX; i++) {
        struct cq_sim__listen_key *k = &sim->listen_keys[i];
        if (k->active && k->expires_ms <= now_ms) {
            k->active = false;
            if (sim->events.listen_key_closed != NULL) {
                sim->events.listen_key_closed(sim->events.ctx, k->key, true, now_ms);
            }
        }
    }
}

bool cq_sim__latency_hold(struct cq_sim__state *sim, int64_t market_ms)
{
    struct cq_sim__latency *l = &sim->latency;
    if (l->n_targets == SIM_LATENCY_PENDING_MAX) {
        l->table_full++;
        return false;
    }
    l->targets[l->n_targets++] = market_ms;
    return true;
}

void cq_sim__latency_release(struct cq_sim__state *sim, int64_t market_ms)
{
    struct cq_sim__latency *l = &sim->latency;
    for (size_t i = 0; i < l->n_targets; i++) {
        if (l->targets[i] == market_ms) {
            l->targets[i] = l->targets[--l->n_targets];
            return;
        }
    }
}

int64_t cq_sim__latency_barrier_ms(const struct cq_sim__state *sim)
{
    int64_t min = INT64_MAX;
    for (size_t i = 0; i < sim->latency.n_targets; i++) {
        min = sim->latency.targets[i] < min ? sim->latency.targets[i] : min;
    }
    return min;
}

void cq_sim__book_view(struct cq_sim__state *sim, int symbol_idx, struct cq_sim__book_view *out)
{
    cq_sim__market_book(sim->market, symbol_idx, out);
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
        acc->arr,
        json_pack("{s:I,s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "orderId", (json_int_t)o->order_id,
                  "symbolIdx", o->symbol_idx, "clientOrderId", o->client_id, "side",
                  cq_sim__side_name(o->side), "type", cq_sim__order_type_name(o->type), "status",
                  cq_sim__order_status_name(o->status), "price",
                  cq_dec_format(o->price, p, sizeof(p)), "origQty",
                  cq_dec_format(o->orig_qty, q, sizeof(q)), "executedQty",
                  cq_dec_format(o->executed_qty, e, sizeof(e))));
}

json_t *cq_sim__state_json(struct cq_sim__state *sim)
{
    struct balance_acc balances = {json_array()};
    struct balance_acc open = {json_array()};
    struct cq_sim__engine_stats es;
    cq_sim__engine_balances(sim->engine, add_balance, &balances);
    cq_sim__engine_open_orders(sim->engine, -1, add_order, &open);
    cq_sim__engine_get_stats(sim->engine, &es);
    /* the lock is held by this caller: count its hold so far */
    struct cq_sim__lock_stats ls = sim->lock_stats;
    ls.held_ns += now_ns() - ls.held_since_ns;
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
    json_t *state = json_pack(
        "{s:o,s:o,s:o,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:"
        "I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I,s:I,s:b,s:I,s:b,s:I,s:b},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
        "balances", balances.arr, "open_orders", open.arr, "symbols", symbols, "lock",
        "acquisitions", (json_int_t)ls.acquisitions, "contended", (json_int_t)ls.contended,
        "wait_ns", (json_int_t)ls.wait_ns, "held_ns", (json_int_t)ls.held_ns, "engine",
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
    if (state != NULL) {
        /* replayed recordings (docs/SIMEX.md "Recorded book") */
        json_t *syms = json_object_get(state, "symbols");
        for (size_t i = 0; i < json_array_size(syms); i++) {
            struct cq_sim__replay_stats rs;
            cq_sim__market_replay_stats(sim->market, (int)i, &rs);
            if (rs.replaying) {
                json_object_set_new(json_array_get(syms, i), "replay",
                                    json_pack("{s:I,s:I,s:I,s:I}", "loops", (json_int_t)rs.loops,
                                              "events", (json_int_t)rs.events, "warmup_events",
                                              (json_int_t)rs.warmup_events, "levels_dropped",
                                              (json_int_t)rs.levels_dropped));
            }
        }
        json_object_set_new(json_object_get(state, "counters"), "our_trades_printed",
                            json_integer((json_int_t)sim->counters.our_trades_printed));
        json_object_set_new(state, "latency",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "order_latency_ms",
                                      (json_int_t)sim->opts.order_latency_ms, "response_latency_ms",
                                      (json_int_t)sim->opts.response_latency_ms, "waiting",
                                      (json_int_t)sim->latency.n_targets, "requests_delayed",
                                      (json_int_t)sim->latency.requests_delayed, "table_full",
                                      (json_int_t)sim->latency.table_full, "wait_timeouts",
                                      (json_int_t)sim->latency.wait_timeouts));
        /* the queue model (simq, issue 19): self-trade preventions, and
         * resting orders one event could not consider (SIM_QUEUE_SCAN_MAX) */
        json_t *eng = json_object_get(state, "engine");
        json_object_set_new(eng, "prevented_matches",
                            json_integer((json_int_t)es.prevented_matches));
        json_object_set_new(eng, "queue_scan_truncated",
                            json_integer((json_int_t)es.queue_scan_truncated));
    }
    return state;
}
