/* test_gpu_upconv.c: the upconv kernels (cuda/upconv.h) - the 2x2 stride-2 transposed
 * convolution's forward, input gradient and weight gradient (with the bias gradient) - against
 * the double-precision CPU reference (ref_layers.h) on the same bf16/fp16-rounded inputs; and their
 * naive counterpart (cg_upconv_reference, the search's check where cuDNN has nothing) against
 * the same reference.
 *
 * Cases: every channel count the kernels take (16..128 in, 16..64 out), pixel counts that are
 * not a multiple of a tile, the forward's bias and ReLU, the input gradient's accumulation,
 * the weight gradient with and without the bias gradient and split into column parts (128 ->
 * 64), strided x, y, dx and dy with NaN in the unused channels (a half of a concat buffer:
 * must not leak in, and the output's other channels must keep their bytes), weights (and dw)
 * not 16-byte aligned, few blocks walking many tiles (CG_UPCONV_MAX_BLOCKS), fp16 and bf16,
 * and the UNet's 256x256 and 128x128 upconvs at batch 2. Outputs are poisoned (NaN) before
 * every run but the accumulating ones; two runs must agree bitwise. Shapes the kernels do not
 * handle must be refused. CG_TEST_SEED=<n> repeats a run's inputs; CG_TEST_UPCONV_QUICK=1
 * leaves out the UNet layers and the naive weight gradient (for compute-sanitizer). Exits 77
 * without a usable GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"    /* CG_CHECK_CUDA, cg_dtype_t */
#include "log.h"           /* cg_malloc */
#include "ref_layers.h"    /* the double-precision reference */
#include "testutil.h"      /* cg_test_close_d, bf16/fp16 host conversions */
#include "testutil_cuda.h" /* cg_test_gpu_begin: exit 77 without a GPU */
#include "upconv.h"        /* the kernels under test */

static cudaStream_t S;
static uint64_t g_seed, g_ctr;

typedef struct {
  const char *name;
  cg_dtype_t dt;
  int op; /* cg_upconv_op_t */
  int n, h, w, cin, cout;
  int bias, relu, accum, db;
  int ldx, ldy; /* 0: dense */
  int blocks;   /* > 0: at most this many blocks (CG_UPCONV_MAX_BLOCKS): many tiles each */
  int wmis;     /* w (or dw) 2 bytes past a 16-byte boundary */
} tcase_t;

/* cg_test_act16 with this run's next seed. */
static uint16_t *make_act(cg_dtype_t dt, size_t npix, int c, int ld, float lo, float hi,
                          float **dense) {
  return cg_test_act16(dt, npix, c, ld, lo, hi, g_seed * 1000003u + g_ctr++, dense);
}
/* A dense double copy of n floats (the views of ref_layers.h are double). */
static double *dbl(const float *f, size_t n) {
  double *d = cg_malloc(n * sizeof(double) + 8, "double copy");
  for (size_t i = 0; i < n; i++) d[i] = f[i];
  return d;
}

/* The operation of upconv.h in double (ref_layers.h), dense: y (4m x cout), dx (m x cin;
 * old: the old dx) or dw (cin x 4 cout) and db (cout). */
static void reference(const tcase_t *t, const float *x, const float *dy, const float *w,
                      const float *bias, const float *old, double *out, double *db) {
  const size_t m = (size_t)t->n * t->h * t->w, wl = (size_t)t->cin * 4 * t->cout;
  double *xd = dbl(x, m * t->cin), *dyd = dbl(dy, 4 * m * t->cout), *wd = dbl(w, wl);
  double bd[64] = {0};
  cg_ref_view_t vx = {xd, t->n, t->h, t->w, t->cin, t->cin};
  cg_ref_view_t vdy = {dyd, t->n, 2 * t->h, 2 * t->w, t->cout, t->cout};
  if (t->op == CG_UPCONV_FWD) {
    for (int co = 0; co < t->cout && t->bias; co++) bd[co] = bias[co];
    cg_ref_view_t vy = {out, t->n, 2 * t->h, 2 * t->w, t->cout, t->cout};
    cg_ref_upconv_fwd(&vx, wd, bd, &vy);
    for (size_t i = 0; i < 4 * m * t->cout && t->relu; i++)
      if (!(out[i] > 0)) out[i] = 0;
  } else if (t->op == CG_UPCONV_DGRAD) {
    cg_ref_view_t vdx = {out, t->n, t->h, t->w, t->cin, t->cin};
    cg_ref_upconv_bwd_data(&vdy, wd, &vdx);
    for (size_t i = 0; i < m * t->cin && t->accum; i++) out[i] += old[i];
  } else {
    cg_ref_upconv_bwd_filter(&vx, &vdy, out, db);
  }
  free(xd);
  free(dyd);
  free(wd);
}

