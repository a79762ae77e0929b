/* test_gpu_step.c: whole training steps of the CUDA backend through the ops table, against the
 * CPU reference backend (small UNet: in 5, base 8, depth 3, 32x32 (CG_TEST_STEP_SHAPE: another
 * base and size), batch 3 with one padding sample of weight 0).
 *  1. fp32 (TF32 off): loss, gradients (per layer, 1e-4 of the layer's largest), parameters
 *     after one AdamW step and the predicted mask agree with the CPU backend; eval_step and
 *     train_step give the same loss; get_logits after the eval step matches the CPU's logits
 *     and its sign is the eval step's predicted mask (bf16 too).
 *  2. bf16: the same comparison, looser (loss 2e-2, gradients 5e-2 of the largest).
 *  3. Six bf16 steps, deterministic, with CUDA graphs and two steps in flight vs eager one at
 *     a time: bitwise the same losses, predictions and parameters, results in order. The two
 *     backends share an algorithm cache file, so they run the same cuDNN algorithms. The same
 *     with gradient accumulation: six batches as three steps of two micro-batches.
 *  4. Gradient accumulation (--grad-accum 3: two accum_step calls, then train_step): on the CPU
 *     backend the step's gradient is the sum of the three batches' own gradients; the CUDA
 *     backend (fp32) agrees with it as in 1, and its loss sum with the CPU's.
 *  5. Gradient clipping (cfg.clip_norm, with an AdamW eps that makes the update follow the
 *     gradient's size): the CPU backend reports the norm of its (unclipped) gradient and its
 *     parameters are AdamW's on the gradient times cg_clip_coef, not on the gradient; the CUDA
 *     backend reports the same norm (fp32 1e-4; fp16, where its gradients carry the loss scale,
 *     5e-2) and makes the same update; and 3 again with clipping.
 *  6. The loss without its Dice term (cfg.dice_weight 0): the CUDA backend's loss and gradients
 *     (fp32) agree with the CPU backend's as in 1, and differ from the default loss's.
 *  7. BCE's pos_weight (cfg.class_weight, --pos-weight 3): the same, the loss above the default.
 *  8. The focal loss (cfg.focal_gamma 2): the same, the loss below the default.
 *  9. OHEM (cfg.ohem_thresh 0.05, ohem_min_kept a quarter of the pixels: the BCE mean over each
 *     sample's hardest quarter): the same, the loss above the default; the eval step's loss
 *     does not mine (the default's); and 3 again with OHEM (its thresholds inside the graph).
 * 10. The weights' moving average (cfg.ema, --ema-decay): after a step with ema_w 0.25 each
 *     backend's average is cg_cpu_ema of its own new parameters (the CPU's bitwise, fp32 and bf16
 *     within 1e-6), the two backends' within the update's tolerance; swap_ema exchanges the
 *     parameters and the average bit for bit, an eval step after it gives the loss of a backend
 *     set to the average (bf16: the low-precision copy refreshed), and a second swap restores
 *     both; and 3 again with it and clipping (the first step's ema_w 1 copies, the rest 0.1:
 *     the average inside the graph bitwise eager's).
 * CG_TEST_STEP_PART=1, 2 or 3 runs a third of this, so that the emulated runs of a larger shape
 * are three tests, each well inside its time limit on a small machine: 1, items 1, 2, 4, 6-10
 * and 3's plain run; 2, item 5 and SGD's; 3, the rest of 3 (with accumulation, and with 5, 9
 * and 10's settings inside the graph).
 * Exits 77 without a usable GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_layers.h" /* cg_cpu_adamw, cg_cpu_sgd: the clipping and SGD references */
#include "log.h"
#include "model.h"
#include "testutil.h"
#include "testutil_cuda.h"

enum { N = 3, IN_C = 5, DEPTH = 3 };
/* Channels of the first level and the image size: 8 and 32, or CG_TEST_STEP_SHAPE=BASE,HW
 * (e.g. 16,64: rows and channels our 3x3 kernel takes, cuda/fprop.h). */
static int BASE = 8, HW = 32;
static float g_clip = 0.0f, g_eps = 1e-8f; /* cfg.clip_norm and AdamW's eps of one_step */
static float g_dice = 1.0f;                 /* cfg.dice_weight */
static const float *g_cw;                   /* cfg.class_weight */
static cg_optim_kind_t g_optim;             /* cfg.optim: SGD with momentum 0.9, Nesterov */
static float g_focal;                       /* cfg.focal_gamma */
static float g_ohem;                        /* cfg.ohem_thresh (0 = none) */
static int64_t g_ohem_mk;                   /* cfg.ohem_min_kept */
static int g_ema;                           /* cfg.ema: run_seq's steps update the average */

/* A batch of N, the last sample padding (weight 0). */
static cg_test_data_t make_data(uint64_t seed) {
  return cg_test_data_make(N, HW, HW, IN_C, 1, seed);
}

