/* bench_train.c: `cogpu-bench train` — steady-state speed of the real training step.
 *
 * The batch (synthetic samples with their CPU features) is uploaded to both device batch slots
 * once; then the step alternates between the slots with no further copies, so the numbers
 * are the model's compute speed, not the data pipeline's. Each configuration is checked first
 * (the loss of the warm-up steps is finite and the parameters changed and stayed finite), then
 * timed over several windows of steps on the host clock after draining the device; the median
 * window is reported. Runs on one rank.
 * --kernels: after the timed windows, a per-kernel breakdown of --kernel-steps more steps, run
 * the same way (graphs replay), from CUPTI (cuda/kprof.h), printed after the configuration's
 * row. The profiler is on from before the backend is created, so the timed numbers of such a
 * run include CUPTI's tracing overhead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_choose.h"
#include "bench.h"
#include "synth.h"
#include "feat.h"
#include "log.h"
#include "model.h"
#ifdef COGPU_HAVE_CUDA
#include <cuda_runtime.h> /* cudaMemGetInfo: the device-level memory figure */
#include <cudnn.h>        /* cudnnGetVersion: the cuDNN the run loaded */

#include "kprof.h" /* cg_kprof_*: per-kernel breakdown of the step from CUPTI (--kernels) */

/* Bytes in use on the device (all processes, the context and libraries included); -1 when not
 * known. The difference across a configuration's backend is its device-level footprint. */
