/* monitor.c: checking, drawing and following stats records for cogpu-monitor (see monitor.h).
 *
 * A stats file is input from outside: every number the view converts or prints is checked
 * against a range before use (a rank must be one of the record's, an integer step fits a
 * double exactly), so a corrupt or hostile line is skipped and counted instead of reaching an
 * int conversion. The file is read with pread from a kept offset or, when it cannot be sought
 * (pipe, FIFO), as a non-blocking stream: never through ftell, never all at once. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

/* ---- checking ---------------------------------------------------------------------------- */

enum { F_REQ = 1, F_INT = 2 };
typedef struct {
  const char *key;
  double lo, hi; /* inclusive; null is always allowed unless F_REQ */
  int flags;
} field_t;

/* The ranges are far wider than any real job produces (ratios are nominally 0..1, the
 * imbalance at most ranks - 1): they exist to catch garbage, not to judge a run. */
static const field_t k_top[] = {{"step", 0, 1e15, F_REQ | F_INT},
                                {"total_steps", 0, 1e15, F_REQ | F_INT},
                                {"loss", -1e30, 1e30, 0}};
static const field_t k_row[] = {{"step_ms", 0, 1e9, 0},       {"own_ms", -1e9, 1e9, 0},
                                {"gpu_busy", -1e3, 1e3, 0},   {"compute_busy", -1e3, 1e3, 0},
                                {"data_wait", -1e3, 1e3, 0},  {"comm_exposed", -1e3, 1e3, 0},
                                {"cpu_busy", -1e3, 1e3, 0},   {"img_per_s", 0, 1e12, 0}};
static const field_t k_cluster[] = {{"img_per_s", 0, 1e12, 0}, {"median_own_ms", -1e9, 1e9, 0}};
static const field_t k_val[] = {{"step", 0, 1e15, F_REQ | F_INT}, {"loss", -1e30, 1e30, 0},
                                {"iou", -1e3, 1e3, 0},   {"miou", -1e3, 1e3, 0},
                                {"dice", -1e3, 1e3, 0},  {"mdice", -1e3, 1e3, 0},
                                {"acc", -1e3, 1e3, 0},   {"macc", -1e3, 1e3, 0}};
static const field_t k_imb[] = {{"own_ms", -1e3, 1e6, 0}, {"step_ms", -1e3, 1e6, 0}};
#define NF(a) (sizeof(a) / sizeof((a)[0]))

static int check_fields(const cg_json_t *o, const char *where, const field_t *f, size_t n,
                        char *why, size_t whylen) {
  for (size_t i = 0; i < n; i++) {
    const cg_json_t *v = cg_json_get(o, f[i].key);
    if (!v || v->type == CG_JSON_NULL) {
      if (!(f[i].flags & F_REQ)) continue;
      snprintf(why, whylen, "%s\"%s\" missing", where, f[i].key);
      return -1;
    }
    if (v->type != CG_JSON_NUM) {
      snprintf(why, whylen, "%s\"%s\" is not a number", where, f[i].key);
      return -1;
    }
    int integral = !(f[i].flags & F_INT) || v->num == floor(v->num);
    if (!(v->num >= f[i].lo && v->num <= f[i].hi) || !integral) {
      snprintf(why, whylen, "%s\"%s\": %g is not %s in %g..%g", where, f[i].key, v->num,
               f[i].flags & F_INT ? "an integer" : "a number", f[i].lo, f[i].hi);
      return -1;
    }
  }
  return 0;
}

/* rank and straggler: an integer index into the record's ranks, so (int) is defined. */
static int check_rank(const cg_json_t *v, const char *what, int nranks, int required, char *why,
                      size_t whylen) {
  if (!v || v->type == CG_JSON_NULL) {
    if (!required) return 0;
    snprintf(why, whylen, "%s missing", what);
    return -1;
  }
  if (v->type != CG_JSON_NUM || !(v->num >= 0 && v->num < nranks) || v->num != floor(v->num)) {
    if (v->type == CG_JSON_NUM)
      snprintf(why, whylen, "%s %g is not a rank of this %d-rank record", what, v->num, nranks);
    else snprintf(why, whylen, "%s is not a number", what);
    return -1;
  }
  return 0;
}

