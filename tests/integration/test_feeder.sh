#!/usr/bin/env bash
# test_feeder.sh — the feeder against a live coinquant-simex on loopback, as
# the feeder issue's proof asks: a disconnect (counted and logged by the
# stream client, reconnect within the backoff bound, the gap backfilled,
# ARES gets every closed candle exactly once and in order), a stall (the
# staleness threshold, shorter than the WS stall timeout here, fires first:
# feeder_stale and not ready; then the stall is detected within its timeout),
# a 429 storm (the REST client waits as told and is never banned; the
# backfill waits for it, logs a bounded number of backfill_failed lines and
# still fills the gap), the user data stream over the WebSocket API (an
# order's executionReports reach the trader; a dropped connection is
# resubscribed and the trader gets a userStreamGap event), and a venue that
# refuses the user data subscription (-2015: a bounded number of attempts and
# log lines, health says why).
#
# Every check polls for its condition (with generous deadlines) instead of
# sleeping and looking once, and every "before" value is read once the
# system has settled, so the test does not depend on the machine's speed.
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

LOGS="$WORK/var/logs"

# log_count JQ_CONDITION: how many log lines (rotated files included) match.
# Lines are read raw and parsed one by one, so a line the log writer is still
# appending is skipped, not fatal.
log_count() {
  cat "$LOGS"/coinquantd.log* 2>/dev/null | jq -R -c "fromjson? | select($1)" | wc -l
}

health() {
  curl -s -m 5 "http://$ADDR/health"
}

health_is() {
  health | jq -e "$1" >/dev/null 2>&1
}

# poll SECONDS CMD...: run CMD every 50 ms until it succeeds (at least once,
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
    sleep 0.05
  done
}

# wait_until SECONDS JQ_FILTER: poll /health until the filter is true.
wait_until() {
  poll "$1" health_is "$2"
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
# Every term is cumulative (a missing or out-of-order candle is never undone),
# so polling for it can only wait for late candles, never hide a lost one.
ares_complete='[.services.ares.details.symbols[] |
  (.out_of_order == 0 and .missing_minutes == 0 and
   .candles_closed == ((.last_open_ms - .first_open_ms) / 60000 + 1))] | all'
backfilled_total='([.services.feeder.details.symbols[].candles_backfilled] | add)'
held_total='([.services.feeder.details.symbols[].held_for_backfill] | add)'

# settle: wait until every symbol has handled a closed candle newer than the
# newest one it has handled now, and nothing waits for a backfill. A gap an
# earlier reconnect left is revealed by the first closed candle after it, so
# once this returns that gap is already counted and a counter read next is a
# clean "before".
settle() {
  local lc
  lc=$(health | jq -c '[.services.feeder.details.symbols[].last_closed_open_ms]')
  [ -n "$lc" ] || return 1
  wait_until 10 "$lc as \$b | [.services.feeder.details.symbols[].last_closed_open_ms] as \$n
    | ([range(\$b | length)] | all(\$n[.] > \$b[.])) and $held_total == 0"
}

echo "TAP version 13"

KEY=feeder-test-key-0123456789
SECRET=feeder-test-secret-0123456789
# The WS stall timeout is well above the staleness threshold (1500 ms), so a
# silent stream must show as feeder_stale before the stall check reconnects.
WS_STALL_MS=6000
"$SIMEX" --seed 5 --speed 600 --symbols BTCUSDT,ETHUSDT --balances USDT=100000,BTC=1 \
  --api-key "$KEY" --api-secret "$SECRET" >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
poll 30 test -s "$WORK/simex.json"
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

# An explicit, empty config file: without --config coinquantd would read
# ./config.env from whatever directory the test runs in.
: >"$WORK/config.env"
env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 CQ_ADMIN_TOKEN="$TOKEN" \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  BINANCE_API_KEY="$KEY" BINANCE_API_SECRET="$SECRET" \
  CQ_SUPERVISOR_START_WAIT_MS=500 CQ_FEEDER_WARMUP_BARS=30 CQ_FEEDER_STALE_MS=1500 \
  CQ_FEEDER_WS_STALL_MS=$WS_STALL_MS CQ_FEEDER_WS_BACKOFF_MAX_MS=1000 \
  "$BIN" --config "$WORK/config.env" 2>"$WORK/stderr.log" &
