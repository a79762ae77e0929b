/* emu_cudnn.cc: the part of cuDNN the CUDA backend uses, for the backend running on the emulated
 * device (tests/emu_kernels.h, emu_runtime.cc): the legacy convolution API computed by plain
 * loops on host memory, and a graph API (cudnnBackend*) that has no engine for anything.
 *
 * Why: with it, the whole training step of cuda/backend_cuda.cu (conv.cu's search, our own
 * kernels chosen beside "cuDNN", the concat buffers' strided halves, the captured graph) runs on
 * a machine without a GPU, against the CPU backend (test_step_emu). What the loops stand in
 * for is only the library's arithmetic, which the GPU tests check against the same CPU
 * reference on a GPU.
 *
 * The legacy API as conv.cu uses it: NHWC tensors (4d, packed or with strides), KRSC filters,
 * 2-D cross-correlation with padding, stride and dilation, alpha and beta (float), fp32, bf16
 * or fp16 data summed in double (cuDNN sums in fp32, in blocks: a long fp32 sum in one order
 * would be further from the CPU reference than cuDNN is), each output rounded once.
 * cudnnFind*Ex runs the operation once and reports one algorithm (number 1, deterministic, no
 * workspace, the descriptor's math type): the search then has one legacy candidate, as if
 * cuDNN had one. A convolution goes to the handle's stream (cudnnSetStream) as a kernel launch
 * does (emu_enqueue: its operands' descriptors copied, as cuDNN bakes them into its launches).
 * The graph API refuses every descriptor (CUDNN_STATUS_NOT_SUPPORTED), which conv.cu takes as
 * "no graph-API engine". */
#include "emu_kernels.h" /* emu_enqueue; CUDA headers */

#include <cudnn.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace {

struct tensor_t {
  cudnnDataType_t dt;
  int n, c, h, w;
  int sn, sc, sh, sw; /* strides in elements */
};
struct filter_t {
  cudnnDataType_t dt;
  int k, c, r, s; /* KRSC in memory */
};
struct conv_t {
  int ph, pw, u, v, dh, dw;
  cudnnMathType_t math;
};

float get(cudnnDataType_t dt, const void *p, size_t i) {
  switch (dt) {
    case CUDNN_DATA_FLOAT: return static_cast<const float *>(p)[i];
    case CUDNN_DATA_BFLOAT16: return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    case CUDNN_DATA_HALF: return __half2float(static_cast<const __half *>(p)[i]);
    default: abort();
  }
}
void put(cudnnDataType_t dt, void *p, size_t i, float v) {
  switch (dt) {
    case CUDNN_DATA_FLOAT: static_cast<float *>(p)[i] = v; break;
    case CUDNN_DATA_BFLOAT16: static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v); break;
    case CUDNN_DATA_HALF: static_cast<__half *>(p)[i] = __float2half_rn(v); break;
    default: abort();
  }
}
bool known(cudnnDataType_t dt) {
  return dt == CUDNN_DATA_FLOAT || dt == CUDNN_DATA_BFLOAT16 || dt == CUDNN_DATA_HALF;
}
size_t at(const tensor_t &t, int n, int c, int h, int w) {
  return (size_t)n * t.sn + (size_t)c * t.sc + (size_t)h * t.sh + (size_t)w * t.sw;
}
size_t fat(const filter_t &f, int k, int c, int r, int s) {
  return (((size_t)k * f.r + r) * f.s + s) * f.c + c;
}
/* out = alpha * acc + beta * out, out's beta term read only when beta != 0 (as cuDNN: a NaN
 * in an overwritten output does not leak). */
void store(cudnnDataType_t dt, void *p, size_t i, float alpha, float beta, double acc) {
  const float v = (float)acc;
  put(dt, p, i, beta != 0.0f ? alpha * v + beta * get(dt, p, i) : alpha * v);
}

/* The shapes agree as a convolution of x (a) by f into y (b). */
bool consistent(const tensor_t &a, const filter_t &f, const conv_t &cv, const tensor_t &b) {
  if (!known(a.dt) || a.dt != b.dt || a.dt != f.dt) return false;
  if (a.n != b.n || a.c != f.c || b.c != f.k) return false;
  const int oh = (a.h + 2 * cv.ph - cv.dh * (f.r - 1) - 1) / cv.u + 1;
  const int ow = (a.w + 2 * cv.pw - cv.dw * (f.s - 1) - 1) / cv.v + 1;
  return oh == b.h && ow == b.w;
}

