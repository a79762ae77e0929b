#!/usr/bin/env bash
# --rotate against torchvision's rotate (tests/rotate_check.py), and training runs with it:
# deterministic, N ranks = 1 rank (synthetic binary data, and K classes on image files with crops
# and the ignore label's padding), it and its P change the run, a resume keeps it and refuses
# another; bad values exit 2 naming the flag. torchvision comes from Debian's python3-torchvision
# (/usr/bin/python3); without it the comparison is skipped (77) after the training checks.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off
       --threads 1 --seed 3 --train-samples 24 --val-samples 0 --steps 4"
run() { local out=$1; shift; "$@" > "$T/$out.log" 2>&1 || { cat "$T/$out.log"; fail "$*"; }; }
run a $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 30 --params-out $T/a.bin
run b $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 30 --params-out $T/b.bin
cmp -s $T/a.bin $T/b.bin || fail "two runs with --rotate differ"
run c $MPIRUN -np 2 $BIN $SMALL --batch 2 --rotate 30 --params-out $T/c.bin
echo "--rotate 30: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/c.bin $T/a.bin 1e-5
run d $MPIRUN -np 1 $BIN $SMALL --batch 4 --params-out $T/d.bin
cmp -s $T/a.bin $T/d.bin && fail "--rotate changed nothing"
run e $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 30:0.5 --params-out $T/e.bin
cmp -s $T/a.bin $T/e.bin && fail "--rotate 30:0.5 trained as --rotate 30"
run f $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 0:0.5 --params-out $T/f.bin
cmp -s $T/d.bin $T/f.bin || fail "--rotate 0 is not off"
echo "ok: deterministic, N ranks = 1 rank, it and its P change the run, 0 is off"

# validation is not rotated: with a learning rate too small to move a weight, the validation
# figures are those of the run without --rotate, while the training loss is not
V="--val-samples 8 --batch 4 --lr 1e-30"
run v1 $MPIRUN -np 1 $BIN $SMALL $V --rotate 180
run v2 $MPIRUN -np 1 $BIN $SMALL $V
grep -q '^final validation: loss' $T/v1.log || fail "no final validation: $(cat $T/v1.log)"
[ "$(grep '^final validation' $T/v1.log)" = "$(grep '^final validation' $T/v2.log)" ] ||
  fail "--rotate changed the validation: $(grep -h '^final validation' $T/v1.log $T/v2.log)"
f1=$(grep '^final:' $T/v1.log | cut -d'(' -f1)
[ "$f1" != "$(grep '^final:' $T/v2.log | cut -d'(' -f1)" ] ||
  fail "--rotate 180 did not change the training loss"
echo "ok: validation is not rotated"

# K classes on image files: crops that zoom out, rotations, the ignore label's padding (not in a
# sanitizer build, which has no cogpu-bench to write them)
if [ -x $BUILD/bench/cogpu-bench ]; then
  $BUILD/bench/cogpu-bench make-pngs --out "$T/pngs" --count 8 --image-size 40 --seed 3 \
    --num-classes 4 --ignore-index 255 > /dev/null
  REAL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off
        --threads 1 --seed 3 --data $T/pngs --val-fraction 0 --num-classes 4 --steps 3
        --crop-scale 0.5:1.5 --rotate 45"
  run k1 $MPIRUN -np 1 $BIN $REAL --batch 4 --params-out $T/k1.bin
  run k2 $MPIRUN -np 2 $BIN $REAL --batch 2 --params-out $T/k2.bin
  echo "--rotate 45, 4 classes on files: np 2 x batch 2 vs np 1 x batch 4:"
  $CMP $T/k2.bin $T/k1.bin 1e-5
else
  echo "SKIP the image-file part: no cogpu-bench in $BUILD (a sanitizer build)"
fi

# a resume: the stored value taken back (written as D:1 or not), another refused
run r1 $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 30 --steps 2 --checkpoint-dir $T/ck
run r2 $MPIRUN -np 1 $BIN $SMALL --batch 4 --resume --checkpoint-dir $T/ck --params-out $T/r2.bin
cmp -s $T/a.bin $T/r2.bin || fail "--rotate 30 resumed at step 2 differs from the whole run"
run r3 $MPIRUN -np 1 $BIN $SMALL --batch 4 --rotate 30:1 --resume --checkpoint-dir $T/ck
echo "ok: a resume takes --rotate back (bitwise the uninterrupted run), 30:1 is 30"
expect2 "--rotate: the checkpoint has 30, the command line 20; a resumed run cannot change it" \
  $BIN $SMALL --batch 4 --rotate 20 --resume --checkpoint-dir $T/ck

for bad in 181 -5 30:0 30:1.5 x 30: :1 30:0.5:1 nan 30deg "30 " " 30" "30: 0.5" 30:0.5x; do
  expect2 "--rotate: '$bad' is not D or D:P with 0 <= D <= 180 degrees and 0 < P <= 1" \
    $BIN $SMALL --rotate "$bad"
done

PY=/usr/bin/python3
$PY -c 'import torch, torchvision, numpy' 2> /dev/null ||
  { echo "SKIP: $PY has no torchvision (python3-torchvision)"; exit 77; }
$PY "$(dirname "$0")/rotate_check.py" "$BUILD/tests/cg_rotate_tool"
echo "PASS test_rotate"
