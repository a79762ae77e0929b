/* bench_overlap.c: `cogpu-bench overlap` — what CPU-GPU cooperation buys, on the real trainer.
 *
 * The same training run (every `train` flag is accepted and passed through) twice:
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

int cg_bench_overlap(int argc, char **argv, cg_comm_t *c) {
  const char *json_out = NULL;
  /* Our own flags, then everything else goes to `train`. */
  char **targv = cg_calloc((size_t)argc + 2, sizeof(char *), "argv");
  int targc = 0;
  targv[targc++] = "cogpu-bench";
  targv[targc++] = "train";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (c->rank == 0)
        printf("usage: cogpu-bench overlap [--json-out FILE] [train options]\n"
               "  runs the same training twice: serial (the driving thread does the data work\n"
               "  between device steps) and cooperative (helpers, prefetch, async metrics,\n"
               "  auto split), and prints img/s, speed-up, device busy and data wait of each.\n"
               "  Defaults: --steps 120 --report-every 60 --val-samples 0 --progress off.\n");
      free(targv);
      return 0;
    }
    if (!strcmp(argv[i], "--json-out") && i + 1 < argc) {
      json_out = argv[++i];
      continue;
    }
    targv[targc++] = argv[i];
  }
  cg_config_t cfg;
  char err[512];
  int rc = cg_cli_parse(targc, targv, &cfg, err, sizeof err);
  free(targv);
  if (rc != 0) {
    if (c->rank == 0) fprintf(stderr, "cogpu-bench overlap: %s\n", rc < 0 ? err : "bad arguments");
    return 2;
  }
  /* Bench defaults where the user said nothing: a run long enough for a steady window. */
  int user_steps = 0, user_report = 0, user_val = 0, user_progress = 0, user_workers = 0,
      user_prefetch = 0;
  for (int i = 1; i < argc; i++) {
    user_steps |= !strncmp(argv[i], "--steps", 7) || !strncmp(argv[i], "--epochs", 8);
    user_report |= !strncmp(argv[i], "--report-every", 14);
    user_val |= !strncmp(argv[i], "--val-samples", 13) || !strncmp(argv[i], "--val-every", 11);
    user_progress |= !strncmp(argv[i], "--progress", 10);
    user_workers |= !strncmp(argv[i], "--cpu-workers", 13);
    user_prefetch |= !strncmp(argv[i], "--prefetch", 10);
  }
  if (!user_steps) cfg.steps = 120;
  if (!user_report) cfg.report_every = cfg.steps > 1 ? cfg.steps / 2 : 1;
  if (!user_val) cfg.val_samples = 0;
  if (!user_progress) snprintf(cfg.progress, sizeof cfg.progress, "off");
  cg_train_result_t res[2];
  const char *name[2] = {"serial", "cooperative"};
  for (int mode = 0; mode < 2; mode++) {
    cg_config_t run = cfg;
    if (mode == 0) {
      run.cpu_workers = 0;
      run.prefetch = 1;
      snprintf(run.split, sizeof run.split, "cpu");
    } else {
      if (!user_workers) run.cpu_workers = -1;
      if (!user_prefetch) run.prefetch = 3;
    }
    if (c->rank == 0) {
      printf("# ---- %s run ----\n", name[mode]);
      fflush(stdout);
    }
    rc = cg_train_run(&run, c, &res[mode]);
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
    char busy[16] = "-", cb[16] = "-";
    if (r->gpu_busy >= 0) snprintf(busy, sizeof busy, "%.1f%%", 100 * r->gpu_busy);
    if (r->cpu_busy >= 0) snprintf(cb, sizeof cb, "%.1f%%", 100 * r->cpu_busy);
    printf("  %-12s %10.1f %9.2f %10s %9.1f%% %10s %9.2f\n", name[m], r->last_img_per_s,
           r->last_img_per_s / base, busy, 100 * r->data_wait, cb, r->cpu_share);
    len += (size_t)snprintf(js + len, sizeof js - len,
                            "%s{\"mode\": \"%s\", \"img_per_s\": %.3f, \"speedup\": %.4f, "
                            "\"busy\": %.4f, \"data_wait\": %.4f, \"cpu_busy\": %.4f, "
                            "\"cpu_share\": %.4f}",
                            m ? ", " : "", name[m], r->last_img_per_s, r->last_img_per_s / base,
                            r->gpu_busy, r->data_wait, r->cpu_busy, r->cpu_share);
  }
  snprintf(js + len, sizeof js - len, "]}");
  printf("JSON %s\n", js);
  cg_bench_write_json(json_out, js);
  return 0;
}
