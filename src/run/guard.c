/* guard.c: stop signals, the watchdog thread and the step-health verdict (see guard.h).
 *
 * The signal handler touches only lock-free atomics and write(2): everything it prints is
 * formatted in advance by cg_guard_create. The watchdog reads the beat under a mutex the loop
 * holds for a few instructions per beat, and sleeps on a condition variable (monotonic clock)
 * so that destroy wakes it at once instead of waiting out its period. */
#include "guard.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nccl_comm.h"

#define NSIG_HANDLED 3
static const int g_signals[NSIG_HANDLED] = {SIGTERM, SIGINT, SIGUSR1};

/* ---- process-wide signal state (signals are per process, not per object) ------------------ */
static atomic_int g_sig_count;   /* signals received since create */
static atomic_int g_first_sig;   /* the first one */
static atomic_llong g_first_ns;  /* when it came (CLOCK_MONOTONIC) */
static atomic_int g_failed;      /* cg_guard_failed: a signal ends the rank quietly */
static atomic_int g_time_stop;   /* the watchdog found --max-time passed */
/* A stop signal this soon after the first is another copy of the same stop, not a second one:
 * a scheduler signals every process of the job (scancel, preemption), and the batch script and
 * mpirun pass the stop on to the ranks again, so each rank gets two or three at once. */
#define SIG_SAME_STOP_NS 3000000000LL
static atomic_int g_guard_alive; /* one guard at a time */
static atomic_llong g_beat_step;          /* what the handler says the rank was doing */
static _Atomic(const char *) g_beat_phase;
static char g_prefix[96];                  /* "[rank R host] " */
static atomic_llong *g_tab;                /* the step table, readable by the handler */
static atomic_int g_tab_n;
#define SIG_TABLE_MAX 64                   /* ranks listed in a signal's line */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the signal handler needs lock-free 64-bit atomics");
static struct sigaction g_old[NSIG_HANDLED];

struct cg_guard {
  cg_guard_cfg_t cfg;
  char host[64];
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;             /* guarded by mu: destroy asks the thread to end */
  int armed;            /* guarded by mu */
  double last_beat;     /* guarded by mu: cg_now() of the last beat */
  double longest;       /* guarded by mu: longest interval between beats while armed */
  double t_create;      /* cg_now() at create: --max-time counts from here */
  int64_t step;         /* guarded by mu */
  const char *phase;    /* guarded by mu */
  int64_t *table;       /* guarded by mu: size entries, -1 unknown */
};

const char *cg_guard_signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case CG_GUARD_MAX_TIME: return "--max-time";
    default: return "signal";
  }
}

/* Async-signal-safe string building for the handler (no stdio). */
static void put_str(char *buf, size_t cap, size_t *n, const char *s) {
  while (*s && *n + 1 < cap) buf[(*n)++] = *s++;
}

