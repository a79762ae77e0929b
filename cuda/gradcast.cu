/* gradcast.cu: fp32 <-> bf16 casts of gradient buckets for the bf16 all-reduce (gradcast.h).
 *
 * Bit manipulation rather than __float2bfloat16_rn: that intrinsic returns one canonical NaN,
 * while the host's MPI path (comm/bf16.h) keeps the NaN's sign; both paths must give the same
 * bits so that a rank's result does not depend on which all-reduce ran. Memory-bound grid-stride
 * loops; a bucket is at most a few million elements. */
#include <stdint.h>

#include "gradcast.h"
#include "launch.h"

namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ uint16_t to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* nearest, ties to even */
  return (uint16_t)(u >> 16);
}

__global__ void to_bf16_kernel(const float *in, uint16_t *out, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = to_bf16(in[i]);
}

__global__ void from_bf16_kernel(const uint16_t *in, float *out, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __uint_as_float((uint32_t)in[i] << 16);
}

} // namespace

/* ---- launchers ------------------------------------------------------------------------- */

extern "C" void cg_k_grad_to_bf16(const float *d_in, uint16_t *d_out, int64_t n, cudaStream_t s) {
  CG_ASSERT(n >= 0 && (n == 0 || (d_in && d_out)));
  to_bf16_kernel<<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_in, d_out, n);
  CG_CHECK_LAUNCH("to_bf16_kernel");
}

extern "C" void cg_k_grad_from_bf16(const uint16_t *d_in, float *d_out, int64_t n,
                                    cudaStream_t s) {
  CG_ASSERT(n >= 0 && (n == 0 || (d_in && d_out)));
  from_bf16_kernel<<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_in, d_out, n);
  CG_CHECK_LAUNCH("from_bf16_kernel");
}
