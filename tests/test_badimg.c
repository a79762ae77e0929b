/* test_badimg.c: bounded PNG decoding and what a bad image is (issue 11).
 *
 *  - Crafted files, written here byte by byte (zlib + the PNG CRC): a 63-byte file whose IHDR
 *    claims 28936x16136 with a truncated body; an 830-byte 16-bit header-only file claiming
 *    23000x23000 and one of 9000x9000 (under the limit); one 40000x2 (a side over the limit,
 *    named as such before libpng); a 0-byte file; a truncated file whose
 *    header passes the start-up check; a complete 16000x16000 gray image (250 KB on disk); an
 *    8000x8000 RGB image.
 *  - Each is decoded in a fresh process (this binary, re-executed with --rss) that reports its
 *    peak resident size (getrusage ru_maxrss) and peak virtual size (VmPeak: allocations the
 *    RSS does not see until touched) before and after: a refusal from the header costs nothing,
 *    a failure while decoding costs a row, and the 8000x8000 image fitted to 256 x 256 holds two
 *    rows of the image instead of the 192 MB image (the whole decode is measured too, for
 *    comparison).
 *  - The streamed fit (cg_fit_png) gives the very bytes of a whole decode + cg_fit_square over
 *    every colour type, 16-bit, interlaced files, down- and upscaling and pure crops.
 *  - `test_badimg --make DIR` writes the datasets of test_bad_data.sh. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "crc32.h"
#include "log.h"
#include "png_io.h"
#include "fit.h"
#include "rng.h"
#include "testutil.h"

static char root[64];

static char *path_of(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 0, 0);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)cg_rng_next(&r);
}

/* ---- crafting PNG files ------------------------------------------------------------------ */

static void be32_put(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A chunk claiming `claim` data bytes, of which the n in d are written (n < claim: cut). */
static void put_chunk(FILE *f, const char *type, const uint8_t *d, uint32_t n, uint32_t claim) {
  uint8_t hd[8];
  be32_put(hd, claim);
  memcpy(hd + 4, type, 4);
  fwrite(hd, 1, 8, f);
  if (n) fwrite(d, 1, n, f);
  if (n < claim) return;
  uint8_t c[4];
  be32_put(c, cg_crc32(cg_crc32(0, type, 4), d, n));
  fwrite(c, 1, 4, f);
}

static FILE *start_png(const char *path, uint32_t w, uint32_t h, int depth, int ctype) {
  static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  FILE *f = fopen(path, "wb");
  if (!f) die(path);
  fwrite(sig, 1, 8, f);
  uint8_t ih[13];
  be32_put(ih, w);
  be32_put(ih + 4, h);
  ih[8] = (uint8_t)depth;
  ih[9] = (uint8_t)ctype;
  ih[10] = ih[11] = ih[12] = 0;
  put_chunk(f, "IHDR", ih, 13, 13);
  return f;
}

/* IHDR, then an IDAT claiming 4096 bytes of which 22 are there (the start of a real zlib
 * stream of zero rows): the header passes, the data is cut. */
static void write_cut(const char *path, uint32_t w, uint32_t h, int depth, int ctype) {
  FILE *f = start_png(path, w, h, depth, ctype);
  uint8_t zeros[4096] = {0}, z[4096];
  uLongf zn = sizeof z;
  compress2(z, &zn, zeros, sizeof zeros, 9);
  put_chunk(f, "IDAT", z, 22, 4096);
  fclose(f);
}

/* The 63-byte bomb: 28936x16136 RGB8, cut. */
static void write_bomb(const char *path) { write_cut(path, 28936, 16136, 8, 2); }

/* 16-bit header-only: IHDR (RGBA16), ancillary text up to `bytes` in all, then the first 22
 * bytes of an IDAT (so the header passes): 830 bytes claiming 23000x23000 made the whole-image
 * decoder allocate 3.2 GB (as a mask: 6 bytes a pixel) before it failed. */
static void write_header_only16(const char *path, uint32_t w, uint32_t h, long bytes) {
  FILE *f = start_png(path, w, h, 16, 6);
  long pad = bytes - 33 - 12 - 8 - 22;
  uint8_t *t = calloc(1, pad > 0 ? (size_t)pad : 1);
  memcpy(t, "Comment", 8); /* keyword, NUL, text */
  for (long i = 8; i < pad; i++) t[i] = 'x';
  if (pad > 8) put_chunk(f, "tEXt", t, (uint32_t)pad, (uint32_t)pad);
  free(t);
  uint8_t zeros[4096] = {0}, z[4096];
  uLongf zn = sizeof z;
  compress2(z, &zn, zeros, sizeof zeros, 9);
  put_chunk(f, "IDAT", z, 22, 4096);
  fclose(f);
}

/* A complete non-interlaced PNG whose rows come from row(y, w, out) (rowbytes bytes each),
 * deflated at `level` as they are made: nothing of the size of the image is ever held. */
typedef void (*row_fn)(int y, int w, uint8_t *out);

static void write_rows(const char *path, int w, int h, int depth, int ctype, size_t rowbytes,
                       row_fn row, int level) {
  FILE *f = start_png(path, (uint32_t)w, (uint32_t)h, depth, ctype);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (deflateInit(&zs, level) != Z_OK) die("deflateInit");
  uint8_t *in = malloc(rowbytes + 1), out[1 << 16];
  for (int y = 0; y <= h; y++) {
    if (y < h) {
      in[0] = 0; /* filter: none */
      row(y, w, in + 1);
      zs.next_in = in;
      zs.avail_in = (uInt)(rowbytes + 1);
    }
    const int flush = y == h ? Z_FINISH : Z_NO_FLUSH;
    int zr;
    do {
      zs.next_out = out;
      zs.avail_out = sizeof out;
      zr = deflate(&zs, flush);
      const uint32_t n = (uint32_t)(sizeof out - zs.avail_out);
      if (n) put_chunk(f, "IDAT", out, n, n);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
  }
  deflateEnd(&zs);
  free(in);
  put_chunk(f, "IEND", NULL, 0, 0);
  if (fclose(f)) die(path);
}

static void row_zero(int y, int w, uint8_t *out) {
  (void)y;
  memset(out, 0, (size_t)w);
}

static void row_rgb(int y, int w, uint8_t *out) { /* 64-pixel blocks: quick to deflate */
  for (int x = 0; x < w; x++) {
    out[3 * x] = (uint8_t)((x >> 6) * 37);
    out[3 * x + 1] = (uint8_t)((y >> 6) * 53);
    out[3 * x + 2] = (uint8_t)(((x >> 6) ^ (y >> 6)) * 11);
  }
}

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) ? -1 : (long)st.st_size;
}