/* The three operations, each output element summed in one fixed order. */
void fwd(const tensor_t a, const void *x, const filter_t f, const void *w, const conv_t cv,
         float alpha, float beta, const tensor_t b, void *y) {
  for (int n = 0; n < b.n; n++)
    for (int oh = 0; oh < b.h; oh++)
      for (int ow = 0; ow < b.w; ow++)
        for (int k = 0; k < b.c; k++) {
          double acc = 0.0;
          for (int r = 0; r < f.r; r++) {
            const int ih = oh * cv.u - cv.ph + r * cv.dh;
            if (ih < 0 || ih >= a.h) continue;
            for (int s = 0; s < f.s; s++) {
              const int iw = ow * cv.v - cv.pw + s * cv.dw;
              if (iw < 0 || iw >= a.w) continue;
              for (int c = 0; c < a.c; c++)
                acc += (double)get(a.dt, x, at(a, n, c, ih, iw)) *
                       get(f.dt, w, fat(f, k, c, r, s));
            }
          }
          store(b.dt, y, at(b, n, k, oh, ow), alpha, beta, acc);
        }
}
void bwd_data(const filter_t f, const void *w, const tensor_t b, const void *dy, const conv_t cv,
              float alpha, float beta, const tensor_t a, void *dx) {
  for (int n = 0; n < a.n; n++)
    for (int ih = 0; ih < a.h; ih++)
      for (int iw = 0; iw < a.w; iw++)
        for (int c = 0; c < a.c; c++) {
          double acc = 0.0;
          for (int r = 0; r < f.r; r++) {
            const int th = ih + cv.ph - r * cv.dh; /* = oh * u */
            if (th < 0 || th % cv.u || th / cv.u >= b.h) continue;
            for (int s = 0; s < f.s; s++) {
              const int tw = iw + cv.pw - s * cv.dw;
              if (tw < 0 || tw % cv.v || tw / cv.v >= b.w) continue;
              for (int k = 0; k < b.c; k++)
                acc += (double)get(b.dt, dy, at(b, n, k, th / cv.u, tw / cv.v)) *
                       get(f.dt, w, fat(f, k, c, r, s));
            }
          }
          store(a.dt, dx, at(a, n, c, ih, iw), alpha, beta, acc);
        }
}
void bwd_filter(const tensor_t a, const void *x, const tensor_t b, const void *dy, const conv_t cv,
                float alpha, float beta, const filter_t f, void *dw) {
  for (int k = 0; k < f.k; k++)
    for (int r = 0; r < f.r; r++)
      for (int s = 0; s < f.s; s++)
        for (int c = 0; c < f.c; c++) {
          double acc = 0.0;
          for (int n = 0; n < b.n; n++)
            for (int oh = 0; oh < b.h; oh++) {
              const int ih = oh * cv.u - cv.ph + r * cv.dh;
              if (ih < 0 || ih >= a.h) continue;
              for (int ow = 0; ow < b.w; ow++) {
                const int iw = ow * cv.v - cv.pw + s * cv.dw;
                if (iw < 0 || iw >= a.w) continue;
                acc += (double)get(a.dt, x, at(a, n, c, ih, iw)) *
                       get(b.dt, dy, at(b, n, k, oh, ow));
              }
            }
          store(f.dt, dw, fat(f, k, c, r, s), alpha, beta, acc);
        }
}

struct handle_t {
  cudaStream_t s; /* cudnnSetStream's */
};
cudaStream_t stream_of(cudnnHandle_t h) { return reinterpret_cast<handle_t *>(h)->s; }
/* A convolution of a by f into b (cuDNN's roles): op(alpha, beta) on the handle's stream
 * (emu_enqueue: now, later in the stream's order, or at the replay of the graph being
 * captured), alpha and beta read now, as cuDNN does. */
template <typename O>
cudnnStatus_t enqueue(cudnnHandle_t h, const tensor_t &a, const filter_t &f, const conv_t &cv,
                      const tensor_t &b, const void *alpha, const void *beta, O op) {
  if (!consistent(a, f, cv, b)) return CUDNN_STATUS_BAD_PARAM;
  const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
  emu_enqueue(stream_of(h), [=] { op(al, be); });
  return CUDNN_STATUS_SUCCESS;
}

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}
const float kOne = 1.0f, kZero = 0.0f; /* alpha and beta of cudnnFind*Ex's runs */
template <typename P> void one_result(P *perf, int *got, cudnnMathType_t math, float ms) {
  memset(perf, 0, sizeof *perf);
  perf->algo = static_cast<decltype(perf->algo)>(1);
  perf->status = CUDNN_STATUS_SUCCESS;
  perf->time = ms;
  perf->memory = 0;
  perf->determinism = CUDNN_DETERMINISTIC;
  perf->mathType = math;
  *got = 1;
}
/* cudnnFind*Ex: the operation once (run()), synchronously as cuDNN's, timed after what the
 * stream had before; one result. */
