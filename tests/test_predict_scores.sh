#!/usr/bin/env bash
# predict --scores-out: each image's scores as CSV; --confusion-out: the summed confusion matrix.
#  - K = 3 (with --class-names): every row recomputed by NumPy from the written mask and the
#    ground truth (pixels, mIoU over the classes in truth or prediction, accuracy, mAcc, each
#    class's IoU, empty where a class is in neither; an image all ignore label: no figure, and
#    not among the lowest); rows in the inputs' order; a name
#    holding a comma and quotes comes back through Python's csv module; the pixels of the rows
#    sum to the run's; 2 ranks write the same file as 1; the three lowest mIoU are named;
#  - binary, from an --input LIST of IMAGE MASK lines: IoU, Dice, accuracy recomputed (1 where
#    neither truth nor prediction has foreground);
#  - --confusion-out counted by NumPy from the written masks (K = 3 headed by the class names,
#    binary 2 x 2), the same on 2 ranks as on 1;
#  - refused (exit 2): without ground truth, a path that is an image, the --input list, the
#    other score file, --output itself or a mask's name in --output, a directory that does not
#    exist; a file in the --output predict makes is written;
#  - a --masks mask with its JPEG image's sides swapped is named with the image and the EXIF
#    orientation it comes from, as train names it; train warns of a JPEG a viewer turns;
#    --exif-orientation apply reads it turned in train and in predict (the run's setting).
# The check reads PNGs with Debian's Pillow and NumPy (/usr/bin/python3); without: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
PY=/usr/bin/python3
$PY -c 'import PIL, numpy' 2> /dev/null ||
  { echo "SKIP: $PY has no Pillow and NumPy (python3-pil, python3-numpy)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
$PY - "$T" "$(dirname "$0")" <<'PY'
import os, random, sys
sys.path.insert(0, sys.argv[2])
from png_write import blobs, png  # png: 8-bit gray (0) or RGB (2)
t, S = sys.argv[1], 32
for d in ("k/images", "k/masks", "b/images", "b/masks"):
    os.makedirs(f"{t}/{d}")
random.seed(11)
lines = []
for i in range(9):
    ids = blobs(random, S)
    if i == 2:
        ids[0] = [255] * S  # an ignored row
    if i == 7:
        ids = [[255] * S for _ in range(S)]  # every pixel ignored: a row of no figure
    rgb = [[min(255, 50 + 80 * (v % 3) + random.randint(0, 30)) for v in r for _ in range(3)]
           for r in ids]
    name = 'odd, "one"' if i == 4 else f"{i:02d}"
    png(f"{t}/k/images/{name}.png", S, S, 2, rgb)
    png(f"{t}/k/masks/{name}.png", S, S, 0, ids)
    fg = [[255 if v and v != 255 and i != 6 else 0 for v in r] for r in ids]  # 06: background
    png(f"{t}/b/images/{i:02d}.png", S, S, 2, rgb)
    png(f"{t}/b/masks/{i:02d}.png", S, S, 0, fg)
    lines.append(f"images/{i:02d}.png masks/{i:02d}.png")
open(f"{t}/b/pairs.txt", "w").write("\n".join(lines) + "\n")
PY
S="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off
   --threads 1 --val-fraction 0 --lr 0.01 --seed 2"
$MPIRUN -np 1 $BIN train $S --data "$T/k" --num-classes 3 --class-names "bg,a b,c" --steps 12 \
  --checkpoint-dir "$T/ck" > "$T/tk.log" 2>&1 || { cat "$T/tk.log"; fail "train K = 3"; }
$MPIRUN -np 1 $BIN train $S --data "$T/b/pairs.txt" --steps 12 --checkpoint-dir "$T/cb" \
  > "$T/tb.log" 2>&1 || { cat "$T/tb.log"; fail "train binary"; }
P="predict --backend cpu"
for n in 1 2; do
  $MPIRUN -np $n $BIN $P --checkpoint "$T/ck" --input "$T/k/images" --masks "$T/k/masks" \
    --output "$T/pk$n" --scores-out "$T/k$n.csv" --confusion-out "$T/cm$n.csv" \
    > "$T/pk$n.log" 2>&1 ||
    { cat "$T/pk$n.log"; fail "predict --scores-out, $n rank(s)"; }
done
cmp "$T/k1.csv" "$T/k2.csv" || fail "2 ranks wrote other scores than 1"
cmp "$T/cm1.csv" "$T/cm2.csv" || fail "2 ranks wrote another confusion matrix than 1"
grep "^predict: the scores" "$T/pk2.log"
grep -qE "^predict: the scores of 9 image\(s\) -> $T/k2.csv; the lowest: .+ \(mIoU\)$" \
  "$T/pk2.log" || { cat "$T/pk2.log"; fail "no line naming the lowest"; }
$MPIRUN -np 2 $BIN $P --checkpoint "$T/cb" --input "$T/b/pairs.txt" --output "$T/pb" \
  --scores-out "$T/b.csv" --confusion-out "$T/cmb.csv" > "$T/pb.log" 2>&1 ||
  { cat "$T/pb.log"; fail "predict binary LIST"; }
$PY - "$T" <<'PY'
import csv, os, re, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
def f(s):
    return None if s == "" else float(s)
def close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
rows = list(csv.DictReader(open(f"{t}/k2.csv", newline="")))
assert list(rows[0].keys()) == ["name", "pixels", "miou", "acc", "macc", "iou_bg", "iou_a b",
                                "iou_c"], rows[0].keys()
names = sorted(os.path.splitext(n)[0] for n in os.listdir(f"{t}/k/images"))
assert [r["name"] for r in rows] == names, ([r["name"] for r in rows], names)
total = 0
for r in rows:
    p = np.array(Image.open(f"{t}/pk1/{r['name']}.png")).astype(int)
    g = np.array(Image.open(f"{t}/k/masks/{r['name']}.png")).astype(int)
    v = g != 255
    if not v.any():  # nothing scored: the pixels 0, every figure empty
        assert r["pixels"] == "0" and all(r[k] == "" for k in r if k not in ("name", "pixels")), r
        continue
    p, g = p[v], g[v]
    ious, accs = [], []
    for c in range(3):
        tp, inp, ing = ((p == c) & (g == c)).sum(), (p == c).sum(), (g == c).sum()
        u = inp + ing - tp
        ious.append(tp / u if u else None)
        if ing:
            accs.append(tp / ing)
    want = {"pixels": float(v.sum()), "miou": np.mean([x for x in ious if x is not None]),
            "acc": float((p == g).mean()), "macc": float(np.mean(accs))}
    for c, n in enumerate(["bg", "a b", "c"]):
        want["iou_" + n] = ious[c]
    for k, w in want.items():
        assert close(f(r[k]), w), (r["name"], k, r[k], w)
    total += int(r["pixels"])
log = open(f"{t}/pk1.log").read()
assert "(9 images, full resolution" in log and total == 8 * 32 * 32 - 32, total
low = sorted((r for r in rows if r["miou"]), key=lambda r: float(r["miou"]))[:3]
want = "; the lowest: " + ", ".join('%s %.4f' % (r["name"] if "," not in r["name"] else
                                     '"' + r["name"].replace('"', '""') + '"', float(r["miou"]))
                                     for r in low) + " (mIoU)"
assert want in log, (want, log)
rows = list(csv.DictReader(open(f"{t}/b.csv", newline="")))
assert [r["name"] for r in rows] == ["%02d" % i for i in range(9)], rows
for r in rows:
    p = np.array(Image.open(f"{t}/pb/{r['name']}.png")) > 0
    g = np.array(Image.open(f"{t}/b/masks/{r['name']}.png")) > 0
    tp, fp, fn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum()
    want = {"pixels": p.size, "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
            "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "acc": (p == g).mean()}
    for k, w in want.items():
        assert close(f(r[k]), float(w)), (r["name"], k, r[k], w)
print("ok: every row recomputed from the written masks (K = 3: %d, binary: %d)" % (9, len(rows)))
def matrix(path, names, pred_dir, mask_dir, k, binary):
    got = list(csv.reader(open(path, newline="")))
    assert got[0] == ["truth\\predicted"] + names and [r[0] for r in got[1:]] == names, got
    want = np.zeros((k, k), int)
    for f in os.listdir(mask_dir):
        p = np.array(Image.open(f"{pred_dir}/{f}")).astype(int)
        g = np.array(Image.open(f"{mask_dir}/{f}")).astype(int)
        if binary:
            p, g = (p > 0).astype(int), (g > 0).astype(int)
        v = g != 255
        np.add.at(want, (g[v], p[v]), 1)
    assert (np.array([[int(x) for x in r[1:]] for r in got[1:]]) == want).all(), (got, want)
matrix(f"{t}/cm1.csv", ["bg", "a b", "c"], f"{t}/pk1", f"{t}/k/masks", 3, False)
matrix(f"{t}/cmb.csv", ["background", "foreground"], f"{t}/pb", f"{t}/b/masks", 2, True)
print("ok: --confusion-out as NumPy counts it (K = 3 with names, binary)")
PY
echo "ok: --scores-out: K = 3 and binary rows as NumPy computes them; 2 ranks = 1 rank"

expect2 "--scores-out: scores against the ground truth, and there is none" \
  $BIN $P --checkpoint "$T/ck" --input "$T/k/images" --output "$T/q" --scores-out "$T/x.csv"
expect2 "--scores-out: '$T/k/images/00.png' is a PNG image" $BIN $P --checkpoint "$T/ck" \
  --input "$T/k/images" --masks "$T/k/masks" --output "$T/q" --scores-out "$T/k/images/00.png"
expect2 "--scores-out '$T/b/pairs.txt' is the --input list" $BIN $P --checkpoint "$T/cb" \
  --input "$T/b/pairs.txt" --output "$T/q" --scores-out "$T/b/pairs.txt"
expect2 "--scores-out: directory '$T/none' of '$T/none/x.csv' does not exist" $BIN $P \
  --checkpoint "$T/ck" --input "$T/k/images" --masks "$T/k/masks" --output "$T/q" \
  --scores-out "$T/none/x.csv"
expect2 "--confusion-out: scores against the ground truth, and there is none" \
  $BIN $P --checkpoint "$T/ck" --input "$T/k/images" --output "$T/q" --confusion-out "$T/x.csv"
K="$BIN $P --checkpoint $T/ck --input $T/k/images --masks $T/k/masks"
expect2 "--confusion-out '$T/./s.csv' is the --scores-out file too" \
  $K --output "$T/q" --scores-out "$T/s.csv" --confusion-out "$T/./s.csv"
expect2 "--scores-out '$T/q2/00.png' is in --output and named as predict's outputs are" \
  $K --output "$T/q2" --scores-out "$T/q2/00.png"
expect2 "--confusion-out: '$T/q3' is a directory" $K --output "$T/q3" --confusion-out "$T/q3"
$K --output "$T/q4" --scores-out "$T/q4/scores.csv" > "$T/q4.log" 2>&1 ||
  { cat "$T/q4.log"; fail "--scores-out in a new --output"; }
[ "$(wc -l < "$T/q4/scores.csv")" = 10 ] || fail "--scores-out in --output: not 9 rows"
echo "ok: --scores-out in the --output predict makes; beside masks only under other names"
# a mask drawn on a JPEG photo turned by its EXIF orientation: its sides swapped, the message
# says so (as train's does), naming the image
mkdir -p "$T/ex/images" "$T/ex/masks"
$PY -c "from PIL import Image
ex = Image.Exif()
ex[274] = 8
Image.new('RGB', (48, 32), (90, 40, 10)).save('$T/ex/images/p.jpg', exif=ex.tobytes())
Image.new('L', (32, 48), 1).save('$T/ex/masks/p.png')"
expect2 "ex/images/p.jpg is 48x32 (sides swapped: its EXIF orientation 8 says a viewer shows it \
turned 90 degrees counter-clockwise" $BIN predict \
  --backend cpu --checkpoint "$T/cb" --input "$T/ex/images" --masks "$T/ex/masks" \
  --output "$T/ex/out"
# train warns of the images a viewer turns (EXIF orientation 3, square: no size mismatch)
mkdir -p "$T/ex2/images" "$T/ex2/masks"
$PY -c "from PIL import Image
ex = Image.Exif()
ex[274] = 3
Image.new('RGB', (32, 32), (90, 40, 10)).save('$T/ex2/images/u.jpg', exif=ex.tobytes())
Image.new('L', (32, 32), 1).save('$T/ex2/masks/u.png')"
$MPIRUN -np 1 $BIN train --backend cpu --data "$T/ex2" --image-size 32 --model-base 4 \
  --model-depth 2 --steps 1 --batch 1 --val-fraction 0 --progress off > "$T/ex2.log" 2>&1 ||
  { cat "$T/ex2.log"; fail "train on a turned JPEG"; }
grep -q "warning: --data: 1 JPEG image(s) carry an EXIF orientation .*u.jpg: 3, shown turned \
180 degrees" "$T/ex2.log" || { cat "$T/ex2.log"; fail "no EXIF orientation warning"; }
echo "ok: train warns of a JPEG turned by its EXIF orientation"
# --exif-orientation apply: train reads it turned (said, not warned of); predict takes the run's
# setting from its checkpoint, so the mask drawn on the turned photo (ex: orientation 8) scores
# and the output has the turned size; a resume may not change the setting
$MPIRUN -np 1 $BIN train --backend cpu --data "$T/ex2" --image-size 32 --model-base 4 \
  --model-depth 2 --steps 1 --batch 1 --val-fraction 0 --progress off --exif-orientation apply \
  --checkpoint-dir "$T/ex2ck" > "$T/ex2a.log" 2>&1 || { cat "$T/ex2a.log"; fail "train apply"; }
grep -q "^--data: 1 JPEG image(s) read turned as their EXIF orientation says" "$T/ex2a.log" &&
  ! grep -q "warning: --data: 1 JPEG" "$T/ex2a.log" || { cat "$T/ex2a.log"; fail "apply: said"; }
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ex2ck" --input "$T/ex/images" \
  --masks "$T/ex/masks" --output "$T/ex/out2" > "$T/exp.log" 2>&1 ||
  { cat "$T/exp.log"; fail "predict the run's --exif-orientation apply"; }
grep -q "predict: --exif-orientation apply (the run's)" "$T/exp.log" || fail "predict: not said"
$PY -c "from PIL import Image
assert Image.open('$T/ex/out2/p.png').size == (32, 48), Image.open('$T/ex/out2/p.png').size" ||
  fail "predict --exif-orientation apply: the output is not of the turned size"
expect2 "--exif-orientation: the checkpoint has apply, the command line stored" $MPIRUN -np 1 \
  $BIN train --backend cpu --data "$T/ex2" --image-size 32 --model-base 4 --model-depth 2 \
  --steps 2 --batch 1 --val-fraction 0 --progress off --exif-orientation stored \
  --checkpoint-dir "$T/ex2ck" --resume "$T/ex2ck"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/cb" --input "$T/ex2/images" \
  --output "$T/ex2/out" > "$T/exs.log" 2>&1 || { cat "$T/exs.log"; fail "predict stored"; }
grep -q "predict: JPEG inputs carry an EXIF orientation .*u.jpg: 3, shown turned 180 degrees); \
they are read as stored (the run's setting)" "$T/exs.log" ||
  { cat "$T/exs.log"; fail "no warning"; }
$BIN info --split --data "$T/ex" --exif-orientation apply --image-size 32 --val-fraction 0 \
  > "$T/exi.log" 2>&1 ||
  { cat "$T/exi.log"; fail "info --split --exif-orientation apply"; }
echo "ok: --exif-orientation apply in train, predict (the run's), resume, info; predict warns"
echo "PASS test_predict_scores"
