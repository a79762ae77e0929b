/* test_model.c: the UNet graph — parameter counts of the reference shapes, a consistent flat
 * layout, views inside their buffers, the backward accumulate plan and the gradient buckets. */
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

static void check_layout(const cg_model_t *m) {
  size_t off = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    CG_TEST_CHECK(l->w_off == off, "layer %d weight offset %zu, want %zu", i, l->w_off, off);
    CG_TEST_CHECK(l->b_off == l->w_off + l->w_len, "layer %d bias follows weight", i);
    off = l->b_off + l->b_len;
    const cg_tensor_t *ti = &m->tensors[l->in], *to = &m->tensors[l->out];
    CG_TEST_CHECK(ti->c_off + ti->c <= m->bufs[ti->buf].c, "layer %d input view out of buffer", i);
    CG_TEST_CHECK(to->c_off + to->c <= m->bufs[to->buf].c, "layer %d output view out of buffer", i);
    CG_TEST_CHECK(ti->ld == m->bufs[ti->buf].c && to->ld == m->bufs[to->buf].c, "ld = buffer C");
    if (l->op == CG_OP_POOL || l->op == CG_OP_UPCONV)
      CG_TEST_CHECK(l->op == CG_OP_POOL ? (to->h * 2 == ti->h && to->w * 2 == ti->w)
                                        : (to->h == ti->h * 2 && to->w == ti->w * 2),
                    "layer %d spatial size", i);
    CG_TEST_CHECK(l->need_dx == (i != 0), "only the first layer skips dx (layer %d)", i);
  }
  CG_TEST_CHECK(off == m->nparams, "layout covers %zu of %zu params", off, m->nparams);
}

/* Buckets of bytes with the final one split off at last (0 = not). */
/* --last-bucket-mb: the fewest first layers whose gradients reach last bytes end at a bucket
 * boundary (unless they are the whole model), so the final bucket lies within them. */
static void check_last(const cg_model_t *m, const cg_buckets_t *b, double last) {
  size_t edge = m->nparams; /* where those first layers end */
  double sum = 0;
  for (int i = 0; i < m->nlayers && edge == m->nparams; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (l->w_len + l->b_len == 0) continue;
    if (sum >= last) edge = l->w_off;
    sum += 4.0 * (double)(l->w_len + l->b_len);
  }
  int boundary = edge == m->nparams;
  for (int j = 0; j < b->n; j++) boundary |= b->off[j] == edge;
  CG_TEST_CHECK(boundary, "no bucket starts at %zu, the end of the first layers reaching %.0f "
                "bytes", edge, last);
  CG_TEST_CHECK(b->len[b->n - 1] <= edge, "last bucket %zu floats > %zu", b->len[b->n - 1], edge);
  CG_TEST_CHECK(edge == m->nparams || 4.0 * (double)edge >= last, "first layers %zu floats < %.0f "
                "bytes", edge, last);
}

static void check_buckets(const cg_model_t *m, double bytes, double last) {
  cg_buckets_t b;
  cg_buckets_plan_last(m, bytes, last, &b);
  size_t hi = m->nparams;
  for (int i = 0; i < b.n; i++) {
    CG_TEST_CHECK(b.off[i] + b.len[i] == hi, "bucket %d ends where bucket %d began", i, i - 1);
    CG_TEST_CHECK(b.len[i] > 0, "bucket %d is empty", i);
    if (bytes > 0 && i < b.n - 1)
      CG_TEST_CHECK(4.0 * b.len[i] >= bytes || (last > 0 && i == b.n - 2),
                    "bucket %d smaller than the bucket size", i);
    hi = b.off[i];
  }
  CG_TEST_CHECK(hi == 0, "buckets cover every parameter (start at %zu)", hi);
  /* ready_after: every bucket exactly once, in bucket order as backward walks down. */
  int next = 0;
  for (int l = m->nlayers - 1; l >= 0; l--)
    if (b.ready_after[l] >= 0) {
      CG_TEST_CHECK(b.ready_after[l] == next, "bucket %d ready out of order", b.ready_after[l]);
      CG_TEST_CHECK(m->layers[l].w_off == b.off[next], "bucket %d closes at its lowest layer", next);
      next++;
    }
  CG_TEST_CHECK(next == b.n, "%d of %d buckets become ready", next, b.n);
  if (last > 0) check_last(m, &b, last);
  printf("PASS buckets at %.0f bytes, last %.0f: %d bucket(s), the last %.0f bytes\n", bytes,
         last, b.n, 4.0 * b.len[b.n - 1]);
}

