/* gpu_ohem_check.c: see gpu_ohem_check.h. */
#include "gpu_ohem_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h" /* cg_k_ohem_thr, cg_k_ohem_work_bytes */
#include "log.h"     /* cg_malloc */
#include "testutil.h"
#include "testutil_cuda.h"

void cg_test_ohem_thr(const char *tag, cg_dtype_t dt, const float *z, const void *d_z,
                      const uint8_t *mask, const uint8_t *d_mask, int n, int64_t hw, int K, int ign,
                      const cg_loss_opt_t *lo, float *d_thr, int hits[3], cudaStream_t s) {
  char name[260];
  const size_t kb = cg_k_ohem_work_bytes(n, hw), nk = (size_t)n * (size_t)hw;
  uint32_t *dk = cg_malloc(nk * sizeof(uint32_t), "keys"), *d_keys = cg_test_dnew(kb, s);
  uint32_t *vk = cg_malloc((size_t)hw * sizeof(uint32_t), "valid keys");
  float *got = cg_malloc((size_t)(n ? n : 1) * sizeof(float), "thresholds");
  cg_test_dpoison(d_thr, (size_t)n * sizeof(float), s);
  cg_k_ohem_thr(dt, d_z, d_mask, n, hw, K, ign, lo->ohem, lo->ohem_min_kept, d_keys, d_thr, s);
  cg_test_hget(got, d_thr, (size_t)n * sizeof(float), s);
  cg_test_hget(dk, d_keys, nk * sizeof(uint32_t), s);
  int bad = 0;
  int64_t off = 0, exact = 0, valid = 0;
  for (int i = 0; i < n; i++) {
    size_t nv = 0;
    for (int64_t j = 0; j < hw; j++) {
      const int64_t p = (int64_t)i * hw + j;
      const int y = mask[p], ok = y != ign && (K == 1 || y < K);
      const uint32_t d = dk[p];
      if (!ok) {
        off += d != 0xFFFFFFFFu;
        continue;
      }
      const float c = cg_cpu_ohem_key(z + (size_t)p * K, K, y);
      uint32_t cb;
      memcpy(&cb, &c, sizeof cb);
      off += d == 0xFFFFFFFFu || (d > cb ? d - cb : cb - d) > 1;
      exact += d == cb;
      valid++;
      if (d != 0xFFFFFFFFu) vk[nv++] = d;
    }
    const float ref = cg_cpu_ohem_select(vk, nv, lo->ohem, lo->ohem_min_kept);
    if (memcmp(&ref, &got[i], sizeof(float)) != 0) {
      if (bad++ < 4)
        fprintf(stderr, "  sample %d: threshold %.9g, the select of its keys %.9g\n", i,
                (double)got[i], (double)ref);
    } else {
      hits[ref == INFINITY ? 2 : ref == lo->ohem ? 0 : 1]++;
    }
  }
  snprintf(name, sizeof name, "ohem_thr %s", tag);
  CG_TEST_CHECK(off == 0, "%s: %lld keys not within 1 ulp of the CPU's (or not the same pixels "
                "valid)", name, (long long)off);
  CG_TEST_CHECK(bad == 0, "%s: %d of %d thresholds differ from the select of the device's keys",
                name, bad, n);
  if (bad == 0 && off == 0 && n > 0)
    printf("PASS %s (keys: %lld of %lld the CPU's bits, the rest within 1 ulp; thresholds "
           "bitwise: %.6g ... %.6g)\n", name, (long long)exact, (long long)valid,
           (double)got[0], (double)got[n - 1]);
  cg_test_guard_check(name, d_thr, (size_t)n * sizeof(float), s);
  cg_test_guard_check(name, d_keys, kb, s);
  cg_test_dfree(d_keys, s);
  free(dk), free(vk), free(got);
}
