/* kprof.h: a per-kernel breakdown of the CUDA backend's training step, from CUPTI's activity
 * API (the kernels' own start and end times on the GPU), mapped back to the step's regions
 * (a layer and its pass, the loss, the optimizer...). At the end, the printer of the coarser
 * per-layer table the backend measures with events (cg_backend_cfg_t.profile).
 *
 * Why: events around each op of an eager step count the host's launch gaps and whatever the
 * libraries do between kernels, and the captured graph cannot carry events per op at all. CUPTI
 * timestamps every kernel, memset and memcpy, also inside graph replays.
 *
 * How the kernels are mapped to regions:
 *  - the backend names its regions once (cg_kprof_region) and brackets the work it enqueues for
 *    a region with cg_kprof_enter / cg_kprof_leave;
 *  - eager work: enter pushes a CUPTI external correlation id (the region), leave pops it, so
 *    every kernel launched in between, by us or inside cuDNN, carries the region;
 *  - work captured into a CUDA graph: enter/leave look at the graph being captured on the
 *    stream and attribute the nodes added in between to the region; a replayed kernel's
 *    activity record names its graph node, which leads back to the region.
 * Whatever cannot be attributed is reported as "(unattributed)", never guessed.
 *
 * CUPTI is loaded at run time (dlopen of libcupti.so), so nothing links against it and a
 * machine without it just has no breakdown: cg_kprof_create returns NULL with the reason.
 *
 * Threads: every function is called from the thread that drives the backend. CUPTI delivers
 * activity buffers on its own thread; the module locks what it shares with it.
 * Ownership: the caller owns the cg_kprof_t (cg_kprof_destroy); it must outlive the backend
 * that uses it (cg_backend_cfg_t.kprof). */
#ifndef CG_CUDA_KPROF_H
#define CG_CUDA_KPROF_H

#include <stdio.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_kprof cg_kprof_t;

/* Loads CUPTI and enables kernel, memset and memcpy activity records. Create it before the
 * backend (the activity kinds must be on before the kernels to be seen are launched). NULL with
 * a message in err when CUPTI cannot be used (not found, no GPU, refused). */
cg_kprof_t *cg_kprof_create(char *err, size_t errlen);
void cg_kprof_destroy(cg_kprof_t *kp); /* NULL is a no-op; disables the activity kinds */

/* Registers a region and returns its id (>= 1); the same name returns the same id. flops and
 * bytes are the region's work per step (0 when not known): the report turns them into a
 * floor, the larger of flops / peak rate and bytes / peak bandwidth. */
int cg_kprof_region(cg_kprof_t *kp, const char *name, double flops, double bytes);

/* Brackets the work of region id enqueued on stream s (see the mapping above). Calls nest
 * (the innermost region wins); leave must match the last enter. Safe during a stream capture:
 * it never enqueues work and never breaks the capture. NULL kp: no-op. */
void cg_kprof_enter(cg_kprof_t *kp, int id, cudaStream_t s);
void cg_kprof_leave(cg_kprof_t *kp, cudaStream_t s);

/* Starts / stops counting activity records (records completed while off are dropped); stop
 * flushes CUPTI's buffers first, so synchronise the device before it. steps = the number of
 * training steps whose work ran while counting (the report divides by it). */
void cg_kprof_start(cg_kprof_t *kp);
void cg_kprof_stop(cg_kprof_t *kp, int steps);

/* Prints the breakdown of what was counted: a '#' table of regions, slowest first (per step:
 * kernels, GPU time, share, floor and the ratio to it, TFLOP/s, GB/s), each region's kernels
 * by name below it, and the totals against step_ms (the measured wall time per step: the
 * difference is time the GPU ran no kernel of the step). peak_tflops / peak_gbs are the
 * ceilings for the floors (<= 0: 790 TFLOP/s bf16 and 4300 GB/s). If json_path is not NULL,
 * also writes the same as JSON there. Returns 0, or -1 when the JSON could not be written. */
int cg_kprof_report(cg_kprof_t *kp, const char *title, double step_ms, double peak_tflops,
                    double peak_gbs, FILE *out, const char *json_path);

/* Clears everything counted (regions stay registered). */
void cg_kprof_reset(cg_kprof_t *kp);

/* ---- the per-layer table (cg_backend_cfg_t.profile) ---------------------------------------
 * Not CUPTI: the backend times each layer's forward and backward in eager steps with events
 * and sums the times; this prints the sums. Available whether or not CUPTI is. */

typedef struct {
  const char *name, *op;   /* the layer's name; "conv", "maxpool" or "upconv" */
  double fwd_ms, bwd_ms;   /* summed over the steps */
  double gflop;            /* per step */
} cg_kprof_layer_t;

typedef struct {
  const char *name;        /* a part of the step outside the layers ("loss") */
  double ms;               /* summed over the steps */
} cg_kprof_part_t;

typedef struct {
  const char *precision;   /* "fp32", "bf16" or "fp16" */
  int batch;
  long long steps;         /* the eager steps summed; 0 prints nothing */
  double hold_ms;          /* each step was enqueued behind a stream hold this long */
  const cg_kprof_layer_t *layers;
  int nlayers;
  const cg_kprof_part_t *parts;
  int nparts;
} cg_kprof_layers_t;

/* Prints a '#' header with the mean step time, then per step the layers, slowest first (fwd,
 * bwd and total ms, share of the step, GFLOP, TFLOP/s), then the parts (ms, share); flushes
 * out. */
void cg_kprof_print_layers(const cg_kprof_layers_t *t, FILE *out);

#ifdef __cplusplus
}
#endif

#endif
