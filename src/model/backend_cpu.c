/* backend_cpu.c: the CPU reference backend — the model of model.h trained with the fp32
 * kernels of cpu_layers.h, NHWC, in host memory.
 *
 * It is both the reference every GPU kernel is tested against and a real trainer for CPU
 * clusters and CI. Gradient buckets are all-reduced with comm/gsync.h while backward goes on
 * (post as each bucket completes, progress after every layer). Steps complete synchronously;
 * the results queue only keeps the one-fetch-per-step contract of backend.h. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_layers.h"
#include "gsync.h"
#include "log.h"
#include "metrics.h"
#include "prep.h"

#ifdef COGPU_HAVE_OPENBLAS
#include <cblas.h>
#endif

struct cg_backend {
  const cg_model_t *m;
  cg_backend_cfg_t cfg;
  int n; /* batch */
  float *params, *grads, *adam_m, *adam_v; /* SGD: its momentum buffer in adam_m, no adam_v */
  float *ema;        /* cfg.ema: the parameters' moving average */
  double *norm_part; /* cfg.clip_norm > 0: cg_cpu_grad_norm's partial sums */
  float *gacc; /* cfg.accum > 1: the gradient sum of the step's micro-batches so far */
  int kept;    /* micro-batches in gacc (accum_step calls since the last train_step) */
  float *act[CG_MAX_BUFS], *dact[CG_MAX_BUFS];
  /* batch slots: the uploaded input, mask and weights */
  float *x[CG_DEV_SLOTS], *w[CG_DEV_SLOTS];
  uint8_t *y[CG_DEV_SLOTS];
  uint8_t *pred_dst[CG_DEV_SLOTS]; /* the caller's predicted-mask buffer, or NULL */
  double t_upload[CG_DEV_SLOTS][2]; /* host times of the upload (for --trace-out) */
  int metrics_dev[CG_DEV_SLOTS];
  float *scratch;                  /* 3*h*w floats for featurising on the compute thread */
  cg_cpu_ws_t ws;
  /* finished steps waiting for fetch */
  cg_step_out_t q[CG_MAX_INFLIGHT];
  uint8_t *pred[CG_MAX_INFLIGHT];
  int qhead, qcount;
  int64_t steps;
  size_t bytes; /* allocated, for mem_bytes */
  int nclass, ignore;               /* the head's classes; the ignore label or -1 */
  float cw[256];                    /* cfg.class_weight's copy */
  cg_loss_opt_t lo;                 /* the loss's options from cfg (lo.cw: cw or NULL) */
  int64_t *confk[CG_MAX_INFLIGHT];  /* K >= 2: K x K counts per queued result */
};

static void cpu_destroy(cg_backend_t *b) {
  if (!b) return;
  free(b->params);
  free(b->ema);
  free(b->grads);
  free(b->adam_m);
  free(b->adam_v);
  free(b->gacc);
  free(b->norm_part);
  for (int i = 0; i < CG_MAX_BUFS; i++) {
    free(b->act[i]);
    free(b->dact[i]);
  }
  for (int i = 0; i < CG_DEV_SLOTS; i++) {
    free(b->x[i]);
    free(b->w[i]);
    free(b->y[i]);
  }
  for (int i = 0; i < CG_MAX_INFLIGHT; i++) {
    free(b->pred[i]);
    free(b->confk[i]);
  }
  free(b->scratch);
  cg_cpu_ws_free(&b->ws);
  free(b);
}

