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

#include "fit.h"      /* cg_crop_t: a training crop's window */
#include "labelmap.h" /* cg_labelmap_t: --label-map */

typedef struct cg_source cg_source_t;

typedef struct {
  const char *kind;
  /* Returns 0, or -1 with a message naming the file/record in err. Thread-safe. */
  int (*load)(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
              size_t errlen);
  void (*destroy)(cg_source_t *s);
  /* Optional (NULL: none): sample index through the window win of the whole file rather than
   * of the fitted square, for sources of image files (cg_source_load_win). */
  int (*load_win)(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                  uint8_t *mask, char *err, size_t errlen);
  /* Optional (NULL: every sample is h x w as load() gives it): sample index whole
   * (cg_source_load_whole). */
  int (*whole)(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb, uint8_t *mask,
               char *err, size_t errlen);
  /* Optional (NULL: none; cg_source_load_full says what then): sample index whole with its mask
   * at the file's own size (cg_source_load_full). */
  int (*full)(cg_source_t *s, int64_t index, int *oh, int *ow, int *mh, int *mw, uint8_t *rgb,
              uint8_t *mask, char *err, size_t errlen);
} cg_source_ops_t;

struct cg_source {
  const cg_source_ops_t *ops;
  int64_t count;
  int h, w;
  /* Optional (NULL: none): names[i] is a stable name of sample i (the file name without .png
   * for PNG directories and shards), owned by the source. Keys the validation split. */
  const char *const *names;
  /* Samples left out (skip_bad: their files failed the start-up check, or --check-data), and
   * the reasons of the first ones left out at open: at most CG_SOURCE_WHY_MAX (all with
   * all_why), NULL-terminated, owned by the source (NULL: none). */
  int64_t dropped;
  const char *const *dropped_why;
  /* Label masks of a PNG directory whose (first) mask is a palette PNG: its npal RGB entries,
   * owned by the source; npal 0: gray masks, synthetic data or a shard. */
  int npal;
  const uint8_t *palette;
  /* Images whose EXIF orientation asks a viewer to turn or mirror them (JPEG, 2..8; read as
   * cg_source_opts_t.exif says): their count, the first one's path (owned by the source) and
   * orientation, for a word at start-up; 0 / NULL: none (and every other source). */
  int64_t exif_turned;
  const char *exif_first;
  int exif_orient;
};

#define CG_SOURCE_WHY_MAX 10

/* Synthetic samples offset .. offset+count-1 at h x w. */
cg_source_t *cg_source_synthetic(uint64_t seed, int64_t offset, int64_t count, int h, int w);
/* The same with K-class masks (cg_synth_sample_k; nclass 1 and ignore < 0: the above). */
cg_source_t *cg_source_synthetic_k(uint64_t seed, int64_t offset, int64_t count, int h, int w,
                                   int nclass, int ignore);

static inline int cg_source_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask,
                                 char *err, size_t errlen) {
  return s->ops->load(s, index, rgb, mask, err, errlen);
}
/* Sample index cropped by win, resampled to h x w: a source of image files takes the window
 * over the whole file (a wide photo's edges too, not only its centred square: cg_fit_pair), a
 * shard over its record (whole in version 5); others (synthetic) load the sample and crop it in
 * memory (cg_crop_apply, tmp: h*w*4 bytes of scratch). The same as cg_source_load otherwise.
 * rgb NULL: the mask alone (image files: the image is not decoded; others decode it as ever);
 * mask NULL: the image alone (image files: the mask is not decoded; no mask is checked). */
int cg_source_load_win(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                       uint8_t *mask, uint8_t *tmp, char *err, size_t errlen);
/* Sample index whole rather than its fitted square: an image file scaled so that its shorter
 * side is the source's size (cg_fit_whole_size; read as load() reads it), a shard's record as
 * it is stored (version 5: the whole image at that side; older: the fitted square), other
 * samples (synthetic) as load() gives them. *oh x *ow its size; rgb NULL: the size only (an
 * image file's from its header, seen at open), else rgb (oh*ow*3) and mask (oh*ow). 0, or -1
 * with the message naming the file or record (a bad sample, as load()). */
int cg_source_load_whole(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb,
                         uint8_t *mask, char *err, size_t errlen);
/* Sample index as predict --resize fit scores it (--val-mode full): the image whole at the
 * source's shorter side with its aspect kept (cg_fit_view_size: *oh x *ow, rgb oh*ow*3; over
 * the pixel limit a bad sample, as predict refuses it), and its mask at the file's own size
 * (*mh x *mw, mask mh*mw), read with the source's labels. rgb NULL: the sizes only. Samples that
 * are generated at h x w (synthetic) have no other size: as cg_source_load_whole, *mh x *mw =
 * *oh x *ow. 0; -1 with the message naming the file (a bad sample, as load()); or -2 when the
 * source keeps no full-resolution masks (a shard: its records are stored scaled), err saying
 * so. */
