/* train_report.c: what a training run prints and writes about itself (train_report.h).
 *
 * Every line a run prints about its progress and results is made here, from the run's state
 * (run.h) and the figures the step loop keeps; the loop itself (train.c) only decides when.
 * The cluster-wide balance table comes from stats.c, called here once per report window. */
#include "train_report.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>     /* nanosleep: a rank through with its validation waits for the others */

#include "atomic_file.h" /* cg_afile_save: --metrics-out, --params-out replaced atomically */
#include "blas_core.h"   /* cg_blas_core_str: the cpu backend's kernels in the banner */
#include "json.h"        /* cg_json_parse: the data-names a checkpoint stores */
#include "guard.h"       /* cg_guard_signal, cg_guard_beat: a validation's stop and waits */
#include "log.h"         /* cg_log_warn */
#include "tboard.h"      /* cg_tb_*: --tensorboard */

/* A JSON number ("%.9g": any finite double fits 32 bytes), or null for a value that is not
 * finite: JSON has no NaN or Infinity. */
static void json_num(char *buf, size_t len, double v) {
  if (isfinite(v)) snprintf(buf, len, "%.9g", v);
  else snprintf(buf, len, "null");
}

/* ---- during the run -------------------------------------------------------------------------- */

static void banner_resume(const cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  const cg_ckpt_info_t *ck = &r->ck;
  /* a step-0 checkpoint (import, or a run stopped in start-up) has no data position to keep */
  const int trained = ck->step > 0;
  if (trained)
    printf("resumed from %s: step %lld (epoch %lld, %lld of its %lld samples trained), %s "
           "%lld, loss scale %g\n", r->ck_path, (long long)ck->step, (long long)ck->epoch,
           (long long)ck->epoch_samples, (long long)ck->train_samples,
           cg_cfg_sgd(cfg) ? "SGD steps" : "AdamW t", (long long)ck->opt_t,
           (double)ck->loss_scale);
  else
    printf("resumed from %s: step 0 (its weights; nothing trained yet)\n", r->ck_path);
  if (!r->exact && trained)
    printf("resume: global batch %lld (%d x %d) and %lld training samples -> global batch "
           "%lld (%d x %d) and %lld samples: continuing at step %lld (epoch %lld, batch %lld "
           "of %lld), the first batch of the new size not fully trained in that epoch; up to "
           "%lld of its samples are trained a second time; steps count batches of %lld from "
           "here\n",
           (long long)ck->ranks * ck->batch, ck->ranks, ck->batch, (long long)ck->train_samples,
           (long long)r->global, r->c->size, cfg->batch * cfg->grad_accum, (long long)r->ntrain,
           (long long)r->s0,
           (long long)(r->s0 / r->spe), (long long)(r->s0 % r->spe + 1), (long long)r->spe,
           (long long)(r->global - 1), (long long)r->global);
  if (!r->exact && trained && r->ckpt_dir)
    printf("resume: the steps are renumbered, so this run's checkpoints in %s are a new "
           "lineage: the checkpoints of the run it resumed keep their files, none is removed by "
           "rotation, and one whose step number this run writes again is moved to "
           "%s/previous-*/\n",
           r->ckpt_dir, r->ckpt_dir);
  if (r->exact && trained && r->data_names[0]) { /* the same count: the same samples? */
    cg_json_t *j = cg_json_parse(ck->settings, NULL, 0);
    const char *then = j ? cg_json_str(j, "data-names", "") : "";
    if (then[0] && strcmp(then, r->data_names)) {
      fflush(stdout); /* after the lines above */
      cg_log_warn("resume: --data holds the checkpoint's %lld training samples, but not the same "
                  "names in the same order (the list or directory changed since): training goes "
                  "on at step %lld, not with the sample order the run would have had",
                  (long long)r->ntrain, (long long)r->s0);
    }
    cg_json_free(j);
  }
  if (ck->seed != cfg->seed && trained)
    cg_log_warn("resume: the checkpoint was written with --seed %llu, this run has --seed "
                "%llu: the sample order from here on follows %llu",
                (unsigned long long)ck->seed, (unsigned long long)cfg->seed,
                (unsigned long long)cfg->seed);
  if (r->s0 >= r->total && r->refigure)
    printf("resume: step %lld already reaches this run's %lld steps: nothing to train; its "
           "checkpoint has no validation figures (a stop cut its final validation short), so "
           "it is validated and written again with them\n", (long long)r->s0,
           (long long)r->total);
  else if (r->s0 >= r->total)
    printf("resume: step %lld already reaches this run's %lld steps: nothing to train, and no "
           "checkpoint is written or removed%s%s (give a larger --steps or --epochs to train "
           "on)\n", (long long)r->s0, (long long)r->total, r->ckpt_dir ? " in " : "",
           r->ckpt_dir ? r->ckpt_dir : "");
  else if (r->revalidate)
    printf("resume: step %lld is a validation step (--val-every %lld) and its checkpoint has "
           "no figures of it (a stop cut that validation short or came before it, or the run "
           "validated at other steps): those weights are validated before step %lld, as a run "
           "that validated there did%s\n", (long long)r->s0, (long long)cg_run_val_every(r),
           (long long)r->s0 + 1,
           r->revalidate == 2 ? ", and the checkpoint written again with the figures" : "");
}

