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
# The loss's class weights (--class-weights W,... for K >= 2, --pos-weight X for binary;
# test_gradcheck checks the loss against PyTorch's and its gradient, the GPU tests the kernels):
#  9. K = 4 weights of 1 are bitwise none; other weights train other weights, 2 ranks = 1 rank
#     within 1e-5, and validation whole (its own loss sums) gives the square validation's loss
#     (the synthetic images are squares of --image-size); the banner and the metrics JSON say
#     them; a checkpoint of step 4 resumed with --resume DIR alone to 8 is bitwise the
#     uninterrupted run (the weights are stored), other weights on a resume get a notice; the
#     same for binary --pos-weight 3;
# 10. usage errors (exit 2, naming the flag): a count other than K, weights for a binary model,
#     --pos-weight with K classes, all 0, a negative weight, text, --pos-weight 0, an empty
#     element, a space, hex, a weight below the float range; the weights are written back in
#     their shortest text (10, not 1e+01), and 150 classes of 4-digit weights fit;
# 12. label smoothing (--label-smoothing E, K >= 2; test_gradcheck checks it against PyTorch):
#     K = 4 with E = 0.1 trains other weights, 2 ranks = 1 rank within 1e-5, validation whole
#     gives the square validation's loss, with class weights too; the banner and the metrics
#     JSON say it; usage errors: a binary model, 1, a value whose float is 1 or 0, -0.1.
# 11. --check-data reports the classes' shares of the training pixels and the balanced weights
#     as the flag that sets them: 4 PNG pairs of known composition (K = 3 with an ignore band;
#     binary: the same masks' class 0 as background), the exact figures on 1 and 2 ranks, and
#     the printed flag trains; wide images are counted whole (the side classes too), with
#     --crop off as their fitted squares; all-foreground binary masks give --pos-weight 1 and
#     say why (written with Debian's Pillow and NumPy, /usr/bin/python3; skipped without them);
#     --class-weights balanced counts the same at start-up and trains with the printed weights
#     (bitwise the run given them), on 1 and 2 ranks, binary as --pos-weight; a checkpoint keeps
#     the numbers (a resume does not count again; a binary run resumes by its own command line);
#     with --pos-weight it is a usage error.
# The optimizer (--optimizer sgd; test_sgd checks cg_cpu_sgd against torch.optim.SGD, the GPU
# tests the kernel):
# 13. SGD with Nesterov momentum trains other weights than AdamW and than momentum 0; 2 ranks x 4
#     and 1 rank x 4 x 2 micro-batches equal 1 x 8 within 1e-5; the banner, the metrics JSON and
#     `inspect` say it; a checkpoint of step 4 resumed with --resume DIR alone to 8 is bitwise
#     the uninterrupted run (the momentum buffer is stored); another --momentum on a resume gets
#     a notice (so does --nesterov off with --momentum 0), another --optimizer is refused (exit 2,
#     pointing to --init-from; no notice of going on is printed before a refusal), and
#     --init-from an SGD checkpoint may train with AdamW;
# 14. usage errors (exit 2, naming the flag): an AdamW flag with sgd (--beta1, --eps), an SGD
#     flag with adamw (--momentum, --nesterov), --nesterov with momentum 0, momentum 1 or 0 as a
#     float, an unknown optimizer.
# The focal loss (--focal-gamma G; test_gradcheck checks it against torchvision's
# sigmoid_focal_loss and PyTorch, the GPU tests the kernels):
# 15. G = 2 trains other weights, binary (with --pos-weight) and K = 4 (with --class-weights);
#     2 ranks = 1 rank within 1e-5; validation whole (its own loss sums) gives the square
#     validation's loss; the banner and the metrics JSON say it; a resume takes it back (bitwise
#     the uninterrupted run) and another G gets a notice; usage errors: with --label-smoothing,
#     -1, 11, a value whose float is 0.
# Online hard example mining (--ohem-thresh P --ohem-min-kept N; test_gradcheck checks the loss
# against PyTorch and the thresholds against a sort, the GPU tests the kernels):
# 16. P = 0.7 trains other weights, binary (with --pos-weight, N 100) and K = 4 (with
#     --class-weights, N by default); each sample is mined on its own, so 2 ranks = 1 rank
#     within 1e-5 (binary: 2 ranks x 4 = 1 rank x 4 x 2 micro-batches within 1e-5, = 1 x 8
#     within 1e-3, below); validation does not mine (whole, which cannot, gives the square validation's
#     loss); K = 4 with P = 1 keeps every pixel (no p_t rounds to 1 in these 8 steps): bitwise
#     the run without; the banner and the metrics JSON say it; a resume takes it back (bitwise
#     the uninterrupted run) and another P gets a notice (and is stored), P = 0 turns it off;
#     usage errors: -0.1, 1.5, a value whose float is 0, N not below a sample's pixels, N
#     without P (a resume too), N < 0.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7 --report-every 4"
. "$(dirname "$0")/runlib.sh" # run, want, metric, same_params
bitwise() { # bitwise A B WHAT
  if cmp -s "$T/$1.bin" "$T/$2.bin"; then echo "  ok: $3: bitwise equal"
  else echo "FAIL $3: the parameters differ"; fail=1; fi
}
differs() { # differs A B WHAT: A's parameters are not within 1e-3 of B's
  if [ ! -s "$T/$1.bin" ] || [ ! -s "$T/$2.bin" ]; then
    echo "FAIL $1: $3: no parameters of $1 or $2 to compare"; fail=1
  elif "$CMP" "$T/$1.bin" "$T/$2.bin" 1e-3 > /dev/null 2>&1; then
    echo "FAIL $1: $3 left the weights within 1e-3 of $2's"; fail=1
  else echo "  ok: $3 trains other weights than $2"; fi
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
differs c8 plain "clipping to 0.001"
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
differs d0k1 dflt "--dice-weight 0"
run dw 2 $BIN $COMMON --steps 1 --batch 8 --dice-weight -1 && want dw "--dice-weight"

# ---- 9. class weights ----
val_loss_eq() { # val_loss_eq A B WHAT: the same validation loss to 1e-6
  python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
              sys.exit(abs(a - b) > 1e-6 * abs(a))" "$(metric $1 val_loss)" \
          "$(metric $2 val_loss)" &&
    echo "  ok: $3: val_loss $(metric $1 val_loss) = $(metric $2 val_loss)" ||
    { echo "FAIL $3: val_loss $(metric $1 val_loss) vs $(metric $2 val_loss)"; fail=1; }
}
K4="--num-classes 4 --steps 8 --batch 8 --val-samples 8"
run k4n 0 $MPIRUN -np 1 $BIN $COMMON $K4 --params-out $T/k4n.bin --metrics-out $T/k4n.json
run k4o 0 $MPIRUN -np 1 $BIN $COMMON $K4 --class-weights 1,1,1,1 --params-out $T/k4o.bin
bitwise k4o k4n "--class-weights 1,1,1,1 vs none"
CW="--class-weights 0.5,2,1.0,3"
run k4w 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --params-out $T/k4w.bin --metrics-out $T/k4w.json
run k4w2 0 $MPIRUN -np 2 $BIN $COMMON $K4 $CW --batch 4 --params-out $T/k4w2.bin
run k4ww 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --val-mode whole --metrics-out $T/k4ww.json
same_params k4w2 k4w 1e-5 "--class-weights, K = 4: 2 ranks x batch 4 vs 1 x 8"
differs k4w k4n "--class-weights"
val_loss_eq k4ww k4w "--class-weights: validation whole vs square"
want k4w "loss: the classes' cross-entropy weighted 0.5,2,1,3 (--class-weights)"
[ "$(metric k4w class_weights)" = "[0.5, 2, 1, 3]" ] && [ "$(metric k4n class_weights)" = None ] ||
  { echo "FAIL metrics: class_weights $(metric k4w class_weights) / $(metric k4n class_weights)"
    fail=1; }
run k4w4 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --steps 4 --checkpoint-dir $T/ckw
run k4w8 0 $MPIRUN -np 1 $BIN train --resume $T/ckw --steps 8 --params-out $T/k4w8.bin \
    --progress off
bitwise k4w8 k4w "--class-weights: 4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"
want k4w8 "loss: the classes' cross-entropy weighted 0.5,2,1,3 (--class-weights)"
run k4w9 0 $MPIRUN -np 1 $BIN train --resume $T/ckw --steps 9 --class-weights 1,1,1,2 \
    --progress off
want k4w9 "resume: --class-weights 1,1,1,2 (the checkpoint has 0.5,2,1,3): the run goes on"
run k4w10 0 $MPIRUN -np 1 $BIN train --resume $T/ckw --steps 9 --class-weights "" --progress off
want k4w10 "resume: --class-weights none (the checkpoint has 1,1,1,2): the run goes on" # k4w9's
B1="--steps 8 --batch 8 --val-samples 8"
run pw 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 --params-out $T/pw.bin \
    --metrics-out $T/pw.json
run pw2 0 $MPIRUN -np 2 $BIN $COMMON $B1 --pos-weight 3 --batch 4 --params-out $T/pw2.bin
run pww 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 --val-mode whole --metrics-out $T/pww.json
run pwn 0 $MPIRUN -np 1 $BIN $COMMON $B1 --params-out $T/pwn.bin
same_params pw2 pw 1e-5 "--pos-weight 3: 2 ranks x batch 4 vs 1 x 8"
differs pw pwn "--pos-weight 3"
val_loss_eq pww pw "--pos-weight: validation whole vs square"
want pw "loss: the foreground's BCE weighted 3 (--pos-weight)"
[ "$(metric pw pos_weight)" = 3 ] || { echo "FAIL metrics: pos_weight $(metric pw pos_weight)"
  fail=1; }
run pw4 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 --steps 4 --checkpoint-dir $T/ckp
run pw8 0 $MPIRUN -np 1 $BIN train --resume $T/ckp --steps 8 --params-out $T/pw8.bin \
    --progress off
bitwise pw8 pw "--pos-weight: 4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"

# ---- 10. usage errors of the class weights ----
bad cwn "--class-weights: 3 weights for --num-classes 4" --num-classes 4 --class-weights 1,2,3
bad cwb "--class-weights: this model is binary" --class-weights 1,2
bad pwk "--pos-weight: for binary models" --num-classes 4 --pos-weight 2
bad cw0 "--class-weights: every weight is 0" --num-classes 2 --class-weights 0,0
bad cwneg "--class-weights: '1,-1' is not weights" --num-classes 2 --class-weights 1,-1
bad cwtxt "--class-weights: 'a,b' is not weights" --num-classes 2 --class-weights a,b
bad pw0 "--pos-weight: 0 is out of range" --pos-weight 0
for v in 1,,2 " 1,2" 0x10,1 1e-45,1 1,2, ,1,2; do
  bad "cwv$v" "--class-weights: '$v' is not weights" --num-classes 2 --class-weights "$v"
done
# written back in their shortest text; 150 classes of 4 digits fit
run cwfmt 0 $BIN $COMMON --steps 1 --batch 8 --num-classes 4 --class-weights 1,10,100,120.0
want cwfmt "loss: the classes' cross-entropy weighted 1,10,100,120 (--class-weights)"
W150=$(python3 -c "print(','.join(['0.8234'] * 150))")
run cw150 0 $BIN $COMMON --steps 1 --batch 8 --num-classes 150 --class-weights $W150
want cw150 "loss: the classes' cross-entropy weighted $W150 (--class-weights)"

# ---- 12. label smoothing ----
run ls 0 $MPIRUN -np 1 $BIN $COMMON $K4 --label-smoothing 0.1 --params-out $T/ls.bin \
    --metrics-out $T/ls.json
run ls2 0 $MPIRUN -np 2 $BIN $COMMON $K4 --label-smoothing 0.1 --batch 4 --params-out $T/ls2.bin
run lsw 0 $MPIRUN -np 1 $BIN $COMMON $K4 --label-smoothing 0.1 --val-mode whole \
    --metrics-out $T/lsw.json
run lscw 0 $MPIRUN -np 1 $BIN $COMMON $K4 --label-smoothing 0.1 $CW --metrics-out $T/lscw.json
run lscww 0 $MPIRUN -np 1 $BIN $COMMON $K4 --label-smoothing 0.1 $CW --val-mode whole \
    --metrics-out $T/lscww.json
same_params ls2 ls 1e-5 "--label-smoothing 0.1: 2 ranks x batch 4 vs 1 x 8"
differs ls k4n "--label-smoothing 0.1"
val_loss_eq lsw ls "--label-smoothing: validation whole vs square"
val_loss_eq lscww lscw "--label-smoothing with --class-weights: validation whole vs square"
want ls "loss: the cross-entropy's targets smoothed by 0.1 (--label-smoothing)"
[ "$(metric ls label_smoothing)" = 0.1 ] ||
  { echo "FAIL metrics: label_smoothing $(metric ls label_smoothing)"; fail=1; }
bad lsb "--label-smoothing: for --num-classes K >= 2" --label-smoothing 0.1
bad ls1 "--label-smoothing: 1 is 1 or more as a float" --num-classes 4 --label-smoothing 1
bad ls1f "--label-smoothing: 0.99999999 is 1 or more as a float" --num-classes 4 \
    --label-smoothing 0.99999999
bad ls0f "--label-smoothing: 1e-50 is 0 as a float" --num-classes 4 --label-smoothing 1e-50
bad lsn "--label-smoothing: -0.1 is out of range" --num-classes 4 --label-smoothing -0.1

# ---- 13. SGD ----
SGD="--optimizer sgd --lr 0.05 --momentum 0.9 --nesterov on --weight-decay 5e-4"
run sgd 0 $MPIRUN -np 1 $BIN $COMMON $SGD --steps 8 --batch 8 --params-out $T/sgd.bin \
    --metrics-out $T/sgd.json
run sgd2 0 $MPIRUN -np 2 $BIN $COMMON $SGD --steps 8 --batch 4 --params-out $T/sgd2.bin
run sgda 0 $MPIRUN -np 1 $BIN $COMMON $SGD --steps 8 --batch 4 --grad-accum 2 \
    --params-out $T/sgda.bin
run sgd0 0 $MPIRUN -np 1 $BIN $COMMON --optimizer sgd --lr 0.05 --momentum 0 --weight-decay 5e-4 \
    --steps 8 --batch 8 --params-out $T/sgd0.bin
same_params sgd2 sgd 1e-5 "--optimizer sgd: 2 ranks x batch 4 vs 1 x 8"
same_params sgda sgd 1e-5 "--optimizer sgd: 1 rank x batch 4 x 2 micro-batches vs 1 x 8"
differs sgd plain "--optimizer sgd (vs AdamW)"
differs sgd sgd0 "--optimizer sgd --momentum 0.9 --nesterov on (vs momentum 0)"
want sgd "optimizer: SGD, lr 0.05, momentum 0.9 (Nesterov), weight decay 0.0005 (L2, added to the \
gradient)"
want plain "optimizer: AdamW, lr 0.001, betas 0.9/0.999, eps 1e-08, weight decay 0.0001 (decoupled)"
[ "$(metric sgd optimizer)" = sgd ] && [ "$(metric sgd momentum)" = 0.9 ] &&
  [ "$(metric sgd nesterov)" = True ] && [ "$(metric plain optimizer)" = adamw ] &&
  [ "$(metric plain momentum)" = None ] ||
  { echo "FAIL metrics: optimizer $(metric sgd optimizer) momentum $(metric sgd momentum)" \
         "nesterov $(metric sgd nesterov); AdamW's momentum $(metric plain momentum)"; fail=1; }
run sgd4 0 $MPIRUN -np 1 $BIN $COMMON $SGD --steps 4 --batch 8 --checkpoint-dir $T/cks
run sgd8 0 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 8 --params-out $T/sgd8.bin \
    --progress off
bitwise sgd8 sgd "--optimizer sgd: 4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"
want sgd8 "SGD steps 4, loss scale 1"
$BIN inspect $T/cks/ckpt-0000000004.cgck > $T/sgdi.log 2>&1
want sgdi "optimizer:     SGD, momentum 0.9 (Nesterov), 4 steps, last lr 0.05"
run sgd9 0 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 9 --momentum 0.5 --progress off
want sgd9 "resume: --momentum 0.5 (the checkpoint has 0.9): the run goes on with the new value"
# Nesterov turned off to go on with momentum 0; a refused resume prints no notice of going on
run sgd10 0 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 10 --momentum 0 --nesterov off \
    --progress off
want sgd10 "resume: --nesterov off (the checkpoint has on): the run goes on with the new value"
run sgd11 2 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 11 --momentum 0.5 --beta1 0.8 \
    --progress off
want sgd11 "--beta1: for --optimizer adamw"
grep -q "^resume:" $T/sgd11.log && { echo "FAIL sgd11: a resume notice before the refusal"
  fail=1; }
run sgdadam 2 $MPIRUN -np 1 $BIN train --resume $T/cks --steps 9 --optimizer adamw \
    --progress off
want sgdadam "--optimizer: the checkpoint has sgd, the command line adamw; a resumed run cannot \
change it"
want sgdadam "--init-from takes its weights"
run adamsgd 2 $MPIRUN -np 1 $BIN train --resume $T/ck --steps 9 --optimizer sgd --progress off
want adamsgd "--optimizer: the checkpoint has adamw, the command line sgd"
run sgdinit 0 $MPIRUN -np 1 $BIN $COMMON --steps 2 --batch 8 --init-from $T/cks
want sgdinit "optimizer: AdamW"

# ---- 14. usage errors of the optimizer ----
bad ob1 "--beta1: for --optimizer adamw; this run uses --optimizer sgd" --optimizer sgd --beta1 0.8
bad oeps "--eps: for --optimizer adamw" --optimizer sgd --eps 1e-6
bad omom "--momentum: for --optimizer sgd; this run uses --optimizer adamw" --momentum 0.5
bad onest "--nesterov: for --optimizer sgd" --nesterov on
bad onest0 "--nesterov: needs --momentum above 0" --optimizer sgd --momentum 0 --nesterov on
bad omom1f "--momentum: 0.999999999 is 1 or more as a float" --optimizer sgd --momentum 0.999999999
bad omom0f "--momentum: 1e-50 is 0 as a float" --optimizer sgd --momentum 1e-50
bad omom1 "--momentum: 1 is 1 or more as a float" --optimizer sgd --momentum 1
bad oadam "--optimizer: 'adam' is not one of adamw|sgd" --optimizer adam

# ---- 15. the focal loss ----
run fb 0 $MPIRUN -np 1 $BIN $COMMON $B1 --focal-gamma 2 --pos-weight 3 --params-out $T/fb.bin \
    --metrics-out $T/fb.json
run fb2 0 $MPIRUN -np 2 $BIN $COMMON $B1 --focal-gamma 2 --pos-weight 3 --batch 4 \
    --params-out $T/fb2.bin
run fbw 0 $MPIRUN -np 1 $BIN $COMMON $B1 --focal-gamma 2 --pos-weight 3 --val-mode whole \
    --metrics-out $T/fbw.json
same_params fb2 fb 1e-5 "--focal-gamma 2, binary: 2 ranks x batch 4 vs 1 x 8"
differs fb pw "--focal-gamma 2 (binary, --pos-weight 3)"
val_loss_eq fbw fb "--focal-gamma, binary: validation whole vs square"
want fb "loss: focal, each pixel's BCE term times (1 - p_t)^2 (--focal-gamma)"
[ "$(metric fb focal_gamma)" = 2 ] && [ "$(metric plain focal_gamma)" = 0 ] ||
  { echo "FAIL metrics: focal_gamma $(metric fb focal_gamma) / $(metric plain focal_gamma)"
    fail=1; }
run fk 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --focal-gamma 0.5 --params-out $T/fk.bin \
    --metrics-out $T/fk.json
run fk2 0 $MPIRUN -np 2 $BIN $COMMON $K4 $CW --focal-gamma 0.5 --batch 4 --params-out $T/fk2.bin
run fkw 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --focal-gamma 0.5 --val-mode whole \
    --metrics-out $T/fkw.json
same_params fk2 fk 1e-5 "--focal-gamma 0.5, K = 4: 2 ranks x batch 4 vs 1 x 8"
differs fk k4w "--focal-gamma 0.5 (K = 4, --class-weights)"
val_loss_eq fkw fk "--focal-gamma, K = 4: validation whole vs square"
want fk "loss: focal, each pixel's cross-entropy term times (1 - p_t)^0.5 (--focal-gamma)"
run fk4 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --focal-gamma 0.5 --steps 4 --checkpoint-dir $T/ckf
run fk8 0 $MPIRUN -np 1 $BIN train --resume $T/ckf --steps 8 --params-out $T/fk8.bin \
    --progress off
bitwise fk8 fk "--focal-gamma: 4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"
run fk9 0 $MPIRUN -np 1 $BIN train --resume $T/ckf --steps 9 --focal-gamma 2 --progress off
want fk9 "resume: --focal-gamma 2 (the checkpoint has 0.5): the run goes on with the new value"
bad fls "--focal-gamma: not with --label-smoothing" --num-classes 4 --focal-gamma 2 \
    --label-smoothing 0.1
bad fneg "--focal-gamma: -1 is out of range" --focal-gamma -1
bad fbig "--focal-gamma: 11 is out of range" --focal-gamma 11
bad f0f "--focal-gamma: 1e-50 is 0 as a float" --focal-gamma 1e-50
bad fsub "--focal-gamma: 1e-39 is below the smallest normal float as a float" --focal-gamma 1e-39

# ---- 16. online hard example mining ----
OB="--ohem-thresh 0.7 --ohem-min-kept 100"
run ob 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 $OB --params-out $T/ob.bin \
    --metrics-out $T/ob.json
run ob2 0 $MPIRUN -np 2 $BIN $COMMON $B1 --pos-weight 3 $OB --batch 4 --params-out $T/ob2.bin
run ob1a 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 $OB --batch 4 --grad-accum 2 \
    --params-out $T/ob1a.bin
run obw 0 $MPIRUN -np 1 $BIN $COMMON $B1 --pos-weight 3 $OB --val-mode whole \
    --metrics-out $T/obw.json
# binary OHEM keeps the hardest 100 of a sample's pixels by their BCE: a pixel at that edge
# flips with rounding (a batch of 4 rows chunks otherwise than 8), and the runs part by 2e-4 on
# an AMD Zen 3 VM's OpenBLAS kernels (1e-5 held on an AVX-512 one); K = 4 below holds 1e-5.
# Chunked alike (micro-batches of 4 on one rank), the ranks' all-reduce holds 1e-5 here too.
same_params ob2 ob1a 1e-5 "--ohem-thresh 0.7, binary: 2 ranks x batch 4 vs 1 x 4 x 2 micro-batches"
same_params ob2 ob 1e-3 "--ohem-thresh 0.7, binary: 2 ranks x batch 4 vs 1 x 8"
differs ob pw "--ohem-thresh 0.7 (binary, --pos-weight 3)"
val_loss_eq obw ob "--ohem-thresh, binary: validation whole (not mined) vs square"
want ob "loss: OHEM, each sample's BCE over its pixels predicted below 0.7, at least its 100 \
hardest (--ohem-thresh, --ohem-min-kept); validation scores every pixel"
[ "$(metric ob ohem_thresh)" = 0.7 ] && [ "$(metric ob ohem_min_kept)" = 100 ] &&
  [ "$(metric plain ohem_thresh)" = 0 ] && [ "$(metric plain ohem_min_kept)" = 0 ] ||
  { echo "FAIL metrics: ohem $(metric ob ohem_thresh) $(metric ob ohem_min_kept) / \
$(metric plain ohem_thresh) $(metric plain ohem_min_kept)"; fail=1; }
run ok 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --ohem-thresh 0.7 --params-out $T/ok.bin \
    --metrics-out $T/ok.json
run ok2 0 $MPIRUN -np 2 $BIN $COMMON $K4 $CW --ohem-thresh 0.7 --batch 4 --params-out $T/ok2.bin
run okw 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --ohem-thresh 0.7 --val-mode whole \
    --metrics-out $T/okw.json
same_params ok2 ok 1e-5 "--ohem-thresh 0.7, K = 4: 2 ranks x batch 4 vs 1 x 8"
differs ok k4w "--ohem-thresh 0.7 (K = 4, --class-weights)"
val_loss_eq okw ok "--ohem-thresh, K = 4: validation whole (not mined) vs square"
want ok "loss: OHEM, each sample's cross-entropy over its pixels predicted below 0.7, at least \
its 204 hardest (--ohem-thresh, --ohem-min-kept); validation scores every pixel"
run ok1 0 $MPIRUN -np 1 $BIN $COMMON $K4 --ohem-thresh 1 --params-out $T/ok1.bin
bitwise ok1 k4n "--ohem-thresh 1 (every pixel kept), K = 4, vs none"
run ok4 0 $MPIRUN -np 1 $BIN $COMMON $K4 $CW --ohem-thresh 0.7 --steps 4 --checkpoint-dir $T/cko
run ok8 0 $MPIRUN -np 1 $BIN train --resume $T/cko --steps 8 --params-out $T/ok8.bin \
    --progress off
bitwise ok8 ok "--ohem-thresh: 4 steps, a checkpoint, --resume DIR to 8 vs 8 steps"
run ok9 0 $MPIRUN -np 1 $BIN train --resume $T/cko --steps 9 --ohem-thresh 0.5 --progress off
want ok9 "resume: --ohem-thresh 0.5 (the checkpoint has 0.7): the run goes on with the new value"
run ok10 0 $MPIRUN -np 1 $BIN train --resume $T/cko --steps 10 --ohem-thresh 0 --progress off
want ok10 "resume: --ohem-thresh 0 (the checkpoint has 0.5): the run goes on with the new value"
! grep -q "loss: OHEM" "$T/ok10.log" || { echo "FAIL ok10: --ohem-thresh 0 still mines"; fail=1; }
bad oneg "--ohem-thresh: -0.1 is out of range" --ohem-thresh -0.1
bad obig "--ohem-thresh: 1.5 is out of range" --ohem-thresh 1.5
bad o0f "--ohem-thresh: 1e-50 is 0 as a float" --ohem-thresh 1e-50
bad omk "--ohem-min-kept: 1024 is not below the 1024 pixels of a 32x32 sample" --ohem-thresh 0.7 \
    --ohem-min-kept 1024
bad onot "--ohem-min-kept: for online hard example mining, which --ohem-thresh" --ohem-min-kept 5
run ok11 2 $MPIRUN -np 1 $BIN train --resume $T/cko --steps 11 --ohem-min-kept 5 --progress off
want ok11 "--ohem-min-kept: for online hard example mining, which --ohem-thresh"
bad omneg "--ohem-min-kept: -1 is out of range" --ohem-thresh 0.7 --ohem-min-kept -1

# ---- 11. --check-data's class report ----
if /usr/bin/python3 -c 'import PIL, numpy' 2> /dev/null; then
  /usr/bin/python3 - "$T/cls" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
for d in ("images", "masks", "masks2", "wide/images", "wide/masks", "fg/images", "fg/masks"):
    os.makedirs(f"{t}/{d}")
rng = np.random.default_rng(5)
for i in range(4):  # rows 0-15 class 0, 16-23 class 1, 24-31 class 2; image 0: rows 28-31 ignored
    m = np.zeros((32, 32), np.uint8)
    m[16:24] = 1
    m[24:] = 2
    if i == 0:
        m[28:] = 255
    im = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(im).save(f"{t}/images/{i}.png")
    Image.fromarray(m).save(f"{t}/masks/{i}.png")
    Image.fromarray(((m == 1) | (m == 2)).astype(np.uint8) * 255).save(f"{t}/masks2/{i}.png")
    Image.fromarray(im).save(f"{t}/fg/images/{i}.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(f"{t}/fg/masks/{i}.png")
for i in range(2):  # 32 x 64: class 1 in the left quarter, 2 in the right one, 0 between
    m = np.zeros((32, 64), np.uint8)
    m[:, :16] = 1
    m[:, 48:] = 2
    im = rng.integers(0, 255, (32, 64, 3)).astype(np.uint8)
    Image.fromarray(im).save(f"{t}/wide/images/{i}.png")
    Image.fromarray(m).save(f"{t}/wide/masks/{i}.png")
EOF
  mkdir -p "$T/clsb" && ln -s "$T/cls/images" "$T/clsb/images" &&
    ln -s "$T/cls/masks2" "$T/clsb/masks"
  CK="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
      --steps 1 --batch 2 --val-fraction 0 --check-data"
  # K = 3: class pixels 2048, 1024, 896 (128 ignored) of 3968: balanced 3968 / (3 n_c)
  for np_ in 1 2; do
    run ck3r$np_ 0 $MPIRUN -np $np_ $BIN $CK --data $T/cls --num-classes 3
    want ck3r$np_ "check-data: --data: class pixels (share of 3968, the images whole at \
--image-size, the ignore label left out): 0 51.61%, 1 25.81%, 2 22.58%"
    want ck3r$np_ "check-data: balanced: --class-weights 0.6458,1.292,1.476 (pixels / (K x the \
class's pixels))"
  done
  # binary: 2176 background (the ignore band's 128 pixels among them), 1920 foreground pixels
  run ck1 0 $MPIRUN -np 1 $BIN $CK --data $T/clsb
  want ck1 "class pixels (0 background, 1 foreground; share of 4096, the images whole at \
--image-size): 0 53.12%, 1 46.88%"
  want ck1 "check-data: balanced: --pos-weight 1.133 (background / foreground pixels)"
  flag=$(sed -n 's/^check-data: balanced: \(--class-weights [^ ]*\) .*/\1/p' $T/ck3r1.log)
  run ck3w 0 $MPIRUN -np 1 $BIN $CK --data $T/cls --num-classes 3 $flag
  want ck3w "loss: the classes' cross-entropy weighted 0.6458,1.292,1.476 (--class-weights)"
  # wide images: whole 2048 / 1024 / 1024 pixels; their centred squares hold class 0 alone
  run ckw 0 $MPIRUN -np 1 $BIN $CK --data $T/cls/wide --num-classes 3
  want ckw "class pixels (share of 4096, the images whole at --image-size, the ignore label \
left out): 0 50.00%, 1 25.00%, 2 25.00%"
  run ckwf 0 $MPIRUN -np 1 $BIN $CK --data $T/cls/wide --num-classes 3 --crop off
  want ckwf "class pixels (share of 2048, the images fitted at --image-size, the ignore label \
left out): 0 100.00%, 1 0.00%, 2 0.00%"
  want ckwf "--class-weights 0.3333,1,1 (pixels / (K x the class's pixels)); a class without \
pixels gets 1"
  run ckfg 0 $MPIRUN -np 1 $BIN $CK --data $T/cls/fg
  want ckfg "check-data: balanced: --pos-weight 1 (background / foreground pixels); no \
background pixel"
  # --class-weights balanced: the same count at start-up (without --check-data), the weights
  # --check-data prints: bitwise the run given them; 2 ranks count as 1; binary: --pos-weight
  CB="${CK/--check-data/} --steps 3 --metrics-out"
  for np_ in 1 2; do
    run cb3r$np_ 0 $MPIRUN -np $np_ $BIN $CB $T/cb3r$np_.json --data $T/cls --num-classes 3 \
        --class-weights balanced --params-out $T/cb3r$np_.bin
    want cb3r$np_ "loss: the classes' cross-entropy weighted 0.6458,1.292,1.476 \
(--class-weights balanced: --data's pixels / (K x the class's))"
  done
  want cb3r1 "check-data: balanced: --class-weights 0.6458,1.292,1.476"
  run cb3f 0 $MPIRUN -np 1 $BIN $CB $T/cb3f.json --data $T/cls --num-classes 3 $flag \
      --params-out $T/cb3f.bin
  bitwise cb3r1 cb3f "--class-weights balanced vs the weights --check-data printed"
  [ "$(metric cb3r1 class_weights)" = "[0.6458, 1.292, 1.476]" ] ||
    { echo "FAIL metrics: class_weights $(metric cb3r1 class_weights)"; fail=1; }
  run cb1 0 $MPIRUN -np 1 $BIN $CB $T/cb1.json --data $T/clsb --class-weights balanced \
      --params-out $T/cb1.bin
  want cb1 "loss: the foreground's BCE weighted 1.133 (--pos-weight; --class-weights balanced: \
background / foreground pixels of --data)"
  run cb1f 0 $MPIRUN -np 1 $BIN $CB $T/cb1f.json --data $T/clsb --pos-weight 1.133 \
      --params-out $T/cb1f.bin
  bitwise cb1 cb1f "--class-weights balanced (binary) vs --pos-weight 1.133"
  [ "$(metric cb1 pos_weight)" = 1.133 ] ||
    { echo "FAIL metrics: pos_weight $(metric cb1 pos_weight), want 1.133"; fail=1; }
  # a binary run resumed by its own command line (the stored --pos-weight is no conflict)
  run cb6 0 $MPIRUN -np 1 $BIN $CB $T/cb6.json --data $T/clsb --class-weights balanced \
      --checkpoint-dir $T/ckb1
  run cb7 0 $MPIRUN -np 1 $BIN $CB $T/cb7.json --data $T/clsb --class-weights balanced \
      --checkpoint-dir $T/ckb1 --resume --steps 4
  want cb7 "loss: the foreground's BCE weighted 1.133 (--pos-weight; --class-weights balanced"
  # the checkpoint keeps the numbers: a resume does not count again
  run cb4 0 $MPIRUN -np 1 $BIN $CB $T/cb4.json --data $T/cls --num-classes 3 \
      --class-weights balanced --checkpoint-dir $T/ckb
  run cb5 0 $MPIRUN -np 1 $BIN train --resume $T/ckb --steps 4 --progress off
  want cb5 "loss: the classes' cross-entropy weighted 0.6458,1.292,1.476 (--class-weights)"
  ! grep -q "check-data" "$T/cb5.log" || { echo "FAIL cb5: the resume counted again"; fail=1; }
  run cbp 2 $BIN $CB $T/cbp.json --data $T/clsb --class-weights balanced --pos-weight 2
  want cbp "--class-weights balanced and --pos-weight 2: give one of the two"
else
  echo "SKIP 11: /usr/bin/python3 has no Pillow or NumPy"
fi

[ $fail -eq 0 ] && echo "test_optim: all passed"
exit $fail
