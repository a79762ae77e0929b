/* bench_allreduce.c: `cogpu-bench allreduce` — the gradient all-reduce alone, NCCL and MPI,
 * measured the way nccl-tests' all_reduce_perf does.
 *
 * float32 sum over all ranks for sizes min..max (x factor). Inputs are chosen so that every
 * summation order gives the exact result: rank r puts (i mod 13) + r in element i, so the sum
 * is R * (i mod 13) + R(R-1)/2, a small integer. Before timing, every size is checked both out
 * of place and in place; wrong elements are counted, and the counts summed over ranks, so one
 * bad rank fails the run. Then warm-up iterations and timed out-of-place iterations: CUDA
 * events on the stream for NCCL (device buffers), MPI_Wtime for MPI (host buffers). The time of
 * a size is the slowest rank's mean; algbw = bytes / time, busbw = algbw x 2(n-1)/n (0 on one
 * rank: nothing crosses a link). Rank 0 prints '#' comment lines, a fixed-width table per
 * communication library and a line "JSON {...}" (also to --json-out FILE).
 * Exit 0, 1 when an element was wrong, 2 on bad options or when --comm nccl cannot run. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench.h"
#include "log.h"
#include "nccl_comm.h"

#if defined(COGPU_HAVE_CUDA) && defined(COGPU_HAVE_NCCL)
#include "cuda_check.h"
#define HAVE_NCCL_BENCH 1
#elif defined(COGPU_HAVE_CUDA)
#define NO_NCCL_WHY "built without NCCL"
#else
#define NO_NCCL_WHY "built without CUDA"
#endif

enum { kMaxSizes = 64 };

typedef struct {
  const char *comm; /* --comm: nccl, mpi or both */
  int mpi, nccl;    /* from comm */
  size_t min_bytes, max_bytes;
  int factor, warmup, iters;
  const char *json_out;
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
#define MAX_BYTES (4.0 * INT_MAX + 3) /* MPI counts are int: INT_MAX floats */
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_TEXT(PTR, "comm", F(comm), "nccl|mpi|both", 0, "nccl|mpi|both",
        "libraries to measure"),
    CG_OPT_ROW_NUM(BYTES, "min-bytes", F(min_bytes), 4, MAX_BYTES, 0, "N",
        "smallest message, suffix K/M/G = 2^10/2^20/2^30"),
    CG_OPT_ROW_NUM(BYTES, "max-bytes", F(max_bytes), 4, MAX_BYTES, 0, "N",
        "largest message (at most 8 GiB: MPI counts are int)"),
    CG_OPT_ROW_NUM(INT, "factor", F(factor), 2, 1024, 0, "N", "size multiplier between rows"),
    CG_OPT_ROW_NUM(INT, "warmup", F(warmup), 0, 1e6, 0, "N", "untimed iterations per size"),
    CG_OPT_ROW_NUM(INT, "iters", F(iters), 1, 1e7, 0, "N", "timed iterations per size"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
};
static const opts_t g_defaults = {"both", 1, 1, 8, (size_t)256 << 20, 2, 5, 20, NULL};

static int allreduce_check(void *arg, char *err, size_t errlen) {
  opts_t *o = arg;
  o->mpi = strcmp(o->comm, "nccl") != 0;
  o->nccl = strcmp(o->comm, "mpi") != 0;
  if (o->max_bytes >= o->min_bytes) return 0;
  snprintf(err, errlen, "--max-bytes: %zu is below --min-bytes %zu", o->max_bytes, o->min_bytes);
  return -1;
}

typedef struct {
  size_t bytes, count;
  double time_us, algbw, busbw;
  long long wrong;
} row_t;

typedef struct {
  const char *name;
  row_t rows[kMaxSizes];
  int n;
  int ran;
} series_t;

static void fill(float *h, size_t n, int rank) {
  for (size_t i = 0; i < n; i++) h[i] = (float)((int)(i % 13) + rank);
}