void cg_report_banner(const cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  const cg_comm_t *c = r->c;
  const cg_model_t *m = &r->model;
  if (c->rank != 0) return;
  printf("cogpu-dist train: %d rank(s) on %d node(s), backend %s, precision %s%s\n", c->size,
         c->nnodes, r->ops->name, cg_precision_name(r->prec),
         !r->is_cuda || r->prec != CG_PREC_FP32 ? ""
         : strcmp(cfg->tf32, "off") ? " (convolutions in TF32, as PyTorch's default; --tf32 off "
                                      "for strict fp32)"
                                    : " (strict: no TF32)");
  printf("model: UNet in %d, base %d, depth %d, %dx%d, %zu parameters\n", m->in_c, m->base,
         m->depth, m->height, m->width, m->nparams);
  if (m->nclass > 1) { /* binary runs print exactly what they always did */
    char ign[40] = "none";
    if (r->cfg->ignore_index >= 0) snprintf(ign, sizeof ign, "label %d", r->cfg->ignore_index);
    printf("classes: %d (softmax cross-entropy%s), ignored: %s\n", m->nclass,
           r->cfg->dice_weight > 0 ? " + soft Dice" : "", ign);
  }
  if (cfg->label_map[0]) printf("masks: stored values mapped by --label-map %s\n", cfg->label_map);
  else if (cfg->label_map_table[0])
    printf("masks: mapped by the --label-map the shard was packed with (kept for predict)\n");
  char accum[64] = "";
  if (cfg->grad_accum > 1)
    snprintf(accum, sizeof accum, " x %d micro-batches (--grad-accum)", cfg->grad_accum);
  printf("data: %s, %lld training / %lld validation samples%s; batch %d per rank%s, global %lld; "
         "%lld steps (%lld per epoch)\n",
         cfg->data, (long long)r->ntrain, (long long)r->nval,
         !r->nval                            ? ""
         : !strcmp(cfg->val_mode, "whole") ? " (validated whole)"
         : !strcmp(cfg->val_mode, "full")  ? " (validated whole, scored at full resolution)"
                                           : "",
         cfg->batch, accum, (long long)r->global, (long long)r->total, (long long)r->spe);
  const char *ce = m->nclass > 1 ? "softmax cross-entropy" : "BCE-with-logits";
  if (cfg->dice_weight > 0 && cfg->dice_weight != 1) /* the reference loss: no line, as before */
    printf("loss: %s + %.4g x soft Dice (--dice-weight)\n", ce, cfg->dice_weight);
  else if (cfg->dice_weight == 0)
    printf("loss: %s alone (--dice-weight 0)\n", ce);
  /* --class-weights balanced: the weights the run counted */
  const char *counted = !cfg->class_weights_counted ? ""
                        : m->nclass > 1 ? " balanced: --data's pixels / (K x the class's)"
                                        : "; --class-weights balanced: background / foreground "
                                          "pixels of --data";
  if (m->nclass > 1 && cfg->class_weights[0])
    printf("loss: the classes' cross-entropy weighted %s (--class-weights%s)\n",
           cfg->class_weights, counted);
  if (m->nclass > 1 && cfg->label_smoothing > 0)
    printf("loss: the cross-entropy's targets smoothed by %.7g (--label-smoothing)\n",
           cfg->label_smoothing);
  if (m->nclass == 1 && (cfg->pos_weight != 1 || cfg->class_weights_counted))
    printf("loss: the foreground's BCE weighted %.6g (--pos-weight%s)\n", cfg->pos_weight,
           counted);
  if (cfg->focal_gamma > 0)
    printf("loss: focal, each pixel's %s term times (1 - p_t)^%.7g (--focal-gamma)\n",
           m->nclass > 1 ? "cross-entropy" : "BCE", cfg->focal_gamma);
  if (cfg->ohem_thresh > 0)
    printf("loss: OHEM, each sample's %s over its pixels predicted below %.7g, at least its %lld "
           "hardest (--ohem-thresh, --ohem-min-kept); validation scores every pixel\n",
           m->nclass > 1 ? "cross-entropy" : "BCE", cfg->ohem_thresh,
           (long long)cg_cfg_ohem_min_kept(cfg));
  if (cfg->early_stop_patience > 0)
    printf("early stopping: after %lld validation(s) in a row without a %s %s the best so far by "
           "more than %g (--early-stop-patience, --early-stop-min-delta)\n",
           (long long)cfg->early_stop_patience, cg_run_best_name(r),
           cg_run_best_by_loss(r) ? "below" : "above", cfg->early_stop_min_delta);
  if (cfg->max_time_s > 0)
    printf("max time: %s (%g s from the start): the run then stops at a step boundary %s "
           "(--max-time)\n", cfg->max_time, cfg->max_time_s,
           cfg->lr_find ? "and prints what its range test has"
                        : "with a checkpoint for --resume");
  if (cfg->lr_find > 0)
    printf("lr-find: a learning-rate range test of %lld steps, lr %g to %g exponentially (each "
           "step's lr below is replaced); no validation, no checkpoint (--lr-find)\n",
           (long long)cfg->lr_find, cfg->lrf_lo, cfg->lrf_hi);
  if (cg_cfg_sgd(cfg))
    printf("optimizer: SGD, lr %g, momentum %g%s, weight decay %g (L2, added to the gradient)\n",
           cfg->lr, cfg->momentum, cfg->nesterov ? " (Nesterov)" : "", cfg->weight_decay);
  else
    printf("optimizer: AdamW, lr %g, betas %g/%g, eps %g, weight decay %g (decoupled)\n", cfg->lr,
           cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay);
  if (!strcmp(cfg->lr_schedule, "plateau"))
    printf("lr: plateau: times %g whenever %s has not improved by more than %g of it for more "
           "than %lld validation(s), cooldown %lld, down to %g (ReduceLROnPlateau)\n",
           cfg->lr_gamma, cg_run_best_name(r), cfg->lr_threshold, (long long)cfg->lr_patience,
           (long long)cfg->lr_cooldown, cfg->min_lr);
  if (cfg->ema_decay > 0)
    printf("ema: the weights' moving average, decay %.15g (--ema-decay; AveragedModel's EMA): "
           "validated, chosen as best and written for predict and export\n", cfg->ema_decay);
  if (cfg->clip_grad_norm > 0)
    printf("gradients: clipped to global L2 norm %g (--clip-grad-norm), their norm reported\n",
           cfg->clip_grad_norm);
  printf("rank 0: %d compute thread(s), %d helper thread(s), %d gradient bucket(s), gradient "
         "comm %s\n", r->threads, r->workers, r->buckets.n, cfg->grad_comm);
  if (!r->is_cuda) {
    char blas[160];
    cg_blas_core_str(blas, sizeof blas);
    printf("cpu backend: OpenBLAS kernels %s\n", blas);
  }
  if (r->resumed) banner_resume(r);
  fflush(stdout);
}

