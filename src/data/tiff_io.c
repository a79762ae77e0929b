/* tiff_io.c: TIFF decoding with libtiff (see tiff_io.h).
 *
 * Every file gets its own TIFFOpenOptions: libtiff's errors and warnings reach a handler with
 * this file's context (never stderr, never the process-wide TIFFSetErrorHandler, which another
 * thread could be using), and MaxSingleMemAlloc caps each allocation libtiff makes for it. The
 * first error is kept and fails the read even where libtiff carries on after it. Files are
 * read through read(2), not mapped ("m"): the pages of a mapped file count in the process's
 * memory once touched (a 48 MB file would cost 48 MB, not a band), and a file cut short while
 * mapped raises SIGBUS, where a short read is an error libtiff reports ("Read error ...").
 *
 * The first directory's tags are checked before any pixel buffer exists (sides, the pixel
 * limit, tile sizes, what `as` needs). Strip files read top-down in the layouts this file
 * converts itself go a scanline at a time (read_scan); the rest is decoded in bands of rows, a
 * band being one strip or one row of tiles, so each strip or tile is decoded once:
 *   - images, and colour files read as masks, through TIFFRGBAImageGet with row_offset (ABGR
 *     words, converted to RGB8 or 0/1 rows here);
 *   - one-sample masks through TIFFReadEncodedStrip / TIFFReadTile of plane 0, the stored
 *     values unpacked here (the RGBA interface would give colours, not values).
 * Orientation: TIFFRGBAImage flips within the band it is given, so a bottom-up file is read
 * from its last band up; masks read by value get the same flips here, so an image and its mask
 * stay aligned whatever their tags say.
 *
 * 16-bit image samples become 8 bits as (v + 128) / 257, that is v x 255 / 65535 rounded: what
 * libpng's png_set_scale_16 gives PNGs and TIFFRGBAImage gives 16-bit RGB (its Bitdepth16To8
 * table). Its 16-bit gray routine (put16bitbwtile) keeps the high byte instead, so gray read in
 * bands goes through put routines of this file (put_gray, put_gray_planes). */
#include "tiff_io.h"

int cg_tiff_sniff(const uint8_t *p, size_t n) {
  if (n < 4) return 0;
  if (p[0] == 'I' && p[1] == 'I') return (p[2] == 42 || p[2] == 43) && p[3] == 0; /* 43: BigTIFF */
  if (p[0] == 'M' && p[1] == 'M') return p[2] == 0 && (p[3] == 42 || p[3] == 43);
  return 0;
}

#ifdef COGPU_HAVE_TIFF

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tiffio.h>

typedef struct {
  const char *path;
  char msg[512];
  int failed;  /* msg is set: the first error wins (later ones are usually its consequences) */
  int refused; /* msg is ours or the sink's, not a decoding error: no "TIFF decode failed:" */
} tctx_t;

static int fail(tctx_t *c, int refused, const char *fmt, ...) {
  if (c->failed) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg, sizeof c->msg, fmt, ap);
  va_end(ap);
  c->failed = 1;
  c->refused = refused;
  return -1;
}

/* Returning 1 keeps libtiff from also calling the process-wide handlers (stderr). */
static int on_error(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
  (void)tif;
  tctx_t *c = ud;
  if (c->failed) return 1;
  char m[sizeof c->msg];
  vsnprintf(m, sizeof m, fmt, ap);
  char *neg = strstr(m, " at scanline 4294967295"); /* libtiff's -1: no scanline */
  if (neg) memmove(neg, neg + 23, strlen(neg + 23) + 1);
  const char *s = m; /* many messages start with the name we gave libtiff: the path, said once */
  const size_t pl = strlen(c->path);
  if (!strncmp(s, c->path, pl) && s[pl] == ':') s += pl + 1 + (s[pl + 1] == ' ');
  if (*s) fail(c, 0, "%s", s);
  else fail(c, 0, "%s failed", module ? module : "libtiff");
  return 1;
}

/* Warnings (unknown tags, odd but readable values) are ignored, as png_io.c ignores libpng's. */
static int on_warning(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
  (void)tif, (void)ud, (void)module, (void)fmt, (void)ap;
  return 1;
}

/* The most bytes one strip, tile or libtiff allocation may take: the pixel limit's worth at 8
 * bytes a pixel (4 samples of 16 bits), plus room for tables; with no pixel limit, that of the
 * largest image the side limit allows. */
static int64_t byte_cap(int64_t max_pixels) {
  const int64_t px = max_pixels > 0 ? max_pixels : (int64_t)CG_PNG_MAX_SIDE * CG_PNG_MAX_SIDE;
  return px * 8 + (1 << 20);
}

