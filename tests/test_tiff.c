/* test_tiff.c: the TIFF reader (tiff_io.h) on files written here with libtiff, each decoded to
 * the exact pixels expected.
 *
 *  - Images: RGB 8-bit in strips (1, 5 and all rows per strip; none, LZW with the horizontal
 *    predictor, Deflate), planar RGB, RGB in 16x16 tiles on a 37x23 image (partial tiles), gray
 *    8 and 16 bits, MinIsWhite, palette 8-bit (16-bit colormap entries), RGBA with unassociated
 *    alpha (colours as stored: not premultiplied) and associated alpha (divided back, as Pillow
 *    does), RGB 16-bit, big-endian and BigTIFF files; Orientation BOTLEFT, TOPRIGHT and
 *    BOTRIGHT (strips and tiles) read top-left, RIGHTTOP (transposed) refused; the rows reach
 *    the sink once each, in order, after one begin.
 *  - Masks: 1-bit MinIsBlack and MinIsWhite (inverted), 2- and 4-bit gray (as labels refused:
 *    Pillow scales them), 8-bit gray as labels,
 *    16-bit big-endian with a 300 refused as labels (naming the value) and read as a binary
 *    mask, palette indices as labels (not colours), gray + alpha (contiguous and planar: alpha
 *    ignored), a tiled mask, a bottom-up mask flipped as its image is; an RGB mask refused as
 *    labels (cg_tiff_read_size too) and read as a binary mask (any of R, G, B > 0); float and
 *    signed masks refused.
 *  - Limits: a header claiming 30000x30000 refused from the header (naming --max-image-pixels;
 *    accepted by cg_tiff_read_size with no pixel limit), sides over 32768 and 0 refused,
 *    65536x65536 tiles refused, files cut inside their strip data (directory first: the tags
 *    survive; uncompressed and LZW) and before their directory fail naming the file, an empty
 *    file, a PNG and text fail cleanly; nothing is printed on stderr; a sink refusing in begin
 *    or at a row stops the read with its reason ("PATH: why").
 *  - 16-bit images of random samples, gray (MinIsBlack, MinIsWhite, + alpha) and RGB(A), in
 *    strips, tiles, separate planes and every flip: round(v x 255 / 65535) exactly; 8-bit
 *    gray + alpha in clipped tiles, and MinIsWhite in separate planes read in bands.
 *  - Memory: a 4096x4096 RGB file (48 MB of pixels) read through a sink peaks under 8 MB in a
 *    fresh process, a whole decode over 40 MB (not checked under ASan: its quarantine); so do
 *    single-strip Deflate files of 8-bit RGB, 16-bit gray and 16-bit RGB. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tiffio.h>

#include "png_io.h"
#include "testutil.h"
#include "tiff_io.h"

static char root[64];

static char *at(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* ---- writing test files with libtiff ---------------------------------------------------- */

typedef struct {
  int w, h, spp, bps;
  uint16_t photo, comp, pred, orient, planar, fmt, extra; /* extra: ExtraSamples of the last */
  uint32_t rps, tw, th;                                  /* rps 0: libtiff's; tw 0: strips */
  const uint16_t *cmap;                                  /* palette: 3 x 2^bps entries */
  int big, bigendian;                                    /* BigTIFF; "MM" byte order */
} spec_t;

static size_t row_bytes(const spec_t *s) { return ((size_t)s->w * s->spp * s->bps + 7) / 8; }

/* px: h rows of row_bytes, samples interleaved (16-bit ones in host order), in file order. */
static int write_tiff(const char *path, const spec_t *s, const uint8_t *px) {
  char mode[8];
  snprintf(mode, sizeof mode, "w%s%s", s->big ? "8" : "", s->bigendian ? "b" : "l");
  TIFF *t = TIFFOpen(path, mode);
  if (!t) return -1;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)s->w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)s->h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)s->spp);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)s->bps);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, s->photo);
  TIFFSetField(t, TIFFTAG_COMPRESSION, s->comp ? s->comp : COMPRESSION_NONE);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, s->planar ? s->planar : PLANARCONFIG_CONTIG);
  if (s->pred) TIFFSetField(t, TIFFTAG_PREDICTOR, s->pred);
  if (s->orient) TIFFSetField(t, TIFFTAG_ORIENTATION, s->orient);
  if (s->fmt) TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, s->fmt);
  if (s->extra) {
    const uint16_t e = s->extra;
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &e);
  }
  if (s->cmap) {
    const size_t n = (size_t)1 << s->bps;
    TIFFSetField(t, TIFFTAG_COLORMAP, s->cmap, s->cmap + n, s->cmap + 2 * n);
  }
  const size_t rb = row_bytes(s);
  int ok = 1;
  if (s->tw) { /* whole bytes per sample only */
    const size_t bpp = (size_t)s->spp * s->bps / 8, trb = s->tw * bpp;
    TIFFSetField(t, TIFFTAG_TILEWIDTH, s->tw);
    TIFFSetField(t, TIFFTAG_TILELENGTH, s->th);
    uint8_t *tile = malloc(trb * s->th);
    for (uint32_t y0 = 0; y0 < (uint32_t)s->h; y0 += s->th)
      for (uint32_t x0 = 0; x0 < (uint32_t)s->w; x0 += s->tw) {
        memset(tile, 0, trb * s->th);
        for (uint32_t j = 0; j < s->th && y0 + j < (uint32_t)s->h; j++) {
          const uint32_t cols = s->w - x0 < s->tw ? s->w - x0 : s->tw;
          memcpy(tile + j * trb, px + (y0 + j) * rb + x0 * bpp, cols * bpp);
        }
        ok &= TIFFWriteTile(t, tile, x0, y0, 0, 0) >= 0;
      }
    free(tile);
  } else if (s->planar == PLANARCONFIG_SEPARATE) { /* 8 or 16 bits */
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, s->rps ? s->rps : TIFFDefaultStripSize(t, 0));
    const size_t bs = (size_t)s->bps / 8; /* bytes a sample */
    uint8_t *plane = malloc(s->w * bs);
    for (int k = 0; k < s->spp; k++)
      for (int y = 0; y < s->h; y++) {
        for (int x = 0; x < s->w; x++)
          memcpy(plane + x * bs, px + y * rb + ((size_t)x * s->spp + k) * bs, bs);
        ok &= TIFFWriteScanline(t, plane, y, (uint16_t)k) == 1;
      }
    free(plane);
  } else {
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, s->rps ? s->rps : TIFFDefaultStripSize(t, 0));
    uint8_t *row = malloc(rb); /* libtiff may change the buffer it is given (predictor) */
    for (int y = 0; y < s->h; y++) {
      memcpy(row, px + y * rb, rb);
      ok &= TIFFWriteScanline(t, row, y, 0) == 1;
    }
    free(row);
  }
  TIFFClose(t);
  return ok ? 0 : -1;
}

/* Random bytes, deterministic. */
static uint8_t *noise(size_t n, uint32_t seed) {
  uint8_t *p = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (uint8_t)(seed >> 24);
  }
  return p;
}

/* ---- reading through a sink that checks the protocol --------------------------------------- */

typedef struct {
  uint8_t *px;
  int h, w, bpp, next, begins, bad_order;
  int stop_at; /* -2: refuse in begin; >= 0: refuse at that row; -1: never */
} got_t;

static int got_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  got_t *g = ctx;
  g->begins++;
  if (g->stop_at == -2) {
    snprintf(why, whylen, "refused in begin");
    return -1;
  }
  g->h = h;
  g->w = w;
  free(g->px);
  g->px = calloc((size_t)h * w, g->bpp);
  return 0;
}

static int got_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  got_t *g = ctx;
  if (g->begins != 1 || y != g->next || y >= g->h) g->bad_order = 1;
  g->next = y + 1;
  if (y == g->stop_at) {
    snprintf(why, whylen, "stopped at row %d", y);
    return -1;
  }
  if (!g->bad_order) memcpy(g->px + (size_t)y * g->w * g->bpp, px, (size_t)g->w * g->bpp);
  return 0;
}

