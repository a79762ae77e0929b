/* test_memplan.c: the arena planner and the CUDA backend's step plan, on the CPU.
 *  1. cg_memplan_solve on random instances: no two buffers live together overlap, offsets
 *     aligned, the arena at least the largest live sum, the same answer twice; exact answers
 *     on instances whose optimum is known; bad input refused.
 *  2. cg_devplan_make on the UNet-S step (in 5, base 32, depth 4, batch 32, 256x256, bf16):
 *     every buffer is first written in the step, the accesses the backend makes are the ones
 *     listed, a conv's operands never overlap, and the arena is well below one buffer per
 *     activation and gradient (printed in MiB with the expected device total); a model whose
 *     backward would accumulate into a gradient nothing wrote is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devplan.h"
#include "log.h"
#include "memplan.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

#define MAXN 80

static double mib(size_t b) { return (double)b / 1048576.0; }

static void random_instances(void) {
  int bad = 0;
  for (int seed = 0; seed < 400; seed++) {
    cg_rng_t r = cg_rng_make((uint64_t)seed, CG_RNG_TEST, 7, 0);
    const int n = (int)(cg_rng_uniform(&r) * MAXN);
    const int span = 1 + (int)(cg_rng_uniform(&r) * 50);
    const size_t align = (size_t)1 << (4 + (int)(cg_rng_uniform(&r) * 6)); /* 16 .. 512 */
    size_t size[MAXN], off[MAXN], off2[MAXN], arena = 0, arena2 = 0;
    int first[MAXN], last[MAXN];
    for (int i = 0; i < n; i++) {
      const double u = cg_rng_uniform(&r);
      size[i] = u < 0.1 ? 0 : (size_t)(cg_rng_uniform(&r) * (u < 0.5 ? 1000 : 1 << 20));
      first[i] = (int)(cg_rng_uniform(&r) * span);
      last[i] = first[i] + (int)(cg_rng_uniform(&r) * span / 3);
    }
    char why[256] = "";
    if (cg_memplan_solve(n, size, first, last, align, off, &arena)) {
      bad++;
      printf("FAIL instance %d: solve failed (%s)\n", seed, strerror(errno));
      continue;
    }
    const size_t lb = cg_memplan_live_max(n, size, first, last);
    int ok = cg_memplan_verify(n, size, first, last, align, off, arena, why, sizeof why) == 0;
    ok = ok && arena % align == 0 && arena >= lb;
    for (int i = 0; i < n && ok; i++) ok = off[i] % align == 0;
    /* determinism: the same input, planned again */
    ok = ok && cg_memplan_solve(n, size, first, last, align, off2, &arena2) == 0 &&
         arena2 == arena && memcmp(off, off2, sizeof(size_t) * (size_t)n) == 0;
    if (!ok) {
      bad++;
      printf("FAIL instance %d (n %d, align %zu): arena %zu, lower bound %zu, %s\n", seed, n,
             align, arena, lb, why);
    }
  }
  CG_TEST_CHECK(bad == 0, "%d of 400 random instances failed", bad);
  if (!bad)
    printf("PASS 400 random instances: valid, aligned, >= the live maximum, deterministic\n");

  /* known optima: all live together -> the sum of the aligned sizes; none -> the largest */
  size_t size[4] = {300, 256, 1, 0}, off[4], arena;
  int first[4] = {0, 0, 0, 0}, last[4] = {5, 5, 5, 5};
  CG_TEST_CHECK(cg_memplan_solve(4, size, first, last, 256, off, &arena) == 0 &&
                    arena == 512 + 256 + 256,
                "all live together: arena %zu, want 1024", arena);
  int f2[4] = {0, 1, 2, 3}, l2[4] = {0, 1, 2, 3};
  CG_TEST_CHECK(cg_memplan_solve(4, size, f2, l2, 256, off, &arena) == 0 && arena == 512 &&
                    off[0] == 0 && off[1] == 0 && off[2] == 0,
                "disjoint lives share offset 0: arena %zu, want 512", arena);
  /* buffer 2 takes the bytes of buffer 1, whose life ended before it began; buffer 0 lives
   * with both: 512 + 256 */
  size_t s3[3] = {256, 512, 256}, o3[3];
  int f3[3] = {0, 0, 5}, l3[3] = {9, 4, 9};
  CG_TEST_CHECK(cg_memplan_solve(3, s3, f3, l3, 256, o3, &arena) == 0 && arena == 768,
                "three buffers: arena %zu, want 768", arena);
  CG_TEST_CHECK(cg_memplan_solve(0, NULL, NULL, NULL, 0, NULL, &arena) == 0 && arena == 0,
                "no buffers: arena %zu", arena);
  int fb[1] = {3}, lb_[1] = {2};
  size_t sb[1] = {10}, ob[1];
  errno = 0;
  CG_TEST_CHECK(cg_memplan_solve(1, sb, fb, lb_, 256, ob, &arena) == -1 && errno == EINVAL,
                "first > last refused");
  CG_TEST_CHECK(cg_memplan_solve(1, sb, f2, l2, 48, ob, &arena) == -1 && errno == EINVAL,
                "alignment 48 refused");
}

