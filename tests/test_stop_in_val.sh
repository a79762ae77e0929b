#!/usr/bin/env bash
# A stop signal during a validation pass cuts the pass short: a preempted job has seconds (Slurm's
# KillWait, 30 s by default) to write its checkpoint, and a validation can take minutes. Checks:
#  - square mode, 1 rank, SIGTERM during the validation of step 2 of 4 (a pass of ~40 s here):
#    the run ends within 10 s, says the pass was stopped, writes the checkpoint of step 2 (with
#    no validation figures: none were measured) and exits 0;
#  - resumed to its end, SIGTERM during the final validation: the checkpoint of the last step is
#    written, no metrics; resumed again, the run trains nothing, validates those weights and
#    writes them again with the figures (best, the history); with --ema-decay, a resume with
#    --ema-decay 0 (other weights than the checkpoint's model) leaves that file as it is;
#  - a stop in a mid-run validation, resumed: the resume validates that step's weights first and
#    ends as the uninterrupted run (weights, history, plateau and early-stopping states); a stop
#    in that validation run again saves nothing new and names the file to resume; a stop in the
#    final validation, resumed, steps the plateau as the uninterrupted run did; on 2 ranks,
#    resumed with --resume DIR/last, too (every rank steps it: exit 0);
#  - 2 ranks, SIGTERM to rank 1 alone: both ranks cut the pass short (no watchdog trip), exit 0;
#  - whole mode (--val-mode whole over wide images), 2 ranks, SIGUSR1 to mpirun (which forwards
#    it to every rank): the same within 10 s, exit 0.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail

# stop_after_start LOG PID SIGNAL: waits for the run's banner, then 1.5 s (the steps before the
# validation take milliseconds), sends SIGNAL, and waits (at most 10 s) for the process to end;
# its exit code in rc
stop_after_start() {
  local log=$1 pid=$2 sig=$3
  for _ in $(seq 600); do grep -q "^data: " "$log" 2> /dev/null && break; sleep 0.05; done
  sleep 1.5
  kill -"$sig" "$pid" || { cat "$log"; fail "the run ended before the signal"; }
  local t0=$SECONDS
  for _ in $(seq 200); do kill -0 "$pid" 2> /dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2> /dev/null && { tail "$log"; fail "still running 10 s after the signal"; }
  set +e; wait "$pid"; rc=$?; set -e
  echo "stopped in $((SECONDS - t0)) s, exit $rc"
}

SQ="train --backend cpu --model-base 4 --model-depth 2 --image-size 64 --progress plain --threads 1
    --train-samples 64 --val-samples 6000 --batch 8 --checkpoint-dir $T/ck --resume"
$BIN $SQ --steps 4 --val-every 2 > $T/a.log 2>&1 &
stop_after_start $T/a.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/a.log; fail "exit $rc"; }
grep -q "validation stopped by a stop signal" $T/a.log || { cat $T/a.log; fail "no stopped pass"; }
grep -q "stopped by SIGTERM (rank 0) after step 2 of 4: checkpoint $T/ck/ckpt-0000000002.cgck" \
  $T/a.log || { cat $T/a.log; fail "no checkpoint of step 2"; }
$BIN inspect $T/ck | grep "step 2 " | grep -q "no validation" || fail "figures in step 2's"

$BIN $SQ --steps 4 --val-every 0 --metrics-out $T/m.json > $T/b.log 2>&1 &
stop_after_start $T/b.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/b.log; fail "final: exit $rc"; }
grep -q "stopped by SIGTERM (rank 0) after step 4 of 4: checkpoint" $T/b.log ||
  { cat $T/b.log; fail "final: no checkpoint of step 4"; }
[ ! -e $T/m.json ] || fail "a stopped final validation wrote metrics"
$BIN $SQ --steps 4 --val-every 0 --metrics-out $T/m.json > $T/c.log 2>&1 ||
  { cat $T/c.log; fail "the resume after the final stop"; }
grep -q "nothing to train; its checkpoint has no validation figures" $T/c.log &&
  grep -q "final validation: loss" $T/c.log ||
  { cat $T/c.log; fail "the resume did not validate step 4's weights"; }
[ -s $T/m.json ] || fail "no metrics after the resume"
# the figures the stop cut short are in step 4's checkpoint, best and the history now
$BIN inspect $T/ck | grep "step 4 " | grep -q "val_iou" || fail "step 4 has no figures"
$BIN inspect $T/ck/best | grep -q "ckpt-0000000004.cgck" || fail "best is not step 4"
grep -q '"step": 4,' $T/ck/history.jsonl || fail "no history record of step 4"