static int cpu_create(const cg_model_t *m, const cg_backend_cfg_t *cfg, cg_backend_t **out,
                      char *err, size_t errlen) {
  *out = NULL;
  if (cfg->precision != CG_PREC_FP32) {
    snprintf(err, errlen, "the cpu backend computes in fp32 only (got --precision %s)",
             cg_precision_name(cfg->precision));
    return -1;
  }
  if (cfg->batch < 1) {
    snprintf(err, errlen, "batch %d must be >= 1", cfg->batch);
    return -1;
  }
  if (cfg->nclass != 0 && cfg->nclass != m->nclass) {
    snprintf(err, errlen, "backend configured for %d classes, the model has %d", cfg->nclass,
             m->nclass);
    return -1;
  }
  cg_backend_t *b = cg_calloc(1, sizeof *b, "cpu backend");
  b->m = m;
  b->cfg = *cfg;
  b->n = cfg->batch;
  b->nclass = m->nclass;
  b->ignore = cfg->ignore_index >= m->nclass ? cfg->ignore_index : -1;
  if (cfg->class_weight) memcpy(b->cw, cfg->class_weight, sizeof(float) * (size_t)m->nclass);
  b->cfg.class_weight = NULL; /* the caller's: copied */
  b->lo = (cg_loss_opt_t){cfg->dice_weight, cfg->class_weight ? b->cw : NULL,
                          m->nclass > 1 ? cfg->label_smoothing : 0.0f, cfg->focal_gamma,
                          cfg->ohem_thresh, cfg->ohem_min_kept};
  if (b->nclass > 1)
    for (int i = 0; i < CG_MAX_INFLIGHT; i++)
      b->confk[i] = cg_calloc((size_t)b->nclass * b->nclass, sizeof(int64_t), "confusion");
  size_t np = m->nparams;
  b->params = cg_calloc(np, sizeof(float), "parameters");
  b->grads = cg_calloc(np, sizeof(float), "gradients");
  const int adamw = cfg->optim == CG_OPTIM_ADAMW;
  b->adam_m = cg_calloc(np, sizeof(float), adamw ? "AdamW m" : "SGD momentum buffer");
  if (adamw) b->adam_v = cg_calloc(np, sizeof(float), "AdamW v");
  if (cfg->clip_norm > 0)
    b->norm_part = cg_calloc(np / CG_NORM_CHUNK + 1, sizeof(double), "gradient norm partials");
  if (cfg->accum > 1) b->gacc = cg_calloc(np, sizeof(float), "accumulated gradients");
  if (cfg->ema) b->ema = cg_calloc(np, sizeof(float), "parameters' moving average");
  int in_buf = m->tensors[m->input_tensor].buf;
  for (int i = 0; i < m->nbufs; i++) {
    if (i == in_buf) continue; /* the input lives in the upload slots */
    size_t e = (size_t)b->n * cg_buf_elems(m, i);
    b->act[i] = cg_calloc(e, sizeof(float), "activations");
    b->dact[i] = cg_calloc(e, sizeof(float), "activation gradients");
  }
  size_t px = (size_t)b->n * m->height * m->width;
  for (int i = 0; i < CG_DEV_SLOTS; i++) {
    b->x[i] = cg_calloc(px * m->in_c, sizeof(float), "input slot");
    b->y[i] = cg_calloc(px, 1, "mask slot");
    b->w[i] = cg_calloc((size_t)b->n, sizeof(float), "weight slot");
  }
  for (int i = 0; i < CG_MAX_INFLIGHT; i++) b->pred[i] = cg_calloc(px, 1, "prediction");
  b->scratch = cg_calloc(3 * (size_t)m->height * m->width, sizeof(float), "feature scratch");
  b->bytes = (3 + !!b->gacc + !!b->ema + adamw) * np * sizeof(float) +
             CG_DEV_SLOTS * (px * (m->in_c * sizeof(float) + 1)) + CG_MAX_INFLIGHT * px +
             (b->norm_part ? (np / CG_NORM_CHUNK + 1) * sizeof(double) : 0);
  for (int i = 0; i < m->nbufs; i++)
    if (b->act[i]) b->bytes += 2 * sizeof(float) * (size_t)b->n * cg_buf_elems(m, i);
  if (cfg->threads > 0) {
    omp_set_num_threads(cfg->threads);
#ifdef COGPU_HAVE_OPENBLAS
    openblas_set_num_threads(cfg->threads);
#endif
  }
  *out = b;
  return 0;
}

static int cpu_set_params(cg_backend_t *b, const float *p) {
  memcpy(b->params, p, sizeof(float) * b->m->nparams);
  return 0;
}

static int cpu_get_params(cg_backend_t *b, float *p) {
  memcpy(p, b->params, sizeof(float) * b->m->nparams);
  return 0;
}

