/* feat.c: the CPU feature channels and packing into the NHWC network input
 * (see feat.h for the channel layout).
 *
 * The kernels are plain loops with clamped (replicated-border) indices and no data-dependent
 * branches, so a GPU kernel doing one pixel per thread reproduces them to ~1e-6. Local variance
 * is a separable 5x5 box filter of (g - 0.5) and (g - 0.5)^2 in double: O(1) work per pixel,
 * and E[d^2] - E[d]^2 of centred values in double loses nothing that float output would keep
 * (a float version of the same formula would cancel badly on flat regions). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "feat.h"
#include "log.h"
#include "rng.h"

void cg_feat_gray(const uint8_t *rgb, int h, int w, float *gray) {
  CG_ASSERT(h >= 1 && w >= 1);
  const size_t n = (size_t)h * w;
  for (size_t i = 0; i < n; i++)
    gray[i] = (0.299f * rgb[3 * i] + 0.587f * rgb[3 * i + 1] + 0.114f * rgb[3 * i + 2]) / 255.0f;
}

/* One Sobel magnitude from three rows and the left/centre/right columns. */
static inline float sobel_at(const float *up, const float *mid, const float *dn, int xm, int x,
                             int xp) {
  const float gx = (up[xp] + 2.0f * mid[xp] + dn[xp]) - (up[xm] + 2.0f * mid[xm] + dn[xm]);
  const float gy = (dn[xm] + 2.0f * dn[x] + dn[xp]) - (up[xm] + 2.0f * up[x] + up[xp]);
  return sqrtf(gx * gx + gy * gy);
}

void cg_feat_sobel(const float *gray, int h, int w, float *out) {
  CG_ASSERT(h >= 1 && w >= 1);
  for (int y = 0; y < h; y++) {
    const float *up = gray + (size_t)(y > 0 ? y - 1 : 0) * w;
    const float *mid = gray + (size_t)y * w;
    const float *dn = gray + (size_t)(y < h - 1 ? y + 1 : h - 1) * w;
    float *o = out + (size_t)y * w;
    /* Border columns clamp; the interior loop has none, so it vectorises (with
     * -fno-math-errno: sqrtf sets no errno). */
    o[0] = sobel_at(up, mid, dn, 0, 0, w > 1 ? 1 : 0);
    for (int x = 1; x < w - 1; x++) o[x] = sobel_at(up, mid, dn, x - 1, x, x + 1);
    if (w > 1) o[w - 1] = sobel_at(up, mid, dn, w - 2, w - 1, w - 1);
  }
}

void cg_feat_localvar(const float *gray, int h, int w, float *out) {
  CG_ASSERT(h >= 1 && w >= 1);
  /* Column sums of the 5 rows around y, with 2 replicated entries on each side so the
   * horizontal pass needs no border tests. */
  double *s1 = cg_malloc(2 * ((size_t)w + 4) * sizeof *s1, "local variance row");
  double *s2 = s1 + w + 4;
  for (int y = 0; y < h; y++) {
    const float *r[5];
    for (int k = 0; k < 5; k++) {
      int yy = y + k - 2;
      yy = yy < 0 ? 0 : (yy > h - 1 ? h - 1 : yy);
      r[k] = gray + (size_t)yy * w;
    }
    for (int x = 0; x < w; x++) {
      double a = 0, b = 0;
      for (int k = 0; k < 5; k++) {
        const double d = (double)r[k][x] - 0.5;
        a += d;
        b += d * d;
      }
      s1[x + 2] = a;
      s2[x + 2] = b;
    }
    s1[0] = s1[1] = s1[2];
    s2[0] = s2[1] = s2[2];
    s1[w + 3] = s1[w + 2] = s1[w + 1];
    s2[w + 3] = s2[w + 2] = s2[w + 1];
    float *o = out + (size_t)y * w;
    for (int x = 0; x < w; x++) {
      const double a = s1[x] + s1[x + 1] + s1[x + 2] + s1[x + 3] + s1[x + 4];
      const double b = s2[x] + s2[x + 1] + s2[x + 2] + s2[x + 3] + s2[x + 4];
      const double mean = a * (1.0 / 25.0);
      const double var = b * (1.0 / 25.0) - mean * mean;
      /* Rounding can leave -1e-17 on flat windows; fabs folds that to +1e-17 without the
       * branch a clamp would put in the loop (which then does not vectorise). */
      o[x] = (float)(fabs(var) * CG_VAR_SCALE);
    }
  }
  free(s1);
}

void cg_pack_input(const uint8_t *rgb, int h, int w, int nfeat, float *scratch, float *x) {
  CG_ASSERT(h >= 1 && w >= 1 && (nfeat == 0 || nfeat == CG_NFEAT));
  CG_ASSERT(nfeat == 0 || scratch != NULL);
  const size_t n = (size_t)h * w;
  float norm[256]; /* each byte's normalised value: a lookup instead of two divisions */
  for (int v = 0; v < 256; v++) norm[v] = ((float)v / 255.0f - 0.5f) / 0.25f;
  if (nfeat == 0) {
    for (size_t i = 0; i < 3 * n; i++) x[i] = norm[rgb[i]];
    return;
  }
  float *gray = scratch, *sob = scratch + n, *var = scratch + 2 * n;
  cg_feat_gray(rgb, h, w, gray);
  cg_feat_sobel(gray, h, w, sob);
  cg_feat_localvar(gray, h, w, var);
  for (size_t i = 0; i < n; i++) { /* a pixel's 5 channels in one pass */
    float *p = x + (size_t)(3 + CG_NFEAT) * i;
    p[0] = norm[rgb[3 * i]];
    p[1] = norm[rgb[3 * i + 1]];
    p[2] = norm[rgb[3 * i + 2]];
    p[3] = sob[i];
    p[4] = var[i];
  }
}
