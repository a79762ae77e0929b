#!/usr/bin/env python3
"""Fixtures and checks for tests/test_predict_full.sh (pure Python: zlib, struct; no numpy).

  make DIR S K          DIR/train/{images,masks}: 192 S x S pairs; DIR/full/{images,masks}: the
                        images 200x80, 37x301 (as NAME.PNG, upper case), 1000x1000 and 23x13
                        (smaller than a tile) with objects cut by every edge (a circle at the
                        left edge of the 200x80 one);
                        DIR/tiles/{images,masks}: S x S crops of the full images' interior
                        (at least S/2 from every edge). K = 1: masks 0/1; K >= 2: class ids
                        (class = shape kind: 1 disc, 2 square, 3 ring, ...; the colour too)
                        and the ignore label 255 in a band around the squares, as palette
                        PNGs with the VOC colour map.
  check DIR S K         reads DIR/pred (predict's output on DIR/full): sizes, palette PNGs for
                        K >= 2 (the training masks' palette), the left-edge circle, and
                        NAME.probs.npy against the mask.
Everything is drawn from a fixed seed, so the test is the same at every run."""
import math, os, random, struct, sys, zlib


def voc_palette():  # the PASCAL VOC colour map: 256 RGB entries
    pal = bytearray()
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += bytes((r, g, b))
    return bytes(pal)


