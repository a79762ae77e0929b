/* test_labels.c: multi-class data and metrics (issue 13) on the CPU.
 *  - K x K confusion counts and the figures derived from them on hand-made matrices (per-class
 *    IoU and Dice, mIoU over the classes present in truth or prediction, pixel accuracy), the
 *    ignore label left out of the counts, binary counts with an ignore label;
 *  - label masks (cg_fit_pair): 8- and 16-bit gray values and palette indices read as class
 *    ids, the palette read back (cg_png_read_palette); a value that is no class id, a 16-bit
 *    value over 255 and an RGB mask fail with a message naming the file, the value and K;
 *    binary with an ignore label keeps it; binary without one is today's 0/1 rule;
 *  - the synthetic K-class generator: K = 1 is bit for bit the binary one, K = 4 has every
 *    class and the ignore band, and the images of K = 1 and K >= 2 share the layout.
 * Files go to a temporary directory removed at the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fit.h"
#include "metrics.h"
#include "png_io.h"
#include "synth.h"
#include "testutil.h"

static char root[64];

/* ---- confusion arithmetic ---------------------------------------------------------------- */

static int near(double a, double b) { return a - b < 1e-12 && b - a < 1e-12; }

static void test_confusion(void) {
  /* K = 3, truth x pred:   class 2 never occurs in truth nor prediction
   *   [ 5 1 0 ]
   *   [ 2 4 0 ]
   *   [ 0 0 0 ] */
  const int64_t m[9] = {5, 1, 0, 2, 4, 0, 0, 0, 0};
  double iou, dice;
  int64_t gt, pr;
  CG_TEST_CHECK(cg_confk_class(m, 3, 0, &iou, &dice, &gt, &pr) == 1, "class 0 present");
  CG_TEST_CHECK(near(iou, 5.0 / 8) && near(dice, 10.0 / 13) && gt == 6 && pr == 7,
                "class 0: iou %g dice %g gt %lld pred %lld", iou, dice, (long long)gt,
                (long long)pr);
  CG_TEST_CHECK(cg_confk_class(m, 3, 1, &iou, &dice, &gt, &pr) == 1, "class 1 present");
  CG_TEST_CHECK(near(iou, 4.0 / 7) && near(dice, 8.0 / 11) && gt == 6 && pr == 5,
                "class 1: iou %g dice %g", iou, dice);
  CG_TEST_CHECK(cg_confk_class(m, 3, 2, &iou, &dice, &gt, &pr) == 0 && gt == 0 && pr == 0,
                "class 2 absent");
  const double miou = cg_confk_miou(m, 3), want = (5.0 / 8 + 4.0 / 7) / 2;
  CG_TEST_CHECK(near(miou, want), "mIoU %.15g, want %.15g (absent class left out)", miou, want);
  CG_TEST_CHECK(near(cg_confk_mdice(m, 3), (10.0 / 13 + 8.0 / 11) / 2), "mDice");
  CG_TEST_CHECK(near(cg_confk_acc(m, 3), 9.0 / 12), "accuracy %g", cg_confk_acc(m, 3));
  /* mmsegmentation's per-class Acc (tp / the class's truth) and mAcc (their mean over the
   * classes in the truth) */
  double acc;
  CG_TEST_CHECK(cg_confk_class_acc(m, 3, 0, &acc) == 1 && near(acc, 5.0 / 6), "class 0 acc %g",
                acc);
  CG_TEST_CHECK(cg_confk_class_acc(m, 3, 1, &acc) == 1 && near(acc, 4.0 / 6), "class 1 acc %g",
                acc);
  CG_TEST_CHECK(cg_confk_class_acc(m, 3, 2, &acc) == 0, "class 2 has no acc");
  CG_TEST_CHECK(near(cg_confk_macc(m, 3), (5.0 / 6 + 4.0 / 6) / 2), "mAcc %g",
                cg_confk_macc(m, 3));
  /* a class only predicted counts in the mean with IoU 0, not in mAcc (no truth) */
  const int64_t m2[4] = {3, 1, 0, 0}; /* truth all 0; one pixel predicted 1 */
  CG_TEST_CHECK(near(cg_confk_miou(m2, 2), (3.0 / 4 + 0) / 2), "predicted-only class: %g",
                cg_confk_miou(m2, 2));
  CG_TEST_CHECK(near(cg_confk_macc(m2, 2), 3.0 / 4), "predicted-only class, mAcc %g",
                cg_confk_macc(m2, 2));
  const int64_t z[4] = {0, 0, 0, 0};
  CG_TEST_CHECK(cg_confk_miou(z, 2) == 0 && cg_confk_acc(z, 2) == 0 && cg_confk_macc(z, 2) == 0,
                "empty matrix");

  /* counting: ignore pixels and values >= K are left out */
  const uint8_t y[10] = {0, 1, 2, 255, 1, 1, 0, 2, 255, 7};
  const uint8_t p[10] = {0, 1, 1, 2, 1, 0, 2, 2, 0, 1};
  int64_t c[9] = {0};
  cg_confk_add(c, 3, p, y, 10, 255);
  const int64_t cw[9] = {1, 0, 1, 1, 2, 0, 0, 1, 1};
  CG_TEST_CHECK(!memcmp(c, cw, sizeof c), "cg_confk_add counts");
  int64_t tot = 0;
  for (int i = 0; i < 9; i++) tot += c[i];
  CG_TEST_CHECK(tot == 7, "%lld pixels counted, want 7 (2 ignore, 1 out of range)",
                (long long)tot);

  /* binary with an ignore label: 255 left out, other values > 0 foreground */
  const uint8_t yb[6] = {0, 1, 255, 3, 0, 255}, pb[6] = {0, 1, 1, 0, 1, 0};
  cg_confusion_t a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
  cg_confusion_add_ignore(&a, pb, yb, 6, 255);
  CG_TEST_CHECK(a.tp == 1 && a.fp == 1 && a.fn == 1 && a.tn == 1,
                "binary+ignore %lld %lld %lld %lld",
                (long long)a.tp, (long long)a.fp, (long long)a.fn, (long long)a.tn);
  cg_confusion_add_ignore(&b, pb, yb, 6, -1);
  cg_confusion_t c0 = {0, 0, 0, 0};
  cg_confusion_add(&c0, pb, yb, 6);
  CG_TEST_CHECK(!memcmp(&b, &c0, sizeof b), "ignore -1 is cg_confusion_add");
  printf("PASS confusion arithmetic\n");
}

