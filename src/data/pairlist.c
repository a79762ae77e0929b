/* pairlist.c: reading a list of IMAGE [MASK] lines (pairlist.h). */
#include "pairlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h" /* cg_afile_kind, cg_file_read */
#include "bmp_io.h"      /* cg_bmp_sniff: a BMP given as a list */
#include "log.h"

#define LIST_LINE_MAX 8192

/* Reads one line of f into buf (without its end: "\n" or "\r\n"): its length, -1 at the end of
 * the file, -2 for a line over LIST_LINE_MAX bytes, -3 for a NUL byte (not a text file), -4 for
 * a carriage return inside it (old Mac line ends, "\r" alone). */
static int read_line(FILE *f, char *buf) {
  int n = 0, c;
  while ((c = getc(f)) != EOF && c != '\n') {
    if (c == 0) return -3;
    if (n == LIST_LINE_MAX) return memchr(buf, '\r', (size_t)n) ? -4 : -2; /* CR-only ends */
    buf[n++] = (char)c;
  }
  if (c == EOF && n == 0) return -1;
  if (n && buf[n - 1] == '\r') n--;
  buf[n] = 0;
  return memchr(buf, '\r', (size_t)n) ? -4 : n;
}

/* What the first n bytes of a file, b, show it to be when it is no text list, or NULL. */
static const char *not_text(const unsigned char *b, size_t n) {
  if (n >= 2 && ((b[0] == 0xff && b[1] == 0xfe) || (b[0] == 0xfe && b[1] == 0xff)))
    return "UTF-16 text (save it as UTF-8)";
  const int nul = memchr(b, 0, n) != NULL;
  if (n >= 4 && !memcmp(b, "CGDS", 4) && (nul || n < 8)) return "a .cgds shard";
  if (n >= 8 && !memcmp(b, "CGCKPT\r\n", 8)) return "a cogpu-dist checkpoint";
  if (n >= 4 && !memcmp(b, "\x89PNG", 4)) return "a PNG image";
  if (n >= 3 && !memcmp(b, "\xff\xd8\xff", 3)) return "a JPEG image";
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "a GIF image";
  if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "a TIFF image";
  if (cg_bmp_sniff(b, n) && n >= 18) return "a BMP image";
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return "gzip-compressed data (decompress it first)";
  if (nul) return "binary data (it holds NUL bytes)";
  return NULL;
}

/* Drops the spaces and tabs that start and end line. */
static char *trim(char *line) {
  line += strspn(line, " \t");
  size_t k = strlen(line);
  while (k && (line[k - 1] == ' ' || line[k - 1] == '\t')) line[--k] = 0;
  return line;
}

/* Splits line into at most 3 fields (more are counted as 3): at tabs when it has one (so that
 * names may hold spaces; spaces around a field are dropped), else at runs of spaces. */
static int split_fields(char *line, char *field[3]) {
  const char *sep = strchr(line, '\t') ? "\t" : " ";
  int n = 0;
  for (char *save = NULL, *t = strtok_r(line, sep, &save); t; t = strtok_r(NULL, sep, &save)) {
    while (*t == ' ') t++;
    size_t k = strlen(t);
    while (k && t[k - 1] == ' ') t[--k] = 0;
    if (!*t) continue;
    if (n == 3) break;
    field[n++] = t;
  }
  return n;
}

/* path as the list gives it: absolute, or relative to the list's directory dir. */
static char *resolve(const char *dir, const char *path) {
  char *p;
  if (path[0] == '/' || !dir[0]) p = strdup(path);
  else if (asprintf(&p, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path) < 0) p = NULL;
  if (!p) CG_FATAL("out of memory");
  return p;
}

static char *name_of(const char *image) {
  const char *b = strrchr(image, '/');
  b = b ? b + 1 : image;
  const char *dot = strrchr(b, '.');
  char *n = strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
  if (!n) CG_FATAL("out of memory");
  return n;
}

/* 0 when path is a regular file, else -1 with "LIST:LINE: PATH: why" in err. */
static int file_ok(const char *list, long line, const char *path, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st))
    snprintf(err, errlen, "%s:%ld: %s: %s", list, line, path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    snprintf(err, errlen, "%s:%ld: %s is %s, not a regular file", list, line, path,
             cg_afile_kind(st.st_mode));
  else
    return 0;
  return -1;
}

typedef struct {
  const char *name;
  long line;
} named_line_t;