int cg_source_load_full(cg_source_t *s, int64_t index, int *oh, int *ow, int *mh, int *mw,
                        uint8_t *rgb, uint8_t *mask, char *err, size_t errlen);
void cg_source_destroy(cg_source_t *s); /* NULL-safe */

static inline const char *cg_source_name(const cg_source_t *s, int64_t index) {
  return s->names ? s->names[index] : NULL;
}

/* ---- real data ---------------------------------------------------------------------------
 * Opening checks everything that is cheap to check (directories, pairing, PNG headers against
 * the pixel limit, shard header and offset table) and returns NULL with a message naming the
 * file in err; the caller exits 2. Decoding errors and CRC mismatches can only show at load()
 * time (or with cg_source_check, --check-data).
 *
 * A bad sample is one whose own files fail (empty, not a PNG, truncated, corrupt, over the
 * pixel limit, image and mask of different sizes; a shard record whose CRC fails): with
 * skip_bad it is left out at open (counted in `dropped`) or skipped at load (loader.h); without
 * it the job ends with exit 2 and a message naming the file and --skip-bad. A broken dataset
 * layout (missing directory, unpaired file, bad shard header) always fails the open. */

typedef struct {
  int size;              /* samples are size x size (a shard: 0 takes its records' size, for
                            tools that only list or split) */
  int64_t max_pixels;    /* PNG: images of more pixels are bad samples (<= 0: no limit) */
  int skip_bad;          /* leave out pairs whose files fail the start-up check */
  const char *bad_hint;  /* appended to the message of a bad sample at open (NULL: none), e.g.
                            CG_BAD_SAMPLE_HINT for train */
  int all_why;           /* --check-data, with skip_bad: keep the reason of every pair left out
                            (dropped_why), not only the first CG_SOURCE_WHY_MAX, and open even
                            when every pair is left out (count 0), so that all are listed */
  uint64_t seed;         /* synthetic: the generator's seed */
  int64_t synthetic_count;
  int nclass;            /* masks: 0 or 1 = binary (value > 0 is foreground); K >= 2: class
                            ids (gray values or palette indices), a value >= K that is not
                            the ignore label makes the sample bad */
  int ignore;            /* masks: the ignore label, kept as it is; -1 (or < nclass) = none */
  const cg_labelmap_t *label_map; /* --label-map for image files' masks (copied; NULL: none);
                                     a shard must have been packed with the same map (or with
                                     none, without one), which it holds applied */
  int shard_labels;      /* a shard that records its labels (.cgds version 3) is read with
                            them instead of nclass / ignore: for tools that only time the data */
  cg_exif_t exif;        /* image files: a JPEG's EXIF orientation applied (sizes and pixels
                            turned) or not (--exif-orientation) */
} cg_source_opts_t;

/* PNG directory: DIR/images/NAME.png with DIR/masks/NAME.png (see source_png.c for the rules).
 * Samples are ordered by NAME (byte order) and fitted to size x size by cg_fit_png (fit.h). */
cg_source_t *cg_source_png_dir(const char *dir, const cg_source_opts_t *o, char *err,
                               size_t errlen);
/* The same with the two directories given separately (the `pack` command). */
cg_source_t *cg_source_png_dirs(const char *images_dir, const char *masks_dir,
                                const cg_source_opts_t *o, char *err, size_t errlen);
/* A text file listing the pairs, one "IMAGE MASK" line each (PaddleSeg's and DeepLab's train
 * lists): two paths separated by spaces, or by a tab when a name holds spaces; relative paths
 * are under the list's directory; blank lines and lines starting with '#' are skipped. Pairs
 * keep the list's order and are named by their image's file name without its extension (names
 * must be unique). A missing file or a malformed line fails the open naming LIST:LINE; a pair
 * whose files fail the start-up check is a bad sample, as in a directory. */
cg_source_t *cg_source_png_list(const char *list, const cg_source_opts_t *o, char *err,
                                size_t errlen);
/* Sample index's image file of a source made by cg_source_png_dir(s) or _list and its size seen at
 * open (*path is the source's): 0, or -1 when s is another kind of source. For `pack
 * --encoding jpeg`, which stores a JPEG of the right size as it is. */
