/* monitor_main.c: cogpu-monitor — a live terminal view of a running job, drawn from the
 * --stats-out file the job appends to (one JSON record per report).
 *
 *   cogpu-monitor [--once] [--plain] [--requeue] [--interval S] FILE.jsonl
 *
 * On a terminal it redraws in place every interval (default 1 s) as the file grows and stops
 * after the job's final record (of the newest attempt, when a stopped run was resumed into the
 * same file); --requeue follows on past a stop record, for the requeued run; --plain (or output
 * that is not a terminal, e.g. a Slurm log) prints each new record once, without escape codes;
 * --once prints the latest record and exits (0, or 1 when the file has no valid record yet). A
 * pipe or FIFO is read as a stream (--once reads it to its end; following ends with it). A file
 * that does not exist yet is waited for, said once on stderr: a monitor may start before the
 * job. Lines that are not valid records are skipped and counted in the view. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor.h" // cg_monitor_render / _check, cg_monitor_src_*: reading and drawing records

/* --interval bounds: below 50 ms the monitor would spin; above a day it is surely a typo. */
#define INTERVAL_MIN 0.05
#define INTERVAL_MAX 86400.0

static void usage(FILE *f) {
  fprintf(f, "usage: cogpu-monitor [--once] [--plain] [--requeue] [--interval SECONDS] "
             "FILE.jsonl\n"
             "  live view of a job's --stats-out file: per-rank rows (step, step_ms, compute,\n"
             "  data_wait, comm_exp, cpu_busy, img/s), the straggler highlighted, the\n"
             "  cluster summary; refreshes as the file grows, ends at the job's final record.\n"
             "  A run resumed into the same file (--resume, a requeued Slurm job) is a new\n"
             "  attempt: the view is the newest attempt's, and only its final record ends it.\n"
             "  FILE may be a pipe or FIFO (e.g. /dev/stdin), read as it comes.\n"
             "  --once      print the latest record and exit (a pipe is read to its end)\n"
             "  --plain     no escape codes; print each new record once (default when stdout\n"
             "              is not a terminal)\n"
             "  --requeue   do not end at a stop record (a stopped run, e.g. a Slurm job that\n"
             "              checkpoints and requeues itself, resumes into the file): follow\n"
             "              until a run finishes its steps, or Ctrl-C\n"
             "  --interval  seconds between checks of the file, %g..%g [1]\n",
          INTERVAL_MIN, INTERVAL_MAX);
}

/* 0 and *out, or -1 when s is not a number of seconds in range (nan, inf, "1x" included). */
static int parse_interval(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= INTERVAL_MIN && v <= INTERVAL_MAX)) return -1;
  *out = v;
  return 0;
}

static int draw(cg_monitor_src_t *src, const char *path, int once, int plain) {
  const char *why;
  long bad = cg_monitor_src_bad(src, &why);
  cg_monitor_view_t v = {path, once ? -1 : cg_monitor_src_age(src), bad, why, !plain};
  char err[512];
  if (!plain && !once) fputs("\033[H\033[2J", stdout); /* redraw in place */
  if (cg_monitor_render(cg_monitor_src_record(src), &v, stdout, err, sizeof err)) {
    fprintf(stderr, "cogpu-monitor: %s: %s\n", path, err);
    return -1;
  }
  const char *stopped = cg_monitor_src_stopped(src);
  if (stopped) printf("the job %s\n", stopped);
  if (plain && !once) fputc('\n', stdout);
  fflush(stdout);
  return 0;
}

static void say_no_record(cg_monitor_src_t *src, const char *path) {
  const char *why;
  long bad = cg_monitor_src_bad(src, &why);
  if (bad)
    fprintf(stderr, "cogpu-monitor: %s: no valid record (%ld bad line%s skipped; last: %s)\n",
            path, bad, bad == 1 ? "" : "s", why);
  else fprintf(stderr, "cogpu-monitor: %s: no complete record yet\n", path);
}

