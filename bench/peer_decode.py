#!/usr/bin/env python3
"""peer_decode.py --data DIR|LIST --image-size N [--tasks T] [--crop [--crop-scale A:B]]: the
data-loading peer of `cogpu-bench cpu-tasks`, in Pillow as a PyTorch Dataset's __getitem__ does
it: open the image and
its mask, convert the image to RGB, fit both to N x N by the trainer's rule (shorter side scaled
to N, bilinear for the image and nearest for the mask, centre crop), to uint8 arrays. One thread,
T tasks over the pairs in turn after one warm-up pass; prints one JSON line with tasks/s.
--crop (as `cpu-tasks --crop`): a training crop instead, a random square window of A..B
(--crop-scale, 0.75:1 by default) of the shorter side anywhere in the image, resized to N x N
(`Image.resize(box=...)`, the RandomResizedCrop of torchvision with a square window); a window
larger than the image (B > 1) resizes the image's part and pads the rest (gray 128, masks 255).

DIR is DIR/images/NAME.* with DIR/masks/NAME.*; LIST a file of IMAGE MASK lines relative to its
directory (as train --data reads them)."""
import argparse
import json
import os
import time

import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--image-size", type=int, default=256)
ap.add_argument("--tasks", type=int, default=200)
ap.add_argument("--crop", action="store_true")
ap.add_argument("--crop-scale", default="0.75:1")
a = ap.parse_args()
LO, HI = map(float, a.crop_scale.split(":"))
if os.path.isdir(a.data):
    imgs = sorted(os.listdir(f"{a.data}/images"))
    masks = {os.path.splitext(m)[0]: m for m in os.listdir(f"{a.data}/masks")}
    pairs = [(f"{a.data}/images/{i}", f"{a.data}/masks/{masks[os.path.splitext(i)[0]]}")
             for i in imgs]
else:
    base = os.path.dirname(os.path.abspath(a.data))
    pairs = [tuple(os.path.join(base, p) for p in line.split()[:2])
             for line in open(a.data) if line.strip() and not line.startswith("#")]
N = a.image_size


def fit(im, resample):
    w, h = im.size
    s = N / min(w, h)
    nw, nh = max(N, round(w * s)), max(N, round(h * s))
    im = im.resize((nw, nh), resample)
    x0, y0 = (nw - N) // 2, (nh - N) // 2
    return np.asarray(im.crop((x0, y0, x0 + N, y0 + N)))


rng = np.random.default_rng(7)


def crop(im, resample, box, fill):
    """The square window box of im resized to N x N; where the window reaches past the image
    (a zoom-out window), the image part is resized and pasted into a canvas of fill, as a
    Dataset resizing by a ratio below 1 and padding its crop (mmsegmentation's Pad) does."""
    w, h = im.size
    x0, y0, x1, y1 = box
    c = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
    if c == box:
        return np.asarray(im.resize((N, N), resample, box=box))
    f = N / (x1 - x0)
    ox, oy = round((c[0] - x0) * f), round((c[1] - y0) * f)
    ow, oh = max(1, round((c[2] - c[0]) * f)), max(1, round((c[3] - c[1]) * f))
    canvas = Image.new(im.mode, (N, N), fill)
    canvas.paste(im.resize((ow, oh), resample, box=c), (ox, oy))
    return np.asarray(canvas)


def task(i):
    img, msk = pairs[i % len(pairs)]
    im = Image.open(img).convert("RGB")
    if a.crop:
        w, h = im.size
        side = min(w, h) * rng.uniform(LO, HI)
        x0, y0 = rng.uniform() * (w - side), rng.uniform() * (h - side)
        box = (x0, y0, x0 + side, y0 + side)
        x = crop(im, Image.BILINEAR, box, 128)
        m = crop(Image.open(msk), Image.NEAREST, box, 255)  # class ids, 255 = padding
    else:
        x = fit(im, Image.BILINEAR)
        m = fit(Image.open(msk), Image.NEAREST) > 0
    return x.sum() + m.sum()


for i in range(len(pairs)):
    task(i)
t0 = time.perf_counter()
for i in range(a.tasks):
    task(i)
dt = time.perf_counter() - t0
print(json.dumps({"peer": "pillow", "data": a.data, "image_size": N, "tasks": a.tasks,
                  "crop": a.crop, "crop_scale": a.crop_scale,
                  "tasks_per_s": round(a.tasks / dt, 1), "pillow": Image.__version__}))
