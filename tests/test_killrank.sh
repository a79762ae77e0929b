#!/usr/bin/env bash
# Failed ranks (issue 6), CPU backend, 3 ranks under mpirun:
#  1. kill -9 of rank 1 mid-training: the job ends within --timeout-s (10 s here), non-zero, and
#     the output names rank 1 (mpirun's "process rank 1 ... exited on signal 9" when the
#     runtime notices first, or our watchdog's / MPI error message with the step table);
#  2. a hung rank (SIGSTOP of rank 2: alive, holding its connections, making no progress —
#     what mpirun cannot see): the other ranks' watchdogs end the job within --timeout-s (5 s)
#     plus a poll period, non-zero, naming the step they are stuck at and every rank's last
#     completed step;
#  3. a rank hung in a validation pass (SIGSTOP of rank 1 of 2 early in the pass of step 2,
#     slowed by --test-val-ms): rank 0, through its own pass, waits for rank 1 in the pass's
#     polls, and its watchdog ends the job within the rest of its pass + --timeout-s (3 s)
#     plus a margin, naming that wait (rank 0 used to beat the watchdog while it waited, and
#     the job hung for ever);
#  4. the same in the validation of a resume with nothing to train, which no step arms the
#     watchdog for (it was never armed, and the job hung for ever).
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d)
JOB=; STOPPED=
cleanup() {
  [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2> /dev/null
  [ -n "$JOB" ] && kill -KILL "$JOB" 2> /dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7 --batch 4 --report-every 10
        --steps 1000000 --test-slow-rank 0 --test-slow-ms 10"

source "$(dirname "${BASH_SOURCE[0]}")/faultlib.sh"

# fault NAME RANK SIGNAL TIMEOUT: start the job, wait for step 30, signal the rank, time the end
fault() {
  local name=$1 rank=$2 sig=$3 tmo=$4 dir=$T/$1
  mkdir -p $dir
  $MPIRUN -np 3 $BIN $COMMON --timeout-s $tmo --checkpoint-dir $dir/ck > $dir/log 2>&1 &
  JOB=$!
  if ! wait_step $dir/log 30; then echo "FAIL $name: never reached step 30"; cat $dir/log; fail=1; return 1; fi
  local pid; pid=$(rank_pid "$dir/ck" $rank)
  [ -n "$pid" ] || { echo "FAIL $name: no process for rank $rank"; fail=1; return 1; }
  local t0; t0=$(now_ms)
  kill -$sig $pid
  [ "$sig" = STOP ] && STOPPED=$pid
  # the job must end by itself; the test gives up (and fails) after 3 x the timeout + 10 s
  local limit=$(( (3 * tmo + 10) * 1000 )) rc=
  while kill -0 $JOB 2> /dev/null; do
    if [ $(( $(now_ms) - t0 )) -gt $limit ]; then
      echo "FAIL $name: still running after $limit ms"; kill -CONT $pid 2> /dev/null
      kill -KILL $JOB 2> /dev/null; fail=1; break
    fi
    sleep 0.1
  done
  wait $JOB; rc=$?
  JOB=; STOPPED=
  local dt=$(( $(now_ms) - t0 ))
  echo "$name: SIG$sig to rank $rank: the job ended after $dt ms with exit code $rc"
  grep -E "rank $rank|watchdog|exited on signal|received during|MPI_Allreduce|MPI_Allgather" $dir/log | grep -v "^rank $rank: host" | sed 's/^/  /'
  [ $rc -ne 0 ] || { echo "FAIL $name: exit code 0"; fail=1; }
  [ $dt -le $(( tmo * 1000 + 5000 )) ] || { echo "FAIL $name: $dt ms, over the $tmo s timeout + 5 s"; fail=1; }
  LOG=$dir/log
}

fault kill 1 KILL 10
if [ -n "${LOG:-}" ] && ! grep -qE "rank 1 .*exited on signal 9|rank 1 .*(killed|died)|watchdog:.*1:[0-9]" $LOG; then
  echo "FAIL kill: rank 1 is not named"; cat $LOG; fail=1
fi
LOG=
fault hang 2 STOP 5
if [ -n "${LOG:-}" ]; then
  grep -q "watchdog: no progress for" $LOG || { echo "FAIL hang: no watchdog message"; cat $LOG; fail=1; }
  grep -q "last completed step of each rank as last known here (rank:step): 0:[0-9]* 1:[0-9]* 2:[0-9]*" $LOG ||
    { echo "FAIL hang: no step table"; fail=1; }
fi

# val_fault NAME WANT ARGS...: a 2-rank job of ARGS validating 8 batches x 250 ms a rank; rank 1
# stopped 0.5 s after the log has WANT (the pass starts milliseconds later): rank 0 has at most
# 2 s of its own pass left, then waits, and its watchdog (--timeout-s 3) must end the job
val_fault() {
  local name=$1 want=$2 dir=$T/$1; shift 2
  mkdir -p $dir
  $MPIRUN -np 2 $BIN $VAL "$@" --test-val-ms 250 --timeout-s 3 > $dir/log 2>&1 &
  JOB=$!
  local i pid=
  for i in $(seq 300); do grep -q "$want" $dir/log 2> /dev/null && break; sleep 0.1; done
  sleep 0.5
  pid=$(rank_pid "$VALDIR" 1) ||
    { echo "FAIL $name: no process for rank 1"; cat $dir/log; fail=1; return; }
  local t0; t0=$(now_ms)
  kill -STOP $pid; STOPPED=$pid
  local limit=$(( (3 * 3 + 10) * 1000 )) rc
  while kill -0 $JOB 2> /dev/null && [ $(( $(now_ms) - t0 )) -le $limit ]; do sleep 0.1; done
  if kill -0 $JOB 2> /dev/null; then # the ranks too: mpirun killed leaves them running
    echo "FAIL $name: still running after $limit ms"; fail=1
    kill -KILL $pid $(rank_pid "$VALDIR" 0) $JOB 2> /dev/null
  fi
  wait $JOB; rc=$?
  local dt=$(( $(now_ms) - t0 ))
  JOB=; kill -CONT $pid 2> /dev/null; STOPPED=
  echo "$name: SIGSTOP to rank 1 in a validation: the job ended after $dt ms with exit code $rc"
  grep "watchdog" $dir/log | sed 's/^/  /'
  [ $rc -ne 0 ] || { echo "FAIL $name: exit code 0"; fail=1; }
  [ $dt -le $(( 2000 + 3000 + 5000 )) ] ||
    { echo "FAIL $name: $dt ms, over the pass's 2 s + the 3 s timeout + 5 s"; fail=1; }
  grep -q "watchdog: no progress for .* (validation (waiting for the other ranks))" $dir/log ||
    { echo "FAIL $name: no watchdog message naming the wait"; cat $dir/log; fail=1; }
}
VALDIR=$T/valck
VAL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 16
     --val-samples 32 --batch 2 --progress plain --report-every 1 --threads 1
     --checkpoint-dir $VALDIR"
# 3: in the validation of step 2 (step 1 armed the watchdog)
val_fault val_mid "^step 1/" --steps 6 --val-every 2
# 4: a resume with nothing to train, whose validation comes before any step could arm it
rm -rf $VALDIR
$MPIRUN -np 2 $BIN $VAL --steps 2 --val-every 0 > $T/valck.log 2>&1 ||
  { echo "FAIL: the run to resume"; cat $T/valck.log; fail=1; }
val_fault val_idle "^resume: step 2 already reaches" --steps 2 --val-every 0 --resume
[ $fail -eq 0 ] && echo "test_killrank: all passed"
exit $fail
