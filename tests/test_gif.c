/* test_gif.c: GIF images and masks (Carvana's NAME_mask.gif, DRIVE's annotations) through
 * gif_io.c, and GIF masks in the image-directory source.
 *
 *  - Files written here with giflib's encoder: a 37x23 frame with a 4-entry global map, an
 *    interlaced 13x29 frame, a local map over the global one, no map at all (the gray ramp), a
 *    frame smaller than the screen at an offset (filled with index 0, or with the transparent
 *    index of a graphics control extension, as Pillow does). Each read as RGB (the map's
 *    colours), as a mask (index > 0) and as labels (the index), row by row and through
 *    image_io.c, which picks GIF by content (a GIF named .png too).
 *  - A 2-entry map under indices up to 3: the indices past it read gray, as Pillow pads.
 *  - Refusals naming the file: a screen over --max-image-pixels (from the header, nothing
 *    decoded), a 0-pixel screen, a frame reaching outside the screen (by the header reader
 *    too), a file with no image, a file truncated in its data, header or signature
 *    ("truncated"), an empty file, a PNG given to the GIF reader; a sink that stops the decode
 *    has its reason reported.
 *  - The source: images/NAME.png with masks/NAME_mask-less NAME.gif opens, loads and passes
 *    cg_source_check; a GIF image beside its GIF mask too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gif_lib.h>

#include "gif_io.h"
#include "image_io.h"
#include "png_io.h"
#include "source.h"
#include "testutil.h"

static char root[64];

static char *at(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* A GIF of one frame: idx (fw*fh indices < 2^bits) at (left, top) of a w x h screen. gmap /
 * lmap: RGB triples of 2^bits entries or NULL; transparent >= 0 writes a graphics control
 * extension. Interlaced frames are written in GIF's pass order. */
static void write_gif(const char *path, int w, int h, int bits, const uint8_t *gmap, int left,
                      int top, int fw, int fh, const uint8_t *lmap, int interlace,
                      int transparent, const uint8_t *idx) {
  int e = 0;
  GifFileType *g = EGifOpenFileName(path, false, &e);
  CG_TEST_CHECK(g != NULL, "EGifOpenFileName %s: %d", path, e);
  if (!g) return;
  ColorMapObject *gm = NULL, *lm = NULL;
  GifColorType c[256];
  if (gmap) {
    for (int i = 0; i < 1 << bits; i++) c[i] = (GifColorType){gmap[3 * i], gmap[3 * i + 1],
                                                            gmap[3 * i + 2]};
    gm = GifMakeMapObject(1 << bits, c);
  }
  if (lmap) {
    for (int i = 0; i < 1 << bits; i++) c[i] = (GifColorType){lmap[3 * i], lmap[3 * i + 1],
                                                            lmap[3 * i + 2]};
    lm = GifMakeMapObject(1 << bits, c);
  }
  int ok = EGifPutScreenDesc(g, w, h, bits, 0, gm) == GIF_OK;
  if (transparent >= 0) {
    GraphicsControlBlock gcb = {0, false, 0, transparent};
    GifByteType ext[4];
    const size_t n = EGifGCBToExtension(&gcb, ext);
    ok = ok && EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, (int)n, ext) == GIF_OK;
  }
  ok = ok && EGifPutImageDesc(g, left, top, fw, fh, interlace, lm) == GIF_OK;
  static const int first[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
  uint8_t *line = malloc((size_t)fw);
  for (int p = 0; p < (interlace ? 4 : 1); p++)
    for (int y = interlace ? first[p] : 0; y < fh; y += interlace ? step[p] : 1) {
      memcpy(line, idx + (size_t)y * fw, (size_t)fw);
      ok = ok && EGifPutLine(g, line, fw) == GIF_OK;
    }
  free(line);
  CG_TEST_CHECK(ok, "writing %s: giflib error %d", path, g->Error);
  EGifCloseFile(g, &e);
  GifFreeMapObject(gm);
  GifFreeMapObject(lm);
}

typedef struct {
  uint8_t *px;
  int h, w, stride, began, next, stop_at;
} grab_t;

