/*
 * auth.c — the API key, timing and weight-window checks that REST and the
 * WebSocket API share (sim-auth.h).
 */
#include <string.h>

#include "cq/clock.h"
#include "sim-auth.h"

int cq_sim__auth_key(const struct cq_sim__state *st, const char *key, struct cq_sim__api_error *err)
{
    size_t len = key != NULL ? strlen(key) : 0;
    bool malformed = len == 0 || len > CQ_SIM_API_KEY_MAX;
    for (size_t i = 0; !malformed && i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c >= 0x7f) {
            malformed = true;
        }
    }
    if (malformed) {
        return cq_sim__api_error_set(err, 401, -2014, "API-key format invalid.");
    }
    if (strcmp(key, st->api_key) != 0) {
        return cq_sim__api_error_set(err, 401, -2015,
                                     "Invalid API-key, IP, or permissions for action.");
    }
    return 0;
}

int cq_sim__auth_time(int64_t server_ms, int64_t timestamp_us, int64_t recv_window_us,
                      struct cq_sim__api_error *err)
{
    int64_t server_us = server_ms * 1000;
    if (timestamp_us >= server_us + 1000000) {
        return cq_sim__api_error_set(
            err, 400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.");
    }
    if (server_us - timestamp_us > recv_window_us) {
        return cq_sim__api_error_set(err, 400, -1021,
                                     "Timestamp for this request is outside of the recvWindow.");
    }
    return 0;
}

void cq_sim__rl_roll_weight_locked(struct cq_sim__ratelimit *rl, int64_t now)
{
    int64_t minute = now - now % CQ_MS_PER_MINUTE;
    if (rl->weight_window_start_ms != minute) {
        rl->weight_window_start_ms = minute;
        rl->weight_used = 0;
        rl->requests_after_429 = 0;
    }
}

uint32_t cq_sim__rl_weight_limit(const struct cq_sim__ratelimit *rl)
{
    return rl->weight_limit_1m != 0 ? rl->weight_limit_1m : SIM_WEIGHT_LIMIT_1M_DEFAULT;
}
