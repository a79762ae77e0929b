/* bench_membw.c: `cogpu-bench membw` — copy bandwidth on the paths a batch travels.
 *
 * For float matrices of 1024^2, 2048^2, 4096^2 and 8192^2 (4 MiB to 256 MiB): CPU memcpy
 * (one thread and all of the rank's threads), and with CUDA host-to-device and device-to-host
 * from pinned and from pageable memory, and device-to-device. Each copy is checked first (the
 * destination must equal the source), warmed up, then timed over repetitions (CUDA events on
 * the GPU, the monotonic clock on the CPU); the median is reported. GB/s counts the bytes copied
 * once (device-to-device also as read + write, the way the ceiling in ARCHITECTURE.md is given),
 * and every figure is also shown as a fraction of the same path's largest-copy figure in this
 * run (the ceiling measured now). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench.h"
#include "log.h"

#ifdef COGPU_HAVE_CUDA
#include <cuda_runtime.h>
#endif

enum { P_MEMCPY1, P_MEMCPYN, P_H2D_PIN, P_H2D_PAGE, P_D2H_PIN, P_D2H_PAGE, P_D2D, NPATH };
static const char *path_name[NPATH] = {"cpu memcpy 1 thread", "cpu memcpy all threads",
                                       "h2d pinned", "h2d pageable", "d2h pinned",
                                       "d2h pageable", "d2d (read+write)"};

static void fill(float *p, size_t n, float seed) {
  for (size_t i = 0; i < n; i++) p[i] = seed + (float)(i % 1021);
}

static void memcpy_par(void *dst, const void *src, size_t bytes) {
#pragma omp parallel
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    size_t chunk = (bytes / (size_t)nt + 63) & ~(size_t)63;
    size_t lo = chunk * (size_t)t, hi = lo + chunk > bytes ? bytes : lo + chunk;
    if (lo < hi) memcpy((char *)dst + lo, (const char *)src + lo, hi - lo);
  }
}

static double time_cpu(void *dst, const void *src, size_t bytes, int par, int reps) {
  double *t = cg_malloc(sizeof(double) * (size_t)reps, "times");
  for (int r = -2; r < reps; r++) {
    double t0 = cg_now();
    if (par) memcpy_par(dst, src, bytes);
    else memcpy(dst, src, bytes);
    if (r >= 0) t[r] = cg_now() - t0;
  }
  double m = cg_bench_median(t, reps);
  free(t);
  return bytes / m / 1e9;
}

/* ---- the GPU paths: one section per build, so membw_run reads the same in both ---------- */

#ifdef COGPU_HAVE_CUDA
#define CK(call)                                                                     \
  do {                                                                               \
    cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) CG_FATAL("%s: %s", #call, cudaGetErrorString(e_));        \
  } while (0)

static double time_gpu(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, int reps,
                       cudaStream_t s) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  double *t = cg_malloc(sizeof(double) * (size_t)reps, "times");
  for (int r = -2; r < reps; r++) {
    CK(cudaEventRecord(a, s));
    CK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    if (r >= 0) t[r] = 1e-3 * ms;
  }
  double m = cg_bench_median(t, reps);
  free(t);
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return bytes / m / 1e9;
}

/* Pinned host buffers, two device buffers and a stream, each maxb bytes. */
typedef struct {
  float *hp, *hq, *d0, *d1;
  cudaStream_t s;
} gpu_bufs_t;

/* 1 with g set up when a GPU is usable (else says why and returns 0, g untouched). */
static int gpu_open(gpu_bufs_t *g, size_t maxb) {
  char why[256];
  if (!cg_cuda_usable(why, sizeof why)) {
    printf("# no usable GPU (%s): CPU paths only\n", why);
    return 0;
  }
  CK(cudaMallocHost((void **)&g->hp, maxb));
  CK(cudaMallocHost((void **)&g->hq, maxb));
  CK(cudaMalloc((void **)&g->d0, maxb));
  CK(cudaMalloc((void **)&g->d1, maxb));
  CK(cudaStreamCreate(&g->s));
  fill(g->hp, maxb / 4, 2.0f);
  return 1;
}

/* Checks, then times, the GPU paths for copies of `bytes` into row[]; a and b are pageable
 * host buffers. Returns the number of copies that did not round-trip exactly. */
