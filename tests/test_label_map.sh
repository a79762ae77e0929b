#!/usr/bin/env bash
# --label-map: stored mask values turned into class ids as masks are read. One data set stored
# three ways (class ids 0..3 with 255 ignored; ADE20K's 0 = other, ids + 1; Cityscapes-like ids 7,
# 11, 15, 19 with 0 unlabelled) trains the very same parameters with reduce-zero and with a FROM TO
# file; pack --label-map keeps the map in the shard, which trains the same and from which predict
# takes it; predict --label-map scores the same; a shard packed with another map, synthetic data, a
# bad map file (old Mac line ends, a FIFO) and a resume with another map (or edited file) are
# refused.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
python3 - "$T" "$(dirname "$0")" <<'PY'
import os, random, sys
sys.path.insert(0, sys.argv[2])
from png_write import png  # 8-bit gray (0) or RGB (2)
t, S = sys.argv[1], 32
for d in ("orig", "ade", "city"):
    os.makedirs(f"{t}/{d}/masks")
os.makedirs(f"{t}/images")
random.seed(3)
ade = lambda v: 0 if v == 255 else v + 1
city = lambda v: 0 if v == 255 else 7 + 4 * v
for i in range(24):
    ids = [[0] * S for _ in range(S)]
    for k in range(3):
        c, x0, y0 = random.randint(1, 3), random.randint(0, S - 9), random.randint(0, S - 9)
        w, h = random.randint(4, 12), random.randint(4, 12)
        for y in range(y0, min(S, y0 + h)):
            for x in range(x0, min(S, x0 + w)):
                ids[y][x] = c
    for y in range(S):  # an ignored band along the top
        if y < 2: ids[y] = [255] * S
    rgb = [[min(255, 40 + 60 * (v % 4) + random.randint(0, 30)) for v in r for _ in range(3)]
           for r in ids]
    png(f"{t}/images/{i:03d}.png", S, S, 2, rgb)
    for d, f in (("orig", lambda v: v), ("ade", ade), ("city", city)):
        png(f"{t}/{d}/masks/{i:03d}.png", S, S, 0, [[f(v) for v in r] for r in ids])
    if i == 0:  # an ADE mask holding 5: class 4 of a 4-class model, which does not exist
        os.makedirs(f"{t}/ade5")
        png(f"{t}/ade5/000.png", S, S, 0, [[5 if y == 9 and x == 7 else ade(v)
                                            for x, v in enumerate(r)] for y, r in enumerate(ids)])
for d in ("orig", "ade", "city"):
    os.symlink(f"{t}/images", f"{t}/{d}/images")
open(f"{t}/city.map", "w").write("# labelIds to train ids\n7 0\n11 1\n15 2\n19 3\n* 255\n")
open(f"{t}/bom.map", "w").write("\ufeff7 0  # road\n11 1\n15 2\t# car\n19 3\n* 255\n")
open(f"{t}/binary.map", "w").write("7 1\n11 1\n15 1\n19 1\n* 0\n")
PY
S="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off"
K="--num-classes 4 --steps 3 --val-fraction 0.25 --seed 5"
train() { # train NAME ARGS...: one rank; parameters in $T/NAME.params, log in $T/NAME.log
  local name=$1; shift
  $MPIRUN -np 1 $BIN train $S $K --params-out "$T/$name.params" "$@" > "$T/$name.log" 2>&1 ||
    { cat "$T/$name.log"; fail "train $name"; }
}
train orig --data "$T/orig"
train ade --data "$T/ade" --label-map reduce-zero --checkpoint-dir "$T/ck"
train city --data "$T/city" --label-map "$T/city.map"
train bom --data "$T/city" --label-map "$T/bom.map" # a byte-order mark, comments after pairs
train none --data "$T/orig" --label-map none
cmp -s "$T/orig.params" "$T/ade.params" || fail "reduce-zero trained other parameters"
cmp -s "$T/orig.params" "$T/city.params" || fail "the FROM TO file trained other parameters"
cmp -s "$T/orig.params" "$T/bom.params" || fail "the map with a BOM trained other parameters"
cmp -s "$T/orig.params" "$T/none.params" || fail "--label-map none trained other parameters"
$MPIRUN -np 1 $BIN train $S --steps 2 --data "$T/city" --label-map "$T/binary.map" \
  > "$T/bin.log" 2>&1 || { cat "$T/bin.log"; fail "a binary map (FROM 1: foreground)"; }
