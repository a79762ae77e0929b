/* test_gpu_fprop.c: the tensor-core 3x3 convolution kernel (cuda/fprop.h), forward and input
 * gradient, against a double-precision CPU reference computed from the same bf16/fp16-rounded
 * inputs; and its naive counterpart (cg_fprop_reference, the search's check where cuDNN has
 * nothing) against the same reference.
 *
 * Cases: every channel count the kernel takes (8..128 in, 16/32/64 out), widths 32..256, one
 * row per image (h = 1) and odd heights (runs crossing images), each epilogue step alone and
 * together (bias, ReLU, ReLU mask, accumulation), strided x, y and mask with NaN in the unused
 * channels (a half of a concat buffer: must not leak in, and y's other channels must keep
 * their bytes), weights not 16-byte aligned, few blocks with many rows each (CG_FPROP_MAX_RUNS),
 * fp16 and bf16, and the UNet's 256x256 layers at batch 2; 32 and 64 pixels a warp. y is
 * poisoned (NaN) before every run but the accumulating ones; two runs must agree bitwise (with
 * 64 pixels a warp, the second with 32). Shapes the kernel
 * does not handle must be refused. CG_TEST_SEED=<n> repeats a run's inputs;
 * CG_TEST_FPROP_QUICK=1 leaves out the UNet layers (for compute-sanitizer). Exits 77 without a
 * usable GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"    /* CG_CHECK_CUDA, cg_dtype_t */
#include "fprop.h"         /* the kernel under test */
#include "log.h"           /* cg_malloc */
#include "ref_layers.h"    /* cg_ref_fprop */
#include "testutil.h"      /* cg_test_close_d, bf16/fp16 host conversions */
#include "testutil_cuda.h" /* cg_test_gpu_begin: exit 77 without a GPU */

static cudaStream_t S;
static uint64_t g_seed, g_ctr;

typedef struct {
  const char *name;
  cg_dtype_t dt;
  int n, h, w, cin, cout, dgrad;
  int bias, relu, mask, accum;
  int ldx, ldy, ldm; /* 0: dense */
  int runs;          /* > 0: at most this many blocks (CG_FPROP_MAX_RUNS): many rows each */
  int wmis;          /* the weights 2 bytes past a 16-byte boundary */
  int mt;            /* 4: 64 pixels a warp (the second run then 32: the same bits) */
} tcase_t;


/* cg_test_act16 with this run's next seed. */
static uint16_t *make_act(cg_dtype_t dt, size_t npix, int c, int ld, float lo, float hi,
                          float **dense) {
  return cg_test_act16(dt, npix, c, ld, lo, hi, g_seed * 1000003u + g_ctr++, dense);
}
/* y (npix x cout, double) from x, w, bias, m and the old y, in the order of fprop.h. */
static void reference(const tcase_t *t, const float *x, const float *w, const float *bias,
                      const float *m, const float *old, double *y) {
  const cg_ref_fprop_t r = {t->n,    t->h,    t->w,    t->cin,  t->cout,
                            t->dgrad, t->bias, t->relu, t->mask, t->accum};
  cg_ref_fprop(&r, x, w, bias, m, old, y);
}