static double device_used_bytes(void) {
  size_t free_b = 0, total_b = 0;
  if (cudaFree(0) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return (double)(total_b - free_b);
}
static long cudnn_version(void) { return (long)cudnnGetVersion(); }
#else
static double device_used_bytes(void) { return -1; }
static long cudnn_version(void) { return 0; }
#endif

typedef struct {
  const char *backend;           /* cpu | cuda | auto */
  const char *precision;         /* --precision LIST; NULL = by the backend */
  cg_opt_ints_t batch, threads;  /* --batch-list, --threads-list; batch.n = 0: by the backend */
  int base, depth, size;         /* -1: by the backend */
  int nclass;                    /* --num-classes: the head's classes (1 = binary) */
  int warmup, steps, windows;
  const char *cuda_graph;        /* on | off | both */
  const char *tf32_mode;         /* auto | on | off */
  int profile;
  const char *algo_cache;
  const char *json_out;
  int kernels, kernel_steps;     /* --kernels, --kernel-steps */
  int accum;                     /* --grad-accum */
  double clip;                   /* --clip-grad-norm */
  double ema;                    /* --ema-decay */
  const char *kernels_json;      /* --kernels-json PREFIX */
  double peak_tflops, peak_gbs;  /* ceilings of the --kernels floors */
  /* derived from the above (train_check, then the backend) */
  int prec[3], nprec;
  int graph_modes[2], ngraph;
  int tf32;
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_TEXT(PTR, "backend", F(backend), "cpu|cuda|auto", 0, "cpu|cuda|auto",
        "compute backend; auto = cuda when a GPU is usable"),
    CG_OPT_ROW_TEXT(PTR, "precision", F(precision), NULL, 0, "LIST",
        "precisions to run, of fp32,bf16,fp16 [cuda: bf16,fp16,fp32; cpu: fp32]"),
    CG_OPT_ROW_NUM(INTS, "batch-list", F(batch), 1, 65536, 0, "LIST",
        "per-step batch sizes [cuda: 32,64; cpu: 8]"),
    CG_OPT_ROW_NUM(INTS, "threads-list", F(threads), 0, 4096, 0, "LIST",
        "cpu compute threads to try"),
    CG_OPT_ROW_NUM(INT, "grad-accum", F(accum), 1, 1024, 0, "A",
        "gradient accumulation: each step A micro-batches of the batch, then one AdamW step "
        "(as train --grad-accum)"),
    CG_OPT_ROW_NUM(DBL, "clip-grad-norm", F(clip), 0, 1e9, 0, "X",
        "clip the gradient to global L2 norm X before AdamW (as train --clip-grad-norm; the "
        "synthetic batch's norm is not a real run's, so X = 1e9 measures the cost without "
        "clipping); 0 = off"),
    CG_OPT_ROW_NUM(DBL, "ema-decay", F(ema), 0, 0.999999, 0, "D",
        "keep a moving average of the weights after each optimizer step (as train --ema-decay "
        "D); 0 = off"),
    {"model-base", CG_OPT_INT, F(base), 1, 1024, CG_OPT_NODEF, NULL, 0, "N",
     "UNet base width [cuda: 32 (UNet-S); cpu: 8]"},
    {"model-depth", CG_OPT_INT, F(depth), 1, 6, CG_OPT_NODEF, NULL, 0, "N",
     "UNet depth [cuda: 4; cpu: 3]"},
    {"image-size", CG_OPT_INT, F(size), 2, 8192, CG_OPT_NODEF, NULL, 0, "N",
     "images are N x N [cuda: 256; cpu: 64]"},
    CG_OPT_ROW_NUM(INT, "num-classes", F(nclass), 1, 255, 0, "K",
        "classes of the head: 1 = binary; K >= 2 = softmax head and loss, the synthetic masks "
        "with K class ids and ignore bands (label 255)"),
    CG_OPT_ROW_NUM(INT, "warmup", F(warmup), 1, 1e6, 0, "N",
        "warm-up steps (algorithm search, graph capture, the check)"),
    CG_OPT_ROW_NUM(INT, "steps", F(steps), 1, 1e7, 0, "N", "steps per timed window"),
    CG_OPT_ROW_NUM(INT, "windows", F(windows), 1, 1e4, 0, "N",
        "timed windows; the median window is reported"),
    CG_OPT_ROW_TEXT(PTR, "cuda-graph", F(cuda_graph), "on|off|both", 0, "on|off|both",
        "cuda: replay the step as a CUDA graph; both = a row each"),
    CG_OPT_ROW_TEXT(PTR, "tf32", F(tf32_mode), "auto|on|off", 0, "auto|on|off",
        "fp32 convolutions may use TF32; auto = on, as PyTorch's default; off = strict fp32"),
    CG_OPT_ROW_FLAG("profile", F(profile), 0,
        "cuda: time every layer op with events (graphs off) and print the per-layer table after "
        "each configuration"),
    CG_OPT_ROW_FLAG("kernels", F(kernels), 0,
        "cuda: per-kernel breakdown of each configuration (CUPTI): --kernel-steps more steps after "
        "the timed windows, each kernel mapped to its layer and pass; printed after the "
        "configuration's row (timings of the run include CUPTI)"),
    CG_OPT_ROW_NUM(INT, "kernel-steps", F(kernel_steps), 1, 1e6, 0, "N",
        "steps counted by --kernels"),
    CG_OPT_ROW_TEXT(PTR, "kernels-json", F(kernels_json), NULL, 0, "PREFIX",
        "--kernels, also written to PREFIX-<prec>-b<batch>-graph<on|off>.json"),
    CG_OPT_ROW_NUM_GT(DBL, "peak-tflops", F(peak_tflops), 0, 1e7, 0, "X",
        "compute ceiling of the --kernels floors, TFLOP/s"),
    CG_OPT_ROW_NUM_GT(DBL, "peak-gbs", F(peak_gbs), 0, 1e8, 0, "X",
        "memory-bandwidth ceiling of the --kernels floors, GB/s"),
    CG_OPT_ROW_TEXT(PTR, "algo-cache", F(algo_cache), NULL, 0, "FILE",
        "cuda: reuse / record the cuDNN algorithm choices"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
};
static const opts_t g_defaults = {
    .backend = "auto", .threads = {2, {1, 2}}, .base = -1, .depth = -1, .size = -1, .nclass = 1,
    .warmup = 5,
    .steps = 20, .windows = 5, .accum = 1, .cuda_graph = "on", .tf32_mode = "auto",
    .kernel_steps = 20,
    .peak_tflops = 790, .peak_gbs = 4300};

static int parse_prec(const char *s, int *out) {
  int n = 0;
  char buf[64];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *t = strtok(buf, ","); t && n < 3; t = strtok(NULL, ",")) {
    if (!strcmp(t, "fp32")) out[n++] = CG_PREC_FP32;
    else if (!strcmp(t, "bf16")) out[n++] = CG_PREC_BF16;
    else if (!strcmp(t, "fp16")) out[n++] = CG_PREC_FP16;
    else return -1;
  }
  return n;
}

typedef struct {
  int prec, batch, threads, graph;
  double ips, ms, busy_frac, mem_gib, loss;
  double mem_device_gib; /* device-level: used after the timed windows minus before create */
  int ok;
  char note[128];
  char *kreport; /* --kernels: the breakdown, printed after the row (malloc'd) */
} result_t;

/* Submits micro-batch m of step opt->t (--grad-accum A: A - 1 accum_step calls, then the
 * train_step), alternating the batch slots call by call. */
static void submit(const cg_backend_ops_t *ops, cg_backend_t *be, int m, int accum,
                   const cg_optim_t *opt) {
  const int slot = (int)((opt->t * accum + m) % CG_DEV_SLOTS);
  if (m + 1 < accum) ops->accum_step(be, slot);
  else ops->train_step(be, slot, opt);
}

/* Runs `steps` train steps of `accum` micro-batches each, at most CG_MAX_INFLIGHT calls in
 * flight, and fetches them all. Adds their busy time (ms) to *busy_ms; returns the last loss. */
static double run_window(const cg_backend_ops_t *ops, cg_backend_t *be, int steps, int accum,
                         int64_t *t, cg_optim_t *opt, double *busy_ms) {
  cg_step_out_t out;
  double loss = 0;
  int inflight = 0;
  for (int s = 0; s < steps * accum; s++) {
    if (s % accum == 0) opt->t = ++*t;
    submit(ops, be, s % accum, accum, opt);
    if (++inflight == CG_MAX_INFLIGHT) {
      ops->fetch(be, &out);
      inflight--;
      *busy_ms += out.busy_ms;
      loss = out.loss;
    }
  }
  while (inflight--) {
    ops->fetch(be, &out);
    *busy_ms += out.busy_ms;
    loss = out.loss;
  }
  return loss;
}

#ifdef COGPU_HAVE_CUDA
/* --kernels: counts o->kernel_steps more steps (the device is drained: every step was fetched)
 * and writes the breakdown into res->kreport. */
static void kernels_window(const cg_backend_ops_t *ops, cg_backend_t *be, const opts_t *o,
                           result_t *res, cg_kprof_t *kp, int64_t *t, cg_optim_t *opt) {
  size_t len = 0;
  FILE *f = open_memstream(&res->kreport, &len);
  if (!f) return;
  const char *prec = cg_precision_name((cg_precision_t)res->prec);
  const char *graph = res->graph ? "on" : "off";
  char title[128], path[1024];
  snprintf(title, sizeof title, "%s batch %d graph %s", prec, res->batch, graph);
  if (o->kernels_json)
    snprintf(path, sizeof path, "%s-%s-b%d-graph%s.json", o->kernels_json, prec, res->batch,
             graph);
  double busy = 0;
  cg_kprof_start(kp);
  const double t0 = cg_now();
  run_window(ops, be, o->kernel_steps, o->accum, t, opt, &busy);
  const double dt = cg_now() - t0;
  cg_kprof_stop(kp, o->kernel_steps);
  if (cg_kprof_report(kp, title, 1e3 * dt / o->kernel_steps, o->peak_tflops, o->peak_gbs, f,
                      o->kernels_json ? path : NULL))
    fprintf(f, "# kernels: could not write %s\n", path);
  else if (o->kernels_json)
    fprintf(f, "# kernels: wrote %s\n", path);
  fclose(f);
}

/* --kernels on the CUDA backend: the profiler, made before the backend (see kprof.h) and set in
 * bc; NULL otherwise, or when CUPTI is unavailable (said in res->kreport). */
static cg_kprof_t *kprof_begin(const cg_backend_ops_t *ops, const opts_t *o, result_t *res,
                               cg_backend_cfg_t *bc) {
  if (!o->kernels || ops != &cg_backend_cuda) return NULL;
  char err[512];
  cg_kprof_t *kp = cg_kprof_create(err, sizeof err);
  if (!kp) {
    char line[600];
    snprintf(line, sizeof line, "# kernels: unavailable (%.500s)\n", err);
    res->kreport = strdup(line);
  }
  bc->kprof = kp;
  return kp;
}
static void kprof_end(cg_kprof_t *kp) { cg_kprof_destroy(kp); }
#else /* a CPU-only build has no kernel breakdown */
typedef struct cg_kprof cg_kprof_t;
static cg_kprof_t *kprof_begin(const cg_backend_ops_t *ops, const opts_t *o, result_t *res,
                               cg_backend_cfg_t *bc) {
  (void)ops, (void)o, (void)res, (void)bc;
  return NULL;
}
static void kernels_window(const cg_backend_ops_t *ops, cg_backend_t *be, const opts_t *o,
                           result_t *res, cg_kprof_t *kp, int64_t *t, cg_optim_t *opt) {
  (void)ops, (void)be, (void)o, (void)res, (void)kp, (void)t, (void)opt;
}
static void kprof_end(cg_kprof_t *kp) { (void)kp; }
#endif

static cg_backend_cfg_t backend_cfg(const opts_t *o, const result_t *res,
                                    const cg_buckets_t *bk) {
  cg_backend_cfg_t bc = {0};
  bc.batch = res->batch;
  bc.accum = o->accum;
  bc.clip_norm = (float)o->clip;
  bc.ema = o->ema > 0;
  bc.dice_weight = 1.0f; /* the reference loss, as bench/peer_torch.py's */
  bc.nclass = o->nclass;
  bc.ignore_index = o->nclass > 1 ? 255 : -1;
  bc.precision = (cg_precision_t)res->prec;
  bc.threads = res->threads;
  bc.cuda_graph = res->graph;
  bc.tf32 = o->tf32;
  bc.profile = o->profile;
  bc.algo_cache = o->algo_cache;
  bc.buckets = bk;
  bc.fault_nan_step = -1;
  return bc;
}

/* One batch of n real synthetic samples (size x size, c input channels with their features),
 * uploaded to every device slot; weighted 1 / (n x accum), as a step of accum micro-batches of
 * it is weighted in training. */
static void upload_batch(const cg_backend_ops_t *ops, cg_backend_t *be, int n, int accum,
                         int size, int c, int nclass) {
  const int h = size, w = size;
  size_t px = (size_t)h * w;
  float *x = cg_malloc(sizeof(float) * px * c * n, "bench x");
  uint8_t *y = cg_malloc(px * n, "bench y");
  float *wt = cg_malloc(sizeof(float) * n, "bench w");
  uint8_t *rgb = cg_malloc(px * 3, "rgb");
  float *scratch = cg_malloc(sizeof(float) * 3 * px, "scratch");
  for (int i = 0; i < n; i++) {
    cg_synth_sample_k(1, i, h, w, nclass, nclass > 1 ? 255 : -1, rgb, y + i * px);
    cg_pack_input(rgb, h, w, CG_NFEAT, scratch, x + i * px * c);
    wt[i] = 1.0f / ((float)n * (float)accum);
  }
  cg_batch_t batch = {n, h, w, c, x, y, wt, n, NULL, NULL, 0};
  for (int s = 0; s < CG_DEV_SLOTS; s++) {
    ops->upload(be, s, &batch);
    ops->upload_wait(be, s); /* the host batch may go after this */
  }
  free(x);
  free(y);
  free(wt);
  free(rgb);
  free(scratch);
}

/* Sets the initial parameters, uploads the batch, runs the warm-up steps (algorithm search,
 * graph capture) and checks them: the loss stays finite, the parameters change and stay
 * finite. Returns NULL, or what failed. */
static const char *warm_up(const cg_backend_ops_t *ops, cg_backend_t *be, const cg_model_t *m,
                           const opts_t *o, int n, int64_t *t, cg_optim_t *opt) {
  float *p0 = cg_malloc(sizeof(float) * m->nparams, "params");
  float *p1 = cg_malloc(sizeof(float) * m->nparams, "params");
  cg_model_init_params(m, 1, p0);
  ops->set_params(be, p0);
  upload_batch(ops, be, n, o->accum, o->size, m->in_c, m->nclass);
  cg_step_out_t out;
  int finite = 1;
  for (int i = 0; i < o->warmup * o->accum; i++) {
    if (i % o->accum == 0) opt->t = ++*t;
    opt->ema_w = *t == 1 ? 1.0f : (float)(1.0 - o->ema); /* the first update copies */
    submit(ops, be, i % o->accum, o->accum, opt);
    ops->fetch(be, &out);
    finite &= isfinite(out.loss);
  }
  ops->get_params(be, p1);
  double changed = 0;
  for (size_t i = 0; i < m->nparams; i++) {
    if (!isfinite(p1[i])) finite = 0;
    changed += fabs((double)p1[i] - p0[i]);
  }
  free(p0);
  free(p1);
  if (!finite) return "non-finite loss or parameters";
  return changed == 0 ? "parameters did not change" : NULL;
}

/* The timed windows of a batch of n: res->ips (the median window), ms and busy_frac. Returns
 * the last loss. */
static double time_windows(const cg_backend_ops_t *ops, cg_backend_t *be, const opts_t *o,
                           int n, int64_t *t, cg_optim_t *opt, result_t *res) {
  double *win_ips = cg_malloc(sizeof(double) * o->windows, "windows");
  double busy = 0, wall = 0, loss = 0;
  for (int wdw = 0; wdw < o->windows; wdw++) {
    double t0 = cg_now(), wb = 0;
    loss = run_window(ops, be, o->steps, o->accum, t, opt, &wb);
    double dt = cg_now() - t0;
    win_ips[wdw] = (double)o->steps * n * o->accum / dt;
    busy += wb * 1e-3;
    wall += dt;
  }
  res->ips = cg_bench_median(win_ips, o->windows);
  res->ms = 1e3 * n * o->accum / res->ips;
  res->busy_frac = busy > 0 ? busy / wall : -1;
  free(win_ips);
  return loss;
}

static void run_one(const cg_backend_ops_t *ops, const opts_t *o, result_t *res) {
  cg_model_t m;
  char err[512];
  res->ok = 0;
  if (cg_model_build(&m, 3 + CG_NFEAT, o->base, o->depth, o->size, o->size, o->nclass, err,
                     sizeof err)) {
    snprintf(res->note, sizeof res->note, "%.120s", err);
    return;
  }
  cg_buckets_t bk;
  cg_buckets_plan(&m, 25e6, &bk);
  cg_backend_cfg_t bc = backend_cfg(o, res, &bk);
  cg_kprof_t *kp = kprof_begin(ops, o, res, &bc);
  cg_backend_t *be = NULL;
  const double used0 = ops == &cg_backend_cpu ? -1 : device_used_bytes();
  res->mem_device_gib = -1;
  if (ops->create(&m, &bc, &be, err, sizeof err)) {
    snprintf(res->note, sizeof res->note, "%.120s", err);
    kprof_end(kp);
    return;
  }
  int64_t t = 0;
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 0, 0.0f};
  const char *bad = warm_up(ops, be, &m, o, res->batch, &t, &opt);
  if (bad) {
    snprintf(res->note, sizeof res->note, "check failed: %s", bad);
    goto done;
  }
  res->loss = time_windows(ops, be, o, res->batch, &t, &opt, res);
  res->mem_gib = ops->mem_bytes ? (double)ops->mem_bytes(be) / (1024.0 * 1024 * 1024) : -1;
  if (used0 >= 0) { /* everything the backend and the libraries took, graphs included */
    const double used1 = device_used_bytes();
    if (used1 >= 0) res->mem_device_gib = (used1 - used0) / (1024.0 * 1024 * 1024);
  }
  res->ok = isfinite(res->loss);
  if (!res->ok) snprintf(res->note, sizeof res->note, "non-finite loss while timing");
  if (kp) kernels_window(ops, be, o, res, kp, &t, &opt);
done:
  ops->destroy(be);
  kprof_end(kp); /* after the backend, which brackets its work with it */
}

