/* lrfind.c: the learning-rate range test's arithmetic and report (lrfind.h). */
#include "lrfind.h"

#include <math.h>
#include <stdlib.h>

#include "atomic_file.h" /* cg_afile_save: the CSV whole or not at all */
#include "log.h"         /* cg_calloc, cg_log_warn */

double cg_lrfind_lr(double a, double b, int64_t n, int64_t t) {
  if (n <= 1) return a;
  return a * pow(b / a, (double)t / (double)(n - 1));
}

void cg_lrfind_init(cg_lrfind_t *f, int64_t steps) {
  f->n = 0;
  f->cap = steps > 0 ? steps : 1;
  f->lr = cg_calloc((size_t)f->cap, sizeof(double), "lr-find");
  f->loss = cg_calloc((size_t)f->cap, sizeof(double), "lr-find");
  f->smooth = cg_calloc((size_t)f->cap, sizeof(double), "lr-find");
  f->avg = 0;
  f->best = INFINITY;
  f->diverged = 0;
}

void cg_lrfind_free(cg_lrfind_t *f) {
  free(f->lr);
  free(f->loss);
  free(f->smooth);
  f->lr = f->loss = f->smooth = NULL;
}

int cg_lrfind_add(cg_lrfind_t *f, double lr, double loss) {
  CG_ASSERT(f->n < f->cap);
  const int64_t i = f->n++, s = i + 1; /* s: the 1-based step */
  f->lr[i] = lr;
  f->loss[i] = loss;
  if (!isfinite(loss)) {
    f->smooth[i] = NAN;
    f->diverged = 1;
    return 1;
  }
  f->avg = CG_LRFIND_BETA * f->avg + (1.0 - CG_LRFIND_BETA) * loss;
  const double sm = f->avg / (1.0 - pow(CG_LRFIND_BETA, (double)s));
  f->smooth[i] = sm;
  if (s > 1 && sm > CG_LRFIND_DIVERGE * f->best) f->diverged = 1;
  if (sm < f->best || s == 1) f->best = sm;
  return f->diverged;
}

void cg_lrfind_window(const cg_lrfind_t *f, int64_t planned, int64_t *from, int64_t *to) {
  *from = planned / 10;
  *to = f->n - 5 > *from ? f->n - 5 : *from;
}

int64_t cg_lrfind_min(const cg_lrfind_t *f, int64_t planned) {
  int64_t at = -1, from, to;
  cg_lrfind_window(f, planned, &from, &to);
  for (int64_t i = from; i < to; i++)
    if (isfinite(f->smooth[i]) && (at < 0 || f->smooth[i] < f->smooth[at])) at = i;
  return at;
}

