/* kernels_optim.cu: the optimizer step on the GPU: the inf/NaN check of the gradients, their
 * global norm (--clip-grad-norm), fused AdamW over the flat fp32 master buffer (with the
 * compute-precision copy of the parameters written in the same pass), and the dynamic
 * loss-scaler update. See kernels.h.
 *
 * Everything that changes between steps (learning rate, bias corrections, loss scale, the
 * overflow flag) is read from device memory inside the kernels, so one captured CUDA graph
 * replays every step; a skipped step is a kernel that returns early, not a host branch.
 * AdamW mirrors cg_cpu_adamw (PyTorch's formulation) operation for operation, in float. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "dtype.cuh"
#include "kernels.h"
#include "launch.h"

namespace {

constexpr int kBlock = 256;
constexpr int kGrowthInterval = 2000; /* clean steps before the loss scale doubles */
constexpr int kNormBlocks = 256;      /* the gradient norm's fixed grid: its summation order */

/* ---- kernels --------------------------------------------------------------------------- */

/* cg_cpu_ema's update of one element: torch.lerp(e, p, w), its fused multiply-adds; w = 1
 * copies */
__device__ __forceinline__ float ema_lerp(float e, float p, float w) {
  if (w == 1.0f) return p;
  const float d = __fsub_rn(p, e);
  return w < 0.5f ? __fmaf_rn(w, d, e) : __fmaf_rn(-d, __fsub_rn(1.0f, w), p);
}

/* Exponent bits all ones = inf or NaN; independent of fast-math flags. */
__global__ void check_finite_kernel(const float *g, int64_t n, cg_scaler_t *scaler) {
  int bad = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    bad |= (__float_as_uint(g[i]) & 0x7f800000u) == 0x7f800000u;
  /* every thread reaches the barrier (no early exit above); blocks that find one all store
   * the same 1, so the races between them are benign and the result deterministic */
  if (__syncthreads_or(bad) && threadIdx.x == 0) scaler->found_inf = 1;
}

/* red[0] = the sum of red[0..kBlock) in a fixed tree order; every thread of the block calls it */
__device__ void block_sum(double *red) {
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
}

/* part[block] = the block's sum of squares, in double (kNormBlocks x kBlock threads) */
__global__ void grad_norm_part_kernel(const float *g, int64_t n, double *part) {
  __shared__ double red[kBlock];
  double sum = 0.0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const double v = g[i];
    sum += v * v;
  }
  red[threadIdx.x] = sum;
  block_sum(red);
  if (threadIdx.x == 0) part[blockIdx.x] = red[0];
}

/* one block of kBlock threads: the partials summed, the norm unscaled, the clip factor */
__global__ void grad_norm_finish_kernel(const double *part, const cg_scaler_t *scaler,
                                        float max_norm, cg_gnorm_t *gn) {
  __shared__ double red[kBlock];
  double sum = 0.0;
  for (int j = threadIdx.x; j < kNormBlocks; j += blockDim.x) sum += part[j];
  red[threadIdx.x] = sum;
  block_sum(red);
  if (threadIdx.x != 0) return;
  double norm = sqrt(red[0]);
  if (scaler) norm /= (double)scaler->scale;
  float coef = 1.0f; /* cg_clip_coef (backend.h), on the device */
  if (isfinite(norm) && isfinite(max_norm)) {
    const float c = 1.0f / ((float)norm + 1e-6f) * max_norm; /* PyTorch's rounding */
    coef = c < 1.0f ? c : 1.0f;
  }
  gn->norm = (float)norm;
  gn->coef = coef;
}

template <typename T>
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                             const cg_step_params_t *hp, const cg_scaler_t *scaler,
                             const cg_gnorm_t *gn, T *lowp, float *ema) {
  if (scaler && scaler->found_inf) return; /* skipped step: p, m, v, lowp, ema untouched */
  const float lr = hp->lr, b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
  const float unscale = scaler ? 1.0f / scaler->scale : 1.0f;
  const float grad_mul = gn ? unscale * gn->coef : unscale;
  const float step = lr / hp->bc1;                 /* lr / (1 - beta1^t) */
  const float inv_sqrt_bc2 = 1.0f / sqrtf(hp->bc2); /* 1 / sqrt(1 - beta2^t) */
  const float decay = 1.0f - lr * hp->weight_decay;
  const float c1 = 1.0f - b1, c2 = 1.0f - b2, ema_w = hp->ema_w;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float gi = g[i] * grad_mul;
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    /* PyTorch: p *= 1 - lr*wd; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps) */
    const float pi = p[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    p[i] = pi;
    if (lowp) lowp[i] = from_f<T>(pi);
    if (ema) ema[i] = ema_lerp(ema[i], pi, ema_w);
  }
}

