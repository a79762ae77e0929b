/* datacheck.c: --check-data and the report of samples left out at open (see datacheck.h).
 *
 * Each rank checks the samples congruent to its rank, so the shares are disjoint and every
 * rank's list of bad indices is already in order; an all-gather of the lists gives every rank
 * the same set to leave out, which keeps the samplers of all ranks in step. */
#include "datacheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classnames.h" /* CG_CLASSNAME_MAX: a name's bytes in the shares line */
#include "log.h"

static void report_bad(void *ctx, int64_t index, const char *why) {
  (void)index;
  cg_log_info("check-data: bad sample (%s): %s", (const char *)ctx, why);
}

static void report_dropped(const cg_source_t *s, const char *what) {
  if (!s || !s->dropped) return;
  cg_log_warn("%s: leaving out %lld bad sample(s) found at start-up (--skip-bad)%s", what,
              (long long)s->dropped, s->dropped_why && s->dropped_why[0] ? ":" : "");
  int k = 0;
  for (; s->dropped_why && s->dropped_why[k]; k++) cg_log_warn("  %s", s->dropped_why[k]);
  if (s->dropped > k) cg_log_warn("  ... and %lld more", (long long)(s->dropped - k));
}

static int cmp_i64(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The bad indices of every rank, in order, on every rank. */
static int64_t *gather_bad(cg_comm_t *c, const int64_t *mine, int64_t n, int64_t *total) {
  int64_t *counts = cg_malloc(sizeof(int64_t) * (size_t)c->size, "bad counts");
  CG_CHECK_MPI(MPI_Allgather(&n, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, c->world));
  int *rc = cg_malloc(sizeof(int) * (size_t)c->size, "bad counts");
  int *at = cg_malloc(sizeof(int) * (size_t)c->size, "bad displacements");
  int64_t t = 0;
  for (int r = 0; r < c->size; r++) {
    CG_ASSERT(t + counts[r] < (int64_t)1 << 31);
    rc[r] = (int)counts[r];
    at[r] = (int)t;
    t += counts[r];
  }
  int64_t *all = cg_malloc(sizeof(int64_t) * (size_t)(t ? t : 1), "bad samples");
  CG_CHECK_MPI(MPI_Allgatherv(mine, (int)n, MPI_INT64_T, all, rc, at, MPI_INT64_T, c->world));
  qsort(all, (size_t)t, sizeof *all, cmp_i64);
  free(counts);
  free(rc);
  free(at);
  *total = t;
  return all;
}

/* Checks one source; returns its number of bad samples (the same on every rank). The samples
 * whose headers failed at open were left out then (the source was opened with all_why): they
 * are listed and counted here with the ones that fail to decode. */
static int64_t check_one(cg_source_t **s, const char *what, cg_comm_t *c, int threads, int skip_bad,
                         int64_t *hist, int whole, const char *flag, char *err, size_t errlen) {
  const double t0 = cg_now();
  const int64_t nopen = (*s)->dropped, n = (*s)->count + nopen;
  const int files = strcmp((*s)->ops->kind, "png") ? 0 : 2; /* image + mask per sample */
  if (c->rank == 0) {
    const char *const *why = (*s)->dropped_why;
    int64_t k = 0;
    for (; why && why[k]; k++) report_bad((void *)what, -1, why[k]);
    if (nopen > k) cg_log_info("check-data: ... and %lld more bad sample(s) (%s)",
                               (long long)(nopen - k), what);
  }
  int64_t *mine = NULL;
  int64_t nmine =
      cg_source_check(*s, c->rank, c->size, threads, report_bad, (void *)what, &mine, hist, whole);
  if (hist) CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, hist, 256, MPI_INT64_T, MPI_SUM, c->world));
  int64_t nload = 0;
  int64_t *all = gather_bad(c, mine, nmine, &nload);
  free(mine);
  const int64_t nbad = nopen + nload;
  double dt = cg_now() - t0;
  if (c->rank == 0) {
    char nf[48] = "";
    if (files) snprintf(nf, sizeof nf, " (%lld image files)", (long long)(files * n));
    printf("check-data: %s: %lld sample(s)%s checked in %.2f s on %d rank(s) x %d thread(s): "
           "%lld bad\n", what, (long long)n, nf, dt, c->size, threads, (long long)nbad);
    fflush(stdout);
  }
  if (nbad && nbad == n)
    snprintf(err, errlen, "%s: every one of the %lld sample(s) in %s is bad (listed above)", flag,
             (long long)n, what);
  else if (nbad && !skip_bad)
    snprintf(err, errlen, "%s: %lld bad sample(s) in %s (listed above): fix or remove them, or "
             "add --skip-bad to %s without them", flag, (long long)nbad, what,
             strcmp(what, "--val-data") ? "train" : "validate");
  else if (nbad) {
    if (nload) *s = cg_source_without(*s, all, nload);
    if (c->rank == 0)
      printf("check-data: %s: %s without the %lld bad sample(s) (--skip-bad)\n", what,
             strcmp(what, "--val-data") ? "training" : "validating", (long long)nbad);
  }
  free(all);
  return nbad;
}