int64_t cg_lrfind_valley(const cg_lrfind_t *f, int64_t planned) {
  const size_t cap = (size_t)(f->n > 0 ? f->n : 1);
  int64_t *at = cg_calloc(cap, sizeof(int64_t), "lr-find"), *lds = cg_calloc(cap, sizeof(int64_t),
                                                                          "lr-find");
  int64_t m = 0, from, to;
  cg_lrfind_window(f, planned, &from, &to);
  for (int64_t i = from; i < to; i++)
    if (isfinite(f->smooth[i])) at[m++] = i;
  const double *y = f->smooth;
  int64_t max_start = 0, max_end = 0;
  for (int64_t i = 0; i < m; i++) lds[i] = 1;
  for (int64_t i = 1; i < m; i++)
    for (int64_t j = 0; j < i; j++) { /* fastai's loop, its check inside (max_start can lag) */
      if (y[at[i]] < y[at[j]] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1;
      if (lds[max_end] < lds[i]) {
        max_end = i;
        max_start = max_end - lds[max_end];
      }
    }
  const double sections = (double)(max_end - max_start) / 3.0;
  int64_t idx = max_start + (int64_t)sections + (int64_t)(sections / 2.0);
  if (idx < 0) idx = 0;
  const int64_t step = m > 0 ? at[idx] : -1;
  free(at);
  free(lds);
  return step;
}

int64_t cg_lrfind_lightning(const cg_lrfind_t *f) {
  const size_t cap = (size_t)(f->n > 0 ? f->n : 1);
  int64_t *at = cg_calloc(cap, sizeof(int64_t), "lr-find");
  const double *x = f->lr;
  int64_t m = 0;
  for (int64_t i = CG_LRFIND_SKIP_BEGIN; i < f->n - CG_LRFIND_SKIP_END; i++)
    if (isfinite(f->smooth[i])) at[m++] = i;
  int64_t best = -1;
  double g_min = INFINITY;
  for (int64_t j = 0; m >= 2 && j < m; j++) {
    const double *y = f->smooth;
    double g;
    if (j == 0) {
      g = (y[at[1]] - y[at[0]]) / (x[at[1]] - x[at[0]]);
    } else if (j == m - 1) {
      g = (y[at[j]] - y[at[j - 1]]) / (x[at[j]] - x[at[j - 1]]);
    } else { /* numpy's uneven-spacing central difference */
      const double hl = x[at[j]] - x[at[j - 1]], hr = x[at[j + 1]] - x[at[j]];
      g = (hl * hl * y[at[j + 1]] - hr * hr * y[at[j - 1]] + (hr * hr - hl * hl) * y[at[j]]) /
          (hl * hr * (hl + hr));
    }
    if (g < g_min) { /* the first of equal ones, as argmin */
      g_min = g;
      best = at[j];
    }
  }
  free(at);
  return best;
}

int cg_lrfind_report(const cg_lrfind_t *f, int64_t planned, const char *csv, FILE *out) {
  const int64_t every = f->n > 20 ? (f->n + 19) / 20 : 1;
  fprintf(out, "# lr-find %-6s %12s %12s %14s\n", "step", "lr", "loss", "smoothed loss");
  for (int64_t i = 0; i < f->n; i++)
    if (i % every == 0 || i == f->n - 1)
      fprintf(out, "  lr-find %-6lld %12.4e %12.6g %14.6g\n", (long long)i + 1, f->lr[i],
              f->loss[i], f->smooth[i]);
  if (f->diverged)
    fprintf(out, "lr-find: stopped after step %lld of %lld: %s\n", (long long)f->n,
            (long long)planned,
            isfinite(f->loss[f->n - 1]) ? "the smoothed loss passed 4 x its best"
                                        : "the loss is not finite");
  const int64_t s = cg_lrfind_valley(f, planned), sl = cg_lrfind_lightning(f);
  const int64_t lo = cg_lrfind_min(f, planned);
  int64_t from, to;
  cg_lrfind_window(f, planned, &from, &to);
  if (lo >= 0)
    fprintf(out, "lr-find: the smoothed loss is lowest, %.6g, at step %lld, lr %.3g, over steps "
            "%lld-%lld (fastai's window: from N/10, the last five left out; its \"minimum\" "
            "suggests a tenth of that: %.3g)\n", f->smooth[lo], (long long)lo + 1, f->lr[lo],
            (long long)from + 1, (long long)to, f->lr[lo] / 10);
  if (sl >= 0)
    fprintf(out, "lr-find: Lightning 2's suggestion(), the fastest fall against the rate itself: "
            "%.3g (step %lld); it favours the small rates\n", f->lr[sl], (long long)sl + 1);
  if (s >= 0)
    fprintf(out, "lr-find: suggested --lr %.3g (step %lld: fastai's valley, half way down the "
            "longest fall of the smoothed loss)\n", f->lr[s], (long long)s + 1);
  else
    fprintf(out, "lr-find: no suggestion: %lld step(s) recorded, none from step %lld on with "
            "the last five left out (--lr-find N larger, or a range that diverges later)\n",
            (long long)f->n, (long long)planned / 10 + 1);
  fflush(out);
  if (!csv || !csv[0]) return 0;
  size_t cap = 64 + (size_t)f->n * 96, len = 0;
  char *buf = cg_malloc(cap, "lr-find csv");
  len += (size_t)snprintf(buf, cap, "step,lr,loss,smoothed_loss\n");
  for (int64_t i = 0; i < f->n; i++) {
    char a[32] = "", b[32] = "";
    if (isfinite(f->loss[i])) snprintf(a, sizeof a, "%.17g", f->loss[i]);
    if (isfinite(f->smooth[i])) snprintf(b, sizeof b, "%.17g", f->smooth[i]);
    len += (size_t)snprintf(buf + len, cap - len, "%lld,%.17g,%s,%s\n", (long long)i + 1,
                            f->lr[i], a, b);
  }
  char err[1200];
  const int rc = cg_afile_save(csv, buf, len, err, sizeof err);
  free(buf);
  if (rc) cg_log_warn("--lr-find-out: %s", err);
  return rc ? -1 : 0;
}