/* The last line of a run that stopped early (cg_stats_stopped): "stopped", step, total_steps. */
static int is_stop_record(const cg_json_t *r) {
  const cg_json_t *st = cg_json_get(r, "stopped");
  return st && st->type == CG_JSON_STR;
}

static int check_tree(const cg_json_t *r, char *why, size_t whylen) {
  if (is_stop_record(r)) return check_fields(r, "", k_top, NF(k_top), why, whylen);
  const cg_json_t *ranks = cg_json_get(r, "ranks"), *cl = cg_json_get(r, "cluster");
  if (!ranks || ranks->type != CG_JSON_ARR || !cl || cl->type != CG_JSON_OBJ) {
    snprintf(why, whylen, "not a cogpu-dist stats record (no \"ranks\" / \"cluster\")");
    return -1;
  }
  if (check_fields(r, "", k_top, NF(k_top), why, whylen) ||
      check_fields(cl, "cluster.", k_cluster, NF(k_cluster), why, whylen) ||
      check_fields(cg_json_get(cl, "mean"), "cluster.mean.", k_row, NF(k_row), why, whylen) ||
      check_fields(cg_json_get(cl, "max"), "cluster.max.", k_row, NF(k_row), why, whylen) ||
      check_fields(cg_json_get(cl, "imbalance"), "cluster.imbalance.", k_imb, NF(k_imb), why,
                   whylen) ||
      check_rank(cg_json_get(cl, "straggler"), "cluster.straggler", ranks->n, 0, why, whylen))
    return -1;
  const cg_json_t *val = cg_json_get(r, "val"); /* optional: the latest validation */
  if (val && val->type != CG_JSON_NULL) {
    if (val->type != CG_JSON_OBJ) {
      snprintf(why, whylen, "\"val\" is not an object");
      return -1;
    }
    if (check_fields(val, "val.", k_val, NF(k_val), why, whylen)) return -1;
  }
  for (int i = 0; i < ranks->n; i++) {
    const cg_json_t *k = &ranks->items[i];
    char where[32];
    if (k->type != CG_JSON_OBJ) {
      snprintf(why, whylen, "ranks[%d] is not an object", i);
      return -1;
    }
    snprintf(where, sizeof where, "ranks[%d].rank", i);
    if (check_rank(cg_json_get(k, "rank"), where, ranks->n, 1, why, whylen)) return -1;
    snprintf(where, sizeof where, "ranks[%d].", i);
    if (check_fields(k, where, k_row, NF(k_row), why, whylen)) return -1;
  }
  return 0;
}

/* Parses and checks; *final (may be NULL) is set when the line says "final": true, even if it
 * is refused otherwise. Returns the tree (caller frees) or NULL with why. */
static cg_json_t *parse_record(const char *line, int *final, char *why, size_t whylen) {
  if (final) *final = 0;
  cg_json_t *r = cg_json_parse(line, why, whylen);
  if (!r) return NULL;
  const cg_json_t *f = cg_json_get(r, "final");
  if (final && f && f->type == CG_JSON_BOOL && f->num != 0) *final = 1;
  if (check_tree(r, why, whylen)) {
    cg_json_free(r);
    return NULL;
  }
  return r;
}

int cg_monitor_check(const char *line, char *why, size_t whylen) {
  cg_json_t *r = parse_record(line, NULL, why, whylen);
  cg_json_free(r);
  return r ? 0 : -1;
}

/* ---- drawing ----------------------------------------------------------------------------- */

static void pct(char *b, size_t n, const cg_json_t *o, const char *key) {
  double v = cg_json_num(o, key, NAN);
  if (isfinite(v)) snprintf(b, n, "%.1f%%", 100.0 * v);
  else snprintf(b, n, "-");
}

/* s with every control character (C0 bytes, DEL, and the C1 controls U+0080..U+009F, UTF-8
 * C2 80..C2 9F, which some terminals take as CSI) as '?': names that come from the file (hosts,
 * GPUs) are text to show, never commands to the terminal. */
