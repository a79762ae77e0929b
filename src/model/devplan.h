/* devplan.h: the CUDA backend's step as a list of buffer accesses, and the arena layout of its
 * activations and activation gradients derived from it. Host C, so the CPU tests check the
 * very plan the backend uses.
 *
 * Buffers (NHWC, element size es): act(t) for every tensor t of the model, grad(t) for every
 * tensor but the input. The input has cpad channels (padded for tensor cores). A concat buffer
 * of model.h ([a | b]) is held in one of two ways (cg_devplan_opts_t.inplace_concat):
 *  - copies: three dense tensors a, b and the whole; cg_k_concat_fwd fills the whole just
 *    before its reader and cg_k_concat_bwd splits the reader's input gradient into the parts
 *    right after its backward;
 *  - in place: the parts are views of the whole (a at channel 0, b at channel ca, pixel stride
 *    ld = ca + cb), so their writers write straight into the concat buffer and the readers of
 *    the gradient halves read them where the reader of the whole wrote them. A part is then a
 *    buffer of its own for the accesses (each half is written before it is read), but it has
 *    no bytes of its own: parent[part] is the whole, whose live interval covers its parts'.
 * ld[t] is the pixel stride of tensor t as the backend holds it (its channels, cpad for the
 * input, the whole's channels for a part in place) and coff[t] its first channel there.
 * With copies and opts.skip_from_cat, copy(t) names the copy of part t inside the concat buffer
 * (no bytes of its own either: parent[copy(t)] is the whole, at channel copy_coff[t], pixel
 * stride copy_ld[t]); the backward reads t there, so t's own buffer lives only until the
 * concat's forward copy (the skip then costs nothing while the decoder runs).
 * The choice is per concat buffer: opts.inplace_concat asks for every concat in place but the
 * ones opts.copy_concat[t] names (cuDNN may refuse a strided half at one resolution only);
 * cg_devplan_inplace(p, t) says which way concat t is held.
 * With copies, skip_from_cat and opts.grad_in_cat, the skip's gradient also lives in the concat
 * buffer: once the concat's reader has done its backward, the other part's copy (the
 * upsampled half, which no backward reads) is dead bytes, and the split of the concat's
 * gradient writes the skip's part there: gcat(t), a view of act(concat) at channel
 * gcat_coff[t], pixel stride copy_ld[t]. The pool reading the skip then reads gcat(t) as the
 * gradient to add to and writes grad(t) dense, with its producer's ReLU + bias backward
 * (fuse_relu_bias): the skip's gradient costs no bytes from the split to the pool's backward.
 * Only where the skip's other reader is a pool that does its producer's ReLU + bias backward,
 * the other part has no reader in the backward and at least as many channels.
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
 *   a pool: bwd_dx[i] (when need_dx), reading act(in) and dy (the output is not read); where
 *     in has gcat(in), it reads gcat(in) (the gradient to add to) and writes grad(in);
 *   cat_bwd[i]           splits grad(concat) of layer i's input into its parts (copies only;
 *                        the skip's part into gcat(skip) where it has one).
 * dW runs before dx so that dx may reuse act(in)'s bytes when nothing later reads act(in);
 * a layer whose dW and dx run at the same time (opts.concurrent) reads act(in) at bwd_dx too.
 * With opts.fuse_relu_bias, the backward of the head or of a pool also does the ReLU + bias
 * backward of the convolution j that produced its input (bias_by[j] = that layer), when it is
 * the last to write grad(out(j)): j then has no bwd_mask position. With opts.drelu[i], layer
 * i's dx position also reads act(in) (the ReLU mask), and the producer j = mask_by^-1 has a
 * bwd_mask position that only reads dy (1), or lists both ways (2).
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

#define CG_DEVPLAN_MAX_BUFS (4 * CG_MAX_TENSORS)
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
  int inplace_concat;            /* concat parts as views of the whole (above) */
  /* with concat copies: the backward reads a part's activation from its copy inside the concat
   * buffer (copy(t) below), so the part itself dies once it is copied */
  int skip_from_cat;
  int fuse_relu_bias;            /* the head / pool backward does its producer's ReLU + bias */
  int concurrent[CG_MAX_LAYERS]; /* conv layer i runs dW and dx at the same time */
  /* conv layer i's dx is masked by the ReLU that produced its input, in the same kernel
   * (cg_conv_bwd_data_drelu): 1 it is, 2 it may be (the plan then lists the accesses of both
   * ways); the producer's bias backward is then a plain reduction of its dy. Only where the
   * producer is a convolution with a ReLU whose output layer i alone reads. */
  int drelu[CG_MAX_LAYERS];
  int copy_concat[CG_MAX_TENSORS]; /* concat tensor t is copied even with inplace_concat */
  int grad_in_cat;               /* with copies and skip_from_cat: gcat(t) above */
} cg_devplan_opts_t;

