/* source_open.c: choosing the source named by --data, subset views, and the train/validation
 * split (see source.h).
 *
 * The split ranks samples by a 64-bit hash of their name and sends the ceil(F*n) smallest to
 * validation. Hashing names (not positions) keeps a sample on its side when files are added
 * or removed elsewhere, and makes a PNG directory and its packed shard split identically. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cgds.h"
#include "log.h"
#include "pairlist.h" /* cg_pairlist_sniff: what a file given as --data is */
#include "png_io.h"
#include "rng.h"
#include "source.h"

/* A shard that says what its masks hold (version 3) is read with those classes and that ignore
 * label only: a binary shard read as K classes would train every class id as 1, and other
 * classes would mis-train or fail record by record. */
static int check_labels(const cg_source_t *s, const char *spec, const cg_source_opts_t *o,
                        char *err, size_t errlen) {
  int pk, pi;
  if (!cg_cgds_labels(s, &pk, &pi)) return 0; /* an older shard: each record is checked */
  if (o->shard_labels) return 0; /* read as packed (the caller sets the shard's labels) */
  const int k = o->nclass > 1 ? o->nclass : 1;
  const int ig = o->ignore >= (k > 1 ? k : 2) ? o->ignore : -1;
  if (k == pk && ig == pi) return 0;
  snprintf(err, errlen, "%s: packed with --num-classes %d --ignore-index %d, read with "
           "--num-classes %d --ignore-index %d: give the run the shard's (or pack it again with "
           "the run's)", spec, pk, pi, k, ig);
  return -1;
}

/* A shard holds the ids pack stored, mapped by the --label-map pack was given (version 4 keeps
 * it): it reads in a run with that same map (which then applies to the run's image files), and
 * an unmapped shard in a run without one. Tools that read a shard as packed skip this. */
static int check_map(const cg_source_t *s, const char *spec, const cg_source_opts_t *o,
                     char *err, size_t errlen) {
  if (o->shard_labels) return 0;
  const char *have = NULL;
  const int packed = cg_cgds_label_map(s, &have);
  char want[CG_LABELMAP_TABLE_LEN] = "";
  if (o->label_map) cg_labelmap_table(o->label_map, want);
  if (packed ? !strcmp(have, want) : !want[0]) return 0;
  if (!packed)
    snprintf(err, errlen, "%s: packed without --label-map (its masks hold the files' values), "
             "and the run maps by --label-map %s: pack with the map, or train without it", spec,
             o->label_map->spec);
  else if (!want[0])
    snprintf(err, errlen, "%s: packed with a --label-map, and the run has none: give the run "
             "the same --label-map (a run whose --data is the shard takes it from the shard)",
             spec);
  else
    snprintf(err, errlen, "%s: packed with another --label-map than the run's %s", spec,
             o->label_map->spec);
  return -1;
}

cg_source_t *cg_source_open_opts(const char *spec, const cg_source_opts_t *o, char *err,
                                 size_t errlen) {
  const int size = o->size;
  const uint64_t seed = o->seed;
  const int64_t synthetic_count = o->synthetic_count;
  if (size < 0 || (size == 0 && !strcmp(spec, "synthetic"))) {
    snprintf(err, errlen, "image size %d must be positive", size);
    return NULL;
  }
  if (strcmp(spec, "synthetic") == 0) {
    if (synthetic_count < 1) {
      snprintf(err, errlen, "synthetic: %lld samples, need at least 1", (long long)synthetic_count);
      return NULL;
    }
    return cg_source_synthetic_k(seed, 0, synthetic_count, size, size,
                                 o->nclass > 1 ? o->nclass : 1, o->ignore);
  }
  struct stat st;
  if (stat(spec, &st)) {
    snprintf(err, errlen, "%s: %s", spec, strerror(errno));
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) return cg_source_png_dir(spec, o, err, errlen);
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: neither a directory, a .cgds file nor a list of pairs", spec);
    return NULL;
  }
  const cg_spec_t kind = cg_source_spec_kind(spec);
  if (kind == CG_SPEC_LIST) return cg_source_png_list(spec, o, err, errlen);
  const char *what = NULL;
  if (kind == CG_SPEC_OTHER && cg_pairlist_sniff(spec, &what) == 0 && what) { /* what instead */
    snprintf(err, errlen, "%s: %s: data is synthetic, a directory, a .cgds shard or a text list "
             "of IMAGE MASK lines", spec, what);
    return NULL;
  }
  cg_source_t *s = cg_source_cgds(spec, err, errlen);
  if (s && (check_labels(s, spec, o, err, errlen) || check_map(s, spec, o, err, errlen))) {
    cg_source_destroy(s);
    return NULL;
  }
  int pk, pi;
  if (s && o->shard_labels && cg_cgds_labels(s, &pk, &pi)) cg_cgds_set_labels(s, pk, pi);
  else if (s) cg_cgds_set_labels(s, o->nclass, o->ignore);
  int rh, rw; /* a shard of whole images (version 5) says its shorter side */
  const int whole = s && !cg_cgds_record_size(s, 0, &rh, &rw) && (rh != s->h || rw != s->w);
  if (s && size > 0 && (s->h != size || s->w != size)) {
    if (whole)
      snprintf(err, errlen, "%s: records of shorter side %d (pack --store whole) but "
               "--image-size is %d (re-pack with --image-size %d)", spec, s->h, size, size);
    else
      snprintf(err, errlen, "%s: records are %dx%d but --image-size is %d (re-pack with "
               "--image-size %d)", spec, s->w, s->h, size, size);
    cg_source_destroy(s);
    return NULL;
  }
  return s;
}

