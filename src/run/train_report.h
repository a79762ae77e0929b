/* train_report.h: what a training run says about itself — the banner, the progress bar, the
 * lines of each report window and validation, the final lines, cg_train_result_t and the
 * --metrics-out / --params-out files.
 *
 * The step loop (train.c) sums what each fetched step measured into cg_acc_t and keeps the
 * window and run figures in cg_train_figs_t; everything printed or written from them is here.
 * A new metric is a field of cg_acc_t (summed in train.c's collect) and its columns here.
 * Printing is rank 0's (the functions return at once elsewhere) unless a function says it is
 * collective; stdout is flushed after each report. */
#ifndef CG_TRAIN_REPORT_H
#define CG_TRAIN_REPORT_H

#include <stdint.h>

#include "history.h"
#include "metrics.h"
#include "run.h"
#include "stats.h"
#include "train.h"

/* What the host learns from finished steps (a sum over them). */
typedef struct {
  double loss;           /* sum of the steps' weighted local losses */
  double loss_samples;   /* sum of loss x global count: the local share of the sample-loss sum */
  double comm, busy;     /* seconds */
  double last_loss;
  int64_t samples;       /* global samples of the steps */
  int64_t local_samples; /* this rank's real samples */
  int64_t steps;
  int busy_measured;
  double h2d, d2h;       /* bytes */
  cg_confusion_t conf;
  int64_t *confk;        /* --num-classes K >= 2: K x K counts (truth x pred), not owned; NULL
                            for binary. Kept (and zeroed) by cg_acc_reset. */
  /* --clip-grad-norm: the steps' gradient norms (finite ones: a skipped fp16 step has none) */
  double gnorm_sum, gnorm_max, gnorm_last;
  int64_t gnorm_steps, clipped; /* steps measured; of them clipped (norm + 1e-6 > X) */
} cg_acc_t;

/* Zeroes a, keeping its confk buffer (zeroed too); K = the run's classes. */
void cg_acc_reset(cg_acc_t *a, int K);

/* One pass over the validation set: the mean loss per sample, counts summed over ranks. */
typedef struct {
  double loss;           /* per image scored; NAN when none was */
  cg_confusion_t conf;
  int64_t *confk;        /* K >= 2: K x K counts summed over ranks (malloc'ed, the holder frees) */
  int64_t images;        /* the images scored: the set less those --skip-bad left out; 0 when
                            stopped */
  int stopped;           /* a stop signal cut the pass short on some rank: no figures */
} cg_val_t;

/* The figures the step loop keeps for the reports. */
typedef struct {
  cg_acc_t win;              /* the report window so far */
  cg_acc_t total;            /* the finished windows (samples, steps and counts) */
  double win_wall, win_wait; /* seconds of the window: wall, waiting for batches */
  double win_share;          /* sum over the window's steps of the CPU share */
  double last_window_loss;   /* global mean loss of the last window, NAN before the first */
  cg_cluster_t last_cluster; /* the last window's cluster figures: the steady state */
  double t_train0;           /* the training clock's origin (validation time is taken out) */
  double train_s;            /* training seconds, once the loop ended */
  int have_val;              /* val holds the final validation */
  cg_val_t val;
  /* the last finished report window's training counts (train_iou / train_miou); local */
  cg_confusion_t last_conf;
  int64_t *last_confk;       /* K >= 2: K x K, the holder allocates; NULL for binary */
  /* the metrics history (history.h): rank 0's handle (NULL: none), and the figures of the
   * training since the previous validation */
  cg_history_t *hist;
  struct cg_tb *tb;          /* --tensorboard: rank 0's event file (tboard.h); NULL: none */
  double hist_loss;          /* local loss sum of the reported windows since then */
  int64_t hist_steps;        /* their steps */
  double hist_gsum;          /* --clip-grad-norm: their gradient norms' sum (every rank's) */
  int64_t hist_gsteps;       /* the steps measured */
  int64_t hist_samples0;     /* global samples trained at the previous validation */
  double hist_t0;            /* training seconds at the previous validation */
} cg_train_figs_t;

/* The run's configuration before the first step; with a resumed run where it resumed. */
void cg_report_banner(const cg_run_t *r);

/* Progress (r->bar): a bar on stderr redrawn in place, or a plain line on stdout. elapsed:
 * training seconds; ips: images per second; final ends the bar's line. */
void cg_report_progress(const cg_run_t *r, int64_t step, double elapsed, double ips, double loss,
                        int final);

