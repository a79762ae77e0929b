#!/usr/bin/env bash
# scripts/device/check.sh: the GPU check, for a lent machine with one H100/H200 and 16 cores
# (Ubuntu 24.04 with nvcc 13.0, CMake, ninja, Open MPI, hwloc, NCCL and cuDNN installed; see
# ../shared/ARCHITECTURE.md). Writes everything under $OUT (default ./devout).
#
#   scripts/device/check.sh tests   configure + build, ctest -L gpu, compute-sanitizer on a short
#                                   run, an end-to-end smoke run                     (~4 min)
#   scripts/device/check.sh bench   cogpu-bench train (every precision, batch 32/64, graphs on
#                                   and off) + the per-layer profile + the PyTorch peer in the
#                                   same run + ratios; end-to-end synthetic and PNG training
#                                   with data wait; overlap, membw, cpu-tasks, allreduce,
#                                   the scaling projection                            (~4 min)
#   scripts/device/check.sh perf    tuning experiments: the cuDNN search with one and two timing
#                                   passes (CG_CONV_FIND), per-layer profiles, fp32 with TF32
#   scripts/device/check.sh quick   ctest -L gpu, then cogpu-bench train bf16/fp16 batch 32/64
#                                   with the cuDNN search logged (legacy vs graph API per
#                                   layer), the per-layer profile, the legacy-only selection
#                                   and the PyTorch peer (eager + compile bf16)     (~7 min)
#   scripts/device/check.sh short   the layer/conv/step/scaler tests, bench bf16/fp16 batch 32,
#                                   profile, PyTorch eager + compile                (~3 min)
#   scripts/device/check.sh all     tests and bench (the build is reused when present)
#
# Every section is time-boxed and runs even if an earlier one failed; the summary at the end
# lists each section's status. Never touches the GPU's clocks, power or modes.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/devout}
WHAT=${1:-all}
BUILD=${BUILD:-$ROOT/build-dev}
# Working files go to W; the log is written straight to OUT (it survives a timeout), the
# benchmark JSON is copied there as it appears, and a tarball of everything at the end (the
# device tool brings back at most 8 files).
W=${W:-/tmp/cg-devcheck}
mkdir -p "$OUT" "$W"
LOG=$OUT/check-$WHAT.log
exec > >(tee -a "$LOG") 2>&1
keep() { for f in "$@"; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done; }
T0=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1
SUMMARY=()
section() { echo; echo "=== $1   [t = $(( $(date +%s) - T0 )) s]"; }
record() { SUMMARY+=("$(printf '%-34s %s' "$1" "$2")"); }
# run_box NAME SECONDS CMD...: time-boxed, status recorded
run_box() {
  local name=$1 secs=$2; shift 2
  local s=$(date +%s)
  timeout "$secs" "$@"
  local rc=$?
  local took=$(( $(date +%s) - s ))
  if [ $rc -eq 0 ]; then record "$name" "ok (${took} s)";
  elif [ $rc -eq 124 ]; then record "$name" "TIMEOUT after ${secs} s";
  else record "$name" "FAILED rc=$rc (${took} s)"; fi
  return $rc
}

build() {
  section "machine"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
  nproc; nvcc --version | tail -1; mpirun --version | head -1
  section "configure + build ($BUILD)"
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      > "$W/configure.log" 2>&1 || { cat "$W/configure.log"; record build "CONFIGURE FAILED"; return 1; }
  fi
  grep -E "CUDA backend|OpenBLAS|hwloc" "$W/configure.log" 2>/dev/null
  run_box build 300 cmake --build "$BUILD" -j"$(nproc)" > "$W/build.log" 2>&1 \
    || { tail -40 "$W/build.log"; return 1; }
  echo "built: $(ls "$BUILD"/cogpu-dist "$BUILD"/bench/cogpu-bench)"
}

gpu_ctest() {
  section "ctest -L gpu"
  (cd "$BUILD" && run_box "ctest -L gpu" 300 ctest -L gpu --output-on-failure --timeout 240) \
    > "$W/ctest-gpu.log" 2>&1
  grep -E "Test +#|tests passed|FAIL|Worst|worst" "$W/ctest-gpu.log" | head -60
  # the record made inside the subshell is lost: recompute from the log
  if grep -q "100% tests passed" "$W/ctest-gpu.log"; then record "ctest -L gpu" "ok";
  else record "ctest -L gpu" "FAILED ($(grep -c 'Failed\|Timeout' "$W/ctest-gpu.log") failing)"; fi
}

tests() {
  gpu_ctest
  sanitizer
  smoke
}

