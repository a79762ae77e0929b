#!/usr/bin/env bash
# --data LIST: a text file of IMAGE MASK lines trains exactly as the directory of the same pairs
# (same parameters after training, same --val-fraction split; info --split lists it, a name's
# control characters escaped), works as --val-data, packs with pack --list, predicts with predict
# --input LIST (the masks and metrics of --input DIR --masks DIR); a malformed line is exit 2
# naming LIST:LINE, and no output may replace the list or land among the data, nor replace a
# --label-map or --class-names file (train, pack, predict).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
SMALL="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off"
$BENCH make-pngs --out "$T/d" --count 24 --image-size 40 --num-classes 4 --format jpeg \
  > /dev/null
# a VOC-like layout beside it, and lists in a directory of their own (relative paths)
mkdir -p "$T/voc/JPEGImages" "$T/voc/SegmentationClass" "$T/voc/lists"
cp "$T"/d/images/* "$T/voc/JPEGImages/"
cp "$T"/d/masks/* "$T/voc/SegmentationClass/"
(cd "$T/d/images" && ls) | sed 's/\.jpg$//' | sort > "$T/stems"
awk '{print "../JPEGImages/" $1 ".jpg ../SegmentationClass/" $1 ".png"}' "$T/stems" \
  > "$T/voc/lists/all.txt"
head -16 "$T/voc/lists/all.txt" > "$T/voc/lists/train.txt"
{ echo "# the held-out pairs"; tail -8 "$T/voc/lists/all.txt"; } > "$T/voc/lists/val.txt"

K="--num-classes 4 --steps 3 --seed 3"
$MPIRUN -np 2 $BIN train $SMALL $K --data "$T/d" --val-fraction 0.25 \
  --params-out "$T/dir.params" > "$T/dir.log" 2>&1 || { cat "$T/dir.log"; fail "dir run"; }
$MPIRUN -np 2 $BIN train $SMALL $K --data "$T/voc/lists/all.txt" --val-fraction 0.25 \
  --checkpoint-dir "$T/voc/ck" --params-out "$T/list.params" > "$T/list.log" 2>&1 || { cat "$T/list.log"; fail "list run"; }
cmp -s "$T/dir.params" "$T/list.params" || fail "--data LIST trained other parameters than DIR"
grep "final validation" "$T/list.log" > "$T/v1"
grep "final validation" "$T/dir.log" > "$T/v2"
cmp -s "$T/v1" "$T/v2" || fail "validation differs: $(cat "$T/v1") / $(cat "$T/v2")"
echo "ok: --data LIST trains the very parameters of --data DIR ($(cat "$T/v1"))"

$BIN info --split --data "$T/d" --val-fraction 0.25 --num-classes 4 --image-size 32 \
  | tail -n +2 > "$T/split.dir"
$BIN info --split --data "$T/voc/lists/all.txt" --val-fraction 0.25 --num-classes 4 \
  --image-size 32 | tail -n +2 > "$T/split.list"
cmp -s "$T/split.dir" "$T/split.list" || fail "info --split differs between DIR and LIST"
# a name holding a newline, a tab and a backslash is one escaped line
mkdir -p "$T/odd/images" "$T/odd/masks"
for f in "$T"/d/images/*.jpg; do
  s=$(basename "$f" .jpg); n=$s
  [ "$s" = "$(head -1 "$T/stems")" ] && n=$'a\nb\tc\\d'
  cp "$f" "$T/odd/images/$n.jpg" && cp "$T/d/masks/$s.png" "$T/odd/masks/$n.png"
done
$BIN info --split --data "$T/odd" --val-fraction 0 --num-classes 4 --image-size 32 \
  > "$T/split.odd"
[ "$(grep -c . "$T/split.odd")" -eq 25 ] && grep -qxF 'train a\nb\tc\\d' "$T/split.odd" ||
  { cat "$T/split.odd"; fail "info --split: a name with control characters"; }
echo "ok: info --split of a list lists the directory's split; a name's newline is escaped"

$MPIRUN -np 1 $BIN train $SMALL $K --data "$T/voc/lists/train.txt" \
  --val-data "$T/voc/lists/val.txt" > "$T/val.log" 2>&1 || { cat "$T/val.log"; fail "--val-data"; }
grep -q "16 training, 8 validation\|(8 images, 4 classes)" "$T/val.log" || \
  { cat "$T/val.log"; fail "--val-data LIST did not validate on its 8 pairs"; }
grep -q "have the name of a training sample" "$T/val.log" && fail "disjoint lists: a warning"
sed -n 13,20p "$T/voc/lists/all.txt" > "$T/voc/lists/val2.txt" # 4 of them in train.txt
$MPIRUN -np 1 $BIN train $SMALL $K --data "$T/voc/lists/train.txt" \
  --val-data "$T/voc/lists/val2.txt" > "$T/val2.log" 2>&1 || { cat "$T/val2.log"; fail "val2"; }
grep -q "4 of the 8 --val-data samples have the name of a training sample" "$T/val2.log" || \
  { cat "$T/val2.log"; fail "no warning of validation samples that are training samples"; }
echo "ok: --val-data LIST; one sharing names with --data is warned of"

$BIN pack --list "$T/voc/lists/all.txt" --num-classes 4 --image-size 32 --out "$T/all.cgds" \
  > /dev/null
$BIN pack --images "$T/d/images" --masks "$T/d/masks" --num-classes 4 --image-size 32 \
  --out "$T/dir.cgds" > /dev/null
cmp -s "$T/all.cgds" "$T/dir.cgds" || fail "pack --list wrote another shard than pack --images"
echo "ok: pack --list writes the shard of pack --images/--masks"

# predict --input LIST: the masks and the metrics of --input DIR --masks DIR, in the list's order
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/voc/ck" --input "$T/voc/lists/all.txt" \
  --output "$T/pl" > "$T/pl.log" 2>&1 || { cat "$T/pl.log"; fail "predict --input LIST"; }
$MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/voc/ck" --input "$T/d/images" \
  --masks "$T/d/masks" --output "$T/pd" > "$T/pd.log" 2>&1 || { cat "$T/pd.log"; fail "predict"; }
diff <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/pl.log") \
  <(grep -E "^predict: (class|mIoU| +[0-9]+ )" "$T/pd.log") || \
  fail "predict --input LIST scored otherwise than --input DIR --masks DIR"
for f in "$T"/pd/*.png; do cmp -s "$f" "$T/pl/$(basename "$f")" || fail "$f differs"; done
[ "$(ls "$T/pl" | wc -l)" -eq 24 ] || fail "predict --input LIST wrote $(ls "$T/pl" | wc -l) masks"
echo "ok: predict --input LIST: $(grep "^predict: mIoU" "$T/pl.log")"
sed 's/ .*//' "$T/voc/lists/all.txt" > "$T/voc/lists/images.txt" # IMAGE lines: no scoring
$MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/voc/ck" \
  --input "$T/voc/lists/images.txt" --output "$T/pi" > "$T/pi.log" 2>&1 || fail "IMAGE lines"
