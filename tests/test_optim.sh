#!/usr/bin/env bash
# Optimizer and loss options, CPU backend, real mpirun. Gradient clipping (--clip-grad-norm X):
#  1. X = 1e9, above every norm: the run is bitwise the run without clipping (the factor is
#     exactly 1), and it reports the norms (step lines, metrics JSON: none clipped);
#  2. X below the norms: every step is clipped (the step lines and the metrics JSON say so) and
#     the weights differ from the unclipped run's; the norm is the global gradient's, taken after
#     the all-reduce: 2 ranks x 4 and 1 rank x 4 x 2 micro-batches equal 1 x 8 within
#     test_dp_equiv's 1e-5, with the same reported mean norm to 4 digits;
#  3. a checkpoint of step 4 resumed to step 8 is bitwise the uninterrupted run; the stored X
#     comes back with --resume DIR alone, and another X is taken with a notice;
#  4. TensorBoard gets train/grad_norm;
#  5. usage errors (exit 2, naming the flag): -1, 'abc', 2e9, 1e-50 (0 as a float: off).
# The multi-step schedule (--lr-schedule multistep, PyTorch's MultiStepLR; test_lr checks its
# values):
#  6. the history's lr at steps 2, 4, 6, 8 with --lr-milestones 3,7 --lr-gamma 0.1 (after 3
#     and after 7 steps); a checkpoint of step 4 resumed to 8 is bitwise the uninterrupted run
#     (the second milestone is passed after the resume); the milestones are written back in one
#     spelling (a resume with '3,07' is the same setting: no notice); a resume giving
#     --lr-schedule multistep alone takes the stored milestones; one past the run's end is warned
#     about;
#  7. usage errors: multistep without milestones, milestones not increasing, 0, a stray comma,
#     more than 16, a milestone within the warm-up, --lr-gamma outside (0, 1].
# The loss's Dice weight (--dice-weight W; test_gradcheck checks the loss and its gradient, the
# GPU tests the kernels):
#  8. W = 1 is bitwise the default; W = 0 (cross-entropy alone) trains other weights, binary and
#     K = 4, 2 ranks = 1 rank within 1e-5; the banner and the metrics JSON say it; W < 0 is a
#     usage error.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7 --report-every 4"
. "$(dirname "$0")/runlib.sh" # run NAME WANT_RC ARGS..., want NAME TEXT, same_params
bitwise() { # bitwise A B WHAT
  if cmp -s "$T/$1.bin" "$T/$2.bin"; then echo "  ok: $3: bitwise equal"
  else echo "FAIL $3: the parameters differ"; fail=1; fi
}
metric() { # metric NAME KEY: a field of NAME's metrics JSON
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$T/$1.json" "$2"
}

# ---- 1. a limit never reached: measured, not clipped ----
run plain 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --params-out $T/plain.bin \
    --metrics-out $T/plain.json
run huge 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --clip-grad-norm 1e9 \
    --params-out $T/huge.bin --metrics-out $T/huge.json
bitwise huge plain "--clip-grad-norm 1e9 vs none"
want huge "gradients: clipped to global L2 norm 1e+09 (--clip-grad-norm), their norm reported"
want huge "of 4 clipped)"
[ "$(metric huge steps_clipped)" = 0 ] && [ "$(metric plain clip_grad_norm)" = None ] &&
  [ "$(metric plain grad_norm_mean)" = None ] ||
  { echo "FAIL metrics: steps_clipped $(metric huge steps_clipped), without clipping" \
         "clip_grad_norm $(metric plain clip_grad_norm)"; fail=1; }
grep -q "grad norm" $T/plain.log && { echo "FAIL plain: a grad norm without clipping"; fail=1; }
# the norms of the run: well above the limit of the next runs, 0.001
python3 - "$T/huge.log" <<'EOF' || fail=1
import re, sys
n = [float(m) for m in re.findall(r"grad norm ([0-9.e+-]+) \(max", open(sys.argv[1]).read())]
assert len(n) == 2 and min(n) > 0.01, n
print("  ok: the windows' mean norms without clipping: %s" % n)
EOF