/* Reads path as `as` into g (g->px: h*w*bpp); the return of cg_tiff_read_rows. */
static int read_all(const char *path, int64_t max_px, cg_png_as_t as, got_t *g, char *err,
                    size_t errlen) {
  free(g->px);
  memset(g, 0, sizeof *g);
  g->bpp = as == CG_PNG_AS_RGB ? 3 : 1;
  g->stop_at = -1;
  const cg_png_sink_t s = {got_begin, got_row, g};
  const int rc = cg_tiff_read_rows(path, max_px, as, &s, err, errlen);
  if (!rc && (g->bad_order || g->next != g->h)) {
    snprintf(err, errlen, "%s: sink protocol broken (%d begins, rows up to %d of %d)", path,
             g->begins, g->next, g->h);
    return -2;
  }
  return rc;
}

/* Decodes path and compares with want (h*w*bpp); prints PASS name or the first difference. */
static void expect(const char *name, const char *path, cg_png_as_t as, const uint8_t *want, int h,
                   int w) {
  got_t g = {0};
  char err[1024];
  const int rc = read_all(path, CG_PNG_DEFAULT_MAX_PIXELS, as, &g, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "%s: %s", name, err);
  if (rc) return;
  int hh = 0, ww = 0;
  const int src = cg_tiff_read_size(path, CG_PNG_DEFAULT_MAX_PIXELS, as, &hh, &ww, err, sizeof err);
  CG_TEST_CHECK(src == 0 && hh == h && ww == w, "%s: read_size %dx%d (%s)", name, ww, hh,
                src ? err : "ok");
  CG_TEST_CHECK(g.h == h && g.w == w, "%s: decoded %dx%d, want %dx%d", name, g.w, g.h, w, h);
  if (g.h != h || g.w != w) return;
  const size_t n = (size_t)h * w * g.bpp;
  size_t i = 0;
  while (i < n && g.px[i] == want[i]) i++;
  CG_TEST_CHECK(i == n, "%s: pixel (%zu, %zu) channel %zu is %d, want %d", name,
                i / g.bpp % w, i / g.bpp / w, i % g.bpp, i < n ? g.px[i] : 0, i < n ? want[i] : 0);
  if (i == n) printf("PASS %s\n", name);
  free(g.px);
}

/* ---- images ------------------------------------------------------------------------------ */

static void test_rgb(void) {
  char p[128];
  const int H = 23, W = 37;
  uint8_t *rgb = noise((size_t)H * W * 3, 1);
  static const struct {
    uint32_t rps;
    uint16_t comp, pred;
    const char *name;
  } cases[] = {{1, COMPRESSION_NONE, 0, "rgb8 strips of 1 row"},
               {5, COMPRESSION_NONE, 0, "rgb8 strips of 5 rows"},
               {23, COMPRESSION_NONE, 0, "rgb8 one strip"},
               {5, COMPRESSION_LZW, PREDICTOR_HORIZONTAL, "rgb8 LZW + predictor, 5 rows"},
               {23, COMPRESSION_ADOBE_DEFLATE, 0, "rgb8 Deflate, one strip"}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    spec_t s = {.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB,
                .comp = cases[k].comp, .pred = cases[k].pred, .rps = cases[k].rps};
    at(p, sizeof p, "rgb.tif");
    CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write %s", cases[k].name);
    expect(cases[k].name, p, CG_PNG_AS_RGB, rgb, H, W);
  }
  spec_t s = {.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .tw = 16, .th = 16};
  at(p, sizeof p, "tiled.tif");
  CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write tiled");
  expect("rgb8 16x16 tiles, 37x23 (partial tiles)", p, CG_PNG_AS_RGB, rgb, H, W);
  s.comp = COMPRESSION_LZW;
  CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write tiled LZW");
  expect("rgb8 16x16 LZW tiles", p, CG_PNG_AS_RGB, rgb, H, W);
  s = (spec_t){.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 4,
               .planar = PLANARCONFIG_SEPARATE};
  at(p, sizeof p, "planar.tif");
  CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write planar");
  expect("rgb8 planar (separate planes)", p, CG_PNG_AS_RGB, rgb, H, W);
  s = (spec_t){.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 7,
               .big = 1, .bigendian = 1, .comp = COMPRESSION_ADOBE_DEFLATE};
  at(p, sizeof p, "big.tif");
  CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write BigTIFF");
  expect("rgb8 BigTIFF, big-endian, Deflate", p, CG_PNG_AS_RGB, rgb, H, W);
  /* 16-bit: multiples of 257 come out exactly v / 257 */
  uint16_t *rgb16 = malloc((size_t)H * W * 3 * 2);
  for (int i = 0; i < H * W * 3; i++) rgb16[i] = (uint16_t)(rgb[i] * 257);
  s = (spec_t){.w = W, .h = H, .spp = 3, .bps = 16, .photo = PHOTOMETRIC_RGB, .rps = 3};
  at(p, sizeof p, "rgb16.tif");
  CG_TEST_CHECK(write_tiff(p, &s, (uint8_t *)rgb16) == 0, "write rgb16");
  expect("rgb16 (v * 257 -> v)", p, CG_PNG_AS_RGB, rgb, H, W);
  free(rgb16);
  free(rgb);
}

static void test_gray_palette_alpha(void) {
  char p[128];
  const int H = 19, W = 33;
  uint8_t *g8 = noise((size_t)H * W, 2), *want = malloc((size_t)H * W * 3);
  spec_t s = {.w = W, .h = H, .spp = 1, .bps = 8, .photo = PHOTOMETRIC_MINISBLACK, .rps = 4};
  at(p, sizeof p, "gray8.tif");
  CG_TEST_CHECK(write_tiff(p, &s, g8) == 0, "write gray8");
  for (int i = 0; i < H * W; i++) memset(want + 3 * i, g8[i], 3);
  expect("gray8 image (R = G = B)", p, CG_PNG_AS_RGB, want, H, W);
  s.photo = PHOTOMETRIC_MINISWHITE;
  CG_TEST_CHECK(write_tiff(p, &s, g8) == 0, "write gray8 MinIsWhite");
  for (int i = 0; i < H * W; i++) memset(want + 3 * i, 255 - g8[i], 3);
  expect("gray8 MinIsWhite image (inverted)", p, CG_PNG_AS_RGB, want, H, W);
  uint16_t *g16 = malloc((size_t)H * W * 2);
  for (int i = 0; i < H * W; i++) g16[i] = (uint16_t)(g8[i] * 257);
  s = (spec_t){.w = W, .h = H, .spp = 1, .bps = 16, .photo = PHOTOMETRIC_MINISBLACK, .rps = 4,
               .bigendian = 1};
  at(p, sizeof p, "gray16.tif");
  CG_TEST_CHECK(write_tiff(p, &s, (uint8_t *)g16) == 0, "write gray16");
  for (int i = 0; i < H * W; i++) memset(want + 3 * i, g8[i], 3);
  expect("gray16 big-endian image", p, CG_PNG_AS_RGB, want, H, W);
  /* palette: 16-bit colormap entries (c * 257), indices 0..255 */
  uint16_t cmap[3 * 256];
  uint8_t *pal = noise(3 * 256, 3);
  for (int i = 0; i < 3 * 256; i++) cmap[i] = (uint16_t)(pal[i] * 257);
  s = (spec_t){.w = W, .h = H, .spp = 1, .bps = 8, .photo = PHOTOMETRIC_PALETTE, .rps = 6,
               .cmap = cmap, .comp = COMPRESSION_LZW};
  at(p, sizeof p, "pal8.tif");
  CG_TEST_CHECK(write_tiff(p, &s, g8) == 0, "write palette");
  for (int i = 0; i < H * W; i++)
    for (int k = 0; k < 3; k++) want[3 * i + k] = pal[k * 256 + g8[i]];
  expect("palette 8-bit image (colormap applied)", p, CG_PNG_AS_RGB, want, H, W);
  expect("palette 8-bit as labels (indices)", p, CG_PNG_AS_LABEL, g8, H, W);
  /* RGBA: alpha dropped, colours as stored (TIFFRGBAImage alone would premultiply) */
  uint8_t *rgba = noise((size_t)H * W * 4, 4);
  for (int i = 0; i < H * W; i++) {
    if (i % 3 == 0) rgba[4 * i + 3] = 0;
    for (int k = 0; k < 3; k++) want[3 * i + k] = rgba[4 * i + k];
  }
  s = (spec_t){.w = W, .h = H, .spp = 4, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 5,
               .extra = EXTRASAMPLE_UNASSALPHA};
  at(p, sizeof p, "rgba.tif");
  CG_TEST_CHECK(write_tiff(p, &s, rgba) == 0, "write rgba");
  expect("rgba8 unassociated alpha: colours as stored", p, CG_PNG_AS_RGB, want, H, W);
  /* associated (premultiplied): divided back as Pillow's unpacker does, c * 255 / a */
  for (int i = 0; i < H * W; i++) {
    const int a = rgba[4 * i + 3];
    for (int k = 0; k < 3; k++) {
      const int v = a ? rgba[4 * i + k] * 255 / a : 0;
      want[3 * i + k] = (uint8_t)(v > 255 ? 255 : v);
    }
  }
  s.extra = EXTRASAMPLE_ASSOCALPHA;
  CG_TEST_CHECK(write_tiff(p, &s, rgba) == 0, "write rgba assoc");
  expect("rgba8 associated alpha: colours * 255 / alpha (Pillow's)", p, CG_PNG_AS_RGB, want, H, W);
  free(rgba);
  free(pal);
  free(g16);
  free(g8);
  free(want);
}

