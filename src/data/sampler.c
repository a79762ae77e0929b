/* sampler.c: which sample indices each rank takes at each step (see sampler.h).
 *
 * The epoch's permutation depends only on (seed, epoch), never on ranks or batch, and global
 * batches are consecutive slices of it; so R ranks x batch B see exactly the samples of one
 * rank x batch R*B, in the same order. The permutation (Fisher-Yates driven by the keyed RNG)
 * is cached for the current epoch: a step costs O(batch), an epoch change O(n).
 * A sampler is not thread-safe (the cache); each thread that draws batches owns one. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sampler.h"
#include "log.h"
#include "rng.h"

void cg_sampler_init(cg_sampler_t *s, int64_t n, int ranks, int rank, int batch, uint64_t seed) {
  CG_ASSERT(s != NULL);
  CG_ASSERT(n >= 0 && (uint64_t)n <= UINT32_MAX); /* cg_rng_below draws 32-bit indices */
  CG_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks && batch >= 1);
  s->n = n;
  s->ranks = ranks;
  s->rank = rank;
  s->batch = batch;
  s->accum = 1;
  s->seed = seed;
  s->shuffle = 1;
  s->perm_epoch = -1;
  s->perm = NULL;
}

void cg_sampler_free(cg_sampler_t *s) {
  if (!s) return;
  free(s->perm);
  s->perm = NULL;
  s->perm_epoch = -1;
}

void cg_sampler_set_accum(cg_sampler_t *s, int accum) {
  CG_ASSERT(s != NULL && accum >= 1);
  s->accum = accum;
}

int64_t cg_sampler_steps_per_epoch(const cg_sampler_t *s) {
  const int64_t g = (int64_t)s->ranks * s->batch * s->accum;
  return (s->n + g - 1) / g;
}

static void make_perm(cg_sampler_t *s, int64_t epoch) {
  if (!s->perm) s->perm = cg_malloc((size_t)(s->n ? s->n : 1) * sizeof *s->perm, "sampler perm");
  int64_t *p = s->perm;
  for (int64_t i = 0; i < s->n; i++) p[i] = i;
  cg_rng_t r = cg_rng_make(s->seed, CG_RNG_SHUFFLE, (uint64_t)epoch, 0);
  for (int64_t i = s->n - 1; i > 0; i--) {
    const int64_t j = cg_rng_below(&r, (uint32_t)(i + 1));
    const int64_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  s->perm_epoch = epoch;
}

int cg_sampler_batch(cg_sampler_t *s, int64_t epoch, int64_t step, int64_t *idx, int *global) {
  return cg_sampler_micro(s, epoch, step, 0, idx, global);
}

int cg_sampler_micro(cg_sampler_t *s, int64_t epoch, int64_t step, int micro, int64_t *idx,
                     int *global) {
  CG_ASSERT(s != NULL && idx != NULL && epoch >= 0);
  CG_ASSERT(step >= 0 && step < cg_sampler_steps_per_epoch(s));
  CG_ASSERT(micro >= 0 && micro < s->accum);
  if (s->shuffle && s->perm_epoch != epoch) make_perm(s, epoch);
  const int64_t g = (int64_t)s->ranks * s->batch * s->accum;
  const int64_t start = step * g;
  const int64_t gcount = s->n - start < g ? s->n - start : g;
  const int64_t lo = start + ((int64_t)micro * s->ranks + s->rank) * s->batch;
  int64_t real = s->n - lo;
  real = real < 0 ? 0 : (real > s->batch ? s->batch : real);
  for (int i = 0; i < s->batch; i++)
    idx[i] = i < real ? (s->shuffle ? s->perm[lo + i] : lo + i) : -1;
  if (global) *global = (int)gcount;
  return (int)real;
}
