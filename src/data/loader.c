/* loader.c: helper threads filling a bounded ring of batch slots (see loader.h).
 *
 * One mutex guards the schedule: the next task (batch k, sample i), how many batches have been
 * released, each slot's fill count, and the queue of metrics tasks. Workers prepare samples
 * outside the lock; the sample indices of a batch are drawn from the sampler under the lock by
 * the first worker to reach it. Metrics tasks (confusion counts of a returned batch) go first:
 * a slot is reused only once its metrics are counted. Slots are freed in batch order
 * (`released` advances over consecutive freed batches), whatever order tasks finish in.
 * Condition variables: `work` wakes helpers (a slot freed, a metrics task queued), `ready`
 * wakes the consumer when a batch is complete, `mdone` when a metrics task finished.
 *
 * A sample that fails to load without skip_bad: the helper records the message and stops; the
 * consumer, woken at once, ends the job with exit code 2 (cg_die: MPI_Abort, so every rank
 * ends) naming the file. Helpers never call MPI (FUNNELED); the consumer is the driving thread,
 * which comes back to cg_loader_next within a step. */
#include "loader.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "feat.h"
#include "sampler.h"
#include "log.h"
#include "nvtx.h"
#include "rng.h"
#include "trace.h"

typedef struct {
  cg_host_batch_t b;
  int64_t k;      /* batch number held, -1 none */
  int filled;     /* samples done */
  int indexed;    /* sample indices drawn */
  int64_t freed;  /* batch number whose slot use is over (released, metrics counted), -1 */
} slot_t;

struct cg_loader {
  cg_loader_cfg_t cfg;
  cg_sampler_t sampler;
  int64_t spe;           /* steps per epoch */
  int64_t nbatches;      /* batches of the run: nsteps x the sampler's micro-batches a step */
  int nslots;
  slot_t *slots;
  pthread_mutex_t mu;
  pthread_cond_t work, ready, mdone;
  int cpu_count;         /* samples per batch packed on the CPU */
  int *mq;               /* metrics queue: slot indices, ring of nslots */
  int mq_head, mq_len, m_running;
  cg_confusion_t conf;   /* counted so far, guarded by mu */
  int nclass, ignore;    /* metrics: classes (>= 1) and the ignore label (-1 none) */
  int64_t *confk;        /* nclass >= 2: K x K counts so far, guarded by mu */
  cg_loader_costs_t costs; /* guarded by mu */
  int64_t next_task;     /* k * batch + i */
  int64_t released;      /* batches released */
  int64_t consumed;      /* batches handed to the consumer */
  int64_t returned;      /* batches given back by the consumer */
  int stop;
  int nworkers;
  pthread_t *threads;
  double *busy;          /* per worker seconds, guarded by mu */
  double busy_serial;
  char fail_msg[1024];
  int failed;
  int64_t bad;           /* skipped samples not yet taken (skip_bad), guarded by mu */
  int64_t bad_logged;    /* skipped samples logged so far */
  /* serial-mode scratch */
  uint8_t *rgb, *mask;
  float *scratch;
};

static void *slot_alloc(cg_loader_t *l, size_t bytes) {
  void *p = l->cfg.alloc ? l->cfg.alloc(bytes, l->cfg.alloc_ctx) : malloc(bytes);
  if (!p) CG_FATAL("out of memory: %zu bytes for a batch slot", bytes);
  return p;
}

static void slot_free(cg_loader_t *l, void *p) {
  if (!p) return;
  if (l->cfg.free) l->cfg.free(p, l->cfg.alloc_ctx);
  else free(p);
}

/* Draws the indices of batch k into its slot (under the lock). */
static void index_batch(cg_loader_t *l, slot_t *s, int64_t k) {
  const int A = l->sampler.accum;
  int64_t step = l->cfg.first_step + k / A;
  int64_t epoch = step / l->spe, in_epoch = step % l->spe;
  int global = 0;
  s->b.micro = (int)(k % A);
  s->b.real = cg_sampler_micro(&l->sampler, epoch, in_epoch, s->b.micro, s->b.index, &global);
  s->b.global = global;
  s->b.nbad = 0;
  s->b.step = step;
  s->b.epoch = epoch;
  s->b.n_cpu = l->cpu_count;
  for (int i = 0; i < s->b.n; i++) s->b.weight[i] = s->b.index[i] >= 0 ? 1.0f / (float)global : 0.0f;
  s->indexed = 1;
}

