#!/usr/bin/env bash
# test_multinode.sh BIN MPIRUN BUILD: 2 emulated nodes x 2 ranks under Open MPI (issue 15).
#
# scripts/emunodes.sh makes two "nodes" on this machine, each with its own hostname (UTS
# namespace) and network (namespace, veth on a private bridge): Open MPI starts its daemons
# there through an rsh agent, and ranks on different nodes talk over TCP. CPU backend:
#   1. the banner says "4 rank(s) on 2 node(s)"; the binding lines give each node's local
#      ranks 0 and 1 and split that node's cores between them; the balance table names both
#      hosts; with --report-ranks nodes, one binding line and one table row per node (its
#      worst rank named), the stats JSONL still every rank;
#   2. the weights equal 1 rank with the same global batch (the -np equivalence tolerance);
#   3. kill -9 of a rank on the second node ends the job in bounded time, naming the rank and
#      its host;
#   4. SIGUSR1 to mpirun (what Slurm's --signal does to the batch step) reaches the ranks on
#      both nodes: they checkpoint and stop, exit 0; the resumed run over both nodes ends
#      bitwise where an uninterrupted one does.
# Skipped (77) where network/UTS namespaces cannot be made (not root, no iproute2).
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/emunodes.sh"
source "$ROOT/tests/faultlib.sh"
T=$(mktemp -d)
JOB=
cleanup() { [ -n "$JOB" ] && kill -KILL "$JOB" 2> /dev/null; cg_nodes_down; rm -rf "$T"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cg_nodes_up 2 || { echo "SKIP: no emulated nodes here: $CG_NODES_WHY"; exit 77; }
NODES="$MPIRUN -np 4 --map-by ppr:2:node $(cg_nodes_mpirun_args)"
fail=0
bad() { echo "FAIL $*"; fail=1; }
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --threads 1 --seed 7"
echo "nodes: ${CG_NODE_NAMES[*]} at ${CG_NODE_ADDRS[*]} (bridge $CG_NODES_BR)"

# ---- 1, 2: placement, reports, and the same weights as one rank ----
timeout 120 $NODES $BIN $COMMON --steps 5 --batch 4 --progress plain --report-every 5 \
  --params-out $T/n4.bin > $T/n4.log 2>&1 || { bad "the 2-node run"; cat $T/n4.log; exit 1; }
grep -q "4 rank(s) on 2 node(s)" $T/n4.log || bad "banner: $(head -1 $T/n4.log)"
for r in 0 1 2 3; do # ranks 0,1 on node 0, ranks 2,3 on node 1; cores 0 and 1 of each node
  line=$(grep "^rank $r: host " $T/n4.log)
  echo "  $line"
  want="^rank $r: host cgnode$((r / 2)), local rank $((r % 2)) of 2, NUMA [0-9]*, cores $((r % 2)) "
  echo "$line" | grep -q "$want" || bad "binding of rank $r: want '$want'"
done
table=$(sed -n '/^# balance at the end/,/^  max/p' $T/n4.log)
for h in cgnode0 cgnode1; do
  echo "$table" | grep -q "^  [0-9]\**  *$h " || bad "the balance table does not name $h"
done
# --report-ranks nodes: one binding line and one table row per node, the JSONL keeps every rank
timeout 120 $NODES $BIN $COMMON --steps 5 --batch 4 --progress plain --report-every 5 \
  --report-ranks nodes --stats-out $T/nodes.jsonl > $T/nodes.log 2>&1 || { bad "nodes view"; cat $T/nodes.log; }
[ "$(grep -c '^rank [0-9]*: host ' $T/nodes.log)" -eq 2 ] || bad "nodes view: want 2 binding lines"
for h in cgnode0 cgnode1; do
  grep -qE "^  n[01] +$h +2 rank\(s\) .* worst rank [0-3]" $T/nodes.log || bad "nodes view: no row for $h"
done
[ "$(tail -n1 $T/nodes.jsonl | grep -o '"rank": [0-9]*' | wc -l)" -eq 4 ] || bad "nodes view: the JSONL lost ranks"
$MPIRUN -np 1 $BIN $COMMON --steps 5 --batch 16 --progress off --params-out $T/n1.bin \
  > $T/n1.log 2>&1 || { bad "the 1-rank run"; cat $T/n1.log; }
echo "2 nodes x 2 ranks x batch 4 vs 1 rank x batch 16:"
$CMP $T/n4.bin $T/n1.bin 1e-5 || bad "the weights differ"

# ---- 3: kill -9 of rank 3 on cgnode1 ----
LONG="$COMMON --batch 4 --steps 1000000 --report-every 10 --progress off --test-slow-rank 0"
mkdir -p $T/kill
$NODES $BIN $LONG --test-slow-ms 10 --timeout-s 10 --checkpoint-dir $T/kill/ck \
  > $T/kill/log 2>&1 &
JOB=$!
if ! wait_step $T/kill/log 30; then
  bad "kill: the job did not reach step 30"; cat $T/kill/log
elif ! pid=$(rank_pid "$T/kill/ck" 3); then
  bad "kill: no process of rank 3 found"; ps -eo pid,args | grep -F "$T/kill" | cut -c1-200
else
  t0=$(now_ms)
  kill -KILL "$pid"
  while kill -0 $JOB 2> /dev/null && [ $(($(now_ms) - t0)) -lt 40000 ]; do sleep 0.1; done
  kill -0 $JOB 2> /dev/null && { bad "kill: still running after 40 s"; kill -KILL $JOB; }
  wait $JOB; rc=$?
  JOB=
  dt=$(($(now_ms) - t0))
  echo "kill -9 of rank 3 (cgnode1): the job ended after $dt ms, exit $rc"
  grep -E "rank 3|exited on signal" $T/kill/log | grep -v "^rank 3: host" | sed 's/^/  /'
  [ $rc -ne 0 ] || bad "kill: exit 0"
  [ $dt -le 20000 ] || bad "kill: $dt ms, over the 10 s timeout + 10 s"
  grep -qE "rank 3 .*on node cgnode1|rank 3 .*cgnode1|cgnode1.*rank 3" $T/kill/log ||
    { bad "kill: rank 3 and cgnode1 are not named together"; cat $T/kill/log; }
fi
[ -n "$JOB" ] && { kill -KILL $JOB 2> /dev/null; wait $JOB 2> /dev/null; JOB=; }

# ---- 4: SIGUSR1 to mpirun: checkpoint on both nodes, resume over both nodes ----
STEPS=200
timeout 120 $NODES $BIN $COMMON --batch 4 --steps $STEPS --progress off --params-out $T/full.bin \
  > $T/full.log 2>&1 || { bad "the uninterrupted run"; cat $T/full.log; }
mkdir -p $T/usr1
$NODES $BIN $LONG --steps $STEPS --test-slow-ms 20 --checkpoint-dir $T/usr1/ck > $T/usr1/log 2>&1 &
JOB=$!
if wait_step $T/usr1/log 40; then
  t0=$(now_ms)
  kill -USR1 $JOB
  wait $JOB; rc=$?
  JOB=
  echo "SIGUSR1 to mpirun: exit $rc after $(($(now_ms) - t0)) ms"
  grep -E "received during|^stopped by" $T/usr1/log | sed 's/^/  /'
  [ $rc -eq 0 ] || { bad "usr1: exit $rc"; cat $T/usr1/log; }
  for r in 0 1 2 3; do
    grep -q "\[rank $r [^]]*\] SIGUSR1 received during step" $T/usr1/log ||
      bad "usr1: rank $r did not get the signal"
  done
  stopped=$(sed -n 's/^stopped by .* after step \([0-9]*\) of.*/\1/p' $T/usr1/log)
  [ -n "$stopped" ] || bad "usr1: no 'stopped by' line"
  timeout 120 $NODES $BIN $COMMON --batch 4 --steps $STEPS --progress off --resume \
    --checkpoint-dir $T/usr1/ck --params-out $T/usr1/resumed.bin > $T/usr1/resume.log 2>&1 ||
    { bad "usr1: the resume failed"; cat $T/usr1/resume.log; }
  grep "^resumed from" $T/usr1/resume.log | sed 's/^/  /'
  grep -q "^resumed from .*step ${stopped:-x}\b" $T/usr1/resume.log ||
    bad "usr1: did not resume at step $stopped"
  echo "  resumed to $STEPS over 2 nodes vs uninterrupted:"
  $CMP $T/usr1/resumed.bin $T/full.bin 0 bitwise | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" -eq 0 ] || bad "usr1: the resumed weights differ"
else
  bad "usr1: the job did not reach step 40"; cat $T/usr1/log
fi
[ $fail -eq 0 ] && echo "test_multinode: all passed"
exit $fail
