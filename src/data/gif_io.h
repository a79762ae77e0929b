/* gif_io.h: reading GIF files through giflib (the first frame), for data sets that ship their
 * masks as GIFs (Carvana's NAME_mask.gif, DRIVE's manual annotations).
 *
 * The image is the logical screen of the file's header, as Pillow opens it: the first frame is
 * placed at its offset; pixels outside it take the frame's transparent index when it has one,
 * else index 0 (Pillow's fill). A frame that reaches outside the screen is refused. Later
 * frames of an animated file are not read.
 *
 * Values are the colour indices, as np.array(Image.open(p)) gives them (mode P; mode L for a
 * file whose palette is the identity gray ramp, where index and gray are the same):
 *   - CG_PNG_AS_RGB: the indices through the frame's local colour map, else the global one,
 *     else the gray ramp (index i is (i, i, i)); an index past the map's end is gray (i, i, i)
 *     too, as Pillow pads a short palette;
 *   - CG_PNG_AS_MASK: 1 where the index is > 0 (the index, not its colour: png_io.h's palette
 *     rule);
 *   - CG_PNG_AS_LABEL: the index.
 *
 * Hardening, as for PNG: the pixel limit is checked from the screen and frame sizes before any
 * pixel buffer exists; memory is one byte per pixel of the first frame (GIF interlacing sends
 * rows out of order, so the frame is decoded whole) and one converted row. A truncated or
 * corrupt file fails with "PATH: GIF decode failed: <giflib's reason>", never a short image.
 *
 * Return values, ownership and thread-safety as in png_io.h. Without giflib (COGPU_HAVE_GIF
 * undefined) every reading function returns -1 with "built without giflib". */
#ifndef CG_GIF_IO_H
#define CG_GIF_IO_H

#include <stddef.h>
#include <stdint.h>

#include "png_io.h" /* cg_png_sink_t, cg_png_as_t */

/* 1 when the n bytes at p start like a GIF file ("GIF87a" or "GIF89a"). */
int cg_gif_sniff(const uint8_t *p, size_t n);

/* Width and height of the logical screen from the header (no pixel is decoded), with the
 * checks of the first frame's descriptor (its size, inside the screen). `as` is accepted for
 * symmetry with the other readers: every GIF can be read every way. */
int cg_gif_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                     char *err, size_t errlen);

/* Decodes the first frame into sink, converted as `as` says (rows of w*3 bytes RGB8, or w bytes
 * of 0/1, or w bytes of indices), rows 0..h-1 of the screen in order. */
int cg_gif_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                     const cg_png_sink_t *sink, char *err, size_t errlen);

#endif
