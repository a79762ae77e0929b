#!/usr/bin/env bash
# predict at full resolution (issue 13). A small binary model is trained on 32x32 crops of a
# synthetic scene (tests/predict_full_fixture.py), then whole images of 200x80, 37x301 (named
# .PNG), 1000x1000 and 23x13 (smaller than a tile), with objects cut by every edge, are
# predicted from --checkpoint DIR (its newest valid checkpoint; a truncated newer file is
# skipped). Checks: each mask has its image's size; the IoU over the whole images matches,
# within 0.02, the IoU over 32x32 tiles cut from their interior (at least 16 px from every edge)
# and predicted alone; the circle at the left edge of the 200x80 image (lost by the old centre
# crop) is found; --save-probs writes a .npy whose argmax is the mask; a .JPG input (when cjpeg
# is installed) is predicted. Then K = 4 (VOC-style palette masks with the ignore label 255):
# palette PNGs with the training palette, K-channel probabilities, mIoU whole vs interior
# within 0.03. Bad --tile-overlap / --checkpoint values exit 2 naming the flag.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
python3 "$HERE/predict_full_fixture.py" make "$T" 32 1
$MPIRUN -np 2 $BIN train --backend cpu --data "$T/train" --val-fraction 0.1 --image-size 32 \
  --model-base 4 --model-depth 2 --batch 4 --steps 240 --lr 3e-3 --progress off --threads 1 \
  --checkpoint-dir "$T/ck" --checkpoint-every 120 > "$T/train.log"
head -c 1000 "$T/ck/ckpt-0000000240.cgck" > "$T/ck/ckpt-0000009999.cgck" # newer, truncated
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/full/images" \
  --masks "$T/full/masks" --output "$T/pred" --save-probs --batch 8 > "$T/full.log" 2>&1 ||
  { cat "$T/full.log"; echo "FAIL predict full images"; exit 1; }
cat "$T/full.log"
grep -q "checkpoint $T/ck/ckpt-0000000240.cgck, step 240" "$T/full.log" ||
  { echo "FAIL --checkpoint DIR did not take the newest valid checkpoint"; exit 1; }
grep -q "ckpt-0000009999.cgck" "$T/full.log" ||
  { echo "FAIL the corrupt newer checkpoint was not reported"; exit 1; }
echo "PASS --checkpoint DIR: newest valid checkpoint taken, the corrupt newer one skipped"
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ck/ckpt-0000000240.cgck" \
  --input "$T/tiles/images" --masks "$T/tiles/masks" --output "$T/predt" > "$T/tiles.log"
cat "$T/tiles.log"
python3 "$HERE/predict_full_fixture.py" check "$T" 32 1
python3 - "$T" <<'PY'
import re, sys
t = sys.argv[1]
full = float(re.search(r"IoU ([0-9.]+)", open(t + "/full.log").read()).group(1))
tiles = float(re.search(r"IoU ([0-9.]+)", open(t + "/tiles.log").read()).group(1))
print("full-image IoU %.4f, interior-tile IoU %.4f (want |difference| <= 0.02, both >= 0.9)" %
      (full, tiles))
assert abs(full - tiles) <= 0.02 and full >= 0.9 and tiles >= 0.9
print("PASS whole images predicted as well as their interior tiles")
PY
if command -v cjpeg > /dev/null; then
  mkdir -p "$T/jpg/images" "$T/jpg/masks"
  cjpeg -quality 95 "$T/wide.ppm" > "$T/jpg/images/wide.JPG"
  cp "$T/full/masks/wide.png" "$T/jpg/masks/"
  $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/jpg/images" \
    --masks "$T/jpg/masks" --output "$T/predj" > "$T/jpg.log" 2>&1 || { cat "$T/jpg.log"; exit 1; }
  python3 - "$T" <<'PY'
import re, struct, sys
t = sys.argv[1]
iou = float(re.search(r"IoU ([0-9.]+)", open(t + "/jpg.log").read()).group(1))
w, h = struct.unpack(">II", open(t + "/predj/wide.png", "rb").read(24)[16:24])
print("JPEG input: %dx%d mask, IoU %.4f" % (w, h, iou))
assert (w, h) == (200, 80) and iou >= 0.9
print("PASS a .JPG image is predicted")
PY
else
  echo "SKIP JPEG input: cjpeg not installed"
fi
# K = 4 (class = shape kind, ignore label 255 around squares): class-id masks of the inputs'
# sizes, K-channel probabilities, mIoU over whole images against interior tiles
python3 "$HERE/predict_full_fixture.py" make "$T/k4" 32 4
$MPIRUN -np 2 $BIN train --backend cpu --data "$T/k4/train" --val-fraction 0.1 --image-size 32 \
  --num-classes 4 --model-base 8 --model-depth 2 --batch 4 --steps 300 --lr 3e-3 --progress off \
  --threads 1 --checkpoint-dir "$T/k4/ck" > "$T/k4/train.log"
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/k4/ck" --input "$T/k4/full/images" \
  --masks "$T/k4/full/masks" --output "$T/k4/pred" --save-probs > "$T/k4/full.log"
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/k4/ck" --input "$T/k4/tiles/images" \
  --masks "$T/k4/tiles/masks" --output "$T/k4/predt" > "$T/k4/tiles.log"
cat "$T/k4/full.log"
python3 "$HERE/predict_full_fixture.py" check "$T/k4" 32 4
python3 - "$T/k4" <<'PY'
import re, sys
t = sys.argv[1]
full = float(re.search(r"mIoU ([0-9.]+)", open(t + "/full.log").read()).group(1))
tiles = float(re.search(r"mIoU ([0-9.]+)", open(t + "/tiles.log").read()).group(1))
print("K = 4: full-image mIoU %.4f, interior-tile mIoU %.4f (want |difference| <= 0.03, both >= 0.9)"
      % (full, tiles))
assert abs(full - tiles) <= 0.03 and full >= 0.9 and tiles >= 0.9
print("PASS K = 4: whole images predicted as well as their interior tiles")
PY
fail=0
expect2() { # expect2 WHAT FLAG ARGS...: exit 2 and FLAG named on stderr
  local what=$1 flag=$2; shift 2
  set +e; $MPIRUN -np 1 $BIN predict "$@" > /dev/null 2> "$T/err"; local rc=$?; set -e
  if [ $rc -ne 2 ] || ! grep -q -- "$flag" "$T/err"; then
    echo "FAIL $what: exit $rc"; cat "$T/err"; fail=1
  else echo "PASS $what: exit 2 naming $flag"; fi
}
A=(--checkpoint "$T/ck" --input "$T/full/images" --output "$T/p2")
expect2 "overlap too large" --tile-overlap "${A[@]}" --tile-overlap 0.95
expect2 "overlap not a number" --tile-overlap "${A[@]}" --tile-overlap x
mkdir "$T/empty"
expect2 "checkpoint dir without checkpoints" --checkpoint --checkpoint "$T/empty" \
  --input "$T/full/images" --output "$T/p2"
exit $fail
