#!/usr/bin/env bash
# Checkpoint and resume (issue 6), CPU backend, real mpirun:
#  1. exact resume: the checkpoint of step 60 of a 2-rank run, resumed to step 100, ends bitwise
#     equal to an uninterrupted 100-step run without checkpoints (cosine schedule with warm-up,
#     so the lr position, AdamW t and moments all matter; and writing checkpoints changes
#     nothing);
#  2. the same global batch on another rank count: 2 x 4's checkpoint of step 40 resumed on
#     1 x 8 to step 45 matches the uninterrupted 2 x 4 run within 1e-5 (the tolerance of
#     test_dp_equiv: the summation order differs);
#  3. another global batch (2 x 4 -> 3 x 4): resumes at the documented step and trains on;
#  4. damaged checkpoints (a byte flipped, a file cut in half) are named and the next older
#     valid one is used; inspect says which are bad (a FIFO named as a checkpoint too, never
#     read); resumed without the flags, a damaged file is refused for its damage; a checkpoint
#     of another model shape is refused with both shapes; an unwritable --checkpoint-dir is a
#     usage error.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 100
        --val-samples 0 --progress off --threads 1 --seed 7 --report-every 50"
# run NAME ARGS...: must exit 0; output in $T/NAME.log
run() {
  local name=$1; shift
  timeout 120 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL $name: exit code $rc"; cat "$T/$name.log"; fail=1; return 1; fi
}
want() { # want NAME TEXT: the log of NAME contains TEXT
  if grep -qF -- "$2" "$T/$1.log"; then echo "  ok: $(grep -F -- "$2" "$T/$1.log" | head -1)"
  else echo "FAIL $1: no '$2' in:"; cat "$T/$1.log"; fail=1; fi
}

# ---- 1. exact resume ----
SCHED="--lr-schedule cosine --warmup-steps 10"
run plain $MPIRUN -np 2 $BIN $COMMON $SCHED --batch 4 --steps 100 --params-out $T/plain.bin
run ckpt $MPIRUN -np 2 $BIN $COMMON $SCHED --batch 4 --steps 100 --checkpoint-dir $T/ck \
    --checkpoint-every 20 --keep 5 --params-out $T/ckpt.bin
echo "a run writing checkpoints every 20 steps vs one writing none:"
$CMP $T/ckpt.bin $T/plain.bin 0 bitwise || fail=1
run resumed $MPIRUN -np 2 $BIN $COMMON $SCHED --batch 4 --steps 100 \
    --resume $T/ck/ckpt-0000000060.cgck --params-out $T/resumed.bin
want resumed "resumed from $T/ck/ckpt-0000000060.cgck: step 60"
echo "stopped at 60 and resumed to 100 vs uninterrupted (bitwise):"
$CMP $T/resumed.bin $T/plain.bin 0 bitwise || fail=1

# ---- 2. same global batch, another rank count ----
run p45 $MPIRUN -np 2 $BIN $COMMON --batch 4 --steps 45 --checkpoint-dir $T/ck45 \
    --checkpoint-every 40 --params-out $T/p45.bin
run r45 $MPIRUN -np 1 $BIN $COMMON --batch 8 --steps 45 --resume $T/ck45/ckpt-0000000040.cgck \
    --params-out $T/r45.bin
want r45 "resumed from $T/ck45/ckpt-0000000040.cgck: step 40"
echo "2 x 4 to step 40, then 1 x 8 to step 45 vs 2 x 4 throughout:"
$CMP $T/r45.bin $T/p45.bin 1e-5 || fail=1

# ---- 3. another global batch: 2 x 4 (8) -> 3 x 4 (12) ----
# The checkpoint of step 40: 13 steps per epoch of 8, so epoch 3, 1 batch (8 samples) into it.
# With 12 per step (9 steps per epoch) the first batch of 12 not fully trained is batch 0 of
# epoch 3: step 27.
run g12 $MPIRUN -np 3 $BIN $COMMON --batch 4 --steps 36 --resume $T/ck45/ckpt-0000000040.cgck \
    --checkpoint-dir $T/ck12
want g12 "continuing at step 27 (epoch 3, batch 1 of 9)"
want g12 "final: 36 steps"
want g12 "checkpoint: step 36"

# ---- 4. damaged checkpoints and the fallback; another shape; an unwritable directory ----
cp -r $T/ck $T/bad
python3 - "$T/bad" <<'EOF'
import os, sys
d = sys.argv[1]
p = os.path.join(d, "ckpt-0000000100.cgck")     # one payload byte flipped
with open(p, "r+b") as f:
    f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 0x40]))
