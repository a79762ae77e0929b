#!/usr/bin/env bash
# Learning curves (issue 14), CPU backend, 2 ranks, tiny synthetic data (8 steps per epoch):
#  1. by default a run validates once per epoch; its history (CKPT_DIR/history.jsonl and
#     --history-csv) has one record per validation with every key, steps increasing; the stats
#     records carry the latest validation (the final one, the final validation) and
#     cogpu-monitor shows it; --metrics-out has
#     train_iou (last window) and train_iou_run;
#  2. validating changes nothing in training: --val-every 0 gives the same loss lines and
#     bitwise the same parameters; --val-every 5 validates at 5, 10, ... and at the end;
#  3. a resumed run drops the records beyond its step (and a torn last line) and continues the
#     file without duplicates; a fresh run replaces an earlier run's file, warning;
#  4. scripts/plot_history.py writes a PNG (skipped when matplotlib is missing) and refuses a
#     missing or empty history; bad flags exit 2 naming the flag.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
MON=$(cd "$BUILD" && pwd)/cogpu-monitor
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 4
        --train-samples 64 --val-samples 16 --progress off --threads 1 --seed 5 --report-every 5"
run() { # run NAME ARGS...: must exit 0; output in $T/NAME.log
  local name=$1; shift
  timeout 120 "$@" > "$T/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL $name: exit code $rc"; cat "$T/$name.log"; fail=1; return 1; fi
}
# check FILE STEPS...: the history FILE (JSONL) holds exactly records of these steps, in order,
# each with every key; and FILE's CSV twin (if given as CSV=...) the same rows
check() {
  local file=$1; shift
  if "$PY" - "$file" "$@" <<'EOF'
import json, sys
path, want = sys.argv[1], [int(s) for s in sys.argv[2:]]
recs = [json.loads(l) for l in open(path) if l.strip()]
steps = [r["step"] for r in recs]
assert steps == want, f"{path}: steps {steps}, want {want}"
keys = ("step", "epoch", "wall_s", "train_loss", "val_loss", "val_iou", "val_dice", "val_acc",
        "lr", "img_per_s")
for r in recs:
    miss = [k for k in keys if k not in r]
    assert not miss, f"{path}: record of step {r['step']} lacks {miss}"
    assert all(isinstance(r[k], (int, float)) for k in keys), f"{path}: a null in {r}"
    assert abs(r["epoch"] - r["step"] / 8) < 1e-9, r
walls = [r["wall_s"] for r in recs]
assert walls == sorted(walls), f"{path}: wall_s not increasing: {walls}"
EOF
  then echo "  ok: $file has steps $*"; else fail=1; fi
}

# ---- 1. a run with the defaults: once per epoch ----
run a $MPIRUN -np 2 $BIN $COMMON --epochs 3 --checkpoint-dir $T/ck --history-csv $T/a.csv \
  --stats-out $T/a.stats --metrics-out $T/a.json --params-out $T/a.bin
check $T/ck/history.jsonl 8 16 24
"$PY" - $T/a.csv $T/ck/history.jsonl $T/a.json <<'EOF' || fail=1
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
recs = [json.loads(l) for l in open(sys.argv[2])]
assert [int(r["step"]) for r in rows] == [r["step"] for r in recs], rows
for r, j in zip(rows, recs):
    for k in ("val_loss", "val_iou", "train_loss", "lr", "img_per_s"):
        assert abs(float(r[k]) - j[k]) <= 1e-9 + 1e-6 * abs(j[k]), (k, r[k], j[k])
m = json.load(open(sys.argv[3]))
for k in ("train_iou", "train_iou_run"):
    assert isinstance(m.get(k), float), f"--metrics-out lacks {k}: {m}"
print("  ok: CSV rows match the JSON lines; --metrics-out has train_iou and train_iou_run")
EOF
grep -c '^validation at step' $T/a.log | grep -qx 2 || { echo "FAIL a: want 2 mid-run validations"; fail=1; }
grep -q '"val": {"step": 16' $T/a.stats || { echo "FAIL: no validation in the stats records"; fail=1; }
# the final record carries the final validation (it waits for it), so the monitor ends on it
grep -q '"final": true.*"val": {"step": 24' $T/a.stats || { echo "FAIL: no final validation in the last stats record"; fail=1; }
if $MON --once --plain $T/a.stats > $T/mon.txt 2>&1 && grep -q "validation at step 24: loss" $T/mon.txt
then echo "  ok: cogpu-monitor: $(grep validation $T/mon.txt)"
else echo "FAIL: cogpu-monitor shows no validation line:"; cat $T/mon.txt; fail=1; fi

# ---- 2. validation changes nothing in training ----
run b $MPIRUN -np 2 $BIN $COMMON --epochs 3 --val-every 0 --history-out $T/b.jsonl --params-out $T/b.bin
check $T/b.jsonl 24
if cmp -s $T/a.bin $T/b.bin && diff <(grep '^step ' $T/a.log | cut -d'|' -f1-2) \
                                    <(grep '^step ' $T/b.log | cut -d'|' -f1-2) > /dev/null
