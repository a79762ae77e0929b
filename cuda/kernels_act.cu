/* kernels_act.cu: the element-wise and data-movement kernels of the CUDA backend: bias +
 * activation (forward; backward with the bias gradient), 2x2 max pool, channel concat,
 * precision casts, input channel padding and the matching weight (un)packing; and two aids to
 * measurement, a random fill and a stream hold. See kernels.h.
 *
 * Every kernel here is memory-bound, so each is one coalesced pass over its data:
 *  - Flat kernels walk a [rows][width] array with a grid-stride loop and keep (row, column)
 *    as running counters (rowcol_t), so no element pays for a 64-bit division.
 *  - Where the channel count and the pointers allow it, a thread moves 16 bytes at once (a
 *    pack of 4 floats or 8 halves, which never straddles two pixels because c % V == 0);
 *    otherwise the same kernel template runs with one element per thread. The choice is made
 *    per launch from c and the pointer alignment, so every shape is valid.
 *  - The bias gradient is a deterministic two-pass reduction. Pass 1 gives each block a fixed
 *    chunk of pixels for a tile of channels and writes one partial sum per (chunk, channel)
 *    into the scratch; pass 2 sums each channel's partials with one warp in a fixed order.
 *    The chunking depends only on (npix, c), never on the device or the timing, so the bias
 *    gradient is bitwise reproducible. The max-pool backward can fold in the backward of the
 *    ReLU + bias that produced its input (the skip): the same two passes over its windows.
 *  - Activations may be strided (pixel stride ld >= c: one half of a concat buffer), so the
 *    concat costs no copy; the dense calls are the strided ones with ld == c.
 *  - The per-layer dW casts to fp32 are batched: a segment table passed by value (so a
 *    captured graph replays without reading host memory) and one grid-stride launch.
 * Values are converted to float, computed on, and rounded to the element type once. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "dtype.cuh"
#include "kernels.h"
#include "launch.h"

namespace {

constexpr int kBlock = 256;          /* threads per block of every kernel here */

/* ---- element types ------------------------------------------------------------------- */

/* Position i = p * width + k of a grid-stride loop over a [rows][width] array, advanced by
 * the grid stride without dividing: k + stride % width < 2 * width, so one wrap is enough. */
struct rowcol_t {
  int64_t i, p, sp;
  int k, sk, width;
  __device__ __forceinline__ explicit rowcol_t(int width_) : width(width_) {
    i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t s = (int64_t)gridDim.x * blockDim.x;
    p = i / width;
    k = (int)(i - p * width);
    sp = s / width;
    sk = (int)(s - sp * width);
  }
  __device__ __forceinline__ void next() {
    i += (int64_t)gridDim.x * blockDim.x;
    p += sp;
    k += sk;
    if (k >= width) {
      k -= width;
      p++;
    }
  }
};

/* ---- kernels --------------------------------------------------------------------------- */

/* The end of a pass-1 kernel: the per-thread sums acc[V] of thread (tx, ty) added over ty by a
 * fixed-shape shared-memory tree, and row 0 writes them to partial[at .. at + V) when it owns a
 * channel pack (own). Called by every thread of the block (it has barriers). */
template <int V>
__device__ __forceinline__ void block_partials(float *red, const float (&acc)[V], bool own,
                                               int64_t at, float *partial) {
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
#pragma unroll
  for (int e = 0; e < V; e++) red[(ty * TX + tx) * V + e] = acc[e];
  __syncthreads();
  for (int off = TY / 2; off > 0; off >>= 1) {
    if (ty < off)
#pragma unroll
      for (int e = 0; e < V; e++) red[(ty * TX + tx) * V + e] += red[((ty + off) * TX + tx) * V + e];
    __syncthreads();
  }
  if (ty == 0 && own)
#pragma unroll
    for (int e = 0; e < V; e++) partial[at + e] = red[tx * V + e];
}


/* y[p][k] = act(y[p][k] + bias[k]), in packs of V channels; cpk = c / V packs per pixel,
 * pixels ldpk packs apart. */
template <typename T, int V>
__global__ void bias_act_fwd_kernel(T *y, int64_t npk, int cpk, int64_t ldpk, const float *bias,
                                    int relu) {
  pack_t<T, V> *yp = reinterpret_cast<pack_t<T, V> *>(y);
  for (rowcol_t it(cpk); it.i < npk; it.next()) {
    const int64_t idx = it.p * ldpk + it.k;
    pack_t<T, V> a = yp[idx];
#pragma unroll
    for (int j = 0; j < V; j++) {
      float v = to_f(a.v[j]);
      if (bias) v += bias[it.k * V + j];
      if (relu) v = v > 0.0f ? v : 0.0f;
      a.v[j] = from_f<T>(v);
    }
    yp[idx] = a;
  }
}

/* Pass 1 of the bias backward. Block (tx, ty) = (channel in the tile, pixel row): channels
 * blockIdx.y * TX + tx, pixels [blockIdx.x * chunk, + chunk) strided by TY. Masks dy in place
 * (relu) and, when partial is not NULL, writes the chunk's per-channel sum to
 * partial[blockIdx.x][c]. The shared-memory tree over ty has a fixed shape: deterministic.
 * Pixels are lddy (dy) and ldy (y) elements apart. */
template <typename T>
__global__ void bias_bwd_partial_kernel(T *dy, int64_t lddy, const T *y, int64_t ldy,
                                        int64_t npix, int c, int relu, int64_t chunk,
                                        float *partial) {
  __shared__ float red[kBlock];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int ch = blockIdx.y * TX + tx;
  const int64_t p0 = (int64_t)blockIdx.x * chunk;
  const int64_t p1 = p0 + chunk < npix ? p0 + chunk : npix;
  float acc = 0.0f;
  if (ch < c) {
    for (int64_t p = p0 + ty; p < p1; p += TY) {
      const int64_t idx = p * lddy + ch;
      float g = to_f(dy[idx]);
      if (relu && !(to_f(y[p * ldy + ch]) > 0.0f)) {
        g = 0.0f;
        dy[idx] = from_f<T>(0.0f);
      }
      acc += g;
    }
  }
  if (partial == nullptr) return; /* uniform over the block: no barrier is skipped by some */
  red[ty * TX + tx] = acc;
  __syncthreads();
  for (int off = TY / 2; off > 0; off >>= 1) {
    if (ty < off) red[ty * TX + tx] += red[(ty + off) * TX + tx];
    __syncthreads();
  }
  if (ty == 0 && ch < c) partial[(int64_t)blockIdx.x * c + ch] = red[tx];
}

