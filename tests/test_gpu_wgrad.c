/* test_gpu_wgrad.c: the tensor-core weight-gradient kernel (cuda/wgrad.h) against a
 * double-precision CPU reference computed from the same bf16/fp16-rounded inputs.
 *
 * Cases: small and odd sizes (w not a multiple of 16, h = 1, w = 1, runs of one row), every
 * tile shape (32 or 64 couts x 8, 16 or 32 cins, several tiles), pixel strides larger than
 * the channel count with NaN in the unused channels (a half of a concat buffer: must not leak
 * in), pointers 16 but not 32-byte aligned, with and without db, fp16 and bf16, and one real
 * layer (n=4, 256x256, 32->32). dw and db are poisoned (NaN) before every run, the scratch too;
 * two runs must agree bitwise. Shapes the kernel does not handle must be refused. The naive
 * kernel (cg_wgrad_reference, the search's check where cuDNN has nothing) against the same
 * reference.
 *
 * Then, for batch-32 layers of the UNet (256x256 32->32 and 64->32, 128x128 64->64; every
 * listed layer with CG_TEST_WGRAD_ALL=1), the kernel's time (median of 9 batches of 10) and
 * cuDNN's best selected backward-filter on the same inputs, whose output must agree within
 * 1e-2 of the largest element: informational timings, checked results.
 * CG_TEST_WGRAD_QUICK=1 skips the large cases (for compute-sanitizer). CG_TEST_SEED=<n> repeats
 * a run's inputs. Exits 77 without a usable GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"          /* cg_conv_*: cuDNN's backward-filter for the comparison */
#include "cuda_check.h"    /* CG_CHECK_CUDA, cg_dtype_t */
#include "log.h"           /* cg_malloc, CG_FATAL */
#include "ref_layers.h"    /* cg_ref_conv3_wgrad */
#include "testutil.h"      /* cg_test_close, cg_test_seed, bf16/fp16 host conversions */
#include "testutil_cuda.h" /* cg_test_need_gpu: exit 77 without a GPU */
#include "wgrad.h"         /* cg_wgrad_*: the kernel under test */

static cudaStream_t S;
static uint64_t g_seed, g_ctr;

typedef struct {
  const char *name;
  cg_dtype_t dt;
  int n, h, w, cin, cout;
  int ldx, lddy; /* 0: dense */
  int xoff, dyoff; /* elements before the first pixel (garbage) */
  int db;
} tcase_t;

/* ---- host helpers ------------------------------------------------------------------------ */

static const char *dt_name(cg_dtype_t dt) { return dt == CG_DT_BF16 ? "bf16" : "fp16"; }

static void *dnew(size_t bytes) {
  void *d = NULL;
  CG_CHECK_CUDA(cudaMalloc(&d, bytes ? bytes : 1));
  return d;
}

/* A strided activation: off + npix * ld elements, NaN except channels [0, c) of each pixel,
 * which hold uniform [-1, 1) rounded to dt; the same values, dense, in *dense (npix x c). */
static uint16_t *make_act(cg_dtype_t dt, size_t npix, int c, int ld, int off, float **dense) {
  const size_t len = (size_t)off + npix * ld;
  uint16_t *h = cg_malloc(len * 2, "test activation");
  float *d = cg_malloc(npix * c * sizeof(float) + 4, "test activation (dense)");
  cg_test_fill(d, npix * c, -1.0f, 1.0f, g_seed * 1000003u + g_ctr++);
  for (size_t i = 0; i < len; i++) h[i] = cg_test_nan_dt16(dt);
  for (size_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      const uint16_t b = cg_test_to_dt16(dt, d[p * c + k]);
      h[off + p * ld + k] = b;
      d[p * c + k] = cg_test_from_dt16(dt, b);
    }
  *dense = d;
  return h;
}

/* dw[co][r][s][ci] and db[co] in double (ref_layers.h). */
static void reference(const tcase_t *t, const float *x, const float *dy, double *dw, double *db) {
  cg_ref_conv3_wgrad(t->n, t->h, t->w, t->cin, t->cout, x, dy, dw, db);
}

/* ---- one case against the reference --------------------------------------------------------- */