static cg_backend_t *make(const cg_backend_ops_t *ops, const cg_model_t *m, const cg_buckets_t *bk,
                          cg_precision_t prec, int graph, const char *cache, int accum) {
  cg_backend_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch = N;
  cfg.accum = accum;
  cfg.precision = prec;
  cfg.threads = 0;
  cfg.device = 0;
  cfg.deterministic = 1;
  cfg.dice_weight = g_dice;
  cfg.class_weight = g_cw;
  cfg.cuda_graph = graph;
  cfg.tf32 = 0;
  cfg.algo_cache = cache;
  cfg.buckets = bk;
  cfg.gsync = NULL;
  cfg.fault_nan_step = -1;
  cfg.clip_norm = g_clip;
  cfg.focal_gamma = g_focal;
  cfg.ohem_thresh = g_ohem;
  cfg.ohem_min_kept = g_ohem_mk;
  cfg.optim = g_optim;
  cfg.momentum = g_optim == CG_OPTIM_SGD ? 0.9f : 0.0f;
  cfg.nesterov = g_optim == CG_OPTIM_SGD;
  cfg.ema = g_ema;
  cg_backend_t *b = NULL;
  char err[1024];
  if (ops->create(m, &cfg, &b, err, sizeof err)) CG_FATAL("%s backend: %s", ops->name, err);
  return b;
}

typedef struct {
  double loss, eval_loss;
  uint8_t *pred;
  float *grads, *params;
  float *logits;     /* get_logits after the eval step */
  size_t logit_pred; /* pixels where logit > 0 disagrees with the eval step's predicted mask */
  float loss_scale, grad_norm;
  int skipped;
} step_t;

/* eval, then one train step from params p0 on batch d. */
static step_t one_step(const cg_backend_ops_t *ops, const cg_model_t *m, const cg_buckets_t *bk,
                       cg_precision_t prec, const float *p0, const cg_test_data_t *d) {
  const size_t px = (size_t)N * HW * HW;
  step_t r;
  r.pred = cg_malloc(px, "pred");
  r.grads = cg_malloc(sizeof(float) * m->nparams, "grads");
  r.params = cg_malloc(sizeof(float) * m->nparams, "params");
  cg_backend_t *b = make(ops, m, bk, prec, 0, NULL, 1);
  ops->set_params(b, p0);
  cg_batch_t v = cg_test_data_batch(d);
  ops->upload(b, 0, &v);
  ops->upload_wait(b, 0);
  cg_step_out_t o;
  ops->eval_step(b, 0);
  ops->fetch(b, &o);
  r.eval_loss = o.loss;
  r.logits = cg_malloc(sizeof(float) * px * m->nclass, "logits");
  CG_ASSERT(ops->get_logits(b, r.logits) == 0);
  r.logit_pred = 0;
  if (m->nclass == 1)
    for (size_t i = 0; i < px; i++) r.logit_pred += (r.logits[i] > 0.0f) != (o.pred[i] != 0);
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, g_eps, 1e-4f, 1, 0.0f};
  ops->train_step(b, 0, &opt);
  ops->fetch(b, &o);
  r.loss = o.loss;
  r.grad_norm = o.grad_norm;
  r.loss_scale = o.loss_scale;
  r.skipped = o.skipped;
  memcpy(r.pred, o.pred, px);
  ops->get_grads(b, r.grads);
  ops->get_params(b, r.params);
  if (ops != &cg_backend_cpu)
    printf("  %s backend (%s): %.1f MiB on the device, step busy %.3f ms\n", ops->name,
           cg_precision_name(prec), (double)ops->mem_bytes(b) / 1048576.0, o.busy_ms);
  ops->destroy(b);
  return r;
}

static void free_step(step_t *s) {
  free(s->logits);
  free(s->pred);
  free(s->grads);
  free(s->params);
}

static double absmax(const float *p, size_t n) {
  double mx = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(p[i]) > mx) mx = fabs(p[i]);
  return mx;
}

/* Per layer: weights and biases against the reference, tolerance relative to the block's
 * largest value (plus rtol per element). */
static void check_grads(const cg_model_t *m, const char *tag, const float *got, const float *ref,
                        double tol) {
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (!l->w_len) continue;
    char name[96];
    snprintf(name, sizeof name, "%s dW %s", tag, l->name);
    cg_test_close(name, got + l->w_off, ref + l->w_off, l->w_len,
                  tol * absmax(ref + l->w_off, l->w_len) + 1e-30, tol);
    snprintf(name, sizeof name, "%s db %s", tag, l->name);
    cg_test_close(name, got + l->b_off, ref + l->b_off, l->b_len,
                  tol * absmax(ref + l->b_off, l->b_len) + 1e-30, tol);
  }
}

/* After one AdamW step from zero moments the update is about lr * sign(g): parameters must
 * agree except where the reference gradient is so small (relative to its layer) that the two
 * backends may see different signs. */
static void check_params(const cg_model_t *m, const float *got, const float *ref,
                         const float *gref) {
  size_t bad = 0, ambiguous = 0, worst = 0;
  double worst_d = -1;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const size_t blk[2][2] = {{l->w_off, l->w_len}, {l->b_off, l->b_len}};
    for (int k = 0; k < 2; k++) {
      const size_t o = blk[k][0], len = blk[k][1];
      const double gmax = absmax(gref + o, len);
      for (size_t j = o; j < o + len; j++) {
        const double d = fabs((double)got[j] - ref[j]);
        if (d <= 1e-6 + 1e-5 * fabs(ref[j])) continue;
        if (fabs(gref[j]) <= 1e-4 * gmax) {
          ambiguous++;
          continue;
        }
        bad++;
        if (d > worst_d) {
          worst_d = d;
          worst = j;
        }
      }
    }
  }
  if (bad) {
    cg_test_failures++;
    printf("FAIL fp32 params after AdamW: %zu differ; worst [%zu] got %.9g ref %.9g (grad %.3g)\n",
           bad, worst, got[worst], ref[worst], gref[worst]);
  } else {
    printf("PASS fp32 params after AdamW (%zu of %zu differ where the gradient is ~0)\n",
           ambiguous, m->nparams);
  }
}

