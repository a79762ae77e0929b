/* ref_layers.h: a naive double-precision reference of every layer of cpu_layers.h, of the loss,
 * and of the whole UNet of model.h. Written for obviousness, not speed: the gradient checks
 * difference it numerically, and GPU tests may compare against it.
 *
 * Views follow cpu_layers.h (NHWC, pixel stride ld >= c), with double elements. Outputs are
 * overwritten; nothing here allocates memory the caller must free. */
#ifndef CG_REF_LAYERS_H
#define CG_REF_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
  double *p;
  int n, h, w, c, ld;
} cg_ref_view_t;

/* y = relu?(conv_k(x) + bias), k = 3 or 1, stride 1, zero padding k/2; wt [cout][k][k][cin]. */
void cg_ref_conv_fwd(const cg_ref_view_t *x, const double *wt, const double *bias, int k, int relu,
                     const cg_ref_view_t *y);
/* y[i, 2a+u, 2b+v, co] = bias[co] + sum_ci x[i, a, b, ci] * wt[ci][u][v][co]. */
void cg_ref_upconv_fwd(const cg_ref_view_t *x, const double *wt, const double *bias,
                       const cg_ref_view_t *y);
/* The upconv's input gradient: dx[i, a, b, ci] = sum over u, v, co of
 * dy[i, 2a+u, 2b+v, co] * wt[ci][u][v][co]. */
void cg_ref_upconv_bwd_data(const cg_ref_view_t *dy, const double *wt, const cg_ref_view_t *dx);
/* The upconv's weight gradient: dw[ci][u][v][co] = sum over i, a, b of x[i, a, b, ci] *
 * dy[i, 2a+u, 2b+v, co]; and, unless db is NULL, db[co] = the sum of dy[., ., ., co]. */
void cg_ref_upconv_bwd_filter(const cg_ref_view_t *x, const cg_ref_view_t *dy, double *dw,
                              double *db);
/* The function of cuda/fprop.h in double, dense tensors (float inputs, as the GPU tests round
 * them): y (n h w x cout) from x (n h w x cin), the weight w ([cout][3][3][cin] forward,
 * [cin][3][3][cout] for dgrad: the layer's dx from its dy, flipped), bias, the mask m and the
 * old y (n h w x cout; used only with mask / accum), with the epilogue in fprop.h's order. */
typedef struct {
  int n, h, w, cin, cout;
  int dgrad, bias, relu, mask, accum;
} cg_ref_fprop_t;
void cg_ref_fprop(const cg_ref_fprop_t *t, const float *x, const float *w, const float *bias,
                  const float *m, const float *old, double *y);
/* The weight and bias gradient of a 3x3 pad-1 convolution in double, dense tensors (float
 * inputs, as the GPU tests round them): dw[co][3][3][ci] = sum over pixels of x (shifted by the
 * tap, zero outside) times dy; db[co] = the sum of dy. x n h w x ci_n, dy n h w x co_n. */
void cg_ref_conv3_wgrad(int n_img, int h, int w, int ci_n, int co_n, const float *x,
                        const float *dy, double *dw, double *db);
/* 2x2 stride-2 max pool. */
void cg_ref_maxpool_fwd(const cg_ref_view_t *x, const cg_ref_view_t *y);

/* sum_i weight[i] * (BCE_i + Dice_i) with BCE_i = mean over pixels of
 * -(y log p + (1-y) log(1-p)), Dice_i = 1 - (2 sum p y + 1) / (sum p + sum y + 1),
 * p = sigmoid(logit). Samples of weight 0 add nothing. per_sample[i] = BCE_i + Dice_i
 * (unweighted), optional. The textbook formula: fine for |logit| up to ~30. */
double cg_ref_loss(const double *logits, const uint8_t *mask, const double *weight, int n,
                   size_t hw, double *per_sample);

/* The whole network: forward through m->layers over the tensor views of m, then the loss.
 * params: m->nparams doubles in the flat layout of model.h; x: n x H x W x in_c (dense NHWC);
 * y: n x H x W masks; weight: n. Allocates and frees its own activations. */
double cg_ref_net_loss(const cg_model_t *m, const double *params, int n, const double *x,
                       const uint8_t *y, const double *weight);

#endif
