/* loader.h: the batch pipeline — helper threads prepare batches ahead of training into a
 * bounded ring of host batch slots.
 *
 * Batches are numbered 0..nbatches-1 (nbatches = nsteps x accum; step = first_step + k / accum,
 * micro-batch k % accum of it; epoch = step / steps_per_epoch).
 * A batch is B sample tasks; helpers take tasks in order, each preparing one sample
 * (load/generate -> augment -> features -> normalise -> pack) straight into its slot. Batch k
 * may be filled only once batch k - nslots has been released, so memory is fixed: nslots
 * slots, whatever the run length. The consumer takes batches in order with cg_loader_next
 * (blocking, time measured as data wait) and gives each back with cg_loader_release.
 *
 * With workers = 0 there are no threads: cg_loader_next prepares the batch itself (the
 * "serial" mode of the overlap benchmark and a fallback when the rank has a single core).
 *
 * Every sample depends only on (seed, epoch, index), so batches are identical whatever the
 * number of workers. Slot memory comes from the optional allocator (pinned memory for the CUDA
 * backend) and is freed by cg_loader_destroy. */
#ifndef CG_LOADER_H
#define CG_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h" /* cg_jitter_t */
#include "metrics.h"
#include "source.h"

typedef struct {
  int n, h, w, c;
  int n_cpu;         /* samples [0, n_cpu) packed by the helpers into x; the rest only in rgb */
  float *x;          /* n*h*w*c network input, NHWC (first n_cpu samples) */
  uint8_t *rgb;      /* n*h*w*3 augmented RGB8 (samples n_cpu..n-1: the device featurises them) */
  uint8_t *y;        /* n*h*w masks */
  uint8_t *pred;     /* n*h*w predicted masks, written by the backend (its pred_dst) */
  float *weight;     /* n: 1/global for real samples, 0 for padding */
  int64_t *index;    /* n: sample index, -1 padding */
  int real, global;  /* real samples of this rank / of the whole step (all its micro-batches) */
  int nbad;          /* skip_bad: its samples that failed to load (padding, not in real) */
  int64_t step, epoch;
  int micro;         /* which micro-batch of its step (0..accum-1; 0 without --grad-accum) */
  int slot;          /* internal */
} cg_host_batch_t;

typedef struct {
  cg_source_t *source;       /* not owned */
  int64_t nsamples;          /* samples of the source used (its first nsamples) */
  int ranks, rank, batch;
  int accum;                 /* micro-batches a step (--grad-accum; 0 or 1: one): sampler.h */
  uint64_t seed;
  int shuffle;               /* reshuffle every epoch */
  int flip;                  /* random flips: cg_augment_flip's mode (CG_FLIP_*; 0 none) */
  int crop;                  /* random crop windows (cg_augment_window), before the flips: over
                                the whole file for sources of image files */
  double crop_lo, crop_hi;   /* their scale range (0 < lo <= hi <= CG_CROP_SCALE_MAX; 0, 0:
                                the default CG_CROP_SCALE_DEFAULT_LO .. 1); above 1 a window
                                zooms out, its padding the ignore label (else 0) */
  double cat_max;            /* < 1: a window whose mask one label dominates is moved
                                (cg_augment_cat_ok, reading its mask alone first); 0 or 1: off */
  cg_jitter_t jitter;        /* colour jitter of the images after the flips (augment.h; all 0:
                                none) */
  double rotate_deg, rotate_prob; /* then a rotation by up to rotate_deg degrees, made with
                                probability rotate_prob (cg_augment_rotate_*; 0: none), its
                                corners padded as a zoom-out crop's */
  int skip_bad;              /* a sample that fails to load becomes padding and is counted
                                (cg_loader_take_bad); without it cg_loader_next ends the job
                                with exit code 2 naming the file (cg_die, every rank ends) */
  const char *bad_hint;      /* ends that message; NULL: CG_BAD_SAMPLE_HINT (source.h) */
  int nclass;                /* metrics: classes (0 or 1 = binary; K >= 2: K x K counts) */
  int ignore_index;          /* metrics: mask label left out; -1 (or any value < nclass) none */
  int nfeat;                 /* feature channels computed on the CPU (0 or CG_NFEAT) */
  int cpu_count;             /* samples per batch packed on the CPU (< 0: all); see set_cpu_count */
  double test_feat_ms;       /* testing: extra milliseconds of helper work per CPU-featurised
                                sample (starves the helpers for the controller test) */
  int64_t first_step, nsteps; /* nsteps < 0: to the end of first_step's epoch */
  int workers, nslots;
  const int *worker_cpus;    /* optional: pin worker i to logical CPU worker_cpus[i] (-1 none) */
  struct cg_trace *trace;    /* optional: helper tasks go on its helper tracks (--trace-out) */
  void *(*alloc)(size_t bytes, void *ctx); /* slot memory; NULL = malloc */
  void (*free)(void *p, void *ctx);
  void *alloc_ctx;
} cg_loader_cfg_t;

