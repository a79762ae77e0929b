/* preflight.c: the memory estimate of a run against the machine (see preflight.h). */
#include "preflight.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "devplan.h"

/* MemAvailable of /proc/meminfo in bytes, else the physical memory; -1 when unknown. */
static double host_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      unsigned long long kb;
      if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
        fclose(f);
        return (double)kb * 1024.0;
      }
    }
    fclose(f);
  }
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (double)pages * (double)size : -1.0;
}

#ifdef COGPU_HAVE_CUDA
static double device_free(int device) {
  size_t b = 0;
  return cg_cuda_free_bytes(device, &b) == 0 ? (double)b : -1.0;
}
#else
static double device_free(int device) {
  (void)device;
  return -1.0;
}
#endif

/* Bytes of every activation and activation gradient, one buffer each (as the cpu backend
 * holds them), elements of es bytes. */
static double naive_acts(const cg_model_t *m, int batch, int es) {
  double e = 0;
  const int in_buf = m->tensors[m->input_tensor].buf;
  for (int i = 0; i < m->nbufs; i++)
    if (i != in_buf) e += 2.0 * (double)batch * (double)cg_buf_elems(m, i);
  return e * es;
}

cg_preflight_t cg_preflight_estimate(const cg_model_t *m, int batch, int accum, int prefetch,
                                     int cuda, int es, int moments, int ohem) {
  cg_preflight_t e;
  memset(&e, 0, sizeof e);
  const double np = (double)m->nparams, px = (double)batch * m->height * m->width;
  /* the trainer's host copies: initial parameters, the checkpoint's two moment arrays for a
   * resume */
  const double host_params = 12.0 * np;
  /* the loader's ring: fp32 input with its features, RGB8, mask, prediction per pixel */
  const double ring = (double)(prefetch + 2) * px * (4.0 * m->in_c + 5.0);
  /* the backend's own batch slots */
  const double slots = (double)CG_DEV_SLOTS * px * (4.0 * m->in_c + 1.0);
  /* params, grads, the optimizer's buffers (+ the copy; + the kept gradient sum of
   * --grad-accum) */
  e.params = (8.0 + 4.0 * moments) * np + (cuda ? 2.0 * np : 0.0) + (accum > 1 ? 4.0 * np : 0.0);
  e.batches = ring + slots;
  const double keys = ohem ? 4.0 * px : 0.0; /* OHEM's scratch: a key a pixel of the batch */
  if (cuda) {
    /* the CUDA backend's arena: planned from the step's lifetimes (src/model/devplan.h), about half
     * of one buffer each; the plan with copies is the larger one */
    static cg_devplan_t p;
    char err[256];
    e.acts = (cg_devplan_make(m, batch, 8, (size_t)es, 256, NULL, &p, err, sizeof err) == 0
                  ? (double)p.arena
                  : naive_acts(m, batch, es)) +
             keys;
    e.device = e.params + e.acts + slots;
    e.host = host_params + ring;
  } else {
    e.acts = naive_acts(m, batch, 4) + keys;
    e.host = host_params + e.params + e.acts + e.batches;
  }
  return e;
}

cg_preflight_t cg_preflight_estimate_eval(const cg_model_t *m, int batch) {
  cg_preflight_t e;
  memset(&e, 0, sizeof e);
  const double np = (double)m->nparams, px = (double)batch * m->height * m->width;
  e.params = 8.0 * np;                 /* the weights read, and the backend's copy */
  e.acts = naive_acts(m, batch, 4) / 2; /* the forward's activations; no gradient is touched */
  e.batches = px * (4.0 * m->in_c + 4.0 * m->nclass); /* the tiles in, the logits out */
  e.host = e.params + e.acts + e.batches;
  return e;
}

double cg_preflight_host_available(void) { return host_available(); }

int cg_preflight_check(const cg_preflight_t *e, int cuda, int device, int ranks_on_node,
                       char *err, size_t errlen) {
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double host = host_available();
  const int share = ranks_on_node > 0 ? ranks_on_node : 1;
  if (host > 0 && e->host * share > host) {
    snprintf(err, errlen, "not enough host memory: this run needs at least %.1f GiB per rank "
             "(parameters and optimizer %.1f, activations %.1f, batch slots %.1f GiB) x %d "
             "rank(s) on this node, and %.1f GiB is available: reduce --batch, --image-size, "
             "--model-base or --model-depth", e->host / gib, (cuda ? 0.0 : e->params) / gib,
             (cuda ? 0.0 : e->acts) / gib, e->batches / gib, share, host / gib);
    return -1;
  }
  if (cuda) {
    const double dev = device_free(device);
    if (dev > 0 && e->device > dev) {
      snprintf(err, errlen, "not enough GPU memory: this run needs at least %.1f GiB on GPU %d "
               "(parameters and optimizer %.1f, activations %.1f GiB) and %.1f GiB is free: "
               "reduce --batch, --image-size, --model-base or --model-depth", e->device / gib,
               device, e->params / gib, e->acts / gib, dev / gib);
      return -1;
    }
  }
  return 0;
}
