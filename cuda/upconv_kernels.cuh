/* upconv_kernels.cuh: the device code of upconv.cu (upconv.h) and the shape arithmetic its
 * launchers share with it: tiles, shared memory, the weight gradient's split. Included by
 * upconv.cu after cuda_bf16.h, cuda_fp16.h, mma.h, dtype.cuh and mma.cuh; and by
 * tests/test_upconv_emu.cc, which runs these very kernels on the CPU (one host thread per CUDA
 * thread, wmma and cp.async emulated) so that their index arithmetic is checked on machines
 * without a GPU. Hence no includes here, and nothing beyond what that emulation provides:
 * wmma fragments loaded, multiplied and stored whole, cg_mma::cp_async16 / commit / wait,
 * __syncthreads, __syncwarp, dynamic shared memory only (extern __shared__). */
#ifndef CG_CUDA_UPCONV_KERNELS_CUH
#define CG_CUDA_UPCONV_KERNELS_CUH

namespace {

using namespace nvcuda;

constexpr int kThreads = 256; /* 8 warps */
constexpr int kWarps = kThreads / 32;
constexpr int kBM = 128;      /* input pixels a tile, forward and input gradient: 16 a warp */
constexpr int kBMW = 64;      /* weight gradient */
constexpr int kPad = 8;       /* elements after every shared row (16 bytes) */
constexpr int kScr = 20;      /* fp32 row of a warp's 16 x 16 epilogue tile */
constexpr int kSmemMax = 227 * 1024; /* opt-in shared memory a block, sm_90 */
constexpr size_t kWorkMax = (size_t)8 << 20; /* weight gradient partial sums, at most */
constexpr int kSmsDefault = 132;

struct args_t {
  const void *a, *b;
  const float *bias;
  void *out;
  float *work;
  int64_t m;       /* input pixels n * h * w */
  int64_t tiles;
  int h, w, cin, cout;
  int64_t ldx, ldy;
  int bias_on;     /* forward: add the bias; weight gradient: also the bias gradient's partials */
  int relu, accum;
  int nb;          /* weight gradient: output columns of a block (4 cout / S) */
  int64_t wstride; /* weight gradient: floats of one block's partial sums */
};

/* The output pixel (dense index) of input pixel m at sub-position ab = 2a + b. The divisions
 * in 32 bits (m < 2^31: cg_upconv_supported), the index in 64. */
__device__ __forceinline__ int64_t out_px(int64_t m, int ab, int h, int w) {
  const uint32_t hw = (uint32_t)h * (uint32_t)w, mm = (uint32_t)m;
  const uint32_t n = mm / hw, r = mm - n * hw;
  const uint32_t i = r / (uint32_t)w, j = r - i * (uint32_t)w;
  return ((int64_t)n * 2 * h + 2 * i + (ab >> 1)) * (int64_t)(2 * w) + 2 * j + (ab & 1);
}

__device__ __forceinline__ uint32_t saddr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* Rows [m0, m0 + rows) of x (c channels, pixel stride ld) into s (row stride lds), 16 bytes a
 * copy; rows at or past m are zero-filled. */
template <typename T>
__device__ void load_rows(T *s, int lds, const T *x, int64_t ld, int c, int64_t m0, int rows,
                          int64_t m) {
  const int cpr = c / 8;
  for (int q = threadIdx.x; q < rows * cpr; q += kThreads) {
    const int r = q / cpr, k = (q - r * cpr) * 8;
    T *dst = s + r * lds + k;
    if (m0 + r < m)
      cg_mma::cp_async16(saddr(dst), x + (m0 + r) * ld + k);
    else
      *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
  }
}

/* dy of rows [m0, m0 + rows) gathered into s (row stride lds): row r holds, for the nab
 * sub-positions ab0, ab0 + 1, ..., the cout channels of output pixel out_px(m0 + r, ab), one
 * after the other. Rows at or past a.m are zero-filled. */
template <typename T>
__device__ void load_gather(T *s, int lds, const T *dy, int ab0, int nab, int64_t m0, int rows,
                            const args_t &a) {
  const int cpa = a.cout / 8, cpr = nab * cpa;
  for (int q = threadIdx.x; q < rows * cpr; q += kThreads) {
    const int r = q / cpr, k = q - r * cpr;
    const int ab = k / cpa, c = (k - ab * cpa) * 8;
    T *dst = s + r * lds + k * 8;
    if (m0 + r < a.m)
      cg_mma::cp_async16(saddr(dst), dy + out_px(m0 + r, ab0 + ab, a.h, a.w) * a.ldy + c);
    else
      *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
  }
}

/* w (cin x n4, dense, any 2-byte alignment) into s (row stride ldw), element by element: it is
 * small and read once a block. */
template <typename T> __device__ void load_w(T *s, int ldw, const T *w, int cin, int n4) {
  for (int e = threadIdx.x; e < cin * n4; e += kThreads) {
    const int ci = e / n4;
    s[ci * ldw + (e - ci * n4)] = w[e];
  }
}

/* Eight values rounded to T, one 16-byte store. */
template <typename T> __device__ __forceinline__ void store8(T *p, const float *v) {
  pack_t<T, 8> o;
#pragma unroll
  for (int q = 0; q < 8; q++) o.v[q] = from_f<T>(v[q]);
  *reinterpret_cast<pack_t<T, 8> *>(p) = o;
}

/* The warp's 16 x 16 result in scr (row stride kScr): lane's row and its 8 columns. */
__device__ __forceinline__ void scr_row(const float *scr, float *v) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int q = 0; q < 8; q++) v[q] = scr[(lane >> 1) * kScr + (lane & 1) * 8 + q];
}

