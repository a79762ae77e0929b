#!/usr/bin/env bash
# predict round trip: train briefly on a PNG directory with a separate validation directory,
# predict that directory's images from the final checkpoint on 2 ranks: one mask per image,
# same names and sizes, a batch no larger than the rank's tiles, and the IoU predict prints
# equals the final validation IoU; an --output
# that is the --input or --masks directory is refused (exit 2) and nothing there changes.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$BUILD/bench/cogpu-bench make-pngs --out "$T/train" --count 96 --image-size 32 --seed 5 > /dev/null
$BUILD/bench/cogpu-bench make-pngs --out "$T/val" --count 13 --image-size 32 --seed 9 > /dev/null
$MPIRUN -np 2 $BIN train --backend cpu --data "$T/train" --val-data "$T/val" --image-size 32 \
  --model-base 4 --model-depth 2 --batch 4 --steps 240 --lr 3e-3 --progress off --threads 1 \
  --checkpoint-dir "$T/ck" --metrics-out "$T/m.json" > "$T/train.log"
CK=$(ls "$T"/ck/*.cgck | tail -1)
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/val/images" \
  --masks "$T/val/masks" --output "$T/pred" | tee "$T/pred.log"
[ "$(ls "$T/pred" | wc -l)" -eq 13 ] || { echo "FAIL: want 13 masks"; exit 1; }
# rank 0's 7 images are 7 tiles: its backend's batch is 7, not the default 8 (the IoU below
# shows the smaller batch predicts the same)
grep -q "tiles 32x32 overlap 0.50, 7 a step" "$T/pred.log" || { echo "FAIL: batch not 7"; exit 1; }
python3 - "$T" <<'PY'
import json, os, re, struct, sys
t = sys.argv[1]
m = json.load(open(t + "/m.json"))
log = open(t + "/pred.log").read()
iou = float(re.search(r"IoU ([0-9.]+)", log).group(1))
print("validation IoU %.6f, predict IoU %.6f" % (m["val_iou"], iou))
assert abs(iou - m["val_iou"]) < 1e-6, "predict's IoU differs from the validation metric"
for f in sorted(os.listdir(t + "/pred")):
    assert os.path.exists(t + "/val/images/" + f), f
    head = open(t + "/pred/" + f, "rb").read(24)
    w, h = struct.unpack(">II", head[16:24])
    assert (w, h) == (32, 32), (f, w, h)
print("PASS masks written with the images' names and sizes; IoU matches validation")
PY
set +e
$MPIRUN -np 2 $BIN predict --checkpoint "$T/nothing.cgck" --input "$T/val/images" --output "$T/p2" 2> "$T/err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "nothing.cgck" "$T/err" || { echo "FAIL: missing checkpoint: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS a missing checkpoint is named, exit 2"
# --output onto the images or the ground truth (spelled another way): refused, nothing replaced
sums() { cat "$T"/val/images/* "$T"/val/masks/* | md5sum; }
before=$(sums)
for pair in "images/.:--input" "masks:--masks"; do
  bad=${pair%%:*} flag=${pair#*:}
  set +e
  $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/val/images" \
    --masks "$T/val/masks" --output "$T/val/$bad" 2> "$T/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "is the $flag directory" "$T/err" ||
    { echo "FAIL: --output onto $flag: rc $rc"; cat "$T/err"; exit 1; }
  echo "PASS --output onto $flag refused, exit 2: $(cat "$T/err")"
done
# the same without --masks: DIR/masks beside --input DIR/images is the ground truth
set +e
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/val/images" \
  --output "$T/val/masks/" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "is the masks directory beside --input's images" "$T/err" ||
  { echo "FAIL: --output onto DIR/masks without --masks: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS --output onto DIR/masks beside --input DIR/images refused, exit 2"
[ "$(sums)" = "$before" ] || { echo "FAIL: the images or masks changed"; exit 1; }
# A forged checkpoint (base and nclass changed, header CRC made to match): its header contradicts
# its parameter count. inspect calls it invalid; predict and export refuse it (exit 2) instead of
# reading the payload into buffers sized for another model.
for f in base:20 nclass:180; do
  name=${f%%:*} off=${f#*:}
  python3 - "$CK" "$T/forged_$name.cgck" "$off" <<'PY'
import struct, sys, zlib
src, dst, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(src, "rb").read())
v = struct.unpack_from("<i", b, off)[0]
struct.pack_into("<i", b, off, 3 if off == 20 else 2)
struct.pack_into("<I", b, 252, zlib.crc32(bytes(b[:252])) & 0xffffffff)
open(dst, "wb").write(bytes(b))
PY
  set +e
  $BIN inspect "$T/forged_$name.cgck" > "$T/insp" 2>&1; ri=$?
  $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/forged_$name.cgck" \
    --input "$T/val/images" --output "$T/pf_$name" > "$T/err" 2>&1; rp=$?
  $BIN export --checkpoint "$T/forged_$name.cgck" --out "$T/f.safetensors" > "$T/err2" 2>&1; re=$?
  set -e
  [ $ri -eq 1 ] && grep -q "INVALID: .*inconsistent header" "$T/insp" ||
    { echo "FAIL inspect of a forged $name: rc $ri"; cat "$T/insp"; exit 1; }
  [ $rp -eq 2 ] && grep -q "inconsistent header" "$T/err" ||
    { echo "FAIL predict of a forged $name: rc $rp"; cat "$T/err"; exit 1; }
  [ $re -eq 2 ] && grep -q "inconsistent header" "$T/err2" ||
    { echo "FAIL export of a forged $name: rc $re"; cat "$T/err2"; exit 1; }
  echo "PASS a forged $name: $(grep -o 'inconsistent header.*' "$T/insp")"
done
# A checkpoint of 8192x8192 tiles (the largest --image-size; forged here, CRC made to match):
# the cpu backend's batch of tiles would need far more host memory than a test machine has, so
# predict refuses it up front, naming the checkpoint and the tile size, instead of swapping.
python3 - "$CK" "$T/huge.cgck" <<'PY'
import struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read())
struct.pack_into("<ii", b, 28, 8192, 8192)
struct.pack_into("<I", b, 252, zlib.crc32(bytes(b[:252])) & 0xffffffff)
open(sys.argv[2], "wb").write(bytes(b))
PY
set +e
timeout 60 $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/huge.cgck" \
  --input "$T/val/images" --output "$T/ph" > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "huge.cgck: tiles of 8192x8192, --batch 8: not enough host memory" \
  "$T/err" || { echo "FAIL predict of 8192x8192 tiles: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS 8192x8192 tiles refused up front: $(grep -o 'not enough host memory[^:]*' "$T/err")"
# --input lists regular image files only (as train does): a FIFO named like an image is skipped,
# not read forever; two images of one stem would write one mask: exit 2 naming both
mkdir -p "$T/in2"; cp "$T"/val/images/00000[0-2].png "$T/in2/"; mkfifo "$T/in2/zz.png"
timeout 60 $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/in2" \
  --output "$T/p3" > "$T/err" 2>&1 || { echo "FAIL predict beside a FIFO: rc $?"; cat "$T/err"; exit 1; }
[ "$(ls "$T/p3" | wc -l)" -eq 3 ] || { echo "FAIL want 3 masks beside a FIFO"; exit 1; }
rm "$T/in2/zz.png"; cp "$T/in2/000001.png" "$T/in2/000001.PNG"
set +e
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/in2" --output "$T/p4" \
  > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "'000001.PNG' and '000001.png' would both be predicted to 000001.png" \
  "$T/err" || { echo "FAIL two images of one stem: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS a FIFO in --input is skipped; two images of one stem are refused"
# SIGTERM while predicting: it stops at the next batch, exits 143, and every mask it wrote is
# complete (no partial file, no hidden temporary left in --output)
$BUILD/bench/cogpu-bench make-pngs --out "$T/big" --count 6 --image-size 1024 > /dev/null
$BIN predict --backend cpu --checkpoint "$CK" --input "$T/big/images" --output "$T/pb" \
  --save-probs > "$T/stop.log" 2>&1 &
pid=$!
for i in $(seq 200); do grep -q "^predict: 6 image(s)" "$T/stop.log" && break; sleep 0.05; done
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 143 ] && grep -q "stopped by a signal" "$T/stop.log" &&
  [ -z "$(ls -A "$T/pb" | grep '^\.')" ] ||
  { echo "FAIL SIGTERM during predict: rc $rc, $(ls -A "$T/pb")"; cat "$T/stop.log"; exit 1; }
echo "PASS SIGTERM during predict: exit 143, $(ls "$T/pb" | grep -c 'png$') complete mask(s), no temporary"
# a FIFO named like a --masks file is refused naming it, not read forever
mkdir -p "$T/m5"; cp "$T"/val/masks/00000[0-2].png "$T/m5/"; rm "$T/m5/000001.png"
mkfifo "$T/m5/000001.png"; rm -f "$T/in2/000001.PNG"
set +e
timeout 60 $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/in2" \
  --masks "$T/m5" --output "$T/p5" > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "m5/000001.png: a FIFO, not a regular file" "$T/err" ||
  { echo "FAIL a FIFO in --masks: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS a FIFO in --masks is named, exit 2"
# --masks DIR finds NAME.jpg too (binary JPEG masks: here JPEG images standing in for them),
# scores as a list naming the same pairs, and a missing mask is named before anything is written
$BUILD/bench/cogpu-bench make-pngs --out "$T/jv" --count 5 --image-size 32 --seed 9 \
  --format jpeg > /dev/null
mkdir -p "$T/jm" && cp "$T"/jv/images/*.jpg "$T/jm/"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/jv/images" \
  --masks "$T/jm" --output "$T/pj" > "$T/pj.log" 2>&1 ||
  { echo "FAIL JPEG masks"; cat "$T/pj.log"; exit 1; }
for f in "$T"/jv/images/*.jpg; do echo "$f $T/jm/$(basename "$f")"; done > "$T/jm.txt"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/jm.txt" \
  --output "$T/pk" > "$T/pk.log" 2>&1 || { echo "FAIL JPEG mask list"; cat "$T/pk.log"; exit 1; }
diff <(grep "^predict: IoU" "$T/pj.log") <(grep "^predict: IoU" "$T/pk.log") > /dev/null &&
  grep -q "^predict: IoU" "$T/pj.log" || { echo "FAIL --masks DIR of JPEGs"; exit 1; }
rm "$T/jm/000003.jpg"
set +e
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/jv/images" \
  --masks "$T/jm" --output "$T/pm" > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "no mask 000003.png (or .jpg, .jpeg, .gif, .tif, .tiff, .bmp) for" \
    "$T/err" &&
  [ -z "$(ls "$T/pm" 2>/dev/null)" ] ||
  { echo "FAIL a missing mask: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS --masks DIR of JPEG masks scores as a list of them; a missing mask is named up front"
# ranks that read different images (a node's own copy) are refused, not half-predicted: rank 1
# is shown one image more
mkdir -p "$T/jv2" && cp -r "$T/jv/images" "$T/jv2/"
cp "$T/jv/images/000000.jpg" "$T/jv2/images/zz.jpg"
set +e
timeout 120 $MPIRUN -np 2 sh -c 'd=$1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && d=$2; shift 2
  exec "$@" --input "$d"' sh "$T/jv/images" "$T/jv2/images" $BIN predict --backend cpu \
  --checkpoint "$CK" --output "$T/pr2" > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "rank 1 reads other --input images or masks" "$T/err" &&
  [ -z "$(ls "$T/pr2" 2>/dev/null)" ] ||
  { echo "FAIL ranks with other images: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS ranks that read other images are refused before any work"
# an --output where masks cannot be written is refused before any work
touch "$T/afile"
set +e
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/jv/images" \
  --output "$T/afile" > "$T/err" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "is a regular file, not a directory" "$T/err" ||
  { echo "FAIL --output onto a file: rc $rc"; cat "$T/err"; exit 1; }
echo "PASS an --output that is a file is refused at start-up"
# partial files a killed predict left (hidden mkstemp temporaries of this run's images) are
# removed at the next start, with a notice; another image's temporary is not touched (another
# predict may be writing it: README, Prediction)
mkdir -p "$T/p6"; touch "$T/p6/.000001.png.Ab3dE9" "$T/p6/.000002.probs.npy.Zz9yQ1" \
  "$T/p6/.other.png.ABCDEF"
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$CK" --input "$T/in2" --output "$T/p6" \
  > "$T/p6.log" 2>&1 || { echo "FAIL predict into p6"; cat "$T/p6.log"; exit 1; }
grep -q "removed 2 partial file(s) an interrupted predict left" "$T/p6.log" &&
  [ ! -e "$T/p6/.000001.png.Ab3dE9" ] && [ ! -e "$T/p6/.000002.probs.npy.Zz9yQ1" ] &&
  [ -e "$T/p6/.other.png.ABCDEF" ] ||
  { echo "FAIL partial files: $(ls -A "$T/p6")"; cat "$T/p6.log"; exit 1; }
echo "PASS partial files of an interrupted predict removed at the next start"
