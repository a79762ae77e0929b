/* wgrad.cu: the weight (and bias) gradient of a 3x3 pad-1 stride-1 NHWC convolution with few
 * channels, on tensor cores, bitwise reproducible. See wgrad.h for the contract.
 *
 * GEMM view: dw[co][tap][ci] = sum over pixels p of dy[p][co] * x_tap[p][ci], M = cout,
 * N = 9 taps x cin, K = n*h*w pixels (2.1M at 256x256, batch 32). cuDNN splits this poorly when
 * M and N are small and K huge; here K is split across a persistent grid of G = 264 blocks
 * (two per SM on a 132-SM H100/H200), each owning a contiguous run of image rows (flattened
 * over n*h) and keeping its partial dw in fp32 registers for the whole run. The grid depends
 * only on the shape, so the summation order does too.
 *
 * Main kernel (128 threads = 4 warps, __launch_bounds__(128, 2)):
 *  - Block tile: CO_B = 32 or 64 output channels x CI_B = 32 (or 8 / 16 when cin is) input
 *    channels, all 9 taps; a shape with more channels gets cout/CO_B x cin/CI_B tiles, the
 *    blocks of one row run side by side (blockIdx = run * tiles + tile) so the tiles share their
 *    reads of x and dy through L2.
 *  - One step = one output row y of image n. Shared memory holds a ring of x rows (ci tile,
 *    with a zero pixel on each side: the column padding) and a ring of dy rows (co tile).
 *    A tap whose input row is outside the image (row padding) reads that zero pixel in every
 *    lane (a broadcast), which keeps the chunk loop free of branches. x row G (flattened
 *    n*h + y) lives in slot G mod (D + 3), dy row g in slot g mod (D + 1), where D (1..3) is how
 *    many steps ahead cp.async loads run: the rows steps g..g+D need are within
 *    [g - 1, g + D + 1], so they never share a slot, and each x row is loaded once per run (the
 *    first step of a run and of an image load the rows above too). One barrier per step.
 *  - Warps: warp tile WM = CO_B couts x 9 taps x WC input channels, 144 fp32 accumulators per
 *    thread: (32 couts, WC 16) or (64 couts, WC 8) (72 for 32 couts x cin 8). NG = CI_B / WC
 *    warps split the channels, KG = 4 / NG warps split the row's 16-pixel chunks (KG > 1
 *    partials are added in shared memory at the end, in a fixed order).
 *  - mma.sync m16n8k16 (bf16 or fp16, fp32 accumulate): A = dy^T (cout x 16 pixels), B = the
 *    x tap window (16 pixels x 8 ci), both from [pixel][channel] tiles with ldmatrix.trans;
 *    each lane gives its own row address, so the tap shift (r, s) is just another row and
 *    pixel offset. Rows are 16-byte chunks XOR-swizzled by pixel (no padding) so the 8 rows of
 *    every 8x8 matrix hit 8 distinct bank groups; w is padded to a multiple of 16 with zeros.
 *  - db: the same A fragments times a B of ones (one mma per 16x16 A tile), done for a chunk by
 *    one of the NG warps that share it (rotating), on ci tile 0 only.
 *  - Each block writes its partial (in accumulator-register order, coalesced) to d_work.
 * Reduce kernel: per dw element, the G/tiles partials are summed in a fixed order (8 strided
 * lanes, then a fixed 8-way sum), rounded to the element type, written to dw; db likewise.
 *
 * Cost per shape (n = 32, bf16). Bytes: x + dy, with (+...) the re-reads by the other tiles of
 * a row, issued side by side so mostly L2 hits; partials add 10-20 MB. Time: estimated, not yet
 * measured, taking ~350 TFLOP/s sustained for mma.sync (wgmma's 790 is out of reach of
 * mma.sync) and 4 TB/s:
 *   256x256  32->32 : 38.7 GFLOP, 268 MB          -> ~0.12-0.14 ms (cuDNN ~0.34 ms)
 *   256x256  64->32 : 77.3 GFLOP, 402 MB (+134)   -> ~0.23 ms
 *   128x128  32->64 : 19.3 GFLOP, 101 MB          -> ~0.06 ms
 *   128x128  64->64 : 38.7 GFLOP, 134 MB (+67)    -> ~0.12 ms
 *   128x128 128->64 : 77.3 GFLOP, 201 MB (+201)   -> ~0.23 ms
 *   64x64    64->128: 19.3 GFLOP,  50 MB (+50)    -> ~0.06 ms
 *   64x64   128->128: 38.7 GFLOP,  67 MB (+134)   -> ~0.12 ms
 *   64x64   256->128: 77.3 GFLOP, 101 MB (+302)   -> ~0.23 ms
 * Shared-memory traffic: (WM 32) 2 A + 9 B ldmatrix.x4 per 36 mma, (WM 64) 4 A x4 + 9 B x2 per
 * 36 mma: 120-160 bytes per 4096 FLOP, near the SM's 128 B/clock at the mma.sync rate, so the
 * kernel is balanced between tensor cores, shared memory and (at 256x256 32->32) HBM.
 * Resources (nvcc 13.0, sm_90): 136-246 registers, no spills or local memory; 128 threads;
 * dynamic shared memory 11-116 KB (98.8 KB at 256x256 32->32: 2 blocks per SM); SASS: HMMA.16816
 * and LDSM.16.MT88 in a branch-free chunk loop.
 *
 * Alignment: x and dy 16-byte aligned, ldx and lddy multiples of 8 elements (each 16-byte
 * chunk of a pixel is one cp.async). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dtype.cuh"
#include "mma.cuh"
#include "wgrad.h"

#include "wgrad_kernels.cuh"

namespace {

/* ---- launchers ---------------------------------------------------------------------------- */