static void fmt_hms(double s, char *out, size_t len) {
  if (!(s >= 0) || s > 1e7) {
    snprintf(out, len, "--:--");
    return;
  }
  int t = (int)(s + 0.5);
  if (t >= 3600) snprintf(out, len, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  else snprintf(out, len, "%d:%02d", t / 60, t % 60);
}

void cg_report_progress(const cg_run_t *r, int64_t step, double elapsed, double ips, double loss,
                        int final) {
  if (r->c->rank != 0 || r->bar == 0) return;
  const int64_t total = r->total;
  char eta[32], el[32];
  const double done = (double)(step - r->s0); /* steps of this run (it may have resumed) */
  double rem = ips > 0 && done > 0 ? elapsed / done * (double)(total - step) : -1;
  fmt_hms(rem, eta, sizeof eta);
  fmt_hms(elapsed, el, sizeof el);
  if (r->bar == 2) {
    int width = 30, fill = total ? (int)((double)width * (double)step / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %lld/%lld steps  %.1f img/s  %s elapsed  ETA %s  loss %.4f ", bar,
            (long long)step, (long long)total, ips, el, eta, loss);
    if (final) fputc('\n', stderr);
    fflush(stderr);
  } else {
    printf("progress: step %lld/%lld (%.0f%%)  %.1f img/s  elapsed %s  ETA %s  loss %.4f\n",
           (long long)step, (long long)total, 100.0 * (double)step / (double)total, ips, el, eta,
           loss);
    fflush(stdout);
  }
}

#define SKIP_LOG_MAX 20

void cg_report_skip(const cg_run_t *r, int64_t step, float scale) {
  if (r->c->rank != 0 || r->health.skipped > SKIP_LOG_MAX) return;
  if (r->bar == 2) fputc('\n', stderr);
  printf("fp16: step %lld skipped (inf/NaN gradients): loss scale now %g, %lld step(s) skipped so "
         "far%s\n", (long long)step, (double)scale, (long long)(r->skipped0 + r->health.skipped),
         r->health.skipped == SKIP_LOG_MAX ? " (further skips are only counted)" : "");
  fflush(stdout);
}

void cg_report_split(const cg_run_t *r, int64_t step, int k0, int m0, double wait_pct) {
  if (r->c->rank != 0) return;
  printf("split at step %lld: features on the CPU for %d -> %d of %d samples per batch, "
         "metrics on the %s%s (data wait %.1f%%, helpers %d)\n",
         (long long)step, k0, r->split.k, r->cfg->batch, r->split.metrics_dev ? "device" : "CPU",
         m0 != r->split.metrics_dev ? " (moved)" : "", wait_pct, r->workers);
  fflush(stdout);
}

/* This rank's share of the window, as stats.c gathers it. */
static cg_window_t fill_window(const cg_train_figs_t *f, double helper_busy, int helpers) {
  const cg_acc_t *w = &f->win;
  cg_window_t wv;
  memset(&wv, 0, sizeof wv);
  wv.steps = w->steps;
  wv.wall = f->win_wall;
  wv.data_wait = f->win_wait;
  wv.comm_exposed = w->comm;
  wv.busy = w->busy_measured ? w->busy : -1;
  wv.helper_busy = helper_busy;
  wv.helpers = helpers;
  wv.cpu_share = f->win_share / (double)(w->steps ? w->steps : 1);
  wv.samples = w->local_samples;
  wv.h2d_bytes = w->h2d;
  wv.d2h_bytes = w->d2h;
  wv.loss = w->loss;
  return wv;
}

/* Rank 0: one --tensorboard scalar; a failed write is warned about once and ends the file. */
static void tb_scalar(cg_train_figs_t *f, const char *tag, int64_t step, double v) {
  char err[CG_PATH_MAX + 256];
  if (!f->tb || !cg_tb_scalar(f->tb, tag, step, v, err, sizeof err)) return;
  cg_log_warn("--tensorboard: %s; no more scalars are written", err);
  cg_tb_close(f->tb);
  f->tb = NULL;
}

void cg_report_window(cg_run_t *r, cg_train_figs_t *f, int64_t step, double elapsed,
                      double helper_busy, int helpers) {
  const cg_comm_t *c = r->c;
  const cg_acc_t *w = &f->win;
  const cg_window_t wv = fill_window(f, helper_busy, helpers);
  const int64_t done_samples = f->total.samples + w->samples;
  if (c->rank == 0 && r->bar == 2) fputc('\n', stderr);
  const double mean_loss = cg_stats_report(r->stats, &wv, step, r->total, step == r->total,
                                           c->rank == 0 ? stdout : NULL, &f->last_cluster);
  f->last_window_loss = mean_loss;
  if (c->rank == 0 && f->tb) { /* the training curves, one point per report window */
    const double ips = f->win_wall > 0 ? (double)w->samples / f->win_wall : NAN;
    tb_scalar(f, "train/loss", step, mean_loss);
    tb_scalar(f, "train/img_per_s", step, ips);
    tb_scalar(f, "train/lr", step,
              cg_run_lr_trained(r, step > 0 ? step : 1));
    if (w->gnorm_steps)
      tb_scalar(f, "train/grad_norm", step, w->gnorm_sum / (double)w->gnorm_steps);
  }
  if (c->rank == 0) {
    int64_t nsteps = w->steps ? w->steps : 1;
    double ms = 1e3 * f->win_wall / (double)nsteps, dw = 1e3 * f->win_wait / (double)nsteps;
    double cm = 1e3 * w->comm / (double)nsteps, bz = 1e3 * w->busy / (double)nsteps;
    char gn[96] = ""; /* --clip-grad-norm: the window's gradient norms */
    if (w->gnorm_steps)
      snprintf(gn, sizeof gn, " | grad norm %.4g (max %.4g, %lld of %lld clipped)",
               w->gnorm_sum / (double)w->gnorm_steps, w->gnorm_max, (long long)w->clipped,
               (long long)w->gnorm_steps);
    printf("step %lld/%lld | loss %.4f%s | %.1f img/s | %.2f ms/step = compute %.2f + data wait "
           "%.2f + comm %.2f + other %.2f | split %d/%d on CPU, metrics on %s (rank 0)\n",
           (long long)step, (long long)r->total, mean_loss, gn,
           (double)w->samples / f->win_wall, ms, bz, dw, cm, ms - bz - dw - cm, r->split.k,
           r->cfg->batch, r->split.metrics_dev ? "device" : "CPU");
    fflush(stdout);
  }
  if (r->bar == 1)
    cg_report_progress(r, step, elapsed, (double)done_samples / elapsed, mean_loss, 0);
  f->total.samples += w->samples;
  f->total.steps += w->steps;
  f->total.gnorm_sum += w->gnorm_sum;
  f->total.gnorm_steps += w->gnorm_steps;
  f->total.clipped += w->clipped;
  if (w->gnorm_max > f->total.gnorm_max) f->total.gnorm_max = w->gnorm_max;
  if (w->gnorm_steps) f->total.gnorm_last = w->gnorm_last;
  cg_confusion_merge(&f->total.conf, &w->conf);
  f->last_conf = w->conf;
  f->hist_loss += w->loss;
  f->hist_steps += w->steps;
  f->hist_gsum += w->gnorm_sum;
  f->hist_gsteps += w->gnorm_steps;
  const int K = r->model.nclass;
  if (K > 1) cg_confk_merge(f->total.confk, w->confk, K);
  if (K > 1 && f->last_confk) memcpy(f->last_confk, w->confk, sizeof(int64_t) * (size_t)K * K);
  cg_acc_reset(&f->win, K);
  f->win_wall = f->win_wait = f->win_share = 0;
}

void cg_acc_reset(cg_acc_t *a, int K) {
  int64_t *ck = a->confk;
  memset(a, 0, sizeof *a);
  a->confk = ck;
  if (ck && K > 1) memset(ck, 0, sizeof(int64_t) * (size_t)K * K);
}

/* A K >= 2 validation's figures on one line, after its caller's words and before its end. */
static void print_k_figures(double loss, const int64_t *ck, int K) {
  printf("loss %.4f  mIoU %.4f  mDice %.4f  accuracy %.4f  mAcc %.4f", loss, cg_confk_miou(ck, K),
         cg_confk_mdice(ck, K), cg_confk_acc(ck, K), cg_confk_macc(ck, K));
}

/* K >= 2: one line per class of the K x K counts, named by --class-names (rank 0 prints). */
static void print_class_table(const cg_run_t *r, const int64_t *ck) {
  cg_confk_print_table("# ", "  ", -5, ck, r->model.nclass, r->class_names, 4);
  if (r->cfg->ignore_index >= 0)
    printf("  (pixels labelled %d are ignored)\n", r->cfg->ignore_index);
}

void cg_report_history_open(const cg_run_t *r, cg_train_figs_t *f) {
  const cg_config_t *cfg = r->cfg;
  if (r->c->rank != 0) return;
  /* nothing to train: no record, and the history left as it is (but the final validation that
   * a stop cut short is recorded now, as its checkpoint gets its figures) */
  if (r->s0 >= r->total && !r->refigure) return;
  /* a resume keeps the records up to its step; of that step too unless it validates it again
   * (a copy of a checkpoint older than the history may have its record already) */
  const int again = r->refigure || r->revalidate;
  if (cfg->tensorboard[0]) { /* TensorBoard drops the points after the step resumed at */
    char terr[CG_PATH_MAX + 256];
    f->tb = cg_tb_open(cfg->tensorboard, r->resumed ? r->s0 + 1 - again : -1, terr, sizeof terr);
    if (!f->tb) cg_log_warn("--tensorboard: %s; the run goes on without it", terr);
  }
  if (!r->val_src) {
    if (cfg->history_out[0] || cfg->history_csv[0])
      cg_log_warn("--history-out/--history-csv: this run has no validation set, so no records");
    return;
  }
  char def[CG_PATH_MAX + 16] = "", err[1600];
  const char *jsonl = cfg->history_out;
  if (!jsonl[0] && r->ckpt_dir && r->ckpt_dir[0]) {
    snprintf(def, sizeof def, "%s/history.jsonl", r->ckpt_dir);
    jsonl = def;
  }
  f->hist = cg_history_create(jsonl, cfg->history_csv, r->model.nclass,
                              r->resumed ? r->s0 - again : -1, err, sizeof err);
  if (!f->hist && err[0]) cg_log_warn("history: %s; the run goes on without it", err);
}

/* Appends the validation at `step` to the history. Collective: the train loss since the
 * previous validation is summed over ranks. */
static void history_add(cg_run_t *r, cg_train_figs_t *f, int64_t step, double elapsed,
                        const cg_val_t *v) {
  double loss = f->hist_loss + f->win.loss;
  const int64_t steps = f->hist_steps + f->win.steps;
  cg_comm_sum_f64(r->c, &loss, 1);
  /* the unreported part of the window is counted here: its report adds it again */
  f->hist_loss = -f->win.loss;
  f->hist_steps = -f->win.steps;
  const double gsum = f->hist_gsum + f->win.gnorm_sum; /* the same on every rank */
  const int64_t gsteps = f->hist_gsteps + f->win.gnorm_steps;
  f->hist_gsum = -f->win.gnorm_sum;
  f->hist_gsteps = -f->win.gnorm_steps;
  const int64_t samples = f->total.samples + f->win.samples;
  const double dt = elapsed - f->hist_t0;
  const double ips = dt > 0 ? (double)(samples - f->hist_samples0) / dt : NAN;
  f->hist_samples0 = samples;
  f->hist_t0 = elapsed;
  const int K = r->model.nclass;
  cg_history_rec_t rec;
  memset(&rec, 0, sizeof rec);
  rec.step = step;
  rec.epoch = (double)step / (double)(r->spe > 0 ? r->spe : 1);
  rec.wall_s = cg_now() - r->t_begin + cg_history_wall_offset(f->hist);
  rec.train_loss = steps > 0 ? loss / (double)steps : NAN;
  rec.val_loss = v->loss;
  rec.iou = K > 1 ? cg_confk_miou(v->confk, K) : cg_confusion_iou(&v->conf);
  rec.dice = K > 1 ? cg_confk_mdice(v->confk, K) : cg_confusion_dice(&v->conf);
  rec.acc = K > 1 ? cg_confk_acc(v->confk, K) : cg_confusion_acc(&v->conf);
  rec.lr = cg_run_lr_trained(r, step > 0 ? step : 1);
  rec.img_per_s = ips;
  rec.grad_norm = gsteps > 0 ? gsum / (double)gsteps : NAN;
  rec.confk = K > 1 ? v->confk : NULL;
  if (r->c->rank == 0)
    cg_stats_set_val(r->stats, step, rec.val_loss, rec.iou, rec.dice, rec.acc,
                     K > 1 ? cg_confk_macc(v->confk, K) : NAN, K);
  char err[1600];
  /* already in the history the run resumed (unless a stop cut that validation short) */
  if (r->resumed && step <= r->s0 && !r->refigure &&
      !(step == r->s0 && r->revalidated))
    return;
  if (r->c->rank == 0 && f->tb) {
    tb_scalar(f, "val/loss", step, rec.val_loss);
    tb_scalar(f, K > 1 ? "val/miou" : "val/iou", step, rec.iou);
    tb_scalar(f, K > 1 ? "val/mdice" : "val/dice", step, rec.dice);
    tb_scalar(f, "val/acc", step, rec.acc);
    if (K > 1) tb_scalar(f, "val/macc", step, cg_confk_macc(v->confk, K));
    for (int c = 0; K > 1 && c < K; c++) { /* each class's IoU and Acc where it counts */
      double iou, dice, acc;
      int64_t gt, pr;
      char name[16], tag[32 + CG_CLASSNAME_MAX];
      snprintf(name, sizeof name, "%d", c);
      const char *nm = r->class_names ? r->class_names[c] : name;
      snprintf(tag, sizeof tag, "val_class_iou/%s", nm);
      if (cg_confk_class(v->confk, K, c, &iou, &dice, &gt, &pr)) tb_scalar(f, tag, step, iou);
      snprintf(tag, sizeof tag, "val_class_acc/%s", nm);
      if (cg_confk_class_acc(v->confk, K, c, &acc)) tb_scalar(f, tag, step, acc);
    }
  }
  if (f->hist && cg_history_add(f->hist, &rec, err, sizeof err)) {
    cg_log_warn("history: %s; no more records are written", err);
    cg_history_destroy(f->hist);
    f->hist = NULL;
  }
}

void cg_report_validation(cg_run_t *r, cg_train_figs_t *f, int64_t step, double elapsed,
                          const cg_val_t *v, int print) {
  if (v->stopped) return; /* cg_val_gather said so */
  if (v->images <= 0) { /* every image failed to load (--skip-bad): no figures to give */
    if (r->c->rank == 0)
      printf("validation at step %lld: no image could be read (all %lld left out by "
             "--skip-bad)\n", (long long)step, (long long)r->nval);
    fflush(stdout);
    return;
  }
  history_add(r, f, step, elapsed, v);
  if (r->c->rank != 0 || !print) return;
  if (r->bar == 2) fputc('\n', stderr);
  const int K = r->model.nclass;
  if (K > 1) {
    printf("validation at step %lld: ", (long long)step);
    print_k_figures(v->loss, v->confk, K);
    putchar('\n');
    print_class_table(r, v->confk);
    fflush(stdout);
    return;
  }
  printf("validation at step %lld: loss %.4f  IoU %.4f  Dice %.4f  accuracy %.4f\n",
         (long long)step, v->loss, cg_confusion_iou(&v->conf), cg_confusion_dice(&v->conf),
         cg_confusion_acc(&v->conf));
  fflush(stdout);
}

int cg_val_poll(cg_run_t *r, cg_val_poll_t *p, int through) {
  if (p->active) {
    int done = 0;
    CG_CHECK_MPI(MPI_Test(&p->rq, &done, MPI_STATUS_IGNORE));
    if (done) {
      p->active = 0;
      p->rounds++;
      if (p->v[0]) p->stop = 1;
      if (!p->v[1]) p->all_through = 1;
    }
  }
  if (!p->active && !p->all_through) {
    p->v[0] = cg_guard_signal(r->guard) != 0;
    p->v[1] = !through;
    CG_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, p->v, 2, MPI_INT64_T, MPI_MAX, r->c->world, &p->rq));
    p->active = 1;
  }
  return p->stop;
}