/* The output's geometry: pixels, channels, stride (dw: one "pixel" of cin 4 cout). */
static void out_geom(const tcase_t *t, size_t *npix, int *c, int *ld) {
  const size_t m = (size_t)t->n * t->h * t->w;
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  *npix = 1, *c = *ld = t->cin * 4 * t->cout; /* the weight gradient */
  if (t->op == CG_UPCONV_FWD) *npix = 4 * m, *c = t->cout, *ld = ldy;
  if (t->op == CG_UPCONV_DGRAD) *npix = m, *c = t->cin, *ld = ldx;
}

/* The device output's channels [0, c) as double into gd; counts changed bytes outside them
 * against before (the uploaded values). */
static size_t read_out(const tcase_t *t, const uint16_t *got, const uint16_t *before,
                       double *gd) {
  size_t npix, outside = 0;
  int c, ld;
  out_geom(t, &npix, &c, &ld);
  for (size_t q = 0; q < npix; q++)
    for (int k = 0; k < ld; k++) {
      if (k >= c) {
        outside += got[q * ld + k] != before[q * ld + k];
        continue;
      }
      gd[q * c + k] = cg_test_from_dt16(t->dt, got[q * ld + k]);
    }
  return outside;
}

typedef struct {
  void *a, *b, *out, *outbuf, *work;
  float *bias, *db;
  size_t outlen, work_bytes;
} bufs_t;

/* One run of the kernel (naive: the reference kernel) into d->out (and d->db), from the
 * uploaded old output (accum) or the poisoned one; the output's bytes into got. */
static void run_once(const tcase_t *t, const cg_upconv_shape_t *sh, const bufs_t *d,
                     const uint16_t *old, int naive, uint16_t *got, float *db) {
  size_t npix;
  int c, ld;
  out_geom(t, &npix, &c, &ld);
  uint16_t *p = cg_malloc(d->outlen + 2, "poisoned output");
  memcpy(p, old, d->outlen);
  if (!t->accum)
    for (size_t q = 0; q < npix; q++)
      for (int k = 0; k < c; k++) p[q * ld + k] = 0xFFFF;
  cg_test_hput(d->out, p, d->outlen, S);
  free(p);
  if (d->db) CG_CHECK_CUDA(cudaMemsetAsync(d->db, 0xFF, t->cout * sizeof(float), S));
  const cudaError_t rc =
      naive ? cg_upconv_reference(sh, d->a, d->b, d->bias, d->out, d->db, S)
            : cg_upconv_run(sh, d->a, d->b, d->bias, d->out, d->db, d->work, d->work_bytes, S);
  CG_TEST_CHECK(rc == cudaSuccess, "%s: %s: %s", t->name, naive ? "reference" : "run",
                cudaGetErrorString(rc));
  cg_test_hget(got, d->out, d->outlen, S);
  if (d->db) cg_test_hget(db, d->db, t->cout * sizeof(float), S);
}

static void check_out(const tcase_t *t, const char *name, const uint16_t *got,
                      const uint16_t *old, const float *db, const double *ref,
                      const double *refdb, double *gd) {
  size_t npix;
  int c, ld;
  out_geom(t, &npix, &c, &ld);
  const size_t outside = read_out(t, got, old, gd);
  CG_TEST_CHECK(outside == 0, "%s: %zu elements outside the output's channels changed", name,
                outside);
  double mx = 0;
  for (size_t i = 0; i < npix * c; i++)
    if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
  /* fp32 sums, one rounding to bf16 (2^-8) or fp16 (2^-11) */
  const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
  const double atol = (t->dt == CG_DT_BF16 ? 4e-3 : 1e-3) * (mx > 1 ? mx : 1);
  cg_test_close_d(name, gd, ref, npix * c, atol, rtol);
  if (t->op == CG_UPCONV_WGRAD && t->db) {
    double dbd[64], dmx = 0;
    for (int co = 0; co < t->cout; co++) {
      dbd[co] = db[co];
      if (fabs(refdb[co]) > dmx) dmx = fabs(refdb[co]);
    }
    char dname[240];
    snprintf(dname, sizeof dname, "%s (bias gradient)", name);
    /* fp32 sums of 4m bf16 values, not rounded */
    const double terms = 4.0 * t->n * t->h * t->w;
    cg_test_close_d(dname, dbd, refdb, t->cout, 1e-6 * terms + 1e-4 * dmx, 1e-4);
  }
}

