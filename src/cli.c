/* cli.c: command-line parsing from one table of options.
 *
 * The table is the single source of truth: parsing, range checks, error messages and --help
 * all come from it, so a documented flag cannot drift from what is parsed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "png_io.h"

/* T_OPTSTR: a string whose value may be left out (--resume [FILE]): the next argument is taken
 * only if it does not start with '-'; --name=VALUE always works. Given bare, the option stores
 * its `choices` field (the bare meaning, e.g. CG_RESUME_LATEST). */
typedef enum { T_INT, T_I64, T_U64, T_DBL, T_STR, T_FLAG, T_ONOFF, T_OPTSTR } opt_type_t;

/* Which commands take the option. */
#define C_TRAIN (1u << CG_CMD_TRAIN)
#define C_INFO (1u << CG_CMD_INFO)

typedef struct {
  const char *name;     /* without the leading "--" */
  opt_type_t type;
  size_t off;           /* into cg_config_t */
  size_t size;          /* T_STR: buffer size */
  double min, max;      /* numeric range, inclusive; min_excl makes min exclusive */
  int min_excl;
  const char *choices;  /* T_STR: "a|b|c", NULL = free text */
  unsigned cmds;
  const char *metavar;
  const char *help;
} opt_t;

#define O(f) offsetof(cg_config_t, f), sizeof(((cg_config_t *)0)->f)