/* Elements of h[0..n) that are not the exact sum over R ranks. */
static long long count_wrong(const float *h, size_t n, int R) {
  const int base = R * (R - 1) / 2;
  long long bad = 0;
  for (size_t i = 0; i < n; i++) bad += h[i] != (float)(R * (int)(i % 13) + base);
  return bad;
}

static void finish_row(const cg_comm_t *c, row_t *r, double my_time_s, long long wrong) {
  double t = my_time_s;
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, c->world));
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG_LONG, MPI_SUM, c->world));
  const int R = c->size;
  r->time_us = 1e6 * t;
  r->algbw = t > 0 ? (double)r->bytes / t / 1e9 : 0;
  r->busbw = r->algbw * 2.0 * (R - 1) / R;
  r->wrong = wrong;
}

static void print_row(const cg_comm_t *c, const char *name, const row_t *r) {
  if (c->rank != 0) return;
  printf("  %8s %12zu %12zu %6s %6s %12.2f %12.3f %12.3f %8lld\n", name, r->bytes, r->count,
         "float", "sum", r->time_us, r->algbw, r->busbw, r->wrong);
  fflush(stdout);
}

/* ---- MPI: host buffers ------------------------------------------------------------------- */

static void run_mpi(const opts_t *o, const cg_comm_t *c, const size_t *sizes, int nsizes,
                    series_t *ser) {
  const size_t maxc = o->max_bytes / sizeof(float);
  float *send = cg_malloc(maxc * sizeof(float), "allreduce send");
  float *recv = cg_malloc(maxc * sizeof(float), "allreduce recv");
  fill(send, maxc, c->rank);
  for (int k = 0; k < nsizes; k++) {
    row_t *r = &ser->rows[ser->n++];
    r->bytes = sizes[k];
    r->count = sizes[k] / sizeof(float);
    const int cnt = (int)r->count;
    /* check: out of place into a NaN-filled buffer, then in place */
    memset(recv, 0xff, r->count * sizeof(float));
    CG_CHECK_MPI(MPI_Allreduce(send, recv, cnt, MPI_FLOAT, MPI_SUM, c->world));
    long long wrong = count_wrong(recv, r->count, c->size);
    memcpy(recv, send, r->count * sizeof(float));
    CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, recv, cnt, MPI_FLOAT, MPI_SUM, c->world));
    wrong += count_wrong(recv, r->count, c->size);
    for (int i = 0; i < o->warmup; i++)
      CG_CHECK_MPI(MPI_Allreduce(send, recv, cnt, MPI_FLOAT, MPI_SUM, c->world));
    CG_CHECK_MPI(MPI_Barrier(c->world));
    const double t0 = MPI_Wtime();
    for (int i = 0; i < o->iters; i++)
      CG_CHECK_MPI(MPI_Allreduce(send, recv, cnt, MPI_FLOAT, MPI_SUM, c->world));
    const double t = (MPI_Wtime() - t0) / o->iters;
    finish_row(c, r, t, wrong);
    print_row(c, ser->name, r);
  }
  ser->ran = 1;
  free(send);
  free(recv);
}

/* ---- NCCL: device buffers, CUDA-event timing --------------------------------------------- */

#ifdef HAVE_NCCL_BENCH
static void nccl_sum(cg_nccl_t *n, const float *s, float *d, size_t count, cudaStream_t st) {
  char e[512];
  if (cg_nccl_allreduce_sum_f32(n, s, d, count, st, e, sizeof e))
    cg_fatal(__FILE__, __LINE__, "cg_nccl_allreduce_sum_f32", "%s", e);
}