PID=$!
poll 30 test -s "$WORK/var/admin.addr"
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if wait_until 30 '.services.feeder.ready == true'; then
  ok "feeder ready: warm-up done, stream connected, every symbol fresh"
else
  not_ok "feeder ready: warm-up done, stream connected, every symbol fresh" "$(health | jq -c .services.feeder)"
  echo "1..$n"
  exit 1
fi
if wait_until 10 '.services.ares.details.symbols.BTCUSDT.from_warmup == 30'; then
  ok "ARES got 30 warm-up candles per symbol before the stream"
else
  not_ok "ARES got 30 warm-up candles per symbol before the stream" "$(health | jq -c .services.ares.details)"
fi

# ---- user data stream (WebSocket API) ------------------------------------------
# The feeder subscribes with userDataStream.subscribe.signature on
# $WS/ws-api/v3 (derived from CQ_EXCHANGE_WS_URL); the first subscription is
# a gap too (the trader must reconcile what happened before it).
user() {
  health | jq -c ".services.feeder.details.user_stream${1:-}"
}
trader_gaps() {
  health | jq '.services.trader.details.user_events.gaps'
}
if wait_until 10 '.services.feeder.details.user_stream.subscribed == true
     and .services.feeder.details.user_stream.state == "subscribed"
     and .services.trader.details.user_events.gaps >= 1'; then
  ok "user data stream subscribed over the WebSocket API; the trader got the start gap ($(user .reason))"
else
  not_ok "user data stream subscribed over the WebSocket API; the trader got the start gap" "$(user)" \
    "$(health | jq -c .services.trader.details)"
fi
if health | jq -e '.services.feeder.details.user_stream.used_weight_1m >= 2
     and .services.feeder.details.user_stream.weight_limit_1m > 0' >/dev/null; then
  ok "the WS API request weight is counted from rateLimits ($(user .used_weight_1m) of $(user .weight_limit_1m))"
else
  not_ok "the WS API request weight is counted from rateLimits" "$(user)"
fi
before=$(reports)
market_buy
if wait_until 10 ".services.trader.details.user_events.execution_reports >= $before + 2"; then
  ok "an order's executionReports (NEW, TRADE) reach the trader over the WebSocket API"
else
  not_ok "an order's executionReports reach the trader over the WebSocket API" "before=$before now=$(reports)" "$(user)"
fi
# Drop every WS connection on the simulator's side: the WS API connection
# comes back, is subscribed again (a new subscribes_ok), and the trader gets
# one more gap event (logged as user_stream_gap).
ok_before=$(user .subscribes_ok)
gaps_before=$(trader_gaps)
gap_lines_before=$(log_count '.event=="user_stream_gap"')
sim_post /_sim/ws/drop
if wait_until 15 ".services.feeder.details.user_stream.subscribes_ok > $ok_before
     and .services.feeder.details.user_stream.subscribed == true
     and .services.trader.details.user_events.gaps > $gaps_before" \
   && poll 5 test "$(log_count '.event=="user_stream_gap"')" -gt "$gap_lines_before"; then
  ok "a dropped WS API connection is resubscribed and the trader gets a gap event ($(user .reason), gaps $gaps_before -> $(trader_gaps))"
else
  not_ok "a dropped WS API connection is resubscribed and the trader gets a gap event" \
    "subscribes_ok before=$ok_before gaps before=$gaps_before" "$(user)" \
    "$(cat "$LOGS"/coinquantd.log* | grep -E 'user_stream' | tail -5)"
fi
before=$(reports)
market_buy
if wait_until 10 ".services.trader.details.user_events.execution_reports >= $before + 2"; then
  ok "after the resubscribe, executionReports flow again"
else
  not_ok "after the resubscribe, executionReports flow again" "before=$before now=$(reports)"
fi

