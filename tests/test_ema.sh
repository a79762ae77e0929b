#!/usr/bin/env bash
# The weights' exponential moving average (train --ema-decay D), CPU backend, real mpirun; the
# checkpoints are read with NumPy (Debian's /usr/bin/python3):
#  1. a run with D = 0.8 trains bitwise the weights of the run without (the average and the
#     validations of it between two swaps leave training as it was): every checkpoint's
#     training weights (after v) equal the plain run's params of that step;
#  2. every checkpoint's params (the average) is AveragedModel's EMA of the plain run's weights
#     recomputed with NumPy (the first step copies, then e + w (p - e), w = float32(1 - D),
#     torch.lerp's formula with its fused multiply-add), bitwise; and within 1e-6 of torch.lerp
#     itself where torch is there (torch 1.13 on x86: bit for bit); --params-out is the last
#     average; the metrics JSON says ema_decay, the banner says it;
#  3. validation sees the average: a checkpoint resumed at its own step (nothing trained, the
#     loaded weights validated) gives the validation loss its header records with --ema-decay,
#     and the plain run's of that step without it (the training weights);
#  4. a checkpoint of step 4 resumed to 8 is bitwise the uninterrupted run (both arrays);
#     a plain checkpoint resumed with --ema-decay starts the average at step 5 (NumPy's EMA of
#     steps 5..8), and an EMA checkpoint resumed with --ema-decay 0 drops it (a notice; the
#     plain run's weights; its checkpoint has no average); --resume into an empty directory (a
#     requeued job's first start) is bitwise the run without --resume;
#  5. 2 ranks x 4 equal 1 x 8 within test_dp_equiv's 1e-5, the average too;
#  6. export writes the average: export then import gives a checkpoint whose params are it;
#     --init-from the checkpoint starts from it and says so;
#  7. usage errors (exit 2, naming the flag): 1, 1.5, -0.1, abc, with --lr-find.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2> /dev/null || { echo "SKIP: no NumPy for $PY"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
        --val-samples 16 --progress off --threads 1 --seed 5 --report-every 4 --val-every 3
        --lr 0.01"
. "$(dirname "$0")/runlib.sh" # run, want, metric, same_params
# ckpt.py: the checkpoints' arrays (header 256 bytes: nparams at 40, ema at 236, val_have 204,
# val_loss 216; payload params, m, v and with ema the training weights)
cat > "$T/ckpt.py" << 'PYEOF'
import struct, numpy as np
def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack_from('<Q', b, 40)[0]
    ema = struct.unpack_from('<I', b, 236)[0]
    arr = lambda k: np.frombuffer(b, np.float32, n, 256 + 4 * n * k)
    return {'params': arr(0), 'train': arr(3) if ema else arr(0), 'ema': ema,
            'val': struct.unpack_from('<d', b, 216)[0] if struct.unpack_from('<I', b, 204)[0]
                   else None}
def ema_of(ps, d):  # torch's CPU lerp: a fused multiply-add, one rounding (float64's is exact
    w = np.float32(1.0 - d)  # but for double rounding, which these magnitudes never meet)
    e = ps[0].copy()
    for p in ps[1:]:
        diff = (p - e).astype(np.float64)
        e = ((e + np.float64(w) * diff) if w < 0.5
             else (p - diff * np.float64(np.float32(1) - w))).astype(np.float32)
    return e
PYEOF
ck() { printf '%s/ckpt-%010d.cgck' "$1" "$2"; }

# ---- 1, 2. the same training; the average as NumPy computes it ----
run plain 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --checkpoint-dir $T/plain \
    --checkpoint-every 1 --keep 20 --params-out $T/plain.bin --metrics-out $T/plain.json
run ema 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --checkpoint-dir $T/ema \
    --checkpoint-every 1 --keep 20 --ema-decay 0.8 --params-out $T/ema.bin \
    --metrics-out $T/ema.json
want ema "ema: the weights' moving average, decay 0.8 (--ema-decay"
[ "$(metric ema ema_decay)" = 0.8 ] && [ "$(metric plain ema_decay)" = 0 ] ||
  { echo "FAIL metrics: ema_decay $(metric ema ema_decay) / $(metric plain ema_decay)"; fail=1; }