#define BAD_LOG_MAX 10

/* Turns sample i of a batch into padding after a failed load (skip_bad; under the lock). */
static void mark_bad(cg_loader_t *l, slot_t *s, int i, const char *err) {
  s->b.weight[i] = 0.0f;
  s->b.index[i] = -1;
  s->b.real--;
  s->b.nbad++;
  l->bad++;
  if (l->bad_logged < BAD_LOG_MAX) {
    l->bad_logged++;
    cg_log_warn("skipping a bad sample (--skip-bad): %s%s", err,
                l->bad_logged == BAD_LOG_MAX ? " (further bad samples are only counted)" : "");
  }
}

/* Spins for ms milliseconds (test-only helper cost; spinning, not sleeping, keeps the helper
 * busy as real work would). */
static void spin_ms(double ms) {
  double end = cg_now() + 1e-3 * ms;
  while (cg_now() < end) {
  }
}

/* The mask value of augmentation's padding (a zoom-out crop's, a rotation's corners): the
 * ignore label, left out of the loss and metrics; background when there is none. */
static uint8_t pad_label(const cg_loader_t *l) {
  const int ig = l->cfg.ignore_index;
  return ig >= l->cfg.nclass && ig <= 255 ? (uint8_t)ig : 0;
}

int cg_loader_load_window(cg_source_t *src, uint64_t seed, int64_t epoch, int64_t idx,
                          int ignore, double cat_max, cg_crop_t *win, uint8_t *rgb,
                          uint8_t *mask, uint8_t *tmp, int *refused, char *err, size_t errlen) {
  int t = 1;
  if (cat_max > 0 && cat_max < 1) {
    /* a zoom-out window's padding is never counted: without an ignore label the tries pad
     * with 255, which no class id (at most 254 of 255 classes) or binary label is */
    cg_crop_t w = *win;
    if (ignore < 0) w.pad = ignore = 255;
    for (; t <= CG_CROP_CAT_TRIES; t++) {
      if (cg_source_load_win(src, idx, &w, NULL, mask, tmp, err, errlen)) return -1;
      if (cg_augment_cat_ok(mask, (size_t)src->h * src->w, ignore, cat_max)) break;
      cg_augment_window_again(seed, epoch, idx, t, &w);
    }
    win->u = w.u;
    win->v = w.v;
    if (t <= CG_CROP_CAT_TRIES) { /* mask holds the accepted window's: its image alone */
      if (w.pad != win->pad) {
        const size_t px = (size_t)src->h * src->w;
        for (size_t i = 0; i < px; i++)
          if (mask[i] == w.pad) mask[i] = (uint8_t)win->pad;
      }
      if (refused) *refused = t - 1;
      return cg_source_load_win(src, idx, win, rgb, NULL, tmp, err, errlen);
    }
  }
  if (refused) *refused = t - 1;
  return cg_source_load_win(src, idx, win, rgb, mask, tmp, err, errlen);
}

/* Prepares sample i of the batch in slot s (outside the lock). Returns 0, 1 when the load
 * failed and skip_bad turned the sample into zeros (the caller marks it bad), or -1 with the
 * message in err. */
