#!/usr/bin/env bash
# Resume without retyping, best and last checkpoints (issue 14), CPU backend, real mpirun:
#  1. `train --resume DIR` with no training flag (only the output --params-out) continues the
#     run from the settings stored in the checkpoint and ends bitwise equal to an uninterrupted
#     run (cosine schedule with warm-up, 2 ranks, validation every 10 steps);
#  2. a refused flag (--model-base, --seed, --data) exits 2 naming the flag and both values;
#     an allowed one (--steps, --lr) prints a notice and trains on;
#  3. DIR/last names the newest checkpoint, DIR/best the one of the highest val_iou among the
#     validations of the run, and its file outlives rotation (--keep 1); inspect marks both;
#  4. on a PNG directory with a held-out fraction, the resumed run keeps the split (the same
#     training / validation counts) and ends bitwise equal to an uninterrupted run; so does a
#     resume from a checkpoint whose settings name --data as --val-data too (as builds before
#     2026-12-05 stored an empty --val-data), with a notice; an old synthetic checkpoint
#     resumes; this build's --val-data = --data stays so; a relative --data is kept absolute;
#     a setting those builds did not store, given with another value than their default: a
#     NOTICE one (--clip-grad-norm) is said, a refused one (--optimizer sgd) refused, also
#     against a format-3 checkpoint that stores no settings (its run trained AdamW);
#  5. a number is stored and shown in its shortest text (--lr 0.05, not 0.050000000000000003);
#     an old %.17g one reads as the same value (no notice for the same --lr).
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
FLAGS="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
       --val-samples 16 --seed 5 --batch 4 --steps 40 --lr-schedule cosine --warmup-steps 5
       --val-every 10 --report-every 20 --progress off --threads 1"
run() { # run NAME ARGS...: must exit 0; output in $T/NAME.log
  local name=$1; shift
  timeout 120 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL $name: exit code $rc"; cat "$T/$name.log"; fail=1; return 1; fi
}
want() { # want NAME TEXT: the log of NAME contains TEXT
  if grep -qF -- "$2" "$T/$1.log"; then echo "  ok: $(grep -F -- "$2" "$T/$1.log" | head -1)"
  else echo "FAIL $1: no '$2' in:"; cat "$T/$1.log"; fail=1; fi
}
refused() { # refused NAME TEXT ARGS...: exits 2 with TEXT on stderr
  local name=$1 text=$2; shift 2
  timeout 60 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 2 ]; then echo "FAIL $name: exit code $rc, not 2"; cat "$T/$name.log"; fail=1
  else want "$name" "$text"; fi
}

# ---- 1. --resume DIR alone ----
run plain $MPIRUN -np 2 $BIN $FLAGS --params-out $T/plain.bin
run ckpt $MPIRUN -np 2 $BIN $FLAGS --checkpoint-dir $T/ck --checkpoint-every 10 --keep 5
cp -r $T/ck $T/cut
rm -f $T/cut/ckpt-0000000030.cgck $T/cut/ckpt-0000000040.cgck  # as if stopped after step 20
# no flag but the output (not even --threads 1 the reference runs had: not a training setting)
run resumed $MPIRUN -np 2 $BIN train --resume $T/cut --params-out $T/resumed.bin
want resumed "resumed from $T/cut/ckpt-0000000020.cgck: step 20"
want resumed "resume: checkpoints go on to $T/cut (no --checkpoint-dir given)"
if grep -q "the checkpoint has" "$T/resumed.log"; then
  echo "FAIL resumed: a notice although no setting was given:"; grep "the checkpoint has" "$T/resumed.log"; fail=1
fi
echo "--resume DIR alone, from step 20 to 40, vs uninterrupted (bitwise):"
$CMP $T/resumed.bin $T/plain.bin 0 bitwise || fail=1
want resumed "checkpoint: step 40"

# ---- 2. refused and allowed flags ----
refused r_base "--model-base: the checkpoint has 4, the command line 8" \
    $MPIRUN -np 1 $BIN train --resume $T/ck --model-base 8
refused r_seed "--seed: the checkpoint has 5, the command line 6" \
    $MPIRUN -np 1 $BIN train --resume $T/ck --seed 6
refused r_data "--data: the checkpoint has synthetic, the command line $T/nodata" \
    $MPIRUN -np 1 $BIN train --resume $T/ck --data $T/nodata
