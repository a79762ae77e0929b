/* devplan.h: the CUDA backend's step as a list of buffer accesses, and the arena layout of its
 * activations and activation gradients derived from it. Host C, so the CPU tests check the
 * very plan the backend uses.
 *
 * Buffers (dense NHWC, element size es): act(t) for every tensor t of the model, grad(t) for
 * every tensor but the input. A concat buffer of model.h ([a | b]) is three dense tensors in
 * the backend: a, b and the whole; cg_k_concat_fwd fills the whole just before its reader and
 * cg_k_concat_bwd splits the reader's input gradient into the parts right after its backward.
 * The input has cpad channels (padded for tensor cores).
 *
 * A step is a sequence of positions, one per kernel group of cuda/backend_cuda.cu, in the order
 * the backend runs them:
 *   prep                 prep_input writes act(input)
 *   cat_fwd[i], fwd[i]   per layer, forward order
 *   loss                 reads act(logits); a train step writes grad(logits)
 *   per layer, reverse order, for a convolution or upconv (not the head):
 *     bwd_mask[i]        bias (+ ReLU) backward: dy in place, act(out) read when ReLU
 *     bwd_dw[i]          dW from act(in) and dy
 *     bwd_dx[i]          dx from dy (need_dx), written or accumulated (accum_dx)
 *   the head: bwd_dw[i] = bwd_dx[i], one kernel reading act(in) and dy, writing dx;
 *   a pool: bwd_dx[i] (when need_dx), reading act(in) and dy (the output is not read);
 *   cat_bwd[i]           splits grad(concat) of layer i's input into its parts.
 * dW runs before dx so that dx may reuse act(in)'s bytes when nothing later reads act(in).
 * Every access is recorded with its mode; a buffer's live interval runs from its first access
 * to its last. The first access of every buffer must overwrite it completely (cg_devplan_make
 * fails otherwise): no value is carried from one step to the next, and nothing relies on the
 * arena holding zeros. The backend asks cg_devplan_allows for each pointer it hands a kernel,
 * so an access the plan does not list stops the run instead of corrupting another buffer.
 *
 * Ownership: a cg_devplan_t is a caller-owned value with no heap memory. */
#ifndef CG_DEVPLAN_H
#define CG_DEVPLAN_H

#include <stddef.h>

#include "model.h"

#define CG_DEVPLAN_MAX_BUFS (2 * CG_MAX_TENSORS)
#define CG_DEVPLAN_MAX_POS (6 * CG_MAX_LAYERS + 2)
#define CG_DEVPLAN_MAX_ACC (16 * CG_MAX_LAYERS + 4)

typedef enum {
  CG_DP_W = 1,  /* overwritten completely */
  CG_DP_R = 2,  /* read */
  CG_DP_RW = 3  /* read and modified: accumulated into, or changed in place */
} cg_dp_mode_t;

typedef struct {
  int pos, buf, mode;
} cg_devplan_acc_t;

typedef struct {
  /* the graph as the backend runs it */
  int first;                               /* the layer reading the input */
  int is_head[CG_MAX_LAYERS];              /* the 1-channel 1x1 head (custom kernels) */
  int cat_a[CG_MAX_TENSORS], cat_b[CG_MAX_TENSORS]; /* parts of a concat tensor, else -1 */
  /* positions (-1: not part of the step) */
  int prep, loss, npos;
  int cat_fwd[CG_MAX_LAYERS], fwd[CG_MAX_LAYERS];
  int bwd_mask[CG_MAX_LAYERS], bwd_dw[CG_MAX_LAYERS], bwd_dx[CG_MAX_LAYERS];
  int cat_bwd[CG_MAX_LAYERS];
  /* accesses in program order (so sorted by position); acc_at[p] = first access at p */
  int nacc;
  cg_devplan_acc_t acc[CG_DEVPLAN_MAX_ACC];
  int acc_at[CG_DEVPLAN_MAX_POS + 1];
  /* buffers: act(t) = t, grad(t) = ntensors + t */
  int ntensors, nbufs;
  size_t size[CG_DEVPLAN_MAX_BUFS];        /* bytes; 0 for a buffer the step never touches */
  int first_use[CG_DEVPLAN_MAX_BUFS], last_use[CG_DEVPLAN_MAX_BUFS]; /* -1 when unused */
  size_t offset[CG_DEVPLAN_MAX_BUFS];      /* into the arena */
  size_t align;
  size_t arena;        /* bytes of the arena (planned) */
  size_t naive;        /* one buffer per activation and per gradient, as before the arena */
  size_t live_max;     /* the most bytes live at one position: a lower bound of arena */
  size_t search_bytes; /* cg_devplan_search_layout's need, <= arena is not guaranteed */
} cg_devplan_t;

static inline int cg_devplan_act(const cg_devplan_t *p, int t) { (void)p; return t; }
static inline int cg_devplan_grad(const cg_devplan_t *p, int t) { return p->ntensors + t; }

/* Which layer reads the input, which is the head, how the concat buffers split into dense
 * tensors; checks the backward plan of the model fits that split (the concat's single reader
 * overwrites its gradient, the parts' readers run backward after it and accumulate). Fills
 * first, is_head, cat_a, cat_b. 0, or -1 with a message. */
int cg_devplan_graph(const cg_model_t *m, cg_devplan_t *p, char *err, size_t errlen);

/* The whole plan for batch n, input channels padded to cpad, es bytes per element, offsets
 * aligned to align (a power of two; 0 = 256): graph, positions, accesses, intervals, arena.
 * 0, or -1 with a message (a graph the backend cannot run, a buffer read before it is written
 * in the step, a plan that fails its own verification). */
int cg_devplan_make(const cg_model_t *m, int n, int cpad, size_t es, size_t align,
                    cg_devplan_t *p, char *err, size_t errlen);

/* 1 if the step accesses buffer buf at position pos in this mode, else 0. */
int cg_devplan_allows(const cg_devplan_t *p, int pos, int buf, int mode);

/* The algorithm search of a convolution layer i runs its forward and both backwards on its
 * x, y, dy and dx at once: offsets inside the arena where those four do not overlap
 * (x at 0, then y, dy, dx, aligned; dx = (size_t)-1 when the layer has no dx). Returns the
 * bytes they span (<= p->search_bytes). */
size_t cg_devplan_search_layout(const cg_devplan_t *p, const cg_model_t *m, int i, size_t *x,
                                size_t *y, size_t *dy, size_t *dx);

/* Prints the buffers, their intervals and offsets (one line each) to stdout. */
void cg_devplan_print(const cg_devplan_t *p, const cg_model_t *m);

#endif