/* Opens path and its first directory; NULL with c->msg set. */
static TIFF *open_tiff(tctx_t *c, int64_t max_pixels) {
  const int fd = open(c->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(c, 1, "%s", strerror(errno));
    return NULL;
  }
  uint8_t sig[4];
  const ssize_t got = pread(fd, sig, sizeof sig, 0);
  if (got < 0 || !cg_tiff_sniff(sig, (size_t)got)) {
    if (got < 0) fail(c, 1, "read error: %s", strerror(errno));
    else if (got == 0) fail(c, 1, "not a TIFF file (empty: 0 bytes)");
    else if (got < 4) fail(c, 1, "not a TIFF file (truncated signature: %zd bytes)", got);
    else fail(c, 1, "not a TIFF file (bad signature)");
    close(fd);
    return NULL;
  }
  TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
  if (!o) {
    close(fd);
    fail(c, 1, "out of memory");
    return NULL;
  }
  TIFFOpenOptionsSetErrorHandlerExtR(o, on_error, c);
  TIFFOpenOptionsSetWarningHandlerExtR(o, on_warning, c);
  TIFFOpenOptionsSetMaxSingleMemAlloc(o, (tmsize_t)byte_cap(max_pixels));
  TIFF *tif = TIFFFdOpenExt(fd, c->path, "rm", o); /* the handle keeps what it needs of o */
  TIFFOpenOptionsFree(o);
  if (!tif) {
    close(fd); /* TIFFFdOpenExt closes fd only through a handle it made */
    fail(c, 0, "cannot read the first directory");
    return NULL;
  }
  if (c->failed) { /* a directory libtiff opened in spite of an error: not to be trusted */
    TIFFClose(tif);
    return NULL;
  }
  return tif;
}

/* What the first directory says, and how it is read. */
typedef struct {
  uint32_t w, h;
  uint16_t spp, bps, photo, planar, comp;
  int tiled;
  uint32_t tw, band; /* tile width; rows per strip or tile (at most h): a band */
  int values;        /* one-sample file read as values (masks), else the RGBA interface */
  int invert;        /* MinIsWhite: value = maxval - stored */
  int vflip, hflip;  /* what TIFFRGBAImage does for this Orientation, req. top-left */
  int stride;        /* samples per pixel within the plane read (values) */
  int64_t cap;       /* byte_cap */
} plan_t;

static const char *photo_name(uint16_t p) {
  switch (p) {
  case PHOTOMETRIC_MINISWHITE: return "MinIsWhite";
  case PHOTOMETRIC_MINISBLACK: return "MinIsBlack";
  case PHOTOMETRIC_RGB: return "RGB";
  case PHOTOMETRIC_PALETTE: return "palette";
  case PHOTOMETRIC_SEPARATED: return "CMYK";
  case PHOTOMETRIC_YCBCR: return "YCbCr";
  case PHOTOMETRIC_CIELAB: return "CIELab";
  default: return "colour";
  }
}

static const char *format_name(uint16_t f) {
  switch (f) {
  case SAMPLEFORMAT_INT: return "signed integer";
  case SAMPLEFORMAT_IEEEFP: return "floating-point";
  default: return "complex or unknown";
  }
}

/* The flips TIFFRGBAImage makes for a top-left raster, and makes here for masks read by value.
 * Orientations 5..8 (rows and columns swapped) are refused by make_plan: TIFFRGBAImage only
 * flips them, which no viewer shows (Pillow transposes), and a transpose needs the whole image. */
static void set_flips(plan_t *p, uint16_t orient) {
  switch (orient) {
  case ORIENTATION_TOPRIGHT: p->hflip = 1; break;
  case ORIENTATION_BOTRIGHT: p->hflip = p->vflip = 1; break;
  case ORIENTATION_BOTLEFT: p->vflip = 1; break;
  default: break;
  }
}

/* Size checks of the first directory, before anything is allocated for its pixels. */
static int check_size(tctx_t *c, TIFF *tif, int64_t max_pixels, plan_t *p) {
  if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &p->w) ||
      !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &p->h))
    return fail(c, 0, "no ImageWidth or ImageLength tag");
  char why[256];
  if (cg_image_over_limit(p->w, p->h, max_pixels, why, sizeof why)) return fail(c, 1, "%s", why);
  if (p->w == 0 || p->h == 0)
    return fail(c, 0, "the first page is %ux%u (a side is 0)", p->w, p->h);
  if (p->w > CG_PNG_MAX_SIDE || p->h > CG_PNG_MAX_SIDE)
    return fail(c, 1, "%ux%u image: a side is over the limit of %d pixels", p->w, p->h,
                CG_PNG_MAX_SIDE);
  return 0;
}

