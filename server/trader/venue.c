/*
 * venue.c — the trader's venue module: the only caller of the REST client's
 * order door (see trader-venue.h). Orders are TRADE requests, so they are
 * always signed; the client never resends them.
 */
#include "trader-venue.h"

int cq_trader_venue_send(struct cq_rest_client *rest, const char *method, const char *path,
                         const struct cq_rest_params *params, unsigned weight,
                         struct cq_rest_response *out)
{
    return cq_rest_order_send(rest, method, path, params, CQ_SEC_SIGNED, weight, out);
}
