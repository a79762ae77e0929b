/* bench_makepngs.c: `cogpu-bench make-pngs` — writes samples of the built-in synthetic dataset
 * as a PNG directory (DIR/images/NAME.png, DIR/masks/NAME.png), the input of the end-to-end
 * benchmarks on decoded PNG data (and a handy example of the layout --data DIR expects).
 * Files are written in parallel by the ranks' OpenMP threads; names are sample indices. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "synth.h"
#include "log.h"
#include "png_io.h"

typedef struct {
  const char *out;
  int count, size;
  uint64_t seed;
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_TEXT(PTR, "out", F(out), NULL, 0, "DIR", "the directory to write (required)"),
    CG_OPT_ROW_NUM(INT, "count", F(count), 1, 1e9, 0, "N", "samples to write"),
    CG_OPT_ROW_NUM(INT, "image-size", F(size), 1, 8192, 0, "N", "images are N x N"),
    CG_OPT_ROW_NUM(U64, "seed", F(seed), 0, 1.8e19, 0, "N", "seed of the synthetic dataset"),
};
static const opts_t g_defaults = {NULL, 512, 256, 1};

static int makepngs_check(void *arg, char *err, size_t errlen) {
  if (((opts_t *)arg)->out) return 0;
  snprintf(err, errlen, "--out: the directory to write is required");
  return -1;
}

static int makepngs_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  const char *out = o->out;
  const int count = o->count, size = o->size;
  const uint64_t seed = o->seed;
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

const cg_bench_t cg_bench_makepngs = {
    .name = "make-pngs",
    .summary = "write synthetic samples as a PNG directory (input for the PNG benchmarks)",
    .about = "  writes --count synthetic samples to --out DIR: DIR/images/%06d.png (RGB) and\n"
             "  DIR/masks/%06d.png, the layout train --data DIR reads",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .check = makepngs_check,
    .run = makepngs_run,
};
