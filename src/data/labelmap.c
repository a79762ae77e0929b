/* labelmap.c: parsing --label-map, and its table as text (labelmap.h). */
#include "labelmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pairlist.h" /* cg_text_file_read: a map file in UTF-16, an image, a FIFO... */

#define LINE_MAX_BYTES 4096
#define FILE_MAX_BYTES (1 << 20) /* 256 FROM TO lines are 2 KB: more is no map */

/* A whole number 0..255 from the text s (all of it), or -1. */
static int byte_value(const char *s) {
  char *end;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < 0 || v > 255 || s[0] == '+' || s[0] == '-') return -1;
  return (int)v;
}

/* One "FROM TO" line of file into m: 0, or -1 with err. Binary masks (nclass 1) have the ids 0
 * and 1 (foreground). */
static int take_line(const char *file, int line, char *text, int nclass, int ignore,
                     cg_labelmap_t *m, int *dflt, char *err, size_t errlen) {
  char *save = NULL, *a = strtok_r(text, " \t", &save), *b = strtok_r(NULL, " \t", &save);
  if (!a || !b || strtok_r(NULL, " \t", &save)) {
    snprintf(err, errlen, "--label-map %s:%d: need FROM TO (two numbers 0..255, or * TO)", file,
             line);
    return -1;
  }
  const int from = strcmp(a, "*") ? byte_value(a) : 256, to = byte_value(b);
  if (from < 0 || to < 0) {
    snprintf(err, errlen, "--label-map %s:%d: '%s' is not a number 0..255", file, line,
             from < 0 ? a : b);
    return -1;
  }
  const int ids = nclass > 1 ? nclass : 2;
  if (to >= ids && to != ignore) {
    char ign[48] = "";
    if (ignore >= 0) snprintf(ign, sizeof ign, " nor the ignore label %d", ignore);
    snprintf(err, errlen, "--label-map %s:%d: %d is not a class id of --num-classes %d (%s)%s",
             file, line, to, nclass, nclass > 1 ? "0..K-1" : "binary: 0 or 1", ign);
    return -1;
  }
  if ((from == 256 && *dflt >= 0) || (from < 256 && m->to[from] >= 0)) {
    snprintf(err, errlen, "--label-map %s:%d: %s is mapped twice", file, line, a);
    return -1;
  }
  if (from == 256) *dflt = to;
  else m->to[from] = (int16_t)to;
  return 0;
}

/* The FROM TO lines of file (its text) into m. */
static int parse_lines(const char *text, const char *file, int nclass, int ignore,
                       cg_labelmap_t *m, char *err, size_t errlen) {
  char buf[LINE_MAX_BYTES];
  int line = 0, dflt = -1, rc = 0, any = 0;
  size_t len;
  for (const char *s; !rc && (s = cg_text_next_line(&text, &len)) != NULL;) {
    line++;
    if (len >= sizeof buf) {
      snprintf(err, errlen, "--label-map %s:%d: line longer than %zu bytes", file, line,
               sizeof buf - 1);
      return -1;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    buf[strcspn(buf, "#")] = 0; /* a comment: a whole line, or after the pair */
    char *t = buf + strspn(buf, " \t");
    if (!*t) continue;
    any = 1;
    rc = take_line(file, line, t, nclass, ignore, m, &dflt, err, errlen);
  }
  if (!rc && !any) {
    snprintf(err, errlen, "--label-map %s: no FROM TO lines", file);
    rc = -1;
  }
  for (int v = 0; !rc && dflt >= 0 && v < 256; v++)
    if (m->to[v] < 0) m->to[v] = (int16_t)dflt;
  return rc;
}

static int parse_file(const char *file, int nclass, int ignore, cg_labelmap_t *m, char *err,
                      size_t errlen) {
  char *base, why[1200];
  const char *text;
  if (cg_text_file_read(file, FILE_MAX_BYTES, &base, &text, why, sizeof why)) {
    snprintf(err, errlen, "--label-map %s (--label-map: reduce-zero or a file of FROM TO lines)",
             why);
    return -1;
  }
  const int rc = parse_lines(text, file, nclass, ignore, m, err, errlen);
  free(base);
  return rc;
}

static void set_spec(cg_labelmap_t *m, const char *spec) {
  const size_t n = strlen(spec);
  snprintf(m->spec, sizeof m->spec, "%s%s", n >= sizeof m->spec ? "..." : "",
           spec + (n >= sizeof m->spec ? n - sizeof m->spec + 4 : 0));
}

int cg_labelmap_parse(const char *spec, int nclass, int ignore, cg_labelmap_t *m, char *err,
                      size_t errlen) {
  if (nclass < 1) nclass = 1;
  if (ignore < (nclass > 1 ? nclass : 2) || ignore > 255) ignore = -1; /* labels are bytes */
  for (int v = 0; v < 256; v++) m->to[v] = -1;
  set_spec(m, spec);
  if (!strcmp(spec, "reduce-zero")) {
    if (ignore < 0) {
      snprintf(err, errlen, "--label-map reduce-zero: makes 0 the ignore label, and there is none "
               "(give --ignore-index I)");
      return -1;
    }
    for (int v = 1; v < 256; v++) /* v - 1 == ignore: no class, and not silently ignored */
      m->to[v] = (int16_t)(v - 1 == ignore ? -1 : v - 1);
    m->to[0] = m->to[ignore] = (int16_t)ignore; /* the ignore label stays what it is */
    return 0;
  }
  return parse_file(spec, nclass, ignore, m, err, errlen);
}

/* ---- the table as text ------------------------------------------------------------------- */

void cg_labelmap_table(const cg_labelmap_t *m, char *buf) {
  static const char hex[] = "0123456789abcdef";
  for (int v = 0; v < 256; v++) {
    buf[2 * v] = m->to[v] < 0 ? '-' : hex[m->to[v] >> 4];
    buf[2 * v + 1] = m->to[v] < 0 ? '-' : hex[m->to[v] & 15];
  }
  buf[512] = 0;
}

int cg_labelmap_from_table(const char *table, const char *spec, cg_labelmap_t *m) {
  if (strlen(table) != 512) return -1;
  for (int v = 0; v < 256; v++) {
    const char a = table[2 * v], b = table[2 * v + 1];
    if (a == '-' && b == '-') {
      m->to[v] = -1;
      continue;
    }
    const char *pa = strchr("0123456789abcdef", a), *pb = strchr("0123456789abcdef", b);
    if (!a || !b || !pa || !pb) return -1;
    m->to[v] = (int16_t)((pa - "0123456789abcdef") * 16 + (pb - "0123456789abcdef"));
  }
  set_spec(m, spec);
  return 0;
}
