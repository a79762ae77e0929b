/* cuda_check.h: check macros for the CUDA runtime and cuDNN, and (from src/base/dtype.h) the element
 * type every user of them passes around.
 *
 * Each macro names rank, host, file:line, the call as text and the library's error string
 * (via cg_fatal in src/base/log.h, which ends the job with MPI_Abort). Included by .cu files
 * (compiled as C++ by nvcc) and by C files of the CUDA backend. NCCL's check lives with its
 * only user, comm/nccl_comm.c: comm/ does not include cuda/. */
#ifndef CG_CUDA_CHECK_H
#define CG_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "dtype.h"
#include "log.h"
#ifdef __cplusplus
}
#endif

#define CG_CHECK_CUDA(call)                                                                 \
  do {                                                                                      \
    cudaError_t cg_cu_rc_ = (call);                                                         \
    if (cg_cu_rc_ != cudaSuccess)                                                           \
      cg_fatal(__FILE__, __LINE__, #call, "%s (%s)", cudaGetErrorString(cg_cu_rc_),          \
               cudaGetErrorName(cg_cu_rc_));                                                \
  } while (0)

/* After a kernel launch: launch-configuration errors surface here. */
#define CG_CHECK_LAUNCH(kernel_name)                                                        \
  do {                                                                                      \
    cudaError_t cg_cu_rc_ = cudaGetLastError();                                             \
    if (cg_cu_rc_ != cudaSuccess)                                                           \
      cg_fatal(__FILE__, __LINE__, "launch " kernel_name, "%s", cudaGetErrorString(cg_cu_rc_)); \
  } while (0)

#define CG_CHECK_CUDNN(call)                                                                \
  do {                                                                                      \
    cudnnStatus_t cg_dnn_rc_ = (call);                                                      \
    if (cg_dnn_rc_ != CUDNN_STATUS_SUCCESS)                                                 \
      cg_fatal(__FILE__, __LINE__, #call, "%s", cudnnGetErrorString(cg_dnn_rc_));            \
  } while (0)

#endif
