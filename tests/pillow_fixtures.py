#!/usr/bin/env python3
"""pillow_fixtures.py DIR: image files written by Pillow, and what Pillow reads from each.

For test_pillow.c: the trainer must read a data set's files as a PyTorch pipeline does
(Image.open, then np.array). For every file DIR/NAME.EXT this writes four answers:
  NAME.rgb    np.array(Image.open(f).convert("RGB"))   the image
  NAME.mask   np.array(Image.open(f)) > 0              a binary mask (any channel, alpha dropped)
  NAME.label  np.array(Image.open(f))                  class ids (one-channel files only)
  NAME.turned np.array(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
                                                       a JPEG image under --exif-orientation apply
each as a line "H W" then H*W*C raw bytes, or the line "SKIP why" where the answer is not
Pillow's to give (16-bit colour, whose high byte Pillow keeps where we scale) or "ERR why" where
the trainer must refuse the file (class ids from colour files or values over 255). A 16-bit gray
image, which Pillow's convert("RGB") clips to 255, is answered from the values Pillow reads:
round(v * 255 / 65535), MinIsWhite inverted first (65535 - v). MANIFEST lists NAME.EXT per
line."""
import io
import os
import sys

import numpy as np
from PIL import Image, ImageOps

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
# files already there (test_pillow.c writes the TIFF layouts Pillow cannot with libtiff):
# answered as they are
foreign = sorted(f for f in os.listdir(out) if f.endswith(".tif"))
rng = np.random.default_rng(5)
manifest = []


def smooth(h, w, c):
    """Smooth random content: JPEG round trips stay meaningful."""
    y, x = np.mgrid[0:h, 0:w]
    ch = [(127 + 120 * np.sin(x / (3 + k) + y / (5 + 2 * k) + k)) for k in range(c)]
    return np.stack(ch, -1).round().astype(np.uint8)


def answer(path, kind, arr=None, why=""):
    with open(path, "wb") as f:
        if arr is None:
            f.write(f"{kind} {why}\n".encode())
            return
        f.write(f"{arr.shape[0]} {arr.shape[1]}\n".encode())
        f.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def scaled16(im, fmt):
    """A 16-bit gray image as the trainer reads it: round(v * 255 / 65535) in R, G and B, from the
    values Pillow reads (a TIFF's MinIsWhite as stored: inverted here, 65535 - v)."""
    v = np.array(im).astype(np.int64)
    if fmt == "TIFF" and im.tag_v2.get(262) == 0:  # Photometric MinIsWhite
        v = 65535 - v
    g = (2 * v * 255 + 65535) // (2 * 65535)  # exact rounding: v * 255 / 65535 is never n + 1/2
    return np.repeat(g[..., None], 3, -1)


def add(name, im, fmt, label_ok=True, rgb_ok=True, refuse=None, **save):
    """Saves im as DIR/name with fmt and records what Pillow reads back from the file."""
    im.save(os.path.join(out, name), fmt, **save)
    answer_file(name, fmt, label_ok, rgb_ok, refuse)


def answer_file(name, fmt, label_ok=True, rgb_ok=True, refuse=None, label_err=None):
    """Records what Pillow reads from DIR/name. A JPEG is a binary mask where its gray is >= 128
    (its compression blurs 0 and 255) and never holds class ids; a colour file is a mask where
    any of its RGB channels is > 0."""
    path = os.path.join(out, name)
    back = Image.open(path)
    base = os.path.join(out, os.path.splitext(name)[0])
    manifest.append(name)
    if refuse:
        for kind in ("rgb", "mask", "label", "turned"):
            answer(f"{base}.{kind}", "ERR", why=refuse)
        return
    if fmt == "JPEG":
        answer(base + ".turned", "", np.array(ImageOps.exif_transpose(back).convert("RGB")))
    else:
        answer(base + ".turned", "SKIP", why="EXIF orientation: JPEG only")
    if rgb_ok:
        answer(base + ".rgb", "", np.array(back.convert("RGB")))
    elif back.mode.startswith("I;16"):
        answer(base + ".rgb", "", scaled16(back, fmt))
    else:
        answer(base + ".rgb", "SKIP", why="16-bit colour: Pillow keeps the high byte")
    a = np.array(Image.open(path))
    if back.mode in ("LA", "PA"):
        a = a[..., 0]
    if fmt == "JPEG":
        m = np.array(back.convert("L")) >= 128
    elif a.ndim == 3:
        m = (np.array(back.convert("RGB")) > 0).any(-1)
    else:
        m = a > 0
    answer(base + ".mask", "", m.astype(np.uint8))
    if label_err:
        answer(base + ".label", "ERR", why=label_err)
    elif fmt == "JPEG":
        answer(base + ".label", "ERR", why="a JPEG holds no class ids (lossy)")
    elif a.ndim == 3:
        answer(base + ".label", "ERR", why="a colour file holds no class ids")
    elif a.max() > 255:
        answer(base + ".label", "ERR", why="a value over 255")
    elif label_ok:
        answer(base + ".label", "", a.astype(np.uint8))
    else:
        answer(base + ".label", "SKIP", why="lossy: the values are the compression's")


