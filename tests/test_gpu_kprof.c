/* test_gpu_kprof.c: the per-kernel breakdown (cuda/kprof.h) of real bf16 training steps (small
 * UNet: in 5, base 8, depth 3, 32x32, batch 3), once with CUDA graphs (the counted steps are
 * graph replays: kernels mapped through their graph nodes) and once eagerly (kernels mapped
 * through CUPTI's external correlation ids). Per configuration: 4 warm-up steps, then 5
 * counted steps, one at a time; the report goes to stdout and to a JSON file, which is read
 * back. Checks: the GPU's busy time per step (the union of the kernels' intervals) is > 0 and
 * below the measured wall time per step, and the kernel time (their sum; dW and dx of a layer
 * may run side by side, so it can exceed the busy time) below twice the wall time; every conv
 * layer's fwd and bwd region has at least one kernel per step; less than 5% of the kernel
 * time is unattributed; the replayed graphs' kernels are found by their graph nodes, the eager
 * ones by correlation; the JSON parses and says what was counted.
 * The batch is uploaded to both slots once, so the counted work is the steps' own.
 * Exits 77 without a usable GPU, or (loudly) when CUPTI cannot be loaded on one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "json.h"
#include "kprof.h"
#include "log.h"
#include "model.h"
#include "testutil.h"
#include "testutil_cuda.h"

enum { N = 3, IN_C = 5, BASE = 8, DEPTH = 3, HW = 32, WARMUP = 4, STEPS = 5 };

/* Reads the whole file; NULL on error. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *s = cg_malloc(cap, "json text");
  size_t got;
  while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) {
      cap *= 2;
      char *t = realloc(s, cap);
      if (!t) CG_FATAL("out of memory");
      s = t;
    }
  }
  fclose(f);
  s[n] = 0;
  return s;
}

static const cg_json_t *find_region(const cg_json_t *regions, const char *name) {
  for (int i = 0; regions && i < regions->n; i++)
    if (!strcmp(cg_json_str(&regions->items[i], "name", ""), name)) return &regions->items[i];
  return NULL;
}

/* The JSON of one configuration against what the test knows. */
static void check_json(const cg_model_t *m, const char *path, const char *title, int graph,
                       double wall_us) {
  char *text = slurp(path);
  CG_TEST_CHECK(text != NULL, "could not read %s", path);
  if (!text) return;
  char err[256];
  cg_json_t *js = cg_json_parse(text, err, sizeof err);
  free(text);
  CG_TEST_CHECK(js != NULL, "%s does not parse: %s", path, err);
  if (!js) return;
  printf("PASS %s: the JSON parses\n", title);
  CG_TEST_CHECK(!strcmp(cg_json_str(js, "title", ""), title), "title %s",
                cg_json_str(js, "title", "?"));
  CG_TEST_CHECK(cg_json_num(js, "steps", -1) == STEPS, "steps %g, want %d",
                cg_json_num(js, "steps", -1), STEPS);
  const double kern_us = 1e3 * cg_json_num(js, "kernel_ms_per_step", -1);
  const double busy_us = 1e3 * cg_json_num(js, "busy_ms_per_step", -1);
  const double unattr = cg_json_num(js, "unattributed_us_per_step", -1);
  printf("  %s: per step: kernel time %.2f us (sum), GPU busy %.2f us (union), wall %.2f us, "
         "unattributed %.2f us (%.2f%%)\n", title, kern_us, busy_us, wall_us, unattr,
         kern_us > 0 ? 100 * unattr / kern_us : 0);
  /* the GPU cannot be busy longer than the step took (10% for the two clocks); at most two
   * streams of one step overlap here (compute and the dW side stream) */
  const int times_ok = busy_us > 0 && busy_us < 1.1 * wall_us && kern_us >= 0.999 * busy_us &&
                       kern_us < 2.0 * wall_us;
  CG_TEST_CHECK(times_ok, "kernel time %.2f us, busy %.2f us, wall %.2f us", kern_us, busy_us,
                wall_us);
  const int unattr_ok = unattr >= 0 && unattr < 0.05 * kern_us;
  CG_TEST_CHECK(unattr_ok, "unattributed %.2f us of %.2f us", unattr, kern_us);
  /* graphs: the replayed kernels are found by their graph nodes (only the input preparation
   * runs eagerly); eager steps: by correlation only. A failed capture shows here. */
  const double by_node = cg_json_num(js, "by_graph_node_per_step", -1);
  const double by_corr = cg_json_num(js, "by_correlation_per_step", -1);
  printf("  %s: records per step mapped by graph node %.1f, by external correlation %.1f\n",
         title, by_node, by_corr);
  if (graph)
    CG_TEST_CHECK(by_node > by_corr && by_corr >= 0, "graph replays: %.1f records by graph node, "
                  "%.1f by correlation", by_node, by_corr);
  else
    CG_TEST_CHECK(by_node == 0 && by_corr > 0, "eager: %.1f records by graph node, %.1f by "
                  "correlation", by_node, by_corr);
  const cg_json_t *regions = cg_json_get(js, "regions");
  CG_TEST_CHECK(regions && regions->type == CG_JSON_ARR, "no regions array");
  int bad = 0, convs = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (l->op != CG_OP_CONV && l->op != CG_OP_UPCONV) continue;
    convs++;
    for (int pass = 0; pass < 2; pass++) {
      char name[96];
      snprintf(name, sizeof name, "%s/%s", l->name, pass ? "bwd" : "fwd");
      const cg_json_t *r = find_region(regions, name);
      const double k = r ? cg_json_num(r, "kernels_per_step", 0) : 0;
      const double us = r ? cg_json_num(r, "us_per_step", 0) : 0;
      if (k < 1 || us <= 0) {
        bad++;
        printf("FAIL %s: region %s: %.2f kernels, %.2f us per step\n", title, name, k, us);
      }
    }
  }
  if (bad) cg_test_failures++;
  else printf("PASS %s: all %d conv layers have fwd and bwd kernels every step\n", title, convs);
  if (times_ok && unattr_ok)
    printf("PASS %s: GPU busy time below the wall time, < 5%% unattributed\n", title);
  cg_json_free(js);
}

