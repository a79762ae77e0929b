/* fit.c: the fitting rule that brings real images to the network's size, and the resampling it
 * is made of (fit.h): whole images in memory (cg_resample_*, cg_fit_square, also the loader's
 * random crop) and the same rule, or a training crop's window of the whole file, streamed row by
 * row from a file (cg_fit_pair), which gives the same bytes while holding two rows of the image
 * instead of all of it.
 *
 * Both paths take their taps from lin_tap and near_tap, which is why they agree. */
#include "fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_io.h"
#include "log.h"
#include "png_io.h"

/* ---- resampling ------------------------------------------------------------------------- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Output coordinate i of n over the window [origin, origin + span) of a source axis of nsrc
 * pixels: the two bilinear taps and the weight of the second (pixel centres aligned, clamped
 * to the border), or the nearest pixel. The whole-image and the streaming paths both use these,
 * so they give the same bytes. */
static void lin_tap(double origin, double span, int i, int n, int nsrc, int *i0, int *i1,
                    float *f) {
  double u = origin + (i + 0.5) * span / n - 0.5;
  if (u < 0) u = 0;
  if (u > nsrc - 1) u = nsrc - 1;
  const int a = (int)floor(u);
  *i0 = a;
  *i1 = a + 1 < nsrc ? a + 1 : a;
  *f = (float)(u - a);
}

static int near_tap(double origin, double span, int i, int n, int nsrc) {
  return clampi((int)floor(origin + (i + 0.5) * span / n), 0, nsrc - 1);
}

/* Output coordinate i's centre in the source lies outside [0, extent): a window larger than the
 * image (a zoom-out crop) pads it. A window inside the source never is (its centres are). */
static int outside(double origin, double span, int i, int n, double extent) {
  const double p = origin + (i + 0.5) * span / n;
  return p < 0 || p >= extent;
}

/* Column taps of a bilinear resample: xi[2x], xi[2x+1], weight xf[x]. */
static void lin_cols(double x0, double ww, int w, int sw, int *xi, float *xf) {
  for (int x = 0; x < w; x++) lin_tap(x0, ww, x, w, sw, &xi[2 * x], &xi[2 * x + 1], &xf[x]);
}

/* Column taps of a nearest resample. */
static void near_cols(double x0, double ww, int w, int sw, int *xi) {
  for (int x = 0; x < w; x++) xi[x] = near_tap(x0, ww, x, w, sw);
}

/* The columns of n whose centres fall outside [0, extent) of the window [origin, origin + span)
 * get tap -1 (xi[stride x]): padding. The streamed path passes the window in the file's own
 * pixels, whatever scale the image was decoded at, so that an image and its mask (decoded at
 * different scales) pad exactly the same columns (and rows: pad_rows). */
static void pad_cols(double origin, double span, int n, double extent, int *xi, int stride) {
  for (int x = 0; x < n; x++)
    if (outside(origin, span, x, n, extent)) xi[stride * x] = -1;
}

/* A bilinear RGB resample in two halves: each source row it taps is blended along x once
 * (hblend_row, into floats), and each output row blends two such rows along y (vblend_row), a
 * loop the compiler vectorises. An upscale reads each source row for several output rows, and
 * the bytes are those of the one-pass blend: the same float expressions in the same order. */

/* Source row r blended along x: 3 floats a pixel; a padded column holds CG_CROP_PAD_RGB, which
 * the vertical blend keeps exactly. */
static void hblend_row(const uint8_t *r, const int *xi, const float *xf, float *o, int w) {
  for (int x = 0; x < w; x++) {
    float *p = o + 3 * x;
    if (xi[2 * x] < 0) {
      p[0] = p[1] = p[2] = CG_CROP_PAD_RGB;
      continue;
    }
    const int a = 3 * xi[2 * x], b = 3 * xi[2 * x + 1];
    const float f = xf[x];
    for (int k = 0; k < 3; k++) p[k] = r[a + k] + f * (float)(r[b + k] - r[a + k]);
  }
}

/* One output row of n bytes from the x-blended rows t and b, weight g of b. */
static void vblend_row(const float *t, const float *b, float g, uint8_t *o, int n) {
  for (int i = 0; i < n; i++) {
    const float val = t[i] + g * (b[i] - t[i]) + 0.5f;
    o[i] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
  }
}

