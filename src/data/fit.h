/* fit.h: the fitting rule of real data (scale the shorter side to the network's size, centre-
 * crop the longer), the training crop windows (cg_crop_t, drawn by augment.c) and the
 * resampling both are made of. A module of its own so that those who resample need not know about
 * sources; fit.c has the code.
 *
 * Buffers are row-major: RGB8 interleaved (h*w*3 bytes), masks one byte a pixel (h*w); the
 * caller owns and sizes them. Nothing is kept between calls: all of it is thread-safe. */
#ifndef CG_FIT_H
#define CG_FIT_H

#include <stddef.h>
#include <stdint.h>

#include "jpeg_io.h"  /* cg_exif_t */
#include "labelmap.h"

/* Resamples the window [x0, x0+ww) x [y0, y0+wh) of src (sh x sw, in pixels; pixel (x, y)
 * covers [x, x+1)) onto the whole of dst (h x w): bilinear with pixel centres aligned for RGB,
 * nearest for masks; taps outside src clamp to its border. A window equal to src at the same
 * size copies exactly. An output pixel whose centre falls outside src (a window reaching past
 * it: a zoom-out crop) is padding: CG_CROP_PAD_RGB gray, and the mask value pad
 * (cg_resample_mask: 0). */
void cg_resample_rgb(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                     double wh, uint8_t *dst, int h, int w);
void cg_resample_mask(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                      double wh, uint8_t *dst, int h, int w);
void cg_resample_mask_pad(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                          double wh, uint8_t *dst, int h, int w, uint8_t pad);
/* The fitting rule: the centred square of side m = min(sh, sw) (offsets floor((sw-m)/2),
 * floor((sh-m)/2)) scaled to size x size, i.e. scale the shorter side to size, centre-crop the
 * longer. An image already size x size is copied unchanged. */
void cg_fit_square(const uint8_t *rgb, const uint8_t *mask, int sh, int sw, int size,
                   uint8_t *out_rgb, uint8_t *out_mask);
/* A square window of a sample: side = scale x its shorter side (0 < scale <= CG_CROP_SCALE_MAX),
 * the origin at the fractions (u, v) in [0, 1] of the room left on each axis (0: left / top, 1:
 * right / bottom). A training crop is one (augment.h); scale 1 with u = v = 0.5 is the fitting
 * rule's centred square up to its rounding (cg_fit_square floors the offsets). A scale above 1
 * zooms out: the window is larger than the sample on its shorter axis (and maybe the longer),
 * the room left there is negative, so (u, v) place the sample inside the window, and the part
 * of the window outside the sample is padding: CG_CROP_PAD_RGB gray pixels (0.0078 after the
 * input normalisation (v / 255 - 0.5) / 0.25: mmsegmentation pads with 0 after its Normalize),
 * mask value pad (the ignore label, as mmsegmentation pads its masks with 255). */
#define CG_CROP_SCALE_MAX 4.0
#define CG_CROP_PAD_RGB 128
typedef struct {
  double scale, u, v;
  int pad; /* 0..255: the mask value of padding */
} cg_crop_t;

/* win over a sample of sh x sw pixels: *x0, *y0 the origin and *side the side, in pixels. */
void cg_crop_px(const cg_crop_t *win, int sh, int sw, double *x0, double *y0, double *side);
/* A sample already h x w, in place: the window resampled back to h x w (bilinear RGB, nearest
 * mask; cg_resample_*). tmp: h*w*4 bytes of scratch. */
void cg_crop_apply(const cg_crop_t *win, int h, int w, uint8_t *rgb, uint8_t *mask,
                   uint8_t *tmp);

