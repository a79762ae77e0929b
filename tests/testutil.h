/* testutil.h: shared helpers of the test executables.
 * Comparisons use |a - b| <= atol + rtol * |ref| and print the worst element; a test prints
 * "PASS name" / "FAIL name: ..." lines and returns non-zero from main on any failure. */
#ifndef CG_TESTUTIL_H
#define CG_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#define CG_TEST_SKIP 77

/* Counts failures; cg_test_done() prints the summary and returns the exit code. */
extern int cg_test_failures;
int cg_test_done(const char *suite);

#define CG_TEST_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) {                                                               \
      cg_test_failures++;                                                        \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
      printf(__VA_ARGS__);                                                       \
      printf("\n");                                                              \
    }                                                                            \
  } while (0)

/* Compares got against ref (n floats). Prints "PASS name (max rel err ...)" or a FAIL line with
 * the worst element; NaN in got always fails. Returns 1 on pass. */
int cg_test_close(const char *name, const float *got, const float *ref, size_t n, double atol,
                  double rtol);
int cg_test_close_d(const char *name, const double *got, const double *ref, size_t n, double atol,
                    double rtol);
/* Max |a-b| / max(|b|) over the arrays (a "relative error of the tensor"). */
double cg_test_rel_err(const float *a, const float *b, size_t n);

/* Deterministic uniform fill in [lo, hi) keyed by seed. */
void cg_test_fill(float *p, size_t n, float lo, float hi, uint64_t seed);

/* Host bf16 / fp16 bit patterns, rounded to nearest even like the device's __float2*_rn
 * (NaN stays NaN; fp16 overflow gives inf, small values subnormals). */
uint16_t cg_test_f32_to_bf16(float f);
float cg_test_bf16_to_f32(uint16_t b);
uint16_t cg_test_f32_to_f16(float f);
float cg_test_f16_to_f32(uint16_t h);

#endif