/* How the file is read as `as`; fails for what it cannot give (labels from colour, ...). */
static int make_plan(tctx_t *c, TIFF *tif, int64_t max_pixels, cg_png_as_t as, plan_t *p) {
  memset(p, 0, sizeof *p);
  p->cap = byte_cap(max_pixels);
  if (check_size(c, tif, max_pixels, p)) return -1;
  uint16_t fmt = SAMPLEFORMAT_UINT, orient = ORIENTATION_TOPLEFT, nextra = 0, *extra = NULL;
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &p->spp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &p->bps);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &p->planar);
  TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &p->comp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orient);
  TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
  if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &p->photo)) return fail(c, 0, "no Photometric tag");
  if (orient >= ORIENTATION_LEFTTOP && orient <= ORIENTATION_LEFTBOT)
    return fail(c, 1, "Orientation %u (rows and columns swapped) is not supported: save the image "
                "top-left (Orientation 1)", orient);
  set_flips(p, orient);
  const int gray = p->photo == PHOTOMETRIC_MINISBLACK || p->photo == PHOTOMETRIC_MINISWHITE ||
                   p->photo == PHOTOMETRIC_PALETTE;
  const int one = gray && (p->spp == 1 || (p->spp == 2 && nextra == 1)); /* + alpha, ignored */
  char emsg[1024];
  if (fmt != SAMPLEFORMAT_UINT && fmt != SAMPLEFORMAT_VOID) /* libtiff's RGBA reads them wrong */
    return fail(c, 1, "%s of %s samples: images and masks need unsigned integer samples",
                as == CG_PNG_AS_RGB ? "an image" : "a mask", format_name(fmt));
  if (as == CG_PNG_AS_LABEL && one && p->photo != PHOTOMETRIC_PALETTE &&
      (p->bps == 2 || p->bps == 4))
    return fail(c, 1, "a %u-bit gray mask: Pillow reads its values scaled to 0..255, not as "
                "class ids; save class ids as 8-bit gray or palette", p->bps);
  if (as != CG_PNG_AS_RGB) {
    if (as == CG_PNG_AS_LABEL && !one)
      return fail(c, 1, "a mask of %u samples per pixel (%s): class ids (--num-classes K >= 2, "
                  "--ignore-index, --label-map) need a gray or palette image", p->spp,
                  photo_name(p->photo));
    if (one && p->bps != 1 && p->bps != 2 && p->bps != 4 && p->bps != 8 && p->bps != 16)
      return fail(c, 1, "a mask of %u-bit samples: masks need 1, 2, 4, 8 or 16 bits per sample",
                  p->bps);
    p->values = one;
  }
  if (!p->values && !TIFFRGBAImageOK(tif, emsg)) return fail(c, 0, "%s", emsg);
  /* Pillow inverts MinIsWhite up to 8 bits; a 16-bit one it reads as stored (mode I;16) */
  p->invert = p->values && p->photo == PHOTOMETRIC_MINISWHITE && p->bps <= 8;
  p->stride = p->planar == PLANARCONFIG_SEPARATE ? 1 : p->spp;
  uint32_t base = 0;
  p->tiled = TIFFIsTiled(tif);
  if (p->tiled) {
    uint32_t th = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &p->tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    /* A tile is decoded whole, however little of it lies in the image. */
    const uint64_t tpx = (uint64_t)p->tw * th, lim = (uint64_t)(p->cap / 8);
    const uint64_t most = lim > (1u << 22) ? lim : (1u << 22); /* small limits: 2048x2048 */
    if (p->tw == 0 || th == 0 || tpx > most)
      return fail(c, 0, "%ux%u tiles in a %ux%u image (over the limit of %llu pixels a tile)",
                  p->tw, th, p->w, p->h, (unsigned long long)most);
    base = th;
  } else {
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &base);
    if (base == 0) return fail(c, 0, "RowsPerStrip is 0");
  }
  const uint64_t unit = p->tiled ? TIFFTileSize64(tif) : TIFFStripSize64(tif);
  if (unit == 0) return fail(c, 0, "%ss of 0 bytes", p->tiled ? "tile" : "strip");
  if (unit > (uint64_t)p->cap)
    return fail(c, 0, "a %s of %llu bytes (over the limit of %lld for this pixel limit)",
                p->tiled ? "tile" : "strip", (unsigned long long)unit, (long long)p->cap);
  p->band = base < p->h ? base : p->h; /* RowsPerStrip is often 2^32 - 1: one strip */
  return 0;
}

