/* head.h: the UNet's final 1x1 convolution to one logit (or K, multi-class), as custom kernels.
 *
 * cuDNN is a poor fit for a single output channel in NHWC (K = 1 has no tensor-core tiling),
 * and the operation is a dot product per pixel: memory-bound, one pass.
 *
 * Shapes: x is npix pixels x c channels, dense NHWC, element type dt; the weight w is c values
 * of type dt (the compute-precision copy of [1][1][1][c]); the bias b is one fp32 value (the
 * master copy). The logit and its gradient are npix values of type dt (one channel).
 * Accumulation is fp32. Launchers take the stream they run on and never synchronise. */
#ifndef CG_CUDA_HEAD_H
#define CG_CUDA_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* logit[p] = b + sum_c x[p][c] w[c]. */
void cg_head_fwd(cg_dtype_t dt, const void *d_x, int64_t npix, int c, const void *d_w,
                 const float *d_b, void *d_logit, cudaStream_t s);

/* Scratch bytes cg_head_bwd needs for (npix, c). */
size_t cg_head_bwd_work_bytes(int64_t npix, int c);

/* Backward, all outputs overwritten:
 *   dx[p][c] = dlogit[p] w[c]          (dt; skipped when d_dx is NULL)
 *   dw[c]    = sum_p dlogit[p] x[p][c] (fp32, straight into the flat gradient buffer)
 *   db       = sum_p dlogit[p]         (fp32, one value)
 * The sums run in a fixed order that depends only on (npix, c): bitwise reproducible.
 * d_work: cg_head_bwd_work_bytes(npix, c) bytes. */
void cg_head_bwd(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                 int64_t npix, int c, void *d_dx, float *d_dw, float *d_db, void *d_work,
                 cudaStream_t s);

/* cg_head_bwd fused with the backward of the ReLU and bias that produced x (x is the ReLU's
 * output), in one pass over x and dlogit (x and dx dense):
 *   dx[p][c]     = dlogit[p] w[c], or exactly 0 where relu_x and !(x[p][c] > 0)
 *                  (dt, one rounding; d_dx must not be NULL)
 *   dw, db       as cg_head_bwd (fp32, overwritten; a fixed order too, not cg_head_bwd's, so
 *                  equal to it up to rounding, not bitwise)
 *   d_dbias_x[c] = sum_p dx[p][c] of dx as stored (rounded to dt), fp32, overwritten; nullable.
 * Every sum runs in an order fixed by (npix, c) and the packed/unpacked choice: bitwise
 * reproducible. npix == 0 writes zeros to dw, db and d_dbias_x.
 * Scratch: cg_head_bwd_fused_work_bytes(npix, c) bytes (contents need no initialisation). */
size_t cg_head_bwd_fused_work_bytes(int64_t npix, int c);
void cg_head_bwd_fused(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                       int64_t npix, int c, void *d_dx, int relu_x, float *d_dbias_x,
                       float *d_dw, float *d_db, void *d_work, cudaStream_t s);

/* K outputs (the multi-class head): w is [K][c] (dt), b is K fp32 values, the logits and
 * their gradient npix x K (dt, dense NHWC).
 *   forward:  logit[p][k] = b[k] + sum_c x[p][c] w[k][c]
 *   backward (all outputs overwritten):
 *     dx[p][c]   = sum_k dlogit[p][k] w[k][c], exactly 0 where relu_x and !(x[p][c] > 0)
 *                  (dt; skipped when d_dx is NULL)
 *     dw[k][c]   = sum_p dlogit[p][k] x[p][c]; db[k] = sum_p dlogit[p][k] (fp32)
 *     d_dbias_x  (nullable; needs d_dx) [c] = sum_p dx[p][c] as stored (rounded to dt), fp32
 * Every sum runs in an order fixed by (npix, c, K): bitwise reproducible. K = 1 is valid but
 * the binary model uses the kernels above. d_work: cg_head_k_bwd_work_bytes(npix, c, K). */
void cg_head_k_fwd(cg_dtype_t dt, const void *d_x, int64_t npix, int c, int k, const void *d_w,
                   const float *d_b, void *d_logit, cudaStream_t s);
size_t cg_head_k_bwd_work_bytes(int64_t npix, int c, int k);
void cg_head_k_bwd(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                   int64_t npix, int c, int k, void *d_dx, int relu_x, float *d_dbias_x,
                   float *d_dw, float *d_db, void *d_work, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
