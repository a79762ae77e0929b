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
#include "data.h"
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

int cg_bench_scaling(int argc, char **argv, cg_comm_t *c) {
  const char *json_out = NULL;
  int do_project = 0;
  double step_ms = -1;
  net_t net = {2.0, 450.0, 5.0, 50.0, 8};
  char **targv = cg_calloc((size_t)argc + 2, sizeof(char *), "argv");
  int targc = 0;
  targv[targc++] = "cogpu-bench";
  targv[targc++] = "train";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      if (c->rank == 0)
        printf("usage: cogpu-bench scaling [--project] [--step-ms X] [--gpus-per-node N]\n"
               "         [--nvlink-gbs X] [--nvlink-us X] [--net-gbs X] [--net-us X]\n"
               "         [--json-out FILE] [train options]\n"
               "  measured: under mpirun -np N, the training run on 1, 2, 4, ..., N ranks with the\n"
               "  per-rank batch fixed; img/s and efficiency img/s(n) / (n img/s(1)).\n"
               "  --project: step time on P = 8..1024 GPUs from the 1-rank step time (measured, or\n"
               "  --step-ms), the gradient buckets and this model (seconds, bytes):\n"
               "    bucket b ready at t_b = T/3 + 2T/3 * (backward FLOPs done) / (all backward FLOPs)\n"
               "    T_ar(S, P) = min(2(P-1)a + 2(P-1)/P S/B, 2 ceil(log2 P) a + 2 S/B)\n"
               "    (a, B) = NVLink within --gpus-per-node [8] GPUs [2 us, 450 GB/s],\n"
               "             network otherwise [5 us, 50 GB/s = 400 Gb/s per GPU]\n"
               "    overlap: F_b = max(F_(b-1), t_b) + T_ar(S_b), step = T + max(0, F_last - T)\n"
               "    no overlap: step = T + sum T_ar(S_b); efficiency = T / step\n");
      free(targv);
      return 0;
    }
#define NUM(flag, dst)                                                                   \
  if (!strcmp(a, flag)) {                                                                \
    if (!v) {                                                                            \
      if (c->rank == 0) fprintf(stderr, "cogpu-bench scaling: %s: missing value\n", a);  \
      free(targv);                                                                       \
      return 2;                                                                          \
    }                                                                                    \
    dst = atof(v);                                                                       \
    i++;                                                                                 \
    continue;                                                                            \
  }
    NUM("--step-ms", step_ms)
    NUM("--nvlink-gbs", net.nv_gbs)
    NUM("--nvlink-us", net.nv_us)
    NUM("--net-gbs", net.net_gbs)
    NUM("--net-us", net.net_us)
