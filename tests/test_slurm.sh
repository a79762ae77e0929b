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
# CG_SLURM_KEEP=1 keeps the temporary directory.
set -uo pipefail
BIN=${1:?usage: test_slurm.sh BIN MPIRUN BUILD}
MPIRUN=${2:-mpirun}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/scripts/slurm
TAG=cg-slurm-test
T0=$(date +%s)

say() { printf '[%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
T="" JOBS="" PIDS="" FAILED=0 WHY=""
fail() {
  echo "FAIL: $*"
  FAILED=1 WHY=$*
  exit 1
}

# ---- prerequisites ----
[ "$(id -u)" -eq 0 ] || fail "needs root: it installs slurm-wlm/munge when missing and runs slurmd (SlurmdUser=root)"
need_cmds="slurmctld slurmd sbatch squeue sinfo scontrol scancel srun munged munge unmunge"
missing_cmds() { for c in $need_cmds; do command -v "$c" > /dev/null || echo "$c"; done; }
if [ -n "$(missing_cmds)" ]; then
  say "installing slurm-wlm and munge (missing: $(missing_cmds | tr '\n' ' '))"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm munge; } \
    > /tmp/$TAG-apt.log 2>&1 || { tail -n 30 /tmp/$TAG-apt.log; fail "apt-get install slurm-wlm munge failed"; }
  rm -f /tmp/$TAG-apt.log
  [ -z "$(missing_cmds)" ] || fail "still missing after installing: $(missing_cmds | tr '\n' ' ')"
fi
[ -x "$BIN" ] || fail "no binary $BIN"

