#!/usr/bin/env bash
# test_multinode_slurm.sh BIN MPIRUN BUILD: multinode.sbatch on a real Slurm of two emulated nodes.
#
# Two nodes from scripts/emunodes.sh (own hostname and network namespace each, on a private
# bridge; the filesystem is shared, as a cluster's shared filesystem). slurmctld runs in this
# machine's namespace on the bridge's address; one slurmd runs inside each node's namespace (its
# own spool, pid file, log and TmpFS by %n in slurm.conf; the same port, each in its own
# network). The private Slurm itself (munged, slurm.conf, clean-up) is tests/slurmlib.sh's.
# Then, on the CPU backend, 2 ranks per node, each job checked for exit 0, the banner's "4
# rank(s) on 2 node(s)", metrics.json ranks 4 and ranks on both hosts (stats.jsonl):
#   1. multinode.sbatch with srun --mpi=pmix: 4 ranks on 2 nodes, ranks on both hosts;
#   2. the same with mpirun (Open MPI's plm/slurm starts its daemon on the other node by srun);
#   3. preemption through the batch shell: scancel --batch --signal=USR1 once a checkpoint
#      exists; the shell forwards it to srun, the ranks checkpoint and stop, the job requeues and
#      resumes at the stop step;
#   4. preemption of the job step: scancel --signal=USR1 (the srun-launched ranks on both nodes,
#      not the shell); the ranks checkpoint and stop, srun exits 0 without metrics, the script
#      requeues, the job resumes at the stop step.
# In 3 and 4 both slurmd logs (SlurmdDebug=debug) must show SIGUSR1 sent to the ranks' step; in
# 4 the batch step must not have got it.
# Exit 77 (skipped) where the nodes cannot be made (no root, no namespaces). CG_SLURM_KEEP=1
# keeps the temporary directory.
set -uo pipefail
BIN=${1:?usage: test_multinode_slurm.sh BIN MPIRUN BUILD}
MPIRUN=${2:-mpirun}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/scripts/slurm
TAG=cg-slurm-mn-test
# shellcheck source=tests/slurmlib.sh
. "$ROOT/tests/slurmlib.sh"
# shellcheck source=scripts/emunodes.sh
. "$ROOT/scripts/emunodes.sh"

[ -x "$BIN" ] || fail "no binary $BIN"
if ! cg_nodes_up 2; then
  echo "SKIP: cannot emulate two nodes here: $CG_NODES_WHY"
  exit 77
fi
SL_CLEANUP_HOOK=cg_nodes_down
trap sl_cleanup EXIT
sl_prereqs
sl_reap
sl_setup
N0=${CG_NODE_NAMES[0]} N1=${CG_NODE_NAMES[1]}

