/* test_data.c: the synthetic dataset, flips, the feature channels and input packing (synth.h, augment.h, feat.h).
 *
 * Sobel and local variance are compared with direct double-precision loops (explicit 3x3 / 5x5
 * windows, clamped indices, two-pass variance) on random images, and with hand-computed values
 * on a constant image and a vertical step edge. The dataset is checked for determinism, 0/1
 * masks, a sane foreground fraction, colour contrast and that a scene keeps its layout across
 * resolutions. Timings of synth + pack are printed, not asserted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"
#include "augment.h"
#include "feat.h"
#include "log.h"
#include "rng.h"
#include "testutil.h"

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static void naive_sobel(const float *g, int h, int w, float *out) {
  static const int kx[3][3] = {{-1, 0, 1}, {-2, 0, 2}, {-1, 0, 1}};
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double gx = 0, gy = 0;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          double v = g[(size_t)clampi(y + dy, 0, h - 1) * w + clampi(x + dx, 0, w - 1)];
          gx += kx[dy + 1][dx + 1] * v;
          gy += kx[dx + 1][dy + 1] * v; /* transposed kernel */
        }
      out[(size_t)y * w + x] = (float)sqrt(gx * gx + gy * gy);
    }
}

static void naive_localvar(const float *g, int h, int w, float *out) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double v[25], mean = 0, var = 0;
      int k = 0;
      for (int dy = -2; dy <= 2; dy++)
        for (int dx = -2; dx <= 2; dx++)
          v[k++] = g[(size_t)clampi(y + dy, 0, h - 1) * w + clampi(x + dx, 0, w - 1)];
      for (k = 0; k < 25; k++) mean += v[k];
      mean /= 25;
      for (k = 0; k < 25; k++) var += (v[k] - mean) * (v[k] - mean);
      out[(size_t)y * w + x] = (float)(var / 25 * CG_VAR_SCALE);
    }
}

static void test_features_random(void) {
  const int sizes[][2] = {{1, 1}, {1, 7}, {7, 1}, {2, 3}, {5, 5}, {13, 17}, {64, 48}, {97, 130}};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    const int h = sizes[t][0], w = sizes[t][1];
    const size_t n = (size_t)h * w;
    float *g = malloc(n * sizeof *g), *a = malloc(n * sizeof *a), *r = malloc(n * sizeof *r);
    char name[64];
    /* Full-range noise, and a nearly flat image (small variance on a large mean: the case a
     * naive float E[g^2]-E[g]^2 gets wrong). */
    for (int kind = 0; kind < 2; kind++) {
      if (kind == 0)
        cg_test_fill(g, n, 0.0f, 1.0f, 100 + t);
      else
        cg_test_fill(g, n, 0.9f, 0.9001f, 200 + t);
      cg_feat_sobel(g, h, w, a);
      naive_sobel(g, h, w, r);
      snprintf(name, sizeof name, "sobel %dx%d %s", h, w, kind ? "flat" : "noise");
      cg_test_close(name, a, r, n, 1e-5, 1e-5);
      cg_feat_localvar(g, h, w, a);
      naive_localvar(g, h, w, r);
      snprintf(name, sizeof name, "localvar %dx%d %s", h, w, kind ? "flat" : "noise");
      cg_test_close(name, a, r, n, kind ? 1e-12 : 1e-6, 1e-5);
    }
    free(g);
    free(a);
    free(r);
  }
}

