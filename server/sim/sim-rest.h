/*
 * sim-rest.h — coinquant-simex's REST front end (rest.c, libmicrohttpd).
 * Private to server/sim/. It sees the shared state layer (sim-state.h) and
 * nothing above it.
 */
#ifndef CQ_SIM_REST_H
#define CQ_SIM_REST_H

#include <stdint.h>

#include "cq/common.h"
#include "sim-state.h"

struct cq_sim__rest;

/* ---- rest.c: the REST server (libmicrohttpd) ----------------------------- */

/* Bind opts.bind:rest_port (0 = ephemeral); *port_out gets the real port.
 * Serves /api/v3/... and the /_sim/ control path (loopback peers only). */
struct cq_sim__rest *cq_sim__rest_start(struct cq_sim__state *st, int *port_out,
                                        struct cq_err *err);
void cq_sim__rest_stop(struct cq_sim__rest *rest); /* joins; NULL ok */
/* The REST connection table, for GET /_sim/state. Any thread (takes the
 * table's own leaf lock; may be called with st->lock held). NULL: zeros. */
struct cq_sim__rest_stats {
    uint64_t open, waiting;    /* connections now; waiting for a request */
    uint64_t evicted_deadline; /* request not in by the deadline */
    uint64_t evicted_for_room; /* closed to make room under a cap */
    uint64_t refused_busy;     /* answered 503: every slot busy */
    uint64_t head_deadline_ms, per_ip_max, connections_max;
    uint64_t bodies_refused; /* over SIM_BODY_MAX_BYTES: answered 413 */
    uint64_t bodies_dropped; /* of those, dropped for sending on */
};
void cq_sim__rest_stats(struct cq_sim__rest *rest, struct cq_sim__rest_stats *out);

#endif /* CQ_SIM_REST_H */
