/* source_png.c: a directory of PNG images and masks as a sample source, and the resampling
 * rule that fits real images to the network's size (see source.h).
 *
 * Layout: IMAGES/NAME.png pairs with MASKS/NAME.png (".png" in any letter case; names that
 * start with '.', other extensions and non-regular files are ignored). Every image needs its
 * mask and every mask its image; two files whose names differ only in the case of ".png" are
 * an error. Opening lists both directories, sorts by NAME (strcmp: independent of the locale and
 * of readdir order), and reads the IHDR chunk of every file to check that it is a PNG and that
 * image and mask have the same size. load() decodes both files and fits them with
 * cg_fit_square; nothing is shared between calls, so loads run in parallel. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "log.h"
#include "png_io.h"
#include "source.h"

/* ---- resampling ------------------------------------------------------------------------- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void cg_resample_rgb(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                     double wh, uint8_t *dst, int h, int w) {
  int *xi = cg_malloc(sizeof(int) * 2 * (size_t)w, "resample columns");
  float *xf = cg_malloc(sizeof(float) * (size_t)w, "resample weights");
  for (int x = 0; x < w; x++) {
    double u = x0 + (x + 0.5) * ww / w - 0.5;
    if (u < 0) u = 0;
    if (u > sw - 1) u = sw - 1;
    int i0 = (int)floor(u);
    xi[2 * x] = i0;
    xi[2 * x + 1] = i0 + 1 < sw ? i0 + 1 : i0;
    xf[x] = (float)(u - i0);
  }
  for (int y = 0; y < h; y++) {
    double v = y0 + (y + 0.5) * wh / h - 0.5;
    if (v < 0) v = 0;
    if (v > sh - 1) v = sh - 1;
    int j0 = (int)floor(v), j1 = j0 + 1 < sh ? j0 + 1 : j0;
    float g = (float)(v - j0);
    const uint8_t *r0 = src + (size_t)j0 * sw * 3, *r1 = src + (size_t)j1 * sw * 3;
    uint8_t *o = dst + (size_t)y * w * 3;
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
  free(xi);
  free(xf);
}

void cg_resample_mask(const uint8_t *src, int sh, int sw, double x0, double y0, double ww,
                      double wh, uint8_t *dst, int h, int w) {
  int *xi = cg_malloc(sizeof(int) * (size_t)w, "resample columns");
  for (int x = 0; x < w; x++) xi[x] = clampi((int)floor(x0 + (x + 0.5) * ww / w), 0, sw - 1);
  for (int y = 0; y < h; y++) {
    const int j = clampi((int)floor(y0 + (y + 0.5) * wh / h), 0, sh - 1);
    const uint8_t *r = src + (size_t)j * sw;
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

/* ---- the source ------------------------------------------------------------------------- */

typedef struct {
  char *image, *mask; /* paths */
  int h, w;           /* from IHDR at open */
} pair_t;

typedef struct {
  cg_source_t base;
  int size;
  pair_t *pairs;
  char **names; /* NAME of each pair: base.names */
} png_source_t;

typedef struct {
  char **files; /* file names, sorted by stem */
  size_t n, cap;
} listing_t;

static size_t stem_len(const char *f) { return strlen(f) - 4; }

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

/* Lists dir's *.png regular files sorted by stem. */
static int list_pngs(const char *dir, listing_t *l, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
    return -1;
  }
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (!has_png_ext(e->d_name)) continue;
    if (e->d_type != DT_REG) {
      if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) continue;
      char *p = join(dir, e->d_name);
      struct stat st;
      int reg = stat(p, &st) == 0 && S_ISREG(st.st_mode);
      free(p);
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
  uint8_t *img = NULL, *msk = NULL;
  int ih, iw, mh, mw, rc = -1;
  if (cg_png_read_rgb(p->image, &img, &ih, &iw, err, errlen)) goto done;
  if (cg_png_read_mask(p->mask, &msk, &mh, &mw, err, errlen)) goto done;
  if (ih != p->h || iw != p->w || mh != p->h || mw != p->w) {
    snprintf(err, errlen, "%s: size changed since start-up: image %dx%d, mask %dx%d, expected %dx%d",
             p->image, iw, ih, mw, mh, p->w, p->h);
    goto done;
  }
  cg_fit_square(img, msk, ih, iw, ps->size, rgb, mask);
  rc = 0;
