#!/usr/bin/env bash
# train --max-time T (Lightning's max_time): the run stops itself at a step boundary once it has
# lasted T, as a stop signal would stop it. Checks:
#  - refused (exit 2, naming the flag) without --checkpoint-dir and for a value that is no
#    duration;
#  - 2 ranks whose steps take ~50 ms (--test-slow-ms), --max-time 0:02 (Slurm's MM:SS): the run
#    ends by itself within a few seconds of T, exit 0, "stopped by --max-time" with the checkpoint
#    of the step both ranks stopped at;
#  - resumed without --max-time to 4 steps past that step, it ends with the weights of an
#    uninterrupted run of as many steps, bit for bit (the clock is not stored: a resume's starts
#    afresh).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
S="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress plain --threads 1
   --batch 4 --val-every 0 --val-samples 16"
expect2 "--max-time: stops the run with a checkpoint for --resume to go on from: needs --c" \
  $BIN $S --steps 4 --max-time 60
expect2 "--max-time: '5 min' is not a duration" $BIN $S --steps 4 --max-time "5 min" \
  --checkpoint-dir $T/ck0
expect2 "--max-time: '0' is not a duration" $BIN $S --steps 4 --max-time 0 --checkpoint-dir $T/ck0

t0=$SECONDS
rc=0
$MPIRUN -np 2 $BIN $S --steps 100000 --test-slow-rank 1 --test-slow-ms 50 --max-time 0:02 \
  --checkpoint-dir $T/ck > $T/a.log 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat $T/a.log; fail "--max-time: exit $rc"; }
echo "--max-time 0:02: the job ended after $((SECONDS - t0)) s"
[ $((SECONDS - t0)) -lt 20 ] || fail "--max-time 0:02 ran $((SECONDS - t0)) s"
grep -q "^max time: 0:02 (2 s from the start)" $T/a.log || { cat $T/a.log; fail "no banner line"; }
STOP='^stopped by --max-time (rank [01]) after step \([0-9]*\) of 100000: checkpoint .* written'
N=$(sed -n "s/$STOP.*/\\1/p" $T/a.log)
[ -n "$N" ] && [ "$N" -ge 1 ] || { cat $T/a.log; fail "no stop by --max-time with a checkpoint"; }
[ -e "$(printf '%s/ckpt-%010d.cgck' $T/ck $N)" ] || fail "no checkpoint of step $N"
echo "ok: stopped by --max-time after step $N of 100000, checkpoint written, exit 0"

$MPIRUN -np 2 $BIN $S --steps $((N + 4)) --checkpoint-dir $T/ck --resume --params-out $T/r.bin \
  > $T/r.log 2>&1 || { cat $T/r.log; fail "the resume"; }
grep -q "^max time" $T/r.log && fail "the resume kept --max-time (it is not stored)"
$MPIRUN -np 2 $BIN $S --steps $((N + 4)) --params-out $T/u.bin > $T/u.log 2>&1 ||
  { cat $T/u.log; fail "the uninterrupted run"; }
$BUILD/tests/cg_cmp_params $T/r.bin $T/u.bin 0 ||
  fail "resumed after --max-time: the weights differ from the uninterrupted run's"
echo PASS
