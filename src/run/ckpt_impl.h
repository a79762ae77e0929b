/* ckpt_impl.h: internal to ckpt*.c (ckpt.c and ckpt_inspect.c), not part of the checkpoint API:
 * the two pieces of ckpt.c's reading that `inspect` shares, so that it reports what a run would
 * do. Everything else includes ckpt.h only. */
#ifndef CG_CKPT_IMPL_H
#define CG_CKPT_IMPL_H

#include <stdint.h>

#include "ckpt.h"

/* The header of path, with its magic, version and header CRC checked (not its bounds nor the
 * payload: cg_ckpt_read does that), for choosing among files without reading them whole.
 * 0 with *in filled, or -1 when it cannot be read or trusted. */
int cg_ckpt_read_header(const char *path, cg_ckpt_info_t *in);

/* The order in which --resume DIR tries the n checkpoints of dir (paths and steps as
 * cg_ckpt_list gives them; cg_ckpt_find says why): indices into paths, into the caller's
 * order[0..n). The newest run's files first (DIR/last's run, else the run of the file written
 * last), DIR/last's file first among them, then newest written first, with the files whose
 * header cannot be read placed by their mtime; then every other run's, runs by recency.
 * *newest_run gets the newest run's id (0: none known). */
void cg_ckpt_resume_order(const char *dir, char **paths, const int64_t *steps, int n,
                          int *order, uint64_t *newest_run);

#endif