def png_write(path, w, h, rows, ctype):  # ctype 0 gray8, 2 rgb8, 3 palette (VOC); rows: bytes
    raw = b"".join(b"\x00" + r for r in rows)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    plte = chunk(b"PLTE", voc_palette()) if ctype == 3 else b""
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + plte + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def png_read(path):  # 8-bit gray or palette (indices), non-interlaced: (w, h, rows, ctype)
    d = open(path, "rb").read()
    assert d[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, w = 8, b"", None
    while pos < len(d):
        n, t = struct.unpack(">I4s", d[pos:pos + 8])
        body = d[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype, _, _, il = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (0, 3) and il == 0, (path, depth, ctype, il)
        elif t == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, ctype


class Canvas:
    """An image (RGB) and its mask; dark noisy background, bright shapes."""

    def __init__(self, w, h, rng):
        self.w, self.h = w, h
        self.rgb = bytearray(w * h * 3)
        for i in range(w * h):
            g = rng.randrange(20, 70)
            self.rgb[3 * i:3 * i + 3] = bytes((g, g + rng.randrange(0, 10), g))
        self.mask = bytearray(w * h)

    def shape(self, kind, cx, cy, r, cls, rng, k=1):
        col = (rng.randrange(170, 250), rng.randrange(120, 250), rng.randrange(60, 200))
        if k > 1:  # K classes: the colour says the class too (a quick model learns it)
            col = tuple(200 + v % 50 if (cls - 1) % 3 == i else v // 4 for i, v in enumerate(col))
        for y in range(max(0, int(cy - r) - 1), min(self.h, int(cy + r) + 2)):
            for x in range(max(0, int(cx - r) - 1), min(self.w, int(cx + r) + 2)):
                dx, dy = x + 0.5 - cx, y + 0.5 - cy
                d = math.hypot(dx, dy)
                inside = (d <= r if kind == 0 else max(abs(dx), abs(dy)) <= r * 0.8 if kind == 1
                          else r * 0.55 <= d <= r)
                if k > 1 and kind == 1 and not inside and max(abs(dx), abs(dy)) <= r * 0.8 + 1.5:
                    if self.mask[y * self.w + x] == 0:
                        self.mask[y * self.w + x] = 255  # an ignore band around squares
                if inside:
                    i = y * self.w + x
                    self.rgb[3 * i:3 * i + 3] = bytes(min(255, v + rng.randrange(-15, 15)) for v in col)
                    self.mask[i] = cls

    def crop(self, x0, y0, s):
        c = Canvas.__new__(Canvas)
        c.w = c.h = s
        c.rgb = b"".join(self.rgb[3 * ((y0 + y) * self.w + x0):3 * ((y0 + y) * self.w + x0 + s)]
                         for y in range(s))
        c.mask = b"".join(self.mask[(y0 + y) * self.w + x0:(y0 + y) * self.w + x0 + s] for y in range(s))
        return c

    def save(self, d, name, k, ext="png"):
        png_write("%s/images/%s.%s" % (d, name, ext), self.w, self.h,
                  [bytes(self.rgb[3 * y * self.w:3 * (y + 1) * self.w]) for y in range(self.h)], 2)
        png_write("%s/masks/%s.png" % (d, name), self.w, self.h,
                  [bytes(self.mask[y * self.w:(y + 1) * self.w]) for y in range(self.h)],
                  3 if k > 1 else 0)  # K classes: VOC-style palette masks


def kind_cls(rng, k):
    kind = rng.randrange(3)
    return kind, (1 if k == 1 else 1 + kind % (k - 1))


def scatter(c, rng, k, n, s):
    for _ in range(n):
        kind, cls = kind_cls(rng, k)
        c.shape(kind, rng.uniform(0, c.w), rng.uniform(0, c.h), rng.uniform(s * 0.12, s * 0.3), cls,
                rng, k)


def make(d, s, k):
    rng = random.Random(1234)
    for sub in ("train", "full", "tiles"):
        for leaf in ("images", "masks"):
            os.makedirs("%s/%s/%s" % (d, sub, leaf), exist_ok=True)
    for i in range(192):
        c = Canvas(s, s, rng)
        scatter(c, rng, k, rng.randrange(1, 4), s)
        c.save(d + "/train", "t%03d" % i, k)
    fulls = [("wide", 200, 80, "png"), ("tall", 37, 301, "PNG"), ("big", 1000, 1000, "png"),
             ("tiny", 23, 13, "png")]  # smaller than a tile: reflected padding
    for name, w, h, ext in fulls:
        c = Canvas(w, h, rng)
        scatter(c, rng, k, max(2, w * h // (s * s * 2)), s)
        r = s * 0.3
        for t in range(max(2, (w + h) // s)):  # shapes cut by each of the four edges
            kind, cls = kind_cls(rng, k)
            u = rng.uniform(0, 1)
            for cx, cy in ((u * w, 2), (u * w, h - 2), (2, u * h), (w - 2, u * h)):
                c.shape(kind, cx, cy, r, cls, rng, k)
        if name == "wide":  # the circle the old centre crop lost; a PPM for cjpeg
            c.shape(0, 6, 40, 11, 1, rng)
            with open(d + "/wide.ppm", "wb") as f:
                f.write(b"P6 %d %d 255\n" % (w, h) + bytes(c.rgb))
        c.save(d + "/full", name, k, ext)
        n = 0
        for y0 in range(s // 2, h - s - s // 2 + 1, s):
            for x0 in range(s // 2, w - s - s // 2 + 1, s):
                c.crop(x0, y0, s).save(d + "/tiles", "%s_%04d" % (name, n), k)
                n += 1


def npy_read(path):
    d = open(path, "rb").read()
    assert d[:6] == b"\x93NUMPY" and d[6] == 1, path
    hl = struct.unpack("<H", d[8:10])[0]
    hdr = d[10:10 + hl].decode("latin1")
    assert (10 + hl) % 64 == 0 and hdr.endswith("\n"), "npy header not padded to 64"
    meta = eval(hdr)  # a Python literal, as numpy writes it
    assert meta["descr"] == "<f4" and meta["fortran_order"] is False, meta
    shape = meta["shape"]
    n = shape[0] * shape[1] * shape[2]
    assert len(d) == 10 + hl + 4 * n, "npy payload size"
    return shape, struct.unpack("<%df" % n, d[10 + hl:])


def check(d, s, k):
    sizes = {"wide": (200, 80), "tall": (37, 301), "big": (1000, 1000), "tiny": (23, 13)}
    for name, (w, h) in sizes.items():
        pw, ph, rows, ctype = png_read("%s/pred/%s.png" % (d, name))
        assert (pw, ph) == (w, h), "%s: predicted %dx%d, image %dx%d" % (name, pw, ph, w, h)
        assert ctype == (3 if k > 1 else 0), "%s: PNG colour type %d" % (name, ctype)
        if k > 1:
            raw = open("%s/pred/%s.png" % (d, name), "rb").read()
            i = raw.index(b"PLTE")
            n = struct.unpack(">I", raw[i - 4:i])[0]
            assert raw[i + 4:i + 4 + n] == voc_palette()[:n] and n >= 3 * k, "%s: palette" % name
    print("PASS masks of the inputs' sizes: 200x80, 37x301, 1000x1000, 23x13%s" %
          (", palette PNGs with the training masks' palette" if k > 1 else ""))
    w, h, rows, _ = png_read(d + "/pred/wide.png")
    fg = tot = 0
    for y in range(80):
        for x in range(200):
            if math.hypot(x + 0.5 - 6, y + 0.5 - 40) <= 9:
                tot += 1
                fg += rows[y][x] != 0
    print("left-edge circle: %d of %d pixels predicted foreground" % (fg, tot))
    assert fg >= 0.9 * tot, "the circle at the left edge was not found"
    shape, p = npy_read(d + "/pred/wide.probs.npy")
    assert shape == (80, 200, k), shape
    bad = 0
    for y in range(80):
        for x in range(200):
            q = (y * 200 + x) * shape[2]
            if k == 1:
                want = 255 if p[q] > 0.5 else 0
                if abs(p[q] - 0.5) < 1e-6: continue  # a logit within rounding of 0
            else:
                v = p[q:q + k]
                want = v.index(max(v))
                assert abs(sum(v) - 1) < 1e-4, "probabilities do not sum to 1"
            bad += rows[y][x] != want
    assert bad == 0, "%d pixels: argmax of --save-probs differs from the mask" % bad
    print("PASS --save-probs: .npy [80, 200, %d] float32, its argmax equals the mask" % shape[2])


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