static int grab_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why, (void)whylen;
  grab_t *g = ctx;
  g->began++;
  g->h = h;
  g->w = w;
  g->px = calloc((size_t)h * w * g->stride, 1);
  return 0;
}

static int grab_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  grab_t *g = ctx;
  if (y != g->next++) return snprintf(why, whylen, "row %d out of order", y), -1;
  if (y == g->stop_at) return snprintf(why, whylen, "the sink says stop"), -1;
  memcpy(g->px + (size_t)y * g->w * g->stride, px, (size_t)g->w * g->stride);
  return 0;
}

/* Reads path `as` says through gif_io (direct) or image_io; the caller frees ->px. */
static grab_t read_as(const char *path, cg_png_as_t as, int direct, char *err, size_t errlen) {
  grab_t g = {NULL, 0, 0, as == CG_PNG_AS_RGB ? 3 : 1, 0, 0, -1};
  cg_png_sink_t s = {grab_begin, grab_row, &g};
  int rc;
  if (direct) rc = cg_gif_read_rows(path, CG_PNG_DEFAULT_MAX_PIXELS, as, &s, err, errlen);
  else if (as == CG_PNG_AS_RGB)
    rc = cg_image_read_rows(path, CG_PNG_DEFAULT_MAX_PIXELS, 0, CG_EXIF_STORED, &s, NULL, NULL,
                            NULL, err, errlen);
  else rc = cg_image_read_mask_rows(path, CG_PNG_DEFAULT_MAX_PIXELS, as, &s, err, errlen);
  if (rc) {
    free(g.px);
    g.px = NULL;
  }
  return g;
}

/* Expected screen indices: fill, the frame over it. */
static uint8_t *screen(int w, int h, int left, int top, int fw, int fh, const uint8_t *idx,
                       int fill) {
  uint8_t *s = malloc((size_t)w * h);
  memset(s, fill, (size_t)w * h);
  for (int y = 0; y < fh; y++) memcpy(s + (size_t)(y + top) * w + left, idx + (size_t)y * fw, fw);
  return s;
}

/* Every way of reading path matches the screen indices scr through map (NULL: gray ramp). */
static void check_all(const char *what, const char *path, int w, int h, const uint8_t *scr,
                      const uint8_t *map, int ncolors) {
  char err[1024];
  for (int direct = 0; direct < 2; direct++) {
    int hh = 0, ww = 0;
    const int rc = direct ? cg_gif_read_size(path, 0, CG_PNG_AS_RGB, &hh, &ww, err, sizeof err)
                          : cg_image_read_size(path, 0, CG_EXIF_STORED, &hh, &ww, NULL, err,
                                               sizeof err);
    CG_TEST_CHECK(rc == 0 && hh == h && ww == w, "%s: size %dx%d: %s", what, ww, hh, err);
    for (int as = CG_PNG_AS_RGB; as <= CG_PNG_AS_LABEL; as++) {
      grab_t g = read_as(path, (cg_png_as_t)as, direct, err, sizeof err);
      CG_TEST_CHECK(g.px && g.began == 1 && g.h == h && g.w == w && g.next == h,
                    "%s: read as %d (direct %d): %s", what, as, direct, err);
      if (!g.px) continue;
      int bad = -1;
      for (int i = 0; i < w * h && bad < 0; i++) {
        const int v = scr[i];
        if (as == CG_PNG_AS_LABEL) bad = g.px[i] == v ? -1 : i;
        else if (as == CG_PNG_AS_MASK) bad = g.px[i] == (v > 0) ? -1 : i;
        else
          for (int k = 0; k < 3 && bad < 0; k++) {
            const int want = map && v < ncolors ? map[3 * v + k] : v; /* past: gray */
            if (g.px[3 * i + k] != want) bad = i;
          }
      }
      CG_TEST_CHECK(bad < 0, "%s: read as %d (direct %d): pixel %d differs", what, as, direct,
                    bad);
      free(g.px);
    }
  }
}

static uint8_t *random_idx(int n, int bits, unsigned seed) {
  uint8_t *p = malloc((size_t)n);
  for (int i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)((seed >> 16) & ((1u << bits) - 1));
  }
  return p;
}