static int train_check(void *arg, char *err, size_t errlen) {
  opts_t *o = arg;
  if (o->precision && (o->nprec = parse_prec(o->precision, o->prec)) < 1) {
    snprintf(err, errlen, "--precision: '%s' is not a list of fp32, bf16, fp16", o->precision);
    return -1;
  }
  o->tf32 = strcmp(o->tf32_mode, "off") != 0;
  const int both = !strcmp(o->cuda_graph, "both");
  o->graph_modes[0] = both ? 0 : !strcmp(o->cuda_graph, "on");
  o->graph_modes[1] = 1;
  o->ngraph = both ? 2 : 1;
  o->kernels |= o->kernels_json != NULL;
  if (o->kernels && o->accum > 1) { /* its per-layer times would be the sum of A backwards, of
                                     * which only the last overlaps the all-reduce */
    snprintf(err, errlen, "--grad-accum: not with --kernels or --kernels-json (the breakdown is "
             "of one step of one batch: the scaling projection reads it so)");
    return -1;
  }
  return 0;
}

static void print_header(const cg_backend_ops_t *ops, const opts_t *o, const cg_model_t *m,
                         int cuda, double gflop) {
  printf("# cogpu-bench train: backend %s, UNet in %d base %d depth %d, %dx%d, %d class(es), "
         "%zu parameters, %.2f GFLOP per trained image\n",
         ops->name, m->in_c, o->base, o->depth, o->size, o->size, m->nclass, m->nparams, gflop);
  printf("# warm-up %d steps, then %d windows of %d steps; median window reported\n", o->warmup,
         o->windows, o->steps);
  if (o->accum > 1)
    printf("# --grad-accum %d: a step is %d micro-batches of the batch, one AdamW step; img/s "
           "counts every micro-batch's images, ms/step the whole step\n", o->accum, o->accum);
  if (o->clip > 0)
    printf("# --clip-grad-norm %g: every step measures the gradient's global norm and scales it "
           "before AdamW\n", o->clip);
  if (o->ema > 0)
    printf("# --ema-decay %g: every step updates a moving average of the weights\n", o->ema);
  if (cuda)
    printf("# cuDNN %ld loaded; mem GiB = what the backend allocated (cudaMalloc), dev GiB = device "
           "memory in use after the timed windows minus before the backend (cuDNN, graphs and "
           "loaded kernels included)\n", cudnn_version());
  printf("# %-6s %6s %7s %6s %10s %9s %8s %9s %9s %9s  %s\n", "prec", "batch", "threads", "graph",
         "img/s", "ms/step", "busy%", "mem GiB", "dev GiB", "TFLOP/s", "note");
}

