/* train.h: the `train` command — the data-parallel training loop shared by every backend. */
#ifndef CG_TRAIN_H
#define CG_TRAIN_H

#include "comm.h"
#include "config.h"

/* Runs training on every rank of c. Returns the process exit code (0, or CG_EXIT_USAGE for
 * bad input found before training started — reported once by rank 0 and agreed by all). */
int cg_train_run(const cg_config_t *cfg, cg_comm_t *c);

/* Learning rate of 0-based step t of total (warm-up, then constant or cosine). */
double cg_train_lr(const cg_config_t *cfg, int64_t t, int64_t total);

#endif