/* Forward of one tile (rows m0..): the warp's 16 rows times all 4 cout columns. */
template <typename T, int CI>
__device__ void fwd_tile(const args_t &a, const T *sa, int lda, const T *sw, int ldw, float *scr,
                         int64_t m0) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t mw = m0 + warp * 16;
  if (mw >= a.m) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[CI];
#pragma unroll
  for (int k = 0; k < CI; k++) wmma::load_matrix_sync(fa[k], sa + warp * 16 * lda + k * 16, lda);
  for (int c = 0; c < a.cout / 4; c++) { /* 16-column chunks of 4 cout */
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < CI; k++) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
      wmma::load_matrix_sync(fb, sw + k * 16 * ldw + c * 16, ldw);
      wmma::mma_sync(acc, fa[k], fb, acc);
    }
    wmma::store_matrix_sync(scr, acc, kScr, wmma::mem_row_major);
    __syncwarp();
    const int64_t m = mw + (lane >> 1);
    if (m < a.m) {
      const int col = c * 16 + (lane & 1) * 8; /* within one (a, b): cout is a multiple of 16 */
      const int ab = col / a.cout, co = col - ab * a.cout;
      float v[8];
      scr_row(scr, v);
#pragma unroll
      for (int q = 0; q < 8; q++) {
        if (a.bias_on) v[q] += a.bias[co + q];
        if (a.relu) v[q] = fmaxf(v[q], 0.0f);
      }
      store8(static_cast<T *>(a.out) + out_px(m, ab, a.h, a.w) * a.ldy + co, v);
    }
    __syncwarp();
  }
}

/* Input gradient of one tile: the warp's 16 rows times the cin columns (CI accumulators). */
template <typename T, int CI>
__device__ void dgrad_tile(const args_t &a, const T *sa, int lda, const T *sw, int ldw, float *scr,
                           int64_t m0) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t mw = m0 + warp * 16;
  if (mw >= a.m) return;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[CI];
#pragma unroll
  for (int c = 0; c < CI; c++) wmma::fill_fragment(acc[c], 0.0f);
  for (int k = 0; k < a.cout / 4; k++) { /* 16-deep steps of 4 cout */
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, sa + warp * 16 * lda + k * 16, lda);
#pragma unroll
    for (int c = 0; c < CI; c++) { /* B(k, n) = w[n][k]: column-major from w's rows */
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
      wmma::load_matrix_sync(fb, sw + c * 16 * ldw + k * 16, ldw);
      wmma::mma_sync(acc[c], fa, fb, acc[c]);
    }
  }
