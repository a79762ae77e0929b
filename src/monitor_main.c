/* monitor_main.c: cogpu-monitor — a live terminal view of a running job, drawn from the
 * --stats-out file the job appends to (one JSON record per report).
 *
 *   cogpu-monitor [--once] [--plain] [--interval S] FILE.jsonl
 *
 * On a terminal it redraws in place every interval (default 1 s) as the file grows and stops
 * after the job's final record; --plain (or output that is not a terminal, e.g. a Slurm log)
 * prints each new record once, without escape codes; --once prints the latest record and exits
 * (0, or 1 when the file has no record yet). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

static void usage(FILE *f) {
  fprintf(f, "usage: cogpu-monitor [--once] [--plain] [--interval SECONDS] FILE.jsonl\n"
             "  live view of a job's --stats-out file: per-rank rows (step, step_ms, gpu_busy,\n"
             "  data_wait, comm_exposed, cpu_busy, img/s), the straggler highlighted, the\n"
             "  cluster summary; refreshes as the file grows, ends at the job's final record.\n"
             "  --once      print the latest record and exit\n"
             "  --plain     no escape codes; print each new record once (default when stdout\n"
             "              is not a terminal)\n"
             "  --interval  seconds between checks of the file [1]\n");
}

int main(int argc, char **argv) {
  int once = 0, plain = !isatty(STDOUT_FILENO);
  double interval = 1.0;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--once")) once = 1;
    else if (!strcmp(argv[i], "--plain")) plain = 1;
    else if (!strcmp(argv[i], "--interval") && i + 1 < argc) interval = atof(argv[++i]);
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
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
  if (!path || interval <= 0) {
    usage(stderr);
    return 2;
  }
  char err[512], *last = NULL;
  for (;;) {
    int final = 0;
    char *line = cg_monitor_last_line(path, &final, err, sizeof err);
    struct stat st;
    double age = stat(path, &st) == 0 ? difftime(time(NULL), st.st_mtime) : -1;
    if (!line && once) {
      fprintf(stderr, "cogpu-monitor: %s\n", err);
      return 1;
    }
    if (line && (once || !last || strcmp(line, last) || !plain)) {
      if (!plain && !once) fputs("\033[H\033[2J", stdout); /* redraw in place */
      if (cg_monitor_render(line, path, once ? -1 : age, !plain, stdout, err, sizeof err)) {
        fprintf(stderr, "cogpu-monitor: %s: %s\n", path, err);
        free(line);
        free(last);
        return 1;
      }
      if (plain && !once) fputc('\n', stdout);
      fflush(stdout);
    }
    if (line) {
      free(last);
      last = line;
    }
    if (once || final) break;
    usleep((useconds_t)(interval * 1e6));
  }
  free(last);
  return 0;
}