static int prepare(cg_loader_t *l, slot_t *s, int i, uint8_t *rgb, uint8_t *mask, float *scratch,
                   char *err, size_t errlen, double *dec_s, double *feat_s) {
  double t0 = cg_now();
  *dec_s = *feat_s = 0;
  const int h = s->b.h, w = s->b.w, c = s->b.c;
  size_t px = (size_t)h * w;
  float *x = s->b.x + (size_t)i * px * c;
  uint8_t *y = s->b.y + (size_t)i * px;
  int64_t idx = s->b.index[i];
  if (idx < 0) { /* padding: zeros, weight 0 */
    memset(x, 0, sizeof(float) * px * c);
    memset(y, 0, px);
    return 0;
  }
  int rc;
  if (l->cfg.crop) {
    cg_crop_t win =
        cg_augment_window(l->cfg.seed, s->b.epoch, idx, l->cfg.crop_lo, l->cfg.crop_hi);
    win.pad = pad_label(l);
    rc = cg_loader_load_window(l->cfg.source, l->cfg.seed, s->b.epoch, idx, l->ignore,
                               l->cfg.cat_max, &win, rgb, mask, (uint8_t *)scratch, NULL, err,
                               errlen);
  } else {
    rc = cg_source_load(l->cfg.source, idx, rgb, mask, err, errlen);
  }
  if (rc) {
    if (!l->cfg.skip_bad) return -1;
    memset(x, 0, sizeof(float) * px * c);
    memset(y, 0, px);
    return 1;
  }
  if (l->cfg.flip) cg_augment_flip(l->cfg.seed, s->b.epoch, idx, h, w, rgb, mask, l->cfg.flip);
  const cg_jitter_t *jt = &l->cfg.jitter;
  if (jt->b > 0 || jt->c > 0 || jt->s > 0 || jt->h > 0) {
    const cg_jitter_draw_t d = cg_augment_jitter_draw(l->cfg.seed, s->b.epoch, idx, jt);
    cg_augment_jitter_apply(&d, h, w, rgb);
  }
  if (l->cfg.rotate_deg > 0) { /* last: its corners stay the padding's gray */
    const double a = cg_augment_rotate_draw(l->cfg.seed, s->b.epoch, idx, l->cfg.rotate_deg,
                                            l->cfg.rotate_prob);
    cg_augment_rotate_apply(a, h, w, rgb, mask, CG_CROP_PAD_RGB, pad_label(l), (uint8_t *)scratch);
  }
  memcpy(y, mask, px);
  double t1 = cg_now();
  *dec_s = t1 - t0;
  if (i < s->b.n_cpu) {
    cg_pack_input(rgb, h, w, l->cfg.nfeat, scratch, x);
    if (l->cfg.test_feat_ms > 0) spin_ms(l->cfg.test_feat_ms);
    *feat_s = cg_now() - t1;
  } else {
    memcpy(s->b.rgb + (size_t)i * px * 3, rgb, px * 3); /* the device featurises it */
  }
  return 0;
}

static void *worker_main(void *arg);

/* The one rule for a sample that fails without skip_bad: the job ends with exit code 2. */
static void bad_sample(const cg_loader_t *l, const char *why) __attribute__((noreturn));
static void bad_sample(const cg_loader_t *l, const char *why) {
  cg_die(CG_EXIT_USAGE, "data: %s%s", why, l->cfg.bad_hint ? l->cfg.bad_hint : CG_BAD_SAMPLE_HINT);
}

/* Cost accounting of one prepared sample (under the lock). */
static void account(cg_loader_t *l, const slot_t *s, int i, double dec, double feat) {
  if (s->b.index[i] < 0) return;
  l->costs.dec_s += dec;
  l->costs.dec_n++;
  if (i < s->b.n_cpu) {
    l->costs.feat_s += feat;
    l->costs.feat_n++;
  }
}

/* Confusion counts of a returned batch: its predicted masks against its masks, real samples
 * (K >= 2: into ck, K x K zeroed by the caller). */
static cg_confusion_t count_batch(const cg_loader_t *l, const cg_host_batch_t *b, int64_t *ck) {
  cg_confusion_t c = {0, 0, 0, 0};
  size_t px = (size_t)b->h * b->w;
  for (int i = 0; i < b->n; i++) {
    if (b->index[i] < 0) continue;
    if (l->nclass > 1)
      cg_confk_add(ck, l->nclass, b->pred + i * px, b->y + i * px, px, l->ignore);
    else
      cg_confusion_add_ignore(&c, b->pred + i * px, b->y + i * px, px, l->ignore);
  }
  return c;
}

/* Adds a batch's counts to the loader's (under mu); ck: K x K, NULL for binary. */
static void add_counts(cg_loader_t *l, const cg_confusion_t *cf, const int64_t *ck) {
  cg_confusion_merge(&l->conf, cf);
  if (l->nclass > 1) cg_confk_merge(l->confk, ck, l->nclass);
}

/* A zeroed K x K scratch for count_batch, or NULL for binary. */
static int64_t *confk_scratch(const cg_loader_t *l) {
  return l->nclass > 1 ? cg_calloc((size_t)l->nclass * l->nclass, sizeof(int64_t), "confusion")
                       : NULL;
}

/* The slot's use is over (under the lock): advance `released` over consecutive freed batches
 * and wake the helpers that wait for a slot. */
static void free_slot(cg_loader_t *l, slot_t *s) {
  s->freed = s->k;
  int64_t before = l->released;
  while (l->released < l->consumed && l->slots[l->released % l->nslots].freed == l->released)
    l->released++;
  if (l->released != before) pthread_cond_broadcast(&l->work);
}

typedef struct {
  cg_loader_t *l;
  int id;
} worker_arg_t;

