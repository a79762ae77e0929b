#!/usr/bin/env bash
# scaling_validate.sh: checks `cogpu-bench scaling --project` against real multi-rank runs of
# the cpu backend (issue 15, section 4). Not a ctest: it times things.
#
#   bench/scaling_validate.sh BUILD [loopback|nodes] [EXTRA TRAIN FLAGS...]
#
# For P = 2 and 4 ranks, over loopback TCP (Open MPI forced onto --mca btl tcp,self) or over two
# emulated nodes (scripts/emunodes.sh; 2 nodes x 1 and 2 nodes x 2 ranks):
#  1. `cogpu-bench allreduce --comm mpi` on the same ranks, 64 KB..1 MB: a least-squares fit
#     time = a + b S gives the model's ring latency per step (a / 2(P-1)) and bus bandwidth
#     (2(P-1)/P / b), the machine's measured MPI figures;
#  2. `cogpu-bench scaling` (measured) on 1..P ranks with --trace-out: efficiency(P) and the
#     one-rank step; the P-rank run's rank-0 trace;
#  3. `cogpu-bench scaling --project` with those figures from (a) the P-rank trace (compute as
#     slowed by the other ranks on this 2-core machine; the model adds the all-reduce) and (b) a
#     one-rank trace (the pure projection, as for GPUs), efficiency relative to the measured
#     one-rank step, with and without overlap.
# Prints one line per P: measured vs predicted efficiency and the errors.
set -uo pipefail
BUILD=$1; MODE=${2:-loopback}; shift; [ $# -gt 0 ] && shift
BENCH=$BUILD/bench/cogpu-bench; BIN=$BUILD/cogpu-dist
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
D=$(mktemp -d); trap 'cg_nodes_down 2>/dev/null; rm -rf "$D"' EXIT
TRAIN="--backend cpu --model-base 16 --model-depth 3 --image-size 16 --batch 1 --threads 1
       --train-samples 256 --steps 300 --trace-steps 150:300 --bucket-mb 0.5 $*"
# Ranks yield when idle: with more ranks than this machine's 2 cores, busy-polling ranks starve
# each other (2 nodes x 2 ranks: 10-30 ms per all-reduce of any size without it).
MPIRUN="mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1"
launch() { # launch P: the mpirun prefix for P ranks
  if [ "$MODE" = nodes ]; then
    echo "$MPIRUN -np $1 --map-by ppr:$(($1 / 2)):node $NODEARGS"
  else
    echo "$MPIRUN -np $1 --mca btl tcp,self"
  fi
}
if [ "$MODE" = nodes ]; then
  source "$ROOT/scripts/emunodes.sh"
  cg_nodes_up 2 || { echo "no emulated nodes: $CG_NODES_WHY"; exit 77; }
  NODEARGS=$(cg_nodes_mpirun_args)
fi
$BIN train $TRAIN --val-samples 0 --progress off --trace-out "$D/one" > "$D/one.log" 2>&1 ||
  { cat "$D/one.log"; exit 1; }
printf "# %s, %s\n# %-3s %9s %9s %10s %10s %10s %10s %10s %8s %8s %8s\n" "$MODE" \
  "$(echo $TRAIN | xargs)" P "lat us" "busbw" measured "P-trace" "no-ovl" "1-trace" "no-ovl" \
  "err P" "err P0" "err 1"
for P in 2 4; do
  L=$(launch $P)
  $L "$BENCH" allreduce --comm mpi --min-bytes 64K --max-bytes 1M --factor 2 --iters 30 \
    --json-out "$D/ar$P.json" > "$D/ar$P.log" 2>&1 || { cat "$D/ar$P.log"; exit 1; }
  read -r LAT BW < <(python3 - "$D/ar$P.json" "$P" <<'EOF'
import json, sys
r = [x for x in json.load(open(sys.argv[1]))["results"] if x["comm"] == "mpi"]
p = int(sys.argv[2]); xs = [x["bytes"] for x in r]; ys = [x["time_us"] for x in r]
n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
a = my - b * mx
print("%.3f %.4f" % (max(a, 0) / (2 * (p - 1)), 2 * (p - 1) / p / b * 1e-3))
EOF
)
  $L "$BENCH" scaling $TRAIN --trace-out "$D/t$P" > "$D/m$P.log" 2>&1 || { cat "$D/m$P.log"; exit 1; }
  read -r STEP1 EFF < <(awk -v p=$P -v b=1 '/^  1 / { s = b / $2 * 1e3 } $1 == p && /%$/ { e = $4 }
                              END { sub("%", "", e); print s, e }' "$D/m$P.log")
  MODEL="--gpus $P --gpus-per-node 1 --algo ring --base-us 0 --net-us $LAT --net-gbs $BW
         --overlap-slowdown 0 --ref-step-ms $STEP1"
  pred() { "$BENCH" scaling --project --trace "$1" $MODEL | awk -v p=$P '$1 == p {
             e1 = $6; e0 = $9; sub("%", "", e1); sub("%", "", e0); print e1, e0 }'; }
  read -r PE PE0 < <(pred "$D/t$P.rank0.json")
  read -r OE OE0 < <(pred "$D/one.rank0.json")
  printf "  %-3d %9s %9s %9s%% %9s%% %9s%% %9s%% %9s%% %+8.1f %+8.1f %+8.1f\n" $P "$LAT" "$BW" \
    "$EFF" "$PE" "$PE0" "$OE" "$OE0" "$(echo "$PE - $EFF" | bc -l)" \
    "$(echo "$PE0 - $EFF" | bc -l)" "$(echo "$OE - $EFF" | bc -l)"
done
echo "# lat us, busbw GB/s: fitted to cogpu-bench allreduce; P-trace / 1-trace: predicted from"
echo "# the P-rank / one-rank trace, overlapped and not (no-ovl); err: predicted - measured, in"
echo "# points (P: P-trace overlapped, P0: P-trace no-ovl, 1: 1-trace overlapped)"
