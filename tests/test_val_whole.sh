#!/usr/bin/env bash
# --val-mode whole: validation over whole images at the training scale (and full: scored at their
# own size). A binary model is trained at --image-size 32 on 64x112 photos and validated on
# images of other shapes (wide, tall, a JPEG, one smaller than a tile). Checks:
#  - the figures equal predict's on the network's view of each image: the image and its mask
#    scaled to a shorter side of 32 by cg_resize_tool (the same cg_fit_pair), predicted with
#    --resize native: IoU, Dice and accuracy to 1e-6, and the loss (BCE + soft Dice per image,
#    from predict's probabilities) to 1e-4; for K = 3 with the ignore label, mIoU and accuracy
#    to 1e-6;
#  - 2 ranks x batch 2 give the figures of 1 rank x batch 4;
#  - a shard of the validation set packed with --store whole gives the directory's figures;
#  - --val-mode square scores other figures (the centred squares);
#  - a validation image that fails to load ends the run naming it (exit 2), or is named and
#    counted with --skip-bad;
#  - 2 ranks with very unequal work (a 127-tile image and a 1-tile one) under --timeout-s 1: the
#    rank that is done first waits beating the watchdog;
#  - --val-mode full gives predict --resize fit's IoU, Dice and accuracy to 1e-6 (K = 3: mIoU),
#    its loss the mean over images of BCE + soft Dice from predict's probabilities at each
#    image's own size (1e-4), the same on 2 ranks, strips beyond 64:1 too (their aspect kept,
#    not squeezed as whole squeezes them); a shard is refused (exit 2);
#  - a bad --val-mode exits 2 naming the flag.
# The files are written with Debian's Pillow and NumPy (/usr/bin/python3); without: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
TOOL=$BUILD/tests/cg_resize_tool
PY=/usr/bin/python3
$PY -c 'import PIL, numpy' 2> /dev/null || { echo "SKIP: $PY has no Pillow or NumPy"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

$PY - "$T" << 'PYEOF'
import os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
rng = np.random.default_rng(3)
def scene(h, w):  # dark noise, red discs (class 1) and blue ones (2) in a band of ignore (255)
    im = rng.integers(20, 70, (h, w, 3)).astype(np.uint8)
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(max(3, h * w // 1200)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 12) * min(h, w) / 40
        cls = int(rng.integers(1, 3))
        d = np.hypot(yy + 0.5 - cy, xx + 0.5 - cx)
        m[(d > r) & (d <= r + 1.5) & (m == 0)] = 255
        im[d <= r], m[d <= r] = (220, 40, 40) if cls == 1 else (40, 60, 230), cls
    return im, m
for d, shapes in (("train", [(64, 112)] * 16),
                  ("val", [(32, 72), (32, 90), (44, 32), (64, 150), (70, 52), (20, 30)])):
    for sub in ("images", "masks", "masks3"):
        os.makedirs(f"{t}/{d}/{sub}")
    for i, (h, w) in enumerate(shapes):
        im, m = scene(h, w)
        ext = "jpg" if (d, i) == ("val", 4) else "png"
        Image.fromarray(im).save(f"{t}/{d}/images/{d[0]}{i:02d}.{ext}")
        Image.fromarray(((m == 1) | (m == 2)).astype(np.uint8) * 255).save(
            f"{t}/{d}/masks/{d[0]}{i:02d}.png")
        Image.fromarray(m).save(f"{t}/{d}/masks3/{d[0]}{i:02d}.png")
    os.makedirs(f"{t}/{d}3")  # K = 3: the same images beside the class-id masks
    os.symlink(f"{t}/{d}/images", f"{t}/{d}3/images")
    os.symlink(f"{t}/{d}/masks3", f"{t}/{d}3/masks")
for sub in ("images", "masks"):  # one 64x4096 image (127 tiles of 64) and one of a tile
    os.makedirs(f"{t}/uneven/{sub}")
for name, (h, w) in (("a", (64, 4096)), ("b", (64, 64))):
    im, m = scene(h, w)
    Image.fromarray(im).save(f"{t}/uneven/images/{name}.png")
    Image.fromarray((m > 0).astype(np.uint8) * 255).save(f"{t}/uneven/masks/{name}.png")
for sub in ("images", "masks"):  # strips beyond 64:1 (83:1, 1:100): full keeps their aspect
    os.makedirs(f"{t}/strips/{sub}")
for name, (h, w) in (("s", (3, 250)), ("t", (300, 3))):
    im, m = scene(h, w)
    Image.fromarray(im).save(f"{t}/strips/images/{name}.png")
    Image.fromarray((m > 0).astype(np.uint8) * 255).save(f"{t}/strips/masks/{name}.png")
PYEOF

RUN="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
     --seed 5 --steps 30 --lr 0.01 --data $T/train --val-every 0"
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/val --val-mode whole --checkpoint-dir $T/ck \
  --metrics-out $T/m1.json > $T/t1.log
grep "final validation" $T/t1.log
# the network's view of each validation image, predicted natively by the checkpoint
mkdir -p $T/view/images $T/view/masks
for f in $T/val/images/*; do
  n=$(basename "${f%.*}")
  $TOOL "$f" 32 $T/view/images/$n.png $T/val/masks/$n.png $T/view/masks/$n.png > /dev/null
done
$BIN predict --backend cpu --checkpoint $T/ck --input $T/view/images --masks $T/view/masks \
  --output $T/pred --resize native --save-probs > $T/pred.log 2>&1 ||
  { cat $T/pred.log; fail predict; }
grep "predict: IoU" $T/pred.log
$PY - "$T" << 'PYEOF'
import glob, json, os, re, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
m = json.load(open(f"{t}/m1.json"))
p = re.search(r"IoU ([0-9.]+)  Dice ([0-9.]+)  accuracy ([0-9.]+)", open(f"{t}/pred.log").read())
for key, want in zip(("val_iou", "val_dice", "val_acc"), map(float, p.groups())):
    assert abs(m[key] - want) <= 1e-6, f"{key} {m[key]} vs predict's {want}"
loss = []  # per image: mean BCE + soft Dice, from the probabilities
for f in sorted(glob.glob(f"{t}/pred/*.probs.npy")):
    q = np.clip(np.load(f)[..., 0].astype(np.float64), 1e-12, 1 - 1e-12)
    y = np.array(Image.open(f"{t}/view/masks/" + os.path.basename(f)[:-10] + ".png")) > 0
    bce = -np.mean(np.where(y, np.log(q), np.log(1 - q)))
    loss.append(bce + 1 - (2 * (q * y).sum() + 1) / (q.sum() + y.sum() + 1))
print(f"val_loss {m['val_loss']:.6f}, from predict's probabilities {np.mean(loss):.6f}; val_iou "
      f"{m['val_iou']:.6f} = predict's {p.group(1)}")
assert len(loss) == 6 and abs(m["val_loss"] - np.mean(loss)) <= 1e-4, "val_loss differs"
PYEOF
# K = 3 (the ignore label 255 left out): mIoU, mDice and accuracy as predict scores them
$MPIRUN -np 1 $BIN ${RUN/--data $T\/train/--data $T/train3} --num-classes 3 --batch 4 \
  --val-data $T/val3 --val-mode whole --checkpoint-dir $T/ck3 --metrics-out $T/k3.json > $T/k3.log
mkdir -p $T/view3/images $T/view3/masks
for f in $T/val/images/*; do
  n=$(basename "${f%.*}")
  $TOOL "$f" 32 $T/view3/images/$n.png $T/val/masks3/$n.png $T/view3/masks/$n.png 3 > /dev/null
done
$BIN predict --backend cpu --checkpoint $T/ck3 --input $T/view3/images --masks $T/view3/masks \
  --output $T/pred3 --resize native > $T/pred3.log 2>&1 || { cat $T/pred3.log; fail predict; }
grep "predict: mIoU" $T/pred3.log
$PY - "$T" << 'PYEOF'
import json, re, sys
t = sys.argv[1]
m = json.load(open(f"{t}/k3.json"))
p = re.search(r"mIoU ([0-9.]+)  mDice ([0-9.]+)  accuracy ([0-9.]+)  mAcc ([0-9.]+)",
              open(f"{t}/pred3.log").read())
for key, want in (("miou", float(p.group(1))), ("val_acc", float(p.group(3))),
                  ("macc", float(p.group(4)))):
    assert abs(m[key] - want) <= 1e-6, f"{key} {m[key]} vs predict's {want}"
print(f"K = 3: miou {m['miou']:.6f}, macc {m['macc']:.6f} = predict's {p.group(1)}, {p.group(4)}")
# predict's figures from its masks, as mmsegmentation's IoUMetric computes them (nanmean over
# the classes: IoU over those in the truth or the prediction, Acc over those in the truth)
import glob, os
import numpy as np
from PIL import Image
inter, union, label = np.zeros(3), np.zeros(3), np.zeros(3)
for f in sorted(glob.glob(f"{t}/pred3/*.png")):
    pr = np.array(Image.open(f))
    gt = np.array(Image.open(f"{t}/view3/masks/{os.path.basename(f)}"))
    keep = gt != 255
    pr, gt = pr[keep], gt[keep]
    for c in range(3):
        inter[c] += ((pr == c) & (gt == c)).sum()
        union[c] += ((pr == c) | (gt == c)).sum()
        label[c] += (gt == c).sum()
with np.errstate(invalid="ignore"):
    miou, macc = np.nanmean(inter / union), np.nanmean(inter / label)
print(f"K = 3 from predict's masks: mIoU {miou:.6f}, mAcc {macc:.6f}")
assert abs(miou - float(p.group(1))) <= 1e-6 and abs(macc - float(p.group(4))) <= 1e-6
PYEOF
echo "ok: --val-mode whole scores what predict scores on the network's view of each image"

# --val-mode full: predict --resize fit's figures, at each image's own size (binary and K = 3)
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/val --val-mode full --checkpoint-dir $T/ckf \
  --metrics-out $T/f1.json > $T/f1.log
grep -q "(validated whole, scored at full resolution)" $T/f1.log || fail "full: banner"
$BIN predict --backend cpu --checkpoint $T/ckf/best --input $T/val/images --masks $T/val/masks \
  --output $T/predf --resize fit --save-probs > $T/predf.log 2>&1 || { cat $T/predf.log; fail fit; }
$MPIRUN -np 1 $BIN ${RUN/--data $T\/train/--data $T/train3} --num-classes 3 --batch 4 \
  --val-data $T/val3 --val-mode full --checkpoint-dir $T/ckf3 --metrics-out $T/f3.json > $T/f3.log
$BIN predict --backend cpu --checkpoint $T/ckf3/best --input $T/val/images \
  --masks $T/val/masks3 --output $T/predf3 --resize fit > $T/predf3.log 2>&1 ||
  { cat $T/predf3.log; fail "fit K = 3"; }
$MPIRUN -np 2 $BIN $RUN --batch 2 --val-data $T/val --val-mode full --metrics-out $T/f2.json \
  > $T/f2.log
$PY - "$T" << 'PYEOF'
import glob, json, os, re, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
m, m2, m3 = (json.load(open(f"{t}/{n}.json")) for n in ("f1", "f2", "f3"))
p = re.search(r"IoU ([0-9.]+)  Dice ([0-9.]+)  accuracy ([0-9.]+)", open(f"{t}/predf.log").read())
for key, want in zip(("val_iou", "val_dice", "val_acc"), map(float, p.groups())):
    assert abs(m[key] - want) <= 1e-6, f"full: {key} {m[key]} vs predict --resize fit's {want}"
loss = []  # per image at its own size: mean BCE + soft Dice, from the probabilities
for f in sorted(glob.glob(f"{t}/predf/*.probs.npy")):
    q = np.clip(np.load(f)[..., 0].astype(np.float64), 1e-12, 1 - 1e-12)
    y = np.array(Image.open(f"{t}/val/masks/" + os.path.basename(f)[:-10] + ".png")) > 0
    assert q.shape == y.shape
    bce = -np.mean(np.where(y, np.log(q), np.log(1 - q)))
    loss.append(bce + 1 - (2 * (q * y).sum() + 1) / (q.sum() + y.sum() + 1))
assert len(loss) == 6 and abs(m["val_loss"] - np.mean(loss)) <= 1e-4, "full: val_loss differs"
p3 = re.search(r"mIoU ([0-9.]+)  mDice ([0-9.]+)  accuracy ([0-9.]+)",
               open(f"{t}/predf3.log").read())
for key, want in (("miou", float(p3.group(1))), ("val_acc", float(p3.group(3)))):
    assert abs(m3[key] - want) <= 1e-6, f"full K = 3: {key} {m3[key]} vs predict's {want}"
d = max(abs(m2[k] - m[k]) for k in ("val_loss", "val_iou", "val_dice", "val_acc"))
assert d <= 1e-6, f"full: 2 ranks differ by {d}"
w = json.load(open(f"{t}/m1.json"))
print(f"--val-mode full: val_iou {m['val_iou']:.6f} = predict --resize fit's {p.group(1)}, "
      f"val_loss {m['val_loss']:.6f} (probabilities: {np.mean(loss):.6f}); K = 3 mIoU "
      f"{m3['miou']:.6f} = {p3.group(1)}; 2 ranks {d:.1e}; whole (training scale) val_iou "
      f"{w['val_iou']:.6f}")
PYEOF
# strips longer than 64 times their shorter side: full keeps the aspect, as predict does
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/strips --val-mode full --checkpoint-dir $T/cks \
  > $T/fs.log
$BIN predict --backend cpu --checkpoint $T/cks/best --input $T/strips/images \
  --masks $T/strips/masks --output $T/preds --resize fit > $T/preds.log 2>&1 ||
  { cat $T/preds.log; fail "fit: strips"; }
$PY - "$T" << 'PYEOF'
import re, sys
t = sys.argv[1]
v = re.search(r"IoU ([0-9.]+)  Dice ([0-9.]+)  accuracy ([0-9.]+)", open(f"{t}/fs.log").read())
p = re.search(r"IoU ([0-9.]+)  Dice ([0-9.]+)  accuracy ([0-9.]+)", open(f"{t}/preds.log").read())
for a, b in zip(v.groups(), p.groups()):
    assert abs(float(a) - float(b)) <= 1e-4, f"strips: full {v.groups()} vs predict {p.groups()}"
print(f"strips beyond 64:1: full IoU {v.group(1)} = predict --resize fit's {p.group(1)}")
PYEOF
echo "ok: --val-mode full scores what predict --resize fit scores"

# 2 ranks x batch 2 = 1 rank x batch 4
$MPIRUN -np 2 $BIN $RUN --batch 2 --val-data $T/val --val-mode whole --metrics-out $T/m2.json \
  > $T/t2.log
# a shard of the validation set, its images whole
$BIN pack --images $T/val/images --masks $T/val/masks --image-size 32 --store whole \
  --out $T/val.cgds > $T/pack.log 2>&1 || { cat $T/pack.log; fail pack; }
# pack --store whole squeezes a side beyond 64:1 and says so
$BIN pack --images $T/strips/images --masks $T/strips/masks --image-size 32 --store whole \
  --out $T/strips.cgds > $T/packs.log 2>&1 || { cat $T/packs.log; fail "pack the strips"; }
grep -q "pack: 2 of 2 images are longer than 64 times their shorter side" $T/packs.log ||
  { cat $T/packs.log; fail "pack --store whole: no squeeze warning"; }
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/val.cgds --val-mode whole \
  --metrics-out $T/m3.json > $T/t3.log
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/val --val-mode square --metrics-out $T/m4.json \
  > $T/t4.log
expect2 "--val-mode full: the validation data ($T/val.cgds) is a .cgds shard" $MPIRUN -np 1 \
  $BIN $RUN --batch 4 --val-data $T/val.cgds --val-mode full
$PY - "$T" << 'PYEOF'
import json, sys
t = sys.argv[1]
m = [json.load(open(f"{t}/m{i}.json")) for i in (1, 2, 3, 4)]
keys = ("val_loss", "val_iou", "val_dice", "val_acc")
for i, what in ((1, "2 ranks x batch 2"), (2, "the --store whole shard")):
    d = max(abs(m[i][k] - m[0][k]) for k in keys)
    print(f"{what}: largest difference from 1 rank x batch 4 on the directory {d:.1e}")
    assert d <= 1e-6, what
assert any(abs(m[3][k] - m[0][k]) > 1e-4 for k in keys), "square scored as whole"
print(f"--val-mode square: val_iou {m[3]['val_iou']:.4f} (whole: {m[0]['val_iou']:.4f})")
PYEOF

# a validation image that fails to load: named, or counted with --skip-bad
cp -r $T/val $T/badval
head -c 120 $T/val/images/v01.png > $T/badval/images/v01.png # the header, then cut
expect2 "badval/images/v01.png" $MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/badval \
  --val-mode whole
$MPIRUN -np 1 $BIN $RUN --batch 4 --val-data $T/badval --val-mode whole --skip-bad > $T/t5.log 2>&1
grep -q -- "--skip-bad: 1 sample load(s) skipped in validation" $T/t5.log ||
  { cat $T/t5.log; fail "--skip-bad did not count the bad validation image"; }
grep -q "skipping a bad sample (--skip-bad): .*badval/images/v01.png: PNG decode failed" \
  $T/t5.log || { cat $T/t5.log; fail "--skip-bad did not name the bad validation image"; }
grep -q "(5 images)" $T/t5.log || { cat $T/t5.log; fail "5 images should be scored"; }
echo "ok: a bad validation image is named, or counted with --skip-bad"
# ranks with unequal work: rank 0 validates the 127 tiles of the wide image (about 1.5 s), rank 1
# its one tile, then waits for rank 0 beating the watchdog (--timeout-s 1 would end the job)
$MPIRUN -np 2 $BIN train --backend cpu --model-base 16 --model-depth 3 --image-size 64 \
  --progress off --threads 1 --steps 2 --batch 2 --data $T/train --val-data $T/uneven \
  --val-mode whole --timeout-s 1 > $T/t6.log 2>&1 || { cat $T/t6.log; fail "uneven ranks"; }
grep -q "final validation: .*(2 images)" $T/t6.log || { cat $T/t6.log; fail "uneven ranks"; }
echo "ok: a rank with less to validate waits for the others without tripping the watchdog"
expect2 "--val-mode" $BIN $RUN --batch 4 --val-data $T/val --val-mode tiles
echo "PASS test_val_whole"
