/* bench_util.c: what every benchmark shares (bench_util.h): parsing a benchmark's command line
 * with the option engine, its --help, the training-run defaults of overlap and scaling, the
 * JSON line and the median. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h" // cg_afile_*: the --json-out file, replaced atomically
#include "bench_util.h"
#include "cli.h"         // cg_cli_opts, cg_cli_defaults, cg_cli_check: the training options
#include "log.h"         // cg_malloc

/* The struct's training configuration, or NULL. */
static cg_config_t *train_cfg(const cg_bench_t *b, void *opts) {
  return b->train_off ? (cg_config_t *)((char *)opts + b->train_off) : NULL;
}

/* opts = the defaults; the sets: the benchmark's own rows, then train's when it takes them. */
static int option_sets(const cg_bench_t *b, void *opts, cg_opts_set_t sets[2]) {
  memcpy(opts, b->defaults, b->size);
  sets[0] = (cg_opts_set_t){b->opts, b->nopts, 0, opts, 0};
  cg_config_t *cfg = train_cfg(b, opts);
  if (!cfg) return 1;
  cg_cli_defaults(cfg);
  cfg->cmd = CG_CMD_TRAIN;
  sets[1] = cg_cli_opts(CG_CMD_TRAIN, cfg);
  sets[1].hide = CG_OPT_OUTPUT; /* refused below: not in --help */
  return 2;
}

/* A benchmark runs several trainings (scaling's points, overlap's two modes): one checkpoint
 * directory, metrics file or log shared by them would be refused by the second run, overwritten
 * by each or mixed. The first of train's output flags given, as an error; 0 when none. */
static int refuse_outputs(const cg_bench_t *b, const cg_opts_set_t *train, int argc,
                          char **argv, char *err, size_t errlen) {
  for (size_t i = 0; i < train->n; i++) {
    const cg_opt_t *o = &train->opts[i];
    if (!(o->flags & CG_OPT_OUTPUT) || !(o->cmds & train->cmds) ||
        !cg_opts_given(train, argc, argv, o->name))
      continue;
    snprintf(err, errlen, "--%s: a training output, not taken by cogpu-bench %s: it runs several "
             "trainings and writes its own JSON line (stdout, --json-out)", o->name, b->name);
    return -1;
  }
  return 0;
}

/* --json-out is checked before the benchmark runs (minutes on a GPU), as train checks its
 * outputs: a directory that does not exist, a FIFO or a device is refused up front. */
static int check_json_out(const cg_opts_set_t *set, char *err, size_t errlen) {
  for (size_t i = 0; i < set->n; i++) {
    const cg_opt_t *o = &set->opts[i];
    if (strcmp(o->name, "json-out") != 0) continue;
    const char *path;
    memcpy(&path, (const char *)set->dst + o->off, sizeof path);
    if (path && cg_afile_check("--json-out", path, CG_AFILE_REPLACE, err, errlen)) return -1;
  }
  return 0;
}

int cg_bench_parse(const cg_bench_t *b, int argc, char **argv, void *opts, char *err,
                   size_t errlen) {
  cg_opts_set_t sets[2];
  const int nsets = option_sets(b, opts, sets);
  char prog[64];
  snprintf(prog, sizeof prog, "cogpu-bench %s", b->name);
  int rc = cg_opts_parse(sets, nsets, argc - 1, argv + 1, b->name, prog, err, errlen);
  if (rc) return rc;
  if (nsets > 1 && refuse_outputs(b, &sets[1], argc - 1, argv + 1, err, errlen)) return -1;
  if (b->given) b->given(opts, argc, argv);
  cg_config_t *cfg = train_cfg(b, opts);
  if (cfg && cg_cli_check(cfg, err, errlen)) return -1;
  if (b->check && b->check(opts, err, errlen)) return -1;
  return check_json_out(&sets[0], err, errlen);
}

void cg_bench_print_help(FILE *f, const cg_bench_t *b) {
  void *opts = cg_malloc(b->size, "bench options");
  cg_opts_set_t sets[2];
  const int nsets = option_sets(b, opts, sets);
  fprintf(f, "usage: cogpu-bench %s [options]%s\n%s\n\n", b->name,
          nsets > 1 ? " [training options]" : "", b->about);
  cg_opts_print(f, "options (default in brackets):", &sets[0]);
  if (nsets > 1) {
    cg_opts_print(f, "\ntraining options (as for cogpu-dist train; defaults as there unless said "
                     "above):", &sets[1]);
    fprintf(f, "  train's outputs are refused: the benchmark runs several trainings and writes its "
               "own JSON line:");
    for (size_t i = 0, col = 80; i < sets[1].n; i++) {
      const cg_opt_t *o = &sets[1].opts[i];
      if (!(o->flags & CG_OPT_OUTPUT) || !(o->cmds & sets[1].cmds)) continue;
      if (col + strlen(o->name) > 90) col = (size_t)fprintf(f, "\n   ") - 1;
      col += (size_t)fprintf(f, " --%s", o->name);
    }
    fprintf(f, "\n  --trace-out keeps the last training's timeline (scaling: the N-rank point; "
               "overlap: the\n  cooperative run)\n");
  }
  cg_opts_print_help(f);
  free(opts);
}

static int given(int argc, char **argv, const char *flag) {
  const size_t n = strlen(flag);
  for (int i = 1; i < argc; i++)
    if (!strncmp(argv[i], flag, n)) return 1;
  return 0;
}

void cg_bench_train_defaults(cg_config_t *cfg, int argc, char **argv, int64_t steps,
                             int val_every_too) {
  if (!given(argc, argv, "--steps") && !given(argc, argv, "--epochs"))
    cfg->steps = steps;
  if (!given(argc, argv, "--report-every"))
    cfg->report_every = cfg->steps > 1 ? cfg->steps / 2 : 1;
  if (!given(argc, argv, "--val-samples") &&
      !(val_every_too && given(argc, argv, "--val-every")))
    cfg->val_samples = 0;
  if (!given(argc, argv, "--progress"))
    snprintf(cfg->progress, sizeof cfg->progress, "off");
}

int cg_bench_write_json(const char *path, const char *json) {
  printf("JSON %s\n", json);
  fflush(stdout);
  if (!path) return 0;
  char err[1024];
  cg_afile_t *f = cg_afile_open(path, err, sizeof err);
  if (f) fprintf(cg_afile_stream(f), "%s\n", json);
  if (!f || cg_afile_commit(f, err, sizeof err)) {
    fprintf(stderr, "cogpu-bench: could not write %s\n", err);
    return 1;
  }
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double cg_bench_median(const double *v, int n) {
  if (n <= 0) return 0;
  double *t = cg_malloc(sizeof(double) * (size_t)n, "median");
  memcpy(t, v, sizeof(double) * (size_t)n);
  qsort(t, (size_t)n, sizeof(double), cmp_d);
  double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  free(t);
  return m;
}

const char *cg_bench_json_fig(char buf[32], double v) {
  if (v < 0 || !isfinite(v)) snprintf(buf, 32, "null");
  else snprintf(buf, 32, "%.4f", v);
  return buf;
}
