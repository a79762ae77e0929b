/* devplan.c: the CUDA backend's step as buffer accesses, and its arena (see devplan.h).
 *
 * trace() must list exactly what forward(), run_loss() and backward() of cuda/backend_cuda.cu
 * do, in their order; the backend checks every pointer it passes against the list
 * (cg_devplan_allows), so a mismatch is an assertion at the first step, not a silent
 * overlap. */
#include "devplan.h"

#include <stdio.h>
#include <string.h>

#include "memplan.h"

int cg_devplan_graph(const cg_model_t *m, cg_devplan_t *p, char *err, size_t errlen) {
  p->first = -1;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    /* the 1x1 conv to the logits: 1 channel (binary) or K (multi-class), custom kernels */
    p->is_head[i] =
        l->op == CG_OP_CONV && l->k == 1 && (l->cout == 1 || l->out == m->logits_tensor);
    if (p->is_head[i] && l->accum_dx) {
      snprintf(err, errlen, "layer %s: the head's input must have one consumer", l->name);
      return -1;
    }
    if (l->in != m->input_tensor) continue;
    if (p->first >= 0 || l->op != CG_OP_CONV || p->is_head[i] || l->need_dx) {
      snprintf(err, errlen, "layer %s: the input must be read by exactly one convolution",
               l->name);
      return -1;
    }
    p->first = i;
  }
  if (p->first < 0) {
    snprintf(err, errlen, "no layer reads the model input");
    return -1;
  }
  for (int t = 0; t < m->ntensors; t++) p->cat_a[t] = p->cat_b[t] = -1;
  for (int t = 0; t < m->ntensors; t++) {
    const cg_tensor_t *T = &m->tensors[t];
    if (T->c == T->ld) continue;
    /* a slice: its buffer must be [a | b] with a whole-buffer tensor over both */
    int whole = -1, pa = -1, pb = -1, nparts = 0;
    for (int u = 0; u < m->ntensors; u++) {
      const cg_tensor_t *U = &m->tensors[u];
      if (U->buf != T->buf) continue;
      if (U->c == U->ld) whole = u;
      else {
        nparts++;
        if (U->c_off == 0) pa = u;
        else pb = u;
      }
    }
    if (whole < 0 || nparts != 2 || pa < 0 || pb < 0 || m->tensors[pb].c_off != m->tensors[pa].c ||
        m->tensors[pa].c + m->tensors[pb].c != T->ld) {
      snprintf(err, errlen, "tensor %d: unsupported buffer layout (only [a | b] concatenations)", t);
      return -1;
    }
    p->cat_a[whole] = pa;
    p->cat_b[whole] = pb;
  }
  /* The concat's reader writes its gradient and it is split into the parts right after; a
   * part's own readers must run backward later (earlier in forward order) and accumulate. */
  for (int t = 0; t < m->ntensors; t++) {
    if (p->cat_a[t] < 0) continue;
    int reader = -1;
    for (int i = 0; i < m->nlayers; i++)
      if (m->layers[i].in == t) {
        if (reader >= 0 || m->layers[i].accum_dx) {
          snprintf(err, errlen, "concat tensor %d: needs exactly one reader that overwrites", t);
          return -1;
        }
        reader = i;
      }
    for (int i = 0; i < m->nlayers; i++) {
      const cg_layer_t *l = &m->layers[i];
      if ((l->in == p->cat_a[t] || l->in == p->cat_b[t]) && (i > reader || !l->accum_dx)) {
        snprintf(err, errlen, "layer %s: reads part of a concat but does not accumulate after it",
                 l->name);
        return -1;
      }
    }
  }
  return 0;
}

static void add(cg_devplan_t *p, int *fail, int pos, int buf, int mode) {
  if (p->nacc >= CG_DEVPLAN_MAX_ACC) {
    *fail = 1;
    return;
  }
  p->acc[p->nacc++] = (cg_devplan_acc_t){pos, buf, mode};
}

