#!/usr/bin/env bash
# test_trader_unknown_outcome.sh — an unknown outcome resolved by a query,
# without a duplicate (issue 11, "Proof, against a live simulator").
# coinquantd (CQ_EXCHANGE_TIMEOUT_MS=1000) trades against coinquant-simex;
# then the next order is executed by the exchange but answered 6 s late
# (POST /_sim/orders/timeout count=1 ms=6000): the daemon's request times
# out, so the order's outcome is unknown to it; the user data stream is
# down meanwhile (POST /_sim/ws/user_down), so only a query by
# origClientOrderId can tell it what happened. Checks:
#   - that order exists once on the exchange, FILLED;
#   - the trader journals its fill (learned from the query), not a
#     rejection or a failure;
#   - its intent was journaled once (attempt 1): it was not sent again, and
#     the exchange has exactly one order with its client id, also after the
#     trader has moved on to later orders;
#   - no signal has two orders, and the daemon's position equals the
#     exchange's balance.
#
# usage: test_trader_unknown_outcome.sh COINQUANTD SIMEX
# Output: TAP. Skipped, saying what is missing, while the trader of issue 11
# is not in the binary.
set -uo pipefail
# shellcheck disable=SC2034 # BIN, SIMEX, TT_*: read by lib/trader.sh
BIN=$1
SIMEX=$2
# shellcheck source=tests/integration/lib/trader.sh
. "$(dirname "$0")/lib/trader.sh"

tt_init trader-unknown
TT_SYMBOLS=BTCUSDT
TT_SIM_BALANCES=USDT=100000,BTC=0
tt_simex_start
record_start_balances "$WORK/start-balances" BTC,USDT

tt_daemon_start CQ_EXCHANGE_TIMEOUT_MS=1000
tt_require_trader
if poll 60 ready_200 && poll 90 has_our_order_after BTCUSDT 0 '.status == "FILLED"'; then
  ok "the trader is ready and trades"
else
  tt_bail "the trader is ready and trades" "$(trader_health)"
fi

sim_ctl POST /_sim/ws/user_down on=1 >/dev/null
if poll 30 health_is '.services.feeder.details.user_stream.connected == false'; then
  ok "the user stream is down"
else
  not_ok "the user stream is down" "$(health | jq -c .services.feeder.details.user_stream)"
fi
sim_ctl POST /_sim/orders/timeout "count=1&ms=6000" >/dev/null
# The simulator logs the order whose answer it holds.
held_cid() {
  cid=$(jq -R -r 'fromjson? | select(.event == "simex_order_answer_held") | .client_order_id' "$WORK/simex.err" | head -1)
  [ -n "$cid" ]
}
if poll 90 held_cid; then
  late=$(all_orders BTCUSDT | jq -c --arg c "$cid" '[.[] | select(.clientOrderId == $c)][0]')
  if [ "${cid#"$TT_PREFIX"}" != "$cid" ] && [ "$(jq -r .status <<<"$late")" = FILLED ]; then
    ok "the exchange executed our order $cid (FILLED) and held its answer back"
  else
    not_ok "the exchange executed our order and held its answer back" "held: $cid, on the exchange: $late"
  fi
else
  tt_bail "the exchange executed our order and held its answer back" "$(trader_health)"
fi
if poll 30 health_is '.services.trader.details.counters.unknown_outcomes >= 1' ||
   has_log '.event == "rest_unknown_outcome"'; then
  ok "the daemon met an unknown outcome (its request timed out)"
else
  not_ok "the daemon met an unknown outcome (its request timed out)" "$(trader_health)"
fi

if poll 60 has_record order.fill ".payload.client_order_id == \"$cid\" and .payload.final == true"; then
  ok "the trader resolved the unknown outcome: the fill is journaled"
else
  not_ok "the trader resolved the unknown outcome: the fill is journaled" \
    "records of $cid: $(journal_export | jq -c --arg c "$cid" 'select(.payload.client_order_id? == $c) | {type, payload}')"
fi
if has_record order.reject ".payload.client_order_id == \"$cid\""; then
  not_ok "no rejection or failure was journaled for it" "$(records order.reject ".payload.client_order_id == \"$cid\"")"
else
  ok "no rejection or failure was journaled for it"
fi

sim_ctl POST /_sim/ws/user_down on=0 >/dev/null

# The trader moves on: two more orders of ours after it, then count.
moved_on() {
  [ "$(our_orders_after BTCUSDT "$(jq '.orderId // 0' <<<"$late")" | jq length)" -ge 2 ]
}
if poll 120 moved_on; then
  ok "the trader placed later orders"
else
  not_ok "the trader placed later orders" "$(trader_health)"
fi
copies=$(all_orders BTCUSDT | jq --arg c "$cid" '[.[] | select(.clientOrderId == $c)] | length')
intents=$(records order.intent ".payload.client_order_id == \"$cid\"" | wc -l)
if [ "$copies" = 1 ] && [ "$intents" = 1 ]; then
  ok "one order on the exchange and one intent for $cid: not sent again"
else
  not_ok "one order on the exchange and one intent for $cid: not sent again" \
    "orders on the exchange: $copies, intents journaled: $intents"
fi
dups=$(duplicated_client_ids BTCUSDT)
if [ -z "$dups" ]; then
  ok "no signal has two orders on the exchange"
else
  not_ok "no signal has two orders on the exchange" "$dups"
fi
if poll 60 positions_match_exchange BTCUSDT "$WORK/start-balances" >/dev/null; then
  ok "the daemon's position equals the exchange's balance"
else
  not_ok "the daemon's position equals the exchange's balance" \
    "$(positions_match_exchange BTCUSDT "$WORK/start-balances")"
fi

tt_daemon_stop
tt_finish
