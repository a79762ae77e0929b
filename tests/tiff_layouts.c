/* tiff_layouts.c: see tiff_layouts.h. */
#include "tiff_layouts.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#ifdef COGPU_HAVE_TIFF
#include <tiffio.h>

/* One small TIFF: w x h, spp samples of bps bits, photometric, tiled (16 x 16) or in strips of
 * 5 rows, planar contig or separate, "w" or "wb" (big-endian). */
static int tiff_one(const char *dir, const char *name, const char *mode, int w, int h, int spp,
                    int bps, int photometric, int tiled, int planar, int sfmt) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  TIFF *t = TIFFOpen(path, mode);
  if (!t) return -1;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, photometric);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar);
  TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, sfmt);
  if (spp == 2 || spp == 4) {
    uint16_t extra = EXTRASAMPLE_UNASSALPHA;
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
  }
  if (photometric == PHOTOMETRIC_PALETTE) {
    uint16_t r[16], g[16], b[16];
    for (int i = 0; i < 16; i++) r[i] = g[i] = b[i] = (uint16_t)(i * 4369);
    TIFFSetField(t, TIFFTAG_COLORMAP, r, g, b);
  }
  /* a pattern of few values; the same bytes feed every strip, tile and plane */
  uint8_t buf[16 * 16 * 4 * 2];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)((i * 37 + i / 5) & 0xff);
  int ok = 1;
  const int planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
  if (tiled) {
    TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
    for (int s = 0; s < planes; s++)
      for (int y = 0; y < h; y += 16)
        for (int x = 0; x < w; x += 16)
          ok = ok && TIFFWriteTile(t, buf, (uint32_t)x, (uint32_t)y, 0, (uint16_t)s) >= 0;
  } else {
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 5);
    for (int s = 0; s < planes; s++)
      for (int y = 0; y < h; y++)
        ok = ok && TIFFWriteScanline(t, buf, (uint32_t)y, (uint16_t)s) >= 0;
  }
  TIFFClose(t);
  return ok ? 0 : -1;
}

int cg_test_tiff_layouts(const char *dir) {
  mkdir(dir, 0755);
  static const struct {
    const char *name, *mode; /* "wb": big-endian */
    int w, h, spp, bps, photometric, tiled, planar, sfmt;
  } f[] = {
      {"tiled-gray8.tif", "w", 21, 18, 1, 8, PHOTOMETRIC_MINISBLACK, 1, 1, SAMPLEFORMAT_UINT},
      {"tiled-rgb8.tif", "w", 21, 18, 3, 8, PHOTOMETRIC_RGB, 1, 1, SAMPLEFORMAT_UINT},
      {"tiled-gray16.tif", "w", 21, 18, 1, 16, PHOTOMETRIC_MINISBLACK, 1, 1, SAMPLEFORMAT_UINT},
      {"planar-rgb8.tif", "w", 13, 11, 3, 8, PHOTOMETRIC_RGB, 0, 2, SAMPLEFORMAT_UINT},
      {"miniswhite8.tif", "w", 13, 11, 1, 8, PHOTOMETRIC_MINISWHITE, 0, 1, SAMPLEFORMAT_UINT},
      {"rgb16-be.tif", "wb", 9, 7, 3, 16, PHOTOMETRIC_RGB, 0, 1, SAMPLEFORMAT_UINT},
      {"palette4.tif", "w", 13, 11, 1, 4, PHOTOMETRIC_PALETTE, 0, 1, SAMPLEFORMAT_UINT},
      {"gray-alpha8.tif", "w", 13, 11, 2, 8, PHOTOMETRIC_MINISBLACK, 0, 1, SAMPLEFORMAT_UINT},
      {"gray4.tif", "w", 13, 11, 1, 4, PHOTOMETRIC_MINISBLACK, 0, 1, SAMPLEFORMAT_UINT},
      {"int16.tif", "w", 13, 11, 1, 16, PHOTOMETRIC_MINISBLACK, 0, 1, SAMPLEFORMAT_INT},
      {"miniswhite16.tif", "w", 13, 11, 1, 16, PHOTOMETRIC_MINISWHITE, 0, 1, SAMPLEFORMAT_UINT},
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    rc |= tiff_one(dir, f[i].name, f[i].mode, f[i].w, f[i].h, f[i].spp, f[i].bps,
                   f[i].photometric, f[i].tiled, f[i].planar, f[i].sfmt);
  if (rc) fprintf(stderr, "cg_test_tiff_layouts: writing a TIFF in %s failed\n", dir);
  return rc ? -1 : 0;
}
#else
int cg_test_tiff_layouts(const char *dir) {
  (void)dir;
  return 0; /* built without libtiff: no files, and a reader that refuses every one */
}
#endif
