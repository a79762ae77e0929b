/* metrics.h: segmentation metrics from exact integer confusion counts.
 * Counts are summed over batches and over ranks (as int64, so the sum is exact and the same on
 * every rank count); IoU, Dice and accuracy are derived from the totals. */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t tp, fp, fn, tn;
} cg_confusion_t;

/* Adds the counts of n pixels (pred and mask 0/1). */
void cg_confusion_add(cg_confusion_t *c, const uint8_t *pred, const uint8_t *mask, size_t n);

/* As cg_confusion_add, leaving out the pixels whose mask is `ignore` (< 0: none, exactly
 * cg_confusion_add); the other mask values > 0 are foreground. */
void cg_confusion_add_ignore(cg_confusion_t *c, const uint8_t *pred, const uint8_t *mask,
                             size_t n, int ignore);

/* to += from, count by count: batches, windows or ranks summed into one. */
void cg_confusion_merge(cg_confusion_t *to, const cg_confusion_t *from);

/* IoU = tp/(tp+fp+fn), Dice = 2tp/(2tp+fp+fn) (both 1 when there is no foreground at all),
 * accuracy = (tp+tn)/all. */
double cg_confusion_iou(const cg_confusion_t *c);
double cg_confusion_dice(const cg_confusion_t *c);
double cg_confusion_acc(const cg_confusion_t *c);

/* K-class confusion: conf is K*K int64 counts, conf[truth*K + pred]. Pixels whose mask is
 * `ignore` (or any value >= K, which the data layer refuses) are left out; pred values >= K
 * are not expected (argmax). */
void cg_confk_add(int64_t *conf, int K, const uint8_t *pred, const uint8_t *mask, size_t n,
                  int ignore);
/* to += from over K x K counts, as cg_confusion_merge. */
void cg_confk_merge(int64_t *to, const int64_t *from, int K);

/* Class c of a K x K matrix: IoU = tp/(tp+fp+fn), Dice = 2tp/(2tp+fp+fn), each 0 when the
 * class is in neither the truth nor the prediction (then the return is 0, else 1: the class
 * counts in the mean); *gt = its ground-truth pixels (optional), *pr = predicted (optional). */
int cg_confk_class(const int64_t *conf, int K, int c, double *iou, double *dice, int64_t *gt,
                   int64_t *pr);
/* mIoU / mean Dice over the classes present in the truth or the prediction (0 when none);
 * pixel accuracy = trace / total (0 when empty). */
double cg_confk_miou(const int64_t *conf, int K);
double cg_confk_mdice(const int64_t *conf, int K);
double cg_confk_acc(const int64_t *conf, int K);
/* Class c's accuracy, mmsegmentation's per-class Acc: tp / its ground-truth pixels (its recall);
 * 0 when it has none (then the return is 0, else 1: the class counts in mAcc). */
int cg_confk_class_acc(const int64_t *conf, int K, int c, double *acc);
/* mAcc, mmsegmentation's: the mean class accuracy over the classes in the truth (0 when none). */
double cg_confk_macc(const int64_t *conf, int K);

/* The per-class table of a K x K matrix to stdout (train's validation, predict --masks): a
 * header after head, then one row a class after row: its id (printf's %*d of id_width: below 0
 * left-aligned), its name (names: K of them, or NULL for none: no name column), IoU, Dice and
 * Acc with `digits` decimals ("-" where the class does not count in the mean), its
 * ground-truth and predicted pixels. */
void cg_confk_print_table(const char *head, const char *row, int id_width, const int64_t *conf,
                          int K, const char *const *names, int digits);

#endif
