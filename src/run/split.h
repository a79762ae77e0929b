/* split.h: the adaptive CPU/GPU work split.
 *
 * Work that can run on either side: featurising + normalising a sample (Sobel, local variance,
 * packing), and counting a batch's confusion metrics. The helpers always decode and augment.
 * The controller keeps the device from waiting for data while the CPU does as much as it can:
 * every window of steps it takes the measured costs (helper seconds per decoded sample, per
 * featurised sample, per counted batch), the helpers' capacity (helpers x the device's own time
 * per step) and the measured data wait, and sets
 *   k = the number of samples per batch the helpers featurise, and
 *   metrics_dev = whether the device counts the metrics,
 * so that B*decode + k*feature + (metrics on CPU ? count : 0) fits in 90% of the capacity.
 * If data wait is still above 2% it moves at least one more sample to the device; costs are
 * smoothed (EMA) so the split settles instead of oscillating.
 *
 * Pure and deterministic given its inputs, so tests can drive it with made-up figures. */
#ifndef CG_SPLIT_H
#define CG_SPLIT_H

typedef enum { CG_SPLIT_AUTO = 0, CG_SPLIT_CPU = 1, CG_SPLIT_GPU = 2 } cg_split_mode_t;

typedef struct {
  cg_split_mode_t mode;
  int batch;
  int k;            /* samples per batch featurised by the helpers */
  int metrics_dev;  /* 1: the device counts the metrics */
  /* smoothed costs, seconds (< 0 = not yet measured) */
  double dec, feat, met;
  int changes;      /* decisions that changed k or metrics_dev */
} cg_split_t;

/* One window's measurements. */
typedef struct {
  double steps;           /* steps in the window */
  double wall;            /* seconds */
  double data_wait;       /* seconds the host waited for batches */
  double device_busy;     /* seconds the compute device was busy (< 0 unknown) */
  int helpers;
  double dec_s, feat_s, met_s;   /* helper seconds, by kind */
  double dec_n, feat_n, met_n;   /* samples decoded, samples featurised, batches counted */
} cg_split_window_t;

void cg_split_init(cg_split_t *s, cg_split_mode_t mode, int batch);
/* Updates k / metrics_dev from a window; returns 1 if they changed. */
int cg_split_update(cg_split_t *s, const cg_split_window_t *w);
/* The share of the offloadable work the CPU does at the current split, by the measured costs
 * (k/batch when nothing is measured yet). */
double cg_split_cpu_share(const cg_split_t *s);

#endif