typedef struct {
  /* the graph as the backend runs it */
  int first;                               /* the layer reading the input */
  int is_head[CG_MAX_LAYERS];              /* the 1x1 head, 1 or K channels (custom kernels) */
  int cat_a[CG_MAX_TENSORS], cat_b[CG_MAX_TENSORS]; /* parts of a concat tensor, else -1 */
  cg_devplan_opts_t opts;                  /* as given (concurrent[] only for layers it fits) */
  int ld[CG_MAX_TENSORS], coff[CG_MAX_TENSORS]; /* pixel stride and first channel (above) */
  int copy_ld[CG_MAX_TENSORS], copy_coff[CG_MAX_TENSORS]; /* of copy(t), where it exists */
  int gcat_coff[CG_MAX_TENSORS];           /* of gcat(t), where it exists (stride copy_ld[t]) */
  int bias_by[CG_MAX_LAYERS];              /* the layer doing i's ReLU + bias backward, or -1 */
  int mask_by[CG_MAX_LAYERS];              /* the layer whose dx may carry i's ReLU mask
                                              (opts.drelu), or -1 */
  /* positions (-1: not part of the step) */
  int prep, loss, npos;
  int cat_fwd[CG_MAX_LAYERS], fwd[CG_MAX_LAYERS];
  int bwd_mask[CG_MAX_LAYERS], bwd_dw[CG_MAX_LAYERS], bwd_dx[CG_MAX_LAYERS];
  int cat_bwd[CG_MAX_LAYERS];
  /* accesses in program order (so sorted by position); acc_at[p] = first access at p */
  int nacc;
  cg_devplan_acc_t acc[CG_DEVPLAN_MAX_ACC];
  int acc_at[CG_DEVPLAN_MAX_POS + 1];
  /* buffers: act(t) = t, grad(t) = ntensors + t, copy(t) = 2 ntensors + t,
   * gcat(t) = 3 ntensors + t */
  int ntensors, nbufs;
  size_t size[CG_DEVPLAN_MAX_BUFS];        /* bytes; 0 for a buffer the step never touches
                                              and for a part in place (its parent holds it) */
  int parent[CG_DEVPLAN_MAX_BUFS];         /* a part in place, copy(t), gcat(t): the whole's
                                              buffer, else -1 */
  int first_use[CG_DEVPLAN_MAX_BUFS], last_use[CG_DEVPLAN_MAX_BUFS]; /* -1 when unused */
  size_t offset[CG_DEVPLAN_MAX_BUFS];      /* into the arena (a part: its first element) */
  size_t align;
  size_t arena;        /* bytes of the arena (planned) */
  size_t naive;        /* one buffer per activation and per gradient, as before the arena */
  size_t live_max;     /* the most bytes live at one position: a lower bound of arena */
  size_t search_bytes; /* cg_devplan_search_layout's need, <= arena is not guaranteed */
} cg_devplan_t;

static inline int cg_devplan_act(const cg_devplan_t *p, int t) { (void)p; return t; }
static inline int cg_devplan_grad(const cg_devplan_t *p, int t) { return p->ntensors + t; }
static inline int cg_devplan_copy(const cg_devplan_t *p, int t) { return 2 * p->ntensors + t; }
static inline int cg_devplan_gcat(const cg_devplan_t *p, int t) { return 3 * p->ntensors + t; }
/* Concat tensor t (cat_a[t] >= 0) held in place (its parts views of it), else copied. */
static inline int cg_devplan_inplace(const cg_devplan_t *p, int t) {
  return p->opts.inplace_concat && !p->opts.copy_concat[t];
}

/* Which layer reads the input, which is the head, how the concat buffers split into dense
 * tensors; checks the backward plan of the model fits that split (the concat's single reader
 * overwrites its gradient, the parts' readers run backward after it and accumulate). Fills
 * first, is_head, cat_a, cat_b. 0, or -1 with a message. */
int cg_devplan_graph(const cg_model_t *m, cg_devplan_t *p, char *err, size_t errlen);

/* The whole plan for batch n, input channels padded to cpad, es bytes per element, offsets
 * aligned to align (a power of two; 0 = 256), with the options opts (NULL: all off): graph,
 * positions, accesses, intervals, arena. 0, or -1 with a message (a graph the backend cannot
 * run, a buffer read before it is written in the step, a plan that fails its own
 * verification). */
int cg_devplan_make(const cg_model_t *m, int n, int cpad, size_t es, size_t align,
                    const cg_devplan_opts_t *opts, cg_devplan_t *p, char *err, size_t errlen);


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