static size_t pred_diff(const uint8_t *a, const uint8_t *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += a[i] != b[i];
  return d;
}

static void test_vs_cpu(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                        const cg_test_data_t *d) {
  const size_t px = (size_t)N * HW * HW;
  printf("RUN one step: cpu vs cuda fp32\n");
  step_t c = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  step_t g = one_step(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, d);
  CG_TEST_CHECK(fabs(g.loss - c.loss) <= 1e-4 * fabs(c.loss), "fp32 loss %.9g vs cpu %.9g",
                g.loss, c.loss);
  printf("  loss cpu %.9g cuda %.9g\n", c.loss, g.loss);
  CG_TEST_CHECK(g.eval_loss == g.loss, "eval loss %.17g != train loss %.17g", g.eval_loss, g.loss);
  CG_TEST_CHECK(g.loss_scale == 1.0f && !g.skipped, "fp32: scale %g skipped %d", g.loss_scale,
                g.skipped);
  /* 1e-4 at 32x32; fp32 sums of more pixels drift as the square root of their count */
  check_grads(m, "fp32", g.grads, c.grads, 1e-4 * fmax(1.0, sqrt((double)HW * HW / (32 * 32))));
  check_params(m, g.params, c.params, c.grads);
  const double lrel = cg_test_rel_err(g.logits, c.logits, px * m->nclass);
  CG_TEST_CHECK(lrel < 1e-4 && g.logit_pred == 0 && c.logit_pred == 0,
                "get_logits fp32: relative error %.3e, sign vs mask %zu (cpu %zu)", lrel,
                g.logit_pred, c.logit_pred);
  printf("%s get_logits fp32 (max abs err / max |ref| = %.3e; logit > 0 is the mask)\n",
         lrel < 1e-4 && !g.logit_pred && !c.logit_pred ? "PASS" : "FAIL", lrel);
  size_t pd = pred_diff(g.pred, c.pred, px);
  CG_TEST_CHECK(pd <= 4, "fp32: %zu of %zu predicted pixels differ", pd, px);
  printf("%s fp32 predictions (%zu of %zu pixels differ)\n", pd <= 4 ? "PASS" : "FAIL", pd, px);

  printf("RUN one step: cpu fp32 vs cuda bf16\n");
  step_t h = one_step(&cg_backend_cuda, m, bk, CG_PREC_BF16, p0, d);
  CG_TEST_CHECK(fabs(h.loss - c.loss) <= 2e-2 * fabs(c.loss), "bf16 loss %.9g vs cpu %.9g",
                h.loss, c.loss);
  printf("  loss cpu %.9g cuda bf16 %.9g\n", c.loss, h.loss);
  const double rel = cg_test_rel_err(h.grads, c.grads, m->nparams);
  CG_TEST_CHECK(rel < 5e-2, "bf16 gradients: relative error %.3e", rel);
  printf("%s bf16 gradients (max abs err / max |ref| = %.3e); per layer:\n",
         rel < 5e-2 ? "PASS" : "FAIL", rel);
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (!l->w_len) continue;
    printf("    %-12s dW %.3e  db %.3e\n", l->name,
           cg_test_rel_err(h.grads + l->w_off, c.grads + l->w_off, l->w_len),
           cg_test_rel_err(h.grads + l->b_off, c.grads + l->b_off, l->b_len));
  }
  const double hrel = cg_test_rel_err(h.logits, c.logits, px * m->nclass);
  CG_TEST_CHECK(hrel < 5e-2 && h.logit_pred == 0,
                "get_logits bf16: relative error %.3e, sign vs mask %zu", hrel, h.logit_pred);
  printf("%s get_logits bf16 (max abs err / max |ref| = %.3e)\n",
         hrel < 5e-2 && !h.logit_pred ? "PASS" : "FAIL", hrel);
  pd = pred_diff(h.pred, c.pred, px);
  CG_TEST_CHECK(pd <= px / 20, "bf16: %zu of %zu predicted pixels differ", pd, px);
  printf("  bf16 predictions: %zu of %zu pixels differ\n", pd, px);
  free_step(&c);
  free_step(&g);
  free_step(&h);
}

enum { K = 6 };

typedef struct {
  double loss[K];
  uint8_t *pred[K];
  float *params;
  float *ema; /* g_ema: the moving average at the end (else NULL) */
} run_t;

/* K bf16 batches, as K / accum steps of accum micro-batches. pipelined: two batches in flight,
 * uploads ahead (graph on); else one at a time (graph off). */
