#!/usr/bin/env bash
# train --init-from: fine-tuning from a trained model. A 3-class model A is trained on synthetic
# data with a checkpoint directory. Runs started from it with a learning rate of 1e-30 (every
# AdamW update far below a float's resolution at the weights' size) hold their initial weights
# at the end, which --params-out writes. Checks:
#  - from A/best, with the same classes: the weights are A's (max|a-b| <= 1e-9 of max|b|), and
#    the first validation scores A's final figures (1e-6); --model-base and --model-depth come
#    from A when not given;
#  - from A's directory, a pointer file and the .safetensors file export writes (also with a
#    non-square training size in its metadata): the same;
#  - 2 ranks x batch 4: the same weights;
#  - --num-classes 2: every layer but the head is A's, and the head is the one a fresh run of
#    the same seed starts with;
#  - with --resume: the first run starts from A (its checkpoints are a new run), the second
#    resumes its own checkpoint and says --init-from is not used; the checkpoints keep naming A's
#    file, also after a resume without the flag;
#  - --init-from on some ranks only: exit 2, no hang;
#  - a flag against A's model, K not given for a K-class model, a missing file, a file that is
#    no checkpoint, a truncated one, an empty directory: exit 2 naming the flag or the file; a
#    safetensors file with a damaged header length or an infinite weight: the importer's
#    message;
#  - predict and inspect of a safetensors file say how to make a checkpoint of it (import);
#  - predict, export and inspect take DIR/best too.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2

SYN="--backend cpu --progress off --threads 1 --image-size 32 --train-samples 64 --val-samples 16
     --seed 3"
$BIN train $SYN --model-base 4 --model-depth 2 --num-classes 3 --batch 8 --steps 20 --lr 0.01 \
  --checkpoint-dir $T/a --params-out $T/a.params --metrics-out $T/a.json > $T/a.log 2>&1 ||
  { cat $T/a.log; fail "training A"; }
# the weights at the end of a run that cannot move them: its initial ones
HOLD="train $SYN --steps 1 --lr 1e-30 --weight-decay 0 --val-every 0"
same_as_a() { # same_as_a NAME: NAME.params equal A's, NAME.json scores A's figures
  $CMP $T/$1.params $T/a.params 1e-9 | tail -1
  /usr/bin/python3 - $T/a.json $T/$1.json << 'PYEOF' || fail "$1: validation differs from A's"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for k in ("val_loss", "val_iou", "val_acc"):
    assert abs(a[k] - b[k]) <= 1e-6, (k, a[k], b[k])
PYEOF
}
run_hold() { # run_hold NAME ARGS...: a holding run writing NAME.params and NAME.json
  local name=$1; shift
  $BIN $HOLD --params-out $T/$name.params --metrics-out $T/$name.json "$@" > $T/$name.log 2>&1 ||
    { cat $T/$name.log; fail "run $name: $*"; }
}

run_hold b --batch 8 --num-classes 3 --init-from $T/a/best
grep -q "init-from: the weights of $T/a/ckpt-0000000020.cgck (step 20; base 4, depth 2, 3" \
  $T/b.log || { cat $T/b.log; fail "init-from banner"; }
grep -q "every layer from it, the head too" $T/b.log || fail "head kept banner"
same_as_a b
run_hold b_dir --batch 8 --num-classes 3 --init-from $T/a
same_as_a b_dir
$BIN export --checkpoint $T/a/best --out $T/a.safetensors > /dev/null
run_hold b_st --batch 8 --num-classes 3 --init-from $T/a.safetensors
same_as_a b_st
# the file's training size is no part of the weights: a non-square one (which import refuses,
# as no --resume could use its checkpoint) starts a run at any --image-size
/usr/bin/python3 -c 'import json, struct, sys; d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n])
h["__metadata__"].update(height="64", width="32"); t = json.dumps(h).encode()
t += b" " * (-len(t) % 8); open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + d[8 + n:])
' $T/a.safetensors $T/nsq.safetensors
run_hold b_nsq --batch 8 --num-classes 3 --init-from $T/nsq.safetensors
same_as_a b_nsq
$MPIRUN -np 2 $BIN $HOLD --batch 4 --num-classes 3 --init-from $T/a/last \
  --params-out $T/b2.params --metrics-out $T/b2.json > $T/b2.log 2>&1 ||
  { cat $T/b2.log; fail "2 ranks"; }
same_as_a b2

# a new label set: a new head, the rest from A
run_hold c --batch 8 --num-classes 2 --init-from $T/a
grep -q "the head is new (2 class(es), it has 3)" $T/c.log || { cat $T/c.log; fail "new head"; }
run_hold d --batch 8 --num-classes 2 --model-base 4 --model-depth 2 # a fresh run
/usr/bin/python3 - $T << 'PYEOF' || fail "new head: weights"
import sys
import numpy as np
t = sys.argv[1]
a, c, d = (np.fromfile(f"{t}/{n}.params", np.float32) for n in "acd")
ha, hc = 4 * 3 + 3, 4 * 2 + 2  # head: [K][base] weights and K biases, last in the flat layout
assert len(a) - ha == len(c) - hc == len(d) - hc
body = np.abs(c[:-hc] - a[:-ha]).max() / np.abs(a[:-ha]).max()
head = np.abs(c[-hc:] - d[-hc:]).max() / np.abs(d[-hc:]).max()
fresh = np.abs(d[:-hc] - a[:-ha]).max() / np.abs(a[:-ha]).max()
print(f"new head: body vs A {body:.1e}, head vs a fresh run's {head:.1e} (a fresh body vs A "
      f"{fresh:.1e})")
