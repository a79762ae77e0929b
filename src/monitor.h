/* monitor.h: the view of a running job that cogpu-monitor draws from its --stats-out file.
 *
 * One stats record (a JSON line written by the balance report, src/stats.c) becomes: a header
 * (step, progress, ranks, cluster img/s, loss), one row per rank (step, step_ms, gpu_busy,
 * data_wait, comm_exposed, cpu_busy, img/s; the straggler marked), and the cluster summary
 * (mean, max, imbalance). With ansi the straggler row is highlighted; without, it carries '*'. */
#ifndef CG_MONITOR_H
#define CG_MONITOR_H

#include <stddef.h>
#include <stdio.h>

/* Returns 0, or -1 with a message when the line is not a stats record. */
int cg_monitor_render(const char *line, const char *source, double age_s, int ansi, FILE *out,
                      char *err, size_t errlen);

/* The last complete line of a file (ending in '\n'; a line still being written is ignored),
 * malloc'ed; NULL when there is none. *final is set when that record has "final": true. */
char *cg_monitor_last_line(const char *path, int *final, char *err, size_t errlen);

#endif
