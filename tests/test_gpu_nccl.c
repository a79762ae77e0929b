/* test_gpu_nccl.c: the NCCL gradient all-reduce on one rank (run under mpirun -np 1).
 *  0. cg_nccl_choose's verdicts that need no GPU (cpu backend, forced modes, one rank) — these
 *     run everywhere, before the GPU check;
 *  1. a communicator made over MPI; out-of-place and in-place all-reduce of a known buffer
 *     (rank r, element i = (i mod 13) + r: the sum is exact in any order), every element exact;
 *  2. six fp32 training steps of a small UNet (in 5, base 8, depth 3, 32x32, batch 4, buckets of
 *     50 kB so several all-reduces overlap backward), two steps in flight, through the CUDA
 *     backend: NCCL eager and NCCL inside CUDA graphs must give bitwise the parameters and
 *     losses of the backend without any all-reduce; exposed communication time is measured
 *     (>= 0) on every step, graphs included; a graph capture that fails (stderr watched) fails.
 * Exits 77 without a usable GPU or without NCCL in the build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "comm.h"
#include "log.h"
#include "model.h"
#include "nccl_comm.h"
#include "testutil.h"

#if defined(COGPU_HAVE_CUDA) && defined(COGPU_HAVE_NCCL)
#include "cuda_check.h"
#include "testutil_cuda.h"
#define HAVE_NCCL_TEST 1
#endif

/* ---- 0. the choice, without a GPU --------------------------------------------------------- */

static void test_choose(const cg_comm_t *c) {
  char note[320], err[256];
  printf("RUN cg_nccl_choose on %d rank(s)\n", c->size);
  const int before = cg_test_failures;
  int r = cg_nccl_choose(c, "auto", 0, 0, 0, note, sizeof note, err, sizeof err);
  CG_TEST_CHECK(r == 0 && note[0] == 0, "auto on the cpu backend: %d '%s'", r, note);
  r = cg_nccl_choose(c, "mpi", 0, 0, 1, note, sizeof note, err, sizeof err);
  CG_TEST_CHECK(r == 0, "mpi on the cpu backend: %d", r);
  r = cg_nccl_choose(c, "nccl", 0, 0, 0, note, sizeof note, err, sizeof err);
  CG_TEST_CHECK(r == -1 && strstr(err, "cuda backend"), "nccl on the cpu backend: %d '%s'", r, err);
  r = cg_nccl_choose(c, "nccl", 1, 0, 1, note, sizeof note, err, sizeof err);
  CG_TEST_CHECK(r == -1 && (strstr(err, "deterministic") || strstr(err, "no NCCL")),
                "nccl + --deterministic: %d '%s'", r, err);
  r = cg_nccl_choose(c, "fast", 1, 0, 0, note, sizeof note, err, sizeof err);
  CG_TEST_CHECK(r == -1 && strstr(err, "'fast'"), "bad mode: %d '%s'", r, err);
  if (c->size == 1) {
    r = cg_nccl_choose(c, "auto", 1, 0, 0, note, sizeof note, err, sizeof err);
    CG_TEST_CHECK(r == 0 && note[0] == 0, "auto on one rank: %d '%s'", r, note);
    r = cg_nccl_choose(c, "nccl", 1, 0, 0, note, sizeof note, err, sizeof err);
    CG_TEST_CHECK(r == (cg_nccl_built() ? 1 : -1), "nccl forced on one rank: %d '%s%s'", r, note,
                  r < 0 ? err : "");
  }
  printf("  last verdict: %d %s\n", r, r < 0 ? err : note);
  if (cg_test_failures == before) printf("PASS cg_nccl_choose verdicts\n");
}

#ifdef HAVE_NCCL_TEST

/* ---- 1. identity all-reduce ---------------------------------------------------------------- */