static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  const int ldm = t->ldm ? t->ldm : t->cout;
  const cg_fprop_shape_t sh = {t->dt,   t->n,    t->h,    t->w,     t->cin, t->cout, t->dgrad,
                               t->bias, t->relu, t->mask, t->accum, ldx,    ldy,     ldm, t->mt};
  char desc[256], name[200];
  cg_fprop_describe(&sh, desc, sizeof desc);
  snprintf(name, sizeof name, "%s %s n%d %dx%d %d->%d%s ldx %d ldy %d%s%s%s%s runs %d%s%s",
           t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16", t->n, t->h, t->w, t->cin, t->cout,
           t->dgrad ? " dgrad" : "", ldx, ldy, t->bias ? " bias" : "", t->relu ? " relu" : "",
           t->mask ? " mask" : "", t->accum ? " accum" : "", t->runs, t->wmis ? " w+2" : "",
           t->mt == 4 ? " mt4" : "");
  printf("RUN %s\n  %s\n", name, desc);
  if (!cg_fprop_supported(&sh)) {
    CG_TEST_CHECK(0, "%s: not supported", name);
    return;
  }
  const size_t npix = (size_t)t->n * t->h * t->w, wl = (size_t)t->cout * 9 * t->cin;
  float *xf, *wf, *yf, *mf = NULL;
  uint16_t *xh = make_act(t->dt, npix, t->cin, ldx, -1.0f, 1.0f, &xf);
  uint16_t *wh = make_act(t->dt, wl, 1, 1, -0.2f, 0.2f, &wf); /* [rows][3][3][cols], dense */
  uint16_t *yh = make_act(t->dt, npix, t->cout, ldy, -1.0f, 1.0f, &yf); /* old y (accum) */
  uint16_t *mh = t->mask ? make_act(t->dt, npix, t->cout, ldm, -1.0f, 1.0f, &mf) : NULL;
  float *bias = cg_malloc(t->cout * sizeof(float), "bias");
  cg_test_fill(bias, t->cout, -0.5f, 0.5f, g_seed * 1000003u + g_ctr++);
  const size_t xlen = npix * ldx * 2, ylen = npix * ldy * 2, mlen = npix * ldm * 2;
  void *d_x = cg_test_dnew(xlen, S), *d_wbuf = cg_test_dnew(wl * 2 + 2, S);
  void *d_w = (char *)d_wbuf + (t->wmis ? 2 : 0), *d_y = cg_test_dnew(ylen, S);
  void *d_m = t->mask ? cg_test_dnew(mlen, S) : NULL;
  float *d_b = cg_test_dnew(t->cout * sizeof(float), S);
  cg_test_hput(d_x, xh, xlen, S);
  cg_test_hput(d_w, wh, wl * 2, S);
  if (d_m) cg_test_hput(d_m, mh, mlen, S);
  cg_test_hput(d_b, bias, t->cout * sizeof(float), S);
  char runs[16];
  snprintf(runs, sizeof runs, "%d", t->runs);
  if (t->runs > 0) setenv("CG_FPROP_MAX_RUNS", runs, 1);
  uint16_t *got[2];
  for (int k = 0; k < 2; k++) {
    got[k] = cg_malloc(ylen + 2, "y");
    if (t->accum) {
      cg_test_hput(d_y, yh, ylen, S);
    } else { /* the view poisoned, the other channels as uploaded (checked below) */
      uint16_t *p = cg_malloc(ylen + 2, "poisoned y");
      memcpy(p, yh, ylen);
      for (size_t q = 0; q < npix; q++)
        for (int c = 0; c < t->cout; c++) p[q * ldy + c] = 0xFFFF;
      cg_test_hput(d_y, p, ylen, S);
      free(p);
    }
    cg_fprop_shape_t sk = sh; /* with 64 pixels a warp, the second run with 32 */
    if (k == 1) sk.mt = 0;
    const cudaError_t rc = cg_fprop_run(&sk, d_x, d_w, t->bias ? d_b : NULL, d_m, d_y, S);
    CG_TEST_CHECK(rc == cudaSuccess, "%s: cg_fprop_run: %s", name, cudaGetErrorString(rc));
    cg_test_hget(got[k], d_y, ylen, S);
  }
  unsetenv("CG_FPROP_MAX_RUNS");
  cg_test_guard_check(name, d_y, ylen, S);
  double *ref = cg_malloc(npix * t->cout * sizeof(double), "reference");
  double *gd = cg_malloc(npix * t->cout * sizeof(double), "y as double");
  reference(t, xf, wf, bias, mf, yf, ref);
  double mx = 0;
  size_t outside = 0;
  for (size_t q = 0; q < npix; q++) {
    for (int c = 0; c < ldy; c++) {
      const uint16_t v = got[0][q * ldy + c];
      if (c >= t->cout) {
        outside += v != yh[q * ldy + c];
        continue;
      }
      gd[q * t->cout + c] = cg_test_from_dt16(t->dt, v);
      if (fabs(ref[q * t->cout + c]) > mx) mx = fabs(ref[q * t->cout + c]);
    }
  }
  CG_TEST_CHECK(outside == 0, "%s: %zu elements outside y's channels changed", name, outside);
  /* fp32 sums of up to 9 x 128 products, one rounding to bf16 (2^-8) or fp16 (2^-11) */
  const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
  const double atol = (t->dt == CG_DT_BF16 ? 4e-3 : 1e-3) * (mx > 1 ? mx : 1);
  cg_test_close_d(name, gd, ref, npix * t->cout, atol, rtol);
  CG_TEST_CHECK(memcmp(got[0], got[1], ylen) == 0, "%s: y differs between two runs%s", name,
                t->mt == 4 ? " (64 and 32 pixels a warp)" : "");
  /* the naive kernel (the search's reference where cuDNN has nothing) against the CPU too */
  cg_test_hput(d_y, yh, ylen, S);
  const cudaError_t rr = cg_fprop_reference(&sh, d_x, d_w, t->bias ? d_b : NULL, d_m, d_y, S);
  CG_TEST_CHECK(rr == cudaSuccess, "%s: cg_fprop_reference: %s", name, cudaGetErrorString(rr));
  cg_test_hget(got[1], d_y, ylen, S);
  for (size_t q = 0; q < npix; q++)
    for (int c = 0; c < t->cout; c++)
      gd[q * t->cout + c] = cg_test_from_dt16(t->dt, got[1][q * ldy + c]);
  char rname[240];
  snprintf(rname, sizeof rname, "%s (naive reference kernel)", name);
  cg_test_close_d(rname, gd, ref, npix * t->cout, atol, rtol);
  void *dfree[] = {d_x, d_wbuf, d_y, d_m, d_b};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) cg_test_dfree(dfree[i], S);
  void *hfree[] = {xh, wh, yh, mh, xf, wf, yf, mf, bias, got[0], got[1], ref, gd};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

