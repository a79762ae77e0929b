/* cpu_layers.c: the CPU reference kernels of cpu_layers.h (fp32, NHWC, OpenMP).
 *
 * Convolutions are im2col + GEMM over "row chunks": a chunk is a run of consecutive image rows,
 * flat over n*h so it may span images, small enough that its im2col buffer stays in L2 and big
 * enough that its GEMM is efficient. Each chunk is done by one thread with a single-threaded
 * GEMM; a layer of one chunk (the deepest levels of a small image) is shared by the team, its
 * GEMMs cut into blocks of columns that depend on the shape alone. The chunking depends only
 * on the shapes, never on the thread count, and every reduction over pixels (dW, db) goes
 * through per-group partials added in a fixed order, so results are bitwise the same for any
 * number of threads.
 *
 * The input gradient of a 3x3 convolution is computed as a gather: the convolution of dY with
 * the flipped, transposed kernel. That is the same arithmetic as dcol = dY*W + col2im, but
 * every dx row belongs to exactly one chunk, so chunks need no scatter-add across their
 * borders (no races, no second pass), and the GEMM's inner dimension is 9*cout instead of
 * cout, which keeps it efficient for the narrow layers.
 *
 * cg_cpu_gemm wraps OpenBLAS when it is there; otherwise a packed, cache-blocked GEMM with a
 * vector-extension micro-kernel, threaded over tiles of C (never over k) when called outside a
 * parallel region. The kernels here call it from inside their chunk loops, where both run
 * single-threaded. */
#include "cpu_layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#ifdef COGPU_HAVE_OPENBLAS
#include <cblas.h>
#elif defined(__x86_64__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* Chunking targets (floats / rows). */
enum {
  CG_COL_TARGET = 64 * 1024, /* im2col floats per chunk: 256 KB, stays in L2 */
  CG_MIN_M = 128,            /* GEMM rows per chunk, at least (when the tensor has them) */
  CG_MIN_CHUNKS = 8,         /* chunks per layer, when that keeps CG_MIN_M: load balance */
  CG_MAX_GROUPS = 16,        /* dW partial sums per layer, at most */
  CG_PART_BUDGET = 8 << 20,  /* floats of dW partials per layer, at most (32 MB) */
  CG_ONE_COLS = 128          /* a layer of one chunk: columns of C per GEMM, at least */
};

/* ---- workspace -------------------------------------------------------------------------- */

float *cg_cpu_ws_get(cg_cpu_ws_t *ws, size_t n) {
  CG_ASSERT(ws != NULL);
  if (n > ws->cap) {
    free(ws->buf);
    ws->buf = NULL;
    ws->cap = 0;
    /* Grow with headroom so alternating layer sizes do not reallocate every call. */
    size_t cap = n + n / 8 + 1024;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap * sizeof(float)) != 0)
      CG_FATAL("out of memory: %zu bytes of CPU workspace", cap * sizeof(float));
    ws->buf = p;
    ws->cap = cap;
  }
  return ws->buf;
}

void cg_cpu_ws_free(cg_cpu_ws_t *ws) {
  if (!ws) return;
  free(ws->buf);
  ws->buf = NULL;
  ws->cap = 0;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- GEMM ------------------------------------------------------------------------------- */

#ifndef COGPU_HAVE_OPENBLAS
/* Built-in GEMM: C tiles of GM_MC x GM_NC are independent tasks; each walks k in GM_KC blocks
 * in order, packing op(A) into GM_MR-row panels and op(B) into GM_NR-column panels (zero
 * padded, so the micro-kernel has no edge cases). Repacking B per tile costs 1/GM_MC of the
 * arithmetic, and buys tasks with no shared state. The micro-kernel uses GCC vector
 * extensions (any target; AVX2+FMA where compiled for it): GCC's loop vectoriser kept the
 * accumulators in memory, at a tenth of the speed. */
enum { GM_MR = 6, GM_NR = 16, GM_MC = 96, GM_NC = 256, GM_KC = 256 };

typedef float gm_v8 __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__FMA__)
#define GM_FMA(a, b, c) ((gm_v8)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#else
#define GM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* acc (GM_MR x GM_NR) = A panel (kc x GM_MR) ^T * B panel (kc x GM_NR). */
static void gm_micro(int kc, const float *restrict a, const float *restrict b,
                     float acc[GM_MR][GM_NR]) {
  gm_v8 c[GM_MR][2];
  for (int i = 0; i < GM_MR; i++) c[i][0] = c[i][1] = (gm_v8){0};
  for (int p = 0; p < kc; p++) {
    gm_v8 b0, b1; /* memcpy: no alignment or aliasing assumptions; compiles to one load */
    memcpy(&b0, b + (size_t)p * GM_NR, sizeof b0);
    memcpy(&b1, b + (size_t)p * GM_NR + 8, sizeof b1);
    const float *ap = a + (size_t)p * GM_MR;
#define GM_ROW(i)                                                         \
  do {                                                                    \
    const float s = ap[i];                                                \
    const gm_v8 ai = {s, s, s, s, s, s, s, s};                            \
    c[i][0] = GM_FMA(ai, b0, c[i][0]);                                    \
    c[i][1] = GM_FMA(ai, b1, c[i][1]);                                    \
  } while (0)
    GM_ROW(0);
    GM_ROW(1);
    GM_ROW(2);
    GM_ROW(3);
    GM_ROW(4);
    GM_ROW(5);
#undef GM_ROW
  }
  for (int i = 0; i < GM_MR; i++) {
    memcpy(&acc[i][0], &c[i][0], sizeof(gm_v8));
    memcpy(&acc[i][8], &c[i][1], sizeof(gm_v8));
  }
}

/* op(A) rows [i0, i0+mc), cols [p0, p0+kc) -> panels of GM_MR rows, p-major inside a panel. */
static void gm_pack_a(int ta, const float *a, int lda, int i0, int mc, int p0, int kc,
                      float *restrict dst) {
  for (int ir = 0; ir < mc; ir += GM_MR) {
    int mr = mc - ir < GM_MR ? mc - ir : GM_MR;
    float *d = dst + (size_t)ir * kc;
    for (int p = 0; p < kc; p++) {
      for (int ii = 0; ii < mr; ii++) {
        size_t i = (size_t)(i0 + ir + ii), q = (size_t)(p0 + p);
        d[p * GM_MR + ii] = ta ? a[q * lda + i] : a[i * lda + q];
      }
      for (int ii = mr; ii < GM_MR; ii++) d[p * GM_MR + ii] = 0.0f;
    }
  }
}

/* op(B) rows [p0, p0+kc), cols [j0, j0+nc) -> panels of GM_NR columns. */
static void gm_pack_b(int tb, const float *b, int ldb, int p0, int kc, int j0, int nc,
                      float *restrict dst) {
  for (int jr = 0; jr < nc; jr += GM_NR) {
    int nr = nc - jr < GM_NR ? nc - jr : GM_NR;
    float *d = dst + (size_t)jr * kc;
    for (int p = 0; p < kc; p++) {
      size_t q = (size_t)(p0 + p);
      if (!tb) {
        const float *s = b + q * ldb + j0 + jr;
        for (int jj = 0; jj < nr; jj++) d[p * GM_NR + jj] = s[jj];
      } else {
        for (int jj = 0; jj < nr; jj++) d[p * GM_NR + jj] = b[(size_t)(j0 + jr + jj) * ldb + q];
      }
      for (int jj = nr; jj < GM_NR; jj++) d[p * GM_NR + jj] = 0.0f;
    }
  }
}

