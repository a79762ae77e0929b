/* pairlist.h: a text file naming images and their masks, one "IMAGE MASK" line each (the train
 * lists of PaddleSeg and DeepLab), as `train --data LIST`, `pack --list` and `predict --input
 * LIST` read it.
 *
 * Two paths separated by spaces, or by a tab when a name holds spaces (spaces around a field
 * are then dropped); a relative path is under the list's directory; blank lines, lines whose
 * first non-blank character is '#', and "\r\n" line ends are read. Each entry is named by its
 * image's file name without the extension (the last ".x" that does not start the name), as a
 * directory's pairs are, and names must be unique: they key --val-fraction's split, a shard's
 * records and predict's output files. Every named file must exist and be a regular file (or a
 * link to one). Lines are at most 8192 bytes; a NUL byte makes the file no list. */
#ifndef CG_PAIRLIST_H
#define CG_PAIRLIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t n;
  char **image, **mask, **name; /* n each, malloc'ed; mask[i] NULL when the list has no masks */
  long *line;                   /* the line each entry came from */
  int has_masks;
} cg_pairlist_t;

typedef enum {
  CG_PAIRLIST_MASKS,          /* every line is IMAGE MASK */
  CG_PAIRLIST_MASKS_OPTIONAL, /* every line is IMAGE MASK, or every line is IMAGE */
} cg_pairlist_masks_t;

/* Reads list into pl: 0, or -1 with "LIST:LINE: why" (or "LIST: why") in err and pl empty. */
int cg_pairlist_read(const char *list, cg_pairlist_masks_t masks, cg_pairlist_t *pl, char *err,
                     size_t errlen);
void cg_pairlist_free(cg_pairlist_t *pl); /* NULL entries are skipped */

#endif