static int cpu_get_ema(cg_backend_t *b, float *e) {
  CG_ASSERT(b->ema != NULL);
  memcpy(e, b->ema, sizeof(float) * b->m->nparams);
  return 0;
}

static int cpu_set_ema(cg_backend_t *b, const float *e) {
  CG_ASSERT(b->ema != NULL);
  memcpy(b->ema, e, sizeof(float) * b->m->nparams);
  return 0;
}

/* The layers read b->params at each use: exchanging the pointers exchanges the weights. */
static int cpu_swap_ema(cg_backend_t *b) {
  CG_ASSERT(b->ema != NULL);
  float *t = b->params;
  b->params = b->ema;
  b->ema = t;
  return 0;
}

static int cpu_get_grads(cg_backend_t *b, float *g) {
  memcpy(g, b->grads, sizeof(float) * b->m->nparams);
  return 0;
}

static int cpu_get_opt_state(cg_backend_t *b, float *m, float *v, float *scale,
                             int64_t *good_steps) {
  memcpy(m, b->adam_m, sizeof(float) * b->m->nparams);
  if (b->adam_v) memcpy(v, b->adam_v, sizeof(float) * b->m->nparams);
  else memset(v, 0, sizeof(float) * b->m->nparams);
  *scale = 1.0f;
  *good_steps = 0;
  return 0;
}

static int cpu_set_opt_state(cg_backend_t *b, const float *m, const float *v, float scale,
                             int64_t good_steps) {
  (void)scale;
  (void)good_steps;
  memcpy(b->adam_m, m, sizeof(float) * b->m->nparams);
  if (b->adam_v) memcpy(b->adam_v, v, sizeof(float) * b->m->nparams);
  return 0;
}

/* The "device" of this backend is its compute threads: samples the helpers left as RGB8 (the
 * CPU/GPU split) are normalised and featurised here, as the GPU would. */
static int cpu_upload(cg_backend_t *b, int slot, const cg_batch_t *batch) {
  const cg_model_t *m = b->m;
  CG_ASSERT(slot >= 0 && slot < CG_DEV_SLOTS);
  CG_ASSERT(batch->n == b->n && batch->h == m->height && batch->w == m->width &&
            batch->c == m->in_c && batch->n_cpu >= 0 && batch->n_cpu <= batch->n);
  CG_ASSERT(batch->n_cpu == batch->n || batch->rgb != NULL);
  size_t hw = (size_t)m->height * m->width, px = (size_t)b->n * hw;
  b->t_upload[slot][0] = cg_now();
  const uint8_t *rgb = batch->n_cpu < batch->n ? batch->rgb + (size_t)batch->n_cpu * hw * 3 : NULL;
  cg_prep_input_cpu(batch->x, batch->n_cpu, rgb, b->n, m->height, m->width, b->x[slot], b->scratch);
  memcpy(b->y[slot], batch->y, px);
  memcpy(b->w[slot], batch->weight, sizeof(float) * b->n);
  b->pred_dst[slot] = batch->pred;
  b->metrics_dev[slot] = batch->metrics_on_device;
  b->t_upload[slot][1] = cg_now();
  return 0;
}

static int cpu_upload_wait(cg_backend_t *b, int slot) {
  (void)b;
  (void)slot;
  return 0;
}

static cg_view_t view_of(cg_backend_t *b, int tensor, float *const *bufs, int slot) {
  const cg_model_t *m = b->m;
  const cg_tensor_t *t = &m->tensors[tensor];
  float *base = (tensor == m->input_tensor) ? b->x[slot] : bufs[t->buf];
  cg_view_t v = {base + t->c_off, b->n, t->h, t->w, t->c, t->ld};
  return v;
}

static void forward(cg_backend_t *b, int slot) {
  const cg_model_t *m = b->m;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    cg_view_t x = view_of(b, l->in, b->act, slot), y = view_of(b, l->out, b->act, slot);
    switch (l->op) {
      case CG_OP_CONV:
        cg_cpu_conv_fwd(&x, b->params + l->w_off, b->params + l->b_off, l->k, l->relu, &y, &b->ws);
        break;
      case CG_OP_UPCONV:
        cg_cpu_upconv_fwd(&x, b->params + l->w_off, b->params + l->b_off, &y, &b->ws);
        break;
      case CG_OP_POOL:
        cg_cpu_maxpool_fwd(&x, &y);
        break;
    }
  }
}

