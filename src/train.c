/* train.c: the training loop, the same for every backend and rank count.
 *
 * Per step k: the backend runs step k (asynchronously on a GPU) while the host fetches the
 * results of step k-1 (loss, predicted mask -> confusion counts), takes batch k+1 from the
 * loader's helpers and uploads it. Batches stay held until their results are fetched, so the
 * loader ring has prefetch + 2 slots. Gradients are all-reduced inside train_step by buckets.
 *
 * Start-up problems with the user's input (an unwritable output path, a backend that cannot be
 * used) are agreed by all ranks and reported once by rank 0 with exit code 2. So is a bad
 * sample (source.h); one met later by a helper thread ends the job with exit code 2 from that
 * rank (loader.h), and --check-data finds them all before the first step (datacheck.h).
 *
 * Reliability (issue 6). At every step boundary the ranks agree, with one small all-reduce,
 * on whether any of them got a stop signal or saw a fatal step (NaN loss, too many fp16
 * skips); a stop drains the step in flight so that rank 0 checkpoints a state every rank has
 * finished and checked. Checkpoints are written with no step in flight (drained like the
 * reports), so writing them changes nothing in the numbers: a resumed run continues bit for
 * bit. Resume is read by rank 0 and broadcast (no shared file system needed); the position
 * rules for another global batch are in README.md and map_position(). Every 16 steps the
 * ranks exchange their last completed step for the watchdog's message (guard.h). */
#include "train.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "backend.h"
#include "ckpt.h"
#include "data.h"
#include "datacheck.h"
#include "guard.h"
#include "gsync.h"
#include "nccl_comm.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "source.h"
#include "split.h"
#include "stats.h"
#include "trace.h"
#include "nvtx.h"
#include "preflight.h"
#include "topo.h"

double cg_train_lr(const cg_config_t *cfg, int64_t t, int64_t total) {
  double lr = cfg->lr;
  if (t < cfg->warmup_steps) return lr * (double)(t + 1) / (double)cfg->warmup_steps;
  if (!strcmp(cfg->lr_schedule, "cosine") && total > cfg->warmup_steps) {
    double p = (double)(t - cfg->warmup_steps) / (double)(total - cfg->warmup_steps);
    return lr * 0.5 * (1.0 + cos(M_PI * p));
  }
  return lr;
}

/* 0 if path can be created/overwritten: its directory exists and is writable, and the file,
 * if present, is a writable regular file. Nothing is created. */
static int check_output_path(const char *flag, const char *path, char *err, size_t errlen) {
  if (!path[0]) return 0;
  char tmp[CG_PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  const char *dir = dirname(tmp);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: directory '%.200s' of '%.200s' does not exist", flag, dir, path);
    return -1;
  }
  if (access(dir, W_OK) != 0) {
    snprintf(err, errlen, "%s: directory '%.300s' is not writable (%s)", flag, dir, strerror(errno));
    return -1;
  }
  if (stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || access(path, W_OK) != 0)) {
    snprintf(err, errlen, "%s: '%.300s' exists and is not a writable file", flag, path);
    return -1;
  }
  return 0;
}

/* Rank 0's verdict on a start-up check, shared with every rank. */
static int agree(cg_comm_t *c, int rc, char *err, size_t errlen) {
  int len = (int)errlen;
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  if (rc) CG_CHECK_MPI(MPI_Bcast(err, len, MPI_CHAR, 0, c->world));
  return rc;
}

typedef struct {
  const cg_config_t *cfg;
  cg_comm_t *c;
  const cg_backend_ops_t *ops;
  cg_backend_t *be;
  const cg_model_t *m;
  int bar;  /* progress: 2 bar, 1 plain, 0 off */
  int slow; /* test-only: this rank sleeps per step */
  cg_split_t split;
  double busy_total; /* device busy seconds of every fetched step, for the split controller */
  const int *helper_cpus; /* core of each helper thread (-1 unpinned), or NULL */
  cg_precision_t prec;
  /* reliability */
  cg_guard_t *guard;
  cg_guard_health_t health; /* verdicts of this rank's fetched training steps */
  int64_t last_done;        /* last training step fetched here (1-based count) */
  int64_t *table;           /* last_done of every rank, as of the last exchange */
  float loss_scale;         /* as the last fetched step reported it */
  int64_t s0, opt_t0;       /* first step of this run; AdamW steps taken before it */
  int64_t spe, ntrain, total;
  const char *ckpt_dir;     /* NULL: no checkpoints */
  float *ck_m, *ck_v;       /* rank 0: host copies of the moments for writing (params: ck_p) */
  float *ck_p;
  char last_ckpt[CG_PATH_MAX + 64]; /* the last good checkpoint, written or loaded ("" none) */
  int64_t last_ckpt_step;   /* its step, -1 none */
  int64_t skipped0;         /* fp16 steps skipped before this run (from the checkpoint) */
  uint64_t run_id;          /* the lineage written into every checkpoint (ckpt.h) */
  cg_trace_t *trace; /* --trace-out, or NULL */
} run_t;

