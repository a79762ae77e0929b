/* stats.c: gathers the load figures and prints the balance report (see stats.h). */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "atomic_file.h"
#include "json.h" /* cg_json_put_str: host and GPU names */
#include "log.h"
#include "rank_view.h"

enum { F_STEPS, F_WALL, F_WAIT, F_COMM, F_BUSY, F_HBUSY, F_HELPERS, F_SHARE, F_SAMPLES, F_H2D,
       F_D2H, F_LOSS, NF };

#define NAME_LEN 64

struct cg_stats {
  const cg_comm_t *c;
  int gpu;
  FILE *jsonl;
  char *prom;  /* --prom-out path, rank 0 */
  char *names; /* rank 0: host then gpu per rank, NAME_LEN each */
  double *all; /* NF x size */
  int *node;   /* node index per rank */
  cg_rank_view_t view; /* the table's rows (--report-ranks), resolved */
  int timing;  /* COGPU_STATS_TIMING set on rank 0: a barrier before the gather, and rank 0
                  prints the gather and format times */
  double val[7]; /* the latest validation: step, loss, iou, dice, acc, classes, macc; step < 0
                    none */
  int hold_final;  /* the final record waits for the final validation (cg_stats_hold_final) */
  char *held;      /* that record without its "val", which goes at held_at */
  size_t held_at;
  int lost;    /* --stats-out records that could not be written (a full disk): said once */
};

/* Derived figures of one rank. */
typedef struct {
  double step_ms, busy, wait, comm, cpu_busy, share, ips, h2d, d2h, own_ms, compute;
} fig_t;

/* busy is gpu_busy: absent on the cpu backend, whose compute threads' busy time is compute. */
#define NFIG 11
static const char *fig_key[NFIG] = {"step_ms", "gpu_busy", "data_wait", "comm_exposed",
                                    "cpu_busy", "cpu_share", "img_per_s", "h2d_mb_s",
                                    "d2h_mb_s", "own_ms", "compute_busy"};

static double *fig_at(fig_t *f, int i) { return &f->step_ms + i; }

static fig_t derive(const double *v, int gpu) {
  fig_t f;
  double steps = v[F_STEPS] > 0 ? v[F_STEPS] : 1, wall = v[F_WALL] > 0 ? v[F_WALL] : 1e-9;
  f.step_ms = 1e3 * wall / steps;
  f.compute = v[F_BUSY] >= 0 ? v[F_BUSY] / wall : NAN;
  f.busy = gpu ? f.compute : NAN;
  f.wait = v[F_WAIT] / wall;
  f.comm = v[F_COMM] / wall;
  f.cpu_busy = v[F_HELPERS] > 0 ? v[F_HBUSY] / (v[F_HELPERS] * wall) : NAN;
  f.share = v[F_SHARE];
  f.ips = v[F_SAMPLES] / wall;
  f.h2d = v[F_H2D] / wall / 1e6;
  f.d2h = v[F_D2H] / wall / 1e6;
  f.own_ms = f.step_ms * (1.0 - f.comm);
  return f;
}

cg_stats_t *cg_stats_create(const cg_comm_t *c, const char *gpu_name, int backend_is_gpu,
                            const char *jsonl_path) {
  cg_stats_t *s = cg_calloc(1, sizeof *s, "stats");
  s->val[0] = -1;
  s->c = c;
  s->gpu = backend_is_gpu;
  char mine[2 * NAME_LEN];
  memset(mine, 0, sizeof mine);
  snprintf(mine, NAME_LEN, "%s", c->host);
  snprintf(mine + NAME_LEN, NAME_LEN, "%s", gpu_name && gpu_name[0] ? gpu_name : "-");
  s->names = cg_calloc((size_t)c->size, sizeof mine, "stats names");
  CG_CHECK_MPI(MPI_Allgather(mine, (int)sizeof mine, MPI_CHAR, s->names, (int)sizeof mine,
                             MPI_CHAR, c->world));
  s->all = cg_calloc((size_t)c->size * NF, sizeof(double), "stats records");
  s->node = cg_calloc((size_t)c->size, sizeof(int), "stats nodes");
  CG_CHECK_MPI(MPI_Allgather(&c->node, 1, MPI_INT, s->node, 1, MPI_INT, c->world));
  s->view = cg_rank_view_resolve((cg_rank_view_t){CG_VIEW_AUTO, CG_VIEW_TOP_DEFAULT}, c->size,
                                 c->nnodes);
  /* rank 0's setting is the job's: the barrier it adds must be every rank's, and a launcher
   * passes the environment to the ranks on other nodes only when told (mpirun -x) */
  const char *tm = getenv("COGPU_STATS_TIMING");
  s->timing = tm && tm[0] && strcmp(tm, "0");
  CG_CHECK_MPI(MPI_Bcast(&s->timing, 1, MPI_INT, 0, c->world));
  if (c->rank == 0 && jsonl_path && jsonl_path[0]) {
    char err[4400];
    s->jsonl = cg_afile_append(jsonl_path, 1, err, sizeof err); /* a FIFO too: cogpu-monitor */
    if (!s->jsonl) cg_log_warn("--stats-out: %s", err);
  }
  return s;
}

