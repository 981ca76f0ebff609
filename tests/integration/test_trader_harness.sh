#!/usr/bin/env bash
# test_trader_harness.sh — the checks of the trader's integration tests
# (tests/integration/lib/trader.sh) can fail: against a live coinquant-simex,
# with orders placed here (signed with openssl, no daemon), the duplicate
# check finds a client order id placed twice, allOrders is read across pages
# (more than 1000 orders) and GET /_sim/orders (what the tests read, free of
# request weight) answers the same, the balance arithmetic is exact, positions that
# differ from the exchange are reported, and the simulator's faults the
# tests rely on (orders/timeout, ws/user_down) answer. Runs without the
# trader, so the harness is proven before the trader is in the binary.
#
# usage: test_trader_harness.sh SIMEX
# Output: TAP.
set -uo pipefail
# shellcheck disable=SC2034 # SIMEX, TT_*: read by lib/trader.sh
SIMEX=$1
BIN=/nonexistent
# shellcheck source=tests/integration/lib/trader.sh
. "$(dirname "$0")/lib/trader.sh"

tt_init trader-harness
TT_SYMBOLS=BTCUSDT,ETHUSDT
TT_SIM_BALANCES=USDT=1000000,BTC=0,ETH=0
tt_simex_start
record_start_balances "$WORK/start" BTC,ETH,USDT

order() {
  signed POST /api/v3/order "symbol=$1&side=BUY&type=MARKET&quoteOrderQty=10&newClientOrderId=$2"
  [ "$STATUS" = 200 ]
}

# ---- exact decimals ---------------------------------------------------------------------
if [ "$(dec "0.00100000 - 0.00000100")" = 0.000999 ] && dec_eq 1.10 1.1 && ! dec_eq 0.1 0.10000001 &&
   [ "$(dec "0 - 0.5")" = -0.5 ] && on_grid 30000.12 0.01 && ! on_grid 0.00077922 0.00001; then
  ok "exact decimal helpers (dec, dec_eq, on_grid)"
else
  not_ok "exact decimal helpers" "$(dec "0.00100000 - 0.00000100") $(dec "0 - 0.5")"
fi

# ---- the duplicate check ------------------------------------------------------------------
order BTCUSDT "${TT_PREFIX}0000000000000000000000000000000a" &&
  order BTCUSDT "${TT_PREFIX}0000000000000000000000000000000b" &&
  order BTCUSDT other-client-id-1 && order BTCUSDT other-client-id-1
if [ -z "$(duplicated_client_ids BTCUSDT)" ]; then
  ok "no duplicate reported when each id of ours has one order (others' duplicates ignored)"
else
  not_ok "no duplicate reported when each id of ours has one order" "$(duplicated_client_ids BTCUSDT)"
fi
order BTCUSDT "${TT_PREFIX}0000000000000000000000000000000a"
dups=$(duplicated_client_ids BTCUSDT)
if [ "$dups" = "${TT_PREFIX}0000000000000000000000000000000a x2" ]; then
  ok "a client order id placed twice is reported ($dups)"
else
  not_ok "a client order id placed twice is reported" "got: '$dups'"
fi

# ---- allOrders across pages -----------------------------------------------------------------
# One curl with keep-alive for all of them (each signed with openssl).
: >"$WORK/orders.curl"
for i in $(seq 1 1005); do
  q="symbol=ETHUSDT&side=BUY&type=MARKET&quoteOrderQty=10&newClientOrderId=page-$i&recvWindow=60000&timestamp=$(date +%s%3N)"
  sig=$(printf '%s' "$q" | openssl dgst -sha256 -hmac "$TT_SECRET" | sed 's/^.* //')
  printf 'url = "%s"\n-X POST\n-H "X-MBX-APIKEY: %s"\n-o /dev/null\n-w "%%{http_code}\\n"\n' \
    "$REST/api/v3/order?$q&signature=$sig" "$TT_KEY" >>"$WORK/orders.curl"
  [ "$i" -lt 1005 ] && echo next >>"$WORK/orders.curl"
