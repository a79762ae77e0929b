/* bench_scaling.c: `cogpu-bench scaling` — weak scaling, measured and projected.
 *
 * Measured (default; run under mpirun -np N): the real training run (every `train` flag passes
 * through) on the first n ranks for n = 1, 2, 4, ..., N with the per-rank batch fixed; img/s and
 * the efficiency E(n) = img/s(n) / (n x img/s(1)) per point.
 *
 * Projected (--project): from the measured time of one step on one rank (or --step-ms), the
 * model's gradient buckets (--bucket-mb) and an interconnect model, the step time on P GPUs for
 * P = 8 .. 1024, with and without overlapping the all-reduce with backward:
 *   backward produces bucket b at t_b = T_f + T_b * (backward FLOPs done when b completes) /
 *     (all backward FLOPs), with T_f = T/3 and T_b = 2T/3 of the step (the FLOP ratio);
 *   all-reduce of S bytes on P GPUs: T_ar = min(ring, tree),
 *     ring = 2(P-1) a + 2 (P-1)/P S / B,   tree = 2 ceil(log2 P) a + 2 S / B,
 *     (a, B) = (--nvlink-us, --nvlink-gbs) within a node (P <= --gpus-per-node), else
 *     (--net-us, --net-gbs) (per-GPU network bandwidth);
 *   overlapped: the comm stream reduces buckets in order, F_b = max(F_{b-1}, t_b) + T_ar(S_b);
 *     exposed = max(0, F_last - (T_f + T_b)); step = T + exposed;
 *   not overlapped: step = T + sum_b T_ar(S_b);
 *   weak-scaling efficiency = T / step.
 * Defaults: NVLink 450 GB/s and 2 us per hop within 8-GPU nodes, 400 Gb/s InfiniBand per GPU
 * (50 GB/s) and 5 us between nodes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "config.h"
#include "feat.h"
#include "log.h"
#include "model.h"
#include "train.h"

static double t_allreduce(double bytes, int p, double a, double bw) {
  if (p <= 1) return 0;
  double ring = 2.0 * (p - 1) * a + 2.0 * (p - 1) / p * bytes / bw;
  double tree = 2.0 * ceil(log2((double)p)) * a + 2.0 * bytes / bw;
  return ring < tree ? ring : tree;
}

typedef struct {
  double nv_us, nv_gbs, net_us, net_gbs;
  int per_node;
} net_t;

/* Step time on p GPUs for a step of T seconds; exposed comm in *exposed. */
static double project(const cg_model_t *m, const cg_buckets_t *bk, double T, int p,
                      const net_t *n, int overlap, double *exposed) {
  double a = p <= n->per_node ? n->nv_us * 1e-6 : n->net_us * 1e-6;
  double bw = (p <= n->per_node ? n->nv_gbs : n->net_gbs) * 1e9;
  double tf = T / 3.0, tb = 2.0 * T / 3.0;
  /* backward FLOPs per layer: dx and dw (2x forward), no dx for the first layer */
  double total = 0;
  for (int i = 0; i < m->nlayers; i++) total += m->layers[i].flops_fwd * (i == 0 ? 1.0 : 2.0);
  double done = 0, finish = 0, sum = 0;
  for (int i = m->nlayers - 1; i >= 0; i--) {
    done += m->layers[i].flops_fwd * (i == 0 ? 1.0 : 2.0);
    int b = bk->ready_after[i];
    if (b < 0) continue;
    double ready = tf + tb * (total > 0 ? done / total : 1.0);
    double t = t_allreduce(4.0 * (double)bk->len[b], p, a, bw);
    sum += t;
    finish = (finish > ready ? finish : ready) + t;
  }
  double ex = overlap ? (finish > tf + tb ? finish - (tf + tb) : 0) : sum;
  if (exposed) *exposed = ex;
  return T + ex;
}

