/* opts.c: the option engine (opts.h): one parser, one set of messages, one --help layout for
 * every command line of the project.
 *
 * A value is checked completely before anything is stored, so a rejected option leaves its
 * field at the default. Numbers are parsed with strtoll/strtoull/strtod and must use the whole
 * argument; ranges are compared as doubles (every bound in the tables is exact in a double). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h> /* TIOCGWINSZ: --help wrapped to the terminal */
#include <unistd.h>

#include "opts.h"

static int in_set(const cg_opts_set_t *s, const cg_opt_t *o) {
  return !o->cmds || (o->cmds & s->cmds);
}

/* The row called name in the first set that takes it; its set's struct in *dst. */
static const cg_opt_t *find(const cg_opts_set_t *sets, int nsets, const char *name, void **dst) {
  for (int k = 0; k < nsets; k++)
    for (size_t j = 0; j < sets[k].n; j++) {
      const cg_opt_t *o = &sets[k].opts[j];
      if (in_set(&sets[k], o) && !strcmp(o->name, name)) {
        *dst = sets[k].dst;
        return o;
      }
    }
  return NULL;
}

/* What the option accepts, for messages: "1..65536", "(0, 10]", "one of a|b", "a FILE". */
static void fmt_range(const cg_opt_t *o, char *buf, size_t len) {
  switch (o->type) {
    case CG_OPT_OPTSTR: snprintf(buf, len, "%s", o->metavar); break;
    case CG_OPT_STR:
    case CG_OPT_PTR:
      if (o->choices) snprintf(buf, len, "one of %s", o->choices);
      else snprintf(buf, len, "a %s", o->metavar);
      break;
    case CG_OPT_ONOFF: snprintf(buf, len, "on or off"); break;
    case CG_OPT_DBL:
      snprintf(buf, len, "%s%g, %g]", (o->flags & CG_OPT_MIN_EXCL) ? "(" : "[", o->min, o->max);
      break;
    default: snprintf(buf, len, "%.0f..%.0f", o->min, o->max); break;
  }
}

static int in_range(const cg_opt_t *o, double d) {
  return d >= o->min && d <= o->max && !((o->flags & CG_OPT_MIN_EXCL) && d <= o->min);
}

static int out_of_range(const cg_opt_t *o, const char *v, char *err, size_t errlen) {
  char range[96];
  fmt_range(o, range, sizeof range);
  snprintf(err, errlen, "--%s: %s is out of range %s", o->name, v, range);
  return -1;
}

