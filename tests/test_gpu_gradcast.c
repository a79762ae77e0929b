/* test_gpu_gradcast.c: the casts of the bf16 gradient all-reduce (cuda/gradcast.h) against the
 * host's (comm/bf16.h), bit for bit: rounding ties both ways, subnormals, infinities, overflow,
 * NaNs of both signs and payloads, random values of mixed scale, at sizes 0, 1, odd and more than
 * one grid (the grid-stride loops), into guarded buffers and at an odd offset (a bucket's start
 * in the flat buffer has no alignment). Widening every one of the 65536 bf16 patterns must give
 * exactly the host's fp32. Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "gradcast.h"
#include "rng.h"
#include "testutil.h"
#include "testutil_cuda.h"

static const uint32_t kSpecial[] = {
    0x3f800000u, 0x3f808000u, 0x3f818000u, 0xbf818000u, 0x3f807fffu, 0x3f808001u,
    0x00008000u, 0x00018000u, 0x00000001u, 0x80000000u, 0x7f800000u, 0xff800000u,
    0x7f7fffffu, 0x7f7f7fffu, 0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
};
#define NSPECIAL (sizeof kSpecial / sizeof kSpecial[0])

/* n fp32 values: the special ones first, then random bits and random mixed-scale values. */
static void fill(float *x, size_t n, uint64_t seed) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 0, 3);
  for (size_t i = 0; i < n; i++) {
    uint32_t u = i < NSPECIAL ? kSpecial[i] : (uint32_t)cg_rng_next(&r);
    if (i >= NSPECIAL && (i & 1)) {
      const float f = (cg_rng_uniform(&r) - 0.5f) * powf(10.0f, (float)(i % 9) - 4);
      memcpy(&u, &f, sizeof u);
    }
    memcpy(&x[i], &u, sizeof u);
  }
}

/* Rounds n values at element offset off of a guarded buffer; compares with the host. */
static void check_round(size_t n, size_t off, uint64_t seed, cudaStream_t s) {
  float *h = malloc((n + 1) * sizeof(float));
  uint16_t *got = malloc((n + 1) * sizeof(uint16_t));
  fill(h, n, seed);
  float *d_in = cg_test_dnew((n + off) * sizeof(float), s);
  uint16_t *d_out = cg_test_dnew((n + off) * sizeof(uint16_t), s);
  if (n) cg_test_hput(d_in + off, h, n * sizeof(float), s);
  printf("RUN round n=%zu off=%zu\n", n, off);
  cg_k_grad_to_bf16(d_in + off, d_out + off, (int64_t)n, s);
  cg_test_dsync(s);
  if (n) cg_test_hget(got, d_out + off, n * sizeof(uint16_t), s);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != cg_bf16_from_f32(h[i]) && !bad++) first = i;
  uint32_t u = 0;
  if (bad) memcpy(&u, &h[first], sizeof u);
  CG_TEST_CHECK(bad == 0, "round n=%zu: %zu element(s) differ; first %zu: 0x%08x -> 0x%04x, host "
                "0x%04x", n, bad, first, u, bad ? got[first] : 0, cg_bf16_from_f32(h[first]));
  cg_test_guard_check("round output", d_out, (n + off) * sizeof(uint16_t), s);
  cg_test_dfree(d_in, s);
  cg_test_dfree(d_out, s);
  free(h);
  free(got);
}

/* Widens all 65536 patterns (at offset 1) and compares with the host's exact widening. */
static void check_widen(cudaStream_t s) {
  const size_t n = 65536;
  uint16_t *h = malloc(n * sizeof(uint16_t));
  float *got = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) h[i] = (uint16_t)i;
  uint16_t *d_in = cg_test_dnew((n + 1) * sizeof(uint16_t), s);
  float *d_out = cg_test_dnew((n + 1) * sizeof(float), s);
  cg_test_hput(d_in + 1, h, n * sizeof(uint16_t), s);
  printf("RUN widen 65536 patterns\n");
  cg_k_grad_from_bf16(d_in + 1, d_out + 1, (int64_t)n, s);
  cg_test_dsync(s);
  cg_test_hget(got, d_out + 1, n * sizeof(float), s);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    const float want = cg_bf16_to_f32(h[i]);
    if (memcmp(&got[i], &want, sizeof want)) bad++;
  }
  CG_TEST_CHECK(bad == 0, "widen: %zu of 65536 patterns differ from the host", bad);
  cg_test_guard_check("widen output", d_out, (n + 1) * sizeof(float), s);
  cg_test_dfree(d_in, s);
  cg_test_dfree(d_out, s);
  free(h);
  free(got);
}

int main(void) {
  cudaStream_t s;
  uint64_t seed;
  if (cg_test_gpu_begin("test_gpu_gradcast", &s, &seed)) return CG_TEST_SKIP;
  const size_t sizes[] = {0, 1, NSPECIAL, 1000003, (size_t)256 * 8192 * 2 + 7};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    check_round(sizes[k], k & 1, seed + k, s);
  check_widen(s);
  CG_CHECK_CUDA(cudaStreamDestroy(s));
  printf("test_gpu_gradcast: %d failure(s)\n", cg_test_failures);
  return cg_test_failures ? 1 : 0;
}