/* SGD (cg_cpu_sgd's operations, dampening 0): d = g + wd p; buf = mu buf + d; p -= lr (nesterov
 * ? d + mu buf : buf). */
template <typename T>
__global__ void sgd_kernel(float *p, const float *g, float *buf, int64_t n,
                           const cg_step_params_t *hp, const cg_scaler_t *scaler,
                           const cg_gnorm_t *gn, float momentum, int nesterov, T *lowp,
                           float *ema) {
  if (scaler && scaler->found_inf) return; /* skipped step: p, buf, lowp, ema untouched */
  const float lr = hp->lr, wd = hp->weight_decay, ema_w = hp->ema_w;
  const float unscale = scaler ? 1.0f / scaler->scale : 1.0f;
  const float grad_mul = gn ? unscale * gn->coef : unscale;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float pi = p[i];
    const float di = g[i] * grad_mul + wd * pi;
    const float bi = momentum * buf[i] + di;
    buf[i] = bi;
    const float po = pi - lr * (nesterov ? di + momentum * bi : bi);
    p[i] = po;
    if (lowp) lowp[i] = from_f<T>(po);
    if (ema) ema[i] = ema_lerp(ema[i], po, ema_w);
  }
}

template <typename T>
__global__ void ema_swap_kernel(float *p, float *e, int64_t n, T *lowp) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float pi = p[i], ei = e[i];
    p[i] = ei;
    e[i] = pi;
    if (lowp) lowp[i] = from_f<T>(ei);
  }
}

/* Gradient accumulation: acc += g (a micro-batch's gradients kept). */
__global__ void grad_keep_kernel(const float *g, float *acc, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    acc[i] += g[i];
}

/* g += acc and acc = 0: the step's last micro-batch takes the kept sum (the next step's first
 * micro-batch then starts from zero). */
__global__ void grad_take_kernel(float *g, float *acc, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    g[i] += acc[i];
    acc[i] = 0.0f;
  }
}

__global__ void scaler_update_kernel(cg_scaler_t *s) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  s->steps++;
  if (s->found_inf) {
    s->skipped++;
    s->good_steps = 0;
    if (s->enabled) s->scale = fmaxf(s->scale * 0.5f, 1.0f);
  } else if (++s->good_steps >= kGrowthInterval) {
    s->good_steps = 0;
    if (s->enabled) s->scale *= 2.0f;
  }
  s->found_inf = 0;
}

template <typename T>
void sgd_launch(float *d_p, const float *d_g, float *d_buf, int64_t n,
                const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler, const cg_gnorm_t *d_gn,
                float momentum, int nesterov, void *d_lowp, float *d_ema, cudaStream_t s) {
  sgd_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_p, d_g, d_buf, n, d_hp, d_scaler,
                                                          d_gn, momentum, nesterov,
                                                          static_cast<T *>(d_lowp), d_ema);
}

template <typename T>
void adamw_launch(float *d_p, const float *d_g, float *d_m, float *d_v, int64_t n,
                  const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler,
                  const cg_gnorm_t *d_gn, void *d_lowp, float *d_ema, cudaStream_t s) {
  adamw_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(
      d_p, d_g, d_m, d_v, n, d_hp, d_scaler, d_gn, static_cast<T *>(d_lowp), d_ema);
}

template <typename T>
void ema_swap_launch(float *d_p, float *d_e, int64_t n, void *d_lowp, cudaStream_t s) {
  ema_swap_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_p, d_e, n,
                                                               static_cast<T *>(d_lowp));
}

}  // namespace

/* ---- launchers ------------------------------------------------------------------------- */

void cg_k_check_finite(const float *d_g, int64_t n, cg_scaler_t *d_scaler, cudaStream_t s) {
  CG_ASSERT(n >= 0 && d_scaler != NULL);
  if (n == 0) return;
  CG_ASSERT(d_g != NULL);
  check_finite_kernel<<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_g, n, d_scaler);
  CG_CHECK_LAUNCH("check_finite_kernel");
}

void cg_k_grad_keep(const float *d_g, float *d_acc, int64_t n, cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_g != NULL && d_acc != NULL);
  grad_keep_kernel<<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_g, d_acc, n);
  CG_CHECK_LAUNCH("grad_keep_kernel");
}

void cg_k_grad_take(float *d_g, float *d_acc, int64_t n, cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_g != NULL && d_acc != NULL);
  grad_take_kernel<<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_g, d_acc, n);
  CG_CHECK_LAUNCH("grad_take_kernel");
}

