/* gsync.h: bucketed gradient all-reduce over MPI on host buffers, overlapped with backward.
 *
 * The backend calls cg_gsync_post(bucket) as soon as backward has produced a bucket's
 * gradients (cg_buckets_t of model.h: contiguous ranges of the flat fp32 gradient buffer in
 * reverse layer order), cg_gsync_progress() between layers so MPI can move data while backward
 * continues, and cg_gsync_wait() before the optimizer. Gradients are summed in place; the
 * backend's per-sample loss weights (1 / global batch) already make the sum the mean.
 *
 * Two algorithms:
 *  - default: MPI_Iallreduce(SUM) per bucket (the MPI library picks the algorithm);
 *  - deterministic: each element is summed in rank order 0..R-1 whatever the bucket size
 *    (a reduce-scatter by MPI_Ialltoallv, a fixed-order sum, then MPI_Iallgatherv), so
 *    results do not depend on --bucket-mb or on timing. Same traffic as a ring all-reduce.
 * With one rank every call is a no-op.
 *
 * The gsync keeps a pointer to the buckets (caller-owned, must outlive it). */
#ifndef CG_GSYNC_H
#define CG_GSYNC_H

#include <mpi.h>
#include <stddef.h>

#include "model.h"

typedef struct cg_gsync cg_gsync_t;

cg_gsync_t *cg_gsync_create(MPI_Comm comm, const cg_buckets_t *buckets, int deterministic);
void cg_gsync_destroy(cg_gsync_t *g); /* NULL-safe; waits for nothing: call wait first */
int cg_gsync_ranks(const cg_gsync_t *g);
const cg_buckets_t *cg_gsync_buckets(const cg_gsync_t *g);

/* Starts the all-reduce of bucket b of the flat gradient buffer grad (host memory that must
 * stay untouched until cg_gsync_wait returns). */
void cg_gsync_post(cg_gsync_t *g, int b, float *grad);
/* Lets outstanding reductions progress (MPI_Test); cheap. */
void cg_gsync_progress(cg_gsync_t *g);
/* Completes every posted bucket; returns the seconds spent blocked here. */
double cg_gsync_wait(cg_gsync_t *g);
/* Bytes all-reduced since the last call (for the stats), then resets the counter. */
double cg_gsync_take_bytes(cg_gsync_t *g);

#endif
