#!/usr/bin/env bash
# --class-names: a K >= 2 model's classes named in the per-class tables, the metrics JSON,
# TensorBoard's tags, check-data's shares, predict's table and export's metadata.
#  - from a FILE (UTF-8 byte-order mark, CRLF, '#' comments, blank lines, spaces around names,
#    a non-ASCII name) and as a comma list: the same run, and the same parameters as without
#    names (names change no arithmetic);
#  - the table's columns stay aligned with non-ASCII names (wide CJK characters take two); --metrics-out per_class[].name;
#    TensorBoard's val_class_iou/NAME and val_class_acc/NAME; check-data's shares name the
#    classes;
#  - stored in the checkpoint: a resume without the flag keeps them (with the same FILE or
#    spelling, silently), one with others says so and takes them, none drops them; predict
#    --masks names the classes from the checkpoint (a run without names: no name column), or
#    as its own --class-names says;
#    export writes them into the safetensors metadata; --init-from takes them with the head;
#  - refused (exit 2, naming the flag): a binary model, too few or too many names, a name
#    twice, an empty one, a comma, quote or control character in a file's name, bytes that are
#    not UTF-8, a name over 48 bytes, a file that does not exist.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
python3 - "$T" "$(dirname "$0")" <<'PY'
import os, random, sys
sys.path.insert(0, sys.argv[2])
from png_write import blobs, png  # png: 8-bit gray (0) or RGB (2)
t, S = sys.argv[1], 32
os.makedirs(f"{t}/d/images"), os.makedirs(f"{t}/d/masks")
random.seed(7)
for i in range(16):
    ids = blobs(random, S)
    rgb = [[min(255, 50 + 80 * v + random.randint(0, 30)) for v in r for _ in range(3)]
           for r in ids]
    png(f"{t}/d/images/{i:03d}.png", S, S, 2, rgb)
    png(f"{t}/d/masks/{i:03d}.png", S, S, 0, ids)
open(f"{t}/names.txt", "wb").write("\ufeff# the classes\r\nbackground\r\n\r\n  traffic light \r\n"
                                   "Straße 道路\r\n".encode())
w = lambda name, text: open(f"{t}/{name}", "wb").write(text)
w("two.txt", b"a\nb\n")
w("comma.txt", b"a\nb,c\nd\n")
w("quote.txt", b'a\n"b"\nc\n')
w("ctrl.txt", b"a\nb\x01\nc\n")
w("latin1.txt", b"a\nStra\xdfe\nc\n")
PY
S="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4 --progress off
   --threads 1 --num-classes 3 --steps 3 --val-fraction 0.25 --seed 5 --data $T/d"
LIST="background,traffic light,Straße 道路"

# the same run with the names from the file, as a list, and without them
$MPIRUN -np 1 $BIN train $S --class-names "$T/names.txt" --check-data --checkpoint-dir "$T/ck" \
  --metrics-out "$T/m.json" --tensorboard "$T/tb" --params-out "$T/f.params" > "$T/f.log" 2>&1 ||
  { cat "$T/f.log"; fail "train --class-names FILE"; }
$MPIRUN -np 1 $BIN train $S --class-names "$LIST" --params-out "$T/l.params" > "$T/l.log" 2>&1 ||
  { cat "$T/l.log"; fail "train --class-names LIST"; }
$MPIRUN -np 1 $BIN train $S --checkpoint-dir "$T/plain" --params-out "$T/n.params" \
  > "$T/n.log" 2>&1 || { cat "$T/n.log"; fail "train without names"; }
$CMP "$T/f.params" "$T/n.params" 0 > /dev/null || fail "names changed the parameters"
$CMP "$T/l.params" "$T/n.params" 0 > /dev/null || fail "names changed the parameters"
table() { sed -n '/^# class/,/pixels labelled/p' "$1" | tail -5; }
diff <(table "$T/f.log") <(table "$T/l.log") || fail "a FILE and the same list printed otherwise"
table "$T/f.log"
python3 - "$T" "$LIST" <<'PY'
import json, re, sys
t, names = sys.argv[1], sys.argv[2].split(",")
log = open(f"{t}/f.log", encoding="utf-8").read().splitlines()
head = [i for i, l in enumerate(log) if l.startswith("# class")][-1]
rows = log[head:head + 4]
assert rows[0].split()[:3] == ["#", "class", "name"], rows[0]
for c, r in enumerate(rows[1:]):
    f = r.split()
    assert f[0] == str(c) and " ".join(f[1:-5]) == names[c], (c, r)