/* Pass 1 with 16-byte packs (c % V == 0, aligned dy and y): thread (tx, ty) = (channel pack in
 * the tile, pixel row); the tile is blockIdx.y, the chunk blockIdx.x as above. Each thread
 * keeps V sums; the tree over ty has a fixed shape, so the result depends only on the shape.
 * lddy, ldy: pixel strides in packs.
 * (The scalar kernel moves 2 bytes per thread per load and keeps too few bytes in flight:
 * about 2 TB/s on an H200 where this reaches the memory rate.) */
template <typename T, int V>
__global__ void bias_bwd_partial_packed_kernel(T *dy, int64_t lddy, const T *y, int64_t ldy,
                                               int64_t npix, int cpk, int relu, int64_t chunk,
                                               float *partial) {
  typedef pack_t<T, V> P;
  __shared__ float red[kBlock * V];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int pk = blockIdx.y * TX + tx;
  const int64_t p0 = (int64_t)blockIdx.x * chunk;
  const int64_t p1 = p0 + chunk < npix ? p0 + chunk : npix;
  P *dyp = reinterpret_cast<P *>(dy);
  const P *yp = reinterpret_cast<const P *>(y);
  float acc[V];
#pragma unroll
  for (int e = 0; e < V; e++) acc[e] = 0.0f;
  if (pk < cpk) {
    for (int64_t p = p0 + ty; p < p1; p += TY) {
      const int64_t idx = p * lddy + pk;
      P g = dyp[idx];
      if (relu) {
        const P yv = yp[p * ldy + pk];
#pragma unroll
        for (int e = 0; e < V; e++)
          if (!(to_f(yv.v[e]) > 0.0f)) g.v[e] = from_f<T>(0.0f);
        dyp[idx] = g;
      }
#pragma unroll
      for (int e = 0; e < V; e++) acc[e] += to_f(g.v[e]);
    }
  }
  if (partial == nullptr) return; /* uniform over the block */
  block_partials<V>(red, acc, pk < cpk, (int64_t)blockIdx.x * cpk * V + (int64_t)pk * V, partial);
}

/* Pass 2: one warp per channel sums partial[0..nchunks)[ch]: lanes stride the chunks, then a
 * fixed shuffle tree. Lane 0's result is the same on every run. */
__global__ void bias_bwd_final_kernel(const float *partial, int nchunks, int c, float *dbias) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = (int64_t)gridDim.x * blockDim.x / 32;
  /* the loop condition is the same for the 32 lanes of a warp (blockDim.x % 32 == 0), so the
   * full-mask shuffles always have every lane present */
  for (int64_t ch = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; ch < c;
       ch += nwarps) {
    float acc = 0.0f;
    for (int j = lane; j < nchunks; j += 32) acc += partial[(int64_t)j * c + ch];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) dbias[ch] = acc;
  }
}

/* Block (tx, ty) = (channel pack, output pixel). Output pixel op = r * wo + ox with
 * r = image * ho + oy, whose top-left input pixel is (2r) * w + 2 ox since h = 2 ho. Input
 * pixels are ldx packs apart (a strided x), the output is dense. */
template <typename T, int V>
__global__ void maxpool_fwd_kernel(const T *x, int64_t ldx, int64_t nop, int wo, int w, int cpk,
                                   T *y) {
  typedef pack_t<T, V> P;
  const P *xp = reinterpret_cast<const P *>(x);
  P *yp = reinterpret_cast<P *>(y);
  const int64_t row = (int64_t)w * ldx; /* packs per input row */
  for (int64_t op = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; op < nop;
       op += (int64_t)gridDim.x * blockDim.y) {
    const int64_t r = op / wo;
    const int64_t ox = op - r * wo;
    const int64_t base = (2 * r * w + 2 * ox) * ldx;
    for (int k = threadIdx.x; k < cpk; k += blockDim.x) {
      const P a = xp[base + k], b = xp[base + ldx + k];
      const P c2 = xp[base + row + k], d = xp[base + row + ldx + k];
      P o;
#pragma unroll
      for (int j = 0; j < V; j++) {
        /* strict > keeps the first maximum in scan order, as cg_cpu_maxpool_fwd */
        float m = to_f(a.v[j]);
        const float v1 = to_f(b.v[j]), v2 = to_f(c2.v[j]), v3 = to_f(d.v[j]);
        if (v1 > m) m = v1;
        if (v2 > m) m = v2;
        if (v3 > m) m = v3;
        o.v[j] = from_f<T>(m); /* exact: m is one of the inputs */
      }
      yp[op * cpk + k] = o;
    }
  }
}

/* The backward, with the backward of the ReLU + bias that produced x optionally folded in.
 * Block (tx, ty) = (channel pack in the tile, window): packs blockIdx.y * TX + tx, windows
 * [blockIdx.x * chunk, + chunk) strided by TY (windows numbered as in the forward). x and dx
 * are strided (ldx, lddx packs per pixel), dy dense.
 * The argmax is recomputed from x with the forward's comparisons (first maximum in scan order),
 * so ties (all-zero ReLU windows) go where the CPU sends them. Each input element belongs to
 * exactly one window: no two threads write the same dx. The ReLU mask applies to the final
 * value (routed + old dx when accum), with x the ReLU's output, as cg_k_bias_act_bwd would
 * after this kernel. With partial, each thread sums the dx it stores (rounded, as that pass
 * would read them) over its windows, and a fixed-shape tree over ty writes
 * partial[blockIdx.x][c]: the bias-backward pass 1 of this layout. */