static void run_nccl(const opts_t *o, const cg_comm_t *c, cg_nccl_t *n, const size_t *sizes,
                     int nsizes, series_t *ser) {
  const size_t maxc = o->max_bytes / sizeof(float);
  CG_CHECK_CUDA(cudaSetDevice(cg_nccl_device(n)));
  cudaStream_t st;
  cudaEvent_t ev0, ev1;
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaEventCreate(&ev0));
  CG_CHECK_CUDA(cudaEventCreate(&ev1));
  float *d_send = NULL, *d_recv = NULL, *h = NULL;
  CG_CHECK_CUDA(cudaMalloc((void **)&d_send, maxc * sizeof(float)));
  CG_CHECK_CUDA(cudaMalloc((void **)&d_recv, maxc * sizeof(float)));
  CG_CHECK_CUDA(cudaMallocHost((void **)&h, maxc * sizeof(float)));
  fill(h, maxc, c->rank);
  CG_CHECK_CUDA(cudaMemcpy(d_send, h, maxc * sizeof(float), cudaMemcpyHostToDevice));
  for (int k = 0; k < nsizes; k++) {
    row_t *r = &ser->rows[ser->n++];
    r->bytes = sizes[k];
    r->count = sizes[k] / sizeof(float);
    const size_t b = r->count * sizeof(float);
    /* check: out of place into a NaN-filled buffer, then in place */
    CG_CHECK_CUDA(cudaMemsetAsync(d_recv, 0xff, b, st));
    nccl_sum(n, d_send, d_recv, r->count, st);
    CG_CHECK_CUDA(cudaMemcpyAsync(h, d_recv, b, cudaMemcpyDeviceToHost, st));
    CG_CHECK_CUDA(cudaStreamSynchronize(st));
    long long wrong = count_wrong(h, r->count, c->size);
    CG_CHECK_CUDA(cudaMemcpyAsync(d_recv, d_send, b, cudaMemcpyDeviceToDevice, st));
    nccl_sum(n, d_recv, d_recv, r->count, st);
    CG_CHECK_CUDA(cudaMemcpyAsync(h, d_recv, b, cudaMemcpyDeviceToHost, st));
    CG_CHECK_CUDA(cudaStreamSynchronize(st));
    wrong += count_wrong(h, r->count, c->size);
    for (int i = 0; i < o->warmup; i++) nccl_sum(n, d_send, d_recv, r->count, st);
    CG_CHECK_CUDA(cudaStreamSynchronize(st));
    CG_CHECK_MPI(MPI_Barrier(c->world));
    CG_CHECK_CUDA(cudaEventRecord(ev0, st));
    for (int i = 0; i < o->iters; i++) nccl_sum(n, d_send, d_recv, r->count, st);
    CG_CHECK_CUDA(cudaEventRecord(ev1, st));
    CG_CHECK_CUDA(cudaEventSynchronize(ev1));
    float ms = 0.0f;
    CG_CHECK_CUDA(cudaEventElapsedTime(&ms, ev0, ev1));
    char e[512];
    if (cg_nccl_check_async(n, e, sizeof e)) cg_fatal(__FILE__, __LINE__, "NCCL", "%s", e);
    finish_row(c, r, 1e-3 * ms / o->iters, wrong);
    print_row(c, ser->name, r);
  }
  ser->ran = 1;
  CG_CHECK_CUDA(cudaFreeHost(h));
  CG_CHECK_CUDA(cudaFree(d_send));
  CG_CHECK_CUDA(cudaFree(d_recv));
  CG_CHECK_CUDA(cudaEventDestroy(ev0));
  CG_CHECK_CUDA(cudaEventDestroy(ev1));
  CG_CHECK_CUDA(cudaStreamDestroy(st));
}

/* Every rank: 1 if NCCL can run on every rank; else 0 with the reason in why (the same on
 * every rank). forced: try NCCL even where two ranks share a GPU (NCCL then says no). The
 * communicator is returned in *out. */
