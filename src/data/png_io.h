/* png_io.h: reading and writing PNG files through libpng.
 *
 * Reading accepts every PNG colour type and depth (gray 1/2/4/8/16, gray+alpha, RGB 8/16,
 * RGBA 8/16, palette; interlaced or not) and returns one of two fixed layouts:
 *   - an image: RGB8, h*w*3 bytes interleaved; 16-bit samples are scaled to 8 bits with
 *     rounding (v * 255 / 65535), gray is replicated to R=G=B, palettes are expanded, alpha and
 *     tRNS transparency are dropped;
 *   - a mask: h*w bytes of 0/1, 1 where the pixel is foreground: for gray, gray value > 0; for
 *     palette, index > 0 (the index, not its colour: PIL's np.array(Image.open(mask))); for
 *     RGB, any of R, G, B > 0; alpha is ignored. 16-bit masks are tested before any scaling,
 *     so 1/65535 is still foreground.
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

/* Largest width or height accepted when reading (libpng's user limit). */
#define CG_PNG_MAX_SIDE 32768

/* Default limit on width x height (--max-image-pixels): Pillow's decompression-bomb warning
 * threshold, 2^30 / 4 / 3 = 89,478,485 pixels (about 9459 x 9459; 256 MiB as RGB8). Images are
 * fitted to the network's size, so a larger one is almost always a mistake or an attack. */
#define CG_PNG_DEFAULT_MAX_PIXELS 89478485LL

/* The pixel limit every image reader (PNG, JPEG, GIF, TIFF) applies from its header: 0 when
 * w x h <= max_pixels (or max_pixels <= 0), else -1 with "WxH image (N pixels) is over the
 * limit of M pixels (a decompression bomb? if the image is genuine, raise --max-image-pixels)"
 * in why, for the caller to prefix with the file's name. */
int cg_image_over_limit(uint64_t w, uint64_t h, int64_t max_pixels, char *why, size_t whylen);

/* Every reading function takes max_pixels: an image whose IHDR says width x height >
 * max_pixels is refused from the header alone, before libpng is set up or anything is
 * allocated, with "PATH: WxH image (N pixels) is over the limit of M pixels ...
 * --max-image-pixels" (max_pixels <= 0: only the CG_PNG_MAX_SIDE limit). A 0-byte or short
 * file is reported as such, naming the file. */

typedef enum {
  CG_PNG_GRAY8,   /* px: h*w uint8 */
  CG_PNG_GRAY16,  /* px: h*w uint16 (host byte order) */
  CG_PNG_GRAYA8,  /* px: h*w*2 uint8, gray then alpha */
  CG_PNG_RGB8,    /* px: h*w*3 uint8 */
  CG_PNG_RGB16,   /* px: h*w*3 uint16 (host byte order) */
  CG_PNG_RGBA8,   /* px: h*w*4 uint8 */
  CG_PNG_PALETTE  /* px: h*w*3 uint8 RGB with at most 256 distinct colours, stored as a palette */
} cg_png_kind_t;

typedef enum {
  CG_PNG_AS_RGB, /* rows of w*3 bytes RGB8 (a palette index past PLTE's end is gray (i, i, i),
                    as Pillow pads a short palette) */
  CG_PNG_AS_MASK, /* rows of w bytes 0/1 */
  CG_PNG_AS_LABEL /* rows of w bytes: the stored values, class ids (--num-classes): gray 1..16
                     bits (a 16-bit value over 255 fails, naming it), palette indices (the
                     palette is not applied: the VOC convention); alpha dropped; an RGB file
                     fails ("class ids need a gray or palette PNG") */
} cg_png_as_t;

/* Receives the decoded rows of one file. begin (optional) gets the size once, after the header
 * checks and before any pixel buffer is allocated; row gets rows y = 0..h-1 in order, px valid
 * only during the call. A non-zero return stops decoding: the callback writes the reason
 * (without the path) into why, and the reading function fails with "PATH: why". */
