#!/usr/bin/env bash
# export -> PyTorch -> ONNX Runtime parity (issue 14), label interop. For a binary model
# (synthetic data) and a K = 4 one (palette masks with the ignore label, tests/
# predict_full_fixture.py), each trained a few steps on the CPU at 32x32:
#   - `export` to safetensors; python/cogpu_torch.py loads it (strict) and its probabilities on
#     8 held-out 32x32 PNGs equal `predict --save-probs` (one tile per image) within 1e-4 of
#     max|b| (tests/interop_check.py states the metric);
#   - ONNX Runtime on the same images agrees with PyTorch's logits within 1e-4 (also at another
#     batch and image size: dynamic axes). Needs onnxruntime in BUILD/interop-venv, which
#     scripts/test.sh makes (pip); without it that part is skipped with a message;
#   - export -> import -> export is bitwise (cmp), and the imported checkpoint resumes;
#   - import refuses a file with a misshapen or missing tensor, or a non-F32 one (exit 2, naming
#     the tensor), one claiming a model far larger than its bytes, tensors sharing bytes,
#     bytes after the tensors, a name given twice, a non-square model (height != width) and a
#     NaN weight; export/import usage errors exit 2 (an uncreatable import --out is named as
#     --out); python/cogpu_torch.py's load refuses each file import refuses, with its message
#     (but the non-square one, which only a resume could not use).
# Torch comes from Debian's python3-torch (/usr/bin/python3); no torch: skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree
if ! $PY -c "import torch, numpy" 2> /dev/null; then
  echo "SKIP: $PY has no torch/numpy (Debian: apt-get install python3-torch)"; exit 77
fi
VPY=$BUILD/interop-venv/bin/python
ONNX=1
if ! [ -x "$VPY" ] || ! "$VPY" -c "import onnxruntime, torch" 2> /dev/null; then
  echo "NOTE: no onnxruntime in $BUILD/interop-venv (scripts/test.sh makes it): ONNX part skipped"
  ONNX=0
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$PY "$HERE/interop_check.py" images "$T/held" 32 8
python3 "$HERE/predict_full_fixture.py" make "$T/fx" 32 4

fail() { echo "FAIL $*"; exit 1; }
for K in 1 4; do
  if [ $K = 1 ]; then DATA=(--train-samples 256 --val-samples 16); else
    DATA=(--data "$T/fx/train" --val-fraction 0.1 --num-classes 4 --ignore-index 255); fi
  $MPIRUN -np 1 $BIN train --backend cpu "${DATA[@]}" --image-size 32 --model-base 4 \
    --model-depth 2 --batch 8 --steps 30 --lr 3e-3 --progress off --threads 1 \
    --checkpoint-dir "$T/ck$K" --checkpoint-every 30 > "$T/train$K.log" 2>&1 ||
    { cat "$T/train$K.log"; fail "train K=$K"; }
  $BIN export --checkpoint "$T/ck$K" --out "$T/m$K.safetensors" || fail "export K=$K"
  $MPIRUN -np 1 $BIN predict --backend cpu --checkpoint "$T/ck$K" --input "$T/held" \
    --output "$T/pred$K" --save-probs > "$T/pred$K.log" 2>&1 ||
    { cat "$T/pred$K.log"; fail "predict K=$K"; }
  grep -q "tiles 32x32" "$T/pred$K.log" || fail "predict did not use one 32x32 tile per image"
  $PY "$HERE/interop_check.py" torch "$T/m$K.safetensors" "$T/held" "$T/pred$K" ||
    fail "PyTorch parity K=$K"
  if [ $ONNX = 1 ]; then
    "$VPY" "$HERE/interop_check.py" onnx "$T/m$K.safetensors" "$T/held" "$T/m$K.onnx" ||
      fail "ONNX Runtime parity K=$K"
  fi
  $BIN import --in "$T/m$K.safetensors" --out "$T/imp$K" || fail "import K=$K"
  $BIN export --checkpoint "$T/imp$K" --out "$T/r$K.safetensors" || fail "re-export K=$K"
  cmp "$T/m$K.safetensors" "$T/r$K.safetensors" || fail "export -> import -> export differs"
  echo "PASS K=$K: export -> import -> export bitwise ($(stat -c %s "$T/m$K.safetensors") bytes)"
