/* guard.h: what keeps a job from hanging or running on garbage — stop signals, the watchdog
 * and the NaN/overflow verdict of each step.
 *
 * Signals. cg_guard_create installs handlers (sigaction) for SIGTERM, SIGINT and SIGUSR1 (Slurm
 * sends USR1 with --signal=USR1@T and TERM before the kill). The handler only records the
 * first signal and writes one line with write(2): the signal, the step and phase this rank is
 * in and the step table (below) — when mpirun tears a job down because a peer died, that line
 * is each surviving rank's last word. The training loop polls cg_guard_signal at
 * each step boundary, all ranks agree on it, and rank 0 writes a checkpoint before everyone
 * exits 0. A second signal while that is under way, 3 s or more after the first, ends the
 * process at once (_exit(128 + signal)): the atomic checkpoint write leaves the previous
 * checkpoint intact. Within 3 s it is a copy of the same stop (a scheduler signals every
 * process, and the batch script and mpirun pass it on again). Signals are
 * process-wide, so this is the one piece of global state: only one guard may exist at a time.
 *
 * Watchdog. A thread wakes every second (or a quarter of the timeout) and, while armed
 * (cg_guard_arm), ends the job when the loop has made no beat for longer than its limit: it
 * prints this rank, the step and phase it is stuck in, and the last completed step of every
 * rank as last known here (cg_guard_set_table), aborts the NCCL communicator if one was given
 * (so kernels waiting on a dead peer return) and calls MPI_Abort through cg_fatal. The limit is
 * timeout_s, or 3 x the longest interval between two beats seen while armed if that is longer:
 * a model whose compute phase takes 30 s on a small CPU is slow, not hung. The trainer arms it
 * after the first step, whose one-off costs (allocation, cuDNN autotuning, graph capture) say
 * nothing about the steady state, and for the wait of a validation pass before any step once
 * this rank's own pass is through (cg_val_poll_finish). The thread also polls
 * cg_nccl_check_async every wake-up, armed or not, and aborts the same way on an asynchronous
 * NCCL error. The process runs MPI at MPI_THREAD_FUNNELED; MPI_Abort from the watchdog thread
 * is the one exception: the job is ending, and Open MPI's abort only asks the runtime to kill
 * it.
 *
 * Health. cg_guard_health_* decides what a fetched step means: with fp16 loss scaling a step
 * whose gradients overflowed is skipped by the scaler and counted, and more than max_bad
 * consecutive skips is fatal; in fp32/bf16 (no scaler) a NaN/Inf loss is fatal. */
#ifndef CG_GUARD_H
#define CG_GUARD_H

#include <stdint.h>

struct cg_nccl;

typedef struct cg_guard cg_guard_t;

/* What cg_guard_signal returns once --max-time has passed (no signal came first): a stop as a
 * signal's, named "--max-time"; outside the signal numbers, within the step agreement's 8 bits. */
#define CG_GUARD_MAX_TIME 0xfe

typedef struct {
  double timeout_s;      /* no beat for this long ends the job; <= 0: no watchdog timeout */
  double max_time_s;     /* > 0: this long after create, the watchdog raises a stop
                            (CG_GUARD_MAX_TIME) as a first signal would */
  int rank, size;        /* for the messages and the table */
  const char *host;
  struct cg_nccl *nccl;  /* optional: polled for asynchronous errors, aborted on a timeout */
} cg_guard_cfg_t;

/* Installs the signal handlers and starts the watchdog thread (disarmed).
 * Fatal if another guard exists. */
cg_guard_t *cg_guard_create(const cg_guard_cfg_t *cfg);
/* Installs the same stop-signal handlers at process start, before MPI_Init (which can take
 * seconds on a cluster, and the default action of SIGTERM and SIGUSR1 ends the process): a
 * signal that early counts for the first cg_guard_create, so the run stops at its first step
 * boundary as it would for one during training. Only for commands that create a guard. */
void cg_guard_catch_early(void);
/* Stops the watchdog and restores the previous handlers. A signal recorded so far is kept
 * (cg_guard_signal(NULL) still returns it) until the next create. NULL is a no-op. */
void cg_guard_destroy(cg_guard_t *g);

/* The first stop signal received by this process since cg_guard_create; else
 * CG_GUARD_MAX_TIME once max_time_s has passed; 0 if neither. A signal after the time's stop is
 * a first signal (said so, the same stop), not a second one that exits at once. */
int cg_guard_signal(const cg_guard_t *g);
/* "SIGTERM", "SIGINT", "SIGUSR1", "--max-time" or "signal". */
const char *cg_guard_signal_name(int sig);

/* Progress: this rank is now at (1-based) step `step`, doing `phase` (a string literal: the
 * pointer is kept). Restarts the watchdog's clock. Cheap (a mutex, no syscall). */
void cg_guard_beat(cg_guard_t *g, int64_t step, const char *phase);
/* Arms (on = 1) or disarms the timeout; arming restarts the clock. */
void cg_guard_arm(cg_guard_t *g, int on);
/* The run failed (its error is printed) and the rank is ending: a stop signal from now on is the
 * launcher tearing the job down, and ends the rank without the stop line, which would promise
 * a checkpoint. g may be NULL: the early handlers (cg_guard_catch_early) obey it too. */
void cg_guard_failed(cg_guard_t *g);
/* This rank completed `step` (its own entry of the table, kept current between exchanges). */
void cg_guard_done(cg_guard_t *g, int64_t step);
/* The last completed step of every rank (size entries), as learnt from the last exchange. */
void cg_guard_set_table(cg_guard_t *g, const int64_t *last_done);
/* The NCCL communicator to poll and abort (NULL: none). Set it once it exists and clear it
 * before it is destroyed. */
void cg_guard_watch_nccl(cg_guard_t *g, struct cg_nccl *nccl);

/* ---- step health --------------------------------------------------------------------------- */

typedef enum { CG_BAD_NONE = 0, CG_BAD_NAN = 1, CG_BAD_SKIPS = 2 } cg_bad_t;

typedef struct {
  int loss_scaling;       /* fp16: overflowing steps are skipped by the scaler, not fatal */
  int64_t max_bad;        /* consecutive skipped steps tolerated */
  int64_t skipped;        /* skipped steps seen (this process) */
  int64_t consecutive;    /* skipped steps in a row up to the last step seen */
  int64_t bad_step;       /* 1-based step of the first fatal step, -1 none */
  cg_bad_t bad;
} cg_guard_health_t;

void cg_guard_health_init(cg_guard_health_t *h, int loss_scaling, int64_t max_bad);
/* Accounts one fetched training step (1-based number `step`) with its local loss and the
 * backend's skipped flag. Returns 1 when the step was skipped (counted), else 0. The first
 * fatal step is kept in bad/bad_step; later steps do not overwrite it. */
int cg_guard_health_step(cg_guard_health_t *h, int64_t step, double loss, int skipped);

#endif
