#!/usr/bin/env bash
# test_trader_paper.sh — the operator's smoke check (issue 11): coinquantd in
# paper mode against its embedded simulator, with TEST_ALLOW_DEFAULT_SIGNAL=on,
# places real orders on the simulator through the one order path, within a
# minute: /readiness answers 200, GET /api/v1/orders lists filled orders,
# the journal has each order's intent before its fill, the log has
# order_sent, the metrics count them, and the operator commands work.
#
# usage: test_trader_paper.sh COINQUANTD
# Output: TAP.
set -uo pipefail

BIN=$1
WORK=$(mktemp -d /tmp/cq-trader-paper-XXXXXX)
PID=""
n=0
failures=0

cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
  fi
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

echo "TAP version 13"
env -i PATH="$PATH" HOME="$WORK" CQ_DATA_DIR="$WORK/data" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_MODE=paper TEST_ALLOW_DEFAULT_SIGNAL=on CQ_ARES_TEST_SIGNAL_MS=1000 \
  "$BIN" 2>"$WORK/stderr.log" &
PID=$!

for _ in $(seq 1 200); do
  [ -s "$WORK/data/admin.addr" ] && break
  sleep 0.1
done
ADDR=$(cat "$WORK/data/admin.addr" 2>/dev/null)
TOKEN=$(cat "$WORK/data/admin.token" 2>/dev/null)
LOG="$WORK/data/logs/coinquantd.log"