static void expect_fail(const char *name, const char *path, int64_t max_px, cg_png_as_t as,
                        int size_too, const char *what);

/* File (y, x) of an image stored with orientation o, for output (y, x) read top-left. */
static void file_yx(int o, int h, int w, int y, int x, int *fy, int *fx) {
  *fy = (o == ORIENTATION_BOTLEFT || o == ORIENTATION_BOTRIGHT) ? h - 1 - y : y;
  *fx = (o == ORIENTATION_TOPRIGHT || o == ORIENTATION_BOTRIGHT) ? w - 1 - x : x;
}

static void test_orientation(void) {
  char p[128], name[128];
  const int H = 45, W = 37; /* 9 strips of 5 rows, or 3 rows of 16x16 tiles (the last partial) */
  uint8_t *file = noise((size_t)H * W * 3, 5), *want = malloc((size_t)H * W * 3);
  uint8_t *m = noise((size_t)H * W, 6), *wm = malloc((size_t)H * W);
  static const int os[] = {ORIENTATION_BOTLEFT, ORIENTATION_TOPRIGHT, ORIENTATION_BOTRIGHT};
  for (int tiled = 0; tiled < 2; tiled++)
    for (int k = 0; k < 3; k++) {
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          int fy, fx;
          file_yx(os[k], H, W, y, x, &fy, &fx);
          memcpy(want + 3 * (y * W + x), file + 3 * (fy * W + fx), 3);
          wm[y * W + x] = m[fy * W + fx];
        }
      spec_t s = {.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 5,
                  .orient = (uint16_t)os[k], .tw = tiled ? 16 : 0, .th = tiled ? 16 : 0};
      at(p, sizeof p, "orient.tif");
      CG_TEST_CHECK(write_tiff(p, &s, file) == 0, "write orientation %d", os[k]);
      snprintf(name, sizeof name, "orientation %d (%s) image read top-left", os[k],
               tiled ? "tiles" : "strips");
      expect(name, p, CG_PNG_AS_RGB, want, H, W);
      s.spp = 1;
      s.photo = PHOTOMETRIC_MINISBLACK;
      CG_TEST_CHECK(write_tiff(p, &s, m) == 0, "write mask orientation %d", os[k]);
      snprintf(name, sizeof name, "orientation %d (%s) labels flipped as the image", os[k],
               tiled ? "tiles" : "strips");
      expect(name, p, CG_PNG_AS_LABEL, wm, H, W);
    }
  /* 100 one-row strips, bottom-up: 100 bands, the last one first */
  const int H2 = 100;
  uint8_t *tall = noise((size_t)H2 * W * 3, 7), *wt = malloc((size_t)H2 * W * 3);
  for (int y = 0; y < H2; y++)
    memcpy(wt + (size_t)y * W * 3, tall + (size_t)(H2 - 1 - y) * W * 3, W * 3);
  spec_t s = {.w = W, .h = H2, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 1,
              .orient = ORIENTATION_BOTLEFT};
  at(p, sizeof p, "tall.tif");
  CG_TEST_CHECK(write_tiff(p, &s, tall) == 0, "write tall");
  expect("orientation 4, 100 one-row strips", p, CG_PNG_AS_RGB, wt, H2, W);
  free(tall);
  free(wt);
  /* rows and columns swapped (5..8): refused, not read as libtiff alone would (flipped only) */
  s = (spec_t){.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 5,
               .orient = ORIENTATION_RIGHTTOP};
  at(p, sizeof p, "o6.tif");
  CG_TEST_CHECK(write_tiff(p, &s, file) == 0, "write orientation 6");
  expect_fail("orientation 6 (transposed) image", p, 0, CG_PNG_AS_RGB, 1,
              "Orientation 6 (rows and columns swapped) is not supported");
  s.spp = 1;
  s.photo = PHOTOMETRIC_MINISBLACK;
  CG_TEST_CHECK(write_tiff(p, &s, m) == 0, "write orientation 6 mask");
  expect_fail("orientation 6 (transposed) mask", p, 0, CG_PNG_AS_MASK, 1, "not supported");
  free(file);
  free(want);
  free(m);
  free(wm);
}

/* ---- 16-bit images ----------------------------------------------------------------------- */

/* What README promises a 16-bit sample becomes: round(v x 255 / 65535), as PNGs' (libpng). */
static uint8_t scaled16(unsigned v) { return (uint8_t)((2u * v * 255u + 65535u) / 131070u); }

/* c divided back by an associated alpha a, as Pillow's unpacker does (c * 255 / a, at most 255;
 * 0 where a = 0). */
static uint8_t divided(unsigned c, unsigned a) {
  if (a == 0) return 0;
  const unsigned v = c * 255 / a;
  return (uint8_t)(v > 255 ? 255 : v);
}

/* The image a 16-bit gray (+ alpha) or RGB(A) file of samples f (h x w x spp, in file order)
 * reads as: each sample scaled (MinIsWhite: 65535 - v), associated alpha divided out at 8 bits,
 * the Orientation applied. */
static void want_from16(const spec_t *s, const uint16_t *f, uint8_t *want) {
  const int gray = s->photo != PHOTOMETRIC_RGB, assoc = s->extra == EXTRASAMPLE_ASSOCALPHA;
  for (int y = 0; y < s->h; y++)
    for (int x = 0; x < s->w; x++) {
      int fy, fx;
      file_yx(s->orient, s->h, s->w, y, x, &fy, &fx);
      const uint16_t *px = f + ((size_t)fy * s->w + fx) * s->spp;
      const unsigned a = assoc ? scaled16(px[s->spp - 1]) : 255;
      for (int k = 0; k < 3; k++) {
        const unsigned v = gray ? px[0] : px[k];
        const unsigned c = scaled16(s->photo == PHOTOMETRIC_MINISWHITE ? 65535 - v : v);
        want[3 * ((size_t)y * s->w + x) + k] = divided(c, a);
      }
    }
}

/* 16-bit gray (MinIsBlack, MinIsWhite, with alpha) and RGB(A) of random full-range samples,
 * compared with round(v x 255 / 65535) exactly: a scanline at a time (strips, top-down,
 * mirrored or not) and in bands (tiles with partial ones, bottom-up files, separate planes), in
 * both byte orders. (Samples v * 257, as test_rgb and test_gray_palette_alpha use, read the
 * same when only the high byte is kept.) */
