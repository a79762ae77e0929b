/* launch.h: the host-side launch arithmetic the kernel files share: how many blocks a
 * grid-stride loop gets, and how a deterministic reduction splits its items into chunks.
 * Plain C, so that a unit test checks it on the CPU (tests/test_launch.c); the .cu files
 * include it as it is. Pure functions of their arguments: the same work gives the same
 * grid and the same chunks (hence the same summation order) on every run and device. */
#ifndef CG_CUDA_LAUNCH_H
#define CG_CUDA_LAUNCH_H

#include <stdint.h>

/* Most blocks a grid-stride loop is given; the loops cover the rest. */
#define CG_MAX_GRID 8192

/* Blocks for `work` items at `per_block` items a block: at least 1 (so that a launch over no
 * work is still valid), at most CG_MAX_GRID. */
static inline unsigned cg_grid_for(int64_t work, int per_block) {
  int64_t g = (work + per_block - 1) / per_block;
  if (g > CG_MAX_GRID) g = CG_MAX_GRID;
  if (g < 1) g = 1;
  return (unsigned)g;
}

typedef struct {
  int nchunks;   /* >= 1 */
  int64_t chunk; /* items per chunk; chunk j is [j * chunk, min((j + 1) * chunk, n)) */
} cg_chunk_plan_t;

/* Splits n >= 0 items into chunks of about chunk_items: ceil(n / chunk_items) chunks, capped at
 * max_chunks, at least one; chunk = ceil(n / nchunks), 0 when n is 0. At the cap the last
 * chunks may be empty (100 items in at most 64 chunks: 50 chunks of 2, then 14 empty ones). */
static inline cg_chunk_plan_t cg_chunk_plan(int64_t n, int64_t chunk_items, int max_chunks) {
  cg_chunk_plan_t q;
  int64_t nch = (n + chunk_items - 1) / chunk_items;
  if (nch > max_chunks) nch = max_chunks;
  if (nch < 1) nch = 1;
  q.nchunks = (int)nch;
  q.chunk = (n + nch - 1) / nch;
  return q;
}

#endif
