#!/usr/bin/env bash
# test_sim_layers.sh — the simulator's layers (server/sim/sim-state.h), checked
# over the object files of libcqsim.a: the front ends (rest.c, ws.c) and the
# shared state layer (state.c) reference nothing defined in the lifecycle
# file sim.c, and the state layer nothing defined in a front end.
#
# usage: test_sim_layers.sh LIBCQSIM_A
# Output: TAP.
set -uo pipefail

LIB=$1
n=0
failures=0

# The member part of nm -A's first field: "LIB:MEMBER:" (a thin archive's
# members carry their path: "LIB:dir/libcqsim.a.p/server_sim_sim.c.o:").
member_is() {
  awk -v m="$1" '{ f = $1; sub(/:[^:]*$/, "", f); sub(/^.*[\/:]/, "", f); if (f == m) print $NF }'
}
# names defined (global) in one member, e.g. server_sim_sim.c.o
defined_in() {
  nm -A -g --defined-only "$LIB" 2>/dev/null | member_is "$1" | sort -u
}
# names one member uses but does not define
used_by() {
  nm -A -u "$LIB" 2>/dev/null | member_is "$1" | sort -u
}

check_none() {
  local desc=$1 user=$2 owner=$3
  local bad
  bad=$(comm -12 <(used_by "$user") <(defined_in "$owner"))
  n=$((n + 1))
  if [ -z "$(used_by "$user")" ] || [ -z "$(defined_in "$owner")" ]; then
    failures=$((failures + 1))
    echo "not ok $n - $desc"
    echo "#   $user or $owner not found in $LIB (object names changed?)"
  elif [ -n "$bad" ]; then
    failures=$((failures + 1))
    echo "not ok $n - $desc"
    printf '#   %s\n' $bad
  else
    echo "ok $n - $desc"
  fi
}

echo "1..4"
check_none "rest.c calls nothing in sim.c (the lifecycle above it)" server_sim_rest.c.o server_sim_sim.c.o
check_none "ws.c calls nothing in sim.c" server_sim_ws.c.o server_sim_sim.c.o
check_none "state.c calls nothing in sim.c" server_sim_state.c.o server_sim_sim.c.o
bad_up=$(comm -12 <(used_by server_sim_state.c.o) <( (defined_in server_sim_rest.c.o; defined_in server_sim_ws.c.o) | sort -u))
n=$((n + 1))
if [ -n "$bad_up" ]; then
  failures=$((failures + 1))
  echo "not ok $n - state.c calls nothing in the front ends (rest.c, ws.c)"
  printf '#   %s\n' $bad_up
else
  echo "ok $n - state.c calls nothing in the front ends (rest.c, ws.c)"
fi
[ "$failures" -eq 0 ]