static void fmt_hms(double s, char *out, size_t len) {
  if (!(s >= 0) || s > 1e7) {
    snprintf(out, len, "--:--");
    return;
  }
  int t = (int)(s + 0.5);
  if (t >= 3600) snprintf(out, len, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  else snprintf(out, len, "%d:%02d", t / 60, t % 60);
}

static void progress(const run_t *r, int64_t step, int64_t total, double elapsed, double ips,
                     double loss, int final) {
  if (r->c->rank != 0 || r->bar == 0) return;
  char eta[32], el[32];
  const double done = (double)(step - r->s0); /* steps of this run (it may have resumed) */
  double rem = ips > 0 && done > 0 ? elapsed / done * (double)(total - step) : -1;
  fmt_hms(rem, eta, sizeof eta);
  fmt_hms(elapsed, el, sizeof el);
  if (r->bar == 2) {
    int width = 30, fill = total ? (int)((double)width * (double)step / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %lld/%lld steps  %.1f img/s  %s elapsed  ETA %s  loss %.4f ", bar,
            (long long)step, (long long)total, ips, el, eta, loss);
    if (final) fputc('\n', stderr);
    fflush(stderr);
  } else {
    printf("progress: step %lld/%lld (%.0f%%)  %.1f img/s  elapsed %s  ETA %s  loss %.4f\n",
           (long long)step, (long long)total, 100.0 * (double)step / (double)total, ips, el, eta,
           loss);
    fflush(stdout);
  }
}

/* What the host learns from each finished step. */
typedef struct {
  double loss;           /* sum of the steps' weighted local losses */
  double loss_samples;   /* sum of loss x global count: the local share of the sample-loss sum */
  double comm, busy;     /* seconds */
  double last_loss;
  int64_t samples;       /* global samples of the steps */
  int64_t local_samples; /* this rank's real samples */
  int64_t steps;
  int busy_measured;
  double h2d, d2h;       /* bytes */
  cg_confusion_t conf;
} acc_t;

#define SKIP_LOG_MAX 20

/* Rank 0 says so when the fp16 scaler skipped a step (every rank takes the same decision). */
static void report_skip(const run_t *r, int64_t step, float scale) {
  if (r->c->rank != 0 || r->health.skipped > SKIP_LOG_MAX) return;
  if (r->bar == 2) fputc('\n', stderr);
  printf("fp16: step %lld skipped (inf/NaN gradients): loss scale now %g, %lld step(s) skipped so "
         "far%s\n", (long long)step, (double)scale, (long long)(r->skipped0 + r->health.skipped),
         r->health.skipped == SKIP_LOG_MAX ? " (further skips are only counted)" : "");
  fflush(stdout);
}

/* Fetches the results of the oldest submitted step (whose host batch is pb), accounts them and
 * gives the batch back to the loader. train: a training step, judged by the step health. */
/* The backend's stream activity of a fetched step on the timeline. */
static void trace_streams(cg_trace_t *t, const cg_step_out_t *o) {
  if (!t) return;
  if (o->t_h2d[1] >= o->t_h2d[0] && o->t_h2d[0] > 0)
    cg_trace_event(t, CG_TRACK_H2D, "batch upload", o->t_h2d[0], o->t_h2d[1]);
  if (o->t_compute[1] >= o->t_compute[0] && o->t_compute[0] > 0)
    cg_trace_event(t, CG_TRACK_COMPUTE, "train step", o->t_compute[0],
                   o->t_compute[1]);
  for (int j = 0; j < o->ncomm && j < CG_MAX_BUCKETS; j++)
    if (o->t_comm[j][1] >= o->t_comm[j][0] && o->t_comm[j][0] > 0)
      cg_trace_event(t, CG_TRACK_COMM, "all-reduce", o->t_comm[j][0], o->t_comm[j][1]);
  if (o->t_d2h[1] >= o->t_d2h[0] && o->t_d2h[0] > 0)
    cg_trace_event(t, CG_TRACK_D2H, "results", o->t_d2h[0], o->t_d2h[1]);
}

static void collect(run_t *r, cg_loader_t *ld, cg_host_batch_t *pb, acc_t *a, int train) {
  cg_step_out_t out;
  double t_f0 = cg_now();
  cg_nvtx_push("results");
  r->ops->fetch(r->be, &out);
  cg_nvtx_pop();
  if (train) {
    cg_trace_event(r->trace, CG_TRACK_DRIVER, "wait for results", t_f0, cg_now());
    trace_streams(r->trace, &out);
  }
  int skipped = 0;
  if (train) {
    const int64_t step = pb->step + 1;
    skipped = cg_guard_health_step(&r->health, step, out.loss, out.skipped);
    r->last_done = step;
    cg_guard_done(r->guard, step);
    r->loss_scale = out.loss_scale;
    if (skipped) report_skip(r, step, out.loss_scale);
  }
  /* The loss of a skipped step may be inf/NaN: it would make the window's mean meaningless. */
  if (!skipped || isfinite(out.loss)) {
    a->loss += out.loss;
    a->loss_samples += out.loss * pb->global;
    a->last_loss = out.loss;
  }
  if (out.comm_wait_ms > 0) a->comm += 1e-3 * out.comm_wait_ms;
  if (out.busy_ms >= 0) {
    a->busy += 1e-3 * out.busy_ms;
    a->busy_measured = 1;
    r->busy_total += 1e-3 * out.busy_ms;
  }
  a->h2d += out.h2d_bytes;
  a->d2h += out.d2h_bytes;
  a->local_samples += pb->real;
  a->samples += pb->global;
  a->steps++;
  if (out.has_conf) { /* the device counted */
    cg_confusion_t cf = {out.conf[0], out.conf[1], out.conf[2], out.conf[3]};
    a->conf.tp += cf.tp;
    a->conf.fp += cf.fp;
    a->conf.fn += cf.fn;
    a->conf.tn += cf.tn;
  }
  /* Otherwise the helpers count pb->pred against its masks before reusing the slot. */
  cg_loader_release(ld, pb, !out.has_conf);
}

/* Adds the counts the helpers finished since the last call. */
static void take_conf(cg_loader_t *ld, acc_t *a) {
  cg_confusion_t cf;
  cg_loader_take_confusion(ld, &cf);
  a->conf.tp += cf.tp;
  a->conf.fp += cf.fp;
  a->conf.fn += cf.fn;
  a->conf.tn += cf.tn;
}

static void upload(run_t *r, int64_t k, const cg_host_batch_t *b) {
  cg_batch_t v = cg_host_batch_view(b, r->split.metrics_dev);
  r->ops->upload(r->be, (int)(k % CG_DEV_SLOTS), &v);
}

/* Batch-slot memory from the backend (pinned for the CUDA backend). */
static void *slot_alloc(size_t bytes, void *ctx) {
  return ((const cg_backend_ops_t *)ctx)->host_alloc(bytes);
}

static void slot_free(void *p, void *ctx) { ((const cg_backend_ops_t *)ctx)->host_free(p); }

typedef struct {
  double loss;
  cg_confusion_t conf;
} val_result_t;

/* One pass over the validation set on every rank; counts summed over ranks. */
static val_result_t validate(run_t *r, cg_source_t *val_src, int workers) {
  const cg_config_t *cfg = r->cfg;
  cg_loader_cfg_t lc = {0};
  lc.source = val_src;
  lc.nsamples = val_src->count;
  lc.ranks = r->c->size;
  lc.rank = r->c->rank;
  lc.batch = cfg->batch;
  lc.seed = cfg->seed;
  lc.shuffle = 0;
  lc.augment = 0;
  lc.skip_bad = cfg->skip_bad;
  lc.nfeat = CG_NFEAT;
  lc.cpu_count = r->split.k;
  lc.alloc = slot_alloc;
  lc.free = slot_free;
  lc.alloc_ctx = (void *)r->ops;
  lc.first_step = 0;
  lc.nsteps = -1; /* one epoch */
  lc.workers = workers;
  lc.nslots = cfg->prefetch + 2;
  lc.worker_cpus = r->helper_cpus;
  cg_loader_t *ld = cg_loader_create(&lc);
  acc_t a;
  memset(&a, 0, sizeof a);
  cg_host_batch_t *held[2] = {NULL, NULL};
  cg_host_batch_t *b = cg_loader_next(ld, NULL);
  int64_t k = 0;
  if (b) upload(r, 0, b);
  for (; b; k++) {
    cg_guard_beat(r->guard, r->last_done, "validation");
    r->ops->eval_step(r->be, (int)(k % CG_DEV_SLOTS));
    held[k % 2] = b;
    if (k >= 1) collect(r, ld, held[(k - 1) % 2], &a, 0);
    b = cg_loader_next(ld, NULL);
    if (b) upload(r, k + 1, b);
  }
  if (k >= 1) collect(r, ld, held[(k - 1) % 2], &a, 0);
  take_conf(ld, &a);
  const int64_t vbad = cg_loader_take_bad(ld);
  cg_loader_destroy(ld);
  val_result_t res;
  int64_t cnt[5] = {a.conf.tp, a.conf.fp, a.conf.fn, a.conf.tn, vbad};
  cg_comm_sum_i64(r->c, cnt, 5);
  if (cnt[4] && r->c->rank == 0)
    printf("--skip-bad: %lld sample load(s) skipped in validation\n", (long long)cnt[4]);
  res.conf = (cg_confusion_t){cnt[0], cnt[1], cnt[2], cnt[3]};
  /* The last global batch may be short: weight each step's mean by its global count. */
  cg_comm_sum_f64(r->c, &a.loss_samples, 1);
  res.loss = val_src->count ? a.loss_samples / (double)val_src->count : 0;
  return res;
}

/* ---- reliability: the step agreement, checkpoints and resume ------------------------------ */

/* What the ranks agreed at a step boundary. */
typedef struct {
  int sig, sig_rank;  /* a stop signal and the lowest rank that got one; 0 none */
  cg_bad_t bad;       /* the earliest fatal step over the ranks (lowest rank first) */
  int64_t bad_step;
  int bad_rank;
} verdict_t;

/* Packing of the verdicts into the int64 maximum: rank < 2^20, step < 2^41. */
#define RANK_BITS 20
#define TABLE_EVERY 16

/* "0:60 1:60 2:59" from the table, for messages. */
static void fmt_table(const run_t *r, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < r->c->size && k + 32 < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%d:%lld", i ? " " : "", i, (long long)r->table[i]);
}

/* A failed collective at a step boundary most likely means a peer died: say where we were. */
static void check_peer(const run_t *r, int rc, const char *call, int64_t step) {
  if (rc == MPI_SUCCESS) return;
  char es[MPI_MAX_ERROR_STRING], tab[1024];
  int len = 0;
  if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "MPI error %d", rc);
  fmt_table(r, tab, sizeof tab);
  cg_fatal(__FILE__, __LINE__, call,
           "%s after step %lld (a peer rank has probably died); last completed step of each rank "
           "as last known here (rank:step): %s", es, (long long)step, tab);
}
#define CHECK_PEER(r, step, call) check_peer((r), (call), #call, (step))

