/*
 * sim-int.h — coinquant-simex's lifecycle object (sim.c only): the shared
 * state (sim-state.h, where the threads and the lock are described) and the
 * two front ends it starts on top of it (sim-rest.h, sim-ws.h).
 */
#ifndef CQ_SIM_INT_H
#define CQ_SIM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cq/sim.h"
#include "sim-rest.h"
#include "sim-state.h"
#include "sim-ws.h"

struct cq_sim__rest; /* rest.c */
struct cq_sim__ws;   /* ws.c */

struct cq_sim {
    struct cq_sim__state state; /* the layer below both front ends */
    struct cq_sim__rest *rest;  /* owned */
    struct cq_sim__ws *ws;      /* owned */
    char rest_url[96];
    char ws_url[96];

    pthread_t market_thread;
    bool market_thread_running;
    /* --state was loaded (or absent) at start: only then may stop write it,
     * so a file refused at start is never overwritten. */
    bool state_writable;
    int64_t market_start_wall_ms; /* wall time when the market clock started */
    int64_t market_start_sim_ms;
};

#endif /* CQ_SIM_INT_H */
