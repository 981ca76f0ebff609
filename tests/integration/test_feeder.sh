#!/usr/bin/env bash
# test_feeder.sh — the feeder against a live coinquant-simex on loopback, as
# the feeder issue's proof asks: a disconnect (readiness 503 with
# ws_disconnected, reconnect within the backoff bound, the gap backfilled,
# ARES gets every closed candle exactly once and in order), a stall (detected
# within the stall timeout), and a 429 storm (the REST client waits as told
# and is never banned; the backfill waits for it and still fills the gap).
#
# The simulator runs as its own process at 600x (a 1m candle every 100 ms)
# and coinquantd connects to it through CQ_EXCHANGE_REST_URL/WS_URL, so the
# test can inject faults over the simulator's /_sim/ control path.
#
# usage: test_feeder.sh COINQUANTD SIMEX
# Output: TAP.
set -uo pipefail

BIN=$1
SIMEX=$2
WORK=$(mktemp -d /tmp/cq-feeder-XXXXXX)
PID=""
SIM_PID=""
n=0
failures=0
TOKEN="feeder-test-token-0123456789"

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

LOG="$WORK/var/logs/coinquantd.log"

has_log() {
  local out
  out=$(jq -c "$@" "$LOG" 2>/dev/null)
  [ -n "$out" ]
}

health() {
  curl -s -m 5 "http://$ADDR/health"
}

