#!/usr/bin/env bash
# scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]: a longer fuzzing campaign.
#
#   TARGET   cgds, ckpt, png, jpeg, gif, tiff, monitor, cli, import, list, or all (one after
#            the other, SECONDS each)
#   SECONDS  how long; the corpus grows in BUILD_SAN/fuzz/corpus/TARGET and is kept, so the
#            next campaign starts where this one stopped
#   JOBS=N   N fuzzing processes (libFuzzer's fork mode, default 1) that go on after a crash,
#            a leak, a timeout or an out-of-memory, so one campaign collects every finding
#
# Builds the sanitizer build (BUILD_SAN, default build-san; scripts/common.sh) and the seeds if
# needed. Findings land in BUILD_SAN/fuzz/artifacts/TARGET/ and are listed at the end with the
# command that reproduces each. A crash becomes a regression input once it is understood:
# copy it to tests/fuzz/corpus/TARGET/ under a name that says what it is; `ctest -L fuzz`
# (and so CI) replays it from then on. Exit code: 0 when nothing was found.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TARGETS="cgds ckpt png jpeg gif tiff bmp monitor cli import list"
if [ $# -lt 2 ] || ! grep -qw -- "$1" <<< "$TARGETS all"; then
  echo "usage: scripts/fuzz.sh {${TARGETS// /|}|all} SECONDS [libFuzzer flags...]" >&2
  exit 2
fi
TARGET=$1 SECONDS_=$2
shift 2
cg_have_clang || { echo "scripts/fuzz.sh: needs clang (scripts/test.sh installs it)" >&2; exit 2; }
cg_build_san
(cd "$BUILD_SAN" && ctest -R '^fuzz_seeds$' --output-on-failure > /dev/null) \
  || { echo "scripts/fuzz.sh: making the seeds failed (ctest -R fuzz_seeds in $BUILD_SAN)"; exit 1; }
[ "$TARGET" = all ] && TARGET=$TARGETS
extra=()
JOBS=${JOBS:-1}
[ "$JOBS" -gt 1 ] && extra=(-fork="$JOBS" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
# The same options as under ctest (tests/fuzz/sanitize.cmake).
ASAN_DEFAULT=detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-$ASAN_DEFAULT}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0}
export HWLOC_COMPONENTS=${HWLOC_COMPONENTS:--pci}
rc=0
for t in $TARGET; do
  bash "$ROOT/tests/fuzz/run_fuzz.sh" "$BUILD_SAN/tests/fuzz/fuzz_$t" "$t" "$SECONDS_" \
    "$BUILD_SAN/fuzz" "${extra[@]}" "$@" || rc=1
done
exit $rc
