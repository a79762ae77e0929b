# shellcheck shell=bash
# slurmlib.sh: a private Slurm for the tests (test_slurm.sh, one node; test_multinode_slurm.sh,
# emulated nodes). Sourced, never run. Set TAG (the temporary directory's prefix) first.
#
# Everything lives in one temporary directory $T: munged on its own socket and key, slurm.conf,
# controller state, one spool directory, pid file and log per node (%n in slurm.conf), the
# daemons' output. Nothing in /etc is touched; the daemons run in the foreground as children of
# the test, and the clean-up ends them (and anything that still names $T) by pid.
#   sl_prereqs              root, slurm-wlm/munge (installed when missing), no outer SLURM_*
#   sl_reap                 the leftovers of earlier runs of the same TAG that were killed
#   sl_setup                $T, SLURM_CONF, CTLD_PORT, SLURMD_PORT, munged, the cleanup trap
#   sl_conf_common H A      the slurm.conf lines every test shares, controller H at address A
#   sl_node_dirs N...       the spool and temporary directories of nodes N...
#   sl_wait_idle P N...     until nodes N... are idle; fails with the daemons' output when the
#                           pids P (space-separated) exit first or after 60 s
#   submit, finish, expect, job_field, json_num: jobs and their outputs (comments below)
# SL_CLEANUP_HOOK names a function the clean-up calls after the daemons have ended.

T0=$(date +%s)
T="" JOBS="" PIDS="" FAILED=0 WHY="" SL_CLEANUP_HOOK=""
say() { printf '[%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() {
  echo "FAIL: $*"
  FAILED=1 WHY=$*
  exit 1
}

sl_need_cmds="slurmctld slurmd sbatch squeue sinfo scontrol scancel srun munged munge unmunge"
sl_missing_cmds() { for c in $sl_need_cmds; do command -v "$c" > /dev/null || echo "$c"; done; }
sl_prereqs() {
  [ "$(id -u)" -eq 0 ] ||
    fail "needs root: it installs slurm-wlm/munge when missing and runs slurmd (SlurmdUser=root)"
  if [ -n "$(sl_missing_cmds)" ]; then
    say "installing slurm-wlm and munge (missing: $(sl_missing_cmds | tr '\n' ' '))"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm munge; } \
      > "/tmp/$TAG-apt.log" 2>&1 ||
      { tail -n 30 "/tmp/$TAG-apt.log"; fail "apt-get install slurm-wlm munge failed"; }
    rm -f "/tmp/$TAG-apt.log"
    [ -z "$(sl_missing_cmds)" ] || fail "still missing after installing: $(sl_missing_cmds | tr '\n' ' ')"
  fi
  # A Slurm outside (CI inside a job) must not leak into ours.
  for v in $(env | grep -o '^SLURM_[A-Za-z_]*'); do unset "$v"; done
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
}

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

sl_reap() {
  local d owner
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
}

