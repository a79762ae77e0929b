#!/usr/bin/env bash
# Multi-class on the command line (issue 13): --num-classes / --ignore-index ranges (exit 2
# naming the flag); a mask value that is no class id is a bad sample naming the file, the value
# and K (exit 2; --check-data lists it; --skip-bad skips and counts it); palette masks train
# and the checkpoint keeps their palette and the classes (inspect shows them); resuming with
# another K is refused.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
SMALL="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off"
expect2 "--num-classes" $BIN train $SMALL --num-classes 0
expect2 "--num-classes" $BIN train $SMALL --num-classes 256
expect2 "--ignore-index: 2 is a class id" $BIN train $SMALL --num-classes 4 --ignore-index 2
expect2 "--ignore-index" $BIN train $SMALL --num-classes 4 --ignore-index 256
expect2 "--ignore-index: 0 is a class id" $BIN train $SMALL --ignore-index 0
$BIN train --help > "$T/help"  # (not piped into grep -q: SIGPIPE under pipefail)
grep -q -- "--num-classes K" "$T/help" || fail "--help lacks --num-classes"
grep -q -- "--ignore-index I" "$T/help" || fail "--help lacks --ignore-index"

$BENCH make-pngs --out "$T/d" --count 24 --image-size 32 --num-classes 4 > /dev/null
# K = 3: the masks hold class 3 (rectangles), which is no class id
expect2 "mask value 3 is not a class id of --num-classes 3 (0..2) nor the ignore label 255" \
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/d" --num-classes 3 --steps 2 --val-fraction 0.2
grep -q "masks/0000[0-9][0-9].png" "$T/o" || fail "the message does not name the mask file"
expect2 "mask value 3" $MPIRUN -np 1 $BIN train $SMALL --data "$T/d" --num-classes 3 \
  --steps 2 --val-fraction 0.2 --check-data
$MPIRUN -np 1 $BIN train $SMALL --data "$T/d" --num-classes 3 --steps 2 --val-fraction 0.2 \
  --skip-bad > "$T/skip.log" 2>&1 || { cat "$T/skip.log"; fail "--skip-bad run failed"; }
grep -q "skipping a bad sample (--skip-bad): .*mask value 3" "$T/skip.log" || \
  fail "--skip-bad did not report the sample"
grep -qE -- "--skip-bad: .*skipped" "$T/skip.log" || fail "--skip-bad did not count"
echo "ok: --skip-bad skips and counts masks with values outside the classes"

# binary masks saved as 0/255 trained as K = 2: 255 is the default ignore label, so rank 0 warns
$BENCH make-pngs --out "$T/b" --count 8 --image-size 32 > /dev/null
$MPIRUN -np 1 $BIN train $SMALL --data "$T/b" --num-classes 2 --steps 1 --val-fraction 0.25 \
  > "$T/b.log" 2>&1 || { cat "$T/b.log"; fail "0/255 run failed"; }
grep -q "hold only 0 and 255, and 255 is the ignore label" "$T/b.log" || \
  { cat "$T/b.log"; fail "no warning for 0/255 masks with --num-classes 2"; }
for k in "--num-classes 1" "--num-classes 2 --ignore-index -1"; do
  set +e; $MPIRUN -np 1 $BIN train $SMALL --data "$T/b" $k --steps 1 --val-fraction 0.25 \
    > "$T/b1.log" 2>&1; set -e
  ! grep -q "hold only 0 and 255" "$T/b1.log" || fail "the 0/255 warning with $k"
done
grep -q "hold only 0 and 255" "$T/skip.log" && fail "the 0/255 warning for class-id masks"
# class ids only outside the centred square of wide photos (crops reach them): the masks are
# looked at whole, so no warning
if /usr/bin/python3 -c 'import PIL, numpy' 2> /dev/null; then
  /usr/bin/python3 - "$T/wide" << 'PYEOF'
import os, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
os.makedirs(f"{d}/images"), os.makedirs(f"{d}/masks")
for i in range(8):
    m = np.zeros((32, 96), np.uint8)
    m[:4] = 255  # an ignore band across the top
    m[8:24, (0 if i % 2 else 80):][:, :16] = 1 + i % 3  # a side strip: outside columns 32..63
    Image.fromarray(np.full((32, 96, 3), 90, np.uint8)).save(f"{d}/images/w{i}.png")
    Image.fromarray(m).save(f"{d}/masks/w{i}.png")
