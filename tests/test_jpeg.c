/* test_jpeg.c: JPEG images (issue 13): the decoder against djpeg, its limits, and JPEG in the
 * image-directory source.
 *
 *  - Files made here with cjpeg from PPMs of smooth random content: baseline colour 4:2:0,
 *    4:4:4, gray, progressive, restart markers, arithmetic coding, odd sizes (1x1, 37x23,
 *    301x17). Our full-size decode (cg_jpeg_read_rgb: no DCT scaling, no fitting) must equal
 *    `djpeg -rgb -ppm` on the same file byte for byte. (Skipped, with a note, when cjpeg/djpeg
 *    are absent: scripts/common.sh installs libjpeg-turbo-progs for the tests.)
 *  - CMYK (Adobe) written through libjpeg here: decoded to the RGB of the formula in jpeg_io.h.
 *  - A progressive file whose first scan is repeated 600 times is refused (more than 500 scans);
 *    20 repeats still decode.
 *  - A header claiming 30000x30000 is refused from the header (message naming the file and
 *    --max-image-pixels); truncated and corrupted files fail naming the file; a JPEG named .png
 *    and a PNG named .jpg decode by content.
 *  - DCT scaling: a 1024x768 JPEG fitted to 64 decodes at 1/8 and stays close to a full decode
 *    + cg_fit_square; odd sizes (500x333 to 128, 260x1000 to 32, ...) decoded scaled stay
 *    aligned with their masks to 0.05 output pixels (the phase of a smooth wave); a 4000x4000
 *    JPEG fitted to 256 peaks under 8 MB in a fresh process (a whole decode: over 40 MB).
 *  - The source: NAME.JPG, NAME.jpeg, NAME.png (holding a JPEG) with PNG masks open, load and
 *    pass cg_source_check; NAME.jpg beside NAME.png is an error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>

#include "cgds.h"
#include "fit.h"
#include "image_io.h"
#include "jpeg_io.h"
#include "log.h" /* cg_now */
#include "png_io.h"
#include "rng.h"
#include "source.h"
#include "testutil.h"

static char root[64];

static char *at(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

/* dir = root/rel, made with its images/ and masks/ directories. */
static void pair_dirs(char *dir, size_t n, const char *rel) {
  char p[256];
  at(dir, n, rel);
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/images", dir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/masks", dir);
  mkdir(p, 0755);
}

/* Smooth content (a few gradients plus a little noise): like a photo, so the chroma and the
 * IDCT rounding paths all matter. */
static uint8_t *make_rgb(int h, int w, uint64_t seed) {
  uint8_t *p = malloc((size_t)h * w * 3);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 0, 0);
  const int a = (int)(cg_rng_next(&r) % 7) + 1, b = (int)(cg_rng_next(&r) % 5) + 1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *q = p + ((size_t)y * w + x) * 3;
      q[0] = (uint8_t)(x * a + y + (cg_rng_next(&r) & 7));
      q[1] = (uint8_t)(y * b + 2 * x);
      q[2] = (uint8_t)((x ^ y) * 3 + (cg_rng_next(&r) & 15));
    }
  return p;
}

static void write_ppm(const char *path, const uint8_t *rgb, int h, int w) {
  FILE *f = fopen(path, "wb");
  fprintf(f, "P6\n%d %d\n255\n", w, h);
  fwrite(rgb, 1, (size_t)h * w * 3, f);
  fclose(f);
}

/* Reads a binary PPM (P6, maxval 255) as djpeg writes it. */
static uint8_t *read_ppm(const char *path, int *h, int *w) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  int maxv = 0;
  uint8_t *p = NULL;
  if (fscanf(f, "P6 %d %d %d", w, h, &maxv) == 3 && maxv == 255 && fgetc(f) != EOF) {
    p = malloc((size_t)*h * *w * 3);
    if (fread(p, 1, (size_t)*h * *w * 3, f) != (size_t)*h * *w * 3) {
      free(p);
      p = NULL;
    }
  }
  fclose(f);
  return p;
}

static int have_tools(void) {
  return system("command -v cjpeg > /dev/null && command -v djpeg > /dev/null") == 0;
}

static int run_cmd(const char *fmt, const char *a, const char *b, const char *opts) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, fmt, opts, a, b);
  return system(cmd);
}

static void test_scan_bomb(void);

