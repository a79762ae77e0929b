/* ref_layers.c: the naive double-precision reference (see ref_layers.h). Every output element
 * is computed straight from its definition, one loop per index, so it can be checked by eye. */
#include "ref_layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static double *at(const cg_ref_view_t *v, int i, int y, int x) {
  return v->p + (((size_t)i * v->h + y) * v->w + x) * v->ld;
}

void cg_ref_conv_fwd(const cg_ref_view_t *x, const double *wt, const double *bias, int k, int relu,
                     const cg_ref_view_t *y) {
  CG_ASSERT(k == 1 || k == 3);
  CG_ASSERT(x->n == y->n && x->h == y->h && x->w == y->w);
  const int pad = k / 2, cin = x->c, cout = y->c;
  for (int i = 0; i < x->n; i++)
    for (int oy = 0; oy < y->h; oy++)
      for (int ox = 0; ox < y->w; ox++)
        for (int co = 0; co < cout; co++) {
          double s = bias[co];
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
              int iy = oy + ky - pad, ix = ox + kx - pad;
              if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) continue;
              for (int ci = 0; ci < cin; ci++)
                s += at(x, i, iy, ix)[ci] * wt[(((size_t)co * k + ky) * k + kx) * cin + ci];
            }
          at(y, i, oy, ox)[co] = relu && s < 0 ? 0.0 : s;
        }
}

void cg_ref_upconv_fwd(const cg_ref_view_t *x, const double *wt, const double *bias,
                       const cg_ref_view_t *y) {
  CG_ASSERT(y->n == x->n && y->h == 2 * x->h && y->w == 2 * x->w);
  const int cin = x->c, cout = y->c;
  for (int i = 0; i < y->n; i++)
    for (int oy = 0; oy < y->h; oy++)
      for (int ox = 0; ox < y->w; ox++)
        for (int co = 0; co < cout; co++) {
          int a = oy / 2, u = oy % 2, b = ox / 2, v = ox % 2;
          double s = bias[co];
          for (int ci = 0; ci < cin; ci++)
            s += at(x, i, a, b)[ci] * wt[(((size_t)ci * 2 + u) * 2 + v) * cout + co];
          at(y, i, oy, ox)[co] = s;
        }
}

void cg_ref_upconv_bwd_data(const cg_ref_view_t *dy, const double *wt, const cg_ref_view_t *dx) {
  CG_ASSERT(dy->n == dx->n && dy->h == 2 * dx->h && dy->w == 2 * dx->w);
  const int cin = dx->c, cout = dy->c;
  for (int i = 0; i < dx->n; i++)
    for (int a = 0; a < dx->h; a++)
      for (int b = 0; b < dx->w; b++)
        for (int ci = 0; ci < cin; ci++) {
          double s = 0;
          for (int u = 0; u < 2; u++)
            for (int v = 0; v < 2; v++)
              for (int co = 0; co < cout; co++)
                s += at(dy, i, 2 * a + u, 2 * b + v)[co] *
                     wt[(((size_t)ci * 2 + u) * 2 + v) * cout + co];
          at(dx, i, a, b)[ci] = s;
        }
}

void cg_ref_upconv_bwd_filter(const cg_ref_view_t *x, const cg_ref_view_t *dy, double *dw,
                              double *db) {
  CG_ASSERT(dy->n == x->n && dy->h == 2 * x->h && dy->w == 2 * x->w);
  const int cin = x->c, cout = dy->c;
  for (int ci = 0; ci < cin; ci++)
    for (int u = 0; u < 2; u++)
      for (int v = 0; v < 2; v++)
        for (int co = 0; co < cout; co++) {
          double s = 0;
          for (int i = 0; i < x->n; i++)
            for (int a = 0; a < x->h; a++)
              for (int b = 0; b < x->w; b++)
                s += at(x, i, a, b)[ci] * at(dy, i, 2 * a + u, 2 * b + v)[co];
          dw[(((size_t)ci * 2 + u) * 2 + v) * cout + co] = s;
        }
  for (int co = 0; co < cout && db; co++) {
    double s = 0;
    for (int i = 0; i < dy->n; i++)
      for (int y = 0; y < dy->h; y++)
        for (int x2 = 0; x2 < dy->w; x2++) s += at(dy, i, y, x2)[co];
    db[co] = s;
  }
}

