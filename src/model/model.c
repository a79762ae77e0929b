/* model.c: builds the UNet layer list, its tensor views and the flat parameter layout
 * (see model.h for the conventions). */
#include "model.h"

#include <stdio.h>
#include <string.h>

#include "rng.h"

typedef struct {
  cg_model_t *m;
  char *err;
  size_t errlen;
  int failed;
} builder_t;

static int add_buf(builder_t *b, int h, int w, int c) {
  cg_model_t *m = b->m;
  if (m->nbufs >= CG_MAX_BUFS) { b->failed = 1; return 0; }
  m->bufs[m->nbufs] = (cg_buf_t){h, w, c};
  return m->nbufs++;
}

static int add_tensor(builder_t *b, int buf, int c_off, int c) {
  cg_model_t *m = b->m;
  if (m->ntensors >= CG_MAX_TENSORS) { b->failed = 1; return 0; }
  cg_tensor_t *t = &m->tensors[m->ntensors];
  t->buf = buf;
  t->c_off = c_off;
  t->h = m->bufs[buf].h;
  t->w = m->bufs[buf].w;
  t->c = c;
  t->ld = m->bufs[buf].c;
  return m->ntensors++;
}

/* A tensor occupying a whole new buffer. */
static int new_tensor(builder_t *b, int h, int w, int c) {
  return add_tensor(b, add_buf(b, h, w, c), 0, c);
}

static void add_layer(builder_t *b, cg_op_t op, const char *name, int k, int relu, int in,
                      int out) {
  cg_model_t *m = b->m;
  if (m->nlayers >= CG_MAX_LAYERS) { b->failed = 1; return; }
  cg_layer_t *l = &m->layers[m->nlayers++];
  memset(l, 0, sizeof *l);
  l->op = op;
  snprintf(l->name, sizeof l->name, "%s", name);
  l->k = k;
  l->relu = relu;
  l->in = in;
  l->out = out;
  l->cin = m->tensors[in].c;
  l->cout = m->tensors[out].c;
  const cg_tensor_t *to = &m->tensors[out];
  double out_px = (double)to->h * to->w;
  switch (op) {
    case CG_OP_CONV:
      l->w_len = (size_t)l->cout * k * k * l->cin;
      l->b_len = (size_t)l->cout;
      l->flops_fwd = 2.0 * out_px * l->cout * k * k * l->cin;
      break;
    case CG_OP_UPCONV:
      l->w_len = (size_t)l->cin * 2 * 2 * l->cout;
      l->b_len = (size_t)l->cout;
      l->flops_fwd = 2.0 * out_px * l->cout * l->cin; /* each output pixel: one tap */
      break;
    case CG_OP_POOL:
      l->flops_fwd = 0;
      break;
  }
  l->w_off = m->nparams;
  l->b_off = m->nparams + l->w_len;
  m->nparams += l->w_len + l->b_len;
  m->flops_fwd += l->flops_fwd;
}

/* Decide for each layer whether its backward overwrites or accumulates into the input
 * gradient: walk backward in reverse layer order, remembering which channel ranges of each
 * buffer's gradient have been written. */
static void plan_backward(cg_model_t *m) {
  /* written[buf] as a bitmask over channel ranges is overkill: record tensor ranges. */
  struct { int buf, lo, hi; } written[CG_MAX_LAYERS];
  int nw = 0;
  /* The logits gradient comes from the loss, and no layer reads the logits: no entry for it. */
  for (int i = m->nlayers - 1; i >= 0; i--) {
    cg_layer_t *l = &m->layers[i];
    const cg_tensor_t *t = &m->tensors[l->in];
    l->need_dx = (l->in != m->input_tensor);
    int overlap = 0;
    for (int j = 0; j < nw; j++)
      if (written[j].buf == t->buf && written[j].lo < t->c_off + t->c && t->c_off < written[j].hi)
        overlap = 1;
    l->accum_dx = l->need_dx && overlap;
    if (l->need_dx) {
      written[nw].buf = t->buf;
      written[nw].lo = t->c_off;
      written[nw].hi = t->c_off + t->c;
      nw++;
    }
  }
}

