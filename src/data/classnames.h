/* classnames.h: --class-names, the names of a K >= 2 model's classes, shown beside the class
 * ids in the per-class tables (train's validation, predict --masks, check-data's shares), the
 * metrics JSON and TensorBoard's tags, as mmsegmentation's tables name a data set's classes.
 *
 * A spec is the names themselves, comma-separated ("road,sidewalk,building"), or, without a
 * comma, a FILE of one name per line (mmsegmentation's and detectron2's class lists; a UTF-8
 * byte-order mark, "\r\n" line ends, blank lines, '#' comment lines and comments after a name
 * ("road  # class 0": a '#' that starts a word) are read). Spaces and tabs around a name are
 * dropped. There must be exactly K names, in class-id order, unique,
 * each 1..CG_CLASSNAME_MAX bytes of UTF-8 without control characters, commas, quotes or
 * backslashes (so a name goes into JSON, CSV and a comma list as it is), 2047 bytes in all
 * with the commas. The canonical form is the comma list: what a checkpoint stores and parses
 * again. */
#ifndef CG_CLASSNAMES_H
#define CG_CLASSNAMES_H

#include <stddef.h>

#include "json.h" /* cg_json_t: names kept in a checkpoint's settings or a file's metadata */

#define CG_CLASSNAME_MAX 48     /* bytes of one name */
#define CG_CLASSNAMES_LEN 2048  /* the comma list, NUL included (ADE20K's 150: about 1.2 KB) */
#define CG_CLASSNAMES_CLASSES 255

typedef struct {
  int k;                                   /* names; 0 = none */
  const char *name[CG_CLASSNAMES_CLASSES]; /* k of them, into buf */
  char buf[CG_CLASSNAMES_LEN];
} cg_classnames_t;

/* Parses spec for k classes into n (k names, or none when spec is ""; k 0: any count from 2 to
 * 255, the spelling alone). 0, or -1 with a message (naming FILE:LINE or the name) in err and n
 * empty. */
int cg_classnames_parse(const char *spec, int k, cg_classnames_t *n, char *err, size_t errlen);
/* The same for a comma list that was stored (a checkpoint's): never read as a FILE. */
int cg_classnames_from_list(const char *list, int k, cg_classnames_t *n, char *err,
                            size_t errlen);
/* The stored list at key of a JSON object (a checkpoint's settings, "class-names"; an exported
 * file's metadata, "class_names"): none when obj is no object or has none. */
int cg_classnames_from_json(const cg_json_t *obj, const char *key, int k, cg_classnames_t *n,
                            char *err, size_t errlen);
/* The same names as their canonical list into list (CG_CLASSNAMES_LEN bytes), "" when there are
 * none or the value is no list for k classes (names only label figures: left out, not fatal). */
void cg_classnames_json_list(const cg_json_t *obj, const char *key, int k, char *list);

/* The canonical comma list of n into buf (len >= CG_CLASSNAMES_LEN; "" when n has none). */
void cg_classnames_join(const cg_classnames_t *n, char *buf, size_t len);

#endif
