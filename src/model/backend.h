/* backend.h: the compute backend interface (a table of function pointers, chosen at run time).
 *
 * A backend owns the model's parameters (fp32 master copy), gradients, optimizer state and
 * activations on its device, and runs whole training steps. The training loop, the sampler,
 * the model graph and the stats are shared; only this table differs between the CPU reference
 * backend (always built) and the CUDA backend (cuda/, when built with CUDA).
 *
 * A step is asynchronous on devices that can be:
 *   upload(slot, batch)   copy a host batch into device batch slot `slot` (0..CG_DEV_SLOTS-1);
 *                         the host batch must stay valid until upload_wait(slot) returns
 *   train_step(slot, opt) forward, loss, backward with bucketed gradient sync, the optimizer
 *   accum_step(slot)      gradient accumulation (--grad-accum): forward, loss and backward of
 *                         a micro-batch whose gradients are kept and added to those of the
 *                         next train_step, which all-reduces the sum and steps the
 *                         optimizer once
 *   eval_step(slot)       forward and loss only
 *   fetch(out)            waits for the oldest submitted step and returns its results
 * Every train_step/accum_step/eval_step is matched by exactly one fetch, in order. At most
 * CG_MAX_INFLIGHT steps may be submitted and not yet fetched.
 *
 * Units: loss is the sum over the local samples of weight[i] * (BCE_i + W Dice_i), where
 * BCE_i is the mean over pixels of BCE-with-logits and Dice_i = 1 - (2 sum p y + 1) /
 * (sum p + sum y + 1), p = sigmoid(logit). The gradient is that of the same weighted sum, so
 * with weight = 1/(global batch) the all-reduced SUM of gradients is the mean gradient.
 * With nclass K >= 2 the per-sample term is CE_i + W Dice_i of cg_cpu_loss_k (softmax
 * cross-entropy + soft Dice averaged over the K classes); with an ignore index, pixels whose
 * mask is that label are left out of both terms (binary too). W = cfg.dice_weight
 * (--dice-weight, 1 by default). cfg.class_weight weights the cross-entropy terms (CE_i: their
 * weighted mean; BCE_i: a foreground pixel's term times pos_weight), cfg.label_smoothing
 * smooths CE_i's targets, cfg.focal_gamma makes its terms focal, cfg.ohem_thresh mines the
 * training loss's CE_i (cg_loss_opt_t in cpu_layers.h). A sample whose pixels are
 * all ignored adds 0 but still counts in its weight (1 / global batch).
 */
#ifndef CG_BACKEND_H
#define CG_BACKEND_H

#include <math.h> /* isfinite: cg_clip_coef */
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define CG_DEV_SLOTS 2
#define CG_MAX_INFLIGHT 2

typedef enum { CG_PREC_FP32 = 0, CG_PREC_BF16 = 1, CG_PREC_FP16 = 2 } cg_precision_t;
const char *cg_precision_name(cg_precision_t p);

/* The optimizer (--optimizer): AdamW keeps two moments per parameter (m, v), SGD one momentum
 * buffer (kept where AdamW keeps m; it has no v). */
typedef enum { CG_OPTIM_ADAMW = 0, CG_OPTIM_SGD = 1 } cg_optim_kind_t;

/* --clip-grad-norm's factor, torch.nn.utils.clip_grad_norm_'s: min(1, max_norm / (norm + 1e-6))
 * in float, rounded as PyTorch rounds it (max_norm / tensor is reciprocal(tensor) * max_norm);
 * 1 when norm is not finite (PyTorch multiplies by NaN then; here an fp16 step is skipped and a
 * NaN loss ends the run) or max_norm is +inf. kernels_optim.cu's grad_norm_finish_kernel
 * computes the same. */
static inline float cg_clip_coef(double norm, float max_norm) {
  if (!isfinite(norm) || !isfinite(max_norm)) return 1.0f;
  const float c = 1.0f / ((float)norm + 1e-6f) * max_norm;
  return c < 1.0f ? c : 1.0f;
}

typedef struct cg_backend cg_backend_t; /* each backend defines its own struct */
struct cg_gsync;                        /* comm/gsync.h */
struct cg_nccl;                         /* comm/nccl_comm.h */
struct cg_kprof;                        /* cuda/kprof.h */

