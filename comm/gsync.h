/* gsync.h: bucketed gradient all-reduce over MPI on host buffers, overlapped with backward.
 *
 * The backend calls cg_gsync_post(bucket) as soon as backward has produced a bucket's
 * gradients (the bucket plan, cg_buckets_t of model.h: contiguous ranges of the flat fp32
 * gradient buffer in reverse layer order), cg_gsync_progress() between layers so MPI can move
 * data while backward continues, and cg_gsync_wait() before the optimizer. Gradients are summed
 * in place; the backend's per-sample loss weights (1 / global batch) already make the sum the
 * mean. A device backend that stages gradients through host memory hands the whole pass to
 * cg_gsync_staged instead.
 *
 * Two algorithms:
 *  - default: MPI_Iallreduce(SUM) per bucket (the MPI library picks the algorithm);
 *  - deterministic: each element is summed in rank order 0..R-1 whatever the bucket size
 *    (a reduce-scatter by MPI_Ialltoallv, a fixed-order sum, then MPI_Iallgatherv), so
 *    results do not depend on --bucket-mb or on timing. Same traffic as a ring all-reduce.
 * With one rank every call is a no-op.
 *
 * Only MPI and host memory: no model, no device. The gsync copies the bucket ranges it is
 * given. */
#ifndef CG_GSYNC_H
#define CG_GSYNC_H

#include <mpi.h>
#include <stddef.h>

typedef struct cg_gsync cg_gsync_t;

/* nbuckets ranges of the flat gradient buffer: bucket b is the len[b] floats from off[b] (in
 * elements; cg_buckets_t's off and len), copied. Collective over comm when deterministic. */
cg_gsync_t *cg_gsync_create(MPI_Comm comm, int nbuckets, const size_t *off, const size_t *len,
                            int deterministic);
void cg_gsync_destroy(cg_gsync_t *g); /* NULL-safe; waits for nothing: call wait first */

/* Starts the all-reduce of bucket b of the flat gradient buffer grad (host memory that must
 * stay untouched until cg_gsync_wait returns). */
void cg_gsync_post(cg_gsync_t *g, int b, float *grad);
/* Lets outstanding reductions progress (MPI_Test); cheap. */
void cg_gsync_progress(cg_gsync_t *g);
/* Completes every posted bucket; returns the seconds spent blocked here. */
double cg_gsync_wait(cg_gsync_t *g);
/* Bytes all-reduced since the last call (for the stats), then resets the counter. */
double cg_gsync_take_bytes(cg_gsync_t *g);

/* The host side of a device backend's staged all-reduce: for each bucket b in order, waits
 * until landed(ctx, b) returns (it blocks until the bucket's gradients are in grad, e.g. until
 * their device-to-host copy has completed), posts it and lets MPI progress; then completes
 * every bucket, as cg_gsync_wait. *t_first (optional) gets cg_now() when the first bucket had
 * landed, -1 with no bucket. Returns the seconds spent blocked in the final wait. grad: the
 * flat host buffer, as for cg_gsync_post; copying it back is the caller's. */
double cg_gsync_staged(cg_gsync_t *g, float *grad, void (*landed)(void *ctx, int b), void *ctx,
                       double *t_first);

#endif