cg_loader_t *cg_loader_create(const cg_loader_cfg_t *cfg) {
  cg_loader_t *l = cg_calloc(1, sizeof *l, "loader");
  l->cfg = *cfg;
  if (l->cfg.crop_lo <= 0) { /* the default range */
    l->cfg.crop_lo = CG_CROP_SCALE_DEFAULT_LO;
    l->cfg.crop_hi = 1.0;
  }
  l->nclass = cfg->nclass > 1 ? cfg->nclass : 1;
  l->ignore = cfg->ignore_index >= l->nclass ? cfg->ignore_index : -1;
  if (l->nclass > 1)
    l->confk = cg_calloc((size_t)l->nclass * l->nclass, sizeof(int64_t), "confusion");
  CG_ASSERT(cfg->batch >= 1 && cfg->nslots >= 1 && cfg->workers >= 0);
  cg_sampler_init(&l->sampler, cfg->nsamples, cfg->ranks, cfg->rank, cfg->batch, cfg->seed);
  l->sampler.shuffle = cfg->shuffle;
  cg_sampler_set_accum(&l->sampler, cfg->accum > 1 ? cfg->accum : 1);
  l->spe = cg_sampler_steps_per_epoch(&l->sampler);
  if (l->cfg.nsteps < 0) l->cfg.nsteps = l->spe - l->cfg.first_step % l->spe; /* rest of the epoch */
  l->nbatches = l->cfg.nsteps * l->sampler.accum;
  l->nslots = cfg->nslots;
  l->slots = cg_calloc((size_t)l->nslots, sizeof(slot_t), "loader slots");
  const int h = cfg->source->h, w = cfg->source->w, c = 3 + cfg->nfeat;
  size_t px = (size_t)cfg->batch * h * w;
  for (int s = 0; s < l->nslots; s++) {
    cg_host_batch_t *b = &l->slots[s].b;
    b->n = cfg->batch;
    b->h = h;
    b->w = w;
    b->c = c;
    b->slot = s;
    b->x = slot_alloc(l, sizeof(float) * px * c);
    b->rgb = slot_alloc(l, px * 3);
    b->pred = slot_alloc(l, px);
    memset(b->pred, 0, px);
    b->y = slot_alloc(l, px);
    b->weight = slot_alloc(l, sizeof(float) * cfg->batch);
    b->index = cg_calloc((size_t)cfg->batch, sizeof(int64_t), "slot indices");
    l->slots[s].k = -1;
    l->slots[s].freed = -1;
  }
  l->cpu_count = cfg->cpu_count < 0 || cfg->cpu_count > cfg->batch ? cfg->batch : cfg->cpu_count;
  l->mq = cg_calloc((size_t)l->nslots, sizeof(int), "metrics queue");
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->work, NULL);
  pthread_cond_init(&l->ready, NULL);
  pthread_cond_init(&l->mdone, NULL);
  l->nworkers = cfg->workers;
  if (l->nworkers == 0) {
    l->rgb = cg_malloc((size_t)h * w * 3, "sample rgb");
    l->mask = cg_malloc((size_t)h * w, "sample mask");
    l->scratch = cg_malloc(sizeof(float) * 3 * (size_t)h * w, "feature scratch");
  } else {
    l->threads = cg_calloc((size_t)l->nworkers, sizeof(pthread_t), "helper threads");
    l->busy = cg_calloc((size_t)l->nworkers, sizeof(double), "helper busy");
    for (int i = 0; i < l->nworkers; i++) {
      worker_arg_t *a = cg_malloc(sizeof *a, "worker arg");
      a->l = l;
      a->id = i;
      if (pthread_create(&l->threads[i], NULL, worker_main, a) != 0)
        CG_FATAL("pthread_create of helper thread %d failed", i);
    }
  }
  return l;
}