#pragma unroll
  for (int c = 0; c < CI; c++) {
    wmma::store_matrix_sync(scr, acc[c], kScr, wmma::mem_row_major);
    __syncwarp();
    const int64_t m = mw + (lane >> 1);
    if (m < a.m) {
      T *p = static_cast<T *>(a.out) + m * a.ldx + c * 16 + (lane & 1) * 8;
      float v[8];
      scr_row(scr, v);
      if (a.accum) {
        const pack_t<T, 8> old = *reinterpret_cast<const pack_t<T, 8> *>(p);
#pragma unroll
        for (int q = 0; q < 8; q++) v[q] += to_f(old.v[q]);
      }
      store8(p, v);
    }
    __syncwarp();
  }
}

/* Shared memory of the forward / input-gradient kernel: w, two tiles, the warps' fp32 tiles. */
__host__ __device__ inline int dx_w_elems(int cin, int cout) {
  return (cin * (4 * cout + kPad) + 63) / 64 * 64; /* 128-byte multiple */
}
__host__ __device__ inline int dx_lda(int cin, int cout, bool dg) {
  return (dg ? 4 * cout : cin) + kPad;
}
inline int dx_smem(int cin, int cout, bool dg) {
  return 2 * (dx_w_elems(cin, cout) + 2 * kBM * dx_lda(cin, cout, dg)) +
         kWarps * 16 * kScr * (int)sizeof(float);
}

/* The forward (DG false) or the input gradient (DG true); cin = 16 CI. */
template <typename T, int CI, bool DG>
__global__ void __launch_bounds__(kThreads) updx_kernel(const args_t a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int n4 = 4 * a.cout, lda = dx_lda(CI * 16, a.cout, DG), ldw = n4 + kPad;
  T *sw = reinterpret_cast<T *>(smem);
  T *const sa = sw + dx_w_elems(CI * 16, a.cout); /* two tiles, kBM * lda elements each */
  float *scr = reinterpret_cast<float *>(sa + 2 * kBM * lda) + (threadIdx.x / 32) * 16 * kScr;
  load_w(sw, ldw, static_cast<const T *>(a.b), CI * 16, n4);
  const T *src = static_cast<const T *>(a.a);
  auto load = [&](T *s, int64_t t) {
    if (DG)
      load_gather(s, lda, src, 0, 4, t * kBM, kBM, a);
    else
      load_rows(s, lda, src, a.ldx, CI * 16, t * kBM, kBM, a.m);
  };
  int64_t t = blockIdx.x;
  if (t < a.tiles) load(sa, t);
  cg_mma::cp_async_commit();
  for (int buf = 0; t < a.tiles; t += gridDim.x, buf ^= 1) {
    if (t + gridDim.x < a.tiles) load(sa + (buf ^ 1) * kBM * lda, t + gridDim.x);
    cg_mma::cp_async_commit();
    cg_mma::cp_async_wait<1>(); /* this tile's copies (the next one's may still fly) */
    __syncthreads();            /* everyone's copies, zero fills and (first time) w */
    if (DG)
      dgrad_tile<T, CI>(a, sa + buf * kBM * lda, lda, sw, ldw, scr, t * kBM);
    else
      fwd_tile<T, CI>(a, sa + buf * kBM * lda, lda, sw, ldw, scr, t * kBM);
    __syncthreads(); /* the buffer is refilled next time round */
  }
  cg_mma::cp_async_wait<0>();
}

/* Weight gradient: each block sums its tiles into NF fragments a warp (and, with a.bias_on,
 * thread c < nb sums column c of dy), then writes them to its partial sums in a.work:
 * [cin][4 cout] for dw, then [4 cout] for the bias (columns (a, b, co)). blockIdx.y: which
 * part of the columns (sub-positions ab0 .. ab0 + nab - 1). */
