#!/usr/bin/env bash
# bench/run_cpu.sh: the CPU benchmark of the foundation issue — cogpu-bench train on the cpu
# backend (UNet in 5, base 8, depth 3, 64x64, batch 8; 1 and 2 threads) and the same model in
# PyTorch on the CPU (Debian's python3-torch) in the same run, then the ratios.
# usage: bench/run_cpu.sh [BUILD_DIR]   (results under BUILD_DIR/bench-cpu-*.json)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
PY=/usr/bin/python3
$PY -c "import torch" 2>/dev/null || { echo "needs Debian's python3-torch (apt-get install python3-torch)"; exit 2; }
"$BUILD/bench/cogpu-bench" train --backend cpu --threads-list 1,2 --windows 5 --steps 20 \
  --json-out "$BUILD/bench-cpu-ours.json"
$PY "$ROOT/bench/peer_torch.py" --cpu --threads 1,2 --json-out "$BUILD/bench-cpu-peer.json"
$PY "$ROOT/bench/compare.py" "$BUILD/bench-cpu-ours.json" "$BUILD/bench-cpu-peer.json"
