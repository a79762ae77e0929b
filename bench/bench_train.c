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

#include "backend.h"
#include "bench.h"
#include "data.h"
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
  const char *backend;
  int prec[3], nprec;
  int batch[8], nbatch;
  int threads[8], nthreads;
  int base, depth, size;
  int warmup, steps, windows;
  int graph_modes[2], ngraph;
  int tf32;
  int profile;
  const char *algo_cache;
  const char *json_out;
  int kernels, kernel_steps;     /* --kernels, --kernel-steps */
  const char *kernels_json;      /* --kernels-json PREFIX */
  double peak_tflops, peak_gbs;  /* ceilings of the --kernels floors */
} opts_t;

static void usage(void) {
  printf(
      "usage: cogpu-bench train [options]\n"
      "  --backend cpu|cuda|auto     [auto]\n"
      "  --precision LIST            fp32,bf16,fp16 [cuda: bf16,fp16,fp32; cpu: fp32]\n"
      "  --batch-list LIST           per-step batch sizes [cuda: 32,64; cpu: 8]\n"
      "  --threads-list LIST         cpu compute threads to try [1,2]\n"
      "  --model-base N --model-depth N --image-size N\n"
      "                              [cuda: 32 4 256 (UNet-S); cpu: 8 3 64]\n"
      "  --warmup N --steps N --windows N\n"
      "                              warm-up steps, steps per timed window, windows [5 20 5]\n"
      "  --cuda-graph on|off|both    [on]\n"
      "  --tf32 auto|on|off          fp32 convolutions may use TF32; auto = on, as PyTorch's\n"
      "                              default; off = strict fp32 [auto]\n"
      "  --profile                   cuda: time every layer op with events (graphs off) and\n"
      "                              print the per-layer table after each configuration\n"
      "  --kernels                   cuda: per-kernel breakdown of each configuration (CUPTI):\n"
      "                              --kernel-steps more steps after the timed windows, each\n"
      "                              kernel mapped to its layer and pass; printed after the\n"
      "                              configuration's row (timings of the run include CUPTI)\n"
      "  --kernel-steps N            steps counted by --kernels [20]\n"
      "  --kernels-json PREFIX       --kernels, also written to\n"
      "                              PREFIX-<prec>-b<batch>-graph<on|off>.json\n"
      "  --peak-tflops X --peak-gbs Y\n"
      "                              ceilings for the --kernels floors [790 4300]\n"
      "  --algo-cache FILE           cuda: reuse / record the cuDNN algorithm choices\n"
      "  --json-out FILE             also write the JSON line to FILE\n");
}

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

/* Runs `steps` train steps alternating the batch slots, at most CG_MAX_INFLIGHT in flight, and
 * fetches them all. Adds the steps' busy time (ms) to *busy_ms; returns the last loss. */