template <typename P, typename R>
cudnnStatus_t find(cudnnHandle_t h, const cudnnConvolutionDescriptor_t cd, int want, int *got,
                   P *perf, R run) {
  if (want < 1 || emu_captured(stream_of(h))) return CUDNN_STATUS_BAD_PARAM;
  if (cudaStreamSynchronize(stream_of(h)) != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED;
  const double t0 = now_ms();
  cudnnStatus_t st = run();
  if (st == CUDNN_STATUS_SUCCESS && cudaStreamSynchronize(stream_of(h)) != cudaSuccess)
    st = CUDNN_STATUS_EXECUTION_FAILED;
  if (st == CUDNN_STATUS_SUCCESS)
    one_result(perf, got, reinterpret_cast<const conv_t *>(cd)->math, (float)(now_ms() - t0));
  return st;
}

}  // namespace

#define T(d) (*reinterpret_cast<const tensor_t *>(d))
#define F(d) (*reinterpret_cast<const filter_t *>(d))
#define C(d) (*reinterpret_cast<const conv_t *>(d))

extern "C" {

size_t cudnnGetVersion(void) { return 91400; }
const char *cudnnGetErrorString(cudnnStatus_t st) {
  switch (st) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED (emulated cuDNN)";
    default: return "CUDNN_STATUS_(other) (emulated cuDNN)";
  }
}
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
  *h = reinterpret_cast<cudnnHandle_t>(new handle_t{nullptr});
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
  delete reinterpret_cast<handle_t *>(h);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
  reinterpret_cast<handle_t *>(h)->s = s;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
  *d = reinterpret_cast<cudnnTensorDescriptor_t>(new tensor_t());
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete reinterpret_cast<tensor_t *>(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int n,
                                           int c, int h, int w, int sn, int sc, int sh, int sw) {
  if (!known(dt) || n < 1 || c < 1 || h < 1 || w < 1 || sn < 1 || sc < 1 || sh < 1 || sw < 1)
    return CUDNN_STATUS_BAD_PARAM;
  *reinterpret_cast<tensor_t *>(d) = tensor_t{dt, n, c, h, w, sn, sc, sh, sw};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t fmt,
                                         cudnnDataType_t dt, int n, int c, int h, int w) {
  if (fmt == CUDNN_TENSOR_NHWC)
    return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, h * w * c, 1, w * c, c);
  if (fmt == CUDNN_TENSOR_NCHW)
    return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, c * h * w, h * w, w, 1);
  return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
  *d = reinterpret_cast<cudnnFilterDescriptor_t>(new filter_t());
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete reinterpret_cast<filter_t *>(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt,
                                         cudnnTensorFormat_t fmt, int k, int c, int h, int w) {
  if (fmt != CUDNN_TENSOR_NHWC) return CUDNN_STATUS_NOT_SUPPORTED; /* KRSC only, as used */
  if (!known(dt) || k < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
  *reinterpret_cast<filter_t *>(d) = filter_t{dt, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
  *d = reinterpret_cast<cudnnConvolutionDescriptor_t>(new conv_t());
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete reinterpret_cast<conv_t *>(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw,
                                              int u, int v, int dh, int dw,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t acc) {
  if (mode != CUDNN_CROSS_CORRELATION || acc != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (ph < 0 || pw < 0 || u < 1 || v < 1 || dh < 1 || dw < 1) return CUDNN_STATUS_BAD_PARAM;
  conv_t *c = reinterpret_cast<conv_t *>(d);
  *c = conv_t{ph, pw, u, v, dh, dw, c->math};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  reinterpret_cast<conv_t *>(d)->math = m;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd,
                                                    const cudnnTensorDescriptor_t xd,
                                                    const cudnnFilterDescriptor_t wd, int *n,
                                                    int *c, int *h, int *w) {
  const tensor_t &a = T(xd);
  const filter_t &f = F(wd);
  const conv_t &cv = C(cd);
  if (a.c != f.c) return CUDNN_STATUS_BAD_PARAM;
  *n = a.n;
  *c = f.k;
  *h = (a.h + 2 * cv.ph - cv.dh * (f.r - 1) - 1) / cv.u + 1;
  *w = (a.w + 2 * cv.pw - cv.dw * (f.s - 1) - 1) / cv.v + 1;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t,
                                                      const cudnnFilterDescriptor_t,
                                                      const cudnnConvolutionDescriptor_t,
                                                      const cudnnTensorDescriptor_t,
                                                      cudnnConvolutionFwdAlgo_t, size_t *b) {
  *b = 0;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t, const cudnnFilterDescriptor_t, const cudnnTensorDescriptor_t,
    const cudnnConvolutionDescriptor_t, const cudnnTensorDescriptor_t,
    cudnnConvolutionBwdDataAlgo_t, size_t *b) {
  *b = 0;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t, const cudnnTensorDescriptor_t, const cudnnTensorDescriptor_t,
    const cudnnConvolutionDescriptor_t, const cudnnFilterDescriptor_t,
    cudnnConvolutionBwdFilterAlgo_t, size_t *b) {
  *b = 0;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      const cudnnTensorDescriptor_t xd, const void *x,
                                      const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cd,
                                      cudnnConvolutionFwdAlgo_t, void *, size_t, const void *beta,
                                      const cudnnTensorDescriptor_t yd, void *y) {
  const tensor_t a = T(xd), b = T(yd);
  const filter_t f = F(wd);
  const conv_t cv = C(cd);
  return enqueue(h, a, f, cv, b, alpha, beta,
                 [=](float al, float be) { fwd(a, x, f, w, cv, al, be, b, y); });
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           const cudnnFilterDescriptor_t wd, const void *w,
                                           const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cd,
                                           cudnnConvolutionBwdDataAlgo_t, void *, size_t,
                                           const void *beta, const cudnnTensorDescriptor_t dxd,
                                           void *dx) {
  const tensor_t a = T(dxd), b = T(dyd);
  const filter_t f = F(wd);
  const conv_t cv = C(cd);
  return enqueue(h, a, f, cv, b, alpha, beta,
                 [=](float al, float be) { bwd_data(f, w, b, dy, cv, al, be, a, dx); });
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             const cudnnTensorDescriptor_t xd, const void *x,
                                             const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t, void *, size_t,
                                             const void *beta, const cudnnFilterDescriptor_t dwd,
                                             void *dw) {
  const tensor_t a = T(xd), b = T(dyd);
  const filter_t f = F(dwd);
  const conv_t cv = C(cd);
  return enqueue(h, a, f, cv, b, alpha, beta,
                 [=](float al, float be) { bwd_filter(a, x, b, dy, cv, al, be, f, dw); });
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void *x,
    const cudnnFilterDescriptor_t wd, const void *w, const cudnnConvolutionDescriptor_t cd,
    const cudnnTensorDescriptor_t yd, void *y, const int want, int *got,
    cudnnConvolutionFwdAlgoPerf_t *perf, void *ws, size_t wsb) {
  return find(h, cd, want, got, perf, [&] {
    return cudnnConvolutionForward(h, &kOne, xd, x, wd, w, cd,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws, wsb,
                                   &kZero, yd, y);
  });
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t h, const cudnnFilterDescriptor_t wd, const void *w,
    const cudnnTensorDescriptor_t dyd, const void *dy, const cudnnConvolutionDescriptor_t cd,
    const cudnnTensorDescriptor_t dxd, void *dx, const int want, int *got,
    cudnnConvolutionBwdDataAlgoPerf_t *perf, void *ws, size_t wsb) {
  return find(h, cd, want, got, perf, [&] {
    return cudnnConvolutionBackwardData(h, &kOne, wd, w, dyd, dy, cd,
                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws, wsb, &kZero, dxd,
                                        dx);
  });
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void *x,
    const cudnnTensorDescriptor_t dyd, const void *dy, const cudnnConvolutionDescriptor_t cd,
    const cudnnFilterDescriptor_t dwd, void *dw, const int want, int *got,
    cudnnConvolutionBwdFilterAlgoPerf_t *perf, void *ws, size_t wsb) {
  return find(h, cd, want, got, perf, [&] {
    return cudnnConvolutionBackwardFilter(h, &kOne, xd, x, dyd, dy, cd,
                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws, wsb, &kZero,
                                          dwd, dw);
  });
}

/* The graph API: no engine for anything. */
cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t,
                                           cudnnBackendDescriptor_t *d) {
  *d = nullptr;
  return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t) {
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, int64_t, const void *) {
  return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const, cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, int64_t, int64_t *, void *) {
  return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t) { return CUDNN_STATUS_NOT_SUPPORTED; }
cudnnStatus_t cudnnBackendExecute(cudnnHandle_t, cudnnBackendDescriptor_t,
                                  cudnnBackendDescriptor_t) {
  return CUDNN_STATUS_NOT_SUPPORTED;
}

}  // extern "C"
