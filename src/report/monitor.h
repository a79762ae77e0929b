/* monitor.h: the view of a running job that cogpu-monitor draws from its --stats-out file.
 *
 * One stats record (a JSON line written by the balance report, src/report/stats.c) becomes: a header
 * (step, progress, ranks, cluster img/s, loss), one row per rank (step, step_ms, gpu_busy,
 * data_wait, comm_exposed, cpu_busy, img/s; the straggler marked), and the cluster summary
 * (mean, max, imbalance). With ansi the straggler row is highlighted; without, it carries '*'.
 *
 * The file is read by a source (cg_monitor_src_*) that follows it as it grows: a regular file
 * by its offset (reopened every read, so a file replaced or truncated by a new job is picked
 * up), anything else (a pipe, a FIFO, /dev/stdin) as a stream that is read as it comes and
 * never sought. Every complete line is checked (cg_monitor_check); a line that is not a valid
 * record (bad JSON, a number out of its range, a rank that is not one of the record's) is
 * skipped and counted, and the view shows the last valid one with that count.
 *
 * A file may hold several attempts of one job (a run stopped, then resumed or requeued with the
 * same --stats-out: train.sbatch does so), each ending with its final record: a valid record
 * after a final one starts the next attempt, and what the source says (the record, the stop,
 * the end) is the newest attempt's. */
#ifndef CG_MONITOR_H
#define CG_MONITOR_H

#include <stddef.h>
#include <stdio.h>

/* A record longer than this is refused; it is also how far back from the end of a regular
 * file the first read starts (records are a few KB, ~350 bytes per rank). */
#define CG_MONITOR_MAX_LINE (16u << 20)

/* What is drawn around a record. */
typedef struct {
  const char *source;   /* the file name shown in the header */
  double age_s;         /* seconds since the record was written; < 0: not shown */
  long bad_lines;       /* lines skipped as not valid records; 0: not shown */
  const char *last_bad; /* why the last of them was refused, or NULL */
  int ansi;             /* escape codes: bold header, highlighted straggler */
} cg_monitor_view_t;

/* 0 when line is a stats record whose every number the view uses is in its range; else -1
 * with the reason (the first bad field) in why. */
int cg_monitor_check(const char *line, char *why, size_t whylen);

/* Draws one record. Returns 0, or -1 with a message when the line is not a valid record
 * (nothing is drawn then). */
int cg_monitor_render(const char *line, const cg_monitor_view_t *view, FILE *out, char *err,
                      size_t errlen);

typedef struct cg_monitor_src cg_monitor_src_t;

/* A source for path; nothing is opened yet. NULL when out of memory. The caller destroys it;
 * destroy(NULL) is a no-op. */
cg_monitor_src_t *cg_monitor_src_create(const char *path);
void cg_monitor_src_destroy(cg_monitor_src_t *s);

/* Reads what the file gained since the last call, without blocking. Returns 1 when a new valid
 * record arrived, 0 when none did, -1 with a message when the file cannot be read (errno is
 * kept: ENOENT for a file that does not exist yet). */
int cg_monitor_src_read(cg_monitor_src_t *s, char *err, size_t errlen);

/* Waits up to seconds (< 0: no limit, streams only) for the source to have something to read:
 * a stream is polled, a regular file is simply waited for. */
void cg_monitor_src_wait(cg_monitor_src_t *s, double seconds);

/* The newest attempt's last valid record with figures, or its stop record when it has none
 * (owned by the source, valid until the next read), or NULL. */
const char *cg_monitor_src_record(const cg_monitor_src_t *s);
/* Lines skipped so far; *why (may be NULL) gets the reason for the last one, or NULL. */
long cg_monitor_src_bad(const cg_monitor_src_t *s, const char **why);
/* Seconds since the record was written (a file's mtime; a stream: when it arrived), or -1. */
double cg_monitor_src_age(const cg_monitor_src_t *s);
/* The newest attempt's final record has been read: 1 the run's last figures (or a final line
 * that was refused), 2 a stop record (the run stopped early; it may be resumed into the file);
 * 0 none yet. */
int cg_monitor_src_final(const cg_monitor_src_t *s);
/* "stopped by SIGTERM after step S of T" when the newest attempt stopped early (its last line
 * says so: cg_stats_stopped) after records with figures, which stay the record; else NULL (an
 * attempt without figures has the stop record itself as its record). */
const char *cg_monitor_src_stopped(const cg_monitor_src_t *s);
/* A stream whose writers are gone: nothing more will come. */
int cg_monitor_src_ended(const cg_monitor_src_t *s);
/* The file is read as a stream (not a regular file). */
int cg_monitor_src_is_stream(const cg_monitor_src_t *s);

#endif
