#!/usr/bin/env bash
# Early stopping (--early-stop-patience N, --early-stop-min-delta D), CPU backend, real mpirun:
#  1. at lr 1e-30 the weights, so every validation's figures, stay the same: no validation
#     after the first improves, and patience 2 ends a 10-step run after step 3 (validations at
#     1, 2, 3): exit 0, the message, the final validation, the checkpoint of step 3, three
#     history records, the metrics JSON's steps 3 and early_stop_step 3; 2 ranks the same;
#  2. with a min_delta no change can beat (1e6) at the default lr, the run stops after step 3
#     too, its weights bitwise those of a run of --steps 3 (constant lr), and with
#     --lr-schedule poly its learning rate at step 3 is the 10-step schedule's (the history's
#     lr equals a full run's);
#  3. a patience never reached: the run goes to --steps, early_stop_step null;
#  4. checkpoints keep the count (as Lightning's do): --resume of the stopped run stops at its
#     next validation, after step 4; a run resumed from its checkpoint of step 2 stops where
#     the uninterrupted one did (after step 4 at patience 3), with the same weights;
#     a patience that the run's validations cannot reach is warned about;
#  5. usage errors (exit 2): --val-every 0, no validation data (--val-samples 0), -1, a
#     negative min_delta, min_delta without a patience;
#  6. --skip-bad: the failed loads counted are those of the trained batches, not of the batches
#     loaded ahead of the stop (PNG files of cogpu-bench make-pngs, 12 of 16 truncated): the
#     early-stopped run reports what a run of --steps 4 reports, and exits 0.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
        --val-samples 8 --batch 4 --threads 1 --progress off --seed 3 --val-every 1
        --report-every 4"
. "$(dirname "$0")/runlib.sh" # run, want, metric, same_params
check_eq() { # check_eq GOT WANT WHAT
  if [ "$1" = "$2" ]; then echo "  ok: $3: $1"; else echo "FAIL $3: $1, want $2"; fail=1; fi
}
hist_lr() { # hist_lr FILE STEP: the history's learning rate at STEP
  python3 -c "import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get('step') == int(sys.argv[2]): print(d['lr'])" "$1" "$2" | head -1
}

# ---- 1. no validation improves: patience 2 ends the run after step 3 ----
for np_ in 1 2; do
  run f$np_ 0 $MPIRUN -np $np_ $BIN $COMMON --steps 10 --lr 1e-30 --early-stop-patience 2 \
      --checkpoint-dir $T/ck$np_ --metrics-out $T/f$np_.json
  want f$np_ "early stopping: after 2 validation(s) in a row without a val_iou above the best \
so far by more than 0 (--early-stop-patience, --early-stop-min-delta)"
  want f$np_ "early stop after step 3 of 10: 2 validation(s) without a val_iou above the best"
  want f$np_ "(step 1) by more than 0 (--early-stop-patience 2): the run ends here"
  want f$np_ "final: 3 steps"
  want f$np_ "final validation: loss"
  check_eq "$(metric f$np_ steps)" 3 "$np_ rank(s): metrics steps"
  check_eq "$(metric f$np_ early_stop_step)" 3 "$np_ rank(s): metrics early_stop_step"
  check_eq "$(wc -l < $T/ck$np_/history.jsonl)" 3 "$np_ rank(s): history records"
  [ -f $T/ck$np_/ckpt-0000000003.cgck ] && echo "  ok: the checkpoint of step 3" ||
    { echo "FAIL $np_ rank(s): no checkpoint of step 3 in $(ls $T/ck$np_)"; fail=1; }
done

# ---- 2. nothing can improve by 1e6: the same stop at the default lr ----
ES="--early-stop-patience 2 --early-stop-min-delta 1e6 --best-metric val_loss"
run g 0 $MPIRUN -np 1 $BIN $COMMON --steps 10 $ES --params-out $T/g.bin
want g "early stop after step 3 of 10: 2 validation(s) without a val_loss below the best"
run g3 0 $MPIRUN -np 1 $BIN $COMMON --steps 3 --params-out $T/g3.bin
if cmp -s "$T/g.bin" "$T/g3.bin"; then echo "  ok: stopped after step 3 = --steps 3: bitwise"
else echo "FAIL the early-stopped weights differ from --steps 3's"; fail=1; fi
run p 0 $MPIRUN -np 1 $BIN $COMMON --steps 10 $ES --lr-schedule poly --history-out $T/p.jsonl
run p10 0 $MPIRUN -np 1 $BIN $COMMON --steps 10 --lr-schedule poly --history-out $T/p10.jsonl
a=$(hist_lr $T/p.jsonl 3); b=$(hist_lr $T/p10.jsonl 3)
[ -n "$a" ] && [ "$a" = "$b" ] && echo "  ok: poly lr at step 3 is the 10-step schedule's ($a)" ||
  { echo "FAIL poly lr at step 3: $a, the 10-step run's $b"; fail=1; }

