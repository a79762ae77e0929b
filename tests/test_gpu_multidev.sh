#!/usr/bin/env bash
# Two ranks on two GPUs (issue 15): every CUDA call on the rank's own device.
# Rank r takes GPU r by its local rank, as the trainer does (CUDA_VISIBLE_DEVICES unset), with
# COGPU_CHECK_DEVICE=1 (each backend op asserts the thread's device, each stream and event is
# checked against the device it was made on) and --trace-out on (the events that were once made
# before cudaSetDevice). For --allreduce mpi and --allreduce nccl, np 2 x batch 4 must give the
# parameters of np 1 x batch 8 (fp32, TF32 off, eps 1e-2 as in test_gpu_2rank.sh), then both
# run again under compute-sanitizer, where it is installed, which must report no error.
# Skipped (77) with fewer than two GPUs. Nothing here has run on a multi-GPU machine yet.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "${ngpu:-0}" -lt 2 ]; then
  echo "SKIP: needs 2 GPUs, nvidia-smi -L lists ${ngpu:-0}"
  exit 77
fi
unset CUDA_VISIBLE_DEVICES
export COGPU_CHECK_DEVICE=1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
COMMON="train --backend cuda --precision fp32 --tf32 off --model-base 8 --model-depth 3
        --image-size 32 --steps 5 --train-samples 64 --val-samples 0 --progress off --seed 7
        --eps 1e-2 --report-every 5 --cpu-workers 1"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
fail=0
# run NAME ARGS...: a job under a time limit; its output in $T/NAME.log; prints it on failure.
run() {
  local name=$1; shift
  local start=$SECONDS
  timeout 600 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL $name: exit code $rc$([ $rc -eq 124 ] && echo ' (timed out)')"; cat "$T/$name.log"
    fail=1
    return 1
  fi
  echo "ran $name ($((SECONDS - start)) s)"
}

run np1 $MPIRUN -np 1 $BIN $COMMON --batch 8 --params-out $T/np1.bin
for ar in mpi nccl; do
  tol=1e-5; [ $ar = nccl ] && tol=1e-4 # NCCL's reduction order and scaling are its own
  if run $ar $MPIRUN -np 2 $BIN $COMMON --batch 4 --allreduce $ar --trace-out $T/tr_$ar \
      --params-out $T/$ar.bin; then
    grep -q "^allreduce: $ar" "$T/$ar.log" ||
      { echo "FAIL $ar: the run did not use --allreduce $ar"; grep '^allreduce' "$T/$ar.log"; fail=1; }
    ls "$T"/tr_$ar* > /dev/null 2>&1 || { echo "FAIL $ar: no trace written"; fail=1; }
    [ -f "$T/np1.bin" ] && { $CMP $T/$ar.bin $T/np1.bin $tol ||
      { echo "FAIL $ar: np 2 on GPUs 0 and 1 differs from np 1"; fail=1; }; }
  fi
  if [ -n "$SAN" ]; then
    run san_$ar $MPIRUN -np 2 $SAN --error-exitcode 9 --tool memcheck $BIN $COMMON --batch 4 \
      --steps 3 --allreduce $ar --trace-out $T/trs_$ar &&
      echo "PASS $ar under compute-sanitizer"
  else
    echo "note: compute-sanitizer not found: the sanitizer runs are left out"
  fi
done
[ $fail -eq 0 ] && echo "test_gpu_multidev: all passed"
exit $fail