# ---- 2. clipped, on 1 and 2 ranks and accumulated ----
run c8 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --clip-grad-norm 0.001 \
    --params-out $T/c8.bin --metrics-out $T/c8.json
run c2x4 0 $MPIRUN -np 2 $BIN $COMMON --steps 8 --batch 4 --clip-grad-norm 0.001 \
    --params-out $T/c2x4.bin --metrics-out $T/c2x4.json
run c1x4x2 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 4 --grad-accum 2 \
    --clip-grad-norm 0.001 --params-out $T/c1x4x2.bin --metrics-out $T/c1x4x2.json
want c8 "(max 0.7471, 4 of 4 clipped)"
[ "$(metric c8 steps_clipped)" = 8 ] ||
  { echo "FAIL c8: steps_clipped $(metric c8 steps_clipped), want 8"; fail=1; }
if "$CMP" "$T/c8.bin" "$T/plain.bin" 1e-3 > /dev/null 2>&1; then
  echo "FAIL c8: clipping to 0.001 left the weights within 1e-3 of the unclipped run"; fail=1
else echo "  ok: clipped weights differ from the unclipped run's"; fi
same_params c2x4 c8 1e-5 "clipped: 2 ranks x batch 4 vs 1 x 8"
same_params c1x4x2 c8 1e-5 "clipped: 1 rank x batch 4 x 2 micro-batches vs 1 x 8"
for r in c2x4 c1x4x2; do
  a=$(metric c8 grad_norm_mean) b=$(metric $r grad_norm_mean)
  python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
              sys.exit(abs(a - b) > 1e-4 * a)" "$a" "$b" &&
    echo "  ok: $r's mean norm $b = 1 x 8's $a" ||
    { echo "FAIL $r: mean norm $b, 1 x 8's $a"; fail=1; }
done

# ---- 3. resumed ----
run k4 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --batch 8 --clip-grad-norm 0.001 \
    --checkpoint-dir $T/ck
run k8 0 $MPIRUN -np 1 $BIN train --resume $T/ck --steps 8 --params-out $T/k8.bin \
    --progress off --report-every 4
want k8 "gradients: clipped to global L2 norm 0.001 (--clip-grad-norm)"
bitwise k8 c8 "4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"
run k9 0 $MPIRUN -np 1 $BIN train --resume $T/ck --steps 9 --clip-grad-norm 2 --progress off
want k9 "--clip-grad-norm"
want k9 "gradients: clipped to global L2 norm 2 (--clip-grad-norm)"

# ---- 4. TensorBoard ----
run tb 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --batch 8 --clip-grad-norm 1 --tensorboard $T/tb
if grep -qa "train/grad_norm" $T/tb/events.out.tfevents.*; then echo "  ok: train/grad_norm"
else echo "FAIL tb: no train/grad_norm scalar"; fail=1; fi

# ---- 5. usage errors ----
for a in -1 abc 2e9 1e-50; do
  run bad$a 2 $BIN $COMMON --steps 1 --batch 8 --clip-grad-norm $a && want bad$a "--clip-grad-norm"
done

# ---- 6. the multi-step schedule ----
MS="--lr 0.01 --lr-schedule multistep --lr-milestones 3,7 --lr-gamma 0.1"
run ms 0 $MPIRUN -np 1 $BIN $COMMON $MS --steps 8 --batch 8 --val-samples 8 --val-every 2 \
    --history-out $T/ms.jsonl --params-out $T/ms.bin
python3 - "$T/ms.jsonl" <<'EOF' || fail=1
import json, sys
lr = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[1]))}
want = {2: 0.01, 4: 0.001, 6: 0.001, 8: 0.0001}
assert all(abs(lr[s] - v) <= 1e-12 * v for s, v in want.items()), lr
print("  ok: the history's lr by step: %s" % lr)
EOF
run ms4 0 $MPIRUN -np 1 $BIN $COMMON $MS --steps 4 --batch 8 --val-samples 8 --val-every 2 \
    --checkpoint-dir $T/ckm
run ms8 0 $MPIRUN -np 1 $BIN $COMMON --lr 0.01 --lr-schedule multistep --lr-milestones 3,07 \
    --lr-gamma 0.1 --steps 8 --batch 8 --val-samples 8 --val-every 2 --resume $T/ckm \
    --params-out $T/ms8.bin
