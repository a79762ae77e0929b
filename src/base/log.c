/* log.c: rank-tagged messages and the fatal path (see log.h). */
#include "log.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static int g_rank = -1;
static char g_host[64] = "?";

void cg_log_set_identity(int rank, const char *host) {
  g_rank = rank;
  snprintf(g_host, sizeof g_host, "%s", host ? host : "?");
}

int cg_log_rank(void) { return g_rank; }

static void vlog(const char *tag, const char *fmt, va_list ap) {
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* One fprintf per line so lines of different ranks do not interleave mid-line. */
  if (g_rank >= 0)
    fprintf(stderr, "[rank %d %s] %s%s\n", g_rank, g_host, tag, msg);
  else
    fprintf(stderr, "cogpu-dist: %s%s\n", tag, msg);
  fflush(stderr);
}

void cg_log_info(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("", fmt, ap);
  va_end(ap);
}

void cg_log_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("warning: ", fmt, ap);
  va_end(ap);
}

static void abort_job(int code) __attribute__((noreturn));
static void abort_job(int code) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  fflush(stdout);
  fflush(stderr);
  int size = 0;
  if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
  /* One process has nobody to take down: MPI_Abort would only add Open MPI's banner (and, run
   * without mpirun, a spurious ORTE_ERROR_LOG line). _exit, not exit: this may be a helper
   * thread, and atexit handlers must not run under the other threads' feet (stdio is flushed
   * above). */
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  _exit(code); /* also without MPI (pack's OpenMP threads): no atexit handler under them */
}

void cg_fatal(const char *file, int line, const char *what, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *base = strrchr(file, '/');
  fprintf(stderr, "[rank %d %s] %s:%d: %s: %s\n", g_rank, g_host, base ? base + 1 : file, line,
          what, msg);
  abort_job(1);
}

void cg_die(int code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_rank >= 0) fprintf(stderr, "[rank %d %s] error: %s\n", g_rank, g_host, msg);
  else fprintf(stderr, "cogpu-dist: error: %s\n", msg);
  abort_job(code);
}

void cg_fatal_mpi(const char *file, int line, const char *call, int rc) {
  char err[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) snprintf(err, sizeof err, "MPI error %d", rc);
  cg_fatal(file, line, call, "%s", err);
}

void *cg_malloc(size_t n, const char *what) {
  void *p = malloc(n ? n : 1);
  if (!p) cg_fatal(__FILE__, __LINE__, "out of memory", "%zu bytes for %s", n, what);
  return p;
}

void *cg_calloc(size_t n, size_t size, const char *what) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) cg_fatal(__FILE__, __LINE__, "out of memory", "%zu x %zu bytes for %s", n, size, what);
  return p;
}

double cg_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cg_log_warn_line(void *ctx, const char *line) {
  (void)ctx;
  cg_log_warn("%s", line);
}
