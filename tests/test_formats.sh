#!/usr/bin/env bash
# GIF, TIFF and BMP data sets end to end: the same pixels as TIFF images with GIF masks (Carvana's
# NAME_mask.gif through a list, DRIVE's TIFF images beside GIF masks in a directory) train the
# very parameters of the PNG originals, binary and 4-class (GIF palette indices, 16-bit TIFF
# class ids); pack writes the same shard from them, and from 16-bit gray TIFFs the shard of
# 16-bit PNGs of the same values (both scaled to round(v * 255 / 65535)); predict on TIFF inputs
# scored with GIF masks writes the same masks and metrics; BMP images with 8-bit palette BMP
# class ids (MSRC-21, GlaS) train the PNGs' parameters, and predict on them scores and writes
# the PNGs' masks; a transposed TIFF is refused naming the file (exit 2).
# The files are converted with Debian's Pillow (/usr/bin/python3); without it: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
PY=/usr/bin/python3
$PY -c 'import PIL, numpy' 2> /dev/null ||
  { echo "SKIP: $PY has no Pillow (python3-pil)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
SMALL="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off"
RUN="--steps 3 --seed 3 --val-fraction 0.25"

# converts the PNG pairs of $1 to $2: DIR (images/NAME.tif, masks/NAME.gif) or LIST (train/
# NAME.tif, train_masks/NAME_mask.gif and pairs.txt); $3: labels (masks keep their values)
convert() {
  $PY - "$@" << 'EOF'
import os, sys
import numpy as np
from PIL import Image
src, dst, layout, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "labels"
img_dir, msk_dir = ("images", "masks") if layout == "dir" else ("train", "train_masks")
os.makedirs(f"{dst}/{img_dir}"), os.makedirs(f"{dst}/{msk_dir}")
pairs = []
for i, name in enumerate(sorted(os.listdir(f"{src}/images"))):
    stem = name[:-4]
    im = Image.open(f"{src}/images/{name}")
    # alternately LZW and Deflate (tiled files, which Pillow does not write: test_tiff.c)
    im.save(f"{dst}/{img_dir}/{stem}.tif",
            compression="tiff_lzw" if i % 2 else "tiff_adobe_deflate")
    m = np.array(Image.open(f"{src}/masks/{stem}.png"))
    mname = f"{stem}.gif" if layout == "dir" else f"{stem}_mask.gif"
    if labels:
        # class ids as palette indices (the ignore label 255 included): a 256-entry palette
        g = Image.fromarray(m.astype(np.uint8), "P")
        g.putpalette([(k * 37) % 256 for k in range(768)])
        g.save(f"{dst}/{msk_dir}/{mname}", optimize=False)
        # and as 16-bit TIFFs, for the TIFF-mask run
        os.makedirs(f"{dst}/tiff_masks", exist_ok=True)
        Image.fromarray(m.astype(np.uint16)).save(f"{dst}/tiff_masks/{stem}.tiff")
    else:
        # binary as Carvana ships it: indices 0/1 of a black and white palette
        g = Image.fromarray((m > 0).astype(np.uint8), "P")
        g.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
        g.save(f"{dst}/{msk_dir}/{mname}", optimize=False)
    pairs.append(f"{img_dir}/{stem}.tif {msk_dir}/{mname}")
with open(f"{dst}/pairs.txt", "w") as f:
    f.write("\n".join(pairs) + "\n")
EOF
}

train() { # NAME ARGS...: one 2-rank run; its parameters in $T/NAME.params
  local name=$1; shift
  $MPIRUN -np 2 $BIN train $SMALL $RUN "$@" --params-out "$T/$name.params" \
    > "$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "$name: train"; }
}

# ---- binary: Carvana (list, NAME_mask.gif) and DRIVE-like (directory of .tif and .gif)
$BENCH make-pngs --out "$T/png" --count 16 --image-size 40 > /dev/null
convert "$T/png" "$T/carvana" list binary
convert "$T/png" "$T/drive" dir binary
[ "$(find "$T/carvana" -name '*.tif' | wc -l)" -eq 16 ] || fail "the conversion made no TIFFs"
train png --data "$T/png" --checkpoint-dir "$T/ck"
train carvana --data "$T/carvana/pairs.txt"
train drive --data "$T/drive"
cmp -s "$T/png.params" "$T/carvana.params" || fail "TIFF + GIF list trained other parameters"
cmp -s "$T/png.params" "$T/drive.params" || fail "TIFF + GIF directory trained other parameters"
v=$(grep "final validation" "$T/drive.log")
[ "$v" = "$(grep "final validation" "$T/png.log")" ] || fail "validation differs: $v"
echo "ok: TIFF images with GIF masks (list and directory) train the PNGs' parameters ($v)"

$BIN pack --images "$T/png/images" --masks "$T/png/masks" --image-size 32 --out "$T/png.cgds" \
  > /dev/null
$BIN pack --list "$T/carvana/pairs.txt" --image-size 32 --out "$T/carvana.cgds" > /dev/null
cmp -s "$T/png.cgds" "$T/carvana.cgds" || fail "pack of TIFF + GIF wrote another shard"
echo "ok: pack --list of TIFF + GIF pairs writes the PNGs' shard"

# 16-bit gray over the whole range (microscopy) as PNG and as TIFF (little- and big-endian,
# uncompressed, LZW, Deflate): libpng and the TIFF reader scale alike
$PY - "$T/png" "$T/g16" << 'EOF'
import os, sys
import numpy as np
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(16)
for d in ("png/images", "png/masks", "tif/images", "tif/masks"):
    os.makedirs(f"{dst}/{d}")
for i, name in enumerate(sorted(os.listdir(f"{src}/images"))):
    m = Image.open(f"{src}/masks/{name}")
    v = rng.integers(0, 65536, (m.size[1], m.size[0]))
    Image.fromarray(v.astype(np.uint16)).save(f"{dst}/png/images/{name}")
    tif = f"{dst}/tif/images/{name[:-4]}.tif"
    if i % 3 == 0:
        Image.fromarray(v.astype(">u2")).save(tif)
    else:
        Image.fromarray(v.astype(np.uint16)).save(
            tif, compression="tiff_lzw" if i % 3 == 1 else "tiff_adobe_deflate")
    m.save(f"{dst}/png/masks/{name}")
    m.save(f"{dst}/tif/masks/{name}")
EOF
for k in png tif; do
  $BIN pack --images "$T/g16/$k/images" --masks "$T/g16/$k/masks" --image-size 32 \
    --out "$T/g16-$k.cgds" > /dev/null || fail "pack of 16-bit gray ${k}s"
done
cmp -s "$T/g16-png.cgds" "$T/g16-tif.cgds" || fail "16-bit gray TIFFs: another shard than PNGs"
echo "ok: pack of 16-bit gray TIFFs writes the 16-bit PNGs' shard"

$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/png/images" \
  --masks "$T/png/masks" --output "$T/pred_png" > "$T/pp.log" 2>&1 ||
  { cat "$T/pp.log"; fail "predict png"; }
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/drive/images" \
  --masks "$T/drive/masks" --output "$T/pred_tif" > "$T/pt.log" 2>&1 ||
  { cat "$T/pt.log"; fail "predict tif"; }
for f in "$T"/pred_png/*.png; do
  cmp -s "$f" "$T/pred_tif/$(basename "$f")" || fail "predict on TIFF: $(basename "$f") differs"
done
[ -n "$(grep IoU "$T/pp.log")" ] && [ "$(grep IoU "$T/pt.log")" = "$(grep IoU "$T/pp.log")" ] ||
  fail "predict metrics differ: $(grep IoU "$T/pt.log") / $(grep IoU "$T/pp.log")"
n=$(ls "$T/pred_tif" | wc -l)
[ "$n" -eq 16 ] || fail "predict on TIFF wrote $n masks, not 16"
echo "ok: predict on TIFF images scored with GIF masks: the PNGs' masks and metrics"

# ---- 4 classes: GIF palette indices, and 16-bit TIFF class ids
$BENCH make-pngs --out "$T/png4" --count 16 --image-size 40 --num-classes 4 > /dev/null
convert "$T/png4" "$T/voc4" dir labels
train png4 --data "$T/png4" --num-classes 4
train gif4 --data "$T/voc4" --num-classes 4
cmp -s "$T/png4.params" "$T/gif4.params" || fail "GIF class ids trained other parameters"
sed 's| masks/\(.*\)\.gif$| tiff_masks/\1.tiff|' "$T/voc4/pairs.txt" > "$T/voc4/tiff-masks.txt"
train tif4 --data "$T/voc4/tiff-masks.txt" --num-classes 4
cmp -s "$T/png4.params" "$T/tif4.params" || fail "16-bit TIFF class ids trained other parameters"
echo "ok: 4 classes from GIF palette indices and 16-bit TIFF ids: the PNGs' parameters"

# ---- BMP (MSRC-21's images, GlaS's annotations): 24-bit images, 8-bit palette masks of class
# ids (Pillow's writer) train the PNGs' parameters; predict --masks reads BMP ground truth
$PY - "$T/png4" "$T/bmp4" << 'EOF'
import os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for d in ("images", "masks"):
    os.makedirs(f"{dst}/{d}")
    for name in os.listdir(f"{src}/{d}"):
        Image.open(f"{src}/{d}/{name}").save(f"{dst}/{d}/{name[:-4]}.bmp")
EOF
[ "$(find "$T/bmp4" -name '*.bmp' | wc -l)" -eq 32 ] || fail "the conversion made no BMPs"
train bmp4 --data "$T/bmp4" --num-classes 4 --checkpoint-dir "$T/ck4"
cmp -s "$T/png4.params" "$T/bmp4.params" || fail "BMP images and masks trained other parameters"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck4" --input "$T/bmp4/images" \
  --masks "$T/bmp4/masks" --output "$T/pred_bmp" > "$T/pb.log" 2>&1 ||
  { cat "$T/pb.log"; fail "predict bmp"; }
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck4" --input "$T/png4/images" \
  --masks "$T/png4/masks" --output "$T/pred_png4" > "$T/pp4.log" 2>&1 ||
  { cat "$T/pp4.log"; fail "predict png4"; }
[ "$(grep mIoU "$T/pb.log")" = "$(grep mIoU "$T/pp4.log")" ] && grep -q mIoU "$T/pb.log" ||
  fail "predict on BMP: $(grep mIoU "$T/pb.log") / $(grep mIoU "$T/pp4.log")"
for f in "$T"/pred_png4/*.png; do
  cmp -s "$f" "$T/pred_bmp/$(basename "$f")" || fail "predict on BMP: $(basename "$f") differs"
done
echo "ok: BMP images and palette BMP class ids train the PNGs' parameters; predict scores them"

# ---- refusals: a transposed TIFF names the file; a TIFF's colour mask holds no class ids
mkdir -p "$T/bad"
cp -r "$T/drive" "$T/bad/rot"
$PY -c "
from PIL import Image
import sys
Image.open(sys.argv[1]).save(sys.argv[1], tiffinfo={274: 6})" "$T/bad/rot/images/000003.tif"
set +e
$MPIRUN -np 2 $BIN train $SMALL $RUN --data "$T/bad/rot" > "$T/rot.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "000003.tif.*Orientation 6" "$T/rot.log" || \
  { cat "$T/rot.log"; fail "a transposed TIFF: exit $rc, want 2 naming the file"; }
why=$(grep -m1 -o 'images/000003.tif.*' "$T/rot.log" | cut -c1-120)
echo "ok: a transposed TIFF is refused naming it: $why"
echo "PASS test_formats"