bitwise ms8 ms "multistep: 4 steps, a checkpoint, resumed to 8 vs 8 steps"
grep -q "lr-milestones" $T/ms8.log && { echo "FAIL ms8: '3,07' taken as another setting:";
  grep "lr-milestones" $T/ms8.log; fail=1; }
# --lr-schedule multistep again without its milestones: the checkpoint's (known once merged)
run ms9 0 $MPIRUN -np 1 $BIN train --resume $T/ckm --lr-schedule multistep --steps 9 \
    --progress off
want ms9 "resumed from $T/ckm/ckpt-0000000008.cgck: step 8"
# a milestone past the run's end never applies: said
run msend 0 $MPIRUN -np 1 $BIN $COMMON --lr-schedule multistep --lr-milestones 3,20 --steps 4 \
    --batch 8
want msend "--lr-milestones: 20 is not before the run's end (4 steps): it never applies"

# ---- 7. usage errors of the schedule ----
bad() { # bad NAME TEXT ARGS...: exit 2 naming it
  local name=$1 text=$2; shift 2
  run "$name" 2 $BIN $COMMON --steps 1 --batch 8 "$@" && want "$name" "$text"
}
bad msnone "--lr-schedule multistep: give the steps of its decays" --lr-schedule multistep
bad msorder "--lr-milestones: '5,3' is not increasing" --lr-schedule multistep --lr-milestones 5,3
bad mszero "--lr-milestones: '0' is not" --lr-milestones 0
bad mscomma "--lr-milestones: '3,' is not" --lr-milestones 3,
bad msmany "at most 16" --lr-milestones 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17
bad mswarm "--lr-milestones: 3 is within the warm-up (--warmup-steps 4)" \
    --lr-schedule multistep --lr-milestones 3,7 --warmup-steps 4
# a milestone at the warm-up's end is not within it
run msatw 0 $MPIRUN -np 1 $BIN $COMMON --steps 2 --batch 8 --lr-schedule multistep \
    --lr-milestones 1 --warmup-steps 1
bad gamma0 "--lr-gamma: 0 is out of range (0, 1]" --lr-gamma 0
bad gamma2 "--lr-gamma: 2 is out of range (0, 1]" --lr-gamma 2

# ---- 8. the loss's Dice weight ----
run d1 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --batch 8 --dice-weight 1 --params-out $T/d1.bin
run dflt 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --batch 8 --params-out $T/dflt.bin
bitwise d1 dflt "--dice-weight 1 vs the default loss"
grep -q "^loss:" $T/dflt.log && { echo "FAIL dflt: a loss line for the default loss"; fail=1; }
for k in 1 4; do
  run d0k$k 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --batch 8 --dice-weight 0 --num-classes $k \
      --params-out $T/d0k$k.bin --metrics-out $T/d0k$k.json
  run d0k${k}r2 0 $MPIRUN -np 2 $BIN $COMMON --steps 4 --batch 4 --dice-weight 0 --num-classes $k \
      --params-out $T/d0k${k}r2.bin
  same_params d0k${k}r2 d0k$k 1e-5 "--dice-weight 0, K = $k: 2 ranks x batch 4 vs 1 x 8"
done
want d0k1 "loss: BCE-with-logits alone (--dice-weight 0)"
want d0k4 "classes: 4 (softmax cross-entropy), ignored: label 255"
[ "$(metric d0k1 dice_weight)" = 0 ] || { echo "FAIL d0k1: dice_weight in the JSON"; fail=1; }
if "$CMP" "$T/d0k1.bin" "$T/dflt.bin" 1e-3 > /dev/null 2>&1; then
  echo "FAIL d0k1: --dice-weight 0 trained the default loss's weights"; fail=1
else echo "  ok: --dice-weight 0 trains other weights than the default loss"; fi
run dw 2 $BIN $COMMON --steps 1 --batch 8 --dice-weight -1 && want dw "--dice-weight"

[ $fail -eq 0 ] && echo "test_optim: all passed"
exit $fail