static const opt_t g_opts[] = {
    /* backend */
    {"backend", T_STR, O(backend), 0, 0, 0, "auto|cpu|cuda", C_TRAIN | C_INFO, "B",
     "compute backend; auto = cuda when a GPU is usable, else cpu (it says which)"},
    {"precision", T_STR, O(precision), 0, 0, 0, "auto|fp32|bf16|fp16", C_TRAIN, "P",
     "compute precision; auto = bf16 on a GPU, fp32 on the cpu backend (fp32 only)"},
    {"threads", T_INT, O(threads), 0, 4096, 0, NULL, C_TRAIN, "N",
     "compute threads per rank; 0 = the rank's share of the cores it may use"},
    {"cuda-graph", T_ONOFF, O(cuda_graph), 0, 1, 0, NULL, C_TRAIN, "on|off",
     "cuda: replay the steady-state step as a CUDA graph"},
    {"tf32", T_STR, O(tf32), 0, 0, 0, "auto|on|off", C_TRAIN, "T",
     "cuda fp32: TF32 tensor cores in the convolutions; auto = on, as PyTorch's default for "
     "cuDNN convolutions; off = strict fp32"},
    {"algo-cache", T_STR, O(algo_cache), 0, 0, 0, NULL, C_TRAIN, "FILE",
     "cuda: keep the cuDNN algorithm choices in FILE and reuse them in later runs"},
    /* model */
    {"model-base", T_INT, O(model_base), 1, 1024, 0, NULL, C_TRAIN | C_INFO, "N",
     "UNet base width b (widths b, 2b, ..., b*2^depth)"},
    {"model-depth", T_INT, O(model_depth), 1, 6, 0, NULL, C_TRAIN | C_INFO, "N",
     "UNet depth d (number of 2x2 poolings)"},
    {"image-size", T_INT, O(image_size), 2, 8192, 0, NULL, C_TRAIN | C_INFO, "N",
     "images are N x N; N must be a multiple of 2^depth"},
    /* data */
    {"data", T_STR, O(data), 0, 0, 0, NULL, C_TRAIN, "SRC",
     "training data: synthetic (built in), a directory DIR with DIR/images/*.png and "
     "DIR/masks/*.png paired by name, or a shard FILE.cgds written by `cogpu-dist pack`"},
    {"val-data", T_STR, O(val_data), 0, 0, 0, NULL, C_TRAIN, "SRC",
     "separate validation data (directory or .cgds); default: --val-fraction of --data"},
    {"val-fraction", T_DBL, O(val_fraction), 0, 0.9, 0, NULL, C_TRAIN, "F",
     "real data: fraction held out for validation, chosen by a hash of the file names"},
    {"train-samples", T_I64, O(train_samples), 1, 1e12, 0, NULL, C_TRAIN, "N",
     "synthetic: size of the training set"},
    {"val-samples", T_I64, O(val_samples), 0, 1e12, 0, NULL, C_TRAIN, "N",
     "synthetic: size of the held-out validation set (0 = no validation)"},
    {"skip-bad", T_FLAG, O(skip_bad), 0, 1, 0, NULL, C_TRAIN, "",
     "leave out and count bad samples (a PNG that is empty, truncated, corrupt or over "
     "--max-image-pixels; a shard record failing its CRC), at start-up and while training, "
     "instead of ending the job with exit code 2"},
    {"max-image-pixels", T_I64, O(max_image_pixels), 1, 1073741824, 0, NULL, C_TRAIN, "N",
     "an image of more pixels (width x height, read from the PNG header before anything is "
     "allocated) is a bad sample; the default is Pillow's decompression-bomb limit, about "
     "9459 x 9459, far more than any image worth fitting to --image-size"},
    {"check-data", T_FLAG, O(check_data), 0, 1, 0, NULL, C_TRAIN, "",
     "decode every sample once at start-up (split over the ranks and each rank's cores), list "
     "every bad file and a summary; then exit 2 if any is bad, or with --skip-bad train without "
     "them"},
    {"crop", T_ONOFF, O(crop), 0, 1, 0, NULL, C_TRAIN, "on|off",
     "real data: random crops (0.75-1.0 of the side) as augmentation, with the flips"},
    {"cpu-workers", T_INT, O(cpu_workers), -1, 1024, 0, NULL, C_TRAIN, "N",
     "helper threads per rank preparing batches; -1 = auto"},
    {"prefetch", T_INT, O(prefetch), 1, 64, 0, NULL, C_TRAIN, "N",
     "batches prepared ahead of the one being trained"},
    {"split", T_STR, O(split), 0, 0, 0, "auto|cpu|gpu", C_TRAIN, "S",
     "where features, normalisation and metrics run: the helpers (cpu), the device (gpu), or "
     "auto: a controller moves samples between them so the device never waits for data"},
    {"split-every", T_INT, O(split_every), 1, 1e6, 0, NULL, C_TRAIN, "N",
     "steps per window of the auto split controller"},
    /* training */
    {"batch", T_INT, O(batch), 1, 65536, 0, NULL, C_TRAIN, "N",
     "samples per step per rank (global batch = ranks x N)"},
    {"steps", T_I64, O(steps), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "training steps; 0 = run --epochs epochs"},
    {"epochs", T_I64, O(epochs), 1, 1e9, 0, NULL, C_TRAIN, "N",
     "epochs to train when --steps is 0"},
    {"lr", T_DBL, O(lr), 0, 10, 1, NULL, C_TRAIN, "X", "AdamW learning rate, in (0, 10]"},
    {"weight-decay", T_DBL, O(weight_decay), 0, 1, 0, NULL, C_TRAIN, "X",
     "AdamW decoupled weight decay"},
    {"beta1", T_DBL, O(beta1), 0, 1, 0, NULL, C_TRAIN, "X", "AdamW beta1, in [0, 1)"},
    {"beta2", T_DBL, O(beta2), 0, 1, 0, NULL, C_TRAIN, "X", "AdamW beta2, in [0, 1)"},
    {"eps", T_DBL, O(eps), 0, 1, 1, NULL, C_TRAIN, "X", "AdamW epsilon"},
    {"warmup-steps", T_I64, O(warmup_steps), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "linear learning-rate warm-up over the first N steps"},
    {"lr-schedule", T_STR, O(lr_schedule), 0, 0, 0, "constant|cosine", C_TRAIN, "S",
     "learning rate after warm-up: constant, or cosine decay to 0 at the last step"},
    {"seed", T_U64, O(seed), 0, 1.8e19, 0, NULL, C_TRAIN | C_INFO, "N",
     "seed of the initial weights, the data and the shuffles"},
    {"val-every", T_I64, O(val_every), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "validate every N steps (0 = only at the end)"},
    {"report-every", T_I64, O(report_every), 1, 1e15, 0, NULL, C_TRAIN, "N",
     "print the performance line every N steps"},
    {"metrics-out", T_STR, O(metrics_out), 0, 0, 0, NULL, C_TRAIN, "FILE",
     "write the final metrics as one JSON object to FILE"},
    {"params-out", T_STR, O(params_out), 0, 0, 0, NULL, C_TRAIN, "FILE",
     "write the final fp32 parameters to FILE (raw little-endian floats, model.h layout)"},
    {"prom-out", T_STR, O(prom_out), 0, 0, 0, NULL, C_TRAIN, "FILE",
     "rewrite FILE.prom (atomically) with the same figures in the Prometheus text format, "
     "for node_exporter's textfile collector"},
    {"trace-out", T_STR, O(trace_out), 0, 0, 0, NULL, C_TRAIN, "PREFIX",
     "write a Chrome/Perfetto timeline per rank to PREFIX.rank<R>.json: the h2d, compute, comm "
     "and d2h streams and every helper thread over --trace-steps"},
    {"trace-steps", T_STR, O(trace_steps), 0, 0, 0, NULL, C_TRAIN, "A:B",
     "the steps the timeline covers"},
    {"stats-out", T_STR, O(stats_out), 0, 0, 0, NULL, C_TRAIN, "FILE",
     "append the balance report as one JSON line per report to FILE (for monitors)"},
    {"bucket-mb", T_DBL, O(bucket_mb), 0, 1e6, 0, NULL, C_TRAIN, "X",
     "gradient all-reduce bucket size in MB (0 = one bucket)"},
    {"deterministic", T_FLAG, O(deterministic), 0, 1, 0, NULL, C_TRAIN, "",
     "fixed summation orders: results independent of --bucket-mb and timing"},
    {"allreduce", T_STR, O(allreduce), 0, 0, 0, "auto|nccl|mpi", C_TRAIN, "M",
     "gradient all-reduce: auto = nccl when every rank has its own GPU, else mpi (it says why)"},
    {"progress", T_STR, O(progress), 0, 0, 0, "auto|bar|plain|off", C_TRAIN, "M",
     "rank 0 progress: a bar on a terminal, plain log lines otherwise (auto)"},
    /* checkpoints and failures */
    {"checkpoint-dir", T_STR, O(checkpoint_dir), 0, 0, 0, NULL, C_TRAIN, "DIR",
     "write checkpoints (weights, optimizer, loss scaler, data position) to DIR, created if "
     "missing; one at the end and one when stopped by SIGTERM/SIGINT/SIGUSR1"},
    {"checkpoint-every", T_I64, O(checkpoint_every), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "also write a checkpoint every N steps (0 = only at the end and on a stop signal)"},
    {"keep", T_INT, O(keep), 1, 1e6, 0, NULL, C_TRAIN, "K",
     "checkpoints of this run kept in --checkpoint-dir (its older ones are removed; another "
     "run's never are)"},
    {"overwrite-checkpoints", T_FLAG, O(overwrite_checkpoints), 0, 1, 0, NULL, C_TRAIN, "",
     "start afresh in a --checkpoint-dir that already holds checkpoints (a checkpoint of the "
     "same step is replaced; without this flag, or --resume, such a run refuses to start)"},
    {"resume", T_OPTSTR, O(resume), 0, 0, 0, CG_RESUME_LATEST, C_TRAIN, "[FILE|DIR]",
     "continue from a checkpoint: FILE, the newest valid one in DIR, or bare: in "
     "--checkpoint-dir (a corrupt one is reported and the next older used; none: start afresh)"},
    {"timeout-s", T_DBL, O(timeout_s), 0, 1e7, 0, NULL, C_TRAIN, "S",
     "a rank that makes no progress for S seconds (hung peer, dead NCCL) ends the job with a "
     "message; 0 = no watchdog"},
    {"max-bad-steps", T_I64, O(max_bad_steps), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "fp16: stop after more than N consecutive steps skipped for inf/NaN gradients"},
    /* test-only faults */
    {"test-nan-step", T_I64, O(test_nan_step), 0, 1e15, 0, NULL, C_TRAIN, "N",
     "testing: make the loss and gradient of step N (1-based) NaN on every rank; 0 = off"},
    {"test-slow-rank", T_INT, O(test_slow_rank), -1, 1e6, 0, NULL, C_TRAIN, "R",
     "testing: rank R sleeps --test-slow-ms per step (a straggler)"},
    {"test-slow-ms", T_INT, O(test_slow_ms), 0, 1e6, 0, NULL, C_TRAIN, "MS",
     "testing: milliseconds the --test-slow-rank sleeps per step"},
    {"test-feature-ms", T_DBL, O(test_feat_ms), 0, 1e4, 0, NULL, C_TRAIN, "MS",
     "testing: extra helper milliseconds per sample featurised on the CPU (starved helpers)"},
    /* info */
    {"model", T_FLAG, O(info_model), 0, 1, 0, NULL, C_INFO, "", "print the layer table"},
    {"topology", T_FLAG, O(info_topology), 0, 1, 0, NULL, C_INFO, "",
     "print each rank's host, GPU, NUMA node and cores"},
};
#define NOPTS (sizeof g_opts / sizeof g_opts[0])