static void test_features_hand(void) {
  const int h = 9, w = 12, edge = 6; /* g = 0 for x < edge, 1 from edge on */
  const size_t n = (size_t)h * w;
  float g[9 * 12], a[9 * 12], ref[9 * 12];
  /* Constant image: both features exactly 0. */
  for (size_t i = 0; i < n; i++) g[i] = 0.37f;
  cg_feat_sobel(g, h, w, a);
  float worst = 0;
  for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(a[i]));
  CG_TEST_CHECK(worst == 0.0f, "sobel of a constant image: %g", worst);
  cg_feat_localvar(g, h, w, a);
  worst = 0;
  for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(a[i]));
  CG_TEST_CHECK(worst < 1e-12f, "localvar of a constant image: %g", worst);
  /* Vertical step: Sobel is 1+2+1 = 4 on the two columns beside the edge (every row, borders
   * replicated), 0 elsewhere. Local variance: p = ones/5 of the window's columns, var p(1-p). */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) g[y * w + x] = x >= edge ? 1.0f : 0.0f;
  cg_feat_sobel(g, h, w, a);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) ref[y * w + x] = (x == edge - 1 || x == edge) ? 4.0f : 0.0f;
  cg_test_close("sobel vertical step", a, ref, n, 1e-6, 0);
  cg_feat_localvar(g, h, w, a);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int ones = 0;
      for (int dx = -2; dx <= 2; dx++) ones += clampi(x + dx, 0, w - 1) >= edge;
      double p = ones / 5.0;
      ref[y * w + x] = (float)(p * (1 - p) * CG_VAR_SCALE);
    }
  cg_test_close("localvar vertical step", a, ref, n, 1e-6, 1e-6);
  CG_TEST_CHECK(fabsf(a[edge] - 0.24f * CG_VAR_SCALE) < 1e-5f, "localvar at the edge %g", a[edge]);
  /* Horizontal step gives the transposed Sobel answer. */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) g[y * w + x] = y >= 4 ? 0.5f : 0.0f;
  cg_feat_sobel(g, h, w, a);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) ref[y * w + x] = (y == 3 || y == 4) ? 2.0f : 0.0f;
  cg_test_close("sobel horizontal step", a, ref, n, 1e-6, 0);
  /* Gray of pure colours. */
  const uint8_t px[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
  const float gref[4] = {0.299f, 0.587f, 0.114f, 1.0f};
  float gg[4];
  cg_feat_gray(px, 2, 2, gg);
  cg_test_close("gray of pure colours", gg, gref, 4, 1e-6, 0);
}

/* ---- synthetic dataset ---------------------------------------------------------------- */

static double fg_fraction(const uint8_t *m, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += m[i];
  return (double)k / n;
}