static void test_vs_djpeg(void) {
  if (!have_tools()) {
    printf("SKIP djpeg comparison: cjpeg/djpeg not found (apt-get install libjpeg-turbo-progs)\n");
    return;
  }
  static const struct {
    const char *name, *opts;
    int h, w;
  } cases[] = {
      {"baseline", "-quality 85", 64, 96},
      {"s444", "-quality 92 -sample 1x1", 40, 40},
      {"gray", "-grayscale -quality 80", 33, 47},
      {"progressive", "-progressive -quality 75", 120, 77},
      {"restart", "-restart 1 -quality 90", 70, 130},
      {"arith", "-arithmetic", 50, 50},
      {"odd37x23", "-quality 60", 23, 37},
      {"odd301x17", "-sample 2x2 -progressive", 17, 301},
      {"one", "", 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char ppm[128], jpg[128], out[128], rel[64], err[512];
    snprintf(rel, sizeof rel, "%s.ppm", cases[i].name);
    at(ppm, sizeof ppm, rel);
    snprintf(rel, sizeof rel, "%s.jpg", cases[i].name);
    at(jpg, sizeof jpg, rel);
    snprintf(rel, sizeof rel, "%s.djpeg.ppm", cases[i].name);
    at(out, sizeof out, rel);
    uint8_t *src = make_rgb(cases[i].h, cases[i].w, 100 + i);
    write_ppm(ppm, src, cases[i].h, cases[i].w);
    free(src);
    if (run_cmd("cjpeg %s -outfile %s %s", jpg, ppm, cases[i].opts) ||
        run_cmd("djpeg %s -outfile %s %s", out, jpg, "-rgb -ppm")) {
      CG_TEST_CHECK(0, "%s: cjpeg/djpeg failed", cases[i].name);
      continue;
    }
    int rh = 0, rw = 0, h = 0, w = 0;
    uint8_t *ref = read_ppm(out, &rh, &rw), *got = NULL;
    int rc = cg_jpeg_read_rgb(jpg, CG_PNG_DEFAULT_MAX_PIXELS, &got, &h, &w, err, sizeof err);
    CG_TEST_CHECK(rc == 0, "%s: %s", cases[i].name, err);
    CG_TEST_CHECK(ref != NULL, "%s: cannot read djpeg's output", cases[i].name);
    if (!rc && ref) {
      CG_TEST_CHECK(h == rh && w == rw, "%s: %dx%d vs djpeg %dx%d", cases[i].name, w, h, rw, rh);
      size_t diff = 0, n = (size_t)h * w * 3, first = n;
      if (h == rh && w == rw)
        for (size_t k = 0; k < n; k++)
          if (got[k] != ref[k]) diff++, first = first == n ? k : first;
      CG_TEST_CHECK(diff == 0, "%s: %zu of %zu bytes differ from djpeg (first at %zu)",
                    cases[i].name, diff, n, first);
      if (diff == 0 && h == rh) printf("PASS djpeg %s %dx%d: identical\n", cases[i].name, w, h);
    }
    /* by content, whatever the name: the same file as x.png reads the same */
    snprintf(rel, sizeof rel, "%s.as.PNG", cases[i].name);
    char alias[128];
    at(alias, sizeof alias, rel);
    CG_TEST_CHECK(link(jpg, alias) == 0, "link");
    uint8_t *viaimg = NULL;
    rc = cg_image_read_rgb(alias, 0, CG_EXIF_STORED, &viaimg, &h, &w, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && got && !memcmp(viaimg, got, (size_t)h * w * 3), "%s named .PNG: %s",
                  cases[i].name, rc ? err : "differs");
    free(viaimg);
    free(ref);
    free(got);
  }
  test_scan_bomb();
}

static uint8_t *slurp(const char *path, size_t *n);
static void spit(const char *path, const uint8_t *p, size_t n);
static int contains(const char *s, const char *sub);

/* The first scan (DC, first pass) of a progressive file repeated k times: libjpeg only warns
 * ("inconsistent progression") and decodes every copy, so scans cost time without bound unless
 * capped. */
static void test_scan_bomb(void) {
  char src[128], dst[128], err[512] = "";
  at(src, sizeof src, "progressive.jpg");
  size_t n = 0;
  uint8_t *b = slurp(src, &n);
  size_t sos = 2;
  while (b && sos + 4 < n && !(b[sos] == 0xFF && b[sos + 1] == 0xDA)) sos++;
  if (!b || sos + 4 >= n) {
    CG_TEST_CHECK(0, "no scan in progressive.jpg");
    free(b);
    return;
  }
  size_t end = sos + 2 + ((size_t)b[sos + 2] << 8 | b[sos + 3]); /* after the SOS header */
  while (end + 1 < n && !(b[end] == 0xFF && b[end + 1] != 0 && (b[end + 1] & 0xF8) != 0xD0)) end++;
  const size_t seg = end - sos;
  static const int copies[] = {20, 600};
  for (int c = 0; c < 2; c++) {
    const size_t m = n + seg * copies[c];
    uint8_t *o = malloc(m);
    memcpy(o, b, end);
    for (int k = 0; k < copies[c]; k++) memcpy(o + end + seg * k, b + sos, seg);
    memcpy(o + end + seg * copies[c], b + end, n - end);
    at(dst, sizeof dst, "scans.jpg");
    spit(dst, o, m);
    free(o);
    uint8_t *px = NULL;
    int h, w;
    const int rc = cg_jpeg_read_rgb(dst, 0, &px, &h, &w, err, sizeof err);
    free(px);
    if (copies[c] < 500) CG_TEST_CHECK(rc == 0, "%d repeated scans: %s", copies[c], err);
    else CG_TEST_CHECK(rc && contains(err, "progressive scans"), "%d scans: rc %d '%s'", copies[c], rc, err);
  }
  printf("scan bomb: %s\n", err);
  free(b);
}

/* A CMYK JPEG through libjpeg, Adobe-inverted as Photoshop writes it (flat colour patches). */
static void test_cmyk(void) {
  char path[128], err[512];
  at(path, sizeof path, "cmyk.jpg");
  const int h = 16, w = 16;
  uint8_t px[16 * 16 * 4];
  for (int i = 0; i < h * w; i++) { /* inverted CMYK: 255 = no ink */
    px[4 * i] = 255;         /* no cyan */
    px[4 * i + 1] = 55;      /* much magenta */
    px[4 * i + 2] = 155;     /* some yellow */
    px[4 * i + 3] = 205;     /* a little black */
  }
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  FILE *f = fopen(path, "wb");
  jpeg_stdio_dest(&c, f);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 4;
  c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  c.write_Adobe_marker = TRUE;
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < (JDIMENSION)h) {
    JSAMPROW r = px + (size_t)c.next_scanline * w * 4;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  fclose(f);
  uint8_t *rgb = NULL;
  int gh, gw;
  int rc = cg_jpeg_read_rgb(path, 0, &rgb, &gh, &gw, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "cmyk: %s", err);
  if (!rc) {
    const int want[3] = {255 * 205 / 255, 55 * 205 / 255, 155 * 205 / 255};
    int worst = 0;
    for (int i = 0; i < h * w; i++)
      for (int k = 0; k < 3; k++) {
        int d = abs(rgb[3 * i + k] - want[k]);
        worst = d > worst ? d : worst;
      }
    CG_TEST_CHECK(worst <= 3, "cmyk: worst difference %d from the formula", worst);
    if (worst <= 3) printf("PASS cmyk (Adobe) to RGB: worst difference %d\n", worst);
  }
  free(rgb);
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  uint8_t *p = malloc(*n);
  if (fread(p, 1, *n, f) != *n) *n = 0;
  fclose(f);
  return p;
}

static void spit(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(p, 1, n, f);
  fclose(f);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static void test_bad_files(void) {
  char good[128], bad[128], err[512];
  at(good, sizeof good, "good.jpg");
  uint8_t *rgb = make_rgb(64, 64, 7), *out = NULL;
  CG_TEST_CHECK(cg_jpeg_write(good, rgb, 64, 64, 90, err, sizeof err) == 0, "write: %s", err);
  free(rgb);
  size_t n = 0;
  uint8_t *bytes = slurp(good, &n);
  int h, w;
  /* the SOF's height and width patched to 30000 x 30000: refused from the header */
  size_t sof = 2;
  while (sof + 9 < n && !(bytes[sof] == 0xFF && (bytes[sof + 1] == 0xC0 || bytes[sof + 1] == 0xC2)))
    sof++;
  CG_TEST_CHECK(sof + 9 < n, "no SOF marker");
  uint8_t *big = malloc(n);
  memcpy(big, bytes, n);
  big[sof + 5] = 30000 >> 8, big[sof + 6] = 30000 & 255, big[sof + 7] = 30000 >> 8,
  big[sof + 8] = 30000 & 255;
  at(bad, sizeof bad, "bomb.jpg");
  spit(bad, big, n);
  int rc = cg_jpeg_read_rgb(bad, CG_PNG_DEFAULT_MAX_PIXELS, &out, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && contains(err, bad) && contains(err, "30000x30000") &&
                    contains(err, "--max-image-pixels"), "bomb: rc %d, '%s'", rc, err);
  printf("bomb: %s\n", err);
  rc = cg_image_read_size(bad, CG_PNG_DEFAULT_MAX_PIXELS, CG_EXIF_STORED, &h, &w, NULL, err,
                          sizeof err);
  CG_TEST_CHECK(rc && contains(err, "over the limit"), "bomb size: '%s'", err);
  free(big);
  /* truncated at half, and just before EOI */
  const size_t cuts[] = {n / 2, n - 2, 1, 0};
  for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
    at(bad, sizeof bad, "cut.jpg");
    spit(bad, bytes, cuts[k]);
    out = NULL;
    rc = cg_jpeg_read_rgb(bad, 0, &out, &h, &w, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, bad) && out == NULL, "cut at %zu: rc %d '%s'", cuts[k], rc, err);
    printf("cut at %zu of %zu: %s\n", cuts[k], n, err);
  }
  /* entropy-coded data overwritten with garbage */
  uint8_t *cor = malloc(n);
  memcpy(cor, bytes, n);
  for (size_t i = n / 3; i < n - 2; i++) cor[i] = (uint8_t)(i * 37);
  at(bad, sizeof bad, "corrupt.jpg");
  spit(bad, cor, n);
  rc = cg_jpeg_read_rgb(bad, 0, &out, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && contains(err, bad) && contains(err, "JPEG decode failed"), "corrupt: '%s'", err);
  printf("corrupt: %s\n", err);
  free(cor);
  /* in memory (the shard path): the same decode as from the file */
  rc = cg_jpeg_read_rgb(good, 0, &out, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "good: %s", err);
  free(out);
  free(bytes);
  /* a PNG named .jpg reads as the PNG it is */
  at(bad, sizeof bad, "png_named.JPG");
  uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CG_TEST_CHECK(cg_png_write(bad, px, 2, 2, CG_PNG_RGB8, err, sizeof err) == 0, "%s", err);
  out = NULL;
  rc = cg_image_read_rgb(bad, 0, CG_EXIF_STORED, &out, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && h == 2 && w == 2 && !memcmp(out, px, 12), "png named .JPG: %s", err);
  free(out);
  /* neither: named for what it is not, and what it looks like (it was "not a PNG file"); a BMP
   * cut in its header is the BMP reader's to name */
  static const struct {
    const char *name, *bytes;
    size_t n;
    const char *want;
  } other[] = {
      {"empty.jpg", "", 0, "not a PNG, JPEG, GIF, TIFF or BMP file (empty: 0 bytes)"},
      {"bmp.jpg", "BM6\0\0\0", 6, "BMP decode failed: unexpected end of file (truncated)"},
      {"heic.png", "\0\0\0\x18" "ftypheic", 12, "(starts with '\\x00\\x00\\x00\\x18': a HEIC"},
      {"webp.jpg", "RIFF\x10\0\0\0WEBPVP8 ", 16, "a WebP?"},
      {"text.png", "hello", 5, "not a PNG, JPEG, GIF, TIFF or BMP file (starts with 'hell')"},
  };
  for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
    at(bad, sizeof bad, other[i].name);
    spit(bad, (const uint8_t *)other[i].bytes, other[i].n);
    const char *who[3] = {"size", "rgb", "fit"};
    for (int k = 0; k < 3; k++) {
      uint8_t o[8 * 8 * 3], om[8 * 8];
      out = NULL;
      rc = k == 0   ? cg_image_read_size(bad, 0, CG_EXIF_STORED, &h, &w, NULL, err, sizeof err)
           : k == 1 ? cg_image_read_rgb(bad, 0, CG_EXIF_STORED, &out, &h, &w, err, sizeof err)
                    : cg_fit_png(bad, NULL, 0, 8, 0, 0, o, om, NULL, NULL, err, sizeof err);
      free(out);
      CG_TEST_CHECK(rc && contains(err, bad) && contains(err, other[i].want), "%s (%s): '%s'",
                    other[i].name, who[k], err);
    }
    printf("%s: %s\n", other[i].name, err);
  }
}

