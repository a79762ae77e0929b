/* resize_tool.c: an image scaled as predict --resize scales it (up to an aspect of 64:1, where
 * cg_fit_whole_size squeezes the longer side as --val-mode whole does and predict does not), for
 * tests/test_predict_resize.sh and test_val_whole.sh.
 *
 *   cg_resize_tool IMAGE SIDE OUT.png [MASK OUTMASK.png [K]]
 *
 * reads IMAGE (PNG, JPEG, GIF, TIFF or BMP, by content), scales it so that its shorter side is
 * SIDE (cg_fit_whole_size, cg_fit_pair: the bytes predict's network sees) and writes OUT.png
 * (RGB8); with MASK, its mask scaled the same way (nearest, as training and --val-mode whole read
 * it) to OUTMASK.png: binary (> 0 is foreground) as 0/255, or with K >= 2 class ids (and the
 * ignore label 255) as they are; prints "H W" of the result. */
#include <stdio.h>
#include <stdlib.h>

#include "fit.h"
#include "image_io.h"
#include "png_io.h"

int main(int argc, char **argv) {
  if (argc != 4 && argc != 6 && argc != 7) {
    fprintf(stderr, "usage: cg_resize_tool IMAGE SIDE OUT.png [MASK OUTMASK.png [K]]\n");
    return 2;
  }
  const int side = atoi(argv[2]);
  char err[1024];
  int h, w, oh, ow;
  if (side < 1 ||
      cg_image_read_size(argv[1], CG_PNG_DEFAULT_MAX_PIXELS, CG_EXIF_STORED, &h, &w, NULL, err,
                         sizeof err)) {
    fprintf(stderr, "cg_resize_tool: %s\n", side < 1 ? "bad SIDE" : err);
    return 1;
  }
  cg_fit_whole_size(h, w, side, &oh, &ow);
  unsigned char *px = malloc((size_t)oh * ow * 3), *m = malloc((size_t)oh * ow);
  const int k = argc == 7 ? atoi(argv[6]) : 1;
  const cg_fit_opts_t o = {.size = side, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .out_h = oh,
                           .out_w = ow, .nclass = k, .ignore = k > 1 ? 255 : -1};
  const char *mask = argc >= 6 ? argv[4] : NULL;
  if (!px || !m || cg_fit_pair(argv[1], mask, &o, px, m, NULL, NULL, err, sizeof err) ||
      cg_png_write(argv[3], px, oh, ow, CG_PNG_RGB8, err, sizeof err)) {
    fprintf(stderr, "cg_resize_tool: %s\n", err);
    return 1;
  }
  for (size_t i = 0; mask && k == 1 && i < (size_t)oh * ow; i++) m[i] = m[i] ? 255 : 0;
  if (mask && cg_png_write(argv[5], m, oh, ow, CG_PNG_GRAY8, err, sizeof err)) {
    fprintf(stderr, "cg_resize_tool: %s\n", err);
    return 1;
  }
  printf("%d %d\n", oh, ow);
  free(px);
  free(m);
  return 0;
}
