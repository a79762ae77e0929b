/* kernels_loss.cu: BCE-with-logits + soft Dice over n samples of hw pixels (see kernels.h and
 * cg_cpu_loss in src/model/cpu_layers.h, whose double-precision arithmetic this file mirrors), and
 * the test-only fault that makes a step's loss and loss gradient NaN.
 *
 * Dice couples every pixel of a sample through three sums, so the loss is three kernels:
 *  1. loss_partial: block (chunk j, sample i) reduces a fixed chunk of the sample's pixels to
 *     (sum p*y, sum p, sum y, sum BCE) in double, through a fixed shared-memory tree, into
 *     partial[i][j][4]; it also writes the predicted mask, since it reads the logits anyway.
 *  2. loss_finalize (one block): sums each sample's chunks in chunk order, and the weighted
 *     per-sample losses in sample order, into the double loss.
 *  3. loss_grad: the per-pixel gradient from the per-sample sums, times weight and loss scale.
 * The chunking is a function of hw only, so the loss is bitwise reproducible. The per-pixel
 * terms are computed in double like the CPU reference: the kernel is memory-bound (3 bytes a
 * pixel), so the fp64 math costs little, and the GPU loss then matches the CPU's to rounding.
 *
 * OHEM (online hard example mining, cg_loss_opt_t.ohem; the end of the file): cg_k_ohem_thr
 * finds each sample's threshold, and the loss kernels' OHEM variants (template flag OHEM) keep a
 * pixel's cross-entropy term, and count it in the mean's divisor, only when its key (float)p_t
 * is below it; the Dice sums still take every valid pixel. The keys are computed by the same
 * device functions in all three places (so the kernels agree on every pixel), by the expressions
 * of cg_cpu_ohem_key: the CPU's keys, or 1 ulp from them where the device's exp rounds
 * otherwise than glibc's.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "dtype.cuh"
#include "kernels.h"
#include "launch.h"

#ifdef __USE_FAST_MATH__ /* its flush-to-zero and approximate exp would part from the CPU's */
#error "kernels_loss.cu follows the CPU's double arithmetic: build it without -use_fast_math"
#endif

namespace {

constexpr int kBlock = 256;        /* power of two: the reduction tree halves it */
constexpr int kMaxChunks = 64;     /* per sample */
constexpr int64_t kChunkPix = 4096;

/* The focal loss (gamma > 0): a pixel's CE/BCE term times (1 - q)^gamma, q = p_t, omq = 1 - q
 * without cancellation; its gradient from A of cg_focal_grad_a (src/model/cpu_layers.h), the
 * same expressions. */
__device__ __forceinline__ double focal_factor(double omq, double gamma) {
  return pow(omq, gamma);
}
__device__ __forceinline__ double focal_grad_a(double q, double omq, double ce, double gamma) {
  return pow(omq, gamma) * (omq + gamma * q * ce);
}

/* Binary: the sigmoid's 1 - p from e = exp(-|z|), without cancellation. */
__device__ __forceinline__ double sig_om(double z, double e) {
  return z >= 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
}

/* Binary: 1 - q and q for a pixel of mask y from the sigmoid p and e = exp(-|z|). */
__device__ __forceinline__ void focal_q(double z, double y, double e, double p, double *q,
                                        double *omq) {
  const double pm = sig_om(z, e); /* 1 - p */
  *q = y != 0.0 ? p : pm;
  *omq = y != 0.0 ? pm : p;
}

/* sigmoid(z) and e = exp(-|z|), in the form of cg_cpu_loss: e never overflows. */
__device__ __forceinline__ double sigmoid_e(double z, double *e_out) {
  const double e = exp(-fabs(z));
  *e_out = e;
  return z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* OHEM: a valid binary pixel's key (cg_cpu_ohem_key), (float)p_t: the sigmoid p for the
 * foreground (y != 0), 1 - p for the background; z, e and p as sigmoid_e gives them. */
__device__ __forceinline__ float ohem_key_bin(double z, double y, double e, double p) {
  return (float)(y != 0.0 ? p : sig_om(z, e));
}

/* OHEM: whether a pixel of key `key` is kept by its sample's threshold thr (+inf: every valid
 * pixel, when the sample has no more than ohem_min_kept of them). */
__device__ __forceinline__ bool ohem_kept(float key, float thr) {
  return thr == INFINITY || key < thr;
}

/* ---- kernels --------------------------------------------------------------------------- */

/* IGN: pixels whose mask is ign are left out, and a fifth sum counts the others (the BCE mean
 * is over them); !IGN is the loss of every pixel, four sums. OHEM (with IGN; ign may be -1,
 * which no byte equals): only the pixels whose key is below their sample's threshold
 * ohem_thr[i] add their BCE term and count in the fifth sum. */
template <typename T, bool IGN, bool OHEM>
__global__ void loss_partial_kernel(const T *logits, const uint8_t *mask, int64_t hw,
                                    int64_t chunk, int nchunks, int ign, double pw,
                                    double gamma, const float *ohem_thr, double *partial,
                                    uint8_t *pred) {
  static_assert(IGN || !OHEM, "OHEM's mean is over the kept pixels: the IGN sums");
  constexpr int NQ = IGN ? 5 : 4;
  __shared__ double red[NQ][kBlock];
  const int i = blockIdx.y, j = blockIdx.x, t = threadIdx.x;
  const int64_t base = (int64_t)i * hw;
  const int64_t p0 = (int64_t)j * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  const float thr = OHEM ? ohem_thr[i] : INFINITY;
  double spy = 0.0, sp = 0.0, sy = 0.0, sb = 0.0, nv = 0.0;
  for (int64_t p = p0 + t; p < p1; p += kBlock) {
    const float zf = to_f(logits[base + p]);
    if (IGN && mask[base + p] == ign) {
      if (pred) pred[base + p] = zf > 0.0f ? 1 : 0;
      continue;
    }
    const double z = zf, y = mask[base + p] ? 1.0 : 0.0;
    double e;
    const double pr = sigmoid_e(z, &e);
    const bool kept = !OHEM || ohem_kept(ohem_key_bin(z, y, e, pr), thr);
    if (IGN && kept) nv += 1.0;
    if (!kept) {
      /* OHEM: an easy pixel, in the Dice sums only */
    } else if (gamma > 0.0) { /* focal; else the expression of builds without it */
      double q, omq;
      focal_q(z, y, e, pr, &q, &omq);
      const double bce = (z > 0.0 ? z : 0.0) - z * y + log1p(e);
      sb += (y != 0.0 ? pw : 1.0) * (focal_factor(omq, gamma) * bce);
    } else {
      sb += (y != 0.0 ? pw : 1.0) * ((z > 0.0 ? z : 0.0) - z * y + log1p(e));
    }
    sp += pr;
    sy += y;
    spy += pr * y;
    if (pred) pred[base + p] = zf > 0.0f ? 1 : 0;
  }
  red[0][t] = spy;
  red[1][t] = sp;
  red[2][t] = sy;
  red[3][t] = sb;
  if (IGN) red[NQ - 1][t] = nv;
  __syncthreads();
  for (int off = kBlock / 2; off > 0; off >>= 1) {
    if (t < off) {
#pragma unroll
      for (int q = 0; q < NQ; q++) red[q][t] += red[q][t + off];
    }
    __syncthreads();
  }
  if (t < NQ) partial[((int64_t)i * nchunks + j) * NQ + t] = red[t][0];
}

/* One block. sums[i][NQ] = the sample's totals; terms[i] = weight * (BCE mean + dw Dice), 0 for
 * weight 0 (padding adds nothing, not NaN), then loss = sum of terms in sample order. */
template <bool IGN>
__global__ void loss_finalize_kernel(const double *partial, int n, int nchunks, int64_t hw,
                                     const float *weight, double dw, double *sums, double *terms,
                                     double *loss) {
  constexpr int NQ = IGN ? 5 : 4;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    double s[NQ];
#pragma unroll
    for (int k = 0; k < NQ; k++) s[k] = 0.0;
    for (int j = 0; j < nchunks; j++) {
      const double *q = partial + ((int64_t)i * nchunks + j) * NQ;
#pragma unroll
      for (int k = 0; k < NQ; k++) s[k] += q[k];
    }
#pragma unroll
    for (int k = 0; k < NQ; k++) sums[(int64_t)i * NQ + k] = s[k];
    const double num = 2.0 * s[0] + 1.0, den = s[1] + s[2] + 1.0;
    const double inv_n = IGN ? 1.0 / (s[NQ - 1] > 1.0 ? s[NQ - 1] : 1.0) : 1.0 / (double)hw;
    const double li = s[3] * inv_n + dw * (1.0 - num / den);
    const float w = weight[i];
    terms[i] = w != 0.0f ? (double)w * li : 0.0;
  }
  __syncthreads(); /* makes the block's global writes of terms visible to thread 0 */
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += terms[i];
    *loss = total;
  }
}

