/* test_sources.c: real data sources — PNG reading and writing (png_io.h), PNG directories,
 * the packed .cgds shard (cgds.h), cg_source_open and the split (source.h), the pack command,
 * CRC32 (crc32.h), and the loader's --skip-bad and random crop (loader.h).
 *
 * Every file is written into a fresh temporary directory that is removed at the end. Pixels
 * are compared exactly: PNG round trips are lossless, the fitting rule is checked on linear
 * ramps (where bilinear interpolation is exact) and a shard must give back the very bytes the
 * PNG source gives. Each bad-input case checks that the message names the file (and record). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgds.h"
#include "crc32.h"
#include "augment.h"
#include "feat.h"
#include "fit.h"
#include "loader.h"
#include "log.h"
#include "pack.h"
#include "png_io.h"
#include "rng.h"
#include "source.h"
#include "testutil.h"

static char root[64];

static char *path_of(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

static void mkdir_rel(const char *rel) {
  char p[512];
  if (mkdir(path_of(p, sizeof p, rel), 0755)) {
    perror(p);
    exit(1);
  }
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 0, 0);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)cg_rng_next(&r);
}

static void write_or_die(const char *rel, const void *px, int h, int w, cg_png_kind_t kind) {
  char p[512], err[512];
  if (cg_png_write(path_of(p, sizeof p, rel), px, h, w, kind, err, sizeof err)) {
    printf("FAIL writing %s: %s\n", p, err);
    exit(1);
  }
}

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) ? -1 : (long)st.st_size;
}

static void truncate_to(const char *p, long n) {
  if (truncate(p, n)) {
    perror(p);
    exit(1);
  }
}

static void flip_byte(const char *p, long off) {
  FILE *f = fopen(p, "r+b");
  if (!f) exit(1);
  fseek(f, off, SEEK_SET);
  int c = fgetc(f);
  fseek(f, off, SEEK_SET);
  fputc(c ^ 0x5A, f);
  fclose(f);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* Number of entries in a directory besides . and .. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

/* ---- CRC32 ------------------------------------------------------------------------------ */