static run_t run_seq(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                     const cg_test_data_t *ds, int pipelined, const char *cache, int accum) {
  const cg_backend_ops_t *ops = &cg_backend_cuda;
  const size_t px = (size_t)N * HW * HW;
  run_t r;
  cg_backend_t *b = make(ops, m, bk, CG_PREC_BF16, pipelined, cache, accum);
  ops->set_params(b, p0);
  cg_step_out_t o;
  cg_batch_t v[K];
  for (int k = 0; k < K; k++) v[k] = cg_test_data_batch(&ds[k]);
  int fetched = 0;
  if (pipelined) ops->upload(b, 0, &v[0]);
  for (int k = 0; k < K; k++) {
    cg_optim_t opt = {2e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, k / accum + 1,
                      k < accum ? 1.0f : 0.1f}; /* cfg.ema: the first step copies */
    if (!pipelined) {
      ops->upload(b, k % 2, &v[k]);
      ops->upload_wait(b, k % 2);
    }
    if ((k + 1) % accum) ops->accum_step(b, k % 2);
    else ops->train_step(b, k % 2, &opt);
    if (pipelined && k >= 1) { /* step k-1 while step k runs */
      ops->fetch(b, &o);
      r.loss[fetched] = o.loss;
      r.pred[fetched] = cg_malloc(px, "pred");
      memcpy(r.pred[fetched], o.pred, px);
      fetched++;
    }
    if (pipelined && k + 1 < K) ops->upload(b, (k + 1) % 2, &v[k + 1]);
    if (!pipelined || k + 1 == K) {
      ops->fetch(b, &o);
      r.loss[fetched] = o.loss;
      r.pred[fetched] = cg_malloc(px, "pred");
      memcpy(r.pred[fetched], o.pred, px);
      fetched++;
    }
  }
  CG_ASSERT(fetched == K);
  r.params = cg_malloc(sizeof(float) * m->nparams, "params");
  ops->get_params(b, r.params);
  r.ema = NULL;
  if (g_ema) {
    r.ema = cg_malloc(sizeof(float) * m->nparams, "average");
    ops->get_ema(b, r.ema);
  }
  ops->destroy(b);
  return r;
}

static void test_graph_pipeline(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                                int accum) {
  printf("RUN %d bf16 batches (%d a step%s%s%s): graphs + 2 in flight vs eager one at a time "
         "(deterministic)\n", K, accum, g_clip > 0 ? ", clipped" : "",
         g_optim == CG_OPTIM_SGD ? ", SGD" : "", g_ohem > 0 ? ", OHEM" : "");
  cg_test_data_t ds[K];
  for (int k = 0; k < K; k++) ds[k] = make_data(100 + (uint64_t)k);
  char cache[] = "/tmp/cg_gpu_step_algosXXXXXX";
  int fd = mkstemp(cache);
  CG_ASSERT(fd >= 0);
  close(fd);
  run_t a = run_seq(m, bk, p0, ds, 1, cache, accum);
  run_t e = run_seq(m, bk, p0, ds, 0, cache, accum);
  unlink(cache);
  const size_t px = (size_t)N * HW * HW;
  int same = 1;
  for (int k = 0; k < K; k++) {
    const int lk = memcmp(&a.loss[k], &e.loss[k], sizeof(double)) == 0;
    const int pk = memcmp(a.pred[k], e.pred[k], px) == 0;
    printf("  step %d: loss graph %.9g eager %.9g%s%s\n", k, a.loss[k], e.loss[k],
           lk ? "" : "  LOSS DIFFERS", pk ? "" : "  PRED DIFFERS");
    same = same && lk && pk;
    free(a.pred[k]);
    free(e.pred[k]);
  }
  CG_TEST_CHECK(same, "graph/pipelined losses or predictions differ from eager");
  CG_TEST_CHECK(a.loss[K - 1] != a.loss[0], "the loss never changed: steps did not train?");
  const int ps = memcmp(a.params, e.params, sizeof(float) * m->nparams) == 0;
  CG_TEST_CHECK(ps, "graph/pipelined parameters differ from eager (max rel %.3e)",
                cg_test_rel_err(a.params, e.params, m->nparams));
  const int es = !g_ema || memcmp(a.ema, e.ema, sizeof(float) * m->nparams) == 0;
  CG_TEST_CHECK(es, "graph/pipelined moving average differs from eager (max rel %.3e)",
                cg_test_rel_err(a.ema, e.ema, m->nparams));
  if (same && ps && es)
    printf("PASS graphs + pipelining: bitwise equal to eager over %d batches, %d a step%s%s%s\n",
           K, accum, g_clip > 0 ? ", clipped" : "", g_ohem > 0 ? ", OHEM" : "",
           g_ema ? ", the moving average too" : "");
  free(a.params);
  free(e.params);
  free(a.ema);
  free(e.ema);
  for (int k = 0; k < K; k++) cg_test_data_free(&ds[k]);
}

enum { ACC = 3 };

typedef struct {
  double loss; /* the micro-batches' summed */
  float *grads, *params;
} acc_t;

/* One step of ACC micro-batches ds[0..ACC) from p0: ACC - 1 accum_step calls, then train_step;
 * one at a time, graphs off. */
