#!/usr/bin/env bash
# test_order_path.sh — one way to send an order (rule 3 of
# ../shared/ARCHITECTURE.md; issue 10 "The order path is structural"),
# checked over the build's object files and static libraries.
#
# The REST client has two doors (include/cq/rest.h): cq_rest_call
# (safe, retried; refuses every order endpoint) and cq_rest_order_send
# (orders, never resent). Only the trader's venue module may open the second
# one. This test fails if any object file or static-library member in the
# build directory references ORDER_SYMBOL other than:
#   server_exchange_rest_client.c.o   the REST client (defines it)
#   server_trader_venue.c.o           the trader's venue module, the one door
#   unit_test_rest_client.c.o         the client's own unit test
#   bench_bench_rest_orders.c.o       the client's order benchmark
# (meson names an object after its source path: server/trader/venue.c ->
# server_trader_venue.c.o). A reference is a symbol nm lists as undefined
# ("U"), which is what a call, or taking the function's address, leaves in
# an object; a local re-declaration of the prototype does not hide it.
#
# Before it believes a clean result, the test checks that it can see: the
# client's object must define the symbol, and a copy of the venue object
# planted under a forbidden name in a scratch directory must be flagged.
#
# usage: test_order_path.sh BUILD_DIR
#   NM (environment) overrides the nm used (default nm; LTO objects need an
#   nm with the compiler's plugin: gcc-nm or llvm-nm).
# Output: TAP.
set -uo pipefail

BUILD=${1:?usage: test_order_path.sh BUILD_DIR}
NM=${NM:-nm}
ORDER_SYMBOL=cq_rest_order_send
ALLOWED="server_exchange_rest_client.c.o server_trader_venue.c.o unit_test_rest_client.c.o bench_bench_rest_orders.c.o"

n=0
failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1))
  failures=$((failures + 1))
  echo "not ok $n - $1"
  shift
  local line
  for line in "$@"; do echo "#   $line"; done
}

# Objects and static libraries under a directory (meson's private and
# introspection directories hold none of ours).
inputs() {
  find "$1" \( -path '*/meson-private' -o -path '*/meson-info' -o -path '*/meson-logs' \) -prune \
    -o -type f \( -name '*.o' -o -name '*.a' \) -print
}

# "object symbol" for every undefined ORDER_SYMBOL. nm -A prefixes each line
# with "file:" or, for an archive member, "archive:member:"; the object's
# name is the last path component before the final ':'.
referencing() {
  inputs "$1" | xargs -r "$NM" -A -u 2>/dev/null |
    awk -v s="$ORDER_SYMBOL" '$NF == s {
      f = $1; sub(/:[^:]*$/, "", f); sub(/^.*[\/:]/, "", f); print f }' | sort -u
}

forbidden() {
  local obj
  while IFS= read -r obj; do
    [ -n "$obj" ] || continue
    [[ " $ALLOWED " == *" $obj "* ]] || echo "$obj"
  done
}

echo "1..3"

# 1. nm can read the objects: the client defines the symbol.
client=$(find "$BUILD" -type f -name server_exchange_rest_client.c.o | head -1)
venue=$(find "$BUILD" -type f -name server_trader_venue.c.o | head -1)
if [ -z "$client" ] || [ -z "$venue" ]; then
  not_ok "the REST client's and the venue module's objects are in $BUILD" \
    "client: ${client:-missing}, venue: ${venue:-missing} (object names changed, or not built?)"
elif ! "$NM" -g --defined-only "$client" 2>/dev/null | awk '{ print $NF }' | grep -qxF "$ORDER_SYMBOL"; then
  not_ok "$NM reads $ORDER_SYMBOL as defined in the REST client's object" \
    "$client: not found (an LTO object? run with NM=gcc-nm or NM=llvm-nm)"
else
  ok "$NM reads $ORDER_SYMBOL as defined in the REST client's object"
fi

# 2. The scanner flags a reference from a forbidden object: the venue
#    object copied as if it were the feeder's.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [ -n "$venue" ]; then
  cp "$venue" "$scratch/server_feeder_planted.c.o"
fi
planted=$(referencing "$scratch" | forbidden)
if [ "$planted" = server_feeder_planted.c.o ]; then
  ok "a planted reference from another module is flagged"
else
  not_ok "a planted reference from another module is flagged" \
    "the scanner found '${planted}' in a copy of ${venue:-the venue object} (nm output changed?)"
fi

# 3. The real check.
bad=$(referencing "$BUILD" | forbidden)
if [ -z "$bad" ]; then
  ok "only the REST client and the trader's venue module reference $ORDER_SYMBOL"
else
  lines=()
  for obj in $bad; do
    lines+=("$obj references $ORDER_SYMBOL: orders go through cq_trader_venue_send (server/trader/venue.c) only")
  done
  not_ok "only the REST client and the trader's venue module reference $ORDER_SYMBOL" "${lines[@]}"
fi
[ "$failures" -eq 0 ]