static cg_step_out_t *push_result(cg_backend_t *b, int slot, uint8_t **pred) {
  CG_ASSERT(b->qcount < CG_MAX_INFLIGHT);
  int i = (b->qhead + b->qcount) % CG_MAX_INFLIGHT;
  b->qcount++;
  memset(&b->q[i], 0, sizeof b->q[i]);
  b->q[i].t_h2d[0] = b->q[i].t_compute[0] = b->q[i].t_d2h[0] = 1; /* none (t1 < t0) */
  *pred = b->pred_dst[slot] ? b->pred_dst[slot] : b->pred[i];
  b->q[i].pred = *pred;
  b->q[i].loss_scale = 1.0f;
  b->q[i].busy_ms = -1;
  b->q[i].comm_wait_ms = -1;
  b->q[i].grad_norm = -1;
  return &b->q[i];
}

/* Class ids of n pixels: binary logit > 0; K >= 2 the first of the largest K logits. */
static void predict_mask(const float *logits, size_t n, int K, uint8_t *pred) {
  if (K == 1) {
    for (size_t i = 0; i < n; i++) pred[i] = logits[i] > 0.0f;
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) pred[i] = cg_cpu_class_of(logits + i * K, K);
}

/* metrics_on_device: the counts of the real samples, on the compute thread. */
static void device_metrics(cg_backend_t *b, int slot, const uint8_t *pred, cg_step_out_t *out) {
  if (!b->metrics_dev[slot]) return;
  size_t hw = (size_t)b->m->height * b->m->width;
  out->has_conf = 1;
  if (b->nclass > 1) {
    int64_t *ck = b->confk[out - b->q];
    memset(ck, 0, sizeof(int64_t) * b->nclass * b->nclass);
    for (int i = 0; i < b->n; i++)
      if (b->w[slot][i] > 0)
        cg_confk_add(ck, b->nclass, pred + i * hw, b->y[slot] + i * hw, hw, b->ignore);
    out->confk = ck;
    return;
  }
  cg_confusion_t c = {0, 0, 0, 0};
  for (int i = 0; i < b->n; i++)
    if (b->w[slot][i] > 0)
      cg_confusion_add_ignore(&c, pred + i * hw, b->y[slot] + i * hw, hw, b->ignore);
  out->conf[0] = c.tp;
  out->conf[1] = c.fp;
  out->conf[2] = c.fn;
  out->conf[3] = c.tn;
}

static int cpu_eval_step(cg_backend_t *b, int slot) {
  const cg_model_t *m = b->m;
  uint8_t *pred;
  cg_step_out_t *out = push_result(b, slot, &pred);
  forward(b, slot);
  const float *logits = b->act[m->tensors[m->logits_tensor].buf];
  size_t hw = (size_t)m->height * m->width;
  cg_loss_opt_t lo = b->lo;
  lo.ohem = 0.0f; /* validation scores every pixel */
  out->loss = cg_cpu_loss_k(logits, b->y[slot], b->w[slot], b->n, hw, b->nclass, b->ignore, 1.0f,
                            &lo, NULL, NULL);
  predict_mask(logits, hw * b->n, b->nclass, pred);
  device_metrics(b, slot, pred, out);
  return 0;
}

/* Adds the kept micro-batch gradient sum of layer l into the step's gradients (train_step of
 * an accumulated step). */
static void add_kept(cg_backend_t *b, const cg_layer_t *l) {
  const size_t w = l->w_off, n = l->w_len, bo = l->b_off, nb = l->b_len;
  for (size_t k = 0; k < n; k++) b->grads[w + k] += b->gacc[w + k];
  for (size_t k = 0; k < nb; k++) b->grads[bo + k] += b->gacc[bo + k];
}

/* Forward, loss, results and backward of the batch in slot into out. final: a step's last (or
 * only) batch: the kept sum of its earlier micro-batches is added layer by layer, and each
 * bucket is posted for the all-reduce as backward completes it. */