static acc_t accum_once(const cg_backend_ops_t *ops, const cg_model_t *m, const cg_buckets_t *bk,
                        cg_precision_t prec, const float *p0, const cg_test_data_t *ds) {
  acc_t r = {0, cg_malloc(sizeof(float) * m->nparams, "grads"),
             cg_malloc(sizeof(float) * m->nparams, "params")};
  cg_backend_t *b = make(ops, m, bk, prec, 0, NULL, ACC);
  ops->set_params(b, p0);
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 1, 0.0f};
  for (int k = 0; k < ACC; k++) {
    cg_batch_t v = cg_test_data_batch(&ds[k]);
    ops->upload(b, k % 2, &v);
    ops->upload_wait(b, k % 2);
    if (k + 1 < ACC) ops->accum_step(b, k % 2);
    else ops->train_step(b, k % 2, &opt);
    cg_step_out_t o;
    ops->fetch(b, &o);
    r.loss += o.loss;
    CG_TEST_CHECK(!o.skipped, "%s: batch %d reported a skipped step", ops->name, k);
  }
  ops->get_grads(b, r.grads);
  ops->get_params(b, r.params);
  ops->destroy(b);
  return r;
}

static void test_accum(const cg_model_t *m, const cg_buckets_t *bk, const float *p0) {
  printf("RUN gradient accumulation: %d micro-batches a step, cpu vs the sum, cuda fp32 vs cpu\n",
         ACC);
  cg_test_data_t ds[ACC];
  for (int k = 0; k < ACC; k++) ds[k] = make_data(200 + (uint64_t)k);
  acc_t c = accum_once(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, ds);
  /* the reference: each batch's own gradient from p0, summed as the backend sums them (the
   * last batch's plus the kept sum of the others, in their order) */
  float *sum = cg_calloc(m->nparams, sizeof(float), "sum");
  step_t one[ACC];
  double lsum = 0;
  for (int k = 0; k < ACC; k++) {
    one[k] = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, &ds[k]);
    lsum += one[k].loss;
  }
  for (size_t j = 0; j < m->nparams; j++) {
    float kept = one[0].grads[j];
    for (int k = 1; k + 1 < ACC; k++) kept += one[k].grads[j];
    sum[j] = one[ACC - 1].grads[j] + kept;
  }
  check_grads(m, "cpu accum vs sum", c.grads, sum, 1e-6);
  CG_TEST_CHECK(fabs(c.loss - lsum) <= 1e-9 * fabs(lsum), "cpu accum loss %.17g vs %.17g",
                c.loss, lsum);
  acc_t g = accum_once(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, ds);
  CG_TEST_CHECK(fabs(g.loss - c.loss) <= 1e-4 * fabs(c.loss), "accum loss cuda %.9g cpu %.9g",
                g.loss, c.loss);
  printf("  loss sum cpu %.9g cuda %.9g\n", c.loss, g.loss);
  check_grads(m, "fp32 accum", g.grads, c.grads,
              1e-4 * fmax(1.0, sqrt((double)HW * HW / (32 * 32))));
  check_params(m, g.params, c.params, c.grads);
  for (int k = 0; k < ACC; k++) {
    free_step(&one[k]);
    cg_test_data_free(&ds[k]);
  }
  free(sum);
  free(c.grads);
  free(c.params);
  free(g.grads);
  free(g.params);
}

/* max |update a - update b| / max |update b|, updates from p0 */
static double update_err(const float *a, const float *b, const float *p0, size_t n) {
  double e = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    const double ua = (double)a[i] - p0[i], ub = (double)b[i] - p0[i];
    e = fmax(e, fabs(ua - ub));
    mx = fmax(mx, fabs(ub));
  }
  return e / (mx > 0 ? mx : 1);
}

static void test_clip(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                      const cg_test_data_t *d) {
  printf("RUN gradient clipping: cpu vs AdamW on the clipped gradient, cuda fp32 and fp16\n");
  const size_t n = m->nparams;
  g_eps = 1.0f; /* above the gradients' elements: the update is about lr x the gradient */
  g_clip = 0.0f;
  step_t plain = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  CG_TEST_CHECK(plain.grad_norm == -1.0f, "no clipping: grad_norm %g, expected -1",
                plain.grad_norm);
  double ss = 0;
  for (size_t j = 0; j < n; j++) ss += (double)plain.grads[j] * plain.grads[j];
  const double norm = sqrt(ss);
  g_clip = (float)(norm / 8); /* clips by about 8 */
  step_t c = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  CG_TEST_CHECK(fabs(c.grad_norm - norm) <= 1e-6 * norm, "cpu grad_norm %.9g, the gradient's %.9g",
                c.grad_norm, norm);
  float *ref = cg_malloc(sizeof(float) * n, "ref"), *m0 = cg_calloc(n, sizeof(float), "m");
  float *v0 = cg_calloc(n, sizeof(float), "v");
  memcpy(ref, p0, sizeof(float) * n);
  const float coef = cg_clip_coef(c.grad_norm, g_clip);
  cg_cpu_adamw(ref, c.grads, m0, v0, n, 1e-3f, 0.9f, 0.999f, g_eps, 1e-4f, 1, coef);
  const int same = memcmp(ref, c.params, sizeof(float) * n) == 0;
  CG_TEST_CHECK(same, "cpu: parameters are not AdamW's on the gradient x %g", coef);
  const double unclipped = update_err(plain.params, c.params, p0, n);
  CG_TEST_CHECK(coef < 0.2f && unclipped > 4, "cpu: clipping by %g changed the update by %.3g",
                coef, unclipped);
  printf("%s cpu: norm %.6g, factor %.4g: AdamW's on the clipped gradient (bitwise), the "
         "unclipped update differs by %.3g\n", same && coef < 0.2f ? "PASS" : "FAIL",
         c.grad_norm, coef, unclipped);
  step_t g = one_step(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, d);
  step_t h = one_step(&cg_backend_cuda, m, bk, CG_PREC_FP16, p0, d);
  const double eg = fabs(g.grad_norm - c.grad_norm) / c.grad_norm;
  const double eh = fabs(h.grad_norm - c.grad_norm) / c.grad_norm;
  const double ug = update_err(g.params, c.params, p0, n);
  const double uh = update_err(h.params, c.params, p0, n);
  /* the update follows the gradient's size (eps): its largest error is the gradient's, 1.06e-3
   * of the largest update on an AMD Zen 3 VM's OpenBLAS kernels at base 8 (under 1e-3 on an
   * AVX-512 one) */
  CG_TEST_CHECK(eg <= 1e-4 && ug <= 2e-3, "cuda fp32: norm %.9g (err %.3g), update err %.3g",
                g.grad_norm, eg, ug);
  CG_TEST_CHECK(!h.skipped && eh <= 5e-2 && uh <= 5e-2,
                "cuda fp16 (scale %g, skipped %d): norm %.9g (err %.3g), update err %.3g",
                h.loss_scale, h.skipped, h.grad_norm, eh, uh);
  printf("  norm cpu %.6g, cuda fp32 %.6g (%.2e), fp16 %.6g (%.2e); update err fp32 %.2e, fp16 "
         "%.2e\n", c.grad_norm, g.grad_norm, eg, h.grad_norm, eh, ug, uh);
  g_clip = 0.0f;
  g_eps = 1e-8f;
  free(ref);
  free(m0);
  free(v0);
  free_step(&plain);
  free_step(&c);
  free_step(&g);
  free_step(&h);
}

