# clilib.sh: the helpers of the command-line tests that expect usage errors (sourced after T is
# set): fail ends the test; expect2 runs a command that must exit 2 saying a given text.
fail() { echo "FAIL: $*"; exit 1; }
expect2() { # expect2 WANT_TEXT ARGS...: exit 2 and the text in the output
  local want=$1; shift
  set +e; "$@" > "$T/o" 2>&1; local rc=$?; set -e
  [ $rc -eq 2 ] || { cat "$T/o"; fail "exit $rc, want 2: $*"; }
  grep -qF -- "$want" "$T/o" || { cat "$T/o"; fail "no '$want' in the output of: $*"; }
  echo "ok (exit 2): $want"
}
