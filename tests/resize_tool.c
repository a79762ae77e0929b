/* resize_tool.c: an image scaled as predict --resize scales it, for tests/test_predict_resize.sh.
 *
 *   cg_resize_tool IMAGE SIDE OUT.png
 *
 * reads IMAGE (PNG, JPEG, GIF or TIFF, by content), scales it so that its shorter side is SIDE
 * (cg_fit_whole_size, cg_fit_pair: the bytes predict's network sees) and writes OUT.png (RGB8);
 * prints "H W" of the result. */
#include <stdio.h>
#include <stdlib.h>

#include "fit.h"
#include "image_io.h"
#include "png_io.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: cg_resize_tool IMAGE SIDE OUT.png\n");
    return 2;
  }
  const int side = atoi(argv[2]);
  char err[1024];
  int h, w, oh, ow;
  if (side < 1 || cg_image_read_size(argv[1], CG_PNG_DEFAULT_MAX_PIXELS, &h, &w, err, sizeof err)) {
    fprintf(stderr, "cg_resize_tool: %s\n", side < 1 ? "bad SIDE" : err);
    return 1;
  }
  cg_fit_whole_size(h, w, side, &oh, &ow);
  unsigned char *px = malloc((size_t)oh * ow * 3);
  const cg_fit_opts_t o = {.size = side, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .out_h = oh,
                         .out_w = ow};
  if (!px || cg_fit_pair(argv[1], NULL, &o, px, NULL, NULL, NULL, err, sizeof err) ||
      cg_png_write(argv[3], px, oh, ow, CG_PNG_RGB8, err, sizeof err)) {
    fprintf(stderr, "cg_resize_tool: %s\n", err);
    return 1;
  }
  printf("%d %d\n", oh, ow);
  free(px);
  return 0;
}
