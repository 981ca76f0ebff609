/*
 * feeder-int.h — the feeder's internals that benchmarks and tests drive
 * directly. Not for other modules: they talk to the feeder through
 * cq/feeder.h and the rings.
 */
#ifndef CQ_FEEDER_INT_H
#define CQ_FEEDER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cq/codec.h"
#include "cq/feeder.h"

/* Apply one decoded market-stream message to the per-symbol state and the
 * ring to ARES, exactly as the stream callback does after decoding it.
 * Feeder thread only (or, with the feeder not started, the one caller). */
void cq_feeder__apply(struct cq_feeder *f, const struct cq_msg *msg, int64_t recv_mono_ms);

/* The combined market stream URL (every symbol's kline_1m, bookTicker and
 * trade) into url; -CQ_ETOOBIG (url unusable) rather than a cut URL. */
int cq_feeder__stream_url(const struct cq_feeder *f, char *url, size_t url_len);

/* What the service step does after applying messages: pass held candles and
 * the coalesced books on to ARES. */
void cq_feeder__flush(struct cq_feeder *f);
/* Publish the feeder's health record now (as every HEALTH_EVERY_MS). */
void cq_feeder__publish_health(struct cq_feeder *f, int64_t now);
/* How long the loop may sleep from now (ms, 0 = work is pending): the
 * earliest of the health cadence, each symbol's staleness deadline not yet
 * published, the start and backfill retries, a hand-off to a full ring, the
 * user stream's timers; at most SERVICE_WAIT_MAX_MS and a quarter of
 * CQ_WATCHDOG_STALL_MS (the heartbeat). The market and user WS
 * clients' own timers (connect, stall, silence, backoff) are added by
 * cq_ws_loop_service. Feeder thread. */
int64_t cq_feeder__wait_ms(const struct cq_feeder *f, int64_t now);
/* For tests that drive cq_feeder__apply without a venue: act as if start-up
 * (exchangeInfo, warm-up) were done and the market stream connected. */
void cq_feeder__assume_streaming(struct cq_feeder *f);

#endif /* CQ_FEEDER_INT_H */