static void *worker_main(void *arg) {
  worker_arg_t a = *(worker_arg_t *)arg;
  free(arg);
  cg_loader_t *l = a.l;
  const int h = l->cfg.source->h, w = l->cfg.source->w;
  if (l->cfg.worker_cpus && l->cfg.worker_cpus[a.id] >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(l->cfg.worker_cpus[a.id], &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
      cg_log_warn("could not pin helper thread %d to cpu %d", a.id, l->cfg.worker_cpus[a.id]);
  }
  uint8_t *rgb = cg_malloc((size_t)h * w * 3, "sample rgb");
  uint8_t *mask = cg_malloc((size_t)h * w, "sample mask");
  float *scratch = cg_malloc(sizeof(float) * 3 * (size_t)h * w, "feature scratch");
  const int64_t B = l->cfg.batch, total = l->nbatches * B;
  char err[1024];
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && l->mq_len == 0 &&
           !(l->next_task < total && l->next_task / B < l->released + l->nslots))
      pthread_cond_wait(&l->work, &l->mu);
    if (l->stop) break;
    if (l->mq_len > 0) { /* metrics first: their slots are waiting to be reused */
      slot_t *s = &l->slots[l->mq[l->mq_head]];
      l->mq_head = (l->mq_head + 1) % l->nslots;
      l->mq_len--;
      l->m_running++;
      pthread_mutex_unlock(&l->mu);
      double t0 = cg_now();
      cg_nvtx_push("metrics");
      int64_t *ck = confk_scratch(l);
      cg_confusion_t cf = count_batch(l, &s->b, ck);
      cg_nvtx_pop();
      double dt = cg_now() - t0;
      cg_trace_event(l->cfg.trace, CG_TRACK_HELPER0 + a.id, "metrics", t0, t0 + dt);
      pthread_mutex_lock(&l->mu);
      l->busy[a.id] += dt;
      l->costs.met_s += dt;
      l->costs.met_n++;
      add_counts(l, &cf, ck);
      free(ck);
      l->m_running--;
      free_slot(l, s);
      pthread_cond_broadcast(&l->mdone);
      continue;
    }
    int64_t t = l->next_task++;
    int64_t k = t / B;
    int i = (int)(t % B);
    slot_t *s = &l->slots[k % l->nslots];
    if (s->k != k) { /* first task of this batch: claim the slot and draw its indices */
      s->k = k;
      s->filled = 0;
      s->indexed = 0;
      index_batch(l, s, k);
    }
    pthread_mutex_unlock(&l->mu);
    double t0 = cg_now(), dec = 0, feat = 0;
    cg_nvtx_push("sample");
    int rc = prepare(l, s, i, rgb, mask, scratch, err, sizeof err, &dec, &feat);
    cg_nvtx_pop();
    double dt = cg_now() - t0;
    cg_trace_event(l->cfg.trace, CG_TRACK_HELPER0 + a.id, i < s->b.n_cpu ? "sample+features" : "sample",
                   t0, t0 + dt);
    pthread_mutex_lock(&l->mu);
    l->busy[a.id] += dt;
    account(l, s, i, dec, feat);
    if (rc > 0) mark_bad(l, s, i, err);
    if (rc < 0) {
      l->failed = 1;
      snprintf(l->fail_msg, sizeof l->fail_msg, "%s", err);
      pthread_cond_broadcast(&l->ready);
      break;
    }
    if (++s->filled == B) pthread_cond_broadcast(&l->ready);
  }
  pthread_mutex_unlock(&l->mu);
  free(rgb);
  free(mask);
  free(scratch);
  return NULL;
}

cg_host_batch_t *cg_loader_next(cg_loader_t *l, double *wait_s) {
  if (wait_s) *wait_s = 0;
  if (l->consumed >= l->nbatches) return NULL;
  int64_t k = l->consumed;
  slot_t *s = &l->slots[k % l->nslots];
  if (l->nworkers == 0) {
    /* Serial: the caller's thread does the work. The device waits for it all that time, so it
     * is reported as data wait (and as the driving thread's busy time). */
    CG_ASSERT(k < l->released + l->nslots);
    double t0 = cg_now();
    s->k = k;
    index_batch(l, s, k);
    char err[1024];
    for (int i = 0; i < s->b.n; i++) {
      double dec = 0, feat = 0;
      int rc = prepare(l, s, i, l->rgb, l->mask, l->scratch, err, sizeof err, &dec, &feat);
      if (rc < 0) bad_sample(l, err);
      pthread_mutex_lock(&l->mu);
      account(l, s, i, dec, feat);
      if (rc > 0) mark_bad(l, s, i, err);
      pthread_mutex_unlock(&l->mu);
    }
    s->filled = s->b.n;
    pthread_mutex_lock(&l->mu);
    l->busy_serial += cg_now() - t0;
    l->consumed++;
    pthread_mutex_unlock(&l->mu);
    if (wait_s) *wait_s = cg_now() - t0;
    return &s->b;
  }
  double t0 = cg_now();
  pthread_mutex_lock(&l->mu);
  while (!l->failed && !(s->k == k && s->filled == l->cfg.batch)) pthread_cond_wait(&l->ready, &l->mu);
  int failed = l->failed;
  if (!failed) l->consumed++;
  pthread_mutex_unlock(&l->mu);
  if (failed) bad_sample(l, l->fail_msg);
  if (wait_s) *wait_s = cg_now() - t0;
  return &s->b;
}

