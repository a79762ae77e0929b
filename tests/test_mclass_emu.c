/* test_mclass_emu.c: test_gpu_mclass on the emulated device, against the same CPU references:
 * its kernel sections (the K-class loss, head and confusion counts: cuda/kernels_loss.cu, head.cu
 * and kernels_feat.cu as they are, rebuilt by tests/emu_launch.py; tests/emu_runtime.cc for the
 * runtime) under both schedules of the emulator, then its whole K-class training step (section
 * 4: the CUDA backend, tests/emu_cudnn.cc for cuDNN) once. */
#define main test_gpu_mclass_main
#include "test_gpu_mclass.c"
#undef main

void cg_emu_schedule(int skewed); /* emu_runtime.cc */

int main(void) {
  if (cg_test_gpu_begin("test_mclass_emu", &S, &g_seed)) return CG_TEST_SKIP;
  const double t0 = cg_now();
  for (int skewed = 0; skewed <= 1; skewed++) { /* both schedules of emu_cuda.h */
    cg_emu_schedule(skewed);
    test_kernels();
  }
  cg_emu_schedule(0);
  test_step_k();
  printf("test_mclass_emu: %.2f s\n", cg_now() - t0);
  return cg_test_done("test_mclass_emu");
}
