/* sampler.h: the per-rank sampler. */
#ifndef CG_SAMPLER_H
#define CG_SAMPLER_H

#include <stdint.h>

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
