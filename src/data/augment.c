/* augment.c: random flips and crop windows of one sample (augment.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "augment.h"
#include "log.h"
#include "rng.h"

void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask) {
  CG_ASSERT(h >= 1 && w >= 1 && rgb != NULL && mask != NULL);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_AUG, (uint64_t)epoch, (uint64_t)index);
  const uint64_t bits = cg_rng_next(&r);
  if (bits & 1) { /* horizontal: mirror every row */
    for (int y = 0; y < h; y++) {
      uint8_t *p = rgb + (size_t)y * w * 3, *m = mask + (size_t)y * w;
      for (int i = 0, j = w - 1; i < j; i++, j--) {
        for (int k = 0; k < 3; k++) {
          uint8_t t = p[3 * i + k];
          p[3 * i + k] = p[3 * j + k];
          p[3 * j + k] = t;
        }
        uint8_t t = m[i];
        m[i] = m[j];
        m[j] = t;
      }
    }
  }
  if (bits & 2) { /* vertical: swap rows top/bottom */
    for (int i = 0, j = h - 1; i < j; i++, j--) {
      uint8_t *pi = rgb + (size_t)i * w * 3, *pj = rgb + (size_t)j * w * 3;
      for (int x = 0; x < 3 * w; x++) {
        uint8_t t = pi[x];
        pi[x] = pj[x];
        pj[x] = t;
      }
      uint8_t *mi = mask + (size_t)i * w, *mj = mask + (size_t)j * w;
      for (int x = 0; x < w; x++) {
        uint8_t t = mi[x];
        mi[x] = mj[x];
        mj[x] = t;
      }
    }
  }
}

cg_crop_t cg_augment_window(uint64_t seed, int64_t epoch, int64_t index, double lo, double hi) {
  CG_ASSERT(lo > 0 && lo <= hi && hi <= 1);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_AUG, (uint64_t)epoch, (uint64_t)index);
  (void)cg_rng_next(&r); /* the flip bits of cg_augment_flip */
  cg_crop_t win;
  win.scale = lo + (hi - lo) * cg_rng_uniform(&r);
  win.u = cg_rng_uniform(&r);
  win.v = cg_rng_uniform(&r);
  return win;
}