/* ---- one-sample files, by value ------------------------------------------------------------ */

/* Sample i (counting samples, not pixels) of a row of bps-bit samples, MSB first. */
static unsigned sample_at(const uint8_t *row, size_t i, int bps) {
  if (bps == 8) return row[i];
  if (bps == 16) {
    uint16_t v; /* libtiff swapped it to host order */
    memcpy(&v, row + 2 * i, 2);
    return v;
  }
  const size_t bit = i * (size_t)bps;
  return (unsigned)(row[bit >> 3] >> (8 - bps - (int)(bit & 7))) & ((1u << bps) - 1);
}

/* n pixels of sample 0 from src to dst as `as` says; the first value over 255 for labels
 * (returned), else -1. */
static long to_values(const plan_t *p, cg_png_as_t as, const uint8_t *src, uint32_t n,
                      uint8_t *dst) {
  const unsigned maxv = (1u << p->bps) - 1;
  for (uint32_t x = 0; x < n; x++) {
    unsigned v = sample_at(src, (size_t)x * p->stride, p->bps);
    if (p->invert) v = maxv - v;
    if (as == CG_PNG_AS_MASK) {
      dst[x] = v > 0;
    } else {
      if (v > 255) return (long)v;
      dst[x] = (uint8_t)v;
    }
  }
  return -1;
}

/* The band of file rows r0 .. r0+n-1 (one strip, or one row of tiles) into vals (n rows of w
 * bytes, in file order), through unit, a strip or tile buffer of unit_len bytes. */
static int fill_band(tctx_t *c, TIFF *tif, const plan_t *p, cg_png_as_t as, uint32_t r0,
                     uint32_t n, uint8_t *unit, tmsize_t unit_len, uint8_t *vals) {
  long bad = -1;
  if (p->tiled) {
    const tmsize_t trs = TIFFTileRowSize(tif);
    if (trs <= 0) return fail(c, 0, "no tile row size");
    for (uint32_t x0 = 0; x0 < p->w && bad < 0; x0 += p->tw) {
      const uint32_t cols = p->w - x0 < p->tw ? p->w - x0 : p->tw;
      if (TIFFReadTile(tif, unit, x0, r0, 0, 0) < 0 || c->failed)
        return fail(c, 0, "cannot read the tile at (%u, %u)", x0, r0);
      for (uint32_t j = 0; j < n && bad < 0; j++)
        bad = to_values(p, as, unit + (size_t)j * trs, cols, vals + (size_t)j * p->w + x0);
    }
  } else {
    const tmsize_t sls = TIFFScanlineSize(tif);
    if (sls <= 0) return fail(c, 0, "no scanline size");
    const tmsize_t got = TIFFReadEncodedStrip(tif, TIFFComputeStrip(tif, r0, 0), unit, unit_len);
    if (got < 0 || c->failed) return fail(c, 0, "cannot read the strip of row %u", r0);
    if (got < sls * (tmsize_t)n) return fail(c, 0, "short strip at row %u", r0);
    for (uint32_t j = 0; j < n && bad < 0; j++)
      bad = to_values(p, as, unit + (size_t)j * sls, p->w, vals + (size_t)j * p->w);
  }
  if (bad >= 0) return fail(c, 1, "mask value %ld is over 255: not a class id", bad);
  return 0;
}

static void reverse(uint8_t *dst, const uint8_t *src, uint32_t n) {
  for (uint32_t x = 0; x < n; x++) dst[n - 1 - x] = src[x];
}

static int sink_row(tctx_t *c, const cg_png_sink_t *sink, uint32_t y, const uint8_t *px) {
  char why[480] = "";
  if (sink->row(sink->ctx, (int)y, px, why, sizeof why)) return fail(c, 1, "%s", why);
  return 0;
}

/* Bands from the top of the output down: from the file's last band up when it is flipped. */
static uint32_t band_at(const plan_t *p, uint32_t k, uint32_t *n) {
  const uint32_t nb = (p->h + p->band - 1) / p->band, b = p->vflip ? nb - 1 - k : k;
  const uint32_t r0 = b * p->band;
  *n = p->h - r0 < p->band ? p->h - r0 : p->band;
  return r0;
}