static void gm_tile(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc, int i0, int j0,
                    float *apack, float *bpack) {
  int mc = m - i0 < GM_MC ? m - i0 : GM_MC;
  int nc = n - j0 < GM_NC ? n - j0 : GM_NC;
  for (int i = 0; i < mc; i++) {
    float *ci = c + (size_t)(i0 + i) * ldc + j0;
    if (beta == 0.0f)
      for (int j = 0; j < nc; j++) ci[j] = 0.0f; /* never read C: it may hold NaN garbage */
    else if (beta != 1.0f)
      for (int j = 0; j < nc; j++) ci[j] *= beta;
  }
  if (alpha == 0.0f) return;
  for (int p0 = 0; p0 < k; p0 += GM_KC) {
    int kc = k - p0 < GM_KC ? k - p0 : GM_KC;
    gm_pack_a(ta, a, lda, i0, mc, p0, kc, apack);
    gm_pack_b(tb, b, ldb, p0, kc, j0, nc, bpack);
    for (int jr = 0; jr < nc; jr += GM_NR) {
      int nr = nc - jr < GM_NR ? nc - jr : GM_NR;
      for (int ir = 0; ir < mc; ir += GM_MR) {
        int mr = mc - ir < GM_MR ? mc - ir : GM_MR;
        float acc[GM_MR][GM_NR];
        gm_micro(kc, apack + (size_t)ir * kc, bpack + (size_t)jr * kc, acc);
        for (int ii = 0; ii < mr; ii++) {
          float *ci = c + (size_t)(i0 + ir + ii) * ldc + j0 + jr;
          for (int jj = 0; jj < nr; jj++) ci[jj] += alpha * acc[ii][jj];
        }
      }
    }
  }
}

static void gemm_builtin(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  int tm = (m + GM_MC - 1) / GM_MC, tn = (n + GM_NC - 1) / GM_NC;
  int ntiles = tm * tn;
  /* Threads only for a top-level call with real work; the kernels below call from inside
   * their own parallel loops. */
  int par = ntiles > 1 && !omp_in_parallel() && (double)m * n * k > 1e6;
  /* packing buffers sized to this call (panels rounded up to whole GM_MR / GM_NR) */
  size_t kc = (size_t)(k < GM_KC ? (k > 0 ? k : 1) : GM_KC);
  size_t mc = (size_t)(m < GM_MC ? m : GM_MC), nc = (size_t)(n < GM_NC ? n : GM_NC);
  size_t asz = round16(kc * ((mc + GM_MR - 1) / GM_MR * GM_MR));
  size_t bsz = round16(kc * ((nc + GM_NR - 1) / GM_NR * GM_NR));
#pragma omp parallel if (par)
  {
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (asz + bsz) * sizeof(float)) != 0)
      CG_FATAL("out of memory: %zu bytes of GEMM packing", (asz + bsz) * sizeof(float));
    float *bpack = mem, *apack = bpack + bsz;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < ntiles; t++)
      gm_tile(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, (t / tn) * GM_MC,
              (t % tn) * GM_NC, apack, bpack);
    free(mem);
  }
}
#endif

