/* run.h: one training run's state (cg_run_t) and what it owns.
 *
 * cg_run_setup (run_setup.c) makes everything a run needs before its first step; the step loop
 * (train.c) drives it and the reports (train_report.c) read it; cg_run_teardown frees it.
 * Ownership: the run owns every pointer below except cfg, c and guard (borrowed, they must
 * outlive it) and place (owned by topo). ck_p is params (one buffer); the rest are distinct. */
#ifndef CG_RUN_H
#define CG_RUN_H

#include <stdint.h>

#include "backend.h"
#include "ckpt.h"
#include "classnames.h"
#include "comm.h"
#include "config.h"
#include "guard.h"
#include "model.h"
#include "source.h"
#include "rank_view.h"
#include "schedule.h" /* cg_train_lr: cg_run_lr */
#include "split.h"
#include "stats.h"
#include "topo.h"
#include "trace.h"

typedef struct {
  /* borrowed */
  const cg_config_t *cfg;   /* the caller's, or cfg_own */
  cg_config_t *cfg_own;     /* --class-weights balanced: the run's copy, the counted weights in
                               it (owned) */
  cg_comm_t *c;
  cg_guard_t *guard;
  double t_begin;           /* cg_now() when set-up began: the run's wall clock */
  /* backend, model and placement */
  const cg_backend_ops_t *ops;
  int is_cuda;
  cg_precision_t prec;
  cg_model_t model;
  const char *const *class_names; /* the K names of --class-names, into names_own; NULL: none */
  cg_classnames_t *names_own;
  cg_ckpt_shape_t shape;    /* the model as checkpoints name it */
  cg_topo_t *topo;
  const cg_topo_plan_t *place;
  int device;               /* GPU ordinal (the plan's, else the local rank) */
  int threads, workers;     /* compute threads (cpu backend), helper threads */
  int *helper_cpus;         /* core of each helper (-1 unpinned), workers entries */
  /* data: the opened sources (NULL for synthetic data) and the train/val views of them */
  cg_source_t *base_src, *val_base, *train_src, *val_src;
  int synthetic;
  int64_t ntrain, nval, spe, total, global; /* samples; steps per epoch, of the run; per step */
  int64_t sched_total;      /* the planned total the learning-rate schedule runs over (total
                               until an early stop ends the run sooner) */
  int64_t early_step;       /* --early-stop-patience ended the run after this step; 0 = not */
  /* What a resume validates again that a stop cut short, decided at set-up (decide_again):
   * resumed with the same global batch from a checkpoint of this run's own weights (not its
   * moving average for the other) without figures of its step, then
   * refigure: at the run's last step, the checkpoint of its own run's last step and the
   * directory's newest (not an older FILE: rewriting a step removes the lineage's later ones),
   * whose final validation a stop came before or cut: the run trains nothing, validates, and
   * writes that checkpoint again with the figures (and a history record);
   * revalidate: at a step before its last that --val-every validates (a mid-run validation
   * cut short): those weights are validated before the first step, as the run without the
   * stop did (its history record, --lr-schedule plateau's step, early stopping's count); 2:
   * and that checkpoint, the newest, written again with the figures;
   * revalidated: that validation ran before the first step; 2: and the checkpoint was written
   * again. */
  int refigure, revalidate, revalidated;
  int64_t lrf_step;         /* --lr-find's search ended after this step (diverged); 0 = not */
  double step_loss;         /* the last closed training step's local loss (NaN: not finite) */
  /* --early-stop-patience's state (checkpoints keep it, as Lightning's do): the best value of
   * --best-metric (NAN before the first validation), its step, and the validations since that
   * have not improved on it */
  double es_best;
  int64_t es_best_step, es_wait;
  /* --lr-schedule plateau's state (ReduceLROnPlateau's; checkpoints keep it): the factor on the
   * schedule's rate now (1 for every other schedule), the best value of --best-metric (the
   * worst there is before the first validation), the validations since that have not improved
   * on it, and those left of a cooldown */
  double lr_scale, pl_best;
  int64_t pl_bad, pl_cool;
  double lr_scale_used;     /* lr_scale as the last step submitted took it (a validation after
                               it may have lowered lr_scale since) */
  int64_t bad_trained;      /* --skip-bad: samples of the trained batches that failed to load */
  char data_names[40];      /* "N:HASH": the training set's count and names in order (FNV-1a),
                               stored in checkpoints to tell a resume the data changed; "" for
                               synthetic data */
  char data_sides[32];      /* "MIN:MAX": the shorter sides of the data's images, in pixels, stored
                               in checkpoints for predict --resize auto; "" when unknown (a
                               shard keeps its records, not the files' sizes) */
  /* resume */
  int resumed, exact;       /* exact: the same global batch and training set (ckpt.h) */
  int init_from;            /* params hold --init-from's weights (init_from.h) */
  cg_ckpt_info_t ck;        /* the checkpoint resumed from */
  char ck_path[CG_PATH_MAX + 64];
  int64_t s0, opt_t0;       /* first step of this run; AdamW steps taken before it */
  int64_t skipped0;         /* fp16 steps skipped before this run (from the checkpoint) */
  uint64_t run_id;          /* the lineage written into every checkpoint (ckpt.h) */
  float *params;            /* nparams: initial parameters, then the host copy for outputs */
  float *adam_m, *adam_v;   /* the checkpoint's moments until the backend has them */
  float *ema_ck;            /* the checkpoint's moving average until the backend has it (NULL:
                               it has none) */
  int ema;                  /* --ema-decay: the backend keeps the weights' moving average */
  int ema_started;          /* it holds one (the checkpoint's, or a step's): the next step's
                               update moves it; 0: the next step's copies the weights */
  /* gradient sync, timeline, backend */
  cg_buckets_t buckets;
  struct cg_gsync *gs;      /* comm/gsync.h */
  struct cg_nccl *nccl;     /* comm/nccl_comm.h; NULL: MPI (gs) or a single process */
  cg_trace_t *trace;        /* --trace-out, or NULL */
  int trace_written;        /* set by cg_run_teardown: the timeline files were written */
  cg_backend_t *be;
  cg_stats_t *stats;
  cg_rank_view_t view;      /* --report-ranks: the balance table's and binding report's rows */
  /* the step loop */
  int bar;                  /* progress: 2 bar, 1 plain, 0 off */
  int slow;                 /* test-only: this rank sleeps per step */
  cg_split_t split;
  double busy_total;        /* device busy seconds of every fetched step (split controller) */
  cg_guard_health_t health; /* verdicts of this rank's fetched training steps */
  int64_t last_done;        /* last training step fetched here (1-based count) */
  int64_t *table;           /* last_done of every rank, as of the last exchange */
  float loss_scale;         /* as the last fetched step reported it */
  double micro_loss;        /* --grad-accum: the fetched micro-batches' losses of the step in
                               flight, judged with its last */
  double grad_bytes;        /* gradient bytes this rank all-reduced in this run (--grad-comm) */
  /* checkpoints */
  const char *ckpt_dir;     /* NULL: no checkpoints */
  int ck_lock;              /* rank 0: cg_ckpt_lock_dir's descriptor, held to the end; else -1 */
  float *ck_p, *ck_m, *ck_v; /* rank 0: host copies for writing (ck_p is params) */
  float *ck_t;              /* ... and with --ema-decay the training weights (ck_p holds the
                               average then, as the checkpoint stores it) */
  char last_ckpt[CG_PATH_MAX + 64]; /* the last good checkpoint, written or loaded ("" none) */
  int64_t last_ckpt_step;   /* its step, -1 none */
  int have_val;             /* the latest validation (written into checkpoints of its step) */
  int64_t val_step;
  double val_loss, val_iou; /* val_iou: IoU (binary) or mIoU (K >= 2) */
} cg_run_t;

