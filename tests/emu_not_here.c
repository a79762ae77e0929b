/* emu_not_here.c: what test_gpu_layers.c links to but test_layers_emu never runs (kernels of
 * other .cu files, CUDA graphs): each aborts with its name if it is reached. Deliberately
 * without the real headers, whose prototypes these symbols only stand in for at link time. */
#include <stdio.h>
#include <stdlib.h>

#define CG_EMU_NOT_HERE(f)                                                                     \
  void f(void);                                                                                \
  void f(void) {                                                                               \
    fprintf(stderr, "test_layers_emu: %s is not emulated\n", #f);                              \
    abort();                                                                                   \
  }
CG_EMU_NOT_HERE(cg_k_scaler_update)
CG_EMU_NOT_HERE(cg_k_check_finite)
CG_EMU_NOT_HERE(cg_k_adamw)
CG_EMU_NOT_HERE(cg_k_loss)
CG_EMU_NOT_HERE(cg_k_loss_work_bytes)
CG_EMU_NOT_HERE(cg_head_bwd_fused)
CG_EMU_NOT_HERE(cg_head_bwd_fused_work_bytes)
CG_EMU_NOT_HERE(cudaGraphDestroy)
CG_EMU_NOT_HERE(cudaGraphExecDestroy)
CG_EMU_NOT_HERE(cudaGraphInstantiate)
CG_EMU_NOT_HERE(cudaGraphLaunch)
CG_EMU_NOT_HERE(cudaStreamBeginCapture)
CG_EMU_NOT_HERE(cudaStreamEndCapture)