# terminal columns: the wide CJK characters take two (unicodedata's East Asian width)
import unicodedata
cols = lambda r: sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in r)
assert len({cols(r) for r in rows}) == 1, "columns not aligned:\n" + "\n".join(rows)
# the unnamed run keeps the plain table
plain = open(f"{t}/n.log").read()
assert re.search(r"^# class +IoU +Dice", plain, re.M), plain
m = json.load(open(f"{t}/m.json"))
assert [p["name"] for p in m["per_class"]] == names, m["per_class"]
shares = [l for l in log if "class pixels" in l][0]
assert all(f"{c} {n} " in shares for c, n in enumerate(names)), shares
tb = b"".join(open(f"{t}/tb/{f}", "rb").read() for f in __import__("os").listdir(f"{t}/tb"))
for n in names:
    assert f"val_class_iou/{n}".encode() in tb and f"val_class_acc/{n}".encode() in tb, n
assert b"val_class_iou/0" not in tb
print("ok: the table (aligned), per_class[].name, check-data's shares and TensorBoard's tags")
PY
echo "ok: --class-names FILE and LIST: the same table, and the same parameters as without names"

# a resume keeps the names (given again as the FILE or with spaces: no notice); another list
# is said and taken
$MPIRUN -np 1 $BIN train $S --steps 4 --resume "$T/ck" > "$T/r.log" 2>&1 ||
  { cat "$T/r.log"; fail "resume"; }
table "$T/r.log" | grep -q "traffic light" || { cat "$T/r.log"; fail "resume lost the names"; }
for same in "$T/names.txt" " background , traffic light,Straße 道路 "; do
  $MPIRUN -np 1 $BIN train $S --steps 4 --resume "$T/ck" --class-names "$same" > "$T/rs.log" 2>&1 ||
    { cat "$T/rs.log"; fail "resume with the same names"; }
  grep -q "class-names" "$T/rs.log" && { cat "$T/rs.log"; fail "a notice for the same names"; }
done
$MPIRUN -np 1 $BIN train $S --steps 5 --resume "$T/ck" --class-names bg,light,street \
  > "$T/r2.log" 2>&1 || { cat "$T/r2.log"; fail "resume with other names"; }
grep -q "resume: --class-names bg,light,street (the checkpoint has $LIST)" "$T/r2.log" ||
  { cat "$T/r2.log"; fail "no notice of the new names"; }
table "$T/r2.log" | grep -q " light " || fail "the new names were not taken"
cp -r "$T/ck" "$T/ck0"
$MPIRUN -np 1 $BIN train $S --steps 6 --resume "$T/ck0" --class-names none > "$T/r3.log" 2>&1 ||
  { cat "$T/r3.log"; fail "resume with --class-names none"; }
table "$T/r3.log" | head -1 | grep -qE "^# class +IoU " ||
  { cat "$T/r3.log"; fail "none kept the names"; }
echo "ok: a resume keeps the names; other names are said and taken; none drops them"

# predict names the classes from the checkpoint; export writes them into the metadata
$BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/d/images" --masks "$T/d/masks" \
  --output "$T/p" > "$T/p.log" 2>&1 || { cat "$T/p.log"; fail "predict"; }
grep -E "^predict: +(class|[0-9]+ )" "$T/p.log"
grep -qE "^predict: +class name +IoU " "$T/p.log" || fail "predict: no name column"
grep -qE "^predict: +1 light +0\.[0-9]{6} " "$T/p.log" || fail "predict: class 1 not named"
$BIN predict --backend cpu --checkpoint "$T/plain" --input "$T/d/images" --masks "$T/d/masks" \
  --output "$T/q" > "$T/q.log" 2>&1 || { cat "$T/q.log"; fail "predict (no names)"; }
grep -qE "^predict: +class +IoU " "$T/q.log" || { cat "$T/q.log"; fail "predict: a name column"; }
# names given to predict: instead of the checkpoint's (a run without names too), or none
$BIN predict --backend cpu --checkpoint "$T/plain" --input "$T/d/images" --masks "$T/d/masks" \
  --output "$T/q" --class-names "$T/names.txt" > "$T/q2.log" 2>&1 || { cat "$T/q2.log"; fail "q2"; }
grep -qE "^predict: +1 traffic light +0\." "$T/q2.log" || { cat "$T/q2.log"; fail "given names"; }
$BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/d/images" --masks "$T/d/masks" \
  --output "$T/q" --class-names none > "$T/q3.log" 2>&1 || { cat "$T/q3.log"; fail "q3"; }
