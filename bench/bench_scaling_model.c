/* bench_scaling_model.c: measured step timelines and the all-reduce model of `cogpu-bench
 * scaling --project`.
 *
 * Timelines come from measurements only: a --trace-out file (the compute track's "train step",
 * "backward", "bucket J ready N" and "adamw" (or "sgd") events of each step; the median step by compute
 * time is used), or, as a GPU stand-in where no multi-GPU trace exists, the per-layer kernel
 * times of `cogpu-bench train --kernels-json` (one H200) laid out in layer order.
 *
 * All-reduce of S bytes on P ranks, g = min(P, per_node) per node, N = ceil(P / g) nodes, bus
 * bandwidth B = nv_gbs when N = 1, else net_gbs (what nccl-tests' all_reduce_perf reports as
 * busbw, not a link peak):
 *   ring = base + (2(P-1) - 2(N-1)) nv_us + 2(N-1) net_us + 2(P-1)/P S/B
 *   tree = 4.4 us + 2 ((g-1) 1.2 us + floor(log2 N) 8.5 us) + 2 S/(0.9 B)
 *   T_ar = min(ring, tree) (ring only with ring_only).
 * The latency terms are the values of NCCL's cost-model tables (baseLat and hwLat of
 * src/graph/tuning.cc / tuning.h in the NCCL 2.7-2.8 releases: baseLat ring/Simple 8.4 us, tree
 * LL128 4.4 us; hwLat NVLink ring/Simple 3.4 us, tree/LL128 1.2 us; NET ring/Simple 9.6 us,
 * tree/LL128 8.5 us; later releases changed them, e.g. a larger tree base), with NCCL's
 * rounded-down log2 of the node count for the tree's depth; tree bus bandwidth 0.9 x ring's;
 * its tree time uses the same 2 S / busbw conversion. Step on P ranks: the comm stream takes
 * the buckets in ready order, F_b = max(F_(b-1), t_b') + T_ar(S_b); while an all-reduce runs
 * during backward, backward runs (1 + slowdown) times slower (NCCL's kernels take SMs and memory
 * bandwidth), so the ready times t_b' and backward's end bwd_end' move later by slowdown times
 * the comm time that overlapped backward before them; tail = max(0, F_last - bwd_end');
 * step = bwd_end' + tail + AdamW + the rest after AdamW. */
#include "bench_scaling_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "json.h"
#include "trace.h"

#define TREE_BASE_US 4.4
#define TREE_INTRA_US 1.2
#define TREE_INTER_US 8.5
#define TREE_BW_FACTOR 0.9

static cg_json_t *load_json(const char *path, char *err, size_t errlen) {
  char e[512];
  char *s = cg_file_read(path, NULL, e, sizeof e);
  if (!s) {
    snprintf(err, errlen, "%s: cannot read: %s", path, e);
    return NULL;
  }
  cg_json_t *v = cg_json_parse(s, e, sizeof e);
  free(s);
  if (!v) snprintf(err, errlen, "%s: %s", path, e);
  return v;
}

/* One traced step's compute-track events (seconds, absolute). */
typedef struct {
  double step, t0, t1, bwd1, opt0, opt1, next_t0; /* next_t0: the next step's start, or 0 */
  int nready;
  double ready[CG_MAX_BUCKETS], elems[CG_MAX_BUCKETS];
} rec_t;

static rec_t *rec_for(rec_t **recs, int *n, int *cap, double step) {
  for (int i = *n - 1; i >= 0; i--)
    if ((*recs)[i].step == step) return &(*recs)[i];
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    *recs = realloc(*recs, sizeof **recs * (size_t)*cap);
    if (!*recs) abort();
  }
  rec_t *r = &(*recs)[(*n)++];
  memset(r, 0, sizeof *r);
  r->step = step;
  return r;
}

static void take_event(rec_t *r, const char *name, double ts, double dur) {
  int j;
  double el;
  if (!strcmp(name, "train step")) {
    r->t0 = ts;
    r->t1 = ts + dur;
  } else if (!strcmp(name, "backward")) {
    r->bwd1 = ts + dur;
  } else if (!strcmp(name, "adamw") || !strcmp(name, "sgd")) { /* the optimizer step */
    r->opt0 = ts;
    r->opt1 = ts + dur;
  } else if (sscanf(name, "bucket %d ready %lf", &j, &el) == 2 && j >= 0 && j < CG_MAX_BUCKETS) {
    r->ready[j] = ts;
    r->elems[j] = el;
    if (j + 1 > r->nready) r->nready = j + 1;
  }
}

/* The step's period (to the next step's start, or its own end) less the comm wait. */
static double compute_of(const rec_t *r) {
  const double end = r->next_t0 > r->t1 ? r->next_t0 : r->t1;
  return (end - r->t0) - (r->opt0 - r->bwd1);
}

static int cmp_compute(const void *a, const void *b) {
  double x = compute_of(a), y = compute_of(b);
  return (x > y) - (x < y);
}