static void test_identity(const cg_comm_t *c, cg_nccl_t *n) {
  const size_t cnt = ((size_t)1 << 20) + 3;
  const int R = c->size;
  printf("RUN all-reduce of %zu floats on %d rank(s), GPU %d\n", cnt, R, cg_nccl_device(n));
  float *h = cg_malloc(cnt * sizeof(float), "host buffer");
  float *d_a = NULL, *d_b = NULL;
  cudaStream_t s;
  CG_CHECK_CUDA(cudaSetDevice(cg_nccl_device(n)));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaMalloc((void **)&d_a, cnt * sizeof(float)));
  CG_CHECK_CUDA(cudaMalloc((void **)&d_b, cnt * sizeof(float)));
  for (size_t i = 0; i < cnt; i++) h[i] = (float)((int)(i % 13) + c->rank);
  CG_CHECK_CUDA(cudaMemcpy(d_a, h, cnt * sizeof(float), cudaMemcpyHostToDevice));
  /* NaN until written; on s, so that it is done before the all-reduce writes d_b (a plain
   * cudaMemset runs on the legacy stream, which the non-blocking s does not wait for) */
  CG_CHECK_CUDA(cudaMemsetAsync(d_b, 0xff, cnt * sizeof(float), s));
  char e[512];
  for (int pass = 0; pass < 2; pass++) { /* out of place (a -> b), then in place (a) */
    float *dst = pass == 0 ? d_b : d_a;
    const int rc = cg_nccl_allreduce_sum_f32(n, d_a, dst, cnt, s, e, sizeof e);
    CG_TEST_CHECK(rc == 0, "cg_nccl_allreduce_sum_f32: %s", e);
    CG_CHECK_CUDA(cudaMemcpyAsync(h, dst, cnt * sizeof(float), cudaMemcpyDeviceToHost, s));
    CG_CHECK_CUDA(cudaStreamSynchronize(s));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < cnt; i++) {
      const float want = (float)(R * (int)(i % 13) + R * (R - 1) / 2);
      if (h[i] != want && bad++ == 0) first = i;
    }
    const float want_first = (float)(R * (int)(first % 13) + R * (R - 1) / 2);
    CG_TEST_CHECK(bad == 0, "%s: %zu of %zu elements wrong, first [%zu] = %g, want %g",
                  pass ? "in place" : "out of place", bad, cnt, first, h[first], want_first);
    if (!bad) printf("PASS all-reduce %s: all %zu elements exact\n", pass ? "in place" : "out of place", cnt);
  }
  CG_TEST_CHECK(cg_nccl_check_async(n, e, sizeof e) == 0, "async error: %s", e);
  CG_CHECK_CUDA(cudaFree(d_a));
  CG_CHECK_CUDA(cudaFree(d_b));
  CG_CHECK_CUDA(cudaStreamDestroy(s));
  free(h);
}

/* ---- 2. training steps ------------------------------------------------------------------- */

enum { N = 4, IN_C = 5, BASE = 8, DEPTH = 3, HW = 32, K = 6 };

typedef struct {
  double loss[K], wait_ms[K], bytes[K];
  float *params;
} run_t;

/* Redirects stderr to a file while a run prints its warnings; grab_end echoes them and says
 * whether needle was among them. */
typedef struct {
  int saved;
  char path[64];
} grab_t;

static void grab_begin(grab_t *g) {
  fflush(stderr);
  snprintf(g->path, sizeof g->path, "/tmp/cg_gpu_nccl_errXXXXXX");
  const int fd = mkstemp(g->path);
  CG_ASSERT(fd >= 0);
  g->saved = dup(2);
  CG_ASSERT(g->saved >= 0 && dup2(fd, 2) == 2);
  close(fd);
}

static int grab_end(grab_t *g, const char *needle) {
  fflush(stderr);
  dup2(g->saved, 2);
  close(g->saved);
  int found = 0;
  FILE *f = fopen(g->path, "r");
  char line[1024];
  while (f && fgets(line, sizeof line, f)) {
    printf("  (stderr) %s", line);
    if (strstr(line, needle)) found = 1;
  }
  if (f) fclose(f);
  unlink(g->path);
  return found;
}