static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, lddy = t->lddy ? t->lddy : t->cout;
  const cg_wgrad_shape_t sh = {t->dt, t->n, t->h, t->w, t->cin, t->cout, 3, ldx, lddy};
  char desc[256], name[160];
  cg_wgrad_describe(&sh, desc, sizeof desc);
  snprintf(name, sizeof name, "%s %s n%d %dx%d %d->%d ldx %d lddy %d%s", t->name, dt_name(t->dt),
           t->n, t->h, t->w, t->cin, t->cout, ldx, lddy, t->db ? " +db" : "");
  printf("RUN %s\n  %s\n", name, desc);
  if (!cg_wgrad_supported(&sh)) {
    CG_TEST_CHECK(0, "%s: not supported", name);
    return;
  }
  const size_t npix = (size_t)t->n * t->h * t->w, wl = (size_t)t->cout * 9 * t->cin;
  float *xf, *dyf;
  uint16_t *xh = make_act(t->dt, npix, t->cin, ldx, t->xoff, &xf);
  uint16_t *dyh = make_act(t->dt, npix, t->cout, lddy, t->dyoff, &dyf);
  const size_t xlen = (size_t)t->xoff + npix * ldx, dylen = (size_t)t->dyoff + npix * lddy;
  const size_t wbytes = cg_wgrad_work_bytes(&sh);
  uint16_t *d_x = dnew(xlen * 2), *d_dy = dnew(dylen * 2), *d_dw = dnew(wl * 2);
  float *d_db = dnew(t->cout * sizeof(float));
  void *d_work = dnew(wbytes);
  CG_CHECK_CUDA(cudaMemcpy(d_x, xh, xlen * 2, cudaMemcpyHostToDevice));
  CG_CHECK_CUDA(cudaMemcpy(d_dy, dyh, dylen * 2, cudaMemcpyHostToDevice));
  uint16_t *dw[2];
  float *db[2];
  for (int k = 0; k < 2; k++) {
    dw[k] = cg_malloc(wl * 2, "dw");
    db[k] = cg_malloc(t->cout * sizeof(float), "db");
    CG_CHECK_CUDA(cudaMemsetAsync(d_dw, 0xFF, wl * 2, S)); /* NaN in bf16, fp16 and fp32 */
    CG_CHECK_CUDA(cudaMemsetAsync(d_db, 0xFF, t->cout * sizeof(float), S));
    CG_CHECK_CUDA(cudaMemsetAsync(d_work, 0xFF, wbytes, S));
    cudaError_t rc = cg_wgrad_run(&sh, d_x + t->xoff, d_dy + t->dyoff, d_dw, t->db ? d_db : NULL,
                                  d_work, S);
    CG_TEST_CHECK(rc == cudaSuccess, "%s: cg_wgrad_run: %s", name, cudaGetErrorString(rc));
    CG_CHECK_CUDA(cudaStreamSynchronize(S));
    CG_CHECK_CUDA(cudaMemcpy(dw[k], d_dw, wl * 2, cudaMemcpyDeviceToHost));
    CG_CHECK_CUDA(cudaMemcpy(db[k], d_db, t->cout * sizeof(float), cudaMemcpyDeviceToHost));
  }
  double *rdw = cg_malloc(wl * sizeof(double), "ref dw");
  double *rdb = cg_malloc(t->cout * sizeof(double), "ref db");
  reference(t, xf, dyf, rdw, rdb);
  double *gdw = cg_malloc(wl * sizeof(double), "dw as double");
  double mx = 0;
  for (size_t i = 0; i < wl; i++) {
    gdw[i] = cg_test_from_dt16(t->dt, dw[0][i]);
    if (fabs(rdw[i]) > mx) mx = fabs(rdw[i]);
  }
  /* bf16 output: half an ulp is up to 2^-8 relative; fp16: 2^-11 */
  const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
  const double atol = (t->dt == CG_DT_BF16 ? 2e-3 : 5e-4) * mx;
  char what[200];
  snprintf(what, sizeof what, "%s dw", name);
  cg_test_close_d(what, gdw, rdw, wl, atol, rtol);
  CG_TEST_CHECK(memcmp(dw[0], dw[1], wl * 2) == 0, "%s: dw differs between two runs", name);
  /* the naive kernel (the search's reference where cuDNN has nothing) against the CPU too */
  CG_CHECK_CUDA(cudaMemsetAsync(d_dw, 0xFF, wl * 2, S));
  const cudaError_t rr = cg_wgrad_reference(&sh, d_x + t->xoff, d_dy + t->dyoff, d_dw, S);
  CG_TEST_CHECK(rr == cudaSuccess, "%s: cg_wgrad_reference: %s", name, cudaGetErrorString(rr));
  CG_CHECK_CUDA(cudaStreamSynchronize(S));
  CG_CHECK_CUDA(cudaMemcpy(dw[1], d_dw, wl * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < wl; i++) gdw[i] = cg_test_from_dt16(t->dt, dw[1][i]);
  snprintf(what, sizeof what, "%s dw (naive reference kernel)", name);
  cg_test_close_d(what, gdw, rdw, wl, atol, rtol);
  if (t->db) {
    double mb = 0, *gdb = cg_malloc(t->cout * sizeof(double), "db as double");
    for (int co = 0; co < t->cout; co++) {
      gdb[co] = db[0][co];
      if (fabs(rdb[co]) > mb) mb = fabs(rdb[co]);
    }
    snprintf(what, sizeof what, "%s db", name);
    cg_test_close_d(what, gdb, rdb, t->cout, 2e-4 * mb, 1e-3);
    CG_TEST_CHECK(memcmp(db[0], db[1], t->cout * sizeof(float)) == 0,
                  "%s: db differs between two runs", name);
    free(gdb);
  } else {
    /* db not asked for: left as it was (poisoned) */
    uint32_t b;
    memcpy(&b, &db[0][0], 4);
    CG_TEST_CHECK(b == 0xFFFFFFFFu, "%s: db written although not asked for", name);
  }
  void *dfree[] = {d_x, d_dy, d_dw, d_db, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
  void *hfree[] = {xh, dyh, xf, dyf, dw[0], dw[1], db[0], db[1], rdw, rdb, gdw};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- what the kernel must refuse ------------------------------------------------------------- */

static void test_refused(void) {
  printf("RUN refused shapes\n");
  const cg_wgrad_shape_t ok = {CG_DT_BF16, 2, 8, 8, 32, 32, 3, 32, 32};
  CG_TEST_CHECK(cg_wgrad_supported(&ok) == 1, "the base shape must be supported");
  struct {
    const char *why;
    cg_wgrad_shape_t s;
  } bad[] = {
      {"fp32", {CG_DT_F32, 2, 8, 8, 32, 32, 3, 32, 32}},
      {"k = 1", {CG_DT_BF16, 2, 8, 8, 32, 32, 1, 32, 32}},
      {"k = 5", {CG_DT_BF16, 2, 8, 8, 32, 32, 5, 32, 32}},
      {"cin 24", {CG_DT_BF16, 2, 8, 8, 24, 32, 3, 24, 32}},
      {"cin 48", {CG_DT_BF16, 2, 8, 8, 48, 32, 3, 48, 32}},
      {"cout 16", {CG_DT_BF16, 2, 8, 8, 32, 16, 3, 32, 16}},
      {"cout 48", {CG_DT_BF16, 2, 8, 8, 32, 48, 3, 32, 48}},
      {"ldx 36", {CG_DT_BF16, 2, 8, 8, 32, 32, 3, 36, 32}},
      {"lddy 20 < cout", {CG_DT_BF16, 2, 8, 8, 32, 32, 3, 32, 20}},
      {"lddy 44", {CG_DT_BF16, 2, 8, 8, 32, 32, 3, 32, 44}},
      {"n = 0", {CG_DT_BF16, 0, 8, 8, 32, 32, 3, 32, 32}},
      {"w too wide", {CG_DT_BF16, 1, 2, 8192, 32, 64, 3, 32, 64}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CG_TEST_CHECK(cg_wgrad_supported(&bad[i].s) == 0, "%s must be refused", bad[i].why);
    CG_TEST_CHECK(cg_wgrad_work_bytes(&bad[i].s) == 0, "%s: work bytes must be 0", bad[i].why);
    CG_TEST_CHECK(cg_wgrad_run(&bad[i].s, (void *)256, (void *)256, (void *)256, NULL, (void *)256,
                               S) == cudaErrorInvalidValue,
                  "%s: run must return cudaErrorInvalidValue", bad[i].why);
  }
  /* x, dy must be 16-byte aligned */
  CG_TEST_CHECK(cg_wgrad_run(&ok, (void *)258, (void *)256, (void *)256, NULL, (void *)256, S) ==
                    cudaErrorInvalidValue,
                "a misaligned x must be refused");
  CG_TEST_CHECK(cg_wgrad_run(&ok, (void *)256, (void *)264, (void *)256, NULL, (void *)256, S) ==
                    cudaErrorInvalidValue,
                "a misaligned dy must be refused");
  printf("PASS refused shapes\n");
}

/* ---- batch-32 layers: time against cuDNN ---------------------------------------------------- */

/* A device buffer of len 16-bit values: a random block of dt values repeated. */
static void fill_random(cg_dtype_t dt, uint16_t *d, size_t len) {
  const size_t blk = (size_t)1 << 20;
  float *f = cg_malloc(blk * sizeof(float), "random block");
  uint16_t *h = cg_malloc(blk * 2, "random block");
  cg_test_fill(f, blk, -1.0f, 1.0f, g_seed * 1000003u + g_ctr++);
  for (size_t i = 0; i < blk; i++) h[i] = cg_test_to_dt16(dt, f[i]);
  const size_t first = len < blk ? len : blk;
  CG_CHECK_CUDA(cudaMemcpy(d, h, first * 2, cudaMemcpyHostToDevice));
  for (size_t done = first; done < len;) {
    const size_t n = done < len - done ? done : len - done;
    CG_CHECK_CUDA(cudaMemcpy(d + done, d, n * 2, cudaMemcpyDeviceToDevice));
    done += n;
  }
  free(f);
  free(h);
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

typedef cudaError_t (*timed_fn)(void *ctx);

/* Median over 9 samples of 10 back-to-back runs (so host launch gaps do not count), after 3
 * warm-ups, ms per run; -1 if a run fails. */
static float time_ms(timed_fn fn, void *ctx) {
  cudaEvent_t a, b;
  CG_CHECK_CUDA(cudaEventCreate(&a));
  CG_CHECK_CUDA(cudaEventCreate(&b));
  float t[9], med = -1;
  for (int i = 0; i < 3; i++)
    if (fn(ctx) != cudaSuccess) goto done;
  for (int i = 0; i < 9; i++) {
    CG_CHECK_CUDA(cudaEventRecord(a, S));
    for (int k = 0; k < 10; k++)
      if (fn(ctx) != cudaSuccess) goto done;
    CG_CHECK_CUDA(cudaEventRecord(b, S));
    CG_CHECK_CUDA(cudaEventSynchronize(b));
    CG_CHECK_CUDA(cudaEventElapsedTime(&t[i], a, b));
    t[i] /= 10;
  }
  qsort(t, 9, sizeof t[0], cmp_float);
  med = t[4];
done:
  CG_CHECK_CUDA(cudaStreamSynchronize(S));
  CG_CHECK_CUDA(cudaEventDestroy(a));
  CG_CHECK_CUDA(cudaEventDestroy(b));
  return med;
}

typedef struct {
  cg_wgrad_shape_t sh;
  const void *x, *dy;
  void *dw, *work;
  float *db;
  cg_conv_ctx_t *cctx;
  cg_conv_t *conv;
  void *ws;
  size_t ws_bytes;
} bench_t;

static cudaError_t run_ours(void *p) {
  bench_t *b = p;
  return cg_wgrad_run(&b->sh, b->x, b->dy, b->dw, b->db, b->work, S);
}
static cudaError_t run_cudnn(void *p) {
  bench_t *b = p;
  return cg_conv_bwd_filter(b->cctx, b->conv, b->x, b->dy, b->dw, b->ws, b->ws_bytes, S) ==
                 CUDNN_STATUS_SUCCESS
             ? cudaSuccess
             : cudaErrorUnknown;
}

static void test_speed(int all) {
  static const int layers[][4] = {/* h = w, cin, cout, in the default set */
                                  {256, 32, 32, 1},  {256, 64, 32, 1},  {128, 32, 64, 0},
                                  {128, 64, 64, 1},  {128, 128, 64, 0}, {64, 64, 128, 0},
                                  {64, 128, 128, 0}, {64, 256, 128, 0}};
  const int n = 32, nl = (int)(sizeof layers / sizeof layers[0]);
  const cg_dtype_t dt = CG_DT_BF16;
  size_t xmax = 0, dymax = 0, wmax = 0, workmax = 0;
  for (int i = 0; i < nl; i++) {
    const size_t px = (size_t)n * layers[i][0] * layers[i][0];
    const cg_wgrad_shape_t sh = {dt, n, layers[i][0], layers[i][0], layers[i][1], layers[i][2], 3,
                                 layers[i][1], layers[i][2]};
    if (px * layers[i][1] > xmax) xmax = px * layers[i][1];
    if (px * layers[i][2] > dymax) dymax = px * layers[i][2];
    const size_t wl = (size_t)layers[i][1] * 9 * layers[i][2];
    if (wl > wmax) wmax = wl;
    if (cg_wgrad_work_bytes(&sh) > workmax) workmax = cg_wgrad_work_bytes(&sh);
  }
  bench_t b;
  memset(&b, 0, sizeof b);
  uint16_t *d_x = dnew(xmax * 2), *d_dy = dnew(dymax * 2);
  uint16_t *d_dw = dnew(wmax * 2), *d_dw2 = dnew(wmax * 2);
  float *d_db = dnew(256 * sizeof(float));
  b.work = dnew(workmax);
  b.ws_bytes = (size_t)256 << 20;
  b.ws = dnew(b.ws_bytes);
  fill_random(dt, d_x, xmax);
  fill_random(dt, d_dy, dymax);
  cudnnHandle_t dnn;
  CG_CHECK_CUDNN(cudnnCreate(&dnn));
  CG_CHECK_CUDNN(cudnnSetStream(dnn, S));
  b.cctx = cg_conv_ctx_create(dnn, 0, NULL);
  printf("# batch-32 bf16 layers: this kernel (+db) vs cuDNN's selected backward-filter (no db)\n");
  printf("# %-22s %9s %8s %9s %8s %7s %9s\n", "layer", "ours ms", "TFLOP/s", "cuDNN ms", "TFLOP/s",
         "speedup", "rel diff");
  for (int i = 0; i < nl; i++) {
    if (!all && !layers[i][3]) continue;
    const int hw = layers[i][0], ci = layers[i][1], co = layers[i][2];
    const size_t wl = (size_t)co * 9 * ci;
    b.sh = (cg_wgrad_shape_t){dt, n, hw, hw, ci, co, 3, ci, co};
    b.x = d_x;
    b.dy = d_dy;
    b.db = d_db;
    char label[64], desc[256];
    snprintf(label, sizeof label, "%dx%d %d->%d", hw, hw, ci, co);
    cg_wgrad_describe(&b.sh, desc, sizeof desc);
    printf("#   %s\n", desc);
    const double flop = 2.0 * n * hw * hw * 9.0 * ci * co;
    b.dw = d_dw;
    const float ours = time_ms(run_ours, &b);
    CG_TEST_CHECK(ours > 0, "%s: our kernel failed", label);
    /* cuDNN on the same inputs, into another buffer */
    float theirs = -1, rel = -1;
    cg_conv_shape_t cs;
    memset(&cs, 0, sizeof cs); /* dense, no fusion */
    cs.kind = CG_CONV_PLAIN;
    cs.n = n;
    cs.h = cs.w = hw;
    cs.cin = ci;
    cs.cout = co;
    cs.k = 3;
    cs.dt = dt;
    char err[512];
    b.conv = NULL;
    if (cg_conv_create(&cs, CG_CONV_OP_BWD_FILTER, &b.conv, err, sizeof err) == 0) {
      cg_conv_bufs_t bufs = {d_x, NULL, d_dy, NULL, NULL, d_dw2, NULL};
      if (cg_conv_select(b.cctx, b.conv, &bufs, b.ws, b.ws_bytes, S, err, sizeof err) == 0) {
        b.dw = d_dw2;
        theirs = time_ms(run_cudnn, &b);
        uint16_t *h1 = cg_malloc(wl * 2, "ours"), *h2 = cg_malloc(wl * 2, "cudnn");
        float *f1 = cg_malloc(wl * 4, "ours"), *f2 = cg_malloc(wl * 4, "cudnn");
        CG_CHECK_CUDA(cudaMemcpy(h1, d_dw, wl * 2, cudaMemcpyDeviceToHost));
        CG_CHECK_CUDA(cudaMemcpy(h2, d_dw2, wl * 2, cudaMemcpyDeviceToHost));
        for (size_t k = 0; k < wl; k++) {
          f1[k] = cg_test_from_dt16(dt, h1[k]);
          f2[k] = cg_test_from_dt16(dt, h2[k]);
        }
        rel = (float)cg_test_rel_err(f1, f2, wl);
        CG_TEST_CHECK(rel <= 1e-2f, "%s: differs from cuDNN by %.3g of the largest element", label,
                      rel);
        char cd[512];
        cg_conv_describe(b.conv, cd, sizeof cd);
        printf("#   %s\n", cd);
        free(h1);
        free(h2);
        free(f1);
        free(f2);
      } else {
        printf("#   cuDNN selection failed: %s\n", err);
      }
      cg_conv_destroy(b.conv);
    } else {
      printf("#   cuDNN refused the shape: %s\n", err);
    }
    printf("  %-22s %9.4f %8.1f %9.4f %8.1f %7.2f %9.2e\n", label, ours,
           ours > 0 ? flop / ours * 1e-9 : 0.0, theirs, theirs > 0 ? flop / theirs * 1e-9 : 0.0,
           ours > 0 && theirs > 0 ? theirs / ours : 0.0, rel);
  }
  cg_conv_ctx_destroy(b.cctx);
  CG_CHECK_CUDNN(cudnnDestroy(dnn));
  void *dfree[] = {d_x, d_dy, d_dw, d_dw2, d_db, b.work, b.ws};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
}

int main(void) {
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  g_seed = cg_test_seed();
  const int quick = getenv("CG_TEST_WGRAD_QUICK") && atoi(getenv("CG_TEST_WGRAD_QUICK")) > 0;
  const int all = getenv("CG_TEST_WGRAD_ALL") && atoi(getenv("CG_TEST_WGRAD_ALL")) > 0;
  printf("seed %llu (CG_TEST_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
         (unsigned long long)g_seed);
  setenv("CG_CONV_BUDGET_S", "0.5", 0); /* a short graph-API search for the comparison */
  CG_CHECK_CUDA(cudaSetDevice(0));
  /* a blocking stream: ordered with the synchronous cudaMemcpy of the helpers */
  CG_CHECK_CUDA(cudaStreamCreate(&S));
  test_refused();
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  static const tcase_t cases[] = {
      /* name            dt n   h    w  cin cout ldx lddy xoff dyoff db */
      {"small", B, 2, 8, 8, 32, 32, 0, 0, 0, 0, 1},
      {"odd", B, 3, 7, 9, 32, 32, 48, 64, 8, 32, 1},      /* dy: 2nd half of a concat */
      {"concat", B, 2, 13, 20, 64, 64, 128, 128, 0, 64, 1},
      {"cout 96", B, 3, 5, 33, 32, 96, 64, 96, 8, 0, 0},
      {"first layer", B, 2, 9, 17, 8, 32, 0, 0, 0, 0, 1},
      {"cin 16", B, 2, 6, 18, 16, 64, 32, 64, 0, 0, 1},
      {"deep", B, 2, 16, 16, 128, 128, 0, 256, 0, 128, 1},
      {"4 tiles", B, 2, 32, 40, 64, 128, 0, 0, 0, 0, 1},
      {"w 1", B, 4, 3, 1, 32, 32, 0, 0, 0, 0, 1},
      {"h 1", B, 3, 1, 40, 32, 64, 0, 0, 0, 0, 1},
      {"runs of 1 row", B, 1, 300, 16, 8, 64, 0, 0, 0, 0, 1},
      {"wide", B, 1, 6, 300, 32, 32, 0, 0, 0, 0, 1},
      {"fp16 small", H, 2, 8, 8, 32, 32, 0, 0, 0, 0, 1},
      {"fp16 strided", H, 2, 12, 18, 32, 64, 48, 128, 8, 64, 1},
      {"real", B, 4, 256, 256, 32, 32, 0, 0, 0, 0, 1},
  };
  const int nc = (int)(sizeof cases / sizeof cases[0]);
  for (int i = 0; i < nc; i++) {
    if (quick && !strcmp(cases[i].name, "real")) continue;
    run_case(&cases[i]);
  }
  if (!quick) test_speed(all);
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  return cg_test_done("test_gpu_wgrad");
}
