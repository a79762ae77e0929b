/* fuzz_cgds.c: the .cgds shard reader (src/data/cgds.c) as --data opens it: cg_source_open (magic,
 * header, table, names), every record loaded (record CRC, mask values; whole, version 5's too, and
 * through a crop window; and as stored, as --val-mode whole loads it), and the validation split
 * that hashes the record names.
 *
 * Each input runs twice: as given (the CRC checks must reject it cleanly) and with its CRCs
 * recomputed (cg_fuzz_fix_cgds), which is how mutations reach the checks behind the CRCs. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h" // cg_fuzz_*: memfd inputs, CRC fixers
#include "source.h"    // cg_source_open, cg_source_load, cg_source_split

static cg_fuzz_file_t g_in;

/* Loads at most this many records: enough for every code path, bounded time per input. */
#define MAX_LOADS 16

/* Every record (up to MAX_LOADS) as validation loads it, and through two training crop windows,
 * one zooming out (version 5: over the whole record). */
static void load_all(cg_source_t *s, uint8_t *rgb, uint8_t *mask, uint8_t *tmp) {
  char err[512];
  const cg_crop_t wins[2] = {{0.6, 0.3, 0.7, 0}, {1.7, 0.2, 0.9, 0}}; /* the second zooms out */
  for (int64_t i = 0; i < s->count && i < MAX_LOADS; i++) {
    if (cg_source_load(s, i, rgb, mask, err, sizeof err) == 0)
      for (size_t k = 0; k < (size_t)s->h * s->w; k++)
        if (mask[k] > 1) abort(); /* the reader promises 0/1 masks */
    for (int j = 0; j < 2; j++)
      if (cg_source_load_win(s, i, &wins[j], rgb, mask, tmp, err, sizeof err) == 0)
        for (size_t k = 0; k < (size_t)s->h * s->w; k++)
          if (mask[k] > 1) abort();
    int oh, ow; /* the record as stored: its size from the table, then its bytes */
    if (cg_source_load_whole(s, i, &oh, &ow, NULL, NULL, err, sizeof err)) abort();
    if (oh < 1 || ow < 1 || (int64_t)oh * ow > (int64_t)64 * s->h * s->w) abort();
    uint8_t *wr = malloc((size_t)oh * ow * 3), *wm = malloc((size_t)oh * ow);
    if (!wr || !wm) abort();
    if (cg_source_load_whole(s, i, &oh, &ow, wr, wm, err, sizeof err) == 0)
      for (size_t k = 0; k < (size_t)oh * ow; k++)
        if (wm[k] > 1) abort();
    free(wr);
    free(wm);
  }
}

static void run(const uint8_t *data, size_t n) {
  cg_fuzz_file_put(&g_in, data, n);
  char err[512];
  /* The size the shard claims, so that open() goes all the way (--image-size must match). */
  int size = n >= 32 ? (int)(data[24] | data[25] << 8) : 16;
  if (size < 1) size = 1;
  cg_source_t *s = cg_source_open(g_in.path, size, 1, 0, err, sizeof err);
  if (!s) return;
  if (s->count < 1 || s->h != size || s->w != size) abort();
  const size_t px = (size_t)s->h * s->w;
  uint8_t *rgb = malloc(px * 3), *mask = malloc(px), *tmp = malloc(px * 4);
  if (!rgb || !mask || !tmp) abort();
  load_all(s, rgb, mask, tmp);
  for (int64_t i = 0; i < s->count; i++) /* names: NUL-terminated, non-empty */
    if (!cg_source_name(s, i) || !cg_source_name(s, i)[0]) abort();
  cg_source_t *tr = NULL, *va = NULL;
  if (s->count >= 2 && cg_source_split(s, 0.25, &tr, &va, err, sizeof err) == 0) {
    if (tr->count + va->count != s->count) abort();
    load_all(va, rgb, mask, tmp);
    cg_source_destroy(tr);
    cg_source_destroy(va);
  }
  free(rgb);
  free(mask);
  free(tmp);
  cg_source_destroy(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cg_fuzz_file_open(&g_in, "shard.cgds");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  cg_fuzz_both(data, n, cg_fuzz_fix_cgds, run);
  return 0;
}