static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  const cg_upconv_shape_t sh = {t->dt,   t->op,   t->n,     t->h, t->w, t->cin,
                                t->cout, t->bias, t->relu, t->accum, ldx, ldy};
  static const char *const opn[3] = {"fwd", "dgrad", "wgrad"};
  char desc[256], name[200];
  cg_upconv_describe(&sh, desc, sizeof desc);
  snprintf(name, sizeof name, "%s %s %s n%d %dx%d %d->%d ldx %d ldy %d%s%s%s%s blocks %d%s",
           t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16", opn[t->op], t->n, t->h, t->w, t->cin,
           t->cout, ldx, ldy, t->bias ? " bias" : "", t->relu ? " relu" : "",
           t->accum ? " accum" : "", t->db ? " db" : "", t->blocks, t->wmis ? " w+2" : "");
  printf("RUN %s\n  %s\n", name, desc);
  if (!cg_upconv_supported(&sh)) {
    CG_TEST_CHECK(0, "%s: not supported", name);
    return;
  }
  const size_t m = (size_t)t->n * t->h * t->w, wl = (size_t)t->cin * 4 * t->cout;
  float *xf, *dyf, *wf, *oldf;
  uint16_t *xh = make_act(t->dt, m, t->cin, ldx, -1.0f, 1.0f, &xf);
  uint16_t *dyh = make_act(t->dt, 4 * m, t->cout, ldy, -1.0f, 1.0f, &dyf);
  uint16_t *wh = make_act(t->dt, wl, 1, 1, -0.2f, 0.2f, &wf);
  size_t npix;
  int c, ld;
  out_geom(t, &npix, &c, &ld);
  uint16_t *oldh = make_act(t->dt, npix, c, ld, -1.0f, 1.0f, &oldf); /* the old output */
  float *bias = cg_malloc(t->cout * sizeof(float), "bias");
  cg_test_fill(bias, t->cout, -0.5f, 0.5f, g_seed * 1000003u + g_ctr++);
  const int w = t->op == CG_UPCONV_WGRAD;
  const size_t xlen = m * ldx * 2, dylen = 4 * m * ldy * 2;
  bufs_t d = {0};
  void *d_x = cg_test_dnew(xlen, S), *d_dy = cg_test_dnew(dylen, S);
  void *d_wbuf = cg_test_dnew(wl * 2 + 2, S); /* w, or dw for the weight gradient */
  void *d_w = (char *)d_wbuf + (t->wmis ? 2 : 0);
  d.outlen = npix * ld * 2;
  d.outbuf = t->op == CG_UPCONV_FWD ? cg_test_dnew(d.outlen, S)
             : t->op == CG_UPCONV_DGRAD ? cg_test_dnew(d.outlen, S) : NULL;
  d.a = t->op == CG_UPCONV_DGRAD ? d_dy : d_x;
  d.b = w ? d_dy : d_w;
  d.out = w ? d_w : d.outbuf;
  const size_t work = cg_upconv_work_bytes(&sh);
  d.work = w ? cg_test_dnew(work, S) : NULL;
  d.work_bytes = w ? work : 0;
  d.bias = t->bias ? cg_test_dnew(t->cout * sizeof(float), S) : NULL;
  d.db = w && t->db ? cg_test_dnew(t->cout * sizeof(float), S) : NULL;
  cg_test_hput(d_x, xh, xlen, S);
  cg_test_hput(d_dy, dyh, dylen, S);
  if (!w) cg_test_hput(d_w, wh, wl * 2, S);
  if (d.bias) cg_test_hput(d.bias, bias, t->cout * sizeof(float), S);
  char blocks[16];
  snprintf(blocks, sizeof blocks, "%d", t->blocks);
  if (t->blocks > 0) setenv("CG_UPCONV_MAX_BLOCKS", blocks, 1);
  const size_t rn = w ? wl : npix * c;
  double *ref = cg_malloc(rn * sizeof(double), "reference"), refdb[64];
  double *gd = cg_malloc(rn * sizeof(double), "output as double");
  reference(t, xf, dyf, wf, bias, oldf, ref, refdb);
  uint16_t *got[2];
  float db[2][64];
  for (int k = 0; k < 2; k++) {
    got[k] = cg_malloc(d.outlen + 2, "output");
    run_once(t, &sh, &d, oldh, 0, got[k], db[k]);
  }
  unsetenv("CG_UPCONV_MAX_BLOCKS");
  check_out(t, name, got[0], oldh, db[0], ref, refdb, gd);
  CG_TEST_CHECK(memcmp(got[0], got[1], d.outlen) == 0, "%s: the output differs between two runs",
                name);
  CG_TEST_CHECK(!d.db || memcmp(db[0], db[1], t->cout * sizeof(float)) == 0,
                "%s: the bias gradient differs between two runs", name);
  cg_test_guard_check(name, d.out, d.outlen, S);
  if (d.work) cg_test_guard_check(name, d.work, work, S);
  /* the naive kernel (the search's reference where cuDNN has nothing) against the CPU too;
   * not its weight gradient in the quick mode (one block an output: slow under racecheck) */
  const char *quick = getenv("CG_TEST_UPCONV_QUICK");
  if (!(w && quick && quick[0] == '1')) {
    run_once(t, &sh, &d, oldh, 1, got[1], db[1]);
    char rname[240];
    snprintf(rname, sizeof rname, "%s (naive reference kernel)", name);
    check_out(t, rname, got[1], oldh, db[1], ref, refdb, gd);
  }
  void *dfree[] = {d_x, d_dy, d_wbuf, d.outbuf, d.work, d.bias, d.db};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) cg_test_dfree(dfree[i], S);
  void *hfree[] = {xh, dyh, wh, oldh, xf, dyf, wf, oldf, bias, got[0], got[1], ref, gd};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