/* blockIdx.y = sample; x grid-strides over its pixels. OHEM: a pixel not kept by ohem_thr[i]
 * gets the Dice part alone (cg_cpu_loss_k's 0 * inv_v + Dice). */
template <typename T, bool IGN, bool OHEM>
__global__ void loss_grad_kernel(const T *logits, const uint8_t *mask, const float *weight,
                                 int64_t hw, int ign, const double *sums, double dw, double pw,
                                 double gamma, const float *ohem_thr, const cg_scaler_t *scaler,
                                 T *dlogits) {
  constexpr int NQ = IGN ? 5 : 4;
  const int i = blockIdx.y;
  const float thr = OHEM ? ohem_thr[i] : INFINITY;
  const int64_t base = (int64_t)i * hw;
  const float w = weight[i];
  const double spy = sums[(int64_t)i * NQ + 0], sp = sums[(int64_t)i * NQ + 1];
  const double sy = sums[(int64_t)i * NQ + 2];
  const double num = 2.0 * spy + 1.0, den = sp + sy + 1.0;
  const double nv = IGN ? sums[(int64_t)i * NQ + NQ - 1] : 0.0;
  const double inv_hw = IGN ? 1.0 / (nv > 1.0 ? nv : 1.0) : 1.0 / (double)hw;
  const double inv_den2 = 1.0 / (den * den);
  const double sc = (double)w * (double)(scaler ? scaler->scale : 1.0f);
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < hw;
       p += (int64_t)gridDim.x * blockDim.x) {
    float g = 0.0f; /* weight 0 (and ignore pixels): exactly zero gradient */
    if (w != 0.0f && !(IGN && mask[base + p] == ign)) {
      const double z = to_f(logits[base + p]), y = mask[base + p] ? 1.0 : 0.0;
      double e;
      const double pr = sigmoid_e(z, &e);
      /* BCE (p - y)/hw (y = 1: times pw; focal: times F); Dice (num - 2 y den)/den^2 *
       * p(1-p), times dw */
      double d;
      if (OHEM && !ohem_kept(ohem_key_bin(z, y, e, pr), thr)) {
        d = 0.0 * inv_hw + dw * ((num - 2.0 * y * den) * inv_den2 * pr * (1.0 - pr));
      } else if (gamma > 0.0) {
        double q, omq;
        focal_q(z, y, e, pr, &q, &omq);
        const double bce = (z > 0.0 ? z : 0.0) - z * y + log1p(e);
        const double a = focal_grad_a(q, omq, bce, gamma); /* foreground -A, background +A */
        d = (y != 0.0 ? pw : 1.0) * (y != 0.0 ? -a : a) * inv_hw +
            dw * ((num - 2.0 * y * den) * inv_den2 * pr * (1.0 - pr));
      } else {
        d = (y != 0.0 ? pw : 1.0) * (pr - y) * inv_hw +
            dw * ((num - 2.0 * y * den) * inv_den2 * pr * (1.0 - pr));
      }
      g = (float)(sc * d);
    }
    dlogits[base + p] = from_f<T>(g);
  }
}

