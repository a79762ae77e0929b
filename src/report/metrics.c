/* metrics.c: confusion counts (see metrics.h). */
#include "metrics.h"

#include <locale.h> /* newlocale, uselocale: text_cols' wcwidth in UTF-8 */
#include <stdio.h>
#include <string.h>
#include <wchar.h>

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

/* The terminal columns of code point u where the C library has no UTF-8 locale: a short table
 * (Markus Kuhn's, cut down): the common combining marks, variation selectors and zero-width
 * characters none, East Asian wide and full-width characters and the main emoji blocks two, the
 * rest one. */
static int cp_cols(uint32_t u) {
  static const uint32_t zero[][2] = {{0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD},
                                     {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0E31, 0x0E31},
                                     {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x1AB0, 0x1AFF},
                                     {0x1DC0, 0x1DFF}, {0x200B, 0x200F}, {0x20D0, 0x20FF},
                                     {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0xE0100, 0xE01EF}};
  static const uint32_t wide[][2] = {{0x1100, 0x115F},   {0x2E80, 0x303E},  {0x3041, 0x33FF},
                                     {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},  {0xA000, 0xA4CF},
                                     {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},  {0xFE30, 0xFE4F},
                                     {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},  {0x1F300, 0x1F64F},
                                     {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD}};
  for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
    if (u >= zero[i][0] && u <= zero[i][1]) return 0;
  for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
    if (u >= wide[i][0] && u <= wide[i][1]) return 2;
  return 1;
}

/* The terminal columns of UTF-8 text s (class names are checked UTF-8), for a name's padding:
 * wcwidth(3) of each character in the C.UTF-8 locale (this thread's alone, for the call: the
 * process's locale is not touched), or cp_cols' table where that locale is missing. */
static int text_cols(const char *s) {
  static locale_t utf8;
  static int tried;
  if (!tried) { /* rank 0's report thread alone prints the tables */
    tried = 1;
    utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  }
  if (utf8) {
    const locale_t old = uselocale(utf8);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    int n = 0;
    size_t len = strlen(s);
    while (len) {
      wchar_t wc;
      const size_t k = mbrtowc(&wc, s, len, &st);
      if (k == (size_t)-1 || k == (size_t)-2 || k == 0) break; /* not in a checked name */
      const int w = wcwidth(wc);
      n += w > 0 ? w : 0;
      s += k;
      len -= k;
    }
    uselocale(old);
    return n;
  }
  int n = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    const int len = *p < 0x80 ? 1 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : 4;
    uint32_t u = len == 1 ? *p : *p & (0x7F >> len);
    int k = 1;
    for (; k < len && (p[k] & 0xC0) == 0x80; k++) u = (u << 6) | (p[k] & 0x3F);
    n += cp_cols(u);
    p += k; /* a cut sequence (not in a checked name) ends where its bytes do */
  }
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
