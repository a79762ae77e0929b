/* backend_cuda.cu: the CUDA backend — one rank drives one GPU (the ops table of backend.h).
 *
 * Streams and ordering. Five non-blocking streams, ordered only by events:
 *   h2d      upload(slot): waits ev_free[slot] (the last step that read the slot), copies the
 *            batch, records ev_ready[slot];
 *   compute  a step: waits ev_ready[slot], records ev_start, runs the step body, records ev_end
 *            and ev_free[slot];
 *   comm     gradient buckets, from two hooks: bucket_ready() after each layer's backward and
 *            grads_sync() before AdamW. With NCCL (cfg.nccl) bucket_ready records ev_bucket[j]
 *            on compute, comm waits for it and all-reduces bucket j in place while backward
 *            goes on; grads_sync records ev_xp_begin (backward done), makes compute wait for
 *            ev_comm_done (recorded on comm after the last bucket) and records ev_xp_end: the
 *            time between the two is the exposed communication. With MPI (cfg.gsync) comm
 *            copies each bucket to pinned host memory, the host reduces it and copies it back
 *            (always staged: Open MPI's non-blocking reductions do not take device memory,
 *            even when it is CUDA-aware). --grad-comm bf16 (gradcast.h): bucket_ready casts
 *            the bucket into d_gbf16 on compute before ev_bucket; NCCL sums that in bf16 and
 *            comm widens it back into d_grads; MPI copies the bf16 bucket (half the bytes) out
 *            and back and comm widens the whole buffer;
 *   d2h      waits ev_end, copies the step's results to pinned host memory, records ev_result;
 *   side     the dW of the layers whose dW and dx run at the same time (the plan's concurrent
 *            ones): forked from compute by ev_fork, joined back by ev_join before the layer's
 *            backward ends, with a cuDNN workspace of its own (d_ws2).
 * The host blocks only in fetch (on ev_result of the oldest step), in upload_wait, in the
 * parameter get/set calls and, with several ranks, while MPI reduces the staged gradients.
 *
 * Slots. Batch slots (CG_DEV_SLOTS) are named by the caller. Per-step things are indexed by
 * the step's sequence number: device results, the pinned step-parameter staging and the CUDA
 * graph variant by seq % CG_MAX_INFLIGHT (step seq+2 is submitted only after step seq was
 * fetched, so its results were already copied out), pinned results and events by
 * seq % (CG_MAX_INFLIGHT + 1), so the prediction returned by fetch stays valid until the next
 * fetch even after one more step is submitted.
 *
 * Memory. Everything is allocated at create (plain cudaMalloc, zeroed): fp32 master
 * parameters, gradients (the flat layout of model.h) and AdamW moments, the compute-precision
 * copy of the parameters (bf16/fp16; AdamW refreshes it), and one arena for the activations
 * and their gradients. A concat buffer of model.h ([up | skip]) is held in place by default:
 * the upconv and the encoder's last conv write their halves of it (pixel stride = the
 * buffer's channels), the decoder's conv reads it whole, and the backward reads the halves of
 * its gradient where that conv's dx wrote them (the pool's backward accumulating into the
 * skip half); or, per concat buffer, when cuDNN has no engine for a strided half of it (or
 * CG_CONCAT=copy, CG_CONCAT_COPY_HW), as three dense tensors joined by cg_k_concat_fwd / split
 * by cg_k_concat_bwd; the backward then reads the skip from its copy in the concat buffer and
 * the split writes the skip's gradient into the upsampled half's dead bytes there (gcat in
 * devplan.h), which the pool's backward reads as the gradient to add to. The head's and the
 * pools' backward also do the ReLU + bias backward of the conv before them, and a conv's dx
 * may carry its input's ReLU mask (cuDNN fusion), leaving the layer before a plain bias sum.
 * The arena layout is the step plan of src/model/devplan.h:
 * buffers whose live intervals within a step are disjoint share bytes, so nothing may be read
 * outside its interval and nothing survives from one step to the next (every buffer is fully
 * written before it is read in each step; the plan refuses a graph where that does not hold).
 * Every pointer forward() and backward() pass to a kernel goes through act_at/grad_at, which
 * check the access against the plan. The first layer's input is padded to a multiple of 8
 * channels (tensor cores; cuDNN has no bf16 NHWC algorithm for 5 channels), and its weights
 * are repacked from the fp32 master at the start of every forward.
 * dW of a cuDNN layer goes to its own slot (aligned, compute type); one launch converts a
 * gradient bucket's slots into the fp32 gradient buffer (whose per-layer offsets have no useful
 * alignment) just before the bucket is all-reduced. Before the algorithm search the arena and
 * the weights hold random values (timings on zeros mislead, and candidates are checked against
 * each other's output); the weights are zeroed again after it.
 *
 * CUDA graphs. After kWarmupSteps eager steps (the cuDNN plans, lazily loaded kernels and
 * the algorithm choice are settled by then), the compute-stream part of a training step — from
 * the step-parameter copy through AdamW and the loss-scaler update — is captured once per
 * (batch slot, result slot) pair and replayed. Values that change per step are read from
 * device memory: the captured H2D copy reads the pinned staging at replay time, so the host
 * fills the staging before launching. A failed capture/instantiation prints one warning and
 * falls back to eager steps for good. Graphs are off with the MPI all-reduce (the host takes
 * part in the step) and when a fault is injected. NCCL calls are captured: the comm stream
 * joins the capture through the first ev_bucket wait and leaves it through ev_comm_done, and
 * ev_xp_begin/ev_xp_end become external event-record nodes, so the exposed time is measured in
 * replays too. They are indexed by seq % CG_MAX_INFLIGHT like the other per-step device state,
 * as one graph serves every step of its (batch slot, dq) pair.
 *
 * Loss scaling (fp16): the loss gradient is multiplied by the scale, gradients stay scaled in
 * the flat buffer, AdamW divides by the scale and skips the whole update on inf/NaN. The
 * scaler struct is snapshotted into the step's result before and after its update, on the
 * compute stream, so the d2h copy never races the next step. */
#include <math.h>
#include <mpi.h> /* before the extern "C" block: gsync.h and nccl_comm.h include it */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "devplan.h"
#include "nvtx.h"
#include "gsync.h"
#include "nccl_comm.h"
}
#include "conv.h"
#include "cuda_check.h"
#include "head.h"
#include "kernels.h"
#include "kernels_feat.h"
#include "gradcast.h"
#include "kprof.h"

namespace {

constexpr int kNQ = CG_MAX_INFLIGHT + 1; /* pinned result slots and per-step events */
constexpr int kNDQ = CG_MAX_INFLIGHT;    /* device result slots, staging, graph variants */
constexpr int kWarmupSteps = 2;          /* eager steps before a graph is captured */
constexpr int kMaxAllocs = 3 * CG_MAX_TENSORS + 64;
constexpr int kChannelAlign = 8;         /* first-layer input channels padded to this */
constexpr unsigned long long kProfileHoldNs = 40000000ull; /* 40 ms: see begin_step */
constexpr size_t kArenaAlign = 256;      /* offsets of the buffers inside the arena */

/* One step's results on the device and in pinned host memory. */
struct result_t {
  double loss;
  unsigned long long conf[4]; /* tp fp fn tn, when the device counted the metrics */
  cg_scaler_t before; /* after check_finite and AdamW: found_inf, the scale this step used */
  cg_scaler_t after;  /* after the scaler update: the scale the next step uses */
  float gnorm;        /* --clip-grad-norm: the step's gradient norm (cg_gnorm_t.norm) */
};

/* What the host learnt while submitting a step. */
struct meta_t {
  int train;
  int micro;           /* accum_step: backward, no buckets, no optimizer */
  int metrics_dev;     /* the device counted the metrics: no predicted mask comes back */
  uint8_t *pred_dst;   /* where the predicted mask goes (the caller's, else h_pred) */
  double h2d, d2h;     /* bytes copied for this step */
  int mpi;             /* busy time excludes the wait for the host-staged all-reduce */
  int nccl;            /* exposed time = ev_xp_begin..ev_xp_end of the step's dq */
  double comm_wait_ms; /* < 0: not applicable */
  double bytes;
};

/* Checked mode (COGPU_CHECK_DEVICE=1): the device of every stream and event the backend made,
 * by handle, in open addressing; far larger than the few hundred handles, so it never fills. */
constexpr int kDevTab = 4096;
struct dev_entry_t {
  const void *h;
  int dev;
};

}  // namespace

struct cg_backend {
  const cg_model_t *m;
  cg_backend_cfg_t cfg;
  int n;            /* batch */
  int nclass;       /* the head's classes: 1 binary, K >= 2 softmax (kernels *_k) */
  int ign;          /* the ignore label, -1 = none */
  int dev, dev_set;
  int check_dev;            /* COGPU_CHECK_DEVICE=1: assert the device at entries and uses */
  dev_entry_t *devtab;      /* checked mode: stream/event -> its device (kDevTab entries) */
  cg_nccl_t *nccl;  /* = cfg.nccl: all-reduce on the comm stream; NULL = MPI or one process */
  cg_dtype_t dt;
  size_t es;        /* bytes per activation element */
  int cpad;         /* first-layer input channels after padding */
  cg_devplan_t plan; /* the graph as run (first layer, head, concat parts), the step's buffer
                        accesses and the arena layout */

  cudnnHandle_t dnn;
  cudaStream_t s_h2d, s_comp, s_comm, s_d2h;
  cg_conv_ctx_t *cctx;
  cg_conv_t *conv[CG_MAX_LAYERS];

  /* device memory (every pointer below is also in allocs[], which destroy frees) */
  void *allocs[kMaxAllocs];
  int nallocs;
  void *hallocs[4 * kNQ + 4]; /* pinned host memory */
  int nhallocs;
  size_t bytes;
  size_t mem_params, mem_arena, mem_slots, mem_scratch; /* parts of bytes, for the log line */
  float *d_params, *d_grads, *d_m, *d_v; /* SGD: its momentum buffer in d_m, no d_v */
  float *d_gacc;           /* --grad-accum (cfg.accum > 1): the step's micro-batch gradient sum
                              so far (accum_step keeps, the step's last takes and zeroes it) */
  int micro;               /* a micro-batch's body is being issued: no bucket comm */
  uint16_t *d_gbf16;       /* --grad-comm bf16: the gradients as all-reduced (bucket j at off[j]);
                              NULL otherwise */
  void *d_lowp;            /* compute-precision parameter copy; NULL for fp32 */
  float *d_ema;            /* cfg.ema: the parameters' moving average (else NULL) */
  void *d_w0;              /* the first layer's weights, input channels padded */
  void *d_arena;           /* activations and their gradients (the plan's offsets) */
  void *d_act[CG_MAX_TENSORS], *d_dact[CG_MAX_TENSORS]; /* into the arena; NULL if unused */
  void *d_dw_all;          /* every layer's dW in the compute type (dw_lp[i] into it) */
  void *dw_lp[CG_MAX_LAYERS];
  int pending[CG_MAX_LAYERS], npending; /* layers whose dW awaits its fp32 conversion */
  int merge_casts;         /* convert per bucket (1, default) or per layer (CG_MERGE_CASTS=0) */
  int dw_bias;             /* bias gradient from our dW kernel where it can (fold_db; CG_DW_BIAS) */
  int cat_bias;            /* an upconv's bias forward in its concat's copy (bias_in_copy) */
  int bias_copy[CG_MAX_LAYERS]; /* bias_in_copy(i), fixed once the plan is (set_bias_copy) */
  cudaStream_t s_side;     /* dW of the layers whose dW and dx run concurrently */
  cudaEvent_t ev_fork, ev_join;
  void *d_ws2;             /* the side stream's cuDNN workspace */
  size_t ws2_bytes;
  void *d_pool_work;       /* the fused pool backward's bias partials */
  void *d_ws;              /* cuDNN workspace */
  size_t ws_bytes;
  void *d_bias_work, *d_head_work, *d_loss_work;
  uint32_t *d_ohem_keys;   /* cfg.ohem_thresh > 0: cg_k_ohem_thr's scratch (each pixel's key,
                              the select's state) */
  float *d_ohem_thr;       /* ... and each sample's threshold, for the train step's loss */
  float *d_x[CG_DEV_SLOTS], *d_wt[CG_DEV_SLOTS];
  uint8_t *d_y[CG_DEV_SLOTS];
  uint8_t *d_rgb[CG_DEV_SLOTS];   /* RGB8 of the samples the device featurises (the split) */
  int n_cpu[CG_DEV_SLOTS];        /* the slot's batch: samples prepared on the CPU */
  uint8_t *pred_dst[CG_DEV_SLOTS];
  int metrics_dev[CG_DEV_SLOTS];
  double h2d_bytes[CG_DEV_SLOTS];
  void *d_conf_work;
  cg_step_params_t *d_hp;
  cg_scaler_t *d_scaler;
  float *d_grad_scale;     /* the loss scale of the last train step (get_grads) */
  float *d_cw;             /* K >= 2 with cfg.class_weight: the K class weights (else NULL) */
  float pos_w;             /* binary: cfg.class_weight's pos_weight, or 1 */
  cg_gnorm_t *d_gn;        /* cfg.clip_norm > 0: the step's gradient norm and clip factor */
  void *d_gn_work;         /* and its partial sums */
  result_t *d_res[kNDQ];
  uint8_t *d_pred[kNDQ];
  unsigned long long *d_confk[kNDQ]; /* K >= 2, metrics on the device: K x K counts */
  unsigned long long *h_confk[kNQ];  /* their pinned copies (cg_step_out_t.confk) */
  float *d_logits32;       /* get_logits: fp32 copy of the head output (made on first use) */

  /* pinned host memory */
  cg_step_params_t *h_hp[kNDQ];
  result_t *h_res[kNQ];
  uint8_t *h_pred[kNQ];
  float *h_grads;          /* gradient staging for the MPI all-reduce; --grad-comm bf16: holds
                              nparams uint16_t bf16 values instead (half the size) */

  /* events */
  cudaEvent_t ev_ready[CG_DEV_SLOTS], ev_free[CG_DEV_SLOTS];
  cudaEvent_t ev_start[kNQ], ev_end[kNQ], ev_result[kNQ], ev_bwd_end[kNQ], ev_opt_begin[kNQ];
  cudaEvent_t ev_bucket[CG_MAX_BUCKETS], ev_bucket_host[CG_MAX_BUCKETS], ev_comm_done;
  cudaEvent_t ev_xp_begin[kNDQ], ev_xp_end[kNDQ]; /* NCCL: compute waited for comm between */

  /* --trace-out: events at the edges of each stream's work, put on the host clock through a
   * reference event whose host time was taken when it completed */
  cudaEvent_t ev_ref, ev_h2d_start[CG_DEV_SLOTS], ev_d2h_start[kNQ];
  cudaEvent_t ev_h2d_end[CG_DEV_SLOTS], ev_d2h_end[kNQ]; /* timed twins of ev_ready/ev_result */
  cudaEvent_t ev_cb[kNDQ][CG_MAX_BUCKETS][2]; /* NCCL bucket all-reduce edges */
  cudaEvent_t ev_rd[kNDQ][CG_MAX_BUCKETS], ev_bw0[kNDQ]; /* bucket ready, backward start */
  double ref_host;
  double h2d_t0[CG_DEV_SLOTS], h2d_t1[CG_DEV_SLOTS]; /* host times of the upload's events */
  int h2d_slot[kNQ];                                 /* the slot each step read */
  double mpi_t[kNQ][2];                              /* MPI path: host-side reduce interval */

  /* per-layer profile (cfg.profile): events around each layer's forward and backward, and
   * around the input preparation, the loss and the optimizer; times summed at fetch */
  cudaEvent_t ev_pf[CG_MAX_LAYERS][2], ev_pb[CG_MAX_LAYERS][2], ev_pm[3][2];
  double prof_f[CG_MAX_LAYERS], prof_b[CG_MAX_LAYERS], prof_m[3];
  int64_t prof_steps;
  int prof_pending; /* a train step with recorded profile events awaits its fetch */

  /* per-kernel breakdown (cfg.kprof): region ids of each layer's passes and of the rest */
  cg_kprof_t *kp;
  int kr_fwd[CG_MAX_LAYERS], kr_bwd[CG_MAX_LAYERS], kr_prep, kr_loss, kr_opt, kr_params, kr_casts;

  /* CUDA graphs */
  cudaGraphExec_t gexec[CG_DEV_SLOTS][kNDQ];
  cudaGraphExec_t gexec_acc[CG_DEV_SLOTS][kNDQ]; /* accum_step's body (micro_body) */
  int graphs_ok;           /* graphs may still be used */
  int capturing;           /* the step body is being captured: report errors, do not abort */
  char capture_err[256];

  int64_t seq_submitted, seq_fetched, train_steps;
  meta_t meta[kNQ];
};