template <typename T, int V, bool ACCUM, bool RELU>
__global__ void maxpool_bwd_kernel(const T *x, int64_t ldx, const T *dy, int64_t nop, int wo,
                                   int w, int cpk, T *dx, int64_t lddx, const T *old,
                                   int64_t ldold, int64_t chunk, float *partial) {
  typedef pack_t<T, V> P;
  __shared__ float red[kBlock * V];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int pk = blockIdx.y * TX + tx;
  const int64_t o0 = (int64_t)blockIdx.x * chunk;
  const int64_t o1 = o0 + chunk < nop ? o0 + chunk : nop;
  const P *xp = reinterpret_cast<const P *>(x);
  const P *gp = reinterpret_cast<const P *>(dy);
  P *dp = reinterpret_cast<P *>(dx);
  const P *op_ = reinterpret_cast<const P *>(old); /* may be dx itself: read before written */
  float acc[V];
#pragma unroll
  for (int e = 0; e < V; e++) acc[e] = 0.0f;
  if (pk < cpk && o0 + ty < o1) {
    /* window op = r * wo + ox, stepped by TY windows without dividing (as rowcol_t) */
    int64_t op = o0 + ty;
    int64_t r = op / wo;
    int ox = (int)(op - r * wo);
    const int dr = TY / wo, dox = TY - dr * wo;
    for (; op < o1; op += TY) {
      const int64_t pix = 2 * r * w + 2 * ox;
      const int64_t px[4] = {pix, pix + 1, pix + w, pix + w + 1};
      P xv[4], o[4];
#pragma unroll
      for (int t = 0; t < 4; t++) xv[t] = xp[px[t] * ldx + pk];
      if (ACCUM) {
#pragma unroll
        for (int t = 0; t < 4; t++) o[t] = op_[px[t] * ldold + pk];
      }
      const P g = gp[op * cpk + pk];
#pragma unroll
      for (int j = 0; j < V; j++) {
        int arg = 0;
        float m = to_f(xv[0].v[j]);
#pragma unroll
        for (int t = 1; t < 4; t++) {
          const float u = to_f(xv[t].v[j]);
          if (u > m) {
            m = u;
            arg = t;
          }
        }
        const float gj = to_f(g.v[j]);
#pragma unroll
        for (int t = 0; t < 4; t++) {
          /* selects in float, one rounding; an old value round-trips exactly */
          const float old = ACCUM ? to_f(o[t].v[j]) : 0.0f;
          float v = t == arg ? (ACCUM ? old + gj : gj) : old;
          if (RELU && !(to_f(xv[t].v[j]) > 0.0f)) v = 0.0f;
          o[t].v[j] = from_f<T>(v);
          acc[j] += to_f(o[t].v[j]);
        }
      }
#pragma unroll
      for (int t = 0; t < 4; t++) dp[px[t] * lddx + pk] = o[t];
      ox += dox;
      r += dr;
      if (ox >= wo) {
        ox -= wo;
        r++;
      }
    }
  }
  if (partial == nullptr) return; /* uniform over the block: no barrier is skipped by some */
  block_partials<V>(red, acc, pk < cpk, (int64_t)blockIdx.x * cpk * V + (int64_t)pk * V, partial);
}

/* Concat moves bytes: U is an unsigned type of 2, 4, 8 or 16 bytes; ua, ub (channels) and
 * la, lb (pixel strides of a and b) in units of U. */
template <typename U>
__global__ void concat_fwd_kernel(const U *a, int ua, int64_t la, const U *b, int ub, int64_t lb,
                                  int64_t npix, U *cat) {
  const int64_t total = npix * (ua + ub);
  for (rowcol_t it(ua + ub); it.i < total; it.next())
    cat[it.i] = it.k < ua ? a[it.p * la + it.k] : b[it.p * lb + (it.k - ua)];
}

template <typename U>
__global__ void concat_bwd_kernel(const U *dcat, int ua, int ub, int64_t npix, U *da, int64_t la,
                                  U *db, int64_t lb) {
  const int64_t total = npix * (ua + ub);
  for (rowcol_t it(ua + ub); it.i < total; it.next()) {
    const U v = dcat[it.i];
    if (it.k < ua)
      da[it.p * la + it.k] = v;
    else
      db[it.p * lb + (it.k - ua)] = v;
  }
}

/* cat = [a | b] with act(x + bias) on part `part` (0: a, 1: b), in packs of V elements (ca, cb
 * multiples of V). */
template <typename T, int V, bool RELU>
__global__ void concat_fwd_bias_kernel(const T *a, int ca, const T *b, int cb, int part,
                                       const float *bias, int64_t npix, T *cat) {
  typedef pack_t<T, V> P;
  const int pa = ca / V, pb = cb / V, pw = pa + pb;
  const P *ap = reinterpret_cast<const P *>(a), *bp = reinterpret_cast<const P *>(b);
  P *cp = reinterpret_cast<P *>(cat);
  for (rowcol_t it(pw); it.i < npix * pw; it.next()) {
    const bool in_a = it.k < pa;
    const int kk = in_a ? it.k : it.k - pa; /* pack within its part */
    P v = in_a ? ap[it.p * pa + kk] : bp[it.p * pb + kk];
    if (in_a == (part == 0)) {
#pragma unroll
      for (int e = 0; e < V; e++) {
        float f = to_f(v.v[e]) + bias[kk * V + e];
        if (RELU) f = f > 0.0f ? f : 0.0f;
        v.v[e] = from_f<T>(f);
      }
    }
    cp[it.i] = v;
  }
}

template <typename T>
__global__ void cast_from_f32_kernel(const float *src, int64_t n, T *dst) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = from_f<T>(src[i]);
}

template <typename T>
__global__ void cast_to_f32_kernel(const T *src, int64_t n, float mul, float *dst) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = to_f(src[i]) * mul;
}

