/* bench.h: the cogpu-bench driver and what every benchmark shares.
 *
 * Each benchmark is one file (bench_<name>.c) with an entry point taking the command line
 * after its name. Every benchmark checks its results before timing, warms up, times with
 * events (GPU) or the monotonic clock (CPU), prints a fixed-width table whose comment lines
 * start with '#', then one line "JSON {...}" (and --json-out FILE). */
#ifndef CG_BENCH_H
#define CG_BENCH_H

#include <stdio.h>

#include "comm.h"

int cg_bench_train(int argc, char **argv, cg_comm_t *c);
int cg_bench_allreduce(int argc, char **argv, cg_comm_t *c);
int cg_bench_membw(int argc, char **argv, cg_comm_t *c);
int cg_bench_cputasks(int argc, char **argv, cg_comm_t *c);
int cg_bench_overlap(int argc, char **argv, cg_comm_t *c);
int cg_bench_scaling(int argc, char **argv, cg_comm_t *c);
int cg_bench_makepngs(int argc, char **argv, cg_comm_t *c);

/* Parses "1,2,4" into at most max ints; returns the count or -1. */
int cg_bench_parse_list(const char *s, int *out, int max);
/* Writes the JSON line to path (if not NULL); returns 0, or 1 after a message. */
int cg_bench_write_json(const char *path, const char *json);
/* Median of n doubles (sorts a copy). */
double cg_bench_median(const double *v, int n);

#endif
