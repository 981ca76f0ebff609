/*
 * ares.h — ARES, the signal engine: closed candles in, signals out, never on
 * stale data (the HealthGate).
 *
 * Status: skeleton. The thread consumes the feeder's market events (and
 * counts them per symbol, checking that closed candles arrive exactly once
 * and in order), heartbeats, and publishes status starting, reason
 * not_implemented: indicators and strategies arrive with the ARES issue.
 *
 * Threads: cq_ares_new/free are called by the supervisor; the rest runs on
 * ARES's own thread through the struct cq_service it returns.
 */
#ifndef CQ_ARES_H
#define CQ_ARES_H

#include "cq/config.h"
#include "cq/health.h"
#include "cq/ring.h"
#include "cq/service.h"

struct cq_ares;

/* cfg: a reference is taken. board and from_feeder (ARES is the consumer of
 * struct cq_market_event) are borrowed. */
struct cq_ares *cq_ares_new(struct cq_config *cfg, struct cq_health_board *board,
                            struct cq_spsc *from_feeder, struct cq_err *err);
void cq_ares_free(struct cq_ares *ares);
struct cq_service *cq_ares_service(struct cq_ares *ares);

#endif /* CQ_ARES_H */
