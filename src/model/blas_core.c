/* blas_core.c: OpenBLAS's kernels for this CPU (blas_core.h). */
#include "blas_core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#ifdef COGPU_HAVE_OPENBLAS
#include <cblas.h> /* openblas_get_corename */

#define ENV_FROM "CG_BLAS_CORE_FROM" /* set across the restart: what the library chose first */

/* The strongest kernel family of OpenBLAS 0.3.x this CPU runs, or NULL (nothing to gain). */
static const char *supported_core(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512cd"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

/* OpenBLAS's x86-64 cores without AVX2 kernels: a fallback on a CPU that has AVX2. */
static int pre_avx2(const char *name) {
  static const char *const kOld[] = {"Prescott",  "Core2",      "Penryn",   "Dunnington",
                                     "Nehalem",   "Atom",       "Katmai",   "Coppermine",
                                     "Northwood", "Banias",     "Opteron",  "Opteron(SSE3)",
                                     "Barcelona", "Bobcat",     "Athlon",   "SandyBridge",
                                     "Bulldozer", "Piledriver", "Steamroller", "Unknown"};
  for (size_t i = 0; i < sizeof kOld / sizeof kOld[0]; i++)
    if (!strcasecmp(name, kOld[i])) return 1;
  return 0;
}

void cg_blas_pick_core(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv(ENV_FROM)) return; /* the user's, or done */
  const char *want = supported_core(), *have = openblas_get_corename();
  if (!want || !have || !pre_avx2(have)) return;
  char from[64];
  snprintf(from, sizeof from, "%s", have);
  if (setenv("OPENBLAS_CORETYPE", want, 1) || setenv(ENV_FROM, from, 1)) return;
  execv("/proc/self/exe", argv);
  const int e = errno; /* still here: carry on with the library's choice */
  unsetenv("OPENBLAS_CORETYPE");
  cg_log_warn("OpenBLAS took this CPU for %s and could not be restarted with its %s kernels "
              "(execv /proc/self/exe: %s): the cpu backend runs about 2-3x slower; set "
              "OPENBLAS_CORETYPE=%s in the environment", from, want, strerror(e), want);
}

void cg_blas_core_str(char *buf, unsigned len) {
  const char *name = openblas_get_corename(), *from = getenv(ENV_FROM);
  if (from && getenv("OPENBLAS_CORETYPE"))
    snprintf(buf, len, "%s (chosen by cogpu-dist: the library took this CPU for %s)",
             name ? name : "?", from);
  else
    snprintf(buf, len, "%s", name ? name : "?");
}

#else

void cg_blas_pick_core(char **argv) { (void)argv; }

void cg_blas_core_str(char *buf, unsigned len) { snprintf(buf, len, "none (no OpenBLAS)"); }

#endif
