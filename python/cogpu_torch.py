#!/usr/bin/env python3
"""cogpu_torch: the cogpu-dist UNet in PyTorch, loaded from `cogpu-dist export` files.

    import cogpu_torch
    model = cogpu_torch.load("model.safetensors")      # CogpuUNet, eval mode, CPU
    logits = model(rgb)    # rgb: [N, 3, H, W], uint8 or float, values 0..255 (not 0..1);
                           # H, W multiples of 2^depth; logits: [N, K, H, W] float32
    probs = cogpu_torch.probabilities(logits)          # sigmoid (K = 1) or softmax over K

    /usr/bin/python3 -m cogpu_torch model.safetensors --onnx model.onnx [--opset 17]
        (run from python/, or with python/ on PYTHONPATH) writes an ONNX model with input
        "rgb" [N, 3, H, W] float32 0..255 and output "logits" [N, K, H, W]; N, H and W are
        dynamic axes.

The input preprocessing of the C trainer (src/data/feat.c) is part of the module, computed as
the C code does: float32, borders replicated, the same constants and order of operations:
  channels 0..2  (v / 255 - 0.5) / 0.25
  channel 3      Sobel magnitude of gray = (0.299 R + 0.587 G + 0.114 B) / 255 (3x3)
  channel 4      5x5 local variance of gray x 16, in float64 as in C, then float32
It has no parameters or buffers, so the state_dict holds exactly the network's tensors:
enc.L.conv{1,2}, up.L, dec.L.conv{1,2}, head (.weight, .bias), the names the file carries.
The safetensors file is parsed here with the standard library and numpy (no safetensors
package) and refused (ValueError naming the key) wherever `cogpu-dist import` refuses it: the
metadata's ranges and consistency, a missing, extra, misshapen or twice-named tensor, tensors
that do not tile the data, a weight that is not finite; load_state_dict(strict=True) follows.
(Not a height unlike the width: import refuses it because train --resume takes square models
only; the network runs at any size.)
Needs torch (1.13 works: Debian's python3-torch) and numpy."""

import argparse
import json
import re
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "cogpu-unet"
FORMAT_VERSION = 1
VAR_SCALE = 16.0


def _rep_pad(x, p):
    """Replicate-pads the last two dims by p (slices and concat: exports to any ONNX opset and
    works for float64, which ONNX Pad in edge mode does not everywhere)."""
    x = torch.cat([x[..., :1, :]] * p + [x] + [x[..., -1:, :]] * p, dim=-2)
    return torch.cat([x[..., :1]] * p + [x] + [x[..., -1:]] * p, dim=-1)


class Features(nn.Module):
    """RGB [N, 3, H, W] (0..255) -> the 5 network input channels [N, 5, H, W] float32."""

    def forward(self, rgb):
        x = rgb.float()
        h, w = x.shape[-2], x.shape[-1]
        norm = (x / 255.0 - 0.5) / 0.25
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        gray = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
        gp = _rep_pad(gray, 1)
        up, mid, dn = gp[..., 0:h, :], gp[..., 1:h + 1, :], gp[..., 2:h + 2, :]

        def col(t, i):
            return t[..., i:i + w]
        gx = (col(up, 2) + 2.0 * col(mid, 2) + col(dn, 2)) - \
             (col(up, 0) + 2.0 * col(mid, 0) + col(dn, 0))
        gy = (col(dn, 0) + 2.0 * col(dn, 1) + col(dn, 2)) - \
             (col(up, 0) + 2.0 * col(up, 1) + col(up, 2))
        sobel = torch.sqrt(gx * gx + gy * gy)
        d = _rep_pad(gray.double() - 0.5, 2)
        d2 = d * d
        a = d[..., 0:h, :] + d[..., 1:h + 1, :] + d[..., 2:h + 2, :] + d[..., 3:h + 3, :] + \
            d[..., 4:h + 4, :]
        bb = d2[..., 0:h, :] + d2[..., 1:h + 1, :] + d2[..., 2:h + 2, :] + d2[..., 3:h + 3, :] + \
            d2[..., 4:h + 4, :]
        a = col(a, 0) + col(a, 1) + col(a, 2) + col(a, 3) + col(a, 4)
        bb = col(bb, 0) + col(bb, 1) + col(bb, 2) + col(bb, 3) + col(bb, 4)
        mean = a * (1.0 / 25.0)
        var = torch.abs(bb * (1.0 / 25.0) - mean * mean) * VAR_SCALE
        return torch.cat([norm, sobel, var.float()], dim=1)


