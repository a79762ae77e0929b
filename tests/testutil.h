/* testutil.h: shared helpers of the test executables.
 * Comparisons use |a - b| <= atol + rtol * |ref| and print the worst element; a test prints
 * "PASS name" / "FAIL name: ..." lines and returns non-zero from main on any failure.
 * The GPU tests' own set-up is in testutil_cuda.h (CUDA builds only). */
#ifndef CG_TESTUTIL_H
#define CG_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h" /* cg_batch_t */
#include "dtype.h"   /* cg_dtype_t */
#include "model.h"   /* cg_model_t, cg_buckets_t */

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

/* The seed of a run with fresh inputs: CG_TEST_SEED from the environment, else one made from
 * the time and the pid. The caller prints it, so that CG_TEST_SEED=<n> repeats the run. */
uint64_t cg_test_seed(void);

/* ---- whole-step fixtures: a small UNet and random batches ---------------------------------- */

/* Builds m (in_c input channels, base, depth, hw x hw; fatal if the shape is invalid) and its
 * gradient buckets bk of bucket_bytes (cg_buckets_plan: <= 0 gives one bucket). Returns the
 * initial parameters from seed (cg_model_init_params), which the caller frees. */
float *cg_test_unet(cg_model_t *m, cg_buckets_t *bk, int in_c, int base, int depth, int hw,
                    double bucket_bytes, uint64_t seed);

/* A random batch of n samples of h x w x c: x uniform in [-1, 1) from seed, y 1 with
 * probability 0.4 (a second stream of seed), weights 1/n; with pad_last the last sample is
 * padding (weight 0) and the others weigh 1/(n - 1). Owns its arrays: cg_test_data_free. */
typedef struct {
  int n, h, w, c;
  float *x, *wt;
  uint8_t *y;
} cg_test_data_t;

cg_test_data_t cg_test_data_make(int n, int h, int w, int c, int pad_last, uint64_t seed);
void cg_test_data_free(cg_test_data_t *d);
/* A batch that views d (d keeps its arrays), every sample prepared on the CPU (n_cpu = n). */
cg_batch_t cg_test_data_batch(const cg_test_data_t *d);

/* Host bf16 / fp16 bit patterns, rounded to nearest even like the device's __float2*_rn
 * (NaN stays NaN; fp16 overflow gives inf, small values subnormals). */
uint16_t cg_test_f32_to_bf16(float f);
float cg_test_bf16_to_f32(uint16_t b);
uint16_t cg_test_f32_to_f16(float f);
float cg_test_f16_to_f32(uint16_t h);
/* The same for a 16-bit dtype (CG_DT_BF16 or CG_DT_F16), and its quiet NaN. */
uint16_t cg_test_to_dt16(cg_dtype_t dt, float f);
float cg_test_from_dt16(cg_dtype_t dt, uint16_t b);
uint16_t cg_test_nan_dt16(cg_dtype_t dt);
/* npix pixels of stride ld (elements) in dt: channels [0, c) uniform in [lo, hi) (seeded) and
 * rounded to dt, the rest NaN (the unused channels of a concat half must not leak into a
 * kernel's result). The rounded values, dense (npix x c), in *dense. Both cg_malloc'd. */
uint16_t *cg_test_act16(cg_dtype_t dt, size_t npix, int c, int ld, float lo, float hi,
                        uint64_t seed, float **dense);

#endif