static int nccl_setup(const cg_comm_t *c, int forced, cg_nccl_t **out, char *why, size_t len) {
  *out = NULL;
  char w[256] = "";
  int usable = cg_cuda_usable(w, sizeof w), all = usable;
  CG_CHECK_MPI(MPI_Allreduce(&usable, &all, 1, MPI_INT, MPI_MIN, c->world));
  if (!all) {
    snprintf(why, len, "no usable GPU%s (%s)", usable ? " on some rank" : "", usable ? "" : w);
    return 0;
  }
  char note[320] = "", err[256] = "";
  const int use = cg_nccl_choose(c, "auto", 1, c->local_rank, 0, note, sizeof note, err,
                                 sizeof err);
  if (!forced && c->size > 1 && use <= 0) {
    snprintf(why, len, "%s", use < 0 ? err : note);
    return 0;
  }
  char e[512];
  *out = cg_nccl_create(c->world, c->local_rank, e, sizeof e);
  if (!*out) {
    snprintf(why, len, "%s", e);
    return 0;
  }
  return 1;
}
#else /* a build without CUDA or NCCL measures MPI only */
static int nccl_setup(const cg_comm_t *c, int forced, cg_nccl_t **out, char *why, size_t len) {
  (void)c, (void)forced;
  *out = NULL;
  snprintf(why, len, "%s", NO_NCCL_WHY);
  return 0;
}
static void run_nccl(const opts_t *o, const cg_comm_t *c, cg_nccl_t *nc, const size_t *sizes,
                     int nsizes, series_t *out) {
  (void)o, (void)c, (void)nc, (void)sizes, (void)nsizes, (void)out;
}
#endif

static double avg_busbw(const series_t *s) {
  double a = 0;
  for (int i = 0; i < s->n; i++) a += s->rows[i].busbw;
  return s->n ? a / s->n : 0;
}

static long long total_wrong(const series_t *s) {
  long long w = 0;
  for (int i = 0; i < s->n; i++) w += s->rows[i].wrong;
  return w;
}

static void print_header(const cg_comm_t *c) {
  if (c->rank != 0) return;
  printf("#\n# %8s %12s %12s %6s %6s %12s %12s %12s %8s\n", "comm", "size(B)", "count", "type",
         "redop", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
}

static void print_preamble(const opts_t *o, const cg_comm_t *c, const size_t *sizes, int nsizes,
                           const cg_nccl_t *nc, const char *why, const char *ver, int aware) {
  printf("# cogpu-bench allreduce: %d rank(s) on %d node(s); float32 sum\n", c->size, c->nnodes);
  printf("# sizes %zu B .. %zu B (x%d); %d warm-up + %d timed iterations per size; out of place "
         "timed, in place checked too\n",
         sizes[0], sizes[nsizes - 1], o->factor, o->warmup, o->iters);
  printf("# inputs: rank r, element i = (i mod 13) + r: small integers, every summation order "
         "is exact; #wrong summed over ranks\n");
  printf("# time = slowest rank's mean per call; algbw = size / time; busbw = algbw x 2(n-1)/n "
         "= algbw x %.3f\n", 2.0 * (c->size - 1) / c->size);
  printf("# mpi: %s; host buffers (the MPI library %s CUDA-aware)\n",
         o->mpi ? "measured" : "not requested", aware ? "is" : "is not");
  if (nc)
    printf("# nccl: measured; NCCL %s, device buffers, rank 0 on GPU %d, CUDA events\n", ver,
           cg_nccl_device(nc));
  else
    printf("# nccl: %s\n", !strcmp(o->comm, "mpi") ? "not requested" : why);
  fflush(stdout);
}

/* Rank 0: the summary lines and the JSON line (also to --json-out). Returns 1 if the file could
 * not be written, else 0. */
static int report(const opts_t *o, const cg_comm_t *c, const series_t *ser, long long wrong,
                  const char *ver, int aware) {
  printf("#\n");
  for (int s = 0; s < 2; s++)
    if (ser[s].ran)
      printf("# %s: avg busbw %.3f GB/s over %d sizes; wrong elements %lld (%s)\n", ser[s].name,
             avg_busbw(&ser[s]), ser[s].n, total_wrong(&ser[s]),
             total_wrong(&ser[s]) ? "FAILED" : "OK");
  size_t cap = 64 + 2 * kMaxSizes * 200 + 1024, len = 0;
  char *js = cg_malloc(cap, "json");
  len += (size_t)snprintf(js + len, cap - len,
                          "{\"bench\": \"allreduce\", \"ranks\": %d, \"nodes\": %d, \"dtype\": "
                          "\"float32\", \"op\": \"sum\", \"warmup\": %d, \"iters\": %d, "
                          "\"mpi_cuda_aware\": %s, \"nccl_version\": \"%s\", \"results\": [",
                          c->size, c->nnodes, o->warmup, o->iters, aware ? "true" : "false", ver);
  int first = 1;
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < ser[s].n && len < cap - 256; i++, first = 0) {
      const row_t *r = &ser[s].rows[i];
      len += (size_t)snprintf(js + len, cap - len,
                              "%s{\"comm\": \"%s\", \"bytes\": %zu, \"count\": %zu, "
                              "\"time_us\": %.3f, \"algbw_gbps\": %.4f, \"busbw_gbps\": %.4f, "
                              "\"wrong\": %lld}",
                              first ? "" : ", ", ser[s].name, r->bytes, r->count, r->time_us,
                              r->algbw, r->busbw, r->wrong);
    }
  len += (size_t)snprintf(js + len, cap - len, "], \"avg_busbw_gbps\": {");
  first = 1;
  for (int s = 0; s < 2; s++)
    if (ser[s].ran) {
      len += (size_t)snprintf(js + len, cap - len, "%s\"%s\": %.4f", first ? "" : ", ",
                              ser[s].name, avg_busbw(&ser[s]));
      first = 0;
    }
  snprintf(js + len, cap - len, "}, \"wrong\": %lld, \"ok\": %s}", wrong, wrong ? "false" : "true");
  const int rc = cg_bench_write_json(o->json_out, js);
  free(js);
  return rc;
}