# ---- slurm.conf: the controller on the bridge, the nodes at their addresses ----
hw=$(slurmd -C 2> /dev/null | grep -m1 '^NodeName=') || fail "slurmd -C printed no node line"
hw=${hw#NodeName=* }
cpus=$(grep -o 'CPUs=[0-9]*' <<< "$hw" | cut -d= -f2)
hw="CPUs=2 $(grep -o 'RealMemory=[0-9]*' <<< "$hw")" # two ranks a node, whatever the machine
overrides=""
[ "${cpus:-0}" -eq 2 ] || overrides="SlurmdParameters=config_overrides"
{
  echo "# written by tests/test_multinode_slurm.sh for one run"
  sl_conf_common "$(hostname -s)" "$CG_NODES_HOSTADDR"
  echo "$overrides"
  echo "SlurmdDebug=debug # the step signals in the slurmd logs"
  for k in 0 1; do
    echo "NodeName=${CG_NODE_NAMES[$k]} NodeAddr=${CG_NODE_ADDRS[$k]} $hw Gres=gpu:2 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > "$T/slurm.conf"
for n in "$N0" "$N1"; do
  printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' "$n" "$n"
done > "$T/gres.conf"
sl_node_dirs "$N0" "$N1"

# ---- slurmctld here, a slurmd in each node ----
slurmctld -D -i -f "$T/slurm.conf" > "$T/slurmctld.out" 2>&1 &
PIDS="$! $PIDS"
dpids=""
for k in 0 1; do # nsenter execs slurmd in place: $! is slurmd
  cg_node_exec "$k" slurmd -D -N "${CG_NODE_NAMES[$k]}" -f "$T/slurm.conf" \
    > "$T/slurmd-${CG_NODE_NAMES[$k]}.out" 2>&1 &
  dpids="$dpids $!"
done
PIDS="$dpids $PIDS"
sl_wait_idle "$PIDS" "$N0" "$N1"
say "slurm up: $N0 ${CG_NODE_ADDRS[0]}, $N1 ${CG_NODE_ADDRS[1]} idle, controller $CG_NODES_HOSTADDR:$CTLD_PORT, $T"

cd "$T" || fail "cd $T"
mpis=$(srun --mpi=list 2>&1)
grep -qw pmix <<< "$mpis" || fail "srun --mpi=list offers no pmix, which the srun launcher needs: $mpis"
small="--model-base 4 --model-depth 2 --image-size 32 --batch 4 --train-samples 256 --val-samples 32 --threads 1"
mpi_args=--oversubscribe
common_env=(CG_BIN="$BIN" CG_BACKEND=cpu CG_RANKS=4 CG_MPIRUN="$MPIRUN" CG_MPIRUN_ARGS="$mpi_args")
sb_opts=(--nodes=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=2 --time=5)

# a finished 4-rank run: exit 0, the banner, metrics ranks 4, ranks on both hosts
check_run() { # check_run OUT RUN_DIR STEPS JOB
  local n
  expect "$1" '^cogpu-dist train: 4 rank\(s\) on 2 node\(s\)' "job $4"
  expect "$1" "^final: $3 steps" "job $4"
  expect "$1" 'cogpu-slurm: finished' "job $4"
  [ "$(json_num "$2/metrics.json" ranks)" = 4 ] || fail "job $4: metrics ranks != 4: $(cat "$2/metrics.json")"
  [ "$(json_num "$2/metrics.json" steps)" = "$3" ] || fail "job $4: metrics steps != $3"
  for n in "$N0" "$N1"; do
    grep -q "\"host\": \"$n\"" "$2/stats.jsonl" || fail "job $4: no rank on $n in $2/stats.jsonl"
  done
  [ "$(job_field "$4" JobState)" = COMPLETED ] && [ "$(job_field "$4" ExitCode)" = 0:0 ] ||
    fail "job $4: state $(job_field "$4" JobState), exit $(job_field "$4" ExitCode)"
}

# ---- 1. srun --mpi=pmix, 4 ranks on 2 nodes ----
t=$(date +%s)
submit "$T/job1.out" "${common_env[@]}" CG_LAUNCHER=srun CG_RUN_DIR="$T/run1" \
  CG_ARGS="$small --steps 10 --report-every 5" -- "${sb_opts[@]}" "$SCRIPTS/multinode.sbatch"
j1=$JOB
finish "$T/job1.out" 120 "job $j1 (multinode.sbatch, srun)"
expect "$T/job1.out" "cogpu-slurm: job $j1, run 1 \\(restarts 0\\), 2 node\\(s\\) cgnode\\[0-1\\], 4 rank\\(s\\) by srun" "job $j1"
expect "$T/job1.out" 'cogpu-slurm: srun --ntasks=4 --ntasks-per-node=2 .*--gpus-per-task=1 --mpi=pmix' "job $j1"
check_run "$T/job1.out" "$T/run1" 10 "$j1"
say "1. multinode.sbatch, srun --mpi=pmix: job $j1 COMPLETED, 4 ranks on $N0 and $N1 ($(($(date +%s) - t)) s)"

# ---- 2. mpirun: Open MPI starts its daemon on the second node with srun ----
t=$(date +%s)
submit "$T/job2.out" "${common_env[@]}" CG_LAUNCHER=mpirun CG_RUN_DIR="$T/run2" \
  CG_ARGS="$small --steps 10 --report-every 5" -- "${sb_opts[@]}" "$SCRIPTS/multinode.sbatch"
j2=$JOB
finish "$T/job2.out" 120 "job $j2 (multinode.sbatch, mpirun)"
check_run "$T/job2.out" "$T/run2" 10 "$j2"
expect "$T/slurmd-$N1.log" "launch task StepId=$j2\.0 " "job $j2: Open MPI's daemon on $N1 by srun"
say "2. multinode.sbatch, mpirun (plm/slurm): job $j2 COMPLETED, 4 ranks on $N0 and $N1 ($(($(date +%s) - t)) s)"

# ---- 3 and 4: stopped by USR1 (to the batch shell, then to the job step), resumed ----
preempt() { # preempt N HOW SCANCEL_ARGS...
  local n=$1 how=$2 out=$T/job$1.out run=$T/run$1 steps=200 j stop
  shift 2
  t=$(date +%s)
  submit "$out" "${common_env[@]}" CG_LAUNCHER=srun CG_RUN_DIR="$run" CG_CKPT_EVERY=50 \
    CG_ARGS="$small --steps $steps --report-every 100 --test-slow-rank 1 --test-slow-ms 20" \
    -- "${sb_opts[@]}" "$SCRIPTS/multinode.sbatch"
  j=$JOB
  wait_ckpt "$run/checkpoints" "$out" "$j"
  scancel "$@" "$j" || fail "scancel $* $j"
  say "$n. job $j: checkpoint $(basename "$(ls "$run"/checkpoints/*.cgck | tail -n1)") seen, scancel $* ($how)"
  finish "$out" 180 "job $j (preempted by scancel $*)"
  check_stopped "$out" "$j" "$steps"
  stop=$STOP
  expect "$out" "cogpu-slurm: job $j, run 2 \\(restarts 1\\), 2 node\\(s\\)" "job $j"
  check_run "$out" "$run" "$steps" "$j"
  [ "$(job_field "$j" Restarts)" = 1 ] || fail "job $j: restarts $(job_field "$j" Restarts), not 1"
  say "$n. job $j: stopped after step $stop with a checkpoint, requeued, resumed at step $stop, finished $steps steps, COMPLETED 0:0 ($(($(date +%s) - t)) s)"
}
# slurmd's log (SlurmdDebug=debug) names each step it signalled: the ranks' step on both nodes
signalled() { # signalled JOB: step JOB.0 got SIGUSR1 on every node
  local n
  for n in "$N0" "$N1"; do
    expect "$T/slurmd-$n.log" "\\[$1\\.0\\] Sent signal 10 to StepId=$1\\.0$" "job $1: the ranks on $n"
  done
}
preempt 3 "the batch shell, which signals srun" --batch --signal=USR1
expect "$T/job3.out" 'SIGUSR1: asking the ranks to checkpoint and stop \(SIGUSR1 to srun' "job $JOB: the batch shell"
signalled "$JOB"
preempt 4 "the job step: the ranks on both nodes, not the shell" --signal=USR1
grep -q 'SIGUSR1: asking the ranks' "$T/job4.out" && fail "job $JOB: the batch shell got the signal"
grep -q "sent signal 10 to pid [0-9]* StepId=$JOB\\.batch" "$T/slurmd-$N0.log" &&
  fail "job $JOB: slurmd signalled the batch step"
signalled "$JOB"

say "all multinode Slurm checks passed"