template <typename T, int CO_B, int CI_B>
cudaError_t launch_main(const plan_t &p, const args_t &a, cudaStream_t stream) {
  auto k = wgrad_main_kernel<T, CO_B, CI_B>;
  /* The limit is the function's, for every launch of it: raised as needed, never lowered (a
   * captured launch of another layer with more shared memory must stay valid at replay). */
  static int raised = 0;
  if (p.smem > raised) {
    const cudaError_t rc = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, p.smem);
    if (rc != cudaSuccess) return rc;
    raised = p.smem;
  }
  k<<<p.grid, kThreads, p.smem, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_main_t(const plan_t &p, const args_t &a, cudaStream_t stream) {
  if (p.co_b == 32) {
    if (p.ci_b == 32) return launch_main<T, 32, 32>(p, a, stream);
    if (p.ci_b == 16) return launch_main<T, 32, 16>(p, a, stream);
    return launch_main<T, 32, 8>(p, a, stream);
  }
  if (p.ci_b == 32) return launch_main<T, 64, 32>(p, a, stream);
  if (p.ci_b == 16) return launch_main<T, 64, 16>(p, a, stream);
  return launch_main<T, 64, 8>(p, a, stream);
}

template <typename T>
cudaError_t run_t(const plan_t &p, const cg_wgrad_shape_t *s, const void *d_x, const void *d_dy,
                  void *d_dw, float *d_db, void *d_work, cudaStream_t stream) {
  const args_t a = make_args(p, s, d_x, d_dy, d_work, d_db != NULL);
  cudaError_t rc = launch_main_t<T>(p, a, stream);
  if (rc != cudaSuccess) return rc;
  const rargs_t r = make_rargs(p, s, a.part, a.do_db);
  dim3 grid((unsigned)((p.pb + 31) / 32), (unsigned)p.tiles), block(32, kRedY);
  wgrad_reduce_kernel<T><<<grid, block, kRedY * 32 * sizeof(float), stream>>>(
      r, static_cast<T *>(d_dw), d_db);
  return cudaGetLastError();
}

}  // namespace

extern "C" int cg_wgrad_supported(const cg_wgrad_shape_t *s) {
  plan_t p;
  return make_plan(s, &p);
}

extern "C" size_t cg_wgrad_work_bytes(const cg_wgrad_shape_t *s) {
  plan_t p;
  if (!make_plan(s, &p)) return 0;
  return (size_t)p.grid * p.pb * sizeof(float);
}

extern "C" void cg_wgrad_describe(const cg_wgrad_shape_t *s, char *buf, size_t len) {
  plan_t p;
  if (!make_plan(s, &p)) {
    snprintf(buf, len, "wgrad: unsupported");
    return;
  }
  snprintf(buf, len,
           "wgrad: tile %dco x %dci (%d tiles), %d runs of ~%d rows, grid %d x %d threads, "
           "depth %d, smem %d B, work %zu B",
           p.co_b, p.ci_b, p.tiles, p.runs, (int)((int64_t)s->n * s->h / p.runs), p.grid,
           kThreads, p.depth, p.smem, (size_t)p.grid * p.pb * sizeof(float));
}

extern "C" cudaError_t cg_wgrad_run(const cg_wgrad_shape_t *s, const void *d_x, const void *d_dy,
                                    void *d_dw, float *d_db, void *d_work, cudaStream_t stream) {
  plan_t p;
  if (!make_plan(s, &p) || !d_x || !d_dy || !d_dw || !d_work) return cudaErrorInvalidValue;
  if (((uintptr_t)d_x | (uintptr_t)d_dy) % 16 || (uintptr_t)d_work % 16)
    return cudaErrorInvalidValue;
  if (s->dt == CG_DT_BF16) return run_t<__nv_bfloat16>(p, s, d_x, d_dy, d_dw, d_db, d_work, stream);
  return run_t<__half>(p, s, d_x, d_dy, d_dw, d_db, d_work, stream);
}

extern "C" cudaError_t cg_wgrad_reference(const cg_wgrad_shape_t *s, const void *d_x,
                                          const void *d_dy, void *d_dw, cudaStream_t stream) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16) || s->k != 3 || s->n < 1 || s->h < 1 ||
      s->w < 1 || s->cin < 1 || s->cout < 1 || s->ldx < s->cin || s->lddy < s->cout || !d_x ||
      !d_dy || !d_dw)
    return cudaErrorInvalidValue;
  const int64_t blocks = (int64_t)s->cout * 9 * s->cin;
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  CG_DT_SWITCH(s->dt, T,
               wgrad_ref_kernel<T><<<(unsigned)blocks, 256, 256 * sizeof(float), stream>>>(
                   static_cast<const T *>(d_x), static_cast<const T *>(d_dy),
                   static_cast<T *>(d_dw), s->n, s->h, s->w, s->cin, s->cout, s->ldx, s->lddy));
  return cudaGetLastError();
}