void cg_cpu_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc) {
  CG_ASSERT(m >= 0 && n >= 0 && k >= 0);
  CG_ASSERT(ldc >= (n > 1 ? n : 1));
  CG_ASSERT(lda >= ((trans_a ? m : k) > 1 ? (trans_a ? m : k) : 1));
  CG_ASSERT(ldb >= ((trans_b ? k : n) > 1 ? (trans_b ? k : n) : 1));
  if (m == 0 || n == 0) return;
#ifdef COGPU_HAVE_OPENBLAS
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  gemm_builtin(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

/* ---- chunk plans ------------------------------------------------------------------------ */

typedef struct {
  int rows;    /* image rows per chunk (flat over n*h) */
  int nchunks;
  int ngroups; /* dW partial sums; group g does chunks [g*nchunks/ngroups, (g+1)*...) */
} plan_t;

/* total_rows rows of w pixels, row_floats floats of scratch per row, part floats per dW
 * partial. Depends on shapes only. */
static plan_t plan_rows(int total_rows, int w, size_t row_floats, size_t part) {
  plan_t p;
  int r = (int)(CG_COL_TARGET / (row_floats ? row_floats : 1));
  int rmin = (CG_MIN_M + w - 1) / w;
  int rbal = (total_rows + CG_MIN_CHUNKS - 1) / CG_MIN_CHUNKS;
  if (r > rbal) r = rbal;
  if (r < rmin) r = rmin;
  if (r < 1) r = 1;
  if (r > total_rows) r = total_rows;
  p.rows = r;
  p.nchunks = (total_rows + r - 1) / r;
  int g = p.nchunks < CG_MAX_GROUPS ? p.nchunks : CG_MAX_GROUPS;
  while (g > 1 && (size_t)g * part > CG_PART_BUDGET) g--;
  p.ngroups = g;
  return p;
}

static void chunk_range(const plan_t *p, int total_rows, int c, int *r0, int *r1) {
  *r0 = c * p->rows;
  *r1 = *r0 + p->rows < total_rows ? *r0 + p->rows : total_rows;
}

static void check_view(const cg_view_t *v) {
  CG_ASSERT(v->p != NULL);
  CG_ASSERT(v->n >= 1 && v->h >= 1 && v->w >= 1 && v->c >= 1 && v->ld >= v->c);
}

/* ---- im2col (3x3, pad 1), rows [r0, r1) of the flat n*h row space ------------------------- */

static void im2col3(const cg_view_t *x, int r0, int r1, float *restrict col) {
  const int h = x->h, w = x->w, c = x->c;
  const size_t ld = (size_t)x->ld, K = 9 * (size_t)c;
  for (int r = r0; r < r1; r++) {
    const int i = r / h, yy = r % h;
    const float *img = x->p + (size_t)i * h * w * ld;
    float *drow = col + (size_t)(r - r0) * w * K;
    for (int ky = 0; ky < 3; ky++) {
      const int sy = yy + ky - 1;
      if (sy < 0 || sy >= h) {
        for (int xx = 0; xx < w; xx++) memset(drow + xx * K + ky * 3 * c, 0, 3 * c * sizeof(float));
        continue;
      }
      const float *src = img + (size_t)sy * w * ld;
      for (int xx = 0; xx < w; xx++) {
        float *d = drow + xx * K + ky * 3 * c;
        if (xx > 0 && xx < w - 1 && ld == (size_t)c) {
          memcpy(d, src + (size_t)(xx - 1) * c, 3 * c * sizeof(float));
          continue;
        }
        for (int kx = 0; kx < 3; kx++) {
          const int sx = xx + kx - 1;
          if (sx < 0 || sx >= w)
            memset(d + kx * c, 0, c * sizeof(float));
          else
            memcpy(d + kx * c, src + sx * ld, c * sizeof(float));
        }
      }
    }
  }
}

/* y[p][0..c) = relu?(y + bias) over np pixels at stride ld. */
static void bias_act(float *restrict y, size_t np, int c, size_t ld, const float *restrict bias,
                     int relu) {
  for (size_t p = 0; p < np; p++) {
    float *yp = y + p * ld;
    if (relu)
      for (int k = 0; k < c; k++) {
        float v = yp[k] + bias[k];
        yp[k] = v > 0.0f ? v : 0.0f;
      }
    else
      for (int k = 0; k < c; k++) yp[k] += bias[k];
  }
}

/* ---- a layer of one chunk -------------------------------------------------------------- */

/* The deepest levels of a small image are one chunk (no more rows than CG_MIN_M pixels need):
 * there the team shares the chunk instead of leaving all but one thread idle. Worksharing
 * loops: call them from inside a parallel region. */

/* im2col3 of rows [0, rows), a row per iteration. */
static void im2col3_rows(const cg_view_t *x, int rows, float *col) {
  const size_t row = (size_t)x->w * 9 * x->c;
#pragma omp for schedule(static)
  for (int r = 0; r < rows; r++) im2col3(x, r, r + 1, col + (size_t)r * row);
}

/* cg_cpu_gemm as n / CG_ONE_COLS blocks of C's columns (at least one), each a single-threaded
 * GEMM. The blocks depend on n alone, so results do not depend on the number of threads. */
static void gemm_cols(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc) {
  const int nb = n / CG_ONE_COLS > 1 ? n / CG_ONE_COLS : 1;
#pragma omp for schedule(dynamic, 1)
  for (int j = 0; j < nb; j++) {
    const int j0 = (int)((long long)j * n / nb), j1 = (int)((long long)(j + 1) * n / nb);
    cg_cpu_gemm(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (size_t)j0 * ldb : b + j0, ldb,
                beta, c + j0, ldc);
  }
}

/* ---- convolution ------------------------------------------------------------------------ */

static void check_conv(const cg_view_t *x, const cg_view_t *y, int k) {
  check_view(x);
  check_view(y);
  CG_ASSERT(k == 1 || k == 3);
  CG_ASSERT(x->n == y->n && x->h == y->h && x->w == y->w);
}

void cg_cpu_conv_fwd(const cg_view_t *x, const float *wt, const float *bias, int k, int relu,
                     const cg_view_t *y, cg_cpu_ws_t *ws) {
  check_conv(x, y, k);
  CG_ASSERT(wt != NULL && bias != NULL);
  const int rows = x->n * x->h, w = x->w, cin = x->c, cout = y->c;
  const int K = k * k * cin;
  const size_t ldy = (size_t)y->ld;
  plan_t pl = plan_rows(rows, w, k == 3 ? (size_t)w * K : 0, 0);
  float *col = NULL;
  const size_t stride = k == 3 ? round16((size_t)pl.rows * w * K) : 0;
  if (k == 3) col = cg_cpu_ws_get(ws, stride * omp_get_max_threads());
  if (pl.nchunks == 1) {
    const int m = rows * w;
#pragma omp parallel
    {
      if (k == 3) im2col3_rows(x, rows, col);
      gemm_cols(0, 1, m, cout, K, 1.0f, k == 3 ? col : x->p, k == 3 ? K : x->ld, wt, K, 0.0f,
                y->p, (int)ldy);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; r++)
        bias_act(y->p + (size_t)r * w * ldy, (size_t)w, cout, ldy, bias, relu);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < pl.nchunks; c++) {
    int r0, r1;
    chunk_range(&pl, rows, c, &r0, &r1);
    const int m = (r1 - r0) * w;
    float *yc = y->p + (size_t)r0 * w * ldy;
    if (k == 3) {
      float *cb = col + stride * omp_get_thread_num();
      im2col3(x, r0, r1, cb);
      cg_cpu_gemm(0, 1, m, cout, K, 1.0f, cb, K, wt, K, 0.0f, yc, (int)ldy);
    } else {
      cg_cpu_gemm(0, 1, m, cout, K, 1.0f, x->p + (size_t)r0 * w * x->ld, x->ld, wt, K, 0.0f, yc,
                  (int)ldy);
    }
    bias_act(yc, (size_t)m, cout, ldy, bias, relu);
  }
}

/* In place dy *= (y > 0) when relu, and the column sums of each chunk of pl into part
 * (nchunks x c). A worksharing loop: call it from inside a parallel region. */
static void mask_and_bias_part(const cg_view_t *y, const cg_view_t *dy, int relu,
                               const plan_t *pl, int w, float *part) {
  const int rows = dy->n * dy->h, c = dy->c;
  const size_t ldy = (size_t)(y ? y->ld : 0), ldd = (size_t)dy->ld;
#pragma omp for schedule(dynamic, 1)
  for (int ch = 0; ch < pl->nchunks; ch++) {
    int r0, r1;
    chunk_range(pl, rows, ch, &r0, &r1);
    float *s = part + (size_t)ch * c;
    for (int k = 0; k < c; k++) s[k] = 0.0f;
    for (size_t p = (size_t)r0 * w; p < (size_t)r1 * w; p++) {
      float *g = dy->p + p * ldd;
      if (relu) {
        const float *yp = y->p + p * ldy;
        for (int k = 0; k < c; k++) {
          float v = yp[k] > 0.0f ? g[k] : 0.0f;
          g[k] = v;
          s[k] += v;
        }
      } else {
        for (int k = 0; k < c; k++) s[k] += g[k];
      }
    }
  }
}

/* db = the chunk partials summed in chunk order (deterministic). */
static void sum_parts(float *db, const float *part, int nparts, int c) {
  for (int k = 0; k < c; k++) db[k] = 0.0f;
  for (int ch = 0; ch < nparts; ch++)
    for (int k = 0; k < c; k++) db[k] += part[(size_t)ch * c + k];
}

/* dw += partials 1..g-1 in that order (partial 0 is dw itself). Worksharing loop. */
static void reduce_parts(float *dw, const float *parts, int ngroups, size_t len) {
#pragma omp for schedule(static)
  for (size_t e = 0; e < len; e++) {
    float s = dw[e];
    for (int g = 1; g < ngroups; g++) s += parts[(size_t)(g - 1) * len + e];
    dw[e] = s;
  }
}

void cg_cpu_conv_bwd(const cg_view_t *x, const float *wt, const cg_view_t *y, const cg_view_t *dy,
                     int k, int relu, const cg_view_t *dx, int accum_dx, float *dw, float *db,
                     cg_cpu_ws_t *ws) {
  check_conv(x, dy, k);
  if (relu) { /* y only matters for the mask: linear layers may pass NULL */
    CG_ASSERT(y != NULL);
    check_view(y);
    CG_ASSERT(dy->n == y->n && dy->h == y->h && dy->w == y->w && dy->c == y->c);
  }
  CG_ASSERT(wt != NULL && dw != NULL && db != NULL);
  if (dx) {
    check_view(dx);
    CG_ASSERT(dx->n == x->n && dx->h == x->h && dx->w == x->w && dx->c == x->c);
  }
  const int rows = x->n * x->h, w = x->w, cin = x->c, cout = dy->c;
  const int K = k * k * cin, KT = k * k * cout; /* dW row length; dx gather length */
  const size_t wlen = (size_t)cout * K;
  const size_t row_floats = k == 3 ? (size_t)w * (K > KT ? K : KT) : 0;
  plan_t pl = plan_rows(rows, w, row_floats, wlen);
  const int nt = omp_get_max_threads();
  const size_t stride = k == 3 ? round16((size_t)pl.rows * w * (K > KT ? K : KT)) : 0;
  /* workspace: [db partials][dW partials 1..g-1][flipped kernel][per-thread col] */
  const size_t n_db = round16((size_t)pl.nchunks * cout);
  const size_t n_dw = round16(wlen * (pl.ngroups - 1));
  const size_t n_wt = (k == 3 && dx) ? round16(wlen) : 0;
  const size_t n_col = k == 3 ? stride * nt : 0;
  float *base = cg_cpu_ws_get(ws, n_db + n_dw + n_wt + n_col);
  float *dbpart = base, *dwpart = base + n_db, *wflip = dwpart + n_dw, *col = wflip + n_wt;
  const size_t ldd = (size_t)dy->ld, ldx = (size_t)x->ld;
  /* One parallel region, phases separated by the worksharing barriers: every fork and
   * barrier costs a wake-up when threads sleep (passive waiting, shared cores). */
#pragma omp parallel
  {
    if (n_wt) {
      /* wflip[ci][ky][kx][co] = wt[co][2-ky][2-kx][ci]: dx = conv(dy, wflip). */
#pragma omp for schedule(static) nowait
      for (int ci = 0; ci < cin; ci++)
        for (int t = 0; t < 9; t++)
          for (int co = 0; co < cout; co++)
            wflip[((size_t)ci * 9 + t) * cout + co] = wt[((size_t)co * 9 + (8 - t)) * cin + ci];
    }
    /* the dx gather reads neighbouring chunks' rows of dy: all masked before it starts */
    mask_and_bias_part(y, dy, relu, &pl, w, dbpart);
#pragma omp single nowait
    sum_parts(db, dbpart, pl.nchunks, cout);
    if (pl.nchunks == 1) { /* the team shares the chunk: dW, then dx (the col buffer again) */
      const int m = rows * w;
      if (k == 3) im2col3_rows(x, rows, col);
      gemm_cols(1, 0, cout, K, m, 1.0f, dy->p, (int)ldd, k == 3 ? col : x->p,
                k == 3 ? K : (int)ldx, 0.0f, dw, K);
      if (dx && k == 3) {
        im2col3_rows(dy, rows, col);
        gemm_cols(0, 1, m, cin, KT, 1.0f, col, KT, wflip, KT, accum_dx ? 1.0f : 0.0f, dx->p,
                  dx->ld);
      } else if (dx) {
        gemm_cols(0, 0, m, cin, cout, 1.0f, dy->p, (int)ldd, wt, cin, accum_dx ? 1.0f : 0.0f,
                  dx->p, dx->ld);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int g = 0; g < pl.ngroups * (pl.nchunks > 1); g++) {
      float *cb = col + stride * omp_get_thread_num();
      float *dwg = g == 0 ? dw : dwpart + (size_t)(g - 1) * wlen;
      int c0 = (int)((long long)g * pl.nchunks / pl.ngroups);
      int c1 = (int)((long long)(g + 1) * pl.nchunks / pl.ngroups);
      for (int c = c0; c < c1; c++) {
        int r0, r1;
        chunk_range(&pl, rows, c, &r0, &r1);
        const int m = (r1 - r0) * w;
        const float *dyc = dy->p + (size_t)r0 * w * ldd;
        /* dW (cout x K) += dY_c^T (cout x m) * col_c (m x K) */
        if (k == 3) {
          im2col3(x, r0, r1, cb);
          cg_cpu_gemm(1, 0, cout, K, m, 1.0f, dyc, (int)ldd, cb, K, c == c0 ? 0.0f : 1.0f, dwg,
                      K);
        } else {
          cg_cpu_gemm(1, 0, cout, K, m, 1.0f, dyc, (int)ldd, x->p + (size_t)r0 * w * ldx,
                      (int)ldx, c == c0 ? 0.0f : 1.0f, dwg, K);
        }
        if (!dx) continue;
        float *dxc = dx->p + (size_t)r0 * w * dx->ld;
        const float beta = accum_dx ? 1.0f : 0.0f;
        if (k == 3) {
          /* dx_c (m x cin) = im2col(dy)_c (m x 9cout) * wflip^T (9cout x cin) */
          im2col3(dy, r0, r1, cb);
          cg_cpu_gemm(0, 1, m, cin, KT, 1.0f, cb, KT, wflip, KT, beta, dxc, dx->ld);
        } else {
          /* dx_c (m x cin) = dY_c (m x cout) * W (cout x cin) */
          cg_cpu_gemm(0, 0, m, cin, cout, 1.0f, dyc, (int)ldd, wt, cin, beta, dxc, dx->ld);
        }
      }
    }
    if (pl.ngroups > 1) reduce_parts(dw, dwpart, pl.ngroups, wlen);
  }
}

/* ---- transposed convolution 2x2 / 2 ------------------------------------------------------ */

static void check_upconv(const cg_view_t *x, const cg_view_t *y) {
  check_view(x);
  check_view(y);
  CG_ASSERT(y->n == x->n && y->h == 2 * x->h && y->w == 2 * x->w);
}

/* Output pixel of input pixel p (flat over n*h*w) and tap (u, v). */
static size_t up_px(const cg_view_t *x, size_t p, int u, int v) {
  size_t w = (size_t)x->w, row = p / w, b = p % w; /* row = i*h + a */
  return ((2 * row + u) * 2 * w) + 2 * b + v;      /* ((i*2h + 2a+u) * 2w + 2b+v) */
}

void cg_cpu_upconv_fwd(const cg_view_t *x, const float *wt, const float *bias, const cg_view_t *y,
                       cg_cpu_ws_t *ws) {
  check_upconv(x, y);
  CG_ASSERT(wt != NULL && bias != NULL);
  const int rows = x->n * x->h, w = x->w, cin = x->c, cout = y->c, N = 4 * cout;
  plan_t pl = plan_rows(rows, w, (size_t)w * N, 0);
  const size_t stride = round16((size_t)pl.rows * w * N);
  float *scratch = cg_cpu_ws_get(ws, stride * omp_get_max_threads());
  const size_t ldy = (size_t)y->ld;
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < pl.nchunks; c++) {
    int r0, r1;
    chunk_range(&pl, rows, c, &r0, &r1);
    const int m = (r1 - r0) * w;
    float *yg = scratch + stride * omp_get_thread_num();
    /* yg (m x 4cout) = X_c (m x cin) * W (cin x 4cout) */
    cg_cpu_gemm(0, 0, m, N, cin, 1.0f, x->p + (size_t)r0 * w * x->ld, x->ld, wt, N, 0.0f, yg, N);
    for (int q = 0; q < m; q++) {
      size_t p = (size_t)r0 * w + q;
      for (int t = 0; t < 4; t++) {
        const float *s = yg + (size_t)q * N + t * cout;
        float *d = y->p + up_px(x, p, t >> 1, t & 1) * ldy;
        for (int co = 0; co < cout; co++) d[co] = s[co] + bias[co];
      }
    }
  }
}

void cg_cpu_upconv_bwd(const cg_view_t *x, const float *wt, const cg_view_t *dy,
                       const cg_view_t *dx, int accum_dx, float *dw, float *db, cg_cpu_ws_t *ws) {
  check_upconv(x, dy);
  CG_ASSERT(wt != NULL && dw != NULL && db != NULL);
  if (dx) {
    check_view(dx);
    CG_ASSERT(dx->n == x->n && dx->h == x->h && dx->w == x->w && dx->c == x->c);
  }
  const int rows = x->n * x->h, w = x->w, cin = x->c, cout = dy->c, N = 4 * cout;
  const size_t wlen = (size_t)cin * N;
  /* db partials ride along with the dW partials: one row of 4cout after each dW. */
  const size_t plen = wlen + N;
  plan_t pl = plan_rows(rows, w, (size_t)w * N, plen);
  const int nt = omp_get_max_threads();
  const size_t stride = round16((size_t)pl.rows * w * N);
  const size_t n_part = round16(plen * pl.ngroups);
  float *base = cg_cpu_ws_get(ws, n_part + stride * nt);
  float *parts = base, *scratch = base + n_part;
  const size_t ldd = (size_t)dy->ld, ldx = (size_t)x->ld;
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1)
    for (int g = 0; g < pl.ngroups; g++) {
      float *dyg = scratch + stride * omp_get_thread_num();
      float *dwg = parts + (size_t)g * plen, *dbg = dwg + wlen;
      for (int j = 0; j < N; j++) dbg[j] = 0.0f;
      int c0 = (int)((long long)g * pl.nchunks / pl.ngroups);
      int c1 = (int)((long long)(g + 1) * pl.nchunks / pl.ngroups);
      for (int c = c0; c < c1; c++) {
        int r0, r1;
        chunk_range(&pl, rows, c, &r0, &r1);
        const int m = (r1 - r0) * w;
        for (int q = 0; q < m; q++) {
          size_t p = (size_t)r0 * w + q;
          float *d = dyg + (size_t)q * N;
          for (int t = 0; t < 4; t++) {
            const float *s = dy->p + up_px(x, p, t >> 1, t & 1) * ldd;
            for (int co = 0; co < cout; co++) d[t * cout + co] = s[co];
          }
          for (int j = 0; j < N; j++) dbg[j] += d[j];
        }
        const float *xc = x->p + (size_t)r0 * w * ldx;
        /* dW (cin x 4cout) += X_c^T (cin x m) * dYg (m x 4cout) */
        cg_cpu_gemm(1, 0, cin, N, m, 1.0f, xc, (int)ldx, dyg, N, c == c0 ? 0.0f : 1.0f, dwg, N);
        if (dx) /* dx_c (m x cin) = dYg (m x 4cout) * W^T (4cout x cin) */
          cg_cpu_gemm(0, 1, m, cin, N, 1.0f, dyg, N, wt, N, accum_dx ? 1.0f : 0.0f,
                      dx->p + (size_t)r0 * w * dx->ld, dx->ld);
      }
    }
    /* Fixed-order reduction of the group partials. */
#pragma omp single nowait
    for (int co = 0; co < cout; co++) {
      float s = 0.0f;
      for (int g = 0; g < pl.ngroups; g++)
        for (int t = 0; t < 4; t++) s += parts[(size_t)g * plen + wlen + t * cout + co];
      db[co] = s;
    }
#pragma omp for schedule(static)
    for (size_t e = 0; e < wlen; e++) {
      float s = 0.0f;
      for (int g = 0; g < pl.ngroups; g++) s += parts[(size_t)g * plen + e];
      dw[e] = s;
    }
  }
}

