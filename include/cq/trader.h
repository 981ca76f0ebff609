/*
 * trader.h — the trader: the one path to the exchange's order endpoint,
 * behind the risk gate.
 *
 * Status: skeleton. The thread consumes ARES's signals and the user data
 * stream events the feeder forwards (and counts them), heartbeats, and
 * publishes status starting, reason not_implemented; it sends no order: the
 * order path arrives with the trader issue.
 *
 * Threads: cq_trader_new/free are called by the supervisor; the rest runs
 * on the trader's own thread through the struct cq_service it returns. The
 * thread sleeps on a doorbell (cq/doorbell.h) that cq_trader_new attaches to
 * both rings as their consumer bell (cq_trader_free detaches it): a push
 * into either wakes it; otherwise it wakes only for its health record.
 */
#ifndef CQ_TRADER_H
#define CQ_TRADER_H

#include "cq/config.h"
#include "cq/health.h"
#include "cq/spsc.h"
#include "cq/service.h"

struct cq_trader;

/* cfg: a reference is taken. board, user_events (struct cq_user_event from
 * the feeder) and signals (struct cq_signal from ARES) are borrowed; the
 * trader is the consumer of both rings. */
struct cq_trader *cq_trader_new(struct cq_config *cfg, struct cq_health_board *board,
                                struct cq_spsc *user_events, struct cq_spsc *signals,
                                struct cq_err *err);
void cq_trader_free(struct cq_trader *trader);
struct cq_service *cq_trader_service(struct cq_trader *trader);

#endif /* CQ_TRADER_H */