/* dst[p][0..cpad) = src[p][0..c) then zeros; rows are pixels (or weight rows k*rs). */
template <typename T>
__global__ void pad_from_f32_kernel(const float *src, int64_t rows, int c, int cpad, T *dst) {
  const int64_t total = rows * cpad;
  for (rowcol_t it(cpad); it.i < total; it.next())
    dst[it.i] = from_f<T>(it.k < c ? src[it.p * c + it.k] : 0.0f);
}

/* dst[p][0..c) (fp32) = src[p][0..c) of rows of cpad elements: the padding is dropped. */
template <typename T>
__global__ void unpad_to_f32_kernel(const T *src, int64_t rows, int c, int cpad, float *dst) {
  const int64_t total = rows * c;
  for (rowcol_t it(c); it.i < total; it.next()) dst[it.i] = to_f(src[it.p * cpad + it.k]);
}

/* The segment table as the kernel sees it: segment k covers units [start[k], start[k + 1]);
 * its first nvec[k] units are packs of V elements (16-byte aligned src and dst), the rest
 * single elements. Passed by value (about 1 KB, well under the 4 KB parameter limit). */
struct segs_arg_t {
  int nseg;
  int64_t start[CG_K_MAX_SEGS + 1];
  int64_t nvec[CG_K_MAX_SEGS];
  const void *src[CG_K_MAX_SEGS];
  float *dst[CG_K_MAX_SEGS];
};
static_assert(sizeof(segs_arg_t) <= 4096, "cast_segs table must fit the kernel parameters");

/* Grid-stride over all units; a thread's units only grow, so its segment index only moves
 * forward (at most nseg steps in all). __grid_constant__: the table is indexed in place in
 * the parameter space, not copied to local memory. */
template <typename T>
__global__ void cast_segs_kernel(const __grid_constant__ segs_arg_t a) {
  constexpr int V = 16 / sizeof(T);
  typedef pack_t<T, V> P;
  const int64_t total = a.start[a.nseg], stride = (int64_t)gridDim.x * blockDim.x;
  int k = 0;
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < total; u += stride) {
    while (u >= a.start[k + 1]) k++;
    const T *src = static_cast<const T *>(a.src[k]);
    float *dst = a.dst[k];
    const int64_t j = u - a.start[k], nv = a.nvec[k];
    if (j < nv) {
      const P v = reinterpret_cast<const P *>(src)[j];
      float4 *o = reinterpret_cast<float4 *>(dst) + j * (V / 4);
#pragma unroll
      for (int q = 0; q < V / 4; q++)
        o[q] = make_float4(to_f(v.v[4 * q]), to_f(v.v[4 * q + 1]), to_f(v.v[4 * q + 2]),
                           to_f(v.v[4 * q + 3]));
    } else {
      const int64_t i = nv * V + (j - nv);
      dst[i] = to_f(src[i]);
    }
  }
}

template <typename T>
__global__ void fill_uniform_kernel(T *p, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    p[i] = from_f<T>(lo + u * (hi - lo));
  }
}

/* Spins one thread until ns nanoseconds of the global timer have passed. */
__global__ void hold_kernel(unsigned long long ns) {
#ifndef CG_EMULATED_DEVICE
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
#else
  (void)ns; /* tests/emu_cuda.h has no global timer: nothing to hold for */
#endif
}

/* ---- host helpers ---------------------------------------------------------------------- */

bool aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

/* Whether the byte spans of two strided tensors of npix pixels (a: ca channels, stride la
 * elements; b: cb, lb; elements of es bytes) intersect. */
bool spans_overlap(const void *a, int64_t la, int ca, const void *b, int64_t lb, int cb,
                   int64_t npix, size_t es) {
  if (npix <= 0) return false;
  const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  const uintptr_t a1 = a0 + (uintptr_t)(((npix - 1) * la + ca) * (int64_t)es);
  const uintptr_t b1 = b0 + (uintptr_t)(((npix - 1) * lb + cb) * (int64_t)es);
  return a0 < b1 && b0 < a1;
}

/* Threads of a block along the channels: the smallest power of two >= cpk, at most 32, so
 * that small channel counts (the 1-channel head) do not leave most lanes idle. */
int tile_x(int cpk) {
  int tx = 1;
  while (tx < cpk && tx < 32) tx *= 2;
  return tx;
}

/* The bias-backward partition: a pure function of (npix, c), so that the work size and the
 * summation order are fixed by the shape. About 1024 blocks, chunks of at least 64 pixels. */
struct bias_plan_t {
  int tx, ty, ntiles, nchunks;
  int64_t chunk;
};

bias_plan_t bias_plan(int64_t npix, int c) {
  bias_plan_t q;
  q.tx = tile_x(c);
  q.ty = kBlock / q.tx;
  q.ntiles = (c + q.tx - 1) / q.tx;
  int64_t by_size = (npix + 63) / 64;
  int64_t by_grid = 1024 / q.ntiles;
  int64_t nch = by_size < by_grid ? by_size : by_grid;
  q.nchunks = (int)(nch < 1 ? 1 : nch);
  q.chunk = npix > 0 ? (npix + q.nchunks - 1) / q.nchunks : 0;
  return q;
}

template <typename T>
void bias_act_fwd_launch(void *d_y, int64_t ldy, int64_t npix, int c, const float *d_bias,
                         int relu, cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  const int64_t n = npix * c;
  if (c % V == 0 && ldy % V == 0 && aligned(d_y, 16))
    bias_act_fwd_kernel<T, V><<<cg_grid_for(n / V, kBlock), kBlock, 0, s>>>(
        static_cast<T *>(d_y), n / V, c / V, ldy / V, d_bias, relu);
  else
    bias_act_fwd_kernel<T, 1><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(static_cast<T *>(d_y), n,
                                                                        c, ldy, d_bias, relu);
}

template <typename T, int V>
void maxpool_fwd_launch(const void *d_x, int64_t ldx, int n, int h, int w, int c, void *d_y,
                        cudaStream_t s) {
  const int cpk = c / V;
  const int tx = tile_x(cpk), ty = kBlock / tx;
  const int64_t nop = (int64_t)n * (h / 2) * (w / 2);
  maxpool_fwd_kernel<T, V><<<cg_grid_for(nop, ty), dim3(tx, ty), 0, s>>>(
      static_cast<const T *>(d_x), ldx / V, nop, w / 2, w, cpk, static_cast<T *>(d_y));
}

