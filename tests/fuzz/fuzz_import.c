/* fuzz_import.c: `cogpu-dist import`'s reader of safetensors files (src/run/export.c,
 * cg_import_parse): the header length, the JSON header, the metadata that names the model, and
 * each tensor's dtype, shape and data offsets. A file from elsewhere is hostile input: it may
 * claim any model and any offsets.
 *
 * A refused file must come back with a reason and nothing allocated. An accepted one must
 * describe a model the trainer can build, and its weights must be the file's data bytes (as a
 * multiset of floats), so a reader that took bytes from the wrong place, read two tensors from
 * the same bytes or left a weight unset fails; and every weight must be finite (import refuses
 * a NaN or an infinity).
 * Seeds: `cogpu-dist export` of the seed run's checkpoints (make_seeds.sh). */
#include <math.h> /* isfinite */
#include <stdlib.h>
#include <string.h>

#include "classnames.h" // CG_CLASSNAMES_LEN: the metadata's class names
#include "export.h" // cg_import_parse
#include "model.h"  // cg_model_t: the model an accepted file describes

/* An accepted file's data section holds exactly its tensors, and the reader only reorders
 * their elements (PyTorch's layouts into model.h's): the weights, as bit patterns, sorted,
 * must equal the data section's floats, sorted. */
static int cmp_u32(const void *a, const void *b) {
  const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void same_values(const float *params, size_t np, const uint8_t *data, size_t dlen) {
  if (dlen != 4 * np) abort(); /* accepted: the data section holds exactly the tensors */
  uint32_t *a = malloc(4 * np + 4), *b = malloc(4 * np + 4);
  if (!a || !b) abort();
  memcpy(a, params, 4 * np);
  for (size_t i = 0; i < np; i++)
    b[i] = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
           (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
  qsort(a, np, 4, cmp_u32);
  qsort(b, np, 4, cmp_u32);
  if (memcmp(a, b, 4 * np)) abort(); /* a weight not taken from the file */
  free(a);
  free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  cg_model_t m;
  cg_ckpt_info_t info;
  memset(&info, 0, sizeof info);
  float *params = (float *)&m; /* must come back NULL on refusal */
  char err[1400];
  err[0] = 0;
  static char names[CG_CLASSNAMES_LEN]; /* the metadata's class_names, read as --init-from does */
  if (cg_import_parse(data, n, &m, &info, names, &params, err, sizeof err)) {
    if (params || !err[0]) abort(); /* refused: nothing allocated, and a reason */
    return 0;
  }
  if (!params || m.nparams == 0 || info.npal < 0 || info.npal > 256 || info.ignore_index < -1 ||
      info.ignore_index > 255)
    abort();
  for (size_t i = 0; i < m.nparams; i++)
    if (!isfinite(params[i])) abort(); /* a NaN or an infinity accepted */
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--) hn = hn << 8 | data[i];
  same_values(params, m.nparams, data + 8 + hn, n - 8 - (size_t)hn);
  free(params);
  return 0;
}
