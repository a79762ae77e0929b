/* augment.c: random flips, crop windows, colour jitter and rotations of one sample (augment.h).
 *
 * The jitter and the rotation follow torchvision's float32 arithmetic step by step;
 * CMakeLists.txt compiles this file with -ffp-contract=off, since a fused multiply-add would
 * round otherwise. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "augment.h"
#include "log.h"
#include "rng.h"

/* The transpose of a square n x n sample in place: pixel (y, x) and (x, y) exchanged. */
static void transpose_square(int n, uint8_t *rgb, uint8_t *mask) {
  for (int y = 0; y < n; y++)
    for (int x = y + 1; x < n; x++) {
      uint8_t *a = rgb + 3 * ((size_t)y * n + x), *b = rgb + 3 * ((size_t)x * n + y);
      for (int k = 0; k < 3; k++) {
        const uint8_t t = a[k];
        a[k] = b[k];
        b[k] = t;
      }
      const uint8_t t = mask[(size_t)y * n + x];
      mask[(size_t)y * n + x] = mask[(size_t)x * n + y];
      mask[(size_t)x * n + y] = t;
    }
}

void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask, int mode) {
  CG_ASSERT(h >= 1 && w >= 1 && rgb != NULL && mask != NULL);
  CG_ASSERT(!(mode & CG_FLIP_T) || h == w);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_AUG, (uint64_t)epoch, (uint64_t)index);
  const uint64_t bits = cg_rng_next(&r) & (uint64_t)mode;
  if (bits & CG_FLIP_T) transpose_square(h, rgb, mask);
  if (bits & CG_FLIP_H) { /* horizontal: mirror every row */
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
  if (bits & CG_FLIP_V) { /* vertical: swap rows top/bottom */
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
  CG_ASSERT(lo > 0 && lo <= hi && hi <= CG_CROP_SCALE_MAX);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_AUG, (uint64_t)epoch, (uint64_t)index);
  (void)cg_rng_next(&r); /* the flip bits of cg_augment_flip */
  cg_crop_t win;
  memset(&win, 0, sizeof win); /* the struct's padding too: windows compare as bytes */
  win.scale = lo + (hi - lo) * cg_rng_uniform(&r);
  win.u = cg_rng_uniform(&r);
  win.v = cg_rng_uniform(&r); /* pad: 0, the caller's to set (the ignore label) */
  return win;
}

void cg_augment_window_again(uint64_t seed, int64_t epoch, int64_t index, int t, cg_crop_t *win) {
  CG_ASSERT(t >= 1 && t <= CG_CROP_CAT_TRIES);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_CROP, (uint64_t)epoch, (uint64_t)index);
  for (int i = 1; i < t; i++) {
    (void)cg_rng_next(&r);
    (void)cg_rng_next(&r);
  }
  win->u = cg_rng_uniform(&r);
  win->v = cg_rng_uniform(&r);
}

int cg_augment_cat_ok(const uint8_t *mask, size_t n, int ignore, double ratio) {
  if (ratio >= 1.0) return 1;
  size_t count[256] = {0};
  for (size_t i = 0; i < n; i++) count[mask[i]]++;
  if (ignore >= 0 && ignore <= 255) count[ignore] = 0;
  size_t all = 0, most = 0;
  int labels = 0;
  for (int v = 0; v < 256; v++) {
    all += count[v];
    labels += count[v] > 0;
    if (count[v] > most) most = count[v];
  }
  return labels > 1 && (double)most / (double)all < ratio;
}

/* ---- colour jitter ------------------------------------------------------------------------ */

cg_jitter_draw_t cg_augment_jitter_draw(uint64_t seed, int64_t epoch, int64_t index,
                                        const cg_jitter_t *j) {
  cg_jitter_draw_t d;
  cg_rng_t r = cg_rng_make(seed, CG_RNG_JITTER, (uint64_t)epoch, (uint64_t)index);
  for (int i = 0; i < 4; i++) d.order[i] = i;
  for (int i = 3; i > 0; i--) { /* Fisher-Yates */
    const int k = (int)cg_rng_below(&r, (uint32_t)i + 1), t = d.order[i];
    d.order[i] = d.order[k];
    d.order[k] = t;
  }
  const double range[4] = {j->b, j->c, j->s, j->h};
  for (int i = 0; i < 4; i++) {
    const double u = cg_rng_uniform(&r);
    double lo = i < 3 ? 1.0 - range[i] : -range[i], hi = i < 3 ? 1.0 + range[i] : range[i];
    if (lo < 0 && i < 3) lo = 0;
    d.on[i] = range[i] > 0;
    d.factor[i] = d.on[i] ? (float)(lo + (hi - lo) * u) : (i < 3 ? 1.0f : 0.0f);
  }
  return d;
}

