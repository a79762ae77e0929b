/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

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
