#!/usr/bin/env bash
# Gradient accumulation (--grad-accum A), CPU backend, real mpirun:
#  1. the same global batch whatever the mix of ranks and micro-batches: 1 x 4 x 3, 2 x 2 x 3
#     and 3 x 4 x 1 against 1 x 12 x 1 over 10 steps of a 100-sample set (each epoch ends with a
#     short step, where micro-batches and whole ranks are padding), within test_dp_equiv's 1e-5;
#     the same for K = 4 classes with an ignore label; the reports count steps and samples once
#     a step, and the loss is the step's (the same as the 12 x 1 run's);
#  2. a requeued job on half the ranks: 2 x 4's checkpoint of step 6, resumed on 1 x 4 with
#     --grad-accum 2 (the same global batch: the exact position, no remapping) to step 12,
#     matches 2 x 4 throughout; inspect names the accumulation; the metrics JSON says it;
#  3. --resume DIR alone takes --grad-accum back from the checkpoint's settings; on another
#     number of ranks without --grad-accum (and with the checkpoint's --batch, given or not),
#     --grad-accum is chosen to keep the checkpoint's global batch (1 x 4 x 2 -> 2 x 4 x 1,
#     2 x 4 -> 1 x 4 x 2), not with another --batch;
#  4. a NaN in an accumulated step stops the run at that step (fp32: no loss scaling);
#  5. --grad-accum 0 and 1025 are usage errors (exit 2) naming the flag.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7"
. "$(dirname "$0")/runlib.sh" # run NAME WANT_RC ARGS..., want NAME TEXT, same_params

# ---- 1. one global batch of 12, four ways ----
run g12 0 $MPIRUN -np 1 $BIN $COMMON --steps 10 --batch 12 --params-out $T/g12.bin
run a1x4x3 0 $MPIRUN -np 1 $BIN $COMMON --steps 10 --batch 4 --grad-accum 3 \
    --params-out $T/a1x4x3.bin --metrics-out $T/a1x4x3.json
run a2x2x3 0 $MPIRUN -np 2 $BIN $COMMON --steps 10 --batch 2 --grad-accum 3 \
    --params-out $T/a2x2x3.bin
run a3x4x1 0 $MPIRUN -np 3 $BIN $COMMON --steps 10 --batch 4 --params-out $T/a3x4x1.bin
same_params a1x4x3 g12 1e-5 "1 rank x batch 4 x 3 micro-batches vs 1 x 12"
same_params a2x2x3 g12 1e-5 "2 ranks x batch 2 x 3 micro-batches vs 1 x 12"
same_params a3x4x1 g12 1e-5 "3 ranks x batch 4 vs 1 x 12"
want a1x4x3 "batch 4 per rank x 3 micro-batches (--grad-accum), global 12; 10 steps (9 per epoch)"
# the step's loss and the counts: as the 12 x 1 run reports them
g12_final=$(grep '^final:' $T/g12.log | sed 's/, [0-9.]* img\/s.*//')
want a1x4x3 "$g12_final"
want a2x2x3 "$g12_final"
want a1x4x3 "window of 10 steps"
python3 - "$T/a1x4x3.json" <<'EOF' || fail=1
import json, sys
m = json.load(open(sys.argv[1]))
assert m["global_batch"] == 12 and m["grad_accum"] == 3 and m["steps"] == 10, m
print("  ok: metrics JSON: global_batch 12, grad_accum 3, steps 10")
EOF
K4="--num-classes 4"
run k8 0 $MPIRUN -np 1 $BIN $COMMON $K4 --steps 6 --batch 8 --params-out $T/k8.bin
run k2x2x2 0 $MPIRUN -np 2 $BIN $COMMON $K4 --steps 6 --batch 2 --grad-accum 2 \
    --params-out $T/k2x2x2.bin
same_params k2x2x2 k8 1e-5 "K = 4: 2 ranks x batch 2 x 2 micro-batches vs 1 x 8"

# ---- 2. resumed on half the ranks with the same global batch ----
run p12 0 $MPIRUN -np 2 $BIN $COMMON --steps 12 --batch 4 --lr-schedule cosine --warmup-steps 3 \
    --checkpoint-dir $T/ck --checkpoint-every 6 --keep 5 --params-out $T/p12.bin
