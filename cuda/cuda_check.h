/* cuda_check.h: check macros for the CUDA runtime, cuDNN and NCCL, and the element types.
 *
 * Each macro names rank, host, file:line, the call as text and the library's error string
 * (via cg_fatal in src/log.h, which ends the job with MPI_Abort). Included by .cu files
 * (compiled as C++ by nvcc) and by C files of the CUDA backend. */
#ifndef CG_CUDA_CHECK_H
#define CG_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif
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

#ifdef COGPU_HAVE_NCCL
#include <nccl.h>
#define CG_CHECK_NCCL(call)                                                                 \
  do {                                                                                      \
    ncclResult_t cg_nccl_rc_ = (call);                                                      \
    if (cg_nccl_rc_ != ncclSuccess)                                                         \
      cg_fatal(__FILE__, __LINE__, #call, "%s", ncclGetErrorString(cg_nccl_rc_));            \
  } while (0)
#endif

/* Element type of activations / low-precision weights on the device. fp32 master weights,
 * optimizer state and the flat gradient buffer are always float. */
typedef enum { CG_DT_F32 = 0, CG_DT_BF16 = 1, CG_DT_F16 = 2 } cg_dtype_t;

static inline size_t cg_dtype_size(cg_dtype_t t) { return t == CG_DT_F32 ? 4 : 2; }

#endif
