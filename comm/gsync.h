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
 * What travels (--grad-comm, cg_gsync_set_dtype): fp32, or bf16 (half the bytes, like DDP's
 * bf16 compression hook). bf16: post rounds the bucket to bf16 (comm/bf16.h: nearest-even, NaN
 * kept) into the gsync's own buffer, the all-reduce runs on that, and completion widens the
 * bf16 sums back into the fp32 gradients (exactly: every rank gets the same fp32 values). MPI
 * has no bf16 type: the default algorithm sums with a user operator on a 2-byte type that adds
 * pairs in fp32 and rounds each partial sum to bf16 (so R ranks round up to R-1 times, in an
 * order the MPI library picks); the deterministic one receives the R bf16 copies of its segment
 * and adds them in fp32 in rank order, rounding once. With one rank nothing is rounded: the
 * fp32 gradients stay as they are (nothing goes on a wire).
 *
 * Only MPI and host memory: no model, no device. The gsync copies the bucket ranges it is
 * given. */
#ifndef CG_GSYNC_H
#define CG_GSYNC_H

#include <mpi.h>
#include <stddef.h>

#include <stdint.h>

typedef struct cg_gsync cg_gsync_t;

typedef enum { CG_GSYNC_FP32 = 0, CG_GSYNC_BF16 = 1 } cg_gsync_dtype_t;
const char *cg_gsync_dtype_name(cg_gsync_dtype_t dt); /* "fp32" | "bf16" */

/* nbuckets ranges of the flat gradient buffer: bucket b is the len[b] floats from off[b] (in
 * elements; cg_buckets_t's off and len), copied. Collective over comm when deterministic. */
cg_gsync_t *cg_gsync_create(MPI_Comm comm, int nbuckets, const size_t *off, const size_t *len,
                            int deterministic);
void cg_gsync_destroy(cg_gsync_t *g); /* NULL-safe; waits for nothing: call wait first */
/* The element type on the wire (CG_GSYNC_FP32 after create). Every rank sets the same; call
 * before the first post. bf16 allocates a bf16 copy of the buffer the buckets span. */
void cg_gsync_set_dtype(cg_gsync_t *g, cg_gsync_dtype_t dt);
cg_gsync_dtype_t cg_gsync_dtype(const cg_gsync_t *g);

/* Starts the all-reduce of bucket b of the flat gradient buffer grad (host memory that must
 * stay untouched until cg_gsync_wait returns). */
void cg_gsync_post(cg_gsync_t *g, int b, float *grad);
/* Lets outstanding reductions progress (MPI_Test); cheap. */
void cg_gsync_progress(cg_gsync_t *g);
/* Completes every posted bucket; returns the seconds spent blocked here. */
double cg_gsync_wait(cg_gsync_t *g);
/* Bytes all-reduced since the last call (for the stats), then resets the counter: per bucket,
 * its elements times the size of the MPI datatype handed to MPI (4 fp32, 2 bf16); 0 with one
 * rank. */
double cg_gsync_take_bytes(cg_gsync_t *g);

/* The host side of a device backend's staged all-reduce: for each bucket b in order, waits
 * until landed(ctx, b) returns (it blocks until the bucket's gradients are in grad, e.g. until
 * their device-to-host copy has completed), posts it and lets MPI progress; then completes
 * every bucket, as cg_gsync_wait. *t_first (optional) gets cg_now() when the first bucket had
 * landed, -1 with no bucket. Returns the seconds spent blocked in the final wait. grad: the
 * flat host buffer, as for cg_gsync_post; copying it back is the caller's. */
double cg_gsync_staged(cg_gsync_t *g, float *grad, void (*landed)(void *ctx, int b), void *ctx,
                       double *t_first);
/* The same with bf16 gradients already on the host (a device backend that rounded them itself,
 * so its copies are half as large): wire is the flat bf16 buffer (bucket b at off[b]), summed in
 * place in bf16, not widened (the caller does, after copying it back). Needs CG_GSYNC_BF16. */
double cg_gsync_staged_bf16(cg_gsync_t *g, uint16_t *wire, void (*landed)(void *ctx, int b),
                            void *ctx, double *t_first);

#endif
