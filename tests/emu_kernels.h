/* emu_kernels.h: the head of a .cu file rebuilt for the emulated device (tests/emu_cuda.h).
 * tests/emu_launch.py writes cuda/X.cu as X_emu.cc: this header, then the file itself with its
 * <<<>>> launches turned into emu_go calls and its extern __shared__ arrays into views of the
 * block's dynamic shared memory. A launch's arguments are evaluated and copied when it
 * launches, as CUDA's are (a captured launch runs them at replay). Kernels and launchers run as
 * they are; tests/emu_runtime.cc
 * stands in for the CUDA runtime calls on host memory ("device" memory is host memory).
 *
 * Static __shared__ arrays become function statics: one block runs at a time, so that is the
 * block's shared memory (not poisoned between blocks, unlike the dynamic one). A launch goes to
 * its stream (emu_enqueue): it runs at once, or later in the stream's order (lazy streams), or
 * at cudaGraphLaunch when made while a stream is being captured. */
#ifndef CG_TEST_EMU_KERNELS_H
#define CG_TEST_EMU_KERNELS_H

#include "emu_cuda.h" /* the emulated device; CUDA headers */

#include <functional>

#undef __shared__
#define __shared__ static
#undef __grid_constant__
#define __grid_constant__

/* Work for the emulated device on stream s (emu_runtime.cc): run now, or queued on s until
 * something waits for it (lazy and early streams: cg_emu_streams), or kept as a node of the
 * graph being captured (cudaStreamBeginCapture) to run at each cudaGraphLaunch. */
void emu_enqueue(cudaStream_t s, std::function<void()> fn);
bool emu_captured(cudaStream_t s); /* s is being captured: its work goes into the graph */

/* The rewritten launch: k(args...) on grid x block with smem bytes of dynamic shared memory,
 * the arguments as evaluated at the launch (copies, as CUDA's), now or at the graph's replay. */
struct emu_cfg_t {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
static inline emu_cfg_t emu_cfg(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t s = nullptr) {
  return {grid, block, smem, s};
}
template <typename K, typename... A> static void emu_go(emu_cfg_t c, K k, A... args) {
  if (c.block.z != 1) {
    fault("launch: a three-dimensional block", nullptr, c.block.z);
    return;
  }
  auto run = [c, k, args...] {
    launch3(c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.smem, [&] { k(args...); });
  };
  emu_enqueue(c.stream, run);
}

/* The runtime's C++ overloads for a kernel given as a function (cuda_runtime.h declares them
 * only under nvcc). The emulated device is an H100/H200's SM: 227 KB of shared memory a block
 * at most, 228 KB and 2,048 threads an SM, 1 KB reserved per block; registers are not modelled,
 * so the occupancy is shared memory's and threads'. */
template <typename T> cudaError_t cudaFuncSetAttribute(T *, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize &&
      (value < 0 || (size_t)value > kEmuSmemBlock))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, T *, int threads, size_t smem) {
  if (threads < 1 || threads > 1024 || smem > kEmuSmemBlock) return cudaErrorInvalidValue;
  const int by_smem = (int)(kEmuSmemSm / (smem + 1024)), by_threads = 2048 / threads;
  *n = by_smem < by_threads ? by_smem : by_threads;
  if (*n > 32) *n = 32;
  return cudaSuccess;
}

#endif