static void test_synth(void) {
  const int h = 64, w = 64;
  const size_t n = (size_t)h * w;
  uint8_t *ra = malloc(3 * n), *ma = malloc(n), *rb = malloc(3 * n), *mb = malloc(n);
  /* Determinism. */
  cg_synth_sample(7, 123, h, w, ra, ma);
  cg_synth_sample(7, 123, h, w, rb, mb);
  CG_TEST_CHECK(memcmp(ra, rb, 3 * n) == 0 && memcmp(ma, mb, n) == 0, "same key, other bytes");
  cg_synth_sample(7, 124, h, w, rb, mb);
  CG_TEST_CHECK(memcmp(ra, rb, 3 * n) != 0 && memcmp(ma, mb, n) != 0, "index 123 == 124");
  cg_synth_sample(8, 123, h, w, rb, mb);
  CG_TEST_CHECK(memcmp(ra, rb, 3 * n) != 0 && memcmp(ma, mb, n) != 0, "seed 7 == 8");
  /* A fixed fingerprint: the bytes must not change between machines or compilers (integer
   * arithmetic only). Update deliberately if the generator is changed on purpose. */
  uint64_t fp = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < 3 * n; i++) fp = (fp ^ ra[i]) * 0x100000001b3ULL;
  for (size_t i = 0; i < n; i++) fp = (fp ^ ma[i]) * 0x100000001b3ULL;
  CG_TEST_CHECK(fp == 0xd81238182ddc13a6ULL, "synth fingerprint %016llx changed",
                (unsigned long long)fp);
  printf("PASS synth determinism (fingerprint of seed 7, index 123, 64x64: %016llx)\n",
         (unsigned long long)fp);

  /* Masks 0/1, foreground fraction and colour contrast over 200 samples. */
  const int N = 200;
  double sum = 0, lo = 1, hi = 0, contrast = 0;
  int bad_values = 0, empty = 0, full = 0, outside = 0;
  for (int i = 0; i < N; i++) {
    cg_synth_sample(1, i, h, w, ra, ma);
    double fg[3] = {0}, bg[3] = {0};
    for (size_t p = 0; p < n; p++) {
      bad_values += ma[p] > 1;
      for (int k = 0; k < 3; k++) (ma[p] ? fg : bg)[k] += ra[3 * p + k];
    }
    double f = fg_fraction(ma, n);
    sum += f;
    lo = f < lo ? f : lo;
    hi = f > hi ? f : hi;
    empty += f == 0;
    full += f == 1;
    outside += f < 0.05 || f > 0.75;
    if (f > 0 && f < 1) {
      double d = 0;
      for (int k = 0; k < 3; k++) d += fabs(fg[k] / (f * n) - bg[k] / ((1 - f) * n));
      contrast += d;
    }
  }
  double mean = sum / N;
  CG_TEST_CHECK(bad_values == 0, "%d mask values not 0/1", bad_values);
  CG_TEST_CHECK(empty == 0 && full == 0, "%d empty and %d full masks", empty, full);
  CG_TEST_CHECK(mean >= 0.15 && mean <= 0.45, "mean foreground fraction %.3f", mean);
  CG_TEST_CHECK(outside <= N / 10, "%d of %d samples with fraction outside [0.05, 0.75]",
                outside, N);
  printf("PASS synth 64x64 x %d: foreground fraction mean %.3f (min %.3f max %.3f, %d outside "
         "[0.05,0.75]), mean L1 fg/bg colour distance %.1f\n",
         N, mean, lo, hi, outside, contrast / N);
  CG_TEST_CHECK(contrast / N > 40, "fg/bg colour distance %.1f", contrast / N);
  free(ra);
  free(ma);
  free(rb);
  free(mb);

  /* Several sizes, non-square included; the scene keeps its layout across resolutions:
   * the 2x-downsampled 2h x 2w mask agrees with the h x w mask almost everywhere. */
  const int sz[][2] = {{16, 16}, {17, 31}, {31, 17}, {48, 128}, {128, 48}, {100, 100},
                       {256, 256}, {1024, 1024}};
  for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++) {
    const int hh = sz[t][0], ww = sz[t][1];
    const size_t nn = (size_t)hh * ww, n2 = 4 * nn;
    uint8_t *r1 = malloc(3 * nn), *m1 = malloc(nn), *r2 = malloc(3 * n2), *m2 = malloc(n2);
    double fsum = 0, agree = 0;
    int bad = 0;
    const int reps = hh * ww > 100000 ? 2 : 20;
    for (int i = 0; i < reps; i++) {
      cg_synth_sample(5, 1000 + i, hh, ww, r1, m1);
      for (size_t p = 0; p < nn; p++) bad += m1[p] > 1;
      fsum += fg_fraction(m1, nn);
      cg_synth_sample(5, 1000 + i, 2 * hh, 2 * ww, r2, m2);
      size_t same = 0;
      for (int y = 0; y < hh; y++)
        for (int x = 0; x < ww; x++) {
          const size_t q = (size_t)(2 * y) * (2 * ww) + 2 * x;
          int votes = m2[q] + m2[q + 1] + m2[q + 2 * ww] + m2[q + 2 * ww + 1];
          same += (votes >= 2) == m1[(size_t)y * ww + x] || votes == 2;
        }
      agree += (double)same / nn;
    }
    agree /= reps;
    CG_TEST_CHECK(bad == 0, "%dx%d: mask values not 0/1", hh, ww);
    CG_TEST_CHECK(agree > (hh < 32 || ww < 32 ? 0.85 : 0.95), "%dx%d vs %dx%d masks agree on %.3f",
                  hh, ww, 2 * hh, 2 * ww, agree);
    printf("PASS synth %dx%d: mean fg %.3f, agreement with %dx%d %.3f\n", hh, ww, fsum / reps,
           2 * hh, 2 * ww, agree);
    free(r1);
    free(m1);
    free(r2);
    free(m2);
  }
}