static void write_png_or_die(const char *path, const void *px, int h, int w, cg_png_kind_t kind) {
  char err[512];
  if (cg_png_write(path, px, h, w, kind, err, sizeof err)) {
    printf("FAIL writing %s: %s\n", path, err);
    exit(1);
  }
}

/* A noisy RGB image (incompressible) cut to half its bytes: the IHDR is intact. */
static void write_truncated(const char *path, int h, int w, uint64_t seed) {
  uint8_t *px = malloc((size_t)h * w * 3);
  fill_random(px, (size_t)h * w * 3, seed);
  write_png_or_die(path, px, h, w, CG_PNG_RGB8);
  free(px);
  if (truncate(path, file_size(path) / 2)) die(path);
}

/* An interlaced (Adam7) RGB8 file, through libpng (png_io writes non-interlaced only). */
static void write_interlaced(const char *path, const uint8_t *rgb, int h, int w) {
  FILE *f = fopen(path, "wb");
  if (!f) die(path);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) die("libpng write");
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * w * 3);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  fclose(f);
}

/* ---- one decode in a fresh process: peak RSS ------------------------------------------- */

static long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* Peak virtual size: what was allocated, touched or not (malloc of untouched pages does not
 * show in the RSS). */
static long vmpeak_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmPeak:", 7)) v = atol(line + 7);
  if (f) fclose(f);
  return v;
}

static int row_ignore(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)ctx;
  (void)y;
  (void)px;
  (void)why;
  (void)whylen;
  return 0;
}

/* --rss MODE FILE MAX_PIXELS SIZE: prints "rss_before rss_peak vm_before vm_peak rc message"
 * (KB). MODE: size (start-up check), fit (the loader's streamed fit, image only), maskrows (rows
 * decoded as a mask, dropped), whole / mask (whole-image decodes). */