static void test_refused(void) {
  printf("RUN refused shapes\n");
  const cg_upconv_shape_t ok = {CG_DT_BF16, CG_UPCONV_FWD, 2, 4, 8, 64, 32, 1, 0, 0, 64, 32};
  CG_TEST_CHECK(cg_upconv_supported(&ok) == 1, "the base shape must be supported");
  cg_upconv_shape_t bad[16];
  const char *why[16];
  int nb = 0;
#define BAD(WHY, FIELD, VAL)                                                                   \
  do {                                                                                         \
    bad[nb] = ok;                                                                              \
    bad[nb].FIELD = VAL;                                                                       \
    why[nb++] = WHY;                                                                           \
  } while (0)
  BAD("fp32", dt, CG_DT_F32);
  BAD("cin 8", cin, 8);
  BAD("cin 48", cin, 48);
  BAD("cin 256", cin, 256);
  BAD("cout 8", cout, 8);
  BAD("cout 128", cout, 128);
  BAD("ldx 60 < cin", ldx, 60);
  BAD("ldx 68", ldx, 68);
  BAD("ldy 36", ldy, 36);
  BAD("n 0", n, 0);
  BAD("op 3", op, 3);
#undef BAD
  for (int i = 0; i < nb; i++) {
    CG_TEST_CHECK(cg_upconv_supported(&bad[i]) == 0, "%s must be refused", why[i]);
    CG_TEST_CHECK(cg_upconv_run(&bad[i], (void *)256, (void *)256, (float *)256, (void *)256,
                                NULL, (void *)256, 1 << 20, S) == cudaErrorInvalidValue,
                  "%s: run must return cudaErrorInvalidValue", why[i]);
  }
  cg_upconv_shape_t w16 = ok; /* 16 -> 16: fewer fragments than warps */
  w16.op = CG_UPCONV_WGRAD;
  w16.cin = w16.cout = w16.ldx = w16.ldy = 16;
  CG_TEST_CHECK(cg_upconv_supported(&w16) == 0, "a 16 -> 16 weight gradient must be refused");
  w16.op = CG_UPCONV_FWD;
  CG_TEST_CHECK(cg_upconv_supported(&w16) == 1, "a 16 -> 16 forward must be supported");
  CG_TEST_CHECK(cg_upconv_run(&ok, (void *)264, (void *)256, (float *)256, (void *)256, NULL,
                              NULL, 0, S) == cudaErrorInvalidValue,
                "a misaligned x must be refused");
  CG_TEST_CHECK(cg_upconv_run(&ok, (void *)256, (void *)256, NULL, (void *)256, NULL, NULL, 0,
                              S) == cudaErrorInvalidValue,
                "bias asked for without a pointer must be refused");
  cg_upconv_shape_t wg = ok;
  wg.op = CG_UPCONV_WGRAD;
  CG_TEST_CHECK(cg_upconv_work_bytes(&wg) > 0, "the weight gradient needs work memory");
  CG_TEST_CHECK(cg_upconv_run(&wg, (void *)256, (void *)256, NULL, (void *)256, NULL, NULL, 0,
                              S) == cudaErrorInvalidValue,
                "a weight gradient without work memory must be refused");
  CG_TEST_CHECK(cg_upconv_run(&wg, (void *)256, (void *)256, NULL, (void *)256, NULL, (void *)256,
                              cg_upconv_work_bytes(&wg) - 4, S) == cudaErrorInvalidValue,
                "work memory below cg_upconv_work_bytes must be refused");
  printf("PASS refused shapes\n");
}

