/* head.cu: the 1x1 convolution to one logit (see head.h).
 *
 *  - Forward: when c is a multiple of a 16-byte pack (8 halves, 4 floats) and x is 16-byte
 *    aligned, a thread per pixel reads its row in packs and sums in channel order (fp32). Else
 *    a warp per pixel: lane k reads channel k (and k+32, ...), summed by a fixed shuffle tree.
 *    (The warp-per-pixel form spends its time in the shuffles and in one store per warp: on
 *    the UNet's 2M-pixel, 32-channel head it took ~0.18 ms on an H200 for 128 MiB of reads.)
 *  - dx: with the same condition a thread per 16-byte pack of dx (fully coalesced stores);
 *    else lanes over channels, warps over pixels.
 *  - dw and db: a two-pass deterministic reduction over pixels. Pass 1 gives block j the fixed
 *    pixel range [j*chunk, (j+1)*chunk) and a 32 x 8 thread tile: 32 consecutive columns (so
 *    the reads of x are coalesced) by 8 pixel rows; column c (one past the last channel) is the
 *    bias, whose "input" is 1; the first tile's thread 0 sums it alongside its own column, so
 *    no pass over the pixels serves one column only. The 8 rows are added in order and one
 *    partial per (chunk, column) is written. Pass 2 adds each column's partials in chunk order. The chunking depends
 *    only on npix, so the result is bitwise the same on every run and device.
 *  - The fused backward (cg_head_bwd_fused) makes dx, dw, db and the bias gradient of x's own
 *    layer (its ReLU mask applied to dx) from one read of x and dlogit: blocks own a fixed
 *    chunk of pixels for a tile of channel packs, a thread a 16-byte pack of channels (one
 *    element when c or the pointers do not allow packs), two pixels' loads in flight at a
 *    time; each thread sums g x, the dx it stores and g, a fixed tree over the block writes
 *    partials [chunk][2c + 1], and one warp per column adds them in a fixed order. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dtype.cuh"
#include "head.h"
#include "launch.h"

namespace {

constexpr int kBlock = 256;
constexpr int kTX = 32, kTY = 8;   /* pass-1 tile: columns x pixel rows */
constexpr int kMaxChunks = 2048; /* enough blocks to fill the GPU */
constexpr int64_t kMinChunk = 256;

struct plan_t {
  int64_t chunk;
  int nchunks;
};

plan_t plan_for(int64_t npix) {
  plan_t q;
  q.chunk = (npix + kMaxChunks - 1) / kMaxChunks;
  if (q.chunk < kMinChunk) q.chunk = kMinChunk;
  q.nchunks = (int)((npix + q.chunk - 1) / q.chunk);
  return q;
}

/* Threads of a block along the channels (packs): the smallest power of two >= cpk, at most 32. */
int tile_x(int cpk) {
  int tx = 1;
  while (tx < cpk && tx < 32) tx *= 2;
  return tx;
}

/* The fused backward's partition, a pure function of (npix, c) as the bias backward's in
 * kernels_act.cu: about 1024 blocks (chunks x channel tiles), chunks of at least 64 pixels. */
plan_t fused_plan(int64_t npix, int c) {
  const int tx = tile_x(c), ntiles = (c + tx - 1) / tx;
  const int64_t by_size = (npix + 63) / 64, by_grid = 1024 / ntiles;
  const int64_t nch = by_size < by_grid ? by_size : by_grid;
  plan_t q;
  q.nchunks = (int)(nch < 1 ? 1 : nch);
  q.chunk = npix > 0 ? (npix + q.nchunks - 1) / q.nchunks : 0;
  return q;
}

/* Whether the packed kernels apply: whole packs per pixel, 16-byte aligned rows. */
bool packed_ok(const void *p, int c, size_t es) {
  const int v = (int)(16 / es);
  return c % v == 0 && ((uintptr_t)p & 15u) == 0;
}

/* ---- kernels ----------------------------------------------------------------------------- */

