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
 * strictly in bucket order, whenever each rank happens to notice the completions.
 *
 * bf16 (cg_gsync_set_dtype): every bucket works on a bf16 buffer (the gsync's own, filled by
 * post, or the caller's for cg_gsync_staged_bf16); the state machine is the same with the
 * 2-byte type t16. Default algorithm: MPI_Iallreduce with op16, a commutative user operator
 * (bf16 pairs summed in fp32, rounded to nearest-even). Deterministic: the rank-ordered sum of
 * the R bf16 copies is kept in fp32 and rounded once, which is both more accurate than a chain
 * of bf16 additions and independent of the bucket size. */
#include "gsync.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "log.h"

enum { PH_IDLE = 0, PH_REDUCE = 1, PH_GATHER = 2, PH_DONE = 3 };

typedef struct {
  int phase;
  MPI_Request req;
  float *grad;                         /* base of the flat fp32 gradients; NULL: bf16 only */
  uint16_t *wire;                      /* bf16: base of the flat bf16 buffer reduced */
  int *counts, *displs;                /* per rank: segment of the bucket (elements) */
  int *rcounts, *rdispls;              /* alltoall receive layout: R copies of own segment */
  float *scratch;                      /* R x own segment (bf16: as uint16_t) */
} bucket_state_t;

struct cg_gsync {
  MPI_Comm comm, comm_gather;
  int rank, size, deterministic;
  int n;                               /* buckets */
  size_t *off, *len;                   /* per bucket: its range of the buffer (elements) */
  bucket_state_t *st;                  /* per bucket */
  double bytes;
  cg_gsync_dtype_t dtype;
  uint16_t *wire;                      /* bf16: own bf16 copy of the span of the buckets */
  MPI_Datatype t16;                    /* bf16: 2 contiguous bytes (MPI has no bf16) */
  MPI_Op op16;                         /* bf16: the sum (bf16_op) */
};

const char *cg_gsync_dtype_name(cg_gsync_dtype_t dt) {
  return dt == CG_GSYNC_BF16 ? "bf16" : "fp32";
}

/* MPI_User_function for bf16 sums on t16. */
static void bf16_op(void *in, void *inout, int *len, MPI_Datatype *dt) {
  (void)dt;
  cg_bf16_sum(in, inout, (size_t)*len);
}

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
  g->t16 = MPI_DATATYPE_NULL;
  g->op16 = MPI_OP_NULL;
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
  if (g->op16 != MPI_OP_NULL) MPI_Op_free(&g->op16);
  if (g->t16 != MPI_DATATYPE_NULL) MPI_Type_free(&g->t16);
  free(g->wire);
  free(g->st);
  free(g->off);
  free(g->len);
  free(g);
}

void cg_gsync_set_dtype(cg_gsync_t *g, cg_gsync_dtype_t dt) {
  CG_ASSERT(dt == CG_GSYNC_FP32 || dt == CG_GSYNC_BF16);
  g->dtype = dt;
  if (dt != CG_GSYNC_BF16 || g->t16 != MPI_DATATYPE_NULL) return;
  size_t span = 1;
  for (int b = 0; b < g->n; b++)
    if (g->off[b] + g->len[b] > span) span = g->off[b] + g->len[b];
  g->wire = cg_malloc(span * sizeof(uint16_t), "gsync bf16 buffer");
  CG_CHECK_MPI(MPI_Type_contiguous(2, MPI_BYTE, &g->t16));
  CG_CHECK_MPI(MPI_Type_commit(&g->t16));
  CG_CHECK_MPI(MPI_Op_create(bf16_op, 1, &g->op16));
}

cg_gsync_dtype_t cg_gsync_dtype(const cg_gsync_t *g) { return g->dtype; }

/* Bucket b's elements as reduced: in s->grad (fp32) or s->wire (bf16), with their type. */
static void *bucket_base(const cg_gsync_t *g, int b, MPI_Datatype *t) {
  const bucket_state_t *s = &g->st[b];
  const int bf = g->dtype == CG_GSYNC_BF16;
  *t = bf ? g->t16 : MPI_FLOAT;
  return bf ? (void *)(s->wire + g->off[b]) : (void *)(s->grad + g->off[b]);
}

/* Starts bucket b's collective. */
static void start(cg_gsync_t *g, int b) {
  bucket_state_t *s = &g->st[b];
  const int len = (int)g->len[b];
  MPI_Datatype t;
  void *base = bucket_base(g, b, &t);
  int tsize = 0;
  CG_CHECK_MPI(MPI_Type_size(t, &tsize));
  g->bytes += (double)tsize * len;
  if (!g->deterministic) {
    CG_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, base, len, t,
                                g->dtype == CG_GSYNC_BF16 ? g->op16 : MPI_SUM, g->comm, &s->req));
    s->phase = PH_GATHER; /* the last phase: completion means done */
    return;
  }
  CG_CHECK_MPI(MPI_Ialltoallv(base, s->counts, s->displs, t, s->scratch, s->rcounts, s->rdispls,
                              t, g->comm, &s->req));
  s->phase = PH_REDUCE;
}

