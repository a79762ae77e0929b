/* fprop.cu: a 3x3 pad-1 stride-1 NHWC convolution on tensor cores (forward, or the input
 * gradient as a forward over dy), with its epilogue. See fprop.h for the contract.
 *
 * GEMM view: per image row, y[x][co] = sum over taps (r, s) and channels ci of
 * xrow(y + r - 1)[x + s - 1][ci] * wk(co, r, s, ci): M = the row's w pixels, N = cout,
 * K = 9 x cin, with the A operand a shifted window of an input row.
 *
 * Block (w / 32 warps, one per 32 output pixels) = a run of consecutive image rows (flattened
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
 * Warp tile: 2 m-tiles of 16 pixels x cout (2, 4 or 8 n-tiles of 8), fp32 accumulators
 * (16-64 per thread). With 8 input channels (the first layer, forward only) a k-step of 16 is
 * two taps of one row, the third tap paired with the slot's zero pad pixel. Per tap and 16
 * channels: 2 ldmatrix.x4 for A (pixels x channels, row
 * major as stored), cout / 16 ldmatrix.x4 for B (forward: [co][ci] rows as stored, the "col"
 * operand directly; dgrad: [co_layer][ci_layer] rows, i.e. [k][n], through .trans), then
 * 2 x cout / 8 mma.sync m16n8k16.
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

#include "dtype.cuh"
#include "fprop.h"
#include "mma.cuh"

namespace {

using namespace cg_mma;

constexpr int kSlots = 4;        /* x rows resident: g - 1, g, g + 1, and g + 2 loading */
constexpr int kSms = 132;        /* H100 / H200: if the device cannot be asked */
constexpr int kSmemMax = 232448; /* 227 KB: the per-block opt-in limit of sm_90 */
constexpr int kMT = 2;           /* m-tiles of 16 pixels per warp */

struct plan_t {
  int cp, nt;         /* 16-byte chunks of an x pixel (cin / 8), n-tiles (cout / 8) */
  int wr, wcp;        /* weight rows (filter dim 0) and their chunks (filter dim 3 / 8) */
  int xslot, woff, smem;
  int threads;
};

int make_plan(const cg_fprop_shape_t *s, plan_t *p) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16)) return 0;
  if (s->n < 1 || s->h < 1 || (int64_t)s->n * s->h > (1 << 30)) return 0;
  if (s->w < 32 || s->w > 256 || s->w % 32) return 0;
  if (s->cin != 16 && s->cin != 32 && s->cin != 64 && s->cin != 128 && (s->cin != 8 || s->dgrad))
    return 0;
  if (s->cout != 16 && s->cout != 32 && s->cout != 64) return 0;
  if (s->ldx < s->cin || s->ldy < s->cout || s->ldx % 8 || s->ldy % 8) return 0;
  if (s->mask && (s->ldm < s->cout || s->ldm % 8)) return 0;
  if ((s->dgrad | s->bias | s->relu | s->mask | s->accum) & ~1) return 0;
  plan_t q;
  q.cp = s->cin / 8;
  q.nt = s->cout / 8;
  q.wr = s->dgrad ? s->cin : s->cout;
  q.wcp = s->dgrad ? s->cout / 8 : s->cin / 8;
  q.xslot = (s->w + 2) * q.cp * 16;
  q.woff = kSlots * q.xslot;
  q.smem = q.woff + 9 * q.wr * q.wcp * 16;
  if (q.smem > kSmemMax) return 0;
  q.threads = s->w;
  *p = q;
  return 1;
}

/* Kernel arguments (by value). */
struct args_t {
  const void *x, *wt, *m;
  const float *bias;
  void *y;
  int h, w, rows, runs;
  int64_t ldx, ldy, ldm;
  int xslot, woff;
  int bias_on, relu, mask, accum;
};

/* x row G (w pixels of CP chunks, stride ld) into a ring slot, pixel 1 on (0 is the pad). */
template <typename T, int CP>
__device__ __forceinline__ void load_xrow(uint32_t slot, const T *src, int64_t ld, int w, int tid,
                                          int nthr) {
  for (int q = tid; q < w * CP; q += nthr) {
    const int col = q / CP, c = q % CP, px = col + 1;
    cp_async16(slot + (uint32_t)((px * CP + (c ^ swz<CP>(px))) << 4),
               src + (int64_t)col * ld + c * 8);
  }
}

