#!/usr/bin/env bash
# test_slurm.sh BIN MPIRUN BUILD: the batch scripts of scripts/slurm/ on a real, private Slurm.
#
# Starts a one-node Slurm of its own for this machine: munged on its own socket and key,
# slurmctld and slurmd in the foreground (children of this script) on free ports, with their
# configuration, state, spool and logs in one temporary directory; nothing in /etc is touched.
# The node declares two GPUs backed by /dev/null and /dev/zero (gres without a device cgroup),
# so the scripts' GPU requests (--gpus-per-node, srun --gpus-per-task) run as written. Then:
#   1. train.sbatch, mpirun, CPU backend, 2 ranks, via sbatch --wait: exit 0, the final lines in
#      the job output, metrics.json with ranks 2;
#   2. train.sbatch with checkpoints: once a checkpoint exists, scancel --batch --signal=USR1
#      (what --signal=B:USR1@120 does before the time limit); the ranks checkpoint and stop, the
#      script requeues the job, the second run resumes at the stop step and finishes all steps;
#   3. multinode.sbatch launched with srun --mpi=pmix (one GPU per task);
#   4. scaling.sbatch over one node count: the efficiency table.
# Needs root (it installs slurm-wlm and munge when missing, and slurmd runs jobs as root). When
# the daemons cannot start, the test fails with their logs: it never passes without running.
# The private Slurm's set-up and clean-up are tests/slurmlib.sh's (shared with
# test_multinode_slurm.sh).
# CG_SLURM_KEEP=1 keeps the temporary directory.
set -uo pipefail
BIN=${1:?usage: test_slurm.sh BIN MPIRUN BUILD}
MPIRUN=${2:-mpirun}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/scripts/slurm
TAG=cg-slurm-test
# shellcheck source=tests/slurmlib.sh
. "$ROOT/tests/slurmlib.sh"

sl_prereqs
[ -x "$BIN" ] || fail "no binary $BIN"
sl_reap
sl_setup

