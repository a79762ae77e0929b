/* emu_not_here.c: what the tests rebuilt for the emulated device link to but never run there:
 * the CUDA backend for the tests of the kernels alone (test_layers_emu and kin, which link no
 * backend: cgemu), NCCL's all-reduce for those of the whole backend (one rank: cgemu_step,
 * built with CG_EMU_BACKEND). Each aborts with its name if it is reached. Deliberately without
 * the real headers, whose prototypes these symbols only stand in for at link time. */
#include <stdio.h>
#include <stdlib.h>

#define CG_EMU_NOT_HERE(f)                                                                     \
  void f(void);                                                                                \
  void f(void) {                                                                               \
    fprintf(stderr, "emulated device: %s is not emulated\n", #f);                              \
    abort();                                                                                   \
  }
#ifndef CG_EMU_BACKEND /* cgemu_step has the backend itself */
CG_EMU_NOT_HERE(cg_backend_cuda)
#endif
/* NCCL (comm/nccl_comm.c): one rank, no communicator, on the emulated device */
CG_EMU_NOT_HERE(cg_nccl_size)
CG_EMU_NOT_HERE(cg_nccl_device)
CG_EMU_NOT_HERE(cg_nccl_allreduce_sum_f32)
CG_EMU_NOT_HERE(cg_nccl_allreduce_sum_bf16)
