/* kernels_feat.cu: input preparation (normalisation + Sobel + 5x5 local variance) from RGB8
 * and confusion counts on the GPU, for the CPU/GPU work split. See kernels_feat.h.
 *
 * Input preparation must reproduce cg_pack_input (src/data/feat.c) so that a sample is the same
 * whichever side prepared it. The CPU code is compiled without FMA contraction (ISO C mode), so
 * every operation here is an explicitly rounded intrinsic (__fadd_rn, __dmul_rn, ...) applied
 * in the CPU's order: nvcc never contracts those, and the fp32 result is then bitwise the
 * CPU's. The local variance keeps the CPU's numerics: centred values (g - 0.5), 5-row column
 * sums then 5-column sums, E[d^2] - E[d]^2 in double (a float E[d^2] - E[d]^2 cancels badly on
 * flat windows). fp64 costs little here: the kernel is bound by its output writes.
 *
 * One block computes a 32 x 16 output tile of one image (blockIdx.z = image):
 *  1. gray of the 36 x 20 tile plus a halo of 2, loaded with clamped coordinates: a clamped
 *     load *is* the CPU's replicated border, for Sobel (halo 1) and the 5x5 window (halo 2);
 *  2. the 5-row sums of d = g - 0.5 and d^2 for every (output row, halo column), in double;
 *  3. per output pixel: normalised RGB (re-read from global, cached), Sobel from the gray tile,
 *     variance from 5 consecutive column sums; channels 5..cpad-1 are zeros.
 * Samples prepared on the CPU are only cast and padded (cg_k_pad_channels_from_f32).
 *
 * Confusion counts are two passes over integers: block (chunk j, sample i) counts (tp,
 * predicted positives, true positives, pixels) of a fixed chunk of sample i into a partial
 * (zeros for a weight-0 sample); one block then sums the partials and derives fp, fn, tn. No
 * atomics, no memset: d_counts is simply overwritten. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "dtype.cuh"
#include "kernels.h"
#include "kernels_feat.h"
#include "launch.h"

extern "C" {
#include "feat.h"
}

static_assert(CG_NFEAT == 2, "cg_k_prep_input computes exactly the two features of feat.h");

namespace {

constexpr int kInC = 3 + CG_NFEAT; /* channels of the prepared input (before padding) */

/* input preparation: tile and block shape */
constexpr int kHalo = 2;                   /* 5x5 window; Sobel needs 1 */
constexpr int kTileW = 32, kTileH = 16;    /* output pixels per block */
constexpr int kBlockX = 32, kBlockY = 8;   /* threads; each does kTileH / kBlockY rows */
constexpr int kThreads = kBlockX * kBlockY;
constexpr int kGW = kTileW + 2 * kHalo, kGH = kTileH + 2 * kHalo; /* gray tile with halo */
static_assert(kBlockX == kTileW && kTileH % kBlockY == 0, "thread x = output column");

/* confusion counts */
constexpr int kCBlock = 256;               /* multiple of 32 */
constexpr int64_t kCChunkPix = 16384;      /* pixels per block (before the cap) */
constexpr int kCMaxChunks = 256;           /* per sample */

/* ---- element types ------------------------------------------------------------------- */

/* One pixel's 8 channels stored at once (16 bytes for halves, two 16-byte stores for float). */
template <typename T> struct alignas(8 * sizeof(T)) pack8_t {
  T v[8];
};

/* ---- the CPU's arithmetic, rounded step by step -------------------------------------- */