# ---- disconnect ---------------------------------------------------------------
# The simulator closes every WS connection (1001). The reconnect can be
# quick (the first retry waits a random 0-250 ms), but the feeder publishes
# its health inside the connection-state callback, so readiness flips (and
# readiness_changed is logged) however short the outage. The market stream
# client also keeps its own record of the drop: its disconnect counter and
# its ws_disconnected line (that line's rate limit, 5 per 10 s per client, is
# far from reached: the market stream has not dropped before).
market() {
  health | jq ".services.feeder.details.market_stream.$1"
}
sleep 1
connects_before=$(market connects_total)
disconnects_before=$(market disconnects_total)
drop_line='.event=="ws_disconnected" and .service=="feeder" and .client=="market" and .reason=="closed_by_peer"'
drop_lines_before=$(log_count "$drop_line")
flip_line='.event=="readiness_changed" and .service=="feeder" and .to==false and .reason=="ws_disconnected"'
flips_before=$(log_count "$flip_line")
drop_logged() { [ "$(log_count "$drop_line")" -gt "$drop_lines_before" ]; }
t0=$(date +%s%3N)
sim_post /_sim/ws/drop
if wait_until 10 ".services.feeder.ready == true
     and .services.feeder.details.market_stream.disconnects_total > $disconnects_before
     and .services.feeder.details.market_stream.connects_total > $connects_before"; then
  took=$(( $(date +%s%3N) - t0 ))
  ok "after a drop the market stream counts the disconnect and reconnects (${took} ms, backoff bound 1000 ms + connect)"
else
  not_ok "after a drop the market stream counts the disconnect and reconnects" "before: disconnects=$disconnects_before connects=$connects_before" "$(health | jq -c .services.feeder)"
fi
if poll 10 drop_logged; then
  ok "the drop is logged by the market stream client (ws_disconnected, closed_by_peer)"
else
  not_ok "the drop is logged by the market stream client (ws_disconnected, closed_by_peer)" "$(cat "$LOGS"/coinquantd.log* | grep ws_disconnected | tail -3)"
fi
flip_logged() { [ "$(log_count "$flip_line")" -gt "$flips_before" ]; }
if poll 10 flip_logged; then
  ok "readiness went false for the drop (readiness_changed, ws_disconnected)"
else
  not_ok "readiness went false for the drop (readiness_changed, ws_disconnected)" "$(cat "$LOGS"/coinquantd.log* | grep readiness_changed | tail -3)"
fi
# Stay disconnected long enough to miss candles: stall the data, drop, and
# let the next closed kline reveal the gap. Whatever the first drop left has
# been backfilled and counted before the counter is read.
settle
backfilled_before=$(health | jq "$backfilled_total")
sim_post "/_sim/ws/stall?on=1"
sleep 0.6 # at least 5 closed 1m candles at 600x are discarded
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop
if wait_until 10 "$backfilled_total > $backfilled_before"; then
  ok "the missed candles were backfilled over REST"
else
  not_ok "the missed candles were backfilled over REST" "before=$backfilled_before" "$(health | jq -c '.services.feeder.details.symbols')"
fi
if wait_until 10 "($ares_complete) and $held_total == 0"; then
  ok "ARES received every closed candle exactly once, in order"
else
  not_ok "ARES received every closed candle exactly once, in order" "$(health | jq -c .services.ares.details)"
fi

# ---- stall --------------------------------------------------------------------
# A silent stream: the staleness threshold (CQ_FEEDER_STALE_MS=1500) is well
# below the WS stall timeout (6000 ms), so the feeder must say feeder_stale
# (not ready) while the stream is still connected and the stall check has
# not fired: a staleness rule that stopped working (say a threshold ten
# times too long) is caught here instead of hiding behind the reconnect.
# Bounds are right in kind (threshold + up to 3000 ms for a loaded machine);
# the exact timing is the unit tests' job.
settle
backfilled_before=$(health | jq "$backfilled_total")
stalls_before=$(market stalls_total)
t0=$(date +%s%3N)
sim_post "/_sim/ws/stall?on=1"
if wait_until 10 ".services.feeder.ready == false and .services.feeder.reason == \"feeder_stale\"
     and .services.feeder.details.market_stream.stalls_total == $stalls_before"; then
  took=$(( $(date +%s%3N) - t0 ))
  if [ "$took" -le 4500 ]; then
    ok "a silent stream makes the feeder stale first (feeder_stale after ${took} ms, threshold 1500 ms, allowed 1500 + 3000 ms; WS stall check not yet fired)"
  else
    not_ok "a silent stream makes the feeder stale within its threshold" "took ${took} ms, allowed 1500 + 3000 ms"
  fi
else
  not_ok "a silent stream makes the feeder stale (feeder_stale) before the WS stall timeout" \
    "stalls before=$stalls_before" "$(health | jq -c '.services.feeder | {ready, reason, detail, stalls: .details.market_stream.stalls_total}')"