int main(void) {
  CG_TEST_CHECK(cg_model_param_count(5, 32, 4) == 7760673, "UNet-S has %zu params",
                cg_model_param_count(5, 32, 4));
  CG_TEST_CHECK(cg_model_param_count(5, 8, 3) == 120969, "small UNet has %zu params",
                cg_model_param_count(5, 8, 3));
  printf("PASS parameter counts 7,760,673 and 120,969\n");
  cg_model_t m;
  char err[256];
  CG_TEST_CHECK(cg_model_build(&m, 5, 32, 4, 256, 256, 1, err, sizeof err) == 0, "%s", err);
  CG_TEST_CHECK(m.flops_fwd > 24.1e9 && m.flops_fwd < 24.3e9, "forward %.3f GFLOP, want 24.2",
                m.flops_fwd / 1e9);
  check_layout(&m);
  /* The pool of level l must add into the skip gradient that the decoder wrote first. */
  int pools = 0;
  for (int i = 0; i < m.nlayers; i++)
    if (m.layers[i].op == CG_OP_POOL) {
      CG_TEST_CHECK(m.layers[i].accum_dx == 1, "pool %s must accumulate", m.layers[i].name);
      pools++;
    } else {
      CG_TEST_CHECK(m.layers[i].accum_dx == 0, "%s must overwrite dx", m.layers[i].name);
    }
  CG_TEST_CHECK(pools == 4, "4 pools, got %d", pools);
  check_buckets(&m, 25e6, 0);
  check_buckets(&m, 1e6, 0);
  check_buckets(&m, 1, 0);
  check_buckets(&m, 0, 0);
  check_buckets(&m, 25e6, 1e6);
  check_buckets(&m, 0, 1e6);
  check_buckets(&m, 1e6, 1e6);
  check_buckets(&m, 25e6, 1e9); /* more than the model: no split */
  {
    cg_buckets_t b0, b1;
    cg_buckets_plan(&m, 25e6, &b0);
    cg_buckets_plan_last(&m, 25e6, 1e6, &b1);
    CG_TEST_CHECK(b1.n == b0.n + 1 && 4.0 * b1.len[b1.n - 1] < 2e6,
                  "--last-bucket-mb 1 adds one bucket of about 1 MB (%d -> %d, %zu floats)", b0.n,
                  b1.n, b1.len[b1.n - 1]);
  }
  CG_TEST_CHECK(cg_model_build(&m, 5, 8, 3, 36, 36, 1, err, sizeof err) == -1, "36 is not a multiple of 8");
  CG_TEST_CHECK(strstr(err, "multiple of 2^depth") != NULL, "message: %s", err);
  CG_TEST_CHECK(cg_model_build(&m, 5, 8, 7, 256, 256, 1, err, sizeof err) == -1, "depth 7 refused");
  for (int d = 1; d <= 6; d++) {
    CG_TEST_CHECK(cg_model_build(&m, 5, 4, d, 64, 64, 1, err, sizeof err) == 0,
                  "depth %d: %s", d, err);
    check_layout(&m);
  }
  /* Non-square images. */
  CG_TEST_CHECK(cg_model_build(&m, 5, 8, 3, 32, 64, 1, err, sizeof err) == 0, "%s", err);
  check_layout(&m);
  return cg_test_done("test_model");
}
