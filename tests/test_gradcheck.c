/* test_gradcheck.c: the fp32 CPU kernels against the double reference (ref_layers.c).
 *
 * For each layer: (a) the float forward matches the double forward; (b) the float backward
 * (dx, dw, db) matches central finite differences of L = sum(r .* y), r random, taken on the
 * double reference. Views are channel slices of wider buffers where the model has them, and
 * the channels around a slice must come back untouched. Shapes are chosen so that the kernels
 * split rows into several chunks, some spanning two images, and dW into several partials, and
 * so that a layer of one chunk splits each of its GEMMs (y, dW, dx) into blocks of columns.
 * The loss is checked the same way (weights of 0, grad_scale), then the whole UNet: the
 * gradient assembled from the float kernels along the graph of model.c (need_dx, accum_dx)
 * against finite differences of cg_ref_net_loss. Finally every kernel must give bitwise the
 * same results with 1, 2, 3 and (if more) all the machine's threads (a layer of one chunk
 * too). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_layers.h"
#include "log.h"
#include "model.h"
#include "ref_layers.h"
#include "rng.h"
#include "testutil.h"

/* Central differences in double. Layers are piecewise linear or smooth; a step this small
 * does not cross a ReLU kink or a max-pool switch for our random data. */
#define FD_H 1e-6

/* ---- float tensors as channel slices of wider buffers, and their double twins ------------- */

typedef struct {
  float *buf;
  size_t len;
  int off;
  cg_view_t v;
} ftensor_t;

static ftensor_t ft_make(int n, int h, int w, int c, int ld, int off, float lo, float hi,
                         uint64_t seed) {
  CG_ASSERT(off + c <= ld);
  ftensor_t t;
  t.len = (size_t)n * h * w * ld;
  t.buf = cg_malloc(t.len * sizeof(float), "test tensor");
  cg_test_fill(t.buf, t.len, lo, hi, seed);
  t.off = off;
  t.v = (cg_view_t){t.buf + off, n, h, w, c, ld};
  return t;
}

static size_t vsize(const cg_view_t *v) { return (size_t)v->n * v->h * v->w * v->c; }

static float *ft_elem(const ftensor_t *t, size_t dense) {
  return t->v.p + dense / t->v.c * t->v.ld + dense % t->v.c;
}

/* Dense (ld = c) float copy of the view; caller frees. */
static float *ft_dense(const ftensor_t *t) {
  size_t n = vsize(&t->v);
  float *d = cg_malloc(n * sizeof(float), "dense copy");
  for (size_t i = 0; i < n; i++) d[i] = *ft_elem(t, i);
  return d;
}

static float *copy_f(const float *p, size_t n) {
  float *d = cg_malloc(n * sizeof(float), "copy");
  memcpy(d, p, n * sizeof(float));
  return d;
}

static double *to_double(const float *p, size_t n) {
  double *d = cg_malloc(n * sizeof(double), "double copy");
  for (size_t i = 0; i < n; i++) d[i] = p[i];
  return d;
}

static float *to_float(const double *p, size_t n) {
  float *d = cg_malloc(n * sizeof(float), "float copy");
  for (size_t i = 0; i < n; i++) d[i] = (float)p[i];
  return d;
}

/* The double twin of a float tensor: same buffer layout, same view. */
typedef struct {
  double *buf;
  cg_ref_view_t v;
} dtensor_t;

static dtensor_t dt_of(const ftensor_t *t) {
  dtensor_t d;
  d.buf = to_double(t->buf, t->len);
  d.v = (cg_ref_view_t){d.buf + t->off, t->v.n, t->v.h, t->v.w, t->v.c, t->v.ld};
  return d;
}

static cg_ref_view_t dense_dview(double *p, int n, int h, int w, int c) {
  return (cg_ref_view_t){p, n, h, w, c, c};
}

/* Every element of t's buffer outside its slice equals before[]. */
static void check_guard(const char *name, const ftensor_t *t, const float *before) {
  size_t bad = 0;
  for (size_t e = 0; e < t->len; e++) {
    int ch = (int)(e % t->v.ld);
    if (ch >= t->off && ch < t->off + t->v.c) continue;
    if (memcmp(&t->buf[e], &before[e], sizeof(float)) != 0) bad++;
  }
  CG_TEST_CHECK(bad == 0, "%s: %zu elements outside the channel slice changed", name, bad);
}

static double max_abs_d(const double *p, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(p[i]));
  return m;
}

/* Gradient comparison: rtol 1e-4, atol scaled by the largest reference element. */
static void check_grad(const char *name, const float *got, const double *ref, size_t n) {
  float *rf = to_float(ref, n);
  cg_test_close(name, got, rf, n, 2e-5 * fmax(1.0, max_abs_d(ref, n)), 1e-4);
  free(rf);
}

static void check_fwd(const char *name, const float *got, const double *ref, size_t n) {
  float *rf = to_float(ref, n);
  cg_test_close(name, got, rf, n, 1e-5 * fmax(1.0, max_abs_d(ref, n)), 1e-5);
  free(rf);
}

/* ---- the objective L = sum(r .* f(x; w, b)) on the double reference ----------------------- */

typedef enum { K_CONV, K_UPCONV, K_POOL } kind_t;

typedef struct {
  kind_t kind;
  int k, relu;
  cg_ref_view_t x;   /* input view (into a double buffer of the float input's layout) */
  double *wt, *b;
  cg_ref_view_t y;   /* dense output scratch */
  const double *r;   /* dense, like y */
} obj_t;

static double obj_eval(const obj_t *o) {
  switch (o->kind) {
    case K_CONV: cg_ref_conv_fwd(&o->x, o->wt, o->b, o->k, o->relu, &o->y); break;
    case K_UPCONV: cg_ref_upconv_fwd(&o->x, o->wt, o->b, &o->y); break;
    case K_POOL: cg_ref_maxpool_fwd(&o->x, &o->y); break;
  }
  double s = 0;
  size_t n = (size_t)o->y.n * o->y.h * o->y.w * o->y.c;
  for (size_t i = 0; i < n; i++) s += o->r[i] * o->y.p[i];
  return s;
}

static double fd_at(const obj_t *o, double *e) {
  double s = *e;
  *e = s + FD_H;
  double lp = obj_eval(o);
  *e = s - FD_H;
  double lm = obj_eval(o);
  *e = s;
  return (lp - lm) / (2 * FD_H);
}

/* d L / d x over the view, dense; caller frees. */
static double *fd_view(const obj_t *o, const cg_ref_view_t *v) {
  size_t n = (size_t)v->n * v->h * v->w * v->c;
  double *g = cg_malloc(n * sizeof(double), "fd grad");
  for (size_t i = 0; i < n; i++) g[i] = fd_at(o, v->p + i / v->c * v->ld + i % v->c);
  return g;
}

static double *fd_flat(const obj_t *o, double *a, size_t n) {
  double *g = cg_malloc(n * sizeof(double), "fd grad");
  for (size_t i = 0; i < n; i++) g[i] = fd_at(o, a + i);
  return g;
}