void cg_val_poll_finish(cg_run_t *r, cg_val_poll_t *p) {
  /* a resume with nothing to train validates before any step has armed the watchdog: armed
   * now, with this rank's pass and any first-use costs in it behind, so that a peer stuck in
   * the pass cannot hold the job for ever (re-arming an armed one only restarts its clock) */
  cg_guard_arm(r->guard, 1);
  cg_guard_beat(r->guard, r->last_done, "validation (waiting for the other ranks)");
  while (!p->all_through) {
    const int64_t rounds = p->rounds;
    cg_val_poll(r, p, 1);
    if (p->all_through) break;
    /* only a round every rank joined is progress: beating while none completes would keep
     * the watchdog quiet behind a stuck peer for ever */
    if (p->rounds != rounds)
      cg_guard_beat(r->guard, r->last_done, "validation (waiting for the other ranks)");
    const struct timespec ts = {0, 1000000}; /* 1 ms */
    nanosleep(&ts, NULL);
  }
}

cg_val_t cg_val_gather(const cg_run_t *r, cg_confusion_t conf, int64_t *confk, int64_t bad,
                       double loss_sum, int stopped) {
  const int K = r->model.nclass;
  cg_val_t res;
  memset(&res, 0, sizeof res);
  res.confk = confk;
  if (stopped) { /* agreed by every rank (cg_val_poll): partial counts are no figures */
    res.stopped = 1;
    res.loss = NAN;
    if (r->c->rank == 0) {
      if (r->bar == 2) fputc('\n', stderr);
      const int sig = cg_guard_signal(r->guard);
      printf("validation stopped by %s: no figures from this pass\n",
             sig == CG_GUARD_MAX_TIME ? "--max-time" : "a stop signal");
      fflush(stdout);
    }
    return res;
  }
  int64_t cnt[5] = {conf.tp, conf.fp, conf.fn, conf.tn, bad};
  cg_comm_sum_i64(r->c, cnt, 5);
  cg_report_skipped(r, 0, cnt[4], 1);
  if (K > 1) cg_comm_sum_i64(r->c, confk, K * K);
  cg_comm_sum_f64(r->c, &loss_sum, 1);
  res.conf = (cg_confusion_t){cnt[0], cnt[1], cnt[2], cnt[3]};
  res.images = r->val_src->count - cnt[4];
  res.loss = res.images > 0 ? loss_sum / (double)res.images : NAN;
  return res;
}

