/* cpu_layers.h: the CPU reference kernels, fp32, NHWC. Every GPU kernel is tested against
 * these, and the CPU backend trains with them.
 *
 * A view is n images of h x w pixels with c channels; consecutive pixels are ld floats apart
 * (ld >= c), so a view may be a channel slice of a wider buffer (the concat buffers of
 * model.h). Pixel (i, y, x) channel k lives at p[((i*h + y)*w + x)*ld + k].
 *
 * Threading: the kernels use OpenMP (and OpenBLAS) with the calling thread's OpenMP thread
 * count; the caller sets it (omp_set_num_threads) to the cores it owns. Results do not
 * depend on the thread count.
 *
 * Scratch memory comes from a cg_cpu_ws_t that grows as needed and is owned by the caller.
 * Gradient outputs dw/db are overwritten (never accumulated). dx is overwritten, or added to
 * when accum_dx is 1. dy may be overwritten by a backward kernel (it is consumed). */
#ifndef CG_CPU_LAYERS_H
#define CG_CPU_LAYERS_H

#include <math.h> /* pow: cg_focal_factor */
#include <stddef.h>
#include <stdint.h>

typedef struct {
  float *p;
  int n, h, w, c, ld;
} cg_view_t;

typedef struct {
  float *buf;
  size_t cap; /* floats */
} cg_cpu_ws_t;

/* Returns a scratch area of at least n floats (contents undefined); fatal on OOM. */
float *cg_cpu_ws_get(cg_cpu_ws_t *ws, size_t n);
void cg_cpu_ws_free(cg_cpu_ws_t *ws);

/* C (m x n, ldc) = alpha * op(A) op(B) + beta * C, row-major; OpenBLAS or the built-in GEMM. */
void cg_cpu_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Convolution, kernel k (3 or 1), stride 1, zero padding k/2, same spatial size.
 * wt: [cout][k][k][cin], bias: [cout]. y = relu?(conv(x) + bias). y->c = cout, x->c = cin. */
void cg_cpu_conv_fwd(const cg_view_t *x, const float *wt, const float *bias, int k, int relu,
                     const cg_view_t *y, cg_cpu_ws_t *ws);
/* Backward of the above. y is the forward output (needed for the ReLU mask when relu).
 * dx may be NULL (no input gradient). */
void cg_cpu_conv_bwd(const cg_view_t *x, const float *wt, const cg_view_t *y, const cg_view_t *dy,
                     int k, int relu, const cg_view_t *dx, int accum_dx, float *dw, float *db,
                     cg_cpu_ws_t *ws);

/* 2x2 stride-2 transposed convolution: y is 2h x 2w.
 * y[i, 2a+u, 2b+v, co] = bias[co] + sum_ci x[i, a, b, ci] * wt[ci][u][v][co]. */
void cg_cpu_upconv_fwd(const cg_view_t *x, const float *wt, const float *bias, const cg_view_t *y,
                       cg_cpu_ws_t *ws);
void cg_cpu_upconv_bwd(const cg_view_t *x, const float *wt, const cg_view_t *dy,
                       const cg_view_t *dx, int accum_dx, float *dw, float *db, cg_cpu_ws_t *ws);

/* 2x2 stride-2 max pool: y is h/2 x w/2. Backward routes each gradient to the first maximum
 * of its window in scan order (top-left, top-right, bottom-left, bottom-right). */
void cg_cpu_maxpool_fwd(const cg_view_t *x, const cg_view_t *y);
void cg_cpu_maxpool_bwd(const cg_view_t *x, const cg_view_t *y, const cg_view_t *dy,
                        const cg_view_t *dx, int accum_dx);

