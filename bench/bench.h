/* bench.h: the cogpu-bench sub-commands.
 *
 * Each benchmark is one file (bench_<name>.c) defining its cg_bench_t (bench_util.h): options,
 * help and run function, plugged into one driver (bench_main.c). Every benchmark checks its
 * results before timing, warms up, times with events (GPU) or the monotonic clock (CPU), prints
 * a fixed-width table whose comment lines start with '#', then one line "JSON {...}" (and
 * --json-out FILE). */
#ifndef CG_BENCH_H
#define CG_BENCH_H

#include "bench_util.h"

extern const cg_bench_t cg_bench_train;
extern const cg_bench_t cg_bench_allreduce;
extern const cg_bench_t cg_bench_membw;
extern const cg_bench_t cg_bench_cputasks;
extern const cg_bench_t cg_bench_overlap;
extern const cg_bench_t cg_bench_scaling;
extern const cg_bench_t cg_bench_makepngs;

/* Every sub-command, in the order of cogpu-bench --help. */
#define CG_BENCH_LIST                                                                       \
  &cg_bench_train, &cg_bench_allreduce, &cg_bench_membw, &cg_bench_cputasks,                \
      &cg_bench_overlap, &cg_bench_scaling, &cg_bench_makepngs

#endif