cp -r $T/ck $T/more
run more $MPIRUN -np 2 $BIN train --resume $T/more --threads 1 --steps 45 --lr 0.05
want more "resume: --steps 45 (the checkpoint has 40)"
want more "resume: --lr 0.05 (the checkpoint has 0.001)" # not %.17g's 0.050000000000000003
want more "checkpoint: step 45"

# --epochs beside a stored --steps: not used, said once (no "goes on with the new value")
run r_ep $MPIRUN -np 1 $BIN train --resume $T/ck --epochs 3
want r_ep "warning: --epochs 3 is not used: --steps 40 sets the run's length"
if grep -q "resume: --epochs" "$T/r_ep.log"; then
  echo "FAIL r_ep: a resume notice for an --epochs that is not used"; fail=1
fi

# ---- 3. best and last ----
run keep1 $MPIRUN -np 2 $BIN $FLAGS --checkpoint-dir $T/k1 --checkpoint-every 10 --keep 1
$BUILD/cogpu-dist inspect $T/k1 > $T/inspect.log 2>&1 || { echo "FAIL inspect"; cat $T/inspect.log; fail=1; }
cat $T/inspect.log
python3 - "$T/k1" "$T/keep1.log" "$T/inspect.log" <<'PY' || fail=1
import os, re, sys
d, log, insp = sys.argv[1:]
last = open(os.path.join(d, "last")).read().split()
best = open(os.path.join(d, "best")).read().split()
assert last[0] == "ckpt-0000000040.cgck" and last[2] == "40", last
# the validations the run printed, by step: the best must be the highest val_iou
vals = {}
for line in open(log):
    m = re.search(r"validation at step (\d+): loss [0-9.]+\s+IoU ([0-9.]+)", line)
    if m: vals[int(m.group(1))] = float(m.group(2))
    m = re.search(r"final validation: loss [0-9.]+\s+IoU ([0-9.]+)", line)
    if m: vals[40] = float(m.group(1))
assert len(vals) == 4, ("validations of steps 10, 20, 30, 40 expected", vals)
hi = max(vals.values())
top = int(best[2])
# printed with 4 decimals: the best is one of those within rounding of the highest
assert top in vals and vals[top] >= hi - 1e-4, (best, vals)
assert best[3] == "val_iou" and abs(float(best[4]) - vals[top]) < 1e-4, (best, vals)
files = sorted(f for f in os.listdir(d) if f.endswith(".cgck"))
want = sorted({last[0], best[0]})
assert files == want, (files, want)
text = open(insp).read()
assert re.search(r"step %d .* last" % 40, text), text
assert re.search(r"step %d .* best" % top, text), text
print("PASS last -> step 40, best -> step %d (val_iou %.4f); files %s" % (top, vals[top], files))
PY
# ---- 4. real data: the held-out split survives the resume ----
# (an empty setting, --val-data here, used to be stored as the setting before it, --data: the
# resumed run then trained on the held-out images and validated on its training set)
$BUILD/bench/cogpu-bench make-pngs --out $T/pngs --count 24 --image-size 32 > /dev/null
REAL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --data $T/pngs
      --val-fraction 0.25 --seed 5 --batch 2 --steps 16 --val-every 8 --report-every 8
      --progress off --threads 1"
