/* labelmap.c: parsing --label-map (labelmap.h). */
#include "labelmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A whole number 0..255 from the text s (all of it), or -1. */
static int byte_value(const char *s) {
  char *end;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < 0 || v > 255 || s[0] == '+' || s[0] == '-') return -1;
  return (int)v;
}

/* One "FROM TO" line of file into m: 0, or -1 with err. */
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
  if (to >= nclass && to != ignore) {
    snprintf(err, errlen, "--label-map %s:%d: %d is not a class id of --num-classes %d (0..%d)%s",
             file, line, to, nclass, nclass - 1, ignore >= 0 ? " nor the ignore label" : "");
    return -1;
  }
  if (from == 256) *dflt = to;
  else if (m->to[from] >= 0) {
    snprintf(err, errlen, "--label-map %s:%d: %d is mapped twice", file, line, from);
    return -1;
  } else m->to[from] = (int16_t)to;
  return 0;
}

static int parse_file(const char *file, int nclass, int ignore, cg_labelmap_t *m, char *err,
                      size_t errlen) {
  FILE *f = fopen(file, "r");
  if (!f) {
    snprintf(err, errlen, "--label-map %s: %s (give reduce-zero or a file of FROM TO lines)",
             file, strerror(errno));
    return -1;
  }
  char buf[256];
  int line = 0, dflt = -1, rc = 0, any = 0;
  while (!rc && fgets(buf, sizeof buf, f)) {
    line++;
    if (!strchr(buf, '\n') && !feof(f)) {
      snprintf(err, errlen, "--label-map %s:%d: line too long", file, line);
      rc = -1;
      break;
    }
    buf[strcspn(buf, "\r\n")] = 0;
    char *t = buf + strspn(buf, " \t");
    if (!*t || *t == '#') continue;
    any = 1;
    rc = take_line(file, line, t, nclass, ignore, m, &dflt, err, errlen);
  }
  fclose(f);
  if (!rc && !any) {
    snprintf(err, errlen, "--label-map %s: no FROM TO lines", file);
    rc = -1;
  }
  for (int v = 0; !rc && dflt >= 0 && v < 256; v++)
    if (m->to[v] < 0) m->to[v] = (int16_t)dflt;
  return rc;
}

int cg_labelmap_parse(const char *spec, int nclass, int ignore, cg_labelmap_t *m, char *err,
                      size_t errlen) {
  if (nclass < 1) nclass = 1;
  if (ignore < nclass) ignore = -1;
  for (int v = 0; v < 256; v++) m->to[v] = -1;
  const size_t n = strlen(spec);
  snprintf(m->spec, sizeof m->spec, "%s%s", n >= sizeof m->spec ? "..." : "",
           spec + (n >= sizeof m->spec ? n - sizeof m->spec + 4 : 0));
  if (!strcmp(spec, "reduce-zero")) {
    if (ignore < 0) {
      snprintf(err, errlen, "--label-map reduce-zero: makes 0 the ignore label, and there is none "
               "(give --ignore-index I)");
      return -1;
    }
    for (int v = 1; v < 256; v++) m->to[v] = (int16_t)(v - 1);
    m->to[0] = m->to[ignore] = (int16_t)ignore; /* the ignore label stays what it is */
    return 0;
  }
  return parse_file(spec, nclass, ignore, m, err, errlen);
}