/* The layer's weight as the kernel reads it: wk(co, r, s, ci) of fprop.h. */
static float fprop_wk(const cg_ref_fprop_t *t, const float *w, int co, int tap, int ci) {
  if (!t->dgrad) return w[((size_t)co * 9 + tap) * t->cin + ci];
  return w[((size_t)ci * 9 + (8 - tap)) * t->cout + co];
}

void cg_ref_fprop(const cg_ref_fprop_t *t, const float *x, const float *w, const float *bias,
                  const float *m, const float *old, double *y) {
  const int h = t->h, wd = t->w, ci_n = t->cin, co_n = t->cout;
  const int64_t rows = (int64_t)t->n * h;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t g = 0; g < rows; g++) {
    const int64_t n = g / h;
    const int yy0 = (int)(g % h);
    for (int xx = 0; xx < wd; xx++) {
      double *out = y + ((size_t)g * wd + xx) * co_n;
      for (int co = 0; co < co_n; co++) out[co] = 0;
      for (int tap = 0; tap < 9; tap++) {
        const int yy = yy0 + tap / 3 - 1, x2 = xx + tap % 3 - 1;
        if (yy < 0 || yy >= h || x2 < 0 || x2 >= wd) continue;
        const float *xv = x + (((size_t)n * h + yy) * wd + x2) * ci_n;
        for (int co = 0; co < co_n; co++) {
          double s = 0;
          for (int ci = 0; ci < ci_n; ci++) s += (double)xv[ci] * fprop_wk(t, w, co, tap, ci);
          out[co] += s;
        }
      }
      const size_t p = (size_t)g * wd + xx;
      for (int co = 0; co < co_n; co++) {
        double v = out[co];
        if (t->bias) v += bias[co];
        if (t->relu && !(v > 0)) v = 0;
        if (t->mask && !(m[p * co_n + co] > 0)) v = 0;
        if (t->accum) v += old[p * co_n + co];
        out[co] = v;
      }
    }
  }
}

void cg_ref_conv3_wgrad(int n_img, int h, int w, int ci_n, int co_n, const float *x,
                        const float *dy, double *dw, double *db) {
  enum { NCH = 16 };
  const size_t wl = (size_t)co_n * 9 * ci_n;
  const int64_t rows = (int64_t)n_img * h;
  double *part = cg_calloc(wl * NCH, sizeof(double), "reference partials");
  double *pdb = cg_calloc((size_t)co_n * NCH, sizeof(double), "reference db partials");
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < NCH; c++) {
    double *acc = part + wl * c, *adb = pdb + (size_t)co_n * c;
    for (int64_t g = rows * c / NCH; g < rows * (c + 1) / NCH; g++) {
      const int64_t n = g / h;
      const int y = (int)(g % h);
      for (int xx = 0; xx < w; xx++) {
        const float *d = dy + ((size_t)g * w + xx) * co_n;
        for (int co = 0; co < co_n; co++) adb[co] += d[co];
        for (int tap = 0; tap < 9; tap++) {
          const int yy = y + tap / 3 - 1, x2 = xx + tap % 3 - 1;
          if (yy < 0 || yy >= h || x2 < 0 || x2 >= w) continue;
          const float *xv = x + (((size_t)n * h + yy) * w + x2) * ci_n;
          for (int co = 0; co < co_n; co++) {
            const double dv = d[co];
            double *a = acc + ((size_t)co * 9 + tap) * ci_n;
            for (int ci = 0; ci < ci_n; ci++) a[ci] += dv * xv[ci];
          }
        }
      }
    }
  }
  for (size_t i = 0; i < wl; i++) {
    double s = 0;
    for (int c = 0; c < NCH; c++) s += part[wl * c + i];
    dw[i] = s;
  }
  for (int co = 0; co < co_n; co++) {
    double s = 0;
    for (int c = 0; c < NCH; c++) s += pdb[(size_t)co_n * c + co];
    db[co] = s;
  }
  free(part);
  free(pdb);
}

