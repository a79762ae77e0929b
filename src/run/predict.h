/* predict.h: the `predict` command (see predict.c). */
#ifndef CG_PREDICT_H
#define CG_PREDICT_H

#include "comm.h"

/* argv[0] = "predict". Returns the process exit code (0, 1 on write failures, 2 usage). */
int cg_predict_run(int argc, char **argv, cg_comm_t *c);

/* predict's command line (argv[0] = "predict") parsed and checked as cg_predict_run does it,
 * nothing else done: 0, 1 for --help, or -1 with the message in err. For fuzz_cli. */
int cg_predict_parse_args(int argc, char **argv, char *err, size_t errlen);

#endif
