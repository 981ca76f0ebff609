#!/usr/bin/env bash
# test_ares.sh — ARES against a live coinquant-simex, as the ARES issue's
# proof asks: with the market stream flowing, signals reach the trader; stop
# the market stream and signals are blocked with feeder_stale and none reach
# the trader; resume and they flow again. Counts per reason are in /health
# and /metrics.
#
# The simulator runs at 600x (a 1m candle every 100 ms) so EMA crosses come
# quickly, and TEST_ALLOW_DEFAULT_SIGNAL=on adds a test signal every second,
# which keeps asking the HealthGate even while no candle arrives.
#
# usage: test_ares.sh COINQUANTD SIMEX
# Output: TAP.
set -uo pipefail

BIN=$1
SIMEX=$2
WORK=$(mktemp -d /tmp/cq-ares-XXXXXX)
PID=""
SIM_PID=""
n=0
failures=0

cleanup() {
  for p in "$PID" "$SIM_PID"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill -KILL "$p" 2>/dev/null
    fi
  done
  if [ "$failures" -eq 0 ]; then
    rm -rf "$WORK"
  else
    echo "# work dir kept for inspection: $WORK"
  fi
}
trap cleanup EXIT

ok() {
  n=$((n + 1))
  echo "ok $n - $1"
}

not_ok() {
  n=$((n + 1))
  failures=$((failures + 1))
  echo "not ok $n - $1"
  shift
  printf '%s\n' "$@" | sed 's/^/#   /'
}

health() {
  curl -s -m 5 "http://$ADDR/health"
}

wait_until() {
  local secs=$1 filter=$2
  local end=$(($(date +%s%3N) + secs * 1000))
  while [ "$(date +%s%3N)" -lt "$end" ]; do
    if health | jq -e "$filter" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

received() {
  health | jq '.services.trader.details.signals.received'
}

echo "TAP version 13"

"$SIMEX" --seed 11 --speed 600 --symbols BTCUSDT,ETHUSDT >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/simex.json" ] && break
  sleep 0.1
done
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  CQ_SUPERVISOR_START_WAIT_MS=3000 CQ_FEEDER_WARMUP_BARS=40 CQ_FEEDER_STALE_MS=1000 \
  CQ_FEEDER_WS_STALL_MS=1000 CQ_FEEDER_WS_BACKOFF_MAX_MS=1000 \
  CQ_STRATEGY=ema_cross CQ_STRATEGY_PARAMS=fast=3,slow=8 \
  TEST_ALLOW_DEFAULT_SIGNAL=on CQ_ARES_TEST_SIGNAL_MS=1000 \
  "$BIN" 2>"$WORK/stderr.log" &
PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/var/admin.addr" ] && break
  sleep 0.1
done
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if wait_until 15 '.services.ares.ready == true'; then
  ok "ARES ready: the feeder is ready and every symbol's strategy is warm"
else
  not_ok "ARES ready" "$(health | jq -c .services.ares)"
  echo "1..$n"
  exit 1
fi
if health | jq -e '[.services.ares.details.symbols[].from_warmup] | all(. == 40)' >/dev/null; then
  ok "the strategy warmed on the feeder's 40 history candles per symbol"
else
  not_ok "the strategy warmed on the history candles" "$(health | jq -c .services.ares.details.symbols)"
fi

if wait_until 10 '.services.trader.details.signals.received >= 3 and .services.ares.details.signals_emitted_total >= 3'; then
  ok "signals flow from ARES to the trader ($(received) received)"
else
  not_ok "signals flow from ARES to the trader" "$(health | jq -c '.services.ares.details, .services.trader.details')"
fi
if wait_until 15 '([.services.ares.details.symbols[].signals_emitted] | add > 0) and .services.trader.details.signals.received > .services.trader.details.signals.test'; then
  ok "strategy signals (EMA crosses), not only test signals, reach the trader"
else
  not_ok "strategy signals reach the trader" "$(health | jq -c '.services.trader.details.signals')"
fi
if grep -q '"event":"signal_emitted"' "$WORK/var/logs/coinquantd.log"; then
  ok "signal_emitted logged with the signal id"
else
  not_ok "signal_emitted logged with the signal id"
fi

# ---- stop the market stream ------------------------------------------------------
stale_before=$(health | jq '.services.ares.details.signals_blocked_total.feeder_stale')
curl -s -m 5 -X POST "$REST/_sim/ws/stall?on=1" >/dev/null
# Give the in-flight signals a moment, then nothing more may arrive.
sleep 1.5
frozen=$(received)
if wait_until 6 ".services.ares.details.signals_blocked_total.feeder_stale > $stale_before"; then
  ok "with the market stream stopped, signals are blocked with reason feeder_stale"
else
  not_ok "with the market stream stopped, signals are blocked with reason feeder_stale" "$(health | jq -c '.services.ares.details.signals_blocked_total')"
fi
sleep 2
after=$(received)
if [ "$after" = "$frozen" ]; then
  ok "while the stream is stopped, no signal reaches the trader ($frozen before, $after after)"
else
  not_ok "while the stream is stopped, no signal reaches the trader" "$frozen before, $after after"
fi
if health | jq -e '.services.ares.ready == false' >/dev/null; then
  ok "ARES is not ready while the feeder is not ($(health | jq -r .services.ares.reason))"
else
  not_ok "ARES is not ready while the feeder is not" "$(health | jq -c .services.ares)"
fi
metrics=$(curl -s -m 5 "http://$ADDR/metrics")
if grep -Eq '^coinquant_signals_blocked_total\{reason="feeder_stale"\} [1-9]' <<<"$metrics"; then
  ok "/metrics counts blocked signals per reason"
else
  not_ok "/metrics counts blocked signals per reason" "$(grep signals_ <<<"$metrics")"
fi
if grep -q '"event":"signal_blocked".*"reason":"feeder_stale"' "$WORK/var/logs/coinquantd.log"; then
  ok "signal_blocked logged with the reason"
else
  not_ok "signal_blocked logged with the reason"
fi

# ---- resume ---------------------------------------------------------------------------
curl -s -m 5 -X POST "$REST/_sim/ws/stall?on=0" >/dev/null
if wait_until 10 ".services.ares.ready == true and .services.trader.details.signals.received > $after"; then
  ok "after the stream resumes, signals flow again ($(received) received)"
else
  not_ok "after the stream resumes, signals flow again" "$(health | jq -c '.services.ares, .services.trader.details')"
fi
if health | jq -e '[.services.ares.details.symbols[] | .out_of_order == 0 and .missing_minutes == 0] | all' >/dev/null; then
  ok "ARES saw every closed candle once and in order through the stall"
else
  not_ok "ARES saw every closed candle once and in order through the stall" "$(health | jq -c .services.ares.details.symbols)"
fi

kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
if [ $rc -eq 0 ]; then
  ok "coinquantd stops cleanly"
else
  not_ok "coinquantd stops cleanly" "rc=$rc"
fi
kill -TERM "$SIM_PID"
wait "$SIM_PID"
SIM_PID=""

echo "1..$n"
[ "$failures" -eq 0 ]
