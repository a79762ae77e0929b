#!/usr/bin/env bash
# scripts/quickstart.sh: installs what is missing, builds, and trains the UNet on 2 MPI ranks on
# the built-in synthetic data (about a minute on 2 cores), showing progress and final metrics.
# It installs only what the trainer needs (PACKAGES_MAIN in common.sh; Slurm, munge, Prometheus
# and the sanitizer toolchain are scripts/test.sh's) and builds the three programs (the tests
# are scripts/test.sh's), so `cmake --install build` works right after it.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cg_install_packages $PACKAGES_MAIN
cg_build cogpu-dist cogpu-monitor cogpu-bench
echo "== training: mpirun -np 2 cogpu-dist train (synthetic data, 64x64, small UNet)"
start=$(date +%s)
mpirun -np 2 --bind-to none "$BUILD/cogpu-dist" train \
  --model-base 8 --model-depth 3 --image-size 64 --batch 8 --lr 3e-3 \
  --train-samples 4096 --val-samples 512 --epochs 5 --val-every 128 --report-every 256 \
  --metrics-out "$BUILD/quickstart-metrics.json" --history-out "$BUILD/quickstart-history.jsonl" "$@"
echo "== done in $(( $(date +%s) - start )) s; metrics in $BUILD/quickstart-metrics.json:"
cat "$BUILD/quickstart-metrics.json"
echo "== learning curves: one record per validation in $BUILD/quickstart-history.jsonl; draw them with"
echo "   /usr/bin/python3 scripts/plot_history.py $BUILD/quickstart-history.jsonl curves.png   # needs python3-matplotlib"