p = os.path.join(d, "ckpt-0000000080.cgck")     # cut in half
os.truncate(p, os.path.getsize(p) // 2)
EOF
mkdir $T/bad3 && cp $T/bad/ckpt-0000000080.cgck $T/bad/ckpt-0000000100.cgck $T/bad3/
run fallback $MPIRUN -np 2 $BIN $COMMON $SCHED --batch 4 --steps 100 --checkpoint-dir $T/bad \
    --resume --params-out $T/fallback.bin
want fallback "skipping checkpoint $T/bad/ckpt-0000000100.cgck: corrupt: payload CRC mismatch"
want fallback "skipping checkpoint $T/bad/ckpt-0000000080.cgck: truncated"
want fallback "resumed from $T/bad/ckpt-0000000060.cgck: step 60"
echo "resumed from the newest valid checkpoint (60) vs uninterrupted:"
$CMP $T/fallback.bin $T/plain.bin 0 bitwise || fail=1
# resumed without retyping the flags (the documented way): the damage is the reason given, not
# "another model shape" (the settings of the command line alone), for the file and for a
# directory of damaged files only
for src in $T/bad3/ckpt-0000000080.cgck $T/bad3; do
  timeout 60 $MPIRUN -np 2 $BIN train --resume $src > $T/bare.log 2>&1; rc=$?
  if [ $rc -eq 2 ] && grep -q "truncated" $T/bare.log && ! grep -q "model shape" $T/bare.log; then
    echo "  ok: --resume $src alone: $(grep -m1 error: $T/bare.log)"
  else echo "FAIL --resume $src alone: exit $rc (want 2, 'truncated'):"; cat $T/bare.log; fail=1
  fi
done
grep -q "skipping checkpoint $T/bad3/ckpt-0000000100.cgck: corrupt: payload CRC" $T/bare.log ||
  { echo "FAIL --resume $T/bad3: the CRC-bad file not named"; fail=1; }
cp -r $T/ck $T/bad2
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(5000); b=f.read(1); f.seek(5000); f.write(bytes([b[0]^1]))" $T/bad2/ckpt-0000000100.cgck
$BIN inspect $T/bad2/ckpt-0000000100.cgck > $T/inspect_bad.log; rc=$?
[ $rc -eq 1 ] || { echo "FAIL inspect of a corrupt file: exit $rc, want 1"; fail=1; }
want inspect_bad "INVALID"
run inspect_good $BIN inspect $T/ck/ckpt-0000000060.cgck
want inspect_good "step:          60 completed"
want inspect_good "verdict:       valid"
run inspect_dir $BIN inspect $T/bad2
want inspect_dir "--resume would load $T/bad2/ckpt-0000000080.cgck"
# pointer files: a malformed DIR/last is named as such (not "no pointer file"), and one naming a
# checkpoint that is gone says so
cp $T/bad2/last $T/last.keep
echo garbage > $T/bad2/last
run inspect_badlast $BIN inspect $T/bad2
want inspect_badlast "last: none ($T/bad2/last is not a pointer file: it names no checkpoint)"
printf 'ckpt-0000000990.cgck\nstep 990\n' > $T/bad2/last
run inspect_gonelast $BIN inspect $T/bad2
want inspect_gonelast "last: $T/bad2/ckpt-0000000990.cgck (step 990; its file is missing)"
mv $T/last.keep $T/bad2/last
# a FIFO named as a checkpoint is named invalid, never read, and one given to inspect refused:
# no hang
mkfifo $T/bad2/ckpt-0000000200.cgck $T/fifo.cgck
run fifo_dir $BIN inspect $T/bad2
want fifo_dir "$T/bad2/ckpt-0000000200.cgck: cannot open: not a regular file"
want fifo_dir "--resume would load $T/bad2/ckpt-0000000080.cgck"
timeout 20 $BIN inspect $T/fifo.cgck > $T/fifo_file.log 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL inspect of a FIFO: exit $rc, want 2"; fail=1; }
want fifo_file "$T/fifo.cgck is a FIFO, not a checkpoint file or directory"
rm $T/bad2/ckpt-0000000200.cgck
timeout 60 $MPIRUN -np 2 $BIN $COMMON --model-base 8 --batch 4 --steps 100 \
    --resume $T/ck/ckpt-0000000060.cgck > $T/shape.log 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL another shape: exit $rc, want 2"; fail=1; }
# since checkpoint version 4 (issue 14) the stored settings refuse it first, naming both values
# (the shape check behind it: test_ckpt)
want shape "--model-base: the checkpoint has 4, the command line 8"
touch $T/afile
timeout 60 $MPIRUN -np 2 $BIN $COMMON --batch 4 --steps 5 --checkpoint-dir $T/afile/ck \
    > $T/unwritable.log 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL unwritable --checkpoint-dir: exit $rc, want 2"; fail=1; }
want unwritable "--checkpoint-dir: cannot create directory '$T/afile/ck': Not a directory"
if [ "$(id -u)" -ne 0 ]; then
  mkdir $T/ro && chmod 555 $T/ro
  timeout 60 $MPIRUN -np 2 $BIN $COMMON --batch 4 --steps 5 --checkpoint-dir $T/ro \
      > $T/ro.log 2>&1; rc=$?
  [ $rc -eq 2 ] || { echo "FAIL read-only --checkpoint-dir: exit $rc, want 2"; fail=1; }
  want ro "--checkpoint-dir: cannot create files in '$T/ro'"
fi
# the flags: --resume=FILE; a bare --resume and --checkpoint-every need --checkpoint-dir
run eqform $MPIRUN -np 2 $BIN $COMMON --batch 4 --steps 41 --resume=$T/ck45/ckpt-0000000040.cgck
want eqform "resumed from $T/ck45/ckpt-0000000040.cgck: step 40"
for args in "--resume" "--checkpoint-every 5"; do
  timeout 60 $MPIRUN -np 2 $BIN $COMMON --batch 4 --steps 5 $args > $T/flag.log 2>&1; rc=$?
  [ $rc -eq 2 ] && grep -q "needs --checkpoint-dir\|which is not set" $T/flag.log &&
    echo "  ok: $args alone: $(grep error: $T/flag.log)" ||
    { echo "FAIL $args without --checkpoint-dir: exit $rc"; cat $T/flag.log; fail=1; }
done
[ $fail -eq 0 ] && echo "test_resume: all passed"
exit $fail