rgb = Image.fromarray(smooth(37, 53, 3))
gray = Image.fromarray(smooth(37, 53, 1)[..., 0])
ids = Image.fromarray(rng.integers(0, 5, (29, 31)).astype(np.uint8))
pal = ids.copy().convert("P")
pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 0] + [0] * 753)
binary = Image.fromarray((smooth(41, 43, 1)[..., 0] > 127).astype(np.uint8) * 255)

# PNG: the reference format; every colour type Pillow writes
add("png_rgb.png", rgb, "PNG")
add("png_gray.png", gray, "PNG")
add("png_pal.png", pal, "PNG")
add("png_rgba.png", Image.fromarray(np.dstack([smooth(37, 53, 3), smooth(37, 53, 1)])), "PNG")
add("png_1bit.png", binary.convert("1"), "PNG")
add("png_ids.png", ids, "PNG")

# JPEG: images (the same libjpeg-turbo as Pillow: byte for byte), binary masks
add("jpg_rgb.jpg", rgb, "JPEG", quality=90)
add("jpg_gray.jpg", gray, "JPEG", quality=85)
add("jpg_prog.jpg", rgb, "JPEG", quality=75, progressive=True)
add("jpg_mask.jpg", binary, "JPEG", quality=75)  # Kvasir-SEG's masks
# EXIF orientations 1..8 (phone photos): as stored (rgb) and turned as a viewer shows them
# (turned); 37x53 is no multiple of 8, 48x40 is (a DCT-scaled decode keeps its scale)
for o in range(1, 9):
    exif = Image.Exif()
    exif[274] = o
    add(f"jpg_exif{o}.jpg", rgb, "JPEG", quality=90, exif=exif.tobytes())
    add(f"jpg_exif{o}b.jpg", Image.fromarray(smooth(40, 48, 3)), "JPEG", quality=90,
        exif=exif.tobytes())

# GIF: Carvana's and DRIVE's masks; Pillow writes interlaced files by default
add("gif_pal.gif", pal, "GIF")
add("gif_gray.gif", gray, "GIF")  # an identity gray palette: Pillow opens it as mode L
add("gif_bin.gif", binary.convert("1"), "GIF")
add("gif_rgb.gif", rgb.quantize(64), "GIF", interlace=False)
add("gif_transp.gif", pal, "GIF", transparency=2)
frames = [pal, Image.fromarray((np.array(pal) + 1) % 5).convert("P")]
frames[1].putpalette(pal.getpalette())
add("gif_anim.gif", frames[0], "GIF", save_all=True, append_images=frames[1:])

# TIFF: DRIVE's images, microscopy: compressions, depths, colour types
add("tif_rgb.tif", rgb, "TIFF")
add("tif_lzw.tif", rgb, "TIFF", compression="tiff_lzw")
add("tif_deflate.tif", rgb, "TIFF", compression="tiff_adobe_deflate")
add("tif_packbits.tif", gray, "TIFF", compression="packbits")
add("tif_jpeg.tif", rgb, "TIFF", label_ok=False, compression="jpeg")
add("tif_gray.tif", gray, "TIFF")
add("tif_ids.tif", ids, "TIFF", compression="tiff_lzw")
add("tif_pal.tif", pal, "TIFF")
add("tif_rgba.tif", Image.fromarray(np.dstack([smooth(37, 53, 3), smooth(37, 53, 1)])), "TIFF")
add("tif_1bit.tif", binary.convert("1"), "TIFF", compression="group4")
add("tif_1bit_raw.tif", binary.convert("1"), "TIFF")
add("tif_16.tif", Image.fromarray(rng.integers(0, 4, (23, 19)).astype(np.uint16)), "TIFF",
    rgb_ok=False)
