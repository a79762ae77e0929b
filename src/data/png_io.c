/* png_io.c: PNG decoding and encoding with libpng (see png_io.h).
 *
 * Reading starts with our own look at the first 33 bytes (signature and IHDR): an empty, short
 * or oversized file is refused there, before libpng is set up, so a 63-byte file claiming
 * 28936x16136 costs nothing. Non-interlaced files are then decoded with png_read_row into one
 * row buffer and handed to the caller's sink row by row: memory does not grow with the height.
 *
 * libpng reports errors by longjmp to the setjmp point of the call that created the struct.
 * Each public function keeps the state the error path needs (the message, the open file)
 * in its own frame and hands it to a worker that owns the setjmp; inside the worker the
 * buffers allocated after setjmp are volatile pointers, so the error path frees exactly what
 * was allocated, and nothing the error path reads is a non-volatile local modified after
 * setjmp. The sink's callbacks run inside that region; a refusal becomes png_error. Warnings
 * (bad ancillary chunks, sRGB profile chatter) are ignored. */
#include "png_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cg_png_whole_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  cg_png_whole_t *t = ctx;
  t->px = malloc(t->bpp * (size_t)w * (size_t)h);
  if (!t->px) snprintf(why, whylen, "out of memory for the decoded %dx%d image", w, h);
  t->h = h;
  t->w = w;
  return t->px ? 0 : -1;
}

int cg_png_whole_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)why, (void)whylen;
  const cg_png_whole_t *t = ctx;
  const size_t row_bytes = t->bpp * (size_t)t->w;
  memcpy(t->px + (size_t)y * row_bytes, px, row_bytes);
  return 0;
}