static void put_i64(char *buf, size_t cap, size_t *n, long long v) {
  char d[24];
  int k = 0;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do d[k++] = (char)('0' + u % 10); while ((u /= 10) && k < 23);
  if (v < 0) put_str(buf, cap, n, "-");
  while (k > 0 && *n + 1 < cap) buf[(*n)++] = d[--k];
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t); /* async-signal-safe */
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void on_signal(int sig) {
  if (atomic_load(&g_failed)) _exit(128 + sig);
  int saved = errno; /* write() may change it under the interrupted code */
  const long long t = now_ns();
  long long unset = 0; /* the time first: a copy on another thread must not see 0 */
  atomic_compare_exchange_strong(&g_first_ns, &unset, t);
  int first = atomic_fetch_add(&g_sig_count, 1) == 0;
  if (first) atomic_store(&g_first_sig, sig);
  const int copy = !first && t - atomic_load(&g_first_ns) < SIG_SAME_STOP_NS;
  /* One line: which signal, what this rank was doing, and what happens next. */
  char buf[2048];
  size_t n = 0;
  const char *phase = atomic_load(&g_beat_phase);
  put_str(buf, sizeof buf, &n, g_prefix);
  put_str(buf, sizeof buf, &n, cg_guard_signal_name(sig));
  put_str(buf, sizeof buf, &n, " received during step ");
  put_i64(buf, sizeof buf, &n, atomic_load(&g_beat_step));
  put_str(buf, sizeof buf, &n, " (");
  put_str(buf, sizeof buf, &n, phase ? phase : "start-up");
  put_str(buf, sizeof buf, &n,
          first  ? "): stopping at the next step boundary, with a checkpoint when "
                   "--checkpoint-dir is set; a second signal (3 s or more later) exits at once"
          : copy ? "): within 3 s of the first: the same stop, going on with it"
                 : "): second signal: exiting now; a checkpoint not yet written is not waited "
                   "for (the previous one is intact)");
  /* When the runtime is tearing the job down (a peer died), this is the last word of the rank. */
  const int tn = atomic_load(&g_tab_n);
  if (tn > 0) {
    put_str(buf, sizeof buf, &n, "; last completed step of each rank as last known here "
                                 "(rank:step):");
    for (int r = 0; r < tn && r < SIG_TABLE_MAX; r++) {
      long long v = atomic_load(&g_tab[r]);
      put_str(buf, sizeof buf, &n, " ");
      put_i64(buf, sizeof buf, &n, r);
      put_str(buf, sizeof buf, &n, ":");
      if (v < 0) put_str(buf, sizeof buf, &n, "?");
      else put_i64(buf, sizeof buf, &n, v);
    }
    if (tn > SIG_TABLE_MAX) put_str(buf, sizeof buf, &n, " ...");
  }
  buf[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, n);
  (void)w;
  /* The second signal: the user or the scheduler will not wait for the checkpoint. */
  if (!first && !copy) _exit(128 + sig);
  errno = saved;
}

/* Set by cg_guard_catch_early: the next create keeps what arrived before it. */
static atomic_int g_early;

/* on_signal for the stop signals (each blocked while one is handled); the previous actions into
 * old when not NULL. */
static void install_handlers(struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART; /* file and socket I/O of the loop goes on undisturbed */
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < NSIG_HANDLED; i++) sigaddset(&sa.sa_mask, g_signals[i]);
  for (int i = 0; i < NSIG_HANDLED; i++)
    if (sigaction(g_signals[i], &sa, old ? &old[i] : NULL) != 0)
      CG_FATAL("sigaction(%s): %s", cg_guard_signal_name(g_signals[i]), strerror(errno));
}

void cg_guard_catch_early(void) {
  /* the rank as the launcher tells it (MPI does not yet) */
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  if (!r) r = getenv("PMIX_RANK");
  if (!r) r = getenv("SLURM_PROCID");
  if (!r) r = getenv("PMI_RANK"); /* MPICH's Hydra */
  /* none: a process without a launcher (MPI's singleton, rank 0), or a launcher not known here
   * (any rank): not said */
  snprintf(g_prefix, sizeof g_prefix, "[rank %.16s, starting] ", r ? r : "?");
  install_handlers(NULL);
  atomic_store(&g_early, 1);
}

void cg_guard_failed(cg_guard_t *g) {
  (void)g;
  atomic_store(&g_failed, 1);
}

int cg_guard_signal(const cg_guard_t *g) {
  (void)g;
  const int sig = atomic_load(&g_first_sig);
  return sig ? sig : atomic_load(&g_time_stop) ? CG_GUARD_MAX_TIME : 0;
}

/* ---- watchdog ---------------------------------------------------------------------------- */

/* Ends the job: the message, the NCCL communicator, then MPI_Abort (cg_fatal). */
static void fire(cg_guard_t *g, const char *what, const char *why) __attribute__((noreturn));
static void fire(cg_guard_t *g, const char *what, const char *why) {
  char tab[1024];
  size_t k = 0;
  tab[0] = 0;
  pthread_mutex_lock(&g->mu);
  int64_t step = g->step;
  const char *phase = g->phase ? g->phase : "?";
  struct cg_nccl *nccl = g->cfg.nccl;
  for (int r = 0; r < g->cfg.size && k + 32 < sizeof tab; r++) {
    if (g->table[r] < 0) k += (size_t)snprintf(tab + k, sizeof tab - k, "%s%d:?", r ? " " : "", r);
    else k += (size_t)snprintf(tab + k, sizeof tab - k, "%s%d:%lld", r ? " " : "", r,
                               (long long)g->table[r]);
  }
  if (g->cfg.size > 0 && k + 32 >= sizeof tab) snprintf(tab + k, sizeof tab - k, " ...");
  pthread_mutex_unlock(&g->mu);
  char msg[2048];
  snprintf(msg, sizeof msg,
           "%s at step %lld (%s); last completed step of each rank as last known here (rank:step): "
           "%s; ending the job", why, (long long)step, phase, tab);
  if (!nccl) cg_fatal(__FILE__, __LINE__, what, "%s", msg);
  /* Said first: aborting the communicator (so that device work waiting on peers returns) frees
   * it under the loop's feet, which may crash the rank before MPI_Abort. */
  cg_log_info("%s: %s", what, msg);
  cg_nccl_abort(nccl);
  cg_fatal(__FILE__, __LINE__, what, "NCCL communicator aborted");
}

