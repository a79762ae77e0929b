/* source_png.c: a directory of images (PNG or JPEG) and PNG masks as a sample source, and the
 * resampling rule that fits real images to the network's size (see source.h).
 *
 * Layout: IMAGES/NAME.png, NAME.jpg or NAME.jpeg pairs with MASKS/NAME.png (extensions in any
 * letter case; names that start with '.', other extensions and non-regular files are ignored).
 * An image is decoded by its content (image_io.h), so a JPEG named .png still reads. Every
 * image needs its mask and every mask its image; two files whose names differ only in the
 * extension are an error. Opening lists both directories, sorts by NAME (strcmp: independent of
 * the locale and of readdir order), and reads the header (PNG IHDR, JPEG SOF) of every file to
 * check that it decodes within the pixel limit and that image and mask have the same size (a pair that fails is a bad
 * sample: left out with skip_bad, else the open fails). load() decodes both files row by row
 * straight into the fitted sample (cg_fit_png): a helper holds two rows of an image, not the
 * image, so memory per helper does not depend on the files' sizes. Nothing is shared between
 * calls, so loads run in parallel. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "image_io.h"
#include "log.h"
#include "png_io.h"
#include "source.h"

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

/* Column taps of a bilinear resample: xi[2x], xi[2x+1], weight xf[x]. */
static void lin_cols(double x0, double ww, int w, int sw, int *xi, float *xf) {
  for (int x = 0; x < w; x++) lin_tap(x0, ww, x, w, sw, &xi[2 * x], &xi[2 * x + 1], &xf[x]);
}

/* One output RGB row from source rows r0, r1 (weight g of r1). */
static void blend_row(const uint8_t *r0, const uint8_t *r1, float g, const int *xi,
                      const float *xf, uint8_t *o, int w) {
  for (int x = 0; x < w; x++) {
    const int a = 3 * xi[2 * x], b = 3 * xi[2 * x + 1];
    const float f = xf[x];
    for (int k = 0; k < 3; k++) {
      float top = r0[a + k] + f * (float)(r0[b + k] - r0[a + k]);
      float bot = r1[a + k] + f * (float)(r1[b + k] - r1[a + k]);
      float val = top + g * (bot - top) + 0.5f;
      o[3 * x + k] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
    }
  }
}

void cg_resample_rgb(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                     double wh, uint8_t *dst, int h, int w) {
  int *xi = cg_malloc(sizeof(int) * 2 * (size_t)w, "resample columns");
  float *xf = cg_malloc(sizeof(float) * (size_t)w, "resample weights");
  lin_cols(x0, ww, w, sw, xi, xf);
  for (int y = 0; y < h; y++) {
    int j0, j1;
    float g;
    lin_tap(y0, wh, y, h, sh, &j0, &j1, &g);
    blend_row(src + (size_t)j0 * sw * 3, src + (size_t)j1 * sw * 3, g, xi, xf,
              dst + (size_t)y * w * 3, w);
  }
  free(xi);
  free(xf);
}

void cg_resample_mask(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                      double wh, uint8_t *dst, int h, int w) {
  int *xi = cg_malloc(sizeof(int) * (size_t)w, "resample columns");
  for (int x = 0; x < w; x++) xi[x] = near_tap(x0, ww, x, w, sw);
  for (int y = 0; y < h; y++) {
    const uint8_t *r = src + (size_t)near_tap(y0, wh, y, h, sh) * sw;
    uint8_t *o = dst + (size_t)y * w;
    for (int x = 0; x < w; x++) o[x] = r[xi[x]];
  }
  free(xi);
}

