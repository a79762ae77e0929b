/* backend_choose.h: the one reading of --backend and --precision (backend_choose.c), for every
 * command: train, predict and the benchmarks. It is the only place that names the CUDA backend
 * (model/backend.h's cg_backend_cuda), so no command body carries an #ifdef COGPU_HAVE_CUDA. */
#ifndef CG_BACKEND_CHOOSE_H
#define CG_BACKEND_CHOOSE_H

#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "comm.h"

/* What --backend and --precision resolve to. */
typedef struct {
  const cg_backend_ops_t *ops; /* &cg_backend_cpu or &cg_backend_cuda */
  int is_cuda;
  cg_precision_t precision;
} cg_backend_choice_t;

/* The one reading of --backend auto|cuda|cpu and --precision auto|fp32|bf16|fp16, for every
 * command (train, predict, the benches). auto takes the CUDA backend when a GPU is usable: with
 * c, on every rank of c->world (collective: every rank gets the same choice and verdict); with
 * c NULL, in this process. Precision auto is bf16 on CUDA and fp32 on the cpu backend, which
 * computes in fp32 only; precision NULL is fp32. note (optional, e.g. rank 0's stdout) gets one
 * line saying what auto chose and why. Returns 0, or -1 with a one-line message in err: a usage
 * error (exit code 2). A build without CUDA reports it as "no usable GPU (built without CUDA)". */
int cg_backend_choose(const char *backend, const char *precision, const cg_comm_t *c, FILE *note,
                      cg_backend_choice_t *out, char *err, size_t errlen);

#endif
