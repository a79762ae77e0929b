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
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "dtype.cuh"
#include "kernels.h"
#include "launch.h"

namespace {

constexpr int kBlock = 256;        /* power of two: the reduction tree halves it */
constexpr int kMaxChunks = 64;     /* per sample */
constexpr int64_t kChunkPix = 4096;

/* sigmoid(z) and e = exp(-|z|), in the form of cg_cpu_loss: e never overflows. */
__device__ __forceinline__ double sigmoid_e(double z, double *e_out) {
  const double e = exp(-fabs(z));
  *e_out = e;
  return z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* ---- kernels --------------------------------------------------------------------------- */

template <typename T>
__global__ void loss_partial_kernel(const T *logits, const uint8_t *mask, int64_t hw,
                                    int64_t chunk, int nchunks, double *partial, uint8_t *pred) {
  __shared__ double red[4][kBlock];
  const int i = blockIdx.y, j = blockIdx.x, t = threadIdx.x;
  const int64_t base = (int64_t)i * hw;
  const int64_t p0 = (int64_t)j * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  double spy = 0.0, sp = 0.0, sy = 0.0, sb = 0.0;
  for (int64_t p = p0 + t; p < p1; p += kBlock) {
    const float zf = to_f(logits[base + p]);
    const double z = zf, y = mask[base + p] ? 1.0 : 0.0;
    double e;
    const double pr = sigmoid_e(z, &e);
    sb += (z > 0.0 ? z : 0.0) - z * y + log1p(e);
    sp += pr;
    sy += y;
    spy += pr * y;
    if (pred) pred[base + p] = zf > 0.0f ? 1 : 0;
  }
  red[0][t] = spy;
  red[1][t] = sp;
  red[2][t] = sy;
  red[3][t] = sb;
  __syncthreads();
  for (int off = kBlock / 2; off > 0; off >>= 1) {
    if (t < off) {
#pragma unroll
      for (int q = 0; q < 4; q++) red[q][t] += red[q][t + off];
    }
    __syncthreads();
  }
  if (t < 4) partial[((int64_t)i * nchunks + j) * 4 + t] = red[t][0];
}

/* One block. sums[i][4] = the sample's totals; terms[i] = weight * (BCE mean + Dice), 0 for
 * weight 0 (padding adds nothing, not NaN), then loss = sum of terms in sample order. */
__global__ void loss_finalize_kernel(const double *partial, int n, int nchunks, int64_t hw,
                                     const float *weight, double *sums, double *terms,
                                     double *loss) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (int j = 0; j < nchunks; j++) {
      const double *q = partial + ((int64_t)i * nchunks + j) * 4;
#pragma unroll
      for (int k = 0; k < 4; k++) s[k] += q[k];
    }
#pragma unroll
    for (int k = 0; k < 4; k++) sums[(int64_t)i * 4 + k] = s[k];
    const double num = 2.0 * s[0] + 1.0, den = s[1] + s[2] + 1.0;
    const double li = s[3] * (1.0 / (double)hw) + (1.0 - num / den);
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

/* blockIdx.y = sample; x grid-strides over its pixels. */
template <typename T>
__global__ void loss_grad_kernel(const T *logits, const uint8_t *mask, const float *weight,
                                 int64_t hw, const double *sums, const cg_scaler_t *scaler,
                                 T *dlogits) {
  const int i = blockIdx.y;
  const int64_t base = (int64_t)i * hw;
  const float w = weight[i];
  const double spy = sums[(int64_t)i * 4 + 0], sp = sums[(int64_t)i * 4 + 1];
  const double sy = sums[(int64_t)i * 4 + 2];
  const double num = 2.0 * spy + 1.0, den = sp + sy + 1.0;
  const double inv_hw = 1.0 / (double)hw, inv_den2 = 1.0 / (den * den);
  const double sc = (double)w * (double)(scaler ? scaler->scale : 1.0f);
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < hw;
       p += (int64_t)gridDim.x * blockDim.x) {
    float g = 0.0f; /* weight 0: exactly zero gradient */
    if (w != 0.0f) {
      const double z = to_f(logits[base + p]), y = mask[base + p] ? 1.0 : 0.0;
      double e;
      const double pr = sigmoid_e(z, &e);
      /* BCE (p - y)/hw; Dice (num - 2 y den)/den^2 * p(1-p) */
      const double d = (pr - y) * inv_hw + (num - 2.0 * y * den) * inv_den2 * pr * (1.0 - pr);
      g = (float)(sc * d);
    }
    dlogits[base + p] = from_f<T>(g);
  }
}

/* A pure function of hw: fixes the work size and the summation order. */
cg_chunk_plan_t loss_plan(int64_t hw) { return cg_chunk_plan(hw, kChunkPix, kMaxChunks); }

template <typename T>
void loss_launch(const void *d_logits, const uint8_t *d_mask, const float *d_weight, int n,
                 int64_t hw, const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss,
                 uint8_t *d_pred, double *work, cudaStream_t s) {
  const cg_chunk_plan_t q = loss_plan(hw);
  double *partial = work;
  double *sums = partial + (size_t)n * q.nchunks * 4;
  double *terms = sums + (size_t)n * 4;
  const T *logits = static_cast<const T *>(d_logits);
  loss_partial_kernel<T><<<dim3(q.nchunks, n), kBlock, 0, s>>>(logits, d_mask, hw, q.chunk,
                                                                q.nchunks, partial, d_pred);
  CG_CHECK_LAUNCH("loss_partial_kernel");
  loss_finalize_kernel<<<1, kBlock, 0, s>>>(partial, n, q.nchunks, hw, d_weight, sums, terms,
                                            d_loss);
  CG_CHECK_LAUNCH("loss_finalize_kernel");
  if (d_dlogits) {
    int64_t gx = (hw + kBlock - 1) / kBlock;
    if (gx > 1024) gx = 1024;
    loss_grad_kernel<T><<<dim3((unsigned)gx, n), kBlock, 0, s>>>(
        logits, d_mask, d_weight, hw, sums, d_scaler, static_cast<T *>(d_dlogits));
    CG_CHECK_LAUNCH("loss_grad_kernel");
  }
}

}  // namespace

