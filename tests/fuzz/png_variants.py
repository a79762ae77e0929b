#!/usr/bin/env python3
"""png_variants.py DIR: PNG seeds in the layouts cg_png_write cannot produce but the decoder
accepts (png_io.h): gray at 1, 2 and 4 bits, gray+alpha and RGBA at 16 bits, a palette with
tRNS transparency, Adam7 interlacing, ancillary chunks, the image data split over several
IDAT chunks. Standard library only (zlib, struct)."""
import os
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w, h, depth, ctype, rows, extra=(), interlace=0, split=1):
    """rows(y, w) -> the raw bytes of row y of a w-wide (sub)image, without the filter byte."""
    if interlace:  # Adam7: seven passes over sub-images, each row filtered on its own
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                raw += b"".join(b"\x00" + rows(y, pw) for y in range(ph))
    else:
        raw = b"".join(b"\x01" + rows(y, w) for y in range(h))  # filter "sub" on every row
    z = zlib.compress(raw, 9)
    step = max(1, (len(z) + split - 1) // split)
    idat = b"".join(chunk(b"IDAT", z[i:i + step]) for i in range(0, len(z), step))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra) + idat + chunk(b"IEND", b"")


def packed(bits, levels=None):
    def rows(y, w):
        vals = [(x * 3 + y) % (levels or 1 << bits) for x in range(w)]
        out, acc, n = bytearray(), 0, 0
        for v in vals:
            acc, n = (acc << bits) | v, n + bits
            if n == 8:
                out.append(acc)
                acc, n = 0, 0
        if n:
            out.append(acc << (8 - n))
        return bytes(out)
    return rows


def samples(nch, nbytes):
    return lambda y, w: bytes((x * 31 + y * 7 + c) & 0xFF for x in range(w) for c in range(nch * nbytes))


def main(out):
    os.makedirs(out, exist_ok=True)
    pal = chunk(b"PLTE", bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]))
    seeds = {
        "gray1-9x4.png": png(9, 4, 1, 0, packed(1)),
        "gray2-7x3.png": png(7, 3, 2, 0, packed(2)),
        "gray4-5x5.png": png(5, 5, 4, 0, packed(4)),
        "graya16-4x3.png": png(4, 3, 16, 4, samples(2, 2)),
        "rgba16-3x4.png": png(3, 4, 16, 6, samples(4, 2)),
        "palette4-trns-6x6.png": png(6, 6, 4, 3, packed(4, 4), extra=[pal, chunk(b"tRNS", b"\x00\x80")]),
        "palette8-interlaced-9x9.png": png(9, 9, 8, 3, lambda y, w: bytes((x + y) % 4 for x in range(w)),
                                           extra=[pal], interlace=1),
        "rgb8-interlaced-10x7.png": png(10, 7, 8, 2, samples(3, 1), interlace=1),
        "gray16-interlaced-5x6.png": png(5, 6, 16, 0, samples(1, 2), interlace=1),
        "rgb8-ancillary-split-8x8.png": png(
            8, 8, 8, 2, samples(3, 1), split=3,
            extra=[chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"tEXt", b"Comment\x00seed"),
                   chunk(b"sRGB", b"\x00")]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
