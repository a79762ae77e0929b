/* source_png.c: a directory of images (PNG, JPEG, GIF, TIFF or BMP) and their masks, or a list
 * naming them (pairlist.h), as a sample source (see source.h); the rule that fits each pair to
 * the network's size is fit.c's.
 *
 * Layout: IMAGES/NAME.png (or .jpg, .jpeg, .gif, .tif, .tiff, .bmp) pairs with MASKS/NAME of one
 * of the same extensions (a JPEG mask: binary only, image_io.h) (in any letter case; names
 * that start with '.', other extensions and non-regular files are ignored). A file is decoded
 * by its content (image_io.h), so a JPEG named .png still reads. Every image needs its mask and
 * every mask its image; two files whose names differ only in the extension are an error.
 * Opening lists both directories, sorts by NAME (strcmp: independent of the locale and of
 * readdir order), and reads the header (PNG IHDR, JPEG SOF, ...) of every file to check that it
 * decodes within the pixel limit and that image and mask have the same size (a pair that
 * fails is a bad sample: left out with skip_bad, else the open fails). load() decodes both
 * files row by row straight into the fitted sample (cg_fit_png): a helper holds two rows of an
 * image, not the image, so memory per helper does not depend on the files' sizes. Nothing is
 * shared between calls, so loads run in parallel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "atomic_file.h" /* cg_afile_kind: what a path that is not a file is */
#include "fit.h" /* cg_fit_pair: a pair, decoded straight into the fitted sample */
#include "image_io.h"
#include "log.h"
#include "pairlist.h" /* cg_pairlist_read: --data LIST */
#include "png_io.h"
#include "source.h"

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
  int nclass, ignore;  /* masks as labels (cg_fit_pair) */
  uint8_t pal[768];    /* the first mask's palette (base.palette) */
  cg_labelmap_t map;   /* --label-map, when has_map */
  int has_map;
  char *exif_first;    /* base.exif_first */
  cg_exif_t exif;      /* cg_source_opts_t.exif */
} png_source_t;

typedef struct {
  char **files; /* file names, sorted by stem */
  size_t n;
} listing_t;

/* NAME's length without its extension (listed names have one of cg_image_has_ext's). */
static size_t stem_len(const char *f) {
  size_t n = strlen(f);
  cg_image_has_ext(f, &n);
  return n;
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

/* What dir/STEM.EXT is (STEM: name's stem; the first of exts, lowercase, that exists) when it is
 * there but not a regular file (list_files leaves such entries out): "a FIFO", "a directory"...,
 * with *ext its extension; NULL when none is there. For a pairing error that would otherwise say
 * the file is missing. */
static const char *unlisted(const char *dir, const char *name, const char *const *exts,
                            const char **ext) {
  for (int k = 0; exts[k]; k++) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%.*s%s", dir, (int)stem_len(name), name, exts[k]);
    if (stat(p, &st) == 0 && !S_ISREG(st.st_mode)) {
      *ext = exts[k];
      return cg_afile_kind(st.st_mode);
    }
  }
  return NULL;
}

/* Lists dir's image files (cg_image_list_names: regular files, or links to them) sorted by stem
 * (JPEG masks are binary ones: image_io.h); two of one stem are an error naming both. */