void cg_loader_release(cg_loader_t *l, cg_host_batch_t *b, int count_metrics) {
  slot_t *s = &l->slots[b->slot];
  pthread_mutex_lock(&l->mu);
  CG_ASSERT(s->k == l->returned); /* given back in the order taken */
  l->returned++;
  if (count_metrics && l->nworkers > 0) {
    CG_ASSERT(l->mq_len < l->nslots);
    l->mq[(l->mq_head + l->mq_len) % l->nslots] = b->slot;
    l->mq_len++;
    pthread_cond_broadcast(&l->work);
  } else {
    if (count_metrics) { /* serial mode: the caller's thread counts */
      double t0 = cg_now();
      int64_t *ck = confk_scratch(l);
      cg_confusion_t cf = count_batch(l, b, ck);
      add_counts(l, &cf, ck);
      free(ck);
      l->busy_serial += cg_now() - t0;
      l->costs.met_s += cg_now() - t0;
      l->costs.met_n++;
    }
    free_slot(l, s);
  }
  pthread_mutex_unlock(&l->mu);
}

void cg_loader_take_confusion_k(cg_loader_t *l, cg_confusion_t *out, int64_t *confk_add) {
  pthread_mutex_lock(&l->mu);
  while (l->mq_len > 0 || l->m_running > 0) pthread_cond_wait(&l->mdone, &l->mu);
  *out = l->conf;
  memset(&l->conf, 0, sizeof l->conf);
  if (l->nclass > 1) {
    if (confk_add) cg_confk_merge(confk_add, l->confk, l->nclass);
    memset(l->confk, 0, sizeof(int64_t) * l->nclass * l->nclass);
  }
  pthread_mutex_unlock(&l->mu);
}

void cg_loader_take_confusion(cg_loader_t *l, cg_confusion_t *out) {
  cg_loader_take_confusion_k(l, out, NULL);
}

void cg_loader_take_costs(cg_loader_t *l, cg_loader_costs_t *out) {
  pthread_mutex_lock(&l->mu);
  *out = l->costs;
  memset(&l->costs, 0, sizeof l->costs);
  pthread_mutex_unlock(&l->mu);
}

void cg_loader_set_cpu_count(cg_loader_t *l, int k) {
  pthread_mutex_lock(&l->mu);
  l->cpu_count = k < 0 ? 0 : (k > l->cfg.batch ? l->cfg.batch : k);
  pthread_mutex_unlock(&l->mu);
}

double cg_loader_take_busy(cg_loader_t *l, int *workers) {
  double t = 0;
  pthread_mutex_lock(&l->mu);
  if (l->nworkers == 0) {
    t = l->busy_serial;
    l->busy_serial = 0;
  }
  for (int i = 0; i < l->nworkers; i++) {
    t += l->busy[i];
    l->busy[i] = 0;
  }
  pthread_mutex_unlock(&l->mu);
  if (workers) *workers = l->nworkers;
  return t;
}

int64_t cg_loader_take_bad(cg_loader_t *l) {
  pthread_mutex_lock(&l->mu);
  int64_t n = l->bad;
  l->bad = 0;
  pthread_mutex_unlock(&l->mu);
  return n;
}

void cg_loader_destroy(cg_loader_t *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->work);
  pthread_mutex_unlock(&l->mu);
  for (int i = 0; i < l->nworkers; i++) pthread_join(l->threads[i], NULL);
  for (int s = 0; s < l->nslots; s++) {
    cg_host_batch_t *b = &l->slots[s].b;
    slot_free(l, b->x);
    slot_free(l, b->rgb);
    slot_free(l, b->pred);
    slot_free(l, b->y);
    slot_free(l, b->weight);
    free(b->index);
  }
  free(l->slots);
  free(l->confk);
  free(l->threads);
  free(l->busy);
  free(l->rgb);
  free(l->mask);
  free(l->scratch);
  cg_sampler_free(&l->sampler);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work);
  pthread_cond_destroy(&l->ready);
  pthread_cond_destroy(&l->mdone);
  free(l->mq);
  free(l);
}