static int read_values(tctx_t *c, TIFF *tif, const plan_t *p, cg_png_as_t as,
                       const cg_png_sink_t *sink) {
  const uint64_t ulen = p->tiled ? TIFFTileSize64(tif) : TIFFStripSize64(tif);
  uint8_t *unit = malloc(ulen), *vals = malloc((size_t)p->w * p->band), *row = malloc(p->w);
  int rc = 0;
  if (!unit || !vals || !row) {
    rc = fail(c, 0, "out of memory for a band of %u rows", p->band);
    goto done;
  }
  const uint32_t nb = (p->h + p->band - 1) / p->band;
  for (uint32_t k = 0; k < nb && !rc; k++) {
    uint32_t n;
    const uint32_t r0 = band_at(p, k, &n);
    if ((rc = fill_band(c, tif, p, as, r0, n, unit, (tmsize_t)ulen, vals))) break;
    for (uint32_t i = 0; i < n && !rc; i++) {
      const uint32_t j = p->vflip ? n - 1 - i : i; /* the band's row j, in file order */
      const uint8_t *src = vals + (size_t)j * p->w;
      if (p->hflip) reverse(row, src, p->w);
      rc = sink_row(c, sink, p->vflip ? p->h - 1 - (r0 + j) : r0 + j, p->hflip ? row : src);
    }
  }
done:
  free(unit);
  free(vals);
  free(row);
  return rc;
}

/* ---- everything else, through the RGBA interface ------------------------------------------ */

/* A 16-bit sample as 8 bits: round(v x 255 / 65535) (v / 257 is never half way). */
static uint8_t scale16(unsigned v) { return (uint8_t)((v + 128) / 257); }

/* One 8- or 16-bit gray pixel at gp, and its alpha sample at ap (or NULL: opaque), as an ABGR
 * word: MinIsWhite inverted (255 - g, as libtiff's table does; 16 bits: from 65535 - v). */
static uint32_t gray_word(const uint8_t *gp, const uint8_t *ap, size_t bytes, int white) {
  uint32_t g = gp[0], a = ap ? ap[0] : 255;
  if (bytes == 2) {
    uint16_t v; /* libtiff swapped it to host order */
    memcpy(&v, gp, 2);
    g = scale16(v);
    if (ap) {
      memcpy(&v, ap, 2);
      a = scale16(v);
    }
  }
  if (white) g = 255 - g;
  return g | g << 8 | g << 16 | a << 24;
}

/* TIFFRGBAImage's put routines for 8- and 16-bit gray, in place of libtiff's, which keep a
 * 16-bit sample's high byte; skip a clipped tile's columns as bytes, not samples, garbling its
 * rows after the first (16 bits, or an alpha sample); and take separate planes for RGB, leaving
 * MinIsWhite uninverted. w x h pixels to ABGR words at cp; after each row the samples skip
 * fromskew pixels and cp toskew words, as in libtiff's routines. Alpha, where there is one, goes
 * in A for read_rgba to divide by where the file's alpha is associated. */
static void put_gray(TIFFRGBAImage *img, uint32_t *cp, uint32_t x, uint32_t y, uint32_t w,
                     uint32_t h, int32_t fromskew, int32_t toskew, unsigned char *pp) {
  (void)x, (void)y;
  const size_t spp = img->samplesperpixel, bytes = img->bitspersample / 8; /* a sample */
  const int white = img->photometric == PHOTOMETRIC_MINISWHITE, alpha = img->alpha && spp > 1;
  for (; h > 0; h--) {
    for (uint32_t i = 0; i < w; i++, pp += bytes * spp)
      *cp++ = gray_word(pp, alpha ? pp + bytes : NULL, bytes, white);
    cp += toskew;
    pp += (ptrdiff_t)fromskew * (ptrdiff_t)(bytes * spp);
  }
}

/* The same for separate planes: the gray plane at r (g and b are r), the alpha one at a or
 * NULL. */
static void put_gray_planes(TIFFRGBAImage *img, uint32_t *cp, uint32_t x, uint32_t y, uint32_t w,
                            uint32_t h, int32_t fromskew, int32_t toskew, unsigned char *r,
                            unsigned char *g, unsigned char *b, unsigned char *a) {
  (void)x, (void)y, (void)g, (void)b;
  const size_t bytes = img->bitspersample / 8;
  const int white = img->photometric == PHOTOMETRIC_MINISWHITE;
  const ptrdiff_t skip = (ptrdiff_t)fromskew * (ptrdiff_t)bytes;
  for (; h > 0; h--) {
    for (uint32_t i = 0; i < w; i++, r += bytes, a = a ? a + bytes : NULL)
      *cp++ = gray_word(r, a, bytes, white);
    cp += toskew;
    r += skip;
    if (a) a += skip;
  }
}