/* The bytes buffer b occupies: a part in place, its parent's (the halves interleave). */
static void root_range(const cg_devplan_t *p, int b, size_t *lo, size_t *hi) {
  const int q = p->parent[b] >= 0 ? p->parent[b] : b;
  *lo = p->offset[q];
  *hi = p->offset[q] + p->size[q];
}

static int root_of(const cg_devplan_t *p, int b) { return p->parent[b] >= 0 ? p->parent[b] : b; }

/* The channels of its root that buffer b covers: a view's (part in place, copy, gcat) or all. */
static void chan_range(const cg_model_t *m, const cg_devplan_t *p, int b, int *lo, int *hi) {
  const int nt = p->ntensors, t = b % nt;
  if (p->parent[b] < 0) {
    *lo = 0;
    *hi = 1 << 30;
    return;
  }
  *lo = b >= 3 * nt ? p->gcat_coff[t] : b >= 2 * nt ? p->copy_coff[t] : p->coff[t];
  *hi = *lo + m->tensors[t].c;
}

/* Every access the backend makes is in the list; buffers used at one position never overlap
 * (the planner's verification covers intervals; this checks the positions themselves). */
static void check_plan(const cg_model_t *m, const cg_devplan_t *p, const char *tag) {
  int bad = 0;
  for (int k = 0; k < p->nacc; k++) {
    const cg_devplan_acc_t *a = &p->acc[k];
    if (!cg_devplan_allows(p, a->pos, a->buf, a->mode)) bad++;
    if (a->pos < p->first_use[a->buf] || a->pos > p->last_use[a->buf]) bad++;
    const int ru = root_of(p, a->buf);
    if (a->pos < p->first_use[ru] || a->pos > p->last_use[ru]) {
      printf("FAIL %s: buffer %d used at %d outside its parent's interval\n", tag, a->buf, a->pos);
      bad++;
    }
    for (int j = p->acc_at[a->pos]; j < p->acc_at[a->pos + 1]; j++) {
      const int u = a->buf, v = p->acc[j].buf;
      if (u != v && root_of(p, u) == root_of(p, v) &&
          (a->mode != CG_DP_R || p->acc[j].mode != CG_DP_R)) {
        /* two views of one buffer, one written, at one position: disjoint channels */
        int ul, uh, vl, vh;
        chan_range(m, p, u, &ul, &uh);
        chan_range(m, p, v, &vl, &vh);
        if (ul < vh && vl < uh) {
          printf("FAIL %s: buffers %d and %d share channels at position %d\n", tag, u, v, a->pos);
          bad++;
        }
      }
      if (root_of(p, u) == root_of(p, v)) continue;
      size_t ul, uh, vl, vh;
      root_range(p, u, &ul, &uh);
      root_range(p, v, &vl, &vh);
      if (ul < vh && vl < uh) {
        printf("FAIL %s: buffers %d and %d overlap at position %d\n", tag, u, v, a->pos);
        bad++;
      }
    }
  }
  CG_TEST_CHECK(!cg_devplan_allows(p, p->loss, cg_devplan_grad(p, m->input_tensor), CG_DP_W),
                "%s: an access not in the step is refused", tag);
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const int gi = cg_devplan_grad(p, l->in), go = cg_devplan_grad(p, l->out);
    const int ai = cg_devplan_act(p, l->in), ao = cg_devplan_act(p, l->out);
    if (!cg_devplan_allows(p, p->fwd[i], ai, CG_DP_R) ||
        !cg_devplan_allows(p, p->fwd[i], ao, CG_DP_W))
      bad++;
    /* a pool whose input keeps its gradient in its concat (gcat) reads it there, writes gi */
    const int gc = p->parent[cg_devplan_gcat(p, l->in)] >= 0;
    if (l->need_dx &&
        !cg_devplan_allows(p, p->bwd_dx[i], gi, l->accum_dx && !gc ? CG_DP_RW : CG_DP_W))
      bad++;
    if (l->op != CG_OP_POOL && !cg_devplan_allows(p, p->bwd_dw[i], ai, CG_DP_R)) bad++;
    if (l->op != CG_OP_POOL && !cg_devplan_allows(p, p->bwd_dw[i], go, CG_DP_R)) bad++;
    /* a layer with concurrent dW and dx keeps x through dx */
    if (p->opts.concurrent[i] && !cg_devplan_allows(p, p->bwd_dx[i], ai, CG_DP_R)) bad++;
    /* a layer whose ReLU + bias backward is its consumer's has no mask position */
    if (p->bias_by[i] >= 0 && p->bwd_mask[i] >= 0) bad++;
    /* the algorithm search layout: four disjoint ranges inside the allocation */
    if (l->op == CG_OP_POOL || p->is_head[i]) continue;
    size_t off[4], lo[4], hi[4];
    const int bufs[4] = {ai, ao, go, gi};
    const size_t s = cg_devplan_search_layout(p, m, i, &off[0], &off[1], &off[2], &off[3]);
    const int nb = l->need_dx ? 4 : 3;
    if (s > p->search_bytes) bad++;
    for (int k = 0; k < nb; k++) {
      size_t rl, rh;
      root_range(p, bufs[k], &rl, &rh);
      lo[k] = off[k] - (p->offset[bufs[k]] - rl);
      hi[k] = lo[k] + (rh - rl);
      if (hi[k] > s) bad++;
      for (int q = 0; q < k; q++)
        if (lo[k] < hi[q] && lo[q] < hi[k]) bad++;
    }
  }
  /* views of one buffer (parts in place, copies, gcat) live at the same time only on disjoint
   * channels, and the whole is not written while a view holds a value */
  for (int u = 0; u < p->nbufs; u++) {
    if (p->parent[u] < 0 || p->first_use[u] < 0) continue;
    int ul, uh;
    chan_range(m, p, u, &ul, &uh);
    for (int v = 0; v < u; v++) {
      if (p->parent[v] != p->parent[u] || p->first_use[v] < 0) continue;
      int vl, vh;
      chan_range(m, p, v, &vl, &vh);
      if (ul < vh && vl < uh && p->first_use[u] <= p->last_use[v] &&
          p->first_use[v] <= p->last_use[u]) {
        printf("FAIL %s: views %d and %d of buffer %d share channels while both live\n", tag, u,
               v, p->parent[u]);
        bad++;
      }
    }
    for (int k = 0; k < p->nacc; k++)
      if (p->acc[k].buf == p->parent[u] && p->acc[k].mode != CG_DP_R &&
          p->acc[k].pos > p->first_use[u] && p->acc[k].pos <= p->last_use[u]) {
        printf("FAIL %s: buffer %d written at %d while its view %d holds a value\n", tag,
               p->parent[u], p->acc[k].pos, u);
        bad++;
      }
  }
  /* the first access of a buffer that is neither a part nor a whole with parts writes it
   * (cg_devplan_make checks the rule with parts itself; check it held for the rest) */
  for (int b = 0; b < p->nbufs; b++) {
    int has_parts = 0;
    for (int c = 0; c < p->nbufs; c++) has_parts |= p->parent[c] == b;
    if (p->first_use[b] >= 0 && p->parent[b] < 0 && !has_parts) {
      int k = 0;
      while (p->acc[k].buf != b) k++;
      if (p->acc[k].mode != CG_DP_W) bad++;
    }
  }
  CG_TEST_CHECK(bad == 0, "%s: %d inconsistencies in the plan", tag, bad);
  if (!bad) printf("PASS %s: %d positions, %d accesses consistent\n", tag, p->npos, p->nacc);
}