static int gpu_measure(gpu_bufs_t *g, float *a, float *b, size_t bytes, int reps,
                       double row[NPATH]) {
  int errors = 0;
  CK(cudaMemcpy(g->d0, g->hp, bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(g->d1, g->d0, bytes, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(g->hq, g->d1, bytes, cudaMemcpyDeviceToHost));
  if (memcmp(g->hp, g->hq, bytes)) errors++;
  CK(cudaMemcpy(g->d0, a, bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(b, g->d0, bytes, cudaMemcpyDeviceToHost));
  if (memcmp(a, b, bytes)) errors++;
  row[P_H2D_PIN] = time_gpu(g->d0, g->hp, bytes, cudaMemcpyHostToDevice, reps, g->s);
  row[P_H2D_PAGE] = time_gpu(g->d0, a, bytes, cudaMemcpyHostToDevice, reps, g->s);
  row[P_D2H_PIN] = time_gpu(g->hq, g->d0, bytes, cudaMemcpyDeviceToHost, reps, g->s);
  row[P_D2H_PAGE] = time_gpu(b, g->d0, bytes, cudaMemcpyDeviceToHost, reps, g->s);
  row[P_D2D] = 2 * time_gpu(g->d1, g->d0, bytes, cudaMemcpyDeviceToDevice, reps, g->s);
  return errors;
}

static void gpu_close(gpu_bufs_t *g) {
  cudaFreeHost(g->hp);
  cudaFreeHost(g->hq);
  cudaFree(g->d0);
  cudaFree(g->d1);
  cudaStreamDestroy(g->s);
}
#else /* a CPU-only build measures the CPU paths */
typedef struct {
  int unused;
} gpu_bufs_t;
static int gpu_open(gpu_bufs_t *g, size_t maxb) {
  (void)g;
  (void)maxb;
  return 0;
}
static int gpu_measure(gpu_bufs_t *g, float *a, float *b, size_t bytes, int reps,
                       double row[NPATH]) {
  (void)g, (void)a, (void)b, (void)bytes, (void)reps, (void)row;
  return 0;
}
static void gpu_close(gpu_bufs_t *g) { (void)g; }
#endif

typedef struct {
  int reps, no_gpu;
  const char *json_out;
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_NUM(INT, "reps", F(reps), 1, 1e6, 0, "N", "timed copies per path and size"),
    CG_OPT_ROW_FLAG("no-gpu", F(no_gpu), 0, "the CPU paths only"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
};
static const opts_t g_defaults = {10, 0, NULL};

/* The table (GB/s and the fraction of the path's 8192^2 figure; gbs < 0: not measured) and
 * the JSON line. */
static void report(double gbs[4][NPATH], int reps, int gpu, int errors, const char *json_out) {
  printf("# cogpu-bench membw: median of %d copies after 2 warm-ups; %s; %d OpenMP threads; "
         "%d copy check error(s)\n", reps, gpu ? "GPU paths included" : "CPU only",
         omp_get_max_threads(), errors);
  printf("# fraction = GB/s / the same path's GB/s at 8192^2 (the ceiling measured in this run)\n");
  printf("# %-24s %12s %12s %12s %12s\n", "path (GB/s, fraction)", "1024^2", "2048^2", "4096^2",
         "8192^2");
  for (int p = 0; p < NPATH; p++) {
    if (gbs[0][p] < 0) continue;
    printf("  %-24s", path_name[p]);
    for (int i = 0; i < 4; i++) printf("  %6.1f %4.0f%%", gbs[i][p], 100.0 * gbs[i][p] / gbs[3][p]);
    printf("\n");
  }
  char js[4096];
  size_t len = (size_t)snprintf(js, sizeof js, "{\"bench\": \"membw\", \"errors\": %d, \"paths\": {", errors);
  int first = 1;
  for (int p = 0; p < NPATH; p++) {
    if (gbs[0][p] < 0) continue;
    len += (size_t)snprintf(js + len, sizeof js - len, "%s\"%s\": [%.3f, %.3f, %.3f, %.3f]",
                            first ? "" : ", ", path_name[p], gbs[0][p], gbs[1][p], gbs[2][p], gbs[3][p]);
    first = 0;
  }
  snprintf(js + len, sizeof js - len, "}, \"sides\": [1024, 2048, 4096, 8192]}");
  cg_bench_write_json(json_out, js);
}

static int membw_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  const int reps = o->reps;
  if (c->rank != 0) return 0;
  const int sides[4] = {1024, 2048, 4096, 8192};
  double gbs[4][NPATH];
  for (int i = 0; i < 4; i++)
    for (int p = 0; p < NPATH; p++) gbs[i][p] = -1;
  int errors = 0;
  size_t maxb = (size_t)8192 * 8192 * sizeof(float);
  gpu_bufs_t g;
  const int gpu = !o->no_gpu && gpu_open(&g, maxb);
  float *a = cg_malloc(maxb, "membw a"), *b = cg_malloc(maxb, "membw b");
  fill(a, maxb / 4, 1.0f);
  memset(b, 0, maxb);
  for (int i = 0; i < 4; i++) {
    size_t bytes = (size_t)sides[i] * sides[i] * sizeof(float);
    /* check, then time */
    memcpy(b, a, bytes);
    if (memcmp(a, b, bytes)) errors++;
    gbs[i][P_MEMCPY1] = time_cpu(b, a, bytes, 0, reps);
    memset(b, 0, bytes);
    memcpy_par(b, a, bytes);
    if (memcmp(a, b, bytes)) errors++;
    gbs[i][P_MEMCPYN] = time_cpu(b, a, bytes, 1, reps);
    if (gpu) errors += gpu_measure(&g, a, b, bytes, reps, gbs[i]);
  }
  report(gbs, reps, gpu, errors, o->json_out);
  free(a);
  free(b);
  if (gpu) gpu_close(&g);
  return errors ? 1 : 0;
}

const cg_bench_t cg_bench_membw = {
    .name = "membw",
    .summary = "copy bandwidth: CPU memcpy, h2d/d2h pinned and pageable, d2d",
    .about = "  copy bandwidth for 1024^2..8192^2 float matrices: CPU memcpy (1 and all threads),\n"
             "  h2d/d2h pinned and pageable, d2d; each also as a fraction of its path's largest copy",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .run = membw_run,
};
