#!/usr/bin/env bash
# train --lr-schedule plateau (PyTorch's ReduceLROnPlateau stepped with each validation's
# --best-metric), CPU backend, real mpirun; the learning rates are replayed with torch
# (Debian's /usr/bin/python3; skipped (77) without it):
#  1. val_loss (mode min) with a warm-up, --lr-gamma 0.5, --lr-patience 1, --lr-threshold 1e-3,
#     --lr-cooldown 1 and --min-lr: every validation record's learning rate is torch's
#     ReduceLROnPlateau's after the validations before it (times the warm-up's ramp), the rate
#     was lowered at least twice and the floor reached; each reduction is said;
#  2. IoU (mode max, --best-metric auto for a binary model), patience 0: the same;
#  3. a checkpoint of step 12 resumed to 30 with --resume FILE alone is bitwise the uninterrupted
#     run (the rate and the counts are stored), and so is a finished 12-step run extended to 30
#     (its final validation counted); every checkpoint's header names the rate its step trained
#     at; a resume with a lower --lr stays at --min-lr; one with another --best-metric says the
#     state starts afresh;
#  4. usage errors (exit 2, naming the flag): --lr-patience without plateau, plateau with
#     --val-every 0, plateau with --lr-gamma 1, --lr-threshold 2.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
PY=/usr/bin/python3
"$PY" -c 'import torch' 2> /dev/null || { echo "SKIP: no torch for $PY"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
        --val-samples 16 --progress off --threads 1 --seed 5 --report-every 10 --val-every 1
        --batch 8 --steps 30 --lr 0.05 --lr-schedule plateau"
. "$(dirname "$0")/runlib.sh" # run NAME WANT_RC ARGS..., want NAME TEXT

# replay HISTORY MODE KEY GAMMA PATIENCE THRESHOLD COOLDOWN MIN_LR WARMUP: torch's rates
replay() {
  "$PY" - "$@" << 'PYEOF'
import json, sys, torch
hist, mode, key = sys.argv[1], sys.argv[2], sys.argv[3]
gamma, patience, thr, cool, min_lr, warm = (float(sys.argv[4]), int(sys.argv[5]),
                                            float(sys.argv[6]), int(sys.argv[7]),
                                            float(sys.argv[8]), int(sys.argv[9]))
recs = [json.loads(l) for l in open(hist)]
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.SGD([p], lr=0.05)
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=gamma,
                                                   patience=patience, threshold=thr,
                                                   cooldown=cool, min_lr=min_lr)
bad, lrs = 0, set()
for r in recs:
    want = opt.param_groups[0]['lr'] * min(1.0, r['step'] / warm if warm else 1.0)
    lrs.add(opt.param_groups[0]['lr'])
    if abs(r['lr'] - want) > 5e-6 * want:  # the history's 6 digits
        print('FAIL step %d: lr %.9g, torch %.9g' % (r['step'], r['lr'], want)); bad = 1
    sched.step(r[key])
if len(lrs) < 3 or min(lrs) != min_lr:
    print('FAIL: the rates %s: fewer than 2 reductions or the floor %g not reached'
          % (sorted(lrs), min_lr)); bad = 1
if not bad:
    print('  ok: %d validations, the rates %s as torch %s ReduceLROnPlateau(mode=%s) gives'
          % (len(recs), ' '.join('%g' % x for x in sorted(lrs, reverse=True)),
             torch.__version__, mode))
sys.exit(bad)
PYEOF
}

# ---- 1. val_loss, with a warm-up and a cooldown ----
run loss 0 $MPIRUN -np 1 $BIN $COMMON --best-metric val_loss --warmup-steps 3 --lr-gamma 0.5 \
    --lr-patience 1 --lr-threshold 1e-3 --lr-cooldown 1 --min-lr 0.0125 \
    --history-out $T/loss.jsonl --checkpoint-dir $T/ck --checkpoint-every 1 --keep 40 \
    --params-out $T/loss.bin
replay $T/loss.jsonl min val_loss 0.5 1 1e-3 1 0.0125 3 || fail=1
want loss "lr: plateau: times 0.5 whenever val_loss has not improved by more than 0.001 of it"
want loss "(--lr-patience 1): the learning rate goes from 0.05 to 0.025 after step"
# every checkpoint's header (f64 at 144) says the rate its step trained at, not the one the
# step's validation just lowered it to
"$PY" - "$T" << 'PYEOF' || fail=1
import glob, json, struct, sys
t = sys.argv[1]
lr = {r['step']: r['lr'] for r in map(json.loads, open(t + '/loss.jsonl'))}
bad = 0
for f in sorted(glob.glob(t + '/ck/ckpt-*.cgck')):
    step, = struct.unpack_from('<q', open(f, 'rb').read(), 48)
    got, = struct.unpack_from('<d', open(f, 'rb').read(), 144)
    if abs(got - lr[step]) > 5e-6 * lr[step]:
        print('FAIL %s: lr %.9g, its step trained at %.9g' % (f, got, lr[step])); bad = 1
