/* fuzz_jpeg.c: the JPEG decoder (src/data/jpeg_io.c), every way the data loader, the shard reader
 * and `predict` read a JPEG: the header alone (cg_jpeg_read_header, at open, with its EXIF
 * orientation), row by row at full
 * size and at a reduced DCT scale (cg_jpeg_read_rows, from the file and from memory, as a
 * shard record is read), whole (cg_jpeg_read_rgb), then the fitting (cg_fit_png over the file,
 * which sniffs it as a JPEG), the file as its own binary mask (cg_image_read_mask_rows), and a
 * zoom-out crop window past the file (cg_fit_pair: the padding).
 *
 * The sink checks the contract of jpeg_io.h: begin once, with the file's size at full scale and
 * no smaller than min_side at a reduced scale, rows 0..h-1 in order, every byte of a row
 * readable (ASan sees an over-read), and all rows delivered when the read succeeds. JPEG has no
 * checksums, so inputs run as given. */
#include <stdlib.h>
#include <string.h>

#include "fit.h"       // cg_fit_png
#include "fuzz_util.h" // cg_fuzz_*: memfd inputs
#include "jpeg_io.h"   // cg_jpeg_read_*

static cg_fuzz_file_t g_in;

#define FIT 16 /* the size images are fitted to */

typedef struct {
  int h, w, min_side; /* the file's size; the scaled decode must keep both sides >= min_side */
  int dh, dw;         /* the decoded size, from begin */
  int began, next;
  unsigned sum;
} sink_state_t;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_jpeg: %s\n", what);
  abort();
}

static int on_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  sink_state_t *s = ctx;
  if (s->began++) fail("sink begin called twice");
  if (s->min_side <= 0 && (h != s->h || w != s->w)) fail("full-size begin: another size");
  if (s->min_side > 0 && (h > s->h || w > s->w || ((h < s->min_side || w < s->min_side) &&
                                                   (h != s->h || w != s->w))))
    fail("scaled begin: a size below min_side (or above the file's)");
  s->dh = h;
  s->dw = w;
  return 0;
}

static int on_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  sink_state_t *s = ctx;
  if (!s->began || y != s->next++ || y >= s->dh || !px) fail("sink row out of order");
  for (size_t i = 0; i < (size_t)s->dw * 3; i++) s->sum += px[i];
  return 0;
}

static void rows(const uint8_t *mem, size_t n, int h, int w, int min_side, cg_exif_t exif) {
  char err[512];
  sink_state_t st = {h, w, min_side, 0, 0, 0, 0, 0};
  cg_png_sink_t sink = {on_begin, on_row, &st};
  err[0] = 0;
  cg_jpeg_read_t r = {.max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .min_side = min_side,
                      .exif = exif};
  if (cg_jpeg_read_rows(g_in.path, mem, n, &r, &sink, err, sizeof err) == 0) {
    if (!st.began || st.next != st.dh || r.full_h != h || r.full_w != w)
      fail("read_rows succeeded without delivering every row");
  } else if (!err[0]) {
    fail("read_rows failed without a message");
  }
}

static void run(const uint8_t *data, size_t n) {
  cg_fuzz_file_put(&g_in, data, n);
  char err[512];
  int h = 0, w = 0, orient = -1, th = 0, tw = 0;
  if (cg_jpeg_read_header(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, CG_EXIF_STORED, &h, &w, &orient,
                          err, sizeof err))
    return;
  if (h < 1 || w < 1 || (int64_t)h * w > CG_PNG_DEFAULT_MAX_PIXELS) fail("read_size: bad size");
  if (orient < 0 || orient > 8) fail("read_header: orientation out of 0..8");
  if (cg_jpeg_read_header(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, CG_EXIF_APPLY, &th, &tw, NULL,
                          err, sizeof err) ||
      (orient >= 5 ? th != w || tw != h : th != h || tw != w))
    fail("read_header: the turned size is not the stored one, turned");
  (void)cg_jpeg_exif_orientation(data, n); /* any bytes as an APP1 segment's */
  rows(NULL, 0, h, w, 0, CG_EXIF_STORED);
  rows(NULL, 0, h, w, FIT, CG_EXIF_STORED);
  rows(NULL, 0, th, tw, FIT, CG_EXIF_APPLY); /* turned (a no-op without an orientation) */
  rows(data, n, h, w, 0, CG_EXIF_APPLY); /* from memory, as a shard record: never turned */
  uint8_t *rgb = NULL;
  int rh = 0, rw = 0;
  if (cg_jpeg_read_rgb(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, &rgb, &rh, &rw, err, sizeof err) == 0 &&
      (rh != h || rw != w))
    fail("whole read: bad size");
  free(rgb);
  uint8_t out_rgb[FIT * FIT * 3], out_mask[FIT * FIT];
  int fh = 0, fw = 0;
  if (cg_fit_png(g_in.path, NULL, CG_PNG_DEFAULT_MAX_PIXELS, FIT, 0, 0, out_rgb, out_mask, &fh, &fw,
                 err, sizeof err) == 0 && (fh != h || fw != w))
    fail("fit: another size");
  /* the file as its own binary mask (a JPEG mask): fitted values 0/1 only */
  if (cg_fit_png(g_in.path, g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, FIT, 0, 0, out_rgb, out_mask,
                 NULL, NULL, err, sizeof err) == 0)
    for (int i = 0; i < FIT * FIT; i++)
      if (out_mask[i] > 1) fail("a JPEG mask: a value other than 0/1");
  /* a zoom-out training crop (a window past the file, padded): every output row made, the
   * padding's mask value only where the image is the padding's gray, 0/1 elsewhere */
  const cg_crop_t win = {1.7, 0.2, 0.9, 7};
  const cg_fit_opts_t zo = {.size = FIT, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .win = &win};
  if (cg_fit_pair(g_in.path, g_in.path, &zo, out_rgb, out_mask, NULL, NULL, err, sizeof err) == 0)
    for (int i = 0; i < FIT * FIT; i++)
      if (out_mask[i] > 1 &&
          (out_mask[i] != 7 || out_rgb[3 * i] != CG_CROP_PAD_RGB ||
           out_rgb[3 * i + 1] != CG_CROP_PAD_RGB || out_rgb[3 * i + 2] != CG_CROP_PAD_RGB))
        fail("a zoom-out window: padding not where the image is padded");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cg_fuzz_file_open(&g_in, "image.jpg");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  run(data, n);
  return 0;
}