template <typename T, int NF>
__global__ void __launch_bounds__(kThreads) upw_kernel(const args_t a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int n4 = 4 * a.cout, nab = a.nb / a.cout, ab0 = blockIdx.y * nab;
  const int ldx = a.cin + kPad, ldd = a.nb + kPad, fcols = a.nb / 16;
  /* two buffers each: x tiles (kBMW * ldx elements), then gathered dy tiles (kBMW * ldd) */
  T *const sx = reinterpret_cast<T *>(smem), *const sd = sx + 2 * kBMW * ldx;
  const T *x = static_cast<const T *>(a.a), *dy = static_cast<const T *>(a.b);
  auto load = [&](int buf, int64_t t) {
    load_rows(sx + buf * kBMW * ldx, ldx, x, a.ldx, a.cin, t * kBMW, kBMW, a.m);
    load_gather(sd + buf * kBMW * ldd, ldd, dy, ab0, nab, t * kBMW, kBMW, a);
  };
  const int warp = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[NF];
#pragma unroll
  for (int q = 0; q < NF; q++) wmma::fill_fragment(acc[q], 0.0f);
  float dbs = 0.0f;
  int64_t t = blockIdx.x;
  if (t < a.tiles) load(0, t);
  cg_mma::cp_async_commit();
  for (int buf = 0; t < a.tiles; t += gridDim.x, buf ^= 1) {
    if (t + gridDim.x < a.tiles) load(buf ^ 1, t + gridDim.x);
    cg_mma::cp_async_commit();
    cg_mma::cp_async_wait<1>();
    __syncthreads();
    const T *tx = sx + buf * kBMW * ldx, *td = sd + buf * kBMW * ldd;
    for (int ks = 0; ks < kBMW / 16; ks++) {
#pragma unroll
      for (int q = 0; q < NF; q++) {
        const int f = warp * NF + q, fi = f / fcols, fj = f - fi * fcols;
        /* A(i, k) = x[k][i]: column-major from the pixel rows; B(k, n) = dyg[k][n] */
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, tx + ks * 16 * ldx + fi * 16, ldx);
        wmma::load_matrix_sync(fb, td + ks * 16 * ldd + fj * 16, ldd);
        wmma::mma_sync(acc[q], fa, fb, acc[q]);
      }
    }
    if (a.bias_on && threadIdx.x < a.nb)
      for (int r = 0; r < kBMW; r++) dbs += to_f(td[r * ldd + threadIdx.x]);
    __syncthreads();
  }
  cg_mma::cp_async_wait<0>();
  float *part = a.work + blockIdx.x * a.wstride;
  const int col0 = blockIdx.y * a.nb;
#pragma unroll
  for (int q = 0; q < NF; q++) {
    const int f = warp * NF + q, fi = f / fcols, fj = f - fi * fcols;
    wmma::store_matrix_sync(part + (size_t)fi * 16 * n4 + col0 + fj * 16, acc[q], n4,
                            wmma::mem_row_major);
  }
  if (a.bias_on && threadIdx.x < a.nb) part[(size_t)a.cin * n4 + col0 + threadIdx.x] = dbs;
}

/* dw[e] and db[co] from the blocks' partial sums. A block of kThreads reduces 32 consecutive
 * outputs: thread (g, lane) = (threadIdx.x / 32, threadIdx.x % 32) sums output blockIdx.x * 32 +
 * lane over partials g, g + 8, g + 16, ... in order (db[co]: over each partial's four
 * sub-positions in order), then lane's eight sums are added in the order of g. Fixed order:
 * deterministic. kThreads * 4 bytes of dynamic shared memory. */
template <typename T>
__global__ void __launch_bounds__(kThreads) upw_reduce(const float *work, int64_t stride,
                                                       int blocks, int cin, int cout, T *dw,
                                                       float *db) {
  extern __shared__ __align__(128) unsigned char smem[];
  float *part = reinterpret_cast<float *>(smem);
  const int n4 = 4 * cout, ne = cin * n4, lane = threadIdx.x % 32, g = threadIdx.x / 32;
  const int e = blockIdx.x * 32 + lane;
  float s = 0.0f;
  if (e < ne) {
    for (int b = g; b < blocks; b += kWarps) s += work[b * stride + e];
  } else if (db && e < ne + cout) {
    for (int b = g; b < blocks; b += kWarps)
      for (int ab = 0; ab < 4; ab++) s += work[b * stride + ne + ab * cout + (e - ne)];
  }
  part[threadIdx.x] = s;
  __syncthreads();
  if (g != 0) return;
  for (int k = 1; k < kWarps; k++) s += part[k * 32 + lane];
  if (e < ne)
    dw[e] = from_f<T>(s);
  else if (db && e < ne + cout)
    db[e - ne] = s;
}

