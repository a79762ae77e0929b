/* jitter_tool.c: one --color-jitter draw applied to a raw image, for tests/jitter_check.py.
 *
 *   cg_jitter_tool IN.raw H W OUT.raw SEED EPOCH INDEX B:C:S:H
 *
 * reads H x W RGB8 from IN.raw, draws the jitter of sample INDEX in EPOCH (cg_augment_jitter_draw),
 * applies it (cg_augment_jitter_apply), writes OUT.raw and prints the draw on one line:
 * "order O0 O1 O2 O3 on N0 N1 N2 N3 factors F0 F1 F2 F3" (factors exact, %.9g). */
#include <stdio.h>
#include <stdlib.h>

#include "augment.h"

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: cg_jitter_tool IN.raw H W OUT.raw SEED EPOCH INDEX B:C:S:H\n");
    return 2;
  }
  const int h = atoi(argv[2]), w = atoi(argv[3]);
  cg_jitter_t j;
  if (h < 1 || w < 1 || sscanf(argv[8], "%lf:%lf:%lf:%lf", &j.b, &j.c, &j.s, &j.h) != 4) return 2;
  const size_t n = (size_t)h * w * 3;
  unsigned char *px = malloc(n);
  FILE *f = fopen(argv[1], "rb");
  if (!px || !f || fread(px, 1, n, f) != n) return 1;
  fclose(f);
  const cg_jitter_draw_t d = cg_augment_jitter_draw(strtoull(argv[5], NULL, 10),
                                                    atoll(argv[6]), atoll(argv[7]), &j);
  cg_augment_jitter_apply(&d, h, w, px);
  f = fopen(argv[4], "wb");
  if (!f || fwrite(px, 1, n, f) != n || fclose(f)) return 1;
  printf("order %d %d %d %d on %d %d %d %d factors %.9g %.9g %.9g %.9g\n", d.order[0],
         d.order[1], d.order[2], d.order[3], d.on[0], d.on[1], d.on[2], d.on[3], d.factor[0],
         d.factor[1], d.factor[2], d.factor[3]);
  free(px);
  return 0;
}