/* ---- one layer -------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  kind_t kind;
  int k, relu;
  int n, h, w, cin, cout;
  int x_ld, x_off, y_ld, y_off, dy_ld, dy_off, dx_ld, dx_off;
  int want_dx, accum;
} layer_case_t;

static void test_layer(const layer_case_t *lc, uint64_t seed, cg_cpu_ws_t *ws) {
  char nm[160];
  const int n = lc->n, h = lc->h, w = lc->w, cin = lc->cin;
  const int oh = lc->kind == K_UPCONV ? 2 * h : lc->kind == K_POOL ? h / 2 : h;
  const int ow = lc->kind == K_UPCONV ? 2 * w : lc->kind == K_POOL ? w / 2 : w;
  const int cout = lc->kind == K_POOL ? cin : lc->cout;
  size_t wlen = 0, blen = 0;
  if (lc->kind == K_CONV) wlen = (size_t)cout * lc->k * lc->k * cin, blen = cout;
  if (lc->kind == K_UPCONV) wlen = (size_t)cin * 4 * cout, blen = cout;

  ftensor_t x = ft_make(n, h, w, cin, lc->x_ld, lc->x_off, -1, 1, seed + 1);
  ftensor_t y = ft_make(n, oh, ow, cout, lc->y_ld, lc->y_off, -9, 9, seed + 2);
  float *wt = cg_malloc((wlen + 1) * sizeof(float), "w"), *b = cg_malloc((blen + 1) * sizeof(float), "b");
  cg_test_fill(wt, wlen, -0.5f, 0.5f, seed + 3);
  cg_test_fill(b, blen, -0.3f, 0.3f, seed + 4);
  float *y_before = copy_f(y.buf, y.len);

  /* forward */
  switch (lc->kind) {
    case K_CONV: cg_cpu_conv_fwd(&x.v, wt, b, lc->k, lc->relu, &y.v, ws); break;
    case K_UPCONV: cg_cpu_upconv_fwd(&x.v, wt, b, &y.v, ws); break;
    case K_POOL: cg_cpu_maxpool_fwd(&x.v, &y.v); break;
  }
  dtensor_t xd = dt_of(&x);
  double *wd = to_double(wt, wlen), *bd = to_double(b, blen);
  size_t ny = vsize(&y.v), nx = vsize(&x.v);
  double *yref = cg_malloc(ny * sizeof(double), "yref");
  double *r = cg_malloc(ny * sizeof(double), "r");
  float *rf = cg_malloc(ny * sizeof(float), "r");
  cg_test_fill(rf, ny, -1, 1, seed + 5);
  for (size_t i = 0; i < ny; i++) r[i] = rf[i];
  obj_t o = {lc->kind, lc->k, lc->relu, xd.v, wd, bd, dense_dview(yref, n, oh, ow, cout), r};
  obj_eval(&o);
  float *yg = ft_dense(&y);
  snprintf(nm, sizeof nm, "%s fwd", lc->name);
  check_fwd(nm, yg, yref, ny);
  snprintf(nm, sizeof nm, "%s fwd guard", lc->name);
  check_guard(nm, &y, y_before);

  /* backward of L = sum(r .* y) */
  ftensor_t dy = ft_make(n, oh, ow, cout, lc->dy_ld, lc->dy_off, -9, 9, seed + 6);
  for (size_t i = 0; i < ny; i++) *ft_elem(&dy, i) = rf[i];
  float *dy_before = copy_f(dy.buf, dy.len);
  ftensor_t dx = ft_make(n, h, w, cin, lc->dx_ld, lc->dx_off, -1, 1, seed + 7);
  float *dx_before = copy_f(dx.buf, dx.len);
  float *dw = cg_malloc((wlen + 1) * sizeof(float), "dw"), *db = cg_malloc((blen + 1) * sizeof(float), "db");
  for (size_t i = 0; i < wlen; i++) dw[i] = NAN; /* must be overwritten */
  for (size_t i = 0; i < blen; i++) db[i] = NAN;
  const cg_view_t *pdx = lc->want_dx ? &dx.v : NULL;
  switch (lc->kind) {
    case K_CONV:
      /* y only feeds the ReLU mask: linear layers pass NULL */
      cg_cpu_conv_bwd(&x.v, wt, lc->relu ? &y.v : NULL, &dy.v, lc->k, lc->relu, pdx, lc->accum,
                      dw, db, ws);
      break;
    case K_UPCONV: cg_cpu_upconv_bwd(&x.v, wt, &dy.v, pdx, lc->accum, dw, db, ws); break;
    case K_POOL: cg_cpu_maxpool_bwd(&x.v, &y.v, &dy.v, &dx.v, lc->accum); break;
  }
  snprintf(nm, sizeof nm, "%s dy guard", lc->name);
  check_guard(nm, &dy, dy_before);
  if (lc->want_dx) {
    double *gx = fd_view(&o, &o.x);
    if (lc->accum) /* dx held known values: the gradient is added to them */
      for (size_t i = 0; i < nx; i++) gx[i] += dx_before[i / cin * lc->dx_ld + lc->dx_off + i % cin];
    float *got = ft_dense(&dx);
    snprintf(nm, sizeof nm, "%s dx%s", lc->name, lc->accum ? " (accum)" : "");
    check_grad(nm, got, gx, nx);
    snprintf(nm, sizeof nm, "%s dx guard", lc->name);
    check_guard(nm, &dx, dx_before);
    free(got);
    free(gx);
  } else {
    CG_TEST_CHECK(memcmp(dx.buf, dx_before, dx.len * sizeof(float)) == 0,
                  "%s: dx == NULL but a buffer changed", lc->name);
  }
  if (wlen) {
    double *gw = fd_flat(&o, wd, wlen), *gb = fd_flat(&o, bd, blen);
    snprintf(nm, sizeof nm, "%s dw", lc->name);
    check_grad(nm, dw, gw, wlen);
    snprintf(nm, sizeof nm, "%s db", lc->name);
    check_grad(nm, db, gb, blen);
    free(gw);
    free(gb);
  }
  free(x.buf), free(y.buf), free(dy.buf), free(dx.buf), free(xd.buf);
  free(wt), free(b), free(dw), free(db), free(wd), free(bd);
  free(y_before), free(dy_before), free(dx_before), free(yref), free(r), free(rf), free(yg);
}

static void test_layers(cg_cpu_ws_t *ws) {
  /* Rows are chunked by at least ceil(128 / w) rows: with w = 3 or 2 and n*h rows above that,
   * a layer has several chunks, and chunk borders fall inside images. */
  const layer_case_t cases[] = {
      /* name                      kind     k relu n  h  w cin cout  x ld/off  y ld/off  dy ld/off dx ld/off dx accum */
      {"conv3 relu slices",        K_CONV,  3, 1, 3, 20, 3, 3, 4,    7, 2,     6, 1,     5, 1,     4, 1,     1, 0},
      {"conv3 linear accum",       K_CONV,  3, 0, 3, 20, 3, 3, 4,    3, 0,     4, 0,     4, 0,     3, 0,     1, 1},
      {"conv3 relu no-dx",         K_CONV,  3, 1, 2, 5, 6, 2, 3,     2, 0,     3, 0,     3, 0,     2, 0,     0, 0},
      {"conv3 relu wide",          K_CONV,  3, 1, 1, 6, 7, 6, 5,     12, 6,    5, 0,     5, 0,     12, 6,    1, 1},
      {"conv1 linear slices",      K_CONV,  1, 0, 3, 20, 3, 4, 2,    9, 5,     3, 1,     2, 0,     6, 2,     1, 0},
      {"conv1 relu accum",         K_CONV,  1, 1, 2, 4, 5, 3, 4,     3, 0,     4, 0,     4, 0,     5, 2,     1, 1},
      {"upconv slices",            K_UPCONV,2, 0, 3, 24, 2, 3, 2,    5, 1,     4, 0,     4, 0,     3, 0,     1, 0},
      {"upconv accum",             K_UPCONV,2, 0, 2, 3, 4, 4, 3,     4, 0,     6, 3,     6, 3,     6, 1,     1, 1},
      {"upconv no-dx",             K_UPCONV,2, 0, 2, 3, 3, 2, 2,     2, 0,     2, 0,     2, 0,     2, 0,     0, 0},
      /* Wide rows: the im2col budget, not the balance target, sets the chunk height, so there
       * are more chunks than dW partials and a partial sums several chunks. */
      {"conv3 many chunks no-dx",  K_CONV,  3, 1, 2, 400, 64, 2, 1,  2, 0,     3, 1,     2, 0,     2, 0,     0, 0},
      {"upconv many chunks no-dx", K_UPCONV,2, 0, 2, 800, 64, 1, 2,  3, 1,     2, 0,     2, 0,     2, 0,     0, 0},
      /* One chunk (16 pixels): the team shares it, each GEMM in blocks of at least 128 of its
       * columns: dW's (9 cin or cin), y's (cout), dx's (cin), two or more of them. */
      {"conv3 one chunk dW blocks",  K_CONV, 3, 1, 1, 4, 4, 29, 3,   31, 2,    3, 0,     3, 0,     29, 0,    1, 0},
      {"conv3 one chunk y blocks",   K_CONV, 3, 1, 1, 4, 4, 1, 256,  1, 0,     258, 1,   256, 0,   1, 0,     1, 0},
      {"conv3 one chunk dx blocks",  K_CONV, 3, 0, 1, 4, 4, 256, 1,  256, 0,   1, 0,     2, 1,     257, 1,   1, 1},
      {"conv1 one chunk dW dx blocks", K_CONV, 1, 1, 1, 4, 4, 256, 2, 256, 0,  2, 0,     2, 0,     256, 0,   1, 0},
      {"conv1 one chunk y blocks",   K_CONV, 1, 0, 1, 4, 4, 2, 256,  2, 0,     256, 0,   256, 0,   2, 0,     1, 1},
      {"maxpool skip slice accum", K_POOL,  2, 0, 2, 6, 8, 3, 3,     6, 3,     3, 0,     3, 0,     6, 3,     1, 1},
      {"maxpool overwrite",        K_POOL,  2, 0, 2, 4, 6, 2, 2,     2, 0,     5, 2,     4, 1,     3, 1,     1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_layer(&cases[i], 100 + 10 * i, ws);
}

/* Ties: the gradient goes to the first maximum in scan order (TL, TR, BL, BR). */
static void test_maxpool_ties(void) {
  /* one image 2x2, 4 channels: ties at {all}, {TR, BR}, {BL, BR}, none */
  float x[16] = {1, 0, 0, 1, /* TL */ 1, 2, 0, 2, /* TR */ 1, 0, 3, 3, /* BL */ 1, 2, 3, 4};
  float y[4], dy[4] = {10, 20, 30, 40}, dx[16];
  cg_view_t vx = {x, 1, 2, 2, 4, 4}, vy = {y, 1, 1, 1, 4, 4}, vdy = {dy, 1, 1, 1, 4, 4},
            vdx = {dx, 1, 2, 2, 4, 4};
  cg_cpu_maxpool_fwd(&vx, &vy);
  cg_cpu_maxpool_bwd(&vx, &vy, &vdy, &vdx, 0);
  const float want_y[4] = {1, 2, 3, 4};
  const float want_dx[16] = {10, 0, 0, 0, 0, 20, 0, 0, 0, 0, 30, 0, 0, 0, 0, 40};
  cg_test_close("maxpool ties fwd", y, want_y, 4, 0, 0);
  cg_test_close("maxpool ties bwd (first maximum)", dx, want_dx, 16, 0, 0);
}

/* ---- GEMM ------------------------------------------------------------------------------- */

static void test_gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta,
                           uint64_t seed) {
  int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
  float *a = cg_malloc(na * sizeof(float), "a"), *b = cg_malloc(nb * sizeof(float), "b");
  float *c = cg_malloc(nc * sizeof(float), "c"), *want = cg_malloc(nc * sizeof(float), "want");
  cg_test_fill(a, na, -1, 1, seed);
  cg_test_fill(b, nb, -1, 1, seed + 1);
  cg_test_fill(c, nc, -1, 1, seed + 2);
  if (beta == 0.0f) /* beta = 0 must not read C */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = NAN;
  memcpy(want, c, nc * sizeof(float));
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int p = 0; p < k; p++)
        s += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
             (tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
      double c0 = beta == 0.0f ? 0.0 : (double)beta * c[(size_t)i * ldc + j];
      want[(size_t)i * ldc + j] = (float)(alpha * s + c0);
    }
  cg_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  char nm[96];
  snprintf(nm, sizeof nm, "gemm %c%c %dx%dx%d alpha %g beta %g", ta ? 'T' : 'N', tb ? 'T' : 'N', m,
           n, k, alpha, beta);
  cg_test_close(nm, c, want, nc, 1e-5 * sqrt((double)k), 1e-5); /* padding columns: unchanged */
  free(a), free(b), free(c), free(want);
}

