/* comm.c: MPI bootstrap (see comm.h). */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void cg_comm_init(cg_comm_t *c, int *argc, char ***argv) {
  memset(c, 0, sizeof *c);
  int provided = 0;
  CG_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  /* Errors come back as codes so our checks can name the call; fatal ones still abort. */
  CG_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  cg_comm_init_from(c, MPI_COMM_WORLD);
  cg_log_set_identity(c->rank, c->host);
}

void cg_comm_init_from(cg_comm_t *c, MPI_Comm comm) {
  memset(c, 0, sizeof *c);
  CG_CHECK_MPI(MPI_Comm_dup(comm, &c->world));
  CG_CHECK_MPI(MPI_Comm_rank(c->world, &c->rank));
  CG_CHECK_MPI(MPI_Comm_size(c->world, &c->size));
  if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "unknown");
  c->host[sizeof c->host - 1] = 0;
  CG_CHECK_MPI(MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                   &c->local));
  CG_CHECK_MPI(MPI_Comm_rank(c->local, &c->local_rank));
  CG_CHECK_MPI(MPI_Comm_size(c->local, &c->local_size));
  /* Node index: exclusive scan of the node-leader flags, broadcast on the node. */
  int leader = c->local_rank == 0, below = 0;
  CG_CHECK_MPI(MPI_Allreduce(&leader, &c->nnodes, 1, MPI_INT, MPI_SUM, c->world));
  CG_CHECK_MPI(MPI_Exscan(&leader, &below, 1, MPI_INT, MPI_SUM, c->world));
  if (c->rank == 0) below = 0; /* MPI_Exscan leaves rank 0's result undefined */
  c->node = below;
  CG_CHECK_MPI(MPI_Bcast(&c->node, 1, MPI_INT, 0, c->local));
}

void cg_comm_free(cg_comm_t *c) {
  if (c->local != MPI_COMM_NULL && c->local) MPI_Comm_free(&c->local);
  if (c->world != MPI_COMM_NULL && c->world) MPI_Comm_free(&c->world);
}

void cg_comm_finalize(cg_comm_t *c) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  cg_comm_free(c);
  MPI_Finalize();
}

int cg_comm_any(const cg_comm_t *c, int flag) {
  int in = flag ? 1 : 0, out = 0;
  CG_CHECK_MPI(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, c->world));
  return out;
}

/* "0-2, 5, 7-9" for the ranks r with mark[r], at most len bytes. */
static void rank_list(const char *mark, int n, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int r = 0; r < n && k + 24 < len; r++) {
    if (!mark[r]) continue;
    int e = r;
    while (e + 1 < n && mark[e + 1]) e++;
    k += (size_t)snprintf(buf + k, len - k, "%s%d", k ? ", " : "", r);
    if (e > r) k += (size_t)snprintf(buf + k, len - k, "%s%d", e > r + 1 ? "-" : ", ", e);
    r = e;
  }
}

int cg_comm_report_errors(const cg_comm_t *c, const char *msg) {
  enum { kLen = 480 };
  if (!cg_comm_any(c, msg != NULL)) return 0;
  char mine[kLen];
  memset(mine, 0, sizeof mine);
  if (msg) snprintf(mine, sizeof mine, "%s", msg);
  char *all = c->rank == 0 ? cg_malloc((size_t)kLen * (size_t)c->size, "error messages") : NULL;
  CG_CHECK_MPI(MPI_Gather(mine, kLen, MPI_CHAR, all, kLen, MPI_CHAR, 0, c->world));
  if (c->rank == 0) {
    char *mark = cg_malloc((size_t)c->size, "error ranks");
    char *done = cg_calloc((size_t)c->size, 1, "error ranks");
    for (int r = 0; r < c->size; r++) {
      const char *m = all + (size_t)r * kLen;
      if (done[r] || !m[0]) continue;
      int cnt = 0;
      for (int q = 0; q < c->size; q++) {
        mark[q] = !done[q] && !strncmp(m, all + (size_t)q * kLen, kLen);
        if (mark[q]) done[q] = 1, cnt++;
      }
      char who[256];
      if (cnt == c->size && c->size > 1) snprintf(who, sizeof who, "all %d ranks", c->size);
      else {
        char list[240];
        rank_list(mark, c->size, list, sizeof list);
        snprintf(who, sizeof who, "rank%s %s", cnt > 1 ? "s" : "", list);
      }
      if (c->size == 1) fprintf(stderr, "cogpu-dist: error: %s\n", m); /* no one else to name */
      else fprintf(stderr, "cogpu-dist: error: %s (%s)\n", m, who);
    }
    fflush(stderr);
    free(mark);
    free(done);
    free(all);
  }
  return 1;
}

void cg_comm_sum_i64(const cg_comm_t *c, int64_t *v, int n) {
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, c->world));
}

void cg_comm_sum_f64(const cg_comm_t *c, double *v, int n) {
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, c->world));
}

void cg_comm_bcast_floats(const cg_comm_t *c, float *p, size_t n) {
  const size_t chunk = (size_t)1 << 28;
  for (size_t off = 0; off < n; off += chunk) {
    const int k = (int)(n - off < chunk ? n - off : chunk);
    CG_CHECK_MPI(MPI_Bcast(p + off, k, MPI_FLOAT, 0, c->world));
  }
}
