/*
 * risk.h — the risk gate: one pure function that allows or refuses an
 * order, given the limits, what is in use, and the order.
 *
 * The trader's decision core calls cq_risk_check before every order it
 * would send (entries and exits alike); every decision, allowed or refused,
 * is journaled with its inputs (record "risk.decision") and logged
 * (event risk_decision): that is the audit log.
 *
 * Rules, in this order (the first that refuses names the decision):
 *   kill_switch            no order at all (the trader also cancels its
 *                          open orders)
 *   symbol_quarantined     no order for the symbol
 *   trading_paused         no entry; exits (reduce-only) still allowed
 *   daily_loss_limit       no entry once the UTC day's realized PnL is at or
 *                          below -max_daily_loss; exits allowed
 *   max_orders_per_minute  no order (exits included) once the orders sent
 *                          in the last 60 s are at or above the count
 *   max_open_positions     no entry opening a new position once the open
 *                          positions are at or above the count
 *   max_position_notional  no entry taking the symbol's notional above it
 *                          (reaching it exactly is allowed)
 *   max_total_exposure     no entry taking the total notional above it
 * A limit of 0 means "no limit" for the numeric rules. A sum beyond the
 * int64 range is above any limit. docs/RISK.md has the table.
 *
 * Threads: pure (any thread). No allocation.
 */
#ifndef CQ_RISK_H
#define CQ_RISK_H

#include <stdbool.h>
#include <stddef.h>

#include "cq/decimal.h"
#include "cq/market.h"

struct cq_risk_limits {
    unsigned max_open_positions;    /* CQ_RISK_MAX_OPEN_POSITIONS; 0 = none */
    cq_dec max_position_notional;   /* quote asset per symbol; 0 = none */
    cq_dec max_total_exposure;      /* quote asset, all symbols; 0 = none */
    cq_dec max_daily_loss;          /* quote asset, > 0; realized, UTC day; 0 = none */
    unsigned max_orders_per_minute; /* 0 = none */
    bool trading_paused;
    bool kill_switch;
};

/* What is in use when the order would be sent. */
struct cq_risk_usage {
    unsigned open_positions;     /* symbols with a non-zero position */
    bool symbol_has_position;    /* the order's symbol is one of them */
    cq_dec symbol_notional;      /* the symbol's position at entry cost, quote */
    cq_dec total_exposure;       /* sum over symbols, quote */
    cq_dec daily_realized_pnl;   /* this UTC day, quote, fees included */
    unsigned orders_last_minute; /* orders sent in the last 60 s */
    bool symbol_quarantined;
};

struct cq_risk_request {
    const char *symbol;
    enum cq_side side;
    bool reduce_only; /* an exit: SELL of a held position, stop-loss, take-profit */
    cq_dec notional;  /* quote amount the order would add (entries) */
};

struct cq_risk_decision {
    bool allowed;
    const char *rule; /* "ok" or the refusing rule's name above (static) */
    char detail[192]; /* "daily realized PnL -512.30000000 <= -500" */
};

void cq_risk_check(const struct cq_risk_limits *limits, const struct cq_risk_usage *usage,
                   const struct cq_risk_request *req, struct cq_risk_decision *out);

#endif /* CQ_RISK_H */
