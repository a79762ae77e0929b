#!/usr/bin/env bash
# --tensorboard DIR read back by TensorBoard itself (EventAccumulator, from PyPI in the interop
# venv that scripts/test.sh makes; without it: skipped, 77): a 3-class run of 20 steps on 2
# ranks, reports every 5, validations every 10, a checkpoint at 10, then a resume to 30.
#  - tags: train/loss, train/img_per_s, train/lr, val/loss, val/miou, val/mdice, val/acc,
#    val/macc, val_class_iou/0..2, val_class_acc/0..2;
#  - train/loss at steps 5, 10, ... equals the printed "step N/M | loss X" lines; val/* equal
#    the history.jsonl records; train/lr follows --lr-schedule poly;
#  - the resumed run writes a second event file in DIR and only steps after 20;
#  - a run resumed from an older checkpoint (10, where the directory has points to 20) marks its
#    file so that TensorBoard drops the earlier file's points after 10 (PyTorch's purge_step):
#    each step once, its value the resumed run's;
#  - an unwritable DIR is warned about and the run goes on.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
VPY=$BUILD/interop-venv/bin/python
[ -x "$VPY" ] && "$VPY" -c "import tensorboard" 2> /dev/null ||
  { echo "SKIP: no tensorboard in $BUILD/interop-venv (scripts/test.sh installs it from PyPI)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail

RUN="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
     --train-samples 64 --val-samples 16 --num-classes 3 --batch 4 --report-every 5
     --val-every 10 --lr 0.01 --lr-schedule poly --warmup-steps 2 --seed 4"
$MPIRUN -np 2 $BIN $RUN --steps 20 --checkpoint-dir $T/ck --checkpoint-every 10 \
  --tensorboard $T/tb > $T/a.log
sleep 1.1 # event files are named by the second they start: the resumed one sorts after
$MPIRUN -np 2 $BIN $RUN --steps 30 --resume $T/ck --tensorboard $T/tb > $T/b.log
[ "$(ls $T/tb | grep -c '^events.out.tfevents\.')" = 2 ] || { ls -l $T/tb; fail "two event files"; }
"$VPY" - "$T" << 'PYEOF'
import glob, json, math, re, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
t = sys.argv[1]
ea = EventAccumulator(f"{t}/tb"); ea.Reload()
tags = set(ea.Tags()["scalars"])
want = {"train/loss", "train/img_per_s", "train/lr", "val/loss", "val/miou", "val/mdice",
        "val/acc", "val/macc", "val_class_iou/0", "val_class_iou/1", "val_class_iou/2",
        "val_class_acc/0", "val_class_acc/1", "val_class_acc/2"}
assert want <= tags, ("tags", sorted(tags))
sc = {k: {e.step: e.value for e in ea.Scalars(k)} for k in want}
assert sorted(sc["train/loss"]) == [5, 10, 15, 20, 25, 30], sc["train/loss"]
assert sorted(sc["val/loss"]) == [10, 20, 30], sc["val/loss"]
printed = {}
for log in ("a.log", "b.log"):
    for m in re.finditer(r"^step (\d+)/\d+ \| loss ([0-9.]+)", open(f"{t}/{log}").read(), re.M):
        printed[int(m.group(1))] = float(m.group(2))
for s, v in sc["train/loss"].items():
    assert abs(v - printed[s]) <= 6e-5, ("train/loss", s, v, printed[s])
hist = {r["step"]: r for r in map(json.loads, open(f"{t}/ck/history.jsonl"))}
for s in (10, 20, 30):
    h = hist[s]
    for tag, key in (("val/loss", "val_loss"), ("val/miou", "val_miou"), ("val/acc", "val_acc"),
                     ("val/macc", "val_macc")):
        # history.jsonl writes 6 significant digits
        assert math.isclose(sc[tag][s], h[key], rel_tol=1e-5, abs_tol=1e-6), (tag, s, sc[tag][s], h[key])
    for c in range(3):
        for what in ("iou", "acc"):
            if h[f"val_class_{what}"][c] is not None:
                assert math.isclose(sc[f"val_class_{what}/{c}"][s], h[f"val_class_{what}"][c],
                                    rel_tol=1e-5, abs_tol=1e-6), (what, c, s)
    assert math.isclose(sc["train/lr"][s], h["lr"], rel_tol=1e-5), ("lr", s)
# poly: lr(step) = 0.01 (1 - (step - 1 - 2) / (total - 2))^0.9 after the warm-up of 2
for s, v in sc["train/lr"].items():
    total = 20 if s <= 20 else 30
    want_lr = 0.01 * (1 - (s - 1 - 2) / (total - 2)) ** 0.9
    assert math.isclose(v, want_lr, rel_tol=1e-6), ("poly lr", s, v, want_lr)
files = sorted(glob.glob(f"{t}/tb/events.out.tfevents.*"))
second = EventAccumulator(files[1]); second.Reload()
steps = sorted(e.step for e in second.Scalars("train/loss"))
assert steps == [25, 30], ("the resumed file", steps)
print(f"PASS tensorboard reads {len(tags)} tags; train/loss = the printed losses; val/* = "
      f"history.jsonl; poly lr; the resumed run's file holds steps {steps}")
PYEOF
# resumed from the checkpoint of step 10 into the directory of a run that went on to 20
mkdir $T/tb3 && cp $T/tb/$(ls $T/tb | head -1) $T/tb3/
sleep 1.1
$MPIRUN -np 2 $BIN $RUN --steps 20 --resume $T/ck/ckpt-0000000010.cgck --checkpoint-dir $T/ck3 \
  --tensorboard $T/tb3 > $T/d.log
"$VPY" - "$T" << 'PYEOF'
import re, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
t = sys.argv[1]
ea = EventAccumulator(f"{t}/tb3"); ea.Reload()
ev = ea.Scalars("train/loss")
steps = [e.step for e in ev]
assert steps == [5, 10, 15, 20], ("each step once after the purge", steps)
again = {int(m.group(1)): float(m.group(2)) for m in
         re.finditer(r"^step (\d+)/\d+ \| loss ([0-9.]+)", open(f"{t}/d.log").read(), re.M)}
for e in ev[2:]:
    assert abs(e.value - again[e.step]) <= 6e-5, ("the resumed run's value", e.step, e.value)
print("PASS a resume from step 10: TensorBoard shows steps", steps, "with the resumed values")
PYEOF
# a directory that cannot be made: a warning, and the run trains on
touch $T/file
$MPIRUN -np 1 $BIN $RUN --steps 5 --tensorboard $T/file/tb > $T/c.log 2>&1 ||
  { cat $T/c.log; fail "the run with a bad --tensorboard failed"; }
grep -q "warning: --tensorboard: $T/file/tb: cannot make the directory" $T/c.log ||
  { cat $T/c.log; fail "no warning"; }
echo "PASS test_tensorboard"