echo "ok: reduce-zero and a FROM TO file train the parameters of the ids themselves"

expect2 "mask value 4 is not a class id of --num-classes 4" $BIN train $S $K --data "$T/ade"
grep -q "ade/masks/0[0-9][0-9].png" "$T/o" || fail "the bad sample is not named"
printf '7 0\n11 1\n15 2\n19 3\n' > "$T/nostar.map"
expect2 "mask value 0 is not in --label-map" $BIN train $S $K --data "$T/city" \
  --label-map "$T/nostar.map"
printf '7 0\n7 1\n' > "$T/twice.map"
expect2 "twice.map:2: 7 is mapped twice" $BIN train $S $K --data "$T/city" \
  --label-map "$T/twice.map"
printf '* 255\n7 0\n* 0\n' > "$T/star.map"
expect2 "star.map:3: * is mapped twice" $BIN train $S $K --data "$T/city" --label-map "$T/star.map"
printf '* 255\r7 0\r11 1\r15 2\r19 3\r' > "$T/cr.map" # old Mac line ends: one line, all ignored
expect2 "cr.map:1: a carriage return inside a line: the file has old Mac line ends" $BIN train \
  $S $K --data "$T/city" --label-map "$T/cr.map"
mkfifo "$T/fifo.map"
expect2 "fifo.map: not a regular file (a FIFO)" timeout 60 $BIN train $S $K --data "$T/city" \
  --label-map "$T/fifo.map"
printf '7 9\n' > "$T/nine.map"
expect2 "nine.map:1: 9 is not a class id of --num-classes 4" $BIN train $S $K \
  --data "$T/city" --label-map "$T/nine.map"
expect2 "--label-map reduce-zero: makes 0 the ignore label, and there is none" $BIN train $S \
  --steps 1 --data "$T/ade"  --label-map reduce-zero
expect2 "synthetic data makes its own class ids" $BIN train $S $K --data synthetic \
  --label-map reduce-zero

$BIN pack --images "$T/images" --masks "$T/ade/masks" --num-classes 4 --image-size 32 \
  --label-map reduce-zero --out "$T/ade.cgds" > /dev/null
$BIN pack --images "$T/images" --masks "$T/orig/masks" --num-classes 4 --image-size 32 \
  --out "$T/orig.cgds" > /dev/null
# the shard keeps the map: a run on it alone takes it (and trains what the ids train)
train shard --data "$T/ade.cgds" --checkpoint-dir "$T/cks"
cmp -s "$T/orig.params" "$T/shard.params" || fail "the shard packed with a map trained otherwise"
grep -q "mapped by the --label-map the shard was packed with" "$T/shard.log" || fail "not said"
$MPIRUN -np 1 $BIN train $S $K --data "$T/ade.cgds" --label-map reduce-zero --resume \
  --checkpoint-dir "$T/cks" --steps 4 > "$T/cks2.log" 2>&1 ||
  { cat "$T/cks2.log"; fail "a resume on the shard naming its map"; }
echo "ok: pack --label-map keeps the map in the shard; training on it equals the ids"
train mixed --data "$T/ade" --label-map reduce-zero --val-data "$T/ade.cgds" --val-fraction 0
expect2 "packed with a --label-map, and the run has none" $BIN train $S $K \
  --data "$T/ade.cgds" --label-map none
expect2 "packed without --label-map" $BIN train $S $K --data "$T/orig.cgds" \
  --label-map reduce-zero
expect2 "packed with another --label-map than the run's" $BIN train $S $K \
  --data "$T/ade.cgds" --label-map "$T/city.map"
expect2 "packed with a --label-map, and the run has none" $BIN train $S $K \
  --data "$T/orig" --val-data "$T/ade.cgds" --val-fraction 0