int cg_source_png_image(const cg_source_t *s, int64_t index, const char **path, int *h, int *w);
/* Sample index of such a source whole, scaled to oh x ow (cg_fit_whole_size of its size and the
 * source's): rgb oh*ow*3 bytes, mask oh*ow, read as load() reads them. For `pack --store whole`.
 * 0, or -1 with the message (another kind of source: says so). */
int cg_source_png_load_whole(cg_source_t *s, int64_t index, int oh, int ow, uint8_t *rgb,
                             uint8_t *mask, char *err, size_t errlen);

/* --data SPEC: "synthetic" (samples 0..synthetic_count-1 of the generator keyed by seed), an
 * existing directory (PNG directory) or an existing file: a .cgds shard, recognised by its magic
 * (its records must be size x size), or a text list of pairs (cg_source_png_list). Write
 * "./synthetic" for a directory of that name. */
cg_source_t *cg_source_open_opts(const char *spec, const cg_source_opts_t *o, char *err,
                                 size_t errlen);
/* The same with the default pixel limit and no skipping. */
cg_source_t *cg_source_open(const char *spec, int size, uint64_t seed, int64_t synthetic_count,
                            char *err, size_t errlen);

/* What --data SPEC names, by its first bytes, without opening it as a source: OTHER when it
 * cannot be read or is neither a directory nor a regular file (the open then says why). A
 * regular file is a SHARD when it is named *.cgds or starts with the .cgds magic and holds
 * binary fields, a LIST when its first 4 KiB look like text (cg_pairlist_sniff), else OTHER
 * (an image, UTF-16 text...: the open names what it is). */
typedef enum {
  CG_SPEC_SYNTHETIC,
  CG_SPEC_DIR,
  CG_SPEC_LIST,
  CG_SPEC_SHARD,
  CG_SPEC_OTHER
} cg_spec_t;
cg_spec_t cg_source_spec_kind(const char *spec);

/* train's ending of a bad sample's message without --skip-bad (after the file's reason); with
 * --check-data given, which passed the sample, the other one. */
#define CG_BAD_SAMPLE_HINT                                                                   \
  " (a bad sample: --skip-bad leaves such samples out and counts them; --check-data lists "  \
  "every bad file before training)"
#define CG_BAD_SAMPLE_HINT_CHECKED                                                           \
  " (a bad sample that passed --check-data: did the file change? --skip-bad leaves such "   \
  "samples out and counts them)"

/* A view of base: sample i is base's sample idx[i] (idx copied). The view borrows base, which
 * must outlive it: destroy the views, then base. */
cg_source_t *cg_source_subset(cg_source_t *base, const int64_t *idx, int64_t n);
/* base without the samples drop[0..n) (sorted, distinct), keeping its order and names; the view
 * owns base (destroying it destroys base) and adds n to base's `dropped`. */
cg_source_t *cg_source_without(cg_source_t *base, const int64_t *drop, int64_t n);

/* --val-fraction F: splits base into two views. The validation view gets exactly
 * ceil(F * n) samples (at least 1, at most n - 1): those whose key hash is smallest, the key
 * being the sample's name (its index when the source has no names). Membership depends only
 * on the names and F (not the seed, the order or the source kind), so a PNG directory and the
 * shard packed from it split alike, and adding k files moves at most about k samples across.
 * Both views keep base's order. 0 < F < 1 and n >= 2, else -1 with a message. */
int cg_source_split(cg_source_t *base, double val_fraction, cg_source_t **train, cg_source_t **val,
                    char *err, size_t errlen);

/* How many samples of b have the name of a sample of a (*example: the first of them, owned by
 * b; NULL when none); 0 when either has no names. For a --val-data that shares files with
 * --data. */
int64_t cg_source_shared_names(const cg_source_t *a, const cg_source_t *b, const char **example);

/* ---- --check-data ------------------------------------------------------------------------ */

/* Loads samples first, first + step, ... of src once each (one rank's share when step is the
 * number of ranks), `threads` threads taking the next index in turn, and returns how many
 * failed; *bad (optional) gets their indices in increasing order (caller frees; NULL when none)
 * and report(ctx, index, reason), if not NULL, is called for each as it is found (from the
 * threads, one call at a time). Nothing is allocated per sample beyond one sample buffer per
 * thread. hist (optional, 256 counters, zeroed by the caller) gets the pixel count of each mask
 * value over the samples that loaded; whole: each sample is loaded (and counted) whole,
 * cg_source_load_whole, as random crops see it, rather than as its fitted square. */
int64_t cg_source_check(cg_source_t *src, int64_t first, int64_t step, int threads,
                        void (*report)(void *ctx, int64_t index, const char *why), void *ctx,
                        int64_t **bad, int64_t *hist, int whole);

#endif