class Block(nn.Module):
    """Two (3x3 conv pad 1 + bias + ReLU), as bench/peer_torch.py."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=True)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class CogpuUNet(nn.Module):
    """The cogpu-dist UNet (src/model/model.c): widths base * 2^l, l = 0..depth (depth is the
    bottleneck), decoder input [upsampled | skip], 1x1 head with nclass logits. With
    features=True (the default) it takes RGB 0..255; with False the 5 prepared channels."""

    def __init__(self, in_c=5, base=32, depth=4, nclass=1, features=True, meta=None):
        super().__init__()
        self.depth, self.nclass = depth, nclass
        self.meta = dict(meta or {})
        self.features = Features() if features else None
        w = [base * (1 << l) for l in range(depth + 1)]
        self.enc = nn.ModuleList(Block(in_c if l == 0 else w[l - 1], w[l])
                                 for l in range(depth + 1))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[l + 1], w[l], 2, stride=2, bias=True)
                                for l in range(depth))
        self.dec = nn.ModuleList(Block(2 * w[l], w[l]) for l in range(depth))
        self.head = nn.Conv2d(w[0], nclass, 1, bias=True)

    def forward(self, x):
        m = 1 << self.depth
        if not torch.jit.is_tracing() and (x.shape[-2] % m or x.shape[-1] % m):
            raise ValueError("input of %d x %d: height and width must be multiples of 2^depth = "
                             "%d (cogpu-dist predict tiles any size)" % (x.shape[-2],
                                                                        x.shape[-1], m))
        if self.features is not None:
            x = self.features(x)
        skips = []
        for l in range(self.depth):
            x = self.enc[l](x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.enc[self.depth](x)
        for l in range(self.depth - 1, -1, -1):
            x = self.dec[l](torch.cat([self.up[l](x), skips[l]], dim=1))
        return self.head(x)


def probabilities(logits):
    """What `cogpu-dist predict --save-probs` writes: sigmoid for one logit, else softmax."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


# The bounds of cogpu-dist import (src/run/export.c), so that a file loads here exactly when
# import takes it: train's model bounds, as a checkpoint's header is held to them.
MAX_HEADER_BYTES = 64 << 20  # far above any UNet's header; bounds a hostile length
IN_C = 5                     # the C model's input channels: RGB and 2 features (feat.h)
MAX_DEPTH = 6                # model.h's CG_MAX_DEPTH
MAX_CLASSES = 255            # model.h's CG_MAX_CLASSES: class ids are bytes
META_INTS = (("format_version", 1, 1 << 20), ("in_c", 1, 4096), ("base", 1, 1024),
             ("depth", 1, MAX_DEPTH), ("nclass", 1, MAX_CLASSES), ("height", 2, 8192),
             ("width", 2, 8192), ("ignore_index", -1, 255))
_STRTOL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+\Z")  # what C's strtol reads whole, base 10


class _DupKey(ValueError):
    """A key twice in one object of the header."""


def _no_dup_keys(pairs):
    """A JSON object, refused when it holds a key twice: readers differ on which one counts (C's
    takes the first, Python's the last), so the two sides would load different weights."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DupKey("%.60s appears twice in one object of the header" % k)
        d[k] = v
    return d


def _meta_str(meta, key, default=None):
    v = meta.get(key)
    return v if isinstance(v, str) else default


def _check_meta(meta):
    """The metadata's model, checked as import checks it: a dict of its integers."""
    if not isinstance(meta, dict):
        raise ValueError("no __metadata__ object: not written by cogpu-dist export")
    fmt = _meta_str(meta, "format", "")
    if fmt != FORMAT:
        raise ValueError('__metadata__ format "%.40s", expected "%s"' % (fmt, FORMAT))
    v = {}
    for key, lo, hi in META_INTS:
        s = _meta_str(meta, key)
        if s is None:
            raise ValueError('__metadata__ has no string "%s"' % key)
        if not _STRTOL.match(s) or not lo <= int(s) <= hi:
            raise ValueError('__metadata__ "%s" = "%.40s" is not an integer in %d..%d' %
                             (key, s, lo, hi))
        v[key] = int(s)
        if key == "format_version" and v[key] != FORMAT_VERSION:
            raise ValueError("__metadata__ format_version %d: this build reads version %d" %
                             (v[key], FORMAT_VERSION))
    if v["in_c"] != IN_C:
        raise ValueError("__metadata__ in_c %d: this build's model takes %d input channels" %
                         (v["in_c"], IN_C))
    div = 1 << v["depth"]  # model.c's cg_model_build
    if v["base"] << v["depth"] > 65536:
        raise ValueError("__metadata__ describes no valid model: model base width %d out of "
                         "range 1..%d" % (v["base"], 65536 >> v["depth"]))
    if v["height"] % div or v["width"] % div or v["height"] < div or v["width"] < div:
        raise ValueError("__metadata__ describes no valid model: image size %dx%d must be a "
                         "positive multiple of 2^depth = %d" % (v["height"], v["width"], div))
    lo = max(v["nclass"], 2)  # binary masks hold 0 and 1: train's rule
    if 0 <= v["ignore_index"] < lo:
        kind = "%d-class" % v["nclass"] if v["nclass"] > 1 else "binary"
        raise ValueError("__metadata__ ignore_index %d is a class id of this %s model (want -1 "
                         "for none, or a label >= %d)" % (v["ignore_index"], kind, lo))
    pal = _meta_str(meta, "palette", "").encode("utf-8")
    if len(pal) % 6 or len(pal) // 6 > 256:
        raise ValueError("__metadata__ palette: %d hex digits, expected 6 per entry, <= 256" %
                         len(pal))
    for i, ch in enumerate(pal):
        if chr(ch) not in "0123456789abcdefABCDEF":
            raise ValueError("__metadata__ palette: not hex at digit %d" % i)
    return v