/* 1 when the first extra sample is associated (premultiplied) alpha. */
static int assoc_alpha(TIFF *tif) {
  uint16_t nextra = 0, *extra = NULL;
  TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
  return nextra > 0 && extra[0] == EXTRASAMPLE_ASSOCALPHA;
}

/* Alpha is dropped as Pillow drops it (convert("RGB")): unassociated, the colours as stored;
 * associated (premultiplied), the colours divided by alpha back (Pillow's unpacker: c * 255 / a,
 * at most 255; 0 where a = 0). TIFFRGBAImage would premultiply unassociated alpha into the
 * colours (putRGBUA*) and passes associated alpha through: calling every alpha associated
 * makes it hand over the stored colours, divided here when they were associated (assoc_alpha,
 * asked before this). */
static void pass_alpha(TIFF *tif) {
  uint16_t n = 0, *types = NULL, mine[8];
  if (!TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &n, &types) || n == 0 || n > 8 ||
      types[0] != EXTRASAMPLE_UNASSALPHA)
    return;
  memcpy(mine, types, n * sizeof *mine);
  mine[0] = EXTRASAMPLE_ASSOCALPHA;
  TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, n, mine); /* in memory only: the file is read-only */
}

static uint8_t unpremultiply(uint32_t c, uint32_t a) {
  if (a == 255) return (uint8_t)c;
  if (a == 0) return 0;
  const uint32_t v = c * 255 / a;
  return (uint8_t)(v > 255 ? 255 : v);
}

static int read_rgba(tctx_t *c, const plan_t *p, cg_png_as_t as, const cg_png_sink_t *sink,
                     TIFFRGBAImage *img, int divide) {
  uint32_t *raster = malloc((size_t)p->w * p->band * sizeof *raster);
  uint8_t *row = malloc((size_t)p->w * 3);
  int rc = 0;
  if (!raster || !row) {
    rc = fail(c, 0, "out of memory for a band of %u rows", p->band);
    goto done;
  }
  const uint32_t nb = (p->h + p->band - 1) / p->band;
  for (uint32_t k = 0; k < nb && !rc; k++) {
    uint32_t n;
    const uint32_t r0 = band_at(p, k, &n);
    img->row_offset = (int)r0;
    img->col_offset = 0;
    if (!TIFFRGBAImageGet(img, raster, p->w, n) || c->failed) {
      rc = fail(c, 0, "cannot decode rows %u..%u", r0, r0 + n - 1);
      break;
    }
    /* The band comes flipped as the output wants it: its row i is output row y0 + i. */
    const uint32_t y0 = p->vflip ? p->h - r0 - n : r0;
    for (uint32_t i = 0; i < n && !rc; i++) {
      const uint32_t *src = raster + (size_t)i * p->w;
      for (uint32_t x = 0; x < p->w; x++) {
        const uint32_t v = src[x], a = divide ? TIFFGetA(v) : 255;
        const uint8_t r = unpremultiply(TIFFGetR(v), a), g = unpremultiply(TIFFGetG(v), a),
                      b = unpremultiply(TIFFGetB(v), a);
        if (as == CG_PNG_AS_RGB) {
          row[3 * x] = r;
          row[3 * x + 1] = g;
          row[3 * x + 2] = b;
        } else {
          row[x] = (r | g | b) != 0; /* any of R, G, B > 0 */
        }
      }
      rc = sink_row(c, sink, y0 + i, row);
    }
  }
done:
  free(raster);
  free(row);
  return rc;
}

/* ---- strips, a scanline at a time ---------------------------------------------------------- */

/* Strip files read top-down go a scanline at a time when this file converts the layout itself:
 * every one-sample file by value, 8- and 16-bit gray, gray + alpha, RGB and RGBA images, and
 * 8-bit palette ones (and such colour files as binary masks). Memory is then libtiff's raw
 * strip (the compressed bytes) and one row, however many rows a strip holds: ImageJ writes one
 * strip a page, and a 9000x9000 Deflate strip decoded whole cost +563 MB (pack of a 6000x6000
 * one peaked at 220 MB in 16-bit gray, 366 MB in 16-bit RGB; now 9 and 15 MB). Tiles, bottom-up
 * files and the other layouts (CMYK, YCbCr, separate-plane RGB images ...) go through bands.
 * The conversions are the RGBA interface's (gray: put_gray's), so both paths give the same
 * bytes (test_pillow, test_tiff). */
