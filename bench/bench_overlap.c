/* bench_overlap.c: `cogpu-bench overlap` — what CPU-GPU cooperation buys, on the real trainer.
 *
 * The same training run (every `train` flag but its outputs, which bench_util.c refuses, passed
 * through) twice:
 *  (a) serial: no helper threads — the driving thread loads, augments, featurises and packs
 *      each batch when it needs it and counts the metrics of the last step between device
 *      steps (--cpu-workers 0 --split cpu --prefetch 1);
 *  (b) cooperative: helper threads on the rank's cores preparing batches ahead into the ring,
 *      metrics counted by the helpers while the device runs later steps, and the adaptive
 *      CPU/GPU split (--cpu-workers auto --split auto --prefetch 3 unless given).
 * Both report the steady state: img/s, device busy and data wait from the last report window
 * (the second half of the run). Works on both backends; on the cpu backend "device" means the
 * compute threads. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "config.h"
#include "log.h"
#include "train.h"

typedef struct {
  const char *json_out;
  cg_config_t train; /* every `cogpu-dist train` option */
} opts_t;

static const cg_opt_t g_opts[] = {CG_BENCH_OPT_JSON_OUT(opts_t)};
static const opts_t g_defaults = {NULL, {0}};

/* Bench defaults where the user said nothing: a run long enough for a steady window. */
static void overlap_given(void *arg, int argc, char **argv) {
  cg_bench_train_defaults(&((opts_t *)arg)->train, argc, argv, 120, 1);
}

static int overlap_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  const char *json_out = o->json_out;
  const cg_config_t cfg = o->train;
  cg_train_result_t res[2];
  const char *name[2] = {"serial", "cooperative"};
  for (int mode = 0; mode < 2; mode++) {
    cg_config_t run = cfg;
    if (mode == 0) {
      run.cpu_workers = 0;
      run.prefetch = 1;
      snprintf(run.split, sizeof run.split, "cpu");
    } /* else as given: by default --cpu-workers -1 (auto), --prefetch 3, --split auto */
    if (c->rank == 0) {
      printf("# ---- %s run ----\n", name[mode]);
      fflush(stdout);
    }
    const int rc = cg_train_run(&run, c, &res[mode]);
    if (rc) return rc;
  }
  if (c->rank != 0) return 0;
  double base = res[0].last_img_per_s;
  printf("# cogpu-bench overlap: %d rank(s), batch %d, %lld steps, steady state = the last "
         "report window\n", c->size, cfg.batch, (long long)cfg.steps);
  printf("# %-12s %10s %9s %10s %10s %10s %10s\n", "mode", "img/s", "speed-up", "busy", "data_wait",
         "cpu_busy", "cpu_share");
  char js[2048];
  size_t len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"overlap\", \"ranks\": %d, \"batch\": %d, "
                                "\"steps\": %lld, \"rows\": [", c->size, cfg.batch, (long long)cfg.steps);
  for (int m = 0; m < 2; m++) {
    const cg_train_result_t *r = &res[m];
    char busy[16] = "-", cb[16] = "-", f1[32], f2[32];
    if (r->gpu_busy >= 0) snprintf(busy, sizeof busy, "%.1f%%", 100 * r->gpu_busy);
    if (r->cpu_busy >= 0) snprintf(cb, sizeof cb, "%.1f%%", 100 * r->cpu_busy);
    printf("  %-12s %10.1f %9.2f %10s %9.1f%% %10s %9.2f\n", name[m], r->last_img_per_s,
           r->last_img_per_s / base, busy, 100 * r->data_wait, cb, r->cpu_share);
    len += (size_t)snprintf(js + len, sizeof js - len,
                            "%s{\"mode\": \"%s\", \"img_per_s\": %.3f, \"speedup\": %.4f, "
                            "\"busy\": %s, \"data_wait\": %.4f, \"cpu_busy\": %s, "
                            "\"cpu_share\": %.4f}",
                            m ? ", " : "", name[m], r->last_img_per_s, r->last_img_per_s / base,
                            cg_bench_json_fig(f1, r->gpu_busy), r->data_wait,
                            cg_bench_json_fig(f2, r->cpu_busy), r->cpu_share);
  }
  snprintf(js + len, sizeof js - len, "]}");
  cg_bench_write_json(json_out, js);
  return 0;
}

const cg_bench_t cg_bench_overlap = {
    .name = "overlap",
    .summary = "the same training run serial (driving thread does the data work) and\n"
               "cooperative (helpers, prefetch, async metrics, split): img/s, GPU busy",
    .about = "  runs the same training twice: serial (the driving thread does the data work\n"
             "  between device steps) and cooperative (helpers, prefetch, async metrics,\n"
             "  auto split), and prints img/s, speed-up, device busy and data wait of each.\n"
             "  Defaults: --steps 120 --report-every 60 --val-samples 0 --progress off.",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .train_off = offsetof(opts_t, train),
    .given = overlap_given,
    .run = overlap_run,
};