int main(void) {
  const int rc = cg_test_gpu_begin("test_gpu_upconv", &S, &g_seed);
  if (rc) return rc;
  test_refused();
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  enum { F = CG_UPCONV_FWD, D = CG_UPCONV_DGRAD, W = CG_UPCONV_WGRAD };
  const tcase_t cases[] = {
      /* name, dt, op, n, h, w, cin, cout, bias, relu, accum, db, ldx, ldy, blocks, wmis */
      {"plain", B, F, 2, 3, 5, 32, 16, 0, 0, 0, 0, 0, 0, 0, 0},
      {"bias relu", B, F, 2, 5, 7, 64, 32, 1, 1, 0, 0, 0, 0, 0, 0},
      {"into a half, weights off 16", B, F, 3, 4, 6, 64, 32, 1, 0, 0, 0, 0, 64, 0, 1},
      {"strided x", H, F, 2, 3, 9, 16, 64, 1, 0, 0, 0, 48, 0, 0, 0},
      {"wide", B, F, 1, 6, 6, 128, 64, 1, 1, 0, 0, 0, 128, 0, 0},
      {"few blocks", H, F, 4, 16, 16, 32, 32, 1, 0, 0, 0, 0, 64, 3, 0},
      {"dgrad", B, D, 2, 3, 5, 32, 16, 0, 0, 0, 0, 0, 0, 0, 0},
      {"dgrad from a half", B, D, 2, 5, 7, 64, 32, 0, 0, 0, 0, 0, 64, 0, 1},
      {"dgrad accumulated into a half", H, D, 3, 4, 6, 32, 64, 0, 0, 1, 0, 64, 0, 0, 0},
      {"dgrad wide", B, D, 1, 6, 6, 128, 64, 0, 0, 0, 0, 0, 128, 0, 0},
      {"dgrad few blocks", B, D, 4, 16, 16, 64, 16, 0, 0, 1, 0, 0, 0, 3, 0},
      {"wgrad", B, W, 2, 3, 5, 32, 16, 0, 0, 0, 1, 0, 0, 0, 0},
      {"wgrad no db, dw off 16", B, W, 2, 5, 7, 64, 32, 0, 0, 0, 0, 0, 0, 0, 1},
      {"wgrad strided", H, W, 3, 4, 6, 64, 32, 0, 0, 0, 1, 128, 64, 0, 0},
      {"wgrad 16->32", B, W, 2, 4, 4, 16, 32, 0, 0, 0, 1, 0, 0, 0, 0},
      {"wgrad parts", B, W, 1, 6, 6, 128, 64, 0, 0, 0, 1, 0, 128, 0, 0},
      {"wgrad few blocks", B, W, 4, 16, 16, 64, 32, 0, 0, 0, 1, 0, 64, 3, 0},
      /* the UNet's upconvs into the 256x256 and 128x128 concats (batch 2), in place */
      {"unet dec0.up", B, F, 2, 128, 128, 64, 32, 1, 0, 0, 0, 0, 64, 0, 0},
      {"unet dec0.up dx", B, D, 2, 128, 128, 64, 32, 0, 0, 0, 0, 0, 64, 0, 0},
      {"unet dec0.up dW", B, W, 2, 128, 128, 64, 32, 0, 0, 0, 1, 0, 64, 0, 0},
      {"unet dec1.up", H, F, 2, 64, 64, 128, 64, 1, 0, 0, 0, 0, 128, 0, 0},
      {"unet dec1.up dx", B, D, 2, 64, 64, 128, 64, 0, 0, 0, 0, 0, 128, 0, 0},
      {"unet dec1.up dW", B, W, 2, 64, 64, 128, 64, 0, 0, 0, 1, 0, 128, 0, 0},
  };
  /* CG_TEST_UPCONV_QUICK=1 (compute-sanitizer): the small cases only */
  const char *quick = getenv("CG_TEST_UPCONV_QUICK");
  const int q = quick && quick[0] == '1';
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!q || strncmp(cases[i].name, "unet", 4) != 0) run_case(&cases[i]);
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  return cg_test_done("test_gpu_upconv");
}
