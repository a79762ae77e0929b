/* stats.h: the per-rank load figures and the cluster-wide balance report.
 *
 * Every rank accumulates its figures over a report window (ARCHITECTURE.md, "Load figures");
 * at each report all ranks call cg_stats_report, which gathers one fixed-size record per rank
 * with a single MPI_Allgather, and rank 0 prints the table (the rows of cg_stats_set_view, then
 * mean / max / imbalance and the straggler) and appends one JSON line (every rank) to --stats-out.
 *
 * Straggler: the rank whose own time per step (step_ms - comm_exposed_ms: the time it did not
 * spend waiting for the others) is more than 10% above the median of all ranks; in synchronous
 * data parallelism every rank's wall step time is the same, so the wall time cannot tell.
 *
 * With COGPU_STATS_TIMING=1 in rank 0's environment (its value is every rank's), every rank
 * meets at a barrier before the gather (so the time measures the collective, not the ranks'
 * skew) and rank 0 prints "# stats timing: gather X ms, format Y ms" after each table
 * (bench/RESULTS.md, issue 15).
 *
 * A figure a backend cannot measure (gpu_busy on the cpu backend) is reported as absent
 * ("-" in the table, null in JSON), never invented. */
#ifndef CG_STATS_H
#define CG_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "comm.h"
#include "rank_view.h"

/* One window of one rank, accumulated by the training loop. */
typedef struct {
  int64_t steps;
  double wall;           /* seconds of the window */
  double data_wait;      /* seconds the host waited for batches */
  double comm_exposed;   /* seconds compute waited for gradient communication */
  double busy;           /* seconds the compute device was busy; < 0 = not measured */
  double helper_busy;    /* helper-thread seconds (summed over helpers) */
  int helpers;
  double cpu_share;      /* fraction of offloadable work done on the CPU, [0, 1] */
  int64_t samples;       /* local real samples */
  double h2d_bytes, d2h_bytes;
  double loss;           /* sum of the steps' weighted local losses */
} cg_window_t;

typedef struct cg_stats cg_stats_t;

/* Collective. gpu_name: this rank's device ("-" on the cpu backend). backend_is_gpu selects
 * the column headings. jsonl_path: --stats-out or NULL; the file is appended to (rank 0), opened
 * by cg_afile_append (atomic_file.h: a link the user made is followed; a regular file, a FIFO
 * or a character device such as /dev/stdout). A FIFO's reader that goes ends the records with a
 * warning, never the job (SIGPIPE is blocked while a record is written). */
cg_stats_t *cg_stats_create(const cg_comm_t *c, const char *gpu_name, int backend_is_gpu,
                            const char *jsonl_path);
void cg_stats_destroy(cg_stats_t *s); /* NULL-safe */

/* --prom-out: after every report rank 0 rewrites path (atomic_file.h: temporary + rename, for
 * node_exporter's textfile collector) with the same figures in the Prometheus text format:
 * gauges named cogpu_<figure>_<unit> labelled by rank, host and gpu, and cluster-wide ones. */
void cg_stats_set_prom(cg_stats_t *s, const char *path);

/* The printed table's rows (--report-ranks; rank_view.h), resolved for this job: all = one row
 * per rank; nodes = one row per node (the means over its ranks, and its slowest rank by own
 * time, named); top:N = the N ranks with the slowest own time, slowest first. The mean, max,
 * imbalance and straggler lines always follow; --stats-out and --prom-out keep every rank.
 * Default (before any call): auto. */
void cg_stats_set_view(cg_stats_t *s, cg_rank_view_t v);

/* Rank 0: the latest validation (iou, dice: the class means when classes > 1; macc: mAcc,
 * classes > 1 only), added to every following --stats-out record as "val": {step, loss,
 * iou|miou, dice|mdice, acc[, macc]}. */
void cg_stats_set_val(cg_stats_t *s, int64_t step, double loss, double iou, double dice,
                      double acc, double macc, int classes);
/* The run validates after its final report: that record ("final": true) is held until
 * cg_stats_flush_final, which writes it with the final validation (cg_stats_destroy writes it
 * too, if still held), so cogpu-monitor ends on the run's last figures. NULL-safe. */
void cg_stats_hold_final(cg_stats_t *s);
void cg_stats_flush_final(cg_stats_t *s);
/* Rank 0: the run stopped early (a stop signal, a NaN, a failed rank's verdict) after `step` of
 * `total`: --stats-out ends with {"final": true, "stopped": why, "step", "total_steps",
 * "time"}, so cogpu-monitor knows the job is over. why: "SIGTERM", "NaN loss", ... NULL-safe. */
void cg_stats_stopped(cg_stats_t *s, int64_t step, int64_t total, const char *why);
/* Forgets a held final record: the run ends without its final figures (cg_stats_stopped). */
void cg_stats_drop_final(cg_stats_t *s);

/* The cluster's means over ranks for one window (NAN where a figure is absent). */
typedef struct {
  double step_ms, gpu_busy, compute_busy, data_wait, comm_exposed, cpu_busy, cpu_share, img_per_s;
  int straggler; /* rank, or -1 */
} cg_cluster_t;

/* Collective: gathers w from every rank; rank 0 prints the table to out (NULL = no table) and
 * appends the JSON line. Returns the global mean loss per step of the window (all ranks) and,
 * if cl is not NULL, the cluster summary (every rank). final marks the end of training. */
double cg_stats_report(cg_stats_t *s, const cg_window_t *w, int64_t step, int64_t total,
                       int final, FILE *out, cg_cluster_t *cl);

#endif
