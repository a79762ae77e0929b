/* source_check.c: one pass over a source that loads every sample of a share once (--check-data;
 * see source.h). A few threads take indices in turn; a failure is recorded with its index and
 * reported at once, so a large dataset shows its bad files as they are found. */
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "source.h"

typedef struct {
  cg_source_t *src;
  int64_t next, step;     /* guarded by mu */
  pthread_mutex_t mu;
  int64_t *bad, nbad, cap; /* guarded by mu */
  void (*report)(void *ctx, int64_t index, const char *why);
  void *ctx;
  int64_t *hist;           /* the mask values' pixel counts, or NULL; guarded by mu */
  int whole;               /* load each sample whole (cg_source_load_whole) */
} check_t;

/* Sample i as the check loads it: its fitted square into *rgb, *mask (px pixels), or whole,
 * the buffers grown to its size (*cap pixels). Its pixel count, or -1 with err (a bad sample). */
static int64_t load_one(const check_t *k, int64_t i, uint8_t **rgb, uint8_t **mask, size_t *cap,
                        char *err, size_t errlen) {
  if (!k->whole) return cg_source_load(k->src, i, *rgb, *mask, err, errlen) ? -1 : (int64_t)*cap;
  int oh = 0, ow = 0;
  if (cg_source_load_whole(k->src, i, &oh, &ow, NULL, NULL, err, errlen)) return -1;
  const size_t px = (size_t)oh * ow;
  if (px > *cap) {
    free(*rgb);
    free(*mask);
    *rgb = cg_malloc(px * 3, "check rgb");
    *mask = cg_malloc(px, "check mask");
    *cap = px;
  }
  return cg_source_load_whole(k->src, i, &oh, &ow, *rgb, *mask, err, errlen) ? -1 : (int64_t)px;
}

static void *check_main(void *arg) {
  check_t *k = arg;
  size_t cap = (size_t)k->src->h * k->src->w;
  uint8_t *rgb = cg_malloc(cap * 3, "check rgb"), *mask = cg_malloc(cap, "check mask");
  int64_t hist[256] = {0};
  char err[1024];
  for (;;) {
    pthread_mutex_lock(&k->mu);
    const int64_t i = k->next;
    k->next += k->step;
    pthread_mutex_unlock(&k->mu);
    if (i >= k->src->count) break;
    const int64_t px = load_one(k, i, &rgb, &mask, &cap, err, sizeof err);
    if (px >= 0) {
      if (k->hist)
        for (int64_t j = 0; j < px; j++) hist[mask[j]]++;
      continue;
    }
    pthread_mutex_lock(&k->mu);
    if (k->nbad == k->cap) {
      k->cap = k->cap ? 2 * k->cap : 16;
      int64_t *nb = realloc(k->bad, sizeof(int64_t) * (size_t)k->cap);
      if (!nb) CG_FATAL("out of memory listing bad samples");
      k->bad = nb;
    }
    k->bad[k->nbad++] = i;
    if (k->report) k->report(k->ctx, i, err);
    pthread_mutex_unlock(&k->mu);
  }
  if (k->hist) {
    pthread_mutex_lock(&k->mu);
    for (int v = 0; v < 256; v++) k->hist[v] += hist[v];
    pthread_mutex_unlock(&k->mu);
  }
  free(rgb);
  free(mask);
  return NULL;
}

static int cmp_i64(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

int64_t cg_source_check(cg_source_t *src, int64_t first, int64_t step, int threads,
                        void (*report)(void *ctx, int64_t index, const char *why), void *ctx,
                        int64_t **bad, int64_t *hist, int whole) {
  CG_ASSERT(first >= 0 && step >= 1);
  check_t k = {src, first, step, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, report, ctx, hist, whole};
  if (threads < 1) threads = 1;
  pthread_t *th = cg_calloc((size_t)threads, sizeof(pthread_t), "check threads");
  int started = 0;
  for (; started < threads - 1; started++) /* the calling thread is the last one */
    if (pthread_create(&th[started], NULL, check_main, &k)) break;
  check_main(&k);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  free(th);
  pthread_mutex_destroy(&k.mu);
  if (k.nbad) qsort(k.bad, (size_t)k.nbad, sizeof *k.bad, cmp_i64);
  if (bad) *bad = k.bad;
  else free(k.bad);
  return k.nbad;
}
