#!/usr/bin/env bash
# Balance report: on 3 ranks, rank 1 sleeping 20 ms per step is flagged as the straggler in the
# printed table and in --stats-out; every JSON line parses and holds every rank.
# COGPU_STATS_TIMING in one rank's environment alone (a launcher that passes it to none of the
# other nodes): rank 0's decides for every rank, so the job ends (it used to hang in a barrier
# only some ranks made) with the timing lines when rank 0 has it, without them otherwise.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$MPIRUN -np 3 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 \
  --steps 30 --report-every 10 --train-samples 120 --val-samples 0 --progress off --threads 1 \
  --test-slow-rank 1 --test-slow-ms 20 --stats-out $T/stats.jsonl > $T/out.log
cat $T/out.log
grep -q "straggler: rank 1 " $T/out.log || { echo "FAIL: rank 1 not flagged in the table"; exit 1; }
python3 - $T/stats.jsonl <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 3, "want 3 reports, got %d" % len(lines)
keys = ("rank", "host", "gpu", "step_ms", "gpu_busy", "data_wait", "comm_exposed", "cpu_busy",
        "cpu_share", "img_per_s", "h2d_mb_s", "d2h_mb_s", "own_ms")
for ln in lines:
    rec = json.loads(ln)
    assert [r["rank"] for r in rec["ranks"]] == [0, 1, 2], rec["ranks"]
    for r in rec["ranks"]:
        for k in keys:
            assert k in r, "rank record lacks " + k
        assert r["gpu_busy"] is None, "gpu_busy must be absent on the cpu backend"
    for k in ("mean", "max", "imbalance", "straggler", "img_per_s"):
        assert k in rec["cluster"], "cluster lacks " + k
    assert rec["cluster"]["straggler"] == 1, "straggler %r, want 1" % rec["cluster"]["straggler"]
times = [json.loads(ln)["time"] for ln in lines]
assert times == sorted(times) and any(t != int(t) for t in times), \
    "record times %r: want rising, to the millisecond" % times
print("PASS: %d JSON reports, every rank present, rank 1 flagged in each" % len(lines))
PY
A="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 --steps 6
   --report-every 2 --train-samples 16 --val-samples 0 --progress off --threads 1 --timeout-s 5"
for r in 0 1; do
  E0=; E1=; [ $r = 0 ] && E0="COGPU_STATS_TIMING=1" || E1="COGPU_STATS_TIMING=1"
  rc=0; timeout 60 $MPIRUN -np 1 env $E0 $BIN $A : -np 1 env $E1 $BIN $A > $T/t$r.log 2>&1 || rc=$?
  [ $rc -eq 0 ] ||
    { cat $T/t$r.log; echo "FAIL: COGPU_STATS_TIMING on rank $r alone: exit $rc"; exit 1; }
  n=$(grep -c "^# stats timing: gather" $T/t$r.log || true)
  [ $n -eq $(( r ? 0 : 3 )) ] ||
    { cat $T/t$r.log; echo "FAIL: COGPU_STATS_TIMING on rank $r alone: $n timing lines"; exit 1; }
done
echo "PASS: COGPU_STATS_TIMING on one rank alone: rank 0's setting is the job's"
