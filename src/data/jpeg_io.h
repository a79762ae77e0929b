/* jpeg_io.h: reading and writing JPEG files through libjpeg-turbo (the libjpeg API).
 *
 * Reading returns RGB8 rows (w*3 bytes, interleaved) whatever the file holds: gray is
 * replicated to R=G=B by libjpeg (out_color_space JCS_RGB), YCbCr is converted by libjpeg with
 * its defaults (islow IDCT, fancy upsampling: the pixels `djpeg -rgb` prints), CMYK and YCCK
 * (Adobe) files are decoded as CMYK and converted here (R = C*K/255 for Adobe's inverted
 * CMYK, (255-C)*(255-K)/255 otherwise; likewise G from M, B from Y). Baseline, progressive,
 * arithmetic-coded files and restart markers are all libjpeg's.
 *
 * Hardening, as for PNG (png_io.h): the pixel limit is checked from the frame header (SOF)
 * before libjpeg allocates anything for the pixels; rows are handed to the caller's sink one
 * at a time (memory: libjpeg's band of one MCU row, or its coefficient buffer for progressive
 * files, bounded by the pixel limit). libjpeg's fatal errors longjmp back here (never exit());
 * a truncated or corrupt file is an error "PATH: JPEG decode failed: <libjpeg's reason>" even
 * where libjpeg alone would only warn and pad (premature end of file, premature end of a data
 * segment, lost sync); harmless warnings (extraneous bytes between markers) are ignored. A
 * progressive file of more than 500 scans is refused (decoding time grows with the scans).
 *
 * Return values: 0, or -1 with a one-line message in err that names the file (or the record
 * name given for data in memory). Returned buffers are malloc'ed and the caller's. Every
 * function is thread-safe. Without libjpeg (COGPU_HAVE_JPEG undefined) every function returns
 * -1 with "built without libjpeg". */
#ifndef CG_JPEG_IO_H
#define CG_JPEG_IO_H

#include <stddef.h>
#include <stdint.h>

#include "png_io.h" /* cg_png_sink_t: the same row sink for both decoders */

/* 1 when the n bytes at p start like a JPEG file (SOI marker then another marker). */
int cg_jpeg_sniff(const uint8_t *p, size_t n);

/* What is made of a file's EXIF orientation (cg_jpeg_exif_orientation). CG_EXIF_STORED: nothing,
 * the pixels as stored (PIL's Image.open, torchvision's decode_jpeg). CG_EXIF_APPLY: the image
 * turned and mirrored as a viewer shows it, and as a labelling tool drawing a mask over it sees
 * it (PIL's ImageOps.exif_transpose; OpenCV's imread): sizes, rows and DCT scaling are those of
 * the turned image. Files only: a JPEG in memory (a shard's record, already turned when it was
 * packed) is read as stored. */
typedef enum { CG_EXIF_STORED = 0, CG_EXIF_APPLY = 1 } cg_exif_t;

/* Width and height from the frame header only (no pixel is decoded), as stored. */
int cg_jpeg_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                      size_t errlen);
/* The same as exif reads it (turned: sides swapped for orientations 5..8), and *orient
 * (optional) the file's EXIF orientation (0 without one). */
int cg_jpeg_read_header(const char *path, int64_t max_pixels, cg_exif_t exif, int *h, int *w,
                        int *orient, char *err, size_t errlen);

/* The orientation (TIFF tag 274, 1..8: 1 as stored, 3 turned 180 degrees, 6 and 8 turned a
 * quarter, 2, 4, 5, 7 mirrored) that an APP1 segment's n bytes at p ("Exif\0\0", then a TIFF
 * header and IFD0) hold; 0 when they hold none, or are not EXIF, or are malformed. Reads only
 * inside p[0..n), whatever the bytes. */
int cg_jpeg_exif_orientation(const uint8_t *p, size_t n);

/* The M of the DCT scale M/8 cg_jpeg_read_rows uses for an h x w file and min_side: the
 * smallest M in 1..8 with both h * M / 8 and w * M / 8 >= min_side (exactly, not rounded up:
 * the scaled image never has fewer pixels across than min_side); 8 when min_side <= 0. Output
 * pixel k of a side then covers the file's [k * 8 / M, (k + 1) * 8 / M): a scaled decode is
 * fitted in the file's coordinates through this factor, not through its rounded-up size. */
int cg_jpeg_scale(int h, int w, int min_side);

/* How cg_jpeg_read_rows reads (in), and what it found (out, set before sink->begin runs). */
typedef struct {
  int64_t max_pixels; /* in: the pixel limit (<= 0: none) */
  int min_side;       /* in: > 0 enables DCT scaling (below); <= 0: full size */
  cg_exif_t exif;     /* in: the EXIF orientation applied or not (a file's only) */
  int full_h, full_w; /* out: the file's size (turned, as exif reads it) */
  int scale;          /* out: the M of the scale M/8 decoded at */
  int orient;         /* out: the file's EXIF orientation (0: none, or data in memory) */
} cg_jpeg_read_t;

/* Decodes a JPEG row by row into sink (RGB8 rows). The input is the file `name`, or, when mem
 * is not NULL, the len bytes at mem (name then only labels messages). r->min_side > 0 enables
 * libjpeg's DCT scaling: the image is decoded at the scale M/8 of cg_jpeg_scale, so a
 * 4000x3000 photo for a 256 network decodes at 1/8 (500x375, libjpeg rounding sides up) in
 * about a tenth of the time. A turned image (CG_EXIF_APPLY, orientation 2..8) is decoded whole,
 * then handed out as turned, at the least M >= cg_jpeg_scale's that divides each mirrored side
 * exactly (side x M a multiple of 8: a scaled pixel mirrored covers the same part of the file;
 * 8 at worst, a full decode). sink->begin gets the decoded (scaled, turned) size. */
int cg_jpeg_read_rows(const char *name, const uint8_t *mem, size_t len, cg_jpeg_read_t *r,
                      const cg_png_sink_t *sink, char *err, size_t errlen);

/* The whole image at full size, as stored: *rgb (h*w*3) is the caller's to free. */
int cg_jpeg_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w,
                     char *err, size_t errlen);

/* Encodes RGB8 pixels (h*w*3) as a baseline JPEG of the given quality (1..100, 4:2:0 chroma,
 * libjpeg's defaults otherwise) into *out (malloc'ed, the caller's) of *len bytes. name only
 * labels messages. */
int cg_jpeg_encode(const char *name, const uint8_t *rgb, int h, int w, int quality, uint8_t **out,
                   size_t *len, char *err, size_t errlen);

/* cg_jpeg_encode written to path atomically (atomic_file.h). */
int cg_jpeg_write(const char *path, const uint8_t *rgb, int h, int w, int quality, char *err,
                  size_t errlen);

#endif
