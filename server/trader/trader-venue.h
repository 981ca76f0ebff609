/*
 * trader-venue.h — the trader's venue module (server/trader/venue.c): the
 * one door through which an order reaches an exchange (rule 3 of
 * ../shared/ARCHITECTURE.md, issue 10 "The order path is structural").
 *
 * Private to server/trader/ (included by bare name from that directory,
 * like the other modules' -int.h headers). Nothing else in the code base
 * calls cq_rest_order_send: tests/integration/test_order_path.sh scans the
 * build's object files and fails if any object other than the REST client
 * itself (and its own unit test and order benchmark) and venue.c references
 * it. The REST client's safe door, cq_rest_call, refuses every order
 * endpoint, so there is no second way.
 *
 * Its callers are the trader thread's SEND_ORDER and CANCEL_ORDER actions
 * (server/trader/trader.c), which the decision core emits only after the
 * risk decision and a durable order.intent (docs/TRADER.md).
 */
#ifndef CQ_TRADER_VENUE_H
#define CQ_TRADER_VENUE_H

#include "cq/rest.h"

/* Send one order request (place, cancel, cancel-replace, amend, cancel-all,
 * test order) through the REST client's order door: signed, never resent;
 * CQ_REST_UNKNOWN means query origClientOrderId before acting. Arguments
 * and returns as cq_rest_order_send (include/cq/rest.h). */
int cq_trader_venue_send(struct cq_rest_client *rest, const char *method, const char *path,
                         const struct cq_rest_params *params, unsigned weight,
                         struct cq_rest_response *out) CQ_WUR;

#endif /* CQ_TRADER_VENUE_H */