/* K fp32 steps, two in flight, uploads ahead; nccl may be NULL (no all-reduce at all). */
static run_t run_steps(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                       const cg_test_data_t *ds, int device, cg_nccl_t *nccl, int graph,
                       const char *cache) {
  const cg_backend_ops_t *ops = &cg_backend_cuda;
  cg_backend_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch = N;
  cfg.precision = CG_PREC_FP32;
  cfg.device = device;
  cfg.deterministic = 1;
  cfg.dice_weight = 1.0f;
  cfg.cuda_graph = graph;
  cfg.tf32 = 0;
  cfg.algo_cache = cache;
  cfg.buckets = bk;
  cfg.gsync = NULL;
  cfg.nccl = nccl;
  cfg.fault_nan_step = -1;
  cg_backend_t *b = NULL;
  char err[1024];
  if (ops->create(m, &cfg, &b, err, sizeof err)) CG_FATAL("cuda backend: %s", err);
  ops->set_params(b, p0);
  run_t r;
  memset(&r, 0, sizeof r);
  cg_batch_t v[K];
  for (int k = 0; k < K; k++) v[k] = cg_test_data_batch(&ds[k]); /* all prepared on the CPU */
  cg_step_out_t o;
  int fetched = 0;
  ops->upload(b, 0, &v[0]);
  for (int k = 0; k < K; k++) {
    cg_optim_t opt = {2e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, k + 1, 0.0f};
    ops->train_step(b, k % 2, &opt);
    const int drain = k + 1 == K ? 2 : (k >= 1 ? 1 : 0);
    for (int d = 0; d < drain; d++) {
      ops->fetch(b, &o);
      r.loss[fetched] = o.loss;
      r.wait_ms[fetched] = o.comm_wait_ms;
      r.bytes[fetched] = o.grad_bytes_reduced;
      fetched++;
    }
    if (k + 1 < K) ops->upload(b, (k + 1) % 2, &v[k + 1]);
  }
  CG_ASSERT(fetched == K);
  r.params = cg_malloc(sizeof(float) * m->nparams, "params");
  ops->get_params(b, r.params);
  ops->destroy(b); /* before the communicator: its graphs hold NCCL work */
  return r;
}

static int same_run(const char *what, const run_t *a, const run_t *ref, size_t np) {
  int ok = memcmp(a->params, ref->params, sizeof(float) * np) == 0;
  for (int k = 0; k < K; k++) ok = ok && memcmp(&a->loss[k], &ref->loss[k], sizeof(double)) == 0;
  if (ok) {
    printf("PASS %s: losses and parameters bitwise equal over %d steps\n", what, K);
    return 1;
  }
  cg_test_failures++;
  size_t nd = 0, worst = 0;
  for (size_t i = 0; i < np; i++)
    if (memcmp(&a->params[i], &ref->params[i], sizeof(float)) && nd++ == 0) worst = i;
  printf("FAIL %s: %zu of %zu parameters differ (first [%zu]: %.9g vs %.9g; max rel %.3e)\n",
         what, nd, np, worst, a->params[worst], ref->params[worst],
         cg_test_rel_err(a->params, ref->params, np));
  for (int k = 0; k < K; k++)
    printf("  step %d: loss %.12g vs %.12g%s\n", k, a->loss[k], ref->loss[k],
           a->loss[k] == ref->loss[k] ? "" : "  DIFFERS");
  return 0;
}

static void check_wait(const char *what, const run_t *r) {
  int ok = 1;
  for (int k = 0; k < K; k++) ok = ok && r->wait_ms[k] >= 0 && r->bytes[k] == 0;
  printf("  %s: exposed comm ms per step:", what);
  for (int k = 0; k < K; k++) printf(" %.3f", r->wait_ms[k]);
  printf("\n");
  CG_TEST_CHECK(ok, "%s: exposed time not measured (< 0) or bytes counted on one rank", what);
}

