/* train.c: the training loop, the same for every backend and rank count.
 *
 * Per step k: the backend runs step k (asynchronously on a GPU) while the host fetches the
 * results of step k-1 (loss, predicted mask -> confusion counts), takes batch k+1 from the
 * loader's helpers and uploads it. Batches stay held until their results are fetched, so the
 * loader ring has prefetch + 2 slots. Gradients are all-reduced inside train_step by buckets.
 *
 * What a run needs before its first step is made by run_setup.c (start-up problems with the
 * user's input are agreed by all ranks and reported once by rank 0 with exit code 2) and what
 * it prints by train_report.c. A bad sample met later by a helper thread ends the job with exit
 * code 2 from that rank (loader.h); --check-data finds them all before the first step.
 *
 * Reliability (issue 6). At every step boundary the ranks agree, with one small all-reduce,
 * on whether any of them got a stop signal or saw a fatal step (NaN loss, too many fp16
 * skips); a stop drains the step in flight so that rank 0 checkpoints a state every rank has
 * finished and checked. Checkpoints are written with no step in flight (drained like the
 * reports), so writing them changes nothing in the numbers: a resumed run continues bit for
 * bit. Resume is read by rank 0 and broadcast (no shared file system needed); the position
 * rules for another global batch are in README.md and cg_ckpt_map_position(). Every 16 steps
 * the ranks exchange their last completed step for the watchdog's message (guard.h). */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "augment.h"      /* CG_FLIP_*: --flip's modes */
#include "backend.h"      /* cg_backend_ops_t: upload, train/eval steps, fetch */
#include "ckpt.h"         /* cg_ckpt_write: checkpoints */
#include "run_settings.h" /* cg_settings_json: the settings each checkpoint stores */
#include "feat.h"
#include "guard.h"        /* cg_guard_*: watchdog beats, stop signals, step health */
#include "loader.h"       /* cg_loader_*: helper threads, pinned batch ring */
#include "lrfind.h"       /* cg_lrfind_*: --lr-find, the learning-rate range test */
#include "log.h"          /* cg_fatal, CG_CHECK_MPI, cg_now */
#include "nvtx.h"         /* cg_nvtx_*: profiler ranges */
#include "run.h"          /* cg_run_t, cg_run_setup/teardown: the run's state */
#include "topo.h"         /* cg_topo_report_view, cg_topo_pin_driver */
#include "tboard.h"       /* cg_tb_close: --tensorboard */
#include "trace.h"        /* cg_trace_*: --trace-out timeline */
#include "train_report.h" /* cg_report_*, cg_acc_t: every line the run prints */
#include "val_whole.h"    /* cg_validate_whole: --val-mode whole and full */

/* ---- fetching results, validation ------------------------------------------------------------ */

/* The step's phases on the compute track: forward, backward with an instant "bucket J ready
 * N" as bucket J's N gradients are complete, the optimizer step, named for --optimizer: adamw or
 * sgd (read back by `cogpu-bench scaling --trace`). */
static void trace_phases(cg_trace_t *t, const cg_step_out_t *o, const cg_buckets_t *bk,
                         int64_t step, const char *optimizer) {
  if (o->t_bwd[0] > 0 && o->t_compute[0] > 0)
    cg_trace_event_step(t, CG_TRACK_COMPUTE, "forward", o->t_compute[0], o->t_bwd[0], step);
  if (o->t_bwd[1] >= o->t_bwd[0] && o->t_bwd[0] > 0)
    cg_trace_event_step(t, CG_TRACK_COMPUTE, "backward", o->t_bwd[0], o->t_bwd[1], step);
  for (int j = 0; j < o->nready && j < bk->n; j++) {
    char name[32];
    snprintf(name, sizeof name, "bucket %d ready %zu", j, bk->len[j]);
    if (o->t_ready[j] > 0)
      cg_trace_event_step(t, CG_TRACK_COMPUTE, name, o->t_ready[j], o->t_ready[j], step);
  }
  if (o->t_opt[1] >= o->t_opt[0] && o->t_opt[0] > 0)
    cg_trace_event_step(t, CG_TRACK_COMPUTE, optimizer, o->t_opt[0], o->t_opt[1], step);
}

/* The backend's stream activity of a fetched step on the timeline, under that step's number (the
 * driving thread is on the next step by then). */
static void trace_streams(cg_trace_t *t, const cg_step_out_t *o, const cg_buckets_t *bk,
                          int64_t step, const char *optimizer) {
  if (!t) return;
  trace_phases(t, o, bk, step, optimizer);
  if (o->t_h2d[1] >= o->t_h2d[0] && o->t_h2d[0] > 0)
    cg_trace_event_step(t, CG_TRACK_H2D, "batch upload", o->t_h2d[0], o->t_h2d[1], step);
  if (o->t_compute[1] >= o->t_compute[0] && o->t_compute[0] > 0)
    cg_trace_event_step(t, CG_TRACK_COMPUTE, "train step", o->t_compute[0], o->t_compute[1],
                        step);
  for (int j = 0; j < o->ncomm && j < CG_MAX_BUCKETS; j++)
    if (o->t_comm[j][1] >= o->t_comm[j][0] && o->t_comm[j][0] > 0)
      cg_trace_event_step(t, CG_TRACK_COMM, "all-reduce", o->t_comm[j][0], o->t_comm[j][1],
                          step);
  if (o->t_d2h[1] >= o->t_d2h[0] && o->t_d2h[0] > 0)
    cg_trace_event_step(t, CG_TRACK_D2H, "results", o->t_d2h[0], o->t_d2h[1], step);
}

/* Fetches the results of the oldest submitted step (whose host batch is pb), accounts them and
 * gives the batch back to the loader. train: a training batch; the last micro-batch of its step
 * (--grad-accum; the only one without) closes the step: judged by the step health with the
 * step's whole loss, counted once. */