sanitizer() {
  section "compute-sanitizer memcheck on a short training run"
  local small="--backend cuda --model-base 8 --model-depth 3 --image-size 64 --batch 4
               --train-samples 64 --val-samples 8 --progress off --report-every 2
               --algo-cache $W/algo-small.txt"
  "$BUILD/cogpu-dist" train $small --steps 2 --split cpu > /dev/null 2>&1 # fills the algo cache
  run_box "compute-sanitizer memcheck" 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$BUILD/cogpu-dist" train $small --steps 3 --cuda-graph off --split gpu \
    > "$W/sanitizer.log" 2>&1
  grep -E "ERROR SUMMARY|Invalid|error" "$W/sanitizer.log" | head -20
}

smoke() {
  section "end-to-end smoke: UNet-S bf16, 2 ranks on one GPU (MPI fallback), --split gpu, 60 steps"
  run_box "e2e 2 ranks, split gpu" 120 mpirun -np 2 --bind-to none "$BUILD/cogpu-dist" train --backend cuda \
    --batch 16 --steps 60 --report-every 30 --val-samples 64 --progress off --split gpu \
    > "$W/e2e-2rank.log" 2>&1
  grep -E "allreduce|balance|^  [0-9]|straggler|^step|final" "$W/e2e-2rank.log" | head -24
}

bench() {
  local B="$BUILD/bench/cogpu-bench" D="$BUILD/cogpu-dist"
  section "cogpu-bench train: UNet-S, 256x256, data on the GPU"
  run_box "bench train" 240 "$B" train --precision bf16,fp16,fp32 --batch-list 32,64 --cuda-graph on \
    --json-out "$W/bench-train.json" --algo-cache "$W/algo-unets.txt"
  keep bench-train.json
  run_box "bench train graphs off" 90 "$B" train --precision bf16 --batch-list 32 --cuda-graph off \
    --json-out "$W/bench-train-nograph.json" --algo-cache "$W/algo-unets.txt"

  section "per-layer profile (bf16, batch 32)"
  run_box "profile" 60 "$B" train --precision bf16 --batch-list 32 --profile --warmup 3 --steps 10 \
    --windows 1 --algo-cache "$W/algo-unets.txt"

  section "PyTorch peer, same GPU, same run"
  run_box "peer_torch" 160 python3 bench/peer_torch.py --batch-list 32 \
    --variants eager_bf16,compile_bf16,eager_fp16,eager_fp32 --time-budget 130 \
    --json-out "$W/peer.json"
  python3 bench/compare.py "$W/bench-train.json" "$W/peer.json" --json-out "$W/compare.json"
  keep peer.json compare.json

  section "end to end: synthetic data, CPU helpers, auto split (compute-only img/s above)"
  run_box "e2e synthetic" 120 "$D" train --backend cuda --batch 32 --steps 400 --train-samples 12800 \
    --val-samples 0 --report-every 100 --progress off --algo-cache "$W/algo-unets.txt" \
    --stats-out "$W/stats.jsonl" --trace-out "$W/trace" --trace-steps 200:203 \
    > "$W/e2e-synthetic.log" 2>&1
  grep -E "^step|^split|^  0 |final|timeline" "$W/e2e-synthetic.log"
  "$BUILD/cogpu-monitor" --once "$W/stats.jsonl"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); ev=[e for e in d['traceEvents'] if e['ph']=='X']; import collections; c=collections.Counter(e['tid'] for e in ev); print('trace rank 0:', len(ev), 'events per track', dict(sorted(c.items())))" "$W/trace.rank0.json"
  section "end to end: PNG data (decoded by the helpers)"
  "$B" make-pngs --out /tmp/cg-pngs --count 2048 --image-size 256
  run_box "e2e png" 120 "$D" train --backend cuda --data /tmp/cg-pngs --val-fraction 0.05 --batch 32 --steps 400 \
    --report-every 100 --progress off --algo-cache "$W/algo-unets.txt" --checkpoint-dir "$W/ck" \
    --keep 1 > "$W/e2e-png.log" 2>&1
  grep -E "^step|^split|^  0 |final" "$W/e2e-png.log"
  section "predict on the GPU from that checkpoint (64 held-out PNGs with masks)"
  "$B" make-pngs --out /tmp/cg-pred --count 64 --image-size 256 --seed 77 > /dev/null
  run_box "predict" 60 "$D" predict --checkpoint "$(ls "$W"/ck/*.cgck | tail -1)" --input /tmp/cg-pred/images \
    --masks /tmp/cg-pred/masks --output "$W/pred" --batch 16

  section "overlap: serial vs cooperative (synthetic, UNet-S bf16 batch 32)"
  run_box "bench overlap" 120 "$B" overlap --batch 32 --steps 160 --algo-cache "$W/algo-unets.txt" \
    --json-out "$W/overlap.json" > "$W/overlap.log" 2>&1
  grep -E "^# (cogpu|mode)|^  (serial|cooperative)|^JSON" "$W/overlap.log"
  keep overlap.json

  section "membw"
  run_box "bench membw" 60 "$B" membw
  section "cpu-tasks (synthetic 256x256, PNG 256x256)"
  run_box "bench cpu-tasks synthetic" 60 "$B" cpu-tasks --image-size 256
  run_box "bench cpu-tasks png" 60 "$B" cpu-tasks --image-size 256 --data /tmp/cg-pngs
  section "allreduce: NCCL and MPI on one rank, MPI on two"
  run_box "bench allreduce np1" 60 mpirun -np 1 "$B" allreduce --comm both --max-bytes 256M --iters 10
  run_box "bench allreduce np2 mpi" 60 mpirun -np 2 --bind-to none "$B" allreduce --comm mpi --max-bytes 64M --iters 5
  section "scaling projection from the measured 1-GPU step"
  run_box "bench scaling --project" 90 "$B" scaling --project --batch 32 --steps 60 \
    --algo-cache "$W/algo-unets.txt"
}