/* One configuration: its own profiler and backend, as cogpu-bench train --kernels does. */
static int run_config(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                      const cg_batch_t *batch, int graph, int first) {
  char err[1024], title[64];
  snprintf(title, sizeof title, "bf16 graph %s", graph ? "on" : "off");
  printf("RUN %s: %d warm-up steps, %d counted\n", title, WARMUP, STEPS);
  cg_kprof_t *kp = cg_kprof_create(err, sizeof err);
  if (!kp) {
    if (first) {
      printf("\n*** SKIP: a GPU is present but CUPTI cannot be used: %s ***\n\n", err);
      return CG_TEST_SKIP;
    }
    CG_TEST_CHECK(kp != NULL, "a second profiler could not be created: %s", err);
    return 1;
  }
  cg_backend_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch = N;
  cfg.precision = CG_PREC_BF16;
  cfg.deterministic = 1;
  cfg.dice_weight = 1.0f;
  cfg.cuda_graph = graph;
  cfg.buckets = bk;
  cfg.fault_nan_step = -1;
  cfg.kprof = kp;
  const cg_backend_ops_t *ops = &cg_backend_cuda;
  cg_backend_t *b = NULL;
  if (ops->create(m, &cfg, &b, err, sizeof err)) CG_FATAL("cuda backend: %s", err);
  ops->set_params(b, p0);
  for (int s = 0; s < CG_DEV_SLOTS; s++) {
    ops->upload(b, s, batch);
    ops->upload_wait(b, s);
  }
  cg_step_out_t o;
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 0, 0.0f};
  for (int k = 0; k < WARMUP; k++) { /* graphs: eager steps, then one capture per slot */
    opt.t = k + 1;
    ops->train_step(b, k % CG_DEV_SLOTS, &opt);
    ops->fetch(b, &o);
  }
  cg_kprof_start(kp);
  const double t0 = cg_now();
  for (int k = WARMUP; k < WARMUP + STEPS; k++) {
    opt.t = k + 1;
    ops->train_step(b, k % CG_DEV_SLOTS, &opt);
    ops->fetch(b, &o);
  }
  const double wall_us = 1e6 * (cg_now() - t0) / STEPS;
  cg_kprof_stop(kp, STEPS);
  CG_TEST_CHECK(isfinite(o.loss), "loss %g", o.loss);
  char path[] = "/tmp/cg_kprof_testXXXXXX";
  const int fd = mkstemp(path);
  CG_ASSERT(fd >= 0);
  close(fd);
  umask(022); /* the JSON replaces mkstemp's 0600 file with one that follows the umask */
  const int rc = cg_kprof_report(kp, title, 1e-3 * wall_us, 0, 0, stdout, path);
  CG_TEST_CHECK(rc == 0, "cg_kprof_report could not write %s", path);
  struct stat st = {0};
  CG_TEST_CHECK(rc != 0 || (stat(path, &st) == 0 && (st.st_mode & 07777) == 0644),
                "%s: mode %o, want 0644 under umask 022", path, (unsigned)(st.st_mode & 07777));
  if (rc == 0) check_json(m, path, title, graph, wall_us);
  unlink(path);
  ops->destroy(b);
  cg_kprof_destroy(kp);
  return 0;
}

int main(void) {
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  cg_model_t m;
  cg_buckets_t bk;
  float *p0 = cg_test_unet(&m, &bk, IN_C, BASE, DEPTH, HW, 0, 7);
  cg_test_data_t d = cg_test_data_make(N, HW, HW, IN_C, 0, 42);
  cg_batch_t batch = cg_test_data_batch(&d);
  int rc = run_config(&m, &bk, p0, &batch, 1, 1);
  if (rc == 0) rc = run_config(&m, &bk, p0, &batch, 0, 0);
  cg_test_data_free(&d);
  free(p0);
  if (rc == CG_TEST_SKIP) return CG_TEST_SKIP;
  return cg_test_done("test_gpu_kprof");
}