/* Two elements of type T packed in 32 bits, and back. */
template <typename T> __device__ __forceinline__ void unpack2(uint32_t u, float *a, float *b) {
  T e[2];
  memcpy(e, &u, 4);
  *a = to_f(e[0]);
  *b = to_f(e[1]);
}
template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b) {
  T e[2] = {from_f<T>(a), from_f<T>(b)};
  uint32_t u;
  memcpy(&u, e, 4);
  return u;
}

/* The contribution of kernel row r (x row in the slot at xs) to the warp's accumulators: its
 * three taps, each as k-steps of 16 channels. Lane roles: A rows = pixels (lane & 15), chunk
 * 2 kc + (lane >> 4); B forward rows = cout (j + (lane >> 4)) * 8 + (lane & 7), chunk
 * 2 kc + ((lane >> 3) & 1); B dgrad rows = 16 kc + ((lane >> 3) & 1) * 8 + (lane & 7), chunk
 * j + (lane >> 4). With 8 channels (the first layer) a k-step is two taps (s, s + 1), the third
 * tap paired with a zero half of A (the slot's pad pixel; B then repeats finite weights). */
template <typename T, int CP, int NT, bool DGRAD>
__device__ __forceinline__ void mma_row(float (&acc)[kMT][NT][4], uint32_t xs, uint32_t wbase,
                                        int r, int x0, int lane) {
  constexpr int WCP = DGRAD ? NT : CP;        /* chunks of a weight row */
  constexpr int WR = DGRAD ? CP * 8 : NT * 8; /* weight rows */
  const int a_px = lane & 15, a_c = lane >> 4;
  const int b_hi = (lane >> 3) & 1, b_lo = lane & 7;
  if constexpr (CP == 1) {
#pragma unroll
    for (int sp = 0; sp < 2; sp++) {
      const int s0 = 2 * sp, s1 = s0 + 1, tap0 = r * 3 + s0;
      uint32_t af[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; mt++) {
        const int px = !a_c ? x0 + mt * 16 + a_px + s0 : s1 < 3 ? x0 + mt * 16 + a_px + s1 : 0;
        ldsm_x4(af[mt], xs + (uint32_t)(px << 4));
      }
      const int tap_b = b_hi && s1 < 3 ? tap0 + 1 : tap0;
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        uint32_t bf[4];
        ldsm_x4(bf, wbase + (uint32_t)((tap_b * WR + (j + a_c) * 8 + b_lo) << 4));
#pragma unroll
        for (int mt = 0; mt < kMT; mt++) {
          mma16816<T>(acc[mt][j], af[mt], bf[0], bf[1]);
          mma16816<T>(acc[mt][j + 1], af[mt], bf[2], bf[3]);
        }
      }
    }
  } else {
#pragma unroll
    for (int s = 0; s < 3; s++) {
      const int tap = r * 3 + s;
      const uint32_t wsb = wbase + (uint32_t)((DGRAD ? 8 - tap : tap) * WR * WCP * 16);
#pragma unroll
      for (int kc = 0; kc < CP / 2; kc++) {
        uint32_t af[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; mt++) {
          const int px = x0 + mt * 16 + a_px + s, c = 2 * kc + a_c;
          ldsm_x4(af[mt], xs + (uint32_t)((px * CP + (c ^ swz<CP>(px))) << 4));
        }
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
          uint32_t bf[4];
          if (!DGRAD) {
            const int row = (j + a_c) * 8 + b_lo, c = 2 * kc + b_hi;
            ldsm_x4(bf, wsb + (uint32_t)((row * WCP + (c ^ swz<WCP>(row))) << 4));
          } else {
            const int row = 16 * kc + b_hi * 8 + b_lo, c = j + a_c;
            ldsm_x4_t(bf, wsb + (uint32_t)((row * WCP + (c ^ swz<WCP>(row))) << 4));
          }
#pragma unroll
          for (int mt = 0; mt < kMT; mt++) {
            mma16816<T>(acc[mt][j], af[mt], bf[0], bf[1]);
            mma16816<T>(acc[mt][j + 1], af[mt], bf[2], bf[3]);
          }
        }
      }
    }
  }
}

