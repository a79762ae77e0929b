#!/usr/bin/env bash
# make_seeds.sh BIN SEEDGEN OUT BASE DEPTH SIZE MPIRUN: the fuzzers' seed inputs, made by the
# program itself so they follow its formats as they change (a checked-in seed would go stale):
#   png/      the PNG writer's layouts (fuzz_seedgen) and the ones only other encoders make
#             (png_variants.py: 1/2/4-bit gray, 16-bit alpha, tRNS, Adam7, split IDAT)
#   cgds/     shards written by `cogpu-dist pack` from PNG pairs
#   ckpt/     the checkpoints of a 2-step CPU run (model BASE/DEPTH/SIZE: fuzz_ckpt.c resumes
#             with that shape), a version-1 copy of one (no run id), and a 1-step run's with
#             --ema-decay (format 5: the average as params, the training weights after v), and
#             one whose settings hold early stopping's and the plateau's states
#   monitor/  that run's --stats-out file, each of its lines alone, and tests/data's 4-rank one
#   import/   that run's last checkpoint exported as safetensors, and a 3-class variant of it
#   list/     lists of IMAGE MASK lines naming the pairs fuzz_list.c makes beside them
#   gif/, tiff/, bmp/  the files ../pillow_fixtures.py makes (none without Pillow), and
#             TIFF layouts Pillow does not write (fuzz_seedgen: tiles, planes, MinIsWhite, ...)
#   cli/      argument vectors (NUL-separated): the run's own command line, every option of
#             `train --help` and `info --help` with its default, and a few special forms
# OUT is emptied first. BIN is the sanitizer build's cogpu-dist: the 2-step run is also a
# training run under ASan+UBSan. Its MPI commands run under MPIRUN -np 1: an MPI singleton
# forks a helper that leaves an OpenMP runtime (libomp) registration file in /dev/shm.
set -euo pipefail
BIN=$1 SEEDGEN=$2 OUT=$3 BASE=$4 DEPTH=$5 SIZE=$6 MPIRUN=$7
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"/{cgds,ckpt,png,jpeg,gif,tiff,bmp,monitor,cli,import,list}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# Open MPI keeps allocations past exit (not our leaks: tests/fuzz/sanitize.cmake).
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
run() { "$@" > "$T/log" 2>&1 || { echo "make_seeds: failed: $*"; cat "$T/log"; exit 1; }; }
mpi1() { "$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN" "$@"; }

# ---- png
run "$SEEDGEN" png "$OUT/png"
run python3 "$HERE/png_variants.py" "$OUT/png"

# ---- jpeg: the project's writer, plus progressive / restart / gray / arithmetic files when
# libjpeg-turbo-progs is installed
run "$SEEDGEN" jpeg "$OUT/jpeg"
if command -v cjpeg > /dev/null; then
  for o in "-progressive" "-restart 1" "-grayscale" "-arithmetic" "-sample 1x1"; do
    djpeg -ppm "$OUT/jpeg/q75-33x17.jpg" | cjpeg $o > "$OUT/jpeg/cjpeg${o// /}.jpg"
  done
fi

