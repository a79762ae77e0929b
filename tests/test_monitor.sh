#!/usr/bin/env bash
# cogpu-monitor: --once on a recorded stats file prints exactly the expected rows (golden
# file); on a live 3-rank run with a slow rank it shows every rank and flags the straggler;
# a file without a record is an error (exit 1), a bad option a usage error (exit 2); a run
# stopped by --max-time and resumed into the same stats file (as a requeued Slurm job is) shows
# the resumed attempt, a follower of a file whose newest attempt has no final record yet keeps
# following, and --requeue follows on past a stop record.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
MON=$(cd "$BUILD" && pwd)/cogpu-monitor
D=$(cd "$(dirname "$0")/data" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
(cd "$D" && $MON --once --plain stats-4rank.jsonl) > "$T/out.txt"
diff -u "$D/stats-4rank.monitor.txt" "$T/out.txt"
echo "PASS golden snapshot of a recorded 4-rank stats file"
$MPIRUN -np 3 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 \
  --steps 30 --report-every 10 --train-samples 120 --val-samples 0 --progress off --threads 1 \
  --test-slow-rank 1 --test-slow-ms 20 --stats-out "$T/live.jsonl" > /dev/null
$MON --once "$T/live.jsonl" | tee "$T/live.txt"
[ "$(grep -cE '^  [0-2]\*? ' "$T/live.txt")" -eq 3 ] || { echo "FAIL: want 3 rank rows"; exit 1; }
grep -qE '^  1\* ' "$T/live.txt" || { echo "FAIL: rank 1 not marked"; exit 1; }
grep -q "straggler: rank 1" "$T/live.txt" || { echo "FAIL: no straggler line"; exit 1; }
grep -q "step 30/30 (100%) finished" "$T/live.txt" || { echo "FAIL: header"; exit 1; }
# the live mode ends by itself at the final record
timeout 20 $MON --plain --interval 0.2 "$T/live.jsonl" > "$T/follow.txt"
grep -q finished "$T/follow.txt"
: > "$T/empty.jsonl"
if $MON --once "$T/empty.jsonl" 2> "$T/err"; then echo "FAIL: empty file accepted"; exit 1; fi
grep -q "no complete record" "$T/err"
set +e; $MON --bogus x 2> /dev/null; rc=$?; set -e
[ $rc -eq 2 ] || { echo "FAIL: bad option exit $rc"; exit 1; }
echo "PASS live file, straggler flagged, follow mode ends, errors"
# a run that stops early ends its stats with a stop record: the live mode ends there too, and
# shows the last figures and how the job ended
set +e
$BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 --steps 30 \
  --report-every 5 --train-samples 60 --val-samples 0 --progress off --threads 1 \
  --test-nan-step 12 --stats-out "$T/stop.jsonl" > "$T/stop.log" 2>&1
rc=$?; set -e
[ $rc -ne 0 ] || { echo "FAIL: the NaN run exited 0"; exit 1; }
tail -1 "$T/stop.jsonl" | grep -q '"final": true, "stopped": "a NaN/Inf loss"' ||
  { tail -1 "$T/stop.jsonl"; echo "FAIL: no stop record"; exit 1; }
timeout 20 $MON --plain --interval 0.2 "$T/stop.jsonl" > "$T/stopf.txt" ||
  { cat "$T/stopf.txt"; echo "FAIL: follow mode did not end at the stop record"; exit 1; }
grep -q "the job stopped by a NaN/Inf loss after step 1[1-3] of 30" "$T/stopf.txt" &&
  grep -q "step 10/30" "$T/stopf.txt" || { cat "$T/stopf.txt"; echo "FAIL: stop not shown"; exit 1; }
echo "PASS a stopped run's stats end with a stop record; the live mode ends there"

# a run stopped by --max-time, then resumed into the same --stats-out (train.sbatch's requeue):
# the file holds two attempts; the view and the end of following are the newest attempt's
R="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --threads 1
   --progress off --val-every 0 --val-samples 0 --report-every 5 --checkpoint-dir $T/rq"
$MPIRUN -np 2 $BIN $R --steps 100000 --test-slow-rank 1 --test-slow-ms 50 --max-time 0:02 \
  --stats-out "$T/rq.jsonl" > "$T/rq1.log" 2>&1 || { cat "$T/rq1.log"; echo "FAIL: run 1"; exit 1; }
N=$(sed -n 's/.*"stopped": "--max-time", "step": \([0-9]*\),.*/\1/p' "$T/rq.jsonl")
[ -n "$N" ] || { tail -2 "$T/rq.jsonl"; echo "FAIL: run 1 wrote no --max-time stop"; exit 1; }
cp "$T/rq.jsonl" "$T/rq1.jsonl"
M=$((N + 12))
$MPIRUN -np 2 $BIN $R --steps $M --resume --stats-out "$T/rq.jsonl" > "$T/rq2.log" 2>&1 ||
  { cat "$T/rq2.log"; echo "FAIL: the resumed run"; exit 1; }
$MON --once "$T/rq.jsonl" > "$T/rq.txt"
grep -q "step $M/$M (100%) finished" "$T/rq.txt" && ! grep -q stopped "$T/rq.txt" ||
  { cat "$T/rq.txt"; echo "FAIL: --once does not show the resumed attempt's end alone"; exit 1; }
timeout 20 $MON --plain --interval 0.2 "$T/rq.jsonl" > /dev/null ||
  { echo "FAIL: following the resumed run's finished file did not end"; exit 1; }
# the stop record and the resumed attempt's first record: that attempt is live, not stopped
K=$(grep -n '"stopped"' "$T/rq.jsonl" | cut -d: -f1)
head -$((K + 1)) "$T/rq.jsonl" > "$T/rqp.jsonl"
$MON --once "$T/rqp.jsonl" > "$T/rqp.txt"
grep -q "step [0-9]*/$M (" "$T/rqp.txt" && ! grep -q "finished\|stopped" "$T/rqp.txt" ||
  { cat "$T/rqp.txt"; echo "FAIL: --once on a live resumed attempt"; exit 1; }
set +e; timeout 3 $MON --plain --interval 0.2 "$T/rqp.jsonl" > /dev/null; rc=$?; set -e
[ $rc -eq 124 ] || { echo "FAIL: a follower of a live resumed attempt ended (exit $rc)"; exit 1; }
# a stop record that arrives on its own is shown: a plain follower prints the figures again
# under the line that says how the run ended
head -$((K - 1)) "$T/rq.jsonl" > "$T/rqs.jsonl"
timeout 20 $MON --plain --interval 0.2 "$T/rqs.jsonl" > "$T/rqs.txt" &
F=$!
for _ in $(seq 100); do grep -q "^cogpu-monitor" "$T/rqs.txt" && break; sleep 0.1; done
sed -n "${K}p" "$T/rq.jsonl" >> "$T/rqs.jsonl"
wait $F || { cat "$T/rqs.txt"; echo "FAIL: the follower did not end at the stop record"; exit 1; }
grep -q "^the job stopped by --max-time after step $N of 100000" "$T/rqs.txt" ||
  { cat "$T/rqs.txt"; echo "FAIL: a stop record arriving alone was not shown"; exit 1; }
# a follower started on the first attempt alone ends at its stop record; with --requeue it
# follows on into the resumed attempt's records and ends at its finished record
timeout 20 $MON --plain --interval 0.2 "$T/rq1.jsonl" > /dev/null ||
  { echo "FAIL: without --requeue a stop record does not end following"; exit 1; }
timeout 20 $MON --plain --requeue --interval 0.2 "$T/rq1.jsonl" > "$T/rqf.txt" 2> "$T/rqf.err" &
F=$!
for _ in $(seq 100); do grep -q "waiting for it to resume" "$T/rqf.err" && break; sleep 0.1; done
tail -n +$((K + 1)) "$T/rq.jsonl" >> "$T/rq1.jsonl"
rc=0; wait $F || rc=$?
[ $rc -eq 0 ] || { cat "$T/rqf.txt" "$T/rqf.err"; echo "FAIL: --requeue follower: $rc"; exit 1; }
grep -q "^the job stopped by --max-time after step $N of 100000" "$T/rqf.txt" &&
  grep -q "step $M/$M (100%) finished" "$T/rqf.txt" &&
  grep -q "waiting for it to resume" "$T/rqf.err" ||
  { cat "$T/rqf.txt" "$T/rqf.err"; echo "FAIL: --requeue follower's output"; exit 1; }
set +e; $MON --once --requeue "$T/rq.jsonl" > /dev/null 2> "$T/err"; rc=$?; set -e
[ $rc -eq 2 ] && grep -q -- --requeue "$T/err" || { echo "FAIL: --once --requeue: $rc"; exit 1; }
echo "PASS a resumed run's stats file shows the newest attempt; following ends at its end;"
echo "     --requeue follows a stopped job into its resumed run"
