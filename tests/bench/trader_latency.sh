#!/usr/bin/env bash
# trader_latency.sh — tick-to-order inside coinquantd (issue 11, run by
# scripts/bench as `trader_latency`): the daemon trades in paper mode against
# its embedded simulator until ORDERS orders were sent, then the latencies
# the trader logged with each `order_sent` are summarised:
#   tick_to_order_us  from the WebSocket frame that closed the candle (the
#                     feeder's monotonic stamp, carried in struct cq_signal)
#                     to just before the order request is written, minus
#                     the wait for the intent to be durable;
#   durable_wait_us   that wait (journal group commit + fdatasync), reported
#                     beside it.
# tick_to_order_us ends when the request is about to be written (the REST
# client's stamp: curl_easy_perform's start + CURLINFO_PRETRANSFER_TIME_T).
# Percentiles are nearest-rank over every order (p50, p99, p99.9); target
# p99 tick_to_order < 100 us. With a coinquantd that logs `stages_us` in
# order_sent, "stages_us" gives each hop's own time (the difference between
# consecutive stamps, µs), p50/p90/p99 over the orders: frame -> candle
# pushed to ARES's ring -> ARES woke -> signal decided -> signal pushed to
# the trader's ring (after the signal.emitted journal append) -> trader woke
# -> core done -> intent appended -> durable (excluded from tick_to_order)
# -> handed to the REST client -> handed to curl -> request written. The /metrics histogram
# coinquant_trader_tick_to_order_seconds must have counted the same orders.
#
# Signals: ema_cross fast=3,slow=8 on two symbols with the simulator at
# CQ_SIM_SPEED (default 600: a 1m candle every 100 ms), the risk gate's
# order rate at its maximum (1000/min). Test signals are off: they are not
# tied to a candle's frame.
#
# usage: trader_latency.sh COINQUANTD [ORDERS]   (default 1000)
# Output: one JSON line, {"bench":"trader_tick_to_order",…}; with a
# "skipped" field (exit 0) when this coinquantd has no trader that logs
# tick_to_order_us yet.
set -uo pipefail
BIN=$1
ORDERS=${2:-1000}
SPEED=${CQ_BENCH_SIM_SPEED:-600}
WORK=$(mktemp -d /tmp/cq-bench-trader-XXXXXX)
DATA="$WORK/var"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
    { wait "$PID"; } 2>/dev/null
  fi
  [ -n "${CQ_BENCH_KEEP:-}" ] && echo "# kept: $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

skip() {
  jq -n -c --arg why "$1" '{bench: "trader_tick_to_order", skipped: $why}'
  exit 0
}

poll() {
  local secs=$1
  shift
  local end=$(($(date +%s) + secs))
  while :; do
    "$@" && return 0
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.5
  done
}

sent_lines() {
  cat "$DATA"/logs/coinquantd.log* 2>/dev/null |
    jq -R -c 'fromjson? | select(.event == "order_sent" and (.tick_to_order_us != null))'
}
enough() {
  [ "$(sent_lines | wc -l)" -ge "$ORDERS" ]
}

: >"$WORK/config.env"
env -i PATH="$PATH" HOME="$WORK" CQ_DATA_DIR="$DATA" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_MODE=paper CQ_SYMBOLS=BTCUSDT,ETHUSDT CQ_SIM_SPEED="$SPEED" \
  CQ_SIM_BALANCES=USDT=100000000,BTC=0,ETH=0 \
  CQ_FEEDER_WARMUP_BARS=40 CQ_STRATEGY=ema_cross CQ_STRATEGY_PARAMS=fast=3,slow=8 \
  CQ_ORDER_QUOTE=20 CQ_RISK_MAX_ORDERS_PER_MINUTE=1000 CQ_RISK_MAX_OPEN_POSITIONS=10 \
  CQ_RISK_MAX_POSITION_NOTIONAL=10000000 CQ_RISK_MAX_TOTAL_EXPOSURE=100000000 \
  CQ_RISK_MAX_DAILY_LOSS=100000000 CQ_LOG_LEVEL=info \
  "$BIN" --config "$WORK/config.env" >"$WORK/stdout.log" 2>"$WORK/stderr.log" &