namespace {

/* ---- checked mode: every CUDA call on the backend's device ------------------------------- *
 * With COGPU_CHECK_DEVICE=1 (read at create) each op asserts, before it sets the device, that
 * the calling thread is already on b->dev (nothing between two calls moved it), and every
 * stream and event this file creates is noted with the device current at its creation, then
 * checked where it is recorded or waited on. The macros below route this file's calls through
 * the checks; off, each costs one branch. */

void dev_fail(const cg_backend_t *b, const char *fn, const char *what, int actual) {
  CG_FATAL("%s: %s is on GPU %d, expected the backend's GPU %d (COGPU_CHECK_DEVICE=1)", fn, what,
           actual, b->dev);
}

int dev_current(void) {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return d;
}

void dev_entry(const cg_backend_t *b, const char *fn) {
  if (!b->check_dev) return;
  const int d = dev_current();
  if (d != b->dev) dev_fail(b, fn, "the calling thread", d);
}

size_t dev_hash(const void *h) {
  return (size_t)(((uintptr_t)h >> 4) * 2654435761u) & (kDevTab - 1);
}

void dev_note(cg_backend_t *b, const void *h) {
  if (!b->devtab || !h) return;
  size_t i = dev_hash(h);
  for (int n = 0; n < kDevTab; n++, i = (i + 1) & (kDevTab - 1))
    if (!b->devtab[i].h || b->devtab[i].h == h) {
      b->devtab[i].h = h;
      b->devtab[i].dev = dev_current();
      return;
    }
  CG_FATAL("COGPU_CHECK_DEVICE: more than %d streams and events", kDevTab);
}

/* The stream's or event's device as noted at creation; the NULL stream is the thread's. */
void dev_use(const cg_backend_t *b, const void *h, const char *what, const char *fn) {
  if (!b->devtab) return;
  int d = dev_current();
  if (d != b->dev) dev_fail(b, fn, "the calling thread", d);
  if (!h) return;
  size_t i = dev_hash(h);
  for (int n = 0; n < kDevTab && b->devtab[i].h; n++, i = (i + 1) & (kDevTab - 1))
    if (b->devtab[i].h == h) {
      if (b->devtab[i].dev != b->dev) dev_fail(b, fn, what, b->devtab[i].dev);
      return;
    }
  CG_FATAL("%s: %s %p was not created by this backend (COGPU_CHECK_DEVICE=1)", fn, what, h);
}

cudaError_t chk_event_create(cg_backend_t *b, cudaEvent_t *e, unsigned flags) {
  const cudaError_t rc = (cudaEventCreateWithFlags)(e, flags);
  if (rc == cudaSuccess) dev_note(b, *e);
  return rc;
}

cudaError_t chk_stream_create(cg_backend_t *b, cudaStream_t *s, unsigned flags) {
  const cudaError_t rc = (cudaStreamCreateWithFlags)(s, flags);
  if (rc == cudaSuccess) dev_note(b, *s);
  return rc;
}

cudaError_t chk_record(const cg_backend_t *b, cudaEvent_t e, cudaStream_t s, unsigned flags,
                       const char *fn) {
  dev_use(b, e, "event", fn);
  dev_use(b, s, "stream", fn);
  return flags ? (cudaEventRecordWithFlags)(e, s, flags) : (cudaEventRecord)(e, s);
}

cudaError_t chk_wait(const cg_backend_t *b, cudaStream_t s, cudaEvent_t e, unsigned flags,
                     const char *fn) {
  dev_use(b, e, "event", fn);
  dev_use(b, s, "stream", fn);
  return (cudaStreamWaitEvent)(s, e, flags);
}

}  // namespace

/* From here on, in this file, with a cg_backend_t *b in scope. */
#define cudaEventCreate(e) chk_event_create(b, (e), cudaEventDefault)
#define cudaEventCreateWithFlags(e, f) chk_event_create(b, (e), (f))
#define cudaStreamCreateWithFlags(s, f) chk_stream_create(b, (s), (f))
#define cudaEventRecord(e, s) chk_record(b, (e), (s), 0u, __func__)
#define cudaEventRecordWithFlags(e, s, f) chk_record(b, (e), (s), (f), __func__)
#define cudaStreamWaitEvent(s, e, f) chk_wait(b, (s), (e), (f), __func__)
#define DEV_ENTRY(b) dev_entry((b), __func__)

namespace {

/* ---- helpers ----------------------------------------------------------------------------- */

cg_dtype_t dtype_of(cg_precision_t p) {
  switch (p) {
    case CG_PREC_FP32: return CG_DT_F32;
    case CG_PREC_BF16: return CG_DT_BF16;
    case CG_PREC_FP16: return CG_DT_F16;
  }
  CG_FATAL("unknown precision %d", (int)p);
}

size_t tensor_px(const cg_backend_t *b, int t) {
  const cg_tensor_t *T = &b->m->tensors[t];
  return (size_t)b->n * (size_t)T->h * (size_t)T->w;
}

/* The activation / gradient of tensor t, accessed at step position pos in mode (devplan.h).
 * An access the plan does not list could touch bytes the arena gives another live buffer:
 * fatal, with what was asked. */
void *act_at(const cg_backend_t *b, int t, int pos, int mode) {
  if (!cg_devplan_allows(&b->plan, pos, cg_devplan_act(&b->plan, t), mode))
    CG_FATAL("activation of tensor %d accessed at step position %d (mode %d) outside the plan", t,
             pos, mode);
  return b->d_act[t];
}

/* Where the backward reads the activation of tensor t at position pos: its own buffer, or, for a
 * concat part with copies (plan opts.skip_from_cat), its copy inside the concat buffer, which
 * then has the pixel stride of the whole (*ld). Fatal when the plan lists neither. */
const void *act_src(const cg_backend_t *b, int t, int pos, int64_t *ld) {
  const cg_devplan_t *P = &b->plan;
  if (cg_devplan_allows(P, pos, cg_devplan_act(P, t), CG_DP_R)) {
    *ld = P->ld[t];
    return b->d_act[t];
  }
  const int c = cg_devplan_copy(P, t);
  if (!cg_devplan_allows(P, pos, c, CG_DP_R))
    CG_FATAL("activation of tensor %d read at step position %d outside the plan", t, pos);
  *ld = P->copy_ld[t];
  return static_cast<const char *>(b->d_arena) + P->offset[c];
}

void *grad_at(const cg_backend_t *b, int t, int pos, int mode) {
  if (!cg_devplan_allows(&b->plan, pos, cg_devplan_grad(&b->plan, t), mode))
    CG_FATAL("gradient of tensor %d accessed at step position %d (mode %d) outside the plan", t,
             pos, mode);
  return b->d_dact[t];
}

/* Where the split of a copied concat's gradient puts part t at position pos, and where the
 * pool reading t then finds it: gcat(t) inside the concat buffer (pixel stride *ld) when the
 * plan has one, else grad(t) (dense). */
void *gsplit_at(const cg_backend_t *b, int t, int pos, int mode, int64_t *ld) {
  const cg_devplan_t *P = &b->plan;
  const int g = cg_devplan_gcat(P, t);
  if (P->parent[g] < 0) {
    *ld = P->ld[t];
    return grad_at(b, t, pos, mode);
  }
  if (!cg_devplan_allows(P, pos, g, mode))
    CG_FATAL("gradient of tensor %d in its concat accessed at step position %d (mode %d) "
             "outside the plan", t, pos, mode);
  *ld = P->copy_ld[t];
  return static_cast<char *>(b->d_arena) + P->offset[g];
}

/* The weight operand of layer i in the compute type. */
const void *wptr(const cg_backend_t *b, int i) {
  const cg_layer_t *l = &b->m->layers[i];
  if (i == b->plan.first) return b->d_w0;
  if (b->dt == CG_DT_F32) return b->d_params + l->w_off;
  return static_cast<const char *>(b->d_lowp) + l->w_off * b->es;
}

double *loss_ptr(const cg_backend_t *b, int dq) {
  return reinterpret_cast<double *>(reinterpret_cast<char *>(b->d_res[dq]) +
                                    offsetof(result_t, loss));
}

void *res_field(const cg_backend_t *b, int dq, size_t off) {
  return reinterpret_cast<char *>(b->d_res[dq]) + off;
}

float *scale_ptr(const cg_backend_t *b) {
  return reinterpret_cast<float *>(reinterpret_cast<char *>(b->d_scaler) +
                                   offsetof(cg_scaler_t, scale));
}

/* Device allocation, zeroed and tracked. Out of memory is the user's problem (-1 + message);
 * any other CUDA error is fatal. */
int dalloc(cg_backend_t *b, void **p, size_t bytes, const char *what, char *err, size_t errlen) {
  *p = NULL;
  if (bytes == 0) return 0;
  CG_ASSERT(b->nallocs < kMaxAllocs);
  cudaError_t rc = cudaMalloc(p, bytes);
  if (rc == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    *p = NULL;
    snprintf(err, errlen, "out of GPU memory allocating %s (%.1f MiB, %.1f MiB held already)",
             what, (double)bytes / 1048576.0, (double)b->bytes / 1048576.0);
    return -1;
  }
  CG_CHECK_CUDA(rc);
  b->allocs[b->nallocs++] = *p;
  b->bytes += bytes;
  CG_CHECK_CUDA(cudaMemset(*p, 0, bytes));
  return 0;
}

template <typename P>
int dalloc_t(cg_backend_t *b, P **p, size_t bytes, const char *what, char *err, size_t errlen) {
  void *v = NULL;
  int rc = dalloc(b, &v, bytes, what, err, errlen);
  *p = static_cast<P *>(v);
  return rc;
}

template <typename P>
int halloc_t(cg_backend_t *b, P **p, size_t bytes, const char *what, char *err, size_t errlen) {
  *p = NULL;
  if (bytes == 0) return 0;
  CG_ASSERT(b->nhallocs < (int)(sizeof b->hallocs / sizeof b->hallocs[0]));
  void *v = NULL;
  cudaError_t rc = cudaHostAlloc(&v, bytes, cudaHostAllocDefault);
  if (rc == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    snprintf(err, errlen, "out of pinned host memory allocating %s (%.1f MiB)", what,
             (double)bytes / 1048576.0);
    return -1;
  }
  CG_CHECK_CUDA(rc);
  memset(v, 0, bytes);
  b->hallocs[b->nhallocs++] = v;
  *p = static_cast<P *>(v);
  return 0;
}

/* A library call that succeeded may still have invalidated the capture (an operation that is
 * illegal while capturing); the next kernel launch would then fail fatally, so stop here. */
int capture_broken(cg_backend_t *b, const char *what) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  const cudaError_t rc = cudaStreamIsCapturing(b->s_comp, &cs);
  if (rc == cudaSuccess && cs == cudaStreamCaptureStatusActive) return 0;
  snprintf(b->capture_err, sizeof b->capture_err, "capture invalidated at %s (%s)", what,
           rc == cudaSuccess ? "status not active" : cudaGetErrorString(rc));
  return -1;
}

/* Inside a capture a failing call must not abort: the capture is abandoned and the step runs
 * eagerly. Outside a capture the usual fatal check applies. */
int dnn_status(cg_backend_t *b, cudnnStatus_t st, const char *what, const char *file, int line) {
  if (st == CUDNN_STATUS_SUCCESS) return b->capturing ? capture_broken(b, what) : 0;
  if (b->capturing) {
    snprintf(b->capture_err, sizeof b->capture_err, "%s: %s", what, cudnnGetErrorString(st));
    return -1;
  }
  cg_fatal(file, line, what, "%s", cudnnGetErrorString(st));
}

int cuda_status(cg_backend_t *b, cudaError_t rc, const char *what, const char *file, int line) {
  if (rc == cudaSuccess) return b->capturing ? capture_broken(b, what) : 0;
  if (b->capturing) {
    snprintf(b->capture_err, sizeof b->capture_err, "%s: %s", what, cudaGetErrorString(rc));
    return -1;
  }
  cg_fatal(file, line, what, "%s (%s)", cudaGetErrorString(rc), cudaGetErrorName(rc));
}