static void collect(cg_run_t *r, cg_loader_t *ld, cg_host_batch_t *pb, cg_acc_t *a, int train) {
  cg_step_out_t out;
  double t_f0 = cg_now();
  cg_nvtx_push("results");
  r->ops->fetch(r->be, &out);
  cg_nvtx_pop();
  if (train) {
    cg_trace_event(r->trace, CG_TRACK_DRIVER, "wait for results", t_f0, cg_now());
    trace_streams(r->trace, &out, &r->buckets, pb->step + 1, r->cfg->optimizer);
  }
  const int closes = !train || pb->micro + 1 >= r->cfg->grad_accum;
  if (train) r->bad_trained += pb->nbad;
  double loss = out.loss;
  if (train && !closes) { /* an earlier micro-batch: its loss waits for the step's verdict */
    r->micro_loss += out.loss;
  } else if (train) {
    loss += r->micro_loss;
    r->micro_loss = 0;
  }
  int skipped = 0;
  if (train && closes) {
    const int64_t step = pb->step + 1;
    r->step_loss = loss;
    /* --lr-find: a loss that is no longer finite ends the search, not the job */
    if (!r->cfg->lr_find || isfinite(loss))
      skipped = cg_guard_health_step(&r->health, step, loss, out.skipped);
    r->last_done = step;
    cg_guard_done(r->guard, step);
    r->loss_scale = out.loss_scale;
    if (skipped) cg_report_skip(r, step, out.loss_scale);
  }
  /* The loss of a skipped step may be inf/NaN: it would make the window's mean meaningless. */
  if (closes && (!skipped || isfinite(loss))) {
    a->loss += loss;
    a->last_loss = loss;
  }
  if (!skipped || isfinite(out.loss)) a->loss_samples += out.loss * pb->global;
  if (train && closes && !skipped && isfinite(out.grad_norm) && out.grad_norm >= 0) {
    a->gnorm_sum += out.grad_norm; /* the same on every rank: after the all-reduce */
    if (out.grad_norm > a->gnorm_max) a->gnorm_max = out.grad_norm;
    a->gnorm_last = out.grad_norm;
    a->gnorm_steps++;
    a->clipped += cg_clip_coef(out.grad_norm, (float)r->cfg->clip_grad_norm) < 1.0f;
  }
  if (out.comm_wait_ms > 0) a->comm += 1e-3 * out.comm_wait_ms;
  if (train) r->grad_bytes += out.grad_bytes_reduced;
  if (out.busy_ms >= 0) {
    a->busy += 1e-3 * out.busy_ms;
    a->busy_measured = 1;
    r->busy_total += 1e-3 * out.busy_ms;
  }
  a->h2d += out.h2d_bytes;
  a->d2h += out.d2h_bytes;
  a->local_samples += pb->real;
  if (closes) {
    a->samples += pb->global;
    a->steps++;
  }
  if (out.has_conf) { /* the device counted */
    cg_confusion_t cf = {out.conf[0], out.conf[1], out.conf[2], out.conf[3]};
    cg_confusion_merge(&a->conf, &cf);
    if (a->confk && out.confk) cg_confk_merge(a->confk, out.confk, r->model.nclass);
  }
  /* Otherwise the helpers count pb->pred against its masks before reusing the slot. */
  cg_loader_release(ld, pb, !out.has_conf);
}

/* Adds the counts the helpers finished since the last call. */
static void take_conf(cg_loader_t *ld, cg_acc_t *a) {
  cg_confusion_t cf;
  cg_loader_take_confusion_k(ld, &cf, a->confk);
  cg_confusion_merge(&a->conf, &cf);
}

/* The batch as the backend's upload takes it; metrics_on_device asks the backend for the
 * confusion counts instead of (or besides) the predicted mask. */
static cg_batch_t host_batch_view(const cg_host_batch_t *b, int metrics_on_device) {
  cg_batch_t v = {b->n, b->h, b->w, b->c, b->x, b->y, b->weight, b->n_cpu, b->rgb, b->pred,
                  metrics_on_device};
  return v;
}

static void upload(cg_run_t *r, int64_t k, const cg_host_batch_t *b) {
  cg_batch_t v = host_batch_view(b, r->split.metrics_dev);
  r->ops->upload(r->be, (int)(k % CG_DEV_SLOTS), &v);
}

/* Batch-slot memory from the backend (pinned for the CUDA backend). */
static void *slot_alloc(size_t bytes, void *ctx) {
  return ((const cg_backend_ops_t *)ctx)->host_alloc(bytes);
}

static void slot_free(void *p, void *ctx) { ((const cg_backend_ops_t *)ctx)->host_free(p); }

/* What the training and the validation loaders share; the caller sets the rest. */
static cg_loader_cfg_t loader_cfg(const cg_run_t *r, cg_source_t *src) {
  const cg_config_t *cfg = r->cfg;
  cg_loader_cfg_t lc = {0};
  lc.source = src;
  lc.nsamples = src->count;
  lc.ranks = r->c->size;
  lc.rank = r->c->rank;
  lc.batch = cfg->batch;
  lc.seed = cfg->seed;
  lc.skip_bad = cfg->skip_bad;
  lc.bad_hint = cfg->check_data ? CG_BAD_SAMPLE_HINT_CHECKED : CG_BAD_SAMPLE_HINT;
  lc.nclass = cfg->num_classes;
  lc.ignore_index = cfg->ignore_index;
  lc.nfeat = CG_NFEAT;
  lc.cpu_count = r->split.k;
  lc.alloc = slot_alloc;
  lc.free = slot_free;
  lc.alloc_ctx = (void *)r->ops;
  lc.workers = r->workers;
  lc.nslots = cfg->prefetch + 2;
  lc.worker_cpus = r->helper_cpus;
  return lc;
}

/* One pass over the validation set on every rank; counts summed over ranks. */
static cg_val_t validate(cg_run_t *r) {
  cg_source_t *val_src = r->val_src;
  cg_loader_cfg_t lc = loader_cfg(r, val_src);
  lc.nsteps = -1; /* one epoch, in order, as it is */
  cg_loader_t *ld = cg_loader_create(&lc);
  cg_acc_t a;
  memset(&a, 0, sizeof a);
  const int K = r->model.nclass;
  if (K > 1) a.confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
  cg_host_batch_t *held[2] = {NULL, NULL};
  cg_host_batch_t *b = cg_loader_next(ld, NULL);
  int64_t k = 0;
  cg_val_poll_t vp;
  memset(&vp, 0, sizeof vp);
  if (b) upload(r, 0, b);
  for (; b; k++) {
    cg_guard_beat(r->guard, r->last_done, "validation");
    r->ops->eval_step(r->be, (int)(k % CG_DEV_SLOTS));
    if (r->cfg->test_val_ms > 0) usleep((useconds_t)(r->cfg->test_val_ms * 1e3));
    held[k % 2] = b;
    if (k >= 1) collect(r, ld, held[(k - 1) % 2], &a, 0);
    /* a stop signal on any rank ends the pass here (a preempted job has seconds to write its
     * checkpoint) */
    b = cg_val_poll(r, &vp, 0) ? NULL : cg_loader_next(ld, NULL);
    if (b) upload(r, k + 1, b);
  }
  if (k >= 1) collect(r, ld, held[(k - 1) % 2], &a, 0);
  take_conf(ld, &a);
  const int64_t vbad = cg_loader_take_bad(ld);
  cg_loader_destroy(ld);
  cg_val_poll_finish(r, &vp);
  /* The last global batch may be short: each step's mean weighs its global count. A sample
   * --skip-bad left out weighs nothing: the mean is over the images scored. */
  return cg_val_gather(r, a.conf, a.confk, vbad, a.loss_samples, vp.stop);
}

/* ---- reliability: the step agreement, checkpoints and stops ---------------------------------- */

