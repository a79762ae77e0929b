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

/* IoU = tp/(tp+fp+fn), Dice = 2tp/(2tp+fp+fn) (both 1 when there is no foreground at all),
 * accuracy = (tp+tn)/all. */
double cg_confusion_iou(const cg_confusion_t *c);
double cg_confusion_dice(const cg_confusion_t *c);
double cg_confusion_acc(const cg_confusion_t *c);

#endif