"$PY" - "$T" << 'PYEOF' || fail=1
import sys, numpy as np
T = sys.argv[1]; sys.path.insert(0, T)
from ckpt import read, ema_of
P = [read('%s/plain/ckpt-%010d.cgck' % (T, s)) for s in range(1, 9)]
E = [read('%s/ema/ckpt-%010d.cgck' % (T, s)) for s in range(1, 9)]
bad = 0
for s in range(8):
    if P[s]['ema'] or not E[s]['ema']:
        print('FAIL step %d: ema flags %d / %d' % (s + 1, P[s]['ema'], E[s]['ema'])); bad = 1
    if not np.array_equal(E[s]['train'], P[s]['params']):
        print('FAIL step %d: the training weights differ from the run without'
              % (s + 1)); bad = 1
    want = ema_of([p['params'] for p in P[:s + 1]], 0.8)
    if not np.array_equal(E[s]['params'], want):
        print('FAIL step %d: the average is %g from NumPy\'s EMA'
              % (s + 1, np.abs(E[s]['params'] - want).max())); bad = 1
if np.array_equal(E[0]['params'], E[0]['train']):
    print('  ok: step 1: the average is the weights (the first update copies)')
else:
    print('FAIL step 1: the average is not the weights'); bad = 1
if np.abs(E[7]['params'] - E[7]['train']).max() < 1e-4:
    print('FAIL step 8: the average is the weights'); bad = 1
out = np.fromfile(T + '/ema.bin', np.float32)
if not np.array_equal(out, E[7]['params']):
    print('FAIL --params-out is not the average'); bad = 1
try:
    import torch
    e = torch.from_numpy(P[0]['params'].copy())
    for p in P[1:]:
        e = torch.lerp(e, torch.from_numpy(p['params'].copy()), float(np.float32(0.2)))
    d = np.abs(e.numpy() - E[7]['params']).max()
    if d > 1e-6:
        print('FAIL torch.lerp: %g from ours' % d); bad = 1
    else:
        print('  ok: torch.lerp %s gives the average %s' % (torch.__version__,
              'bit for bit' if d == 0 else 'within %.3g' % d))
except ImportError:
    print('  (no torch: torch.lerp not compared)')
if not bad:
    print('  ok: 8 steps: training bitwise the run without; the average NumPy\'s EMA bitwise; '
          '--params-out the last')
sys.exit(bad)
PYEOF

# ---- 3. validation sees the average ----
# a checkpoint resumed at its own step trains nothing and validates the loaded weights
for d in 0.8 0; do
  run "val$d" 0 $MPIRUN -np 1 $BIN $COMMON --steps 6 --batch 8 --ema-decay $d \
      --resume "$(ck $T/ema 6)" --checkpoint-dir $T/val$d --metrics-out $T/val$d.json
done
"$PY" - "$T" "$(metric val0.8 val_loss)" "$(metric val0 val_loss)" << 'PYEOF' || fail=1
import sys
T = sys.argv[1]; sys.path.insert(0, T)
from ckpt import read
e, p = read(T + '/ema/ckpt-0000000006.cgck'), read(T + '/plain/ckpt-0000000006.cgck')
got_e, got_p = float(sys.argv[2]), float(sys.argv[3])
# the metrics JSON's figures are rounded to 9 digits
ok = (abs(got_e - e['val']) < 1e-8 and abs(got_p - p['val']) < 1e-8 and
      abs(e['val'] - p['val']) > 1e-6)
print(('  ok' if ok else 'FAIL') + ': step 6 validated: the average %.6f (its checkpoint %.6f), the '
      'training weights %.6f (the plain run %.6f)' % (got_e, e['val'], got_p, p['val']))
sys.exit(0 if ok else 1)
PYEOF

# ---- 4. resumes ----
run res 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --ema-decay 0.8 \
    --resume "$(ck $T/ema 4)" --checkpoint-dir $T/res --params-out $T/res.bin
run start 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --ema-decay 0.8 \
    --resume "$(ck $T/plain 4)" --checkpoint-dir $T/start --params-out $T/start.bin
want start "resume: the checkpoint has no moving average of the weights: --ema-decay's starts at step 5"
run drop 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --ema-decay 0 \
    --resume "$(ck $T/ema 4)" --checkpoint-dir $T/drop --params-out $T/drop.bin
