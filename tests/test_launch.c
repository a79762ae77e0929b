/* test_launch.c: the launch arithmetic of cuda/launch.h, on the CPU (it is plain C, so this runs
 * in every build, GPU or not).
 *  1. cg_grid_for: at least one block, at most CG_MAX_GRID, otherwise ceil(work / per_block);
 *     the same as the three file-local grid_for it replaced.
 *  2. cg_chunk_plan: the same chunks as the two plans it replaced (the confusion counts of
 *     kernels_feat.cu: 16384 pixels a chunk, at most 256; the loss of kernels_loss.cu: 4096, at
 *     most 64) for every size up to 300000 pixels and for large ones; the chunks cover [0, n)
 *     once, in order, with empty chunks only at the cap. */
#include <stdint.h>
#include <stdio.h>

#include "launch.h"
#include "testutil.h"

/* ---- the replaced definitions, verbatim but for names ------------------------------------- */

static unsigned old_grid_for(int64_t n, int block) { /* head.cu, kernels_act.cu, kernels_optim.cu */
  int64_t g = (n + block - 1) / block;
  if (g > 8192) g = 8192;
  if (g < 1) g = 1;
  return (unsigned)g;
}

static cg_chunk_plan_t old_conf_plan(int64_t hw) { /* kernels_feat.cu */
  cg_chunk_plan_t q;
  int64_t nch = (hw + 16384 - 1) / 16384;
  if (nch > 256) nch = 256;
  q.nchunks = (int)(nch < 1 ? 1 : nch);
  q.chunk = hw > 0 ? (hw + q.nchunks - 1) / q.nchunks : 0;
  return q;
}

static cg_chunk_plan_t old_loss_plan(int64_t hw) { /* kernels_loss.cu */
  cg_chunk_plan_t q;
  int64_t nch = (hw + 4096 - 1) / 4096;
  if (nch > 64) nch = 64;
  if (nch < 1) nch = 1;
  q.nchunks = (int)nch;
  q.chunk = (hw + nch - 1) / nch;
  return q;
}

/* ---- 1. grids ------------------------------------------------------------------------------ */

static void test_grid(void) {
  const int before = cg_test_failures;
  CG_TEST_CHECK(cg_grid_for(0, 256) == 1, "no work: %u blocks", cg_grid_for(0, 256));
  CG_TEST_CHECK(cg_grid_for(1, 256) == 1, "1 item: %u", cg_grid_for(1, 256));
  CG_TEST_CHECK(cg_grid_for(256, 256) == 1, "256 items: %u", cg_grid_for(256, 256));
  CG_TEST_CHECK(cg_grid_for(257, 256) == 2, "257 items: %u", cg_grid_for(257, 256));
  CG_TEST_CHECK(cg_grid_for((int64_t)256 * 8192, 256) == CG_MAX_GRID, "at the cap: %u",
                cg_grid_for((int64_t)256 * 8192, 256));
  CG_TEST_CHECK(cg_grid_for((int64_t)1 << 40, 256) == CG_MAX_GRID, "2^40 items: %u",
                cg_grid_for((int64_t)1 << 40, 256));
  size_t bad = 0;
  const int per[] = {1, 7, 8, 32, 256};
  for (int k = 0; k < 5; k++)
    for (int64_t n = 0; n < 3000000; n += 1 + n / 1000)
      bad += cg_grid_for(n, per[k]) != old_grid_for(n, per[k]);
  CG_TEST_CHECK(bad == 0, "cg_grid_for differs from the old grid_for at %zu sizes", bad);
  if (cg_test_failures == before) printf("PASS cg_grid_for\n");
}

/* ---- 2. chunk plans ------------------------------------------------------------------------ */

/* 1 if the chunks of q cover [0, n), no chunk is empty or longer than chunk_items under the
 * cap, and there are at most max_chunks. */
static int covers(cg_chunk_plan_t q, int64_t n, int64_t chunk_items, int max_chunks) {
  if (q.nchunks < 1 || q.nchunks > max_chunks || q.chunk < 0) return 0;
  if (n == 0) return q.chunk == 0;
  if ((int64_t)q.nchunks * q.chunk < n) return 0;
  if (q.nchunks == max_chunks) return 1;
  return (int64_t)(q.nchunks - 1) * q.chunk < n && q.chunk <= chunk_items;
}

static int same_plan(cg_chunk_plan_t a, cg_chunk_plan_t b) {
  return a.nchunks == b.nchunks && a.chunk == b.chunk;
}

static void test_chunks(void) {
  const int before = cg_test_failures;
  size_t conf_bad = 0, loss_bad = 0, cover_bad = 0, checked = 0;
  int64_t first_bad = -1;
  for (int64_t hw = 0; hw <= ((int64_t)1 << 34); hw += hw < 300000 ? 1 : hw / 7) {
    const cg_chunk_plan_t c = cg_chunk_plan(hw, 16384, 256), l = cg_chunk_plan(hw, 4096, 64);
    if (!same_plan(c, old_conf_plan(hw)) && conf_bad++ == 0) first_bad = hw;
    if (!same_plan(l, old_loss_plan(hw)) && loss_bad++ == 0) first_bad = hw;
    cover_bad += !covers(c, hw, 16384, 256) + !covers(l, hw, 4096, 64);
    checked++;
  }
  CG_TEST_CHECK(conf_bad == 0 && loss_bad == 0,
                "%zu confusion and %zu loss plans differ from the old ones (first at %lld)",
                conf_bad, loss_bad, (long long)first_bad);
  CG_TEST_CHECK(cover_bad == 0, "%zu plans do not cover their items", cover_bad);
  /* the sizes test_gpu_feat picks for the confusion counts */
  cg_chunk_plan_t q = cg_chunk_plan(16385, 16384, 256); /* one pixel over a chunk */
  CG_TEST_CHECK(q.nchunks == 2 && q.chunk == 8193, "16385: %d x %lld", q.nchunks,
                (long long)q.chunk);
  q = cg_chunk_plan((int64_t)256 * 256 * 70, 16384, 256); /* over the cap */
  CG_TEST_CHECK(q.nchunks == 256 && q.chunk == 17920, "256*256*70: %d x %lld", q.nchunks,
                (long long)q.chunk);
  q = cg_chunk_plan(256 * 256, 4096, 64); /* a 256x256 sample's loss */
  CG_TEST_CHECK(q.nchunks == 16 && q.chunk == 4096, "loss 65536: %d x %lld", q.nchunks,
                (long long)q.chunk);
  q = cg_chunk_plan(0, 4096, 64);
  CG_TEST_CHECK(q.nchunks == 1 && q.chunk == 0, "no items: %d x %lld", q.nchunks,
                (long long)q.chunk);
  q = cg_chunk_plan(100, 1, 64); /* the header's example: 50 chunks of 2, then 14 empty */
  CG_TEST_CHECK(q.nchunks == 64 && q.chunk == 2, "100 at most 64: %d x %lld", q.nchunks,
                (long long)q.chunk);
  if (cg_test_failures == before) printf("PASS cg_chunk_plan (%zu sizes)\n", checked);
}

int main(void) {
  test_grid();
  test_chunks();
  return cg_test_done("test_launch");
}