static int in_choices(const char *choices, const char *v) {
  size_t n = strlen(v);
  const char *p = choices;
  while (*p) {
    const char *e = strchr(p, '|');
    size_t k = e ? (size_t)(e - p) : strlen(p);
    if (k == n && strncmp(p, v, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

/* Whether the metavar names a path: FILE, DIR, PREFIX or SRC as a word ("[FILE|DIR]" too). */
static int names_path(const char *metavar) {
  static const char *const words[] = {"FILE", "DIR", "PREFIX", "SRC"};
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
    const size_t n = strlen(words[w]);
    for (const char *s = strstr(metavar, words[w]); s; s = strstr(s + 1, words[w]))
      if ((s == metavar || !(s[-1] >= 'A' && s[-1] <= 'Z')) && !(s[n] >= 'A' && s[n] <= 'Z'))
        return 1;
  }
  return 0;
}

static int set_text(const cg_opt_t *o, const char *v, char *p, char *err, size_t errlen) {
  /* an empty path is a mistake (an unset shell variable), never "none": for none leave the
   * option out */
  if (!v[0] && names_path(o->metavar)) {
    const char *m = o->metavar;
    const int bare = o->type == CG_OPT_OPTSTR && m[0] == '[';
    if (bare)
      snprintf(err, errlen, "--%s: empty value; give %.*s, or --%s alone", o->name,
               (int)strlen(m) - 2, m + 1, o->name);
    else
      snprintf(err, errlen, "--%s: empty value; give a %s%s", o->name, m,
               (o->flags & CG_OPT_REQUIRED) ? "" : ", or leave the option out");
    return -1;
  }
  if (o->type != CG_OPT_OPTSTR && o->choices && !in_choices(o->choices, v)) {
    snprintf(err, errlen, "--%s: '%s' is not one of %s", o->name, v, o->choices);
    return -1;
  }
  if (o->type == CG_OPT_PTR) {
    memcpy(p, &v, sizeof v);
    return 0;
  }
  if (strlen(v) >= o->size) {
    snprintf(err, errlen, "--%s: value longer than %zu characters", o->name, o->size - 1);
    return -1;
  }
  snprintf(p, o->size, "%s", v);
  return 0;
}

static int set_onoff(const cg_opt_t *o, const char *v, int *p, char *err, size_t errlen) {
  if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "1") && strcmp(v, "0")) {
    snprintf(err, errlen, "--%s: '%s' is not on or off", o->name, v);
    return -1;
  }
  *p = (!strcmp(v, "on") || !strcmp(v, "1"));
  return 0;
}

/* "8", "64K", "256M", "1G" (k, m, g too). */
static int set_bytes(const cg_opt_t *o, const char *v, size_t *p, char *err, size_t errlen) {
  char *end = NULL;
  errno = 0;
  const unsigned long long n = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
  unsigned long long mul = 1;
  if (end && end != v && *end) {
    const char *u = "KkMmGg", *s = strchr(u, *end);
    if (s && end[1] == 0) mul = 1ull << (10 * (1 + (s - u) / 2));
    else end = NULL;
  }
  if (!end || end == v || errno == ERANGE || n > (unsigned long long)SIZE_MAX / mul) {
    snprintf(err, errlen, "--%s: '%s' is not a size in bytes (N, or N with K, M or G)", o->name,
             v);
    return -1;
  }
  if (!in_range(o, (double)(n * mul))) return out_of_range(o, v, err, errlen);
  *p = (size_t)(n * mul);
  return 0;
}

/* "1,2,4": every element a whole number in range. */
static int set_ints(const cg_opt_t *o, const char *v, cg_opt_ints_t *p, char *err, size_t errlen) {
  cg_opt_ints_t l = {0, {0}};
  for (const char *s = v;;) {
    char *end = NULL;
    errno = 0;
    const int sign = *s == '-' || *s == '+';
    const long long x = s[sign] >= '0' && s[sign] <= '9' ? strtoll(s, &end, 10) : 0;
    if (!end || end == s || (*end && *end != ',') || errno == ERANGE) {
      snprintf(err, errlen, "--%s: '%s' is not a comma-separated list of whole numbers", o->name,
               v);
      return -1;
    }
    if (l.n == CG_OPT_INTS_MAX) {
      snprintf(err, errlen, "--%s: more than %d values", o->name, CG_OPT_INTS_MAX);
      return -1;
    }
    if (!in_range(o, (double)x)) {
      char xs[32];
      snprintf(xs, sizeof xs, "%lld", x);
      return out_of_range(o, xs, err, errlen);
    }
    l.v[l.n++] = (int)x;
    if (!*end) break;
    s = end + 1;
  }
  *p = l;
  return 0;
}

/* Plain decimal text: digits with an optional sign, and for a real number a point and an
 * exponent. strtod alone would take "0x1p-10", "inf" and leading blanks too. */
static int plain_decimal(const char *v, int real) {
  if (!*v) return 0;
  for (const char *s = v; *s; s++)
    if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' ||
          (real && (*s == '.' || *s == 'e' || *s == 'E'))))
      return 0;
  return 1;
}

/* A whole number as text: an optional sign, then one digit or more, nothing else. */
static int whole_text(const char *v) {
  const char *s = v + (*v == '-' || *v == '+');
  return *s && strspn(s, "0123456789") == strlen(s);
}