int cg_model_build(cg_model_t *m, int in_c, int base, int depth, int height, int width,
                   int nclass, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  if (depth < 1 || depth > CG_MAX_DEPTH) {
    snprintf(err, errlen, "model depth %d out of range 1..%d", depth, CG_MAX_DEPTH);
    return -1;
  }
  if (base < 1 || (size_t)base << depth > 65536) {
    snprintf(err, errlen, "model base width %d out of range 1..%d", base, 65536 >> depth);
    return -1;
  }
  if (in_c < 1) {
    snprintf(err, errlen, "input channels %d must be >= 1", in_c);
    return -1;
  }
  if (nclass < 1 || nclass > CG_MAX_CLASSES) {
    snprintf(err, errlen, "number of classes %d out of range 1..%d", nclass, CG_MAX_CLASSES);
    return -1;
  }
  int div = 1 << depth;
  if (height < div || width < div || height % div || width % div) {
    snprintf(err, errlen, "image size %dx%d must be a positive multiple of 2^depth = %d", height,
             width, div);
    return -1;
  }
  builder_t b = {m, err, errlen, 0};
  m->in_c = in_c;
  m->base = base;
  m->depth = depth;
  m->nclass = nclass;
  m->height = height;
  m->width = width;
  for (int l = 0; l <= depth; l++) m->widths[l] = base << l;

  char name[24];
  int h = height, w = width;
  int x = new_tensor(&b, h, w, in_c);
  m->input_tensor = x;
  int cat_buf[CG_MAX_DEPTH + 1]; /* enc l's output is the skip half of cat_buf[l] */
  int cur = x;
  for (int l = 0; l <= depth; l++) {
    int wl = m->widths[l];
    int a = new_tensor(&b, h, w, wl);
    snprintf(name, sizeof name, "enc%d.conv1", l);
    add_layer(&b, CG_OP_CONV, name, 3, 1, cur, a);
    int s;
    if (l < depth) {
      cat_buf[l] = add_buf(&b, h, w, 2 * wl); /* [up | skip] */
      s = add_tensor(&b, cat_buf[l], wl, wl);
    } else {
      s = new_tensor(&b, h, w, wl);
    }
    snprintf(name, sizeof name, "enc%d.conv2", l);
    add_layer(&b, CG_OP_CONV, name, 3, 1, a, s);
    if (l < depth) {
      int p = new_tensor(&b, h / 2, w / 2, wl);
      snprintf(name, sizeof name, "enc%d.pool", l);
      add_layer(&b, CG_OP_POOL, name, 2, 0, s, p);
      cur = p;
      h /= 2;
      w /= 2;
    } else {
      cur = s;
    }
  }
  for (int l = depth - 1; l >= 0; l--) {
    int wl = m->widths[l];
    h *= 2;
    w *= 2;
    int up = add_tensor(&b, cat_buf[l], 0, wl);
    snprintf(name, sizeof name, "dec%d.up", l);
    add_layer(&b, CG_OP_UPCONV, name, 2, 0, cur, up);
    int cat = add_tensor(&b, cat_buf[l], 0, 2 * wl);
    int a = new_tensor(&b, h, w, wl);
    snprintf(name, sizeof name, "dec%d.conv1", l);
    add_layer(&b, CG_OP_CONV, name, 3, 1, cat, a);
    int c2 = new_tensor(&b, h, w, wl);
    snprintf(name, sizeof name, "dec%d.conv2", l);
    add_layer(&b, CG_OP_CONV, name, 3, 1, a, c2);
    cur = c2;
  }
  int logits = new_tensor(&b, h, w, nclass);
  add_layer(&b, CG_OP_CONV, "head", 1, 0, cur, logits);
  m->logits_tensor = logits;
  if (b.failed) {
    snprintf(err, errlen, "model too large for the fixed graph tables");
    return -1;
  }
  plan_backward(m);
  return 0;
}

size_t cg_model_param_count(int in_c, int base, int depth) {
  cg_model_t m;
  char err[128];
  int div = 1 << depth;
  if (cg_model_build(&m, in_c, base, depth, div, div, 1, err, sizeof err) != 0) return 0;
  return m.nparams;
}

void cg_model_init_params(const cg_model_t *m, uint64_t seed, float *params) {
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    if (l->op == CG_OP_POOL) continue;
    /* He-normal: std = sqrt(2 / fan_in); an upconv output pixel sees cin inputs (one tap). */
    double fan_in = l->op == CG_OP_CONV ? (double)l->cin * l->k * l->k : (double)l->cin;
    double std = sqrt(2.0 / fan_in);
    cg_rng_t r = cg_rng_make(seed, CG_RNG_INIT, (uint64_t)i, 0);
    for (size_t j = 0; j < l->w_len; j++) params[l->w_off + j] = (float)(std * cg_rng_normal(&r));
    for (size_t j = 0; j < l->b_len; j++) params[l->b_off + j] = 0.0f;
  }
}