add("tif_16big.tif", Image.fromarray((np.arange(23 * 19).reshape(23, 19) * 7).astype(np.uint16)),
    "TIFF", rgb_ok=False)
# 16-bit gray over the whole range (microscopy): the image scaled, whatever the byte order or
# compression; the values are no class ids
full16 = rng.integers(0, 65536, (23, 19))
add("tif_16full.tif", Image.fromarray(full16.astype(np.uint16)), "TIFF", rgb_ok=False)
add("tif_16full_be.tif", Image.fromarray(full16.astype(">u2")), "TIFF", rgb_ok=False)
add("tif_16full_deflate.tif", Image.fromarray(full16.astype(np.uint16)), "TIFF", rgb_ok=False,
    compression="tiff_adobe_deflate")
add("tif_cmyk.tif", rgb.convert("CMYK"), "TIFF")
# the Orientation tag: Pillow's TIFF decoder applies 2..4 (mirrored, upside down) as it reads,
# to an image and to class ids alike; 5..8 (transposed) come out with the sides of the header
# before loading and swapped after it, so the trainer refuses them
for o in range(2, 9):
    why = "a transposed orientation" if o >= 5 else None
    add(f"tif_orient{o}.tif", rgb, "TIFF", refuse=why, tiffinfo={274: o})
    add(f"tif_orient{o}_ids.tif", ids, "TIFF", refuse=why, tiffinfo={274: o})

# BMP: MSRC-21's photographs and colour masks, GlaS's annotations. Pillow writes 1-bit, 8-bit
# gray and palette, 24-bit and 32-bit (RGBA) files; the others are made here byte by byte
add("bmp_rgb.bmp", rgb, "BMP")
add("bmp_gray.bmp", gray, "BMP")  # a gray-ramp palette: Pillow opens it as mode L
add("bmp_pal.bmp", pal, "BMP")
add("bmp_ids.bmp", ids, "BMP")
add("bmp_1bit.bmp", binary.convert("1"), "BMP")
add("bmp_rgba.bmp", Image.fromarray(np.dstack([smooth(37, 53, 3), smooth(37, 53, 1)])), "BMP")


def bmp(w, h, bits, rows, comp=0, palette=None, hsize=40, masks=None, colors=0):
    """A BMP: the file header, an info header of hsize bytes (12: OS/2 1; 40: Windows 3, masks
    after it; 56, 108, 124: masks inside it), the palette (BGR0 entries, BGR for OS/2) and rows,
    the stored bytes as given (h < 0: top-down)."""
    import struct
    pal = b""
    for r, g, b_ in palette or []:
        pal += bytes([b_, g, r]) + (b"" if hsize == 12 else b"\0")
    if hsize == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", hsize, w, h, 1, bits, comp, len(rows), 2835, 2835,
                           colors, 0)
        extra = struct.pack("<%dI" % len(masks), *masks) if masks else b""
        if hsize > 40:
            info += (extra + b"\0" * 4 * 21)[: hsize - 40]
        elif masks:
            info += extra
    off = 14 + len(info) + len(pal)
    return b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off) + info + pal + rows


def padded(row):
    return row + b"\0" * (-len(row) % 4)


def write(name, data, **kw):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
    answer_file(name, "BMP", **kw)


a8 = rng.integers(0, 6, (9, 13)).astype(np.uint8)  # 6 classes, a short palette of 6 colours
pal6 = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128)]
# RLE8: each stored row (bottom first) as runs of equal values, a literal run of three, an end
rle = b""
for r in a8[::-1]:
    row = list(r)
    rle += bytes([0, 3] + row[:3] + [0])  # absolute: 3 values, padded to a word
    i = 3
    while i < len(row):
        j = i
        while j < len(row) and row[j] == row[i] and j - i < 255:
            j += 1
        rle += bytes([j - i, row[i]])
        i = j
    rle += b"\0\0"
rle += b"\0\1"
write("bmp_rle8.bmp", bmp(13, 9, 8, rle, comp=1, palette=pal6, colors=6))
# RLE4: two alternating nibbles a run, a literal run of 6 (3 bytes, padded to 4). Pillow 9.4
# reads an odd literal run of n pixels as n // 2 bytes (the format stores (n + 1) // 2), so odd
# ones are not compared with it
a4 = rng.integers(0, 6, (7, 11)).astype(np.uint8)
rle = b""
for r in a4[::-1]:
    row = list(r)
    rle += bytes([0, 6, row[0] << 4 | row[1], row[2] << 4 | row[3], row[4] << 4 | row[5], 0])
    for i in range(6, len(row), 2):
        pair = row[i:i + 2]
        rle += bytes([len(pair), pair[0] << 4 | (pair[1] if len(pair) > 1 else 0)])
    rle += b"\0\0"