static int list_files(const char *dir, listing_t *l, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  if (cg_image_list_names(dir, &l->files, &l->n, err, errlen)) return -1;
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

static int png_load_win(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                        uint8_t *mask, char *err, size_t errlen) {
  png_source_t *ps = (png_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  const pair_t *p = &ps->pairs[index];
  const cg_fit_opts_t o = {.size = ps->size, .max_pixels = ps->max_pixels, .expect_h = p->h,
                           .expect_w = p->w, .nclass = ps->nclass, .ignore = ps->ignore,
                           .map = ps->has_map ? &ps->map : NULL, .exif = ps->exif, .win = win};
  return cg_fit_pair(p->image, mask ? p->mask : NULL, &o, rgb, mask, NULL, NULL, err, errlen);
}

static int png_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                    size_t errlen) {
  return png_load_win(s, index, NULL, rgb, mask, err, errlen);
}

static const cg_source_ops_t png_ops;

int cg_source_png_load_whole(cg_source_t *s, int64_t index, int oh, int ow, uint8_t *rgb,
                             uint8_t *mask, char *err, size_t errlen) {
  if (s->ops != &png_ops || index < 0 || index >= s->count) {
    snprintf(err, errlen, "internal error: a whole image from a %s source", s->ops->kind);
    return -1;
  }
  png_source_t *ps = (png_source_t *)s;
  const pair_t *p = &ps->pairs[index];
  const cg_fit_opts_t o = {.size = ps->size, .max_pixels = ps->max_pixels, .expect_h = p->h,
                           .expect_w = p->w, .nclass = ps->nclass, .ignore = ps->ignore,
                           .map = ps->has_map ? &ps->map : NULL, .exif = ps->exif,
                           .out_h = oh, .out_w = ow};
  return cg_fit_pair(p->image, p->mask, &o, rgb, mask, NULL, NULL, err, errlen);
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
  free(ps->exif_first);
  free(ps->pairs);
  free(ps->names);
  free(ps);
}

static int png_whole(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb,
                     uint8_t *mask, char *err, size_t errlen) {
  png_source_t *ps = (png_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  cg_fit_whole_size(ps->pairs[index].h, ps->pairs[index].w, ps->size, oh, ow);
  return rgb ? cg_source_png_load_whole(s, index, *oh, *ow, rgb, mask, err, errlen) : 0;
}

/* The image whole at the fitted shorter side, its aspect kept (predict --resize fit's view: no
 * 64:1 squeeze), its mask at the file's size. */
static int png_full(cg_source_t *s, int64_t index, int *oh, int *ow, int *mh, int *mw,
                    uint8_t *rgb, uint8_t *mask, char *err, size_t errlen) {
  png_source_t *ps = (png_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  const pair_t *p = &ps->pairs[index];
  cg_fit_view_size(p->h, p->w, ps->size, oh, ow);
  *mh = p->h;
  *mw = p->w;
  if (ps->max_pixels > 0 && (int64_t)*oh * *ow > ps->max_pixels) { /* as predict refuses it */
    snprintf(err, errlen, "%s: scaled to %dx%d, more pixels than --max-image-pixels %lld",
             p->image, *ow, *oh, (long long)ps->max_pixels);
    return -1;
  }
  if (!rgb) return 0;
  const cg_fit_opts_t o = {.size = ps->size, .max_pixels = ps->max_pixels, .expect_h = p->h,
                           .expect_w = p->w, .nclass = ps->nclass, .ignore = ps->ignore,
                           .map = ps->has_map ? &ps->map : NULL, .exif = ps->exif,
                           .out_h = *oh, .out_w = *ow, .mask_native = 1};
  return cg_fit_pair(p->image, p->mask, &o, rgb, mask, NULL, NULL, err, errlen);
}

static const cg_source_ops_t png_ops = {"png", png_load, png_destroy, png_load_win, png_whole,
                                        png_full};

int cg_source_png_image(const cg_source_t *s, int64_t index, const char **path, int *h, int *w) {
  if (s->ops != &png_ops || index < 0 || index >= s->count) return -1;
  const pair_t *p = &((const png_source_t *)s)->pairs[index];
  *path = p->image;
  *h = p->h;
  *w = p->w;
  return 0;
}

/* The start-up check of one pair: both headers (within the pixel limit), equal sizes, and a
 * mask that can hold ids when they are read as labels (as cg_fit_pair reads them); *orient the
 * image's EXIF orientation. */
static int check_pair(pair_t *p, int64_t max_pixels, cg_exif_t exif, int labels, int *orient,
                      char *err, size_t errlen) {
  int mh, mw;
  if (cg_image_read_size(p->image, max_pixels, exif, &p->h, &p->w, orient, err, errlen))
    return -1;
  if (cg_image_read_mask_size(p->mask, max_pixels, labels ? CG_PNG_AS_LABEL : CG_PNG_AS_MASK,
                              &mh, &mw, err, errlen))
    return -1;
  if (mh != p->h || mw != p->w) {
    char why[1024];
    cg_image_size_mismatch(p->image, exif, p->h, p->w, mh, mw, why, sizeof why);
    snprintf(err, errlen, "%s: %s", p->mask, why);
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

/* An empty source of up to n pairs for the options o. */
static png_source_t *new_source(const cg_source_opts_t *o, size_t n) {
  png_source_t *ps = cg_calloc(1, sizeof *ps, "png source");
  ps->base.ops = &png_ops;
  ps->base.h = ps->base.w = o->size;
  ps->size = o->size;
  ps->max_pixels = o->max_pixels;
  ps->exif = o->exif;
  ps->nclass = o->nclass;
  ps->ignore = o->ignore;
  ps->pairs = cg_calloc(n ? n : 1, sizeof(pair_t), "png pairs");
  ps->names = cg_calloc(n ? n : 1, sizeof(char *), "png names");
  ps->base.names = (const char *const *)ps->names;
  ps->all_why = o->all_why;
  if (o->label_map) {
    ps->map = *o->label_map;
    ps->has_map = 1;
  }
  return ps;
}

/* Appends the pair (image, mask) named name (all three taken over) and checks it: a pair that
 * fails is left out with skip_bad, else -1 with the reason (and o->bad_hint) in err; where (may
 * be NULL) starts the reason: a list's "LIST:LINE: ". */
static int add_pair(png_source_t *ps, char *image, char *mask, char *name, const char *where,
                    const cg_source_opts_t *o, char *err, size_t errlen) {
  /* masks are read as ids unless binary without an ignore label (cg_fit_pair's rule) */
  const int kk = o->nclass > 1 ? o->nclass : 1;
  const int labels = kk > 1 || o->ignore >= kk || o->label_map;
  pair_t *p = &ps->pairs[ps->base.count];
  ps->names[ps->base.count++] = name;
  p->image = image;
  p->mask = mask;
  if (!name || !image || !mask) CG_FATAL("out of memory");
  int orient = 0;
  if (check_pair(p, o->max_pixels, o->exif, labels, &orient, err, errlen) == 0) {
    if (orient > 1 && ps->base.exif_turned++ == 0) {
      ps->exif_first = strdup(image);
      if (!ps->exif_first) CG_FATAL("out of memory");
      ps->base.exif_first = ps->exif_first;
      ps->base.exif_orient = orient;
    }
    return 0;
  }
  if (where) {
    char *why = strdup(err);
    if (!why) CG_FATAL("out of memory");
    snprintf(err, errlen, "%s%s", where, why);
    free(why);
  }
  if (!o->skip_bad) {
    size_t n = strlen(err);
    if (o->bad_hint) snprintf(err + n, errlen - n, "%s", o->bad_hint);
    return -1;
  }
  drop_last(ps, err);
  err[0] = 0;
  return 0;
}

/* After the last add_pair: refuses a source whose every pair was left out (unless all_why)
 * and keeps the first mask's palette when masks are labels. what names the source. */
static int finish_source(png_source_t *ps, const cg_source_opts_t *o, const char *what,
                         char *err, size_t errlen) {
  if (ps->base.count == 0 && !o->all_why) {
    snprintf(err, errlen, "%s: every one of the %lld sample(s) is bad (the first: %s)", what,
             (long long)ps->base.dropped, ps->why && ps->why[0] ? ps->why[0] : "?");
    return -1;
  }
  /* palette masks: predict writes its maps alike (not through a --label-map: the palette's
   * entries are the stored values', not the mapped ids') */
  if (o->nclass > 1 && ps->base.count > 0 && !o->label_map) {
    int npal = 0;
    if (cg_png_read_palette(ps->pairs[0].mask, o->max_pixels, ps->pal, &npal, err, errlen) == 0 &&
        npal > 0) {
      ps->base.npal = npal;
      ps->base.palette = ps->pal;
    }
    err[0] = 0;
  }
  return 0;
}

cg_source_t *cg_source_png_dirs(const char *images_dir, const char *masks_dir,
                                const cg_source_opts_t *o, char *err, size_t errlen) {
  listing_t im, mk;
  if (o->size < 1) {
    snprintf(err, errlen, "image size %d must be positive", o->size);
    return NULL;
  }
  if (list_files(images_dir, &im, err, errlen)) return NULL;
  if (list_files(masks_dir, &mk, err, errlen)) {
    listing_free(&im);
    return NULL;
  }
  png_source_t *ps = new_source(o, im.n);
  size_t i = 0, j = 0;
  if (im.n == 0) {
    snprintf(err, errlen, "%s: no image files (*.png, *.jpg, *.jpeg, *.gif, *.tif, *.tiff, "
             "*.bmp)", images_dir);
    goto fail;
  }
  while (i < im.n || j < mk.n) {
    int c = i == im.n ? 1 : j == mk.n ? -1 : cmp_stem(&im.files[i], &mk.files[j]);
    if (c != 0 && i < im.n && j < mk.n && stem_len(im.files[i]) == stem_len(mk.files[j]) &&
        !memcmp(im.files[i], mk.files[j], stem_len(im.files[i])))
      c = 0; /* same stem, the extension spelled differently */
    if (c < 0) {
      char *p = join(images_dir, im.files[i]);
      const int n = (int)stem_len(im.files[i]);
      const char *ext = "", *what = unlisted(masks_dir, im.files[i], cg_image_exts, &ext);
      if (what)
        snprintf(err, errlen, "%s: its mask %s/%.*s%s is %s, not a regular file", p, masks_dir,
                 n, im.files[i], ext, what);
      else
        snprintf(err, errlen, "%s: image has no mask (no %.*s.png or " CG_IMAGE_EXTS_ALT
                 " in %s)", p, n, im.files[i], masks_dir);
      free(p);
      goto fail;
    }
    if (c > 0) {
      char *p = join(masks_dir, mk.files[j]);
      const int n = (int)stem_len(mk.files[j]);
      const char *ext = "", *what = unlisted(images_dir, mk.files[j], cg_image_exts, &ext);
      if (what)
        snprintf(err, errlen, "%s: its image %s/%.*s%s is %s, not a regular file", p,
                 images_dir, n, mk.files[j], ext, what);
      else
        snprintf(err, errlen, "%s: mask has no image (no %.*s.png or " CG_IMAGE_EXTS_ALT
                 " in %s)", p, n, mk.files[j], images_dir);
      free(p);
      goto fail;
    }
    if (add_pair(ps, join(images_dir, im.files[i]), join(masks_dir, mk.files[j]),
                 strndup(im.files[i], stem_len(im.files[i])), NULL, o, err, errlen))
      goto fail;
    i++;
    j++;
  }
  if (finish_source(ps, o, images_dir, err, errlen)) goto fail;
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

/* ---- a list of pairs -------------------------------------------------------------------- */

cg_source_t *cg_source_png_list(const char *list, const cg_source_opts_t *o, char *err,
                                size_t errlen) {
  if (o->size < 1) {
    snprintf(err, errlen, "image size %d must be positive", o->size);
    return NULL;
  }
  cg_pairlist_t pl;
  if (cg_pairlist_read(list, CG_PAIRLIST_MASKS, &pl, err, errlen)) return NULL;
  png_source_t *ps = new_source(o, (size_t)pl.n);
  int rc = 0;
  for (int64_t i = 0; i < pl.n && !rc; i++) {
    char where[4200];
    snprintf(where, sizeof where, "%.4000s:%ld: ", list, pl.line[i]);
    rc = add_pair(ps, pl.image[i], pl.mask[i], pl.name[i], where, o, err, errlen);
    pl.image[i] = pl.mask[i] = pl.name[i] = NULL; /* the source's now */
  }
  cg_pairlist_free(&pl);
  if (!rc) rc = finish_source(ps, o, list, err, errlen);
  if (rc) {
    png_destroy(&ps->base);
    return NULL;
  }
  return &ps->base;
}