/* ---- label masks ------------------------------------------------------------------------- */

#define S 8 /* the files are S x S; fitted at S: a pure copy */

static void path_of(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", root, name);
}

/* An S x S RGB image to pair with the masks. */
static void write_image(char *path, size_t n) {
  uint8_t rgb[S * S * 3];
  for (int i = 0; i < S * S * 3; i++) rgb[i] = (uint8_t)(i * 7);
  char err[512];
  path_of(path, n, "img.png");
  CG_TEST_CHECK(!cg_png_write(path, rgb, S, S, CG_PNG_RGB8, err, sizeof err), "%s", err);
}

/* Fits image + mask at K / ignore; returns the call's result, the mask in out. */
static int fit(const char *img, const char *mask, int K, int ignore, uint8_t *out, char *err,
               size_t errlen) {
  uint8_t rgb[S * S * 3];
  const cg_fit_opts_t o = {.size = S, .nclass = K, .ignore = ignore};
  return cg_fit_pair(img, mask, &o, rgb, out, NULL, NULL, err, errlen);
}

static void test_masks(void) {
  char img[256], m8[256], m16[256], mp[256], mrgb[256], err[1024];
  write_image(img, sizeof img);
  uint8_t ids[S * S], out[S * S];
  uint16_t ids16[S * S];
  for (int i = 0; i < S * S; i++) {
    ids[i] = (uint8_t)(i % 5 == 4 ? 255 : i % 4); /* 0..3 and the ignore label */
    ids16[i] = ids[i];
  }
  /* 8-bit gray ids */
  path_of(m8, sizeof m8, "m8.png");
  CG_TEST_CHECK(!cg_png_write(m8, ids, S, S, CG_PNG_GRAY8, err, sizeof err), "%s", err);
  CG_TEST_CHECK(!fit(img, m8, 4, 255, out, err, sizeof err), "gray8: %s", err);
  CG_TEST_CHECK(!memcmp(out, ids, sizeof ids), "gray8 ids differ");
  /* 16-bit gray ids */
  path_of(m16, sizeof m16, "m16.png");
  CG_TEST_CHECK(!cg_png_write(m16, ids16, S, S, CG_PNG_GRAY16, err, sizeof err), "%s", err);
  CG_TEST_CHECK(!fit(img, m16, 4, 255, out, err, sizeof err), "gray16: %s", err);
  CG_TEST_CHECK(!memcmp(out, ids, sizeof ids), "gray16 ids differ");
  /* palette indices, not colours (VOC): entry c has a colour unrelated to c */
  uint8_t pal[768], got[768];
  for (int c = 0; c < 256; c++) {
    pal[3 * c] = (uint8_t)(255 - c);
    pal[3 * c + 1] = 17;
    pal[3 * c + 2] = (uint8_t)c;
  }
  path_of(mp, sizeof mp, "mp.png");
  CG_TEST_CHECK(!cg_png_write_indexed(mp, ids, S, S, pal, 256, err, sizeof err), "%s", err);
  CG_TEST_CHECK(!fit(img, mp, 4, 255, out, err, sizeof err), "palette: %s", err);
  CG_TEST_CHECK(!memcmp(out, ids, sizeof ids), "palette indices differ");
  uint8_t *whole = NULL;
  int wh = 0, ww = 0;
  CG_TEST_CHECK(!cg_png_read_labels(mp, 0, &whole, &wh, &ww, err, sizeof err) && wh == S &&
                    ww == S && !memcmp(whole, ids, sizeof ids), "cg_png_read_labels: %s", err);
  free(whole);
  whole = NULL;
  CG_TEST_CHECK(!cg_png_read_labels(m16, 0, &whole, &wh, &ww, err, sizeof err) &&
                    !memcmp(whole, ids, sizeof ids), "cg_png_read_labels 16-bit: %s", err);
  free(whole);
  int npal = 0;
  CG_TEST_CHECK(!cg_png_read_palette(mp, 0, got, &npal, err, sizeof err) && npal == 256 &&
                    !memcmp(got, pal, 768), "palette read back: %d entries", npal);
  CG_TEST_CHECK(!cg_png_read_palette(m8, 0, got, &npal, err, sizeof err) && npal == 0,
                "a gray PNG has no palette");
  /* a value >= K that is not the ignore label: the file, the value and K are named */
  int rc = fit(img, m8, 3, 255, out, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && strstr(err, m8) && strstr(err, "mask value 3") &&
                    strstr(err, "--num-classes 3"), "out of range: '%s'", err);
  rc = fit(img, mp, 4, -1, out, err, sizeof err); /* 255 is no class id without an ignore */
  CG_TEST_CHECK(rc == -1 && strstr(err, mp) && strstr(err, "mask value 255"),
                "255 without ignore: '%s'", err);
  ids16[9] = 300;
  CG_TEST_CHECK(!cg_png_write(m16, ids16, S, S, CG_PNG_GRAY16, err, sizeof err), "%s", err);
  rc = fit(img, m16, 4, 255, out, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && strstr(err, m16) && strstr(err, "300") &&
                    !strstr(err, "decode failed"), "16-bit 300: '%s'", err);
  /* an RGB mask cannot hold class ids */
  uint8_t rgbm[S * S * 3];
  for (int i = 0; i < S * S * 3; i++) rgbm[i] = ids[i / 3];
  path_of(mrgb, sizeof mrgb, "mrgb.png");
  CG_TEST_CHECK(!cg_png_write(mrgb, rgbm, S, S, CG_PNG_RGB8, err, sizeof err), "%s", err);
  rc = fit(img, mrgb, 4, 255, out, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && strstr(err, mrgb) && strstr(err, "RGB mask") &&
                    !strstr(err, "decode failed"), "RGB: '%s'", err);
  /* ... known from the header alone, so the directory source refuses it at open */
  int rh, rw;
  rc = cg_png_read_size_as(mrgb, 0, CG_PNG_AS_LABEL, &rh, &rw, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && strstr(err, "RGB mask"), "RGB header as labels: '%s'", err);
  rc = cg_png_read_size_as(mrgb, 0, CG_PNG_AS_MASK, &rh, &rw, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && rh == S && rw == S, "RGB header as a binary mask: '%s'", err);
  /* binary: today's rule (any value > 0 is foreground) and, with an ignore label, that label
   * kept and the rest 0/1 */
  CG_TEST_CHECK(!fit(img, m8, 1, -1, out, err, sizeof err), "binary: %s", err);
  size_t bad = 0;
  for (int i = 0; i < S * S; i++) bad += out[i] != (ids[i] != 0);
  CG_TEST_CHECK(bad == 0, "binary: %zu pixels differ from value > 0", bad);
  CG_TEST_CHECK(!fit(img, m8, 1, 255, out, err, sizeof err), "binary+ignore: %s", err);
  bad = 0;
  for (int i = 0; i < S * S; i++) bad += out[i] != (ids[i] == 255 ? 255 : ids[i] != 0);
  CG_TEST_CHECK(bad == 0, "binary+ignore: %zu pixels differ", bad);
  printf("PASS label masks\n");
}