/* float32 to uint8 as torch's .to(torch.uint8) after clamp(0, 255): truncation. */
static uint8_t to_u8(float v) {
  if (!(v > 0)) return 0;
  return v >= 255.0f ? 255 : (uint8_t)v;
}

/* rgb_to_grayscale of one pixel: (0.2989 r + 0.587 g + 0.114 b) in float32, truncated. */
static uint8_t gray(const uint8_t *p) {
  const float a = 0.2989f * (float)p[0], b = 0.587f * (float)p[1], c = 0.114f * (float)p[2];
  return to_u8(a + b + c);
}

/* _blend(img, other, ratio): ratio img + (1 - ratio) other, clamped and truncated. */
static uint8_t blend(uint8_t x, float other, float ratio) {
  const float a = ratio * (float)x, b = (1.0f - ratio) * other;
  return to_u8(a + b);
}

static void brightness(float f, size_t n, uint8_t *rgb) {
  for (size_t i = 0; i < 3 * n; i++) rgb[i] = blend(rgb[i], 0.0f, f);
}

static void contrast(float f, size_t n, uint8_t *rgb) {
  double sum = 0; /* the mean of the truncated gray image (torch.mean in float32: exact sums
                     below 2^24, then one float division) */
  for (size_t i = 0; i < n; i++) sum += gray(rgb + 3 * i);
  const float mean = (float)sum / (float)n;
  for (size_t i = 0; i < 3 * n; i++) rgb[i] = blend(rgb[i], mean, f);
}

static void saturation(float f, size_t n, uint8_t *rgb) {
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = rgb + 3 * i;
    const float g = gray(p);
    for (int k = 0; k < 3; k++) p[k] = blend(p[k], g, f);
  }
}

/* adjust_hue: RGB / 255 to HSV (_rgb2hsv), h = (h + f) mod 1, back (_hsv2rgb), x 255,
 * truncated. */
static void hue(float f, size_t n, uint8_t *rgb) {
  for (size_t i = 0; i < n; i++) {
    uint8_t *px = rgb + 3 * i;
    const float r = (float)px[0] / 255.0f, g = (float)px[1] / 255.0f, b = (float)px[2] / 255.0f;
    const float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
    const int eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float crd = eqc ? 1.0f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    const float hr = maxc == r ? bc - gc : 0.0f;
    const float hg = maxc == g && maxc != r ? (2.0f + rc) - bc : 0.0f;
    const float hb = maxc != g && maxc != r ? (4.0f + gc) - rc : 0.0f;
    /* torch.fmod(h / 6 + 1, 1), then torch's remainder (h + f) % 1: the arguments lie in
     * (5/6, 2) and [-0.5, 1.5), where fmod by 1 is x - 1 above 1, exactly (fmodf is slow) */
    float h = (hr + hg + hb) / 6.0f + 1.0f;
    if (h >= 1.0f) h -= 1.0f;
    h += f;
    if (h >= 1.0f) h -= 1.0f;
    else if (h < 0) h += 1.0f;
    const float v = maxc;
    const float i6 = floorf(h * 6.0f), fr = h * 6.0f - i6;
    int ii = (int)i6 % 6;
    if (ii < 0) ii += 6;
    const float p = fminf(fmaxf(v * (1.0f - s), 0.0f), 1.0f);
    const float q = fminf(fmaxf(v * (1.0f - s * fr), 0.0f), 1.0f);
    const float t = fminf(fmaxf(v * (1.0f - s * (1.0f - fr)), 0.0f), 1.0f);
    static const int sel[6][3] = {{0, 3, 1}, {2, 0, 1}, {1, 0, 3}, {1, 2, 0}, {3, 1, 0}, {0, 1, 2}};
    const float val[4] = {v, p, q, t}; /* sel: 0 v, 1 p, 2 q, 3 t */
    for (int k = 0; k < 3; k++) px[k] = to_u8(val[sel[ii][k]] * 255.0f);
  }
}

void cg_augment_jitter_apply(const cg_jitter_draw_t *d, int h, int w, uint8_t *rgb) {
  const size_t n = (size_t)h * w;
  for (int k = 0; k < 4; k++) {
    const int op = d->order[k];
    if (!d->on[op]) continue;
    switch (op) {
      case 0: brightness(d->factor[0], n, rgb); break;
      case 1: contrast(d->factor[1], n, rgb); break;
      case 2: saturation(d->factor[2], n, rgb); break;
      default: hue(d->factor[3], n, rgb); break;
    }
  }
}

