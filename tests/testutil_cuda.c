/* testutil_cuda.c: see testutil_cuda.h. */
#include "testutil_cuda.h"

#include <stdio.h>

#include "backend.h"    /* cg_cuda_usable */
#include "cuda_check.h" /* CG_CHECK_CUDA */
#include "testutil.h"

int cg_test_need_gpu(void) {
  char why[256];
  if (cg_cuda_usable(why, sizeof why)) return 0;
  printf("SKIP: no usable CUDA device (%s)\n", why);
  return CG_TEST_SKIP;
}

int cg_test_gpu_begin(const char *name, cudaStream_t *s, uint64_t *seed) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  struct cudaDeviceProp prop;
  CG_CHECK_CUDA(cudaSetDevice(0));
  CG_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  CG_CHECK_CUDA(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking));
  *seed = cg_test_seed();
  printf("%s on %s (sm_%d%d), seed %llu (CG_TEST_SEED=%llu repeats this run)\n", name, prop.name,
         prop.major, prop.minor, (unsigned long long)*seed, (unsigned long long)*seed);
  return 0;
}

/* ---- guarded device buffers ------------------------------------------------------------ */

void *cg_test_dnew(size_t bytes, cudaStream_t s) {
  void *d = NULL;
  CG_CHECK_CUDA(cudaMalloc(&d, bytes + CG_TEST_GUARD));
  CG_CHECK_CUDA(cudaMemsetAsync(d, 0xFF, bytes + CG_TEST_GUARD, s));
  return d;
}

void cg_test_dfree(void *d, cudaStream_t s) {
  CG_CHECK_CUDA(cudaStreamSynchronize(s)); /* no kernel may still use it */
  if (d) CG_CHECK_CUDA(cudaFree(d));
}

void cg_test_dsync(cudaStream_t s) {
  CG_CHECK_CUDA(cudaStreamSynchronize(s));
  CG_CHECK_CUDA(cudaGetLastError());
}

void cg_test_dpoison(void *d, size_t bytes, cudaStream_t s) {
  CG_CHECK_CUDA(cudaMemsetAsync(d, 0xFF, bytes, s));
}

/* No copy of 0 bytes (the pointers may then be NULL); the wait is there either way. */
void cg_test_hput(void *d, const void *h, size_t bytes, cudaStream_t s) {
  if (bytes) CG_CHECK_CUDA(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, s));
  cg_test_dsync(s);
}

void cg_test_hget(void *h, const void *d, size_t bytes, cudaStream_t s) {
  if (bytes) CG_CHECK_CUDA(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, s));
  cg_test_dsync(s);
}

void cg_test_guard_check(const char *name, const void *d, size_t bytes, cudaStream_t s) {
  unsigned char g[CG_TEST_GUARD];
  cg_test_hget(g, (const char *)d + bytes, CG_TEST_GUARD, s);
  size_t bad = 0;
  for (size_t i = 0; i < CG_TEST_GUARD; i++) bad += g[i] != 0xFF;
  CG_TEST_CHECK(bad == 0, "%s: %zu guard bytes after the output were overwritten", name, bad);
}
