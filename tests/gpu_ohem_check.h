/* gpu_ohem_check.h: the OHEM threshold check of test_gpu_layers (binary) and test_gpu_mclass
 * (K classes), included by both (a static function: the emulated builds link neither file's
 * objects with the other's). Needs testutil_cuda.h, kernels.h, cpu_layers.h and log.h. */
#ifndef CG_GPU_OHEM_CHECK_H
#define CG_GPU_OHEM_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cg_k_ohem_thr's thresholds of the n samples of logits d_z (nclass K, ignore ign) into d_thr
 * (n floats), bitwise against cg_cpu_ohem_thr's on the same (rounded) host logits z; counts the
 * branch each sample took into hits: [0] thresh, [1] v above it, [2] +inf (all kept). */
static void cg_test_ohem_thr(const char *tag, cg_dtype_t dt, const float *z, const void *d_z,
                             const uint8_t *mask, const uint8_t *d_mask, int n, int64_t hw, int K,
                             int ign, const cg_loss_opt_t *lo, float *d_thr, int hits[3],
                             cudaStream_t s) {
  char name[260];
  const size_t kb = cg_k_ohem_work_bytes(n, hw);
  uint32_t *keys = cg_malloc((size_t)hw * sizeof(uint32_t), "keys"), *d_keys = cg_test_dnew(kb, s);
  float *ref = cg_malloc((size_t)(n ? n : 1) * sizeof(float), "thresholds");
  float *got = cg_malloc((size_t)(n ? n : 1) * sizeof(float), "thresholds");
  cg_test_dpoison(d_thr, (size_t)n * sizeof(float), s);
  cg_k_ohem_thr(dt, d_z, d_mask, n, hw, K, ign, lo->ohem, lo->ohem_min_kept, d_keys, d_thr, s);
  cg_test_hget(got, d_thr, (size_t)n * sizeof(float), s);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    ref[i] = cg_cpu_ohem_thr(z + (size_t)i * hw * K, mask + (size_t)i * hw, (size_t)hw, K, ign,
                             lo, keys);
    if (memcmp(&ref[i], &got[i], sizeof(float)) != 0) {
      if (bad++ < 4)
        fprintf(stderr, "  sample %d: threshold %.9g, want %.9g\n", i, got[i], ref[i]);
    } else {
      hits[ref[i] == INFINITY ? 2 : ref[i] == lo->ohem ? 0 : 1]++;
    }
  }
  snprintf(name, sizeof name, "ohem_thr %s", tag);
  CG_TEST_CHECK(bad == 0, "%s: %d of %d thresholds differ", name, bad, n);
  if (bad == 0) printf("PASS %s (bitwise: %.6g ... %.6g)\n", name, got[0], got[n - 1]);
  cg_test_guard_check(name, d_thr, (size_t)n * sizeof(float), s);
  cg_test_guard_check(name, d_keys, kb, s);
  cg_test_dfree(d_keys, s);
  free(keys), free(ref), free(got);
}

#endif