static int cmp_named_line(const void *a, const void *b) {
  const named_line_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Two entries of one name: -1 naming both lines. */
static int check_unique(const cg_pairlist_t *pl, const char *list, char *err, size_t errlen) {
  named_line_t *v = cg_malloc(sizeof *v * (size_t)(pl->n ? pl->n : 1), "list names");
  for (int64_t i = 0; i < pl->n; i++) v[i] = (named_line_t){pl->name[i], pl->line[i]};
  qsort(v, (size_t)pl->n, sizeof *v, cmp_named_line);
  int rc = 0;
  for (int64_t i = 1; i < pl->n && !rc; i++)
    if (!strcmp(v[i].name, v[i - 1].name)) {
      snprintf(err, errlen, "%s:%ld: image name %s is line %ld's too: entries are named by their "
               "image's file name without its extension, and names must be unique (they key "
               "--val-fraction's split, a shard's records and predict's outputs): rename one, "
               "or name it through a symbolic link of another name", list, v[i].line,
               v[i].name, v[i - 1].line);
      rc = -1;
    }
  free(v);
  return rc;
}

/* Appends (image, mask) read from line to pl (taken over). */
static void append(cg_pairlist_t *pl, size_t *cap, char *image, char *mask, long line) {
  if ((size_t)pl->n == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    char **ni = realloc(pl->image, *cap * sizeof *ni);
    if (ni) pl->image = ni;
    char **nm = realloc(pl->mask, *cap * sizeof *nm);
    if (nm) pl->mask = nm;
    char **nn = realloc(pl->name, *cap * sizeof *nn);
    if (nn) pl->name = nn;
    long *nl = realloc(pl->line, *cap * sizeof *nl);
    if (nl) pl->line = nl;
    if (!ni || !nm || !nn || !nl) CG_FATAL("out of memory reading a list");
  }
  pl->image[pl->n] = image;
  pl->mask[pl->n] = mask;
  pl->name[pl->n] = name_of(image);
  pl->line[pl->n] = line;
  pl->n++;
}

/* One line's fields as an entry of pl: 0, or -1 with err. first_line: the line that set
 * whether the list has masks (0: none yet). */
static int take_line(cg_pairlist_t *pl, size_t *cap, char **field, int nf, const char *dir,
                     const char *list, long line, cg_pairlist_masks_t masks, long *first_line,
                     char *err, size_t errlen) {
  const int optional = masks == CG_PAIRLIST_MASKS_OPTIONAL;
  const char *form = optional ? "IMAGE or IMAGE MASK" : "2: IMAGE MASK";
  if (nf > 2 || (nf == 1 && !optional)) {
    snprintf(err, errlen, "%s:%ld: %s, need %s (separated by spaces, or by a tab when a name "
             "holds spaces)", list, line, nf > 2 ? "3 or more fields" : "1 field", form);
    return -1;
  }
  if (*first_line && (nf == 2) != pl->has_masks) {
    snprintf(err, errlen, "%s:%ld: %s, and line %ld has %s: give every image its mask, or none",
             list, line, nf == 2 ? "an image and a mask" : "an image without a mask",
             *first_line, pl->has_masks ? "a mask" : "none");
    return -1;
  }
  if (!*first_line) {
    *first_line = line;
    pl->has_masks = nf == 2;
  }
  char *image = resolve(dir, field[0]), *mask = nf == 2 ? resolve(dir, field[1]) : NULL;
  if (file_ok(list, line, image, err, errlen) ||
      (mask && file_ok(list, line, mask, err, errlen))) {
    free(image);
    free(mask);
    return -2;
  }
  append(pl, cap, image, mask, line);
  return 0;
}

int cg_pairlist_sniff(const char *path, const char **what) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  *what = cg_pairlist_text_start(f);
  fclose(f);
  return 0;
}

const char *cg_pairlist_text_start(FILE *f) {
  unsigned char b[4096];
  const size_t n = fread(b, 1, sizeof b, f);
  const char *what = not_text(b, n);
  if (what) return what;
  rewind(f);
  if (n >= 3 && !memcmp(b, "\xef\xbb\xbf", 3)) (void)!fread(b, 1, 3, f);
  return NULL;
}

int cg_text_file_read(const char *path, size_t max, char **base, const char **text, char *err,
                      size_t errlen) {
  *base = NULL;
  *text = NULL;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max) {
    snprintf(err, errlen, "%.900s: %lld bytes, more than such a file's %zu", path,
             (long long)st.st_size, max);
    errno = EFBIG;
    return -1;
  }
  char why[200];
  size_t n = 0;
  char *b = cg_file_read(path, &n, why, sizeof why);
  if (!b) {
    const int e = errno;
    snprintf(err, errlen, "%.900s: %s", path, why);
    errno = e;
    return -1;
  }
  const char *what = not_text((const unsigned char *)b, n < 4096 ? n : 4096);
  if (!what && memchr(b, 0, n)) what = "binary data (it holds NUL bytes)";
  if (what) {
    snprintf(err, errlen, "%.900s: %s%s", path, what, strncmp(what, "UTF-16", 6) ? ", not a "
             "text file" : "");
    free(b);
    errno = EINVAL;
    return -1;
  }
  long line = 1;
  for (size_t i = 0; i < n; i++) {
    if (b[i] == '\n') line++;
    if (b[i] == '\r' && i + 1 < n && b[i + 1] != '\n') { /* a CR ending the file ends its
                                                            last line */
      snprintf(err, errlen, "%.900s:%ld: a carriage return inside a line: the file has old Mac "
               "line ends (CR alone); save it with LF or CRLF ends", path, line);
      free(b);
      errno = EINVAL;
      return -1;
    }
  }
  *base = b;
  *text = b + (n >= 3 && !memcmp(b, "\xef\xbb\xbf", 3) ? 3 : 0);
  return 0;
}

