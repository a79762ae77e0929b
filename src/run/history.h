/* history.h: the metrics history of a training run — one record per validation, as JSON lines
 * (--history-out, default CKPT_DIR/history.jsonl) and optionally as CSV (--history-csv).
 *
 * Format (ARCHITECTURE.md, "Other files"): one JSON object per line, keys step, epoch (steps /
 * steps per epoch), wall_s (seconds since the run started, continued across resumes),
 * train_loss (mean over the steps since the previous validation), val_loss, then val_iou,
 * val_dice, val_acc (binary) or val_miou, val_mdice, val_acc, val_macc, val_class_iou [K] (null
 * for a class absent from the truth and the predictions) and val_class_acc [K] (null for a class
 * absent from the truth) (K >= 2), lr (of the last step), img_per_s (training samples per
 * training second since the previous validation), grad_norm (--clip-grad-norm: the mean
 * gradient norm of the steps since the previous validation; null without). CSV: a header, then
 * the same values per row; K >= 2 adds the columns iou_0 .. iou_{K-1}, val_macc, acc_0 ..
 * acc_{K-1}, and grad_norm ends every row (new columns at the end, so a resumed run's older rows
 * keep theirs).
 *
 * Durability: every record is one write of a whole line, flushed and fsync'ed before the next
 * step; a crash can at worst leave a torn last line, which readers (the resume filter here,
 * scripts/plot_history.py) skip. A resumed run keeps the records up to its step and drops the
 * rest (rewritten atomically), so a history never holds a step twice. Rank 0 only; no MPI. */
#ifndef CG_HISTORY_H
#define CG_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct cg_history cg_history_t;

/* One validation. confk: K x K counts (truth x pred) for K >= 2, else NULL (conf figures in
 * iou, dice, acc). */
typedef struct {
  int64_t step;
  double epoch, wall_s, train_loss, val_loss, iou, dice, acc, lr, img_per_s;
  double grad_norm; /* --clip-grad-norm: the mean gradient norm of those steps; NAN: none */
  const int64_t *confk;
} cg_history_rec_t;

/* Opens the history files (either path may be NULL or ""; both empty: returns NULL with err
 * empty). keep_upto >= 0 (a resumed run): the complete records with step <= keep_upto stay and
 * the rest is dropped; < 0: the files start empty. K: the run's classes. NULL with err filled
 * when a file cannot be read or written. The caller destroys the handle. */
cg_history_t *cg_history_create(const char *jsonl, const char *csv, int K, int64_t keep_upto,
                                char *err, size_t errlen);
void cg_history_destroy(cg_history_t *h); /* NULL-safe */

/* The wall_s of the last record kept at create (0 for a fresh history): a resumed run adds it
 * to its own clock so that wall time goes on increasing. */
double cg_history_wall_offset(const cg_history_t *h);

/* Appends one record to each file (flushed and fsync'ed). 0, or -1 with err filled. */
int cg_history_add(cg_history_t *h, const cg_history_rec_t *rec, char *err, size_t errlen);

#endif