static void test_crc32(void) {
  const char *v = "123456789";
  CG_TEST_CHECK(cg_crc32(0, v, 9) == 0xCBF43926u, "crc32(123456789) = %08x", cg_crc32(0, v, 9));
  CG_TEST_CHECK(cg_crc32(0, NULL, 0) == 0, "crc of nothing");
  uint8_t buf[1000];
  fill_random(buf, sizeof buf, 7);
  uint32_t whole = cg_crc32(0, buf + 3, 990); /* unaligned start */
  uint32_t parts = cg_crc32(cg_crc32(cg_crc32(0, buf + 3, 1), buf + 4, 500), buf + 504, 489);
  CG_TEST_CHECK(whole == parts, "chained %08x vs whole %08x", parts, whole);
  /* against the plain bitwise definition */
  uint32_t c = 0xFFFFFFFFu;
  for (int i = 3; i < 993; i++) {
    c ^= buf[i];
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  CG_TEST_CHECK(whole == ~c, "sliced %08x vs bitwise %08x", whole, ~c);
  printf("PASS crc32\n");
}

#ifdef COGPU_HAVE_PNG

/* ---- png_io ----------------------------------------------------------------------------- */

static void check_read(const char *rel, const uint8_t *want_rgb, const uint8_t *want_mask, int h,
                       int w) {
  char p[512], err[512];
  path_of(p, sizeof p, rel);
  uint8_t *rgb = NULL, *mask = NULL;
  int rh = 0, rw = 0, mh = 0, mw = 0, sh = 0, sw = 0;
  int rc1 = cg_png_read_rgb(p, CG_PNG_DEFAULT_MAX_PIXELS, &rgb, &rh, &rw, err, sizeof err);
  CG_TEST_CHECK(rc1 == 0, "%s: %s", rel, err);
  int rc2 = cg_png_read_mask(p, CG_PNG_DEFAULT_MAX_PIXELS, &mask, &mh, &mw, err, sizeof err);
  CG_TEST_CHECK(rc2 == 0, "%s: %s", rel, err);
  int rc3 = cg_png_read_size(p, CG_PNG_DEFAULT_MAX_PIXELS, &sh, &sw, err, sizeof err);
  CG_TEST_CHECK(rc3 == 0 && sh == h && sw == w, "%s: size %dx%d", rel, sw, sh);
  if (!rc1 && !rc2) {
    CG_TEST_CHECK(rh == h && rw == w && mh == h && mw == w, "%s: dims", rel);
    size_t bad = 0, badm = 0;
    for (size_t i = 0; i < (size_t)h * w * 3; i++) bad += rgb[i] != want_rgb[i];
    for (size_t i = 0; i < (size_t)h * w; i++) badm += mask[i] != want_mask[i];
    CG_TEST_CHECK(bad == 0, "%s: %zu RGB bytes differ", rel, bad);
    CG_TEST_CHECK(badm == 0, "%s: %zu mask pixels differ", rel, badm);
    if (!bad && !badm) printf("PASS png round trip %s\n", rel);
  }
  free(rgb);
  free(mask);
}

static void test_png_kinds(void) {
  const int h = 7, w = 13;
  const size_t n = (size_t)h * w;
  uint8_t g[7 * 13], rgb[7 * 13 * 3], want[7 * 13 * 3], mask[7 * 13];
  fill_random(g, n, 1);
  fill_random(rgb, 3 * n, 2);
  for (size_t i = 0; i < n; i += 5) g[i] = 0; /* some background */
  for (size_t i = 0; i < n; i += 4) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = 0;

  /* gray 8 */
  for (size_t i = 0; i < n; i++) {
    want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = g[i];
    mask[i] = g[i] > 0;
  }
  write_or_die("gray8.png", g, h, w, CG_PNG_GRAY8);
  check_read("gray8.png", want, mask, h, w);

  /* gray 16: v*257 scales back to v exactly; 16-bit value 1 is foreground but reads as 0 */
  uint16_t g16[7 * 13];
  for (size_t i = 0; i < n; i++) g16[i] = (uint16_t)(g[i] * 257);
  g16[1] = 1;
  uint8_t want16[7 * 13 * 3], mask16[7 * 13];
  memcpy(want16, want, sizeof want16);
  memcpy(mask16, mask, sizeof mask16);
  want16[3] = want16[4] = want16[5] = 0;
  mask16[1] = 1;
  write_or_die("gray16.png", g16, h, w, CG_PNG_GRAY16);
  check_read("gray16.png", want16, mask16, h, w);

  /* gray + alpha: alpha dropped */
  uint8_t ga[7 * 13 * 2];
  for (size_t i = 0; i < n; i++) {
    ga[2 * i] = g[i];
    ga[2 * i + 1] = (uint8_t)(i * 37);
  }
  write_or_die("graya.png", ga, h, w, CG_PNG_GRAYA8);
  check_read("graya.png", want, mask, h, w);

  /* RGB 8, RGB 16, RGBA */
  for (size_t i = 0; i < n; i++) mask[i] = (rgb[3 * i] | rgb[3 * i + 1] | rgb[3 * i + 2]) != 0;
  write_or_die("rgb8.png", rgb, h, w, CG_PNG_RGB8);
  check_read("rgb8.png", rgb, mask, h, w);
  uint16_t rgb16[7 * 13 * 3];
  for (size_t i = 0; i < 3 * n; i++) rgb16[i] = (uint16_t)(rgb[i] * 257);
  write_or_die("rgb16.png", rgb16, h, w, CG_PNG_RGB16);
  check_read("rgb16.png", rgb, mask, h, w);
  uint8_t rgba[7 * 13 * 4];
  for (size_t i = 0; i < n; i++) {
    memcpy(rgba + 4 * i, rgb + 3 * i, 3);
    rgba[4 * i + 3] = (uint8_t)(255 - i);
  }
  write_or_die("rgba.png", rgba, h, w, CG_PNG_RGBA8);
  check_read("rgba.png", rgb, mask, h, w);

  /* palette: five colours, black first (index 0): foreground where the index is > 0 */
  static const uint8_t pal[5][3] = {{0, 0, 0}, {255, 0, 0}, {0, 0, 1}, {10, 200, 30}, {7, 7, 7}};
  uint8_t prgb[7 * 13 * 3], pmask[7 * 13];
  for (size_t i = 0; i < n; i++) {
    memcpy(prgb + 3 * i, pal[g[i] % 5], 3);
    pmask[i] = g[i] % 5 != 0;
  }
  write_or_die("palette.png", prgb, h, w, CG_PNG_PALETTE);
  check_read("palette.png", prgb, pmask, h, w);

  /* binary palette masks are read by index, not colour: index 0 white, 1 black, and a palette
   * of two black entries (PIL's np.array gives the indices; both used to read by colour:
   * inverted, and all background) */
  static const uint8_t wb[2 * 3] = {255, 255, 255, 0, 0, 0}, bb[2 * 3] = {0};
  uint8_t idx[7 * 13], want_idx[7 * 13];
  for (size_t i = 0; i < n; i++) want_idx[i] = idx[i] = g[i] % 3 == 0;
  const uint8_t *pals[2] = {wb, bb};
  for (int k = 0; k < 2; k++) {
    char pp[512], perr[512];
    CG_TEST_CHECK(!cg_png_write_indexed(path_of(pp, sizeof pp, "pal_index.png"), idx, h, w,
                                        pals[k], 2, perr, sizeof perr), "%s", perr);
    uint8_t *m = NULL;
    int mh = 0, mw = 0;
    CG_TEST_CHECK(!cg_png_read_mask(pp, 0, &m, &mh, &mw, perr, sizeof perr), "%s", perr);
    size_t diff = 0;
    for (size_t i = 0; m && i < n; i++) diff += m[i] != want_idx[i];
    CG_TEST_CHECK(m && diff == 0, "palette %s: %zu mask pixels not index > 0", k ? "black/black"
                  : "white/black", diff);
    free(m);
    /* the fit (train, pack) and predict's --masks read through the same rows */
    uint8_t frgb[7 * 7 * 3], fm[7 * 7];
    write_or_die("pal_img.png", g, h, w, CG_PNG_GRAY8);
    char ip[512];
    CG_TEST_CHECK(!cg_fit_png(path_of(ip, sizeof ip, "pal_img.png"), pp, 0, 7, 0, 0, frgb, fm,
                              NULL, NULL, perr, sizeof perr), "%s", perr);
    diff = 0;
    for (int y = 0; y < 7; y++)
      for (int x = 0; x < 7; x++) diff += fm[y * 7 + x] != want_idx[y * 13 + 3 + x];
    CG_TEST_CHECK(diff == 0, "fitted palette mask (%d): %zu pixels not index > 0", k, diff);
  }

  /* a palette of more than 256 colours cannot be written, and leaves no file */
  char p[512], err[512];
  uint8_t many[20 * 20 * 3];
  for (int i = 0; i < 400; i++) {
    many[3 * i] = (uint8_t)i;
    many[3 * i + 1] = (uint8_t)(i >> 8);
    many[3 * i + 2] = 9;
  }
  int rc = cg_png_write(path_of(p, sizeof p, "toomany.png"), many, 20, 20, CG_PNG_PALETTE, err,
                        sizeof err);
  CG_TEST_CHECK(rc != 0 && contains(err, "toomany.png") && file_size(p) < 0, "palette: %s", err);
}

static void test_png_errors(void) {
  char p[512], err[512];
  uint8_t *px = NULL;
  int h, w;
  /* missing file */
  int rc = cg_png_read_rgb(path_of(p, sizeof p, "nope.png"), CG_PNG_DEFAULT_MAX_PIXELS, &px, &h, &w, err,
                           sizeof err);
  CG_TEST_CHECK(rc && contains(err, "nope.png") && contains(err, "No such file"), "%s", err);
  /* not a PNG */
  FILE *f = fopen(path_of(p, sizeof p, "text.png"), "w");
  fputs("hello, not a png\n", f);
  fclose(f);
  rc = cg_png_read_size(p, CG_PNG_DEFAULT_MAX_PIXELS, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && contains(err, "text.png") && contains(err, "not a PNG"), "%s", err);
  /* truncated: a large noisy image cut in half keeps its header but not its data */
  const int H = 64, W = 64;
  uint8_t *big = malloc((size_t)H * W * 3);
  fill_random(big, (size_t)H * W * 3, 3);
  write_or_die("cut.png", big, H, W, CG_PNG_RGB8);
  path_of(p, sizeof p, "cut.png");
  truncate_to(p, file_size(p) / 2);
  rc = cg_png_read_size(p, CG_PNG_DEFAULT_MAX_PIXELS, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && h == H && w == W, "header of a truncated file: %s", err);
  rc = cg_png_read_rgb(p, CG_PNG_DEFAULT_MAX_PIXELS, &px, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && px == NULL && contains(err, "cut.png") && contains(err, "truncated"), "%s",
                err);
  rc = cg_png_read_mask(p, CG_PNG_DEFAULT_MAX_PIXELS, &px, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && px == NULL && contains(err, "cut.png"), "%s", err);
  /* corrupt data: a flipped byte in the middle of the compressed stream */
  write_or_die("flip.png", big, H, W, CG_PNG_RGB8);
  path_of(p, sizeof p, "flip.png");
  flip_byte(p, file_size(p) / 2);
  rc = cg_png_read_rgb(p, CG_PNG_DEFAULT_MAX_PIXELS, &px, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc && px == NULL && contains(err, "flip.png") && contains(err, "decode failed"),
                "%s", err);
  printf("PASS png errors (last: %s)\n", err);
  free(big);
}

/* ---- fitting rule ----------------------------------------------------------------------- */

static void test_fit_rule(void) {
  /* 8 wide x 4 high linear ramps to 2x2: the centred 4x4 square (x 2..5) halved. Output pixel
   * (ox, oy) samples u = 2.5 + 2 ox, v = 0.5 + 2 oy, where bilinear of a ramp is exact. */
  const int H = 4, W = 8, S = 2;
  uint8_t rgb[4 * 8 * 3], mask[4 * 8], orgb[2 * 2 * 3], omask[2 * 2];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *p = rgb + 3 * (y * W + x);
      p[0] = (uint8_t)(10 * x + 50 * y);
      p[1] = (uint8_t)(20 * x + 10 * y);
      p[2] = (uint8_t)(255 - 10 * x);
      mask[y * W + x] = (uint8_t)((7 * x + 3 * y) % 2);
    }
  cg_fit_square(rgb, mask, H, W, S, orgb, omask);
  int bad = 0;
  for (int oy = 0; oy < S; oy++)
    for (int ox = 0; ox < S; ox++) {
      double u = 2.5 + 2 * ox, v = 0.5 + 2 * oy;
      int want[3] = {(int)(10 * u + 50 * v + 0.5), (int)(20 * u + 10 * v + 0.5),
                     (int)(255 - 10 * u + 0.5)};
      for (int k = 0; k < 3; k++)
        if (orgb[3 * (oy * S + ox) + k] != want[k]) {
          bad++;
          printf("  (%d,%d) ch %d: got %d want %d\n", ox, oy, k, orgb[3 * (oy * S + ox) + k], want[k]);
        }
      int mx = 3 + 2 * ox, my = 1 + 2 * oy; /* nearest: floor(2 + (ox + 0.5) * 2) */
      if (omask[oy * S + ox] != mask[my * W + mx]) bad++;
    }
  CG_TEST_CHECK(bad == 0, "downscale rule: %d mismatches", bad);

  /* 20 wide x 16 high to 16: a pure centre crop (columns 2..17), copied exactly */
  uint8_t r2[16 * 20 * 3], m2[16 * 20], o2[16 * 16 * 3], om2[16 * 16];
  fill_random(r2, sizeof r2, 11);
  for (int i = 0; i < 16 * 20; i++) m2[i] = r2[3 * i] & 1;
  cg_fit_square(r2, m2, 16, 20, 16, o2, om2);
  bad = 0;
  for (int y = 0; y < 16; y++)
    for (int x = 0; x < 16; x++) {
      bad += memcmp(o2 + 3 * (y * 16 + x), r2 + 3 * (y * 20 + x + 2), 3) != 0;
      bad += om2[y * 16 + x] != m2[y * 20 + x + 2];
    }
  CG_TEST_CHECK(bad == 0, "centre crop: %d mismatches", bad);

  /* upscale of a tall image: constant colour stays constant, the mask keeps its halves */
  uint8_t r3[6 * 3 * 3], m3[6 * 3], o3[8 * 8 * 3], om3[8 * 8];
  for (int i = 0; i < 18; i++) {
    r3[3 * i] = 40;
    r3[3 * i + 1] = 90;
    r3[3 * i + 2] = 200;
    m3[i] = (i % 3) >= 1; /* x >= 1 */
  }
  cg_fit_square(r3, m3, 6, 3, 8, o3, om3);
  bad = 0;
  for (int i = 0; i < 64; i++) {
    bad += o3[3 * i] != 40 || o3[3 * i + 1] != 90 || o3[3 * i + 2] != 200;
    int x = i % 8; /* source column floor((x + 0.5) * 3 / 8) */
    bad += om3[i] != ((int)((x + 0.5) * 3 / 8) >= 1);
  }
  CG_TEST_CHECK(bad == 0, "upscale: %d mismatches", bad);
  printf("PASS fitting rule\n");
}

/* ---- PNG directory, shard, open, split -------------------------------------------------- */

#define NS 6
static const char *names[NS] = {"b01", "a00", "c02", "e04", "d03", "f05"};

/* A dataset directory at rel (with images/ and masks/) of NS samples of varied kinds and sizes.
 * Keeps the 16x16 samples' pixels for the identity check. */
