#!/usr/bin/env bash
# cogpu-dist colors-to-ids: colour masks (RGB PNG, RGBA PNG, palette PNG, 16-bit RGB PNG, RGB TIFF,
# GIF) in ISPRS's colours (scripts/datasets/isprs.colors) become palette PNGs whose values are the
# ids NumPy maps the same pixels to, whose palette is the colours (so they look as before), or gray
# PNGs with --gray; --unknown maps the colours the file does not list (counted); without it such a
# pixel fails its file, named with its place and colour, and the other files are still written
# (exit 2), and the run asked for next, into the same --out, replaces them; a JPEG is refused;
# --tolerance 127 maps noisy DeepGlobe-like masks as a threshold at 128 would, and refuses colours
# closer than 2T + 1; --rename swaps a name ending (one that makes a hidden name, OUT/.png, which
# train skips, is refused); MSRC-21's 24-bit BMP ground truth maps by
# scripts/datasets/msrc21.colors (void, horse and mountain to 255); --out = --in is refused; a FILE
# with a bad line, a fifth number or a colour twice names the line (a BOM and CRLF are read;
# CR-only line ends, UTF-16 and a FIFO are refused, naming the file); a run trains on the converted
# masks (their palette is carried: predict writes the same colours). The fixtures are written with
# Debian's Pillow and NumPy (/usr/bin/python3); without them: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
"$PY" -c 'import PIL, numpy' 2> /dev/null || { echo "SKIP: no Pillow/NumPy for $PY"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
COLORS=$SRC/scripts/datasets/isprs.colors
"$PY" - "$T" "$COLORS" << 'PY'
import os, sys, numpy as np
from PIL import Image
t, colors = sys.argv[1], sys.argv[2]
cols = [l.split()[:4] for l in open(colors) if l.strip() and not l.startswith("#")]
cmap = np.array([[int(v) for v in c[:3]] for c in cols], np.uint8)
os.makedirs(f"{t}/rgb"), os.makedirs(f"{t}/bad"), os.makedirs(f"{t}/img")
rng = np.random.default_rng(3)
def mask(h, w):
    ids = rng.integers(0, len(cmap), (h // 4, w // 4)).repeat(4, 0).repeat(4, 1)
    return ids, cmap[ids]
for i, kind in enumerate(["rgb", "rgba", "pal", "rgb16", "tif", "gif"]):
    ids, rgb = mask(32, 40)
    np.save(f"{t}/ids{i}.npy", ids)
    name = f"{t}/rgb/m{i}"
    if kind == "rgb": Image.fromarray(rgb).save(name + ".png")
    if kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(ids.shape, 200, np.uint8)])).save(name + ".png")
    if kind == "pal": Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(name + ".png")
    if kind == "rgb16":  # 16-bit samples v * 257: scaled back to v
        import zlib, struct
        raw = b"".join(b"\0" + (rgb[y].astype(">u2") * 257).tobytes() for y in range(32))
        ch = lambda k, d: struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
        open(name + ".png", "wb").write(b"\x89PNG\r\n\x1a\n" + ch(b"IHDR", struct.pack(
            ">IIBBBBB", 40, 32, 16, 2, 0, 0, 0)) + ch(b"IDAT", zlib.compress(raw)) + ch(b"IEND", b""))
    if kind == "tif": Image.fromarray(rgb).save(name + ".tif")
    if kind == "gif": Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(name + ".gif")
    img = (rng.integers(0, 255, (32, 40, 3))).astype(np.uint8)
    Image.fromarray(img).save(f"{t}/img/m{i}.png")
# one pixel of a colour the file does not list, and a JPEG
ids, rgb = mask(16, 16)
rgb[5, 7] = (1, 2, 3)
Image.fromarray(rgb).save(f"{t}/bad/odd.png")
Image.fromarray(mask(16, 16)[1]).save(f"{t}/bad/good.png")
Image.fromarray(mask(16, 16)[1]).save(f"{t}/bad/lossy.jpg")
PY