done
# The module's command line writes ONNX too (torch.onnx.export needs no onnxruntime).
(cd "$HERE/../python" && $PY -m cogpu_torch "$T/m4.safetensors" --onnx "$T/cli.onnx") ||
  fail "python3 -m cogpu_torch --onnx"
[ -s "$T/cli.onnx" ] || fail "no ONNX file written"
# The module names the two mistakes a PyTorch user makes: a checkpoint for an export, and a size
# that is not a multiple of 2^depth.
(cd "$HERE/../python" && $PY - "$T" <<'PYEOF'
import glob, sys, torch, cogpu_torch
t = sys.argv[1]
for call, want in ((lambda: cogpu_torch.load(glob.glob(t + "/ck4/ckpt-*.cgck")[0]),
                    "a cogpu-dist checkpoint, not a safetensors file"),
                   (lambda: cogpu_torch.load(t + "/m4.safetensors")(torch.zeros(1, 3, 30, 32)),
                    "multiples of 2^depth = 4")):
    try:
        call()
        sys.exit("no error")
    except ValueError as e:
        if want not in str(e):
            sys.exit("unexpected message: %s" % e)
PYEOF
) || fail "cogpu_torch's messages for a checkpoint and a bad size"
# Fine-tuning from the imported checkpoint: train --resume runs on from step 0.
$MPIRUN -np 1 $BIN train --backend cpu --train-samples 256 --val-samples 16 --image-size 32 \
  --model-base 4 --model-depth 2 --batch 8 --steps 5 --progress off --threads 1 \
  --checkpoint-dir "$T/imp1" --resume "$T/imp1" > "$T/ft.log" 2>&1 ||
  { cat "$T/ft.log"; fail "train --resume from an imported checkpoint"; }
[ -f "$T/imp1/ckpt-0000000005.cgck" ] || { cat "$T/ft.log"; fail "no step-5 checkpoint"; }
# step 0 has no data position: nothing is "trained a second time", no seed to continue
! grep -qE "trained a second time|was written with --seed" "$T/ft.log" ||
  { cat "$T/ft.log"; fail "data-position notices on a step-0 checkpoint"; }
echo "PASS an imported checkpoint resumes (fine-tuning)"

# Refusals: exit 2, naming what is wrong.
expect2() { # WHAT PATTERN CMD...
  local what=$1 pat=$2; shift 2
  local rc=0; "$@" > "$T/err.log" 2>&1 || rc=$?
  [ $rc = 2 ] || { cat "$T/err.log"; fail "$what: exit $rc, expected 2"; }
  grep -q -- "$pat" "$T/err.log" || { cat "$T/err.log"; fail "$what: message lacks '$pat'"; }
  echo "PASS $what: $(head -1 "$T/err.log")"
}
edit() { # IN OUT PYTHON-EXPR-ON-header-dict
  $PY - "$1" "$2" "$3" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n]); exec(sys.argv[3])
t = json.dumps(h).encode(); t += b" " * (-len(t) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + d[8 + n:])
PY
}
edit "$T/m1.safetensors" "$T/shape.st" 'h["head.weight"]["shape"] = [1, 4, 2, 2]'
expect2 "import of a misshapen tensor" "tensor head.weight: shape \[1, 4, 2, 2\]" \
  $BIN import --in "$T/shape.st" --out "$T/bad1"
edit "$T/m1.safetensors" "$T/miss.st" 'h["up.0.bias_x"] = h.pop("up.0.bias")'
expect2 "import of a renamed tensor" "up.0.bias" $BIN import --in "$T/miss.st" --out "$T/bad2"
edit "$T/m1.safetensors" "$T/del.st" 'del h["dec.1.conv2.weight"]'
expect2 "import without a tensor" "missing tensor dec.1.conv2.weight" \
  $BIN import --in "$T/del.st" --out "$T/bad6"
edit "$T/m1.safetensors" "$T/f16.st" 'h["enc.0.conv1.bias"]["dtype"] = "F16"'
expect2 "import of an F16 tensor" "enc.0.conv1.bias: dtype F16" \
  $BIN import --in "$T/f16.st" --out "$T/bad3"
