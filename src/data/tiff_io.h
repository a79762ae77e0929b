/* tiff_io.h: reading TIFF files through libtiff (the first page), for data sets that ship them
 * (DRIVE's retina images, microscopy and remote-sensing tiles).
 *
 * Images come out as RGB8 rows, converted by libtiff's RGBA interface (TIFFRGBAImage) as far as
 * it converts them (gray and palette 1 to 16 bits; RGB and CMYK 8 or 16; YCbCr; strips or
 * tiles; any compression libtiff decodes; others fail with libtiff's reason), alpha dropped
 * (unassociated: the colours as stored; associated: divided back by alpha, as Pillow does):
 * the pixels of Pillow's Image.open(p).convert("RGB") (tests/test_pillow.c), but for 16-bit
 * samples (scaled to round(v x 255 / 65535) as PNGs' are, MinIsWhite from 65535 - v, where
 * Pillow clips gray and keeps colour's high byte) and old 8-bit colormaps (every entry < 256:
 * taken as 8-bit, as libtiff does, where Pillow's high bytes make them black). Orientation 1
 * to 4 is applied (a mirrored or upside-down file is flipped as it is read, masks alike, as
 * Pillow's decoder does); 5 to 8 (rows and columns swapped) are refused naming the file.
 *
 * Masks follow png_io.h's rules on the stored sample values, as np.array(Image.open(p)) gives
 * them: a one-sample file (gray or palette, 1, 2, 4, 8 or 16 bits, unsigned; one extra sample
 * allowed and ignored) is read by value, MinIsWhite files inverted so that white is the high
 * value, as Pillow shows them:
 *   - CG_PNG_AS_MASK: 1 where the value is > 0;
 *   - CG_PNG_AS_LABEL: the value (a 16-bit value over 255 fails naming it: not a class id).
 * A colour file (RGB, YCbCr, ...) is read as a binary mask through the RGBA interface (any of
 * R, G, B > 0) and refused as labels ("class ids need a gray or palette image"). Floating-point
 * or signed samples are refused as masks.
 *
 * Hardening, as for PNG: the pixel limit is checked from the first page's width and length
 * before any pixel buffer exists. Memory: a strip file read top-down in a layout converted here
 * (every mask read by value; 8- and 16-bit gray, gray + alpha, RGB and RGBA images, 8-bit
 * palette ones) goes a scanline at a time: libtiff's raw strip (the compressed bytes) and one
 * row, however many rows a strip holds. Tiles, bottom-up files and other layouts (CMYK, YCbCr,
 * separate-plane RGB images) go by bands of one strip or one row of tiles, held as 32-bit RGBA
 * words (a single-strip file of those: the whole image). libtiff's own allocations are capped
 * (a strip or tile of more than 8 bytes x the pixel limit + 1 MiB is refused). libtiff's errors
 * and warnings go to a per-file handler (never stderr), so the message is "PATH: TIFF decode
 * failed: <libtiff's reason>"; a truncated file is an error, not a short image.
 *
 * Return values, ownership and thread-safety as in png_io.h. Without libtiff (COGPU_HAVE_TIFF
 * undefined) every reading function returns -1 with "built without libtiff". */
#ifndef CG_TIFF_IO_H
#define CG_TIFF_IO_H

#include <stddef.h>
#include <stdint.h>

#include "png_io.h" /* cg_png_sink_t, cg_png_as_t */

/* 1 when the n bytes at p start like a TIFF or BigTIFF file ("II*\0", "MM\0*", "II+\0",
 * "MM\0+"). */
int cg_tiff_sniff(const uint8_t *p, size_t n);

/* Width and height of the first page from its tags (no pixel is decoded), checking as png_io's
 * cg_png_read_size_as does that the file can be read `as` says (CG_PNG_AS_LABEL: a one-sample
 * file of unsigned integers). */
int cg_tiff_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                      char *err, size_t errlen);

/* Decodes the first page row by row into sink, converted as `as` says (rows of w*3 bytes RGB8,
 * or w bytes of 0/1, or w bytes of class ids). */
int cg_tiff_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                      const cg_png_sink_t *sink, char *err, size_t errlen);

#endif
