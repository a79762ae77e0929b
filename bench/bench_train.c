/* bench_train.c: `cogpu-bench train` — steady-state speed of the real training step.
 *
 * The batch (synthetic samples with their CPU features) is uploaded to both device batch slots
 * once; then the step alternates between the slots with no further copies, so the numbers
 * are the model's compute speed, not the data pipeline's. Each configuration is checked first
 * (the loss of the warm-up steps is finite and the parameters changed and stayed finite), then
 * timed over several windows of steps on the host clock after draining the device; the median
 * window is reported. Runs on one rank. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench.h"
#include "data.h"
#include "log.h"
#include "model.h"

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
      "  --tf32 on|off               fp32 convolutions may use TF32 [off]\n"
      "  --profile                   cuda: time every layer op with events (graphs off) and\n"
      "                              print the per-layer table after each configuration\n"
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
  int ok;
  char note[128];
} result_t;

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
  cg_backend_t *be = NULL;
  if (ops->create(&m, &bc, &be, err, sizeof err)) {
    snprintf(res->note, sizeof res->note, "%.120s", err);
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
    int inflight = 0;
    for (int s = 0; s < o->steps; s++) {
      opt.t = ++t;
      ops->train_step(be, (int)(t % CG_DEV_SLOTS), &opt);
      if (++inflight == CG_MAX_INFLIGHT) {
        ops->fetch(be, &out);
        inflight--;
        wb += out.busy_ms;
        loss = out.loss;
      }
    }
    while (inflight--) {
      ops->fetch(be, &out);
      wb += out.busy_ms;
      loss = out.loss;
    }
    double dt = cg_now() - t0;
    win_ips[wdw] = (double)o->steps * n / dt;
    busy += wb * 1e-3;
    wall += dt;
  }
  res->ips = cg_bench_median(win_ips, o->windows);
  res->ms = 1e3 * n / res->ips;
  res->busy_frac = busy > 0 ? busy / wall : -1;
  res->mem_gib = ops->mem_bytes ? (double)ops->mem_bytes(be) / (1024.0 * 1024 * 1024) : -1;
  res->loss = loss;
  res->ok = isfinite(loss);
  if (!res->ok) snprintf(res->note, sizeof res->note, "non-finite loss while timing");
  free(win_ips);
done:
  ops->destroy(be);
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
  o.steps = 20;
  o.windows = 5;
  o.graph_modes[0] = 1;
  o.ngraph = 1;
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
    else if (!strcmp(a, "--tf32")) { NEED(); o.tf32 = !strcmp(v, "on"); }
    else if (!strcmp(a, "--json-out")) { NEED(); o.json_out = v; }
    else if (!strcmp(a, "--profile")) { o.profile = 1; }
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
  if (o.warmup < 1 || o.steps < 1 || o.windows < 1) {
    fprintf(stderr, "cogpu-bench train: --warmup, --steps and --windows must be >= 1\n");
    return 2;
  }
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
  printf("# %-6s %6s %7s %6s %10s %9s %8s %9s %9s  %s\n", "prec", "batch", "threads", "graph",
         "img/s", "ms/step", "busy%", "mem GiB", "TFLOP/s", "note");
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
          printf("  %-6s %6d %7d %6s %10.1f %9.2f %8s %9.3f %9.1f  %s\n",
                 cg_precision_name((cg_precision_t)r->prec), r->batch, r->threads,
                 cuda ? (r->graph ? "on" : "off") : "-", r->ips, r->ms, busy, r->mem_gib,
                 r->ips * gflop / 1e3, r->ok ? "" : r->note);
          fflush(stdout);
        }
  /* JSON */
  size_t cap = 16384, len = 0;
  char *js = cg_malloc(cap, "json");
  len += (size_t)snprintf(js + len, cap - len,
                          "{\"bench\": \"train\", \"backend\": \"%s\", \"model_base\": %d, "
                          "\"model_depth\": %d, \"image_size\": %d, \"params\": %zu, "
                          "\"gflop_per_image\": %.4f, \"results\": [",
                          ops->name, o.base, o.depth, o.size, m.nparams, gflop);
  for (int i = 0; i < nres && len < cap - 512; i++) {
    const result_t *r = &res[i];
    len += (size_t)snprintf(js + len, cap - len,
                            "%s{\"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
                            "\"cuda_graph\": %s, \"img_per_s\": %.3f, \"ms_per_step\": %.4f, "
                            "\"busy_frac\": %.4f, \"mem_gib\": %.4f, \"ok\": %s}",
                            i ? ", " : "", cg_precision_name((cg_precision_t)r->prec), r->batch,
                            r->threads, r->graph ? "true" : "false", r->ips, r->ms, r->busy_frac,
                            r->mem_gib, r->ok ? "true" : "false");
  }
  snprintf(js + len, cap - len, "]}");
  printf("JSON %s\n", js);
  failures += cg_bench_write_json(o.json_out, js);
  free(js);
  return failures ? 1 : 0;
}