int cg_image_over_limit(uint64_t w, uint64_t h, int64_t max_pixels, char *why, size_t whylen) {
  if (max_pixels <= 0 || w * h <= (uint64_t)max_pixels) return 0;
  snprintf(why, whylen, "%llux%llu image (%llu pixels) is over the limit of %lld pixels (a "
           "decompression bomb? if the image is genuine, raise --max-image-pixels)",
           (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
           (long long)max_pixels);
  return -1;
}

#ifdef COGPU_HAVE_PNG

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

typedef struct {
  char msg[512]; /* libpng's reason, set just before the longjmp */
  int refused;   /* the reason is the sink's, not a decoding error */
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

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The signature and the IHDR's width and height, read directly: the checks that must come
 * before any allocation. Leaves f at offset 8 (libpng is told the signature was read). */
static int check_header(FILE *f, const char *path, int64_t max_pixels, char *err, size_t errlen) {
  uint8_t hd[33];
  size_t got = fread(hd, 1, sizeof hd, f);
  if (got < 8 || png_sig_cmp(hd, 0, 8)) {
    if (ferror(f)) snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
    else if (got == 0) snprintf(err, errlen, "%s: not a PNG file (empty: 0 bytes)", path);
    else if (got < 8 && !png_sig_cmp(hd, 0, got))
      snprintf(err, errlen, "%s: not a PNG file (truncated signature: %zu bytes)", path, got);
    else snprintf(err, errlen, "%s: not a PNG file (bad signature)", path);
    return -1;
  }
  if (got < 24) {
    snprintf(err, errlen, "%s: PNG decode failed: unexpected end of file (truncated) in the "
             "header: %zu bytes", path, got);
    return -1;
  }
  if (be32(hd + 8) != 13 || memcmp(hd + 12, "IHDR", 4)) {
    snprintf(err, errlen, "%s: PNG decode failed: the first chunk is not a valid IHDR", path);
    return -1;
  }
  char why[256];
  const uint32_t w = be32(hd + 16), h = be32(hd + 20);
  if (w > CG_PNG_MAX_SIDE || h > CG_PNG_MAX_SIDE) { /* libpng's user limit: "Invalid IHDR data" */
    snprintf(err, errlen, "%s: PNG decode failed: the image is %lux%lu pixels, over the limit of "
             "%d pixels a side", path, (unsigned long)w, (unsigned long)h, CG_PNG_MAX_SIDE);
    return -1;
  }
  if (cg_image_over_limit(w, h, max_pixels, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", path, why);
    return -1;
  }
  if (fseek(f, 8, SEEK_SET)) {
    snprintf(err, errlen, "%s: seek failed: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* In place: byte i is written after bytes >= i were read. */
static void row_to_mask(uint8_t *px, size_t n, size_t stride) {
  for (size_t i = 0; i < n; i++) {
    uint8_t any = 0;
    for (size_t k = 0; k < stride; k++) any |= px[i * stride + k];
    px[i] = any != 0;
  }
}

/* In place: 16-bit rows (big-endian, as libpng gives them) to bytes; returns the first value
 * over 255, or -1. 8-bit rows are left as they are. */
static int row_to_label(uint8_t *px, size_t n, int bps) {
  if (bps == 1) return -1;
  for (size_t i = 0; i < n; i++) {
    const int v = (px[2 * i] << 8) | px[2 * i + 1];
    if (v > 255) return v;
    px[i] = (uint8_t)v;
  }
  return -1;
}

/* Class ids are the stored values: no palette expansion, no scaling of 1/2/4-bit gray. (An RGB
 * file is refused by read_png, from the header.) */
static void set_label_transforms(png_structp png, int depth) {
  if (depth < 8) png_set_packing(png);
  png_set_strip_alpha(png);
}

static const char *bad_label(char *buf, size_t len, int v) {
  snprintf(buf, len, "mask value %d is over 255: not a class id", v);
  return buf;
}

/* Sets up the conversion to `as` (read_png checks the resulting layout). */
static void set_transforms(png_structp png, cg_png_as_t as, int depth, int ctype) {
  if (as == CG_PNG_AS_LABEL) {
    set_label_transforms(png, depth);
    return;
  }
  if (as == CG_PNG_AS_MASK && ctype == PNG_COLOR_TYPE_PALETTE) {
    /* the index, not its colour (as PIL's np.array and K >= 2 read it): index > 0 is
     * foreground, whatever colours the palette gives 0 and 1 */
    if (depth < 8) png_set_packing(png);
    return;
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png); /* may add alpha (tRNS) */
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  if (as == CG_PNG_AS_RGB) {
    if (depth == 16) png_set_scale_16(png);
    if (!(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  }
}

/* A palette shorter than the depth's 2^depth entries padded with the gray ramp (i, i, i), as
 * Pillow pads one (and bmp_io.h's reader): an index past the end of PLTE reads gray, where
 * libpng would give black. */
static void pad_palette(png_structp png, png_infop info, int depth) {
  png_colorp pal = NULL;
  int n = 0;
  if (!png_get_PLTE(png, info, &pal, &n) || depth > 8 || n >= (1 << depth)) return;
  png_color full[256];
  memcpy(full, pal, (size_t)n * sizeof *full);
  for (int i = n; i < (1 << depth); i++) full[i].red = full[i].green = full[i].blue = (png_byte)i;
  png_set_PLTE(png, info, full, 1 << depth);
}

/* Decodes c->f (header already checked) into sink; sink NULL: the size only. Returns 0, or -1
 * with c->msg set. */
static int read_png(png_ctx_t *c, cg_png_as_t as, const cg_png_sink_t *sink, int *h, int *w) {
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
  /* Text, colour-profile and similar ancillary chunks are never used here, and libpng 1.6
   * only warns about an oversized one before allocating its claimed length (a 346-byte file
   * can ask for 1.6 GB): skip them unread. */
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER,
                              (png_const_bytep) "tEXt\0zTXt\0iTXt\0iCCP\0eXIf\0sPLT\0", 6);
  png_read_info(png, info);
  png_uint_32 pw = 0, ph = 0;
  int depth = 0, ctype = 0;
  png_get_IHDR(png, info, &pw, &ph, &depth, &ctype, NULL, NULL, NULL);
  *h = (int)ph;
  *w = (int)pw;
  if (as == CG_PNG_AS_LABEL && ctype & PNG_COLOR_MASK_COLOR && ctype != PNG_COLOR_TYPE_PALETTE) {
    c->refused = 1; /* the file is fine: it cannot hold ids */
    png_error(png, "an RGB mask: class ids (--num-classes >= 2, --ignore-index) need a gray or "
                   "palette PNG");
  }
  if (as == CG_PNG_AS_LABEL && !(ctype & PNG_COLOR_MASK_COLOR) && (depth == 2 || depth == 4)) {
    c->refused = 1; /* Pillow reads 2- and 4-bit gray scaled to 0..255: no ids either way */
    png_error(png, "a 2- or 4-bit gray mask: Pillow reads its values scaled to 0..255, not as "
                   "class ids; save class ids as 8-bit gray or palette");
  }
  if (!sink) {
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
  }
  if (as == CG_PNG_AS_RGB && ctype == PNG_COLOR_TYPE_PALETTE) pad_palette(png, info, depth);
  set_transforms(png, as, depth, ctype);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int ch = png_get_channels(png, info);
  const size_t rb = png_get_rowbytes(png, info);
  const int bps = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  if ((as == CG_PNG_AS_RGB && (ch != 3 || bps != 1)) || (as == CG_PNG_AS_MASK && ch != 1 && ch != 3) ||
      (as == CG_PNG_AS_LABEL && ch != 1) ||
      rb != (size_t)pw * ch * bps)
    png_error(png, "unsupported pixel layout after conversion");
  char why[480] = "";
  if (sink->begin && sink->begin(sink->ctx, (int)ph, (int)pw, why, sizeof why)) {
    c->refused = 1;
    png_error(png, why);
  }
  const size_t stride = (size_t)ch * bps;
  int bad = -1;
  if (passes == 1) { /* row by row: one row of memory */
    buf = malloc(rb);
    if (!buf) png_error(png, "out of memory for a row");
    for (png_uint_32 y = 0; y < ph; y++) {
      png_read_row(png, buf, NULL);
      if (as == CG_PNG_AS_MASK) row_to_mask(buf, pw, stride);
      if (as == CG_PNG_AS_LABEL && (bad = row_to_label(buf, pw, bps)) >= 0) {
        c->refused = 1; /* the file decodes: its value cannot be an id */
        png_error(png, bad_label(why, sizeof why, bad));
      }
      if (sink->row(sink->ctx, (int)y, buf, why, sizeof why)) {
        c->refused = 1;
        png_error(png, why);
      }
    }
  } else { /* Adam7: every pass touches every row block, so libpng needs the whole image */
    buf = malloc(rb * ph);
    rows = malloc(sizeof(png_bytep) * ph);
    if (!buf || !rows) png_error(png, "out of memory for the decoded (interlaced) image");
    for (png_uint_32 y = 0; y < ph; y++) rows[y] = buf + (size_t)y * rb;
    png_read_image(png, rows);
    for (png_uint_32 y = 0; y < ph; y++) {
      if (as == CG_PNG_AS_MASK) row_to_mask(rows[y], pw, stride);
      if (as == CG_PNG_AS_LABEL && (bad = row_to_label(rows[y], pw, bps)) >= 0) {
        c->refused = 1;
        png_error(png, bad_label(why, sizeof why, bad));
      }
      if (sink->row(sink->ctx, (int)y, rows[y], why, sizeof why)) {
        c->refused = 1;
        png_error(png, why);
      }
    }
  }
  png_read_end(png, NULL); /* checks the chunks after the image data, up to IEND */
  png_destroy_read_struct(&png, &info, NULL);
  free(buf);
  free(rows);
  return 0;
}

/* Decodes the stream f (a file, or a buffer through fmemopen); closes it. */
static int read_stream(FILE *f, const char *path, int64_t max_pixels, cg_png_as_t as,
                       const cg_png_sink_t *sink, int *h, int *w, char *err, size_t errlen) {
  png_ctx_t c;
  memset(&c, 0, sizeof c);
  c.f = f;
  if (check_header(c.f, path, max_pixels, err, errlen)) {
    fclose(c.f);
    return -1;
  }
  int hh = 0, ww = 0;
  int rc = read_png(&c, as, sink, &hh, &ww);
  fclose(c.f);
  if (rc) {
    snprintf(err, errlen, "%s: %s%s", path, c.refused ? "" : "PNG decode failed: ", c.msg);
    return -1;
  }
  if (h) *h = hh;
  if (w) *w = ww;
  return 0;
}

static int read_file(const char *path, int64_t max_pixels, cg_png_as_t as, const cg_png_sink_t *sink,
                     int *h, int *w, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  return read_stream(f, path, max_pixels, as, sink, h, w, err, errlen);
}

int cg_png_read_rows_mem(const char *name, const uint8_t *mem, size_t len, int64_t max_pixels,
                         cg_png_as_t as, const cg_png_sink_t *sink, char *err, size_t errlen) {
  if (len == 0) {
    snprintf(err, errlen, "%s: not a PNG (empty: 0 bytes)", name);
    return -1;
  }
  FILE *f = fmemopen((void *)mem, len, "rb"); /* read-only: the buffer is never written */
  if (!f) {
    snprintf(err, errlen, "%s: fmemopen: %s", name, strerror(errno));
    return -1;
  }
  return read_stream(f, name, max_pixels, as, sink, NULL, NULL, err, errlen);
}

int cg_png_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                     size_t errlen) {
  return read_file(path, max_pixels, CG_PNG_AS_RGB, NULL, h, w, err, errlen);
}

int cg_png_read_size_as(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                        char *err, size_t errlen) {
  return read_file(path, max_pixels, as, NULL, h, w, err, errlen);
}

int cg_png_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as, const cg_png_sink_t *sink,
                     char *err, size_t errlen) {
  return read_file(path, max_pixels, as, sink, NULL, NULL, err, errlen);
}

static int read_whole(const char *path, int64_t max_pixels, cg_png_as_t as, uint8_t **out, int *h,
                      int *w, char *err, size_t errlen) {
  cg_png_whole_t t = {NULL, as == CG_PNG_AS_RGB ? 3 : 1, 0, 0};
  cg_png_sink_t sink = {cg_png_whole_begin, cg_png_whole_row, &t};
  int hh = 0, ww = 0;
  if (read_file(path, max_pixels, as, &sink, &hh, &ww, err, errlen)) {
    free(t.px);
    return -1;
  }
  *out = t.px;
  *h = hh;
  *w = ww;
  return 0;
}

int cg_png_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w, char *err,
                    size_t errlen) {
  return read_whole(path, max_pixels, CG_PNG_AS_RGB, rgb, h, w, err, errlen);
}

int cg_png_read_mask(const char *path, int64_t max_pixels, uint8_t **mask, int *h, int *w,
                     char *err, size_t errlen) {
  return read_whole(path, max_pixels, CG_PNG_AS_MASK, mask, h, w, err, errlen);
}

int cg_png_read_labels(const char *path, int64_t max_pixels, uint8_t **ids, int *h, int *w,
                       char *err, size_t errlen) {
  return read_whole(path, max_pixels, CG_PNG_AS_LABEL, ids, h, w, err, errlen);
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

int cg_png_encode(const char *name, const void *px, int h, int w, cg_png_kind_t kind,
                  uint8_t **out, size_t *len, char *err, size_t errlen) {
  layout_t lay;
  if (h < 1 || w < 1 || h > CG_PNG_MAX_SIDE || w > CG_PNG_MAX_SIDE || kind_layout(kind, &lay)) {
    snprintf(err, errlen, "%s: cannot encode a %dx%d PNG of kind %d", name, w, h, (int)kind);
    return -1;
  }
  png_ctx_t c;
  memset(&c, 0, sizeof c);
  char *buf = NULL;
  size_t n = 0;
  c.f = open_memstream(&buf, &n);
  if (!c.f) {
    snprintf(err, errlen, "%s: open_memstream: %s", name, strerror(errno));
    return -1;
  }
  const int rc = write_png(&c, px, h, w, &lay);
  if (fclose(c.f) || rc) {
    free(buf);
    snprintf(err, errlen, "%s: PNG encode failed: %s", name, rc ? c.msg : "out of memory");
    return -1;
  }
  *out = (uint8_t *)buf;
  *len = n;
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
  /* A temporary beside path, renamed over it (atomic_file.h): a failure keeps the old file. */
  cg_afile_t *af = cg_afile_open(path, err, errlen);
  if (!af) return -1;
  c.f = cg_afile_stream(af);
  if (write_png(&c, px, h, w, &lay)) {
    cg_afile_abort(af);
    snprintf(err, errlen, "%s: PNG write failed: %s", path, c.msg);
    return -1;
  }
  return cg_afile_commit(af, err, errlen);
}

/* 8-bit palette PNG of the indices idx with the palette pal (npal RGB entries) as given. */
static int write_indexed(png_ctx_t *c, const uint8_t *idx, int h, int w, const uint8_t *pal,
                         int npal) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    if (png) png_destroy_write_struct(&png, NULL);
    snprintf(c->msg, sizeof c->msg, "out of memory");
    return -1;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return -1;
  }
  png_color pc[256];
  for (int i = 0; i < npal; i++) {
    pc[i].red = pal[3 * i];
    pc[i].green = pal[3 * i + 1];
    pc[i].blue = pal[3 * i + 2];
  }
  png_init_io(png, c->f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_PALETTE,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_PLTE(png, info, pc, npal);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(idx + (size_t)y * w));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return 0;
}

int cg_png_write_indexed(const char *path, const uint8_t *idx, int h, int w, const uint8_t *pal,
                         int npal, char *err, size_t errlen) {
  if (h < 1 || w < 1 || h > CG_PNG_MAX_SIDE || w > CG_PNG_MAX_SIDE || npal < 1 || npal > 256) {
    snprintf(err, errlen, "%s: cannot write a %dx%d PNG with %d palette entries", path, w, h,
             npal);
    return -1;
  }
  for (size_t i = 0; i < (size_t)h * w; i++)
    if (idx[i] >= npal) {
      snprintf(err, errlen, "%s: index %d has no palette entry (%d entries)", path, idx[i], npal);
      return -1;
    }
  png_ctx_t c;
  memset(&c, 0, sizeof c);
  cg_afile_t *af = cg_afile_open(path, err, errlen);
  if (!af) return -1;
  c.f = cg_afile_stream(af);
  if (write_indexed(&c, idx, h, w, pal, npal)) {
    cg_afile_abort(af);
    snprintf(err, errlen, "%s: PNG write failed: %s", path, c.msg);
    return -1;
  }
  return cg_afile_commit(af, err, errlen);
}

#else /* !COGPU_HAVE_PNG */

#include <stdio.h>

static int no_png(const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: cannot read or write PNG files: built without libpng", path);
  return -1;
}

int cg_png_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                     size_t errlen) {
  (void)max_pixels;
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_read_size_as(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                        char *err, size_t errlen) {
  (void)as;
  return cg_png_read_size(path, max_pixels, h, w, err, errlen);
}

int cg_png_read_rows_mem(const char *name, const uint8_t *mem, size_t len, int64_t max_pixels,
                         cg_png_as_t as, const cg_png_sink_t *sink, char *err, size_t errlen) {
  (void)mem;
  (void)len;
  (void)max_pixels;
  (void)as;
  (void)sink;
  return no_png(name, err, errlen);
}

int cg_png_encode(const char *name, const void *px, int h, int w, cg_png_kind_t kind,
                  uint8_t **out, size_t *len, char *err, size_t errlen) {
  (void)px;
  (void)h;
  (void)w;
  (void)kind;
  (void)out;
  (void)len;
  return no_png(name, err, errlen);
}

int cg_png_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as, const cg_png_sink_t *sink,
                     char *err, size_t errlen) {
  (void)max_pixels;
  (void)as;
  (void)sink;
  return no_png(path, err, errlen);
}

int cg_png_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w, char *err,
                    size_t errlen) {
  (void)max_pixels;
  (void)rgb;
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_read_mask(const char *path, int64_t max_pixels, uint8_t **mask, int *h, int *w,
                     char *err, size_t errlen) {
  (void)max_pixels;
  (void)mask;
  (void)h;
  (void)w;
  return no_png(path, err, errlen);
}

int cg_png_read_labels(const char *path, int64_t max_pixels, uint8_t **ids, int *h, int *w,
                       char *err, size_t errlen) {
  (void)max_pixels;
  (void)ids;
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

int cg_png_write_indexed(const char *path, const uint8_t *idx, int h, int w, const uint8_t *pal,
                         int npal, char *err, size_t errlen) {
  (void)idx;
  (void)h;
  (void)w;
  (void)pal;
  (void)npal;
  return no_png(path, err, errlen);
}

#endif

/* ---- the palette, from the chunks (no libpng needed) ------------------------------------- */

#include <errno.h>
#include <string.h>

static uint32_t pal_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int cg_png_read_palette(const char *path, int64_t max_pixels, uint8_t *pal, int *npal, char *err,
                        size_t errlen) {
  *npal = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  uint8_t hd[33];
  int rc = -1;
  if (fread(hd, 1, sizeof hd, f) != sizeof hd || memcmp(hd, sig, 8) || memcmp(hd + 12, "IHDR", 4)) {
    snprintf(err, errlen, "%s: not a PNG file (bad signature or header)", path);
    goto done;
  }
  const uint64_t w = pal_be32(hd + 16), h = pal_be32(hd + 20);
  if (max_pixels > 0 && w * h > (uint64_t)max_pixels) {
    snprintf(err, errlen, "%s: %llux%llu image is over the limit of %lld pixels", path,
             (unsigned long long)w, (unsigned long long)h, (long long)max_pixels);
    goto done;
  }
  rc = 0;
  if (hd[25] != 3) goto done; /* not a palette image */
  for (int guard = 0; guard < 1024; guard++) { /* the chunks up to PLTE (before IDAT) */
    uint8_t ch[8];
    if (fread(ch, 1, 8, f) != 8) break;
    const uint32_t len = pal_be32(ch);
    if (!memcmp(ch + 4, "IDAT", 4) || !memcmp(ch + 4, "IEND", 4)) break;
    if (!memcmp(ch + 4, "PLTE", 4)) {
      if (len % 3 || len == 0 || len > 768 || fread(pal, 1, len, f) != len) {
        snprintf(err, errlen, "%s: corrupt PLTE chunk (%u bytes)", path, len);
        rc = -1;
      } else {
        *npal = (int)(len / 3);
      }
      break;
    }
    if (len > (1u << 30) || fseek(f, (long)len + 4, SEEK_CUR)) break;
  }
done:
  fclose(f);
  return rc;
}

void cg_png_voc_palette(uint8_t pal[768]) {
  for (int c = 0; c < 256; c++) {
    int r = 0, g = 0, b = 0, id = c;
    for (int j = 0; j < 8; j++, id >>= 3) {
      r |= (id & 1) << (7 - j);
      g |= ((id >> 1) & 1) << (7 - j);
      b |= ((id >> 2) & 1) << (7 - j);
    }
    pal[3 * c] = (uint8_t)r;
    pal[3 * c + 1] = (uint8_t)g;
    pal[3 * c + 2] = (uint8_t)b;
  }
}