/* The x-blended source rows at hand: two, by the parity of their row, since an output row's
 * taps are rows j and j + 1 (or j twice) and increase with the output row. */
typedef struct {
  float *h;   /* 2 rows of w pixels */
  int row[2]; /* the source row each holds, -1: none yet */
} hrows_t;

/* Source row j (its bytes at r), blended along x. */
static const float *hrows_get(hrows_t *c, int j, const uint8_t *r, const int *xi,
                              const float *xf, int w) {
  float *h = c->h + (size_t)(j & 1) * 3 * w;
  if (c->row[j & 1] != j) {
    hblend_row(r, xi, xf, h, w);
    c->row[j & 1] = j;
  }
  return h;
}

/* One output RGB row of w pixels from source rows j0 (bytes r0) and j1 (r1), weight g of j1. */
static void blend_row(hrows_t *c, int j0, const uint8_t *r0, int j1, const uint8_t *r1, float g,
                      const int *xi, const float *xf, uint8_t *o, int w) {
  const float *t = hrows_get(c, j0, r0, xi, xf, w), *b = hrows_get(c, j1, r1, xi, xf, w);
  vblend_row(t, b, g, o, 3 * w);
}

void cg_resample_rgb(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                     double wh, uint8_t *dst, int h, int w) {
  int *xi = cg_malloc(sizeof(int) * 2 * (size_t)w, "resample columns");
  float *xf = cg_malloc(sizeof(float) * (size_t)w, "resample weights");
  hrows_t hr = {cg_malloc(sizeof(float) * 6 * (size_t)w, "resample rows"), {-1, -1}};
  lin_cols(x0, ww, w, sw, xi, xf);
  pad_cols(x0, ww, w, sw, xi, 2);
  for (int y = 0; y < h; y++) {
    if (outside(y0, wh, y, h, sh)) {
      memset(dst + (size_t)y * w * 3, CG_CROP_PAD_RGB, (size_t)w * 3);
      continue;
    }
    int j0, j1;
    float g;
    lin_tap(y0, wh, y, h, sh, &j0, &j1, &g);
    blend_row(&hr, j0, src + (size_t)j0 * sw * 3, j1, src + (size_t)j1 * sw * 3, g, xi, xf,
              dst + (size_t)y * w * 3, w);
  }
  free(hr.h);
  free(xi);
  free(xf);
}

/* One output mask row from source row r; padded columns get pad. */
static void near_row(const uint8_t *r, const int *xi, uint8_t pad, uint8_t *o, int w) {
  for (int x = 0; x < w; x++) o[x] = xi[x] < 0 ? pad : r[xi[x]];
}

void cg_resample_mask_pad(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                          double wh, uint8_t *dst, int h, int w, uint8_t pad) {
  int *xi = cg_malloc(sizeof(int) * (size_t)w, "resample columns");
  near_cols(x0, ww, w, sw, xi);
  pad_cols(x0, ww, w, sw, xi, 1);
  for (int y = 0; y < h; y++) {
    uint8_t *o = dst + (size_t)y * w;
    if (outside(y0, wh, y, h, sh)) memset(o, pad, (size_t)w);
    else near_row(src + (size_t)near_tap(y0, wh, y, h, sh) * sw, xi, pad, o, w);
  }
  free(xi);
}

void cg_resample_mask(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                      double wh, uint8_t *dst, int h, int w) {
  cg_resample_mask_pad(src, sh, sw, x0, y0, ww, wh, dst, h, w, 0);
}

void cg_fit_square(const uint8_t *rgb, const uint8_t *mask, int sh, int sw, int size,
                   uint8_t *out_rgb, uint8_t *out_mask) {
  const int m = sh < sw ? sh : sw;
  const int x0 = (sw - m) / 2, y0 = (sh - m) / 2;
  if (m == size) { /* pure crop: copy rows */
    for (int y = 0; y < size; y++) {
      memcpy(out_rgb + (size_t)y * size * 3, rgb + ((size_t)(y + y0) * sw + x0) * 3,
             (size_t)size * 3);
      memcpy(out_mask + (size_t)y * size, mask + (size_t)(y + y0) * sw + x0, (size_t)size);
    }
    return;
  }
  cg_resample_rgb(rgb, sh, sw, x0, y0, m, m, out_rgb, size, size);
  cg_resample_mask(mask, sh, sw, x0, y0, m, m, out_mask, size, size);
}