# every format, as NumPy maps it, with the colours as the palette
$BIN colors-to-ids --colors "$COLORS" --in "$T/rgb" --out "$T/ids" > "$T/c.log" 2>&1 ||
  { cat "$T/c.log"; fail "colors-to-ids"; }
grep -q "colors-to-ids: 6 of 6 mask(s) of $T/rgb -> $T/ids as palette PNGs of class ids 0..5" \
  "$T/c.log" || { cat "$T/c.log"; fail "summary"; }
$BIN colors-to-ids --colors "$COLORS" --in "$T/rgb" --out "$T/gray" --gray > "$T/g.log" 2>&1 ||
  { cat "$T/g.log"; fail "--gray"; }
"$PY" - "$T" "$COLORS" << 'PY'
import sys, numpy as np
from PIL import Image
t, colors = sys.argv[1], sys.argv[2]
cols = [l.split()[:4] for l in open(colors) if l.strip() and not l.startswith("#")]
pal = [int(v) for c in cols for v in c[:3]]
for i in range(6):
    want = np.load(f"{t}/ids{i}.npy")
    im = Image.open(f"{t}/ids/m{i}.png")
    assert im.mode == "P", (i, im.mode)
    assert np.array_equal(np.array(im), want), f"m{i}: ids differ from NumPy's"
    assert im.getpalette()[:len(pal)] == pal, f"m{i}: the palette is not the colours"
    g = Image.open(f"{t}/gray/m{i}.png")
    assert g.mode == "L" and np.array_equal(np.array(g), want), f"m{i}: --gray"
print("ok: RGB, RGBA, palette and 16-bit PNG, TIFF and GIF colour masks: NumPy's ids, the "
      "colours as the palette; --gray the ids alone")
PY

# a colour not listed: the file named with the pixel; the others written; --unknown maps it
expect2 "$T/bad/odd.png: pixel (x 7, y 5) has the colour 1 2 3, which --colors does not list" \
  $BIN colors-to-ids --colors "$COLORS" --in "$T/bad" --out "$T/o1"
cp "$T/o1/good.png" "$T/good1.png"
grep -q "a JPEG: its colours are not exact" "$T/o" || { cat "$T/o"; fail "the JPEG"; }
[ -f "$T/o1/good.png" ] && [ ! -e "$T/o1/odd.png" ] || fail "the good file not written alone"
rm "$T/bad/lossy.jpg"
# the same --out again (the recovery the failure asks for): its own files replaced
$BIN colors-to-ids --colors "$COLORS" --in "$T/bad" --out "$T/o1" --unknown 255 > "$T/u.log" \
  2>&1 || { cat "$T/u.log"; fail "--unknown 255 into the same --out"; }
grep -q "class ids 0..5, 255 (6 colour(s)" "$T/u.log" &&
  grep -q "; 1 pixel(s) of colours it does not list -> 255" "$T/u.log" ||
  { cat "$T/u.log"; fail "--unknown: the summary"; }
"$PY" -c "
import numpy as np, sys; from PIL import Image
a = np.array(Image.open(sys.argv[1])); assert a[5, 7] == 255 and (a != 255).sum() == 255, a
assert len(Image.open(sys.argv[1]).getpalette()) == 3 * 256
assert np.array_equal(np.array(Image.open(sys.argv[2])), np.array(Image.open(sys.argv[3])))" \
  "$T/o1/odd.png" "$T/good1.png" "$T/o1/good.png" || fail "--unknown 255: the pixels"
echo "ok: an unlisted colour fails its file by place and colour, the others are written;" \
     "--unknown maps it (into the same --out); a JPEG is refused"

# --tolerance: near colours (masks whose values are not exactly 0/255, as DeepGlobe's) thresholded
# at 128 with 127; --rename pairs a label file with its image; --threads 1 writes the same
"$PY" - "$T" << 'PY'
import os, sys, numpy as np
from PIL import Image
t = sys.argv[1]
os.makedirs(f"{t}/noisy")
rng = np.random.default_rng(5)
legend = np.array([[0, 255, 255], [255, 255, 0], [255, 0, 255], [0, 255, 0], [0, 0, 255],
                   [255, 255, 255], [0, 0, 0]], np.uint8)
