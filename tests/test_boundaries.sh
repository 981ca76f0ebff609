#!/usr/bin/env bash
# test_boundaries.sh — the module boundaries of ../shared/ARCHITECTURE.md
# ("Layout"), checked over the sources and the static libraries (issue 10,
# "boundaries the build enforces"). Run by `meson test` (tests/meson.build,
# suite unit), so a change that crosses a boundary fails the test run.
#
# usage: test_boundaries.sh SOURCE_ROOT [LIBNAME=path/to/libLIBNAME.a ...]
# Output: TAP.
#
# 1. Private headers stay private. In server/<module>/ and api/, a quoted
#    #include names either a public header ("cq/<name>.h") or a header by
#    bare name that lives in the including file's own directory
#    ("journal-int.h"). "journal/journal-int.h" or "../journal/journal-int.h"
#    from anywhere else fails. (Tests may reach into a module: they name
#    the module's private directory in tests/meson.build.)
# 2. Layers. Each public header belongs to a module (HEADER_OWNER below) and
#    each module includes public headers of the modules it may use only
#    (MAY_INCLUDE). Core includes nothing above it: config validation of
#    strategies goes through the check ARES registers.
# 3. Libraries. Each static library holds objects of its own directory only
#    (no strategy or sign.c inside cqcore), and every cq_ symbol it uses is
#    defined in itself or in a library it may link (MAY_LINK; the same list
#    as meson.build's "libraries, bottom up").
set -uo pipefail

SRC=$1
shift

n=0
failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1))
  failures=$((failures + 1))
  echo "not ok $n - $1"
  shift
  local line
  for line in "$@"; do
    echo "#   $line"
  done
}

# Module of each directory holding sources.
declare -A DIR_MODULE=(
  [server/core]=core [server/journal]=journal [server/exchange]=exchange
  [server/ares]=ares [server/feeder]=feeder [server/trader]=trader
  [server/sim]=sim [api]=api [include/cq]=- [server]=top
)
# Owner of each public header. A new header must be added here.
declare -A HEADER_OWNER=(
  [buf]=core [clock]=core [common]=core [config]=core [decimal]=core
  [doorbell]=core [fs]=core [health]=core [log]=core [lws_log]=core
  [market]=core [spsc]=core [service]=core [text]=core [version]=core
  [backoff]=core [http_body]=core [reload]=core
  [journal]=journal
  [rest]=exchange [filters]=exchange [codec]=exchange [sign]=exchange [ws_client]=exchange [wsapi]=exchange
  [ares]=ares [indicators]=ares [strategy]=ares [signal]=ares
  [feeder]=feeder [trader]=trader [risk]=trader [sim]=sim [api]=api [supervisor]=top
)
# Modules whose public headers a module may include. The trader takes the
# types of its two input rings from feeder.h (user events) and signal.h
# (signals) and links neither library; its venue module (venue.c) sends
# orders through the REST client (rest.h, cqexchange).
declare -A MAY_INCLUDE=(
  [core]="core" [journal]="core journal" [exchange]="core exchange"
  [ares]="core journal ares" [feeder]="core exchange feeder"
  [trader]="core journal exchange feeder ares trader" [sim]="core exchange sim" [api]="core api"
  [top]="core journal exchange ares feeder trader sim api top"
)
# Libraries each library may use.
declare -A MAY_LINK=(
  [cqcore]="" [cqjournal]="cqcore" [cqexchange]="cqcore"
  [cqares]="cqjournal cqcore" [cqfeeder]="cqexchange cqcore" [cqtrader]="cqjournal cqexchange cqcore"
  [cqsim]="cqexchange cqcore" [cqapi]="cqcore"
)
# Object-name prefix of each library's members (meson names an object after
# its source path: server/core/log.c -> server_core_log.c.o).
declare -A LIB_PREFIX=(
  [cqcore]=server_core_ [cqjournal]=server_journal_ [cqexchange]=server_exchange_
  [cqares]=server_ares_ [cqfeeder]=server_feeder_ [cqtrader]=server_trader_
  [cqsim]=server_sim_ [cqapi]=api_
)

