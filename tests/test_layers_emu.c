/* test_layers_emu.c: test_gpu_layers' element-wise sections (bias + activation, max pool,
 * concat, casts, padding, their strided forms) on the emulated device, against the same CPU
 * references: cuda/kernels_act.cu's kernels and launchers as they are (emu_kernels_act.cc),
 * so that machines without a GPU (CI) run them. The largest shapes are left out (g_small): the
 * emulation runs a thread per CUDA thread. */
#define main test_gpu_layers_main
#include "test_gpu_layers.c"
#undef main

int main(void) {
  if (cg_test_gpu_begin("test_layers_emu", &S, &g_seed)) return CG_TEST_SKIP;
  g_small = 1;
  const double t0 = cg_now();
  test_elementwise();
  printf("test_layers_emu: %.2f s\n", cg_now() - t0);
  return cg_test_done("test_layers_emu");
}