grep -qE "^predict: +class +IoU " "$T/q3.log" || { cat "$T/q3.log"; fail "predict: none"; }
expect2 "--class-names: 'a,b': 2 names for 3 classes" $BIN predict --backend cpu \
  --checkpoint "$T/ck" --input "$T/d/images" --masks "$T/d/masks" --output "$T/q" \
  --class-names a,b
expect2 "--class-names: names the classes of the scores against the ground truth, and there is" \
  $BIN predict --backend cpu --checkpoint "$T/ck" --input "$T/d/images" --output "$T/q" \
  --class-names a,b,c
$BIN export --checkpoint "$T/ck" --out "$T/m.safetensors" > /dev/null
python3 - "$T/m.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
meta = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
assert meta["class_names"] == "bg,light,street", meta
PY
echo "ok: predict --masks names the classes from the checkpoint; export's metadata has them"

# --init-from keeps the names with the head (from a checkpoint or the exported file), not with
# a new head or when the command line names the classes
for src in "$T/ck" "$T/m.safetensors"; do
  $MPIRUN -np 1 $BIN train $S --init-from "$src" > "$T/i.log" 2>&1 ||
    { cat "$T/i.log"; fail "--init-from $src"; }
  grep -q "^init-from: the classes keep its names: bg,light,street" "$T/i.log" &&
    table "$T/i.log" | grep -q " light " || { cat "$T/i.log"; fail "--init-from $src: names"; }
  # said after the weights they come with
  [ "$(grep -n '^init-from: the weights of' "$T/i.log" | cut -d: -f1)" -lt \
    "$(grep -n '^init-from: the classes keep' "$T/i.log" | cut -d: -f1)" ] ||
    { cat "$T/i.log"; fail "--init-from $src: the names said before the weights"; }
done
$MPIRUN -np 1 $BIN train $S --init-from "$T/ck" --class-names x,y,z > "$T/i2.log" 2>&1
table "$T/i2.log" | grep -q "^  1     y " || { cat "$T/i2.log"; fail "--init-from: given names"; }
$MPIRUN -np 1 $BIN train ${S/--num-classes 3/--num-classes 4} --init-from "$T/ck" > "$T/i3.log" \
  2>&1 || { cat "$T/i3.log"; fail "--init-from with a new head"; }
grep -q "classes keep" "$T/i3.log" && { cat "$T/i3.log"; fail "a new head kept the names"; }
grep "^# class" "$T/i3.log" | tail -1 | grep -qE "^# class +IoU " ||
  { cat "$T/i3.log"; fail "a new head: a name column"; }
echo "ok: --init-from keeps the names with the head (checkpoint, safetensors), not otherwise"

# refusals
expect2 "--class-names: names the classes of a model of K >= 2 classes" \
  $BIN train ${S/--num-classes 3/--num-classes 1} --class-names a,b
expect2 "--class-names: 'a,b': 2 names for 3 classes" $BIN train $S --class-names a,b
expect2 "--class-names: name 4: more than 3 names for 3 classes" $BIN train $S --class-names a,b,c,d
expect2 "$T/two.txt: 2 names for 3 classes" $BIN train $S --class-names "$T/two.txt"
# a resume counts a FILE once the checkpoint's settings are in: the message still names it
expect2 "--class-names: $T/two.txt: 'a,b': 2 names for 3 classes" \
  $BIN train --resume "$T/ck" --steps 6 --class-names "$T/two.txt"
expect2 "--class-names: name 3: classes 0 and 2 are both named 'a'" \
  $BIN train $S --class-names a,b,a
expect2 "--class-names: name 2: an empty name (class 1)" $BIN train $S --class-names "a, ,c"
expect2 "$T/comma.txt:2: class 1's name holds a comma" $BIN train $S --class-names "$T/comma.txt"
expect2 "$T/quote.txt:2: class 1's name holds a quote" \
  $BIN train $S --class-names "$T/quote.txt"
expect2 "$T/ctrl.txt:2: class 1's name holds a control character" \
  $BIN train $S --class-names "$T/ctrl.txt"
expect2 "$T/latin1.txt:2: class 1's name holds bytes that are not UTF-8" \
  $BIN train $S --class-names "$T/latin1.txt"
expect2 "name 2: class 1's name is 49 bytes, longer than 48" \
  $BIN train $S --class-names "a,$(printf 'x%.0s' $(seq 49)),c"
expect2 "--class-names: 'one' is no file" $BIN train $S --class-names one
expect2 "--class-names: '$T/none.txt' is no file" $BIN train $S --class-names "$T/none.txt"
echo "PASS test_class_names"