# A Slurm outside (CI inside a job) must not leak into ours.
for v in $(env | grep -o '^SLURM_[A-Za-z_]*'); do unset "$v"; done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# ---- leftovers of an earlier run that was killed before its clean-up ----
# Processes are recognised by our directory in their command line or environment (the daemons'
# -f/--key-file arguments, the jobs' SLURM_CONF), and ended by their pid.
pids_of_dir() {
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    if grep -qsF "$1/" "$p/cmdline" || grep -qsF "SLURM_CONF=$1/slurm.conf" "$p/environ"; then
      echo "${p#/proc/}"
    fi
  done
}
alive() { # running (a zombie child waiting to be reaped counts as ended)
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2> /dev/null
}
end_pids() { # TERM, up to 5 s, then KILL
  local p left
  [ $# -eq 0 ] && return 0
  kill "$@" 2> /dev/null
  for _ in $(seq 50); do
    left=0
    for p in "$@"; do alive "$p" && left=1; done
    [ "$left" -eq 0 ] && return 0
    sleep 0.1
  done
  kill -9 "$@" 2> /dev/null
  return 0
}
for d in "/tmp/$TAG".*; do
  [ -d "$d" ] || continue
  owner=$(cat "$d/owner" 2> /dev/null || echo 0)
  [ "$owner" = kept ] && continue                                 # CG_SLURM_KEEP=1
  [ "$owner" != 0 ] && kill -0 "$owner" 2> /dev/null && continue # another run, still going
  [ "$owner" = 0 ] && [ -n "$(find "$d" -maxdepth 0 -mmin -1)" ] && continue # just created
  say "removing the leftovers of an earlier run in $d"
  # shellcheck disable=SC2046
  end_pids $(pids_of_dir "$d")
  rm -rf "$d"
done

# ---- clean-up: the jobs, then slurmd, slurmctld, munged; the logs when something failed ----
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && FAILED=1
  [ -z "$T" ] && exit "$rc"
  if [ -n "$JOBS" ] && [ -S "$T/munge.sock" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $JOBS 2> /dev/null
    for _ in $(seq 30); do
      [ -z "$(timeout 5 squeue -h -o %i 2> /dev/null)" ] && break
      sleep 0.5
    done
  fi
  if [ "$FAILED" -ne 0 ]; then
    for f in slurmctld.log slurmd.log munged.log; do
      [ -f "$T/$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$T/$f"; }
    done
  fi
  # shellcheck disable=SC2086
  end_pids $PIDS
  # shellcheck disable=SC2046
  end_pids $(pids_of_dir "$T")
  if [ "${CG_SLURM_KEEP:-0}" = 1 ]; then echo kept > "$T/owner"; echo "kept $T"; else rm -rf "$T"; fi
  say "daemons stopped; $([ "$FAILED" -eq 0 ] && echo PASS || echo "FAIL${WHY:+: $WHY}")"
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

T=$(mktemp -d /tmp/$TAG.XXXXXX) || fail "mktemp"
chmod 755 "$T" # munged wants its socket's directory searchable by all
echo $$ > "$T/owner"
mkdir -p "$T/state" "$T/spool"
export SLURM_CONF=$T/slurm.conf

free_ports() { # two TCP ports nobody listens on
  python3 - 2> /dev/null << 'EOF' || echo "$((20000 + RANDOM % 20000)) $((40000 + RANDOM % 20000))"
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}
read -r CTLD_PORT SLURMD_PORT < <(free_ports)

# ---- munged ----
if command -v mungekey > /dev/null; then
  mungekey --create --keyfile="$T/munge.key" --bits=1024 > /dev/null 2>&1 || fail "mungekey failed"
else
  dd if=/dev/urandom of="$T/munge.key" bs=128 count=1 status=none
fi
chmod 600 "$T/munge.key"
munged -F --key-file="$T/munge.key" --socket="$T/munge.sock" --log-file="$T/munged.log" \
  --pid-file="$T/munged.pid" --seed-file="$T/munged.seed" > "$T/munged.out" 2>&1 &
PIDS="$!"
for _ in $(seq 50); do [ -S "$T/munge.sock" ] && break; sleep 0.1; done
munge -S "$T/munge.sock" -n 2> "$T/munge.err" | unmunge -S "$T/munge.sock" > /dev/null 2>> "$T/munge.err" ||
  { cat "$T/munged.out" "$T/munge.err"; fail "munged did not start (its log follows)"; }

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
cat > "$T/slurm.conf" << EOF
# written by tests/test_slurm.sh for one run
ClusterName=cgtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$T/munge.sock,cred_expire=5
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
PlugStackConfig=$T/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=2,bf_interval=1
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
MailProg=/bin/true
GresTypes=gpu
$overrides
NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' "$NODE" "$NODE" > "$T/gres.conf"
: > "$T/plugstack.conf"

# ---- slurmctld and slurmd ----
slurmctld -D -i -f "$T/slurm.conf" > "$T/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -N "$NODE" -f "$T/slurm.conf" > "$T/slurmd.out" 2>&1 &
slurmd_pid=$!
PIDS="$slurmd_pid $ctld_pid $PIDS"
state="" why=""
for _ in $(seq 60); do
  state=$(timeout 5 sinfo -h -N -n "$NODE" -o %t 2> /dev/null)
  [ "$state" = idle ] && break
  alive "$ctld_pid" || { why="slurmctld exited"; break; }
  alive "$slurmd_pid" || { why="slurmd exited"; break; }
  sleep 1
done
if [ "$state" != idle ]; then
  echo "---- slurmctld -D output"; cat "$T/slurmctld.out"
  echo "---- slurmd -D output"; cat "$T/slurmd.out"
  timeout 5 scontrol show node "$NODE" 2>&1 | grep -E 'State|Reason'
  fail "the Slurm daemons could not start here: ${why:-node $NODE not idle after 60 s (state '${state:-no answer}')}"
fi
say "slurm up: node $NODE idle, ports $CTLD_PORT/$SLURMD_PORT, $T"

# ---- helpers ----
cd "$T" || fail "cd $T"
small="--model-base 4 --model-depth 2 --image-size 32 --batch 4 --train-samples 256 --val-samples 32"
common_env=(CG_BIN="$BIN" CG_BACKEND=cpu CG_RANKS=2 CG_MPIRUN="$MPIRUN" CG_MPIRUN_ARGS=--oversubscribe)
sb_opts=(--ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=2 --time=5)
job_field() { timeout 10 scontrol show job "$1" 2> /dev/null | grep -o "$2=[^ ]*" | head -n1 | cut -d= -f2; }
json_num() { grep -o "\"$2\": *[-0-9.e]*" "$1" | head -n1 | sed 's/.*: *//'; }
expect() { # expect FILE REGEX WHAT
  grep -qE "$2" "$1" || { echo "---- $1"; cat "$1"; fail "$3: no line matching /$2/ in $1"; }
}
submit() { # submit OUT ENV... -- SBATCH_ARGS...: sets JOB; sbatch --wait goes on in the background
  local out=$1 envs=() id=""
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" sbatch --parsable --wait -o "$out" "$@" > "$out.id" 2> "$out.sbatch" &
  echo $! > "$out.pid"
  for _ in $(seq 100); do
    id=$(grep -m1 -o '^[0-9]*' "$out.id" 2> /dev/null)
    [ -n "$id" ] && break
    sleep 0.1
  done
  [ -n "$id" ] || { cat "$out.sbatch"; fail "sbatch did not submit $*"; }
  JOBS="$JOBS $id"
  JOB=$id
}
finish() { # finish OUT SECONDS WHAT: waits for sbatch --wait, whose exit status is the job's
  local out=$1 pid rc
  pid=$(cat "$out.pid")
  for _ in $(seq $(($2 * 5))); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2> /dev/null; then
    cat "$out" 2> /dev/null
    fail "$3: not finished after $2 s"
  fi
  wait "$pid"
  rc=$?
  [ "$rc" -eq 0 ] || { echo "---- $out"; cat "$out" "$out.sbatch"; fail "$3: sbatch --wait exit $rc"; }
}

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
for _ in $(seq 600); do
  compgen -G "$T/run2/checkpoints/*.cgck" > /dev/null && break
  sleep 0.1
done
compgen -G "$T/run2/checkpoints/*.cgck" > /dev/null || { cat "$T/job2.out"; fail "job $j2: no checkpoint after 60 s"; }
scancel --batch --signal=USR1 "$j2" || fail "scancel --batch --signal=USR1 $j2"
say "2. job $j2: checkpoint $(basename "$(ls "$T"/run2/checkpoints/*.cgck | tail -n1)") seen, sent USR1 to the batch shell"
finish "$T/job2.out" 180 "job $j2 (preempted train.sbatch)"
stop=$(grep -m1 -oE '^stopped by SIGUSR1 \(rank [0-9]+\) after step [0-9]+' "$T/job2.out" | grep -oE '[0-9]+$')
[ -n "$stop" ] || { cat "$T/job2.out"; fail "job $j2: no 'stopped by SIGUSR1 ... after step N' line"; }
[ "$stop" -gt 0 ] && [ "$stop" -lt "$steps" ] || fail "job $j2: stopped at step $stop, not inside (0, $steps)"
expect "$T/job2.out" "after step $stop of $steps: checkpoint .*ckpt-0*$stop\\.cgck written" "job $j2"
expect "$T/job2.out" "cogpu-slurm: stopped early \\(launcher exit 0\\): requeueing job $j2" "job $j2"
expect "$T/job2.out" "cogpu-slurm: job $j2, run 2 \\(restarts 1\\)" "job $j2"
expect "$T/job2.out" "^resumed from .*ckpt-0*$stop\\.cgck: step $stop " "job $j2"
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
