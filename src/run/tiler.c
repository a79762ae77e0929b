/* tiler.c: whole images through the network by overlapping tiles (tiler.h).
 *
 * Tile origins are spread evenly along each axis so that neighbours overlap by at least the
 * overlap and the last tile ends at the image's edge; an axis shorter than a tile gets one tile,
 * centred, whose outside is filled by mirror reflection of the image (numpy's "reflect": the
 * edge pixel is not repeated). Each tile is featurised exactly as a training sample of that size
 * (cg_pack_input on the tile's RGB) and the tiles go through the backend a batch at a time,
 * across image boundaries. The logits are blended per pixel as a weighted mean over the tiles
 * covering it, with the linear "tent" weight (1 + distance to the tile's nearest vertical edge)
 * x (1 + the same for horizontal edges), so a tile's border, where its context is cut off,
 * counts least.
 *
 * Tiles are blended in row-major order, so when the first tile of tile row r arrives no later
 * tile touches the rows above oy[r]: those are final and leave the ring, which holds T rows (the
 * tile height), all a tile row can still touch. A final row's mean logits go to the image's row
 * function directly when the network saw the image at its own size, or else through the
 * bilinear resampling of up_push (PyTorch's F.interpolate(mode="bilinear",
 * align_corners=False), as mmsegmentation scales logits back), which keeps the last two rows.
 * Memory per open image: ih*iw*3 bytes of RGB, plus (T + 2) * iw * K + w * K floats, whatever
 * the image's height. */
#include "tiler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "feat.h" /* cg_pack_input: a tile's input exactly as training makes it */
#include "log.h"  /* cg_malloc, CG_FATAL */

struct cg_tiler {
  int h, w, k, ih, iw, th, tw, ring;
  uint8_t *rgb;        /* ih*iw*3 */
  float *acc, *wsum;   /* ring rows: weighted logit sums (ring*iw*k), weight sums (ring*iw) */
  int done;            /* network rows [0, done) are final */
  float *up;           /* scaled: the last two final network rows (2*iw*k), row r at r % 2 */
  float *row;          /* scaled: one output row of logits (w*k) */
  int *x0, *x1;        /* scaled: each output column's two network columns, and the weight */
  float *lx;           /*   of the second (F.interpolate's, align_corners=False) */
  int out;             /* output rows [0, out) are final */
  int nx, ny, *ox, *oy;
  int next, pending;   /* next tile to cut; tiles cut whose logits have not come back */
  cg_tiler_row_fn row_fn;
  void *ctx;
};

int cg_tiler_origins(int L, int T, double overlap, int *org) {
  if (L <= T) {
    if (org) org[0] = -((T - L) / 2);
    return 1;
  }
  int stride = (int)floor(T * (1.0 - overlap));
  if (stride < 1) stride = 1;
  int n = (L - T + stride - 1) / stride + 1;
  if (org)
    for (int i = 0; i < n; i++) org[i] = (int)((int64_t)i * (L - T) / (n - 1));
  return n;
}

/* Mirror reflection of coordinate i into [0, L) (numpy "reflect": the edge is not repeated). */
static int reflect(int i, int L) {
  if (L == 1) return 0;
  const int p = 2 * (L - 1);
  i %= p;
  if (i < 0) i += p;
  return i < L ? i : p - i;
}

/* Where output coordinate i of a side of n samples the network's side of m (F.interpolate,
 * bilinear, align_corners=False): between *i0 and *i1, the weight of *i1 returned. */
static float up_coord(int i, int n, int m, int *i0, int *i1) {
  double src = ((double)i + 0.5) * m / n - 0.5;
  if (src < 0) src = 0;
  *i0 = (int)src;
  if (*i0 > m - 1) *i0 = m - 1;
  *i1 = *i0 + (*i0 < m - 1);
  return (float)(src - *i0);
}

