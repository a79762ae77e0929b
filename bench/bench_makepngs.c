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
#include "jpeg_io.h"
#include "png_io.h"

typedef struct {
  const char *out;
  int count, size;
  uint64_t seed;
  const char *format; /* png | jpeg: how images are written (masks are always PNG) */
  int quality;        /* JPEG quality */
  int nclass;         /* 1: binary masks 0/255; K >= 2: class ids (cg_synth_sample_k) */
  int ignore;         /* the ignore label of K >= 2 masks; -2: 255 (-1: no ignore band) */
  int palette;        /* K >= 2: masks as palette PNGs (VOC colours) instead of gray ids */
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    {"out", CG_OPT_PTR, F(out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR",
     "the directory to write (required)"},
    CG_OPT_ROW_NUM(INT, "count", F(count), 1, 1e9, 0, "N", "samples to write"),
    CG_OPT_ROW_NUM(INT, "image-size", F(size), 1, 8192, 0, "N", "images are N x N"),
    CG_OPT_ROW_NUM(U64, "seed", F(seed), 0, 1.8e19, 0, "N", "seed of the synthetic dataset"),
    CG_OPT_ROW_TEXT(PTR, "format", F(format), "png|jpeg", 0, "F",
        "images as NAME.png, or NAME.jpg at --quality (masks are PNG either way)"),
    CG_OPT_ROW_NUM(INT, "quality", F(quality), 1, 100, 0, "Q", "JPEG quality for --format jpeg"),
    CG_OPT_ROW_NUM(INT, "num-classes", F(nclass), 1, 255, 0, "K",
        "1: binary masks (0/255); K >= 2: 8-bit gray masks of class ids, class = shape kind "
        "(train --num-classes K), with an ignore band around some shapes"),
    {"ignore-index", CG_OPT_INT, F(ignore), -1, 255, CG_OPT_NODEF, NULL, 0, "I",
     "K >= 2: the label of the ignore bands (default 255; -1: no bands); must be >= K"},
    CG_OPT_ROW_FLAG("mask-palette", F(palette), 0,
        "K >= 2: write masks as palette PNGs (indices = class ids, VOC colours) instead of gray"),
};
static const opts_t g_defaults = {NULL, 512, 256, 1, "png", 90, 1, -2, 0};

/* The PASCAL VOC colour map: class c's colour from the bits of c. */

static int makepngs_check(void *arg, char *err, size_t errlen) {
  opts_t *o = arg;
  if (!o->out) {
    snprintf(err, errlen, "--out: the directory to write is required");
    return -1;
  }
  if (o->ignore == -2) o->ignore = o->nclass > 1 ? 255 : -1;
  if (o->ignore >= 0 && o->ignore < o->nclass) {
    snprintf(err, errlen, "--ignore-index: %d is a class id (--num-classes %d)", o->ignore,
             o->nclass);
    return -1;
  }
  if (o->ignore >= 0 && o->nclass == 1) {
    snprintf(err, errlen, "--ignore-index: needs --num-classes >= 2");
    return -1;
  }
  if (o->palette && o->nclass == 1) {
    snprintf(err, errlen, "--mask-palette: needs --num-classes >= 2");
    return -1;
  }
  return 0;
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
  uint8_t pal[768];
  cg_png_voc_palette(pal);
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
  for (int i = 0; i < count; i++) {
    size_t px = (size_t)size * size;
    uint8_t *rgb = malloc(px * 3), *mask = malloc(px);
    char p1[1200], p2[1200], err[512];
    if (!rgb || !mask) {
      bad++;
    } else {
      cg_synth_sample_k(seed, i, size, size, o->nclass, o->ignore, rgb, mask);
      if (o->nclass == 1)
        for (size_t k = 0; k < px; k++) mask[k] = mask[k] ? 255 : 0; /* a viewable mask */
      const int jpeg = !strcmp(o->format, "jpeg");
      snprintf(p1, sizeof p1, "%s/%06d.%s", d1, i, jpeg ? "jpg" : "png");
      snprintf(p2, sizeof p2, "%s/%06d.png", d2, i);
      if ((jpeg ? cg_jpeg_write(p1, rgb, size, size, o->quality, err, sizeof err)
                : cg_png_write(p1, rgb, size, size, CG_PNG_RGB8, err, sizeof err)) ||
          (o->palette ? cg_png_write_indexed(p2, mask, size, size, pal, 256, err, sizeof err)
                      : cg_png_write(p2, mask, size, size, CG_PNG_GRAY8, err, sizeof err))) {
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
    .summary = "write synthetic samples as an image directory (PNG or JPEG images, PNG masks)",
    .about = "  writes --count synthetic samples to --out DIR: DIR/images/%06d.png (RGB; %06d.jpg\n"
             "  with --format jpeg) and DIR/masks/%06d.png, the layout train --data DIR reads",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .check = makepngs_check,
    .run = makepngs_run,
};
