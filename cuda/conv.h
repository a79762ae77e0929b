/* conv.h: the cuDNN convolution layers of the CUDA backend (3x3 / 1x1 convolutions and the 2x2
 * stride-2 transposed convolution of the UNet decoder), on NHWC tensors.
 *
 * A cg_conv_t is one layer shape: its cuDNN descriptors and, once selected, the algorithm and
 * workspace size of each operation it needs. A cg_conv_ctx_t holds what the shapes share: the
 * cuDNN handle (not owned), the determinism rule and the algorithm cache (in memory, and in a
 * small text file when asked, so later runs skip the search).
 *
 * Shapes are given in layer terms (tensors dense unless ldx / ldy say otherwise):
 *   CG_CONV_PLAIN: x n x h x w x cin -> y n x h x w x cout, kernel k (odd), pad k/2, stride 1;
 *                  weight [cout][k][k][cin] (cuDNN NHWC/KRSC filter K=cout, C=cin).
 *   CG_CONV_UP:    x n x h x w x cin -> y n x 2h x 2w x cout (k = 2);
 *                  weight [cin][2][2][cout], seen by cuDNN as the filter (K=cin, C=cout) of the
 *                  stride-2 convolution that maps y-space to x-space. The layer's forward is
 *                  that convolution's backward-data, its dx is the convolution's forward, and
 *                  its dW is the backward-filter with the roles of x and dy swapped.
 * Element type dt for x, y, w, dx, dy, dw; accumulation is always fp32 (bf16/fp16 with tensor
 * op math; fp32 with FMA only, unless tf32).
 *
 * Streams: every run function takes the stream it runs on and never synchronises. Selection
 * (cg_conv_select) runs the candidate algorithms on real buffers and synchronises its stream:
 * call it at set-up, never inside a CUDA-graph capture.
 *
 * Errors: create/select return 0, or -1 with a message. The run functions return the cuDNN
 * status instead of aborting, so that a failure inside a CUDA-graph capture can fall back to
 * eager execution; outside a capture, wrap them in CG_CHECK_CUDNN. Shape and argument misuse
 * is an assertion. */
#ifndef CG_CUDA_CONV_H
#define CG_CUDA_CONV_H

#include <stddef.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CG_CONV_PLAIN = 0, CG_CONV_UP = 1 } cg_conv_kind_t;

/* Operations a layer needs (bit mask), in layer terms. */
enum {
  CG_CONV_OP_FWD = 1,        /* y = op(x, w) */
  CG_CONV_OP_BWD_DATA = 2,   /* dx = op^T(dy, w), overwritten or accumulated */
  CG_CONV_OP_BWD_FILTER = 4, /* dw = grad_w(x, dy), overwritten */
  CG_CONV_OP_ALL = 7
};

typedef struct {
  cg_conv_kind_t kind;
  int n, h, w;     /* the layer input: n images of h x w pixels */
  int cin, cout;
  int k;           /* PLAIN: 1, 3, 5...; UP: 2 */
  cg_dtype_t dt;
  int tf32;        /* fp32 only: allow TF32 tensor cores */
  /* What follows the forward in the layer, 0 nothing, 1 + bias, 2 + bias + ReLU (fp32 bias
   * per output channel). cg_conv_select may then fuse it into the convolution (cg_conv_fused)
   * when that measures faster than the convolution plus cg_k_bias_act_fwd: cuDNN's fused
   * graph or our 3x3 kernel for a plain layer, our upconv kernel (upconv.h) for an upconv. */
  int bias_act;
  /* Pixel strides in elements (0 = dense): ldx of x and dx, ldy of y and dy. A tensor that is
   * one half of a concat buffer has the buffer's channel count as its pixel stride. */
  int ldx, ldy;
  /* PLAIN only: x is the output of a ReLU and dx may be masked by it in the same kernel
   * (cg_conv_bwd_data_drelu); cg_conv_select fuses when that measures faster. */
  int drelu;
  /* UP only: where y is dense, its concat's copy would add the bias (and the ReLU) for nothing
   * (the backend's bias_in_copy): fusing them into the upconv then saves no pass, and the fused
   * kernel must beat the upconv alone. */
  int bias_copy;
} cg_conv_shape_t;

typedef struct cg_conv_ctx cg_conv_ctx_t;
typedef struct cg_conv cg_conv_t;

/* Buffers for the algorithm search, in layer terms (device pointers, dense NHWC of the shape).
 * Outputs (y, dx, dw) are overwritten with junk. Members for operations not requested may be
 * NULL. */
typedef struct {
  const void *x, *w, *dy;
  void *y, *dx, *dw;
  const float *bias; /* the layer's bias (shape.bias_act), the one every run will use; or NULL */
} cg_conv_bufs_t;

/* handle: used for every call, owned by the caller, must outlive the context.
 * deterministic: only algorithms cuDNN reports as deterministic.
 * cache_path: algorithm cache file (read now if it exists, written by cg_conv_ctx_save), or
 * NULL; a missing or unreadable file is not an error. Never returns NULL. */