ids = rng.integers(0, 7, (24, 24))
rgb = legend[ids].astype(int) + np.where(legend[ids] > 0, -rng.integers(0, 128, (24, 24, 3)),
                                         rng.integers(0, 128, (24, 24, 3)))
Image.fromarray(rgb.astype(np.uint8)).save(f"{t}/noisy/119_mask.png")
np.save(f"{t}/noisy_ids.npy", np.where(ids == 6, 255, ids))
PY
DG=$SRC/scripts/datasets/deepglobe.colors
expect2 "has the colour" $BIN colors-to-ids --colors "$DG" --in "$T/noisy" --out "$T/n0"
$BIN colors-to-ids --colors "$DG" --in "$T/noisy" --out "$T/n1" --tolerance 127 \
  --rename _mask:_sat --threads 1 > "$T/n.log" 2>&1 || { cat "$T/n.log"; fail "--tolerance 127"; }
grep -q "pixel(s) within --tolerance 127 of a colour" "$T/n.log" || { cat "$T/n.log"; fail "near"; }
"$PY" -c "
import numpy as np, sys; from PIL import Image
a = np.array(Image.open(sys.argv[1] + '/n1/119_sat.png'))
assert np.array_equal(a, np.load(sys.argv[1] + '/noisy_ids.npy')), 'thresholded ids differ'" "$T" ||
  fail "--tolerance 127: the ids"
expect2 "--tolerance: 128 is out of range 0..127" \
  $BIN colors-to-ids --colors "$DG" --in "$T/noisy" --out "$T/n2" --tolerance 128
printf '0 0 0 0\n10 10 10 1\n' > "$T/close.colors"
expect2 "--tolerance 5: the colours of --colors $T/close.colors:1 and :2 are within 10" \
  $BIN colors-to-ids --colors "$T/close.colors" --in "$T/noisy" --out "$T/n2" --tolerance 5
expect2 "--rename: 'x' is not A:B" \
  $BIN colors-to-ids --colors "$DG" --in "$T/noisy" --out "$T/n2" --rename x
expect2 "--rename 119_mask:: $T/noisy/119_mask.png would be written as $T/n2/.png, a hidden" \
  $BIN colors-to-ids --colors "$DG" --in "$T/noisy" --out "$T/n2" --rename 119_mask:
[ -z "$(ls -A "$T/n2" 2> /dev/null)" ] || fail "a refused --rename wrote files"
# DeepGlobe's own layout: train/NAME_sat.jpg beside train/NAME_mask.png. --rename _mask:_sat
# converts the masks and leaves the images alone (it took them for masks: two outputs
# NAME_sat.png); a --rename ending no file has is refused, naming one
mkdir -p "$T/dg" && cp "$T/noisy/119_mask.png" "$T/dg/"
"$PY" -c "from PIL import Image; Image.new('RGB', (24, 24), (90, 120, 60)).save('$T/dg/119_sat.jpg')"
$BIN colors-to-ids --colors "$DG" --in "$T/dg" --out "$T/n3" --tolerance 127 \
  --rename _mask:_sat > "$T/dg.log" 2>&1 || { cat "$T/dg.log"; fail "DeepGlobe's layout"; }
grep -q "1 file(s) of $T/dg whose names do not end in _mask left alone (e.g. $T/dg/119_sat.jpg)" \
  "$T/dg.log" || { cat "$T/dg.log"; fail "DeepGlobe's layout: the images not said"; }
[ "$(ls "$T/n3")" = "119_sat.png" ] || { ls "$T/n3"; fail "DeepGlobe's layout: the outputs"; }
expect2 "--rename _label:_RGB: no file of --in $T/dg has a name ending in _label (e.g." \
  $BIN colors-to-ids --colors "$DG" --in "$T/dg" --out "$T/n4" --rename _label:_RGB
echo "ok: --tolerance 127 thresholds near colours at 128 (DeepGlobe's advice); --rename, in" \
     "DeepGlobe's layout too"