typedef struct {
  int h, w;
} size_seen_t;

static int seen_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  ((size_seen_t *)ctx)->h = h;
  ((size_seen_t *)ctx)->w = w;
  return 0;
}

static int seen_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)ctx, (void)y, (void)px, (void)why, (void)whylen;
  return 0;
}

static void test_scaling(void) {
  char path[128], err[512];
  at(path, sizeof path, "large.jpg");
  const int H = 768, W = 1024, S = 64;
  /* smooth, as photos mostly are: on fine noise a 1/8 DCT decode (an area average) and the
   * bilinear taps of a full decode (a point sample) rightly differ */
  uint8_t *rgb = malloc((size_t)H * W * 3);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *q = rgb + ((size_t)y * W + x) * 3;
      q[0] = (uint8_t)(x * 255 / W);
      q[1] = (uint8_t)(y * 255 / H);
      q[2] = (uint8_t)(128 + 100 * ((x / 128 + y / 128) % 2 ? 1 : -1) * (x % 128) / 128);
    }
  CG_TEST_CHECK(cg_jpeg_write(path, rgb, H, W, 90, err, sizeof err) == 0, "%s", err);
  free(rgb);
  size_seen_t seen = {0, 0};
  const cg_png_sink_t sink = {seen_begin, seen_row, &seen};
  cg_jpeg_read_t r = {.min_side = S};
  int rc = cg_jpeg_read_rows(path, NULL, 0, &r, &sink, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && seen.h == 96 && seen.w == 128 && r.full_h == H && r.full_w == W &&
                    r.scale == 1,
                "scale for %d: decoded %dx%d of %dx%d (%s)", S, seen.w, seen.h, r.full_w,
                r.full_h, err);
  r.min_side = 200;
  rc = cg_jpeg_read_rows(path, NULL, 0, &r, &sink, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && seen.h == 288 && seen.w == 384, "scale for 200: %dx%d", seen.w, seen.h);
  /* fitted with scaling vs a full decode + the fitting rule */
  uint8_t *full = NULL, *a = malloc(S * S * 3), *b = malloc(S * S * 3), *ma = malloc(S * S),
          *mb = malloc(S * S), *zeros = calloc((size_t)H * W, 1);
  int h, w;
  rc = cg_jpeg_read_rgb(path, 0, &full, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "%s", err);
  cg_fit_square(full, zeros, h, w, S, a, ma);
  rc = cg_fit_png(path, NULL, 0, S, H, W, b, mb, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && h == H && w == W, "fit: %s (%dx%d)", err, w, h);
  double sum = 0;
  for (int i = 0; i < S * S * 3; i++) sum += abs(a[i] - b[i]);
  const double mad = sum / (S * S * 3);
  CG_TEST_CHECK(mad < 2.0, "scaled fit differs from the full fit by %.2f on average", mad);
  if (mad < 2.0) printf("PASS DCT-scaled fit of %dx%d to %d: mean |diff| %.2f vs full decode + fit\n", W, H, S, mad);
  free(full), free(a), free(b), free(ma), free(mb), free(zeros);
}

/* Phase of the profile p[0..n) against sin(2 pi (i + 0.5) / 8), as a shift in output pixels. */
static double phase_shift(const double *p, int n) {
  double sn = 0, cs = 0;
  for (int i = 0; i < n; i++) {
    const double t = 2 * M_PI * (i + 0.5) / 8;
    sn += p[i] * sin(t);
    cs += p[i] * cos(t);
  }
  return atan2(cs, sn) * 8 / (2 * M_PI);
}

/* Image against mask: the fit must map an output pixel to the same source point whether the JPEG
 * is decoded at a reduced DCT scale or not (the mask, a PNG, is fitted from its full size). The
 * image is a smooth gray wave of period 8 output pixels along x and along y, placed in the
 * file's own coordinates where the fitting rule puts the output pixels: its phase in the fitted
 * sample is 0 when aligned (DCT scaling and bilinear taps only damp a wave this smooth). A
 * scaled decode once took its rounded-up size for the file's extent and rounded the crop at
 * its scale: 0.4-0.7 output pixels off. */
