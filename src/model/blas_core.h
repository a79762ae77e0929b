/* blas_core.h: OpenBLAS's kernels for this CPU.
 *
 * Debian's OpenBLAS picks its kernels at load time from the CPU's model number. On a CPU newer
 * than the library (or one a hypervisor reports oddly) it falls back to its oldest x86-64
 * kernels ("Prescott", SSE3): on a 2-core AVX-512 VM that made the CPU backend's convolutions
 * about 2.7x slower than with the AVX-512 kernels the CPU can run. The choice is made in the
 * library's constructor, before main, and OPENBLAS_CORETYPE is read only then; so a process
 * that finds a pre-AVX2 choice on a CPU with AVX2 + FMA (or AVX-512) sets OPENBLAS_CORETYPE to
 * what the CPU supports (Haswell, or SkylakeX) and executes itself again, once, before MPI is
 * started. A user's own OPENBLAS_CORETYPE is left alone. */
#ifndef CG_BLAS_CORE_H
#define CG_BLAS_CORE_H

/* Call first in main (argv as main got it, NULL-terminated): returns only when the process
 * keeps its kernels (nothing to fix, no OpenBLAS, or the restart failed: a warning says so). */
void cg_blas_pick_core(char **argv);

/* What OpenBLAS runs here for the banner: "SkylakeX (chosen by cogpu-dist: the library took this
 * CPU for Prescott)", "Haswell", or "none" without OpenBLAS. */
void cg_blas_core_str(char *buf, unsigned len);

#endif