/* How cg_fit_pair reads a pair. */
typedef struct {
  int size;               /* the fitted sample is size x size */
  int64_t max_pixels;     /* an image (or mask) of more pixels fails (<= 0: no limit) */
  int expect_h, expect_w; /* > 0: the image must have that size (the one seen at start-up) */
  int nclass, ignore;     /* label masks: see cg_fit_pair; 1 and -1 (or 0s): binary */
  const cg_labelmap_t *map; /* --label-map applied to the stored values first; NULL: none */
  const cg_crop_t *win;   /* NULL: the fitting rule (cg_fit_square's centred square); else
                             this window of the whole file, resampled to size x size */
  int out_h, out_w;       /* > 0 (no win): instead, the whole file scaled to out_h x out_w
                             (cg_fit_whole_size): a shard's whole record (pack --store whole) */
  int mask_native;        /* with out_h, out_w: the mask at the file's own size instead (out_mask
                             expect_h*expect_w bytes, pixel for pixel, labels read as below): the
                             ground truth a full-resolution score (--val-mode full) needs */
  cg_exif_t exif;         /* a JPEG image's EXIF orientation applied or not (masks: as stored) */
} cg_fit_opts_t;

/* The size of a whole h x w image scaled so that its shorter side is size: *oh x *ow, the longer
 * side rounded (at least size, at most CG_FIT_WHOLE_MAX_ASPECT x size and CG_PNG_MAX_SIDE: a
 * longer strip is squeezed to that). */
#define CG_FIT_WHOLE_MAX_ASPECT 64
void cg_fit_whole_size(int h, int w, int size, int *oh, int *ow);
/* The same with the aspect kept whatever it is (predict --resize fit's view of an image, and
 * --val-mode full's): the longer side llround(longer x size / shorter), at least size, at most
 * 2^30 (the caller checks the pixels against its limit). */
void cg_fit_view_size(int h, int w, int size, int *oh, int *ow);

/* cg_fit_square of an image file pair, decoded row by row (cg_image_read_rows) straight into
 * out_rgb (size*size*3) and out_mask (size*size): the same bytes, holding two rows of the image
 * instead of the whole of it. The image may be a JPEG (by content, image_io.h): it is decoded at
 * the smallest DCT scale M/8 that keeps both sides of the window >= size (cg_jpeg_scale), then
 * fitted over the same window of the file, reached through the factor M/8 (so a large JPEG's bytes
 * differ slightly from a full decode + cg_fit_square, but sample the same points: the mask, fitted
 * from its full size, stays aligned). mask NULL: out_mask (if not NULL) is zeros. The mask must
 * have the image's size. With o->win the window is o->win's over the whole file (a training crop:
 * cg_crop_px at the file's size), and the bytes are those of a whole decode + cg_resample_* over
 * it; with o->out_h, o->out_w the whole file is resampled to that size (out_rgb out_h*out_w*3
 * bytes, out_mask out_h*out_w), as cg_resample_* over [0, w) x [0, h). Label masks: nclass >= 2 or
 * an ignore label (>= nclass) reads the mask's stored values (CG_PNG_AS_LABEL: gray values,
 * palette indices), after o->map; a value that is neither a class id (< nclass) nor the ignore
 * label fails with "MASK: mask value V is not a class id of --num-classes K ..." (a value the map
 * leaves out: "... is not in --label-map SPEC"); binary with an ignore label keeps that label and
 * maps other values > 0 to 1; with a map the masks are read as labels even when binary. *h, *w
 * (optional) get the image's size. out_rgb NULL (with o->win): the mask alone, the image file
 * not read (its size is o->expect_h x o->expect_w, when given, which the mask must have; *h, *w
 * get those): a training crop's labels, checked before its image is decoded
 * (--crop-cat-max). Returns 0, or -1 with "PATH: reason" in err (out_* then undefined).
 * Thread-safe. */
int cg_fit_pair(const char *image, const char *mask, const cg_fit_opts_t *o, uint8_t *out_rgb,
                uint8_t *out_mask, int *h, int *w, char *err, size_t errlen);
/* cg_fit_pair with binary masks, the fitting rule and no map. */
int cg_fit_png(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
               int expect_w, uint8_t *out_rgb, uint8_t *out_mask, int *h, int *w, char *err,
               size_t errlen);

#endif
