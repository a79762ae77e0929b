/* source.c: the synthetic sample source (see source.h). */
#include "source.h"

#include <stdio.h> /* snprintf */
#include <stdlib.h>

#include "synth.h"
#include "log.h"

typedef struct {
  cg_source_t base;
  uint64_t seed;
  int64_t offset;
  int nclass, ignore;
} synth_source_t;

static int synth_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                      size_t errlen) {
  (void)err;
  (void)errlen;
  synth_source_t *ss = (synth_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  cg_synth_sample_k(ss->seed, ss->offset + index, s->h, s->w, ss->nclass, ss->ignore, rgb, mask);
  return 0;
}

static void synth_destroy(cg_source_t *s) { free(s); }

int cg_source_load_whole(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb,
                         uint8_t *mask, char *err, size_t errlen) {
  if (s->ops->whole) return s->ops->whole(s, index, oh, ow, rgb, mask, err, errlen);
  *oh = s->h;
  *ow = s->w;
  return rgb ? cg_source_load(s, index, rgb, mask, err, errlen) : 0;
}

int cg_source_load_full(cg_source_t *s, int64_t index, int *oh, int *ow, int *mh, int *mw,
                        uint8_t *rgb, uint8_t *mask, char *err, size_t errlen) {
  if (s->ops->full) return s->ops->full(s, index, oh, ow, mh, mw, rgb, mask, err, errlen);
  if (s->ops->whole) { /* records stored scaled: no mask of the original size to score */
    snprintf(err, errlen, "a %s source keeps no full-resolution masks", s->ops->kind);
    return -2;
  }
  const int rc = cg_source_load_whole(s, index, oh, ow, rgb, mask, err, errlen);
  *mh = *oh;
  *mw = *ow;
  return rc;
}

int cg_source_load_win(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                       uint8_t *mask, uint8_t *tmp, char *err, size_t errlen) {
  CG_ASSERT(rgb || mask);
  if (s->ops->load_win) return s->ops->load_win(s, index, win, rgb, mask, err, errlen);
  const size_t px = (size_t)s->h * s->w; /* the mask alone, or the image alone */
  uint8_t *own = rgb && mask ? NULL : cg_malloc(rgb ? px : 3 * px, "sample");
  if (!rgb) rgb = own;
  if (!mask) mask = own;
  int rc = cg_source_load(s, index, rgb, mask, err, errlen);
  if (!rc) cg_crop_apply(win, s->h, s->w, rgb, mask, tmp);
  free(own);
  return rc;
}

static const cg_source_ops_t synth_ops = {"synthetic", synth_load, synth_destroy, NULL, NULL,
                                          NULL};

cg_source_t *cg_source_synthetic(uint64_t seed, int64_t offset, int64_t count, int h, int w) {
  return cg_source_synthetic_k(seed, offset, count, h, w, 1, -1);
}

cg_source_t *cg_source_synthetic_k(uint64_t seed, int64_t offset, int64_t count, int h, int w,
                                   int nclass, int ignore) {
  synth_source_t *s = cg_calloc(1, sizeof *s, "synthetic source");
  s->nclass = nclass;
  s->ignore = ignore;
  s->base.ops = &synth_ops;
  s->base.count = count;
  s->base.h = h;
  s->base.w = w;
  s->seed = seed;
  s->offset = offset;
  return &s->base;
}

void cg_source_destroy(cg_source_t *s) {
  if (s) s->ops->destroy(s);
}
