/* kernels_optim.cu: the optimizer step on the GPU: the inf/NaN check of the gradients, fused
 * AdamW over the flat fp32 master buffer (with the compute-precision copy of the parameters
 * written in the same pass), and the dynamic loss-scaler update. See kernels.h.
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

/* ---- kernels --------------------------------------------------------------------------- */

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

template <typename T>
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                             const cg_step_params_t *hp, const cg_scaler_t *scaler, T *lowp) {
  if (scaler && scaler->found_inf) return; /* skipped step: p, m, v, lowp untouched */
  const float lr = hp->lr, b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
  const float grad_mul = scaler ? 1.0f / scaler->scale : 1.0f;
  const float step = lr / hp->bc1;                 /* lr / (1 - beta1^t) */
  const float inv_sqrt_bc2 = 1.0f / sqrtf(hp->bc2); /* 1 / sqrt(1 - beta2^t) */
  const float decay = 1.0f - lr * hp->weight_decay;
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
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
void adamw_launch(float *d_p, const float *d_g, float *d_m, float *d_v, int64_t n,
                  const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler, void *d_lowp,
                  cudaStream_t s) {
  adamw_kernel<T><<<cg_grid_for(n, kBlock), kBlock, 0, s>>>(d_p, d_g, d_m, d_v, n, d_hp,
                                                             d_scaler, static_cast<T *>(d_lowp));
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

void cg_k_adamw(float *d_p, const float *d_g, float *d_m, float *d_v, int64_t n,
                const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler, cg_dtype_t dt,
                void *d_lowp, cudaStream_t s) {
  CG_ASSERT(n >= 0);
  if (n == 0) return;
  CG_ASSERT(d_p != NULL && d_g != NULL && d_m != NULL && d_v != NULL && d_hp != NULL);
  if (d_lowp == NULL) {
    adamw_launch<float>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, NULL, s);
  } else {
    switch (dt) {
      case CG_DT_F32: adamw_launch<float>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, d_lowp, s); break;
      case CG_DT_BF16:
        adamw_launch<__nv_bfloat16>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, d_lowp, s);
        break;
      case CG_DT_F16: adamw_launch<__half>(d_p, d_g, d_m, d_v, n, d_hp, d_scaler, d_lowp, s); break;
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