/* The one small all-reduce of every step boundary. */
static verdict_t agree_step(run_t *r, int64_t step) {
  const cg_comm_t *c = r->c;
  const int sig = cg_guard_signal(r->guard);
  int64_t v[2];
  /* max of (size - rank) picks the lowest rank; max of -key the earliest bad step */
  v[0] = sig ? ((int64_t)(c->size - c->rank) << 8) | (sig & 0xff) : 0;
  v[1] = r->health.bad ? -((r->health.bad_step << (RANK_BITS + 2)) | ((int64_t)c->rank << 2) |
                           (int64_t)r->health.bad)
                       : INT64_MIN;
  CHECK_PEER(r, step, MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, c->world));
  verdict_t vd;
  memset(&vd, 0, sizeof vd);
  if (v[0]) {
    vd.sig = (int)(v[0] & 0xff);
    vd.sig_rank = c->size - (int)(v[0] >> 8);
  }
  if (v[1] != INT64_MIN) {
    const int64_t key = -v[1];
    vd.bad = (cg_bad_t)(key & 3);
    vd.bad_rank = (int)((key >> 2) & ((1 << RANK_BITS) - 1));
    vd.bad_step = key >> (RANK_BITS + 2);
  }
  return vd;
}

/* Every rank's last completed step, for the watchdog's message. */
static void exchange_table(run_t *r, int64_t step) {
  CHECK_PEER(r, step, MPI_Allgather(&r->last_done, 1, MPI_INT64_T, r->table, 1, MPI_INT64_T,
                                    r->c->world));
  cg_guard_set_table(r->guard, r->table);
}

static void describe_last(const run_t *r, char *buf, size_t len) {
  if (r->last_ckpt[0])
    snprintf(buf, len, "%s (step %lld)", r->last_ckpt, (long long)r->last_ckpt_step);
  else if (r->ckpt_dir)
    snprintf(buf, len, "none (nothing written to %s yet)", r->ckpt_dir);
  else
    snprintf(buf, len, "none (no --checkpoint-dir)");
}

static cg_ckpt_shape_t shape_of(const cg_model_t *m) {
  cg_ckpt_shape_t s = {m->in_c, m->base, m->depth, m->height, m->width, (uint64_t)m->nparams};
  return s;
}

/* A run that does not resume must not start in a directory holding another run's checkpoints:
 * its checkpoints would mix with (and, with the same step numbers, replace) the earlier run's.
 * 0, or -1 naming the directory, its newest checkpoint and the ways out. */
static int check_no_checkpoints(const char *dir, char *err, size_t errlen) {
  char **paths;
  int64_t *steps;
  int n;
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, errlen) != 0) return -1;
  if (n > 0)
    snprintf(err, errlen, "--checkpoint-dir %s already holds %d checkpoint(s), the newest %s "
             "(step %lld): continue that run with --resume, or choose another --checkpoint-dir, "
             "or start afresh there with --overwrite-checkpoints (the earlier run's checkpoints "
             "are never rotated away, but one of the same step is replaced)", dir, n, paths[0],
             (long long)steps[0]);
  cg_ckpt_list_free(paths, steps, n);
  return n > 0 ? -1 : 0;
}

/* Rank 0 writes the checkpoint of `step` (every step up to it fetched and judged good). Returns
 * 0, or -1 after printing why (the previous checkpoint is intact). Other ranks return 0 at once
 * and go on to the next step, where they wait for rank 0 in the gradient all-reduce. */
static int write_ckpt(run_t *r, int64_t step, int quiet) {
  if (r->c->rank != 0) return 0;
  const cg_config_t *cfg = r->cfg;
  cg_guard_beat(r->guard, step, "writing a checkpoint");
  const double t0 = cg_now();
  cg_ckpt_info_t in;
  memset(&in, 0, sizeof in);
  in.shape = shape_of(r->m);
  in.precision = (int)r->prec;
  in.step = step;
  in.steps_per_epoch = r->spe;
  in.epoch = step / r->spe;
  in.epoch_samples = (step % r->spe) * (int64_t)r->c->size * cfg->batch;
  in.train_samples = r->ntrain;
  in.ranks = r->c->size;
  in.batch = cfg->batch;
  in.seed = cfg->seed;
  in.opt_t = r->opt_t0 + (step - r->s0);
  in.total_steps = r->total;
  r->ops->get_params(r->be, r->ck_p);
  r->ops->get_opt_state(r->be, r->ck_m, r->ck_v, &in.loss_scale, &in.scale_good_steps);
  in.skipped_steps = r->skipped0 + r->health.skipped;
  in.lr = step > 0 ? cg_train_lr(cfg, step - 1, r->total) : cfg->lr;
  in.unix_time = (int64_t)time(NULL);
  in.run_id = r->run_id;
  char path[CG_PATH_MAX + 64], err[1400];
  if (cg_ckpt_write(r->ckpt_dir, &in, r->ck_p, r->ck_m, r->ck_v, cfg->keep, path, sizeof path,
                    err, sizeof err)) {
    char last[CG_PATH_MAX + 96];
    describe_last(r, last, sizeof last);
    if (r->bar == 2) fputc('\n', stderr);
    fprintf(stderr, "cogpu-dist: error: checkpoint of step %lld not written: %s; the last good "
            "checkpoint is %s\n", (long long)step, err, last);
    fflush(stderr);
    return -1;
  }
  snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", path);
  r->last_ckpt_step = step;
  if (!quiet) {
    if (r->bar == 2) fputc('\n', stderr);
    printf("checkpoint: step %lld -> %s (%.1f MB, %.2f s)\n", (long long)step, path,
           (double)(CG_CKPT_HEADER_BYTES + 12 * r->m->nparams) / 1e6, cg_now() - t0);
    fflush(stdout);
  }
  return 0;
}

static void bcast_floats(const cg_comm_t *c, float *p, size_t n) {
  const size_t chunk = (size_t)1 << 28; /* MPI counts are int */
  for (size_t off = 0; off < n; off += chunk) {
    int k = (int)(n - off < chunk ? n - off : chunk);
    CG_CHECK_MPI(MPI_Bcast(p + off, k, MPI_FLOAT, 0, c->world));
  }
}

static void warn_line(void *ctx, const char *line) {
  (void)ctx;
  cg_log_warn("%s", line);
}

/* --resume: rank 0 finds and verifies the checkpoint, every rank receives it. Returns 0 (info,
 * params, m, v filled; path on rank 0), 1 when the directory holds no checkpoint (a fresh
 * start), or -1 with err for rank 0 to report (agreed: every rank returns it). */
static int resume_load(const cg_config_t *cfg, const cg_comm_t *c, const cg_model_t *model,
                       cg_ckpt_info_t *info, float *params, float *m, float *v, char *path,
                       size_t pathlen, char *err, size_t errlen) {
  int rc = 0;
  if (c->rank == 0) {
    const cg_ckpt_shape_t want = shape_of(model);
    const int latest = !strcmp(cfg->resume, CG_RESUME_LATEST);
    const char *src = latest ? cfg->checkpoint_dir : cfg->resume;
    struct stat st;
    if (latest || (stat(src, &st) == 0 && S_ISDIR(st.st_mode))) {
      rc = cg_ckpt_find(src, &want, info, params, m, v, path, pathlen, warn_line, NULL, err,
                        errlen);
      if (rc < 0) {
        size_t k = strlen(err);
        snprintf(err + k, errlen - k, " (--resume: see the messages above; `cogpu-dist inspect "
                 "%s` lists them)", src);
      }
    } else {
      cg_ckpt_status_t s = cg_ckpt_read(src, &want, info, params, m, v, err, errlen);
      if (s != CG_CKPT_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "--resume: %s", why);
        rc = -1;
      } else {
        snprintf(path, pathlen, "%s", src);
      }
    }
  }
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  if (rc < 0) {
    CG_CHECK_MPI(MPI_Bcast(err, (int)errlen, MPI_CHAR, 0, c->world));
    return -1;
  }
  if (rc == 1) return 1;
  CG_CHECK_MPI(MPI_Bcast(info, (int)sizeof *info, MPI_BYTE, 0, c->world));
  bcast_floats(c, params, model->nparams);
  bcast_floats(c, m, model->nparams);
  bcast_floats(c, v, model->nparams);
  return 0;
}