static const char *printable(char *buf, size_t n, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < n; i++) {
    const unsigned char c = (unsigned char)s[i], d = (unsigned char)s[i + 1];
    if (c == 0xc2 && d >= 0x80 && d <= 0x9f && i + 2 < n) {
      buf[i] = buf[i + 1] = '?';
      i++;
      continue;
    }
    buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  buf[i] = '\0';
  return buf;
}

/* "stopped by WHY after step S of T" of a stop record, into buf. */
static const char *stop_text(const cg_json_t *r, char *buf, size_t n) {
  char b[64];
  snprintf(buf, n, "stopped by %s after step %.0f of %.0f",
           printable(b, sizeof b, cg_json_str(r, "stopped", "?")), cg_json_num(r, "step", 0),
           cg_json_num(r, "total_steps", 0));
  return buf;
}

static void draw_row(FILE *out, const char *label, const char *host, const char *gpu,
                     const char *step, const cg_json_t *o, int gpu_backend, const char *on,
                     const char *off) {
  char b1[16], b2[16], b3[16], b4[16], h[64], g[64];
  pct(b1, sizeof b1, o, gpu_backend ? "gpu_busy" : "compute_busy");
  pct(b2, sizeof b2, o, "data_wait");
  pct(b3, sizeof b3, o, "comm_exposed");
  pct(b4, sizeof b4, o, "cpu_busy");
  fprintf(out, "%s  %-5s %-14.14s %-16.16s %8s %9.2f %9s %9s %9s %9s %9.1f%s\n", on, label,
          printable(h, sizeof h, host), printable(g, sizeof g, gpu), step,
          cg_json_num(o, "step_ms", NAN), b1, b2, b3, b4, cg_json_num(o, "img_per_s", NAN), off);
}

int cg_monitor_render(const char *line, const cg_monitor_view_t *v, FILE *out, char *err,
                      size_t errlen) {
  cg_json_t *r = parse_record(line, NULL, err, errlen);
  if (!r) return -1;
  if (is_stop_record(r)) { /* no figures: what the job ended with */
    char text[160];
    fprintf(out, "cogpu-monitor %s  %s\n", v->source, stop_text(r, text, sizeof text));
    cg_json_free(r);
    return 0;
  }
  const cg_json_t *ranks = cg_json_get(r, "ranks"), *cl = cg_json_get(r, "cluster");
  double step = cg_json_num(r, "step", 0), total = cg_json_num(r, "total_steps", 0);
  const cg_json_t *st = cg_json_get(cl, "straggler");
  int straggler = st && st->type == CG_JSON_NUM ? (int)st->num : -1; /* checked: 0..n-1 */
  int gpu = cg_json_num(r, "gpu_backend", 0) != 0;
  const char *bold = v->ansi ? "\033[1m" : "", *rev = v->ansi ? "\033[7;31m" : "",
             *off = v->ansi ? "\033[0m" : "";
  fprintf(out, "%scogpu-monitor%s %s  step %.0f/%.0f (%.0f%%)%s  %d rank(s)  %.1f img/s  loss %.4f",
          bold, off, v->source, step, total, total > 0 ? 100.0 * step / total : 0.0,
          cg_json_num(r, "final", 0) != 0 ? " finished" : "", ranks->n,
          cg_json_num(cl, "img_per_s", 0), cg_json_num(r, "loss", NAN));
  if (v->age_s >= 0) fprintf(out, "  (updated %.0f s ago)", v->age_s);
  fprintf(out, "\n");
  fprintf(out, "%s  %-5s %-14s %-16s %8s %9s %9s %9s %9s %9s %9s%s\n", bold, "rank", "host", "gpu",
          "step", "step_ms", gpu ? "gpu_busy" : "compute", "data_wait", "comm_exp", "cpu_busy",
          "img/s", off);
  char stepb[32];
  snprintf(stepb, sizeof stepb, "%.0f", step);
  for (int i = 0; i < ranks->n; i++) {
    const cg_json_t *k = &ranks->items[i];
    int rk = (int)cg_json_num(k, "rank", i); /* checked: 0..n-1 */
    char label[16];
    snprintf(label, sizeof label, "%d%s", rk, rk == straggler && !v->ansi ? "*" : "");
    draw_row(out, label, cg_json_str(k, "host", "?"), cg_json_str(k, "gpu", "-"), stepb, k, gpu,
             rk == straggler ? rev : "", rk == straggler ? off : "");
  }
  const char *grp[2] = {"mean", "max"};
  for (int g = 0; g < 2; g++) {
    const cg_json_t *o = cg_json_get(cl, grp[g]);
    if (o) draw_row(out, grp[g], "", "", "", o, gpu, "", "");
  }
  const cg_json_t *imb = cg_json_get(cl, "imbalance");
  fprintf(out, "  imbalance (max/mean - 1): own time %.1f%%, step %.1f%%\n",
          100.0 * cg_json_num(imb, "own_ms", NAN), 100.0 * cg_json_num(imb, "step_ms", NAN));
  if (straggler >= 0) {
    const cg_json_t *k = NULL;
    char h[64];
    for (int i = 0; i < ranks->n; i++)
      if ((int)cg_json_num(&ranks->items[i], "rank", i) == straggler) k = &ranks->items[i];
    fprintf(out, "  %sstraggler: rank %d%s on %s, own time %.2f ms/step vs median %.2f\n", rev,
            straggler, off, printable(h, sizeof h, k ? cg_json_str(k, "host", "?") : "?"),
            k ? cg_json_num(k, "own_ms", NAN) : NAN, cg_json_num(cl, "median_own_ms", NAN));
  } else {
    fprintf(out, "  straggler: none\n");
  }
  const cg_json_t *val = cg_json_get(r, "val");
  if (val && val->type == CG_JSON_OBJ) {
    const int k = cg_json_get(val, "miou") != NULL;
    fprintf(out, "  validation at step %.0f: loss %.4f  %s %.4f  %s %.4f  accuracy %.4f",
            cg_json_num(val, "step", 0), cg_json_num(val, "loss", NAN), k ? "mIoU" : "IoU",
            cg_json_num(val, k ? "miou" : "iou", NAN), k ? "mDice" : "Dice",
            cg_json_num(val, k ? "mdice" : "dice", NAN), cg_json_num(val, "acc", NAN));
    if (cg_json_get(val, "macc")) fprintf(out, "  mAcc %.4f", cg_json_num(val, "macc", NAN));
    fputc('\n', out);
  }
  if (v->bad_lines > 0)
    fprintf(out, "  %ld bad line%s skipped%s%s%s\n", v->bad_lines, v->bad_lines == 1 ? "" : "s",
            v->last_bad ? " (last: " : "", v->last_bad ? v->last_bad : "", v->last_bad ? ")" : "");
  cg_json_free(r);
  return 0;
}

