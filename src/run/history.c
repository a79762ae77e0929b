/* history.c: the per-validation metrics history, JSON lines and CSV (history.h).
 *
 * A file is only ever appended to while the run goes on; the one rewrite, when a resumed run
 * drops the records beyond its step, goes through cg_afile_save (a temporary renamed over it),
 * so a crash then leaves either the old or the filtered file. */
#include "history.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h" /* cg_afile_save, cg_afile_append, cg_file_read */
#include "json.h"        /* cg_json_parse: the steps of the records kept on resume */
#include "log.h"         /* cg_malloc */
#include "metrics.h"     /* cg_confk_class, cg_confk_class_acc: per-class IoU and accuracy */

struct cg_history {
  FILE *jsonl, *csv;
  int K;
  double wall0;
};

/* The whole file, NUL-terminated; NULL with *missing = 1 when it does not exist. */
static char *slurp(const char *path, size_t *len, int *missing, char *err, size_t errlen) {
  char why[512];
  char *buf = cg_file_read(path, len, why, sizeof why);
  *missing = !buf && errno == ENOENT;
  if (!buf && !*missing) snprintf(err, errlen, "cannot read '%.300s': %s", path, why);
  return buf;
}

/* The step of one complete line: JSON "step", or a CSV row's first field; -1 for a line that
 * is neither (a header, garbage). */
static int64_t line_step(const char *line, int csv, double *wall) {
  if (csv) {
    char *end;
    long long s = strtoll(line, &end, 10);
    return end != line && *end == ',' ? s : -1;
  }
  char e[8];
  cg_json_t *o = cg_json_parse(line, e, sizeof e);
  if (!o) return -1;
  const double s = cg_json_num(o, "step", -1);
  if (wall) *wall = cg_json_num(o, "wall_s", 0);
  cg_json_free(o);
  return s >= 0 && s <= 9007199254740992.0 && s == floor(s) ? (int64_t)s : -1; /* no cast UB */
}

/* Rewrites path (atomically) with `head` and the complete records of step <= keep_upto, then
 * opens it for appending. keep_upto < 0: only head. */
