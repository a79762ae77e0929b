/* test_gsync.c (run under mpirun -np 2 and -np 4): the bucketed, overlapped gradient all-reduce
 * equals one flat MPI_Allreduce of the whole buffer, for several bucket sizes, posted in
 * backward order with progress calls in between, and so does the staged pass of a device
 * backend (cg_gsync_staged, every bucket landed once, in order); the deterministic variant gives
 * bitwise the same result whatever the bucket size, and every rank ends with identical
 * gradients.
 * bf16 (--grad-comm bf16): the fp32 -> bf16 rounding (ties to even, NaN kept, overflow to inf)
 * and the bf16 sum operator bit by bit; the bf16 all-reduce in both algorithms: exact on values
 * bf16 holds exactly, and on general values equal to the rank-ordered fp32 sum of the rounded
 * inputs rounded once (deterministic; also the default on 2 ranks, where one addition is the
 * whole sum) or within R roundings of the fp32 sum (default, R > 2); the byte counter halves;
 * with one rank (np 1) the gradients stay fp32, untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "comm.h"
#include "gsync.h"
#include "log.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

/* exact = 1: multiples of 2^-10 below 2^11, so every summation order gives the same float and
 * the comparison with the flat all-reduce can be exact; else general floats of mixed scale. */
static void fill(float *g, size_t n, int rank, uint64_t seed, int exact) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, (uint64_t)rank, 7);
  for (size_t i = 0; i < n; i++)
    g[i] = exact ? (float)((int)cg_rng_below(&r, 2001) - 1000) / 1024.0f
                 : (cg_rng_uniform(&r) - 0.5f) * powf(10.0f, (float)(i % 7) - 3);
}

/* bf16-exact values: k/16 with |k| <= 16 (and their sums over up to 4 ranks: 7 bits). */
static void fill_bf16_exact(float *g, size_t n, int rank, uint64_t seed) {
  cg_rng_t r = cg_rng_make(seed, CG_RNG_TEST, (uint64_t)rank, 9);
  for (size_t i = 0; i < n; i++) g[i] = (float)((int)cg_rng_below(&r, 33) - 16) / 16.0f;
}

static uint16_t bits_bf16(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return cg_bf16_from_f32(f);
}

/* The rounding and the sum operator, bit by bit. */
static void test_bf16_bits(void) {
  static const struct { uint32_t in; uint16_t out; const char *what; } k[] = {
      {0x3f800000u, 0x3f80, "1.0"},
      {0x3f808000u, 0x3f80, "tie, even below: down"},
      {0x3f818000u, 0x3f82, "tie, odd below: up"},
      {0xbf818000u, 0xbf82, "negative tie: up in magnitude"},
      {0x3f807fffu, 0x3f80, "just below a tie"},
      {0x3f808001u, 0x3f81, "just above a tie"},
      {0x00008000u, 0x0000, "subnormal tie: down"},
      {0x00018000u, 0x0002, "subnormal tie: up"},
      {0x7f800000u, 0x7f80, "+inf"},
      {0xff800000u, 0xff80, "-inf"},
      {0x7f7fffffu, 0x7f80, "FLT_MAX overflows to inf"},
      {0x7f7f7fffu, 0x7f7f, "largest below the overflow tie"},
      {0x7fc00000u, 0x7fc0, "quiet NaN"},
      {0x7f800001u, 0x7fc0, "NaN with a low payload stays NaN (not inf)"},
      {0xff800001u, 0xffc0, "negative NaN keeps its sign"},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    const uint16_t got = bits_bf16(k[i].in);
    CG_TEST_CHECK(got == k[i].out, "bf16(0x%08x) = 0x%04x, want 0x%04x (%s)", k[i].in, got,
                  k[i].out, k[i].what);
  }
  for (uint32_t h = 0; h < 0x10000u; h++) { /* widening is exact, rounding keeps it */
    const float f = cg_bf16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    CG_TEST_CHECK(cg_bf16_from_f32(f) == h, "round trip of 0x%04x", h);
  }
  /* 1 + 2^-8 and 1+2^-7 + 2^-8: exact fp32 sums that tie in bf16 */
  uint16_t in[3] = {0x3b80, 0x3b80, 0x3f80}, io[3] = {0x3f80, 0x3f81, 0x7fc0};
  cg_bf16_sum(in, io, 3);
  CG_TEST_CHECK(io[0] == 0x3f80 && io[1] == 0x3f82 && isnan(cg_bf16_to_f32(io[2])),
                "bf16 sums: 0x%04x 0x%04x 0x%04x, want 0x3f80 0x3f82 NaN", io[0], io[1], io[2]);
}

