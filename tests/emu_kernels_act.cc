/* emu_kernels_act.cc: cuda/kernels_act.cu — kernels and launchers as they are — built for the
 * emulated device of tests/emu_cuda.h, with a host-memory stand-in for the CUDA runtime calls
 * they and test_gpu_layers.c make; for test_layers_emu. The build rewrites the file's <<<>>>
 * launches first (tests/emu_launch.py -> kernels_act_emu.inc).
 *
 * "Device" memory is host memory here: cg_test_dnew is aligned_alloc with the guard bytes of
 * testutil_cuda.h, copies are memcpy, streams are nothing. Static __shared__ arrays become
 * function statics (one block runs at a time, so that is the block's shared memory). Kernels of
 * the other .cu files that test_gpu_layers.c also calls (loss, AdamW, head, graphs) abort
 * (emu_not_here.c): test_layers_emu runs only its element-wise sections. */
#include "emu_cuda.h" /* the emulated device; CUDA headers */

#include <cstdlib>

extern "C" {
#include "kernels.h"
#include "testutil.h"
#include "testutil_cuda.h"
}

#undef __shared__
#define __shared__ static
#undef __grid_constant__
#define __grid_constant__

/* The rewritten launch: kernel on grid x block with smem bytes of dynamic shared memory. */
template <typename K> static void emu_go(dim3 grid, dim3 block, size_t smem, cudaStream_t, K k) {
  if (grid.z != 1 || block.z != 1) {
    fault("launch: a three-dimensional grid or block", nullptr, grid.z);
    return;
  }
  launch(grid.x, grid.y, block.x, block.y, smem, k);
}
template <typename K> static void emu_go(dim3 grid, dim3 block, size_t smem, K k) {
  emu_go(grid, block, smem, nullptr, k);
}
template <typename K> static void emu_go(dim3 grid, dim3 block, K k) {
  emu_go(grid, block, 0, nullptr, k);
}

#include "kernels_act_emu.inc"

/* ---- the runtime calls, on host memory ------------------------------------------------ */

extern "C" {
cudaError_t cudaGetLastError(void) { return g_faults ? cudaErrorUnknown : cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "a fault of the emulated device"; }
const char *cudaGetErrorName(cudaError_t) { return "cudaErrorUnknown (emulated)"; }
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) {
  memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

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