static const char *op_name(cg_op_t op) {
  switch (op) {
    case CG_OP_CONV: return "conv";
    case CG_OP_POOL: return "maxpool";
    case CG_OP_UPCONV: return "upconv";
  }
  return "?";
}

static void fmt_count(size_t n, char *out, size_t len) {
  /* 7760673 -> "7,760,673" */
  char tmp[32];
  int k = snprintf(tmp, sizeof tmp, "%zu", n), o = 0;
  for (int i = 0; i < k && (size_t)o + 2 < len; i++) {
    out[o++] = tmp[i];
    if ((k - i - 1) % 3 == 0 && i != k - 1) out[o++] = ',';
  }
  out[o] = 0;
}

void cg_model_print(const cg_model_t *m) {
  if (m->nclass > 1)
    printf("# UNet: in %d, base %d, depth %d, input %dx%d, %d classes, activations NHWC\n",
           m->in_c, m->base, m->depth, m->height, m->width, m->nclass);
  else
    printf("# UNet: in %d, base %d, depth %d, input %dx%d, activations NHWC\n", m->in_c, m->base,
           m->depth, m->height, m->width);
  printf("# %-3s %-12s %-8s %-9s %-15s %-15s %10s %10s\n", "id", "layer", "op", "kernel",
         "input (HxWxC)", "output (HxWxC)", "params", "MFLOP/img");
  for (int i = 0; i < m->nlayers; i++) {
    const cg_layer_t *l = &m->layers[i];
    const cg_tensor_t *ti = &m->tensors[l->in], *to = &m->tensors[l->out];
    char in[32], out[32], k[16];
    snprintf(in, sizeof in, "%dx%dx%d", ti->h, ti->w, ti->c);
    snprintf(out, sizeof out, "%dx%dx%d", to->h, to->w, to->c);
    if (l->op == CG_OP_CONV)
      snprintf(k, sizeof k, "%dx%d%s", l->k, l->k, l->relu ? "+relu" : "");
    else
      snprintf(k, sizeof k, "2x2/2");
    printf("  %-3d %-12s %-8s %-9s %-15s %-15s %10zu %10.1f\n", i, l->name, op_name(l->op), k, in,
           out, l->w_len + l->b_len, l->flops_fwd / 1e6);
  }
  char n[32];
  fmt_count(m->nparams, n, sizeof n);
  printf("parameters: %s\n", n);
  printf("forward: %.2f GFLOP per image; training (forward + backward): about %.1f GFLOP per image\n",
         m->flops_fwd / 1e9, 3.0 * m->flops_fwd / 1e9);
}

/* The first parameter layer above the model's first layers whose fp32 gradients add up to at
 * least last_bytes (the final bucket is those first layers), or -1 for no such split. */
static int tail_split(const cg_model_t *m, double last_bytes) {
  if (last_bytes <= 0) return -1;
  double sum = 0;
  for (int i = 0; i < m->nlayers; i++) {
    size_t n = m->layers[i].w_len + m->layers[i].b_len;
    if (!n) continue;
    if (sum >= last_bytes) return i;
    sum += 4.0 * (double)n;
  }
  return -1;
}

void cg_buckets_plan(const cg_model_t *m, double bucket_bytes, cg_buckets_t *out) {
  cg_buckets_plan_last(m, bucket_bytes, 0, out);
}

void cg_buckets_plan_last(const cg_model_t *m, double bucket_bytes, double last_bytes,
                          cg_buckets_t *out) {
  memset(out, 0, sizeof *out);
  const int split = tail_split(m, last_bytes);
  for (int i = 0; i < CG_MAX_LAYERS; i++) out->ready_after[i] = -1;
  size_t hi = m->nparams; /* current bucket is [lo, hi) with lo moving down */
  size_t lo = hi;
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const cg_layer_t *l = &m->layers[i];
    if (l->w_len + l->b_len == 0) continue;
    lo = l->w_off;
    double bytes = 4.0 * (double)(hi - lo);
    /* The last parameter layer (in backward order) closes the final bucket. */
    int last = 1;
    for (int j = i - 1; j >= 0; j--)
      if (m->layers[j].w_len + m->layers[j].b_len) { last = 0; break; }
    const int full = (bucket_bytes > 0 && bytes >= bucket_bytes) || i == split;
    if ((full && out->n < CG_MAX_BUCKETS - 1) || last) {
      out->off[out->n] = lo;
      out->len[out->n] = hi - lo;
      out->ready_after[i] = out->n;
      out->n++;
      hi = lo;
    }
  }
}
