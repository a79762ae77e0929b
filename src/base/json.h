/* json.h: a small strict JSON reader (RFC 8259 values into a tree), for the monitor and tests.
 *
 * Ownership: cg_json_parse returns a tree the caller frees with cg_json_free; getters return
 * pointers into it. Numbers are doubles; strings are UTF-8 with escapes decoded (\uXXXX outside
 * ASCII is kept as UTF-8); \u0000 is refused, as a C string would end there. */
#ifndef CG_JSON_H
#define CG_JSON_H

#include <stddef.h>
#include <stdio.h>

typedef enum { CG_JSON_NULL, CG_JSON_BOOL, CG_JSON_NUM, CG_JSON_STR, CG_JSON_ARR, CG_JSON_OBJ } cg_json_type_t;

typedef struct cg_json {
  cg_json_type_t type;
  double num;              /* NUM; BOOL as 0/1 */
  char *str;               /* STR */
  int n;                   /* ARR / OBJ: number of items */
  struct cg_json *items;   /* ARR / OBJ values */
  char **keys;             /* OBJ keys */
} cg_json_t;

/* Parses one JSON value (surrounding whitespace allowed). NULL with a message on error. */
cg_json_t *cg_json_parse(const char *text, char *err, size_t errlen);
void cg_json_free(cg_json_t *v); /* NULL-safe */

/* Object member by key, or NULL. */
const cg_json_t *cg_json_get(const cg_json_t *obj, const char *key);
/* The number at key, or dflt when missing / null / not a number. */
double cg_json_num(const cg_json_t *obj, const char *key, double dflt);
/* The string at key, or dflt. */
const char *cg_json_str(const cg_json_t *obj, const char *key, const char *dflt);

/* Writes s to f as a JSON string, quotes included: '"' and '\' escaped, control bytes as
 * \u00XX; other bytes as they are (UTF-8 text stays UTF-8). For text the program does not
 * control, such as a host name. */
void cg_json_put_str(FILE *f, const char *s);

#endif