PYEOF
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/wide" --num-classes 4 --steps 1 \
    --val-fraction 0 > "$T/w.log" 2>&1 || { cat "$T/w.log"; fail "wide class-id run failed"; }
  grep -q "hold only 0 and 255" "$T/w.log" && fail "the 0/255 warning for classes at the sides"
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/wide" --num-classes 4 --steps 1 --crop off \
    --val-fraction 0 > "$T/w.log" 2>&1 || { cat "$T/w.log"; fail "wide class-id run failed"; }
  grep -q "hold only 0 and 255" "$T/w.log" ||
    fail "--crop off trains on centred squares of 0 and 255 alone, and did not warn"
  echo "ok: masks are looked at whole for the 0/255 warning (classes outside the centred square;" \
    "with --crop off its centred squares, which training sees)"
fi
# pack warns about the same shard, and not with --num-classes 1 or class-id masks
$BIN pack --images "$T/b/images" --masks "$T/b/masks" --out "$T/b2.cgds" --num-classes 2 \
  --image-size 32 > "$T/bp.log" 2>&1 || { cat "$T/bp.log"; fail "pack of 0/255 masks failed"; }
grep -q "every mask holds only 0 and 255, the ignore label" "$T/bp.log" || \
  { cat "$T/bp.log"; fail "pack did not warn about 0/255 masks with --num-classes 2"; }
$BIN pack --images "$T/b/images" --masks "$T/b/masks" --out "$T/b1.cgds" --image-size 32 \
  > "$T/bp1.log" 2>&1 || { cat "$T/bp1.log"; fail "binary pack failed"; }
! grep -q "holds only 0" "$T/bp1.log" || fail "pack warned with --num-classes 1"
echo "ok: 0/255 masks with --num-classes 2 are warned about"

# shards: pack stores the class ids (raw or PNG masks); a shard trains exactly like its
# directory; a shard read with too few classes names the record, the value and K
V="--num-classes 4 --steps 2 --val-fraction 0.25 --seed 3"
$MPIRUN -np 1 $BIN train $SMALL --data "$T/d" $V > "$T/dir.log" 2>&1 || { cat "$T/dir.log"; fail dir; }
for e in raw png; do
  $BIN pack --images "$T/d/images" --masks "$T/d/masks" --out "$T/k_$e.cgds" --image-size 32 \
    --num-classes 4 --encoding $e > "$T/pk.log" 2>&1 || { cat "$T/pk.log"; fail "pack $e"; }
  ! grep -q "holds only 0" "$T/pk.log" || fail "pack warned about class-id masks"
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/k_$e.cgds" $V > "$T/$e.log" 2>&1 ||
    { cat "$T/$e.log"; fail "shard $e"; }
  diff <(grep "final validation" "$T/dir.log") <(grep "final validation" "$T/$e.log") ||
    fail "the $e shard does not train like its directory"
done
echo "ok: K = 4 shards (raw, png) train exactly like their directory"
# the shard records its classes: read with others, it is refused at start-up, naming both
expect2 "k_png.cgds: packed with --num-classes 4 --ignore-index 255, read with --num-classes 3" \
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/k_png.cgds" --num-classes 3 --steps 2
$BIN pack --images "$T/d/images" --masks "$T/d/masks" --out "$T/bin.cgds" --image-size 32 \
  > /dev/null
# a tool that only times the data reads a shard with the labels it records
$BENCH cpu-tasks --data "$T/k_png.cgds" --image-size 32 --tasks 20 > "$T/ct.log" 2>&1 ||
  { cat "$T/ct.log"; fail "cpu-tasks on a K = 4 shard"; }
expect2 "--data: $T/bin.cgds: packed with --num-classes 1 --ignore-index -1, read with \
--num-classes 4" \
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/bin.cgds" --num-classes 4 --steps 2
# as --val-data beside a directory: the flag named
expect2 "--val-data: $T/bin.cgds: packed with --num-classes 1" \
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/d" --val-data "$T/bin.cgds" --num-classes 4 --steps 2
expect2 "--ignore-index: 2 is a class id" $BIN pack --images "$T/d/images" --masks "$T/d/masks" \
  --out "$T/x.cgds" --num-classes 4 --ignore-index 2