/* ---- naive kernels (cg_upconv_reference) ------------------------------------------------- */

template <typename T>
__global__ void ref_fwd(const args_t a) {
  const T *x = static_cast<const T *>(a.a), *w = static_cast<const T *>(a.b);
  T *y = static_cast<T *>(a.out);
  const int64_t total = a.m * 4 * a.cout;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int co = (int)(e % a.cout);
    const int64_t p = e / a.cout; /* output pixel, dense */
    const int64_t ow = 2 * a.w, ohw = 4 * (int64_t)a.h * a.w;
    const int64_t n = p / ohw;
    const int oy = (int)((p - n * ohw) / ow), ox = (int)(p - n * ohw - oy * ow);
    const int64_t mi = (n * a.h + oy / 2) * a.w + ox / 2;
    const int ab = (oy % 2) * 2 + ox % 2;
    float s = 0.0f;
    for (int ci = 0; ci < a.cin; ci++)
      s += to_f(x[mi * a.ldx + ci]) * to_f(w[((int64_t)ci * 4 + ab) * a.cout + co]);
    if (a.bias_on) s += a.bias[co];
    if (a.relu) s = fmaxf(s, 0.0f);
    y[p * a.ldy + co] = from_f<T>(s);
  }
}

template <typename T>
__global__ void ref_dgrad(const args_t a) {
  const T *dy = static_cast<const T *>(a.a), *w = static_cast<const T *>(a.b);
  T *dx = static_cast<T *>(a.out);
  const int64_t total = a.m * a.cin;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int ci = (int)(e % a.cin);
    const int64_t mi = e / a.cin;
    float s = 0.0f;
    for (int ab = 0; ab < 4; ab++)
      for (int co = 0; co < a.cout; co++)
        s += to_f(dy[out_px(mi, ab, a.h, a.w) * a.ldy + co]) *
             to_f(w[((int64_t)ci * 4 + ab) * a.cout + co]);
    if (a.accum) s += to_f(dx[mi * a.ldx + ci]);
    dx[mi * a.ldx + ci] = from_f<T>(s);
  }
}

/* One block an output: dw elements [0, cin 4cout), then db[co]. Thread t sums pixels t, t +
 * 256, ... in order, then a fixed tree over the threads. */
template <typename T>
__global__ void __launch_bounds__(256) ref_wgrad(const args_t a, float *db) {
  extern __shared__ __align__(128) unsigned char smem[]; /* 256 floats */
  float *part = reinterpret_cast<float *>(smem);
  const int n4 = 4 * a.cout, ne = a.cin * n4, e = blockIdx.x;
  const T *x = static_cast<const T *>(a.a), *dy = static_cast<const T *>(a.b);
  float s = 0.0f;
  if (e < ne) {
    const int ci = e / n4, ab = (e - ci * n4) / a.cout, co = e - ci * n4 - ab * a.cout;
    for (int64_t m = threadIdx.x; m < a.m; m += 256)
      s += to_f(x[m * a.ldx + ci]) * to_f(dy[out_px(m, ab, a.h, a.w) * a.ldy + co]);
  } else {
    const int co = e - ne;
    for (int64_t m = threadIdx.x; m < a.m; m += 256)
      for (int ab = 0; ab < 4; ab++) s += to_f(dy[out_px(m, ab, a.h, a.w) * a.ldy + co]);
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int h = 128; h > 0; h >>= 1) {
    if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (e < ne)
      static_cast<T *>(a.out)[e] = from_f<T>(part[0]);
    else
      db[e - ne] = part[0];
  }
}

/* ---- shapes (host) ----------------------------------------------------------------------- */

/* The weight gradient's split: S column parts, NF fragments a warp. */
void wgrad_split(const cg_upconv_shape_t *s, int *parts, int *nf) {
  const int frags = s->cin / 16 * (s->cout / 4); /* 16 x 16 fragments of cin x 4 cout */
  int p = 1;
  while (frags / kWarps / p > 8) p *= 2;
  *parts = p;
  *nf = frags / kWarps / p;
}