void cg_report_skipped(const cg_run_t *r, int64_t left_out, int64_t loads, int validation) {
  if (r->c->rank != 0) return;
  if (validation && loads)
    printf("--skip-bad: %lld sample load(s) skipped in validation\n", (long long)loads);
  else if (!validation && (loads || left_out)) /* a bad file is met again every epoch: loads */
    printf("--skip-bad: %lld bad sample(s) left out at start-up, %lld sample load(s) skipped in "
           "training\n", (long long)left_out, (long long)loads);
}

/* ---- the end --------------------------------------------------------------------------------- */

/* K >= 2: the final lines with mIoU (tk: the training counts summed over ranks). */
static void print_final_k(const cg_run_t *r, const cg_train_figs_t *f, const int64_t *lk,
                          int64_t last_win, double ips, double wall) {
  const int K = r->model.nclass;
  printf("final: %lld steps, train loss %.4f (last %lld steps), train mIoU %.4f (same steps), "
         "%.1f img/s, %.1f s\n",
         (long long)r->total, f->last_window_loss, (long long)last_win, cg_confk_miou(lk, K), ips,
         wall);
  if (f->have_val) {
    printf("final validation: ");
    print_k_figures(f->val.loss, f->val.confk, K);
    printf("  (%lld images, %d classes)\n", (long long)f->val.images, K);
    print_class_table(r, f->val.confk);
  }
}