static void *watchdog(void *arg) {
  cg_guard_t *g = arg;
  double period = 1.0;
  if (g->cfg.timeout_s > 0 && g->cfg.timeout_s / 4 < period) period = g->cfg.timeout_s / 4;
  if (period < 0.01) period = 0.01;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + period;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    if (g->stop) break;
    const double lasted = cg_now() - g->t_create;
    if (g->cfg.max_time_s > 0 && !atomic_load(&g_time_stop) && lasted >= g->cfg.max_time_s) {
      atomic_store(&g_time_stop, 1);
      if (g->cfg.rank == 0 && !atomic_load(&g_sig_count)) { /* else a signal's stop is on */
        const long long step = (long long)g->step;
        const char *phase = g->phase ? g->phase : "start-up";
        pthread_mutex_unlock(&g->mu); /* a stalled stderr must not hold up the beats */
        fprintf(stderr, "%s--max-time %g s: the run has lasted %.1f s, during step %lld (%s): "
                "stopping at the next step boundary, with a checkpoint when --checkpoint-dir is "
                "set\n", g_prefix, g->cfg.max_time_s, lasted, step, phase);
        fflush(stderr);
        pthread_mutex_lock(&g->mu);
        if (g->stop) break;
      }
    }
    if (g->cfg.nccl) {
      /* Under the lock, so cg_guard_watch_nccl(NULL) cannot return (and the caller destroy the
       * communicator) while this call uses it; the query does not block. */
      char err[512];
      if (cg_nccl_check_async(g->cfg.nccl, err, sizeof err) != 0) {
        pthread_mutex_unlock(&g->mu);
        fire(g, "NCCL watchdog", err);
      }
    }
    if (g->armed && g->cfg.timeout_s > 0) {
      double idle = cg_now() - g->last_beat;
      double limit = 3 * g->longest > g->cfg.timeout_s ? 3 * g->longest : g->cfg.timeout_s;
      if (idle > limit) {
        char why[192];
        if (limit > g->cfg.timeout_s)
          snprintf(why, sizeof why, "no progress for %.1f s (limit %.1f s: 3 x the longest phase "
                   "seen, above --timeout-s %g)", idle, limit, g->cfg.timeout_s);
        else
          snprintf(why, sizeof why, "no progress for %.1f s (--timeout-s %g)", idle,
                   g->cfg.timeout_s);
        pthread_mutex_unlock(&g->mu);
        fire(g, "watchdog", why);
      }
    }
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

cg_guard_t *cg_guard_create(const cg_guard_cfg_t *cfg) {
  CG_ASSERT(cfg != NULL && cfg->size >= 1 && cfg->rank >= 0 && cfg->rank < cfg->size);
  int expected = 0;
  if (!atomic_compare_exchange_strong(&g_guard_alive, &expected, 1))
    CG_FATAL("cg_guard_create: a guard already exists (signals are per process)");
  cg_guard_t *g = cg_calloc(1, sizeof *g, "guard");
  g->cfg = *cfg;
  snprintf(g->host, sizeof g->host, "%s", cfg->host ? cfg->host : "?");
  g->cfg.host = g->host;
  g->table = cg_malloc(sizeof(int64_t) * (size_t)cfg->size, "guard table");
  for (int r = 0; r < cfg->size; r++) g->table[r] = -1;
  g->step = 0;
  g->phase = "start-up";
  pthread_mutex_init(&g->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);

  if (!atomic_exchange(&g_early, 0)) { /* else what arrived since process start counts */
    atomic_store(&g_sig_count, 0);
    atomic_store(&g_first_sig, 0);
    atomic_store(&g_first_ns, 0);
  }
  atomic_store(&g_failed, 0);
  atomic_store(&g_time_stop, 0);
  g->t_create = cg_now();
  atomic_store(&g_beat_step, 0);
  atomic_store(&g_beat_phase, (const char *)NULL);
  g_tab = cg_malloc(sizeof(atomic_llong) * (size_t)cfg->size, "signal step table");
  for (int r = 0; r < cfg->size; r++) atomic_init(&g_tab[r], -1);
  atomic_store(&g_tab_n, cfg->size);
  snprintf(g_prefix, sizeof g_prefix, "[rank %d %s] ", cfg->rank, g->host);
  install_handlers(g_old);

  if (pthread_create(&g->thread, NULL, watchdog, g) != 0)
    CG_FATAL("pthread_create (watchdog): %s", strerror(errno));
  g->thread_started = 1;
  return g;
}

void cg_guard_destroy(cg_guard_t *g) {
  if (!g) return;
  if (g->thread_started) {
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
  }
  for (int i = 0; i < NSIG_HANDLED; i++) sigaction(g_signals[i], &g_old[i], NULL);
  atomic_store(&g_tab_n, 0);
  free(g_tab);
  g_tab = NULL;
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g->table);
  free(g);
  atomic_store(&g_guard_alive, 0);
}