/* What the ranks agreed at a step boundary. */
typedef struct {
  int sig, sig_rank;  /* a stop signal and the lowest rank that got one; 0 none */
  cg_bad_t bad;       /* the earliest fatal step over the ranks (lowest rank first) */
  int64_t bad_step;
  int bad_rank;
} verdict_t;

/* Packing of the verdicts into the int64 maximum: rank < 2^20, step < 2^41. */
#define RANK_BITS 20
#define TABLE_EVERY 16

/* "0:60 1:60 2:59" from the table, for messages. */
static void fmt_table(const cg_run_t *r, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < r->c->size && k + 32 < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%d:%lld", i ? " " : "", i, (long long)r->table[i]);
}

/* A failed collective at a step boundary most likely means a peer died: say where we were. */
static void check_peer(const cg_run_t *r, int rc, const char *call, int64_t step) {
  if (rc == MPI_SUCCESS) return;
  char es[MPI_MAX_ERROR_STRING], tab[1024];
  int len = 0;
  if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "MPI error %d", rc);
  fmt_table(r, tab, sizeof tab);
  cg_fatal(__FILE__, __LINE__, call,
           "%s after step %lld (a peer rank has probably died); last completed step of each rank "
           "as last known here (rank:step): %s", es, (long long)step, tab);
}
#define CHECK_PEER(r, step, call) check_peer((r), (call), #call, (step))

/* The one small all-reduce of every step boundary. */
static verdict_t agree_step(cg_run_t *r, int64_t step) {
  const cg_comm_t *c = r->c;
  const int sig = cg_guard_signal(r->guard);
  int64_t v[2];
  /* max of (size - rank) picks the lowest rank; max of -key the earliest bad step */
  v[0] = sig ? ((int64_t)(c->size - c->rank) << 8) | (sig & 0xff) : 0;
  v[1] = r->health.bad ? -((r->health.bad_step << (RANK_BITS + 2)) | ((int64_t)c->rank << 2) |
                           (int64_t)r->health.bad)
                       : INT64_MIN;
  CHECK_PEER(r, step, MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, c->world));
  verdict_t vd;
  memset(&vd, 0, sizeof vd);
  if (v[0]) {
    vd.sig = (int)(v[0] & 0xff);
    vd.sig_rank = c->size - (int)(v[0] >> 8);
  }
  if (v[1] != INT64_MIN) {
    const int64_t key = -v[1];
    vd.bad = (cg_bad_t)(key & 3);
    vd.bad_rank = (int)((key >> 2) & ((1 << RANK_BITS) - 1));
    vd.bad_step = key >> (RANK_BITS + 2);
  }
  return vd;
}

/* Every rank's last completed step, for the watchdog's message. */
static void exchange_table(cg_run_t *r, int64_t step) {
  CHECK_PEER(r, step, MPI_Allgather(&r->last_done, 1, MPI_INT64_T, r->table, 1, MPI_INT64_T,
                                    r->c->world));
  cg_guard_set_table(r->guard, r->table);
}

static void describe_last(const cg_run_t *r, char *buf, size_t len) {
  if (r->last_ckpt[0] && r->resumed && !r->exact && r->last_ckpt_step == r->s0)
    snprintf(buf, len, "%s (the one this run resumed from; its step %lld in this run's steps)",
             r->last_ckpt, (long long)r->s0);
  else if (r->last_ckpt[0])
    snprintf(buf, len, "%s (step %lld)", r->last_ckpt, (long long)r->last_ckpt_step);
  else if (r->ckpt_dir)
    snprintf(buf, len, "none (nothing written to %s yet)", r->ckpt_dir);
  else
    snprintf(buf, len, "none (no --checkpoint-dir)");
}

/* What the checkpoint of `step` says about itself (ckpt.h), all but the optimizer's loss scale
 * and good-step count, which the backend reports with the moments. */
static void ckpt_info_of(const cg_run_t *r, int64_t step, cg_ckpt_info_t *in) {
  const cg_config_t *cfg = r->cfg;
  memset(in, 0, sizeof *in);
  in->shape = r->shape;
  in->precision = (int)r->prec;
  in->step = step;
  in->steps_per_epoch = r->spe;
  in->epoch = step / r->spe;
  in->epoch_samples = (step % r->spe) * r->global;
  in->train_samples = r->ntrain;
  in->ranks = r->c->size;
  in->batch = cfg->batch * cfg->grad_accum; /* samples per rank per step: ranks x it = global */
  in->seed = cfg->seed;
  in->opt_t = r->opt_t0 + (step - r->s0);
  in->total_steps = r->total;
  in->skipped_steps = r->skipped0 + r->health.skipped;
  in->lr = step == 0                     ? cfg->lr
           : r->resumed && step == r->s0 ? r->ck.lr /* nothing trained: the file's */
                                         : cg_run_lr_trained(r, step);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now); /* the order of a run's files for --resume DIR */
  in->unix_time = (int64_t)now.tv_sec;
  in->unix_nsec = (uint32_t)now.tv_nsec;
  in->run_id = r->run_id;
  in->ignore_index = cfg->ignore_index;
  cg_settings_json(cfg, in->settings, sizeof in->settings); /* `train --resume DIR` alone */
  if (r->data_names[0]) /* a resume tells whether the data changed */
    cg_settings_add(in->settings, sizeof in->settings, "data-names", r->data_names);
  static int sides_warned; /* rank 0 writes checkpoints: said once a run */
  if (r->data_sides[0] && /* predict --resize auto: the scale training saw the images at */
      cg_settings_add(in->settings, sizeof in->settings, "data-sides", r->data_sides) &&
      !sides_warned++)
    cg_log_warn("the checkpoint's settings are full (long paths?): the training images' sizes "
                "are not stored, so predict --resize auto cannot tell their scale; predict with "
                "--resize fit");
  const char *watched = cg_run_best_by_loss(r) ? "loss" : "iou";
  static int es_warned, pl_warned;
  if (cfg->early_stop_patience > 0 && !isnan(r->es_best)) { /* a resume goes on counting */
    const double es[3] = {r->es_best, (double)r->es_best_step, (double)r->es_wait};
    if (cg_settings_add_state(in->settings, sizeof in->settings, "early-stop-state", watched, es,
                              3) && !es_warned++)
      cg_log_warn("the checkpoint's settings are full (long paths?): early stopping's count is "
                  "not stored, so a resume starts it afresh");
  }
  if (!strcmp(cfg->lr_schedule, "plateau")) { /* a resume goes on with the rate and counts */
    const double pl[4] = {r->lr_scale, r->pl_best, (double)r->pl_bad, (double)r->pl_cool};
    if (cg_settings_add_state(in->settings, sizeof in->settings, "plateau-state", watched, pl,
                              4) && !pl_warned++)
      cg_log_warn("the checkpoint's settings are full (long paths?): --lr-schedule plateau's "
                  "state is not stored, so a resume starts it afresh at --lr");
  }
  in->have_val = r->have_val && r->val_step == step;
  in->val_step = step;
  in->val_loss = r->val_loss;
  in->val_iou = r->val_iou;
  in->best_by = !strcmp(cfg->best_metric, "val_loss") ? CG_CKPT_BEST_LOSS : CG_CKPT_BEST_IOU;
  if (r->base_src && r->base_src->npal > 0) { /* palette masks: predict writes the same palette */
    in->npal = r->base_src->npal;
    memcpy(in->palette, r->base_src->palette, 3 * (size_t)in->npal);
  }
}