void cg_ref_maxpool_fwd(const cg_ref_view_t *x, const cg_ref_view_t *y) {
  CG_ASSERT(y->n == x->n && y->h * 2 == x->h && y->w * 2 == x->w && y->c == x->c);
  for (int i = 0; i < y->n; i++)
    for (int oy = 0; oy < y->h; oy++)
      for (int ox = 0; ox < y->w; ox++)
        for (int c = 0; c < y->c; c++) {
          double v = -INFINITY;
          for (int u = 0; u < 2; u++)
            for (int w = 0; w < 2; w++) v = fmax(v, at(x, i, 2 * oy + u, 2 * ox + w)[c]);
          at(y, i, oy, ox)[c] = v;
        }
}

double cg_ref_loss(const double *logits, const uint8_t *mask, const double *weight, int n,
                   size_t hw, double *per_sample) {
  double total = 0;
  for (int i = 0; i < n; i++) {
    double bce = 0, sp = 0, sy = 0, spy = 0;
    for (size_t j = 0; j < hw; j++) {
      double z = logits[(size_t)i * hw + j], y = mask[(size_t)i * hw + j] ? 1.0 : 0.0;
      double p = 1.0 / (1.0 + exp(-z));
      bce += -(y * log(p) + (1.0 - y) * log(1.0 - p));
      sp += p;
      sy += y;
      spy += p * y;
    }
    double li = bce / (double)hw + 1.0 - (2.0 * spy + 1.0) / (sp + sy + 1.0);
    if (per_sample) per_sample[i] = li;
    if (weight[i] != 0.0) total += weight[i] * li;
  }
  return total;
}

static cg_ref_view_t tensor_view(const cg_model_t *m, double *const *bufs, int t, int n) {
  const cg_tensor_t *tt = &m->tensors[t];
  cg_ref_view_t v = {bufs[tt->buf] + tt->c_off, n, tt->h, tt->w, tt->c, tt->ld};
  return v;
}

double cg_ref_net_loss(const cg_model_t *m, const double *params, int n, const double *x,
                       const uint8_t *y, const double *weight) {
  double *bufs[CG_MAX_BUFS] = {0};
  for (int b = 0; b < m->nbufs; b++) {
    bufs[b] = cg_calloc((size_t)n * cg_buf_elems(m, b), sizeof(double), "reference activations");
  }
  const cg_tensor_t *tin = &m->tensors[m->input_tensor];
  CG_ASSERT(tin->c_off == 0 && tin->ld == m->in_c);
  memcpy(bufs[tin->buf], x, sizeof(double) * n * cg_buf_elems(m, tin->buf));
  for (int li = 0; li < m->nlayers; li++) {
    const cg_layer_t *l = &m->layers[li];
    cg_ref_view_t vi = tensor_view(m, bufs, l->in, n), vo = tensor_view(m, bufs, l->out, n);
    switch (l->op) {
      case CG_OP_CONV:
        cg_ref_conv_fwd(&vi, params + l->w_off, params + l->b_off, l->k, l->relu, &vo);
        break;
      case CG_OP_UPCONV:
        cg_ref_upconv_fwd(&vi, params + l->w_off, params + l->b_off, &vo);
        break;
      case CG_OP_POOL:
        cg_ref_maxpool_fwd(&vi, &vo);
        break;
    }
  }
  const cg_tensor_t *tl = &m->tensors[m->logits_tensor];
  CG_ASSERT(tl->c == 1 && tl->ld == 1 && tl->c_off == 0);
  double loss =
      cg_ref_loss(bufs[tl->buf], y, weight, n, (size_t)m->height * m->width, NULL);
  for (int b = 0; b < m->nbufs; b++) free(bufs[b]);
  return loss;
}
