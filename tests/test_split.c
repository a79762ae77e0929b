/* test_split.c: the split controller on made-up measurements — it moves featurisation to the
 * device when the helpers cannot keep up, keeps everything on the CPU when they can, settles
 * on the split the costs call for, moves the metrics only when even k = 0 does not fit, and
 * reacts to measured data wait. */
#include <stdio.h>

#include "split.h"
#include "testutil.h"

/* A window of 10 steps: helpers' measured costs and the device's step time. */
static cg_split_window_t window(const cg_split_t *s, int helpers, double dec, double feat,
                                double met, double step, double wait_frac) {
  cg_split_window_t w = {0};
  w.steps = 10;
  w.wall = 10 * step / (1 - wait_frac);
  w.data_wait = w.wall * wait_frac;
  w.device_busy = 10 * step;
  w.helpers = helpers;
  w.dec_n = 10.0 * s->batch;
  w.dec_s = w.dec_n * dec;
  w.feat_n = 10.0 * s->k;
  w.feat_s = w.feat_n * feat;
  w.met_n = s->metrics_dev ? 0 : 10;
  w.met_s = w.met_n * met;
  return w;
}

int main(void) {
  cg_split_t s;
  /* Plenty of helpers: stays all-CPU. 4 helpers x 10 ms x 0.9 = 36 ms; 32 x (0.1 + 0.5) + 1 = 20.2 */
  cg_split_init(&s, CG_SPLIT_AUTO, 32);
  for (int i = 0; i < 5; i++) {
    cg_split_window_t w = window(&s, 4, 1e-4, 5e-4, 1e-3, 10e-3, 0);
    cg_split_update(&s, &w);
  }
  CG_TEST_CHECK(s.k == 32 && !s.metrics_dev, "plenty of helpers: k %d metrics_dev %d", s.k, s.metrics_dev);
  printf("PASS enough helpers: all %d samples and the metrics on the CPU, share %.2f\n", s.k,
         cg_split_cpu_share(&s));
  /* One helper: 0.9 x 10 ms = 9 ms; decode 32 x 0.1 = 3.2 ms, metrics 1 ms, features 0.5 ms
   * each -> k = floor((9 - 3.2 - 1) / 0.5) = 9. */
  cg_split_init(&s, CG_SPLIT_AUTO, 32);
  for (int i = 0; i < 6; i++) {
    cg_split_window_t w = window(&s, 1, 1e-4, 5e-4, 1e-3, 10e-3, s.k > 9 ? 0.3 : 0);
    cg_split_update(&s, &w);
  }
  CG_TEST_CHECK(s.k == 9 && !s.metrics_dev, "one helper: k %d (want 9) metrics_dev %d", s.k,
                s.metrics_dev);
  printf("PASS one helper settles at k = %d of 32, share %.2f, %d change(s)\n", s.k,
         cg_split_cpu_share(&s), s.changes);
  /* Decoding alone nearly fills the helper: metrics move to the device, k = 0. */
  cg_split_init(&s, CG_SPLIT_AUTO, 32);
  for (int i = 0; i < 4; i++) {
    cg_split_window_t w = window(&s, 1, 2.7e-4, 5e-4, 1e-3, 10e-3, 0.2);
    cg_split_update(&s, &w);
  }
  CG_TEST_CHECK(s.k == 0 && s.metrics_dev, "starved: k %d metrics_dev %d", s.k, s.metrics_dev);
  printf("PASS starved helpers: k = 0 and the metrics on the device\n");
  /* Costs unknown yet but data wait measured: at least one sample moves per window. */
  cg_split_init(&s, CG_SPLIT_AUTO, 8);
  cg_split_window_t w = {0};
  w.steps = 10;
  w.wall = 1;
  w.data_wait = 0.5;
  w.device_busy = 0.5;
  w.helpers = 1;
  CG_TEST_CHECK(cg_split_update(&s, &w) == 1 && s.k == 7, "waiting moves one sample: k %d", s.k);
  /* Fixed modes never move. */
  cg_split_init(&s, CG_SPLIT_CPU, 8);
  CG_TEST_CHECK(cg_split_update(&s, &w) == 0 && s.k == 8, "--split cpu moved");
  cg_split_init(&s, CG_SPLIT_GPU, 8);
  CG_TEST_CHECK(s.k == 0 && s.metrics_dev == 1 && cg_split_update(&s, &w) == 0, "--split gpu");
  return cg_test_done("test_split");
}