static int allreduce_run(const void *arg, cg_comm_t *c) {
  opts_t o = *(const opts_t *)arg;
  size_t sizes[kMaxSizes];
  int nsizes = 0;
  for (size_t b = o.min_bytes; b <= o.max_bytes && nsizes < kMaxSizes; b *= (size_t)o.factor) {
    sizes[nsizes++] = b / sizeof(float) * sizeof(float);
    if (b > SIZE_MAX / (size_t)o.factor) break;
  }

  /* Which libraries can run: decided (and agreed) before anything is printed. */
  cg_nccl_t *nc = NULL;
  char why[512] = "";
  if (o.nccl && !nccl_setup(c, !o.mpi, &nc, why, sizeof why)) {
    if (!o.mpi) {
      if (c->rank == 0) fprintf(stderr, "cogpu-bench allreduce: --comm nccl: %s\n", why);
      return 2;
    }
    o.nccl = 0;
  }
  char ver[32];
  cg_nccl_version(ver, sizeof ver);
  const int aware = cg_nccl_mpi_cuda_aware();
  if (c->rank == 0) print_preamble(&o, c, sizes, nsizes, nc, why, ver, aware);
  series_t *ser = cg_calloc(2, sizeof(series_t), "allreduce results");
  ser[0].name = "mpi";
  ser[1].name = "nccl";
  if (o.mpi) {
    print_header(c);
    run_mpi(&o, c, sizes, nsizes, &ser[0]);
  }
  if (nc) {
    print_header(c);
    run_nccl(&o, c, nc, sizes, nsizes, &ser[1]);
  }
  cg_nccl_destroy(nc);
  long long wrong = total_wrong(&ser[0]) + total_wrong(&ser[1]);
  int rc = wrong ? 1 : 0;
  if (c->rank == 0 && report(&o, c, ser, wrong, ver, aware)) rc = 1;
  free(ser);
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  return rc;
}

const cg_bench_t cg_bench_allreduce = {
    .name = "allreduce",
    .summary = "float32 sum all-reduce over the ranks, NCCL and MPI, 8 B to 256 MB\n"
               "(all_reduce_perf style: time, algbw, busbw, results checked first)",
    .about = "  run under mpirun -np N; every size is checked (out of place and in place) before\n"
             "  it is timed, as nccl-tests' all_reduce_perf does",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .check = allreduce_check,
    .run = allreduce_run,
};
