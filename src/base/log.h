/* log.h: messages, fatal errors and the check macros shared by every module.
 *
 * Every message names the rank and host that printed it. Fatal errors print the file:line,
 * the failing call as text and the library's error string, then end the whole job with
 * MPI_Abort (never exit() on one rank while others wait in a collective).
 *
 * The rank/host identity is the one piece of process-wide state: it is set once after
 * MPI_Init by cg_log_set_identity() and read by the message functions, so that a check
 * deep inside a kernel launcher can name its rank without a context argument. */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* Exit code for usage errors (bad flags, bad input files found at start-up). */
#define CG_EXIT_USAGE 2

void cg_log_set_identity(int rank, const char *host);
int cg_log_rank(void);

/* "[rank R host] message" on stderr. */
void cg_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cg_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cg_log_warn of one line, as a report callback (ctx unused): cg_ckpt_find's rejected files. */
void cg_log_warn_line(void *ctx, const char *line);

/* Prints "[rank R host] file:line: what: detail" and aborts the job (MPI_Abort if MPI is
 * initialised and not finalised, else exit). Never returns. */
void cg_fatal(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Prints "[rank R host] error: message" and ends the job with exit code `code`: MPI_Abort when
 * MPI is running (the runtime ends every rank, and mpirun exits with `code`), else exit. For
 * bad input met while the job runs, where the ranks cannot agree on it first (a sample that
 * fails to decode in a helper): code CG_EXIT_USAGE. Never returns. */
void cg_die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Always-on assert: prints the expression as text. Never put side effects in expr. */
#define CG_ASSERT(expr)                                                                      \
  do {                                                                                       \
    if (!(expr)) cg_fatal(__FILE__, __LINE__, "assertion failed", "%s", #expr);              \
  } while (0)

#define CG_FATAL(...) cg_fatal(__FILE__, __LINE__, "fatal", __VA_ARGS__)

/* MPI: the call as text and MPI_Error_string. */
#define CG_CHECK_MPI(call)                                                                   \
  do {                                                                                       \
    int cg_mpi_rc_ = (call);                                                                 \
    if (cg_mpi_rc_ != 0) cg_fatal_mpi(__FILE__, __LINE__, #call, cg_mpi_rc_);                \
  } while (0)
void cg_fatal_mpi(const char *file, int line, const char *call, int rc) __attribute__((noreturn));

/* Out-of-memory is fatal: every allocation of the trainer goes through these. */
void *cg_malloc(size_t n, const char *what);
void *cg_calloc(size_t n, size_t size, const char *what);

/* Monotonic wall clock in seconds. */
double cg_now(void);

#endif