/* Rank 0 writes the checkpoint of `step` (every step up to it fetched and judged good). Returns
 * 0, or -1 after printing why (the previous checkpoint is intact). Other ranks return 0 at once
 * and go on to the next step, where they wait for rank 0 in the gradient all-reduce. */
static int write_ckpt(cg_run_t *r, int64_t step, int quiet) {
  if (r->c->rank != 0) return 0;
  /* only a state this run reached: a step before its first has no AdamW count or position
   * (its first, resumed with the same global batch: the loaded state itself, as it was) */
  CG_ASSERT(step > r->s0 || (step == r->s0 && (!r->resumed || r->exact)));
  const cg_config_t *cfg = r->cfg;
  cg_guard_beat(r->guard, step, "writing a checkpoint");
  const double t0 = cg_now();
  cg_ckpt_info_t in;
  ckpt_info_of(r, step, &in);
  /* with --ema-decay the model's weights are the average (what predict, export and
   * --init-from read); the training weights follow for --resume (ckpt.h) */
  r->ops->get_params(r->be, r->ema ? r->ck_t : r->ck_p);
  if (r->ema) r->ops->get_ema(r->be, r->ck_p);
  r->ops->get_opt_state(r->be, r->ck_m, r->ck_v, &in.loss_scale, &in.scale_good_steps);
  char path[CG_PATH_MAX + 64], err[1400];
  if (cg_ckpt_write(r->ckpt_dir, &in, r->ck_p, r->ck_m, r->ck_v, r->ema ? r->ck_t : NULL,
                    cfg->keep, path, sizeof path, err, sizeof err)) {
    char last[CG_PATH_MAX + 160];
    describe_last(r, last, sizeof last);
    if (r->bar == 2) fputc('\n', stderr);
    fprintf(stderr, "cogpu-dist: error: checkpoint of step %lld not written: %s; the last good "
            "checkpoint is %s\n", (long long)step, err, last);
    fflush(stderr);
    return -1;
  }
  snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
  r->last_ckpt_step = step;
  if (cfg->test_ckpt_ms > 0) usleep((useconds_t)cfg->test_ckpt_ms * 1000);
  if (!quiet) {
    if (r->bar == 2) fputc('\n', stderr);
    printf("checkpoint: step %lld -> %s (%.1f MB, %.2f s)\n", (long long)step, path,
           (double)(CG_CKPT_HEADER_BYTES + (12 + 4 * r->ema) * r->model.nparams) / 1e6,
           cg_now() - t0);
    fflush(stdout);
  }
  return 0;
}

/* Rank 0's message for a fatal step: nothing is written, the last good checkpoint stays. */
static void say_fatal(const cg_run_t *r, const verdict_t *vd, int64_t step) {
  char last[CG_PATH_MAX + 160];
  describe_last(r, last, sizeof last);
  if (vd->bad == CG_BAD_NAN)
    fprintf(stderr, "cogpu-dist: error: NaN/Inf loss at step %lld (rank %d; %s has no loss "
            "scaling to absorb it): training stopped after step %lld without saving this "
            "state; the last good checkpoint is %s\n", (long long)vd->bad_step, vd->bad_rank,
            cg_precision_name(r->prec), (long long)step, last);
  else
    fprintf(stderr, "cogpu-dist: error: more than %lld consecutive fp16 steps skipped for "
            "inf/NaN gradients (the last at step %lld, loss scale %g): training stopped after "
            "step %lld without saving this state; the last good checkpoint is %s\n",
            (long long)r->cfg->max_bad_steps, (long long)vd->bad_step, (double)r->loss_scale,
            (long long)step, last);
  fflush(stderr);
}

/* The end of a run stopped at a step boundary (every step up to `step` fetched). A stop signal:
 * rank 0 checkpoints that state and everyone exits 0 (128 + signal when there is nowhere to
 * save it, but 0 for --max-time's stop, which only --lr-find has no place for; 1 when the write
 * failed). A fatal step: nothing is written, so the last good
 * checkpoint stays the newest, and the job fails. Returns rank 0's exit code (the caller
 * broadcasts it). */
static int stop_run(cg_run_t *r, const verdict_t *vd, int64_t step) {
  const int root = r->c->rank == 0;
  char last[CG_PATH_MAX + 160];
  if (root && r->bar == 2) fputc('\n', stderr);
  if (vd->bad) {
    if (root) say_fatal(r, vd, step);
    if (root) /* --stats-out ends here: cogpu-monitor stops following */
      cg_stats_stopped(r->stats, step, r->total,
                       vd->bad == CG_BAD_NAN ? "a NaN/Inf loss" : "too many skipped steps");
    return 1;
  }
  const char *name = cg_guard_signal_name(vd->sig);
  int code = vd->sig == CG_GUARD_MAX_TIME ? 0 : 128 + vd->sig; /* the time asked for: no error */
  if (r->ckpt_dir) {
    const int have = r->last_ckpt_step == step; /* the checkpoint it resumed from, or its own */
    int ok = have || write_ckpt(r, step, 1) == 0;
    code = ok ? 0 : 1;
    if (root && ok && have && r->resumed && step == r->s0) /* nothing trained since: its file */
      printf("stopped by %s (rank %d) at step %lld of %lld, where it resumed, while validating "
             "the loaded weights: nothing was trained or written; continue with --resume %s\n",
             name, vd->sig_rank, (long long)step, (long long)r->total, r->last_ckpt);
    else if (root && ok)
      printf("stopped by %s (rank %d) after step %lld of %lld: checkpoint %s written; continue "
             "with --resume\n", name, vd->sig_rank, (long long)step, (long long)r->total,
             r->last_ckpt);
    else if (root) {
      describe_last(r, last, sizeof last);
      fprintf(stderr, "cogpu-dist: error: stopped by %s (rank %d) after step %lld of %lld, but "
              "its checkpoint could not be written (above); the last good checkpoint is %s\n",
              name, vd->sig_rank, (long long)step, (long long)r->total, last);
    }
  } else if (root) {
    printf("stopped by %s (rank %d) after step %lld of %lld; no --checkpoint-dir, so nothing was "
           "saved\n", name, vd->sig_rank, (long long)step, (long long)r->total);
  }
  /* after the checkpoint: a monitor on a FIFO, signalled with the job, may be gone */
  if (root) cg_stats_stopped(r->stats, step, r->total, name);
  fflush(stdout);
  fflush(stderr);
  return code;
}