template <typename T, int V>
__global__ void head_fwd_packed_kernel(const T *x, int64_t npix, int c, const T *w,
                                       const float *b, T *logit) {
  const float bias = b[0];
  const int np = c / V;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < npix; p += stride) {
    const pack_t<T, V> *xp = reinterpret_cast<const pack_t<T, V> *>(x + p * c);
    float acc = 0.0f;
    for (int j = 0; j < np; j++) {
      const pack_t<T, V> xv = xp[j];
#pragma unroll
      for (int e = 0; e < V; e++) acc = fmaf(to_f(xv.v[e]), to_f(w[j * V + e]), acc);
    }
    logit[p] = from_f<T>(acc + bias);
  }
}

template <typename T, int V>
__global__ void head_dx_packed_kernel(const T *dlogit, const T *w, int64_t npix, int c, T *dx) {
  const int np = c / V;
  const int64_t n = npix * np, stride = (int64_t)gridDim.x * blockDim.x;
  pack_t<T, V> *out = reinterpret_cast<pack_t<T, V> *>(dx);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t p = i / np;
    const int k0 = (int)(i - p * np) * V;
    const float g = to_f(dlogit[p]);
    pack_t<T, V> o;
#pragma unroll
    for (int e = 0; e < V; e++) o.v[e] = from_f<T>(g * to_f(w[k0 + e]));
    out[i] = o;
  }
}

template <typename T>
__global__ void head_fwd_kernel(const T *x, int64_t npix, int c, const T *w, const float *b,
                                T *logit) {
  const float bias = b[0];
  const int lane = threadIdx.x & 31;
  const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t p = warp; p < npix; p += nwarps) { /* uniform per warp: the shuffles are safe */
    const T *xp = x + p * c;
    float acc = 0.0f;
    for (int k = lane; k < c; k += 32) acc = fmaf(to_f(xp[k]), to_f(w[k]), acc);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) logit[p] = from_f<T>(acc + bias);
  }
}

template <typename T>
__global__ void head_dx_kernel(const T *dlogit, const T *w, int64_t npix, int c, T *dx) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t p = warp; p < npix; p += nwarps) {
    const float g = to_f(dlogit[p]);
    for (int k = lane; k < c; k += 32) dx[p * c + k] = from_f<T>(g * to_f(w[k]));
  }
}