/* The backward's windows are chunked by bias_plan(windows, c), so that the partials (when the
 * bias gradient is folded in) have the layout and size of cg_k_bias_act_bwd's. */
template <typename T, int V>
void maxpool_bwd_launch(const void *d_x, int64_t ldx, const void *d_dy, int n, int h, int w,
                        int c, void *d_dx, int64_t lddx, const void *d_old, int64_t ldold,
                        int relu, float *partial, cudaStream_t s) {
  const int cpk = c / V;
  const int tx = tile_x(cpk), ty = kBlock / tx;
  const int64_t nop = (int64_t)n * (h / 2) * (w / 2);
  const bias_plan_t q = bias_plan(nop, c);
  const int ntiles = (cpk + tx - 1) / tx;
  CG_ASSERT(ntiles <= 65535);
  const dim3 grid(q.nchunks, ntiles), block(tx, ty);
  const T *x = static_cast<const T *>(d_x), *dy = static_cast<const T *>(d_dy);
  T *dx = static_cast<T *>(d_dx);
  const T *old = static_cast<const T *>(d_old);
  const bool accum = old != nullptr;
  /* accum and relu as template flags: no per-element tests, fewer registers */
#define CG_POOL_BWD(A, R)                                                                    \
  maxpool_bwd_kernel<T, V, A, R><<<grid, block, 0, s>>>(x, ldx / V, dy, nop, w / 2, w, cpk, dx, \
                                                        lddx / V, old, ldold / V, q.chunk,    \
                                                        partial)
  if (accum && relu)
    CG_POOL_BWD(true, true);
  else if (accum)
    CG_POOL_BWD(true, false);
  else if (relu)
    CG_POOL_BWD(false, true);
  else
    CG_POOL_BWD(false, false);
#undef CG_POOL_BWD
}

/* The widest unit (16, 8, 4 or 2 bytes, never below the element size) that divides both
 * channel blocks and both part strides and aligns every pointer. */
int concat_unit(size_t es, int ca, int cb, int64_t la, int64_t lb, const void *p0,
                const void *p1, const void *p2) {
  const size_t ba = (size_t)ca * es, bb = (size_t)cb * es;
  const size_t sa = (size_t)la * es, sb = (size_t)lb * es;
  for (size_t u = 16; u > es; u /= 2)
    if (ba % u == 0 && bb % u == 0 && sa % u == 0 && sb % u == 0 && aligned(p0, u) &&
        aligned(p1, u) && aligned(p2, u))
      return (int)u;
  return (int)es;
}

template <typename U>
void concat_launch(int fwd, const void *d_a, int ca, int64_t la, const void *d_b, int cb,
                   int64_t lb, int64_t npix, void *d_cat, size_t es, cudaStream_t s) {
  /* counts in units of U (exact: concat_unit chose U to divide them) */
  const int ua = (int)((size_t)ca * es / sizeof(U)), ub = (int)((size_t)cb * es / sizeof(U));
  const int64_t va = (int64_t)((size_t)la * es / sizeof(U));
  const int64_t vb = (int64_t)((size_t)lb * es / sizeof(U));
  const unsigned grid = cg_grid_for(npix * (ua + ub), kBlock);
  if (fwd)
    concat_fwd_kernel<U><<<grid, kBlock, 0, s>>>(static_cast<const U *>(d_a), ua, va,
                                                 static_cast<const U *>(d_b), ub, vb, npix,
                                                 static_cast<U *>(d_cat));
  else /* d_a, d_b are da, db (written), d_cat is dcat (read) */
    concat_bwd_kernel<U><<<grid, kBlock, 0, s>>>(static_cast<const U *>(d_cat), ua, ub, npix,
                                                 static_cast<U *>(const_cast<void *>(d_a)), va,
                                                 static_cast<U *>(const_cast<void *>(d_b)), vb);
}

/* The parts a, b have pixel strides la >= ca, lb >= cb; the whole is dense. */
void concat_any(int fwd, cg_dtype_t dt, const void *d_a, int ca, int64_t la, const void *d_b,
                int cb, int64_t lb, int64_t npix, void *d_cat, cudaStream_t s) {
  CG_ASSERT(dt == CG_DT_F32 || dt == CG_DT_BF16 || dt == CG_DT_F16);
  CG_ASSERT(ca >= 1 && cb >= 1 && npix >= 0 && la >= ca && lb >= cb);
  CG_ASSERT((int64_t)ca + cb <= INT32_MAX / 16);
  if (npix == 0) return;
  CG_ASSERT(d_a != NULL && d_b != NULL && d_cat != NULL);
  const size_t es = cg_dtype_size(dt);
  CG_ASSERT(aligned(d_a, es) && aligned(d_b, es) && aligned(d_cat, es));
  /* a strided part (the backward may write one into another tensor's free half) shares no
   * bytes with the whole */
  CG_ASSERT((la == ca || !spans_overlap(d_a, la, ca, d_cat, ca + cb, ca + cb, npix, es)) &&
            (lb == cb || !spans_overlap(d_b, lb, cb, d_cat, ca + cb, ca + cb, npix, es)));
  switch (concat_unit(es, ca, cb, la, lb, d_a, d_b, d_cat)) {
    case 16: concat_launch<uint4>(fwd, d_a, ca, la, d_b, cb, lb, npix, d_cat, es, s); break;
    case 8: concat_launch<uint2>(fwd, d_a, ca, la, d_b, cb, lb, npix, d_cat, es, s); break;
    case 4: concat_launch<unsigned int>(fwd, d_a, ca, la, d_b, cb, lb, npix, d_cat, es, s); break;
    default:
      concat_launch<unsigned short>(fwd, d_a, ca, la, d_b, cb, lb, npix, d_cat, es, s);
      break;
  }
}

}  // namespace

/* ---- launchers ------------------------------------------------------------------------- */

