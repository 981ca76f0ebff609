/*
 * feeder-int.h — the feeder's internals that benchmarks and tests drive
 * directly. Not for other modules: they talk to the feeder through
 * cq/feeder.h and the rings.
 */
#ifndef CQ_FEEDER_INT_H
#define CQ_FEEDER_INT_H

#include <stdint.h>

#include "cq/codec.h"
#include "cq/feeder.h"

/* Apply one decoded market-stream message to the per-symbol state and the
 * ring to ARES, exactly as the stream callback does after decoding it.
 * Feeder thread only (or, with the feeder not started, the one caller). */
void cq_feeder__apply(struct cq_feeder *f, const struct cq_msg *msg, int64_t recv_mono_ms);

#endif /* CQ_FEEDER_INT_H */