run rplain $MPIRUN -np 2 $BIN $REAL --params-out $T/rplain.bin
run rckpt $MPIRUN -np 2 $BIN $REAL --checkpoint-dir $T/rck --checkpoint-every 8 --keep 5
rm -f $T/rck/ckpt-0000000016.cgck
run rresumed $MPIRUN -np 2 $BIN train --resume $T/rck --params-out $T/rresumed.bin
split=$(grep -m1 "^data: " "$T/rplain.log")
want rresumed "$split"
echo "--resume DIR alone on a PNG directory, from step 8 to 16, vs uninterrupted (bitwise):"
$CMP $T/rresumed.bin $T/rplain.bin 0 bitwise || fail=1
$BUILD/cogpu-dist inspect $T/rck/ckpt-0000000008.cgck > $T/rinspect.log 2>&1
want rinspect '"val-data": ""'
# edit_settings FILE PYTHON: runs PYTHON on the settings dict s of checkpoint FILE, rewrites it
edit_settings() {
  python3 - "$1" "$2" <<'PY' || fail=1
import json, struct, sys, zlib
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
sb = struct.unpack("<I", b[196:200])[0]          # the settings trailer ends the file
s = json.loads(bytes(b[len(b) - sb:]))
exec(sys.argv[2])
t = json.dumps(s).encode()
b = b[:len(b) - sb] + t
b[196:200] = struct.pack("<I", len(t))
b[200:204] = struct.pack("<I", zlib.crc32(t))
b[252:256] = struct.pack("<I", zlib.crc32(bytes(b[:252])))
open(p, "wb").write(bytes(b))
PY
}
# oldify FILE: the checkpoint's settings as builds before 2026-12-05 wrote them: no
# "settings-format", an empty --val-data stored as the --data text, and none of the settings
# added since (--crop-scale, --color-jitter, --lr-power, --min-lr, --clip-grad-norm,
# --lr-milestones, --lr-gamma, --optimizer, --momentum, --nesterov)
oldify() {
  edit_settings "$1" 'assert s.pop("settings-format") == "2" and s["val-data"] == "", s
s["val-data"] = s["data"]
for k in ("crop-scale", "color-jitter", "lr-power", "min-lr", "clip-grad-norm", "lr-milestones",
          "lr-gamma", "optimizer", "momentum", "nesterov"): s.pop(k)'
}
# such a checkpoint on files: read as no --val-data, with a notice
cp -r $T/rck $T/rold
rm -f $T/rold/ckpt-0000000016.cgck  # written by the resumed run above
oldify $T/rold/ckpt-0000000008.cgck
run rold $MPIRUN -np 2 $BIN train --resume $T/rold --params-out $T/rold.bin
want rold "resume: the checkpoint names $T/pngs as --val-data too"
want rold "resume: the checkpoint's build took its crops inside each image's centred square"
want rold "$split"
$CMP $T/rold.bin $T/rplain.bin 0 bitwise || fail=1
# ... on synthetic data (every default run of those builds: "val-data": "synthetic"): resumes
cp -r $T/ck $T/sold
rm -f $T/sold/ckpt-0000000030.cgck $T/sold/ckpt-0000000040.cgck
oldify $T/sold/ckpt-0000000020.cgck
run sold $MPIRUN -np 2 $BIN train --resume $T/sold --params-out $T/sold.bin
echo "an old synthetic checkpoint, resumed from step 20 to 40, vs uninterrupted (bitwise):"
$CMP $T/sold.bin $T/plain.bin 0 bitwise || fail=1
# a setting added since, given on the command line: said as a changed one is (that build ran
# with the default)
cp -r $T/ck $T/nold
rm -f $T/nold/ckpt-0000000030.cgck $T/nold/ckpt-0000000040.cgck
oldify $T/nold/ckpt-0000000020.cgck
run nold $MPIRUN -np 2 $BIN train --resume $T/nold --steps 22 --clip-grad-norm 1
want nold "resume: --clip-grad-norm 1 (the checkpoint's build did not store it: it ran with the \
default, 0): the run goes on with the new value"
# ... a refused one (AdamW's moments are no SGD state) is refused as a changed one is
cp -r $T/ck $T/oopt
rm -f $T/oopt/ckpt-0000000030.cgck $T/oopt/ckpt-0000000040.cgck
oldify $T/oopt/ckpt-0000000020.cgck
refused nopt "--optimizer: the checkpoint's build did not store it: it ran with the default, \
adamw; the command line has sgd, and a resumed run cannot change it" \
  $MPIRUN -np 1 $BIN train --resume $T/oopt --steps 22 --optimizer sgd
# ... and a checkpoint of format 3, which stores no settings at all (its run trained AdamW)
cp -r $T/ck $T/v3
rm -f $T/v3/ckpt-0000000030.cgck $T/v3/ckpt-0000000040.cgck
python3 - "$T/v3/ckpt-0000000020.cgck" <<'PY' || fail=1
import struct, sys, zlib
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
sb = struct.unpack("<I", b[196:200])[0]
b = b[:len(b) - sb]                      # no settings trailer
struct.pack_into("<I", b, 8, 3)          # format version 3
b[196:252] = bytes(56)                   # its reserved bytes
struct.pack_into("<I", b, 252, zlib.crc32(bytes(b[:252])))
open(p, "wb").write(bytes(b))
PY
refused v3sgd "--optimizer: the checkpoint (written by a build that stored no settings) trained \
20 steps with adamw; the command line has sgd" \
  $MPIRUN -np 1 $BIN $FLAGS --resume $T/v3/ckpt-0000000020.cgck --steps 22 --optimizer sgd
