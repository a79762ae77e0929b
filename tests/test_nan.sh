#!/usr/bin/env bash
# An injected NaN (issue 6), CPU backend (fp32: no loss scaling), 2 ranks under mpirun:
# --test-nan-step 3 makes step 3's loss and gradient NaN. The job stops non-zero, naming step 3
# and the last good checkpoint (step 2), which is not overwritten: no checkpoint of a later
# step appears although one was due at step 4. Resuming from it without the fault trains to the
# end and reaches bitwise the weights of a run that never saw the fault. (The fp16 case — the
# scaler skips the step and training goes on — needs a GPU: test_gpu_nan.sh.)
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7 --batch 4 --steps 20"

for every in 100 1; do # reports every step (the NaN seen at once) and rarely (one step later)
  dir=$T/r$every
  timeout 60 $MPIRUN -np 2 $BIN $COMMON --report-every $every --test-nan-step 3 \
      --checkpoint-dir $dir --checkpoint-every 2 > $T/nan$every.log 2>&1; rc=$?
  echo "--test-nan-step 3, reports every $every step(s): exit $rc"
  grep "error" $T/nan$every.log | sed 's/^/  /'
  [ $rc -ne 0 ] || { echo "FAIL: exit code 0"; fail=1; }
  grep -q "cogpu-dist: error: NaN/Inf loss at step 3 .*the last good checkpoint is $dir/ckpt-0000000002.cgck (step 2)" $T/nan$every.log ||
    { echo "FAIL: no message naming step 3 and the checkpoint of step 2"; cat $T/nan$every.log; fail=1; }
  [ "$(cd $dir && ls *.cgck)" = "ckpt-0000000002.cgck" ] ||
    { echo "FAIL: checkpoints left: $(ls $dir)"; fail=1; }
  grep -qx "ckpt-0000000002.cgck" $dir/last || { echo "FAIL: $dir/last does not name step 2"; fail=1; }
  $BIN inspect $dir/ckpt-0000000002.cgck > $T/inspect.log || { echo "FAIL: step 2 is not valid"; cat $T/inspect.log; fail=1; }
done

# The last good checkpoint is good: resumed without the fault it reaches the clean run's weights.
$MPIRUN -np 2 $BIN $COMMON --params-out $T/clean.bin > $T/clean.log 2>&1 || { echo "FAIL clean run"; fail=1; }
$MPIRUN -np 2 $BIN $COMMON --checkpoint-dir $T/r100 --resume --params-out $T/resumed.bin \
    > $T/resumed.log 2>&1 || { echo "FAIL resume"; cat $T/resumed.log; fail=1; }
grep "^resumed from" $T/resumed.log
$CMP $T/resumed.bin $T/clean.bin 0 bitwise || fail=1
# Without --checkpoint-dir the message says there is none.
timeout 60 $MPIRUN -np 1 $BIN $COMMON --test-nan-step 5 > $T/nockpt.log 2>&1
grep -q "NaN/Inf loss at step 5 .*the last good checkpoint is none (no --checkpoint-dir)" $T/nockpt.log ||
  { echo "FAIL: no-checkpoint message"; cat $T/nockpt.log; fail=1; }
[ $fail -eq 0 ] && echo "test_nan: all passed"
exit $fail
