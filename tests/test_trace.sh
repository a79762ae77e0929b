#!/usr/bin/env bash
# --trace-out: every rank writes PREFIX.rank<R>.json that loads as a Chrome trace and holds
# events on each stream track (h2d, compute, comm, d2h), the driving thread and a helper,
# only for the --trace-steps window, each step's compute under its own number; a host name JSON
# must escape leaves the timeline and the --stats-out records valid.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$MPIRUN -np 2 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 \
  --steps 30 --report-every 10 --train-samples 64 --val-samples 0 --progress off --threads 1 \
  --trace-out "$T/tl" --trace-steps 5:8 > "$T/log"
grep "timeline:" "$T/log"
python3 - "$T/tl" <<'PY'
import json, sys
for r in (0, 1):
    d = json.load(open("%s.rank%d.json" % (sys.argv[1], r)))
    ev = [e for e in d["traceEvents"] if e["ph"] == "X"]
    names = {e["args"]["name"]: e["tid"] for e in d["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks = {e["tid"] for e in ev}
    for want in ("stream h2d", "stream compute", "stream comm", "stream d2h", "driving thread",
                 "helper 0"):
        assert want in names and names[want] in tracks, "rank %d: no events on %s" % (r, want)
    steps = {e["args"]["step"] for e in ev}
    assert steps <= set(range(5, 9)), "rank %d: steps outside 5..8: %s" % (r, sorted(steps))
    assert all(e["dur"] >= 0 for e in ev)
    # each step's compute starts after the driving thread submitted it, and each step of the
    # window has exactly one (the fetched step's events used to carry the next step's number)
    sub = {e["args"]["step"]: e["ts"] for e in ev if e["name"] == "submit step"}
    run = [(e["args"]["step"], e["ts"]) for e in ev if e["name"] == "train step"]
    assert sorted(s for s, _ in run) == list(range(5, 9)), "rank %d: train steps %s" % (r, run)
    for s, ts in run:
        assert s in sub and ts >= sub[s], "rank %d: step %d computed before it was submitted" % (r, s)
    print("PASS rank %d: %d events on %d tracks, steps %s" % (r, len(ev), len(tracks), sorted(steps)))
PY
# a window outside the run is said at start-up (the file would hold no step)
$MPIRUN -np 1 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 \
  --steps 4 --train-samples 16 --val-samples 0 --progress off --threads 1 \
  --trace-out "$T/none" --trace-steps 10:12 > "$T/none.log" 2>&1
grep -q "trace-steps 10:12: this run trains steps 1 to 4, so the timeline will hold none" \
  "$T/none.log" && echo "PASS a window outside the run is warned about" ||
  { echo "FAIL no warning for a window outside the run"; cat "$T/none.log"; exit 1; }
# a window past the run's end: the file says which steps it holds
$MPIRUN -np 1 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 \
  --steps 4 --train-samples 16 --val-samples 0 --progress off --threads 1 \
  --trace-out "$T/part" --trace-steps 2:12 > "$T/part.log" 2>&1
python3 - "$T/part.rank0.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["otherData"]
assert (o["first_step"], o["last_step"]) == (2, 4), o
print("PASS a window past the run's end: the file holds steps 2 to 4 and says so")
PY
# a host name JSON must escape (Linux allows '"' and '\\'): the timeline and the --stats-out
# records still parse, and name it; in a UTS namespace of its own (root; skipped otherwise)
H='n"o\\de é/x'
if [ "$(id -u)" -eq 0 ] && unshare -u true 2> /dev/null; then
  unshare -u python3 -c 'import os, socket, sys; socket.sethostname(sys.argv[1].encode())
os.execv(sys.argv[2], sys.argv[2:])' "$H" $BIN train --backend cpu --model-base 4 --model-depth 2 \
    --image-size 32 --batch 4 --steps 4 --report-every 2 --train-samples 16 --val-samples 0 \
    --progress off --threads 1 --trace-out "$T/host" --trace-steps 1:4 \
    --stats-out "$T/host.jsonl" > "$T/host.log" 2>&1 || { cat "$T/host.log"; exit 1; }
  python3 - "$T" "$H" <<'PY'
import json, sys
t, h = sys.argv[1], sys.argv[2]
assert json.load(open(t + "/host.rank0.json"))["otherData"]["host"] == h
recs = [json.loads(l) for l in open(t + "/host.jsonl")]
assert recs and all(r["ranks"][0]["host"] == h for r in recs if "ranks" in r), recs
print("PASS a host name with a quote and a backslash: the timeline and %d stats records parse"
      % len(recs))
PY
  $BUILD/cogpu-monitor --once --plain "$T/host.jsonl" > /dev/null ||
    { echo "FAIL cogpu-monitor refuses the records"; exit 1; }
else
  echo "SKIP the host-name case: needs root and unshare -u"
fi