static void fwd_bwd(cg_backend_t *b, int slot, cg_step_out_t *out, uint8_t *pred, int final) {
  const cg_model_t *m = b->m;
  const cg_buckets_t *bk = b->cfg.buckets;
  struct cg_gsync *gs = final ? b->cfg.gsync : NULL;
  forward(b, slot);
  const int lbuf = m->tensors[m->logits_tensor].buf;
  const float *logits = b->act[lbuf];
  size_t hw = (size_t)m->height * m->width;
  out->loss = cg_cpu_loss_k(logits, b->y[slot], b->w[slot], b->n, hw, b->nclass, b->ignore, 1.0f,
                            &b->lo, b->dact[lbuf], NULL);
  double tp0 = cg_now();
  /* the cpu backend's "d2h": results into host memory */
  predict_mask(logits, hw * b->n, b->nclass, pred);
  if (b->cfg.trace) {
    out->t_d2h[0] = tp0;
    out->t_d2h[1] = cg_now();
  }
  device_metrics(b, slot, pred, out);
  if (b->steps == b->cfg.fault_nan_step) { /* test-only fault: a NaN loss and gradient */
    out->loss = NAN;
    b->dact[lbuf][0] = NAN;
  }
  out->t_bwd[0] = cg_now();
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const cg_layer_t *l = &m->layers[i];
    cg_view_t x = view_of(b, l->in, b->act, slot), y = view_of(b, l->out, b->act, slot);
    cg_view_t dy = view_of(b, l->out, b->dact, slot), dx = view_of(b, l->in, b->dact, slot);
    const cg_view_t *pdx = l->need_dx ? &dx : NULL;
    float *dw = b->grads + l->w_off, *db = b->grads + l->b_off;
    switch (l->op) {
      case CG_OP_CONV:
        cg_cpu_conv_bwd(&x, b->params + l->w_off, &y, &dy, l->k, l->relu, pdx, l->accum_dx, dw, db,
                        &b->ws);
        break;
      case CG_OP_UPCONV:
        cg_cpu_upconv_bwd(&x, b->params + l->w_off, &dy, pdx, l->accum_dx, dw, db, &b->ws);
        break;
      case CG_OP_POOL:
        if (pdx) cg_cpu_maxpool_bwd(&x, &y, &dy, pdx, l->accum_dx);
        break;
    }
    if (!final) continue;
    if (b->kept) add_kept(b, l);
    const int bucket = bk ? bk->ready_after[i] : -1;
    if (bucket >= 0 && out->nready < CG_MAX_BUCKETS) out->t_ready[out->nready++] = cg_now();
    if (gs) {
      if (bucket >= 0) cg_gsync_post(gs, bucket, b->grads);
      cg_gsync_progress(gs);
    }
  }
  out->t_bwd[1] = cg_now();
}

/* The step's stream times for --trace-out: the upload, the whole call (t0 on), the results. */
static void trace_times(cg_backend_t *b, int slot, double t0, cg_step_out_t *out) {
  if (!b->cfg.trace) return;
  out->t_h2d[0] = b->t_upload[slot][0]; /* the upload copy, on the driving thread */
  out->t_h2d[1] = b->t_upload[slot][1];
  out->t_compute[0] = t0;
  out->t_compute[1] = cg_now();
}

static int cpu_accum_step(cg_backend_t *b, int slot) {
  CG_ASSERT(b->gacc != NULL); /* cfg.accum > 1 */
  uint8_t *pred;
  cg_step_out_t *out = push_result(b, slot, &pred);
  double t0 = cg_now();
  fwd_bwd(b, slot, out, pred, 0);
  const size_t np = b->m->nparams;
  if (b->kept) {
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < np; k++) b->gacc[k] += b->grads[k];
  } else {
    memcpy(b->gacc, b->grads, sizeof(float) * np);
  }
  b->kept++;
  out->busy_ms = 1e3 * (cg_now() - t0);
  out->comm_wait_ms = 0;
  trace_times(b, slot, t0, out);
  return 0;
}