fi
if wait_until 15 ".services.feeder.details.market_stream.stalls_total > $stalls_before"; then
  took=$(( $(date +%s%3N) - t0 ))
  if [ "$took" -le $((WS_STALL_MS + 3000)) ]; then
    ok "the stall is then detected within the stall timeout (${took} ms, timeout $WS_STALL_MS ms, allowed $WS_STALL_MS + 3000 ms)"
  else
    not_ok "the stall is detected within the stall timeout" "took ${took} ms, allowed $WS_STALL_MS + 3000 ms"
  fi
else
  not_ok "the stall is detected" "$(health | jq -c .services.feeder.details.market_stream)"
fi
if health_is '.services.feeder.ready == false'; then
  ok "while stalled the feeder is not ready ($(health | jq -r .services.feeder.reason))"
else
  not_ok "while stalled the feeder is not ready" "$(health | jq -c .services.feeder)"
fi
sim_post "/_sim/ws/stall?on=0"
if wait_until 10 '.services.feeder.ready == true'; then
  ok "after the stall ends the feeder is ready again"
else
  not_ok "after the stall ends the feeder is ready again" "$(health | jq -c .services.feeder)"
fi
# The stall discarded over a second of data (10+ candles): the gap is
# backfilled, and ARES still has every candle once, in order.
if wait_until 10 "$backfilled_total > $backfilled_before and ($ares_complete) and $held_total == 0"; then
  ok "after the stall ARES still has every closed candle exactly once, in order"
else
  not_ok "after the stall ARES still has every closed candle exactly once, in order" "backfilled before=$backfilled_before" "$(health | jq -c '.services.feeder.details.symbols, .services.ares.details')"
fi

# ---- 429 storm -----------------------------------------------------------------
# A storm while a gap needs backfilling: the REST client is told to wait
# (429 Retry-After), the feeder holds the candles after the gap, never gets
# banned, and fills the gap once the storm is over. The storm lasts long
# enough that the backfill certainly meets it, however slow the machine; it
# is not cleared early, so a client that ignored Retry-After would keep
# hitting it (and be banned) and the 429 count below would show it.
STORM_S=12
settle
rl_before=$(health | jq '.services.feeder.details.rest.rate_limited_total')
failed_line='.event=="backfill_failed" and .service=="feeder"'
failed_before=$(log_count "$failed_line")
backfilled_before=$(health | jq "$backfilled_total")
sim_post "/_sim/ratelimit/storm?seconds=$STORM_S"
sim_post "/_sim/ws/stall?on=1"
sleep 0.5 # at least 4 closed 1m candles at 600x are discarded
sim_post "/_sim/ws/stall?on=0"
sim_post /_sim/ws/drop
if wait_until "$STORM_S" ".services.feeder.details.rest.rate_limited_total > $rl_before"; then
  ok "the storm's 429 reached the feeder's REST client (rate_limited_total > $rl_before)"
else
  not_ok "the storm's 429 reached the feeder's REST client" "$(health | jq -c .services.feeder.details.rest)"
fi
if wait_until "$STORM_S" "$held_total > 0"; then
  ok "the candles after the gap are held while the backfill waits ($(health | jq "$held_total") held)"
else
  not_ok "the candles after the gap are held while the backfill waits" "$(health | jq -c '.services.feeder.details.symbols, .services.feeder.details.rest')"
fi
if wait_until $((STORM_S + 20)) "$backfilled_total > $backfilled_before and ($ares_complete) and $held_total == 0"; then
  ok "after the storm the gap is filled: ARES has every closed candle exactly once, in order"
else
  not_ok "after the storm the gap is filled" "$(health | jq -c '.services.feeder.details.symbols, .services.ares.details')"
fi
# Read after the gap is filled, i.e. after the feeder's wait ended: the whole
# storm is behind these counts.
state=$(curl -s -m 5 "$REST/_sim/state")
if jq -e '.counters.rest_418 == 0' <<<"$state" >/dev/null \
   && health | jq -e '.services.feeder.details.rest.banned_total == 0' >/dev/null; then
  ok "the feeder waited as told: never banned (418 count 0)"
else
  not_ok "the feeder waited as told: never banned" "$(jq -c .counters <<<"$state")"
