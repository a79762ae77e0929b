/* schedule.c: the learning rate of a step (schedule.h). */
#include "schedule.h"

#include <math.h>
#include <string.h>

#include "lrfind.h" /* cg_lrfind_lr: --lr-find's rates */

double cg_train_lr(const cg_config_t *cfg, int64_t t, int64_t total) {
  if (cfg->lr_find > 0) return cg_lrfind_lr(cfg->lrf_lo, cfg->lrf_hi, cfg->lr_find, t);
  double lr = cfg->lr;
  if (t < cfg->warmup_steps) return lr * (double)(t + 1) / (double)cfg->warmup_steps;
  if (!strcmp(cfg->lr_schedule, "multistep")) { /* the milestones count from the start */
    for (int i = 0; i < cfg->nmilestones && t >= cfg->milestone[i]; i++) lr *= cfg->lr_gamma;
    return lr;
  }
  if (total <= cfg->warmup_steps) return lr;
  double p = (double)(t - cfg->warmup_steps) / (double)(total - cfg->warmup_steps);
  if (p > 1) p = 1; /* past the end (no caller asks): the schedule's last value, not NaN */
  if (!strcmp(cfg->lr_schedule, "cosine"))
    return cfg->min_lr + (lr - cfg->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
  if (!strcmp(cfg->lr_schedule, "poly"))
    return cfg->min_lr + (lr - cfg->min_lr) * pow(1.0 - p, cfg->lr_power);
  return lr;
}
