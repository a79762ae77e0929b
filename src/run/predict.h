/* predict.h: the `predict` command (see predict.c). */
#ifndef CG_PREDICT_H
#define CG_PREDICT_H

#include "comm.h"

/* argv[0] = "predict". Returns the process exit code (0, 1 on write failures, 2 usage). */
int cg_predict_run(int argc, char **argv, cg_comm_t *c);

#endif