static double run_window(const cg_backend_ops_t *ops, cg_backend_t *be, int steps, int64_t *t,
                         cg_adamw_t *opt, double *busy_ms) {
  cg_step_out_t out;
  double loss = 0;
  int inflight = 0;
  for (int s = 0; s < steps; s++) {
    opt->t = ++*t;
    ops->train_step(be, (int)(*t % CG_DEV_SLOTS), opt);
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
                           result_t *res, cg_kprof_t *kp, int64_t *t, cg_adamw_t *opt) {
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
  run_window(ops, be, o->kernel_steps, t, opt, &busy);
  const double dt = cg_now() - t0;
  cg_kprof_stop(kp, o->kernel_steps);
  if (cg_kprof_report(kp, title, 1e3 * dt / o->kernel_steps, o->peak_tflops, o->peak_gbs, f,
                      o->kernels_json ? path : NULL))
    fprintf(f, "# kernels: could not write %s\n", path);
  else if (o->kernels_json)
    fprintf(f, "# kernels: wrote %s\n", path);
  fclose(f);
}
#endif

static void run_one(const cg_backend_ops_t *ops, const opts_t *o, result_t *res) {
  cg_model_t m;
  char err[512];
  res->ok = 0;
  if (cg_model_build(&m, 3 + CG_NFEAT, o->base, o->depth, o->size, o->size, err, sizeof err)) {
    snprintf(res->note, sizeof res->note, "%.120s", err);
    return;
  }
  cg_buckets_t bk;
  cg_buckets_plan(&m, 25e6, &bk);
  cg_backend_cfg_t bc = {0};
  bc.batch = res->batch;
  bc.precision = (cg_precision_t)res->prec;
  bc.threads = res->threads;
  bc.cuda_graph = res->graph;
  bc.tf32 = o->tf32;
  bc.profile = o->profile;
  bc.algo_cache = o->algo_cache;
  bc.buckets = &bk;
  bc.fault_nan_step = -1;
#ifdef COGPU_HAVE_CUDA
  cg_kprof_t *kp = NULL;
  if (o->kernels && ops == &cg_backend_cuda) { /* before the backend: see kprof.h */
    kp = cg_kprof_create(err, sizeof err);
    if (!kp) {
      char line[600];
      snprintf(line, sizeof line, "# kernels: unavailable (%.500s)\n", err);
      res->kreport = strdup(line);
    }
    bc.kprof = kp;
  }
#endif
  cg_backend_t *be = NULL;
  const double used0 = ops == &cg_backend_cpu ? -1 : device_used_bytes();
  res->mem_device_gib = -1;
  if (ops->create(&m, &bc, &be, err, sizeof err)) {
    snprintf(res->note, sizeof res->note, "%.120s", err);
#ifdef COGPU_HAVE_CUDA
    cg_kprof_destroy(kp);
#endif
    return;
  }
  float *p0 = cg_malloc(sizeof(float) * m.nparams, "params");
  float *p1 = cg_malloc(sizeof(float) * m.nparams, "params");
  cg_model_init_params(&m, 1, p0);
  ops->set_params(be, p0);
  /* One batch of real synthetic samples with their features. */
  int n = res->batch, h = o->size, w = o->size, c = m.in_c;
  size_t px = (size_t)h * w;
  float *x = cg_malloc(sizeof(float) * px * c * n, "bench x");
  uint8_t *y = cg_malloc(px * n, "bench y");
  float *wt = cg_malloc(sizeof(float) * n, "bench w");
  uint8_t *rgb = cg_malloc(px * 3, "rgb");
  float *scratch = cg_malloc(sizeof(float) * 3 * px, "scratch");
  for (int i = 0; i < n; i++) {
    cg_synth_sample(1, i, h, w, rgb, y + i * px);
    cg_pack_input(rgb, h, w, CG_NFEAT, scratch, x + i * px * c);
    wt[i] = 1.0f / (float)n;
  }
  cg_batch_t batch = {n, h, w, c, x, y, wt, n, NULL, NULL, 0};
  for (int s = 0; s < CG_DEV_SLOTS; s++) {
    ops->upload(be, s, &batch);
    ops->upload_wait(be, s);
  }
  int64_t t = 0;
  cg_adamw_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 0};
  cg_step_out_t out;
  double loss = 0;
  int finite = 1;
  /* warm-up (algorithm search, graph capture) and the check */
  for (int i = 0; i < o->warmup; i++) {
    opt.t = ++t;
    ops->train_step(be, (int)(t % CG_DEV_SLOTS), &opt);
    ops->fetch(be, &out);
    loss = out.loss;
    finite &= isfinite(out.loss);
  }
  ops->get_params(be, p1);
  double changed = 0;
  for (size_t i = 0; i < m.nparams; i++) {
    if (!isfinite(p1[i])) finite = 0;
    changed += fabs((double)p1[i] - p0[i]);
  }
  if (!finite || changed == 0) {
    snprintf(res->note, sizeof res->note, "check failed: %s",
             !finite ? "non-finite loss or parameters" : "parameters did not change");
    goto done;
  }
  double *win_ips = cg_malloc(sizeof(double) * o->windows, "windows");
  double busy = 0, wall = 0;
  for (int wdw = 0; wdw < o->windows; wdw++) {
    double t0 = cg_now(), wb = 0;
    loss = run_window(ops, be, o->steps, &t, &opt, &wb);
    double dt = cg_now() - t0;
    win_ips[wdw] = (double)o->steps * n / dt;
    busy += wb * 1e-3;
    wall += dt;
  }
  res->ips = cg_bench_median(win_ips, o->windows);
  res->ms = 1e3 * n / res->ips;
  res->busy_frac = busy > 0 ? busy / wall : -1;
  res->mem_gib = ops->mem_bytes ? (double)ops->mem_bytes(be) / (1024.0 * 1024 * 1024) : -1;
  if (used0 >= 0) { /* everything the backend and the libraries took, graphs included */
    const double used1 = device_used_bytes();
    if (used1 >= 0) res->mem_device_gib = (used1 - used0) / (1024.0 * 1024 * 1024);
  }
  res->loss = loss;
  res->ok = isfinite(loss);
  if (!res->ok) snprintf(res->note, sizeof res->note, "non-finite loss while timing");
  free(win_ips);
#ifdef COGPU_HAVE_CUDA
  if (kp) kernels_window(ops, be, o, res, kp, &t, &opt);
#endif
done:
  ops->destroy(be);
#ifdef COGPU_HAVE_CUDA
  cg_kprof_destroy(kp); /* after the backend, which brackets its work with it */
#endif
  free(p0);
  free(p1);
  free(x);
  free(y);
  free(wt);
  free(rgb);
  free(scratch);
}

