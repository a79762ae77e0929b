/* datacheck.h: bad samples before training starts — the samples --skip-bad left out when the
 * files were opened, and --check-data: every sample decoded once, split over ranks and threads,
 * so that a bad file is found (and listed, with every other one) before the first step rather
 * than hours in. The rule for a bad sample is in source.h. */
#ifndef CG_DATACHECK_H
#define CG_DATACHECK_H

#include <stddef.h>

#include "comm.h"
#include "source.h"

/* Call after every rank opened *data (and *val, NULL if none) from the same files; collective.
 * Without check, rank 0 prints how many samples --skip-bad left out at open, with the first
 * reasons. With check (the sources opened with skip_bad and all_why, source.h): rank 0 lists
 * every sample left out at open; rank r loads samples r, r + R, ... with `threads` threads and
 * prints each bad one it finds; rank 0 prints the summary (samples and files checked, bad, both
 * kinds counted, seconds). Then, when samples were bad: with skip_bad *data / *val become
 * views without them (owning the sources they replace; identical on every rank) and 0 is
 * returned; without it, or when every sample is bad, -1 with the message in err (the caller
 * exits 2). With check, rank 0 also prints the classes' shares of *data's pixels (nclass
 * classes, named beside their ids by names, or NULL; the ignore label, -1 for none, left out;
 * whole: each image whole, as random crops see it, and loaded so for the check, else its
 * fitted square) and the balanced class weights they give (cg_datacheck_balanced), as the flag
 * that sets them, and every rank gets the counts of *data's mask values in hist_out (256,
 * optional). flag: the option the errors name ("--check-data", or what else asked for the
 * pass). */
int cg_datacheck_run(cg_source_t **data, cg_source_t **val, cg_comm_t *c, int threads, int check,
                     int skip_bad, int nclass, int ignore, int whole, const char *const *names,
                     int64_t *hist_out, const char *flag, char *err, size_t errlen);

/* Balanced class weights from the pixel counts n[0..K) of K >= 2 classes: N / (K n_c), N their
 * sum (scikit-learn's compute_class_weight("balanced")); a class without pixels gets 1. Binary
 * (K = 1; n[0] background, n[1] foreground pixels): w[0] = n[0] / n[1], the pos_weight of
 * torch.nn.BCEWithLogitsLoss's documentation (1 without foreground or without background).
 * Each at most 1e6, the flags' limit. 0 when there is no pixel at all (w untouched), else 1. */
int cg_datacheck_balanced(const int64_t *n, int K, float *w);

#endif