static void print_row(const result_t *r, int cuda, double gflop) {
  char busy[16] = "-";
  if (r->busy_frac >= 0) snprintf(busy, sizeof busy, "%.1f", 100 * r->busy_frac);
  printf("  %-6s %6d %7d %6s %10.1f %9.2f %8s %9.3f %9.3f %9.1f  %s\n",
         cg_precision_name((cg_precision_t)r->prec), r->batch, r->threads,
         cuda ? (r->graph ? "on" : "off") : "-", r->ips, r->ms, busy, r->mem_gib,
         r->mem_device_gib, r->ips * gflop / 1e3, r->ok ? "" : r->note);
  if (r->kreport) fputs(r->kreport, stdout);
  fflush(stdout);
}

enum { kMaxResults = 64 };

/* Every configuration (precision x batch x threads x graph mode; the first kMaxResults): run,
 * then its row printed. Returns how many ran; the failed ones are counted in *failures. */
static int run_grid(const cg_backend_ops_t *ops, const opts_t *o, int cuda, double gflop,
                    result_t *res, int *failures) {
  int nres = 0;
  for (int pi = 0; pi < o->nprec; pi++)
    for (int bi = 0; bi < o->batch.n; bi++)
      for (int ti = 0; ti < o->threads.n; ti++)
        for (int gi = 0; gi < (cuda ? o->ngraph : 1) && nres < kMaxResults; gi++) {
          result_t *r = &res[nres++];
          memset(r, 0, sizeof *r);
          r->prec = o->prec[pi];
          r->batch = o->batch.v[bi];
          r->threads = o->threads.v[ti];
          r->graph = cuda ? o->graph_modes[gi] : 0;
          run_one(ops, o, r);
          if (!r->ok) ++*failures;
          print_row(r, cuda, gflop);
          free(r->kreport);
          r->kreport = NULL;
        }
  return nres;
}