/* ---- following the file ------------------------------------------------------------------ */

struct cg_monitor_src {
  char *path;
  int fd;                  /* the stream; a regular file is opened for each read */
  int stream, ended;
  int final;               /* the attempt's final record: 1 figures (or refused), 2 a stop */
  int have_file;           /* dev, ino and off describe the regular file read last */
  dev_t dev;
  ino_t ino;
  off_t off;               /* regular file: the next byte to read */
  char *part;              /* the line being assembled, npart bytes of cap */
  size_t npart, cap;
  int skip;                /* drop bytes up to the next '\n' (a cut or over-long line) */
  char *rec;               /* the attempt's last valid record with figures, else its stop */
  int rec_stop;            /* rec is the stop record of an attempt without figures */
  char stopped[160];       /* a stop record's "stopped by WHY after step S of T", or "" */
  int fresh;               /* a valid record arrived during this read */
  long bad;
  char why[256];
  time_t t_rec;            /* file: its mtime; stream: when the record arrived */
};

cg_monitor_src_t *cg_monitor_src_create(const char *path) {
  cg_monitor_src_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->fd = -1;
  s->path = strdup(path);
  if (!s->path) {
    free(s);
    return NULL;
  }
  return s;
}

void cg_monitor_src_destroy(cg_monitor_src_t *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  free(s->path);
  free(s->part);
  free(s->rec);
  free(s);
}

static void refuse(cg_monitor_src_t *s, const char *why) {
  s->bad++;
  snprintf(s->why, sizeof s->why, "%s", why);
}