/* The final lines of a run that trained no step (resumed at or past its end): no training
 * figures, which were not measured; the validation of the weights it loaded. */
static void print_final_idle(const cg_run_t *r, const cg_train_figs_t *f, double wall) {
  const int K = r->model.nclass;
  if (r->revalidated && r->early_step) /* the cut validation, run again, stopped it early */
    printf("final: no steps trained (resumed at step %lld, whose validation, run again, ended "
           "the run: --early-stop-patience), %.1f s; %s\n", (long long)r->s0, wall,
           r->revalidated == 2 ? "its checkpoint written again with the validation figures"
                               : "no checkpoint written");
  else
    printf("final: no steps trained (resumed at step %lld, at or past this run's %lld steps), "
           "%.1f s; %s\n", (long long)r->s0, (long long)r->total, wall,
           r->refigure && f->have_val ? "its checkpoint written again with the "
                                                   "validation figures"
                                                 : "no checkpoint written");
  if (!f->have_val) return;
  if (K > 1) {
    printf("final validation: ");
    print_k_figures(f->val.loss, f->val.confk, K);
    printf("  (%lld images, %d classes; the checkpoint's weights)\n", (long long)f->val.images,
           K);
    print_class_table(r, f->val.confk);
  } else {
    printf("final validation: loss %.4f  IoU %.4f  Dice %.4f  accuracy %.4f  (%lld images; the "
           "checkpoint's weights)\n", f->val.loss, cg_confusion_iou(&f->val.conf),
           cg_confusion_dice(&f->val.conf), cg_confusion_acc(&f->val.conf),
           (long long)f->val.images);
  }
}

static void print_final(const cg_run_t *r, const cg_train_figs_t *f, const cg_confusion_t *last,
                        const int64_t *lk, double ips, double wall) {
  const cg_config_t *cfg = r->cfg;
  const int64_t total = r->total;
  if (r->s0 >= total) {
    print_final_idle(r, f, wall);
    fflush(stdout);
    return;
  }
  /* the last report window; a resumed run's first window starts at its first step */
  int64_t last_win = total % cfg->report_every ? total % cfg->report_every : cfg->report_every;
  if (last_win > total - r->s0) last_win = total > r->s0 ? total - r->s0 : 0;
  if (r->model.nclass > 1) {
    print_final_k(r, f, lk, last_win, ips, wall);
  } else {
    printf("final: %lld steps, train loss %.4f (last %lld steps), train IoU %.4f (same steps), "
           "%.1f img/s, %.1f s\n",
           (long long)total, f->last_window_loss, (long long)last_win, cg_confusion_iou(last),
           ips, wall);
    if (f->have_val)
      printf("final validation: loss %.4f  IoU %.4f  Dice %.4f  accuracy %.4f  (%lld images)\n",
             f->val.loss, cg_confusion_iou(&f->val.conf), cg_confusion_dice(&f->val.conf),
             cg_confusion_acc(&f->val.conf), (long long)f->val.images);
  }
  if (r->c->size > 1)
    printf("gradient all-reduce: %.0f bytes in %s on rank 0 (%lld steps)\n", r->grad_bytes,
           cfg->grad_comm, (long long)(total - r->s0));
  if (r->prec == CG_PREC_FP16)
    printf("fp16 loss scaling: %lld step(s) skipped for inf/NaN gradients (%lld in this run), "
           "loss scale now %g\n", (long long)(r->skipped0 + r->health.skipped),
           (long long)r->health.skipped, (double)r->loss_scale);
  fflush(stdout);
}

static void fill_result(const cg_run_t *r, const cg_train_figs_t *f, double ips, double wall,
                        cg_train_result_t *res) {
  const cg_cluster_t *cl = &f->last_cluster;
  memset(res, 0, sizeof *res);
  res->steps = r->total;
  res->img_per_s = ips;
  res->train_s = f->train_s;
  res->wall_s = wall;
  res->gpu_busy = isfinite(cl->compute_busy) ? cl->compute_busy : -1;
  res->data_wait = cl->data_wait;
  res->comm_exposed = cl->comm_exposed;
  res->cpu_busy = isfinite(cl->cpu_busy) ? cl->cpu_busy : -1;
  res->cpu_share = cl->cpu_share;
  res->val_iou = !f->have_val           ? -1
                 : r->model.nclass > 1 ? cg_confk_miou(f->val.confk, r->model.nclass)
                                       : cg_confusion_iou(&f->val.conf);
  res->train_loss = f->last_window_loss;
  res->last_img_per_s = cl->img_per_s;
}

