/* test_tiler.c: whole images by overlapping tiles (tiler.h), against a direct computation.
 *
 * A stand-in backend gives as each pixel's logits the first K channels of its own input (the
 * normalised R, G of cg_pack_input, which depend on that pixel alone), so every tile covering a
 * pixel agrees on it and the blend must give it back: at the network's view's size, exactly the
 * pixel's value up to float rounding; scaled to another size, the bilinear interpolation of
 * F.interpolate(mode="bilinear", align_corners=False) of those values, computed here in double.
 * One run of cg_tiler_run goes over images of many shapes (smaller than a tile, one row high,
 * not a multiple of the stride, scaled up and down, K = 1 and 2 alike within a run's K) with
 * batches that span images; every output row must come exactly once, in order. With the
 * test-time flip the mirror's logits, mirrored back, must be the tile's own (a column off
 * would mix two pixels' values). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feat.h" /* CG_NFEAT */
#include "log.h"
#include "testutil.h"
#include "tiler.h"

/* The stand-in backend: the last uploaded batch's input. */
struct cg_backend {
  const float *x;
  int n, px, c, k;
};

static int fake_upload(cg_backend_t *b, int slot, const cg_batch_t *batch) {
  (void)slot;
  b->x = batch->x;
  b->n = batch->n;
  b->px = batch->h * batch->w;
  b->c = batch->c;
  return 0;
}
static int fake_eval(cg_backend_t *b, int slot) {
  (void)b;
  (void)slot;
  return 0;
}
static int fake_fetch(cg_backend_t *b, cg_step_out_t *out) {
  (void)b;
  memset(out, 0, sizeof *out);
  return 0;
}
static int fake_logits(cg_backend_t *b, float *out) {
  for (size_t i = 0; i < (size_t)b->n * b->px; i++)
    for (int c = 0; c < b->k; c++) out[i * b->k + c] = b->x[i * b->c + c];
  return 0;
}

/* One test image: its network view (ih x iw RGB), its output size, and the rows received. */
typedef struct {
  int ih, iw, h, w, k;
  uint8_t *rgb;
  float *got;    /* h*w*k */
  int rows;      /* rows received so far (each must be the next) */
  int bad_order;
} img_t;

typedef struct {
  img_t *img;
  int n, next, k, tile, ended;
  double overlap;
} feed_t;

static void on_row(void *ctx, int y, const float *l) {
  img_t *m = ctx;
  if (y != m->rows) m->bad_order = 1;
  m->rows++;
  memcpy(m->got + (size_t)y * m->w * m->k, l, sizeof(float) * (size_t)m->w * m->k);
}

static cg_tiler_t *next_img(void *ctx) {
  feed_t *f = ctx;
  if (f->next >= f->n) return NULL;
  img_t *m = &f->img[f->next++];
  uint8_t *rgb = malloc((size_t)m->ih * m->iw * 3);
  memcpy(rgb, m->rgb, (size_t)m->ih * m->iw * 3);
  return cg_tiler_open(rgb, m->ih, m->iw, m->h, m->w, f->k, f->tile, f->tile, f->overlap,
                       on_row, m);
}

static void end_img(void *ctx, cg_tiler_t *t, int complete) {
  feed_t *f = ctx;
  CG_TEST_CHECK(complete, "an image ended incomplete");
  f->ended++;
  cg_tiler_close(t);
}

/* F.interpolate's source coordinate of output i (n outputs over m inputs), in double. */
static void src_coord(int i, int n, int m, int *i0, int *i1, double *l) {
  double s = (i + 0.5) * m / n - 0.5;
  if (s < 0) s = 0;
  *i0 = (int)s;
  if (*i0 > m - 1) *i0 = m - 1;
  *i1 = *i0 + (*i0 < m - 1);
  *l = s - *i0;
}