typedef struct {
  int batch;                 /* static number of samples per step (per rank) */
  int accum;                 /* micro-batches a step (--grad-accum): > 1 lets accum_step be
                                called (its gradient sum is allocated up front); 0 or 1 none */
  int nclass;                /* classes of the model's head: 0 (take the model's) or equal to
                                cg_model_t.nclass; 1 = binary */
  int ignore_index;          /* mask label excluded from loss and metrics; -1 = none. A value
                                below nclass (a class id, e.g. 0 from a zeroed struct) also
                                means none: the command line refuses such a label. */
  cg_precision_t precision;
  int threads;               /* compute threads (CPU backend); 0 = all allowed cores */
  int device;                /* GPU ordinal (CUDA backend) */
  int deterministic;         /* fixed summation orders, no non-deterministic algorithms */
  int cuda_graph;            /* CUDA: capture the steady-state step as a graph (1/0) */
  int tf32;                  /* CUDA fp32: allow TF32 tensor cores (1/0) */
  const char *algo_cache;    /* CUDA: cuDNN algorithm cache file, or NULL */
  const cg_buckets_t *buckets;
  struct cg_gsync *gsync;    /* gradient sync across ranks; NULL = single process */
  struct cg_nccl *nccl;      /* CUDA: NCCL gradient all-reduce (caller-owned, on this GPU);
                                NULL = MPI (gsync) or single process; not with gsync */
  int grad_bf16;             /* --grad-comm bf16: gradients all-reduced in bf16 and widened back
                                into the fp32 gradients (gsync: set its dtype to match; the
                                CPU backend leaves it all to gsync) */
  int trace;                 /* report stream activity times in cg_step_out_t (--trace-out) */
  int profile;               /* CUDA: time every layer op with events (graphs off) and print
                                the table when the backend is destroyed */
  int64_t fault_nan_step;    /* test only: train_step number (0-based, counted by the backend)
                                whose loss gradient is made NaN; -1 = off */
  float dice_weight;         /* --dice-weight: the soft Dice term's weight in the loss (>= 0; 1 =
                                the reference CE + Dice, 0 = cross-entropy alone). Every maker of
                                a config sets it: 0 from a zeroed struct trains without Dice. */
  const float *class_weight; /* --class-weights / --pos-weight: the loss's class weights, the
                                cw of cg_cpu_loss_k (cpu_layers.h): K >= 2, nclass weights of
                                the cross-entropy terms; binary, one, BCE's pos_weight; NULL =
                                none. The backend keeps a copy. */
  float label_smoothing;     /* --label-smoothing: K >= 2, CrossEntropyLoss's label_smoothing
                                (cpu_layers.h's cg_loss_opt_t.smooth); 0 = none */
  float focal_gamma;         /* --focal-gamma: the focal loss's gamma (cg_loss_opt_t.focal), not
                                with label_smoothing; 0 = none */
  float ohem_thresh;         /* --ohem-thresh: OHEM's threshold (cg_loss_opt_t.ohem) of the
                                training loss (eval_step's loss does not mine); 0 = none */
  int64_t ohem_min_kept;     /* --ohem-min-kept, resolved: >= 0 (cg_loss_opt_t.ohem_min_kept) */
  float clip_norm;           /* --clip-grad-norm: > 0 = every train_step measures the global L2
                                norm of the step's gradient (after the all-reduce, unscaled) and
                                scales the gradient by min(1, clip_norm / (norm + 1e-6)) before
                                the optimizer, as torch.nn.utils.clip_grad_norm_; +inf measures
                                only; 0 = neither */
  cg_optim_kind_t optim;     /* --optimizer: AdamW (a zeroed struct) or SGD */
  float momentum;            /* SGD: the momentum, in [0, 1) (dampening 0) */
  int nesterov;              /* SGD: Nesterov momentum (needs momentum > 0) */
  int ema;                   /* --ema-decay: keep an exponential moving average of the fp32
                                parameters, updated by every train_step that steps the
                                optimizer (cg_optim_t.ema_w; a skipped fp16 step leaves it),
                                read and written by get_ema / set_ema, exchanged with the
                                parameters by swap_ema; 0 = none */
  struct cg_kprof *kprof;    /* CUDA: per-kernel breakdown (cuda/kprof.h, caller-owned); the
                                backend names its regions there and brackets their work; NULL
                                = off */
} cg_backend_cfg_t;