/* K >= 2: the keys after the binary ones: ", \"num_classes\": K, \"ignore_index\": I,
 * \"miou\": m, \"train_miou\": t, \"per_class\": [...], \"confusion\": [[...], ...]" (validation
 * figures; null without). */
static char *metrics_k(const cg_run_t *r, const cg_train_figs_t *f, const int64_t *tk,
                       const int64_t *lk) {
  const int K = r->model.nclass;
  size_t cap = 256 + (size_t)K * (200 + 16 + CG_CLASSNAME_MAX) + (size_t)K * (K * 22 + 8);
  size_t n = 0;
  char *s = cg_malloc(cap, "metrics");
  char mi[32], ma[32], tm[32], tr[32];
  const int trained = r->s0 < r->total;
  json_num(mi, sizeof mi, f->have_val ? cg_confk_miou(f->val.confk, K) : NAN);
  json_num(ma, sizeof ma, f->have_val ? cg_confk_macc(f->val.confk, K) : NAN);
  json_num(tm, sizeof tm, trained ? cg_confk_miou(lk, K) : NAN);
  json_num(tr, sizeof tr, trained ? cg_confk_miou(tk, K) : NAN);
  n += (size_t)snprintf(s + n, cap - n, ", \"num_classes\": %d, \"ignore_index\": %d, "
                        "\"miou\": %s, \"macc\": %s, \"train_miou\": %s, "
                        "\"train_miou_run\": %s, \"per_class\": [", K, r->cfg->ignore_index, mi,
                        ma, tm, tr);
  for (int c = 0; f->have_val && c < K; c++) {
    double iou, dice, acc;
    int64_t gt;
    const int present = cg_confk_class(f->val.confk, K, c, &iou, &dice, &gt, NULL);
    const int labelled = cg_confk_class_acc(f->val.confk, K, c, &acc);
    char a[32], b[32], d[32];
    json_num(a, sizeof a, present ? iou : NAN);
    json_num(b, sizeof b, present ? dice : NAN);
    json_num(d, sizeof d, labelled ? acc : NAN);
    char name[8 + CG_CLASSNAME_MAX] = "null"; /* names hold no quote or backslash */
    if (r->class_names) snprintf(name, sizeof name, "\"%s\"", r->class_names[c]);
    n += (size_t)snprintf(s + n, cap - n, "%s{\"class\": %d, \"name\": %s, \"iou\": %s, "
                          "\"dice\": %s, \"acc\": %s, \"gt_pixels\": %lld}", c ? ", " : "", c,
                          name, a, b, d, (long long)gt);
  }
  /* the K x K counts, a row per truth class, a column per predicted one */
  n += (size_t)snprintf(s + n, cap - n, "], \"confusion\": %s", f->have_val ? "[" : "null");
  for (int t = 0; f->have_val && t < K; t++)
    for (int c = 0; c < K; c++)
      n += (size_t)snprintf(s + n, cap - n, "%s%lld%s", c ? ", " : t ? ", [" : "[",
                            (long long)f->val.confk[t * K + c], c == K - 1 ? "]" : "");
  if (f->have_val) snprintf(s + n, cap - n, "]");
  return s;
}

/* --metrics-out: one JSON object; 0, or -1 after a warning. A figure that was not measured
 * (no validation, no step trained) or is not finite is null: the file is always valid JSON. */
