/* rotate_tool.c: --rotate's rotation and draws, for tests/rotate_check.py.
 *
 *   cg_rotate_tool IN.raw H W OUT.raw ANGLE PAD_RGB PAD_MASK
 *   cg_rotate_tool draw SEED EPOCH N D P
 *
 * The first reads H x W RGB8 followed by an H x W mask from IN.raw, rotates both by ANGLE
 * degrees (cg_augment_rotate_apply) and writes them to OUT.raw in the same layout. The second
 * prints the angles cg_augment_rotate_draw gives samples 0..N-1 of EPOCH, one a line (%.17g). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"

static int draw(char **argv) {
  const uint64_t seed = strtoull(argv[2], NULL, 10);
  const long long epoch = atoll(argv[3]), n = atoll(argv[4]);
  const double d = atof(argv[5]), p = atof(argv[6]);
  for (long long i = 0; i < n; i++)
    printf("%.17g\n", cg_augment_rotate_draw(seed, epoch, i, d, p));
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && !strcmp(argv[1], "draw")) return draw(argv);
  if (argc != 8) {
    fprintf(stderr, "usage: cg_rotate_tool IN.raw H W OUT.raw ANGLE PAD_RGB PAD_MASK\n"
                    "       cg_rotate_tool draw SEED EPOCH N D P\n");
    return 2;
  }
  const int h = atoi(argv[2]), w = atoi(argv[3]);
  if (h < 1 || w < 1) return 2;
  const size_t n = (size_t)h * w * 4;
  unsigned char *px = malloc(n), *tmp = malloc(n);
  FILE *f = fopen(argv[1], "rb");
  if (!px || !tmp || !f || fread(px, 1, n, f) != n) return 1;
  fclose(f);
  cg_augment_rotate_apply(atof(argv[5]), h, w, px, px + (size_t)h * w * 3,
                          (uint8_t)atoi(argv[6]), (uint8_t)atoi(argv[7]), tmp);
  f = fopen(argv[4], "wb");
  if (!f || fwrite(px, 1, n, f) != n || fclose(f)) return 1;
  free(px);
  free(tmp);
  return 0;
}