cg_spec_t cg_source_spec_kind(const char *spec) {
  if (!strcmp(spec, "synthetic")) return CG_SPEC_SYNTHETIC;
  struct stat st;
  if (stat(spec, &st)) return CG_SPEC_OTHER;
  if (S_ISDIR(st.st_mode)) return CG_SPEC_DIR;
  if (!S_ISREG(st.st_mode)) return CG_SPEC_OTHER;
  const size_t len = strlen(spec);
  if (len > 5 && !strcasecmp(spec + len - 5, ".cgds")) return CG_SPEC_SHARD; /* even when broken */
  const char *what;
  if (cg_pairlist_sniff(spec, &what)) return CG_SPEC_OTHER;
  if (!what) return CG_SPEC_LIST;
  return !strcmp(what, "a .cgds shard") ? CG_SPEC_SHARD : CG_SPEC_OTHER;
}

cg_source_t *cg_source_open(const char *spec, int size, uint64_t seed, int64_t synthetic_count,
                            char *err, size_t errlen) {
  const cg_source_opts_t o = {.size = size, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .seed = seed,
                              .synthetic_count = synthetic_count};
  return cg_source_open_opts(spec, &o, err, errlen);
}

/* ---- subset views ----------------------------------------------------------------------- */

typedef struct {
  cg_source_t base;
  cg_source_t *of;
  int owns;           /* destroying the view destroys `of` (cg_source_without) */
  int64_t *idx;
  const char **names; /* base's names of the view's samples, NULL if base has none */
} subset_t;

