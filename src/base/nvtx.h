/* nvtx.h: NVTX ranges around the same regions as the --trace-out timeline (step, data wait,
 * results, forward, backward, optimizer, helper tasks), so Nsight Systems shows them too.
 * Header-only NVTX 3 from the CUDA toolkit when built with CUDA; no-ops otherwise. */
#ifndef CG_NVTX_H
#define CG_NVTX_H

#ifdef COGPU_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
static inline void cg_nvtx_push(const char *name) { nvtxRangePushA(name); }
static inline void cg_nvtx_pop(void) { nvtxRangePop(); }
#else
static inline void cg_nvtx_push(const char *name) { (void)name; }
static inline void cg_nvtx_pop(void) {}
#endif

#endif