/* Degenerate sizes must not crash and still give 0/1 masks. */
static void test_synth_odd_sizes(void) {
  const int sz[][2] = {{1, 1}, {1, 64}, {64, 1}, {2, 3}, {3, 1000}, {1000, 3}, {4096, 16}};
  for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++) {
    const size_t n = (size_t)sz[t][0] * sz[t][1];
    uint8_t *rgb = malloc(3 * n), *m = malloc(n);
    int bad = 0;
    for (int i = 0; i < 20; i++) {
      cg_synth_sample(2, i, sz[t][0], sz[t][1], rgb, m);
      for (size_t p = 0; p < n; p++) bad += m[p] > 1;
    }
    CG_TEST_CHECK(bad == 0, "%dx%d: %d mask values not 0/1", sz[t][0], sz[t][1], bad);
    free(rgb);
    free(m);
  }
  printf("PASS synth degenerate sizes (1x1 ... 4096x16)\n");
}

/* ---- flips ------------------------------------------------------------------------------ */

static void test_flips(void) {
  const int sizes[][2] = {{5, 7}, {8, 6}, {1, 9}, {9, 1}, {33, 20}};
  int combos[4] = {0};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    const int h = sizes[t][0], w = sizes[t][1];
    const size_t n = (size_t)h * w;
    uint8_t *rgb = malloc(3 * n), *m = malloc(n), *r0 = malloc(3 * n), *m0 = malloc(n);
    /* Each pixel carries its own coordinates; the mask is an asymmetric function of them. */
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        uint8_t *p = r0 + 3 * ((size_t)y * w + x);
        p[0] = (uint8_t)x;
        p[1] = (uint8_t)y;
        p[2] = (uint8_t)(x * 7 + y * 13);
        m0[(size_t)y * w + x] = (uint8_t)((x * 3 + y * 5 + x * y) % 7 < 3);
      }
    for (int64_t e = 0; e < 4; e++)
      for (int64_t idx = 0; idx < 50; idx++) {
        memcpy(rgb, r0, 3 * n);
        memcpy(m, m0, n);
        cg_augment_flip(11, e, idx, h, w, rgb, m, CG_FLIP_HV);
        /* Which flip: read from pixel (0,0); then every pixel must follow it. */
        const int hf = rgb[0] != 0, vf = rgb[1] != 0;
        if (h > 1 && w > 1) combos[hf + 2 * vf]++;
        int bad = 0;
        for (int y = 0; y < h; y++)
          for (int x = 0; x < w; x++) {
            const int sx = hf ? w - 1 - x : x, sy = vf ? h - 1 - y : y;
            const uint8_t *p = rgb + 3 * ((size_t)y * w + x), *q = r0 + 3 * ((size_t)sy * w + sx);
            bad += p[0] != q[0] || p[1] != q[1] || p[2] != q[2];
            bad += m[(size_t)y * w + x] != m0[(size_t)sy * w + sx];
          }
        CG_TEST_CHECK(bad == 0, "%dx%d epoch %lld index %lld: %d pixels inconsistent", h, w,
                      (long long)e, (long long)idx, bad);
        /* The same key flips back: an involution. */
        cg_augment_flip(11, e, idx, h, w, rgb, m, CG_FLIP_HV);
        CG_TEST_CHECK(memcmp(rgb, r0, 3 * n) == 0 && memcmp(m, m0, n) == 0,
                      "%dx%d: flipping twice is not the identity", h, w);
      }
    free(rgb);
    free(m);
    free(r0);
    free(m0);
  }
  /* 3 shapes x 200 keys: each combination near 150. */
  for (int k = 0; k < 4; k++)
    CG_TEST_CHECK(combos[k] > 90 && combos[k] < 210, "flip combination %d drawn %d times", k,
                  combos[k]);
  printf("PASS flips (none/h/v/both drawn %d/%d/%d/%d times)\n", combos[0], combos[1], combos[2],
         combos[3]);
}

/* --flip horizontal, vertical and d4 (cg_augment_flip's modes): on a 6 x 6 sample whose pixels
 * carry their coordinates, every output is one of the mode's symmetries of the input (the
 * transpose first, then the mirrors), each drawn about equally often over 800 keys, the
 * mirrors those --flip on draws for the same key, and a mode never makes a flip it leaves out. */
