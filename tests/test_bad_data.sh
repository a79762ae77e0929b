#!/usr/bin/env bash
# One rule for a bad sample (issue 11), CPU backend, small runs. Datasets from
# `test_badimg --make`: 8 good 40x48 samples plus bad ones (a truncated PNG whose header passes,
# a 16-bit PNG cut inside its first IDAT, a 0-byte PNG, a 63-byte PNG claiming 28936x16136).
#  - without --skip-bad a bad sample ends the job with exit 2 and a message naming the file and
#    --skip-bad, whether it is found at start-up or by a helper thread while training, on 1 rank
#    and on 2 ranks (every rank ends, promptly: no process of the job is left);
#  - with --skip-bad the job trains and reports how many samples it skipped;
#  - --check-data lists every bad file with a summary (files whose header fails at open
#    included), exits 2, or trains without them with --skip-bad;
#  - a shard record whose CRC fails follows the same rule; pack refuses the bomb;
#  - an image that is a dangling symlink is named as one, by train and by predict --input DIR.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
"$BUILD/tests/test_badimg" --make "$T/ds" > /dev/null || { echo "FAIL: could not write the datasets"; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/faultlib.sh"
SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --steps 3
       --val-fraction 0 --progress off --threads 1 --cpu-workers 2 --timeout-s 30"

# run NAME NP ARGS...: runs the job (at most 60 s), sets RC, OUT, SECS
run() {
  local name=$1 np=$2; shift 2
  local t0; t0=$(now_ms)
  timeout 60 $MPIRUN -np $np $BIN "$@" > "$T/$name.out" 2> "$T/$name.err"
  RC=$?
  SECS=$(( ($(now_ms) - t0) / 1000 ))
  OUT="$T/$name"
}
# expect NAME RC TEXT...: exit code and every TEXT in stdout+stderr
expect() {
  local name=$1 want=$2; shift 2
  local ok=1 t
  [ "$RC" -eq "$want" ] || { echo "FAIL $name: exit code $RC, want $want"; ok=0; }
  for t in "$@"; do
    grep -q -- "$t" "$OUT.out" "$OUT.err" || { echo "FAIL $name: no '$t' in the output"; ok=0; }
  done
  if [ $ok -eq 1 ]; then
    echo "PASS $name: exit $RC in ${SECS} s: $(cat "$OUT.err" "$OUT.out" | grep -m1 -E "error|--skip-bad: |check-data: --data" | cut -c1-220)"
  else
    cat "$OUT.out" "$OUT.err" | grep -v "^step\|^report\|^ *rank" | head -30; fail=1
  fi
}

D=$T/ds
# -- a truncated PNG whose header passes: found by a helper thread while training
run trunc 1 $SMALL --data $D/trunc
expect "truncated PNG in training, no --skip-bad" 2 "trunc/images/zz.png" "truncated" "--skip-bad"
run trunc_skip 1 $SMALL --data $D/trunc --skip-bad
expect "truncated PNG in training, --skip-bad" 0 "--skip-bad: 0 bad sample(s) left out at start-up, 1 sample load(s) skipped in training"
# every sample of the set truncated: --skip-bad has nothing left to train on (exit 2, not 0)
mkdir -p $T/alltrunc/images $T/alltrunc/masks
for n in a b c d e; do
  cp $D/trunc/images/zz.png $T/alltrunc/images/$n.png; cp $D/trunc/masks/zz.png $T/alltrunc/masks/$n.png
done
run alltrunc 1 $SMALL --data $T/alltrunc --skip-bad --metrics-out $T/m_all.json \
  --stats-out $T/s_all.jsonl
expect "every training sample truncated, --skip-bad" 2 \
  "--skip-bad: every one of the 9 training sample loads of this run failed"
[ ! -e $T/m_all.json ] || { echo "FAIL every sample bad: --metrics-out written"; fail=1; }
tail -1 $T/s_all.jsonl | grep -q '"stopped": "every training load failing"' ||
  { echo "FAIL every sample bad: the stats do not end with a stop record"; fail=1; }
[ "$(grep -c '"final": true' $T/s_all.jsonl)" -eq 1 ] ||
  { echo "FAIL every sample bad: a finished record before the stop record"; fail=1; }
# the same started without mpirun (a singleton): one error line, none of Open MPI's abort noise
timeout 60 $BIN $SMALL --data $D/trunc > "$T/single.out" 2> "$T/single.err"
RC=$?; OUT=$T/single; SECS=0
expect "truncated PNG, singleton" 2 "zz.png" "--skip-bad"
grep -qE "MPI_ABORT|ORTE_ERROR_LOG" "$T/single.err" &&
  { echo "FAIL singleton: Open MPI's abort noise: $(cat "$T/single.err")"; fail=1; }
# a mask that is there but is not a regular file (a FIFO, a directory): named as such, not as
# missing
cp -r $D/good $T/nonreg; rm $T/nonreg/masks/s01.png; mkfifo $T/nonreg/masks/s01.png
run nonreg 1 $SMALL --data $T/nonreg
expect "a FIFO where a mask should be" 2 "its mask $T/nonreg/masks/s01.png is a FIFO, not a regular"
# the file that is there is named, whatever its extension
cp -r $D/good $T/nonreg2; rm $T/nonreg2/masks/s01.png; mkfifo $T/nonreg2/masks/s01.gif
run nonreg2 1 $SMALL --data $T/nonreg2
expect "a FIFO named .gif where a mask should be" 2 "its mask $T/nonreg2/masks/s01.gif is a FIFO"
# serial loader (no helpers): the same rule
run trunc_serial 1 $SMALL --data $D/trunc --cpu-workers 0
expect "truncated PNG, serial loader" 2 "zz.png" "--skip-bad"

# -- 2 ranks: whichever rank meets it ends the job with exit 2; every rank ends
TAG="--seed 4242"
run trunc_2r 2 $SMALL --data $D/trunc $TAG
expect "truncated PNG, 2 ranks" 2 "zz.png" "--skip-bad"
[ $SECS -le 30 ] || { echo "FAIL 2 ranks: took $SECS s"; fail=1; }
if rank_pid "$TAG" 0 > /dev/null || rank_pid "$TAG" 1 > /dev/null; then
  echo "FAIL 2 ranks: a rank is still running"; fail=1
fi
run trunc_2r_skip 2 $SMALL --data $D/trunc --skip-bad
expect "truncated PNG, 2 ranks, --skip-bad" 0 "sample load(s) skipped in training" "skipping a bad sample (--skip-bad): .*zz.png"

# -- found at start-up: a 0-byte PNG and a decompression bomb
run zero 2 $SMALL --data $D/zero
expect "0-byte PNG at start-up" 2 "zero/images/zz.png" "empty: 0 bytes" "--skip-bad"
[ "$(grep -c "error:" "$OUT.err")" -eq 1 ] || { echo "FAIL 0-byte: not exactly one error line"; cat "$OUT.err"; fail=1; }
run zero_skip 2 $SMALL --data $D/zero --skip-bad
expect "0-byte PNG at start-up, --skip-bad" 0 "leaving out 1 bad sample" "--skip-bad: 1 bad sample(s) left out at start-up, 0 sample load(s) skipped in training"
run bomb 1 $SMALL --data $D/bomb
expect "28936x16136 header at start-up" 2 "bomb/images/zz.png" "28936x16136" "limit of 89478485" "--max-image-pixels" "--skip-bad"
run bomb_skip 1 $SMALL --data $D/bomb --skip-bad
expect "28936x16136 header, --skip-bad" 0 "1 bad sample(s) left out at start-up"
run bomb_limit 1 $SMALL --data $D/good --max-image-pixels 1000
expect "--max-image-pixels below the good images" 2 "48x40 image (1920 pixels) is over the limit of 1000"

# -- --check-data
run check 2 $SMALL --data $D/mixed --check-data
expect "--check-data, bad files" 2 "mixed/images/zz_trunc.png" "mixed/images/zz_cut16.png" \
  "check-data: --data: 10 sample(s) (20 image files) checked in" "2 bad" "--check-data: 2 bad sample(s)"
grep -q "^step" "$OUT.out" && { echo "FAIL --check-data trained"; fail=1; }
run check_skip 2 $SMALL --data $D/mixed0 --check-data --skip-bad
expect "--check-data --skip-bad" 0 "bad sample (--data): .*zz_zero.png" "zz_trunc.png" \
  "zz_cut16.png" "checked in .*: 3 bad" "training without the 3 bad sample(s)" \
  "--skip-bad: 3 bad sample(s) left out at start-up, 0 sample load(s) skipped in training"
# files whose header fails at open (a BMP and an empty file named .jpg, a 0-byte PNG) are listed
# and counted with the rest, not only the first of them (it used to end the job there, with a
# hint to use --check-data; with --skip-bad the summary said "2 bad" of 5)
cp -r $D/mixed0 $T/hdr
printf 'BM\x36\x00\x00\x00\x00\x00' > $T/hdr/images/zz_bmp.jpg
: > $T/hdr/images/zz_empty.jpg
cp $T/hdr/masks/s00.png $T/hdr/masks/zz_bmp.png; cp $T/hdr/masks/s00.png $T/hdr/masks/zz_empty.png
run check_hdr 2 $SMALL --data $T/hdr --check-data
expect "--check-data, header failures" 2 "bad sample (--data): .*zz_bmp.jpg" \
  "bad sample (--data): .*zz_empty.jpg" "bad sample (--data): .*zz_zero.png" "zz_trunc.png" \
  "zz_cut16.png" "13 sample(s) (26 image files) checked in .*: 5 bad" \
  "--check-data: 5 bad sample(s)"
grep -q "check-data lists" "$OUT.out" "$OUT.err" &&
  { echo "FAIL --check-data: its hint suggests --check-data"; fail=1; }
grep -q "^step" "$OUT.out" && { echo "FAIL --check-data trained"; fail=1; }
run check_hdr_skip 1 $SMALL --data $T/hdr --check-data --skip-bad
expect "--check-data --skip-bad, header failures" 0 "checked in .*: 5 bad" \
  "training without the 5 bad sample(s)" "--skip-bad: 5 bad sample(s) left out at start-up"
run check_good 1 $SMALL --data $D/good --check-data
expect "--check-data, all good" 0 "8 sample(s) (16 image files) checked" ": 0 bad"

# -- a shard record whose CRC fails
$BIN pack --images $D/good/images --masks $D/good/masks --out $T/good.cgds --image-size 32 > /dev/null ||
  { echo "FAIL pack"; fail=1; }
cp $T/good.cgds $T/bad.cgds
printf '\xff\xff\xff\xff' | dd of=$T/bad.cgds bs=1 seek=$((64 + 32 * 32 * 4 + 100)) conv=notrunc status=none
run shard 1 $SMALL --data $T/bad.cgds
expect "shard record with a bad CRC" 2 "bad.cgds: record 1 (s01): CRC mismatch" "--skip-bad"
run shard_skip 1 $SMALL --data $T/bad.cgds --skip-bad
expect "shard record with a bad CRC, --skip-bad" 0 "0 bad sample(s) left out at start-up, 1 sample load(s) skipped"
run shard_check 1 $SMALL --data $T/bad.cgds --check-data
expect "--check-data on a shard" 2 "record 1 (s01): CRC mismatch" "8 sample(s) checked" "1 bad"

# -- a validation image that fails to load weighs nothing: the validation equals one without it
#    (its loss was divided by 9 for 8 images scored); with none readable, no figures at all
mkdir -p $T/val8 $T/val0/images $T/val0/masks
cp -r $D/trunc/images $D/trunc/masks $T/val8/
rm $T/val8/images/zz.png $T/val8/masks/zz.png
cp $D/trunc/images/zz.png $T/val0/images/; cp $D/trunc/masks/zz.png $T/val0/masks/
for v in trunc:$D/trunc val8:$T/val8 val0:$T/val0; do
  run v_${v%%:*} 1 $SMALL --data $D/good --val-data ${v#*:} --skip-bad --metrics-out $T/m_${v%%:*}.json
done
fv() { grep "^final validation" "$T/v_$1.out"; }
if [ -n "$(fv trunc)" ] && [ "$(fv trunc)" = "$(fv val8)" ] && fv trunc | grep -q "(8 images)"; then
  echo "PASS a bad validation image weighs nothing: $(fv trunc)"
else
  echo "FAIL validation with a bad image: '$(fv trunc)' vs without it: '$(fv val8)'"; fail=1
fi
if [ "$RC" -eq 0 ] && grep -q "validation at step 3: no image could be read (all 1 left out by --skip-bad)" \
     "$T/v_val0.out" && [ -z "$(fv val0)" ] && grep -q '"val_iou": null' $T/m_val0.json; then
  echo "PASS no readable validation image: no figures"
else
  echo "FAIL no readable validation image:"; cat "$T/v_val0.out" $T/m_val0.json; fail=1
fi

# -- an image that is a dangling symbolic link is named as one (it used to read as a mask
#    without an image)
mkdir -p $T/dang
cp -r $D/trunc/masks $T/dang/masks
cp -r $D/trunc/images $T/dang/images
rm $T/dang/images/zz.png
ln -s $T/nowhere.png $T/dang/images/zz.png
run dangling 1 $SMALL --data $T/dang
expect "an image that is a dangling symlink" 2 "dang/images/zz.png: a symbolic link to nothing usable"
# predict lists its --input directory by the same rule (it skipped the link without a word)
$BIN $SMALL --steps 1 --checkpoint-dir $T/pck > /dev/null 2>&1 || echo "FAIL the 1-step run"
$BIN predict --input $T/dang/images --output $T/dang-out --checkpoint $T/pck > "$T/pd.out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "dang/images/zz.png: a symbolic link to nothing" "$T/pd.out"; then
  echo "PASS predict names the dangling symlink in --input: $(cat "$T/pd.out")"
else
  echo "FAIL predict and a dangling symlink in --input: exit $rc"; cat "$T/pd.out"; fail=1
fi

# -- pack refuses the bomb from its header
$BIN pack --images $D/bomb/images --masks $D/bomb/masks --out $T/bomb.cgds > "$T/pack.out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "28936x16136" "$T/pack.out" && [ ! -e $T/bomb.cgds ]; then
  echo "PASS pack refuses the bomb: $(cat "$T/pack.out")"
else
  echo "FAIL pack of the bomb: exit $rc"; cat "$T/pack.out"; fail=1
fi
[ $fail -eq 0 ] && echo "test_bad_data: all passed"
exit $fail
