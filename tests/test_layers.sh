#!/usr/bin/env bash
# The module boundaries are the build's (docs/ARCHITECTURE.md, "Allowed include directions"):
# each folder's library compiles with its own headers and those of the layers below it on the
# include path, nothing else. For every library this compiles a one-line file including a
# header it may use (must compile) and headers it must not (must fail as not found: gcc's
# "No such file or directory", clang's "file not found"),
# with exactly the include directories and definitions the library's own sources get
# (written by tests/CMakeLists.txt to BUILD/layers/LIB.{inc,def}).
set -uo pipefail
CC=$1; BUILD=$2; HAVE_CUDA=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
# try LIB HEADER: compiles "#include HEADER" as LIB's sources are compiled; RC, output in $T/err
try() {
  local lib=$1 header=$2 args=()
  while IFS= read -r d; do [ -n "$d" ] && [ "$d" != /usr/include ] && args+=("-I$d"); done < "$BUILD/layers/$lib.inc"
  while IFS= read -r d; do [ -n "$d" ] && args+=("-D$d"); done < "$BUILD/layers/$lib.def"
  printf '#include "%s"\nint cg_layers_probe;\n' "$header" > "$T/probe.c"
  "$CC" -std=c11 -fsyntax-only "${args[@]}" "$T/probe.c" > "$T/err" 2>&1
}
# check LIB "ALLOWED..." "FORBIDDEN..."
check() {
  local lib=$1 h
  [ -f "$BUILD/layers/$lib.inc" ] || { echo "FAIL $lib: no $BUILD/layers/$lib.inc"; fail=1; return; }
  for h in $2; do
    if try "$lib" "$h"; then echo "ok   $lib may include $h"
    else echo "FAIL $lib: its allowed header $h does not compile:"; head -5 "$T/err"; fail=1; fi
  done
  for h in $3; do
    if try "$lib" "$h"; then echo "FAIL $lib: the forbidden include $h compiles"; fail=1
    elif grep -qF "$h: No such file" "$T/err" || grep -qF "'$h' file not found" "$T/err"; then echo "ok   $lib cannot include $h"
    else echo "FAIL $lib: $h failed for another reason:"; head -5 "$T/err"; fail=1; fi
  done
}
check cogpu_core   "log.h opts.h atomic_file.h"   "comm.h model.h stats.h"
check cogpu_comm   "gsync.h nccl_comm.h log.h"    "model.h cuda_check.h stats.h topo.h"
check cogpu_topo   "topo.h comm.h"                "stats.h loader.h model.h"
check cogpu_report "stats.h metrics.h comm.h"     "loader.h topo.h model.h train.h"
check cogpu_data   "loader.h metrics.h trace.h"   "backend.h model.h train.h cli.h topo.h"
check cogpu_model  "backend.h prep.h gsync.h"     "train.h ckpt.h topo.h kernels.h"
check cogpu_run    "train.h topo.h backend.h loader.h stats.h" "kernels.h cuda_check.h conv.h"
if [ "$HAVE_CUDA" = 1 ]; then
  check cogpu_cuda "kernels.h backend.h feat.h gsync.h" "train.h cli.h topo.h run.h"
fi
exit $fail