then echo "  ok: --val-every 0 and once per epoch train the same (loss lines, parameters bitwise)"
else echo "FAIL: validating every epoch changed the training"; fail=1; fi
run c $MPIRUN -np 2 $BIN $COMMON --epochs 3 --val-every 5 --history-out $T/c.jsonl \
  --stats-out $T/c.stats
check $T/c.jsonl 5 10 15 20 24
# a report at a validation's step carries that validation (it runs first)
grep -q '"step": 10, .*"val": {"step": 10,' $T/c.stats && echo "  ok: the step-10 record carries its validation" \
  || { echo "FAIL: the step-10 stats record lacks the validation of step 10"; fail=1; }

# a run that is not resumed replaces an earlier run's history at the same path, and says so
run c2 $MPIRUN -np 2 $BIN $COMMON --steps 10 --val-every 5 --history-out $T/c.jsonl
check $T/c.jsonl 5 10
grep -q "warning: $T/c.jsonl: this run is not resumed, so its history replaces the" $T/c2.log &&
  echo "  ok: an earlier run's history replaced, with a warning" ||
  { echo "FAIL: no warning replacing $T/c.jsonl"; cat $T/c2.log; fail=1; }

# ---- 3. resume continues the file ----
run d1 $MPIRUN -np 2 $BIN $COMMON --steps 20 --checkpoint-dir $T/ck2 --history-csv $T/d.csv
check $T/ck2/history.jsonl 8 16 20
# as if a later part of the run had crashed: a record beyond the checkpoint and a torn line
# (and lines no run writes: a step no integer holds, not JSON, a negative step)
printf '{"step": 1e300}\nnot json\n{"step": -4}\n' >> $T/ck2/history.jsonl
printf '{"step": 28, "epoch": 3.5, "wall_s": 9}\n{"step": 3' >> $T/ck2/history.jsonl
printf '28,3.5,9\n3' >> $T/d.csv
run d2 $MPIRUN -np 2 $BIN $COMMON --steps 40 --checkpoint-dir $T/ck2 --resume --history-csv $T/d.csv
check $T/ck2/history.jsonl 8 16 20 24 32 40
csv_steps=$(tail -n +2 $T/d.csv | cut -d, -f1 | tr '\n' ' ')
[ "$csv_steps" = "8 16 20 24 32 40 " ] && echo "  ok: resumed CSV steps $csv_steps" \
  || { echo "FAIL: resumed CSV steps '$csv_steps'"; fail=1; }

# ---- K classes: mIoU, mAcc and the per-class lists, in the JSON lines and the CSV alike ----
run k $MPIRUN -np 1 $BIN $COMMON --num-classes 3 --steps 8 --val-every 4 --checkpoint-dir $T/ck3 \
  --history-csv $T/k.csv --metrics-out $T/k.json --stats-out $T/k.stats
"$PY" - $T/ck3/history.jsonl $T/k.csv $T/k.json <<'EOF' || fail=1
import csv, json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
rows = list(csv.DictReader(open(sys.argv[2])))
head = open(sys.argv[2]).readline().strip()
assert head.endswith(",iou_0,iou_1,iou_2,val_macc,acc_0,acc_1,acc_2,grad_norm"), head
assert [r["step"] for r in recs] == [4, 8] == [int(r["step"]) for r in rows], (recs, rows)
close = lambda a, b: math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
for j, r in zip(recs, rows):
    for k in ("val_miou", "val_mdice", "val_acc", "val_macc"):
        assert isinstance(j[k], float) and 0 <= j[k] <= 1, (k, j)
    accs = [a for a in j["val_class_acc"] if a is not None]
    assert len(j["val_class_acc"]) == 3 and accs, j  # mAcc: the mean over classes in the truth
    assert close(j["val_macc"], sum(accs) / len(accs)) and close(float(r["val_macc"]),
                                                                 j["val_macc"]), (j, r)
    for c in range(3):
        a = j["val_class_acc"][c]
        assert (r[f"acc_{c}"] == "") == (a is None), (c, r, j)
        assert a is None or close(float(r[f"acc_{c}"]), a), (c, r, j)
m = json.load(open(sys.argv[3]))
assert close(m["macc"], recs[-1]["val_macc"]), m
for c, a in zip(m["per_class"], recs[-1]["val_class_acc"]):
    assert (c["acc"] is None) == (a is None) and (a is None or close(c["acc"], a)), (c, a)
print(f"  ok: K = 3 history: val_macc {recs[-1]['val_macc']:.4f} = the mean of val_class_acc "
      f"{recs[-1]['val_class_acc']}; CSV's val_macc and acc_c the same; --metrics-out macc")