rle += b"\0\1"
write("bmp_rle4.bmp", bmp(11, 7, 4, rle, comp=2, palette=pal6, colors=6))
# 4-bit uncompressed, top-down (a negative height), its palette shorter than 16 entries
rows = b"".join(padded(bytes(r[i] << 4 | (r[i + 1] if i + 1 < len(r) else 0)
                             for i in range(0, len(r), 2))) for r in a4)
write("bmp_4bit_topdown.bmp", bmp(11, -7, 4, rows, palette=pal6, colors=6))
# 8-bit indices past a 6-colour palette: Pillow's gray ramp for the rest
a_hi = a8.copy()
a_hi[0, :4] = [9, 60, 200, 255]
rows = b"".join(padded(bytes(r)) for r in a_hi[::-1])
write("bmp_pal_short.bmp", bmp(13, 9, 8, rows, palette=pal6, colors=6))
# OS/2 1.x: a 12-byte header, BGR palette entries
rows = b"".join(padded(bytes(r)) for r in a8[::-1])
write("bmp_os2.bmp", bmp(13, 9, 8, rows, palette=pal6 + [(i, i, i) for i in range(6, 256)],
                         hsize=12))
# OS/2 1.x whose palette holds only the 6 colours used, the pixels right after them (the
# header has no count of colours: the pixel offset ends the palette; a small file ends before
# 256 entries would)
write("bmp_os2_short.bmp", bmp(13, 9, 8, rows, palette=pal6, hsize=12))
# 16 bits: 5-5-5 (uncompressed) and 5-6-5 (bit fields, a Windows 3 header), scaled by Pillow
v16 = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
rows = b"".join(padded(r.astype("<u2").tobytes()) for r in v16[::-1])
write("bmp_555.bmp", bmp(7, 5, 16, rows))
write("bmp_565.bmp", bmp(7, 5, 16, rows, comp=3, masks=(0xF800, 0x7E0, 0x1F)))
# 32 bits by bit fields in a version 4 header: RGBA byte order (the alpha dropped)
c32 = rng.integers(0, 256, (6, 5, 4)).astype(np.uint8)
rows = b"".join(r.tobytes() for r in c32[::-1])
write("bmp_32fields.bmp", bmp(5, 6, 32, rows, comp=3, hsize=108,
                               masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000)))

# PNG gray of 1, 2 and 4 bits (Pillow writes none): 1-bit reads as 0/1, 2- and 4-bit scaled
# to 0..255 by Pillow, so they are refused as class ids
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
from png_variants import packed, png  # noqa: E402

for bits in (1, 2, 4):
    name = f"png_gray{bits}.png"
    with open(os.path.join(out, name), "wb") as f:
        f.write(png(23, 17, bits, 0, packed(bits)))
    answer_file(name, "PNG", label_err=None if bits == 1 else "scaled by Pillow")

# palette PNGs whose indices pass the end of PLTE (3 colours; 8- and 4-bit indices 0..6): the
# image reads them gray (i, i, i), as Pillow pads the palette; class ids are the indices
from png_variants import chunk  # noqa: E402

plte3 = chunk(b"PLTE", bytes([200, 10, 10, 10, 200, 10, 10, 10, 200]))
for bits in (8, 4):
    name = f"png_pal_short{bits}.png"
    with open(os.path.join(out, name), "wb") as f:
        f.write(png(13, 5, bits, 3, packed(bits, levels=7), extra=(plte3,)))
    answer_file(name, "PNG")

for name in foreign:
    # 16-bit: Pillow clips gray and keeps the high byte of colour where we scale
    # (v * 255 / 65535): gray answered from its values, colour not at all; signed samples are
    # refused (libtiff's RGBA interface reads them as unsigned); 2- and 4-bit gray holds no
    # class ids (scaled by Pillow)
    deep = "16" in name
    answer_file(name, "TIFF", rgb_ok=not deep,
                refuse="signed samples" if "int16" in name else None,
                label_err="scaled by Pillow" if name.startswith("gray4") else None)

with open(os.path.join(out, "MANIFEST"), "w") as f:
    f.write("\n".join(manifest) + "\n")
print(f"{len(manifest)} files in {out}")