#define BODY_DNN(b, call)                                                                   \
  do {                                                                                      \
    if (dnn_status((b), (call), #call, __FILE__, __LINE__)) return -1;                      \
  } while (0)
#define BODY_CUDA(b, call)                                                                  \
  do {                                                                                      \
    if (cuda_status((b), (call), #call, __FILE__, __LINE__)) return -1;                     \
  } while (0)

/* ---- set-up ------------------------------------------------------------------------------ */

/* Points every tensor at its place in the arena under the current plan. */
void place_tensors(cg_backend_t *b) {
  const cg_devplan_t *P = &b->plan;
  for (int t = 0; t < b->m->ntensors; t++) {
    const int a = cg_devplan_act(P, t), g = cg_devplan_grad(P, t);
    /* a concat part in place has no bytes of its own: its offset is inside its parent's */
    b->d_act[t] = P->first_use[a] >= 0 ? static_cast<char *>(b->d_arena) + P->offset[a] : NULL;
    b->d_dact[t] = P->first_use[g] >= 0 ? static_cast<char *>(b->d_arena) + P->offset[g] : NULL;
  }
}

int alloc_all(cg_backend_t *b, char *err, size_t errlen) {
  const cg_model_t *m = b->m;
  const size_t np = m->nparams, es = b->es;
  const size_t px = (size_t)b->n * m->height * m->width;
  const cg_devplan_t *P = &b->plan;
  const cg_layer_t *l0 = &m->layers[P->first];
  size_t mark = b->bytes;
  if (dalloc_t(b, &b->d_params, np * 4, "parameters", err, errlen) ||
      dalloc_t(b, &b->d_grads, np * 4, "gradients", err, errlen) ||
      dalloc_t(b, &b->d_m, np * 4, b->cfg.optim == CG_OPTIM_SGD ? "SGD momentum buffer" : "AdamW m",
               err, errlen) ||
      (b->cfg.optim != CG_OPTIM_SGD && dalloc_t(b, &b->d_v, np * 4, "AdamW v", err, errlen)))
    return -1;
  if (b->dt != CG_DT_F32 && dalloc(b, &b->d_lowp, np * es, "low-precision parameters", err, errlen))
    return -1;
  if (b->cfg.ema && dalloc_t(b, &b->d_ema, np * 4, "parameters' moving average", err, errlen))
    return -1;
  if (dalloc(b, &b->d_w0, (size_t)l0->cout * l0->k * l0->k * b->cpad * es, "padded weights", err,
             errlen))
    return -1;
  b->mem_params = b->bytes - mark;
  /* One arena; make_convs also lays a layer's four operands out side by side in it. */
  const size_t arena = P->arena > P->search_bytes ? P->arena : P->search_bytes;
  if (dalloc(b, &b->d_arena, arena, "activation arena", err, errlen)) return -1;
  b->mem_arena = arena;
  place_tensors(b);
  /* every convolution's dW in the compute type, each slot aligned: the fp32 conversions then
   * run once per gradient bucket (flush_dw_casts) */
  size_t dw = 0, dw_off[CG_MAX_LAYERS] = {0}, bias_work = 0, head_work = 0, pool_work = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const cg_tensor_t *ti = &m->tensors[l->in];
    if (l->op == CG_OP_POOL) {
      size_t pw = cg_k_maxpool_bwd_work_bytes(b->n, ti->h, ti->w, ti->c);
      if (pw > pool_work) pool_work = pw;
      continue;
    }
    const int64_t npix_out = (int64_t)tensor_px(b, l->out);
    if (P->is_head[i]) {
      const int64_t npix_in = (int64_t)tensor_px(b, l->in);
      size_t h = cg_head_bwd_work_bytes(npix_in, l->cin);
      const size_t hf = cg_head_bwd_fused_work_bytes(npix_in, l->cin);
      if (hf > h) h = hf;
      if (l->cout > 1) h = cg_head_k_bwd_work_bytes(npix_in, l->cin, l->cout);
      if (h > head_work) head_work = h;
      continue;
    }
    const size_t wl = i == P->first ? (size_t)l->cout * l->k * l->k * b->cpad : l->w_len;
    dw_off[i] = dw;
    dw += (wl * es + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
    size_t bw = cg_k_bias_act_bwd_work_bytes(npix_out, l->cout);
    if (bw > bias_work) bias_work = bw;
  }
  if (dalloc(b, &b->d_dw_all, dw, "dW (compute type)", err, errlen) ||
      dalloc(b, &b->d_bias_work, bias_work, "bias-gradient scratch", err, errlen) ||
      dalloc(b, &b->d_head_work, head_work, "head scratch", err, errlen) ||
      dalloc(b, &b->d_pool_work, pool_work, "pool-backward scratch", err, errlen) ||
      dalloc(b, &b->d_loss_work,
             b->nclass > 1
                 ? cg_k_loss_k_work_bytes(b->n, (int64_t)m->height * m->width, b->nclass)
                 : cg_k_loss_work_bytes(b->n, (int64_t)m->height * m->width),
             "loss scratch", err, errlen))
    return -1;
  if (b->cfg.ohem_thresh > 0 &&
      (dalloc_t(b, &b->d_ohem_keys, cg_k_ohem_work_bytes(b->n, (int64_t)m->height * m->width),
                "OHEM keys", err, errlen) ||
       dalloc_t(b, &b->d_ohem_thr, (size_t)b->n * sizeof(float), "OHEM thresholds", err,
                errlen)))
    return -1;
  mark = b->bytes;
  for (int s = 0; s < CG_DEV_SLOTS; s++)
    if (dalloc_t(b, &b->d_x[s], px * m->in_c * sizeof(float), "input slot", err, errlen) ||
        dalloc_t(b, &b->d_y[s], px, "mask slot", err, errlen) ||
        dalloc_t(b, &b->d_rgb[s], px * 3, "RGB8 slot", err, errlen) ||
        dalloc_t(b, &b->d_wt[s], (size_t)b->n * sizeof(float), "weight slot", err, errlen))
      return -1;
  b->mem_slots = b->bytes - mark;
  for (int i = 0; i < m->nlayers; i++)
    b->dw_lp[i] = m->layers[i].op == CG_OP_POOL || P->is_head[i]
                      ? NULL
                      : static_cast<char *>(b->d_dw_all) + dw_off[i];
  {
    const size_t cw = cg_k_confusion_work_bytes(b->n, (int64_t)m->height * m->width);
    if (cw && dalloc(b, &b->d_conf_work, cw, "confusion scratch", err, errlen)) return -1;
  }
  if (dalloc_t(b, &b->d_hp, sizeof(cg_step_params_t), "step parameters", err, errlen) ||
      dalloc_t(b, &b->d_scaler, sizeof(cg_scaler_t), "loss scaler", err, errlen) ||
      dalloc_t(b, &b->d_grad_scale, sizeof(float), "gradient scale", err, errlen))
    return -1;
  b->pos_w = b->nclass == 1 && b->cfg.class_weight ? b->cfg.class_weight[0] : 1.0f;
  if (b->nclass > 1 && b->cfg.class_weight) {
    if (dalloc_t(b, &b->d_cw, (size_t)b->nclass * sizeof(float), "class weights", err, errlen))
      return -1;
    CG_CHECK_CUDA(cudaMemcpy(b->d_cw, b->cfg.class_weight, (size_t)b->nclass * sizeof(float),
                             cudaMemcpyHostToDevice));
  }
  b->cfg.class_weight = NULL; /* the caller's: kept on the device (d_cw) or in pos_w */
  if (b->cfg.clip_norm > 0 &&
      (dalloc_t(b, &b->d_gn, sizeof(cg_gnorm_t), "gradient norm", err, errlen) ||
       dalloc(b, &b->d_gn_work, cg_k_grad_norm_work_bytes(), "gradient norm partials", err,
              errlen)))
    return -1;
  for (int q = 0; q < kNDQ; q++)
    if (dalloc_t(b, &b->d_res[q], sizeof(result_t), "step results", err, errlen) ||
        dalloc_t(b, &b->d_pred[q], px, "predictions", err, errlen) ||
        halloc_t(b, &b->h_hp[q], sizeof(cg_step_params_t), "step parameter staging", err, errlen))
      return -1;
  if (b->nclass > 1) {
    const size_t kk = (size_t)b->nclass * b->nclass * sizeof(unsigned long long);
    for (int q = 0; q < kNDQ; q++)
      if (dalloc_t(b, &b->d_confk[q], kk, "confusion counts", err, errlen)) return -1;
    for (int q = 0; q < kNQ; q++)
      if (halloc_t(b, &b->h_confk[q], kk, "confusion count slot", err, errlen)) return -1;
  }
  for (int q = 0; q < kNQ; q++)
    if (halloc_t(b, &b->h_res[q], sizeof(result_t), "result slot", err, errlen) ||
        halloc_t(b, &b->h_pred[q], px, "prediction slot", err, errlen))
      return -1;
  const size_t gsz = b->cfg.grad_bf16 ? sizeof(uint16_t) : sizeof(float);
  if (b->cfg.gsync && halloc_t(b, &b->h_grads, np * gsz, "gradient staging", err, errlen))
    return -1;
  if (b->cfg.accum > 1 &&
      dalloc_t(b, &b->d_gacc, np * sizeof(float), "accumulated gradients", err, errlen))
    return -1;
  /* one rank (NCCL forced on one process) reduces nothing: its gradients stay fp32 */
  if (b->cfg.grad_bf16 && (b->cfg.gsync || (b->nccl && cg_nccl_size(b->nccl) > 1)) &&
      dalloc_t(b, &b->d_gbf16, np * sizeof(uint16_t), "bf16 gradients", err, errlen))
    return -1;
  b->mem_scratch = b->bytes - b->mem_params - b->mem_arena - b->mem_slots;
  cg_scaler_t sc;
  memset(&sc, 0, sizeof sc);
  sc.enabled = b->dt == CG_DT_F16;
  sc.scale = sc.enabled ? 65536.0f : 1.0f;
  CG_CHECK_CUDA(cudaMemcpy(b->d_scaler, &sc, sizeof sc, cudaMemcpyHostToDevice));
  const float one = 1.0f;
  CG_CHECK_CUDA(cudaMemcpy(b->d_grad_scale, &one, sizeof one, cudaMemcpyHostToDevice));
  /* the memsets above ran on the legacy stream, which the non-blocking streams ignore */
  CG_CHECK_CUDA(cudaDeviceSynchronize());
  return 0;
}

/* After the search: the plan with the ReLU-mask fusions as chosen (the first plan listed both
 * ways where the search could go either way), adopted when it fits the arena allocated for the
 * first (it has the same or fewer accesses, so it does unless the planner's heuristic packs it
 * worse); the arena shrinks to it when it needs less. Nothing holds arena pointers yet but
 * d_act/d_dact (cuDNN's variant packs are keyed by pointer and made again). */
int replan(cg_backend_t *b, char *err, size_t errlen) {
  cg_devplan_opts_t o = b->plan.opts;
  int any = 0, fused = 0;
  for (int i = 0; i < b->m->nlayers; i++)
    if (o.drelu[i]) {
      o.drelu[i] = b->conv[i] && cg_conv_drelu_fused(b->conv[i]) ? 1 : 0;
      any = 1;
      fused += o.drelu[i];
    }
  if (!any) return 0;
  static cg_devplan_t q; /* large; create runs on one thread at a time */
  char e[256];
  const bool ok = cg_devplan_make(b->m, b->n, b->cpad, b->es, kArenaAlign, &o, &q, e, sizeof e) == 0 &&
                  q.arena <= b->mem_arena;
  if (cg_log_rank() <= 0)
    cg_log_info("%d layer(s) mask dx with the ReLU of x inside cuDNN; step plan %s (arena %.1f "
                "MiB)", fused, ok ? "made again for that" : "kept listing both ways",
                (ok ? q.arena : b->plan.arena) / 1048576.0);
  if (!ok) return 0;
  b->plan = q;
  if (q.arena < b->mem_arena) { /* give back what the plan no longer needs */
    CG_CHECK_CUDA(cudaDeviceSynchronize());
    for (int k = 0; k < b->nallocs; k++)
      if (b->allocs[k] == b->d_arena) {
        CG_CHECK_CUDA(cudaFree(b->d_arena));
        b->allocs[k] = b->allocs[--b->nallocs];
        break;
      }
    b->bytes -= b->mem_arena;
    b->mem_arena = q.arena;
    if (dalloc(b, &b->d_arena, q.arena, "activation arena", err, errlen)) return -1;
  }
  place_tensors(b);
  return 0;
}

/* The concat tensor held in place under o of which layer i reads or writes a strided half,
 * or -1. */
int strided_concat(const cg_model_t *m, const cg_devplan_opts_t *o, int i) {
  const int ts[2] = {m->layers[i].in, m->layers[i].out};
  for (int k = 0; k < 2; k++) {
    const cg_tensor_t *T = &m->tensors[ts[k]];
    if (T->c == T->ld) continue;
    for (int u = 0; u < m->ntensors; u++) {
      const cg_tensor_t *U = &m->tensors[u];
      if (U->buf != T->buf || U->c != U->ld) continue;
      if (o->inplace_concat && !o->copy_concat[u]) return u;
      break; /* copied already: the other tensor may still be a half in place */
    }
  }
  return -1;
}

int bias_in_copy_plan(const cg_backend_t *b, int i); /* below, with bias_in_copy */

/* cuDNN descriptors for every convolution, algorithm selection on device buffers of the real
 * shapes, and the workspace the chosen algorithms need. The search runs a layer's forward and
 * both backwards on one set of operands, but in the step dx may reuse the bytes of x or y
 * (they are dead by then); so each layer's x, y, dy and dx are laid out side by side in the
 * arena (cg_devplan_search_layout), which holds nothing yet. */
int make_convs(cg_backend_t *b, int *conv_failed, char *err, size_t errlen) {
  const cg_model_t *m = b->m;
  size_t search = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (l->op == CG_OP_POOL || b->plan.is_head[i]) continue;
    const cg_tensor_t *ti = &m->tensors[l->in];
    cg_conv_shape_t sh;
    memset(&sh, 0, sizeof sh);
    sh.kind = l->op == CG_OP_UPCONV ? CG_CONV_UP : CG_CONV_PLAIN;
    sh.n = b->n;
    sh.h = ti->h;
    sh.w = ti->w;
    sh.cin = i == b->plan.first ? b->cpad : l->cin;
    sh.cout = l->cout;
    sh.k = l->op == CG_OP_UPCONV ? 2 : l->k;
    sh.dt = b->dt;
    sh.tf32 = b->cfg.tf32;
    /* every layer offers its bias (+ ReLU) for fusion into the convolution (an upconv: into
     * our upconv kernel, conv.h) */
    sh.bias_act = l->relu ? 2 : 1;
    sh.ldx = b->plan.ld[l->in];
    sh.ldy = b->plan.ld[l->out];
    sh.drelu = b->plan.opts.drelu[i] != 0; /* the plan kept only where it applies */
    sh.bias_copy = bias_in_copy_plan(b, i) >= 0;
    const int ops = CG_CONV_OP_FWD | CG_CONV_OP_BWD_FILTER | (l->need_dx ? CG_CONV_OP_BWD_DATA : 0);
    char e2[400];
    if (cg_conv_create(&sh, ops, &b->conv[i], e2, sizeof e2)) {
      snprintf(err, errlen, "layer %s: %s", l->name, e2);
      *conv_failed = i + 1;
      return -1;
    }
    size_t s = cg_conv_search_ws_bytes(b->cctx, b->conv[i]);
    if (s > search) search = s;
  }
  /* A temporary workspace for the search: as much as the slowest-to-fit algorithm wants,
   * within reason; algorithms needing more are simply not candidates. */
  size_t free_b = 0, total_b = 0;
  CG_CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
  size_t cap = search;
  /* The workspace a choice may use: it stays allocated for the run, so in 16-bit types, where
   * memory is a goal, an algorithm needing more than 32 MiB must be faster some other way
   * (CG_CONV_WS_MB sets it; fp32 keeps 1 GiB). */
  const char *wsmb = getenv("CG_CONV_WS_MB");
  size_t limit = b->dt == CG_DT_F32 ? (size_t)1 << 30 : (size_t)32 << 20;
  if (wsmb && atof(wsmb) > 0) limit = (size_t)(atof(wsmb) * 1048576.0);
  if (cap > limit) cap = limit;
  if (cap > free_b / 4) cap = free_b / 4;
  void *tune = NULL;
  while (cap > 0) {
    cudaError_t rc = cudaMalloc(&tune, cap);
    if (rc == cudaSuccess) break;
    if (rc != cudaErrorMemoryAllocation) CG_CHECK_CUDA(rc);
    (void)cudaGetLastError();
    tune = NULL;
    cap = cap > ((size_t)32 << 20) ? cap / 2 : 0;
  }
  /* Random operands for the search: timings on zeros flatter kernels, and the agreement check of
   * candidates cuDNN's heuristics never proposed needs real values. The step writes every buffer
   * before it reads it, and the weights are zeroed again below (set_params fills them). */
  const cudaStream_t s0 = b->s_comp;
  cg_k_fill_uniform(b->dt, b->d_arena, (int64_t)(b->mem_arena / b->es), 1, -1.0f, 1.0f, s0);
  cg_k_fill_uniform(CG_DT_F32, b->d_params, (int64_t)m->nparams, 2, -0.05f, 0.05f, s0);
  if (b->d_lowp) cg_k_fill_uniform(b->dt, b->d_lowp, (int64_t)m->nparams, 2, -0.05f, 0.05f, s0);
  {
    const cg_layer_t *l0 = &m->layers[b->plan.first];
    cg_k_fill_uniform(b->dt, b->d_w0, (int64_t)l0->cout * l0->k * l0->k * b->cpad, 3, -0.05f,
                      0.05f, s0);
  }
  CG_CHECK_CUDA(cudaStreamSynchronize(s0));
  int rc = 0;
  size_t ws = 0, ws2 = 0;
  /* the layers touching a strided half of a concat buffer first: where one has no algorithm the
   * backend is made again with that concat copied (cuda_create), so the search of the others is
   * not thrown away */
  int order[CG_MAX_LAYERS], norder = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < m->nlayers; i++)
      if (b->conv[i] && (strided_concat(m, &b->plan.opts, i) >= 0) == (pass == 0))
        order[norder++] = i;
  /* CG_CONV_VERBOSE=1: after a layer fails on a strided half, the other layers touching that
   * concat are still searched, and each one's result is logged (what cuDNN and our kernels
   * take at that resolution, in one run) */
  const char *vb = getenv("CG_CONV_VERBOSE");
  const bool probe = vb && !strcmp(vb, "1");
  int probe_t = -1;
  for (int k = 0; k < norder; k++) {
    const int i = order[k];
    const cg_layer_t *l = &m->layers[i];
    if (rc != 0 && probe_t < 0) break;
    if (rc != 0 && strided_concat(m, &b->plan.opts, i) != probe_t) continue;
    size_t ox, oy, ody, odx;
    const size_t span = cg_devplan_search_layout(&b->plan, m, i, &ox, &oy, &ody, &odx);
    CG_ASSERT(span <= b->mem_arena);
    char *arena = static_cast<char *>(b->d_arena);
    cg_conv_bufs_t bufs;
    memset(&bufs, 0, sizeof bufs); /* members this file does not set (bias) stay NULL */
    bufs.x = arena + ox;
    bufs.w = wptr(b, i);
    bufs.dy = arena + ody;
    bufs.y = arena + oy;
    bufs.dx = l->need_dx ? arena + odx : NULL;
    bufs.dw = b->dw_lp[i];
    bufs.bias = b->d_params + l->b_off; /* the pointer every forward passes */
    char e2[400];
    if (cg_conv_select(b->cctx, b->conv[i], &bufs, tune, cap, b->s_comp, e2, sizeof e2)) {
      if (rc == 0) {
        snprintf(err, errlen, "layer %s: %s", l->name, e2);
        *conv_failed = i + 1;
        rc = -1;
        probe_t = probe ? strided_concat(m, &b->plan.opts, i) : -1;
      }
      if (probe_t >= 0)
        fprintf(stderr, "conv probe: layer %s has no algorithm with its strided concat half: "
                "%s\n", l->name, e2);
      continue;
    }
    if (rc != 0) { /* probing only */
      fprintf(stderr, "conv probe: layer %s runs with its strided concat half\n", l->name);
      continue;
    }
    /* a layer whose dW runs on the side stream has it there, in its own workspace */
    const bool side = b->plan.opts.concurrent[i] != 0;
    const size_t w = cg_conv_op_ws_bytes(b->conv[i], side ? CG_CONV_OP_FWD | CG_CONV_OP_BWD_DATA
                                                          : CG_CONV_OP_ALL);
    if (w > ws) ws = w;
    const size_t w2 = side ? cg_conv_op_ws_bytes(b->conv[i], CG_CONV_OP_BWD_FILTER) : 0;
    if (w2 > ws2) ws2 = w2;
  }
  if (tune) CG_CHECK_CUDA(cudaFree(tune));
  {
    const cg_layer_t *l0 = &m->layers[b->plan.first];
    CG_CHECK_CUDA(cudaMemsetAsync(b->d_params, 0, m->nparams * sizeof(float), s0));
    if (b->d_lowp) CG_CHECK_CUDA(cudaMemsetAsync(b->d_lowp, 0, m->nparams * b->es, s0));
    if (b->d_ema) CG_CHECK_CUDA(cudaMemsetAsync(b->d_ema, 0, m->nparams * sizeof(float), s0));
    CG_CHECK_CUDA(cudaMemsetAsync(b->d_w0, 0, (size_t)l0->cout * l0->k * l0->k * b->cpad * b->es, s0));
    CG_CHECK_CUDA(cudaStreamSynchronize(s0));
  }
  if (rc) return rc;
  char e3[512];
  if (cg_conv_ctx_save(b->cctx, e3, sizeof e3)) cg_log_warn("%s (continuing without it)", e3);
  b->ws_bytes = ws;
  b->ws2_bytes = ws2;
  if (replan(b, err, errlen)) return -1;
  return dalloc(b, &b->d_ws, ws, "cuDNN workspace", err, errlen) ||
         dalloc(b, &b->d_ws2, ws2, "cuDNN workspace of the side stream", err, errlen);
}

/* ---- the step ---------------------------------------------------------------------------- */

void prof_mark(cg_backend_t *b, int k, int e); /* with the profile, below */

/* The network input of the slot's batch in the compute type, channels padded: samples the CPU
 * prepared are cast, the rest (RGB8, the split) normalised and featurised here. Runs eagerly
 * before the step body (or its graph), so the split may change from step to step. */
void prep_input(cg_backend_t *b, int slot) {
  const cg_model_t *m = b->m;
  prof_mark(b, 0, 0);
  cg_kprof_enter(b->kp, b->kr_prep, b->s_comp);
  cg_k_prep_input(b->dt, b->d_x[slot], b->n_cpu[slot], b->d_rgb[slot], b->n, m->height, m->width,
                  b->cpad, act_at(b, m->input_tensor, b->plan.prep, CG_DP_W), b->s_comp);
  cg_kprof_leave(b->kp, b->s_comp);
  prof_mark(b, 0, 1);
}

/* metrics_on_device: the step's confusion counts into its device result slot (eagerly, after
 * the body or its graph: the loss kernel wrote d_pred[dq]). */
void device_metrics(cg_backend_t *b, int slot, int dq) {
  if (!b->metrics_dev[slot]) return;
  const int64_t hw = (int64_t)b->m->height * b->m->width;
  if (b->nclass > 1) {
    cg_k_confusion_k(b->d_pred[dq], b->d_y[slot], b->d_wt[slot], b->n, hw, b->nclass, b->ign,
                     b->d_confk[dq], b->s_comp);
    return;
  }
  cg_k_confusion_ign(
      b->d_pred[dq], b->d_y[slot], b->d_wt[slot], b->n, hw, b->ign,
      reinterpret_cast<unsigned long long *>(res_field(b, dq, offsetof(result_t, conf))),
      b->d_conf_work, b->s_comp);
}

/* Layer i's forward (and, with concat copies, the concat that feeds it). Pixel strides come
 * from the plan: a concat part in place is written and read inside its concat buffer. */
/* Whether layer i's bias forward is folded into the copy of the concat its output is a part of
 * (the cat_fwd of the concat's reader) instead of a pass of its own: an upconv without ReLU
 * (its backward reads no mask) whose forward is not fused with its bias already (our upconv
 * kernel), whose output only that copy reads, the concat's only copy, the other part not
 * folded likewise; unless CG_CAT_BIAS=0. Returns the concat's reader, or -1. */
int bias_in_copy(const cg_backend_t *b, int i) {
  if (b->conv[i] && cg_conv_fused(b->conv[i])) return -1;
  return bias_in_copy_plan(b, i);
}

/* bias_in_copy as far as the plan decides it (not whether the forward fused the bias): what
 * the upconv's fusion decision is told (cg_conv_shape_t.bias_copy). */
int bias_in_copy_plan(const cg_backend_t *b, int i) {
  const cg_model_t *m = b->m;
  const cg_devplan_t *P = &b->plan;
  const cg_layer_t *l = &m->layers[i];
  if (l->op != CG_OP_UPCONV || l->relu || !b->cat_bias) return -1;
  for (int k = 0; k < m->nlayers; k++)
    if (m->layers[k].in == l->out) return -1; /* read as it is */
  int reader = -1, copies = 0;
  for (int r = 0; r < m->nlayers; r++) {
    const int t = m->layers[r].in;
    if (P->cat_fwd[r] < 0 || (P->cat_a[t] != l->out && P->cat_b[t] != l->out)) continue;
    copies++;
    reader = r;
    const int other = P->cat_a[t] == l->out ? P->cat_b[t] : P->cat_a[t];
    for (int k = 0; k < m->nlayers; k++)
      if (m->layers[k].out == other && m->layers[k].op == CG_OP_UPCONV) return -1;
  }
  return copies == 1 ? reader : -1;
}

/* b->bias_copy from the plan as it is now (after replan). */
void set_bias_copy(cg_backend_t *b) {
  for (int i = 0; i < CG_MAX_LAYERS; i++)
    b->bias_copy[i] = i < b->m->nlayers ? bias_in_copy(b, i) : -1;
}

int forward_layer(cg_backend_t *b, int i) {
  const cg_model_t *m = b->m;
  const cudaStream_t s = b->s_comp;
  const cg_dtype_t dt = b->dt;
  const cg_devplan_t *P = &b->plan;
  const cg_layer_t *l = &m->layers[i];
  const cg_tensor_t *ti = &m->tensors[l->in];
  const int64_t npix_in = (int64_t)tensor_px(b, l->in), npix_out = (int64_t)tensor_px(b, l->out);
  const int p = P->fwd[i];
  const float *bias = b->d_params + l->b_off;
  if (P->cat_fwd[i] >= 0) {
    const int pa = P->cat_a[l->in], pb = P->cat_b[l->in], pc = P->cat_fwd[i];
    const void *xa = act_at(b, pa, pc, CG_DP_R), *xb = act_at(b, pb, pc, CG_DP_R);
    void *cat = act_at(b, l->in, pc, CG_DP_W);
    int prod = -1; /* the producer of a part whose bias forward this copy does */
    for (int k = 0; k < m->nlayers && prod < 0; k++)
      if ((m->layers[k].out == pa || m->layers[k].out == pb) && b->bias_copy[k] == i) prod = k;
    if (prod >= 0)
      cg_k_concat_fwd_bias(dt, xa, m->tensors[pa].c, xb, m->tensors[pb].c,
                           m->layers[prod].out == pa ? 0 : 1, b->d_params + m->layers[prod].b_off,
                           m->layers[prod].relu, npix_in, cat, s);
    else
      cg_k_concat_fwd(dt, xa, m->tensors[pa].c, xb, m->tensors[pb].c, npix_in, cat, s);
  }
  const void *x = act_at(b, l->in, p, CG_DP_R);
  void *y = act_at(b, l->out, p, CG_DP_W);
  switch (l->op) {
    case CG_OP_CONV:
      if (P->is_head[i]) {
        if (l->cout > 1) /* K classes */
          cg_head_k_fwd(dt, x, npix_in, l->cin, l->cout, wptr(b, i), bias, y, s);
        else
          cg_head_fwd(dt, x, npix_in, l->cin, wptr(b, i), bias, y, s);
        break;
      }
      if (cg_conv_fused(b->conv[i])) { /* one cuDNN kernel: y = act(conv + bias) */
        BODY_DNN(b, cg_conv_fwd_bias_act(b->cctx, b->conv[i], x, wptr(b, i), bias, y, b->d_ws,
                                         b->ws_bytes, s));
        break;
      }
      BODY_DNN(b, cg_conv_fwd(b->cctx, b->conv[i], x, wptr(b, i), y, b->d_ws, b->ws_bytes, s));
      cg_k_bias_act_fwd_ld(dt, act_at(b, l->out, p, CG_DP_RW), P->ld[l->out], npix_out, l->cout,
                           bias, l->relu, s);
      break;
    case CG_OP_UPCONV:
      if (cg_conv_fused(b->conv[i])) { /* our upconv kernel with the bias in its epilogue */
        BODY_DNN(b, cg_conv_fwd_bias_act(b->cctx, b->conv[i], x, wptr(b, i), bias, y, b->d_ws,
                                         b->ws_bytes, s));
        break;
      }
      BODY_DNN(b, cg_conv_fwd(b->cctx, b->conv[i], x, wptr(b, i), y, b->d_ws, b->ws_bytes, s));
      if (b->bias_copy[i] < 0) /* else the concat's copy adds it */
        cg_k_bias_act_fwd_ld(dt, act_at(b, l->out, p, CG_DP_RW), P->ld[l->out], npix_out,
                             l->cout, bias, l->relu, s);
      break;
    case CG_OP_POOL:
      cg_k_maxpool_fwd_ld(dt, x, P->ld[l->in], b->n, ti->h, ti->w, ti->c, y, s);
      break;
  }
  return 0;
}

int forward(cg_backend_t *b, int slot) {
  const cg_model_t *m = b->m;
  const cudaStream_t s = b->s_comp;
  const cg_layer_t *l0 = &m->layers[b->plan.first];
  (void)slot; /* the input was prepared by prep_input, outside any graph */
  cg_kprof_enter(b->kp, b->kr_fwd[b->plan.first], s);
  cg_k_pack_weight_cpad(b->dt, b->d_params + l0->w_off, l0->cout, l0->k * l0->k, m->in_c, b->cpad,
                        b->d_w0, s);
  cg_kprof_leave(b->kp, s);
  for (int i = 0; i < m->nlayers; i++) {
    if (b->cfg.profile && !b->capturing) CG_CHECK_CUDA(cudaEventRecord(b->ev_pf[i][0], s));
    cg_kprof_enter(b->kp, b->kr_fwd[i], s);
    const int rc = forward_layer(b, i);
    cg_kprof_leave(b->kp, s);
    if (rc) return -1;
    if (b->cfg.profile && !b->capturing) CG_CHECK_CUDA(cudaEventRecord(b->ev_pf[i][1], s));
  }
  return 0;
}

/* Profile mark k (0 prep, 1 loss, 2 optimizer), edge e (0 begin, 1 end). */
void prof_mark(cg_backend_t *b, int k, int e) {
  if (b->cfg.profile && !b->capturing) CG_CHECK_CUDA(cudaEventRecord(b->ev_pm[k][e], b->s_comp));
}

/* After a profiled train step: wait for it and add up its op times. */
void prof_collect(cg_backend_t *b, int q) {
  CG_CHECK_CUDA(cudaEventSynchronize(b->ev_end[q]));
  float ms;
  for (int i = 0; i < b->m->nlayers; i++) {
    CG_CHECK_CUDA(cudaEventElapsedTime(&ms, b->ev_pf[i][0], b->ev_pf[i][1]));
    b->prof_f[i] += ms;
    CG_CHECK_CUDA(cudaEventElapsedTime(&ms, b->ev_pb[i][0], b->ev_pb[i][1]));
    b->prof_b[i] += ms;
  }
  for (int k = 0; k < 3; k++) {
    CG_CHECK_CUDA(cudaEventElapsedTime(&ms, b->ev_pm[k][0], b->ev_pm[k][1]));
    b->prof_m[k] += ms;
  }
  b->prof_steps++;
}

/* The per-layer table (kprof.h prints it): each layer's summed times and work. */
void prof_print(const cg_backend_t *b) {
  const cg_model_t *m = b->m;
  cg_kprof_layer_t rows[CG_MAX_LAYERS];
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    rows[i].name = l->name;
    rows[i].op = l->op == CG_OP_CONV ? "conv" : l->op == CG_OP_POOL ? "maxpool" : "upconv";
    rows[i].fwd_ms = b->prof_f[i];
    rows[i].bwd_ms = b->prof_b[i];
    rows[i].gflop = l->flops_fwd * b->n * (i == b->plan.first ? 2.0 : 3.0) / 1e9;
  }
  const cg_kprof_part_t parts[3] = {
      {"input prep", b->prof_m[0]}, {"loss", b->prof_m[1]}, {"optimizer", b->prof_m[2]}};
  cg_kprof_layers_t t;
  t.precision = b->dt == CG_DT_BF16 ? "bf16" : b->dt == CG_DT_F16 ? "fp16" : "fp32";
  t.batch = b->n;
  t.steps = (long long)b->prof_steps;
  t.hold_ms = (double)kProfileHoldNs / 1e6;
  t.layers = rows;
  t.nlayers = m->nlayers;
  t.parts = parts;
  t.nparts = 3;
  cg_kprof_print_layers(&t, stdout);
}

/* Loss and predicted mask into result slot dq; with grad, the scaled loss gradient too. The
 * train step's loss mines (cfg.ohem_thresh > 0: each sample's OHEM threshold first); the eval
 * step's scores every pixel, as the CPU backend's. */
void run_loss(cg_backend_t *b, int slot, int dq, int grad) {
  const cg_model_t *m = b->m;
  const int lt = m->logits_tensor, p = b->plan.loss;
  const int64_t hw = (int64_t)m->height * m->width;
  void *dz = grad ? grad_at(b, lt, p, CG_DP_W) : NULL;
  const void *z = act_at(b, lt, p, CG_DP_R);
  const float *thr = NULL;
  if (grad && b->cfg.ohem_thresh > 0) {
    cg_k_ohem_thr(b->dt, z, b->d_y[slot], b->n, hw, b->nclass, b->ign, b->cfg.ohem_thresh,
                  b->cfg.ohem_min_kept, b->d_ohem_keys, b->d_ohem_thr, b->s_comp);
    thr = b->d_ohem_thr;
  }
  if (b->nclass > 1)
    cg_k_loss_k(b->dt, z, b->d_y[slot], b->d_wt[slot], b->n, hw, b->nclass, b->ign,
                b->cfg.dice_weight, b->d_cw, b->cfg.label_smoothing, b->cfg.focal_gamma, thr,
                b->d_scaler, dz, loss_ptr(b, dq), b->d_pred[dq], b->d_loss_work, b->s_comp);
  else /* ign < 0 and no OHEM: exactly cg_k_loss */
    cg_k_loss_ign(b->dt, z, b->d_y[slot], b->d_wt[slot], b->n, hw, b->ign, b->cfg.dice_weight,
                  b->pos_w, b->cfg.focal_gamma, thr, b->d_scaler, dz, loss_ptr(b, dq),
                  b->d_pred[dq], b->d_loss_work, b->s_comp);
}

/* A timed event on the compute stream. In a capture a plain record only orders streams; an
 * external record becomes a graph node that records the event at every replay. */
cudaError_t record_timed(cg_backend_t *b, cudaEvent_t ev) {
  return b->capturing ? cudaEventRecordWithFlags(ev, b->s_comp, cudaEventRecordExternal)
                      : cudaEventRecord(ev, b->s_comp);
}

/* Gradient-sync hook 1: backward has finished layer i. With NCCL the comm stream all-reduces
 * the bucket this completes while backward continues on compute. */
int bucket_ready(cg_backend_t *b, int i) {
  const cg_buckets_t *bk = b->cfg.buckets;
  if (b->micro || !bk || bk->ready_after[i] < 0) return 0; /* a micro-batch keeps its own */
  const int j = bk->ready_after[i];
  float *d = b->d_grads + bk->off[j];
  if (b->d_gacc) { /* --grad-accum: the step's gradients are the micro-batches' sum */
    cg_kprof_enter(b->kp, b->kr_opt, b->s_comp);
    cg_k_grad_take(d, b->d_gacc + bk->off[j], (int64_t)bk->len[j], b->s_comp);
    cg_kprof_leave(b->kp, b->s_comp);
  }
  if (b->cfg.trace) /* --trace-out */
    BODY_CUDA(b, record_timed(b, b->ev_rd[b->seq_submitted % kNDQ][j]));
  if (!b->cfg.gsync && !b->nccl) return 0;
  if (b->d_gbf16) { /* --grad-comm bf16: one small cast per bucket, on compute */
    cg_kprof_enter(b->kp, b->kr_casts, b->s_comp);
    cg_k_grad_to_bf16(d, b->d_gbf16 + bk->off[j], (int64_t)bk->len[j], b->s_comp);
    cg_kprof_leave(b->kp, b->s_comp);
  }
  BODY_CUDA(b, cudaEventRecord(b->ev_bucket[j], b->s_comp));
  if (!b->nccl) return 0; /* MPI: grads_sync moves the bucket */
  BODY_CUDA(b, cudaStreamWaitEvent(b->s_comm, b->ev_bucket[j], 0));
  char e[sizeof b->capture_err];
  const int tq = (int)(b->seq_submitted % kNDQ);
  if (b->cfg.trace)
    BODY_CUDA(b, b->capturing ? cudaEventRecordWithFlags(b->ev_cb[tq][j][0], b->s_comm,
                                                         cudaEventRecordExternal)
                              : cudaEventRecord(b->ev_cb[tq][j][0], b->s_comm));
  /* sum only: the loss weights (1 / global batch) already make the sum the mean */
  uint16_t *w = b->d_gbf16 ? b->d_gbf16 + bk->off[j] : NULL; /* bf16: what NCCL sums */
  if (w ? cg_nccl_allreduce_sum_bf16(b->nccl, w, w, bk->len[j], b->s_comm, e, sizeof e)
        : cg_nccl_allreduce_sum_f32(b->nccl, d, d, bk->len[j], b->s_comm, e, sizeof e)) {
    if (!b->capturing) cg_fatal(__FILE__, __LINE__, "cg_nccl_allreduce", "%s", e);
    snprintf(b->capture_err, sizeof b->capture_err, "%s", e);
    return -1;
  }
  if (w) cg_k_grad_from_bf16(w, d, (int64_t)bk->len[j], b->s_comm); /* the fp32 master grads */
  if (b->cfg.trace)
    BODY_CUDA(b, b->capturing ? cudaEventRecordWithFlags(b->ev_cb[tq][j][1], b->s_comm,
                                                         cudaEventRecordExternal)
                              : cudaEventRecord(b->ev_cb[tq][j][1], b->s_comm));
  return b->capturing ? capture_broken(b, "ncclAllReduce") : 0;
}

/* cg_gsync_staged's hook: blocks until bucket j's copy to the host staging has landed. */
void bucket_landed(void *ctx, int j) {
  const cg_backend_t *b = static_cast<const cg_backend_t *>(ctx);
  CG_CHECK_CUDA(cudaEventSynchronize(b->ev_bucket_host[j]));
}

/* Gradient-sync hook 2, before the optimizer. NCCL: compute waits for the comm stream (the
 * join), between two timed events. MPI: the host-staged all-reduce; each bucket is copied out
 * as soon as backward has produced it and posted (comm/gsync.h) as soon as its copy lands. */
int grads_sync(cg_backend_t *b, int q, int dq) {
  if (b->nccl) {
    BODY_CUDA(b, record_timed(b, b->ev_xp_begin[dq]));
    BODY_CUDA(b, cudaEventRecord(b->ev_comm_done, b->s_comm));
    BODY_CUDA(b, cudaStreamWaitEvent(b->s_comp, b->ev_comm_done, 0));
    BODY_CUDA(b, record_timed(b, b->ev_xp_end[dq]));
    return 0;
  }
  if (!b->cfg.gsync) return 0;
  const cg_buckets_t *bk = b->cfg.buckets;
  cg_gsync_t *gs = b->cfg.gsync;
  CG_CHECK_CUDA(cudaEventRecord(b->ev_bwd_end[q], b->s_comp));
  /* bf16: the buckets were cast on compute (bucket_ready); half the bytes travel */
  const int bf = b->d_gbf16 != NULL;
  char *h = (char *)b->h_grads, *dsrc = bf ? (char *)b->d_gbf16 : (char *)b->d_grads;
  const size_t es = bf ? sizeof(uint16_t) : sizeof(float);
  for (int j = 0; j < bk->n; j++) {
    CG_CHECK_CUDA(cudaStreamWaitEvent(b->s_comm, b->ev_bucket[j], 0));
    CG_CHECK_CUDA(cudaMemcpyAsync(h + bk->off[j] * es, dsrc + bk->off[j] * es, bk->len[j] * es,
                                  cudaMemcpyDeviceToHost, b->s_comm));
    CG_CHECK_CUDA(cudaEventRecord(b->ev_bucket_host[j], b->s_comm));
  }
  const double wait =
      bf ? cg_gsync_staged_bf16(gs, (uint16_t *)h, bucket_landed, b, &b->mpi_t[q][0])
         : cg_gsync_staged(gs, b->h_grads, bucket_landed, b, &b->mpi_t[q][0]);
  b->mpi_t[q][1] = cg_now();
  b->meta[q].comm_wait_ms = 1e3 * wait;
  b->meta[q].bytes = cg_gsync_take_bytes(gs);
  CG_CHECK_CUDA(cudaMemcpyAsync(dsrc, h, b->m->nparams * es, cudaMemcpyHostToDevice, b->s_comm));
  if (bf) cg_k_grad_from_bf16(b->d_gbf16, b->d_grads, (int64_t)b->m->nparams, b->s_comm);
  CG_CHECK_CUDA(cudaEventRecord(b->ev_comm_done, b->s_comm));
  CG_CHECK_CUDA(cudaStreamWaitEvent(b->s_comp, b->ev_comm_done, 0));
  CG_CHECK_CUDA(cudaEventRecord(b->ev_opt_begin[q], b->s_comp));
  return 0;
}

/* The fp32 conversions of the dW of the layers backward has finished since the last flush, in
 * one launch (the first layer's, with its channel padding dropped, in its own). */
void flush_dw_casts(cg_backend_t *b) {
  const cg_model_t *m = b->m;
  cg_k_segs_t sg;
  sg.nseg = 0;
  for (int k = 0; k < b->npending; k++) {
    const int i = b->pending[k];
    const cg_layer_t *l = &m->layers[i];
    float *dw = b->d_grads + l->w_off;
    if (i == b->plan.first) {
      cg_k_unpack_grad_cpad(b->dt, b->dw_lp[i], l->cout, l->k * l->k, m->in_c, b->cpad, dw,
                            b->s_comp);
      continue;
    }
    if (sg.nseg == CG_K_MAX_SEGS) {
      cg_k_cast_segs_to_f32(b->dt, &sg, b->s_comp);
      sg.nseg = 0;
    }
    sg.src[sg.nseg] = b->dw_lp[i];
    sg.dst[sg.nseg] = dw;
    sg.n[sg.nseg] = (int64_t)l->w_len;
    sg.nseg++;
  }
  if (sg.nseg) cg_k_cast_segs_to_f32(b->dt, &sg, b->s_comp);
  b->npending = 0;
}

/* The ReLU + bias backward of layer j, when its consumer i (the head or a pool) does it in its
 * own backward (devplan.h: bias_by); else -1. */
int fused_producer(const cg_backend_t *b, int i) {
  for (int j = 0; j < b->m->nlayers; j++)
    if (b->plan.bias_by[j] == i) return j;
  return -1;
}

/* dW of a convolution into its low-precision slot, on stream s with workspace ws; with db
 * (fold_db), the fp32 bias gradient from the same pass too. */
cudnnStatus_t run_dw(cg_backend_t *b, int i, cudaStream_t s, void *ws, size_t wsb, float *db) {
  const cg_layer_t *l = &b->m->layers[i];
  const int p = b->plan.bwd_dw[i];
  const void *x = act_at(b, l->in, p, CG_DP_R), *dy = grad_at(b, l->out, p, CG_DP_R);
  if (db) return cg_conv_bwd_filter_db(b->cctx, b->conv[i], x, dy, b->dw_lp[i], db, ws, wsb, s);
  return cg_conv_bwd_filter(b->cctx, b->conv[i], x, dy, b->dw_lp[i], ws, wsb, s);
}

/* Whether layer i's own bias backward still has its ReLU mask to apply to dy: it has a ReLU
 * and the next layer's dx did not carry the mask (cuDNN's or our fused dgrad). */
bool relu_left(const cg_backend_t *b, int i) {
  const cg_devplan_t *P = &b->plan;
  return b->m->layers[i].relu &&
         !(P->mask_by[i] >= 0 && cg_conv_drelu_fused(b->conv[P->mask_by[i]]));
}

/* Whether layer i's bias gradient comes from its dW kernel (our own, which sums dy in the same
 * pass): where its bias backward is a plain sum (no ReLU left to apply: none, or the next
 * layer's dx carried the mask) and CG_DW_BIAS is not 0. */
bool fold_db(const cg_backend_t *b, int i) {
  const cg_devplan_t *P = &b->plan;
  if (P->bwd_mask[i] < 0 || !b->dw_bias || !cg_conv_dw_has_db(b->conv[i])) return false;
  return !relu_left(b, i);
}

/* Layer i's backward (and, with concat copies, the split of its input gradient). */
int backward_layer(cg_backend_t *b, int i) {
  const cg_model_t *m = b->m;
  const cudaStream_t s = b->s_comp;
  const cg_dtype_t dt = b->dt;
  const cg_devplan_t *P = &b->plan;
  const cg_layer_t *l = &m->layers[i];
  const cg_tensor_t *ti = &m->tensors[l->in];
  const int64_t npix_in = (int64_t)tensor_px(b, l->in), npix_out = (int64_t)tensor_px(b, l->out);
  const int dxmode = l->accum_dx ? CG_DP_RW : CG_DP_W;
  float *dw = b->d_grads + l->w_off, *db = b->d_grads + l->b_off;
  const int j = fused_producer(b, i);
  float *db_j = j >= 0 ? b->d_grads + m->layers[j].b_off : NULL;
  switch (l->op) {
    case CG_OP_CONV:
    case CG_OP_UPCONV: {
      if (P->is_head[i]) {
        const int p = P->bwd_dw[i];
        const void *x = act_at(b, l->in, p, CG_DP_R), *dy = grad_at(b, l->out, p, CG_DP_R);
        void *dx = l->need_dx ? grad_at(b, l->in, p, dxmode) : NULL;
        if (l->cout > 1) /* K classes; with j, the ReLU + bias backward of j too */
          cg_head_k_bwd(dt, x, wptr(b, i), dy, npix_in, l->cin, l->cout, dx, j >= 0, db_j, dw,
                        db, b->d_head_work, s);
        else if (j >= 0) /* also the ReLU + bias backward of the layer before */
          cg_head_bwd_fused(dt, x, wptr(b, i), dy, npix_in, l->cin, dx, 1, db_j, dw, db,
                            b->d_head_work, s);
        else
          cg_head_bwd(dt, x, wptr(b, i), dy, npix_in, l->cin, dx, dw, db, b->d_head_work, s);
        break;
      }
      /* masks dy in place (ReLU; y is read only then) and writes the fp32 bias gradient,
       * unless the consumer's backward did both, or the sum is left to our dW kernel */
      const bool fold = fold_db(b, i);
      if (P->bwd_mask[i] >= 0 && !fold) {
        const int p = P->bwd_mask[i];
        /* the next layer's dx carried the ReLU mask already: only the bias sum is left */
        const int relu = relu_left(b, i);
        int64_t ldy = P->ld[l->out];
        const void *y = relu ? act_src(b, l->out, p, &ldy) : NULL;
        cg_k_bias_act_bwd_ld(dt, grad_at(b, l->out, p, relu ? CG_DP_RW : CG_DP_R),
                             P->ld[l->out], y, ldy, npix_out, l->cout, relu, db, b->d_bias_work, s);
      }
      /* dW before dx: dx may take the bytes of x, whose last reader this is (devplan.h); or
       * both at once, dW on the side stream, where the plan keeps x alive through dx. The
       * statuses are checked after the join, so that no return leaves the side stream forked
       * (a capture would end unjoined). */
      const bool side = P->opts.concurrent[i] != 0;
      cudaError_t cf = cudaSuccess, cj = cudaSuccess, cw = cudaSuccess;
      cudnnStatus_t sdw = CUDNN_STATUS_SUCCESS, sdx = CUDNN_STATUS_SUCCESS;
      if (side) {
        cf = cudaEventRecord(b->ev_fork, s);
        if (cf == cudaSuccess) cf = cudaStreamWaitEvent(b->s_side, b->ev_fork, 0);
        if (cf == cudaSuccess)
          sdw = run_dw(b, i, b->s_side, b->d_ws2, b->ws2_bytes, fold ? db : NULL);
        if (cf == cudaSuccess) cj = cudaEventRecord(b->ev_join, b->s_side);
      } else {
        sdw = run_dw(b, i, s, b->d_ws, b->ws_bytes, fold ? db : NULL);
      }
      if (l->need_dx && cg_conv_drelu_fused(b->conv[i])) /* dx * (x > 0), one kernel */
        sdx = cg_conv_bwd_data_drelu(b->cctx, b->conv[i], grad_at(b, l->out, P->bwd_dx[i], CG_DP_R),
                                     wptr(b, i), act_at(b, l->in, P->bwd_dx[i], CG_DP_R),
                                     grad_at(b, l->in, P->bwd_dx[i], dxmode), b->d_ws, b->ws_bytes,
                                     s);
      else if (l->need_dx)
        sdx = cg_conv_bwd_data(b->cctx, b->conv[i], grad_at(b, l->out, P->bwd_dx[i], CG_DP_R),
                               wptr(b, i), grad_at(b, l->in, P->bwd_dx[i], dxmode), l->accum_dx,
                               b->d_ws, b->ws_bytes, s);
      if (side && cf == cudaSuccess && cj == cudaSuccess) cw = cudaStreamWaitEvent(s, b->ev_join, 0);
      BODY_CUDA(b, cf);
      BODY_DNN(b, sdw);
      BODY_CUDA(b, cj);
      BODY_DNN(b, sdx);
      BODY_CUDA(b, cw);
      b->pending[b->npending++] = i; /* dW to fp32 with the rest of its bucket */
    } break;
    case CG_OP_POOL: /* the output is not read: the argmax is recomputed from x */
      if (l->need_dx) {
        const int p = P->bwd_dx[i];
        int64_t ldx = P->ld[l->in], ldold = P->ld[l->in];
        const void *x = act_src(b, l->in, p, &ldx); /* the skip, or its copy in the concat */
        /* the gradient to add to: dx itself, or the skip's part of the concat's in gcat */
        const bool gcat = P->parent[cg_devplan_gcat(P, l->in)] >= 0;
        const void *old = gcat ? gsplit_at(b, l->in, p, CG_DP_R, &ldold) : NULL;
        void *dx = grad_at(b, l->in, p, gcat ? CG_DP_W : dxmode);
        if (!gcat && l->accum_dx) old = dx;
        cg_k_maxpool_bwd_ld(dt, x, ldx, grad_at(b, l->out, p, CG_DP_R), b->n, ti->h, ti->w,
                            ti->c, dx, P->ld[l->in], old, ldold, j >= 0, db_j, b->d_pool_work,
                            s);
      }
      break;
  }
  if (P->cat_bwd[i] >= 0) {
    const int pa = P->cat_a[l->in], pb = P->cat_b[l->in], p = P->cat_bwd[i];
    int64_t lda, ldb;
    void *ga = gsplit_at(b, pa, p, CG_DP_W, &lda), *gb = gsplit_at(b, pb, p, CG_DP_W, &ldb);
    cg_k_concat_bwd_ld(dt, grad_at(b, l->in, p, CG_DP_R), m->tensors[pa].c, m->tensors[pb].c,
                       npix_in, ga, lda, gb, ldb, s);
  }
  return 0;
}

int backward(cg_backend_t *b) {
  const cg_model_t *m = b->m;
  const cudaStream_t s = b->s_comp;
  b->npending = 0;
  if (b->cfg.trace) BODY_CUDA(b, record_timed(b, b->ev_bw0[b->seq_submitted % kNDQ]));
  for (int i = m->nlayers - 1; i >= 0; i--) {
    if (b->cfg.profile && !b->capturing) CG_CHECK_CUDA(cudaEventRecord(b->ev_pb[i][0], s));
    cg_kprof_enter(b->kp, b->kr_bwd[i], s);
    const int rc = backward_layer(b, i);
    /* a bucket's gradients are complete once its dW are in fp32 */
    const int flush = rc == 0 && (!b->merge_casts || i == 0 ||
                                  (b->cfg.buckets && b->cfg.buckets->ready_after[i] >= 0));
    if (flush) { /* a region of its own: a bucket's conversions belong to no one layer */
      cg_kprof_enter(b->kp, b->kr_casts, s);
      flush_dw_casts(b);
      cg_kprof_leave(b->kp, s);
    }
    cg_kprof_leave(b->kp, s);
    if (rc) return -1;
    if (b->cfg.profile && !b->capturing) CG_CHECK_CUDA(cudaEventRecord(b->ev_pb[i][1], s));
    if (bucket_ready(b, i)) return -1;
  }
  return 0;
}

int optimizer(cg_backend_t *b, int dq) {
  const cudaStream_t s = b->s_comp;
  const int64_t np = (int64_t)b->m->nparams;
  const bool fp16 = b->dt == CG_DT_F16;
  cg_kprof_enter(b->kp, b->kr_opt, s);
  if (fp16) cg_k_check_finite(b->d_grads, np, b->d_scaler, s);
  cudaError_t c0 = cudaSuccess;
  if (b->d_gn) { /* --clip-grad-norm: the norm into the step's results */
    cg_k_grad_norm(b->d_grads, np, b->d_scaler, b->cfg.clip_norm, b->d_gn_work, b->d_gn, s);
    c0 = cudaMemcpyAsync(res_field(b, dq, offsetof(result_t, gnorm)), &b->d_gn->norm,
                         sizeof(float), cudaMemcpyDeviceToDevice, s);
  }
  if (b->cfg.optim == CG_OPTIM_SGD)
    cg_k_sgd(b->d_params, b->d_grads, b->d_m, np, b->d_hp, b->d_scaler, b->d_gn, b->cfg.momentum,
             b->cfg.nesterov, b->dt, b->d_lowp, b->d_ema, s);
  else
    cg_k_adamw(b->d_params, b->d_grads, b->d_m, b->d_v, np, b->d_hp, b->d_scaler, b->d_gn, b->dt,
               b->d_lowp, b->d_ema, s);
  const cudaError_t c1 = cudaMemcpyAsync(res_field(b, dq, offsetof(result_t, before)),
                                         b->d_scaler, sizeof(cg_scaler_t),
                                         cudaMemcpyDeviceToDevice, s);
  if (fp16 && c1 == cudaSuccess) cg_k_scaler_update(b->d_scaler, s);
  cg_kprof_leave(b->kp, s);
  BODY_CUDA(b, c0);
  BODY_CUDA(b, c1);
  BODY_CUDA(b, cudaMemcpyAsync(res_field(b, dq, offsetof(result_t, after)), b->d_scaler,
                               sizeof(cg_scaler_t), cudaMemcpyDeviceToDevice, s));
  return 0;
}

/* A training step's forward, loss (fault: its gradient made NaN) and backward, after the step's
 * parameter copies: what train_body and micro_body share. micro: the gradients stay where they
 * are (bucket_ready posts nothing). */
int fwd_loss_bwd(cg_backend_t *b, int slot, int dq, int fault, int micro) {
  const cudaStream_t s = b->s_comp;
  cg_nvtx_push("forward");
  const int frc = forward(b, slot);
  cg_nvtx_pop();
  if (frc) return -1;
  prof_mark(b, 1, 0);
  cg_kprof_enter(b->kp, b->kr_loss, s);
  run_loss(b, slot, dq, 1);
  cg_kprof_leave(b->kp, s);
  prof_mark(b, 1, 1);
  if (fault)
    cg_k_fault_nan(b->dt, grad_at(b, b->m->logits_tensor, b->plan.loss, CG_DP_RW),
                   loss_ptr(b, dq), s);
  b->micro = micro;
  cg_nvtx_push("backward");
  const int brc = backward(b);
  cg_nvtx_pop();
  b->micro = 0;
  return brc;
}

/* The loss scaler as it stands into the step's result, before and after: a step that updates
 * nothing (eval, a micro-batch). */
cudaError_t scaler_as_is(cg_backend_t *b, int dq) {
  const cudaError_t c = cudaMemcpyAsync(res_field(b, dq, offsetof(result_t, before)), b->d_scaler,
                                        sizeof(cg_scaler_t), cudaMemcpyDeviceToDevice, b->s_comp);
  return c != cudaSuccess ? c
                          : cudaMemcpyAsync(res_field(b, dq, offsetof(result_t, after)),
                                            b->d_scaler, sizeof(cg_scaler_t),
                                            cudaMemcpyDeviceToDevice, b->s_comp);
}

/* Everything a training step puts on the compute stream between its event waits/records: the
 * part a CUDA graph captures, with the NCCL work it forks onto the comm stream (gsync and the
 * fault never run under capture). */
int train_body(cg_backend_t *b, int slot, int dq, int q, int fault) {
  const cudaStream_t s = b->s_comp;
  cg_kprof_enter(b->kp, b->kr_params, s);
  const cudaError_t c1 = cudaMemcpyAsync(b->d_hp, b->h_hp[dq], sizeof(cg_step_params_t),
                                         cudaMemcpyHostToDevice, s);
  const cudaError_t c2 = c1 == cudaSuccess ? cudaMemcpyAsync(b->d_grad_scale, scale_ptr(b),
                                                             sizeof(float),
                                                             cudaMemcpyDeviceToDevice, s)
                                           : c1;
  cg_kprof_leave(b->kp, s);
  BODY_CUDA(b, c1);
  BODY_CUDA(b, c2);
  if (fwd_loss_bwd(b, slot, dq, fault, 0)) return -1;
  if (b->d_gacc && !b->cfg.buckets) { /* no buckets to take the kept sum by: all at once */
    cg_kprof_enter(b->kp, b->kr_opt, s);
    cg_k_grad_take(b->d_grads, b->d_gacc, (int64_t)b->m->nparams, s);
    cg_kprof_leave(b->kp, s);
  }
  if (grads_sync(b, q, dq)) return -1;
  prof_mark(b, 2, 0);
  cg_nvtx_push("optimizer");
  const int rc = optimizer(b, dq);
  cg_nvtx_pop();
  prof_mark(b, 2, 1);
  return rc;
}

/* accum_step's body, the part its graph captures: a micro-batch's forward, loss and backward,
 * its gradients added to the kept sum (no all-reduce, no AdamW), the scaler reported as it
 * stands. */
int micro_body(cg_backend_t *b, int slot, int dq, int fault) {
  const cudaStream_t s = b->s_comp;
  cg_kprof_enter(b->kp, b->kr_params, s);
  const cudaError_t c1 = cudaMemcpyAsync(b->d_grad_scale, scale_ptr(b), sizeof(float),
                                         cudaMemcpyDeviceToDevice, s);
  cg_kprof_leave(b->kp, s);
  BODY_CUDA(b, c1);
  if (fwd_loss_bwd(b, slot, dq, fault, 1)) return -1;
  cg_kprof_enter(b->kp, b->kr_opt, s);
  cg_k_grad_keep(b->d_grads, b->d_gacc, (int64_t)b->m->nparams, s);
  const cudaError_t c2 = scaler_as_is(b, dq);
  cg_kprof_leave(b->kp, s);
  BODY_CUDA(b, c2);
  return 0;
}

/* Captures train_body (micro: micro_body) for (slot, dq) into b->gexec (b->gexec_acc); on any
 * failure warns once and turns graphs off (the step then runs eagerly; nothing captured was
 * executed). */
void capture_step(cg_backend_t *b, int slot, int dq, int q, int micro) {
  const cudaStream_t s = b->s_comp;
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  char why[320] = "";
  cudaError_t rc = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  if (rc != cudaSuccess) {
    snprintf(why, sizeof why, "cudaStreamBeginCapture: %s", cudaGetErrorString(rc));
  } else {
    b->capturing = 1;
    b->capture_err[0] = 0;
    const int body = micro ? micro_body(b, slot, dq, 0) : train_body(b, slot, dq, q, 0);
    b->capturing = 0;
    rc = cudaStreamEndCapture(s, &g);
    if (body)
      snprintf(why, sizeof why, "%s", b->capture_err);
    else if (rc != cudaSuccess || g == NULL)
      snprintf(why, sizeof why, "cudaStreamEndCapture: %s", cudaGetErrorString(rc));
    else if ((rc = cudaGraphInstantiate(&ge, g, 0)) != cudaSuccess)
      snprintf(why, sizeof why, "cudaGraphInstantiate: %s", cudaGetErrorString(rc));
  }
  if (g) (void)cudaGraphDestroy(g); /* the executable graph keeps what it needs */
  if (why[0]) {
    (void)cudaGetLastError();
    if (ge) (void)cudaGraphExecDestroy(ge);
    cg_log_warn("CUDA graph capture failed (%s); running steps eagerly", why);
    b->graphs_ok = 0;
    return;
  }
  (micro ? b->gexec_acc : b->gexec)[slot][dq] = ge;
}

/* Runs a training body for (slot, dq), micro_body (micro) or train_body: from its graph,
 * captured at first use once the warm-up steps are behind, or eagerly (errors fatal inside). */
void run_body(cg_backend_t *b, int slot, int dq, int q, int micro) {
  cudaGraphExec_t(*g)[kNDQ] = micro ? b->gexec_acc : b->gexec;
  if (b->graphs_ok && b->train_steps >= kWarmupSteps) {
    if (!g[slot][dq]) capture_step(b, slot, dq, q, micro);
    if (b->graphs_ok && g[slot][dq]) {
      CG_CHECK_CUDA(cudaGraphLaunch(g[slot][dq], b->s_comp));
      return;
    }
  }
  const int fault = b->train_steps == b->cfg.fault_nan_step; /* a step's micro-batches too */
  const int rc = micro ? micro_body(b, slot, dq, fault) : train_body(b, slot, dq, q, fault);
  CG_ASSERT(rc == 0);
}

/* The d2h half of a step: results to the pinned slot q once the compute stream is done. */
void issue_results(cg_backend_t *b, int q, int dq) {
  const size_t px = (size_t)b->n * b->m->height * b->m->width;
  CG_CHECK_CUDA(cudaStreamWaitEvent(b->s_d2h, b->ev_end[q], 0));
  if (b->cfg.trace) CG_CHECK_CUDA(cudaEventRecord(b->ev_d2h_start[q], b->s_d2h));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->h_res[q], b->d_res[dq], sizeof(result_t),
                                cudaMemcpyDeviceToHost, b->s_d2h));
  if (!b->meta[q].metrics_dev) /* else only the counts (in the result struct) come back */
    CG_CHECK_CUDA(cudaMemcpyAsync(b->meta[q].pred_dst, b->d_pred[dq], px, cudaMemcpyDeviceToHost,
                                  b->s_d2h));
  else if (b->nclass > 1) /* the K x K counts */
    CG_CHECK_CUDA(cudaMemcpyAsync(b->h_confk[q], b->d_confk[dq],
                                  (size_t)b->nclass * b->nclass * sizeof(unsigned long long),
                                  cudaMemcpyDeviceToHost, b->s_d2h));
  if (b->cfg.trace) CG_CHECK_CUDA(cudaEventRecord(b->ev_d2h_end[q], b->s_d2h));
  CG_CHECK_CUDA(cudaEventRecord(b->ev_result[q], b->s_d2h));
}

