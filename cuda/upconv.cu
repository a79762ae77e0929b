/* upconv.cu: the 2x2 stride-2 transposed convolution's kernels (upconv.h).
 *
 * Every operation is a matrix product over input pixels m (upconv.h), computed with wmma
 * 16x16x16 tiles from shared memory:
 *   forward:        Y[m][(a,b,co)] = X[m][ci] W[ci][(a,b,co)]   (K = cin)
 *   input gradient: dX[m][ci] = dYg[m][(a,b,co)] W[ci][(a,b,co)]  (K = 4 cout; W as col-major B)
 *   weight grad.:   dW[ci][(a,b,co)] = sum over m of X[m][ci] dYg[m][(a,b,co)]  (K = pixels)
 * where dYg is dy gathered: row m holds the four output pixels (2i + a, 2j + b) of input pixel
 * (i, j), cout channels each, one after the other. Tiles of kBM input pixels are brought to
 * shared memory by cp.async, two buffers deep (the next tile loads while this one computes),
 * rows padded by 16 bytes against bank conflicts. Blocks are persistent (one wave; a block
 * loads the weights once and walks tiles blockIdx.x, + gridDim.x, ...).
 *
 * Forward and input gradient: a warp owns 16 rows of the tile and all its output columns; its
 * 16x16 results go through a small fp32 tile in shared memory (wmma's register layout is not
 * specified) to 16-byte stores, with the bias, ReLU or accumulation on the way.
 * Weight gradient: the eight warps share out the cin x 4cout output in 16x16 fragments, NF each,
 * kept in registers over all the block's tiles (split-K over pixels); where NF would pass 8 the
 * columns are split into S parts by (a, b) (gridDim.y), each block loading only its parts of
 * dy. Each block writes its partial sums to work; a second kernel adds them in block order. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.cuh"
#include "mma.cuh"
#include "upconv.h"

#include "upconv_kernels.cuh"

namespace {

/* ---- launch ------------------------------------------------------------------------------ */

/* Tests: CG_UPCONV_MAX_BLOCKS=N caps the blocks along x (so that each walks many tiles and
 * its two buffers take turns); 0 when unset. */
int64_t max_blocks() {
  const char *cap = getenv("CG_UPCONV_MAX_BLOCKS");
  return cap && atoi(cap) > 0 ? atoi(cap) : 0;
}

/* The GPU's opt-in shared memory a block (bytes), asked once; kSmemMax (an H100/H200's) where
 * it cannot be asked. */
int smem_limit() {
  static int lim = 0; /* one GPU per process (one rank per GPU) */
  if (!lim) {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
        v > 0)
      lim = v;
    else
      lim = kSmemMax;
    (void)cudaGetLastError();
  }
  return lim;
}

int sm_count() {
  static int sms = 0; /* one GPU per process (one rank per GPU) */
  if (!sms) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
      sms = kSmsDefault;
  }
  return sms;
}

/* Raises kernel k's dynamic shared memory limit to smem (never lowers it: a captured launch
 * of another shape must stay valid at replay) and returns its blocks an SM (>= 1), asked of the
 * occupancy API once per kernel and shared memory size (per process: one GPU each). */
cudaError_t prepare(void (*k)(args_t), int smem, int *per_sm) {
  static struct {
    void (*k)(args_t);
    int raised, occ_smem, occ;
  } t[64];
  static int nk = 0;
  int i = 0;
  while (i < nk && t[i].k != k) i++;
  if (i == nk) {
    if (nk == 64) return cudaErrorInvalidValue; /* never: fewer kernels exist */
    t[nk].k = k;
    t[nk].raised = 0;
    t[nk++].occ_smem = -1;
  }
  if (smem > t[i].raised) {
    const cudaError_t rc =
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (rc != cudaSuccess) return rc;
    t[i].raised = smem;
  }
  if (t[i].occ_smem != smem) {
    int occ = 1;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k, kThreads, smem) != cudaSuccess ||
        occ < 1)
      occ = 1;
    (void)cudaGetLastError();
    t[i].occ = occ;
    t[i].occ_smem = smem;
  }
  *per_sm = t[i].occ;
  return cudaSuccess;
}