PID=$!
poll 60 test -s "$DATA/admin.addr" || skip "coinquantd did not start: $(tail -2 "$WORK/stderr.log" | tr '\n' ' ')"
ADDR=$(tr -d '\n' <"$DATA/admin.addr")
TOKEN=$(tr -d '\n' <"$DATA/admin.token" 2>/dev/null)
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://$ADDR/api/v1/positions")
[ "$code" = 404 ] && skip "no trader of issue 11 in this coinquantd (GET /api/v1/positions answered 404)"

start=$(date +%s)
# At least 1 order/s, whatever the machine: a bound on a hang, not a speed.
if ! poll $((ORDERS + 120)) enough; then
  got=$(sent_lines | wc -l)
  [ "$got" -eq 0 ] && skip "no order_sent log line with tick_to_order_us after $((ORDERS + 120)) s (needs h-shell's measurement)"
  echo "# only $got of $ORDERS orders in $(($(date +%s) - start)) s; summarising those" >&2
fi
secs=$(($(date +%s) - start))
metrics=$(curl -s -m 10 "http://$ADDR/metrics")
kill -TERM "$PID" 2>/dev/null
{ wait "$PID"; } 2>/dev/null
PID=""

# pct FILE P: nearest-rank percentile of the sorted integers in FILE.
pct() {
  awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "null"; exit }
    r = int(p * NR / 100); if (r < p * NR / 100) r++; if (r < 1) r = 1; print v[r] }' "$1"
}
sent_lines | jq -r '.tick_to_order_us' | sort -n >"$WORK/t2o"
sent_lines | jq -r '.durable_wait_us // empty' | sort -n >"$WORK/dw"
# Per-stage times: consecutive differences of the stamps, per order.
STAGES="candle_pushed ares_woke signal_decided signal_pushed trader_woke core_done intent_appended durable handed_to_rest handed_to_curl request_written"
stages='{}'
if [ "$(sent_lines | jq -c 'select(.stages_us != null)' | wc -l)" -gt 0 ]; then
  prev=""
  for st in $STAGES; do
    if [ -z "$prev" ]; then
      sent_lines | jq -r --arg s "$st" 'select(.stages_us != null) | .stages_us[$s]' | sort -n >"$WORK/st"
    else
      sent_lines | jq -r --arg s "$st" --arg p "$prev" \
        'select(.stages_us != null and .stages_us[$s] >= 0 and .stages_us[$p] >= 0) | .stages_us[$s] - .stages_us[$p]' |
        sort -n >"$WORK/st"
    fi
    stages=$(jq -c --arg k "${prev:-frame}>$st" --argjson p50 "$(pct "$WORK/st" 50)" \
      --argjson p90 "$(pct "$WORK/st" 90)" --argjson p99 "$(pct "$WORK/st" 99)" \
      '. + {($k): {p50: $p50, p90: $p90, p99: $p99}}' <<<"$stages")
    prev=$st
  done
fi
hist_count=$(awk '$1 == "coinquant_trader_tick_to_order_seconds_count" { print $2 }' <<<"$metrics")
jq -n -c --argjson n "$(wc -l <"$WORK/t2o")" --argjson secs "$secs" \
  --argjson p50 "$(pct "$WORK/t2o" 50)" --argjson p99 "$(pct "$WORK/t2o" 99)" \
  --argjson p999 "$(pct "$WORK/t2o" 99.9)" --argjson max "$(pct "$WORK/t2o" 100)" \
  --argjson d50 "$(pct "$WORK/dw" 50)" --argjson d99 "$(pct "$WORK/dw" 99)" \
  --argjson d999 "$(pct "$WORK/dw" 99.9)" --argjson stages "$stages" --arg hist "${hist_count:-absent}" --arg speed "$SPEED" \
  '{bench: "trader_tick_to_order", orders: $n, seconds: $secs, sim_speed: $speed,
    tick_to_order_us: {p50: $p50, p99: $p99, p999: $p999, max: $max},
    durable_wait_us: {p50: $d50, p99: $d99, p999: $d999}, stages_us: $stages,
    metrics_histogram_count: $hist,
    target: "p99 tick_to_order < 100 us (durability wait excluded)",
    met: ($p99 != null and $p99 < 100)}'