def _tensor_table(in_c, base, depth, nclass):
    """[(name, shape)] of CogpuUNet's state_dict, in its order, without building the module:
    a file may claim a model of any size, and only one holding its bytes gets that memory."""
    w = [base << l for l in range(depth + 1)]
    layers = []
    for l in range(depth + 1):
        layers += [("enc.%d.conv1" % l, (w[l], in_c if l == 0 else w[l - 1], 3, 3)),
                   ("enc.%d.conv2" % l, (w[l], w[l], 3, 3))]
    layers += [("up.%d" % l, (w[l + 1], w[l], 2, 2)) for l in range(depth)]
    for l in range(depth):
        layers += [("dec.%d.conv1" % l, (w[l], 2 * w[l], 3, 3)),
                   ("dec.%d.conv2" % l, (w[l], w[l], 3, 3))]
    layers.append(("head", (nclass, w[0], 1, 1)))
    bias_of = {name: shape[1] if name.startswith("up.") else shape[0] for name, shape in layers}
    return [(n + s, shape if s == ".weight" else (bias_of[n],))
            for n, shape in layers for s in (".weight", ".bias")]


def _index(v, hi):
    """A JSON number that is an integer in 0..hi, else -1 (as export.c's json_index)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
        return -1
    return int(v) if float(v) == int(v) else -1


def _shape_str(s):
    return "[%s]" % ", ".join("?" if d < 0 else str(d) for d in s)


def _check_tensor(name, want, e, dlen):
    """One header entry against its (name, shape): dtype, shape, offsets. Its first byte."""
    numel = int(np.prod(want, dtype=np.int64))
    dt = _meta_str(e, "dtype", "?")
    if dt != "F32":
        raise ValueError("tensor %s: dtype %.20s, expected F32" % (name, dt))
    sh, off = e.get("shape"), e.get("data_offsets")
    got = [_index(d, 2.0 ** 53) for d in sh] if isinstance(sh, list) else None
    if got is None or tuple(got) != want:
        raise ValueError("tensor %s: shape %s, the metadata's model needs %s" %
                         (name, "none" if got is None else _shape_str(got[:8]), _shape_str(want)))
    lo = _index(off[0], dlen) if isinstance(off, list) and len(off) == 2 else -1
    hi = _index(off[1], dlen) if lo >= 0 else -1
    if hi < 0 or hi - lo != 4 * numel:
        raise ValueError("tensor %s: data_offsets missing, outside the %d data bytes or not %d "
                         "bytes long" % (name, dlen, 4 * numel))
    return lo


def _check_tiling(table, begin, dlen):
    """The tensors tile the data section: no two share a byte, none is left over."""
    at, prev = 0, None
    for j in sorted(range(len(table)), key=lambda j: begin[j]):
        name, shape = table[j]
        if begin[j] < at:
            raise ValueError("tensors %s and %s overlap in the data section" % (prev, name))
        if begin[j] > at:
            raise ValueError("data bytes %d..%d belong to no tensor (before %s)" %
                             (at, begin[j] - 1, name))
        at, prev = begin[j] + 4 * int(np.prod(shape, dtype=np.int64)), name
    if at != dlen:
        raise ValueError("the data section has %d bytes, the tensors end at byte %d" % (dlen, at))


def _parse(data):
    """(tensors, metadata) of a file's bytes, checked as cogpu-dist import checks them."""
    if len(data) < 8:
        raise ValueError("%d bytes: too short for a safetensors file" % len(data))
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise ValueError("header length %d does not fit the file's %d bytes: not a safetensors "
                         "file" % (n, len(data)))
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_dup_keys)
    except _DupKey:
        raise
    except ValueError as e:  # JSON or UTF-8
        raise ValueError("header is not a JSON object: %s" % e) from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.get("__metadata__")
    v = _check_meta(meta)
    table = _tensor_table(v["in_c"], v["base"], v["depth"], v["nclass"])
    names = {name for name, _ in table}
    for key in header:  # strict: no name the module does not have
        if key != "__metadata__" and key not in names:
            raise ValueError("unexpected tensor %.60s: not in the metadata's model" % key)
    body = memoryview(data)[8 + n:]
    begin = []
    for name, shape in table:
        e = header.get(name)
        if not isinstance(e, dict):
            raise ValueError("missing tensor %s" % name)
        begin.append(_check_tensor(name, shape, e, len(body)))
    _check_tiling(table, begin, len(body))
    tensors = {}
    for (name, shape), b in zip(table, begin):
        a = np.frombuffer(body[b:b + 4 * int(np.prod(shape, dtype=np.int64))], dtype="<f4")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:  # NaN logits from the first pixel on
            raise ValueError("tensor %s: element %d is %s: weights must be finite" %
                             (name, bad[0], "NaN" if np.isnan(a[bad[0]]) else "infinite"))
        tensors[name] = torch.from_numpy(a.astype(np.float32).reshape(shape))
    return tensors, meta


