/* lrfind.h: train --lr-find N, the learning-rate range test (Leslie Smith's; fastai's and
 * PyTorch Lightning's lr_find): N steps whose learning rate grows exponentially from A to B,
 * each step's loss smoothed, the search ended when the smoothed loss diverges, and a suggested
 * learning rate: fastai's valley, with its minimum and Lightning 2's rule beside it. Pure
 * arithmetic: train.c feeds it one global loss a step; every rank computes the same. */
#ifndef CG_LRFIND_H
#define CG_LRFIND_H

#include <stdint.h>
#include <stdio.h>

#define CG_LRFIND_BETA 0.98      /* the loss's running-mean factor (Lightning's beta) */
#define CG_LRFIND_DIVERGE 4.0    /* stop when the smoothed loss passes this x its best */
#define CG_LRFIND_SKIP_BEGIN 10  /* Lightning's rule leaves out the first steps ... */
#define CG_LRFIND_SKIP_END 1     /* ... and the last ones (its skip_begin, skip_end) */

typedef struct {
  int64_t n, cap;                /* steps recorded; planned */
  double *lr, *loss, *smooth;    /* per step (loss: NaN for a step without a finite one) */
  double avg, best;              /* the running mean (smoothed: it over 1 - beta^s), the best
                                    smoothed loss */
  int diverged;                  /* the last step passed CG_LRFIND_DIVERGE x best, or its loss
                                    was not finite */
} cg_lrfind_t;

/* The learning rate of step t (0-based) of n: a (b / a)^(t / (n - 1)), from a at the first
 * step to b at the last (torch-lr-finder's ExponentialLR). */
double cg_lrfind_lr(double a, double b, int64_t n, int64_t t);

void cg_lrfind_init(cg_lrfind_t *f, int64_t steps);
void cg_lrfind_free(cg_lrfind_t *f);

/* Records the next step's learning rate and global loss; 1 when the search ends here: the
 * smoothed loss passed CG_LRFIND_DIVERGE x the best one before (from the second step on), or
 * the loss is not finite (the weights are lost). */
int cg_lrfind_add(cg_lrfind_t *f, double lr, double loss);

/* fastai's window of the recorded steps (0-based [*from, *to)): from planned / 10, the last
 * five left out (its lrs[num_it//10:-5]); empty when there are too few. */
void cg_lrfind_window(const cg_lrfind_t *f, int64_t planned, int64_t *from, int64_t *to);
/* fastai's minimum: the step (0-based) of the smallest finite smoothed loss in that window;
 * -1 when there is none. */
int64_t cg_lrfind_min(const cg_lrfind_t *f, int64_t planned);

/* The suggested step (0-based), fastai's "valley" (its lr_find's default suggestion): over the
 * steps of fastai's window (cg_lrfind_window) with a finite smoothed loss,
 * the longest run of steps whose smoothed losses fall (a longest decreasing subsequence, the
 * first longest), and the step about half of it in: fastai's loop and index (start + int(L/3)
 * + int(L/2/3), start = end - its length when first found), but at least 0 where Python's
 * index -1 would wrap to the last step. -1 when none is left.
 * O(n^2) in the steps (--lr-find is at most 10000). */
int64_t cg_lrfind_valley(const cg_lrfind_t *f, int64_t planned);

/* Lightning 2's suggestion() (step 0-based): the steepest fall of the smoothed loss against the
 * rate itself, torch.gradient(smooth, spacing=[lr]) (numpy.gradient's uneven-spacing central
 * differences, first order at the ends) at its minimum, over the steps after the first
 * CG_LRFIND_SKIP_BEGIN but the last CG_LRFIND_SKIP_END with a finite smoothed loss; -1 when
 * fewer than 2 are left. It favours the small rates. */
int64_t cg_lrfind_lightning(const cg_lrfind_t *f);

/* Rank 0's report: a table of about 20 of the steps, the stop, the suggestion; and, with
 * csv (a path, or NULL), every step as CSV "step,lr,loss,smoothed_loss" written atomically.
 * 0, or -1 when the CSV could not be written (warned). */
int cg_lrfind_report(const cg_lrfind_t *f, int64_t planned, const char *csv, FILE *out);

#endif
