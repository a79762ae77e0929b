#!/usr/bin/env bash
# train --lr-find N: the learning-rate range test (fastai's and PyTorch Lightning's lr_find),
# checked from its --lr-find-out CSV with NumPy:
#  - step s's lr is A (B/A)^((s-1)/(N-1)), and it is the rate the optimizer used (a 2-step test's
#    second loss is a plain run's at --lr A); the smoothed loss is the debiased running mean
#    (beta 0.98) of the losses; fastai's minimum and valley (its code, as it is, on the steps
#    N/10 .. n-6) as the suggestion, and Lightning 2's suggestion()
#    (numpy.gradient(smoothed, lr)'s argmin over steps 11..n-1) are the ones printed;
#  - SGD up to lr 1e4 diverges (at step 80 of 100 here; 75-80 over seeds 3-6 when this test was
#    written): the test stops at the first step whose smoothed loss passes 4 x its best, and
#    says so;
#  - 2 ranks x batch 4 record the losses of 1 rank x batch 8 while the rates are small (above
#    about 0.1 the two runs' rounding differences grow, as any chaotic run's do);
#  - nothing else is written (no checkpoint, no validation); usage errors exit 2 naming the flag.
# NumPy comes from Debian (/usr/bin/python3); without it the CSV checks are skipped (77).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail, expect2
S="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1
   --seed 3 --train-samples 256 --val-samples 16 --optimizer sgd"
run() { local out=$1; shift; "$@" > "$T/$out.log" 2>&1 || { cat "$T/$out.log"; fail "$*"; }; }
run a $MPIRUN -np 1 $BIN $S --batch 8 --lr-find 100 --lr-find-range 1e-3:1e4 \
  --lr-find-out $T/a.csv
run b $MPIRUN -np 2 $BIN $S --batch 4 --lr-find 100 --lr-find-range 1e-3:1e4 \
  --lr-find-out $T/b.csv
run c $MPIRUN -np 1 $BIN $S --batch 8 --optimizer adamw --lr-find 40 --lr-find-out $T/c.csv \
  --metrics-out $T/c.json
run e $MPIRUN -np 1 $BIN $S --batch 8 --lr-find 2 --lr-find-range 0.5:1e4 \
  --lr-find-out $T/e.csv
run p $MPIRUN -np 1 $BIN $S --batch 8 --steps 2 --lr 0.5 --report-every 1 --val-samples 0
for l in a b c; do
  grep -q "^lr-find: a learning-rate range test of" $T/$l.log || fail "banner"
done
grep -q "^validation" $T/a.log $T/c.log && fail "a range test validated"
for l in a b; do
  grep -q "^lr-find: stopped after step [0-9]* of 100: the smoothed loss passed 4 x its best" \
    $T/$l.log || { cat $T/$l.log; fail "the SGD test did not stop on divergence"; }
done
echo "ok: banner, no validation, the SGD tests (1 and 2 ranks) stopped on divergence"
$PY -c 'import numpy' 2> /dev/null || { echo "SKIP: $PY has no NumPy"; exit 77; }
$PY - $T << 'PYEOF'
import json, math, re, sys
import numpy as np
t = sys.argv[1]