cg_tiler_t *cg_tiler_open(uint8_t *rgb, int ih, int iw, int h, int w, int k, int th, int tw,
                          double overlap, cg_tiler_row_fn row, void *ctx) {
  cg_tiler_t *t = cg_calloc(1, sizeof *t, "image");
  *t = (cg_tiler_t){.h = h, .w = w, .k = k, .ih = ih, .iw = iw, .th = th, .tw = tw, .ring = th,
                    .rgb = rgb, .row_fn = row, .ctx = ctx};
  t->acc = cg_calloc((size_t)t->ring * iw * k, sizeof(float), "blended logits");
  t->wsum = cg_calloc((size_t)t->ring * iw, sizeof(float), "blend weights");
  if (ih != h || iw != w) {
    t->up = cg_malloc(sizeof(float) * 2 * (size_t)iw * k, "scaled rows");
    t->row = cg_malloc(sizeof(float) * (size_t)w * k, "output row");
    t->x0 = cg_malloc(sizeof(int) * (size_t)w, "columns");
    t->x1 = cg_malloc(sizeof(int) * (size_t)w, "columns");
    t->lx = cg_malloc(sizeof(float) * (size_t)w, "column weights");
    for (int x = 0; x < w; x++) t->lx[x] = up_coord(x, w, iw, &t->x0[x], &t->x1[x]);
  }
  t->nx = cg_tiler_origins(iw, tw, overlap, NULL);
  t->ny = cg_tiler_origins(ih, th, overlap, NULL);
  t->ox = cg_malloc(sizeof(int) * (size_t)t->nx, "tile origins");
  t->oy = cg_malloc(sizeof(int) * (size_t)t->ny, "tile origins");
  cg_tiler_origins(iw, tw, overlap, t->ox);
  cg_tiler_origins(ih, th, overlap, t->oy);
  return t;
}

void cg_tiler_close(cg_tiler_t *t) {
  if (!t) return;
  free(t->rgb);
  free(t->acc);
  free(t->wsum);
  free(t->up);
  free(t->row);
  free(t->x0);
  free(t->x1);
  free(t->lx);
  free(t->ox);
  free(t->oy);
  free(t);
}

void *cg_tiler_ctx(const cg_tiler_t *t) { return t->ctx; }

/* Tile i of t (row-major over origins) as RGB8 th x tw, reflected outside the image. */
static void cut_tile(const cg_tiler_t *t, int i, uint8_t *out) {
  const int x0 = t->ox[i % t->nx], y0 = t->oy[i / t->nx];
  for (int y = 0; y < t->th; y++) {
    const uint8_t *row = t->rgb + (size_t)reflect(y0 + y, t->ih) * t->iw * 3;
    for (int x = 0; x < t->tw; x++)
      memcpy(out + ((size_t)y * t->tw + x) * 3, row + (size_t)reflect(x0 + x, t->iw) * 3, 3);
  }
}

/* Network row r (final, mean logits l: iw*k) of a scaled image: kept, and every output row
 * whose two network rows are now final made from them (F.interpolate's weights). */
static void up_push(cg_tiler_t *t, int r, const float *l) {
  const int k = t->k;
  memcpy(t->up + (size_t)(r % 2) * t->iw * k, l, sizeof(float) * (size_t)t->iw * k);
  for (; t->out < t->h; t->out++) {
    int y0, y1;
    const float ly = up_coord(t->out, t->h, t->ih, &y0, &y1);
    if (y1 > r) break;
    const float *a = t->up + (size_t)(y0 % 2) * t->iw * k;
    const float *b = t->up + (size_t)(y1 % 2) * t->iw * k;
    for (int x = 0; x < t->w; x++) {
      const float lx = t->lx[x];
      const float *a0 = a + (size_t)t->x0[x] * k, *a1 = a + (size_t)t->x1[x] * k;
      const float *b0 = b + (size_t)t->x0[x] * k, *b1 = b + (size_t)t->x1[x] * k;
      float *o = t->row + (size_t)x * k;
      for (int c = 0; c < k; c++)
        o[c] = (1.0f - ly) * ((1.0f - lx) * a0[c] + lx * a1[c]) +
               ly * ((1.0f - lx) * b0[c] + lx * b1[c]);
    }
    t->row_fn(t->ctx, t->out, t->row);
  }
}

/* Makes network rows [t->done, upto) final: the mean logits, to the row function (the image's
 * own size) or up_push (scaled); their ring rows are cleared for the rows below. */
static void flush(cg_tiler_t *t, int upto) {
  const int k = t->k;
  if (upto > t->ih) upto = t->ih;
  for (; t->done < upto; t->done++) {
    const int y = t->done;
    float *acc = t->acc + (size_t)(y % t->ring) * t->iw * k;
    float *ws = t->wsum + (size_t)(y % t->ring) * t->iw;
    for (int x = 0; x < t->iw; x++) {
      const float inv = 1.0f / ws[x];
      for (int c = 0; c < k; c++) acc[(size_t)x * k + c] *= inv;
    }
    if (t->up) up_push(t, y, acc);
    else t->row_fn(t->ctx, y, acc);
    memset(acc, 0, sizeof(float) * (size_t)t->iw * k);
    memset(ws, 0, sizeof(float) * (size_t)t->iw);
  }
}

