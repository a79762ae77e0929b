/* config.h: the run configuration, filled from the command line by cli.c (cli.h: the parser,
 * its defaults and --help). */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <string.h> /* strcmp: cg_cfg_sgd */

#include "classnames.h" /* CG_CLASSNAMES_LEN */
#include "jpeg_io.h"    /* cg_exif_t: --exif-orientation */
#include "labelmap.h"   /* CG_LABELMAP_TABLE_LEN */

#define CG_PATH_MAX 1024
#define CG_SETTING_MAX (2 * CG_PATH_MAX) /* the longest text of an option (--class-weights) */
/* What a bare --resume stands for (a file of that name is given as ./latest). */
#define CG_RESUME_LATEST "latest"
/* cg_config_t.ignore_index before cg_cli_check: --ignore-index was not given. */
#define CG_IGNORE_DEFAULT (-2)
#define CG_GRAD_ACCUM_MAX 1024 /* --grad-accum's largest */
#define CG_MILESTONES_MAX 16   /* --lr-milestones' count */

/* The commands cli.c parses; pack, inspect, export, import and predict parse their own flags
 * (main.c dispatches them). */
typedef enum { CG_CMD_NONE = 0, CG_CMD_TRAIN, CG_CMD_INFO } cg_command_t;
typedef enum { CG_SHOW_NONE = 0, CG_SHOW_HELP, CG_SHOW_VERSION } cg_show_t;

