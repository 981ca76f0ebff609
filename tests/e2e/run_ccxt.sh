#!/bin/sh
# run_ccxt.sh SIMEX_BINARY — end-to-end test of coinquant-simex with the real
# ccxt client (tests/e2e/ccxt/). Output is TAP, and so is the exit code
# (0 = all checks passed, 1 = a check failed or the test could not run).
#
# Needs node (>= 18) and npm. On first use (or when package-lock.json is newer
# than node_modules) it runs `npm ci` in tests/e2e/ccxt, which needs the npm
# registry once; later runs are offline.
set -u

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
dir="$here/ccxt"

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 SIMEX_BINARY" >&2
    echo "1..0 # SKIP no simulator binary given"
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

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "Bail out! '$tool' not found: the ccxt end-to-end test needs Node.js (>= 18) and npm."
        echo "# Install them with scripts/setup-deps (Debian: apt-get install nodejs npm)."
        exit 1
    fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ] 2>/dev/null; then
    echo "Bail out! Node.js >= 18 required, found $(node --version 2>/dev/null || echo none)"
    exit 1
fi

# node_modules is (re)installed when missing or older than the lock file.
# npm ci deletes node_modules first, so a half-finished install is redone.
stamp="$dir/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ ! -d "$dir/node_modules/ccxt" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
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
exec node e2e.mjs "$simex"