/* ---- the step loop --------------------------------------------------------------------------- */

/* The loop's own state, beside the run's and the report figures. */
typedef struct {
  cg_loader_t *ld;
  cg_host_batch_t *b;       /* the next batch (uploaded), NULL after the last */
  cg_host_batch_t *pending; /* batch of the submitted step not yet fetched */
  int64_t nb;               /* batches submitted (x grad_accum from the first step): the next
                               one's device slot is nb % CG_DEV_SLOTS */
  double wait;              /* seconds the last step's cg_loader_next calls waited */
  double t_prev;            /* when the previous step ended */
  double ctl_wall, ctl_wait, ctl_busy0, ctl_steps; /* the split controller's window */
  verdict_t stop;           /* why the loop ended early; zero when it did not */
  int64_t stop_step;
  int out_rc;               /* 1 once a checkpoint could not be written */
  cg_train_figs_t f;
  cg_lrfind_t lrf;          /* --lr-find's record (every rank's the same) */
} loop_t;

/* --flip as cg_augment_flip's mode (augment.h) */
static int flip_mode(const char *flip) {
  return !strcmp(flip, "off")          ? 0
         : !strcmp(flip, "horizontal") ? CG_FLIP_H
         : !strcmp(flip, "vertical")   ? CG_FLIP_V
         : !strcmp(flip, "d4")         ? CG_FLIP_D4
                                       : CG_FLIP_HV;
}

static cg_loader_t *train_loader(const cg_run_t *r) {
  cg_loader_cfg_t lc = loader_cfg(r, r->train_src);
  lc.shuffle = 1;
  lc.flip = flip_mode(r->cfg->flip);
  lc.crop = !r->synthetic && r->cfg->crop;
  lc.crop_lo = r->cfg->crop_lo;
  lc.crop_hi = r->cfg->crop_hi;
  lc.cat_max = r->cfg->crop_cat_max;
  lc.jitter = (cg_jitter_t){r->cfg->jitter[0], r->cfg->jitter[1], r->cfg->jitter[2],
                            r->cfg->jitter[3]};
  lc.rotate_deg = r->cfg->rotate_deg;
  lc.rotate_prob = r->cfg->rotate_prob;
  lc.accum = r->cfg->grad_accum; /* (validation loaders: one batch a step) */
  lc.first_step = r->s0; /* a resumed run continues the same sample order */
  lc.nsteps = r->total > r->s0 ? r->total - r->s0 : 0;
  lc.test_feat_ms = r->cfg->test_feat_ms;
  lc.trace = r->trace;
  return cg_loader_create(&lc);
}

/* Submits batch L->nb (uploaded in its slot; opt NULL: a micro-batch before its step's last),
 * fetches the one before meanwhile, then takes and uploads the next. */
static void submit_batch(cg_run_t *r, loop_t *L, int64_t step, const cg_optim_t *opt) {
  cg_guard_beat(r->guard, step, "training step (compute, gradient all-reduce)");
  double t_sub = cg_now();
  cg_nvtx_push("submit step");
  const int slot = (int)(L->nb++ % CG_DEV_SLOTS);
  if (opt) r->ops->train_step(r->be, slot, opt);
  else r->ops->accum_step(r->be, slot);
  cg_nvtx_pop();
  cg_trace_event(r->trace, CG_TRACK_DRIVER, "submit step", t_sub, cg_now());
  if (L->pending) collect(r, L->ld, L->pending, &L->f.win, 1); /* the batch before meanwhile */
  L->pending = L->b;
  cg_guard_beat(r->guard, step, "waiting for the next batch");
  double t_w = cg_now(), wait = 0;
  cg_nvtx_push("data wait");
  L->b = cg_loader_next(L->ld, &wait);
  cg_nvtx_pop();
  cg_trace_event(r->trace, CG_TRACK_DRIVER, "wait for batch", t_w, cg_now());
  L->wait += wait;
  L->f.win_wait += wait;
  double t_up = cg_now();
  if (L->b) upload(r, L->nb, L->b);
  cg_trace_event(r->trace, CG_TRACK_DRIVER, "upload", t_up, cg_now());
}

/* Submits step k: its --grad-accum micro-batches, the last with the all-reduce and AdamW. */
static void submit_step(cg_run_t *r, loop_t *L, int64_t k) {
  const cg_config_t *cfg = r->cfg;
  const int64_t step = k + 1;
  /* --ema-decay: AveragedModel's first update copies the weights, the others lerp */
  const float ema_w = r->ema_started ? (float)(1.0 - cfg->ema_decay) : 1.0f;
  r->lr_scale_used = r->lr_scale;
  cg_optim_t opt = {(float)cg_run_lr(r, k), (float)cfg->beta1,
                    (float)cfg->beta2,
                    (float)cfg->eps, (float)cfg->weight_decay, r->opt_t0 + (k - r->s0) + 1,
                    ema_w};
  r->ema_started = r->ema;
  cg_trace_set_step(r->trace, step);
  L->wait = 0;
  for (int m = 0; m < cfg->grad_accum; m++) {
    CG_ASSERT(L->b != NULL); /* the loader holds total x grad_accum batches */
    submit_batch(r, L, step, m + 1 < cfg->grad_accum ? NULL : &opt);
  }
}

static void drain(cg_run_t *r, loop_t *L) {
  if (!L->pending) return;
  collect(r, L->ld, L->pending, &L->f.win, 1);
  L->pending = NULL;
}

/* A stop agreed at `step` (a signal, or a bad step): 1 after noting it in L, else 0. */
static int take_stop(loop_t *L, verdict_t vd, int64_t step) {
  if (!vd.sig && !vd.bad) return 0;
  L->stop = vd;
  L->stop_step = step;
  return 1;
}

/* The step boundary: stop signals and fatal steps, agreed by every rank. 1: stop here. */
static int step_boundary(cg_run_t *r, loop_t *L, int64_t k) {
  const int64_t step = k + 1;
  cg_guard_beat(r->guard, step, "step agreement (all-reduce)");
  verdict_t vd = agree_step(r, step);
  if (vd.sig && !vd.bad && L->pending) { /* stopping: finish the step in flight and judge it */
    drain(r, L);
    vd = agree_step(r, step);
  }
  if (step % TABLE_EVERY == 0) exchange_table(r, step);
  if (k == r->s0) cg_guard_arm(r->guard, 1); /* the first step's one-off costs are behind */
  return take_stop(L, vd, step);
}