/* The loss with another setting (the Dice weight dice, the class weights cw, the focal gamma
 * focal, OHEM's threshold ohem with min_kept g_ohem_mk): the CUDA backend's loss and gradients
 * (fp32) agree with the CPU backend's, and the loss is below (lower) or above the default
 * loss's. With OHEM the eval step's loss is the default's (validation does not mine). */
static void test_loss_setting(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                              const cg_test_data_t *d, const char *what, float dice,
                              const float *cw, float focal, float ohem, int lower) {
  printf("RUN the loss with %s: cpu vs cuda fp32\n", what);
  step_t ref = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  g_dice = dice, g_cw = cw, g_focal = focal, g_ohem = ohem;
  step_t c = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  step_t g = one_step(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, d);
  g_dice = 1.0f, g_cw = NULL, g_focal = 0.0f, g_ohem = 0.0f;
  CG_TEST_CHECK(fabs(g.loss - c.loss) <= 1e-4 * fabs(c.loss) &&
                    (lower ? c.loss < ref.loss : c.loss > ref.loss),
                "%s: loss cuda %.9g cpu %.9g (default loss %.9g)", what, g.loss, c.loss, ref.loss);
  printf("  loss cpu %.9g cuda %.9g (default loss: %.9g)\n", c.loss, g.loss, ref.loss);
  if (ohem > 0) {
    CG_TEST_CHECK(c.eval_loss == ref.eval_loss &&
                      fabs(g.eval_loss - c.eval_loss) <= 1e-4 * fabs(c.eval_loss),
                  "%s: eval loss cuda %.9g cpu %.9g, not the default's %.9g", what, g.eval_loss,
                  c.eval_loss, ref.eval_loss);
    printf("  eval loss (not mined) cpu %.9g cuda %.9g (default: %.9g)\n", c.eval_loss,
           g.eval_loss, ref.eval_loss);
  }
  check_grads(m, what, g.grads, c.grads, 1e-4 * fmax(1.0, sqrt((double)HW * HW / (32 * 32))));
  free_step(&ref);
  free_step(&c);
  free_step(&g);
}

/* --optimizer sgd: the CPU backend's step is cg_cpu_sgd's on its gradient (bitwise), the CUDA
 * backend's (fp32) agrees with it and is not AdamW's; the optimizer state is the momentum
 * buffer with v all 0 (not allocated); graphs and pipelining stay bitwise eager over K steps
 * (the buffer carried from step to step). */