/* Pass 1: partial[j][col] for col in [0, c] (col == c: the bias) over block j's pixels. */
template <typename T>
__global__ void head_dw_partial_kernel(const T *x, const T *dlogit, int64_t npix, int c,
                                       int64_t chunk, float *partial) {
  __shared__ float red[kTY][kTX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t p0 = (int64_t)blockIdx.x * chunk;
  const int64_t p1 = p0 + chunk < npix ? p0 + chunk : npix;
  __shared__ float redb[kTY];
  for (int c0 = 0; c0 < c; c0 += kTX) { /* uniform over the block: barriers are safe */
    const int col = c0 + tx;
    const bool bias_col = c0 == 0 && tx == 0; /* also sums the bias column */
    float acc = 0.0f, accb = 0.0f;
    if (col < c) {
      for (int64_t p = p0 + ty; p < p1; p += kTY) {
        const float g = to_f(dlogit[p]);
        acc = fmaf(g, to_f(x[p * c + col]), acc);
        if (bias_col) accb += g;
      }
    }
    red[ty][tx] = acc;
    if (bias_col) redb[ty] = accb;
    __syncthreads();
    if (ty == 0 && col < c) {
      float sum = 0.0f;
      for (int j = 0; j < kTY; j++) sum += red[j][tx];
      partial[(int64_t)blockIdx.x * (c + 1) + col] = sum;
      if (bias_col) {
        float sb = 0.0f;
        for (int j = 0; j < kTY; j++) sb += redb[j];
        partial[(int64_t)blockIdx.x * (c + 1) + c] = sb;
      }
    }
    __syncthreads();
  }
}

/* Pass 2: block col adds that column's partials: thread t the chunks t, t + 256, ... in order,
 * then a fixed shared-memory tree, so the sum is the same on every run. */
__global__ void head_dw_final_kernel(const float *partial, int nchunks, int c, float *dw,
                                     float *db) {
  __shared__ float red[kBlock];
  const int col = blockIdx.x, t = threadIdx.x;
  float sum = 0.0f;
  for (int j = t; j < nchunks; j += kBlock) sum += partial[(int64_t)j * (c + 1) + col];
  red[t] = sum;
  __syncthreads();
  for (int h = kBlock / 2; h > 0; h >>= 1) {
    if (t < h) red[t] += red[t + h];
    __syncthreads();
  }
  if (t == 0) {
    if (col < c)
      dw[col] = red[0];
    else
      db[0] = red[0];
  }
}

/* The fused backward (head + the ReLU/bias backward of x's layer), pass 1. Block (tx, ty) =
 * (channel pack in the tile, pixel row): packs blockIdx.y * TX + tx, pixels
 * [blockIdx.x * chunk, + chunk) strided by TY. Per pixel, from one read of x and dlogit:
 * dx = g w (zero where x <= 0 with relu), and the thread's sums of g x (dw), of the dx it
 * stores, rounded (dbias_x), and of g (db; every thread keeps it, column 0 of tile 0 writes
 * it). A fixed-shape tree over ty then writes partial[blockIdx.x][0..c) = dw,
 * [c..2c) = dbias_x, [2c] = db. */
template <typename T, int V>
__global__ void __launch_bounds__(kBlock, 4)
    head_bwd_fused_kernel(const T *__restrict__ x, const T *__restrict__ w,
                          const T *__restrict__ dlogit, int64_t npix, int cpk,
                          T *__restrict__ dx, int relu, int64_t chunk,
                          float *__restrict__ partial) {
  typedef pack_t<T, V> P;
  constexpr int NS = 2 * V + 1; /* sums per thread; odd, so the tree's rows miss no bank */
  __shared__ float red[kBlock * NS];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int pk = blockIdx.y * TX + tx;
  const int64_t p0 = (int64_t)blockIdx.x * chunk;
  const int64_t p1 = p0 + chunk < npix ? p0 + chunk : npix;
  const P *xp = reinterpret_cast<const P *>(x);
  P *dp = reinterpret_cast<P *>(dx);
  float sw[V], sb[V], wv[V], sg = 0.0f;
#pragma unroll
  for (int e = 0; e < V; e++) sw[e] = sb[e] = 0.0f;
  if (pk < cpk) {
#pragma unroll
    for (int e = 0; e < V; e++) wv[e] = to_f(w[pk * V + e]);
    /* U pixels per step, loads first, so a thread keeps U 16-byte loads in flight (one per
     * step leaves the memory idle at this occupancy; U = 4 needs > 64 registers) */
    constexpr int U = 2;
    for (int64_t p = p0 + ty; p < p1; p += (int64_t)U * TY) {
      float g[U];
      P xv[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int64_t q = p + (int64_t)u * TY;
        if (q < p1) {
          g[u] = to_f(dlogit[q]);
          xv[u] = xp[q * cpk + pk];
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int64_t q = p + (int64_t)u * TY;
        if (q < p1) {
          P o;
#pragma unroll
          for (int e = 0; e < V; e++) {
            const float xe = to_f(xv[u].v[e]);
            sw[e] = fmaf(g[u], xe, sw[e]);
            o.v[e] = from_f<T>(relu && !(xe > 0.0f) ? 0.0f : g[u] * wv[e]);
            sb[e] += to_f(o.v[e]);
          }
          dp[q * cpk + pk] = o;
          sg += g[u];
        }
      }
    }
  }
  float *mine = red + (ty * TX + tx) * NS;
#pragma unroll
  for (int e = 0; e < V; e++) {
    mine[e] = sw[e];
    mine[V + e] = sb[e];
  }
  mine[2 * V] = sg;
  __syncthreads();
  for (int off = TY / 2; off > 0; off >>= 1) {
    if (ty < off) {
      const float *other = red + ((ty + off) * TX + tx) * NS;
#pragma unroll
      for (int e = 0; e < NS; e++) mine[e] += other[e];
    }
    __syncthreads();
  }
  if (ty == 0 && pk < cpk) {
    const int c = cpk * V;
    float *out = partial + (int64_t)blockIdx.x * (2 * c + 1);
#pragma unroll
    for (int e = 0; e < V; e++) {
      out[pk * V + e] = mine[e];
      out[c + pk * V + e] = mine[V + e];
    }
    if (pk == 0) out[2 * c] = mine[2 * V];
  }
}

/* Fused pass 2: one warp per column of partial[nchunks][2c + 1]: lanes stride the chunks,
 * then a fixed shuffle tree. Columns [c, 2c) are skipped when dbias_x is NULL. */
__global__ void head_fused_final_kernel(const float *partial, int nchunks, int c, float *dw,
                                        float *dbias_x, float *db) {
  const int lane = threadIdx.x & 31;
  const int64_t ncol = 2 * (int64_t)c + 1, nwarps = (int64_t)gridDim.x * blockDim.x / 32;
  /* the loop condition is uniform over a warp: the full-mask shuffles have every lane */
  for (int64_t col = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; col < ncol;
       col += nwarps) {
    if (!dbias_x && col >= c && col < 2 * (int64_t)c) continue;
    float acc = 0.0f;
    for (int j = lane; j < nchunks; j += 32) acc += partial[(int64_t)j * ncol + col];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) {
      if (col < c)
        dw[col] = acc;
      else if (col < 2 * (int64_t)c)
        dbias_x[col - c] = acc;
      else
        db[0] = acc;
    }
  }
}

}  // namespace