/* ---- rotation ----------------------------------------------------------------------------- */

double cg_augment_rotate_draw(uint64_t seed, int64_t epoch, int64_t index, double deg,
                              double prob) {
  if (!(deg > 0) || !(prob > 0)) return 0.0;
  cg_rng_t r = cg_rng_make(seed, CG_RNG_ROTATE, (uint64_t)epoch, (uint64_t)index);
  const double u = cg_rng_uniform(&r), a = cg_rng_uniform(&r);
  if (u >= prob) return 0.0;
  return -deg + 2.0 * deg * a;
}

/* The source position of output pixel (x, y), in the source's pixel coordinates, as
 * torchvision's _gen_affine_grid and grid_sample's unnormalize (align_corners=False) make it in
 * float32: t0, t1 (t2, t3) the rescaled theta's column of x (y). The grid's bmm is a BLAS
 * sgemm, whose kernels on FMA hardware (OpenBLAS's, numpy's) round the second product into the
 * first once: fmaf, which -ffp-contract=off does not touch. */
static void rotate_src(const float t[4], int x, int y, int h, int w, float *ix, float *iy) {
  const float bx = (float)x - (float)w * 0.5f + 0.5f, by = (float)y - (float)h * 0.5f + 0.5f;
  const float gx = fmaf(by, t[1], bx * t[0]), gy = fmaf(by, t[3], bx * t[2]);
  *ix = (gx + 1.0f) * ((float)w / 2.0f) - 0.5f;
  *iy = (gy + 1.0f) * ((float)h / 2.0f) - 0.5f;
}

void cg_augment_rotate_apply(double angle, int h, int w, uint8_t *rgb, uint8_t *mask,
                             uint8_t pad_rgb, uint8_t pad_mask, uint8_t *tmp) {
  CG_ASSERT(h >= 1 && w >= 1 && rgb != NULL && mask != NULL && tmp != NULL);
  if (angle == 0.0) return;
  /* _get_inverse_affine_matrix(center 0, -angle, ...): [cos, -sin; sin, cos] of the angle,
   * made in double and kept as float32, each row over (0.5 w, 0.5 h) */
  const double rad = angle * (M_PI / 180.0);
  const float c = (float)cos(rad), s = (float)sin(rad);
  const float t[4] = {c / ((float)w * 0.5f), -s / ((float)w * 0.5f), s / ((float)h * 0.5f),
                      c / ((float)h * 0.5f)};
  const size_t n = (size_t)h * w;
  uint8_t *src = tmp, *msrc = tmp + 3 * n;
  memcpy(src, rgb, 3 * n);
  memcpy(msrc, mask, n);
  const float fill = (float)pad_rgb;
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      float ix, iy;
      rotate_src(t, x, y, h, w, &ix, &iy);
      const size_t o = (size_t)y * w + x;
      /* nearest: round half to even, out of the source = the fill */
      const float nx = nearbyintf(ix), ny = nearbyintf(iy);
      mask[o] = nx >= 0 && nx < (float)w && ny >= 0 && ny < (float)h
                    ? msrc[(size_t)ny * w + (size_t)nx]
                    : pad_mask;
      /* bilinear: taps out of the source are 0, the ones channel gives the fill's share */
      const float xw = floorf(ix), yn = floorf(iy);
      const float we = ix - xw, ea = 1.0f - we, no = iy - yn, so = 1.0f - no;
      const float wt[4] = {so * ea, so * we, no * ea, no * we}; /* nw, ne, sw, se */
      const int x0 = (int)xw, y0 = (int)yn;
      const uint8_t *tap[4] = {NULL, NULL, NULL, NULL};
      for (int k = 0; k < 4; k++) {
        const int tx = x0 + (k & 1), ty = y0 + (k >> 1);
        if (tx >= 0 && tx < w && ty >= 0 && ty < h) tap[k] = src + 3 * ((size_t)ty * w + tx);
      }
      float m = 0.0f;
      for (int k = 0; k < 4; k++) m = m + (tap[k] ? wt[k] : 0.0f);
      for (int ch = 0; ch < 3; ch++) {
        float v = 0.0f;
        for (int k = 0; k < 4; k++) v = v + (tap[k] ? (float)tap[k][ch] * wt[k] : 0.0f);
        v = v * m + (1.0f - m) * fill;
        v = nearbyintf(v);
        rgb[3 * o + ch] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
      }
    }
  }
}
