#!/usr/bin/env bash
# Training crops over the whole file, end to end: wide JPEG photos (120x64, trained at 32) with
# PNG masks whose foreground lies only in the side strips, which the centred square cuts off.
#  - --crop off: the fitted squares hold no foreground, and predict at full resolution scores
#    IoU 0; crops (the default) train on the strips: IoU above 0.8 (0.99 measured);
#  - the same through shards: pack --store square (warned: not square) trains no strip, pack
#    --store whole (version 5) does;
#  - 2 ranks x batch 2 give the parameters of 1 rank x batch 4 with --crop-scale 0.5:0.9 (crop
#    windows, JPEGs decoded at a DCT scale, depend only on the seed, epoch and sample);
#  - zoom-out crops (--crop-scale 0.5:2, padded with the ignore label) give N ranks = 1 rank
#    too, and train from a --store whole shard;
#  - --crop-cat-max 0.75 (windows of one label moved) gives N ranks = 1 rank over the directory
#    and the shard, and changes the run;
#  - --crop-scale changes the run; bad --crop-scale and --crop-cat-max values, either of them
#    with synthetic data or --crop off, and a resume with another one are refused (exit 2,
#    naming the flag); --lr-schedule poly with --min-lr resumes with a notice.
# The files are written with Debian's Pillow (/usr/bin/python3); without it: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
PY=/usr/bin/python3
$PY -c 'import PIL, numpy' 2> /dev/null ||
  { echo "SKIP: $PY has no Pillow (python3-pil)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

$PY - "$T/wide" << 'PYEOF'
import os, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
os.makedirs(f"{d}/images"), os.makedirs(f"{d}/masks")
rng = np.random.default_rng(4)
for i in range(12):
    h, w = 64, 120
    im = rng.integers(60, 120, (h, w, 3)).astype(np.uint8)
    m = np.zeros((h, w), np.uint8)
    side = slice(0, 24) if i % 2 else slice(w - 24, w)  # outside the centred columns 28..91
    m[8:56, side] = 255
    im[8:56, side, 0] = 230  # the object: red
    Image.fromarray(im).save(f"{d}/images/p{i:02d}.jpg", quality=92)
    Image.fromarray(m).save(f"{d}/masks/p{i:02d}.png")
PYEOF

SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off
       --threads 1 --seed 3 --data $T/wide --val-fraction 0 --steps 6"
# --crop off trains on the centred squares, which hold no foreground: predict scores IoU 0 at
# full resolution; crops reach the strips and the model finds them (IoU about 0.99)
for c in off on; do
  $MPIRUN -np 1 $BIN $SMALL --batch 4 --steps 60 --lr 0.01 --crop $c --checkpoint-dir $T/c$c \
    > $T/c$c.log
  $BIN predict --backend cpu --checkpoint $T/c$c --input $T/wide/images --masks $T/wide/masks \
    --output $T/p$c > $T/p$c.log 2>&1 || { cat $T/p$c.log; fail "predict --crop $c"; }
  grep "predict: IoU" $T/p$c.log | sed "s/^/--crop $c: /"
done
grep -q "predict: IoU 0.000000 " $T/poff.log || fail "--crop off found the strips?"
awk '/predict: IoU/ { exit !($3 > 0.8) }' $T/pon.log || fail "crops did not train on the strips"

# shards: --store square keeps the centred squares (pack warns), so crops of it never see the
# strips; --store whole (version 5, JPEG records) keeps them, and training finds them again
for st in square whole; do
  $BIN pack --images $T/wide/images --masks $T/wide/masks --image-size 32 --store $st \
    --encoding jpeg --out $T/$st.cgds > $T/pack$st.log 2>&1 || { cat $T/pack$st.log; fail "pack"; }
  $MPIRUN -np 1 $BIN ${SMALL/--data $T\/wide/--data $T/$st.cgds} --batch 4 --steps 60 --lr 0.01 \
    --checkpoint-dir $T/s$st > $T/s$st.log
  $BIN predict --backend cpu --checkpoint $T/s$st --input $T/wide/images --masks $T/wide/masks \
    --output $T/q$st > $T/q$st.log 2>&1 || { cat $T/q$st.log; fail "predict --store $st"; }
  grep "predict: IoU" $T/q$st.log | sed "s/^/shard --store $st: /"
done
grep -q "12 of 12 images are not square" $T/packsquare.log || { cat $T/packsquare.log; fail "no warning"; }
grep -q "not square" $T/packwhole.log && fail "--store whole warned"
grep -q "whole images, shorter side 32" $T/packwhole.log || { cat $T/packwhole.log; fail "summary"; }
grep -q "predict: IoU 0.000000 " $T/qsquare.log || fail "a square shard's crops found the strips?"
awk '/predict: IoU/ { exit !($3 > 0.8) }' $T/qwhole.log || fail "whole shard: strips not trained"

# N ranks = 1 rank, crop windows of JPEGs at a DCT scale
$MPIRUN -np 1 $BIN $SMALL --batch 4 --crop-scale 0.5:0.9 --params-out $T/a1.bin > $T/a1.log
$MPIRUN -np 2 $BIN $SMALL --batch 2 --crop-scale 0.5:0.9 --params-out $T/a2.bin > $T/a2.log
echo "crop windows: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/a2.bin $T/a1.bin 1e-5
$MPIRUN -np 1 $BIN $SMALL --batch 4 --params-out $T/d1.bin > $T/d1.log
if $CMP $T/d1.bin $T/a1.bin 1e-5 > /dev/null 2>&1; then
  fail "--crop-scale 0.5:0.9 trained the parameters of the default 0.75:1"
fi
echo "ok: --crop-scale changes the run"
# zoom-out crops (windows up to twice the shorter side, padded): N ranks = 1 rank, over the
# directory and over a --store whole shard
$MPIRUN -np 1 $BIN $SMALL --batch 4 --crop-scale 0.5:2 --params-out $T/z1.bin > $T/z1.log
$MPIRUN -np 2 $BIN $SMALL --batch 2 --crop-scale 0.5:2 --params-out $T/z2.bin > $T/z2.log
echo "zoom-out crop windows: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/z2.bin $T/z1.bin 1e-5
$MPIRUN -np 1 $BIN ${SMALL/--data $T\/wide/--data $T/whole.cgds} --batch 4 --crop-scale 1:2 \
  > $T/z3.log
expect2 "--crop-scale: '0.5:4.5' is not A:B with 0 < A <= B <= 4" $BIN $SMALL --crop-scale 0.5:4.5
# --crop-cat-max (windows of one label moved; masks read alone first): N ranks = 1 rank over the
# directory (JPEGs at a DCT scale, PNG masks) and over a --store whole shard; it changes the run
CM="--crop-scale 0.5:0.9 --crop-cat-max 0.75"
$MPIRUN -np 1 $BIN $SMALL --batch 4 $CM --params-out $T/m1.bin > $T/m1.log
$MPIRUN -np 2 $BIN $SMALL --batch 2 $CM --params-out $T/m2.bin > $T/m2.log
echo "--crop-cat-max 0.75: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/m2.bin $T/m1.bin 1e-5
if $CMP $T/m1.bin $T/a1.bin 1e-5 > /dev/null 2>&1; then
  fail "--crop-cat-max 0.75 trained the parameters of the run without it"
fi
$MPIRUN -np 1 $BIN ${SMALL/--data $T\/wide/--data $T/whole.cgds} --batch 4 $CM \
  --params-out $T/m3.bin > $T/m3.log
$MPIRUN -np 2 $BIN ${SMALL/--data $T\/wide/--data $T/whole.cgds} --batch 2 $CM \
  --params-out $T/m4.bin > $T/m4.log
echo "--crop-cat-max 0.75 on a --store whole shard: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/m4.bin $T/m3.bin 1e-5
# a mask that breaks when a try reads it (its zlib stream's header spoilt, the PNG's header
# intact, so start-up takes it): exit 2 naming it, as a load would; with --skip-bad the sample
# is left out and counted once
cp -r $T/wide $T/brokenm
m=$(ls $T/brokenm/masks | head -1)
$PY - $T/brokenm/masks/$m << 'PYEOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = b.index(b"IDAT") + 4
b[i:i + 2] = b"\xff\xff"
open(sys.argv[1], "wb").write(b)
PYEOF
BR="${SMALL/--data $T\/wide/--data $T/brokenm} --batch 12 --steps 1 $CM"
expect2 "$m" $BIN $BR
$MPIRUN -np 1 $BIN $BR --skip-bad > $T/br.log 2>&1 || { cat $T/br.log; fail "--skip-bad"; }
grep -q "0 bad sample(s) left out at start-up, 1 sample load(s) skipped in training" $T/br.log ||
  { cat $T/br.log; fail "--crop-cat-max --skip-bad: not counted once"; }
echo "ok: a mask failing in --crop-cat-max's tries is a bad sample (exit 2; --skip-bad: 1 skipped)"
expect2 "--crop-cat-max: 0 refuses every window; R is in (0, 1]" $BIN $SMALL --crop-cat-max 0
expect2 "--crop-cat-max" $BIN $SMALL --crop-cat-max 1.5

expect2 "--crop-scale: '0:1' is not A:B" $BIN $SMALL --crop-scale 0:1
expect2 "--crop-scale: '1:0.5' is not A:B" $BIN $SMALL --crop-scale 1:0.5
expect2 "--crop-scale: 'x' is not A:B" $BIN $SMALL --crop-scale x
expect2 "--min-lr 0.5 is above --lr" $BIN $SMALL --min-lr 0.5
# the crops' flags where no random crop is made: refused, not silently inert
SYN="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --steps 1"
expect2 "--crop-scale: shapes the random crops of real data, and synthetic data is not cropped" \
  $BIN $SYN --crop-scale 0.5:1
expect2 "--crop-cat-max: shapes the random crops of real data, and synthetic data" \
  $BIN $SYN --crop-cat-max 0.75
expect2 "--crop-scale: shapes the random crops of real data, and --crop off takes" \
  $BIN $SMALL --crop off --crop-scale 0.5:1
expect2 "--crop-cat-max: shapes the random crops of real data, and --crop off takes" \
  $BIN $SMALL --crop off --crop-cat-max 0.75
$BIN $SYN --train-samples 4 --val-samples 0 --batch 4 --progress off --crop-scale 0.75:1 \
  --crop-cat-max 1 > "$T/syn.log" 2>&1 || { cat "$T/syn.log"; fail "their defaults refused"; }
echo "ok: --crop-scale and --crop-cat-max are refused with synthetic data and with --crop off"
echo "    (given with their defaults: accepted)"
# a checkpoint, then resumes: another --crop-scale is refused; another --lr-power a notice
$MPIRUN -np 1 $BIN $SMALL --batch 4 --crop-scale 0.5:0.9 --lr-schedule poly --min-lr 1e-5 \
  --steps 3 --checkpoint-dir $T/ck > $T/ck.log
expect2 "crop-scale" $BIN $SMALL --batch 4 --crop-scale 0.6:1 --resume $T/ck
expect2 "--crop-cat-max: the checkpoint has 1, the command line 0.75" $BIN $SMALL --batch 4 \
  --crop-cat-max 0.75 --resume $T/ck
$MPIRUN -np 1 $BIN $SMALL --batch 4 --lr-power 2 --resume $T/ck > $T/res.log 2>&1 ||
  { cat $T/res.log; fail "resume with another --lr-power"; }
grep -q "lr-power" $T/res.log || { cat $T/res.log; fail "no notice of --lr-power"; }
echo "ok: resume refuses another --crop-scale, takes another --lr-power with a notice"
echo "PASS test_crop"
