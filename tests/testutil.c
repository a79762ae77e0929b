/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "rng.h"

int cg_test_failures = 0;

int cg_test_done(const char *suite) {
  if (cg_test_failures) {
    printf("%s: %d failure(s)\n", suite, cg_test_failures);
    return 1;
  }
  printf("%s: all passed\n", suite);
  return 0;
}

static int close_impl(const char *name, size_t n, double atol, double rtol,
                      double (*get)(const void *, size_t), const void *g, const void *r) {
  size_t worst = 0, bad = 0;
  double worst_excess = -1, max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < n; i++) {
    double a = get(g, i), b = get(r, i);
    double d = fabs(a - b);
    if (!(d == d)) d = INFINITY; /* NaN */
    double tol = atol + rtol * fabs(b);
    double excess = d - tol;
    if (!(excess <= 0)) excess = INFINITY; /* NaN in got or ref fails too */
    if (d > max_abs) max_abs = d;
    if (fabs(b) > max_ref) max_ref = fabs(b);
    if (excess > 0) bad++;
    if (excess > worst_excess || i == 0) {
      worst_excess = excess;
      worst = i;
    }
  }
  double rel = max_ref > 0 ? max_abs / max_ref : max_abs;
  if (bad) {
    cg_test_failures++;
    printf("FAIL %s: %zu of %zu elements outside atol %.1e rtol %.1e; worst [%zu] got %.9g ref %.9g"
           " (max abs err %.3e, rel %.3e)\n",
           name, bad, n, atol, rtol, worst, get(g, worst), get(r, worst), max_abs, rel);
    return 0;
  }
  printf("PASS %s (n %zu, max abs err %.3e, max rel err %.3e)\n", name, n, max_abs, rel);
  return 1;
}

static double getf(const void *p, size_t i) { return ((const float *)p)[i]; }
static double getd(const void *p, size_t i) { return ((const double *)p)[i]; }

int cg_test_close(const char *name, const float *got, const float *ref, size_t n, double atol,
                  double rtol) {
  return close_impl(name, n, atol, rtol, getf, got, ref);
}

int cg_test_close_d(const char *name, const double *got, const double *ref, size_t n, double atol,
                    double rtol) {
  return close_impl(name, n, atol, rtol, getd, got, ref);
}

double cg_test_rel_err(const float *a, const float *b, size_t n) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d == d)) return INFINITY;
    if (d > md) md = d;
    if (fabs(b[i]) > mr) mr = fabs(b[i]);
  }
  return mr > 0 ? md / mr : md;
}

void cg_test_fill(float *p, size_t n, float lo, float hi, uint64_t seed) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 0, 0);
  for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * cg_rng_uniform(&r);
}

uint64_t cg_test_seed(void) {
  const char *env = getenv("CG_TEST_SEED");
  return env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

/* ---- whole-step fixtures ---------------------------------------------------------------- */

float *cg_test_unet(cg_model_t *m, cg_buckets_t *bk, int in_c, int base, int depth, int hw,
                    double bucket_bytes, uint64_t seed) {
  char err[256];
  if (cg_model_build(m, in_c, base, depth, hw, hw, 1, err, sizeof err))
    CG_FATAL("cg_model_build: %s", err);
  cg_buckets_plan(m, bucket_bytes, bk);
  float *p0 = cg_malloc(sizeof(float) * m->nparams, "params");
  cg_model_init_params(m, seed, p0);
  return p0;
}

cg_test_data_t cg_test_data_make(int n, int h, int w, int c, int pad_last, uint64_t seed) {
  const size_t px = (size_t)n * h * w;
  cg_test_data_t d = {n, h, w, c, NULL, NULL, NULL};
  d.x = cg_malloc(sizeof(float) * px * c, "x");
  d.y = cg_malloc(px, "y");
  d.wt = cg_malloc(sizeof(float) * n, "weights");
  cg_test_fill(d.x, px * c, -1.0f, 1.0f, seed);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 1, 0);
  for (size_t i = 0; i < px; i++) d.y[i] = cg_rng_uniform(&r) < 0.4f;
  for (int i = 0; i < n; i++)
    d.wt[i] = !pad_last ? 1.0f / (float)n : i == n - 1 ? 0.0f : 1.0f / (float)(n - 1);
  return d;
}

void cg_test_data_free(cg_test_data_t *d) {
  free(d->x);
  free(d->y);
  free(d->wt);
  d->x = d->wt = NULL;
  d->y = NULL;
}

cg_batch_t cg_test_data_batch(const cg_test_data_t *d) {
  cg_batch_t b = {d->n, d->h, d->w, d->c, d->x, d->y, d->wt, d->n, NULL, NULL, 0};
  return b;
}

/* ---- host-side bf16 / fp16 (round to nearest even, as the device conversions) ---------- */

uint16_t cg_test_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(x >> 16);
}

float cg_test_bf16_to_f32(uint16_t b) {
  uint32_t x = (uint32_t)b << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t cg_test_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
  if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to inf */
  if (ax < 0x38800000u) {                       /* below 2^-14: subnormal or zero */
    float af;
    memcpy(&af, &ax, 4);
    /* units of 2^-24, rounded to nearest even (default rounding mode); 1024 = 2^-14 */
    return sign | (uint16_t)nearbyintf(af * 16777216.0f);
  }
  uint32_t h = ((ax >> 23) - 112u) << 10 | ((ax >> 13) & 0x3ffu); /* rebias 127 -> 15 */
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry may bump the exponent */
  return sign | (uint16_t)h;
}

float cg_test_f16_to_f32(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  float f;
  if (e == 0)
    f = ldexpf((float)m, -24);
  else if (e == 31)
    f = m ? NAN : INFINITY;
  else
    f = ldexpf((float)(m | 0x400), e - 25);
  return (h & 0x8000) ? -f : f;
}

uint16_t cg_test_to_dt16(cg_dtype_t dt, float f) {
  return dt == CG_DT_BF16 ? cg_test_f32_to_bf16(f) : cg_test_f32_to_f16(f);
}

float cg_test_from_dt16(cg_dtype_t dt, uint16_t b) {
  return dt == CG_DT_BF16 ? cg_test_bf16_to_f32(b) : cg_test_f16_to_f32(b);
}

uint16_t cg_test_nan_dt16(cg_dtype_t dt) { return dt == CG_DT_BF16 ? 0x7FC0 : 0x7E00; }

uint16_t *cg_test_act16(cg_dtype_t dt, size_t npix, int c, int ld, float lo, float hi,
                        uint64_t seed, float **dense) {
  const size_t len = npix * ld;
  uint16_t *h = cg_malloc(len * 2 + 2, "test activation");
  float *d = cg_malloc(npix * c * sizeof(float) + 4, "test activation (dense)");
  cg_test_fill(d, npix * c, lo, hi, seed);
  for (size_t i = 0; i < len; i++) h[i] = cg_test_nan_dt16(dt);
  for (size_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      const uint16_t b = cg_test_to_dt16(dt, d[p * c + k]);
      h[p * ld + k] = b;
      d[p * c + k] = cg_test_from_dt16(dt, b);
    }
  *dense = d;
  return h;
}