static void test_flip_modes(void) {
  enum { S = 6, NK = 800 };
  uint8_t r0[3 * S * S], m0[S * S], rgb[3 * S * S], m[S * S], rhv[3 * S * S], mhv[S * S];
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      uint8_t *p = r0 + 3 * ((size_t)y * S + x);
      p[0] = (uint8_t)x;
      p[1] = (uint8_t)y;
      p[2] = (uint8_t)(x * 7 + y * 13);
      m0[(size_t)y * S + x] = (uint8_t)(x * S + y); /* asymmetric: every pixel its own */
    }
  const int modes[] = {CG_FLIP_H, CG_FLIP_V, CG_FLIP_D4};
  const char *names[] = {"horizontal", "vertical", "d4"};
  for (int k = 0; k < 3; k++) {
    const int mode = modes[k];
    int seen[8] = {0}, bad = 0, same_mirrors = 0;
    for (int64_t idx = 0; idx < NK; idx++) {
      memcpy(rgb, r0, sizeof rgb);
      memcpy(m, m0, sizeof m);
      cg_augment_flip(23, 1, idx, S, S, rgb, m, mode);
      /* the symmetry drawn: the source of output pixel (0, 0) and of (0, 1) */
      const int tb = rgb[3 * 1 + 1] != rgb[1]; /* (0, 1)'s source row differs: transposed */
      /* (0, 0)'s source: the mirrors' corner, its coordinates exchanged by the transpose */
      const int hb = (tb ? rgb[1] : rgb[0]) != 0, vb = (tb ? rgb[0] : rgb[1]) != 0;
      const int code = hb * CG_FLIP_H + vb * CG_FLIP_V + tb * CG_FLIP_T;
      seen[code]++;
      bad += (code & ~mode) != 0;
      for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) { /* out(y, x) = in(T(H(V(y, x)))) read backwards */
          int yy = vb ? S - 1 - y : y, xx = hb ? S - 1 - x : x;
          if (tb) {
            const int t = yy;
            yy = xx;
            xx = t;
          }
          const uint8_t *p = rgb + 3 * ((size_t)y * S + x), *q = r0 + 3 * ((size_t)yy * S + xx);
          bad += p[0] != q[0] || p[1] != q[1] || p[2] != q[2] ||
                 m[(size_t)y * S + x] != m0[(size_t)yy * S + xx];
        }
      memcpy(rhv, r0, sizeof rhv);
      memcpy(mhv, m0, sizeof mhv);
      cg_augment_flip(23, 1, idx, S, S, rhv, mhv, CG_FLIP_HV);
      const int hv = (rhv[0] != 0) * CG_FLIP_H + (rhv[1] != 0) * CG_FLIP_V;
      same_mirrors += (hv & mode) == (code & (CG_FLIP_H | CG_FLIP_V));
    }
    const int kinds = mode == CG_FLIP_D4 ? 8 : 2;
    int even = 1;
    for (int c = 0; c < 8; c++)
      if ((c & ~mode) == 0) even &= seen[c] > NK / kinds * 3 / 4 && seen[c] < NK / kinds * 5 / 4;
    CG_TEST_CHECK(bad == 0 && even && same_mirrors == NK,
                  "--flip %s: %d pixels or flips wrong, draws %d %d %d %d %d %d %d %d, %d of %d "
                  "mirrors as --flip on's", names[k], bad, seen[0], seen[1], seen[2], seen[3],
                  seen[4], seen[5], seen[6], seen[7], same_mirrors, NK);
    if (bad == 0 && even && same_mirrors == NK)
      printf("PASS --flip %s: %d symmetries, each drawn %d..%d times of %d, the mirrors --flip "
             "on's\n", names[k], kinds, NK / kinds * 3 / 4, NK / kinds * 5 / 4, NK);
  }
}

/* ---- packing ------------------------------------------------------------------------------ */