void cg_stats_set_view(cg_stats_t *s, cg_rank_view_t v) {
  s->view = cg_rank_view_resolve(v, s->c->size, s->c->nnodes);
}

void cg_stats_set_prom(cg_stats_t *s, const char *path) {
  free(s->prom);
  s->prom = s->c->rank == 0 && path && path[0] ? strdup(path) : NULL;
}

/* A label value with \, " and newline escaped, as the exposition format requires. */
static void prom_label(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') fputc('\\', f), fputc(*v, f);
    else if (*v == '\n') fputs("\\n", f);
    else fputc(*v, f);
  }
}

typedef struct {
  const char *name, *help;
  int fig;       /* index into fig_t, or -1 */
  double scale;  /* e.g. ms -> s */
} prom_metric_t;

static const prom_metric_t prom_rank_metrics[] = {
    {"cogpu_step_seconds", "Wall time per training step over the last report window.", 0, 1e-3},
    {"cogpu_gpu_busy_ratio", "Compute-stream busy time over step time (GPU backends).", 1, 1},
    {"cogpu_compute_busy_ratio", "Compute device busy time over step time (the GPU, or the cpu backend's compute threads).", 10, 1},
    {"cogpu_data_wait_ratio", "Time waiting for the next batch over step time.", 2, 1},
    {"cogpu_comm_exposed_ratio", "Time compute waited for gradient communication over step time.", 3, 1},
    {"cogpu_cpu_busy_ratio", "Helper-thread busy time over helpers times step time.", 4, 1},
    {"cogpu_cpu_share_ratio", "Fraction of the offloadable work (features, normalisation, metrics) done on the CPU.", 5, 1},
    {"cogpu_images_per_second", "Images trained per second by this rank.", 6, 1},
    {"cogpu_h2d_bytes_per_second", "Bytes copied host to device per second.", 7, 1e6},
    {"cogpu_d2h_bytes_per_second", "Bytes copied device to host per second.", 8, 1e6},
    {"cogpu_own_step_seconds", "Step time not spent waiting for other ranks (straggler detection).", 9, 1e-3},
};