run v3adamw $MPIRUN -np 1 $BIN $FLAGS --resume $T/v3/ckpt-0000000020.cgck --steps 22
want v3adamw "resumed from $T/v3/ckpt-0000000020.cgck: step 20"
# a run of this build that validates on its training data (--val-data = --data) keeps doing so
run same $MPIRUN -np 2 $BIN ${REAL/--val-fraction 0.25/} --val-data $T/pngs \
  --checkpoint-dir $T/same --checkpoint-every 8
rm -f $T/same/ckpt-0000000016.cgck
run same2 $MPIRUN -np 2 $BIN train --resume $T/same
want same2 "$(grep -m1 "^data: " "$T/same.log")"
want same "warning: --val-data is --data ($T/pngs): the run validates on its training samples"
# the stored --val-data given again without --data, and --val-fraction 0 beside it: the same run
run same3 $MPIRUN -np 1 $BIN train --resume $T/same --val-data $T/pngs --val-fraction 0 --steps 20
want same3 "resumed from $T/same/ckpt-0000000016.cgck"
if grep -q "as --val-data too" "$T/same2.log"; then
  echo "FAIL same2: the old-checkpoint notice on this build's checkpoint"; fail=1
fi
# a relative --data is kept as an absolute path: resumed from another directory, where the same
# relative name is another data set, the run reads its own files; --data ./NAME/ given again
# from the first directory is the same setting
mkdir -p $T/w1 $T/w2/pngs
cp -r $T/pngs/images $T/pngs/masks $T/w2/pngs/
rm -f $T/w2/pngs/images/$(ls $T/w2/pngs/images | head -1)
rm -f $T/w2/pngs/masks/$(ls $T/w2/pngs/masks | head -1)
ln -s ../pngs $T/w1/pngs
(cd $T/w1 && run rel $MPIRUN -np 1 $BIN ${REAL/--data $T\/pngs/--data pngs} --steps 8 \
  --checkpoint-dir ck)
want rel "data: $T/w1/pngs, 18 training / 6 validation samples"
(cd $T/w2 && run rel2 $MPIRUN -np 1 $BIN train --resume $T/w1/ck --steps 16)
want rel2 "data: $T/w1/pngs, 18 training / 6 validation samples"
(cd $T/w1 && run rel3 $MPIRUN -np 1 $BIN train --resume ck --data ./pngs/ --steps 16)
want rel3 "resumed from ck/ckpt-0000000016.cgck: step 16"

# ---- numbers are stored in the shortest text that reads back; builds before 2026-12-06 stored
# %.17g (0.050000000000000003), which reads as the same value: no notice for the same --lr ----
edit_settings "$T/more/ckpt-0000000045.cgck" 'assert s["lr"] == "0.05", "stored --lr " + s["lr"]
s["lr"] = "0.050000000000000003"'
run num $MPIRUN -np 1 $BIN train --resume $T/more --threads 1 --steps 46 --lr 0.05
want num "resume: --steps 46 (the checkpoint has 45)"
if grep -q "resume: --lr" "$T/num.log"; then
  echo "FAIL num: a notice for the same --lr:"; grep "resume: --lr" "$T/num.log"; fail=1
fi
run num2 $MPIRUN -np 1 $BIN train --resume $T/more --threads 1 --steps 47 --lr 0.07
want num2 "resume: --lr 0.07 (the checkpoint has 0.05)"

# 6. a settings trailer whose value is not text (damaged or edited; its CRCs made to match) is
#    refused naming the setting, not skipped (the run took the default --batch 32 and re-planned)
mkdir -p $T/forged
python3 - "$(ls $T/more/ckpt-*.cgck | tail -1)" $T/forged/ckpt-0000000047.cgck <<'PY'
import re, struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack_from("<I", b, 196)[0]
st = bytes(b[len(b) - n:])
new, k = re.subn(rb'"batch": "(\d+)"', rb'"batch": \1', st)
assert k == 1, st
b = b[:len(b) - n] + new
struct.pack_into("<I", b, 196, len(new))
struct.pack_into("<I", b, 200, zlib.crc32(new) & 0xffffffff)
struct.pack_into("<I", b, 252, zlib.crc32(bytes(b[:252])) & 0xffffffff)
open(sys.argv[2], "wb").write(bytes(b))
PY
refused forged 'the checkpoint'"'"'s setting "batch" is not text' \
  $MPIRUN -np 1 $BIN train --resume $T/forged --threads 1 --steps 50
[ $fail -eq 0 ] && echo "test_resume_settings: all passed"
exit $fail
