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
#  4. --resume of the stopped run goes on towards --steps, the count afresh (stops after step
#     6: best at 4, none better at 5 and 6);
#  5. usage errors (exit 2): --val-every 0, no validation data (--val-samples 0), -1, a
#     negative min_delta.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
        --val-samples 8 --batch 4 --threads 1 --progress off --seed 3 --val-every 1
        --report-every 4"
. "$(dirname "$0")/runlib.sh" # run NAME WANT_RC ARGS..., want NAME TEXT, same_params
metric() { # metric NAME KEY: a field of NAME's metrics JSON
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$T/$1.json" "$2"
}
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

# ---- 4. a resume goes on, counting afresh ----
run r 0 $MPIRUN -np 1 $BIN train --resume $T/ck1 --progress off --metrics-out $T/r.json
want r "early stop after step 6 of 10: 2 validation(s) without a val_iou above the best"
want r "(step 4) by more than 0 (--early-stop-patience 2): the run ends here"
check_eq "$(metric r steps_trained)" 3 "resumed: metrics steps_trained"

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

[ $fail -eq 0 ] && echo "test_early_stop: all passed"
exit $fail
