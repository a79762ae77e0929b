#!/usr/bin/env bash
# cogpu-bench scaling --project (issue 15, section 4): the projection is driven by a measured
# trace. A one-rank cpu run with --trace-out records "bucket J ready N", backward and adamw on
# the compute track; --project --trace FILE reads them back and prints a table labelled as a
# projection with its assumptions. Checked against the model's own arithmetic: with ring only,
# no latency, 1 GB/s and 2 GPUs an all-reduce of S MB takes S ms, so the no-overlap step is T
# plus the sum of the bucket sizes, the exposed tail is at least the last bucket's time, and 1
# GPU gives 100%. Also: the H200 kernel-time stand-in, and a trace without bucket events.
set -uo pipefail
BIN=$1; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
$BIN train --backend cpu --model-base 8 --model-depth 3 --image-size 32 --batch 2 --threads 1 \
  --train-samples 32 --val-samples 0 --steps 12 --trace-steps 2:12 --bucket-mb 0.1 \
  --last-bucket-mb 0.05 --progress off --trace-out "$T/t" > "$T/train.log" 2>&1 ||
  { echo "FAIL training run"; cat "$T/train.log"; exit 1; }
n=$(grep -c '"name": "bucket [0-9]* ready [0-9]*"' "$T/t.rank0.json")
[ "$n" -ge 11 ] || { echo "FAIL trace has $n bucket-ready events"; fail=1; }
for ev in backward adamw forward; do
  grep -q "\"name\": \"$ev\"" "$T/t.rank0.json" || { echo "FAIL no $ev event"; fail=1; }
done
"$BENCH" scaling --project --trace "$T/t.rank0.json" --gpus 1,2 --gpus-per-node 1 --algo ring \
  --base-us 0 --net-us 0 --nvlink-us 0 --net-gbs 1 --overlap-slowdown 0 > "$T/p.txt" 2>&1 ||
  { echo "FAIL --project --trace: exit $?"; cat "$T/p.txt"; fail=1; }
grep -q "PROJECTION" "$T/p.txt" && grep -q "^# assumptions:" "$T/p.txt" ||
  { echo "FAIL no projection label or assumptions"; cat "$T/p.txt"; fail=1; }
# T, the bucket sizes (MB), and the rows for 1 and 2 GPUs
awk '
  /one-rank step T =/ { for (i = 1; i <= NF; i++) if ($i == "=") t = $(i + 1) }
  /^# buckets/ { for (i = 10; i <= NF; i++) { split($i, a, "[:/]"); sum += a[3]; last = a[3]; nb++ } }
  /^  1 / { e1 = $6 } /^  2 / { s = $2; tail = $4; s0 = $7 }
  END {
    bad = 0
    if (nb < 2) { print "FAIL fewer than 2 buckets"; bad = 1 }
    if (e1 != "100.0%") { print "FAIL 1 GPU: efficiency " e1 ", want 100.0%"; bad = 1 }
    tol = 0.0005 * (nb + 2) + 1e-6 # the printed values have 3 decimals
    if (s0 - t - sum > tol || t + sum - s0 > tol) {
      printf "FAIL no-overlap step %s ms, want T %s + %s ms\n", s0, t, sum; bad = 1 }
    if (tail < last - 0.001) { printf "FAIL tail %s ms < last bucket %s ms\n", tail, last; bad = 1 }
    if (s < t + tail - 0.002) { printf "FAIL step %s < T %s + tail %s\n", s, t, tail; bad = 1 }
    if (!bad) printf "PASS trace projection: %d buckets, %.3f MB; no-overlap %s ms = T + sum; tail %s ms\n", nb, sum, s0, tail
    exit bad
  }' "$T/p.txt" || { cat "$T/p.txt"; fail=1; }
# The GPU stand-in: committed H200 kernel times (bench/issue16-kernels-bf16-b32.json).
K=$(dirname "$0")/../bench/issue16-kernels-bf16-b32.json
"$BENCH" scaling --project --kernels-json "$K" --batch 32 > "$T/k.txt" 2>&1 &&
  grep -qE '^  1024 +[0-9.]+ ms +[0-9.]+ ms +[0-9.]+%' "$T/k.txt" &&
  echo "PASS kernel-time stand-in: $(grep -E '^  1024 ' "$T/k.txt" | xargs)" ||
  { echo "FAIL --kernels-json"; cat "$T/k.txt"; fail=1; }
# The JSON names the batch only when it is known: --batch given, or measured here.
"$BENCH" scaling --project --kernels-json "$K" > "$T/k2.txt" 2>&1 &&
  grep -q '^JSON {"bench": "scaling", "batch": null' "$T/k2.txt" &&
  grep -q '^JSON {"bench": "scaling", "batch": 32,' "$T/k.txt" &&
  echo "PASS the projection's batch: null from a file unless --batch is given" ||
  { echo "FAIL the projection's batch"; cat "$T/k2.txt"; fail=1; }
# A trace without the compute-track events: exit 2, naming the file.
echo '{"traceEvents": []}' > "$T/empty.json"
"$BENCH" scaling --project --trace "$T/empty.json" > "$T/e.txt" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "empty.json: no complete training step" "$T/e.txt" &&
  echo "PASS a trace without bucket events: exit 2" ||
  { echo "FAIL empty trace: exit $rc"; cat "$T/e.txt"; fail=1; }
[ $fail -eq 0 ] && echo "test_scaling_model: all passed"
exit $fail