void cg_crop_px(const cg_crop_t *win, int sh, int sw, double *x0, double *y0, double *side) {
  const int m = sh < sw ? sh : sw;
  *side = win->scale * m;
  *x0 = win->u * (sw - *side);
  *y0 = win->v * (sh - *side);
}

void cg_crop_apply(const cg_crop_t *win, int h, int w, uint8_t *rgb, uint8_t *mask,
                   uint8_t *tmp) {
  double x0, y0, side;
  cg_crop_px(win, h, w, &x0, &y0, &side);
  const size_t px = (size_t)h * w;
  cg_resample_rgb(rgb, h, w, x0, y0, side, side, tmp, h, w);
  cg_resample_mask_pad(mask, h, w, x0, y0, side, side, tmp + 3 * px, h, w, win->pad);
  memcpy(rgb, tmp, 3 * px);
  memcpy(mask, tmp + 3 * px, px);
}

/* ---- the fitting rule, streamed ----------------------------------------------------------
 * Output rows need source rows in increasing order, so each output row is made as soon as its
 * last source row arrives: bilinear RGB keeps the two latest rows (row j at parity j & 1: an
 * output row's taps are j-1 and j, or j and j), nearest masks and pure crops need only the row
 * at hand. */

typedef struct {
  int oh, ow, is_mask;    /* the output's size (size x size, or a whole record's) */
  int eh, ew;             /* the size the file must have, 0: any */
  int fh, fw;             /* the file's size (an image's from the decoder, which may scale it;
                             fit_begin sets it for a mask): outside it, padding */
  int scale;              /* image: decoded at scale/8 of the file's size (cg_jpeg_scale) */
  const char *image;      /* mask: its image's path, for the size message; NULL for the image */
  const cg_crop_t *win;   /* a training crop's window of the file; NULL: the fitting rule's */
  int whole;              /* the whole file scaled to oh x ow (no window) */
  uint8_t *out;
  int sh, sw, x0, y0;     /* set by fit_begin: decoded size; crop: the window's origin */
  int crop;               /* the window is the output, pixel for pixel: rows are copied */
  double ox, oy, sx, sy;  /* the window in decoded pixels (lin_tap, near_tap): origin, spans */
  double fx0, fy0, fsx, fsy; /* the window in the file's own pixels (padding: pad_cols/rows) */
  uint8_t pad;            /* mask: the label of padding (a window larger than the file) */
  int next;               /* next output row */
  uint8_t *keep;          /* RGB resample: 2 source rows, by parity */
  hrows_t hr;             /* RGB resample: those rows blended along x */
  int *xi;
  float *xf;
  int nclass, ignore;     /* label masks (CG_PNG_AS_LABEL): classes (1: binary) and the ignore
                             label (-1 none); see label_row */
  uint8_t *lrow;          /* label masks: the row at hand, checked and mapped */
  const cg_labelmap_t *map; /* --label-map applied first (NULL: none) */
} fit_t;

/* A label mask's row: with K >= 2 every value must be a class id (< K) or the ignore label;
 * binary (K = 1) keeps the ignore label and maps any other value > 0 to 1. */