int wgrad_smem(const cg_upconv_shape_t *s, int parts) {
  return 2 * 2 * kBMW * (s->cin + kPad + 4 * s->cout / parts + kPad);
}

int64_t wgrad_stride(const cg_upconv_shape_t *s) {
  return ((int64_t)(s->cin + 1) * 4 * s->cout + 63) / 64 * 64;
}

bool pow2_in(int v, int lo, int hi) { return v >= lo && v <= hi && (v & (v - 1)) == 0; }

/* Blocks of the forward / input gradient: one wave (SMs x blocks an SM), no more than the
 * tiles, nor than cap (> 0: CG_UPCONV_MAX_BLOCKS). */
int64_t dx_blocks(int64_t tiles, int64_t wave, int64_t cap) {
  int64_t b = tiles < wave ? tiles : wave;
  if (cap > 0 && b > cap) b = cap;
  return b < 1 ? 1 : b;
}

/* Blocks along x of the weight gradient in `parts` column parts: one wave over the parts, at
 * least 4 tiles a block (partial sums cost a pass too), no more partial sums than kWorkMax,
 * nor blocks than cap (> 0). */
int64_t wgrad_blocks(const cg_upconv_shape_t *s, int parts, int64_t wave, int64_t cap) {
  const int64_t tiles = ((int64_t)s->n * s->h * s->w + kBMW - 1) / kBMW;
  int64_t b = wave / parts;
  if (b > tiles / 4) b = tiles / 4;
  const int64_t work = (int64_t)(kWorkMax / (sizeof(float) * (size_t)wgrad_stride(s)));
  if (b > work) b = work;
  if (cap > 0 && b > cap) b = cap;
  return b < 1 ? 1 : b;
}

/* Whether the kernels handle s (upconv.h's rules) with at most smem_max bytes of shared
 * memory a block. */
bool shape_ok(const cg_upconv_shape_t *s, int smem_max) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16)) return false;
  if (s->op < CG_UPCONV_FWD || s->op > CG_UPCONV_WGRAD) return false;
  if (!pow2_in(s->cin, 16, 128) || !pow2_in(s->cout, 16, 64)) return false;
  if (s->n < 1 || s->h < 1 || s->w < 1 || (int64_t)s->n * s->h * s->w >= ((int64_t)1 << 31))
    return false;
  if (s->ldx < s->cin || s->ldy < s->cout || s->ldx % 8 || s->ldy % 8) return false;
  if (s->op == CG_UPCONV_WGRAD) {
    if (s->cin * s->cout < 512) return false; /* at least one fragment a warp */
    int parts, nf;
    wgrad_split(s, &parts, &nf);
    return parts <= 4 && wgrad_smem(s, parts) <= smem_max;
  }
  return dx_smem(s->cin, s->cout, s->op == CG_UPCONV_DGRAD) <= smem_max;
}

/* The kernels' arguments for s (db: the weight gradient also sums the bias gradient), with
 * the tiles and, for the weight gradient, its column parts (wgrad_split) and partial sums. */
args_t make_args(const cg_upconv_shape_t *s, const void *a, const void *b, const float *bias,
                 void *out, void *work, bool db) {
  args_t r;
  memset(&r, 0, sizeof r);
  r.a = a;
  r.b = b;
  r.bias = bias;
  r.out = out;
  r.work = static_cast<float *>(work);
  r.m = (int64_t)s->n * s->h * s->w;
  r.h = s->h;
  r.w = s->w;
  r.cin = s->cin;
  r.cout = s->cout;
  r.ldx = s->ldx;
  r.ldy = s->ldy;
  r.relu = s->op == CG_UPCONV_FWD && s->relu;
  r.accum = s->op == CG_UPCONV_DGRAD && s->accum;
  if (s->op != CG_UPCONV_WGRAD) {
    r.bias_on = s->op == CG_UPCONV_FWD && s->bias;
    r.tiles = (r.m + kBM - 1) / kBM;
    return r;
  }
  int parts, nf;
  wgrad_split(s, &parts, &nf);
  r.bias_on = db;
  r.tiles = (r.m + kBMW - 1) / kBMW;
  r.nb = 4 * s->cout / parts;
  r.wstride = wgrad_stride(s);
  return r;
}

}  // namespace

#endif