void cg_cli_defaults(cg_config_t *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->backend, sizeof c->backend, "auto");
  snprintf(c->precision, sizeof c->precision, "auto");
  c->threads = 0;
  c->cuda_graph = 1;
  snprintf(c->tf32, sizeof c->tf32, "auto");
  c->model_base = 32;
  c->model_depth = 4;
  c->image_size = 256;
  snprintf(c->data, sizeof c->data, "synthetic");
  c->val_fraction = 0.1;
  c->crop = 1;
  c->max_image_pixels = CG_PNG_DEFAULT_MAX_PIXELS;
  c->train_samples = 4096;
  c->val_samples = 512;
  c->cpu_workers = -1;
  c->prefetch = 3;
  snprintf(c->split, sizeof c->split, "auto");
  c->split_every = 10;
  snprintf(c->trace_steps, sizeof c->trace_steps, "10:20");
  c->batch = 32;
  c->steps = 0;
  c->epochs = 1;
  c->lr = 1e-3;
  c->weight_decay = 1e-4;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->warmup_steps = 0;
  snprintf(c->lr_schedule, sizeof c->lr_schedule, "constant");
  c->seed = 1;
  c->val_every = 0;
  c->report_every = 100;
  c->bucket_mb = 25;
  snprintf(c->progress, sizeof c->progress, "auto");
  snprintf(c->allreduce, sizeof c->allreduce, "auto");
  c->test_slow_rank = -1;
  c->checkpoint_every = 0;
  c->keep = 3;
  c->timeout_s = 60;
  c->max_bad_steps = 20;
  c->test_nan_step = 0;
}

