/* bench_scaling.c: `cogpu-bench scaling` — weak scaling, measured and projected.
 *
 * Measured (default; run under mpirun -np N): the real training run (every `train` flag but its
 * outputs, which bench_util.c refuses, passes through) on the first n ranks for n = 1, 2, 4,
 * ..., N with the per-rank batch fixed; img/s and the efficiency E(n) = img/s(n) / (n x
 * img/s(1)) per point.
 *
 * Projected (--project): a PROJECTION from measurements, not a measurement. The step timeline
 * (bucket ready times, backward end, AdamW, the rest of the step) comes from a --trace-out file
 * (--trace), from per-layer kernel times (--kernels-json, the GPU stand-in), or from a one-rank
 * run traced here; the all-reduce of each bucket is modelled with achievable bus bandwidths
 * and NCCL's latency terms (bench_scaling_model.c says where each default comes from). Per P:
 * the step, the exposed tail (all-reduce left after backward), efficiency = T / step where T is
 * the one-rank step (--ref-step-ms, or the timeline's own compute time). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* usleep: the ranks left out of a point wait asleep */

#include "bench.h"
#include "bench_scaling_model.h" // cg_timeline_*, cg_netmodel_*: the timeline and the model
#include "config.h"
#include "feat.h"
#include "log.h"
#include "model.h"
#include "topo.h"  /* cg_topo_*: a rank's cores in the full job */
#include "train.h"