static void test_refused(void) {
  printf("RUN refused shapes\n");
  const cg_fprop_shape_t ok = {CG_DT_BF16, 2, 4, 32, 32, 32, 0, 1, 1, 0, 0, 32, 32, 32, 0};
  CG_TEST_CHECK(cg_fprop_supported(&ok) == 1, "the base shape must be supported");
  cg_fprop_shape_t bad[16];
  const char *why[16];
  int nb = 0;
#define BAD(WHY, FIELD, VAL)                                                                   \
  do {                                                                                         \
    bad[nb] = ok;                                                                              \
    bad[nb].FIELD = VAL;                                                                       \
    why[nb++] = WHY;                                                                           \
  } while (0)
  BAD("fp32", dt, CG_DT_F32);
  BAD("w 48", w, 48);
  BAD("w 512", w, 512);
  BAD("w 16", w, 16);
  BAD("cin 24", cin, 24);
  BAD("cin 48", cin, 48);
  BAD("cin 256", cin, 256);
  BAD("cout 48", cout, 48);
  BAD("cout 128", cout, 128);
  BAD("ldx 36", ldx, 36);
  BAD("ldy 16 < cout", ldy, 16);
  BAD("n 0", n, 0);
  BAD("relu 2", relu, 2);
  BAD("mt 3", mt, 3);
  BAD("mt 4 with w 32", mt, 4);
#undef BAD
  for (int i = 0; i < nb; i++) {
    CG_TEST_CHECK(cg_fprop_supported(&bad[i]) == 0, "%s must be refused", why[i]);
    CG_TEST_CHECK(cg_fprop_run(&bad[i], (void *)256, (void *)256, (float *)256, NULL, (void *)256,
                               S) == cudaErrorInvalidValue,
                  "%s: run must return cudaErrorInvalidValue", why[i]);
  }
  cg_fprop_shape_t d8 = ok; /* 8 input channels: the forward only */
  d8.cin = d8.ldx = 8;
  CG_TEST_CHECK(cg_fprop_supported(&d8) == 1, "cin 8 forward must be supported");
  d8.dgrad = 1;
  d8.bias = d8.relu = 0;
  CG_TEST_CHECK(cg_fprop_supported(&d8) == 0, "cin 8 dgrad must be refused");
  cg_fprop_shape_t m = ok;
  m.mask = 1;
  m.ldm = 20;
  CG_TEST_CHECK(cg_fprop_supported(&m) == 0, "a mask stride below cout must be refused");
  cg_fprop_shape_t m4 = ok; /* 64 pixels a warp: at most 32 channels out */
  m4.w = 64;
  m4.mt = 4;
  CG_TEST_CHECK(cg_fprop_supported(&m4) == 1, "mt 4 at w 64 must be supported");
  m4.cout = m4.ldy = 64;
  CG_TEST_CHECK(cg_fprop_supported(&m4) == 0, "mt 4 with 64 channels out must be refused");
  m4.cout = m4.ldy = 32;
  m4.cin = m4.ldx = 128;
  CG_TEST_CHECK(cg_fprop_supported(&m4) == 0, "mt 4 with 128 channels in must be refused");
  CG_TEST_CHECK(cg_fprop_run(&ok, (void *)264, (void *)256, (float *)256, NULL, (void *)256, S) ==
                    cudaErrorInvalidValue,
                "a misaligned x must be refused");
  CG_TEST_CHECK(cg_fprop_run(&ok, (void *)256, (void *)256, NULL, NULL, (void *)256, S) ==
                    cudaErrorInvalidValue,
                "bias asked for without a pointer must be refused");
  printf("PASS refused shapes\n");
}