static const char *cmd_name(cg_command_t c) {
  switch (c) {
    case CG_CMD_TRAIN: return "train";
    case CG_CMD_INFO: return "info";
    case CG_CMD_PACK: return "pack";
    default: return "";
  }
}

static void fmt_range(const opt_t *o, char *buf, size_t len) {
  if (o->type == T_OPTSTR)
    snprintf(buf, len, "%s", o->metavar);
  else if (o->type == T_STR && o->choices)
    snprintf(buf, len, "one of %s", o->choices);
  else if (o->type == T_ONOFF)
    snprintf(buf, len, "on or off");
  else if (o->type == T_DBL)
    snprintf(buf, len, "%s%g, %g]", o->min_excl ? "(" : "[", o->min, o->max);
  else
    snprintf(buf, len, "%.0f..%.0f", o->min, o->max);
}

static int in_choices(const char *choices, const char *v) {
  size_t n = strlen(v);
  const char *p = choices;
  while (*p) {
    const char *e = strchr(p, '|');
    size_t k = e ? (size_t)(e - p) : strlen(p);
    if (k == n && strncmp(p, v, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

static int set_value(const opt_t *o, const char *v, cg_config_t *cfg, char *err, size_t errlen) {
  char *base = (char *)cfg + o->off;
  char range[96];
  fmt_range(o, range, sizeof range);
  if (o->type == T_STR || o->type == T_OPTSTR) {
    if (o->type == T_STR && o->choices && !in_choices(o->choices, v)) {
      snprintf(err, errlen, "--%s: '%s' is not %s", o->name, v, range);
      return -1;
    }
    if (strlen(v) >= o->size) {
      snprintf(err, errlen, "--%s: value longer than %zu characters", o->name, o->size - 1);
      return -1;
    }
    snprintf(base, o->size, "%s", v);
    return 0;
  }
  if (o->type == T_ONOFF) {
    if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "1") && strcmp(v, "0")) {
      snprintf(err, errlen, "--%s: '%s' is not on or off", o->name, v);
      return -1;
    }
    *(int *)base = (!strcmp(v, "on") || !strcmp(v, "1"));
    return 0;
  }
  errno = 0;
  char *end = NULL;
  double d;
  if (o->type == T_DBL) {
    d = strtod(v, &end);
  } else if (o->type == T_U64) {
    if (v[0] == '-') end = (char *)v;
    else d = (double)strtoull(v, &end, 10);
  } else {
    d = (double)strtoll(v, &end, 10);
  }
  if (end == v || (end && *end) || errno == ERANGE || !isfinite(d)) {
    snprintf(err, errlen, "--%s: '%s' is not a %s", o->name, v,
             o->type == T_DBL ? "number" : "whole number");
    return -1;
  }
  if (d < o->min || d > o->max || (o->min_excl && d <= o->min)) {
    snprintf(err, errlen, "--%s: %s is out of range %s", o->name, v, range);
    return -1;
  }
  switch (o->type) {
    case T_INT: *(int *)base = (int)d; break;
    case T_I64: *(int64_t *)base = strtoll(v, NULL, 10); break;
    case T_U64: *(uint64_t *)base = strtoull(v, NULL, 10); break;
    case T_DBL: *(double *)base = d; break;
    default: break;
  }
  return 0;
}

void cg_cli_print_help(FILE *f, cg_command_t cmd) {
  if (cmd == CG_CMD_NONE) {
    fprintf(f,
            "cogpu-dist %s: CPU-GPU cooperative, MPI-distributed UNet trainer for image "
            "segmentation\n\n"
            "usage: mpirun -np N cogpu-dist COMMAND [options]\n\n"
            "commands:\n"
            "  train    train the UNet data-parallel over all ranks\n"
            "  info     print the model (--model) or the ranks' placement (--topology)\n"
            "  pack     pack a PNG directory into a .cgds shard (one process; see pack --help)\n"
            "  predict  run a checkpoint's model on PNG images, write the masks (see predict --help)\n"
            "  inspect  print a checkpoint's header and verify its CRC (one process)\n\n"
            "cogpu-dist COMMAND --help lists the options of a command.\n"
            "cogpu-dist --version prints the version.\n",
            COGPU_VERSION);
    return;
  }
  fprintf(f, "usage: cogpu-dist %s [options]\n\noptions (default in brackets):\n", cmd_name(cmd));
  cg_config_t d;
  cg_cli_defaults(&d);
  for (size_t i = 0; i < NOPTS; i++) {
    const opt_t *o = &g_opts[i];
    if (!(o->cmds & (1u << cmd))) continue;
    char lhs[64], def[64] = "";
    snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->metavar[0] ? " " : "", o->metavar);
    const char *b = (const char *)&d + o->off;
    switch (o->type) {
      case T_INT: snprintf(def, sizeof def, " [%d]", *(const int *)b); break;
      case T_I64: snprintf(def, sizeof def, " [%lld]", (long long)*(const int64_t *)b); break;
      case T_U64: snprintf(def, sizeof def, " [%llu]", (unsigned long long)*(const uint64_t *)b); break;
      case T_DBL: snprintf(def, sizeof def, " [%g]", *(const double *)b); break;
      case T_STR:
      case T_OPTSTR: if (b[0]) snprintf(def, sizeof def, " [%s]", b); break;
      case T_ONOFF: snprintf(def, sizeof def, " [%s]", *(const int *)b ? "on" : "off"); break;
      case T_FLAG: break;
    }
    fprintf(f, "  %-24s %s%s\n", lhs, o->help, def);
  }
  fprintf(f, "  %-24s %s\n", "-h, --help", "this help");
}

int cg_cli_parse(int argc, char **argv, cg_config_t *cfg, char *err, size_t errlen) {
  cg_cli_defaults(cfg);
  err[0] = 0;
  if (argc < 2) {
    snprintf(err, errlen, "no command given (commands: train, info, predict, pack, inspect; see cogpu-dist --help)");
    return -1;
  }
  const char *c = argv[1];
  if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
    cfg->show = CG_SHOW_HELP;
    return 1;
  }
  if (!strcmp(c, "--version")) {
    cfg->show = CG_SHOW_VERSION;
    return 1;
  }
  if (!strcmp(c, "train")) cfg->cmd = CG_CMD_TRAIN;
  else if (!strcmp(c, "info")) cfg->cmd = CG_CMD_INFO;
  else {
    snprintf(err, errlen,
             "unknown command '%s' (commands: train, info, predict, pack, inspect; see cogpu-dist --help)", c);
    return -1;
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cfg->show = CG_SHOW_HELP;
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (options start with --; see cogpu-dist %s --help)",
               a, cmd_name(cfg->cmd));
      return -1;
    }
    const char *name = a + 2, *val = NULL;
    char namebuf[64];
    const char *eq = strchr(name, '=');
    if (eq) {
      size_t k = (size_t)(eq - name);
      if (k >= sizeof namebuf) k = sizeof namebuf - 1;
      memcpy(namebuf, name, k);
      namebuf[k] = 0;
      name = namebuf;
      val = eq + 1;
    }
    const opt_t *o = NULL;
    for (size_t j = 0; j < NOPTS; j++)
      if (!strcmp(g_opts[j].name, name) && (g_opts[j].cmds & (1u << cfg->cmd))) o = &g_opts[j];
    if (!o) {
      snprintf(err, errlen, "unknown option --%s for '%s' (see cogpu-dist %s --help)", name,
               cmd_name(cfg->cmd), cmd_name(cfg->cmd));
      return -1;
    }
    if (o->type == T_FLAG) {
      if (val) {
        snprintf(err, errlen, "--%s takes no value", o->name);
        return -1;
      }
      *(int *)((char *)cfg + o->off) = 1;
      continue;
    }
    if (!val && o->type == T_OPTSTR)
      val = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : o->choices;
    if (!val) {
      if (i + 1 >= argc) {
        char range[96];
        fmt_range(o, range, sizeof range);
        snprintf(err, errlen, "--%s: missing value (%s%s)", o->name, o->type == T_STR && !o->choices ? "a " : "",
                 o->type == T_STR && !o->choices ? o->metavar : range);
        return -1;
      }
      val = argv[++i];
    }
    if (set_value(o, val, cfg, err, errlen)) return -1;
  }
  /* Cross-flag checks. */
  if (cfg->cmd == CG_CMD_TRAIN) {
    long long a = -1, b = -1;
    char tail = 0;
    if (sscanf(cfg->trace_steps, "%lld:%lld%c", &a, &b, &tail) != 2 || a < 1 || b < a) {
      snprintf(err, errlen, "--trace-steps: '%s' is not A:B with 1 <= A <= B", cfg->trace_steps);
      return -1;
    }
  }
  if (cfg->cmd == CG_CMD_TRAIN || cfg->cmd == CG_CMD_INFO) {
    int div = 1 << cfg->model_depth;
    if (cfg->image_size % div) {
      snprintf(err, errlen, "--image-size: %d is not divisible by 2^depth = %d (--model-depth %d)",
               cfg->image_size, div, cfg->model_depth);
      return -1;
    }
  }
  if (cfg->checkpoint_every > 0 && !cfg->checkpoint_dir[0]) {
    snprintf(err, errlen, "--checkpoint-every: needs --checkpoint-dir DIR");
    return -1;
  }
  if (!strcmp(cfg->resume, CG_RESUME_LATEST) && !cfg->checkpoint_dir[0]) {
    snprintf(err, errlen, "--resume: without a FILE or DIR it loads from --checkpoint-dir, which "
             "is not set");
    return -1;
  }
  if (cfg->beta1 >= 1.0 || cfg->beta2 >= 1.0) {
    snprintf(err, errlen, "--%s: must be below 1", cfg->beta1 >= 1.0 ? "beta1" : "beta2");
    return -1;
  }
  if (!strcmp(cfg->backend, "cpu") && (!strcmp(cfg->precision, "bf16") || !strcmp(cfg->precision, "fp16"))) {
    snprintf(err, errlen, "--precision: %s needs --backend cuda (the cpu backend computes in fp32)",
             cfg->precision);
    return -1;
  }
  return 0;
}
