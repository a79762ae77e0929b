/* json.c: a recursive-descent JSON reader (see json.h). Depth is bounded so a hostile file
 * cannot exhaust the stack. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
  const char *p;
  const char *start;
  char *err;
  size_t errlen;
  int failed;
} parser_t;

static void fail(parser_t *ps, const char *what) {
  if (!ps->failed) snprintf(ps->err, ps->errlen, "%s at offset %ld", what, (long)(ps->p - ps->start));
  ps->failed = 1;
}

static void ws(parser_t *ps) {
  while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static int parse_value(parser_t *ps, cg_json_t *v, int depth);

static void put_utf8(char **o, unsigned cp) {
  if (cp < 0x80) {
    *(*o)++ = (char)cp;
  } else if (cp < 0x800) {
    *(*o)++ = (char)(0xC0 | (cp >> 6));
    *(*o)++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *(*o)++ = (char)(0xE0 | (cp >> 12));
    *(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *(*o)++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *(*o)++ = (char)(0xF0 | (cp >> 18));
    *(*o)++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *(*o)++ = (char)(0x80 | (cp & 0x3F));
  }
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static char *parse_string(parser_t *ps) {
  if (*ps->p != '"') {
    fail(ps, "expected a string");
    return NULL;
  }
  const char *s = ++ps->p;
  size_t n = 0;
  while (s[n] && s[n] != '"') n += s[n] == '\\' && s[n + 1] ? 2 : 1;
  if (!s[n]) {
    fail(ps, "unterminated string");
    return NULL;
  }
  char *out = malloc(n * 2 + 1), *o = out; /* \uXXXX -> at most 4 bytes for 6 in */
  if (!out) {
    fail(ps, "out of memory");
    return NULL;
  }
  while (*ps->p != '"') {
    unsigned char c = (unsigned char)*ps->p++;
    if (c < 0x20) {
      free(out);
      fail(ps, "control character in a string");
      return NULL;
    }
    if (c != '\\') {
      *o++ = (char)c;
      continue;
    }
    char e = *ps->p++;
    switch (e) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp;
        if (hex4(ps->p, &cp)) {
          free(out);
          fail(ps, "bad \\u escape");
          return NULL;
        }
        ps->p += 4;
        if (cp == 0) { /* a C string cannot hold it: "x\u0000" would read as "x" */
          free(out);
          fail(ps, "\\u0000 in a string");
          return NULL;
        }
        if (cp >= 0xD800 && cp < 0xDC00 && ps->p[0] == '\\' && ps->p[1] == 'u') {
          unsigned lo;
          if (!hex4(ps->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            ps->p += 6;
          }
        }
        put_utf8(&o, cp);
        break;
      }
      default:
        free(out);
        fail(ps, "bad escape");
        return NULL;
    }
  }
  ps->p++;
  *o = 0;
  return out;
}

static int parse_container(parser_t *ps, cg_json_t *v, int depth, int obj) {
  char close = obj ? '}' : ']';
  ps->p++;
  v->type = obj ? CG_JSON_OBJ : CG_JSON_ARR;
  int cap = 0;
  ws(ps);
  if (*ps->p == close) {
    ps->p++;
    return 0;
  }
  for (;;) {
    if (v->n == cap) {
      cap = cap ? 2 * cap : 8;
      cg_json_t *ni = realloc(v->items, sizeof(cg_json_t) * (size_t)cap);
      char **nk = obj ? realloc(v->keys, sizeof(char *) * (size_t)cap) : NULL;
      if (!ni || (obj && !nk)) {
        if (ni) v->items = ni;
        if (nk) v->keys = nk;
        fail(ps, "out of memory");
        return -1;
      }
      v->items = ni;
      if (obj) v->keys = nk;
    }
    ws(ps);
    if (obj) {
      v->keys[v->n] = parse_string(ps);
      if (!v->keys[v->n]) return -1;
      ws(ps);
      if (*ps->p != ':') {
        free(v->keys[v->n]);
        fail(ps, "expected ':'");
        return -1;
      }
      ps->p++;
    }
    memset(&v->items[v->n], 0, sizeof(cg_json_t));
    v->n++;
    if (parse_value(ps, &v->items[v->n - 1], depth + 1)) return -1;
    ws(ps);
    if (*ps->p == ',') {
      ps->p++;
      continue;
    }
    if (*ps->p == close) {
      ps->p++;
      return 0;
    }
    fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    return -1;
  }
}

static int parse_value(parser_t *ps, cg_json_t *v, int depth) {
  if (depth > MAX_DEPTH) {
    fail(ps, "nested too deeply");
    return -1;
  }
  ws(ps);
  const char *p = ps->p;
  if (*p == '{' || *p == '[') return parse_container(ps, v, depth, *p == '{');
  if (*p == '"') {
    v->type = CG_JSON_STR;
    v->str = parse_string(ps);
    return v->str ? 0 : -1;
  }
  if (!strncmp(p, "null", 4)) {
    v->type = CG_JSON_NULL;
    ps->p += 4;
    return 0;
  }
  if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
    v->type = CG_JSON_BOOL;
    v->num = p[0] == 't';
    ps->p += p[0] == 't' ? 4 : 5;
    return 0;
  }
  /* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
  const char *q = p;
  if (*q == '-') q++;
  if (*q == '0') q++;
  else if (*q >= '1' && *q <= '9') while (*q >= '0' && *q <= '9') q++;
  else {
    fail(ps, "unexpected character");
    return -1;
  }
  if (*q == '.') {
    q++;
    if (!(*q >= '0' && *q <= '9')) {
      fail(ps, "bad number");
      return -1;
    }
    while (*q >= '0' && *q <= '9') q++;
  }
  if (*q == 'e' || *q == 'E') {
    q++;
    if (*q == '+' || *q == '-') q++;
    if (!(*q >= '0' && *q <= '9')) {
      fail(ps, "bad exponent");
      return -1;
    }
    while (*q >= '0' && *q <= '9') q++;
  }
  v->type = CG_JSON_NUM;
  v->num = strtod(p, NULL);
  ps->p = q;
  return 0;
}

static void free_inner(cg_json_t *v) {
  if (v->type == CG_JSON_STR) free(v->str);
  for (int i = 0; i < v->n; i++) {
    free_inner(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
}

cg_json_t *cg_json_parse(const char *text, char *err, size_t errlen) {
  parser_t ps = {text, text, err, errlen, 0};
  cg_json_t *v = calloc(1, sizeof *v);
  if (!v) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (parse_value(&ps, v, 0) == 0) {
    ws(&ps);
    if (*ps.p) fail(&ps, "trailing characters");
  }
  if (ps.failed) {
    free_inner(v);
    free(v);
    return NULL;
  }
  return v;
}

void cg_json_free(cg_json_t *v) {
  if (!v) return;
  free_inner(v);
  free(v);
}

const cg_json_t *cg_json_get(const cg_json_t *obj, const char *key) {
  if (!obj || obj->type != CG_JSON_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return &obj->items[i];
  return NULL;
}

double cg_json_num(const cg_json_t *obj, const char *key, double dflt) {
  const cg_json_t *v = cg_json_get(obj, key);
  return v && (v->type == CG_JSON_NUM || v->type == CG_JSON_BOOL) ? v->num : dflt;
}

const char *cg_json_str(const cg_json_t *obj, const char *key, const char *dflt) {
  const cg_json_t *v = cg_json_get(obj, key);
  return v && v->type == CG_JSON_STR ? v->str : dflt;
}

void cg_json_put_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}