static int rss_main(char **argv) {
  const char *mode = argv[2], *path = argv[3];
  const int64_t maxpx = atoll(argv[4]);
  const int size = atoi(argv[5]);
  char err[1024] = "";
  uint8_t *out = malloc((size_t)size * size * 3), *om = malloc((size_t)size * size), *px = NULL;
  memset(out, 0, (size_t)size * size * 3); /* resident before the measurement */
  memset(om, 0, (size_t)size * size);
  int h = 0, w = 0, rc;
  const long before = maxrss_kb(), vbefore = vmpeak_kb();
  if (!strcmp(mode, "size")) rc = cg_png_read_size(path, maxpx, &h, &w, err, sizeof err);
  else if (!strcmp(mode, "whole")) rc = cg_png_read_rgb(path, maxpx, &px, &h, &w, err, sizeof err);
  else if (!strcmp(mode, "mask")) rc = cg_png_read_mask(path, maxpx, &px, &h, &w, err, sizeof err);
  else if (!strcmp(mode, "maskrows")) {
    const cg_png_sink_t sink = {NULL, row_ignore, NULL};
    rc = cg_png_read_rows(path, maxpx, CG_PNG_AS_MASK, &sink, err, sizeof err);
  }
  else rc = cg_fit_png(path, NULL, maxpx, size, 0, 0, out, om, &h, &w, err, sizeof err);
  printf("%ld %ld %ld %ld %d %s\n", before, maxrss_kb(), vbefore, vmpeak_kb(), rc, err);
  free(px);
  free(out);
  free(om);
  return 0;
}

typedef struct {
  long before_kb, peak_kb, vm_before_kb, vm_peak_kb;
  int rc;
  char msg[1024];
} rss_t;

static rss_t measure(const char *mode, const char *path, int64_t maxpx, int size) {
  char self[512], cmd[2048];
  rss_t r = {0, 0, 0, 0, -2, ""};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) die("readlink");
  self[n] = 0;
  snprintf(cmd, sizeof cmd, "'%s' --rss %s '%s' %lld %d", self, mode, path, (long long)maxpx, size);
  FILE *p = popen(cmd, "r");
  if (!p) die("popen");
  char line[1200] = "";
  if (fgets(line, sizeof line, p)) {
    int used = 0;
    if (sscanf(line, "%ld %ld %ld %ld %d %n", &r.before_kb, &r.peak_kb, &r.vm_before_kb,
               &r.vm_peak_kb, &r.rc, &used) >= 5) {
      snprintf(r.msg, sizeof r.msg, "%s", line + used);
      r.msg[strcspn(r.msg, "\n")] = 0;
    }
  }
  pclose(p);
  return r;
}

static long grew_mb(const rss_t *r) { return (r->peak_kb - r->before_kb) / 1024; }
static long vm_grew_mb(const rss_t *r) { return (r->vm_peak_kb - r->vm_before_kb) / 1024; }

/* ---- the tests ------------------------------------------------------------------------- */

