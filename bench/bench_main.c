/* bench_main.c: cogpu-bench — the driver. Finds the benchmark named by the first argument
 * (bench.h), parses its options (bench_util.h), answers --help and a bad option (rank 0
 * prints; every rank exits 2 without running anything), and runs it. */
#include <stdlib.h>
#include <string.h>

#include "blas_core.h" // cg_blas_pick_core: OpenBLAS's kernels for this CPU
#include "bench.h" // CG_BENCH_LIST: every sub-command; cg_bench_parse, cg_bench_print_help
#include "log.h"   // cg_malloc, CG_EXIT_USAGE

static const cg_bench_t *const g_benches[] = {CG_BENCH_LIST};
#define NBENCH (sizeof g_benches / sizeof g_benches[0])

static void usage(FILE *f) {
  fprintf(f, "usage: cogpu-bench BENCHMARK [options]   (BENCHMARK --help for its options)\n\n"
             "benchmarks:\n");
  for (size_t i = 0; i < NBENCH; i++) {
    const char *s = g_benches[i]->summary, *nl;
    fprintf(f, "  %-10s ", g_benches[i]->name);
    for (; (nl = strchr(s, '\n')); s = nl + 1) fprintf(f, "%.*s\n%13s", (int)(nl - s), s, "");
    fprintf(f, "%s\n", s);
  }
}

static int run_bench(const cg_bench_t *b, int argc, char **argv, cg_comm_t *c) {
  void *opts = cg_malloc(b->size, b->name);
  char err[512];
  int rc = cg_bench_parse(b, argc, argv, opts, err, sizeof err);
  if (rc == 1 && c->rank == 0) cg_bench_print_help(stdout, b);
  if (rc < 0 && c->rank == 0) fprintf(stderr, "cogpu-bench %s: error: %s\n", b->name, err);
  rc = rc == 0 ? b->run(opts, c) : rc == 1 ? 0 : CG_EXIT_USAGE;
  free(opts);
  return rc;
}

int main(int argc, char **argv) {
  cg_blas_pick_core(argv); /* may execute this program again, once (blas_core.h) */
  cg_comm_t c;
  cg_comm_init(&c, &argc, &argv);
  const cg_bench_t *b = NULL;
  for (size_t i = 0; argc >= 2 && i < NBENCH; i++)
    if (!strcmp(argv[1], g_benches[i]->name)) b = g_benches[i];
  int rc = CG_EXIT_USAGE;
  if (b) {
    rc = run_bench(b, argc - 1, argv + 1, &c);
  } else if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    if (c.rank == 0) usage(stdout);
    rc = 0;
  } else if (c.rank == 0) {
    if (argc >= 2) fprintf(stderr, "cogpu-bench: error: unknown benchmark '%s'\n", argv[1]);
    usage(stderr);
  }
  fflush(stdout);
  cg_comm_finalize(&c);
  return rc;
}
