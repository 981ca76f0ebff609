#!/usr/bin/env bash
# test_metrics.sh — /metrics of a running coinquantd against a live
# coinquant-simex on loopback (issue 9.12): the counters the feeder, ARES,
# the trader and the journal export through the health board move on the
# page (no series reads its value out of the health JSON by name any more),
# uptime is the process's age, and `promtool check metrics` accepts the
# page. promtool comes from the Debian package prometheus
# (scripts/setup-deps); without it that check is skipped, unless CI is set
# (anything but empty, "0" or "false"): then it fails.
#
# Every check polls for its condition with a generous deadline; nothing
# here measures speed.
#
# usage: test_metrics.sh COINQUANTD SIMEX
# Output: TAP.
set -uo pipefail

BIN=$1
SIMEX=$2
WORK=$(mktemp -d /tmp/cq-metrics-XXXXXX)
PID=""
SIM_PID=""
n=0
failures=0
TOKEN="metrics-test-token-0123456789"

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

skip() {
  n=$((n + 1))
  echo "ok $n - $1 # SKIP $2"
}

ci_set() {
  [ -n "${CI:-}" ] && [ "${CI:-}" != "0" ] && [ "${CI:-}" != "false" ]
}

# poll SECONDS CMD...: run CMD every 50 ms until it succeeds (at least once,
# and once more at the deadline).
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

health() {
  curl -s -m 5 "http://$ADDR/health"
}

health_is() {
  health | jq -e "$1" >/dev/null 2>&1
}

page() {
  curl -s -m 5 "http://$ADDR/metrics"
}

# value SERIES: the sample's value ("name" or "name{labels}" exactly), or
# nothing when the page does not have it.
value() {
  page | awk -v key="$1" '$1 == key { print $2; exit }'
}

# moved SERIES [MIN]: the sample is there and at least MIN (default: > 0).
moved() {
  local v
  v=$(value "$1")
  [ -n "$v" ] || return 1
  awk -v v="$v" -v min="${2:-}" 'BEGIN { exit !(min == "" ? v > 0 : v >= min) }'
}

