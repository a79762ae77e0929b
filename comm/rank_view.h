/* rank_view.h: which ranks a human-readable report shows (--report-ranks).
 *
 * A table with one row per rank is unreadable at 1024 ranks, so the balance table and the
 * start-up binding report show a view: all ranks, one row per node, or the N slowest ranks.
 * Machine-readable outputs (--stats-out, --prom-out) and `info --topology` keep every rank.
 * auto = all up to CG_VIEW_ALL_MAX ranks; above it nodes on several nodes, else top. */
#ifndef CG_RANK_VIEW_H
#define CG_RANK_VIEW_H

#include <stddef.h>

#define CG_VIEW_ALL_MAX 16
#define CG_VIEW_TOP_DEFAULT 8

typedef enum { CG_VIEW_AUTO, CG_VIEW_ALL, CG_VIEW_NODES, CG_VIEW_TOP } cg_view_mode_t;

typedef struct {
  cg_view_mode_t mode;
  int top; /* CG_VIEW_TOP: rows shown (>= 1) */
} cg_rank_view_t;

/* "auto", "all", "nodes", "top" or "top:N" (1 <= N <= 1e6) into *v. Returns 0, or -1 with a
 * message (without the flag's name) in err. */
int cg_rank_view_parse(const char *s, cg_rank_view_t *v, char *err, size_t errlen);

/* auto resolved for a job of size ranks on nnodes nodes; other modes are returned as given. */
cg_rank_view_t cg_rank_view_resolve(cg_rank_view_t v, int size, int nnodes);

/* "all", "nodes", "top:N" or "auto" into buf (for headings). */
const char *cg_rank_view_name(cg_rank_view_t v, char *buf, size_t len);

#endif
