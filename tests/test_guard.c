/* test_guard.c: the guard without MPI — the step-health verdicts (fp16 skips counted, too many
 * in a row fatal, a NaN loss fatal without loss scaling), the first stop signal recorded, a
 * second one ending the process at once with 128 + signal, and the watchdog ending a process
 * whose loop stopped beating, with a message naming the step, the phase and the table;
 * --max-time's stop raised by the watchdog (a signal after it a first one) and the durations
 * cg_cli_parse_duration reads or refuses. The process-ending cases run in forked children. */
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h" /* cg_cli_parse_duration: --max-time */
#include "guard.h"
#include "log.h"
#include "testutil.h"

/* Runs fn in a child with stderr captured; returns the wait status, the text in out. */
static int in_child(void (*fn)(void), char *out, size_t len, double *secs) {
  int fd[2];
  if (pipe(fd)) return -1;
  fflush(NULL); /* or the child repeats what is buffered */
  double t0 = cg_now();
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], STDERR_FILENO);
    fn();
    _exit(0);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < len && (k = read(fd[0], out + n, len - 1 - n)) > 0) n += (size_t)k;
  out[n] = 0;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  *secs = cg_now() - t0;
  return st;
}

static void two_signals(void) {
  cg_guard_cfg_t gc = {0, 0, 3, 4, "testhost", NULL};
  cg_guard_t *g = cg_guard_create(&gc);
  cg_guard_beat(g, 42, "training step");
  raise(SIGTERM);
  if (cg_guard_signal(g) != SIGTERM) _exit(3);
  raise(SIGTERM); /* at once: another copy of the same stop (a scheduler and mpirun both send) */
  raise(SIGUSR1);
  if (cg_guard_signal(g) != SIGTERM) _exit(5);
  const struct timespec wait = {3, 100000000}; /* past the 3 s of copies */
  nanosleep(&wait, NULL);
  raise(SIGUSR1); /* must not return */
  _exit(4);
}

static void hung_loop(void) {
  cg_log_set_identity(1, "testhost"); /* what comm.c sets after MPI_Init */
  cg_guard_cfg_t gc = {0.5, 0, 1, 3, "testhost", NULL};
  cg_guard_t *g = cg_guard_create(&gc);
  int64_t table[3] = {9, 9, 8};
  cg_guard_set_table(g, table);
  cg_guard_done(g, 10);
  cg_guard_arm(g, 1);
  cg_guard_beat(g, 11, "step agreement (all-reduce)");
  sleep(5); /* a hang: the watchdog must end the process long before */
  _exit(5);
}

static void paused_loop(void) {
  cg_guard_cfg_t gc = {0.3, 0, 0, 1, "testhost", NULL};
  cg_guard_t *g = cg_guard_create(&gc);
  cg_guard_arm(g, 1);
  cg_guard_beat(g, 1, "training step");
  cg_guard_arm(g, 0);
  usleep(1200 * 1000); /* disarmed: no abort */
  cg_guard_destroy(g);
  _exit(0);
}

/* Phases growing to 0.4 s (each within 3 x the longest before) raise a 0.2 s limit to 1.2 s;
 * then a real hang still ends the process. */
static void slow_loop(void) {
  cg_log_set_identity(0, "testhost");
  cg_guard_cfg_t gc = {0.2, 0, 0, 1, "testhost", NULL};
  cg_guard_t *g = cg_guard_create(&gc);
  cg_guard_arm(g, 1);
  const int ms[4] = {150, 300, 400, 400};
  for (int i = 0; i < 4; i++) {
    usleep((useconds_t)ms[i] * 1000);
    cg_guard_beat(g, i + 1, "training step");
  }
  fprintf(stderr, "slow steps survived\n");
  sleep(5);
  _exit(5);
}