/* A pure function of hw: fixes the work size and the summation order. */
cg_chunk_plan_t loss_plan(int64_t hw) { return cg_chunk_plan(hw, kChunkPix, kMaxChunks); }

template <typename T, bool IGN, bool OHEM>
void loss_launch(const void *d_logits, const uint8_t *d_mask, const float *d_weight, int n,
                 int64_t hw, int ign, float dice_w, float pos_w, float focal,
                 const float *d_thr, const cg_scaler_t *d_scaler, void *d_dlogits,
                 double *d_loss, uint8_t *d_pred, double *work, cudaStream_t s) {
  constexpr int NQ = IGN ? 5 : 4;
  const cg_chunk_plan_t q = loss_plan(hw);
  double *partial = work;
  double *sums = partial + (size_t)n * q.nchunks * NQ;
  double *terms = sums + (size_t)n * NQ;
  const T *logits = static_cast<const T *>(d_logits);
  loss_partial_kernel<T, IGN, OHEM><<<dim3(q.nchunks, n), kBlock, 0, s>>>(
      logits, d_mask, hw, q.chunk, q.nchunks, ign, (double)pos_w, (double)focal, d_thr, partial,
      d_pred);
  CG_CHECK_LAUNCH("loss_partial_kernel");
  loss_finalize_kernel<IGN><<<1, kBlock, 0, s>>>(partial, n, q.nchunks, hw, d_weight,
                                                 (double)dice_w, sums, terms, d_loss);
  CG_CHECK_LAUNCH("loss_finalize_kernel");
  if (d_dlogits) {
    int64_t gx = (hw + kBlock - 1) / kBlock;
    if (gx > 1024) gx = 1024;
    loss_grad_kernel<T, IGN, OHEM><<<dim3((unsigned)gx, n), kBlock, 0, s>>>(
        logits, d_mask, d_weight, hw, ign, sums, (double)dice_w, (double)pos_w, (double)focal,
        d_thr, d_scaler, static_cast<T *>(d_dlogits));
    CG_CHECK_LAUNCH("loss_grad_kernel");
  }
}

}  // namespace

/* ---- launchers ------------------------------------------------------------------------- */

size_t cg_k_loss_work_bytes(int n, int64_t hw) {
  CG_ASSERT(n >= 0 && hw >= 0);
  const cg_chunk_plan_t q = loss_plan(hw);
  /* partial[n][nchunks][5], sums[n][5], terms[n] (4 of each without an ignore label) */
  return sizeof(double) * ((size_t)n * q.nchunks * 5 + (size_t)n * 5 + (size_t)n);
}

void cg_k_loss(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask, const float *d_weight,
               int n, int64_t hw, float dice_w, float pos_weight, float focal,
               const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss, uint8_t *d_pred,
               void *d_work, cudaStream_t s) {
  cg_k_loss_ign(dt, d_logits, d_mask, d_weight, n, hw, -1, dice_w, pos_weight, focal, NULL,
                d_scaler, d_dlogits, d_loss, d_pred, d_work, s);
}

void cg_k_loss_ign(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask,
                   const float *d_weight, int n, int64_t hw, int ignore, float dice_w,
                   float pos_weight, float focal, const float *d_thr, const cg_scaler_t *d_scaler,
                   void *d_dlogits, double *d_loss, uint8_t *d_pred, void *d_work,
                   cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 1 && dice_w >= 0.0f && pos_weight >= 0.0f);
  CG_ASSERT(focal >= 0.0f);
  CG_ASSERT(ignore >= -1 && ignore <= 255);
  CG_ASSERT(d_loss != NULL);
  if (n == 0) {
    CG_CHECK_CUDA(cudaMemsetAsync(d_loss, 0, sizeof(double), s)); /* +0.0 */
    return;
  }
  CG_ASSERT(d_logits != NULL && d_mask != NULL && d_weight != NULL && d_work != NULL);
  CG_ASSERT(((uintptr_t)d_work % sizeof(double)) == 0);
  double *work = static_cast<double *>(d_work);
  if (d_thr) { /* OHEM: the IGN sums (the mean is over the kept pixels), ignore -1 or not */
    CG_DT_SWITCH(dt, T,
                 loss_launch<T, true, true>(d_logits, d_mask, d_weight, n, hw, ignore, dice_w,
                                            pos_weight, focal, d_thr, d_scaler, d_dlogits,
                                            d_loss, d_pred, work, s));
  } else if (ignore < 0) {
    CG_DT_SWITCH(dt, T,
                 loss_launch<T, false, false>(d_logits, d_mask, d_weight, n, hw, -1, dice_w,
                                              pos_weight, focal, NULL, d_scaler, d_dlogits,
                                              d_loss, d_pred, work, s));
  } else {
    CG_DT_SWITCH(dt, T,
                 loss_launch<T, true, false>(d_logits, d_mask, d_weight, n, hw, ignore, dice_w,
                                             pos_weight, focal, NULL, d_scaler, d_dlogits,
                                             d_loss, d_pred, work, s));
  }
}

/* ---- test-only fault ------------------------------------------------------------------- */

namespace {

template <typename T> __device__ __forceinline__ T nan_of();
template <> __device__ __forceinline__ float nan_of<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ __nv_bfloat16 nan_of<__nv_bfloat16>() {
  return __float2bfloat16_rn(__int_as_float(0x7fc00000));
}
template <> __device__ __forceinline__ __half nan_of<__half>() {
  return __float2half_rn(__int_as_float(0x7fc00000));
}

template <typename T> __global__ void fault_nan_kernel(T *dlogit, double *loss) {
  dlogit[0] = nan_of<T>();
  *loss = __longlong_as_double(0x7ff8000000000000LL);
}

}  // namespace

