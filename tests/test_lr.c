/* test_lr.c: the learning-rate schedules (cg_train_lr, schedule.h) against PyTorch's.
 *
 * After a linear warm-up of W steps, step t (0-based) of T is step k = t - W of the decay: the
 * values below are PyTorch 2's, printed by /usr/bin/python3 with torch (lr 0.01, 10 decay
 * steps, read before each scheduler.step()):
 *   PolynomialLR(opt, total_iters=10, power=0.9)
 *   CosineAnnealingLR(opt, T_max=10, eta_min=1e-4)
 * poly with --min-lr is mmsegmentation's PolyLR, eta_min + (lr - eta_min) (1 - k/K)^power, which
 * PyTorch lacks: checked against that formula; constant stays --lr.
 * multistep (--lr-milestones 3,7, --lr-gamma 0.1) against
 *   MultiStepLR(opt, milestones=[3, 7], gamma=0.1), stepped every step, from step 0: its
 *   milestones count from the run's start, so after a warm-up the decays stay where they are. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"   /* cg_cli_defaults */
#include "schedule.h" /* cg_train_lr */
#include "testutil.h"

static const double kPoly[10] = {
    0.01, 0.0090953257608296229, 0.008180521460508584, 0.0072541784693721991,
    0.0063144586748935527, 0.0053588673126814665, 0.0043838329055408704,
    0.0033838346190164991, 0.002349237886176038, 0.0012589254117941673};
static const double kCosMin[10] = {
    0.01, 0.0097577297556610109, 0.0090546341221559891, 0.0079595369988477421,
    0.0065796341221559902, 0.0050500000000000007, 0.0035203658778440107,
    0.0021404630011522584, 0.0010453658778440107, 0.00034227024433899};

/* |a - b| within a relative 1e-12 (PyTorch's schedulers are recursive: rounding differs). */
static int close(double a, double b) { return fabs(a - b) <= 1e-12 * fabs(b) + 1e-18; }

static void check(const char *name, cg_config_t *c, const double *want, int n) {
  const int64_t W = c->warmup_steps, T = W + n;
  for (int64_t t = 0; t < W; t++) {
    const double got = cg_train_lr(c, t, T), w = c->lr * (double)(t + 1) / (double)W;
    CG_TEST_CHECK(close(got, w), "%s: warm-up step %lld: %.17g, want %.17g", name, (long long)t,
                  got, w);
  }
  for (int k = 0; k < n; k++) {
    const double got = cg_train_lr(c, W + k, T);
    CG_TEST_CHECK(close(got, want[k]), "%s: decay step %d: %.17g, want %.17g", name, k, got,
                  want[k]);
  }
}

int main(void) {
  cg_config_t c;
  cg_cli_defaults(&c);
  c.lr = 0.01;
  for (int W = 0; W <= 3; W += 3) {
    c.warmup_steps = W;
    snprintf(c.lr_schedule, sizeof c.lr_schedule, "poly");
    c.lr_power = 0.9;
    c.min_lr = 0;
    check("poly", &c, kPoly, 10);
    snprintf(c.lr_schedule, sizeof c.lr_schedule, "cosine");
    c.min_lr = 1e-4;
    check("cosine --min-lr", &c, kCosMin, 10);
    double mm[10], one[10];
    snprintf(c.lr_schedule, sizeof c.lr_schedule, "poly");
    c.lr_power = 2.0;
    for (int k = 0; k < 10; k++) mm[k] = 1e-4 + (0.01 - 1e-4) * pow(1 - k / 10.0, 2.0);
    check("poly --min-lr (mmsegmentation's PolyLR)", &c, mm, 10);
    snprintf(c.lr_schedule, sizeof c.lr_schedule, "constant");
    for (int k = 0; k < 10; k++) one[k] = 0.01;
    check("constant", &c, one, 10);
  }
  /* multistep: PyTorch 1.13's MultiStepLR, 10 steps */
  static const double kMulti[10] = {0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.0001,
                                    0.0001, 0.0001};
  snprintf(c.lr_schedule, sizeof c.lr_schedule, "multistep");
  c.warmup_steps = 0;
  c.lr_gamma = 0.1;
  c.nmilestones = 2;
  c.milestone[0] = 3;
  c.milestone[1] = 7;
  check("multistep (MultiStepLR)", &c, kMulti, 10);
  /* with a warm-up of 2: the warm-up, then the same decays at the same steps */
  c.warmup_steps = 2;
  for (int64_t t = 2; t < 10; t++)
    CG_TEST_CHECK(close(cg_train_lr(&c, t, 10), kMulti[t]), "multistep after a warm-up: step "
                  "%lld: %.17g, want %.17g", (long long)t, cg_train_lr(&c, t, 10), kMulti[t]);
  CG_TEST_CHECK(close(cg_train_lr(&c, 0, 10), 0.005), "multistep: warm-up step 0");
  /* a run no longer than its warm-up never decays */
  snprintf(c.lr_schedule, sizeof c.lr_schedule, "poly");
  c.warmup_steps = 5;
  CG_TEST_CHECK(cg_train_lr(&c, 4, 5) == 0.01 && cg_train_lr(&c, 6, 5) == 0.01,
                "warm-up as long as the run");
  return cg_test_done("test_lr");
}
