/* jpeg_io.c: JPEG decoding and encoding with libjpeg-turbo (see jpeg_io.h).
 *
 * libjpeg reports fatal errors through error_exit, which must not return: ours formats the
 * message and longjmps to the setjmp of the function that owns the decompressor. As in
 * png_io.c, what the error path frees is held in volatile pointers set after setjmp. Warnings
 * arrive through emit_message(-1); the ones that mean lost image data (premature end of file or
 * of a data segment, lost sync) are raised to errors the same way, because libjpeg would
 * otherwise pad the image silently and a truncated file would train as a grey-bottomed one. */
#include "jpeg_io.h"

#include <string.h>

/* ---- EXIF (no libjpeg needed) ------------------------------------------------------------ */

static unsigned get16(const uint8_t *p, int be) {
  return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t get32(const uint8_t *p, int be) {
  return be ? (uint32_t)get16(p, 1) << 16 | get16(p + 2, 1)
            : (uint32_t)get16(p + 2, 0) << 16 | get16(p, 0);
}

int cg_jpeg_exif_orientation(const uint8_t *p, size_t n) {
  if (!p || n < 6 + 8 || memcmp(p, "Exif\0\0", 6)) return 0;
  const uint8_t *t = p + 6; /* the TIFF header; offsets count from here */
  const size_t tn = n - 6;
  const int be = t[0] == 'M' && t[1] == 'M';
  if (!be && !(t[0] == 'I' && t[1] == 'I')) return 0;
  if (get16(t + 2, be) != 42) return 0;
  const uint32_t ifd = get32(t + 4, be);
  if (ifd < 8 || ifd > tn - 2) return 0;
  const unsigned count = get16(t + ifd, be);
  for (unsigned i = 0; i < count; i++) {
    const size_t e = ifd + 2 + (size_t)i * 12;
    if (e + 12 > tn) return 0;
    if (get16(t + e, be) != 274) continue;
    /* one value, in the entry: a SHORT in its first two value bytes (as the format says) or a
     * LONG in all four (as Pillow also takes it) */
    const unsigned type = get16(t + e + 2, be);
    if ((type != 3 && type != 4) || get32(t + e + 4, be) != 1) return 0;
    const uint32_t o = type == 3 ? get16(t + e + 8, be) : get32(t + e + 8, be);
    return o >= 1 && o <= 8 ? (int)o : 0;
  }
  return 0;
}

#ifdef COGPU_HAVE_JPEG

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <jerror.h>

#include "atomic_file.h"

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX + 64];
  int refused; /* the reason is the sink's (or the limit's), not libjpeg's */
} jerr_t;

static void on_error_exit(j_common_ptr c) {
  jerr_t *e = (jerr_t *)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jb, 1);
}

static void on_emit(j_common_ptr c, int level) {
  if (level >= 0) return; /* trace messages */
  const int code = c->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) {
    jerr_t *e = (jerr_t *)c->err;
    (*c->err->format_message)(c, e->msg);
    if (code == JWRN_JPEG_EOF) strncat(e->msg, " (truncated)", sizeof e->msg - strlen(e->msg) - 1);
    longjmp(e->jb, 1);
  }
  c->err->num_warnings++;
}

/* A progressive file may have any number of scans, each a pass over the whole coefficient
 * buffer: a few KB of scans can cost minutes (libjpeg-turbo's own advice is to cap them, as
 * `djpeg -maxscans` does). Real encoders write at most a few dozen. */
#define MAX_SCANS 500

static void on_progress(j_common_ptr c) {
  const j_decompress_ptr d = (j_decompress_ptr)c;
  if (d->input_scan_number > MAX_SCANS) {
    jerr_t *e = (jerr_t *)c->err;
    snprintf(e->msg, sizeof e->msg, "more than %d progressive scans (a decoding-time bomb?)",
             MAX_SCANS);
    longjmp(e->jb, 1);
  }
}

static void set_errors(jerr_t *e) {
  memset(e, 0, sizeof *e);
  jpeg_std_error(&e->pub);
  e->pub.error_exit = on_error_exit;
  e->pub.emit_message = on_emit;
}