static int cpu_train_step(cg_backend_t *b, int slot, const cg_optim_t *opt) {
  const cg_model_t *m = b->m;
  struct cg_gsync *gs = b->cfg.gsync;
  uint8_t *pred;
  cg_step_out_t *out = push_result(b, slot, &pred);
  double t0 = cg_now();
  fwd_bwd(b, slot, out, pred, 1);
  b->kept = 0;
  double comm_wait = 0;
  if (gs) {
    comm_wait = cg_gsync_wait(gs);
    out->grad_bytes_reduced = cg_gsync_take_bytes(gs);
  }
  out->comm_wait_ms = 1e3 * comm_wait;
  if (gs && b->cfg.trace) { /* the all-reduce ran from the first post (bucket 0 ready) to the
                            * end of the wait */
    out->ncomm = 1;
    out->t_comm[0][0] = out->nready > 0 ? out->t_ready[0] : cg_now() - comm_wait;
    out->t_comm[0][1] = cg_now();
  }
  out->t_opt[0] = cg_now();
  float grad_mul = 1.0f;
  if (b->cfg.clip_norm > 0) {
    const double norm = cg_cpu_grad_norm(b->grads, m->nparams, 1.0f, b->norm_part);
    out->grad_norm = (float)norm;
    grad_mul = cg_clip_coef(norm, b->cfg.clip_norm);
  }
  if (b->cfg.optim == CG_OPTIM_SGD)
    cg_cpu_sgd(b->params, b->grads, b->adam_m, m->nparams, opt->lr, b->cfg.momentum,
               b->cfg.nesterov, opt->weight_decay, grad_mul);
  else
    cg_cpu_adamw(b->params, b->grads, b->adam_m, b->adam_v, m->nparams, opt->lr, opt->beta1,
                 opt->beta2, opt->eps, opt->weight_decay, opt->t, grad_mul);
  if (b->ema) cg_cpu_ema(b->ema, b->params, m->nparams, opt->ema_w);
  out->t_opt[1] = cg_now();
  /* On the CPU backend the "device" is these threads: busy = the step minus comm waits. */
  out->busy_ms = 1e3 * (cg_now() - t0 - comm_wait);
  trace_times(b, slot, t0, out);
  b->steps++;
  return 0;
}

static size_t cpu_mem_bytes(cg_backend_t *b) { return b->bytes; }

/* Steps run synchronously: the logits buffer holds the last step's until the next one. */
static int cpu_get_logits(cg_backend_t *b, float *out) {
  const cg_model_t *m = b->m;
  const cg_tensor_t *t = &m->tensors[m->logits_tensor];
  const float *src = b->act[t->buf] + t->c_off;
  size_t px = (size_t)b->n * t->h * t->w;
  for (size_t p = 0; p < px; p++)
    memcpy(out + p * t->c, src + p * t->ld, sizeof(float) * t->c);
  return 0;
}

static int cpu_fetch(cg_backend_t *b, cg_step_out_t *out) {
  CG_ASSERT(b->qcount > 0);
  *out = b->q[b->qhead];
  b->qhead = (b->qhead + 1) % CG_MAX_INFLIGHT;
  b->qcount--;
  return 0;
}

const cg_backend_ops_t cg_backend_cpu = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .set_params = cpu_set_params,
    .get_params = cpu_get_params,
    .get_grads = cpu_get_grads,
    .get_opt_state = cpu_get_opt_state,
    .set_opt_state = cpu_set_opt_state,
    .upload = cpu_upload,
    .upload_wait = cpu_upload_wait,
    .train_step = cpu_train_step,
    .accum_step = cpu_accum_step,
    .eval_step = cpu_eval_step,
    .fetch = cpu_fetch,
    .mem_bytes = cpu_mem_bytes,
    .host_alloc = malloc,
    .host_free = free,
    .get_logits = cpu_get_logits,
    .get_ema = cpu_get_ema,
    .set_ema = cpu_set_ema,
    .swap_ema = cpu_swap_ema,
};

const char *cg_precision_name(cg_precision_t p) {
  switch (p) {
    case CG_PREC_FP32: return "fp32";
    case CG_PREC_BF16: return "bf16";
    case CG_PREC_FP16: return "fp16";
  }
  return "?";
}