# ---- gif, tiff, bmp: every variant Pillow writes (../pillow_fixtures.py: depths, palettes,
# interlacing, transparency, compressions, CMYK; BMP's RLE, bit fields and headers made by
# hand there), where Debian's Pillow is installed
if /usr/bin/python3 -c 'import PIL, numpy' 2> /dev/null; then
  run /usr/bin/python3 "$HERE/../pillow_fixtures.py" "$T/pillow"
  cp "$T"/pillow/*.gif "$OUT/gif/"
  cp "$T"/pillow/*.tif "$OUT/tiff/"
  cp "$T"/pillow/*.bmp "$OUT/bmp/"
fi
run "$SEEDGEN" tiff "$OUT/tiff" # the layouts Pillow does not write

# ---- cgds
run "$SEEDGEN" pngdir "$T/three" 3
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" --out "$OUT/cgds/three-8x8.cgds" \
  --image-size 8
run "$SEEDGEN" pngdir "$T/one" 1
run "$BIN" pack --images "$T/one/images" --masks "$T/one/masks" --out "$OUT/cgds/one-4x4.cgds" \
  --image-size 4
# encoded records (version 2): JPEG and PNG parts decoded at load
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" --out "$OUT/cgds/three-8x8-jpeg.cgds" \
  --image-size 8 --encoding jpeg --quality 50
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" --out "$OUT/cgds/three-8x8-png.cgds" \
  --image-size 8 --encoding png
# version 5: whole images (records of their own sizes, shorter side 4)
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" \
  --out "$OUT/cgds/three-4-whole.cgds" --image-size 4 --store whole
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" \
  --out "$OUT/cgds/three-4-whole-png.cgds" --image-size 4 --store whole --encoding png
# version 4: the labels block keeps pack's --label-map
printf '0 0\n* 1\n' > "$T/binary.map"
run "$BIN" pack --images "$T/three/images" --masks "$T/three/masks" --out "$OUT/cgds/three-8x8-map.cgds" \
  --image-size 8 --label-map "$T/binary.map"

# ---- ckpt and monitor: one short run
TRAIN=(train --backend cpu --model-base "$BASE" --model-depth "$DEPTH" --image-size "$SIZE"
  --batch 2 --steps 2 --train-samples 8 --val-samples 0 --threads 1 --cpu-workers 1
  --progress off --report-every 1 --checkpoint-dir "$T/ck" --checkpoint-every 1 --keep 2
  --stats-out "$T/stats.jsonl" --timeout-s 0 --seed 7)
run mpi1 "${TRAIN[@]}"
cp "$T"/ck/ckpt-*.cgck "$OUT/ckpt/"
# with --ema-decay: the average as params, the training weights after v (format 5)
run mpi1 "${TRAIN[@]}" --checkpoint-dir "$T/ck-ema" --ema-decay 0.9 --steps 1 # the last wins
cp "$T"/ck-ema/ckpt-0000000001.cgck "$OUT/ckpt/ema-1.cgck"
# with the schedules' states in its settings (early stopping's, --lr-schedule plateau's)
run mpi1 "${TRAIN[@]}" --checkpoint-dir "$T/ck-pl" --val-samples 4 --val-every 1 \
  --lr-schedule plateau --early-stop-patience 5 --stats-out "$T/stats-pl.jsonl" # not the seeds'
cp "$T"/ck-pl/ckpt-0000000002.cgck "$OUT/ckpt/plateau-2.cgck"
python3 - "$OUT/ckpt" <<'EOF'
# A version-1 checkpoint (before run ids): version 1, bytes 172..180 zero, header CRC redone.
import glob, struct, sys, zlib
src = sorted(glob.glob(sys.argv[1] + "/ckpt-*.cgck"))[-1]
b = bytearray(open(src, "rb").read())
b[8:12] = struct.pack("<I", 1)
b[172:180] = bytes(8)
b[252:256] = struct.pack("<I", zlib.crc32(bytes(b[:252])))
open(sys.argv[1] + "/version1.cgck", "wb").write(bytes(b))
EOF
# ---- import: that run's weights exported, and the same file made a 3-class model with a
# palette and an ignore label (the head's tensors resized, the offsets recomputed)
run "$BIN" export --checkpoint "$T/ck" --out "$OUT/import/binary.safetensors"
python3 - "$OUT/import/binary.safetensors" "$OUT/import/k3-palette.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n])
data = b[8 + n:]
meta = hdr.pop("__metadata__")
meta.update(nclass="3", palette="ff000000ff000000ff", ignore_index="255")
out, blob = {"__metadata__": meta}, b""
for name, e in hdr.items():  # header order is data order
    lo, hi = e["data_offsets"]
    raw = data[lo:hi]
    if name.startswith("head."):
        e["shape"][0] = 3
        raw = raw * 3
    e["data_offsets"] = [len(blob), len(blob) + len(raw)]
    out[name] = e
    blob += raw
h = json.dumps(out, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + blob)
EOF
cp "$T/stats.jsonl" "$OUT/monitor/run.jsonl"
i=0
while IFS= read -r line; do
  printf '%s\n' "$line" > "$OUT/monitor/line$i.json"
  i=$((i + 1))
done < "$T/stats.jsonl"
cp "$HERE/../data/stats-4rank.jsonl" "$OUT/monitor/"
# records carrying the latest validation, binary and multi-class (issue 14)
tail -n 1 "$T/stats.jsonl" | sed 's/"ranks": \[/"val": {"step": 2, "loss": 0.5, "iou": 0.7, "dice": 0.8, "acc": 0.9}, "ranks": [/' \
  > "$OUT/monitor/val.json"
tail -n 1 "$T/stats.jsonl" | sed 's/"ranks": \[/"val": {"step": 2, "loss": 0.5, "miou": 0.7, "mdice": 0.8, "acc": 0.9}, "ranks": [/' \
  > "$OUT/monitor/valk.json"

# ---- cli
n=0
seed() { printf '%s\0' "$@" > "$OUT/cli/argv$n"; n=$((n + 1)); }
seed "${TRAIN[@]}"
for cmd in train info; do
  # "  --name METAVAR   help [default]": the default when there is one, else a value that
  # fits the metavar; a flag (no metavar) alone.
  mpi1 "$cmd" --help 2> /dev/null | grep -E '^  --[a-z0-9-]+' | while IFS= read -r l; do
    name=$(awk '{print $1}' <<< "$l")
    meta=$(awk '{print $2}' <<< "$l")
    def=$(sed -nE 's/.*\[([^]]*)\]$/\1/p' <<< "$l")
    if ! grep -qE '^(\[?[A-Z:|]+\]?|on\|off)$' <<< "$meta"; then
      printf '%s\0' "$cmd" "$name" > "$OUT/cli/$cmd$name"
      continue
    fi
    case $meta in
      FILE|PREFIX) val=$T/out ;;
      DIR|*DIR*) val=$T/ck ;;
      *) val=${def:-1} ;;
    esac
    printf '%s\0' "$cmd" "$name" "$val" > "$OUT/cli/$cmd$name"
  done
done
seed --help
seed --version
seed train --help
seed info --model --model-base 8 --model-depth 3 --image-size 64
seed train --checkpoint-dir "$T/ck" --resume
seed train --resume="$T/ck" --lr=0.5 --trace-steps 3:5 --crop=off
seed train --seed 18446744073709551615 --val-fraction 0.9 --eps 1e-300
seed train --backend cpu --precision bf16
seed frobnicate
# cogpu-bench sub-commands (fuzz_cli parses argv[1..] as the benchmark argv[1] names)
seed train --batch-list 8,16 --precision bf16,fp32 --cuda-graph both --kernels-json "$T/k" --tf32=off
seed allreduce --comm mpi --min-bytes 64K --max-bytes 1G --factor 4 --iters 3
seed scaling --project --step-ms 7.5 --nvlink-gbs 300 --gpus-per-node 4 --batch 16
seed overlap --json-out "$T/o.json" --steps 10 --cpu-workers 2
seed make-pngs --out "$T/p" --count 3 --image-size 64 --seed 5
seed cpu-tasks --tasks 0 --max-image-pixels 100 --data synthetic
seed membw --no-gpu --reps 3 --help
# predict's own parser (fuzz_cli runs it when argv[1] is "predict")
seed predict --checkpoint "$T/ck" --input "$T/p" --output "$T/o" --resize fit --scales 0.75,1,1.25 \
  --flip --batch 7 --tile-overlap 0.25 --save-probs --max-image-pixels 1000 --label-map none
seed predict --checkpoint "$T/ck" --input "$T/p" --output "$T/o" --resize 512 --scales 1e0
seed predict --help

# ---- list: fuzz_list.c's files (images/a.png, images/b.jpg, masks/{a,b,c}.png)
printf 'images/a.png masks/a.png\nimages/b.jpg masks/b.png\n' > "$OUT/list/two.txt"
printf '# pairs\r\n\r\nimages/a.png\tmasks/a.png\r\n  images/b.jpg   masks/c.png\n' \
  > "$OUT/list/crlf-tab-bad.txt"
printf 'images/a.png masks/a.png\nimages/a.png masks/b.png\n' > "$OUT/list/dup.txt"
printf 'images/a.png\n' > "$OUT/list/one-field.txt"
printf '# labelIds\n7 0\n8 1\n11 2\n* 255\n' > "$OUT/list/label-map.txt"
echo "make_seeds: $(find "$OUT" -type f | wc -l) seeds in $OUT"