/* The loss's options, `lo` of the functions below; lo NULL = {1, NULL, 0}, the reference loss.
 *  dice_w  the Dice term's weight (--dice-weight): 1 = the reference loss, 0 = CE/BCE alone;
 *  cw      the class weights (--class-weights, --pos-weight): with K >= 2 classes, K weights of
 *          the cross-entropy terms, torch.nn.CrossEntropyLoss's weight= (each sample's CE is
 *          sum_V w[y_i] CE_i / sum_V w[y_i], 0 when that sum is 0); with K = 1, one: BCE's
 *          pos_weight, torch.nn.BCEWithLogitsLoss's (a foreground pixel's BCE times it, the
 *          mean still over the pixels). NULL = none (all 1): bitwise the unweighted loss;
 *  smooth  K >= 2: label smoothing eps in [0, 1) (--label-smoothing), CrossEntropyLoss's
 *          label_smoothing=: a pixel's CE is (1 - eps) w_y (-log p_y) + eps/K sum_c w_c
 *          (-log p_c), over the same divisor; 0 = none, bitwise;
 *  focal   the focal loss's gamma >= 0 (--focal-gamma): each pixel's CE (BCE) term times
 *          (1 - p_t)^gamma, p_t the probability of its true class (binary: sigmoid p for the
 *          foreground, 1 - p for the background), torchvision.ops.sigmoid_focal_loss's factor;
 *          the class weight multiplies it and the divisor stays the same; not with smooth;
 *          0 = none, bitwise;
 *  ohem    online hard example mining's threshold in (0, 1] (--ohem-thresh), 0 = none,
 *          bitwise: per sample, only the cross-entropy terms of its kept pixels count, and the
 *          mean is over them (the weighted mean with cw). A valid pixel is kept when its key
 *          (float)p_t (cg_cpu_ohem_thr) is below the sample's threshold max(ohem, v), v the key
 *          of rank ohem_min_kept (0-based) among the sample's valid pixels in increasing order:
 *          the pixels predicted below ohem, and at least the ohem_min_kept hardest (fewer only
 *          where keys tie at v); every valid pixel when ohem_min_kept >= their count. HRNet's
 *          OhemCrossEntropy per sample (mmsegmentation's OHEMPixelSampler, which keeps
 *          min_kept per image of the batch, chosen over the batch, divides by every pixel);
 *          the selection is a constant of the gradient.
 * The Dice term is neither weighted, smoothed, focal nor mined. */
typedef struct {
  float dice_w;
  const float *cw;
  float smooth;
  float focal;
  float ohem;
  int64_t ohem_min_kept;
} cg_loss_opt_t;

/* The OHEM key of a valid pixel, (float)p_t with p_t in double: binary the sigmoid p
 * (foreground) or 1 - p, from e = exp(-|z|); K >= 2 the softmax's p_y = exp(z_y - max) * (1 /
 * sum_c exp(z_c - max)). kernels_loss.cu computes the same expressions. */
float cg_cpu_ohem_key(const float *z, int K, int y);
/* The OHEM threshold of one sample of hw pixels (lo->ohem > 0): max((float)lo->ohem, v) as
 * cg_loss_opt_t says, +inf when lo->ohem_min_kept >= the valid pixels (all kept). keys: hw
 * scratch words. Exact, by a 4-pass radix select of the keys' bits (as the GPU does). */
float cg_cpu_ohem_thr(const float *z, const uint8_t *y, size_t hw, int K, int ignore,
                      const cg_loss_opt_t *lo, uint32_t *keys);
/* Its select: max(thresh, the key of rank min_kept among the nv key bits), +inf when min_kept
 * >= nv (the GPU tests take it over the device's own keys). */
float cg_cpu_ohem_select(const uint32_t *keys, size_t nv, float thresh, int64_t min_kept);

/* The focal factor of a pixel's cross-entropy term and its gradient (gamma > 0), from q = p_t,
 * omq = 1 - q (computed without cancellation) and ce = -log q: the value is (1 - q)^g ce, and
 * with A = (1 - q)^g (1 - q + g q ce) (cg_focal_grad_a) its derivative by the logits is
 *   binary    -A for a foreground pixel, +A for a background one;
 *   K classes -A for the true class y, A p_c / (1 - p_y) for another class c (0 when 1 - p_y is
 *             0: then every such p_c is 0).
 * That is (p_c - [y = c]) (1 - q)^(g - 1) (1 - q + g q ce), written without the power
 * g - 1, which overflows for a small g at 1 - q near the smallest double. kernels_loss.cu has
 * the same expressions. */
static inline double cg_focal_factor(double omq, double gamma) { return pow(omq, gamma); }
static inline double cg_focal_grad_a(double q, double omq, double ce, double gamma) {
  return pow(omq, gamma) * (omq + gamma * q * ce);
}

/* BCE-with-logits + soft Dice over n samples of hw pixels (logits contiguous, one channel).
 * Returns sum_i weight[i] * (mean_px BCE_i + dice_w * Dice_i), computed in double (lo: dice_w
 * and the pos_weight cw above). If dlogits is not NULL it receives d(that sum)/d(logits),
 * multiplied by grad_scale (the fp16 loss scale, 1 for the CPU backend). Samples with weight 0
 * get zero gradient. per_sample (n doubles) optional. */
double cg_cpu_loss(const float *logits, const uint8_t *mask, const float *weight, int n, size_t hw,
                   float grad_scale, const cg_loss_opt_t *lo, float *dlogits, double *per_sample);