const char *cg_text_next_line(const char **p, size_t *len) {
  const char *s = *p;
  if (!*s) return NULL;
  const char *e = strchr(s, '\n');
  size_t k = e ? (size_t)(e - s) : strlen(s);
  *p = e ? e + 1 : s + k;
  if (k && s[k - 1] == '\r') k--;
  *len = k;
  return s;
}

int cg_pairlist_read(const char *list, cg_pairlist_masks_t masks, cg_pairlist_t *pl, char *err,
                     size_t errlen) {
  memset(pl, 0, sizeof *pl);
  struct stat st;
  if (stat(list, &st) == 0 && !S_ISREG(st.st_mode)) { /* a pipe: each rank would read its own */
    snprintf(err, errlen, "%s is %s, not a list file (a regular file)", list,
             cg_afile_kind(st.st_mode));
    return -1;
  }
  FILE *f = fopen(list, "r");
  if (!f) {
    snprintf(err, errlen, "%s: %s", list, strerror(errno));
    return -1;
  }
  const char *what = cg_pairlist_text_start(f);
  if (what) {
    snprintf(err, errlen, "%s: %s, not a text list of IMAGE [MASK] lines", list, what);
    fclose(f);
    return -1;
  }
  char dir[4096];
  const char *slash = strrchr(list, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - list) + (slash == list) : 0, list);
  char *buf = cg_malloc(LIST_LINE_MAX + 1, "list line");
  size_t cap = 0;
  long line = 0, first_line = 0, missing_at[6];
  int n, rc = 0, missing = 0;
  char first_missing[1024] = "";
  while (!rc && (n = read_line(f, buf)) >= 0) {
    line++;
    char *t = trim(buf);
    if (!*t || *t == '#') continue;
    char *field[3];
    const int nf = split_fields(t, field);
    rc = take_line(pl, &cap, field, nf, dir, list, line, masks, &first_line, err, errlen);
    if (rc == -2) { /* a missing file: the others are listed too, not found one run at a time */
      if (!missing++) snprintf(first_missing, sizeof first_missing, "%s", err);
      if (missing <= 6) missing_at[missing - 1] = line;
      rc = 0;
    }
  }
  if (!rc && missing) {
    int k = snprintf(err, errlen, "%s", first_missing);
    if (missing > 1 && k >= 0 && (size_t)k < errlen)
      k += snprintf(err + k, errlen - (size_t)k, " (and %d more line(s) naming missing or unusable "
                    "files:", missing - 1);
    for (int i = 1; i < missing && i < 6 && k >= 0 && (size_t)k < errlen; i++)
      k += snprintf(err + k, errlen - (size_t)k, " %ld", missing_at[i]);
    if (missing > 1 && k >= 0 && (size_t)k < errlen)
      snprintf(err + k, errlen - (size_t)k, "%s)", missing > 6 ? " ..." : "");
    rc = -1;
  }
  if (!rc && (n == -2 || n == -3 || n == -4)) {
    if (n == -2)
      snprintf(err, errlen, "%s:%ld: line longer than %d bytes", list, line + 1, LIST_LINE_MAX);
    else if (n == -4)
      snprintf(err, errlen, "%s:%ld: a carriage return inside a line: the list has old Mac line "
               "ends (CR alone); save it with LF or CRLF ends", list, line + 1);
    else
      snprintf(err, errlen, "%s:%ld: a NUL byte: not a text list of IMAGE MASK lines", list,
               line + 1);
    rc = -1;
  }
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "%s: read error", list);
    rc = -1;
  }
  if (!rc && pl->n == 0) {
    snprintf(err, errlen, "%s: no %s lines", list,
             masks == CG_PAIRLIST_MASKS ? "IMAGE MASK" : "IMAGE or IMAGE MASK");
    rc = -1;
  }
  if (!rc) rc = check_unique(pl, list, err, errlen);
  fclose(f);
  free(buf);
  if (rc) cg_pairlist_free(pl);
  return rc;
}

void cg_pairlist_free(cg_pairlist_t *pl) {
  for (int64_t i = 0; i < pl->n; i++) {
    free(pl->image[i]);
    free(pl->mask[i]);
    free(pl->name[i]);
  }
  free(pl->image);
  free(pl->mask);
  free(pl->name);
  free(pl->line);
  memset(pl, 0, sizeof *pl);
}
