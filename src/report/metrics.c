/* metrics.c: confusion counts (see metrics.h). */
#include "metrics.h"

void cg_confusion_add(cg_confusion_t *c, const uint8_t *pred, const uint8_t *mask, size_t n) {
  /* Branch-free: tp = sum p*y, predicted positives and true positives give the rest. */
  int64_t tp = 0, pp = 0, yp = 0;
  for (size_t i = 0; i < n; i++) {
    int p = pred[i] != 0, y = mask[i] != 0;
    tp += p & y;
    pp += p;
    yp += y;
  }
  c->tp += tp;
  c->fp += pp - tp;
  c->fn += yp - tp;
  c->tn += (int64_t)n - pp - yp + tp;
}

double cg_confusion_iou(const cg_confusion_t *c) {
  int64_t d = c->tp + c->fp + c->fn;
  return d ? (double)c->tp / (double)d : 1.0;
}

double cg_confusion_dice(const cg_confusion_t *c) {
  int64_t d = 2 * c->tp + c->fp + c->fn;
  return d ? 2.0 * (double)c->tp / (double)d : 1.0;
}

double cg_confusion_acc(const cg_confusion_t *c) {
  int64_t d = c->tp + c->fp + c->fn + c->tn;
  return d ? (double)(c->tp + c->tn) / (double)d : 0.0;
}
