#!/usr/bin/env bash
# Checkpoint directories across runs and resumes (a user-acceptance run's findings), CPU backend,
# real mpirun:
#  1. a resume whose step already reaches the run's total (--steps below the checkpoint's, on
#     another number of ranks, from an older FILE, or by --epochs) trains nothing and leaves the
#     directory byte for byte as it was: no checkpoint written (it was one under a lower step
#     with an invalid opt_t) and none removed (the run's later ones went as "a later step");
#     a resume with another global batch whose total equals the checkpoint's step number in the
#     old batches still writes its final checkpoint (it was taken for the one loaded);
#  2. `--resume DIR` continues the newest run there: after --overwrite-checkpoints (the earlier
#     run set aside in DIR/previous-*/) and a SIGUSR1 stop, the new run's stop checkpoint, not the
#     earlier run's higher step; in a directory holding two runs, DIR/last's run, and without
#     DIR/last the one written last;
#  3. DIR/best never names a checkpoint replaced without its own validation (a resume from an
#     older FILE writing the same steps with --val-every 0): best's figure is the named file's;
#  4. a run with nothing to train writes valid JSON (null, never NaN) and says no step trained;
#     --metrics-out, --stats-out and the history parse with a strict JSON reader;
#  5. a later run holding the directory's lock removes the temporaries a killed writer left (its
#     own pattern only) and says so;
#  6. --keep K keeps the K newest besides the one best names, as --help says;
#  7. another run's files are never replaced, the set-aside folder never written to;
#  8. a resume with another global batch keeps every file of the run it resumed.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
S="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4
   --train-samples 64 --val-samples 16 --progress off --threads 1"
source "$(dirname "${BASH_SOURCE[0]}")/runlib.sh" # run, want
lacks() { # lacks NAME TEXT: the log of NAME does not contain TEXT
  if grep -qF -- "$2" "$T/$1.log"; then echo "FAIL $1: '$2' in:"; cat "$T/$1.log"; fail=1; fi
}
snap() { (cd "$1" && find . -maxdepth 1 -type f ! -name .cogpu-dist.lock -exec md5sum {} + | sort); }
same() { # same DIR SNAPSHOT WHAT: DIR's files are those of SNAPSHOT
  if [ "$(snap "$1")" = "$2" ]; then echo "  ok: $1 unchanged ($3)"
  else echo "FAIL $3: $1 changed:"; diff <(echo "$2") <(snap "$1"); fail=1; fi
}
ck() { printf '%s/ckpt-%010d.cgck' "$1" "$2"; }

# ---- 1. nothing to train: nothing written, nothing removed ----
C1=$T/c1
run a1 0 $MPIRUN -np 2 $BIN $S --steps 30 --checkpoint-every 10 --checkpoint-dir $C1
s1=$(snap $C1)
run below 0 $MPIRUN -np 1 $BIN train --resume $C1 --steps 5
want below "nothing to train, and no checkpoint is written or removed in $C1"
want below "final: no steps trained"
lacks below "a later step of this run's lineage"; lacks below "checkpoint: step"
same $C1 "$s1" "--steps 5 below the checkpoint's 30, on 1 rank instead of 2"
[ -f "$(ck $C1 5)" ] && { echo "FAIL: a checkpoint of step 5 was written"; fail=1; }
run below2 0 $MPIRUN -np 2 $BIN train --resume $C1 --steps 10
same $C1 "$s1" "--steps 10 below the checkpoint's 30"
run file 0 $MPIRUN -np 2 $BIN train --resume "$(ck $C1 20)" --steps 20
want file "nothing to train"
want file "step 20, older than its run's newest checkpoint $(ck $C1 30) (step 30)"
same $C1 "$s1" "--resume FILE of step 20 with --steps 20 (the later ckpt-30 stays)"
run epochs 0 $MPIRUN -np 2 $BIN train --resume $C1 --steps 0 --epochs 2
want epochs "already reaches this run's 16 steps: nothing to train"
same $C1 "$s1" "--epochs 2 (16 steps) below the checkpoint's 30"
$BIN inspect $C1 > $T/i1.log 2>&1 || { echo "FAIL: inspect finds an invalid checkpoint"; cat $T/i1.log; fail=1; }
run on 0 $MPIRUN -np 2 $BIN train --resume $C1 --steps 35      # and it still goes on from 30
want on "resumed from $(ck $C1 30)"
want on "checkpoint: step 35"
C1B=$T/c1b   # 60 steps of 4 = step 30 of 8: the run trains 30..60 and must checkpoint step 60
run a1b 0 $MPIRUN -np 1 $BIN $S --steps 60 --checkpoint-dir $C1B
run batch 0 $MPIRUN -np 1 $BIN train --resume $C1B --batch 8
want batch "continuing at step 30"
want batch "checkpoint: step 60 -> $(ck $C1B 60)"

