#!/usr/bin/env bash
# An injected NaN on the CUDA backend (issue 6), one rank:
#  1. fp16: the dynamic loss scaler skips step 3 (weights untouched, scale halved), the skip is
#     reported and counted, training goes on to the end (exit 0); the checkpoint written at
#     the end carries the scaler's state (scale, skipped count), and a run resumed from it
#     starts with that scale;
#  2. fp32 and bf16 (no loss scaling): the same fault stops the job non-zero, naming step 3.
# Skipped (77) when nvidia-smi finds no GPU.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
if ! nvidia-smi -L > /dev/null 2>&1 || ! nvidia-smi -L | grep -q '^GPU'; then
  echo "SKIP: no GPU (nvidia-smi -L failed or lists none)"
  exit 77
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cuda --model-base 8 --model-depth 3 --image-size 32 --train-samples 64
        --val-samples 0 --progress off --seed 7 --batch 8 --report-every 5 --cpu-workers 1"

timeout 300 $MPIRUN -np 1 $BIN $COMMON --precision fp16 --steps 10 --test-nan-step 3 \
    --checkpoint-dir $T/ck > $T/fp16.log 2>&1; rc=$?
echo "fp16 --test-nan-step 3: exit $rc"
grep -E "^fp16|^final|error" $T/fp16.log | sed 's/^/  /'
[ $rc -eq 0 ] || { echo "FAIL fp16: exit code $rc, want 0"; cat $T/fp16.log; fail=1; }
grep -q "^fp16: step 3 skipped (inf/NaN gradients)" $T/fp16.log || { echo "FAIL fp16: the skip of step 3 is not reported"; fail=1; }
grep -q "^final: 10 steps" $T/fp16.log || { echo "FAIL fp16: training did not go on to step 10"; fail=1; }
grep -q "^fp16 loss scaling: [1-9][0-9]* step(s) skipped" $T/fp16.log || { echo "FAIL fp16: no skip count"; fail=1; }
$BIN inspect $T/ck/ckpt-0000000010.cgck > $T/inspect.log || { echo "FAIL fp16: no valid checkpoint"; cat $T/inspect.log; fail=1; }
grep "loss scaler" $T/inspect.log | sed 's/^/  /'
grep -q "loss scaler:   scale [0-9]*, [0-9]* clean steps since the last change, [1-9][0-9]* steps skipped" $T/inspect.log ||
  { echo "FAIL fp16: the checkpoint lacks the scaler state"; fail=1; }
scale=$(sed -n 's/^loss scaler:   scale \([0-9.e+]*\),.*/\1/p' $T/inspect.log)
timeout 300 $MPIRUN -np 1 $BIN $COMMON --precision fp16 --steps 12 --checkpoint-dir $T/ck \
    --resume > $T/resume.log 2>&1 || { echo "FAIL fp16 resume"; cat $T/resume.log; fail=1; }
grep "^resumed from" $T/resume.log | sed 's/^/  /'
grep -q "^resumed from .*: step 10 .*loss scale $scale\$" $T/resume.log ||
  { echo "FAIL fp16 resume: not at step 10 with loss scale $scale"; fail=1; }

for p in fp32 bf16; do
  timeout 300 $MPIRUN -np 1 $BIN $COMMON --precision $p --steps 10 --test-nan-step 3 \
      > $T/$p.log 2>&1; rc=$?
  echo "$p --test-nan-step 3: exit $rc"
  grep error $T/$p.log | sed 's/^/  /'
  [ $rc -ne 0 ] || { echo "FAIL $p: exit code 0"; cat $T/$p.log; fail=1; }
  grep -q "NaN/Inf loss at step 3 " $T/$p.log || { echo "FAIL $p: step 3 not named"; cat $T/$p.log; fail=1; }
done
[ $fail -eq 0 ] && echo "test_gpu_nan: all passed"
exit $fail
