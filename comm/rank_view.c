/* rank_view.c: --report-ranks parsing and its auto rule (see rank_view.h). */
#include "rank_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cg_rank_view_parse(const char *s, cg_rank_view_t *v, char *err, size_t errlen) {
  v->mode = CG_VIEW_AUTO;
  v->top = CG_VIEW_TOP_DEFAULT;
  if (!strcmp(s, "auto")) return 0;
  if (!strcmp(s, "all")) v->mode = CG_VIEW_ALL;
  else if (!strcmp(s, "nodes")) v->mode = CG_VIEW_NODES;
  else if (!strcmp(s, "top")) v->mode = CG_VIEW_TOP;
  else if (!strncmp(s, "top:", 4)) {
    char *end = NULL;
    long n = strtol(s + 4, &end, 10);
    if (end == s + 4 || *end || n < 1 || n > 1000000) {
      snprintf(err, errlen, "'%s': N in top:N must be a whole number from 1 to 1000000", s);
      return -1;
    }
    v->mode = CG_VIEW_TOP;
    v->top = (int)n;
  } else {
    snprintf(err, errlen, "'%s' is not one of auto, all, nodes, top, top:N", s);
    return -1;
  }
  return 0;
}

cg_rank_view_t cg_rank_view_resolve(cg_rank_view_t v, int size, int nnodes) {
  if (v.mode != CG_VIEW_AUTO) return v;
  v.mode = size <= CG_VIEW_ALL_MAX ? CG_VIEW_ALL : nnodes > 1 ? CG_VIEW_NODES : CG_VIEW_TOP;
  return v;
}

const char *cg_rank_view_name(cg_rank_view_t v, char *buf, size_t len) {
  static const char *names[] = {"auto", "all", "nodes", "top"};
  if (v.mode == CG_VIEW_TOP) snprintf(buf, len, "top:%d", v.top);
  else snprintf(buf, len, "%s", names[v.mode]);
  return buf;
}