/* ---- max pool 2x2 / 2 ------------------------------------------------------------------- */

static void check_pool(const cg_view_t *x, const cg_view_t *y) {
  check_view(x);
  check_view(y);
  CG_ASSERT(x->h % 2 == 0 && x->w % 2 == 0);
  CG_ASSERT(y->n == x->n && y->h == x->h / 2 && y->w == x->w / 2 && y->c == x->c);
}

void cg_cpu_maxpool_fwd(const cg_view_t *x, const cg_view_t *y) {
  check_pool(x, y);
  const int orows = y->n * y->h, ow = y->w, c = x->c;
  const size_t ldx = (size_t)x->ld, ldy = (size_t)y->ld, iw = (size_t)x->w;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < orows; r++) {
    for (int b = 0; b < ow; b++) {
      const float *t0 = x->p + ((size_t)2 * r * iw + 2 * b) * ldx; /* row 2r of the flat space */
      const float *t1 = t0 + ldx, *t2 = t0 + iw * ldx, *t3 = t2 + ldx;
      float *d = y->p + ((size_t)r * ow + b) * ldy;
      for (int k = 0; k < c; k++) {
        /* strict > keeps the first maximum in scan order */
        float v = t0[k];
        if (t1[k] > v) v = t1[k];
        if (t2[k] > v) v = t2[k];
        if (t3[k] > v) v = t3[k];
        d[k] = v;
      }
    }
  }
}