static void test_training(const cg_comm_t *c, cg_nccl_t *n) {
  cg_model_t m;
  cg_buckets_t bk;
  float *p0 = cg_test_unet(&m, &bk, IN_C, BASE, DEPTH, HW, 50e3, 11);
  printf("RUN %d fp32 steps, %zu parameters in %d buckets: no all-reduce vs NCCL eager vs NCCL "
         "in CUDA graphs\n", K, m.nparams, bk.n);
  CG_TEST_CHECK(bk.n >= 3, "want several buckets, got %d", bk.n);
  cg_test_data_t ds[K];
  for (int k = 0; k < K; k++) ds[k] = cg_test_data_make(N, HW, HW, IN_C, 0, 200 + (uint64_t)k);
  char cache[] = "/tmp/cg_gpu_nccl_algosXXXXXX";
  const int fd = mkstemp(cache);
  CG_ASSERT(fd >= 0);
  close(fd);
  const int dev = cg_nccl_device(n);
  (void)c;
  run_t ref = run_steps(&m, &bk, p0, ds, dev, NULL, 0, cache);
  run_t eager = run_steps(&m, &bk, p0, ds, dev, n, 0, cache);
  grab_t g;
  grab_begin(&g);
  run_t graph = run_steps(&m, &bk, p0, ds, dev, n, 1, cache);
  const int gfail = grab_end(&g, "capture failed");
  grab_begin(&g);
  run_t graph_ref = run_steps(&m, &bk, p0, ds, dev, NULL, 1, cache);
  const int rfail = grab_end(&g, "capture failed");
  unlink(cache);
  CG_TEST_CHECK(!rfail, "CUDA graph capture failed without NCCL (see stderr above)");
  CG_TEST_CHECK(!gfail, "CUDA graph capture with NCCL failed, steps ran eagerly (see above)");
  CG_TEST_CHECK(ref.loss[K - 1] != ref.loss[0], "the loss never changed: steps did not train?");
  same_run("graphs without NCCL vs eager", &graph_ref, &ref, m.nparams);
  same_run("NCCL eager vs no all-reduce", &eager, &ref, m.nparams);
  same_run("NCCL in CUDA graphs vs NCCL eager", &graph, &eager, m.nparams);
  check_wait("NCCL eager", &eager);
  check_wait("NCCL graphs", &graph);
  char e[512];
  CG_TEST_CHECK(cg_nccl_check_async(n, e, sizeof e) == 0, "async error: %s", e);
  free(ref.params);
  free(eager.params);
  free(graph.params);
  free(graph_ref.params);
  for (int k = 0; k < K; k++) cg_test_data_free(&ds[k]);
  free(p0);
}

#endif /* HAVE_NCCL_TEST */

int main(int argc, char **argv) {
  cg_comm_t c;
  cg_comm_init(&c, &argc, &argv);
  test_choose(&c);
  int rc = 0;
#ifdef HAVE_NCCL_TEST
  if (cg_test_need_gpu()) {
    rc = CG_TEST_SKIP;
  } else {
    char ver[32], err[1024];
    cg_nccl_version(ver, sizeof ver);
    printf("RUN communicator over MPI: NCCL %s, %d rank(s)\n", ver, c.size);
    cg_nccl_t *n = cg_nccl_create(c.world, c.local_rank, err, sizeof err);
    CG_TEST_CHECK(n != NULL, "cg_nccl_create: %s", err);
    if (n) {
      test_identity(&c, n);
      if (c.size == 1) test_training(&c, n);
      else printf("  (training comparison skipped: it needs exactly one rank)\n");
      cg_nccl_destroy(n); /* before MPI_Finalize */
    }
    rc = cg_test_done("test_gpu_nccl");
  }
#else
  printf("SKIP: this build has no %s\n", cg_nccl_built() ? "CUDA" : "NCCL");
  rc = CG_TEST_SKIP;
#endif
  if (rc == CG_TEST_SKIP && cg_test_failures) rc = cg_test_done("test_gpu_nccl");
  cg_comm_finalize(&c);
  return rc;
}