typedef struct {
  const char *json_out;
  int project;
  const char *trace, *kernels_json; /* timeline sources (NULL: measure one rank) */
  cg_opt_ints_t gpus;
  const char *algo, *grad_bytes;
  double ref_ms;
  cg_netmodel_t net;
  cg_config_t train; /* every `cogpu-dist train` option */
  int batch_given;   /* --batch on the command line (a projection from a file has no batch) */
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_FLAG("project", F(project), 0,
        "project the step time on --gpus GPUs from a measured timeline instead of measuring "
        "1..N ranks"),
    CG_OPT_ROW_TEXT(PTR, "trace", F(trace), NULL, 0, "FILE",
        "--project: the step timeline from this --trace-out file (PREFIX.rankR.json); default: "
        "trace a one-rank run here"),
    CG_OPT_ROW_TEXT(PTR, "kernels-json", F(kernels_json), NULL, 0, "FILE",
        "--project: the timeline from per-layer kernel times (`cogpu-bench train "
        "--kernels-json`), the GPU stand-in"),
    CG_OPT_ROW_NUM(INTS, "gpus", F(gpus), 1, 1 << 20, 0, "LIST", "--project: GPU counts"),
    CG_OPT_ROW_NUM(INT, "gpus-per-node", F(net.per_node), 1, 1e6, 0, "N",
        "--project: GPUs per node (NVLink within, the network between)"),
    CG_OPT_ROW_NUM_GT(DBL, "nvlink-gbs", F(net.nv_gbs), 0, 1e6, 0, "X",
        "--project: all-reduce bus bandwidth within a node, GB/s (nccl-tests busbw)"),
    CG_OPT_ROW_NUM(DBL, "nvlink-us", F(net.nv_us), 0, 1e6, 0, "X",
        "--project: ring latency per step within a node, us"),
    CG_OPT_ROW_NUM_GT(DBL, "net-gbs", F(net.net_gbs), 0, 1e6, 0, "X",
        "--project: all-reduce bus bandwidth across nodes, GB/s (nccl-tests busbw)"),
    CG_OPT_ROW_NUM(DBL, "net-us", F(net.net_us), 0, 1e6, 0, "X",
        "--project: ring latency per step between nodes, us"),
    CG_OPT_ROW_NUM(DBL, "base-us", F(net.base_us), 0, 1e6, 0, "X",
        "--project: ring latency per all-reduce call, us"),
    CG_OPT_ROW_TEXT(PTR, "algo", F(algo), "best|ring", 0, "best|ring",
        "--project: best = min(ring, tree) as NCCL picks; ring = ring only (MPI)"),
    CG_OPT_ROW_TEXT(PTR, "grad-bytes", F(grad_bytes), "4|2", 0, "4|2",
        "--project: bytes per gradient element on the wire (2 = bf16 all-reduce)"),
    CG_OPT_ROW_NUM(DBL, "overlap-slowdown", F(net.slowdown), 0, 10, 0, "X",
        "--project: backward runs 1+X slower while all-reduces overlap it (NCCL takes SMs)"),
    CG_OPT_ROW_NUM(DBL, "ref-step-ms", F(ref_ms), 0, 1e7, 0, "X",
        "--project: the one-rank step that efficiency is relative to; 0 = the timeline's"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
};
/* Defaults, with their sources (see bench_scaling_model.c):
 *   460 GB/s: nccl-tests all_reduce_perf busbw on one 8x H100 SXM NVLink node, large messages
 *     (460-480 GB/s, docs.alayanew.com/en/docs/tech-blog/2026-05-06-nccl-tests), low end;
 *   400 GB/s: the same across nodes, H100/H200 SXM with NVLink + NDR InfiniBand (400-450 GB/s,
 *     saturncloud.io/blog/crusoe-nccl-cluster-validation), low end;
 *   8.4 / 3.4 / 9.6 us: NCCL's ring/Simple base, NVLink and network latencies (the cost-model
 *     tables of NCCL 2.7-2.8's tuning.cc/tuning.h);
 *   overlap slowdown 0.10: an ASSUMPTION, not measured (one GPU was lent): NCCL runs one CTA
 *     per channel, up to 32 channels, i.e. up to a quarter of an H200's 132 SMs while it runs. */
static const opts_t g_defaults = {
    NULL, 0, NULL, NULL, {8, {8, 16, 32, 64, 128, 256, 512, 1024}}, "best", "4", 0,
    {8, 460.0, 400.0, 3.4, 9.6, 8.4, 0, 4, 0.10}, {0}, 0};

static int scaling_check(void *arg, char *err, size_t errlen) {
  opts_t *o = arg;
  o->net.ring_only = !strcmp(o->algo, "ring");
  o->net.grad_bytes = atof(o->grad_bytes);
  if ((o->trace || o->kernels_json) && !o->project) {
    snprintf(err, errlen, "--%s: needs --project", o->trace ? "trace" : "kernels-json");
    return -1;
  }
  if (o->trace && o->kernels_json) {
    snprintf(err, errlen, "--trace: give --trace or --kernels-json, not both");
    return -1;
  }
  return 0;
}

/* The training run on the first pts[k] ranks for each k: the steady img/s in ips[k] on every
 * rank. Returns 0, or the exit code of a run that failed. */
static int measure(const cg_config_t *cfg0, cg_comm_t *c, const int *pts, int np, double *ips) {
  /* every point's ranks compute with the threads they have in the full job (a point of fewer
   * ranks would otherwise give its ranks every core while the others wait on them) */
  cg_config_t run = *cfg0;
  const cg_config_t *cfg = &run;
  if (run.threads <= 0) { /* the full job's plan: one per core of this rank's share */
    cg_topo_t *t = cg_topo_create(c, CG_TOPO_GPU_NONE);
    run.threads = cg_topo_plan(t)->ncpus;
    cg_topo_destroy(t);
  }
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
    /* The ranks left out wait asleep: a blocking collective spins (Open MPI polls), and its
     * core is one the run's compute threads were given (the 1-rank point ran 10-100x slow). */
    MPI_Request rq;
    CG_CHECK_MPI(MPI_Ibarrier(c->world, &rq));
    for (int done = 0;;) {
      CG_CHECK_MPI(MPI_Test(&rq, &done, MPI_STATUS_IGNORE));
      if (done) break;
      usleep(2000);
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

/* The timeline of the projection: from --trace, --kernels-json, or the one-rank run traced at
 * prefix (whose file is then read and removed). Returns 0, or -1 after a message. */
static int load_timeline(const opts_t *o, const cg_model_t *m, const cg_buckets_t *bk,
                         const char *prefix, cg_timeline_t *tl) {
  char err[1400], path[1200];
  int rc;
  if (o->kernels_json) {
    rc = cg_timeline_from_kernels(o->kernels_json, m, bk, tl, err, sizeof err);
  } else if (o->trace) {
    rc = cg_timeline_from_trace(o->trace, tl, err, sizeof err);
  } else {
    snprintf(path, sizeof path, "%s.rank0.json", prefix);
    rc = cg_timeline_from_trace(path, tl, err, sizeof err);
    if (!o->train.trace_out[0]) unlink(path);
    if (!rc) snprintf(tl->whence, sizeof tl->whence, "one-rank run measured here, median of %d "
                      "traced steps", tl->steps);
  }
  if (rc) fprintf(stderr, "cogpu-bench scaling: %s\n", err);
  return rc;
}

/* The header of the projection: what it is, the timeline and every assumption. */
static void print_assumptions(const opts_t *o, const cg_timeline_t *tl, double ref) {
  const cg_netmodel_t *n = &o->net;
  printf("# cogpu-bench scaling --project: a PROJECTION from measured step timings, not a "
         "measurement\n# timeline: %s\n", tl->whence);
  printf("# one-rank step T = %.3f ms (%s): backward ends %.3f ms, AdamW %.3f ms after the "
         "last bucket, then %.3f ms to the next step\n", 1e3 * ref,
         o->ref_ms > 0 ? "--ref-step-ms" : "the timeline's compute", 1e3 * tl->bwd_end,
         1e3 * tl->opt, 1e3 * tl->after_opt);
  printf("# buckets (ready at ms, MB on the wire):");
  for (int b = 0; b < tl->n; b++)
    printf(" %d:%.3f/%.3f", b, 1e3 * tl->ready[b], 1e-6 * tl->elems[b] * n->grad_bytes);
  printf("\n# assumptions: all-reduce %s; bus bandwidth %.0f GB/s within %d-GPU nodes, %.0f "
         "GB/s across (achievable busbw, not link peaks);\n", n->ring_only ? "ring only" :
         "min(ring, tree)", n->nv_gbs, n->per_node, n->net_gbs);
  printf("#   latency %.1f us per call + %.1f us per ring step within a node, %.1f us between "
         "nodes (NCCL 2.7-2.8 cost-model tables); tree as NCCL's LL128 model;\n", n->base_us,
         n->nv_us, n->net_us);
  printf("#   %s-byte gradients; buckets reduced in ready order on one comm stream; AdamW after "
         "the last bucket; backward %.0f%% slower while an all-reduce overlaps it;\n",
         o->grad_bytes, 100 * n->slowdown);
  printf("#   same per-GPU compute at every P (weak scaling, no stragglers, no data stalls)\n");
}

/* The projected table; its JSON appended to js. Returns the new length. */
static size_t print_projection(const opts_t *o, const cg_timeline_t *tl, char *js, size_t len,
                               size_t cap) {
  const double ref = o->ref_ms > 0 ? 1e-3 * o->ref_ms : tl->compute;
  print_assumptions(o, tl, ref);
  printf("# %-6s %12s %12s %11s %14s %11s\n", "GPUs", "step", "exposed tail", "efficiency",
         "step no-ovl", "efficiency");
  len += (size_t)snprintf(js + len, cap - len, ", \"projection\": true, \"ref_step_ms\": %.4f, "
                          "\"buckets\": %d, \"projected\": [", 1e3 * ref, tl->n);
  for (int k = 0; k < o->gpus.n; k++) {
    const int p = o->gpus.v[k];
    double tail = 0, s1 = cg_netmodel_step(&o->net, tl, p, &tail);
    double s0 = cg_netmodel_step_serial(&o->net, tl, p);
    printf("  %-6d %9.3f ms %9.3f ms %10.1f%% %11.3f ms %10.1f%%\n", p, 1e3 * s1, 1e3 * tail,
           100 * ref / s1, 1e3 * s0, 100 * ref / s0);
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"gpus\": %d, \"step_ms\": %.4f, \"tail_ms\": %.4f, "
                            "\"efficiency\": %.4f, \"step_ms_no_overlap\": %.4f, "
                            "\"eff_no_overlap\": %.4f}",
                            k ? ", " : "", p, 1e3 * s1, 1e3 * tail, ref / s1, 1e3 * s0, ref / s0);
  }
  return len + (size_t)snprintf(js + len, cap - len, "]");
}

/* --project on rank 0 after the one-rank run (if any). Returns the exit code. */
static int project(const opts_t *o, const char *prefix, char *js, size_t *len, size_t cap) {
  const cg_config_t *cfg = &o->train;
  cg_model_t m;
  char err[512];
  if (cg_model_build(&m, 3 + CG_NFEAT, cfg->model_base, cfg->model_depth, cfg->image_size,
                     cfg->image_size, cfg->num_classes, err, sizeof err)) {
    fprintf(stderr, "cogpu-bench scaling: %s\n", err);
    return 2;
  }
  cg_buckets_t bk;
  cg_buckets_plan_last(&m, cfg->bucket_mb * 1e6, cfg->last_bucket_mb * 1e6, &bk);
  cg_timeline_t tl;
  if (load_timeline(o, &m, &bk, prefix, &tl)) return 2;
  *len = print_projection(o, &tl, js, *len, cap);
  return 0;
}

/* Bench defaults where the user said nothing: a run long enough for a steady window. */
static void scaling_given(void *arg, int argc, char **argv) {
  opts_t *o = arg;
  cg_bench_train_defaults(&o->train, argc, argv, 60, 0);
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--batch") || !strncmp(argv[i], "--batch=", 8)) o->batch_given = 1;
}

static int scaling_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  cg_config_t cfg = o->train;
  /* measured points: n = 1, 2, 4, ..., size */
  int pts[32], np = 0;
  for (int n = 1; n < c->size && np < 30; n *= 2) pts[np++] = n;
  pts[np++] = c->size;
  char prefix[1100] = "";
  if (o->project && (o->trace || o->kernels_json)) {
    np = 0; /* nothing to measure */
  } else if (o->project) {
    np = 1; /* the traced one-rank run */
    if (!cfg.trace_out[0]) {
      snprintf(cfg.trace_out, sizeof cfg.trace_out, "/tmp/cogpu-scaling-%ld", (long)getpid());
      CG_CHECK_MPI(MPI_Bcast(cfg.trace_out, (int)sizeof cfg.trace_out, MPI_CHAR, 0, c->world));
    }
    snprintf(prefix, sizeof prefix, "%s", cfg.trace_out);
  }
  double ips[32];
  int rc = measure(&cfg, c, pts, np, ips);
  if (rc || c->rank != 0) return rc;
  char js[8192];
  size_t len;
  if (np == 0 && !o->batch_given) /* the timeline came from a file: its batch is not known */
    len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"scaling\", \"batch\": null");
  else
    len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"scaling\", \"batch\": %d", cfg.batch);
  if (!o->project)
    len = print_measured(&cfg, pts, np, ips, js, len, sizeof js);
  else if ((rc = project(o, prefix, js, &len, sizeof js)))
    return rc;
  snprintf(js + len, sizeof js - len, "}");
  cg_bench_write_json(o->json_out, js);
  return 0;
}