/* The step of backend_cuda.cu, access by access. Returns 0, or -1 when a table is too small. */
static int trace(const cg_model_t *m, cg_devplan_t *p) {
  int fail = 0, pos = 0;
  p->nacc = 0;
  for (int i = 0; i < CG_MAX_LAYERS; i++)
    p->cat_fwd[i] = p->fwd[i] = p->bwd_mask[i] = p->bwd_dw[i] = p->bwd_dx[i] = p->cat_bwd[i] = -1;
#define ACT(t) cg_devplan_act(p, (t))
#define GRAD(t) cg_devplan_grad(p, (t))
/* where the backward reads an activation: a concat part's copy inside the whole, when it has one */
#define SRC(t) (p->parent[cg_devplan_copy(p, (t))] >= 0 ? cg_devplan_copy(p, (t)) : ACT(t))
/* where the split of a concat's gradient writes part t: gcat(t), when it has one */
#define HAS_GCAT(t) (p->parent[cg_devplan_gcat(p, (t))] >= 0)
#define GSPLIT(t) (HAS_GCAT(t) ? cg_devplan_gcat(p, (t)) : GRAD(t))
  /* prep_input */
  p->prep = pos++;
  add(p, &fail, p->prep, ACT(m->input_tensor), CG_DP_W);
  /* forward() */
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const int pa = p->cat_a[l->in], pb = p->cat_b[l->in];
    if (pa >= 0 && !cg_devplan_inplace(p, l->in)) {
      p->cat_fwd[i] = pos++;
      add(p, &fail, p->cat_fwd[i], ACT(pa), CG_DP_R);
      add(p, &fail, p->cat_fwd[i], ACT(pb), CG_DP_R);
      add(p, &fail, p->cat_fwd[i], ACT(l->in), CG_DP_W);
    }
    p->fwd[i] = pos++;
    add(p, &fail, p->fwd[i], ACT(l->in), CG_DP_R);
    add(p, &fail, p->fwd[i], ACT(l->out), CG_DP_W);
    if (l->op != CG_OP_POOL && !p->is_head[i]) /* bias (+ ReLU) in place */
      add(p, &fail, p->fwd[i], ACT(l->out), CG_DP_RW);
  }
  /* run_loss() (and the test-only NaN fault, which changes one gradient value) */
  p->loss = pos++;
  add(p, &fail, p->loss, ACT(m->logits_tensor), CG_DP_R);
  add(p, &fail, p->loss, GRAD(m->logits_tensor), CG_DP_W);
  add(p, &fail, p->loss, GRAD(m->logits_tensor), CG_DP_RW);
  /* backward() */
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const cg_layer_t *l = &m->layers[i];
    const int dxmode = l->accum_dx ? CG_DP_RW : CG_DP_W;
    if (p->is_head[i]) {
      p->bwd_dw[i] = p->bwd_dx[i] = pos++;
      add(p, &fail, p->bwd_dw[i], SRC(l->in), CG_DP_R);
      add(p, &fail, p->bwd_dw[i], GRAD(l->out), CG_DP_R);
      if (l->need_dx) add(p, &fail, p->bwd_dw[i], GRAD(l->in), dxmode);
    } else if (l->op == CG_OP_POOL) {
      if (l->need_dx) {
        p->bwd_dx[i] = pos++;
        add(p, &fail, p->bwd_dx[i], SRC(l->in), CG_DP_R);
        add(p, &fail, p->bwd_dx[i], GRAD(l->out), CG_DP_R);
        if (HAS_GCAT(l->in)) { /* adds to the concat's part of the gradient, writes it dense */
          add(p, &fail, p->bwd_dx[i], cg_devplan_gcat(p, l->in), CG_DP_R);
          add(p, &fail, p->bwd_dx[i], GRAD(l->in), CG_DP_W);
        } else {
          add(p, &fail, p->bwd_dx[i], GRAD(l->in), dxmode);
        }
      }
    } else {
      if (p->bias_by[i] < 0) { /* else the consumer's backward did it */
        /* 1: the consumer's dx was masked already, this only sums dy; 2: either way */
        const int masked = p->mask_by[i] >= 0 ? p->opts.drelu[p->mask_by[i]] : 0;
        p->bwd_mask[i] = pos++;
        if (masked) add(p, &fail, p->bwd_mask[i], GRAD(l->out), CG_DP_R);
        if (masked != 1) {
          add(p, &fail, p->bwd_mask[i], GRAD(l->out), l->relu ? CG_DP_RW : CG_DP_R);
          if (l->relu) add(p, &fail, p->bwd_mask[i], SRC(l->out), CG_DP_R);
        }
      }
      p->bwd_dw[i] = pos++;
      add(p, &fail, p->bwd_dw[i], SRC(l->in), CG_DP_R);
      add(p, &fail, p->bwd_dw[i], GRAD(l->out), CG_DP_R);
      if (l->need_dx) {
        p->bwd_dx[i] = pos++;
        add(p, &fail, p->bwd_dx[i], GRAD(l->out), CG_DP_R);
        add(p, &fail, p->bwd_dx[i], GRAD(l->in), dxmode);
        /* dW may still be reading x on the other stream, or dx is masked by x: dx must not take
         * its bytes */
        if (p->opts.concurrent[i] || p->opts.drelu[i])
          add(p, &fail, p->bwd_dx[i], SRC(l->in), CG_DP_R);
      }
    }
    const int pa = p->cat_a[l->in], pb = p->cat_b[l->in];
    if (pa >= 0 && l->need_dx && !cg_devplan_inplace(p, l->in)) {
      p->cat_bwd[i] = pos++;
      add(p, &fail, p->cat_bwd[i], GRAD(l->in), CG_DP_R);
      add(p, &fail, p->cat_bwd[i], GSPLIT(pa), CG_DP_W);
      add(p, &fail, p->cat_bwd[i], GSPLIT(pb), CG_DP_W);
    }
  }