/* Posts buckets as backward would (layer nlayers-1 down to 0), with progress calls. */
static void reduce_buckets(cg_gsync_t *gs, const cg_model_t *m, const cg_buckets_t *bk, float *g) {
  for (int l = m->nlayers - 1; l >= 0; l--) {
    if (bk->ready_after[l] >= 0) cg_gsync_post(gs, bk->ready_after[l], g);
    cg_gsync_progress(gs);
  }
  cg_gsync_wait(gs);
}

/* cg_gsync_staged's hook: counts the buckets, which must land in order. */
static void landed(void *ctx, int b) {
  int *next = ctx;
  CG_TEST_CHECK(b == *next, "bucket %d landed, %d expected", b, *next);
  (*next)++;
}

/* What the bf16 deterministic all-reduce must give: the inputs of every rank (all: R x n)
 * rounded to bf16, summed in fp32 in rank order, rounded once, widened. */
static void bf16_expected(const float *all, int R, size_t n, float *out) {
  for (size_t i = 0; i < n; i++) {
    float acc = cg_bf16_to_f32(cg_bf16_from_f32(all[i]));
    for (int r = 1; r < R; r++) acc += cg_bf16_to_f32(cg_bf16_from_f32(all[(size_t)r * n + i]));
    out[i] = R > 1 ? cg_bf16_to_f32(cg_bf16_from_f32(acc)) : all[i];
  }
}

/* Default algorithm, R > 2: partial sums are rounded in an order MPI picks; each of the R input
 * and R-1 sum roundings errs by at most 2^-8 relative to a magnitude <= sum |x_r|. */
static void bf16_within(const char *name, const float *got, const float *all, int R, size_t n) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    double s = 0, a = 0;
    for (int r = 0; r < R; r++) {
      s += all[(size_t)r * n + i];
      a += fabs(all[(size_t)r * n + i]);
    }
    const double q = fabs(got[i] - s) / (a > 0 ? a : 1);
    if (q > worst) worst = q, at = i;
  }
  const double bound = 1.01 * (2 * R - 1) * ldexp(1, -8);
  CG_TEST_CHECK(worst <= bound, "%s: element %zu errs by %.3g x sum|x| (bound %.3g)", name, at,
                worst, bound);
}

/* bf16 all-reduce, both algorithms, every bucket size. */
static void test_bf16_reduce(const cg_comm_t *c, const cg_model_t *m) {
  const size_t n = m->nparams;
  const int R = c->size;
  float *g = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
  float *all = malloc(n * sizeof(float) * (size_t)R), *want = malloc(n * sizeof(float));
  uint16_t *wire = malloc(n * sizeof(uint16_t));
  const double sizes[] = {0, 4e3, 64e3, 1e9};
  fill(g, n, c->rank, 5, 0);
  CG_CHECK_MPI(MPI_Allgather(g, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, c->world));
  bf16_expected(all, R, n, want);
  for (int det = 0; det <= 1; det++)
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      cg_buckets_t bk;
      cg_buckets_plan(m, sizes[si], &bk);
      cg_gsync_t *gs = cg_gsync_create(c->world, bk.n, bk.off, bk.len, det);
      cg_gsync_set_dtype(gs, CG_GSYNC_BF16);
      char name[128];
      snprintf(name, sizeof name, "rank %d: bf16 %s, %d bucket(s), exact values", c->rank,
               det ? "deterministic" : "MPI_Iallreduce", bk.n);
      fill_bf16_exact(ref, n, c->rank, 11);
      CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, ref, (int)n, MPI_FLOAT, MPI_SUM, c->world));
      fill_bf16_exact(g, n, c->rank, 11);
      reduce_buckets(gs, m, &bk, g);
      cg_test_close(name, g, ref, n, 0, 0);
      const double bytes = cg_gsync_take_bytes(gs);
      CG_TEST_CHECK(bytes == (R > 1 ? 2.0 * (double)n : 0.0), "%s: %.0f bytes for %zu elements",
                    name, bytes, n);
      fill(g, n, c->rank, 5, 0);
      reduce_buckets(gs, m, &bk, g);
      snprintf(name, sizeof name, "rank %d: bf16 %s, %d bucket(s), general values", c->rank,
               det ? "deterministic" : "MPI_Iallreduce", bk.n);
      if (det || R <= 2) cg_test_close(name, g, want, n, 0, 0);
      else bf16_within(name, g, all, R, n);
      /* the staged pass over a caller's bf16 buffer: the same bits, not widened */
      for (size_t i = 0; i < n; i++) wire[i] = cg_bf16_from_f32(all[(size_t)c->rank * n + i]);
      int next = 0;
      cg_gsync_staged_bf16(gs, wire, landed, &next, NULL);
      for (size_t i = 0; i < n && (det || R <= 2); i++)
        CG_TEST_CHECK(R == 1 || wire[i] == cg_bf16_from_f32(want[i]), "%s: staged element %zu",
                      name, i);
      cg_gsync_destroy(gs);
    }
  free(g); free(ref); free(all); free(want); free(wire);
}