__device__ __forceinline__ int clampi(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* cg_feat_gray: (0.299f * R + 0.587f * G + 0.114f * B) / 255.0f, left to right. */
__device__ __forceinline__ float gray_of(const uint8_t *p) {
  float s = __fadd_rn(__fmul_rn(0.299f, (float)p[0]), __fmul_rn(0.587f, (float)p[1]));
  s = __fadd_rn(s, __fmul_rn(0.114f, (float)p[2]));
  return __fdiv_rn(s, 255.0f);
}

/* cg_pack_input: ((float)v / 255.0f - 0.5f) / 0.25f. */
__device__ __forceinline__ float norm_of(uint8_t v) {
  return __fdiv_rn(__fsub_rn(__fdiv_rn((float)v, 255.0f), 0.5f), 0.25f);
}

/* sobel_at of feat.c: u/m/d rows, columns xm, x, xp. */
__device__ __forceinline__ float sobel_of(const float *u, const float *m, const float *d, int xm,
                                          int x, int xp) {
  const float gx = __fsub_rn(__fadd_rn(__fadd_rn(u[xp], __fmul_rn(2.0f, m[xp])), d[xp]),
                             __fadd_rn(__fadd_rn(u[xm], __fmul_rn(2.0f, m[xm])), d[xm]));
  const float gy = __fsub_rn(__fadd_rn(__fadd_rn(d[xm], __fmul_rn(2.0f, d[x])), d[xp]),
                             __fadd_rn(__fadd_rn(u[xm], __fmul_rn(2.0f, u[x])), u[xp]));
  return __fsqrt_rn(__fadd_rn(__fmul_rn(gx, gx), __fmul_rn(gy, gy)));
}

/* ---- kernels --------------------------------------------------------------------------- */

/* Block (blockIdx.x, blockIdx.y) = output tile, blockIdx.z = image of rgb; out points at the
 * first GPU-prepared sample. PACK8: cpad == 8 and out aligned to one pixel (8 elements). */
template <typename T, bool PACK8>
__global__ void __launch_bounds__(kThreads)
    prep_rgb_kernel(const uint8_t *rgb, int h, int w, int cpad, T *out) {
  __shared__ float sg[kGH][kGW];
  __shared__ double s1[kTileH][kGW], s2[kTileH][kGW];
  const int tid = threadIdx.y * kBlockX + threadIdx.x;
  const int x0 = blockIdx.x * kTileW, y0 = blockIdx.y * kTileH;
  const size_t hw = (size_t)h * w;
  const uint8_t *img = rgb + (size_t)blockIdx.z * hw * 3;

  /* 1. gray of the halo'd tile; sg[r][c] = gray(clamp(y0 + r - 2), clamp(x0 + c - 2)) */
  for (int i = tid; i < kGH * kGW; i += kThreads) {
    const int r = i / kGW, c = i - r * kGW;
    const int gy = clampi(y0 + r - kHalo, 0, h - 1), gx = clampi(x0 + c - kHalo, 0, w - 1);
    sg[r][c] = gray_of(img + ((size_t)gy * w + gx) * 3);
  }
  __syncthreads();

  /* 2. 5-row sums of d and d^2 for output row r (gray rows r..r+4 = image rows y-2..y+2),
   *    in the CPU's order: a = 0 + d0 + d1 + ... + d4 */
  for (int i = tid; i < kTileH * kGW; i += kThreads) {
    const int r = i / kGW, c = i - r * kGW;
    double a = 0.0, b = 0.0;
#pragma unroll
    for (int k = 0; k < 5; k++) {
      const double d = __dsub_rn((double)sg[r + k][c], 0.5);
      a = __dadd_rn(a, d);
      b = __dadd_rn(b, __dmul_rn(d, d));
    }
    s1[r][c] = a;
    s2[r][c] = b;
  }
  __syncthreads();

  /* 3. one output column per thread; rows threadIdx.y, + kBlockY, ... */
  const int tx = threadIdx.x, x = x0 + tx;
  if (x >= w) return; /* no barrier follows */
  for (int r = threadIdx.y; r < kTileH; r += kBlockY) {
    const int y = y0 + r;
    if (y >= h) break;
    const size_t pix = (size_t)y * w + x;
    const uint8_t *p = img + pix * 3;
    /* gray tile position of (y, x) is (r + 2, tx + 2); its clamped neighbours are in the halo */
    const int gr = r + kHalo, gc = tx + kHalo;
    const float sob = sobel_of(sg[gr - 1], sg[gr], sg[gr + 1], gc - 1, gc, gc + 1);
    /* column sums of image columns x-2..x+2 are s[r][tx..tx+4], summed left to right */
    double a = s1[r][tx], b = s2[r][tx];
#pragma unroll
    for (int j = 1; j < 5; j++) {
      a = __dadd_rn(a, s1[r][tx + j]);
      b = __dadd_rn(b, s2[r][tx + j]);
    }
    const double mean = __dmul_rn(a, 1.0 / 25.0);
    const double var = __dsub_rn(__dmul_rn(b, 1.0 / 25.0), __dmul_rn(mean, mean));
    const float lv = __double2float_rn(__dmul_rn(fabs(var), (double)CG_VAR_SCALE));

    const float v[kInC] = {norm_of(p[0]), norm_of(p[1]), norm_of(p[2]), sob, lv};
    T *o = out + ((size_t)blockIdx.z * hw + pix) * cpad;
    if (PACK8) {
      pack8_t<T> q;
#pragma unroll
      for (int c = 0; c < 8; c++) q.v[c] = from_f<T>(c < kInC ? v[c] : 0.0f);
      *reinterpret_cast<pack8_t<T> *>(o) = q;
    } else {
#pragma unroll
      for (int c = 0; c < kInC; c++) o[c] = from_f<T>(v[c]);
      for (int c = kInC; c < cpad; c++) o[c] = from_f<T>(0.0f);
    }
  }
}

/* Sum of an unsigned 64-bit value over the block (kCBlock threads) into thread 0's return;
 * red: kCBlock / 32 entries. Every thread must call it (it has barriers). */
__device__ __forceinline__ unsigned long long block_sum_u64(unsigned long long v,
                                                            unsigned long long *red) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* red may still be read by a previous call */
  if (lane == 0) red[warp] = v;
  __syncthreads();
  unsigned long long t = 0;
  if (threadIdx.x == 0)
    for (int k = 0; k < kCBlock / 32; k++) t += red[k];
  return t;
}