typedef struct {
  const char *json_out;
  int project;
  double step_ms; /* 0 = measure it */
  net_t net;
  cg_config_t train; /* every `cogpu-dist train` option */
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_FLAG("project", F(project), 0,
        "project the step time on P = 8..1024 GPUs instead of measuring 1..N ranks"),
    CG_OPT_ROW_NUM(DBL, "step-ms", F(step_ms), 0, 1e7, 0, "X",
        "--project: the step time on one GPU in ms; 0 = measure it on one rank"),
    CG_OPT_ROW_NUM(INT, "gpus-per-node", F(net.per_node), 1, 1e6, 0, "N",
        "--project: GPUs joined by NVLink"),
    CG_OPT_ROW_NUM_GT(DBL, "nvlink-gbs", F(net.nv_gbs), 0, 1e6, 0, "X",
        "--project: NVLink bandwidth per GPU, GB/s"),
    CG_OPT_ROW_NUM(DBL, "nvlink-us", F(net.nv_us), 0, 1e6, 0, "X",
        "--project: NVLink latency per hop, us"),
    CG_OPT_ROW_NUM_GT(DBL, "net-gbs", F(net.net_gbs), 0, 1e6, 0, "X",
        "--project: network bandwidth per GPU between nodes, GB/s (50 = 400 Gb/s)"),
    CG_OPT_ROW_NUM(DBL, "net-us", F(net.net_us), 0, 1e6, 0, "X",
        "--project: network latency per hop, us"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
};
static const opts_t g_defaults = {NULL, 0, 0, {2.0, 450.0, 5.0, 50.0, 8}, {0}};

/* The training run on the first pts[k] ranks for each k: the steady img/s in ips[k] on every
 * rank. Returns 0, or the exit code of a run that failed. */
static int measure(const cg_config_t *cfg, cg_comm_t *c, const int *pts, int np, double *ips) {
  for (int k = 0; k < np; k++) {
    int n = pts[k], rc = 0;
    MPI_Comm sub;
    CG_CHECK_MPI(MPI_Comm_split(c->world, c->rank < n ? 0 : MPI_UNDEFINED, c->rank, &sub));
    cg_train_result_t res;
    memset(&res, 0, sizeof res);
    if (c->rank < n) {
      cg_comm_t sc;
      cg_comm_init_from(&sc, sub);
      if (sc.rank == 0) {
        printf("# ---- %d rank(s) ----\n", n);
        fflush(stdout);
      }
      rc = cg_train_run(cfg, &sc, &res);
      cg_comm_free(&sc);
      MPI_Comm_free(&sub);
    }
    CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
    if (rc) return rc;
    ips[k] = res.last_img_per_s;
    CG_CHECK_MPI(MPI_Bcast(&ips[k], 1, MPI_DOUBLE, 0, c->world));
  }
  return 0;
}

/* The measured table; its JSON appended to js (len so far, returned). */
static size_t print_measured(const cg_config_t *cfg, const int *pts, int np, const double *ips,
                             char *js, size_t len, size_t cap) {
  printf("# cogpu-bench scaling (measured): weak scaling, batch %d per rank, steady state\n",
         cfg->batch);
  printf("# %-6s %12s %12s %11s\n", "ranks", "img/s", "per rank", "efficiency");
  len += (size_t)snprintf(js + len, cap - len, ", \"measured\": [");
  for (int k = 0; k < np; k++) {
    double eff = ips[k] / (pts[k] * ips[0]);
    printf("  %-6d %12.1f %12.1f %10.1f%%\n", pts[k], ips[k], ips[k] / pts[k], 100 * eff);
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"ranks\": %d, \"img_per_s\": %.3f, \"efficiency\": %.4f}",
                            k ? ", " : "", pts[k], ips[k], eff);
  }
  return len + (size_t)snprintf(js + len, cap - len, "]");
}

/* The projected table for a step of T seconds on one GPU (whence: where T comes from); its JSON
 * appended to js. Returns the new length, or 0 when the model cannot be built (after a
 * message). */