/* Adds tile i's logits (th x tw x k) into t with the tent weights wy[th] x wx[tw]; the padding
 * of a tile larger than the image falls outside and is dropped. Tiles come in row-major order:
 * the first tile of a tile row makes the rows above it final. */
static void blend_tile(cg_tiler_t *t, int i, const float *lg, const float *wy, const float *wx) {
  const int x0 = t->ox[i % t->nx], y0 = t->oy[i / t->nx], k = t->k;
  if (i % t->nx == 0) flush(t, y0);
  CG_ASSERT(y0 + t->th <= t->done + t->ring || t->ih <= t->ring);
  for (int y = 0; y < t->th; y++) {
    const int iy = y0 + y;
    if (iy < 0 || iy >= t->ih) continue;
    float *acc = t->acc + (size_t)(iy % t->ring) * t->iw * k;
    float *ws = t->wsum + (size_t)(iy % t->ring) * t->iw;
    for (int x = 0; x < t->tw; x++) {
      const int ix = x0 + x;
      if (ix < 0 || ix >= t->iw) continue;
      const float wt = wy[y] * wx[x];
      const float *l = lg + ((size_t)y * t->tw + x) * k;
      for (int c = 0; c < k; c++) acc[(size_t)ix * k + c] += wt * l[c];
      ws[ix] += wt;
    }
  }
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Host side of one step: the tiles' input, and which image and tile each slot holds. */
typedef struct {
  int n, th, tw, in_c, k;
  size_t px;          /* th * tw */
  float *x, *wt, *scratch, *logits; /* scratch: 3 * px per slot */
  uint8_t *y, *pred, *rgb;           /* rgb: px * 3 per slot */
  cg_tiler_t **img;   /* n: the slot's image (NULL: padding) */
  int *tile;
  uint8_t *mirror;    /* n: the slot holds its tile mirrored left-right (--flip's second) */
  float *wy, *wx;     /* tent weights */
  float *avg;         /* --flip: a tile's mean logits (px * k) */
} batch_t;

static void batch_alloc(batch_t *b, int n, const cg_model_t *m) {
  memset(b, 0, sizeof *b);
  b->n = n;
  b->th = m->height;
  b->tw = m->width;
  b->in_c = m->in_c;
  b->k = m->nclass;
  b->px = (size_t)b->th * b->tw;
  b->x = cg_calloc(b->px * b->in_c * (size_t)n, sizeof(float), "batch");
  b->y = cg_calloc(b->px * (size_t)n, 1, "masks");
  b->pred = cg_calloc(b->px * (size_t)n, 1, "pred");
  b->wt = cg_calloc((size_t)n, sizeof(float), "weights");
  b->logits = cg_malloc(sizeof(float) * b->px * (size_t)n * b->k, "logits");
  b->scratch = cg_malloc(sizeof(float) * 3 * b->px * (size_t)n, "scratch");
  b->rgb = cg_malloc(b->px * 3 * (size_t)n, "tile rgb");
  b->img = cg_calloc((size_t)n, sizeof(cg_tiler_t *), "batch images");
  b->tile = cg_calloc((size_t)n, sizeof(int), "batch tiles");
  b->mirror = cg_calloc((size_t)n, 1, "batch mirrors");
  b->avg = cg_malloc(sizeof(float) * b->px * b->k, "mean logits");
  b->wy = cg_malloc(sizeof(float) * (size_t)b->th, "tent");
  b->wx = cg_malloc(sizeof(float) * (size_t)b->tw, "tent");
  for (int i = 0; i < b->th; i++) b->wy[i] = (float)(1 + (i < b->th - 1 - i ? i : b->th - 1 - i));
  for (int i = 0; i < b->tw; i++) b->wx[i] = (float)(1 + (i < b->tw - 1 - i ? i : b->tw - 1 - i));
}

static void batch_free(batch_t *b) {
  free(b->x);
  free(b->y);
  free(b->pred);
  free(b->wt);
  free(b->logits);
  free(b->scratch);
  free(b->rgb);
  free(b->img);
  free(b->tile);
  free(b->mirror);
  free(b->avg);
  free(b->wy);
  free(b->wx);
}

/* A th x tw tile of c bytes a pixel mirrored left-right in place. */
static void mirror_rows(void *px, int th, int tw, size_t c) {
  uint8_t *p = px;
  for (int y = 0; y < th; y++)
    for (int x = 0; x < tw / 2; x++) {
      uint8_t *a = p + ((size_t)y * tw + x) * c, *z = p + ((size_t)y * tw + tw - 1 - x) * c;
      for (size_t i = 0; i < c; i++) {
        const uint8_t t = a[i];
        a[i] = z[i];
        z[i] = t;
      }
    }
}

/* Fills the batch with the next tiles of feed's images, opening images as needed (*cur: the
 * one being cut); with feed->flip each tile takes two slots, itself and its mirror. Returns the
 * number of slots used; the rest of the batch is padding (weight 0). The tiles are cut and
 * featurised in parallel (OpenMP), each slot in its own buffers. */
static int fill_batch(batch_t *b, const cg_tiler_feed_t *feed, cg_tiler_t **cur) {
  const int per = feed->flip ? 2 : 1;
  int j = 0;
  while (j + per <= b->n) {
    if (!*cur || (*cur)->next == (*cur)->nx * (*cur)->ny) {
      *cur = feed->next(feed->ctx); /* the previous one lives on in the batch's slots */
      if (!*cur) break;
    }
    cg_tiler_t *t = *cur;
    for (int s = 0; s < per; s++) {
      b->img[j + s] = t;
      b->tile[j + s] = t->next;
      b->mirror[j + s] = (uint8_t)s;
      b->wt[j + s] = 1.0f;
    }
    t->next++;
    t->pending++;
    j += per;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < j; i++) {
    uint8_t *rgb = b->rgb + (size_t)i * b->px * 3;
    cut_tile(b->img[i], b->tile[i], rgb);
    if (b->mirror[i]) mirror_rows(rgb, b->th, b->tw, 3);
    cg_pack_input(rgb, b->th, b->tw, CG_NFEAT, b->scratch + (size_t)i * 3 * b->px,
                  b->x + (size_t)i * b->px * b->in_c);
  }
  for (int i = j; i < b->n; i++) {
    memset(b->x + (size_t)i * b->px * b->in_c, 0, sizeof(float) * b->px * b->in_c);
    b->img[i] = NULL;
    b->mirror[i] = 0;
    b->wt[i] = 0.0f;
  }
  return j;
}

void cg_tiler_run(const cg_backend_ops_t *ops, cg_backend_t *be, const cg_model_t *m, int n,
                  const cg_tiler_feed_t *feed) {
  CG_ASSERT(n >= (feed->flip ? 2 : 1));
  batch_t b;
  batch_alloc(&b, n, m);
  cg_tiler_t *cur = NULL;
  for (;;) {
    if (feed->stop && *feed->stop) break;
    if (feed->step) feed->step(feed->ctx);
    const int real = fill_batch(&b, feed, &cur);
    if (real == 0) break;
    cg_batch_t batch = {b.n, b.th, b.tw, b.in_c, b.x, b.y, b.wt, b.n, NULL, b.pred, 0};
    ops->upload(be, 0, &batch);
    ops->eval_step(be, 0);
    cg_step_out_t out;
    ops->fetch(be, &out);
    if (ops->get_logits(be, b.logits)) CG_FATAL("backend %s: cannot read the logits", ops->name);
    const int per = feed->flip ? 2 : 1;
    for (int j = 0; j < real; j += per) {
      cg_tiler_t *t = b.img[j];
      const float *lg = b.logits + (size_t)j * b.px * b.k;
      if (per == 2) { /* the mean of the tile's logits and its mirror's, mirrored back */
        mirror_rows(b.logits + (size_t)(j + 1) * b.px * b.k, b.th, b.tw, sizeof(float) * b.k);
        for (size_t q = 0; q < b.px * b.k; q++) b.avg[q] = 0.5f * (lg[q] + lg[b.px * b.k + q]);
        lg = b.avg;
      }
      blend_tile(t, b.tile[j], lg, b.wy, b.wx);
      if (--t->pending == 0 && t->next == t->nx * t->ny) {
        flush(t, t->ih);
        CG_ASSERT(!t->up || t->out == t->h);
        if (t == cur) cur = NULL;
        feed->end(feed->ctx, t, 1);
      }
    }
  }
  if (cur) feed->end(feed->ctx, cur, 0); /* stopped inside an image */
  batch_free(&b);
}
