/* testutil_cuda.h: the GPU tests' shared set-up (built into cgtest in CUDA builds only).
 *  - cg_test_need_gpu: the skip where no CUDA device is usable (ctest reads exit 77 as skipped);
 *  - cg_test_gpu_begin: the start of the kernel tests (device 0, a non-blocking stream, a seed);
 *  - guarded device buffers: each is followed by CG_TEST_GUARD bytes of 0xFF that no kernel may
 *    touch, and every fill and copy goes through the caller's stream s, so that it is ordered
 *    with the kernels (cudaMemset/cudaMemcpy on the legacy stream would not be, when s is
 *    non-blocking). Failed CUDA calls are fatal (CG_CHECK_CUDA). */
#ifndef CG_TESTUTIL_CUDA_H
#define CG_TESTUTIL_CUDA_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* 0 where a CUDA device is usable; else prints "SKIP: no usable CUDA device (why)" and returns
 * CG_TEST_SKIP, which main returns. */
int cg_test_need_gpu(void);

/* Line-buffers stdout; without a usable device returns CG_TEST_SKIP (see cg_test_need_gpu).
 * Else selects device 0, creates the non-blocking stream *s (the caller destroys it), sets
 * *seed (cg_test_seed), prints "<name> on <device> (sm_XY), seed <n> ..." and returns 0. */
int cg_test_gpu_begin(const char *name, cudaStream_t *s, uint64_t *seed);

#define CG_TEST_GUARD 256 /* bytes after every guarded device buffer */

/* A device buffer of bytes + CG_TEST_GUARD bytes, all 0xFF (NaN in every float type, 255 in a
 * mask); cg_test_dfree waits for s (no kernel may still use it) and frees it (NULL: no-op). */
void *cg_test_dnew(size_t bytes, cudaStream_t s);
void cg_test_dfree(void *d, cudaStream_t s);
/* Waits for s and surfaces asynchronous kernel faults here. */
void cg_test_dsync(cudaStream_t s);
/* bytes of 0xFF at d. */
void cg_test_dpoison(void *d, size_t bytes, cudaStream_t s);
/* Copies to / from the device and waits (h may be freed or read right after). */
void cg_test_hput(void *d, const void *h, size_t bytes, cudaStream_t s);
void cg_test_hget(void *h, const void *d, size_t bytes, cudaStream_t s);
/* A test failure (named) unless the CG_TEST_GUARD bytes after [d, d + bytes) are all 0xFF. */
void cg_test_guard_check(const char *name, const void *d, size_t bytes, cudaStream_t s);

#endif