/* With concat copies and the skip read from its copy (oc; arena_sfc its arena): the skip's
 * gradient in the upsampled half of the copy (gcat), then per buffer, the 256x256 concat copied
 * and the others in place. rest: the device bytes besides the arena. */
static void unet_grad_in_cat(const cg_model_t *m, cg_devplan_opts_t oc, size_t arena_sfc,
                             size_t rest) {
  char err[256];
  static cg_devplan_t pi;
  const int batch = 32, cpad = 8;
  const size_t es = 2; /* bf16 */
  /* ... and the skip's gradient in the upsampled half of its concat's copy (gcat): the split's
   * peak (the concat's gradient, both parts' gradients, the concat) loses one part */
  oc.grad_in_cat = 1;
  CG_TEST_CHECK(cg_devplan_make(m, batch, cpad, es, 256, &oc, &pi, err, sizeof err) == 0,
                "UNet-S copies, grad in the concat: %s", err);
  check_plan(m, &pi, "UNet-S bf16 b32 256x256, concat copied, skip gradient in the concat");
  int ngcat = 0;
  for (int t = 0; t < m->ntensors; t++) {
    const int g = cg_devplan_gcat(&pi, t);
    if (pi.parent[g] < 0) continue;
    ngcat++;
    int pool = -1, cat = -1;
    for (int i = 0; i < m->nlayers; i++) {
      if (m->layers[i].in == t) pool = i;
      if (pi.cat_bwd[i] >= 0 && (pi.cat_a[m->layers[i].in] == t || pi.cat_b[m->layers[i].in] == t))
        cat = i;
    }
    CG_TEST_CHECK(pool >= 0 && cat >= 0 && m->layers[pool].op == CG_OP_POOL &&
                      cg_devplan_allows(&pi, pi.cat_bwd[cat], g, CG_DP_W) &&
                      !cg_devplan_allows(&pi, pi.cat_bwd[cat], cg_devplan_grad(&pi, t), CG_DP_W) &&
                      cg_devplan_allows(&pi, pi.bwd_dx[pool], g, CG_DP_R) &&
                      cg_devplan_allows(&pi, pi.bwd_dx[pool], cg_devplan_grad(&pi, t), CG_DP_W),
                  "tensor %d: the split writes gcat, the pool reads it and writes grad", t);
  }
  CG_TEST_CHECK(ngcat == m->depth, "%d skips keep their gradient in their concat (want %d)",
                ngcat, m->depth);
  const size_t dev_gcat = pi.arena + rest;
  printf("... and the skip's gradient in its concat's upsampled half: arena %.1f MiB (live "
         "maximum %.1f MiB), %.1f MiB less; expected device memory without the cuDNN workspace "
         "%.1f MiB (%.3f GiB)\n", mib(pi.arena), mib(pi.live_max), mib(arena_sfc) - mib(pi.arena),
         mib(dev_gcat), (double)dev_gcat / 1073741824.0);
  CG_TEST_CHECK(pi.arena + ((size_t)100 << 20) <= arena_sfc,
                "the gradient in the concat saves at least 100 MiB (%.1f -> %.1f MiB)",
                mib(arena_sfc), mib(pi.arena));
  if (getenv("CG_MEMPLAN_PRINT")) cg_devplan_print(&pi, m);

  /* per concat buffer: the 256x256 one copied (cuDNN 9.19 on an H200 has no engine writing its
   * strided halves), the others in place */
  cg_devplan_opts_t om = oc;
  om.inplace_concat = om.skip_from_cat = om.grad_in_cat = 1;
  int ncat = 0;
  for (int t = 0; t < m->ntensors; t++) om.copy_concat[t] = m->tensors[t].h == 256;
  CG_TEST_CHECK(cg_devplan_make(m, batch, cpad, es, 256, &om, &pi, err, sizeof err) == 0,
                "UNet-S mixed: %s", err);
  check_plan(m, &pi, "UNet-S bf16 b32 256x256, the 256x256 concat copied, the rest in place");
  int ninplace = 0, copied_ok = 1;
  ngcat = 0;
  for (int t = 0; t < m->ntensors; t++) {
    if (pi.cat_a[t] < 0) continue;
    ncat++;
    const int in = cg_devplan_inplace(&pi, t);
    ninplace += in;
    const int s_ = pi.cat_a[t], u_ = pi.cat_b[t];
    const int g =
        pi.parent[cg_devplan_gcat(&pi, s_)] >= 0 || pi.parent[cg_devplan_gcat(&pi, u_)] >= 0;
    ngcat += g;
    /* a copied concat has a forward copy and a split; one in place neither, and its parts are
     * views of it with its pixel stride */
    int has_copy = 0;
    for (int i = 0; i < m->nlayers; i++)
      if (m->layers[i].in == t) has_copy = pi.cat_fwd[i] >= 0 && pi.cat_bwd[i] >= 0;
    if (in == has_copy || in == g || (in && pi.ld[s_] != m->tensors[t].c)) copied_ok = 0;
  }
  CG_TEST_CHECK(ncat == m->depth && ninplace == m->depth - 1 && ngcat == 1 && copied_ok,
                "mixed: %d of %d concats in place (want %d), %d with gcat (want 1), layouts %s",
                ninplace, ncat, m->depth - 1, ngcat, copied_ok ? "ok" : "wrong");
  printf("the 256x256 concat copied (skip gradient in it), the others in place: arena %.1f MiB "
         "(live maximum %.1f MiB)\n", mib(pi.arena), mib(pi.live_max));
  CG_TEST_CHECK(pi.arena <= arena_sfc - ((size_t)100 << 20), "mixed saves 100 MiB too (%.1f MiB)",
                mib(pi.arena));
}

