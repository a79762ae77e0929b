/* fuzz_cli.c: the command-line parsers — cogpu-dist's (src/run/cli.c) and every cogpu-bench
 * sub-command's (bench/), both on the option engine (src/base/opts.c) — and the --help they print.
 *
 * An input is an argument vector: arguments separated by NUL bytes (printf '%s\0' ... writes
 * one), argv[0] = "cogpu-dist" added in front. The parser's contract (cli.h) is checked:
 * -1 always comes with a message, 0 and 1 with an empty one, 1 only with something to show,
 * and every string option is NUL-terminated within its field. When argv[1] names a benchmark,
 * the rest is also parsed as its command line (bench_util.h: the same contract for its -1, 0
 * and 1; nothing is run), and when it is "predict", by predict's parser (--resize, --scales,
 * ...: cg_predict_parse_args). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"     // CG_BENCH_LIST, cg_bench_parse, cg_bench_print_help
#include "cli.h"       // cg_cli_parse, cg_cli_print_help, cg_config_t
#include "fuzz_util.h" // cg_fuzz_devnull, cg_fuzz_strndup
#include "predict.h"   // cg_predict_parse_args

#define MAX_ARGS 128

static FILE *g_null;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_cli: %s\n", what);
  abort();
}

#define TERMINATED(field) (memchr(cfg.field, 0, sizeof cfg.field) != NULL)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_null = cg_fuzz_devnull(0);
  return 0;
}

/* argv[0] = a benchmark's name: its parser, under the same contract. */
static void fuzz_bench(int argc, char **argv) {
  static const cg_bench_t *const benches[] = {CG_BENCH_LIST};
  for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) {
    const cg_bench_t *b = benches[i];
    if (strcmp(argv[0], b->name)) continue;
    void *opts = malloc(b->size);
    char err[512] = "";
    int rc = cg_bench_parse(b, argc, argv, opts, err, sizeof err);
    if (rc < -1 || rc > 1) fail("cg_bench_parse returned something else than -1, 0 or 1");
    if (rc == -1 && !err[0]) fail("a bench error without a message");
    if (rc >= 0 && err[0]) fail("a bench message without an error");
    if (rc == 1) cg_bench_print_help(g_null, b);
    free(opts);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  char *buf = cg_fuzz_strndup(data, n);
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = "cogpu-dist";
  /* each argument ends at a NUL (buf[n] is one); an empty input is a bare "cogpu-dist" */
  for (size_t at = 0; at < n && argc < MAX_ARGS + 1; at += strlen(buf + at) + 1)
    argv[argc++] = buf + at;
  argv[argc] = NULL;
  cg_config_t cfg;
  char err[512] = "";
  int rc = cg_cli_parse(argc, argv, &cfg, err, sizeof err);
  if (rc < -1 || rc > 1) fail("cg_cli_parse returned something else than -1, 0 or 1");
  if (rc == -1 && !err[0]) fail("an error without a message");
  if (rc >= 0 && err[0]) fail("a message without an error");
  if (rc == 1 && cfg.show == CG_SHOW_NONE) fail("1 with nothing to show");
  if (rc == 0 && (cfg.cmd == CG_CMD_NONE || cfg.show != CG_SHOW_NONE))
    fail("a ready configuration without a command");
  if (!TERMINATED(backend) || !TERMINATED(precision) || !TERMINATED(data) ||
      !TERMINATED(val_data) || !TERMINATED(resume) || !TERMINATED(checkpoint_dir) ||
      !TERMINATED(trace_steps) || !TERMINATED(stats_out) || !TERMINATED(lr_schedule) ||
      !TERMINATED(lr_milestones) || !TERMINATED(class_weights))
    fail("a string option not NUL-terminated within its field");
  if (rc == 1) cg_cli_print_help(g_null, cfg.cmd);
  if (argc >= 2) fuzz_bench(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "predict")) { /* predict's own parser, the same contract */
    char perr[1024] = "";
    rc = cg_predict_parse_args(argc - 1, argv + 1, perr, sizeof perr);
    if (rc < -1 || rc > 1) fail("predict's parser returned something else than -1, 0 or 1");
    if (rc == -1 && !perr[0]) fail("a predict error without a message");
    if (rc >= 0 && perr[0]) fail("a predict message without an error");
  }
  free(buf);
  return 0;
}
