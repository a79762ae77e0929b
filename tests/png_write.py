"""png_write.py: PNG files from rows of bytes with the standard library alone (no Pillow), for
the shell tests' fixtures: png(path, w, h, ctype, rows), ctype 0 = 8-bit gray, 2 = RGB."""
import struct
import zlib


def png(path, w, h, ctype, rows):  # filter 0 on every row
    raw = b"".join(b"\0" + bytes(r) for r in rows)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    hdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
