/*
 * trader.c — the trader (skeleton).
 *
 * Runs on its own thread (struct cq_service). Today it only heartbeats and
 * reports status starting, not ready, reason not_implemented; it sends no
 * order. The risk gate, filters and the one order path replace the step
 * function in the trader issue.
 */
#include <stdlib.h>

#include "cq/trader.h"
#include "cq/version.h"

struct cq_trader {
    struct cq_config *cfg;           /* owned reference */
    struct cq_health_board *board;   /* borrowed */
    struct cq_service *svc;          /* owned */
};

static int trader_step(void *ctx, int64_t now_mono_ms)
{
    struct cq_trader *t = ctx;
    (void)now_mono_ms;
    cq_health_publish(t->board, CQ_SVC_TRADER, CQ_HEALTH_STARTING, false, "not_implemented",
                      "trader skeleton: no order path yet, nothing is sent", NULL);
    return 0;
}

static const struct cq_service_ops trader_ops = {
    .id = CQ_SVC_TRADER,
    .tick_ms = 250,
    .step = trader_step,
    .on_stop = NULL,
};

struct cq_trader *cq_trader_new(struct cq_config *cfg, struct cq_health_board *board,
                                struct cq_err *err)
{
    struct cq_trader *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        cq_err_set(err, CQ_ENOMEM, 0, NULL, "allocating the trader");
        return NULL;
    }
    t->cfg = cq_config_ref(cfg);
    t->board = board;
    t->svc = cq_service_new(&trader_ops, t, board, NULL, err);
    if (t->svc == NULL) {
        cq_trader_free(t);
        return NULL;
    }
    cq_version_log_banner("trader", cq_mode_name(cq_config_mode(cfg)), cq_config_hash(cfg),
                          json_pack("{s:s,s:b}", "mode", cq_mode_name(cq_config_mode(cfg)),
                                    "orders_enabled", 0));
    return t;
}

void cq_trader_free(struct cq_trader *t)
{
    if (t == NULL) {
        return;
    }
    cq_service_free(t->svc);
    cq_config_unref(t->cfg);
    free(t);
}

struct cq_service *cq_trader_service(struct cq_trader *t)
{
    return t->svc;
}
