#!/usr/bin/env python3
"""Parity checks for tests/test_interop.sh (export -> PyTorch -> ONNX Runtime).

  images DIR S N              writes N held-out S x S RGB PNGs (shapes on a noisy background,
                              a fixed seed) to DIR
  torch MODEL IMAGES PRED     loads MODEL (python/cogpu_torch.py), runs it on every IMAGES/*.png
                              and compares its probabilities (sigmoid / softmax of the logits)
                              with `predict --save-probs`'s PRED/NAME.probs.npy ([H, W, K])
  onnx MODEL IMAGES ONNX      exports MODEL to ONNX, runs ONNX Runtime on the same images and
                              compares its logits with PyTorch's

Metric (both comparisons): rel = max|a - b| / max(max|b|, 1e-12) over all images and
channels, b the reference (predict's probabilities; PyTorch's logits); pass when rel <= 1e-4.
Each check prints the largest absolute and relative differences. Exit 0 pass, 1 fail."""
import glob, os, random, struct, sys, zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
TOL = 1e-4


def png_write_rgb(path, w, h, pix):  # pix: bytes, h*w*3
    raw = b"".join(b"\x00" + pix[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def images(d, s, n):
    os.makedirs(d, exist_ok=True)
    rng = np.random.RandomState(1234)
    for i in range(n):
        img = rng.randint(0, 256, size=(s, s, 3)).astype(np.float64) * 0.3 + 60
        yy, xx = np.mgrid[0:s, 0:s]
        for _ in range(3):  # discs and squares, some cut by the border
            cx, cy, r = rng.randint(-4, s + 4), rng.randint(-4, s + 4), rng.randint(3, s // 3)
            col = rng.randint(0, 256, size=3)
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r if rng.rand() < 0.5 else \
                (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
            img[m] = col
        png_write_rgb(os.path.join(d, "held_%02d.png" % i), s, s,
                      np.clip(img, 0, 255).astype(np.uint8).tobytes())


def png_read_rgb(path):  # 8-bit RGB, non-interlaced, filter types 0..4 (what libpng may write)
    data = open(path, "rb").read()
    pos, idat = 8, b""
    while pos < len(data):
        (n,), t = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype == 2, path
        elif t == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, bpp = zlib.decompress(idat), w * 3, 3
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        ft, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if ft == 1: row[x] = (row[x] + a) & 255
            elif ft == 2: row[x] = (row[x] + b) & 255
            elif ft == 3: row[x] = (row[x] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += row
        prev = row
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(h, w, 3)


def batch(image_dir):
    names = sorted(glob.glob(os.path.join(image_dir, "*.png")))
    assert len(names) >= 8, "need 8 held-out images, found %d" % len(names)
    x = np.stack([png_read_rgb(p).transpose(2, 0, 1) for p in names])  # [N, 3, H, W] uint8
    return names, x


def report(what, a, b):
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    rel = diff / max(float(np.max(np.abs(b))), 1e-12)
    ok = rel <= TOL and np.all(np.isfinite(a))
    print("%s: %d values, max |a-b| %.3e, max |a-b| / max|b| %.3e (want <= %.0e): %s" %
          (what, a.size, diff, rel, TOL, "PASS" if ok else "FAIL"))
    return ok


def check_torch(model_path, image_dir, pred_dir):
    import torch
    import cogpu_torch
    model = cogpu_torch.load(model_path)
    names, x = batch(image_dir)
    with torch.no_grad():
        probs = cogpu_torch.probabilities(model(torch.from_numpy(x))).numpy()  # [N, K, H, W]
    ref = []
    for p in names:
        stem = os.path.splitext(os.path.basename(p))[0]
        ref.append(np.load(os.path.join(pred_dir, stem + ".probs.npy")).transpose(2, 0, 1))
    ref = np.stack(ref)
    assert ref.shape == probs.shape, "shapes %s vs %s" % (ref.shape, probs.shape)
    # a model that predicts everything the same would pass trivially: want some spread
    print("probabilities span %.4f..%.4f" % (ref.min(), ref.max()))
    return report("pytorch vs predict --save-probs (K=%d, %d images)" % (ref.shape[1], len(names)),
                  probs, ref)


def check_onnx(model_path, image_dir, onnx_path):
    import torch
    import onnxruntime as ort
    import cogpu_torch
    model = cogpu_torch.load(model_path)
    cogpu_torch.export_onnx(model, onnx_path, 17)
    names, x = batch(image_dir)
    xf = x.astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(xf)).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"rgb": xf})[0]
    ok = report("onnxruntime %s vs pytorch logits (%d images)" % (ort.__version__, len(names)),
                got, ref)
    half = sess.run(["logits"], {"rgb": xf[:3, :, :16, :16]})[0]  # dynamic N, H, W
    with torch.no_grad():
        ref2 = model(torch.from_numpy(np.ascontiguousarray(xf[:3, :, :16, :16]))).numpy()
    return report("onnxruntime vs pytorch, 3 images of 16x16 (dynamic axes)", half, ref2) and ok


def main():
    cmd = sys.argv[1]
    if cmd == "images":
        images(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    if cmd == "torch":
        return 0 if check_torch(*sys.argv[2:5]) else 1
    if cmd == "onnx":
        return 0 if check_onnx(*sys.argv[2:5]) else 1
    print("unknown command %s" % cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