/* The epilogue of output row g: lane owns channels co_l, co_l + 1 of pixels (lane >> 2) and + 8
 * of each of the warp's tiles; bias, ReLU, mask, accumulation in the order of fprop.h. */
template <typename T, int NT>
__device__ __forceinline__ void store_row(const args_t &a, const float (&acc)[kMT][NT][4],
                                          const float (&bias_r)[NT][2], int g, int x0, int lane) {
  T *yg = static_cast<T *>(a.y);
  const T *mg = static_cast<const T *>(a.m);
  const int co_l = 2 * (lane & 3);
#pragma unroll
  for (int mt = 0; mt < kMT; mt++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      const int64_t pix = (int64_t)g * a.w + x0 + mt * 16 + (lane >> 2) + hf * 8;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        float v0 = acc[mt][j][2 * hf] + bias_r[j][0], v1 = acc[mt][j][2 * hf + 1] + bias_r[j][1];
        if (a.relu) {
          v0 = v0 > 0.0f ? v0 : 0.0f;
          v1 = v1 > 0.0f ? v1 : 0.0f;
        }
        const int co = j * 8 + co_l;
        if (a.mask) {
          float m0, m1;
          unpack2<T>(*reinterpret_cast<const uint32_t *>(mg + pix * a.ldm + co), &m0, &m1);
          if (!(m0 > 0.0f)) v0 = 0.0f;
          if (!(m1 > 0.0f)) v1 = 0.0f;
        }
        uint32_t *dst = reinterpret_cast<uint32_t *>(yg + pix * a.ldy + co);
        if (a.accum) {
          float o0, o1;
          unpack2<T>(*dst, &o0, &o1);
          v0 += o0;
          v1 += o1;
        }
        *dst = pack2<T>(v0, v1);
      }
    }
}