void cg_k_bias_act_fwd(cg_dtype_t dt, void *d_y, int64_t npix, int c, const float *d_bias,
                       int relu, cudaStream_t s) {
  cg_k_bias_act_fwd_ld(dt, d_y, c, npix, c, d_bias, relu, s);
}

void cg_k_bias_act_fwd_ld(cg_dtype_t dt, void *d_y, int64_t ldy, int64_t npix, int c,
                          const float *d_bias, int relu, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && ldy >= c);
  if (npix == 0 || (!d_bias && !relu)) return; /* nothing to add, identity activation */
  CG_ASSERT(d_y != NULL);
  CG_DT_SWITCH(dt, T, bias_act_fwd_launch<T>(d_y, ldy, npix, c, d_bias, relu, s));
  CG_CHECK_LAUNCH("bias_act_fwd_kernel");
}

size_t cg_k_bias_act_bwd_work_bytes(int64_t npix, int c) {
  CG_ASSERT(npix >= 0 && c >= 1);
  const bias_plan_t q = bias_plan(npix, c);
  return (size_t)q.nchunks * (size_t)c * sizeof(float);
}

/* Pass 2 of every bias gradient here: one warp per channel over the nchunks partials. */
static void bias_final_launch(const float *partial, int nchunks, int c, float *d_dbias,
                              cudaStream_t s) {
  const unsigned g = cg_grid_for((int64_t)c * 32, kBlock);
  bias_bwd_final_kernel<<<g, kBlock, 0, s>>>(partial, nchunks, c, d_dbias);
  CG_CHECK_LAUNCH("bias_bwd_final_kernel");
}

void cg_k_bias_act_bwd(cg_dtype_t dt, void *d_dy, const void *d_y, int64_t npix, int c, int relu,
                       float *d_dbias, void *d_work, cudaStream_t s) {
  cg_k_bias_act_bwd_ld(dt, d_dy, c, d_y, c, npix, c, relu, d_dbias, d_work, s);
}

void cg_k_bias_act_bwd_ld(cg_dtype_t dt, void *d_dy, int64_t lddy, const void *d_y, int64_t ldy,
                          int64_t npix, int c, int relu, float *d_dbias, void *d_work,
                          cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && lddy >= c && (!relu || ldy >= c));
  if (!relu && !d_dbias) return;
  if (npix == 0) {
    /* the sum over no pixels is 0, and dbias is overwritten */
    if (d_dbias) CG_CHECK_CUDA(cudaMemsetAsync(d_dbias, 0, (size_t)c * sizeof(float), s));
    return;
  }
  CG_ASSERT(d_dy != NULL && (!relu || d_y != NULL));
  CG_ASSERT(!d_dbias || (d_work != NULL && aligned(d_work, sizeof(float))));
  const bias_plan_t q = bias_plan(npix, c);
  CG_ASSERT(q.ntiles <= 65535);
  float *partial = d_dbias ? static_cast<float *>(d_work) : nullptr;
  const int v = (int)(16 / cg_dtype_size(dt));
  if (c % v == 0 && lddy % v == 0 && aligned(d_dy, 16) &&
      (!relu || (ldy % v == 0 && aligned(d_y, 16)))) {
    /* same chunks (so the same work size), 16-byte packs across the channels */
    const int cpk = c / v, tx = tile_x(cpk), ty = kBlock / tx;
    const dim3 block(tx, ty), grid(q.nchunks, (cpk + tx - 1) / tx);
    const int64_t ldyp = relu ? ldy / v : 0; /* y unused without relu */
    CG_DT_SWITCH(dt, T,
                 bias_bwd_partial_packed_kernel<T, 16 / sizeof(T)><<<grid, block, 0, s>>>(
                     static_cast<T *>(d_dy), lddy / v, static_cast<const T *>(d_y), ldyp, npix,
                     cpk, relu, q.chunk, partial));
    CG_CHECK_LAUNCH("bias_bwd_partial_packed_kernel");
  } else {
    const dim3 block(q.tx, q.ty), grid(q.nchunks, q.ntiles);
    CG_DT_SWITCH(dt, T,
                 bias_bwd_partial_kernel<T><<<grid, block, 0, s>>>(
                     static_cast<T *>(d_dy), lddy, static_cast<const T *>(d_y), relu ? ldy : 0,
                     npix, c, relu, q.chunk, partial));
    CG_CHECK_LAUNCH("bias_bwd_partial_kernel");
  }
  if (d_dbias) bias_final_launch(partial, q.nchunks, c, d_dbias, s);
}

static void check_pool_shape(int n, int h, int w, int c) {
  CG_ASSERT(n >= 0 && h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0 && c >= 1);
}

void cg_k_maxpool_fwd(cg_dtype_t dt, const void *d_x, int n, int h, int w, int c, void *d_y,
                      cudaStream_t s) {
  cg_k_maxpool_fwd_ld(dt, d_x, c, n, h, w, c, d_y, s);
}

void cg_k_maxpool_fwd_ld(cg_dtype_t dt, const void *d_x, int64_t ldx, int n, int h, int w, int c,
                         void *d_y, cudaStream_t s) {
  check_pool_shape(n, h, w, c);
  CG_ASSERT(ldx >= c);
  if (n == 0) return;
  CG_ASSERT(d_x != NULL && d_y != NULL);
  const int v = (int)(16 / cg_dtype_size(dt));
  const bool vec = c % v == 0 && ldx % v == 0 && aligned(d_x, 16) && aligned(d_y, 16);
  CG_DT_SWITCH(dt, T,
               if (vec) maxpool_fwd_launch<T, 16 / sizeof(T)>(d_x, ldx, n, h, w, c, d_y, s);
               else maxpool_fwd_launch<T, 1>(d_x, ldx, n, h, w, c, d_y, s));
  CG_CHECK_LAUNCH("maxpool_fwd_kernel");
}