static int subset_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                       size_t errlen) {
  subset_t *v = (subset_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  return cg_source_load(v->of, v->idx[index], rgb, mask, err, errlen);
}

static int subset_load_win(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                           uint8_t *mask, char *err, size_t errlen) {
  subset_t *v = (subset_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  return v->of->ops->load_win(v->of, v->idx[index], win, rgb, mask, err, errlen);
}

static int subset_whole(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb,
                        uint8_t *mask, char *err, size_t errlen) {
  subset_t *v = (subset_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  return cg_source_load_whole(v->of, v->idx[index], oh, ow, rgb, mask, err, errlen);
}

static int subset_full(cg_source_t *s, int64_t index, int *oh, int *ow, int *mh, int *mw,
                       uint8_t *rgb, uint8_t *mask, char *err, size_t errlen) {
  subset_t *v = (subset_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  return cg_source_load_full(v->of, v->idx[index], oh, ow, mh, mw, rgb, mask, err, errlen);
}

static void subset_destroy(cg_source_t *s) {
  subset_t *v = (subset_t *)s;
  if (v->owns) cg_source_destroy(v->of);
  free(v->idx);
  free(v->names);
  free(v);
}

static const cg_source_ops_t subset_ops = {"subset", subset_load, subset_destroy, NULL,
                                           subset_whole, subset_full};
/* A view of a source with windows forwards them. */
static const cg_source_ops_t subset_win_ops = {"subset", subset_load, subset_destroy,
                                               subset_load_win, subset_whole, subset_full};

cg_source_t *cg_source_subset(cg_source_t *base, const int64_t *idx, int64_t n) {
  CG_ASSERT(base != NULL && n >= 0);
  subset_t *v = cg_calloc(1, sizeof *v, "subset source");
  v->base.ops = base->ops->load_win ? &subset_win_ops : &subset_ops;
  v->base.count = n;
  v->base.h = base->h;
  v->base.w = base->w;
  v->base.npal = base->npal; /* base outlives the view: its palette too */
  v->base.palette = base->palette;
  v->of = base;
  v->idx = cg_malloc(sizeof(int64_t) * (size_t)(n ? n : 1), "subset indices");
  for (int64_t i = 0; i < n; i++) {
    CG_ASSERT(idx[i] >= 0 && idx[i] < base->count);
    v->idx[i] = idx[i];
  }
  if (base->names) {
    v->names = cg_malloc(sizeof(char *) * (size_t)(n ? n : 1), "subset names");
    for (int64_t i = 0; i < n; i++) v->names[i] = base->names[idx[i]];
    v->base.names = v->names;
  }
  return &v->base;
}

cg_source_t *cg_source_without(cg_source_t *base, const int64_t *drop, int64_t n) {
  CG_ASSERT(n >= 0 && n < base->count);
  int64_t *keep = cg_malloc(sizeof(int64_t) * (size_t)(base->count - n), "kept samples");
  int64_t k = 0, d = 0;
  for (int64_t i = 0; i < base->count; i++) {
    if (d < n && drop[d] == i) {
      d++;
      continue;
    }
    keep[k++] = i;
  }
  CG_ASSERT(d == n); /* drop sorted, distinct, in range */
  cg_source_t *v = cg_source_subset(base, keep, k);
  free(keep);
  ((subset_t *)v)->owns = 1;
  v->dropped = base->dropped + n;
  v->dropped_why = base->dropped_why;
  v->exif_turned = base->exif_turned; /* counted at open, those left out now among them */
  v->exif_first = base->exif_first;
  v->exif_orient = base->exif_orient;
  return v;
}

/* ---- split ------------------------------------------------------------------------------ */

typedef struct {
  uint64_t key;
  int64_t index;
} keyed_t;

/* FNV-1a over the name, finished with splitmix64 so that near-identical names spread. */
static uint64_t name_key(const char *name) {
  return cg_mix64(cg_fnv1a(CG_FNV1A_INIT, name, strlen(name)));
}

static int cmp_keyed(const void *a, const void *b) {
  const keyed_t *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

int cg_source_split(cg_source_t *base, double val_fraction, cg_source_t **train, cg_source_t **val,
                    char *err, size_t errlen) {
  const int64_t n = base->count;
  if (!(val_fraction > 0 && val_fraction < 1)) {
    snprintf(err, errlen, "--val-fraction: %g is not between 0 and 1 (exclusive)", val_fraction);
    return -1;
  }
  if (n < 2) {
    snprintf(err, errlen, "--val-fraction: cannot split %lld sample(s) into training and "
             "validation", (long long)n);
    return -1;
  }
  int64_t nval = (int64_t)ceil(val_fraction * (double)n - 1e-9);
  if (nval < 1) nval = 1;
  if (nval > n - 1) nval = n - 1;
  keyed_t *k = cg_malloc(sizeof(keyed_t) * (size_t)n, "split keys");
  for (int64_t i = 0; i < n; i++) {
    const char *name = cg_source_name(base, i);
    char num[24];
    if (!name) {
      snprintf(num, sizeof num, "%lld", (long long)i);
      name = num;
    }
    k[i].key = name_key(name);
    k[i].index = i;
  }
  qsort(k, (size_t)n, sizeof *k, cmp_keyed);
  int64_t *vi = cg_malloc(sizeof(int64_t) * (size_t)nval, "split val");
  int64_t *ti = cg_malloc(sizeof(int64_t) * (size_t)(n - nval), "split train");
  for (int64_t i = 0; i < nval; i++) vi[i] = k[i].index;
  for (int64_t i = nval; i < n; i++) ti[i - nval] = k[i].index;
  qsort(vi, (size_t)nval, sizeof *vi, cmp_i64);
  qsort(ti, (size_t)(n - nval), sizeof *ti, cmp_i64);
  *val = cg_source_subset(base, vi, nval);
  *train = cg_source_subset(base, ti, n - nval);
  free(k);
  free(vi);
  free(ti);
  return 0;
}

/* ---- names shared by two sources -------------------------------------------------------- */

static int cmp_name_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int64_t cg_source_shared_names(const cg_source_t *a, const cg_source_t *b, const char **example) {
  *example = NULL;
  if (!a->names || !b->names || a->count < 1) return 0;
  const char **v = cg_malloc(sizeof(char *) * (size_t)a->count, "names");
  for (int64_t i = 0; i < a->count; i++) v[i] = cg_source_name(a, i);
  qsort(v, (size_t)a->count, sizeof *v, cmp_name_ptr);
  int64_t shared = 0;
  for (int64_t i = 0; i < b->count; i++) {
    const char *name = cg_source_name(b, i);
    if (bsearch(&name, v, (size_t)a->count, sizeof *v, cmp_name_ptr)) {
      if (!shared++) *example = name;
    }
  }
  free(v);
  return shared;
}
