/* test_gsync.c (run under mpirun -np 2 and -np 4): the bucketed, overlapped gradient all-reduce
 * equals one flat MPI_Allreduce of the whole buffer, for several bucket sizes, posted in
 * backward order with progress calls in between, and so does the staged pass of a device
 * backend (cg_gsync_staged, every bucket landed once, in order); the deterministic variant gives
 * bitwise the same result whatever the bucket size, and every rank ends with identical
 * gradients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  int fails = cg_test_failures, total = 0;
  CG_CHECK_MPI(MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, c.world));
  if (c.rank == 0) printf("test_gsync on %d ranks: %d failure(s) over all ranks\n", c.size, total);
  free(ref); free(g); free(det0);
  cg_comm_finalize(&c);
  return total ? 1 : 0;
}
