/* labelmap.h: --label-map, the mask values a data set stores turned into the class ids training
 * uses, as masks are read (train, pack, predict --masks).
 *
 *   reduce-zero  0 becomes the ignore label and every other value v becomes v - 1 (the ignore
 *                label itself stays): ADE20K's masks, whose 0 is "other"
 *                (mmsegmentation's reduce_zero_label)
 *   FILE         "FROM TO" lines (0..255 each; '#' starts a comment): FROM becomes TO, and a
 *                "* TO" line gives every value not listed (Cityscapes' labelIds to its 19
 *                train ids: 7 0, 8 1, ..., 33 18, * 255). Without "*", a value not listed
 *                makes its sample bad, named with the value.
 *
 * Every TO of a FILE must be a class id (< --num-classes; binary masks: 0 or 1) or the ignore
 * label; reduce-zero needs an ignore label, and a stored value it would make the ignore label
 * (ignore + 1) is left out of the map rather than silently ignored. The ids after the map are
 * checked as always (fit.h). */
#ifndef CG_LABELMAP_H
#define CG_LABELMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int16_t to[256]; /* the id for stored value v; -1: not in the map (a bad sample) */
  char spec[64];   /* for messages: "reduce-zero" or the file's name (shortened) */
} cg_labelmap_t;

/* Parses spec for nclass classes and the ignore label (-1: none). 0, or -1 with a message
 * (naming FILE:LINE) in err. */
int cg_labelmap_parse(const char *spec, int nclass, int ignore, cg_labelmap_t *m, char *err,
                      size_t errlen);

/* The map's table as 512 characters (two hex digits per stored value 0..255, "--" for a value
 * the map leaves out) and a NUL: what a checkpoint keeps, so that a resume compares the map
 * itself (a file edited since then is another map) and predict maps as the run did. */
#define CG_LABELMAP_TABLE_LEN 513
void cg_labelmap_table(const cg_labelmap_t *m, char *buf);
/* The map of such a table (spec: for messages). 0, or -1 when table is malformed. */
int cg_labelmap_from_table(const char *table, const char *spec, cg_labelmap_t *m);

#endif
