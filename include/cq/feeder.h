/*
 * feeder.h — the feeder service: owns everything that comes from the
 * exchange (market streams, REST backfill) and says how fresh it is.
 *
 * Status: skeleton. The thread heartbeats and publishes status starting,
 * reason not_implemented; market data arrives with the feeder issue.
 *
 * Threads: cq_feeder_new/free and cq_feeder_reconfigure are called by the
 * supervisor; everything else runs on the feeder's own thread through the
 * struct cq_service it returns.
 */
#ifndef CQ_FEEDER_H
#define CQ_FEEDER_H

#include "cq/config.h"
#include "cq/health.h"
#include "cq/service.h"

struct cq_feeder;

/* cfg: a reference is taken. board: borrowed. */
struct cq_feeder *cq_feeder_new(struct cq_config *cfg, struct cq_health_board *board,
                                struct cq_err *err);
void cq_feeder_free(struct cq_feeder *feeder);
/* The thread frame to start, watch and stop. Borrowed. */
struct cq_service *cq_feeder_service(struct cq_feeder *feeder);
/* Apply reloadable keys (CQ_FEEDER_STALE_MS). Supervisor thread. */
void cq_feeder_reconfigure(struct cq_feeder *feeder, const struct cq_config *cfg);

#endif /* CQ_FEEDER_H */