# Tuning experiments: the head kernels' tests, then the cuDNN search with one and with two
# timing passes (CG_CONV_FIND), fresh each, with the per-layer profile; fp32 with TF32.
perf() {
  local B="$BUILD/bench/cogpu-bench"
  section "head and step tests"
  (cd "$BUILD" && ctest -R "test_gpu_conv|test_gpu_step|test_gpu_layers" --output-on-failure) > "$W/ctest-perf.log" 2>&1
  grep -E "Test +#|tests passed|FAIL" "$W/ctest-perf.log"
  if grep -q "100% tests passed" "$W/ctest-perf.log"; then record "gpu conv/step tests" ok; else record "gpu conv/step tests" FAILED; fi
  for p in 1 2; do
    section "cuDNN search with $p timing pass(es): bf16 batch 32 and 64, fp16 batch 32"
    run_box "bench find=$p" 120 env CG_CONV_FIND=$p "$B" train --precision bf16,fp16 --batch-list 32,64 \
      --algo-cache "$W/algo-find$p.txt" --json-out "$W/bench-find$p.json"
    run_box "profile find=$p" 60 env CG_CONV_FIND=$p "$B" train --precision bf16 --batch-list 32 --profile \
      --warmup 3 --steps 10 --windows 1 --algo-cache "$W/algo-find$p.txt"
  done
  keep bench-find1.json bench-find2.json
  section "fp32 with TF32 (what PyTorch's eager fp32 uses for convolutions)"
  run_box "bench fp32 tf32" 90 "$B" train --precision fp32 --batch-list 32 --tf32 on
}

# Issue 3 in one short run: the GPU tests, then the bench with the cuDNN search logged (legacy vs
# graph API, fusion, per layer), the profile, the legacy-only selection and PyTorch, same run.
quick() {
  local B="$BUILD/bench/cogpu-bench"
  gpu_ctest
  grep -E "^== |fused|graph eng|FAIL" "$W/ctest-gpu.log" | head -24
  sanitizer
  section "cogpu-bench train, legacy + graph API search (CG_CONV_VERBOSE=1)"
  run_box "bench train" 200 env CG_CONV_VERBOSE=1 "$B" train --precision bf16,fp16 --batch-list 32,64 \
    --windows 3 --json-out "$W/bench-train.json" --algo-cache "$W/algo-unets.txt" 2> "$W/search.log"
  grep -cE "graph eng" "$W/search.log" | sed 's/^/operations on graph-API engines: /'
  grep -E "n32 256x256|n32 128x128|restored" "$W/search.log" | head -12
  keep bench-train.json search.log
  run_box "bench fp32" 120 "$B" train --precision fp32 --batch-list 32 --windows 2 \
    --json-out "$W/bench-fp32.json" --algo-cache "$W/algo-unets.txt"
  keep bench-fp32.json
  section "per-layer profile (bf16, batch 32)"
  run_box "profile" 60 "$B" train --precision bf16 --batch-list 32 --profile --warmup 3 --steps 10 \
    --windows 1 --algo-cache "$W/algo-unets.txt"
  section "legacy cuDNN API only (the previous selection), bf16 batch 32"
  run_box "bench legacy" 90 env CG_CONV_API=legacy "$B" train --precision bf16 --batch-list 32 \
    --windows 2 --algo-cache "$W/algo-legacy.txt"
  section "PyTorch peer, same GPU, same run"
  run_box "peer_torch" 150 python3 bench/peer_torch.py --batch-list 32 --variants eager_bf16,compile_bf16 \
    --time-budget 120 --json-out "$W/peer.json"
  python3 bench/compare.py "$W/bench-train.json" "$W/peer.json" --json-out "$W/compare.json"
  keep peer.json compare.json
}

