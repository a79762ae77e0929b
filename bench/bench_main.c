/* bench_main.c: cogpu-bench — dispatches to the benchmark named by the first argument. */
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "bench.h"
#include "log.h"

int cg_bench_parse_list(const char *s, int *out, int max) {
  int n = 0;
  const char *p = s;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || n >= max) return -1;
    out[n++] = (int)v;
    if (*end == ',') end++;
    else if (*end) return -1;
    p = end;
  }
  return n;
}

int cg_bench_write_json(const char *path, const char *json) {
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

static void usage(FILE *f) {
  fprintf(f,
          "usage: cogpu-bench BENCHMARK [options]   (BENCHMARK --help for its options)\n\n"
          "benchmarks:\n"
          "  train      steady-state training img/s, ms/step and device memory of the real step,\n"
          "             data already on the device\n"
          "  allreduce  float32 sum all-reduce over the ranks, NCCL and MPI, 8 B to 256 MB\n"
          "  membw      copy bandwidth: CPU memcpy, h2d/d2h pinned and pageable, d2d\n"
          "  cpu-tasks  helper-task throughput on 1..all cores, pinned and unpinned\n"
          "  overlap    the same training run serial (driving thread does the data work) and\n"
          "             cooperative (helpers, prefetch, async metrics, split): img/s, GPU busy\n"
          "  scaling    weak scaling of the real step over 1..N ranks, and a projection to\n"
          "             8..1024 GPUs from the measured step and an interconnect model\n"
          "  make-pngs  write synthetic samples as a PNG directory (input for the PNG benchmarks)\n"
          "             (all_reduce_perf style: time, algbw, busbw, results checked first)\n");
}

int main(int argc, char **argv) {
  cg_comm_t c;
  cg_comm_init(&c, &argc, &argv);
  int rc = 2;
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    if (c.rank == 0) usage(argc < 2 ? stderr : stdout);
    rc = argc < 2 ? 2 : 0;
  } else if (!strcmp(argv[1], "train")) {
    rc = cg_bench_train(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "allreduce")) {
    rc = cg_bench_allreduce(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "membw")) {
    rc = cg_bench_membw(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "cpu-tasks")) {
    rc = cg_bench_cputasks(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "overlap")) {
    rc = cg_bench_overlap(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "scaling")) {
    rc = cg_bench_scaling(argc - 1, argv + 1, &c);
  } else if (!strcmp(argv[1], "make-pngs")) {
    rc = cg_bench_makepngs(argc - 1, argv + 1, &c);
  } else {
    if (c.rank == 0) {
      fprintf(stderr, "cogpu-bench: unknown benchmark '%s'\n", argv[1]);
      usage(stderr);
    }
  }
  cg_comm_finalize(&c);
  return rc;
}