int cg_bench_train(int argc, char **argv, cg_comm_t *c) {
  opts_t o;
  memset(&o, 0, sizeof o);
  o.backend = "auto";
  o.base = o.depth = o.size = -1;
  o.warmup = 5;
  o.tf32 = 1; /* auto: TF32 convolutions for fp32, as PyTorch */
  o.steps = 20;
  o.windows = 5;
  o.graph_modes[0] = 1;
  o.ngraph = 1;
  o.kernel_steps = 20;
  const char *prec = NULL, *batches = NULL, *threads = "1,2";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                   \
  do {                                                                           \
    if (!v) {                                                                    \
      fprintf(stderr, "cogpu-bench train: %s: missing value\n", a);              \
      return 2;                                                                  \
    }                                                                            \
    i++;                                                                         \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
    else if (!strcmp(a, "--backend")) { NEED(); o.backend = v; }
    else if (!strcmp(a, "--precision")) { NEED(); prec = v; }
    else if (!strcmp(a, "--batch-list")) { NEED(); batches = v; }
    else if (!strcmp(a, "--threads-list")) { NEED(); threads = v; }
    else if (!strcmp(a, "--model-base")) { NEED(); o.base = atoi(v); }
    else if (!strcmp(a, "--model-depth")) { NEED(); o.depth = atoi(v); }
    else if (!strcmp(a, "--image-size")) { NEED(); o.size = atoi(v); }
    else if (!strcmp(a, "--warmup")) { NEED(); o.warmup = atoi(v); }
    else if (!strcmp(a, "--steps")) { NEED(); o.steps = atoi(v); }
    else if (!strcmp(a, "--windows")) { NEED(); o.windows = atoi(v); }
    else if (!strcmp(a, "--tf32")) {
      NEED();
      if (strcmp(v, "auto") && strcmp(v, "on") && strcmp(v, "off")) {
        fprintf(stderr, "cogpu-bench train: --tf32 %s: expected auto, on or off\n", v);
        return 2;
      }
      o.tf32 = strcmp(v, "off") != 0;
    }
    else if (!strcmp(a, "--json-out")) { NEED(); o.json_out = v; }
    else if (!strcmp(a, "--profile")) { o.profile = 1; }
    else if (!strcmp(a, "--kernels")) { o.kernels = 1; }
    else if (!strcmp(a, "--kernel-steps")) { NEED(); o.kernel_steps = atoi(v); }
    else if (!strcmp(a, "--kernels-json")) { NEED(); o.kernels_json = v; o.kernels = 1; }
    else if (!strcmp(a, "--peak-tflops")) { NEED(); o.peak_tflops = atof(v); }
    else if (!strcmp(a, "--peak-gbs")) { NEED(); o.peak_gbs = atof(v); }
    else if (!strcmp(a, "--algo-cache")) { NEED(); o.algo_cache = v; }
    else if (!strcmp(a, "--cuda-graph")) {
      NEED();
      if (!strcmp(v, "both")) { o.graph_modes[0] = 0; o.graph_modes[1] = 1; o.ngraph = 2; }
      else { o.graph_modes[0] = !strcmp(v, "on"); o.ngraph = 1; }
    } else {
      fprintf(stderr, "cogpu-bench train: unknown option %s (see --help)\n", a);
      return 2;
    }
#undef NEED
  }
  if (o.warmup < 1 || o.steps < 1 || o.windows < 1 || o.kernel_steps < 1) {
    fprintf(stderr, "cogpu-bench train: --warmup, --steps, --windows and --kernel-steps must be "
            ">= 1\n");
    return 2;
  }
  if (o.peak_tflops <= 0) o.peak_tflops = 790;
  if (o.peak_gbs <= 0) o.peak_gbs = 4300;
  const cg_backend_ops_t *ops = &cg_backend_cpu;
  int cuda = 0;
#ifdef COGPU_HAVE_CUDA
  char why[256] = "";
  int usable = cg_cuda_usable(why, sizeof why);
  if (!strcmp(o.backend, "cuda") && !usable) {
    fprintf(stderr, "cogpu-bench train: --backend cuda: no usable GPU (%s)\n", why);
    return 2;
  }
  if (strcmp(o.backend, "cpu") && usable) {
    ops = &cg_backend_cuda;
    cuda = 1;
  }
#else
  if (!strcmp(o.backend, "cuda")) {
    fprintf(stderr, "cogpu-bench train: built without CUDA\n");
    return 2;
  }
#endif
  if (o.base < 0) o.base = cuda ? 32 : 8;
  if (o.depth < 0) o.depth = cuda ? 4 : 3;
  if (o.size < 0) o.size = cuda ? 256 : 64;
  o.nprec = parse_prec(prec ? prec : (cuda ? "bf16,fp16,fp32" : "fp32"), o.prec);
  o.nbatch = cg_bench_parse_list(batches ? batches : (cuda ? "32,64" : "8"), o.batch, 8);
  o.nthreads = cuda ? 1 : cg_bench_parse_list(threads, o.threads, 8);
  if (cuda) o.threads[0] = 0;
  if (o.nprec < 1 || o.nbatch < 1 || o.nthreads < 1) {
    fprintf(stderr, "cogpu-bench train: bad --precision, --batch-list or --threads-list\n");
    return 2;
  }
  if (c->rank != 0) return 0;
  if (o.kernels && !cuda) printf("# kernels: needs the cuda backend; ignored\n");
  cg_model_t m;
  char err[256];
  if (cg_model_build(&m, 3 + CG_NFEAT, o.base, o.depth, o.size, o.size, err, sizeof err)) {
    fprintf(stderr, "cogpu-bench train: %s\n", err);
    return 2;
  }
  double gflop = 3.0 * m.flops_fwd / 1e9;
  printf("# cogpu-bench train: backend %s, UNet in %d base %d depth %d, %dx%d, %zu parameters, "
         "%.2f GFLOP per trained image\n",
         ops->name, m.in_c, o.base, o.depth, o.size, o.size, m.nparams, gflop);
  printf("# warm-up %d steps, then %d windows of %d steps; median window reported\n", o.warmup,
         o.windows, o.steps);
  if (cuda)
    printf("# cuDNN %ld loaded; mem GiB = what the backend allocated (cudaMalloc), dev GiB = device "
           "memory in use after the timed windows minus before the backend (cuDNN, graphs and "
           "loaded kernels included)\n", cudnn_version());
  printf("# %-6s %6s %7s %6s %10s %9s %8s %9s %9s %9s  %s\n", "prec", "batch", "threads", "graph",
         "img/s", "ms/step", "busy%", "mem GiB", "dev GiB", "TFLOP/s", "note");
  result_t res[64];
  int nres = 0, failures = 0;
  for (int pi = 0; pi < o.nprec; pi++)
    for (int bi = 0; bi < o.nbatch; bi++)
      for (int ti = 0; ti < o.nthreads; ti++)
        for (int gi = 0; gi < (cuda ? o.ngraph : 1); gi++) {
          if (nres >= 64) break;
          result_t *r = &res[nres++];
          memset(r, 0, sizeof *r);
          r->prec = o.prec[pi];
          r->batch = o.batch[bi];
          r->threads = o.threads[ti];
          r->graph = cuda ? o.graph_modes[gi] : 0;
          run_one(ops, &o, r);
          if (!r->ok) failures++;
          char busy[16] = "-";
          if (r->busy_frac >= 0) snprintf(busy, sizeof busy, "%.1f", 100 * r->busy_frac);
          printf("  %-6s %6d %7d %6s %10.1f %9.2f %8s %9.3f %9.3f %9.1f  %s\n",
                 cg_precision_name((cg_precision_t)r->prec), r->batch, r->threads,
                 cuda ? (r->graph ? "on" : "off") : "-", r->ips, r->ms, busy, r->mem_gib,
                 r->mem_device_gib, r->ips * gflop / 1e3, r->ok ? "" : r->note);
          if (r->kreport) fputs(r->kreport, stdout);
          free(r->kreport);
          r->kreport = NULL;
          fflush(stdout);
        }
  /* JSON */
  size_t cap = 16384, len = 0;
  char *js = cg_malloc(cap, "json");
  len += (size_t)snprintf(js + len, cap - len,
                          "{\"bench\": \"train\", \"backend\": \"%s\", \"model_base\": %d, "
                          "\"model_depth\": %d, \"image_size\": %d, \"params\": %zu, "
                          "\"gflop_per_image\": %.4f, \"cudnn_version\": %ld, \"results\": [",
                          ops->name, o.base, o.depth, o.size, m.nparams, gflop,
                          cuda ? cudnn_version() : 0L);
  for (int i = 0; i < nres && len < cap - 512; i++) {
    const result_t *r = &res[i];
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
                            "\"cuda_graph\": %s, \"img_per_s\": %.3f, \"ms_per_step\": %.4f, "
                            "\"busy_frac\": %.4f, \"mem_gib\": %.4f, \"mem_device_gib\": %.4f, "
                            "\"ok\": %s}",
                            i ? ", " : "", cg_precision_name((cg_precision_t)r->prec), r->batch,
                            r->threads, r->graph ? "true" : "false", r->ips, r->ms, r->busy_frac,
                            r->mem_gib, r->mem_device_gib, r->ok ? "true" : "false");
  }
  snprintf(js + len, cap - len, "]}");
  printf("JSON %s\n", js);
  failures += cg_bench_write_json(o.json_out, js);
  free(js);
  return failures ? 1 : 0;
}
