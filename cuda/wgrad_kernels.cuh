/* wgrad_kernels.cuh: the device code of wgrad.cu (wgrad.h) and the plan its launchers share
 * with it (make_plan). Included by wgrad.cu after cuda_bf16.h, cuda_fp16.h, dtype.cuh, wgrad.h
 * and mma.cuh; and by tests/test_wgrad_emu.cc, which runs these very kernels on the CPU
 * (tests/emu_cuda.h) so that their index arithmetic is checked on machines without a GPU.
 * Hence no includes here. */
#ifndef CG_CUDA_WGRAD_KERNELS_CUH
#define CG_CUDA_WGRAD_KERNELS_CUH

namespace {

using namespace cg_mma;

constexpr int kThreads = 128;         /* 4 warps */
constexpr int kWarps = kThreads / 32;
constexpr int kGridTarget = 264;      /* blocks of a shape: 2 per SM on a 132-SM GPU */
constexpr int kSmemTwoPerSm = 115712; /* (228 KB - 2 x 1 KB reserved) / 2 */
constexpr int kSmemMax = 232448;      /* 227 KB: the per-block opt-in limit of sm_90 */
constexpr int kRedY = 8;              /* partials summed by 8 lanes per element */

/* ---- the shape's plan ------------------------------------------------------------------- */

struct plan_t {
  int co_b, ci_b, wc, ng;      /* block tile, warp channels, warps across channels */
  int tiles_ci, tiles;         /* tiles = cout/co_b * tiles_ci */
  int runs, grid;              /* runs of rows; grid = runs * tiles */
  int depth, xs, ds;           /* cp.async distance D, x slots D + 3, dy slots D + 1 */
  int w16, xslot, dyslot, smem;
  int nacc;                    /* accumulators per thread: 144, or 72 for 32co x 8ci */
  int e, pb;                   /* partial floats of dw per block, + co_b for db */
};

int ring_bytes(int w16, int ci_b, int co_b, int d) {
  return (d + 3) * (w16 + 2) * ci_b * 2 + (d + 1) * w16 * co_b * 2;
}

/* 0 when the shape has no plan. */
int make_plan(const cg_wgrad_shape_t *s, plan_t *p) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16) || s->k != 3) return 0;
  if (s->n < 1 || s->h < 1 || s->w < 1 || (int64_t)s->n * s->h > (1 << 30)) return 0;
  if (!(s->cin == 8 || s->cin == 16 || s->cin % 32 == 0) || s->cin < 8) return 0;
  if (s->cout < 32 || s->cout % 32) return 0;
  if (s->ldx < s->cin || s->lddy < s->cout || s->ldx % 8 || s->lddy % 8) return 0;
  plan_t q;
  q.co_b = s->cout % 64 == 0 ? 64 : 32;
  q.ci_b = s->cin < 32 ? s->cin : 32;
  q.wc = q.co_b == 32 ? (q.ci_b < 16 ? q.ci_b : 16) : 8;
  q.ng = q.ci_b / q.wc;
  q.nacc = q.co_b / 16 * 9 * (q.wc / 8) * 4;
  q.tiles_ci = s->cin / q.ci_b;
  q.tiles = s->cout / q.co_b * q.tiles_ci;
  if (q.tiles > 65535) return 0; /* the reduce kernel's grid.y */
  const int64_t rows = (int64_t)s->n * s->h;
  int64_t runs = kGridTarget / q.tiles;
  if (runs < 1) runs = 1;
  if (runs > rows) runs = rows;
  q.runs = (int)runs;
  if ((int64_t)q.runs * q.tiles > 65535 * 1024LL) return 0;
  q.grid = q.runs * q.tiles;
  q.w16 = (s->w + 15) / 16 * 16;
  if (q.w16 > 4096) return 0;
  q.depth = 0;
  for (int d = 3; d >= 1 && !q.depth; d--)
    if (ring_bytes(q.w16, q.ci_b, q.co_b, d) <= kSmemTwoPerSm) q.depth = d;
  if (!q.depth) {
    if (ring_bytes(q.w16, q.ci_b, q.co_b, 1) > kSmemMax) return 0;
    q.depth = 1; /* one block per SM */
  }
  q.xs = q.depth + 3;
  q.ds = q.depth + 1;
  q.xslot = (q.w16 + 2) * q.ci_b * 2;
  q.dyslot = q.w16 * q.co_b * 2;
  q.e = q.co_b * 9 * q.ci_b;
  q.pb = q.e + q.co_b;
  const int kg = kWarps / q.ng;
  const int red = (kg > 1 ? q.e * 4 : 0) + kWarps * q.co_b * 4; /* end-of-run sums */
  const int ring = ring_bytes(q.w16, q.ci_b, q.co_b, q.depth);
  q.smem = ring > red ? ring : red;
  *p = q;
  return 1;
}

