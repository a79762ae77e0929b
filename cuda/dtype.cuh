/* dtype.cuh: element-type conversions shared by the CUDA kernels. Activations are float,
 * bf16 or fp16 (cg_dtype_t); every kernel computes in float and rounds to nearest even once
 * on the way out, so these two helpers are the only places a conversion happens. */
#ifndef CG_CUDA_DTYPE_CUH
#define CG_CUDA_DTYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}

#endif