cg_conv_ctx_t *cg_conv_ctx_create(cudnnHandle_t handle, int deterministic, const char *cache_path);
void cg_conv_ctx_destroy(cg_conv_ctx_t *ctx); /* NULL is a no-op */
/* Which cuDNN interface may serve the operations (default AUTO, or the CG_CONV_API environment
 * variable: legacy | graph): AUTO times both and keeps the faster; LEGACY only cudnnFind's
 * algorithms; GRAPH only graph-API engines for the overwriting calls (an accumulating call
 * always takes the legacy algorithm). Affects later selections only. */
enum { CG_CONV_API_AUTO = 0, CG_CONV_API_LEGACY = 1, CG_CONV_API_GRAPH = 2 };
void cg_conv_ctx_set_api(cg_conv_ctx_t *ctx, int api);

/* Writes the cache file (atomically) if new algorithms were found. 0, or -1 with a message. */
int cg_conv_ctx_save(cg_conv_ctx_t *ctx, char *err, size_t errlen);

/* Descriptors for a shape and the operations in ops. 0, or -1 with a message (a shape cuDNN
 * rejects). *out is caller-owned: cg_conv_destroy. */
int cg_conv_create(const cg_conv_shape_t *shape, int ops, cg_conv_t **out, char *err,
                   size_t errlen);
void cg_conv_destroy(cg_conv_t *c); /* NULL is a no-op */

/* Largest workspace any algorithm of the requested operations asks for (bytes): an upper
 * bound for the search workspace. */
size_t cg_conv_search_ws_bytes(cg_conv_ctx_t *ctx, const cg_conv_t *c);

/* Chooses the algorithm of every requested operation: from the cache, or by timing the
 * candidates on bufs — cudnnFind*Ex's best legacy algorithm and the graph API's engine
 * configurations — and keeping the fastest that fits in ws_bytes of d_ws (deterministic ones
 * only if the context says so). Synchronises s. 0, or -1 with a message when nothing works for
 * some operation. */
int cg_conv_select(cg_conv_ctx_t *ctx, cg_conv_t *c, const cg_conv_bufs_t *bufs, void *d_ws,
                   size_t ws_bytes, cudaStream_t s, char *err, size_t errlen);

/* Workspace the selected algorithms need (max over the operations), bytes. An accumulating
 * cg_conv_bwd_data runs the legacy algorithm, whose workspace may be larger: it returns
 * CUDNN_STATUS_NOT_SUPPORTED when that does not fit in the ws_bytes it is given. */
size_t cg_conv_ws_bytes(const cg_conv_t *c);
/* The same over the layer operations in the mask ops only (the fused forward counts as
 * CG_CONV_OP_FWD, the dx fused with the ReLU backward as CG_CONV_OP_BWD_DATA). */
size_t cg_conv_op_ws_bytes(const cg_conv_t *c, int ops);

/* y = op(x, w) (y overwritten). */
cudnnStatus_t cg_conv_fwd(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                          const void *d_w, void *d_y, void *d_ws, size_t ws_bytes,
                          cudaStream_t s);
/* Whether the forward was fused with the bias (+ ReLU) of shape.bias_act: the layer's forward
 * is then cg_conv_fwd_bias_act alone. */
int cg_conv_fused(const cg_conv_t *c);
/* y = act(op(x, w) + bias), one kernel (cg_conv_fused only; bias as given at selection). */
cudnnStatus_t cg_conv_fwd_bias_act(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                   const void *d_w, const float *d_bias, void *d_y, void *d_ws,
                                   size_t ws_bytes, cudaStream_t s);

/* dx = op^T(dy, w), overwritten (accum 0) or added to (accum 1). */
cudnnStatus_t cg_conv_bwd_data(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_dy,
                               const void *d_w, void *d_dx, int accum, void *d_ws,
                               size_t ws_bytes, cudaStream_t s);
/* Whether the input gradient was fused with the ReLU backward of x (shape.drelu). */
int cg_conv_drelu_fused(const cg_conv_t *c);
/* dx = op^T(dy, w) * (x > 0), overwritten, one kernel (cg_conv_drelu_fused only). */
cudnnStatus_t cg_conv_bwd_data_drelu(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_dy,
                                     const void *d_w, const void *d_x, void *d_dx, void *d_ws,
                                     size_t ws_bytes, cudaStream_t s);

/* dw = dL/dw from x and dy (overwritten), element type dt. */
cudnnStatus_t cg_conv_bwd_filter(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                 const void *d_dy, void *d_dw, void *d_ws, size_t ws_bytes,
                                 cudaStream_t s);
/* Whether the chosen dW is our own kernel (wgrad.h, or upconv.h for an upconv), which can also
 * sum dy into the bias gradient in the same pass (cg_conv_bwd_filter_db). */
int cg_conv_dw_has_db(const cg_conv_t *c);
/* cg_conv_bwd_filter and db[co] = sum of dy over all pixels (fp32, overwritten), one kernel
 * (cg_conv_dw_has_db only; else CUDNN_STATUS_NOT_SUPPORTED). */
cudnnStatus_t cg_conv_bwd_filter_db(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                    const void *d_dy, void *d_dw, float *d_db, void *d_ws,
                                    size_t ws_bytes, cudaStream_t s);

/* One line describing the shape and the chosen algorithms (for logs). */
void cg_conv_describe(const cg_conv_t *c, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