static void test_pack(void) {
  const int h = 37, w = 53;
  const size_t n = (size_t)h * w;
  uint8_t *rgb = malloc(3 * n), *m = malloc(n);
  cg_synth_sample(3, 9, h, w, rgb, m);
  float *scratch = malloc(3 * n * sizeof(float));
  float *x = malloc((5 * n + 8) * sizeof(float));
  float *g = malloc(n * sizeof(float)), *sob = malloc(n * sizeof(float)),
        *var = malloc(n * sizeof(float));
  cg_feat_gray(rgb, h, w, g);
  cg_feat_sobel(g, h, w, sob);
  cg_feat_localvar(g, h, w, var);
  for (int nfeat = 0; nfeat <= CG_NFEAT; nfeat += CG_NFEAT) {
    const int c = 3 + nfeat;
    for (size_t i = 0; i < 5 * n + 8; i++) x[i] = -1234.5f; /* canary */
    cg_pack_input(rgb, h, w, nfeat, nfeat ? scratch : NULL, x);
    int bad = 0;
    float lo = 1e9f, hi = -1e9f;
    for (size_t i = 0; i < n; i++) {
      for (int k = 0; k < 3; k++) {
        const float want = ((float)rgb[3 * i + k] / 255.0f - 0.5f) / 0.25f;
        bad += x[i * c + k] != want;
        lo = fminf(lo, x[i * c + k]);
        hi = fmaxf(hi, x[i * c + k]);
      }
      if (nfeat) {
        bad += x[i * c + 3] != sob[i];
        bad += x[i * c + 4] != var[i];
      }
    }
    CG_TEST_CHECK(bad == 0, "nfeat %d: %d packed values differ", nfeat, bad);
    CG_TEST_CHECK(lo >= -2.0f && hi <= 2.0f, "rgb channels in [%g, %g]", lo, hi);
    CG_TEST_CHECK(x[c * n] == -1234.5f, "nfeat %d: wrote past h*w*%d", nfeat, c);
    printf("PASS pack nfeat %d (rgb channels in [%.3f, %.3f])\n", nfeat, lo, hi);
  }
  /* Hand values: 0 -> -2, 255 -> +2, 51 -> -1.2. */
  const uint8_t px[3] = {0, 255, 51};
  float one[3];
  cg_pack_input(px, 1, 1, 0, NULL, one);
  CG_TEST_CHECK(one[0] == -2.0f && one[1] == 2.0f && fabsf(one[2] + 1.2f) < 1e-6f,
                "pack of (0,255,51): %g %g %g", one[0], one[1], one[2]);
  free(rgb);
  free(m);
  free(scratch);
  free(x);
  free(g);
  free(sob);
  free(var);
}

static void time_pipeline(void) {
  const int sizes[] = {64, 256};
  for (int t = 0; t < 2; t++) {
    const int s = sizes[t];
    const size_t n = (size_t)s * s;
    uint8_t *rgb = malloc(3 * n), *m = malloc(n);
    float *scratch = malloc(3 * n * sizeof(float)), *x = malloc(5 * n * sizeof(float));
    const int reps = s == 64 ? 2000 : 200;
    double t_synth = 0, t_pack = 0;
    for (int i = -10; i < reps; i++) { /* 10 warm-up rounds */
      double t0 = cg_now();
      cg_synth_sample(1, i + 10, s, s, rgb, m);
      double t1 = cg_now();
      cg_augment_flip(1, 0, i + 10, s, s, rgb, m, CG_FLIP_HV);
      cg_pack_input(rgb, s, s, CG_NFEAT, scratch, x);
      double t2 = cg_now();
      if (i >= 0) {
        t_synth += t1 - t0;
        t_pack += t2 - t1;
      }
    }
    printf("INFO timing %dx%d, one thread: synth %.3f ms, flip+pack(5 ch) %.3f ms per sample\n",
           s, s, 1e3 * t_synth / reps, 1e3 * t_pack / reps);
    free(rgb);
    free(m);
    free(scratch);
    free(x);
  }
}

int main(void) {
  test_features_hand();
  test_features_random();
  test_synth();
  test_synth_odd_sizes();
  test_flips();
  test_flip_modes();
  test_pack();
  time_pipeline();
  return cg_test_done("test_data");
}