static void test_gemm(void) {
  for (int t = 0; t < 4; t++) {
    test_gemm_case(t >> 1, t & 1, 37, 29, 45, 1.0f, 0.0f, 10 + t);
    test_gemm_case(t >> 1, t & 1, 13, 70, 7, -0.5f, 1.0f, 20 + t);
    test_gemm_case(t >> 1, t & 1, 1, 9, 300, 2.0f, 0.25f, 30 + t);
  }
  /* crosses every cache block of the built-in GEMM and its threaded path */
  test_gemm_case(0, 1, 211, 300, 290, 1.0f, 0.0f, 40);
  test_gemm_case(1, 0, 203, 270, 530, 0.5f, 1.0f, 41);
}

/* ---- loss ------------------------------------------------------------------------------- */

static void test_loss(void) {
  const int n = 4;
  const size_t hw = 37;
  const float weight[4] = {0.5f, 0.0f, 1.25f, 1.0f};
  const double weight_d[4] = {0.5, 0.0, 1.25, 1.0};
  const float scale = 8.0f;
  float z[4 * 37], dz[4 * 37];
  uint8_t mask[4 * 37];
  cg_test_fill(z, n * hw, -4, 4, 7);
  cg_rng_t rg = cg_rng_make(1, CG_RNG_TEST, 8, 0);
  for (size_t i = 0; i < n * hw; i++) mask[i] = cg_rng_below(&rg, 3) == 0; /* ~1/3 positive */
  double ps[4], ps_ref[4];
  double loss = cg_cpu_loss(z, mask, weight, n, hw, scale, NULL, dz, ps);
  double *zd = to_double(z, n * hw);
  double loss_ref = cg_ref_loss(zd, mask, weight_d, n, hw, ps_ref);
  cg_test_close_d("loss value", &loss, &loss_ref, 1, 0, 1e-12);
  cg_test_close_d("loss per_sample", ps, ps_ref, n, 0, 1e-12);
  double loss_nograd = cg_cpu_loss(z, mask, weight, n, hw, scale, NULL, NULL, NULL);
  CG_TEST_CHECK(loss_nograd == loss, "loss without dlogits %.17g != %.17g", loss_nograd, loss);
  /* finite differences of the weighted sum, times grad_scale */
  double *g = cg_malloc(n * hw * sizeof(double), "g");
  for (size_t j = 0; j < n * hw; j++) {
    double s = zd[j];
    zd[j] = s + FD_H;
    double lp = cg_ref_loss(zd, mask, weight_d, n, hw, NULL);
    zd[j] = s - FD_H;
    double lm = cg_ref_loss(zd, mask, weight_d, n, hw, NULL);
    zd[j] = s;
    g[j] = scale * (lp - lm) / (2 * FD_H);
  }
  check_grad("loss dlogits (grad_scale 8, weights incl. 0)", dz, g, n * hw);
  size_t nonzero = 0;
  for (size_t j = hw; j < 2 * hw; j++) nonzero += dz[j] != 0.0f;
  CG_TEST_CHECK(nonzero == 0, "weight-0 sample has %zu non-zero gradients", nonzero);
  free(g);
  free(zd);

  /* Extreme logits stay finite: BCE = (0 + 60 + 60 + 0) / 4, p ~ {1, 1, 0, 0}, y = {1, 0, 1, 0}:
   * Dice = 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4; gradient ~ (p - y) / 4. */
  float ze[4] = {60, 60, -60, -60}, dze[4], we = 1.0f;
  uint8_t me[4] = {1, 0, 1, 0};
  double le = cg_cpu_loss(ze, me, &we, 1, 4, 1.0f, NULL, dze, NULL), le_want = 30.4;
  cg_test_close_d("loss extreme logits value", &le, &le_want, 1, 1e-12, 1e-12);
  const float gwant[4] = {0, 0.25f, -0.25f, 0};
  cg_test_close("loss extreme logits grad", dze, gwant, 4, 1e-7, 1e-6);
  /* A padding sample with garbage logits must neither add to the loss nor get a gradient. */
  float zp[8] = {0.5f, -1, 2, 0, NAN, INFINITY, -INFINITY, NAN}, dzp[8], wp[2] = {1, 0};
  uint8_t mp[8] = {1, 0, 1, 1, 0, 0, 0, 0};
  double lp = cg_cpu_loss(zp, mp, wp, 2, 4, 1.0f, NULL, dzp, NULL);
  double lp_want = cg_cpu_loss(zp, mp, wp, 1, 4, 1.0f, NULL, NULL, NULL);
  CG_TEST_CHECK(lp == lp_want, "padding sample changed the loss: %.17g vs %.17g", lp, lp_want);
  CG_TEST_CHECK(dzp[4] == 0 && dzp[5] == 0 && dzp[6] == 0 && dzp[7] == 0,
                "padding sample got a gradient");
}

/* The K-class loss of cpu_layers.h written out naively in double (softmax by its definition,
 * sums over the valid pixels; K = 1: sigmoid BCE + Dice over them). */
static double g_dw = 1.0; /* the Dice term's weight (--dice-weight) of ref_loss_k and the cases */
static const float *g_cw; /* the class weights (--class-weights, --pos-weight); NULL = none */
static double g_ls;       /* label smoothing (--label-smoothing), K >= 2 */
static double g_fg;       /* the focal loss's gamma (--focal-gamma) */

static double ref_loss_k(const double *z, const uint8_t *y, const double *w, int n, size_t hw,
                         int K, int ignore, double *ps) {
  double total = 0;
  for (int s = 0; s < n; s++) {
    double ce = 0, nv = 0, dice = 0;
    for (int c = 0; c < (K == 1 ? 1 : K); c++) {
      double inter = 0, psum = 0, gsum = 0;
      for (size_t i = 0; i < hw; i++) {
        const int yi = y[(size_t)s * hw + i];
        if (yi == ignore) continue;
        const double *zi = z + ((size_t)s * hw + i) * K;
        double p, t;
        if (K == 1) {
          p = 1.0 / (1.0 + exp(-zi[0]));
          t = yi ? 1.0 : 0.0;
          const double pw = g_cw && yi ? g_cw[0] : 1.0; /* BCEWithLogitsLoss's pos_weight */
          const double fo = pow(1 - (yi ? p : 1 - p), g_fg); /* sigmoid_focal_loss's factor */
          if (c == 0) ce += -pw * fo * (t * log(p) + (1 - t) * log(1 - p)), nv += 1;
        } else {
          double den = 0;
          for (int k = 0; k < K; k++) den += exp(zi[k]);
          p = exp(zi[c]) / den;
          t = yi == c;
          const double wy = g_cw ? g_cw[yi] : 1.0; /* CrossEntropyLoss's weight */
          double u = 0; /* label_smoothing: eps/K sum_k w_k (-log p_k) */
          for (int k = 0; k < K; k++) u += (g_cw ? g_cw[k] : 1.0) * -log(exp(zi[k]) / den);
          const double fo = pow(1 - exp(zi[yi]) / den, g_fg); /* focal: (1 - p_y)^gamma */
          if (c == 0)
            ce += -(1 - g_ls) * wy * fo * log(exp(zi[yi]) / den) + g_ls / K * u, nv += wy;
        }
        inter += p * t;
        psum += p;
        gsum += t;
      }
      dice += (2 * inter + 1) / (psum + gsum + 1);
    }
    const double l = (nv > 0 ? ce / nv : 0) + g_dw * (1 - dice / (K == 1 ? 1 : K));
    if (ps) ps[s] = l;
    if (w[s] != 0) total += w[s] * l;
  }
  return total;
}

/* cg_cpu_loss_k against ref_loss_k and its central differences: K classes, with or without an
 * ignore label (some pixels carry it), weights incl. 0, grad_scale 4. */