typedef struct cg_loader cg_loader_t;

cg_loader_t *cg_loader_create(const cg_loader_cfg_t *cfg);

/* Training sample idx of src through the crop window win (cg_source_load_win into rgb, 3 bytes
 * a pixel, and mask, 1 a pixel, of src->h x src->w; tmp: 4 bytes a pixel of scratch). With
 * --crop-cat-max R (0 < cat_max < 1; augment.h) win is first moved, its side kept, until the
 * mask it crops passes cg_augment_cat_ok (ignore: the ignore label, -1 none), trying at most
 * CG_CROP_CAT_TRIES windows, each read as its mask alone (image files decode no image); the
 * accepted window's mask is kept and its image read alone, so a sample costs 1 + (windows
 * refused) mask reads, and the whole sample is read only for the window after the last
 * refusal, never tried. A zoom-out window's padding is left out of the count (without an
 * ignore label the tries pad with 255, no label of such a run, and the kept mask is then padded
 * as win->pad says). *refused (may be NULL): the windows refused (0..CG_CROP_CAT_TRIES). 0, or
 * -1 with err naming the file or record (a bad sample). The loader's rule, shared with
 * cogpu-bench cpu-tasks. */
int cg_loader_load_window(cg_source_t *src, uint64_t seed, int64_t epoch, int64_t idx,
                          int ignore, double cat_max, cg_crop_t *win, uint8_t *rgb,
                          uint8_t *mask, uint8_t *tmp, int *refused, char *err, size_t errlen);
void cg_loader_destroy(cg_loader_t *l); /* NULL-safe; stops and joins the helpers */

/* Next batch in order, or NULL after the last. *wait_s (optional) gets the seconds blocked. */
cg_host_batch_t *cg_loader_next(cg_loader_t *l, double *wait_s);
/* Gives a batch back (in the order they were taken). With count_metrics the helpers first add
 * the confusion counts of b->pred against b->y (real samples only) to the loader's totals —
 * asynchronously; the slot is reused only after that. */
void cg_loader_release(cg_loader_t *l, cg_host_batch_t *b, int count_metrics);
/* Waits for every queued metrics task, then returns and resets the totals. */
void cg_loader_take_confusion(cg_loader_t *l, cg_confusion_t *out);
/* The same for nclass >= 2: adds the K x K counts (truth x pred) into confk_add and resets
 * them; out gets the binary totals (zero for K >= 2). */
void cg_loader_take_confusion_k(cg_loader_t *l, cg_confusion_t *out, int64_t *confk_add);

/* The CPU/GPU split: how many samples of each batch indexed from now on the helpers featurise
 * (the rest go to the device as RGB8). Clamped to [0, batch]. */
void cg_loader_set_cpu_count(cg_loader_t *l, int k);

/* What the helpers' work costs, summed since the last call (for the split controller):
 * decoding/generating + augmenting every real sample, featurising + packing the CPU share,
 * counting the metrics of returned batches. */
typedef struct {
  double dec_s, feat_s, met_s;
  int64_t dec_n, feat_n, met_n; /* samples decoded, samples featurised, batches counted */
} cg_loader_costs_t;
void cg_loader_take_costs(cg_loader_t *l, cg_loader_costs_t *out);

/* Seconds the helpers spent preparing samples since the last call (summed over helpers), and
 * the number of helpers; for cpu_busy. */
double cg_loader_take_busy(cg_loader_t *l, int *workers);

/* With skip_bad: samples skipped since the last call. A skipped sample is turned into padding
 * in its batch (zeros, weight 0, index -1, not counted in `real`); the other samples keep
 * weight 1/global, so that step's mean loss is over fewer samples than `global` says and the
 * skipped sample simply contributes nothing (global is agreed by all ranks before the load, and
 * changing it would need communication). The first few skips are logged with their message. */
int64_t cg_loader_take_bad(cg_loader_t *l);

#endif