#undef ACT
#undef GRAD
#undef SRC
#undef HAS_GCAT
#undef GSPLIT
  p->npos = pos;
  if (fail || pos > CG_DEVPLAN_MAX_POS) return -1;
  int k = 0;
  for (int q = 0; q <= pos; q++) {
    while (k < p->nacc && p->acc[k].pos < q) k++;
    p->acc_at[q] = k;
  }
  return 0;
}

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

/* Whether tensors t and u share bytes of one model buffer. */
static int overlaps(const cg_model_t *m, int t, int u) {
  const cg_tensor_t *a = &m->tensors[t], *b = &m->tensors[u];
  return a->buf == b->buf && a->c_off < b->c_off + b->c && b->c_off < a->c_off + a->c;
}

/* opts.fuse_relu_bias: the head or a pool i may do the ReLU + bias backward of the convolution
 * j producing its input when i reads exactly out(j) and every other reader of those bytes is
 * later in forward order (its backward runs before i's): i's dx is then the last write of
 * grad(out(j)), which j's backward reads next. */
static void set_bias_by(const cg_model_t *m, cg_devplan_t *p) {
  for (int i = 0; i < CG_MAX_LAYERS; i++) p->bias_by[i] = -1;
  if (!p->opts.fuse_relu_bias) return;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (!l->need_dx || !(p->is_head[i] || l->op == CG_OP_POOL)) continue;
    int j = -1;
    for (int k = 0; k < m->nlayers; k++)
      if (m->layers[k].out == l->in) j = k;
    if (j < 0 || m->layers[j].op != CG_OP_CONV || p->is_head[j] || !m->layers[j].relu) continue;
    int ok = 1;
    for (int k = 0; k < m->nlayers && ok; k++)
      if (k != i && overlaps(m, m->layers[k].in, l->in) && k < i) ok = 0;
    if (ok) p->bias_by[j] = i;
  }
}