# ---- 3. a patience never reached ----
run n 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --early-stop-patience 5 --metrics-out $T/n.json
check_eq "$(metric n steps)" 4 "patience 5 over 4 validations: metrics steps"
check_eq "$(metric n early_stop_step)" None "patience 5: metrics early_stop_step"
! grep -q "early stop after" "$T/n.log" || { echo "FAIL n: stopped early"; fail=1; }

# ---- 4. checkpoints keep the count ----
run r 0 $MPIRUN -np 1 $BIN train --resume $T/ck1 --progress off --metrics-out $T/r.json
want r "early stop after step 4 of 10: 3 validation(s) without a val_iou above the best"
want r "(step 1) by more than 0 (--early-stop-patience 2): the run ends here"
check_eq "$(metric r steps_trained)" 1 "resumed: metrics steps_trained"
E3="--steps 10 --lr 1e-30 --early-stop-patience 3 --checkpoint-every 2"
run u 0 $MPIRUN -np 1 $BIN $COMMON $E3 --checkpoint-dir $T/cku --params-out $T/u.bin
want u "early stop after step 4 of 10: 3 validation(s)"
run u2 0 $MPIRUN -np 1 $BIN train --resume $T/cku/ckpt-0000000002.cgck --progress off \
    --params-out $T/u2.bin
want u2 "early stop after step 4 of 10: 3 validation(s)"
if cmp -s "$T/u.bin" "$T/u2.bin"; then echo "  ok: resumed at step 2 = uninterrupted: bitwise"
else echo "FAIL the run resumed at step 2 ends with other weights"; fail=1; fi
run w 0 $MPIRUN -np 1 $BIN $COMMON --steps 4 --val-every 2 --early-stop-patience 2
want w "--early-stop-patience 2: this run validates 1 time(s) before its last step (every 2 \
steps), too few to stop it early"

# ---- 5. usage errors ----
bad() { # bad NAME TEXT ARGS...: exit 2 naming it
  local name=$1 text=$2; shift 2
  run "$name" 2 $BIN $COMMON --steps 2 "$@" && want "$name" "$text"
}
bad u0 "--early-stop-patience: counts validations during the run, and --val-every 0" \
    --early-stop-patience 2 --val-every 0
bad uv "--early-stop-patience: the run has no validation data to watch (--val-samples 0)" \
    --early-stop-patience 2 --val-samples 0
bad un "--early-stop-patience: -1 is out of range" --early-stop-patience -1
bad ud "--early-stop-min-delta: -0.5 is out of range" --early-stop-patience 2 \
    --early-stop-min-delta -0.5
bad um "--early-stop-min-delta: for early stopping, which --early-stop-patience N turns on" \
    --early-stop-min-delta 0.1

# ---- 6. --skip-bad counts the trained batches' failures ----
BENCH=$BUILD/bench/cogpu-bench
if [ -x "$BENCH" ]; then
  $BENCH make-pngs --out $T/d --count 16 --image-size 32 --seed 2 > /dev/null &&
    $BENCH make-pngs --out $T/v --count 4 --image-size 32 --seed 3 > /dev/null
  for f in $(ls $T/d/images | head -12); do
    head -c 120 $T/d/images/$f > $T/x && mv $T/x $T/d/images/$f
  done
  SB="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --data $T/d --val-data
      $T/v --batch 4 --threads 1 --progress off --lr 1e-30 --val-every 1 --skip-bad --prefetch 8"
  run sb 0 $MPIRUN -np 1 $BIN $SB --steps 12 --early-stop-patience 2
  want sb "early stop after step 4 of 12"
  run sb4 0 $MPIRUN -np 1 $BIN $SB --steps 4
  check_eq "$(grep -o '[0-9]* sample load(s) skipped' $T/sb.log)" \
    "$(grep -o '[0-9]* sample load(s) skipped' $T/sb4.log)" "--skip-bad: the loads skipped"
else
  echo "SKIP 6: no $BENCH (no benchmarks in a sanitizer build)"
fi

[ $fail -eq 0 ] && echo "test_early_stop: all passed"
exit $fail