void cg_k_fault_nan(cg_dtype_t dt, void *d_dlogit, double *d_loss, cudaStream_t s) {
  CG_ASSERT(d_dlogit != NULL && d_loss != NULL);
  switch (dt) {
    case CG_DT_F32:
      fault_nan_kernel<float><<<1, 1, 0, s>>>(static_cast<float *>(d_dlogit), d_loss);
      break;
    case CG_DT_BF16:
      fault_nan_kernel<__nv_bfloat16><<<1, 1, 0, s>>>(static_cast<__nv_bfloat16 *>(d_dlogit),
                                                      d_loss);
      break;
    case CG_DT_F16:
      fault_nan_kernel<__half><<<1, 1, 0, s>>>(static_cast<__half *>(d_dlogit), d_loss);
      break;
  }
  CG_CHECK_LAUNCH("fault_nan_kernel");
}

/* ---- K classes: softmax cross-entropy + class-averaged soft Dice ------------------------
 * cg_cpu_loss_k (src/model/cpu_layers.h) in the same three passes as the binary loss:
 *  1. loss_k_partial: block (chunk j, sample i), one pixel per lane; a lane takes its pixel's
 *     softmax in double (max, sum of exp), and each warp adds, class by class, sum p_c and
 *     sum p_c [y = c] by a fixed shuffle tree (the counts of y = c and of valid pixels by a
 *     ballot, exact), lane 0 into the warp's row of shared memory; the rows are added in warp
 *     order into partial[i][j][3K + 2]. It also writes the argmax (first max wins).
 *  2. loss_k_finalize (one block): each sample's chunks in chunk order, the per-sample terms,
 *     the weighted sum in sample order.
 *  3. loss_k_grad: a thread per pixel, the K gradients from the per-sample sums.
 * Columns of a sample's sums: [0, K) sum p_c, [K, 2K) sum p_c [y = c], [2K, 3K) count y = c,
 * 3K the summed cross-entropy, 3K + 1 the valid pixels (with class weights cw, both weighted:
 * sum cw[y] CE and sum cw[y], by the shuffle tree; with label smoothing eps, a pixel's CE is
 * (1 - eps) cw[y] CE + eps/K sum_c cw[c] (-log p_c)). A pixel is valid when its mask is
 * not the ignore value and is < K (a larger id is a data error the loader refuses; here it is
 * left out rather than read out of bounds). */

