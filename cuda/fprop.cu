/* fprop.cu: a 3x3 pad-1 stride-1 NHWC convolution on tensor cores (forward, or the input
 * gradient as a forward over dy), with its epilogue. See fprop.h for the contract.
 *
 * GEMM view: per image row, y[x][co] = sum over taps (r, s) and channels ci of
 * xrow(y + r - 1)[x + s - 1][ci] * wk(co, r, s, ci): M = the row's w pixels, N = cout,
 * K = 9 x cin, with the A operand a shifted window of an input row.
 *
 * Block (w / (16 mt) warps, one per 16 mt output pixels, mt = 2 or 4) = a run of consecutive
 * image rows (flattened
 * over n * h; one wave of blocks, SMs x blocks per SM as the occupancy API says, so the weights
 * are loaded once per run and each x row about once). Shared memory holds:
 *  - the weights, all 9 taps, as [tap][row][16-byte chunk] with the rows the filter's first
 *    dimension (cout forward, the layer's cout = our cin for dgrad) and the chunks its last;
 *  - a ring of 4 x rows, [pixel][chunk], with one zero pixel on each side (the column padding):
 *    row G (flattened) in slot G mod 4. While row g is computed, row g + 2 is loading
 *    (cp.async); rows g - 1, g, g + 1 are resident. A tap row outside the image is skipped
 *    (uniform over the block).
 * Rows of both are 16-byte chunks XOR-swizzled by row (cg_mma::swz), so the 8 rows of every
 * 8x8 ldmatrix hit 8 distinct bank groups for any 8 consecutive pixels or weight rows.
 * Warp tile: mt m-tiles of 16 pixels x cout (2, 4 or 8 n-tiles of 8), fp32 accumulators
 * (16-64 per thread with mt 2, 32-64 with mt 4). With 8 input channels (the first layer,
 * forward only) a k-step of 16 is two taps of one row, the third tap paired with the slot's
 * zero pad pixel. Per tap and 16 channels: mt ldmatrix.x4 for A (pixels x channels, row major
 * as stored), cout / 16 ldmatrix.x4 for B (forward: [co][ci] rows as stored, the "col" operand
 * directly; dgrad: [co_layer][ci_layer] rows, i.e. [k][n], through .trans), then mt x cout / 8
 * mma.sync m16n8k16: with mt 4 a B load serves twice the products (shared-memory reads per
 * product -25% at 32 channels out), with half the warps per block.
 * Epilogue straight from the accumulators: each lane owns 2 adjacent channels of a pixel
 * (4-byte loads of bias, mask, old y and the store), in the order of fprop.h.
 *
 * Cost (n = 32, bf16, 256x256, estimated, not yet measured): 32->32: 38.7 GFLOP, 268 MB; at
 * ~350 TFLOP/s for mma.sync ~0.11 ms (cuDNN's fused forward 0.18 ms, dgrad 0.18 ms on an
 * H200); 64->32: 77 GFLOP, 402 MB, ~0.22 ms (cuDNN 0.30 ms). Shared memory: 84 KB at
 * 256 x 32 channels (2 blocks per SM), 168 KB at 256 x 64 (1 block per SM). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.cuh"
#include "fprop.h"
#include "mma.cuh"

#include "fprop_kernels.cuh"

namespace {

using namespace cg_mma;

template <typename T, int CP, int NT, int MT, bool DGRAD>
cudaError_t launch(const plan_t &p, args_t a, cudaStream_t stream) {
  auto k = fprop_kernel<T, CP, NT, MT, DGRAD>;
  /* raised as needed, never lowered: a captured launch of another shape with more shared
   * memory must stay valid at replay. Per process, while the attribute is per device: one
   * process drives one GPU (one rank per GPU). */
  static int raised = 0;
  if (p.smem > raised) {
    const cudaError_t rc =
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, p.smem);
    if (rc != cudaSuccess) return rc;
    raised = p.smem;
  }
  /* one wave: as many runs as blocks fit at once (registers may allow fewer than shared memory
   * does); the result does not depend on it (each output is one thread's sum). Asked once per
   * process (the SM count: one GPU per process, as above) and per block shape. */
  static int sms = 0, occ_threads = -1, occ_smem = -1, per_sm = 1;
  if (!sms) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
      sms = kSms;
  }
  if (p.threads != occ_threads || p.smem != occ_smem) {
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, p.threads, p.smem) !=
            cudaSuccess || per_sm < 1)
      per_sm = 1;
    occ_threads = p.threads;
    occ_smem = p.smem;
  }
  int64_t runs = (int64_t)sms * per_sm;
  /* tests: fewer runs, so that every block computes many rows (its ring of x rows wraps) */
  const char *cap = getenv("CG_FPROP_MAX_RUNS");
  if (cap && atoi(cap) > 0 && atoi(cap) < runs) runs = atoi(cap);
  a.runs = (int)(a.rows < runs ? a.rows : runs);
  k<<<a.runs, p.threads, p.smem, stream>>>(a);
  return cudaGetLastError();
}