CK=$(ls "$T"/ck/*.cgck | tail -1)
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/images" \
  --masks "$T/orig/masks" --label-map none --output "$T/p1" > "$T/p1.log"
# the run's reduce-zero comes from the checkpoint, and is said
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/images" \
  --masks "$T/ade/masks" --output "$T/p2" > "$T/p2.log" 2>&1
grep -q "mapped by the run's --label-map reduce-zero" "$T/p2.log" || fail "no word of the map"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/images" \
  --masks "$T/city/masks" --label-map "$T/city.map" --output "$T/p4" > "$T/p4.log" 2>&1
diff <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p1.log") \
  <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p4.log") || fail "predict --label-map FILE"
diff <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p1.log") \
  <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p2.log") || fail "predict --label-map scored otherwise"
grep -q "^predict: mIoU" "$T/p2.log" || fail "predict printed no mIoU"
echo "ok: predict --label-map reduce-zero: $(grep "^predict: mIoU" "$T/p2.log")"
# a run on the shard: predict maps the files' ground truth by the map pack applied
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/cks" --input "$T/images" \
  --masks "$T/orig/masks" --label-map none --output "$T/p8" > "$T/p8.log"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/cks" --input "$T/images" \
  --masks "$T/ade/masks" --output "$T/p9" > "$T/p9.log" 2>&1
grep -q "ground truth is mapped by the run's --label-map" "$T/p9.log" || fail "p9: not said"
diff <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p8.log") \
  <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/p9.log") || fail "predict after a shard run"
echo "ok: after a run on a shard packed with a map, predict maps the raw masks alike"
expect2 "--label-map: maps the ground truth, and there is none" $BIN predict \
  --checkpoint "$CK" --input "$T/images" --output "$T/p3" --label-map reduce-zero

expect2 "label-map" $BIN train $S $K --data "$T/ade" --label-map "$T/city.map" --resume \
  --checkpoint-dir "$T/ck" --steps 6
# the map file edited after the checkpoint: another labelling, refused (not the path alone)
$MPIRUN -np 1 $BIN train $S $K --data "$T/city" --label-map "$T/city.map" --checkpoint-dir \
  "$T/ckc" > "$T/ckc.log" 2>&1 || { cat "$T/ckc.log"; fail "train city into ckc"; }
cp "$T/city.map" "$T/city.keep" && printf '7 1\n11 0\n15 2\n19 3\n* 255\n' > "$T/city.map"
expect2 "maps otherwise than the checkpoint's map" $BIN train $S $K --resume \
  --checkpoint-dir "$T/ckc" --steps 6 --label-map "$T/city.map"
# the same map under another name is the same map; without the flag, the checkpoint's map goes
# on even when its file has gone (another node, a moved data set)
$MPIRUN -np 1 $BIN train $S $K --resume --checkpoint-dir "$T/ckc" --steps 4 \
  --label-map "$T/city.keep" > "$T/ckc2.log" 2>&1 || { cat "$T/ckc2.log"; fail "same map"; }
mv "$T/city.map" "$T/city.gone"
$MPIRUN -np 1 $BIN train $S $K --resume --checkpoint-dir "$T/ckc" --steps 5 > "$T/ckc3.log" \
  2>&1 || { cat "$T/ckc3.log"; fail "resume without the map file"; }
mv "$T/city.gone" "$T/city.map"
echo "ok: resume compares maps, not their file names, and needs no file without the flag"
# predict maps as the run did, from the checkpoint, whatever the file says now
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ckc" --input "$T/images" \
  --masks "$T/city/masks" --output "$T/p5" > "$T/p5.log" 2>&1 || { cat "$T/p5.log"; fail p5; }
cp "$T/city.keep" "$T/city.map"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ckc" --input "$T/images" \
  --masks "$T/city/masks" --output "$T/p6" > "$T/p6.log" 2>&1 || { cat "$T/p6.log"; fail p6; }
diff <(grep "^predict: mIoU" "$T/p5.log") <(grep "^predict: mIoU" "$T/p6.log") ||
  fail "predict read the edited map file instead of the run's map"
# a mapped value that is no class id names both values
echo "images/000.png ade5/000.png" > "$T/ade5.txt"
echo "images/001.png ade/masks/001.png" >> "$T/ade5.txt" # found before any mask is written
expect2 "mask value 4 (stored 5, mapped by --label-map reduce-zero) at x 7, y 9" $BIN predict \
  --checkpoint "$CK" --input "$T/ade5.txt" --output "$T/p7"
[ -z "$(ls "$T/p7" 2>/dev/null)" ] || fail "masks were written before the bad value was named"
echo "PASS test_label_map"
