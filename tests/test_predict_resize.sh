#!/usr/bin/env bash
# predict --resize: images predicted at the scale training saw its images at. Models (binary, and
# K = 3 with gray class-id masks) are trained at --image-size 32 on 64x112 photos, which training
# fits (scales their shorter side to 32), then whole images are predicted with the default
# --resize auto on 2 ranks: a 150x70 PNG (a non-integer factor), a 48x150 JPEG (tall), a 30x20
# PNG (smaller than a tile: scaled up, its logits scaled down) and a 40x32 PNG (shorter side
# already 32: the native path). Checks:
#  - the banner says auto chose fit, from the sides the checkpoint records;
#  - each image's probabilities equal those of PyTorch's F.interpolate(bilinear,
#    align_corners=False) of the logits of the network's own view of it: the image scaled by
#    cg_resize_tool (the same cg_fit_pair), predicted natively (log-probabilities, which give the
#    same softmax), within 1e-4 (float32 probabilities give the logits back to about that;
#    pixels next to saturated ones are left out); the masks are their argmax (K = 1: p > 0.5);
#  - --resize native on the originals gives another result (the scale matters); the 40x32 image
#    gives the same bytes either way; --resize 32 gives fit's bytes;
#  - --scales 0.5,1 averages the logits of --resize 16 and 32 (each scaled back), 2 ranks;
#  - --flip averages the logits of each tile and of its mirror (checked against predictions of
#    the image and of its mirrored copy) and takes two batch slots a tile;
#  - auto is native for a run on N-sided samples (synthetic data) and for a shard's run (which
#    keeps no original sizes: pack says to predict with --resize fit), and says so;
#  - a view over --max-image-pixels is refused before any mask is written (the --output it made
#    is removed), its aspect kept; so, under --resize native, are an image over it and an empty
#    file last in the list (every header is read first);
#  - --save-probs of 120 images in one batch under ulimit -n 100; a .probs.npy that cannot be
#    written is told apart from its mask (written);
#  - bad --resize values exit 2 naming the flag.
# The files are written and checked with Debian's Pillow, NumPy and PyTorch (/usr/bin/python3);
# without them: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
TOOL=$BUILD/tests/cg_resize_tool
PY=/usr/bin/python3
$PY -c 'import PIL, numpy, torch' 2> /dev/null ||
  { echo "SKIP: $PY has no Pillow, NumPy or PyTorch"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

$PY - "$T" << 'PYEOF'
import os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
rng = np.random.default_rng(7)

def scene(h, w):  # dark noise; red squares (class 1) and blue discs (class 2)
    im = rng.integers(20, 70, (h, w, 3)).astype(np.uint8)
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(max(2, h * w // 1500)):
        cls = int(rng.integers(1, 3))
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 14) * min(h, w) / 64
        inside = (np.maximum(abs(yy + 0.5 - cy), abs(xx + 0.5 - cx)) <= r if cls == 1
                  else np.hypot(yy + 0.5 - cy, xx + 0.5 - cx) <= r)
        im[inside] = (220, 40, 40) if cls == 1 else (40, 60, 230)
        m[inside] = cls
    return im, m

def save(d, name, im, m, ext="png"):
    for k in (1, 3):
        os.makedirs(f"{t}/{d}{k}/masks", exist_ok=True)
        Image.fromarray(m if k == 3 else (m > 0).astype(np.uint8) * 255).save(
            f"{t}/{d}{k}/masks/{name}.png")
    os.makedirs(f"{t}/{d}/images", exist_ok=True)
    opts = {"quality": 95} if ext == "jpg" else {}
    Image.fromarray(im).save(f"{t}/{d}/images/{name}.{ext}", **opts)

for i in range(16):
    save("train", f"t{i:02d}", *scene(64, 112))
for name, (h, w), ext in (("e1", (70, 150), "png"), ("e2", (150, 48), "jpg"),
                          ("e3", (20, 30), "png"), ("e4", (32, 40), "png")):
    save("eval", name, *scene(h, w), ext=ext)
for k in (1, 3):  # the train directories: the images beside each K's masks
    os.symlink(f"{t}/train/images", f"{t}/train{k}/images")
PYEOF

SMALL="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
       --seed 5 --val-fraction 0 --batch 4 --lr 0.01"
for k in 1 3; do
  kflag=""; [ $k = 3 ] && kflag="--num-classes 3"
  $MPIRUN -np 1 $BIN train $SMALL $kflag --data $T/train$k --steps 40 --checkpoint-dir $T/ck$k \
    > $T/train$k.log
  $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/eval/images \
    --masks $T/eval$k/masks --output $T/fit$k --save-probs > $T/fit$k.log 2>&1 ||
    { cat $T/fit$k.log; fail "predict K=$k"; }
  grep "resize\|IoU" $T/fit$k.log | sed "s/^/K=$k: /"
  grep -q -- "--resize auto: the run fitted its training images (shorter sides 64..64) to \
--image-size 32" $T/fit$k.log || fail "K=$k: auto did not choose fit from the recorded sides"
  # the network's view of each image, predicted natively: the reference's logits
  mkdir -p $T/small$k
  for f in $T/eval/images/*; do
    n=$(basename "${f%.*}")
    $TOOL "$f" 32 $T/small$k/$n.png > /dev/null
  done
  $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/small$k --output $T/ref$k \
    --save-probs --resize native > $T/ref$k.log 2>&1 || { cat $T/ref$k.log; fail "reference"; }
  $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/eval/images --output $T/nat$k \
    --save-probs --resize native > $T/nat$k.log 2>&1 || { cat $T/nat$k.log; fail "native"; }
  $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/eval/images --output $T/side$k \
    --resize 32 > $T/side$k.log 2>&1 || { cat $T/side$k.log; fail "--resize 32"; }
  $PY - $T $k << 'PYEOF'
import sys
import numpy as np
import torch
from PIL import Image
t, k = sys.argv[1], int(sys.argv[2])
worst = 0.0
for n in ("e1", "e2", "e3", "e4"):
    p = np.load(f"{t}/fit{k}/{n}.probs.npy")
    q = np.load(f"{t}/ref{k}/{n}.probs.npy").astype(np.float64)
    h, w = p.shape[:2]
    # the logits up to a per-pixel constant, which softmax cancels (K = 1: the logit itself);
    # where float32 saturated (a probability of 0 or 1) they are lost: those pixels, and the
    # output pixels interpolated from them, are left out (counted)
    lost = ((q <= 0) | (q >= 1)).any(axis=2, keepdims=True)
    qc = np.clip(q, 1e-30, 1 - 1e-7)
    lg = np.log(qc / (1 - qc)) if k == 1 else np.log(qc)
    def interp(a):
        return torch.nn.functional.interpolate(
            torch.from_numpy(a).permute(2, 0, 1)[None], size=(h, w), mode="bilinear",
            align_corners=False)[0].permute(1, 2, 0)
    up, near_lost = interp(lg), interp(lost.astype(np.float64)).numpy()[..., 0] > 0
    want = (torch.sigmoid(up) if k == 1 else torch.softmax(up, dim=2)).numpy()
    d = float(np.abs(p - want)[~near_lost].max())
    assert near_lost.mean() < 0.5, "most of the logits saturated: train less"
    worst = max(worst, d)
    mask = np.array(Image.open(f"{t}/fit{k}/{n}.png"))
    cls = (p[..., 0] > 0.5).astype(np.uint8) * 255 if k == 1 else p.argmax(2)
    top = np.sort(p, axis=2)
    sure = np.abs(p[..., 0] - 0.5) > 1e-6 if k == 1 else top[..., -1] - top[..., -2] > 1e-6
    nat = np.load(f"{t}/nat{k}/{n}.probs.npy")
    # at N the same network input as native: equal up to the rounding of the tile's place in its
    # batch (OpenBLAS's kernels treat the rows of a GEMM's edge blocks in another order)
    same_nat = nat.shape == p.shape and float(np.abs(nat - p).max()) <= 1e-5
    side = np.array(Image.open(f"{t}/side{k}/{n}.png"))
    print(f"K={k} {n} {w}x{h} from {q.shape[1]}x{q.shape[0]}: max |p - F.interpolate| {d:.2e} "
          f"({near_lost.sum()} of {h * w} pixels near saturated ones left out), "
          f"mask = argmax: {np.array_equal(mask[sure], cls[sure])}, same as native: {same_nat}, "
          f"--resize 32 = fit: {np.array_equal(side, mask)}")
    assert d <= 1e-4, "probabilities differ from PyTorch's interpolation"
    assert np.array_equal(mask[sure], cls[sure]), "the mask is not the probabilities' class"
    assert np.array_equal(side, mask), "--resize 32 differs from --resize fit at N = 32"
    assert same_nat == (n == "e4"), "native and fit should differ unless the side is N"
print(f"PASS K={k}: worst |difference| {worst:.2e}")
PYEOF
  # --scales 0.5,1: the mean of the logits of --resize 16 and 32, each scaled back
  $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/eval/images \
    --output $T/ms$k --save-probs --scales 0.5,1 > $T/ms$k.log 2>&1 || { cat $T/ms$k.log; fail ms; }
  $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/eval/images --output $T/half$k \
    --save-probs --resize 16 > $T/half$k.log 2>&1 || { cat $T/half$k.log; fail "--resize 16"; }
  $PY - $T $k << 'PYEOF'
import sys
import numpy as np
t, k = sys.argv[1], int(sys.argv[2])
worst, left = 0.0, 0
for n in ("e1", "e2", "e3", "e4"):
    a, b = (np.load(f"{t}/{d}{k}/{n}.probs.npy").astype(np.float64) for d in ("half", "fit"))
    got = np.load(f"{t}/ms{k}/{n}.probs.npy")
    lost = ((a <= 0) | (a >= 1) | (b <= 0) | (b >= 1)).any(axis=2)
    a, b = np.clip(a, 1e-30, 1 - 1e-7), np.clip(b, 1e-30, 1 - 1e-7)
    if k == 1:
        want = 1 / (1 + np.exp(-0.5 * (np.log(a / (1 - a)) + np.log(b / (1 - b)))))
    else:
        lg = 0.5 * (np.log(a) + np.log(b))
        want = np.exp(lg - lg.max(axis=2, keepdims=True))
        want /= want.sum(axis=2, keepdims=True)
    worst = max(worst, float(np.abs(got - want)[~lost].max()))
    left += int(lost.sum())
print(f"K={k} --scales 0.5,1: max |p - mean of --resize 16's and 32's logits| {worst:.2e} "
      f"({left} saturated pixels left out)")
assert worst <= 1e-4, "--scales is not the mean of the scales"
PYEOF
  # --flip: the mean of the logits of the image and of its mirror mirrored back (the 40x32
  # image's tile origins, 0 and 8, are their own mirror: predicting the mirrored file tiles it
  # the same way)
  mkdir -p $T/one$k $T/mir$k
  cp $T/eval/images/e4.png $T/one$k/
  $PY -c "from PIL import Image, ImageOps; import sys
ImageOps.mirror(Image.open(sys.argv[1])).save(sys.argv[2])" $T/one$k/e4.png $T/mir$k/e4.png
  for d in one mir; do
    $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/$d$k --output $T/o$d$k \
      --save-probs > $T/o$d$k.log 2>&1 || { cat $T/o$d$k.log; fail "predict $d"; }
  done
  $BIN predict --backend cpu --checkpoint $T/ck$k --input $T/one$k --output $T/flip$k \
    --save-probs --flip --batch 3 > $T/flip$k.log 2>&1 || { cat $T/flip$k.log; fail "--flip"; }
  grep -q "2 a step (each tile and its mirror: --flip)" $T/flip$k.log ||
    { cat $T/flip$k.log; fail "--flip --batch 3: 2 tiles of 1 image, a step of 2 expected"; }
  $PY - $T $k << 'PYEOF'
import sys
import numpy as np
t, k = sys.argv[1], int(sys.argv[2])
a, b = (np.load(f"{t}/o{d}{k}/e4.probs.npy").astype(np.float64) for d in ("one", "mir"))
b = b[:, ::-1]
got = np.load(f"{t}/flip{k}/e4.probs.npy")
lost = ((a <= 0) | (a >= 1) | (b <= 0) | (b >= 1)).any(axis=2)
a, b = np.clip(a, 1e-30, 1 - 1e-7), np.clip(b, 1e-30, 1 - 1e-7)
if k == 1:
    lg = 0.5 * (np.log(a / (1 - a)) + np.log(b / (1 - b)))
    want = 1 / (1 + np.exp(-lg))
else:
    lg = 0.5 * (np.log(a) + np.log(b))
    want = np.exp(lg - lg.max(axis=2, keepdims=True))
    want /= want.sum(axis=2, keepdims=True)
d = float(np.abs(got - want)[~lost].max())
print(f"K={k} --flip: max |p - mean of the image's and its mirror's logits| {d:.2e} "
      f"({lost.sum()} saturated pixels left out)")
assert lost.mean() < 0.5 and d <= 1e-4, "--flip is not the mean of the two"
assert np.abs(got - np.load(f"{t}/oone{k}/e4.probs.npy")).max() > 1e-3, "--flip changed nothing"
PYEOF
done

# auto is native for a run on N-sided samples and for a shard's (it keeps no original sizes)
$MPIRUN -np 1 $BIN train $SMALL --data synthetic --train-samples 8 --val-samples 0 --steps 2 \
  --checkpoint-dir $T/cksyn > $T/syn.log
$BIN pack --images $T/train/images --masks $T/train1/masks --image-size 32 --out $T/s.cgds \
  > $T/pack.log 2>&1 || { cat $T/pack.log; fail "pack"; }
grep -qF "pack: 16 of 16 images were scaled (shorter side to 32); a shard keeps no original \
sizes, so predict a model trained on it with --resize fit" $T/pack.log ||
  fail "pack's --resize hint"
$MPIRUN -np 1 $BIN train $SMALL --data $T/s.cgds --steps 2 --checkpoint-dir $T/ckcgds > $T/cgds.log
for ck in cksyn:"whose shorter side was its --image-size 32, at their own scale: native" \
          ckcgds:"does not record the sizes of its training images"; do
  $BIN predict --backend cpu --checkpoint $T/${ck%%:*} --input $T/eval/images --output $T/oo \
    > $T/o.log 2>&1 || { cat $T/o.log; fail "predict ${ck%%:*}"; }
  grep -qF -- "${ck#*:}" $T/o.log || { cat $T/o.log; fail "${ck%%:*}: auto's reason"; }
  echo "ok: ${ck%%:*}: auto is native (${ck#*:})"
done
$BIN predict --backend cpu --checkpoint $T/ckcgds --input $T/eval/images --output $T/on \
  --resize native > $T/on.log 2>&1 || { cat $T/on.log; fail "predict native"; }
for n in e1 e2 e3 e4; do
  cmp -s $T/oo/$n.png $T/on/$n.png || fail "the shard's run was not predicted natively ($n)"
done

# the scaled view is checked against --max-image-pixels before any work, its aspect kept (a
# 2000x16 strip at --resize 32 is 4000x32, not squeezed): nothing is written
mkdir -p $T/strip
$PY -c "from PIL import Image
Image.new('RGB', (40, 40)).save('$T/strip/a.png')
Image.new('RGB', (2000, 16)).save('$T/strip/b.png')"
expect2 "b.png: scaled by --resize 32 to 4000x32, more pixels than --max-image-pixels 100000" \
  $BIN predict --backend cpu --checkpoint $T/ck1 --input $T/strip --output $T/so --resize 32 \
  --max-image-pixels 100000
[ ! -e $T/so ] || fail "the refused predict left its --output directory"
# so is --resize native's: every header is read first, so an image over the limit or a file
# that is no image, last in the list, ends the run before the masks of those before it
expect2 "b.png: 2000x16 image (32000 pixels) is over the limit of 30000 pixels" \
  $BIN predict --backend cpu --checkpoint $T/ck1 --input $T/strip --output $T/so --resize native \
  --max-image-pixels 30000
[ ! -e $T/so ] || fail "the refused native predict left its --output directory"
: > $T/strip/c.png
expect2 "c.png" $BIN predict --backend cpu --checkpoint $T/ck1 --input $T/strip --output $T/so \
  --resize native
[ ! -e $T/so ] || fail "the native predict refused for an empty file left its --output directory"
rm $T/strip/c.png
# several --scales sum an image's h x w x K logits in host memory: counted before any work (a
# 255-class model, a 30000x30000 PNG header: 918 GB, refused on any machine)
$MPIRUN -np 1 $BIN train $SMALL --num-classes 255 --steps 1 --checkpoint-dir $T/ck255 \
  > $T/ck255.log
mkdir -p $T/huge
$PY -c "import struct, zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
ihdr = struct.pack('>IIBBBBB', 30000, 30000, 8, 2, 0, 0, 0)
open('$T/huge/h.png', 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
                                  chunk(b'IDAT', zlib.compress(bytes(64))) + chunk(b'IEND', b''))"
expect2 "the --scales sums of the largest image 855.0 GiB" $BIN predict --backend cpu \
  --checkpoint $T/ck255 --input $T/huge --output $T/ho --resize fit --scales 1,2 \
  --max-image-pixels 1000000000
[ ! -e $T/ho ] || fail "the refused predict left its --output directory"
# --save-probs holds a file only while an image's rows come: 120 one-tile images in one batch
# under a limit of 100 descriptors are all written
mkdir -p $T/many
$PY -c "from PIL import Image
for i in range(120): Image.new('RGB', (20, 20), (i, 2 * i % 255, 50)).save('$T/many/m%03d.png' % i)"
(ulimit -n 100; $BIN predict --backend cpu --checkpoint $T/ck1 --input $T/many --output $T/mo \
  --batch 120 --save-probs > $T/many.log 2>&1) || { cat $T/many.log; fail "120 images, 100 fds"; }
[ "$(ls $T/mo | wc -l)" = 240 ] || { cat $T/many.log; fail "not every mask and .npy written"; }
echo "ok: 120 images with --save-probs in one batch under ulimit -n 100"
# a .probs.npy that cannot be written (a directory in its place) is reported as such: the mask
# beside it is written and counted as written, the exit code is 1
mkdir -p $T/npyfail/e4.probs.npy
set +e
$BIN predict --backend cpu --checkpoint $T/ck1 --input $T/one1 --output $T/npyfail \
  --save-probs > $T/npyfail.log 2>&1
rc=$?
set -e
[ $rc = 1 ] && [ -f $T/npyfail/e4.png ] && grep -q "wrote 1 mask(s)" $T/npyfail.log &&
  grep -q "1 .probs.npy file(s) could not be written" $T/npyfail.log ||
  { cat $T/npyfail.log; fail "a failed .probs.npy: exit $rc"; }
echo "ok: a .probs.npy that cannot be written is told from its mask, which is written"
P=(predict --backend cpu --checkpoint $T/ck1 --input $T/eval/images --output $T/oo)
expect2 "--resize: 'big' is not auto, fit, native or a shorter side in pixels" "$BIN" "${P[@]}" \
  --resize big
expect2 "--resize: 0 is out of range" "$BIN" "${P[@]}" --resize 0
expect2 "--resize: 20000 is out of range" "$BIN" "${P[@]}" --resize 20000
expect2 "--scales: '1,,2' is not 1 to 8 factors" "$BIN" "${P[@]}" --scales 1,,2
expect2 "--scales: '9' is not 1 to 8 factors" "$BIN" "${P[@]}" --scales 9
expect2 "--scales: '0x1p0' is not 1 to 8 factors" "$BIN" "${P[@]}" --scales 0x1p0
expect2 "--scales: '' is not 1 to 8 factors" "$BIN" "${P[@]}" --scales ""
echo "PASS test_predict_resize"