mkdir -p $T/ck1 && cp $T/ck/ckpt-0000000006.cgck $T/ck1/
run r12 0 $MPIRUN -np 1 $BIN $COMMON --steps 12 --batch 4 --grad-accum 2 --lr-schedule cosine \
    --warmup-steps 3 --resume $T/ck1/ckpt-0000000006.cgck --params-out $T/r12.bin
want r12 "resumed from $T/ck1/ckpt-0000000006.cgck: step 6"
if grep -q "^resume: global batch" $T/r12.log; then
  echo "FAIL r12: the same global batch was remapped:"; grep "^resume:" $T/r12.log; fail=1
fi
same_params r12 p12 1e-5 "2 x 4 to step 6, then 1 x 4 x 2 micro-batches to step 12 vs 2 x 4 throughout"
run inspect 0 $BIN inspect $T/ck1/ckpt-0000000012.cgck
want inspect "1 rank(s) x batch 8 (--batch 4 x --grad-accum 2) (global batch 8,"

# ---- 3. --resume DIR alone: the accumulation comes back from the settings ----
run more 0 $MPIRUN -np 1 $BIN train --resume $T/ck1 --steps 14 --progress off
want more "batch 4 per rank x 2 micro-batches (--grad-accum), global 8"
want more "resumed from $T/ck1/ckpt-0000000012.cgck: step 12"

# ---- 3b. requeued on another number of ranks, the command line unchanged: the global batch kept
# by accumulating (neither --batch nor --grad-accum given)
mkdir -p $T/ck2 && cp $T/ck1/ckpt-0000000012.cgck $T/ck2/   # 1 x 4 x 2: global 8
run back 0 $MPIRUN -np 2 $BIN train --resume $T/ck2 --steps 13 --progress off
msg="resume: --grad-accum 1 keeps the checkpoint's global batch 8 on 2 rank(s) x --batch 4"
want back "$msg (it trained with --grad-accum 2)"
want back "batch 4 per rank, global 8;"
if grep -q "^resume: global batch" $T/back.log; then
  echo "FAIL back: remapped:"; grep "^resume:" $T/back.log; fail=1
fi
mkdir -p $T/ck3 && cp $T/ck/ckpt-0000000012.cgck $T/ck3/    # 2 x 4: global 8
run half 0 $MPIRUN -np 1 $BIN train --resume $T/ck3 --steps 13 --progress off
want half "resume: --grad-accum 2 keeps the checkpoint's global batch 8 on 1 rank(s) x --batch 4"
# the checkpoint's --batch given again (a job script's CG_ARGS): chosen all the same
mkdir -p $T/ck5 && cp $T/ck/ckpt-0000000012.cgck $T/ck5/
run same 0 $MPIRUN -np 1 $BIN train --resume $T/ck5 --steps 13 --batch 4 --progress off
want same "resume: --grad-accum 2 keeps the checkpoint's global batch 8 on 1 rank(s) x --batch 4"
# another --batch: the user's global batch (the stored --grad-accum 2 stays: 2 x 2 x 2 = 8, but
# not chosen: 2 x 3 x 2 = 12 here)
mkdir -p $T/ck4 && cp $T/ck1/ckpt-0000000012.cgck $T/ck4/
run mine 0 $MPIRUN -np 2 $BIN train --resume $T/ck4 --steps 13 --batch 3 --progress off
want mine "global 12;"
grep -q "keeps the checkpoint's global batch" $T/mine.log &&
  { echo "FAIL mine: --grad-accum chosen though another --batch was given"; fail=1; }

# ---- 4. a NaN in an accumulated step ----
run nan 1 $MPIRUN -np 2 $BIN $COMMON --steps 6 --batch 2 --grad-accum 3 --test-nan-step 4
want nan "NaN/Inf loss at step 4"

# ---- 5. usage errors ----
for a in 0 1025; do
  run bad$a 2 $BIN $COMMON --grad-accum $a && want bad$a "--grad-accum: $a is out of range 1..1024"
done

[ $fail -eq 0 ] && echo "test_grad_accum: all passed"
exit $fail
