#!/bin/sh
# run_userdata.sh SIMEX_BINARY — end-to-end test: third-party Binance clients
# (tests/e2e/userdata/: @binance/spot, binance, ccxt, versions pinned) get
# their user data from coinquant-simex over the WebSocket API
# (`userDataStream.subscribe.signature` on /ws-api/v3). Output is TAP, and so
# is the exit code (0 = all checks passed or skipped, 1 = a check failed or
# the test could not run).
#
# Needs node (>= 18) and npm. Without them the test is skipped (TAP "1..0 #
# SKIP") unless CI is set, where it fails: CI must run it. On first use (or
# when package-lock.json is newer than node_modules) it runs `npm ci` in
# tests/e2e/userdata, which needs the npm registry once; later runs are
# offline.
set -u

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
dir="$here/userdata"

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 SIMEX_BINARY" >&2
    echo "Bail out! no simulator binary given"
    exit 1
fi
case "$1" in
    /*) simex="$1" ;;
    *) simex="$(pwd)/$1" ;;
esac
if [ ! -x "$simex" ]; then
    echo "Bail out! simulator binary not found or not executable: $simex"
    exit 1
fi

# missing_tool WHAT: skip outside CI, fail under CI.
missing_tool() {
    if [ -n "${CI:-}" ]; then
        echo "Bail out! $1: the third-party user data test needs Node.js (>= 18) and npm, and CI=${CI} requires it to run."
        echo "# Install them with scripts/setup-deps (Debian: apt-get install nodejs npm)."
        exit 1
    fi
    echo "1..0 # SKIP $1: needs Node.js (>= 18) and npm (scripts/setup-deps; Debian: apt-get install nodejs npm)"
    exit 0
}

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing_tool "'$tool' not found"
    fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ] 2>/dev/null; then
    missing_tool "Node.js >= 18 required, found $(node --version 2>/dev/null || echo none)"
fi

# node_modules is (re)installed when missing or older than the lock file.
# npm ci deletes node_modules first, so a half-finished install is redone.
stamp="$dir/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ ! -d "$dir/node_modules/@binance/spot" ] \
   || [ ! -d "$dir/node_modules/binance" ] || [ ! -d "$dir/node_modules/ccxt" ] \
   || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    log=$(mktemp "${TMPDIR:-/tmp}/cq-e2e-npm.XXXXXX") || exit 1
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        echo "Bail out! 'npm ci' failed in $dir (is the npm registry reachable?)"
        sed 's/^/# /' "$log" | tail -n 40
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    touch "$stamp"
fi

cd "$dir" || exit 1
exec node userdata.mjs "$simex"
