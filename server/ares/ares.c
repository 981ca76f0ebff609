/*
 * ares.c — the ARES signal engine (skeleton).
 *
 * Runs on its own thread (struct cq_service). Today it only heartbeats and
 * reports status starting, not ready, reason not_implemented; it emits no
 * signal of any kind. Indicators, strategies and the HealthGate replace the
 * step function in the ARES issue.
 */
#include <stdlib.h>

#include "cq/ares.h"
#include "cq/version.h"

struct cq_ares {
    struct cq_config *cfg;           /* owned reference */
    struct cq_health_board *board;   /* borrowed */
    struct cq_service *svc;          /* owned */
};

static int ares_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_ares *a = ctx;
    (void)now_mono_ms;
    cq_health_publish(a->board, CQ_SVC_ARES, CQ_HEALTH_STARTING, false, "not_implemented",
                      "ARES skeleton: no strategy runs yet, no signal is emitted", NULL);
    return 0;
}

static const struct cq_service_ops ares_ops = {
    .id = CQ_SVC_ARES,
    .tick_ms = 250,
    .step = ares_step,
    .on_stop = NULL,
};

struct cq_ares *cq_ares_new(struct cq_config *cfg, struct cq_health_board *board,
                            struct cq_err *err)
{
    struct cq_ares *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating ARES");
        return NULL;
    }
    a->cfg = cq_config_ref(cfg);
    a->board = board;
    a->svc = cq_service_new(&ares_ops, a, board, NULL, err);
    if (a->svc == NULL) {
        cq_ares_free(a);
        return NULL;
    }
    cq_version_log_banner("ares", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:I,s:b}", "feeder_stale_ms",
                                    (json_int_t)cq_config_int(cfg, CQ_CFG_FEEDER_STALE_MS),
                                    "test_default_signal",
                                    cq_config_onoff(cfg, CQ_CFG_TEST_ALLOW_DEFAULT_SIGNAL)));
    return a;
}

void cq_ares_free(struct cq_ares *a)
{
    if (a == NULL) {
        return;
    }
    cq_service_free(a->svc);
    cq_config_unref(a->cfg);
    free(a);
}

struct cq_service *cq_ares_service(struct cq_ares *a)
{
    return a->svc;
}