static void fill_from_rec(const rec_t *r, cg_timeline_t *tl) {
  tl->n = r->nready;
  for (int j = 0; j < r->nready; j++) {
    tl->ready[j] = r->ready[j] - r->t0;
    tl->elems[j] = r->elems[j];
  }
  tl->bwd_end = r->bwd1 - r->t0;
  tl->opt = r->opt1 - r->opt0;
  const double end = r->next_t0 > r->t1 ? r->next_t0 : r->t1;
  tl->after_opt = end > r->opt1 ? end - r->opt1 : 0; /* results, data, the driver */
  tl->compute = tl->bwd_end + tl->opt + tl->after_opt;
}

/* The complete steps of the compute track, after the first (a warm-up) when there are 3+. */
static int collect_steps(const cg_json_t *evs, rec_t **out) {
  rec_t *recs = NULL;
  int n = 0, cap = 0;
  for (int i = 0; i < evs->n; i++) {
    const cg_json_t *e = &evs->items[i];
    if (cg_json_num(e, "tid", -1) != CG_TRACK_COMPUTE) continue;
    const char *name = cg_json_str(e, "name", ""), *ph = cg_json_str(e, "ph", "");
    const cg_json_t *args = cg_json_get(e, "args");
    if (strcmp(ph, "X") || !args) continue;
    rec_t *r = rec_for(&recs, &n, &cap, cg_json_num(args, "step", -1));
    take_event(r, name, 1e-6 * cg_json_num(e, "ts", 0), 1e-6 * cg_json_num(e, "dur", 0));
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      if (recs[j].step == recs[i].step + 1) recs[i].next_t0 = recs[j].t0;
  int k = 0;
  for (int i = 0; i < n; i++) {
    const rec_t *r = &recs[i];
    int ok = r->t1 > r->t0 && r->bwd1 > r->t0 && r->opt1 >= r->opt0 && r->opt0 >= r->bwd1 &&
             r->nready > 0;
    for (int j = 0; ok && j < r->nready; j++) ok = r->ready[j] > r->t0 && r->elems[j] > 0;
    if (ok) recs[k++] = *r;
  }
  if (k >= 3) memmove(recs, recs + 1, sizeof *recs * (size_t)--k);
  *out = recs;
  return k;
}

int cg_timeline_from_trace(const char *path, cg_timeline_t *tl, char *err, size_t errlen) {
  memset(tl, 0, sizeof *tl);
  cg_json_t *v = load_json(path, err, errlen);
  if (!v) return -1;
  const cg_json_t *evs = cg_json_get(v, "traceEvents");
  rec_t *recs = NULL;
  int n = evs && evs->type == CG_JSON_ARR ? collect_steps(evs, &recs) : 0;
  const double rank = cg_json_num(cg_json_get(v, "otherData"), "rank", -1);
  cg_json_free(v);
  if (n == 0) {
    free(recs);
    snprintf(err, errlen, "%s: no complete training step (train step, backward, bucket ready, "
             "adamw events on the compute track): a --trace-out file of this version?", path);
    return -1;
  }
  qsort(recs, (size_t)n, sizeof *recs, cmp_compute);
  fill_from_rec(&recs[n / 2], tl);
  tl->steps = n;
  snprintf(tl->whence, sizeof tl->whence, "trace %s (rank %.0f), median of %d steps", path, rank,
           n);
  free(recs);
  return 0;
}

/* us_per_step of the region named name (0 when absent). */
static double region_us(const cg_json_t *regions, const char *name) {
  for (int i = 0; i < regions->n; i++)
    if (!strcmp(cg_json_str(&regions->items[i], "name", ""), name))
      return cg_json_num(&regions->items[i], "us_per_step", 0);
  return 0;
}

int cg_timeline_from_kernels(const char *path, const cg_model_t *m, const cg_buckets_t *bk,
                             cg_timeline_t *tl, char *err, size_t errlen) {
  memset(tl, 0, sizeof *tl);
  cg_json_t *v = load_json(path, err, errlen);
  if (!v) return -1;
  const cg_json_t *rg = cg_json_get(v, "regions");
  const double step_ms = cg_json_num(v, "step_ms", 0);
  if (!rg || rg->type != CG_JSON_ARR || step_ms <= 0) {
    cg_json_free(v);
    snprintf(err, errlen, "%s: no \"regions\" and \"step_ms\" (a --kernels-json file?)", path);
    return -1;
  }
  double all = cg_json_num(v, "unattributed_us_per_step", 0), fwd = 0, t = 0, seen = 0;
  for (int i = 0; i < rg->n; i++) all += cg_json_num(&rg->items[i], "us_per_step", 0);
  char name[96];
  for (int i = 0; i < m->nlayers; i++) {
    snprintf(name, sizeof name, "%s/fwd", m->layers[i].name);
    fwd += region_us(rg, name);
  }
  t = fwd + region_us(rg, "input prep") + region_us(rg, "loss");
  /* the backend casts each bucket's dW to fp32 before the bucket is ready: that region's time
   * goes before each ready time, in proportion to the bucket's elements */
  double nel = 0;
  for (int b = 0; b < bk->n; b++) nel += (double)bk->len[b];
  const double cast = region_us(rg, "dW to fp32");
  for (int i = m->nlayers - 1; i >= 0; i--) {
    snprintf(name, sizeof name, "%s/bwd", m->layers[i].name);
    double us = region_us(rg, name);
    seen += us;
    t += us;
    const int b = bk->ready_after[i];
    if (b < 0) continue;
    t += nel > 0 ? cast * (double)bk->len[b] / nel : 0;
    tl->ready[b] = t, tl->elems[b] = (double)bk->len[b];
  }
  tl->n = bk->n;
  tl->bwd_end = t;
  tl->opt = region_us(rg, "optimizer");
  const double s = 1e3 * step_ms / all; /* us of kernels -> s of the measured step */
  tl->after_opt = (all - tl->bwd_end - tl->opt) * s * 1e-6;
  for (int b = 0; b < tl->n; b++) tl->ready[b] *= 1e-6 * s;
  tl->bwd_end *= 1e-6 * s;
  tl->opt *= 1e-6 * s;
  tl->compute = 1e-3 * step_ms;
  const double steps = cg_json_num(v, "steps", 0); /* shown only; no out-of-range cast */
  tl->steps = steps >= 0 && steps < 1e9 ? (int)steps : 0;
  snprintf(tl->whence, sizeof tl->whence, "kernel times of %s (\"%s\", %d steps), layer order",
           path, cg_json_str(v, "title", "?"), tl->steps);
  cg_json_free(v);
  if (fwd <= 0 || seen <= 0) {
    snprintf(err, errlen, "%s: no per-layer regions of this model (layer names such as "
             "\"%s/bwd\"): another --model-base / --model-depth?", path, m->layers[0].name);
    return -1;
  }
  return 0;
}

double cg_netmodel_allreduce(const cg_netmodel_t *n, double bytes, int p) {
  if (p <= 1) return 0;
  const int g = p < n->per_node ? p : n->per_node, nodes = (p + g - 1) / g;
  const double bw = 1e9 * (nodes > 1 ? n->net_gbs : n->nv_gbs);
  const int steps = 2 * (p - 1), inter = 2 * (nodes - 1);
  double ring = 1e-6 * (n->base_us + (steps - inter) * n->nv_us + inter * n->net_us) +
                2.0 * (p - 1) / p * bytes / bw;
  if (n->ring_only) return ring;
  double tree = 1e-6 * (TREE_BASE_US + 2 * ((g - 1) * TREE_INTRA_US +
                                            floor(log2((double)nodes)) * TREE_INTER_US)) +
                2.0 * bytes / (TREE_BW_FACTOR * bw);
  return ring < tree ? ring : tree;
}

/* The time backward, at time x, has done dp more of its work: it runs 1 + s times slower while
 * the comm stream is busy (iv[0..k): that stream's intervals, in order, disjoint). */
static double advance(double x, double dp, const double (*iv)[2], int k, double s) {
  for (int i = 0; i < k && dp > 0; i++) {
    if (iv[i][1] <= x) continue;
    if (iv[i][0] > x) { /* free until the interval starts */
      if (dp <= iv[i][0] - x) return x + dp;
      dp -= iv[i][0] - x;
      x = iv[i][0];
    }
    const double slow = (iv[i][1] - x) / (1 + s); /* work done until the interval ends */
    if (dp <= slow) return x + dp * (1 + s);
    dp -= slow;
    x = iv[i][1];
  }
  return x + dp;
}

double cg_netmodel_step(const cg_netmodel_t *n, const cg_timeline_t *tl, int p, double *tail) {
  double iv[CG_MAX_BUCKETS][2], f = 0, r = tl->n > 0 ? tl->ready[0] : 0;
  const double s = p > 1 ? n->slowdown : 0;
  for (int b = 0; b < tl->n; b++) {
    if (b > 0) r = advance(r, tl->ready[b] - tl->ready[b - 1], iv, b, s); /* bucket b ready */
    iv[b][0] = f > r ? f : r;
    f = iv[b][1] = iv[b][0] + cg_netmodel_allreduce(n, tl->elems[b] * n->grad_bytes, p);
  }
  const double be = tl->n > 0 ? advance(r, tl->bwd_end - tl->ready[tl->n - 1], iv, tl->n, s)
                              : tl->bwd_end;
  const double ex = f > be ? f - be : 0;
  if (tail) *tail = ex;
  return be + ex + tl->opt + tl->after_opt;
}

double cg_netmodel_step_serial(const cg_netmodel_t *n, const cg_timeline_t *tl, int p) {
  double sum = 0;
  for (int b = 0; b < tl->n; b++) sum += cg_netmodel_allreduce(n, tl->elems[b] * n->grad_bytes, p);
  return tl->bwd_end + sum + tl->opt + tl->after_opt;
}