# MSRC-21's ground truth: 24-bit BMPs (GroundTruth/NAME_GT.bmp) in msrc21.colors' colours, void,
# horse and mountain to 255; --rename _GT: pairs each with Images/NAME.bmp
mkdir -p "$T/msrc"
"$PY" - "$T" "$SRC/scripts/datasets/msrc21.colors" << 'EOF'
import sys
import numpy as np
from PIL import Image
t, colors = sys.argv[1], sys.argv[2]
rows = [l.split()[:4] for l in open(colors) if l.strip() and not l.startswith("#")]
rgb = np.array([r[:3] for r in rows], np.uint8)
ids = np.array([r[3] for r in rows], np.uint8)
k = np.random.default_rng(2).integers(0, len(rows), (15, 11))
Image.fromarray(rgb[k]).save(f"{t}/msrc/1_1_s_GT.bmp")
np.save(f"{t}/msrc_ids.npy", ids[k])
EOF
$BIN colors-to-ids --colors "$SRC/scripts/datasets/msrc21.colors" --in "$T/msrc" \
  --out "$T/msrc_ids" --rename _GT: > "$T/m.log" 2>&1 || { cat "$T/m.log"; fail "MSRC-21"; }
"$PY" -c "
import numpy as np, sys; from PIL import Image
a = np.array(Image.open(sys.argv[1] + '/msrc_ids/1_1_s.png'))
assert np.array_equal(a, np.load(sys.argv[1] + '/msrc_ids.npy')), 'MSRC-21 ids differ'" "$T" ||
  fail "MSRC-21: the ids"
echo "ok: MSRC-21's BMP ground truth in msrc21.colors' ids (void, horse, mountain: 255)"

# refusals
expect2 "--out: '$T/rgb' is the --in directory" \
  $BIN colors-to-ids --colors "$COLORS" --in "$T/rgb" --out "$T/rgb"
printf '1 2 3 0\n4 5 6\n' > "$T/short.colors"
expect2 "--colors $T/short.colors:2: not 'R G B ID [name]'" \
  $BIN colors-to-ids --colors "$T/short.colors" --in "$T/rgb" --out "$T/x"
printf '1 2 3 0\n# a comment\n1 2 3 1\n' > "$T/twice.colors"
expect2 "--colors $T/twice.colors:3: the colour 1 2 3 is on line 1 too" \
  $BIN colors-to-ids --colors "$T/twice.colors" --in "$T/rgb" --out "$T/x"
printf '1 2 300 0\n' > "$T/big.colors"
expect2 "--colors $T/big.colors:1: not 'R G B ID [name]'" \
  $BIN colors-to-ids --colors "$T/big.colors" --in "$T/rgb" --out "$T/x"
printf '255 255 255 255 0\n' > "$T/rgba.colors" # R G B A ID: the alpha would be the id
expect2 "--colors $T/rgba.colors:1: not 'R G B ID [name]'" \
  $BIN colors-to-ids --colors "$T/rgba.colors" --in "$T/rgb" --out "$T/x"
printf '\xef\xbb\xbf255 255 255 0 impervious\r\n0 0 255 1\r\n' > "$T/bom.colors"
$BIN colors-to-ids --colors "$T/bom.colors" --in "$T/bad" --out "$T/bom" --unknown 9 \
  > "$T/bom.log" 2>&1 || { cat "$T/bom.log"; fail "a BOM and CRLF"; }
expect2 "--colors FILE is required" $BIN colors-to-ids --in "$T/rgb" --out "$T/x"
# old Mac line ends (Excel for Mac's "CSV (Macintosh)") read as one line would map one colour
printf '255 255 255 0 impervious\r0 0 255 1 building\r' > "$T/cr.colors"
expect2 "--colors $T/cr.colors:1: a carriage return inside a line: the file has old Mac line ends" \
  $BIN colors-to-ids --colors "$T/cr.colors" --in "$T/rgb" --out "$T/x" --unknown 9
