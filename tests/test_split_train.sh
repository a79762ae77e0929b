#!/usr/bin/env bash
# The split on the cpu backend (where the "device" work runs on the compute threads):
#  - --split cpu and --split gpu train to bitwise identical weights (same features either way);
#  - starved helpers (1 worker, 6 ms of extra work per CPU-featurised sample): the auto
#    controller moves samples off the helpers and the data wait falls.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 8 --steps 6
        --train-samples 64 --val-samples 16 --progress off --threads 1"
$MPIRUN -np 1 $BIN $COMMON --split cpu --params-out $T/cpu.bin --metrics-out $T/cpu.json > $T/cpu.log
$MPIRUN -np 1 $BIN $COMMON --split gpu --params-out $T/gpu.bin --metrics-out $T/gpu.json > $T/gpu.log
echo "--split cpu vs --split gpu (bitwise):"
$CMP $T/cpu.bin $T/gpu.bin 0 bitwise
python3 - $T/cpu.json $T/gpu.json <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("val_iou", "val_dice", "val_acc", "train_iou"):
    assert a[k] == b[k], "%s differs: %r vs %r" % (k, a[k], b[k])
print("PASS metrics equal whether counted by the helpers or on the device")
PY
$MPIRUN -np 1 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 8 \
  --steps 80 --train-samples 256 --val-samples 0 --progress off --threads 1 --cpu-workers 1 \
  --test-feature-ms 6 --split auto --split-every 5 --report-every 20 --stats-out $T/s.jsonl > $T/auto.log
grep "^split\|^step" $T/auto.log
python3 - $T/s.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
w = [r["ranks"][0]["data_wait"] for r in recs]
sh = [r["ranks"][0]["cpu_share"] for r in recs]
print("data wait per report:", ["%.1f%%" % (100 * x) for x in w], "cpu_share:", ["%.2f" % x for x in sh])
assert w[-1] < 0.5 * w[0], "data wait did not fall: %r" % w
assert sh[-1] < 0.6, "the controller kept the work on the starved helpers: %r" % sh
print("PASS the controller moved work off the starved helpers and the data wait fell")
PY