/* A batch on the host, NHWC. Padding samples have weight 0 and contribute nothing.
 * The CPU/GPU split: samples [0, n_cpu) arrive complete in x (normalised RGB + features, made
 * by the CPU helpers); samples [n_cpu, n) arrive only as augmented RGB8 in rgb, and the backend
 * normalises and featurises them itself (on the GPU; on the cpu backend, on its compute
 * threads), with the same numbers as cg_pack_input. */
typedef struct {
  int n, h, w, c;
  const float *x;            /* n*h*w*c; samples [0, n_cpu) valid */
  const uint8_t *y;          /* n*h*w class ids: 0/1 (binary) or 0..K-1, and the ignore label
                                when cg_backend_cfg_t.ignore_index >= 0 */
  const float *weight;       /* n */
  int n_cpu;                 /* see above; == n when everything was prepared on the CPU */
  const uint8_t *rgb;        /* n*h*w*3; samples [n_cpu, n) valid; NULL when n_cpu == n */
  uint8_t *pred;             /* where the step's predicted mask goes (host, n*h*w); NULL = the
                                backend's own buffer. Written by the time the step is fetched. */
  int metrics_on_device;     /* count tp/fp/fn/tn (K >= 2: the K x K matrix) on the device
                                (cg_step_out_t.conf / confk) */
} cg_batch_t;

/* One optimizer step's hyperparameters (the schedule's learning rate of that step); SGD reads lr
 * and weight_decay (its momentum is the backend's, cg_backend_cfg_t). */
typedef struct {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t t;                 /* 1-based step count: AdamW's bias correction */
  float ema_w;               /* cfg.ema: the average's update after the step, cg_cpu_ema's w
                                (1 - decay; 1 copies the new parameters); unread without it */
} cg_optim_t;

typedef struct {
  double loss;               /* weighted local loss sum (see above) */
  const uint8_t *pred;       /* n*h*w predicted class ids, valid until the next fetch: binary
                                logit > 0 -> 1; K >= 2: argmax of the K logits (first max) */
  int skipped;               /* the optimizer step was skipped (fp16 overflow) */
  float loss_scale;          /* current fp16 loss scale (1 for other precisions) */
  float grad_norm;           /* cfg.clip_norm > 0, a train_step: the global L2 norm of the
                                step's gradient before clipping (inf/NaN when it was not
                                finite); otherwise -1 */
  double busy_ms;            /* compute-stream busy time of the step; < 0 = not measured */
  double comm_wait_ms;       /* time compute waited for gradient communication; < 0 = n/a */
  double grad_bytes_reduced; /* bytes all-reduced this step (elements x 4 fp32, x 2 bf16) */
  double h2d_bytes, d2h_bytes; /* bytes copied host->device (its upload) / device->host */
  int has_conf;              /* conf holds the step's counts (metrics_on_device) */
  int64_t conf[4];           /* tp, fp, fn, tn over the real samples (binary) */
  const int64_t *confk;      /* K >= 2 with has_conf: nclass*nclass counts, row = truth, col =
                                pred, ignore pixels and padding samples excluded; valid until
                                the next fetch. NULL for binary. */
  /* Stream activity of the step on the host clock (cg_now() seconds), for --trace-out; only
   * filled when cfg.trace is set; an interval with t1 < t0 did not happen. comm holds the
   * all-reduce of each bucket (ncomm of them). t_ready[j] (nready of them): when bucket j's
   * gradients were complete (posted for the all-reduce); t_bwd: backward's interval; t_opt:
   * the optimizer's (after the all-reduce) — the inputs of `cogpu-bench scaling --trace`. */
  double t_h2d[2], t_compute[2], t_d2h[2];
  int ncomm;
  double t_comm[CG_MAX_BUCKETS][2];
  int nready;
  double t_ready[CG_MAX_BUCKETS], t_bwd[2], t_opt[2];
} cg_step_out_t;