/* The fp16 scaler skipped `step` (every rank took the same decision); the first ones only. */
void cg_report_skip(const cg_run_t *r, int64_t step, float scale);

/* The split controller moved work at `step` (k0, m0: its previous split, split.h); wait_pct:
 * the data wait of its window, in percent. */
void cg_report_split(const cg_run_t *r, int64_t step, int k0, int m0, double wait_pct);

/* Collective: the window ending at `step` goes to cg_stats_report (table, --stats-out,
 * --prom-out), rank 0 prints its line, and the window is added to the run's figures and
 * restarted. helper_busy, helpers: from cg_loader_take_busy; elapsed: training seconds. */
void cg_report_window(cg_run_t *r, cg_train_figs_t *f, int64_t step, double elapsed,
                      double helper_busy, int helpers);

/* Rank 0 opens the metrics history (--history-out, else CKPT_DIR/history.jsonl; --history-csv)
 * into f->hist (a resumed run keeps the records up to its first step) and the --tensorboard
 * event file into f->tb. A file that cannot be opened is warned about and left out. */
void cg_report_history_open(const cg_run_t *r, cg_train_figs_t *f);

/* Collective: a validation pass at `step` (elapsed: training seconds so far): rank 0 prints it
 * when `print` (the final one is printed by cg_report_final), appends it to the history and
 * hands it to the stats records (cogpu-monitor shows it). */
void cg_report_validation(cg_run_t *r, cg_train_figs_t *f, int64_t step, double elapsed,
                          const cg_val_t *v, int print);

/* --skip-bad: samples left out when the files were opened and loads skipped (summed over
 * ranks), in training or in a validation pass. Nothing when there were none. */
void cg_report_skipped(const cg_run_t *r, int64_t left_out, int64_t loads, int validation);

/* A validation pass's agreement over ranks on a stop signal and on its end: rounds of a small
 * non-blocking all-reduce (a stop signal, not through), one started as soon as the previous
 * one has completed, polled between batches. A signal on any rank ends every rank's pass
 * within about a batch, and a rank that is through (or stopped) keeps polling until every rank
 * is: the ranks see the same rounds, so they agree on stop. Zero it before the pass. */
typedef struct {
  MPI_Request rq;
  int64_t v[2];    /* the round in flight: [a stop signal here, not through], max over ranks */
  int active;      /* a round is in flight */
  int stop;        /* a round said some rank had a stop signal: end the pass */
  int all_through; /* a round said every rank was through: the pass is over */
  int64_t rounds;  /* rounds completed: each needs every rank to have polled */
} cg_val_poll_t;

/* Between two batches of this rank's pass (through 0) or after it (1): 1 when the pass must end
 * now (p->stop). */
int cg_val_poll(cg_run_t *r, cg_val_poll_t *p, int through);
/* After this rank's pass, or its stop: polls until every rank is through; p->stop then says,
 * the same on every rank, whether the pass was cut short. It arms the watchdog (a validation
 * before the first training step leaves it armed: the caller disarms it for that step) and
 * beats it at each round completed, not while none does: a peer that is stuck (stopped, lost)
 * ends the job after --timeout-s, naming this wait. */
void cg_val_poll_finish(cg_run_t *r, cg_val_poll_t *p);

/* Collective, at the end of a pass over r->val_src (square or whole, val_whole.h): this rank's
 * counts (confk: K x K for K >= 2, summed in place and handed to the result, which the caller
 * frees), its samples --skip-bad left out and its sum of per-image losses, summed over ranks
 * into the figures; the skipped loads reported. The images scored are the set less those left
 * out, and the loss is their mean. stopped (cg_val_poll_t.stop, the same on every rank): the
 * pass was cut short for a stop signal; the result is stopped, without figures (rank 0 says
 * so). */
cg_val_t cg_val_gather(const cg_run_t *r, cg_confusion_t conf, int64_t *confk, int64_t bad,
                       double loss_sum, int stopped);

/* Collective, at the end of a run that was not stopped: the final lines, res (optional; every
 * rank), --metrics-out and --params-out (rank 0). Returns 0, or 1 when an output file could not
 * be written (warned). */
int cg_report_final(cg_run_t *r, const cg_train_figs_t *f, cg_train_result_t *res);

/* After cg_run_teardown: where the timeline went, when it was written. */
void cg_report_timeline(const cg_run_t *r);

#endif