static void spit(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

static void test_decode(void) {
  char p[128];
  static const uint8_t map4[12] = {0, 0, 0, 255, 255, 255, 200, 30, 10, 5, 90, 250};
  static const uint8_t local4[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  uint8_t *idx = random_idx(37 * 23, 2, 1);
  write_gif(at(p, sizeof p, "plain.gif"), 37, 23, 2, map4, 0, 0, 37, 23, NULL, 0, -1, idx);
  check_all("plain", p, 37, 23, idx, map4, 4);
  /* the same bytes under a .png name: image_io goes by content */
  char q[128];
  at(q, sizeof q, "named.png");
  CG_TEST_CHECK(link(p, q) == 0, "link");
  check_all("gif named .png", q, 37, 23, idx, map4, 4);
  write_gif(at(p, sizeof p, "local.gif"), 37, 23, 2, map4, 0, 0, 37, 23, local4, 0, -1, idx);
  check_all("local map", p, 37, 23, idx, local4, 4);
  /* no colour map at all (giflib's encoder insists on one: written with a global map, then the
   * map is cut out of the file and its flag cleared) */
  write_gif(at(p, sizeof p, "nomap.gif"), 37, 23, 2, map4, 0, 0, 37, 23, NULL, 0, -1, idx);
  FILE *f = fopen(p, "rb");
  uint8_t buf[4096];
  const size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  CG_TEST_CHECK(n > 13 + 12 && (buf[10] & 0x80) && (buf[10] & 7) == 1, "nomap.gif's header");
  buf[10] &= 0x7F;
  memmove(buf + 13, buf + 13 + 12, n - 13 - 12);
  spit(p, buf, n - 12);
  check_all("no map", p, 37, 23, idx, NULL, 0);
  /* a 2-entry map under indices up to 3 (written with 4 entries, then the table cut to 2):
   * indices past the map are gray (i, i, i), as Pillow pads a short palette */
  write_gif(p, 37, 23, 2, map4, 0, 0, 37, 23, NULL, 0, -1, idx);
  f = fopen(p, "rb");
  const size_t n2 = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  buf[10] = (uint8_t)((buf[10] & ~7) | 0); /* 2^(0+1) = 2 entries */
  memmove(buf + 13 + 6, buf + 13 + 12, n2 - 13 - 12);
  spit(p, buf, n2 - 6);
  check_all("short map", p, 37, 23, idx, map4, 2);
  free(idx);

  idx = random_idx(13 * 29, 2, 2);
  write_gif(at(p, sizeof p, "interlaced.gif"), 13, 29, 2, map4, 0, 0, 13, 29, NULL, 1, -1, idx);
  check_all("interlaced", p, 13, 29, idx, map4, 4);
  free(idx);

  /* a 9x6 frame at (5, 3) of a 20x12 screen: filled with 0, or the transparent index */
  idx = random_idx(9 * 6, 2, 3);
  for (int fill = -1; fill <= 2; fill += 3) {
    write_gif(at(p, sizeof p, "offset.gif"), 20, 12, 2, map4, 5, 3, 9, 6, NULL, 0, fill, idx);
    uint8_t *scr = screen(20, 12, 5, 3, 9, 6, idx, fill < 0 ? 0 : fill);
    check_all(fill < 0 ? "offset frame" : "offset frame, transparent 2", p, 20, 12, scr, map4, 4);
    free(scr);
  }
  free(idx);
  /* a binary mask as Carvana ships it: indices 0/1 of a black/white map, 1 bit */
  static const uint8_t bw[6] = {0, 0, 0, 255, 255, 255};
  uint8_t m[8 * 5];
  for (int i = 0; i < 40; i++) m[i] = (i % 8) >= 4;
  write_gif(at(p, sizeof p, "carvana_mask.gif"), 8, 5, 1, bw, 0, 0, 8, 5, NULL, 0, -1, m);
  check_all("1-bit mask", p, 8, 5, m, bw, 2);
  CG_TEST_CHECK(cg_image_has_ext("X_mask.GIF", NULL) && cg_image_has_ext("a.tif", NULL) &&
                    cg_image_has_ext("a.TIFF", NULL) && !cg_image_has_ext(".gif", NULL),
                "cg_image_has_ext");
}

static void expect_fail(const char *what, const char *path, cg_png_as_t as, const char *want) {
  char err[1024] = "";
  grab_t g = read_as(path, as, 1, err, sizeof err);
  CG_TEST_CHECK(!g.px && contains(err, path) && contains(err, want), "%s: '%s' (want '%s')",
                what, err, want);
  free(g.px);
  /* the whole-image reader and the size reader say the same where the header is enough */
  uint8_t *rgb = NULL;
  int h, w;
  err[0] = 0;
  const int rc = cg_image_read_rgb(path, CG_PNG_DEFAULT_MAX_PIXELS, CG_EXIF_STORED, &rgb, &h, &w,
                                   err, sizeof err);
  CG_TEST_CHECK(rc && !rgb && contains(err, want), "%s (image_io): '%s'", what, err);
}

static void test_bad_files(void) {
  char p[128], err[1024];
  /* a header claiming 30000x30000: refused from the header, by the size reader too */
  static const uint8_t bomb[] = {'G', 'I', 'F', '8', '9', 'a', 0x30, 0x75, 0x30, 0x75, 0, 0, 0,
                                 ';'};
  spit(at(p, sizeof p, "bomb.gif"), bomb, sizeof bomb);
  expect_fail("bomb", p, CG_PNG_AS_RGB, "--max-image-pixels");
  int h, w;
  CG_TEST_CHECK(cg_gif_read_size(p, CG_PNG_DEFAULT_MAX_PIXELS, CG_PNG_AS_MASK, &h, &w, err,
                                 sizeof err) && contains(err, "over the limit"), "bomb size: '%s'",
                err);
  static const uint8_t zero[] = {'G', 'I', 'F', '8', '9', 'a', 0, 0, 5, 0, 0, 0, 0, ';'};
  spit(at(p, sizeof p, "zero.gif"), zero, sizeof zero);
  expect_fail("0-pixel screen", p, CG_PNG_AS_MASK, "0x5");
  static const uint8_t none[] = {'G', 'I', 'F', '8', '9', 'a', 4, 0, 4, 0, 0, 0, 0, ';'};
  spit(at(p, sizeof p, "noimage.gif"), none, sizeof none);
  expect_fail("no image", p, CG_PNG_AS_LABEL, "holds no image");
  spit(at(p, sizeof p, "empty.gif"), NULL, 0);
  {
    grab_t g = read_as(p, CG_PNG_AS_RGB, 1, err, sizeof err);
    CG_TEST_CHECK(!g.px && contains(err, "not a GIF file (empty: 0 bytes)"), "empty: '%s'",
                  err);
  }
  uint8_t px[4] = {1, 2, 3, 4};
  CG_TEST_CHECK(cg_png_write(at(p, sizeof p, "real.png"), px, 2, 2, CG_PNG_GRAY8, err,
                             sizeof err) == 0, "%s", err);
  {
    grab_t g = read_as(p, CG_PNG_AS_RGB, 1, err, sizeof err);
    CG_TEST_CHECK(!g.px && contains(err, "not a GIF file"), "png to the gif reader: '%s'", err);
  }
  /* a frame reaching outside the screen: written as a 40x40 frame on a 20x20 screen */
  static const uint8_t map2[6] = {0, 0, 0, 255, 255, 255};
  uint8_t *idx = random_idx(40 * 40, 1, 4);
  write_gif(at(p, sizeof p, "outside.gif"), 20, 20, 1, map2, 0, 0, 40, 40, NULL, 0, -1, idx);
  expect_fail("frame outside", p, CG_PNG_AS_MASK, "reaches outside the 20x20 screen");
  /* found by the start-up check already (the header reader), not as a size mismatch later */
  CG_TEST_CHECK(cg_gif_read_size(p, 0, CG_PNG_AS_MASK, &h, &w, err, sizeof err) &&
                    contains(err, "reaches outside the 20x20 screen"),
                "frame outside, read_size: '%s'", err);
  /* truncated in the image data: an error, not a short image */
  write_gif(at(p, sizeof p, "whole.gif"), 40, 40, 1, map2, 0, 0, 40, 40, NULL, 0, -1, idx);
  FILE *f = fopen(p, "rb");
  uint8_t buf[4096];
  const size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  spit(at(p, sizeof p, "cut.gif"), buf, n - n / 3);
  expect_fail("truncated", p, CG_PNG_AS_LABEL, "truncated");
  /* cut in the header, or in the signature: truncated, not "no screen descriptor" or "not a
   * PNG, JPEG, GIF, TIFF or BMP file" */
  const size_t cuts[] = {3, 5, 10, 13};
  for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
    spit(p, buf, cuts[k]);
    grab_t t = read_as(p, CG_PNG_AS_MASK, 0, err, sizeof err);
    CG_TEST_CHECK(!t.px && contains(err, "cut.gif") && contains(err, "truncated"),
                  "cut at %zu bytes (image_io): '%s'", cuts[k], err);
    free(t.px);
  }
  /* a sink that stops: its reason, after the path */
  at(p, sizeof p, "whole.gif");
  grab_t g = {NULL, 0, 0, 1, 0, 0, 7};
  cg_png_sink_t s = {grab_begin, grab_row, &g};
  CG_TEST_CHECK(cg_gif_read_rows(p, 0, CG_PNG_AS_MASK, &s, err, sizeof err) &&
                    contains(err, "whole.gif: the sink says stop") && g.next == 8,
                "sink stop: '%s'", err);
  free(g.px);
  free(idx);
}

/* DRIVE-like: images/NAME.png with masks/NAME.gif; then a GIF image with its GIF mask. */
static void test_source(void) {
  char dir[128], p[192], err[1024];
  at(dir, sizeof dir, "ds");
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/images", dir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/masks", dir);
  mkdir(p, 0755);
  const int H = 30, W = 40;
  uint8_t *rgb = malloc(H * W * 3), *m = malloc(H * W);
  for (int i = 0; i < H * W * 3; i++) rgb[i] = (uint8_t)(i * 7);
  for (int i = 0; i < H * W; i++) m[i] = (i % W) >= 20;
  static const uint8_t bw[6] = {0, 0, 0, 255, 255, 255};
  snprintf(p, sizeof p, "%s/images/a.png", dir);
  CG_TEST_CHECK(cg_png_write(p, rgb, H, W, CG_PNG_RGB8, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/masks/a.gif", dir);
  write_gif(p, W, H, 1, bw, 0, 0, W, H, NULL, 0, -1, m);
  snprintf(p, sizeof p, "%s/images/b.gif", dir);
  write_gif(p, W, H, 1, bw, 0, 0, W, H, NULL, 0, -1, m);
  snprintf(p, sizeof p, "%s/masks/b.GIF", dir);
  write_gif(p, W, H, 1, bw, 0, 0, W, H, NULL, 0, -1, m);
  cg_source_opts_t o = {.size = 20, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS};
  cg_source_t *s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(s && s->count == 2, "open: %s", s ? "wrong count" : err);
  if (s) {
    uint8_t r[20 * 20 * 3], mk[20 * 20];
    for (int i = 0; i < 2; i++) {
      CG_TEST_CHECK(cg_source_load(s, i, r, mk, err, sizeof err) == 0, "load %d: %s", i, err);
      CG_TEST_CHECK(mk[20 * 5 + 2] == 0 && mk[20 * 5 + 17] == 1, "mask %d", i);
    }
    CG_TEST_CHECK(cg_source_check(s, 0, 1, 2, NULL, NULL, NULL, NULL, 0) == 0,
                  "check-data found bad files");
    cg_source_destroy(s);
  }
  /* as class ids: the GIF's indices */
  o.nclass = 2;
  s = cg_source_png_dir(dir, &o, err, sizeof err);
  CG_TEST_CHECK(s && s->count == 2, "open as labels: %s", s ? "wrong count" : err);
  if (s) {
    uint8_t r[20 * 20 * 3], mk[20 * 20];
    CG_TEST_CHECK(cg_source_load(s, 0, r, mk, err, sizeof err) == 0, "load labels: %s", err);
    cg_source_destroy(s);
  }
  free(rgb);
  free(m);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/cg_gif_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_decode();
  test_bad_files();
  test_source();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_gif");
}
