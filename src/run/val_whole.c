/* val_whole.c: validation over whole images (--val-mode whole).
 *
 * Rank r takes the validation samples r, r + R, ... whole (cg_source_load_whole: an image file
 * scaled so that its shorter side is --image-size, as predict --resize fit scales it; a shard's
 * record as stored), runs them through the training backend by overlapping tiles blended as
 * predict blends them (tiler.h, --tile-overlap 0.5), and scores the blended logits at that
 * scale against the mask scaled the same way (nearest, as training reads masks): the loss of
 * training's eval (cg_cpu_loss_k: BCE or CE + soft Dice, the ignore label left out) per image,
 * and the classes (logit > 0, or the first argmax) counted like the square mode's. The counts
 * and the loss sum are summed over ranks; the loss is the mean over the images scored. A sample
 * that fails to load ends the job naming it (exit 2), or with --skip-bad is left out and
 * counted, as the loader does. */
#include <math.h> /* NAN */
#include <stdlib.h>
#include <string.h>

#include "comm.h"       /* cg_comm_sum_*: the sums over ranks */
#include "cpu_layers.h" /* cg_cpu_loss_k: the loss as training's eval computes it */
#include "guard.h"      /* cg_guard_beat: validation is progress for the watchdog */
#include "log.h"
#include "metrics.h"
#include "source.h"     /* cg_source_load_whole, CG_BAD_SAMPLE_HINT */
#include "tiler.h"
#include "val_whole.h"

#define VAL_WHOLE_OVERLAP 0.5 /* predict's default --tile-overlap */

/* One image being validated: its mask and, row by row, its blended logits. */
typedef struct {
  int h, w, k;
  uint8_t *mask;  /* h*w */
  float *logits;  /* h*w*k */
} vimg_t;

/* This rank's validation: the next sample, and the sums so far. */
typedef struct {
  cg_run_t *r;
  int64_t next, bad, images;
  double loss;
  cg_confusion_t conf;
  int64_t *confk; /* K >= 2: K x K */
} vfeed_t;

static void vimg_row(void *ctx, int y, const float *l) {
  vimg_t *v = ctx;
  memcpy(v->logits + (size_t)y * v->w * v->k, l, sizeof(float) * (size_t)v->w * v->k);
}

/* Validation sample i whole, as a tiler of an image whose rows go into its vimg_t; NULL with
 * the message in err (a bad sample). */
static cg_tiler_t *open_sample(cg_run_t *r, int64_t i, char *err, size_t errlen) {
  const int k = r->model.nclass;
  int h, w;
  if (cg_source_load_whole(r->val_src, i, &h, &w, NULL, NULL, err, errlen)) return NULL;
  uint8_t *rgb = cg_malloc((size_t)h * w * 3, "validation image");
  vimg_t *v = cg_calloc(1, sizeof *v, "validation image");
  *v = (vimg_t){h, w, k, cg_malloc((size_t)h * w, "validation mask"),
                cg_malloc(sizeof(float) * (size_t)h * w * k, "validation logits")};
  if (cg_source_load_whole(r->val_src, i, &h, &w, rgb, v->mask, err, errlen)) {
    free(rgb);
    free(v->mask);
    free(v->logits);
    free(v);
    return NULL;
  }
  return cg_tiler_open(rgb, h, w, h, w, k, r->model.height, r->model.width, VAL_WHOLE_OVERLAP,
                       vimg_row, v);
}

static cg_tiler_t *vfeed_next(void *ctx) {
  vfeed_t *f = ctx;
  cg_run_t *r = f->r;
  for (; f->next < r->val_src->count; f->next += r->c->size) {
    cg_guard_beat(r->guard, r->last_done, "validation");
    char err[1536];
    cg_tiler_t *t = open_sample(r, f->next, err, sizeof err);
    if (t) {
      f->next += r->c->size;
      return t;
    }
    if (!r->cfg->skip_bad)
      cg_die(CG_EXIT_USAGE, "data: %s%s", err,
             r->cfg->check_data ? CG_BAD_SAMPLE_HINT_CHECKED : CG_BAD_SAMPLE_HINT);
    f->bad++;
  }
  return NULL;
}

/* An image through: its loss and counts taken. */
static void vfeed_end(void *ctx, cg_tiler_t *t, int complete) {
  vfeed_t *f = ctx;
  vimg_t *v = cg_tiler_ctx(t);
  CG_ASSERT(complete); /* no stop flag: every image completes */
  const size_t px = (size_t)v->h * v->w;
  const int ignore = f->r->cfg->ignore_index;
  const float one = 1.0f;
  f->loss += cg_cpu_loss_k(v->logits, v->mask, &one, 1, px, v->k, ignore, 1.0f, NULL, NULL);
  uint8_t *cls = cg_malloc(px, "classes");
  for (size_t q = 0; q < px; q++) {
    const float *l = v->logits + q * v->k;
    int best = 0;
    for (int c = 1; c < v->k; c++)
      if (l[c] > l[best]) best = c;
    cls[q] = v->k == 1 ? (l[0] > 0.0f) : (uint8_t)best;
  }
  if (v->k == 1) cg_confusion_add_ignore(&f->conf, cls, v->mask, px, ignore);
  else cg_confk_add(f->confk, v->k, cls, v->mask, px, ignore);
  f->images++;
  free(cls);
  free(v->mask);
  free(v->logits);
  free(v);
  cg_tiler_close(t);
}

cg_val_t cg_validate_whole(cg_run_t *r) {
  const int K = r->model.nclass;
  vfeed_t f = {.r = r, .next = r->c->rank};
  if (K > 1) f.confk = cg_calloc((size_t)K * K, sizeof(int64_t), "confusion");
  const cg_tiler_feed_t feed = {vfeed_next, vfeed_end, &f, NULL, 0};
  cg_tiler_run(r->ops, r->be, &r->model, r->cfg->batch, &feed);
  cg_val_t res;
  int64_t cnt[6] = {f.conf.tp, f.conf.fp, f.conf.fn, f.conf.tn, f.bad, f.images};
  cg_comm_sum_i64(r->c, cnt, 6);
  cg_report_skipped(r, 0, cnt[4], 1);
  res.conf = (cg_confusion_t){cnt[0], cnt[1], cnt[2], cnt[3]};
  if (K > 1) cg_comm_sum_i64(r->c, f.confk, K * K);
  res.confk = f.confk; /* the caller frees */
  cg_comm_sum_f64(r->c, &f.loss, 1);
  res.images = cnt[5];
  res.loss = res.images > 0 ? f.loss / (double)res.images : NAN;
  return res;
}