# ---- 2. --resume DIR continues the newest run ----
C2=$T/c2
run a2 0 $MPIRUN -np 2 $BIN $S --steps 40 --checkpoint-every 10 --checkpoint-dir $C2
sa=$(snap $C2); na=$(echo "$sa" | wc -l)
$MPIRUN -np 2 $BIN $S --steps 100 --seed 9 --checkpoint-every 10 --checkpoint-dir $C2 \
  --overwrite-checkpoints --test-slow-rank 0 --test-slow-ms 30 > $T/b2.log 2>&1 &
bpid=$!
for _ in $(seq 600); do grep -q "checkpoint: step 30" $T/b2.log && break; sleep 0.05; done
kill -USR1 $bpid
( sleep 60; kill -9 $bpid ) > /dev/null 2>&1 &
guard=$!
wait $bpid; rc=$?
kill $guard 2> /dev/null
stop=$(sed -n 's/.*stopped by SIGUSR1 .* after step \([0-9]*\) of 100.*/\1/p' $T/b2.log)
if [ $rc -ne 0 ] || [ -z "$stop" ]; then echo "FAIL b2: exit $rc, no stop line"; cat $T/b2.log; fail=1; stop=0
else echo "ok: the new run stopped at step $stop"; fi
want b2 "--overwrite-checkpoints: the earlier run's $na file(s) in $C2"
PREV=$(ls -d $C2/previous-* 2> /dev/null | head -1)
[ -n "$PREV" ] && same $PREV "$sa" "the earlier run, set aside" || { echo "FAIL: no $C2/previous-*"; ls -la $C2; fail=1; }
run requeue 0 $MPIRUN -np 2 $BIN train --resume $C2
want requeue "resumed from $(ck $C2 $stop): step $stop"
want requeue "final: 100 steps"
# two runs in one directory (a run resumed from elsewhere into it): DIR/last's run, then the
# one written last, never the higher step of the other
C3=$T/c3 OTHER=$T/other
run a3 0 $MPIRUN -np 2 $BIN $S --steps 40 --checkpoint-every 20 --checkpoint-dir $C3 --val-samples 0
run c3 0 $MPIRUN -np 2 $BIN $S --steps 10 --seed 5 --checkpoint-dir $OTHER --val-samples 0
run into 0 $MPIRUN -np 2 $BIN train --resume "$(ck $OTHER 10)" --checkpoint-dir $C3 --steps 15
$BIN inspect $C3 > $T/i3.log
want i3 "--resume would load $(ck $C3 15)"
run mixed 0 $MPIRUN -np 2 $BIN train --resume $C3
want mixed "resumed from $(ck $C3 15): step 15"
rm $C3/last
run nolast 0 $MPIRUN -np 2 $BIN train --resume $C3
want nolast "resumed from $(ck $C3 15): step 15"

# ---- 3. DIR/best and a step written again ----
C4=$T/c4
run a4 0 $MPIRUN -np 1 $BIN $S --steps 30 --checkpoint-every 10 --val-every 0 --checkpoint-dir $C4
run branch 0 $MPIRUN -np 1 $BIN train --resume "$(ck $C4 10)" --checkpoint-dir $C4 --lr 0.05 --steps 40
best_is_own() { # best_is_own DIR: DIR/best's figure is the validation in the named file's header
  local dir=$1 file value got
  file=$(sed -n 1p $dir/best); value=$(sed -n 's/^val_iou //p' $dir/best)
  got=$($BIN inspect $dir/$file | sed -n 's/^validation: *at step [0-9]*: val_loss [0-9.]*, val_iou \([0-9.]*\)$/\1/p')
  if [ -n "$got" ] && python3 -c "import sys; sys.exit(abs($value - $got) > 1e-6)"; then
    echo "  ok: $dir/best names $file, val_iou $value: its own validation"
  else echo "FAIL: $dir/best names $file with val_iou $value, the file's own: '${got:-none}'"
    cat $dir/best; $BIN inspect $dir; fail=1; fi
}
best_is_own $C4
$BIN inspect $C4 > $T/i4.log
if grep "no validation" $T/i4.log | grep -q " best$"; then
  echo "FAIL: inspect marks a checkpoint without validation as best"; cat $T/i4.log; fail=1; fi
