/*
 * signal.h — a trading signal as ARES hands it to the trader (through a
 * struct cq_spsc of struct cq_signal that never drops: when it is full ARES
 * holds the signal and reports backpressure). A plain fixed-size value.
 */
#ifndef CQ_SIGNAL_H
#define CQ_SIGNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "cq/decimal.h"
#include "cq/market.h"
#include "cq/strategy.h"

#define CQ_SIGNAL_ID_LEN 32 /* hex characters */

struct cq_signal {
    /* Deterministic: the first 16 bytes of SHA-256 over
     * "<strategy>|<symbol>|<candle_open_ms>|<side>", in hex. The same candle
     * and decision always give the same id, across restarts and replays, so
     * the trader can refuse a duplicate. */
    char id[CQ_SIGNAL_ID_LEN + 1];
    char strategy[24];
    char symbol[CQ_SYMBOL_LEN];
    int symbol_idx;
    enum cq_side side;
    double strength; /* 0..1 */
    char reason[96];
    cq_dec reference_price; /* the candle's exact close */
    int64_t candle_open_ms;
    int64_t created_at_us; /* wall clock */
    bool test;             /* TEST_ALLOW_DEFAULT_SIGNAL's periodic test signal */
    /* Monotonic µs (cq_time_mono_us) when the feeder read the WebSocket frame
     * that closed the candle; 0 when unknown (backfill, warm-up, the test
     * signal's timer). The trader's tick-to-order latency starts here. */
    int64_t frame_mono_us;
    /* Stage stamps on the way to the trader, cq_time_mono_us() like
     * frame_mono_us, set only when frame_mono_us is: the feeder's push of
     * the closed candle, ARES's wake-up that took it, the strategy's
     * decision to signal, and the push to the trader's ring (after the
     * signal.emitted journal append). The trader logs them in order_sent
     * (docs/TRADER.md "Tick-to-order stages"). */
    int64_t candle_pushed_mono_us;
    int64_t ares_woke_mono_us;
    int64_t decided_mono_us;
    int64_t pushed_mono_us;
};

/* Fill s->id from the other fields. */
void cq_signal_make_id(struct cq_signal *s);

#endif /* CQ_SIGNAL_H */
