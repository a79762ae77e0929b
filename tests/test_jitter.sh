#!/usr/bin/env bash
# --color-jitter against torchvision's ColorJitter (tests/jitter_check.py), and a training run
# with it: deterministic (two runs give the same parameters), N ranks = 1 rank, and another
# value changes the run; bad values exit 2 naming the flag. torchvision comes from Debian's
# python3-torchvision (/usr/bin/python3); without it the comparison is skipped (77) after the
# training checks.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off
       --threads 1 --seed 3 --train-samples 24 --val-samples 0 --steps 4"
$MPIRUN -np 1 $BIN $SMALL --batch 4 --color-jitter 0.4:0.4:0.4:0.1 --params-out $T/a.bin > $T/a.log
$MPIRUN -np 1 $BIN $SMALL --batch 4 --color-jitter 0.4:0.4:0.4:0.1 --params-out $T/b.bin > $T/b.log
cmp -s $T/a.bin $T/b.bin || fail "two runs with --color-jitter differ"
$MPIRUN -np 2 $BIN $SMALL --batch 2 --color-jitter 0.4:0.4:0.4:0.1 --params-out $T/c.bin > $T/c.log
echo "--color-jitter: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/c.bin $T/a.bin 1e-5
$MPIRUN -np 1 $BIN $SMALL --batch 4 --params-out $T/d.bin > $T/d.log
cmp -s $T/a.bin $T/d.bin && fail "--color-jitter changed nothing"
echo "ok: deterministic, N ranks = 1 rank, and it changes the run"
expect2 "--color-jitter: '0.4' is not B:C:S:H" $BIN $SMALL --color-jitter 0.4
expect2 "--color-jitter: '0:0:0:0.6' is not B:C:S:H" $BIN $SMALL --color-jitter 0:0:0:0.6
expect2 "--color-jitter: '-1:0:0:0' is not B:C:S:H" $BIN $SMALL --color-jitter -1:0:0:0

PY=/usr/bin/python3
$PY -c 'import torch, torchvision, numpy' 2> /dev/null ||
  { echo "SKIP: $PY has no torchvision (python3-torchvision)"; exit 77; }
$PY "$(dirname "$0")/jitter_check.py" "$BUILD/tests/cg_jitter_tool"
echo "PASS test_jitter"
