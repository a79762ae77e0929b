/* png_io.c: PNG decoding and encoding with libpng (see png_io.h).
 *
 * libpng reports errors by longjmp to the setjmp point of the call that created the struct.
 * Each public function keeps the state the error path needs (the message, the open file)
 * in its own frame and hands it to a worker that owns the setjmp; inside the worker the
 * buffers allocated after setjmp are volatile pointers, so the error path frees exactly what
 * was allocated, and nothing the error path reads is a non-volatile local modified after
 * setjmp. Warnings (bad ancillary chunks, sRGB profile chatter) are ignored. */
#include "png_io.h"

#ifdef COGPU_HAVE_PNG

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char msg[256]; /* libpng's reason, set just before the longjmp */
  FILE *f;
} png_ctx_t;

static void on_error(png_structp png, png_const_charp msg) {
  png_ctx_t *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

/* Read callback: distinguishes a short file from an I/O error (libpng's own says "Read Error"). */
static void on_read(png_structp png, png_bytep data, size_t n) {
  png_ctx_t *c = png_get_io_ptr(png);
  if (fread(data, 1, n, c->f) != n) {
    if (ferror(c->f)) {
      snprintf(c->msg, sizeof c->msg, "read error: %s", strerror(errno));
      png_longjmp(png, 1);
    }
    png_error(png, "unexpected end of file (truncated)");
  }
}

enum { READ_SIZE, READ_RGB, READ_MASK };

/* Decodes c->f (signature already checked). Returns 0, or -1 with c->msg set. */
static int read_png(png_ctx_t *c, int mode, uint8_t **out, int *h, int *w) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  if (!png) {
    snprintf(c->msg, sizeof c->msg, "out of memory");
    return -1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    snprintf(c->msg, sizeof c->msg, "out of memory");
    return -1;
  }
  uint8_t *volatile buf = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    free(buf);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  png_set_read_fn(png, c, on_read);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, CG_PNG_MAX_SIDE, CG_PNG_MAX_SIDE);
  png_read_info(png, info);
  png_uint_32 pw = 0, ph = 0;
  int depth = 0, ctype = 0;
  png_get_IHDR(png, info, &pw, &ph, &depth, &ctype, NULL, NULL, NULL);
  if (mode == READ_SIZE) {
    png_destroy_read_struct(&png, &info, NULL);
    *h = (int)ph;
    *w = (int)pw;
    return 0;
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png); /* may add alpha (tRNS) */
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  if (mode == READ_RGB) {
    if (depth == 16) png_set_scale_16(png);
    if (!(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int ch = png_get_channels(png, info);
  const size_t rb = png_get_rowbytes(png, info);
  const int bps = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  if ((mode == READ_RGB && (ch != 3 || bps != 1)) || (mode == READ_MASK && ch != 1 && ch != 3) ||
      rb != (size_t)pw * ch * bps)
    png_error(png, "unsupported pixel layout after conversion");
  buf = malloc(rb * ph);
  rows = malloc(sizeof(png_bytep) * ph);
  if (!buf || !rows) png_error(png, "out of memory for the decoded image");
  for (png_uint_32 y = 0; y < ph; y++) rows[y] = buf + (size_t)y * rb;
  png_read_image(png, rows);
  png_read_end(png, NULL); /* checks the chunks after the image data, up to IEND */
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  uint8_t *px = buf;
  if (mode == READ_MASK) { /* in place: byte i is written after bytes >= i were read */
    const size_t n = (size_t)pw * ph, stride = (size_t)ch * bps;
    for (size_t i = 0; i < n; i++) {
      uint8_t any = 0;
      for (size_t k = 0; k < stride; k++) any |= px[i * stride + k];
      px[i] = any != 0;
    }
    if (stride > 1) {
      uint8_t *shrunk = realloc(px, n ? n : 1);
      if (shrunk) px = shrunk;
    }
  }
  *out = px;
  *h = (int)ph;
  *w = (int)pw;
  return 0;
}

static int read_file(const char *path, int mode, uint8_t **out, int *h, int *w, char *err,
                     size_t errlen) {
  png_ctx_t c;
  memset(&c, 0, sizeof c);
  c.f = fopen(path, "rb");
  if (!c.f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  uint8_t sig[8];
  size_t got = fread(sig, 1, sizeof sig, c.f);
  if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
    if (got == 0) snprintf(err, errlen, "%s: not a PNG file (empty)", path);
    else if (got < sizeof sig && !png_sig_cmp(sig, 0, got))
      snprintf(err, errlen, "%s: not a PNG file (truncated signature)", path);
    else snprintf(err, errlen, "%s: not a PNG file (bad signature)", path);
    fclose(c.f);
    return -1;
  }
  int hh = 0, ww = 0;
  int rc = read_png(&c, mode, out, &hh, &ww);
  fclose(c.f);
  if (rc) {
    snprintf(err, errlen, "%s: PNG decode failed: %s", path, c.msg);
    return -1;
  }
  *h = hh;
  *w = ww;
  return 0;
}

int cg_png_read_size(const char *path, int *h, int *w, char *err, size_t errlen) {
  return read_file(path, READ_SIZE, NULL, h, w, err, errlen);
}

int cg_png_read_rgb(const char *path, uint8_t **rgb, int *h, int *w, char *err, size_t errlen) {
  return read_file(path, READ_RGB, rgb, h, w, err, errlen);
}

int cg_png_read_mask(const char *path, uint8_t **mask, int *h, int *w, char *err, size_t errlen) {
  return read_file(path, READ_MASK, mask, h, w, err, errlen);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Palette of the distinct colours of an RGB image and the index image; -1 over 256 colours. */
static int make_palette(const uint8_t *rgb, size_t n, png_color *pal, int *npal, uint8_t *idx) {
  int np = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = rgb + 3 * i;
    int k = 0;
    while (k < np && !(pal[k].red == p[0] && pal[k].green == p[1] && pal[k].blue == p[2])) k++;
    if (k == np) {
      if (np == 256) return -1;
      pal[np].red = p[0];
      pal[np].green = p[1];
      pal[np].blue = p[2];
      np++;
    }
    idx[i] = (uint8_t)k;
  }
  *npal = np;
  return 0;
}

typedef struct {
  int ctype, depth, ch;
} layout_t;

static int kind_layout(cg_png_kind_t kind, layout_t *l) {
  switch (kind) {
    case CG_PNG_GRAY8: *l = (layout_t){PNG_COLOR_TYPE_GRAY, 8, 1}; return 0;
    case CG_PNG_GRAY16: *l = (layout_t){PNG_COLOR_TYPE_GRAY, 16, 1}; return 0;
    case CG_PNG_GRAYA8: *l = (layout_t){PNG_COLOR_TYPE_GRAY_ALPHA, 8, 2}; return 0;
    case CG_PNG_RGB8: *l = (layout_t){PNG_COLOR_TYPE_RGB, 8, 3}; return 0;
    case CG_PNG_RGB16: *l = (layout_t){PNG_COLOR_TYPE_RGB, 16, 3}; return 0;
    case CG_PNG_RGBA8: *l = (layout_t){PNG_COLOR_TYPE_RGBA, 8, 4}; return 0;
    case CG_PNG_PALETTE: *l = (layout_t){PNG_COLOR_TYPE_PALETTE, 8, 1}; return 0;
  }
  return -1;
}

/* Encodes px into c->f; the layout is fixed before setjmp and only read after it. */
static int write_png(png_ctx_t *c, const void *px, int h, int w, const layout_t *lay) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  if (!png) {
    snprintf(c->msg, sizeof c->msg, "out of memory");
    return -1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    snprintf(c->msg, sizeof c->msg, "out of memory");
    return -1;
  }
  png_bytep *volatile rows = NULL;
  uint8_t *volatile idx = NULL;
  if (setjmp(png_jmpbuf(png))) {
    free(rows);
    free(idx);
    png_destroy_write_struct(&png, &info);
    return -1;
  }
  png_init_io(png, c->f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, lay->depth, lay->ctype, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  const uint8_t *base = px;
  const size_t rb = (size_t)w * lay->ch * (lay->depth / 8);
  if (lay->ctype == PNG_COLOR_TYPE_PALETTE) {
    png_color pal[256];
    int npal = 0;
    idx = malloc((size_t)h * w);
    if (!idx) png_error(png, "out of memory");
    if (make_palette(px, (size_t)h * w, pal, &npal, idx))
      png_error(png, "more than 256 colours for a palette image");
    png_set_PLTE(png, info, pal, npal);
    base = idx;
  }
  png_write_info(png, info);
  if (lay->depth == 16) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one) png_set_swap(png); /* PNG stores 16-bit samples big-endian */
  }
  rows = malloc(sizeof(png_bytep) * (size_t)h);
  if (!rows) png_error(png, "out of memory");
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)(base + (size_t)y * rb);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  free(idx);
  return 0;
}