/* ---- device helpers ------------------------------------------------------------------- */

/* Two ones of the element type, packed (the B operand of the bias gradient). */
template <typename T> __device__ __forceinline__ uint32_t ones2();
template <> __device__ __forceinline__ uint32_t ones2<__nv_bfloat16>() { return 0x3F803F80u; }
template <> __device__ __forceinline__ uint32_t ones2<__half>() { return 0x3C003C00u; }

/* Kernel arguments (by value). */
struct args_t {
  const void *x, *dy;
  float *part;
  int n, h, w, cin, cout;
  int64_t ldx, lddy;
  int tiles_ci, tiles, runs, rows; /* rows = n * h */
  int depth, xs, ds, nchunk;       /* nchunk = w16 / 16 */
  int xslot, dyslot, dy_off, pb, e;
  int do_db;
};

/* One image row of CP chunks a pixel into a ring slot at pixel px0 (x: 1, past the zero pad). */
template <typename T, int CP>
__device__ __forceinline__ void load_row(uint32_t dst, const T *src, int64_t ld, int w, int px0,
                                         int tid) {
  for (int q = tid; q < w * CP; q += kThreads) {
    const int col = q / CP, c = q % CP, px = col + px0;
    cp_async16(dst + (uint32_t)((px * CP + (c ^ swz<CP>(px))) << 4),
               src + (int64_t)col * ld + c * 8);
  }
}

/* The loads of step g (row y of image n): dy row g and the x rows not loaded by step g - 1
 * (all of y - 1..y + 1 at the first step of a run, rows 0 and 1 at the first of an image,
 * else row y + 1). */
template <typename T, int CPX, int CPY>
__device__ __forceinline__ void load_step(const args_t &a, uint32_t sbase, int g, bool first,
                                          int ci0, int co0, int tid) {
  const int n = g / a.h, y = g - n * a.h;
  int ylo, yhi;
  if (first) {
    ylo = y > 0 ? y - 1 : 0;
    yhi = y + 1 < a.h ? y + 1 : a.h - 1;
  } else if (y == 0) {
    ylo = 0;
    yhi = a.h > 1 ? 1 : 0;
  } else {
    ylo = y + 1;
    yhi = y + 1 < a.h ? y + 1 : y; /* empty when y is the last row */
  }
  const T *x = static_cast<const T *>(a.x);
  for (int yy = ylo; yy <= yhi; yy++) {
    const int G = n * a.h + yy;
    load_row<T, CPX>(sbase + (uint32_t)((G % a.xs) * a.xslot), x + (int64_t)G * a.w * a.ldx + ci0,
                     a.ldx, a.w, 1, tid);
  }
  const T *dy = static_cast<const T *>(a.dy);
  load_row<T, CPY>(sbase + (uint32_t)(a.dy_off + (g % a.ds) * a.dyslot),
                   dy + (int64_t)g * a.w * a.lddy + co0, a.lddy, a.w, 0, tid);
}

/* ---- kernels ---------------------------------------------------------------------------- */