/* ---- the ops table ----------------------------------------------------------------------- */

void cuda_destroy(cg_backend_t *b) {
  if (!b) return;
  if (b->cfg.profile) prof_print(b);
  if (b->dev_set) {
    DEV_ENTRY(b);
    CG_CHECK_CUDA(cudaSetDevice(b->dev));
    CG_CHECK_CUDA(cudaDeviceSynchronize()); /* nothing in flight may touch what is freed */
  }
  for (int s = 0; s < CG_DEV_SLOTS; s++)
    for (int q = 0; q < kNDQ; q++)
      for (cudaGraphExec_t ge : {b->gexec[s][q], b->gexec_acc[s][q]})
        if (ge) CG_CHECK_CUDA(cudaGraphExecDestroy(ge));
  for (int i = 0; i < CG_MAX_LAYERS; i++) cg_conv_destroy(b->conv[i]);
  cg_conv_ctx_destroy(b->cctx);
  if (b->dnn) CG_CHECK_CUDNN(cudnnDestroy(b->dnn));
  cudaEvent_t *evs[] = {b->ev_ready, b->ev_free, b->ev_start, b->ev_end, b->ev_result,
                        b->ev_bwd_end, b->ev_opt_begin, b->ev_bucket, b->ev_bucket_host,
                        &b->ev_comm_done, b->ev_xp_begin, b->ev_xp_end, &b->ev_fork,
                        &b->ev_join};
  const int nev[] = {CG_DEV_SLOTS, CG_DEV_SLOTS, kNQ, kNQ, kNQ, kNQ, kNQ, CG_MAX_BUCKETS,
                     CG_MAX_BUCKETS, 1, kNDQ, kNDQ, 1, 1};
  for (size_t k = 0; k < sizeof nev / sizeof nev[0]; k++)
    for (int j = 0; j < nev[k]; j++)
      if (evs[k][j]) CG_CHECK_CUDA(cudaEventDestroy(evs[k][j]));
  for (int i = 0; i < CG_MAX_LAYERS; i++)
    for (int k = 0; k < 2; k++) {
      if (b->ev_pf[i][k]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_pf[i][k]));
      if (b->ev_pb[i][k]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_pb[i][k]));
      if (i < 3 && b->ev_pm[i][k]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_pm[i][k]));
    }
  if (b->cfg.trace) {
    if (b->ev_ref) CG_CHECK_CUDA(cudaEventDestroy(b->ev_ref));
    for (int i = 0; i < CG_DEV_SLOTS; i++) {
      if (b->ev_h2d_start[i]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_h2d_start[i]));
      if (b->ev_h2d_end[i]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_h2d_end[i]));
    }
    for (int i = 0; i < kNQ; i++) {
      if (b->ev_d2h_start[i]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_d2h_start[i]));
      if (b->ev_d2h_end[i]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_d2h_end[i]));
    }
    for (int q = 0; q < kNDQ; q++)
      for (int j = 0; j < CG_MAX_BUCKETS; j++)
        for (int e = 0; e < 2; e++)
          if (b->ev_cb[q][j][e]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_cb[q][j][e]));
    for (int q = 0; q < kNDQ; q++) {
      for (int j = 0; j < CG_MAX_BUCKETS; j++)
        if (b->ev_rd[q][j]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_rd[q][j]));
      if (b->ev_bw0[q]) CG_CHECK_CUDA(cudaEventDestroy(b->ev_bw0[q]));
    }
  }
  cudaStream_t ss[] = {b->s_h2d, b->s_comp, b->s_comm, b->s_d2h, b->s_side};
  for (size_t k = 0; k < sizeof ss / sizeof ss[0]; k++)
    if (ss[k]) CG_CHECK_CUDA(cudaStreamDestroy(ss[k]));
  for (int i = 0; i < b->nallocs; i++) CG_CHECK_CUDA(cudaFree(b->allocs[i]));
  for (int i = 0; i < b->nhallocs; i++) CG_CHECK_CUDA(cudaFreeHost(b->hallocs[i]));
  free(b->devtab);
  free(b);
}