/* Block (chunk j, sample i): partial[(i * nchunks + j) * 4 + {0,1,2,3}] = (tp, predicted
 * positives, true positives, pixels) of pixels [j * chunk, (j + 1) * chunk) of sample i, or
 * zeros when !(weight[i] > 0). */
__global__ void __launch_bounds__(kCBlock)
    confusion_partial_kernel(const uint8_t *pred, const uint8_t *mask, const float *weight,
                             int64_t hw, int64_t chunk, int nchunks, int ign,
                             unsigned long long *partial) {
  __shared__ unsigned long long red[kCBlock / 32];
  const int i = blockIdx.y, j = blockIdx.x, t = threadIdx.x;
  unsigned long long *part = partial + ((size_t)i * nchunks + j) * 4;
  const int64_t p0 = (int64_t)j * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  if (!(weight[i] > 0.0f) || p0 >= p1) { /* uniform over the block: no barrier is skipped */
    if (t < 4) part[t] = 0;
    return;
  }
  const uint8_t *pp = pred + (size_t)i * hw, *mp = mask + (size_t)i * hw;
  unsigned long long tp = 0, np = 0, ny = 0, ni = 0;
  for (int64_t q = p0 + t; q < p1; q += kCBlock) {
    if (mp[q] == ign) { /* ign < 0: never */
      ni++;
      continue;
    }
    const unsigned a = pp[q] != 0, b = mp[q] != 0;
    tp += a & b;
    np += a;
    ny += b;
  }
  tp = block_sum_u64(tp, red);
  np = block_sum_u64(np, red);
  ny = block_sum_u64(ny, red);
  ni = block_sum_u64(ni, red);
  if (t == 0) {
    part[0] = tp;
    part[1] = np;
    part[2] = ny;
    part[3] = (unsigned long long)(p1 - p0) - ni;
  }
}

/* One block: sums the nparts partials and writes {tp, fp, fn, tn}. */
__global__ void __launch_bounds__(kCBlock)
    confusion_final_kernel(const unsigned long long *partial, int64_t nparts,
                           unsigned long long *counts) {
  __shared__ unsigned long long red[kCBlock / 32];
  unsigned long long s[4] = {0, 0, 0, 0};
  for (int64_t k = threadIdx.x; k < nparts; k += kCBlock)
#pragma unroll
    for (int q = 0; q < 4; q++) s[q] += partial[k * 4 + q];
#pragma unroll
  for (int q = 0; q < 4; q++) s[q] = block_sum_u64(s[q], red);
  if (threadIdx.x == 0) {
    const unsigned long long tp = s[0], np = s[1], ny = s[2], all = s[3];
    counts[0] = tp;
    counts[1] = np - tp;
    counts[2] = ny - tp;
    counts[3] = all - np - ny + tp;
  }
}