/* Collective. Makes the run of cfg on c: output paths, backend, model, placement, data, resume
 * position, bucket plan, gradient sync, trace, NCCL, backend with its parameters, stats. Returns
 * 0 with r ready, or the process exit code (CG_EXIT_USAGE for bad input, 1 when the backend
 * cannot start) once the error has been reported (by rank 0, agreed by every rank) and
 * everything made so far is freed again. */
int cg_run_setup(cg_run_t *r, const cg_config_t *cfg, cg_comm_t *c, cg_guard_t *guard);

/* Frees everything r owns, in the reverse order of set-up (the backend before the NCCL
 * communicator it uses, before MPI_Finalize); any part not made yet is skipped. Closing the
 * trace writes its files (r->trace_written). Not collective; r owns nothing afterwards but
 * its settings (r->cfg stays readable, for the reports after teardown). */
void cg_run_teardown(cg_run_t *r);

/* --val-every: N, 0 (only at the end) or, by default (-1), once per epoch. */
static inline int64_t cg_run_val_every(const cg_run_t *r) {
  return r->cfg->val_every < 0 ? r->spe : r->cfg->val_every;
}
/* The figure --best-metric (and --early-stop-patience) watch, and whether lower is better. */
static inline int cg_run_best_by_loss(const cg_run_t *r) {
  return !strcmp(r->cfg->best_metric, "val_loss");
}
static inline const char *cg_run_best_name(const cg_run_t *r) {
  return cg_run_best_by_loss(r) ? "val_loss" : r->model.nclass > 1 ? "val_miou" : "val_iou";
}
/* The learning rate of 0-based step t: the schedule's, and --lr-schedule plateau's reductions. */
static inline double cg_run_lr(const cg_run_t *r, int64_t t) {
  return cg_train_lr(r->cfg, t, r->sched_total) * r->lr_scale;
}
/* The rate the last step submitted, 1-based `step` (>= 1), trained at, for what reports it
 * (the step lines, the history, a checkpoint's header). */
static inline double cg_run_lr_trained(const cg_run_t *r, int64_t step) {
  return cg_train_lr(r->cfg, step - 1, r->sched_total) * r->lr_scale_used;
}
/* Frees the run's own copy of the settings (--class-weights balanced) last of all; r->cfg is
 * NULL afterwards. */
void cg_run_free_settings(cg_run_t *r);

#endif