template <typename T> cudaError_t wgrad_kernel_for(int nf, void (**k)(args_t)) {
  switch (nf) {
    case 1: *k = upw_kernel<T, 1>; return cudaSuccess;
    case 2: *k = upw_kernel<T, 2>; return cudaSuccess;
    case 4: *k = upw_kernel<T, 4>; return cudaSuccess;
    case 8: *k = upw_kernel<T, 8>; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

/* The weight gradient's kernel, split and grid (wgrad_blocks along x, parts along y). */
cudaError_t wgrad_grid(const cg_upconv_shape_t *s, int *blocks, int *parts, int *nf, int *smem,
                       void (**k)(args_t)) {
  wgrad_split(s, parts, nf);
  *smem = wgrad_smem(s, *parts);
  const cudaError_t rc = s->dt == CG_DT_BF16 ? wgrad_kernel_for<__nv_bfloat16>(*nf, k)
                                             : wgrad_kernel_for<__half>(*nf, k);
  if (rc != cudaSuccess) return rc;
  int per_sm = 1;
  const cudaError_t pr = prepare(*k, *smem, &per_sm);
  if (pr != cudaSuccess) return pr;
  *blocks = (int)wgrad_blocks(s, *parts, (int64_t)sm_count() * per_sm, max_blocks());
  return cudaSuccess;
}

template <typename T, int CI>
cudaError_t launch_dx(const cg_upconv_shape_t *s, args_t a, cudaStream_t stream) {
  const bool dg = s->op == CG_UPCONV_DGRAD;
  auto k = dg ? updx_kernel<T, CI, true> : updx_kernel<T, CI, false>;
  const int smem = dx_smem(s->cin, s->cout, dg);
  int per_sm = 1;
  const cudaError_t rc = prepare(k, smem, &per_sm);
  if (rc != cudaSuccess) return rc;
  const unsigned grid = (unsigned)dx_blocks(a.tiles, (int64_t)sm_count() * per_sm, max_blocks());
  k<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_dx_ci(const cg_upconv_shape_t *s, const args_t &a, cudaStream_t stream) {
  switch (s->cin) {
    case 16: return launch_dx<T, 1>(s, a, stream);
    case 32: return launch_dx<T, 2>(s, a, stream);
    case 64: return launch_dx<T, 4>(s, a, stream);
    case 128: return launch_dx<T, 8>(s, a, stream);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_w(const cg_upconv_shape_t *s, args_t a, float *db, size_t work_bytes,
                     cudaStream_t stream) {
  int blocks, parts, nf, smem;
  void (*k)(args_t);
  const cudaError_t rc = wgrad_grid(s, &blocks, &parts, &nf, &smem, &k);
  if (rc != cudaSuccess) return rc;
  /* the grid as sized by cg_upconv_work_bytes, unless the environment changed since */
  if ((size_t)blocks * (size_t)a.wstride * sizeof(float) > work_bytes) return cudaErrorInvalidValue;
  k<<<dim3((unsigned)blocks, (unsigned)parts), kThreads, smem, stream>>>(a);
  const cudaError_t lr = cudaGetLastError();
  if (lr != cudaSuccess) return lr;
  const int total = s->cin * 4 * s->cout + (db ? s->cout : 0);
  upw_reduce<T><<<(total + 31) / 32, kThreads, kThreads * sizeof(float), stream>>>(
      a.work, a.wstride, blocks, s->cin, s->cout, static_cast<T *>(a.out), db);
  return cudaGetLastError();
}

}  // namespace

extern "C" int cg_upconv_supported(const cg_upconv_shape_t *s) {
  return shape_ok(s, smem_limit());
}

extern "C" void cg_upconv_describe(const cg_upconv_shape_t *s, char *buf, size_t len) {
  static const char *const names[3] = {"forward", "input gradient", "weight gradient"};
  if (!cg_upconv_supported(s)) {
    snprintf(buf, len, "upconv: unsupported");
    return;
  }
  if (s->op == CG_UPCONV_WGRAD) {
    int parts, nf;
    wgrad_split(s, &parts, &nf);
    snprintf(buf, len, "upconv %s %dx%d %d->%d: %d column part(s), %d fragments a warp, "
             "%.1f KB shared, %zu bytes of partial sums", names[s->op], s->h, s->w, s->cin,
             s->cout, parts, nf, wgrad_smem(s, parts) / 1024.0, cg_upconv_work_bytes(s));
    return;
  }
  snprintf(buf, len, "upconv %s %dx%d %d->%d: tiles of %d pixels, %.1f KB shared%s%s%s",
           names[s->op], s->h, s->w, s->cin, s->cout, kBM,
           dx_smem(s->cin, s->cout, s->op == CG_UPCONV_DGRAD) / 1024.0,
           s->op == CG_UPCONV_FWD && s->bias ? ", +bias" : "",
           s->op == CG_UPCONV_FWD && s->relu ? ", relu" : "",
           s->op == CG_UPCONV_DGRAD && s->accum ? ", accumulated" : "");
}

extern "C" size_t cg_upconv_work_bytes(const cg_upconv_shape_t *s) {
  if (!cg_upconv_supported(s) || s->op != CG_UPCONV_WGRAD) return 0;
  int blocks, parts, nf, smem;
  void (*k)(args_t);
  if (wgrad_grid(s, &blocks, &parts, &nf, &smem, &k) != cudaSuccess) {
    (void)cudaGetLastError();
    return kWorkMax; /* the most any grid uses */
  }
  return (size_t)blocks * (size_t)wgrad_stride(s) * sizeof(float);
}

extern "C" cudaError_t cg_upconv_run(const cg_upconv_shape_t *s, const void *a, const void *b,
                                     const float *bias, void *out, float *db, void *work,
                                     size_t work_bytes, cudaStream_t stream) {
  if (!cg_upconv_supported(s) || !a || !b || !out) return cudaErrorInvalidValue;
  const bool w = s->op == CG_UPCONV_WGRAD;
  if (s->op == CG_UPCONV_FWD && s->bias && (!bias || (uintptr_t)bias % 4))
    return cudaErrorInvalidValue;
  if (w && (!work || (uintptr_t)work % 256 || (uintptr_t)db % 4)) return cudaErrorInvalidValue;
  /* 16-byte copies of the activations; the weights (and dw) element by element */
  const uintptr_t act = (uintptr_t)a | (w ? (uintptr_t)b : (uintptr_t)out);
  if (act % 16 || (uintptr_t)(w ? out : b) % 2) return cudaErrorInvalidValue;
  const args_t r = make_args(s, a, b, bias, out, work, db != NULL);
  if (w)
    return s->dt == CG_DT_BF16 ? launch_w<__nv_bfloat16>(s, r, db, work_bytes, stream)
                               : launch_w<__half>(s, r, db, work_bytes, stream);
  return s->dt == CG_DT_BF16 ? launch_dx_ci<__nv_bfloat16>(s, r, stream)
                             : launch_dx_ci<__half>(s, r, stream);
}

extern "C" cudaError_t cg_upconv_reference(const cg_upconv_shape_t *s, const void *a,
                                           const void *b, const float *bias, void *out, float *db,
                                           cudaStream_t stream) {
  if (!s || (s->dt != CG_DT_BF16 && s->dt != CG_DT_F16) || s->op < CG_UPCONV_FWD ||
      s->op > CG_UPCONV_WGRAD || s->n < 1 || s->h < 1 || s->w < 1 || s->cin < 1 ||
      s->cout < 1 || s->ldx < s->cin || s->ldy < s->cout || !a || !b || !out ||
      (s->op == CG_UPCONV_FWD && s->bias && !bias))
    return cudaErrorInvalidValue;
  const args_t r = make_args(s, a, b, bias, out, NULL, false);
  const int64_t total = s->op == CG_UPCONV_FWD ? r.m * 4 * s->cout : r.m * s->cin;
  const unsigned grid = (unsigned)((total + 255) / 256 < 65536 ? (total + 255) / 256 : 65536);
  const unsigned wblocks = (unsigned)(s->cin * 4 * s->cout + (db ? s->cout : 0));
  CG_DT_SWITCH(s->dt, T,
               if (s->op == CG_UPCONV_FWD) ref_fwd<T><<<grid, 256, 0, stream>>>(r);
               else if (s->op == CG_UPCONV_DGRAD) ref_dgrad<T><<<grid, 256, 0, stream>>>(r);
               else ref_wgrad<T><<<wblocks, 256, 256 * sizeof(float), stream>>>(r, db));
  return cudaGetLastError();
}