void cg_cpu_maxpool_bwd(const cg_view_t *x, const cg_view_t *y, const cg_view_t *dy,
                        const cg_view_t *dx, int accum_dx) {
  check_pool(x, y);
  check_view(dy);
  check_view(dx);
  CG_ASSERT(dy->n == y->n && dy->h == y->h && dy->w == y->w && dy->c == y->c);
  CG_ASSERT(dx->n == x->n && dx->h == x->h && dx->w == x->w && dx->c == x->c);
  const int orows = y->n * y->h, ow = y->w, c = x->c;
  const size_t ldx = (size_t)x->ld, ldg = (size_t)dy->ld, ldd = (size_t)dx->ld, iw = (size_t)x->w;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < orows; r++) {
    for (int b = 0; b < ow; b++) {
      const size_t p0 = (size_t)2 * r * iw + 2 * b;
      const size_t px[4] = {p0, p0 + 1, p0 + iw, p0 + iw + 1};
      const float *g = dy->p + ((size_t)r * ow + b) * ldg;
      for (int k = 0; k < c; k++) {
        /* argmax recomputed from x with the forward's comparisons: same winner */
        int arg = 0;
        float v = x->p[px[0] * ldx + k];
        for (int t = 1; t < 4; t++) {
          float u = x->p[px[t] * ldx + k];
          if (u > v) {
            v = u;
            arg = t;
          }
        }
        for (int t = 0; t < 4; t++) {
          float *d = dx->p + px[t] * ldd + k;
          float add = t == arg ? g[k] : 0.0f;
          *d = accum_dx ? *d + add : add;
        }
      }
    }
  }
}