static void test_loss_k_case(int K, int ignore, size_t hw, uint64_t seed) {
  const int n = 3;
  const float weight[3] = {0.75f, 0.0f, 1.5f};
  const double weight_d[3] = {0.75, 0.0, 1.5};
  const float scale = 4.0f;
  const size_t nz = (size_t)n * hw * K;
  float *z = cg_malloc(nz * sizeof(float), "z"), *dz = cg_malloc(nz * sizeof(float), "dz");
  uint8_t *mask = cg_malloc((size_t)n * hw, "mask");
  cg_test_fill(z, nz, -3, 3, seed);
  cg_rng_t rg = cg_rng_make(seed, CG_RNG_TEST, 9, 0);
  size_t nign = 0;
  for (size_t i = 0; i < (size_t)n * hw; i++) {
    const int r = (int)cg_rng_below(&rg, 8);
    mask[i] = (uint8_t)(ignore >= 0 && r == 0 ? ignore : (int)cg_rng_below(&rg, K == 1 ? 2 : K));
    nign += mask[i] == ignore;
  }
  CG_TEST_CHECK(ignore < 0 || nign > 0, "no ignore pixel drawn");
  double ps[3], ps_ref[3];
  const cg_loss_opt_t lo = {(float)g_dw, g_cw, (float)g_ls, (float)g_fg, 0.0f, 0};
  const double loss = cg_cpu_loss_k(z, mask, weight, n, hw, K, ignore, scale, &lo, dz, ps);
  double *zd = to_double(z, nz);
  const double loss_ref = ref_loss_k(zd, mask, weight_d, n, hw, K, ignore, ps_ref);
  char nm[96], wt[48];
  snprintf(wt, sizeof wt, "%s%s", g_cw ? " weighted" : "", g_fg > 0 ? " focal" : "");
  snprintf(nm, sizeof nm, "loss K=%d ignore %d%s value", K, ignore, wt);
  cg_test_close_d(nm, &loss, &loss_ref, 1, 0, 1e-11);
  snprintf(nm, sizeof nm, "loss K=%d ignore %d%s per_sample", K, ignore, wt);
  cg_test_close_d(nm, ps, ps_ref, n, 0, 1e-11);
  double *g = cg_malloc(nz * sizeof(double), "g");
  for (size_t j = 0; j < nz; j++) {
    const double s = zd[j];
    zd[j] = s + FD_H;
    const double lp = ref_loss_k(zd, mask, weight_d, n, hw, K, ignore, NULL);
    zd[j] = s - FD_H;
    const double lm = ref_loss_k(zd, mask, weight_d, n, hw, K, ignore, NULL);
    zd[j] = s;
    g[j] = scale * (lp - lm) / (2 * FD_H);
  }
  snprintf(nm, sizeof nm, "loss K=%d ignore %d%s dlogits (fd)", K, ignore, wt);
  check_grad(nm, dz, g, nz);
  size_t bad = 0;
  for (size_t i = 0; i < (size_t)n * hw; i++)
    for (int c = 0; c < K; c++)
      bad += (i / hw == 1 || mask[i] == ignore) && dz[i * K + c] != 0.0f;
  CG_TEST_CHECK(bad == 0, "K=%d: %zu gradients of ignore pixels / weight-0 samples not zero", K,
                bad);
  free(g), free(zd), free(z), free(dz), free(mask);
}

/* The focal loss against torchvision 0.14's sigmoid_focal_loss (float64, alpha=-1,
 * reduction='mean') and, for K classes, PyTorch's autograd of -(1 - p_y)^2 w_y log p_y over the
 * pixels' weight sum, dice_w 0:
 *   zb = [.5, -1.25, 2, -.375, 3.5, -4]; yb = [1, 0, 1, 1, 0, 0]; gamma 2 and 0.5
 *   ce = cross_entropy(z, y, reduction='none', ignore_index=255); pt = exp(-ce)
 *   ((w[y] (1 - pt)^2 ce).sum() / w[y].sum()) with test_loss_weighted's z, y and w
 * Also: gamma 0 is bitwise the loss without (the options' other paths). */
static void test_loss_focal(void) {
  const float zb[6] = {0.5f, -1.25f, 2, -0.375f, 3.5f, -4};
  const uint8_t yb[6] = {1, 0, 1, 1, 0, 0};
  const float one = 1.0f;
  const double bt[2] = {0.6205333402240409, 0.7709151063170467};
  const float bg[2][6] = {{-0.022989499558485733f, 0.005078142622063737f,
                           -0.0008118233658987969f, -0.07752975876006592f,
                           0.18493201879636656f, 2.8917552035896283e-06f},
                          {-0.053772755476015455f, 0.02521675812631781f,
                           -0.010075877801608967f, -0.09951373851701847f,
                           0.16788734032535488f, 0.0006012260041473787f}};
  const float gam[2] = {2.0f, 0.5f};
  for (int k = 0; k < 2; k++) {
    float dz[6];
    const cg_loss_opt_t lo = {0.0f, NULL, 0.0f, gam[k], 0.0f, 0};
    const double l = cg_cpu_loss(zb, yb, &one, 1, 6, 1.0f, &lo, dz, NULL);
    char nm[80];
    snprintf(nm, sizeof nm, "focal binary gamma %g value (torchvision)", (double)gam[k]);
    cg_test_close_d(nm, &l, &bt[k], 1, 0, 1e-12);
    snprintf(nm, sizeof nm, "focal binary gamma %g gradient (torchvision)", (double)gam[k]);
    cg_test_close(nm, dz, bg[k], 6, 1e-9, 1e-6);
  }
  const float z[12] = {0.5f, -1.25f, 2, 1.5f, 0.25f, -0.75f, -2, 1, 0.125f, 0.375f, 0.375f, -3};
  const uint8_t y[4] = {0, 2, 1, 255};
  const float cw[3] = {0.5f, 2, 1.5f};
  float dz[12];
  const cg_loss_opt_t lo = {0.0f, cw, 0.0f, 2.0f, 0.0f, 0};
  const double l = cg_cpu_loss_k(z, y, &one, 1, 4, 3, 255, 1.0f, &lo, dz, NULL);
  const double lt = 0.9928828924235121;
  const float gt[12] = {-0.12162563339432421f, 0.00453990631586833f, 0.11708572707845588f,
                        0.32748099656971114f,  0.0938248763977777f,  -0.42130587296748884f,
                        0.004538620641079785f, -0.042540026006339264f, 0.038001405365259484f,
                        0, 0, 0};
  cg_test_close_d("focal K=3 weighted value (PyTorch)", &l, &lt, 1, 0, 1e-12);
  cg_test_close("focal K=3 weighted gradient (PyTorch)", dz, gt, 12, 1e-9, 1e-6);
  /* gamma 0: bitwise the loss without, binary and K */
  float d0[12], d1[12];
  const cg_loss_opt_t l0 = {1.0f, cw, 0.0f, 0.0f, 0.0f, 0};
  const double a = cg_cpu_loss_k(z, y, &one, 1, 4, 3, 255, 1.0f, &l0, d0, NULL);
  const double b = cg_cpu_loss_k(z, y, &one, 1, 4, 3, 255, 1.0f,
                                 &(cg_loss_opt_t){1.0f, cw, 0.0f, 0.0f, 0.0f, 0}, d1, NULL);
  CG_TEST_CHECK(a == b && !memcmp(d0, d1, sizeof d0), "focal gamma 0 is not bitwise none");
  /* a small gamma where 1 - p_t is near the smallest double: (1 - q)^(gamma - 1) alone would
   * overflow; the gradient is finite (about 0), the loss too */
  const float zx[2] = {-720.0f, 720.0f}, zk[3] = {360.0f, -360.0f, -360.0f};
  const uint8_t yx[2] = {0, 1}, yk[1] = {0};
  float dx[2], dk[3];
  const cg_loss_opt_t lf = {0.0f, NULL, 0.0f, 0.01f, 0.0f, 0};
  const double lx = cg_cpu_loss(zx, yx, &one, 1, 2, 1.0f, &lf, dx, NULL);
  const double lk = cg_cpu_loss_k(zk, yk, &one, 1, 1, 3, -1, 1.0f, &lf, dk, NULL);
  int fin = isfinite(lx) && isfinite(lk);
  for (int i = 0; i < 3; i++) fin = fin && isfinite(dk[i]) && fabsf(dk[i]) < 1e-30f;
  for (int i = 0; i < 2; i++) fin = fin && isfinite(dx[i]) && fabsf(dx[i]) < 1e-30f;
  CG_TEST_CHECK(fin, "focal gamma 0.01 at |z| 720: loss %g / %g, gradients %g %g / %g %g %g", lx,
                lk, dx[0], dx[1], dk[0], dk[1], dk[2]);
  if (fin) printf("PASS focal gamma 0.01 at |z| 720: finite, about 0\n");
}

