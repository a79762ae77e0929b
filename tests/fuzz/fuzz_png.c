/* fuzz_png.c: the PNG decoder (src/data/png_io.c), every way the data loader and `predict` read an
 * image: the header alone (cg_png_read_size, at open), row by row into a sink as RGB and as a
 * mask (cg_png_read_rows), whole (cg_png_read_rgb / cg_png_read_mask), then the fitting to the
 * network's size (cg_fit_square) that source_png.c applies to a decoded pair.
 *
 * The sink checks the contract of png_io.h: begin once with the size read_size reported, rows
 * 0..h-1 in order, every byte of a row readable (ASan sees an over-read), mask bytes 0/1, and
 * all rows delivered when the read succeeds. Each input runs as given and with every chunk
 * CRC recomputed (cg_fuzz_fix_png): libpng rejects a critical chunk with a bad CRC, so without
 * the fixer a mutated IHDR or PLTE would never be parsed. */
#include <stdlib.h>
#include <string.h>

#include "fit.h"       // cg_fit_square
#include "fuzz_util.h" // cg_fuzz_*: memfd inputs, CRC fixers
#include "png_io.h"    // cg_png_read_*

static cg_fuzz_file_t g_in;

#define FIT 16 /* the size images are fitted to */

typedef struct {
  cg_png_as_t as;
  int h, w;       /* from read_size */
  int began, next;
  unsigned sum;   /* touches every byte of every row */
} sink_state_t;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_png: %s\n", what);
  abort();
}

static int on_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  sink_state_t *s = ctx;
  if (s->began++) fail("sink begin called twice");
  if (h != s->h || w != s->w) fail("sink begin: another size than cg_png_read_size's");
  return 0;
}

static int on_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  sink_state_t *s = ctx;
  if (!s->began || y != s->next++ || y >= s->h || !px) fail("sink row out of order");
  const size_t n = (size_t)s->w * (s->as == CG_PNG_AS_RGB ? 3 : 1);
  for (size_t i = 0; i < n; i++) {
    if (s->as == CG_PNG_AS_MASK && px[i] > 1) fail("mask byte not 0/1");
    s->sum += px[i];
  }
  return 0;
}

static void rows(int h, int w, cg_png_as_t as) {
  char err[512];
  sink_state_t st = {as, h, w, 0, 0, 0};
  cg_png_sink_t sink = {on_begin, on_row, &st};
  err[0] = 0;
  if (cg_png_read_rows(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, as, &sink, err, sizeof err) == 0) {
    if (!st.began || st.next != h) fail("read_rows succeeded without delivering every row");
  } else if (!err[0]) {
    fail("read_rows failed without a message");
  }
}

static void run(const uint8_t *data, size_t n) {
  cg_fuzz_file_put(&g_in, data, n);
  char err[512];
  int h = 0, w = 0;
  if (cg_png_read_size(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, &h, &w, err, sizeof err)) return;
  if (h < 1 || w < 1 || (int64_t)h * w > CG_PNG_DEFAULT_MAX_PIXELS) fail("read_size: bad size");
  rows(h, w, CG_PNG_AS_RGB);
  rows(h, w, CG_PNG_AS_MASK);
  rows(h, w, CG_PNG_AS_LABEL); /* class ids (issue 13): stored values, no palette expansion */
  uint8_t *ids = NULL, pal[768];
  int ih = 0, iw = 0, npal = 0;
  if (!cg_png_read_labels(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, &ids, &ih, &iw, err, sizeof err) &&
      (ih != h || iw != w))
    fail("read_labels: bad size");
  free(ids);
  if (!cg_png_read_palette(g_in.path, CG_PNG_DEFAULT_MAX_PIXELS, pal, &npal, err, sizeof err) &&
      (npal < 0 || npal > 256))
    fail("read_palette: bad count");
  uint8_t *rgb = NULL, *mask = NULL;
  int rh = 0, rw = 0, mh = 0, mw = 0;
  const int64_t max = CG_PNG_DEFAULT_MAX_PIXELS;
  int rok = cg_png_read_rgb(g_in.path, max, &rgb, &rh, &rw, err, sizeof err) == 0;
  int mok = cg_png_read_mask(g_in.path, max, &mask, &mh, &mw, err, sizeof err) == 0;
  if ((rok && (rh != h || rw != w)) || (mok && (mh != h || mw != w))) fail("whole read: bad size");
  if (mok)
    for (size_t i = 0; i < (size_t)h * w; i++)
      if (mask[i] > 1) fail("mask byte not 0/1");
  if (rok && mok) { /* as source_png.c does with a decoded pair */
    uint8_t out_rgb[FIT * FIT * 3], out_mask[FIT * FIT];
    cg_fit_square(rgb, mask, h, w, FIT, out_rgb, out_mask);
    for (int i = 0; i < FIT * FIT; i++)
      if (out_mask[i] > 1) fail("fitted mask byte not 0/1");
  }
  free(rgb);
  free(mask);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cg_fuzz_file_open(&g_in, "image.png");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  cg_fuzz_both(data, n, cg_fuzz_fix_png, run);
  return 0;
}
