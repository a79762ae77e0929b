#!/usr/bin/env bash
# predict round trip: train briefly on a PNG directory with a separate validation directory,
# predict that directory's images from the final checkpoint on 2 ranks: one mask per image,
# same names and sizes, and the IoU predict prints equals the final validation IoU; an --output
# that is the --input or --masks directory is refused (exit 2) and nothing there changes.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$BUILD/bench/cogpu-bench make-pngs --out "$T/train" --count 96 --image-size 32 --seed 5 > /dev/null
$BUILD/bench/cogpu-bench make-pngs --out "$T/val" --count 13 --image-size 32 --seed 9 > /dev/null
$MPIRUN -np 2 $BIN train --backend cpu --data "$T/train" --val-data "$T/val" --image-size 32 \
  --model-base 4 --model-depth 2 --batch 4 --steps 240 --lr 3e-3 --progress off --threads 1 \
  --checkpoint-dir "$T/ck" --metrics-out "$T/m.json" > "$T/train.log"
CK=$(ls "$T"/ck/*.cgck | tail -1)
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/val/images" \
  --masks "$T/val/masks" --output "$T/pred" | tee "$T/pred.log"
[ "$(ls "$T/pred" | wc -l)" -eq 13 ] || { echo "FAIL: want 13 masks"; exit 1; }
python3 - "$T" <<'PY'
import json, os, re, struct, sys
t = sys.argv[1]
m = json.load(open(t + "/m.json"))
log = open(t + "/pred.log").read()
iou = float(re.search(r"IoU ([0-9.]+)", log).group(1))
print("validation IoU %.6f, predict IoU %.6f" % (m["val_iou"], iou))
assert abs(iou - m["val_iou"]) < 1e-6, "predict's IoU differs from the validation metric"
for f in sorted(os.listdir(t + "/pred")):
    assert os.path.exists(t + "/val/images/" + f), f
    head = open(t + "/pred/" + f, "rb").read(24)
    w, h = struct.unpack(">II", head[16:24])
    assert (w, h) == (32, 32), (f, w, h)
print("PASS masks written with the images' names and sizes; IoU matches validation")
PY
set +e
$MPIRUN -np 2 $BIN predict --checkpoint "$T/nothing.cgck" --input "$T/val/images" --output "$T/p2" 2> "$T/err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "nothing.cgck" "$T/err" || { echo "FAIL: missing checkpoint: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS a missing checkpoint is named, exit 2"
# --output onto the images or the ground truth (spelled another way): refused, nothing replaced
sums() { cat "$T"/val/images/* "$T"/val/masks/* | md5sum; }
before=$(sums)
for pair in "images/.:--input" "masks:--masks"; do
  bad=${pair%%:*} flag=${pair#*:}
  set +e
  $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/val/images" \
    --masks "$T/val/masks" --output "$T/val/$bad" 2> "$T/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "is the $flag directory" "$T/err" ||
    { echo "FAIL: --output onto $flag: rc $rc"; cat "$T/err"; exit 1; }
  echo "PASS --output onto $flag refused, exit 2: $(cat "$T/err")"
done
[ "$(sums)" = "$before" ] || { echo "FAIL: the images or masks changed"; exit 1; }