# ---- slurm.conf for this machine, as slurmd -C sees it ----
hw=$(slurmd -C 2> /dev/null | grep -m1 '^NodeName=') || fail "slurmd -C printed no node line"
NODE=$(sed 's/^NodeName=\([^ ]*\).*/\1/' <<< "$hw")
hw=${hw#NodeName=* }
cpus=$(grep -o 'CPUs=[0-9]*' <<< "$hw" | cut -d= -f2)
overrides=""
if [ "${cpus:-0}" -lt 2 ]; then # two ranks need two CPUs: declare them, slurmd accepts it
  hw="CPUs=2 $(grep -o 'RealMemory=[0-9]*' <<< "$hw")"
  overrides="SlurmdParameters=config_overrides"
fi
{
  echo "# written by tests/test_slurm.sh for one run"
  sl_conf_common "$NODE" 127.0.0.1
  echo "$overrides"
  echo "NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:2 State=UNKNOWN"
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > "$T/slurm.conf"
printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' "$NODE" "$NODE" > "$T/gres.conf"
sl_node_dirs "$NODE"

# ---- slurmctld and slurmd ----
slurmctld -D -i -f "$T/slurm.conf" > "$T/slurmctld.out" 2>&1 &
PIDS="$! $PIDS"
slurmd -D -N "$NODE" -f "$T/slurm.conf" > "$T/slurmd.out" 2>&1 &
PIDS="$! $PIDS"
sl_wait_idle "$PIDS" "$NODE"
say "slurm up: node $NODE idle, ports $CTLD_PORT/$SLURMD_PORT, $T"

cd "$T" || fail "cd $T"
small="--model-base 4 --model-depth 2 --image-size 32 --batch 4 --train-samples 256 --val-samples 32"
common_env=(CG_BIN="$BIN" CG_BACKEND=cpu CG_RANKS=2 CG_MPIRUN="$MPIRUN" CG_MPIRUN_ARGS=--oversubscribe)
sb_opts=(--ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=2 --time=5)

# ---- 1. train.sbatch, mpirun, 2 ranks ----
t=$(date +%s)
submit "$T/job1.out" "${common_env[@]}" CG_RUN_DIR="$T/run1" CG_ARGS="$small --steps 20" \
  -- "${sb_opts[@]}" "$SCRIPTS/train.sbatch"
j1=$JOB
finish "$T/job1.out" 120 "job $j1 (train.sbatch)"
expect "$T/job1.out" '^final: 20 steps' "job $j1"
expect "$T/job1.out" '^final validation: ' "job $j1"
expect "$T/job1.out" 'cogpu-slurm: finished' "job $j1"
[ -f "$T/run1/metrics.json" ] || fail "job $j1: no metrics file $T/run1/metrics.json"
[ "$(json_num "$T/run1/metrics.json" ranks)" = 2 ] || fail "job $j1: metrics ranks != 2: $(cat "$T/run1/metrics.json")"
[ "$(json_num "$T/run1/metrics.json" steps)" = 20 ] || fail "job $j1: metrics steps != 20"
[ -s "$T/run1/stats.jsonl" ] || fail "job $j1: no stats file"
[ "$(job_field "$j1" JobState)" = COMPLETED ] && [ "$(job_field "$j1" ExitCode)" = 0:0 ] ||
  fail "job $j1: state $(job_field "$j1" JobState), exit $(job_field "$j1" ExitCode)"
say "1. train.sbatch (mpirun, 2 ranks): job $j1 COMPLETED 0:0, metrics ranks 2 ($(($(date +%s) - t)) s)"

# ---- 2. stopped by USR1, checkpointed, requeued, resumed ----
t=$(date +%s)
steps=300
submit "$T/job2.out" "${common_env[@]}" CG_RUN_DIR="$T/run2" CG_CKPT_EVERY=50 \
  CG_ARGS="$small --steps $steps --report-every 100 --test-slow-rank 1 --test-slow-ms 20" \
  -- "${sb_opts[@]}" "$SCRIPTS/train.sbatch"
j2=$JOB
wait_ckpt "$T/run2/checkpoints" "$T/job2.out" "$j2"
scancel --batch --signal=USR1 "$j2" || fail "scancel --batch --signal=USR1 $j2"
say "2. job $j2: checkpoint $(basename "$(ls "$T"/run2/checkpoints/*.cgck | tail -n1)") seen, sent USR1 to the batch shell"
finish "$T/job2.out" 180 "job $j2 (preempted train.sbatch)"
check_stopped "$T/job2.out" "$j2" "$steps"
stop=$STOP
expect "$T/job2.out" "^final: $steps steps" "job $j2"
[ "$(json_num "$T/run2/metrics.json" steps)" = "$steps" ] || fail "job $j2: metrics steps != $steps"
[ "$(job_field "$j2" JobState)" = COMPLETED ] && [ "$(job_field "$j2" ExitCode)" = 0:0 ] &&
  [ "$(job_field "$j2" Restarts)" = 1 ] ||
  fail "job $j2: state $(job_field "$j2" JobState), exit $(job_field "$j2" ExitCode), restarts $(job_field "$j2" Restarts)"
say "2. job $j2: stopped after step $stop with a checkpoint, requeued, resumed at step $stop, finished $steps steps, COMPLETED 0:0 ($(($(date +%s) - t)) s)"

# ---- 3. multinode.sbatch (one node here), launched by srun --mpi=pmix ----
t=$(date +%s)
submit "$T/job3.out" "${common_env[@]}" CG_LAUNCHER=srun CG_RUN_DIR="$T/run3" \
  CG_ARGS="$small --steps 10" -- "${sb_opts[@]}" --nodes=1 "$SCRIPTS/multinode.sbatch"
j3=$JOB
finish "$T/job3.out" 120 "job $j3 (multinode.sbatch, srun)"
expect "$T/job3.out" 'cogpu-slurm: srun .*--gpus-per-task=1 --mpi=pmix' "job $j3"
expect "$T/job3.out" '^cogpu-dist train: 2 rank\(s\)' "job $j3"
expect "$T/job3.out" '^final: 10 steps' "job $j3"
[ "$(json_num "$T/run3/metrics.json" ranks)" = 2 ] || fail "job $j3: metrics ranks != 2"
say "3. multinode.sbatch (srun --mpi=pmix, a GPU per task): job $j3 COMPLETED ($(($(date +%s) - t)) s)"

# ---- 4. scaling.sbatch over one node count ----
t=$(date +%s)
submit "$T/job4.out" "${common_env[@]}" CG_RUN_DIR="$T/run4" CG_NODE_COUNTS=1 CG_STEPS=40 \
  CG_ARGS="$small" -- "${sb_opts[@]}" --nodes=1 "$SCRIPTS/scaling.sbatch"
j4=$JOB
finish "$T/job4.out" 120 "job $j4 (scaling.sbatch)"
expect "$T/job4.out" '^# +nodes +ranks .*efficiency' "job $j4"
expect "$T/job4.out" '^ +1 +2 +8 +[0-9.]+ +[0-9.]+ +1\.000 ' "job $j4"
[ -s "$T/run4/scaling.txt" ] && [ -s "$T/run4/nodes-1/stats.jsonl" ] || fail "job $j4: no scaling.txt or stats file"
say "4. scaling.sbatch: job $j4 printed the efficiency table ($(($(date +%s) - t)) s)"
grep -A3 '^# weak scaling' "$T/job4.out"

say "all Slurm checks passed"
