#!/usr/bin/env bash
# Multi-class convergence (issue 13): `cogpu-bench make-pngs` writes a K = 4 dataset of JPEG
# images and 8-bit gray PNG label maps (class = shape kind, an ignore band of label 255 around
# about half of the shapes); a small UNet (base 8, depth 3) trains on it on 2 CPU ranks x batch
# 8 for 300 steps at lr 3e-3 and must reach validation mIoU >= 0.45 (measured 0.54; about 30 s
# of CPU time), with the per-class table printed and "miou"/"macc"/"per_class"/"confusion" in
# --metrics-out.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$BENCH make-pngs --out "$T/d" --count 1024 --image-size 64 --num-classes 4 --format jpeg --seed 5
test -f "$T/d/images/000000.jpg" && test -f "$T/d/masks/000000.png"
$MPIRUN -np 2 $BIN train --backend cpu --data "$T/d" --num-classes 4 --model-base 8 \
  --model-depth 3 --image-size 64 --batch 8 --steps 300 --lr 3e-3 --val-fraction 0.125 \
  --report-every 100 --progress plain --metrics-out "$T/m.json" | tee "$T/out.log"
grep -q "final validation: loss .* mIoU .* (128 images, 4 classes)" "$T/out.log"
grep -q "(pixels labelled 255 are ignored)" "$T/out.log"
test "$(grep -cE '^  [0-3] +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+$' "$T/out.log")" -ge 4
python3 - "$T/m.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("miou", "macc", "per_class", "num_classes", "ignore_index", "val_iou", "train_miou"):
    assert k in m, "metrics JSON lacks " + k
assert m["num_classes"] == 4 and m["ignore_index"] == 255 and m["ranks"] == 2, m
pc = m["per_class"]
assert [c["class"] for c in pc] == [0, 1, 2, 3], pc
assert all(c["gt_pixels"] > 0 for c in pc), pc
macc = sum(c["acc"] for c in pc) / 4  # every class in the truth: mAcc is their plain mean
assert abs(m["macc"] - macc) <= 1e-6 and all(0 <= c["acc"] <= 1 for c in pc), (m["macc"], pc)
# the confusion matrix, a row per truth class: its sum is the class's truth pixels, its
# diagonal share the class's Acc
cm = m["confusion"]
assert len(cm) == 4 and all(len(r) == 4 for r in cm), cm
for c in pc:
    row = cm[c["class"]]
    assert sum(row) == c["gt_pixels"] and abs(row[c["class"]] / sum(row) - c["acc"]) < 1e-9, cm
print("validation mIoU %.4f, per class %s (want mIoU >= 0.45)"
      % (m["miou"], ", ".join("%.3f" % c["iou"] for c in pc)))
sys.exit(0 if m["miou"] >= 0.45 else 1)
PY
