/* data.h: samples — the built-in synthetic dataset, augmentation, the CPU feature channels,
 * normalisation and packing into the NHWC network input; and the per-rank sampler.
 *
 * A raw sample is an RGB image (h*w*3 bytes, interleaved) and a mask (h*w bytes, 0/1).
 * The network input has C = 3 + F channels per pixel, F = CG_NFEAT feature channels:
 *   channel 0..2  (rgb/255 - 0.5) / 0.25
 *   channel 3     Sobel gradient magnitude of the gray image g = (0.299 R + 0.587 G + 0.114 B)/255
 *                 (3x3 kernels, borders replicated)
 *   channel 4     local variance of g over a 5x5 window (borders replicated) x CG_VAR_SCALE
 * Every random decision comes from rng.h keyed by (seed, purpose, epoch, index), so a sample
 * is the same whatever thread, rank or batch prepares it. */
#ifndef CG_DATA_H
#define CG_DATA_H

#include <stddef.h>
#include <stdint.h>

#define CG_NFEAT 2
#define CG_VAR_SCALE 16.0f

/* ---- synthetic dataset ------------------------------------------------------------------ */

/* Image `index` of the synthetic dataset: 1..5 random shapes (circles, ellipses, rotated
 * rectangles) with varied texture and brightness over a textured, noisy background; the mask
 * is the union of the shapes. Pure function of (seed, index, h, w). */
void cg_synth_sample(uint64_t seed, int64_t index, int h, int w, uint8_t *rgb, uint8_t *mask);

/* ---- augmentation and features ---------------------------------------------------------- */

/* In-place random horizontal / vertical flips of one sample, decided by (seed, epoch, index). */
void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask);

/* Gray image (h*w floats in [0,1]) of an RGB image. */
void cg_feat_gray(const uint8_t *rgb, int h, int w, float *gray);
/* Sobel magnitude and 5x5 local variance (already x CG_VAR_SCALE) of a gray image. */
void cg_feat_sobel(const float *gray, int h, int w, float *out);
void cg_feat_localvar(const float *gray, int h, int w, float *out);

/* Pack one sample into the network input x (h*w*(3+nfeat) floats, NHWC): normalised RGB and,
 * if nfeat == CG_NFEAT, the two features (computed here; scratch = 3*h*w floats). nfeat 0
 * packs RGB only (the GPU computes the features itself in --split gpu, issue 5). */
void cg_pack_input(const uint8_t *rgb, int h, int w, int nfeat, float *scratch, float *x);

/* ---- sampler ---------------------------------------------------------------------------- */

/* Every epoch is a permutation of 0..n-1 from (seed, epoch). The permutation is cut into
 * global batches of ranks*batch consecutive entries; rank r takes entries [r*batch,
 * (r+1)*batch) of each. The last global batch may be short: ranks then get fewer (maybe no)
 * real samples and padding (-1). Every rank has the same number of steps per epoch,
 * ceil(n / (ranks*batch)); the shards are disjoint and together cover the dataset. */
typedef struct {
  int64_t n;
  int ranks, rank, batch;
  uint64_t seed;
  int shuffle;        /* 1 (default): permute every epoch; 0: identity order (validation) */
  int64_t perm_epoch; /* epoch of the cached permutation, -1 none */
  int64_t *perm;      /* owned */
} cg_sampler_t;

void cg_sampler_init(cg_sampler_t *s, int64_t n, int ranks, int rank, int batch, uint64_t seed);
void cg_sampler_free(cg_sampler_t *s); /* NULL-safe */
int64_t cg_sampler_steps_per_epoch(const cg_sampler_t *s);
/* Fills idx[0..batch) for (epoch, step within epoch) with sample indices, -1 for padding.
 * Returns the number of real samples of this rank; *global gets that of the whole step. */
int cg_sampler_batch(cg_sampler_t *s, int64_t epoch, int64_t step, int64_t *idx, int *global);

#endif