/* The layer producing tensor t, or -1. */
static int producer(const cg_model_t *m, int t) {
  for (int k = 0; k < m->nlayers; k++)
    if (m->layers[k].out == t) return k;
  return -1;
}

/* opts.grad_in_cat for the copied concat t = [s | u] or [u | s]: the skip s's gradient may live
 * in u's copy when u has as many channels or more, nothing reads u (or its bytes) in the
 * backward but the concat (no reader of its own, no ReLU on its producer), and s's only other
 * reader is a pool that does the ReLU + bias backward of s's producer (so it can read the
 * gradient from gcat(s) and write grad(s) dense). */
static int gcat_fits(const cg_model_t *m, const cg_devplan_t *p, int t, int s, int u) {
  if (m->tensors[u].c < m->tensors[s].c) return 0;
  const int ju = producer(m, u), js = producer(m, s);
  if (ju < 0 || m->layers[ju].relu || js < 0) return 0;
  int pool = -1, nreaders = 0;
  for (int k = 0; k < m->nlayers; k++) {
    const int in = m->layers[k].in;
    if (in == t) {
      if (!m->layers[k].need_dx) return 0; /* no split of the concat's gradient to write gcat */
      continue;
    }
    if (overlaps(m, in, u)) return 0;
    if (overlaps(m, in, s)) {
      nreaders++;
      pool = k;
    }
  }
  return nreaders == 1 && m->layers[pool].in == s && m->layers[pool].op == CG_OP_POOL &&
         m->layers[pool].need_dx && p->bias_by[js] == pool;
}

/* Pixel strides and first channels of the tensors as the backend holds them; a concat in
 * place gives each part's buffers the whole's as their parent; a copied one with
 * skip_from_cat its parts' copies (and gcat, with grad_in_cat). After set_bias_by. */
static void set_views(const cg_model_t *m, int cpad, cg_devplan_t *p) {
  for (int b = 0; b < CG_DEVPLAN_MAX_BUFS; b++) p->parent[b] = -1;
  for (int t = 0; t < m->ntensors; t++) {
    p->ld[t] = t == m->input_tensor ? cpad : m->tensors[t].c;
    p->coff[t] = p->copy_ld[t] = p->copy_coff[t] = p->gcat_coff[t] = 0;
  }
  for (int t = 0; t < m->ntensors; t++) {
    if (p->cat_a[t] < 0) continue;
    const int inplace = cg_devplan_inplace(p, t);
    if (!inplace && !p->opts.skip_from_cat) continue;
    const int parts[2] = {p->cat_a[t], p->cat_b[t]};
    for (int k = 0; k < 2; k++) {
      const int u = parts[k];
      const int coff = m->tensors[u].c_off - m->tensors[t].c_off;
      if (inplace) {
        p->ld[u] = m->tensors[t].c;
        p->coff[u] = coff;
        p->parent[cg_devplan_act(p, u)] = cg_devplan_act(p, t);
        p->parent[cg_devplan_grad(p, u)] = cg_devplan_grad(p, t);
      } else {
        p->copy_ld[u] = m->tensors[t].c;
        p->copy_coff[u] = coff;
        p->parent[cg_devplan_copy(p, u)] = cg_devplan_act(p, t);
      }
    }
    if (inplace || !p->opts.grad_in_cat) continue;
    for (int k = 0; k < 2; k++)
      if (gcat_fits(m, p, t, parts[k], parts[1 - k])) {
        p->gcat_coff[parts[k]] = p->copy_coff[parts[1 - k]];
        p->parent[cg_devplan_gcat(p, parts[k])] = cg_devplan_act(p, t);
        break;
      }
  }
}

/* gcat(s) takes the bytes of the other part's copy: between its first and last access nothing
 * may touch those bytes or the whole concat activation. 0, or -1 with a message. */
