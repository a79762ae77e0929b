/* wgrad.h: a weight-gradient kernel of our own for the 3x3 convolutions with few channels at the
 * UNet's top levels (256x256 and 128x128 with 32-128 channels), where cuDNN's engines run at
 * 100-150 TFLOP/s, several times their memory floor.
 *
 * The operation (cross-correlation, pad 1, stride 1, NHWC, the KRSC filter of conv.h):
 *   dw[co][r][s][ci] = sum over n, y, x of dy[n][y][x][co] * x[n][y + r - 1][x + s - 1][ci]
 * with x outside the image read as 0, and optionally the bias gradient from the same reads of
 * dy:  db[co] = sum over n, y, x of dy[n][y][x][co].
 * Pixel strides are given (ldx >= cin, lddy >= cout, in elements) so that a half of a concat
 * buffer can be read in place.
 *
 * Contract: element type bf16 or fp16 (tensor cores, fp32 accumulation); the sums run in a fixed
 * order that depends only on the shape (no float atomics): bitwise reproducible. dw is written
 * in the element type (like cuDNN's), db in fp32. Launchers take the stream they run on, never
 * synchronise, and return the launch status instead of aborting (the caller times this kernel
 * against cuDNN and may reject it). d_work: cg_wgrad_work_bytes bytes of scratch, 256-byte
 * aligned, contents need no initialisation. */
#ifndef CG_CUDA_WGRAD_H
#define CG_CUDA_WGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  cg_dtype_t dt;
  int n, h, w;     /* images and their size (the same for x and dy) */
  int cin, cout;
  int k;           /* 3 (pad 1, stride 1) */
  int64_t ldx, lddy; /* pixel strides of x and dy, elements */
} cg_wgrad_shape_t;

/* 1 when the kernel handles the shape (and the alignment the pointers will have: x and dy
 * 16-byte aligned, ldx and lddy multiples of 8), else 0. Handled: dt bf16 or fp16, k 3,
 * cin 8, 16 or a multiple of 32, cout a multiple of 32, ldx >= cin and lddy >= cout both
 * multiples of 8, n * h <= 2^30, and w up to what one block's shared memory holds (a few
 * hundred pixels: 448 or more). Any n, h, w >= 1 otherwise (w need not be a multiple of 16).
 * cg_wgrad_run returns cudaErrorInvalidValue for anything else, or for x / dy / d_work not
 * 16-byte aligned. cg_wgrad_run calls cudaFuncSetAttribute (the kernel's shared-memory limit)
 * before each launch. */
int cg_wgrad_supported(const cg_wgrad_shape_t *s);

/* Scratch bytes for the shape. */
size_t cg_wgrad_work_bytes(const cg_wgrad_shape_t *s);

/* One line on how the kernel tiles the shape (for logs), or "wgrad: unsupported". */
void cg_wgrad_describe(const cg_wgrad_shape_t *s, char *buf, size_t len);

/* dw (dense KRSC, element type dt) and, if d_db is not NULL, db (fp32, cout values), both
 * overwritten. */
cudaError_t cg_wgrad_run(const cg_wgrad_shape_t *s, const void *d_x, const void *d_dy, void *d_dw,
                         float *d_db, void *d_work, cudaStream_t stream);

/* dw only, computed naively (one block per dw element, a fixed-order fp32 sum): slow and
 * simple, independent of the fast kernel's tiling; any shape with k 3, cin, cout >= 1 and the
 * strides above. For checking the fast kernel where cuDNN has nothing to compare with. */
cudaError_t cg_wgrad_reference(const cg_wgrad_shape_t *s, const void *d_x, const void *d_dy,
                               void *d_dw, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
