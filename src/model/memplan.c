/* memplan.c: greedy offset planning for buffers with live intervals (see memplan.h).
 *
 * Each order places buffers one by one; a buffer goes to the lowest aligned offset where it
 * overlaps none of the already placed buffers it is live together with (a scan over those
 * sorted by offset). Largest-first is the classic "greedy by size" (it packs the big
 * long-lived buffers first); the other orders win on some graphs. Each order is placed twice:
 * at the lowest offset that fits (first fit), and in the gap that fits most tightly (best fit,
 * which keeps large holes for large buffers). When neither reaches the live maximum (a lower
 * bound), a fixed number of randomly perturbed size orders follow, from a fixed seed, so the
 * answer is still a pure function of the input. All of it costs O(orders x n^2 log n): a few
 * milliseconds for the hundred-odd buffers of a step. */
#include "memplan.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint64_t k1; /* sorted descending */
  int64_t k2;  /* then ascending */
  int idx;     /* then ascending: ties are broken by the input order */
} order_key_t;

typedef struct {
  size_t lo, hi;
} span_t;

static int cmp_key(const void *a, const void *b) {
  const order_key_t *x = a, *y = b;
  if (x->k1 != y->k1) return x->k1 > y->k1 ? -1 : 1;
  if (x->k2 != y->k2) return x->k2 < y->k2 ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_span(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
  return (x->hi > y->hi) - (x->hi < y->hi);
}

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

static int live_together(const int *first, const int *last, int i, int j) {
  return first[i] <= last[j] && first[j] <= last[i];
}

enum { ORDER_SIZE, ORDER_START, ORDER_AREA, ORDER_END, NORDERS };
enum { kRandomOrders = 200 };

/* One greedy pass in the given order; offsets to off, returns the arena size. best_fit: the
 * tightest gap between the conflicting buffers that holds the buffer (the top as the last
 * resort) instead of the lowest. */
static size_t place(int n, const size_t *size, const int *first, const int *last, size_t align,
                    const order_key_t *order, int best_fit, int *placed, span_t *spans,
                    size_t *off) {
  size_t arena = 0;
  for (int i = 0; i < n; i++) placed[i] = 0;
  for (int k = 0; k < n; k++) {
    const int i = order[k].idx;
    off[i] = 0;
    placed[i] = 1;
    if (size[i] == 0) continue;
    int ns = 0;
    for (int j = 0; j < n; j++)
      if (placed[j] && j != i && size[j] && live_together(first, last, i, j))
        spans[ns++] = (span_t){off[j], off[j] + size[j]};
    qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
    size_t cand = 0, pick = SIZE_MAX, waste = SIZE_MAX;
    for (int s = 0; s <= ns; s++) {
      const size_t lo = s < ns ? spans[s].lo : SIZE_MAX;
      if (cand + size[i] <= lo) { /* the gap [cand, lo) holds it */
        if (!best_fit || s == ns) {
          if (pick == SIZE_MAX) pick = cand;
          break;
        }
        if (lo - cand - size[i] < waste) {
          waste = lo - cand - size[i];
          pick = cand;
        }
      }
      if (s < ns && spans[s].hi > cand) cand = align_up(spans[s].hi, align);
    }
    off[i] = pick;
    if (pick + size[i] > arena) arena = pick + size[i];
  }
  return align_up(arena, align);
}

int cg_memplan_solve(int n, const size_t *size, const int *first, const int *last, size_t align,
                     size_t *offset, size_t *arena) {
  if (align == 0) align = 256;
  if (n < 0 || (align & (align - 1)) || !arena ||
      (n > 0 && (!size || !first || !last || !offset))) {
    errno = EINVAL;
    return -1;
  }
  for (int i = 0; i < n; i++)
    if (first[i] > last[i] || size[i] > (SIZE_MAX >> 2) / (size_t)(n + 1)) {
      /* the bound keeps every sum of offsets and aligned sizes below inside size_t */
      errno = EINVAL;
      return -1;
    }
  *arena = 0;
  if (n == 0) return 0;
  order_key_t *order = malloc(sizeof *order * (size_t)n);
  int *placed = malloc(sizeof *placed * (size_t)n);
  span_t *spans = malloc(sizeof *spans * (size_t)n);
  size_t *off = malloc(sizeof *off * (size_t)n);
  if (!order || !placed || !spans || !off) {
    free(order);
    free(placed);
    free(spans);
    free(off);
    errno = ENOMEM;
    return -1;
  }
  size_t best = SIZE_MAX;
  const size_t bound = align_up(cg_memplan_live_max(n, size, first, last), align);
  uint64_t rng = 0x9e3779b97f4a7c15ull; /* fixed: the plan is a function of the input */
  for (int o = 0; o < NORDERS + kRandomOrders && best > bound; o++) {
    for (int i = 0; i < n; i++) {
      const uint64_t len = (uint64_t)((int64_t)last[i] - first[i] + 1), sz = size[i];
      order[i].idx = i;
      switch (o < NORDERS ? o : -1) {
        case ORDER_SIZE: /* largest first, then earliest start */
          order[i].k1 = sz;
          order[i].k2 = first[i];
          break;
        case ORDER_START: /* earliest start first, then largest */
          order[i].k1 = (uint64_t)((int64_t)INT32_MAX - first[i]);
          order[i].k2 = -(int64_t)sz;
          break;
        case ORDER_AREA: /* largest size x lifetime first, then earliest start */
          order[i].k1 = sz > UINT64_MAX / len ? UINT64_MAX : sz * len;
          order[i].k2 = first[i];
          break;
        case ORDER_END: /* longest-lived first (latest end), then largest */
          order[i].k1 = (uint64_t)last[i] * 4096u + (uint64_t)(len > 4095 ? 4095 : len);
          order[i].k2 = -(int64_t)(sz >> 8);
          break;
        default: { /* size order, each size scaled by a random factor in [0.5, 1.5) */
          rng = rng * 6364136223846793005ull + 1442695040888963407ull;
          const double u = (double)(rng >> 11) / 9007199254740992.0;
          order[i].k1 = (uint64_t)((double)sz * (0.5 + u));
          order[i].k2 = first[i];
        } break;
      }
    }
    qsort(order, (size_t)n, sizeof *order, cmp_key);
    for (int fit = 0; fit < 2; fit++) {
      const size_t a = place(n, size, first, last, align, order, fit, placed, spans, off);
      if (a < best) {
        best = a;
        memcpy(offset, off, sizeof *off * (size_t)n);
      }
    }
  }
  *arena = best;
  free(order);
  free(placed);
  free(spans);
  free(off);
  return 0;
}

size_t cg_memplan_live_max(int n, const size_t *size, const int *first, const int *last) {
  size_t best = 0;
  /* the live sum only grows at a start: evaluate it at every start */
  for (int i = 0; i < n; i++) {
    size_t s = 0;
    for (int j = 0; j < n; j++)
      if (first[j] <= first[i] && first[i] <= last[j]) s += size[j];
    if (s > best) best = s;
  }
  return best;
}

int cg_memplan_verify(int n, const size_t *size, const int *first, const int *last, size_t align,
                      const size_t *offset, size_t arena, char *why, size_t whylen) {
  if (align == 0) align = 256;
  for (int i = 0; i < n; i++) {
    if (offset[i] % align) {
      if (why)
        snprintf(why, whylen, "buffer %d: offset %zu not aligned to %zu", i, offset[i], align);
      return -1;
    }
    if (size[i] && offset[i] + size[i] > arena) {
      if (why)
        snprintf(why, whylen, "buffer %d: [%zu, %zu) outside the arena of %zu bytes", i, offset[i],
                 offset[i] + size[i], arena);
      return -1;
    }
    for (int j = i + 1; j < n; j++) {
      if (!size[i] || !size[j] || !live_together(first, last, i, j)) continue;
      if (offset[i] < offset[j] + size[j] && offset[j] < offset[i] + size[i]) {
        if (why)
          snprintf(why, whylen,
                   "buffers %d [%zu, %zu) live %d..%d and %d [%zu, %zu) live %d..%d overlap", i,
                   offset[i], offset[i] + size[i], first[i], last[i], j, offset[j],
                   offset[j] + size[j], first[j], last[j]);
        return -1;
      }
    }
  }
  return 0;
}