void make_events(cg_backend_t *b) {
  const unsigned plain = cudaEventDisableTiming;
  for (int s = 0; s < CG_DEV_SLOTS; s++) {
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_ready[s], plain));
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_free[s], plain));
  }
  for (int q = 0; q < kNQ; q++) {
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_start[q], cudaEventDefault)); /* timed */
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_end[q], cudaEventDefault));
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_bwd_end[q], cudaEventDefault));
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_opt_begin[q], cudaEventDefault));
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_result[q], plain));
  }
  if (b->cfg.gsync || b->nccl) {
    for (int j = 0; j < CG_MAX_BUCKETS; j++) {
      CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_bucket[j], plain));
      CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_bucket_host[j], plain));
    }
    CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_comm_done, plain));
  }
  if (b->nccl)
    for (int q = 0; q < kNDQ; q++) {
      CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_xp_begin[q], cudaEventDefault)); /* timed */
      CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_xp_end[q], cudaEventDefault));
    }
}

/* Regions of the per-kernel breakdown (cfg.kprof): each layer's forward and backward, with its
 * work per step: multiply-adds x 2, and the fewest bytes the pass must move (each input read
 * once, each output written once). */
void name_regions(cg_backend_t *b) {
  cg_kprof_t *kp = b->kp;
  if (!kp) return;
  const cg_model_t *m = b->m;
  const double es = (double)b->es;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const double xin = (double)tensor_px(b, l->in) * (i == b->plan.first ? b->cpad : l->cin);
    const double yout = (double)tensor_px(b, l->out) * l->cout;
    const double wts = (double)l->w_len;
    double ff = l->flops_fwd * b->n, fb = 0, bf = 0, bb = 0;
    switch (l->op) {
      case CG_OP_CONV:
      case CG_OP_UPCONV:
        bf = es * (xin + wts + yout);
        fb = ff * (l->need_dx ? 2.0 : 1.0);
        bb = es * (xin + yout + wts + (l->need_dx ? xin : 0.0));
        break;
      case CG_OP_POOL:
        bf = es * (xin + yout);
        bb = es * (xin + yout + xin);
        break;
    }
    char name[64];
    snprintf(name, sizeof name, "%s/fwd", l->name);
    b->kr_fwd[i] = cg_kprof_region(kp, name, ff, bf);
    snprintf(name, sizeof name, "%s/bwd", l->name);
    b->kr_bwd[i] = cg_kprof_region(kp, name, fb, bb);
  }
  const double px = (double)b->n * m->height * m->width, np = (double)m->nparams;
  b->kr_prep = cg_kprof_region(kp, "input prep", 0, px * (4.0 * m->in_c + es * b->cpad));
  /* logits read (twice for K >= 2), their gradient written, the mask read, the prediction */
  b->kr_loss = cg_kprof_region(kp, "loss", 0,
                               b->nclass > 1 ? px * (3.0 * es * b->nclass + 2.0)
                                             : px * (3.0 * es + 1.0));
  /* AdamW: p, g, m, v read, p, m, v and the low-precision copy written; SGD: p, g, buf read, p
   * and buf written */
  const double opt_f32 = b->cfg.optim == CG_OPTIM_SGD ? 5.0 : 7.0;
  b->kr_opt = cg_kprof_region(kp, "optimizer", 0, np * (opt_f32 * 4.0 + es));
  b->kr_params = cg_kprof_region(kp, "step parameters", 0, 0);
  /* each bucket's dW: read in the compute type, written in fp32 */
  b->kr_casts = cg_kprof_region(kp, "dW to fp32", 0, np * (es + 4.0));
}

