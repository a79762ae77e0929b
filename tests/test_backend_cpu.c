/* test_backend_cpu.c: the CPU backend as a whole, through the backend table.
 *  - its gradients of the whole network equal central finite differences of the independent
 *    double-precision reference network (tests/ref_layers.c), padding sample included;
 *  - eval_step and train_step agree on the loss; results come back in submission order;
 *  - results do not depend on the number of threads (bitwise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "model.h"
#include "ref_layers.h"
#include "rng.h"
#include "testutil.h"

typedef struct {
  int n, h, w, c;
  float *x, *wt;
  uint8_t *y;
} data_t;

static data_t make_data(const cg_model_t *m, int n, uint64_t seed) {
  data_t d = {n, m->height, m->width, m->in_c, NULL, NULL, NULL};
  size_t px = (size_t)n * d.h * d.w;
  d.x = malloc(sizeof(float) * px * d.c);
  d.y = malloc(px);
  d.wt = malloc(sizeof(float) * n);
  cg_test_fill(d.x, px * d.c, -1.0f, 1.0f, seed);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, 1, 0);
  for (size_t i = 0; i < px; i++) d.y[i] = cg_rng_uniform(&r) < 0.4f;
  for (int i = 0; i < n; i++) d.wt[i] = i == n - 1 ? 0.0f : 1.0f / (float)(n - 1); /* last: padding */
  return d;
}

static cg_backend_t *make_backend(const cg_model_t *m, const cg_buckets_t *bk, int batch,
                                  int threads) {
  cg_backend_cfg_t cfg = {0};
  cfg.batch = batch;
  cfg.dice_weight = 1.0f;
  cfg.precision = CG_PREC_FP32;
  cfg.threads = threads;
  cfg.buckets = bk;
  cfg.fault_nan_step = -1;
  cg_backend_t *b = NULL;
  char err[256];
  if (cg_backend_cpu.create(m, &cfg, &b, err, sizeof err)) {
    printf("FAIL create: %s\n", err);
    exit(1);
  }
  return b;
}

static void test_gradients(void) {
  cg_model_t m;
  char err[256];
  CG_ASSERT(cg_model_build(&m, 5, 2, 2, 8, 8, 1, err, sizeof err) == 0);
  cg_buckets_t bk;
  cg_buckets_plan(&m, 0, &bk);
  const int n = 3;
  data_t d = make_data(&m, n, 11);
  float *p = malloc(sizeof(float) * m.nparams), *g = malloc(sizeof(float) * m.nparams);
  cg_model_init_params(&m, 5, p);
  /* Non-zero biases so every term is exercised. */
  for (int i = 0; i < m.nlayers; i++)
    for (size_t j = 0; j < m.layers[i].b_len; j++) p[m.layers[i].b_off + j] = 0.05f * (float)((int)(j % 5) - 2);
  cg_backend_t *b = make_backend(&m, &bk, n, 1);
  cg_backend_cpu.set_params(b, p);
  cg_batch_t batch = {n, d.h, d.w, d.c, d.x, d.y, d.wt, n, NULL, NULL, 0};
  cg_backend_cpu.upload(b, 0, &batch);
  cg_backend_cpu.eval_step(b, 0);
  cg_step_out_t o1, o2;
  cg_backend_cpu.fetch(b, &o1);
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 0.0f};
  cg_backend_cpu.train_step(b, 0, &opt);
  cg_backend_cpu.fetch(b, &o2);
  cg_backend_cpu.get_grads(b, g);
  CG_TEST_CHECK(o1.loss == o2.loss, "eval loss %.9g != train loss %.9g", o1.loss, o2.loss);
  /* Reference: double network, central differences over every parameter. */
  size_t np = m.nparams, px = (size_t)n * d.h * d.w;
  double *pd = malloc(sizeof(double) * np), *xd = malloc(sizeof(double) * px * d.c);
  double wd[3] = {d.wt[0], d.wt[1], d.wt[2]};
  for (size_t i = 0; i < np; i++) pd[i] = p[i];
  for (size_t i = 0; i < px * d.c; i++) xd[i] = d.x[i];
  double l0 = cg_ref_net_loss(&m, pd, n, xd, d.y, wd);
  CG_TEST_CHECK(fabs(l0 - o2.loss) <= 1e-5 * fabs(l0), "loss %.9g vs reference %.9g", o2.loss, l0);
  float *fd = malloc(sizeof(float) * np);
  const double eps = 1e-5;
  for (size_t i = 0; i < np; i++) {
    double keep = pd[i];
    pd[i] = keep + eps;
    double lp = cg_ref_net_loss(&m, pd, n, xd, d.y, wd);
    pd[i] = keep - eps;
    double lm = cg_ref_net_loss(&m, pd, n, xd, d.y, wd);
    pd[i] = keep;
    fd[i] = (float)((lp - lm) / (2 * eps));
  }
  char name[64];
  snprintf(name, sizeof name, "whole-network gradient (%zu params) vs finite differences", np);
  cg_test_close(name, g, fd, np, 2e-6, 2e-3);
  cg_backend_cpu.destroy(b);
  free(p); free(g); free(pd); free(xd); free(fd);
  free(d.x); free(d.y); free(d.wt);
}

