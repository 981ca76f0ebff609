/*
 * risk.c — the risk gate (include/cq/risk.h): one pure function over the
 * limits, the usage and the order. The rules run in the order risk.h lists
 * and the first that refuses names the decision; the detail text prints the
 * inputs that decided it, so the journaled decision explains itself.
 *
 * Pure, no allocation, any thread. Exact cq_dec arithmetic; a sum that
 * leaves the int64 range refuses (it is above any limit).
 */
#include <stdio.h>

#include "cq/risk.h"

static void allow(struct cq_risk_decision *out, const char *detail)
{
    out->allowed = true;
    out->rule = "ok";
    /* bounded: detail is at most 192 bytes, the buffer's size */
    snprintf(out->detail, sizeof(out->detail), "%s", detail);
}

static void refuse(struct cq_risk_decision *out, const char *rule)
{
    out->allowed = false;
    out->rule = rule;
}

/* "limit 0 = none" for a decimal limit. */
static bool dec_limit_set(cq_dec limit)
{
    return limit.m > 0;
}

/* usage + notional > limit? (an overflowing sum is above any limit) */
static bool above_after(cq_dec usage, cq_dec notional, cq_dec limit, cq_dec *after)
{
    if (cq_dec_add(usage, notional, after) < 0) {
        return true;
    }
    return cq_dec_cmp(*after, limit) > 0;
}

void cq_risk_check(const struct cq_risk_limits *limits, const struct cq_risk_usage *usage,
                   const struct cq_risk_request *req, struct cq_risk_decision *out)
{
    const char *symbol = req->symbol != NULL ? req->symbol : "?";
    bool entry = !req->reduce_only;
    char a[CQ_DEC_STR_MAX], b[CQ_DEC_STR_MAX], c[CQ_DEC_STR_MAX];
    cq_dec after;

    out->detail[0] = '\0';
    if (limits->kill_switch) {
        refuse(out, "kill_switch");
        snprintf(out->detail, sizeof(out->detail), "kill switch on: no order (%s %s)", symbol,
                 req->reduce_only ? "exit" : "entry");
        return;
    }
    if (usage->symbol_quarantined) {
        refuse(out, "symbol_quarantined");
        snprintf(out->detail, sizeof(out->detail), "symbol %s is quarantined: no order", symbol);
        return;
    }
    if (entry && limits->trading_paused) {
        refuse(out, "trading_paused");
        snprintf(out->detail, sizeof(out->detail),
                 "trading paused: no entry on %s (exits still allowed)", symbol);
        return;
    }
    if (entry && dec_limit_set(limits->max_daily_loss)) {
        cq_dec neg_limit;
        if (cq_dec_neg(limits->max_daily_loss, &neg_limit) == 0 &&
            cq_dec_cmp(usage->daily_realized_pnl, neg_limit) <= 0) {
            refuse(out, "daily_loss_limit");
            snprintf(out->detail, sizeof(out->detail),
                     "daily realized PnL %s <= -%s: no entry on %s (exits still allowed)",
                     cq_dec_format(usage->daily_realized_pnl, a, sizeof(a)),
                     cq_dec_format(limits->max_daily_loss, b, sizeof(b)), symbol);
            return;
        }
    }
    if (limits->max_orders_per_minute > 0 &&
        usage->orders_last_minute >= limits->max_orders_per_minute) {
        refuse(out, "max_orders_per_minute");
        snprintf(out->detail, sizeof(out->detail),
                 "%u orders in the last 60 s >= max %u: no order on %s", usage->orders_last_minute,
                 limits->max_orders_per_minute, symbol);
        return;
    }
    if (!entry) {
        allow(out, "exit: only kill_switch, symbol_quarantined and max_orders_per_minute apply");
        return;
    }
    if (limits->max_open_positions > 0 && !usage->symbol_has_position &&
        usage->open_positions >= limits->max_open_positions) {
        refuse(out, "max_open_positions");
        snprintf(out->detail, sizeof(out->detail),
                 "%u open positions >= max %u: no new position on %s", usage->open_positions,
                 limits->max_open_positions, symbol);
        return;
    }
    if (dec_limit_set(limits->max_position_notional) &&
        above_after(usage->symbol_notional, req->notional, limits->max_position_notional, &after)) {
        refuse(out, "max_position_notional");
        snprintf(out->detail, sizeof(out->detail), "%s notional %s + order %s > max %s", symbol,
                 cq_dec_format(usage->symbol_notional, a, sizeof(a)),
                 cq_dec_format(req->notional, b, sizeof(b)),
                 cq_dec_format(limits->max_position_notional, c, sizeof(c)));
        return;
    }
    if (dec_limit_set(limits->max_total_exposure) &&
        above_after(usage->total_exposure, req->notional, limits->max_total_exposure, &after)) {
        refuse(out, "max_total_exposure");
        snprintf(out->detail, sizeof(out->detail),
                 "total exposure %s + order %s > max %s (order on %s)",
                 cq_dec_format(usage->total_exposure, a, sizeof(a)),
                 cq_dec_format(req->notional, b, sizeof(b)),
                 cq_dec_format(limits->max_total_exposure, c, sizeof(c)), symbol);
        return;
    }
    out->allowed = true;
    out->rule = "ok";
    snprintf(out->detail, sizeof(out->detail), "entry on %s notional %s within limits", symbol,
             cq_dec_format(req->notional, a, sizeof(a)));
}
