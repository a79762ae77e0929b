"""png_write.py: PNG files from rows of bytes with the standard library alone (no Pillow), for
the shell tests' fixtures: png(path, w, h, ctype, rows), ctype 0 = 8-bit gray, 2 = RGB; and
blobs(), a label map of random rectangles."""
import struct
import zlib


def png(path, w, h, ctype, rows):  # filter 0 on every row
    raw = b"".join(b"\0" + bytes(r) for r in rows)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    hdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def blobs(rnd, size, shapes=3):
    """A size x size label map (rows of ids) of `shapes` rectangles of classes 1 and 2 on 0,
    drawn with random.Random-like rnd (the module itself will do)."""
    ids = [[0] * size for _ in range(size)]
    for _ in range(shapes):
        c, x0, y0 = rnd.randint(1, 2), rnd.randint(0, size - 9), rnd.randint(0, size - 9)
        for y in range(y0, min(size, y0 + rnd.randint(4, 14))):
            for x in range(x0, min(size, x0 + rnd.randint(4, 14))):
                ids[y][x] = c
    return ids