# The shortest complete issue-3 check (~3 min): the layer, conv, step and scaler tests, the
# bench (bf16/fp16 batch 32), the profile and the PyTorch peer in the same run.
short() {
  local B="$BUILD/bench/cogpu-bench"
  section "ctest: layers, conv, step, scaler"
  (cd "$BUILD" && ctest -R "test_gpu_(layers|conv|step|scaler)" --output-on-failure --timeout 120) \
    > "$W/ctest-short.log" 2>&1
  grep -E "Test +#|tests passed|FAIL|Worst|worst" "$W/ctest-short.log" | head -30
  if grep -q "100% tests passed" "$W/ctest-short.log"; then record "gpu tests (4)" ok; else record "gpu tests (4)" FAILED; fi
  section "cogpu-bench train, bf16 and fp16, batch 32"
  run_box "bench train" 100 env CG_CONV_VERBOSE=1 "$B" train --precision bf16,fp16 --batch-list 32 \
    --windows 3 --json-out "$W/bench-train.json" --algo-cache "$W/algo-unets.txt" 2> "$W/search.log"
  keep bench-train.json search.log
  run_box "profile" 40 "$B" train --precision bf16 --batch-list 32 --profile --warmup 3 --steps 10 \
    --windows 1 --algo-cache "$W/algo-unets.txt"
  section "PyTorch peer, same GPU, same run"
  run_box "peer_torch" 100 python3 bench/peer_torch.py --batch-list 32 --variants eager_bf16,compile_bf16 \
    --time-budget 80 --json-out "$W/peer.json"
  python3 bench/compare.py "$W/bench-train.json" "$W/peer.json" --json-out "$W/compare.json"
  keep peer.json compare.json ctest-short.log
}

# The timeline on the GPU: 1 rank and 2 ranks (MPI fallback) with --trace-out; every rank's file
# must hold events on the h2d, compute, d2h (and with 2 ranks comm) tracks and the helpers.
trace() {
  local D="$BUILD/cogpu-dist"
  section "timeline on the GPU"
  run_box "trace 1 rank" 60 "$D" train --backend cuda --batch 32 --steps 40 --val-samples 0 \
    --progress off --report-every 20 --trace-out "$W/t1" --trace-steps 30:32 > "$W/trace1.log" 2>&1
  run_box "trace 2 ranks" 90 mpirun -np 2 --bind-to none "$D" train --backend cuda --batch 16 \
    --steps 40 --val-samples 0 --progress off --report-every 20 --trace-out "$W/t2" \
    --trace-steps 30:32 > "$W/trace2.log" 2>&1
  python3 - "$W" <<'PY'
import collections, json, sys
w = sys.argv[1]
for prefix, ranks, need in (("t1", 1, [1, 2, 4]), ("t2", 2, [1, 2, 3, 4])):
    for r in range(ranks):
        d = json.load(open("%s/%s.rank%d.json" % (w, prefix, r)))
        ev = [e for e in d["traceEvents"] if e["ph"] == "X"]
        c = collections.Counter(e["tid"] for e in ev)
        missing = [t for t in need if not c[t]]
        print("%s rank %d: %d events, per track %s%s" % (prefix, r, len(ev), dict(sorted(c.items())),
              "  MISSING %s" % missing if missing else "  ok"))
PY
}

case "$WHAT" in
  trace) build && trace ;;
  perf) build && perf ;;
  tests) build && tests ;;
  quick) build && quick ;;
  short) build && short ;;
  bench) build && bench ;;
  all) build && { tests; bench; } ;;
  *) echo "usage: $0 tests|quick|short|bench|perf|trace|all"; exit 2 ;;
esac
section "summary ($WHAT, $(( $(date +%s) - T0 )) s)"
printf '%s\n' "${SUMMARY[@]}"
rm -rf "$W/ck" "$W/pred"
tar czf "$OUT/devcheck-$WHAT.tar.gz" -C "$W" . 2>/dev/null