typedef struct {
  int (*begin)(void *ctx, int h, int w, char *why, size_t whylen);
  int (*row)(void *ctx, int y, const uint8_t *px, char *why, size_t whylen);
  void *ctx;
} cg_png_sink_t;

/* A sink that keeps every row, for the whole-image readers of every format: bpp (3 for RGB8
 * rows, 1 for masks) is set by the caller; begin allocates px (h * w * bpp bytes, the caller's
 * to free, also after a failed read) and records h and w. */
typedef struct {
  uint8_t *px;
  size_t bpp;
  int h, w;
} cg_png_whole_t;
int cg_png_whole_begin(void *ctx, int h, int w, char *why, size_t whylen);
int cg_png_whole_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen);

/* Width and height from the IHDR chunk only (cheap: nothing is decompressed). */
int cg_png_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                     size_t errlen);
/* The same, also checking the file can be read `as` says from its header alone: as
 * CG_PNG_AS_LABEL, an RGB file fails ("an RGB mask: class ids ... need a gray or palette PNG"). */
int cg_png_read_size_as(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                        char *err, size_t errlen);

/* Decodes the file row by row into sink, converted as `as` says. Memory: two rows of the file
 * (libpng's) and one converted row, whatever the height; only interlaced (Adam7) files are
 * decoded whole first, which libpng requires (bounded by max_pixels). Checks the data up to
 * IEND (a truncated file fails even when every row arrived). */
int cg_png_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as, const cg_png_sink_t *sink,
                     char *err, size_t errlen);

/* cg_png_read_rows over the len bytes at mem (a shard record); name labels messages. */
int cg_png_read_rows_mem(const char *name, const uint8_t *mem, size_t len, int64_t max_pixels,
                         cg_png_as_t as, const cg_png_sink_t *sink, char *err, size_t errlen);

/* The palette of a palette PNG (colour type 3), from its header chunks only: *npal entries
 * (1..256) as RGB triples into pal (768 bytes); *npal = 0 for any other colour type. */
int cg_png_read_palette(const char *path, int64_t max_pixels, uint8_t *pal, int *npal, char *err,
                        size_t errlen);

/* Decodes the whole file. On success *rgb (h*w*3) / *mask (h*w, 0/1) is the caller's to free;
 * on failure it is left unchanged. */
int cg_png_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w, char *err,
                    size_t errlen);
int cg_png_read_mask(const char *path, int64_t max_pixels, uint8_t **mask, int *h, int *w,
                     char *err, size_t errlen);
/* The same as CG_PNG_AS_LABEL: *ids (h*w) holds the stored values (gray values, palette
 * indices), unchecked against any class count (the caller checks). */
int cg_png_read_labels(const char *path, int64_t max_pixels, uint8_t **ids, int *h, int *w,
                       char *err, size_t errlen);

/* Encodes px (layout given by kind) into *out (malloc'ed, the caller's) of *len bytes; name
 * labels messages. */
int cg_png_encode(const char *name, const void *px, int h, int w, cg_png_kind_t kind,
                  uint8_t **out, size_t *len, char *err, size_t errlen);

/* Writes px (layout given by kind) to path, replacing it atomically (atomic_file.h): on failure
 * a previous file at path is left as it was. */
int cg_png_write(const char *path, const void *px, int h, int w, cg_png_kind_t kind, char *err,
                 size_t errlen);

/* Writes the indices idx (h*w bytes, each < npal) as an 8-bit palette PNG whose palette is pal
 * (npal RGB triples, 1..256) as given, atomically like cg_png_write (predict's class maps). */
int cg_png_write_indexed(const char *path, const uint8_t *idx, int h, int w, const uint8_t *pal,
                         int npal, char *err, size_t errlen);

/* PASCAL VOC's colour map (its devkit's labelcolormap): entry c's colour from c's bits, three at
 * a time, from the top bit of each channel down (0 black, 1 (128, 0, 0), 2 (0, 128, 0), ...);
 * 256 RGB triples. */
void cg_png_voc_palette(uint8_t pal[768]);

#endif