static void test_16bit(void) {
  char p[128];
  const int H = 23, W = 37; /* 16x16 tiles: partial ones on the right and at the bottom */
  const size_t n = (size_t)H * W;
  uint8_t *raw = noise(n * 4 * 2, 15), *want = malloc(n * 3), *wm = malloc(n);
  uint16_t *v = malloc(n * 4 * 2), *f = malloc(n * 4 * 2);
  memcpy(v, raw, n * 4 * 2);
  static const struct {
    const char *name;
    int spp;
    uint16_t photo, extra, planar, orient, comp, pred;
    uint32_t rps, tw;
    int bigendian;
  } cases[] = {
      {"gray16 in strips of 4", 1, PHOTOMETRIC_MINISBLACK, 0, 0, 0, 0, 0, 4, 0, 0},
      {"gray16 big-endian, one Deflate strip", 1, PHOTOMETRIC_MINISBLACK, 0, 0, 0,
       COMPRESSION_ADOBE_DEFLATE, 0, 23, 0, 1},
      {"gray16 LZW + predictor", 1, PHOTOMETRIC_MINISBLACK, 0, 0, 0, COMPRESSION_LZW,
       PREDICTOR_HORIZONTAL, 5, 0, 0},
      {"gray16 MinIsWhite (65535 - v)", 1, PHOTOMETRIC_MINISWHITE, 0, 0, 0, 0, 0, 5, 0, 0},
      {"gray16 mirrored (Orientation 2)", 1, PHOTOMETRIC_MINISBLACK, 0, 0, ORIENTATION_TOPRIGHT,
       0, 0, 5, 0, 0},
      {"gray16 16x16 tiles", 1, PHOTOMETRIC_MINISBLACK, 0, 0, 0, 0, 0, 0, 16, 0},
      {"gray16 MinIsWhite 16x16 tiles, big-endian", 1, PHOTOMETRIC_MINISWHITE, 0, 0, 0,
       COMPRESSION_LZW, 0, 0, 16, 1},
      {"gray16 bottom-up (Orientation 4)", 1, PHOTOMETRIC_MINISBLACK, 0, 0, ORIENTATION_BOTLEFT,
       0, 0, 5, 0, 0},
      {"gray16 MinIsWhite upside down (Orientation 3), tiles", 1, PHOTOMETRIC_MINISWHITE, 0, 0,
       ORIENTATION_BOTRIGHT, 0, 0, 0, 16, 0},
      {"gray16 + unassociated alpha", 2, PHOTOMETRIC_MINISBLACK, EXTRASAMPLE_UNASSALPHA, 0, 0, 0,
       0, 3, 0, 0},
      {"gray16 + associated alpha (divided)", 2, PHOTOMETRIC_MINISBLACK, EXTRASAMPLE_ASSOCALPHA,
       0, 0, 0, 0, 3, 0, 0},
      {"gray16 MinIsWhite + associated alpha", 2, PHOTOMETRIC_MINISWHITE, EXTRASAMPLE_ASSOCALPHA,
       0, 0, 0, 0, 3, 0, 0},
      {"gray16 + associated alpha, tiles", 2, PHOTOMETRIC_MINISBLACK, EXTRASAMPLE_ASSOCALPHA, 0,
       0, 0, 0, 0, 16, 0},
      {"gray16 + unassociated alpha, bottom-up", 2, PHOTOMETRIC_MINISBLACK,
       EXTRASAMPLE_UNASSALPHA, 0, ORIENTATION_BOTLEFT, 0, 0, 4, 0, 0},
      {"gray16 + alpha, separate planes", 2, PHOTOMETRIC_MINISBLACK, EXTRASAMPLE_UNASSALPHA,
       PLANARCONFIG_SEPARATE, 0, 0, 0, 4, 0, 0},
      {"gray16 MinIsWhite + alpha, separate planes", 2, PHOTOMETRIC_MINISWHITE,
       EXTRASAMPLE_UNASSALPHA, PLANARCONFIG_SEPARATE, 0, 0, 0, 4, 0, 0},
      {"gray16 + associated alpha, separate planes", 2, PHOTOMETRIC_MINISBLACK,
       EXTRASAMPLE_ASSOCALPHA, PLANARCONFIG_SEPARATE, 0, 0, 0, 4, 0, 0},
      {"gray16 MinIsWhite + associated alpha, separate planes", 2, PHOTOMETRIC_MINISWHITE,
       EXTRASAMPLE_ASSOCALPHA, PLANARCONFIG_SEPARATE, 0, 0, 0, 4, 0, 0},
      {"gray16 MinIsWhite + alpha, separate planes, bottom-up", 2, PHOTOMETRIC_MINISWHITE,
       EXTRASAMPLE_UNASSALPHA, PLANARCONFIG_SEPARATE, ORIENTATION_BOTLEFT, 0, 0, 4, 0, 0},
      {"rgb16 in strips of 3", 3, PHOTOMETRIC_RGB, 0, 0, 0, 0, 0, 3, 0, 0},
      {"rgb16 big-endian, one LZW strip + predictor", 3, PHOTOMETRIC_RGB, 0, 0, 0,
       COMPRESSION_LZW, PREDICTOR_HORIZONTAL, 23, 0, 1},
      {"rgb16 mirrored and upside down (Orientation 3)", 3, PHOTOMETRIC_RGB, 0, 0,
       ORIENTATION_BOTRIGHT, 0, 0, 5, 0, 0},
      {"rgb16 16x16 tiles", 3, PHOTOMETRIC_RGB, 0, 0, 0, 0, 0, 0, 16, 0},
      {"rgb16 separate planes", 3, PHOTOMETRIC_RGB, 0, PLANARCONFIG_SEPARATE, 0, 0, 0, 4, 0, 0},
      {"rgba16 unassociated alpha", 4, PHOTOMETRIC_RGB, EXTRASAMPLE_UNASSALPHA, 0, 0, 0, 0, 5, 0,
       0},
      {"rgba16 associated alpha (divided)", 4, PHOTOMETRIC_RGB, EXTRASAMPLE_ASSOCALPHA, 0, 0, 0,
       0, 5, 0, 0},
      {"rgba16 associated alpha, tiles", 4, PHOTOMETRIC_RGB, EXTRASAMPLE_ASSOCALPHA, 0, 0, 0, 0,
       0, 16, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int spp = cases[k].spp, alpha = cases[k].extra != 0;
    for (size_t i = 0; i < n; i++) {
      for (int j = 0; j < spp; j++) f[i * spp + j] = v[i * 4 + j];
      if (alpha && i % 7 == 0) f[i * spp + spp - 1] = 0;
      if (alpha && i % 11 == 0) f[i * spp + spp - 1] = 65535;
      if (spp >= 3 && i % 5 == 0) /* black, though not 0: scaled to 0 (< 129) */
        for (int j = 0; j < 3; j++) f[i * spp + j] = (uint16_t)(v[i * 4 + j] % 129);
      if (spp >= 3 && i % 6 == 0) f[i * spp] = 129, f[i * spp + 1] = f[i * spp + 2] = 0;
    }
    spec_t s = {.w = W, .h = H, .spp = spp, .bps = 16, .photo = cases[k].photo,
                .extra = cases[k].extra, .planar = cases[k].planar, .orient = cases[k].orient,
                .comp = cases[k].comp, .pred = cases[k].pred, .rps = cases[k].rps,
                .tw = cases[k].tw, .th = cases[k].tw, .bigendian = cases[k].bigendian};
    at(p, sizeof p, "img16.tif");
    CG_TEST_CHECK(write_tiff(p, &s, (const uint8_t *)f) == 0, "write %s", cases[k].name);
    want_from16(&s, f, want);
    expect(cases[k].name, p, CG_PNG_AS_RGB, want, H, W);
    if (spp >= 3) { /* a colour mask: any of the scaled R, G, B > 0 */
      char name[160];
      for (size_t i = 0; i < n; i++) wm[i] = (want[3 * i] | want[3 * i + 1] | want[3 * i + 2]) > 0;
      snprintf(name, sizeof name, "%s as a binary mask", cases[k].name);
      expect(name, p, CG_PNG_AS_MASK, wm, H, W);
    }
  }
  free(raw);
  free(want);
  free(wm);
  free(v);
  free(f);
}

/* 8-bit gray + alpha read in bands: in tiles whose last column is clipped (libtiff's own routine
 * garbled the rows after the first there), and MinIsWhite in separate planes with associated
 * alpha (libtiff's took the gray for RGB: not inverted). */
static void test_gray8_bands(void) {
  char p[128];
  const int H = 19, W = 33; /* 16x16 tiles: the last column of tiles holds 1 pixel */
  const size_t n = (size_t)H * W;
  uint8_t *ga = noise(n * 2, 16), *want = malloc(n * 3);
  for (size_t i = 0; i < n; i += 7) ga[2 * i + 1] = 0;
  for (int k = 0; k < 3; k++) {
    const uint16_t extra = k == 0 ? EXTRASAMPLE_UNASSALPHA : EXTRASAMPLE_ASSOCALPHA;
    const uint16_t photo = k == 2 ? PHOTOMETRIC_MINISWHITE : PHOTOMETRIC_MINISBLACK;
    spec_t s = {.w = W, .h = H, .spp = 2, .bps = 8, .photo = photo, .extra = extra,
                .tw = k < 2 ? 16 : 0, .th = k < 2 ? 16 : 0, .rps = 4,
                .planar = k == 2 ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG};
    for (size_t i = 0; i < n; i++) {
      const unsigned g = photo == PHOTOMETRIC_MINISWHITE ? 255 - ga[2 * i] : ga[2 * i];
      memset(want + 3 * i, extra == EXTRASAMPLE_ASSOCALPHA ? divided(g, ga[2 * i + 1]) : g, 3);
    }
    at(p, sizeof p, "ga8.tif");
    CG_TEST_CHECK(write_tiff(p, &s, ga) == 0, "write gray8 + alpha %d", k);
    expect(k == 0   ? "gray8 + unassociated alpha, 16x16 tiles (clipped)"
           : k == 1 ? "gray8 + associated alpha, 16x16 tiles (clipped)"
                    : "gray8 MinIsWhite + associated alpha, separate planes (inverted)",
           p, CG_PNG_AS_RGB, want, H, W);
  }
  free(ga);
  free(want);
}

/* ---- masks ------------------------------------------------------------------------------- */

/* Packs vals (0 .. 2^bps - 1) MSB first into rows of ceil(w * bps / 8) bytes. */
static uint8_t *pack(const uint8_t *vals, int h, int w, int bps) {
  const size_t rb = ((size_t)w * bps + 7) / 8;
  uint8_t *p = calloc(h * rb, 1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const size_t bit = (size_t)x * bps;
      p[y * rb + bit / 8] |= (uint8_t)(vals[y * w + x] << (8 - bps - bit % 8));
    }
  return p;
}

static void test_masks(void) {
  char p[128], err[1024], name[96];
  const int H = 21, W = 37; /* 37 bits: rows end inside a byte */
  uint8_t *raw = noise((size_t)H * W, 8), *vals = malloc((size_t)H * W),
          *want = malloc((size_t)H * W);
  static const int depths[] = {1, 2, 4};
  for (int d = 0; d < 3; d++)
    for (int white = 0; white < 2; white++) {
      const int bps = depths[d], maxv = (1 << bps) - 1;
      for (int i = 0; i < H * W; i++) {
        vals[i] = (uint8_t)(raw[i] & maxv);
        want[i] = (uint8_t)(white ? maxv - vals[i] : vals[i]);
      }
      uint8_t *packed = pack(vals, H, W, bps);
      spec_t s = {.w = W, .h = H, .spp = 1, .bps = bps, .rps = 4,
                  .photo = white ? PHOTOMETRIC_MINISWHITE : PHOTOMETRIC_MINISBLACK};
      at(p, sizeof p, "m.tif");
      CG_TEST_CHECK(write_tiff(p, &s, packed) == 0, "write %d-bit", bps);
      snprintf(name, sizeof name, "%d-bit %s labels", bps, white ? "MinIsWhite (inverted)" :
               "MinIsBlack");
      if (bps == 1) {
        expect(name, p, CG_PNG_AS_LABEL, want, H, W);
      } else { /* Pillow scales 2- and 4-bit gray to 0..255: no class ids, refused */
        got_t g = {0};
        const int rc = read_all(p, CG_PNG_DEFAULT_MAX_PIXELS, CG_PNG_AS_LABEL, &g, err,
                                sizeof err);
        CG_TEST_CHECK(rc == -1 && contains(err, "Pillow reads its values scaled"),
                      "%s: %s", name, rc ? err : "accepted");
        free(g.px);
      }
      for (int i = 0; i < H * W; i++) want[i] = want[i] > 0;
      snprintf(name, sizeof name, "%d-bit %s mask", bps, white ? "MinIsWhite" : "MinIsBlack");
      expect(name, p, CG_PNG_AS_MASK, want, H, W);
      free(packed);
    }
  spec_t s = {.w = W, .h = H, .spp = 1, .bps = 8, .photo = PHOTOMETRIC_MINISBLACK, .rps = 8,
              .comp = COMPRESSION_ADOBE_DEFLATE};
  at(p, sizeof p, "m8.tif");
  CG_TEST_CHECK(write_tiff(p, &s, raw) == 0, "write m8");
  expect("8-bit gray labels (Deflate)", p, CG_PNG_AS_LABEL, raw, H, W);
  s.tw = s.th = 16;
  CG_TEST_CHECK(write_tiff(p, &s, raw) == 0, "write tiled m8");
  expect("8-bit gray labels in 16x16 tiles", p, CG_PNG_AS_LABEL, raw, H, W);
  /* gray + alpha, contiguous and planar: alpha ignored */
  uint8_t *ga = noise((size_t)H * W * 2, 9);
  for (int i = 0; i < H * W; i++) want[i] = ga[2 * i];
  for (int planar = 1; planar <= 2; planar++) {
    s = (spec_t){.w = W, .h = H, .spp = 2, .bps = 8, .photo = PHOTOMETRIC_MINISBLACK, .rps = 3,
                 .extra = EXTRASAMPLE_UNASSALPHA, .planar = (uint16_t)planar};
    CG_TEST_CHECK(write_tiff(p, &s, ga) == 0, "write gray+alpha");
    expect(planar == 1 ? "gray + alpha labels (alpha ignored)" :
           "gray + alpha labels, separate planes", p, CG_PNG_AS_LABEL, want, H, W);
  }
  /* MinIsWhite gray + alpha, both layouts: the image is the labels' gray (libtiff's RGBA
   * interface does not invert separate planes: the scanline path reads plane 0) */
  uint8_t *inv = malloc((size_t)H * W), *inv3 = malloc((size_t)H * W * 3);
  for (int i = 0; i < H * W; i++) {
    inv[i] = (uint8_t)(255 - ga[2 * i]);
    inv3[3 * i] = inv3[3 * i + 1] = inv3[3 * i + 2] = inv[i];
  }
  for (int planar = 1; planar <= 2; planar++) {
    s = (spec_t){.w = W, .h = H, .spp = 2, .bps = 8, .photo = PHOTOMETRIC_MINISWHITE, .rps = 3,
                 .extra = EXTRASAMPLE_UNASSALPHA, .planar = (uint16_t)planar};
    CG_TEST_CHECK(write_tiff(p, &s, ga) == 0, "write MinIsWhite gray+alpha");
    expect(planar == 1 ? "MinIsWhite gray + alpha labels" :
           "MinIsWhite gray + alpha labels, separate planes", p, CG_PNG_AS_LABEL, inv, H, W);
    expect(planar == 1 ? "MinIsWhite gray + alpha image (inverted as the labels)" :
           "MinIsWhite gray + alpha image, separate planes (inverted as the labels)", p,
           CG_PNG_AS_RGB, inv3, H, W);
  }
  free(inv);
  free(inv3);
  /* 16-bit, big-endian: a 300 is no class id, but foreground */
  uint16_t *m16 = malloc((size_t)H * W * 2);
  for (int i = 0; i < H * W; i++) {
    m16[i] = (uint16_t)(raw[i] % 3 == 0 ? 0 : i % 5 == 0 ? 300 : raw[i]);
    want[i] = m16[i] > 0;
  }
  s = (spec_t){.w = W, .h = H, .spp = 1, .bps = 16, .photo = PHOTOMETRIC_MINISBLACK, .rps = 5,
               .bigendian = 1};
  at(p, sizeof p, "m16.tif");
  CG_TEST_CHECK(write_tiff(p, &s, (uint8_t *)m16) == 0, "write m16");
  expect("16-bit big-endian mask (> 0, 300 included)", p, CG_PNG_AS_MASK, want, H, W);
  got_t g = {0};
  int rc = read_all(p, 0, CG_PNG_AS_LABEL, &g, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && contains(err, p) && contains(err, "over 255: not a class id"),
                "16-bit labels over 255: %s", rc ? err : "accepted");
  if (rc == -1) printf("PASS 16-bit labels over 255 refused: %s\n", err);
  for (int i = 0; i < H * W; i++) m16[i] = (uint16_t)(raw[i] < 200 ? raw[i] : 0);
  m16[H * W - 1] = 300;
  CG_TEST_CHECK(write_tiff(p, &s, (uint8_t *)m16) == 0, "write m16");
  rc = read_all(p, 0, CG_PNG_AS_LABEL, &g, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && contains(err, "mask value 300 is over 255: not a class id"),
                "one 300: %s", rc ? err : "accepted");
  m16[H * W - 1] = 255;
  for (int i = 0; i < H * W; i++) want[i] = (uint8_t)m16[i];
  CG_TEST_CHECK(write_tiff(p, &s, (uint8_t *)m16) == 0, "write m16");
  expect("16-bit labels up to 255", p, CG_PNG_AS_LABEL, want, H, W);
  free(g.px);
  free(m16);
  free(ga);
  free(raw);
  free(vals);
  free(want);
  (void)err;
}

/* An RGB mask: no class ids in it (refused from the header), foreground where any of R, G, B
 * is > 0 as a binary mask; float and signed samples are no masks. */
static void test_colour_and_float_masks(void) {
  char p[128], err[1024];
  const int H = 17, W = 29;
  uint8_t *rgb = noise((size_t)H * W * 3, 10), *want = malloc((size_t)H * W);
  for (int i = 0; i < H * W; i++) {
    if (i % 4 == 0) memset(rgb + 3 * i, 0, 3);
    if (i % 4 == 1) rgb[3 * i] = rgb[3 * i + 1] = 0, rgb[3 * i + 2] = 1; /* blue only */
    want[i] = rgb[3 * i] || rgb[3 * i + 1] || rgb[3 * i + 2];
  }
  spec_t s = {.w = W, .h = H, .spp = 3, .bps = 8, .photo = PHOTOMETRIC_RGB, .rps = 4,
              .comp = COMPRESSION_LZW};
  at(p, sizeof p, "rgbmask.tif");
  CG_TEST_CHECK(write_tiff(p, &s, rgb) == 0, "write rgb mask");
  expect("RGB mask read as binary (any of R, G, B > 0)", p, CG_PNG_AS_MASK, want, H, W);
  int h = 0, w = 0;
  int rc = cg_tiff_read_size(p, 0, CG_PNG_AS_LABEL, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && contains(err, p) && contains(err, "class ids") &&
                contains(err, "need a gray or palette image"), "RGB labels, read_size: %s",
                rc ? err : "accepted");
  got_t g = {0};
  rc = read_all(p, 0, CG_PNG_AS_LABEL, &g, err, sizeof err);
  CG_TEST_CHECK(rc == -1 && g.begins == 0 && contains(err, "need a gray or palette image"),
                "RGB labels, read_rows: %s (%d begins)", rc ? err : "accepted", g.begins);
  if (rc == -1) printf("PASS an RGB mask as class ids is refused from the header: %s\n", err);
  static const struct {
    uint16_t fmt;
    int bps;
    const char *what;
  } bad[] = {{SAMPLEFORMAT_IEEEFP, 32, "floating-point"}, {SAMPLEFORMAT_INT, 8, "signed"}};
  for (int k = 0; k < 2; k++) {
    uint8_t *px = noise((size_t)H * W * bad[k].bps / 8, 11);
    s = (spec_t){.w = W, .h = H, .spp = 1, .bps = bad[k].bps, .fmt = bad[k].fmt, .rps = 4,
                 .photo = PHOTOMETRIC_MINISBLACK};
    at(p, sizeof p, "fmask.tif");
    CG_TEST_CHECK(write_tiff(p, &s, px) == 0, "write %s mask", bad[k].what);
    for (int as = CG_PNG_AS_MASK; as <= CG_PNG_AS_LABEL; as++) {
      rc = cg_tiff_read_size(p, 0, (cg_png_as_t)as, &h, &w, err, sizeof err);
      const int rc2 = read_all(p, 0, (cg_png_as_t)as, &g, err, sizeof err);
      CG_TEST_CHECK(rc == -1 && rc2 == -1 && g.begins == 0 && contains(err, bad[k].what) &&
                    contains(err, "unsigned integer"), "%s mask: %s", bad[k].what,
                    rc2 ? err : "accepted");
    }
    if (rc == -1) printf("PASS a %s mask is refused: %s\n", bad[k].what, err);
    free(px);
  }
  free(g.px);
  free(rgb);
  free(want);
}

/* ---- files written by hand: the directory first, cut short, hostile ------------------------ */

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
  put16(p, v & 0xFFFF);
  put16(p + 2, v >> 16);
}