# wait_until SECONDS JQ_FILTER: poll /health until the filter is true.
wait_until() {
  local secs=$1 filter=$2
  local end=$(($(date +%s%3N) + secs * 1000))
  while [ "$(date +%s%3N)" -lt "$end" ]; do
    if health | jq -e "$filter" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

sim_post() {
  curl -s -m 5 -X POST "$REST$1" >/dev/null
}

# A signed MARKET BUY of 0.001 BTC on the simulator, as another client.
market_buy() {
  local q="symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp=$(date +%s%3N)"
  local sig
  sig=$(printf '%s' "$q" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
  curl -s -m 5 -X POST -H "X-MBX-APIKEY: $KEY" "$REST/api/v3/order?$q&signature=$sig" >/dev/null
}

reports() {
  health | jq '.services.trader.details.user_events.execution_reports'
}

# ARES has every closed candle of each symbol exactly once and in order:
# no minute missing between the first and the last, nothing out of order.
ares_complete='[.services.ares.details.symbols[] |
  (.out_of_order == 0 and .missing_minutes == 0 and
   .candles_closed == ((.last_open_ms - .first_open_ms) / 60000 + 1))] | all'

echo "TAP version 13"

KEY=feeder-test-key-0123456789
SECRET=feeder-test-secret-0123456789
"$SIMEX" --seed 5 --speed 600 --symbols BTCUSDT,ETHUSDT --balances USDT=100000,BTC=1 \
  --api-key "$KEY" --api-secret "$SECRET" >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/simex.json" ] && break
  sleep 0.1
done
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 CQ_ADMIN_TOKEN="$TOKEN" \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  BINANCE_API_KEY="$KEY" BINANCE_API_SECRET="$SECRET" \
  CQ_SUPERVISOR_START_WAIT_MS=500 CQ_FEEDER_WARMUP_BARS=30 CQ_FEEDER_STALE_MS=1500 \
  CQ_FEEDER_WS_STALL_MS=1000 CQ_FEEDER_WS_BACKOFF_MAX_MS=1000 \
  "$BIN" 2>"$WORK/stderr.log" &
PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/var/admin.addr" ] && break
  sleep 0.1
done
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if wait_until 15 '.services.feeder.ready == true'; then
  ok "feeder ready: warm-up done, stream connected, every symbol fresh"
else
  not_ok "feeder ready: warm-up done, stream connected, every symbol fresh" "$(health | jq -c .services.feeder)"
  echo "1..$n"
  exit 1
fi
if wait_until 3 '.services.ares.details.symbols.BTCUSDT.from_warmup == 30'; then
  ok "ARES got 30 warm-up candles per symbol before the stream"
else
  not_ok "ARES got 30 warm-up candles per symbol before the stream" "$(health | jq -c .services.ares.details)"
fi

# ---- user data stream ------------------------------------------------------------
if wait_until 5 '.services.feeder.details.user_stream.connected == true'; then
  ok "user data stream connected on a listen key"
else
  not_ok "user data stream connected on a listen key" "$(health | jq -c .services.feeder.details.user_stream)"
fi
before=$(reports)
market_buy
if wait_until 5 ".services.trader.details.user_events.execution_reports >= $before + 2"; then
  ok "an order's executionReports (NEW, TRADE) reach the trader through the feeder"
else
  not_ok "an order's executionReports reach the trader" "before=$before now=$(reports)"
fi
# Close the listen key on the exchange's side: the feeder must notice and
# make a new one.
key=$(curl -s -m 5 -X POST -H "X-MBX-APIKEY: $KEY" "$REST/api/v3/userDataStream" | jq -r .listenKey)
curl -s -m 5 -X DELETE -H "X-MBX-APIKEY: $KEY" "$REST/api/v3/userDataStream?listenKey=$key" >/dev/null
sleep 0.5
if wait_until 8 '.services.feeder.details.user_stream.connected == true' \
   && [ "$(jq -c 'select(.event=="listen_key_ready" and .new==true)' "$LOG" | wc -l)" -ge 2 ]; then
  ok "a closed listen key is replaced and the user stream reconnects"
else
  not_ok "a closed listen key is replaced and the user stream reconnects" "$(grep listen_key "$LOG" | tail -5)"
fi
before=$(reports)
market_buy
if wait_until 5 ".services.trader.details.user_events.execution_reports >= $before + 2"; then
  ok "after the new key, executionReports flow again"
else
  not_ok "after the new key, executionReports flow again" "before=$before now=$(reports)"
fi

# ---- disconnect ---------------------------------------------------------------
sleep 1
t0=$(date +%s%3N)
sim_post /_sim/ws/drop
if wait_until 5 '.services.feeder.ready == true and .services.feeder.details.market_stream.connects_total >= 2'; then
  took=$(( $(date +%s%3N) - t0 ))
  ok "after a drop the market stream reconnects within the backoff bound (${took} ms, bound 1000 ms + connect)"
else
  not_ok "after a drop the market stream reconnects" "$(health | jq -c .services.feeder)"
fi
if has_log 'select(.event=="readiness_changed" and .service=="feeder" and .to==false and .reason=="ws_disconnected")'; then
  ok "readiness went false with reason ws_disconnected (logged)"
else
  not_ok "readiness went false with reason ws_disconnected (logged)" "$(grep readiness_changed "$LOG" | tail -3)"
fi
# Stay disconnected long enough to miss candles: stall the data, drop, and
# let the next closed kline reveal the gap.
sim_post "/_sim/ws/stall?on=1"
sleep 0.6
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop
sleep 2
if health | jq -e '[.services.feeder.details.symbols[].candles_backfilled] | add > 0' >/dev/null; then
  ok "the missed candles were backfilled over REST"
else
  not_ok "the missed candles were backfilled over REST" "$(health | jq -c '.services.feeder.details.symbols')"
fi
if health | jq -e "$ares_complete" >/dev/null; then
  ok "ARES received every closed candle exactly once, in order"
else
  not_ok "ARES received every closed candle exactly once, in order" "$(health | jq -c .services.ares.details)"
fi

# ---- stall --------------------------------------------------------------------
stalls_before=$(health | jq '.services.feeder.details.market_stream.stalls_total')
t0=$(date +%s%3N)
sim_post "/_sim/ws/stall?on=1"
if wait_until 4 ".services.feeder.details.market_stream.stalls_total > $stalls_before"; then
  took=$(( $(date +%s%3N) - t0 ))
  if [ "$took" -le 2000 ]; then
    ok "a silent stall is detected within the stall timeout (${took} ms, timeout 1000 ms)"
  else
    not_ok "a silent stall is detected within the stall timeout" "took ${took} ms"
  fi
else
  not_ok "a silent stall is detected" "$(health | jq -c .services.feeder.details.market_stream)"
fi
if wait_until 4 '.services.feeder.ready == false'; then
  ok "while stalled the feeder is not ready ($(health | jq -r .services.feeder.reason))"
else
  not_ok "while stalled the feeder is not ready" "$(health | jq -c .services.feeder)"
fi
sim_post "/_sim/ws/stall?on=0"
if wait_until 6 '.services.feeder.ready == true'; then
  ok "after the stall ends the feeder is ready again"
else
  not_ok "after the stall ends the feeder is ready again" "$(health | jq -c .services.feeder)"
fi
sleep 1.5
if health | jq -e "$ares_complete" >/dev/null; then
  ok "after the stall ARES still has every closed candle exactly once, in order"
else
  not_ok "after the stall ARES still has every closed candle exactly once, in order" "$(health | jq -c .services.ares.details)"
fi

# ---- 429 storm -----------------------------------------------------------------
# A storm while a gap needs backfilling: the REST client is told to wait
# (429 Retry-After), the feeder holds the candles after the gap, never gets
# banned, and fills the gap once the storm is over.
sim_post "/_sim/ratelimit/storm?seconds=2"
sim_post "/_sim/ws/stall?on=1"
sleep 0.5
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop
sleep 1
if wait_until 3 '.services.feeder.details.rest.rate_limited_total > 0'; then
  ok "the storm's 429 reached the feeder's REST client (rate_limited_total > 0)"
else
  not_ok "the storm's 429 reached the feeder's REST client" "$(health | jq -c .services.feeder.details.rest)"
fi
sleep 3
state=$(curl -s -m 5 "$REST/_sim/state")
if jq -e '.counters.rest_418 == 0' <<<"$state" >/dev/null \
   && health | jq -e '.services.feeder.details.rest.banned_total == 0' >/dev/null; then
  ok "the feeder waited as told: never banned (418 count 0)"
else
  not_ok "the feeder waited as told: never banned" "$(jq -c .counters <<<"$state")"
fi
requests_429=$(jq '.counters.rest_429' <<<"$state")
if [ "$requests_429" -le 3 ]; then
  ok "no request was sent into a known Retry-After window (429s seen by the exchange: $requests_429)"
else
  not_ok "no request was sent into a known Retry-After window" "429s seen by the exchange: $requests_429"
fi
if wait_until 5 "($ares_complete) and ([.services.feeder.details.symbols[].held_for_backfill] | add == 0)"; then
  ok "after the storm the gap is filled: ARES has every closed candle exactly once, in order"
else
  not_ok "after the storm the gap is filled" "$(health | jq -c '.services.feeder.details.symbols, .services.ares.details')"
fi

# ---- malformed input is counted, never fatal ---------------------------------------
if health | jq -e '.services.feeder.details.malformed_total == 0' >/dev/null; then
  ok "no malformed messages from the simulator (malformed_total 0)"
else
  not_ok "no malformed messages from the simulator" "$(health | jq -c .services.feeder.details.malformed_total)"
fi

kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
if [ $rc -eq 0 ]; then
  ok "coinquantd stops cleanly with the feeder streaming"
else
  not_ok "coinquantd stops cleanly with the feeder streaming" "rc=$rc"
fi
kill -TERM "$SIM_PID"
wait "$SIM_PID"
SIM_PID=""

echo "1..$n"
[ "$failures" -eq 0 ]
