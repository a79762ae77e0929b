/* preflight.h: the memory a training run will need, estimated before anything large is
 * allocated, against what the machine has.
 *
 * Why: a shape such as --model-base 1024 --model-depth 6 --image-size 8192 --batch 65536 asks
 * for hundreds of GB; without this check the run dies inside the allocator (or the OOM killer
 * takes the node) instead of saying what it needs. The estimate counts the big items only (the
 * parameters with their gradients and AdamW moments, the activations and their gradients, the
 * batch slots of the backend and of the loader), so it is a lower bound: a run it refuses could
 * never have fit. */
#ifndef CG_PREFLIGHT_H
#define CG_PREFLIGHT_H

#include <stddef.h>

#include "model.h"

typedef struct {
  double host, device;          /* bytes per rank; device 0 on the cpu backend */
  double params, acts, batches; /* parts of the larger of the two (for the message) */
} cg_preflight_t;

/* The estimate for a rank training model m with `batch` samples per step (per micro-batch with
 * accum > 1: --grad-accum keeps a gradient sum besides), `prefetch` batches prepared ahead, on
 * the CUDA backend (cuda, element size es: 2 for bf16/fp16, 4 for fp32) or the cpu backend,
 * with `moments` optimizer buffers per parameter (AdamW 2, SGD 1; --ema-decay's average counts
 * as one more); ohem: --ohem-thresh's key of every pixel of the batch (4 bytes, either
 * backend), counted with the activations. */
cg_preflight_t cg_preflight_estimate(const cg_model_t *m, int batch, int accum, int prefetch,
                                     int cuda, int es, int moments, int ohem);

/* The host memory of the cpu backend running model m forward only (predict), `batch` tiles at
 * a time: what it touches (weights, activations once, tiles and logits), not what a training
 * run would. host is the total. */
cg_preflight_t cg_preflight_estimate_eval(const cg_model_t *m, int batch);

/* MemAvailable of /proc/meminfo in bytes, else the physical memory; -1 when unknown. */
double cg_preflight_host_available(void);

/* Checks the estimate against the memory available: host RAM (MemAvailable) shared by the
 * ranks_on_node ranks of this node, and, with cuda, the free memory of GPU `device`. 0 when it
 * fits; -1 with a message giving the estimate, the limit and what to reduce. */
int cg_preflight_check(const cg_preflight_t *e, int cuda, int device, int ranks_on_node,
                       char *err, size_t errlen);

#endif