/* Rank 0 writes the checkpoint of `step`; then every rank, whatever rank 0's write gave (only
 * rank 0 knows), agrees once more as at a step boundary (collective): a stop signalled during
 * the write (seconds, for a large model) ends the run on that file now, instead of training one
 * more step and writing another (a --max-time or scheduler margin leaves room for one write).
 * Returns 1 to stop. */
static int checkpoint_step(cg_run_t *r, loop_t *L, int64_t step) {
  if (write_ckpt(r, step, 0) != 0) L->out_rc = 1;
  return take_stop(L, agree_step(r, step), step);
}

/* The step's times into the report window and the split controller's window; at the end of
 * the controller's window it may move work between the CPU and the device. */
static void account_step(cg_run_t *r, loop_t *L, int64_t step, double now) {
  const cg_config_t *cfg = r->cfg;
  L->f.win_wall += now - L->t_prev;
  L->ctl_wall += now - L->t_prev;
  L->ctl_wait += L->wait;
  L->ctl_steps++;
  L->t_prev = now;
  L->f.win_share += cg_split_cpu_share(&r->split);
  if (L->ctl_steps < cfg->split_every) return;
  cg_loader_costs_t co;
  cg_loader_take_costs(L->ld, &co);
  /* the controller plans one batch: a step is --grad-accum of them */
  cg_split_window_t sw = {L->ctl_steps * cfg->grad_accum, L->ctl_wall, L->ctl_wait,
                          L->f.win.busy_measured ? r->busy_total - L->ctl_busy0 : -1, r->workers,
                          co.dec_s, co.feat_s, co.met_s, (double)co.dec_n, (double)co.feat_n,
                          (double)co.met_n};
  int k0 = r->split.k, m0 = r->split.metrics_dev;
  if (cg_split_update(&r->split, &sw)) {
    cg_loader_set_cpu_count(L->ld, r->split.k);
    cg_report_split(r, step, k0, m0, 100.0 * L->ctl_wait / L->ctl_wall);
  }
  L->ctl_wall = L->ctl_wait = L->ctl_steps = 0;
  L->ctl_busy0 = r->busy_total;
}

/* The latest validation's figures, for the checkpoint of the same step (and DIR/best). */
static void note_val(cg_run_t *r, int64_t step, const cg_val_t *v) {
  const int K = r->model.nclass;
  if (v->images <= 0) return; /* nothing was scored: no figures for checkpoints or best */
  r->have_val = 1;
  r->val_step = step;
  r->val_loss = v->loss;
  r->val_iou = K > 1 ? cg_confk_miou(v->confk, K) : cg_confusion_iou(&v->conf);
}

/* One validation pass in the run's --val-mode. */
static cg_val_t validate_mode(cg_run_t *r) {
  if (r->ema) r->ops->swap_ema(r->be); /* --ema-decay: the average is what is validated */
  const cg_val_t v = strcmp(r->cfg->val_mode, "square") ? cg_validate_whole(r) : validate(r);
  if (r->ema) r->ops->swap_ema(r->be);
  return v;
}

/* --early-stop-patience after the validation of `step` (r's latest figures): 1 when its
 * patience ran out, the run ending at this step; rank 0 decides (its figures are every rank's
 * but for the rounding of an all-reduced loss) and says so. Lightning's rule: better means
 * above the best by more than min_delta (below, for val_loss); a NaN never is (Lightning's
 * check_finite would stop at once; a NaN loss ends the run anyway). */
static int early_stop(cg_run_t *r, int64_t step) {
  const cg_config_t *cfg = r->cfg;
  if (cfg->early_stop_patience <= 0 || r->val_step != step) return 0; /* nothing scored */
  const int by_loss = cg_run_best_by_loss(r);
  const double cur = by_loss ? r->val_loss : r->val_iou, d = cfg->early_stop_min_delta;
  const int better = isnan(r->es_best) ? !isnan(cur)
                     : by_loss         ? cur + d < r->es_best
                                       : cur - d > r->es_best;
  if (better) {
    r->es_best = cur;
    r->es_best_step = step;
    r->es_wait = 0;
  } else {
    r->es_wait++;
  }
  int stop = r->es_wait >= cfg->early_stop_patience;
  CG_CHECK_MPI(MPI_Bcast(&stop, 1, MPI_INT, 0, r->c->world));
  if (!stop) return 0;
  if (r->c->rank == 0) {
    char best[96] = "none";
    if (!isnan(r->es_best))
      snprintf(best, sizeof best, "%.6g (step %lld)", r->es_best, (long long)r->es_best_step);
    if (r->bar == 2) fputc('\n', stderr); /* after the progress bar's line */
    printf("early stop after step %lld of %lld: %lld validation(s) without a %s %s the best %s "
           "by more than %g (--early-stop-patience %lld): the run ends here\n", (long long)step,
           (long long)r->total, (long long)r->es_wait, cg_run_best_name(r),
           by_loss ? "below" : "above", best, d, (long long)cfg->early_stop_patience);
    fflush(stdout);
  }
  r->early_step = r->total = step; /* the run ends here: its final figures are this step's */
  return 1;
}

/* --lr-schedule plateau after the validation of `step`: PyTorch's ReduceLROnPlateau.step() with
 * --best-metric's figure, operation for operation (mode min for val_loss, max for IoU;
 * threshold_mode rel; eps 1e-8: a reduction smaller than that is none). Rank 0 decides, as
 * early_stop, and its state is every rank's. */
static void plateau_step(cg_run_t *r, int64_t step) {
  const cg_config_t *cfg = r->cfg;
  if (strcmp(cfg->lr_schedule, "plateau") || r->val_step != step) return;
  const int by_loss = cg_run_best_by_loss(r);
  const double cur = by_loss ? r->val_loss : r->val_iou, t = cfg->lr_threshold;
  const double before = cfg->lr * r->lr_scale;
  int reduced = 0;
  if (by_loss ? cur < r->pl_best * (1.0 - t) : cur > r->pl_best * (t + 1.0)) { /* NaN: never */
    r->pl_best = cur;
    r->pl_bad = 0;
  } else {
    r->pl_bad++;
  }
  if (r->pl_cool > 0) { /* bad validations in a cooldown are not counted */
    r->pl_cool--;
    r->pl_bad = 0;
  }
  if (r->pl_bad > cfg->lr_patience) {
    const double lr = fmax(before * cfg->lr_gamma, cfg->min_lr);
    if (before - lr > 1e-8) {
      r->lr_scale = lr / cfg->lr;
      reduced = 1;
    }
    r->pl_cool = cfg->lr_cooldown;
    r->pl_bad = 0;
  }
  double st[5] = {r->lr_scale, r->pl_best, (double)r->pl_bad, (double)r->pl_cool, reduced};
  CG_CHECK_MPI(MPI_Bcast(st, 5, MPI_DOUBLE, 0, r->c->world)); /* rank 0's state, one message */
  r->lr_scale = st[0];
  r->pl_best = st[1];
  r->pl_bad = (int64_t)st[2];
  r->pl_cool = (int64_t)st[3];
  if (!st[4] || r->c->rank != 0) return;
  if (r->bar == 2) fputc('\n', stderr); /* after the progress bar's line */
  printf("lr: %s has not improved on %.6g for %lld validation(s) (--lr-patience %lld): the "
         "learning rate goes from %.6g to %.6g after step %lld (--lr-schedule plateau)\n",
         cg_run_best_name(r), r->pl_best, (long long)cfg->lr_patience + 1,
         (long long)cfg->lr_patience, before, cfg->lr * r->lr_scale, (long long)step);
  fflush(stdout);
}

