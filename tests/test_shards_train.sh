#!/usr/bin/env bash
# JPEG datasets and encoded shards end to end (issue 13), CPU backend, tiny runs:
#  - `cogpu-bench make-pngs --format jpeg` writes NAME.jpg images and PNG masks;
#  - train reads that directory (2 steps), and --check-data passes over it; a truncated JPEG
#    ends the job with exit 2 naming the file, or is skipped with --skip-bad;
#  - `pack --encoding raw|jpeg|png` each make a shard train reads (2 steps each); the encoded
#    shards are smaller than raw;
#  - pack's new flags refuse bad values with exit 2 naming the flag.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --steps 2
       --val-fraction 0 --progress off --threads 1 --cpu-workers 2 --timeout-s 60"
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }

$MPIRUN -np 1 "$BENCH" make-pngs --out "$T/jpg" --count 12 --image-size 48 --format jpeg --quality 85 \
  > "$T/make.out" 2>&1 || { cat "$T/make.out"; bad "make-pngs --format jpeg"; }
n=$(ls "$T/jpg/images" | grep -c '\.jpg$'); m=$(ls "$T/jpg/masks" | grep -c '\.png$')
[ "$n" = 12 ] && [ "$m" = 12 ] && ok "make-pngs --format jpeg: 12 .jpg images, 12 .png masks" ||
  bad "make-pngs wrote $n jpg, $m png"
# uppercase extensions are images too
mv "$T/jpg/images/000003.jpg" "$T/jpg/images/000003.JPG"

timeout 120 $MPIRUN -np 1 $BIN $SMALL --data "$T/jpg" > "$T/dir.out" 2>&1 &&
  ok "train on a JPEG directory" || { tail -5 "$T/dir.out"; bad "train on a JPEG directory"; }
timeout 120 $MPIRUN -np 1 $BIN $SMALL --data "$T/jpg" --check-data > "$T/chk.out" 2>&1 &&
  ok "--check-data on a JPEG directory" || { tail -5 "$T/chk.out"; bad "--check-data on JPEG"; }

declare -A size
for enc in raw jpeg png; do
  if $BIN pack --images "$T/jpg/images" --masks "$T/jpg/masks" --out "$T/$enc.cgds" --image-size 32 \
      --encoding $enc > "$T/pack-$enc.out" 2>&1; then
    size[$enc]=$(stat -c %s "$T/$enc.cgds")
    if timeout 120 $MPIRUN -np 1 $BIN $SMALL --data "$T/$enc.cgds" > "$T/train-$enc.out" 2>&1; then
      ok "pack --encoding $enc (${size[$enc]} bytes) + 2 training steps"
    else
      tail -5 "$T/train-$enc.out"; bad "train on the $enc shard"
    fi
  else
    cat "$T/pack-$enc.out"; bad "pack --encoding $enc"
  fi
done
[ "${size[jpeg]:-0}" -gt 0 ] && [ "${size[jpeg]}" -lt "${size[raw]:-0}" ] &&
  [ "${size[png]:-0}" -lt "${size[raw]:-0}" ] && ok "encoded shards are smaller than raw" ||
  bad "shard sizes raw ${size[raw]:-?} jpeg ${size[jpeg]:-?} png ${size[png]:-?}"

# a truncated JPEG is a bad sample: exit 2 naming the file and --skip-bad, or skipped and counted
cp -r "$T/jpg" "$T/badjpg"
f="$T/badjpg/images/000005.jpg"
head -c $(( $(stat -c %s "$f") / 2 )) "$f" > "$T/half" && mv "$T/half" "$f"
EPOCH=${SMALL/--steps 2/--steps 4}  # every sample at least once
timeout 120 $MPIRUN -np 1 $BIN $EPOCH --data "$T/badjpg" > "$T/bad.out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "000005.jpg: JPEG decode failed" "$T/bad.out" && grep -q -- "--skip-bad" "$T/bad.out" &&
  ok "truncated JPEG: exit 2: $(grep -m1 -o '[^/]*000005.jpg: JPEG decode failed[^(]*' "$T/bad.out")" ||
  { tail -3 "$T/bad.out"; bad "truncated JPEG: exit $rc"; }
