/* mma.cuh: the PTX the tensor-core kernels of this directory share (wgrad.cu, fprop.cu):
 * cp.async of 16-byte chunks, ldmatrix, mma.sync m16n8k16 with fp32 accumulators, and the
 * XOR swizzle of [pixel][channel] tiles in shared memory. Device code only, sm_80 and newer;
 * include after cuda_bf16.h and cuda_fp16.h. With CG_MMA_EMULATE defined only the swizzle is
 * here: tests/emu_cuda.h provides the rest, emulated on the CPU. */
#ifndef CG_CUDA_MMA_CUH
#define CG_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace cg_mma {

/* Which 16-byte chunk of pixel px's row holds logical chunk c: c ^ swz<CP>(px), CP chunks a
 * pixel. Any 8 consecutive pixels then cover the 8 bank groups (16 bytes each) for a fixed c. */
template <int CP> __device__ __forceinline__ int swz(int px) {
  constexpr int sh = CP >= 8 ? 0 : CP == 4 ? 1 : CP == 2 ? 2 : 3;
  constexpr int mask = CP >= 8 ? 7 : CP - 1;
  return (px >> sh) & mask;
}

#ifndef CG_MMA_EMULATE /* tests/emu_cuda.h emulates what follows on the CPU */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t *r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x2_t(uint32_t *r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr)
               : "memory");
}

/* d += A (16x16, row) * B (16x8, col), fp32 accumulators. */
template <typename T>
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float *d, const uint32_t *a, uint32_t b0,
                                                        uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float *d, const uint32_t *a, uint32_t b0,
                                                 uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif /* CG_MMA_EMULATE */
}  // namespace cg_mma

#endif
