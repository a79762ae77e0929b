/* bench_makepngs.c: `cogpu-bench make-pngs` — writes samples of the built-in synthetic dataset
 * as a PNG directory (DIR/images/NAME.png, DIR/masks/NAME.png), the input of the end-to-end
 * benchmarks on decoded PNG data (and a handy example of the layout --data DIR expects).
 * Files are written in parallel by the ranks' OpenMP threads; names are sample indices. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "data.h"
#include "log.h"
#include "png_io.h"

int cg_bench_makepngs(int argc, char **argv, cg_comm_t *c) {
  const char *out = NULL;
  int count = 512, size = 256;
  uint64_t seed = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: cogpu-bench make-pngs --out DIR [--count N] [--image-size N] [--seed N]\n"
             "  writes N synthetic samples as DIR/images/%%06d.png (RGB) and DIR/masks/%%06d.png\n");
      return 0;
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--image-size") && i + 1 < argc) size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "cogpu-bench make-pngs: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (!out || count < 1 || size < 1) {
    fprintf(stderr, "cogpu-bench make-pngs: --out DIR is required (and --count, --image-size >= 1)\n");
    return 2;
  }
  if (c->rank != 0) return 0;
  char d1[1100], d2[1100];
  snprintf(d1, sizeof d1, "%s/images", out);
  snprintf(d2, sizeof d2, "%s/masks", out);
  if ((mkdir(out, 0755) && errno != EEXIST) || (mkdir(d1, 0755) && errno != EEXIST) ||
      (mkdir(d2, 0755) && errno != EEXIST)) {
    fprintf(stderr, "cogpu-bench make-pngs: cannot create %s: %s\n", out, strerror(errno));
    return 2;
  }
  int bad = 0;
  double t0 = cg_now();
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
  for (int i = 0; i < count; i++) {
    size_t px = (size_t)size * size;
    uint8_t *rgb = malloc(px * 3), *mask = malloc(px);
    char p1[1200], p2[1200], err[512];
    if (!rgb || !mask) {
      bad++;
    } else {
      cg_synth_sample(seed, i, size, size, rgb, mask);
      for (size_t k = 0; k < px; k++) mask[k] = mask[k] ? 255 : 0; /* a viewable mask */
      snprintf(p1, sizeof p1, "%s/%06d.png", d1, i);
      snprintf(p2, sizeof p2, "%s/%06d.png", d2, i);
      if (cg_png_write(p1, rgb, size, size, CG_PNG_RGB8, err, sizeof err) ||
          cg_png_write(p2, mask, size, size, CG_PNG_GRAY8, err, sizeof err)) {
        fprintf(stderr, "cogpu-bench make-pngs: %s\n", err);
        bad++;
      }
    }
    free(rgb);
    free(mask);
  }
  printf("wrote %d image/mask pairs of %dx%d to %s in %.1f s%s\n", count - bad, size, size, out,
         cg_now() - t0, bad ? " (with errors)" : "");
  return bad ? 1 : 0;
}
