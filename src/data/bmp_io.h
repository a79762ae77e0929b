/* bmp_io.h: reading Windows BMP files, for data sets that ship their images or masks as BMPs
 * (MSRC-21's photographs and colour-coded ground truth, GlaS's gland annotations). Our own
 * decoder: the format is a header and rows, and needs no library.
 *
 * Read as Pillow 9 opens them (np.array(Image.open(p))), but where Pillow 9.4 misreads (an RLE4
 * literal run of odd length; a run past a row's end, which Pillow spills into the next row; a 4-
 * or 8-bit file whose palette is black and white alone, or a 4-bit gray ramp 0..15, which Pillow
 * unpacks as 1- or 8-bit): the headers of Windows 3 (40 bytes), OS/2 1 (12), OS/2 2 (64; its own
 * compressions refused) and Windows 4 and 5 (108, 124), and 52 and 56 (the bit-field headers
 * Adobe writes, which Pillow refuses); bottom-up or top-down rows (a negative height); the pixels
 * at the file header's offset (but where a palette would lie under it, or where the offset is 0,
 * as Pillow corrects broken writers);
 *   - 1, 4 and 8 bits a pixel, uncompressed or RLE8 / RLE4 (a skip by delta or an early end of
 *     line or bitmap leaves index 0, as the format's background): colour indices into the
 *     palette (BGR, BGRX entries; its colour count, else 2^bits, cut where the pixels begin:
 *     an OS/2 1 file, which has no count, may hold fewer);
 *   - 16 bits (5-5-5, or 5-6-5 / 5-5-5 by bit fields), each field scaled as Pillow's unpackers
 *     do (v * 255 / max, truncated); 24 bits (BGR); 32 bits (BGRX, or any bit fields of whole
 *     bytes; a fourth byte, alpha or not, is dropped).
 * JPEG or PNG inside a BMP, other bit fields and other depths are refused, naming what.
 *
 * Values, as the other readers' (png_io.h):
 *   - CG_PNG_AS_RGB: a palette's colour for an index (an index past the palette's end is gray
 *     (i, i, i), as Pillow pads a short palette), or the pixel's RGB;
 *   - CG_PNG_AS_MASK: 1 where the index is > 0 (the index, not its colour), or any of R, G, B > 0;
 *   - CG_PNG_AS_LABEL: the index (a gray-ramp palette's index is its gray, as Pillow's mode L
 *     gives it); a file of 16 bits or more is refused ("class ids need a gray or palette").
 *
 * Hardening: the sides (at most CG_PNG_MAX_SIDE) and the pixel limit are checked from the header
 * before anything is allocated; an uncompressed file is read a row at a time (memory: a row), an
 * RLE one decoded whole into one byte a pixel. A file cut short fails with "PATH: BMP decode
 * failed: ... (truncated)", never a short image.
 *
 * Return values, ownership and thread-safety as in png_io.h. */
#ifndef CG_BMP_IO_H
#define CG_BMP_IO_H

#include <stddef.h>
#include <stdint.h>

#include "png_io.h" /* cg_png_sink_t, cg_png_as_t */

/* 1 when the n bytes at p start like a BMP file: "BM", and at 14 a header size this reader
 * knows (n >= 18), or "BM" cut before it (the reader then says "truncated"). */
int cg_bmp_sniff(const uint8_t *p, size_t n);

/* Width and height from the header (no pixel is read), with its checks; `as` refuses class ids
 * from a file of 16 bits or more a pixel. */
int cg_bmp_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                     char *err, size_t errlen);

/* Decodes the image into sink as `as` says (rows of w*3 bytes RGB8, w bytes of 0/1, or w bytes
 * of indices), rows 0..h-1 (top first) in order. */
int cg_bmp_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                     const cg_png_sink_t *sink, char *err, size_t errlen);

#endif
