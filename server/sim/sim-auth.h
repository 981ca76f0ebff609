/*
 * sim-auth.h — coinquant-simex's request checks shared by its two front ends:
 * REST (rest.c) and the WebSocket API (wsapi.c). The API key, the timing rule
 * (BINANCE_PROTOCOL.md §2) and the REQUEST_WEIGHT window are the same on both,
 * as on Binance, where the WS API counts against the IP's REST weight.
 * Private to server/sim/.
 */
#ifndef CQ_SIM_AUTH_H
#define CQ_SIM_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "sim-params.h"
#include "sim-state.h"

#define SIM_WEIGHT_LIMIT_1M_DEFAULT 6000

/* The key: -2014 (401) when empty, over CQ_SIM_API_KEY_MAX or holding a byte
 * outside 0x21..0x7e; -2015 (401) when not the simulator's key. 0, or
 * -CQ_EPARSE with err filled. Any thread (the key is immutable). */
int cq_sim__auth_key(const struct cq_sim__state *st, const char *key,
                     struct cq_sim__api_error *err);

/* The timing rule, in µs: accept when timestamp < server + 1 s and
 * server - timestamp <= recvWindow; else -1021 (400) with Binance's text. */
int cq_sim__auth_time(int64_t server_ms, int64_t timestamp_us, int64_t recv_window_us,
                      struct cq_sim__api_error *err);

/* Start a new REQUEST_WEIGHT minute when `now` (wall ms) left the current
 * one. Caller holds st->lock. */
void cq_sim__rl_roll_weight_locked(struct cq_sim__ratelimit *rl, int64_t now);

/* The REQUEST_WEIGHT limit per minute in force (the configured one, or 6000). */
uint32_t cq_sim__rl_weight_limit(const struct cq_sim__ratelimit *rl);

#endif /* CQ_SIM_AUTH_H */