/* ---- launchers --------------------------------------------------------------------------- */

void cg_head_fwd(cg_dtype_t dt, const void *d_x, int64_t npix, int c, const void *d_w,
                 const float *d_b, void *d_logit, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1);
  if (npix == 0) return;
  CG_ASSERT(d_x != NULL && d_w != NULL && d_b != NULL && d_logit != NULL);
  if (packed_ok(d_x, c, cg_dtype_size(dt))) { /* a thread per pixel, 16-byte loads */
    CG_DT_SWITCH(dt, T, head_fwd_packed_kernel<T, 16 / sizeof(T)>
                      <<<cg_grid_for(npix, kBlock), kBlock, 0, s>>>(
                          static_cast<const T *>(d_x), npix, c, static_cast<const T *>(d_w), d_b,
                          static_cast<T *>(d_logit)));
    CG_CHECK_LAUNCH("head_fwd_packed_kernel");
    return;
  }
  /* one warp per pixel (grid-stride): kBlock / 32 pixels per block */
  CG_DT_SWITCH(dt, T, head_fwd_kernel<T><<<cg_grid_for(npix * 32, kBlock), kBlock, 0, s>>>(
                            static_cast<const T *>(d_x), npix, c, static_cast<const T *>(d_w),
                            d_b, static_cast<T *>(d_logit)));
  CG_CHECK_LAUNCH("head_fwd_kernel");
}

size_t cg_head_bwd_work_bytes(int64_t npix, int c) {
  CG_ASSERT(npix >= 0 && c >= 1);
  if (npix == 0) return 0;
  const plan_t q = plan_for(npix);
  return (size_t)q.nchunks * (size_t)(c + 1) * sizeof(float);
}

