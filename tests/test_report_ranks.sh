#!/usr/bin/env bash
# --report-ranks (issue 15): on 4 ranks (one node), rank 2 sleeping 20 ms per step, each mode
# prints the right rows in the balance table and the start-up binding report and names the
# slowest rank; --stats-out still holds every rank; bad values exit 2 naming the flag.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for bad in bogus top:0 top:x top: nodes:2; do
  set +e; $BIN train --backend cpu --report-ranks "$bad" > $T/bad.log 2>&1; rc=$?; set -e
  [ $rc -eq 2 ] || fail "--report-ranks $bad: exit $rc, want 2"
  grep -q -- "--report-ranks" $T/bad.log || fail "--report-ranks $bad: message lacks the flag"
done
# (into a file: grep -q stops reading at the match, and with pipefail the writer's SIGPIPE on
# the rest of the 8 KB help would fail the check)
$BIN train --help > $T/help.txt
grep -q -- "--report-ranks" $T/help.txt || fail "--help lacks --report-ranks"

run() { # mode -> $T/<mode>.log, $T/<mode>.jsonl
  $MPIRUN -np 4 $BIN train --backend cpu --model-base 2 --model-depth 1 --image-size 16 --batch 2 \
    --steps 6 --report-every 3 --train-samples 64 --val-samples 0 --progress off --threads 1 \
    --test-slow-rank 2 --test-slow-ms 20 --report-ranks "$1" --stats-out "$T/$1.jsonl" > "$T/$1.log"
}
# rows of the last table (between its column heading and "mean"), binding lines
rows() { awk '/^# (rank|node) /{n=0; on=1; next} /^  mean /{on=0} on{n++} END{print n}' "$T/$1.log"; }
bind() { grep -c '^rank [0-9]*: host ' "$T/$1.log" || true; }
check() { # mode rows binding-lines
  run "$1"
  local r b; r=$(rows "$1"); b=$(bind "$1")
  [ "$r" = "$2" ] || { cat "$T/$1.log"; fail "$1: $r table rows, want $2"; }
  [ "$b" = "$3" ] || { cat "$T/$1.log"; fail "$1: $b binding lines, want $3"; }
  grep -q "straggler: rank 2 " "$T/$1.log" || { cat "$T/$1.log"; fail "$1: rank 2 not flagged"; }
  python3 - "$T/$1.jsonl" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, "want 2 reports, got %d" % len(lines)
for ln in lines:
    assert [r["rank"] for r in json.loads(ln)["ranks"]] == [0, 1, 2, 3], "JSONL lacks ranks"
PY
  echo "ok: $1: $r rows, $b binding lines, JSONL with every rank"
}
check all 4 4
check auto 4 4    # 4 <= 16 ranks: all
check top 4 4     # default N 8 > 4 ranks: every rank, slowest first
awk '/^# rank /{getline; print $1; exit}' $T/top.log | grep -qx '2\*' || fail "top: rank 2 is not first"
check top:2 3 2   # 2 rows + "... 2 more rank(s) not shown"
grep -q '^  \.\.\. 2 more rank(s) not shown' $T/top:2.log || fail "top:2: no '2 more' line"
awk '/^# rank /{getline; print $1; exit}' $T/top:2.log | grep -qx '2\*' || fail "top:2: rank 2 not first"
check nodes 1 1   # one node: one row, naming its worst rank
grep -q '^  n0 .* 4 rank(s) .* worst rank 2\* ' $T/nodes.log || fail "nodes: worst rank 2 not named"
grep -q '(+3 more rank(s) on this node)' $T/nodes.log || fail "nodes: binding line lacks the count"
echo "PASS: --report-ranks all, auto, top, top:2, nodes; bad values exit 2"
