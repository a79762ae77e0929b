/* loader.c: helper threads filling a bounded ring of batch slots (see loader.h).
 *
 * One mutex guards the schedule: the next task (batch k, sample i), how many batches have been
 * released, and each slot's fill count. Workers prepare samples outside the lock; the sample
 * indices of a batch are drawn from the sampler under the lock by the first worker to reach it.
 * Condition variables: `work` wakes helpers when a slot frees up, `ready` wakes the consumer
 * when a batch is complete. */
#include "loader.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "log.h"

typedef struct {
  cg_host_batch_t b;
  int64_t k;      /* batch number held, -1 none */
  int filled;     /* samples done */
  int indexed;    /* sample indices drawn */
} slot_t;

struct cg_loader {
  cg_loader_cfg_t cfg;
  cg_sampler_t sampler;
  int64_t spe;           /* steps per epoch */
  int nslots;
  slot_t *slots;
  pthread_mutex_t mu;
  pthread_cond_t work, ready;
  int64_t next_task;     /* k * batch + i */
  int64_t released;      /* batches released */
  int64_t consumed;      /* batches handed to the consumer */
  int stop;
  int nworkers;
  pthread_t *threads;
  double *busy;          /* per worker seconds, guarded by mu */
  double busy_serial;
  char fail_msg[512];
  int failed;
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
  int64_t step = l->cfg.first_step + k;
  int64_t epoch = step / l->spe, in_epoch = step % l->spe;
  int global = 0;
  s->b.real = cg_sampler_batch(&l->sampler, epoch, in_epoch, s->b.index, &global);
  s->b.global = global;
  s->b.step = step;
  s->b.epoch = epoch;
  for (int i = 0; i < s->b.n; i++) s->b.weight[i] = s->b.index[i] >= 0 ? 1.0f / (float)global : 0.0f;
  s->indexed = 1;
}

/* Prepares sample i of the batch in slot s (outside the lock). */
static int prepare(cg_loader_t *l, slot_t *s, int i, uint8_t *rgb, uint8_t *mask, float *scratch,
                   char *err, size_t errlen) {
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
  if (cg_source_load(l->cfg.source, idx, rgb, mask, err, errlen)) return -1;
  if (l->cfg.augment) cg_augment_flip(l->cfg.seed, s->b.epoch, idx, h, w, rgb, mask);
  cg_pack_input(rgb, h, w, l->cfg.nfeat, scratch, x);
  memcpy(y, mask, px);
  return 0;
}

static void *worker_main(void *arg);

typedef struct {
  cg_loader_t *l;
  int id;
} worker_arg_t;

cg_loader_t *cg_loader_create(const cg_loader_cfg_t *cfg) {
  cg_loader_t *l = cg_calloc(1, sizeof *l, "loader");
  l->cfg = *cfg;
  CG_ASSERT(cfg->batch >= 1 && cfg->nslots >= 1 && cfg->workers >= 0);
  cg_sampler_init(&l->sampler, cfg->nsamples, cfg->ranks, cfg->rank, cfg->batch, cfg->seed);
  l->sampler.shuffle = cfg->shuffle;
  l->spe = cg_sampler_steps_per_epoch(&l->sampler);
  if (l->cfg.nsteps < 0) l->cfg.nsteps = l->spe - l->cfg.first_step % l->spe; /* rest of the epoch */
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
    b->y = slot_alloc(l, px);
    b->weight = slot_alloc(l, sizeof(float) * cfg->batch);
    b->index = cg_calloc((size_t)cfg->batch, sizeof(int64_t), "slot indices");
    l->slots[s].k = -1;
  }
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->work, NULL);
  pthread_cond_init(&l->ready, NULL);
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

int64_t cg_loader_steps_per_epoch(const cg_loader_t *l) { return l->spe; }

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
  const int64_t B = l->cfg.batch, total = l->cfg.nsteps * B;
  char err[512];
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && l->next_task < total && l->next_task / B >= l->released + l->nslots)
      pthread_cond_wait(&l->work, &l->mu);
    if (l->stop || l->next_task >= total) break;
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
    double t0 = cg_now();
    int rc = prepare(l, s, i, rgb, mask, scratch, err, sizeof err);
    double dt = cg_now() - t0;
    pthread_mutex_lock(&l->mu);
    l->busy[a.id] += dt;
    if (rc) {
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
  if (l->consumed >= l->cfg.nsteps) return NULL;
  int64_t k = l->consumed;
  slot_t *s = &l->slots[k % l->nslots];
  if (l->nworkers == 0) {
    /* Serial: the caller's thread does the work (counted as busy, not as waiting). */
    CG_ASSERT(k < l->released + l->nslots);
    double t0 = cg_now();
    s->k = k;
    index_batch(l, s, k);
    char err[512];
    for (int i = 0; i < s->b.n; i++)
      if (prepare(l, s, i, l->rgb, l->mask, l->scratch, err, sizeof err))
        CG_FATAL("data: %s", err);
    s->filled = s->b.n;
    l->busy_serial += cg_now() - t0;
    l->consumed++;
    return &s->b;
  }
  double t0 = cg_now();
  pthread_mutex_lock(&l->mu);
  while (!l->failed && !(s->k == k && s->filled == l->cfg.batch)) pthread_cond_wait(&l->ready, &l->mu);
  int failed = l->failed;
  pthread_mutex_unlock(&l->mu);
  if (failed) CG_FATAL("data: %s", l->fail_msg);
  if (wait_s) *wait_s = cg_now() - t0;
  l->consumed++;
  return &s->b;
}

void cg_loader_release(cg_loader_t *l, cg_host_batch_t *b) {
  pthread_mutex_lock(&l->mu);
  CG_ASSERT(l->slots[b->slot].k == l->released); /* released in order */
  l->released++;
  pthread_cond_broadcast(&l->work);
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
    slot_free(l, b->y);
    slot_free(l, b->weight);
    free(b->index);
  }
  free(l->slots);
  free(l->threads);
  free(l->busy);
  free(l->rgb);
  free(l->mask);
  free(l->scratch);
  cg_sampler_free(&l->sampler);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work);
  pthread_cond_destroy(&l->ready);
  free(l);
}
