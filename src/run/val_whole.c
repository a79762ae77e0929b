/* val_whole.c: validation over whole images (--val-mode whole and full).
 *
 * Every validation sample is taken whole (cg_source_load_whole: an image file scaled so that
 * its shorter side is --image-size, as predict --resize fit scales it up to an aspect of 64:1,
 * where pack --store whole's limit squeezes the longer side; a shard's record as stored), run
 * through the training backend by overlapping tiles blended as predict blends them (tiler.h,
 * overlap 0.5), and scored at that scale against the mask scaled the same way
 * (nearest, as training reads masks): the loss of training's eval per image (cg_loss_sums_t:
 * BCE or CE + soft Dice, the ignore label left out, the same bits as cg_cpu_loss_k) and the
 * classes (logit > 0, or the first argmax) counted like the square mode's. Both are taken row by
 * row as the tiler makes rows final, so an open image costs its RGB and mask, not its logits.
 * --val-mode full scores at each image's own size instead, as predict --resize fit does: the
 * tiler scales the blended logits back (bilinear, F.interpolate's align_corners=False) and the
 * mask is read at the file's size (cg_source_load_full; a shard has no such masks: refused at
 * start-up).
 *
 * The images are dealt to the ranks by their tile counts (largest first, in snake order), so
 * that a few wide images do not leave one rank working while the others wait; a rank that is
 * done waits for the others (cg_val_poll_finish: watched by the watchdog), and the counts and loss
 * sums are then summed over ranks; the loss is the mean over the images scored. A sample that
 * fails to load ends the job naming it (exit 2), or with --skip-bad is named (the first 10),
 * left out and counted. A stop signal on any rank ends every rank's pass at its next step of
 * tiles (cg_val_poll), without figures (cg_val_gather). */
#include <stdlib.h>
#include <string.h>

#include "cpu_layers.h" /* cg_loss_sums_t: the loss as training's eval computes it */
#include "guard.h"      /* cg_guard_beat: validation is progress for the watchdog */
#include "log.h"
#include "metrics.h"
#include "source.h"     /* cg_source_load_whole, CG_BAD_SAMPLE_HINT */
#include "tiler.h"
#include "val_whole.h"

#define VAL_WHOLE_OVERLAP 0.5 /* predict's default --tile-overlap */
#define VAL_BAD_LOG_MAX 10    /* bad samples named, as the loader names them */

typedef struct vfeed vfeed_t;

/* One image being validated: its mask, and the sums of the rows made final so far. */
typedef struct {
  vfeed_t *f;
  int h, w, k;
  uint8_t *mask;  /* h*w */
  uint8_t *cls;   /* w: one row's classes */
  cg_loss_sums_t sums;
} vimg_t;

/* This rank's validation: its samples, the next one, and the sums so far. */
struct vfeed {
  cg_run_t *r;
  volatile sig_atomic_t stop; /* a stop signal: no further batch of tiles (the tiler's stop) */
  cg_val_poll_t vp;           /* the ranks' agreement on a stop signal and on the end */
  int full;                   /* --val-mode full: scored at each image's own size */
  int64_t *mine, nmine, next, bad;
  double loss;
  cg_confusion_t conf;
  int64_t *confk;   /* K >= 2: K x K */
  cg_loss_opt_t lo; /* the loss's options, as run_setup.c's backend_cfg gives the backends */
};

/* Output row y of an image made final: its loss terms and its classes counted. */
static void vimg_row(void *ctx, int y, const float *l) {
  vimg_t *v = ctx;
  const int ignore = v->f->r->cfg->ignore_index;
  const uint8_t *m = v->mask + (size_t)y * v->w;
  cg_cpu_loss_sums_add(&v->sums, l, m, (size_t)v->w, v->k, ignore, &v->f->lo);
  for (int x = 0; x < v->w; x++) v->cls[x] = cg_cpu_class_of(l + (size_t)x * v->k, v->k);
  if (v->k == 1) cg_confusion_add_ignore(&v->f->conf, v->cls, m, (size_t)v->w, ignore);
  else cg_confk_add(v->f->confk, v->k, v->cls, m, (size_t)v->w, ignore);
}

static void vimg_free(vimg_t *v) {
  free(v->mask);
  free(v->cls);
  free(v);
}

/* Sample i whole (h x w) and the size its mask is scored at (mh x mw: full, the file's own;
 * else h x w); rgb NULL: the sizes only. 0, or -1 with err (a bad sample). */
static int load_sample(const vfeed_t *f, int64_t i, int *h, int *w, int *mh, int *mw,
                       uint8_t *rgb, uint8_t *mask, char *err, size_t errlen) {
  cg_source_t *src = f->r->val_src;
  if (f->full) return cg_source_load_full(src, i, h, w, mh, mw, rgb, mask, err, errlen) ? -1 : 0;
  const int rc = cg_source_load_whole(src, i, h, w, rgb, mask, err, errlen);
  *mh = *h;
  *mw = *w;
  return rc;
}

/* Validation sample i whole, as a tiler of an image whose rows (at the mask's size) go to
 * vimg_row; NULL with the message in err (a bad sample). */