template <typename T, int CO_B, int CI_B>
__global__ void __launch_bounds__(kThreads, 2) wgrad_main_kernel(const args_t a) {
  constexpr int WC = CO_B == 32 ? (CI_B < 16 ? CI_B : 16) : 8;
  constexpr int NG = CI_B / WC, KG = kWarps / NG;
  constexpr int MI = CO_B / 16, NF = WC / 8;
  constexpr int CPX = CI_B / 8, CPY = CO_B / 8;
  constexpr int kNacc = MI * 9 * NF * 4; /* 144 (72 for 32co x 8ci) */
  static_assert(NG * KG == kWarps, "warps must tile channels x chunks");
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ng = warp % NG, kg = warp / NG;
  const int tile = blockIdx.x % a.tiles, run = blockIdx.x / a.tiles;
  const int ci0 = (tile % a.tiles_ci) * CI_B, co0 = (tile / a.tiles_ci) * CO_B;
  const bool db = a.do_db && tile % a.tiles_ci == 0;
  const int g0 = (int)((int64_t)run * a.rows / a.runs);
  const int g1 = (int)((int64_t)(run + 1) * a.rows / a.runs);

  /* zero the ring: the pad pixels of x and the pixels past w of dy stay zero (never loaded) */
  {
    const int n16 = (a.dy_off + a.ds * a.dyslot) >> 4;
    uint4 *s4 = reinterpret_cast<uint4 *>(smem);
    for (int i = tid; i < n16; i += kThreads) s4[i] = make_uint4(0, 0, 0, 0);
  }
  __syncthreads(); /* before any cp.async writes the same bytes */

  float acc[kNacc], accdb[MI * 4];
#pragma unroll
  for (int j = 0; j < kNacc; j++) acc[j] = 0.0f;
#pragma unroll
  for (int j = 0; j < MI * 4; j++) accdb[j] = 0.0f;
  const uint32_t one = ones2<T>();

  for (int i = 0; i < a.depth; i++) {
    if (g0 + i < g1) load_step<T, CPX, CPY>(a, sbase, g0 + i, i == 0, ci0, co0, tid);
    cp_async_commit();
  }

  /* per-lane ldmatrix rows: A (dy) lane l gives pixel (l & 7) + 8 * (l >> 4) of the chunk and
   * cout chunk (l >> 3) & 1 of each 16; B (x) gives pixel (l & 7) + 8 * ((l >> 3) & 1) and ci
   * chunk l >> 4 of the warp's 16 (x2 for 8 channels: lanes 16-31 repeat 0-15, unused) */
  const int pa_l = (lane & 7) + ((lane >> 4) << 3), ja = (lane >> 3) & 1;
  const int pb_l = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int cb = NF == 2 ? ng * 2 + (lane >> 4) : ng;

  for (int g = g0; g < g1; g++) {
    if (a.depth == 1)
      cp_async_wait<0>();
    else if (a.depth == 2)
      cp_async_wait<1>();
    else
      cp_async_wait<2>();
    __syncthreads(); /* step g's rows are in; every warp is done with step g - 1's slots */
    if (g + a.depth < g1) load_step<T, CPX, CPY>(a, sbase, g + a.depth, false, ci0, co0, tid);
    cp_async_commit();

    const int n = g / a.h, y = g - n * a.h;
    const uint32_t dyb = sbase + (uint32_t)(a.dy_off + (g % a.ds) * a.dyslot);
    /* a tap row outside the image reads pixel 0 of a slot (the zero pad) in every lane: a
     * broadcast of zeros, so the loop has no branch to keep loads from moving ahead */
    uint32_t xb[3];
    bool ok[3];
#pragma unroll
    for (int r = 0; r < 3; r++) {
      ok[r] = y + r - 1 >= 0 && y + r - 1 < a.h;
      xb[r] = sbase + (uint32_t)(((g + r - 1 + a.xs) % a.xs) * a.xslot);
    }
    for (int kc = kg; kc < a.nchunk; kc += KG) {
      const int pa = kc * 16 + pa_l, fa = swz<CPY>(pa);
      const uint32_t arow = dyb + (uint32_t)(pa * CPY * 16);
      uint32_t af[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
        ldsm_x4_t(af[mi], arow + (uint32_t)(((mi * 2 + ja) ^ fa) << 4));
      if (db && (kc / KG) % NG == ng) {
#pragma unroll
        for (int mi = 0; mi < MI; mi++) mma16816<T>(&accdb[mi * 4], af[mi], one, one);
      }
      uint32_t off[3];
#pragma unroll
      for (int s = 0; s < 3; s++) {
        const int px = kc * 16 + pb_l + s; /* x pixel col + 1 for output col kc * 16 + pb_l */
        off[s] = (uint32_t)((px * CPX + (cb ^ swz<CPX>(px))) << 4);
      }
#pragma unroll
      for (int r = 0; r < 3; r++) {
#pragma unroll
        for (int s = 0; s < 3; s++) {
          const uint32_t addr = ok[r] ? xb[r] + off[s] : xb[r];
          uint32_t bf[4];
          if (NF == 2)
            ldsm_x4_t(bf, addr);
          else
            ldsm_x2_t(bf, addr);
#pragma unroll
          for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int nf = 0; nf < NF; nf++)
              mma16816<T>(&acc[((mi * 9 + r * 3 + s) * NF + nf) * 4], af[mi], bf[2 * nf],
                          bf[2 * nf + 1]);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads(); /* the ring is free: reuse it for the sums */

  float *red = reinterpret_cast<float *>(smem);
  if (KG > 1) {
    for (int q = 1; q < KG; q++) { /* acc(kg 0) += acc(kg q), q in order */
      if (kg == q) {
#pragma unroll
        for (int j = 0; j < kNacc; j++) red[(ng * kNacc + j) * 32 + lane] = acc[j];
      }
      __syncthreads();
      if (kg == 0) {
#pragma unroll
        for (int j = 0; j < kNacc; j++) acc[j] += red[(ng * kNacc + j) * 32 + lane];
      }
      __syncthreads();
    }
  }
  float *out = a.part + (int64_t)blockIdx.x * a.pb;
  if (db) { /* uniform over the block */
    float *dbred = red + (KG > 1 ? NG * kNacc * 32 : 0);
    if ((lane & 3) == 0) {
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        dbred[warp * CO_B + mi * 16 + (lane >> 2)] = accdb[mi * 4];
        dbred[warp * CO_B + mi * 16 + 8 + (lane >> 2)] = accdb[mi * 4 + 2];
      }
    }
    __syncthreads();
    if (tid < CO_B) {
      float v = 0.0f;
      for (int w = 0; w < kWarps; w++) v += dbred[w * CO_B + tid];
      out[a.e + tid] = v;
    }
  }
  if (kg == 0) {
#pragma unroll
    for (int j = 0; j < kNacc; j++) out[(ng * kNacc + j) * 32 + lane] = acc[j];
  }
}

/* Reduce arguments (by value). */
struct rargs_t {
  const float *part;
  int runs, tiles, tiles_ci, pb, e;
  int co_b, ci_b, wc, nf, nacc, cin;
  int do_db;
};

/* Block (32, kRedY), grid (ceil(pb / 32), tiles): element p of tile blockIdx.y, summed over
 * the runs: lane y takes runs y, y + 8, ..., then lane 0 adds the 8 sums in order. p < e is
 * dw (decoded from the main kernel's register order), e <= p < pb is db. kRedY x 32 floats of
 * dynamic shared memory. */
template <typename T>
__global__ void wgrad_reduce_kernel(const rargs_t a, T *dw, float *db) {
  extern __shared__ __align__(128) unsigned char smem[];
  float(*red)[32] = reinterpret_cast<float(*)[32]>(smem);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int p = blockIdx.x * 32 + tx, tile = blockIdx.y;
  const int ci_t = tile % a.tiles_ci, co_t = tile / a.tiles_ci;
  const bool act = p < a.e || (p < a.pb && a.do_db && ci_t == 0);
  float s = 0.0f;
  if (act)
    for (int r = ty; r < a.runs; r += kRedY) s += a.part[((int64_t)r * a.tiles + tile) * a.pb + p];
  red[ty][tx] = s;
  __syncthreads();
  if (ty != 0 || !act) return;
  float v = red[0][tx];
#pragma unroll
  for (int k = 1; k < kRedY; k++) v += red[k][tx];
  if (p >= a.e) {
    db[co_t * a.co_b + (p - a.e)] = v;
    return;
  }
  /* p = (ng * nacc + j) * 32 + lane, j = ((mi * 9 + tap) * nf + f) * 4 + c */
  const int ngi = p / (a.nacc * 32), rem = p - ngi * a.nacc * 32;
  const int j = rem >> 5, ln = rem & 31, c = j & 3;
  int q = j >> 2;
  const int f = q % a.nf;
  q /= a.nf;
  const int tap = q % 9, mi = q / 9;
  const int co = mi * 16 + (ln >> 2) + ((c >> 1) << 3);
  const int ci = ngi * a.wc + f * 8 + (ln & 3) * 2 + (c & 1);
  dw[((int64_t)(co_t * a.co_b + co) * 9 + tap) * a.cin + ci_t * a.ci_b + ci] = from_f<T>(v);
}

/* cg_wgrad_reference: block = one dw element (co, tap, ci); 256 threads stride the pixels,
 * then a fixed tree over the block. 256 floats of dynamic shared memory. */
template <typename T>
__global__ void wgrad_ref_kernel(const T *x, const T *dy, T *dw, int n, int h, int w, int cin,
                                 int cout, int64_t ldx, int64_t lddy) {
  extern __shared__ __align__(128) unsigned char smem[];
  float *red = reinterpret_cast<float *>(smem);
  const int e = blockIdx.x, ci = e % cin, tap = e / cin % 9, co = e / cin / 9;
  const int64_t npix = (int64_t)n * h * w;
  float acc = 0.0f;
  for (int64_t p = threadIdx.x; p < npix; p += blockDim.x) {
    const int xx = (int)(p % w), yy = (int)(p / w % h);
    const int64_t img = p / ((int64_t)w * h);
    const int y2 = yy + tap / 3 - 1, x2 = xx + tap % 3 - 1;
    if (y2 < 0 || y2 >= h || x2 < 0 || x2 >= w) continue;
    acc += to_f(dy[p * lddy + co]) * to_f(x[((img * h + y2) * w + x2) * ldx + ci]);
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int k = 128; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) red[threadIdx.x] += red[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) dw[e] = from_f<T>(red[0]);
}


/* ---- arguments (host) --------------------------------------------------------------------- */

/* The main kernel's arguments for shape s under plan p (work: the partial sums). */
inline args_t make_args(const plan_t &p, const cg_wgrad_shape_t *s, const void *x, const void *dy,
                        void *work, int do_db) {
  args_t a;
  memset(&a, 0, sizeof a);
  a.x = x;
  a.dy = dy;
  a.part = static_cast<float *>(work);
  a.n = s->n;
  a.h = s->h;
  a.w = s->w;
  a.cin = s->cin;
  a.cout = s->cout;
  a.ldx = s->ldx;
  a.lddy = s->lddy;
  a.tiles_ci = p.tiles_ci;
  a.tiles = p.tiles;
  a.runs = p.runs;
  a.rows = s->n * s->h;
  a.depth = p.depth;
  a.xs = p.xs;
  a.ds = p.ds;
  a.nchunk = p.w16 / 16;
  a.xslot = p.xslot;
  a.dyslot = p.dyslot;
  a.dy_off = p.xs * p.xslot;
  a.pb = p.pb;
  a.e = p.e;
  a.do_db = do_db;
  return a;
}

/* The reduce kernel's. */
inline rargs_t make_rargs(const plan_t &p, const cg_wgrad_shape_t *s, const float *part,
                          int do_db) {
  rargs_t r;
  memset(&r, 0, sizeof r);
  r.part = part;
  r.runs = p.runs;
  r.tiles = p.tiles;
  r.tiles_ci = p.tiles_ci;
  r.pb = p.pb;
  r.e = p.e;
  r.co_b = p.co_b;
  r.ci_b = p.ci_b;
  r.wc = p.wc;
  r.nf = p.wc / 8;
  r.nacc = p.nacc;
  r.cin = s->cin;
  r.do_db = do_db;
  return r;
}

}  // namespace

#endif