static FILE *reopen(const char *path, int csv, const char *head, int64_t keep_upto, double *wall,
                    char *err, size_t errlen) {
  size_t len = 0;
  int missing = 0;
  char *old = keep_upto >= 0 ? slurp(path, &len, &missing, err, errlen) : NULL;
  if (keep_upto >= 0 && !old && !missing) return NULL;
  char *out = cg_malloc(len + strlen(head) + 1, "history");
  size_t n = (size_t)snprintf(out, strlen(head) + 1, "%s", head);
  for (char *p = old; p && *p;) {
    char *nl = strchr(p, '\n');
    if (!nl) break; /* a torn last line: dropped */
    *nl = 0;
    double w = 0;
    const int64_t s = line_step(p, csv, &w);
    if (s >= 0 && s <= keep_upto) {
      n += (size_t)sprintf(out + n, "%s\n", p);
      if (wall) *wall = w;
    }
    p = nl + 1;
  }
  free(old);
  struct stat st; /* a fresh run's history is its own: an earlier run's goes, said */
  if (keep_upto < 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    cg_log_warn("%s: this run is not resumed, so its history replaces the %lld bytes there (an "
                "earlier run's); --resume continues a history", path, (long long)st.st_size);
  char e2[1200];
  const int rc = cg_afile_save(path, out, n, e2, sizeof e2);
  free(out);
  if (rc) {
    snprintf(err, errlen, "%s", e2);
    return NULL;
  }
  return cg_afile_append(path, 0, err, errlen);
}

cg_history_t *cg_history_create(const char *jsonl, const char *csv, int K, int64_t keep_upto,
                                char *err, size_t errlen) {
  err[0] = 0;
  const int has_j = jsonl && jsonl[0], has_c = csv && csv[0];
  if (!has_j && !has_c) return NULL;
  cg_history_t *h = cg_calloc(1, sizeof *h, "history");
  h->K = K;
  if (has_j && !(h->jsonl = reopen(jsonl, 0, "", keep_upto, &h->wall0, err, errlen))) goto fail;
  if (has_c) {
    size_t cap = 256 + 32 * (size_t)K;
    char *head = cg_malloc(cap, "history");
    size_t n = (size_t)snprintf(head, cap, "step,epoch,wall_s,train_loss,val_loss,%s,lr,img_per_s",
                                K > 1 ? "val_miou,val_mdice,val_acc" : "val_iou,val_dice,val_acc");
    for (int c = 0; K > 1 && c < K; c++) n += (size_t)snprintf(head + n, cap - n, ",iou_%d", c);
    if (K > 1) n += (size_t)snprintf(head + n, cap - n, ",val_macc");
    for (int c = 0; K > 1 && c < K; c++) n += (size_t)snprintf(head + n, cap - n, ",acc_%d", c);
    snprintf(head + n, cap - n, ",grad_norm\n");
    h->csv = reopen(csv, 1, head, keep_upto, has_j ? NULL : &h->wall0, err, errlen);
    free(head);
    if (!h->csv) goto fail;
  }
  return h;
fail:
  cg_history_destroy(h);
  return NULL;
}

void cg_history_destroy(cg_history_t *h) {
  if (!h) return;
  if (h->jsonl) fclose(h->jsonl);
  if (h->csv) fclose(h->csv);
  free(h);
}

double cg_history_wall_offset(const cg_history_t *h) { return h ? h->wall0 : 0; }

/* "%.6g", or null / empty for a value that is not finite. */
static void fmt_num(char *buf, size_t len, double v, int csv) {
  if (isfinite(v)) snprintf(buf, len, "%.6g", v);
  else snprintf(buf, len, "%s", csv ? "" : "null");
}

/* One line, written whole, flushed and synced. */
static int put_line(FILE *f, const char *line, char *err, size_t errlen) {
  if (fputs(line, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    snprintf(err, errlen, "cannot append to the history: %s", strerror(errno));
    clearerr(f);
    return -1;
  }
  return 0;
}

/* K >= 2: the JSON key ", \"val_macc\": m, \"val_class_acc\": [...]" (acc) or
 * ", \"val_class_iou\": [...]" into js, and the same columns into cs (val_macc, acc_c or
 * iou_c), *m advanced; returns the JSON's length. A class without a figure (absent:
 * cg_confk_class, _class_acc) is null / empty. */
static size_t class_list(const int64_t *confk, int K, int acc, char *js, size_t jcap, char *cs,
                         size_t ccap, size_t *m) {
  size_t n = 0, k = 0;
  char a[32];
  if (acc) { /* mAcc first, in both */
    const double macc = confk ? cg_confk_macc(confk, K) : NAN;
    fmt_num(a, sizeof a, macc, 0);
    n += (size_t)snprintf(js + n, jcap - n, ", \"val_macc\": %s", a);
    fmt_num(a, sizeof a, macc, 1);
    k += (size_t)snprintf(cs + k, ccap - k, ",%s", a);
  }
  n += (size_t)snprintf(js + n, jcap - n, ", \"%s\": [", acc ? "val_class_acc" : "val_class_iou");
  for (int c = 0; c < K; c++) {
    double v = NAN, dice;
    const int has = confk && (acc ? cg_confk_class_acc(confk, K, c, &v)
                                  : cg_confk_class(confk, K, c, &v, &dice, NULL, NULL));
    if (!has) v = NAN;
    fmt_num(a, sizeof a, v, 0);
    n += (size_t)snprintf(js + n, jcap - n, "%s%s", c ? ", " : "", a);
    fmt_num(a, sizeof a, v, 1);
    k += (size_t)snprintf(cs + k, ccap - k, ",%s", a);
  }
  *m += k;
  n += (size_t)snprintf(js + n, jcap - n, "]");
  return n;
}

int cg_history_add(cg_history_t *h, const cg_history_rec_t *rec, char *err, size_t errlen) {
  if (!h) return 0;
  const int K = h->K;
  const size_t cap = 1024 + 48 * (size_t)K;
  char *js = cg_malloc(cap, "history"), *cs = cg_malloc(cap, "history");
  char v[9][32];
  const double vals[9] = {rec->epoch, rec->wall_s, rec->train_loss, rec->val_loss, rec->iou,
                          rec->dice, rec->acc, rec->lr, rec->img_per_s};
  for (int i = 0; i < 9; i++) fmt_num(v[i], sizeof v[i], vals[i], 0);
  const char *ki = K > 1 ? "val_miou" : "val_iou", *kd = K > 1 ? "val_mdice" : "val_dice";
  size_t n = (size_t)snprintf(js, cap,
                              "{\"step\": %lld, \"epoch\": %s, \"wall_s\": %s, \"train_loss\": %s, "
                              "\"val_loss\": %s, \"%s\": %s, \"%s\": %s, \"val_acc\": %s, "
                              "\"lr\": %s, \"img_per_s\": %s",
                              (long long)rec->step, v[0], v[1], v[2], v[3], ki, v[4], kd, v[5],
                              v[6], v[7], v[8]);
  for (int i = 0; i < 9; i++) fmt_num(v[i], sizeof v[i], vals[i], 1);
  size_t m = (size_t)snprintf(cs, cap, "%lld,%s,%s,%s,%s,%s,%s,%s,%s,%s", (long long)rec->step,
                              v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
  if (K > 1) {
    n += class_list(rec->confk, K, 0, js + n, cap - n, cs + m, cap - m, &m);
    n += class_list(rec->confk, K, 1, js + n, cap - n, cs + m, cap - m, &m);
  }
  char g[32];
  fmt_num(g, sizeof g, rec->grad_norm, 0);
  snprintf(js + n, cap - n, ", \"grad_norm\": %s}\n", g);
  fmt_num(g, sizeof g, rec->grad_norm, 1);
  snprintf(cs + m, cap - m, ",%s\n", g);
  int rc = 0;
  if (h->jsonl && put_line(h->jsonl, js, err, errlen)) rc = -1;
  if (h->csv && put_line(h->csv, cs, err, errlen)) rc = -1;
  free(js);
  free(cs);
  return rc;
}
