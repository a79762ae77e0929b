# faultlib.sh: helpers of the fault-injection tests (sourced): find a rank's pid, the clock,
# wait for a step in a job's log.
rank_pid() { # rank_pid TAG RANK: the pid of that rank of the job whose command line has TAG
  local d
  for d in /proc/[0-9]*; do
    # grep reads the files itself (-z: NUL-separated records): no pipe whose writer a quitting
    # grep -q could kill with SIGPIPE, which pipefail would count as no match
    grep -qzF -- "$1" "$d/cmdline" 2> /dev/null || continue
    if grep -qzx "OMPI_COMM_WORLD_RANK=$2" "$d/environ" 2> /dev/null; then
      echo "${d#/proc/}"; return 0
    fi
  done
  return 1
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
wait_step() { # wait_step LOG N: until the log reports step N (at most 30 s)
  local i
  for i in $(seq 300); do
    grep -q "^step $2/" "$1" 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}