namespace {

constexpr int kKBlock = 128; /* 4 warps: the shared rows stay small for K up to 255 */
constexpr int kKWarps = kKBlock / 32;

__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ bool pix_valid(int y, int K, int ign) {
  return y < K && y != ign; /* ign < 0: never equal to a byte */
}

/* A pixel's softmax from its K logits z and their largest zmax (cg_cpu_loss_k's softmax_px):
 * the denominator sum_c exp(z_c - max) in class order, and p_c = exp(z_c - max) * (1 / sum). */
template <typename T> __device__ __forceinline__ double softmax_den(const T *z, int K, float zmax) {
  double se = 0.0;
  for (int c = 0; c < K; c++) se += exp((double)to_f(z[c]) - (double)zmax);
  return se;
}
template <typename T>
__device__ __forceinline__ double softmax_p(const T *z, int c, float zmax, double inv_se) {
  return exp((double)to_f(z[c]) - (double)zmax) * inv_se;
}

/* OHEM: a valid pixel's key (cg_cpu_ohem_key), (float)p_y, inv_se = 1 / softmax_den. */
template <typename T>
__device__ __forceinline__ float ohem_key_k(const T *z, int y, float zmax, double inv_se) {
  return (float)softmax_p(z, y, zmax, inv_se);
}

/* OHEM: a valid pixel whose key is not below its sample's threshold ohem_thr[i] adds to the
 * Dice sums only (neither CE nor the valid count / weight sum). */
template <typename T, bool OHEM>
__global__ void __launch_bounds__(kKBlock)
    loss_k_partial_kernel(const T *logits, const uint8_t *mask, int64_t hw, int K, int ign,
                          const float *cw, double smooth, double gamma, const float *ohem_thr,
                          int64_t chunk, int nchunks, double *partial, uint8_t *pred) {
  extern __shared__ double rows[]; /* [kKWarps][3K + 2] */
  const int i = blockIdx.y, j = blockIdx.x, t = threadIdx.x, wp = t >> 5, lane = t & 31;
  const int ncol = 3 * K + 2;
  double *row = rows + (size_t)wp * ncol;
  for (int c = lane; c < ncol; c += 32) row[c] = 0.0;
  __syncwarp();
  const int64_t base = (int64_t)i * hw;
  const int64_t p0 = (int64_t)j * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  const float thr = OHEM ? ohem_thr[i] : INFINITY;
  for (int64_t q = p0 + (int64_t)wp * 32; q < p1; q += kKBlock) { /* uniform per warp */
    const int64_t p = q + lane;
    const bool active = p < p1;
    const T *z = logits + (base + (active ? p : p0)) * K;
    const int y = active ? mask[base + p] : 0;
    const bool valid = active && pix_valid(y, K, ign);
    float zmax = to_f(z[0]);
    int amax = 0;
    for (int c = 1; c < K; c++) {
      const float v = to_f(z[c]);
      if (v > zmax) {
        zmax = v;
        amax = c;
      }
    }
    if (pred && active) pred[base + p] = (uint8_t)amax;
    const double se = softmax_den(z, K, zmax);
    const double inv_se = 1.0 / se;
    /* the pixel's CE counts (without OHEM: every valid pixel's) */
    const bool kept = valid && (!OHEM || ohem_kept(ohem_key_k(z, y, zmax, inv_se), thr));
    const double zy = valid ? (double)to_f(z[y]) : 0.0;
    const double wy = kept ? (cw ? (double)cw[y] : 1.0) : 0.0;
    double ce = kept ? wy * ((double)zmax + log(se) - zy) : 0.0;
    if (gamma > 0.0 && kept) { /* focal: w_y (1 - p_y)^gamma CE, 1 - p_y the others' sum */
      double om = 0.0;
      for (int c = 0; c < K; c++)
        if (c != y) om += exp((double)to_f(z[c]) - (double)zmax);
      ce = wy * (focal_factor(om * inv_se, gamma) * ((double)zmax + log(se) - zy));
    }
    if (smooth > 0.0 && kept) { /* (1 - eps) CE + eps/K sum_c w_c (-log p_c) */
      const double lse = (double)zmax + log(se);
      double u = 0.0;
      for (int c = 0; c < K; c++) u += (cw ? (double)cw[c] : 1.0) * (lse - (double)to_f(z[c]));
      ce = (1.0 - smooth) * ce + smooth / (double)K * u;
    }
    for (int c = 0; c < K; c++) {
      const double pc = valid ? softmax_p(z, c, zmax, inv_se) : 0.0;
      const double sp = warp_sum_d(pc);
      const double spy = warp_sum_d(valid && y == c ? pc : 0.0);
      const unsigned ny = __popc(__ballot_sync(0xffffffffu, valid && y == c));
      if (lane == 0) {
        row[c] += sp;
        row[K + c] += spy;
        row[2 * K + c] += (double)ny;
      }
    }
    const double sce = warp_sum_d(ce);
    const double nv = cw ? warp_sum_d(wy) /* uniform: the whole warp takes one branch */
                         : (double)__popc(__ballot_sync(0xffffffffu, kept));
    if (lane == 0) {
      row[3 * K] += sce;
      row[3 * K + 1] += nv;
    }
  }
  __syncthreads();
  double *out = partial + ((int64_t)i * nchunks + j) * ncol;
  for (int c = t; c < ncol; c += kKBlock) {
    double s = 0.0;
    for (int w = 0; w < kKWarps; w++) s += rows[(size_t)w * ncol + c];
    out[c] = s;
  }
}

/* One block. sums[i][3K + 2] = the sample's totals; terms[i] = weight * (CE mean + dw Dice), 0
 * for weight 0; loss = sum of terms in sample order. */
__global__ void loss_k_finalize_kernel(const double *partial, int n, int K, int nchunks,
                                       const float *weight, double dw, double *sums,
                                       double *terms, double *loss) {
  const int ncol = 3 * K + 2;
  for (int64_t e = threadIdx.x; e < (int64_t)n * ncol; e += blockDim.x) {
    const int64_t i = e / ncol, c = e % ncol;
    double s = 0.0;
    for (int j = 0; j < nchunks; j++) s += partial[(i * nchunks + j) * ncol + c];
    sums[e] = s;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const double *s = sums + (int64_t)i * ncol;
    const double nv = s[3 * K + 1];
    double dsum = 0.0;
    for (int c = 0; c < K; c++)
      dsum += (2.0 * s[K + c] + 1.0) / (s[c] + s[2 * K + c] + 1.0);
    /* nv 0: no valid pixel, or class weights summing to 0; the CE sum is 0 then too */
    const double li = (nv > 0.0 ? s[3 * K] / nv : 0.0) + dw * (1.0 - dsum / (double)K);
    const float w = weight[i];
    terms[i] = w != 0.0f ? (double)w * li : 0.0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += terms[i];
    *loss = total;
  }
}

/* blockIdx.y = sample; x grid-strides over its pixels, a thread per pixel writing its K
 * gradients: dCE/dz_c = cw[y] (p_c - [y = c]) / nv (nv: |V|, or sum cw[y]); with a_c = dDice/dp_c =
 * -(2 [y = c] den_c - num_c) / (K den_c^2), dDice/dz_c = p_c (a_c - sum_k p_k a_k). OHEM: a pixel
 * not kept by ohem_thr[i] gets the Dice part alone (cg_cpu_loss_k's 0 * inv_v + Dice). */
template <typename T, bool OHEM>
__global__ void loss_k_grad_kernel(const T *logits, const uint8_t *mask, const float *weight,
                                   int64_t hw, int K, int ign, const float *cw, double smooth,
                                   double gamma, const double *sums, double dw,
                                   const float *ohem_thr, const cg_scaler_t *scaler,
                                   T *dlogits) {
  const int i = blockIdx.y;
  const float thr = OHEM ? ohem_thr[i] : INFINITY;
  const int64_t base = (int64_t)i * hw;
  const float w = weight[i];
  const int ncol = 3 * K + 2;
  const double *s = sums + (int64_t)i * ncol;
  const double nv = s[3 * K + 1];
  const double inv_v = nv > 0.0 ? 1.0 / nv : 0.0, inv_k = 1.0 / (double)K;
  const double sc = (double)w * (double)(scaler ? scaler->scale : 1.0f);
  double wsum = 0.0; /* label smoothing: sum_c w_c */
  if (smooth > 0.0)
    for (int c = 0; c < K; c++) wsum += cw ? (double)cw[c] : 1.0;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < hw;
       p += (int64_t)gridDim.x * blockDim.x) {
    const T *z = logits + (base + p) * K;
    T *g = dlogits + (base + p) * K;
    const int y = mask[base + p];
    if (w == 0.0f || !pix_valid(y, K, ign)) { /* exactly zero */
      for (int c = 0; c < K; c++) g[c] = from_f<T>(0.0f);
      continue;
    }
    const double wy = cw ? (double)cw[y] : 1.0;
    float zmax = to_f(z[0]);
    for (int c = 1; c < K; c++) zmax = fmaxf(zmax, to_f(z[c]));
    const double se = softmax_den(z, K, zmax);
    const double inv_se = 1.0 / se;
    const bool kept = !OHEM || ohem_kept(ohem_key_k(z, y, zmax, inv_se), thr);
    double fA = 0.0, fom = 0.0; /* focal: the CE part's A and 1 - p_y */
    if (gamma > 0.0) {
      for (int c = 0; c < K; c++)
        if (c != y) fom += exp((double)to_f(z[c]) - (double)zmax);
      fom *= inv_se;
      const double zy = (double)to_f(z[y]);
      fA = focal_grad_a(exp(zy - (double)zmax) * inv_se, fom, (double)zmax + log(se) - zy, gamma);
    }
    double pa = 0.0; /* sum_k p_k a_k */
    for (int c = 0; c < K; c++) {
      const double pc = softmax_p(z, c, zmax, inv_se);
      const double num = 2.0 * s[K + c] + 1.0, den = s[c] + s[2 * K + c] + 1.0;
      const double a = -((y == c ? 2.0 * den : 0.0) - num) * inv_k / (den * den);
      pa += pc * a;
    }
    for (int c = 0; c < K; c++) {
      const double pc = softmax_p(z, c, zmax, inv_se);
      const double num = 2.0 * s[K + c] + 1.0, den = s[c] + s[2 * K + c] + 1.0;
      const double a = -((y == c ? 2.0 * den : 0.0) - num) * inv_k / (den * den);
      /* smoothed: (1 - eps) w_y (p_c - [y = c]) + eps/K (sum_k w_k p_c - w_c); unsmoothed,
       * the expression of builds without smoothing (nvcc contracts it into the same FMA) */
      const double t = y == c ? 1.0 : 0.0;
      /* focal: w_y times -A (c = y) or A p_c / (1 - p_y) (cpu_layers.h's cg_focal_grad_a) */
      const double fc = y == c ? -fA : fom > 0.0 ? fA * (pc / fom) : 0.0;
      /* OHEM, a pixel not kept: the Dice part alone */
      const double d =
          OHEM && !kept ? 0.0 * inv_v + dw * (pc * (a - pa))
          : smooth > 0.0
              ? ((1.0 - smooth) * wy * (pc - t) +
                 smooth / (double)K * (wsum * pc - (cw ? (double)cw[c] : 1.0))) * inv_v +
                    dw * (pc * (a - pa))
          : gamma > 0.0 ? wy * fc * inv_v + dw * (pc * (a - pa))
                        : wy * (pc - t) * inv_v + dw * (pc * (a - pa));
      g[c] = from_f<T>((float)(sc * d));
    }
  }
}