static void write_prom(cg_stats_t *s, const fig_t *f, int R, int64_t step, int64_t total,
                       int final, double loss, double cluster_ips, int straggler, const fig_t *imb) {
  char err[4400];
  cg_afile_t *af = cg_afile_open(s->prom, err, sizeof err);
  if (!af) {
    cg_log_warn("--prom-out: %s", err);
    return;
  }
  FILE *o = cg_afile_stream(af);
  for (size_t m = 0; m < sizeof prom_rank_metrics / sizeof prom_rank_metrics[0]; m++) {
    const prom_metric_t *pm = &prom_rank_metrics[m];
    int any = 0;
    for (int r = 0; r < R; r++) any |= isfinite(*fig_at((fig_t *)&f[r], pm->fig)) != 0;
    if (!any) continue; /* absent on this backend: no samples at all */
    fprintf(o, "# HELP %s %s\n# TYPE %s gauge\n", pm->name, pm->help, pm->name);
    for (int r = 0; r < R; r++) {
      double v = *fig_at((fig_t *)&f[r], pm->fig);
      if (!isfinite(v)) continue;
      fprintf(o, "%s{rank=\"%d\",host=\"", pm->name, r);
      prom_label(o, s->names + (size_t)r * 2 * NAME_LEN);
      fputs("\",gpu=\"", o);
      prom_label(o, s->names + (size_t)r * 2 * NAME_LEN + NAME_LEN);
      fprintf(o, "\"} %.9g\n", v * pm->scale);
    }
  }
  fprintf(o, "# HELP cogpu_cluster_images_per_second Images trained per second by the whole job.\n"
             "# TYPE cogpu_cluster_images_per_second gauge\ncogpu_cluster_images_per_second %.9g\n",
          cluster_ips);
  if (isfinite(imb->own_ms))
    fprintf(o, "# HELP cogpu_cluster_imbalance_ratio Max over mean minus one of the ranks' own step time.\n"
               "# TYPE cogpu_cluster_imbalance_ratio gauge\ncogpu_cluster_imbalance_ratio %.9g\n",
            imb->own_ms);
  fprintf(o, "# HELP cogpu_straggler_rank The rank flagged as the straggler, -1 when none.\n"
             "# TYPE cogpu_straggler_rank gauge\ncogpu_straggler_rank %d\n", straggler);
  fprintf(o, "# HELP cogpu_ranks Ranks in the job.\n# TYPE cogpu_ranks gauge\ncogpu_ranks %d\n", R);
  fprintf(o, "# HELP cogpu_step Training steps completed.\n# TYPE cogpu_step gauge\ncogpu_step %lld\n",
          (long long)step);
  fprintf(o, "# HELP cogpu_steps_planned Training steps the job will run.\n"
             "# TYPE cogpu_steps_planned gauge\ncogpu_steps_planned %lld\n", (long long)total);
  if (isfinite(loss))
    fprintf(o, "# HELP cogpu_loss Mean training loss over the last report window.\n"
               "# TYPE cogpu_loss gauge\ncogpu_loss %.9g\n", loss);
  fprintf(o, "# HELP cogpu_finished 1 once training has finished.\n"
             "# TYPE cogpu_finished gauge\ncogpu_finished %d\n", final ? 1 : 0);
  if (cg_afile_commit(af, err, sizeof err)) cg_log_warn("--prom-out: %s", err);
}