int cg_datacheck_balanced(const int64_t *n, int K, float *w) {
  const int nc = K > 1 ? K : 2;
  double tot = 0;
  for (int k = 0; k < nc; k++) tot += (double)n[k];
  if (tot <= 0) return 0;
  if (K == 1) {
    w[0] = n[1] > 0 && n[0] > 0 ? (float)fmin((double)n[0] / (double)n[1], 1e6) : 1.0f;
    return 1;
  }
  for (int k = 0; k < K; k++)
    w[k] = n[k] > 0 ? (float)fmin(tot / ((double)K * (double)n[k]), 1e6) : 1.0f;
  return 1;
}

/* Rank 0: the classes' shares of the checked pixels and the balanced weights, as a flag. */
static void report_classes(const int64_t *hist, int K, int ignore, int whole,
                           const char *const *names, const char *what) {
  const int nc = K > 1 ? K : 2;
  double tot = 0;
  for (int k = 0; k < nc; k++) tot += (double)hist[k];
  if (tot <= 0) {
    printf("check-data: %s: no class pixel to count (every pixel is the ignore label)\n", what);
    return;
  }
  static char line[256 * (80 + CG_CLASSNAME_MAX)]; /* rank 0's, one thread */
  size_t n = 0;
  for (int k = 0; k < nc && n < sizeof line - 80 - CG_CLASSNAME_MAX; k++)
    n += (size_t)snprintf(line + n, sizeof line - n, "%s%d%s%s %.2f%%", k ? ", " : "", k,
                          names ? " " : "", names ? names[k] : "", 100.0 * (double)hist[k] / tot);
  printf("check-data: %s: class pixels (%s of %.0f, the images %s at --image-size%s): %s\n",
         what, K > 1 ? "share" : "0 background, 1 foreground; share", tot,
         whole ? "whole" : "fitted", ignore >= 0 ? ", the ignore label left out" : "", line);
  float w[255];
  cg_datacheck_balanced(hist, K, w);
  if (K == 1) {
    printf("check-data: balanced: --pos-weight %.4g (background / foreground pixels)%s\n",
           (double)w[0], !hist[1]   ? "; no foreground pixel"
                         : !hist[0] ? "; no background pixel"
                         : w[0] >= 1e6f ? "; at most 1e6" : "");
    return;
  }
  n = 0;
  int absent = 0, capped = 0;
  for (int k = 0; k < K && n < sizeof line - 32; k++) {
    n += (size_t)snprintf(line + n, sizeof line - n, "%s%.4g", k ? "," : "", (double)w[k]);
    absent += hist[k] == 0;
    capped += w[k] >= 1e6f;
  }
  printf("check-data: balanced: --class-weights %s (pixels / (K x the class's pixels))%s%s\n",
         line, absent ? "; a class without pixels gets 1" : "", capped ? "; at most 1e6" : "");
}

int cg_datacheck_run(cg_source_t **data, cg_source_t **val, cg_comm_t *c, int threads, int check,
                     int skip_bad, int nclass, int ignore, int whole, const char *const *names,
                     int64_t *hist_out, const char *flag, char *err, size_t errlen) {
  if (!check) { /* with check, check_one lists them */
    if (c->rank == 0) {
      report_dropped(*data, "--data");
      report_dropped(val ? *val : NULL, "--val-data");
    }
    return 0;
  }
  err[0] = 0;
  char verr[512] = ""; /* both are checked, so that every bad file is listed */
  int64_t hist[256] = {0};
  check_one(data, "--data", c, threads, skip_bad, hist, whole, flag, err, errlen);
  if (c->rank == 0) report_classes(hist, nclass, ignore, whole, names, "--data");
  if (hist_out) memcpy(hist_out, hist, sizeof hist);
  if (val && *val)
    check_one(val, "--val-data", c, threads, skip_bad, NULL, 0, flag, verr, sizeof verr);
  if (!err[0] && verr[0]) snprintf(err, errlen, "%s", verr);
  return err[0] ? -1 : 0;
}
