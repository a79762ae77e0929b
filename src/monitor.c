/* monitor.c: rendering of stats records for cogpu-monitor (see monitor.h). */
#include "monitor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static void pct(char *b, size_t n, const cg_json_t *o, const char *key) {
  double v = cg_json_num(o, key, NAN);
  if (isfinite(v)) snprintf(b, n, "%.1f%%", 100.0 * v);
  else snprintf(b, n, "-");
}

int cg_monitor_render(const char *line, const char *source, double age_s, int ansi, FILE *out,
                      char *err, size_t errlen) {
  cg_json_t *r = cg_json_parse(line, err, errlen);
  if (!r) return -1;
  const cg_json_t *ranks = cg_json_get(r, "ranks"), *cl = cg_json_get(r, "cluster");
  if (!ranks || ranks->type != CG_JSON_ARR || !cl) {
    snprintf(err, errlen, "not a cogpu-dist stats record (no \"ranks\" / \"cluster\")");
    cg_json_free(r);
    return -1;
  }
  double step = cg_json_num(r, "step", 0), total = cg_json_num(r, "total_steps", 0);
  const cg_json_t *st = cg_json_get(cl, "straggler");
  int straggler = st && st->type == CG_JSON_NUM ? (int)st->num : -1;
  int gpu = cg_json_num(r, "gpu_backend", 0) != 0;
  const char *bold = ansi ? "\033[1m" : "", *rev = ansi ? "\033[7;31m" : "", *off = ansi ? "\033[0m" : "";
  fprintf(out, "%scogpu-monitor%s %s  step %.0f/%.0f (%.0f%%)%s  %d rank(s)  %.1f img/s  loss %.4f",
          bold, off, source, step, total, total > 0 ? 100.0 * step / total : 0.0,
          cg_json_num(r, "final", 0) ? " finished" : "", ranks->n,
          cg_json_num(cl, "img_per_s", 0), cg_json_num(r, "loss", NAN));
  if (age_s >= 0) fprintf(out, "  (updated %.0f s ago)", age_s);
  fprintf(out, "\n");
  fprintf(out, "%s  %-5s %-14s %-16s %8s %9s %9s %9s %9s %9s %9s%s\n", bold, "rank", "host", "gpu",
          "step", "step_ms", gpu ? "gpu_busy" : "compute", "data_wait", "comm_exp", "cpu_busy",
          "img/s", off);
  for (int i = 0; i < ranks->n; i++) {
    const cg_json_t *k = &ranks->items[i];
    int rk = (int)cg_json_num(k, "rank", i);
    char b1[16], b2[16], b3[16], b4[16], label[16];
    pct(b1, sizeof b1, k, gpu ? "gpu_busy" : "compute_busy");
    pct(b2, sizeof b2, k, "data_wait");
    pct(b3, sizeof b3, k, "comm_exposed");
    pct(b4, sizeof b4, k, "cpu_busy");
    snprintf(label, sizeof label, "%d%s", rk, rk == straggler && !ansi ? "*" : "");
    fprintf(out, "%s  %-5s %-14.14s %-16.16s %8.0f %9.2f %9s %9s %9s %9s %9.1f%s\n",
            rk == straggler ? rev : "", label, cg_json_str(k, "host", "?"),
            cg_json_str(k, "gpu", "-"), step, cg_json_num(k, "step_ms", NAN), b1, b2, b3, b4,
            cg_json_num(k, "img_per_s", NAN), rk == straggler ? off : "");
  }
  const char *grp[2] = {"mean", "max"};
  for (int g = 0; g < 2; g++) {
    const cg_json_t *o = cg_json_get(cl, grp[g]);
    if (!o) continue;
    char b1[16], b2[16], b3[16], b4[16];
    pct(b1, sizeof b1, o, gpu ? "gpu_busy" : "compute_busy");
    pct(b2, sizeof b2, o, "data_wait");
    pct(b3, sizeof b3, o, "comm_exposed");
    pct(b4, sizeof b4, o, "cpu_busy");
    fprintf(out, "  %-5s %-14s %-16s %8s %9.2f %9s %9s %9s %9s %9.1f\n", grp[g], "", "", "",
            cg_json_num(o, "step_ms", NAN), b1, b2, b3, b4, cg_json_num(o, "img_per_s", NAN));
  }
  const cg_json_t *imb = cg_json_get(cl, "imbalance");
  fprintf(out, "  imbalance (max/mean - 1): own time %.1f%%, step %.1f%%\n",
          100.0 * cg_json_num(imb, "own_ms", NAN), 100.0 * cg_json_num(imb, "step_ms", NAN));
  if (straggler >= 0) {
    const cg_json_t *k = NULL;
    for (int i = 0; i < ranks->n; i++)
      if ((int)cg_json_num(&ranks->items[i], "rank", i) == straggler) k = &ranks->items[i];
    fprintf(out, "  %sstraggler: rank %d%s on %s, own time %.2f ms/step vs median %.2f\n", rev,
            straggler, off, k ? cg_json_str(k, "host", "?") : "?", k ? cg_json_num(k, "own_ms", NAN) : NAN,
            cg_json_num(cl, "median_own_ms", NAN));
  } else {
    fprintf(out, "  straggler: none\n");
  }
  cg_json_free(r);
  return 0;
}

char *cg_monitor_last_line(const char *path, int *final, char *err, size_t errlen) {
  *final = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  /* Records are a few KB; read the tail only. */
  long from = len > (1 << 20) ? len - (1 << 20) : 0;
  fseek(f, from, SEEK_SET);
  size_t n = (size_t)(len - from);
  char *buf = malloc(n + 1);
  if (!buf || fread(buf, 1, n, f) != n) {
    fclose(f);
    free(buf);
    snprintf(err, errlen, "%s: read failed", path);
    return NULL;
  }
  fclose(f);
  buf[n] = 0;
  /* the last '\n'-terminated line */
  long end = (long)n - 1;
  while (end >= 0 && buf[end] != '\n') end--; /* drop a line still being written */
  if (end < 0) {
    free(buf);
    snprintf(err, errlen, "%s: no complete record yet", path);
    return NULL;
  }
  buf[end] = 0;
  long start = end - 1;
  while (start >= 0 && buf[start] != '\n') start--;
  char *line = strdup(buf + start + 1);
  free(buf);
  if (line && strstr(line, "\"final\": true")) *final = 1;
  return line;
}
