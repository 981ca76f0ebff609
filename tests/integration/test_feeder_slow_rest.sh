#!/usr/bin/env bash
# test_feeder_slow_rest.sh — a slow exchange REST API never holds up market
# data (issue 10, "No network call inside another library's callback").
#
# The simulator answers every /api request 20 s late (/_sim/rest/latency)
# while its market stream goes on; a stall and a drop of the WebSocket force
# a gap, so a backfill is pending on the REST worker for those 20 s (the
# drop closes the user stream too; it resubscribes over the WebSocket API,
# no REST call). Meanwhile the
# feeder must stay ready (never `stalled`: the watchdog stalls a loop at 5 s),
# keep every symbol fresh, keep passing market data to ARES, and show the
# pending work in its health details; the candles after the gap are held,
# and once the backfill lands ARES has every closed candle exactly once and
# in order. Last, SIGTERM with such a call out: the daemon stops without
# waiting for it (rest_worker_abandoned). Before the REST worker, the backfill ran inside the WebSocket
# receive callback: the loop blocked for the whole request and the feeder
# went `down` with reason `stalled`.
#
# Every check polls for its condition with generous deadlines; the only
# fixed durations are the simulator's injected latency (20 s) and the
# observation window (10 s, inside it), which bound no speed of ours.
#
# usage: test_feeder_slow_rest.sh COINQUANTD SIMEX
# Output: TAP.
set -uo pipefail

BIN=$1
SIMEX=$2
WORK=$(mktemp -d /tmp/cq-feeder-slow-XXXXXX)
PID=""
SIM_PID=""
n=0
failures=0
TOKEN="feeder-slow-token-0123456789"
LATENCY_MS=20000
STALE_MS=1500

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
log_count() {
  cat "$LOGS"/coinquantd.log* 2>/dev/null | jq -R -c "fromjson? | select($1)" | wc -l
}
health() { curl -s -m 5 "http://$ADDR/health"; }
health_is() { health | jq -e "$1" >/dev/null 2>&1; }
poll() {
  local secs=$1
  shift
  local end=$(($(date +%s%3N) + secs * 1000))
  while :; do
    if "$@"; then
      return 0
    fi
    [ "$(date +%s%3N)" -lt "$end" ] || return 1
    sleep 0.05
  done
}
wait_until() { poll "$1" health_is "$2"; }
sim_post() { curl -s -m 5 -X POST "$REST$1" >/dev/null; }

ares_complete='[.services.ares.details.symbols[] |
  (.out_of_order == 0 and .missing_minutes == 0 and
   .candles_closed == ((.last_open_ms - .first_open_ms) / 60000 + 1))] | all'
backfilled_total='([.services.feeder.details.symbols[].candles_backfilled] | add)'
held_total='([.services.feeder.details.symbols[].held_for_backfill] | add)'
books_total='([.services.ares.details.symbols[].books] | add)'
# The feeder as the readiness gate and the supervisor's watchdog see it.
feeder_fine=".services.feeder.ready == true and .services.feeder.status != \"down\"
  and .services.feeder.reason != \"stalled\"
  and ([.services.feeder.details.symbols[].freshness_ms | . != null and . < $STALE_MS] | all)"
stalled_line='.event=="service_stalled" and .service=="feeder"'

echo "TAP version 13"

KEY=feeder-slow-key-0123456789
SECRET=feeder-slow-secret-0123456789
# 60x (as in the issue's reproduction): a 1m candle every second. The REST
# worker runs one call at a time, so with two symbols the last backfill
# lands some 40 s after the gap: about 60 candles held per
# symbol, far from HELD_MAX (1024) at this speed.
"$SIMEX" --seed 11 --speed 60 --symbols BTCUSDT,ETHUSDT --balances USDT=100000,BTC=1 \
  --api-key "$KEY" --api-secret "$SECRET" >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
poll 30 test -s "$WORK/simex.json"
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

# CQ_EXCHANGE_TIMEOUT_MS above the injected latency: the slow answers are
# answers (the backfill lands after 20 s), not timeouts.
: >"$WORK/config.env"
env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 CQ_ADMIN_TOKEN="$TOKEN" \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  BINANCE_API_KEY="$KEY" BINANCE_API_SECRET="$SECRET" \
  CQ_SUPERVISOR_START_WAIT_MS=500 CQ_FEEDER_WARMUP_BARS=30 CQ_FEEDER_STALE_MS=$STALE_MS \
  CQ_FEEDER_WS_STALL_MS=6000 CQ_FEEDER_WS_BACKOFF_MAX_MS=1000 CQ_EXCHANGE_TIMEOUT_MS=30000 \
  "$BIN" --config "$WORK/config.env" 2>"$WORK/stderr.log" &
PID=$!
poll 30 test -s "$WORK/var/admin.addr"
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if wait_until 30 "$feeder_fine and .services.feeder.details.user_stream.connected == true"; then
  ok "feeder ready: warm-up done, market and user streams connected"
else
  not_ok "feeder ready" "$(health | jq -c .services.feeder)"
  echo "1..$n"
  exit 1
fi
# Wait until no backfill is pending and ARES has a complete history: the
# gap below is then the only one.
wait_until 20 "$held_total == 0 and ($ares_complete) and .services.feeder.details.rest_worker.running == null" || true
backfilled_before=$(health | jq "$backfilled_total")
stalls_before=$(log_count "$stalled_line")

# ---- the REST API turns slow, then a gap ------------------------------------------
sim_post "/_sim/rest/latency?ms=$LATENCY_MS"
t0=$(date +%s%3N)
sim_post "/_sim/ws/stall?on=1"
sleep 3 # about 3 closed 1m candles at 60x are never sent: a gap
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop

# The stream reconnects, the next closed candle reveals the gap, and the
# backfill goes to the REST worker: the candles after it are held, the work
# in flight shows in the health details.
pending=".services.feeder.details.rest_worker.backfills_in_flight > 0 and $held_total > 0"
if wait_until 15 "$feeder_fine and $pending"; then
  ok "the gap's backfill is pending on the REST worker, the candles after it held, the feeder ready ($(health | jq -c "{held: $held_total, worker: .services.feeder.details.rest_worker}"))"
else
  not_ok "the gap's backfill is pending on the REST worker while the feeder stays ready" \
    "$(health | jq -c '.services.feeder | {status, ready, reason, detail}')" \
    "$(health | jq -c .services.feeder.details.rest_worker)"
fi

# Watch for 10 s, all inside the 20 s the exchange takes to answer: the
# feeder never goes unready or stalled, every symbol stays fresh, /readiness
# names no feeder problem, and ARES keeps getting market data.
books_before=$(health | jq "$books_total")
held_start=$(health | jq "$held_total")
bad=""
end=$(($(date +%s%3N) + 10000))
samples=0
while [ "$(date +%s%3N)" -lt "$end" ]; do
  h=$(health)
  samples=$((samples + 1))
  if ! jq -e "$feeder_fine" >/dev/null 2>&1 <<<"$h"; then
    bad="$(jq -c '.services.feeder | {status, ready, reason, detail, fresh: [.details.symbols[]?.freshness_ms]}' <<<"$h")"
    break
  fi
  if curl -s -m 5 "http://$ADDR/readiness" | jq -e '[.reasons[]? | select(.service == "feeder")] | length > 0' >/dev/null 2>&1; then
    bad="/readiness names the feeder: $(curl -s -m 5 "http://$ADDR/readiness" | jq -c .reasons)"
    break
  fi
  sleep 0.25
done
elapsed=$(( $(date +%s%3N) - t0 ))
if [ -z "$bad" ] && [ "$samples" -ge 5 ]; then
  ok "for 10 s of a 20 s REST call the feeder stays ready and fresh (< $STALE_MS ms), never stalled ($samples samples)"
else
  not_ok "for 10 s of a 20 s REST call the feeder stays ready and fresh, never stalled" "$bad" \
    "$(cat "$LOGS"/coinquantd.log* | grep -E 'service_stalled|readiness_changed' | tail -5)"
fi
books_now=$(health | jq "$books_total")
held_now=$(health | jq "$held_total")
if [ "$books_now" -gt "$books_before" ] && [ "$held_now" -gt "$held_start" ]; then
  ok "ARES kept getting market data (books $books_before -> $books_now) and closed candles kept coming (held $held_start -> $held_now) while the REST call ran"
else
  not_ok "ARES kept getting market data while the REST call ran" "books $books_before -> $books_now, held $held_start -> $held_now"
fi
if [ "$elapsed" -lt "$LATENCY_MS" ] && health_is "$held_total > 0"; then
  ok "the backfill had not landed yet (${elapsed} ms after the gap): nothing overtook it"
else
  not_ok "the backfill had not landed yet: nothing overtook it" "elapsed ${elapsed} ms, $(health | jq -c "{held: $held_total}")"
fi

# ---- the backfill lands ---------------------------------------------------------
# Two symbols, one 20 s call each on the worker (the user data stream is
# on the WebSocket API and makes no REST call).
if wait_until 120 "$backfilled_total > $backfilled_before and $held_total == 0 and ($ares_complete)"; then
  ok "the backfill landed: the held candles followed it, ARES has every closed candle exactly once, in order"
else
  not_ok "the backfill landed and the held candles followed it in order" \
    "$(health | jq -c '.services.feeder.details.symbols, .services.ares.details.symbols, .services.feeder.details.rest_worker')"
fi
sim_post /_sim/faults/clear
stalls=$(( $(log_count "$stalled_line") - stalls_before ))
if [ "$stalls" -eq 0 ] && health_is "$feeder_fine"; then
  ok "no service_stalled for the feeder during the slow REST calls; still ready"
else
  not_ok "no service_stalled for the feeder during the slow REST calls" "$stalls stall line(s)" \
    "$(health | jq -c '.services.feeder | {status, ready, reason, detail}')"
fi

# ---- stop with a slow REST call out ------------------------------------------------
# Another gap under the same latency, then SIGTERM while its backfill waits on
# the exchange: the daemon does not wait the 20 s out (the stop budget is
# 5 s, the REST worker gets 2 s more; allowed 15 s, loose), and says so.
sim_post "/_sim/rest/latency?ms=$LATENCY_MS"
sim_post "/_sim/ws/stall?on=1"
sleep 3
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop
wait_until 15 "$feeder_fine and $pending" || true
t1=$(date +%s%3N)
kill -TERM "$PID" 2>/dev/null
if poll 30 sh -c "! kill -0 $PID 2>/dev/null"; then
  took=$(( $(date +%s%3N) - t1 ))
  if [ "$took" -lt 15000 ] && [ "$(log_count '.event=="rest_worker_abandoned" and .service=="feeder"')" -ge 1 ]; then
    ok "SIGTERM with a 20 s REST call out: stopped in $took ms, rest_worker_abandoned logged"
  else
    not_ok "SIGTERM with a 20 s REST call out stops without waiting for it" "took $took ms (allowed 15000)" \
      "abandoned lines: $(log_count '.event=="rest_worker_abandoned"')"
  fi
else
  not_ok "SIGTERM with a 20 s REST call out stops without waiting for it" "still running after 30 s"
fi
PID=""

echo "1..$n"
[ "$failures" -eq 0 ]