/* The class weights against PyTorch 1.13 (float64), dice_w 0, one sample:
 *   z = [[.5, -1.25, 2], [1.5, .25, -.75], [-2, 1, .125], [.375, .375, -3]]; y = [0, 2, 1, 255]
 *   CrossEntropyLoss(weight=[.5, 2, 1.5], ignore_index=255)(z, y), .backward()
 *   zb = [.5, -1.25, 2, -.375]; yb = [1, 0, 1, 1]
 *   BCEWithLogitsLoss(pos_weight=tensor([3.]))(zb, yb), .backward()
 * Then: weights all 1 are bitwise none; a sample whose valid pixels all have weight 0 adds no
 * cross-entropy and gets no gradient from it. */
static void test_loss_weighted(void) {
  const float z[12] = {0.5f, -1.25f, 2, 1.5f, 0.25f, -0.75f, -2, 1, 0.125f, 0.375f, 0.375f, -3};
  const uint8_t y[4] = {0, 2, 1, 255};
  const float cw[3] = {0.5f, 2, 1.5f}, one = 1.0f;
  float dz[12];
  const cg_loss_opt_t lw = {0.0f, cw, 0.0f, 0.0f, 0.0f, 0};
  const double l = cg_cpu_loss_k(z, y, &one, 1, 4, 3, 255, 1.0f, &lw, dz, NULL);
  const double lt = 1.3758201097961393;
  const float gt[12] = {-0.10289747723656946f, 0.003840842540804554f, 0.09905663469576491f,
                        0.26941512793164935f,  0.07718872649911933f, -0.3466038544307687f,
                        0.016973067645711375f, -0.15908682310230227f, 0.1421137554565909f,
                        0, 0, 0};
  cg_test_close_d("CrossEntropyLoss(weight=) value vs PyTorch", &l, &lt, 1, 0, 1e-12);
  cg_test_close("CrossEntropyLoss(weight=) grad vs PyTorch", dz, gt, 12, 1e-7, 1e-6);
  const float zb[4] = {0.5f, -1.25f, 2, -0.375f}, pw = 3.0f;
  const uint8_t yb[4] = {1, 0, 1, 1};
  float dzb[4];
  const double lb = cg_cpu_loss(zb, yb, &one, 1, 4, 1.0f, &(cg_loss_opt_t){0, &pw, 0, 0, 0, 0},
                                dzb, NULL);
  const double lbt = 1.1873284648585327;
  const float gbt[4] = {-0.283155501598609f, 0.05567503470632721f, -0.08940219151658824f,
                        -0.4444999499655523f};
  cg_test_close_d("BCEWithLogitsLoss(pos_weight=) value vs PyTorch", &lb, &lbt, 1, 0, 1e-12);
  cg_test_close("BCEWithLogitsLoss(pos_weight=) grad vs PyTorch", dzb, gbt, 4, 1e-7, 1e-6);
  /* CrossEntropyLoss(weight=[.5, 2, 1.5], ignore_index=255, label_smoothing=0.125), and
   * without the weights, on z and y above */
  const double ls[2] = {1.4092863402078972, 1.577577730867981};
  const float gls[2][12] = {{-0.08787611832752143f, -0.016192315263194496f, 0.10406843359071592f,
                             0.26046491782148756f, 0.055283327519964905f, -0.31574824534145246f,
                             0.0110575231604734f, -0.13162487213970633f, 0.12056734897923295f,
                             0, 0, 0},
                            {-0.24661549485307413f, -0.0036466421134100763f, 0.25026213696648425f,
                             0.2255912248281328f, 0.05472331244366164f, -0.2803145372717944f,
                             -0.002573510458414637f, -0.07828010429042373f, 0.0808536147488384f,
                             0, 0, 0}};
  for (int k = 0; k < 2; k++) {
    const cg_loss_opt_t lo = {0.0f, k ? NULL : cw, 0.125f, 0.0f, 0.0f, 0};
    const double lsm = cg_cpu_loss_k(z, y, &one, 1, 4, 3, 255, 1.0f, &lo, dz, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "CrossEntropyLoss(%slabel_smoothing=0.125) value vs PyTorch",
             k ? "" : "weight=, ");
    cg_test_close_d(nm, &lsm, &ls[k], 1, 0, 1e-12);
    snprintf(nm, sizeof nm, "CrossEntropyLoss(%slabel_smoothing=0.125) grad vs PyTorch",
             k ? "" : "weight=, ");
    cg_test_close(nm, dz, gls[k], 12, 1e-7, 1e-6);
  }
  /* weights of 1 are bitwise no weights: K = 4 with ignore, binary with and without */
  const float ones[4] = {1, 1, 1, 1}, w3[3] = {0.5f, 0, 1};
  const cg_loss_opt_t lo1 = {1.0f, ones, 0.0f, 0.0f, 0.0f, 0};
  float a[3 * 17 * 4], b[3 * 17 * 4], za[3 * 17 * 4];
  uint8_t m[3 * 17];
  cg_test_fill(za, 3 * 17 * 4, -3, 3, 25);
  for (int i = 0; i < 3 * 17; i++) m[i] = (uint8_t)(i % 7 == 0 ? 255 : i % 4);
  const int Ks[3] = {4, 1, 1}, igs[3] = {255, 255, -1};
  for (int t = 0; t < 3; t++) {
    uint8_t mt[3 * 17];
    for (int i = 0; i < 3 * 17; i++) mt[i] = Ks[t] == 1 && m[i] != 255 ? m[i] & 1 : m[i];
    const double la = cg_cpu_loss_k(za, mt, w3, 3, 17, Ks[t], igs[t], 2.0f, NULL, a, NULL);
    const double lo = cg_cpu_loss_k(za, mt, w3, 3, 17, Ks[t], igs[t], 2.0f, &lo1, b, NULL);
    CG_TEST_CHECK(la == lo && !memcmp(a, b, sizeof(float) * 3 * 17 * Ks[t]),
                  "K=%d ignore %d: class weights of 1 are not bitwise none", Ks[t], igs[t]);
  }
  /* K = 3, weights {0, 1, 1}, every pixel class 0: CE 0, no gradient, Dice alone */
  const float c0[3] = {0, 1, 1};
  uint8_t y0[17];
  memset(y0, 0, sizeof y0);
  const cg_loss_opt_t lc0 = {0, c0, 0, 0, 0.0f, 0};
  const double l0 = cg_cpu_loss_k(za, y0, &one, 1, 17, 3, 255, 1.0f, &lc0, a, NULL);
  int nz = 0;
  for (int i = 0; i < 17 * 3; i++) nz += a[i] != 0.0f;
  CG_TEST_CHECK(l0 == 0.0 && nz == 0, "weight-0 pixels only: loss %g, %d gradients not 0", l0,
                nz);
}

/* OHEM's thresholds (cg_cpu_ohem_thr) against a sort of the keys: K = 1, 4, 19, with an ignore
 * label, logits on a coarse grid (ties among the keys) or not, min_kept over its range. */
static void test_ohem_thresholds(void) {
  enum { HW = 97 };
  static float zr[HW * 19], keys[HW];
  static uint8_t yr[HW];
  static uint32_t scratch[HW];
  int bad = 0, cases = 0;
  for (int t = 0; t < 60; t++) {
    const int K = t % 3 == 0 ? 1 : t % 3 == 1 ? 4 : 19, ign = t % 2 ? 255 : -1;
    cg_test_fill(zr, (size_t)HW * K, -4, 4, 100 + (uint64_t)t);
    if (t % 4 < 2)
      for (int i = 0; i < HW * K; i++) zr[i] = roundf(zr[i]); /* ties */
    int nv = 0;
    for (int j = 0; j < HW; j++) {
      yr[j] = (uint8_t)((j * 7 + t) % (K == 1 ? 2 : K));
      if (ign >= 0 && j % 5 == t % 5) yr[j] = 255;
      if (yr[j] == ign) continue;
      keys[nv++] = cg_cpu_ohem_key(zr + (size_t)j * K, K, yr[j]);
    }
    for (int a = 1; a < nv; a++) /* insertion sort */
      for (int b = a; b > 0 && keys[b - 1] > keys[b]; b--) {
        const float x = keys[b];
        keys[b] = keys[b - 1];
        keys[b - 1] = x;
      }
    const int mks[4] = {0, t % nv, nv - 1, nv + t % 3};
    for (int q = 0; q < 4; q++) {
      const float th = q == 1 ? 0.5f : 1e-6f;
      const cg_loss_opt_t lo = {0, NULL, 0, 0, th, mks[q]};
      const float got = cg_cpu_ohem_thr(zr, yr, HW, K, ign, &lo, scratch);
      const float want = mks[q] >= nv ? INFINITY : fmaxf(th, keys[mks[q]]);
      cases++;
      if (memcmp(&got, &want, sizeof got)) {
        if (bad++ < 5)
          printf("FAIL ohem threshold K=%d ignore %d min-kept %d: %.9g, sorted %.9g\n", K, ign,
                 mks[q], (double)got, (double)want);
      }
    }
  }
  CG_TEST_CHECK(bad == 0, "ohem thresholds: %d of %d differ from a sort", bad, cases);
  if (!bad) printf("PASS ohem thresholds = a sort of the keys (%d cases, ties included)\n", cases);
}

