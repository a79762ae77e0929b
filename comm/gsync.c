/* gsync.c: bucketed MPI gradient all-reduce (see gsync.h).
 *
 * The deterministic variant is a two-phase state machine per bucket: the reduce-scatter
 * (MPI_Ialltoallv of every rank's segments into a scratch of R copies of this rank's segment),
 * then, once that completes, the rank-ordered sum and an in-place MPI_Iallgatherv. progress()
 * and wait() advance the phases.
 *
 * MPI requires every rank to start the collectives of a communicator in the same order. The
 * reduce-scatters go on `comm` in bucket order (backward produces buckets in the same order on
 * every rank); the all-gathers go on their own communicator `comm_gather` and are also started
 * strictly in bucket order, whenever each rank happens to notice the completions. */
#include "gsync.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum { PH_IDLE = 0, PH_REDUCE = 1, PH_GATHER = 2, PH_DONE = 3 };

typedef struct {
  int phase;
  MPI_Request req;
  float *grad;                         /* base of the flat gradient buffer */
  int *counts, *displs;                /* per rank: segment of the bucket (elements) */
  int *rcounts, *rdispls;              /* alltoall receive layout: R copies of own segment */
  float *scratch;                      /* R x own segment */
} bucket_state_t;

struct cg_gsync {
  MPI_Comm comm, comm_gather;
  int rank, size, deterministic;
  int n;                               /* buckets */
  size_t *off, *len;                   /* per bucket: its range of the buffer (elements) */
  bucket_state_t *st;                  /* per bucket */
  double bytes;
};

cg_gsync_t *cg_gsync_create(MPI_Comm comm, int nbuckets, const size_t *off, const size_t *len,
                            int deterministic) {
  CG_ASSERT(nbuckets >= 0);
  cg_gsync_t *g = cg_calloc(1, sizeof *g, "gsync");
  g->comm = comm;
  g->n = nbuckets;
  g->off = cg_calloc((size_t)nbuckets, sizeof(size_t), "gsync offsets");
  g->len = cg_calloc((size_t)nbuckets, sizeof(size_t), "gsync lengths");
  g->st = cg_calloc((size_t)nbuckets, sizeof(bucket_state_t), "gsync buckets");
  if (nbuckets > 0) {
    memcpy(g->off, off, (size_t)nbuckets * sizeof(size_t));
    memcpy(g->len, len, (size_t)nbuckets * sizeof(size_t));
  }
  g->deterministic = deterministic;
  CG_CHECK_MPI(MPI_Comm_rank(comm, &g->rank));
  CG_CHECK_MPI(MPI_Comm_size(comm, &g->size));
  g->comm_gather = MPI_COMM_NULL;
  if (deterministic && g->size > 1) CG_CHECK_MPI(MPI_Comm_dup(comm, &g->comm_gather));
  for (int b = 0; b < g->n; b++) {
    bucket_state_t *s = &g->st[b];
    s->req = MPI_REQUEST_NULL;
    if (!deterministic || g->size == 1) continue;
    int R = g->size;
    CG_ASSERT(g->len[b] <= (size_t)0x7fffffff);
    int blen = (int)g->len[b];
    s->counts = cg_calloc((size_t)R, sizeof(int), "gsync counts");
    s->displs = cg_calloc((size_t)R, sizeof(int), "gsync displs");
    s->rcounts = cg_calloc((size_t)R, sizeof(int), "gsync rcounts");
    s->rdispls = cg_calloc((size_t)R, sizeof(int), "gsync rdispls");
    for (int r = 0; r < R; r++) {
      s->displs[r] = (int)((int64_t)blen * r / R);
      s->counts[r] = (int)((int64_t)blen * (r + 1) / R) - s->displs[r];
    }
    int own = s->counts[g->rank];
    for (int r = 0; r < R; r++) {
      s->rcounts[r] = own;
      s->rdispls[r] = r * own;
    }
    s->scratch = cg_malloc(sizeof(float) * (size_t)(own > 0 ? own : 1) * R, "gsync scratch");
  }
  return g;
}