static int check_gcat(const cg_devplan_t *p, char *err, size_t errlen) {
  for (int s = 0; s < p->ntensors; s++) {
    const int g = cg_devplan_gcat(p, s), w = p->parent[g];
    if (w < 0) continue;
    int f = -1, l = -1;
    for (int k = 0; k < p->nacc; k++)
      if (p->acc[k].buf == g) {
        if (f < 0) f = p->acc[k].pos;
        l = p->acc[k].pos;
      }
    if (f < 0) continue;
    const int u = p->cat_a[w] == s ? p->cat_b[w] : p->cat_a[w];
    for (int k = 0; k < p->nacc; k++) {
      const cg_devplan_acc_t *a = &p->acc[k];
      if (a->pos < f || a->pos > l) continue;
      if (a->buf == w || a->buf == cg_devplan_copy(p, u)) {
        snprintf(err, errlen, "device plan: the gradient of tensor %d in its concat's bytes is "
                 "live at position %d, where buffer %d is accessed", s, a->pos, a->buf);
        return -1;
      }
    }
  }
  return 0;
}

/* opts.drelu: layer i's dx may carry the ReLU mask of its producer j when j is a convolution
 * with a ReLU (not fused into its consumer already) and i is the only reader of out(j). */
static void set_mask_by(const cg_model_t *m, cg_devplan_t *p) {
  for (int i = 0; i < CG_MAX_LAYERS; i++) p->mask_by[i] = -1;
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (!p->opts.drelu[i] || l->op != CG_OP_CONV || p->is_head[i] || !l->need_dx) {
      p->opts.drelu[i] = 0;
      continue;
    }
    int j = -1;
    for (int k = 0; k < m->nlayers; k++)
      if (m->layers[k].out == l->in) j = k;
    int ok = j >= 0 && m->layers[j].op == CG_OP_CONV && !p->is_head[j] && m->layers[j].relu &&
             p->bias_by[j] < 0 && p->cat_a[l->in] < 0 && m->tensors[l->in].c == m->tensors[l->in].ld;
    for (int k = 0; k < m->nlayers && ok; k++)
      if (k != i && overlaps(m, m->layers[k].in, l->in)) ok = 0;
    if (ok) p->mask_by[j] = i;
    else p->opts.drelu[i] = 0;
  }
}

/* Every read must follow a write of the same bytes within the step: a write of a whole covers
 * its parts, and a whole is written once both its parts are. */
static int check_written(const cg_devplan_t *p, char *err, size_t errlen) {
  unsigned char written[CG_DEVPLAN_MAX_BUFS];
  int nparts[CG_DEVPLAN_MAX_BUFS], nwritten[CG_DEVPLAN_MAX_BUFS];
  memset(written, 0, sizeof written);
  memset(nparts, 0, sizeof nparts);
  memset(nwritten, 0, sizeof nwritten);
  for (int b = 0; b < 3 * p->ntensors; b++) /* gcat is no part of what the whole holds */
    if (p->parent[b] >= 0) nparts[p->parent[b]]++;
  for (int k = 0; k < p->nacc; k++) {
    const cg_devplan_acc_t *a = &p->acc[k];
    const int b = a->buf;
    if (a->mode == CG_DP_W) {
      if (!written[b] && p->parent[b] >= 0) nwritten[p->parent[b]]++;
      written[b] = 1;
      /* the parts and copies hold what the whole holds; gcat(t) holds a gradient, which only
       * the split writes */
      for (int c = 0; c < 3 * p->ntensors; c++)
        if (p->parent[c] == b) written[c] = 1;
      continue;
    }
    const int ok = written[b] || (nparts[b] > 0 && nwritten[b] == nparts[b]);
    if (!ok) {
      const int t = b % p->ntensors;
      snprintf(err, errlen, "device plan: the %s of tensor %d is read at position %d before the "
               "step writes it", b < p->ntensors || (b >= 2 * p->ntensors && b < 3 * p->ntensors)
                                     ? "activation" : "gradient", t, a->pos);
      return -1;
    }
  }
  return 0;
}