/* The step's structure (devplan.h), from the environment for experiments: CG_CONCAT=copy
 * (default in place), CG_CONCAT_COPY_HW=N: copy the concat buffers at least N pixels high
 * (default none), CG_SKIP_FROM_CAT=0 (with copies, the backward reads the skip from its
 * copy in the concat buffer by default), CG_GRAD_IN_CAT=0 (with copies, the skip's gradient
 * lives in the concat's upsampled half after the split by default),
 * CG_FUSE_RELU_BIAS=0 (default 1), CG_CONCURRENT_HW=N: the convolutions
 * whose input is at most N pixels high run dW and dx at the same time (default 64; 0 = none),
 * CG_DRELU=0: never mask dx by the ReLU inside the convolution (default: where cuDNN measures
 * it faster, make_convs decides). */
cg_devplan_opts_t plan_opts(const cg_model_t *m) {
  cg_devplan_opts_t o;
  memset(&o, 0, sizeof o);
  const char *cat = getenv("CG_CONCAT"), *fuse = getenv("CG_FUSE_RELU_BIAS");
  const char *hw = getenv("CG_CONCURRENT_HW");
  o.inplace_concat = !(cat && !strcmp(cat, "copy"));
  const char *sfc = getenv("CG_SKIP_FROM_CAT");
  o.skip_from_cat = !(sfc && !strcmp(sfc, "0")); /* where the concat is copied */
  o.fuse_relu_bias = !(fuse && !strcmp(fuse, "0"));
  const char *gic = getenv("CG_GRAD_IN_CAT"), *chw = getenv("CG_CONCAT_COPY_HW");
  o.grad_in_cat = !(gic && !strcmp(gic, "0"));
  const int copyhw = chw ? atoi(chw) : 0;
  for (int t = 0; t < m->ntensors; t++)
    o.copy_concat[t] = copyhw > 0 && m->tensors[t].h >= copyhw;
  const int maxhw = hw ? atoi(hw) : 64;
  const char *dr = getenv("CG_DRELU");
  const int drelu = dr && !strcmp(dr, "0") ? 0 : 2; /* 2: either way until the search decides */
  for (int i = 0; i < m->nlayers; i++) {
    o.concurrent[i] = m->tensors[m->layers[i].in].h <= maxhw;
    o.drelu[i] = drelu;
  }
  return o;
}