done:
  free(img);
  free(msk);
  return rc;
}

static void png_destroy(cg_source_t *s) {
  png_source_t *ps = (png_source_t *)s;
  for (int64_t i = 0; i < s->count; i++) {
    free(ps->names[i]);
    free(ps->pairs[i].image);
    free(ps->pairs[i].mask);
  }
  free(ps->pairs);
  free(ps->names);
  free(ps);
}

static const cg_source_ops_t png_ops = {"png", png_load, png_destroy};

cg_source_t *cg_source_png_dirs(const char *images_dir, const char *masks_dir, int size, char *err,
                                size_t errlen) {
  listing_t im, mk;
  if (size < 1) {
    snprintf(err, errlen, "image size %d must be positive", size);
    return NULL;
  }
  if (list_pngs(images_dir, &im, err, errlen)) return NULL;
  if (list_pngs(masks_dir, &mk, err, errlen)) {
    listing_free(&im);
    return NULL;
  }
  png_source_t *ps = cg_calloc(1, sizeof *ps, "png source");
  ps->base.ops = &png_ops;
  ps->base.h = ps->base.w = size;
  ps->size = size;
  ps->pairs = cg_calloc(im.n ? im.n : 1, sizeof(pair_t), "png pairs");
  ps->names = cg_calloc(im.n ? im.n : 1, sizeof(char *), "png names");
  ps->base.names = (const char *const *)ps->names;
  size_t i = 0, j = 0;
  if (im.n == 0) {
    snprintf(err, errlen, "%s: no *.png files", images_dir);
    goto fail;
  }
  while (i < im.n || j < mk.n) {
    int c = i == im.n ? 1 : j == mk.n ? -1 : cmp_stem(&im.files[i], &mk.files[j]);
    if (c != 0 && i < im.n && j < mk.n && stem_len(im.files[i]) == stem_len(mk.files[j]) &&
        !memcmp(im.files[i], mk.files[j], stem_len(im.files[i])))
      c = 0; /* same stem, ".png" spelled differently */
    if (c < 0) {
      char *p = join(images_dir, im.files[i]);
      snprintf(err, errlen, "%s: image has no mask (no %.*s.png in %s)", p,
               (int)stem_len(im.files[i]), im.files[i], masks_dir);
      free(p);
      goto fail;
    }
    if (c > 0) {
      char *p = join(masks_dir, mk.files[j]);
      snprintf(err, errlen, "%s: mask has no image (no %.*s.png in %s)", p,
               (int)stem_len(mk.files[j]), mk.files[j], images_dir);
      free(p);
      goto fail;
    }
    pair_t *p = &ps->pairs[ps->base.count];
    ps->names[ps->base.count++] = strndup(im.files[i], stem_len(im.files[i]));
    p->image = join(images_dir, im.files[i]);
    p->mask = join(masks_dir, mk.files[j]);
    if (!ps->names[ps->base.count - 1]) CG_FATAL("out of memory");
    int mh, mw;
    if (cg_png_read_size(p->image, &p->h, &p->w, err, errlen)) goto fail;
    if (cg_png_read_size(p->mask, &mh, &mw, err, errlen)) goto fail;
    if (mh != p->h || mw != p->w) {
      snprintf(err, errlen, "%s: mask is %dx%d but its image %s is %dx%d", p->mask, mw, mh, p->image,
               p->w, p->h);
      goto fail;
    }
    i++;
    j++;
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

cg_source_t *cg_source_png_dir(const char *dir, int size, char *err, size_t errlen) {
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
  cg_source_t *s = cg_source_png_dirs(im, mk, size, err, errlen);
  free(im);
  free(mk);
  return s;
}