/* The small model of test_gpu_step with every option set, every depth the model allows, and
 * a model the plan must refuse. */
static void small_models(void) {
  char err[256];
  /* the small model of test_gpu_step, fp32 */
  cg_model_t s;
  CG_ASSERT(cg_model_build(&s, 5, 8, 3, 32, 32, 1, err, sizeof err) == 0);
  static cg_devplan_t ps;
  CG_TEST_CHECK(cg_devplan_make(&s, 3, 8, 4, 256, NULL, &ps, err, sizeof err) == 0,
                "small plan: %s", err);
  check_plan(&s, &ps, "test_gpu_step model fp32 b3 32x32");
  static cg_devplan_opts_t all;
  all.inplace_concat = all.fuse_relu_bias = all.skip_from_cat = 1;
  for (int i = 0; i < CG_MAX_LAYERS; i++) all.concurrent[i] = all.drelu[i] = 1;
  CG_TEST_CHECK(cg_devplan_make(&s, 3, 8, 4, 256, &all, &ps, err, sizeof err) == 0,
                "small plan, every option: %s", err);
  check_plan(&s, &ps, "test_gpu_step model fp32 b3 32x32, every option");
  /* concats copied (skip gradient in the concat), and as test_gpu_step_mixed runs it
   * (CG_CONCAT_COPY_HW=32) */
  static cg_devplan_opts_t cp;
  cp = all;
  cp.inplace_concat = 0;
  cp.grad_in_cat = 1;
  CG_TEST_CHECK(cg_devplan_make(&s, 3, 8, 4, 256, &cp, &ps, err, sizeof err) == 0,
                "small plan, copies, gcat: %s", err);
  check_plan(&s, &ps, "test_gpu_step model fp32 b3 32x32, copies, skip gradient in the concat");
  cp.inplace_concat = 1;
  for (int t = 0; t < s.ntensors; t++) cp.copy_concat[t] = s.tensors[t].h >= 32;
  CG_TEST_CHECK(cg_devplan_make(&s, 3, 8, 4, 256, &cp, &ps, err, sizeof err) == 0,
                "small plan, mixed: %s", err);
  check_plan(&s, &ps, "test_gpu_step model fp32 b3 32x32, the 32x32 concat copied");

  /* every depth the model allows */
  for (int depth = 1; depth <= CG_MAX_DEPTH; depth++) {
    cg_model_t d;
    CG_ASSERT(cg_model_build(&d, 5, 4, depth, 64, 64, 1, err, sizeof err) == 0);
    char tag[64];
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, NULL, &ps, err, sizeof err) == 0, "%s: %s",
                  tag, err);
    check_plan(&d, &ps, tag);
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64, every option", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, &all, &ps, err, sizeof err) == 0, "%s: %s",
                  tag, err);
    check_plan(&d, &ps, tag);
    cg_devplan_opts_t copies = all;
    copies.inplace_concat = 0;
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64, copies, skip from the concat", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, &copies, &ps, err, sizeof err) == 0,
                  "%s: %s", tag, err);
    check_plan(&d, &ps, tag);
    copies.grad_in_cat = 1;
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64, copies, skip gradient in the concat", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, &copies, &ps, err, sizeof err) == 0,
                  "%s: %s", tag, err);
    check_plan(&d, &ps, tag);
    /* every other concat copied */
    cg_devplan_opts_t mixed = copies;
    mixed.inplace_concat = 1;
    for (int t = 0, k = 0; t < d.ntensors; t++)
      if (ps.cat_a[t] >= 0) mixed.copy_concat[t] = k++ % 2;
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64, every other concat copied", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, &mixed, &ps, err, sizeof err) == 0,
                  "%s: %s", tag, err);
    check_plan(&d, &ps, tag);
    /* drelu "either way": both access lists at once */
    cg_devplan_opts_t maybe = all;
    for (int i = 0; i < CG_MAX_LAYERS; i++) maybe.drelu[i] = 2;
    snprintf(tag, sizeof tag, "depth %d fp16 b2 64x64, every option, drelu either way", depth);
    CG_TEST_CHECK(cg_devplan_make(&d, 2, 8, 2, 512, &maybe, &ps, err, sizeof err) == 0,
                  "%s: %s", tag, err);
    check_plan(&d, &ps, tag);
  }

  /* dec0.conv2 made to accumulate into its input gradient, which nothing wrote before */
  cg_model_t bad = s;
  for (int i = 0; i < bad.nlayers; i++)
    if (!strcmp(bad.layers[i].name, "dec0.conv2")) bad.layers[i].accum_dx = 1;
  err[0] = 0;
  CG_TEST_CHECK(cg_devplan_make(&bad, 3, 8, 4, 256, NULL, &ps, err, sizeof err) == -1 &&
                    strstr(err, "before the step writes it"),
                "accumulating into an unwritten gradient refused (%s)", err);
}

