/* fuzz_image.h: the body of fuzz_gif.c and fuzz_tiff.c, the readers of the formats that only
 * come from a data set's files (gif_io.c, tiff_io.c): every way the loader, the start-up check
 * and `predict` read one, through the format's own functions and through image_io.c.
 *
 *   - the header alone (READ_SIZE, as CG_PNG_AS_RGB, _MASK and _LABEL: the start-up check);
 *   - row by row (READ_ROWS) as an image, a binary mask and class ids, with a sink that checks
 *     the contract of png_io.h: begin once with the header's size, rows 0..h-1 in order, every
 *     byte of a row readable (ASan sees an over-read), all rows delivered on success, masks 0/1;
 *   - whole (cg_image_read_rgb, predict) and fitted (cg_fit_png, the loader), the file as its
 *     own mask too.
 * A read that fails must say why. Formats without checksums run as given. */
#ifndef CG_FUZZ_IMAGE_H
#define CG_FUZZ_IMAGE_H

#include <stdlib.h>
#include <string.h>

#include "fit.h"       // cg_fit_png
#include "fuzz_util.h" // cg_fuzz_*: memfd inputs
#include "image_io.h"  // cg_image_read_rgb

#define FIT 16 /* the size images are fitted to */
#define LIMIT (1 << 22) /* pixels: a bomb over it is refused from the header, quickly */

static cg_fuzz_file_t g_in;

typedef struct {
  int h, w, ch, as;
  int began, next;
  unsigned sum;
} sink_state_t;

static void fail(const char *what) {
  fprintf(stderr, "%s: %s\n", FUZZ_NAME, what);
  abort();
}

static int on_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why, (void)whylen;
  sink_state_t *s = ctx;
  if (s->began++) fail("sink begin called twice");
  if (h != s->h || w != s->w) fail("begin: another size than the header's");
  return 0;
}

static int on_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)why, (void)whylen;
  sink_state_t *s = ctx;
  if (!s->began || y != s->next++ || y >= s->h || !px) fail("sink row out of order");
  for (size_t i = 0; i < (size_t)s->w * s->ch; i++) {
    s->sum += px[i];
    if (s->as == CG_PNG_AS_MASK && px[i] > 1) fail("a mask row holds a value other than 0/1");
  }
  return 0;
}

static void rows(cg_png_as_t as, int h, int w) {
  char err[512] = "";
  sink_state_t st = {h, w, as == CG_PNG_AS_RGB ? 3 : 1, (int)as, 0, 0, 0};
  cg_png_sink_t sink = {on_begin, on_row, &st};
  if (READ_ROWS(g_in.path, LIMIT, as, &sink, err, sizeof err) == 0) {
    if (!st.began || st.next != h) fail("read_rows succeeded without delivering every row");
  } else if (!err[0]) {
    fail("read_rows failed without a message");
  }
}

static void run(const uint8_t *data, size_t n) {
  cg_fuzz_file_put(&g_in, data, n);
  char err[512];
  int h = 0, w = 0;
  for (int as = CG_PNG_AS_RGB; as <= CG_PNG_AS_LABEL; as++) {
    err[0] = 0;
    if (READ_SIZE(g_in.path, LIMIT, (cg_png_as_t)as, &h, &w, err, sizeof err)) {
      if (!err[0]) fail("read_size failed without a message");
      continue;
    }
    if (h < 1 || w < 1 || (int64_t)h * w > LIMIT) fail("read_size: a size outside the limit");
    rows((cg_png_as_t)as, h, w);
  }
  uint8_t *rgb = NULL;
  int rh = 0, rw = 0;
  if (cg_image_read_rgb(g_in.path, LIMIT, CG_EXIF_STORED, &rgb, &rh, &rw, err, sizeof err) == 0 &&
      (rh < 1 || rw < 1 || (int64_t)rh * rw > LIMIT))
    fail("whole read: bad size");
  free(rgb);
  uint8_t out_rgb[FIT * FIT * 3], out_mask[FIT * FIT];
  (void)cg_fit_png(g_in.path, NULL, LIMIT, FIT, 0, 0, out_rgb, out_mask, NULL, NULL, err,
                   sizeof err);
  if (cg_fit_png(g_in.path, g_in.path, LIMIT, FIT, 0, 0, out_rgb, out_mask, NULL, NULL, err,
                 sizeof err) == 0)
    for (int i = 0; i < FIT * FIT; i++)
      if (out_mask[i] > 1) fail("a fitted mask: a value other than 0/1");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  cg_fuzz_file_open(&g_in, FUZZ_FILE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  run(data, n);
  return 0;
}

#endif