static uint8_t ident_rgb[NS][16 * 16 * 3], ident_mask[NS][16 * 16];

static void make_dataset(const char *rel) {
  char d[128];
  mkdir_rel(rel);
  snprintf(d, sizeof d, "%s/images", rel);
  mkdir_rel(d);
  snprintf(d, sizeof d, "%s/masks", rel);
  mkdir_rel(d);
  for (int i = 0; i < NS; i++) {
    char im[160], mk[160];
    snprintf(im, sizeof im, "%s/images/%s.png", rel, names[i]);
    snprintf(mk, sizeof mk, "%s/masks/%s.png", rel, names[i]);
    const int h = i < 3 ? 16 : 24 + 4 * i, w = i < 3 ? 16 : 40 - i;
    const size_t n = (size_t)h * w;
    uint8_t *rgb = malloc(3 * n), *m = malloc(n), *m255 = malloc(n);
    fill_random(rgb, 3 * n, 100 + (uint64_t)i);
    for (size_t k = 0; k < n; k++) {
      m[k] = (rgb[3 * k] ^ rgb[3 * k + 1]) > 128;
      m255[k] = m[k] ? 255 : 0;
    }
    if (i == 1) { /* a gray image */
      for (size_t k = 0; k < n; k++) rgb[3 * k + 1] = rgb[3 * k + 2] = rgb[3 * k];
      uint8_t *g = malloc(n);
      for (size_t k = 0; k < n; k++) g[k] = rgb[3 * k];
      write_or_die(im, g, h, w, CG_PNG_GRAY8);
      free(g);
    } else {
      write_or_die(im, rgb, h, w, CG_PNG_RGB8);
    }
    if (i == 2) { /* a palette mask: white on black */
      uint8_t *pm = malloc(3 * n);
      for (size_t k = 0; k < n; k++) pm[3 * k] = pm[3 * k + 1] = pm[3 * k + 2] = m255[k];
      write_or_die(mk, pm, h, w, CG_PNG_PALETTE);
      free(pm);
    } else {
      write_or_die(mk, m255, h, w, CG_PNG_GRAY8);
    }
    if (h == 16 && w == 16) {
      memcpy(ident_rgb[i], rgb, 3 * n);
      memcpy(ident_mask[i], m, n);
    }
    free(rgb);
    free(m);
    free(m255);
  }
}

static int find_name(const char *s) {
  for (int i = 0; i < NS; i++)
    if (!strcmp(names[i], s)) return i;
  return -1;
}