done
codes=$(curl -s -m 120 -K "$WORK/orders.curl" | sort | uniq -c | tr -s ' ')
count=$(all_orders_signed ETHUSDT | jq length)
if [ "$count" = 1005 ]; then
  ok "allOrders is read across pages (1005 orders)"
else
  not_ok "allOrders is read across pages (1005 orders)" "got $count; answers: $codes"
fi

if [ "$(all_orders_signed ETHUSDT | jq -S -c .)" = "$(all_orders ETHUSDT | jq -S -c .)" ] &&
   [ "$(all_orders_signed BTCUSDT | jq -S -c .)" = "$(all_orders BTCUSDT | jq -S -c .)" ]; then
  ok "GET /_sim/orders (not charged) answers what signed allOrders answers"
else
  not_ok "GET /_sim/orders (not charged) answers what signed allOrders answers" \
    "$(diff <(all_orders_signed BTCUSDT | jq -c '.[]') <(all_orders BTCUSDT | jq -c '.[]') | head -5)"
fi
w0=$(sim_value .ratelimit.weight_used)
all_orders ETHUSDT >/dev/null
all_orders ETHUSDT >/dev/null
if [ "$(sim_value .ratelimit.weight_used)" = "$w0" ]; then
  ok "reading the exchange's orders costs the daemon's weight budget nothing"
else
  not_ok "reading the exchange's orders costs the daemon's weight budget nothing" "$w0 -> $(sim_value .ratelimit.weight_used)"
fi

# ---- positions against balances -------------------------------------------------------------
btc=$(exch_balance BTC)
if [ "$(dec "$btc > 0")" = 1 ]; then
  ok "the exchange's BTC balance moved by the fills ($btc)"
else
  not_ok "the exchange's BTC balance moved by the fills" "$(sim_state | jq -c .balances)"
fi
# A stand-in for the daemon's API: positions as the trader would report them.
FAKE_POSITIONS=""
positions_json() { echo "$FAKE_POSITIONS"; }
eth=$(exch_balance ETH)
FAKE_POSITIONS="[{\"symbol\":\"BTCUSDT\",\"qty\":\"$btc\"},{\"symbol\":\"ETHUSDT\",\"qty\":\"$eth\"}]"
if positions_match_exchange BTCUSDT,ETHUSDT "$WORK/start" >/dev/null; then
  ok "positions equal to balances minus the start pass"
else
  not_ok "positions equal to balances minus the start pass" "$(positions_match_exchange BTCUSDT,ETHUSDT "$WORK/start")"
fi
FAKE_POSITIONS="[{\"symbol\":\"BTCUSDT\",\"qty\":\"$(dec "$btc - 0.00000001")\"},{\"symbol\":\"ETHUSDT\",\"qty\":\"$eth\"}]"
out=$(positions_match_exchange BTCUSDT,ETHUSDT "$WORK/start")
if [ $? -ne 0 ] && grep -q "BTCUSDT: daemon position" <<<"$out"; then
  ok "a position 1e-8 off the exchange is reported: $out"
else
  not_ok "a position 1e-8 off the exchange is reported" "$out"
fi

# ---- the faults the tests use ---------------------------------------------------------------
if sim_ctl POST /_sim/orders/timeout "count=1&ms=1500" | jq -e '.ok and .late_orders == 1' >/dev/null &&
   sim_ctl POST /_sim/ws/user_down on=1 | jq -e '.ok and .ws_user_down' >/dev/null &&
   sim_ctl POST /_sim/faults/clear | jq -e .ok >/dev/null; then
  ok "the simulator has the orders/timeout and ws/user_down faults"
else
  not_ok "the simulator has the orders/timeout and ws/user_down faults" "$(sim_ctl POST /_sim/nothing | jq -c .known)"
fi

tt_finish