template <typename T, int CP, int NT, bool DGRAD>
__global__ void __launch_bounds__(256) fprop_kernel(const args_t a) {
  constexpr int WCP = DGRAD ? NT : CP;        /* chunks of a weight row */
  constexpr int WR = DGRAD ? CP * 8 : NT * 8; /* weight rows */
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthr = blockDim.x;
  const int g0 = (int)((int64_t)blockIdx.x * a.rows / a.runs);
  const int g1 = (int)((int64_t)(blockIdx.x + 1) * a.rows / a.runs);
  const int last = a.rows - 1;

  /* zero the ring: the pad pixels stay zero (never loaded) */
  {
    uint4 *s4 = reinterpret_cast<uint4 *>(smem);
    for (int i = tid; i < a.woff >> 4; i += nthr) s4[i] = make_uint4(0, 0, 0, 0);
  }
  __syncthreads(); /* before any cp.async writes the same bytes */

  /* group 0: the weights and rows g0 - 1, g0; group 1: row g0 + 1 */
  const T *wg = static_cast<const T *>(a.wt);
  const bool w16 = ((uintptr_t)wg & 15) == 0; /* the flat parameters need not align a layer */
  for (int q = tid; q < WR * 9 * WCP; q += nthr) {
    const int c = q % WCP, rt = q / WCP, tap = rt % 9, row = rt / 9;
    const uint32_t off = (uint32_t)(a.woff + (((tap * WR + row) * WCP + (c ^ swz<WCP>(row))) << 4));
    const T *src = wg + ((int64_t)rt * WCP + c) * 8;
    if (w16) {
      cp_async16(sbase + off, src);
    } else { /* element by element (weights are few) */
      T *dst = reinterpret_cast<T *>(smem + off);
#pragma unroll
      for (int e = 0; e < 8; e++) dst[e] = src[e];
    }
  }
  const T *xg = static_cast<const T *>(a.x);
  const int64_t xrow = (int64_t)a.w * a.ldx;
#define CG_XROW(G)                                                                              \
  load_xrow<T, CP>(sbase + (uint32_t)(((G) % kSlots) * a.xslot), xg + (int64_t)(G) * xrow, a.ldx, \
                   a.w, tid, nthr)
  if (g0 > 0) CG_XROW(g0 - 1);
  if (g0 < g1) CG_XROW(g0);
  cp_async_commit();
  if (g0 + 1 <= last && g0 < g1) CG_XROW(g0 + 1);
  cp_async_commit();

  const int x0 = warp * 32, co_l = 2 * (lane & 3);
  float bias_r[NT][2];
#pragma unroll
  for (int j = 0; j < NT; j++) {
    bias_r[j][0] = a.bias_on ? a.bias[j * 8 + co_l] : 0.0f;
    bias_r[j][1] = a.bias_on ? a.bias[j * 8 + co_l + 1] : 0.0f;
  }

  for (int g = g0; g < g1; g++) {
    __syncthreads(); /* every warp is done with row g - 1: slot (g + 2) % 4 is free */
    if (g + 2 <= last && g + 2 <= g1) CG_XROW(g + 2);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads(); /* rows g - 1, g, g + 1 are in */
    const int y = g % a.h;
    float acc[kMT][NT][4];
#pragma unroll
    for (int mt = 0; mt < kMT; mt++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[mt][j][e] = 0.0f;
    for (int r = 0; r < 3; r++) {
      if (y + r - 1 < 0 || y + r - 1 >= a.h) continue; /* zero rows: no contribution */
      mma_row<T, CP, NT, DGRAD>(acc, sbase + (uint32_t)(((g + r - 1) % kSlots) * a.xslot),
                                sbase + (uint32_t)a.woff, r, x0, lane);
    }
    store_row<T, NT>(a, acc, bias_r, g, x0, lane);
  }
#undef CG_XROW
  cp_async_wait<0>(); /* no copy left in flight at exit */
}

/* cg_fprop_reference: thread = one output element (pixel, co). */
template <typename T>
__global__ void fprop_ref_kernel(const T *x, const T *wt, const float *bias, const T *m, T *y,
                                 int n, int h, int w, int cin, int cout, int dgrad, int64_t ldx,
                                 int64_t ldy, int64_t ldm, int relu, int accum) {
  const int64_t total = (int64_t)n * h * w * cout;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int co = (int)(i % cout);
    const int64_t p = i / cout;
    const int xx = (int)(p % w), yy = (int)(p / w % h);
    const int64_t img = p / ((int64_t)w * h);
    float acc = 0.0f;
    for (int tap = 0; tap < 9; tap++) {
      const int y2 = yy + tap / 3 - 1, x2 = xx + tap % 3 - 1;
      if (y2 < 0 || y2 >= h || x2 < 0 || x2 >= w) continue;
      const T *xv = x + ((img * h + y2) * w + x2) * ldx;
      for (int ci = 0; ci < cin; ci++) {
        const T wv = dgrad ? wt[((int64_t)ci * 9 + (8 - tap)) * cout + co]
                           : wt[((int64_t)co * 9 + tap) * cin + ci];
        acc += to_f(xv[ci]) * to_f(wv);
      }
    }
    if (bias) acc += bias[co];
    if (relu) acc = acc > 0.0f ? acc : 0.0f;
    if (m && !(to_f(m[p * ldm + co]) > 0.0f)) acc = 0.0f;
    if (accum) acc += to_f(y[p * ldy + co]);
    y[p * ldy + co] = from_f<T>(acc);
  }
}

template <typename T, int CP, int NT, bool DGRAD>
cudaError_t launch(const plan_t &p, args_t a, cudaStream_t stream) {
  auto k = fprop_kernel<T, CP, NT, DGRAD>;
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
  if (p.nt == 2) return launch<T, CP, 2, DGRAD>(p, a, stream);
  if (p.nt == 4) return launch<T, CP, 4, DGRAD>(p, a, stream);
  return launch<T, CP, 8, DGRAD>(p, a, stream);
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
  snprintf(buf, len, "fprop%s %dx%d %d->%d: blocks of %d warps, %.1f KB shared%s%s%s%s",
           s->dgrad ? " (dgrad)" : "", s->h, s->w, s->cin, s->cout, p.threads / 32,
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
  args_t a;
  a.x = d_x;
  a.wt = d_w;
  a.m = d_m;
  a.bias = d_bias;
  a.y = d_y;
  a.h = s->h;
  a.w = s->w;
  a.rows = s->n * s->h;
  a.runs = 0; /* launch: one wave */
  a.ldx = s->ldx;
  a.ldy = s->ldy;
  a.ldm = s->mask ? s->ldm : 0;
  a.xslot = p.xslot;
  a.woff = p.woff;
  a.bias_on = s->bias;
  a.relu = s->relu;
  a.mask = s->mask;
  a.accum = s->accum;
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
