/* gpu_ohem_check.h: the OHEM threshold check of test_gpu_layers (binary) and test_gpu_mclass
 * (K classes), gpu_ohem_check.c; linked into both, on the GPU and on the emulated device. */
#ifndef CG_GPU_OHEM_CHECK_H
#define CG_GPU_OHEM_CHECK_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "cpu_layers.h" /* cg_loss_opt_t */
#include "dtype.h"      /* cg_dtype_t */

/* cg_k_ohem_thr over the n samples of logits d_z (nclass K, ignore ign) into d_thr (n floats),
 * checked in two parts that do not depend on the device's libm rounding as the CPU's does:
 *  - its keys (the device's d_keys) against cg_cpu_ohem_key on the same (rounded) host logits
 *    z: the same pixels valid, each key within 1 float ulp (the exact ones counted; the
 *    emulator, which runs glibc's exp, gives them all);
 *  - its thresholds bitwise cg_cpu_ohem_select of the device's own keys (the select exact).
 * Counts the branch each sample took into hits: [0] thresh, [1] v above it, [2] +inf. */
void cg_test_ohem_thr(const char *tag, cg_dtype_t dt, const float *z, const void *d_z,
                      const uint8_t *mask, const uint8_t *d_mask, int n, int64_t hw, int K, int ign,
                      const cg_loss_opt_t *lo, float *d_thr, int hits[3], cudaStream_t s);

#endif