int cg_png_write(const char *path, const void *px, int h, int w, cg_png_kind_t kind, char *err,
                 size_t errlen) {
  if (h < 1 || w < 1 || h > CG_PNG_MAX_SIDE || w > CG_PNG_MAX_SIDE) {
    snprintf(err, errlen, "%s: cannot write a %dx%d PNG", path, w, h);
    return -1;
  }
  layout_t lay;
  if (kind_layout(kind, &lay)) {
    snprintf(err, errlen, "%s: unknown PNG kind %d", path, (int)kind);
    return -1;
  }
  png_ctx_t c;
  memset(&c, 0, sizeof c);
  c.f = fopen(path, "wb");
  if (!c.f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  int rc = write_png(&c, px, h, w, &lay);
  if (!rc && (fflush(c.f) || ferror(c.f))) {
    snprintf(c.msg, sizeof c.msg, "write error: %s", strerror(errno));
    rc = -1;
  }
  if (fclose(c.f) && !rc) {
    snprintf(c.msg, sizeof c.msg, "close failed: %s", strerror(errno));
    rc = -1;
  }
  if (rc) {
    remove(path);
    snprintf(err, errlen, "%s: PNG write failed: %s", path, c.msg);
    return -1;
  }
  return 0;
}

#else /* !COGPU_HAVE_PNG */

#include <stdio.h>

static int no_png(const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: cannot read or write PNG files: built without libpng", path);
  return -1;
}

int cg_png_read_size(const char *path, int *h, int *w, char *err, size_t errlen) {
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_read_rgb(const char *path, uint8_t **rgb, int *h, int *w, char *err, size_t errlen) {
  (void)rgb;
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_read_mask(const char *path, uint8_t **mask, int *h, int *w, char *err, size_t errlen) {
  (void)mask;
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_write(const char *path, const void *px, int h, int w, cg_png_kind_t kind, char *err,
                 size_t errlen) {
  (void)px;
  (void)h;
  (void)w;
  (void)kind;
  return no_png(path, err, errlen);
}

#endif