int cg_devplan_make(const cg_model_t *m, int n, int cpad, size_t es, size_t align,
                    const cg_devplan_opts_t *opts, cg_devplan_t *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  if (align == 0) align = 256;
  if (n < 1 || es < 1 || cpad < m->tensors[m->input_tensor].c || (align & (align - 1))) {
    snprintf(err, errlen, "device plan: bad arguments (batch %d, cpad %d, element %zu, align %zu)",
             n, cpad, es, align);
    return -1;
  }
  if (opts) p->opts = *opts;
  if (cg_devplan_graph(m, p, err, errlen)) return -1;
  p->ntensors = m->ntensors;
  p->nbufs = 4 * m->ntensors;
  p->align = align;
  for (int i = 0; i < CG_MAX_LAYERS; i++) /* only where there are two operations to overlap */
    if (i >= m->nlayers || m->layers[i].op == CG_OP_POOL || p->is_head[i] || !m->layers[i].need_dx)
      p->opts.concurrent[i] = 0;
  set_bias_by(m, p);
  set_views(m, cpad, p);
  set_mask_by(m, p);
  if (trace(m, p)) {
    snprintf(err, errlen, "device plan: the step does not fit the plan's tables");
    return -1;
  }
  if (check_written(p, err, errlen) || check_gcat(p, err, errlen)) return -1;
  for (int b = 0; b < p->nbufs; b++) p->first_use[b] = p->last_use[b] = -1;
  for (int k = 0; k < p->nacc; k++) {
    const cg_devplan_acc_t *a = &p->acc[k];
    if (p->first_use[a->buf] < 0) p->first_use[a->buf] = a->pos;
    p->last_use[a->buf] = a->pos;
  }
  for (int t = 0; t < m->ntensors; t++) {
    const cg_tensor_t *T = &m->tensors[t];
    const int c = t == m->input_tensor ? cpad : T->c;
    const size_t bytes = (size_t)n * (size_t)T->h * (size_t)T->w * (size_t)c * es;
    p->naive += bytes + (t != m->input_tensor ? bytes : 0);
    const int a = cg_devplan_act(p, t), g = cg_devplan_grad(p, t);
    p->size[a] = p->first_use[a] >= 0 && p->parent[a] < 0 ? bytes : 0;
    p->size[g] = p->first_use[g] >= 0 && p->parent[g] < 0 ? bytes : 0;
  }
  /* unused buffers: an empty interval the planner can place anywhere; a whole lives over its
   * parts' intervals too */
  int first[CG_DEVPLAN_MAX_BUFS], last[CG_DEVPLAN_MAX_BUFS];
  for (int b = 0; b < p->nbufs; b++) {
    first[b] = p->first_use[b] >= 0 ? p->first_use[b] : 0;
    last[b] = p->first_use[b] >= 0 ? p->last_use[b] : 0;
  }
  for (int b = 0; b < p->nbufs; b++) {
    const int q = p->parent[b];
    if (q < 0 || p->first_use[b] < 0) continue;
    if (p->first_use[q] < 0) {
      snprintf(err, errlen, "device plan: a concat part is used but its buffer never is");
      return -1;
    }
    if (first[b] < first[q]) first[q] = first[b];
    if (last[b] > last[q]) last[q] = last[b];
  }
  if (cg_memplan_solve(p->nbufs, p->size, first, last, align, p->offset, &p->arena)) {
    snprintf(err, errlen, "device plan: the arena planner failed");
    return -1;
  }
  char why[256];
  if (cg_memplan_verify(p->nbufs, p->size, first, last, align, p->offset, p->arena, why,
                        sizeof why)) {
    snprintf(err, errlen, "device plan: %s", why);
    return -1;
  }
  for (int b = 0; b < p->nbufs; b++) {
    if (p->parent[b] < 0) continue;
    const int t = b % p->ntensors;
    const int coff = b >= 3 * p->ntensors   ? p->gcat_coff[t]
                     : b >= 2 * p->ntensors ? p->copy_coff[t]
                                            : p->coff[t];
    p->offset[b] = p->offset[p->parent[b]] + (size_t)coff * es;
  }
  /* the intervals the planner used: a whole's span its parts' */
  for (int b = 0; b < p->nbufs; b++)
    if (p->parent[b] < 0 && p->first_use[b] >= 0) {
      p->first_use[b] = first[b];
      p->last_use[b] = last[b];
    }
  p->live_max = cg_memplan_live_max(p->nbufs, p->size, first, last);
  for (int i = 0; i < m->nlayers; i++) {
    if (m->layers[i].op == CG_OP_POOL || p->is_head[i]) continue;
    size_t x, y, dy, dx;
    const size_t s = cg_devplan_search_layout(p, m, i, &x, &y, &dy, &dx);
    if (s > p->search_bytes) p->search_bytes = s;
  }
  return 0;
}