/* OHEM (--ohem-thresh) against PyTorch 1.13 (float64), one sample, HRNet's OhemCrossEntropy per
 * sample: keys = p_t.float(); v = keys[valid].sort().values[min_kept]; kept = keys < max(thresh,
 * v) (all valid when min_kept >= their count); loss = sum_kept w[y] CE / sum_kept w[y] + dw Dice
 * over every valid pixel; .backward() (the selection a constant):
 *   K = 3: z = [[.5, -1.25, 2], [1.5, .25, -.75], [-2, 1, .125], [.375, .375, -3], [3, -1, -1],
 *   [.25, 2.5, -.5], [-1.5, -.25, .75], [1, 1, 1.25], [2, -2, 0], [-.5, .5, 4]],
 *   y = [0, 2, 1, 255, 0, 1, 2, 0, 1, 2], w = [.5, 2, 1.5] or none;
 *   binary: zb = [.5, -1.25, 2, -.375, 3.5, -4, .125, 1.75], yb = [1, 0, 1, 1, 0, 0, 1, 0],
 *   keys sigmoid(z) (foreground) or 1 - sigmoid(z), BCE with pos_weight, Dice over every pixel.
 * The cases take each side of max(thresh, v): thresh (6 of 9 kept), v (the 4 hardest, the 5
 * hardest), and min_kept >= the valid pixels (all). Then: the thresholds against a sort of the
 * keys over random logits (ties included); thresh 1 keeps every pixel, K >= 2 bitwise the loss
 * without; samples are mined each on its own. */
static void test_loss_ohem(void) {
  const float z[30] = {0.5f, -1.25f, 2,     1.5f,  0.25f,  -0.75f, -2,    1,     0.125f, 0.375f,
                       0.375f, -3,   3,     -1,    -1,     0.25f,  2.5f,  -0.5f, -1.5f,  -0.25f,
                       0.75f, 1,     1,     1.25f, 2,      -2,     0,     -0.5f, 0.5f,   4};
  const uint8_t y[10] = {0, 2, 1, 255, 0, 1, 2, 0, 1, 2};
  const float cw[3] = {0.5f, 2, 1.5f}, one = 1.0f;
  const struct {
    float thresh;
    int mk, w;
    float dw;
    double l;
    float g[30];
  } kc[4] = {
      {0.7f, 2, 1, 0.5f, 2.07324877934566,
       {-0.0583501328673721f, 0.002271521695388208f, 0.05607861117198389f, 0.13645155282501018f,
        0.04000133871297565f, -0.17645289153798582f, 0.009577813897216902f,
        -0.09012636655072022f, 0.08054855265350333f, 0, 0, 0, -0.0016661188658887523f,
        0.0008609817129621582f, 0.0008051371529265937f, 0.0037601246188906693f,
        -0.005590036009435037f, 0.0018299113905443747f, 0.015473605163576286f,
        0.055108855340731615f, -0.07058246050430793f, -0.053778052957903236f,
        0.024086360130528978f, 0.02969169282737425f, 0.21723251294208887f,
        -0.24677805037658265f, 0.029545537434493757f, 0.0004498234747188967f,
        0.0013505749575678442f, -0.0018003984322867452f}},
      {0.05f, 4, 1, 0.5f, 3.228794099046379,
       {-0.09836581845937133f, 0.003765182683478868f, 0.09460063577589246f, 0.24122410257620713f,
        0.0700191767959665f, -0.3112432793721736f, 0.001091280074361216f, -0.010582954999569088f,
        0.00949167492520787f, 0, 0, 0, -0.0016661188658887523f, 0.0008609817129621582f,
        0.0008051371529265937f, 0.0037601246188906693f, -0.005590036009435037f,
        0.0018299113905443747f, 0.0020597445919151294f, 0.008289881562059023f,
        -0.010349626153974155f, -0.08758686964580609f, 0.038888654553737224f,
        0.048698215092068856f, 0.38577954975823725f, -0.43813544815893635f,
        0.05235589840069899f, 0.0004498234747188967f, 0.0013505749575678442f,
        -0.0018003984322867452f}},
      {0.7f, 1, 0, 0.0f, 1.7359611201516045,
       {-0.13719663631542595f, 0.005121123387739405f, 0.13207551292768654f, 0.11974005685851082f,
        0.034306100666275256f, -0.15404615752478606f, 0.005657689215237125f,
        -0.05302894103410075f, 0.04737125181886363f, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0.011923431619254361f, 0.0416168655810423f, -0.05354029720029668f,
        -0.11591594292995266f, 0.050750723736714f, 0.06516521919323864f, 0.14446888869955576f,
        -0.16402062667058886f, 0.01955173797103306f, 0, 0, 0}},
      {0.6f, 9, 1, 1.0f, 1.6829473300735884,
       {-0.04810194757703123f, 0.0019824816969067132f, 0.04611946588012451f, 0.0932930203622541f,
        0.02854352642653842f, -0.12183654678879252f, 0.007840249363959557f,
        -0.07419485103323893f, 0.06635460166927937f, 0, 0, 0, -0.004804606232948181f,
        0.002458147676509652f, 0.002346458556438523f, 0.022726919828051223f,
        -0.0335698651745339f, 0.010842945346482707f, 0.01306206289827103f,
        0.04779241230989978f, -0.06085447520817082f, -0.04959813445083013f,
        0.022797358392700952f, 0.026800776058129177f, 0.14552724848506615f,
        -0.16551484741198758f, 0.019987598926921396f, 0.0022331877727763405f,
        0.006326089702725175f, -0.008559277475501536f}},
  };
  for (int k = 0; k < 4; k++) {
    float dz[30];
    const cg_loss_opt_t lo = {kc[k].dw, kc[k].w ? cw : NULL, 0, 0, kc[k].thresh, kc[k].mk};
    const double l = cg_cpu_loss_k(z, y, &one, 1, 10, 3, 255, 1.0f, &lo, dz, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "ohem K=3 thresh %g min-kept %d value (PyTorch)",
             (double)kc[k].thresh, kc[k].mk);
    cg_test_close_d(nm, &l, &kc[k].l, 1, 0, 1e-12);
    snprintf(nm, sizeof nm, "ohem K=3 thresh %g min-kept %d gradient (PyTorch)",
             (double)kc[k].thresh, kc[k].mk);
    cg_test_close(nm, dz, kc[k].g, 30, 1e-9, 1e-6);
  }
  const float zb[8] = {0.5f, -1.25f, 2, -0.375f, 3.5f, -4, 0.125f, 1.75f};
  const uint8_t yb[8] = {1, 0, 1, 1, 0, 0, 1, 0};
  const float pw = 3.0f;
  const struct {
    float thresh;
    int mk, w;
    float dw;
    double l;
    float g[8];
  } bc[2] = {
      {0.7f, 2, 1, 0.5f, 2.481378412978696,
       {-0.2435963459186424f, 0.005636458775796419f, -0.007627303674251956f,
        -0.3731375028772008f, 0.1950640117422643f, 0.0005751147450620978f, -0.2993649738623302f,
        0.1744974495822236f}},
      {0.3f, 5, 0, 0.0f, 1.4889547704695647,
       {-0.07550813375962909f, 0, 0, -0.11853331999081394f, 0.19413755384972875f, 0,
        -0.09375812532524874f, 0.17039056039366213f}},
  };
  for (int k = 0; k < 2; k++) {
    float dz[8];
    const cg_loss_opt_t lo = {bc[k].dw, bc[k].w ? &pw : NULL, 0, 0, bc[k].thresh, bc[k].mk};
    const double l = cg_cpu_loss_k(zb, yb, &one, 1, 8, 1, -1, 1.0f, &lo, dz, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "ohem binary thresh %g min-kept %d value (PyTorch)",
             (double)bc[k].thresh, bc[k].mk);
    cg_test_close_d(nm, &l, &bc[k].l, 1, 0, 1e-12);
    snprintf(nm, sizeof nm, "ohem binary thresh %g min-kept %d gradient (PyTorch)",
             (double)bc[k].thresh, bc[k].mk);
    cg_test_close(nm, dz, bc[k].g, 8, 1e-9, 1e-6);
  }
  test_ohem_thresholds();
  /* thresh 1, min_kept 0: every pixel kept (no key reaches 1 here): K >= 2 bitwise none */
  float d0[30], d1[30];
  const cg_loss_opt_t ln = {0.5f, cw, 0, 0, 0, 0}, l1 = {0.5f, cw, 0, 0, 1.0f, 0};
  const double a = cg_cpu_loss_k(z, y, &one, 1, 10, 3, 255, 2.0f, &ln, d0, NULL);
  const double b = cg_cpu_loss_k(z, y, &one, 1, 10, 3, 255, 2.0f, &l1, d1, NULL);
  CG_TEST_CHECK(a == b && !memcmp(d0, d1, sizeof d0), "ohem thresh 1 is not bitwise none (K=3)");
  /* two samples: each mined on its own, weighted */
  float z2[60], dz2[60], dza[30], dzb[30];
  uint8_t y2[20];
  memcpy(z2, z, sizeof z);
  memcpy(y2, y, sizeof y);
  for (int i = 0; i < 30; i++) z2[30 + i] = -0.5f * z[29 - i];
  for (int j = 0; j < 10; j++) y2[10 + j] = y[9 - j];
  const float w2[2] = {0.25f, 0.75f};
  const cg_loss_opt_t lo2 = {0.5f, cw, 0, 0, 0.7f, 3};
  double ps[2];
  const double l2 = cg_cpu_loss_k(z2, y2, w2, 2, 10, 3, 255, 1.0f, &lo2, dz2, ps);
  const double la = cg_cpu_loss_k(z2, y2, &w2[0], 1, 10, 3, 255, 1.0f, &lo2, dza, NULL);
  const double lb = cg_cpu_loss_k(z2 + 30, y2 + 10, &w2[1], 1, 10, 3, 255, 1.0f, &lo2, dzb, NULL);
  CG_TEST_CHECK(l2 == la + lb && !memcmp(dz2, dza, sizeof dza) &&
                    !memcmp(dz2 + 30, dzb, sizeof dzb),
                "ohem: two samples are not each mined on its own");
}