static void test_alignment(void) {
  static const struct {
    int w, h, s;
    cg_crop_t win; /* scale 0: the fitting rule; else a training crop's window */
  } cases[] = {{500, 333, 128, {0, 0, 0, 0}},        {260, 1000, 32, {0, 0, 0, 0}},
               {421, 637, 48, {0, 0, 0, 0}},         {777, 555, 200, {0, 0, 0, 0}},
               {96, 96, 32, {0, 0, 0, 0}},           {1500, 1000, 96, {0.6, 0.2, 0.8, 0}},
               {1000, 700, 48, {0.93, 1.0, 0.0, 0}}, {640, 1280, 40, {0.45, 0.7, 0.33, 0}}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    const int W = cases[c].w, H = cases[c].h, S = cases[c].s, M = W < H ? W : H;
    const cg_crop_t *win = cases[c].win.scale > 0 ? &cases[c].win : NULL;
    double x0 = (W - M) / 2, y0 = (H - M) / 2, side = M; /* file pixels */
    if (win) cg_crop_px(win, H, W, &x0, &y0, &side);
    const double period = 8.0 * side / S;
    uint8_t *rgb = malloc((size_t)H * W * 3);
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const double v = 128 + 50 * sin(2 * M_PI * (x + 0.5 - x0) / period) +
                         50 * sin(2 * M_PI * (y + 0.5 - y0) / period);
        memset(rgb + ((size_t)y * W + x) * 3, (int)lrint(v), 3);
      }
    char path[128], rel[64], err[512];
    snprintf(rel, sizeof rel, "wave%zu.jpg", c);
    at(path, sizeof path, rel);
    CG_TEST_CHECK(cg_jpeg_write(path, rgb, H, W, 100, err, sizeof err) == 0, "%s", err);
    free(rgb);
    uint8_t *out = malloc((size_t)S * S * 3), *om = malloc((size_t)S * S);
    double *px = calloc((size_t)S, sizeof *px), *py = calloc((size_t)S, sizeof *py);
    const cg_fit_opts_t fo = {.size = S, .expect_h = H, .expect_w = W, .win = win};
    int rc = cg_fit_pair(path, NULL, &fo, out, om, NULL, NULL, err, sizeof err);
    CG_TEST_CHECK(rc == 0, "fit %s: %s", rel, err);
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) {
        px[x] += out[((size_t)y * S + x) * 3];
        py[y] += out[((size_t)y * S + x) * 3];
      }
    const double dx = phase_shift(px, S), dy = phase_shift(py, S);
    CG_TEST_CHECK(fabs(dx) < 0.05 && fabs(dy) < 0.05,
                  "%dx%d JPEG fitted to %d: off by %.3f px in x, %.3f in y", W, H, S, dx, dy);
    if (fabs(dx) < 0.05 && fabs(dy) < 0.05)
      printf("PASS alignment: %dx%d JPEG %s to %d (DCT scaled): %.3f px in x, %.3f in y\n", W,
             H, win ? "cropped by a window" : "fitted", S, dx, dy);
    free(out), free(om), free(px), free(py);
  }
}

/* A zoom-out window (scale > 1) over a JPEG decoded at a DCT scale: the padding must start where
 * the file ends, for the image (decoded at a reduced scale) and its mask (a PNG at full size)
 * alike. The image is a flat gray 200 (never the padding's 128 inside: bilinear taps clamp at
 * its border) and the mask all 1: every output pixel is padding gray exactly where the mask
 * holds the pad label. */