int main(void) {
  random_instances();

  char err[256];
  cg_model_t m;
  CG_ASSERT(cg_model_build(&m, 5, 32, 4, 256, 256, 1, err, sizeof err) == 0);
  static cg_devplan_t p; /* large: keep it off the stack */
  const int batch = 32, cpad = 8;
  const size_t es = 2; /* bf16 */
  if (cg_devplan_make(&m, batch, cpad, es, 256, NULL, &p, err, sizeof err)) {
    CG_TEST_CHECK(0, "UNet-S plan: %s", err);
    return cg_test_done("test_memplan");
  }
  check_plan(&m, &p, "UNet-S bf16 b32 256x256");
  const double ratio = (double)p.arena / (double)p.naive;
  printf("UNet-S bf16 batch 32 256x256: arena %.1f MiB (live maximum %.1f MiB), one buffer per "
         "activation and gradient %.1f MiB: %.1f%%\n",
         mib(p.arena), mib(p.live_max), mib(p.naive), 100.0 * ratio);
  CG_TEST_CHECK(ratio < 0.55, "arena %.1f MiB is %.1f%% of the naive %.1f MiB (want < 55%%)",
                mib(p.arena), 100.0 * ratio, mib(p.naive));
  CG_TEST_CHECK(p.search_bytes <= p.arena, "search layout %.1f MiB fits the arena",
                mib(p.search_bytes));
  /* What alloc_all adds (cuda/backend_cuda.cu), but for the cuDNN workspace and the small
   * kernel scratch: fp32 parameters, gradients, AdamW m and v; the bf16 copy; the padded
   * first-layer weights; dW scratch; per batch slot fp32 input, mask, RGB8, weights; per
   * in-flight step the predicted mask. */
  size_t dw = 0; /* every conv layer's dW slot in the compute type, 256-byte aligned */
  for (int i = 0; i < m.nlayers; i++)
    dw += (m.layers[i].w_len * es + 255) / 256 * 256;
  const size_t px = (size_t)batch * 256 * 256;
  const size_t params = m.nparams * (16 + es) + (size_t)m.widths[0] * 9 * cpad * es + dw;
  const size_t slots = 2 * (px * 5 * 4 + px + 3 * px + batch * 4) + 2 * px;
  const size_t arena = p.arena > p.search_bytes ? p.arena : p.search_bytes;
  printf("expected device memory without the cuDNN workspace: params/optimizer %.1f MiB + arena "
         "%.1f MiB + slots %.1f MiB = %.1f MiB (%.3f GiB; was %.3f GiB with one buffer each)\n",
         mib(params), mib(arena), mib(slots), mib(params + arena + slots),
         (double)(params + arena + slots) / 1073741824.0,
         (double)(params + p.naive + slots) / 1073741824.0);
  if (getenv("CG_MEMPLAN_PRINT")) cg_devplan_print(&p, &m);

  /* The concat in place and the fused ReLU + bias backward: the skips live inside their concat
   * buffers, so the arena shrinks by about one skip per level (~250 MiB); each level's dW and
   * dx at 64x64 and below may run concurrently at a small cost. */
  static cg_devplan_t pi;
  cg_devplan_opts_t o;
  memset(&o, 0, sizeof o);
  o.inplace_concat = o.fuse_relu_bias = 1;
  CG_TEST_CHECK(cg_devplan_make(&m, batch, cpad, es, 256, &o, &pi, err, sizeof err) == 0,
                "UNet-S in place: %s", err);
  check_plan(&m, &pi, "UNet-S bf16 b32 256x256, concat in place, fused ReLU+bias backward");
  printf("concat in place + fused ReLU/bias backward: arena %.1f MiB (live maximum %.1f MiB), "
         "%.1f MiB less than with copies\n", mib(pi.arena), mib(pi.live_max),
         mib(p.arena) - mib(pi.arena));
  CG_TEST_CHECK(pi.arena + ((size_t)200 << 20) < p.arena,
                "in place saves at least 200 MiB (%.1f -> %.1f MiB)", mib(p.arena), mib(pi.arena));
  int fused = 0;
  for (int i = 0; i < m.nlayers; i++) fused += pi.bias_by[i] >= 0;
  CG_TEST_CHECK(fused == m.depth + 1, "fused ReLU+bias backward for %d layers (want %d: the "
                "encoder blocks' second convolutions and the last decoder convolution)", fused,
                m.depth + 1);
  for (int i = 0; i < m.nlayers; i++) {
    if (m.tensors[m.layers[i].in].h <= 64) o.concurrent[i] = 1;
    o.drelu[i] = 2;
  }
  CG_TEST_CHECK(cg_devplan_make(&m, batch, cpad, es, 256, &o, &pi, err, sizeof err) == 0,
                "UNet-S in place, concurrent: %s", err);
  check_plan(&m, &pi, "UNet-S bf16 b32 256x256, in place, concurrent dW/dx at <= 64x64");
  printf("... and concurrent dW/dx at 64x64 and below, dx masked by the ReLU either way: arena "
         "%.1f MiB (live maximum %.1f MiB)\n", mib(pi.arena), mib(pi.live_max));
  int masked = 0;
  for (int i = 0; i < m.nlayers; i++) masked += pi.mask_by[i] >= 0;
  CG_TEST_CHECK(masked == 2 * m.depth + 1, "%d convolutions may have their ReLU mask applied by "
                "the next one's dx (want %d: every block's first)", masked, 2 * m.depth + 1);
  CG_TEST_CHECK(pi.arena <= p.arena - ((size_t)200 << 20), "every option still saves 200 MiB "
                "(%.1f MiB)", mib(pi.arena));
  if (getenv("CG_MEMPLAN_PRINT")) cg_devplan_print(&pi, &m);

  /* Where cuDNN cannot write a strided half (the 256x256 layers on an H200), the concat is
   * copied; reading the skip from its copy in the concat buffer frees the skip itself as soon as
   * it is copied, which saves about as much. */
  cg_devplan_opts_t oc = o;
  oc.inplace_concat = 0;
  oc.skip_from_cat = 1;
  CG_TEST_CHECK(cg_devplan_make(&m, batch, cpad, es, 256, &oc, &pi, err, sizeof err) == 0,
                "UNet-S copies, skip from the concat: %s", err);
  check_plan(&m, &pi, "UNet-S bf16 b32 256x256, concat copied, skip read from its copy");
  printf("concat copied, skip read back from its copy: arena %.1f MiB (live maximum %.1f MiB)\n",
         mib(pi.arena), mib(pi.live_max));
  /* (the skip's gradient still lives apart from the concat's, from the concat's backward to the
   * pool's: that is what the in-place concat saves on top) */
  CG_TEST_CHECK(pi.arena + ((size_t)100 << 20) < p.arena,
                "the skip read from the concat saves at least 100 MiB (%.1f -> %.1f MiB)",
                mib(p.arena), mib(pi.arena));
  const size_t arena_sfc = pi.arena;

  unet_grad_in_cat(&m, oc, arena_sfc, params + slots);

  oc.skip_from_cat = oc.grad_in_cat = 0;
  CG_TEST_CHECK(cg_devplan_make(&m, batch, cpad, es, 256, &oc, &pi, err, sizeof err) == 0,
                "UNet-S copies: %s", err);
  check_plan(&m, &pi, "UNet-S bf16 b32 256x256, concat copied, fused backward");

  small_models();
  return cg_test_done("test_memplan");
}