run fresh4 0 $MPIRUN -np 1 $BIN $S --steps 40 --checkpoint-every 10 --checkpoint-dir $C4 \
    --overwrite-checkpoints --seed 7 --val-samples 0
[ -f $C4/best ] && { echo "FAIL: best left beside a run without validation"; cat $C4/best; fail=1; }
$BIN inspect $C4 > $T/i4b.log
want i4b "best: none"

# ---- 4. nothing to train: valid JSON, no bogus figures ----
C5=$T/c5
STRICT='import json, sys
def no(c): raise ValueError("not JSON: " + c)
for f in sys.argv[1:]:
    for line in open(f):
        json.loads(line, parse_constant=no)'
run a5 0 $MPIRUN -np 2 $BIN $S --steps 20 --checkpoint-dir $C5
run idle 0 $MPIRUN -np 2 $BIN train --resume $C5 --metrics-out $T/m.json --stats-out $T/s.jsonl
want idle "final: no steps trained (resumed at step 20, at or past this run's 20 steps)"
lacks idle "nan"; lacks idle "all-reduce"; lacks idle "train IoU"
python3 -c "$STRICT" $T/m.json $C5/history.jsonl && echo "  ok: metrics and history are JSON" \
  || { echo "FAIL: not JSON:"; cat $T/m.json; fail=1; }
[ ! -s $T/s.jsonl ] || python3 -c "$STRICT" $T/s.jsonl || { echo "FAIL: --stats-out is not JSON"; fail=1; }
python3 - $T/m.json << 'PY' || fail=1
import json, sys
m = json.load(open(sys.argv[1]))
bad = {k: m[k] for k in ("train_loss", "train_iou", "train_iou_run", "img_per_s") if m[k] is not None}
if bad or m["steps_trained"] != 0 or not isinstance(m["val_iou"], float):
    sys.exit(f"FAIL metrics: {bad}, steps_trained {m['steps_trained']}, val_iou {m['val_iou']}")
print("  ok: unmeasured training figures are null, val_iou", m["val_iou"])
PY
C6=$T/c6
run a6 0 $MPIRUN -np 1 $BIN $S --steps 8 --num-classes 3 --checkpoint-dir $C6
run idle3 0 $MPIRUN -np 1 $BIN train --resume $C6 --metrics-out $T/m3.json
python3 -c "$STRICT" $T/m3.json && python3 -c "
import json, sys; m = json.load(open('$T/m3.json'))
sys.exit(m['train_miou'] is not None or m['train_miou_run'] is not None or m['miou'] is None)" \
  && echo "  ok: 3 classes: train_miou null, miou measured" || { echo "FAIL: m3.json"; cat $T/m3.json; fail=1; }

# ---- 5. a killed writer's temporaries ----
C7=$T/c7
run a7 0 $MPIRUN -np 1 $BIN $S --steps 10 --checkpoint-dir $C7
cp "$(ck $C7 10)" $C7/.ckpt-0000000020.cgck.Ab12Cd     # as SIGKILL mid-write leaves it
echo x > $C7/.best.XyZ123
touch -d "20 minutes ago" $C7/.ckpt-0000000020.cgck.Ab12Cd $C7/.best.XyZ123
echo keep > $C7/.notes.ABCDEF; echo keep > $C7/ckpt-notes.txt
echo x > $C7/.ckpt-0000000030.cgck.NoW123 # being written, maybe on another node: kept
run clean 0 $MPIRUN -np 1 $BIN train --resume $C7 --steps 12
want clean "removed 2 stale temporary file(s) of an interrupted checkpoint write"
for f in .ckpt-0000000020.cgck.Ab12Cd .best.XyZ123; do
  [ -e $C7/$f ] && { echo "FAIL: $f left"; fail=1; }; done
for f in .notes.ABCDEF ckpt-notes.txt .ckpt-0000000030.cgck.NoW123; do
  [ -e $C7/$f ] || { echo "FAIL: $f removed"; fail=1; }; done
run clean2 0 $MPIRUN -np 1 $BIN train --resume $C7 --steps 14
lacks clean2 "stale temporary"

