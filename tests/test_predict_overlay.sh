#!/usr/bin/env bash
# predict --overlay: NAME.overlay.png beside each mask, the image with its predicted class
# colours blended in as mmsegmentation's SegLocalVisualizer draws them, (1 - A) image + A colour
# truncated to 8 bits; checked pixel for pixel with NumPy against the input image and the mask
# predict wrote: a binary model (PASCAL VOC's colours for 0 and 1) on 2 ranks, and a 4-class
# model trained on palette masks (their palette) with --overlay-alpha 0.8. Usage errors exit 2.
# Pillow and NumPy come from Debian (/usr/bin/python3); without them: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
PY=/usr/bin/python3
$PY -c 'import PIL, numpy' 2> /dev/null || { echo "SKIP: $PY has no Pillow or NumPy"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
MK=$BUILD/bench/cogpu-bench
$MK make-pngs --out "$T/b" --count 40 --image-size 32 --seed 5 > /dev/null
$MK make-pngs --out "$T/k" --count 40 --image-size 32 --seed 6 --num-classes 4 --mask-palette \
  > /dev/null
# a palette of the masks' own, not VOC's (which make-pngs writes, and the fallback is)
$PY - "$T/k/masks" << 'PYEOF'
import glob, sys
from PIL import Image
pal = [(37 * i + 11) % 256 for i in range(768)]
for f in glob.glob(f"{sys.argv[1]}/*.png"):
    m = Image.open(f)
    m.putpalette(pal)
    m.save(f)
PYEOF
TRAIN="train --backend cpu --image-size 32 --model-base 4 --model-depth 2 --batch 4 --steps 30
       --lr 3e-3 --progress off --threads 1 --val-fraction 0"
$MPIRUN -np 1 $BIN $TRAIN --data "$T/b" --checkpoint-dir "$T/ckb" > "$T/tb.log"
$MPIRUN -np 1 $BIN $TRAIN --data "$T/k" --num-classes 4 --checkpoint-dir "$T/ckk" > "$T/tk.log"
mkdir -p "$T/in"
cp "$T"/b/images/00000[0-6].png "$T/in/"
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ckb" --input "$T/in" \
  --output "$T/pb" --overlay > "$T/pb.log" 2>&1 || { cat "$T/pb.log"; fail "predict --overlay"; }
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ckk" --input "$T/k/images" \
  --output "$T/pk" --overlay --overlay-alpha 0.8 > "$T/pk.log" 2>&1 ||
  { cat "$T/pk.log"; fail "predict --overlay --overlay-alpha 0.8"; }
$PY - "$T" << 'PYEOF'
import glob, os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]

def voc(n=256):
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= (c & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap

def check(out, images, alpha, binary):
    n = 0
    for f in sorted(glob.glob(f"{out}/*.overlay.png")):
        stem = os.path.basename(f)[:-len(".overlay.png")]
        got = np.array(Image.open(f))
        img = np.array(Image.open(f"{images}/{stem}.png").convert("RGB")).astype(np.float64)
        m = Image.open(f"{out}/{stem}.png")
        cls = np.array(m)
        if binary:
            assert set(np.unique(cls)) <= {0, 255}, np.unique(cls)
            pal, cls = voc(), (cls > 0).astype(np.int64)
        else:
            assert m.mode == "P", m.mode  # the training masks' palette, not VOC's
            pal = np.array(m.getpalette(), np.uint8).reshape(-1, 3)
            assert (pal[:4] == [[(37 * (3 * c + k) + 11) % 256 for k in range(3)]
                                for c in range(4)]).all() and (pal[:4] != voc()[:4]).any(), pal[:4]
        want = (img * (1 - alpha) + pal[cls].astype(np.float64) * alpha).astype(np.uint8)
        assert got.shape == want.shape and (got == want).all(), (f, int((got != want).sum()))
        n += 1
    return n

nb = check(f"{t}/pb", f"{t}/in", 0.5, True)
nk = check(f"{t}/pk", f"{t}/k/images", 0.8, False)
assert nb == 7 and nk == 40, (nb, nk)
print(f"ok: {nb} binary overlays (VOC colours, A 0.5) and {nk} 4-class overlays (the masks' "
      f"palette, A 0.8) equal NumPy's blend of the image and the predicted mask")
PYEOF
expect2 "--overlay-alpha: the weight of --overlay's colours; give --overlay" $BIN predict \
  --checkpoint "$T/ckb" --input "$T/in" --output "$T/x" --overlay-alpha 0.3
expect2 "--overlay-alpha" $BIN predict --checkpoint "$T/ckb" --input "$T/in" --output "$T/x" \
  --overlay --overlay-alpha 1.5
cp "$T/in/000000.png" "$T/in/000000.overlay.png"
expect2 "--overlay: the mask of $T/in/000000.overlay.png would be 000000.overlay.png" $BIN \
  predict --checkpoint "$T/ckb" --input "$T/in" --output "$T/x" --overlay
echo "PASS test_predict_overlay"
