/* png_io.h: reading and writing PNG files through libpng.
 *
 * Reading accepts every PNG colour type and depth (gray 1/2/4/8/16, gray+alpha, RGB 8/16,
 * RGBA 8/16, palette; interlaced or not) and returns one of two fixed layouts:
 *   - an image: RGB8, h*w*3 bytes interleaved; 16-bit samples are scaled to 8 bits with
 *     rounding (v * 255 / 65535), gray is replicated to R=G=B, palettes are expanded, alpha and
 *     tRNS transparency are dropped;
 *   - a mask: h*w bytes of 0/1, 1 where the pixel is foreground: for gray, gray value > 0; for
 *     RGB and palette, any of R, G, B > 0 (palette entries by their colour); alpha is ignored.
 *     16-bit masks are tested before any scaling, so 1/65535 is still foreground.
 * Writing takes pixels in one of the cg_png_kind_t layouts (for tests, and `predict`).
 *
 * Return values: 0, or -1 with a one-line message in err that names the file and gives the
 * reason (errno's or libpng's). The returned buffers are malloc'ed and owned by the caller
 * (free()). Every function is thread-safe (no shared state). Without libpng (COGPU_HAVE_PNG
 * undefined) every function returns -1 with "built without libpng". */
#ifndef CG_PNG_IO_H
#define CG_PNG_IO_H

#include <stddef.h>
#include <stdint.h>

/* Largest width or height accepted when reading (decompression-bomb guard). */
#define CG_PNG_MAX_SIDE 32768

typedef enum {
  CG_PNG_GRAY8,   /* px: h*w uint8 */
  CG_PNG_GRAY16,  /* px: h*w uint16 (host byte order) */
  CG_PNG_GRAYA8,  /* px: h*w*2 uint8, gray then alpha */
  CG_PNG_RGB8,    /* px: h*w*3 uint8 */
  CG_PNG_RGB16,   /* px: h*w*3 uint16 (host byte order) */
  CG_PNG_RGBA8,   /* px: h*w*4 uint8 */
  CG_PNG_PALETTE  /* px: h*w*3 uint8 RGB with at most 256 distinct colours, stored as a palette */
} cg_png_kind_t;

/* Width and height from the IHDR chunk only (cheap: nothing is decompressed). */
int cg_png_read_size(const char *path, int *h, int *w, char *err, size_t errlen);

/* Decodes the whole file. On success *rgb (h*w*3) / *mask (h*w, 0/1) is the caller's to free;
 * on failure it is left unchanged. */
int cg_png_read_rgb(const char *path, uint8_t **rgb, int *h, int *w, char *err, size_t errlen);
int cg_png_read_mask(const char *path, uint8_t **mask, int *h, int *w, char *err, size_t errlen);

/* Writes px (layout given by kind) to path, replacing it. On failure the file is removed. */
int cg_png_write(const char *path, const void *px, int h, int w, cg_png_kind_t kind, char *err,
                 size_t errlen);

#endif
