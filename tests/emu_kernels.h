/* emu_kernels.h: the head of a .cu file rebuilt for the emulated device (tests/emu_cuda.h).
 * tests/emu_launch.py writes cuda/X.cu as X_emu.cc: this header, then the file itself with its
 * <<<>>> launches turned into emu_go calls and its extern __shared__ arrays into views of the
 * block's dynamic shared memory. A launch's arguments are the launcher's parameters and locals,
 * copied when it launches (a captured launch's expressions are evaluated at replay, on those
 * copies). Kernels and launchers run as they are; tests/emu_runtime.cc
 * stands in for the CUDA runtime calls on host memory ("device" memory is host memory).
 *
 * Static __shared__ arrays become function statics: one block runs at a time, so that is the
 * block's shared memory (not poisoned between blocks, unlike the dynamic one). A launch made
 * while a stream is being captured (cudaStreamBeginCapture) is kept, with its arguments taken
 * by value as CUDA takes them, and runs at cudaGraphLaunch. */
#ifndef CG_TEST_EMU_KERNELS_H
#define CG_TEST_EMU_KERNELS_H

#include "emu_cuda.h" /* the emulated device; CUDA headers */

#include <functional>
#include <vector>

#undef __shared__
#define __shared__ static
#undef __grid_constant__
#define __grid_constant__

/* The launches of the stream being captured, in order; NULL when none is (emu_runtime.cc). */
inline std::vector<std::function<void()>> *g_emu_capture;

/* The rewritten launch: kernel on grid x block with smem bytes of dynamic shared memory. */
template <typename K> static void emu_go(dim3 grid, dim3 block, size_t smem, cudaStream_t, K k) {
  if (block.z != 1) {
    fault("launch: a three-dimensional block", nullptr, block.z);
    return;
  }
  auto run = [grid, block, smem, k] {
    launch3(grid.x, grid.y, grid.z, block.x, block.y, smem, k);
  };
  if (g_emu_capture)
    g_emu_capture->push_back(run);
  else
    run();
}
template <typename K> static void emu_go(dim3 grid, dim3 block, size_t smem, K k) {
  emu_go(grid, block, smem, nullptr, k);
}
template <typename K> static void emu_go(dim3 grid, dim3 block, K k) {
  emu_go(grid, block, 0, nullptr, k);
}

#endif
