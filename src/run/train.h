/* train.h: the `train` command — the data-parallel training loop shared by every backend. */
#ifndef CG_TRAIN_H
#define CG_TRAIN_H

#include "comm.h"
#include "config.h"
#include <stdint.h>

/* What a finished run measured (the same on every rank: cluster figures). */
typedef struct {
  int64_t steps;
  double img_per_s;     /* global samples / training seconds */
  double last_img_per_s; /* in the last report window (steady state) */
  double train_s, wall_s;
  double gpu_busy;      /* mean over ranks of device busy / step time (the GPU, or the cpu
                           backend's compute threads); < 0 not measured */
  double data_wait;     /* mean over ranks of data wait / step time */
  double comm_exposed;  /* mean over ranks */
  double cpu_busy;      /* mean helper busy fraction */
  double cpu_share;
  double val_iou;       /* < 0 without validation */
  double train_loss;
} cg_train_result_t;

/* Runs training on every rank of c. Returns the process exit code (0, or CG_EXIT_USAGE for
 * bad input found before training started — reported once by rank 0 and agreed by all).
 * res (optional) receives the run's figures. */
int cg_train_run(const cg_config_t *cfg, cg_comm_t *c, cg_train_result_t *res);

#endif