# --ema-decay: the same stop; a resume with --ema-decay 0 validates the training weights, not
# the checkpoint's model (its average): it leaves the file as it is, average and all
SE="${SQ/--checkpoint-dir $T\/ck/--checkpoint-dir $T/cke} --steps 4 --val-every 0 --ema-decay 0.9"
$BIN $SE > $T/e.log 2>&1 &
stop_after_start $T/e.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/e.log; fail "ema: exit $rc"; }
cp $T/cke/ckpt-0000000004.cgck $T/e4.cgck
$BIN ${SE/--ema-decay 0.9/--ema-decay 0} > $T/e2.log 2>&1 || { cat $T/e2.log; fail "ema 0"; }
cmp -s $T/e4.cgck $T/cke/ckpt-0000000004.cgck ||
  { cat $T/e2.log; fail "a resume with --ema-decay 0 rewrote the average's checkpoint"; }
echo "ok: --ema-decay: a resume that drops the average leaves the stopped checkpoint as it is"

# a stop in a mid-run validation (step 2 of 8; --test-val-ms makes the pass ~8 s), resumed: the
# resume validates step 2's weights first, so the run ends as the uninterrupted one did: the same
# weights (bit for bit), history figures, --lr-schedule plateau and early-stopping states
SP="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress plain
    --threads 1 --train-samples 64 --val-samples 64 --batch 8 --steps 8 --val-every 2 --lr 0.05
    --lr-schedule plateau --lr-patience 0 --early-stop-patience 5"
$BIN $SP --checkpoint-dir $T/cpa --params-out $T/pa.bin > $T/pa.log 2>&1 ||
  { cat $T/pa.log; fail "plateau: the uninterrupted run"; }
$BIN $SP --checkpoint-dir $T/cpb --test-val-ms 1000 > $T/pb.log 2>&1 &
stop_after_start $T/pb.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/pb.log; fail "plateau: exit $rc"; }
grep -q "stopped by SIGTERM (rank 0) after step 2 of 8" $T/pb.log ||
  { cat $T/pb.log; fail "plateau: no stop in step 2's validation"; }
# a stop in that validation run again: nothing new to save, the file it resumed from named
$BIN $SP --checkpoint-dir $T/cpb --resume --test-val-ms 1000 > $T/pd.log 2>&1 &
stop_after_start $T/pd.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/pd.log; fail "plateau: a stop in the validation run again: exit $rc"; }
grep -q "at step 2 of 8, where it resumed, .* nothing was trained .* --resume .*2.cgck" \
  $T/pd.log || { cat $T/pd.log; fail "plateau: the stop in the validation run again"; }
$BIN $SP --checkpoint-dir $T/cpb --resume --params-out $T/pb.bin > $T/pc.log 2>&1 ||
  { cat $T/pc.log; fail "plateau: the resume"; }
grep -q "resume: step 2 is a validation step (--val-every 2) and its checkpoint has no figures" \
  $T/pc.log || { cat $T/pc.log; fail "plateau: the resume did not validate step 2 first"; }
$BUILD/tests/cg_cmp_params $T/pb.bin $T/pa.bin 0 > /dev/null ||
  fail "plateau: the resumed run's weights are not the uninterrupted run's"
for d in cpa cpb; do
  sed 's/"wall_s": [^,]*, "train_loss": [^,]*,//; s/"img_per_s": [^,]*,//' $T/$d/history.jsonl \
    > $T/$d.hist
  $BIN inspect $T/$d/ckpt-0000000008.cgck | grep -o '"[a-z-]*-state": "[^"]*"' > $T/$d.state
done
cmp -s $T/cpa.hist $T/cpb.hist || { diff $T/cpa.hist $T/cpb.hist; fail "plateau: histories"; }
cmp -s $T/cpa.state $T/cpb.state && [ "$(wc -l < $T/cpa.state)" -eq 2 ] ||
  { cat $T/cpa.state $T/cpb.state; fail "plateau: the schedules' states differ"; }
$BIN inspect $T/cpb/ckpt-0000000002.cgck | grep -q "val_iou" || fail "step 2 has no figures"
echo "ok: a stop in a mid-run validation, resumed: step 2 validated first; weights, history," \
  "plateau and early-stopping states those of the uninterrupted run"
# the same for the final validation (--val-every 4 of 4 steps): the resume that validates the
# last step's weights steps the plateau as the uninterrupted run's final validation did
SF="${SP/--steps 8 --val-every 2/--steps 4 --val-every 4}"
$BIN $SF --checkpoint-dir $T/cfa > $T/fa.log 2>&1 || { cat $T/fa.log; fail "final: the run"; }
$BIN $SF --checkpoint-dir $T/cfb --test-val-ms 1000 > $T/fb.log 2>&1 &
stop_after_start $T/fb.log $! TERM
[ "$rc" -eq 0 ] || { cat $T/fb.log; fail "final: exit $rc"; }
$BIN $SF --checkpoint-dir $T/cfb --resume > $T/fc.log 2>&1 ||
  { cat $T/fc.log; fail "final: the resume"; }