static void test_loss_k(void) {
  for (int ign = 0; ign < 2; ign++) {
    test_loss_k_case(2, ign ? 255 : -1, 29, 11);
    test_loss_k_case(4, ign ? 255 : -1, 23, 12);
    test_loss_k_case(19, ign ? 19 : -1, 11, 13);
    test_loss_k_case(1, ign ? 255 : -1, 31, 14); /* binary over the non-ignore pixels */
  }
  /* --dice-weight: the Dice term weighted (0: cross-entropy / BCE alone), the same checks */
  const double dws[2] = {0.0, 0.5};
  for (int k = 0; k < 2; k++) {
    g_dw = dws[k];
    test_loss_k_case(4, 255, 23, 16);
    test_loss_k_case(2, -1, 29, 17);
    test_loss_k_case(1, 255, 31, 18);
    test_loss_k_case(1, -1, 31, 19); /* cg_cpu_loss */
  }
  g_dw = 1.0;
  /* --class-weights (one weight 0) and --pos-weight, with and without Dice */
  const float cw4[4] = {0.5f, 2.0f, 0.0f, 1.25f}, cw2[2] = {3.0f, 0.25f}, pw[1] = {3.5f};
  for (int k = 0; k < 2; k++) {
    g_dw = k ? 0.0 : 1.0;
    g_cw = cw4;
    test_loss_k_case(4, 255, 23, 20);
    test_loss_k_case(4, -1, 23, 21);
    g_cw = cw2;
    test_loss_k_case(2, 255, 29, 22);
    g_cw = pw;
    test_loss_k_case(1, 255, 31, 23);
    test_loss_k_case(1, -1, 31, 24); /* cg_cpu_loss */
  }
  /* --label-smoothing, with and without class weights, with Dice (the first) and without */
  g_ls = 0.125, g_cw = cw4, g_dw = 1.0;
  test_loss_k_case(4, 255, 23, 25);
  g_ls = 0.25, g_cw = NULL, g_dw = 0.0;
  test_loss_k_case(2, -1, 29, 26);
  test_loss_k_case(19, 19, 11, 27);
  g_ls = 0;
  /* --focal-gamma: 2 and a fractional 0.5 ((1 - q)^(gamma - 1) unbounded near q = 1), with class
   * weights or --pos-weight, ignore labels, with Dice and without */
  g_fg = 2.0, g_cw = cw4, g_dw = 1.0;
  test_loss_k_case(4, 255, 23, 28);
  g_cw = pw;
  test_loss_k_case(1, 255, 31, 29);
  test_loss_k_case(1, -1, 31, 30); /* cg_cpu_loss */
  g_fg = 0.5, g_cw = NULL, g_dw = 0.0;
  test_loss_k_case(19, 19, 11, 31);
  test_loss_k_case(2, -1, 29, 32);
  test_loss_k_case(1, -1, 31, 33);
  g_fg = 0;
  g_cw = NULL, g_dw = 1.0;
  test_loss_weighted();
  test_loss_focal();
  test_loss_ohem();
  /* K = 1 without ignore is exactly cg_cpu_loss, bit for bit */
  float z[64], d1[64], d2[64], w = 1.0f;
  uint8_t m[64];
  cg_test_fill(z, 64, -5, 5, 15);
  for (int i = 0; i < 64; i++) m[i] = (uint8_t)(i % 3 == 0);
  const double a = cg_cpu_loss(z, m, &w, 1, 64, 2.0f, NULL, d1, NULL);
  const double b = cg_cpu_loss_k(z, m, &w, 1, 64, 1, -1, 2.0f, NULL, d2, NULL);
  CG_TEST_CHECK(a == b && !memcmp(d1, d2, sizeof d1),
                "K=1 without ignore differs from cg_cpu_loss");
  /* extreme logits stay finite */
  float ze[8] = {80, -80, 0, 0, -80, 80, 0, 0}, dze[8];
  uint8_t me[2] = {0, 0};
  const double le = cg_cpu_loss_k(ze, me, &w, 1, 2, 4, 255, 1.0f, NULL, dze, NULL);
  size_t fin = isfinite(le);
  for (int i = 0; i < 8; i++) fin += isfinite(dze[i]);
  CG_TEST_CHECK(fin == 9, "K=4 extreme logits: loss %g not finite everywhere", le);
}

/* ---- the whole network ------------------------------------------------------------------ */

typedef struct {
  const cg_model_t *m;
  int n;
  float *act[CG_MAX_BUFS], *dact[CG_MAX_BUFS];
} net_t;

static cg_view_t net_view(const net_t *t, float *const *bufs, int tensor) {
  const cg_tensor_t *tt = &t->m->tensors[tensor];
  return (cg_view_t){bufs[tt->buf] + tt->c_off, t->n, tt->h, tt->w, tt->c, tt->ld};
}

/* Loss and gradient of the weighted loss w.r.t. params, from the float kernels, following the
 * layer list forward and backward as a backend would. Gradient buffers start as NaN: any
 * gradient read before it was written (a wrong accum_dx) poisons the result. */
static double net_grad_float(const cg_model_t *m, const float *params, int n, const float *x,
                             const uint8_t *mask, const float *weight, float *grads,
                             cg_cpu_ws_t *ws) {
  net_t t = {m, n, {0}, {0}};
  for (int b = 0; b < m->nbufs; b++) {
    size_t e = (size_t)n * cg_buf_elems(m, b);
    t.act[b] = cg_malloc(e * sizeof(float), "act");
    t.dact[b] = cg_malloc(e * sizeof(float), "dact");
    for (size_t i = 0; i < e; i++) t.act[b][i] = t.dact[b][i] = NAN;
  }
  memcpy(t.act[m->tensors[m->input_tensor].buf], x,
         sizeof(float) * n * cg_buf_elems(m, m->tensors[m->input_tensor].buf));
  for (size_t i = 0; i < m->nparams; i++) grads[i] = NAN;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    cg_view_t vx = net_view(&t, t.act, l->in), vy = net_view(&t, t.act, l->out);
    switch (l->op) {
      case CG_OP_CONV:
        cg_cpu_conv_fwd(&vx, params + l->w_off, params + l->b_off, l->k, l->relu, &vy, ws);
        break;
      case CG_OP_UPCONV: cg_cpu_upconv_fwd(&vx, params + l->w_off, params + l->b_off, &vy, ws); break;
      case CG_OP_POOL: cg_cpu_maxpool_fwd(&vx, &vy); break;
    }
  }
  const int lb = m->tensors[m->logits_tensor].buf;
  double loss = cg_cpu_loss(t.act[lb], mask, weight, n, (size_t)m->height * m->width, 1.0f,
                            NULL, t.dact[lb], NULL);
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const cg_layer_t *l = &m->layers[i];
    cg_view_t vx = net_view(&t, t.act, l->in), vy = net_view(&t, t.act, l->out);
    cg_view_t vdy = net_view(&t, t.dact, l->out), vdx = net_view(&t, t.dact, l->in);
    const cg_view_t *pdx = l->need_dx ? &vdx : NULL;
    switch (l->op) {
      case CG_OP_CONV:
        cg_cpu_conv_bwd(&vx, params + l->w_off, &vy, &vdy, l->k, l->relu, pdx, l->accum_dx,
                        grads + l->w_off, grads + l->b_off, ws);
        break;
      case CG_OP_UPCONV:
        cg_cpu_upconv_bwd(&vx, params + l->w_off, &vdy, pdx, l->accum_dx, grads + l->w_off,
                          grads + l->b_off, ws);
        break;
      case CG_OP_POOL:
        if (pdx) cg_cpu_maxpool_bwd(&vx, &vy, &vdy, pdx, l->accum_dx);
        break;
    }
  }
  for (int b = 0; b < m->nbufs; b++) free(t.act[b]), free(t.dact[b]);
  return loss;
}