/* An 8-bit gray or RGB little-endian TIFF whose directory comes first (libtiff writes it last),
 * so that a file cut inside its pixel data keeps its tags. n strips (tw 0: unit = rows per
 * strip) or tiles (tw x unit) of counts[i] bytes each; data holds len bytes of them, which may
 * be fewer than the counts say. */
typedef struct {
  uint32_t w, h, unit, tw;
  uint16_t spp, comp;
  uint32_t n;
  const uint32_t *counts;
  const uint8_t *data;
  size_t len;
} raw_t;

static int write_raw(const char *path, const raw_t *r) {
  typedef struct {
    uint16_t tag, type; /* 3 SHORT, 4 LONG */
    uint32_t count;
    const uint32_t *v;
  } ent_t;
  const uint32_t bps[3] = {8, 8, 8}, comp = r->comp, photo = r->spp == 3 ? 2 : 1, spp = r->spp;
  uint32_t *offs = malloc(4 * (size_t)r->n);
  ent_t e[10];
  int ne = 0;
  e[ne++] = (ent_t){256, 4, 1, &r->w};
  e[ne++] = (ent_t){257, 4, 1, &r->h};
  e[ne++] = (ent_t){258, 3, spp, bps};
  e[ne++] = (ent_t){259, 3, 1, &comp};
  e[ne++] = (ent_t){262, 3, 1, &photo};
  if (!r->tw) e[ne++] = (ent_t){273, 4, r->n, offs};
  e[ne++] = (ent_t){277, 3, 1, &spp};
  if (!r->tw) {
    e[ne++] = (ent_t){278, 4, 1, &r->unit};
    e[ne++] = (ent_t){279, 4, r->n, r->counts};
  } else {
    e[ne++] = (ent_t){322, 4, 1, &r->tw};
    e[ne++] = (ent_t){323, 4, 1, &r->unit};
    e[ne++] = (ent_t){324, 4, r->n, offs};
    e[ne++] = (ent_t){325, 4, r->n, r->counts};
  }
  size_t pos = 8 + 2 + 12 * (size_t)ne + 4;
  for (int i = 0; i < ne; i++) {
    const size_t sz = (size_t)e[i].count * (e[i].type == 3 ? 2 : 4);
    if (sz > 4) pos += sz;
  }
  const size_t data_at = pos;
  for (uint32_t i = 0, o = (uint32_t)data_at; i < r->n; o += r->counts[i++]) offs[i] = o;
  uint8_t *f = calloc(data_at + r->len, 1);
  memcpy(f, "II*\0", 4);
  put32(f + 4, 8);
  put16(f + 8, (uint32_t)ne);
  size_t ext = 8 + 2 + 12 * (size_t)ne + 4;
  for (int i = 0; i < ne; i++) {
    uint8_t *d = f + 10 + 12 * i;
    const size_t esz = e[i].type == 3 ? 2 : 4, sz = e[i].count * esz;
    put16(d, e[i].tag);
    put16(d + 2, e[i].type);
    put32(d + 4, e[i].count);
    uint8_t *v = d + 8;
    if (sz > 4) {
      put32(d + 8, (uint32_t)ext);
      v = f + ext;
      ext += sz;
    }
    for (uint32_t k = 0; k < e[i].count; k++)
      if (esz == 2) put16(v + 2 * k, e[i].v[k]);
      else put32(v + 4 * k, e[i].v[k]);
  }
  memcpy(f + data_at, r->data, r->len);
  FILE *fp = fopen(path, "wb");
  const int ok = fp && fwrite(f, 1, data_at + r->len, fp) == data_at + r->len;
  if (fp) fclose(fp);
  free(f);
  free(offs);
  return ok ? 0 : -1;
}