static void test_sgd(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                     const cg_test_data_t *d) {
  printf("RUN --optimizer sgd (momentum 0.9, Nesterov): cpu vs cuda fp32\n");
  const size_t n = m->nparams;
  step_t adam = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  g_optim = CG_OPTIM_SGD;
  step_t c = one_step(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, d);
  step_t g = one_step(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, d);
  float *ref = cg_malloc(sizeof(float) * n, "ref"), *buf = cg_calloc(n, sizeof(float), "buf");
  memcpy(ref, p0, sizeof(float) * n);
  cg_cpu_sgd(ref, c.grads, buf, n, 1e-3f, 0.9f, 1, 1e-4f, 1.0f);
  const int same = memcmp(ref, c.params, sizeof(float) * n) == 0;
  const double ug = update_err(g.params, c.params, p0, n);
  const double ua = update_err(adam.params, c.params, p0, n);
  CG_TEST_CHECK(same, "cpu: parameters are not cg_cpu_sgd's on the step's gradient");
  CG_TEST_CHECK(ug <= 1e-3 && ua > 0.5, "cuda fp32 sgd: update err %.3g (AdamW's differs by %.3g)",
                ug, ua);
  printf("%s sgd: cpu = cg_cpu_sgd bitwise, cuda fp32 update err %.2e (AdamW's update differs "
         "by %.3g)\n", same && ug <= 1e-3 && ua > 0.5 ? "PASS" : "FAIL", ug, ua);
  /* the state: the buffer (d of the first step) and v all 0, though not allocated */
  cg_backend_t *b = make(&cg_backend_cuda, m, bk, CG_PREC_FP32, 0, NULL, 1);
  float *sm = cg_malloc(sizeof(float) * n, "m"), *sv = cg_malloc(sizeof(float) * n, "v");
  for (size_t i = 0; i < n; i++) sm[i] = 0.001f * (float)(i % 7), sv[i] = 1.0f;
  float scale;
  int64_t good;
  CG_ASSERT(cg_backend_cuda.set_opt_state(b, sm, sv, 1.0f, 0) == 0);
  memset(sv, 0x7F, sizeof(float) * n);
  CG_ASSERT(cg_backend_cuda.get_opt_state(b, buf, sv, &scale, &good) == 0);
  size_t vbad = 0;
  for (size_t i = 0; i < n; i++) vbad += sv[i] != 0.0f;
  const int mok = memcmp(buf, sm, sizeof(float) * n) == 0;
  CG_TEST_CHECK(mok && !vbad, "sgd state: buffer back %s, %zu of v not 0", mok ? "ok" : "WRONG",
                vbad);
  if (mok && !vbad) printf("PASS sgd state: the buffer set and read back, v all 0\n");
  cg_backend_cuda.destroy(b);
  free(sm);
  free(sv);
  test_graph_pipeline(m, bk, p0, 1);
  g_optim = CG_OPTIM_ADAMW;
  free(ref);
  free(buf);
  free_step(&adam);
  free_step(&c);
  free_step(&g);
}

/* One backend's step with the moving average (10.): its new parameters into pa, its average into
 * ea; checks the average against cg_cpu_ema of pa, the swaps and the eval after one. */
static void ema_case(const cg_backend_ops_t *ops, const cg_model_t *m, const cg_buckets_t *bk,
                     cg_precision_t prec, const float *p0, const float *e0,
                     const cg_test_data_t *d, float *pa, float *ea) {
  const size_t n = m->nparams;
  const char *tag = ops == &cg_backend_cpu   ? "cpu"
                    : prec == CG_PREC_BF16 ? "cuda bf16"
                                           : "cuda fp32";
  float *ref = cg_malloc(sizeof(float) * n, "ref"), *t = cg_malloc(sizeof(float) * n, "t");
  /* the backend set to the average below runs the same algorithms (bf16's differ in rounding) */
  char cache[] = "/tmp/cg_gpu_step_emaXXXXXX";
  const int fd = mkstemp(cache);
  CG_ASSERT(fd >= 0);
  close(fd);
  cg_backend_t *b = make(ops, m, bk, prec, 0, cache, 1);
  ops->set_params(b, p0);
  ops->set_ema(b, e0);
  cg_batch_t v = cg_test_data_batch(d);
  ops->upload(b, 0, &v);
  ops->upload_wait(b, 0);
  cg_step_out_t o;
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 1, 0.25f};
  ops->train_step(b, 0, &opt);
  ops->fetch(b, &o);
  ops->get_params(b, pa);
  ops->get_ema(b, ea);
  memcpy(ref, e0, sizeof(float) * n);
  cg_cpu_ema(ref, pa, n, 0.25f);
  double err = 0;
  for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)ea[i] - ref[i]));
  const int ok = ops == &cg_backend_cpu ? !memcmp(ea, ref, sizeof(float) * n) : err <= 1e-6;
  CG_TEST_CHECK(ok, "%s: the average is %.3g from cg_cpu_ema of the new parameters", tag, err);
  /* swapped: the average is validated; an eval of it equals one of a backend set to it */
  ops->swap_ema(b);
  ops->get_params(b, t);
  int sw = !memcmp(t, ea, sizeof(float) * n);
  ops->get_ema(b, t);
  sw = sw && !memcmp(t, pa, sizeof(float) * n);
  ops->eval_step(b, 0);
  ops->fetch(b, &o);
  const double swapped = o.loss;
  ops->swap_ema(b);
  ops->get_params(b, t);
  int back = !memcmp(t, pa, sizeof(float) * n);
  ops->get_ema(b, t);
  back = back && !memcmp(t, ea, sizeof(float) * n);
  ops->destroy(b);
  b = make(ops, m, bk, prec, 0, cache, 1);
  ops->set_params(b, ea);
  ops->upload(b, 0, &v);
  ops->upload_wait(b, 0);
  ops->eval_step(b, 0);
  ops->fetch(b, &o);
  ops->destroy(b);
  unlink(cache);
  const int same = swapped == o.loss;
  CG_TEST_CHECK(sw && back && same, "%s: swap %s, back %s, eval of the average %.9g vs %.9g",
                tag, sw ? "ok" : "WRONG", back ? "ok" : "WRONG", swapped, o.loss);
  printf("%s %s: the average cg_cpu_ema's (err %.2e), swapped and back bit for bit, its eval "
         "loss %.9g as a backend set to it\n", ok && sw && back && same ? "PASS" : "FAIL", tag,
         err, swapped);
  free(ref);
  free(t);
}