static void test_refusals(void) {
  char bomb[512], h16[512], h16ok[512], zero[512], cut[512], gray[512], wide[512];
  path_of(bomb, sizeof bomb, "bomb.png");
  path_of(wide, sizeof wide, "wide.png");
  write_cut(wide, 40000, 2, 8, 2); /* 80,000 pixels, a side over libpng's limit as set */
  path_of(h16, sizeof h16, "header16.png");
  path_of(h16ok, sizeof h16ok, "header16-small.png");
  path_of(zero, sizeof zero, "zero.png");
  path_of(cut, sizeof cut, "cut.png");
  path_of(gray, sizeof gray, "gray16k.png");
  write_bomb(bomb);
  write_header_only16(h16, 23000, 23000, 830); /* 529 M pixels, 830 bytes */
  write_header_only16(h16ok, 9000, 9000, 830); /* 81 M pixels: under the default limit */
  FILE *f = fopen(zero, "wb");
  fclose(f);
  write_truncated(cut, 300, 200, 5);
  write_rows(gray, 16000, 16000, 8, 0, 16000, row_zero, 9);
  printf("crafted: bomb.png %ld bytes, header16.png %ld bytes, gray16k.png %ld bytes\n",
         file_size(bomb), file_size(h16), file_size(gray));
  CG_TEST_CHECK(file_size(bomb) == 63 && file_size(h16) == 830, "crafted sizes");

  const int64_t D = CG_PNG_DEFAULT_MAX_PIXELS, BIG = 1LL << 30;
  struct {
    const char *name, *path, *mode;
    int64_t maxpx;
    const char *want1, *want2;
    long max_mb; /* growth of the peak RSS allowed */
  } cases[] = {
      {"bomb header, fitted", bomb, "fit", D, "28936x16136", "--max-image-pixels", 2},
      {"bomb header, start-up check", bomb, "size", D, "466911296 pixels", "89478485", 2},
      {"bomb header, whole decode", bomb, "whole", D, "over the limit", "--max-image-pixels", 2},
      {"bomb under a raised limit", bomb, "fit", BIG, "bomb.png", "truncated", 8},
      {"16-bit header-only over the limit", h16, "mask", D, "23000x23000", "over the limit", 2},
      {"16-bit header-only, raised limit, rows", h16, "maskrows", BIG, "header16.png", "truncated", 4},
      {"16-bit header-only under the limit", h16ok, "fit", D, "header16-small.png", "decode failed", 8},
      {"a side over 32768 (not 'Invalid IHDR data')", wide, "fit", D, "40000x2 pixels",
       "over the limit of 32768 pixels a side", 2},
      {"0-byte file", zero, "size", D, "zero.png", "empty: 0 bytes", 2},
      {"0-byte file, fitted", zero, "fit", D, "zero.png", "empty", 2},
      {"truncated, header passes", cut, "fit", D, "cut.png", "truncated", 4},
      {"complete 16000x16000 (bomb)", gray, "whole", D, "16000x16000", "--max-image-pixels", 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rss_t r = measure(cases[i].mode, cases[i].path, cases[i].maxpx, 256);
    int ok = r.rc != 0 && contains(r.msg, cases[i].want1) && contains(r.msg, cases[i].want2) &&
             grew_mb(&r) <= cases[i].max_mb && vm_grew_mb(&r) <= cases[i].max_mb;
    CG_TEST_CHECK(ok, "%s: rc %d, peak RSS +%ld MB, peak virtual +%ld MB (limit %ld), message: %s",
                  cases[i].name, r.rc, grew_mb(&r), vm_grew_mb(&r), cases[i].max_mb, r.msg);
    if (ok)
      printf("PASS %s: refused, peak RSS %ld -> %ld KB, VmPeak %ld -> %ld KB: %s\n", cases[i].name,
             r.before_kb, r.peak_kb, r.vm_before_kb, r.vm_peak_kb, r.msg);
  }
  /* the header of the truncated file passes (start-up), its data does not (training) */
  int h = 0, w = 0;
  char err[1024];
  int rc = cg_png_read_size(cut, D, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && h == 300 && w == 200, "start-up check of a truncated file: %s", err);
  /* a complete 16000x16000 image under a raised limit streams in bounded memory */
  rss_t r = measure("fit", gray, BIG, 256);
  CG_TEST_CHECK(r.rc == 0 && grew_mb(&r) <= 8 && vm_grew_mb(&r) <= 8,
                "16000x16000 fitted: rc %d +%ld MB (virtual +%ld MB) %s", r.rc, grew_mb(&r),
                vm_grew_mb(&r), r.msg);
  if (r.rc == 0)
    printf("PASS 16000x16000 gray under --max-image-pixels 2^30, fitted to 256: peak RSS %ld -> "
           "%ld KB, VmPeak %ld -> %ld KB\n", r.before_kb, r.peak_kb, r.vm_before_kb, r.vm_peak_kb);
}

static void test_big_rss(void) {
  char big[512];
  path_of(big, sizeof big, "rgb8000.png");
  double t0 = cg_now();
  write_rows(big, 8000, 8000, 8, 2, 8000 * 3, row_rgb, 1);
  printf("crafted: rgb8000.png, 8000x8000 RGB, %ld bytes in %.1f s\n", file_size(big), cg_now() - t0);
  t0 = cg_now();
  rss_t fit = measure("fit", big, CG_PNG_DEFAULT_MAX_PIXELS, 256);
  const double t_fit = cg_now() - t0;
  t0 = cg_now();
  rss_t whole = measure("whole", big, CG_PNG_DEFAULT_MAX_PIXELS, 256);
  const double t_whole = cg_now() - t0;
  printf("8000x8000 RGB PNG -> 256x256: streamed fit peak RSS %ld -> %ld KB (+%ld MB, %.2f s); "
         "whole decode %ld -> %ld KB (+%ld MB, %.2f s)\n", fit.before_kb, fit.peak_kb,
         grew_mb(&fit), t_fit, whole.before_kb, whole.peak_kb, grew_mb(&whole), t_whole);
  CG_TEST_CHECK(fit.rc == 0 && grew_mb(&fit) <= 8 && vm_grew_mb(&fit) <= 8,
                "streamed fit: rc %d, +%ld MB (virtual +%ld MB): %s", fit.rc, grew_mb(&fit),
                vm_grew_mb(&fit), fit.msg);
  CG_TEST_CHECK(whole.rc == 0 && grew_mb(&whole) >= 150, "whole decode: rc %d, +%ld MB: %s",
                whole.rc, grew_mb(&whole), whole.msg);
  if (fit.rc == 0 && grew_mb(&fit) <= 8) printf("PASS 8000x8000 fitted in bounded memory\n");
  remove(big);
}

/* The streamed fit against a whole decode + cg_fit_square: same bytes. */
static void check_same(const char *rel, int size) {
  char p[512], err[1024];
  path_of(p, sizeof p, rel);
  uint8_t *rgb = NULL, *mask = NULL;
  int h, w, mh, mw;
  if (cg_png_read_rgb(p, 0, &rgb, &h, &w, err, sizeof err) ||
      cg_png_read_mask(p, 0, &mask, &mh, &mw, err, sizeof err)) {
    CG_TEST_CHECK(0, "%s: %s", rel, err);
    return;
  }
  const size_t n = (size_t)size * size;
  uint8_t *r1 = malloc(3 * n), *m1 = malloc(n), *r2 = malloc(3 * n), *m2 = malloc(n);
  cg_fit_square(rgb, mask, h, w, size, r1, m1);
  int gh = 0, gw = 0;
  int rc = cg_fit_png(p, p, 0, size, h, w, r2, m2, &gh, &gw, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && gh == h && gw == w, "%s -> %d: %s", rel, size, err);
  if (!rc) {
    size_t bad = 0;
    for (size_t i = 0; i < 3 * n; i++) bad += r1[i] != r2[i];
    for (size_t i = 0; i < n; i++) bad += m1[i] != m2[i];
    CG_TEST_CHECK(bad == 0, "%s (%dx%d) -> %d: %zu bytes differ from the whole decode", rel, w, h,
                  size, bad);
  }
  free(rgb);
  free(mask);
  free(r1);
  free(m1);
  free(r2);
  free(m2);
}

static void test_stream_equals_whole(void) {
  static const int dims[][2] = {{16, 16}, {40, 30}, {30, 40}, {7, 100}, {100, 7},
                                {33, 33},  {20, 16}, {16, 20}, {1, 1}};
  static const int sizes[] = {16, 8, 37, 3};
  static const cg_png_kind_t kinds[] = {CG_PNG_GRAY8, CG_PNG_GRAY16, CG_PNG_GRAYA8, CG_PNG_RGB8,
                                        CG_PNG_RGB16, CG_PNG_RGBA8, CG_PNG_PALETTE};
  static const int bpp[] = {1, 2, 2, 3, 6, 4, 3};
  int files = 0;
  for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
    const int h = dims[d][0], w = dims[d][1];
    uint8_t *px = malloc((size_t)h * w * 6);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      fill_random(px, (size_t)h * w * bpp[k], 100 + d * 10 + k);
      if (kinds[k] == CG_PNG_PALETTE) /* at most 256 colours */
        for (size_t i = 0; i < (size_t)h * w * 3; i++) px[i] &= 0x60;
      for (size_t i = 0; i < (size_t)h * w * bpp[k]; i += 7) px[i] = 0; /* some background */
      char rel[64], p[512];
      snprintf(rel, sizeof rel, "k%zu_%dx%d.png", k, w, h);
      write_png_or_die(path_of(p, sizeof p, rel), px, h, w, kinds[k]);
      for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_same(rel, sizes[s]);
      files++;
    }
    char rel[64], p[512];
    fill_random(px, (size_t)h * w * 3, 7 + d);
    snprintf(rel, sizeof rel, "adam7_%dx%d.png", w, h);
    write_interlaced(path_of(p, sizeof p, rel), px, h, w);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_same(rel, sizes[s]);
    files++;
    free(px);
  }
  printf("PASS streamed fit = whole decode + cg_fit_square (%d files x %zu sizes, every colour "
         "type, 16-bit, Adam7, crops)\n", files, sizeof sizes / sizeof sizes[0]);

  /* a mask of another size and a changed image are refused, naming the file */
  char a[512], b[512], err[1024];
  uint8_t px[30 * 40 * 3] = {0}, out[16 * 16 * 3], om[16 * 16];
  write_png_or_die(path_of(a, sizeof a, "img.png"), px, 30, 40, CG_PNG_RGB8);
  write_png_or_die(path_of(b, sizeof b, "msk.png"), px, 30, 30, CG_PNG_GRAY8);
  int rc = cg_fit_png(a, b, 0, 16, 0, 0, out, om, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc && contains(err, "msk.png") && contains(err, "mask is 30x30 but its image"), "%s", err);
  rc = cg_fit_png(a, NULL, 0, 16, 30, 30, out, om, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc && contains(err, "img.png: size changed since start-up"), "%s", err);
  printf("PASS size mismatches: %s\n", err);
}