/* How the plan holds its concat buffers, for the memory line: "in place", "copied", or
 * "K of N in place". */
const char *concat_ways(const cg_devplan_t *p, char *buf, size_t len) {
  int n = 0, k = 0;
  for (int t = 0; t < p->ntensors; t++)
    if (p->cat_a[t] >= 0) {
      n++;
      k += cg_devplan_inplace(p, t);
    }
  if (k == n) return "in place";
  if (k == 0) return "copied";
  snprintf(buf, len, "%d of %d in place", k, n);
  return buf;
}

/* One attempt at the backend with the step structure opts. *conv_failed: i + 1 when the
 * failure was that convolution layer i has no cuDNN algorithm for its shape (the caller may
 * retry with dense tensors), else 0. */
int create_with(const cg_model_t *m, const cg_backend_cfg_t *cfg, const cg_devplan_opts_t *opts,
                int ndev, cg_backend_t **out, int *conv_failed, char *err, size_t errlen) {
  *conv_failed = 0;
  cg_backend_t *b = static_cast<cg_backend_t *>(cg_calloc(1, sizeof(cg_backend_t), "cuda backend"));
  b->m = m;
  b->cfg = *cfg;
  b->n = cfg->batch;
  b->nclass = m->nclass;
  b->ign = cfg->ignore_index >= m->nclass ? cfg->ignore_index : -1; /* below K: none */
  b->dev = (cfg->device > 0 ? cfg->device : 0) % ndev;
  b->dt = dtype_of(cfg->precision);
  b->es = cg_dtype_size(b->dt);
  b->cpad = (m->in_c + kChannelAlign - 1) / kChannelAlign * kChannelAlign;
  b->graphs_ok = cfg->cuda_graph && !cfg->gsync && cfg->fault_nan_step < 0 && !cfg->profile;
  b->nccl = cfg->nccl;
  const char *mc = getenv("CG_MERGE_CASTS");
  b->merge_casts = !(mc && !strcmp(mc, "0"));
  const char *dwb = getenv("CG_DW_BIAS");
  b->dw_bias = !(dwb && !strcmp(dwb, "0"));
  const char *cb = getenv("CG_CAT_BIAS");
  b->cat_bias = !(cb && !strcmp(cb, "0"));
  /* the device first: every stream and event below belongs to it */
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  b->dev_set = 1;
  {
    const char *chk = getenv("COGPU_CHECK_DEVICE");
    b->check_dev = chk && chk[0] && strcmp(chk, "0") != 0;
  }
  if (b->check_dev)
    b->devtab = static_cast<dev_entry_t *>(cg_calloc(kDevTab, sizeof(dev_entry_t), "device table"));
  DEV_ENTRY(b);
  if (b->nccl && cg_nccl_device(b->nccl) != b->dev) {
    snprintf(err, errlen, "the NCCL communicator is on GPU %d, the backend on GPU %d",
             cg_nccl_device(b->nccl), b->dev);
    cuda_destroy(b);
    return -1;
  }
  cudnnStatus_t dst;
  if (cg_devplan_make(m, b->n, b->cpad, b->es, kArenaAlign, opts, &b->plan, err, errlen))
    goto fail;
  b->kp = cfg->kprof;
  name_regions(b);
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&b->s_h2d, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&b->s_comp, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&b->s_comm, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&b->s_side, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(&b->s_d2h, cudaStreamNonBlocking));
  CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_fork, cudaEventDisableTiming));
  CG_CHECK_CUDA(cudaEventCreateWithFlags(&b->ev_join, cudaEventDisableTiming));
  make_events(b);
  if (cfg->trace) {
    CG_CHECK_CUDA(cudaEventCreate(&b->ev_ref));
    for (int i = 0; i < CG_DEV_SLOTS; i++) {
      CG_CHECK_CUDA(cudaEventCreate(&b->ev_h2d_start[i]));
      CG_CHECK_CUDA(cudaEventCreate(&b->ev_h2d_end[i]));
    }
    for (int i = 0; i < kNQ; i++) {
      CG_CHECK_CUDA(cudaEventCreate(&b->ev_d2h_start[i]));
      CG_CHECK_CUDA(cudaEventCreate(&b->ev_d2h_end[i]));
    }
    for (int q = 0; q < kNDQ; q++)
      for (int j = 0; j < CG_MAX_BUCKETS; j++)
        for (int e = 0; e < 2; e++) CG_CHECK_CUDA(cudaEventCreate(&b->ev_cb[q][j][e]));
    for (int q = 0; q < kNDQ; q++) {
      for (int j = 0; j < CG_MAX_BUCKETS; j++) CG_CHECK_CUDA(cudaEventCreate(&b->ev_rd[q][j]));
      CG_CHECK_CUDA(cudaEventCreate(&b->ev_bw0[q]));
    }
    CG_CHECK_CUDA(cudaEventRecord(b->ev_ref, b->s_comp));
    CG_CHECK_CUDA(cudaEventSynchronize(b->ev_ref));
    b->ref_host = cg_now();
  }
  if (cfg->profile)
    for (int i = 0; i < CG_MAX_LAYERS; i++)
      for (int k = 0; k < 2; k++) {
        CG_CHECK_CUDA(cudaEventCreate(&b->ev_pf[i][k]));
        CG_CHECK_CUDA(cudaEventCreate(&b->ev_pb[i][k]));
        if (i < 3) CG_CHECK_CUDA(cudaEventCreate(&b->ev_pm[i][k]));
      }
  dst = cudnnCreate(&b->dnn);
  if (dst != CUDNN_STATUS_SUCCESS) {
    b->dnn = NULL;
    snprintf(err, errlen, "cudnnCreate: %s (cuDNN %zu loaded, built with %d.%d.%d)",
             cudnnGetErrorString(dst), cudnnGetVersion(), CUDNN_MAJOR, CUDNN_MINOR,
             CUDNN_PATCHLEVEL);
    goto fail;
  }
  b->cctx = cg_conv_ctx_create(b->dnn, cfg->deterministic, cfg->algo_cache);
  if (alloc_all(b, err, errlen)) goto fail;
  if (make_convs(b, conv_failed, err, errlen)) goto fail;
  set_bias_copy(b); /* the plan is final */
  CG_CHECK_CUDA(cudaDeviceSynchronize());
  char cw[48];
  if (cg_log_rank() <= 0)
    cg_log_info("cuda memory: parameters+optimizer %.1f MiB, activation arena %.1f MiB (%.1f MiB "
                "as one buffer each; concat %s), batch slots %.1f MiB, scratch+results %.1f MiB, "
                "cuDNN workspace %.1f + %.1f MiB; total %.1f MiB",
                b->mem_params / 1048576.0, b->mem_arena / 1048576.0, b->plan.naive / 1048576.0,
                concat_ways(&b->plan, cw, sizeof cw),
                b->mem_slots / 1048576.0, b->mem_scratch / 1048576.0, b->ws_bytes / 1048576.0,
                b->ws2_bytes / 1048576.0, b->bytes / 1048576.0);
  *out = b;
  return 0;
fail:
  cuda_destroy(b);
  return -1;
}

int cuda_create(const cg_model_t *m, const cg_backend_cfg_t *cfg, cg_backend_t **out, char *err,
                size_t errlen) {
  *out = NULL;
  if (cfg->batch < 1) {
    snprintf(err, errlen, "batch %d must be >= 1", cfg->batch);
    return -1;
  }
  if (m->nclass < 1 || m->nclass > CG_MAX_CLASSES ||
      (cfg->nclass != 0 && cfg->nclass != m->nclass) || cfg->ignore_index > 255) {
    snprintf(err, errlen, "classes: model %d, backend %d, ignore label %d", m->nclass,
             cfg->nclass, cfg->ignore_index);
    return -1;
  }
  if (!(cfg->ohem_thresh >= 0.0f && cfg->ohem_thresh <= 1.0f) ||
      (cfg->ohem_thresh > 0.0f && cfg->ohem_min_kept < 0)) {
    snprintf(err, errlen, "OHEM: threshold %g (want [0, 1]), min_kept %lld (want >= 0)",
             (double)cfg->ohem_thresh, (long long)cfg->ohem_min_kept);
    return -1;
  }
  if ((cfg->gsync || cfg->nccl) && !cfg->buckets) {
    snprintf(err, errlen, "gradient sync needs the bucket plan");
    return -1;
  }
  if (cfg->gsync && cfg->nccl) {
    snprintf(err, errlen, "gradients are all-reduced by NCCL or by MPI, not both");
    return -1;
  }
  if (cfg->gsync && (cg_gsync_dtype(cfg->gsync) == CG_GSYNC_BF16) != (cfg->grad_bf16 != 0)) {
    snprintf(err, errlen, "gradient sync in %s, backend asked for %s",
             cg_gsync_dtype_name(cg_gsync_dtype(cfg->gsync)), cfg->grad_bf16 ? "bf16" : "fp32");
    return -1;
  }
  if (cfg->nccl) { /* every bucket must be handed to the comm stream, or it is never joined */
    const cg_buckets_t *bk = cfg->buckets;
    if (bk->n < 1 || bk->n > CG_MAX_BUCKETS) {
      snprintf(err, errlen, "bucket plan: %d buckets", bk->n);
      return -1;
    }
    int seen[CG_MAX_BUCKETS] = {0};
    for (int i = 0; i < m->nlayers; i++)
      if (bk->ready_after[i] >= 0 && bk->ready_after[i] < bk->n) seen[bk->ready_after[i]] = 1;
    for (int j = 0; j < bk->n; j++)
      if (!seen[j]) {
        snprintf(err, errlen, "bucket plan: bucket %d is never completed by a layer", j);
        return -1;
      }
  }
  int ndev = 0;
  cudaError_t drc = cudaGetDeviceCount(&ndev);
  if (drc != cudaSuccess || ndev < 1) {
    (void)cudaGetLastError();
    snprintf(err, errlen, "no usable CUDA device (%s)",
             drc != cudaSuccess ? cudaGetErrorString(drc) : "none found");
    return -1;
  }
  cg_devplan_opts_t opts = plan_opts(m);
  for (;;) { /* ends: each retry copies one more concat, or returns */
    int failed = 0;
    if (create_with(m, cfg, &opts, ndev, out, &failed, err, errlen) == 0) return 0;
    /* cuDNN may have no engine for a strided half of one concat buffer (on an H200, the
     * 256x256 one): copy that one, keep the others in place */
    const int t = failed > 0 ? strided_concat(m, &opts, failed - 1) : -1;
    if (t < 0) return -1;
    if (cg_log_rank() <= 0)
      cg_log_warn("concat of %dx%dx%d in place is not possible (%s): concatenating it with "
                  "copies", m->tensors[t].h, m->tensors[t].w, m->tensors[t].c, err);
    opts.copy_concat[t] = 1;
  }
}

int cuda_set_params(cg_backend_t *b, const float *params) {
  const size_t np = b->m->nparams;
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_params, params, np * sizeof(float), cudaMemcpyHostToDevice,
                                b->s_comp));
  if (b->d_lowp) cg_k_cast_from_f32(b->dt, b->d_params, (int64_t)np, b->d_lowp, b->s_comp);
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