# http METHOD PATH [TOKEN]: sets STATUS and BODY.
http() {
  local auth=()
  [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
  BODY=$(curl -s -m 5 -X "$1" "${auth[@]}" -w '\n%{http_code}' "http://$ADDR$2")
  STATUS=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}

# Within a minute: readiness 200 and at least two filled orders listed.
deadline=$((SECONDS + 60))
got=0
while [ $SECONDS -lt $deadline ]; do
  http GET /api/v1/orders "$TOKEN"
  if [ "$STATUS" = 200 ] && jq -e '[.orders[]|select(.state=="filled")]|length>=2' <<<"$BODY" >/dev/null 2>&1; then
    got=1
    break
  fi
  sleep 0.5
done
if [ $got = 1 ]; then
  ok "GET /api/v1/orders lists filled orders within a minute of start"
else
  not_ok "GET /api/v1/orders lists filled orders within a minute of start" "status=$STATUS" "$BODY"
fi
http GET /readiness ""
if [ "$STATUS" = 200 ]; then
  ok "GET /readiness 200"
else
  not_ok "GET /readiness 200" "status=$STATUS" "$BODY"
fi
if jq -e '[.orders[]|select(.state=="filled")][0]|(.client_order_id|test("^cq1-[0-9a-f]{32}$")) and .symbol and (.executed_qty|tonumber>0)' <<<"$(curl -s -H "Authorization: Bearer $TOKEN" "http://$ADDR/api/v1/orders")" >/dev/null; then
  ok "a filled order has our client id prefix and an executed quantity"
else
  not_ok "a filled order has our client id prefix and an executed quantity"
fi
http GET /api/v1/orders ""
if [ "$STATUS" = 401 ]; then ok "the orders need the token"; else not_ok "the orders need the token" "status=$STATUS"; fi

# The one order path, seen in the log: risk decision, durable intent, send, fill.
first=$(jq -r 'select(.event=="order_sent")|.client_order_id' "$LOG" 2>/dev/null | head -1)
seq_of() { jq -r --arg id "$first" --arg ev "$1" 'select(.event==$ev and .client_order_id==$id)|.journal_seq' "$LOG" | head -1; }
line_of() { grep -n "\"event\":\"$1\"" "$LOG" | grep -F "$first" | head -1 | cut -d: -f1; }
ri=$(line_of risk_decision); ii=$(line_of order_intent); si=$(line_of order_sent); fi_=$(line_of order_fill)
if [ -n "$first" ] && [ -n "$ri" ] && [ -n "$ii" ] && [ -n "$si" ] && [ -n "$fi_" ] &&
   [ "$ri" -lt "$ii" ] && [ "$ii" -lt "$si" ] && [ "$si" -lt "$fi_" ] &&
   [ "$(seq_of order_intent)" -lt "$(seq_of order_fill)" ]; then
  ok "order $first: risk_decision, order_intent (journaled), order_sent, order_fill in that order"
else
  not_ok "order path in order" "id=$first risk=$ri intent=$ii sent=$si fill=$fi_"
fi

http GET /metrics ""
sent=$(grep '^coinquant_trader_orders_sent_total ' <<<"$BODY" | awk '{print $2}')
dw=$(grep '^coinquant_trader_durable_wait_seconds_count ' <<<"$BODY" | awk '{print $2}')
if [ "${sent:-0}" -ge 2 ] && [ "${dw:-0}" -ge 2 ]; then
  ok "metrics count the orders sent ($sent) and the durability waits ($dw)"
else
  not_ok "metrics count the orders sent and the durability waits" "sent=$sent durable_wait_count=$dw"
fi

# The operator: pause -> trading_paused (ready, degraded); resume -> ok.
http POST /api/v1/trader/pause "$TOKEN"
s1=$STATUS
reason=""
for _ in $(seq 1 50); do
  reason=$(curl -s "http://$ADDR/health" | jq -r .services.trader.reason)
  [ "$reason" = trading_paused ] && break
  sleep 0.1
done
http POST /api/v1/trader/resume "$TOKEN"
if [ "$s1" = 202 ] && [ "$reason" = trading_paused ]; then
  ok "POST /api/v1/trader/pause: 202, health says trading_paused"
else
  not_ok "POST /api/v1/trader/pause: 202, health says trading_paused" "status=$s1 reason=$reason"
fi

if grep -q not_implemented "$LOG"; then
  not_ok "no not_implemented reason anywhere"
else
  ok "no not_implemented reason anywhere"
fi

kill -TERM "$PID"
wait "$PID"
rc=$?
if [ $rc = 0 ]; then ok "SIGTERM: clean stop"; else not_ok "SIGTERM: clean stop" "exit $rc"; fi
PID=""

# A restart on the same DATA_DIR: the paper account persisted
# (DATA_DIR/sim-state.json), so the reconcile finds what the journal expects
# and quarantines nothing (it did, balance_below_position, when the embedded
# simulator started a fresh account on every start).
if [ -s "$WORK/data/sim-state.json" ]; then
  ok "the paper account is kept in DATA_DIR/sim-state.json"
else
  not_ok "the paper account is kept in DATA_DIR/sim-state.json" "$(ls -la "$WORK/data")"
fi
rm -f "$WORK/data/admin.addr"
env -i PATH="$PATH" HOME="$WORK" CQ_DATA_DIR="$WORK/data" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_MODE=paper "$BIN" 2>>"$WORK/stderr.log" &
PID=$!
for _ in $(seq 1 200); do
  [ -s "$WORK/data/admin.addr" ] && break
  sleep 0.1
done
ADDR=$(cat "$WORK/data/admin.addr" 2>/dev/null)
deadline=$((SECONDS + 60))
STATUS=""
while [ $SECONDS -lt $deadline ]; do
  http GET /readiness ""
  [ "$STATUS" = 200 ] && break
  sleep 0.2
done
trader=$(curl -s "http://$ADDR/health" | jq -c '.services.trader | {reason, quarantined: .details.quarantined}')
if [ "$STATUS" = 200 ] && ! grep -q balance_below_position <<<"$trader" &&
  [ "$(jq -r .reason <<<"$trader")" != symbol_quarantined ]; then
  ok "restart on the same DATA_DIR: ready, nothing quarantined"
else
  not_ok "restart on the same DATA_DIR: ready, nothing quarantined" "readiness=$STATUS" "$trader"
fi
kill -TERM "$PID"
wait "$PID"
PID=""
echo "1..$n"
[ "$failures" -eq 0 ]