# a file may claim any model train could make: the largest (base 1024) is refused for its
# tensors, before anything its size is allocated (it used to end in "out of memory", exit 1);
# beyond train's bounds the metadata itself is refused
edit "$T/m1.safetensors" "$T/giant.st" 'm = h["__metadata__"]; m["base"] = "1024"'
edit "$T/m1.safetensors" "$T/huge.st" 'm = h["__metadata__"]; m["height"] = "16384"'
expect2 "import of a file claiming 16384-pixel tiles" "\"height\" = \"16384\" is not an integer \
in 2..8192" $BIN import --in "$T/huge.st" --out "$T/bad7"
expect2 "import of a file claiming a giant model" "shape .*, the metadata's model needs" \
  $BIN import --in "$T/giant.st" --out "$T/bad7"
edit "$T/m1.safetensors" "$T/overlap.st" \
  'h["enc.0.conv2.bias"]["data_offsets"] = h["enc.0.conv1.bias"]["data_offsets"]'
expect2 "import of tensors sharing bytes" "enc.0.conv1.bias and enc.0.conv2.bias overlap" \
  $BIN import --in "$T/overlap.st" --out "$T/bad8"
$PY - "$T/m1.safetensors" "$T/dup.st" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
t = json.dumps(h)[:-1] + ', "head.bias": ' + json.dumps(h["head.bias"]) + "}"  # named twice
t = t.encode(); t += b" " * (-len(t) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + d[8 + n:])
PY
expect2 "import of a tensor named twice" "head.bias appears twice" \
  $BIN import --in "$T/dup.st" --out "$T/bad10"
{ cat "$T/m1.safetensors"; printf 'tail'; } > "$T/tail.st"
expect2 "import of a file with bytes after the tensors" "the data section has" \
  $BIN import --in "$T/tail.st" --out "$T/bad9"
edit "$T/m1.safetensors" "$T/meta.st" 'h["__metadata__"]["depth"] = "3"'
expect2 "import with another depth in the metadata" "missing tensor\|unexpected tensor\|shape" \
  $BIN import --in "$T/meta.st" --out "$T/bad4"
# the ignore label of a binary model's masks is no class id (0, 1), as train's --ignore-index;
# a palette is hex digits alone (sscanf's %x took "+1-1" for 0x01, 0xff)
edit "$T/m1.safetensors" "$T/ign.st" 'h["__metadata__"]["ignore_index"] = "1"'
expect2 "import of an ignore label that is a class id" "ignore_index 1 is a class id" \
  $BIN import --in "$T/ign.st" --out "$T/bad11"
edit "$T/m1.safetensors" "$T/pal.st" 'h["__metadata__"]["palette"] = "+1-100"'
expect2 "import of a palette with signs" "palette: not hex at digit 0" \
  $BIN import --in "$T/pal.st" --out "$T/bad12"
# a weight that is not finite: NaN logits from the first step (element 2 of head.weight)
$PY - "$T/m1.safetensors" "$T/nan.st" <<'PY'
import json, struct, sys
d = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", d[:8])[0]
b = json.loads(d[8:8 + n])["head.weight"]["data_offsets"][0]
d[8 + n + b + 8:8 + n + b + 12] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(d)
PY
expect2 "import of a NaN weight" "tensor head.weight: element 2 is NaN" \
  $BIN import --in "$T/nan.st" --out "$T/bad16"
# train's models are square (--image-size N): a checkpoint of another shape none could resume
edit "$T/m1.safetensors" "$T/nsq.st" 'h["__metadata__"].update(width="32", height="64")'
expect2 "import of a non-square model" "height 64 and width 32 differ" \
  $BIN import --in "$T/nsq.st" --out "$T/bad15"
expect2 "import --in a directory" "a directory, not a file" \
  $BIN import --in "$T" --out "$T/bad13"
expect2 "import --in a device" "not a regular file (a device)" \
  $BIN import --in /dev/zero --out "$T/bad14"