static int scan_layout(const plan_t *p, int assoc) {
  if (p->tiled || p->vflip) return 0;
  if (p->values) return 1;
  if (p->bps != 8 && (p->bps != 16 || p->photo == PHOTOMETRIC_PALETTE)) return 0;
  const int separate = p->planar == PLANARCONFIG_SEPARATE && p->spp > 1;
  switch (p->photo) {
  case PHOTOMETRIC_MINISBLACK:
  case PHOTOMETRIC_MINISWHITE: /* separate planes: plane 0, the gray; associated alpha there
                                  would need the alpha plane: bands */
    return (p->spp == 1 || p->spp == 2) && !(separate && assoc);
  case PHOTOMETRIC_RGB: return (p->spp == 3 || p->spp == 4) && !separate;
  case PHOTOMETRIC_PALETTE: return p->spp == 1;
  default: return 0;
  }
}


/* A palette's 8-bit colours as the RGBA interface makes them: a colormap whose entries are all
 * below 256 is taken as 8-bit already (old writers), else each entry's high byte. */
static int palette8(tctx_t *c, TIFF *tif, uint8_t pal[256][3]) {
  uint16_t *r, *g, *b;
  if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &r, &g, &b)) return fail(c, 0, "no Colormap tag");
  const int n = 1 << 8;
  int wide = 0;
  for (int i = 0; i < n; i++) wide |= r[i] >= 256 || g[i] >= 256 || b[i] >= 256;
  for (int i = 0; i < n; i++) {
    pal[i][0] = (uint8_t)(wide ? r[i] >> 8 : r[i]);
    pal[i][1] = (uint8_t)(wide ? g[i] >> 8 : g[i]);
    pal[i][2] = (uint8_t)(wide ? b[i] >> 8 : b[i]);
  }
  return 0;
}

/* In place: n 16-bit samples (host order) to n bytes, each written after the bytes it
 * overwrites were read. */
static void narrow16(uint8_t *line, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint16_t v;
    memcpy(&v, line + 2 * i, 2);
    line[i] = scale16(v);
  }
}

static int read_scan(tctx_t *c, TIFF *tif, const plan_t *p, cg_png_as_t as, int assoc_file,
                     const cg_png_sink_t *sink) {
  const tmsize_t sls = TIFFScanlineSize(tif);
  const size_t ch = as == CG_PNG_AS_RGB ? 3 : 1;
  uint8_t *line = sls > 0 ? malloc((size_t)sls) : NULL, *vals = malloc(p->w);
  uint8_t *row = malloc(p->w * ch);
  int rc = 0;
  uint8_t pal[256][3];
  const int assoc = assoc_file && p->stride == p->spp; /* alpha in the line read */
  if (!line || !vals || !row) {
    rc = fail(c, 0, sls > 0 ? "out of memory for a row" : "no scanline size");
    goto done;
  }
  if (!p->values && p->photo == PHOTOMETRIC_PALETTE && (rc = palette8(c, tif, pal))) goto done;
  for (uint32_t y = 0; y < p->h && !rc; y++) {
    if (TIFFReadScanline(tif, line, y, 0) < 0 || c->failed) {
      rc = fail(c, 0, "cannot read row %u", y);
      break;
    }
    if (p->values) {
      const long bad = to_values(p, as, line, p->w, vals);
      if (bad >= 0) {
        rc = fail(c, 1, "mask value %ld is over 255: not a class id", bad);
        break;
      }
    } else if (p->bps == 16) { /* then converted as 8-bit samples are */
      narrow16(line, (size_t)sls / 2);
    }
    for (uint32_t x = 0; x < p->w; x++) {
      const uint32_t ox = p->hflip ? p->w - 1 - x : x;
      if (p->values) {
        row[ox] = vals[x];
        continue;
      }
      const uint8_t *px = line + (size_t)x * p->stride; /* separate planes: plane 0 only */
      uint8_t r, g, b;
      if (p->photo == PHOTOMETRIC_PALETTE) {
        r = pal[px[0]][0], g = pal[px[0]][1], b = pal[px[0]][2];
      } else if (p->photo == PHOTOMETRIC_RGB) {
        const uint32_t a = assoc && p->spp == 4 ? px[3] : 255;
        r = unpremultiply(px[0], a), g = unpremultiply(px[1], a), b = unpremultiply(px[2], a);
      } else {
        const uint32_t a = assoc && p->spp == 2 ? px[1] : 255;
        r = g = b = unpremultiply(p->photo == PHOTOMETRIC_MINISWHITE ? 255 - px[0] : px[0], a);
      }
      if (ch == 3) {
        row[3 * ox] = r;
        row[3 * ox + 1] = g;
        row[3 * ox + 2] = b;
      } else {
        row[ox] = (r | g | b) != 0;
      }
    }
    if (!rc) rc = sink_row(c, sink, y, row);
  }
done:
  free(line);
  free(vals);
  free(row);
  return rc;
}

