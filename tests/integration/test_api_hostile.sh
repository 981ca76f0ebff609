#!/usr/bin/env bash
# test_api_hostile.sh — the real coinquantd's admin API against hostile
# clients, over loopback (issue 17): slow clients holding connections,
# a NUL in the path, a Transfer-Encoding other than chunked, a foreign Host
# (DNS rebinding), methods and paths that are not UTF-8, the admin token in
# a logged path, and a flood of requests libmicrohttpd itself refuses. Each
# check names what the input must get.
#
# Bounded: at most 80 slow connections, held for at most the request
# deadline (5 s) plus the time to observe their closing; loopback only.
#
# usage: test_api_hostile.sh COINQUANTD
# Output: TAP.
set -uo pipefail

BIN=$1

WORK=$(mktemp -d /tmp/cq-api-hostile-XXXXXX)
PID=""
n=0
failures=0
SLOW_FDS=()

close_slow() {
  local fd
  for fd in "${SLOW_FDS[@]}"; do
    exec {fd}>&- 2>/dev/null
  done
  SLOW_FDS=()
}

cleanup() {
  close_slow
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
trap '' PIPE # writing to a connection the server closed is expected here

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

TOKEN="hostile-token-0123456789abcdef"
DATA="$WORK/var"
LOG="$DATA/logs/coinquantd.log"

env -i PATH="$PATH" HOME="$WORK" CQ_ADMIN_TOKEN="$TOKEN" CQ_ADMIN_BIND=127.0.0.1:0 \
  CQ_DATA_DIR="$DATA" CQ_SUPERVISOR_START_WAIT_MS=300 CQ_LOG_LEVEL=debug \
  "$BIN" 2>"$WORK/stderr.log" &
PID=$!

for _ in $(seq 1 100); do
  [ -s "$DATA/admin.addr" ] && break
  sleep 0.1
done
if [ ! -s "$DATA/admin.addr" ]; then
  not_ok "coinquantd started" "$(tail -5 "$WORK/stderr.log")"
  echo "1..$n"
  exit 1
fi
ADDR=$(tr -d '\n' <"$DATA/admin.addr")
HOST=${ADDR%:*}
PORT=${ADDR##*:}

# raw REQUEST [SECONDS]: send REQUEST (printf format) on a new connection,
# read the answer until the server closes it or SECONDS pass (default 3).
# Sets RAW (the answer), RAW_STATUS (its status code or ""), RAW_MS.
raw() {
  local req=$1 secs=${2:-3} fd t0
  t0=$(date +%s%3N)
  RAW=""
  RAW_STATUS=""
  if ! exec {fd}<>"/dev/tcp/$HOST/$PORT"; then
    RAW_MS=0
    return 1
  fi
  # shellcheck disable=SC2059 # the request is a printf format on purpose
  printf "$req" >&"$fd" 2>/dev/null
  RAW=$(timeout "$secs" cat <&"$fd" 2>/dev/null | tr -d '\0')
  exec {fd}>&-
  RAW_MS=$(($(date +%s%3N) - t0))
  RAW_STATUS=$(head -c 12 <<<"$RAW" | sed -n 's|^HTTP/1\.[01] \([0-9][0-9][0-9]\)$|\1|p')
}

# http PATH [curl args]: STATUS, BODY, HEADERS (5 s at most).
http() {
  local path=$1
  shift
  local out
  out=$(curl -s -m 5 -D "$WORK/headers" -o "$WORK/body" -w '%{http_code}' "$@" "http://$ADDR$path")
  STATUS=$out
  BODY=$(cat "$WORK/body" 2>/dev/null)
  HEADERS=$(tr -d '\r' <"$WORK/headers" 2>/dev/null)
}

# has_log PATTERN: a log line matches (the writer is asynchronous: 10 s).
has_log() {
  for _ in $(seq 1 100); do
    grep -q -- "$1" "$LOG" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---- 17.1: slow clients ----------------------------------------------------
# 80 connections send part of a request head and then nothing more: more
# than the pool (64, 32 per peer) and the reserve (8).
for _ in $(seq 1 80); do
  if exec {fd}<>"/dev/tcp/$HOST/$PORT" 2>/dev/null; then
    SLOW_FDS+=("$fd")
    printf 'GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\n' >&"$fd" 2>/dev/null
  fi
done
sleep 0.5 # let the server accept them all

t0=$(date +%s%3N)
http /health
ms=$(($(date +%s%3N) - t0))
if [ "$STATUS" = 200 ] && [ "$ms" -lt 5000 ]; then
  ok "80 slow clients: /health still answers 200 ($ms ms)"
else
  not_ok "80 slow clients: /health still answers 200" "status=$STATUS after $ms ms" "$BODY"
fi

http /config -H "Authorization: Bearer $TOKEN"
if [ "$STATUS" = 503 ] && grep -q '"code":"busy"' <<<"$BODY" && grep -qi '^Retry-After: 1$' <<<"$HEADERS"; then
  ok "80 slow clients: /config gets a fast 503 busy with Retry-After"
else
  not_ok "80 slow clients: /config gets a fast 503 busy with Retry-After" "status=$STATUS" "$BODY" "$HEADERS"
fi

# Past the request deadline (5 s from accept) the slow clients are closed at
# the next arrival and /config is served again.
served=""
for _ in $(seq 1 30); do
  sleep 0.5
  http /config -H "Authorization: Bearer $TOKEN"
  if [ "$STATUS" = 200 ]; then
    served=yes
    break
  fi
done
if [ -n "$served" ]; then
  ok "after the request deadline the slow clients are gone and /config answers 200"
else
  not_ok "after the request deadline the slow clients are gone and /config answers 200" "status=$STATUS" "$BODY"
fi
if has_log '"event":"api_slow_connection_closed"'; then
  ok "closing slow clients is logged (api_slow_connection_closed)"
else
  not_ok "closing slow clients is logged (api_slow_connection_closed)"
fi
close_slow

# ---- 17.smaller: NUL in the path, Transfer-Encoding, Host --------------------
raw 'GET /health%%00xyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
if [ "$RAW_STATUS" = 400 ]; then
  ok "/health%00xyz gets 400"
else
  not_ok "/health%00xyz gets 400" "status=$RAW_STATUS" "$RAW"
fi

raw "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $TOKEN\0junk\r\nConnection: close\r\n\r\n"
if [ "$RAW_STATUS" = 400 ]; then
  ok "a NUL inside a header value (after the token) gets 400"
else
  not_ok "a NUL inside a header value (after the token) gets 400" "status=$RAW_STATUS" "$RAW"
fi

raw 'POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n' 8
if [ "$RAW_STATUS" = 400 ] && [ "$RAW_MS" -lt 5000 ]; then
  ok "Transfer-Encoding: gzip gets 400 and the connection is closed ($RAW_MS ms)"
else
  not_ok "Transfer-Encoding: gzip gets 400 and the connection is closed" "status=$RAW_STATUS after $RAW_MS ms" "$RAW"
fi

http /metrics -H 'Host: rebind.attacker.example'
if [ "$STATUS" = 421 ] && grep -q '"code":"misdirected_request"' <<<"$BODY"; then
  ok "a foreign Host on a loopback bind gets 421 (DNS rebinding)"
else
  not_ok "a foreign Host on a loopback bind gets 421 (DNS rebinding)" "status=$STATUS" "$BODY"
fi
http /health -H "Host: localhost:$PORT"
if [ "$STATUS" = 200 ]; then
  ok "Host: localhost:PORT is answered"
else
  not_ok "Host: localhost:PORT is answered" "status=$STATUS" "$BODY"
fi

# ---- 17.8: not UTF-8, a multi-byte character at the cut ----------------------
raw 'G\xffT /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
if [ "$RAW_STATUS" = 400 ]; then
  ok "method G\\xffT gets 400, not 500"
else
  not_ok "method G\\xffT gets 400, not 500" "status=$RAW_STATUS" "$RAW"
fi
raw 'GET /%%FF HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
if [ "$RAW_STATUS" = 400 ]; then
  ok "/%FF gets 400, not 500"
else
  not_ok "/%FF gets 400, not 500" "status=$RAW_STATUS" "$RAW"
fi
long="/$(printf 'a%.0s' $(seq 1 125))%%F0%%9F%%98%%80" # 126 bytes, then a 4-byte character
raw "GET $long HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
if [ "$RAW_STATUS" = 404 ]; then
  ok "a 126-byte path ending in a 4-byte character gets 404, not 500"
else
  not_ok "a 126-byte path ending in a 4-byte character gets 404, not 500" "status=$RAW_STATUS" "$RAW"
fi
if has_log '"event":"api_request".*"method":"G?T".*"status":400'; then
  ok "the log line of G\\xffT keeps method and status"
else
  not_ok "the log line of G\\xffT keeps method and status"
fi

# ---- 17.smaller: the token in a logged path -----------------------------------
# "/" and 115 bytes, then the token: its first 12 characters fall inside
# the 128 bytes a cut would keep
pad=$(printf 'p%.0s' $(seq 1 115))
http "/$pad$TOKEN"
if [ "$STATUS" = 404 ] && has_log "\"path\":\"/$pad"; then
  if grep -q "${TOKEN:0:12}" "$LOG"; then
    not_ok "a token straddling the logged length is redacted, not cut" "$(grep "${TOKEN:0:12}" "$LOG" | head -2)"
  else
    ok "a token straddling the logged length is redacted, not cut"
  fi
else
  not_ok "a token straddling the logged length is redacted, not cut" "status=$STATUS, request not logged"
fi

# ---- 17.9: libmicrohttpd's own errors --------------------------------------------
sleep 1 # the log writer is asynchronous
before=$(grep -c '"event":"mhd_error"' "$LOG" 2>/dev/null || true)
statuses=""
for _ in $(seq 1 100); do
  raw 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n' 5
  statuses="$statuses $RAW_STATUS"
done
sleep 1 # the log writer is asynchronous
after=$(grep -c '"event":"mhd_error"' "$LOG" 2>/dev/null || true)
if [ "$RAW_STATUS" = 400 ] && [ $((after - before)) -le 5 ]; then
  ok "100 malformed requests: $((after - before)) mhd_error lines (rate limited)"
else
  not_ok "100 malformed requests: at most 5 mhd_error lines" "statuses:$statuses" "lines: $((after - before))"
fi
http /metrics
mhd=$(sed -n 's/^coinquant_api_mhd_errors_total \([0-9]*\)$/\1/p' <<<"$BODY")
if [ -n "$mhd" ] && [ "$mhd" -ge 100 ]; then
  ok "coinquant_api_mhd_errors_total counts them ($mhd)"
else
  not_ok "coinquant_api_mhd_errors_total counts them" "value: '$mhd'"
fi

kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
if [ "$rc" -eq 0 ]; then
  ok "coinquantd stops cleanly after all that (exit 0)"
else
  not_ok "coinquantd stops cleanly after all that (exit 0)" "rc=$rc" "$(tail -5 "$WORK/stderr.log")"
fi

echo "1..$n"
[ "$failures" -eq 0 ]
