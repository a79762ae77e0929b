/* upconv.h: the UNet decoder's 2x2 stride-2 transposed convolution (the "upconv") as kernels of
 * our own: forward, input gradient and weight gradient (with the bias gradient), each reading
 * and writing strided tensors, so that the upsampled half of a concat buffer can be written
 * and read in place. cuDNN has no engine that writes the 256x256 half in place (measured on an
 * H200, cuDNN 9.19), which forced a concat copy and its split, 0.27 ms a step.
 *
 * The operation, NHWC, weight w [cin][2][2][cout] (cuDNN's filter of the transposed
 * convolution, as conv.h's CG_CONV_UP), x n x h x w x cin, y n x 2h x 2w x cout:
 *   y[n][2i + a][2j + b][co] = sum over ci of x[n][i][j][ci] * w[ci][a][b][co]
 * then, each optional: + bias[co] (fp32), max(., 0). That is one matrix product per input
 * pixel m = (n, i, j): Y[m][(a, b, co)] = X[m][ci] W[ci][(a, b, co)], with w seen as a
 * cin x 4cout matrix. So are its gradients:
 *   dgrad: dx[m][ci] = sum over (a, b, co) of dy[n][2i + a][2j + b][co] * w[ci][a][b][co]
 *          (overwritten, or added to the old dx with accum);
 *   wgrad: dw[ci][a][b][co] = sum over m of x[m][ci] * dy[n][2i + a][2j + b][co], and with a
 *          db pointer db[co] = sum over every pixel of dy (fp32).
 * Tensor cores (wmma, bf16 / fp16 in, fp32 sums), one rounding to the element type per output.
 * The sums of the forward and the input gradient are one warp's, of the weight gradient a
 * fixed-order reduction of per-block partial sums: every result is bitwise reproducible on a
 * given GPU.
 *
 * Contract: launchers take the stream they run on, never synchronise, and return the launch
 * status instead of aborting (conv.cu times them against cuDNN and may reject them). */
#ifndef CG_CUDA_UPCONV_H
#define CG_CUDA_UPCONV_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CG_UPCONV_FWD = 0, CG_UPCONV_DGRAD = 1, CG_UPCONV_WGRAD = 2 } cg_upconv_op_t;

typedef struct {
  cg_dtype_t dt;
  int op;                /* cg_upconv_op_t */
  int n, h, w;           /* the input x: n images of h x w pixels (y has 2h x 2w) */
  int cin, cout;
  int bias, relu;        /* forward only: the epilogue steps above, each 0 or 1 */
  int accum;             /* input gradient only: dx += the sum */
  int64_t ldx, ldy;      /* pixel strides (elements) of x and dx, of y and dy */
} cg_upconv_shape_t;

/* 1 when the kernels handle the shape: dt bf16 or fp16; cin 16, 32, 64 or 128; cout 16, 32 or
 * 64; ldx >= cin and ldy >= cout, multiples of 8; n * h * w below 2^31; for the weight gradient
 * cin * cout >= 512 as well (16 -> 16 is refused). Pointers: x, y, dx, dy 16-byte aligned;
 * w, dw 2-byte; bias, db 4. And the block's shared memory within the GPU's opt-in limit (asked
 * of the current device; 227 KB on an H100/H200 takes every shape above, less may refuse the
 * 128-channel ones). cg_upconv_run returns cudaErrorInvalidValue for anything else. */
int cg_upconv_supported(const cg_upconv_shape_t *s);

/* One line on how the kernel runs the shape (for logs), or "upconv: unsupported". */
void cg_upconv_describe(const cg_upconv_shape_t *s, char *buf, size_t len);

/* Scratch the weight gradient needs (fp32 partial sums per block; 0 for the others), bytes. It
 * depends on the GPU (its SM count): ask on the device that runs it. */
size_t cg_upconv_work_bytes(const cg_upconv_shape_t *s);

/* Runs s->op:
 *   FWD:   a = x, b = w, out = y (bias: the fp32 bias with s->bias, else NULL);
 *   DGRAD: a = dy, b = w, out = dx;
 *   WGRAD: a = x, b = dy, out = dw (element type dt), db = the fp32 bias gradient or NULL,
 *          work = work_bytes >= cg_upconv_work_bytes(s) bytes of device memory, 256-byte
 *          aligned (less: cudaErrorInvalidValue; the other operations ignore work).
 * out must not overlap a or b. Only the channels the shape names are read or written in a
 * strided tensor. Blocks are one wave; the environment variable CG_UPCONV_MAX_BLOCKS=N caps
 * their number (tests: each block then walks many tiles). */
cudaError_t cg_upconv_run(const cg_upconv_shape_t *s, const void *a, const void *b,
                          const float *bias, void *out, float *db, void *work,
                          size_t work_bytes, cudaStream_t stream);

/* The same function computed naively (one thread per output element, fp32 sums in order):
 * slow, simple, independent of the fast kernels' tiling, any cin, cout >= 1 and strides
 * >= the channels; no work memory. For checking them where cuDNN has nothing to compare with
 * (a strided concat half it refuses). */
cudaError_t cg_upconv_reference(const cg_upconv_shape_t *s, const void *a, const void *b,
                                const float *bias, void *out, float *db, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