/* The encoded strips of a file libtiff wrote: their bytes back to back, and each one's count. */
static uint8_t *raw_strips(const char *path, uint32_t *n, uint32_t **counts, size_t *len) {
  TIFF *t = TIFFOpen(path, "r");
  if (!t) return NULL;
  *n = TIFFNumberOfStrips(t);
  *counts = malloc(4 * (size_t)*n);
  *len = 0;
  for (uint32_t i = 0; i < *n; i++) *len += (*counts)[i] = (uint32_t)TIFFGetStrileByteCount(t, i);
  uint8_t *d = malloc(*len), *q = d;
  for (uint32_t i = 0; i < *n; i++) q += TIFFReadRawStrip(t, i, q, (*counts)[i]);
  TIFFClose(t);
  return d;
}

static void spit(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) {
    if (n) fwrite(p, 1, n, f);
    fclose(f);
  }
}

/* Expects the read (as `as`, both cg_tiff_read_size and cg_tiff_read_rows when size_too) to fail
 * naming the file and saying `what`; no begin when it fails from the header. */
static void expect_fail(const char *name, const char *path, int64_t max_px, cg_png_as_t as,
                        int size_too, const char *what) {
  char err[1024] = "";
  got_t g = {0};
  int h, w, rc = 0;
  if (size_too) {
    rc = cg_tiff_read_size(path, max_px, as, &h, &w, err, sizeof err);
    CG_TEST_CHECK(rc == -1 && contains(err, path) && contains(err, what),
                  "%s (read_size): '%s'", name, rc ? err : "accepted");
  }
  const int rc2 = read_all(path, max_px, as, &g, err, sizeof err);
  CG_TEST_CHECK(rc2 == -1 && contains(err, path) && contains(err, what) && !strchr(err, '\n') &&
                (!size_too || g.begins == 0), "%s: '%s' (%d begins)", name,
                rc2 ? err : "accepted", g.begins);
  if ((!size_too || rc == -1) && rc2 == -1 && contains(err, what))
    printf("PASS %s: %s\n", name, err);
  free(g.px);
}

