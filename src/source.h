/* source.h: where samples come from. A source yields raw samples (RGB image + 0/1 mask) of a
 * fixed size h x w by index, from any thread at once.
 *
 * The built-in synthetic source generates sample (offset + index) of the synthetic dataset, so
 * the training and validation sets are disjoint ranges of one generator. Real data comes from
 * a directory of PNG files (source_png.c) or a packed .cgds shard (cgds.h); cg_source_open
 * picks one from the --data argument, and subset views split one source into train and
 * validation (source_open.c). */
#ifndef CG_SOURCE_H
#define CG_SOURCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cg_source cg_source_t;

typedef struct {
  const char *kind;
  /* Returns 0, or -1 with a message naming the file/record in err. Thread-safe. */
  int (*load)(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
              size_t errlen);
  void (*destroy)(cg_source_t *s);
} cg_source_ops_t;

struct cg_source {
  const cg_source_ops_t *ops;
  int64_t count;
  int h, w;
  /* Optional (NULL: none): names[i] is a stable name of sample i (the file name without .png
   * for PNG directories and shards), owned by the source. Keys the validation split. */
  const char *const *names;
};

/* Synthetic samples offset .. offset+count-1 at h x w. */
cg_source_t *cg_source_synthetic(uint64_t seed, int64_t offset, int64_t count, int h, int w);

static inline int cg_source_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask,
                                 char *err, size_t errlen) {
  return s->ops->load(s, index, rgb, mask, err, errlen);
}
void cg_source_destroy(cg_source_t *s); /* NULL-safe */

static inline const char *cg_source_name(const cg_source_t *s, int64_t index) {
  return s->names ? s->names[index] : NULL;
}

/* ---- real data ---------------------------------------------------------------------------
 * Opening checks everything that is cheap to check (directories, pairing, PNG headers, shard
 * header and offset table) and returns NULL with a message naming the file in err; the caller
 * exits 2. Decoding errors and CRC mismatches can only show at load() time. */

/* PNG directory: DIR/images/NAME.png with DIR/masks/NAME.png (see source_png.c for the rules).
 * Samples are ordered by NAME (byte order) and fitted to size x size by cg_fit_square. */
cg_source_t *cg_source_png_dir(const char *dir, int size, char *err, size_t errlen);
/* The same with the two directories given separately (the `pack` command). */
cg_source_t *cg_source_png_dirs(const char *images_dir, const char *masks_dir, int size, char *err,
                                size_t errlen);

/* --data SPEC: "synthetic" (samples 0..synthetic_count-1 of the generator keyed by seed), an
 * existing directory (PNG directory) or an existing file (.cgds shard, recognised by its
 * magic; its records must be size x size). Write "./synthetic" for a directory of that name. */
cg_source_t *cg_source_open(const char *spec, int size, uint64_t seed, int64_t synthetic_count,
                            char *err, size_t errlen);

/* A view of base: sample i is base's sample idx[i] (idx copied). The view borrows base, which
 * must outlive it: destroy the views, then base. */
cg_source_t *cg_source_subset(cg_source_t *base, const int64_t *idx, int64_t n);

/* --val-fraction F: splits base into two views. The validation view gets exactly
 * ceil(F * n) samples (at least 1, at most n - 1): those whose key hash is smallest, the key
 * being the sample's name (its index when the source has no names). Membership depends only
 * on the names and F (not the seed, the order or the source kind), so a PNG directory and the
 * shard packed from it split alike, and adding k files moves at most about k samples across.
 * Both views keep base's order. 0 < F < 1 and n >= 2, else -1 with a message. */
int cg_source_split(cg_source_t *base, double val_fraction, cg_source_t **train, cg_source_t **val,
                    char *err, size_t errlen);

/* ---- resampling (the fitting rule of real data, and the random crop of the loader) -------- */

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

#endif