/* The JSON line, also to --json-out; returns 1 if that file could not be written, else 0. */
static int print_json(const cg_backend_ops_t *ops, const opts_t *o, const cg_model_t *m,
                      int cuda, double gflop, const result_t *res, int nres) {
  size_t cap = 16384, len = 0;
  char *js = cg_malloc(cap, "json");
  len += (size_t)snprintf(js + len, cap - len,
                          "{\"bench\": \"train\", \"backend\": \"%s\", \"model_base\": %d, "
                          "\"model_depth\": %d, \"image_size\": %d, \"num_classes\": %d, "
                          "\"params\": %zu, \"gflop_per_image\": %.4f, \"cudnn_version\": %ld, "
                          "\"results\": [",
                          ops->name, o->base, o->depth, o->size, m->nclass, m->nparams, gflop,
                          cuda ? cudnn_version() : 0L);
  for (int i = 0; i < nres && len < cap - 512; i++) {
    const result_t *r = &res[i];
    char f1[32], f2[32], f3[32];
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"precision\": \"%s\", \"batch\": %d, \"grad_accum\": %d, "
                            "\"clip_grad_norm\": %g, \"ema_decay\": %g, \"threads\": %d, "
                            "\"cuda_graph\": %s, \"img_per_s\": %.3f, \"ms_per_step\": %.4f, "
                            "\"busy_frac\": %s, \"mem_gib\": %s, \"mem_device_gib\": %s, "
                            "\"ok\": %s}",
                            i ? ", " : "", cg_precision_name((cg_precision_t)r->prec), r->batch,
                            o->accum, o->clip, o->ema, r->threads, r->graph ? "true" : "false",
                            r->ips, r->ms,
                            cg_bench_json_fig(f1, r->busy_frac), cg_bench_json_fig(f2, r->mem_gib),
                            cg_bench_json_fig(f3, r->mem_device_gib), r->ok ? "true" : "false");
  }
  snprintf(js + len, cap - len, "]}");
  const int rc = cg_bench_write_json(o->json_out, js);
  free(js);
  return rc;
}

