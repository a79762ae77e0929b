/* test_prep.c: cg_prep_input_cpu (src/data/prep.h), the CPU twin of the GPU input preparation.
 *
 * For every split point n_cpu = 0..n of a batch, the mixed-source result must equal, bit for
 * bit, packing every sample of the batch with cg_pack_input; both with a separate x and in
 * place (x == out). Images are random bytes, synthetic scenes and flat ones, at even, odd and
 * degenerate sizes. The output is poisoned (NaN) first, so an unwritten element fails. The seed
 * is printed; CG_TEST_SEED=<n> repeats a run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "synth.h"
#include "feat.h"
#include "log.h"
#include "prep.h"
#include "rng.h"
#include "testutil.h"

#define NC (3 + CG_NFEAT)

static uint64_t g_seed;

/* Image k of a batch: random bytes, a synthetic scene or a flat colour, by k % 3. */
static void make_image(int k, int h, int w, uint8_t *rgb, uint8_t *mask) {
  const size_t hw = (size_t)h * w;
  cg_rng_t r = cg_rng_make(g_seed, CG_RNG_TEST, (uint64_t)k, (uint64_t)(h * 1000 + w));
  if (k % 3 == 0) {
    for (size_t i = 0; i < 3 * hw; i++) rgb[i] = (uint8_t)(cg_rng_next(&r) >> 56);
  } else if (k % 3 == 1) {
    cg_synth_sample(g_seed, k, h, w, rgb, mask);
  } else {
    const uint8_t c[3] = {(uint8_t)(cg_rng_next(&r) >> 56), (uint8_t)(cg_rng_next(&r) >> 56),
                          (uint8_t)(cg_rng_next(&r) >> 56)};
    for (size_t i = 0; i < hw; i++) memcpy(rgb + 3 * i, c, 3);
  }
}

/* Bitwise comparison; prints the first differing element as (sample, y, x, channel). */
static void check_same(const char *name, const float *got, const float *ref, int n, int h, int w) {
  const size_t total = (size_t)n * h * w * NC;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < total; i++)
    if (memcmp(&got[i], &ref[i], sizeof(float)) != 0 && bad++ == 0) first = i;
  if (bad) {
    const size_t c = first % NC, p = first / NC;
    const size_t x = p % w, y = (p / w) % h, s = p / ((size_t)h * w);
    cg_test_failures++;
    printf("FAIL %s: %zu of %zu elements differ; first [sample %zu y %zu x %zu c %zu] got %.9g"
           " ref %.9g\n",
           name, bad, total, s, y, x, c, got[first], ref[first]);
  } else {
    printf("PASS %s (n %zu, bit-exact)\n", name, total);
  }
}

static void test_batch(int n, int h, int w) {
  const size_t hw = (size_t)h * w, per = hw * NC;
  uint8_t *rgb = cg_malloc((size_t)n * hw * 3, "rgb");
  uint8_t *mask = cg_malloc(hw, "mask");
  float *ref = cg_malloc((size_t)n * per * sizeof(float), "ref");
  float *x = cg_malloc((size_t)n * per * sizeof(float), "x");
  float *out = cg_malloc((size_t)n * per * sizeof(float), "out");
  float *scratch = cg_malloc(3 * hw * sizeof(float), "scratch");
  for (int i = 0; i < n; i++) {
    make_image(i, h, w, rgb + (size_t)i * hw * 3, mask);
    cg_pack_input(rgb + (size_t)i * hw * 3, h, w, CG_NFEAT, scratch, ref + (size_t)i * per);
  }
  for (int n_cpu = 0; n_cpu <= n; n_cpu++) {
    char name[128];
    /* the CPU share as the helper threads deliver it; the GPU share as RGB8 only */
    memcpy(x, ref, (size_t)n_cpu * per * sizeof(float));
    const uint8_t *grgb = n_cpu < n ? rgb + (size_t)n_cpu * hw * 3 : NULL;
    memset(out, 0xFF, (size_t)n * per * sizeof(float));
    cg_prep_input_cpu(n_cpu ? x : NULL, n_cpu, grgb, n, h, w, out, scratch);
    snprintf(name, sizeof name, "prep_input_cpu %dx%d n=%d n_cpu=%d", h, w, n, n_cpu);
    check_same(name, out, ref, n, h, w);

    /* in place: the CPU samples already sit in out */
    memset(out, 0xFF, (size_t)n * per * sizeof(float));
    memcpy(out, ref, (size_t)n_cpu * per * sizeof(float));
    cg_prep_input_cpu(n_cpu ? out : NULL, n_cpu, grgb, n, h, w, out, scratch);
    snprintf(name, sizeof name, "prep_input_cpu %dx%d n=%d n_cpu=%d in place", h, w, n, n_cpu);
    check_same(name, out, ref, n, h, w);
  }
  free(rgb);
  free(mask);
  free(ref);
  free(x);
  free(out);
  free(scratch);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *env = getenv("CG_TEST_SEED");
  g_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  printf("test_prep: seed %llu (CG_TEST_SEED=%llu repeats this run)\n",
         (unsigned long long)g_seed, (unsigned long long)g_seed);
  test_batch(4, 16, 16);
  test_batch(3, 33, 47);
  test_batch(2, 64, 64);
  test_batch(3, 1, 1);
  test_batch(3, 5, 2);
  /* the empty batch writes nothing and reads nothing */
  cg_prep_input_cpu(NULL, 0, NULL, 0, 8, 8, NULL, NULL);
  printf("PASS prep_input_cpu n=0\n");
  return cg_test_done("test_prep");
}
