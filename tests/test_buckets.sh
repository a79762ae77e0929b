#!/usr/bin/env bash
# Bucketed, overlapped gradient all-reduce in real training (cpu backend):
#  - np 2 and np 4: --bucket-mb 0.01 (many buckets) equals --bucket-mb 100 (one bucket),
#    bitwise with --deterministic, and within rounding without it;
#  - np 2: --last-bucket-mb 0.05 (the first layers in a bucket of their own) equals one bucket;
#  - np 4 x batch 2 equals np 1 x batch 8.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
COMMON="train --backend cpu --model-base 8 --model-depth 3 --image-size 32 --steps 4
        --train-samples 64 --val-samples 0 --progress off --threads 1 --seed 3 --report-every 4"
for np in 2 4; do
  b=$((8 / np))
  $MPIRUN -np $np $BIN $COMMON --batch $b --deterministic --bucket-mb 0.01 --params-out $T/s$np.bin > $T/s$np.log
  $MPIRUN -np $np $BIN $COMMON --batch $b --deterministic --bucket-mb 100 --params-out $T/l$np.bin > $T/l$np.log
  echo "np $np, deterministic, --bucket-mb 0.01 vs 100 (bitwise):"
  $CMP $T/s$np.bin $T/l$np.bin 0 bitwise
  $MPIRUN -np $np $BIN $COMMON --batch $b --bucket-mb 0.01 --params-out $T/ns$np.bin > $T/ns$np.log
  $MPIRUN -np $np $BIN $COMMON --batch $b --bucket-mb 100 --params-out $T/nl$np.bin > $T/nl$np.log
  echo "np $np, MPI_Iallreduce, --bucket-mb 0.01 vs 100:"
  $CMP $T/ns$np.bin $T/nl$np.bin 1e-5
done
grep -q "gradient bucket" $T/s4.log && grep "gradient bucket" $T/s4.log
# --last-bucket-mb: the first layers split off as a final bucket of their own change nothing.
$MPIRUN -np 2 $BIN $COMMON --batch 4 --deterministic --bucket-mb 100 --last-bucket-mb 0.05 \
  --params-out $T/t2.bin > $T/t2.log
grep -q " 2 gradient bucket(s)" $T/t2.log ||
  { echo "FAIL --last-bucket-mb 0.05: $(grep "gradient bucket" $T/t2.log)"; exit 1; }
echo "np 2, deterministic, --bucket-mb 100 --last-bucket-mb 0.05 (2 buckets) vs one (bitwise):"
$CMP $T/t2.bin $T/l2.bin 0 bitwise
$MPIRUN -np 1 $BIN $COMMON --batch 8 --params-out $T/one.bin > $T/one.log
echo "np 4 x batch 2 vs np 1 x batch 8:"
$CMP $T/s4.bin $T/one.bin 1e-5
