/*
 * ares.h — ARES, the signal engine: closed candles in, signals out, and
 * never on stale data (the HealthGate). See server/ares/ares.c for the gate
 * order and the queues.
 *
 * Threads: cq_ares_new/free and cq_ares_reconfigure are called by the
 * supervisor; everything else runs on ARES's own thread through the struct
 * cq_service it returns. ARES is the consumer of the feeder's ring and the
 * producer of the trader's ring (struct cq_signal, never dropped). Its
 * thread sleeps on a doorbell (cq/doorbell.h) that cq_ares_new attaches to
 * the feeder's ring (consumer bell: a push wakes ARES) and to the trader's
 * (producer bell: a pop wakes ARES while signals wait for room);
 * cq_ares_free detaches it.
 */
#ifndef CQ_ARES_H
#define CQ_ARES_H

#include "cq/clock.h"
#include "cq/config.h"
#include "cq/health.h"
#include "cq/spsc.h"
#include "cq/service.h"

struct cq_journal;

struct cq_ares_options {
    struct cq_config *cfg;         /* a reference is taken */
    struct cq_health_board *board; /* borrowed */
    struct cq_spsc *from_feeder;   /* borrowed: struct cq_market_event, ARES consumes */
    struct cq_spsc *to_trader;     /* borrowed: struct cq_signal, ARES produces; may be NULL */
    struct cq_journal *journal;    /* borrowed; NULL = signals are not journaled */
    const struct cq_clock *clock;  /* NULL = system; borrowed */
};

struct cq_ares;

struct cq_ares *cq_ares_new(const struct cq_ares_options *opts, struct cq_err *err);
void cq_ares_free(struct cq_ares *ares);
struct cq_service *cq_ares_service(struct cq_ares *ares);
/* Apply reloadable keys (CQ_FEEDER_STALE_MS). Supervisor thread. */
void cq_ares_reconfigure(struct cq_ares *ares, const struct cq_config *cfg);

#endif /* CQ_ARES_H */