/* ---- loss ------------------------------------------------------------------------------- */

static const cg_loss_opt_t kLossRef = {1.0f, NULL, 0.0f, 0.0f, 0.0f, 0};

/* Binary pixel: its BCE term (weight wt: pos_weight for the foreground, else 1) into *val
 * (optional), with the focal factor when gamma > 0; returns the term's d/dz, wt (p - y) (times
 * the focal F). p the sigmoid, e = exp(-|z|) as the callers compute them. */
static inline double bce_px(double z, int y, double e, double p, double wt, double gamma,
                            double *val) {
  const double yj = y ? 1.0 : 0.0;
  const double bce = val || gamma > 0 ? (z > 0 ? z : 0.0) - z * yj + log1p(e) : 0.0;
  if (gamma > 0) {
    const double pm = z >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e); /* 1 - p */
    const double q = y ? p : pm, omq = y ? pm : p;
    if (val) *val = wt * (cg_focal_factor(omq, gamma) * bce);
    const double a = cg_focal_grad_a(q, omq, bce, gamma);
    return wt * (y ? -a : a);
  }
  if (val) *val = wt * bce;
  return wt * (p - yj);
}

double cg_cpu_loss(const float *logits, const uint8_t *mask, const float *weight, int n, size_t hw,
                   float grad_scale, const cg_loss_opt_t *lo, float *dlogits, double *per_sample) {
  CG_ASSERT(logits != NULL && mask != NULL && weight != NULL);
  CG_ASSERT(n >= 1 && hw >= 1);
  if (!lo) lo = &kLossRef;
  double *li = cg_malloc(sizeof(double) * n, "per-sample loss");
  const double inv_hw = 1.0 / (double)hw, dw = lo->dice_w;
  const double pw = lo->cw ? (double)lo->cw[0] : 1.0; /* x 1.0: the unweighted bits */
  const double fg = lo->focal;
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * hw;
    const uint8_t *y = mask + (size_t)i * hw;
    double sb = 0, sp = 0, sy = 0, spy = 0;
    for (size_t j = 0; j < hw; j++) {
      const double zj = z[j], yj = y[j] ? 1.0 : 0.0;
      const double e = exp(-fabs(zj)); /* in (0, 1]: never overflows */
      const double p = zj >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      double t;
      (void)bce_px(zj, y[j], e, p, y[j] ? pw : 1.0, fg, &t);
      sb += t;
      sp += p;
      sy += yj;
      spy += p * yj;
    }
    const double num = 2.0 * spy + 1.0, den = sp + sy + 1.0;
    li[i] = sb * inv_hw + dw * (1.0 - num / den);
    if (dlogits) {
      float *dz = dlogits + (size_t)i * hw;
      if (weight[i] == 0.0f) {
        memset(dz, 0, hw * sizeof(float));
        continue;
      }
      /* d/dz: BCE (p - y)/hw (y = 1: times pw); Dice -d(num/den)/dp * p(1-p) =
       * (num - 2y den)/den^2 * p(1-p) */
      const double s = (double)weight[i] * grad_scale, inv_den2 = 1.0 / (den * den);
      for (size_t j = 0; j < hw; j++) {
        const double zj = z[j], yj = y[j] ? 1.0 : 0.0;
        const double e = exp(-fabs(zj));
        const double p = zj >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        const double g = bce_px(zj, y[j], e, p, y[j] ? pw : 1.0, fg, NULL) * inv_hw +
                         dw * ((num - 2.0 * yj * den) * inv_den2 * p * (1.0 - p));
        dz[j] = (float)(s * g);
      }
    }
  }
  double total = 0;
  for (int i = 0; i < n; i++) {
    if (weight[i] != 0.0f) total += (double)weight[i] * li[i]; /* padding adds nothing, not NaN */
    if (per_sample) per_sample[i] = li[i];
  }
  free(li);
  return total;
}

/* Softmax of one pixel's K logits into p (double); returns log(sum exp(z - max)) - (z_y - max)
 * = -log p_y when 0 <= y < K (else 0). smooth (optional) gets sum_c w_c (-log p_c), each term
 * in that form (w = cw, NULL: 1). */
static double softmax_px(const float *z, int K, int y, double *p, const float *cw,
                         double *smooth) {
  double mx = z[0];
  for (int c = 1; c < K; c++)
    if (z[c] > mx) mx = z[c];
  double sum = 0;
  for (int c = 0; c < K; c++) {
    p[c] = exp((double)z[c] - mx);
    sum += p[c];
  }
  const double inv = 1.0 / sum;
  for (int c = 0; c < K; c++) p[c] *= inv;
  const double ls = log(sum);
  if (smooth) {
    double u = 0;
    for (int c = 0; c < K; c++) u += (cw ? (double)cw[c] : 1.0) * (ls - ((double)z[c] - mx));
    *smooth = u;
  }
  return y >= 0 && y < K ? ls - ((double)z[y] - mx) : 0.0;
}

/* 1 - p_y as the other classes' sum (no cancellation near p_y = 1). */
static double om_y(const double *p, int K, int y) {
  double om = 0;
  for (int c = 0; c < K; c++)
    if (c != y) om += p[c];
  return om;
}

/* Binary: the sigmoid's 1 - p without cancellation, from e = exp(-|z|). */
static inline double sig_om(double z, double e) { return z >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e); }

/* Binary: p_t of a pixel of mask y from the sigmoid p and e = exp(-|z|), as the loss has them. */
static inline double bin_pt(int y, double z, double e, double p) { return y ? p : sig_om(z, e); }

float cg_cpu_ohem_key(const float *z, int K, int y) {
  if (K == 1) {
    const double zj = z[0], e = exp(-fabs(zj));
    return (float)bin_pt(y, zj, e, zj >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
  }
  double p[256];
  (void)softmax_px(z, K, y, p, NULL, NULL);
  return (float)p[y];
}

/* Whether a pixel whose p_t is q is kept by its sample's OHEM threshold thr (+inf: every
 * pixel). q in the bits cg_cpu_ohem_key computes it: callers pass the sigmoid or softmax value
 * they computed by the same expression. */
static inline int ohem_kept(double q, float thr) { return thr == INFINITY || (float)q < thr; }

float cg_cpu_ohem_thr(const float *z, const uint8_t *y, size_t hw, int K, int ignore,
                      const cg_loss_opt_t *lo, uint32_t *keys) {
  CG_ASSERT(lo && lo->ohem > 0 && lo->ohem_min_kept >= 0);
  size_t nv = 0;
  for (size_t j = 0; j < hw; j++) {
    if (y[j] == ignore || (K > 1 && y[j] >= K)) continue;
    const float k = cg_cpu_ohem_key(z + j * K, K, y[j]);
    memcpy(&keys[nv++], &k, sizeof k); /* >= 0 (or NaN): the bits order as the values */
  }
  return cg_cpu_ohem_select(keys, nv, lo->ohem, lo->ohem_min_kept);
}

float cg_cpu_ohem_select(const uint32_t *keys, size_t nv, float thresh, int64_t min_kept) {
  if ((uint64_t)min_kept >= nv) return INFINITY;
  /* The key of rank r: four passes of 8 bits, most significant first, each counting the keys
   * that share the prefix found so far. */
  uint64_t r = (uint64_t)min_kept;
  uint32_t prefix = 0, pmask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    uint64_t hist[256] = {0};
    for (size_t j = 0; j < nv; j++)
      if ((keys[j] & pmask) == prefix) hist[(keys[j] >> shift) & 255u]++;
    int d = 0;
    while (r >= hist[d]) r -= hist[d++];
    prefix |= (uint32_t)d << shift;
    pmask |= 255u << shift;
  }
  float v;
  memcpy(&v, &prefix, sizeof v);
  return v > thresh ? v : thresh;
}