void cg_guard_beat(cg_guard_t *g, int64_t step, const char *phase) {
  if (!g) return;
  double now = cg_now();
  pthread_mutex_lock(&g->mu);
  if (g->armed && now - g->last_beat > g->longest) g->longest = now - g->last_beat;
  g->last_beat = now;
  g->step = step;
  g->phase = phase;
  pthread_mutex_unlock(&g->mu);
  atomic_store_explicit(&g_beat_step, (long long)step, memory_order_relaxed);
  atomic_store_explicit(&g_beat_phase, phase, memory_order_relaxed);
}

void cg_guard_done(cg_guard_t *g, int64_t step) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->table[g->cfg.rank] = step;
  pthread_mutex_unlock(&g->mu);
  atomic_store_explicit(&g_tab[g->cfg.rank], step, memory_order_relaxed);
}

void cg_guard_arm(cg_guard_t *g, int on) {
  if (!g) return;
  double now = cg_now();
  pthread_mutex_lock(&g->mu);
  g->armed = on;
  g->last_beat = now;
  pthread_mutex_unlock(&g->mu);
}

void cg_guard_set_table(cg_guard_t *g, const int64_t *last_done) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  memcpy(g->table, last_done, sizeof(int64_t) * (size_t)g->cfg.size);
  pthread_mutex_unlock(&g->mu);
  for (int r = 0; r < g->cfg.size; r++)
    atomic_store_explicit(&g_tab[r], last_done[r], memory_order_relaxed);
}

void cg_guard_watch_nccl(cg_guard_t *g, struct cg_nccl *nccl) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->cfg.nccl = nccl;
  pthread_mutex_unlock(&g->mu);
}

/* ---- step health --------------------------------------------------------------------------- */

void cg_guard_health_init(cg_guard_health_t *h, int loss_scaling, int64_t max_bad) {
  memset(h, 0, sizeof *h);
  h->loss_scaling = loss_scaling;
  h->max_bad = max_bad;
  h->bad_step = -1;
  h->bad = CG_BAD_NONE;
}

int cg_guard_health_step(cg_guard_health_t *h, int64_t step, double loss, int skipped) {
  cg_bad_t verdict = CG_BAD_NONE;
  int counted = 0;
  if (h->loss_scaling && skipped) {
    /* The scaler left the weights untouched and halved the scale: expected, counted. */
    h->skipped++;
    h->consecutive++;
    counted = 1;
    if (h->consecutive > h->max_bad) verdict = CG_BAD_SKIPS;
  } else {
    h->consecutive = 0;
    /* Without a scaler (or past it) a non-finite loss means the weights are already damaged. */
    if (!isfinite(loss)) verdict = CG_BAD_NAN;
  }
  if (verdict != CG_BAD_NONE && h->bad == CG_BAD_NONE) {
    h->bad = verdict;
    h->bad_step = step;
  }
  return counted;
}