void cg_head_bwd(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                 int64_t npix, int c, void *d_dx, float *d_dw, float *d_db, void *d_work,
                 cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1);
  CG_ASSERT(d_dw != NULL && d_db != NULL);
  if (npix == 0) { /* sums over no pixels */
    CG_CHECK_CUDA(cudaMemsetAsync(d_dw, 0, (size_t)c * sizeof(float), s));
    CG_CHECK_CUDA(cudaMemsetAsync(d_db, 0, sizeof(float), s));
    return;
  }
  CG_ASSERT(d_x != NULL && d_w != NULL && d_dlogit != NULL && d_work != NULL);
  if (d_dx && packed_ok(d_dx, c, cg_dtype_size(dt))) { /* a thread per 16-byte pack */
    const int64_t packs = npix * (c / (int)(16 / cg_dtype_size(dt)));
    CG_DT_SWITCH(dt, T, head_dx_packed_kernel<T, 16 / sizeof(T)>
                      <<<cg_grid_for(packs, kBlock), kBlock, 0, s>>>(
                          static_cast<const T *>(d_dlogit), static_cast<const T *>(d_w), npix, c,
                          static_cast<T *>(d_dx)));
    CG_CHECK_LAUNCH("head_dx_packed_kernel");
  } else if (d_dx) {
    CG_DT_SWITCH(dt, T, head_dx_kernel<T><<<cg_grid_for(npix * 32, kBlock), kBlock, 0, s>>>(
                              static_cast<const T *>(d_dlogit), static_cast<const T *>(d_w),
                              npix, c, static_cast<T *>(d_dx)));
    CG_CHECK_LAUNCH("head_dx_kernel");
  }
  const plan_t q = plan_for(npix);
  float *partial = static_cast<float *>(d_work);
  const dim3 block(kTX, kTY);
  CG_DT_SWITCH(dt, T, head_dw_partial_kernel<T><<<q.nchunks, block, 0, s>>>(
                            static_cast<const T *>(d_x), static_cast<const T *>(d_dlogit), npix,
                            c, q.chunk, partial));
  CG_CHECK_LAUNCH("head_dw_partial_kernel");
  head_dw_final_kernel<<<c + 1, kBlock, 0, s>>>(partial, q.nchunks, c, d_dw, d_db);
  CG_CHECK_LAUNCH("head_dw_final_kernel");
}

size_t cg_head_bwd_fused_work_bytes(int64_t npix, int c) {
  CG_ASSERT(npix >= 0 && c >= 1 && c <= (INT32_MAX - 1) / 2);
  const plan_t q = fused_plan(npix, c);
  return (size_t)q.nchunks * (2 * (size_t)c + 1) * sizeof(float);
}

template <typename T, int V>
void head_fused_launch(const void *d_x, const void *d_w, const void *d_dlogit, int64_t npix,
                       int c, void *d_dx, int relu, const plan_t &q, float *partial,
                       cudaStream_t s) {
  const int cpk = c / V, tx = tile_x(cpk), ty = kBlock / tx, ntiles = (cpk + tx - 1) / tx;
  CG_ASSERT(ntiles <= 65535);
  head_bwd_fused_kernel<T, V><<<dim3(q.nchunks, ntiles), dim3(tx, ty), 0, s>>>(
      static_cast<const T *>(d_x), static_cast<const T *>(d_w),
      static_cast<const T *>(d_dlogit), npix, cpk, static_cast<T *>(d_dx), relu, q.chunk,
      partial);
}

void cg_head_bwd_fused(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                       int64_t npix, int c, void *d_dx, int relu_x, float *d_dbias_x,
                       float *d_dw, float *d_db, void *d_work, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && c <= (INT32_MAX - 1) / 2);
  CG_ASSERT(d_dw != NULL && d_db != NULL);
  if (npix == 0) { /* sums over no pixels */
    CG_CHECK_CUDA(cudaMemsetAsync(d_dw, 0, (size_t)c * sizeof(float), s));
    CG_CHECK_CUDA(cudaMemsetAsync(d_db, 0, sizeof(float), s));
    if (d_dbias_x) CG_CHECK_CUDA(cudaMemsetAsync(d_dbias_x, 0, (size_t)c * sizeof(float), s));
    return;
  }
  CG_ASSERT(d_x != NULL && d_w != NULL && d_dlogit != NULL && d_dx != NULL);
  CG_ASSERT(d_work != NULL && ((uintptr_t)d_work & 3u) == 0);
  const plan_t q = fused_plan(npix, c);
  float *partial = static_cast<float *>(d_work);
  const size_t es = cg_dtype_size(dt);
  const bool vec = packed_ok(d_x, c, es) && packed_ok(d_dx, c, es);
  CG_DT_SWITCH(dt, T,
               if (vec) head_fused_launch<T, 16 / sizeof(T)>(d_x, d_w, d_dlogit, npix, c, d_dx,
                                                             relu_x, q, partial, s);
               else head_fused_launch<T, 1>(d_x, d_w, d_dlogit, npix, c, d_dx, relu_x, q,
                                            partial, s));
  CG_CHECK_LAUNCH("head_bwd_fused_kernel");
  const unsigned g = cg_grid_for((2 * (int64_t)c + 1) * 32, kBlock);
  head_fused_final_kernel<<<g, kBlock, 0, s>>>(partial, q.nchunks, c, d_dw, d_dbias_x, d_db);
  CG_CHECK_LAUNCH("head_fused_final_kernel");
}

