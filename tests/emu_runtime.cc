/* emu_runtime.cc: a stand-in for the CUDA runtime calls that the kernel files rebuilt for the
 * emulated device (tests/emu_kernels.h, emu_launch.py) and the GPU tests run on them make, on
 * host memory: "device" memory is aligned_alloc with the guard bytes of testutil_cuda.h, copies
 * are memcpy, streams are nothing (every launch has run when it returns), a captured stream
 * keeps its launches for cudaGraphLaunch. Linked instead of libcudart and testutil_cuda.c. */
#include "emu_kernels.h" /* g_faults, g_emu_capture; CUDA headers */

#include <cstdlib>

extern "C" {
#include "testutil.h"
#include "testutil_cuda.h"
}

extern "C" {
/* The schedule of every kernel file's emulator (emu_cuda.h): 0 warps in lockstep with cp.async
 * copies landing as late as allowed, 1 warps skewed with copies landing at once. */
void cg_emu_schedule(int skewed) { emu_schedule(skewed != 0); }

cudaError_t cudaGetLastError(void) { return g_faults ? cudaErrorUnknown : cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "a fault of the emulated device"; }
const char *cudaGetErrorName(cudaError_t) { return "cudaErrorUnknown (emulated)"; }
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) {
  if (g_emu_capture) /* a node of the graph being captured, as a launch is */
    g_emu_capture->push_back([d, v, n] { memset(d, v, n); });
  else
    memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

/* Graphs: one stream captured at a time; a graph and its executable are its list of launches. */
using emu_graph = std::vector<std::function<void()>>;
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (g_emu_capture) return cudaErrorIllegalState;
  g_emu_capture = new emu_graph;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
  if (!g_emu_capture) return cudaErrorIllegalState;
  *g = reinterpret_cast<cudaGraph_t>(g_emu_capture);
  g_emu_capture = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *ge, cudaGraph_t g, unsigned long long) {
  *ge = reinterpret_cast<cudaGraphExec_t>(new emu_graph(*reinterpret_cast<emu_graph *>(g)));
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t ge, cudaStream_t) {
  for (auto &run : *reinterpret_cast<emu_graph *>(ge)) run();
  return g_faults ? cudaErrorUnknown : cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t ge) {
  delete reinterpret_cast<emu_graph *>(ge);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete reinterpret_cast<emu_graph *>(g);
  return cudaSuccess;
}

int cg_test_need_gpu(void) { return 0; }
int cg_test_gpu_begin(const char *name, cudaStream_t *s, uint64_t *seed) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  *s = NULL;
  *seed = cg_test_seed();
  printf("%s on the emulated device (tests/emu_cuda.h), seed %llu\n", name,
         (unsigned long long)*seed);
  return 0;
}
void *cg_test_dnew(size_t bytes, cudaStream_t) {
  const size_t n = (bytes + CG_TEST_GUARD + 255) / 256 * 256;
  void *p = aligned_alloc(256, n);
  if (!p) abort();
  memset(p, 0xFF, n); /* as on the device: NaN everywhere, the guard included */
  return p;
}
void cg_test_dfree(void *d, cudaStream_t) { free(d); }
void cg_test_dsync(cudaStream_t) {}
void cg_test_dpoison(void *d, size_t bytes, cudaStream_t) { memset(d, 0xFF, bytes); }
void cg_test_hput(void *d, const void *h, size_t bytes, cudaStream_t) { memcpy(d, h, bytes); }
void cg_test_hget(void *h, const void *d, size_t bytes, cudaStream_t) { memcpy(h, d, bytes); }
void cg_test_guard_check(const char *name, const void *d, size_t bytes, cudaStream_t) {
  const unsigned char *g = static_cast<const unsigned char *>(d) + bytes;
  size_t bad = 0;
  for (int i = 0; i < CG_TEST_GUARD; i++) bad += g[i] != 0xFF;
  CG_TEST_CHECK(bad == 0, "%s: %zu guard bytes after the buffer were written", name, bad);
}

}
