#!/usr/bin/env bash
# run_fuzz.sh FUZZER NAME SECONDS WORK [libFuzzer flags...]: one bounded campaign of a target.
#
#   SECONDS > 0  fuzz that long, starting from WORK/corpus/NAME (new inputs are kept there),
#                WORK/seeds/NAME (make_seeds.sh) and tests/fuzz/corpus/NAME (the regression
#                inputs, checked in: every one is run first, so a fixed bug stays fixed);
#   SECONDS = 0  replay only: every seed and regression input once, then stop.
# A crash, leak, UB report, timeout or out-of-memory leaves its input in WORK/artifacts/NAME/
# and fails (libFuzzer's exit code); the last lines say how to reproduce it. Used by the ctest
# label `fuzz` (tests/fuzz/CMakeLists.txt) and by scripts/fuzz.sh.
set -uo pipefail
FUZZER=$1 NAME=$2 SECONDS_=$3 WORK=$4
shift 4
HERE=$(cd "$(dirname "$0")" && pwd)
REGRESS=$HERE/corpus/$NAME
CORPUS=$WORK/corpus/$NAME
ART=$WORK/artifacts/$NAME
mkdir -p "$CORPUS" "$ART" "$WORK/seeds/$NAME"
dirs=("$WORK/seeds/$NAME")
[ -d "$REGRESS" ] && dirs+=("$REGRESS")

# Bounds: an input slower than 10 s, a process over 2 GiB or one malloc over the target's limit
# is a finding. Inputs stay a little larger than the biggest seed so mutations stay fast.
flags=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$ART/" -print_final_stats=1)
case $NAME in
  cgds) flags+=(-max_len=8192) ;;
  ckpt) flags+=(-max_len=16384) ;;
  # png_io.c's own largest buffer is an interlaced image at the pixel limit (~537 MB for
  # 16-bit RGB as a mask): 1 GiB in one malloc is beyond what the decoder may ask for.
  png) flags+=(-max_len=4096 -malloc_limit_mb=1024) ;;
  # jpeg_io.c's largest buffers are libjpeg's: a progressive file's coefficients at the pixel
  # limit (~360 MB for 4:4:4), so 1 GiB in one malloc is a finding here too.
  jpeg) flags+=(-max_len=4096 -malloc_limit_mb=1024) ;;
  # gif_io.c holds one byte per pixel of the first frame, tiff_io.c a band of rows and bmp_io.c
  # a row (an RLE file: a byte a pixel), all bounded by fuzz_image.h's limit of 4 Mpixels:
  # 256 MiB in one malloc is a finding
  gif|tiff|bmp) flags+=(-max_len=8192 -malloc_limit_mb=256) ;;
  monitor) flags+=(-max_len=16384 -dict="$HERE/monitor.dict") ;;
  cli) flags+=(-max_len=2048) ;;
  list) flags+=(-max_len=2048 -dict="$HERE/list.dict") ;;
  # an accepted file of the seed model allocates its few hundred weights; a hostile one may
  # claim a model of billions, which must be refused before anything that size is allocated
  import) flags+=(-max_len=8192 -malloc_limit_mb=256) ;;
esac
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}symbolize=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1
LOG=$ART$([ "$SECONDS_" -eq 0 ] && echo .replay).log
START=$WORK/artifacts/.$NAME.start # artifacts newer than this are this run's
touch "$START"
if [ "$SECONDS_" -eq 0 ]; then
  "$FUZZER" "${flags[@]}" -runs=0 "$@" "${dirs[@]}" > "$LOG" 2>&1 &
else
  "$FUZZER" "${flags[@]}" -max_total_time="$SECONDS_" "$@" "$CORPUS" "${dirs[@]}" > "$LOG" 2>&1 &
fi
pid=$!
wait $pid
rc=$?
# A fuzzer that stops on a finding exits without the OpenMP runtime's (libomp) clean-up, which
# leaves its registration file behind.
rm -f /dev/shm/__KMP_REGISTERED_LIB_${pid}_*
# Inputs executed: libFuzzer's final statistics, or its last "#N ..." status line (fork mode).
execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$LOG" | tail -1)
[ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$LOG" | tail -1 | tr -d '#')
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$LOG" | tail -1)
found=$(find "$ART" -type f -newer "$START" | wc -l)
what=$([ "$SECONDS_" -eq 0 ] && echo "replay" || echo "$SECONDS_ s")
echo "fuzz_$NAME: ${execs:-?} executions ($what), ${cov:-no coverage line}," \
  "corpus $(find "$CORPUS" -type f | wc -l) files, $found new artifact(s) in $ART; log $LOG"
if [ $rc -ne 0 ] || { [ "$found" -gt 0 ] && grep -q -- '-ignore_crashes=1' <<< "$*"; }; then
  echo "fuzz_$NAME: FAILED (exit $rc). The report:"
  report='^==[0-9]+== ?ERROR|runtime error:|^ALARM|deadly signal|fuzz target exited|out-of-memory \('
  grep -E -B2 -A30 "$report" "$LOG" | head -60
  # crash-*, leak-*, timeout-*, oom-*, slow-unit-*: named by the SHA-1 of the input
  find "$ART" -type f -newer "$START" | sort | while read -r a; do
    echo "fuzz_$NAME: reproduce: $FUZZER $a"
  done
  echo "fuzz_$NAME: a crash becomes a regression input: cp ARTIFACT $REGRESS/<what-it-is>"
  [ $rc -eq 0 ] && rc=1
fi
exit $rc
