#!/usr/bin/env bash
# test_journal_cli.sh — `coinquantd journal verify|replay|export` against
# hostile journal directories, as an operator would run them: a FIFO, a
# symlink to /dev/zero, a directory or a symlink loop named like a segment
# or a snapshot, an out-of-pattern name, a damaged snapshot, a snapshot
# ahead of every record, missing first records. Each must end within a few
# seconds with the exit code documented in docs/JOURNAL.md and a message on
# stderr that names the file (never a bare "CQ_EIO", never an empty "()").
#
# usage: test_journal_cli.sh COINQUANTD SOURCE_DIR
# Output: TAP.
set -uo pipefail

BIN=$1
SRC=$2
GOLDEN="$SRC/tests/data/journal/golden-v1"
LIMIT_S=10 # a hang is a failure, not a stuck test run

WORK=$(mktemp -d /tmp/cq-journal-cli-XXXXXX)
n=0
failures=0

cleanup() {
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

# fresh NAME: a copy of the golden journal (2 segments, 4 records, a
# snapshot at seq 4) in $WORK/NAME; prints its path.
fresh() {
  local d="$WORK/$1"
  mkdir -p "$d"
  cp "$GOLDEN"/* "$d"/
  echo "$d"
}

# run CMD DIR: runs `coinquantd journal CMD --dir DIR` with a time limit;
# sets RC, OUT, ERR.
run() {
  local cmd=$1 dir=$2
  timeout -s KILL "$LIMIT_S" "$BIN" journal "$cmd" --dir "$dir" >"$WORK/out" 2>"$WORK/err"
  RC=$?
  OUT=$(cat "$WORK/out")
  ERR=$(cat "$WORK/err")
}

# expect DESC CMD DIR WANT_RC NEEDLE: exit code WANT_RC and NEEDLE on stderr.
expect() {
  local desc=$1 cmd=$2 dir=$3 want=$4 needle=$5
  run "$cmd" "$dir"
  if [ "$RC" -eq 137 ]; then
    not_ok "$desc" "journal $cmd hung (killed after ${LIMIT_S}s)"
  elif [ "$RC" -ne "$want" ]; then
    not_ok "$desc" "journal $cmd exit $RC, expected $want" "stderr: $ERR"
  elif [ -n "$needle" ] && ! grep -qF -- "$needle" "$WORK/err"; then
    not_ok "$desc" "journal $cmd: stderr does not say '$needle'" "stderr: $ERR"
  elif grep -qE '^coinquantd journal [a-z]+: [^/]*CQ_EIO|\(\)$' "$WORK/err"; then
    not_ok "$desc" "journal $cmd: an error that names no file, or an empty reason" "stderr: $ERR"
  else
    ok "$desc"
  fi
}

# ---- the clean journal ------------------------------------------------------------

D=$(fresh clean)
expect "verify passes the golden journal" verify "$D" 0 ""
expect "replay passes the golden journal" replay "$D" 0 ""
expect "export passes the golden journal" export "$D" 0 ""
if [ "$(wc -l <"$WORK/out")" -eq 4 ]; then
  ok "export prints 4 lines"
else
  not_ok "export prints 4 lines" "$OUT"
fi

# ---- export filters (the audit log: issue 11's risk decisions) ---------------------

D=$(fresh filter)
timeout -s KILL "$LIMIT_S" "$BIN" journal export --dir "$D" --type order.intent,order.ack \
  >"$WORK/out" 2>"$WORK/err"
if [ $? -eq 0 ] && [ "$(jq -r .type "$WORK/out" | tr '\n' ' ')" = "order.intent order.ack " ]; then
  ok "export --type keeps only the named record types"
else
  not_ok "export --type keeps only the named record types" "$(cat "$WORK/out" "$WORK/err")"
fi
timeout -s KILL "$LIMIT_S" "$BIN" journal export --dir "$D" --scope ops >"$WORK/out" 2>"$WORK/err"
if [ $? -eq 0 ] && [ "$(jq -r .scope "$WORK/out" | sort -u)" = "ops" ] &&
  [ "$(wc -l <"$WORK/out")" -eq 1 ]; then
  ok "export --scope keeps only that scope's records"
else
  not_ok "export --scope keeps only that scope's records" "$(cat "$WORK/out" "$WORK/err")"
fi
timeout -s KILL "$LIMIT_S" "$BIN" journal export --dir "$D" --type risk.decison \
  >"$WORK/out" 2>"$WORK/err"
rc=$?
if [ "$rc" -ne 0 ] && grep -qF "unknown record type 'risk.decison'" "$WORK/err" &&
  grep -qF "risk.decision" "$WORK/err" && [ ! -s "$WORK/out" ]; then
  ok "export --type with an unknown name is refused, listing the known ones"
else
  not_ok "export --type with an unknown name is refused, listing the known ones" \
    "exit $rc" "$(cat "$WORK/err")"
fi

# ---- 17.4: non-regular files named like journal files hang nothing ----------------

for cmd in verify replay export; do
  D=$(fresh "fifo-seg-$cmd")
  mkfifo "$D/seg-00000003.cqj"
  expect "$cmd: a FIFO named like a segment is reported with its path" "$cmd" "$D" 1 \
    "seg-00000003.cqj"

  D=$(fresh "fifo-snap-$cmd")
  mkfifo "$D/snap-00000000000000000002.cqs"
  expect "$cmd: a FIFO named like a snapshot is reported with its path" "$cmd" "$D" 1 \
    "snap-00000000000000000002.cqs"

  D=$(fresh "zero-seg-$cmd")
  rm "$D/seg-00000002.cqj"
  ln -s /dev/zero "$D/seg-00000002.cqj"
  expect "$cmd: a symlink to /dev/zero as a segment is reported with its path" "$cmd" "$D" 1 \
    "seg-00000002.cqj"

  D=$(fresh "zero-snap-$cmd")
  rm "$D/snap-00000000000000000004.cqs"
  ln -s /dev/zero "$D/snap-00000000000000000004.cqs"
  expect "$cmd: a symlink to /dev/zero as a snapshot is reported with its path" "$cmd" "$D" 1 \
    "snap-00000000000000000004.cqs"

  # ---- 17.12: a directory or a symlink loop named like a segment ------------------
  D=$(fresh "dir-seg-$cmd")
  mkdir "$D/seg-00000003.cqj"
  expect "$cmd: a directory named like a segment is reported with its path" "$cmd" "$D" 1 \
    "seg-00000003.cqj"

  D=$(fresh "loop-seg-$cmd")
  ln -s seg-00000003.cqj "$D/seg-00000003.cqj"
  expect "$cmd: a symlink loop named like a segment is reported with its path" "$cmd" "$D" 1 \
    "seg-00000003.cqj"
done

# ---- 17.smaller: out-of-pattern names are reported --------------------------------

D=$(fresh stray)
cp "$D/seg-00000002.cqj" "$D/seg-000000003.cqj"
expect "verify reports an out-of-pattern segment name" verify "$D" 1 "seg-000000003.cqj"
if [ -f "$D/seg-000000003.cqj" ]; then
  ok "the out-of-pattern file is left in place"
else
  not_ok "the out-of-pattern file is left in place"
fi

# ---- 17.13: replay says which snapshot it skipped, and fails when one is ahead -----

D=$(fresh badsnap)
printf 'X' | dd of="$D/snap-00000000000000000004.cqs" bs=1 seek=60 conv=notrunc 2>/dev/null
expect "replay says it skipped a damaged snapshot and why" replay "$D" 0 \
  "snapshot at seq 4 not used"

D=$(fresh ahead)
rm "$D"/seg-*.cqj
expect "replay fails when the snapshot is ahead of every record" replay "$D" 1 "ahead"
if grep -qF "snapshot at seq 4 not used" "$WORK/err"; then
  ok "replay names the snapshot it could not use"
else
  not_ok "replay names the snapshot it could not use" "stderr: $ERR"
fi

# ---- 17.10: export applies replay's missing-records check --------------------------

D=$(fresh headless)
rm "$D/seg-00000001.cqj" "$D/snap-00000000000000000004.cqs"
expect "replay refuses a journal missing its first records" replay "$D" 1 "pruned"
expect "export refuses a journal missing its first records" export "$D" 1 "pruned"
if [ -z "$OUT" ]; then
  ok "export wrote nothing"
else
  not_ok "export wrote nothing" "$OUT"
fi

# ---- a write failure is called a write failure --------------------------------------

D=$(fresh full)
if [ -w /dev/full ]; then
  timeout -s KILL "$LIMIT_S" "$BIN" journal export --dir "$D" >/dev/full 2>"$WORK/err"
  RC=$?
  if [ "$RC" -eq 1 ] && grep -qF "writing the export of $D" "$WORK/err"; then
    ok "export to a full disk says the write failed"
  else
    not_ok "export to a full disk says the write failed" "exit $RC" "$(cat "$WORK/err")"
  fi
fi

echo "1..$n"
[ "$failures" -eq 0 ]