static size_t print_projected(const cg_config_t *cfg, const net_t *net, const char *whence,
                              double T, char *js, size_t len, size_t cap) {
  cg_model_t m;
  char err[512];
  if (cg_model_build(&m, 3 + CG_NFEAT, cfg->model_base, cfg->model_depth, cfg->image_size,
                     cfg->image_size, cfg->num_classes, err, sizeof err)) {
    fprintf(stderr, "cogpu-bench scaling: %s\n", err);
    return 0;
  }
  cg_buckets_t bk;
  cg_buckets_plan(&m, cfg->bucket_mb * 1e6, &bk);
  printf("# cogpu-bench scaling (projected): UNet base %d depth %d, %dx%d, batch %d per GPU, "
         "%zu parameters in %d bucket(s) of --bucket-mb %g\n",
         cfg->model_base, cfg->model_depth, cfg->image_size, cfg->image_size, cfg->batch,
         m.nparams, bk.n, cfg->bucket_mb);
  printf("# step on one GPU T = %.3f ms (%s); %d GPUs per node: NVLink %.0f GB/s %.1f us, "
         "network %.0f GB/s %.1f us per GPU\n",
         1e3 * T, whence, net->per_node, net->nv_gbs,
         net->nv_us, net->net_gbs, net->net_us);
  printf("# %-6s %14s %12s %12s %14s %12s\n", "GPUs", "step overlap", "exposed", "efficiency",
         "step no-ovl", "efficiency");
  len += (size_t)snprintf(js + len, cap - len, ", \"step_ms\": %.4f, \"projected\": [", 1e3 * T);
  for (int p = 8; p <= 1024; p *= 2) {
    double ex = 0, ex2 = 0;
    double s1 = project(&m, &bk, T, p, net, 1, &ex), s0 = project(&m, &bk, T, p, net, 0, &ex2);
    printf("  %-6d %12.3f ms %9.3f ms %11.1f%% %12.3f ms %11.1f%%\n", p, 1e3 * s1, 1e3 * ex,
           100 * T / s1, 1e3 * s0, 100 * T / s0);
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"gpus\": %d, \"step_ms_overlap\": %.4f, \"eff_overlap\": %.4f, "
                            "\"step_ms_no_overlap\": %.4f, \"eff_no_overlap\": %.4f}",
                            p > 8 ? ", " : "", p, 1e3 * s1, T / s1, 1e3 * s0, T / s0);
  }
  return len + (size_t)snprintf(js + len, cap - len, "]");
}

/* Bench defaults where the user said nothing: a run long enough for a steady window. */
static void scaling_given(void *arg, int argc, char **argv) {
  cg_bench_train_defaults(&((opts_t *)arg)->train, argc, argv, 60, 0);
}

static int scaling_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  const cg_config_t cfg = o->train;
  /* measured points: n = 1, 2, 4, ..., size */
  int pts[32], np = 0;
  for (int n = 1; n < c->size && np < 30; n *= 2) pts[np++] = n;
  pts[np++] = c->size;
  if (o->project && o->step_ms > 0) np = 0; /* nothing to measure */
  else if (o->project) np = 1;              /* the 1-rank step time only */
  double ips[32];
  int rc = measure(&cfg, c, pts, np, ips);
  if (rc || c->rank != 0) return rc;
  char js[8192];
  size_t len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"scaling\", \"batch\": %d", cfg.batch);
  if (!o->project) {
    len = print_measured(&cfg, pts, np, ips, js, len, sizeof js);
  } else {
    const int given = o->step_ms > 0;
    len = print_projected(&cfg, &o->net, given ? "--step-ms" : "measured",
                          given ? o->step_ms * 1e-3 : cfg.batch / ips[0], js, len, sizeof js);
    if (!len) return 2;
  }
  snprintf(js + len, sizeof js - len, "}");
  cg_bench_write_json(o->json_out, js);
  return 0;
}

const cg_bench_t cg_bench_scaling = {
    .name = "scaling",
    .summary = "weak scaling of the real step over 1..N ranks, and a projection to\n"
               "8..1024 GPUs from the measured step and an interconnect model",
    .about =
        "  measured: under mpirun -np N, the training run on 1, 2, 4, ..., N ranks with the\n"
        "  per-rank batch fixed; img/s and efficiency img/s(n) / (n img/s(1)).\n"
        "  projected (--project): step time on P = 8..1024 GPUs from the 1-rank step time\n"
        "  (measured, or --step-ms), the gradient buckets and this model (seconds, bytes):\n"
        "    bucket b ready at t_b = T/3 + 2T/3 * (backward FLOPs done) / (all backward FLOPs)\n"
        "    T_ar(S, P) = min(2(P-1)a + 2(P-1)/P S/B, 2 ceil(log2 P) a + 2 S/B)\n"
        "    (a, B) = NVLink within --gpus-per-node GPUs (--nvlink-us, --nvlink-gbs),\n"
        "             network otherwise (--net-us, --net-gbs)\n"
        "    overlap: F_b = max(F_(b-1), t_b) + T_ar(S_b), step = T + max(0, F_last - T)\n"
        "    no overlap: step = T + sum T_ar(S_b); efficiency = T / step\n"
        "  Defaults: --steps 60 --report-every 30 --val-samples 0 --progress off.",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .train_off = offsetof(opts_t, train),
    .given = scaling_given,
    .run = scaling_run,
};