/* ---- host helpers ---------------------------------------------------------------------- */

/* A pure function of hw: fixes the work size and the summation order. */
cg_chunk_plan_t conf_plan(int64_t hw) { return cg_chunk_plan(hw, kCChunkPix, kCMaxChunks); }

template <typename T>
void prep_rgb_launch(const uint8_t *d_rgb, int ngpu, int h, int w, int cpad, void *d_out,
                     cudaStream_t s) {
  const dim3 grid((unsigned)((w + kTileW - 1) / kTileW), (unsigned)((h + kTileH - 1) / kTileH),
                  (unsigned)ngpu);
  const dim3 block(kBlockX, kBlockY);
  T *out = static_cast<T *>(d_out);
  if (cpad == 8 && ((uintptr_t)d_out % sizeof(pack8_t<T>)) == 0)
    prep_rgb_kernel<T, true><<<grid, block, 0, s>>>(d_rgb, h, w, cpad, out);
  else
    prep_rgb_kernel<T, false><<<grid, block, 0, s>>>(d_rgb, h, w, cpad, out);
}

}  // namespace

/* ---- launchers ------------------------------------------------------------------------- */

void cg_k_prep_input(cg_dtype_t dt, const float *d_x, int n_cpu, const uint8_t *d_rgb, int n,
                     int h, int w, int cpad, void *d_out, cudaStream_t s) {
  CG_ASSERT(n >= 0 && n_cpu >= 0 && n_cpu <= n && h >= 1 && w >= 1 && cpad >= kInC);
  CG_ASSERT(dt == CG_DT_F32 || dt == CG_DT_BF16 || dt == CG_DT_F16);
  const int ngpu = n - n_cpu;
  /* grid limits: y and z are at most 65535 */
  CG_ASSERT(ngpu <= 65535 && (h + kTileH - 1) / kTileH <= 65535);
  if (n == 0) return;
  CG_ASSERT(d_out != NULL);
  const int64_t hw = (int64_t)h * w;
  if (n_cpu > 0) {
    CG_ASSERT(d_x != NULL);
    cg_k_pad_channels_from_f32(dt, d_x, (int64_t)n_cpu * hw, kInC, cpad, d_out, s);
  }
  if (ngpu == 0) return;
  CG_ASSERT(d_rgb != NULL);
  void *out = static_cast<char *>(d_out) + (size_t)n_cpu * hw * cpad * cg_dtype_size(dt);
  switch (dt) {
    case CG_DT_F32: prep_rgb_launch<float>(d_rgb, ngpu, h, w, cpad, out, s); break;
    case CG_DT_BF16: prep_rgb_launch<__nv_bfloat16>(d_rgb, ngpu, h, w, cpad, out, s); break;
    case CG_DT_F16: prep_rgb_launch<__half>(d_rgb, ngpu, h, w, cpad, out, s); break;
  }
  CG_CHECK_LAUNCH("prep_rgb_kernel");
}

size_t cg_k_confusion_work_bytes(int n, int64_t hw) {
  CG_ASSERT(n >= 0 && hw >= 0);
  const cg_chunk_plan_t q = conf_plan(hw);
  return sizeof(unsigned long long) * 4 * (size_t)n * q.nchunks;
}

void cg_k_confusion(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight, int n,
                    int64_t hw, unsigned long long *d_counts, void *d_work, cudaStream_t s) {
  cg_k_confusion_ign(d_pred, d_mask, d_weight, n, hw, -1, d_counts, d_work, s);
}

