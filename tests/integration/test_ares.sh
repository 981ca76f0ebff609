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
# Every check polls for its condition (with generous deadlines) instead of
# sleeping and looking once, and a "nothing more happens" check starts only
# once its precondition has been observed.
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

LOGS="$WORK/var/logs"

# log_count JQ_CONDITION: how many log lines (rotated files included) match.
# Lines are read raw and parsed one by one, so a line the log writer is still
# appending is skipped, not fatal.
log_count() {
  cat "$LOGS"/coinquantd.log* 2>/dev/null | jq -R -c "fromjson? | select($1)" | wc -l
}

has_log() {
  [ "$(log_count "$1")" -gt 0 ]
}

health() {
  curl -s -m 5 "http://$ADDR/health"
}

health_is() {
  health | jq -e "$1" >/dev/null 2>&1
}

# poll SECONDS CMD...: run CMD every 100 ms until it succeeds (at least once,
# and once more at the deadline). The deadlines are generous on purpose: CI
# shares two cores between two sanitizer builds; they bound a hang, they do
# not measure speed.
poll() {
  local secs=$1
  shift
  local end=$(($(date +%s%3N) + secs * 1000))
  while :; do
    if "$@"; then
      return 0
    fi
    [ "$(date +%s%3N)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# wait_until SECONDS JQ_FILTER: poll /health until the filter is true.
wait_until() {
  poll "$1" health_is "$2"
}

received() {
  health | jq '.services.trader.details.signals.received'
}

emitted() {
  health | jq '.services.ares.details.signals_emitted_total'
}

blocked_stale() {
  health | jq '.services.ares.details.signals_blocked_total.feeder_stale'
}

metrics_count_blocked() {
  curl -s -m 5 "http://$ADDR/metrics" | grep -Eq '^coinquant_signals_blocked_total\{reason="feeder_stale"\} [1-9]'
}

echo "TAP version 13"

"$SIMEX" --seed 11 --speed 600 --symbols BTCUSDT,ETHUSDT >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
poll 30 test -s "$WORK/simex.json"
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

# An explicit, empty config file: without --config coinquantd would read
# ./config.env from whatever directory the test runs in.
: >"$WORK/config.env"
env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  CQ_SUPERVISOR_START_WAIT_MS=3000 CQ_FEEDER_WARMUP_BARS=40 CQ_FEEDER_STALE_MS=1000 \
  CQ_FEEDER_WS_STALL_MS=1000 CQ_FEEDER_WS_BACKOFF_MAX_MS=1000 \
  CQ_STRATEGY=ema_cross CQ_STRATEGY_PARAMS=fast=3,slow=8 \
  TEST_ALLOW_DEFAULT_SIGNAL=on CQ_ARES_TEST_SIGNAL_MS=1000 \
  "$BIN" --config "$WORK/config.env" 2>"$WORK/stderr.log" &
PID=$!
poll 30 test -s "$WORK/var/admin.addr"
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if wait_until 30 '.services.ares.ready == true'; then
  ok "ARES ready: the feeder is ready and every symbol's strategy is warm"
else
  not_ok "ARES ready" "$(health | jq -c .services.ares)"
  echo "1..$n"
  exit 1
fi
# from_warmup only counts history candles and stops at 40: waiting for it
# cannot turn a wrong count into a right one.
if wait_until 10 '[.services.ares.details.symbols[].from_warmup] | all(. == 40)'; then
  ok "the strategy warmed on the feeder's 40 history candles per symbol"
else
  not_ok "the strategy warmed on the history candles" "$(health | jq -c .services.ares.details.symbols)"
fi

if wait_until 15 '.services.trader.details.signals.received >= 3 and .services.ares.details.signals_emitted_total >= 3'; then
  ok "signals flow from ARES to the trader ($(received) received)"
else
  not_ok "signals flow from ARES to the trader" "$(health | jq -c '.services.ares.details, .services.trader.details')"
fi
if wait_until 20 '([.services.ares.details.symbols[].signals_emitted] | add > 0) and .services.trader.details.signals.received > .services.trader.details.signals.test'; then
  ok "strategy signals (EMA crosses), not only test signals, reach the trader"
else
  not_ok "strategy signals reach the trader" "$(health | jq -c '.services.trader.details.signals')"
fi
if poll 10 has_log '.event=="signal_emitted" and .signal_id != null'; then
  ok "signal_emitted logged with the signal id"
else
  not_ok "signal_emitted logged with the signal id"
fi

# ---- stop the market stream ------------------------------------------------------
backfill_before=$(health | jq '[.services.ares.details.symbols[].from_backfill] | add')
stale_before=$(blocked_stale)
curl -s -m 5 -X POST "$REST/_sim/ws/stall?on=1" >/dev/null
# The gate is certainly closed once a signal has been blocked as feeder_stale
# and every symbol's data, as ARES sees it, is older than the 1000 ms stale
# limit: nothing arrives while the stream is stalled, so both stay true until
# it resumes, and no candle (so no strategy signal) and no test signal can
# pass from then on.
gate_closed=".services.ares.details.signals_blocked_total.feeder_stale > $stale_before
  and ([.services.ares.details.symbols[].data_age_ms] | all(. != null and . > 1000))"
if wait_until 10 "$gate_closed"; then
  ok "with the market stream stopped, signals are blocked with reason feeder_stale"
else
  not_ok "with the market stream stopped, signals are blocked with reason feeder_stale" "$(health | jq -c '.services.ares.details.signals_blocked_total, [.services.ares.details.symbols[].data_age_ms]')"
fi
# What ARES emitted up to now reaches the trader (its ring is drained every
# 250 ms); that is the frozen count. Then let at least two more test signals
# meet the closed gate (about 2 s, and several trader ticks) and look again.
emitted_frozen=$(emitted)
poll 10 health_is ".services.trader.details.signals.received >= $emitted_frozen"
frozen=$(received)
stale_frozen=$(blocked_stale)
if wait_until 10 ".services.ares.details.signals_blocked_total.feeder_stale >= $stale_frozen + 2"; then
  after=$(received)
  emitted_after=$(emitted)
  if [ "$after" = "$frozen" ] && [ "$emitted_after" = "$emitted_frozen" ]; then
    ok "while the stream is stopped, no signal reaches the trader ($frozen before, $after after, while 2+ more signals were blocked)"
  else
    not_ok "while the stream is stopped, no signal reaches the trader" \
      "received: $frozen before, $after after; emitted by ARES: $emitted_frozen before, $emitted_after after"
  fi
else
  after=$(received)
  not_ok "while the stream is stopped, no signal reaches the trader" "no further test signal was blocked: $(health | jq -c '.services.ares.details.signals_blocked_total')"
fi
if wait_until 10 '.services.ares.ready == false'; then
  ok "ARES is not ready while the feeder is not ($(health | jq -r .services.ares.reason))"
else
  not_ok "ARES is not ready while the feeder is not" "$(health | jq -c .services.ares)"
fi
if poll 10 metrics_count_blocked; then
  ok "/metrics counts blocked signals per reason"
else
  not_ok "/metrics counts blocked signals per reason" "$(curl -s -m 5 "http://$ADDR/metrics" | grep signals_)"
fi
if poll 10 has_log '.event=="signal_blocked" and .reason=="feeder_stale"'; then
  ok "signal_blocked logged with the reason"
else
  not_ok "signal_blocked logged with the reason"
fi

# ---- resume ---------------------------------------------------------------------------
curl -s -m 5 -X POST "$REST/_sim/ws/stall?on=0" >/dev/null
if wait_until 15 ".services.ares.ready == true and .services.trader.details.signals.received > $after"; then
  ok "after the stream resumes, signals flow again ($(received) received)"
else
  not_ok "after the stream resumes, signals flow again" "$(health | jq -c '.services.ares, .services.trader.details')"
fi
# The stall left a gap of 20+ candles; once its backfill has reached ARES,
# ARES must have seen every candle once and in order (both counters are
# cumulative: waiting cannot hide a miss).
if wait_until 15 "([.services.ares.details.symbols[].from_backfill] | add) > $backfill_before
     and ([.services.ares.details.symbols[] | .out_of_order == 0 and .missing_minutes == 0] | all)"; then
  ok "ARES saw every closed candle once and in order through the stall"
else
  not_ok "ARES saw every closed candle once and in order through the stall" "from_backfill before: $backfill_before" "$(health | jq -c .services.ares.details.symbols)"
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