static int train_run(const void *arg, cg_comm_t *c) {
  opts_t o = *(const opts_t *)arg;
  cg_backend_choice_t bk; /* this process's GPU, or none: the bench runs on rank 0 only */
  char why[256];
  if (cg_backend_choose(o.backend, NULL, NULL, NULL, &bk, why, sizeof why)) {
    fprintf(stderr, "cogpu-bench train: %s\n", why);
    return 2;
  }
  const cg_backend_ops_t *ops = bk.ops;
  const int cuda = bk.is_cuda;
  if (o.base < 0) o.base = cuda ? 32 : 8;
  if (o.depth < 0) o.depth = cuda ? 4 : 3;
  if (o.size < 0) o.size = cuda ? 256 : 64;
  if (!o.precision) o.nprec = parse_prec(cuda ? "bf16,fp16,fp32" : "fp32", o.prec);
  if (!o.batch.n) o.batch = cuda ? (cg_opt_ints_t){2, {32, 64}} : (cg_opt_ints_t){1, {8}};
  if (cuda) o.threads = (cg_opt_ints_t){1, {0}}; /* no compute threads to choose */
  if (c->rank != 0) return 0;
  if (o.kernels && !cuda) printf("# kernels: needs the cuda backend; ignored\n");
  cg_model_t m;
  char err[256];
  if (cg_model_build(&m, 3 + CG_NFEAT, o.base, o.depth, o.size, o.size, o.nclass, err,
                     sizeof err)) {
    fprintf(stderr, "cogpu-bench train: %s\n", err);
    return 2;
  }
  const double gflop = 3.0 * m.flops_fwd / 1e9;
  print_header(ops, &o, &m, cuda, gflop);
  result_t res[kMaxResults];
  int failures = 0;
  const int nres = run_grid(ops, &o, cuda, gflop, res, &failures);
  failures += print_json(ops, &o, &m, cuda, gflop, res, nres);
  return failures ? 1 : 0;
}

const cg_bench_t cg_bench_train = {
    .name = "train",
    .summary = "steady-state training img/s, ms/step and device memory of the real step,\n"
               "data already on the device",
    .about = "  every configuration (precision x batch x threads x graph mode) is checked (finite\n"
             "  loss, parameters changed), warmed up, then timed over --windows windows of\n"
             "  --steps steps; the median window is reported. One rank.",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .check = train_check,
    .run = train_run,
};
