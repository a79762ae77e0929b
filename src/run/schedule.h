/* schedule.h: the learning rate of a training step: warm-up, then constant, cosine, poly or
 * multistep (--lr-schedule), or --lr-find's range test. Pure arithmetic on the config; the run
 * multiplies it by --lr-schedule plateau's reductions (cg_run_lr, run.h). */
#ifndef CG_SCHEDULE_H
#define CG_SCHEDULE_H

#include <stdint.h>

#include "config.h"

/* Learning rate of 0-based step t of total (plateau is constant here). */
double cg_train_lr(const cg_config_t *cfg, int64_t t, int64_t total);

#endif