template <typename T, bool OHEM>
void loss_k_launch(const void *d_logits, const uint8_t *d_mask, const float *d_weight, int n,
                   int64_t hw, int K, int ign, float dice_w, const float *d_cw, float smooth,
                   float focal, const float *d_thr, const cg_scaler_t *d_scaler,
                   void *d_dlogits, double *d_loss, uint8_t *d_pred, double *work,
                   cudaStream_t s) {
  const cg_chunk_plan_t q = loss_plan(hw);
  const int ncol = 3 * K + 2;
  double *partial = work;
  double *sums = partial + (size_t)n * q.nchunks * ncol;
  double *terms = sums + (size_t)n * ncol;
  const T *logits = static_cast<const T *>(d_logits);
  const size_t shm = sizeof(double) * kKWarps * ncol;
  loss_k_partial_kernel<T, OHEM><<<dim3(q.nchunks, n), kKBlock, shm, s>>>(
      logits, d_mask, hw, K, ign, d_cw, (double)smooth, (double)focal, d_thr, q.chunk,
      q.nchunks, partial, d_pred);
  CG_CHECK_LAUNCH("loss_k_partial_kernel");
  loss_k_finalize_kernel<<<1, kBlock, 0, s>>>(partial, n, K, q.nchunks, d_weight,
                                              (double)dice_w, sums, terms, d_loss);
  CG_CHECK_LAUNCH("loss_k_finalize_kernel");
  if (d_dlogits) {
    int64_t gx = (hw + kBlock - 1) / kBlock;
    if (gx > 1024) gx = 1024;
    loss_k_grad_kernel<T, OHEM><<<dim3((unsigned)gx, n), kBlock, 0, s>>>(
        logits, d_mask, d_weight, hw, K, ign, d_cw, (double)smooth, (double)focal, sums,
        (double)dice_w, d_thr, d_scaler, static_cast<T *>(d_dlogits));
    CG_CHECK_LAUNCH("loss_k_grad_kernel");
  }
}

}  // namespace

size_t cg_k_loss_k_work_bytes(int n, int64_t hw, int nclass) {
  CG_ASSERT(n >= 0 && hw >= 0 && nclass >= 2 && nclass <= 255);
  const cg_chunk_plan_t q = loss_plan(hw);
  const size_t ncol = 3 * (size_t)nclass + 2;
  /* partial[n][nchunks][ncol], sums[n][ncol], terms[n] */
  return sizeof(double) * ((size_t)n * q.nchunks * ncol + (size_t)n * ncol + (size_t)n);
}

void cg_k_loss_k(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask,
                 const float *d_weight, int n, int64_t hw, int nclass, int ignore, float dice_w,
                 const float *d_cw, float smooth, float focal, const float *d_thr,
                 const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss, uint8_t *d_pred,
                 void *d_work, cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 1 && nclass >= 2 && nclass <= 255 && dice_w >= 0.0f);
  CG_ASSERT(smooth >= 0.0f && smooth < 1.0f && focal >= 0.0f && !(smooth > 0.0f && focal > 0.0f));
  CG_ASSERT(ignore >= -1 && ignore <= 255);
  CG_ASSERT(d_loss != NULL);
  if (n == 0) {
    CG_CHECK_CUDA(cudaMemsetAsync(d_loss, 0, sizeof(double), s)); /* +0.0 */
    return;
  }
  CG_ASSERT(d_logits != NULL && d_mask != NULL && d_weight != NULL && d_work != NULL);
  CG_ASSERT(((uintptr_t)d_work % sizeof(double)) == 0);
  double *work = static_cast<double *>(d_work);
  if (d_thr) {
    CG_DT_SWITCH(dt, T,
                 loss_k_launch<T, true>(d_logits, d_mask, d_weight, n, hw, nclass, ignore,
                                        dice_w, d_cw, smooth, focal, d_thr, d_scaler, d_dlogits,
                                        d_loss, d_pred, work, s));
  } else {
    CG_DT_SWITCH(dt, T,
                 loss_k_launch<T, false>(d_logits, d_mask, d_weight, n, hw, nclass, ignore,
                                         dice_w, d_cw, smooth, focal, NULL, d_scaler, d_dlogits,
                                         d_loss, d_pred, work, s));
  }
}

