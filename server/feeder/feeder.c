/*
 * feeder.c — the feeder service (skeleton).
 *
 * Runs on its own thread (struct cq_service). Today it only heartbeats and
 * tells the truth about itself: status starting, not ready, reason
 * not_implemented, with the freshness threshold it will enforce. The
 * exchange clients, market state and freshness tracking replace the step
 * function in the feeder issue.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "cq/feeder.h"
#include "cq/version.h"

struct cq_feeder {
    struct cq_config *cfg;           /* owned reference */
    struct cq_health_board *board;   /* borrowed */
    struct cq_service *svc;          /* owned */
    /* Reloadable threshold: written by the supervisor on SIGHUP, read by the
     * feeder thread; a lone value, relaxed order suffices. */
    _Atomic int64_t stale_ms;
};

static int feeder_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_feeder *f = ctx;
    (void)now_mono_ms;
    cq_health_publish(f->board, CQ_SVC_FEEDER, CQ_HEALTH_STARTING, false, "not_implemented",
                      "feeder skeleton: no market data yet (exchange streams come with the "
                      "feeder issue)",
                      json_pack("{s:I}", "stale_ms",
                                (json_int_t)atomic_load_explicit(&f->stale_ms,
                                                                 memory_order_relaxed)));
    return 0;
}

static const struct cq_service_ops feeder_ops = {
    .id = CQ_SVC_FEEDER,
    .tick_ms = 250,
    .step = feeder_step,
    .on_stop = NULL,
};

struct cq_feeder *cq_feeder_new(struct cq_config *cfg, struct cq_health_board *board,
                                struct cq_err *err)
{
    struct cq_feeder *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the feeder");
        return NULL;
    }
    f->cfg = cq_config_ref(cfg);
    f->board = board;
    atomic_init(&f->stale_ms, cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS));
    f->svc = cq_service_new(&feeder_ops, f, board, NULL, err);
    if (f->svc == NULL) {
        cq_feeder_free(f);
        return NULL;
    }
    cq_version_log_banner("feeder", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:I}", "stale_ms",
                                    (json_int_t)cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS)));
    return f;
}

void cq_feeder_free(struct cq_feeder *f)
{
    if (f == NULL) {
        return;
    }
    cq_service_free(f->svc);
    cq_config_unref(f->cfg);
    free(f);
}

struct cq_service *cq_feeder_service(struct cq_feeder *f)
{
    return f->svc;
}

void cq_feeder_reconfigure(struct cq_feeder *f, const struct cq_config *cfg)
{
    atomic_store_explicit(&f->stale_ms, cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS),
                          memory_order_relaxed);
}
