/* classnames.c: --class-names parsed and checked (classnames.h). */
#include "classnames.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"      /* cg_malloc */
#include "pairlist.h" /* cg_text_file_read: the FILE */

#define FILE_MAX (64 * 1024) /* a class list is a few KB; more is not one */

/* Length of the UTF-8 sequence at s (of at most len bytes), or 0 when it is not valid UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t len) {
  if (s[0] < 0x80) return 1;
  size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
  if (!n || n > len || s[0] > 0xf4) return 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
  if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
  return n;
}

/* Appends the name s[0..len) (spaces and tabs around it dropped) to n, checked; where names it
 * in messages. 0, or -1 with err. */
static int add(cg_classnames_t *n, size_t *used, const char *s, size_t len, int k,
               const char *where, char *err, size_t errlen) {
  while (len && (*s == ' ' || *s == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
  if (n->k >= k) {
    char nk[32] = "";
    if (k < CG_CLASSNAMES_CLASSES) snprintf(nk, sizeof nk, " for %d classes", k);
    snprintf(err, errlen, "%s: more than %d names%s", where, k, nk);
    return -1;
  }
  if (!len) {
    snprintf(err, errlen, "%s: an empty name (class %d)", where, n->k);
    return -1;
  }
  if (len > CG_CLASSNAME_MAX) {
    snprintf(err, errlen, "%s: class %d's name is %zu bytes, longer than %d", where, n->k, len,
             CG_CLASSNAME_MAX);
    return -1;
  }
  for (size_t i = 0; i < len;) {
    const unsigned char ch = (unsigned char)s[i];
    const size_t u = utf8_len((const unsigned char *)s + i, len - i);
    if (!u || ch < 0x20 || ch == 0x7f || ch == ',' || ch == '"' || ch == '\\') {
      snprintf(err, errlen, "%s: class %d's name holds %s", where, n->k,
               !u          ? "bytes that are not UTF-8"
               : ch == ',' ? "a comma (a comma separates names)"
               : ch == '"' ? "a quote"
               : ch == '\\' ? "a backslash"
                           : "a control character");
      return -1;
    }
    i += u;
  }
  for (int c = 0; c < n->k; c++)
    if (strlen(n->name[c]) == len && !memcmp(n->name[c], s, len)) {
      snprintf(err, errlen, "%s: classes %d and %d are both named '%.*s'", where, c, n->k,
               (int)len, s);
      return -1;
    }
  if (*used + len + 1 > sizeof n->buf) {
    snprintf(err, errlen, "%s: the names are longer than %d bytes together", where,
             CG_CLASSNAMES_LEN - 1);
    return -1;
  }
  char *d = n->buf + *used;
  memcpy(d, s, len);
  d[len] = 0;
  n->name[n->k++] = d;
  *used += len + 1;
  return 0;
}

/* The comma list spec's names. */
static int parse_list(const char *spec, int k, cg_classnames_t *n, char *err, size_t errlen) {
  size_t used = 0;
  for (const char *p = spec;;) {
    const char *e = strchr(p, ',');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    char where[32];
    snprintf(where, sizeof where, "name %d", n->k + 1);
    if (add(n, &used, p, len, k, where, err, errlen)) return -1;
    if (!e) return 0;
    p = e + 1;
  }
}

/* FILE's names, one a line. */
static int parse_file(const char *path, int k, cg_classnames_t *n, char *err, size_t errlen) {
  struct stat st;
  const int missing = stat(path, &st) ? errno : 0;
  if (missing || !S_ISREG(st.st_mode)) {
    if (missing && missing != ENOENT)
      snprintf(err, errlen, "'%.400s' cannot be read: %s (give a FILE of one name a line, or "
               "the names comma-separated)", path, strerror(missing));
    else
      snprintf(err, errlen, "'%.400s' is %s (give a FILE of one name a line, or the names "
               "comma-separated)", path, missing ? "no file" : "not a regular file");
    return -1;
  }
  char *base;
  const char *p;
  if (cg_text_file_read(path, FILE_MAX, &base, &p, err, errlen)) return -1;
  int rc = 0;
  size_t used = 0, len;
  long line = 0;
  for (const char *s; !rc && (s = cg_text_next_line(&p, &len)) != NULL;) {
    line++;
    for (size_t i = 0; i < len; i++) /* a comment: from a '#' that starts a word ("C#" stays) */
      if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) len = i;
    size_t b = 0;
    while (b < len && (s[b] == ' ' || s[b] == '\t')) b++;
    if (b < len) {
      char where[480];
      snprintf(where, sizeof where, "%.400s:%ld", path, line);
      rc = add(n, &used, s, len, k, where, err, errlen);
    }
  }
  free(base);
  return rc;
}

/* spec as a list (a comma in it) or, with files, a FILE; k 0: any count (2..255). */
static int parse(const char *spec, int k, int files, cg_classnames_t *n, char *err,
                 size_t errlen) {
  memset(n, 0, sizeof *n);
  if (!spec[0]) return 0;
  if (k == 1 || k < 0 || k > CG_CLASSNAMES_CLASSES) {
    snprintf(err, errlen, "names the classes of a model of K >= 2 classes (this one is binary: it "
             "has one foreground)");
    return -1;
  }
  const int max = k ? k : CG_CLASSNAMES_CLASSES, list = strchr(spec, ',') != NULL;
  int rc;
  if (list) {
    rc = parse_list(spec, max, n, err, errlen);
  } else if (files) {
    rc = parse_file(spec, max, n, err, errlen);
  } else {
    snprintf(err, errlen, "'%.60s' is one name, not a list of K >= 2", spec);
    rc = -1;
  }
  if (!rc && (k ? n->k != k : n->k < 2)) {
    char from[440]; /* a FILE's count names the file, a list's its start */
    const int file = !list;
    if (file) snprintf(from, sizeof from, "%.400s: ", spec);
    else snprintf(from, sizeof from, "'%.60s%s': ", spec, strlen(spec) > 60 ? "..." : "");
    snprintf(err, errlen, "%s%d name%s for %s%d classes%s", from, n->k, n->k == 1 ? "" : "s",
             k ? "" : "K >= ", k ? k : 2, file ? " (one name a line, in class-id order)" : "");
    rc = -1;
  }
  if (rc) memset(n, 0, sizeof *n);
  return rc;
}

int cg_classnames_parse(const char *spec, int k, cg_classnames_t *n, char *err, size_t errlen) {
  return parse(spec, k, 1, n, err, errlen);
}

int cg_classnames_from_list(const char *list, int k, cg_classnames_t *n, char *err,
                            size_t errlen) {
  return parse(list, k, 0, n, err, errlen);
}

void cg_classnames_join(const cg_classnames_t *n, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int c = 0; c < n->k && used < len; c++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", c ? "," : "", n->name[c]);
}

int cg_classnames_from_json(const cg_json_t *obj, const char *key, int k, cg_classnames_t *n,
                            char *err, size_t errlen) {
  const char *v = obj && obj->type == CG_JSON_OBJ ? cg_json_str(obj, key, "") : "";
  return cg_classnames_from_list(v, k, n, err, errlen);
}

void cg_classnames_json_list(const cg_json_t *obj, const char *key, int k, char *list) {
  cg_classnames_t *n = cg_malloc(sizeof *n, "class names");
  char why[256];
  list[0] = 0;
  if (!cg_classnames_from_json(obj, key, k, n, why, sizeof why))
    cg_classnames_join(n, list, CG_CLASSNAMES_LEN);
  free(n);
}