printf '255 255 255 0\n' | iconv -t UTF-16 > "$T/u16.colors" # PowerShell's '>'
expect2 "--colors $T/u16.colors: UTF-16 text (save it as UTF-8)" \
  $BIN colors-to-ids --colors "$T/u16.colors" --in "$T/rgb" --out "$T/x"
mkfifo "$T/fifo.colors" # read whole, never waited on
expect2 "--colors $T/fifo.colors: not a regular file (a FIFO)" \
  timeout 20 $BIN colors-to-ids --colors "$T/fifo.colors" --in "$T/rgb" --out "$T/x"
[ ! -e "$T/x" ] || fail "a refused --colors FILE made --out"

# a 16-bit mask widened by v << 8 reads 255 as 254: the near miss is named with the --tolerance
# that matches it, in the failure and in --unknown's summary; --tolerance 1 converts it
mkdir -p "$T/in16"
"$PY" -c "
import numpy as np, zlib, struct
leg = np.array([[255, 255, 255], [0, 0, 255], [0, 255, 255]], np.uint16)
a = leg[np.array([[0, 1, 2, 0], [2, 2, 1, 0]])] << 8
ch = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
raw = b''.join(b'\0' + r.astype('>u2').tobytes() for r in a)
open('$T/in16/s8.png', 'wb').write(b'\x89PNG\r\n\x1a\n' + ch(b'IHDR', struct.pack('>IIBBBBB',
    4, 2, 16, 2, 0, 0, 0)) + ch(b'IDAT', zlib.compress(raw)) + ch(b'IEND', b''))"
expect2 "has the colour 254 254 254, which --colors does not list (give it a line, --tolerance T \
or --unknown ID); the listed colour 255 255 255 (line 7) is within 1 of it on every channel: \
--tolerance 1 matches it (16-bit samples" $BIN colors-to-ids --colors "$COLORS" --in "$T/in16" \
  --out "$T/o16"
$BIN colors-to-ids --colors "$COLORS" --in "$T/in16" --out "$T/o16" --unknown 255 > "$T/u16.log" \
  2>&1 || { cat "$T/u16.log"; fail "--unknown on the 16-bit mask"; }
grep -q "(the first, 254 254 254 in $T/in16/s8.png; the listed colour 255 255 255 (line 7)" \
  "$T/u16.log" || { cat "$T/u16.log"; fail "--unknown's summary names no near miss"; }
$BIN colors-to-ids --colors "$COLORS" --in "$T/in16" --out "$T/o16" --tolerance 1 > "$T/t16.log" \
  2>&1 || { cat "$T/t16.log"; fail "--tolerance 1 on the 16-bit mask"; }
"$PY" -c "
import numpy as np; from PIL import Image
assert np.array(Image.open('$T/o16/s8.png')).tolist() == [[0, 1, 2, 0], [2, 2, 1, 0]]" ||
  fail "--tolerance 1: the 16-bit mask's ids"
echo "ok: a 16-bit mask widened by << 8: named near misses, --tolerance 1"

# a run on the converted masks: the palette carried to predict's masks
mkdir -p "$T/data" && mv "$T/img" "$T/data/images" && mv "$T/ids" "$T/data/masks"
$MPIRUN -np 1 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 \
  --data "$T/data" --val-fraction 0 --num-classes 6 --class-names "$SRC/scripts/datasets/isprs.names" \
  --steps 2 --batch 2 --progress off --checkpoint-dir "$T/ck" > "$T/t.log" 2>&1 ||
  { cat "$T/t.log"; fail "train on the converted masks"; }
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/data/images" \
  --output "$T/pred" > "$T/p.log" 2>&1 || { cat "$T/p.log"; fail "predict"; }
"$PY" -c "
import sys; from PIL import Image
im = Image.open(sys.argv[1]); assert im.mode == 'P', im.mode
assert im.getpalette()[:6] == [255, 255, 255, 0, 0, 255], im.getpalette()[:6]" \
  "$T/pred/m0.png" || fail "predict's masks: not in the colours"
echo "ok: trains on them; predict writes its masks in the colours"
echo PASS