static void test_zoom_out(void) {
  static const struct {
    int w, h, s;
    cg_crop_t win;
  } cases[] = {{1501, 1001, 64, {1.7, 0.3, 0.6, 255}}, {1003, 2005, 96, {2.0, 0.9, 0.1, 255}},
               {999, 998, 40, {3.3, 0.5, 0.5, 255}}, {640, 480, 100, {1.2, 0.0, 1.0, 255}}};
  int bad = 0;
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    const int W = cases[c].w, H = cases[c].h, S = cases[c].s;
    uint8_t *rgb = malloc((size_t)H * W * 3), *mask = malloc((size_t)H * W);
    memset(rgb, 200, (size_t)H * W * 3);
    memset(mask, 255, (size_t)H * W);
    char ip[128], mp[128], rel[64], err[512];
    snprintf(rel, sizeof rel, "zoom%zu.jpg", c);
    at(ip, sizeof ip, rel);
    snprintf(rel, sizeof rel, "zoom%zu.png", c);
    at(mp, sizeof mp, rel);
    CG_TEST_CHECK(cg_jpeg_write(ip, rgb, H, W, 95, err, sizeof err) == 0, "%s", err);
    CG_TEST_CHECK(cg_png_write(mp, mask, H, W, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
    free(rgb), free(mask);
    uint8_t *out = malloc((size_t)S * S * 3), *om = malloc((size_t)S * S);
    const cg_fit_opts_t fo = {.size = S, .expect_h = H, .expect_w = W, .win = &cases[c].win};
    CG_TEST_CHECK(cg_fit_pair(ip, mp, &fo, out, om, NULL, NULL, err, sizeof err) == 0, "%s", err);
    int padded = 0, wrong = 0;
    for (int i = 0; i < S * S; i++) {
      const int gray = out[3 * i] == CG_CROP_PAD_RGB && out[3 * i + 1] == CG_CROP_PAD_RGB &&
                       out[3 * i + 2] == CG_CROP_PAD_RGB;
      padded += om[i] == 255;
      wrong += gray != (om[i] == 255) || (om[i] != 255 && om[i] != 1);
    }
    double x0, y0, side; /* the expected share of padding: 1 - the file's area in the window */
    cg_crop_px(&cases[c].win, H, W, &x0, &y0, &side);
    const double ix = fmin(x0 + side, W) - fmax(x0, 0), iy = fmin(y0 + side, H) - fmax(y0, 0);
    const double want = 1 - ix * iy / (side * side), got = (double)padded / (S * S);
    if (wrong || fabs(got - want) > 2.0 / S) {
      printf("  %dx%d JPEG, window %g at (%g, %g) to %d: %d pixel(s) where the image's padding "
             "is not the mask's, padding %.3f of the crop (want %.3f)\n", W, H,
             cases[c].win.scale, cases[c].win.u, cases[c].win.v, S, wrong, got, want);
      bad++;
    }
    free(out), free(om);
  }
  CG_TEST_CHECK(bad == 0, "zoom-out windows: %d of %d misaligned", bad,
                (int)(sizeof cases / sizeof *cases));
  if (!bad) printf("PASS zoom-out windows over DCT-scaled JPEGs: the padding aligned\n");
}

static long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* Peak memory of a 4000x4000 JPEG fitted to 256 (decoded at 1/8, row by row) vs a whole decode
 * (48 MB of pixels): each in a fresh process whose peak RSS starts below the image's size. */
static void test_memory(void) {
  char path[128], err[512];
  at(path, sizeof path, "big.jpg");
  const int H = 4000, W = 4000, S = 256;
  pid_t pid = fork();
  if (pid == 0) { /* the writer: the parent never holds the 48 MB */
    uint8_t *rgb = malloc((size_t)H * W * 3);
    for (size_t i = 0; i < (size_t)H * W * 3; i++) rgb[i] = (uint8_t)((i / 3) % W / 16 + i % 3 * 40);
    _exit(cg_jpeg_write(path, rgb, H, W, 85, err, sizeof err) ? 1 : 0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CG_TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "could not write %s", path);
  long kb[2] = {0, 0};
  for (int whole = 0; whole < 2; whole++) {
    int fd[2];
    if (pipe(fd)) return;
    pid = fork();
    if (pid == 0) {
      close(fd[0]);
      const long r0 = maxrss_kb();
      uint8_t *out = malloc(S * S * 3), *om = malloc(S * S), *px = NULL;
      int h, w, rc;
      if (whole) {
        rc = cg_jpeg_read_rgb(path, 0, &px, &h, &w, err, sizeof err);
        if (!rc) memset(px, 1, (size_t)h * w * 3); /* touched, as a decode would */
      } else {
        rc = cg_fit_png(path, NULL, 0, S, 0, 0, out, om, &h, &w, err, sizeof err);
      }
      long d = rc ? -1 : maxrss_kb() - r0;
      if (write(fd[1], &d, sizeof d) != sizeof d) _exit(1);
      _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &kb[whole], sizeof kb[whole]) != sizeof kb[whole]) kb[whole] = -1;
    close(fd[0]);
    waitpid(pid, &st, 0);
  }
  CG_TEST_CHECK(kb[0] >= 0 && kb[0] < 8 * 1024, "fit of %dx%d to %d: peak +%ld KB", W, H, S, kb[0]);
  CG_TEST_CHECK(kb[1] > 40 * 1024, "whole decode: peak +%ld KB (the measure is not sensitive?)", kb[1]);
  printf("PASS memory: %dx%d JPEG fitted to %d peaks at +%.1f MB (whole decode: +%.1f MB)\n", W, H,
         S, kb[0] / 1024.0, kb[1] / 1024.0);
}

static void test_source(void) {
  char dir[128], p[192], err[1024];
  pair_dirs(dir, sizeof dir, "ds");
  static const char *const imgs[] = {"a.JPG", "b.jpeg", "c.png", "d.png"};
  static const char *const masks[] = {"a.png", "b.png", "c.PNG", "d.png"};
  const int H = 40, W = 50;
  uint8_t *rgb = make_rgb(H, W, 3), *mask = malloc(H * W);
  for (int i = 0; i < H * W; i++) mask[i] = (uint8_t)((i % W) > 25 ? 255 : 0);
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/images/%s", dir, imgs[i]);
    if (i < 3) CG_TEST_CHECK(cg_jpeg_write(p, rgb, H, W, 90, err, sizeof err) == 0, "%s", err);
    else CG_TEST_CHECK(cg_png_write(p, rgb, H, W, CG_PNG_RGB8, err, sizeof err) == 0, "%s", err);
    snprintf(p, sizeof p, "%s/masks/%s", dir, masks[i]);
    CG_TEST_CHECK(cg_png_write(p, mask, H, W, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
  }
  cg_source_opts_t o = {.size = 32, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  cg_source_t *s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(s && s->count == 4, "open: %s", s ? "wrong count" : err);
  if (s) {
    uint8_t r[32 * 32 * 3], m[32 * 32];
    for (int i = 0; i < 4; i++) {
      int rc = cg_source_load(s, i, r, m, err, sizeof err);
      CG_TEST_CHECK(rc == 0, "load %d: %s", i, err);
      CG_TEST_CHECK(!strcmp(cg_source_name(s, i), (const char[][2]){"a", "b", "c", "d"}[i]),
                    "name %d: %s", i, cg_source_name(s, i));
      CG_TEST_CHECK(m[5] == 0 && m[31] == 1, "mask %d", i);
    }
    CG_TEST_CHECK(cg_source_check(s, 0, 1, 2, NULL, NULL, NULL, NULL, 0) == 0,
                  "check-data found bad files");
    cg_source_destroy(s);
  }
  /* a corrupt JPEG is a bad sample at load (check-data finds it), an oversized one at open */
  snprintf(p, sizeof p, "%s/images/b.jpeg", dir);
  FILE *f = fopen(p, "r+b");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  CG_TEST_CHECK(ftruncate(fileno(f), n / 2) == 0, "truncate");
  fclose(f);
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "open with a truncated JPEG: %s", err);
  if (s) {
    int64_t *bad = NULL;
    int64_t nb = cg_source_check(s, 0, 1, 2, NULL, NULL, &bad, NULL, 0);
    CG_TEST_CHECK(nb == 1 && bad && bad[0] == 1, "check-data: %lld bad", (long long)nb);
    uint8_t r[32 * 32 * 3], m[32 * 32];
    int rc = cg_source_load(s, 1, r, m, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, "b.jpeg"), "load truncated: '%s'", err);
    free(bad);
    cg_source_destroy(s);
  }
  o.max_pixels = 100;
  o.skip_bad = 1;
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "over the limit"), "all over the limit: '%s'", err);
  cg_source_destroy(s);
  o.max_pixels = CG_PNG_DEFAULT_MAX_PIXELS;
  /* NAME.jpg beside NAME.png: ambiguous */
  snprintf(p, sizeof p, "%s/images/a.png", dir);
  CG_TEST_CHECK(cg_png_write(p, rgb, H, W, CG_PNG_RGB8, err, sizeof err) == 0, "%s", err);
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "same name"), "a.JPG + a.png: '%s'", s ? "opened" : err);
  cg_source_destroy(s);
  /* a mask with the JPEG's sides swapped, the JPEG without EXIF: the mismatch says so and
   * blames no orientation (test_exif: one with an orientation names it) */
  pair_dirs(dir, sizeof dir, "exif");
  snprintf(p, sizeof p, "%s/images/e.jpg", dir);
  CG_TEST_CHECK(cg_jpeg_write(p, rgb, H, W, 90, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/masks/e.png", dir);
  CG_TEST_CHECK(cg_png_write(p, mask, W, H, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "e.png") && contains(err, "(sides swapped)") &&
                    !contains(err, "EXIF"),
                "sides swapped: '%s'", s ? "opened" : err);
  if (!s) printf("sides swapped: %s\n", err);
  cg_source_destroy(s);
  free(rgb);
  free(mask);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

/* Binary JPEG masks (Kvasir-SEG's layout, images/NAME.jpg with masks/NAME.jpg): foreground
 * where the decoded luma is >= 128, not > 0, which would take the compression's ringing around
 * edges for foreground; as class ids (K >= 2) a JPEG mask is refused naming the file. */
static void test_jpeg_masks(void) {
  char dir[128], p[192], err[1024];
  pair_dirs(dir, sizeof dir, "jm");
  const int S = 32;
  uint8_t *rgb = make_rgb(S, S, 9), gray[32 * 32 * 3];
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      memset(gray + 3 * (y * S + x), (x - 16) * (x - 16) + (y - 12) * (y - 12) < 90 ? 255 : 0, 3);
  snprintf(p, sizeof p, "%s/images/k.jpg", dir);
  CG_TEST_CHECK(cg_jpeg_write(p, rgb, S, S, 90, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/masks/k.jpg", dir);
  CG_TEST_CHECK(cg_jpeg_write(p, gray, S, S, 30, err, sizeof err) == 0, "%s", err);
  uint8_t *dec = NULL, out[32 * 32 * 3], m[32 * 32];
  int h, w, ringing = 0, bad = 0;
  CG_TEST_CHECK(cg_jpeg_read_rgb(p, 0, &dec, &h, &w, err, sizeof err) == 0, "%s", err);
  cg_source_opts_t o = {.size = S, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  cg_source_t *s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(s && s->count == 1, "open with a JPEG mask: %s", s ? "count" : err);
  if (s && dec && cg_source_load(s, 0, out, m, err, sizeof err) == 0) {
    for (int i = 0; i < S * S; i++) {
      const int luma =
          (19595 * dec[3 * i] + 38470 * dec[3 * i + 1] + 7471 * dec[3 * i + 2] + 0x8000) >> 16;
      ringing += luma > 0 && luma < 128;
      bad += m[i] != (luma >= 128);
    }
    CG_TEST_CHECK(ringing > 0 && bad == 0, "JPEG mask: %d pixels differ from luma >= 128 (%d "
                  "ringing pixels)", bad, ringing);
    if (!bad) printf("PASS a JPEG mask is foreground where luma >= 128 (%d ringing pixels "
                     "below it)\n", ringing);
  }
  cg_source_destroy(s);
  o.nclass = 2;
  o.ignore = 255;
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(!s && strstr(err, "masks/k.jpg: a JPEG mask") && strstr(err, "need a PNG"),
                "a JPEG label mask: %s", s ? "opened" : err);
  if (!s) printf("PASS a JPEG mask as class ids is refused: %s\n", err);
  cg_source_destroy(s);
  free(dec);
  free(rgb);
}

/* ---- EXIF orientation ------------------------------------------------------------------ */

static void put16(uint8_t *p, unsigned v, int be) {
  p[be ? 0 : 1] = (uint8_t)(v >> 8);
  p[be ? 1 : 0] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v, int be) {
  put16(p + (be ? 0 : 2), v >> 16, be);
  put16(p + (be ? 2 : 0), v & 0xffff, be);
}

/* An APP1 segment's data: "Exif\0\0", a TIFF header, IFD0 with a Make entry (ASCII, its value
 * elsewhere) and then the orientation entry (tag 274, type, value), nothing after it. */
static size_t exif_app1(uint8_t *out, int be, unsigned type, unsigned orient) {
  memcpy(out, "Exif\0\0", 6);
  uint8_t *t = out + 6;
  t[0] = t[1] = be ? 'M' : 'I';
  put16(t + 2, 42, be);
  put32(t + 4, 8, be);
  put16(t + 8, 2, be);
  uint8_t *e = t + 10;
  put16(e, 0x010f, be);
  put16(e + 2, 2, be);
  put32(e + 4, 6, be);
  put32(e + 8, 200, be);
  e += 12;
  put16(e, 274, be);
  put16(e + 2, (uint16_t)type, be);
  put32(e + 4, 1, be);
  put32(e + 8, 0, be);
  put16(e + 8, orient, be);
  return (size_t)(e + 12 - out);
}

/* A JPEG file of rgb (h x w) with the APP1 segments segs[0..nseg) after its SOI. */
static void write_with_app1(const char *path, const uint8_t *rgb, int h, int w,
                            uint8_t *const *segs, const size_t *lens, int nseg) {
  uint8_t *enc = NULL;
  size_t n = 0;
  char err[512];
  CG_TEST_CHECK(cg_jpeg_encode(path, rgb, h, w, 90, &enc, &n, err, sizeof err) == 0, "%s", err);
  FILE *f = fopen(path, "wb");
  if (!f || !enc) {
    CG_TEST_CHECK(0, "cannot write %s", path);
    if (f) fclose(f);
    free(enc);
    return;
  }
  fwrite(enc, 1, 2, f);
  for (int i = 0; i < nseg; i++) {
    const uint8_t m[4] = {0xFF, 0xE1, (uint8_t)((lens[i] + 2) >> 8), (uint8_t)(lens[i] + 2)};
    fwrite(m, 1, 4, f);
    fwrite(segs[i], 1, lens[i], f);
  }
  fwrite(enc + 2, 1, n - 2, f);
  fclose(f);
  free(enc);
}

static void test_exif(void) {
  uint8_t a[128], *seg[2];
  size_t len[2];
  int bad = 0;
  for (int be = 0; be < 2; be++)
    for (unsigned o = 1; o <= 8; o++) {
      const size_t n = exif_app1(a, be, 3, o);
      bad += cg_jpeg_exif_orientation(a, n) != (int)o;
      for (size_t cut = 0; cut < n; cut++) /* every prefix ends before the entry does */
        bad += cg_jpeg_exif_orientation(a, cut) != 0;
    }
  CG_TEST_CHECK(bad == 0, "EXIF orientation, II and MM, every prefix: %d wrong", bad);
  size_t n = exif_app1(a, 0, 4, 6);
  put32(a + 6 + 10 + 12 + 8, 6, 0); /* a LONG's value fills the four bytes */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 6, "a LONG orientation is read, as by Pillow");
  n = exif_app1(a, 1, 3, 6);
  put32(a + 6 + 10 + 12 + 4, 2, 1); /* two values: Pillow's tuple turns nothing */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "a count of 2 is none");
  n = exif_app1(a, 0, 7, 6);
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "an UNDEFINED orientation is none");
  n = exif_app1(a, 1, 3, 9);
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "orientation 9 is none");
  n = exif_app1(a, 0, 3, 6);
  put32(a + 6 + 4, 0xfffffff0u, 0); /* IFD0 past the end */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "IFD0 past the segment");
  n = exif_app1(a, 0, 3, 6);
  put16(a + 6 + 8, 0xffff, 0); /* 65535 entries in a short segment: the Make one, then 274 */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 6, "a count past the end still finds 274");
  put16(a + 6 + 10 + 12, 0x0113, 0); /* and without it, stops at the end */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "a count past the end");
  n = exif_app1(a, 0, 3, 6);
  a[7] = 'X'; /* byte order */
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "unknown byte order");
  n = exif_app1(a, 0, 3, 6);
  a[5] = 'x';
  CG_TEST_CHECK(cg_jpeg_exif_orientation(a, n) == 0, "not Exif\\0\\0");
  if (!cg_test_failures) printf("PASS EXIF orientation from II and MM segments; cut, malformed "
                                "and foreign ones give none\n");

  /* files: an XMP segment before the EXIF one; the size is the stored one */
  char path[192], err[1024];
  const int H = 24, W = 40;
  uint8_t *rgb = make_rgb(H, W, 21);
  static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
  uint8_t b[128];
  seg[0] = (uint8_t *)xmp;
  len[0] = sizeof xmp;
  seg[1] = b;
  len[1] = exif_app1(b, 1, 3, 6);
  at(path, sizeof path, "exif6.jpg");
  write_with_app1(path, rgb, H, W, seg, len, 2);
  int h = 0, w = 0, o = -1;
  CG_TEST_CHECK(cg_jpeg_read_header(path, 0, CG_EXIF_STORED, &h, &w, &o, err, sizeof err) == 0 &&
                    h == H && w == W && o == 6,
                "header of an EXIF 6 file: %dx%d, orientation %d (%s)", w, h, o, err);
  o = -1;
  CG_TEST_CHECK(cg_image_read_size(path, 0, CG_EXIF_STORED, &h, &w, &o, err, sizeof err) == 0 &&
                    o == 6,
                "cg_image_read_size's orientation: %d", o);
  uint8_t *dec = NULL;
  CG_TEST_CHECK(cg_jpeg_read_rgb(path, 0, &dec, &h, &w, err, sizeof err) == 0 && h == H &&
                w == W, "decoded as stored: %dx%d", w, h);
  free(dec);
  cg_image_size_mismatch(path, CG_EXIF_STORED, H, W, W, H, err, sizeof err);
  CG_TEST_CHECK(strstr(err, "EXIF orientation 6") && strstr(err, "turned 90 degrees clockwise") &&
                    strstr(err, "--exif-orientation apply reads it turned"),
                "the mismatch names the orientation and the flag: %s", err);
  cg_image_size_mismatch(path, CG_EXIF_APPLY, W, H, H, W, err, sizeof err); /* read turned */
  CG_TEST_CHECK(strstr(err, "--exif-orientation apply reads the image turned") &&
                    strstr(err, "--exif-orientation stored reads them so"),
                "turned, the mismatch points to stored: %s", err);
  at(path, sizeof path, "plain.jpg");
  write_with_app1(path, rgb, H, W, seg, len, 1);
  CG_TEST_CHECK(cg_image_read_size(path, 0, CG_EXIF_STORED, &h, &w, &o, err, sizeof err) == 0 &&
                    o == 0,
                "no EXIF: orientation %d", o);
  cg_image_size_mismatch(path, CG_EXIF_STORED, H, W, W, H, err, sizeof err);
  CG_TEST_CHECK(!strstr(err, "EXIF") && strstr(err, "sides swapped"), "no EXIF: %s", err);

  /* the source counts the images a viewer turns: b (3) first, c (6); a (1) and d (none) not */
  char dir[128], p[256];
  pair_dirs(dir, sizeof dir, "exif-src");
  const unsigned orients[4] = {1, 3, 6, 0};
  uint8_t *sq = make_rgb(16, 16, 5), m[16 * 16] = {0};
  for (int i = 0; i < 4; i++) {
    len[0] = exif_app1(b, i & 1, 3, orients[i]);
    seg[0] = b;
    snprintf(p, sizeof p, "%s/images/%c.jpg", dir, 'a' + i);
    write_with_app1(p, sq, 16, 16, seg, len, orients[i] ? 1 : 0);
    snprintf(p, sizeof p, "%s/masks/%c.png", dir, 'a' + i);
    CG_TEST_CHECK(cg_png_write(p, m, 16, 16, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
  }
  cg_source_opts_t so = {.size = 16, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  cg_source_t *s = cg_source_png_dir(dir, &so, err, sizeof err);
  CG_TEST_CHECK(s && s->exif_turned == 2 && s->exif_orient == 3 && s->exif_first &&
                    strstr(s->exif_first, "images/b.jpg"),
                "the source's EXIF count: %s %lld %d %s", s ? "" : err,
                s ? (long long)s->exif_turned : -1LL, s ? s->exif_orient : -1,
                s && s->exif_first ? s->exif_first : "(none)");
  cg_source_destroy(s);
  free(sq);
  free(rgb);
  if (!cg_test_failures) printf("PASS EXIF orientation in files: read, named in the size "
                                "mismatch, counted by the source\n");
}

/* Which APP1 is the EXIF, and a file of very many APP1 markers. */
static void test_exif_markers(void) {
  char path[192], err[1024];
  const int H = 24, W = 40;
  uint8_t *rgb = make_rgb(H, W, 22);
  static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
  /* the file's EXIF is its first APP1 that starts "Exif\0" (as Pillow reads it): one without
   * an orientation before one with 6 turns nothing */
  uint8_t b1[128], b2[128];
  uint8_t *three[3] = {(uint8_t *)xmp, b1, b2};
  size_t lens3[3] = {sizeof xmp, exif_app1(b1, 0, 3, 6), exif_app1(b2, 0, 3, 6)};
  put16(b1 + 6 + 10 + 12, 0x0131, 0); /* the first one's tag 274 becomes Software */
  at(path, sizeof path, "exif-second.jpg");
  write_with_app1(path, rgb, H, W, three, lens3, 3);
  int h = 0, w = 0, o = -1;
  CG_TEST_CHECK(cg_jpeg_read_header(path, 0, CG_EXIF_APPLY, &h, &w, &o, err, sizeof err) == 0 &&
                    o == 0 && h == H && w == W,
                "the second EXIF segment's orientation was taken: %d (%s)", o, err);
  /* 200,000 empty APP1 markers (800 KB): read in a linear pass (libjpeg's saved-marker list
   * took minutes for as many), the orientation of the EXIF among them still found */
  {
    enum { NM = 200000 };
    uint8_t *many = malloc((size_t)NM * 4 + 128), *enc = NULL;
    size_t ne = 0, k = 0;
    CG_TEST_CHECK(cg_jpeg_encode("many", rgb, H, W, 90, &enc, &ne, err, sizeof err) == 0, "%s",
                  err);
    for (int i = 0; i < NM; i++) {
      const uint8_t m[4] = {0xFF, 0xE1, 0, 2};
      memcpy(many + k, m, 4);
      k += 4;
      if (i == NM / 2) { /* the EXIF, halfway */
        const size_t n6 = exif_app1(b2, 1, 3, 6);
        const uint8_t mh[4] = {0xFF, 0xE1, (uint8_t)((n6 + 2) >> 8), (uint8_t)(n6 + 2)};
        memcpy(many + k, mh, 4);
        memcpy(many + k + 4, b2, n6);
        k += 4 + n6;
      }
    }
    at(path, sizeof path, "many-app1.jpg");
    FILE *f = fopen(path, "wb");
    if (f && enc) {
      fwrite(enc, 1, 2, f);
      fwrite(many, 1, k, f);
      fwrite(enc + 2, 1, ne - 2, f);
    }
    if (f) fclose(f);
    const double t0 = cg_now();
    o = -1;
    const int rc = cg_jpeg_read_header(path, 0, CG_EXIF_APPLY, &h, &w, &o, err, sizeof err);
    const double dt = cg_now() - t0;
    CG_TEST_CHECK(rc == 0 && o == 6 && h == W && dt < 5.0,
                  "200,000 APP1 markers: rc %d, orientation %d, %.2f s (%s)", rc, o, dt, err);
    if (rc == 0 && dt < 5.0) printf("PASS 200,000 APP1 markers read in %.2f s\n", dt);
    free(many);
    free(enc);
  }
  free(rgb);
}

/* Pixel (x, y) of the S x S image that orientation o makes of a (S x S, RGB), by PIL's table
 * (ImageOps.exif_transpose's methods), for test_exif_fit. */
static const uint8_t *pil_turned(const uint8_t *a, int S, int o, int x, int y) {
  int sx = x, sy = y;
  switch (o) {
  case 2: sx = S - 1 - x; break;                     /* FLIP_LEFT_RIGHT */
  case 3: sx = S - 1 - x, sy = S - 1 - y; break;     /* ROTATE_180 */
  case 4: sy = S - 1 - y; break;                     /* FLIP_TOP_BOTTOM */
  case 5: sx = y, sy = x; break;                     /* TRANSPOSE */
  case 6: sx = y, sy = S - 1 - x; break;             /* ROTATE_270 */
  case 7: sx = S - 1 - y, sy = S - 1 - x; break;     /* TRANSVERSE */
  case 8: sx = S - 1 - y, sy = x; break;             /* ROTATE_90 */
  default: break;
  }
  return a + 3 * ((size_t)sy * S + sx);
}

/* CG_EXIF_APPLY through the fitting, as the loader fits a photo: a 400x248 JPEG fitted to 32
 * (a DCT-scaled decode, 1/4) turned equals it fitted as stored and then turned (the fitting's
 * bilinear sampling, align_corners=False, and its centred square are symmetric under the
 * square's symmetries), within rounding; the turned decode keeps the scale where the mirrored
 * sides are multiples of 8 and decodes at full size where they are not (401x251, mirrored). */
static void test_exif_fit(void) {
  enum { H = 248, W = 400, S = 32 };
  uint8_t *rgb = make_rgb(H, W, 33), seg[128], *segs[1] = {seg};
  size_t lens[1];
  char path[192], err[1024];
  int worst = 0, bad = 0;
  for (int o = 1; o <= 8; o++) {
    lens[0] = exif_app1(seg, o & 1, 3, (unsigned)o);
    char name[32];
    snprintf(name, sizeof name, "fit%d.jpg", o);
    at(path, sizeof path, name);
    write_with_app1(path, rgb, H, W, segs, lens, 1);
    static uint8_t a[S * S * 3], b[S * S * 3];
    cg_fit_opts_t fo = {.size = S, .exif = CG_EXIF_STORED};
    int h = 0, w = 0, th = 0, tw = 0;
    int rc = cg_fit_pair(path, NULL, &fo, a, NULL, &h, &w, err, sizeof err);
    fo.exif = CG_EXIF_APPLY;
    rc = rc || cg_fit_pair(path, NULL, &fo, b, NULL, &th, &tw, err, sizeof err);
    if (rc || h != H || w != W || th != (o >= 5 ? W : H) || tw != (o >= 5 ? H : W)) {
      CG_TEST_CHECK(0, "orientation %d: fitted %dx%d, turned %dx%d: %s", o, w, h, tw, th, err);
      bad++;
      continue;
    }
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++)
        for (int c = 0; c < 3; c++) {
          const int d = abs(b[3 * (y * S + x) + c] - pil_turned(a, S, o, x, y)[c]);
          if (d > worst) worst = d;
        }
  }
  CG_TEST_CHECK(!bad && worst <= 1, "turned and fitted vs fitted and turned: %d levels apart",
                worst);
  if (!bad && worst <= 1)
    printf("PASS --exif-orientation apply: fitted turned = turned fitted (at most %d level "
           "apart), orientations 1..8\n", worst);
  /* the decode's scale: kept where the mirrored sides divide, full size where they do not */
  free(rgb);
  rgb = make_rgb(251, 401, 34);
  static const int want[9] = {0, 2, 8, 8, 8, 2, 8, 8, 8};
  for (int o = 1; o <= 8; o++) {
    lens[0] = exif_app1(seg, 0, 3, (unsigned)o);
    at(path, sizeof path, "odd.jpg");
    write_with_app1(path, rgb, 251, 401, segs, lens, 1);
    size_seen_t seen = {0, 0};
    const cg_png_sink_t sink = {seen_begin, seen_row, &seen};
    cg_jpeg_read_t r = {.min_side = S, .exif = CG_EXIF_APPLY};
    const int rc = cg_jpeg_read_rows(path, NULL, 0, &r, &sink, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && r.scale == want[o] && r.orient == o &&
                      r.full_h == (o >= 5 ? 401 : 251),
                  "401x251, orientation %d: scale %d/8 (want %d), orientation %d, %dx%d: %s", o,
                  r.scale, want[o], r.orient, r.full_w, r.full_h, rc ? err : "");
  }
  free(rgb);
}

/* pack --encoding jpeg --exif-orientation apply: a JPEG of exactly the record's size whose EXIF
 * orientation turns it is encoded again, turned (its own bytes would be read as stored); as
 * stored (the default) the same file's bytes are kept: the record is the file's pixels. */
static void test_exif_pack(void) {
  enum { S = 16 };
  char dir[128], p[256], shard[256], err[1024];
  pair_dirs(dir, sizeof dir, "exif-pack");
  uint8_t *rgb = make_rgb(S, S, 35), seg[128], *segs[1] = {seg}, m[S * S] = {0};
  size_t lens[1] = {exif_app1(seg, 0, 3, 3)};
  snprintf(p, sizeof p, "%s/images/t.jpg", dir);
  write_with_app1(p, rgb, S, S, segs, lens, 1);
  snprintf(p, sizeof p, "%s/masks/t.png", dir);
  CG_TEST_CHECK(cg_png_write(p, m, S, S, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/images/t.jpg", dir);
  for (int apply = 0; apply < 2; apply++) {
    char im[192], mk[192];
    snprintf(im, sizeof im, "%s/images", dir);
    snprintf(mk, sizeof mk, "%s/masks", dir);
    snprintf(shard, sizeof shard, "%s/t%d.cgds", dir, apply);
    const cg_cgds_pack_opts_t po = {S, 0, CG_CGDS_JPEG, 90, 0, 1, -1, NULL, 0,
                                    apply ? CG_EXIF_APPLY : CG_EXIF_STORED};
    int rc = cg_cgds_pack_opts(im, mk, shard, &po, NULL, NULL, err, sizeof err);
    cg_source_t *s = rc ? NULL : cg_source_cgds(shard, err, sizeof err);
    uint8_t got[S * S * 3], mask[S * S], *want = NULL;
    int h, w;
    rc = !s || cg_source_load(s, 0, got, mask, err, sizeof err) ||
         cg_image_read_rgb(p, 0, apply ? CG_EXIF_APPLY : CG_EXIF_STORED, &want, &h, &w, err,
                           sizeof err);
    long diff = 0;
    for (int i = 0; !rc && i < S * S * 3; i++) diff += abs(got[i] - want[i]);
    const double mean = rc ? 1e9 : (double)diff / (S * S * 3);
    /* stored: the file's own bytes, exact; turned: encoded again, within JPEG's loss */
    CG_TEST_CHECK(!rc && (apply ? mean < 4 : diff == 0), "pack %s: record vs the file read %s: "
                  "mean |difference| %.2f (%s)", apply ? "apply" : "stored",
                  apply ? "turned" : "as stored", mean, rc ? err : "");
    free(want);
    cg_source_destroy(s);
  }
  free(rgb);
  if (!cg_test_failures) printf("PASS pack --exif-orientation: a turned JPEG is encoded again, "
                                "turned; as stored its bytes are kept\n");
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/cg_jpeg_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_vs_djpeg();
  test_cmyk();
  test_bad_files();
  test_scaling();
  test_alignment();
  test_zoom_out();
  test_memory();
  test_source();
  test_jpeg_masks();
  test_exif();
  test_exif_markers();
  test_exif_fit();
  test_exif_pack();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_jpeg");
}
