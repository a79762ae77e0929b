#!/usr/bin/env bash
# Convergence: a small UNet (base 8, depth 3) on 64x64 synthetic data, 2 ranks x batch 8,
# 300 steps, must reach validation IoU >= 0.80 with AdamW at lr 3e-3 (0.92), and >= 0.75 with
# SGD as the segmentation recipe trains (--optimizer sgd --momentum 0.9 --nesterov on --lr 0.05
# --lr-schedule poly): 0.88 on an AVX-512 VM, 0.796 on an AMD Zen 3 one, whose OpenBLAS kernels
# round otherwise and SGD's path follows (about 20 s each on 2 cores).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
converge() { # converge NAME WANT FLAGS...
  local name=$1 want=$2; shift 2
  $MPIRUN -np 2 $BIN train --backend cpu --model-base 8 --model-depth 3 --image-size 64 \
    --batch 8 --steps 300 --train-samples 2048 --val-samples 256 --report-every 100 \
    --progress plain --metrics-out "$T/$name.json" "$@"
  cat "$T/$name.json"
  python3 - "$T/$name.json" "$name" "$want" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("steps", "ranks", "global_batch", "train_loss", "val_iou", "val_dice", "val_acc",
          "img_per_s", "wall_s", "backend", "optimizer"):
    assert k in m, "metrics JSON lacks " + k
assert m["steps"] == 300 and m["ranks"] == 2 and m["global_batch"] == 16, m
want = float(sys.argv[3])
print("%s: validation IoU %.4f after %d steps (want >= %.2f)" % (sys.argv[2], m["val_iou"],
                                                                m["steps"], want))
sys.exit(0 if m["val_iou"] >= want else 1)
PY
}
converge adamw 0.80 --lr 3e-3
converge sgd 0.75 --optimizer sgd --momentum 0.9 --nesterov on --lr 0.05 --lr-schedule poly
