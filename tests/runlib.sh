# runlib.sh: the run-and-check helpers of the checkpoint tests (sourced after T and fail are
# set): a job's exit code and what its log says, a field of its metrics JSON, and (with
# CMP=cg_cmp_params) parameter files.
run() { # run NAME WANT_RC ARGS...: the exit code must be WANT_RC; output in $T/NAME.log
  local name=$1 want=$2; shift 2
  timeout 120 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne "$want" ]; then
    echo "FAIL $name: exit code $rc, want $want"; cat "$T/$name.log"; fail=1; return 1
  fi
  echo "ok: $name exits $rc"
}
want() { # want NAME TEXT: the log of NAME contains TEXT
  if grep -qF -- "$2" "$T/$1.log"; then echo "  ok: $(grep -F -- "$2" "$T/$1.log" | head -1 | cut -c1-200)"
  else echo "FAIL $1: no '$2' in:"; cat "$T/$1.log"; fail=1; fi
}
metric() { # metric NAME KEY: a field of NAME's metrics JSON ($T/NAME.json)
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$T/$1.json" "$2"
}
same_params() { # same_params A B TOL WHAT: parameter files $T/A.bin and $T/B.bin agree
  echo "$4:"
  $CMP "$T/$1.bin" "$T/$2.bin" "$3" || fail=1
}