head -c 5 "$T/m1.safetensors" > "$T/short.st"
expect2 "import of a truncated file" "short.st" $BIN import --in "$T/short.st" --out "$T/bad5"
# cogpu_torch.load refuses what import refuses, with its message: the files above and metadata
# that would hang (depth 60) or allocate hundreds of GB (base 100000) in PyTorch
edit "$T/m1.safetensors" "$T/depth.st" 'h["__metadata__"]["depth"] = "60"'
edit "$T/m1.safetensors" "$T/base.st" 'h["__metadata__"]["base"] = "100000"'
edit "$T/m1.safetensors" "$T/habc.st" 'h["__metadata__"]["height"] = "abc"'
(cd "$HERE/../python" && $PY - "$BIN" "$T" <<'PYEOF'
import subprocess, sys, cogpu_torch
bin_, t = sys.argv[1:3]
names = "shape miss del f16 giant huge overlap dup tail meta ign pal nan short depth base habc"
for name in names.split():
    f = "%s/%s.st" % (t, name)
    c = subprocess.run([bin_, "import", "--in", f, "--out", t + "/py-" + name],
                       capture_output=True, text=True)
    want = c.stderr.strip().split(f + ": ", 1)[-1]
    assert c.returncode == 2 and want, (name, c.returncode, c.stderr)
    try:
        cogpu_torch.load(f)
        sys.exit("%s: cogpu_torch loaded a file import refuses (%s)" % (name, want))
    except ValueError as e:
        if str(e) != "%s: %s" % (f, want):
            sys.exit("%s: cogpu_torch says\n  %s\nimport says\n  %s" % (name, e, want))
print("PASS cogpu_torch.load refuses the %d files import refuses, with its messages" %
      len(names.split()))
PYEOF
) || fail "cogpu_torch's refusals"
expect2 "import into a directory with checkpoints" "already holds" \
  $BIN import --in "$T/m1.safetensors" --out "$T/imp1"
expect2 "export without --out" "--out is required" $BIN export --checkpoint "$T/ck1"
expect2 "export of a missing checkpoint" "$T/nope" $BIN export --checkpoint "$T/nope" --out "$T/x"
# a run's files are no outputs: DIR/last (a run resumes through it), a checkpoint's name (a run
# would take the file for one), its history (by its first record), and an import into a
# directory with a file named last
cp "$T/ck1/last" "$T/last.keep"
expect2 "export over a checkpoint directory's last" "is a checkpoint directory's last or best" \
  $BIN export --checkpoint "$T/ck1" --out "$T/ck1/last"
cmp -s "$T/ck1/last" "$T/last.keep" || fail "the refused export changed DIR/last"
expect2 "export to a checkpoint's name" "is named as checkpoints are" \
  $BIN export --checkpoint "$T/ck1" --out "$T/ck1/ckpt-0000000099.cgck"
[ ! -e "$T/ck1/ckpt-0000000099.cgck" ] || fail "export wrote a file named as a checkpoint"
cp "$T/ck1/history.jsonl" "$T/history.keep" || fail "the run wrote no history.jsonl"
expect2 "export over a run's history" "is a run's validation history" \
  $BIN export --checkpoint "$T/ck1" --out "$T/ck1/history.jsonl"
cmp -s "$T/ck1/history.jsonl" "$T/history.keep" || fail "the refused export changed the history"
mkdir -p "$T/notes" && echo "my notes" > "$T/notes/last"
expect2 "import into a directory holding a file named last" "already holds a file named last" \
  $BIN import --in "$T/m1.safetensors" --out "$T/notes"
grep -qx "my notes" "$T/notes/last" || fail "the refused import changed the user's file"
expect2 "import with an unknown flag" "unknown option --bogus" $BIN import --in x --bogus y
expect2 "export with an empty --out=" "--out: empty value" $BIN export --checkpoint="$T/ck1" --out=
expect2 "export to FILE.onnx" "export writes safetensors, not ONNX" \
  $BIN export --checkpoint "$T/ck1" --out "$T/m.onnx"
[ ! -e "$T/m.onnx" ] || fail "export --out FILE.onnx wrote a file"
expect2 "import into an uncreatable directory" "import: --out: cannot create directory" \
  $BIN import --in "$T/m1.safetensors" --out "$T/m1.safetensors/sub"
echo "PASS interop"