void cg_fit_square(const uint8_t *rgb, const uint8_t *mask, int sh, int sw, int size,
                   uint8_t *out_rgb, uint8_t *out_mask) {
  const int m = sh < sw ? sh : sw;
  const int x0 = (sw - m) / 2, y0 = (sh - m) / 2;
  if (m == size) { /* pure crop: copy rows */
    for (int y = 0; y < size; y++) {
      memcpy(out_rgb + (size_t)y * size * 3, rgb + ((size_t)(y + y0) * sw + x0) * 3, (size_t)size * 3);
      memcpy(out_mask + (size_t)y * size, mask + (size_t)(y + y0) * sw + x0, (size_t)size);
    }
    return;
  }
  cg_resample_rgb(rgb, sh, sw, x0, y0, m, m, out_rgb, size, size);
  cg_resample_mask(mask, sh, sw, x0, y0, m, m, out_mask, size, size);
}

/* ---- the fitting rule, streamed ----------------------------------------------------------
 * Output rows need source rows in increasing order, so each output row is made as soon as its
 * last source row arrives: bilinear RGB keeps the two latest rows (row j at parity j & 1: an
 * output row's taps are j-1 and j, or j and j), nearest masks and pure crops need only the row
 * at hand. */

typedef struct {
  int size, is_mask;
  int eh, ew;             /* the size the file must have, 0: any */
  int fh, fw;             /* image: the file's size (the decoder may scale it), else 0 */
  int scale;              /* image: decoded at scale/8 of the file's size (cg_jpeg_scale) */
  const char *image;      /* mask: its image's path, for the size message; NULL for the image */
  uint8_t *out;
  int sh, sw, m, x0, y0;  /* set by fit_begin: decoded size, the file's window (m: side) */
  int crop;               /* the window is the output, pixel for pixel: rows are copied */
  double ox, oy, span;    /* the window in decoded pixels (lin_tap, near_tap) */
  int next;               /* next output row */
  uint8_t *keep;          /* RGB resample: 2 source rows */
  int *xi;
  float *xf;
  int nclass, ignore;     /* label masks (CG_PNG_AS_LABEL): classes (1: binary) and the ignore
                             label (-1 none); see label_row */
  uint8_t *lrow;          /* label masks: the row at hand, checked and mapped */
} fit_t;

/* A label mask's row: with K >= 2 every value must be a class id (< K) or the ignore label;
 * binary (K = 1) keeps the ignore label and maps any other value > 0 to 1. */