timeout 120 $MPIRUN -np 1 $BIN $EPOCH --data "$T/badjpg" --skip-bad > "$T/skip.out" 2>&1 &&
  grep -qE "[1-9][0-9]* sample load\(s\) skipped" "$T/skip.out" &&
  ok "truncated JPEG with --skip-bad: trains, $(grep -m1 -oE -- '--skip-bad: .*skipped' "$T/skip.out")" ||
  { tail -3 "$T/skip.out"; bad "truncated JPEG with --skip-bad"; }

# flags: exit 2 naming the flag
expect2() {
  local what=$1 flag=$2; shift 2
  $BIN pack --images "$T/jpg/images" --masks "$T/jpg/masks" --out "$T/x.cgds" "$@" > "$T/e.out" 2>&1
  local rc=$?
  [ $rc -eq 2 ] && grep -q -- "$flag" "$T/e.out" && ok "$what: exit 2: $(head -1 "$T/e.out")" ||
    bad "$what: exit $rc: $(cat "$T/e.out")"
}
expect2 "unknown encoding" --encoding --encoding webp
expect2 "quality out of range" --quality --encoding jpeg --quality 0
expect2 "quality without jpeg" --quality --encoding png --quality 80
grep -q -- "--encoding" <<< "$($BIN pack --help)" && ok "pack --help documents --encoding" || bad "pack --help"
# info --split names the samples --val-fraction holds out: the directory and its shard split
# alike, with train's counts
for src in "$T/jpg" "$T/raw.cgds"; do
  $MPIRUN -np 1 $BIN info --split --data "$src" --val-fraction 0.25 --image-size 32 \
    > "$T/split.$(basename "$src")" 2>&1 || bad "info --split --data $src: $(cat "$T/split.$(basename "$src")")"
done
# a shard splits whatever --image-size says (its records' size is its own)
$MPIRUN -np 1 $BIN info --split --data "$T/raw.cgds" --val-fraction 0.25 > "$T/split.nosize" 2>&1 ||
  bad "info --split of a shard without --image-size: $(cat "$T/split.nosize")"
diff <(grep -v '^#' "$T/split.jpg") <(grep -v '^#' "$T/split.raw.cgds") > /dev/null &&
  diff <(grep -v '^#' "$T/split.jpg") <(grep -v '^#' "$T/split.nosize") > /dev/null &&
  [ "$(grep -c '^val ' "$T/split.jpg")" = 3 ] && [ "$(grep -c '^train ' "$T/split.jpg")" = 9 ] ||
  bad "info --split: $(cat "$T/split.jpg" "$T/split.raw.cgds")"
timeout 120 $MPIRUN -np 1 $BIN ${SMALL/--val-fraction 0/--val-fraction 0.25} --data "$T/jpg" \
  > "$T/vf.out" 2>&1 && grep -q "9 training / 3 validation samples" "$T/vf.out" &&
  ok "info --split: 9 train / 3 val names, the same for the directory and its shard, as train" ||
  bad "train --val-fraction 0.25: $(grep 'data:' "$T/vf.out")"

# a bad --data with --split beside the collective --topology: every rank ends (exit 2), no hang
timeout 60 $MPIRUN -np 2 $BIN info --split --topology --data "$T/nothing" > "$T/sp2.out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "info --split: .*nothing" "$T/sp2.out" &&
  ok "info --split --topology with a missing --data on 2 ranks: exit 2" ||
  bad "info --split --topology, missing --data, 2 ranks: exit $rc: $(cat "$T/sp2.out")"

# SIGINT while a pack of few, large records runs: it stops within a record (it used to finish
# its chunk of up to 64 records, then report success and commit), exits 130, writes nothing
$BENCH make-pngs --out "$T/big" --count 64 --image-size 64 > /dev/null
$BIN pack --images "$T/big/images" --masks "$T/big/masks" --out "$T/big.cgds" \
  --image-size 2048 > "$T/int.log" 2>&1 &
pid=$!
sleep 1
kill -INT $pid
t0=$(date +%s%N)
wait $pid; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $rc -eq 130 ] && [ ! -e "$T/big.cgds" ] && [ -z "$(ls -A "$T" | grep '^\.big')" ] &&
   grep -q "interrupted" "$T/int.log"; then
  ok "pack interrupted: exit 130 ${ms} ms after SIGINT, nothing written"
else
  bad "pack interrupted: exit $rc after ${ms} ms; $(cat "$T/int.log"); $(ls -a "$T")"
fi
exit $fail
