/* fit.h: the fitting rule of real data (scale the shorter side to the network's size, centre-
 * crop the longer) and the resampling it is made of, which the loader's random crop
 * (augment.c) uses too. A module of its own so that those who resample need not know about
 * sources; fit.c has the code.
 *
 * Buffers are row-major: RGB8 interleaved (h*w*3 bytes), masks one byte a pixel (h*w); the
 * caller owns and sizes them. Nothing is kept between calls: all of it is thread-safe. */
#ifndef CG_FIT_H
#define CG_FIT_H

#include <stddef.h>
#include <stdint.h>

#include "labelmap.h"

/* Resamples the window [x0, x0+ww) x [y0, y0+wh) of src (sh x sw, in pixels; pixel (x, y)
 * covers [x, x+1)) onto the whole of dst (h x w): bilinear with pixel centres aligned for RGB,
 * nearest for masks; reads outside src clamp to its border. A window equal to src at the same
 * size copies exactly. */
void cg_resample_rgb(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                     double wh, uint8_t *dst, int h, int w);
void cg_resample_mask(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                      double wh, uint8_t *dst, int h, int w);
/* The fitting rule: the centred square of side m = min(sh, sw) (offsets floor((sw-m)/2),
 * floor((sh-m)/2)) scaled to size x size, i.e. scale the shorter side to size, centre-crop the
 * longer. An image already size x size is copied unchanged. */
void cg_fit_square(const uint8_t *rgb, const uint8_t *mask, int sh, int sw, int size,
                   uint8_t *out_rgb, uint8_t *out_mask);
/* cg_fit_square of a PNG pair, decoded row by row (cg_png_read_rows) straight into out_rgb
 * (size*size*3) and out_mask (size*size): the same bytes, holding two rows of the image instead
 * of the whole of it. The image may be a JPEG (by content, image_io.h): it is decoded at the
 * smallest DCT scale M/8 that keeps both sides >= size (cg_jpeg_scale), then fitted over the
 * same window of the file, reached through the factor M/8 (so a large JPEG's bytes differ
 * slightly from a full decode + cg_fit_square, but sample the same points: the mask, fitted
 * from its full size, stays aligned). mask NULL: out_mask is zeros. expect_h/expect_w > 0: the
 * image must have that size (the one seen at start-up); the mask must have the image's. *h, *w
 * (optional) get the image's size. Returns 0, or -1 with "PATH: reason" in err (out_* then
 * undefined). Thread-safe. */
int cg_fit_png(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
               int expect_w, uint8_t *out_rgb, uint8_t *out_mask, int *h, int *w, char *err,
               size_t errlen);
/* The same with label masks (cg_source_opts_t.nclass / .ignore): nclass >= 2 or an ignore label
 * (>= nclass) reads the mask's stored values (CG_PNG_AS_LABEL: gray values, palette indices);
 * a value that is neither a class id (< nclass) nor the ignore label fails with "MASK: mask
 * value V is not a class id of --num-classes K ..."; binary with an ignore label keeps that
 * label and maps other values > 0 to 1. nclass 1 and ignore < 1: exactly cg_fit_png. */
int cg_fit_png_k(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
                 int expect_w, int nclass, int ignore, uint8_t *out_rgb, uint8_t *out_mask, int *h,
                 int *w, char *err, size_t errlen);
/* The same with --label-map (labelmap.h; NULL: none) applied to the stored values first: a value
 * the map leaves out fails naming it, and the mapped ids are checked as above (masks are then
 * read as labels even when binary). */
int cg_fit_png_map(const char *image, const char *mask, int64_t max_pixels, int size,
                   int expect_h, int expect_w, int nclass, int ignore, const cg_labelmap_t *map,
                   uint8_t *out_rgb, uint8_t *out_mask, int *h, int *w, char *err,
                   size_t errlen);

#endif
