#!/usr/bin/env bash
# Two ranks on one GPU (the device machine has one; NCCL refuses a GPU shared by two ranks):
#  1. --allreduce auto takes the MPI fallback, says why once, and np 2 x batch 4 gives the
#     parameters of np 1 x batch 8 (fp32, TF32 off, 5 steps) within 1e-5;
#  2. --allreduce nccl fails with one clear message and a non-zero exit, promptly (no hang);
#  3. --deterministic: --bucket-mb 0.05 (several buckets) and 100 (one) are bitwise equal;
#  4. the same with --grad-comm bf16 (host-staged bf16), which also moves half the bytes.
# AdamW's eps is 1e-2 here: with the default 1e-8 the update is about lr * sign(g), and a
# gradient element that is zero up to rounding (different cuDNN algorithms for batch 4 and 8)
# would move by a whole step either way; with a larger eps the update is smooth in g.
# Skipped (77) when nvidia-smi finds no GPU.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
if ! nvidia-smi -L > /dev/null 2>&1 || ! nvidia-smi -L | grep -q '^GPU'; then
  echo "SKIP: no GPU (nvidia-smi -L failed or lists none)"
  exit 77
fi
# Both ranks on the same GPU even where several are visible.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES%%,*}
elif [ "$(nvidia-smi -L | grep -c '^GPU')" -gt 1 ]; then export CUDA_VISIBLE_DEVICES=0; fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
COMMON="train --backend cuda --precision fp32 --tf32 off --model-base 8 --model-depth 3
        --image-size 32 --steps 5 --train-samples 64 --val-samples 0 --progress off --seed 7
        --eps 1e-2 --report-every 5 --cpu-workers 1"
fail=0
# run NAME ARGS...: a job under a time limit; its output in $T/NAME.log; prints it on failure.
run() {
  local name=$1; shift
  local start=$SECONDS
  timeout 300 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL $name: exit code $rc$([ $rc -eq 124 ] && echo ' (timed out)')"; cat "$T/$name.log"
    fail=1
    return 1
  fi
  echo "ran $name ($((SECONDS - start)) s)"
}

# ---- 1. MPI fallback, and equivalence with one rank ----
run np1 $MPIRUN -np 1 $BIN $COMMON --batch 8 --params-out $T/np1.bin
if run np2 $MPIRUN -np 2 $BIN $COMMON --batch 4 --allreduce auto --params-out $T/np2.bin; then
  note=$(grep '^allreduce:' "$T/np2.log")
  echo "notice: $note"
  if [ "$(grep -c '^allreduce:' "$T/np2.log")" -ne 1 ]; then
    echo "FAIL np2: want exactly one 'allreduce:' notice (rank 0)"; cat "$T/np2.log"; fail=1
  fi
  case "$note" in
    "allreduce: mpi ("*"share GPU"*"NCCL cannot"*) echo "PASS auto on a shared GPU takes MPI and says why" ;;
    "allreduce: mpi (built without NCCL"*) echo "PASS auto takes MPI (this build has no NCCL)" ;;
    *) echo "FAIL np2: no MPI-fallback notice naming the shared GPU"; cat "$T/np2.log"; fail=1 ;;
  esac
  if [ -f "$T/np1.bin" ]; then
    echo "np 2 x batch 4 (MPI fallback) vs np 1 x batch 8:"
    $CMP $T/np2.bin $T/np1.bin 1e-5 || { echo "FAIL np 2 and np 1 parameters differ"; fail=1; }
  fi
fi

# ---- 2. --allreduce nccl on a shared GPU: a clear error, no hang ----
start=$SECONDS
timeout 120 $MPIRUN -np 2 $BIN $COMMON --batch 4 --allreduce nccl > "$T/nccl.log" 2>&1
rc=$?
msg=$(grep 'cogpu-dist: error:' "$T/nccl.log")
if [ $rc -eq 0 ]; then
  echo "FAIL --allreduce nccl with two ranks on one GPU succeeded (NCCL should refuse)"; fail=1
elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "FAIL --allreduce nccl with two ranks on one GPU hung (killed after 120 s)"; cat "$T/nccl.log"; fail=1
elif [ "$(grep -c 'cogpu-dist: error:' "$T/nccl.log")" -ne 1 ]; then
  echo "FAIL --allreduce nccl: want exactly one error line, exit code $rc"; cat "$T/nccl.log"; fail=1
elif ! grep -q 'share GPU' <<< "$msg" && ! grep -q 'no NCCL' <<< "$msg"; then
  echo "FAIL --allreduce nccl: the message does not say that two ranks share a GPU"; cat "$T/nccl.log"; fail=1
else
  echo "PASS --allreduce nccl refused in $((SECONDS - start)) s, exit code $rc: $msg"
fi

# ---- 3. deterministic: bucket size does not matter, bitwise ----
# One warm-up job fills an algorithm cache, so both jobs below run the same cuDNN algorithms.
run warm $MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --algo-cache $T/algos
run det_small $MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --algo-cache $T/algos \
  --bucket-mb 0.05 --params-out $T/ds.bin
run det_large $MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --algo-cache $T/algos \
  --bucket-mb 100 --params-out $T/dl.bin
if [ -f "$T/ds.bin" ] && [ -f "$T/dl.bin" ]; then
  grep -h '^allreduce:\|gradient bucket' "$T/det_small.log" "$T/det_large.log"
  grep -q '^allreduce: mpi, fixed rank-order sum' "$T/det_small.log" ||
    { echo "FAIL --deterministic: no notice that it keeps the MPI rank-order sum"; fail=1; }
  echo "np 2 --deterministic, --bucket-mb 0.05 vs 100 (bitwise):"
  $CMP $T/ds.bin $T/dl.bin 0 bitwise || { echo "FAIL bucket size changed the result"; fail=1; }
fi

# ---- 4. --grad-comm bf16 on the host-staged path (issue 15): the per-bucket cast kernels, the
# bf16 copies to and from the host, gsync's bf16 sum and the widening. Deterministic, so several
# buckets and one are bitwise equal; exactly 2 bytes a parameter a step; not fp32's numbers.
run bf_small $MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --algo-cache $T/algos \
  --grad-comm bf16 --bucket-mb 0.05 --params-out $T/bs.bin --metrics-out $T/bs.json
run bf_large $MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --algo-cache $T/algos \
  --grad-comm bf16 --bucket-mb 100 --params-out $T/bl.bin
if [ -f "$T/bs.bin" ] && [ -f "$T/bl.bin" ] && [ -f "$T/ds.bin" ]; then
  echo "np 2 --grad-comm bf16 --deterministic, --bucket-mb 0.05 vs 100 (bitwise):"
  $CMP $T/bs.bin $T/bl.bin 0 bitwise || { echo "FAIL bf16: bucket size changed the result"; fail=1; }
  cmp -s $T/bs.bin $T/ds.bin && { echo "FAIL bf16 gave fp32's parameters bitwise"; fail=1; }
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); b=m["grad_comm_bytes"]; w=2*m["params"]*m["steps"]; print("bf16 bytes %d, want %d" % (b, w)); sys.exit(b != w)' \
    "$T/bs.json" || { echo "FAIL bf16 byte count"; fail=1; }
fi
[ $fail -eq 0 ] && echo "test_gpu_2rank: all passed"
exit $fail