check_moved() {
  local series=$1 min=${2:-}
  if poll 30 moved "$series" "$min"; then
    ok "$series moved ($(value "$series"))"
  else
    not_ok "$series moved" "value: '$(value "$series")'" \
      "$(page | grep -F "${series%%\{*}" | head -5)"
  fi
}

echo "TAP version 13"

KEY=metrics-test-key-0123456789
SECRET=metrics-test-secret-0123456789
"$SIMEX" --seed 7 --speed 600 --symbols BTCUSDT,ETHUSDT --balances USDT=100000,BTC=1 \
  --api-key "$KEY" --api-secret "$SECRET" >"$WORK/simex.json" 2>"$WORK/simex.err" &
SIM_PID=$!
if ! poll 30 test -s "$WORK/simex.json"; then
  not_ok "coinquant-simex started" "$(cat "$WORK/simex.err" 2>/dev/null)"
  echo "1..$n"
  exit 1
fi
REST=$(jq -r .rest "$WORK/simex.json")
WS=$(jq -r .ws "$WORK/simex.json")

: >"$WORK/config.env"
env -i PATH="$PATH" HOME="$WORK" \
  CQ_DATA_DIR="$WORK/var" CQ_ADMIN_BIND=127.0.0.1:0 CQ_ADMIN_TOKEN="$TOKEN" \
  CQ_EXCHANGE_REST_URL="$REST" CQ_EXCHANGE_WS_URL="$WS" \
  BINANCE_API_KEY="$KEY" BINANCE_API_SECRET="$SECRET" \
  CQ_SUPERVISOR_START_WAIT_MS=500 CQ_FEEDER_WARMUP_BARS=30 \
  "$BIN" --config "$WORK/config.env" 2>"$WORK/stderr.log" &
PID=$!
poll 30 test -s "$WORK/var/admin.addr"
ADDR=$(tr -d '\n' <"$WORK/var/admin.addr" 2>/dev/null)

if poll 30 health_is '.services.feeder.ready == true'; then
  ok "feeder ready"
else
  not_ok "feeder ready" "$(health | jq -c .services.feeder)"
  echo "1..$n"
  exit 1
fi

# ---- the feeder's typed counters -----------------------------------------------
check_moved coinquant_feeder_messages_total
check_moved coinquant_feeder_candles_closed_total
check_moved coinquant_exchange_weight_limit_1m
for s in coinquant_feeder_books_coalesced_total coinquant_feeder_trades_dropped_total \
         coinquant_feeder_user_events_dropped_total coinquant_feeder_ring_full_total; do
  if [ -n "$(value "$s")" ]; then
    ok "$s is on the page ($(value "$s"))"
  else
    not_ok "$s is on the page" "$(page | grep -c . ) lines"
  fi
done

# ---- the user data stream: feeder -> trader ----------------------------------------
market_buy() {
  local q="symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp=$(date +%s%3N)"
  local sig
  sig=$(printf '%s' "$q" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
  curl -s -m 5 -X POST -H "X-MBX-APIKEY: $KEY" "$REST/api/v3/order?$q&signature=$sig" >/dev/null
}
poll 20 health_is '.services.feeder.details.user_stream.connected == true'
market_buy
check_moved coinquant_feeder_user_events_total 2
check_moved 'coinquant_trader_user_events_total{type="execution_report"}' 2

# ---- ARES and the journal ---------------------------------------------------------------
if poll 30 health_is '.services.ares.details.symbols.BTCUSDT.candles_closed > 30'; then
  ok "ARES takes candles"
else
  not_ok "ARES takes candles" "$(health | jq -c .services.ares.details.symbols.BTCUSDT)"
fi
text=$(page)
if [ -n "$(value coinquant_signals_emitted_total)" ] \
   && grep -q '^coinquant_signals_blocked_total{reason="feeder_stale"} ' <<<"$text"; then
  ok "ARES's signal counters are on the page, blocked by reason"
else
  not_ok "ARES's signal counters are on the page" "$(page | grep coinquant_signals_)"
fi
check_moved coinquant_journal_appends_total
check_moved coinquant_journal_durable_seq
check_moved coinquant_journal_commit_wait_seconds_count
check_moved 'coinquant_journal_commit_wait_seconds_bucket{le="+Inf"}'

# ---- uptime is the process's age ---------------------------------------------------
start=$(value coinquant_process_start_time_seconds)
proc_start=$(awk -v ticks="$(getconf CLK_TCK)" -v boot="$(awk '/^btime/ {print $2}' /proc/stat)" \
  '{ sub(/^.*\) /, ""); split($0, f, " "); printf "%.2f", boot + f[20] / ticks }' "/proc/$PID/stat")
if [ -n "$start" ] && awk -v a="$start" -v b="$proc_start" 'BEGIN { d = a - b; exit !(d > -2 && d < 2) }'; then
  ok "coinquant_process_start_time_seconds is the process's start ($start, kernel: $proc_start)"
else
  not_ok "coinquant_process_start_time_seconds is the process's start" \
    "page: '$start' kernel: '$proc_start'"
fi
check_moved coinquant_uptime_seconds

# ---- promtool -------------------------------------------------------------------------
page >"$WORK/metrics.txt"
if command -v promtool >/dev/null 2>&1; then
  if promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1; then
    ok "promtool check metrics accepts /metrics"
  else
    not_ok "promtool check metrics accepts /metrics" "$(cat "$WORK/promtool.out")"
  fi
elif ci_set; then
  not_ok "promtool check metrics accepts /metrics" \
    "promtool is missing and CI is set: run scripts/setup-deps (Debian package prometheus)"
else
  skip "promtool check metrics accepts /metrics" \
    "promtool is missing: install the Debian package prometheus (scripts/setup-deps); set CI to make this a failure"
fi

kill -TERM "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=""
kill -TERM "$SIM_PID" 2>/dev/null
wait "$SIM_PID" 2>/dev/null
SIM_PID=""
echo "1..$n"
[ "$failures" -eq 0 ]