int cg_devplan_allows(const cg_devplan_t *p, int pos, int buf, int mode) {
  if (pos < 0 || pos >= p->npos) return 0;
  for (int k = p->acc_at[pos]; k < p->acc_at[pos + 1]; k++)
    if (p->acc[k].buf == buf && p->acc[k].mode == mode) return 1;
  return 0;
}

size_t cg_devplan_search_layout(const cg_devplan_t *p, const cg_model_t *m, int i, size_t *x,
                                size_t *y, size_t *dy, size_t *dx) {
  const cg_layer_t *l = &m->layers[i];
  const size_t a = p->align;
  /* a part in place is searched at its own place inside a whole-sized range, so its pointer
   * has the alignment and the stride it will have in the step */
  const int bx = cg_devplan_act(p, l->in), by = cg_devplan_act(p, l->out);
  const int bdy = cg_devplan_grad(p, l->out), bdx = cg_devplan_grad(p, l->in);
  size_t end = 0;
  const int bufs[4] = {bx, by, bdy, bdx};
  size_t *outs[4] = {x, y, dy, dx};
  for (int k = 0; k < 4; k++) {
    const int b = bufs[k];
    if (k == 3 && !l->need_dx) {
      *dx = (size_t)-1;
      break;
    }
    const int q = p->parent[b];
    const size_t whole = q >= 0 ? p->size[q] : p->size[b];
    const size_t into = q >= 0 ? p->offset[b] - p->offset[q] : 0;
    *outs[k] = end + into;
    end += align_up(whole, a);
  }
  return end;
}

void cg_devplan_print(const cg_devplan_t *p, const cg_model_t *m) {
  printf("# device plan: %d positions, %d accesses, arena %.1f MiB (live max %.1f MiB, one "
         "buffer each %.1f MiB)\n",
         p->npos, p->nacc, (double)p->arena / 1048576.0, (double)p->live_max / 1048576.0,
         (double)p->naive / 1048576.0);
  printf("# %-4s %-5s %-6s %10s %6s %6s %12s\n", "buf", "kind", "tensor", "MiB", "first", "last",
         "offset MiB");
  for (int b = 0; b < p->nbufs; b++) {
    if (!p->size[b]) continue;
    const int t = b % p->ntensors;
    const int kind = b / p->ntensors;
    printf("  %-4d %-5s %-6d %10.2f %6d %6d %12.2f\n", b,
           kind == 0 ? "act" : kind == 1 ? "grad" : kind == 2 ? "copy" : "gcat", t,
           (double)p->size[b] / 1048576.0, p->first_use[b], p->last_use[b],
           (double)p->offset[b] / 1048576.0);
  }
  (void)m;
}