void cg_stats_destroy(cg_stats_t *s) {
  if (!s) return;
  cg_stats_flush_final(s); /* a held final record is never lost */
  free(s->held);
  free(s->prom);
  if (s->jsonl) fclose(s->jsonl);
  free(s->names);
  free(s->all);
  free(s->node);
  free(s);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void json_num(FILE *f, const char *key, double v, int comma) {
  if (isfinite(v)) fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
  else fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
}

static void fmt_pct(char *b, size_t n, double v) {
  if (isfinite(v)) snprintf(b, n, "%.1f%%", 100.0 * v);
  else snprintf(b, n, "-");
}

/* Means over ranks of the derived figures; every rank can compute them from the gather. */
static void cluster_means(const cg_stats_t *s, cg_cluster_t *cl) {
  const int R = s->c->size;
  memset(cl, 0, sizeof *cl);
  double samples = 0, wall = 0;
  for (int r = 0; r < R; r++) {
    fig_t f = derive(s->all + (size_t)r * NF, s->gpu);
    cl->step_ms += f.step_ms / R;
    cl->gpu_busy += f.busy / R;
    cl->compute_busy += f.compute / R;
    cl->data_wait += f.wait / R;
    cl->comm_exposed += f.comm / R;
    cl->cpu_busy += f.cpu_busy / R;
    cl->cpu_share += f.share / R;
    samples += s->all[(size_t)r * NF + F_SAMPLES];
    wall += s->all[(size_t)r * NF + F_WALL];
  }
  cl->img_per_s = wall > 0 ? samples / (wall / R) : 0;
  cl->straggler = -1;
}

void cg_stats_set_val(cg_stats_t *s, int64_t step, double loss, double iou, double dice,
                      double acc, double macc, int classes) {
  if (!s) return;
  const double v[7] = {(double)step, loss, iou, dice, acc, (double)classes, macc};
  memcpy(s->val, v, sizeof v);
}

/* What the printed table needs besides the per-rank figures. */
typedef struct {
  const fig_t *f, *mean, *max, *imb;
  int straggler;
  double median;
  int64_t step, total;
  int final;
  double window_steps, cluster_ips;
} table_t;

static void print_row(FILE *out, const cg_stats_t *s, const char *label, const char *host,
                      const char *gpu, const fig_t *g, const char *extra) {
  char b1[16], b2[16], b3[16], b4[16], b5[16];
  fmt_pct(b1, sizeof b1, s->gpu ? g->busy : g->compute);
  fmt_pct(b2, sizeof b2, g->wait);
  fmt_pct(b3, sizeof b3, g->comm);
  fmt_pct(b4, sizeof b4, g->cpu_busy);
  fmt_pct(b5, sizeof b5, g->share);
  fprintf(out, "  %-5s %-14.14s %-14.14s %8.2f %8s %9s %8s %8s %9s %9.1f %8.1f %8.2f %8.2f%s\n",
          label, host, gpu, g->step_ms, b1, b2, b3, b4, b5, g->ips, g->h2d, g->d2h, g->own_ms,
          extra ? extra : "");
}

static void print_rank(FILE *out, const cg_stats_t *s, const table_t *tb, int r) {
  char label[24];
  snprintf(label, sizeof label, "%d%s", r, r == tb->straggler ? "*" : "");
  print_row(out, s, label, s->names + (size_t)r * 2 * NAME_LEN,
            s->names + (size_t)r * 2 * NAME_LEN + NAME_LEN, &tb->f[r], NULL);
}

/* --report-ranks nodes: per node the mean of its ranks' figures and its worst (slowest own
 * time) rank, named. */
static void print_nodes(FILE *out, const cg_stats_t *s, const table_t *tb) {
  const int R = s->c->size;
  int nn = 0;
  for (int r = 0; r < R; r++)
    if (s->node[r] + 1 > nn) nn = s->node[r] + 1;
  for (int n = 0; n < nn; n++) {
    fig_t m;
    memset(&m, 0, sizeof m);
    int k = 0, worst = -1;
    for (int r = 0; r < R; r++) {
      if (s->node[r] != n) continue;
      k++;
      if (worst < 0 || tb->f[r].own_ms > tb->f[worst].own_ms) worst = r;
    }
    if (!k) continue;
    for (int r = 0; r < R; r++)
      if (s->node[r] == n)
        for (int i = 0; i < NFIG; i++) *fig_at(&m, i) += *fig_at((fig_t *)&tb->f[r], i) / k;
    char label[24], ranks[24], extra[96];
    snprintf(label, sizeof label, "n%d", n);
    snprintf(ranks, sizeof ranks, "%d rank(s)", k);
    snprintf(extra, sizeof extra, "  worst rank %d%s (own %.2f ms)", worst,
             worst == tb->straggler ? "*" : "", tb->f[worst].own_ms);
    print_row(out, s, label, s->names + (size_t)worst * 2 * NAME_LEN, ranks, &m, extra);
  }
}

typedef struct {
  double own;
  int rank;
} own_rank_t;

static int cmp_own_desc(const void *a, const void *b) {
  const own_rank_t *x = a, *y = b;
  if (x->own != y->own) return x->own < y->own ? 1 : -1;
  return (x->rank > y->rank) - (x->rank < y->rank);
}

/* --report-ranks top:N: the N ranks with the slowest own time, slowest first. */
static void print_top(FILE *out, const cg_stats_t *s, const table_t *tb) {
  const int R = s->c->size, n = s->view.top < R ? s->view.top : R;
  own_rank_t *order = cg_malloc(sizeof *order * (size_t)R, "stats order");
  for (int r = 0; r < R; r++) order[r] = (own_rank_t){tb->f[r].own_ms, r};
  qsort(order, (size_t)R, sizeof *order, cmp_own_desc);
  for (int i = 0; i < n; i++) print_rank(out, s, tb, order[i].rank);
  if (n < R)
    fprintf(out, "  ... %d more rank(s) not shown (--report-ranks all shows every rank)\n", R - n);
  free(order);
}

static void print_table(const cg_stats_t *s, const table_t *tb, FILE *out) {
  const int R = s->c->size;
  const char *busy_h = s->gpu ? "gpu_busy" : "compute";
  char vn[32] = "";
  if (s->view.mode == CG_VIEW_NODES) snprintf(vn, sizeof vn, ", one row per node");
  else if (s->view.mode == CG_VIEW_TOP)
    snprintf(vn, sizeof vn, ", the %d slowest", s->view.top < R ? s->view.top : R);
  fprintf(out, "# balance %s step %lld/%lld, window of %.0f steps, %d rank(s)%s, %.1f img/s in all\n",
          tb->final ? "at the end," : "at", (long long)tb->step, (long long)tb->total,
          tb->window_steps, R, vn, tb->cluster_ips);
  fprintf(out, "# %-5s %-14s %-14s %8s %8s %9s %8s %8s %9s %9s %8s %8s %8s%s\n",
          s->view.mode == CG_VIEW_NODES ? "node" : "rank", "host",
          s->view.mode == CG_VIEW_NODES ? "ranks" : "gpu", "step_ms", busy_h, "data_wait",
          "comm_exp", "cpu_busy", "cpu_share", "img/s", "h2d_MB/s", "d2h_MB/s", "own_ms",
          s->view.mode == CG_VIEW_NODES ? "  worst" : "");
  if (s->view.mode == CG_VIEW_NODES) print_nodes(out, s, tb);
  else if (s->view.mode == CG_VIEW_TOP) print_top(out, s, tb);
  else
    for (int r = 0; r < R; r++) print_rank(out, s, tb, r);
  print_row(out, s, "mean", "", "", tb->mean, NULL);
  print_row(out, s, "max", "", "", tb->max, NULL);
  char i1[16], i2[16];
  fmt_pct(i1, sizeof i1, tb->imb->own_ms);
  fmt_pct(i2, sizeof i2, s->gpu ? tb->imb->busy : tb->imb->compute);
  fprintf(out, "  imbalance (max/mean - 1): own_ms %s, %s %s\n", i1, busy_h, i2);
  if (tb->straggler >= 0)
    fprintf(out, "  straggler: rank %d on %s (own %.2f ms/step, %.0f%% above the median %.2f)\n",
            tb->straggler, s->names + (size_t)tb->straggler * 2 * NAME_LEN,
            tb->f[tb->straggler].own_ms,
            100.0 * (tb->f[tb->straggler].own_ms / tb->median - 1.0), tb->median);
  else
    fprintf(out, "  straggler: none (no rank's own time is more than 10%% above the median %.2f ms)\n",
            tb->median);
  fflush(out);
}

/* Seconds since the epoch to the millisecond, for the records' "time" (time(NULL) would end
 * every value in .000). */
static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The cluster's figures of one window, from every rank's gathered numbers (rank 0). */
typedef struct {
  fig_t *f;             /* per rank, malloc'ed (summarise): the caller frees */
  fig_t mean, max, imb; /* imb: max / mean - 1 */
  double median;        /* of the ranks' own time, ms/step */
  double cluster_ips;   /* samples / mean wall time */
  int straggler;        /* the slowest rank more than 10% above the median, or -1 */
} summary_t;

static void summarise(const cg_stats_t *s, int R, summary_t *u) {
  u->f = cg_calloc((size_t)R, sizeof(fig_t), "stats figures");
  memset(&u->mean, 0, sizeof u->mean);
  for (int i = 0; i < NFIG; i++) *fig_at(&u->max, i) = -INFINITY;
  double samples = 0, wall = 0;
  for (int r = 0; r < R; r++) {
    u->f[r] = derive(s->all + (size_t)r * NF, s->gpu);
    samples += s->all[(size_t)r * NF + F_SAMPLES];
    wall += s->all[(size_t)r * NF + F_WALL];
    for (int i = 0; i < NFIG; i++) {
      double v = *fig_at(&u->f[r], i);
      *fig_at(&u->mean, i) += v / R; /* NaN stays NaN: absent on one rank = absent */
      if (v > *fig_at(&u->max, i)) *fig_at(&u->max, i) = v;
    }
  }
  for (int i = 0; i < NFIG; i++)
    if (!isfinite(*fig_at(&u->mean, i))) *fig_at(&u->max, i) = NAN;
  u->cluster_ips = wall > 0 ? samples / (wall / R) : 0;
  /* straggler: own time > 1.1 x median own time */
  double *own = cg_malloc(sizeof(double) * (size_t)R, "own");
  for (int r = 0; r < R; r++) own[r] = u->f[r].own_ms;
  qsort(own, (size_t)R, sizeof(double), cmp_d);
  u->median = R % 2 ? own[R / 2] : 0.5 * (own[R / 2 - 1] + own[R / 2]);
  free(own);
  u->straggler = -1;
  for (int r = 0; r < R; r++)
    if (u->f[r].own_ms > 1.1 * u->median &&
        (u->straggler < 0 || u->f[r].own_ms > u->f[u->straggler].own_ms))
      u->straggler = r;
  for (int i = 0; i < NFIG; i++) {
    double mv = *fig_at(&u->mean, i);
    *fig_at(&u->imb, i) = mv > 0 ? *fig_at(&u->max, i) / mv - 1.0 : NAN;
  }
}

/* The --stats-out record of the window, made in memory (the final one may wait for the final
 * validation): a malloc'ed line the caller owns; *val_at is where the validation goes. */
static char *jsonl_record(const cg_stats_t *s, const summary_t *u, int R, int64_t step,
                          int64_t total, int final, double window_steps, double loss,
                          size_t *val_at) {
  char *line = NULL;
  size_t len = 0;
  FILE *j = open_memstream(&line, &len);
  if (!j) CG_FATAL("out of memory (stats record)");
  fprintf(j, "{\"step\": %lld, \"total_steps\": %lld, \"final\": %s, \"time\": %.3f, ",
          (long long)step, (long long)total, final ? "true" : "false", wall_now());
  fprintf(j, "\"window_steps\": %.0f, \"gpu_backend\": %s, ", window_steps,
          s->gpu ? "true" : "false");
  json_num(j, "loss", loss, 1);
  fflush(j);
  *val_at = len;
  fprintf(j, "\"ranks\": [");
  for (int r = 0; r < R; r++) {
    fprintf(j, "%s{\"rank\": %d, \"host\": ", r ? ", " : "", r);
    cg_json_put_str(j, s->names + (size_t)r * 2 * NAME_LEN); /* Linux allows '"' in one */
    fprintf(j, ", \"gpu\": ");
    cg_json_put_str(j, s->names + (size_t)r * 2 * NAME_LEN + NAME_LEN);
    fprintf(j, ", ");
    for (int i = 0; i < NFIG; i++) json_num(j, fig_key[i], *fig_at(&u->f[r], i), i < NFIG - 1);
    fprintf(j, "}");
  }
  fprintf(j, "], \"cluster\": {");
  json_num(j, "img_per_s", u->cluster_ips, 1);
  json_num(j, "median_own_ms", u->median, 1);
  const char *grp[3] = {"mean", "max", "imbalance"};
  const fig_t *gv[3] = {&u->mean, &u->max, &u->imb};
  for (int k = 0; k < 3; k++) {
    fprintf(j, "\"%s\": {", grp[k]);
    for (int i = 0; i < NFIG; i++)
      json_num(j, fig_key[i], *fig_at((fig_t *)gv[k], i), i < NFIG - 1);
    fprintf(j, "}, ");
  }
  if (u->straggler >= 0) fprintf(j, "\"straggler\": %d}}\n", u->straggler);
  else fprintf(j, "\"straggler\": null}}\n");
  fclose(j);
  return line;
}

double cg_stats_report(cg_stats_t *s, const cg_window_t *w, int64_t step, int64_t total,
                       int final, FILE *out, cg_cluster_t *cl) {
  const cg_comm_t *c = s->c;
  double mine[NF] = {(double)w->steps, w->wall, w->data_wait, w->comm_exposed, w->busy,
                     w->helper_busy, (double)w->helpers, w->cpu_share, (double)w->samples,
                     w->h2d_bytes, w->d2h_bytes, w->loss};
  if (s->timing) CG_CHECK_MPI(MPI_Barrier(c->world));
  const double t0 = MPI_Wtime();
  CG_CHECK_MPI(MPI_Allgather(mine, NF, MPI_DOUBLE, s->all, NF, MPI_DOUBLE, c->world));
  const double t_gather = MPI_Wtime() - t0;
  const int R = c->size;
  double loss = 0, steps = mine[F_STEPS] > 0 ? mine[F_STEPS] : 1;
  for (int r = 0; r < R; r++) loss += s->all[(size_t)r * NF + F_LOSS];
  loss /= steps;
  if (cl) cluster_means(s, cl);
  if (c->rank != 0) return loss;

  summary_t u;
  summarise(s, R, &u);
  if (cl) cl->straggler = u.straggler; /* rank 0 only: the others do not sort */
  if (out) {
    const table_t tb = {u.f, &u.mean, &u.max, &u.imb, u.straggler, u.median, step, total, final,
                        mine[F_STEPS], u.cluster_ips};
    print_table(s, &tb, out);
  }
  if (out && s->timing) { /* gather as measured above; format: the rank-0 work up to here */
    fprintf(out, "# stats timing: gather %.3f ms, format %.3f ms, %d rank(s)\n", 1e3 * t_gather,
            1e3 * (MPI_Wtime() - t0 - t_gather), R);
    fflush(out);
  }
  if (s->prom)
    write_prom(s, u.f, R, step, total, final, loss, u.cluster_ips, u.straggler, &u.imb);
  if (s->jsonl) {
    size_t val_at;
    char *line = jsonl_record(s, &u, R, step, total, final, mine[F_STEPS], loss, &val_at);
    free(s->held);
    s->held = line;
    s->held_at = val_at;
    if (!(final && s->hold_final)) cg_stats_flush_final(s);
  }
  free(u.f);
  return loss;
}

/* The latest validation, for cogpu-monitor. */
static void write_val(const cg_stats_t *s, FILE *j) {
  if (s->val[0] < 0) return;
  fprintf(j, "\"val\": {\"step\": %.0f, ", s->val[0]);
  json_num(j, "loss", s->val[1], 1);
  json_num(j, s->val[5] > 1 ? "miou" : "iou", s->val[2], 1);
  json_num(j, s->val[5] > 1 ? "mdice" : "dice", s->val[3], 1);
  json_num(j, "acc", s->val[4], s->val[5] > 1);
  if (s->val[5] > 1) json_num(j, "macc", s->val[6], 0);
  fprintf(j, "}, ");
}

void cg_stats_drop_final(cg_stats_t *s) {
  if (!s) return;
  free(s->held);
  s->held = NULL;
}

void cg_stats_hold_final(cg_stats_t *s) {
  if (s) s->hold_final = 1;
}

/* Writes one record to --stats-out: the held final one (with the latest validation) or a stop
 * record. --stats-out may be a FIFO whose reader has gone: SIGPIPE would end rank 0 and the job
 * (at a stop, before its checkpoint), so it is blocked here (and a pending one taken back), the
 * write fails with EPIPE, and the log is closed with a warning while training goes on. */
static void write_record(cg_stats_t *s, const char *stop_why, int64_t step, int64_t total) {
  sigset_t pipe, old, pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  sigpending(&pending);
  const int was_pending = sigismember(&pending, SIGPIPE) == 1;
  FILE *j = s->jsonl;
  if (stop_why) { /* one of the trainer's own words (a signal name...): nothing to escape */
    fprintf(j, "{\"final\": true, \"stopped\": \"%s\", \"step\": %lld, \"total_steps\": "
            "%lld, \"time\": %.3f}\n", stop_why, (long long)step, (long long)total,
            wall_now());
  } else {
    fwrite(s->held, 1, s->held_at, j);
    write_val(s, j);
    fputs(s->held + s->held_at, j);
  }
  const int bad = fflush(j) != 0 || ferror(j);
  const int e = errno;
  if (bad && e == EPIPE) {
    cg_log_warn("--stats-out: its reader has gone (%s): no more records are written to it",
                strerror(e));
    fclose(j); /* fails likewise: the reader is gone */
    s->jsonl = NULL;
  } else if (bad) {
    if (!s->lost++)
      cg_log_warn("--stats-out: a record could not be written (%s): the records are lost until "
                  "writes succeed again (each next record is tried); training goes on",
                  strerror(e));
    clearerr(j); /* a full disk: the next record tries again, as before */
  }
  sigpending(&pending);
  if (!was_pending && sigismember(&pending, SIGPIPE) == 1) {
    const struct timespec now = {0, 0};
    sigtimedwait(&pipe, NULL, &now);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cg_stats_stopped(cg_stats_t *s, int64_t step, int64_t total, const char *why) {
  if (s && s->jsonl) write_record(s, why, step, total);
}

void cg_stats_flush_final(cg_stats_t *s) {
  if (!s || !s->held || !s->jsonl) return;
  write_record(s, NULL, 0, 0);
  free(s->held);
  s->held = NULL;
}