EOF
macc=$("$PY" -c 'import json, sys
print(json.loads(open(sys.argv[1]).readlines()[-1])["val_macc"])' $T/ck3/history.jsonl)
want=$(printf 'mAcc %.4f' "$macc")
if $MON --once --plain $T/k.stats > $T/monk.txt 2>&1 &&
   grep -q "validation at step 8: loss .* mIoU .* $want" $T/monk.txt
then echo "  ok: cogpu-monitor shows the K = 3 run's $want"
else echo "FAIL: cogpu-monitor's K = 3 validation line (want $want):"; cat $T/monk.txt; fail=1; fi

# ---- --clip-grad-norm: each record's grad_norm is the mean over the steps since the previous
# validation (validations at 3, 6, 9, 10 against reports at 5, 10: the step-weighted sums agree;
# with a report every step, each record is the mean of its steps' printed norms); null without
# the flag ----
run g $MPIRUN -np 2 $BIN $COMMON --steps 10 --val-every 3 --clip-grad-norm 1e9 \
  --history-out $T/g.jsonl --history-csv $T/g.csv
run g1 $MPIRUN -np 2 $BIN $COMMON --steps 10 --val-every 3 --clip-grad-norm 1e9 --report-every 1 \
  --grad-accum 2 --batch 2 --history-out $T/g1.jsonl
"$PY" - $T/g.jsonl $T/g.csv $T/g.log $T/k.csv <<'EOF' || fail=1
import csv, json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in recs] == [3, 6, 9, 10], recs
rows = list(csv.DictReader(open(sys.argv[2])))
assert all(abs(float(r["grad_norm"]) - j["grad_norm"]) <= 1e-9 for r, j in zip(rows, recs)), rows
rep = [float(g) for g in re.findall(r"^step \d+/10 \| loss \S+ \| grad norm (\S+)",
                                     open(sys.argv[3]).read(), re.M)]
assert len(rep) == 2, rep
hist = sum(r["grad_norm"] * n for r, n in zip(recs, (3, 3, 3, 1)))
assert abs(hist - 5 * sum(rep)) <= 1e-3 * hist, (hist, rep)
g1 = [json.loads(l)["grad_norm"] for l in open(sys.argv[1].replace("g.jsonl", "g1.jsonl"))]
per = [float(g) for g in re.findall(r"^step \d+/10 \| loss \S+ \| grad norm (\S+)",
                                     open(sys.argv[3].replace("g.log", "g1.log")).read(), re.M)]
assert len(per) == 10, per
for rec, (a, b) in zip(g1, ((0, 3), (3, 6), (6, 9), (9, 10))):
    assert abs(rec - sum(per[a:b]) / (b - a)) <= 1e-3 * rec, (rec, per[a:b])
kr = list(csv.DictReader(open(sys.argv[4])))
assert all(r["grad_norm"] == "" for r in kr), kr  # the K = 3 run had no --clip-grad-norm
print(f"  ok: history grad_norm {[r['grad_norm'] for r in recs]}: step-weighted sum {hist:.5f}, "
      f"the reports' {5 * sum(rep):.5f}; empty without --clip-grad-norm")
EOF
grep -q '"grad_norm": null' $T/ck3/history.jsonl || { echo "FAIL: no null grad_norm"; fail=1; }

# ---- 4. the plot, and bad input ----
if "$PY" -c "import matplotlib" 2> /dev/null; then
  if "$PY" "$ROOT/scripts/plot_history.py" $T/ck2/history.jsonl $T/h.png > $T/plot.log 2>&1 &&
     [ -s $T/h.png ] && [ "$(head -c 8 $T/h.png | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]
  then echo "  ok: plot_history.py wrote a PNG of $(stat -c %s $T/h.png) bytes"
  else echo "FAIL: plot_history.py:"; cat $T/plot.log; fail=1; fi
else
  echo "SKIP plot part: matplotlib is missing for $PY (Debian: python3-matplotlib)"
fi
: > $T/empty.jsonl
for f in $T/none.jsonl $T/empty.jsonl; do
  "$PY" "$ROOT/scripts/plot_history.py" $f $T/x.png 2> $T/perr; rc=$?
  if [ $rc -eq 1 ] && grep -q "$f" $T/perr; then echo "  ok: plot of $(basename $f): $(cat $T/perr)"
  else echo "FAIL: plot of $f: exit $rc, $(cat $T/perr)"; fail=1; fi
done
for bad in "--flip maybe" "--history-out $T/no/such/dir/h.jsonl" "--history-csv $T/no/h.csv"; do
  $MPIRUN -np 1 $BIN $COMMON --steps 2 $bad > $T/bad.log 2>&1; rc=$?
  flag=${bad%% *}
  if [ $rc -eq 2 ] && grep -q -- "$flag" $T/bad.log; then echo "  ok: $flag bad value: exit 2"
  else echo "FAIL: $bad: exit $rc"; cat $T/bad.log; fail=1; fi
done
[ $fail -eq 0 ] && echo PASS
exit $fail