void cg_k_maxpool_bwd(cg_dtype_t dt, const void *d_x, const void *d_y, const void *d_dy, int n,
                      int h, int w, int c, void *d_dx, int accum, cudaStream_t s) {
  (void)d_y; /* the argmax is recomputed from x (see maxpool_bwd_kernel) */
  cg_k_maxpool_bwd_ld(dt, d_x, c, d_dy, n, h, w, c, d_dx, c, accum ? d_dx : NULL, c, 0, NULL,
                      NULL, s);
}

size_t cg_k_maxpool_bwd_work_bytes(int n, int h, int w, int c) {
  check_pool_shape(n, h, w, c);
  return cg_k_bias_act_bwd_work_bytes((int64_t)n * (h / 2) * (w / 2), c);
}

void cg_k_maxpool_bwd_ld(cg_dtype_t dt, const void *d_x, int64_t ldx, const void *d_dy, int n,
                         int h, int w, int c, void *d_dx, int64_t lddx, const void *d_old,
                         int64_t ldold, int relu, float *d_dbias, void *d_work, cudaStream_t s) {
  check_pool_shape(n, h, w, c);
  CG_ASSERT(ldx >= c && lddx >= c && (!d_old || ldold >= c));
  /* old in place (dx itself, the same stride) or apart from dx: never a partial overlap */
  const int64_t npix = (int64_t)n * h * w;
  if (d_old && d_old == d_dx) CG_ASSERT(ldold == lddx);
  else if (d_old)
    CG_ASSERT(!spans_overlap(d_old, ldold, c, d_dx, lddx, c, npix, cg_dtype_size(dt)));
  if (n == 0) {
    if (d_dbias) CG_CHECK_CUDA(cudaMemsetAsync(d_dbias, 0, (size_t)c * sizeof(float), s));
    return;
  }
  CG_ASSERT(d_x != NULL && d_dy != NULL && d_dx != NULL);
  CG_ASSERT(!d_dbias || (d_work != NULL && aligned(d_work, sizeof(float))));
  float *partial = d_dbias ? static_cast<float *>(d_work) : nullptr;
  const int v = (int)(16 / cg_dtype_size(dt));
  const bool vec = c % v == 0 && ldx % v == 0 && lddx % v == 0 && aligned(d_x, 16) &&
                   aligned(d_dy, 16) && aligned(d_dx, 16) &&
                   (!d_old || (ldold % v == 0 && aligned(d_old, 16)));
  CG_DT_SWITCH(dt, T,
               if (vec) maxpool_bwd_launch<T, 16 / sizeof(T)>(d_x, ldx, d_dy, n, h, w, c, d_dx,
                                                              lddx, d_old, ldold, relu, partial,
                                                              s);
               else maxpool_bwd_launch<T, 1>(d_x, ldx, d_dy, n, h, w, c, d_dx, lddx, d_old,
                                             ldold, relu, partial, s));
  CG_CHECK_LAUNCH("maxpool_bwd_kernel");
  if (d_dbias) {
    const bias_plan_t q = bias_plan((int64_t)n * (h / 2) * (w / 2), c);
    bias_final_launch(partial, q.nchunks, c, d_dbias, s);
  }
}

void cg_k_concat_fwd(cg_dtype_t dt, const void *d_a, int ca, const void *d_b, int cb,
                     int64_t npix, void *d_cat, cudaStream_t s) {
  concat_any(1, dt, d_a, ca, ca, d_b, cb, cb, npix, d_cat, s);
  CG_CHECK_LAUNCH("concat_fwd_kernel");
}

void cg_k_concat_fwd_bias(cg_dtype_t dt, const void *d_a, int ca, const void *d_b, int cb,
                          int part, const float *d_bias, int relu, int64_t npix, void *d_cat,
                          cudaStream_t s) {
  CG_ASSERT(dt == CG_DT_F32 || dt == CG_DT_BF16 || dt == CG_DT_F16);
  CG_ASSERT(ca >= 1 && cb >= 1 && npix >= 0 && d_bias != NULL && (part == 0 || part == 1));
  CG_ASSERT((int64_t)ca + cb <= INT32_MAX / 16);
  if (npix == 0) return;
  CG_ASSERT(d_a != NULL && d_b != NULL && d_cat != NULL);
  const size_t es = cg_dtype_size(dt);
  CG_ASSERT(aligned(d_a, es) && aligned(d_b, es) && aligned(d_cat, es) &&
            aligned(d_bias, sizeof(float)));
  const int v = (int)(16 / cg_dtype_size(dt));
  const bool vec = ca % v == 0 && cb % v == 0 && aligned(d_a, 16) && aligned(d_b, 16) &&
                   aligned(d_cat, 16);
  const int64_t units = npix * (vec ? (ca + cb) / v : ca + cb);
  const unsigned grid = cg_grid_for(units, kBlock);
#define CG_CAT_BIAS(V)                                                                          \
  if (relu)                                                                                     \
    concat_fwd_bias_kernel<T, V, true><<<grid, kBlock, 0, s>>>(                                 \
        static_cast<const T *>(d_a), ca, static_cast<const T *>(d_b), cb, part, d_bias, npix,   \
        static_cast<T *>(d_cat));                                                               \
  else                                                                                          \
    concat_fwd_bias_kernel<T, V, false><<<grid, kBlock, 0, s>>>(                                \
        static_cast<const T *>(d_a), ca, static_cast<const T *>(d_b), cb, part, d_bias, npix,   \
        static_cast<T *>(d_cat))
  CG_DT_SWITCH(dt, T, if (vec) { CG_CAT_BIAS(16 / sizeof(T)); } else { CG_CAT_BIAS(1); });
#undef CG_CAT_BIAS
  CG_CHECK_LAUNCH("concat_fwd_bias_kernel");
}

void cg_k_concat_bwd(cg_dtype_t dt, const void *d_dcat, int ca, int cb, int64_t npix, void *d_da,
                     void *d_db, cudaStream_t s) {
  cg_k_concat_bwd_ld(dt, d_dcat, ca, cb, npix, d_da, ca, d_db, cb, s);
}