int cuda_get_params(cg_backend_t *b, float *params) {
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaMemcpyAsync(params, b->d_params, b->m->nparams * sizeof(float),
                                cudaMemcpyDeviceToHost, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

int cuda_get_ema(cg_backend_t *b, float *ema) {
  CG_ASSERT(b->d_ema != NULL);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaMemcpyAsync(ema, b->d_ema, b->m->nparams * sizeof(float),
                                cudaMemcpyDeviceToHost, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

int cuda_set_ema(cg_backend_t *b, const float *ema) {
  CG_ASSERT(b->d_ema != NULL);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_ema, ema, b->m->nparams * sizeof(float),
                                cudaMemcpyHostToDevice, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

/* The graphs hold d_params' address: the contents are exchanged, not the pointers. */
int cuda_swap_ema(cg_backend_t *b) {
  CG_ASSERT(b->d_ema != NULL);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  cg_k_ema_swap(b->d_params, b->d_ema, (int64_t)b->m->nparams, b->dt, b->d_lowp, b->s_comp);
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

int cuda_get_grads(cg_backend_t *b, float *grads) {
  const size_t np = b->m->nparams;
  float scale = 1.0f;
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaMemcpyAsync(grads, b->d_grads, np * sizeof(float), cudaMemcpyDeviceToHost,
                                b->s_comp));
  CG_CHECK_CUDA(cudaMemcpyAsync(&scale, b->d_grad_scale, sizeof scale, cudaMemcpyDeviceToHost,
                                b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  CG_ASSERT(scale > 0.0f);
  if (scale != 1.0f) /* a power of two: the division is exact */
    for (size_t i = 0; i < np; i++) grads[i] /= scale;
  return 0;
}

int cuda_get_opt_state(cg_backend_t *b, float *m, float *v, float *scale, int64_t *good_steps) {
  const size_t np = b->m->nparams;
  cg_scaler_t sc;
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaMemcpyAsync(m, b->d_m, np * sizeof(float), cudaMemcpyDeviceToHost, b->s_comp));
  if (b->d_v)
    CG_CHECK_CUDA(
        cudaMemcpyAsync(v, b->d_v, np * sizeof(float), cudaMemcpyDeviceToHost, b->s_comp));
  else
    memset(v, 0, np * sizeof(float)); /* SGD has no v */
  CG_CHECK_CUDA(cudaMemcpyAsync(&sc, b->d_scaler, sizeof sc, cudaMemcpyDeviceToHost, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  *scale = sc.scale;
  *good_steps = sc.good_steps;
  return 0;
}

int cuda_set_opt_state(cg_backend_t *b, const float *m, const float *v, float scale,
                       int64_t good_steps) {
  const size_t np = b->m->nparams;
  cg_scaler_t sc;
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  CG_CHECK_CUDA(cudaMemcpyAsync(&sc, b->d_scaler, sizeof sc, cudaMemcpyDeviceToHost, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  if (sc.enabled) { /* a checkpoint of another precision carries scale 1: keep ours then */
    if (scale > 0.0f) sc.scale = scale;
    sc.good_steps = (int)good_steps;
  }
  sc.found_inf = 0;
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_m, m, np * sizeof(float), cudaMemcpyHostToDevice, b->s_comp));
  if (b->d_v)
    CG_CHECK_CUDA(
        cudaMemcpyAsync(b->d_v, v, np * sizeof(float), cudaMemcpyHostToDevice, b->s_comp));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_scaler, &sc, sizeof sc, cudaMemcpyHostToDevice, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  return 0;
}

int cuda_upload(cg_backend_t *b, int slot, const cg_batch_t *batch) {
  const cg_model_t *m = b->m;
  CG_ASSERT(slot >= 0 && slot < CG_DEV_SLOTS);
  CG_ASSERT(batch->n == b->n && batch->h == m->height && batch->w == m->width &&
            batch->c == m->in_c && batch->n_cpu >= 0 && batch->n_cpu <= batch->n);
  CG_ASSERT((batch->n_cpu == 0 || batch->x != NULL) && batch->y != NULL && batch->weight != NULL);
  CG_ASSERT(batch->n_cpu == batch->n || batch->rgb != NULL);
  const size_t hw = (size_t)m->height * m->width, px = (size_t)b->n * hw;
  const size_t ncpu = (size_t)batch->n_cpu, ndev = (size_t)(batch->n - batch->n_cpu);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  CG_CHECK_CUDA(cudaStreamWaitEvent(b->s_h2d, b->ev_free[slot], 0));
  if (b->cfg.trace) CG_CHECK_CUDA(cudaEventRecord(b->ev_h2d_start[slot], b->s_h2d));
  /* The split: complete inputs of the CPU's samples (20 bytes a pixel), RGB8 of the rest (3). */
  if (ncpu)
    CG_CHECK_CUDA(cudaMemcpyAsync(b->d_x[slot], batch->x, ncpu * hw * m->in_c * sizeof(float),
                                  cudaMemcpyHostToDevice, b->s_h2d));
  if (ndev)
    CG_CHECK_CUDA(cudaMemcpyAsync(b->d_rgb[slot], batch->rgb + ncpu * hw * 3, ndev * hw * 3,
                                  cudaMemcpyHostToDevice, b->s_h2d));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_y[slot], batch->y, px, cudaMemcpyHostToDevice, b->s_h2d));
  CG_CHECK_CUDA(cudaMemcpyAsync(b->d_wt[slot], batch->weight, (size_t)b->n * sizeof(float),
                                cudaMemcpyHostToDevice, b->s_h2d));
  if (b->cfg.trace) CG_CHECK_CUDA(cudaEventRecord(b->ev_h2d_end[slot], b->s_h2d));
  CG_CHECK_CUDA(cudaEventRecord(b->ev_ready[slot], b->s_h2d));
  b->n_cpu[slot] = batch->n_cpu;
  b->pred_dst[slot] = batch->pred;
  b->metrics_dev[slot] = batch->metrics_on_device;
  b->h2d_bytes[slot] = (double)(ncpu * hw * m->in_c * sizeof(float) + ndev * hw * 3 + px +
                                (size_t)b->n * sizeof(float));
  return 0;
}

int cuda_upload_wait(cg_backend_t *b, int slot) {
  CG_ASSERT(slot >= 0 && slot < CG_DEV_SLOTS);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaEventSynchronize(b->ev_ready[slot]));
  return 0;
}

/* Common start of a step: in-flight bound, sequence slots, event waits. */
void begin_step(cg_backend_t *b, int slot, int train, int *q, int *dq) {
  CG_ASSERT(slot >= 0 && slot < CG_DEV_SLOTS);
  CG_ASSERT(b->seq_submitted - b->seq_fetched < CG_MAX_INFLIGHT);
  DEV_ENTRY(b); /* train_step, eval_step */
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  const int64_t seq = b->seq_submitted;
  *q = (int)(seq % kNQ);
  *dq = (int)(seq % kNDQ);
  meta_t *mt = &b->meta[*q];
  memset(mt, 0, sizeof *mt);
  mt->train = train;
  mt->mpi = train && b->cfg.gsync != NULL;
  mt->nccl = train && b->nccl != NULL;
  mt->comm_wait_ms = train ? 0.0 : -1.0;
  mt->metrics_dev = b->metrics_dev[slot];
  b->h2d_slot[*q] = slot;
  mt->pred_dst = b->pred_dst[slot] ? b->pred_dst[slot] : b->h_pred[*q];
  mt->h2d = b->h2d_bytes[slot];
  /* metrics on the device: the K x K counts (K >= 2) instead of the predicted mask */
  const double kk = b->nclass > 1 ? 8.0 * b->nclass * b->nclass : 0.0;
  mt->d2h = sizeof(result_t) + (mt->metrics_dev ? kk : (double)b->n * b->m->height * b->m->width);
  if (mt->nccl && cg_nccl_size(b->nccl) > 1) /* set here: a graph replay runs no host code */
    mt->bytes = (b->d_gbf16 ? 2.0 : 4.0) * (double)b->m->nparams;
  CG_CHECK_CUDA(cudaStreamWaitEvent(b->s_comp, b->ev_ready[slot], 0));
  /* The per-layer profile times eager steps with events around each op: a step whose launches
   * outpace the host would count the host's launch gaps as GPU time. Holding the stream for a
   * while lets the host enqueue the whole step first, so the events see only the kernels. */
  if (b->cfg.profile) cg_k_hold(kProfileHoldNs, b->s_comp);
  CG_CHECK_CUDA(cudaEventRecord(b->ev_start[*q], b->s_comp));
  prep_input(b, slot);
}

void end_step(cg_backend_t *b, int slot, int q, int dq) {
  device_metrics(b, slot, dq);
  CG_CHECK_CUDA(cudaEventRecord(b->ev_end[q], b->s_comp));
  if (b->cfg.profile && b->meta[q].train) prof_collect(b, q);
  CG_CHECK_CUDA(cudaEventRecord(b->ev_free[slot], b->s_comp));
  issue_results(b, q, dq);
  b->seq_submitted++;
}

int cuda_train_step(cg_backend_t *b, int slot, const cg_optim_t *opt) {
  CG_ASSERT(opt->t >= 1);
  int q, dq;
  begin_step(b, slot, 1, &q, &dq);
  /* This staging slot was last read by step seq - kNDQ, which has been fetched; a captured
   * graph reads it when it runs, so it is filled before the launch. */
  cg_step_params_t *hp = b->h_hp[dq];
  hp->lr = opt->lr;
  hp->beta1 = opt->beta1;
  hp->beta2 = opt->beta2;
  hp->eps = opt->eps;
  hp->weight_decay = opt->weight_decay;
  /* bias corrections in double, as the CPU reference */
  hp->bc1 = (float)(1.0 - pow((double)opt->beta1, (double)opt->t));
  hp->bc2 = (float)(1.0 - pow((double)opt->beta2, (double)opt->t));
  hp->ema_w = opt->ema_w;
  run_body(b, slot, dq, q, 0);
  end_step(b, slot, q, dq);
  b->train_steps++;
  return 0;
}

int cuda_accum_step(cg_backend_t *b, int slot) {
  CG_ASSERT(b->d_gacc != NULL); /* cfg.accum > 1 */
  int q, dq;
  begin_step(b, slot, 0, &q, &dq); /* no all-reduce, no optimizer: nothing skipped */
  b->meta[q].comm_wait_ms = 0.0;
  b->meta[q].micro = 1;
  run_body(b, slot, dq, q, 1);
  end_step(b, slot, q, dq);
  return 0;
}

int cuda_eval_step(cg_backend_t *b, int slot) {
  int q, dq;
  begin_step(b, slot, 0, &q, &dq);
  const int rc = forward(b, slot);
  CG_ASSERT(rc == 0);
  cg_kprof_enter(b->kp, b->kr_loss, b->s_comp);
  run_loss(b, slot, dq, 0);
  cg_kprof_leave(b->kp, b->s_comp);
  CG_CHECK_CUDA(scaler_as_is(b, dq)); /* no update */
  end_step(b, slot, q, dq);
  return 0;
}

/* Host time of a completed event (--trace-out). */
double ev_host(const cg_backend_t *b, cudaEvent_t ev) {
  float ms = 0;
  if (cudaEventElapsedTime(&ms, b->ev_ref, ev) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return b->ref_host + 1e-3 * ms;
}

/* The step's phases for --trace-out (cg_step_out_t.t_ready, t_bwd, t_opt): bucket-ready and
 * backward-start events on compute; backward ends where compute joins the all-reduce (NCCL),
 * where the gradients are staged (MPI), or at the last bucket (one GPU); AdamW runs from the
 * join to the step's end (which includes the little after it). */
void trace_phase_times(cg_backend_t *b, int q, int dqf, const meta_t *mt, cg_step_out_t *out) {
  const cg_buckets_t *bk = b->cfg.buckets;
  out->t_bwd[0] = ev_host(b, b->ev_bw0[dqf]);
  out->nready = 0;
  if (mt->micro) { /* backward to the end (its gradients kept: one small kernel); no AdamW */
    out->t_bwd[1] = out->t_compute[1];
    out->t_opt[0] = 1;
    out->t_opt[1] = 0;
    return;
  }
  for (int j = 0; bk && j < bk->n; j++) out->t_ready[out->nready++] = ev_host(b, b->ev_rd[dqf][j]);
  if (mt->nccl) {
    out->t_bwd[1] = ev_host(b, b->ev_xp_begin[dqf]);
    out->t_opt[0] = ev_host(b, b->ev_xp_end[dqf]);
  } else if (mt->mpi) {
    out->t_bwd[1] = ev_host(b, b->ev_bwd_end[q]);
    out->t_opt[0] = ev_host(b, b->ev_opt_begin[q]);
  } else {
    out->t_bwd[1] = out->t_opt[0] = out->nready ? out->t_ready[out->nready - 1] : -1;
  }
  out->t_opt[1] = out->t_compute[1];
}

/* Fills the stream-activity intervals of the fetched step q (after its result event). */
void trace_times(cg_backend_t *b, int q, cg_step_out_t *out) {
  const meta_t *mt = &b->meta[q];
  const int slot = b->h2d_slot[q], dqf = (int)(b->seq_fetched % kNDQ);
  out->t_h2d[0] = ev_host(b, b->ev_h2d_start[slot]);
  out->t_h2d[1] = ev_host(b, b->ev_h2d_end[slot]);
  out->t_compute[0] = ev_host(b, b->ev_start[q]);
  out->t_compute[1] = ev_host(b, b->ev_end[q]);
  out->t_d2h[0] = ev_host(b, b->ev_d2h_start[q]);
  out->t_d2h[1] = ev_host(b, b->ev_d2h_end[q]);
  out->ncomm = 0;
  if (mt->nccl) {
    const cg_buckets_t *bk = b->cfg.buckets;
    for (int j = 0; j < bk->n; j++) {
      out->t_comm[j][0] = ev_host(b, b->ev_cb[dqf][j][0]);
      out->t_comm[j][1] = ev_host(b, b->ev_cb[dqf][j][1]);
    }
    out->ncomm = bk->n;
  } else if (mt->mpi && b->mpi_t[q][0] > 0) {
    out->t_comm[0][0] = b->mpi_t[q][0];
    out->t_comm[0][1] = b->mpi_t[q][1];
    out->ncomm = 1;
  }
  trace_phase_times(b, q, dqf, mt, out);
}

int cuda_fetch(cg_backend_t *b, cg_step_out_t *out) {
  CG_ASSERT(b->seq_fetched < b->seq_submitted);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  const int q = (int)(b->seq_fetched % kNQ);
  CG_CHECK_CUDA(cudaEventSynchronize(b->ev_result[q]));
  const result_t *r = b->h_res[q];
  const meta_t *mt = &b->meta[q];
  memset(out, 0, sizeof *out);
  out->loss = r->loss;
  out->pred = mt->metrics_dev ? NULL : mt->pred_dst;
  out->h2d_bytes = mt->h2d;
  out->d2h_bytes = mt->d2h;
  if (mt->metrics_dev) {
    out->has_conf = 1;
    for (int k = 0; k < 4; k++) out->conf[k] = (int64_t)r->conf[k];
    if (b->nclass > 1) /* counts < 2^63: the same bits as int64 */
      out->confk = reinterpret_cast<const int64_t *>(b->h_confk[q]);
  }
  out->skipped = mt->train && r->after.skipped > r->before.skipped;
  out->grad_norm = mt->train && !mt->micro && b->d_gn ? r->gnorm : -1.0f;
  out->loss_scale = r->after.scale;
  float ms = 0.0f;
  CG_CHECK_CUDA(cudaEventElapsedTime(&ms, b->ev_start[q], b->ev_end[q]));
  double busy = ms;
  out->comm_wait_ms = mt->comm_wait_ms;
  if (mt->mpi) { /* the compute stream idled while the host reduced the gradients */
    float gap = 0.0f;
    CG_CHECK_CUDA(cudaEventElapsedTime(&gap, b->ev_bwd_end[q], b->ev_opt_begin[q]));
    busy -= gap;
  }
  if (mt->nccl) { /* compute waited for the comm stream between these two */
    const int dqf = (int)(b->seq_fetched % kNDQ);
    float gap = 0.0f;
    const cudaError_t rc = cudaEventElapsedTime(&gap, b->ev_xp_begin[dqf], b->ev_xp_end[dqf]);
    if (rc == cudaSuccess) {
      busy -= gap;
      out->comm_wait_ms = gap;
    } else { /* not measurable: reported absent, never invented */
      (void)cudaGetLastError();
      out->comm_wait_ms = -1.0;
    }
  }
  out->busy_ms = busy;
  out->grad_bytes_reduced = mt->bytes;
  if (b->cfg.trace) trace_times(b, q, out);
  b->seq_fetched++;
  return 0;
}

size_t cuda_mem_bytes(cg_backend_t *b) { return b->bytes; }

/* The head output of the last (eval) step, as fp32 on the host. The arena holds it until the
 * next step: an eval step writes nothing after its loss reads the logits. A head stored with a
 * pixel stride wider than its channels is compacted on the host. */
int cuda_get_logits(cg_backend_t *b, float *out) {
  CG_ASSERT(b->seq_submitted > 0 && b->seq_fetched == b->seq_submitted);
  CG_ASSERT(!b->meta[(b->seq_submitted - 1) % kNQ].train);
  DEV_ENTRY(b);
  CG_CHECK_CUDA(cudaSetDevice(b->dev));
  const int lt = b->m->logits_tensor;
  const cg_tensor_t *T = &b->m->tensors[lt];
  const int ld = b->plan.ld[lt], coff = b->plan.coff[lt];
  CG_ASSERT(ld >= T->c && coff + T->c <= ld);
  const size_t px = tensor_px(b, lt), n = px * (size_t)ld;
  const void *src = act_at(b, lt, b->plan.loss, CG_DP_R);
  if (b->dt != CG_DT_F32) {
    char err[256];
    if (!b->d_logits32) {
      if (dalloc_t(b, &b->d_logits32, n * sizeof(float), "fp32 logits", err, sizeof err)) {
        cg_log_warn("%s", err);
        return -1;
      }
      /* its zeroing ran on the legacy stream, which s_comp (non-blocking) does not wait for */
      CG_CHECK_CUDA(cudaDeviceSynchronize());
    }
    cg_k_cast_to_f32(b->dt, src, (int64_t)n, 1.0f, b->d_logits32, b->s_comp);
    src = b->d_logits32;
  }
  float *dst = ld == T->c ? out : static_cast<float *>(cg_malloc(n * sizeof(float), "logits"));
  CG_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, b->s_comp));
  CG_CHECK_CUDA(cudaStreamSynchronize(b->s_comp));
  if (dst != out) {
    for (size_t p = 0; p < px; p++)
      memcpy(out + p * T->c, dst + p * ld + coff, sizeof(float) * T->c);
    free(dst);
  }
  return 0;
}

/* Pinned (page-locked, portable) host memory for the loader's batch slots. */
void *cuda_host_alloc(size_t bytes) {
  void *p = NULL;
  if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  return p;
}

void cuda_host_free(void *p) {
  if (p) CG_CHECK_CUDA(cudaFreeHost(p));
}

}  // namespace

const cg_backend_ops_t cg_backend_cuda = {
    /* name */ "cuda",
    /* create */ cuda_create,
    /* destroy */ cuda_destroy,
    /* set_params */ cuda_set_params,
    /* get_params */ cuda_get_params,
    /* get_grads */ cuda_get_grads,
    /* get_opt_state */ cuda_get_opt_state,
    /* set_opt_state */ cuda_set_opt_state,
    /* upload */ cuda_upload,
    /* upload_wait */ cuda_upload_wait,
    /* train_step */ cuda_train_step,
    /* accum_step */ cuda_accum_step,
    /* eval_step */ cuda_eval_step,
    /* fetch */ cuda_fetch,
    /* mem_bytes */ cuda_mem_bytes,
    /* host_alloc */ cuda_host_alloc,
    /* host_free */ cuda_host_free,
    /* get_logits */ cuda_get_logits,
    /* get_ema */ cuda_get_ema,
    /* set_ema */ cuda_set_ema,
    /* swap_ema */ cuda_swap_ema,
};

int cg_cuda_usable(char *why, size_t len) {
  int n = 0;
  cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    if (why && len) snprintf(why, len, "%s", cudaGetErrorString(rc));
    return 0;
  }
  if (n < 1) {
    if (why && len) snprintf(why, len, "no CUDA device found");
    return 0;
  }
  return 1;
}

int cg_cuda_free_bytes(int device, size_t *bytes) {
  *bytes = 0;
  int ndev = 0, prev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || device < 0 || device >= ndev ||
      cudaGetDevice(&prev) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  size_t total = 0;
  const cudaError_t rc = cudaMemGetInfo(bytes, &total);
  (void)cudaSetDevice(prev);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return 0;
}