/* --once: the latest record of a file, or of a stream once it has ended. */
static int run_once(cg_monitor_src_t *src, const char *path) {
  char err[512];
  for (;;) {
    if (cg_monitor_src_read(src, err, sizeof err) < 0) {
      fprintf(stderr, "cogpu-monitor: %s\n", err);
      return 1;
    }
    if (!cg_monitor_src_is_stream(src) || cg_monitor_src_ended(src)) break;
    cg_monitor_src_wait(src, -1);
  }
  if (!cg_monitor_src_record(src)) {
    say_no_record(src, path);
    return 1;
  }
  return draw(src, path, 1, 1) ? 1 : 0;
}

/* Follows the file until the job's final record (or the end of a stream); with requeue, a stop
 * record does not end it. What it waits for (the file, its first record, the stopped run's
 * next attempt) is said once on stderr, not at every check (on a terminal, under every redraw,
 * which clears it). */
static int run_follow(cg_monitor_src_t *src, const char *path, int plain, int requeue,
                      double interval) {
  enum { SAID_NOTHING, SAID_MISSING, SAID_NO_RECORD } said = SAID_NOTHING;
  int said_stop = 0;
  char err[512];
  for (;;) {
    int got = cg_monitor_src_read(src, err, sizeof err);
    if (got < 0 && errno != ENOENT) {
      fprintf(stderr, "cogpu-monitor: %s\n", err);
      return 1;
    }
    if (got < 0 && said != SAID_MISSING) {
      fprintf(stderr, "cogpu-monitor: %s does not exist yet; waiting for it (Ctrl-C to stop)\n",
              path);
      said = SAID_MISSING;
    }
    if (cg_monitor_src_record(src)) {
      if (got > 0 || !plain) {
        if (draw(src, path, 0, plain)) return 1;
        said = SAID_NOTHING;
      }
    } else if (got >= 0 && said != SAID_NO_RECORD && !cg_monitor_src_ended(src)) {
      fprintf(stderr, "cogpu-monitor: waiting for the first record in %s\n", path);
      said = SAID_NO_RECORD;
    }
    const int fin = cg_monitor_src_final(src); /* of the newest attempt */
    if (fin == 1 || (fin == 2 && (!requeue || cg_monitor_src_ended(src)))) return 0;
    if (fin == 2 && (!said_stop || !plain))
      fprintf(stderr, "cogpu-monitor: the job stopped; --requeue: waiting for it to resume into "
              "%s (Ctrl-C to stop)\n", path);
    said_stop = fin == 2;
    if (cg_monitor_src_ended(src)) {
      if (!cg_monitor_src_record(src)) {
        say_no_record(src, path);
        return 1;
      }
      fprintf(stderr, "cogpu-monitor: %s ended before the job's final record\n", path);
      return 0;
    }
    cg_monitor_src_wait(src, interval);
  }
}

int main(int argc, char **argv) {
  int once = 0, plain = !isatty(STDOUT_FILENO), requeue = 0;
  double interval = 1.0;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--once")) once = 1;
    else if (!strcmp(argv[i], "--plain")) plain = 1;
    else if (!strcmp(argv[i], "--requeue")) requeue = 1;
    else if (!strcmp(argv[i], "--interval")) {
      if (i + 1 >= argc || parse_interval(argv[++i], &interval)) {
        fprintf(stderr, "cogpu-monitor: --interval %s: want seconds in %g..%g\n",
                i < argc ? argv[i] : "(missing)", INTERVAL_MIN, INTERVAL_MAX);
        return 2;
      }
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "cogpu-monitor: unknown option %s\n", argv[i]);
      usage(stderr);
      return 2;
    } else if (!path) path = argv[i];
    else {
      fprintf(stderr, "cogpu-monitor: one file only\n");
      return 2;
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  if (once && requeue) {
    fprintf(stderr, "cogpu-monitor: --requeue follows the file past a stop; --once does not "
            "follow\n");
    return 2;
  }
  cg_monitor_src_t *src = cg_monitor_src_create(path);
  if (!src) {
    fprintf(stderr, "cogpu-monitor: out of memory\n");
    return 1;
  }
  int rc = once ? run_once(src, path) : run_follow(src, path, plain, requeue, interval);
  cg_monitor_src_destroy(src);
  return rc;
}