fi
# One failed attempt per symbol is expected (the 429, or the client's own
# refusal inside the Retry-After window), then a wait for the whole storm.
# A feeder that retried on its own short timer instead (500 ms) would log
# about 24 per symbol during the 12 s storm.
failed=$(( $(log_count "$failed_line") - failed_before ))
if [ "$failed" -ge 1 ] && [ "$failed" -le 6 ]; then
  ok "the backfill waited out the Retry-After: $failed backfill_failed line(s) for 2 symbols in a ${STORM_S} s storm (allowed 1..6)"
else
  not_ok "the backfill waited out the Retry-After (backfill_failed lines bounded)" "$failed lines during the storm, allowed 1..6" \
    "$(cat "$LOGS"/coinquantd.log* | grep backfill_failed | tail -5)"
fi
requests_429=$(jq '.counters.rest_429' <<<"$state")
if [ -n "$requests_429" ] && [ "$requests_429" -le 3 ]; then
  ok "no request was sent into a known Retry-After window (429s seen by the exchange: $requests_429)"
else
  not_ok "no request was sent into a known Retry-After window" "429s seen by the exchange: $requests_429"
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
# ---- a venue that refuses the user data subscription ----------------------------
# A second daemon with an API key the venue does not know: the WS API answers
# userDataStream.subscribe.signature with 401 -2015 (as for a revoked key, a
# missing permission or an IP not on the allowlist). It must back off on the
# same connection (1 s doubling to 5 min, jittered: at most 5 attempts in
# 10 s), say so in health, keep its log bounded, and keep the market data
# (and readiness) unaffected.
rm -rf "$WORK/var2"
env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var2" CQ_ADMIN_BIND=127.0.0.1:0 CQ_ADMIN_TOKEN="$TOKEN" \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  BINANCE_API_KEY="not-a-key-the-venue-knows-0123456789" BINANCE_API_SECRET="$SECRET" \
  CQ_SUPERVISOR_START_WAIT_MS=500 CQ_FEEDER_WARMUP_BARS=5 \
  "$BIN" --config "$WORK/config.env" 2>"$WORK/stderr2.log" &
PID=$!
poll 30 test -s "$WORK/var2/admin.addr"
ADDR=$(tr -d '\n' <"$WORK/var2/admin.addr" 2>/dev/null)
LOGS="$WORK/var2/logs"
if wait_until 30 '.services.feeder.reason == "user_stream_failed" and .services.feeder.ready == true
     and .services.feeder.details.user_stream.subscribes_refused >= 1
     and .services.feeder.details.user_stream.last_error_code == -2015'; then
  ok "a refused subscription shows in health (user_stream_failed, still ready: $(health | jq -r .services.feeder.detail))"
else
  not_ok "a refused subscription shows in health (user_stream_failed, still ready)" "$(health | jq -c .services.feeder)"
fi
s0=$(user .subscribes_sent)
sleep 10
s1=$(user .subscribes_sent)
if [ -n "$s0" ] && [ -n "$s1" ] && [ $((s1 - s0)) -le 5 ]; then
  ok "the subscription backs off: $((s1 - s0)) attempt(s) in 10 s (allowed 5; sent $s0 -> $s1)"
else
  not_ok "the subscription backs off (at most 5 attempts in 10 s)" "subscribes_sent: $s0 -> $s1"
fi
lines=$(log_count '.event=="user_stream_subscribe_failed"')
if [ "$lines" -ge 1 ] && [ "$lines" -le 3 ]; then
  ok "user_stream_subscribe_failed is logged, rate-limited ($lines line(s), allowed 1..3 per minute)"
else
  not_ok "user_stream_subscribe_failed is logged, rate-limited" "$lines lines, allowed 1..3"
fi
if health | jq -e '.services.feeder.details.rest.banned_total == 0 and .services.feeder.details.rest.rate_limited_total == 0' >/dev/null; then
  ok "the REST budget is untouched by the retries (never rate limited or banned)"
else
  not_ok "the REST budget is untouched by the retries" "$(health | jq -c .services.feeder.details.rest)"
fi
kill -TERM "$PID"
wait "$PID"
PID=""

kill -TERM "$SIM_PID"
wait "$SIM_PID"
SIM_PID=""

echo "1..$n"
[ "$failures" -eq 0 ]