/* The worst |got - reference| of image m, channel values of its view scaled to h x w. */
static double check_img(const img_t *m, int k) {
  double worst = 0;
  for (int y = 0; y < m->h; y++)
    for (int x = 0; x < m->w; x++)
      for (int c = 0; c < k; c++) {
        int y0, y1, x0, x1;
        double ly, lx;
        src_coord(y, m->h, m->ih, &y0, &y1, &ly);
        src_coord(x, m->w, m->iw, &x0, &x1, &lx);
        double v[2][2];
        for (int a = 0; a < 2; a++)
          for (int b = 0; b < 2; b++) {
            const uint8_t px = m->rgb[((size_t)(a ? y1 : y0) * m->iw + (b ? x1 : x0)) * 3 + c];
            v[a][b] = ((double)px / 255.0 - 0.5) / 0.25;
          }
        const double want = (1 - ly) * ((1 - lx) * v[0][0] + lx * v[0][1]) +
                            ly * ((1 - lx) * v[1][0] + lx * v[1][1]);
        const double d = fabs(m->got[((size_t)y * m->w + x) * k + c] - want);
        worst = d > worst ? d : worst;
      }
  return worst;
}

static void run(int k, int tile, double overlap, int batch, int flip) {
  static const int shapes[][4] = {{8, 8, 8, 8},    {13, 29, 13, 29}, {5, 7, 5, 7},
                                  {16, 40, 37, 91}, {24, 12, 10, 5},  {1, 9, 3, 20},
                                  {9, 1, 9, 1},    {30, 17, 61, 34}};
  const int n = (int)(sizeof shapes / sizeof shapes[0]);
  img_t img[sizeof shapes / sizeof shapes[0]];
  uint64_t seed = 12345;
  for (int i = 0; i < n; i++) {
    img_t *m = &img[i];
    *m = (img_t){shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], k, NULL, NULL, 0, 0};
    m->rgb = malloc((size_t)m->ih * m->iw * 3);
    for (size_t q = 0; q < (size_t)m->ih * m->iw * 3; q++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      m->rgb[q] = (uint8_t)(seed >> 56);
    }
    m->got = calloc((size_t)m->h * m->w * k, sizeof(float));
  }
  cg_model_t model;
  memset(&model, 0, sizeof model);
  model.height = model.width = tile;
  model.in_c = 3 + CG_NFEAT;
  model.nclass = k;
  struct cg_backend be = {.k = k};
  cg_backend_ops_t ops;
  memset(&ops, 0, sizeof ops);
  ops.name = "stand-in";
  ops.upload = fake_upload;
  ops.eval_step = fake_eval;
  ops.fetch = fake_fetch;
  ops.get_logits = fake_logits;
  feed_t f = {img, n, 0, k, tile, 0, overlap};
  const cg_tiler_feed_t feed = {next_img, end_img, &f, NULL, flip, NULL};
  cg_tiler_run(&ops, &be, &model, batch, &feed);
  double worst = 0;
  int rows_ok = f.ended == n;
  for (int i = 0; i < n; i++) {
    rows_ok &= img[i].rows == img[i].h && !img[i].bad_order;
    const double d = check_img(&img[i], k);
    worst = d > worst ? d : worst;
    free(img[i].rgb);
    free(img[i].got);
  }
  CG_TEST_CHECK(rows_ok, "K %d tile %d overlap %.2f batch %d flip %d: rows missing or out of "
                "order", k, tile, overlap, batch, flip);
  CG_TEST_CHECK(worst <= 2e-5, "K %d tile %d overlap %.2f batch %d flip %d: worst |difference| "
                "%.3g", k, tile, overlap, batch, flip, worst);
  printf("%s tiler K %d, tiles %dx%d overlap %.2f, %d a step%s: %d images, worst |difference| "
         "%.2g\n", rows_ok && worst <= 2e-5 ? "PASS" : "FAIL", k, tile, tile, overlap, batch,
         flip ? ", flipped too" : "", n, worst);
}

int main(void) {
  CG_TEST_CHECK(cg_tiler_origins(8, 8, 0.5, NULL) == 1, "one tile");
  int org[8];
  CG_TEST_CHECK(cg_tiler_origins(20, 8, 0.5, org) == 4 && org[0] == 0 && org[3] == 12,
                "20 over tiles of 8 at stride 4: origins 0..12, got %d", org[3]);
  CG_TEST_CHECK(cg_tiler_origins(5, 8, 0.5, org) == 1 && org[0] == -1, "centred: %d", org[0]);
  run(1, 8, 0.5, 3, 0);
  run(2, 8, 0.5, 5, 0);
  run(2, 6, 0.0, 1, 0);
  run(1, 4, 0.75, 16, 0);
  /* the mirror's logits, mirrored back, are the tile's own: a wrong column would show */
  run(2, 8, 0.5, 5, 1);
  run(1, 7, 0.5, 2, 1);
  return cg_test_done("test_tiler");
}
