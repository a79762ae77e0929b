/* prep.c: see prep.h. cg_pack_input is the reference of the GPU kernel, so the CPU twin of
 * the split is only a loop over the batch around it. */
#include "prep.h"

#include <stddef.h>
#include <string.h>

#include "feat.h"
#include "log.h"

void cg_prep_input_cpu(const float *x, int n_cpu, const uint8_t *rgb, int n, int h, int w,
                       float *out, float *scratch) {
  CG_ASSERT(n >= 0 && n_cpu >= 0 && n_cpu <= n && h >= 1 && w >= 1);
  if (n == 0) return;
  CG_ASSERT(out != NULL);
  const size_t hw = (size_t)h * w, per = hw * (3 + CG_NFEAT);
  if (n_cpu > 0) {
    CG_ASSERT(x != NULL);
    if (x != out) memcpy(out, x, (size_t)n_cpu * per * sizeof *out);
  }
  if (n_cpu == n) return;
  CG_ASSERT(rgb != NULL && scratch != NULL);
  for (int i = n_cpu; i < n; i++)
    cg_pack_input(rgb + (size_t)(i - n_cpu) * hw * 3, h, w, CG_NFEAT, scratch,
                  out + (size_t)i * per);
}