int main(int argc, char **argv) {
  cg_comm_t c;
  cg_comm_init(&c, &argc, &argv);
  cg_model_t m;
  char err[256];
  CG_ASSERT(cg_model_build(&m, 5, 16, 3, 32, 32, 1, err, sizeof err) == 0);
  size_t n = m.nparams;
  float *ref = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
  float *det0 = malloc(n * sizeof(float)), *all = NULL;
  fill(ref, n, c.rank, 3, 1);
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, ref, (int)n, MPI_FLOAT, MPI_SUM, c.world));
  const double sizes[] = {0, 4e3, 64e3, 1e6, 1e9};
  for (int det = 0; det <= 1; det++)
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      cg_buckets_t bk;
      cg_buckets_plan(&m, sizes[si], &bk);
      cg_gsync_t *gs = cg_gsync_create(c.world, bk.n, bk.off, bk.len, det);
      for (int rep = 0; rep < 2; rep++) { /* reuse across steps */
        fill(g, n, c.rank, 3, 1);
        reduce_buckets(gs, &m, &bk, g);
      }
      char name[128];
      snprintf(name, sizeof name, "rank %d: %s, %d bucket(s) (%.0f bytes) vs flat MPI_Allreduce",
               c.rank, det ? "deterministic" : "MPI_Iallreduce", bk.n, sizes[si]);
      cg_test_close(name, g, ref, n, 0, 0);
      fill(g, n, c.rank, 3, 1);
      int next = 0;
      double t_first = 0;
      cg_gsync_staged(gs, g, landed, &next, &t_first);
      CG_TEST_CHECK(next == bk.n && t_first > 0, "staged: %d of %d buckets, t_first %g", next,
                    bk.n, t_first);
      snprintf(name, sizeof name, "rank %d: staged %s, %d bucket(s) vs flat MPI_Allreduce", c.rank,
               det ? "deterministic" : "MPI_Iallreduce", bk.n);
      cg_test_close(name, g, ref, n, 0, 0);
      /* general floats: the deterministic variant must not depend on the bucket size */
      fill(g, n, c.rank, 5, 0);
      reduce_buckets(gs, &m, &bk, g);
      cg_gsync_destroy(gs);
      if (det) {
        if (si == 0) memcpy(det0, g, n * sizeof(float));
        else CG_TEST_CHECK(memcmp(det0, g, n * sizeof(float)) == 0,
                           "deterministic result changed with %d buckets", bk.n);
      }
      /* every rank holds the same bytes */
      if (c.rank == 0) all = malloc(n * sizeof(float) * (size_t)c.size);
      CG_CHECK_MPI(MPI_Gather(g, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, 0, c.world));
      if (c.rank == 0) {
        for (int r = 1; r < c.size; r++)
          CG_TEST_CHECK(memcmp(all, all + (size_t)r * n, n * sizeof(float)) == 0,
                        "rank %d's gradients differ from rank 0's", r);
        free(all);
        all = NULL;
      }
    }
  test_bf16_bits();
  test_bf16_reduce(&c, &m);
  int fails = cg_test_failures, total = 0;
  CG_CHECK_MPI(MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, c.world));
  if (c.rank == 0) printf("test_gsync on %d ranks: %d failure(s) over all ranks\n", c.size, total);
  free(ref); free(g); free(det0);
  cg_comm_finalize(&c);
  return total ? 1 : 0;
}
