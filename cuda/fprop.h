/* fprop.h: a 3x3 convolution kernel of our own (forward, and the input gradient as a forward
 * over dy with the weights transposed and flipped) for the UNet's full- and half-resolution
 * layers (32-128 pixels wide and more, 16-128 channels), where cuDNN's engines run at 2.5-4.5x
 * their memory floor and none writes a strided half of a concat buffer at 256x256.
 *
 * The operation (cross-correlation, pad 1, stride 1, NHWC):
 *   acc[n][y][x][co] = sum over r, s, ci of x[n][y + r - 1][x + s - 1][ci] * wk(co, r, s, ci)
 * with x outside the image read as 0, where the weight w is the layer's KRSC filter and
 *   forward (dgrad 0): wk(co, r, s, ci) = w[co][r][s][ci],           w is [cout][3][3][cin];
 *   dgrad 1:           wk(co, r, s, ci) = w[ci][2 - r][2 - s][co],   w is [cin][3][3][cout]
 * (the layer's dx from its dy: the kernel's x is the layer's dy, its y the layer's dx; its cin
 * is the layer's cout). Then, in this order, each optional: v = acc + bias[co] (fp32);
 * v = max(v, 0); v = v if m[n][y][x][co] > 0 else 0 (the ReLU backward of the layer before,
 * m its output); v = old y + v; y = v rounded once to the element type.
 * Every output element is one thread's fixed-order sum: bitwise reproducible.
 * Pixel strides are given (ldx >= cin, ldy and ldm >= cout, elements) so that a half of a
 * concat buffer can be read or written in place; only the cout channels of each y pixel are
 * written (and read, with accum), only the cin of each x pixel read.
 *
 * Contract: element type bf16 or fp16 (tensor cores, fp32 accumulation). Launchers take the
 * stream they run on, never synchronise, and return the launch status instead of aborting (the
 * caller times this kernel against cuDNN and may reject it). No scratch memory. */
#ifndef CG_CUDA_FPROP_H
#define CG_CUDA_FPROP_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  cg_dtype_t dt;
  int n, h, w;            /* images and their size (the same for x and y) */
  int cin, cout;          /* channels of the kernel's x and y */
  int dgrad;              /* 0 forward, 1 input gradient (above) */
  int bias, relu, mask, accum; /* the epilogue steps (above), each 0 or 1 */
  int64_t ldx, ldy, ldm;  /* pixel strides of x, y, m, elements */
  /* pixels a warp computes, in m-tiles of 16: 2 (0 means 2) or 4 (w a multiple of 64, cin up
   * to 64, cout up to 32: the weights' shared-memory reads serve twice the pixels, with half
   * the warps). A
   * speed choice only: each output is the same thread-order sum either way, bit for bit. */
  int mt;
} cg_fprop_shape_t;

/* 1 when the kernel handles the shape (and the alignment the pointers will have: x, y and m
 * 16-byte aligned, w to its element), else 0. Handled: dt bf16 or fp16; w a multiple of 32 up
 * to 256 (one block row of w pixels, w / (16 mt) warps; mt above); cin 16, 32, 64 or 128, or
 * 8 for the forward; cout 16, 32 or 64; ldx, ldy, ldm multiples of 8, ldx >= cin, ldy >= cout,
 * ldm >= cout (with mask); n * h up to 2^30; the block's shared memory (4 rows of x, all of
 * w) within the GPU's opt-in limit (227 KB: 256 wide x 64 channels in, 128 wide x 128 in
 * with 32 out). cg_fprop_run returns cudaErrorInvalidValue for anything else, or for
 * misaligned pointers. */
int cg_fprop_supported(const cg_fprop_shape_t *s);

/* One line on how the kernel runs the shape (for logs), or "fprop: unsupported". */
void cg_fprop_describe(const cg_fprop_shape_t *s, char *buf, size_t len);

/* y as above (d_bias with bias, d_m with mask; else NULL). x and y must not overlap, nor m
 * and y unless m is y itself read before it is written (never: use accum for that). One wave
 * of blocks, each a run of rows; the environment variable CG_FPROP_MAX_RUNS=N caps their number
 * (tests: few blocks of many rows each). */
cudaError_t cg_fprop_run(const cg_fprop_shape_t *s, const void *d_x, const void *d_w,
                         const float *d_bias, const void *d_m, void *d_y, cudaStream_t stream);

/* The same function, computed naively (one thread per output element, fp32 sums over taps and
 * channels in order): slow, simple, independent of the fast kernel's tiling; any shape with
 * cin, cout >= 1 and the strides above. For checking the fast kernel where cuDNN has nothing
 * to compare with. */
cudaError_t cg_fprop_reference(const cg_fprop_shape_t *s, const void *d_x, const void *d_w,
                               const float *d_bias, const void *d_m, void *d_y,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