static int set_number(const cg_opt_t *o, const char *v, char *p, char *err, size_t errlen) {
  errno = 0;
  char *end = NULL;
  double d = 0;
  const int whole = o->type != CG_OPT_DBL && whole_text(v);
  /* a whole number beyond what the type holds, or below 0 for an unsigned one, is out of
   * range, not "not a whole number" (-0 is 0) */
  if (whole && o->type == CG_OPT_U64 && v[0] == '-' && strspn(v + 1, "0") != strlen(v + 1))
    return out_of_range(o, v, err, errlen); /* strtoull would wrap it */
  if (!plain_decimal(v, o->type == CG_OPT_DBL)) end = (char *)v; /* rejected below */
  else if (o->type == CG_OPT_DBL) d = strtod(v, &end);
  else if (o->type == CG_OPT_U64) d = (double)strtoull(v, &end, 10);
  else d = (double)strtoll(v, &end, 10);
  if (whole && errno == ERANGE) return out_of_range(o, v, err, errlen);
  if (end == v || (end && *end) || errno == ERANGE || !isfinite(d)) {
    snprintf(err, errlen, "--%s: '%s' is not a %s", o->name, v,
             o->type == CG_OPT_DBL ? "number" : "whole number");
    return -1;
  }
  if (!in_range(o, d)) return out_of_range(o, v, err, errlen);
  switch (o->type) {
    case CG_OPT_INT: *(int *)p = (int)d; break;
    case CG_OPT_I64: *(int64_t *)p = strtoll(v, NULL, 10); break;
    case CG_OPT_U64: *(uint64_t *)p = strtoull(v, NULL, 10); break;
    default: *(double *)p = d; break;
  }
  return 0;
}

static int set_value(const cg_opt_t *o, const char *v, void *dst, char *err, size_t errlen) {
  char *p = (char *)dst + o->off;
  switch (o->type) {
    case CG_OPT_STR:
    case CG_OPT_PTR:
    case CG_OPT_OPTSTR: return set_text(o, v, p, err, errlen);
    case CG_OPT_ONOFF: return set_onoff(o, v, (int *)p, err, errlen);
    case CG_OPT_BYTES: return set_bytes(o, v, (size_t *)p, err, errlen);
    case CG_OPT_INTS: return set_ints(o, v, (cg_opt_ints_t *)p, err, errlen);
    case CG_OPT_FLAG: *(int *)p = 1; return 0;
    default: return set_number(o, v, p, err, errlen);
  }
}

static int missing_value(const cg_opt_t *o, char *err, size_t errlen) {
  char range[96];
  fmt_range(o, range, sizeof range);
  snprintf(err, errlen, "--%s: missing value (%s%s)", o->name,
           o->type == CG_OPT_INTS ? "a list in " : "", range);
  return -1;
}

int cg_opts_parse(const cg_opts_set_t *sets, int nsets, int argc, char **argv, const char *cmd,
                  const char *prog, char *err, size_t errlen) {
  err[0] = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (options start with --; see %s --help)", a,
               prog);
      return -1;
    }
    const char *name = a + 2, *val = NULL, *eq = strchr(name, '=');
    char namebuf[64];
    if (eq) {
      size_t k = (size_t)(eq - name);
      if (k >= sizeof namebuf) k = sizeof namebuf - 1;
      memcpy(namebuf, name, k);
      namebuf[k] = 0;
      name = namebuf;
      val = eq + 1;
    }
    void *dst = NULL;
    const cg_opt_t *o = find(sets, nsets, name, &dst);
    if (!o) {
      snprintf(err, errlen, "unknown option --%s for '%s' (see %s --help)", name, cmd, prog);
      return -1;
    }
    if (o->type == CG_OPT_FLAG && val) {
      snprintf(err, errlen, "--%s takes no value", o->name);
      return -1;
    }
    if (!val && o->type == CG_OPT_OPTSTR)
      val = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : o->choices;
    if (!val && o->type != CG_OPT_FLAG) {
      if (i + 1 >= argc) return missing_value(o, err, errlen);
      val = argv[++i];
    }
    if (set_value(o, val, dst, err, errlen)) return -1;
  }
  return 0;
}

int cg_opts_given(const cg_opts_set_t *set, int argc, char *const *argv, const char *name) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) continue;
    const char *n = a + 2, *eq = strchr(n, '=');
    const size_t k = eq ? (size_t)(eq - n) : strlen(n);
    char nb[64];
    snprintf(nb, sizeof nb, "%.*s", (int)(k < 63 ? k : 63), n);
    void *dst;
    const cg_opt_t *o = find(set, 1, nb, &dst);
    if (o && !strcmp(o->name, name)) return 1;
    if (!o || eq || o->type == CG_OPT_FLAG) continue;
    if (o->type == CG_OPT_OPTSTR) {
      if (i + 1 < argc && argv[i + 1][0] != '-') i++;
    } else {
      i++;
    }
  }
  return 0;
}