def read_safetensors(path):
    """(tensors: name -> torch.Tensor float32, metadata: dict of str) from a `cogpu-dist export`
    file, refused (ValueError naming the key) where `cogpu-dist import` refuses it."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] == b"CGCKPT\r\n":
        raise ValueError("%s: a cogpu-dist checkpoint, not a safetensors file: run `cogpu-dist "
                         "export --checkpoint %s --out FILE.safetensors` first" % (path, path))
    try:
        return _parse(data)
    except ValueError as e:
        raise ValueError("%s: %s" % (path, e)) from None


def load(path, features=True):
    """The model of a `cogpu-dist export` file, weights loaded (strict), in eval mode. The file
    is checked as `cogpu-dist import` checks it (ValueError otherwise) before any memory of the
    size of the model it claims is allocated."""
    tensors, meta = read_safetensors(path)
    model = CogpuUNet(int(meta["in_c"]), int(meta["base"]), int(meta["depth"]),
                      int(meta["nclass"]), features=features, meta=meta)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def export_onnx(model, out, opset=17):
    """ONNX with input "rgb" [N, 3, H, W] float32 (0..255), output "logits"; N, H, W dynamic."""
    h, w = int(model.meta.get("height", 64)), int(model.meta.get("width", 64))
    dummy = torch.zeros(1, 3, h, w)
    torch.onnx.export(model, dummy, out, input_names=["rgb"], output_names=["logits"],
                      opset_version=opset, do_constant_folding=True,
                      dynamic_axes={"rgb": {0: "n", 2: "h", 3: "w"},
                                    "logits": {0: "n", 2: "h", 3: "w"}})


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m cogpu_torch",
                                 description="Load a cogpu-dist export; optionally write ONNX.")
    ap.add_argument("model", help="FILE.safetensors from `cogpu-dist export`")
    ap.add_argument("--onnx", metavar="OUT", help="write an ONNX model to OUT")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (13..17; default 17)")
    a = ap.parse_args(argv)
    try:
        model = load(a.model)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print("cogpu_torch: error: %s" % e, file=sys.stderr)
        return 2
    m = model.meta
    print("cogpu_torch: %s: base %s depth %s, %s class(es), trained at %sx%s, %d parameters" %
          (a.model, m["base"], m["depth"], m["nclass"], m["height"], m["width"],
           sum(p.numel() for p in model.parameters())))
    if a.onnx:
        if not 13 <= a.opset <= 17:
            print("cogpu_torch: error: --opset %d: use 13..17" % a.opset, file=sys.stderr)
            return 2
        with torch.no_grad():
            export_onnx(model, a.onnx, a.opset)
        print("cogpu_torch: wrote %s (opset %d)" % (a.onnx, a.opset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
