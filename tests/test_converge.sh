#!/usr/bin/env bash
# Convergence: a small UNet (base 8, depth 3) on 64x64 synthetic data, 2 ranks x batch 8,
# 300 steps, must reach validation IoU >= 0.80 with each optimizer: AdamW at lr 3e-3, and SGD
# as the segmentation recipe trains (--optimizer sgd --momentum 0.9 --nesterov on --lr 0.05
# --lr-schedule poly; 0.88 here) (about 20 s each on 2 cores).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
converge() { # converge NAME FLAGS...
  local name=$1; shift
  $MPIRUN -np 2 $BIN train --backend cpu --model-base 8 --model-depth 3 --image-size 64 \
    --batch 8 --steps 300 --train-samples 2048 --val-samples 256 --report-every 100 \
    --progress plain --metrics-out "$T/$name.json" "$@"
  cat "$T/$name.json"
  python3 - "$T/$name.json" "$name" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("steps", "ranks", "global_batch", "train_loss", "val_iou", "val_dice", "val_acc",
          "img_per_s", "wall_s", "backend", "optimizer"):
    assert k in m, "metrics JSON lacks " + k
assert m["steps"] == 300 and m["ranks"] == 2 and m["global_batch"] == 16, m
print("%s: validation IoU %.4f after %d steps (want >= 0.80)" % (sys.argv[2], m["val_iou"],
                                                                 m["steps"]))
sys.exit(0 if m["val_iou"] >= 0.80 else 1)
PY
}
converge adamw --lr 3e-3
converge sgd --optimizer sgd --momentum 0.9 --nesterov on --lr 0.05 --lr-schedule poly