# ---- 6. --keep K: the K newest besides best ----
$BIN train --help > $T/help.txt 2>&1
tr -s ' \n' '  ' < $T/help.txt > $T/help.log # --help wraps its lines: one line for the phrase
want help "besides the one DIR/best names"
C8=$T/c8
run a8 0 $MPIRUN -np 1 $BIN $S --steps 60 --checkpoint-every 10 --val-every 10 --keep 2 --checkpoint-dir $C8
n=$(ls $C8/ckpt-*.cgck | wc -l); bestf=$(sed -n 1p $C8/best); lastf=$(sed -n 1p $C8/last)
want_n=$([ "$bestf" = "$lastf" ] && echo 2 || echo 3)
[ "$n" -eq "$want_n" ] && [ -f "$C8/$bestf" ] && echo "  ok: --keep 2: $n files (best $bestf, last $lastf)" \
  || { echo "FAIL: --keep 2 kept $n files, want $want_n (best $bestf, last $lastf)"; ls $C8; fail=1; }

# ---- 7. another run's files are never replaced, the set-aside folder never written to ----
C9=$T/c9 C10=$T/c10
run a9 0 $MPIRUN -np 1 $BIN $S --steps 20 --checkpoint-every 5 --seed 1 --checkpoint-dir $C9
run b9 0 $MPIRUN -np 1 $BIN $S --steps 10 --seed 2 --checkpoint-dir $C10
A15=$(md5sum < "$(ck $C9 15)") A20=$(md5sum < "$(ck $C9 20)")
run c9 0 $MPIRUN -np 1 $BIN train --resume "$(ck $C10 10)" --checkpoint-dir $C9 --steps 20 \
  --checkpoint-every 5
want c9 "held another run's checkpoint of this step"
n=0; for f in $C9/previous-*/ckpt-0000000015.cgck $C9/previous-*/ckpt-0000000020.cgck; do
  [ -f "$f" ] && n=$((n + 1)); done
[ "$(cat $C9/previous-*/ckpt-0000000015.cgck | md5sum)" = "$A15" ] &&
  [ "$(cat $C9/previous-*/ckpt-0000000020.cgck | md5sum)" = "$A20" ] && [ $n -eq 2 ] &&
  echo "  ok: run A's 15 and 20 set aside whole, not replaced" ||
  { echo "FAIL: another run's checkpoints replaced"; ls -R $C9; fail=1; }
P=$(ls -d $C9/previous-* | head -1)
run d9 2 $MPIRUN -np 1 $BIN train --resume "$P/ckpt-0000000015.cgck" --steps 25
want d9 "is a folder of an earlier run set aside by --overwrite-checkpoints"
# --resume DIR writes beside it, so --checkpoint-every needs no --checkpoint-dir there
run e9 0 $MPIRUN -np 1 $BIN train --resume $C9 --steps 25 --checkpoint-every 5
run f9 2 $MPIRUN -np 1 $BIN train --resume $C9 --overwrite-checkpoints --steps 30
want f9 "--overwrite-checkpoints: not with --resume"

# ---- 8. a resume with another global batch renumbers the steps (step 40 of 8 is step 20 of
# 16) and starts a new lineage: as the same one, its first checkpoint removed the earlier run's
# files of higher step numbers, the one it resumed from among them. Now every file of the
# earlier run is kept, in DIR or (one of a step number written again) in DIR/previous-*/.
C11=$T/c11
run a11 0 $MPIRUN -np 2 $BIN $S --steps 40 --checkpoint-every 10 --checkpoint-dir $C11
sums() { (cd "$1" && find . -name 'ckpt-*.cgck' -exec md5sum {} + | awk '{print $1}' | sort); }
s11=$(sums $C11)
run b11 0 $MPIRUN -np 2 $BIN train --resume $C11 --steps 60 --batch 8
want b11 "continuing at step 20"
want b11 "are a new lineage"
lacks b11 "a later step of this run's lineage"
gone=$(comm -23 <(echo "$s11") <(sums $C11))
[ -z "$gone" ] && echo "  ok: the earlier run's $(echo "$s11" | wc -l) checkpoints all kept" ||
  { echo "FAIL: the earlier run's checkpoints removed by the renumbered resume"; ls -R $C11; fail=1; }
run c11 0 $MPIRUN -np 2 $BIN train --resume $C11 --steps 70   # DIR/last: the new run, on
want c11 "resumed from $(ck $C11 60)"

exit $fail