/* ---- launchers ------------------------------------------------------------------------- */

size_t cg_k_loss_work_bytes(int n, int64_t hw) {
  CG_ASSERT(n >= 0 && hw >= 0);
  const cg_chunk_plan_t q = loss_plan(hw);
  /* partial[n][nchunks][4], sums[n][4], terms[n] */
  return sizeof(double) * ((size_t)n * q.nchunks * 4 + (size_t)n * 4 + (size_t)n);
}

void cg_k_loss(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask, const float *d_weight,
               int n, int64_t hw, const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss,
               uint8_t *d_pred, void *d_work, cudaStream_t s) {
  CG_ASSERT(n >= 0 && n <= 65535 && hw >= 1);
  CG_ASSERT(d_loss != NULL);
  if (n == 0) {
    CG_CHECK_CUDA(cudaMemsetAsync(d_loss, 0, sizeof(double), s)); /* +0.0 */
    return;
  }
  CG_ASSERT(d_logits != NULL && d_mask != NULL && d_weight != NULL && d_work != NULL);
  CG_ASSERT(((uintptr_t)d_work % sizeof(double)) == 0);
  double *work = static_cast<double *>(d_work);
  switch (dt) {
    case CG_DT_F32:
      loss_launch<float>(d_logits, d_mask, d_weight, n, hw, d_scaler, d_dlogits, d_loss, d_pred,
                         work, s);
      break;
    case CG_DT_BF16:
      loss_launch<__nv_bfloat16>(d_logits, d_mask, d_weight, n, hw, d_scaler, d_dlogits, d_loss,
                                 d_pred, work, s);
      break;
    case CG_DT_F16:
      loss_launch<__half>(d_logits, d_mask, d_weight, n, hw, d_scaler, d_dlogits, d_loss, d_pred,
                          work, s);
      break;
    default:
      CG_FATAL("unknown cg_dtype_t %d", (int)dt);
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