/* Runs steps on a fresh backend, two in flight, returns the params. */
static float *run_steps(const cg_model_t *m, const cg_buckets_t *bk, int threads, int steps,
                        double *losses) {
  const int n = 4;
  data_t d0 = make_data(m, n, 21), d1 = make_data(m, n, 22);
  float *p = malloc(sizeof(float) * m->nparams);
  cg_model_init_params(m, 9, p);
  cg_backend_t *b = make_backend(m, bk, n, threads);
  cg_backend_cpu.set_params(b, p);
  cg_batch_t b0 = {n, d0.h, d0.w, d0.c, d0.x, d0.y, d0.wt, n, NULL, NULL, 0};
  cg_batch_t b1 = {n, d1.h, d1.w, d1.c, d1.x, d1.y, d1.wt, n, NULL, NULL, 0};
  cg_backend_cpu.upload(b, 0, &b0);
  cg_backend_cpu.upload(b, 1, &b1);
  int got = 0;
  for (int k = 0; k < steps; k++) {
    cg_optim_t opt = {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-4f, k + 1, 0.0f};
    cg_backend_cpu.train_step(b, k % 2, &opt);
    if (k >= 1) {
      cg_step_out_t o;
      cg_backend_cpu.fetch(b, &o);
      losses[got++] = o.loss;
    }
  }
  cg_step_out_t o;
  cg_backend_cpu.fetch(b, &o);
  losses[got++] = o.loss;
  cg_backend_cpu.get_params(b, p);
  cg_backend_cpu.destroy(b);
  free(d0.x); free(d0.y); free(d0.wt); free(d1.x); free(d1.y); free(d1.wt);
  return p;
}

static void test_threads_and_order(void) {
  cg_model_t m;
  char err[256];
  CG_ASSERT(cg_model_build(&m, 5, 8, 3, 32, 32, 1, err, sizeof err) == 0);
  cg_buckets_t bk;
  cg_buckets_plan(&m, 0, &bk);
  double l1[8], l2[8];
  float *a = run_steps(&m, &bk, 1, 6, l1), *b = run_steps(&m, &bk, 2, 6, l2);
  CG_TEST_CHECK(memcmp(a, b, sizeof(float) * m.nparams) == 0, "1 and 2 threads differ");
  CG_TEST_CHECK(memcmp(l1, l2, sizeof(double) * 6) == 0, "losses differ between thread counts");
  /* Alternating batches: losses of slot-0 steps keep decreasing at lr 1e-2. */
  CG_TEST_CHECK(l1[4] < l1[0] && l1[5] < l1[1], "loss did not decrease: %g -> %g, %g -> %g",
                l1[0], l1[4], l1[1], l1[5]);
  printf("PASS 1 vs 2 threads bitwise equal over 6 steps; losses %.4f %.4f ... %.4f %.4f\n", l1[0],
         l1[1], l1[4], l1[5]);
  free(a);
  free(b);
}

int main(void) {
  test_gradients();
  test_threads_and_order();
  return cg_test_done("test_backend_cpu");
}