/* cg_cpu_loss_sums_add with OHEM's threshold thr (+inf: every valid pixel's CE counts). */
static void sums_add(cg_loss_sums_t *s, const float *z, const uint8_t *y, size_t n, int K,
                     int ignore, const cg_loss_opt_t *lo, float thr) {
  const float *cw = lo->cw;
  if (K == 1) {
    const double pw = cw ? (double)cw[0] : 1.0;
    for (size_t j = 0; j < n; j++) {
      if (y[j] == ignore) continue;
      const double zj = z[j], yj = y[j] ? 1.0 : 0.0;
      const double e = exp(-fabs(zj));
      const double p = zj >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      if (ohem_kept(bin_pt(y[j], zj, e, p), thr)) {
        double t;
        (void)bce_px(zj, y[j], e, p, y[j] ? pw : 1.0, lo->focal, &t);
        s->ce += t;
        s->nv += 1;
      }
      s->psum[0] += p;
      s->gsum[0] += yj;
      s->inter[0] += p * yj;
    }
    return;
  }
  double p[256];
  for (size_t j = 0; j < n; j++) {
    const int yj = y[j];
    if (yj == ignore || yj >= K) continue;
    const double wy = cw ? (double)cw[yj] : 1.0;
    double u = 0;
    const double ce = softmax_px(z + j * K, K, yj, p, cw, lo->smooth > 0 ? &u : NULL);
    if (ohem_kept(p[yj], thr)) {
      s->ce += lo->focal > 0 ? wy * (cg_focal_factor(om_y(p, K, yj), lo->focal) * ce) : wy * ce;
      s->sce += u;
      s->nv += wy;
    }
    for (int c = 0; c < K; c++) s->psum[c] += p[c];
    s->inter[yj] += p[yj];
    s->gsum[yj] += 1;
  }
}

void cg_cpu_loss_sums_add(cg_loss_sums_t *s, const float *z, const uint8_t *y, size_t n, int K,
                          int ignore, const cg_loss_opt_t *lo) {
  sums_add(s, z, y, n, K, ignore, lo ? lo : &kLossRef, INFINITY);
}

/* 1 / the CE mean's divisor; 0 for none (no valid pixel, or class weights summing to 0: the
 * CE sum is 0 then too). A count >= 1 gives the bits of 1 / max(count, 1). */
static double inv_divisor(double nv) { return nv > 0 ? 1.0 / nv : 0.0; }

/* The cross-entropy sum of a sample: with label smoothing (K >= 2) (1 - eps) CE + eps/K the
 * smoothing sum; without, exactly the CE sum. */
static double ce_sum(const cg_loss_sums_t *s, int K, const cg_loss_opt_t *lo) {
  const double eps = lo->smooth;
  return K > 1 && eps > 0 ? (1.0 - eps) * s->ce + eps / K * s->sce : s->ce;
}

double cg_cpu_loss_sums_value(const cg_loss_sums_t *s, int K, const cg_loss_opt_t *lo) {
  if (!lo) lo = &kLossRef;
  const double inv_v = inv_divisor(s->nv);
  double dsum = 0;
  for (int c = 0; c < K; c++)
    dsum += (2.0 * s->inter[c] + 1.0) / (s->psum[c] + s->gsum[c] + 1.0);
  return ce_sum(s, K, lo) * inv_v + (double)lo->dice_w * (1.0 - dsum / K);
}

/* Binary BCE + Dice over the pixels whose mask is not `ignore` (ignore >= 0). */
static double loss_binary_ignore(const float *z, const uint8_t *y, size_t hw, int ignore,
                                 const cg_loss_opt_t *lo, float thr, double s, float *dz) {
  cg_loss_sums_t S;
  memset(&S, 0, sizeof S);
  sums_add(&S, z, y, hw, 1, ignore, lo, thr);
  const double sp = S.psum[0], sy = S.gsum[0], spy = S.inter[0], nv = S.nv, dw = lo->dice_w;
  const double inv_v = inv_divisor(nv), pw = lo->cw ? (double)lo->cw[0] : 1.0;
  const double num = 2.0 * spy + 1.0, den = sp + sy + 1.0;
  if (dz) {
    const double inv_den2 = 1.0 / (den * den);
    for (size_t j = 0; j < hw; j++) {
      if (y[j] == ignore || s == 0) {
        dz[j] = 0.0f;
        continue;
      }
      const double zj = z[j], yj = y[j] ? 1.0 : 0.0;
      const double e = exp(-fabs(zj));
      const double p = zj >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      const double gb = ohem_kept(bin_pt(y[j], zj, e, p), thr)
                            ? bce_px(zj, y[j], e, p, y[j] ? pw : 1.0, lo->focal, NULL)
                            : 0.0;
      const double g = gb * inv_v + dw * ((num - 2.0 * yj * den) * inv_den2 * p * (1.0 - p));
      dz[j] = (float)(s * g);
    }
  }
  return S.ce * inv_v + dw * (1.0 - num / den);
}

/* One sample of the K-class loss (K >= 2); s = weight * grad_scale for the gradient. A mask
 * value >= K that is not the ignore label is left out like one (the data layer refuses it). */