static int label_row(const fit_t *f, const uint8_t *px, int w, char *why, size_t whylen) {
  for (int x = 0; x < w; x++) {
    const int v = px[x];
    if (v == f->ignore) {
      f->lrow[x] = (uint8_t)v;
    } else if (f->nclass == 1) {
      f->lrow[x] = v != 0;
    } else if (v >= f->nclass) {
      if (f->ignore >= 0)
        snprintf(why, whylen, "mask value %d is not a class id of --num-classes %d (0..%d) nor "
                 "the ignore label %d", v, f->nclass, f->nclass - 1, f->ignore);
      else
        snprintf(why, whylen, "mask value %d is not a class id of --num-classes %d (0..%d)", v,
                 f->nclass, f->nclass - 1);
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
  if (f->eh > 0 && (fh != f->eh || fw != f->ew)) {
    if (f->image)
      snprintf(why, whylen, "mask is %dx%d but its image %s is %dx%d", fw, fh, f->image, f->ew, f->eh);
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
  f->m = fh < fw ? fh : fw;
  f->x0 = (fw - f->m) / 2;
  f->y0 = (fh - f->m) / 2;
  f->ox = f->x0 * s;
  f->oy = f->y0 * s;
  f->span = f->m * s;
  f->crop = s == 1.0 && f->m == f->size;
  if (f->crop) return 0;
  if (f->is_mask) {
    f->xi = malloc(sizeof(int) * (size_t)f->size);
    if (f->xi)
      for (int x = 0; x < f->size; x++) f->xi[x] = near_tap(f->ox, f->span, x, f->size, w);
  } else {
    f->xi = malloc(sizeof(int) * 2 * (size_t)f->size);
    f->xf = malloc(sizeof(float) * (size_t)f->size);
    f->keep = malloc((size_t)w * 3 * 2);
    if (f->xi && f->xf) lin_cols(f->ox, f->span, f->size, w, f->xi, f->xf);
  }
  if (!f->xi || (!f->is_mask && (!f->xf || !f->keep))) {
    snprintf(why, whylen, "out of memory for the row buffers");
    return -1;
  }
  return 0;
}

static int fit_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  fit_t *f = ctx;
  if (f->lrow) { /* label mask: every source row is checked, whether the fit uses it or not */
    if (label_row(f, px, f->sw, why, whylen)) return -1;
    px = f->lrow;
  }
  const int n = f->size;
  if (f->crop) { /* row next + y0 is output row next */
    const size_t bpp = f->is_mask ? 1 : 3;
    if (f->next < n && y == f->y0 + f->next) {
      memcpy(f->out + (size_t)f->next * n * bpp, px + (size_t)f->x0 * bpp, (size_t)n * bpp);
      f->next++;
    }
    return 0;
  }
  if (f->is_mask) {
    while (f->next < n) {
      const int j = near_tap(f->oy, f->span, f->next, n, f->sh);
      if (j > y) break;
      CG_ASSERT(j == y); /* taps increase with the output row: never behind the row at hand */
      uint8_t *o = f->out + (size_t)f->next * n;
      for (int x = 0; x < n; x++) o[x] = px[f->xi[x]];
      f->next++;
    }
    return 0;
  }
  const size_t rb = (size_t)f->sw * 3;
  memcpy(f->keep + (size_t)(y & 1) * rb, px, rb);
  while (f->next < n) {
    int j0, j1;
    float g;
    lin_tap(f->oy, f->span, f->next, n, f->sh, &j0, &j1, &g);
    if (j1 > y) break;
    CG_ASSERT(j1 == y && j0 >= y - 1);
    blend_row(f->keep + (size_t)(j0 & 1) * rb, f->keep + (size_t)(j1 & 1) * rb, g, f->xi, f->xf,
              f->out + (size_t)f->next * n * 3, n);
    f->next++;
  }
  return 0;
}

/* Decodes one file into f->out; frees f's buffers. An image may be a JPEG (by its first bytes),
 * decoded at the smallest DCT scale that still covers the fitted size; masks are PNG. */
static int fit_file(const char *path, int64_t max_pixels, cg_png_as_t as, fit_t *f, char *err,
                    size_t errlen) {
  cg_png_sink_t sink = {fit_begin, fit_row, f};
  int rc = as == CG_PNG_AS_RGB
               ? cg_image_read_rows(path, max_pixels, f->size, &sink, &f->fh, &f->fw, &f->scale,
                                    err, errlen)
               : cg_png_read_rows(path, max_pixels, as, &sink, err, errlen);
  free(f->keep);
  free(f->xi);
  free(f->xf);
  free(f->lrow);
  if (!rc && f->next != f->size) {
    snprintf(err, errlen, "%s: internal error: %d of %d fitted rows made", path, f->next, f->size);
    rc = -1;
  }
  return rc;
}

int cg_fit_png(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
               int expect_w, uint8_t *out_rgb, uint8_t *out_mask, int *h, int *w, char *err,
               size_t errlen) {
  return cg_fit_png_k(image, mask, max_pixels, size, expect_h, expect_w, 1, -1, out_rgb, out_mask,
                      h, w, err, errlen);
}

int cg_fit_png_k(const char *image, const char *mask, int64_t max_pixels, int size, int expect_h,
                 int expect_w, int nclass, int ignore, uint8_t *out_rgb, uint8_t *out_mask, int *h,
                 int *w, char *err, size_t errlen) {
  fit_t fi = {.size = size, .eh = expect_h, .ew = expect_w, .out = out_rgb};
  if (fit_file(image, max_pixels, CG_PNG_AS_RGB, &fi, err, errlen)) return -1;
  if (h) *h = fi.fh;
  if (w) *w = fi.fw;
  if (!mask) {
    memset(out_mask, 0, (size_t)size * size);
    return 0;
  }
  fit_t fm = {.size = size, .is_mask = 1, .eh = fi.fh, .ew = fi.fw, .image = image,
              .out = out_mask};
  if (nclass < 1) nclass = 1;
  if (ignore < nclass) ignore = -1; /* a class id is never the ignore label */
  if (nclass == 1 && ignore < 0) /* binary: any value > 0 (any colour) is foreground */
    return fit_file(mask, max_pixels, CG_PNG_AS_MASK, &fm, err, errlen);
  fm.nclass = nclass;
  fm.ignore = ignore;
  return fit_file(mask, max_pixels, CG_PNG_AS_LABEL, &fm, err, errlen);
}

/* ---- the source ------------------------------------------------------------------------- */

typedef struct {
  char *image, *mask; /* paths */
  int h, w;           /* from IHDR at open */
} pair_t;

typedef struct {
  cg_source_t base;
  int size;
  int64_t max_pixels;
  pair_t *pairs;
  char **names; /* NAME of each pair: base.names */
  char **why;          /* the (first) pairs left out: base.dropped_why, NULL-terminated */
  size_t nwhy;
  int all_why;         /* cg_source_opts_t.all_why */
  int nclass, ignore;  /* masks as labels (cg_fit_png_k) */
  uint8_t pal[768];    /* the first mask's palette (base.palette) */
} png_source_t;

typedef struct {
  char **files; /* file names, sorted by stem */
  size_t n, cap;
} listing_t;

/* NAME's length without its extension (listed names have one of cg_image_has_ext's). */
static size_t stem_len(const char *f) {
  size_t n = strlen(f);
  cg_image_has_ext(f, &n);
  return n;
}

static int has_png_ext(const char *f) {
  size_t n = strlen(f);
  return n > 4 && f[0] != '.' && strcasecmp(f + n - 4, ".png") == 0;
}

/* Compares by stem, then by the whole name (so equal stems sit together). */
static int cmp_stem(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  size_t nx = stem_len(x), ny = stem_len(y), n = nx < ny ? nx : ny;
  int c = memcmp(x, y, n);
  if (c) return c;
  if (nx != ny) return nx < ny ? -1 : 1;
  return strcmp(x, y);
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = cg_malloc(n, "path");
  size_t d = strlen(dir);
  snprintf(p, n, "%s%s%s", dir, d && dir[d - 1] == '/' ? "" : "/", name);
  return p;
}

static void listing_free(listing_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->files[i]);
  free(l->files);
  memset(l, 0, sizeof *l);
}

/* Lists dir's *.png regular files (images: also *.jpg, *.jpeg) sorted by stem. */
static int list_files(const char *dir, int images, listing_t *l, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
    return -1;
  }
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (!(images ? cg_image_has_ext(e->d_name, NULL) : has_png_ext(e->d_name))) continue;
    if (e->d_type != DT_REG) {
      if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) continue;
      char *p = join(dir, e->d_name);
      struct stat st;
      const int found = stat(p, &st) == 0, why = errno;
      if (!found && lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) { /* not "missing" later on */
        snprintf(err, errlen, "%s: a symbolic link to nothing usable (%s)", p, strerror(why));
        free(p);
        closedir(d);
        listing_free(l);
        return -1;
      }
      const int reg = found && S_ISREG(st.st_mode);
      free(p);
      errno = 0; /* stat's, not readdir's: the loop's end tests readdir's */
      if (!reg) continue;
    }
    if (l->n == l->cap) {
      l->cap = l->cap ? 2 * l->cap : 64;
      char **nf = realloc(l->files, l->cap * sizeof *nf);
      if (!nf) CG_FATAL("out of memory listing %s", dir);
      l->files = nf;
    }
    l->files[l->n] = strdup(e->d_name);
    if (!l->files[l->n]) CG_FATAL("out of memory listing %s", dir);
    l->n++;
    errno = 0;
  }
  int rerr = errno;
  closedir(d);
  if (rerr) {
    snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(rerr));
    listing_free(l);
    return -1;
  }
  if (l->n) qsort(l->files, l->n, sizeof *l->files, cmp_stem);
  for (size_t i = 1; i < l->n; i++)
    if (stem_len(l->files[i]) == stem_len(l->files[i - 1]) &&
        !memcmp(l->files[i], l->files[i - 1], stem_len(l->files[i]))) {
      snprintf(err, errlen, "%s: %s and %s have the same name", dir, l->files[i - 1], l->files[i]);
      listing_free(l);
      return -1;
    }
  return 0;
}