grep -q "mIoU" "$T/pi.log" && fail "a list without masks was scored"
[ "$(ls "$T/pi" | wc -l)" -eq 24 ] || fail "predict of IMAGE lines wrote $(ls "$T/pi" | wc -l)"
echo "ok: predict --input LIST of IMAGE lines"
expect2 "is a list, which names the masks itself" $BIN predict --checkpoint "$T/voc/ck" \
  --input "$T/voc/lists/all.txt" --masks "$T/d/masks" --output "$T/px"
expect2 "which --input names" $BIN predict --checkpoint "$T/voc/ck" \
  --input "$T/voc/lists/all.txt" --output "$T/voc/SegmentationClass"
{ head -1 "$T/voc/lists/all.txt"; head -2 "$T/voc/lists/images.txt" | tail -1; } \
  > "$T/voc/lists/mixed.txt"
expect2 "mixed.txt:2: an image without a mask, and line 1 has a mask" $BIN predict \
  --checkpoint "$T/voc/ck" --input "$T/voc/lists/mixed.txt" --output "$T/px"
cmp -s "$T/d/masks/000000.png" "$T/voc/SegmentationClass/000000.png" || fail "a mask changed"
# a JPEG as a 4-class mask is named before any mask is written
{ head -3 "$T/voc/lists/all.txt"; echo "../JPEGImages/000005.jpg ../JPEGImages/000006.jpg"; } \
  > "$T/voc/lists/jmask.txt"
expect2 "000006.jpg: a JPEG mask" $MPIRUN -np 2 $BIN predict --backend cpu \
  --checkpoint "$T/voc/ck" --input "$T/voc/lists/jmask.txt" --output "$T/pjm"
[ -z "$(ls "$T/pjm" 2>/dev/null)" ] || fail "masks were written before the bad one was named"

printf '../JPEGImages/000000.jpg ../SegmentationClass/000000.png\nbroken\n' > "$T/voc/lists/bad.txt"
expect2 "lists/bad.txt:2: 1 field, need 2" $MPIRUN -np 2 $BIN train $SMALL $K \
  --data "$T/voc/lists/bad.txt"
