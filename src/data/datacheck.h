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
 * exits 2). */
int cg_datacheck_run(cg_source_t **data, cg_source_t **val, cg_comm_t *c, int threads, int check,
                     int skip_bad, char *err, size_t errlen);

#endif