void cg_k_confusion_ign(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight,
                        int n, int64_t hw, int ignore, unsigned long long *d_counts,
                        void *d_work, cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 0);
  CG_ASSERT(ignore >= -1 && ignore <= 255);
  CG_ASSERT(d_counts != NULL);
  const cg_chunk_plan_t q = conf_plan(hw);
  unsigned long long *partial = static_cast<unsigned long long *>(d_work);
  int64_t nparts = 0;
  if (n > 0 && hw > 0) {
    CG_ASSERT(d_pred != NULL && d_mask != NULL && d_weight != NULL && d_work != NULL);
    CG_ASSERT(((uintptr_t)d_work % sizeof(unsigned long long)) == 0);
    nparts = (int64_t)n * q.nchunks;
    confusion_partial_kernel<<<dim3((unsigned)q.nchunks, (unsigned)n), kCBlock, 0, s>>>(
        d_pred, d_mask, d_weight, hw, q.chunk, q.nchunks, ignore, partial);
    CG_CHECK_LAUNCH("confusion_partial_kernel");
  }
  confusion_final_kernel<<<1, kCBlock, 0, s>>>(partial, nparts, d_counts);
  CG_CHECK_LAUNCH("confusion_final_kernel");
}

/* ---- K x K confusion counts ------------------------------------------------------------
 * Integer sums are exact in any order, so atomics are deterministic here: block (chunk j,
 * sample i) counts its pixels into a shared-memory histogram of K*K 32-bit bins (global
 * 64-bit atomics when K*K does not fit), then adds its non-zero bins to the 64-bit totals. */

namespace {

constexpr int kKCBlock = 256;
constexpr int kKCShmBins = 12 * 1024; /* 48 KiB of 32-bit bins: K <= 110 in shared memory */

__global__ void __launch_bounds__(kKCBlock)
    confusion_k_kernel(const uint8_t *pred, const uint8_t *mask, const float *weight,
                       int64_t hw, int64_t chunk, int K, int ign, int shm_bins,
                       unsigned long long *counts) {
  extern __shared__ unsigned int bins[];
  const int i = blockIdx.y, j = blockIdx.x, t = threadIdx.x;
  const int kk = K * K;
  const int64_t p0 = (int64_t)j * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  if (!(weight[i] > 0.0f) || p0 >= p1) return; /* uniform over the block */
  if (shm_bins) {
    for (int e = t; e < kk; e += kKCBlock) bins[e] = 0;
    __syncthreads();
  }
  const uint8_t *pp = pred + (size_t)i * hw, *mp = mask + (size_t)i * hw;
  for (int64_t q = p0 + t; q < p1; q += kKCBlock) {
    const int y = mp[q], a = pp[q];
    if (y >= K || y == ign || a >= K) continue; /* ignore pixels (and ids out of range) */
    if (shm_bins)
      atomicAdd(&bins[y * K + a], 1u);
    else
      atomicAdd(&counts[y * K + a], 1ull);
  }
  if (shm_bins) {
    __syncthreads();
    for (int e = t; e < kk; e += kKCBlock)
      if (bins[e]) atomicAdd(&counts[e], (unsigned long long)bins[e]);
  }
}

}  // namespace

void cg_k_confusion_k(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight, int n,
                      int64_t hw, int nclass, int ignore, unsigned long long *d_counts,
                      cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 0 && nclass >= 2 && nclass <= 255);
  CG_ASSERT(ignore >= -1 && ignore <= 255);
  CG_ASSERT(d_counts != NULL);
  const int kk = nclass * nclass;
  CG_CHECK_CUDA(cudaMemsetAsync(d_counts, 0, (size_t)kk * sizeof(unsigned long long), s));
  if (n == 0 || hw == 0) return;
  CG_ASSERT(d_pred != NULL && d_mask != NULL && d_weight != NULL);
  const cg_chunk_plan_t q = conf_plan(hw);
  const int shm = kk <= kKCShmBins;
  confusion_k_kernel<<<dim3((unsigned)q.nchunks, (unsigned)n), kKCBlock,
                       shm ? (size_t)kk * sizeof(unsigned int) : 0, s>>>(
      d_pred, d_mask, d_weight, hw, q.chunk, nclass, ignore, shm, d_counts);
  CG_CHECK_LAUNCH("confusion_k_kernel");
}