expect2 "is the --data being read" $BIN train $SMALL $K --data "$T/voc/lists/all.txt" \
  --metrics-out "$T/voc/lists/all.txt"
expect2 "is the --val-data being read" $BIN train $SMALL $K --data "$T/voc/lists/train.txt" \
  --val-data "$T/voc/lists/val.txt" --history-csv "$T/voc/lists/val.txt"
mkdir "$T/voc/ckl" && cp "$T/voc/lists/all.txt" "$T/voc/ckl/history.jsonl" # the default history
expect2 "--history-out (default: DIR/history.jsonl): '$T/voc/ckl/history.jsonl' is the --data" \
  $BIN train $SMALL $K --data "$T/voc/ckl/history.jsonl" --checkpoint-dir "$T/voc/ckl"
expect2 "is the --list being read" $BIN pack --list "$T/voc/lists/all.txt" \
  --out "$T/voc/lists/all.txt"
# text inputs besides the data (no magic bytes to know them by): a label map, a class-names file
printf '0 0\n1 1\n2 2\n3 3\n' > "$T/map.txt"
printf 'bg\ncircle\nellipse\nrect\n' > "$T/names.txt"
cp "$T/map.txt" "$T/map.keep"
cp "$T/names.txt" "$T/names.keep"
expect2 "--params-out: '$T/map.txt' is the --label-map file being read" $BIN train $SMALL $K \
  --data "$T/d" --label-map "$T/map.txt" --params-out "$T/map.txt"
expect2 "--metrics-out: '$T/names.txt' is the --class-names file being read" $BIN train \
  $SMALL $K --data "$T/d" --class-names "$T/names.txt" --metrics-out "$T/names.txt"
expect2 "--out: '$T/map.txt' is the --label-map file being read" $BIN pack --images "$T/d/images" \
  --masks "$T/d/masks" --num-classes 4 --label-map "$T/map.txt" --out "$T/map.txt"
expect2 "--scores-out '$T/map.txt' is the --label-map file being read" $BIN predict \
  --checkpoint "$T/voc/ck" --input "$T/d/images" --masks "$T/d/masks" --output "$T/pm" \
  --label-map "$T/map.txt" --scores-out "$T/map.txt"
expect2 "--confusion-out '$T/names.txt' is the --class-names file being read" $BIN predict \
  --checkpoint "$T/voc/ck" --input "$T/d/images" --masks "$T/d/masks" --output "$T/pm" \
  --class-names "$T/names.txt" --confusion-out "$T/names.txt"
cmp -s "$T/map.txt" "$T/map.keep" && cmp -s "$T/names.txt" "$T/names.keep" ||
  fail "a label map or class-names file was written over"
expect2 "--list FILE replaces --images and --masks" $BIN pack --list "$T/voc/lists/all.txt" \
  --images "$T/d/images" --out "$T/x.cgds"
grep -q "^\.\./JPEGImages/000000.jpg" "$T/voc/lists/all.txt" || fail "the list was changed"

# a resume tells a list that changed under it (the same count: the run would go on silently
# with another sample order); the same list resumes without a word
cp "$T/voc/lists/train.txt" "$T/voc/lists/r.txt"
$MPIRUN -np 1 $BIN train $SMALL $K --data "$T/voc/lists/r.txt" --checkpoint-dir "$T/voc/ckr" \
  > "$T/r1.log" 2>&1 || { cat "$T/r1.log"; fail "resume fixture"; }
$MPIRUN -np 1 $BIN train --resume "$T/voc/ckr" --steps 4 > "$T/r2.log" 2>&1 ||
  { cat "$T/r2.log"; fail "resume, the same list"; }
grep -q "not the same names" "$T/r2.log" && fail "the same list: warned of a change"
{ tail -1 "$T/voc/lists/train.txt"; head -15 "$T/voc/lists/train.txt"; } > "$T/voc/lists/r.txt"
$MPIRUN -np 1 $BIN train --resume "$T/voc/ckr" --steps 5 > "$T/r3.log" 2>&1 ||
  { cat "$T/r3.log"; fail "resume, a reordered list"; }
grep -q "holds the checkpoint's 14 training samples, but not the same names in the same order" \
  "$T/r3.log" || { cat "$T/r3.log"; fail "a reordered list on resume: no warning"; }
echo "ok: a resume warns of a list reordered since the checkpoint, not of the same list"
echo "PASS test_lists"