for d in cfa cfb; do
  $BIN inspect $T/$d/ckpt-0000000004.cgck | grep -o '"plateau-state": "[^"]*"' > $T/$d.state
done
cmp -s $T/cfa.state $T/cfb.state && [ -s $T/cfa.state ] ||
  { cat $T/cfa.state $T/cfb.state; fail "final: the plateau states differ"; }
echo "ok: a stop in the final validation, resumed: the plateau stepped as without the stop"
# the same on 2 ranks, resumed with --resume DIR/last (a file): rank 0 alone reads it, and every
# rank must take its word that it is the newest, as the plateau step after the validation is
# collective (rank 1 on its own said no: a broadcast rank 1 never joined, MPI_ERR_TRUNCATE)
$MPIRUN -np 2 $BIN $SF --checkpoint-dir $T/cf2 --test-val-ms 1000 > $T/f2.log 2>&1 &
stop_after_start $T/f2.log $! USR1
[ "$rc" -eq 0 ] || { cat $T/f2.log; fail "final, 2 ranks: exit $rc"; }
grep -q "stopped by SIGUSR1 (rank 0) after step 4 of 4" $T/f2.log ||
  { cat $T/f2.log; fail "final, 2 ranks: no stop in the final validation"; }
set +e; $MPIRUN -np 2 $BIN $SF --checkpoint-dir $T/cf2 --resume $T/cf2/last > $T/f2r.log 2>&1
rc=$?; set -e
[ "$rc" -eq 0 ] || { cat $T/f2r.log; fail "final, 2 ranks: --resume DIR/last: exit $rc"; }
grep -q "nothing to train; its checkpoint has no validation figures" $T/f2r.log ||
  { cat $T/f2r.log; fail "final, 2 ranks: --resume DIR/last did not validate step 4's weights"; }
$BIN inspect $T/cf2 | grep "step 4 " | grep -q "val_iou" || fail "final, 2 ranks: no figures"
echo "ok: 2 ranks, a stop in the final validation, --resume DIR/last: validated, exit 0"

# 2 ranks, SIGTERM to rank 1 only (the job is not signalled as a whole): both ranks cut the
# pass short within about a batch, none waits for the watchdog (--timeout-s 5)
$MPIRUN -np 2 $BIN ${SQ/--checkpoint-dir $T\/ck/--checkpoint-dir $T/ck2} --steps 4 \
  --val-every 2 --timeout-s 5 > $T/r.log 2>&1 &
MPID=$!
for _ in $(seq 600); do grep -q "^data: " $T/r.log 2> /dev/null && break; sleep 0.05; done
sleep 1.5
R1=""
for p in $(pgrep -P $MPID); do
  tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && R1=$p
done
[ -n "$R1" ] || { cat $T/r.log; fail "rank 1's process not found among mpirun's children"; }
kill -TERM $R1
t0=$SECONDS
for _ in $(seq 200); do kill -0 $MPID 2> /dev/null || break; sleep 0.05; done
kill -0 $MPID 2> /dev/null && { tail $T/r.log; fail "2 ranks: running 10 s after the signal"; }
set +e; wait $MPID; rc=$?; set -e
echo "one rank signalled: stopped in $((SECONDS - t0)) s, exit $rc"
[ "$rc" -eq 0 ] || { cat $T/r.log; fail "one rank signalled: exit $rc"; }
grep -q "stopped by SIGTERM (rank 1) after step 2 of 4: checkpoint" $T/r.log ||
  { cat $T/r.log; fail "one rank signalled: no checkpoint of step 2"; }

/usr/bin/python3 -c '
import os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
rng = np.random.default_rng(1)
for d in ("images", "masks"):
    os.makedirs(f"{t}/wide/{d}")
for i in range(48):
    im = rng.integers(0, 255, (64, 4096, 3), np.uint8)
    Image.fromarray(im).save(f"{t}/wide/images/{i:02d}.png")
    Image.fromarray((rng.integers(0, 2, (64, 4096)) * 255).astype(np.uint8)).save(
        f"{t}/wide/masks/{i:02d}.png")
' $T
$MPIRUN -np 2 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 64 \
  --progress plain --threads 1 --batch 4 --steps 2 --val-every 0 --data $T/wide \
  --val-data $T/wide --val-mode whole --checkpoint-dir $T/ckw > $T/w.log 2>&1 &
stop_after_start $T/w.log $! USR1
[ "$rc" -eq 0 ] || { cat $T/w.log; fail "whole: exit $rc"; }
grep -q "validation stopped by a stop signal" $T/w.log ||
  { cat $T/w.log; fail "whole: no stopped pass on both ranks"; }
grep -q "stopped by SIGUSR1 (rank 0) after step 2 of 2: checkpoint" $T/w.log ||
  { cat $T/w.log; fail "whole: no checkpoint"; }
echo PASS