void cg_gsync_destroy(cg_gsync_t *g) {
  if (!g) return;
  for (int b = 0; b < g->n; b++) {
    bucket_state_t *s = &g->st[b];
    free(s->counts);
    free(s->displs);
    free(s->rcounts);
    free(s->rdispls);
    free(s->scratch);
  }
  if (g->comm_gather != MPI_COMM_NULL) MPI_Comm_free(&g->comm_gather);
  free(g->st);
  free(g->off);
  free(g->len);
  free(g);
}

void cg_gsync_post(cg_gsync_t *g, int b, float *grad) {
  CG_ASSERT(b >= 0 && b < g->n);
  bucket_state_t *s = &g->st[b];
  CG_ASSERT(s->phase == PH_IDLE);
  s->grad = grad;
  if (g->size == 1) {
    s->phase = PH_DONE;
    return;
  }
  float *base = grad + g->off[b];
  int len = (int)g->len[b];
  g->bytes += 4.0 * len;
  if (!g->deterministic) {
    CG_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, base, len, MPI_FLOAT, MPI_SUM, g->comm, &s->req));
    s->phase = PH_GATHER; /* the last phase: completion means done */
    return;
  }
  CG_CHECK_MPI(MPI_Ialltoallv(base, s->counts, s->displs, MPI_FLOAT, s->scratch, s->rcounts,
                              s->rdispls, MPI_FLOAT, g->comm, &s->req));
  s->phase = PH_REDUCE;
}

/* Called when a bucket's current request has completed. */
static void advance(cg_gsync_t *g, int b) {
  bucket_state_t *s = &g->st[b];
  if (s->phase == PH_GATHER) {
    s->phase = PH_DONE;
    return;
  }
  CG_ASSERT(s->phase == PH_REDUCE);
  int own = s->counts[g->rank], R = g->size;
  float *dst = s->grad + g->off[b] + s->displs[g->rank];
  /* Rank order 0..R-1 for every element, whatever the bucket boundaries. */
  for (int i = 0; i < own; i++) {
    float acc = s->scratch[i];
    for (int r = 1; r < R; r++) acc += s->scratch[(size_t)r * own + i];
    dst[i] = acc;
  }
  CG_CHECK_MPI(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->grad + g->off[b],
                               s->counts, s->displs, MPI_FLOAT, g->comm_gather, &s->req));
  s->phase = PH_GATHER;
}

void cg_gsync_progress(cg_gsync_t *g) {
  if (g->size == 1) return;
  for (int b = 0; b < g->n; b++) {
    bucket_state_t *s = &g->st[b];
    if (s->phase != PH_REDUCE && s->phase != PH_GATHER) continue;
    int done = 0;
    CG_CHECK_MPI(MPI_Test(&s->req, &done, MPI_STATUS_IGNORE));
    if (done) advance(g, b);
    /* A later bucket may not start its all-gather before this one has. */
    else if (s->phase == PH_REDUCE) break;
  }
}

double cg_gsync_wait(cg_gsync_t *g) {
  double t0 = cg_now();
  for (int b = 0; b < g->n; b++) {
    bucket_state_t *s = &g->st[b];
    while (s->phase == PH_REDUCE || s->phase == PH_GATHER) {
      CG_CHECK_MPI(MPI_Wait(&s->req, MPI_STATUS_IGNORE));
      advance(g, b);
    }
    CG_ASSERT(s->phase == PH_DONE || s->phase == PH_IDLE);
    s->phase = PH_IDLE;
  }
  return cg_now() - t0;
}

double cg_gsync_take_bytes(cg_gsync_t *g) {
  double b = g->bytes;
  g->bytes = 0;
  return b;
}

double cg_gsync_staged(cg_gsync_t *g, float *grad, void (*landed)(void *ctx, int b), void *ctx,
                       double *t_first) {
  if (t_first) *t_first = -1;
  for (int b = 0; b < g->n; b++) {
    landed(ctx, b);
    if (b == 0 && t_first) *t_first = cg_now();
    cg_gsync_post(g, b, grad);
    cg_gsync_progress(g);
  }
  return cg_gsync_wait(g);
}
