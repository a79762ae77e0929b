/* backend_choose.c: which backend and precision a command runs with (cg_backend_choose).
 *
 * train, predict and the benches read --backend and --precision the same way, here. This is the
 * one file that asks whether the build has CUDA: the #if below picks the two answers at file
 * level, so no command has an #ifdef in its body for it. */
#include "backend_choose.h"

#include <string.h>

#include "log.h" /* CG_CHECK_MPI */

#ifdef COGPU_HAVE_CUDA
static const cg_backend_ops_t *cuda_ops(void) { return &cg_backend_cuda; }
static int cuda_usable(char *why, size_t len) { return cg_cuda_usable(why, len); }
#else
static const cg_backend_ops_t *cuda_ops(void) { return NULL; }
static int cuda_usable(char *why, size_t len) {
  snprintf(why, len, "built without CUDA");
  return 0;
}
#endif

/* --precision: auto, or the name of a precision; -1 for anything else. */
static int parse_precision(const char *s, int use_cuda) {
  if (!s || !strcmp(s, "fp32")) return CG_PREC_FP32;
  if (!strcmp(s, "auto")) return use_cuda ? CG_PREC_BF16 : CG_PREC_FP32;
  if (!strcmp(s, "bf16")) return CG_PREC_BF16;
  if (!strcmp(s, "fp16")) return CG_PREC_FP16;
  return -1;
}

int cg_backend_choose(const char *backend, const char *precision, const cg_comm_t *c, FILE *note,
                      cg_backend_choice_t *out, char *err, size_t errlen) {
  const int want_cuda = !strcmp(backend, "cuda"), want_cpu = !strcmp(backend, "cpu");
  if (!want_cuda && !want_cpu && strcmp(backend, "auto")) {
    snprintf(err, errlen, "--backend: '%s' is not one of auto|cpu|cuda", backend);
    return -1;
  }
  char why[256] = "";
  const int usable = want_cpu ? 0 : cuda_usable(why, sizeof why);
  int all_usable = usable; /* every rank must take the same backend: gradients are summed */
  if (c) CG_CHECK_MPI(MPI_Allreduce(&usable, &all_usable, 1, MPI_INT, MPI_MIN, c->world));
  if (usable && !all_usable) snprintf(why, sizeof why, "not on every rank");
  if (want_cuda && !all_usable) {
    if (usable) snprintf(err, errlen, "--backend cuda: no usable GPU on some rank");
    else snprintf(err, errlen, "--backend cuda: no usable GPU (%s)", why);
    return -1;
  }
  const int use_cuda = !want_cpu && all_usable;
  if (note && !want_cuda && !want_cpu) {
    if (use_cuda) fprintf(note, "backend: cuda (auto: a GPU is usable on every rank)\n");
    else fprintf(note, "backend: cpu (auto: no usable GPU: %s)\n", why);
  }
  const int prec = parse_precision(precision, use_cuda);
  if (prec < 0) {
    snprintf(err, errlen, "--precision: '%s' is not one of auto|fp32|bf16|fp16", precision);
    return -1;
  }
  out->ops = use_cuda ? cuda_ops() : &cg_backend_cpu;
  out->is_cuda = use_cuda;
  out->precision = (cg_precision_t)prec;
  if (!use_cuda && out->precision != CG_PREC_FP32) {
    snprintf(err, errlen, "--precision %s needs a GPU (the cpu backend computes in fp32)",
             cg_precision_name(out->precision));
    return -1;
  }
  return 0;
}