def check(name, a, b, n_planned):
    d = np.genfromtxt(f"{t}/{name}.csv", delimiter=",", names=True)
    n = len(d)
    s = np.arange(1, n + 1)
    want_lr = a * (b / a) ** ((s - 1) / (n_planned - 1))
    assert np.allclose(d["lr"], want_lr, rtol=1e-12), name
    avg, sm, best = 0.0, [], math.inf
    for i, l in enumerate(d["loss"]):
        avg = 0.98 * avg + 0.02 * l
        sm.append(avg / (1 - 0.98 ** (i + 1)))
    sm = np.array(sm)
    assert np.allclose(d["smoothed_loss"], sm, rtol=1e-12), name
    div = [i for i in range(1, n) if sm[i] > 4 * sm[:i].min()]
    assert (div[0] == n - 1) if div else n == n_planned, (name, div, n)
    log = open(f"{t}/{name}.log").read()
    idx = np.arange(10, n - 1)
    kl = idx[np.argmin(np.gradient(sm[idx], d["lr"][idx]))]
    m = re.search(r"Lightning 2's suggestion\(\), .*: (\S+) \(step (\d+)\)", log)
    assert m and int(m.group(2)) == kl + 1, (name, m and m.group(0), kl + 1)
    lo = n_planned // 10 + int(np.argmin(sm[n_planned // 10:n - 5]))  # fastai's window
    m = re.search(r"smoothed loss is lowest, \S+, at step (\d+), lr [^,]+, over steps (\d+)-(\d+) ",
                  log)
    assert m and int(m.group(1)) == lo + 1, (name, m and m.group(0), lo + 1)
    assert (int(m.group(2)), int(m.group(3))) == (n_planned // 10 + 1, n - 5), m.group(0)
    # fastai's valley, as fastai writes it, on recorder.losses[num_it//10:-5]
    ls, lrs = list(sm[n_planned // 10:n - 5]), d["lr"][n_planned // 10:n - 5]
    lds, max_start, max_end = [1] * len(ls), 0, 0
    for i in range(1, len(ls)):
        for j in range(0, i):
            if ls[i] < ls[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    kv = max(0, max_start + int(sections) + int(sections / 2)) + n_planned // 10
    m = re.search(r"lr-find: suggested --lr (\S+) \(step (\d+): fastai's valley", log)
    assert m and int(m.group(2)) == kv + 1, (name, m and m.group(0), kv + 1)
    assert float(m.group(1)) == float(f"{d['lr'][kv]:.3g}"), (m.group(1), d["lr"][kv])
    print(f"  {name}: {n} of {n_planned} steps; lr, smoothed loss, lowest (step {lo + 1}), "
          f"valley (step {kv + 1}, lr {d['lr'][kv]:.3g}) and Lightning's rule (step {kl + 1}) "
          f"as NumPy computes them" + (f"; stopped at step {n} (4 x the best)" if div else ""))
    return d

a = check("a", 1e-3, 1e4, 100)
b = check("b", 1e-3, 1e4, 100)
check("c", 1e-8, 1, 40)
n = min(len(a), len(b))
small = a["lr"][:n] <= 0.02
assert np.allclose(a["loss"][:n][small], b["loss"][:n][small], rtol=1e-6), "2 ranks != 1 rank"
print(f"  2 ranks x batch 4 = 1 rank x batch 8 over the {small.sum()} steps at lr <= 0.02")
m = json.load(open(f"{t}/c.json"))
assert m["val_loss"] is None and m["steps"] == 40, m
# the rates are the optimizer's: a 2-step test's second loss follows a step at A = 0.5
e = np.genfromtxt(f"{t}/e.csv", delimiter=",", names=True)
p = float(re.search(r"^step 2/2 \| loss (\S+)", open(f"{t}/p.log").read(), re.M).group(1))
assert abs(e["loss"][1] - p) <= 6e-5, (e["loss"][1], p)
print(f"  a 2-step test from lr 0.5: its second loss {e['loss'][1]:.5f} = a plain run's {p}")
PYEOF
for bad in "--steps 5" "--epochs 2" "--checkpoint-dir $T/ck" "--resume" "--warmup-steps 3" \
           "--lr-schedule cosine" "--early-stop-patience 2" "--params-out $T/p.bin" \
           "--history-out $T/h.jsonl" "--history-csv $T/h.csv" "--val-every 5"; do
  flag=${bad%% *}
  expect2 "validating nothing and writing no weights; it does not take $flag" \
    $BIN $S --lr-find 20 $bad
done
expect2 "--lr-find-out" $BIN $S --lr-find 20 --lr-find-out $T/nodir/x.csv
expect2 "--lr-find-range: '1:0.5' is not A:B with 0 < A < B <= 1e6" $BIN $S --lr-find 20 \
  --lr-find-range 1:0.5
expect2 "--lr-find-range: for the learning-rate range test, which --lr-find N runs" $BIN $S \
  --lr-find-range 1e-5:1
expect2 "--lr-find-out: for the learning-rate range test" $BIN $S --lr-find-out $T/x.csv
expect2 "--lr-find 1: the test needs 2 steps or more" $BIN $S --lr-find 1
echo "PASS test_lr_find"