/* ---- datasets for test_bad_data.sh ------------------------------------------------------ */

static void mkdirs(const char *base, const char *ds) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", base, ds);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/%s/images", base, ds);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/%s/masks", base, ds);
  mkdir(p, 0755);
}

/* n good 40x48 samples named s00.. in base/ds. */
static void make_good(const char *base, const char *ds, int n) {
  mkdirs(base, ds);
  for (int i = 0; i < n; i++) {
    const int h = 40, w = 48;
    uint8_t rgb[40 * 48 * 3], m[40 * 48];
    fill_random(rgb, sizeof rgb, 500 + (uint64_t)i);
    for (int k = 0; k < h * w; k++) m[k] = rgb[3 * k] > 128 ? 255 : 0;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/images/s%02d.png", base, ds, i);
    write_png_or_die(p, rgb, h, w, CG_PNG_RGB8);
    snprintf(p, sizeof p, "%s/%s/masks/s%02d.png", base, ds, i);
    write_png_or_die(p, m, h, w, CG_PNG_GRAY8);
  }
}

/* A bad image NAME in base/ds (with a good 40x48 mask): kind trunc (noisy, cut in half), zero,
 * bomb, or cut16 (16-bit RGB, its IDAT cut after 22 bytes). */
static void add_bad(const char *base, const char *ds, const char *name, const char *kind) {
  char p[1024];
  uint8_t m[40 * 48] = {0};
  snprintf(p, sizeof p, "%s/%s/masks/%s.png", base, ds, name);
  write_png_or_die(p, m, 40, 48, CG_PNG_GRAY8);
  snprintf(p, sizeof p, "%s/%s/images/%s.png", base, ds, name);
  if (!strcmp(kind, "trunc")) write_truncated(p, 40, 48, 77);
  else if (!strcmp(kind, "bomb")) write_bomb(p);
  else if (!strcmp(kind, "cut16")) write_cut(p, 48, 40, 16, 2);
  else fclose(fopen(p, "wb"));
}

