/* bench_scaling_model.h: the measured step timeline and the network model behind
 * `cogpu-bench scaling --project` (see bench_scaling_model.c for the formulas and sources).
 *
 * A timeline is one training step on one rank, in seconds from the step's start: when each
 * gradient bucket became ready (backward finished its lowest layer), when backward ended, how
 * long AdamW took, and the compute time of the step without any gradient-communication wait. */
#ifndef CG_BENCH_SCALING_MODEL_H
#define CG_BENCH_SCALING_MODEL_H

#include <stddef.h>

#include "model.h"

typedef struct {
  int n;                                        /* buckets, in ready order */
  double ready[CG_MAX_BUCKETS];                 /* s from step start */
  double elems[CG_MAX_BUCKETS];                 /* gradient elements per bucket */
  /* s: backward's end, AdamW, the rest of the step after AdamW (to the next step's start in a
   * trace: results, data, the driver), compute = the step's period less comm waits */
  double bwd_end, opt, after_opt, compute;
  int steps;                                    /* steps the timeline was chosen from */
  char whence[300];                             /* where it came from, for the header */
} cg_timeline_t;

/* Network and overlap parameters (all user-visible through flags). */
typedef struct {
  int per_node;                      /* GPUs (ranks) per node */
  double nv_gbs, net_gbs;            /* achievable all-reduce bus bandwidth, GB/s */
  double nv_us, net_us;              /* ring latency per step, within / between nodes, us */
  double base_us;                    /* latency per all-reduce call, us */
  int ring_only;                     /* 1: ring only (MPI validation); 0: min(ring, tree) */
  double grad_bytes;                 /* bytes per gradient element on the wire */
  double slowdown;                   /* compute slowdown while an all-reduce overlaps it */
} cg_netmodel_t;

/* The timeline of the median step (by compute time) in a --trace-out file (rank's JSON).
 * Returns 0, or -1 with a message in err. */
int cg_timeline_from_trace(const char *path, cg_timeline_t *tl, char *err, size_t errlen);

/* A GPU stand-in: per-layer kernel times from a `cogpu-bench train --kernels-json` file, laid
 * out in layer order over model m with buckets bk and scaled to the file's measured step.
 * Returns 0, or -1 with a message in err. */
int cg_timeline_from_kernels(const char *path, const cg_model_t *m, const cg_buckets_t *bk,
                             cg_timeline_t *tl, char *err, size_t errlen);

/* Time of one all-reduce of bytes on p ranks, s. */
double cg_netmodel_allreduce(const cg_netmodel_t *n, double bytes, int p);

/* The projected step on p ranks, s; the exposed tail (comm after backward ended) in *tail. */
double cg_netmodel_step(const cg_netmodel_t *n, const cg_timeline_t *tl, int p, double *tail);

/* The step with no overlap: every all-reduce after backward, s. */
double cg_netmodel_step_serial(const cg_netmodel_t *n, const cg_timeline_t *tl, int p);

#endif