static double loss_k_sample(const float *z, const uint8_t *y, size_t hw, int K, int ignore,
                            const cg_loss_opt_t *lo, float thr, double s, float *dz) {
  double p[256], a[256];
  cg_loss_sums_t S;
  memset(&S, 0, sizeof S);
  sums_add(&S, z, y, hw, K, ignore, lo, thr);
  const double *inter = S.inter, *psum = S.psum, *gsum = S.gsum, ce = ce_sum(&S, K, lo);
  const double nv = S.nv, dw = lo->dice_w, eps = lo->smooth;
  const float *cw = lo->cw;
  const double inv_v = inv_divisor(nv);
  double wsum = 0; /* smoothing: sum_c w_c */
  for (int c = 0; c < K; c++) wsum += cw ? (double)cw[c] : 1.0;
  double dsum = 0;
  for (int c = 0; c < K; c++) {
    const double num = 2.0 * inter[c] + 1.0, den = psum[c] + gsum[c] + 1.0;
    dsum += num / den;
    /* d Dice / d p_c for a pixel of class y: -(1/K) (2 [y=c] den - num) / den^2, which is
     * a_c + b_c [y=c] */
    a[c] = num / (den * den) / K;
  }
  if (dz) {
    for (size_t j = 0; j < hw; j++) {
      float *d = dz + j * K;
      const int yj = y[j];
      if (yj == ignore || yj >= K || s == 0) {
        for (int c = 0; c < K; c++) d[c] = 0.0f;
        continue;
      }
      const double ce_y = softmax_px(z + j * K, K, yj, p, NULL, NULL);
      const int kept = ohem_kept(p[yj], thr);
      /* focal: the CE part's A and 1 - p_y (cpu_layers.h) */
      const double fom = lo->focal > 0 ? om_y(p, K, yj) : 0.0;
      const double fA = lo->focal > 0 ? cg_focal_grad_a(p[yj], fom, ce_y, lo->focal) : 0.0;
      const double den_y = psum[yj] + gsum[yj] + 1.0;
      const double b_y = -2.0 / (den_y * K); /* the [y=c] part: -(1/K) 2 den / den^2 */
      /* dL/dz_k = p_k (g_k - sum_c g_c p_c), g_c = dDice/dp_c; CE adds w_y (p_k - [y=k]) / nv,
       * smoothed (1 - eps) w_y (p_k - [y=k]) + eps/K (sum_c w_c p_k - w_k) */
      const double wy = cw ? (double)cw[yj] : 1.0;
      double gp = 0;
      for (int c = 0; c < K; c++) gp += a[c] * p[c];
      gp += b_y * p[yj];
      for (int c = 0; c < K; c++) {
        const double gc = a[c] + (c == yj ? b_y : 0.0);
        const double gce = eps > 0 ? (1.0 - eps) * wy * (p[c] - (c == yj ? 1.0 : 0.0)) +
                                         eps / K * (wsum * p[c] - (cw ? (double)cw[c] : 1.0))
                                   : lo->focal > 0 ? wy * (c == yj    ? -fA
                                                           : fom > 0 ? fA * (p[c] / fom)
                                                                     : 0.0)
                                                   : wy * (p[c] - (c == yj ? 1.0 : 0.0));
        const double g = (kept ? gce : 0.0) * inv_v + dw * (p[c] * (gc - gp));
        d[c] = (float)(s * g);
      }
    }
  }
  return ce * inv_v + dw * (1.0 - dsum / K);
}

double cg_cpu_loss_k(const float *logits, const uint8_t *mask, const float *weight, int n,
                     size_t hw, int K, int ignore, float grad_scale, const cg_loss_opt_t *lo,
                     float *dlogits, double *per_sample) {
  CG_ASSERT(K >= 1 && K <= 255);
  if (!lo) lo = &kLossRef;
  CG_ASSERT(!(lo->focal > 0 && lo->smooth > 0)); /* the CLI refuses both */
  const int ohem = lo->ohem > 0;
  if (K == 1 && ignore < 0 && !ohem)
    return cg_cpu_loss(logits, mask, weight, n, hw, grad_scale, lo, dlogits, per_sample);
  CG_ASSERT(logits != NULL && mask != NULL && weight != NULL);
  CG_ASSERT(n >= 1 && hw >= 1);
  double *li = cg_malloc(sizeof(double) * n, "per-sample loss");
  uint32_t *keys = ohem ? cg_malloc(sizeof(uint32_t) * hw * (size_t)n, "OHEM keys") : NULL;
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * hw * K;
    const uint8_t *y = mask + (size_t)i * hw;
    float *dz = dlogits ? dlogits + (size_t)i * hw * K : NULL;
    const double s = (double)weight[i] * grad_scale;
    float thr = INFINITY;
    if (ohem && weight[i] != 0.0f) /* padding's loss is not used: no selection */
      thr = cg_cpu_ohem_thr(z, y, hw, K, ignore, lo, keys + (size_t)i * hw);
    li[i] = K == 1 ? loss_binary_ignore(z, y, hw, ignore, lo, thr, s, dz)
                   : loss_k_sample(z, y, hw, K, ignore, lo, thr, s, dz);
  }
  double total = 0;
  for (int i = 0; i < n; i++) {
    if (weight[i] != 0.0f) total += (double)weight[i] * li[i];
    if (per_sample) per_sample[i] = li[i];
  }
  free(li);
  free(keys);
  return total;
}

/* ---- AdamW ------------------------------------------------------------------------------ */

void cg_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t t, float grad_mul) {
  CG_ASSERT(t >= 1);
  CG_ASSERT(n == 0 || (p && g && m && v));
  /* Bias corrections in double: beta2^t in float loses digits for large t. */
  const float step = (float)(lr / (1.0 - pow(beta1, (double)t)));
  const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, (double)t)));
  const float decay = 1.0f - lr * weight_decay;
  const float b1 = beta1, b2 = beta2, c1 = 1.0f - beta1, c2 = 1.0f - beta2;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float gi = g[i] * grad_mul;
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    /* PyTorch: p *= 1 - lr*wd; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps) */
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

/* ---- SGD -------------------------------------------------------------------------------- */

void cg_cpu_sgd(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                int nesterov, float weight_decay, float grad_mul) {
  CG_ASSERT(n == 0 || (p && g && buf));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float di = g[i] * grad_mul + weight_decay * p[i];
    const float bi = momentum * buf[i] + di;
    buf[i] = bi;
    p[i] = p[i] - lr * (nesterov ? di + momentum * bi : bi);
  }
}

void cg_cpu_ema(float *e, const float *p, size_t n, float w) {
  CG_ASSERT(n == 0 || (e && p));
  if (w == 1.0f) { /* AveragedModel's first update: a copy, whatever e held */
    memcpy(e, p, sizeof(float) * n);
    return;
  }
  const float w1 = 1.0f - w;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) { /* torch's CPU lerp: one rounding of each product-sum */
    const float d = p[i] - e[i];
    e[i] = w < 0.5f ? fmaf(w, d, e[i]) : fmaf(-d, w1, p[i]);
  }
}

/* ---- gradient norm ------------------------------------------------------------------------ */

double cg_cpu_grad_norm(const float *g, size_t n, float mul, double *part) {
  const size_t nc = (n + CG_NORM_CHUNK - 1) / CG_NORM_CHUNK;
  CG_ASSERT(n == 0 || (g && part));
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < nc; c++) {
    const size_t e = (c + 1) * CG_NORM_CHUNK < n ? (c + 1) * CG_NORM_CHUNK : n;
    double s = 0.0;
    for (size_t i = c * CG_NORM_CHUNK; i < e; i++) s += (double)g[i] * (double)g[i];
    part[c] = s;
  }
  double s = 0.0;
  for (size_t c = 0; c < nc; c++) s += part[c];
  return sqrt(s) * (double)mul;
}