static int write_metrics(const cg_run_t *r, const cg_train_figs_t *f, const cg_confusion_t *train,
                         const cg_confusion_t *last, const int64_t *tk, const int64_t *lk,
                         double ips, double wall) {
  const cg_config_t *cfg = r->cfg;
  const int K = r->model.nclass;
  const int trained = r->s0 < r->total; /* a run resumed at or past its end trained nothing */
  char err[2048];
  char vi[32], vd[32], va[32], vl[32], tl[32], ti[32], tr[32], ip[32];
  const int hv = f->have_val;
  json_num(vi, sizeof vi, !hv ? NAN : K > 1 ? cg_confk_miou(f->val.confk, K)
                                             : cg_confusion_iou(&f->val.conf));
  json_num(vd, sizeof vd, !hv ? NAN : K > 1 ? cg_confk_mdice(f->val.confk, K)
                                             : cg_confusion_dice(&f->val.conf));
  json_num(va, sizeof va, !hv ? NAN : K > 1 ? cg_confk_acc(f->val.confk, K)
                                             : cg_confusion_acc(&f->val.conf));
  json_num(vl, sizeof vl, hv ? f->val.loss : NAN);
  json_num(tl, sizeof tl, trained ? f->last_window_loss : NAN);
  json_num(ti, sizeof ti, !trained ? NAN : K > 1 ? cg_confk_miou(lk, K) : cg_confusion_iou(last));
  json_num(tr, sizeof tr, !trained ? NAN : K > 1 ? cg_confk_miou(tk, K) : cg_confusion_iou(train));
  json_num(ip, sizeof ip, trained ? ips : NAN);
  /* --clip-grad-norm: null without it, or without a measured step */
  const cg_acc_t *t = &f->total;
  const int gon = cfg->clip_grad_norm > 0, gsome = gon && t->gnorm_steps > 0;
  char cn[32], gm[32], gx[32], gl[32], gc[32];
  json_num(cn, sizeof cn, gon ? cfg->clip_grad_norm : NAN);
  json_num(gm, sizeof gm, gsome ? t->gnorm_sum / (double)t->gnorm_steps : NAN);
  json_num(gx, sizeof gx, gsome ? t->gnorm_max : NAN);
  json_num(gl, sizeof gl, gsome ? t->gnorm_last : NAN);
  json_num(gc, sizeof gc, gon && trained ? (double)t->clipped : NAN);
  char *extra = K > 1 ? metrics_k(r, f, tk, lk) : NULL;
  const int sgd = cg_cfg_sgd(cfg);
  char mom[32] = "null"; /* SGD's momentum; AdamW has none */
  if (sgd) snprintf(mom, sizeof mom, "%.9g", cfg->momentum);
  char es[24] = "null"; /* the step an early stop ended the run after */
  if (r->early_step) snprintf(es, sizeof es, "%lld", (long long)r->early_step);
  const size_t ncw = strlen(cfg->class_weights) + 8;
  char *cws = cg_malloc(ncw, "class weights"); /* a JSON list, or null */
  snprintf(cws, ncw, "%s%s%s", ncw > 8 ? "[" : "null", cfg->class_weights, ncw > 8 ? "]" : "");
  const size_t cap = 2048 + strlen(cws) + (extra ? strlen(extra) : 0);
  char *json = cg_malloc(cap, "metrics");
  snprintf(json, cap,
           "{\"steps\": %lld, \"steps_trained\": %lld, \"ranks\": %d, \"global_batch\": %lld, "
           "\"grad_accum\": %d, "
           "\"train_loss\": %s, \"val_loss\": %s, \"val_iou\": %s, \"val_dice\": %s, "
           "\"val_acc\": %s, \"train_iou\": %s, \"train_iou_run\": %s, \"img_per_s\": %s, "
           "\"wall_s\": %.3f, \"train_s\": %.3f, "
           "\"backend\": \"%s\", \"precision\": \"%s\", \"image_size\": %d, "
           "\"model_base\": %d, \"model_depth\": %d, \"params\": %zu, \"grad_comm\": \"%s\", "
           "\"grad_comm_bytes\": %.0f, \"clip_grad_norm\": %s, \"grad_norm_mean\": %s, "
           "\"grad_norm_max\": %s, \"grad_norm_last\": %s, \"steps_clipped\": %s, "
           "\"dice_weight\": %.9g, \"class_weights\": %s, \"pos_weight\": %.9g, "
           "\"label_smoothing\": %.9g, \"focal_gamma\": %.9g, \"optimizer\": \"%s\", "
           "\"momentum\": %s, "
           "\"nesterov\": %s, \"ohem_thresh\": %.9g, \"ohem_min_kept\": %lld, "
           "\"early_stop_patience\": %lld, \"early_stop_step\": %s, \"ema_decay\": %.15g%s}\n",
           (long long)r->total, (long long)(trained ? r->total - r->s0 : 0), r->c->size,
           (long long)r->global, cfg->grad_accum, tl, vl, vi, vd, va, ti, tr, ip, wall, f->train_s,
           r->ops->name, cg_precision_name(r->prec), cfg->image_size, cfg->model_base,
           cfg->model_depth, r->model.nparams, cfg->grad_comm, r->grad_bytes, cn, gm, gx, gl, gc,
           cfg->dice_weight, cws, cfg->pos_weight, cfg->label_smoothing, cfg->focal_gamma,
           cfg->optimizer, mom,
           sgd && cfg->nesterov ? "true" : "false", cfg->ohem_thresh,
           (long long)(cfg->ohem_thresh > 0 ? cg_cfg_ohem_min_kept(cfg) : 0),
           (long long)cfg->early_stop_patience, es, cfg->ema_decay, extra ? extra : "");
  free(extra);
  free(cws);
  const int rc = cg_afile_save(cfg->metrics_out, json, strlen(json), err, sizeof err);
  free(json);
  if (rc != 0) {
    cg_log_warn("--metrics-out: %s", err);
    return -1;
  }
  return 0;
}

/* --params-out: the trained fp32 parameters, raw; 0, or -1 after a warning. */
static int write_params(cg_run_t *r) {
  char err[2048];
  if (r->ema) r->ops->get_ema(r->be, r->params); /* --ema-decay: the model is the average */
  else r->ops->get_params(r->be, r->params);
  if (cg_afile_save(r->cfg->params_out, r->params, sizeof(float) * r->model.nparams, err,
                    sizeof err)) {
    cg_log_warn("--params-out: %s", err);
    return -1;
  }
  return 0;
}

int cg_report_final(cg_run_t *r, const cg_train_figs_t *f, cg_train_result_t *res) {
  const cg_config_t *cfg = r->cfg;
  const int root = r->c->rank == 0;
  const cg_confusion_t *tc = &f->total.conf, *lc = &f->last_conf;
  int64_t cnt[8] = {tc->tp, tc->fp, tc->fn, tc->tn, lc->tp, lc->fp, lc->fn, lc->tn};
  cg_comm_sum_i64(r->c, cnt, 8);
  const cg_confusion_t train = {cnt[0], cnt[1], cnt[2], cnt[3]};
  const cg_confusion_t last = {cnt[4], cnt[5], cnt[6], cnt[7]};
  const int K = r->model.nclass;
  int64_t *tk = NULL, *lk = NULL;
  if (K > 1) { /* the run's counts, then the last window's */
    tk = cg_malloc(2 * sizeof(int64_t) * K * K, "confusion");
    lk = tk + K * K;
    memcpy(tk, f->total.confk, sizeof(int64_t) * K * K);
    if (f->last_confk) memcpy(lk, f->last_confk, sizeof(int64_t) * K * K);
    else memset(lk, 0, sizeof(int64_t) * K * K);
    cg_comm_sum_i64(r->c, tk, 2 * K * K);
  }
  const double wall = cg_now() - r->t_begin;
  const double ips = f->train_s > 0 ? (double)f->total.samples / f->train_s : 0;
  if (root) print_final(r, f, &last, lk, ips, wall);
  if (res) fill_result(r, f, ips, wall, res);
  int rc = 0;
  if (root && cfg->metrics_out[0] && write_metrics(r, f, &train, &last, tk, lk, ips, wall) != 0)
    rc = 1;
  free(tk);
  if (root && cfg->params_out[0] && write_params(r) != 0) rc = 1;
  return rc;
}

void cg_report_timeline(const cg_run_t *r) {
  if (r->trace_written && r->c->rank == 0)
    printf("timeline: %s.rank<R>.json (steps %s)\n", r->cfg->trace_out, r->cfg->trace_steps);
}