want drop "resume: the checkpoint's moving average of the weights is dropped (--ema-decay 0)"
"$PY" - "$T" << 'PYEOF' || fail=1
import sys, numpy as np
T = sys.argv[1]; sys.path.insert(0, T)
from ckpt import read, ema_of
E8, R8 = read(T + '/ema/ckpt-0000000008.cgck'), read(T + '/res/ckpt-0000000008.cgck')
P = [read('%s/plain/ckpt-%010d.cgck' % (T, s))['params'] for s in range(1, 9)]
S8, D8 = read(T + '/start/ckpt-0000000008.cgck'), read(T + '/drop/ckpt-0000000008.cgck')
checks = [
    ('resumed at 4: the average bitwise the uninterrupted run\'s',
     np.array_equal(R8['params'], E8['params'])),
    ('resumed at 4: the training weights bitwise', np.array_equal(R8['train'], E8['train'])),
    ('a plain checkpoint resumed with --ema-decay: NumPy\'s EMA of steps 5..8',
     np.array_equal(S8['params'], ema_of(P[4:], 0.8)) and np.array_equal(S8['train'], P[7])),
    ('--params-out of that run: its average',
     np.array_equal(np.fromfile(T + '/start.bin', np.float32), S8['params'])),
    ('dropped: the plain run\'s weights, no average in the checkpoint',
     np.array_equal(D8['params'], P[7]) and not D8['ema']),
]
bad = 0
for what, ok in checks:
    print(('  ok: ' if ok else 'FAIL ') + what); bad |= not ok
sys.exit(bad)
PYEOF

# a requeued job's command line on its first start (--resume into an empty directory)
run fresh 0 $MPIRUN -np 1 $BIN $COMMON --steps 8 --batch 8 --ema-decay 0.8 \
    --checkpoint-dir $T/fresh --resume --params-out $T/fresh.bin
if cmp -s "$T/fresh.bin" "$T/ema.bin"; then echo "  ok: --resume into an empty directory: bitwise"
else echo "FAIL fresh: --resume into an empty directory trained another average"; fail=1; fi

# ---- 5. 2 ranks = 1 rank ----
run two 0 $MPIRUN -np 2 $BIN $COMMON --steps 8 --batch 4 --ema-decay 0.8 \
    --params-out $T/two.bin
same_params two ema 1e-5 "2 ranks x 4 vs 1 x 8, the averages"

# --init-from an EMA checkpoint starts from the average (and says so)
run init 0 $MPIRUN -np 1 $BIN $COMMON --steps 1 --batch 8 --init-from "$(ck $T/ema 8)" \
    --lr 1e-30 --weight-decay 0 --params-out $T/init.bin
want init "init-from: the weights' moving average (--ema-decay) of $(ck $T/ema 8) (step 8;"
"$PY" - "$T" << 'PYEOF' || fail=1
import sys, numpy as np
T = sys.argv[1]; sys.path.insert(0, T)
from ckpt import read
ok = np.array_equal(np.fromfile(T + '/init.bin', np.float32),
                    read(T + '/ema/ckpt-0000000008.cgck')['params'])
print(('  ok' if ok else 'FAIL') + ': --init-from the checkpoint: its average (a step of lr 1e-30)')
sys.exit(0 if ok else 1)
PYEOF

# ---- 6. export writes the average ----
run export 0 $BIN export --checkpoint $T/ema --out $T/ema.safetensors
run import 0 $BIN import --in $T/ema.safetensors --out $T/imp
"$PY" - "$T" << 'PYEOF' || fail=1
import sys, glob, numpy as np
T = sys.argv[1]; sys.path.insert(0, T)
from ckpt import read
imp = read(sorted(glob.glob(T + '/imp/ckpt-*.cgck'))[-1])
ok = np.array_equal(imp['params'], np.fromfile(T + '/ema.bin', np.float32))
print(('  ok' if ok else 'FAIL') + ': export then import: the average')
sys.exit(0 if ok else 1)
PYEOF

# ---- 7. usage errors ----
for v in 1 1.5 -0.1 abc; do
  run "bad$v" 2 $MPIRUN -np 1 $BIN $COMMON --steps 2 --batch 8 --ema-decay "$v"
  want "bad$v" "--ema-decay"
done
run badlrf 2 $MPIRUN -np 1 $BIN train --backend cpu --model-base 4 --model-depth 2 \
    --image-size 32 --train-samples 64 --batch 8 --lr-find 10 --ema-decay 0.9
want badlrf "does not take --ema-decay"
exit $fail