# clean-up: the jobs, then the daemons (PIDS), anything naming $T, the hook; logs on failure
sl_cleanup() {
  local rc=$? f
  trap - EXIT INT TERM
  [ "$rc" -ne 0 ] && FAILED=1
  if [ -z "$T" ]; then
    [ -n "$SL_CLEANUP_HOOK" ] && "$SL_CLEANUP_HOOK"
    exit "$rc"
  fi
  if [ -n "$JOBS" ] && [ -S "$T/munge.sock" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $JOBS 2> /dev/null
    for _ in $(seq 30); do
      [ -z "$(timeout 5 squeue -h -o %i 2> /dev/null)" ] && break
      sleep 0.5
    done
  fi
  if [ "$FAILED" -ne 0 ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] && { echo "---- $(basename "$f") (last 40 lines)"; tail -n 40 "$f"; }
    done
  fi
  # shellcheck disable=SC2086
  end_pids $PIDS
  # shellcheck disable=SC2046
  end_pids $(pids_of_dir "$T")
  [ -n "$SL_CLEANUP_HOOK" ] && "$SL_CLEANUP_HOOK"
  if [ "${CG_SLURM_KEEP:-0}" = 1 ]; then echo kept > "$T/owner"; echo "kept $T"; else rm -rf "$T"; fi
  say "daemons stopped; $([ "$FAILED" -eq 0 ] && echo PASS || echo "FAIL${WHY:+: $WHY}")"
  exit "$rc"
}

free_ports() { # two TCP ports nobody listens on
  python3 - 2> /dev/null << 'EOF' || echo "$((20000 + RANDOM % 20000)) $((40000 + RANDOM % 20000))"
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}

sl_munged() {
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
}

sl_setup() {
  trap sl_cleanup EXIT
  trap 'fail "interrupted"' INT TERM
  T=$(mktemp -d "/tmp/$TAG.XXXXXX") || fail "mktemp"
  chmod 755 "$T" # munged wants its socket's directory searchable by all
  echo $$ > "$T/owner"
  mkdir -p "$T/state"
  export SLURM_CONF=$T/slurm.conf
  read -r CTLD_PORT SLURMD_PORT < <(free_ports)
  sl_munged
}

# the slurm.conf lines every test shares: controller $1 at address $2, one spool, pid file, log
# and TmpFS per node (%n: the node's name; the PMIx plugin makes the ranks' directory in TmpFS,
# named by job and step only, so nodes sharing a filesystem, or two private Slurms on one
# machine, each need their own), no cgroups (linuxproc, task/none), fast scheduling
sl_conf_common() {
  cat << EOF
ClusterName=cgtest
SlurmctldHost=$1($2)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$T/munge.sock,cred_expire=5
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool-%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd-%n.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd-%n.log
TmpFS=$T/tmp-%n
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
EOF
  : > "$T/plugstack.conf"
}

sl_node_dirs() {
  local n
  for n in "$@"; do mkdir -p "$T/spool-$n" "$T/tmp-$n" || fail "mkdir $T/spool-$n $T/tmp-$n"; done
}

sl_wait_idle() { # sl_wait_idle "PID..." NODE...
  local pids=$1 state="" why="" p n f
  shift
  for _ in $(seq 60); do
    state=$(timeout 5 sinfo -h -N -n "$(IFS=,; echo "$*")" -o %t 2> /dev/null | sort -u | tr '\n' ' ')
    [ "$state" = "idle " ] && return 0
    for p in $pids; do alive "$p" || why="a daemon (pid $p) exited"; done
    [ -n "$why" ] && break
    sleep 1
  done
  for f in "$T"/*.out; do echo "---- $(basename "$f")"; cat "$f"; done
  for n in "$@"; do timeout 5 scontrol show node "$n" 2>&1 | grep -E 'NodeName|State|Reason'; done
  fail "the Slurm daemons could not start here: ${why:-nodes $* not idle after 60 s (state '${state:-no answer}')}"
}

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
  # shellcheck disable=SC2034 # the caller's
  JOB=$id
}
# finish OUT SECONDS WHAT: waits until the job has ended and fails unless it exited 0. sbatch
# --wait polls the job every 2, 4, 8 then 10 s; polling its state here each 0.5 s saves that.
finish() {
  local out=$1 pid rc="" job st wrc
  pid=$(cat "$out.pid")
  job=$(grep -m1 -o '^[0-9]*' "$out.id")
  for _ in $(seq $(($2 * 2))); do
    kill -0 "$pid" 2> /dev/null || break
    st=$(job_field "$job" JobState)
    case $st in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        rc=$(job_field "$job" ExitCode) # CODE:SIGNAL
        if [ "${rc#*:}" = 0 ]; then rc=${rc%%:*}; else rc=$((128 + ${rc#*:})); fi
        kill "$pid" 2> /dev/null
        break ;;
    esac
    sleep 0.5
  done
  if [ -z "$rc" ] && kill -0 "$pid" 2> /dev/null; then
    cat "$out" 2> /dev/null
    fail "$3: not finished after $2 s"
  fi
  wait "$pid"
  wrc=$?
  [ -n "$rc" ] || rc=$wrc # sbatch --wait's exit status is the job's
  [ "$rc" -eq 0 ] || { echo "---- $out"; cat "$out" "$out.sbatch"; fail "$3: job exit $rc"; }
}

wait_ckpt() { # wait_ckpt DIR OUT JOB: until DIR holds a checkpoint (at most 60 s)
  for _ in $(seq 600); do
    compgen -G "$1/*.cgck" > /dev/null && return 0
    sleep 0.1
  done
  cat "$2"
  fail "job $3: no checkpoint after 60 s"
}

# check_stopped OUT JOB STEPS: the job stopped by SIGUSR1 with a checkpoint, requeued itself and
# resumed at the stop step (its output OUT says so); sets STOP
check_stopped() {
  local out=$1 j=$2 steps=$3
  STOP=$(grep -m1 -oE '^stopped by SIGUSR1 \(rank [0-9]+\) after step [0-9]+' "$out" | grep -oE '[0-9]+$')
  [ -n "$STOP" ] || { cat "$out"; fail "job $j: no 'stopped by SIGUSR1 ... after step N' line"; }
  [ "$STOP" -gt 0 ] && [ "$STOP" -lt "$steps" ] || fail "job $j: stopped at step $STOP, not inside (0, $steps)"
  expect "$out" "after step $STOP of $steps: checkpoint .*ckpt-0*$STOP\\.cgck written" "job $j"
  expect "$out" "cogpu-slurm: stopped early \\(launcher exit 0\\): requeueing job $j" "job $j"
  expect "$out" "cogpu-slurm: job $j, run 2 \\(restarts 1\\)" "job $j"
  expect "$out" "^resumed from .*ckpt-0*$STOP\\.cgck: step $STOP " "job $j"
}