/* Every run writes its records and ends with one final record (its last figures, or a stop
 * record); a run resumed or requeued into the same file (train.sbatch appends each run to one
 * stats.jsonl) starts a new attempt, so a valid record after a final one is the first of the
 * next attempt: the previous attempt's end and figures no longer hold, and only the next final
 * record ends the job. The bad-line count is the file's and stays. An attempt killed outright
 * writes no final record; its figures are replaced by the next attempt's as any record's are. */
static void new_attempt(cg_monitor_src_t *s) {
  s->final = 0;
  s->stopped[0] = 0;
  free(s->rec);
  s->rec = NULL;
  s->rec_stop = 0;
}

/* One complete line (without its '\n'). Returns -1 only when out of memory. */
static int take_line(cg_monitor_src_t *s, char *line, size_t n, time_t when) {
  if (n && line[n - 1] == '\r') n--;
  line[n] = 0;
  if (n == 0) return 0; /* blank lines are not records, nor errors */
  size_t lead = strspn(line, " \t");
  if (s->stream && line[lead] != '{') return 0; /* the job's log lines (--stats-out /dev/stdout) */
  char why[sizeof s->why];
  int final;
  cg_json_t *r = parse_record(line, &final, why, sizeof why);
  if (!r) {
    if (final) s->final = 1; /* the job ended, even if its last line is bad */
    refuse(s, why);
    return 0;
  }
  if (s->final) new_attempt(s);
  const int stop = is_stop_record(r);
  if (final) s->final = stop ? 2 : 1;
  if (stop) stop_text(r, s->stopped, sizeof s->stopped);
  cg_json_free(r);
  if (stop && s->rec && !s->rec_stop) { /* keep the attempt's last figures; say how it ended */
    s->fresh = 1;
    return 0;
  }
  char *copy = strdup(line); /* figures, or the stop of an attempt that has none */
  if (!copy) return -1;
  free(s->rec);
  s->rec = copy;
  s->rec_stop = stop;
  s->fresh = 1;
  s->t_rec = when;
  return 0;
}

/* Splits bytes into lines; the last, unfinished one waits in part for more. */
static int feed(cg_monitor_src_t *s, const char *b, size_t n, time_t when) {
  while (n) {
    const char *nl = memchr(b, '\n', n);
    size_t seg = nl ? (size_t)(nl - b) : n;
    if (!s->skip && s->npart + seg > CG_MONITOR_MAX_LINE) {
      char why[64];
      snprintf(why, sizeof why, "a line longer than %u MiB", CG_MONITOR_MAX_LINE >> 20);
      refuse(s, why);
      s->skip = 1;
      s->npart = 0;
    }
    if (!s->skip) {
      if (s->npart + seg + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->npart + seg + 1) cap *= 2;
        char *p = realloc(s->part, cap);
        if (!p) return -1;
        s->part = p;
        s->cap = cap;
      }
      memcpy(s->part + s->npart, b, seg);
      s->npart += seg;
    }
    if (!nl) break;
    if (!s->skip && take_line(s, s->part, s->npart, when)) return -1;
    s->skip = 0;
    s->npart = 0;
    b += seg + 1;
    n -= seg + 1;
  }
  return 0;
}

static int fail_errno(int e, char *err, size_t errlen, const char *path, const char *what) {
  snprintf(err, errlen, "%s: %s%s", path, what ? what : "", strerror(e));
  errno = e;
  return -1;
}

/* A regular file from the kept offset to its size now; a new file (other inode, or shorter
 * than what was read) is read from its start again. */