static cg_tiler_t *open_sample(vfeed_t *f, int64_t i, char *err, size_t errlen) {
  cg_run_t *r = f->r;
  int h, w, mh, mw;
  if (load_sample(f, i, &h, &w, &mh, &mw, NULL, NULL, err, errlen)) return NULL;
  uint8_t *rgb = cg_malloc((size_t)h * w * 3, "validation image");
  vimg_t *v = cg_calloc(1, sizeof *v, "validation image");
  v->f = f;
  v->h = mh;
  v->w = mw;
  v->k = r->model.nclass;
  v->mask = cg_malloc((size_t)mh * mw, "validation mask");
  v->cls = cg_malloc((size_t)mw, "validation classes");
  if (load_sample(f, i, &h, &w, &mh, &mw, rgb, v->mask, err, errlen)) {
    free(rgb);
    vimg_free(v);
    return NULL;
  }
  return cg_tiler_open(rgb, h, w, mh, mw, v->k, r->model.height, r->model.width,
                       VAL_WHOLE_OVERLAP, vimg_row, v);
}

static cg_tiler_t *vfeed_next(void *ctx) {
  vfeed_t *f = ctx;
  cg_run_t *r = f->r;
  for (; f->next < f->nmine; f->next++) {
    cg_guard_beat(r->guard, r->last_done, "validation");
    char err[1536];
    cg_tiler_t *t = open_sample(f, f->mine[f->next], err, sizeof err);
    if (t) {
      f->next++;
      return t;
    }
    if (!r->cfg->skip_bad)
      cg_die(CG_EXIT_USAGE, "data: %s%s", err,
             r->cfg->check_data ? CG_BAD_SAMPLE_HINT_CHECKED : CG_BAD_SAMPLE_HINT);
    if (++f->bad <= VAL_BAD_LOG_MAX)
      cg_log_warn("skipping a bad sample (--skip-bad): %s%s", err,
                  f->bad == VAL_BAD_LOG_MAX ? " (further bad samples are only counted)" : "");
  }
  return NULL;
}

/* Before each step of tiles: progress, for the watchdog; a stop signal on any rank ends the
 * pass at the next step (a preempted job has seconds to write its checkpoint). */
static void vfeed_step(void *ctx) {
  vfeed_t *f = ctx;
  cg_guard_beat(f->r->guard, f->r->last_done, "validation");
  if (cg_val_poll(f->r, &f->vp, 0)) f->stop = 1;
}

/* An image through: its loss taken (one cut short by a stop counts for nothing). */
static void vfeed_end(void *ctx, cg_tiler_t *t, int complete) {
  vfeed_t *f = ctx;
  vimg_t *v = cg_tiler_ctx(t);
  if (complete) f->loss += cg_cpu_loss_sums_value(&v->sums, v->k, &f->lo);
  vimg_free(v);
  cg_tiler_close(t);
}

/* Sorting samples by tile count, largest first, then by index. */
typedef struct {
  int64_t tiles, index;
} weighed_t;

static int cmp_weighed(const void *a, const void *b) {
  const weighed_t *x = a, *y = b;
  if (x->tiles != y->tiles) return x->tiles > y->tiles ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

/* This rank's samples: all of them ordered by tile count (from their sizes: a file's header
 * seen at open, a shard's table), largest first, dealt to the ranks in snake order (0..R-1,
 * R-1..0, ...). Every rank computes the same deal. */
static void deal(vfeed_t *f) {
  const cg_run_t *r = f->r;
  const int64_t n = r->val_src->count;
  const int R = r->c->size;
  weighed_t *wt = cg_malloc(sizeof(weighed_t) * (size_t)(n ? n : 1), "validation order");
  for (int64_t i = 0; i < n; i++) {
    char err[1536];
    int h = 1, w = 1, mh, mw; /* a size that cannot be told: one tile (the load will say why) */
    if (load_sample(f, i, &h, &w, &mh, &mw, NULL, NULL, err, sizeof err)) h = w = 1;
    wt[i].tiles = (int64_t)cg_tiler_origins(h, r->model.height, VAL_WHOLE_OVERLAP, NULL) *
                  cg_tiler_origins(w, r->model.width, VAL_WHOLE_OVERLAP, NULL);
    wt[i].index = i;
  }
  qsort(wt, (size_t)n, sizeof *wt, cmp_weighed);
  f->mine = cg_malloc(sizeof(int64_t) * (size_t)(n / R + 1), "validation samples");
  for (int64_t p = 0; p < n; p++) {
    const int64_t round = p / R, pos = p % R;
    if ((round % 2 ? R - 1 - pos : pos) == r->c->rank) f->mine[f->nmine++] = wt[p].index;
  }
  free(wt);
}

cg_val_t cg_validate_whole(cg_run_t *r) {
  const int K = r->model.nclass;
  const cg_config_t *cfg = r->cfg;
  vfeed_t f = {.r = r, .full = !strcmp(cfg->val_mode, "full")};
  f.lo = (cg_loss_opt_t){(float)cfg->dice_weight, cg_cfg_class_weight(cfg),
                         K > 1 ? (float)cfg->label_smoothing : 0.0f, (float)cfg->focal_gamma,
                         0.0f, 0}; /* validation does not mine (--ohem-thresh) */
  if (K > 1) f.confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
  deal(&f);
  const cg_tiler_feed_t feed = {vfeed_next, vfeed_end, &f, &f.stop, 0, vfeed_step};
  cg_tiler_run(r->ops, r->be, &r->model, r->cfg->batch, &feed);
  free(f.mine);
  cg_val_poll_finish(r, &f.vp); /* the other ranks may have more tiles */
  /* every sample scored or left out, unless stopped */
  return cg_val_gather(r, f.conf, f.confk, f.bad, f.loss, f.vp.stop);
}
