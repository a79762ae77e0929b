/* trace.h: a per-rank timeline of a window of steps, as a Chrome trace / Perfetto JSON file.
 *
 * --trace-out PREFIX writes PREFIX.rank<R>.json at the end of the run with complete events
 * ("ph": "X", microseconds since the run started) on one track per activity: the driving
 * thread, the backend's h2d / compute / comm / d2h streams (from device events converted to
 * host time on the GPU; from the host clock on the cpu backend), and every helper thread's
 * tasks (sample preparation, metrics). --trace-steps A:B limits it to steps A..B so the file
 * stays small; loads in chrome://tracing and ui.perfetto.dev.
 *
 * Events may be added from any thread (a mutex guards the buffer). Times are cg_now()
 * seconds. NULL handles are accepted everywhere and do nothing, so call sites need no checks. */
#ifndef CG_TRACE_H
#define CG_TRACE_H

#include <stdint.h>

enum {
  CG_TRACK_DRIVER = 0,
  CG_TRACK_H2D = 1,
  CG_TRACK_COMPUTE = 2,
  CG_TRACK_COMM = 3,
  CG_TRACK_D2H = 4,
  CG_TRACK_HELPER0 = 10 /* helper i is CG_TRACK_HELPER0 + i */
};

typedef struct cg_trace cg_trace_t;

/* NULL when prefix is NULL or empty. Steps [first, last] are recorded (last < 0: to the end). */
cg_trace_t *cg_trace_create(const char *prefix, int rank, const char *host, int64_t first,
                            int64_t last);
/* Whether step is inside the window. */
int cg_trace_on(const cg_trace_t *t, int64_t step);
/* The step events are attributed to now (set by the driving thread; helpers read it). */
void cg_trace_set_step(cg_trace_t *t, int64_t step);
/* A complete event on a track, [t0, t1] in cg_now() seconds, if the current step is traced. */
void cg_trace_event(cg_trace_t *t, int track, const char *name, double t0, double t1);
/* The same for a given step: the streams' work of a step fetched while the next one runs. */
void cg_trace_event_step(cg_trace_t *t, int track, const char *name, double t0, double t1,
                         int64_t step);
/* Writes PREFIX.rank<R>.json (atomically) and frees; returns 0 or -1 (a warning is printed). */
int cg_trace_close(cg_trace_t *t);

#endif