template <typename T, int CP, bool DGRAD>
cudaError_t launch_nt(const plan_t &p, const args_t &a, cudaStream_t stream) {
  if (p.mt == 4) { /* 64 pixels a warp: at most 64 channels in, 32 out (make_plan) */
    if constexpr (CP <= 8) {
      if (p.nt == 2) return launch<T, CP, 2, 4, DGRAD>(p, a, stream);
      if (p.nt == 4) return launch<T, CP, 4, 4, DGRAD>(p, a, stream);
    }
    return cudaErrorInvalidValue;
  }
  if (p.nt == 2) return launch<T, CP, 2, 2, DGRAD>(p, a, stream);
  if (p.nt == 4) return launch<T, CP, 4, 2, DGRAD>(p, a, stream);
  return launch<T, CP, 8, 2, DGRAD>(p, a, stream);
}

template <typename T, bool DGRAD>
cudaError_t launch_cp(const plan_t &p, const args_t &a, cudaStream_t stream) {
  switch (p.cp) {
    case 1: /* the forward only (make_plan) */
      if constexpr (!DGRAD) return launch_nt<T, 1, false>(p, a, stream);
      return cudaErrorInvalidValue;
    case 2: return launch_nt<T, 2, DGRAD>(p, a, stream);
    case 4: return launch_nt<T, 4, DGRAD>(p, a, stream);
    case 8: return launch_nt<T, 8, DGRAD>(p, a, stream);
    default: return launch_nt<T, 16, DGRAD>(p, a, stream);
  }
}

template <typename T>
cudaError_t launch_t(const plan_t &p, const cg_fprop_shape_t *s, const args_t &a,
                     cudaStream_t stream) {
  return s->dgrad ? launch_cp<T, true>(p, a, stream) : launch_cp<T, false>(p, a, stream);
}

}  // namespace

extern "C" int cg_fprop_supported(const cg_fprop_shape_t *s) {
  plan_t p;
  return make_plan(s, &p);
}

extern "C" void cg_fprop_describe(const cg_fprop_shape_t *s, char *buf, size_t len) {
  plan_t p;
  if (!make_plan(s, &p)) {
    snprintf(buf, len, "fprop: unsupported");
    return;
  }
  snprintf(buf, len, "fprop%s %dx%d %d->%d: blocks of %d warps of %d pixels, %.1f KB shared"
           "%s%s%s%s",
           s->dgrad ? " (dgrad)" : "", s->h, s->w, s->cin, s->cout, p.threads / 32, 16 * p.mt,
           p.smem / 1024.0, s->bias ? ", +bias" : "", s->relu ? ", relu" : "",
           s->mask ? ", masked" : "", s->accum ? ", accumulated" : "");
}

extern "C" cudaError_t cg_fprop_run(const cg_fprop_shape_t *s, const void *d_x, const void *d_w,
                                    const float *d_bias, const void *d_m, void *d_y,
                                    cudaStream_t stream) {
  plan_t p;
  if (!make_plan(s, &p) || !d_x || !d_w || !d_y || (s->bias && !d_bias) || (s->mask && !d_m))
    return cudaErrorInvalidValue;
  if (((uintptr_t)d_x | (uintptr_t)d_y | (uintptr_t)d_m) % 16 || (uintptr_t)d_w % 2 ||
      (uintptr_t)d_bias % 4)
    return cudaErrorInvalidValue;
  const args_t a = make_args(p, s, d_x, d_w, d_bias, d_m, d_y);
  if (s->dt == CG_DT_BF16) return launch_t<__nv_bfloat16>(p, s, a, stream);
  return launch_t<__half>(p, s, a, stream);
}

extern "C" cudaError_t cg_fprop_reference(const cg_fprop_shape_t *s, const void *d_x,
                                          const void *d_w, const float *d_bias, const void *d_m,
                                          void *d_y, cudaStream_t stream) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16) || s->n < 1 || s->h < 1 || s->w < 1 ||
      s->cin < 1 || s->cout < 1 || s->ldx < s->cin || s->ldy < s->cout ||
      (s->mask && s->ldm < s->cout) || !d_x || !d_w || !d_y || (s->bias && !d_bias) ||
      (s->mask && !d_m))
    return cudaErrorInvalidValue;
  const int64_t total = (int64_t)s->n * s->h * s->w * s->cout;
  const unsigned grid = (unsigned)((total + 255) / 256 < 65536 ? (total + 255) / 256 : 65536);
  CG_DT_SWITCH(s->dt, T,
               fprop_ref_kernel<T><<<grid, 256, 0, stream>>>(
                   static_cast<const T *>(d_x), static_cast<const T *>(d_w),
                   s->bias ? d_bias : nullptr, s->mask ? static_cast<const T *>(d_m) : nullptr,
                   static_cast<T *>(d_y), s->n, s->h, s->w, s->cin, s->cout, s->dgrad, s->ldx,
                   s->ldy, s->ldm, s->relu, s->accum));
  return cudaGetLastError();
}
