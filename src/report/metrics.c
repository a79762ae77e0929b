/* metrics.c: confusion counts (see metrics.h). */
#include "metrics.h"

#include <stdio.h>

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

void cg_confusion_merge(cg_confusion_t *to, const cg_confusion_t *from) {
  to->tp += from->tp;
  to->fp += from->fp;
  to->fn += from->fn;
  to->tn += from->tn;
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

void cg_confusion_add_ignore(cg_confusion_t *c, const uint8_t *pred, const uint8_t *mask,
                             size_t n, int ignore) {
  if (ignore < 0) {
    cg_confusion_add(c, pred, mask, n);
    return;
  }
  int64_t tp = 0, pp = 0, yp = 0, nv = 0;
  for (size_t i = 0; i < n; i++) {
    if (mask[i] == ignore) continue;
    int p = pred[i] != 0, y = mask[i] != 0;
    tp += p & y;
    pp += p;
    yp += y;
    nv++;
  }
  c->tp += tp;
  c->fp += pp - tp;
  c->fn += yp - tp;
  c->tn += nv - pp - yp + tp;
}

void cg_confk_merge(int64_t *to, const int64_t *from, int K) {
  for (int i = 0; i < K * K; i++) to[i] += from[i];
}

void cg_confk_add(int64_t *conf, int K, const uint8_t *pred, const uint8_t *mask, size_t n,
                  int ignore) {
  for (size_t i = 0; i < n; i++) {
    const int y = mask[i], p = pred[i];
    if (y == ignore || y >= K || p >= K) continue;
    conf[y * K + p]++;
  }
}

int cg_confk_class(const int64_t *conf, int K, int c, double *iou, double *dice, int64_t *gt,
                   int64_t *pr) {
  int64_t row = 0, col = 0;
  for (int j = 0; j < K; j++) {
    row += conf[c * K + j];
    col += conf[j * K + c];
  }
  const int64_t tp = conf[c * K + c], fn = row - tp, fp = col - tp;
  if (gt) *gt = row;
  if (pr) *pr = col;
  const int present = row + col > 0;
  if (iou) *iou = present ? (double)tp / (double)(tp + fp + fn) : 0.0;
  if (dice) *dice = present ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
  return present;
}

static double confk_mean(const int64_t *conf, int K, int which) {
  double sum = 0;
  int np = 0;
  for (int c = 0; c < K; c++) {
    double iou, dice;
    if (!cg_confk_class(conf, K, c, &iou, &dice, NULL, NULL)) continue;
    sum += which ? dice : iou;
    np++;
  }
  return np ? sum / np : 0.0;
}

double cg_confk_miou(const int64_t *conf, int K) { return confk_mean(conf, K, 0); }
double cg_confk_mdice(const int64_t *conf, int K) { return confk_mean(conf, K, 1); }

double cg_confk_acc(const int64_t *conf, int K) {
  int64_t all = 0, diag = 0;
  for (int i = 0; i < K * K; i++) all += conf[i];
  for (int c = 0; c < K; c++) diag += conf[c * K + c];
  return all ? (double)diag / (double)all : 0.0;
}

int cg_confk_class_acc(const int64_t *conf, int K, int c, double *acc) {
  int64_t row = 0;
  for (int j = 0; j < K; j++) row += conf[c * K + j];
  *acc = row > 0 ? (double)conf[c * K + c] / (double)row : 0.0;
  return row > 0;
}

double cg_confk_macc(const int64_t *conf, int K) {
  double sum = 0;
  int np = 0;
  for (int c = 0; c < K; c++) {
    double acc;
    if (!cg_confk_class_acc(conf, K, c, &acc)) continue;
    sum += acc;
    np++;
  }
  return np ? sum / np : 0.0;
}

/* The width of UTF-8 text s for a name's padding: its code points (one terminal column each in
 * most scripts; wide CJK and emoji take two, combining marks none: their rows shift). */
static int text_cols(const char *s) {
  int n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
  return n;
}

void cg_confk_print_table(const char *head, const char *row, int id_width, const int64_t *conf,
                          int K, const char *const *names, int digits) {
  const int w = digits + 4; /* "0." and the digits, two spaces before */
  int nw = 0;               /* the name column: its widest name, at least "name" */
  for (int c = 0; names && c < K; c++)
    if (text_cols(names[c]) > nw) nw = text_cols(names[c]);
  if (names && nw < 4) nw = 4;
  printf("%s%*s", head, id_width, "class");
  if (names) printf(" %-*s", nw, "name");
  printf(" %*s %*s %*s %14s %14s\n", w, "IoU", w, "Dice", w, "Acc", "gt pixels", "pred pixels");
  for (int c = 0; c < K; c++) {
    double iou, dice, acc;
    int64_t gt, pr;
    char fi[32] = "-", fd[32] = "-", fa[32] = "-";
    if (cg_confk_class(conf, K, c, &iou, &dice, &gt, &pr)) {
      snprintf(fi, sizeof fi, "%.*f", digits, iou);
      snprintf(fd, sizeof fd, "%.*f", digits, dice);
    }
    if (cg_confk_class_acc(conf, K, c, &acc)) snprintf(fa, sizeof fa, "%.*f", digits, acc);
    printf("%s%*d", row, id_width, c);
    if (names) printf(" %s%*s", names[c], nw - text_cols(names[c]), "");
    printf(" %*s %*s %*s %14lld %14lld\n", w, fi, w, fd, w, fa, (long long)gt, (long long)pr);
  }
}