/* --lr-find after step k + 1 (fetched: the loop drains every step): its global loss recorded;
 * 1 when the search ends here (diverged), the run ending at this step. The global loss is the
 * same on every rank (an all-reduce); rank 0's verdict is every rank's. */
static int lr_find_step(cg_run_t *r, loop_t *L, int64_t k) {
  double loss = r->step_loss;
  CHECK_PEER(r, k + 1, MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, r->c->world));
  int stop = cg_lrfind_add(&L->lrf, cg_run_lr(r, k), loss);
  CHECK_PEER(r, k + 1, MPI_Bcast(&stop, 1, MPI_INT, 0, r->c->world)); /* rank 0's verdict */
  if (!stop) return 0;
  r->lrf_step = r->total = k + 1; /* the run ends here: its final figures are this step's */
  return 1;
}

/* Validation in the middle of training; its time is not training time. A stop signal during it
 * cuts it short (agreed by every rank: cg_val_gather), and the run stops at step k + 1: 1. An
 * early stop (--early-stop-patience) also returns 1, this validation kept as the run's final
 * one (L->f.val, reported by finish). */
static int validate_at(cg_run_t *r, loop_t *L, int64_t k) {
  double tv = cg_now();
  cg_val_t val = validate_mode(r);
  note_val(r, k + 1, &val);
  if (L->b) upload(r, L->nb, L->b); /* validation reused the device batch slots */
  if (!val.stopped && early_stop(r, k + 1)) { /* finish() reports it, and steps the plateau */
    L->f.val = val;
    L->f.t_train0 += cg_now() - tv;
    return 1;
  }
  cg_report_validation(r, &L->f, k + 1, tv - L->f.t_train0, &val, 1);
  if (!val.stopped) plateau_step(r, k + 1); /* the next steps' rate */
  free(val.confk);
  double dv = cg_now() - tv;
  L->f.t_train0 += dv;
  L->t_prev += dv;
  if (!val.stopped) return 0;
  L->stop = agree_step(r, k + 1); /* every rank: the signal is still recorded on some */
  L->stop_step = k + 1;
  return 1;
}


static void train_loop(cg_run_t *r, loop_t *L) {
  const cg_config_t *cfg = r->cfg;
  cg_train_figs_t *f = &L->f;
  const int64_t vevery = cg_run_val_every(r);
  f->t_train0 = L->t_prev = cg_now();
  cg_guard_beat(r->guard, r->s0 + 1, "waiting for the first batch");
  L->nb = r->s0 * cfg->grad_accum;
  L->b = cg_loader_next(L->ld, &L->wait);
  f->win_wait += L->wait;
  if (L->b) upload(r, L->nb, L->b);
  if ((r->revalidated = r->revalidate > 0)) { /* a stop cut step s0's short */
    const int end = validate_at(r, L, r->s0 - 1);
    cg_guard_arm(r->guard, 0); /* armed by its wait (cg_val_poll_finish): the first step arms
                                  it again once its one-off costs are behind */
    if (r->early_step) plateau_step(r, r->s0); /* as finish() steps it after an early stop */
    if (r->revalidate == 2 && !L->stop.sig && r->have_val && r->val_step == r->s0) {
      if (write_ckpt(r, r->s0, 0) != 0) L->out_rc = 1;
      else r->revalidated = 2;
    }
    if (end) {
      f->train_s = cg_now() - f->t_train0;
      return;
    }
  }
  for (int64_t k = r->s0; k < r->total; k++) {
    const int64_t step = k + 1;
    submit_step(r, L, k);
    int report = step % cfg->report_every == 0 || step == r->total;
    int do_val = r->val_src && vevery > 0 && step % vevery == 0 && step != r->total &&
                 !cfg->lr_find;
    int do_ckpt = r->ckpt_dir && ((cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) ||
                                  step == r->total);
    if (report || do_val || step == r->total || do_ckpt || cfg->lr_find)
      drain(r, L); /* every figure complete */
    if (step_boundary(r, L, k)) break;
    if (cfg->lr_find && lr_find_step(r, L, k)) report = 1; /* the search ends: its last window */
    /* a checkpoint follows the validation of its step (it carries its figures); the last
     * step's is written by finish(), after the final validation */
    const int ckpt_now = do_ckpt && !do_val && step != r->total;
    if (ckpt_now && checkpoint_step(r, L, step)) break;
    const double now = cg_now();
    account_step(r, L, step, now);
    const double elapsed = now - f->t_train0;
    const int64_t done_samples = f->total.samples + f->win.samples;
    if (r->bar == 2)
      cg_report_progress(r, step, elapsed, (double)done_samples / elapsed, f->win.last_loss, 0);
    if (r->slow && k + 1 < r->total) usleep((useconds_t)cfg->test_slow_ms * 1000);
    /* a validation of this step first, so that the report's stats record carries it; an early
     * stop ends the run at this step, its window reported as the last one */
    if (do_val && validate_at(r, L, k) && !r->early_step) break;
    if (report || r->early_step) {
      int helpers = 0;
      const double helper_busy = cg_loader_take_busy(L->ld, &helpers);
      take_conf(L->ld, &f->win); /* the helpers' counts of this window's batches */
      cg_report_window(r, f, step, elapsed, helper_busy, helpers);
    }
    if (r->early_step || r->lrf_step) break; /* finish() reports an early stop's validation as
                                                the final one, saves */
    if (do_ckpt && do_val && checkpoint_step(r, L, step)) break;
  }
  f->train_s = cg_now() - f->t_train0;
}

/* After the loop: a stopped run ends at its step boundary; a finished one validates and makes
 * its final reports. Returns rank 0's exit code. */
