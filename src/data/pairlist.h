/* pairlist.h: a text file naming images and their masks, one "IMAGE MASK" line each (the train
 * lists of PaddleSeg and DeepLab), as `train --data LIST`, `pack --list` and `predict --input
 * LIST` read it.
 *
 * Two paths separated by spaces, or by a tab when a name holds spaces (spaces around a field
 * are then dropped; spaces and tabs around a line are dropped first); a relative path is under
 * the directory of the list's path as given (a symbolic link's, not its target's). Blank
 * lines, lines whose first non-blank character is '#' (a file named "#x.png" is written
 * ./#x.png), a UTF-8 byte-order mark and "\r\n" line ends are read. A list is a regular file
 * in UTF-8 (or ASCII): UTF-16 text, a shard or an image is named as such; lines are at most
 * 8192 bytes, and a NUL byte makes the file no list.
 *
 * Each entry is named by its image's file name without the extension (the last ".x" that does
 * not start the name), as a directory's pairs are, and names must be unique: they key
 * --val-fraction's split, a shard's records and predict's output files. Every named file must
 * exist and be a regular file (or a link to one): all lines that name others are counted and
 * the first 6 listed, so that a list is not fixed one run at a time. */
#ifndef CG_PAIRLIST_H
#define CG_PAIRLIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* What the file f shows itself to be by its first 4 KiB when it is no text list ("UTF-16 text
 * (save it as UTF-8)", "a .cgds shard", "a PNG image", "binary data ..."), or NULL for text,
 * f then past a UTF-8 byte-order mark. For every small text file the user gives (lists,
 * --label-map files) and for telling what a path given as data is. */
const char *cg_pairlist_text_start(FILE *f);
/* The same of the file at path: 0 with *what, or -1 when it cannot be opened. */
int cg_pairlist_sniff(const char *path, const char **what);

/* A small text file of settings read whole (--label-map, --colors, --class-names FILE): its
 * text, NUL-terminated from a UTF-8 byte-order mark on (freed with free(*base)); *text is past
 * the mark. -1 with err saying why after "PATH: " (or "PATH:LINE: "), errno ENOENT for a missing
 * file, when path is no regular file (a FIFO would hang the reader), holds more than max bytes,
 * is no UTF-8 text (cg_pairlist_text_start's kinds, a NUL byte anywhere) or has old Mac line
 * ends: a CR not followed by LF would end no line, and the file would read as one. */
int cg_text_file_read(const char *path, size_t max, char **base, const char **text, char *err,
                      size_t errlen);
/* The line at *p of such a text: its length without "\n" or "\r\n" into *len, *p past it;
 * NULL at the text's end. */
const char *cg_text_next_line(const char **p, size_t *len);

#endif
