/* gradcast.h: the casts around a bf16 gradient all-reduce (--grad-comm bf16) on the GPU.
 *
 * Per bucket, cg_k_grad_to_bf16 rounds the bucket's fp32 gradients into the bf16 comm buffer
 * on the compute stream (one small kernel, right after the bucket's last producer), NCCL sums
 * that buffer in bf16 on the comm stream (or the host-staged MPI path copies it, half the size,
 * to the host), and cg_k_grad_from_bf16 widens the sums back into the fp32 gradients AdamW
 * reads, on the comm stream. The bits are those of comm/bf16.h (round to nearest even, a NaN
 * stays a quiet NaN of the same sign, overflow to inf); bf16 is carried as uint16_t bit
 * patterns, as on the host.
 *
 * Conventions of kernels.h: the stream comes last, shapes are checked, the launch is checked,
 * nothing synchronises. All pointers are device pointers; n may be 0 (a valid empty launch). */
#ifndef CG_CUDA_GRADCAST_H
#define CG_CUDA_GRADCAST_H

#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* d_out[i] = bf16(d_in[i]) for i < n. */
void cg_k_grad_to_bf16(const float *d_in, uint16_t *d_out, int64_t n, cudaStream_t s);
/* d_out[i] = fp32(d_in[i]) for i < n (exact). */
void cg_k_grad_from_bf16(const uint16_t *d_in, float *d_out, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