/* ---- synthetic K classes ----------------------------------------------------------------- */

static void test_synth(void) {
  const int h = 48, w = 64;
  uint8_t *r1 = malloc(h * w * 3), *m1 = malloc(h * w);
  uint8_t *r2 = malloc(h * w * 3), *m2 = malloc(h * w);
  int64_t hist[256] = {0};
  size_t fg_diff = 0;
  for (int i = 0; i < 40; i++) {
    cg_synth_sample(9, i, h, w, r1, m1);
    cg_synth_sample_k(9, i, h, w, 1, -1, r2, m2);
    CG_TEST_CHECK(!memcmp(r1, r2, h * w * 3) && !memcmp(m1, m2, h * w), "K = 1 differs, %d", i);
    cg_synth_sample_k(9, i, h, w, 4, 255, r2, m2);
    for (int p = 0; p < h * w; p++) {
      hist[m2[p]]++;
      fg_diff += (m1[p] != 0) != (m2[p] != 0); /* the same shapes, only labelled */
    }
  }
  CG_TEST_CHECK(fg_diff == 0, "K = 4 foreground differs from the binary one at %zu px", fg_diff);
  int64_t other = 0;
  for (int v = 4; v < 255; v++) other += hist[v];
  CG_TEST_CHECK(hist[0] && hist[1] && hist[2] && hist[3] && hist[255] && !other,
                "K = 4 labels: %lld %lld %lld %lld ignore %lld other %lld", (long long)hist[0],
                (long long)hist[1], (long long)hist[2], (long long)hist[3], (long long)hist[255],
                (long long)other);
  printf("synthetic K = 4 over 40 images: class pixels %lld %lld %lld %lld, ignore %lld\n",
         (long long)hist[0], (long long)hist[1], (long long)hist[2], (long long)hist[3],
         (long long)hist[255]);
  /* no ignore label: no band */
  cg_synth_sample_k(9, 3, h, w, 4, -1, r2, m2);
  int maxv = 0;
  for (int p = 0; p < h * w; p++) maxv = m2[p] > maxv ? m2[p] : maxv;
  CG_TEST_CHECK(maxv <= 3, "ignore -1 gave label %d", maxv);
  free(r1), free(m1), free(r2), free(m2);
  printf("PASS synthetic classes\n");
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}

int main(void) {
  test_confusion();
  test_synth();
#ifdef COGPU_HAVE_PNG
  snprintf(root, sizeof root, "/tmp/cg_labels.XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_masks();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
#else
  printf("SKIP label masks: built without libpng\n");
#endif
  return cg_test_done("test_labels");
}