/* 268435456 -> "256M"; sizes that are not whole K, M or G in bytes. */
static void fmt_bytes(size_t b, char *buf, size_t len) {
  const char *u = "GMK";
  for (int k = 0; k < 3; k++) {
    const size_t unit = (size_t)1 << (10 * (3 - k));
    if (b && b % unit == 0) {
      snprintf(buf, len, "%zu%c", b / unit, u[k]);
      return;
    }
  }
  snprintf(buf, len, "%zu", b);
}

static void fmt_ints(const cg_opt_ints_t *l, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < l->n && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%d", i ? "," : "", l->v[i]);
}

/* " [default]" or "" (a flag, an empty value, CG_OPT_NODEF). */
static void fmt_default(const cg_opt_t *o, const void *dst, char *def, size_t len) {
  const char *b = (const char *)dst + o->off;
  char v[48] = "";
  const char *s = v;
  switch (o->type) {
    case CG_OPT_INT: snprintf(v, sizeof v, "%d", *(const int *)b); break;
    case CG_OPT_I64: snprintf(v, sizeof v, "%lld", (long long)*(const int64_t *)b); break;
    case CG_OPT_U64: snprintf(v, sizeof v, "%llu", (unsigned long long)*(const uint64_t *)b); break;
    case CG_OPT_DBL: snprintf(v, sizeof v, "%g", *(const double *)b); break;
    case CG_OPT_BYTES: fmt_bytes(*(const size_t *)b, v, sizeof v); break;
    case CG_OPT_INTS: fmt_ints((const cg_opt_ints_t *)b, v, sizeof v); break;
    case CG_OPT_STR:
    case CG_OPT_OPTSTR: s = b; break;
    case CG_OPT_PTR: memcpy(&s, b, sizeof s); break;
    case CG_OPT_ONOFF: s = *(const int *)b ? "on" : "off"; break;
    case CG_OPT_FLAG: break;
  }
  def[0] = 0;
  if (s && s[0] && !(o->flags & CG_OPT_NODEF)) snprintf(def, len, " [%s]", s);
}

/* The width --help wraps at: a terminal's less one column (as argparse), 60..160; else 100, so
 * that a copy (the README's) does not depend on who made it. */
static int help_width(FILE *f) {
  struct winsize ws;
  if (!isatty(fileno(f)) || ioctl(fileno(f), TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return 100;
  const int w = (int)ws.ws_col - 1;
  return w < 60 ? 60 : w > 160 ? 160 : w;
}

/* Writes the words of text (split at spaces) from column col on, a line ending before width
 * where the next word would pass it, continued at column indent; a word longer than a line has
 * one of its own. */
static void put_wrapped(FILE *f, const char *text, int col, int indent, int width) {
  int line_start = 1;
  for (const char *p = text; *p;) {
    while (*p == ' ') p++;
    if (!*p) break;
    const int n = (int)strcspn(p, " ");
    if (!line_start && col + 1 + n > width) {
      fprintf(f, "\n%*s", indent, "");
      col = indent;
      line_start = 1;
    }
    if (!line_start) {
      fputc(' ', f);
      col++;
    }
    fwrite(p, 1, (size_t)n, f);
    col += n;
    line_start = 0;
    p += n;
  }
  fputc('\n', f);
}

void cg_opts_print(FILE *f, const char *title, const cg_opts_set_t *set) {
  if (title) fprintf(f, "%s\n", title);
  const int width = help_width(f);
  for (size_t i = 0; i < set->n; i++) {
    const cg_opt_t *o = &set->opts[i];
    if (!in_set(set, o) || (o->flags & set->hide)) continue;
    char lhs[64], def[1100], text[4096];
    snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->metavar[0] ? " " : "", o->metavar);
    fmt_default(o, set->dst, def, sizeof def);
    snprintf(text, sizeof text, "%s%s", o->help, def);
    const int col = fprintf(f, "  %-24s ", lhs);
    put_wrapped(f, text, col, 27, width);
  }
}

void cg_opts_print_help(FILE *f) { fprintf(f, "  %-24s %s\n", "-h, --help", "this help"); }