static int label_row(const fit_t *f, const uint8_t *px, int w, char *why, size_t whylen) {
  for (int x = 0; x < w; x++) {
    const int stored = px[x];
    int v = stored;
    if (f->map) {
      if (f->map->to[v] < 0) {
        snprintf(why, whylen, "mask value %d is not in --label-map %s", v, f->map->spec);
        return -1;
      }
      v = f->map->to[v];
    }
    if (v == f->ignore) {
      f->lrow[x] = (uint8_t)v;
    } else if (f->nclass == 1) {
      f->lrow[x] = v != 0;
    } else if (v >= f->nclass) { /* the message, stored value and all, made here only */
      char was[128] = "";
      if (v != stored)
        snprintf(was, sizeof was, " (stored %d, mapped by --label-map %s)", stored, f->map->spec);
      if (f->ignore >= 0)
        snprintf(why, whylen, "mask value %d%s is not a class id of --num-classes %d (0..%d) "
                 "nor the ignore label %d", v, was, f->nclass, f->nclass - 1, f->ignore);
      else
        snprintf(why, whylen, "mask value %d%s is not a class id of --num-classes %d (0..%d)", v,
                 was, f->nclass, f->nclass - 1);
      return -1;
    } else {
      f->lrow[x] = (uint8_t)v;
    }
  }
  return 0;
}

static int fit_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  fit_t *f = ctx;
  const int fh = f->fh > 0 ? f->fh : h, fw = f->fw > 0 ? f->fw : w;
  f->fh = fh;
  f->fw = fw;
  if (f->eh > 0 && (fh != f->eh || fw != f->ew)) {
    if (f->image)
      snprintf(why, whylen, "mask is %dx%d but its image %s is %dx%d", fw, fh, f->image, f->ew,
               f->eh);
    else
      snprintf(why, whylen, "size changed since start-up: %dx%d, expected %dx%d", fw, fh, f->ew,
               f->eh);
    return -1;
  }
  f->sh = h;
  f->sw = w;
  if (f->is_mask && f->nclass > 0 && !(f->lrow = malloc((size_t)w))) {
    snprintf(why, whylen, "out of memory for the row buffers");
    return -1;
  }
  /* The window is the file's (as the mask's, fitted at full size), mapped into the decoded
   * pixels by the decoder's exact factor: a scaled JPEG's rounded-up size is not the file's
   * extent, and rounding the crop at the scale would shift the image against its mask. */
  const double s = f->scale > 0 && f->scale < 8 ? f->scale / 8.0 : 1.0;
  double x0, y0, sx, sy;
  if (f->whole) { /* the whole file */
    x0 = y0 = 0;
    sx = fw;
    sy = fh;
  } else if (f->win) {
    cg_crop_px(f->win, fh, fw, &x0, &y0, &sx);
    sy = sx;
  } else { /* the fitting rule: offsets floored, as cg_fit_square's */
    sx = sy = fh < fw ? fh : fw;
    x0 = (fw - (int)sx) / 2;
    y0 = (fh - (int)sx) / 2;
  }
  f->ox = x0 * s;
  f->oy = y0 * s;
  f->sx = sx * s;
  f->sy = sy * s;
  f->fx0 = x0;
  f->fy0 = y0;
  f->fsx = sx;
  f->fsy = sy;
  f->pad = f->win ? (uint8_t)f->win->pad : 0;
  f->crop = s == 1.0 && sx == f->ow && sy == f->oh && x0 == floor(x0) && y0 == floor(y0) &&
            x0 >= 0 && y0 >= 0 && x0 + sx <= fw && y0 + sy <= fh;
  f->x0 = (int)x0;
  f->y0 = (int)y0;
  if (f->crop) return 0;
  if (f->is_mask) {
    f->xi = malloc(sizeof(int) * (size_t)f->ow);
    if (f->xi) near_cols(f->ox, f->sx, f->ow, w, f->xi);
    if (f->xi) pad_cols(f->fx0, f->fsx, f->ow, f->fw, f->xi, 1);
  } else {
    f->xi = malloc(sizeof(int) * 2 * (size_t)f->ow);
    f->xf = malloc(sizeof(float) * (size_t)f->ow);
    f->keep = malloc((size_t)w * 3 * 2);
    f->hr = (hrows_t){malloc(sizeof(float) * 6 * (size_t)f->ow), {-1, -1}};
    if (f->xi && f->xf) lin_cols(f->ox, f->sx, f->ow, w, f->xi, f->xf);
    if (f->xi && f->xf) pad_cols(f->fx0, f->fsx, f->ow, f->fw, f->xi, 2);
  }
  if (!f->xi || (!f->is_mask && (!f->xf || !f->keep || !f->hr.h))) {
    snprintf(why, whylen, "out of memory for the row buffers");
    return -1;
  }
  return 0;
}

