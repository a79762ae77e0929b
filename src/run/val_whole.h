/* val_whole.h: validation over whole images (--val-mode whole and full; val_whole.c has the
 * rules). */
#ifndef CG_VAL_WHOLE_H
#define CG_VAL_WHOLE_H

#include "run.h"          /* cg_run_t */
#include "train_report.h" /* cg_val_t */

/* Collective: one pass over r->val_src, each image whole by overlapping tiles through r's
 * backend (full: scored at the image's own size); counts and loss summed over ranks (the caller
 * frees confk). */
cg_val_t cg_validate_whole(cg_run_t *r);

#endif