static void test_limits(void) {
  char p[128], q[128], err[1024];
  int h = 0, w = 0;
  /* 30000 x 30000 claimed in a few hundred bytes */
  const uint8_t tiny[16] = {0};
  const uint32_t huge_count[1] = {900000000u};
  raw_t r = {.w = 30000, .h = 30000, .unit = 30000, .spp = 1, .comp = 1, .n = 1,
             .counts = huge_count, .data = tiny, .len = sizeof tiny};
  at(p, sizeof p, "bomb.tif");
  CG_TEST_CHECK(write_raw(p, &r) == 0, "write bomb");
  expect_fail("30000x30000 header", p, CG_PNG_DEFAULT_MAX_PIXELS, CG_PNG_AS_RGB, 1,
              "30000x30000 image (900000000 pixels) is over the limit of 89478485 pixels (a "
              "decompression bomb? if the image is genuine, raise --max-image-pixels)");
  int rc = cg_tiff_read_size(p, 0, CG_PNG_AS_RGB, &h, &w, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && h == 30000 && w == 30000, "no pixel limit: %s", rc ? err : "size");
  expect_fail("30000x30000 header, no pixel limit, data missing", p, 0, CG_PNG_AS_LABEL, 0,
              "TIFF decode failed: ");
  r.w = 40000, r.h = 10, r.unit = 10;
  CG_TEST_CHECK(write_raw(p, &r) == 0, "write wide");
  expect_fail("40000 pixels wide", p, 0, CG_PNG_AS_RGB, 1, "over the limit of 32768 pixels");
  r.w = 0;
  CG_TEST_CHECK(write_raw(p, &r) == 0, "write 0 wide");
  expect_fail("0 pixels wide", p, 0, CG_PNG_AS_RGB, 1, "TIFF decode failed: ");
  /* a 16x16 image in one 65536x65536 tile: 4 GiB to decode it */
  const uint32_t tc[1] = {256};
  uint8_t *t256 = noise(256, 12);
  r = (raw_t){.w = 16, .h = 16, .unit = 65536, .tw = 65536, .spp = 1, .comp = 1, .n = 1,
              .counts = tc, .data = t256, .len = 256};
  CG_TEST_CHECK(write_raw(p, &r) == 0, "write huge tile");
  expect_fail("65536x65536 tiles (image)", p, CG_PNG_DEFAULT_MAX_PIXELS, CG_PNG_AS_RGB, 1,
              "TIFF decode failed: ");
  expect_fail("65536x65536 tiles (labels)", p, CG_PNG_DEFAULT_MAX_PIXELS, CG_PNG_AS_LABEL, 1,
              "TIFF decode failed: ");
  free(t256);

  /* cut inside the strip data, the directory first: uncompressed gray, LZW RGB */
  const int H = 40, W = 64;
  uint8_t *px = noise((size_t)H * W * 3, 13);
  for (int k = 0; k < 2; k++) {
    spec_t s = {.w = W, .h = H, .spp = k ? 3 : 1, .bps = 8, .rps = 8,
                .photo = k ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK,
                .comp = k ? COMPRESSION_LZW : COMPRESSION_NONE};
    at(q, sizeof q, "lt.tif");
    CG_TEST_CHECK(write_tiff(q, &s, px) == 0, "write for raw");
    uint32_t n = 0, *counts = NULL;
    size_t len = 0;
    uint8_t *data = raw_strips(q, &n, &counts, &len);
    r = (raw_t){.w = W, .h = H, .unit = 8, .spp = (uint16_t)s.spp, .comp = s.comp, .n = n,
                .counts = counts, .data = data, .len = len};
    CG_TEST_CHECK(data && n == 5 && write_raw(p, &r) == 0, "write directory-first");
    if (k == 0) expect("directory first, whole (gray as labels)", p, CG_PNG_AS_LABEL, px, H, W);
    else expect("directory first, whole (LZW RGB)", p, CG_PNG_AS_RGB, px, H, W);
    r.len = len / 2;
    CG_TEST_CHECK(write_raw(p, &r) == 0, "write cut");
    expect_fail(k ? "LZW RGB cut in the middle of its strips" :
                "gray cut in the middle of its strips (image)", p, 0, CG_PNG_AS_RGB, 0,
                "(truncated)");
    expect_fail(k ? "LZW RGB cut in the middle of its strips (mask)" :
                "gray cut in the middle of its strips (labels)", p, 0,
                k ? CG_PNG_AS_MASK : CG_PNG_AS_LABEL, 0, "(truncated)");
    r.len = len - 1; /* the last byte only */
    CG_TEST_CHECK(write_raw(p, &r) == 0, "write cut");
    expect_fail(k ? "LZW RGB without its last byte" : "gray without its last byte", p, 0,
                k ? CG_PNG_AS_RGB : CG_PNG_AS_LABEL, 0, "(truncated)");
    free(data);
    free(counts);
  }
  /* libtiff's own layout (directory last), cut in half: the directory is gone */
  spec_t s = {.w = W, .h = H, .spp = 3, .bps = 8, .rps = 8, .photo = PHOTOMETRIC_RGB};
  CG_TEST_CHECK(write_tiff(q, &s, px) == 0, "write");
  FILE *f = fopen(q, "rb");
  uint8_t *whole = malloc((size_t)H * W * 3 + 4096);
  const size_t n = fread(whole, 1, (size_t)H * W * 3 + 4096, f);
  fclose(f);
  spit(q, whole, n / 2);
  expect_fail("cut in half (directory lost)", q, 0, CG_PNG_AS_RGB, 1, "(truncated)");
  spit(q, whole, 8);
  expect_fail("the 8-byte header only", q, 0, CG_PNG_AS_RGB, 1, "(truncated)");
  free(whole);
  free(px);

  spit(q, "", 0);
  expect_fail("empty file", q, 0, CG_PNG_AS_RGB, 1, "not a TIFF file (empty: 0 bytes)");
  spit(q, "II*", 3);
  expect_fail("3 bytes", q, 0, CG_PNG_AS_RGB, 1, "not a TIFF file (truncated signature");
  spit(q, "hello, world\n", 13);
  expect_fail("text", q, 0, CG_PNG_AS_MASK, 1, "not a TIFF file (bad signature)");
  const uint8_t g4[4] = {0, 80, 160, 255};
  at(q, sizeof q, "x.png");
  CG_TEST_CHECK(cg_png_write(q, g4, 2, 2, CG_PNG_GRAY8, err, sizeof err) == 0, "%s", err);
  expect_fail("a PNG", q, 0, CG_PNG_AS_RGB, 1, "not a TIFF file (bad signature)");
  at(q, sizeof q, "missing.tif");
  expect_fail("a missing file", q, 0, CG_PNG_AS_RGB, 1, "No such file or directory");
}

