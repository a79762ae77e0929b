#!/usr/bin/env bash
# Start-up failures at every stage of a training run's set-up (src/run/run_setup.c), CPU backend:
# each ends with exit code 2 and one message from rank 0, after undoing what was made.
#   settings   ranks started with different settings (synthetic vs files, --lr, --report-every,
#              --lr-find, --trace-out or --resume on one rank only), or reading different
#              copies of the data (normal mode only: one command line per rank)
#   outputs    an output path in a missing directory; a --checkpoint-dir holding another run's
#              checkpoints
#   placement  --backend cuda without a usable GPU (skipped where one is); a shape that cannot
#              fit in memory (pre-flight)
#   data       a missing --data; a missing --val-data after --data opened; --check-data finding
#              bad samples after both sources opened
#   resume     a file that is not a checkpoint; a checkpoint of another model shape
#   devices    --allreduce nccl on the cpu backend: refused after the parameters, the AdamW
#              moments of a resumed checkpoint, the gradient sync and the trace exist
# (Nothing after the backend's creation can fail.) The leak modes also run one short job that
# passes set-up (resumed, validation, checkpoints, trace, outputs): it ends along the same
# teardown.
# MODE (4th argument):
#   (none)     each case on 2 ranks under mpirun: every rank exits 2, the message comes once;
#   asan       each case in one process (no mpirun) of the sanitizer build with LeakSanitizer on:
#              no memory error and no leak. Open MPI unloads its components before exit, which
#              leaves their allocations with unnamed frames (tests/fuzz/sanitize.cmake), so
#              the library named by CG_NODLCLOSE (tests/nodlclose.c) keeps them loaded and the
#              slow unwinder follows their frames into libmpi, whose allocations lsan.supp names;
#   valgrind   each case in one process under valgrind (exit 77 when it is not installed): no
#              memory error, and no leak but those lsan.supp allows (vg_check below).
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3; MODE=${4:-}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
if [ "$MODE" = valgrind ] && ! command -v valgrind > /dev/null; then
  echo "SKIP: valgrind is not installed"; exit 77
fi
if [ "$MODE" = asan ] && [ ! -f "${CG_NODLCLOSE:-}" ]; then
  echo "FAIL: CG_NODLCLOSE does not name the library (tests/CMakeLists.txt sets it)"; exit 1
fi
SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 --steps 1
       --threads 1 --cpu-workers 1 --train-samples 8 --val-samples 0 --progress off"