/* K-class softmax cross-entropy + soft Dice (K >= 1; see docs/ARCHITECTURE.md), in double.
 * logits NHWC: n samples x hw pixels x K channels. Per sample s, V_s = its pixels whose mask is
 * not `ignore` (every pixel when ignore < 0), p = softmax of a pixel's K logits:
 *   CE_s   = (1/max(|V_s|,1)) sum_{i in V_s} -log p_{i,y_i}
 *            (class weights cw and smoothing: as cg_loss_opt_t says)
 *   Dice_s = 1 - (1/K) sum_c (2 sum_V p_ic [y_i=c] + 1) / (sum_V p_ic + sum_V [y_i=c] + 1)
 * Returns sum_s weight[s] (CE_s + dice_w Dice_s) (lo: dice_w, cw, smooth). dlogits (optional)
 * = d(return)/d(logits) * grad_scale, zero for ignore pixels and weight-0 samples. K = 1: the binary loss (BCE + Dice,
 * sigmoid) over V_s; with ignore < 0 exactly cg_cpu_loss. per_sample (n doubles) optional. */
double cg_cpu_loss_k(const float *logits, const uint8_t *mask, const float *weight, int n,
                     size_t hw, int K, int ignore, float grad_scale, const cg_loss_opt_t *lo,
                     float *dlogits, double *per_sample);

/* The class of a pixel from its K logits z: K = 1, logit > 0; K >= 2, the first of the largest
 * (what every step's predicted mask, predict and validation take). */
static inline uint8_t cg_cpu_class_of(const float *z, int K) {
  if (K == 1) return z[0] > 0.0f;
  int best = 0;
  for (int c = 1; c < K; c++)
    if (z[c] > z[best]) best = c;
  return (uint8_t)best;
}

/* The sums cg_cpu_loss_k's per-sample value is made of, added a run of pixels at a time (a
 * whole image row by row: --val-mode whole; lo->ohem is not applied here: validation scores
 * every pixel): ce the CE (K = 1: BCE) sum, class-weighted by lo->cw, sce (lo->smooth > 0)
 * the sum of sum_c w_c (-log p_c), nv the CE mean's divisor (|V|; K >= 2 with cw:
 * sum_V cw[y]), and per class c psum the sum of p_c, inter of p_c [y=c], gsum
 * of [y=c] (K = 1: the foreground's sigmoid p and y in 0/1). Zero it to start. */
typedef struct {
  double ce, sce, nv, psum[256], inter[256], gsum[256];
} cg_loss_sums_t;
void cg_cpu_loss_sums_add(cg_loss_sums_t *s, const float *logits, const uint8_t *mask, size_t n,
                          int K, int ignore, const cg_loss_opt_t *lo);
/* CE_s + dice_w Dice_s of the sums, as cg_cpu_loss_k gives a sample of those pixels (same
 * bits). */
double cg_cpu_loss_sums_value(const cg_loss_sums_t *s, int K, const cg_loss_opt_t *lo);

/* AdamW (PyTorch semantics, decoupled weight decay applied to every parameter):
 *   p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * over n elements. g is multiplied by grad_mul first (1 / loss scale). */
void cg_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t t, float grad_mul);

/* SGD (torch.optim.SGD with dampening 0, in its order of operations), per element:
 *   d = g*grad_mul + weight_decay*p      (L2 weight decay, every parameter)
 *   buf = momentum*buf + d               (buf starts at 0: the first step's buf is d, as
 *                                         PyTorch's clone of d_p)
 *   d = nesterov ? d + momentum*buf : buf
 *   p = p - lr*d
 * momentum 0 without nesterov is plain SGD (buf = d). */
void cg_cpu_sgd(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                int nesterov, float weight_decay, float grad_mul);

/* The exponential moving average of the weights (--ema-decay), per element as torch.lerp(e, p, w)
 * (torch.optim.swa_utils.get_ema_multi_avg_fn's update, w = 1 - decay), with its CPU kernel's
 * fused multiply-adds (fmaf: one rounding):
 *   e = w < 0.5 ? e + w*(p - e) : p - (p - e)*(1 - w)
 * w = 1 copies p (AveragedModel's first update), whatever e holds. */
void cg_cpu_ema(float *e, const float *p, size_t n, float w);

/* Gradient-norm clipping (--clip-grad-norm), as torch.nn.utils.clip_grad_norm_. */
enum { CG_NORM_CHUNK = 16384 }; /* elements per partial sum of cg_cpu_grad_norm */

/* The L2 norm of g (n floats), times mul: squares summed in double, per CG_NORM_CHUNK chunk in
 * parallel, the chunk sums added in order into part (ceil(n / CG_NORM_CHUNK) doubles of
 * scratch), so the result does not depend on the thread count. */
double cg_cpu_grad_norm(const float *g, size_t n, float mul, double *part);

#endif