static int finish(cg_run_t *r, loop_t *L, cg_train_result_t *res) {
  cg_train_figs_t *f = &L->f;
  if (r->cfg->lr_find && r->c->rank == 0 && (L->stop.sig || L->stop.bad) && L->lrf.n > 0)
    cg_lrfind_report(&L->lrf, r->cfg->lr_find, r->cfg->lr_find_out, stdout); /* what it has */
  if (L->stop.sig || L->stop.bad) {
    /* Every submitted step is fetched and the upload in flight completes before the loader
     * frees its slots; then the stop is reported and nothing else of a normal end runs. */
    drain(r, L);
    if (L->b) r->ops->upload_wait(r->be, (int)(L->nb % CG_DEV_SLOTS));
    cg_loader_destroy(L->ld);
    return stop_run(r, &L->stop, L->stop_step);
  }
  const int cut = r->early_step || r->lrf_step; /* the loader holds batches of steps not run */
  if (cut && L->b) /* the next step's batch was on its way to the device */
    r->ops->upload_wait(r->be, (int)(L->nb % CG_DEV_SLOTS));
  /* the samples that failed in the trained batches (an early stop leaves some loaded ahead) */
  int64_t bad = cut ? r->bad_trained : cg_loader_take_bad(L->ld);
  cg_comm_sum_i64(r->c, &bad, 1);
  const int64_t left_out =
      r->base_src ? r->base_src->dropped + (r->val_base ? r->val_base->dropped : 0) : 0;
  cg_report_skipped(r, left_out, bad, 0);
  cg_loader_destroy(L->ld);
  const int64_t tried = f->total.samples + f->win.samples; /* every rank has the same */
  if (bad > 0 && bad >= tried) { /* --skip-bad made every sample padding: nothing was learnt */
    if (r->c->rank == 0) {
      fprintf(stderr, "cogpu-dist: error: --skip-bad: every one of the %lld training sample "
              "loads of this run failed (the first are named above): nothing was trained; no "
              "final validation, checkpoint or metrics are written\n", (long long)bad);
      cg_stats_drop_final(r->stats); /* the monitor must not show a finished run */
      cg_stats_stopped(r->stats, r->total, r->total, "every training load failing");
    }
    free(f->val.confk); /* an early stop's validation */
    f->val.confk = NULL;
    return CG_EXIT_USAGE;
  }
  if (r->bar == 2)
    cg_report_progress(r, r->total, f->train_s, (double)f->total.samples / f->train_s,
                       f->last_window_loss, 1);
  if (r->cfg->lr_find && r->c->rank == 0 && /* a range test: its record, no validation */
      cg_lrfind_report(&L->lrf, r->cfg->lr_find, r->cfg->lr_find_out, stdout))
    L->out_rc = 1;
  if (r->val_src && !r->cfg->lr_find) {
    if (!r->early_step) f->val = validate_mode(r); /* an early stop's is its last validation */
    if (f->val.stopped) { /* the steps are done: the stop saves them, --resume validates */
      free(f->val.confk);
      f->val.confk = NULL;
      L->stop = agree_step(r, r->total);
      if (r->c->rank == 0) cg_stats_drop_final(r->stats); /* the stop's record is the last */
      if (r->s0 < r->total) return stop_run(r, &L->stop, r->total);
      if (r->c->rank == 0) /* resumed at or past the end: nothing trained, nothing to save */
        printf("stopped by %s (rank %d) while validating the loaded weights: nothing was "
               "trained or written\n", cg_guard_signal_name(L->stop.sig), L->stop.sig_rank);
      return 0;
    }
    f->have_val = f->val.images > 0; /* else the final figures say there were none */
    note_val(r, r->total, &f->val);
    cg_report_validation(r, f, r->total, f->train_s, &f->val, 0);
    /* in the final checkpoint (an early stop's validation too): a run extended by --steps goes
     * on as the longer run would; a resume that trained nothing leaves the state as it is,
     * but for the final validation a stop cut short, which it makes now */
    if (r->s0 < r->total || r->refigure) plateau_step(r, r->total);
  }
  cg_stats_flush_final(r->stats); /* the final record, held for this check and validation */
  /* A run resumed at or past its end trained nothing: the directory stays as it is (writing
   * the total's checkpoint would put the resumed weights under a lower step and rotate away the
   * run's later checkpoints as an abandoned attempt's). */
  if (r->ckpt_dir && r->s0 < r->total && r->last_ckpt_step != r->total &&
      write_ckpt(r, r->total, 0) != 0)
    L->out_rc = 1;
  /* A stop cut the final validation short and left the last step's checkpoint without figures:
   * the resume, which trains nothing, writes that same state again with them, so DIR/best and
   * the checkpoint's figures are as if the validation had not been cut. */
  if (r->refigure && f->have_val && write_ckpt(r, r->total, 0) != 0) L->out_rc = 1;
  cg_guard_beat(r->guard, r->total, "final reports and outputs");
  const int rc = cg_report_final(r, f, res) ? 1 : L->out_rc;
  free(f->val.confk);
  f->val.confk = NULL;
  return rc;
}

static int run_train(const cg_config_t *cfg, cg_comm_t *c, cg_train_result_t *res,
                     cg_guard_t *guard) {
  cg_run_t r;
  const int code = cg_run_setup(&r, cfg, c, guard);
  if (code) return code;
  cg_report_banner(&r);
  cg_topo_report_view(r.topo, c, r.view, stdout);
  cg_topo_pin_driver(r.topo, r.is_cuda); /* before the helpers start: they take the other cores */
  loop_t L;
  memset(&L, 0, sizeof L);
  L.f.last_window_loss = NAN;
  const int K = r.model.nclass;
  if (K > 1) {
    L.f.win.confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
    L.f.total.confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
    L.f.last_confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
  }
  cg_report_history_open(&r, &L.f);
  if (cfg->lr_find) cg_lrfind_init(&L.lrf, cfg->lr_find);
  L.ld = train_loader(&r);
  train_loop(&r, &L);
  int out_rc = finish(&r, &L, res);
  cg_lrfind_free(&L.lrf);
  cg_history_destroy(L.f.hist);
  cg_tb_close(L.f.tb);
  free(L.f.win.confk);
  free(L.f.total.confk);
  free(L.f.last_confk);
  cg_guard_arm(guard, 0); /* teardown may wait on other ranks' teardown: not a hang */
  cg_run_teardown(&r);
  cg_report_timeline(&r);
  cg_run_free_settings(&r); /* the timeline line reads them */
  CG_CHECK_MPI(MPI_Bcast(&out_rc, 1, MPI_INT, 0, c->world));
  return out_rc;
}

int cg_train_run(const cg_config_t *cfg, cg_comm_t *c, cg_train_result_t *res) {
  /* Stop signals are caught from the start: one that arrives during start-up stops the run at
   * its first step boundary instead of killing this rank and, with it, the job. */
  CG_ASSERT(c->size <= (1 << RANK_BITS));
  cg_guard_cfg_t gc = {cfg->timeout_s, cfg->max_time_s, c->rank, c->size, c->host, NULL};
  cg_guard_t *guard = cg_guard_create(&gc);
  int code = run_train(cfg, c, res, guard);
  cg_guard_destroy(guard);
  return code;
}
