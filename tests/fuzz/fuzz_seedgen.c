/* fuzz_seedgen.c: image seeds for the fuzzers, written by the project's own PNG and JPEG writers
 * (so the seeds are what the program produces and reads) and by libtiff.
 *
 *   fuzz_seedgen png DIR        one file per layout the writer has (gray 8/16, gray+alpha,
 *                               RGB 8/16, RGBA, palette), at a few small sizes
 *   fuzz_seedgen pngdir DIR N   DIR/images/sNN.png and DIR/masks/sNN.png, N pairs of varying
 *                               sizes and aspect ratios: the input of `cogpu-dist pack`
 *   fuzz_seedgen jpeg DIR       JPEGs from the project's writer (cg_jpeg_write) at a few small
 *                               sizes and qualities, two with an EXIF orientation
 *   fuzz_seedgen tiff DIR       the TIFF layouts Pillow does not write (make_seeds.sh takes
 *                               Pillow's from ../pillow_fixtures.py), through libtiff: tiled
 *                               gray and RGB, planar-separate RGB, MinIsWhite, 16-bit RGB,
 *                               4-bit palette, gray with an alpha sample, big-endian
 *
 * Seeds are small on purpose (a few hundred bytes): the fuzzer mutates them faster, and the
 * decoder's paths do not depend on the size. Exit 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jpeg_io.h" // cg_jpeg_write, cg_jpeg_encode
#include "png_io.h" // cg_png_write
#include "tiff_layouts.h" // cg_test_tiff_layouts


static int write_one(const char *dir, const char *name, int h, int w, cg_png_kind_t kind,
                     int bytes_per_px) {
  uint8_t *px = malloc((size_t)h * w * bytes_per_px);
  if (!px) return -1;
  for (size_t i = 0; i < (size_t)h * w * bytes_per_px; i++) /* a pattern with few colours */
    px[i] = (uint8_t)(kind == CG_PNG_PALETTE ? (i / 3 % 5) * 60 : (i * 37 + i / 7) & 0xff);
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rc = cg_png_write(path, px, h, w, kind, err, sizeof err);
  if (rc) fprintf(stderr, "fuzz_seedgen: %s\n", err);
  free(px);
  return rc;
}

static int kinds(const char *dir) {
  static const struct {
    const char *name;
    cg_png_kind_t kind;
    int bpp;
  } k[] = {{"gray8", CG_PNG_GRAY8, 1},   {"gray16", CG_PNG_GRAY16, 2}, {"graya8", CG_PNG_GRAYA8, 2},
           {"rgb8", CG_PNG_RGB8, 3},     {"rgb16", CG_PNG_RGB16, 6},   {"rgba8", CG_PNG_RGBA8, 4},
           {"palette", CG_PNG_PALETTE, 3}};
  static const int sizes[][2] = {{1, 1}, {3, 5}, {8, 8}};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      char name[64];
      snprintf(name, sizeof name, "%s-%dx%d.png", k[i].name, sizes[s][1], sizes[s][0]);
      if (write_one(dir, name, sizes[s][0], sizes[s][1], k[i].kind, k[i].bpp)) return 1;
    }
  return 0;
}

static int pairs(const char *dir, int n) {
  char img[4096], msk[4096];
  snprintf(img, sizeof img, "%s/images", dir);
  snprintf(msk, sizeof msk, "%s/masks", dir);
  mkdir(dir, 0777);
  mkdir(img, 0777);
  mkdir(msk, 0777);
  for (int i = 0; i < n; i++) {
    const int h = 6 + 3 * i, w = 10 - i % 3; /* tall, square and wide: the fitting crops */
    char name[32];
    snprintf(name, sizeof name, "s%02d.png", i);
    if (write_one(img, name, h, w, i % 2 ? CG_PNG_RGB8 : CG_PNG_PALETTE, 3) ||
        write_one(msk, name, h, w, CG_PNG_GRAY8, 1))
      return 1;
  }
  return 0;
}

/* path: a JPEG of px (h x w) with an EXIF APP1 segment after its SOI that holds orientation o
 * (big-endian TIFF header when be), so the fuzzer starts from the turned decode's path too. */
static int jpeg_exif(const char *path, const uint8_t *px, int h, int w, int o, int be) {
  uint8_t *enc = NULL;
  size_t n = 0;
  char err[512];
  if (cg_jpeg_encode(path, px, h, w, 80, &enc, &n, err, sizeof err)) {
    fprintf(stderr, "fuzz_seedgen: %s\n", err);
    return 1;
  }
  /* "Exif\0\0", TIFF header (offset 8), one IFD0 entry: 274 SHORT 1 = o */
  uint8_t app[4 + 6 + 8 + 2 + 12 + 4] = {0xFF, 0xE1, 0, sizeof app - 2, 'E', 'x', 'i', 'f', 0, 0};
  uint8_t *t = app + 10;
  const uint8_t ii[8] = {'I', 'I', 42, 0, 8, 0, 0, 0}, mm[8] = {'M', 'M', 0, 42, 0, 0, 0, 8};
  memcpy(t, be ? mm : ii, 8);
  const uint8_t ent_le[14] = {1, 0, 0x12, 1, 3, 0, 1, 0, 0, 0, (uint8_t)o, 0, 0, 0};
  const uint8_t ent_be[14] = {0, 1, 1, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)o, 0, 0};
  memcpy(t + 8, be ? ent_be : ent_le, 14);
  FILE *f = fopen(path, "wb");
  const int ok = f && fwrite(enc, 1, 2, f) == 2 && fwrite(app, 1, sizeof app, f) == sizeof app &&
                 fwrite(enc + 2, 1, n - 2, f) == n - 2;
  if (f) fclose(f);
  free(enc);
  if (!ok) fprintf(stderr, "fuzz_seedgen: cannot write %s\n", path);
  return !ok;
}

static int jpegs(const char *dir) {
  static const int sizes[][3] = {{1, 1, 90}, {5, 7, 50}, {16, 16, 90}, {17, 33, 75}, {24, 8, 20}};
  mkdir(dir, 0777);
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    const int h = sizes[s][0], w = sizes[s][1];
    uint8_t *px = malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w * 3; i++) px[i] = (uint8_t)(i * 37 + s * 11);
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/q%d-%dx%d.jpg", dir, sizes[s][2], w, h);
    int rc = cg_jpeg_write(path, px, h, w, sizes[s][2], err, sizeof err);
    if (rc) fprintf(stderr, "fuzz_seedgen: %s\n", err);
    for (int o = 3; !rc && h == 17 && o <= 6; o += 3) { /* turned: 180 and 90 degrees */
      snprintf(path, sizeof path, "%s/exif%d-%dx%d.jpg", dir, o, w, h);
      rc = jpeg_exif(path, px, h, w, o, o == 6);
    }
    free(px);
    if (rc) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "png")) return kinds(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "jpeg")) return jpegs(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "tiff")) return cg_test_tiff_layouts(argv[2]) ? 1 : 0;
  if (argc == 4 && !strcmp(argv[1], "pngdir")) return pairs(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: fuzz_seedgen png DIR | jpeg DIR | tiff DIR | pngdir DIR N\n");
  return 2;
}
