/* memplan.h: static offset planning for buffers with known lifetimes in one arena.
 *
 * A step's buffers are each live over an interval [first, last] of schedule positions
 * (inclusive). Two buffers whose intervals intersect must not overlap in memory; two whose
 * intervals are disjoint may share bytes. The planner gives every buffer an offset (a multiple
 * of the alignment) and the arena size, with a greedy heuristic: buffers are placed one at a
 * time at the lowest aligned gap left free by the already placed buffers they conflict with;
 * several placement orders are tried (largest first, by start, by size x lifetime) and the
 * smallest arena wins. Deterministic: the same input gives the same offsets.
 *
 * Return values: 0, or -1 with errno (EINVAL: bad argument, ENOMEM). No state is kept; the
 * caller owns every array. */
#ifndef CG_MEMPLAN_H
#define CG_MEMPLAN_H

#include <stddef.h>

/* Plans n buffers: size[i] bytes (0 allowed: offset 0, conflicts with nothing), live over
 * [first[i], last[i]] (first <= last). align: a power of two (0 means 256). Writes offset[i]
 * and *arena (the bytes the arena needs, a multiple of align; 0 when every size is 0). */
int cg_memplan_solve(int n, const size_t *size, const int *first, const int *last, size_t align,
                     size_t *offset, size_t *arena);

/* The largest sum of the sizes of buffers live at one position: a lower bound of any arena. */
size_t cg_memplan_live_max(int n, const size_t *size, const int *first, const int *last);

/* Checks a plan: offsets aligned, and no two buffers with intersecting intervals and nonzero
 * sizes overlap, and every buffer lies inside arena. 0 if valid; else -1 and, when why is not
 * NULL, a description of the first violation. */
int cg_memplan_verify(int n, const size_t *size, const int *first, const int *last, size_t align,
                      const size_t *offset, size_t arena, char *why, size_t whylen);

#endif