# ---- 1 and 2: includes ------------------------------------------------------
private_bad=()
layer_bad=()
unknown_bad=()
for dir in "${!DIR_MODULE[@]}"; do
  [ -d "$SRC/$dir" ] || continue
  for f in "$SRC/$dir"/*.c "$SRC/$dir"/*.h; do
    [ -f "$f" ] || continue
    rel=${f#"$SRC"/}
    if [ "$dir" = include/cq ]; then
      base=$(basename "$f" .h)
      mod=${HEADER_OWNER[$base]:-}
      if [ -z "$mod" ]; then
        unknown_bad+=("$rel: public header without an owner module (add it to HEADER_OWNER)")
        continue
      fi
    else
      mod=${DIR_MODULE[$dir]}
    fi
    while IFS= read -r inc; do
      [ -n "$inc" ] || continue
      case $inc in
        cq/*.h)
          h=${inc#cq/}
          h=${h%.h}
          owner=${HEADER_OWNER[$h]:-}
          if [ -z "$owner" ]; then
            unknown_bad+=("$rel includes $inc, a header without an owner module")
          elif [[ " ${MAY_INCLUDE[$mod]} " != *" $owner "* ]]; then
            layer_bad+=("$rel ($mod) includes $inc ($owner): $mod may include ${MAY_INCLUDE[$mod]}")
          fi
          ;;
        */*)
          private_bad+=("$rel includes \"$inc\": a module includes its own private headers by bare name, and no other module's")
          ;;
        *)
          if [ ! -f "$(dirname "$f")/$inc" ] && ! { [ "$dir" = server/core ] && [ "$inc" = version-gen.h ]; }; then
            private_bad+=("$rel includes \"$inc\", which is not in $dir")
          fi
          ;;
      esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done

echo "1..5"
if [ ${#private_bad[@]} -eq 0 ]; then
  ok "modules include no other module's private header"
else
  not_ok "modules include no other module's private header" "${private_bad[@]}"
fi
if [ ${#layer_bad[@]} -eq 0 ]; then
  ok "modules include public headers of the modules below them only"
else
  not_ok "modules include public headers of the modules below them only" "${layer_bad[@]}"
fi
if [ ${#unknown_bad[@]} -eq 0 ]; then
  ok "every public header has an owner module"
else
  not_ok "every public header has an owner module" "${unknown_bad[@]}"
fi

# ---- 3: libraries -----------------------------------------------------------
NM=nm
declare -A LIB_PATH=()
for arg in "$@"; do
  LIB_PATH[${arg%%=*}]=${arg#*=}
done

# "member symbol" lines: nm -A prints "lib.a:member.o:addr T name".
members_of() { ar t "$1" 2>/dev/null | sed 's@.*/@@'; }
defined_in() { "$NM" -g --defined-only "$1" 2>/dev/null | awk 'NF >= 3 { print $3 }' | sort -u; }
used_by() { "$NM" -u "$1" 2>/dev/null | awk '$1 == "U" && $2 ~ /^cq_/ { print $2 }' | sort -u; }

if [ ${#LIB_PATH[@]} -eq 0 ]; then
  echo "ok 4 - # SKIP no libraries given"
  echo "ok 5 - # SKIP no libraries given"
  exit $((failures > 0))
fi

member_bad=()
link_bad=()
for lib in "${!LIB_PATH[@]}"; do
  path=${LIB_PATH[$lib]}
  prefix=${LIB_PREFIX[$lib]:-}
  if [ -z "$prefix" ] || [ ! -f "$path" ]; then
    member_bad+=("$lib ($path): unknown library or missing file")
    continue
  fi
  while IFS= read -r m; do
    [[ $m == "$prefix"* ]] || member_bad+=("$lib holds $m, which is not from its own directory")
  done < <(members_of "$path")
  defs=$(defined_in "$path")
  if [ -z "$defs" ]; then
    member_bad+=("$lib: $NM read no symbols from $path")
    continue
  fi
  allowed=$defs
  for dep in ${MAY_LINK[$lib]}; do
    [ -n "${LIB_PATH[$dep]:-}" ] && allowed+=$'\n'$(defined_in "${LIB_PATH[$dep]}")
  done
  while IFS= read -r sym; do
    [ -n "$sym" ] || continue
    if ! grep -qxF "$sym" <<<"$allowed"; then
      where=""
      for other in "${!LIB_PATH[@]}"; do
        defined_in "${LIB_PATH[$other]}" | grep -qxF "$sym" && where=" (defined in $other)"
      done
      link_bad+=("$lib uses $sym$where; $lib may use ${MAY_LINK[$lib]:-no other library}")
    fi
  done < <(used_by "$path")
done
if [ ${#member_bad[@]} -eq 0 ]; then
  ok "each library holds the objects of its own directory only"
else
  not_ok "each library holds the objects of its own directory only" "${member_bad[@]}"
fi
if [ ${#link_bad[@]} -eq 0 ]; then
  ok "each library uses only the libraries below it"
else
  not_ok "each library uses only the libraries below it" "${link_bad[@]}"
fi
[ "$failures" -eq 0 ]