/* Where a resumed run starts (0-based step = steps completed). The checkpoint says how far into
 * its epoch training had got: epoch_samples samples of the epoch's permutation, which depends
 * on (seed, epoch) only. With the same global batch and training set that is exactly step
 * info->step. Otherwise the run continues in the same epoch at the first batch of the new size
 * that was not fully trained: batch floor(epoch_samples / new global batch). Its first samples
 * (fewer than one batch) are trained a second time; nothing is skipped. A training set that
 * shrank below the position moves on to the next epoch. Steps (--steps, the schedule, reports)
 * count batches of the new size from then on. */
static int64_t map_position(const cg_ckpt_info_t *in, int64_t ntrain, int64_t global,
                            int64_t spe, int *exact) {
  *exact = (int64_t)in->ranks * in->batch == global && in->train_samples == ntrain;
  if (*exact) return in->step;
  int64_t epoch = in->epoch, seen = in->epoch_samples;
  if (seen >= ntrain) {
    epoch++;
    seen = 0;
  }
  return epoch * spe + seen / global;
}

/* The end of a run stopped at a step boundary (every step up to `step` fetched). A stop signal:
 * rank 0 checkpoints that state and everyone exits 0 (128 + signal when there is nowhere to
 * save it, 1 when the write failed). A fatal step: nothing is written, so the last good
 * checkpoint stays the newest, and the job fails. Returns rank 0's exit code (the caller
 * broadcasts it). */
static int stop_run(run_t *r, const verdict_t *vd, int64_t step) {
  const int root = r->c->rank == 0;
  char last[CG_PATH_MAX + 96];
  if (root && r->bar == 2) fputc('\n', stderr);
  if (vd->bad) {
    if (root) {
      describe_last(r, last, sizeof last);
      if (vd->bad == CG_BAD_NAN)
        fprintf(stderr, "cogpu-dist: error: NaN/Inf loss at step %lld (rank %d; %s has no loss "
                "scaling to absorb it): training stopped after step %lld without saving this "
                "state; the last good checkpoint is %s\n", (long long)vd->bad_step, vd->bad_rank,
                cg_precision_name(r->prec), (long long)step, last);
      else
        fprintf(stderr, "cogpu-dist: error: more than %lld consecutive fp16 steps skipped for "
                "inf/NaN gradients (the last at step %lld, loss scale %g): training stopped after "
                "step %lld without saving this state; the last good checkpoint is %s\n",
                (long long)r->cfg->max_bad_steps, (long long)vd->bad_step, (double)r->loss_scale,
                (long long)step, last);
      fflush(stderr);
    }
    return 1;
  }
  const char *name = cg_guard_signal_name(vd->sig);
  int code = 128 + vd->sig;
  if (r->ckpt_dir) {
    int ok = r->last_ckpt_step == step || write_ckpt(r, step, 1) == 0;
    code = ok ? 0 : 1;
    if (root && ok)
      printf("stopped by %s (rank %d) after step %lld of %lld: checkpoint %s written; continue "
             "with --resume\n", name, vd->sig_rank, (long long)step, (long long)r->total,
             r->last_ckpt);
    else if (root) {
      describe_last(r, last, sizeof last);
      fprintf(stderr, "cogpu-dist: error: stopped by %s (rank %d) after step %lld of %lld, but "
              "its checkpoint could not be written (above); the last good checkpoint is %s\n",
              name, vd->sig_rank, (long long)step, (long long)r->total, last);
    }
  } else if (root) {
    printf("stopped by %s (rank %d) after step %lld of %lld; no --checkpoint-dir, so nothing was "
           "saved\n", name, vd->sig_rank, (long long)step, (long long)r->total);
  }
  fflush(stdout);
  fflush(stderr);
  return code;
}

/* The train/val views first, then the sources they borrow. */
static void destroy_sources(cg_source_t *base, cg_source_t *val_base, cg_source_t *train,
                            cg_source_t *val) {
  if (train != base) cg_source_destroy(train);
  if (val != val_base) cg_source_destroy(val);
  cg_source_destroy(val_base);
  cg_source_destroy(base);
}

/* Backend selection, agreed over ranks. Returns 0 or -1 with err. */
static int choose_backend(const cg_config_t *cfg, cg_comm_t *c, const cg_backend_ops_t **ops,
                          cg_precision_t *prec, char *err, size_t errlen) {
  int want_cuda = !strcmp(cfg->backend, "cuda"), want_cpu = !strcmp(cfg->backend, "cpu");
  int usable = 0;
  char why[256] = "built without CUDA";
#ifdef COGPU_HAVE_CUDA
  if (!want_cpu) usable = cg_cuda_usable(why, sizeof why);
#endif
  int all_usable = usable;
  CG_CHECK_MPI(MPI_Allreduce(&usable, &all_usable, 1, MPI_INT, MPI_MIN, c->world));
  if (want_cuda && !all_usable) {
    snprintf(err, errlen, "--backend cuda: no usable GPU%s (%s)", usable ? " on some rank" : "",
             why);
    return -1;
  }
  int use_cuda = !want_cpu && all_usable;
  if (!strcmp(cfg->backend, "auto") && c->rank == 0) {
    if (use_cuda) printf("backend: cuda (auto: a GPU is usable on every rank)\n");
    else printf("backend: cpu (auto: no usable GPU: %s)\n", why);
  }
#ifdef COGPU_HAVE_CUDA
  *ops = use_cuda ? &cg_backend_cuda : &cg_backend_cpu;
#else
  *ops = &cg_backend_cpu;
#endif
  if (!strcmp(cfg->precision, "auto")) *prec = use_cuda ? CG_PREC_BF16 : CG_PREC_FP32;
  else if (!strcmp(cfg->precision, "bf16")) *prec = CG_PREC_BF16;
  else if (!strcmp(cfg->precision, "fp16")) *prec = CG_PREC_FP16;
  else *prec = CG_PREC_FP32;
  if (!use_cuda && *prec != CG_PREC_FP32) {
    snprintf(err, errlen, "--precision %s needs a GPU (the cpu backend computes in fp32)",
             cg_precision_name(*prec));
    return -1;
  }
  return 0;
}

