/* split.c: the adaptive CPU/GPU split controller (see split.h). */
#include "split.h"

#include <math.h>

#define EMA 0.5          /* weight of the newest window */
#define TARGET_UTIL 0.9  /* fraction of the helpers' capacity to plan for */
#define GROW_UTIL 0.8    /* ... and to plan for when giving the helpers more: a dead band */
#define WAIT_MAX 0.02    /* data wait above which work must move to the device */

void cg_split_init(cg_split_t *s, cg_split_mode_t mode, int batch) {
  s->mode = mode;
  s->batch = batch;
  s->k = mode == CG_SPLIT_GPU ? 0 : batch;
  s->metrics_dev = mode == CG_SPLIT_GPU;
  s->dec = s->feat = s->met = -1;
  s->changes = 0;
}

static void smooth(double *v, double sum, double n) {
  if (n <= 0) return;
  double x = sum / n;
  *v = *v < 0 ? x : EMA * x + (1 - EMA) * *v;
}

int cg_split_update(cg_split_t *s, const cg_split_window_t *w) {
  smooth(&s->dec, w->dec_s, w->dec_n);
  smooth(&s->feat, w->feat_s, w->feat_n);
  smooth(&s->met, w->met_s, w->met_n);
  if (s->mode != CG_SPLIT_AUTO || w->steps <= 0 || w->wall <= 0 || w->helpers <= 0) return 0;
  const int B = s->batch, k0 = s->k, m0 = s->metrics_dev;
  /* The device's own time per step: what the helpers have to keep up with. Without a measure
   * of it, the host's step time minus its waiting. */
  double step = w->device_busy > 0 ? w->device_busy / w->steps : (w->wall - w->data_wait) / w->steps;
  double cap = w->helpers * step;
  double wait = w->data_wait / w->wall;
  if (s->dec >= 0 && s->feat > 0) {
    double met = s->met >= 0 ? s->met : 0;
    /* Samples the helpers can featurise at a planned utilisation u (metrics stay on the CPU
     * unless even k = 0 cannot fit them). */
    double left_hold = TARGET_UTIL * cap - B * s->dec, left_grow = GROW_UTIL * cap - B * s->dec;
    int mdev = left_hold - met < 0;
    if (!mdev) {
      left_hold -= met;
      left_grow -= met;
    }
    int k_hold = (int)floor(left_hold / s->feat), k_grow = (int)floor(left_grow / s->feat);
    k_hold = k_hold < 0 ? 0 : (k_hold > B ? B : k_hold);
    k_grow = k_grow < 0 ? 0 : (k_grow > B ? B : k_grow);
    /* Shrink as soon as the plan says so; grow only when there is room to spare. */
    if (k_hold < k0) s->k = k_hold;
    else if (k_grow > k0) s->k = k_grow;
    s->metrics_dev = mdev;
  }
  /* The measurement says the device waited: move at least one sample more. */
  if (wait > WAIT_MAX && s->k >= k0) {
    if (k0 > 0) s->k = k0 - 1;
    else s->metrics_dev = 1;
  }
  int changed = s->k != k0 || s->metrics_dev != m0;
  s->changes += changed;
  return changed;
}

double cg_split_cpu_share(const cg_split_t *s) {
  if (s->feat <= 0) return (double)s->k / s->batch;
  double met = s->met > 0 ? s->met : 0;
  double all = s->batch * s->feat + met;
  return all > 0 ? (s->k * s->feat + (s->metrics_dev ? 0 : met)) / all : 1.0;
}