expect2 "--num-classes: 0 is out of range 1..255" $BIN pack --images "$T/d/images" \
  --masks "$T/d/masks" --out "$T/x.cgds" --num-classes 0
# pack parses on the shared engine: plain decimal numbers only, --name=VALUE, no empty paths
expect2 "--image-size: ' 32' is not a whole number" $BIN pack --images "$T/d/images" \
  --masks "$T/d/masks" --out "$T/x.cgds" --image-size ' 32'
expect2 "--masks: empty value" $BIN pack --images="$T/d/images" --masks= --out "$T/x.cgds"

# palette masks: the palette goes into the checkpoint, inspect shows K and the palette
$BENCH make-pngs --out "$T/p" --count 16 --image-size 32 --num-classes 4 --mask-palette > /dev/null
$MPIRUN -np 1 $BIN train $SMALL --data "$T/p" --num-classes 4 --steps 2 --val-fraction 0.25 \
  --check-data --checkpoint-dir "$T/ck" > "$T/p.log" 2>&1 ||
  { cat "$T/p.log"; fail "palette run failed"; }
grep -q "final validation: .*mIoU .*(4 images, 4 classes)" "$T/p.log" || fail "no mIoU line"
$BIN inspect "$T/ck/ckpt-0000000002.cgck" > "$T/i.log"
grep -q "classes:       4, ignore label 255, masks with a palette" "$T/i.log" || \
  { cat "$T/i.log"; fail "inspect does not show the classes and the palette"; }
grep -q "checkpoint, version 5" "$T/i.log" || { cat "$T/i.log"; fail "not version 5"; }
$BIN inspect "$T/ck" > "$T/id.log"
grep -q "^best: .*, val_miou " "$T/id.log" || { cat "$T/id.log"; fail "inspect DIR: best not by mIoU"; }
expect2 "inspect: error: empty FILE|DIR" $BIN inspect ""
# predict --masks names a value outside the model's classes as train does (range, ignore label)
$BENCH make-pngs --out "$T/p8" --count 4 --image-size 32 --num-classes 8 > /dev/null
expect2 "is not a class id of the model's --num-classes 4 (0..3) nor the ignore label 255" \
  $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/p8/images" \
  --masks "$T/p8/masks" --output "$T/p8out"
# the same from a shard of them: the shard keeps the palette, and so does the checkpoint
$BIN pack --images "$T/p/images" --masks "$T/p/masks" --out "$T/p.cgds" --image-size 32 \
  --num-classes 4 > /dev/null
$MPIRUN -np 1 $BIN train $SMALL --data "$T/p.cgds" --num-classes 4 --steps 2 --val-fraction 0.25 \
  --checkpoint-dir "$T/ckp" > "$T/ps.log" 2>&1 || { cat "$T/ps.log"; fail "palette shard run"; }
$BIN inspect "$T/ckp/ckpt-0000000002.cgck" > "$T/ip.log"
grep -q "classes:       4, ignore label 255, masks with a palette" "$T/ip.log" || \
  { cat "$T/ip.log"; fail "a shard of palette masks lost the palette"; }
diff <(grep "final validation" "$T/p.log") <(grep "final validation" "$T/ps.log") ||
  fail "the palette shard does not train like its directory"
echo "ok: palette masks train (directory and shard); the checkpoint keeps K, the ignore label" \
  "and the palette"
expect2 "--num-classes: the checkpoint has 4, the command line 5" \
  $MPIRUN -np 1 $BIN train $SMALL --data "$T/p" --num-classes 5 --steps 4 --val-fraction 0.25 \
  --resume "$T/ck/ckpt-0000000002.cgck"
# the K x K counts are the same whether the helpers or the backend ("device") count them
for s in cpu gpu; do
  $BIN train $SMALL --num-classes 4 --steps 6 --train-samples 32 --val-samples 8 --split $s \
    --metrics-out "$T/s_$s.json" > "$T/s_$s.log" 2>&1 || { cat "$T/s_$s.log"; fail "--split $s"; }
done
grep -q "metrics on device" "$T/s_gpu.log" || fail "--split gpu did not count on the device"
python3 - "$T/s_cpu.json" "$T/s_gpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("per_class", "miou", "train_miou", "val_acc"):
    assert a[k] == b[k], (k, a[k], b[k])
print("ok: helper and device K x K counts agree (train and validation)")
PY
echo "test_labels_cli: all passed"
