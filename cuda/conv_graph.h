/* conv_graph.h: one convolution operation through cuDNN's graph (backend) API, for conv.cu.
 *
 * The legacy entry points (cudnnConvolutionForward and friends) reach only the engines behind
 * the eight legacy algorithm numbers; for the small-channel NHWC bf16 shapes of a UNet's top
 * levels none of those is fast. The graph API lists many more engine configurations (other
 * tile shapes, split-K, runtime-compiled kernels). conv.cu times the best legacy algorithm
 * against the graph candidates and keeps whichever is faster, so this path can only help.
 *
 * A cg_cgraph_t is one operation (forward, backward-data or backward-filter) on fixed shapes:
 * an operation graph with one node, its ranked engine configurations, and at most one
 * finalized execution plan. Tensors are in cuDNN's convolution terms (see conv.cu): "a" is the
 * convolution input (N, C_a, H_a, W_a), "b" its output (N, C_b, H_b, W_b), the filter
 * (C_b, C_a, k, k); all NHWC / KRSC, dense, element type dt, fp32 accumulation, beta 0 (the
 * output is overwritten).
 *
 * Errors: every function returns a cuDNN status (never aborts): a shape or engine cuDNN does
 * not support is a normal outcome here, and the caller falls back to the legacy algorithms. */
#ifndef CG_CUDA_CONV_GRAPH_H
#define CG_CUDA_CONV_GRAPH_H

#include <stdint.h>

#include "cuda_check.h"

typedef enum { CG_CGRAPH_FWD = 0, CG_CGRAPH_BWD_DATA = 1, CG_CGRAPH_BWD_FILTER = 2 } cg_cgraph_op_t;

typedef struct {
  cg_cgraph_op_t op;
  cudnnDataType_t dt;
  int64_t n, ca, ha, wa; /* the convolution input a */
  int64_t cb, hb, wb;    /* its output b */
  int64_t k, pad, stride;
  int64_t lda, ldb;      /* pixel strides of a and b in elements (0 = dense) */
  /* FWD only: 0 the plain convolution; 1 b = conv + bias; 2 b = max(conv + bias, 0), the sum
   * kept in fp32 until b is written. The bias is fp32 [cb], bias_align bytes aligned. */
  int fuse;
  int64_t bias_align;
  /* BWD_DATA only: 1 = da = dgrad(db, w) * (m > 0), the ReLU backward of the layer that made a
   * (m: that ReLU's output, shaped and strided like a, passed as the exec's aux operand). */
  int drelu;
} cg_cgraph_shape_t;

typedef struct cg_cgraph cg_cgraph_t;

/* Builds the operation graph and lists up to max_cand engine configurations in heuristic order
 * (mode A, then mode B's new ones, then the fallback list's new engines), leaving out the ones the rules forbid: with deterministic,
 * those cuDNN notes as non-deterministic; with strict_fp32 (fp32 without TF32), those using
 * tensor cores or down-converting inputs. *out is NULL unless the status is success; it is
 * caller-owned (cg_cgraph_destroy). */
cudnnStatus_t cg_cgraph_create(cudnnHandle_t h, const cg_cgraph_shape_t *shape, int deterministic,
                               int strict_fp32, int max_cand, cg_cgraph_t **out);
void cg_cgraph_destroy(cg_cgraph_t *g); /* NULL is a no-op */

/* Number of candidate engine configurations. */
int cg_cgraph_count(const cg_cgraph_t *g);

/* Appends variants of the first `top` heuristic candidates that are not runtime-compiled: each
 * of their engine's knobs (tile sizes, split-K slices, kernel configuration...) moved away from
 * the heuristic's choice one at a time, up to kSweepValues values per knob spread over its
 * range, leaving out the combinations cuDNN refuses and repeats; at most max_new in all. Only
 * once per graph (later calls add nothing), never with the deterministic rule (a knob may
 * change a reduction). The order depends only on the cuDNN version, device and shape, so a
 * candidate index stays valid for a cache. Returns how many were added. */
int cg_cgraph_sweep(cg_cgraph_t *g, int top, int max_new);

/* Finalizes the execution plan of candidate i (replacing any previous plan) and returns its
 * workspace size in bytes. May take long for runtime-compiled engines. */
cudnnStatus_t cg_cgraph_plan(cg_cgraph_t *g, int i, size_t *ws_bytes);

/* Sets the current plan aside (replacing one set aside before), so that later cg_cgraph_plan
 * calls do not destroy it; cg_cgraph_use_kept makes it current again without finalizing it a
 * second time, and returns its workspace size. */
void cg_cgraph_keep(cg_cgraph_t *g);
cudnnStatus_t cg_cgraph_use_kept(cg_cgraph_t *g, size_t *ws_bytes);

/* The plan set aside (cg_cgraph_keep) is held apart, and nothing is kept: a later search can
 * keep a faster one while the held plan stays finalized. cg_cgraph_use_held makes the held plan
 * current (to run it for a reference); cg_cgraph_release_held ends the hold: restore 1 makes
 * the held plan the kept one again (dropping whatever was kept since), 0 destroys it. */
void cg_cgraph_hold(cg_cgraph_t *g);
cudnnStatus_t cg_cgraph_use_held(cg_cgraph_t *g);
void cg_cgraph_release_held(cg_cgraph_t *g, int restore);
/* Forgets the kept plan (destroyed unless held). */
void cg_cgraph_drop_kept(cg_cgraph_t *g);
/* How many of the candidates came from the heuristics (the rest from cg_cgraph_sweep). */
int cg_cgraph_heuristic_count(const cg_cgraph_t *g);

/* Runs the current plan on stream s (set on the handle by the caller). Operands as in conv.cu:
 * FWD in0 = a, in1 = w, out = b; BWD_DATA in0 = db, in1 = w, out = da; BWD_FILTER in0 = a,
 * in1 = db, out = dw; bias: the fused forward's bias (fp32), or the ReLU output m of a drelu
 * backward-data (element type), else NULL. Variant packs are cached per
 * pointer set, so replays cost no set-up. */
cudnnStatus_t cg_cgraph_exec(cg_cgraph_t *g, const void *in0, const void *in1, void *out,
                             const void *bias, void *ws);

/* "eng <global index>" of the current plan, for logs. */
void cg_cgraph_describe(const cg_cgraph_t *g, char *buf, size_t len);

#endif
