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
package); load_state_dict(strict=True) refuses any missing, extra or misshapen tensor.
Needs torch (1.13 works: Debian's python3-torch) and numpy."""

import argparse
import json
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


def read_safetensors(path):
    """(tensors: name -> torch.Tensor float32, metadata: dict of str) from a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] == b"CGCKPT\r\n":
        raise ValueError("%s: a cogpu-dist checkpoint, not a safetensors file: run `cogpu-dist "
                         "export --checkpoint %s --out FILE.safetensors` first" % (path, path))
    if len(data) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, e in header.items():
        if e.get("dtype") != "F32":
            raise ValueError("%s: tensor %s: dtype %s, only F32 is read" % (path, name,
                                                                            e.get("dtype")))
        b, end = e["data_offsets"]
        shape = tuple(e["shape"])
        if not 0 <= b <= end <= len(body) or end - b != 4 * int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: tensor %s: bad data_offsets %s" % (path, name, [b, end]))
        a = np.frombuffer(body[b:end], dtype="<f4").astype(np.float32).reshape(shape)
        tensors[name] = torch.from_numpy(a.copy())
    return tensors, meta


def load(path, features=True):
    """The model of a `cogpu-dist export` file, weights loaded (strict), in eval mode."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT or int(meta.get("format_version", -1)) != FORMAT_VERSION:
        raise ValueError("%s: not a %s version %d file (metadata %r)" %
                         (path, FORMAT, FORMAT_VERSION, meta))
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