int main(void) {
  /* ---- health ---- */
  cg_guard_health_t h;
  cg_guard_health_init(&h, 1, 3); /* fp16, 3 consecutive skips tolerated */
  CG_TEST_CHECK(cg_guard_health_step(&h, 1, 0.7, 0) == 0 && h.bad == CG_BAD_NONE, "clean step");
  CG_TEST_CHECK(cg_guard_health_step(&h, 2, NAN, 1) == 1 && h.bad == CG_BAD_NONE,
                "an fp16 skip with a NaN loss is counted, not fatal");
  for (int s = 3; s <= 4; s++) cg_guard_health_step(&h, s, 1.0, 1);
  CG_TEST_CHECK(h.skipped == 3 && h.consecutive == 3 && h.bad == CG_BAD_NONE,
                "3 in a row tolerated: skipped %lld", (long long)h.skipped);
  cg_guard_health_step(&h, 5, 0.6, 0); /* a clean step resets the run */
  CG_TEST_CHECK(h.consecutive == 0 && h.skipped == 3, "reset after a clean step");
  for (int s = 6; s <= 9; s++) cg_guard_health_step(&h, s, 1.0, 1);
  CG_TEST_CHECK(h.bad == CG_BAD_SKIPS && h.bad_step == 9 && h.skipped == 7,
                "the 4th skip in a row is fatal: bad %d at %lld", (int)h.bad,
                (long long)h.bad_step);
  cg_guard_health_step(&h, 10, NAN, 0);
  CG_TEST_CHECK(h.bad == CG_BAD_SKIPS && h.bad_step == 9, "the first fatal step is kept");
  cg_guard_health_init(&h, 0, 3); /* fp32 */
  cg_guard_health_step(&h, 1, 0.7, 0);
  cg_guard_health_step(&h, 2, INFINITY, 0);
  CG_TEST_CHECK(h.bad == CG_BAD_NAN && h.bad_step == 2 && h.skipped == 0,
                "fp32: an Inf loss is fatal at once");
  printf("PASS health: fp16 skips counted (fatal after max in a row), NaN fatal without scaling\n");

  /* ---- the first signal is recorded and the process goes on ---- */
  cg_guard_cfg_t gc = {0, 0, 0, 1, "testhost", NULL};
  cg_guard_t *g = cg_guard_create(&gc);
  CG_TEST_CHECK(cg_guard_signal(g) == 0, "no signal yet");
  raise(SIGUSR1);
  CG_TEST_CHECK(cg_guard_signal(g) == SIGUSR1, "SIGUSR1 recorded: %d", cg_guard_signal(g));
  cg_guard_destroy(g);
  g = cg_guard_create(&gc); /* a new guard starts clean */
  CG_TEST_CHECK(cg_guard_signal(g) == 0, "a new guard forgets the old signal");
  cg_guard_destroy(g);
  printf("PASS first signal: recorded, the process goes on\n");

  /* ---- --max-time: the watchdog raises the stop; a signal after it is a first signal ---- */
  const cg_guard_cfg_t gt = {0.2, 0.1, 0, 1, "testhost", NULL}; /* wakes every 0.05 s */
  g = cg_guard_create(&gt);
  CG_TEST_CHECK(cg_guard_signal(g) == 0, "--max-time: no stop before its time");
  const struct timespec pause = {0, 400000000};
  nanosleep(&pause, NULL);
  CG_TEST_CHECK(cg_guard_signal(g) == CG_GUARD_MAX_TIME &&
                    !strcmp(cg_guard_signal_name(cg_guard_signal(g)), "--max-time"),
                "--max-time 0.1 s: after 0.4 s the stop is %d", cg_guard_signal(g));
  raise(SIGUSR1); /* the first signal: recorded, not the "second signal" that exits */
  CG_TEST_CHECK(cg_guard_signal(g) == SIGUSR1, "a signal after --max-time's stop: %d",
                cg_guard_signal(g));
  cg_guard_destroy(g);
  g = cg_guard_create(&gc);
  CG_TEST_CHECK(cg_guard_signal(g) == 0, "a new guard forgets --max-time's stop");
  cg_guard_destroy(g);
  static const struct {
    const char *s;
    double t; /* -1: refused */
  } dur[] = {{"3600", 3600},   {"90m", 5400},     {"1.5h", 5400},       {"2d", 172800},
             {"45s", 45},      {"10:30", 630},    {"01:00:00", 3600},   {"1-12", 129600},
             {"1-02:03", 93780}, {"1-00:00:30", 86430}, {"01:02:03:04", 93784},
             {"0", -1},        {"-5", -1},        {"1x", -1},           {"", -1},
             {"1:2:3:4:5", -1}, {"a:10", -1},     {"1-", -1},           {"1-2:3:4:5", -1},
             {"0:00", -1},     {"nan", -1},       {"inf", -1},          {"5 m", -1},
             {"10:99", -1},    {"0x10", -1},      {"1e3", -1},          {"1-24", -1},
             {"1:60:00", -1},  {"01:24:00:00", -1}, {"59:59", 3599},    {"0.5m", 30}};
  int dbad = 0;
  for (size_t i = 0; i < sizeof dur / sizeof dur[0]; i++) {
    double t;
    const int rc = cg_cli_parse_duration(dur[i].s, &t);
    if (dur[i].t < 0 ? rc != -1 : rc != 0 || t != dur[i].t) {
      printf("  --max-time '%s': rc %d, %g s (want %g)\n", dur[i].s, rc, t, dur[i].t);
      dbad++;
    }
  }
  CG_TEST_CHECK(dbad == 0, "--max-time durations: %d wrong", dbad);
  printf("PASS --max-time: the stop raised after its time, a later signal is a first one; "
         "%zu durations parsed or refused\n", sizeof dur / sizeof dur[0]);

  /* ---- copies within 3 s are one stop; a second signal after that ends the process at once */
  char out[4096];
  double secs;
  int st = in_child(two_signals, out, sizeof out, &secs);
  CG_TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGUSR1,
                "second signal: status %d (want exit %d)", st, 128 + SIGUSR1);
  CG_TEST_CHECK(strstr(out, "[rank 3 testhost] SIGTERM received during step 42 (training step)") &&
                    strstr(out, "SIGUSR1 received during step 42 (training step): within 3 s "
                                "of the first: the same stop") &&
                    strstr(out, "second signal: exiting now"),
                "second signal: messages: %s", out);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGUSR1)
    printf("PASS second signal: exit %d at once; it said:\n%s", WEXITSTATUS(st), out);

  /* ---- the watchdog ---- */
  st = in_child(hung_loop, out, sizeof out, &secs);
  CG_TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && secs < 3,
                "watchdog: status %d after %.1f s", st, secs);
  CG_TEST_CHECK(strstr(out, "watchdog: no progress") && strstr(out, "at step 11 (step agreement") &&
                    strstr(out, "0:9 1:10 2:8") && strstr(out, "[rank 1 testhost]"),
                "watchdog message: %s", out);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 1 && secs < 3)
    printf("PASS watchdog: a 0.5 s timeout ended the hung process after %.1f s:\n%s", secs, out);
  st = in_child(paused_loop, out, sizeof out, &secs);
  CG_TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "disarmed watchdog fired: %s", out);
  st = in_child(slow_loop, out, sizeof out, &secs);
  CG_TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, "slow steps survived") &&
                    strstr(out, "3 x the longest phase seen") && secs < 5,
                "slow steps: status %d after %.1f s: %s", st, secs, out);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, "slow steps survived"))
    printf("PASS watchdog limit: 0.4 s phases are slow, not hung (0.2 s timeout); the hang after "
           "them ended the process after %.1f s:\n%s", secs, out);
  return cg_test_done("test_guard");
}