int cg_jpeg_sniff(const uint8_t *p, size_t n) {
  return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

/* The exact extent h * M / 8, not libjpeg's rounded-up output size: the last output pixel of
 * a side that is no multiple of 8 / M covers less than a whole scaled pixel of the file. */
int cg_jpeg_scale(int h, int w, int min_side) {
  if (min_side <= 0) return 8;
  for (int m = 1; m < 8; m++)
    if ((int64_t)h * m >= 8 * (int64_t)min_side && (int64_t)w * m >= 8 * (int64_t)min_side)
      return m;
  return 8;
}

/* CMYK (inverted for Adobe files) to RGB, in place over the first w*3 bytes. */
static void cmyk_to_rgb(uint8_t *px, unsigned w, int adobe) {
  for (unsigned x = 0; x < w; x++) {
    unsigned c = px[4 * x], m = px[4 * x + 1], y = px[4 * x + 2], k = px[4 * x + 3];
    if (!adobe) {
      c = 255 - c;
      m = 255 - m;
      y = 255 - y;
      k = 255 - k;
    }
    px[3 * x] = (uint8_t)((c * k + 127) / 255);
    px[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
    px[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
  }
}

/* APP1 segments, read by our marker processor instead of being saved by libjpeg (whose list
 * of saved markers grows by walking it: a file of 400,000 empty APP1 markers took minutes). As
 * Pillow does, the first APP1 that starts "Exif\0" is the file's EXIF, read whole (at most
 * 65533 bytes, once, into memory allocated then); every other one is skipped unread. */
typedef struct exif_scan {
  int seen;      /* the first EXIF segment has been read */
  int orient;    /* its orientation (0: none) */
  uint8_t *data; /* that segment while it is read (the decoder's error path frees it) */
} exif_scan_t;

typedef struct {
  const char *name;
  const uint8_t *mem;
  size_t len;
  cg_jpeg_read_t *r;         /* how to read; what was found (full_h, full_w, scale, orient) */
  const cg_png_sink_t *sink; /* NULL: the header only */
  exif_scan_t scan;          /* the file's EXIF, as the header is read (zeroed) */
} job_t;

/* Orientation o mirrors the stored x (columns) or y (rows) axis. */
static int flips_x(int o) { return o == 2 || o == 3 || o == 7 || o == 8; }
static int flips_y(int o) { return o == 3 || o == 4 || o == 6 || o == 7; }

/* The DCT scale M/8 of a turned decode: at least want, and exact on every mirrored axis (side x
 * M a multiple of 8), so that a scaled pixel mirrored still covers its own part of the file and
 * a scaled decode stays aligned with its mask (a 4032x3024 photo keeps 1/8). */
static int turned_scale(int h, int w, int o, int want) {
  int m = want;
  while (m < 8 && ((flips_x(o) && (int64_t)w * m % 8) || (flips_y(o) && (int64_t)h * m % 8))) m++;
  return m;
}

/* Row y of the h x w image that orientation o makes of the stored sh x sw pixels px (RGB8). */
static void turned_row(const uint8_t *px, int sh, int sw, int o, int y, int w, uint8_t *out) {
  for (int x = 0; x < w; x++) {
    int sx, sy;
    if (o >= 5) { /* rows and columns swapped: x runs along the stored y axis */
      sx = y;
      sy = x;
    } else {
      sx = x;
      sy = y;
    }
    if (flips_x(o)) sx = sw - 1 - sx;
    if (flips_y(o)) sy = sh - 1 - sy;
    memcpy(out + 3 * (size_t)x, px + 3 * ((size_t)sy * sw + sx), 3);
  }
}

static int next_byte(j_decompress_ptr c, int *b) {
  struct jpeg_source_mgr *s = c->src;
  if (s->bytes_in_buffer == 0 && !s->fill_input_buffer(c)) return 0;
  s->bytes_in_buffer--;
  *b = *s->next_input_byte++;
  return 1;
}

static boolean read_app1(j_decompress_ptr c) {
  exif_scan_t *x = c->client_data;
  int hi = 0, lo = 0;
  /* the stdio and memory sources never suspend: they pad a cut file with an EOI marker */
  if (!next_byte(c, &hi) || !next_byte(c, &lo)) ERREXIT(c, JERR_INPUT_EMPTY);
  long len = (hi << 8 | lo) - 2, got = 0;
  if (len < 0) ERREXIT(c, JERR_BAD_LENGTH);
  if (x && !x->seen && len >= 5) { /* x NULL: a segment after the header (between scans) */
    uint8_t head[5];
    int b = 0;
    for (; got < 5; got++) {
      if (!next_byte(c, &b)) ERREXIT(c, JERR_INPUT_EMPTY);
      head[got] = (uint8_t)b;
    }
    if (!memcmp(head, "Exif\0", 5)) { /* the file's EXIF: read whole */
      if (!(x->data = malloc((size_t)len))) ERREXIT(c, JERR_OUT_OF_MEMORY);
      memcpy(x->data, head, 5);
      for (; got < len; got++) {
        if (!next_byte(c, &b)) ERREXIT(c, JERR_INPUT_EMPTY);
        x->data[got] = (uint8_t)b;
      }
      x->seen = 1;
      x->orient = cg_jpeg_exif_orientation(x->data, (size_t)got);
      free(x->data);
      x->data = NULL;
    }
  }
  if (len > got) c->src->skip_input_data(c, len - got);
  return TRUE;
}

/* The decoder proper; the caller opened f (NULL when j->mem is used). Returns 0, or -1 with
 * e->msg set. */
static int decode(job_t *j, FILE *f, jerr_t *e) {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_progress_mgr progress = {on_progress, 0, 0, 0, 0};
  uint8_t *volatile row = NULL, *volatile all = NULL;
  cinfo.err = &e->pub;
  if (setjmp(e->jb)) {
    jpeg_destroy_decompress(&cinfo);
    free(row);
    free(all);
    free(j->scan.data); /* an EXIF segment cut short */
    j->scan.data = NULL;
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  cinfo.progress = &progress;
  if (j->mem) jpeg_mem_src(&cinfo, j->mem, (unsigned long)j->len);
  else jpeg_stdio_src(&cinfo, f);
  cg_jpeg_read_t *r = j->r;
  if (!j->mem) { /* a shard's record is read as stored */
    cinfo.client_data = &j->scan;
    jpeg_set_marker_processor(&cinfo, JPEG_APP0 + 1, read_app1);
  }
  jpeg_read_header(&cinfo, TRUE);
  cinfo.client_data = NULL;
  const int o = j->scan.orient;
  const int turn = r->exif == CG_EXIF_APPLY && o > 1 ? o : 0;
  r->orient = o;
  r->full_h = (int)(turn >= 5 ? cinfo.image_width : cinfo.image_height);
  r->full_w = (int)(turn >= 5 ? cinfo.image_height : cinfo.image_width);
  if (cg_image_over_limit(cinfo.image_width, cinfo.image_height, r->max_pixels, e->msg,
                          sizeof e->msg)) {
    e->refused = 1;
    longjmp(e->jb, 1);
  }
  if (!j->sink) {
    jpeg_destroy_decompress(&cinfo);
    return 0;
  }
  const int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  const int sh = (int)cinfo.image_height, sw = (int)cinfo.image_width;
  const int m = cg_jpeg_scale(sh, sw, r->min_side);
  r->scale = turn ? turned_scale(sh, sw, turn, m) : m;
  cinfo.scale_num = (unsigned)r->scale;
  cinfo.scale_denom = 8;
  jpeg_start_decompress(&cinfo);
  const unsigned ow = cinfo.output_width, oh = cinfo.output_height;
  if (cinfo.output_components != (cmyk ? 4 : 3)) ERREXIT(&cinfo, JERR_CONVERSION_NOTIMPL);
  const int th = (int)(turn >= 5 ? ow : oh), tw = (int)(turn >= 5 ? oh : ow); /* as handed out */
  if (j->sink->begin && j->sink->begin(j->sink->ctx, th, tw, e->msg, sizeof e->msg)) {
    e->refused = 1;
    longjmp(e->jb, 1);
  }
  /* turned: the decoded image is kept whole (within the pixel limit), then handed out row by
   * row as the orientation turns it */
  row = malloc((size_t)(ow > oh ? ow : oh) * cinfo.output_components);
  if (turn) all = malloc((size_t)oh * ow * 3);
  if (!row || (turn && !all)) {
    snprintf(e->msg, sizeof e->msg, "out of memory for %s", turn ? "the image" : "a row");
    longjmp(e->jb, 1);
  }
  while (cinfo.output_scanline < oh) {
    const int y = (int)cinfo.output_scanline;
    JSAMPROW rp = row;
    if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) ERREXIT(&cinfo, JERR_INPUT_EMPTY);
    if (cmyk) cmyk_to_rgb(row, ow, cinfo.saw_Adobe_marker);
    if (turn) memcpy(all + (size_t)y * ow * 3, row, (size_t)ow * 3);
    else if (j->sink->row(j->sink->ctx, y, row, e->msg, sizeof e->msg)) {
      e->refused = 1;
      longjmp(e->jb, 1);
    }
  }
  jpeg_finish_decompress(&cinfo); /* reads up to EOI: a file cut after the last row fails */
  for (int y = 0; turn && y < th; y++) {
    turned_row(all, (int)oh, (int)ow, turn, y, tw, row);
    if (j->sink->row(j->sink->ctx, y, row, e->msg, sizeof e->msg)) {
      e->refused = 1;
      longjmp(e->jb, 1);
    }
  }
  jpeg_destroy_decompress(&cinfo);
  free(row);
  free(all);
  return 0;
}

static int run(job_t *j, char *err, size_t errlen) {
  FILE *f = NULL;
  if (!j->mem) {
    f = fopen(j->name, "rb");
    if (!f) {
      snprintf(err, errlen, "%s: %s", j->name, strerror(errno));
      return -1;
    }
    uint8_t sig[3];
    const size_t got = fread(sig, 1, 3, f);
    if (!cg_jpeg_sniff(sig, got)) {
      snprintf(err, errlen, "%s: not a JPEG file (%s)", j->name,
               got == 0 ? "empty: 0 bytes" : got < 3 ? "truncated signature" : "bad signature");
      fclose(f);
      return -1;
    }
    rewind(f);
  } else if (!cg_jpeg_sniff(j->mem, j->len)) {
    snprintf(err, errlen, "%s: not a JPEG (bad signature)", j->name);
    return -1;
  }
  jerr_t e;
  set_errors(&e);
  const int rc = decode(j, f, &e);
  if (f) fclose(f);
  if (rc) snprintf(err, errlen, "%s: %s%s", j->name, e.refused ? "" : "JPEG decode failed: ", e.msg);
  return rc;
}

int cg_jpeg_read_header(const char *path, int64_t max_pixels, cg_exif_t exif, int *h, int *w,
                        int *orient, char *err, size_t errlen) {
  cg_jpeg_read_t r = {.max_pixels = max_pixels, .exif = exif};
  job_t j = {path, NULL, 0, &r, NULL, {0, 0, NULL}};
  if (run(&j, err, errlen)) return -1;
  *h = r.full_h;
  *w = r.full_w;
  if (orient) *orient = r.orient;
  return 0;
}

int cg_jpeg_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                      size_t errlen) {
  return cg_jpeg_read_header(path, max_pixels, CG_EXIF_STORED, h, w, NULL, err, errlen);
}

int cg_jpeg_read_rows(const char *name, const uint8_t *mem, size_t len, cg_jpeg_read_t *r,
                      const cg_png_sink_t *sink, char *err, size_t errlen) {
  job_t j = {name, mem, len, r, sink, {0, 0, NULL}};
  return run(&j, err, errlen);
}

int cg_jpeg_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w,
                     char *err, size_t errlen) {
  cg_png_whole_t t = {NULL, 3, 0, 0};
  const cg_png_sink_t sink = {cg_png_whole_begin, cg_png_whole_row, &t};
  cg_jpeg_read_t r = {.max_pixels = max_pixels};
  if (cg_jpeg_read_rows(path, NULL, 0, &r, &sink, err, errlen)) {
    free(t.px);
    return -1;
  }
  *rgb = t.px;
  *h = r.full_h;
  *w = r.full_w;
  return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int encode(const uint8_t *rgb, int h, int w, int quality, unsigned char **buf,
                  unsigned long *len, jerr_t *e) {
  struct jpeg_compress_struct cinfo;
  cinfo.err = &e->pub;
  if (setjmp(e->jb)) {
    jpeg_destroy_compress(&cinfo);
    return -1;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, buf, len);
  cinfo.image_width = (JDIMENSION)w;
  cinfo.image_height = (JDIMENSION)h;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW rp = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * w * 3);
    jpeg_write_scanlines(&cinfo, &rp, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return 0;
}

int cg_jpeg_encode(const char *name, const uint8_t *rgb, int h, int w, int quality, uint8_t **out,
                   size_t *len, char *err, size_t errlen) {
  if (h < 1 || w < 1 || h > JPEG_MAX_DIMENSION || w > JPEG_MAX_DIMENSION || quality < 1 ||
      quality > 100) {
    snprintf(err, errlen, "%s: cannot encode a %dx%d JPEG at quality %d", name, w, h, quality);
    return -1;
  }
  jerr_t e;
  set_errors(&e);
  unsigned char *buf = NULL; /* jpeg_mem_dest's: malloc'ed, grown as needed */
  unsigned long n = 0;
  if (encode(rgb, h, w, quality, &buf, &n, &e)) {
    free(buf);
    snprintf(err, errlen, "%s: JPEG encode failed: %s", name, e.msg);
    return -1;
  }
  *out = buf;
  *len = n;
  return 0;
}

int cg_jpeg_write(const char *path, const uint8_t *rgb, int h, int w, int quality, char *err,
                  size_t errlen) {
  uint8_t *buf = NULL;
  size_t n = 0;
  if (cg_jpeg_encode(path, rgb, h, w, quality, &buf, &n, err, errlen)) return -1;
  int rc = cg_afile_save(path, buf, n, err, errlen);
  free(buf);
  return rc;
}

#else /* !COGPU_HAVE_JPEG */

#include <stdio.h>

static int no_jpeg(const char *name, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: cannot read or write JPEG files: built without libjpeg", name);
  return -1;
}

int cg_jpeg_sniff(const uint8_t *p, size_t n) {
  return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

int cg_jpeg_scale(int h, int w, int min_side) {
  (void)h;
  (void)w;
  (void)min_side;
  return 8;
}

int cg_jpeg_read_size(const char *path, int64_t max_pixels, int *h, int *w, char *err,
                      size_t errlen) {
  (void)max_pixels;
  (void)h;
  (void)w;
  return no_jpeg(path, err, errlen);
}

int cg_jpeg_read_header(const char *path, int64_t max_pixels, cg_exif_t exif, int *h, int *w,
                        int *orient, char *err, size_t errlen) {
  (void)exif;
  (void)orient;
  return cg_jpeg_read_size(path, max_pixels, h, w, err, errlen);
}

int cg_jpeg_read_rows(const char *name, const uint8_t *mem, size_t len, cg_jpeg_read_t *r,
                      const cg_png_sink_t *sink, char *err, size_t errlen) {
  (void)mem;
  (void)len;
  (void)r;
  (void)sink;
  return no_jpeg(name, err, errlen);
}

int cg_jpeg_read_rgb(const char *path, int64_t max_pixels, uint8_t **rgb, int *h, int *w,
                     char *err, size_t errlen) {
  (void)max_pixels;
  (void)rgb;
  (void)h;
  (void)w;
  return no_jpeg(path, err, errlen);
}

int cg_jpeg_encode(const char *name, const uint8_t *rgb, int h, int w, int quality, uint8_t **out,
                   size_t *len, char *err, size_t errlen) {
  (void)rgb;
  (void)h;
  (void)w;
  (void)quality;
  (void)out;
  (void)len;
  return no_jpeg(name, err, errlen);
}

int cg_jpeg_write(const char *path, const uint8_t *rgb, int h, int w, int quality, char *err,
                  size_t errlen) {
  (void)rgb;
  (void)h;
  (void)w;
  (void)quality;
  return no_jpeg(path, err, errlen);
}

#endif