/* Posts bucket b on the fp32 gradients grad (NULL: bf16 only) and the bf16 buffer wire. */
static void post_on(cg_gsync_t *g, int b, float *grad, uint16_t *wire) {
  bucket_state_t *s = &g->st[b];
  CG_ASSERT(s->phase == PH_IDLE);
  s->grad = grad;
  s->wire = wire;
  if (g->size == 1) s->phase = PH_DONE;
  else start(g, b);
}

void cg_gsync_post(cg_gsync_t *g, int b, float *grad) {
  CG_ASSERT(b >= 0 && b < g->n);
  if (g->dtype == CG_GSYNC_BF16 && g->size > 1) {
    const float *src = grad + g->off[b];
    uint16_t *dst = g->wire + g->off[b];
    for (size_t i = 0; i < g->len[b]; i++) dst[i] = cg_bf16_from_f32(src[i]);
  }
  post_on(g, b, grad, g->wire);
}

/* Deterministic: this rank's segment of bucket b, summed over the R received copies in rank
 * order 0..R-1 for every element, whatever the bucket boundaries; bf16 copies are summed in
 * fp32 and rounded once. */
static void sum_own(cg_gsync_t *g, int b) {
  bucket_state_t *s = &g->st[b];
  const int own = s->counts[g->rank], R = g->size;
  const size_t at = g->off[b] + (size_t)s->displs[g->rank];
  if (g->dtype == CG_GSYNC_BF16) {
    const uint16_t *sc = (const uint16_t *)s->scratch;
    for (int i = 0; i < own; i++) {
      float acc = cg_bf16_to_f32(sc[i]);
      for (int r = 1; r < R; r++) acc += cg_bf16_to_f32(sc[(size_t)r * own + i]);
      s->wire[at + (size_t)i] = cg_bf16_from_f32(acc);
    }
    return;
  }
  float *dst = s->grad + at;
  for (int i = 0; i < own; i++) {
    float acc = s->scratch[i];
    for (int r = 1; r < R; r++) acc += s->scratch[(size_t)r * own + i];
    dst[i] = acc;
  }
}

/* bf16 with fp32 gradients: the reduced bucket widened back into them (exact). */
static void widen(cg_gsync_t *g, int b) {
  bucket_state_t *s = &g->st[b];
  if (g->dtype != CG_GSYNC_BF16 || !s->grad || g->size == 1) return;
  const uint16_t *src = s->wire + g->off[b];
  float *dst = s->grad + g->off[b];
  for (size_t i = 0; i < g->len[b]; i++) dst[i] = cg_bf16_to_f32(src[i]);
}

/* Called when a bucket's current request has completed. */
static void advance(cg_gsync_t *g, int b) {
  bucket_state_t *s = &g->st[b];
  if (s->phase == PH_GATHER) {
    widen(g, b);
    s->phase = PH_DONE;
    return;
  }
  CG_ASSERT(s->phase == PH_REDUCE);
  sum_own(g, b);
  MPI_Datatype t;
  void *base = bucket_base(g, b, &t);
  CG_CHECK_MPI(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, s->counts, s->displs, t,
                               g->comm_gather, &s->req));
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

/* The staged loop: each bucket as it lands, on grad (fp32, rounded to bf16 by post when the
 * dtype is bf16) or, when wire is given, on the caller's bf16 buffer. */
static double staged(cg_gsync_t *g, float *grad, uint16_t *wire, void (*landed)(void *ctx, int b),
                     void *ctx, double *t_first) {
  if (t_first) *t_first = -1;
  for (int b = 0; b < g->n; b++) {
    landed(ctx, b);
    if (b == 0 && t_first) *t_first = cg_now();
    if (wire) post_on(g, b, NULL, wire); /* nothing to widen here: the caller does */
    else cg_gsync_post(g, b, grad);
    cg_gsync_progress(g);
  }
  return cg_gsync_wait(g);
}

double cg_gsync_staged(cg_gsync_t *g, float *grad, void (*landed)(void *ctx, int b), void *ctx,
                       double *t_first) {
  return staged(g, grad, NULL, landed, ctx, t_first);
}

double cg_gsync_staged_bf16(cg_gsync_t *g, uint16_t *wire, void (*landed)(void *ctx, int b),
                            void *ctx, double *t_first) {
  CG_ASSERT(g->dtype == CG_GSYNC_BF16);
  return staged(g, NULL, wire, landed, ctx, t_first);
}