/* ---- K outputs (the multi-class head) -------------------------------------------------------
 *  - Forward: a thread per (pixel, class), consecutive threads the classes of one pixel, so
 *    the pixel's row of x is read once from memory and K times from L1; channel order, fp32.
 *  - Backward: block j owns the fixed pixel range [j*chunk, (j+1)*chunk), walked in tiles of
 *    TP pixels staged in shared memory as float (x, dlogit, and the dx it stores, rounded).
 *    dx[p][c] = sum_k dlogit[p][k] w[k][c] (ReLU-masked with relu_x) by a thread per element;
 *    then every output column of the weight side (dw[k][c], db[k], dbias_x[c]) is owned by one
 *    thread, which adds the tile's pixels in order into its accumulator (shared memory, or the
 *    block's row of the partials when K*C does not fit). Pass 2 is the one-warp-per-column sum
 *    of head_fused_final_kernel over the chunks. Every order is fixed by (npix, c, K). */

namespace {

constexpr int kKTile = 32;                 /* pixels per staged tile (at most) */
constexpr size_t kKShm = 48 * 1024;        /* static limit of dynamic shared memory */

struct hk_layout_t {
  int tp;          /* pixels per tile */
  int w_in_shm;    /* the K x C weights staged as float */
  int acc_in_shm;  /* the accumulators in shared memory (else in the partial row) */
  size_t bytes;    /* dynamic shared memory */
};

/* Output columns of the weight side: dw [K*C], db [K], dbias_x [C]. */
__host__ __device__ inline int64_t hk_ncol(int c, int k) { return (int64_t)k * c + k + c; }

hk_layout_t hk_layout(int c, int k) {
  hk_layout_t L;
  const size_t f = sizeof(float), per_pix = (size_t)(2 * c + k) * f;
  size_t tp = kKShm / 2 / per_pix; /* tiles take at most half */
  if (tp > (size_t)kKTile) tp = kKTile;
  if (tp < 1) tp = 1;
  L.tp = (int)tp;
  size_t used = tp * per_pix;
  const size_t wb = (size_t)k * c * f, ab = (size_t)hk_ncol(c, k) * f;
  L.w_in_shm = used + wb <= kKShm;
  if (L.w_in_shm) used += wb;
  L.acc_in_shm = used + ab <= kKShm;
  if (L.acc_in_shm) used += ab;
  L.bytes = used;
  return L;
}

plan_t hk_plan(int64_t npix) {
  plan_t q;
  const int64_t by_size = (npix + 63) / 64;
  q.nchunks = (int)(by_size < 1024 ? (by_size < 1 ? 1 : by_size) : 1024);
  q.chunk = npix > 0 ? (npix + q.nchunks - 1) / q.nchunks : 0;
  return q;
}

template <typename T>
__global__ void head_k_fwd_kernel(const T *x, int64_t npix, int c, int k, const T *w,
                                  const float *b, T *logit) {
  const int64_t n = npix * k, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t p = e / k;
    const int o = (int)(e - p * k);
    const T *xp = x + p * c, *wp = w + (int64_t)o * c;
    float acc = 0.0f;
    for (int j = 0; j < c; j++) acc = fmaf(to_f(xp[j]), to_f(wp[j]), acc);
    logit[e] = from_f<T>(acc + b[o]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    head_k_bwd_kernel(const T *__restrict__ x, const T *__restrict__ w,
                      const T *__restrict__ dlogit, int64_t npix, int c, int k,
                      T *__restrict__ dx, int relu, int want_dbx, int64_t chunk, int tp,
                      int w_in_shm, int acc_in_shm, float *__restrict__ partial) {
  extern __shared__ float shm[];
  const int t = threadIdx.x;
  const int64_t ncol = hk_ncol(c, k);
  float *xs = shm, *gs = xs + (size_t)tp * c, *ds = gs + (size_t)tp * k;
  float *ws = ds + (size_t)tp * c;
  float *acc_shm = ws + (w_in_shm ? (size_t)k * c : 0);
  float *acc = acc_in_shm ? acc_shm : partial + (int64_t)blockIdx.x * ncol;
  if (w_in_shm)
    for (int64_t e = t; e < (int64_t)k * c; e += kBlock) ws[e] = to_f(w[e]);
  for (int64_t o = t; o < ncol; o += kBlock) acc[o] = 0.0f;
  const int64_t p0 = (int64_t)blockIdx.x * chunk;
  const int64_t p1 = p0 + chunk < npix ? p0 + chunk : npix;
  for (int64_t q0 = p0; q0 < p1; q0 += tp) {
    const int np = (int)(p1 - q0 < tp ? p1 - q0 : tp);
    __syncthreads(); /* the previous tile is consumed (and ws, acc initialised) */
    for (int e = t; e < np * c; e += kBlock) xs[e] = to_f(x[q0 * c + e]);
    for (int e = t; e < np * k; e += kBlock) gs[e] = to_f(dlogit[q0 * k + e]);
    __syncthreads();
    if (dx) {
      for (int e = t; e < np * c; e += kBlock) {
        const int p = e / c, cc = e - p * c;
        float v = 0.0f;
        for (int o = 0; o < k; o++)
          v = fmaf(gs[p * k + o], w_in_shm ? ws[o * c + cc] : to_f(w[(int64_t)o * c + cc]), v);
        if (relu && !(xs[e] > 0.0f)) v = 0.0f;
        const T r = from_f<T>(v);
        dx[q0 * c + e] = r;
        ds[e] = to_f(r);
      }
      __syncthreads();
    }
    for (int64_t o = t; o < ncol; o += kBlock) {
      float a = acc[o];
      if (o < (int64_t)k * c) { /* dw[kk][cc] */
        const int kk = (int)(o / c), cc = (int)(o - (int64_t)kk * c);
        for (int p = 0; p < np; p++) a = fmaf(gs[p * k + kk], xs[p * c + cc], a);
      } else if (o < (int64_t)k * c + k) { /* db[kk] */
        const int kk = (int)(o - (int64_t)k * c);
        for (int p = 0; p < np; p++) a += gs[p * k + kk];
      } else if (want_dbx) { /* dbias_x[cc] */
        const int cc = (int)(o - (int64_t)k * c - k);
        for (int p = 0; p < np; p++) a += ds[p * c + cc];
      }
      acc[o] = a;
    }
  }
  if (acc_in_shm) {
    __syncthreads();
    for (int64_t o = t; o < ncol; o += kBlock) partial[(int64_t)blockIdx.x * ncol + o] = acc[o];
  }
}

/* One warp per column of partial[nchunks][K*C + K + C]: lanes stride the chunks, then a fixed
 * shuffle tree. */
__global__ void head_k_final_kernel(const float *partial, int nchunks, int c, int k, float *dw,
                                    float *db, float *dbias_x) {
  const int lane = threadIdx.x & 31;
  const int64_t ncol = hk_ncol(c, k), nwarps = (int64_t)gridDim.x * blockDim.x / 32;
  const int64_t kc = (int64_t)k * c;
  for (int64_t col = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; col < ncol;
       col += nwarps) { /* uniform per warp */
    if (!dbias_x && col >= kc + k) continue;
    float a = 0.0f;
    for (int j = lane; j < nchunks; j += 32) a += partial[(int64_t)j * ncol + col];
    for (int off = 16; off > 0; off >>= 1) a += __shfl_down_sync(0xffffffffu, a, off);
    if (lane == 0) {
      if (col < kc)
        dw[col] = a;
      else if (col < kc + k)
        db[col - kc] = a;
      else
        dbias_x[col - kc - k] = a;
    }
  }
}

}  // namespace

void cg_head_k_fwd(cg_dtype_t dt, const void *d_x, int64_t npix, int c, int k, const void *d_w,
                   const float *d_b, void *d_logit, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && k >= 1);
  if (npix == 0) return;
  CG_ASSERT(d_x != NULL && d_w != NULL && d_b != NULL && d_logit != NULL);
  CG_DT_SWITCH(dt, T, head_k_fwd_kernel<T><<<cg_grid_for(npix * k, kBlock), kBlock, 0, s>>>(
                            static_cast<const T *>(d_x), npix, c, k, static_cast<const T *>(d_w),
                            d_b, static_cast<T *>(d_logit)));
  CG_CHECK_LAUNCH("head_k_fwd_kernel");
}

size_t cg_head_k_bwd_work_bytes(int64_t npix, int c, int k) {
  CG_ASSERT(npix >= 0 && c >= 1 && k >= 1);
  const plan_t q = hk_plan(npix);
  return (size_t)q.nchunks * (size_t)hk_ncol(c, k) * sizeof(float);
}

void cg_head_k_bwd(cg_dtype_t dt, const void *d_x, const void *d_w, const void *d_dlogit,
                   int64_t npix, int c, int k, void *d_dx, int relu_x, float *d_dbias_x,
                   float *d_dw, float *d_db, void *d_work, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && k >= 1);
  CG_ASSERT(d_dw != NULL && d_db != NULL);
  CG_ASSERT(!d_dbias_x || d_dx); /* the bias gradient of x is a sum of dx */
  if (npix == 0) {
    CG_CHECK_CUDA(cudaMemsetAsync(d_dw, 0, (size_t)k * c * sizeof(float), s));
    CG_CHECK_CUDA(cudaMemsetAsync(d_db, 0, (size_t)k * sizeof(float), s));
    if (d_dbias_x) CG_CHECK_CUDA(cudaMemsetAsync(d_dbias_x, 0, (size_t)c * sizeof(float), s));
    return;
  }
  CG_ASSERT(d_x != NULL && d_w != NULL && d_dlogit != NULL && d_work != NULL);
  CG_ASSERT(((uintptr_t)d_work & 3u) == 0);
  const plan_t q = hk_plan(npix);
  const hk_layout_t L = hk_layout(c, k);
  CG_ASSERT(L.bytes <= kKShm);
  float *partial = static_cast<float *>(d_work);
  CG_DT_SWITCH(dt, T, head_k_bwd_kernel<T><<<q.nchunks, kBlock, L.bytes, s>>>(
                            static_cast<const T *>(d_x), static_cast<const T *>(d_w),
                            static_cast<const T *>(d_dlogit), npix, c, k, static_cast<T *>(d_dx),
                            relu_x, d_dbias_x != NULL, q.chunk, L.tp, L.w_in_shm, L.acc_in_shm,
                            partial));
  CG_CHECK_LAUNCH("head_k_bwd_kernel");
  const unsigned g = cg_grid_for(hk_ncol(c, k) * 32, kBlock);
  head_k_final_kernel<<<g, kBlock, 0, s>>>(partial, q.nchunks, c, k, d_dw, d_db, d_dbias_x);
  CG_CHECK_LAUNCH("head_k_final_kernel");
}
