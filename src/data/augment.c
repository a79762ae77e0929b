/* augment.c: random flips and crops of one sample (augment.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "augment.h"
#include "log.h"
#include "rng.h"
#include "fit.h" /* cg_resample_rgb, cg_resample_mask */

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

void cg_augment_crop(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask, uint8_t *tmp) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_AUG, (uint64_t)epoch, (uint64_t)index);
  (void)cg_rng_next(&r); /* the flip bits of cg_augment_flip */
  const double s = CG_CROP_MIN_SCALE + (1.0 - CG_CROP_MIN_SCALE) * cg_rng_uniform(&r);
  const double cw = s * w, ch = s * h;
  const double x0 = cg_rng_uniform(&r) * (w - cw), y0 = cg_rng_uniform(&r) * (h - ch);
  const size_t px = (size_t)h * w;
  cg_resample_rgb(rgb, h, w, x0, y0, cw, ch, tmp, h, w);
  cg_resample_mask(mask, h, w, x0, y0, cw, ch, tmp + 3 * px, h, w);
  memcpy(rgb, tmp, 3 * px);
  memcpy(mask, tmp + 3 * px, px);
}