/* Output rows from f->next on whose centres lie above the file (top: a zoom-out window's
 * padding, made before any row is needed) or, after the last row (!top), below it: made as
 * padding (CG_CROP_PAD_RGB gray, the mask's pad label). Returns 1 when no source row makes the
 * next row: it is below the file, or every row is made (the padding made the last ones: a loop
 * on 0 would make row n, past the output). */
static int pad_rows(fit_t *f, int top) {
  const int n = f->oh;
  const size_t bpp = f->is_mask ? 1 : 3;
  while (f->next < n && outside(f->fy0, f->fsy, f->next, n, f->fh)) {
    const double p = f->fy0 + (f->next + 0.5) * f->fsy / n;
    if (top && p >= 0) return 1; /* below: only after the last row */
    memset(f->out + (size_t)f->next * f->ow * bpp, f->is_mask ? f->pad : CG_CROP_PAD_RGB,
           (size_t)f->ow * bpp);
    f->next++;
  }
  return f->next >= n;
}

static int fit_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  fit_t *f = ctx;
  if (f->lrow) { /* label mask: every source row is checked, whether the fit uses it or not */
    if (label_row(f, px, f->sw, why, whylen)) return -1;
    px = f->lrow;
  }
  const int n = f->oh, ow = f->ow;
  if (f->crop) { /* row next + y0 is output row next */
    const size_t bpp = f->is_mask ? 1 : 3;
    if (f->next < n && y == f->y0 + f->next) {
      memcpy(f->out + (size_t)f->next * ow * bpp, px + (size_t)f->x0 * bpp, (size_t)ow * bpp);
      f->next++;
    }
    return 0;
  }
  if (f->is_mask) {
    while (f->next < n && !pad_rows(f, 1)) {
      const int j = near_tap(f->oy, f->sy, f->next, n, f->sh);
      if (j > y) break;
      CG_ASSERT(j == y); /* taps increase with the output row: never behind the row at hand */
      near_row(px, f->xi, f->pad, f->out + (size_t)f->next * ow, ow);
      f->next++;
    }
    return 0;
  }
  const size_t rb = (size_t)f->sw * 3;
  memcpy(f->keep + (size_t)(y & 1) * rb, px, rb);
  while (f->next < n && !pad_rows(f, 1)) {
    int j0, j1;
    float g;
    lin_tap(f->oy, f->sy, f->next, n, f->sh, &j0, &j1, &g);
    if (j1 > y) break;
    CG_ASSERT(j1 == y && j0 >= y - 1);
    blend_row(&f->hr, j0, f->keep + (size_t)(j0 & 1) * rb, j1, f->keep + (size_t)(j1 & 1) * rb,
              g, f->xi, f->xf, f->out + (size_t)f->next * ow * 3, ow);
    f->next++;
  }
  return 0;
}

/* The least side a scaled decode must keep: the window's side must still cover the output's
 * pixels (a crop's: its scale of the shorter side). */
static int min_side(const fit_t *f) {
  const int out = f->oh < f->ow ? f->oh : f->ow;
  if (f->whole || !f->win || f->win->scale >= 1.0) return out;
  const double need = ceil(out / f->win->scale);
  return need > 1e9 ? 1000000000 : (int)need;
}

/* Decodes one file into f->out; frees f's buffers. An image may be a JPEG (by its first bytes),
 * decoded at the smallest DCT scale that still covers the fitted size; masks are PNG. */
static int fit_file(const char *path, int64_t max_pixels, cg_png_as_t as, cg_exif_t exif,
                    fit_t *f, char *err, size_t errlen) {
  cg_png_sink_t sink = {fit_begin, fit_row, f};
  int rc = as == CG_PNG_AS_RGB
               ? cg_image_read_rows(path, max_pixels, min_side(f), exif, &sink, &f->fh, &f->fw,
                                    &f->scale, err, errlen)
               : cg_image_read_mask_rows(path, max_pixels, as, &sink, err, errlen);
  if (!rc && !f->crop) pad_rows(f, 0); /* a zoom-out window's rows below the file */
  free(f->keep);
  free(f->hr.h);
  free(f->xi);
  free(f->xf);
  free(f->lrow);
  if (!rc && f->next != f->oh) {
    snprintf(err, errlen, "%s: internal error: %d of %d fitted rows made", path, f->next, f->oh);
    rc = -1;
  }
  return rc;
}