typedef struct {
  cg_command_t cmd;
  cg_show_t show;      /* parse returned 1: print help of cmd (NONE = general) or the version */
  /* backend */
  char backend[8];     /* auto | cpu | cuda */
  char precision[8];   /* auto | fp32 | bf16 | fp16 */
  int threads;         /* compute threads per rank, 0 = the rank's share of its cores */
  int cuda_graph;      /* 1 on, 0 off */
  char tf32[8];        /* auto | on | off (cuda fp32: TF32 convolutions; auto = on) */
  char algo_cache[CG_PATH_MAX];
  /* model */
  int model_base, model_depth, image_size;
  int num_classes;     /* 1 = binary (sigmoid head, BCE + Dice); K >= 2: K classes, softmax head */
  char class_names[CG_CLASSNAMES_LEN]; /* --class-names: after cg_cli_check the comma list (a
                                        * FILE's names read), "" = none (classnames.h) */
  char class_names_file[CG_CLASSNAMES_LEN]; /* the FILE a resume's first pass read them from
                                               (its merged pass counts them: its messages
                                               name it) */
  int ignore_index;    /* mask label left out of loss and metrics; -1 = none. cg_cli_check
                          resolves CG_IGNORE_DEFAULT (not given): 255 when K >= 2, else none */
  /* data */
  char data[CG_PATH_MAX]; /* "synthetic", a PNG directory, a .cgds shard or a list of pairs */
  char val_data[CG_PATH_MAX];
  char label_map[CG_PATH_MAX]; /* --label-map: "", "reduce-zero" or a file (made absolute) */
  /* the run's map as cg_labelmap_table writes it: from --label-map or a shard --data packed
   * with one (cg_cli_check), or a resumed checkpoint's settings; "" without a map */
  char label_map_table[CG_LABELMAP_TABLE_LEN];
  double val_fraction;
  int skip_bad;
  int64_t max_image_pixels; /* a larger image (width x height) is a bad sample */
  char exif_orientation[8]; /* --exif-orientation: stored | apply (cg_cfg_exif) */
  int check_data;      /* decode every sample once at start-up */
  int crop;            /* random-crop augmentation of real data (1 on, 0 off) */
  char crop_scale[48]; /* --crop-scale "A:B": the crop windows' side, of the shorter side */
  double crop_lo, crop_hi; /* parsed from crop_scale by cg_cli_check */
  double crop_cat_max;     /* --crop-cat-max: mmsegmentation's cat_max_ratio; 1 = off */
  char color_jitter[72]; /* --color-jitter "B:C:S:H" */
  double jitter[4];        /* parsed from color_jitter by cg_cli_check; all 0: off */
  char rotate[48];         /* --rotate "D[:P]" */
  double rotate_deg, rotate_prob; /* parsed from rotate by cg_cli_check; D 0: off */
  char flip[16];       /* --flip: on, off, horizontal, vertical or d4 (train.c's flip_mode) */
  int64_t train_samples, val_samples;
  int cpu_workers;     /* helper threads per rank; -1 = auto */
  int prefetch;        /* batches prepared ahead */
  char split[8];       /* auto | cpu | gpu: where features, normalisation and metrics run */
  int split_every;     /* steps per controller window */
  /* training */
  int batch;
  int grad_accum;      /* micro-batches of batch per rank per step (--grad-accum) */
  int64_t steps;       /* 0 = run --epochs */
  int64_t epochs;
  char optimizer[8];   /* --optimizer adamw | sgd */
  double lr, weight_decay, beta1, beta2, eps;
  double momentum;     /* --optimizer sgd: the momentum (dampening 0) */
  int nesterov;        /* --optimizer sgd: Nesterov momentum (1/0) */
  double clip_grad_norm; /* --clip-grad-norm: the largest global gradient L2 norm; 0 = off */
  double ema_decay;      /* --ema-decay: the weights' exponential moving average; 0 = off */
  double dice_weight;    /* --dice-weight: the soft Dice term's weight in the loss */
  char class_weights[CG_SETTING_MAX]; /* --class-weights: "W,W,..." (K >= 2), written back
                                         canonical */
  double pos_weight;     /* --pos-weight: binary BCE's foreground factor; 1 = none */
  float class_weight[255]; /* the loss's class weights as the backends take them (the
                              cg_backend_cfg_t.class_weight of cg_cfg_class_weight): K from
                              --class-weights, or one from --pos-weight; set by cg_cli_check */
  int nclass_weights;      /* ... their count; 0 = none */
  int class_weights_counted; /* the run counted --class-weights balanced from --data's pixels
                                (run_setup.c): the banner says so */
  double label_smoothing;  /* --label-smoothing: K >= 2, the CE targets' smoothing; 0 = none */
  double focal_gamma;      /* --focal-gamma: the focal loss's gamma; 0 = none */
  int64_t early_stop_patience; /* --early-stop-patience: validations without improvement of
                                  --best-metric before the run ends; 0 = off */
  double early_stop_min_delta;  /* --early-stop-min-delta: the least change that improves */
  int64_t lr_find;         /* --lr-find N: a learning-rate range test of N steps; 0 = off */
  char lr_find_range[64];  /* --lr-find-range "A:B" */
  double lrf_lo, lrf_hi;   /* parsed from lr_find_range by cg_cli_check */
  char lr_find_out[CG_PATH_MAX]; /* --lr-find-out FILE: every step as CSV */
  double ohem_thresh;      /* --ohem-thresh: OHEM's probability threshold; 0 = none */
  int64_t ohem_min_kept;   /* --ohem-min-kept: pixels OHEM keeps at least per sample; 0 = a
                              fifth of a sample's (cg_cfg_ohem_min_kept) */
  int64_t warmup_steps;
  char lr_schedule[12]; /* constant | cosine | poly | multistep | plateau */
  double lr_power;      /* poly: the exponent */
  char lr_milestones[CG_MILESTONES_MAX * 21]; /* multistep: "N,N,...", written back canonical */
  int64_t milestone[CG_MILESTONES_MAX];       /* ... parsed: steps done, increasing */
  int nmilestones;
  double lr_gamma;      /* multistep: the factor at each milestone; plateau: at each reduction */
  double min_lr;        /* cosine, poly: the learning rate they decay to; plateau: the floor */
  int64_t lr_patience;  /* plateau: validations without improvement tolerated */
  double lr_threshold;  /* plateau: the relative improvement that counts */
  int64_t lr_cooldown;  /* plateau: validations after a reduction that count as none bad */
  uint64_t seed;
  int64_t val_every;   /* steps between validations; 0 = only at the end; < 0 = once per epoch */
  char val_mode[8];    /* --val-mode square | whole: what validation scores (val_whole.h) */
  int64_t report_every;
  char report_ranks[24]; /* --report-ranks: auto|all|nodes|top|top:N (rank_view.h) */
  char metrics_out[CG_PATH_MAX];
  char params_out[CG_PATH_MAX];
  char stats_out[CG_PATH_MAX];
  char history_out[CG_PATH_MAX]; /* validation history, JSON lines ("" = CKPT_DIR/history.jsonl) */
  char history_csv[CG_PATH_MAX]; /* the same as CSV ("" = none) */
  char tensorboard[CG_PATH_MAX]; /* --tensorboard: the event files' directory ("" = none) */
  char prom_out[CG_PATH_MAX];
  char trace_out[CG_PATH_MAX];  /* prefix */
  char trace_steps[32];         /* "A:B" */
  double bucket_mb;
  double last_bucket_mb; /* the final bucket's target size (0 = not split off) */
  int deterministic;
  char allreduce[8];   /* auto | nccl | mpi */
  char grad_comm[8];   /* fp32 | bf16: the gradient all-reduce's element type */
  char progress[8];    /* auto | bar | plain | off */
  /* checkpoints and failures (ckpt.h, guard.h) */
  char checkpoint_dir[CG_PATH_MAX];
  int64_t checkpoint_every; /* steps; 0 = only at the end and when stopped by a signal */
  int keep;                 /* checkpoints of this run's lineage kept in checkpoint_dir */
  char best_metric[12];     /* auto | val_loss | val_iou | val_miou: what DIR/best is chosen by */
  int overwrite_checkpoints; /* start afresh in a checkpoint_dir that holds checkpoints */
  char resume[CG_PATH_MAX]; /* "" = no; CG_RESUME_LATEST = newest valid in checkpoint_dir;
                               else a checkpoint FILE or a DIR of them */
  int resume_found;         /* --resume found a checkpoint (cg_settings_resume; every rank) */
  char init_from[CG_PATH_MAX]; /* --init-from SRC ("" = a fresh initialisation); after
                                  cg_init_from_settings the file's absolute path (init_from.h) */
  int init_read;            /* cg_init_from_settings took the model flags from --init-from */
  int init_names;           /* ... and its class names (said with its weights) */
  double timeout_s;         /* watchdog: no progress for this long ends the job; 0 = off */
  char max_time[32];        /* --max-time as given ("" none) */
  double max_time_s;        /* its seconds (cg_cli_check); 0 = no limit */
  int64_t max_bad_steps;    /* fp16: consecutive skipped (overflowing) steps tolerated */
  /* test-only faults */
  int64_t test_nan_step;    /* 1-based step whose loss and gradient are made NaN; 0 = off */
  int test_slow_rank;   /* rank that sleeps test_slow_ms per step; -1 none */
  int test_slow_ms;
  double test_feat_ms;  /* extra helper milliseconds per CPU-featurised sample */
  double test_val_ms;   /* extra milliseconds per validation batch (square mode) */
  int test_ckpt_ms;     /* milliseconds rank 0 sleeps in each checkpoint write */
  /* the options as given (set by cg_cli_parse; argc 0 elsewhere): which flags were on the
   * command line, for --resume (run_settings.h) */
  /* cg_settings_apply merged a checkpoint's settings (or --resume found none): until then a
   * resumed run's --data and --val-data are not known, nor checked against each other */
  int merged;
  int argc;
  char **argv;
  /* info */
  int info_model, info_topology, info_split;
} cg_config_t;

/* The loss's class weights as cg_backend_cfg_t.class_weight and cpu_layers.h's cw take them:
 * NULL = none. */
/* --optimizer sgd (else AdamW). */
static inline int cg_cfg_sgd(const cg_config_t *c) { return !strcmp(c->optimizer, "sgd"); }

static inline const float *cg_cfg_class_weight(const cg_config_t *c) {
  return c->nclass_weights ? c->class_weight : NULL;
}

/* --class-weights balanced: the run counts them from --data's pixels (run_setup.c). */
static inline int cg_cfg_class_weights_balanced(const cg_config_t *c) {
  return !strcmp(c->class_weights, "balanced");
}

/* --exif-orientation: what image files' JPEG EXIF orientation makes of their pixels. */
static inline cg_exif_t cg_cfg_exif(const cg_config_t *c) {
  return !strcmp(c->exif_orientation, "apply") ? CG_EXIF_APPLY : CG_EXIF_STORED;
}

/* --ohem-min-kept resolved: 0 is a fifth of a sample's pixels. */
static inline int64_t cg_cfg_ohem_min_kept(const cg_config_t *c) {
  return c->ohem_min_kept > 0 ? c->ohem_min_kept
                              : (int64_t)c->image_size * c->image_size / 5;
}

#endif