static int read_file(cg_monitor_src_t *s, int fd, const struct stat *st, char *err,
                     size_t errlen) {
  if (s->have_file && (st->st_dev != s->dev || st->st_ino != s->ino || st->st_size < s->off))
    s->have_file = 0;
  if (!s->have_file) {
    s->have_file = 1;
    s->dev = st->st_dev;
    s->ino = st->st_ino;
    s->off = 0;
    s->npart = 0;
    s->skip = 0;
    new_attempt(s); /* a new file (a new job's) says nothing of the old one's end */
  }
  if (st->st_size - s->off > (off_t)CG_MONITOR_MAX_LINE) {
    /* far behind (first read of a long file): only the tail can hold the latest record */
    char c = '\n';
    s->off = st->st_size - (off_t)CG_MONITOR_MAX_LINE;
    if (pread(fd, &c, 1, s->off - 1) != 1) c = 0;
    s->npart = 0;
    s->skip = c != '\n';
  }
  char buf[1 << 16];
  while (s->off < st->st_size) {
    off_t left = st->st_size - s->off;
    ssize_t n = pread(fd, buf, left < (off_t)sizeof buf ? (size_t)left : sizeof buf, s->off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, err, errlen, s->path, "read: ");
    if (n == 0) break; /* truncated under us: the next read starts over */
    if (feed(s, buf, (size_t)n, st->st_mtime)) return fail_errno(ENOMEM, err, errlen, s->path, "");
    s->off += n;
  }
  return 0;
}

/* A stream: what is there now, never blocking. poll first: a FIFO no writer has opened yet
 * reads as end of file, but polls as nothing to read. */
static int read_stream(cg_monitor_src_t *s, char *err, size_t errlen) {
  char buf[1 << 16];
  struct pollfd p = {.fd = s->fd, .events = POLLIN};
  int r = poll(&p, 1, 0);
  if (r < 0 && errno != EINTR) return fail_errno(errno, err, errlen, s->path, "poll: ");
  if (r <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) return 0;
  for (size_t total = 0; total < 4 * (size_t)CG_MONITOR_MAX_LINE;) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return fail_errno(errno, err, errlen, s->path, "read: ");
    if (n == 0) {
      s->ended = 1;
      if (s->npart && !s->skip) refuse(s, "the input ended inside a line");
      break;
    }
    if (feed(s, buf, (size_t)n, time(NULL))) return fail_errno(ENOMEM, err, errlen, s->path, "");
    total += (size_t)n;
  }
  return 0;
}

int cg_monitor_src_read(cg_monitor_src_t *s, char *err, size_t errlen) {
  s->fresh = 0;
  if (s->stream) {
    if (s->ended) return 0;
    if (read_stream(s, err, errlen)) return -1;
    return s->fresh;
  }
  /* O_NONBLOCK: opening a FIFO must not wait for its writer */
  int fd = open(s->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fail_errno(errno, err, errlen, s->path, "");
  struct stat st;
  if (fstat(fd, &st)) {
    int e = errno;
    close(fd);
    return fail_errno(e, err, errlen, s->path, "");
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return fail_errno(EISDIR, err, errlen, s->path, "");
  }
  if (!S_ISREG(st.st_mode)) {
    s->stream = 1; /* kept open: a pipe's bytes are read once */
    s->fd = fd;
    if (read_stream(s, err, errlen)) return -1;
    return s->fresh;
  }
  int rc = read_file(s, fd, &st, err, errlen);
  int e = errno;
  close(fd);
  errno = e;
  return rc ? -1 : s->fresh;
}

void cg_monitor_src_wait(cg_monitor_src_t *s, double seconds) {
  if (s->stream && s->fd >= 0 && !s->ended) {
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    int ms = seconds < 0 ? -1 : seconds > 86400.0 ? 86400000 : (int)ceil(seconds * 1e3);
    (void)poll(&p, 1, ms);
    return;
  }
  if (!(seconds > 0)) return;
  if (seconds > 86400.0) seconds = 86400.0;
  struct timespec ts = {.tv_sec = (time_t)seconds};
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

const char *cg_monitor_src_record(const cg_monitor_src_t *s) { return s->rec; }

long cg_monitor_src_bad(const cg_monitor_src_t *s, const char **why) {
  if (why) *why = s->bad ? s->why : NULL;
  return s->bad;
}

double cg_monitor_src_age(const cg_monitor_src_t *s) {
  return s->rec ? difftime(time(NULL), s->t_rec) : -1;
}

int cg_monitor_src_final(const cg_monitor_src_t *s) { return s->final; }

const char *cg_monitor_src_stopped(const cg_monitor_src_t *s) {
  return s->stopped[0] && !s->rec_stop ? s->stopped : NULL;
}
int cg_monitor_src_ended(const cg_monitor_src_t *s) { return s->ended; }
int cg_monitor_src_is_stream(const cg_monitor_src_t *s) { return s->stream; }
