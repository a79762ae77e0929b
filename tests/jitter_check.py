#!/usr/bin/env python3
"""jitter_check.py TOOL: --color-jitter against torchvision's ColorJitter on uint8 tensors.

For random images (smooth ramps, noise, gray, saturated colours; 64x48 and 256x256) and many
draws of several B:C:S:H ranges, cg_jitter_tool applies our draw; the same factors in the same
order go through torchvision.transforms.functional (adjust_brightness, adjust_contrast,
adjust_saturation, adjust_hue), and the images must agree: every value within 1 and at least
99.9% exactly (a float32 rounding in another order could move a truncation; measured on the
CPU box: every one of the 29.6 million values equal).
Also: the factors lie in torchvision's ranges, and every order of the four turns up."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.transforms.functional as TF

tool = sys.argv[1]
rng = np.random.default_rng(3)
tmp = tempfile.mkdtemp()


def images():
    for h, w in ((48, 64), (256, 256)):
        y, x = np.mgrid[0:h, 0:w]
        ramp = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1)
        yield ramp.astype(np.uint8)
        yield rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        g = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
        yield np.repeat(g, 3, -1)
        sat = rng.integers(0, 2, (h, w, 3), dtype=np.uint8) * 255
        sat[::3, ::2, 1] = 128
        yield sat


FUNCS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
RANGES = [(0.4, 0.4, 0.4, 0.1), (0.8, 0, 0, 0), (0, 0.5, 0, 0), (0, 0, 1.0, 0), (0, 0, 0, 0.5),
          (1.5, 1.5, 1.5, 0.5)]
total = exact = worst = 0
orders = set()
case = 0
for img in images():
    h, w, _ = img.shape
    src = os.path.join(tmp, "in.raw")
    img.tofile(src)
    for rg in RANGES:
        for index in range(6):
            case += 1
            out = os.path.join(tmp, "out.raw")
            spec = ":".join(str(v) for v in rg)
            line = subprocess.run([tool, src, str(h), str(w), out, "11", "2", str(case), spec],
                                  check=True, capture_output=True, text=True).stdout.split()
            order = [int(v) for v in line[1:5]]
            on = [int(v) for v in line[6:10]]
            # exact float32 values, as ColorJitter's factors (float() of a float32 tensor) are
            fac = [float(np.float32(v)) for v in line[11:15]]
            orders.add(tuple(order))
            for k, r in enumerate(rg):
                assert on[k] == (r > 0), (rg, on)
                if r > 0:
                    lo, hi = (max(0.0, 1 - r), 1 + r) if k < 3 else (-r, r)
                    assert lo <= fac[k] <= hi, (k, fac[k], lo, hi)
            ours = np.fromfile(out, np.uint8).reshape(h, w, 3)
            t = torch.from_numpy(img.copy()).permute(2, 0, 1)
            for k in order:
                if on[k]:
                    t = FUNCS[k](t, fac[k])
            ref = t.permute(1, 2, 0).numpy()
            d = np.abs(ours.astype(int) - ref.astype(int))
            total += d.size
            exact += int((d == 0).sum())
            worst = max(worst, int(d.max()))
            if d.max() > 1:
                ys, xs, cs = np.nonzero(d > 1)
                print(f"case {case} {spec} order {order} factors {fac}: "
                      f"pixel ({xs[0]}, {ys[0]}) ch {cs[0]} ours {ours[ys[0], xs[0]]} "
                      f"torchvision {ref[ys[0], xs[0]]} input {img[ys[0], xs[0]]}")
print(f"{case} draws, {total} channel values: {exact / total:.6f} exact, worst |diff| {worst}; "
      f"{len(orders)} orders seen")
assert worst <= 1, "a value differs by more than 1"
assert exact / total >= 0.999, "under 99.9% exact"
assert len(orders) >= 12, "the order is not random"
print("PASS --color-jitter = torchvision ColorJitter")