typedef struct cg_backend_ops {
  const char *name;
  /* Returns 0, or -1 with a message in err. The model must outlive the backend. */
  int (*create)(const cg_model_t *m, const cg_backend_cfg_t *cfg, cg_backend_t **out, char *err,
                size_t errlen);
  void (*destroy)(cg_backend_t *b); /* NULL is a no-op */
  /* Copy the fp32 master parameters in / out (nparams floats, host memory). set_params
   * also refreshes any low-precision copy. Both synchronise with pending work. */
  int (*set_params)(cg_backend_t *b, const float *params);
  int (*get_params)(cg_backend_t *b, float *params);
  /* Gradients of the last train_step after the all-reduce (nparams floats, unscaled, before
   * --clip-grad-norm scales them). */
  int (*get_grads)(cg_backend_t *b, float *grads);
  /* The optimizer's state (AdamW's moments m and v; SGD's momentum buffer as m, v all 0 out
   * and not read in) and the fp16 loss-scaler state, for checkpoints. */
  int (*get_opt_state)(cg_backend_t *b, float *m, float *v, float *scale, int64_t *good_steps);
  int (*set_opt_state)(cg_backend_t *b, const float *m, const float *v, float scale,
                       int64_t good_steps);
  int (*upload)(cg_backend_t *b, int slot, const cg_batch_t *batch);
  int (*upload_wait)(cg_backend_t *b, int slot);
  int (*train_step)(cg_backend_t *b, int slot, const cg_optim_t *opt);
  /* A micro-batch before a step's last (cfg.accum > 1): its gradients are added to the kept sum
   * (the first after a train_step starts it afresh); no all-reduce, no AdamW. The next
   * train_step adds the sum to its own gradients before they are all-reduced, so the step's
   * gradient is that of every micro-batch's samples with their weights (1 / the step's global
   * count); get_grads returns it. fp16: the loss scale stays that of the step; an overflow in
   * any micro-batch skips the whole step. Its results (loss, prediction) come from fetch. */
  int (*accum_step)(cg_backend_t *b, int slot);
  int (*eval_step)(cg_backend_t *b, int slot);
  int (*fetch)(cg_backend_t *b, cg_step_out_t *out);
  /* Bytes of memory the backend holds on its device (activations, parameters, optimizer
   * state, workspaces, batch slots): what it allocated, the peak, as it allocates up front. */
  size_t (*mem_bytes)(cg_backend_t *b);
  /* Host memory for batches the backend uploads (pinned on a GPU, so copies are asynchronous
   * and at full speed); NULL on failure. Not tied to a backend instance, but on a GPU it makes
   * a context on the calling thread's device (GPU 0 on a fresh thread): call it after create, on
   * the thread that created the backend (the trainer's loaders do). */
  void *(*host_alloc)(size_t bytes);
  void (*host_free)(void *p);
  /* The logits of the last evaluated batch (predict): call after eval_step and its fetch, before
   * the next step is submitted. out: n*h*w*nclass fp32, NHWC, host memory (the caller's). On a
   * GPU they are converted from the compute type on the device and copied once (synchronous). */
  int (*get_logits)(cg_backend_t *b, float *out);
  /* cfg.ema: the moving average of the parameters out / in (nparams floats, host memory), and
   * swap_ema, which exchanges it with the fp32 parameters (refreshing any low-precision copy):
   * a validation of the average between two swaps leaves training as it was. Each
   * synchronises with pending work. */
  int (*get_ema)(cg_backend_t *b, float *ema);
  int (*set_ema)(cg_backend_t *b, const float *ema);
  int (*swap_ema)(cg_backend_t *b);
} cg_backend_ops_t;

extern const cg_backend_ops_t cg_backend_cpu;

#ifdef COGPU_HAVE_CUDA
extern const cg_backend_ops_t cg_backend_cuda;
/* 1 if a CUDA device can be used; else 0 with the reason in why. */
int cg_cuda_usable(char *why, size_t len);
/* Free memory of GPU `device` in *bytes (cudaMemGetInfo); 0, or -1 when it cannot be read. */
int cg_cuda_free_bytes(int device, size_t *bytes);
#endif

#endif