#undef NUM
    if (!strcmp(a, "--gpus-per-node") && v) {
      net.per_node = atoi(v);
      i++;
      continue;
    }
    if (!strcmp(a, "--project")) {
      do_project = 1;
      continue;
    }
    if (!strcmp(a, "--json-out") && v) {
      json_out = v;
      i++;
      continue;
    }
    targv[targc++] = argv[i];
  }
  cg_config_t cfg;
  char err[512];
  int rc = cg_cli_parse(targc, targv, &cfg, err, sizeof err);
  int user_steps = 0, user_report = 0, user_val = 0, user_progress = 0;
  for (int i = 2; i < targc; i++) {
    user_steps |= !strncmp(targv[i], "--steps", 7) || !strncmp(targv[i], "--epochs", 8);
    user_report |= !strncmp(targv[i], "--report-every", 14);
    user_val |= !strncmp(targv[i], "--val-samples", 13);
    user_progress |= !strncmp(targv[i], "--progress", 10);
  }
  free(targv);
  if (rc != 0) {
    if (c->rank == 0) fprintf(stderr, "cogpu-bench scaling: %s\n", rc < 0 ? err : "bad arguments");
    return 2;
  }
  if (!user_steps) cfg.steps = 60;
  if (!user_report) cfg.report_every = cfg.steps > 1 ? cfg.steps / 2 : 1;
  if (!user_val) cfg.val_samples = 0;
  if (!user_progress) snprintf(cfg.progress, sizeof cfg.progress, "off");

  /* measured points: n = 1, 2, 4, ..., size */
  int pts[32], np = 0;
  for (int n = 1; n < c->size && np < 30; n *= 2) pts[np++] = n;
  pts[np++] = c->size;
  if (do_project && step_ms > 0) np = 0; /* nothing to measure */
  else if (do_project) np = 1;           /* the 1-rank step time only */
  double ips[32];
  for (int k = 0; k < np; k++) {
    int n = pts[k];
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
      rc = cg_train_run(&cfg, &sc, &res);
      cg_comm_free(&sc);
      MPI_Comm_free(&sub);
    }
    CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
    if (rc) return rc;
    ips[k] = res.last_img_per_s;
    CG_CHECK_MPI(MPI_Bcast(&ips[k], 1, MPI_DOUBLE, 0, c->world));
  }
  if (c->rank != 0) return 0;
  char js[8192];
  size_t len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"scaling\", \"batch\": %d", cfg.batch);
  if (!do_project) {
    printf("# cogpu-bench scaling (measured): weak scaling, batch %d per rank, steady state\n",
           cfg.batch);
    printf("# %-6s %12s %12s %11s\n", "ranks", "img/s", "per rank", "efficiency");
    len += (size_t)snprintf(js + len, sizeof js - len, ", \"measured\": [");
    for (int k = 0; k < np; k++) {
      double eff = ips[k] / (pts[k] * ips[0]);
      printf("  %-6d %12.1f %12.1f %10.1f%%\n", pts[k], ips[k], ips[k] / pts[k], 100 * eff);
      len += (size_t)snprintf(js + len, sizeof js - len,
                              "%s{\"ranks\": %d, \"img_per_s\": %.3f, \"efficiency\": %.4f}",
                              k ? ", " : "", pts[k], ips[k], eff);
    }
    len += (size_t)snprintf(js + len, sizeof js - len, "]");
  } else {
    cg_model_t m;
    if (cg_model_build(&m, 3 + CG_NFEAT, cfg.model_base, cfg.model_depth, cfg.image_size,
                       cfg.image_size, err, sizeof err)) {
      fprintf(stderr, "cogpu-bench scaling: %s\n", err);
      return 2;
    }
    cg_buckets_t bk;
    cg_buckets_plan(&m, cfg.bucket_mb * 1e6, &bk);
    double T = step_ms > 0 ? step_ms * 1e-3 : cfg.batch / ips[0];
    printf("# cogpu-bench scaling (projected): UNet base %d depth %d, %dx%d, batch %d per GPU, "
           "%zu parameters in %d bucket(s) of --bucket-mb %g\n",
           cfg.model_base, cfg.model_depth, cfg.image_size, cfg.image_size, cfg.batch, m.nparams,
           bk.n, cfg.bucket_mb);
    printf("# step on one GPU T = %.3f ms (%s); %d GPUs per node: NVLink %.0f GB/s %.1f us, "
           "network %.0f GB/s %.1f us per GPU\n",
           1e3 * T, step_ms > 0 ? "--step-ms" : "measured", net.per_node, net.nv_gbs, net.nv_us,
           net.net_gbs, net.net_us);
    printf("# %-6s %14s %12s %12s %14s %12s\n", "GPUs", "step overlap", "exposed", "efficiency",
           "step no-ovl", "efficiency");
    len += (size_t)snprintf(js + len, sizeof js - len, ", \"step_ms\": %.4f, \"projected\": [", 1e3 * T);
    int first = 1;
    for (int p = 8; p <= 1024; p *= 2) {
      double ex = 0, ex2 = 0;
      double s1 = project(&m, &bk, T, p, &net, 1, &ex), s0 = project(&m, &bk, T, p, &net, 0, &ex2);
      printf("  %-6d %12.3f ms %9.3f ms %11.1f%% %12.3f ms %11.1f%%\n", p, 1e3 * s1, 1e3 * ex,
             100 * T / s1, 1e3 * s0, 100 * T / s0);
      len += (size_t)snprintf(js + len, sizeof js - len,
                              "%s{\"gpus\": %d, \"step_ms_overlap\": %.4f, \"eff_overlap\": %.4f, "
                              "\"step_ms_no_overlap\": %.4f, \"eff_no_overlap\": %.4f}",
                              first ? "" : ", ", p, 1e3 * s1, T / s1, 1e3 * s0, T / s0);
      first = 0;
    }
    len += (size_t)snprintf(js + len, sizeof js - len, "]");
  }
  snprintf(js + len, sizeof js - len, "}");
  printf("JSON %s\n", js);
  cg_bench_write_json(json_out, js);
  return 0;
}