/* ---- OHEM: each sample's threshold ------------------------------------------------------
 * cg_cpu_ohem_thr (src/model/cpu_layers.h) on the device:
 *  1. ohem_key: a thread per pixel writes the pixel's key bits, (float)p_t by the loss
 *     kernels' own functions (ohem_key_bin, ohem_key_k), or kOhemInvalid for a pixel left out
 *     (the ignore label; K >= 2 also a mask value >= K). Keys are >= 0 (or NaN), so their bits
 *     as unsigned integers order as the values, and kOhemInvalid is above every key.
 *  2. a radix select of the key of rank min_kept (0-based, increasing) among each sample's
 *     valid keys, in four passes of 8 bits, most significant first. A pass is two kernels:
 *     ohem_hist, blocks (b, sample i) each counting the next 8 bits of its share of the
 *     sample's valid keys that match the prefix found so far in a shared histogram, then
 *     adding it into the sample's global one (n x 256 integers); ohem_pick, a thread per
 *     sample, walks that histogram to the bin holding the rank, extends the prefix, and
 *     clears it for the next pass. The first pick also counts the valid keys: min_kept at or
 *     above the count gives +inf (every valid pixel kept) and ends the sample's select; the
 *     last writes max(thresh, v). The counts are exact whatever order the atomics land in,
 *     and the blocks per sample a function of (n, hw) only, so the threshold is deterministic
 *     and the bits cg_cpu_ohem_select gives of the same keys. Several blocks a sample keep the
 *     whole device reading (one block per sample would read 256 MB of keys of one 8192 x 8192
 *     sample through one SM).
 * The loss kernels read the thresholds (d_thr) and compute the keys again: no sync, nothing
 * allocated (the select's state follows the keys in d_keys), so a captured step replays it. */

namespace {

constexpr uint32_t kOhemInvalid = 0xFFFFFFFFu;
constexpr int kSelBlock = 256; /* the emulated device's largest block */
constexpr int kSelUnroll = 4;  /* keys a thread loads before it bins them: loads in flight */

template <typename T>
__global__ void ohem_key_kernel(const T *logits, const uint8_t *mask, int64_t npix, int K,
                                int ign, uint32_t *keys) {
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < npix;
       p += (int64_t)gridDim.x * blockDim.x) {
    const int y = mask[p];
    uint32_t key = kOhemInvalid;
    if (K == 1) {
      if (y != ign) { /* binary: any other nonzero value is the foreground */
        const double z = to_f(logits[p]), yb = y ? 1.0 : 0.0;
        double e;
        const double pr = sigmoid_e(z, &e);
        key = __float_as_uint(ohem_key_bin(z, yb, e, pr));
      }
    } else if (pix_valid(y, K, ign)) {
      const T *z = logits + p * K;
      float zmax = to_f(z[0]); /* the partial kernel's maximum */
      for (int c = 1; c < K; c++) {
        const float v = to_f(z[c]);
        if (v > zmax) zmax = v;
      }
      key = __float_as_uint(ohem_key_k(z, y, zmax, 1.0 / softmax_den(z, K, zmax)));
    }
    keys[p] = key;
  }
}

/* The select's state after the n * hw keys (cg_k_ohem_work_bytes): each sample's histogram of
 * the pass, its prefix, the rank sought within it, and whether its threshold is written. */
struct ohem_sel_t {
  unsigned *hist;           /* n x 256 */
  uint32_t *prefix;         /* n */
  unsigned long long *rank; /* n */
  int *done;                /* n */
};

inline size_t ohem_align8(size_t b) { return (b + 7) & ~(size_t)7; }

/* Blocks (blockIdx.x, sample blockIdx.y): the next 8 bits (from `shift`) of the valid keys of
 * the block's share of the sample that match its prefix, into the sample's histogram. */
__global__ void __launch_bounds__(kSelBlock)
    ohem_hist_kernel(const uint32_t *keys, int64_t hw, int shift, ohem_sel_t st) {
  __shared__ unsigned hist[256];
  const int i = blockIdx.y, t = threadIdx.x;
  if (st.done[i]) return; /* uniform: the sample's threshold is written */
  for (int b = t; b < 256; b += blockDim.x) hist[b] = 0;
  __syncthreads();
  const uint32_t pmask = shift == 24 ? 0u : 0xFFFFFFFFu << (shift + 8), prefix = st.prefix[i];
  const uint32_t *k = keys + (int64_t)i * hw;
  /* A thread adds a run of keys of one bin at once: a sample's keys crowd into few bins (most
   * p_t near 1), where atomics to one address would wait on each other. */
  unsigned run_bin = 0, run_n = 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x * kSelUnroll;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x * kSelUnroll + t; p < hw; p += stride) {
    uint32_t v[kSelUnroll];
#pragma unroll
    for (int u = 0; u < kSelUnroll; u++) {
      const int64_t q = p + (int64_t)u * blockDim.x;
      v[u] = q < hw ? k[q] : kOhemInvalid;
    }
#pragma unroll
    for (int u = 0; u < kSelUnroll; u++) {
      if (v[u] == kOhemInvalid || (v[u] & pmask) != prefix) continue;
      const unsigned bin = (v[u] >> shift) & 255u;
      if (bin != run_bin && run_n > 0) {
        atomicAdd(&hist[run_bin], run_n);
        run_n = 0;
      }
      run_bin = bin;
      run_n++;
    }
  }
  if (run_n > 0) atomicAdd(&hist[run_bin], run_n);
  __syncthreads();
  for (int b = t; b < 256; b += blockDim.x)
    if (hist[b]) atomicAdd(&st.hist[(int64_t)i * 256 + b], hist[b]);
}