const cg_bench_t cg_bench_scaling = {
    .name = "scaling",
    .summary = "weak scaling of the real step over 1..N ranks, and a projection to\n"
               "8..1024 GPUs from a measured step timeline and an all-reduce model",
    .about =
        "  measured: under mpirun -np N, the training run on 1, 2, 4, ..., N ranks with the\n"
        "  per-rank batch fixed; img/s and efficiency img/s(n) / (n img/s(1)).\n"
        "  projected (--project): a projection, not a measurement. The step timeline (when\n"
        "  each gradient bucket is ready, backward's end, AdamW) is measured: --trace FILE\n"
        "  (a --trace-out file), --kernels-json FILE (per-layer GPU kernel times), or a traced\n"
        "  one-rank run here. Per bucket of S bytes on P GPUs (g per node, N nodes, bus\n"
        "  bandwidth B within or across nodes, nccl-tests busbw):\n"
        "    ring = base + 2(P-N) nvlink-us + 2(N-1) net-us + 2(P-1)/P S/B\n"
        "    tree = 4.4 us + 2((g-1) 1.2 us + floor(log2 N) 8.5 us) + 2S/(0.9B)\n"
        "    T_ar = min(ring, tree) (--algo ring: ring)\n"
        "  buckets reduced in ready order: F_b = max(F_(b-1), t_b) + T_ar(S_b); backward runs\n"
        "  (1 + --overlap-slowdown) slower while an all-reduce overlaps it; exposed tail =\n"
        "  F_last - backward end; step = backward end + tail + AdamW + the rest after it;\n"
        "  efficiency = T(1) / step.\n"
        "  Defaults: --steps 60 --report-every 30 --val-samples 0 --progress off.",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .train_off = offsetof(opts_t, train),
    .given = scaling_given,
    .check = scaling_check,
    .run = scaling_run,
};