static int run_train(const cg_config_t *cfg, cg_comm_t *c, cg_train_result_t *res,
                     cg_guard_t *guard) {
  char err[2048] = "";
  double t_begin = cg_now();
  /* ---- start-up checks, agreed over ranks ---- */
  int rc = 0;
  if (c->rank == 0) {
    rc = check_output_path("--metrics-out", cfg->metrics_out, err, sizeof err);
    if (!rc) rc = check_output_path("--params-out", cfg->params_out, err, sizeof err);
    if (!rc) rc = check_output_path("--stats-out", cfg->stats_out, err, sizeof err);
    if (!rc) rc = check_output_path("--prom-out", cfg->prom_out, err, sizeof err);
    if (!rc && cfg->trace_out[0]) {
      char probe[CG_PATH_MAX + 32];
      snprintf(probe, sizeof probe, "%s.rank0.json", cfg->trace_out);
      rc = check_output_path("--trace-out", probe, err, sizeof err);
    }
    if (!rc && cfg->checkpoint_dir[0])
      rc = cg_ckpt_prepare_dir(cfg->checkpoint_dir, err, sizeof err);
    if (!rc && cfg->checkpoint_dir[0] && !cfg->resume[0] && !cfg->overwrite_checkpoints)
      rc = check_no_checkpoints(cfg->checkpoint_dir, err, sizeof err);
  }
  if (agree(c, rc, err, sizeof err)) goto usage;
  const cg_backend_ops_t *ops = NULL;
  cg_precision_t prec;
  if (choose_backend(cfg, c, &ops, &prec, err, sizeof err)) goto usage;

  cg_model_t model;
  if (cg_model_build(&model, 3 + CG_NFEAT, cfg->model_base, cfg->model_depth, cfg->image_size,
                     cfg->image_size, err, sizeof err))
    goto usage;

  /* ---- placement: this rank's cores ---- */
  int is_cuda = ops != &cg_backend_cpu;
  cg_topo_t *topo = cg_topo_create(c, is_cuda ? CG_TOPO_GPU_AUTO : CG_TOPO_GPU_NONE);
  const cg_topo_plan_t *place = cg_topo_plan(topo);
  /* Threads started from here on (OpenMP, CUDA, NCCL) inherit the rank's cores. Cores shared
   * with other ranks stay unpinned: the OS balances oversubscribed ranks better. */
  if (!place->shared) cg_topo_pin_thread(topo, -1);
  int threads = cfg->threads > 0 ? cfg->threads : place->ncpus;
  /* The cpu backend's compute uses every core; one helper suffices for its small batches. The
   * CUDA backend drives the GPU from one core and gives the rest to the helpers. */
  int workers = cfg->cpu_workers >= 0 ? cfg->cpu_workers
                                      : (is_cuda ? (place->ncpus > 1 ? place->ncpus - 1 : 1) : 1);

  /* ---- pre-flight: will the model and its batches fit? (before anything large is allocated) */
  {
    const cg_preflight_t est = cg_preflight_estimate(&model, cfg->batch, cfg->prefetch, is_cuda,
                                                     prec == CG_PREC_FP32 ? 4 : 2);
    const int dev = place->gpu >= 0 ? place->gpu : c->local_rank;
    const int bad = cg_preflight_check(&est, is_cuda, dev, c->local_size, err, sizeof err);
    if (cg_comm_report_errors(c, bad ? err : NULL)) {
      cg_topo_destroy(topo);
      return CG_EXIT_USAGE;
    }
  }

  /* ---- data ---- */
  cg_source_t *base_src = NULL, *train_src = NULL, *val_src = NULL, *val_base = NULL;
  int synthetic = !strcmp(cfg->data, "synthetic");
  if (synthetic) {
    train_src = cg_source_synthetic(cfg->seed, 0, cfg->train_samples, cfg->image_size,
                                    cfg->image_size);
    if (cfg->val_samples)
      val_src = cg_source_synthetic(cfg->seed, cfg->train_samples, cfg->val_samples,
                                    cfg->image_size, cfg->image_size);
  } else {
    /* Every rank opens the files itself (they are checked at open); agree on the verdict. */
    const cg_source_opts_t so = {.size = cfg->image_size, .max_pixels = cfg->max_image_pixels,
                                 .skip_bad = cfg->skip_bad, .bad_hint = CG_BAD_SAMPLE_HINT,
                                 .seed = cfg->seed};
    base_src = cg_source_open_opts(cfg->data, &so, err, sizeof err);
    rc = base_src ? 0 : -1;
    if (!rc && cfg->val_data[0]) {
      val_base = cg_source_open_opts(cfg->val_data, &so, err, sizeof err);
      rc = val_base ? 0 : -1;
    }
    /* samples left out at open; --check-data (collective: only when every rank opened) */
    if (!cg_comm_any(c, rc != 0))
      rc = cg_datacheck_run(&base_src, &val_base, c, place->ncpus, cfg->check_data, cfg->skip_bad,
                            err, sizeof err);
    if (!rc && cfg->val_data[0]) {
      train_src = base_src;
      val_src = val_base;
    } else if (!rc && cfg->val_fraction > 0) {
      rc = cg_source_split(base_src, cfg->val_fraction, &train_src, &val_src, err, sizeof err);
    } else if (!rc) {
      train_src = base_src;
    }
    if (cg_comm_report_errors(c, rc ? err : NULL)) { /* once per distinct message */
      destroy_sources(base_src, val_base, train_src, val_src);
      cg_topo_destroy(topo);
      CG_CHECK_MPI(MPI_Barrier(c->world));
      return CG_EXIT_USAGE;
    }
  }
  int64_t ntrain = train_src->count, nval = val_src ? val_src->count : 0;
  int64_t spe;
  {
    cg_sampler_t s;
    cg_sampler_init(&s, ntrain, c->size, c->rank, cfg->batch, cfg->seed);
    spe = cg_sampler_steps_per_epoch(&s);
    cg_sampler_free(&s);
  }
  int64_t total = cfg->steps > 0 ? cfg->steps : cfg->epochs * spe;
  const int64_t global = (int64_t)c->size * cfg->batch;

  /* ---- resume: rank 0 reads the checkpoint, every rank receives it ---- */
  float *params = cg_malloc(sizeof(float) * model.nparams, "initial parameters");
  float *adam_m = NULL, *adam_v = NULL;
  cg_ckpt_info_t ck;
  memset(&ck, 0, sizeof ck);
  char ck_path[CG_PATH_MAX + 64] = "";
  int resumed = 0, exact = 1;
  int64_t s0 = 0;
  if (cfg->resume[0]) {
    adam_m = cg_malloc(sizeof(float) * model.nparams, "AdamW m from the checkpoint");
    adam_v = cg_malloc(sizeof(float) * model.nparams, "AdamW v from the checkpoint");
    int rr = resume_load(cfg, c, &model, &ck, params, adam_m, adam_v, ck_path, sizeof ck_path,
                         err, sizeof err);
    if (rr < 0) {
      free(params);
      free(adam_m);
      free(adam_v);
      destroy_sources(base_src, val_base, train_src, val_src);
      cg_topo_destroy(topo);
      goto usage;
    }
    if (rr == 0) {
      resumed = 1;
      s0 = map_position(&ck, ntrain, global, spe, &exact);
    } else if (c->rank == 0) {
      printf("resume: %s holds no checkpoint yet: starting at step 0\n",
             !strcmp(cfg->resume, CG_RESUME_LATEST) ? cfg->checkpoint_dir : cfg->resume);
    }
  }

  /* ---- backend ---- */
  cg_buckets_t buckets;
  cg_buckets_plan(&model, cfg->bucket_mb * 1e6, &buckets);
  cg_gsync_t *gs = cg_gsync_create(c->world, buckets.n, buckets.off, buckets.len, cfg->deterministic);
  cg_backend_cfg_t bc = {0};
  bc.batch = cfg->batch;
  bc.precision = prec;
  bc.threads = threads;
  bc.device = place->gpu >= 0 ? place->gpu : c->local_rank;
  bc.deterministic = cfg->deterministic;
  bc.cuda_graph = cfg->cuda_graph;
  bc.tf32 = strcmp(cfg->tf32, "off") != 0; /* auto = on, as PyTorch */
  bc.algo_cache = cfg->algo_cache[0] ? cfg->algo_cache : NULL;
  bc.buckets = &buckets;
  bc.gsync = c->size > 1 ? gs : NULL;
  /* the backend counts its own train steps from 0: --test-nan-step is 1-based and global */
  bc.fault_nan_step = cfg->test_nan_step > s0 ? cfg->test_nan_step - 1 - s0 : -1;
  long long tr_a = 1, tr_b = -1;
  sscanf(cfg->trace_steps, "%lld:%lld", &tr_a, &tr_b);
  cg_trace_t *trace = cg_trace_create(cfg->trace_out, c->rank, c->host, tr_a, tr_b);
  bc.trace = trace != NULL;
  /* Gradient all-reduce: NCCL or MPI (--allreduce; nccl_comm.h says how auto chooses). */
  char arnote[320] = "";
  int use_nccl = cg_nccl_choose(c, cfg->allreduce, is_cuda, bc.device, cfg->deterministic, arnote,
                                sizeof arnote, err, sizeof err);
  cg_nccl_t *nccl = use_nccl > 0 ? cg_nccl_create(c->world, bc.device, err, sizeof err) : NULL;
  if (use_nccl < 0 || (use_nccl > 0 && !nccl)) { /* every rank agrees: both are collective */
    free(params);
    free(adam_m);
    free(adam_v);
    cg_gsync_destroy(gs);
    destroy_sources(base_src, val_base, train_src, val_src);
    cg_topo_destroy(topo);
    cg_trace_close(trace);
    goto usage;
  }
  if (c->rank == 0 && arnote[0]) printf("allreduce: %s\n", arnote);
  bc.nccl = nccl;
  if (nccl) bc.gsync = NULL;
  cg_backend_t *be = NULL;
  rc = ops->create(&model, &bc, &be, err, sizeof err);
  if (cg_comm_any(c, rc != 0)) {
    /* A backend that fails on one rank fails the job: say which. */
    if (rc) cg_log_info("backend %s: %s", ops->name, err);
    CG_CHECK_MPI(MPI_Barrier(c->world));
    free(params);
    free(adam_m);
    free(adam_v);
    ops->destroy(be);
    cg_nccl_destroy(nccl);
    cg_gsync_destroy(gs);
    destroy_sources(base_src, val_base, train_src, val_src);
    if (c->rank == 0) fprintf(stderr, "cogpu-dist: error: could not start the %s backend\n", ops->name);
    cg_topo_destroy(topo);
    cg_trace_close(trace);
    return 1;
  }
  cg_guard_watch_nccl(guard, nccl);
  if (resumed) {
    ops->set_params(be, params);
    /* Another precision's scale (1) means nothing to an fp16 scaler: 0 keeps its initial one. */
    const int same = ck.precision == (int)prec;
    ops->set_opt_state(be, adam_m, adam_v, same ? ck.loss_scale : 0.0f,
                       same ? ck.scale_good_steps : 0);
  } else {
    cg_model_init_params(&model, cfg->seed, params);
    ops->set_params(be, params);
  }

  run_t r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  r.c = c;
  r.ops = ops;
  r.be = be;
  r.m = &model;
  r.slow = cfg->test_slow_rank == c->rank && cfg->test_slow_ms > 0;
  r.trace = trace;
  r.prec = prec;
  r.guard = guard;
  cg_guard_health_init(&r.health, prec == CG_PREC_FP16, cfg->max_bad_steps);
  r.last_done = s0;
  r.table = cg_malloc(sizeof(int64_t) * (size_t)c->size, "step table");
  for (int i = 0; i < c->size; i++) r.table[i] = s0;
  cg_guard_set_table(guard, r.table);
  r.loss_scale = resumed ? ck.loss_scale : 1.0f;
  r.s0 = s0;
  r.opt_t0 = resumed ? ck.opt_t : 0;
  r.spe = spe;
  r.ntrain = ntrain;
  r.total = total;
  r.skipped0 = resumed ? ck.skipped_steps : 0;
  /* a resumed run continues its lineage; a fresh one (or one resumed from a checkpoint made
   * before run ids) starts a new one: rotation never touches another run's checkpoints */
  r.run_id = resumed && ck.run_id ? ck.run_id : cg_ckpt_new_run_id();
  r.last_ckpt_step = -1;
  if (resumed) {
    snprintf(r.last_ckpt, sizeof r.last_ckpt, "%s", ck_path);
    r.last_ckpt_step = ck.step;
  }
  if (cfg->checkpoint_dir[0]) {
    r.ckpt_dir = cfg->checkpoint_dir;
    if (c->rank == 0) { /* the writer's host copies: the run's own buffers where it has them */
      r.ck_p = params;
      r.ck_m = adam_m ? adam_m : cg_malloc(sizeof(float) * model.nparams, "checkpoint AdamW m");
      r.ck_v = adam_v ? adam_v : cg_malloc(sizeof(float) * model.nparams, "checkpoint AdamW v");
      adam_m = adam_v = NULL; /* owned by r now */
    }
  }
  free(adam_m);
  free(adam_v);
  adam_m = adam_v = NULL;
  cg_split_init(&r.split,
                 !strcmp(cfg->split, "cpu") ? CG_SPLIT_CPU
                 : !strcmp(cfg->split, "gpu") ? CG_SPLIT_GPU : CG_SPLIT_AUTO,
                 cfg->batch);
  char gpu_name[48] = "-";
  if (is_cuda) snprintf(gpu_name, sizeof gpu_name, "%d:%s", place->gpu, place->gpu_pci);
  cg_stats_t *stats = cg_stats_create(c, gpu_name, is_cuda,
                                      cfg->stats_out[0] ? cfg->stats_out : NULL);
  cg_stats_set_prom(stats, cfg->prom_out);
  int tty = isatty(STDERR_FILENO);
  if (!strcmp(cfg->progress, "bar") || (!strcmp(cfg->progress, "auto") && tty)) r.bar = 2;
  else if (!strcmp(cfg->progress, "off")) r.bar = 0;
  else r.bar = 1;

  if (c->rank == 0) {
    printf("cogpu-dist train: %d rank(s) on %d node(s), backend %s, precision %s%s\n", c->size,
           c->nnodes, ops->name, cg_precision_name(prec),
           !is_cuda || prec != CG_PREC_FP32 ? ""
           : strcmp(cfg->tf32, "off") ? " (convolutions in TF32, as PyTorch's default; --tf32 off "
                                        "for strict fp32)"
                                      : " (strict: no TF32)");
    printf("model: UNet in %d, base %d, depth %d, %dx%d, %zu parameters\n", model.in_c,
           model.base, model.depth, model.height, model.width, model.nparams);
    printf("data: %s, %lld training / %lld validation samples; batch %d per rank, global %d; "
           "%lld steps (%lld per epoch)\n",
           cfg->data, (long long)ntrain, (long long)nval, cfg->batch, cfg->batch * c->size,
           (long long)total, (long long)spe);
    printf("rank 0: %d compute thread(s), %d helper thread(s), %d gradient bucket(s)\n", threads,
           workers, buckets.n);
    if (resumed) {
      printf("resumed from %s: step %lld (epoch %lld, %lld of its %lld samples trained), AdamW t "
             "%lld, loss scale %g\n", ck_path, (long long)ck.step, (long long)ck.epoch,
             (long long)ck.epoch_samples, (long long)ck.train_samples, (long long)ck.opt_t,
             (double)ck.loss_scale);
      if (!exact)
        printf("resume: global batch %lld (%d x %d) and %lld training samples -> global batch "
               "%lld (%d x %d) and %lld samples: continuing at step %lld (epoch %lld, batch %lld "
               "of %lld), the first batch of the new size not fully trained in that epoch; up to "
               "%lld of its samples are trained a second time; steps count batches of %lld from "
               "here\n",
               (long long)ck.ranks * ck.batch, ck.ranks, ck.batch, (long long)ck.train_samples,
               (long long)global, c->size, cfg->batch, (long long)ntrain, (long long)s0,
               (long long)(s0 / spe), (long long)(s0 % spe + 1), (long long)spe,
               (long long)(global - 1), (long long)global);
      if (ck.seed != cfg->seed)
        cg_log_warn("resume: the checkpoint was written with --seed %llu, this run has --seed "
                    "%llu: the sample order from here on follows %llu",
                    (unsigned long long)ck.seed, (unsigned long long)cfg->seed,
                    (unsigned long long)cfg->seed);
      if (s0 >= total)
        printf("resume: step %lld already reaches this run's %lld steps: nothing to train\n",
               (long long)s0, (long long)total);
    }
    fflush(stdout);
  }
  cg_topo_report(topo, c, stdout);
  /* CUDA: the driving thread keeps core 0, helpers take the others one each. */
  if (is_cuda && !place->shared) cg_topo_pin_thread(topo, 0);
  int *helper_cpus = cg_malloc(sizeof(int) * (size_t)(workers > 0 ? workers : 1), "helper cpus");
  for (int i = 0; i < workers; i++)
    helper_cpus[i] = !is_cuda || place->shared ? -1
                     : place->ncpus > 1       ? place->cpus[1 + i % (place->ncpus - 1)]
                                              : place->cpus[0];
  r.helper_cpus = helper_cpus;

  /* ---- the loop ---- */
  cg_loader_cfg_t lc = {0};
  lc.source = train_src;
  lc.nsamples = ntrain;
  lc.ranks = c->size;
  lc.rank = c->rank;
  lc.batch = cfg->batch;
  lc.seed = cfg->seed;
  lc.shuffle = 1;
  lc.augment = 1;
  lc.crop = !synthetic && cfg->crop;
  lc.skip_bad = cfg->skip_bad;
  lc.nfeat = CG_NFEAT;
  lc.first_step = s0; /* a resumed run continues the same sample order */
  lc.nsteps = total > s0 ? total - s0 : 0;
  lc.workers = workers;
  lc.nslots = cfg->prefetch + 2;
  lc.worker_cpus = helper_cpus;
  lc.cpu_count = r.split.k;
  lc.test_feat_ms = cfg->test_feat_ms;
  lc.trace = r.trace;
  lc.alloc = slot_alloc;
  lc.free = slot_free;
  lc.alloc_ctx = (void *)ops;
  cg_loader_t *ld = cg_loader_create(&lc);

  acc_t total_acc, win;
  memset(&total_acc, 0, sizeof total_acc);
  memset(&win, 0, sizeof win);
  double win_wall = 0, win_wait = 0, last_window_loss = NAN, win_share = 0;
  double ctl_wall = 0, ctl_wait = 0, ctl_busy0 = 0, ctl_steps = 0;
  cg_cluster_t last_cluster; /* the last report window: steady state for cg_train_result_t */
  memset(&last_cluster, 0, sizeof last_cluster);
  double t_train0 = cg_now(), t_prev = t_train0, train_time = 0;
  val_result_t val;
  memset(&val, 0, sizeof val);
  int have_val = 0, out_rc = 0;
  verdict_t stop;
  memset(&stop, 0, sizeof stop);
  int64_t stop_step = 0;
  cg_host_batch_t *pending = NULL; /* batch of the submitted step not yet fetched */
  double wait = 0;
  cg_guard_beat(guard, s0 + 1, "waiting for the first batch");
  cg_host_batch_t *b = cg_loader_next(ld, &wait);
  win_wait += wait;
  if (b) upload(&r, s0, b);
  for (int64_t k = s0; k < total; k++) {
    int64_t step = k + 1;
    cg_guard_beat(guard, step, "training step (compute, gradient all-reduce)");
    cg_adamw_t opt = {(float)cg_train_lr(cfg, k, total), (float)cfg->beta1, (float)cfg->beta2,
                      (float)cfg->eps, (float)cfg->weight_decay, r.opt_t0 + (k - s0) + 1};
    cg_trace_set_step(r.trace, step);
    double t_sub = cg_now();
    cg_nvtx_push("submit step");
    ops->train_step(be, (int)(k % CG_DEV_SLOTS), &opt);
    cg_nvtx_pop();
    cg_trace_event(r.trace, CG_TRACK_DRIVER, "submit step", t_sub, cg_now());
    if (pending) collect(&r, ld, pending, &win, 1); /* step k-1 while step k runs */
    pending = b;
    cg_guard_beat(guard, step, "waiting for the next batch");
    double t_w = cg_now();
    cg_nvtx_push("data wait");
    b = cg_loader_next(ld, &wait);
    cg_nvtx_pop();
    cg_trace_event(r.trace, CG_TRACK_DRIVER, "wait for batch", t_w, cg_now());
    win_wait += wait;
    double t_up = cg_now();
    if (b) upload(&r, k + 1, b);
    cg_trace_event(r.trace, CG_TRACK_DRIVER, "upload", t_up, cg_now());
    int report = step % cfg->report_every == 0 || step == total;
    int do_val = val_src && cfg->val_every > 0 && step % cfg->val_every == 0 && step != total;
    int do_ckpt = r.ckpt_dir && ((cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) ||
                                 step == total);
    if (report || do_val || step == total || do_ckpt) { /* drain so every figure is complete */
      collect(&r, ld, pending, &win, 1);
      pending = NULL;
    }
    /* The step boundary: stop signals and fatal steps, agreed by every rank. */
    cg_guard_beat(guard, step, "step agreement (all-reduce)");
    verdict_t vd = agree_step(&r, step);
    if (vd.sig && !vd.bad && pending) { /* stopping: finish the step in flight and judge it */
      collect(&r, ld, pending, &win, 1);
      pending = NULL;
      vd = agree_step(&r, step);
    }
    if (step % TABLE_EVERY == 0) exchange_table(&r, step);
    if (k == s0) cg_guard_arm(guard, 1); /* the first step's one-off costs are behind */
    if (vd.sig || vd.bad) {
      stop = vd;
      stop_step = step;
      break;
    }
    if (do_ckpt && write_ckpt(&r, step, 0) != 0) out_rc = 1;
    double now = cg_now();
    win_wall += now - t_prev;
    ctl_wall += now - t_prev;
    ctl_wait += wait;
    ctl_steps++;
    t_prev = now;
    win_share += cg_split_cpu_share(&r.split);
    if (ctl_steps >= cfg->split_every) { /* the split controller's window */
      cg_loader_costs_t co;
      cg_loader_take_costs(ld, &co);
      cg_split_window_t sw = {ctl_steps, ctl_wall, ctl_wait,
                              win.busy_measured ? r.busy_total - ctl_busy0 : -1, workers,
                              co.dec_s, co.feat_s, co.met_s, (double)co.dec_n, (double)co.feat_n,
                              (double)co.met_n};
      int k0 = r.split.k, m0 = r.split.metrics_dev;
      if (cg_split_update(&r.split, &sw)) {
        cg_loader_set_cpu_count(ld, r.split.k);
        if (c->rank == 0) {
          printf("split at step %lld: features on the CPU for %d -> %d of %d samples per batch, "
                 "metrics on the %s%s (data wait %.1f%%, helpers %d)\n",
                 (long long)step, k0, r.split.k, cfg->batch, r.split.metrics_dev ? "device" : "CPU",
                 m0 != r.split.metrics_dev ? " (moved)" : "", 100.0 * ctl_wait / ctl_wall, workers);
          fflush(stdout);
        }
      }
      ctl_wall = ctl_wait = ctl_steps = 0;
      ctl_busy0 = r.busy_total;
    }
    double elapsed = now - t_train0;
    int64_t done_samples = total_acc.samples + win.samples;
    if (r.bar == 2)
      progress(&r, step, total, elapsed, (double)done_samples / elapsed, win.last_loss, 0);
    if (r.slow && k + 1 < total) usleep((useconds_t)cfg->test_slow_ms * 1000);
    if (report) {
      cg_window_t wv;
      memset(&wv, 0, sizeof wv);
      wv.steps = win.steps;
      wv.wall = win_wall;
      wv.data_wait = win_wait;
      wv.comm_exposed = win.comm;
      wv.busy = win.busy_measured ? win.busy : -1;
      wv.helper_busy = cg_loader_take_busy(ld, &wv.helpers);
      wv.cpu_share = win_share / (double)(win.steps ? win.steps : 1);
      wv.samples = win.local_samples;
      wv.h2d_bytes = win.h2d;
      wv.d2h_bytes = win.d2h;
      wv.loss = win.loss;
      take_conf(ld, &win); /* the helpers' counts of this window's batches */
      if (c->rank == 0 && r.bar == 2) fputc('\n', stderr);
      double mean_loss = cg_stats_report(stats, &wv, step, total, step == total,
                                         c->rank == 0 ? stdout : NULL, &last_cluster);
      last_window_loss = mean_loss;
      if (c->rank == 0) {
        int64_t nsteps = win.steps ? win.steps : 1;
        double ms = 1e3 * win_wall / (double)nsteps, dw = 1e3 * win_wait / (double)nsteps;
        double cm = 1e3 * win.comm / (double)nsteps, bz = 1e3 * win.busy / (double)nsteps;
        printf("step %lld/%lld | loss %.4f | %.1f img/s | %.2f ms/step = compute %.2f + data wait "
               "%.2f + comm %.2f + other %.2f | split %d/%d on CPU, metrics on %s (rank 0)\n",
               (long long)step, (long long)total, mean_loss, (double)win.samples / win_wall, ms, bz,
               dw, cm, ms - bz - dw - cm, r.split.k, cfg->batch,
               r.split.metrics_dev ? "device" : "CPU");
        fflush(stdout);
      }
      if (r.bar == 1) progress(&r, step, total, elapsed, (double)done_samples / elapsed, mean_loss, 0);
      total_acc.samples += win.samples;
      total_acc.steps += win.steps;
      total_acc.conf.tp += win.conf.tp;
      total_acc.conf.fp += win.conf.fp;
      total_acc.conf.fn += win.conf.fn;
      total_acc.conf.tn += win.conf.tn;
      memset(&win, 0, sizeof win);
      win_wall = win_wait = win_share = 0;
    }
    if (do_val) {
      double tv = cg_now();
      val = validate(&r, val_src, workers);
      if (b) upload(&r, k + 1, b); /* validation reused the device batch slots */
      if (c->rank == 0) {
        if (r.bar == 2) fputc('\n', stderr);
        printf("validation at step %lld: loss %.4f  IoU %.4f  Dice %.4f  accuracy %.4f\n",
               (long long)step, val.loss, cg_confusion_iou(&val.conf), cg_confusion_dice(&val.conf),
               cg_confusion_acc(&val.conf));
        fflush(stdout);
      }
      /* Validation time is not training time. */
      double dv = cg_now() - tv;
      t_train0 += dv;
      t_prev += dv;
    }
  }
  train_time = cg_now() - t_train0;
  if (stop.sig || stop.bad) {
    /* Every submitted step is fetched and the upload in flight completes before the loader
     * frees its slots; then the stop is reported and nothing else of a normal end runs. */
    if (pending) collect(&r, ld, pending, &win, 1);
    if (b) ops->upload_wait(be, (int)(stop_step % CG_DEV_SLOTS));
    cg_loader_destroy(ld);
    out_rc = stop_run(&r, &stop, stop_step);
    goto teardown;
  }
  int64_t bad = cg_loader_take_bad(ld);
  cg_comm_sum_i64(c, &bad, 1);
  const int64_t left_out = base_src ? base_src->dropped + (val_base ? val_base->dropped : 0) : 0;
  if ((bad || left_out) && c->rank == 0) /* a bad file is met again every epoch: loads */
    printf("--skip-bad: %lld bad sample(s) left out at start-up, %lld sample load(s) skipped in "
           "training\n", (long long)left_out, (long long)bad);
  cg_loader_destroy(ld);
  int64_t global_samples = total_acc.samples;
  cg_confusion_t train_conf = total_acc.conf;
  if (r.bar == 2) progress(&r, total, total, train_time, (double)global_samples / train_time, last_window_loss, 1);
  if (val_src) {
    val = validate(&r, val_src, workers);
    have_val = 1;
  }
  cg_guard_beat(guard, total, "final reports and outputs");
  int64_t tc[4] = {train_conf.tp, train_conf.fp, train_conf.fn, train_conf.tn};
  cg_comm_sum_i64(c, tc, 4);
  train_conf = (cg_confusion_t){tc[0], tc[1], tc[2], tc[3]};
  double wall = cg_now() - t_begin;
  double ips = train_time > 0 ? (double)global_samples / train_time : 0;
  if (c->rank == 0) {
    /* the last report window; a resumed run's first window starts at its first step */
    int64_t last_win = total % cfg->report_every ? total % cfg->report_every : cfg->report_every;
    if (last_win > total - s0) last_win = total > s0 ? total - s0 : 0;
    printf("final: %lld steps, train loss %.4f (last %lld steps), train IoU %.4f, %.1f img/s, "
           "%.1f s\n",
           (long long)total, last_window_loss, (long long)last_win,
           cg_confusion_iou(&train_conf), ips, wall);
    if (have_val)
      printf("final validation: loss %.4f  IoU %.4f  Dice %.4f  accuracy %.4f  (%lld images)\n",
             val.loss, cg_confusion_iou(&val.conf), cg_confusion_dice(&val.conf),
             cg_confusion_acc(&val.conf), (long long)nval);
    if (prec == CG_PREC_FP16)
      printf("fp16 loss scaling: %lld step(s) skipped for inf/NaN gradients (%lld in this run), "
             "loss scale now %g\n", (long long)(r.skipped0 + r.health.skipped),
             (long long)r.health.skipped, (double)r.loss_scale);
    fflush(stdout);
  }
  if (res) {
    memset(res, 0, sizeof *res);
    res->steps = total;
    res->img_per_s = ips;
    res->train_s = train_time;
    res->wall_s = wall;
    res->gpu_busy = isfinite(last_cluster.compute_busy) ? last_cluster.compute_busy : -1;
    res->data_wait = last_cluster.data_wait;
    res->comm_exposed = last_cluster.comm_exposed;
    res->cpu_busy = isfinite(last_cluster.cpu_busy) ? last_cluster.cpu_busy : -1;
    res->cpu_share = last_cluster.cpu_share;
    res->val_iou = have_val ? cg_confusion_iou(&val.conf) : -1;
    res->train_loss = last_window_loss;
    res->last_img_per_s = last_cluster.img_per_s;
  }
  if (c->rank == 0 && cfg->metrics_out[0]) {
    char json[2048];
    char vi[32] = "null", vd[32] = "null", va[32] = "null", vl[32] = "null";
    if (have_val) {
      snprintf(vi, sizeof vi, "%.6f", cg_confusion_iou(&val.conf));
      snprintf(vd, sizeof vd, "%.6f", cg_confusion_dice(&val.conf));
      snprintf(va, sizeof va, "%.6f", cg_confusion_acc(&val.conf));
      snprintf(vl, sizeof vl, "%.6f", val.loss);
    }
    snprintf(json, sizeof json,
             "{\"steps\": %lld, \"ranks\": %d, \"global_batch\": %d, \"train_loss\": %.6f, "
             "\"val_loss\": %s, \"val_iou\": %s, \"val_dice\": %s, \"val_acc\": %s, "
             "\"train_iou\": %.6f, \"img_per_s\": %.3f, \"wall_s\": %.3f, \"train_s\": %.3f, "
             "\"backend\": \"%s\", \"precision\": \"%s\", \"image_size\": %d, "
             "\"model_base\": %d, \"model_depth\": %d, \"params\": %zu}\n",
             (long long)total, c->size, cfg->batch * c->size, last_window_loss, vl, vi, vd, va,
             cg_confusion_iou(&train_conf), ips, wall, train_time, ops->name, cg_precision_name(prec),
             cfg->image_size, cfg->model_base, cfg->model_depth, model.nparams);
    if (cg_afile_save(cfg->metrics_out, json, strlen(json), err, sizeof err) != 0) {
      cg_log_warn("--metrics-out: %s", err);
      out_rc = 1;
    }
  }
  if (c->rank == 0 && cfg->params_out[0]) {
    ops->get_params(be, params);
    if (cg_afile_save(cfg->params_out, params, sizeof(float) * model.nparams, err, sizeof err)) {
      cg_log_warn("--params-out: %s", err);
      out_rc = 1;
    }
  }
teardown:
  cg_guard_arm(guard, 0); /* teardown may wait on other ranks' teardown: not a hang */
  free(params);
  free(r.table);
  free(r.ck_m);
  free(r.ck_v);
  cg_stats_destroy(stats);
  ops->destroy(be);
  const int traced = trace != NULL;
  if (cg_trace_close(trace) == 0 && traced && c->rank == 0)
    printf("timeline: %s.rank<R>.json (steps %s)\n", cfg->trace_out, cfg->trace_steps);
  cg_guard_watch_nccl(guard, NULL);
  cg_nccl_destroy(nccl); /* after the backend's graphs are gone, before MPI_Finalize */
  cg_gsync_destroy(gs);
  destroy_sources(base_src, val_base, train_src, val_src);
  free(helper_cpus);
  cg_topo_destroy(topo);
  CG_CHECK_MPI(MPI_Bcast(&out_rc, 1, MPI_INT, 0, c->world));
  return out_rc;

usage:
  if (c->rank == 0) fprintf(stderr, "cogpu-dist: error: %s\n", err);
  return CG_EXIT_USAGE;
}

int cg_train_run(const cg_config_t *cfg, cg_comm_t *c, cg_train_result_t *res) {
  /* Stop signals are caught from the start: one that arrives during start-up stops the run at
   * its first step boundary instead of killing this rank and, with it, the job. */
  CG_ASSERT(c->size <= (1 << RANK_BITS));
  cg_guard_cfg_t gc = {cfg->timeout_s, c->rank, c->size, c->host, NULL};
  cg_guard_t *guard = cg_guard_create(&gc);
  int code = run_train(cfg, c, res, guard);
  cg_guard_destroy(guard);
  return code;
}