"$BUILD/tests/test_badimg" --make "$T/ds" > /dev/null || { echo "FAIL: no datasets"; exit 1; }
timeout 120 $BIN $SMALL --checkpoint-dir "$T/ck" > /dev/null 2>&1 || { echo "FAIL: no checkpoint"; exit 1; }
CK=$(ls "$T"/ck/*.cgck | head -1)
echo "not a checkpoint" > "$T/junk.cgck"

# run NAME ARGS...: one job (mode as above); sets RC and OUT (stdout + stderr)
run() {
  local name=$1; shift
  OUT="$T/$name.log"
  case "$MODE" in
    asan)
      LD_PRELOAD="$CG_NODLCLOSE" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:fast_unwind_on_malloc=0" \
        timeout 300 $BIN "$@" > "$OUT" 2>&1 ;;
    valgrind)
      timeout 300 valgrind --leak-check=full --show-leak-kinds=definite,indirect --keep-debuginfo=yes \
        --num-callers=40 --log-file="$T/$name.vg" $BIN "$@" > "$OUT" 2>&1 ;;
    *) timeout 120 $MPIRUN -np 2 $BIN "$@" > "$OUT" 2>&1 ;;
  esac
  RC=$?
}
# valgrind's verdict on $T/NAME.vg: memory errors, and leaks of our own: a stack through none
# of the libraries tests/fuzz/lsan.supp names (they keep their state until exit), Open MPI's
# components (valgrind names them after their unloading: --keep-debuginfo) or the loader.
vg_check() {
  python3 - "$1" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
bad = 0
for b in re.split(r"\n==\d+== \n", log):
    if re.search(r"Invalid (read|write|free)|uninitialised|Mismatched free|overlap", b):
        bad += 1; print(b[:1500])
    elif "are definitely lost" in b or "are indirectly lost" in b:
        if not re.search(r"libmpi|libopen-|libpmix|libhwloc|libevent|libgomp|libomp|"
                         r"libopenblas|mca_|ld-linux", b):
            bad += 1; print(b[:1500])
sys.exit(1 if bad else 0)
PY
}
# expect NAME RC TEXT: that exit code, TEXT in the output, one error message (none for 0), a
# clean checker
expect() {
  local name=$1 want=$2 text=$3 ok=1
  [ "$RC" -eq "$want" ] || { echo "FAIL $name: exit code $RC, want $want"; ok=0; }
  grep -qF -- "$text" "$OUT" || { echo "FAIL $name: no '$text' in the output"; ok=0; }
  local n; n=$(grep -c "cogpu-dist: error:" "$OUT")
  [ "$n" -eq $(( want ? 1 : 0 )) ] || { echo "FAIL $name: $n error lines"; ok=0; }
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$OUT"; then
    echo "FAIL $name: sanitizer report"; ok=0
  fi
  # mpirun's teardown signal after a start-up error is no stop: no line promising a checkpoint
  if [ "$want" -ne 0 ] && grep -q "received during step .*stopping at the next" "$OUT"; then
    echo "FAIL $name: a stop line after the error"; ok=0
  fi
  if [ "$MODE" = valgrind ] && ! vg_check "$T/$name.vg"; then
    echo "FAIL $name: valgrind found the errors above"; ok=0
  fi
  if [ $ok -eq 1 ]; then echo "PASS $name: exit $RC: $(grep -m1 -F -- "$text" "$OUT" | cut -c1-150)"
  else cat "$OUT"; fail=1; fi
}

# ---- outputs ----
run out_dir $SMALL --metrics-out "$T/none/m.json"
expect out_dir 2 "--metrics-out: directory '$T/none' of '$T/none/m.json' does not exist"
run out_ckpt $SMALL --checkpoint-dir "$T/ck"
expect out_ckpt 2 "--checkpoint-dir $T/ck already holds 1 checkpoint(s)"

# ---- placement ----
run gpu $SMALL --backend cuda
if [ "$RC" -eq 0 ]; then echo "skip gpu: a GPU is usable here"
else expect gpu 2 "--backend cuda: no usable GPU"; fi
run huge train --backend cpu --model-base 1024 --model-depth 6 --image-size 8192 --batch 65536 \
    --steps 1 --progress off
expect huge 2 "not enough host memory: this run needs at least"

# ---- data ----
run data_missing $SMALL --data "$T/nothing"
expect data_missing 2 "$T/nothing: No such file or directory"
run data_val $SMALL --data "$T/ds/good" --val-data "$T/nothing"
expect data_val 2 "$T/nothing: No such file or directory"
run data_check $SMALL --data "$T/ds/mixed" --check-data
expect data_check 2 "--check-data: 2 bad sample(s)"

# ---- resume ----
run resume_junk $SMALL --resume "$T/junk.cgck"
expect resume_junk 2 "--resume: $T/junk.cgck: not a cogpu-dist checkpoint"
run resume_shape $SMALL --model-base 8 --resume "$CK"
expect resume_shape 2 "--model-base: the checkpoint has 4, the command line 8" # stored settings


# ---- devices: the last stage that can fail, with everything before it made ----
run devices $SMALL --resume "$CK" --allreduce nccl --trace-out "$T/tr"
expect devices 2 "--allreduce nccl needs the cuda backend"

# ---- a run that set-up lets through ends along the same teardown (leak modes only) ----
if [ -n "$MODE" ]; then
  # a checkpoint of the same data (a resumed run cannot change --data: run_settings.h)
  timeout 120 $BIN $SMALL --data "$T/ds/mixed" --skip-bad --val-fraction 0.25 \
      --checkpoint-dir "$T/ckm" > /dev/null 2>&1 || { echo "FAIL: no checkpoint of ds/mixed"; exit 1; }
  run full $SMALL --data "$T/ds/mixed" --skip-bad --val-fraction 0.25 --steps 4 --val-every 2 \
      --report-every 2 --resume "$T/ckm" --checkpoint-dir "$T/ck2" --trace-out "$T/tr2" \
      --metrics-out "$T/m.json" --params-out "$T/p.bin"
  expect full 0 "final validation:"
fi

# settings and data: ranks started with different command lines, or reading different copies
# of the data (MPMD: one command line per rank), end at once with exit 2 naming the rank; the
# synthetic-vs-files case used to hang in mismatched collectives until killed
if [ -z "$MODE" ]; then
  $BUILD/bench/cogpu-bench make-pngs --out "$T/dA" --count 12 --image-size 32 > /dev/null
  cp -r "$T/dA" "$T/dB"
  rm "$T/dB/images/$(ls "$T/dB/images" | head -1)" "$T/dB/masks/$(ls "$T/dB/masks" | head -1)"
  mpmd() { # mpmd NAME ARGS0 -- ARGS1: rank 0 and rank 1 with their own arguments
    local name=$1; shift
    local a=() b=()
    while [ "$1" != "--" ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    OUT="$T/$name.log"
    timeout 60 $MPIRUN -np 1 $BIN ${BASE:-$SMALL} "${a[@]}" : -np 1 $BIN ${BASE:-$SMALL} "${b[@]}" \
      > "$OUT" 2>&1
    RC=$?
  }
  mpmd kind --steps 1 -- --data "$T/dA"
  expect kind 2 "rank 1 has --data files (rank 0: synthetic)"
  mpmd lr --lr 0.001 -- --lr 0.002
  expect lr 2 "rank 1 has --lr 0.002 (rank 0: 0.001)"
  mpmd report --report-every 2 -- --report-every 3  # not stored, but decides the collectives
  expect report 2 "rank 1 has --report-every 3 (rank 0: 2)"
  # --lr-find (not stored) adds collectives every step: rank 0 in them alone hung until the
  # watchdog; --trace-out on one rank hung in its start-up check for ever
  BASE="${SMALL/--steps 1/}" mpmd lrfind --lr-find 4 -- --steps 4
  expect lrfind 2 "rank 1 has --lr-find 0 (rank 0: 4)"
  mpmd trace --trace-out "$T/trc" --
  expect trace 2 "rank 1 has --trace-out off (rank 0: on)"
  mpmd resume1 -- --resume "$T/ck"
  expect resume1 2 "some ranks have --resume, others without"
  mpmd copies --data "$T/dA" -- --data "$T/dB"
  expect copies 2 "rank 1 reads other data than rank 0: 9 training / 2 validation samples (rank 0: 10 / 2)"
fi

[ $fail -eq 0 ] && echo "PASS every set-up stage fails cleanly${MODE:+ ($MODE)}"
exit $fail