static int png_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                    size_t errlen) {
  png_source_t *ps = (png_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  const pair_t *p = &ps->pairs[index];
  return cg_fit_png_k(p->image, p->mask, ps->max_pixels, ps->size, p->h, p->w, ps->nclass,
                      ps->ignore, rgb, mask, NULL, NULL, err, errlen);
}

static void png_destroy(cg_source_t *s) {
  png_source_t *ps = (png_source_t *)s;
  for (int64_t i = 0; i < s->count; i++) {
    free(ps->names[i]);
    free(ps->pairs[i].image);
    free(ps->pairs[i].mask);
  }
  for (size_t i = 0; i < ps->nwhy; i++) free(ps->why[i]);
  free(ps->why);
  free(ps->pairs);
  free(ps->names);
  free(ps);
}

static const cg_source_ops_t png_ops = {"png", png_load, png_destroy};

int cg_source_png_image(const cg_source_t *s, int64_t index, const char **path, int *h, int *w) {
  if (s->ops != &png_ops || index < 0 || index >= s->count) return -1;
  const pair_t *p = &((const png_source_t *)s)->pairs[index];
  *path = p->image;
  *h = p->h;
  *w = p->w;
  return 0;
}

/* The start-up check of one pair: both headers (within the pixel limit), equal sizes. */
static int check_pair(pair_t *p, int64_t max_pixels, char *err, size_t errlen) {
  int mh, mw;
  if (cg_image_read_size(p->image, max_pixels, &p->h, &p->w, err, errlen)) return -1;
  if (cg_png_read_size(p->mask, max_pixels, &mh, &mw, err, errlen)) return -1;
  if (mh != p->h || mw != p->w) {
    /* sides swapped on a JPEG: likely a camera photo whose EXIF orientation a viewer (and the
     * tool that drew the mask) applied; it is not applied here, as PIL's Image.open does not */
    const int exif = mh == p->w && mw == p->h && cg_image_is_jpeg(p->image);
    snprintf(err, errlen, "%s: mask is %dx%d but its image %s is %dx%d%s", p->mask, mw, mh,
             p->image, p->w, p->h, exif ? " (sides swapped: an EXIF orientation? it is ignored, as "
             "by PIL without ImageOps.exif_transpose; save the image upright)" : "");
    return -1;
  }
  return 0;
}

/* Leaves the last pair out (skip_bad): counted, its reason kept if among the first. */
static void drop_last(png_source_t *ps, const char *why) {
  const int64_t k = --ps->base.count;
  free(ps->names[k]);
  free(ps->pairs[k].image);
  free(ps->pairs[k].mask);
  ps->names[k] = NULL;
  memset(&ps->pairs[k], 0, sizeof ps->pairs[k]);
  if (ps->all_why || ps->nwhy < CG_SOURCE_WHY_MAX) {
    char **nw = realloc(ps->why, (ps->nwhy + 2) * sizeof *nw);
    if (!nw || !(nw[ps->nwhy] = strdup(why))) CG_FATAL("out of memory");
    nw[++ps->nwhy] = NULL;
    ps->why = nw;
    ps->base.dropped_why = (const char *const *)nw;
  }
  ps->base.dropped++;
}

cg_source_t *cg_source_png_dirs(const char *images_dir, const char *masks_dir,
                                const cg_source_opts_t *o, char *err, size_t errlen) {
  listing_t im, mk;
  if (o->size < 1) {
    snprintf(err, errlen, "image size %d must be positive", o->size);
    return NULL;
  }
  if (list_files(images_dir, 1, &im, err, errlen)) return NULL;
  if (list_files(masks_dir, 0, &mk, err, errlen)) {
    listing_free(&im);
    return NULL;
  }
  png_source_t *ps = cg_calloc(1, sizeof *ps, "png source");
  ps->base.ops = &png_ops;
  ps->base.h = ps->base.w = o->size;
  ps->size = o->size;
  ps->max_pixels = o->max_pixels;
  ps->nclass = o->nclass;
  ps->ignore = o->ignore;
  ps->pairs = cg_calloc(im.n ? im.n : 1, sizeof(pair_t), "png pairs");
  ps->names = cg_calloc(im.n ? im.n : 1, sizeof(char *), "png names");
  ps->base.names = (const char *const *)ps->names;
  ps->all_why = o->all_why;
  size_t i = 0, j = 0;
  if (im.n == 0) {
    snprintf(err, errlen, "%s: no *.png, *.jpg or *.jpeg files", images_dir);
    goto fail;
  }
  while (i < im.n || j < mk.n) {
    int c = i == im.n ? 1 : j == mk.n ? -1 : cmp_stem(&im.files[i], &mk.files[j]);
    if (c != 0 && i < im.n && j < mk.n && stem_len(im.files[i]) == stem_len(mk.files[j]) &&
        !memcmp(im.files[i], mk.files[j], stem_len(im.files[i])))
      c = 0; /* same stem, the extension spelled differently */
    if (c < 0) {
      char *p = join(images_dir, im.files[i]);
      snprintf(err, errlen, "%s: image has no mask (no %.*s.png in %s)", p,
               (int)stem_len(im.files[i]), im.files[i], masks_dir);
      free(p);
      goto fail;
    }
    if (c > 0) {
      char *p = join(masks_dir, mk.files[j]);
      snprintf(err, errlen, "%s: mask has no image (no %.*s.png, .jpg or .jpeg in %s)", p,
               (int)stem_len(mk.files[j]), mk.files[j], images_dir);
      free(p);
      goto fail;
    }
    pair_t *p = &ps->pairs[ps->base.count];
    ps->names[ps->base.count++] = strndup(im.files[i], stem_len(im.files[i]));
    p->image = join(images_dir, im.files[i]);
    p->mask = join(masks_dir, mk.files[j]);
    if (!ps->names[ps->base.count - 1]) CG_FATAL("out of memory");
    if (check_pair(p, o->max_pixels, err, errlen)) {
      if (!o->skip_bad) {
        size_t n = strlen(err);
        if (o->bad_hint) snprintf(err + n, errlen - n, "%s", o->bad_hint);
        goto fail;
      }
      drop_last(ps, err);
      err[0] = 0;
    }
    i++;
    j++;
  }
  if (ps->base.count == 0 && !o->all_why) {
    snprintf(err, errlen, "%s: every one of the %lld sample(s) is bad (the first: %s)", images_dir,
             (long long)ps->base.dropped, ps->why[0] ? ps->why[0] : "?");
    goto fail;
  }
  if (o->nclass > 1 && ps->base.count > 0) { /* palette masks: predict writes its maps alike */
    int npal = 0;
    if (cg_png_read_palette(ps->pairs[0].mask, o->max_pixels, ps->pal, &npal, err, errlen) == 0 &&
        npal > 0) {
      ps->base.npal = npal;
      ps->base.palette = ps->pal;
    }
    err[0] = 0;
  }
  listing_free(&im);
  listing_free(&mk);
  return &ps->base;
fail:
  listing_free(&im);
  listing_free(&mk);
  png_destroy(&ps->base);
  return NULL;
}

cg_source_t *cg_source_png_dir(const char *dir, const cg_source_opts_t *o, char *err,
                               size_t errlen) {
  struct stat st;
  if (stat(dir, &st)) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return NULL;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: not a directory", dir);
    return NULL;
  }
  char *im = join(dir, "images"), *mk = join(dir, "masks");
  cg_source_t *s = cg_source_png_dirs(im, mk, o, err, errlen);
  free(im);
  free(mk);
  return s;
}
