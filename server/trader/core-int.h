/*
 * core-int.h — private to the trader's decision core (core.c) and its unit
 * test: the fixed limits the core applies on top of the public ones in
 * cq/trader.h. Threads: as the core (one owner at a time).
 */
#ifndef CQ_TRADER_CORE_INT_H
#define CQ_TRADER_CORE_INT_H

/* A UTC day, ms. */
#define CQ_TRADER__DAY_MS 86400000LL
/* The checkpoint is written at most this often (event clock), ms. */
#define CQ_TRADER__CHECKPOINT_EVERY_MS 30000
/* Orders counted for max_orders_per_minute: the window, ms. */
#define CQ_TRADER__ORDER_WINDOW_MS 60000
/* A refused stop-loss / take-profit is tried again at most this often, ms
 * (the next mark price after it): no risk.decision record per tick. */
#define CQ_TRADER__EXIT_RETRY_MS 1000
/* ... and each further refusal in a row doubles the wait up to this, ms: a
 * refusal that lasts (a quarantine until the operator clears it, the kill
 * switch, dust the filters never accept) under marks every
 * CQ_TRADER_MARK_MS journals a few records an hour, not one per mark. A
 * fill of the symbol, an exit sent, an unquarantine or UNKILL starts over. */
#define CQ_TRADER__EXIT_RETRY_MAX_MS 600000
/* Trade ids remembered per order (commission applied once per trade id). */
#define CQ_TRADER__TRADES_PER_ORDER 16
/* A RATE_LIMITED / BANNED answer without a Retry-After waits this long, ms. */
#define CQ_TRADER__RETRY_AFTER_DEFAULT_MS 1000
/* Actions kept free in an event's list for the checkpoint and the end of
 * the event; the timers and the order pump stop before it. */
#define CQ_TRADER__ACTIONS_RESERVE 6

#endif /* CQ_TRADER_CORE_INT_H */
