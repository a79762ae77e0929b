/* fprop_kernels.cuh: the device code of fprop.cu (fprop.h) and the plan its launchers share
 * with it (make_plan: shared memory layout, threads). Included by fprop.cu after cuda_bf16.h,
 * cuda_fp16.h, dtype.cuh, fprop.h and mma.cuh; and by tests/test_fprop_emu.cc, which runs these
 * very kernels on the CPU (tests/emu_cuda.h: a host thread per CUDA thread, ldmatrix, mma.sync
 * and cp.async emulated) so that their index arithmetic is checked on machines without a GPU.
 * Hence no includes here. */
#ifndef CG_CUDA_FPROP_KERNELS_CUH
#define CG_CUDA_FPROP_KERNELS_CUH

namespace {

using namespace cg_mma;

constexpr int kSlots = 4;        /* x rows resident: g - 1, g, g + 1, and g + 2 loading */
constexpr int kSms = 132;        /* H100 / H200: if the device cannot be asked */
constexpr int kSmemMax = 232448; /* 227 KB: the per-block opt-in limit of sm_90 */

struct plan_t {
  int cp, nt;         /* 16-byte chunks of an x pixel (cin / 8), n-tiles (cout / 8) */
  int mt;             /* m-tiles of 16 pixels per warp (cg_fprop_shape_t.mt) */
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
  /* 4 m-tiles: rows of whole 64-pixel warps, at most 32 channels out (the accumulators) and 64
   * in (with 128, registers spill) */
  const int mt = s->mt ? s->mt : 2;
  if ((mt != 2 && mt != 4) || s->w % (16 * mt) || (mt == 4 && (s->cout > 32 || s->cin > 64)))
    return 0;
  plan_t q;
  q.mt = mt;
  q.cp = s->cin / 8;
  q.nt = s->cout / 8;
  q.wr = s->dgrad ? s->cin : s->cout;
  q.wcp = s->dgrad ? s->cout / 8 : s->cin / 8;
  q.xslot = (s->w + 2) * q.cp * 16;
  q.woff = kSlots * q.xslot;
  q.smem = q.woff + 9 * q.wr * q.wcp * 16;
  if (q.smem > kSmemMax) return 0;
  q.threads = s->w * 2 / mt; /* a warp per 16 x mt pixels */
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
template <typename T, int CP, int NT, int MT, bool DGRAD>
__device__ __forceinline__ void mma_row(float (&acc)[MT][NT][4], uint32_t xs, uint32_t wbase,
                                        int r, int x0, int lane) {
  constexpr int WCP = DGRAD ? NT : CP;        /* chunks of a weight row */
  constexpr int WR = DGRAD ? CP * 8 : NT * 8; /* weight rows */
  const int a_px = lane & 15, a_c = lane >> 4;
  const int b_hi = (lane >> 3) & 1, b_lo = lane & 7;
  if constexpr (CP == 1) {
#pragma unroll
    for (int sp = 0; sp < 2; sp++) {
      const int s0 = 2 * sp, s1 = s0 + 1, tap0 = r * 3 + s0;
      uint32_t af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        const int px = !a_c ? x0 + mt * 16 + a_px + s0 : s1 < 3 ? x0 + mt * 16 + a_px + s1 : 0;
        ldsm_x4(af[mt], xs + (uint32_t)(px << 4));
      }
      const int tap_b = b_hi && s1 < 3 ? tap0 + 1 : tap0;
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        uint32_t bf[4];
        ldsm_x4(bf, wbase + (uint32_t)((tap_b * WR + (j + a_c) * 8 + b_lo) << 4));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
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
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
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
          for (int mt = 0; mt < MT; mt++) {
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
template <typename T, int NT, int MT>
__device__ __forceinline__ void store_row(const args_t &a, const float (&acc)[MT][NT][4],
                                          const float (&bias_r)[NT][2], int g, int x0, int lane) {
  T *yg = static_cast<T *>(a.y);
  const T *mg = static_cast<const T *>(a.m);
  const int co_l = 2 * (lane & 3);
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
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

template <typename T, int CP, int NT, int MT, bool DGRAD>
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

  const int x0 = warp * 16 * MT, co_l = 2 * (lane & 3);
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
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[mt][j][e] = 0.0f;
    for (int r = 0; r < 3; r++) {
      if (y + r - 1 < 0 || y + r - 1 >= a.h) continue; /* zero rows: no contribution */
      mma_row<T, CP, NT, MT, DGRAD>(acc, sbase + (uint32_t)(((g + r - 1) % kSlots) * a.xslot),
                                sbase + (uint32_t)a.woff, r, x0, lane);
    }
    store_row<T, NT, MT>(a, acc, bias_r, g, x0, lane);
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


/* ---- arguments (host) --------------------------------------------------------------------- */

/* The kernel's arguments for shape s under plan p; runs 0 (the launcher sets one wave). */
inline args_t make_args(const plan_t &p, const cg_fprop_shape_t *s, const void *x, const void *w,
                        const float *bias, const void *m, void *y) {
  args_t a;
  memset(&a, 0, sizeof a);
  a.x = x;
  a.wt = w;
  a.m = m;
  a.bias = bias;
  a.y = y;
  a.h = s->h;
  a.w = s->w;
  a.rows = s->n * s->h;
  a.runs = 0;
  a.ldx = s->ldx;
  a.ldy = s->ldy;
  a.ldm = s->mask ? s->ldm : 0;
  a.xslot = p.xslot;
  a.woff = p.woff;
  a.bias_on = s->bias;
  a.relu = s->relu;
  a.mask = s->mask;
  a.accum = s->accum;
  return a;
}

}  // namespace

#endif
