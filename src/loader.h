/* loader.h: the batch pipeline — helper threads prepare batches ahead of training into a
 * bounded ring of host batch slots.
 *
 * Batches are numbered 0..nbatches-1 (step = first_step + k; epoch = step / steps_per_epoch).
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

#include "backend.h"
#include "source.h"

typedef struct {
  int n, h, w, c;
  float *x;          /* n*h*w*c network input, NHWC */
  uint8_t *y;        /* n*h*w masks */
  float *weight;     /* n: 1/global for real samples, 0 for padding */
  int64_t *index;    /* n: sample index, -1 padding */
  int real, global;  /* real samples of this rank / of the whole step */
  int64_t step, epoch;
  int slot;          /* internal */
} cg_host_batch_t;

/* The batch as the backend's upload takes it. */
static inline cg_batch_t cg_host_batch_view(const cg_host_batch_t *b) {
  cg_batch_t v = {b->n, b->h, b->w, b->c, b->x, b->y, b->weight};
  return v;
}

typedef struct {
  cg_source_t *source;       /* not owned */
  int64_t nsamples;          /* samples of the source used (its first nsamples) */
  int ranks, rank, batch;
  uint64_t seed;
  int shuffle;               /* reshuffle every epoch */
  int augment;               /* random flips */
  int nfeat;                 /* feature channels computed on the CPU (0 or CG_NFEAT) */
  int64_t first_step, nsteps; /* nsteps < 0: to the end of first_step's epoch */
  int workers, nslots;
  const int *worker_cpus;    /* optional: pin worker i to logical CPU worker_cpus[i] (-1 none) */
  void *(*alloc)(size_t bytes, void *ctx); /* slot memory; NULL = malloc */
  void (*free)(void *p, void *ctx);
  void *alloc_ctx;
} cg_loader_cfg_t;

typedef struct cg_loader cg_loader_t;

cg_loader_t *cg_loader_create(const cg_loader_cfg_t *cfg);
void cg_loader_destroy(cg_loader_t *l); /* NULL-safe; stops and joins the helpers */
int64_t cg_loader_steps_per_epoch(const cg_loader_t *l);

/* Next batch in order, or NULL after the last. *wait_s (optional) gets the seconds blocked. */
cg_host_batch_t *cg_loader_next(cg_loader_t *l, double *wait_s);
void cg_loader_release(cg_loader_t *l, cg_host_batch_t *b);

/* Seconds the helpers spent preparing samples since the last call (summed over helpers), and
 * the number of helpers; for cpu_busy. */
double cg_loader_take_busy(cg_loader_t *l, int *workers);

#endif
