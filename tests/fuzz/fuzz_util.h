/* fuzz_util.h: what the libFuzzer targets of tests/fuzz share.
 *
 * The readers under test take a path, so an input is written to a memfd and handed over as
 * /proc/self/fd/N: a regular file that open(), fopen(), mmap() and stat() all accept, with
 * no disk traffic. The CRC fixers rewrite a copy of the input so that its CRCs match its
 * bytes: without them the fuzzer would almost never get past a reader's CRC check, and the
 * production readers stay as strict as they are (the fixing happens here, never in src/).
 *
 * Nothing here aborts on bad input: a target may only crash through a bug in the code it calls. */
#ifndef CG_FUZZ_UTIL_H
#define CG_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A memfd holding one input. The path stays valid for the process lifetime; every put
 * replaces the content (truncate, then write). */
typedef struct {
  int fd;
  char path[64];
} cg_fuzz_file_t;

void cg_fuzz_file_open(cg_fuzz_file_t *f, const char *name);
void cg_fuzz_file_put(cg_fuzz_file_t *f, const uint8_t *data, size_t n);

/* A fresh directory on tmpfs when there is one (/dev/shm), removed at exit. */
const char *cg_fuzz_tmpdir(const char *tag);
/* Writes data to dir/name (replacing it). */
void cg_fuzz_write_file(const char *dir, const char *name, const uint8_t *data, size_t n);

/* /dev/null as a FILE; with quiet_stdout, the process's stdout goes there too (readers that
 * print, such as `inspect`, would otherwise flood the fuzzer's log). */
FILE *cg_fuzz_devnull(int quiet_stdout);

/* A malloc'ed copy of data with n + 1 bytes, the last one 0 (for text readers). */
char *cg_fuzz_strndup(const uint8_t *data, size_t n);

/* CRC fixers: rewrite buf in place so that its CRC fields match its bytes, as far as the
 * structure can be followed (fields out of range are left alone for the reader to reject).
 * Return 1 when something changed. */
int cg_fuzz_fix_cgds(uint8_t *buf, size_t n); /* record CRCs, index CRC, header CRC */
int cg_fuzz_fix_ckpt(uint8_t *buf, size_t n); /* payload CRC over bytes [256, n), header CRC */
int cg_fuzz_fix_png(uint8_t *buf, size_t n);  /* every chunk's CRC */

/* Runs fn on data as given and, when the fixer changes a copy, on the fixed copy too. */
void cg_fuzz_both(const uint8_t *data, size_t n, int (*fix)(uint8_t *, size_t),
              void (*fn)(const uint8_t *, size_t));

#endif