assert body <= 1e-9 and head <= 1e-9 and fresh > 1e-2
PYEOF

# with --resume: A's weights once, then the run's own checkpoints
RES="train $SYN --batch 8 --num-classes 2 --init-from $T/a --checkpoint-dir $T/e --resume"
$BIN $RES --steps 4 > $T/e1.log 2>&1 || { cat $T/e1.log; fail "resume run 1"; }
grep -q "init-from: the weights of" $T/e1.log || fail "resume run 1 did not start from A"
$BIN $RES --steps 8 > $T/e2.log 2>&1 || { cat $T/e2.log; fail "resume run 2"; }
grep -q "init-from: not used: the run resumes" $T/e2.log || { cat $T/e2.log; fail "resume 2"; }
grep -q "resumed from $T/e/ckpt-0000000004.cgck" $T/e2.log || fail "resume 2 from step 4"
$BIN inspect $T/e/last | grep -q "\"init-from\": \"$T/a/ckpt-0000000020.cgck\"" ||
  fail "the resumed run's checkpoint does not record the file it started from"
$BIN ${RES/--init-from $T\/a/} --steps 10 > $T/e3.log 2>&1 || { cat $T/e3.log; fail "resume 3"; }
grep -q "init-from" $T/e3.log && fail "resume 3 mentions --init-from, not given"
$BIN inspect $T/e/last | grep -q "\"init-from\": \"$T/a/ckpt-0000000020.cgck\"" ||
  fail "a resume without --init-from lost the record"

# refusals
expect2 "--model-base 8: the --init-from model" $BIN $HOLD --num-classes 3 --model-base 8 \
  --init-from $T/a
expect2 "its model has 3 classes: give --num-classes" $BIN $HOLD --init-from $T/a
expect2 "--init-from $T/none: No such file" $BIN $HOLD --init-from $T/none
expect2 "bad magic) (--init-from takes a checkpoint FILE" $BIN $HOLD --init-from $T/a.log
# a safetensors file is told by its '{' at byte 8, its header length not judged: a damaged one
# gets the importer's message, not a checkpoint reader's "bad magic"
/usr/bin/python3 -c 'import sys; d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write((2**63 + 5).to_bytes(8, "little") + d[8:])' $T/a.safetensors \
  $T/badlen.safetensors
expect2 "--init-from $T/badlen.safetensors: not a usable safetensors file: header length \
9223372036854775813 does not fit" $BIN $HOLD --num-classes 3 --init-from $T/badlen.safetensors
# an infinite weight (the last one: head.bias[2]), refused as import refuses it
/usr/bin/python3 -c 'import struct, sys; d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(d[:-4] + struct.pack("<f", float("-inf")))' $T/a.safetensors \
  $T/inf.safetensors
expect2 "--init-from $T/inf.safetensors: not a usable safetensors file: tensor head.bias: \
element 2 is infinite" $BIN $HOLD --num-classes 3 --init-from $T/inf.safetensors
head -c 5000 $T/a/ckpt-0000000020.cgck > $T/trunc.cgck
expect2 "--init-from $T/trunc.cgck: truncated" $BIN $HOLD --init-from $T/trunc.cgck
mkdir $T/empty
expect2 "holds no checkpoint" $BIN $HOLD --init-from $T/empty
expect2 "--init-from: " $BIN $HOLD --init-from ""
expect2 "the ranks were started with different settings: some ranks have --init-from" \
  $MPIRUN -np 1 $BIN $HOLD --num-classes 3 --model-base 4 --model-depth 2 : \
  -np 1 $BIN $HOLD --num-classes 3 --init-from $T/a

# a safetensors file where a checkpoint is wanted: how to make one of it
HINT="a safetensors file: make a checkpoint of it with \`cogpu-dist import --in $T/a.safetensors \
--out DIR\`"
expect2 "$HINT" $BIN predict --backend cpu --checkpoint $T/a.safetensors --input $T --output $T/o1
set +e; $BIN inspect $T/a.safetensors > $T/o 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -qF -- "$HINT" $T/o || { cat $T/o; fail "inspect of a safetensors file"; }

# DIR/best elsewhere
$BIN inspect $T/a/best | head -1 | grep -q "names $T/a/ckpt-0000000020.cgck" || fail "inspect"
/usr/bin/python3 -c '
import sys
import numpy as np
from PIL import Image
Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), np.uint8)).save(sys.argv[1])
' $T/one.png
mkdir $T/in && mv $T/one.png $T/in/
$BIN predict --backend cpu --checkpoint $T/a/best --input $T/in --output $T/out > $T/p.log 2>&1 ||
  { cat $T/p.log; fail "predict --checkpoint DIR/best"; }
[ -s $T/out/one.png ] || fail "predict wrote no mask"
echo "PASS"
