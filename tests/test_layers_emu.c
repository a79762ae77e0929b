/* test_layers_emu.c: test_gpu_layers on the emulated device, against the same CPU references:
 * cuda/kernels_act.cu, kernels_loss.cu, kernels_optim.cu and head.cu, kernels and launchers as
 * they are (rebuilt by tests/emu_launch.py; tests/emu_runtime.cc for the runtime), so that
 * machines without a GPU (CI) run them. The largest shapes are left out (g_small). */
#define main test_gpu_layers_main
#include "test_gpu_layers.c"
#undef main

void cg_emu_schedule(int skewed); /* emu_runtime.cc */

int main(void) {
  if (cg_test_gpu_begin("test_layers_emu", &S, &g_seed)) return CG_TEST_SKIP;
  g_small = 1;
  const double t0 = cg_now();
  for (int skewed = 0; skewed <= 1; skewed++) { /* both schedules of emu_cuda.h */
    cg_emu_schedule(skewed);
    test_all();
  }
  printf("test_layers_emu: %.2f s\n", cg_now() - t0);
  return cg_test_done("test_layers_emu");
}