void cg_k_concat_bwd_ld(cg_dtype_t dt, const void *d_dcat, int ca, int cb, int64_t npix,
                        void *d_da, int64_t lda, void *d_db, int64_t ldb, cudaStream_t s) {
  concat_any(0, dt, d_da, ca, lda, d_db, cb, ldb, npix, const_cast<void *>(d_dcat), s);
  CG_CHECK_LAUNCH("concat_bwd_kernel");
}

void cg_k_cast_from_f32(cg_dtype_t dt, const float *d_src, int64_t n, void *d_dst,
                        cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_src != NULL && d_dst != NULL);
  CG_DT_SWITCH(dt, T,
               cast_from_f32_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(
                   d_src, n, static_cast<T *>(d_dst)));
  CG_CHECK_LAUNCH("cast_from_f32_kernel");
}

void cg_k_cast_to_f32(cg_dtype_t dt, const void *d_src, int64_t n, float mul, float *d_dst,
                      cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_src != NULL && d_dst != NULL);
  CG_DT_SWITCH(dt, T,
               cast_to_f32_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(
                   static_cast<const T *>(d_src), n, mul, d_dst));
  CG_CHECK_LAUNCH("cast_to_f32_kernel");
}

void cg_k_cast_segs_to_f32(cg_dtype_t dt, const cg_k_segs_t *segs, cudaStream_t s) {
  CG_ASSERT(segs != NULL && segs->nseg >= 0 && segs->nseg <= CG_K_MAX_SEGS);
  const size_t es = cg_dtype_size(dt);
  const int v = (int)(16 / es);
  segs_arg_t a;
  memset(&a, 0, sizeof a);
  a.nseg = segs->nseg;
  int64_t u = 0;
  for (int k = 0; k < segs->nseg; k++) {
    const int64_t n = segs->n[k];
    CG_ASSERT(n >= 0);
    a.start[k] = u;
    a.src[k] = segs->src[k];
    a.dst[k] = segs->dst[k];
    if (n == 0) continue;
    CG_ASSERT(segs->src[k] != NULL && segs->dst[k] != NULL);
    CG_ASSERT(aligned(segs->src[k], es) && aligned(segs->dst[k], sizeof(float)));
    /* no two destinations may overlap (the threads of one launch would race) */
    const uintptr_t d0 = (uintptr_t)segs->dst[k], d1 = d0 + (uintptr_t)n * sizeof(float);
    for (int j = 0; j < k; j++) {
      const uintptr_t e0 = (uintptr_t)segs->dst[j], e1 = e0 + (uintptr_t)segs->n[j] * sizeof(float);
      CG_ASSERT(segs->n[j] == 0 || d1 <= e0 || e1 <= d0);
    }
    a.nvec[k] = aligned(segs->src[k], 16) && aligned(segs->dst[k], 16) ? n / v : 0;
    u += a.nvec[k] + (n - a.nvec[k] * v);
  }
  a.start[a.nseg] = u;
  if (u == 0) return;
  CG_DT_SWITCH(dt, T, cast_segs_kernel<T><<<cg_grid_for(u, kBlock), kBlock, 0, s>>>(a));
  CG_CHECK_LAUNCH("cast_segs_kernel");
}

void cg_k_pad_channels_from_f32(cg_dtype_t dt, const float *d_src, int64_t npix, int c, int cpad,
                                void *d_dst, cudaStream_t s) {
  CG_ASSERT(npix >= 0 && c >= 1 && cpad >= c);
  if (npix == 0) return;
  CG_ASSERT(d_src != NULL && d_dst != NULL);
  CG_DT_SWITCH(dt, T,
               pad_from_f32_kernel<T><<<cg_grid_for(npix * cpad, kBlock), kBlock, 0, s>>>(
                   d_src, npix, c, cpad, static_cast<T *>(d_dst)));
  CG_CHECK_LAUNCH("pad_from_f32_kernel");
}

void cg_k_pack_weight_cpad(cg_dtype_t dt, const float *d_w, int k, int rs, int c, int cpad,
                           void *d_dst, cudaStream_t s) {
  CG_ASSERT(k >= 0 && rs >= 1 && c >= 1 && cpad >= c);
  const int64_t rows = (int64_t)k * rs;
  if (rows == 0) return;
  CG_ASSERT(d_w != NULL && d_dst != NULL);
  CG_DT_SWITCH(dt, T,
               pad_from_f32_kernel<T><<<cg_grid_for(rows * cpad, kBlock), kBlock, 0, s>>>(
                   d_w, rows, c, cpad, static_cast<T *>(d_dst)));
  CG_CHECK_LAUNCH("pad_from_f32_kernel (weight)");
}

void cg_k_unpack_grad_cpad(cg_dtype_t dt, const void *d_g, int k, int rs, int c, int cpad,
                           float *d_dst, cudaStream_t s) {
  CG_ASSERT(k >= 0 && rs >= 1 && c >= 1 && cpad >= c);
  const int64_t rows = (int64_t)k * rs;
  if (rows == 0) return;
  CG_ASSERT(d_g != NULL && d_dst != NULL);
  CG_DT_SWITCH(dt, T,
               unpad_to_f32_kernel<T><<<cg_grid_for(rows * c, kBlock), kBlock, 0, s>>>(
                   static_cast<const T *>(d_g), rows, c, cpad, d_dst));
  CG_CHECK_LAUNCH("unpad_to_f32_kernel");
}

void cg_k_fill_uniform(cg_dtype_t dt, void *d, int64_t n, uint64_t seed, float lo, float hi,
                       cudaStream_t s) {
  CG_ASSERT(n >= 0 && hi >= lo);
  if (n == 0) return;
  CG_ASSERT(d != NULL);
  CG_DT_SWITCH(dt, T,
               fill_uniform_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(static_cast<T *>(d),
                                                                                n, seed, lo, hi));
  CG_CHECK_LAUNCH("fill_uniform_kernel");
}

void cg_k_hold(unsigned long long ns, cudaStream_t s) {
  hold_kernel<<<1, 1, 0, s>>>(ns);
  CG_CHECK_LAUNCH("hold_kernel");
}
