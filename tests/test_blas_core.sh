#!/usr/bin/env bash
# OpenBLAS's kernels for this CPU (src/model/blas_core.h), through the real binary:
#  1. on a CPU with AVX2 + FMA the cpu backend never runs OpenBLAS's pre-AVX2 kernels (Debian's
#     0.3.21 takes newer CPUs for "Prescott"; cogpu-dist restarts itself with the kernels the CPU
#     supports and says so in the banner), under mpirun with 2 ranks too;
#  2. a user's OPENBLAS_CORETYPE is left as it is (Prescott stays Prescott);
#  3. the restart keeps the command line: the same run with and without the fix trains the same
#     steps and reaches the same loss to 4 decimals.
# Skipped (77) without OpenBLAS.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
RUN="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --steps 4 --batch 4
     --val-samples 0 --progress off --threads 1 --seed 3"
kernels() { sed -n 's/^cpu backend: OpenBLAS kernels //p' "$1"; }
$BIN $RUN > $T/auto.log 2>&1 || { echo "FAIL train: $(cat $T/auto.log)"; exit 1; }
k=$(kernels $T/auto.log)
case $k in
  none*) echo "SKIP no OpenBLAS in this build"; exit 77 ;;
  "") echo "FAIL the banner names no OpenBLAS kernels:"; cat $T/auto.log; exit 1 ;;
esac
echo "  kernels here: $k"
OLD="Prescott|Core2|Penryn|Dunnington|Nehalem|Atom|Katmai|Coppermine|Northwood|Banias|Opteron"
OLD="$OLD|Barcelona|Bobcat|Athlon|SandyBridge|Bulldozer|Piledriver|Steamroller|Unknown"
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  if grep -qE "^($OLD)" <<< "$k"; then echo "FAIL pre-AVX2 kernels on an AVX2 CPU: $k"; fail=1
  else echo "PASS AVX2 CPU: OpenBLAS runs $k"; fi
  timeout 120 $MPIRUN -np 2 $BIN $RUN > $T/mpi.log 2>&1 ||
    { echo "FAIL 2 ranks: exit $?"; cat $T/mpi.log; fail=1; }
  k2=$(kernels $T/mpi.log)
  if [ "$k2" = "$k" ] && grep -q "^final: 4 steps" $T/mpi.log; then echo "PASS 2 ranks: $k2"
  else echo "FAIL 2 ranks: kernels '$k2'"; cat $T/mpi.log; fail=1; fi
else
  echo "  (no AVX2 here: nothing to choose)"
fi
OPENBLAS_CORETYPE=Prescott $BIN $RUN > $T/user.log 2>&1 || { echo "FAIL train (Prescott)"; fail=1; }
ku=$(kernels $T/user.log)
if [ "$ku" = "Prescott" ]; then echo "PASS OPENBLAS_CORETYPE=Prescott is kept"
else echo "FAIL OPENBLAS_CORETYPE=Prescott gave '$ku'"; fail=1; fi
l1=$(grep -o "^final: 4 steps, train loss [0-9.]*" $T/auto.log)
l2=$(grep -o "^final: 4 steps, train loss [0-9.]*" $T/user.log)
if [ -n "$l1" ] && [ "$l1" = "$l2" ]; then echo "PASS the same run either way: $l1"
else echo "FAIL '$l1' vs '$l2'"; fail=1; fi
[ $fail -eq 0 ] && echo "test_blas_core: all passed"
exit $fail
