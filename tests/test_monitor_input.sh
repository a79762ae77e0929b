#!/usr/bin/env bash
# cogpu-monitor on awkward input, no MPI needed:
#  - a line with a number out of range (rank 4.7e64, a straggler that is no rank, step 1e300,
#    a string for a number, garbage) is skipped and counted, the previous record shown;
#  - --interval nan / inf / 1e10 / 0 / "1x" is a usage error (exit 2) naming the flag;
#  - a pipe (> 1 MiB, more than a pipe buffer) and a FIFO are read as streams (--once and
#    following);
#  - a file that does not exist yet is waited for and said so once; when it appears it is read.
# Every check runs on the built binary and, where the compiler has the sanitizers, on a
# one-off ASan + UBSan (float-cast-overflow included) build of the same sources, where an
# out-of-range conversion or a bad read aborts.
set -euo pipefail
BUILD=$3
MON=$(cd "$BUILD" && pwd)/cogpu-monitor
D=$(cd "$(dirname "$0")/data" && pwd)
SRC=$(cd "$(dirname "$0")/../src" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL ($CUR): $*"; exit 1; }

# inputs: two good records, then the final record with one field broken
head -2 "$D/stats-4rank.jsonl" > "$T/good2.jsonl"
LAST=$(tail -1 "$D/stats-4rank.jsonl")
BREAKS=('s/"rank": 1,/"rank": 4.7e64,/' 's/"rank": 1,/"rank": -1,/' 's/"rank": 1,/"rank": 1.5,/'
  's/"rank": 1,/"rank": 1e999,/' 's/"rank": 1,/"rank": "1",/' 's/"straggler": 2}/"straggler": 1e300}/'
  's/"straggler": 2}/"straggler": 4}/' 's/"step": 30,/"step": 1e300,/' 's/"step": 30,/"step": "30",/'
  's/"total_steps": 30,/"total_steps": -5,/' 's/"img_per_s": [0-9.]*/"img_per_s": -7/'
  's/"step_ms": [0-9.]*/"step_ms": 1e300/' 's/"imbalance": {"step_ms": [0-9.e+-]*/"imbalance": {"step_ms": 1e300/'
  's/"ranks": \[/"ranks": [7, /' 's/.*/{"step": 3/' 's/.*/not json at all/')

checks() {
  local M=$1 i=0
  CUR="$2: bad lines"
  for b in "${BREAKS[@]}"; do
    i=$((i + 1))
    { cat "$T/good2.jsonl"; sed "$b" <<< "$LAST"; } > "$T/bad$i.jsonl"
    cmp -s "$T/bad$i.jsonl" <({ cat "$T/good2.jsonl"; echo "$LAST"; }) && fail "sed '$b' changed nothing"
    "$M" --once "$T/bad$i.jsonl" > "$T/out" 2> "$T/err" || fail "'$b': exit $?: $(cat "$T/err")"
    grep -q "step 20/30 (67%)" "$T/out" || fail "'$b': not the last good record: $(head -1 "$T/out")"
    grep -q "^  1 bad line skipped (last: " "$T/out" || fail "'$b': no count of the bad line"
    ! grep -q -- "-2147483648\|runtime error" "$T/out" "$T/err" || fail "'$b': $(cat "$T/err")"
  done
  # only bad lines: exit 1 naming the count and the reason
  sed "${BREAKS[0]}" <<< "$LAST" > "$T/onlybad.jsonl"; echo garbage >> "$T/onlybad.jsonl"
  if "$M" --once "$T/onlybad.jsonl" > /dev/null 2> "$T/err"; then fail "no valid record accepted"; fi
  grep -q "no valid record (2 bad lines skipped; last: " "$T/err" || fail "$(cat "$T/err")"
  echo "PASS [$2] out-of-range numbers and garbage lines are skipped and counted"

  CUR="$2: control bytes"
  # host and GPU names from the file reach the terminal as text: ESC, BEL, newline become '?'
  sed 's/"host": "vm", "gpu": "-"/"host": "\\u001b[2Jevil\\u0007", "gpu": "g\\npu\\u009b"/' <<< "$LAST" > "$T/esc.jsonl"
  grep -q 'u001b' "$T/esc.jsonl" || fail "sed changed nothing"
  "$M" --once "$T/esc.jsonl" > "$T/out" 2> "$T/err" || fail "exit $?: $(cat "$T/err")"
  ! LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$T/out" || fail "a control byte reached the output"
  ! LC_ALL=C grep -q $'\xc2[\x80-\x9f]' "$T/out" || fail "a C1 control (UTF-8) reached the output"
  grep -q '?\[2Jevil? *g?pu?? ' "$T/out" || fail "names not shown: $(sed -n 3p "$T/out")"
  echo "PASS [$2] control bytes in host and GPU names are shown as '?'"

  CUR="$2: --interval"
  for v in nan inf -inf -1 0 0.01 1e10 86401 abc 1x ""; do
    set +e; timeout 5 "$M" --plain --interval "$v" "$T/good2.jsonl" > /dev/null 2> "$T/err"; rc=$?; set -e
    [ $rc -eq 2 ] || fail "--interval '$v': exit $rc, want 2"
    grep -q -- "--interval" "$T/err" || fail "--interval '$v': message does not name the flag"
  done
  set +e; timeout 5 "$M" "$T/good2.jsonl" --interval > /dev/null 2> "$T/err"; rc=$?; set -e
  [ $rc -eq 2 ] && grep -q -- "--interval" "$T/err" || fail "--interval without a value: exit $rc"
  for v in 0.05 86400 1e0; do "$M" --once --interval $v "$T/good2.jsonl" > /dev/null || fail "$v refused"; done
  echo "PASS [$2] --interval out of 0.05..86400, nan, inf, junk: exit 2 naming the flag"

  CUR="$2: pipes"
  for i in $(seq 300); do cat "$D/stats-4rank.jsonl"; done > "$T/big.jsonl" # ~3.6 MB
  sed 's/^cogpu-monitor stats-4rank.jsonl /cogpu-monitor \/dev\/stdin /' "$D/stats-4rank.monitor.txt" > "$T/want"
  cat "$T/big.jsonl" | timeout 20 "$M" --once /dev/stdin > "$T/out" 2> "$T/err" || fail "pipe: $(cat "$T/err")"
  diff -u "$T/want" "$T/out" || fail "pipe --once"
  # --stats-out /dev/stdout | cogpu-monitor /dev/stdin: the job's log lines are not bad records
  { echo "[rank 0 host] step 1/30 loss 0.7"; echo "  a log line"; cat "$D/stats-4rank.jsonl"; } |
    timeout 20 "$M" --once /dev/stdin > "$T/out" 2> "$T/err" || fail "pipe with log lines"
  diff -u "$T/want" "$T/out" || fail "a pipe's log lines were counted as bad"
  timeout 20 "$M" --once /dev/stdin < "$T/big.jsonl" > "$T/out" || fail "redirected file"
  diff -u "$T/want" "$T/out" || fail "redirected file --once"
  # following a pipe: the latest record of what arrived, ends at the final one; a pipe ending
  # early ends it too
  { for i in $(seq 300); do cat "$T/good2.jsonl"; done; echo "$LAST"; } > "$T/big1.jsonl"
  cat "$T/big1.jsonl" | timeout 20 "$M" --plain /dev/stdin > "$T/out" 2> "$T/err" || fail "follow pipe"
  grep -q "step 30/30 (100%) finished" "$T/out" || fail "follow pipe: $(head -1 "$T/out")"
  set +e; head -2 "$D/stats-4rank.jsonl" | timeout 20 "$M" --plain /dev/stdin > "$T/out" 2> "$T/err"
  rc=$?; set -e
  [ $rc -eq 0 ] && grep -q "ended before the job's final record" "$T/err" || fail "early end: $rc"
  set +e; timeout 20 "$M" --once /dev/stdin < /dev/null 2> "$T/err"; rc=$?; set -e
  [ $rc -eq 1 ] && grep -q "no complete record" "$T/err" || fail "empty stream: exit $rc"
  # a FIFO opened before its writer; records arrive one by one
  mkfifo "$T/fifo"
  (for n in 1 2 3; do sleep 0.3; sed -n ${n}p "$D/stats-4rank.jsonl"; done) > "$T/fifo" &
  timeout 20 "$M" --plain --interval 0.05 "$T/fifo" > "$T/out" 2> "$T/err" || fail "FIFO: $(cat "$T/err")"
  wait
  [ "$(grep -c '^cogpu-monitor' "$T/out")" -eq 3 ] || fail "FIFO follow: want 3 records"
  (sleep 0.2; cat "$D/stats-4rank.jsonl") > "$T/fifo" &
  timeout 20 "$M" --once "$T/fifo" > "$T/out" || fail "FIFO --once"
  wait
  grep -q "step 30/30 (100%) finished" "$T/out" || fail "FIFO --once: $(head -1 "$T/out")"
  rm "$T/fifo"
  echo "PASS [$2] pipes, redirected stdin and FIFOs, --once and following"

  CUR="$2: missing file"
  set +e; timeout 1 "$M" --plain --interval 0.05 "$T/none.jsonl" > /dev/null 2> "$T/err"; rc=$?; set -e
  [ $rc -eq 124 ] || fail "a missing file ended the monitor: exit $rc"
  [ "$(grep -c "none.jsonl does not exist yet; waiting" "$T/err")" -eq 1 ] || fail "$(cat "$T/err")"
  [ "$(wc -l < "$T/err")" -eq 1 ] || fail "said more than once: $(cat "$T/err")"
  # it appears (empty first, then the job writes): read, followed to the final record
  rm -f "$T/late.jsonl"
  (sleep 0.3; : > "$T/late.jsonl"; sleep 0.3; cat "$D/stats-4rank.jsonl" > "$T/late.jsonl") &
  timeout 20 "$M" --plain --interval 0.05 "$T/late.jsonl" > "$T/out" 2> "$T/err" || fail "late file"
  wait
  grep -q "step 30/30 (100%) finished" "$T/out" || fail "late file not followed to the end"
  grep -q "late.jsonl does not exist yet" "$T/err" && grep -q "waiting for the first record" "$T/err" ||
    fail "$(cat "$T/err")"
  if "$M" --once "$T/none.jsonl" 2> "$T/err"; then fail "--once on a missing file"; fi
  grep -q "none.jsonl: No such file" "$T/err" || fail "$(cat "$T/err")"
  set +e; timeout 5 "$M" --plain "$T" > /dev/null 2> "$T/err"; rc=$?; set -e
  [ $rc -eq 1 ] && grep -q "Is a directory" "$T/err" || fail "a directory: exit $rc"
  echo "PASS [$2] a missing file is waited for, said once, and read when it appears"
}

checks "$MON" release
CC=${CC:-cc}
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all"
if $CC -std=c11 -D_GNU_SOURCE -O1 -g $SAN -I"$SRC/report" -I"$SRC/base" "$SRC/report/monitor_main.c" "$SRC/report/monitor.c" \
    "$SRC/base/json.c" -lm -o "$T/mon-san" 2> "$T/cc.err" && "$T/mon-san" --help > /dev/null 2>&1; then
  export ASAN_OPTIONS=detect_leaks=0
  checks "$T/mon-san" sanitizers
else
  echo "SKIP sanitizer build ($CC: $(head -1 "$T/cc.err"))"
fi