int main(void) {
  const int rc = cg_test_gpu_begin("test_gpu_fprop", &S, &g_seed);
  if (rc) return rc;
  test_refused();
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  const tcase_t cases[] = {
      /* name, dt, n, h, w, cin, cout, dgrad, bias, relu, mask, accum, ldx, ldy, ldm, runs,
       * wmis, mt */
      /* 3 or 5 blocks: each computes many rows across images (the ring of rows wraps) */
      {"many rows", B, 3, 9, 32, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0, 3, 0, 0},
      {"many rows dgrad masked", B, 2, 11, 64, 32, 16, 1, 0, 0, 1, 0, 0, 0, 0, 5, 0, 0},
      {"many rows, strided, weights off 16", H, 4, 5, 32, 16, 32, 0, 1, 0, 0, 1, 32, 64, 0, 3, 1,
       0},
      {"weights off 16 dgrad", B, 2, 3, 32, 64, 32, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
      /* 8 input channels (the first layer: two taps per k-step) */
      {"first layer", B, 2, 5, 64, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"first layer many rows, weights off 16", H, 3, 7, 32, 8, 16, 0, 1, 0, 0, 0, 0, 0, 0, 3, 1,
       0},
      {"first layer strided, masked, accumulated", B, 2, 4, 32, 8, 32, 0, 1, 1, 1, 1, 24, 64, 40,
       0, 0, 0},
      {"plain", B, 2, 5, 32, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"bias relu", B, 2, 7, 64, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"one row", B, 3, 1, 32, 16, 16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"concat in, half out", B, 2, 6, 64, 64, 32, 0, 1, 1, 0, 0, 0, 64, 0, 0, 0, 0},
      {"half in", B, 2, 4, 32, 32, 64, 0, 1, 1, 0, 0, 64, 0, 0, 0, 0, 0},
      {"wide channels", B, 1, 4, 32, 128, 64, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"dgrad", B, 2, 5, 32, 32, 32, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"dgrad 32->64", B, 2, 3, 64, 32, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"dgrad masked", B, 2, 5, 32, 64, 32, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
      {"dgrad into a half", B, 2, 5, 32, 32, 32, 1, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0},
      {"dgrad accumulated", B, 3, 2, 32, 32, 16, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
      {"dgrad 128->32 masked, strided mask", B, 1, 3, 32, 128, 32, 1, 0, 0, 1, 0, 0, 0, 64, 0, 0,
       0},
      {"everything", B, 2, 3, 96, 64, 32, 0, 1, 1, 1, 1, 128, 64, 40, 0, 0, 0},
      {"fp16 bias relu", H, 2, 5, 64, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"fp16 dgrad masked", H, 2, 4, 32, 32, 64, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
      {"fp16 wide", H, 1, 3, 256, 16, 64, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0},
      /* the UNet's 256x256 layers (batch 2): enc0.conv2 / dec0.conv2, dec0.conv1 into the
       * concat, and the dgrad of dec0.conv1 (32 -> 64, into the concat's gradient) */
      {"unet enc0.conv1", B, 2, 256, 256, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"unet enc0.conv2", B, 2, 256, 256, 32, 32, 0, 1, 1, 0, 0, 0, 64, 0, 0, 0, 0},
      {"unet dec0.conv1", B, 2, 256, 256, 64, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      {"unet dec0.conv1 dx", B, 2, 256, 256, 32, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"unet dec0.conv2 dx masked", B, 2, 256, 256, 32, 32, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
      {"unet 128x128 64->64", B, 2, 128, 128, 64, 64, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
      /* 64 pixels a warp (mt 4), its second run with 32: the same bits */
      {"many rows", B, 3, 9, 64, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0, 3, 0, 4},
      {"many rows dgrad masked, strided", H, 2, 7, 128, 32, 16, 1, 0, 0, 1, 1, 40, 24, 48, 5, 1, 4},
      {"first layer", B, 2, 5, 64, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 4},
      {"concat in, half out", B, 2, 6, 192, 64, 32, 0, 1, 1, 0, 0, 0, 64, 0, 0, 0, 4},
      {"unet enc0.conv1", B, 2, 256, 256, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 4},
      {"unet enc0.conv2", B, 2, 256, 256, 32, 32, 0, 1, 1, 0, 0, 0, 64, 0, 0, 0, 4},
      {"unet dec0.conv1", B, 2, 256, 256, 64, 32, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 4},
      {"unet dec0.conv2 dx masked", B, 2, 256, 256, 32, 32, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4},
  };
  /* CG_TEST_FPROP_QUICK=1 (compute-sanitizer): the small cases only */
  const char *quick = getenv("CG_TEST_FPROP_QUICK");
  const int q = quick && quick[0] == '1';
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!q || strncmp(cases[i].name, "unet", 4) != 0) run_case(&cases[i]);
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  return cg_test_done("test_gpu_fprop");
}