static int make_main(const char *base) {
  mkdir(base, 0755);
  make_good(base, "good", 8);
  make_good(base, "trunc", 8);
  add_bad(base, "trunc", "zz", "trunc");
  make_good(base, "zero", 8);
  add_bad(base, "zero", "zz", "zero");
  make_good(base, "bomb", 8);
  add_bad(base, "bomb", "zz", "bomb");
  make_good(base, "mixed", 8); /* two bad samples that pass the start-up check */
  add_bad(base, "mixed", "zz_trunc", "trunc");
  add_bad(base, "mixed", "zz_cut16", "cut16");
  make_good(base, "mixed0", 8); /* and one that does not */
  add_bad(base, "mixed0", "zz_trunc", "trunc");
  add_bad(base, "mixed0", "zz_cut16", "cut16");
  add_bad(base, "mixed0", "zz_zero", "zero");
  printf("datasets written to %s\n", base);
  return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "--rss")) return rss_main(argv);
  if (argc == 3 && !strcmp(argv[1], "--make")) return make_main(argv[2]);
  snprintf(root, sizeof root, "/tmp/cg_badimg_XXXXXX");
  if (!mkdtemp(root)) die("mkdtemp");
  double t0 = cg_now();
  test_refusals();
  test_stream_equals_whole();
  test_big_rss();
  printf("(%.1f s)\n", cg_now() - t0);
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_badimg");
}