static void test_network(cg_cpu_ws_t *ws) {
  cg_model_t m;
  char err[256];
  const int n = 2, H = 8, W = 8, C = 5;
  if (cg_model_build(&m, C, 2, 2, H, W, 1, err, sizeof err) != 0) {
    CG_TEST_CHECK(0, "cg_model_build: %s", err);
    return;
  }
  /* The graph must exercise both backward modes: the skip half of each concat buffer gets its
   * gradient from the decoder conv and then, accumulated, from the pool. */
  int naccum = 0;
  for (int i = 0; i < m.nlayers; i++) naccum += m.layers[i].accum_dx;
  CG_TEST_CHECK(naccum == m.depth, "%d layers accumulate dx, want %d (the pools)", naccum, m.depth);

  float *params = cg_malloc(m.nparams * sizeof(float), "params");
  float *grads = cg_malloc(m.nparams * sizeof(float), "grads");
  cg_model_init_params(&m, 5, params);
  /* non-zero biases, so every bias path matters */
  for (int i = 0; i < m.nlayers; i++)
    cg_test_fill(params + m.layers[i].b_off, m.layers[i].b_len, -0.1f, 0.1f, 60 + i);
  size_t nx = (size_t)n * H * W * C, np = (size_t)n * H * W;
  float *x = cg_malloc(nx * sizeof(float), "x");
  cg_test_fill(x, nx, -1, 1, 61);
  uint8_t *mask = cg_malloc(np, "mask");
  for (size_t i = 0; i < np; i++) mask[i] = (i * 7 + i / 5) % 3 == 0;
  const float weight[2] = {0.5f, 0.5f};
  const double weight_d[2] = {0.5, 0.5};

  double loss = net_grad_float(&m, params, n, x, mask, weight, grads, ws);
  double *pd = to_double(params, m.nparams), *xd = to_double(x, nx);
  double loss_ref = cg_ref_net_loss(&m, pd, n, xd, mask, weight_d);
  cg_test_close_d("net loss (float chain vs double reference)", &loss, &loss_ref, 1, 0, 1e-5);

  double *g = cg_malloc(m.nparams * sizeof(double), "g");
  for (size_t j = 0; j < m.nparams; j++) {
    double s = pd[j];
    pd[j] = s + FD_H;
    double lp = cg_ref_net_loss(&m, pd, n, xd, mask, weight_d);
    pd[j] = s - FD_H;
    double lm = cg_ref_net_loss(&m, pd, n, xd, mask, weight_d);
    pd[j] = s;
    g[j] = (lp - lm) / (2 * FD_H);
  }
  char nm[96];
  snprintf(nm, sizeof nm, "net gradient, all %zu parameters", m.nparams);
  float *gf = to_float(g, m.nparams);
  cg_test_close(nm, grads, gf, m.nparams, 1e-4 * max_abs_d(g, m.nparams), 1e-3);
  for (int i = 0; i < m.nlayers; i++) { /* per layer, to point at a wrong wire */
    const cg_layer_t *l = &m.layers[i];
    if (!l->w_len) continue;
    snprintf(nm, sizeof nm, "net gradient %s", l->name);
    size_t len = l->w_len + l->b_len;
    cg_test_close(nm, grads + l->w_off, gf + l->w_off, len,
                  1e-4 * max_abs_d(g, m.nparams), 1e-3);
  }
  free(gf), free(g), free(pd), free(xd), free(params), free(grads), free(x), free(mask);
}

/* ---- thread-count invariance ------------------------------------------------------------ */

/* Runs conv 3x3 and 1x1, upconv, pool and loss forward and backward on shapes with many chunks
 * and dW groups; writes every output into out (in a fixed order). Returns floats written. */
static size_t run_all(float *out, cg_cpu_ws_t *ws) {
  size_t o = 0;
  const int n = 4, h = 16, w = 16, ci = 8, co = 16;
  ftensor_t x = ft_make(n, h, w, ci, 2 * ci, ci, -1, 1, 71);
  ftensor_t y = ft_make(n, h, w, co, co, 0, 0, 1, 72);
  ftensor_t dy = ft_make(n, h, w, co, 2 * co, 0, -1, 1, 73);
  ftensor_t dx = ft_make(n, h, w, ci, 2 * ci, ci, -1, 1, 74);
  float wt[16 * 9 * 16], b[16], dw[16 * 9 * 16], db[16];
  cg_test_fill(wt, sizeof wt / 4, -0.3f, 0.3f, 75);
  cg_test_fill(b, 16, -0.1f, 0.1f, 76);
  for (int k = 1; k <= 3; k += 2) {
    cg_cpu_conv_fwd(&x.v, wt, b, k, 1, &y.v, ws);
    cg_cpu_conv_bwd(&x.v, wt, &y.v, &dy.v, k, 1, &dx.v, 1, dw, db, ws);
    memcpy(out + o, y.buf, y.len * 4), o += y.len;
    memcpy(out + o, dx.buf, dx.len * 4), o += dx.len;
    memcpy(out + o, dw, (size_t)co * k * k * ci * 4), o += (size_t)co * k * k * ci;
    memcpy(out + o, db, co * 4), o += co;
  }
  /* upconv: x (n, 8, 8, co) -> y (n, 16, 16, ci) */
  cg_view_t ux = {y.buf, n, h / 2, w / 2, co, co}, uy = {x.buf, n, h, w, ci, 2 * ci};
  cg_view_t udy = {dx.buf, n, h, w, ci, 2 * ci}, udx = {dy.buf, n, h / 2, w / 2, co, 2 * co};
  cg_cpu_upconv_fwd(&ux, wt, b, &uy, ws);
  cg_cpu_upconv_bwd(&ux, wt, &udy, &udx, 0, dw, db, ws);
  memcpy(out + o, x.buf, x.len * 4), o += x.len;
  memcpy(out + o, dy.buf, (size_t)n * 64 * 2 * co * 4), o += (size_t)n * 64 * 2 * co;
  memcpy(out + o, dw, (size_t)co * 4 * ci * 4), o += (size_t)co * 4 * ci;
  memcpy(out + o, db, ci * 4), o += ci;
  float *wgt = out + o; /* loss over dy's buffer as logits */
  for (int i = 0; i < 8; i++) wgt[i] = 0.125f * (i % 3);
  o += 8;
  uint8_t mask[8 * 256];
  for (int i = 0; i < 8 * 256; i++) mask[i] = (i % 5) < 2;
  double l = cg_cpu_loss(dy.buf, mask, wgt, 8, 256, 2.0f, NULL, dx.buf, NULL);
  memcpy(out + o, &l, sizeof l), o += 2;
  memcpy(out + o, dx.buf, 8 * 256 * 4), o += 8 * 256;
  free(x.buf), free(y.buf), free(dy.buf), free(dx.buf);
  /* a layer of one chunk (16 pixels) shared by the team in blocks of columns: 64 -> 256
   * channels, y in 2 blocks, dW in 4 (3x3) or 1, dx in 1 */
  const int oc = 256, ic = 64;
  ftensor_t x1 = ft_make(1, 4, 4, ic, ic, 0, -1, 1, 81);
  ftensor_t y1 = ft_make(1, 4, 4, oc, oc, 0, 0, 1, 82);
  ftensor_t dy1 = ft_make(1, 4, 4, oc, oc, 0, -1, 1, 83);
  ftensor_t dx1 = ft_make(1, 4, 4, ic, ic, 0, 0, 0, 84);
  const size_t wl = (size_t)oc * 9 * ic + oc; /* the weights and the bias after them */
  float *w1 = cg_malloc(sizeof(float) * wl, "w"), *dw1 = cg_malloc(sizeof(float) * wl, "dw");
  cg_test_fill(w1, wl, -0.1f, 0.1f, 85);
  for (int k = 1; k <= 3; k += 2) {
    cg_cpu_conv_fwd(&x1.v, w1, w1 + wl - oc, k, 1, &y1.v, ws);
    cg_cpu_conv_bwd(&x1.v, w1, &y1.v, &dy1.v, k, 1, &dx1.v, 0, dw1, dw1 + oc * k * k * ic, ws);
    memcpy(out + o, y1.buf, y1.len * 4), o += y1.len;
    memcpy(out + o, dx1.buf, dx1.len * 4), o += dx1.len;
    memcpy(out + o, dw1, (size_t)(oc * k * k * ic + oc) * 4), o += (size_t)oc * k * k * ic + oc;
  }
  free(x1.buf), free(y1.buf), free(dy1.buf), free(dx1.buf), free(w1), free(dw1);
  return o;
}

static void test_threads(cg_cpu_ws_t *ws) {
  const size_t cap = 1 << 20;
  float *ref = cg_malloc(cap * 4, "ref"), *got = cg_malloc(cap * 4, "got");
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  size_t n = run_all(ref, ws);
  CG_ASSERT(n <= cap);
  const int procs = omp_get_num_procs();
  const int counts[3] = {2, 3, procs > 3 ? procs : 0};
  for (int ti = 0; ti < 3 && counts[ti]; ti++) {
    const int t = counts[ti];
    omp_set_num_threads(t);
    size_t n2 = run_all(got, ws);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&ref[i], &got[i], 4) != 0;
    CG_TEST_CHECK(n2 == n && diff == 0, "%d threads: %zu of %zu outputs differ from 1 thread", t,
                  diff, n);
    if (n2 == n && diff == 0) printf("PASS bitwise identical results with 1 and %d threads\n", t);
  }
  omp_set_num_threads(saved);
  free(ref), free(got);
}

int main(void) {
  cg_cpu_ws_t ws = {0};
  double t0 = cg_now();
  test_gemm();
  test_layers(&ws);
  test_maxpool_ties();
  test_loss();
  test_loss_k();
  test_network(&ws);
  test_threads(&ws);
  cg_cpu_ws_free(&ws);
  printf("# %.2f s\n", cg_now() - t0);
  return cg_test_done("test_gradcheck");
}
