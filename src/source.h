/* source.h: where samples come from. A source yields raw samples (RGB image + 0/1 mask) of a
 * fixed size h x w by index, from any thread at once.
 *
 * The built-in synthetic source generates sample (offset + index) of the synthetic dataset, so
 * the training and validation sets are disjoint ranges of one generator. */
#ifndef CG_SOURCE_H
#define CG_SOURCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cg_source cg_source_t;

typedef struct {
  const char *kind;
  /* Returns 0, or -1 with a message naming the file/record in err. Thread-safe. */
  int (*load)(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
              size_t errlen);
  void (*destroy)(cg_source_t *s);
} cg_source_ops_t;

struct cg_source {
  const cg_source_ops_t *ops;
  int64_t count;
  int h, w;
};

/* Synthetic samples offset .. offset+count-1 at h x w. */
cg_source_t *cg_source_synthetic(uint64_t seed, int64_t offset, int64_t count, int h, int w);

static inline int cg_source_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask,
                                 char *err, size_t errlen) {
  return s->ops->load(s, index, rgb, mask, err, errlen);
}
void cg_source_destroy(cg_source_t *s); /* NULL-safe */

#endif
