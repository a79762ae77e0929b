/* sampler.h: the per-rank sampler. */
#ifndef CG_SAMPLER_H
#define CG_SAMPLER_H

#include <stdint.h>

/* Every epoch is a permutation of 0..n-1 from (seed, epoch). The permutation is cut into
 * global batches of ranks*batch*accum consecutive entries (accum micro-batches a step:
 * --grad-accum); micro-batch m of rank r takes entries [(m*ranks + r)*batch, +batch) of each.
 * The last global batch may be short: ranks then get fewer (maybe no) real samples and padding
 * (-1). Every rank has the same number of steps per epoch, ceil(n / (ranks*batch*accum)); the
 * shards are disjoint and together cover the dataset. Micro-batch m of step k is what batch
 * k*accum + m would be with accum 1, so R ranks x A micro-batches see exactly the samples of
 * R*A ranks, or of one rank x batch R*A*B, in the same order. */
typedef struct {
  int64_t n;
  int ranks, rank, batch;
  int accum;          /* micro-batches a step; 1 (cg_sampler_init's) or cg_sampler_set_accum */
  uint64_t seed;
  int shuffle;        /* 1 (default): permute every epoch; 0: identity order (validation) */
  int64_t perm_epoch; /* epoch of the cached permutation, -1 none */
  int64_t *perm;      /* owned */
} cg_sampler_t;

void cg_sampler_init(cg_sampler_t *s, int64_t n, int ranks, int rank, int batch, uint64_t seed);
void cg_sampler_free(cg_sampler_t *s); /* NULL-safe */
void cg_sampler_set_accum(cg_sampler_t *s, int accum); /* accum >= 1 */
int64_t cg_sampler_steps_per_epoch(const cg_sampler_t *s);
/* Fills idx[0..batch) for (epoch, step within epoch) with sample indices, -1 for padding.
 * Returns the number of real samples of this rank; *global gets that of the whole step. */
int cg_sampler_batch(cg_sampler_t *s, int64_t epoch, int64_t step, int64_t *idx, int *global);
/* The same for micro-batch micro (0..accum-1) of the step; *global: the whole step's count
 * (all its micro-batches on every rank), which its loss weights divide by. */
int cg_sampler_micro(cg_sampler_t *s, int64_t epoch, int64_t step, int micro, int64_t *idx,
                     int *global);

#endif