/* A sink refusing in begin or at a row: nothing after it, its reason as the error. */
static void test_sink_stop(void) {
  char p[128], err[1024], want[256];
  const int H = 21, W = 13;
  uint8_t *px = noise((size_t)H * W, 14);
  spec_t s = {.w = W, .h = H, .spp = 1, .bps = 8, .rps = 4, .photo = PHOTOMETRIC_MINISBLACK};
  at(p, sizeof p, "stop.tif");
  CG_TEST_CHECK(write_tiff(p, &s, px) == 0, "write");
  for (int as = CG_PNG_AS_RGB; as <= CG_PNG_AS_LABEL; as++)
    for (int at_row = -2; at_row <= 5; at_row += 7) {
      got_t g = {.bpp = as == CG_PNG_AS_RGB ? 3 : 1, .stop_at = at_row};
      const cg_png_sink_t sink = {got_begin, got_row, &g};
      const int rc = cg_tiff_read_rows(p, 0, (cg_png_as_t)as, &sink, err, sizeof err);
      if (at_row == -2) snprintf(want, sizeof want, "%s: refused in begin", p);
      else snprintf(want, sizeof want, "%s: stopped at row %d", p, at_row);
      CG_TEST_CHECK(rc == -1 && !strcmp(err, want) && g.next == (at_row < 0 ? 0 : at_row + 1),
                    "as %d, stop at %d: '%s', rows up to %d", as, at_row, err, g.next);
      free(g.px);
    }
  printf("PASS a sink refusing (begin, row 5; image, mask, labels) stops the read: %s\n", err);
  free(px);
}

/* Under ASan the peak says nothing: its quarantine keeps every buffer libtiff frees after a
 * band (50 MB of them here). The reads still run there, for ASan to watch. */
#if defined(__SANITIZE_ADDRESS__)
#define CG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CG_ASAN 1
#endif
#endif

static long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static int sum_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)y, (void)why, (void)whylen;
  uint64_t *sum = ctx;
  for (int i = 0; i < 4096 * 3; i++) *sum += px[i];
  return 0;
}

/* Peak memory of a 4096x4096 RGB file in strips of 16 rows (48 MB of pixels) read through a
 * sink vs kept whole: each in a fresh process whose peak RSS starts below the image's size. */
/* A 4096x4096 file (spp samples of bps bits, rps rows a strip, compression comp) read as an
 * image through a sink peaks at a few MB, kept whole at over 40 MB (48 MB of RGB). One Deflate
 * strip of the whole image is read a scanline at a time: decoded whole, it cost the strip and a
 * 4-byte word a pixel (+112 MB for 8-bit RGB, +97 MB for 16-bit gray, +162 MB for 16-bit
 * RGB). */
static void memory_case(const char *name, int spp, int bps, uint32_t rps, uint16_t comp) {
  char path[128], err[512];
  at(path, sizeof path, "big.tif");
  const int S = 4096;
  pid_t pid = fork();
  if (pid == 0) { /* the writer, row by row */
    TIFF *t = TIFFOpen(path, "w");
    if (!t) _exit(1);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)S);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)S);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, spp == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, rps);
    TIFFSetField(t, TIFFTAG_COMPRESSION, comp);
    uint8_t *row = malloc((size_t)S * spp * bps / 8);
    int ok = 1;
    for (int y = 0; y < S; y++) {
      for (int i = 0; i < S * spp; i++) {
        const unsigned v = (unsigned)(i / spp / 16 + y + i % spp * 40) & 255;
        const uint16_t v16 = (uint16_t)(v * 257 + (i & 1)); /* host order, as libtiff takes it */
        if (bps == 8) row[i] = (uint8_t)v;
        else memcpy(row + 2 * i, &v16, 2);
      }
      ok &= TIFFWriteScanline(t, row, (uint32_t)y, 0) == 1;
    }
    TIFFClose(t);
    _exit(ok ? 0 : 1);
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
      uint64_t sum = 0;
      got_t g = {0};
      const cg_png_sink_t s = {NULL, sum_row, &sum};
      const int rc = whole ? read_all(path, 0, CG_PNG_AS_RGB, &g, err, sizeof err)
                           : cg_tiff_read_rows(path, 0, CG_PNG_AS_RGB, &s, err, sizeof err);
      long d = rc ? -1 : maxrss_kb() - r0;
      if (write(fd[1], &d, sizeof d) != sizeof d) _exit(1);
      _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &kb[whole], sizeof kb[whole]) != sizeof kb[whole]) kb[whole] = -1;
    close(fd[0]);
    waitpid(pid, &st, 0);
  }
#ifdef CG_ASAN
  CG_TEST_CHECK(kb[0] >= 0 && kb[1] >= 0, "%s: 4096x4096 reads failed", name);
  printf("SKIP memory bound under ASan, %s (through a sink: +%.1f MB, kept whole: +%.1f MB)\n",
         name, kb[0] / 1024.0, kb[1] / 1024.0);
#else
  CG_TEST_CHECK(kb[0] >= 0 && kb[0] < 8 * 1024, "%s, %dx%d through a sink: peak +%ld KB", name, S,
                S, kb[0]);
  CG_TEST_CHECK(kb[1] > 40 * 1024, "%s whole: peak +%ld KB (the measure is not sensitive?)", name,
                kb[1]);
  if (kb[0] >= 0 && kb[0] < 8 * 1024 && kb[1] > 40 * 1024)
    printf("PASS memory, %s: %dx%d TIFF through a sink peaks at +%.1f MB (kept whole: +%.1f "
           "MB)\n", name, S, S, kb[0] / 1024.0, kb[1] / 1024.0);
#endif
}

static void test_memory(void) {
  memory_case("RGB, strips of 16 rows", 3, 8, 16, COMPRESSION_NONE);
  memory_case("RGB, one Deflate strip", 3, 8, 4096, COMPRESSION_ADOBE_DEFLATE);
  memory_case("16-bit gray, one Deflate strip", 1, 16, 4096, COMPRESSION_ADOBE_DEFLATE);
  memory_case("16-bit RGB, one Deflate strip", 3, 16, 4096, COMPRESSION_ADOBE_DEFLATE);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/cg_tiff_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  uint8_t sig[][4] = {{'I', 'I', 42, 0}, {'M', 'M', 0, 42}, {'I', 'I', 43, 0}, {'M', 'M', 0, 43},
                      {'I', 'I', 0, 42}, {'M', 'M', 42, 0}};
  int ok = 1;
  for (int i = 0; i < 6; i++) ok &= cg_tiff_sniff(sig[i], 4) == (i < 4);
  ok &= !cg_tiff_sniff(sig[0], 3);
  CG_TEST_CHECK(ok, "cg_tiff_sniff");
  if (ok) printf("PASS cg_tiff_sniff: II*, MM*, BigTIFF II+ and MM+; not short or mixed\n");
  test_rgb();
  test_gray_palette_alpha();
  test_orientation();
  test_16bit();
  test_gray8_bands();
  test_masks();
  test_colour_and_float_masks();
  /* libtiff's messages go to each file's handler: stderr stays empty through the bad files */
  char ep[128];
  at(ep, sizeof ep, "stderr.txt");
  fflush(stderr);
  const int saved = dup(2), efd = open(ep, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  dup2(efd, 2);
  test_limits();
  test_sink_stop();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  struct stat est;
  CG_TEST_CHECK(fstat(efd, &est) == 0 && est.st_size == 0, "%lld bytes on stderr (see %s)",
                (long long)est.st_size, ep);
  if (est.st_size == 0) printf("PASS nothing printed on stderr while reading bad files\n");
  close(efd);
  test_memory();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_tiff");
}
