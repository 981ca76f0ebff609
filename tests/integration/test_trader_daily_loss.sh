#!/usr/bin/env bash
# test_trader_daily_loss.sh — the daily loss limit end to end (issue 11,
# "Proof, against a live simulator"). The simulator charges 10 % fees on
# each side (--fees 1000,1000), so every round trip of a 20 USDT entry
# realizes a loss of about 4 USDT, whatever the market does; the limit is
# CQ_RISK_MAX_DAILY_LOSS=1. Checks:
#   - the trader stops entering: health reason daily_loss_limit, still
#     ready (degraded, /readiness 200), entries refused by the risk gate
#     (journaled risk.decision, rule daily loss), and no BUY of ours reaches
#     the exchange from the first refusal on;
#   - GET /api/v1/risk (token) answers with the daily figures;
#   - the day's realized loss survives a restart: the reason is back after
#     it without a new loss.
#
# usage: test_trader_daily_loss.sh COINQUANTD SIMEX
# Output: TAP. Skipped, saying what is missing, while the trader of issue 11
# is not in the binary.
set -uo pipefail
# shellcheck disable=SC2034 # BIN, SIMEX, TT_*: read by lib/trader.sh
BIN=$1
SIMEX=$2
# shellcheck source=tests/integration/lib/trader.sh
. "$(dirname "$0")/lib/trader.sh"

tt_init trader-daily-loss
# The limit is per UTC day: a midnight inside the test would reset it.
if [ $((86400 - $(date -u +%s) % 86400)) -lt 300 ]; then
  tt_skip_all "less than 5 minutes to UTC midnight, when the daily loss resets: run it again after midnight"
fi
TT_SYMBOLS=BTCUSDT
tt_simex_start --fees 1000,1000

DAEMON_ENV=(CQ_ORDER_QUOTE=20 CQ_RISK_MAX_DAILY_LOSS=1)
tt_daemon_start "${DAEMON_ENV[@]}"
tt_require_trader

if poll 150 health_is '.services.trader.reason == "daily_loss_limit"'; then
  ok "health says daily_loss_limit after the losing round trips"
else
  tt_bail "health says daily_loss_limit after the losing round trips" "$(trader_health)" \
    "$(records order.fill | tail -3 | jq -c .payload)"
fi
if health_is '.services.trader.ready == true' && ready_200; then
  ok "still ready (degraded): /readiness 200"
else
  not_ok "still ready (degraded): /readiness 200" "$(trader_health)" "readiness: $(readiness_code)"
fi
refused='.payload.allowed == false and (.payload.rule | test("daily"))'
if poll 60 has_record risk.decision "$refused"; then
  ok "entries are refused by the risk gate (rule daily loss, journaled)"
else
  not_ok "entries are refused by the risk gate (rule daily loss, journaled)" "$(records risk.decision | tail -3)"
fi
after=$(max_order_id BTCUSDT)
rseq=$(records risk.decision "$refused" | tail -1 | jq '.seq // 0')
more_refusals() {
  [ "$(records risk.decision "$refused and .seq > ${rseq:-0}" | wc -l)" -ge 2 ]
}
poll 60 more_refusals
if [ "$(our_orders_after BTCUSDT "$after" '.side == "BUY"' | jq length)" = 0 ]; then
  ok "no entry of ours reached the exchange past the limit"
else
  not_ok "no entry of ours reached the exchange past the limit" "$(our_orders_after BTCUSDT "$after" '.side == "BUY"')"
fi
api GET /api/v1/risk
if [ "$STATUS" = 200 ] && grep -qi daily <<<"$BODY"; then
  ok "GET /api/v1/risk answers with the daily figures"
else
  not_ok "GET /api/v1/risk answers with the daily figures" "HTTP $STATUS $BODY"
fi

tt_daemon_stop
tt_daemon_start "${DAEMON_ENV[@]}"
if poll 60 health_is '.services.trader.reason == "daily_loss_limit"'; then
  ok "the day's loss survives a restart (daily_loss_limit again)"
else
  not_ok "the day's loss survives a restart (daily_loss_limit again)" "$(trader_health)"
fi

tt_daemon_stop
tt_finish