/* A thread per sample: the bin of its histogram that holds the rank sought (the first pass:
 * min_kept, after counting the valid keys), the histogram cleared for the next pass; the last
 * pass writes the threshold. */
__global__ void ohem_pick_kernel(int n, int shift, float thresh, int64_t min_kept,
                                 ohem_sel_t st, float *thr) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || st.done[i]) return;
  unsigned *h = st.hist + (int64_t)i * 256;
  unsigned long long r = shift == 24 ? (unsigned long long)min_kept : st.rank[i];
  if (shift == 24) {
    unsigned long long count = 0;
    for (int d = 0; d < 256; d++) count += h[d];
    if (r >= count) { /* every valid pixel is kept */
      thr[i] = INFINITY;
      st.done[i] = 1;
      for (int d = 0; d < 256; d++) h[d] = 0;
      return;
    }
  }
  int d = 0;
  while (r >= h[d]) r -= h[d++]; /* r < the keys with the prefix: stops in a bin */
  const uint32_t prefix = st.prefix[i] | (uint32_t)d << shift;
  st.prefix[i] = prefix;
  st.rank[i] = r;
  for (int b = 0; b < 256; b++) h[b] = 0;
  if (shift == 0) {
    const float v = __uint_as_float(prefix);
    thr[i] = v > thresh ? v : thresh; /* cg_cpu_ohem_thr's max, NaN v giving thresh */
    st.done[i] = 1;
  }
}

/* The select's state in the work buffer after the keys. */
ohem_sel_t ohem_state(void *d_keys, int n, int64_t hw) {
  char *p = static_cast<char *>(d_keys) + ohem_align8(sizeof(uint32_t) * (size_t)n * (size_t)hw);
  ohem_sel_t st;
  st.rank = reinterpret_cast<unsigned long long *>(p);
  p += sizeof(unsigned long long) * (size_t)n;
  st.hist = reinterpret_cast<unsigned *>(p);
  p += sizeof(unsigned) * 256 * (size_t)n;
  st.prefix = reinterpret_cast<uint32_t *>(p);
  p += sizeof(uint32_t) * (size_t)n;
  st.done = reinterpret_cast<int *>(p);
  return st;
}

/* The select's blocks per sample: enough to fill the device at any batch (up to 1024 in all),
 * each a share of at least 8 strides of one block (8192 keys); a function of (n, hw) alone. */
int ohem_blocks(int n, int64_t hw) {
  const int64_t share = (int64_t)kSelBlock * kSelUnroll * 8;
  int64_t b = (hw + share - 1) / share;
  const int64_t most = 1024 / n > 1 ? 1024 / n : 1;
  if (b > most) b = most;
  return b < 1 ? 1 : (int)b;
}

}  // namespace

size_t cg_k_ohem_work_bytes(int n, int64_t hw) {
  CG_ASSERT(n >= 0 && hw >= 0);
  /* the keys, then the select's state: rank (8 bytes), histogram (1 KiB), prefix, done */
  return ohem_align8(sizeof(uint32_t) * (size_t)n * (size_t)hw) +
         (size_t)n * (sizeof(unsigned long long) + 256 * sizeof(unsigned) + sizeof(uint32_t) +
                      sizeof(int));
}

void cg_k_ohem_thr(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask, int n, int64_t hw,
                   int nclass, int ignore, float thresh, int64_t min_kept, uint32_t *d_keys,
                   float *d_thr, cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 1 && hw <= (int64_t)UINT32_MAX);
  CG_ASSERT(nclass >= 1 && nclass <= 255 && ignore >= -1 && ignore <= 255);
  CG_ASSERT(thresh > 0.0f && min_kept >= 0);
  if (n == 0) return;
  CG_ASSERT(d_logits != NULL && d_mask != NULL && d_keys != NULL && d_thr != NULL);
  CG_ASSERT(((uintptr_t)d_keys % 8) == 0);
  const int64_t npix = (int64_t)n * hw;
  int64_t gx = (npix + kBlock - 1) / kBlock;
  if (gx > 4096) gx = 4096;
  CG_DT_SWITCH(dt, T,
               ohem_key_kernel<T><<<(unsigned)gx, kBlock, 0, s>>>(
                   static_cast<const T *>(d_logits), d_mask, npix, nclass, ignore, d_keys));
  CG_CHECK_LAUNCH("ohem_key_kernel");
  const ohem_sel_t st = ohem_state(d_keys, n, hw);
  const size_t state = cg_k_ohem_work_bytes(n, hw) -
                       ohem_align8(sizeof(uint32_t) * (size_t)n * (size_t)hw);
  CG_CHECK_CUDA(cudaMemsetAsync(st.rank, 0, state, s)); /* histograms, prefixes, done: 0 */
  const int nb = ohem_blocks(n, hw);
  for (int shift = 24; shift >= 0; shift -= 8) {
    ohem_hist_kernel<<<dim3((unsigned)nb, (unsigned)n), kSelBlock, 0, s>>>(d_keys, hw, shift, st);
    CG_CHECK_LAUNCH("ohem_hist_kernel");
    ohem_pick_kernel<<<(n + 127) / 128, 128, 0, s>>>(n, shift, thresh, min_kept, st, d_thr);
    CG_CHECK_LAUNCH("ohem_pick_kernel");
  }
}