static void test_ema(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                     const cg_test_data_t *d) {
  printf("RUN the weights' moving average (cfg.ema): cpu vs cuda fp32 and bf16, swaps, graphs\n");
  const size_t n = m->nparams;
  float *e0 = cg_malloc(sizeof(float) * n, "e0");
  for (size_t i = 0; i < n; i++) e0[i] = p0[i] + 0.01f * (float)((int)(i % 11) - 5);
  float *pc = cg_malloc(sizeof(float) * n, "pc"), *ec = cg_malloc(sizeof(float) * n, "ec");
  float *pg = cg_malloc(sizeof(float) * n, "pg"), *eg = cg_malloc(sizeof(float) * n, "eg");
  g_ema = 1;
  ema_case(&cg_backend_cpu, m, bk, CG_PREC_FP32, p0, e0, d, pc, ec);
  ema_case(&cg_backend_cuda, m, bk, CG_PREC_FP32, p0, e0, d, pg, eg);
  const double ue = update_err(eg, ec, e0, n);
  CG_TEST_CHECK(ue <= 1e-3, "cuda fp32: the average's update err %.3g from the cpu's", ue);
  printf("%s the averages' update cuda fp32 vs cpu: err %.2e\n", ue <= 1e-3 ? "PASS" : "FAIL",
         ue);
  ema_case(&cg_backend_cuda, m, bk, CG_PREC_BF16, p0, e0, d, pg, eg);
  g_ema = 0; /* main() runs 3 once more with it, clipped */
  free(e0);
  free(pc);
  free(ec);
  free(pg);
  free(eg);
}

int main(void) {
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  const char *shape = getenv("CG_TEST_STEP_SHAPE");
  int used = 0;
  if (shape && (sscanf(shape, "%d,%d%n", &BASE, &HW, &used) != 2 || shape[used] || BASE < 1 ||
                BASE > 64 || HW < 8 || HW > 256 || HW % (1 << DEPTH)))
    CG_FATAL("CG_TEST_STEP_SHAPE=%s: want BASE,HW (1-64 channels, 8-256 pixels, a multiple of "
             "%d)", shape, 1 << DEPTH);
  const char *pe = getenv("CG_TEST_STEP_PART");
  const int part = pe ? atoi(pe) : 0;
  if (pe && (part < 1 || part > 3 || pe[1]))
    CG_FATAL("CG_TEST_STEP_PART=%s: want 1, 2 or 3 (main's thirds)", pe);
  printf("UNet: in %d, base %d, depth %d, %dx%d, batch %d\n", IN_C, BASE, DEPTH, HW, HW, N);
  cg_model_t m;
  cg_buckets_t bk;
  float *p0 = cg_test_unet(&m, &bk, IN_C, BASE, DEPTH, HW, 0, 7);
  /* non-zero biases so the bias paths matter */
  for (int i = 0; i < m.nlayers; i++)
    for (size_t j = 0; j < m.layers[i].b_len; j++)
      p0[m.layers[i].b_off + j] = 0.02f * (float)((int)(j % 5) - 2);
  cg_test_data_t d = make_data(42);
  if (!part || part == 1) {
    test_vs_cpu(&m, &bk, p0, &d);
    test_accum(&m, &bk, p0);
    test_loss_setting(&m, &bk, p0, &d, "no Dice (dice_weight 0)", 0.0f, NULL, 0.0f, 0.0f, 1);
    const float pw = 3.0f;
    test_loss_setting(&m, &bk, p0, &d, "BCE's pos_weight 3 (class_weight)", 1.0f, &pw, 0.0f,
                      0.0f, 0);
    /* (1 - p_t)^2 < 1: a lower loss */
    test_loss_setting(&m, &bk, p0, &d, "the focal loss (focal_gamma 2)", 1.0f, NULL, 2.0f, 0.0f,
                      1);
    /* the untrained net's p_t are near 1/2, above 0.05: the threshold is the quarter's key, and
     * the BCE mean over the hardest quarter is above the mean over every pixel */
    g_ohem_mk = (int64_t)HW * HW / 4;
    test_loss_setting(&m, &bk, p0, &d, "OHEM (ohem_thresh 0.05, min_kept a quarter)", 1.0f, NULL,
                      0.0f, 0.05f, 0);
    g_ohem_mk = 0;
    test_ema(&m, &bk, p0, &d);
    test_graph_pipeline(&m, &bk, p0, 1);
  }
  if (!part || part == 2) {
    test_clip(&m, &bk, p0, &d);
    test_sgd(&m, &bk, p0, &d);
  }
  if (!part || part == 3) { /* 3 with accumulation, and with what 5, 9 and 10 put inside the
                             * captured graph */
    test_graph_pipeline(&m, &bk, p0, 2);
    g_ohem = 0.05f, g_ohem_mk = (int64_t)HW * HW / 4; /* the thresholds inside the graph */
    test_graph_pipeline(&m, &bk, p0, 1);
    g_ohem = 0.0f, g_ohem_mk = 0;
    g_clip = 0.05f; /* the norm, the clip factor and the moving average inside the graph */
    g_ema = 1;
    test_graph_pipeline(&m, &bk, p0, 1);
    g_clip = 0.0f;
    g_ema = 0;
  }
  cg_test_data_free(&d);
  free(p0);
  return cg_test_done("test_gpu_step");
}