size_t cg_k_grad_norm_work_bytes(void) { return kNormBlocks * sizeof(double); }

void cg_k_grad_norm(const float *d_g, int64_t n, const cg_scaler_t *d_scaler, float max_norm,
                    void *d_work, cg_gnorm_t *d_gn, cudaStream_t s) {
  CG_ASSERT(n >= 0 && d_work != NULL && d_gn != NULL && (n == 0 || d_g != NULL));
  double *part = static_cast<double *>(d_work);
  grad_norm_part_kernel<<<kNormBlocks, kBlock, 0, s>>>(d_g, n, part);
  CG_CHECK_LAUNCH("grad_norm_part_kernel");
  grad_norm_finish_kernel<<<1, kBlock, 0, s>>>(part, d_scaler, max_norm, d_gn);
  CG_CHECK_LAUNCH("grad_norm_finish_kernel");
}

void cg_k_adamw(float *d_p, const float *d_g, float *d_m, float *d_v, int64_t n,
                const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler, const cg_gnorm_t *d_gn,
                cg_dtype_t dt, void *d_lowp, float *d_ema, cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_p != NULL && d_g != NULL && d_m != NULL && d_v != NULL && d_hp != NULL);
  const cg_gnorm_t *gn = d_gn;
  float *e = d_ema;
  if (d_lowp == NULL) {
    adamw_launch<float>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, gn, NULL, e, s);
  } else {
    switch (dt) {
      case CG_DT_F32:
        adamw_launch<float>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, gn, d_lowp, e, s);
        break;
      case CG_DT_BF16:
        adamw_launch<__nv_bfloat16>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, gn, d_lowp, e, s);
        break;
      case CG_DT_F16:
        adamw_launch<__half>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, gn, d_lowp, e, s);
        break;
      default: CG_FATAL("unknown cg_dtype_t %d", (int)dt);
    }
  }
  CG_CHECK_LAUNCH("adamw_kernel");
}

void cg_k_scaler_update(cg_scaler_t *d_scaler, cudaStream_t s) {
  CG_ASSERT(d_scaler != NULL);
  scaler_update_kernel<<<1, 1, 0, s>>>(d_scaler);
  CG_CHECK_LAUNCH("scaler_update_kernel");
}

void cg_k_sgd(float *d_p, const float *d_g, float *d_buf, int64_t n, const cg_step_params_t *d_hp,
              const cg_scaler_t *d_scaler, const cg_gnorm_t *d_gn, float momentum, int nesterov,
              cg_dtype_t dt, void *d_lowp, float *d_ema, cudaStream_t s) {
  CG_ASSERT(n >= 0 && momentum >= 0.0f && momentum < 1.0f);
  if (n == 0) return;
  CG_ASSERT(d_p != NULL && d_g != NULL && d_buf != NULL && d_hp != NULL);
  float *e = d_ema;
  switch (d_lowp == NULL ? CG_DT_F32 : dt) {
    case CG_DT_F32:
      sgd_launch<float>(d_p, d_g, d_buf, n, d_hp, d_scaler, d_gn, momentum, nesterov, d_lowp, e,
                        s);
      break;
    case CG_DT_BF16:
      sgd_launch<__nv_bfloat16>(d_p, d_g, d_buf, n, d_hp, d_scaler, d_gn, momentum, nesterov,
                                d_lowp, e, s);
      break;
    case CG_DT_F16:
      sgd_launch<__half>(d_p, d_g, d_buf, n, d_hp, d_scaler, d_gn, momentum, nesterov, d_lowp, e,
                         s);
      break;
    default: CG_FATAL("unknown cg_dtype_t %d", (int)dt);
  }
  CG_CHECK_LAUNCH("sgd_kernel");
}

void cg_k_ema_swap(float *d_p, float *d_e, int64_t n, cg_dtype_t dt, void *d_lowp,
                   cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_p != NULL && d_e != NULL);
  switch (d_lowp == NULL ? CG_DT_F32 : dt) {
    case CG_DT_F32: ema_swap_launch<float>(d_p, d_e, n, d_lowp, s); break;
    case CG_DT_BF16: ema_swap_launch<__nv_bfloat16>(d_p, d_e, n, d_lowp, s); break;
    case CG_DT_F16: ema_swap_launch<__half>(d_p, d_e, n, d_lowp, s); break;
    default: CG_FATAL("unknown cg_dtype_t %d", (int)dt);
  }
  CG_CHECK_LAUNCH("ema_swap_kernel");
}
