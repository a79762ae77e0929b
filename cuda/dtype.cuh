/* dtype.cuh: element-type helpers shared by the CUDA kernels. Activations are float, bf16 or
 * fp16 (cg_dtype_t); every kernel computes in float and rounds to nearest even once on the way
 * out, so to_f/from_f are the only places a conversion happens. Also the 16-byte pack type of
 * the vectorised kernels and the switch from a cg_dtype_t to the element type. */
#ifndef CG_CUDA_DTYPE_CUH
#define CG_CUDA_DTYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_check.h"

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

/* V consecutive elements moved as one aligned load/store (16 bytes when V = 16/sizeof(T)). */
template <typename T, int V> struct alignas(sizeof(T) * V) pack_t {
  T v[V];
};

/* Runs the statements with T the element type of dt (typedef); an unknown dt is fatal. */
#define CG_DT_SWITCH(dt, T, ...)                                                             \
  switch (dt) {                                                                              \
    case CG_DT_F32: {                                                                        \
      typedef float T;                                                                       \
      __VA_ARGS__;                                                                           \
    } break;                                                                                 \
    case CG_DT_BF16: {                                                                       \
      typedef __nv_bfloat16 T;                                                               \
      __VA_ARGS__;                                                                           \
    } break;                                                                                 \
    case CG_DT_F16: {                                                                        \
      typedef __half T;                                                                      \
      __VA_ARGS__;                                                                           \
    } break;                                                                                 \
    default:                                                                                 \
      CG_FATAL("unknown cg_dtype_t %d", (int)(dt));                                          \
  }

#endif