/* ---- the driver ---------------------------------------------------------------------------- */

/* libtiff's messages for data that ends before what the directory promises. */
static int short_read(const char *msg) {
  return strstr(msg, "Read error") || strstr(msg, "Can not read TIFF directory") ||
         strstr(msg, "Cannot read TIFF header") || strstr(msg, "Seek error");
}

/* sink NULL: the checks and the size only. */
static int run(const char *path, int64_t max_pixels, cg_png_as_t as, const cg_png_sink_t *sink,
               int *h, int *w, char *err, size_t errlen) {
  tctx_t c;
  memset(&c, 0, sizeof c);
  c.path = path;
  TIFF *tif = open_tiff(&c, max_pixels);
  plan_t p;
  TIFFRGBAImage img;
  int began = 0, rc = -1;
  void *raw = NULL; /* our raw tile buffer, lent to libtiff */
  if (!tif || make_plan(&c, tif, max_pixels, as, &p)) goto done;
  if (!sink) {
    *h = (int)p.h;
    *w = (int)p.w;
    rc = 0;
    goto done;
  }
  char emsg[1024] = "";
  const int assoc = assoc_alpha(tif), scan = scan_layout(&p, assoc);
  if (!p.values && !scan) {
    pass_alpha(tif);
    if (!TIFFRGBAImageBegin(&img, tif, 1, emsg)) { /* 1: stop on the first read error */
      fail(&c, 0, "%s", emsg);
      goto done;
    }
    began = 1;
    img.req_orientation = ORIENTATION_TOPLEFT;
    /* libtiff's gray routines fail 16 bits, clipped tiles and MinIsWhite planes: put_gray */
    if ((img.bitspersample == 8 || img.bitspersample == 16) &&
        (img.photometric == PHOTOMETRIC_MINISBLACK || img.photometric == PHOTOMETRIC_MINISWHITE)) {
      if (img.isContig) img.put.contig = put_gray;
      else img.put.separate = put_gray_planes;
    }
  }
  char why[480] = "";
  if (sink->begin && sink->begin(sink->ctx, (int)p.h, (int)p.w, why, sizeof why)) {
    fail(&c, 1, "%s", why);
    goto done;
  }
  /* libtiff 4.5.0 (_TIFFReadEncodedTileAndAllocBuffer, under TIFFRGBAImage) refuses an
   * uncompressed tile unless the raw buffer is exactly one tile ("Invalid tile byte count"),
   * and rounds its own up to 1 KiB: lend it one of the exact size. */
  if (!p.values && !scan && p.tiled && p.comp == COMPRESSION_NONE) {
    const tmsize_t ts = TIFFTileSize(tif);
    if (ts <= 0 || !(raw = malloc((size_t)ts)) || !TIFFReadBufferSetup(tif, raw, ts)) {
      fail(&c, 0, "out of memory for a tile");
      goto done;
    }
  }
  rc = scan       ? read_scan(&c, tif, &p, as, assoc, sink)
       : p.values ? read_values(&c, tif, &p, as, sink)
                  : read_rgba(&c, &p, as, sink, &img, assoc);
done:
  if (began) TIFFRGBAImageEnd(&img);
  if (tif) TIFFClose(tif);
  free(raw); /* after TIFFClose: libtiff does not free a buffer it was lent */
  if (c.failed) rc = -1;
  if (rc) snprintf(err, errlen, "%s: %s%s%s", path, c.refused ? "" : "TIFF decode failed: ", c.msg,
                   !c.refused && short_read(c.msg) ? " (truncated)" : "");
  return rc;
}

int cg_tiff_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                      char *err, size_t errlen) {
  return run(path, max_pixels, as, NULL, h, w, err, errlen);
}

int cg_tiff_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                      const cg_png_sink_t *sink, char *err, size_t errlen) {
  return run(path, max_pixels, as, sink, NULL, NULL, err, errlen);
}

#else /* !COGPU_HAVE_TIFF */

#include <stdio.h>

static int no_tiff(const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: cannot read TIFF files: built without libtiff", path);
  return -1;
}

int cg_tiff_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                      char *err, size_t errlen) {
  (void)max_pixels;
  (void)as;
  (void)h;
  (void)w;
  return no_tiff(path, err, errlen);
}

int cg_tiff_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                      const cg_png_sink_t *sink, char *err, size_t errlen) {
  (void)max_pixels;
  (void)as;
  (void)sink;
  return no_tiff(path, err, errlen);
}

#endif
