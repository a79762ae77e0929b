/* dtype.h: the element type of activations and low-precision weights on a device, and its size.
 *
 * fp32 master weights, optimizer state and the flat gradient buffer are always float; only the
 * compute copy of the parameters and the activations take this type. Ground floor: no library
 * header, so any module may include it (the CUDA kernels map it to a C++ type in
 * cuda/dtype.cuh). */
#ifndef CG_DTYPE_H
#define CG_DTYPE_H

#include <stddef.h>

typedef enum { CG_DT_F32 = 0, CG_DT_BF16 = 1, CG_DT_F16 = 2 } cg_dtype_t;

/* Bytes per element. */
static inline size_t cg_dtype_size(cg_dtype_t t) { return t == CG_DT_F32 ? 4 : 2; }

#endif