static void test_png_dir_and_shard(void) {
  char d[512], shard[512], err[1024];
  make_dataset("ds");
  path_of(d, sizeof d, "ds");
  const int S = 16;
  cg_source_t *src = cg_source_open(d, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(src != NULL, "open png dir: %s", err);
  if (!src) return;
  CG_TEST_CHECK(!strcmp(src->ops->kind, "png") && src->count == NS && src->h == S && src->w == S,
                "png dir: kind %s count %lld", src->ops->kind, (long long)src->count);
  /* sorted by name */
  for (int64_t i = 1; i < src->count; i++)
    CG_TEST_CHECK(strcmp(cg_source_name(src, i - 1), cg_source_name(src, i)) < 0, "order");
  uint8_t rgb[16 * 16 * 3], mask[16 * 16], rgb2[16 * 16 * 3], mask2[16 * 16];
  int ident = 0;
  for (int64_t i = 0; i < src->count; i++) {
    int rc = cg_source_load(src, i, rgb, mask, err, sizeof err);
    CG_TEST_CHECK(rc == 0, "load %lld: %s", (long long)i, err);
    int k = find_name(cg_source_name(src, i));
    if (k < 3) { /* 16x16 on disk: identity */
      CG_TEST_CHECK(!memcmp(rgb, ident_rgb[k], sizeof rgb) && !memcmp(mask, ident_mask[k], sizeof mask),
                    "identity load of %s differs", names[k]);
      ident++;
    }
    for (int p = 0; p < S * S; p++) CG_TEST_CHECK(mask[p] <= 1, "mask value %d", mask[p]);
  }
  CG_TEST_CHECK(ident == 3, "identity samples %d", ident);
  printf("PASS png dir source\n");

  /* pack, then the shard gives the very same bytes and names */
  char im[600], mk[600];
  snprintf(im, sizeof im, "%s/images", d);
  snprintf(mk, sizeof mk, "%s/masks", d);
  mkdir_rel("out");
  path_of(shard, sizeof shard, "out/ds.cgds");
  cg_cgds_stats_t st;
  int rc = cg_cgds_pack(im, mk, shard, S, CG_PNG_DEFAULT_MAX_PIXELS, NULL, &st, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "pack: %s", err);
  CG_TEST_CHECK(st.records == NS && (long)st.bytes == file_size(shard), "pack stats %lld %llu",
                (long long)st.records, (unsigned long long)st.bytes);
  char outdir[512];
  CG_TEST_CHECK(count_entries(path_of(outdir, sizeof outdir, "out")) == 1, "leftovers after pack");
  cg_source_t *sh = cg_source_open(shard, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(sh != NULL, "open shard: %s", err);
  if (sh) {
    CG_TEST_CHECK(!strcmp(sh->ops->kind, "cgds") && sh->count == NS, "shard kind/count");
    int same = 1;
    for (int64_t i = 0; i < NS; i++) {
      rc = cg_source_load(src, i, rgb, mask, err, sizeof err);
      rc |= cg_source_load(sh, i, rgb2, mask2, err, sizeof err);
      same &= rc == 0 && !memcmp(rgb, rgb2, sizeof rgb) && !memcmp(mask, mask2, sizeof mask) &&
              !strcmp(cg_source_name(src, i), cg_source_name(sh, i));
    }
    CG_TEST_CHECK(same, "shard differs from the PNG source");
    if (same) printf("PASS pack round trip (%llu bytes)\n", (unsigned long long)st.bytes);

    /* the split: exact size, disjoint, covering, and the same names from dir and shard */
    cg_source_t *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL;
    rc = cg_source_split(src, 0.3, &tr, &va, err, sizeof err);
    rc |= cg_source_split(sh, 0.3, &tr2, &va2, err, sizeof err);
    CG_TEST_CHECK(rc == 0, "split: %s", err);
    if (!rc) {
      CG_TEST_CHECK(va->count == 2 && tr->count == 4, "split sizes %lld/%lld", (long long)tr->count,
                    (long long)va->count);
      int seen[NS] = {0};
      for (int64_t i = 0; i < tr->count; i++) seen[find_name(cg_source_name(tr, i))]++;
      for (int64_t i = 0; i < va->count; i++) seen[find_name(cg_source_name(va, i))]++;
      for (int i = 0; i < NS; i++) CG_TEST_CHECK(seen[i] == 1, "sample %s seen %d times", names[i], seen[i]);
      for (int64_t i = 0; i < va->count; i++)
        CG_TEST_CHECK(!strcmp(cg_source_name(va, i), cg_source_name(va2, i)), "dir/shard split");
      rc = cg_source_load(va, 0, rgb, mask, err, sizeof err);
      rc |= cg_source_load(va2, 0, rgb2, mask2, err, sizeof err);
      CG_TEST_CHECK(rc == 0 && !memcmp(rgb, rgb2, sizeof rgb), "view loads");
      printf("PASS split (val: %s, %s)\n", cg_source_name(va, 0), cg_source_name(va, 1));
    }
    cg_source_destroy(tr);
    cg_source_destroy(va);
    cg_source_destroy(tr2);
    cg_source_destroy(va2);
    cg_source_destroy(sh);
  }
  /* a source without names splits by index; bad fractions are refused */
  cg_source_t *syn = cg_source_open("synthetic", 8, 5, 10, err, sizeof err), *a = NULL, *b = NULL;
  CG_TEST_CHECK(syn && !strcmp(syn->ops->kind, "synthetic") && syn->count == 10, "synthetic open");
  rc = cg_source_split(syn, 0.25, &a, &b, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && a->count == 7 && b->count == 3, "synthetic split");
  cg_source_destroy(a);
  cg_source_destroy(b);
  CG_TEST_CHECK(cg_source_split(syn, 1.0, &a, &b, err, sizeof err) == -1 && contains(err, "--val-fraction"),
                "fraction 1: %s", err);
  cg_source_destroy(syn);

  /* size mismatch between the shard and --image-size */
  sh = cg_source_open(shard, 32, 1, 0, err, sizeof err);
  CG_TEST_CHECK(!sh && contains(err, "ds.cgds") && contains(err, "--image-size"), "%s", err);
  printf("PASS shard size mismatch: %s\n", err);
  cg_source_destroy(src);
}

/* ---- bad input -------------------------------------------------------------------------- */

static void expect_open_fail(const char *rel, int size, const char *want1, const char *want2) {
  char p[512], err[1024] = "";
  cg_source_t *s = cg_source_open(path_of(p, sizeof p, rel), size, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s == NULL, "%s opened", rel);
  CG_TEST_CHECK(contains(err, want1) && contains(err, want2), "%s: message '%s' lacks '%s'/'%s'",
                rel, err, want1, want2);
  if (!s && contains(err, want1) && contains(err, want2)) printf("PASS bad input: %s\n", err);
  cg_source_destroy(s);
}

static void copy_file(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  fclose(a);
  fclose(b);
}

static void test_bad_inputs(void) {
  char p[512], q[512], err[1024];
  uint8_t rgb[16 * 16 * 3], mask[16 * 16];
  fill_random(rgb, sizeof rgb, 5);
  for (int i = 0; i < 256; i++) mask[i] = rgb[i] & 1;

  expect_open_fail("does-not-exist", 16, "does-not-exist", "No such file");
  mkdir_rel("empty");
  expect_open_fail("empty", 16, "empty/images", "No such file");

  /* unpaired image, unpaired mask */
  mkdir_rel("unpaired");
  mkdir_rel("unpaired/images");
  mkdir_rel("unpaired/masks");
  write_or_die("unpaired/images/a.png", rgb, 16, 16, CG_PNG_RGB8);
  write_or_die("unpaired/masks/a.png", mask, 16, 16, CG_PNG_GRAY8);
  write_or_die("unpaired/images/lonely.png", rgb, 16, 16, CG_PNG_RGB8);
  expect_open_fail("unpaired", 16, "images/lonely.png", "no mask");
  remove(path_of(p, sizeof p, "unpaired/images/lonely.png"));
  write_or_die("unpaired/masks/orphan.png", mask, 16, 16, CG_PNG_GRAY8);
  expect_open_fail("unpaired", 16, "masks/orphan.png", "no image");

  /* image and mask of different sizes */
  mkdir_rel("mismatch");
  mkdir_rel("mismatch/images");
  mkdir_rel("mismatch/masks");
  write_or_die("mismatch/images/x.png", rgb, 16, 16, CG_PNG_RGB8);
  write_or_die("mismatch/masks/x.png", mask, 8, 16, CG_PNG_GRAY8);
  expect_open_fail("mismatch", 16, "masks/x.png", "16x8");

  /* a file that is not a PNG at all fails at open (its header is read) */
  mkdir_rel("garbage");
  mkdir_rel("garbage/images");
  mkdir_rel("garbage/masks");
  write_or_die("garbage/images/g.png", rgb, 16, 16, CG_PNG_RGB8);
  FILE *f = fopen(path_of(p, sizeof p, "garbage/masks/g.png"), "w");
  fputs("RIFF\x10\x01\x02\x03WEBPVP8 ", f);
  fclose(f);
  expect_open_fail("garbage", 16, "masks/g.png", "a WebP?");

  /* a truncated PNG opens (IHDR intact) but fails to load, naming the file */
  mkdir_rel("trunc");
  mkdir_rel("trunc/images");
  mkdir_rel("trunc/masks");
  uint8_t big[64 * 64 * 3], bigm[64 * 64];
  fill_random(big, sizeof big, 9);
  for (int i = 0; i < 64 * 64; i++) bigm[i] = big[i] & 1;
  write_or_die("trunc/images/t.png", big, 64, 64, CG_PNG_RGB8);
  write_or_die("trunc/masks/t.png", bigm, 64, 64, CG_PNG_GRAY8);
  path_of(p, sizeof p, "trunc/images/t.png");
  truncate_to(p, file_size(p) / 2);
  cg_source_t *s = cg_source_open(path_of(q, sizeof q, "trunc"), 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "truncated PNG should pass the header check: %s", err);
  if (s) {
    int rc = cg_source_load(s, 0, rgb, mask, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, "images/t.png") && contains(err, "truncated"), "%s", err);
    printf("PASS bad input at load: %s\n", err);
    cg_source_destroy(s);
  }

  /* shards: wrong magic, cut in half, corrupt header, corrupt record */
  char shard[512];
  path_of(shard, sizeof shard, "out/ds.cgds");
  path_of(p, sizeof p, "magic.cgds");
  copy_file(shard, p);
  flip_byte(p, 0);
  expect_open_fail("magic.cgds", 16, "magic.cgds", "bad magic");
  path_of(p, sizeof p, "half.cgds");
  copy_file(shard, p);
  truncate_to(p, file_size(p) / 2);
  expect_open_fail("half.cgds", 16, "half.cgds", "truncated");
  path_of(p, sizeof p, "header.cgds");
  copy_file(shard, p);
  flip_byte(p, 17); /* inside the record count */
  expect_open_fail("header.cgds", 16, "header.cgds", "corrupt header");
  path_of(p, sizeof p, "table.cgds");
  copy_file(shard, p);
  flip_byte(p, file_size(p) - 3); /* inside the names */
  expect_open_fail("table.cgds", 16, "table.cgds", "CRC mismatch");
  path_of(p, sizeof p, "record.cgds");
  copy_file(shard, p);
  /* record 1 starts at the first multiple of 64 after record 0 (64 + 1024 bytes) */
  flip_byte(p, 64 + 16 * 16 * 4 + 100);
  s = cg_source_open(p, 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "a corrupt record is found at load, not open: %s", err);
  if (s) {
    int rc0 = cg_source_load(s, 0, rgb, mask, err, sizeof err);
    CG_TEST_CHECK(rc0 == 0, "record 0 is intact: %s", err);
    int rc1 = cg_source_load(s, 1, rgb, mask, err, sizeof err);
    CG_TEST_CHECK(rc1 && contains(err, "record.cgds") && contains(err, "record 1 (b01)") &&
                      contains(err, "CRC mismatch"),
                  "%s", err);
    printf("PASS bad record: %s\n", err);
    /* shortened after open: a message, not SIGBUS */
    truncate_to(p, 64 + 16 * 16 * 4 + 10);
    int rc2 = cg_source_load(s, 3, rgb, mask, err, sizeof err);
    CG_TEST_CHECK(rc2 && contains(err, "record 3") && contains(err, "truncated"), "%s", err);
    printf("PASS shortened shard: %s\n", err);
    cg_source_destroy(s);
  }
}

/* ---- pack failures ---------------------------------------------------------------------- */

/* ---- a list of pairs --------------------------------------------------------------------- */

static void write_text(const char *rel, const char *text, size_t n) {
  char p[512];
  FILE *f = fopen(path_of(p, sizeof p, rel), "wb");
  if (!f || fwrite(text, 1, n, f) != n || fclose(f)) {
    perror(p);
    exit(1);
  }
}

static void expect_list_fail(const char *rel, const char *text, const char *want) {
  char p[512], err[1024] = "";
  write_text(rel, text, strlen(text));
  const cg_source_opts_t o = {.size = 16, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  cg_source_t *s = cg_source_open_opts(path_of(p, sizeof p, rel), &o, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, rel) && contains(err, want), "%s: '%s' lacks '%s'", rel, err,
                want);
  if (!s && contains(err, want)) printf("PASS bad list: %s\n", err);
  cg_source_destroy(s);
}

/* A list of IMAGE MASK lines reads the very pairs of the directory, in the list's order, named
 * alike (so it splits alike), whatever its separators, comments, line ends and path forms; and
 * pack packs it. Bad lines name LIST:LINE. */
static void test_pair_list(void) {
  char d[512], lst[512], err[1024], text[4096];
  path_of(d, sizeof d, "ds");
  mkdir_rel("lst");
  mkdir_rel("lst/sub dir");
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/images/c02.png", d);
  copy_file(a, path_of(b, sizeof b, "lst/sub dir/my c02.png"));
  /* the list's order: e04, c02 (tab, a name with spaces, absolute mask), b01 (CRLF) */
  snprintf(text, sizeof text,
           "# comment\n\n../ds/images/e04.png   ../ds/masks/e04.png\n"
           "sub dir/my c02.png \t %s/masks/c02.png\n  # indented comment\n"
           "%s/images/b01.png ../ds/masks/b01.png\r\n", d, d);
  write_text("lst/pairs.txt", text, strlen(text));
  path_of(lst, sizeof lst, "lst/pairs.txt");
  CG_TEST_CHECK(cg_source_spec_kind(lst) == CG_SPEC_LIST && cg_source_spec_kind(d) == CG_SPEC_DIR,
                "spec kinds");
  cg_source_t *dir = cg_source_open(d, 16, 1, 0, err, sizeof err);
  cg_source_t *l = cg_source_open(lst, 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(dir && l, "open list: %s", err);
  if (!dir || !l) return;
  static const char *const want[3] = {"e04", "my c02", "b01"};
  static const char *const same[3] = {"e04", "c02", "b01"};
  CG_TEST_CHECK(l->count == 3, "list count %lld", (long long)l->count);
  uint8_t rgb[16 * 16 * 3], mask[16 * 16], rgb2[16 * 16 * 3], mask2[16 * 16];
  for (int64_t i = 0; i < l->count && i < 3; i++) {
    CG_TEST_CHECK(!strcmp(cg_source_name(l, i), want[i]), "list name %lld: %s", (long long)i,
                  cg_source_name(l, i));
    int64_t j = 0;
    while (j < dir->count && strcmp(cg_source_name(dir, j), same[i])) j++;
    int rc = cg_source_load(l, i, rgb, mask, err, sizeof err);
    rc |= cg_source_load(dir, j, rgb2, mask2, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && !memcmp(rgb, rgb2, sizeof rgb) && !memcmp(mask, mask2, sizeof mask),
                  "list pair %s differs from the directory's: %s", want[i], err);
  }
  printf("PASS list of pairs: order, names, separators, comments, CRLF, paths\n");

  /* pack --list: the same records and names */
  char shard[512];
  cg_cgds_pack_opts_t po = {.size = 16, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  int rc = cg_cgds_pack_opts(lst, NULL, path_of(shard, sizeof shard, "lst/l.cgds"), &po, NULL, NULL,
                             err, sizeof err);
  cg_source_t *sh = rc ? NULL : cg_source_open(shard, 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(sh && sh->count == 3, "pack a list: %s", err);
  for (int64_t i = 0; sh && i < 3; i++) {
    rc = cg_source_load(l, i, rgb, mask, err, sizeof err);
    rc |= cg_source_load(sh, i, rgb2, mask2, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && !memcmp(rgb, rgb2, sizeof rgb) && !memcmp(mask, mask2, sizeof mask) &&
                      !strcmp(cg_source_name(sh, i), want[i]), "packed list record %lld", (long long)i);
  }
  if (sh) printf("PASS pack a list\n");
  cg_source_destroy(sh);
  cg_source_destroy(l);
  cg_source_destroy(dir);

  /* a bad pair (mask of another size) is a bad sample: refused, or left out with skip_bad */
  snprintf(text, sizeof text, "../ds/images/a00.png ../ds/masks/a00.png\n"
           "../ds/images/b01.png ../ds/masks/e04.png\n");
  write_text("lst/bad.txt", text, strlen(text));
  cg_source_opts_t o = {.size = 16, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  path_of(lst, sizeof lst, "lst/bad.txt");
  l = cg_source_open_opts(lst, &o, err, sizeof err);
  CG_TEST_CHECK(!l && contains(err, "lst/bad.txt:2: ") && contains(err, "masks/e04.png") &&
                    contains(err, "images/b01.png"), "%s", err);
  o.skip_bad = 1;
  l = cg_source_open_opts(lst, &o, err, sizeof err);
  CG_TEST_CHECK(l && l->count == 1 && l->dropped == 1 && !strcmp(cg_source_name(l, 0), "a00"),
                "skip_bad list: %s", err);
  if (l) printf("PASS list: a bad pair is a bad sample\n");
  cg_source_destroy(l);

  expect_list_fail("lst/one.txt", "../ds/images/a00.png\n", "lst/one.txt:1: 1 field, need 2");
  expect_list_fail("lst/three.txt", "# x\n../ds/images/a00.png ../ds/masks/a00.png x\n",
                   "lst/three.txt:2: 3 or more fields");
  expect_list_fail("lst/missing.txt", "../ds/images/a00.png ../ds/masks/zz.png\n",
                   "lst/missing.txt:1: ");
  expect_list_fail("lst/isdir.txt", "../ds/images ../ds/masks/a00.png\n", "is a directory");
  expect_list_fail("lst/dup.txt", "../ds/images/a00.png ../ds/masks/a00.png\n"
                   "../ds/images/a00.png ../ds/masks/b01.png\n",
                   "lst/dup.txt:2: image name a00 is line 1's");
  expect_list_fail("lst/empty.txt", "# nothing\n\n", "no IMAGE MASK lines");
  static char longl[9000];
  memset(longl, 'x', sizeof longl - 1);
  expect_list_fail("lst/long.txt", longl, "lst/long.txt:1: line longer than 8192 bytes");
  expect_list_fail("lst/cr.txt", "../ds/images/a00.png ../ds/masks/a00.png\r"
                   "../ds/images/a01.png ../ds/masks/a01.png\r",
                   "lst/cr.txt:1: a carriage return inside a line: the list has old Mac line ends");
  static char crl[9000]; /* a long one reads as one line past the line limit: still CR ends */
  for (size_t i = 0; i + 1 < sizeof crl; i++) crl[i] = i % 60 == 59 ? '\r' : 'a';
  expect_list_fail("lst/crlong.txt", crl, "lst/crlong.txt:1: a carriage return inside a line");
  /* a NUL byte past the first 4 KiB (before it, the file is no list: opened as a shard) */
  static char nul[5000];
  memset(nul, '#', sizeof nul);
  nul[4500] = '\n';
  nul[4700] = 0;
  write_text("lst/nul.txt", nul, sizeof nul);
  o.skip_bad = 0;
  l = cg_source_open_opts(path_of(lst, sizeof lst, "lst/nul.txt"), &o, err, sizeof err);
  CG_TEST_CHECK(!l && contains(err, "nul.txt:2: a NUL byte"), "%s", err);
  cg_source_destroy(l);
  /* every missing file is counted, not only the first */
  expect_list_fail("lst/missing3.txt", "../ds/images/a00.png ../ds/masks/zz.png\n"
                   "../ds/images/b01.png ../ds/masks/b01.png\n../ds/images/yy.png ../ds/masks/a00.png\n"
                   "../ds/images/xx.png ../ds/masks/xx.png\n",
                   "zz.png: No such file or directory (and 2 more line(s) naming missing or "
                   "unusable files: 3 4)");
  /* what is no list is named: UTF-16 (Windows' redirection), an image, a directory for pack */
  write_text("lst/u16.txt", "\xff\xfe.\0.\0/\0", 8);
  l = cg_source_open_opts(path_of(lst, sizeof lst, "lst/u16.txt"), &o, err, sizeof err);
  CG_TEST_CHECK(!l && contains(err, "UTF-16 text (save it as UTF-8)"), "%s", err);
  char png[600];
  snprintf(png, sizeof png, "%s/images/a00.png", d);
  o.skip_bad = 0;
  l = cg_source_open_opts(png, &o, err, sizeof err);
  CG_TEST_CHECK(!l && contains(err, "a PNG image: data is synthetic, a directory"), "%s", err);
  l = cg_source_png_list(d, &o, err, sizeof err);
  CG_TEST_CHECK(!l && contains(err, "is a directory, not a list file"), "%s", err);
  /* a UTF-8 byte-order mark, a tab ending a space-separated line, a name starting CGDS */
  mkdir_rel("lst/CGDS2019");
  snprintf(a, sizeof a, "%s/images/a00.png", d);
  copy_file(a, path_of(b, sizeof b, "lst/CGDS2019/a.png"));
  const char *bom = "\xef\xbb\xbf" "CGDS2019/a.png ../ds/masks/a00.png\t\n"
                    "\t../ds/images/b01.png ../ds/masks/b01.png \n";
  write_text("lst/bom.txt", bom, strlen(bom));
  path_of(lst, sizeof lst, "lst/bom.txt");
  l = cg_source_open_opts(lst, &o, err, sizeof err);
  CG_TEST_CHECK(l && l->count == 2 && !strcmp(cg_source_name(l, 0), "a") &&
                    cg_source_spec_kind(lst) == CG_SPEC_LIST, "BOM, tabs, CGDS name: %s", err);
  if (l) printf("PASS list: a byte-order mark, stray tabs and a name starting CGDS read\n");
  cg_source_destroy(l);
  /* a text file named .cgds is a broken shard, not a list */
  expect_list_fail("lst/text.cgds", "../ds/images/a00.png ../ds/masks/a00.png\n", "bad magic");
}

static void test_pack_failures(void) {
  char im[512], mk[512], out[512], dir[512], err[1024];
  /* a bad PNG among the inputs: no output, no temporary */
  path_of(im, sizeof im, "trunc/images");
  path_of(mk, sizeof mk, "trunc/masks");
  mkdir_rel("packfail");
  path_of(out, sizeof out, "packfail/x.cgds");
  int rc = cg_cgds_pack(im, mk, out, 16, CG_PNG_DEFAULT_MAX_PIXELS, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc == CG_CGDS_EINPUT && contains(err, "t.png"), "pack of a bad PNG: %d %s", rc, err);
  CG_TEST_CHECK(count_entries(path_of(dir, sizeof dir, "packfail")) == 0, "pack left files behind");
  /* an existing target is left untouched */
  FILE *f = fopen(out, "w");
  fputs("old contents", f);
  fclose(f);
  rc = cg_cgds_pack(im, mk, out, 16, CG_PNG_DEFAULT_MAX_PIXELS, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc == CG_CGDS_EINPUT && file_size(out) == 12 && count_entries(dir) == 1,
                "failed pack touched the target");
  /* interrupted: same */
  volatile sig_atomic_t cancel = 1;
  path_of(im, sizeof im, "ds/images");
  path_of(mk, sizeof mk, "ds/masks");
  rc = cg_cgds_pack(im, mk, out, 16, CG_PNG_DEFAULT_MAX_PIXELS, &cancel, NULL, err, sizeof err);
  CG_TEST_CHECK(rc == CG_CGDS_EINTR && file_size(out) == 12 && count_entries(dir) == 1,
                "interrupted pack: %d %s", rc, err);
  /* an output directory that does not exist */
  path_of(out, sizeof out, "no-such-dir/x.cgds");
  rc = cg_cgds_pack(im, mk, out, 16, CG_PNG_DEFAULT_MAX_PIXELS, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc == CG_CGDS_EIO && contains(err, "no-such-dir"), "pack to a missing dir: %s", err);
  printf("PASS pack failures leave nothing (last: %s)\n", err);

  /* the command line */
  path_of(out, sizeof out, "packfail/cli.cgds");
  char *a1[] = {"pack", "--images", im, "--masks", mk, "--out", out, "--image-size=16", NULL};
  CG_TEST_CHECK(cg_pack_main(8, a1) == 0 && file_size(out) > 0, "pack command");
  char *a2[] = {"pack", "--images", im, "--out", out, NULL};
  CG_TEST_CHECK(cg_pack_main(5, a2) == CG_EXIT_USAGE, "missing --masks");
  char *a3[] = {"pack", "--images", im, "--masks", mk, "--out", out, "--image-size", "1", NULL};
  CG_TEST_CHECK(cg_pack_main(9, a3) == CG_EXIT_USAGE, "bad --image-size");
  char *a4[] = {"pack", "--bogus", NULL};
  CG_TEST_CHECK(cg_pack_main(2, a4) == CG_EXIT_USAGE, "unknown flag");
  char nodir[512];
  path_of(nodir, sizeof nodir, "nothing-here");
  char *a5[] = {"pack", "--images", nodir, "--masks", mk, "--out", out, NULL};
  CG_TEST_CHECK(cg_pack_main(7, a5) == CG_EXIT_USAGE, "missing input directory");
  printf("PASS pack command\n");
}

/* ---- loader: --skip-bad and random crops ------------------------------------------------ */

static void run_loader(cg_source_t *src, int workers, int64_t *bad, int *real, int *zero_w) {
  cg_loader_cfg_t lc = {0};
  lc.source = src;
  lc.nsamples = src->count;
  lc.ranks = 1;
  lc.rank = 0;
  lc.batch = 4;
  lc.seed = 3;
  lc.shuffle = 1;
  lc.flip = CG_FLIP_HV;
  lc.crop = 1;
  lc.nfeat = CG_NFEAT;
  lc.first_step = 0;
  lc.nsteps = -1;
  lc.workers = workers;
  lc.nslots = 2;
  lc.skip_bad = 1;
  cg_loader_t *ld = cg_loader_create(&lc);
  cg_host_batch_t *b;
  *real = 0;
  *zero_w = 0;
  while ((b = cg_loader_next(ld, NULL)) != NULL) {
    *real += b->real;
    for (int i = 0; i < b->n; i++) *zero_w += b->weight[i] == 0.0f;
    cg_loader_release(ld, b, 0);
  }
  *bad = cg_loader_take_bad(ld);
  cg_loader_destroy(ld);
}

static void test_loader_skip_bad(void) {
  char d[512], p[512], err[1024];
  /* the dataset of test_png_dir_and_shard (6 samples) plus one truncated PNG: 7 samples, so
   * one epoch at batch 4 = 2 steps, 8 slots: 6 real, 1 skipped, 1 padding */
  make_dataset("skip");
  uint8_t big[64 * 64 * 3], bigm[64 * 64];
  fill_random(big, sizeof big, 21);
  for (int i = 0; i < 64 * 64; i++) bigm[i] = big[i] & 1;
  write_or_die("skip/images/zz.png", big, 64, 64, CG_PNG_RGB8);
  write_or_die("skip/masks/zz.png", bigm, 64, 64, CG_PNG_GRAY8);
  path_of(p, sizeof p, "skip/masks/zz.png");
  truncate_to(p, file_size(p) / 2);
  cg_source_t *src = cg_source_open(path_of(d, sizeof d, "skip"), 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(src && src->count == NS + 1, "open: %s", err);
  if (!src) return;
  for (int workers = 0; workers <= 2; workers += 2) {
    int64_t bad;
    int real, zero_w;
    run_loader(src, workers, &bad, &real, &zero_w);
    CG_TEST_CHECK(bad == 1 && real == NS && zero_w == 2,
                  "workers %d: bad %lld real %d zero weights %d", workers, (long long)bad, real, zero_w);
  }
  printf("PASS loader --skip-bad counts 1 bad sample\n");

  /* without skip_bad the job stops with exit code 2 and the message (in a child: it exits),
   * with helpers and without */
  char log[512], msg[2048] = "";
  path_of(log, sizeof log, "skip/stderr");
  for (int workers = 0; workers <= 2; workers += 2) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      cg_loader_cfg_t lc = {0};
      lc.source = src;
      lc.nsamples = src->count;
      lc.ranks = 1;
      lc.batch = 4;
      lc.nsteps = -1;
      lc.nslots = 2;
      lc.nfeat = CG_NFEAT;
      lc.workers = workers;
      cg_loader_t *ld = cg_loader_create(&lc);
      cg_host_batch_t *b;
      while ((b = cg_loader_next(ld, NULL)) != NULL) cg_loader_release(ld, b, 0);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    FILE *lf = fopen(log, "r");
    size_t n = lf ? fread(msg, 1, sizeof msg - 1, lf) : 0;
    msg[n] = 0;
    if (lf) fclose(lf);
    CG_TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == CG_EXIT_USAGE,
                  "workers %d: a bad sample must end the job with exit code 2 (status %d)", workers,
                  status);
    CG_TEST_CHECK(contains(msg, "masks/zz.png") && contains(msg, "--skip-bad"),
                  "workers %d: the message must name the file and --skip-bad: %s", workers, msg);
  }
  printf("PASS without --skip-bad a bad sample ends the job with exit code 2: %s", msg);
  cg_source_destroy(src);

  /* crops: deterministic, 0/1 masks, constant images stay constant */
  const int h = 24, w = 20;
  uint8_t r1[24 * 20 * 3], m1[24 * 20], r2[24 * 20 * 3], m2[24 * 20], tmp[24 * 20 * 4];
  fill_random(r1, sizeof r1, 4);
  for (int i = 0; i < h * w; i++) m1[i] = r1[i] & 1;
  memcpy(r2, r1, sizeof r1);
  memcpy(m2, m1, sizeof m1);
  const cg_crop_t c3 = cg_augment_window(1, 2, 3, CG_CROP_SCALE_DEFAULT_LO, 1.0);
  const cg_crop_t c3b = cg_augment_window(1, 2, 3, CG_CROP_SCALE_DEFAULT_LO, 1.0);
  CG_TEST_CHECK(!memcmp(&c3, &c3b, sizeof c3), "crop window not deterministic");
  cg_crop_apply(&c3, h, w, r1, m1, tmp);
  cg_crop_apply(&c3b, h, w, r2, m2, tmp);
  CG_TEST_CHECK(!memcmp(r1, r2, sizeof r1) && !memcmp(m1, m2, sizeof m1), "crop not deterministic");
  int bad = 0;
  for (int i = 0; i < h * w; i++) bad += m1[i] > 1;
  memset(r1, 77, sizeof r1);
  const cg_crop_t c4 = cg_augment_window(1, 2, 4, CG_CROP_SCALE_DEFAULT_LO, 1.0);
  cg_crop_apply(&c4, h, w, r1, m1, tmp);
  for (size_t i = 0; i < sizeof r1; i++) bad += r1[i] != 77;
  CG_TEST_CHECK(bad == 0, "crop values: %d bad", bad);
  /* the scale range: every window's side within it, origins spread over [0, 1) */
  int out_of_range = 0, lo_u = 0, hi_u = 0;
  for (int64_t i = 0; i < 400; i++) {
    const cg_crop_t c = cg_augment_window(9, 1, i, 0.3, 0.5);
    out_of_range += c.scale < 0.3 || c.scale > 0.5 || c.u < 0 || c.u >= 1 || c.v < 0 || c.v >= 1;
    lo_u += c.u < 0.1;
    hi_u += c.u > 0.9;
  }
  CG_TEST_CHECK(out_of_range == 0 && lo_u > 10 && hi_u > 10,
                "crop windows: %d out of range, %d near 0, %d near 1", out_of_range, lo_u, hi_u);
  printf("PASS random crop\n");
}

/* Training crops of image files: the window is the whole file's (cg_fit_pair with a window),
 * streamed row by row to the very bytes of a whole decode + cg_resample_* over it; for a file
 * already at the training size the bytes of the old two-step path (fit, then crop the fitted
 * sample); and over the epochs a wide photo's edges are trained on, not only its centred
 * square (before, the fitting rule cut them off before the crop). */
static void test_crop_windows(void) {
  char ip[512], mp[512], err[1024];
  mkdir_rel("crop");
  /* 37 wide x 23 high: random RGB and a 0/1 mask (stored as 0/255) */
  const int H = 23, W = 37;
  uint8_t rgb[23 * 37 * 3], m01[23 * 37], m255[23 * 37];
  fill_random(rgb, sizeof rgb, 77);
  for (int i = 0; i < H * W; i++) {
    m01[i] = (rgb[3 * i] ^ rgb[3 * i + 2]) > 128;
    m255[i] = m01[i] ? 255 : 0;
  }
  write_or_die("crop/wide.png", rgb, H, W, CG_PNG_RGB8);
  write_or_die("crop/wide_mask.png", m255, H, W, CG_PNG_GRAY8);
  path_of(ip, sizeof ip, "crop/wide.png");
  path_of(mp, sizeof mp, "crop/wide_mask.png");
  /* the last ones zoom out (scale > 1): padded around the file, the mask with their pad */
  const cg_crop_t wins[] = {{1.0, 0.0, 0.0, 0},    {1.0, 0.999, 0.5, 0},  {0.75, 0.3, 0.9, 0},
                            {0.5, 0.0, 1.0, 0},    {0.31, 0.77, 0.12, 0}, {1.0, 0.5, 0.5, 0},
                            {1.5, 0.2, 0.7, 255},  {2.0, 0.5, 0.5, 7},    {1.3, 1.0, 0.0, 255},
                            {4.0, 0.0, 1.0, 255},  {1.62, 0.999, 0.001, 9}};
  const int sizes[] = {8, 16, 23, 40};
  int bad = 0;
  for (size_t k = 0; k < sizeof wins / sizeof wins[0]; k++)
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      const int S = sizes[j];
      uint8_t *a = malloc((size_t)S * S * 4), *b = malloc((size_t)S * S * 4);
      const cg_fit_opts_t o = {.size = S, .win = &wins[k]};
      if (cg_fit_pair(ip, mp, &o, a, a + 3 * S * S, NULL, NULL, err, sizeof err)) {
        printf("  window %zu size %d: %s\n", k, S, err);
        bad++;
      } else {
        double x0, y0, side;
        cg_crop_px(&wins[k], H, W, &x0, &y0, &side);
        cg_resample_rgb(rgb, H, W, x0, y0, side, side, b, S, S);
        cg_resample_mask_pad(m01, H, W, x0, y0, side, side, b + 3 * S * S, S, S,
                             (uint8_t)wins[k].pad);
        if (memcmp(a, b, (size_t)S * S * 4)) {
          printf("  window %zu (%g, %g, %g) size %d: streamed differs from whole\n", k,
                 wins[k].scale, wins[k].u, wins[k].v, S);
          bad++;
        }
      }
      free(a);
      free(b);
    }
  CG_TEST_CHECK(bad == 0, "streamed windows: %d differ", bad);

  /* a 300 x 1 file zoomed out to a 1 x 1 sample: the padding makes the only row, and the
   * streamed fit made one more past it (a review's harness under ASan); canaries behind both
   * outputs, the bytes of the whole path */
  uint8_t line[300 * 3], lm[300];
  fill_random(line, sizeof line, 79);
  for (int i = 0; i < 300; i++) lm[i] = line[3 * i] > 128 ? 255 : 0;
  write_or_die("crop/line.png", line, 1, 300, CG_PNG_RGB8);
  write_or_die("crop/line_mask.png", lm, 1, 300, CG_PNG_GRAY8);
  path_of(ip, sizeof ip, "crop/line.png");
  path_of(mp, sizeof mp, "crop/line_mask.png");
  bad = 0;
  for (int k = 0; k <= 10; k++) {
    const cg_crop_t c = {3.36, k / 10.0, 0.718, 255};
    uint8_t o[3 + 16], om[1 + 16], w[4];
    memset(o, 0xA5, sizeof o);
    memset(om, 0xA5, sizeof om);
    const cg_fit_opts_t fo = {.size = 1, .win = &c};
    int rc = cg_fit_pair(ip, mp, &fo, o, om, NULL, NULL, err, sizeof err);
    double x0, y0, side;
    cg_crop_px(&c, 1, 300, &x0, &y0, &side);
    for (int m = 0; m < 300; m++) lm[m] = lm[m] != 0;
    cg_resample_rgb(line, 1, 300, x0, y0, side, side, w, 1, 1);
    cg_resample_mask_pad(lm, 1, 300, x0, y0, side, side, w + 3, 1, 1, 255);
    int past = 0;
    for (int i = 3; i < (int)sizeof o; i++) past |= o[i] != 0xA5;
    for (int i = 1; i < (int)sizeof om; i++) past |= om[i] != 0xA5;
    if (rc || past || memcmp(o, w, 3) || om[0] != w[3]) {
      printf("  1x1 from 300x1, u %.1f: rc %d (%s), written past the sample: %d\n", k / 10.0, rc,
             rc ? err : "", past);
      bad++;
    }
  }
  CG_TEST_CHECK(bad == 0, "a 1 x 1 sample of a 300 x 1 file zoomed out: %d windows wrong", bad);

  /* a file at the training size: window of the file == fitted sample cropped (old path) */
  uint8_t sq[16 * 16 * 3], sqm[16 * 16];
  fill_random(sq, sizeof sq, 78);
  for (int i = 0; i < 256; i++) sqm[i] = sq[3 * i + 1] > 100 ? 255 : 0;
  write_or_die("crop/sq.png", sq, 16, 16, CG_PNG_RGB8);
  write_or_die("crop/sq_mask.png", sqm, 16, 16, CG_PNG_GRAY8);
  path_of(ip, sizeof ip, "crop/sq.png");
  path_of(mp, sizeof mp, "crop/sq_mask.png");
  for (int64_t i = 0; i < 20; i++) {
    const cg_crop_t c = cg_augment_window(3, 0, i, CG_CROP_SCALE_DEFAULT_LO, 1.0);
    uint8_t a[16 * 16 * 4], b[16 * 16 * 4], tmp[16 * 16 * 4];
    const cg_fit_opts_t o = {.size = 16, .win = &c};
    int rc = cg_fit_pair(ip, mp, &o, a, a + 3 * 256, NULL, NULL, err, sizeof err);
    rc |= cg_fit_png(ip, mp, 0, 16, 0, 0, b, b + 3 * 256, NULL, NULL, err, sizeof err);
    cg_crop_apply(&c, 16, 16, b, b + 3 * 256, tmp);
    bad += rc != 0 || memcmp(a, b, sizeof a) != 0;
  }
  CG_TEST_CHECK(bad == 0, "a file at the training size: %d windows differ from fit + crop", bad);

  /* a whole record scaled: 37 x 23 at 16 is 26 x 16, the bytes of a whole decode resampled */
  char im[600], mk[600], sh[512];
  mkdir_rel("crop/ds2");
  mkdir_rel("crop/ds2/images");
  mkdir_rel("crop/ds2/masks");
  write_or_die("crop/ds2/images/w.png", rgb, H, W, CG_PNG_RGB8);
  write_or_die("crop/ds2/masks/w.png", m255, H, W, CG_PNG_GRAY8);
  int oh, ow;
  cg_fit_whole_size(H, W, 16, &oh, &ow);
  CG_TEST_CHECK(oh == 16 && ow == 26, "cg_fit_whole_size(23, 37, 16): %dx%d", ow, oh);
  cg_fit_whole_size(300, 10, 16, &oh, &ow); /* tall: the width is the shorter side */
  CG_TEST_CHECK(oh == 480 && ow == 16, "cg_fit_whole_size(300, 10, 16): %dx%d", ow, oh);
  cg_fit_whole_size(1000, 10, 16, &oh, &ow); /* over 64:1: squeezed to 64 x 16 */
  CG_TEST_CHECK(oh == 1024 && ow == 16, "cg_fit_whole_size(1000, 10, 16): %dx%d", ow, oh);
  path_of(im, sizeof im, "crop/ds2/images");
  path_of(mk, sizeof mk, "crop/ds2/masks");
  path_of(sh, sizeof sh, "crop/ds2.cgds");
  cg_cgds_pack_opts_t po = {.size = 16, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .nclass = 1,
                            .ignore = -1, .whole = 1};
  CG_TEST_CHECK(!cg_cgds_pack_opts(im, mk, sh, &po, NULL, NULL, err, sizeof err), "%s", err);
  cg_source_t *s2 = cg_source_open(sh, 16, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s2 != NULL, "open %s: %s", sh, err);
  if (!s2) return;
  uint8_t want[26 * 16 * 4], fitted[16 * 16 * 4], got[16 * 16 * 4];
  cg_resample_rgb(rgb, H, W, 0, 0, W, H, want, 16, 26);
  cg_resample_mask(m01, H, W, 0, 0, W, H, want + 3 * 26 * 16, 16, 26);
  cg_fit_square(want, want + 3 * 26 * 16, 16, 26, 16, fitted, fitted + 3 * 256);
  CG_TEST_CHECK(!cg_source_load(s2, 0, got, got + 3 * 256, err, sizeof err) &&
                    !memcmp(got, fitted, sizeof fitted),
                "scaled whole record: the fitted square differs (%s)", err);
  printf("PASS a whole record scaled to shorter side 16 (37x23 -> 26x16) is the whole decode "
         "resampled\n");
  cg_source_destroy(s2);
}

/* A wide photo's edges, which the fitted square cuts off, are trained on through crop windows
 * from its directory, a view of it and a pack --store whole shard (test_crop_windows's
 * sequel). */
static void test_crop_wide_photo(void) {
  char ip[512], err[1024];
  /* a wide photo, 96 x 32, trained at 32: its left 16 columns are mask 1 and its right 16
   * columns red; the centred square (columns 32..63) holds neither. Crop windows over the file
   * reach both edges in some epochs, through a directory source and a view of it. */
  mkdir_rel("crop/ds");
  mkdir_rel("crop/ds/images");
  mkdir_rel("crop/ds/masks");
  uint8_t wr[32 * 96 * 3], wm[32 * 96];
  memset(wr, 40, sizeof wr);
  for (int y = 0; y < 32; y++)
    for (int x = 0; x < 96; x++) {
      wm[y * 96 + x] = x < 16 ? 255 : 0;
      if (x >= 80) wr[3 * (y * 96 + x)] = 250;
    }
  write_or_die("crop/ds/images/p.png", wr, 32, 96, CG_PNG_RGB8);
  write_or_die("crop/ds/masks/p.png", wm, 32, 96, CG_PNG_GRAY8);
  path_of(ip, sizeof ip, "crop/ds");
  cg_source_t *src = cg_source_open(ip, 32, 1, 0, err, sizeof err);
  CG_TEST_CHECK(src != NULL, "open %s: %s", ip, err);
  if (!src) return;
  const int64_t zero = 0;
  cg_source_t *view = cg_source_subset(src, &zero, 1);
  uint8_t o[32 * 32 * 4], tmp[32 * 32 * 4];
  CG_TEST_CHECK(!cg_source_load(src, 0, o, o + 3 * 1024, err, sizeof err), "load: %s", err);
  int centre_left = 0, centre_right = 0;
  for (int i = 0; i < 1024; i++) {
    centre_left += o[3 * 1024 + i] != 0;
    centre_right += o[3 * i] > 100;
  }
  CG_TEST_CHECK(centre_left == 0 && centre_right == 0, "the fitted square holds an edge");
  int left = 0, right = 0, draws = 60;
  for (int e = 0; e < draws; e++) {
    const cg_crop_t c = cg_augment_window(1, e, 0, CG_CROP_SCALE_DEFAULT_LO, 1.0);
    cg_source_t *s = e % 2 ? view : src;
    if (cg_source_load_win(s, 0, &c, o, o + 3 * 1024, tmp, err, sizeof err)) {
      CG_TEST_CHECK(0, "load_win epoch %d: %s", e, err);
      break;
    }
    int l = 0, r = 0;
    for (int i = 0; i < 1024; i++) {
      l += o[3 * 1024 + i] == 1;
      r += o[3 * i] > 100;
    }
    left += l > 0;
    right += r > 0;
  }
  /* the left edge is in a window when u (96 - side) < 16: about a fifth of the draws */
  CG_TEST_CHECK(left >= 4 && right >= 4 && left + right < draws,
                "windows over the wide photo: left edge in %d, right edge in %d of %d", left,
                right, draws);
  printf("PASS crop windows over the whole file (streamed = whole decode; the left edge in %d "
         "and the right edge in %d of %d epochs, none in the centred square)\n", left, right,
         draws);
  /* a window's mask alone (rgb NULL: --crop-cat-max's tries; the image file not decoded) is the
   * mask of the whole load, and its image alone (mask NULL: the accepted window's, the mask file
   * not decoded) the image, zoom-out windows and their padding too */
  int mdiff = 0;
  for (int e = 0; e < 24; e++) {
    cg_crop_t c = cg_augment_window(1, e, 0, 0.5, 2.0);
    c.pad = 255;
    cg_source_t *s = e % 2 ? view : src;
    uint8_t mo[1024], io[3 * 1024];
    mdiff += cg_source_load_win(s, 0, &c, o, o + 3 * 1024, tmp, err, sizeof err) != 0 ||
             cg_source_load_win(s, 0, &c, NULL, mo, tmp, err, sizeof err) != 0 ||
             memcmp(mo, o + 3 * 1024, sizeof mo) != 0;
    mdiff += cg_source_load_win(s, 0, &c, io, NULL, tmp, err, sizeof err) != 0 ||
             memcmp(io, o, sizeof io) != 0;
  }
  CG_TEST_CHECK(mdiff == 0, "a window's mask alone or image alone: %d of 48 differ from the "
                "whole load's (%s)", mdiff, err);

  /* pack --store whole (version 5): the photo is kept whole (shorter side 32 already: its very
   * pixels), so the shard's fitted squares and crop windows are the directory's bytes; with
   * --store square they are the centred square's, and the pack counts the photo as not square */
  char im[600], mk[600], sh[512];
  snprintf(im, sizeof im, "%s/images", ip);
  snprintf(mk, sizeof mk, "%s/masks", ip);
  for (int enc = CG_CGDS_RAW; enc <= CG_CGDS_PNG; enc += CG_CGDS_PNG) {
    path_of(sh, sizeof sh, "crop/whole.cgds");
    cg_cgds_pack_opts_t po = {.size = 32, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS,
                              .encoding = (cg_cgds_enc_t)enc, .nclass = 1, .ignore = -1,
                              .whole = 1};
    cg_cgds_stats_t st;
    int rc = cg_cgds_pack_opts(im, mk, sh, &po, NULL, &st, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && st.not_square == 1, "pack --store whole: %s", err);
    cg_source_t *shd = rc ? NULL : cg_source_open(sh, 32, 1, 0, err, sizeof err);
    CG_TEST_CHECK(shd != NULL, "open %s: %s", sh, err);
    if (!shd) continue;
    int rh = 0, rw = 0;
    CG_TEST_CHECK(!cg_cgds_record_size(shd, 0, &rh, &rw) && rh == 32 && rw == 96,
                  "whole record %dx%d", rw, rh);
    uint8_t a[32 * 32 * 4], b[32 * 32 * 4];
    int diff = cg_source_load(shd, 0, a, a + 3 * 1024, err, sizeof err) != 0 ||
               cg_source_load(src, 0, b, b + 3 * 1024, err, sizeof err) != 0 ||
               memcmp(a, b, sizeof a) != 0;
    for (int e = 0; e < 12; e++) {
      const cg_crop_t c = cg_augment_window(1, e, 0, 0.5, 1.0);
      diff += cg_source_load_win(shd, 0, &c, a, a + 3 * 1024, tmp, err, sizeof err) != 0 ||
              cg_source_load_win(src, 0, &c, b, b + 3 * 1024, tmp, err, sizeof err) != 0 ||
              memcmp(a, b, sizeof a) != 0;
      diff += cg_source_load_win(shd, 0, &c, NULL, b, tmp, err, sizeof err) != 0 ||
              memcmp(a + 3 * 1024, b, 1024) != 0; /* the mask alone */
      diff += cg_source_load_win(shd, 0, &c, b, NULL, tmp, err, sizeof err) != 0 ||
              memcmp(a, b, 3 * 1024) != 0; /* the image alone */
    }
    CG_TEST_CHECK(diff == 0, "whole shard (%s) vs directory: %d loads differ (%s)",
                  enc ? "png" : "raw", diff, err);
    cg_source_destroy(shd);
  }
  printf("PASS pack --store whole keeps the wide photo: the shard's squares and crops are the "
         "directory's (raw and png)\n");
  cg_source_destroy(view);
  cg_source_destroy(src);
}

#endif /* COGPU_HAVE_PNG */

int main(void) {
  test_crc32();
#ifndef COGPU_HAVE_PNG
  printf("SKIP test_sources: built without libpng\n");
  return cg_test_failures ? 1 : CG_TEST_SKIP;
#else
  snprintf(root, sizeof root, "/tmp/cg_sources_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_png_kinds();
  test_png_errors();
  test_fit_rule();
  test_png_dir_and_shard();
  test_bad_inputs();
  test_pair_list();
  test_pack_failures();
  test_loader_skip_bad();
  test_crop_windows();
  test_crop_wide_photo();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_sources");
#endif
}