print(('  ok' if not bad else 'FAIL') + ': the checkpoints name the rate their step trained at')
sys.exit(bad)
PYEOF

# ---- 2. IoU (mode max), patience 0 ----
run iou 0 $MPIRUN -np 1 $BIN $COMMON --lr-gamma 0.5 --lr-patience 0 --min-lr 0.00625 \
    --history-out $T/iou.jsonl --params-out $T/iou.bin
replay $T/iou.jsonl max val_iou 0.5 0 1e-4 0 0.00625 0 || fail=1

# ---- 3. a resume goes on with the rate and the counts ----
run res 0 $MPIRUN -np 1 $BIN train --resume $T/ck/ckpt-0000000012.cgck --checkpoint-dir $T/ck2 \
    --progress off --params-out $T/res.bin
if cmp -s $T/res.bin $T/loss.bin; then echo "  ok: resumed at step 12: bitwise the uninterrupted run"
else echo "FAIL res: the resumed run's weights differ"; fail=1; fi

# a finished run extended with --steps goes on as the longer run (its final validation stepped)
run short 0 $MPIRUN -np 1 $BIN ${COMMON/--steps 30/--steps 12} --lr-gamma 0.5 --lr-patience 0 \
    --min-lr 0.00625 --checkpoint-dir $T/cks
run ext 0 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 30 --progress off \
    --params-out $T/ext.bin
if cmp -s $T/ext.bin $T/iou.bin; then echo "  ok: 12 steps extended to 30: bitwise the 30-step run"
else echo "FAIL ext: the extended run's weights differ from the 30-step run's"; fail=1; fi
# a resume with a lower --lr keeps --min-lr (0.05 x 0.5 at step 12 would be 0.02 x 0.5 = 0.01)
run lower 0 $MPIRUN -np 1 $BIN train --resume $T/ck/ckpt-0000000012.cgck --checkpoint-dir $T/ck3 \
    --lr 0.02 --steps 14 --progress off --history-out $T/lower.jsonl
"$PY" -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert r[0]['step'] == 13 and abs(r[0]['lr'] - 0.0125) < 1e-9, r[0]" $T/lower.jsonl &&
  echo "  ok: a resume with a lower --lr stays at --min-lr" || { echo "FAIL lower"; fail=1; }
# another --best-metric on a resume: the state it kept watched another figure: said
run other 0 $MPIRUN -np 1 $BIN train --resume $T/ck/ckpt-0000000012.cgck --checkpoint-dir $T/ck4 \
    --best-metric val_iou --steps 13 --progress off
want other "resume: --lr-schedule plateau starts afresh at --lr: its state watched val_loss"

# with early stopping: the stopping validation steps the plateau once (finish() reports it)
run es 0 $MPIRUN -np 1 $BIN $COMMON --lr-gamma 0.5 --lr-patience 0 --min-lr 0.00625 \
    --early-stop-patience 2
"$PY" -c "
import re, sys
steps = re.findall(r'the learning rate goes from .* after step (\d+) ', open(sys.argv[1]).read())
stop = re.search(r'^early stop after step (\d+)', open(sys.argv[1]).read(), re.M)
assert stop and len(steps) == len(set(steps)), (steps, stop)" $T/es.log &&
  echo "  ok: an early stop's validation lowers the rate once" ||
  { cat $T/es.log; echo "FAIL es: a validation stepped the plateau twice"; fail=1; }

# ---- 4. usage errors ----
X="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
   --batch 8 --steps 2 --progress off"
run p1 2 $MPIRUN -np 1 $BIN $X --lr-patience 3
want p1 "--lr-patience: for --lr-schedule plateau"
run p2 2 $MPIRUN -np 1 $BIN $X --lr-schedule plateau --val-every 0
want p2 "--val-every 0 validates only at the end"
run p3 2 $MPIRUN -np 1 $BIN $X --lr-schedule plateau --lr-gamma 1
want p3 "--lr-gamma 1 would never lower the rate"
run p4 2 $MPIRUN -np 1 $BIN $X --lr-schedule plateau --lr-threshold 2
want p4 "--lr-threshold"
exit $fail
