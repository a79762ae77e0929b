#!/usr/bin/env bash
# A full file system never costs the previous version of an output (issue 11). On a small tmpfs
# (mounted here: root only, skipped otherwise) a first round writes every output — --metrics-out,
# --params-out, --prom-out, --trace-out, a checkpoint, pack's shard, predict's masks; the file
# system is then filled, and a second round writes them all again. Each writer must report the
# error by path, operation and "No space left on device" and exit non-zero, every previous file
# must be byte-for-byte as it was, and no temporary may be left behind. (predict used to rewrite
# a mask in place: truncated first, so that a failure lost the old mask and a reader could see
# an empty one; here the truncation freed the room the rewrite needed, so it "succeeded".)
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: mounting the small tmpfs needs root"; exit 77; fi
T=$(mktemp -d)
M=$T/mnt
mkdir -p "$M"
if ! mount -t tmpfs -o size=1m tmpfs "$M" 2> "$T/mount.err"; then
  echo "SKIP: cannot mount a tmpfs here: $(cat "$T/mount.err")"; rm -rf "$T"; exit 77
fi
trap 'umount "$M"; rm -rf "$T"' EXIT
fail=0
COMMON="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
        --batch 2 --steps 2 --report-every 1 --train-samples 16 --val-samples 0"
OUTS="--metrics-out $M/metrics.json --params-out $M/params.bin --prom-out $M/cogpu.prom
      --trace-out $M/tl --trace-steps 1:2"
$BUILD/bench/cogpu-bench make-pngs --out "$T/pngs" --count 6 --image-size 32 --seed 3 > /dev/null

# round NAME SEED CKPT_ARGS: every writer once; rc and output of each in $T/NAME.<writer>.{rc,log}
round() {
  local r=$1 seed=$2 ck=$3
  timeout 120 $MPIRUN -np 2 $BIN train $COMMON --seed $seed $OUTS > "$T/$r.train.log" 2>&1
  echo $? > "$T/$r.train.rc"
  # seed 1 in both rounds: the second resumes the first, and a resumed run keeps its seed
  timeout 120 $MPIRUN -np 2 $BIN train $COMMON --seed 1 --checkpoint-dir "$M/ck" $ck \
    > "$T/$r.ckpt.log" 2>&1
  echo $? > "$T/$r.ckpt.rc"
  timeout 120 $BIN pack --images "$T/pngs/images" --masks "$T/pngs/masks" --out "$M/ds.cgds" \
    --image-size 32 > "$T/$r.pack.log" 2>&1
  echo $? > "$T/$r.pack.rc"
  timeout 120 $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$T/ck.cgck" \
    --input "$T/pngs/images" --output "$M/pred" > "$T/$r.predict.log" 2>&1
  echo $? > "$T/$r.predict.rc"
}
# the checkpoint predict reads lives off the small file system
timeout 120 $MPIRUN -np 2 $BIN train $COMMON --checkpoint-dir "$T/ck0" > "$T/ck0.log" 2>&1 &&
  cp "$T"/ck0/ckpt-*.cgck "$T/ck.cgck" || { echo "FAIL: the setup run"; cat "$T/ck0.log"; exit 1; }

round first 1 ""
for w in train ckpt pack predict; do
  [ "$(cat "$T/first.$w.rc")" = 0 ] || { echo "FAIL first round, $w: exit $(cat "$T/first.$w.rc")"; cat "$T/first.$w.log"; fail=1; }
done
# the checkpoint directory's lock file is no output: each run writes its pid there
(cd "$M" && find . -type f ! -name .cogpu-dist.lock | sort | xargs sha256sum) > "$T/before.sum"
echo "first round wrote $(wc -l < "$T/before.sum") files; $(df -k --output=used "$M" | tail -1) KiB used"
[ $fail -eq 0 ] || exit 1

# fill it: the second round cannot write one page
dd if=/dev/zero of="$M/filler" bs=4096 > /dev/null 2>&1
echo "filled: $(df -k --output=avail "$M" | tail -1) KiB available"
# continues the first round's run: a periodic checkpoint (step 3) fails mid-run, then the final
# one (step 4); the run must go on past the first and end, exit 1 (rank 0 alone knows its write
# failed: a collective only the other ranks entered hung the job)
round second 2 "--resume --steps 4 --checkpoint-every 1"

for w in train ckpt pack predict; do
  echo "second round, $w: exit $(cat "$T/second.$w.rc")"
  grep -h "No space left on device\|error\|warn\|failed" "$T/second.$w.log" | sed 's/^/    /' | head -8
done
# every writer said why, naming its file
for want in "--metrics-out: $M/metrics.json: write failed: No space left on device" \
            "--params-out: $M/params.bin: write failed: No space left on device" \
            "--prom-out: $M/cogpu.prom: write failed: No space left on device" \
            "--trace-out: $M/tl.rank0.json: write failed: No space left on device"; do
  grep -qF -- "$want" "$T/second.train.log" || { echo "FAIL no '$want'"; fail=1; }
done
for s in 3 4; do
  grep -q "checkpoint of step $s not written: $M/ck/ckpt-000000000$s.cgck: .*No space left on device" \
    "$T/second.ckpt.log" || { echo "FAIL checkpoint error of step $s not reported"; fail=1; }
done
[ "$(cat "$T/second.ckpt.rc")" = 1 ] ||
  { echo "FAIL checkpoints on a full disk: exit $(cat "$T/second.ckpt.rc"), want 1"; fail=1; }
grep -q "$M/ds.cgds: .*No space left on device" "$T/second.pack.log" ||
  { echo "FAIL pack error not reported"; fail=1; }
grep -q "$M/pred/.*No space left on device" "$T/second.predict.log" ||
  { echo "FAIL predict error not reported"; fail=1; }
for w in train ckpt pack predict; do
  [ "$(cat "$T/second.$w.rc")" != 0 ] || { echo "FAIL second round, $w: exit 0 on a full disk"; fail=1; }
done
# the previous versions are intact and nothing else is there
rm -f "$M/filler"
(cd "$M" && find . -type f ! -name .cogpu-dist.lock | sort | xargs sha256sum) > "$T/after.sum"
if ! diff "$T/before.sum" "$T/after.sum" > "$T/diff.txt"; then
  echo "FAIL the previous outputs changed (< before, > after):"; cat "$T/diff.txt"; fail=1
else
  echo "  ok: all $(wc -l < "$T/before.sum") previous files byte-for-byte intact"
fi
(cd "$M" && find . ! -name .cogpu-dist.lock | sort) > "$T/after.names"
(cd "$M" && sed 's/^[0-9a-f]*  //' "$T/before.sum"; echo .; find . -type d) | sort -u > "$T/want.names"
if ! diff "$T/want.names" "$T/after.names" > "$T/names.txt"; then
  echo "FAIL left behind or missing (< missing, > extra):"; cat "$T/names.txt"; fail=1
else
  echo "  ok: no temporary left behind"
fi
[ $fail -eq 0 ] && echo "test_full_disk: all passed"
exit $fail