int cg_fit_png(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
               int expect_w, uint8_t *out_rgb, uint8_t *out_mask, int *h, int *w, char *err,
               size_t errlen) {
  const cg_fit_opts_t o = {.size = size, .max_pixels = max_pixels, .expect_h = expect_h,
                           .expect_w = expect_w, .nclass = 1, .ignore = -1};
  return cg_fit_pair(image, mask, &o, out_rgb, out_mask, h, w, err, errlen);
}

void cg_fit_whole_size(int h, int w, int size, int *oh, int *ow) {
  cg_fit_view_size(h, w, size, oh, ow);
  long long cap = (long long)CG_FIT_WHOLE_MAX_ASPECT * size;
  if (cap > CG_PNG_MAX_SIDE) cap = CG_PNG_MAX_SIDE;
  int *longer = h < w ? ow : oh;
  if (*longer > cap) *longer = (int)cap;
}

void cg_fit_view_size(int h, int w, int size, int *oh, int *ow) {
  const int shorter = h < w ? h : w, longer = h < w ? w : h;
  long long l = llround((double)longer * size / shorter);
  if (l < size) l = size;
  if (l > (1 << 30)) l = 1 << 30;
  *oh = h < w ? size : (int)l;
  *ow = h < w ? (int)l : size;
}

int cg_fit_pair(const char *image, const char *mask, const cg_fit_opts_t *o, uint8_t *out_rgb,
                uint8_t *out_mask, int *h, int *w, char *err, size_t errlen) {
  CG_ASSERT(o->size >= 1 &&
            (!o->win || (o->win->scale > 0 && o->win->scale <= CG_CROP_SCALE_MAX)));
  const int whole = o->out_h > 0 && o->out_w > 0;
  CG_ASSERT(!whole || !o->win);
  const int oh = whole ? o->out_h : o->size, ow = whole ? o->out_w : o->size;
  fit_t fi = {.oh = oh, .ow = ow, .eh = o->expect_h, .ew = o->expect_w, .win = o->win,
              .whole = whole, .out = out_rgb};
  if (!out_rgb) { /* the mask alone: the image's size is the one seen at start-up */
    CG_ASSERT(o->win && !whole);
    fi.fh = o->expect_h;
    fi.fw = o->expect_w;
  } else if (fit_file(image, o->max_pixels, CG_PNG_AS_RGB, o->exif, &fi, err, errlen)) {
    return -1;
  }
  if (h) *h = fi.fh;
  if (w) *w = fi.fw;
  /* the mask's own size: the whole file onto itself, rows copied (fit_begin's crop) */
  const int native = whole && o->mask_native;
  CG_ASSERT(!native || (o->expect_h == fi.fh && o->expect_w == fi.fw));
  const int mh = native ? fi.fh : oh, mw = native ? fi.fw : ow;
  if (!mask) {
    if (out_mask) memset(out_mask, 0, (size_t)mh * mw);
    return 0;
  }
  fit_t fm = {.oh = mh, .ow = mw, .is_mask = 1, .eh = fi.fh, .ew = fi.fw,
              .image = out_rgb ? image : NULL, /* mask alone: the size seen at start-up */
              .win = o->win, .whole = whole, .out = out_mask};
  int nclass = o->nclass < 1 ? 1 : o->nclass, ignore = o->ignore;
  if (ignore < nclass) ignore = -1; /* a class id is never the ignore label */
  if (nclass == 1 && ignore < 0 && !o->map) /* binary: any value > 0 (any colour) is foreground */
    return fit_file(mask, o->max_pixels, CG_PNG_AS_MASK, CG_EXIF_STORED, &fm, err, errlen);
  fm.nclass = nclass;
  fm.ignore = ignore;
  fm.map = o->map;
  return fit_file(mask, o->max_pixels, CG_PNG_AS_LABEL, CG_EXIF_STORED, &fm, err, errlen);
}
